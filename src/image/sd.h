// sd.h — image generation with a Stable Diffusion model in the diffusers
// layout: tokenizer → CLIP text encoder → sampler over the U-Net with
// classifier-free guidance → AutoencoderKL decode; from text, from an init
// image (img2img), inpainting under a mask, variations of a seed, previews
// with a tiny autoencoder.
//
//     sd_model *m;
//     if (sd_load(&m, "models/tiny-sd", &err) != SIM_OK) ...
//     sd_params p = sd_defaults();
//     p.prompt = "a lighthouse at dawn", p.width = p.height = 256, p.seed = 42;
//     float *img = malloc(3 * 256 * 256 * sizeof *img);       // (3, H, W) in about [-1, 1]
//     op_ctx c = {.pool = pool, .k = kern_get(KERN_BEST)};
//     sd_generate(m, &c, &p, img, NULL, &err);
//     p.init_image = img, p.strength = 0.5f;                 // img2img from that picture:
//     p.mask = mask, p.mask_blur = 4;                        // repaint where mask (H, W) is 1
//     sd_generate(m, &c, &p, img2, NULL, &err);
//     sd_free(m);
//
// Reproduction: p.init_latent replaces the seeded noise (raw float32 NCHW,
// (C_lat, H/8, W/8)), p.timesteps fixes the schedule exactly (after the last
// one DDIM goes to ᾱ = 1), and latent_out receives the final latent before
// it is scaled and decoded.
//
// Ownership: the model owns its weights (copies: matrices in the file's
// 16-bit type, the rest float32; the files are closed after loading and
// opened again only to read the VAE's encoder on the first img2img, the
// text encoder after release_text, or the parts a LoRA change patches) and
// an attached tiny autoencoder with its buffers.
// sd_generate allocates its work buffers for the request and frees them
// before returning. One model serves one request at a time. Errors:
// sim_status + sim_err.
#ifndef SIM_SD_H
#define SIM_SD_H

#include "image/clip_tok.h"
#include "image/dsamp.h"
#include "tensor/ops.h"

typedef struct sd_model sd_model;

// Prompts longer than the text encoder's window (75 tokens for SD) are cut
// into chunks encoded separately and concatenated along the tokens (the
// common web UIs' way); at most this many chunks, the rest is dropped.
#define SD_MAX_CHUNKS 8

typedef struct sd_params {
    const char *prompt, *negative;   // negative may be NULL (= ""); weighting as in clip_tok_encode_weighted
    int width, height;               // pixels: multiples of 8 × 2^(U-Net levels - 1)
    int steps;
    float cfg;                       // guidance scale; 1 skips the negative pass
    dsamp_kind sampler;
    bool karras;
    uint64_t seed;
    int clip_skip;                   // 0: the last layer
    const float *init_latent;        // optional (C_lat, H/8, W/8) instead of seeded noise
    const int *timesteps;            // optional, `steps` descending values
    bool taesd_decode;               // decode with the attached tiny autoencoder (sd_attach_taesd), not the VAE
    // Free the text encoder's weights once the prompts are encoded (the next
    // request reads them again, with its LoRAs): one-shot use then peaks
    // lower by their size (≈ 250 MB for SD 1.x in F16).
    bool release_text;
    // Folder of LoRA files for the prompt's <lora:NAME:W> tags (NAME.safetensors
    // there, W default 1; see sd_generate); NULL refuses tags. The negative
    // prompt keeps its text.
    const char *lora_dir;
    // img2img: init_image (3, H, W) in [-1, 1] is encoded (the VAE
    // distribution's mean, not a sample, × scaling_factor), noised to the
    // level where `strength` of the schedule remains, and denoised from
    // there: round(steps·strength) steps run (on_step counts those). 0
    // returns the decoded encoding; 1 starts from pure noise (txt2img).
    const float *init_image;
    float strength;
    // Inpainting (with init_image): mask (H, W) in [0, 1], 1 = repaint,
    // blurred by a Gaussian of mask_blur pixels (σ), then area-averaged to
    // the latent grid (m). An ordinary U-Net repaints everything and after
    // each step x = m·x + (1-m)·(the init latent noised to the next level),
    // so the final latent is the init latent exactly where m = 0 and soft
    // values blend. A 9-channel inpainting U-Net (in_channels 2·C_lat + 1)
    // takes concat(x, m, latent of the image with the pixels where the
    // blurred mask is ≥ ½ zeroed) — diffusers' order — and nothing is blended.
    const float *mask;
    float mask_blur;
    // Variations (the web UIs' "variation seed"): the start noise is
    // sd_slerp(noise(seed), noise(subseed), subseed_strength).
    uint64_t subseed;
    float subseed_strength;
    // Called after each step (1-based step of steps; seconds since the start)
    // with the step's denoised estimate x0: the predicted final latent
    // (C_lat, H/8, W/8) in the sampler's scale (as latent_out), which
    // sd_preview turns into a picture. Returning false stops with SIM_ERR_ABORTED.
    bool (*on_step)(void *ud, int step, int steps, double seconds, const float *latent);
    void *ud;
} sd_params;

