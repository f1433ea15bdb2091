// test_image_sd.c — the text-to-image pipeline (src/image/sd.h) on
// micro-sd15 from the prompt string: tokenizer, CLIP, a 4-step guided DDIM
// run from the golden initial latent and the VAE decode reproduce the
// golden final latent and image (max |Δ| ≤ 1e-3 × max |reference|); the
// step callback's x0; previews; a tiny autoencoder attached for previews
// and the final decode.
#include <stdio.h>
#include <string.h>

#include "base/file.h"
#include "image/sd.h"
#include "image/sdwrite.h"
#include "image/taesd.h"
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
    CHECK(strstr(err.msg, "none.safetensors") != NULL);
    CHECK_EQ_INT(sd_attach_taesd(m, g_tmp, &err), SIM_ERR_IO);
    CHECK(strstr(err.msg, "no taesd_decoder.safetensors or taesd_decoder.pth") != NULL);
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

int main(int argc, char **argv) {
    test_init(argc, argv);
    snprintf(g_tmp, sizeof g_tmp, "/tmp/sim_test_sd_XXXXXX");
    if (!mkdtemp(g_tmp)) {
        perror("mkdtemp");
        return 1;
    }
    TEST_RUN(test_micro_sd15);
    TEST_RUN(test_taesd);
    char cmd[128];
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", g_tmp);
    if (system(cmd) != 0) fprintf(stderr, "could not remove %s\n", g_tmp);
    return test_finish();
}
