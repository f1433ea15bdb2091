// test_image_ops.c — the image operators (src/tensor/ops.h) and their GEMM
// (src/tensor/sgemm.h): every fast path against its scalar reference on odd
// sizes, on each kernel level this CPU has, with 1 and 2 threads (which
// must agree bit for bit), with F32, F16 and BF16 weights.
#include <stdio.h>
#include <string.h>

#include "tensor/ops.h"
#include "tensor/sgemm.h"
#include "test.h"

static uint64_t g_rng = 0x9E3779B97F4A7C15ull;
static float frand(void) { // uniform in [-1, 1)
    g_rng ^= g_rng << 13, g_rng ^= g_rng >> 7, g_rng ^= g_rng << 17;
    return (float)((g_rng >> 40) * (1.0 / (1 << 23))) - 1.0f;
}
static float *rnd(size_t n) {
    float *p = malloc(n * sizeof *p + 64);
    for (size_t i = 0; i < n; i++) p[i] = frand();
    return p;
}

// max |a - b| relative to max |b| (or absolute when b is tiny).
static double rel_diff(const float *a, const float *b, size_t n, size_t *at) {
    double md = 0, mb = 0;
    *at = 0;
    for (size_t i = 0; i < n; i++) {
        double d = fabs((double)a[i] - b[i]);
        if (!(d <= md)) md = d, *at = i;
        if (fabs(b[i]) > mb) mb = fabs(b[i]);
    }
    return md / (mb > 1 ? mb : 1);
}

#define CHECK_CLOSE(what, a, b, n, tol)                                                       \
    do {                                                                                      \
        size_t at_;                                                                           \
        double d_ = rel_diff(a, b, n, &at_);                                                  \
        CHECK_MSG(d_ <= (tol), "%s: rel diff %.3g at %zu (%g vs %g)", what, d_, at_, (double)(a)[at_], (double)(b)[at_]); \
    } while (0)

static pool *g_pool[2];
static float g_scratch[8 << 20];

// Runs body for each kernel level and thread count with an op_ctx `c`.
#define FOR_CTX(c, body)                                                                      \
    for (int lvl_ = 0; lvl_ <= KERN_AVX512; lvl_++) {                                         \
        const kern_ops *k_ = kern_get_exact((kern_level)lvl_);                                \
        if (!k_) continue;                                                                    \
        for (int t_ = 0; t_ < 2; t_++) {                                                      \
            op_ctx c = {.pool = g_pool[t_], .k = k_, .scratch = g_scratch, .scratch_cap = ARRAY_LEN(g_scratch)}; \
            body                                                                              \
        }                                                                                     \
    }

// W (n floats) as F16 / BF16 copies (the reference reads the same rounded values).
static void *to_16(const float *w, size_t n, tt_type t) {
    uint16_t *h = malloc(n * sizeof *h + 64);
    for (size_t i = 0; i < n; i++) h[i] = t == TT_F16 ? tt_float_to_half(w[i]) : tt_float_to_bf16(w[i]);
    return h;
}

