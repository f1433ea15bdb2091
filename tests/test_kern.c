// test_kern.c — every SIMD kernel against its scalar reference, on odd sizes.
//
// For each level the CPU has (avx2, avx512) and each type: vec_dot, gemm
// tiles of odd shapes, dequantization and the activation quantizers are
// compared with the reference level. Weights are both reference-quantized
// Gaussian data and random raw block bytes (every bit pattern of the quants,
// with only non-finite blocks redrawn).
#include <stdint.h>

#include "base/base.h"
#include "tensor/kern.h"
#include "tensor/types.h"
#include "test.h"

static const tt_type types[] = {TT_F32,  TT_F16,  TT_BF16, TT_Q4_0, TT_Q4_1, TT_Q5_0, TT_Q5_1,
                                TT_Q8_0, TT_Q2_K, TT_Q3_K, TT_Q4_K, TT_Q5_K, TT_Q6_K};

// --- random data -------------------------------------------------------------------

static uint64_t rng_state = 0x9E3779B97F4A7C15ull;
static uint64_t rnd(void) {
    rng_state ^= rng_state << 13;
    rng_state ^= rng_state >> 7;
    rng_state ^= rng_state << 17;
    return rng_state;
}
static float frand(void) { return (float)((rnd() >> 11) * (1.0 / 9007199254740992.0)); }
static float gauss(void) {
    float u = frand() + 1e-9f, v = frand();
    return sqrtf(-2.0f * logf(u)) * cosf(6.2831853f * v);
}

// Fills n elements of type t: half the time quantized Gaussian data, otherwise
// random bytes per block (redrawn while a block dequantizes to non-finite values).
static void fill_weights(tt_type t, void *dst, int64_t n, bool raw) {
    const tt_traits *tr = tt_get(t);
    int64_t nb = n / tr->blck;
    float *tmp = mem_alloc((size_t)n * sizeof(float));
    if (!raw || !tr->quantized) {
        for (int64_t i = 0; i < n; i++) tmp[i] = gauss();
        tr->from_float(tmp, dst, n);
    } else {
        float deq[QK_K];
        for (int64_t b = 0; b < nb; b++) {
            uint8_t *blk = (uint8_t *)dst + b * tr->bytes;
            for (;;) {
                for (size_t i = 0; i < tr->bytes; i++) blk[i] = (uint8_t)rnd();
                tr->to_float(blk, deq, tr->blck);
                bool finite = true;
                for (int i = 0; i < tr->blck; i++) finite = finite && isfinite(deq[i]) && fabsf(deq[i]) < 1e30f;
                if (finite) break;
            }
        }
    }
    mem_free(tmp);
}

// Sum of |w_i * a_i| over dequantized weights and activations: the scale of rounding error.
static double abs_dot(tt_type t, const void *w, const float *a, int64_t n) {
    float *x = mem_alloc((size_t)n * sizeof(float));
    tt_get(t)->to_float(w, x, n);
    double s = 0;
    for (int64_t i = 0; i < n; i++) s += fabs((double)x[i] * a[i]);
    mem_free(x);
    return s;
}

static const kern_ops *levels[3];
static int n_levels;

static void setup_levels(void) {
    n_levels = 0;
    for (int l = KERN_AVX2; l <= KERN_AVX512; l++) {
        const kern_ops *k = kern_get_exact((kern_level)l);
        if (k) levels[n_levels++] = k;
    }
}

static int64_t sizes_for(tt_type t, int i) {
    static const int64_t counts[] = {1, 3, 7, 31, 33, 255, 1023};
    const tt_traits *tr = tt_get(t);
    if (tr->blck == 1) return counts[i];
    return counts[i % 5] * tr->blck; // 1, 3, 7, 31, 33 blocks
}

// --- tests ------------------------------------------------------------------------

static void test_levels_present(void) {
    const kern_ops *ref = kern_get_exact(KERN_REF);
    CHECK(ref != NULL);
    fprintf(stderr, "  cpu level: %s (%d SIMD levels tested)\n", kern_get(KERN_BEST)->name, n_levels);
    for (size_t i = 0; i < ARRAY_LEN(types); i++) {
        CHECK(ref->vec_dot[types[i]] != NULL);
        CHECK(ref->gemm[types[i]] != NULL);
    }
}

