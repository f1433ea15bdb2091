// sdwrite.h — random-weight Stable Diffusion models with the real tensor
// names and shapes: complete diffusers folders for benchmarks and tests,
// and tiny-autoencoder (TAESD) weight files.
//
// The families (sdw_family) are the real configurations:
//   sd15      runwayml SD 1.5: U-Net [320, 640, 1280, 1280], 2 layers per
//             block, 8 heads, cross 768; CLIP ViT-L/14 text (768 wide, 12
//             layers, quick-GELU); the KL VAE [128, 256, 512, 512]
//   sd21      SD 2.1: the same U-Net with linear projections, head counts
//             [5, 10, 20, 20] (64 per head), cross 1024; OpenCLIP-H text
//             (1024 wide, 23 layers used, GELU)
//   small-sd  segmind small-sd (BK-SDM small): SD 1.5 with 1 layer per block
//             and no mid block
//   tiny-sd   segmind tiny-sd (BK-SDM tiny): blocks [320, 640, 1280], all
//             three with cross-attention, 1 layer per block, no mid block
// sdw_*_tensors list a component's tensors (diffusers names, PyTorch
// shapes) for any configuration the engine implements (ckpt.h builds its
// single-file views from these lists too); sdw_write_pipeline
// writes model_index.json, the configs, the tokenizer (copied from a folder
// with vocab.json + merges.txt, checked to load and to have the text
// encoder's vocabulary size), the weights and scheduler/scheduler_config.json.
//
// Weights are deterministic from the seed (each tensor's stream is seeded by
// hash(seed, name), so it does not depend on the order or the other
// tensors): biases 0, 1-D weights (norm gains) 1, embeddings N(0, 0.02²),
// every other weight N(0, 1/fan_in) with fan_in the product of all dims but
// the first — so activations keep unit scale and stay finite.
//
//     dif_pipeline p; sdw_family_configs(SDW_SD15, &p);
//     sdw_opts o = {.dtype = ST_F16, .seed = 1, .tokenizer = "micro-sd15/tokenizer"};
//     int64_t n;
//     sdw_write_pipeline("/tmp/sd15-random", &p, &o, &n, &err);
//
// Ownership: an sdw_list owns its entries (sdw_list_free). Errors:
// sim_status + sim_err naming the file.
#ifndef SIM_SDWRITE_H
#define SIM_SDWRITE_H

#include "image/diffusers.h"
#include "image/stwrite.h"

typedef enum sdw_family { SDW_SD15, SDW_SD21, SDW_SMALL_SD, SDW_TINY_SD, SDW_FAMILY_COUNT } sdw_family;

const char *sdw_family_name(sdw_family f); // "sd15", "sd21", "small-sd", "tiny-sd"
bool sdw_family_parse(const char *name, sdw_family *out);
// The family's real text encoder, U-Net and VAE configurations (p->dir "").
void sdw_family_configs(sdw_family f, dif_pipeline *p);

typedef struct sdw_list {
    stw_entry *e;
    int n, cap;
    bool oom; // an append failed: the list is incomplete
} sdw_list;

void sdw_list_free(sdw_list *l);
int64_t sdw_list_params(const sdw_list *l); // total elements
// The index of name in l, or -1.
int sdw_list_find(const sdw_list *l, const char *name);

// Append a component's tensors (SIM_ERR_NOMEM when the list could not grow).
sim_status sdw_unet_tensors(sdw_list *l, const dif_unet_config *c, sim_err *err);
sim_status sdw_vae_tensors(sdw_list *l, const dif_vae_config *c, sim_err *err);
sim_status sdw_clip_tensors(sdw_list *l, const dif_clip_config *c, sim_err *err); // "text_model.*"
// The Sequential-index names taesd.c binds, 4-channel TAESD layout (no pooled GroupNorm).
sim_status sdw_taesd_tensors(sdw_list *l, int latent_ch, bool decoder, sim_err *err);

typedef struct sdw_opts {
    st_dtype dtype;        // ST_F16 or ST_F32 (or ST_BF16)
    uint64_t seed;
    const char *tokenizer; // folder with vocab.json + merges.txt (pipelines only)
} sdw_opts;

// Random weights for e[0..n) into path, by the rules above.
sim_status sdw_write_random(const char *path, const sdw_list *l, const sdw_opts *o, sim_err *err);

// A whole diffusers folder (created, with its subfolders, if missing) for
// the configurations in p; *n_params gets the weights written.
sim_status sdw_write_pipeline(const char *dir, const dif_pipeline *p, const sdw_opts *o, int64_t *n_params, sim_err *err);
// DIR/taesd_decoder.safetensors and DIR/taesd_encoder.safetensors.
sim_status sdw_write_taesd(const char *dir, int latent_ch, const sdw_opts *o, int64_t *n_params, sim_err *err);

#endif
