// test_image_dsamp.c — the diffusion samplers (src/image/dsamp.h): the
// schedule and timesteps against hand-derived values, every sampler lands
// on x0 with a perfect denoiser, Euler equals DDIM (the same ODE step in
// another scale), DPM++ 2M's first step is DDIM's, the generator is a
// standard Gaussian and seeds reproduce. (The guided DDIM run against the
// golden arrays is in test_image_unet.c.) The step hook sees each step's
// x0 and can stop the run; a run starting at a later step (img2img) is the
// run of the schedule's tail.
#include <stdio.h>
#include <string.h>

#include "image/dsamp.h"
#include "test.h"

static dsamp_schedule g_s;

static void test_schedule(void) {
    dsamp_schedule_sd(&g_s);
    CHECK_NEAR(g_s.acp[0], 1 - 0.00085, 1e-12);
    CHECK_NEAR(g_s.acp[1], (1 - 0.00085) * (1 - pow(sqrt(0.00085) + (sqrt(0.012) - sqrt(0.00085)) / 999, 2)), 1e-12);
    CHECK_NEAR(g_s.sigma[999], sqrt((1 - g_s.acp[999]) / g_s.acp[999]), 1e-9);
    CHECK(g_s.sigma[999] > 14.6 && g_s.sigma[999] < 14.7); // the known SD σ_max ≈ 14.61
    int ts[1000];
    dsamp_timesteps(&g_s, 4, ts);
    CHECK(ts[0] == 999 && ts[1] == 749 && ts[2] == 499 && ts[3] == 249);
    dsamp_timesteps(&g_s, 1000, ts);
    CHECK(ts[0] == 999 && ts[999] == 0);
    dsamp_timesteps(&g_s, 1, ts);
    CHECK(ts[0] == 999);
    CHECK_EQ_INT(dsamp_parse("dpmpp_2m"), DSAMP_DPMPP_2M);
    CHECK_EQ_INT(dsamp_parse("plms"), -1);
    CHECK_STR(dsamp_name(DSAMP_EULER_A), "euler_a");
}

#define N 37
static float g_x0[N];

// σ at a fractional timestep: log-σ interpolation, as the samplers invert it.
static double sigma_at(double t) {
    int lo = (int)floor(t), hi = lo + 1 < 1000 ? lo + 1 : lo;
    double f = t - lo;
    return exp(log(g_s.sigma[lo]) * (1 - f) + log(g_s.sigma[hi]) * f);
}

// The exact noise for a fixed x0: eps = (x - √ᾱ x0) / √(1 - ᾱ).
static sim_status perfect(void *ctx, const float *x, float t, float *eps, sim_err *err) {
    (void)ctx, (void)err;
    double s = sigma_at(t), a = 1 / (1 + s * s);
    for (int i = 0; i < N; i++) eps[i] = (float)((x[i] - sqrt(a) * g_x0[i]) / sqrt(1 - a));
    return SIM_OK;
}

// Some smooth, not perfect, model.
static sim_status smooth(void *ctx, const float *x, float t, float *eps, sim_err *err) {
    (void)ctx, (void)err;
    for (int i = 0; i < N; i++) eps[i] = tanhf(x[i]) * 0.7f + 0.1f * (float)i / N + t * 1e-4f;
    return SIM_OK;
}

static int g_calls;
static sim_status failing(void *ctx, const float *x, float t, float *eps, sim_err *err) {
    (void)ctx, (void)x, (void)t, (void)eps;
    return ++g_calls == 2 ? err_set(err, SIM_ERR_ABORTED, "stop") : SIM_OK;
}

static double max_diff(const float *a, const float *b) {
    double m = 0;
    for (int i = 0; i < N; i++) m = fmax(m, fabs((double)a[i] - b[i]));
    return m;
}

static void test_perfect_denoiser(void) {
    dsamp_gauss(7, g_x0, N);
    float noise[N], x[N], work[3 * N];
    dsamp_gauss(8, noise, N);
    int ts[50];
    sim_err err = {0};
    static const int steps[] = {1, 4, 20, 50};
    for (int k = 0; k < DSAMP_COUNT; k++)
        for (int karras = 0; karras < 2; karras++)
            for (size_t si = 0; si < ARRAY_LEN(steps); si++) {
                if (karras && k != DSAMP_EULER && k != DSAMP_DPMPP_2M) continue;
                dsamp_timesteps(&g_s, steps[si], ts);
                memcpy(x, noise, sizeof x);
                dsamp_params p = {.kind = (dsamp_kind)k, .karras = karras, .seed = 3};
                CHECK_EQ_INT(dsamp_run(&g_s, &p, ts, steps[si], x, N, work, perfect, NULL, &err), SIM_OK);
                double d = max_diff(x, g_x0);
                CHECK_MSG(d < 2e-4, "%s%s %d steps: max |x - x0| = %g", dsamp_name((dsamp_kind)k), karras ? " karras" : "", steps[si], d);
            }
}

