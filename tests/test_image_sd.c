// test_image_sd.c — the text-to-image pipeline (src/image/sd.h) on
// micro-sd15 from the prompt string: tokenizer, CLIP, a 4-step guided DDIM
// run from the golden initial latent and the VAE decode reproduce the
// golden final latent and image (max |Δ| ≤ 1e-3 × max |reference|); the
// step callback's x0; previews; a tiny autoencoder attached for previews
// and the final decode.
#include <stdio.h>
#include <string.h>

#include "base/file.h"
#include "image/diffusers.h"
#include "image/sd.h"
#include "image/sdwrite.h"
#include "image/stwrite.h"
#include "image/taesd.h"
#include "image/unet.h"
#include "image/vae.h"
#include "test.h"

static char g_tmp[64];

static int g_steps_seen;
static float g_x0[256]; // the last step's denoised estimate (micro-sd15: 4 × 8 × 8)
static bool on_step(void *ud, int step, int steps, double s, const float *latent) {
    (void)s, (void)steps;
    g_steps_seen = step;
    memcpy(g_x0, latent, sizeof g_x0);
    return !ud || step < *(int *)ud;
}

static void test_micro_sd15(void) {
    char dir[1024];
    if (!test_shared_path(dir, sizeof dir, "diffusion/micro-sd15")) return;
    static float init[256], lref[256], iref[768], lat[256], img[768];
    if (!test_golden_f32("diffusion/micro-sd15/unet.in.latent.f32", init, 256) || !test_golden_f32("diffusion/micro-sd15/pipeline.final_latent.f32", lref, 256) ||
        !test_golden_f32("diffusion/micro-sd15/pipeline.image.f32", iref, 768))
        return;
    sd_model *m = NULL;
    sim_err err = {0};
    CHECK_MSG(sd_load(&m, dir, &err) == SIM_OK, "%s", err.msg);
    if (!m) return;
    CHECK_EQ_INT(sd_latent_channels(m), 4);
    CHECK_EQ_INT(sd_vae_factor(m), 2);
    pool *pl;
    CHECK(pool_new(&pl, 2, &err) == SIM_OK);
    op_ctx c = {.pool = pl, .k = kern_get(KERN_BEST)};
    sd_params p = sd_defaults();
    p.prompt = "1girl, cat ears, happy, bright green background, 3/4 body sprite";
    p.negative = "";
    p.width = p.height = 16;
    p.steps = 4;
    p.cfg = 7.5f;
    p.init_latent = init;
    p.on_step = on_step;
    CHECK_MSG(sd_generate(m, &c, &p, img, lat, &err) == SIM_OK, "%s", err.msg);
    CHECK_EQ_INT(g_steps_seen, 4);
    test_compare_rel("sd_generate final latent", lat, lref, 256, 1e-3);
    // DDIM's last step goes to ᾱ = 1: the final latent is that step's x0.
    CHECK(memcmp(g_x0, lat, sizeof g_x0) == 0);
    test_compare_rel("sd_generate image", img, iref, 768, 1e-3);
    // The same with explicit timesteps.
    static const int ts[4] = {999, 749, 499, 249};
    p.timesteps = ts;
    CHECK_EQ_INT(sd_generate(m, &c, &p, img, lat, &err), SIM_OK);
    test_compare_rel("explicit timesteps", lat, lref, 256, 1e-3);
    // Seeded noise reproduces; another sampler runs; stop after 2 steps.
    p.init_latent = NULL, p.timesteps = NULL, p.seed = 5, p.sampler = DSAMP_EULER_A;
    static float a[768], b[768];
    CHECK_EQ_INT(sd_generate(m, &c, &p, a, NULL, &err), SIM_OK);
    CHECK_EQ_INT(sd_generate(m, &c, &p, b, NULL, &err), SIM_OK);
    CHECK(memcmp(a, b, sizeof a) == 0);
    // Releasing the text encoder after each request changes nothing: it is read again.
    p.release_text = true;
    CHECK_EQ_INT(sd_generate(m, &c, &p, b, NULL, &err), SIM_OK);
    CHECK(memcmp(a, b, sizeof a) == 0);
    CHECK_EQ_INT(sd_generate(m, &c, &p, b, NULL, &err), SIM_OK);
    CHECK(memcmp(a, b, sizeof a) == 0);
    p.release_text = false;
    // Weighting: "(w:1)" is the plain prompt; another weight changes the result.
    static float c1[256], c2[256], c3[256];
    p.sampler = DSAMP_DDIM, p.init_latent = init, p.steps = 2;
    p.prompt = "cat ears, happy";
    CHECK_EQ_INT(sd_generate(m, &c, &p, a, c1, &err), SIM_OK);
    p.prompt = "(cat ears:1), happy";
    CHECK_EQ_INT(sd_generate(m, &c, &p, a, c2, &err), SIM_OK);
    CHECK(memcmp(c1, c2, sizeof c1) == 0);
    p.prompt = "(cat ears:1.4), happy";
    CHECK_EQ_INT(sd_generate(m, &c, &p, a, c3, &err), SIM_OK);
    CHECK(memcmp(c1, c3, sizeof c1) != 0);
    // A prompt of 2+ chunks runs (154 context tokens).
    char longp[1200] = "";
    for (int i = 0; i < 100; i++) strcat(longp, "cat, ");
    p.prompt = longp;
    CHECK_MSG(sd_generate(m, &c, &p, a, c3, &err) == SIM_OK, "%s", err.msg);
    p.steps = 4, p.init_latent = NULL, p.sampler = DSAMP_EULER_A, p.prompt = "x";
    int stop = 2;
    p.ud = &stop;
    CHECK_EQ_INT(sd_generate(m, &c, &p, a, NULL, &err), SIM_ERR_ABORTED);
    CHECK_EQ_INT(g_steps_seen, 2);
    p.ud = NULL;
    p.width = 14;
    CHECK_EQ_INT(sd_generate(m, &c, &p, a, NULL, &err), SIM_ERR_ARG);
    CHECK(strstr(err.msg, "multiples of 4") != NULL);
    p.width = 16, p.steps = 0;
    CHECK_EQ_INT(sd_generate(m, &c, &p, a, NULL, &err), SIM_ERR_ARG);
    // Preview without a tiny autoencoder: the linear map, each cell 2 × 2 pixels.
    // Cells (1, 0, 0, 0) and (0, 0, 0, 2): (1 + Σ l·K) · 127.5 by hand.
    static const float pl8[8] = {1, 0, 0, 0, 0, 0, 0, 2};
    static const uint8_t want[2][3] = {{165, 154, 154}, {81, 58, 7}};
    uint8_t rgb[2 * 4 * 3];
    CHECK_EQ_INT(sd_preview(m, &c, pl8, 1, 2, rgb, &err), SIM_OK);
    for (int y = 0; y < 2; y++)
        for (int x = 0; x < 4; x++)
            for (int o = 0; o < 3; o++) CHECK_EQ_INT(rgb[(y * 4 + x) * 3 + o], want[x / 2][o]);
    pool_free(pl);
    sd_free(m);
    CHECK_EQ_INT(sd_load(&m, "/nonexistent", &err), SIM_ERR_IO);
}

