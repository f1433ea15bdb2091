// image_gen.c — `simularity image gen`: text to image with a Stable
// Diffusion model in the diffusers layout (see image/sd.h).
//
// Writes OUT.png (with --batch N: OUT-1.png ... OUT-N.png, seeds seed,
// seed+1, ...), each with the generation parameters in a `parameters` tEXt
// chunk in the common web UIs' format. A progress line on stderr gives each
// step's time. For exact reproduction: --init-latent F.f32 (raw float32,
// (C, H/8, W/8)) replaces the seeded noise, --timesteps 999,749,... fixes the
// schedule, --save-latent F.f32 writes the final latent. <lora:NAME:W> in the
// prompt merges --lora-dir DIR/NAME.safetensors with weight W (image/lora.h).
//
// A tiny autoencoder (--taesd FILE|DIR) gives quick previews and, with
// --vae taesd, a fast final decode. --preview K writes the denoised
// estimate to OUT.preview.png every K steps (and after the last), through
// the tiny autoencoder when there is one, else the linear approximation.
//
// img2img: --init PNG (any size, brought to W x H by --resize crop|just|fill
// with a Lanczos3 filter) and --strength S; inpainting adds --mask PNG
// (white repaints) and --mask-blur PX. Variations: --subseed N and
// --subseed-strength S slerp another seed's noise in; --interpolate N
// writes N images going from --seed's noise to --subseed's.
//
// Dynamic prompts (image/dynprompt.h): a prompt with {a|b} groups makes an
// image per expansion, in order (or --random N seeded expansions), all with
// the same seed (character consistency; --vary-seed gives expansion k the
// seed seed + k·batch); numbered OUT-1.png, OUT-2.png, ... in that order,
// each expansion's batch together.
#include <errno.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "base/file.h"
#include "cli/cli.h"
#include "image/dynprompt.h"
#include "image/png.h"
#include "image/resize.h"
#include "image/sd.h"
#include "tensor/kern.h"
#include "tensor/pool.h"

#define GEN_MAX_BATCH 64
#define GEN_MAX_STEPS 1000

typedef struct progress {
    int image, n_images;
    bool tty;
    // --preview: every `every` steps the denoised estimate goes to `path`.
    int every, lh, lw, f;
    sd_model *m;
    const op_ctx *c;
    const char *path;
    uint8_t *rgb;      // (lh·f, lw·f, 3)
    sim_err err;
    bool failed;       // a preview could not be written (err says why)
} progress;

static bool on_step(void *ud, int step, int steps, double seconds, const float *latent) {
    progress *pr = ud;
    fprintf(stderr, "%s[image %d/%d] step %d/%d  %.2f s/step", pr->tty ? "\r" : "", pr->image, pr->n_images, step, steps,
            seconds / step);
    if (!pr->tty || step == steps) fputc('\n', stderr);
    if (pr->every && (step % pr->every == 0 || step == steps)) {
        if (sd_preview(pr->m, pr->c, latent, pr->lh, pr->lw, pr->rgb, &pr->err) != SIM_OK ||
            png_write_file(pr->path, pr->rgb, pr->lw * pr->f, pr->lh * pr->f, 3, NULL, 0, &pr->err) != SIM_OK) {
            pr->failed = true;
            return false;
        }
    }
    return true;
}

// "999,749,499" into out (at most cap); the count, or -1 when malformed.
static int parse_timesteps(const char *s, int *out, int cap) {
    int n = 0;
    while (*s) {
        char *end;
        errno = 0;
        long v = strtol(s, &end, 10);
        if (end == s || errno || v < 0 || v >= 1000 || n == cap) return -1;
        if (n > 0 && v >= out[n - 1]) return -1; // strictly descending
        out[n++] = (int)v;
        s = end;
        if (*s == ',') s++;
        else if (*s) return -1;
    }
    return n;
}

