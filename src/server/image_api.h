// image_api.h — image generation over HTTP: the AUTOMATIC1111 web UI's API
// (which front ends such as SillyTavern call) and a native streamed endpoint,
// on one Stable Diffusion model (image/sd.h), with a queue of its own and a
// content-addressed cache (docs/image-api.md).
//
//   POST /sdapi/v1/txt2img     {"prompt", "negative_prompt", "steps", "cfg_scale", "sampler_name",
//                               "scheduler", "seed", "width", "height", "batch_size", "n_iter", ...}
//                              -> {"images": [base64 PNG], "parameters": {...}, "info": "<JSON text>"}
//   POST /sdapi/v1/img2img     the same plus "init_images", "denoising_strength", "resize_mode", "mask",
//                              "mask_blur", "inpainting_mask_invert"
//   GET  /sdapi/v1/sd-models   [{"title", "model_name", "hash", "sha256", "filename", "config"}]
//   GET  /sdapi/v1/samplers    [{"name", "aliases", "options"}]
//   GET  /sdapi/v1/schedulers  [{"name", "label", "aliases", "default_rho", "need_inner_model"}]
//   GET  /sdapi/v1/options     {"sd_model_checkpoint", ...}
//   GET  /sdapi/v1/progress    {"progress", "eta_relative", "state": {...}, "current_image", "textinfo"}
//   POST /sdapi/v1/interrupt   stops the running request (its finished images are still answered)
//   POST /api/image            the txt2img / img2img fields plus "preview_every" -> Server-Sent Events:
//                              queued, start, step ..., image ..., done (or error)
//
// The web UI's routes answer errors as {"error": KIND, "detail": MESSAGE}
// (400 for a bad field, naming it, the expected type or range and what came;
// 503 when the queue is full); /api/image answers them before the stream in
// the server's usual shape ({"error": {"message", ...}}, http.h), or as an
// `error` event once streaming. Unknown fields are ignored, as the web UI
// does; features it has and this engine lacks (restore_faces, tiling,
// enable_hr, latent upscale) are refused when asked for.
//
// Jobs: one worker thread runs them one at a time, first in first out, on
// its own thread pool (cfg.n_threads), so text requests keep being served.
// At most cfg.max_queue requests wait behind the running one; the next is
// answered 503. A request's client leaving cancels it (waiting or running).
//
// Cache: each image is stored under the sha256 of a canonical text of what
// determines its bytes (model identity, prompts, seed, size, steps, guidance,
// sampler, schedule, clip skip, variation seed, the init image's and mask's
// pixels and their settings, the prompt's LoRA files by name, weight, size
// and modification time, the engine version); a random seed (-1) is drawn first, so it
// never aliases. Entries are files DIR/<key>.png with cfg.cache_dir, else
// up to IAPI_MEM_CACHE_BYTES in memory (least recently used evicted).
// Requests wholly in the cache are answered without queueing.
//
// Model identity: a single-file model's sha256 (as the web UI reports
// checkpoints); for a diffusers folder, the sha256 of the lines
// "<sha256 of file>  <path>\n" (sha256sum's format) over model_index.json,
// text_encoder/{config.json, model.safetensors}, tokenizer/{vocab.json,
// merges.txt}, unet/ and vae/{config.json, diffusion_pytorch_model.safetensors},
// in this order, the ones that exist. /sdapi/v1/sd-models reports it.
//
//     iapi_config cfg = iapi_default_config();
//     cfg.model_dir = "models/sd15";
//     iapi *ia;
//     if (iapi_new(&ia, &cfg, &err) != SIM_OK) ...        // loads the model, starts the worker
//     n += iapi_routes(ia, routes + n);
//     ... http_start ... on stop: iapi_shutdown(ia); http_stop(srv); iapi_free(ia);
//
// Ownership: the iapi owns the model, the pool, the worker and the cache;
// the config's strings are copied. Errors: sim_status + sim_err.
#ifndef SIM_IMAGE_API_H
#define SIM_IMAGE_API_H

#include "server/http.h"

#define IAPI_N_ROUTES 9
#define IAPI_MEM_CACHE_BYTES ((size_t)64 << 20)
#define IAPI_MAX_IMAGES 16 // batch_size × n_iter of one request
#define IAPI_MAX_STEPS 150
#define IAPI_MAX_SIDE 2048

typedef struct iapi iapi;

typedef struct iapi_config {
    const char *model_dir; // a diffusers folder or a single-file checkpoint (sd_load)
    const char *taesd;     // a tiny autoencoder for previews (sd_attach_taesd), or NULL: the linear preview
    const char *cache_dir; // created when missing; NULL: the memory cache
    const char *lora_dir;  // the prompts' <lora:NAME:W> files (NAME.safetensors); NULL: tags refused
    int max_queue;         // requests that may wait behind the running one (0..1024)
    int n_threads;         // threads of the image pool (0: all CPUs)
    // Warnings (a cache file that cannot be written), one line each; NULL: dropped.
    void (*log)(void *log_ud, const char *msg);
    void *log_ud;
} iapi_config;

iapi_config iapi_default_config(void); // max_queue 8, n_threads 0, memory cache

// Loads the model, hashes its files, prepares the cache folder and starts
// the worker. Errors name the folder or file and the reason.
sim_status iapi_new(iapi **out, const iapi_config *cfg, sim_err *err);
// The model's name (its folder's) and identity (64 hex digits).
const char *iapi_model_name(const iapi *ia);
const char *iapi_model_sha256(const iapi *ia);
int iapi_n_threads(const iapi *ia);
// No new jobs; the running one is interrupted and waiting ones are answered
// 503, so handlers return and http_stop can finish. Idempotent; NULL: no-op.
void iapi_shutdown(iapi *ia);
// Shuts down if needed, joins the worker, frees. NULL is a no-op.
void iapi_free(iapi *ia);
// Writes the routes (IAPI_N_ROUTES of them) and returns their count.
int iapi_routes(iapi *ia, http_route *out);

#endif
