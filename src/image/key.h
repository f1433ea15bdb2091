// key.h — chroma key for sprites: cut a flat background (green, white or any
// colour) out of an RGBA8 image with soft edges and spill suppression, trim
// to the content, and place a set of sprites on one canvas with a common
// anchor so a set of expressions lines up.
//
//     key_params kp = key_defaults();                 // colour from the borders
//     uint8_t bg[3];
//     if (key_apply(rgba, w, h, &kp, bg, &err) != SIM_OK) ...   // in place
//     key_box b;
//     if (key_bbox(rgba, w, h, 4, &b)) key_crop(rgba, w, h, b, &out, &err);
//
// Alpha: d = the Euclidean RGB distance of a pixel to the key colour (0..441);
// d ≤ tolerance is background (alpha 0), d ≥ tolerance + softness is
// foreground (alpha 255), and in between alpha rises linearly, which gives
// anti-aliased edges a soft ramp instead of a jagged cut.
//
// Spill (the key colour's cast on edge pixels). The edge band is every
// pixel with alpha > 0 that is translucent or has a background pixel
// (alpha 0) within KEY_EDGE_RADIUS (chessboard distance). There:
//   1. unmix: an anti-aliased edge pixel is a blend p = a·c + (1 - a)·k of
//      the subject colour c and the key k. c is taken as the pixel of the
//      (2R+1)² window farthest from k (the most "subject-like" one, f), a as
//      the projection of p - k on f - k, and p is replaced by
//      (p - (1 - a)·k) / a. This is the rule for white (it removes the light
//      fringe) and for any colour; composited back over k the pixel is p.
//   2. for a chromatic key (max - min channel of k ≥ 64, e.g. green), the
//      channels where k is within 16 of its largest are clamped to the
//      largest of the other channels (green: G ≤ max(R, B)): fully in the
//      edge band, then fading out over KEY_SPILL_FADE more pixels inwards
//      (or by 1 - alpha/255, "how keyed", if that is larger), so a green
//      subject well inside the sprite keeps its colour.
// Fully transparent pixels become (0, 0, 0, 0).
//
// Border colour detection: the border pixels (the outermost row and column
// on every side) are binned in 16 levels per channel; the most common bin
// wins, and the key is the mean of the border pixels within `tolerance` of
// that bin's mean. Fewer than 25% of the border within tolerance is an error
// (no flat background).
//
// Ownership: key_apply works in place; key_crop and key_canvas return
// mem_alloc'd pixels. Errors: sim_status + sim_err.
#ifndef SIM_KEY_H
#define SIM_KEY_H

#include "base/base.h"

#define KEY_EDGE_RADIUS 3 // pixels: the edge band
#define KEY_SPILL_FADE 3  // pixels: the spill clamp fades out past the band

typedef struct key_params {
    bool auto_color;      // detect the key colour from the borders
    uint8_t color[3];     // the key colour when !auto_color
    float tolerance;      // distance up to which a pixel is background (0..441)
    float softness;       // width of the alpha ramp past the tolerance (> 0)
    bool spill;           // suppress the key's cast on edge pixels
} key_params;

key_params key_defaults(void); // auto colour, tolerance 40, softness 60, spill on

// Parses "#RRGGBB" (or "RRGGBB"); false for anything else.
bool key_parse_color(const char *s, uint8_t out[3]);

// The most common border colour of an RGBA8 image (h, w, 4), see above.
sim_status key_detect_color(const uint8_t *rgba, int w, int h, float tolerance, uint8_t out[3], sim_err *err);

// Keys rgba (h, w, 4) in place; the key colour used goes to used (may be NULL).
// The input's own alpha is kept as an upper bound.
sim_status key_apply(uint8_t *rgba, int w, int h, const key_params *p, uint8_t used[3], sim_err *err);

typedef struct key_box {
    int x, y, w, h;
} key_box;

// The bounding box of the pixels with alpha > 0, grown by margin on every side
// and clipped to the image; false when every pixel is transparent.
bool key_bbox(const uint8_t *rgba, int w, int h, int margin, key_box *box);

// A copy of the box's pixels: *out (box.h, box.w, 4).
sim_status key_crop(const uint8_t *rgba, int w, int h, key_box box, uint8_t **out, sim_err *err);

typedef enum key_anchor {
    KEY_ANCHOR_BOTTOM_CENTER, // sprites standing on the same floor line (the default)
    KEY_ANCHOR_CENTER,
    KEY_ANCHOR_TOP_CENTER,
} key_anchor;

typedef struct key_sprite {
    uint8_t *rgba; // (h, w, 4)
    int w, h;
} key_sprite;

// Places n sprites on canvases of one size: the largest width and height of
// the set plus margin on every side, each sprite's anchor point (e.g. its
// bottom centre) on the canvas's anchor point (horizontal centre: the left
// edge at (W - w) / 2, rounded down). out[i].rgba are mem_alloc'd,
// transparent outside the sprite. On error nothing is returned.
sim_status key_canvas(const key_sprite *in, int n, key_anchor anchor, int margin, key_sprite *out, sim_err *err);

#endif
