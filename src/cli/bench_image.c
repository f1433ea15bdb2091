// bench_image.c — `simularity bench image`: the image engine's speed and
// memory on a diffusers folder, against the machine's FMA peak measured in
// the same run (so a busy machine lowers both alike):
//   - one guided sampler step: two U-Net forwards at the latent of -W × -H;
//   - a VAE decode of that latent;
//   - the text encoder on two 77-token prompts;
//   - tiny autoencoder decodes of a 64² and a 512² image (--taesd);
//   - the process's peak resident memory with all of it loaded.
// Each timing is the best of -r runs after one warm-up; FLOPs are counted
// by the operators (op_ctx.flops: linear layers, convolutions, attention);
// the peak is measured just before and after each timing (other processes
// on the machine slow both alike, so the ratio is the meaningful figure).
#include <stdio.h>
#include <string.h>
#include <sys/resource.h>

#include "cli/cli.h"
#include "image/clip_text.h"
#include "image/diffusers.h"
#include "image/pth.h"
#include "image/taesd.h"
#include "image/unet.h"
#include "image/vae.h"

typedef struct peak_state {
    const kern_ops *k;
    int64_t rounds;
    uint64_t flops[POOL_MAX_THREADS];
    float sink[POOL_MAX_THREADS];
} peak_state;

static void peak_region(void *arg, int ith, int nth) {
    (void)nth;
    peak_state *s = arg;
    s->flops[ith] = s->k->fma_peak(s->rounds, &s->sink[ith]);
}

// GFLOP/s of register-only FMAs on every thread: the best of three.
static double measure_peak(pool *p, const kern_ops *k) {
    peak_state s = {.k = k, .rounds = 20000000};
    double best = 0;
    for (int r = 0; r < 3; r++) {
        uint64_t t0 = time_ns(), total = 0;
        pool_run(p, peak_region, &s);
        double ns = (double)(time_ns() - t0);
        for (int i = 0; i < pool_size(p); i++) total += s.flops[i];
        best = MAX(best, (double)total / ns);
    }
    return best;
}

typedef sim_status (*bench_fn)(void *ud, op_ctx *c, sim_err *err);

// Runs fn once to warm up, then reps times; prints the best time, its FLOP
// rate, and that rate over the FMA peak measured just before and after
// (the better of the two: other processes slow both alike).
static int timed(const char *what, bench_fn fn, void *ud, op_ctx *c, int reps) {
    double peak = measure_peak(c->pool, c->k);
    uint64_t flops = 0;
    sim_err err;
    c->flops = &flops;
    double best = 1e30;
    for (int r = 0; r <= reps; r++) {
        flops = 0;
        uint64_t t0 = time_ns();
        if (fn(ud, c, &err) != SIM_OK) {
            c->flops = NULL;
            return cli_fail("bench image: %s: %s", what, err.msg);
        }
        double s = (double)(time_ns() - t0) / 1e9;
        if (r > 0) best = MIN(best, s);
    }
    c->flops = NULL;
    peak = MAX(peak, measure_peak(c->pool, c->k));
    double gf = (double)flops / best / 1e9;
    printf("%-34s %9.3f s %9.1f GFLOP %8.1f GFLOP/s %5.0f%% of %.0f peak\n", what, best, (double)flops / 1e9, gf, 100 * gf / peak, peak);
    return 0;
}

// --- the pieces ----------------------------------------------------------------------

typedef struct bench_img {
    dif_pipeline pipe;
    clip_text *text;
    unet *u;
    unet_work *uw;
    vae *v;
    vae_work *vw;
    taesd *t;
    taesd_work *tw;
    int lh, lw, n_ctx;
    int32_t ids[77];
    float *ctx, *latent, *eps, *image; // (77, hidden), (C, lh, lw) ×2, (3, 8lh, 8lw)
    float *tz, *timg;                  // tiny autoencoder latent (lat, 64, 64), image (3, 512, 512)
    int t_side;                        // latent side of the current TAESD run
} bench_img;

static sim_status run_text(void *ud, op_ctx *c, sim_err *err) {
    bench_img *b = ud;
    sim_status st = SIM_OK;
    for (int i = 0; i < 2 && st == SIM_OK; i++) st = clip_text_encode(b->text, c, b->ids, 77, 0, b->ctx, err);
    return st;
}

