// test_image_resize.c — resampling, fitting modes and blur (src/image/resize.h)
// against hand-derived values: area averages, exact Lanczos3 weights of an
// impulse, a same-size Lanczos copy, the crop/fill spans, edge extension,
// the RGBA8 conversions, Gaussian weights; bad arguments and allocation
// failures.
#include <stdio.h>
#include <string.h>

#include "image/resize.h"
#include "test.h"

static void test_area(void) {
    sim_err err = {0};
    // 4 → 2: pairs averaged; 3 → 2: a pixel and half of the next, over 1.5.
    const float a[4] = {1, 3, 5, 7}, b[3] = {3, 6, 9};
    float out[2];
    CHECK_EQ_INT(rsz_planes(a, 1, 4, 1, (rsz_box){0, 0, 4, 1}, out, 2, 1, RSZ_AREA, &err), SIM_OK);
    CHECK_NEAR(out[0], 2, 1e-6);
    CHECK_NEAR(out[1], 6, 1e-6);
    CHECK_EQ_INT(rsz_planes(b, 1, 3, 1, (rsz_box){0, 0, 3, 1}, out, 2, 1, RSZ_AREA, &err), SIM_OK);
    CHECK_NEAR(out[0], (3 + 0.5 * 6) / 1.5, 1e-6);
    CHECK_NEAR(out[1], (0.5 * 6 + 9) / 1.5, 1e-6);
    // 2-D, two planes: 4 × 4 → 2 × 2 block means.
    float src[32], dst[8];
    for (int i = 0; i < 32; i++) src[i] = (float)i;
    CHECK_EQ_INT(rsz_planes(src, 2, 4, 4, (rsz_box){0, 0, 4, 4}, dst, 2, 2, RSZ_AREA, &err), SIM_OK);
    // block (0, 0) of plane 0: 0, 1, 4, 5; block (1, 1) of plane 1: 26, 27, 30, 31
    CHECK_NEAR(dst[0], 2.5, 1e-5);
    CHECK_NEAR(dst[7], 28.5, 1e-5);
}

static void test_lanczos(void) {
    sim_err err = {0};
    // The same size copies exactly (the kernel is 1 at 0 and 0 at the other integers).
    float src[35], dst[35];
    for (int i = 0; i < 35; i++) src[i] = (float)(i * i % 11) - 3.5f;
    CHECK_EQ_INT(rsz_planes(src, 1, 7, 5, (rsz_box){0, 0, 7, 5}, dst, 7, 5, RSZ_LANCZOS3, &err), SIM_OK);
    CHECK(memcmp(src, dst, sizeof src) == 0);
    // 16 → 8 of an impulse at 7: output 3 is centred on 7; the kernel widens
    // 2×, so the 12 taps sit at x = ±0.25, ±0.75, ..., ±2.75 (Σ L = 1.993943)
    // and output i (centre 2i + 1) is L((7.5 - 2i - 1) / 2) / Σ L, with
    // L(x) = sinc(x)·sinc(x/3) = 0.890067, 0.270190, -0.132871, -0.067791, 0.030021, 0.007356.
    float imp[16] = {0}, o[8];
    imp[7] = 1;
    CHECK_EQ_INT(rsz_planes(imp, 1, 16, 1, (rsz_box){0, 0, 16, 1}, o, 8, 1, RSZ_LANCZOS3, &err), SIM_OK);
    CHECK_NEAR(o[3], 0.44638539, 1e-6);  // x = 0.25
    CHECK_NEAR(o[4], 0.13550528, 1e-6);  // x = -0.75
    CHECK_NEAR(o[2], -0.06663731, 1e-6); // x = 1.25
    CHECK_NEAR(o[1], 0.01505595, 1e-6);  // x = 2.25
    CHECK_NEAR(o[5], -0.03399863, 1e-6); // x = -1.75
    CHECK_NEAR(o[6], 0.00368914, 1e-6);  // x = -2.75
    CHECK(o[0] == 0 && o[7] == 0);      // x = 3.25, -3.75: outside the kernel
    // Constants stay constant (weights sum to 1), also upscaling.
    float k[6] = {2, 2, 2, 2, 2, 2}, up[26];
    CHECK_EQ_INT(rsz_planes(k, 1, 6, 1, (rsz_box){0, 0, 6, 1}, up, 13, 2, RSZ_LANCZOS3, &err), SIM_OK);
    for (int i = 0; i < 26; i++) CHECK_NEAR(up[i], 2, 1e-6);
}