// A PNG brought to w × h by the --resize mode: rgb (3, h, w) in [-1, 1]
// (Lanczos3), or with rgb NULL the mask's luma (h, w) in [0, 1] (area).
static bool load_picture(const char *opt, const char *path, rsz_mode mode, int w, int h, float *rgb, float *mask) {
    png_image im;
    sim_err err;
    if (png_read_file(&im, path, &err) != SIM_OK) return cli_fail("image gen: %s: %s", opt, err.msg), false;
    rsz_box b = rsz_fit(im.w, im.h, w, h, mode);
    sim_status st = rgb ? rsz_rgba8(im.rgba, im.w, im.h, b, RSZ_LANCZOS3, rgb, w, h, &err)
                        : rsz_rgba8_luma(im.rgba, im.w, im.h, b, RSZ_AREA, mask, w, h, &err);
    png_image_free(&im);
    if (st != SIM_OK) return cli_fail("image gen: %s %s: %s", opt, path, err.msg), false;
    return true;
}

int cmd_image_gen(int argc, char **argv) {
    const char *model_dir = NULL, *prompt = NULL, *negative = "", *sampler = "ddim", *out = "image.png";
    const char *init_latent = NULL, *timesteps_arg = NULL, *save_latent = NULL, *lora_dir = NULL, *vae_kind = "full", *taesd_path = NULL;
    const char *init_path = NULL, *mask_path = NULL, *resize = "crop";
    int steps = 20, width = 512, height = 512, batch = 1, n_threads = 0, clip_skip = 0, preview = 0, interpolate = 0;
    float cfg = 7.5f, strength = 0.75f, mask_blur = 4, subseed_strength = 0;
    uint64_t seed = 0, subseed = 0;
    bool karras = false, vary_seed = false;
    int random_n = 0;
    sd_load_opts lo = {0};
    cli_opt opts[] = {
        {"-m|--model", OPT_STR, &model_dir, "a diffusers folder (model_index.json, text_encoder/, tokenizer/, unet/, vae/) "
                                            "or a single-file checkpoint (.safetensors, .ckpt, .gguf)"},
        {"-p|--prompt", OPT_STR, &prompt, "what to draw; (word:1.2) and [word] weight words; <lora:NAME:W> adds a LoRA"},
        {"--negative", OPT_STR, &negative, "what not to draw"},
        {"--steps", OPT_INT, &steps, "sampling steps [20]"},
        {"--cfg", OPT_FLOAT, &cfg, "guidance scale [7.5]; 1 skips the negative pass"},
        {"--sampler", OPT_STR, &sampler, "ddim, euler, euler_a, dpmpp_2m, lcm [ddim]"},
        {"--karras", OPT_FLAG, &karras, "Karras sigmas (with dpmpp_2m)"},
        {"--seed", OPT_U64, &seed, "random seed [0]"},
        {"-W|--width", OPT_INT, &width, "pixels [512]"},
        {"-H|--height", OPT_INT, &height, "pixels [512]"},
        {"--batch", OPT_INT, &batch, "images, seeds seed, seed+1, ... [1]"},
        {"--clip-skip", OPT_INT, &clip_skip, "skip the text encoder's last N layers [0]"},
        {"--init-latent", OPT_STR, &init_latent, "start from this latent (raw float32, C x H/8 x W/8) instead of noise"},
        {"--timesteps", OPT_STR, &timesteps_arg, "exact descending timesteps, e.g. 999,749,499,249 (sets the steps)"},
        {"--save-latent", OPT_STR, &save_latent, "write the final latent (raw float32) to FILE"},
        {"--vae", OPT_STR, &vae_kind, "the final decoder: full (the model's VAE) or taesd (needs --taesd) [full]"},
        {"--taesd", OPT_STR, &taesd_path, "a tiny autoencoder: a diffusers AutoencoderTiny folder, a folder with *_decoder.{safetensors,pth}, or a decoder file "
                                          "for --preview and --vae taesd"},
        {"--preview", OPT_INT, &preview, "every K steps write the denoised estimate to OUT.preview.png (tiny autoencoder "
                                         "with --taesd, else a linear approximation) [0: off]"},
        {"--init", OPT_STR, &init_path, "img2img: start from this PNG (any size; see --resize)"},
        {"--strength", OPT_FLOAT, &strength, "img2img denoising strength: round(steps x S) steps run; 0 keeps the image, "
                                             "1 ignores it [0.75]"},
        {"--resize", OPT_STR, &resize, "fitting --init / --mask to W x H: crop (cover, centre crop), just (stretch), "
                                       "fill (fit, edges extended) [crop]"},
        {"--mask", OPT_STR, &mask_path, "inpainting (with --init): a PNG, white = repaint, black = keep"},
        {"--mask-blur", OPT_FLOAT, &mask_blur, "soften the mask's edges by a Gaussian of PX pixels [4]"},
        {"--subseed", OPT_U64, &subseed, "variation seed: its noise is slerped in by --subseed-strength [0]"},
        {"--subseed-strength", OPT_FLOAT, &subseed_strength, "variation strength, 0 (the seed) to 1 (the variation seed) [0]"},
        {"--random", OPT_INT, &random_n, "draw N random expansions of the prompt's {a|b} groups (seeded by --seed) instead of all"},
        {"--vary-seed", OPT_FLAG, &vary_seed, "give each expansion of the prompt its own seeds (seed + k x batch) instead of the same"},
        {"--interpolate", OPT_INT, &interpolate, "write N images OUT-1..OUT-N whose start noise goes from --seed to --subseed"},
        {"--lora-dir", OPT_STR, &lora_dir, "the folder of the prompt's <lora:NAME:W> files (NAME.safetensors)"},
        {"--tokenizer", OPT_STR, &lo.tokenizer, "the CLIP tokenizer's folder (vocab.json + merges.txt, or bpe_simple_vocab_16e6.txt.gz) "
                                                "for a checkpoint without one beside it"},
        {"--unet", OPT_STR, &lo.unet, "the U-Net from this file (a checkpoint or a GGUF, e.g. quantized) instead of the model's"},
        {"-o|--output", OPT_STR, &out, "the PNG to write [image.png]"},
        {"-t|--threads", OPT_INT, &n_threads, "threads (0: all CPUs)"},
    };
    int n_pos, rc;
    if ((rc = cli_parse("image gen -m DIR -p PROMPT [options]", argc, argv, opts, ARRAY_LEN(opts), NULL, 0, &n_pos)))
        return rc;
    if (!model_dir) return cli_fail("image gen: give the model folder with -m");
    if (!prompt) return cli_fail("image gen: give a prompt with -p");
    if (steps < 1 || steps > GEN_MAX_STEPS) return cli_fail("image gen: --steps must be 1..%d", GEN_MAX_STEPS);
    if (batch < 1 || batch > GEN_MAX_BATCH) return cli_fail("image gen: --batch must be 1..%d", GEN_MAX_BATCH);
    if (width < 8 || height < 8 || width > 4096 || height > 4096)
        return cli_fail("image gen: -W and -H must be 8..4096 pixels");
    if (!(cfg >= 0 && cfg <= 100)) return cli_fail("image gen: --cfg must be 0..100");
    if (n_threads < 0 || clip_skip < 0) return cli_fail("image gen: --threads and --clip-skip must not be negative");
    int rmode = rsz_mode_parse(resize);
    if (rmode < 0) return cli_fail("image gen: --resize '%s' is not crop, just or fill", resize);
    if (!(strength >= 0 && strength <= 1)) return cli_fail("image gen: --strength must be 0..1");
    if (!(mask_blur >= 0 && mask_blur <= 256)) return cli_fail("image gen: --mask-blur must be 0..256 pixels");
    if (!(subseed_strength >= 0 && subseed_strength <= 1)) return cli_fail("image gen: --subseed-strength must be 0..1");
    if (mask_path && !init_path) return cli_fail("image gen: --mask needs the image to inpaint (--init)");
    if (interpolate < 0 || interpolate > GEN_MAX_BATCH) return cli_fail("image gen: --interpolate must be 0..%d", GEN_MAX_BATCH);
    if (interpolate && batch > 1) return cli_fail("image gen: --interpolate and --batch exclude each other");
    if (interpolate) batch = interpolate;
    if (random_n < 0 || random_n > GEN_MAX_BATCH) return cli_fail("image gen: --random must be 0..%d", GEN_MAX_BATCH);
    bool tiny = strcmp(vae_kind, "taesd") == 0;
    if (!tiny && strcmp(vae_kind, "full") != 0) return cli_fail("image gen: --vae '%s' is not full or taesd", vae_kind);
    if (tiny && !taesd_path) return cli_fail("image gen: --vae taesd needs the decoder's weights (--taesd PATH)");
    if (preview < 0) return cli_fail("image gen: --preview must not be negative");
    int kind = dsamp_parse(sampler);
    if (kind < 0) return cli_fail("image gen: --sampler '%s' is unknown (ddim, euler, euler_a, dpmpp_2m, lcm)", sampler);
    int ts[GEN_MAX_STEPS];
    if (timesteps_arg) {
        int n = parse_timesteps(timesteps_arg, ts, GEN_MAX_STEPS);
        if (n < 1) return cli_fail("image gen: --timesteps must be descending integers 0..999 separated by commas");
        steps = n; // the timesteps say how many steps there are
    }

    sim_err err;
    sd_model *m = NULL;
    pool *pl = NULL;
    char **prompts = NULL;
    size_t n_prompts = 0;
    float *img = NULL, *lat = NULL, *init = NULL, *init_img = NULL, *mask = NULL;
    uint8_t *rgb = NULL;
    char *init_bytes = NULL;
    rc = 1;
    // The prompt's expansions: each an image (or a batch) with the same seed unless --vary-seed.
    sim_status dst = random_n ? dp_expand_random(prompt, (size_t)random_n, seed, &prompts, &err)
                              : dp_expand_all(prompt, GEN_MAX_BATCH, &prompts, &n_prompts, &err);
    if (random_n && dst == SIM_OK) n_prompts = (size_t)random_n;
    if (dst != SIM_OK) {
        cli_fail("image gen: -p: %s%s", err.msg, dst == SIM_ERR_RANGE ? " (use --random N)" : "");
        goto done;
    }
    if (n_prompts * (size_t)batch > GEN_MAX_BATCH) {
        cli_fail("image gen: %zu expansions x %d images is more than %d", n_prompts, batch, GEN_MAX_BATCH);
        goto done;
    }
    if (sd_load_ex(&m, model_dir, &lo, &err) != SIM_OK) {
        cli_fail("image gen: %s", err.msg);
        goto done;
    }
    if (taesd_path && sd_attach_taesd(m, taesd_path, &err) != SIM_OK) {
        cli_fail("image gen: --taesd: %s", err.msg);
        goto done;
    }
    int f = sd_vae_factor(m), cl = sd_latent_channels(m);
    size_t n_lat = (size_t)cl * (height / f) * (width / f);
    if (width % f || height % f) {
        cli_fail("image gen: -W and -H must be multiples of %d for this model", f);
        goto done;
    }
    if (init_latent) {
        size_t len;
        if (file_read_all(init_latent, n_lat * 4 + 1, &init_bytes, &len, &err) != SIM_OK) {
            cli_fail("image gen: --init-latent: %s", err.msg);
            goto done;
        }
        if (len != n_lat * 4) {
            cli_fail("image gen: --init-latent %s has %zu bytes; %dx%d needs %zu (%d x %d x %d float32)", init_latent, len,
                     width, height, n_lat * 4, cl, height / f, width / f);
            goto done;
        }
        init = (float *)init_bytes;
    }
    size_t npx = (size_t)width * height;
    if (init_path && (!(init_img = mem_alloc(3 * npx * sizeof *init_img)) || (mask_path && !(mask = mem_alloc(npx * sizeof *mask))))) {
        cli_fail("image gen: out of memory");
        goto done;
    }
    if (init_path && !load_picture("--init", init_path, (rsz_mode)rmode, width, height, init_img, NULL)) goto done;
    if (mask_path && !load_picture("--mask", mask_path, (rsz_mode)rmode, width, height, NULL, mask)) goto done;
    img = mem_alloc((size_t)3 * width * height * sizeof *img);
    lat = mem_alloc(n_lat * sizeof *lat);
    rgb = mem_alloc((size_t)3 * width * height);
    if (!img || !lat || !rgb || pool_new(&pl, n_threads ? n_threads : (int)sysconf(_SC_NPROCESSORS_ONLN), &err) != SIM_OK) {
        cli_fail("image gen: out of memory");
        goto done;
    }
    op_ctx oc = {.pool = pl, .k = kern_get(KERN_BEST)};
    int total = (int)n_prompts * batch;
    progress pr = {.n_images = total, .tty = isatty(2), .every = preview, .lh = height / f, .lw = width / f, .f = f, .m = m, .c = &oc,
                   .rgb = rgb};
    for (int idx = 0; idx < total; idx++) {
        int k = idx / batch, b = idx % batch;
        sd_params p = sd_defaults();
        p.prompt = prompts[k], p.negative = negative, p.width = width, p.height = height, p.steps = steps, p.cfg = cfg;
        p.sampler = (dsamp_kind)kind, p.karras = karras, p.clip_skip = clip_skip;
        p.seed = seed + (uint64_t)(interpolate ? 0 : b) + (vary_seed ? (uint64_t)k * (uint64_t)batch : 0);
        p.init_image = init_img, p.strength = strength, p.mask = mask, p.mask_blur = mask_blur;
        p.subseed = subseed, p.subseed_strength = interpolate > 1 ? (float)b / (interpolate - 1) : interpolate ? 0 : subseed_strength;
        p.init_latent = init, p.timesteps = timesteps_arg ? ts : NULL, p.on_step = on_step, p.ud = &pr;
        p.lora_dir = lora_dir;
        p.taesd_decode = tiny;
        p.release_text = true; // one-shot: the peak without the text encoder
        char params[4096], path[4096], prev_path[4200];
        if (total == 1) snprintf(path, sizeof path, "%s", out);
        else {
            const char *dot = strrchr(out, '.');
            int stem = dot ? (int)(dot - out) : (int)strlen(out);
            snprintf(path, sizeof path, "%.*s-%d%s", stem, out, idx + 1, dot ? dot : ".png");
        }
        const char *dot = strrchr(path, '.');
        snprintf(prev_path, sizeof prev_path, "%.*s.preview.png", dot ? (int)(dot - path) : (int)strlen(path), path);
        pr.image = idx + 1, pr.path = prev_path;
        if (sd_generate(m, &oc, &p, img, lat, &err) != SIM_OK) {
            cli_fail("image gen: %s", pr.failed ? pr.err.msg : err.msg);
            goto done;
        }
        // The web UIs' parameters line; the optional features' fields only when used.
        char extra[512] = "";
        int e = 0;
        if (p.subseed_strength > 0)
            e += snprintf(extra + e, sizeof extra - e, ", Variation seed: %llu, Variation seed strength: %g", (unsigned long long)subseed,
                          p.subseed_strength);
        if (init_img) e += snprintf(extra + e, sizeof extra - e, ", Denoising strength: %g, Resize mode: %s", strength, resize);
        if (mask) e += snprintf(extra + e, sizeof extra - e, ", Mask blur: %g", mask_blur);
        snprintf(params, sizeof params, "%s\nNegative prompt: %s\nSteps: %d, Sampler: %s%s, CFG scale: %g, Seed: %llu, Size: %dx%d, "
                 "Model: %s%s%s, Engine: simularity", prompts[k], negative, steps, dsamp_name((dsamp_kind)kind),
                 karras ? " Karras" : "", cfg, (unsigned long long)p.seed, width, height, cli_basename(model_dir),
                 tiny ? ", VAE: taesd" : "", extra);
        sd_image_bytes(img, width, height, 3, rgb);
        png_text t = {"parameters", params};
        if (png_write_file(path, rgb, width, height, 3, &t, 1, &err) != SIM_OK) {
            cli_fail("image gen: %s", err.msg);
            goto done;
        }
        if (save_latent && idx == 0 && file_write_all(save_latent, lat, n_lat * sizeof *lat, &err) != SIM_OK) {
            cli_fail("image gen: --save-latent: %s", err.msg);
            goto done;
        }
        printf("%s\n", path);
    }
    rc = 0;
done:
    dp_list_free(prompts, n_prompts);
    sd_free(m);
    pool_free(pl);
    mem_free(img);
    mem_free(lat);
    mem_free(rgb);
    mem_free(init_bytes);
    mem_free(init_img);
    mem_free(mask);
    return rc;
}