// 4 × 4 block means of a (3, 4h, 4w) image: the area resampling of a 4× downscale.
static void block_mean4(const float *src, int h, int w, float *dst) {
    for (int c = 0; c < 3; c++)
        for (int y = 0; y < h; y++)
            for (int x = 0; x < w; x++) {
                double s = 0;
                for (int dy = 0; dy < 4; dy++)
                    for (int dx = 0; dx < 4; dx++) s += src[((size_t)c * 4 * h + 4 * y + dy) * 4 * w + 4 * x + dx];
                dst[((size_t)c * h + y) * w + x] = (float)(s / 16);
            }
}

// A random 4-channel TAESD (sdwrite) attached to micro-sd15 (VAE factor 2):
// previews and the final decode are its decode of the unscaled latent,
// 4 × 4 area-averaged to 16 × 16 and mapped to [-1, 1].
static void test_taesd(void) {
    char dir[1024], tdir[128], path[1200];
    if (!test_shared_path(dir, sizeof dir, "diffusion/micro-sd15")) return;
    static float z[256], img64[3 * 64 * 64], want[768], img[768], lat[256];
    if (!test_golden_f32("diffusion/micro-sd15/unet.in.latent.f32", z, 256)) return;
    sim_err err = {0};
    snprintf(tdir, sizeof tdir, "%s/taesd", g_tmp);
    int64_t n_params;
    CHECK_MSG(sdw_write_taesd(tdir, 4, &(sdw_opts){.dtype = ST_F32, .seed = 11}, &n_params, &err) == SIM_OK, "%s", err.msg);
    // The reference: the tiny autoencoder alone.
    st_file *f = NULL;
    taesd *t = NULL;
    taesd_work *tw = NULL;
    snprintf(path, sizeof path, "%s/taesd_decoder.safetensors", tdir);
    CHECK_MSG(st_open(&f, path, &err) == SIM_OK, "%s", err.msg);
    if (f) CHECK_MSG(taesd_load(&t, f, NULL, &err) == SIM_OK, "%s", err.msg);
    st_close(f);
    if (!t) return;
    pool *pl;
    CHECK(pool_new(&pl, 2, &err) == SIM_OK);
    op_ctx c = {.pool = pl, .k = kern_get(KERN_BEST)};
    CHECK_EQ_INT(taesd_work_new(&tw, t, 8, 8, &err), SIM_OK);
    CHECK_EQ_INT(taesd_decode(t, tw, &c, z, 8, 8, img64, &err), SIM_OK);
    block_mean4(img64, 16, 16, want);
    sd_model *m = NULL;
    CHECK_MSG(sd_load(&m, dir, &err) == SIM_OK, "%s", err.msg);
    if (!m) goto done;
    // Refusals leave the model without one.
    snprintf(path, sizeof path, "%s/none.safetensors", g_tmp);
    CHECK_EQ_INT(sd_attach_taesd(m, path, &err), SIM_ERR_IO);
    CHECK(strstr(err.msg, "none.safetensors: no such file or folder") != NULL);
    CHECK_EQ_INT(sd_attach_taesd(m, g_tmp, &err), SIM_ERR_IO);
    CHECK(strstr(err.msg, "no tiny autoencoder") != NULL);
    char t2[1200];
    if (test_shared_path(t2, sizeof t2, "diffusion/taef2/taef2_decoder.pth")) {
        CHECK_EQ_INT(sd_attach_taesd(m, t2, &err), SIM_ERR_UNSUPPORTED);
        CHECK(strstr(err.msg, "32 latent channels, the model has 4") != NULL);
    }
    CHECK(!sd_has_taesd(m));
    CHECK_MSG(sd_attach_taesd(m, tdir, &err) == SIM_OK, "%s", err.msg);
    CHECK(sd_has_taesd(m));
    uint8_t rgb[768];
    CHECK_MSG(sd_preview(m, &c, z, 8, 8, rgb, &err) == SIM_OK, "%s", err.msg);
    int worst = 0;
    for (int i = 0; i < 256; i++)
        for (int o = 0; o < 3; o++) worst = MAX(worst, abs(rgb[i * 3 + o] - (int)lrintf(fminf(fmaxf(want[o * 256 + i], 0), 1) * 255)));
    CHECK_MSG(worst <= 1, "preview off by %d", worst);
    // The final decode through it.
    sd_params p = sd_defaults();
    p.prompt = "a cat", p.width = p.height = 16, p.steps = 2, p.seed = 3, p.taesd_decode = true;
    CHECK_MSG(sd_generate(m, &c, &p, img, lat, &err) == SIM_OK, "%s", err.msg);
    CHECK_EQ_INT(taesd_decode(t, tw, &c, lat, 8, 8, img64, &err), SIM_OK);
    block_mean4(img64, 16, 16, want);
    for (int i = 0; i < 768; i++) want[i] = want[i] * 2 - 1;
    test_compare_rel("tiny autoencoder decode", img, want, 768, 1e-5);
    sd_detach_taesd(m);
    CHECK_EQ_INT(sd_generate(m, &c, &p, img, lat, &err), SIM_ERR_ARG);
    CHECK(strstr(err.msg, "none is attached") != NULL);
done:
    sd_free(m);
    taesd_work_free(tw);
    taesd_free(t);
    pool_free(pl);
}

