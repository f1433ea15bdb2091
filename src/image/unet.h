// unet.h — the Stable Diffusion noise predictor (diffusers
// UNet2DConditionModel, configured by dif_unet_config): SD 1.x/2.x shapes
// and the BK-SDM distilled ones (fewer resnets, no mid block).
//
// eps (C_out, h, w) = unet(latent (C_in, h, w), timestep, context (T, cross_dim)):
//   temb = linear_2(silu(linear_1(sinusoid(t))));  x = conv_in(latent)
//   down block i: per layer resnet(x, temb) [+ transformer(x, context)],
//                 then (but the last) a stride-2 conv; every output kept
//   mid: resnet, transformer, resnet (when the config has a mid block)
//   up block i: per layer concat(x, the last kept output) → resnet [+ transformer],
//               then (but the last) nearest 2× + conv
//   conv_out(silu(groupnorm(x)))
// Resnet: conv2(silu(gn2(conv1(silu(gn1(x))) + proj(silu(temb))))) + shortcut(x).
// Transformer: x + proj_out(block(proj_in(gn(x)))), block = self-attention,
// cross-attention on the context, GEGLU feed-forward, each pre-LayerNorm
// with a residual; proj_in/out are 1×1 convs or (SD 2.x) linear layers.
//
//     unet *u; unet_load(&u, &pipe.unet, st, &err);
//     unet_work *w; unet_work_new(&w, u, 64, 64, 77, &err);
//     unet_forward(u, w, &c, latent, 64, 64, 999.0f, context, 77, eps, &err);
//
// Ownership: the model owns a copy of its weights (wts.h: matrices in the
// file's F16/BF16, else float32); unet_work owns every buffer
// for latents up to its size and contexts up to its length, so a forward
// pass allocates nothing.
#ifndef SIM_UNET_H
#define SIM_UNET_H

#include "image/diffusers.h"
#include "image/safetensors.h"
#include "tensor/ops.h"

typedef struct unet unet;
typedef struct unet_work unet_work;

sim_status unet_load(unet **out, const dif_unet_config *cfg, const st_file *f, sim_err *err);
void unet_free(unet *u);

// Latent sides must be multiples of 2^(n_blocks - 1).
sim_status unet_work_new(unet_work **out, const unet *u, int lh, int lw, int n_ctx, sim_err *err);
void unet_work_free(unet_work *w);

sim_status unet_forward(const unet *u, unet_work *w, const op_ctx *c, const float *latent, int lh, int lw, float timestep,
                        const float *context, int n_ctx, float *eps, sim_err *err);

#endif