static void test_vec_dot(void) {
    const kern_ops *ref = kern_get_exact(KERN_REF);
    for (int li = 0; li < n_levels; li++) {
        const kern_ops *k = levels[li];
        for (size_t ti = 0; ti < ARRAY_LEN(types); ti++) {
            tt_type t = types[ti];
            const tt_traits *tr = tt_get(t);
            for (int si = 0; si < 7; si++) {
                int64_t n = sizes_for(t, si);
                for (int raw = 0; raw < 2; raw++) {
                    void *w = mem_alloc(tt_row_size(t, n));
                    float *x = mem_alloc((size_t)n * sizeof(float));
                    void *a = mem_alloc(tt_act_row_size(tr->act, n) + 64);
                    fill_weights(t, w, n, raw);
                    for (int64_t i = 0; i < n; i++) x[i] = gauss();
                    ref->quantize_act[tr->act](x, a, n);
                    // The activations the dot product really sees (after quantization).
                    float *xa = mem_alloc((size_t)n * sizeof(float));
                    if (tr->act == TT_ACT_F32) memcpy(xa, x, (size_t)n * 4);
                    else if (tr->act == TT_ACT_Q8_32)
                        for (int64_t i = 0; i < n; i++) xa[i] = ((blk_q8_32 *)a)[i / 32].d * ((blk_q8_32 *)a)[i / 32].qs[i % 32];
                    else
                        for (int64_t i = 0; i < n; i++) xa[i] = ((blk_q8_K *)a)[i / QK_K].d * ((blk_q8_K *)a)[i / QK_K].qs[i % QK_K];
                    float s_ref = 0, s = 0;
                    ref->vec_dot[t](n, &s_ref, w, a);
                    k->vec_dot[t](n, &s, w, a);
                    double tol = 2e-6 * abs_dot(t, w, xa, n) + 1e-6;
                    CHECK_MSG(fabs((double)s - s_ref) <= tol, "%s vec_dot %s n=%lld raw=%d: %.9g vs ref %.9g (tol %.3g)",
                              k->name, tr->name, (long long)n, raw, s, s_ref, tol);
                    mem_free(w);
                    mem_free(x);
                    mem_free(xa);
                    mem_free(a);
                }
            }
        }
    }
}

static void test_gemm(void) {
    static const int shapes[][2] = {{1, 1}, {1, 5}, {2, 3}, {3, 4}, {4, 1}, {5, 7}, {8, 8}, {16, 13}, {17, 9}, {33, 6}};
    for (int li = 0; li < n_levels; li++) {
        const kern_ops *k = levels[li];
        for (size_t ti = 0; ti < ARRAY_LEN(types); ti++) {
            tt_type t = types[ti];
            const tt_traits *tr = tt_get(t);
            int64_t n = tr->blck == 1 ? 67 : 3 * tr->blck;
            for (size_t shi = 0; shi < ARRAY_LEN(shapes); shi++) {
                int nr = shapes[shi][0], nc = shapes[shi][1];
                size_t wrow = tt_row_size(t, n) + 16, arow = tt_act_row_size(tr->act, n) + 8; // padded strides
                uint8_t *w = mem_alloc(wrow * (size_t)nr);
                uint8_t *a = mem_alloc(arow * (size_t)nc);
                float *x = mem_alloc((size_t)n * sizeof(float));
                for (int r = 0; r < nr; r++) fill_weights(t, w + r * wrow, n, r & 1);
                for (int c = 0; c < nc; c++) {
                    for (int64_t i = 0; i < n; i++) x[i] = gauss();
                    k->quantize_act[tr->act](x, a + c * arow, n);
                }
                size_t ldo = (size_t)nr + 3;
                float *out = mem_alloc(ldo * (size_t)nc * sizeof(float));
                for (size_t i = 0; i < ldo * (size_t)nc; i++) out[i] = -12345.0f;
                k->gemm[t](n, nr, nc, w, wrow, a, arow, out, ldo);
                for (int c = 0; c < nc; c++) {
                    for (int r = 0; r < nr; r++) {
                        float s;
                        k->vec_dot[t](n, &s, w + r * wrow, a + c * arow);
                        float got = out[(size_t)c * ldo + r];
                        double tol = 1e-5 * (fabs(s) + 1.0) + 1e-4;
                        CHECK_MSG(fabs((double)got - s) <= tol, "%s gemm %s %dx%d at (%d,%d): %.9g vs vec_dot %.9g",
                                  k->name, tr->name, nr, nc, r, c, got, s);
                    }
                    for (size_t r = (size_t)nr; r < ldo; r++)
                        CHECK_MSG(out[(size_t)c * ldo + r] == -12345.0f, "%s gemm %s wrote past nr", k->name, tr->name);
                }
                mem_free(out);
                mem_free(w);
                mem_free(a);
                mem_free(x);
            }
        }
    }
}