// The GEMM alone: odd shapes (K across several blocks, M and N past tile
// and panel edges), every A type, both packers, biases, accumulation;
// against a double-precision loop, and the tiling must not change a bit.
static void test_sgemm(void) {
    static const int shapes[][3] = {{1, 1, 1}, {5, 3, 7}, {7, 65, 31}, {13, 64, 257}, {200, 33, 600}, {6, 300, 16}, {61, 257, 1700}};
    static const tt_type types[] = {TT_F32, TT_F16, TT_BF16};
    static float buf[SG_THREAD_FLOATS];
    for (size_t s = 0; s < ARRAY_LEN(shapes); s++)
        for (size_t ti = 0; ti < ARRAY_LEN(types); ti++)
            for (int variant = 0; variant < 2; variant++) { // 0: dense B, bias_r; 1: B = Rᵀ, bias_c, accumulate
                int M = shapes[s][0], N = shapes[s][1], K = shapes[s][2];
                float *A = rnd((size_t)M * K), *B = rnd((size_t)K * N), *bias = rnd((size_t)MAX(M, N)), *C0 = rnd((size_t)M * N);
                float *ref = malloc((size_t)M * N * sizeof *ref), *y = malloc((size_t)M * N * sizeof *y), *y1 = malloc((size_t)M * N * sizeof *y);
                void *A16 = types[ti] == TT_F32 ? NULL : to_16(A, (size_t)M * K, types[ti]);
                op_mat Am = A16 ? (op_mat){types[ti], A16} : op_f32(A);
                // B's transposed copy for the rows packer: R (N, K), B[k][n] = R[n][k].
                float *R = malloc((size_t)N * K * sizeof *R);
                for (int k = 0; k < K; k++)
                    for (int n = 0; n < N; n++) R[(size_t)n * K + k] = B[(size_t)k * N + n];
                for (int m = 0; m < M; m++)
                    for (int n = 0; n < N; n++) {
                        double acc = variant ? C0[(size_t)m * N + n] + bias[n] : bias[m];
                        for (int k = 0; k < K; k++) acc += (double)op_mat_at(Am, (size_t)m * K + k) * B[(size_t)k * N + n];
                        ref[(size_t)m * N + n] = (float)acc;
                    }
                sg_dense dense = {B, (size_t)N};
                sg_rows rows = {TT_F32, R, (size_t)K};
                for (int lvl = 0; lvl <= KERN_AVX512; lvl++) {
                    const kern_ops *k = kern_get_exact((kern_level)lvl);
                    if (!k) continue;
                    for (int tiles = 1; tiles <= 64; tiles *= 64) {
                        sg_args g = {.k = k, .M = M, .N = N, .K = K, .a_type = Am.type, .a = Am.data, .lda = (size_t)K,
                                     .pack_b = variant ? sg_pack_rows : sg_pack_dense, .b = variant ? (const void *)&rows : &dense,
                                     .c = y, .ldc = (size_t)N, .bias_r = variant ? NULL : bias, .bias_c = variant ? bias : NULL,
                                     .acc = variant};
                        memcpy(y, C0, (size_t)M * N * sizeof *y);
                        sg_plan(&g, tiles);
                        pool_counter ctr = {0};
                        sg_run(&g, &ctr, buf);
                        CHECK_CLOSE("sgemm", y, ref, (size_t)M * N, 2e-6 * sqrt(K));
                        if (tiles == 1) memcpy(y1, y, (size_t)M * N * sizeof *y);
                        else CHECK(memcmp(y1, y, (size_t)M * N * sizeof *y) == 0);
                    }
                }
                free(A), free(B), free(bias), free(C0), free(ref), free(y), free(y1), free(A16), free(R);
            }
}

static void test_linear(void) {
    static const int sizes[][3] = {{1, 1, 1}, {3, 7, 5}, {7, 31, 33}, {33, 64, 17}, {77, 32, 64}, {5, 255, 3}, {64, 33, 96}, {70, 300, 130}};
    for (size_t s = 0; s < ARRAY_LEN(sizes); s++)
        for (tt_type t = TT_F32; t <= TT_BF16; t = t == TT_F32 ? TT_F16 : t == TT_F16 ? TT_BF16 : TT_COUNT) {
            int N = sizes[s][0], I = sizes[s][1], O = sizes[s][2];
            float *x = rnd((size_t)N * I), *W = rnd((size_t)O * I), *b = rnd((size_t)O);
            float *ref = rnd((size_t)N * O), *y = rnd((size_t)N * O), *y1 = rnd((size_t)N * O);
            void *W16 = t == TT_F32 ? NULL : to_16(W, (size_t)O * I, t);
            op_mat Wm = W16 ? (op_mat){t, W16} : op_f32(W);
            op_linear_ref(ref, x, Wm, s & 1 ? NULL : b, N, I, O);
            FOR_CTX(c, {
                op_linear(&c, y, x, Wm, s & 1 ? NULL : b, N, I, O);
                CHECK_CLOSE("linear", y, ref, (size_t)N * O, 1e-5);
                if (t_ == 0) memcpy(y1, y, (size_t)N * O * sizeof *y);
                else CHECK(memcmp(y1, y, (size_t)N * O * sizeof *y) == 0);
            })
            // F16 weights against the f32 ones they were rounded from: close, not equal.
            if (t == TT_F16) {
                op_linear_ref(y, x, op_f32(W), s & 1 ? NULL : b, N, I, O);
                CHECK_CLOSE("linear f16 vs f32", ref, y, (size_t)N * O, 2e-3);
            }
            free(x), free(W), free(b), free(ref), free(y), free(y1), free(W16);
        }
}