sd_params sd_defaults(void); // 20 DDIM steps, cfg 7.5, 512 × 512, seed 0

// A diffusers folder, or a single-file checkpoint (see ckpt.h) with its
// tokenizer beside it.
sim_status sd_load(sd_model **out, const char *path, sim_err *err);
typedef struct sd_load_opts {
    // The CLIP tokenizer from this folder (vocab.json + merges.txt, or
    // bpe_simple_vocab_16e6.txt.gz) instead of the model's / beside the file.
    const char *tokenizer;
    // The U-Net from this file instead (a single-file checkpoint or a GGUF,
    // e.g. a quantized one), read with the model's configuration.
    const char *unet;
} sd_load_opts;
sim_status sd_load_ex(sd_model **out, const char *path, const sd_load_opts *o, sim_err *err);
void sd_free(sd_model *m);
int sd_latent_channels(const sd_model *m);
// Pixels per latent cell (8 for SD).
int sd_vae_factor(const sd_model *m);

// image (3, H, W) decoded (about [-1, 1]); latent_out (C_lat, H/8, W/8) or NULL.
// LoRAs: the prompt's <lora:...> tags are cut out (the rest is encoded) and
// their files (lora.h) merged into the text encoder and U-Net: when the
// list of files and weights differs from the previous request's, those
// parts are read again from the model's files with the LoRAs merged while
// they load (briefly two copies of a part in memory); the same list again
// costs nothing, and no tags restore the original weights exactly.
sim_status sd_generate(sd_model *m, const op_ctx *c, const sd_params *p, float *image, float *latent_out, sim_err *err);

// Attaches a tiny autoencoder (TAESD; taesd.h) for previews and
// p.taesd_decode: path is any layout tae_open reads (tiny_ae.h: a diffusers
// AutoencoderTiny folder or file, a folder of *_decoder / *_encoder halves,
// a decoder .safetensors / .pth). Its latent channels must be the model's.
// It replaces an attached one; on error nothing changes.
// TAESD decoders are distilled on the U-Net's latents (diffusers'
// AutoencoderTiny has scaling_factor 1), so they get the sampler's latent
// unscaled; their 8× output is resampled (area) when the model's VAE
// factor differs (only tiny test models), and mapped from [0, 1] to [-1, 1].
sim_status sd_attach_taesd(sd_model *m, const char *path, sim_err *err);
void sd_detach_taesd(sd_model *m);
bool sd_has_taesd(const sd_model *m);

// Spherical linear interpolation out = sin((1-t)ω)/sin ω · a + sin(tω)/sin ω · b,
// cos ω = a·b / (|a| |b|); plain lerp (1-t)·a + t·b when |cos ω| ≥
// SD_SLERP_PARALLEL. out may be a or b.
#define SD_SLERP_PARALLEL 0.9995
void sd_slerp(const float *a, const float *b, size_t n, double t, float *out);

// An image (3, H, W) in about [-1, 1] (sd_generate's) to w·h·channels
// bytes: channels 3 (RGB) or 4 (RGBA, opaque).
void sd_image_bytes(const float *img, int w, int h, int channels, uint8_t *out);

// A quick picture of a latent (C_lat, lh, lw) in the sampler's scale (as
// on_step and latent_out give it): rgb (lh·f, lw·f, 3) bytes, f =
// sd_vae_factor. With a tiny autoencoder attached it is its decode (the
// model keeps that decoder's buffers for the last size asked, so previews
// and generations on one model must not run at the same time). Without,
// it is a linear map of each
// latent cell (4-channel SD latents only; each cell fills f × f pixels):
//     rgb = (1 + Σ_c latent_c · K[c]) / 2 · 255,
// with K the SD 1.4 latent→RGB factors measured by Kevin Turner ("keturn",
// discuss.huggingface.co/t/decoding-latents-to-rgb-without-upscaling/23204),
// which the web UIs' "approx cheap" preview uses.
sim_status sd_preview(sd_model *m, const op_ctx *c, const float *latent, int lh, int lw, uint8_t *rgb, sim_err *err);

#endif