// vec_dot_n against the same level's vec_dot, bit for bit: every column
// count, block counts that leave every remainder of the kernels' groups of
// 8 blocks / 4 super-blocks, padded activation strides and an odd output
// stride (whose gaps must stay untouched).
static void test_vec_dot_n(void) {
    static const int blocks[] = {1, 3, 4, 7, 8, 9, 13, 17, 33};
    const size_t s_stride = 7;
    int n_checked = 0;
    for (int li = 0; li < n_levels; li++) {
        const kern_ops *k = levels[li];
        if (k->level == KERN_AVX512) {
            CHECK(k->vec_dot_n[TT_Q4_0] && k->vec_dot_n[TT_Q8_0] && k->vec_dot_n[TT_Q4_K] && k->vec_dot_n[TT_Q6_K]);
        }
        for (size_t ti = 0; ti < ARRAY_LEN(types); ti++) {
            tt_type t = types[ti];
            if (!k->vec_dot_n[t]) continue;
            const tt_traits *tr = tt_get(t);
            for (size_t bi = 0; bi < ARRAY_LEN(blocks); bi++) {
                int64_t n = blocks[bi] * tr->blck;
                // Activation rows keep the 4-byte alignment of their floats.
                size_t arow = tt_act_row_size(tr->act, n) + 4 * (1 + 2 * bi);
                void *w = mem_alloc(tt_row_size(t, n));
                uint8_t *a = mem_alloc(arow * KERN_DOT_N_MAX);
                float *x = mem_alloc((size_t)n * sizeof(float));
                fill_weights(t, w, n, bi & 1);
                for (int c = 0; c < KERN_DOT_N_MAX; c++) {
                    for (int64_t i = 0; i < n; i++) x[i] = gauss() * (c == 3 ? 100.0f : 1.0f);
                    if (c == 5) memset(x, 0, (size_t)n * sizeof(float)); // an all-zero column
                    k->quantize_act[tr->act](x, a + c * arow, n);
                }
                float out[KERN_DOT_N_MAX * 7];
                for (int nc = 1; nc <= KERN_DOT_N_MAX; nc++) {
                    for (size_t i = 0; i < ARRAY_LEN(out); i++) out[i] = -12345.0f;
                    k->vec_dot_n[t](n, nc, out, s_stride, w, a, arow);
                    for (int c = 0; c < KERN_DOT_N_MAX; c++) {
                        float s;
                        k->vec_dot[t](n, &s, w, a + c * arow);
                        float got = out[(size_t)c * s_stride];
                        if (c < nc)
                            CHECK_MSG(memcmp(&got, &s, sizeof s) == 0,
                                      "%s vec_dot_n %s n=%lld nc=%d col %d: %.9g vs vec_dot %.9g", k->name,
                                      tr->name, (long long)n, nc, c, got, s);
                        else
                            CHECK_MSG(got == -12345.0f, "%s vec_dot_n %s wrote column %d of %d", k->name, tr->name, c, nc);
                        for (size_t g = 1; g < s_stride; g++)
                            CHECK_MSG(out[(size_t)c * s_stride + g] == -12345.0f, "%s vec_dot_n %s wrote between columns",
                                      k->name, tr->name);
                    }
                    n_checked++;
                }
                mem_free(w);
                mem_free(a);
                mem_free(x);
            }
        }
    }
    fprintf(stderr, "  vec_dot_n: %d (level, type, n, nc) cases\n", n_checked);
}

