// taesd.h — the tiny autoencoder family (TAESD: SD 1.x/2.x with 4 latent
// channels, and the wider-latent variants such as taef2 with 32), for fast
// previews and a VAE-only mode. Images are (3, H, W) in [0, 1]; latents
// (C_lat, H/8, W/8) are in the diffusion model's latent space, as its sampler
// sees them (for SD: the VAE's latents × scaling_factor); the tiny
// autoencoder adds no scaling of its own (diffusers gives it factor 1).
//
// Block(x): x += conv1x1(relu(groupnorm4(conv1x1(x))))   (pooled-GroupNorm variant only)
//           relu(conv(relu(conv(relu(conv(x))))) + x)    (3×3 convs, 64 channels)
// Decoder (Sequential indices are the tensor names): 0 tanh(z/3)·3,
//   1 conv C_lat→64, 2 ReLU, 3–5 blocks, then three times: nearest 2×,
//   conv (no bias), blocks (3, 3, then 1), and last 19 conv 64→3.
// Encoder: 0 conv 3→64, 1 block, then three times: conv stride 2 (no
//   bias), 3 blocks; 14 conv 64→C_lat.
// The latent width and the pooled-GroupNorm blocks are read from the
// weights (e.g. "3.pool.0.weight"), so no configuration is needed.
//
//     st_file *d; pth_open(&d, "taef2_decoder.pth", &err);   // or a .safetensors
//     taesd *m; taesd_load(&m, d, NULL, &err); st_close(d);
//     taesd_work *w; taesd_work_new(&w, m, 64, 64, &err);
//     taesd_decode(m, w, &c, z, 64, 64, image, &err);       // image (3, 512, 512)
//
// Ownership: the model owns copies of its weights (wts.h: matrices in the
// file's F16/BF16, else float32); a taesd_work
// owns all activation memory for latents up to its size, so decoding and
// encoding allocate nothing.
#ifndef SIM_TAESD_H
#define SIM_TAESD_H

#include "image/safetensors.h"
#include "tensor/ops.h"

typedef struct taesd taesd;
typedef struct taesd_work taesd_work;

// Either file may be NULL (a decoder-only preview model), not both.
sim_status taesd_load(taesd **out, const st_file *decoder, const st_file *encoder, sim_err *err);
void taesd_free(taesd *m);
int taesd_latent_channels(const taesd *m);

sim_status taesd_work_new(taesd_work **out, const taesd *m, int lh, int lw, sim_err *err);
void taesd_work_free(taesd_work *w);

// image (3, 8·lh, 8·lw) from z (C_lat, lh, lw).
sim_status taesd_decode(const taesd *m, taesd_work *w, const op_ctx *c, const float *z, int lh, int lw, float *image, sim_err *err);
// z (C_lat, H/8, W/8) from image (3, H, W); H and W multiples of 8.
sim_status taesd_encode(const taesd *m, taesd_work *w, const op_ctx *c, const float *image, int H, int W, float *z, sim_err *err);

#endif
