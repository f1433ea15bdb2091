// test_image_taesd.c — the tiny autoencoder (src/image/taesd.h) with the
// real taef2 weights read from their .pth files: decoder (square and
// rectangular latents) and encoder match the golden outputs of the
// published PyTorch reference (max |Δ| ≤ 1e-3 × max |reference|).
#include <stdio.h>
#include <string.h>

#include "base/file.h"
#include "image/pth.h"
#include "image/taesd.h"
#include "test.h"

// A new array holding the golden file's n floats (mem_free), or NULL.
static float *golden(const char *rel, size_t n) {
    float *v = mem_alloc(n * sizeof *v);
    if (v && !test_golden_f32(rel, v, n)) {
        mem_free(v);
        return NULL;
    }
    return v;
}

static taesd *g_m;
static pool *g_pool;

static void test_load(void) {
    char dp[1024], ep[1024];
    if (!test_shared_path(dp, sizeof dp, "diffusion/taef2/taef2_decoder.pth") ||
        !test_shared_path(ep, sizeof ep, "diffusion/taef2/taef2_encoder.pth"))
        return;
    st_file *d = NULL, *e = NULL;
    sim_err err = {0};
    CHECK_MSG(pth_open(&d, dp, &err) == SIM_OK, "%s", err.msg);
    CHECK_MSG(pth_open(&e, ep, &err) == SIM_OK, "%s", err.msg);
    if (d && e) CHECK_MSG(taesd_load(&g_m, d, e, &err) == SIM_OK, "%s", err.msg);
    if (g_m) CHECK_EQ_INT(taesd_latent_channels(g_m), 32);
    // The halves swapped are refused.
    taesd *bad = NULL;
    if (d && e) {
        CHECK_EQ_INT(taesd_load(&bad, e, d, &err), SIM_ERR_FORMAT);
        CHECK(strstr(err.msg, "not a tiny autoencoder decoder") != NULL);
    }
    CHECK_EQ_INT(taesd_load(&bad, NULL, NULL, &err), SIM_ERR_ARG);
    st_close(d);
    st_close(e);
}

static void decode_case(const char *name, int lh, int lw) {
    if (!g_m) return test_skip("taef2 not loaded");
    char in[128], out[128];
    snprintf(in, sizeof in, "diffusion/taef2/taef2_decoder.%s.in.f32", name);
    snprintf(out, sizeof out, "diffusion/taef2/taef2_decoder.%s.out.f32", name);
    size_t no = (size_t)3 * 64 * lh * lw;
    float *z = golden(in, (size_t)32 * lh * lw), *ref = golden(out, no);
    taesd_work *w = NULL;
    sim_err err = {0};
    CHECK_MSG(taesd_work_new(&w, g_m, lh, lw, &err) == SIM_OK, "%s", err.msg);
    if (z && ref && w) {
        float *img = malloc(no * sizeof *img), *img1 = malloc(no * sizeof *img1);
        op_ctx c = {.pool = g_pool, .k = kern_get(KERN_BEST)};
        uint64_t t0 = time_ns();
        CHECK_EQ_INT(taesd_decode(g_m, w, &c, z, lh, lw, img, &err), SIM_OK);
        fprintf(stderr, "  decode %dx%d latent: %.1f ms (2 threads)\n", lh, lw, (double)(time_ns() - t0) / 1e6);
        test_compare_rel(name, img, ref, no, 1e-3);
        c.pool = NULL;
        CHECK_EQ_INT(taesd_decode(g_m, w, &c, z, lh, lw, img1, &err), SIM_OK);
        CHECK(memcmp(img, img1, no * sizeof *img) == 0);
        CHECK_EQ_INT(taesd_decode(g_m, w, &c, z, lh + 1, lw, img1, &err), SIM_ERR_RANGE);
        free(img), free(img1);
    }
    taesd_work_free(w);
    mem_free(z), mem_free(ref);
}

static void test_decode_sq(void) { decode_case("sq", 8, 8); }
static void test_decode_rect(void) { decode_case("rect", 12, 16); }

static void test_encode(void) {
    if (!g_m) return test_skip("taef2 not loaded");
    float *img = golden("diffusion/taef2/taef2_encoder.in.f32", 3 * 64 * 64), *ref = golden("diffusion/taef2/taef2_encoder.out.f32", 32 * 64);
    taesd_work *w = NULL;
    sim_err err = {0};
    CHECK_MSG(taesd_work_new(&w, g_m, 8, 8, &err) == SIM_OK, "%s", err.msg);
    if (img && ref && w) {
        static float z[32 * 64];
        op_ctx c = {.pool = g_pool, .k = kern_get(KERN_BEST)};
        CHECK_EQ_INT(taesd_encode(g_m, w, &c, img, 64, 64, z, &err), SIM_OK);
        test_compare_rel("encoder", z, ref, 32 * 64, 1e-3);
        c.ref = true;
        CHECK_EQ_INT(taesd_encode(g_m, w, &c, img, 64, 64, z, &err), SIM_OK);
        test_compare_rel("encoder (reference ops)", z, ref, 32 * 64, 1e-3);
        CHECK_EQ_INT(taesd_encode(g_m, w, &c, img, 60, 64, z, &err), SIM_ERR_ARG);
    }
    taesd_work_free(w);
    mem_free(img), mem_free(ref);
}

int main(int argc, char **argv) {
    test_init(argc, argv);
    sim_err err;
    if (pool_new(&g_pool, 2, &err) != SIM_OK) return 1;
    TEST_RUN(test_load);
    TEST_RUN(test_decode_sq);
    TEST_RUN(test_decode_rect);
    TEST_RUN(test_encode);
    taesd_free(g_m);
    pool_free(g_pool);
    return test_finish();
}
