// diffusers.h — the diffusers folder layout of a Stable Diffusion model:
// which components there are and the configuration of each.
//
//   DIR/model_index.json        {"_class_name": "StableDiffusionPipeline",
//                                "text_encoder": ["transformers", "CLIPTextModel"], ...}
//   DIR/text_encoder/config.json + model.safetensors
//   DIR/tokenizer/vocab.json + merges.txt
//   DIR/unet/config.json + diffusion_pytorch_model.safetensors
//   DIR/vae/config.json + diffusion_pytorch_model.safetensors
//
//     dif_pipeline p;
//     if (dif_open(&p, "models/micro-sd15", &err) != SIM_OK) ...
//     p.clip.hidden, p.unet.block_out[0], p.vae.scaling_factor ...
//     dif_path(&p, "unet/diffusion_pytorch_model.safetensors", buf, sizeof buf);
//
// Each config is checked against what the engine implements (known block
// and activation types, sane bounds on every count, channels divisible by
// the group count and the head count) and refused with a message naming
// the file and the field. Fields that diffusers defaults are defaulted the
// same way. The structs own nothing; dif_pipeline holds its folder path.
//
// Families. Accepted: SD 1.x (768-wide context), SD 2.x (1024-wide context,
// linear projections, per-block head counts) and the BK-SDM distillations
// of either (segmind small-sd / tiny-sd: one layer per block, no mid
// block), and their inpainting U-Nets (in_channels 2·latent + 1: x, mask,
// masked-image latent; StableDiffusionInpaintPipeline); dif_unet_family
// says which a U-Net is. Everything else is refused with the file, the
// field and the family it looks like: SDXL (addition_embed_type
// "text_time", transformer_layers_per_block > 1, a 2048-wide context,
// text_encoder_2), SD 3 / Flux / other transformer pipelines,
// unconditional UNet2DModel, InstructPix2Pix (in_channels 8), the x4
// upscaler and unCLIP (class embeddings), LCM
// guidance embeddings (time_cond_proj_dim), DeepFloyd IF / Kandinsky block
// types, and any non-default value of the diffusers options the engine does
// not implement.
#ifndef SIM_DIFFUSERS_H
#define SIM_DIFFUSERS_H

#include "base/base.h"

#define DIF_MAX_BLOCKS 8

typedef enum dif_act { DIF_ACT_SILU, DIF_ACT_GELU, DIF_ACT_QUICK_GELU } dif_act;

// transformers CLIPTextModel
typedef struct dif_clip_config {
    int hidden;       // d_model
    int intermediate; // MLP width
    int n_heads;
    int n_layers;
    int vocab;
    int n_pos;        // max_position_embeddings (77)
    dif_act act;      // quick_gelu (SD 1.x) or gelu (SD 2.x)
    float ln_eps;
    int bos, eos;     // 49406, 49407 (the legacy 0 / 2 of older configs mean these too)
} dif_clip_config;

// diffusers AutoencoderKL
typedef struct dif_vae_config {
    int in_ch, out_ch, latent_ch;
    int n_blocks;                    // len(block_out_channels)
    int block_out[DIF_MAX_BLOCKS];
    int layers_per_block;
    int groups;
    float scaling_factor;            // latents = moments mean * scaling_factor
} dif_vae_config;

typedef enum dif_block { DIF_BLOCK_PLAIN, DIF_BLOCK_CROSSATTN } dif_block;

// diffusers UNet2DConditionModel (the SD 1.x/2.x and BK-SDM shapes)
typedef struct dif_unet_config {
    int in_ch, out_ch;
    int n_blocks;
    int block_out[DIF_MAX_BLOCKS];
    dif_block down[DIF_MAX_BLOCKS];  // CrossAttnDownBlock2D / DownBlock2D
    dif_block up[DIF_MAX_BLOCKS];    // in up order (deepest first)
    int layers_per_block;
    int head_dim[DIF_MAX_BLOCKS];    // per block: SD 1.x puts a head COUNT in
    int n_heads[DIF_MAX_BLOCKS];     //   "attention_head_dim"; both are resolved here
    int transformer_layers;          // transformer_layers_per_block (1)
    int cross_dim;                   // cross_attention_dim (768 / 1024)
    bool mid_block;                  // UNetMidBlock2DCrossAttn or none (BK-SDM)
    int groups;
    float norm_eps;
    bool linear_proj;                // use_linear_projection (SD 2.x)
    bool flip_sin_to_cos;
    int freq_shift;
} dif_unet_config;

typedef enum dif_family { DIF_FAMILY_SD1, DIF_FAMILY_SD2, DIF_FAMILY_BK_SDM } dif_family;

// SD 2.x: linear projections or a 1024-wide context; BK-SDM: no mid block
// or one layer per block (of either version); SD 1.x otherwise.
dif_family dif_unet_family(const dif_unet_config *c);
const char *dif_family_name(dif_family f); // "SD 1.x", "SD 2.x", "BK-SDM"

typedef struct dif_pipeline {
    char dir[1024];
    dif_family family;
    dif_clip_config clip;
    dif_unet_config unet;
    dif_vae_config vae;
} dif_pipeline;

// Reads DIR/model_index.json and the three component configs.
sim_status dif_open(dif_pipeline *p, const char *dir, sim_err *err);

// The single-component readers (path: the config.json file).
sim_status dif_read_clip_config(dif_clip_config *c, const char *path, sim_err *err);
sim_status dif_read_vae_config(dif_vae_config *c, const char *path, sim_err *err);
sim_status dif_read_unet_config(dif_unet_config *c, const char *path, sim_err *err);

// "<dir>/<rel>" into buf; SIM_ERR_RANGE when it does not fit.
sim_status dif_path(const dif_pipeline *p, const char *rel, char *buf, size_t cap, sim_err *err);

#endif
