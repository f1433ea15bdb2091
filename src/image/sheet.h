// sheet.h — contact sheets: a set of RGBA images laid out on one labelled
// grid, each on a checkerboard so its transparency shows (the sprite tool's
// --sheet), plus the two drawing primitives the sheet is made of: straight-
// alpha "over" compositing and a tiny built-in 5x7 bitmap font.
//
//     sheet_cell cells[4] = {{a, aw, ah}, {b, bw, bh}, {c, cw, ch}, {NULL}};
//     const char *rows[] = {"casual", "coat"}, *cols[] = {"happy", "sad"};
//     uint8_t *rgba; int w, h;
//     if (sheet_grid(cells, 2, 2, rows, cols, &rgba, &w, &h, &err) != SIM_OK) ...
//     png_write_file("sheet.png", rgba, w, h, 4, NULL, 0, &err);
//     mem_free(rgba);
//
// Layout (all in pixels; P = SHEET_PAD, cells[r * cols + c] is row r,
// column c; CW × CH = the largest width × the largest height of the cells):
//   - the row-label band on the left is P + the widest row label + P wide
//     (0 without row labels); the column-label band on top is P +
//     SHEET_GLYPH_H + P high (0 without column labels);
//   - cell (r, c) has its top left corner at (LW + P + c·(CW + P),
//     LH + P + r·(CH + P)); the sheet is LW + P + cols·(CW + P) wide and
//     LH + P + rows·(CH + P) high;
//   - the background is SHEET_BG; each cell is a checkerboard of
//     SHEET_CHECK-pixel squares, SHEET_LIGHT at the cell's top left square,
//     SHEET_DARK next to it; the image sits at the cell's bottom centre
//     (left edge at (CW - w) / 2 rounded down, bottom on the cell's bottom),
//     composited over the checkerboard; a NULL cell stays checkerboard;
//   - a column label starts at the cell's left edge, y = P, cut to the
//     characters that fit in CW; a row label starts at x = P, vertically
//     centred on its row ((CH - SHEET_GLYPH_H) / 2 down from the row's top);
//     labels are drawn in SHEET_INK.
// The sheet is opaque (alpha 255 everywhere).
//
// Font: 5x7 glyphs on a 6-pixel advance for A-Z (lowercase letters are drawn
// as capitals), 0-9, space and - _ . : ; any other byte is drawn as '?'.
//
// Ownership: sheet_grid returns a mem_alloc'd image. Errors: sim_status +
// sim_err (SIM_ERR_ARG for sizes, SIM_ERR_RANGE for a sheet too large,
// SIM_ERR_NOMEM).
#ifndef SIM_SHEET_H
#define SIM_SHEET_H

#include "base/base.h"

#define SHEET_PAD 4        // pixels between cells and around the bands
#define SHEET_CHECK 8      // pixels: a checkerboard square
#define SHEET_GLYPH_W 5
#define SHEET_GLYPH_H 7
#define SHEET_ADVANCE 6    // pixels from one character to the next
#define SHEET_LIGHT 0xFF   // grey levels of the checkerboard
#define SHEET_DARK 0xCC
#define SHEET_BG 0x30      // grey level of the gutters and label bands
#define SHEET_INK 0xFF     // grey level of the labels
#define SHEET_MAX_SIDE 16384

typedef struct sheet_cell {
    const uint8_t *rgba; // (h, w, 4) straight alpha, or NULL: an empty cell
    int w, h;
} sheet_cell;

// The grid of rows × cols cells described above; row_labels (rows) and
// col_labels (cols) may be NULL. *out: (*out_h, *out_w, 4).
sim_status sheet_grid(const sheet_cell *cells, int rows, int cols, const char *const *row_labels,
                      const char *const *col_labels, uint8_t **out, int *out_w, int *out_h, sim_err *err);

// Composites src (sh, sw, 4) over dst (dh, dw, 4) with src's top left corner
// at (x, y) (clipped to dst), straight alpha, Porter-Duff "over":
// a = as + ad·(1 - as), c = (cs·as + cd·ad·(1 - as)) / a, rounded.
void sheet_over(uint8_t *dst, int dw, int dh, const uint8_t *src, int sw, int sh, int x, int y);

// Draws s in the built-in font with its top left corner at (x, y) in grey
// level `ink` (alpha 255), clipped to dst (dh, dw, 4).
void sheet_text(uint8_t *dst, int dw, int dh, int x, int y, const char *s, uint8_t ink);

// The width in pixels of s drawn with sheet_text: n·SHEET_ADVANCE - 1 (0 for "").
int sheet_text_width(const char *s);

#endif