static void test_quantize_act(void) {
    const kern_ops *ref = kern_get_exact(KERN_REF);
    for (int li = 0; li < n_levels; li++) {
        const kern_ops *k = levels[li];
        for (int act = TT_ACT_Q8_32; act <= TT_ACT_Q8_K; act++) {
            int64_t n = act == TT_ACT_Q8_32 ? 32 * 37 : QK_K * 5;
            float *x = mem_alloc((size_t)n * sizeof(float));
            for (int64_t i = 0; i < n; i++) x[i] = gauss() * (i % 97 == 0 ? 30.0f : 1.0f);
            for (int64_t i = 64; i < 96; i++) x[i] = 0; // an all-zero block
            size_t sz = tt_act_row_size((tt_act)act, n);
            uint8_t *ya = mem_alloc(sz), *yb = mem_alloc(sz);
            ref->quantize_act[act](x, ya, n);
            k->quantize_act[act](x, yb, n);
            int64_t nb = act == TT_ACT_Q8_32 ? n / 32 : n / QK_K;
            for (int64_t b = 0; b < nb; b++) {
                if (act == TT_ACT_Q8_32) {
                    blk_q8_32 *p = (blk_q8_32 *)ya + b, *q = (blk_q8_32 *)yb + b;
                    CHECK_NEAR(q->d, p->d, 1e-6 * fabs(p->d));
                    int sum = 0, maxdiff = 0;
                    for (int i = 0; i < 32; i++) {
                        sum += q->qs[i];
                        maxdiff = MAX(maxdiff, abs(q->qs[i] - p->qs[i]));
                    }
                    CHECK_EQ_INT(q->sum, sum);
                    CHECK_MSG(maxdiff <= 1, "%s q8_32 block %lld differs by %d", k->name, (long long)b, maxdiff);
                } else {
                    blk_q8_K *p = (blk_q8_K *)ya + b, *q = (blk_q8_K *)yb + b;
                    CHECK_NEAR(q->d, p->d, 1e-6 * fabs(p->d));
                    int maxdiff = 0;
                    for (int g = 0; g < 16; g++) {
                        int sum = 0;
                        for (int i = 0; i < 16; i++) {
                            sum += q->qs[g * 16 + i];
                            maxdiff = MAX(maxdiff, abs(q->qs[g * 16 + i] - p->qs[g * 16 + i]));
                        }
                        CHECK_EQ_INT(q->bsums[g], sum);
                    }
                    CHECK_MSG(maxdiff <= 1, "%s q8_K block %lld differs by %d", k->name, (long long)b, maxdiff);
                }
            }
            mem_free(x);
            mem_free(ya);
            mem_free(yb);
        }
    }
}

static void test_to_float(void) {
    for (int li = 0; li < n_levels; li++) {
        const kern_ops *k = levels[li];
        for (size_t ti = 0; ti < ARRAY_LEN(types); ti++) {
            tt_type t = types[ti];
            const tt_traits *tr = tt_get(t);
            int64_t n = 7 * (tr->blck == 1 ? 33 : tr->blck);
            void *w = mem_alloc(tt_row_size(t, n));
            fill_weights(t, w, n, true);
            float *a = mem_alloc((size_t)n * 4), *b = mem_alloc((size_t)n * 4);
            tr->to_float(w, a, n);
            k->to_float[t](w, b, n);
            int bad = 0;
            for (int64_t i = 0; i < n; i++)
                if (fabsf(a[i] - b[i]) > 1e-6f * fabsf(a[i]) + 1e-30f) bad++;
            CHECK_MSG(bad == 0, "%s to_float %s: %d of %lld values differ", k->name, tr->name, bad, (long long)n);
            mem_free(w);
            mem_free(a);
            mem_free(b);
        }
    }
}

static void test_float_helpers(void) {
    const kern_ops *ref = kern_get_exact(KERN_REF);
    for (int li = 0; li < n_levels; li++) {
        const kern_ops *k = levels[li];
        static const int64_t ns[] = {1, 3, 7, 31, 33, 64, 128, 255, 1023};
        for (size_t ni = 0; ni < ARRAY_LEN(ns); ni++) {
            int64_t n = ns[ni];
            float *x = mem_alloc((size_t)n * 4), *y = mem_alloc((size_t)n * 4);
            float *y1 = mem_alloc((size_t)n * 4), *y2 = mem_alloc((size_t)n * 4);
            tt_half *h = mem_alloc((size_t)n * 2), *h2 = mem_alloc((size_t)n * 2);
            double absum = 0;
            for (int64_t i = 0; i < n; i++) {
                x[i] = gauss();
                y[i] = gauss();
                h[i] = tt_float_to_half(x[i]);
                absum += fabs((double)x[i] * y[i]);
            }
            CHECK_NEAR(k->dot_f32(x, y, n), ref->dot_f32(x, y, n), 1e-5 * absum + 1e-6);
            CHECK_NEAR(k->dot_f16_f32(h, y, n), ref->dot_f16_f32(h, y, n), 1e-5 * absum + 1e-6);
            memcpy(y1, y, (size_t)n * 4);
            memcpy(y2, y, (size_t)n * 4);
            k->axpy_f16(y1, 0.75f, h, n);
            ref->axpy_f16(y2, 0.75f, h, n);
            for (int64_t i = 0; i < n; i++) CHECK_NEAR(y1[i], y2[i], 1e-6 * (fabs(y2[i]) + 1));
            // exp_sum: values around the max, and -inf entries (masked scores)
            for (int64_t i = 0; i < n; i++) {
                y1[i] = i % 5 == 3 ? -INFINITY : x[i] * 4;
                y2[i] = y1[i];
            }
            float mx = 12.0f;
            float s1 = k->exp_sum(y1, n, mx), s2 = ref->exp_sum(y2, n, mx);
            CHECK_NEAR(s1, s2, 2e-6 * s2);
            for (int64_t i = 0; i < n; i++) CHECK_NEAR(y1[i], y2[i], 2e-6 * y2[i] + 1e-38);
            k->f32_to_f16(x, h2, n);
            int bad = 0;
            for (int64_t i = 0; i < n; i++) bad += h2[i] != h[i];
            CHECK_MSG(bad == 0, "%s f32_to_f16 n=%lld: %d differ", k->name, (long long)n, bad);
            mem_free(x); mem_free(y); mem_free(y1); mem_free(y2); mem_free(h); mem_free(h2);
        }
    }
}