static int g_count; // steps seen by count_steps
static bool count_steps(void *ud, int step, int steps, double s, const float *latent) {
    (void)ud, (void)step, (void)steps, (void)s, (void)latent;
    g_count++;
    return true;
}

// The pipeline pieces the img2img and inpainting tests recompute by hand.
typedef struct fixture {
    sd_model *m;
    pool *pl;
    op_ctx c;
    vae *v;
    vae_work *vw;
    float sf;
    float img[768];     // (3, 16, 16): the golden VAE input
    float moments[512]; // its encoding (mean, log-variance)
} fixture;

static bool fixture_open(fixture *fx) {
    char dir[1024], path[1200];
    memset(fx, 0, sizeof *fx);
    if (!test_shared_path(dir, sizeof dir, "diffusion/micro-sd15")) return false;
    if (!test_golden_f32("diffusion/micro-sd15/vae.encode.in.f32", fx->img, 768)) return false;
    sim_err err = {0};
    dif_pipeline dp;
    st_file *f = NULL;
    CHECK_MSG(sd_load(&fx->m, dir, &err) == SIM_OK, "%s", err.msg);
    CHECK_MSG(dif_open(&dp, dir, &err) == SIM_OK, "%s", err.msg);
    snprintf(path, sizeof path, "%s/vae/diffusion_pytorch_model.safetensors", dir);
    CHECK_MSG(st_open(&f, path, &err) == SIM_OK, "%s", err.msg);
    if (f) CHECK_MSG(vae_load(&fx->v, &dp.vae, f, &err) == SIM_OK, "%s", err.msg);
    st_close(f);
    CHECK(pool_new(&fx->pl, 2, &err) == SIM_OK);
    fx->c = (op_ctx){.pool = fx->pl, .k = kern_get(KERN_BEST)};
    if (!fx->m || !fx->v || !fx->pl) return false;
    fx->sf = dp.vae.scaling_factor;
    CHECK_EQ_INT(vae_work_new(&fx->vw, fx->v, 8, 8, &err), SIM_OK);
    CHECK_EQ_INT(vae_encode(fx->v, fx->vw, &fx->c, fx->img, 16, 16, fx->moments, &err), SIM_OK);
    return true;
}