static void test_equivalences(void) {
    float noise[N], a[N], b[N], work[3 * N];
    dsamp_gauss(11, noise, N);
    int ts[20];
    sim_err err = {0};
    dsamp_timesteps(&g_s, 20, ts);
    memcpy(a, noise, sizeof a);
    memcpy(b, noise, sizeof b);
    CHECK_EQ_INT(dsamp_run(&g_s, &(dsamp_params){.kind = DSAMP_DDIM}, ts, 20, a, N, work, smooth, NULL, &err), SIM_OK);
    CHECK_EQ_INT(dsamp_run(&g_s, &(dsamp_params){.kind = DSAMP_EULER}, ts, 20, b, N, work, smooth, NULL, &err), SIM_OK);
    CHECK_MSG(max_diff(a, b) < 1e-4, "DDIM vs Euler: %g", max_diff(a, b));
    // One step: DPM++ 2M is first order, so it is DDIM.
    memcpy(a, noise, sizeof a);
    memcpy(b, noise, sizeof b);
    CHECK_EQ_INT(dsamp_run(&g_s, &(dsamp_params){.kind = DSAMP_DDIM}, ts, 1, a, N, work, smooth, NULL, &err), SIM_OK);
    CHECK_EQ_INT(dsamp_run(&g_s, &(dsamp_params){.kind = DSAMP_DPMPP_2M}, ts, 1, b, N, work, smooth, NULL, &err), SIM_OK);
    CHECK_MSG(max_diff(a, b) < 1e-4, "DDIM vs DPM++ 2M, one step: %g", max_diff(a, b));
    // With history it differs from Euler.
    memcpy(a, noise, sizeof a);
    memcpy(b, noise, sizeof b);
    CHECK_EQ_INT(dsamp_run(&g_s, &(dsamp_params){.kind = DSAMP_EULER}, ts, 20, a, N, work, smooth, NULL, &err), SIM_OK);
    CHECK_EQ_INT(dsamp_run(&g_s, &(dsamp_params){.kind = DSAMP_DPMPP_2M}, ts, 20, b, N, work, smooth, NULL, &err), SIM_OK);
    CHECK(max_diff(a, b) > 1e-4);
    // Bad timesteps and model errors.
    int bad[2] = {500, 600};
    CHECK_EQ_INT(dsamp_run(&g_s, &(dsamp_params){.kind = DSAMP_DDIM}, bad, 2, a, N, work, smooth, NULL, &err), SIM_ERR_ARG);
    bad[0] = 1000;
    CHECK_EQ_INT(dsamp_run(&g_s, &(dsamp_params){.kind = DSAMP_DDIM}, bad, 1, a, N, work, smooth, NULL, &err), SIM_ERR_ARG);
    g_calls = 0;
    CHECK_EQ_INT(dsamp_run(&g_s, &(dsamp_params){.kind = DSAMP_EULER_A}, ts, 20, a, N, work, failing, NULL, &err), SIM_ERR_ABORTED);
    CHECK_EQ_INT(g_calls, 2);
}

// The step hook: with a perfect denoiser every step's x0 is the true x0;
// the last call sees ᾱ = 1 and scale 1; an error from the hook stops the run.
typedef struct hook_log {
    int calls, stop_at;
    double worst_x0, last_acp, last_scale;
} hook_log;

static sim_status hook(void *ctx, int i, int steps, float *x, double xscale, const float *x0, double acp_next, sim_err *err) {
    (void)x, (void)steps;
    hook_log *h = ctx;
    h->calls++;
    h->worst_x0 = fmax(h->worst_x0, max_diff(x0, g_x0));
    h->last_acp = acp_next, h->last_scale = xscale;
    return i == h->stop_at ? err_set(err, SIM_ERR_ABORTED, "hook stop") : SIM_OK;
}

static void test_step_hook(void) {
    dsamp_gauss(7, g_x0, N);
    float x[N], work[3 * N];
    int ts[6];
    sim_err err = {0};
    dsamp_timesteps(&g_s, 6, ts);
    for (int k = 0; k < DSAMP_COUNT; k++) {
        hook_log h = {.stop_at = -1};
        dsamp_gauss(8, x, N);
        dsamp_params p = {.kind = (dsamp_kind)k, .seed = 3, .on_step = hook, .step_ctx = &h};
        CHECK_EQ_INT(dsamp_run(&g_s, &p, ts, 6, x, N, work, perfect, NULL, &err), SIM_OK);
        CHECK_EQ_INT(h.calls, 6);
        CHECK_MSG(h.worst_x0 < 2e-4, "%s: x0 off by %g", dsamp_name((dsamp_kind)k), h.worst_x0);
        CHECK(h.last_acp == 1.0 && h.last_scale == 1.0);
        h = (hook_log){.stop_at = 2};
        CHECK_EQ_INT(dsamp_run(&g_s, &p, ts, 6, x, N, work, perfect, NULL, &err), SIM_ERR_ABORTED);
        CHECK_EQ_INT(h.calls, 3);
    }
}