// exp_sum over a dense sweep of [-110, 5]: within 4 ulp of expf (relative
// 5e-7), exactly 0 where expf underflows to 0 or the input is -inf.
static void test_exp_accuracy(void) {
    enum { N = 115001 };
    float *x = mem_alloc(N * sizeof(float)), *y = mem_alloc(N * sizeof(float));
    for (int li = 0; li < n_levels; li++) {
        const kern_ops *k = levels[li];
        for (int i = 0; i < N; i++) x[i] = -110.0f + (float)i * 0.001f;
        x[7] = -INFINITY;
        memcpy(y, x, N * sizeof(float));
        k->exp_sum(y, N, 0.0f);
        double worst = 0;
        int wrong_zero = 0;
        for (int i = 0; i < N; i++) {
            float e = expf(x[i]);
            if (e < 1.2e-38f) { // subnormal or zero results: only require tiny
                wrong_zero += y[i] > 1.2e-38f;
                continue;
            }
            worst = MAX(worst, fabs((double)y[i] - e) / e);
        }
        fprintf(stderr, "  %s exp: max relative error %.2e\n", k->name, worst);
        CHECK(worst < 5e-7);
        CHECK_EQ_INT(wrong_zero, 0);
        CHECK(y[7] == 0.0f);
    }
    mem_free(x);
    mem_free(y);
}

// SwiGLU against the reference over a wide range, including |g| > 88 where
// e^-g leaves the float range.
static void test_swiglu(void) {
    const kern_ops *ref = kern_get_exact(KERN_REF);
    enum { N = 4003 };
    float *g = mem_alloc(N * sizeof(float)), *u = mem_alloc(N * sizeof(float));
    float *a = mem_alloc(N * sizeof(float)), *b = mem_alloc(N * sizeof(float));
    for (int i = 0; i < N; i++) {
        g[i] = -120.0f + 240.0f * (float)i / N;
        u[i] = gauss();
    }
    for (int li = 0; li < n_levels; li++) {
        memcpy(a, g, N * sizeof(float));
        memcpy(b, g, N * sizeof(float));
        levels[li]->swiglu(a, u, N);
        ref->swiglu(b, u, N);
        int bad = 0;
        for (int i = 0; i < N; i++) bad += !(fabsf(a[i] - b[i]) <= 1e-6f * fabsf(b[i]) + 1e-30f);
        CHECK_MSG(bad == 0, "%s swiglu: %d of %d differ", levels[li]->name, bad, N);
    }
    mem_free(g);
    mem_free(u);
    mem_free(a);
    mem_free(b);
}

static void test_env_forces_reference(void) {
    // kern_get never returns a level above the cap it is given.
    CHECK(kern_get(KERN_REF)->level == KERN_REF);
    CHECK(kern_get(KERN_AVX2)->level <= KERN_AVX2);
}

int main(int argc, char **argv) {
    test_init(argc, argv);
    setup_levels();
    TEST_RUN(test_levels_present);
    TEST_RUN(test_vec_dot);
    TEST_RUN(test_gemm);
    TEST_RUN(test_vec_dot_n);
    TEST_RUN(test_quantize_act);
    TEST_RUN(test_to_float);
    TEST_RUN(test_float_helpers);
    TEST_RUN(test_exp_accuracy);
    TEST_RUN(test_swiglu);
    TEST_RUN(test_env_forces_reference);
    return test_finish();
}