static void fixture_close(fixture *fx) {
    sd_free(fx->m);
    vae_work_free(fx->vw);
    vae_free(fx->v);
    pool_free(fx->pl);
}

// img2img: strength 0 is the decoded encoding, 1 is txt2img, ½ of 4 steps is
// the last 2 steps of txt2img from the init latent noised to t = 499.
static void test_img2img(void) {
    fixture fx;
    if (!fixture_open(&fx)) {
        fixture_close(&fx);
        return;
    }
    sim_err err = {0};
    static float a[768], b[768], la[256], lb[256], want[768], x[256];
    sd_params p = sd_defaults();
    p.prompt = "a cat", p.width = p.height = 16, p.steps = 4, p.seed = 9, p.init_image = fx.img, p.strength = 0;
    p.on_step = count_steps;
    g_count = 0;
    CHECK_MSG(sd_generate(fx.m, &fx.c, &p, a, la, &err) == SIM_OK, "%s", err.msg);
    CHECK_EQ_INT(g_count, 0);
    CHECK_EQ_INT(vae_decode(fx.v, fx.vw, &fx.c, fx.moments, 8, 8, want, &err), SIM_OK);
    CHECK(memcmp(a, want, sizeof a) == 0);
    for (int i = 0; i < 256; i++) CHECK(la[i] == fx.moments[i] * fx.sf);
    // Strength 1: txt2img with the same seed, bit for bit.
    p.strength = 1;
    CHECK_EQ_INT(sd_generate(fx.m, &fx.c, &p, a, la, &err), SIM_OK);
    sd_params t = p;
    t.init_image = NULL;
    CHECK_EQ_INT(sd_generate(fx.m, &fx.c, &t, b, lb, &err), SIM_OK);
    CHECK(memcmp(a, b, sizeof a) == 0 && memcmp(la, lb, sizeof la) == 0);
    // Strength ½: 2 of 4 steps (999, 749, 499, 249) run, from 499.
    p.strength = 0.5f;
    g_count = 0;
    CHECK_EQ_INT(sd_generate(fx.m, &fx.c, &p, a, la, &err), SIM_OK);
    CHECK_EQ_INT(g_count, 2);
    dsamp_schedule sch;
    dsamp_schedule_sd(&sch);
    dsamp_gauss(9, x, 256);
    double acp = sch.acp[499];
    for (int i = 0; i < 256; i++) x[i] = (float)(sqrt(acp) * (fx.moments[i] * fx.sf) + sqrt(1 - acp) * x[i]);
    static const int ts[2] = {499, 249};
    t.init_latent = x, t.timesteps = ts, t.steps = 2;
    CHECK_EQ_INT(sd_generate(fx.m, &fx.c, &t, b, lb, &err), SIM_OK);
    CHECK(memcmp(la, lb, sizeof la) == 0);
    p.strength = 1.5f;
    CHECK_EQ_INT(sd_generate(fx.m, &fx.c, &p, a, la, &err), SIM_ERR_ARG);
    CHECK(strstr(err.msg, "denoising strength 1.5") != NULL);
    fixture_close(&fx);
}

