// vae.h — the Stable Diffusion autoencoder (diffusers AutoencoderKL):
// images (3, H, W) in [-1, 1] ↔ latent moments / latents (C_lat, H/f, W/f),
// f = 2^(n_blocks - 1).
//
// Encoder: conv_in; per block: layers_per_block resnets, then (but the last)
// a stride-2 conv padded only right and bottom; mid: resnet, one-head
// self-attention, resnet; GroupNorm + SiLU; conv_out → 2·C_lat; quant_conv
// (1×1) → moments (mean, log-variance).
// Decoder: post_quant_conv (1×1); conv_in; mid; per block (deepest first):
// layers_per_block + 1 resnets, then (but the last) nearest 2× + conv;
// GroupNorm + SiLU; conv_out → 3.
// Resnet: x' = conv2(silu(gn2(conv1(silu(gn1(x)))))) + (1×1 conv of x when
// the width changes). GroupNorm eps 1e-6.
//
//     vae *v;
//     if (vae_load(&v, &pipe.vae, st, &err) != SIM_OK) ...
//     vae_work *w;
//     vae_work_new(&w, v, 64, 64, &err);        // latent size the buffers fit
//     vae_decode(v, w, &c, z, 64, 64, image);   // image (3, 512, 512)
//     vae_work_free(w); vae_free(v);
//
// Ownership: the vae owns a copy of its weights (wts.h: matrices in the
// file's F16/BF16, else float32); a vae_work owns every
// activation buffer for latents up to the size it was made for, so
// encoding and decoding allocate nothing. Scaling by scaling_factor is the
// pipeline's business, not this module's.
#ifndef SIM_VAE_H
#define SIM_VAE_H

#include "image/diffusers.h"
#include "image/safetensors.h"
#include "tensor/ops.h"

typedef struct vae vae;
typedef struct vae_work vae_work;

// Binds the encoder and decoder weights (diffusers names) from f.
sim_status vae_load(vae **out, const dif_vae_config *cfg, const st_file *f, sim_err *err);
// Only the decoder (text to image needs no encoder: a third of the weights);
// vae_load_encoder adds the encoder later (nothing when it is there).
sim_status vae_load_decoder(vae **out, const dif_vae_config *cfg, const st_file *f, sim_err *err);
sim_status vae_load_encoder(vae *v, const st_file *f, sim_err *err);
bool vae_has_encoder(const vae *v);
void vae_free(vae *v);
// The down/up factor between image and latent sides.
int vae_factor(const vae *v);

// Buffers for latents up to lh × lw (images up to lh·f × lw·f).
sim_status vae_work_new(vae_work **out, const vae *v, int lh, int lw, sim_err *err);
void vae_work_free(vae_work *w);

// image (out_ch, lh·f, lw·f) = decoder(post_quant_conv(z (C_lat, lh, lw))).
sim_status vae_decode(const vae *v, vae_work *w, const op_ctx *c, const float *z, int lh, int lw, float *image, sim_err *err);
// moments (2·C_lat, H/f, W/f) = quant_conv(encoder(image (in_ch, H, W))); H, W multiples of f.
sim_status vae_encode(const vae *v, vae_work *w, const op_ctx *c, const float *image, int H, int W, float *moments, sim_err *err);

#endif