// Starting later (img2img): the tail of a schedule is the schedule of its
// tail; from x0 noised to dsamp_start_acp a perfect denoiser lands on x0.
static void test_first_step(void) {
    dsamp_gauss(7, g_x0, N);
    float a[N], b[N], noise[N], work[3 * N];
    int ts[6];
    sim_err err = {0};
    dsamp_timesteps(&g_s, 6, ts);
    dsamp_gauss(8, noise, N);
    for (int k = 0; k < DSAMP_COUNT; k++) {
        memcpy(a, noise, sizeof a);
        memcpy(b, noise, sizeof b);
        hook_log h = {.stop_at = -1};
        dsamp_params p = {.kind = (dsamp_kind)k, .seed = 4, .first = 2, .on_step = hook, .step_ctx = &h};
        CHECK_EQ_INT(dsamp_run(&g_s, &p, ts, 6, a, N, work, smooth, NULL, &err), SIM_OK);
        CHECK_EQ_INT(h.calls, 4);
        p.first = 0;
        CHECK_EQ_INT(dsamp_run(&g_s, &p, ts + 2, 4, b, N, work, smooth, NULL, &err), SIM_OK);
        CHECK_MSG(memcmp(a, b, sizeof a) == 0, "%s: the tail differs", dsamp_name((dsamp_kind)k));
        for (int karras = 0; karras < 2; karras++) {
            p = (dsamp_params){.kind = (dsamp_kind)k, .karras = karras, .seed = 4, .first = 3};
            double acp = dsamp_start_acp(&g_s, &p, ts, 6);
            for (int j = 0; j < N; j++) a[j] = (float)(sqrt(acp) * g_x0[j] + sqrt(1 - acp) * noise[j]);
            CHECK_EQ_INT(dsamp_run(&g_s, &p, ts, 6, a, N, work, perfect, NULL, &err), SIM_OK);
            CHECK_MSG(max_diff(a, g_x0) < 2e-4, "%s%s from step 3: %g", dsamp_name((dsamp_kind)k), karras ? " karras" : "",
                      max_diff(a, g_x0));
        }
    }
    // ᾱ at the start: the timestep's own; Karras starts at the schedule's σ_max.
    dsamp_params p = {.kind = DSAMP_DDIM, .first = 1};
    CHECK(dsamp_start_acp(&g_s, &p, ts, 6) == g_s.acp[ts[1]]);
    p = (dsamp_params){.kind = DSAMP_DPMPP_2M, .karras = true};
    CHECK_NEAR(dsamp_start_acp(&g_s, &p, ts, 6), g_s.acp[999], 1e-9);
    p.first = 6;
    CHECK_EQ_INT(dsamp_run(&g_s, &p, ts, 6, a, N, work, smooth, NULL, &err), SIM_ERR_ARG);
}

static void test_seeds(void) {
    static float g[200000];
    dsamp_gauss(1234, g, ARRAY_LEN(g));
    double m = 0, v = 0;
    for (size_t i = 0; i < ARRAY_LEN(g); i++) m += g[i];
    m /= ARRAY_LEN(g);
    for (size_t i = 0; i < ARRAY_LEN(g); i++) v += (g[i] - m) * (g[i] - m);
    v /= ARRAY_LEN(g);
    CHECK_NEAR(m, 0, 0.01);
    CHECK_NEAR(v, 1, 0.01);
    float a[N], b[N], c[N], work[3 * N];
    int ts[10];
    sim_err err = {0};
    dsamp_timesteps(&g_s, 10, ts);
    for (int k = DSAMP_EULER_A; k <= DSAMP_LCM; k += DSAMP_LCM - DSAMP_EULER_A) {
        dsamp_gauss(5, a, N);
        memcpy(b, a, sizeof b);
        memcpy(c, a, sizeof c);
        dsamp_params p = {.kind = (dsamp_kind)k, .seed = 99};
        CHECK_EQ_INT(dsamp_run(&g_s, &p, ts, 10, a, N, work, smooth, NULL, &err), SIM_OK);
        CHECK_EQ_INT(dsamp_run(&g_s, &p, ts, 10, b, N, work, smooth, NULL, &err), SIM_OK);
        p.seed = 100;
        CHECK_EQ_INT(dsamp_run(&g_s, &p, ts, 10, c, N, work, smooth, NULL, &err), SIM_OK);
        CHECK(memcmp(a, b, sizeof a) == 0);
        CHECK(memcmp(a, c, sizeof a) != 0);
    }
}

int main(int argc, char **argv) {
    test_init(argc, argv);
    TEST_RUN(test_schedule);
    TEST_RUN(test_perfect_denoiser);
    TEST_RUN(test_equivalences);
    TEST_RUN(test_step_hook);
    TEST_RUN(test_first_step);
    TEST_RUN(test_seeds);
    return test_finish();
}