// Inpainting with the 4-channel U-Net: where the (latent) mask is 0 the
// final latent is the init latent bit for bit, where it is 1 it changes; a
// soft mask m gives m·(the unmasked result) + (1 - m)·init after one step.
static void test_inpaint(void) {
    fixture fx;
    if (!fixture_open(&fx)) {
        fixture_close(&fx);
        return;
    }
    sim_err err = {0};
    static float a[768], la[256], lb[256], mask[256];
    for (int y = 0; y < 16; y++)
        for (int x = 0; x < 16; x++) mask[y * 16 + x] = x < 8 ? 1.0f : 0.0f; // repaint the left half
    sd_params p = sd_defaults();
    p.prompt = "a cat", p.width = p.height = 16, p.steps = 4, p.seed = 9, p.init_image = fx.img, p.strength = 0.75f, p.mask = mask;
    p.sampler = DSAMP_EULER_A;
    CHECK_MSG(sd_generate(fx.m, &fx.c, &p, a, la, &err) == SIM_OK, "%s", err.msg);
    int kept = 0, changed = 0;
    for (int c = 0; c < 4; c++)
        for (int y = 0; y < 8; y++)
            for (int x = 0; x < 8; x++) {
                int i = (c * 8 + y) * 8 + x;
                if (x >= 4) kept += la[i] == fx.moments[i] * fx.sf;
                else changed += la[i] != fx.moments[i] * fx.sf;
            }
    CHECK_EQ_INT(kept, 128);
    CHECK_EQ_INT(changed, 128);
    // A blur spreads the repainted area: latent column 4 now changes too.
    p.mask_blur = 2;
    CHECK_EQ_INT(sd_generate(fx.m, &fx.c, &p, a, lb, &err), SIM_OK);
    CHECK(lb[4] != fx.moments[4] * fx.sf);
    // Soft: m = ¼ everywhere, one step from pure noise.
    for (int i = 0; i < 256; i++) mask[i] = 0.25f;
    p.mask_blur = 0, p.steps = 1, p.strength = 1, p.sampler = DSAMP_DDIM;
    CHECK_EQ_INT(sd_generate(fx.m, &fx.c, &p, a, la, &err), SIM_OK);
    sd_params t = p;
    t.init_image = NULL, t.mask = NULL;
    CHECK_EQ_INT(sd_generate(fx.m, &fx.c, &t, a, lb, &err), SIM_OK);
    for (int i = 0; i < 256; i++) lb[i] = (float)(0.25 * lb[i] + 0.75 * (fx.moments[i] * fx.sf));
    test_compare_rel("soft mask blend", la, lb, 256, 1e-6);
    CHECK(memcmp(la, lb, sizeof la) == 0);
    t.mask = mask;
    CHECK_EQ_INT(sd_generate(fx.m, &fx.c, &t, a, lb, &err), SIM_ERR_ARG);
    CHECK(strstr(err.msg, "a mask needs an init image") != NULL);
    fixture_close(&fx);
}

// The micro-sd15 U-Net widened to 9 input channels: conv_in's first 4 input
// channels are the original ones, the 5 new ones small fixed values.
static sim_status widen_fill(void *ud, int i, float *out, sim_err *err) {
    const st_file *f = ud;
    const st_tensor *t = &f->tensors[i];
    if (strcmp(t->name, "conv_in.weight") != 0) return st_read_f32(f, t->name, NULL, 0, out, err);
    int64_t co = t->shape[0];
    static float w[32 * 4 * 9];
    if (t->n_elem > (int64_t)ARRAY_LEN(w)) return err_set(err, SIM_ERR_RANGE, "conv_in is larger than the test expects");
    sim_status st = st_read_f32(f, t->name, NULL, 0, w, err);
    for (int64_t o = 0; o < co && st == SIM_OK; o++)
        for (int c = 0; c < 9; c++)
            for (int k = 0; k < 9; k++)
                out[(o * 9 + c) * 9 + k] = c < 4 ? w[(o * 4 + c) * 9 + k] : 0.05f * sinf((float)(o * 81 + c * 9 + k));
    return st;
}

static bool make_inpaint_model(const char *src, const char *dst) {
    char cmd[2600], path[1300];
    snprintf(cmd, sizeof cmd, "cp -r '%s' '%s'", src, dst);
    if (system(cmd) != 0) return false;
    sim_err err = {0};
    char *cfg = NULL;
    size_t len;
    snprintf(path, sizeof path, "%s/unet/config.json", dst);
    if (file_read_all(path, 1 << 20, &cfg, &len, &err) != SIM_OK) return false;
    char *at = strstr(cfg, "\"in_channels\": 4");
    bool ok = at != NULL;
    if (ok) at[strlen("\"in_channels\": ")] = '9';
    if (ok) ok = file_write_all(path, cfg, len, &err) == SIM_OK;
    mem_free(cfg);
    st_file *f = NULL;
    snprintf(path, sizeof path, "%s/unet/diffusion_pytorch_model.safetensors", src);
    if (!ok || st_open(&f, path, &err) != SIM_OK) return false;
    stw_entry *e = calloc((size_t)f->n_tensors, sizeof *e);
    for (int i = 0; e && i < f->n_tensors; i++) {
        const st_tensor *t = &f->tensors[i];
        snprintf(e[i].name, sizeof e[i].name, "%s", t->name);
        e[i].n_dims = t->n_dims;
        memcpy(e[i].shape, t->shape, sizeof t->shape);
        if (strcmp(t->name, "conv_in.weight") == 0) e[i].shape[1] = 9;
    }
    snprintf(path, sizeof path, "%s/unet/diffusion_pytorch_model.safetensors", dst);
    ok = e && stw_write(path, e, f->n_tensors, ST_F32, NULL, widen_fill, f, &err) == SIM_OK;
    CHECK_MSG(ok, "%s", err.msg);
    free(e);
    st_close(f);
    return ok;
}