static sim_status run_step(void *ud, op_ctx *c, sim_err *err) {
    bench_img *b = ud;
    sim_status st = SIM_OK;
    for (int i = 0; i < 2 && st == SIM_OK; i++) st = unet_forward(b->u, b->uw, c, b->latent, b->lh, b->lw, 500.0f, b->ctx, b->n_ctx, b->eps, err);
    return st;
}

static sim_status run_vae(void *ud, op_ctx *c, sim_err *err) {
    bench_img *b = ud;
    return vae_decode(b->v, b->vw, c, b->latent, b->lh, b->lw, b->image, err);
}

static sim_status run_taesd(void *ud, op_ctx *c, sim_err *err) {
    bench_img *b = ud;
    return taesd_decode(b->t, b->tw, c, b->tz, b->t_side, b->t_side, b->timg, err);
}

// Opens DIR/rel from the pipeline.
static sim_status open_part(const dif_pipeline *p, const char *rel, st_file **f, sim_err *err) {
    char path[1200];
    sim_status st = dif_path(p, rel, path, sizeof path, err);
    return st == SIM_OK ? st_open(f, path, err) : st;
}

static bool ends_with(const char *s, const char *suf) {
    size_t n = strlen(s), k = strlen(suf);
    return n >= k && strcmp(s + n - k, suf) == 0;
}

static sim_status load(bench_img *b, const char *dir, const char *taesd_path, sim_err *err) {
    sim_status st = dif_open(&b->pipe, dir, err);
    st_file *f = NULL;
    if (st == SIM_OK && (st = open_part(&b->pipe, "text_encoder/model.safetensors", &f, err)) == SIM_OK) {
        st = clip_text_load(&b->text, &b->pipe.clip, f, err);
        st_close(f);
    }
    if (st == SIM_OK && (st = open_part(&b->pipe, "unet/diffusion_pytorch_model.safetensors", &f, err)) == SIM_OK) {
        st = unet_load(&b->u, &b->pipe.unet, f, err);
        st_close(f);
    }
    if (st == SIM_OK && (st = open_part(&b->pipe, "vae/diffusion_pytorch_model.safetensors", &f, err)) == SIM_OK) {
        st = vae_load(&b->v, &b->pipe.vae, f, err);
        st_close(f);
    }
    if (st == SIM_OK && taesd_path) {
        st = ends_with(taesd_path, ".pth") ? pth_open(&f, taesd_path, err) : st_open(&f, taesd_path, err);
        if (st == SIM_OK) {
            st = taesd_load(&b->t, f, NULL, err);
            st_close(f);
        }
    }
    if (st != SIM_OK) return st;
    b->n_ctx = 77;
    int C = b->pipe.unet.in_ch, hid = b->pipe.clip.hidden;
    if ((st = unet_work_new(&b->uw, b->u, b->lh, b->lw, b->n_ctx, err)) || (st = vae_work_new(&b->vw, b->v, b->lh, b->lw, err)))
        return st;
    if (b->t && (st = taesd_work_new(&b->tw, b->t, 64, 64, err))) return st;
    int tl = b->t ? taesd_latent_channels(b->t) : 0;
    size_t nl = (size_t)C * b->lh * b->lw;
    b->ctx = mem_calloc((size_t)77 * hid, sizeof(float));
    b->latent = mem_alloc(nl * sizeof(float));
    b->eps = mem_alloc(nl * sizeof(float));
    b->image = mem_alloc((size_t)3 * 64 * b->lh * b->lw * sizeof(float));
    b->tz = mem_alloc(((size_t)tl * 64 * 64 + 1) * sizeof(float));
    b->timg = mem_alloc((size_t)3 * 512 * 512 * sizeof(float));
    if (!b->ctx || !b->latent || !b->eps || !b->image || !b->tz || !b->timg) return err_set(err, SIM_ERR_NOMEM, "out of memory");
    uint64_t s = 0x9E3779B97F4A7C15ull; // a deterministic pseudo-Gaussian-ish latent
    for (size_t i = 0; i < MAX(nl, (size_t)tl * 64 * 64); i++) {
        s ^= s << 13, s ^= s >> 7, s ^= s << 17;
        float x = (float)((double)(s >> 40) / (double)(1 << 24)) * 2 - 1;
        if (i < nl) b->latent[i] = x;
        if (i < (size_t)tl * 64 * 64) b->tz[i] = x;
    }
    // "a photo of a cat", then end-of-text padding.
    static const int32_t words[] = {49406, 320, 1125, 539, 320, 2368};
    for (int i = 0; i < 77; i++) b->ids[i] = i < (int)ARRAY_LEN(words) ? words[i] : 49407;
    return SIM_OK;
}

