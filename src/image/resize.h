// resize.h — image resampling for the diffusion pipeline: init images and
// masks brought to the generation size, masks to the latent size, tiny
// autoencoder previews to the image size; and the Gaussian blur of masks.
//
// Resampling is separable convolution (the way PIL resizes): output pixel i
// of n covering a source span [b, b + len) sits at c = b + (i + ½)·len/n;
// source pixel j (centre j + ½) weighs k((j + ½ - c) / s) with s =
// max(len/n, 1), so a downscale widens the kernel into an anti-aliasing
// filter; weights are normalised to sum 1. Kernels:
//   RSZ_LANCZOS3  sinc(x)·sinc(x/3) for |x| < 3 (sharp; may overshoot)
//   RSZ_AREA      the exact overlap of [j, j+1) with [c - s/2, c + s/2):
//                 an average over the covered area (masks, previews)
// Source pixels outside the image repeat the nearest edge pixel, so a span
// reaching outside the image ("resize and fill") extends its edges.
//
//     rsz_box b = rsz_fit(img.w, img.h, 512, 512, RSZ_CROP);
//     rsz_rgba8(img.rgba, img.w, img.h, b, RSZ_LANCZOS3, planes, 512, 512, &err);  // (3, 512, 512) in [-1, 1]
//
// Ownership: the caller owns every buffer; the functions allocate only
// their temporaries (freed before returning). Errors: sim_status + sim_err.
#ifndef SIM_RESIZE_H
#define SIM_RESIZE_H

#include "base/base.h"

typedef enum rsz_filter { RSZ_LANCZOS3, RSZ_AREA } rsz_filter;

// How a picture is brought to another aspect ratio (the web UIs' modes):
// just resize (stretch), crop and resize (cover, centre crop), resize and
// fill (fit inside, the edges extended over the rest).
typedef enum rsz_mode { RSZ_JUST, RSZ_CROP, RSZ_FILL, RSZ_MODE_COUNT } rsz_mode;

// A span of the source, in pixels (may reach outside the image).
typedef struct rsz_box {
    double x, y, w, h;
} rsz_box;

// "just", "crop", "fill"; -1 for an unknown name.
int rsz_mode_parse(const char *name);
const char *rsz_mode_name(rsz_mode m);

// The source span that mode maps onto a dw × dh output (centred).
rsz_box rsz_fit(int sw, int sh, int dw, int dh, rsz_mode mode);

// dst (n_planes, dh, dw) from the span box of src (n_planes, sh, sw).
// Sides 1..16384, box sides > 0.
sim_status rsz_planes(const float *src, int n_planes, int sw, int sh, rsz_box box, float *dst, int dw, int dh, rsz_filter f,
                      sim_err *err);

// An RGBA8 picture (sh, sw, 4) to planes: rgb (3, dh, dw) in [-1, 1]
// (v/127.5 - 1, clamped after filtering); alpha is ignored.
sim_status rsz_rgba8(const uint8_t *rgba, int sw, int sh, rsz_box box, rsz_filter f, float *rgb, int dw, int dh, sim_err *err);
// The same for a mask: its luma (0.299 R + 0.587 G + 0.114 B)/255, (dh, dw) in [0, 1].
sim_status rsz_rgba8_luma(const uint8_t *rgba, int sw, int sh, rsz_box box, rsz_filter f, float *mask, int dw, int dh,
                          sim_err *err);

// Blurs plane (h, w) in place with a Gaussian of standard deviation sigma
// pixels (kernel radius ⌈3σ⌉, edges repeated); sigma ≤ 0 leaves it alone.
sim_status rsz_blur(float *plane, int w, int h, double sigma, sim_err *err);

#endif