static void test_conv2d(void) {
    static const op_conv convs[] = {
        {3, 5, 3, 3, 1, 1, 1, 1, 1, false},  {4, 32, 3, 3, 1, 1, 1, 1, 1, false}, {7, 3, 1, 1, 1, 0, 0, 0, 0, false},
        {5, 9, 3, 3, 2, 0, 0, 1, 1, false},  {6, 6, 3, 3, 2, 1, 1, 1, 1, false},  {33, 17, 3, 3, 1, 1, 1, 1, 1, false},
        {2, 3, 3, 3, 1, 2, 0, 1, 3, false},  {1, 1, 1, 1, 1, 0, 0, 0, 0, false},  {40, 13, 3, 3, 1, 1, 1, 1, 1, false},
        {4, 32, 3, 3, 1, 1, 1, 1, 1, true}, {7, 3, 1, 1, 1, 0, 0, 0, 0, true}, // + ReLU
    };
    static const int hw[][2] = {{1, 1}, {7, 5}, {8, 8}, {13, 31}, {9, 70}};
    for (size_t s = 0; s < ARRAY_LEN(convs); s++)
        for (size_t d = 0; d < ARRAY_LEN(hw); d++) {
            const op_conv *p = &convs[s];
            int h = hw[d][0], w = hw[d][1], ho, wo;
            op_conv_out_size(p, h, w, &ho, &wo);
            if (ho <= 0 || wo <= 0) continue;
            size_t no = (size_t)p->cout * ho * wo, nw = (size_t)p->cout * p->cin * p->kh * p->kw;
            float *x = rnd((size_t)p->cin * h * w), *W = rnd(nw), *b = rnd((size_t)p->cout);
            float *ref = rnd(no), *y = rnd(no), *y1 = rnd(no);
            void *W16 = to_16(W, nw, TT_F16);
            for (int half = 0; half < 2; half++) {
                op_mat Wm = half ? (op_mat){TT_F16, W16} : op_f32(W);
                op_conv2d_ref(ref, x, p, h, w, Wm, b);
                FOR_CTX(c, {
                    op_conv2d(&c, y, x, p, h, w, Wm, b);
                    CHECK_CLOSE("conv2d", y, ref, no, 1e-5);
                    if (t_ == 0) memcpy(y1, y, no * sizeof *y);
                    else CHECK(memcmp(y1, y, no * sizeof *y) == 0);
                })
            }
            free(x), free(W), free(b), free(ref), free(y), free(y1), free(W16);
        }
}

static void test_norms(void) {
    static const int ln[][2] = {{1, 1}, {3, 7}, {77, 32}, {5, 1023}};
    for (size_t s = 0; s < ARRAY_LEN(ln); s++) {
        int T = ln[s][0], C = ln[s][1];
        float *x = rnd((size_t)T * C), *g = rnd((size_t)C), *b = rnd((size_t)C), *ref = rnd((size_t)T * C), *y = rnd((size_t)T * C);
        for (int i = 0; i < C; i++) x[i] += 5; // an offset row: the mean must not swamp the variance
        op_layer_norm_ref(ref, x, T, C, 1e-5f, g, b);
        FOR_CTX(c, {
            memcpy(y, x, (size_t)T * C * sizeof *y);
            op_layer_norm(&c, y, y, T, C, 1e-5f, g, b); // in place
            CHECK_CLOSE("layer_norm", y, ref, (size_t)T * C, 1e-5);
        })
        // Against hand-computed values: row (1, 2, 3) → (-1.2247, 0, 1.2247).
        float r[3] = {1, 2, 3}, o[3];
        op_layer_norm_ref(o, r, 1, 3, 0, NULL, NULL);
        CHECK_NEAR(o[0], -1.2247449, 1e-5);
        CHECK_NEAR(o[1], 0, 1e-6);
        free(x), free(g), free(b), free(ref), free(y);
    }
    static const int gn[][3] = {{8, 1, 8}, {32, 64, 8}, {6, 35, 3}, {33, 7, 11}, {64, 1, 32}};
    for (size_t s = 0; s < ARRAY_LEN(gn); s++)
        for (int act = 0; act < 2; act++) {
            int C = gn[s][0], HW = gn[s][1], G = gn[s][2];
            size_t n = (size_t)C * HW;
            float *x = rnd(n), *g = rnd((size_t)C), *b = rnd((size_t)C), *ref = rnd(n), *y = rnd(n);
            op_group_norm_ref(ref, x, C, HW, G, 1e-6f, g, b, act);
            FOR_CTX(c, {
                memcpy(y, x, n * sizeof *y);
                op_group_norm(&c, y, y, C, HW, G, 1e-6f, g, b, act);
                CHECK_CLOSE("group_norm", y, ref, n, 1e-5);
            })
            free(x), free(g), free(b), free(ref), free(y);
        }
}