static void test_fit(void) {
    rsz_box b = rsz_fit(400, 200, 100, 100, RSZ_CROP);
    CHECK(b.x == 100 && b.y == 0 && b.w == 200 && b.h == 200);
    b = rsz_fit(400, 200, 100, 100, RSZ_FILL);
    CHECK(b.x == 0 && b.y == -100 && b.w == 400 && b.h == 400);
    b = rsz_fit(200, 400, 100, 50, RSZ_CROP); // taller than 2:1 → cut top and bottom
    CHECK(b.x == 0 && b.y == 150 && b.w == 200 && b.h == 100);
    b = rsz_fit(200, 400, 100, 50, RSZ_JUST);
    CHECK(b.x == 0 && b.y == 0 && b.w == 200 && b.h == 400);
    CHECK_EQ_INT(rsz_mode_parse("fill"), RSZ_FILL);
    CHECK_EQ_INT(rsz_mode_parse("stretch"), -1);
    CHECK_STR(rsz_mode_name(RSZ_CROP), "crop");
    // Fill: a 2 × 1 picture in a 2 × 2 output; the span reaches half a row
    // above and below, where the edge row repeats.
    const uint8_t px[8] = {255, 0, 0, 255, 0, 0, 255, 255};
    float rgb[12], luma[4];
    sim_err err = {0};
    b = rsz_fit(2, 1, 2, 2, RSZ_FILL);
    CHECK(b.y == -0.5 && b.h == 2);
    CHECK_EQ_INT(rsz_rgba8(px, 2, 1, b, RSZ_AREA, rgb, 2, 2, &err), SIM_OK);
    static const float want[12] = {1, -1, 1, -1, -1, -1, -1, -1, -1, 1, -1, 1};
    for (int i = 0; i < 12; i++) CHECK_NEAR(rgb[i], want[i], 1e-6);
    CHECK_EQ_INT(rsz_rgba8_luma(px, 2, 1, b, RSZ_AREA, luma, 2, 2, &err), SIM_OK);
    CHECK_NEAR(luma[0], 0.299, 1e-6);
    CHECK_NEAR(luma[3], 0.114, 1e-6);
    // Lanczos overshoot is clamped to [-1, 1].
    uint8_t edge[4 * 8];
    for (int i = 0; i < 8; i++) memset(edge + 4 * i, i < 4 ? 0 : 255, 4);
    float e[3 * 20];
    CHECK_EQ_INT(rsz_rgba8(edge, 8, 1, (rsz_box){0, 0, 8, 1}, RSZ_LANCZOS3, e, 20, 1, &err), SIM_OK);
    float lo = 0, hi = 0;
    for (int i = 0; i < 60; i++) lo = fminf(lo, e[i]), hi = fmaxf(hi, e[i]);
    CHECK(lo == -1 && hi == 1);
}

static void test_blur(void) {
    sim_err err = {0};
    // σ = 1, radius 3: weights e^(-i²/2) / (1 + 2(e^-0.5 + e^-2 + e^-4.5)).
    float p[81] = {0};
    p[40] = 1; // the centre of 9 × 9
    CHECK_EQ_INT(rsz_blur(p, 9, 9, 1.0, &err), SIM_OK);
    CHECK_NEAR(p[40], 0.39905028 * 0.39905028, 1e-6);
    CHECK_NEAR(p[41], 0.24203623 * 0.39905028, 1e-6);
    CHECK_NEAR(p[31], 0.24203623 * 0.39905028, 1e-6);
    double sum = 0;
    for (int i = 0; i < 81; i++) sum += p[i];
    CHECK_NEAR(sum, 1, 1e-5);
    float q[4] = {0.5f, 0.5f, 0.5f, 0.5f};
    CHECK_EQ_INT(rsz_blur(q, 2, 2, 3.0, &err), SIM_OK); // radius 9 past both edges
    for (int i = 0; i < 4; i++) CHECK_NEAR(q[i], 0.5, 1e-6);
    float r = 7;
    CHECK_EQ_INT(rsz_blur(&r, 1, 1, 0, &err), SIM_OK);
    CHECK(r == 7);
    CHECK_EQ_INT(rsz_blur(&r, 1, 1, 5000, &err), SIM_ERR_ARG);
}

static void test_errors(void) {
    sim_err err = {0};
    float a[4] = {0}, o[4];
    CHECK_EQ_INT(rsz_planes(a, 1, 0, 1, (rsz_box){0, 0, 1, 1}, o, 1, 1, RSZ_AREA, &err), SIM_ERR_ARG);
    CHECK(strstr(err.msg, "sides must be 1..16384") != NULL);
    CHECK_EQ_INT(rsz_planes(a, 1, 2, 2, (rsz_box){0, 0, 0, 2}, o, 1, 1, RSZ_AREA, &err), SIM_ERR_ARG);
    CHECK(strstr(err.msg, "empty or out of range") != NULL);
    CHECK_EQ_INT(rsz_planes(a, 1, 2, 2, (rsz_box){0, 0, NAN, 2}, o, 1, 1, RSZ_AREA, &err), SIM_ERR_ARG);
    uint8_t px[16] = {0};
    for (int n = 0; n < 6; n++) {
        mem_fail_after(n);
        sim_status st = rsz_rgba8(px, 2, 2, (rsz_box){0, 0, 2, 2}, RSZ_LANCZOS3, o, 1, 1, &err);
        bool failed = mem_fail_triggered();
        mem_fail_after(-1);
        if (!failed) {
            CHECK_EQ_INT(st, SIM_OK);
            break;
        }
        CHECK_EQ_INT(st, SIM_ERR_NOMEM);
    }
}

int main(int argc, char **argv) {
    test_init(argc, argv);
    TEST_RUN(test_area);
    TEST_RUN(test_lanczos);
    TEST_RUN(test_fit);
    TEST_RUN(test_blur);
    TEST_RUN(test_errors);
    return test_finish();
}
