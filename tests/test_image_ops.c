// test_image_ops.c — the image operators (src/tensor/ops.h): every fast path
// against its scalar reference on odd sizes, on each kernel level this CPU
// has, with 1 and 2 threads (which must agree bit for bit).
#include <stdio.h>
#include <string.h>

#include "tensor/ops.h"
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

static void test_linear(void) {
    static const int sizes[][3] = {{1, 1, 1}, {3, 7, 5}, {7, 31, 33}, {33, 64, 17}, {77, 32, 64}, {5, 255, 3}, {64, 33, 96}};
    for (size_t s = 0; s < ARRAY_LEN(sizes); s++) {
        int N = sizes[s][0], I = sizes[s][1], O = sizes[s][2];
        float *x = rnd((size_t)N * I), *W = rnd((size_t)O * I), *b = rnd((size_t)O);
        float *ref = rnd((size_t)N * O), *y = rnd((size_t)N * O), *y1 = rnd((size_t)N * O);
        op_linear_ref(ref, x, W, b, N, I, O);
        FOR_CTX(c, {
            op_linear(&c, y, x, W, s & 1 ? NULL : b, N, I, O);
            if (s & 1) op_linear_ref(ref, x, W, NULL, N, I, O);
            CHECK_CLOSE("linear", y, ref, (size_t)N * O, 1e-5);
            if (t_ == 0) memcpy(y1, y, (size_t)N * O * sizeof *y);
            else CHECK(memcmp(y1, y, (size_t)N * O * sizeof *y) == 0);
        })
        free(x), free(W), free(b), free(ref), free(y), free(y1);
    }
}

static void test_conv2d(void) {
    static const op_conv convs[] = {
        {3, 5, 3, 3, 1, 1, 1, 1, 1, false},  {4, 32, 3, 3, 1, 1, 1, 1, 1, false}, {7, 3, 1, 1, 1, 0, 0, 0, 0, false},
        {5, 9, 3, 3, 2, 0, 0, 1, 1, false},  {6, 6, 3, 3, 2, 1, 1, 1, 1, false},  {33, 17, 3, 3, 1, 1, 1, 1, 1, false},
        {2, 3, 3, 3, 1, 2, 0, 1, 3, false},  {1, 1, 1, 1, 1, 0, 0, 0, 0, false},
    };
    static const int hw[][2] = {{1, 1}, {7, 5}, {8, 8}, {13, 31}};
    for (size_t s = 0; s < ARRAY_LEN(convs); s++)
        for (size_t d = 0; d < ARRAY_LEN(hw); d++) {
            const op_conv *p = &convs[s];
            int h = hw[d][0], w = hw[d][1], ho, wo;
            op_conv_out_size(p, h, w, &ho, &wo);
            if (ho <= 0 || wo <= 0) continue;
            size_t no = (size_t)p->cout * ho * wo;
            float *x = rnd((size_t)p->cin * h * w), *W = rnd((size_t)p->cout * p->cin * p->kh * p->kw), *b = rnd((size_t)p->cout);
            float *ref = rnd(no), *y = rnd(no), *y1 = rnd(no);
            op_conv2d_ref(ref, x, p, h, w, W, b);
            FOR_CTX(c, {
                CHECK(op_conv2d_scratch(p, h, w) <= c.scratch_cap);
                op_conv2d(&c, y, x, p, h, w, W, b);
                CHECK_CLOSE("conv2d", y, ref, no, 1e-5);
                // Bands of one output row give the same result.
                op_ctx c2 = c;
                c2.scratch_cap = op_conv2d_scratch_rows(p, w, 1);
                op_conv2d(&c2, y1, x, p, h, w, W, b);
                CHECK(memcmp(y1, y, no * sizeof *y) == 0);
                // Packed weights: the same result, with less scratch.
                op_conv pk = *p;
                pk.packed = true;
                float *Wp = malloc((size_t)p->cout * p->cin * p->kh * p->kw * sizeof *Wp);
                op_conv_pack(p, W, Wp);
                c2.scratch_cap = op_conv2d_scratch_rows(&pk, w, 1);
                CHECK(c2.scratch_cap < op_conv2d_scratch_rows(p, w, 1));
                op_conv2d(&c2, y1, x, &pk, h, w, Wp, b);
                CHECK(memcmp(y1, y, no * sizeof *y) == 0);
                op_conv2d_ref(y1, x, &pk, h, w, Wp, b);
                CHECK_CLOSE("conv2d packed ref", y1, ref, no, 1e-6);
                free(Wp);
            })
            free(x), free(W), free(b), free(ref), free(y), free(y1);
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
                CHECK(memcmp(y, ref, ns[s] * sizeof *y) == 0);
                free(y);
            })
            free(x), free(ref);
        }
    // GEGLU in place.
    int T = 5, C = 7;
    float *x = rnd((size_t)T * 2 * C), *ref = malloc((size_t)T * C * sizeof *ref);
    for (int t = 0; t < T; t++)
        for (int i = 0; i < C; i++) ref[t * C + i] = x[t * 2 * C + i] * op_act_ref(OP_ACT_GELU, x[t * 2 * C + C + i]);
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
    TEST_RUN(test_linear);
    TEST_RUN(test_conv2d);
    TEST_RUN(test_norms);
    TEST_RUN(test_attention);
    TEST_RUN(test_elementwise);
    pool_free(g_pool[1]);
    return test_finish();
}