static void test_attention(void) {
    static const op_attn cases[] = {
        {1, 1, 1, 1, 1, 1, 1, 1, false},       {7, 7, 2, 16, 96, 96, 96, 32, false}, {77, 77, 2, 16, 96, 96, 96, 32, true},
        {64, 77, 2, 16, 32, 64, 64, 32, false}, {33, 5, 3, 7, 21, 42, 42, 21, false}, {31, 31, 1, 40, 120, 120, 120, 40, true},
        // several query and key tiles, heads of 40 and 80, causal across tiles
        {300, 300, 2, 40, 240, 240, 240, 80, false}, {70, 600, 1, 80, 80, 160, 160, 80, false}, {300, 300, 2, 40, 240, 240, 240, 80, true},
    };
    for (size_t s = 0; s < ARRAY_LEN(cases); s++) {
        const op_attn *a = &cases[s];
        size_t nq = (size_t)a->Tq * a->ldq, nk = (size_t)a->Tk * MAX(a->ldk, a->ldv), no = (size_t)a->Tq * a->ldo;
        float *q = rnd(nq), *kv = rnd(nk + (size_t)a->n_head * a->d * 2), *ref = rnd(no), *y = rnd(no), *y1 = rnd(no);
        for (size_t i = 0; i < nq; i++) q[i] *= 3; // sharper distributions
        // Self-attention layouts share one buffer: q at 0, k at n_head*d, v at 2*n_head*d.
        bool self = a->ldq == a->ldk && a->Tq == a->Tk;
        const float *K = self ? q + (size_t)a->n_head * a->d : kv;
        const float *V = self ? q + (size_t)2 * a->n_head * a->d : kv + (size_t)a->n_head * a->d;
        if (self && (size_t)3 * a->n_head * a->d > (size_t)a->ldq) K = V = kv;
        op_attention_ref(ref, q, K, V, a);
        FOR_CTX(c, {
            op_attention(&c, y, q, K, V, a);
            CHECK_CLOSE("attention", y, ref, no, 1e-5);
            if (t_ == 0) memcpy(y1, y, no * sizeof *y);
            else CHECK(memcmp(y1, y, no * sizeof *y) == 0);
        })
        free(q), free(kv), free(ref), free(y), free(y1);
    }
    // Causal: the first query sees only the first key, so it returns v[0].
    float q[2] = {1, 2}, k[4] = {1, 0, 0, 1}, v[4] = {5, 6, 7, 8}, o[4];
    op_attention_ref(o, q, k, v, &(op_attn){1, 2, 1, 2, 2, 2, 2, 2, true});
    CHECK(o[0] == 5 && o[1] == 6);
}

// The vector levels' GELU (erfc ≈ t·P(t)·e^(−z²)): within 1e-6·max(1, |x|)·max(1, |a|) of the reference.
static double gelu_excess(const float *y, const float *ref, const float *g, const float *a, size_t n) {
    double worst = 0;
    for (size_t i = 0; i < n; i++)
        worst = fmax(worst, fabs((double)y[i] - ref[i]) / (1e-6 * fmax(1, fabs(g[i])) * (a ? fmax(1, fabs(a[i])) : 1)));
    return worst; // <= 1 passes
}