// A 9-channel inpainting U-Net: one DDIM step from pure noise with guidance
// 1 gives x0 = (x - √(1-ᾱ) ε) / √ᾱ at t = 999, with ε the U-Net on
// concat(noise, latent mask, latent of the image with its left half zeroed),
// built here by hand (the context: the golden CLIP states of the prompt).
static void test_inpaint_9ch(void) {
    char src[1024], dst[128], path[1200];
    if (!test_shared_path(src, sizeof src, "diffusion/micro-sd15")) return;
    static float img[768], masked[768], mom[512], ctx[77 * 32], in[9 * 64], eps[256], want[256], lat[256], out[768], mask[256];
    if (!test_golden_f32("diffusion/micro-sd15/vae.encode.in.f32", img, 768) ||
        !test_golden_f32("diffusion/micro-sd15/clip.prompt.hidden.f32", ctx, 77 * 32))
        return;
    snprintf(dst, sizeof dst, "%s/inpaint", g_tmp);
    if (!make_inpaint_model(src, dst)) {
        CHECK_MSG(false, "could not write the 9-channel model in %s", dst);
        return;
    }
    sim_err err = {0};
    sd_model *m = NULL;
    dif_pipeline dp;
    st_file *f = NULL;
    unet *u = NULL;
    vae *v = NULL;
    unet_work *uw = NULL;
    vae_work *vw = NULL;
    pool *pl = NULL;
    CHECK_MSG(sd_load(&m, dst, &err) == SIM_OK, "%s", err.msg);
    CHECK_MSG(dif_open(&dp, dst, &err) == SIM_OK, "%s", err.msg);
    CHECK_EQ_INT(dp.unet.in_ch, 9);
    snprintf(path, sizeof path, "%s/unet/diffusion_pytorch_model.safetensors", dst);
    if (st_open(&f, path, &err) == SIM_OK) CHECK_MSG(unet_load(&u, &dp.unet, f, &err) == SIM_OK, "%s", err.msg);
    st_close(f);
    f = NULL;
    snprintf(path, sizeof path, "%s/vae/diffusion_pytorch_model.safetensors", dst);
    if (st_open(&f, path, &err) == SIM_OK) CHECK_MSG(vae_load(&v, &dp.vae, f, &err) == SIM_OK, "%s", err.msg);
    st_close(f);
    CHECK(pool_new(&pl, 2, &err) == SIM_OK);
    if (!m || !u || !v || !pl) goto done;
    op_ctx c = {.pool = pl, .k = kern_get(KERN_BEST)};
    for (int y = 0; y < 16; y++)
        for (int x = 0; x < 16; x++) mask[y * 16 + x] = x < 8 ? 1.0f : 0.0f;
    sd_params p = sd_defaults();
    p.prompt = "1girl, cat ears, happy, bright green background, 3/4 body sprite";
    p.width = p.height = 16, p.steps = 1, p.cfg = 1, p.seed = 9, p.init_image = img, p.strength = 1, p.mask = mask;
    CHECK_MSG(sd_generate(m, &c, &p, out, lat, &err) == SIM_OK, "%s", err.msg);
    // By hand: the masked image, its encoding, the input channels.
    for (int ch = 0; ch < 3; ch++)
        for (int i = 0; i < 256; i++) masked[ch * 256 + i] = i % 16 < 8 ? 0.0f : img[ch * 256 + i];
    CHECK_EQ_INT(vae_work_new(&vw, v, 8, 8, &err), SIM_OK);
    CHECK_EQ_INT(vae_encode(v, vw, &c, masked, 16, 16, mom, &err), SIM_OK);
    dsamp_gauss(9, in, 256);
    for (int i = 0; i < 64; i++) in[256 + i] = i % 8 < 4 ? 1.0f : 0.0f;
    for (int i = 0; i < 256; i++) in[320 + i] = mom[i] * dp.vae.scaling_factor;
    CHECK_EQ_INT(unet_work_new(&uw, u, 8, 8, 77, &err), SIM_OK);
    CHECK_EQ_INT(unet_forward(u, uw, &c, in, 8, 8, 999.0f, ctx, 77, eps, &err), SIM_OK);
    dsamp_schedule sch;
    dsamp_schedule_sd(&sch);
    double a = sch.acp[999];
    for (int i = 0; i < 256; i++) want[i] = (float)((in[i] - sqrt(1 - a) * eps[i]) / sqrt(a));
    test_compare_rel("9-channel inpainting step", lat, want, 256, 1e-3);
    // Without a mask it is refused.
    p.mask = NULL;
    CHECK_EQ_INT(sd_generate(m, &c, &p, out, lat, &err), SIM_ERR_ARG);
    CHECK(strstr(err.msg, "inpainting U-Net (9 input channels) needs") != NULL);
done:
    sd_free(m);
    unet_work_free(uw);
    vae_work_free(vw);
    unet_free(u);
    vae_free(v);
    pool_free(pl);
}

