// test_image_unet.c — the U-Net (src/image/unet.h) and the whole micro-sd15
// pipeline: one U-Net evaluation at t = 500 and a 4-step DDIM run with
// classifier-free guidance 7.5 followed by the VAE decode match the golden
// arrays of an independent PyTorch implementation (max |Δ| ≤ 1e-3 × max
// |reference|).
#include <stdio.h>
#include <string.h>

#include "base/file.h"
#include "image/clip_text.h"
#include "image/clip_tok.h"
#include "image/dsamp.h"
#include "image/unet.h"
#include "image/vae.h"
#include "test.h"

static dif_pipeline g_p;
static unet *g_u;
static unet_work *g_w;
static pool *g_pool;
static float g_ctx[2][77 * 32]; // prompt, negative (golden CLIP states)

static void test_load(void) {
    char dir[1024], path[1200];
    if (!test_shared_path(dir, sizeof dir, "diffusion/micro-sd15")) return;
    sim_err err = {0};
    if (dif_open(&g_p, dir, &err) != SIM_OK) {
        CHECK_MSG(0, "%s", err.msg);
        return;
    }
    dif_path(&g_p, "unet/diffusion_pytorch_model.safetensors", path, sizeof path, &err);
    st_file *f = NULL;
    CHECK_MSG(st_open(&f, path, &err) == SIM_OK, "%s", err.msg);
    if (f) CHECK_MSG(unet_load(&g_u, &g_p.unet, f, &err) == SIM_OK, "%s", err.msg);
    dif_unet_config bad = g_p.unet;
    bad.cross_dim = 48;
    unet *ub = NULL;
    if (f) {
        CHECK_EQ_INT(unet_load(&ub, &bad, f, &err), SIM_ERR_FORMAT);
        CHECK_MSG(strstr(err.msg, "attn2.to_k.weight' has shape [32, 32], expected [32, 48]") != NULL, "%s", err.msg);
    }
    st_close(f);
    if (g_u) CHECK_MSG(unet_work_new(&g_w, g_u, 8, 8, 77, &err) == SIM_OK, "%s", err.msg);
    unet_work *wb = NULL;
    if (g_u) CHECK_EQ_INT(unet_work_new(&wb, g_u, 7, 8, 77, &err), SIM_ERR_ARG); // sides must be even here
    test_golden_f32("diffusion/micro-sd15/clip.prompt.hidden.f32", g_ctx[0], 77 * 32);
    test_golden_f32("diffusion/micro-sd15/clip.negative.hidden.f32", g_ctx[1], 77 * 32);
}

static void test_unet_t500(void) {
    if (!g_w) return test_skip("micro-sd15 U-Net not loaded");
    static float x[256], ref[256], eps[256], eps1[256];
    if (!test_golden_f32("diffusion/micro-sd15/unet.in.latent.f32", x, 256) || !test_golden_f32("diffusion/micro-sd15/unet.out.t500.f32", ref, 256)) return;
    sim_err err = {0};
    op_ctx c = {.pool = g_pool, .k = kern_get(KERN_BEST)};
    CHECK_EQ_INT(unet_forward(g_u, g_w, &c, x, 8, 8, 500.0f, g_ctx[0], 77, eps, &err), SIM_OK);
    test_compare_rel("unet t=500 (2 threads)", eps, ref, 256, 1e-3);
    c.pool = NULL;
    CHECK_EQ_INT(unet_forward(g_u, g_w, &c, x, 8, 8, 500.0f, g_ctx[0], 77, eps1, &err), SIM_OK);
    CHECK(memcmp(eps, eps1, sizeof eps) == 0);
    c.ref = true;
    CHECK_EQ_INT(unet_forward(g_u, g_w, &c, x, 8, 8, 500.0f, g_ctx[0], 77, eps1, &err), SIM_OK);
    test_compare_rel("unet t=500 (reference ops)", eps1, ref, 256, 1e-3);
    CHECK_EQ_INT(unet_forward(g_u, g_w, &c, x, 10, 8, 500.0f, g_ctx[0], 77, eps1, &err), SIM_ERR_RANGE);
}

typedef struct guided {
    op_ctx *c;
    float *eu, *ec;
} guided;

// Classifier-free guidance 7.5: eps = eps(negative) + 7.5 (eps(prompt) - eps(negative)).
static sim_status guided_eps(void *ctx, const float *x, float t, float *eps, sim_err *err) {
    guided *g = ctx;
    sim_status st = unet_forward(g_u, g_w, g->c, x, 8, 8, t, g_ctx[1], 77, g->eu, err);
    if (st == SIM_OK) st = unet_forward(g_u, g_w, g->c, x, 8, 8, t, g_ctx[0], 77, g->ec, err);
    for (int i = 0; i < 256 && st == SIM_OK; i++) eps[i] = g->eu[i] + 7.5f * (g->ec[i] - g->eu[i]);
    return st;
}

// The whole run: DDIM (eta 0) over 999, 749, 499, 249 (then alpha 1), guidance 7.5.
static void test_pipeline(void) {
    if (!g_w) return test_skip("micro-sd15 U-Net not loaded");
    static float x[256], ref[256], eu[256], ec[256], img[768], iref[768];
    if (!test_golden_f32("diffusion/micro-sd15/unet.in.latent.f32", x, 256) || !test_golden_f32("diffusion/micro-sd15/pipeline.final_latent.f32", ref, 256) ||
        !test_golden_f32("diffusion/micro-sd15/pipeline.image.f32", iref, 768))
        return;
    dsamp_schedule sch;
    dsamp_schedule_sd(&sch);
    int ts[4];
    dsamp_timesteps(&sch, 4, ts); // trailing: 999, 749, 499, 249, as the golden run
    CHECK(ts[0] == 999 && ts[3] == 249);
    sim_err err = {0};
    op_ctx c = {.pool = g_pool, .k = kern_get(KERN_BEST)};
    guided gd = {&c, eu, ec};
    static float work[3 * 256];
    CHECK_EQ_INT(dsamp_run(&sch, &(dsamp_params){.kind = DSAMP_DDIM}, ts, 4, x, 256, work, guided_eps, &gd, &err), SIM_OK);
    test_compare_rel("DDIM final latent", x, ref, 256, 1e-3);
    // Decode with the full VAE.
    char path[1200];
    dif_path(&g_p, "vae/diffusion_pytorch_model.safetensors", path, sizeof path, &err);
    st_file *f = NULL;
    vae *v = NULL;
    vae_work *vw = NULL;
    CHECK_MSG(st_open(&f, path, &err) == SIM_OK, "%s", err.msg);
    if (f) CHECK_MSG(vae_load(&v, &g_p.vae, f, &err) == SIM_OK, "%s", err.msg);
    st_close(f);
    if (v) CHECK_MSG(vae_work_new(&vw, v, 8, 8, &err) == SIM_OK, "%s", err.msg);
    if (vw) {
        for (int i = 0; i < 256; i++) x[i] /= g_p.vae.scaling_factor;
        CHECK_EQ_INT(vae_decode(v, vw, &c, x, 8, 8, img, &err), SIM_OK);
        test_compare_rel("pipeline image", img, iref, 768, 1e-3);
    }
    vae_work_free(vw);
    vae_free(v);
}

int main(int argc, char **argv) {
    test_init(argc, argv);
    sim_err err;
    if (pool_new(&g_pool, 2, &err) != SIM_OK) return 1;
    TEST_RUN(test_load);
    TEST_RUN(test_unet_t500);
    TEST_RUN(test_pipeline);
    unet_work_free(g_w);
    unet_free(g_u);
    pool_free(g_pool);
    return test_finish();
}