static void test_elementwise(void) {
    // Hand values.
    CHECK_NEAR(op_act_ref(OP_ACT_GELU, 1.0f), 0.8413447, 1e-6);
    CHECK_NEAR(op_act_ref(OP_ACT_GELU, -2.0f), -0.0455003, 1e-6);
    CHECK_NEAR(op_act_ref(OP_ACT_QUICK_GELU, 1.0f), 1.0 / (1.0 + exp(-1.702)), 1e-6);
    CHECK_NEAR(op_act_ref(OP_ACT_SILU, 2.0f), 2.0 / (1.0 + exp(-2.0)), 1e-6);
    CHECK(op_act_ref(OP_ACT_RELU, -3) == 0 && op_act_ref(OP_ACT_RELU, 3) == 3);
    CHECK_NEAR(op_act_ref(OP_ACT_TANH, 0.5f), tanh(0.5), 1e-7);
    static const size_t ns[] = {1, 7, 4095, 4097, 10001};
    for (size_t s = 0; s < ARRAY_LEN(ns); s++)
        for (int a = OP_ACT_GELU; a <= OP_ACT_TANH; a++) {
            float *x = rnd(ns[s]), *ref = malloc(ns[s] * sizeof *ref);
            for (size_t i = 0; i < ns[s]; i++) x[i] *= 6, ref[i] = op_act_ref((op_act)a, x[i]);
            FOR_CTX(c, {
                float *y = malloc(ns[s] * sizeof *y);
                memcpy(y, x, ns[s] * sizeof *y);
                op_act_inplace(&c, y, ns[s], (op_act)a);
                if (a == OP_ACT_GELU) {
                    double ex = gelu_excess(y, ref, x, NULL, ns[s]);
                    CHECK_MSG(ex <= 1, "gelu: %g of the allowed error", ex);
                } else if (a == OP_ACT_SILU) { // vectorized exp: a few ulp from expf
                    double worst = 0;
                    for (size_t i = 0; i < ns[s]; i++) worst = fmax(worst, fabs((double)y[i] - ref[i]) / fmax(fabs(ref[i]), 1e-30));
                    CHECK_MSG(worst <= 1e-6, "silu: relative error %g", worst);
                } else {
                    CHECK(memcmp(y, ref, ns[s] * sizeof *y) == 0);
                }
                free(y);
            })
            free(x), free(ref);
        }
    // GEGLU into another buffer (rows split between threads) and in place.
    int T = 37, C = 7;
    float *x = rnd((size_t)T * 2 * C), *ref = malloc((size_t)T * C * sizeof *ref), *ga = malloc((size_t)T * C * sizeof *ga),
          *aa = malloc((size_t)T * C * sizeof *aa);
    for (int t = 0; t < T; t++)
        for (int i = 0; i < C; i++) {
            x[t * 2 * C + C + i] *= 6;
            ga[t * C + i] = x[t * 2 * C + C + i], aa[t * C + i] = x[t * 2 * C + i];
            ref[t * C + i] = x[t * 2 * C + i] * op_act_ref(OP_ACT_GELU, x[t * 2 * C + C + i]);
        }
    FOR_CTX(c, {
        float *o = malloc((size_t)T * C * sizeof *o);
        float *in = malloc((size_t)T * 2 * C * sizeof *in);
        op_geglu(&c, o, x, T, C);
        double ex = gelu_excess(o, ref, ga, aa, (size_t)T * C);
        CHECK_MSG(ex <= 1, "geglu: %g of the allowed error", ex);
        memcpy(in, x, (size_t)T * 2 * C * sizeof *in);
        op_geglu(&c, in, in, T, C);
        CHECK(memcmp(in, o, (size_t)T * C * sizeof *o) == 0); // in place: the same values
        free(o);
        free(in);
    })
    free(ga), free(aa);
    op_ctx c0 = {.k = kern_get_exact(KERN_REF)};
    op_geglu(&c0, x, x, T, C);
    CHECK(memcmp(x, ref, (size_t)T * C * sizeof *x) == 0);
    free(x), free(ref);
    // Upsampling, concat, transpose.
    static const int ups[][3] = {{1, 1, 1}, {3, 5, 7}, {32, 8, 8}, {2, 33, 17}};
    for (size_t s = 0; s < ARRAY_LEN(ups); s++) {
        int Cc = ups[s][0], h = ups[s][1], w = ups[s][2];
        size_t n = (size_t)Cc * 4 * h * w;
        float *xi = rnd((size_t)Cc * h * w), *r = rnd(n), *y = rnd(n);
        op_upsample2x_ref(r, xi, Cc, h, w);
        CHECK(r[0] == xi[0] && r[(size_t)2 * w + 1] == xi[0]);
        FOR_CTX(c, {
            op_upsample2x(&c, y, xi, Cc, h, w);
            CHECK(memcmp(y, r, n * sizeof *y) == 0);
        })
        float *t = rnd((size_t)Cc * h * w), *tt = rnd((size_t)Cc * h * w);
        FOR_CTX(c, {
            op_transpose(&c, t, xi, Cc, h * w);
            op_transpose(&c, tt, t, h * w, Cc);
            CHECK(memcmp(tt, xi, (size_t)Cc * h * w * sizeof *tt) == 0);
            CHECK(Cc < 2 || t[1] == xi[(size_t)h * w]);
        })
        free(xi), free(r), free(y), free(t), free(tt);
    }
    float a[6] = {1, 2, 3, 4, 5, 6}, b[3] = {7, 8, 9}, y[9];
    op_concat(y, a, 2, b, 1, 3);
    CHECK(y[0] == 1 && y[5] == 6 && y[6] == 7 && y[8] == 9);
    op_add(y, y, y, 9);
    CHECK(y[8] == 18);
}

int main(int argc, char **argv) {
    test_init(argc, argv);
    sim_err err;
    if (pool_new(&g_pool[1], 2, &err) != SIM_OK) return 1;
    g_pool[0] = NULL;
    TEST_RUN(test_sgemm);
    TEST_RUN(test_linear);
    TEST_RUN(test_conv2d);
    TEST_RUN(test_norms);
    TEST_RUN(test_attention);
    TEST_RUN(test_elementwise);
    pool_free(g_pool[1]);
    return test_finish();
}