// Slerp against hand-computed values; variation noise: strength 0 is the
// seed's image, 1 the variation seed's (DDIM: no other noise), ½ neither.
static void test_variations(void) {
    float out[2];
    sd_slerp((float[]){1, 0}, (float[]){0, 1}, 2, 0.5, out); // ω = π/2: sin(π/4) each
    CHECK_NEAR(out[0], 0.70710678, 1e-7);
    CHECK_NEAR(out[1], 0.70710678, 1e-7);
    sd_slerp((float[]){2, 0}, (float[]){0, 3}, 2, 1.0 / 3, out); // sin(π/3), sin(π/6), lengths kept
    CHECK_NEAR(out[0], 2 * 0.8660254, 1e-6);
    CHECK_NEAR(out[1], 3 * 0.5, 1e-6);
    float a[3] = {1, 2, 2}, b[3] = {-2, 1, 2}; // cos ω = 4/9
    float r[3];
    sd_slerp(a, b, 3, 0.25, r);
    double om = acos(4.0 / 9), ka = sin(0.75 * om) / sin(om), kb = sin(0.25 * om) / sin(om);
    for (int i = 0; i < 3; i++) CHECK_NEAR(r[i], ka * a[i] + kb * b[i], 1e-6);
    sd_slerp((float[]){1, 1}, (float[]){2, 2}, 2, 0.25, out); // parallel: lerp
    CHECK_NEAR(out[0], 1.25, 1e-7);
    sd_slerp((float[]){1, 0}, (float[]){-1, 0}, 2, 0.5, out); // opposite: lerp
    CHECK_NEAR(out[0], 0, 1e-7);
    sd_slerp(a, b, 3, 1, r);
    CHECK(memcmp(r, b, sizeof r) == 0);
    fixture fx;
    if (!fixture_open(&fx)) {
        fixture_close(&fx);
        return;
    }
    sim_err err = {0};
    static float img[768], l0[256], l1[256], l2[256], lv[256];
    sd_params p = sd_defaults();
    p.prompt = "a cat", p.width = p.height = 16, p.steps = 2, p.seed = 9;
    CHECK_EQ_INT(sd_generate(fx.m, &fx.c, &p, img, l0, &err), SIM_OK);
    p.seed = 10;
    CHECK_EQ_INT(sd_generate(fx.m, &fx.c, &p, img, l1, &err), SIM_OK);
    p.seed = 9, p.subseed = 10, p.subseed_strength = 1;
    CHECK_EQ_INT(sd_generate(fx.m, &fx.c, &p, img, l2, &err), SIM_OK);
    CHECK(memcmp(l1, l2, sizeof l1) == 0);
    p.subseed_strength = 0;
    CHECK_EQ_INT(sd_generate(fx.m, &fx.c, &p, img, l2, &err), SIM_OK);
    CHECK(memcmp(l0, l2, sizeof l0) == 0);
    p.subseed_strength = 0.5f;
    CHECK_EQ_INT(sd_generate(fx.m, &fx.c, &p, img, lv, &err), SIM_OK);
    CHECK(memcmp(lv, l0, sizeof lv) != 0 && memcmp(lv, l1, sizeof lv) != 0);
    p.subseed_strength = -0.5f;
    CHECK_EQ_INT(sd_generate(fx.m, &fx.c, &p, img, lv, &err), SIM_ERR_ARG);
    fixture_close(&fx);
}

// Every allocation of an inpainting request failing in turn: SIM_ERR_NOMEM
// or the undisturbed result (an optional allocation), nothing leaked
// (ASan), and the next request gives the undisturbed result.
static void test_alloc_failures(void) {
    fixture fx;
    if (!fixture_open(&fx)) {
        fixture_close(&fx);
        return;
    }
    sim_err err = {0};
    static float img[768], want[256], lat[256], mask[256];
    for (int i = 0; i < 256; i++) mask[i] = i % 16 < 8 ? 1.0f : 0.0f;
    sd_params p = sd_defaults();
    p.prompt = "a cat", p.width = p.height = 16, p.steps = 2, p.seed = 9, p.init_image = fx.img, p.strength = 0.5f, p.mask = mask;
    p.mask_blur = 1, p.subseed = 3, p.subseed_strength = 0.25f;
    CHECK_EQ_INT(sd_generate(fx.m, &fx.c, &p, img, want, &err), SIM_OK);
    int n = 0;
    for (; n < 500; n++) {
        mem_fail_after(n);
        sim_status st = sd_generate(fx.m, &fx.c, &p, img, lat, &err);
        bool failed = mem_fail_triggered();
        mem_fail_after(-1);
        if (!failed) {
            CHECK_EQ_INT(st, SIM_OK);
            break;
        }
        // Some allocations are optional (their users fall back): then the result is unchanged.
        CHECK_MSG(st == SIM_ERR_NOMEM || (st == SIM_OK && memcmp(lat, want, sizeof lat) == 0), "allocation %d: status %d", n, st);
    }
    CHECK(n > 3 && n < 500);
    CHECK_EQ_INT(sd_generate(fx.m, &fx.c, &p, img, lat, &err), SIM_OK);
    CHECK(memcmp(lat, want, sizeof lat) == 0);
    fixture_close(&fx);
}