static void unload(bench_img *b) {
    clip_text_free(b->text);
    unet_work_free(b->uw);
    unet_free(b->u);
    vae_work_free(b->vw);
    vae_free(b->v);
    taesd_work_free(b->tw);
    taesd_free(b->t);
    mem_free(b->ctx), mem_free(b->latent), mem_free(b->eps), mem_free(b->image), mem_free(b->tz), mem_free(b->timg);
}

int bench_image(int argc, char **argv) {
    const char *dir = NULL, *taesd_path = NULL, *parts = "text,step,vae,taesd";
    int W = 256, H = 256, n_threads = 2, reps = 2;
    cli_opt opts[] = {
        {"-m|--model", OPT_STR, &dir, "diffusers folder (model_index.json, text_encoder, unet, vae)"},
        {"-W|--width", OPT_INT, &W, "image width [256]"},
        {"-H|--height", OPT_INT, &H, "image height [256]"},
        {"--taesd", OPT_STR, &taesd_path, "tiny autoencoder decoder (.safetensors or .pth): also time 64² and 512² decodes"},
        {"-t|--threads", OPT_INT, &n_threads, "threads [2]"},
        {"-r|--repetitions", OPT_INT, &reps, "timed runs after a warm-up; the best counts [2]"},
        {"--parts", OPT_STR, &parts, "which timings, comma-separated [text,step,vae,taesd]"},
    };
    int n_pos, rc;
    if ((rc = cli_parse("bench image -m DIR [-W 256] [-H 256] [--taesd FILE] [-t 2] [-r 2] [--parts text,step,vae,taesd]", argc, argv, opts, ARRAY_LEN(opts), NULL, 0,
                        &n_pos)))
        return rc;
    if (!dir) return cli_fail("bench image: -m DIR is required");
    if (W < 64 || H < 64 || W % 64 || H % 64 || W > 2048 || H > 2048 || n_threads < 1 || n_threads > POOL_MAX_THREADS || reps < 1 || reps > 100)
        return cli_fail("bench image: need -W and -H multiples of 64 in 64..2048, 1 <= -t <= %d, 1 <= -r <= 100", POOL_MAX_THREADS);
    sim_err err;
    pool *p;
    if (pool_new(&p, n_threads, &err) != SIM_OK) return cli_fail("%s", err.msg);
    const kern_ops *k = kern_get(KERN_BEST);
    op_ctx c = {.pool = p, .k = k};
    printf("%d threads, %s kernels; peak = register-only FMAs on every thread, measured around each timing\n", n_threads, k->name);
    bench_img b = {.lh = H / 8, .lw = W / 8};
    uint64_t t0 = time_ns();
    if (load(&b, dir, taesd_path, &err) != SIM_OK) {
        unload(&b);
        pool_free(p);
        return cli_fail("bench image: %s", err.msg);
    }
    printf("loaded in %.2f s\n", (double)(time_ns() - t0) / 1e9);
    char what[96];
    if (strstr(parts, "text")) rc = timed("text encoder (2 x 77 tokens)", run_text, &b, &c, reps);
    snprintf(what, sizeof what, "guided step %dx%d (2 U-Nets)", W, H);
    if (!rc && strstr(parts, "step")) rc = timed(what, run_step, &b, &c, reps);
    snprintf(what, sizeof what, "VAE decode %dx%d", W, H);
    if (!rc && strstr(parts, "vae")) rc = timed(what, run_vae, &b, &c, reps);
    for (int side = 8; !rc && b.t && strstr(parts, "taesd") && side <= 64; side *= 8) {
        b.t_side = side;
        snprintf(what, sizeof what, "TAESD decode %dx%d", 8 * side, 8 * side);
        rc = timed(what, run_taesd, &b, &c, reps);
    }
    struct rusage ru;
    getrusage(RUSAGE_SELF, &ru);
    printf("max RSS: %.0f MB\n", (double)ru.ru_maxrss / 1024);
    unload(&b);
    pool_free(p);
    return rc;
}