// tokenizer/special_tokens_map.json's pad_token fills the window after the
// end token: "!" (SD 2.x, id 0) changes the image, the end token spelled out
// does not, both spellings of the field agree, bad values are refused.
static sim_status pad_run(const char *dir, const char *map, float *lat, sim_err *err) {
    char path[1300];
    snprintf(path, sizeof path, "%s/tokenizer/special_tokens_map.json", dir);
    remove(path);
    if (map && file_write_all(path, map, strlen(map), err) != SIM_OK) return SIM_ERR_IO;
    sd_model *m = NULL;
    sim_status st = sd_load(&m, dir, err);
    if (st != SIM_OK) return st;
    sd_params p = sd_defaults();
    p.prompt = "cat ears", p.width = p.height = 16, p.steps = 2, p.seed = 3;
    float img[768];
    op_ctx c = {.k = kern_get(KERN_BEST)};
    st = sd_generate(m, &c, &p, img, lat, err);
    sd_free(m);
    return st;
}

static void test_pad_token(void) {
    char src[1024], dir[1200], cmd[2600];
    if (!test_shared_path(src, sizeof src, "diffusion/micro-sd15")) return;
    snprintf(dir, sizeof dir, "%s/pad", g_tmp);
    snprintf(cmd, sizeof cmd, "cp -r '%s' '%s'", src, dir);
    CHECK(system(cmd) == 0);
    clip_tok *t = NULL;
    sim_err err = {0};
    char v[1300], mg[1300];
    snprintf(v, sizeof v, "%s/tokenizer/vocab.json", dir);
    snprintf(mg, sizeof mg, "%s/tokenizer/merges.txt", dir);
    CHECK_MSG(clip_tok_load(&t, v, mg, &err) == SIM_OK, "%s", err.msg);
    if (t) CHECK(clip_tok_id(t, "!") == 0 && clip_tok_id(t, "!</w>") == 256 && clip_tok_id(t, "<|endoftext|>") == 49407 && clip_tok_id(t, "nope!") == -1);
    clip_tok_free(t);
    static float a[256], b[256], e[256], o[256];
    CHECK_MSG(pad_run(dir, NULL, a, &err) == SIM_OK, "%s", err.msg);
    CHECK_MSG(pad_run(dir, "{\"pad_token\": \"<|endoftext|>\"}", e, &err) == SIM_OK, "%s", err.msg);
    CHECK(memcmp(a, e, sizeof a) == 0);
    CHECK_MSG(pad_run(dir, "{\"pad_token\": \"!\"}", b, &err) == SIM_OK, "%s", err.msg);
    CHECK(memcmp(a, b, sizeof a) != 0);
    CHECK_MSG(pad_run(dir, "{\"pad_token\": {\"content\": \"!\", \"lstrip\": false}}", o, &err) == SIM_OK, "%s", err.msg);
    CHECK(memcmp(b, o, sizeof b) == 0);
    CHECK_EQ_INT(pad_run(dir, "{\"pad_token\": \"nope!\"}", o, &err), SIM_ERR_FORMAT);
    CHECK(strstr(err.msg, "pad_token 'nope!' is not in the tokenizer's vocabulary") != NULL);
    CHECK_EQ_INT(pad_run(dir, "{\"pad_token\": 7}", o, &err), SIM_ERR_FORMAT);
    CHECK(strstr(err.msg, "special_tokens_map.json: pad_token: expected a string") != NULL);
    CHECK_EQ_INT(pad_run(dir, "{\"pad_token\": ", o, &err), SIM_ERR_FORMAT);
    CHECK(strstr(err.msg, "special_tokens_map.json: line 1") != NULL);
}

int main(int argc, char **argv) {
    test_init(argc, argv);
    snprintf(g_tmp, sizeof g_tmp, "/tmp/sim_test_sd_XXXXXX");
    if (!mkdtemp(g_tmp)) {
        perror("mkdtemp");
        return 1;
    }
    TEST_RUN(test_micro_sd15);
    TEST_RUN(test_taesd);
    TEST_RUN(test_img2img);
    TEST_RUN(test_inpaint);
    TEST_RUN(test_inpaint_9ch);
    TEST_RUN(test_variations);
    TEST_RUN(test_alloc_failures);
    TEST_RUN(test_pad_token);
    char cmd[128];
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", g_tmp);
    if (system(cmd) != 0) fprintf(stderr, "could not remove %s\n", g_tmp);
    return test_finish();
}
