// ops.c — image-model operators (see ops.h): scalar references, and fast
// paths that split work across the pool and run products on sgemm.
#include "tensor/ops.h"

#include <math.h>
#include <string.h>

#include "tensor/sgemm.h"

// --- running on the pool ------------------------------------------------------------

static void run(op_ctx *c, pool_fn fn, void *arg) {
    if (c->pool && pool_size(c->pool) > 1) pool_run(c->pool, fn, arg);
    else fn(arg, 0, 1);
}


// The range [*a, *b) of n items that thread ith of nth takes (contiguous).
static void share(int64_t n, int ith, int nth, int64_t *a, int64_t *b) {
    *a = n * ith / nth;
    *b = n * (ith + 1) / nth;
}

// --- weights and the GEMM ------------------------------------------------------------

float op_mat_at(op_mat m, size_t i) {
    switch (m.type) {
    case TT_F32: return ((const float *)m.data)[i];
    case TT_F16: return tt_half_to_float(((const tt_half *)m.data)[i]);
    case TT_BF16: return tt_bf16_to_float(((const tt_bf16 *)m.data)[i]);
    default: ASSERT(!"op_mat: not a float type");
    }
    return 0;
}

size_t op_gemm_scratch(int n_threads) { return (size_t)n_threads * SG_THREAD_FLOATS; }

static void count(op_ctx *c, uint64_t flops) {
    if (c->flops) *c->flops += flops;
}

typedef struct gemm_args {
    op_ctx *c;
    sg_args g;
    pool_counter ctr;
} gemm_args;

static void gemm_work(void *arg, int ith, int nth) {
    (void)nth;
    gemm_args *a = arg;
    sg_run(&a->g, &a->ctr, a->c->scratch + (size_t)ith * SG_THREAD_FLOATS);
}

// Runs the planned product on the pool.
static void gemm(op_ctx *c, gemm_args *a) {
    int nth = c->pool ? pool_size(c->pool) : 1;
    ASSERT(c->scratch && c->scratch_cap >= op_gemm_scratch(nth));
    a->c = c;
    sg_plan(&a->g, 4 * nth); // enough tiles for threads to finish together, few enough to pack B rarely
    run(c, gemm_work, a);
}

// --- linear ---------------------------------------------------------------------------

void op_linear_ref(float *y, const float *x, op_mat W, const float *b, int N, int n_in, int n_out) {
    for (int t = 0; t < N; t++)
        for (int o = 0; o < n_out; o++) {
            float s = b ? b[o] : 0;
            for (int i = 0; i < n_in; i++) s += x[(size_t)t * n_in + i] * op_mat_at(W, (size_t)o * n_in + i);
            y[(size_t)t * n_out + o] = s;
        }
}

void op_linear(op_ctx *c, float *y, const float *x, op_mat W, const float *b, int N, int n_in, int n_out) {
    ASSERT(N >= 0 && n_in > 0 && n_out > 0);
    count(c, 2ull * (uint64_t)N * (uint64_t)n_in * (uint64_t)n_out);
    if (c->ref) return op_linear_ref(y, x, W, b, N, n_in, n_out);
    if (N == 0) return;
    // y = x · Wᵀ: A = the tokens, B = Wᵀ packed from W's rows.
    sg_rows B = {W.type, W.data, (size_t)n_in};
    gemm_args a = {.g = {.k = c->k, .M = N, .N = n_out, .K = n_in, .a_type = TT_F32, .a = x, .lda = (size_t)n_in,
                         .pack_b = sg_pack_rows, .b = &B, .c = y, .ldc = (size_t)n_out, .bias_c = b}};
    gemm(c, &a);
}

// --- conv2d ----------------------------------------------------------------------------

void op_conv_out_size(const op_conv *p, int h, int w, int *ho, int *wo) {
    int eh = h + p->pad_t + p->pad_b - p->kh, ew = w + p->pad_l + p->pad_r - p->kw;
    *ho = eh < 0 ? 0 : eh / p->stride + 1; // a kernel larger than the padded input: no output
    *wo = ew < 0 ? 0 : ew / p->stride + 1;
}

void op_conv2d_ref(float *y, const float *x, const op_conv *p, int h, int w, op_mat weight, const float *bias) {
    int ho, wo;
    op_conv_out_size(p, h, w, &ho, &wo);
    for (int co = 0; co < p->cout; co++)
        for (int oy = 0; oy < ho; oy++)
            for (int ox = 0; ox < wo; ox++) {
                float s = bias ? bias[co] : 0;
                for (int ci = 0; ci < p->cin; ci++)
                    for (int ky = 0; ky < p->kh; ky++)
                        for (int kx = 0; kx < p->kw; kx++) {
                            int iy = oy * p->stride - p->pad_t + ky, ix = ox * p->stride - p->pad_l + kx;
                            if (iy < 0 || iy >= h || ix < 0 || ix >= w) continue;
                            s += x[((size_t)ci * h + iy) * w + ix] * op_mat_at(weight, (((size_t)co * p->cin + ci) * p->kh + ky) * p->kw + kx);
                        }
                y[((size_t)co * ho + oy) * wo + ox] = p->relu && s < 0 ? 0 : s;
            }
}

// The convolution is the product weight (cout, K) · patches (K, ho·wo),
// K = (ci, ky, kx) in PyTorch's order; the patch matrix is never built:
// this packer writes B's panels from the image. Row k of a panel holds
// the pixel (ci, oy·s + ky - pad_t, ox·s + kx - pad_l) of each of its
// output pixels, taken in runs along output rows (a shifted row copy for
// stride 1), zero outside the image.
typedef struct conv_b {
    const float *x;
    const op_conv *p;
    int h, w, wo;
} conv_b;

static void pack_conv(const void *b, const kern_ops *k, int k0, int kc, int64_t n0, int nc, float *bp, float *tmp) {
    (void)k, (void)tmp;
    const conv_b *cb = b;
    const op_conv *p = cb->p;
    int s = p->stride, taps = p->kh * p->kw;
    for (int pn = 0; pn * KERN_SG_NR < nc; pn++) {
        int np = MIN(KERN_SG_NR, nc - pn * KERN_SG_NR);
        int64_t q0 = n0 + (int64_t)pn * KERN_SG_NR;
        float *dst = bp + (size_t)pn * kc * KERN_SG_NR;
        for (int kk = 0; kk < kc; kk++) {
            int kg = k0 + kk, ci = kg / taps, ky = kg % taps / p->kw, kx = kg % p->kw;
            float *d = dst + (size_t)kk * KERN_SG_NR;
            const float *plane = cb->x + (size_t)ci * cb->h * cb->w;
            int oy = (int)(q0 / cb->wo), ox = (int)(q0 % cb->wo);
            for (int j = 0; j < np; oy++, ox = 0) {
                int run = MIN(np - j, cb->wo - ox), iy = oy * s - p->pad_t + ky, ix0 = ox * s - p->pad_l + kx;
                float *o = d + j;
                j += run;
                if (iy < 0 || iy >= cb->h) {
                    memset(o, 0, (size_t)run * sizeof *o);
                    continue;
                }
                const float *row = plane + (size_t)iy * cb->w;
                if (s == 1) { // columns ix0 .. ix0 + run: zeros, the image's run, zeros
                    int lo = MIN(run, MAX(0, -ix0)), hi = MAX(lo, MIN(run, cb->w - ix0));
                    memset(o, 0, (size_t)lo * sizeof *o);
                    if (hi > lo) memcpy(o + lo, row + ix0 + lo, (size_t)(hi - lo) * sizeof *o);
                    memset(o + hi, 0, (size_t)(run - hi) * sizeof *o);
                } else {
                    for (int t = 0; t < run; t++) {
                        int ix = ix0 + t * s;
                        o[t] = ix >= 0 && ix < cb->w ? row[ix] : 0;
                    }
                }
            }
            memset(d + np, 0, (size_t)(KERN_SG_NR - np) * sizeof *d);
        }
    }
}

void op_conv2d(op_ctx *c, float *y, const float *x, const op_conv *p, int h, int w, op_mat weight, const float *bias) {
    ASSERT(p->cin > 0 && p->cout > 0 && p->kh > 0 && p->kw > 0 && p->stride > 0);
    ASSERT(p->pad_t >= 0 && p->pad_l >= 0 && p->pad_b >= 0 && p->pad_r >= 0);
    int ho, wo;
    op_conv_out_size(p, h, w, &ho, &wo);
    int K = p->cin * p->kh * p->kw;
    count(c, 2ull * (uint64_t)p->cout * (uint64_t)K * (uint64_t)ho * (uint64_t)wo);
    if (c->ref) return op_conv2d_ref(y, x, p, h, w, weight, bias);
    if (ho == 0 || wo == 0) return;
    conv_b B = {x, p, h, w, wo};
    gemm_args a = {.g = {.k = c->k, .M = p->cout, .N = (int64_t)ho * wo, .K = K, .a_type = weight.type, .a = weight.data,
                         .lda = (size_t)K, .pack_b = pack_conv, .b = &B, .c = y, .ldc = (size_t)ho * wo, .bias_r = bias,
                         .relu = p->relu}};
    gemm(c, &a);
}

// --- normalization ------------------------------------------------------------------

static void layer_norm_rows(float *out, const float *x, int64_t t0, int64_t t1, int C, float eps, const float *g, const float *b) {
    for (int64_t t = t0; t < t1; t++) {
        const float *r = x + (size_t)t * C;
        float *o = out + (size_t)t * C;
        double m = 0, v = 0;
        for (int i = 0; i < C; i++) m += r[i];
        m /= C;
        for (int i = 0; i < C; i++) v += (r[i] - m) * (r[i] - m);
        float inv = (float)(1.0 / sqrt(v / C + eps)), mf = (float)m;
        for (int i = 0; i < C; i++) o[i] = (r[i] - mf) * inv * (g ? g[i] : 1) + (b ? b[i] : 0);
    }
}

void op_layer_norm_ref(float *out, const float *x, int T, int C, float eps, const float *g, const float *b) {
    layer_norm_rows(out, x, 0, T, C, eps, g, b);
}

typedef struct ln_args {
    float *out;
    const float *x, *g, *b;
    int T, C;
    float eps;
} ln_args;

static void ln_work(void *arg, int ith, int nth) {
    ln_args *a = arg;
    int64_t t0, t1;
    share(a->T, ith, nth, &t0, &t1);
    layer_norm_rows(a->out, a->x, t0, t1, a->C, a->eps, a->g, a->b);
}

void op_layer_norm(op_ctx *c, float *out, const float *x, int T, int C, float eps, const float *g, const float *b) {
    if (c->ref) return op_layer_norm_ref(out, x, T, C, eps, g, b);
    ln_args a = {out, x, g, b, T, C, eps};
    run(c, ln_work, &a);
}

static inline float silu(float x) { return x / (1.0f + expf(-x)); }

static void group_norm_groups(const kern_ops *k, float *out, const float *x, int64_t g0, int64_t g1, int C, int HW, int G, float eps,
                              const float *g, const float *b, bool act) {
    int cg = C / G;
    size_t n = (size_t)cg * HW;
    for (int64_t gi = g0; gi < g1; gi++) {
        const float *r = x + (size_t)gi * n;
        double m = 0, v = 0;
        for (size_t i = 0; i < n; i++) m += r[i];
        m /= (double)n;
        for (size_t i = 0; i < n; i++) v += (r[i] - m) * (r[i] - m);
        float inv = (float)(1.0 / sqrt(v / (double)n + eps)), mf = (float)m;
        for (int ci = 0; ci < cg; ci++) {
            int ch = (int)gi * cg + ci;
            // (x - mean) first: folding the mean into the shift cancels badly
            // when the variance is tiny next to eps.
            float sc = inv * (g ? g[ch] : 1), sh = b ? b[ch] : 0;
            const float *xi = r + (size_t)ci * HW;
            float *o = out + (size_t)ch * HW;
            for (int i = 0; i < HW; i++) o[i] = (xi[i] - mf) * sc + sh;
            if (act) k->swiglu(o, NULL, HW);
        }
    }
}

void op_group_norm_ref(float *out, const float *x, int C, int HW, int G, float eps, const float *g, const float *b, bool act) {
    ASSERT(G > 0 && C % G == 0);
    int cg = C / G;
    for (int gi = 0; gi < G; gi++) {
        double m = 0, v = 0;
        size_t n = (size_t)cg * HW;
        for (int ci = 0; ci < cg; ci++)
            for (int i = 0; i < HW; i++) m += x[(size_t)(gi * cg + ci) * HW + i];
        m /= (double)n;
        for (int ci = 0; ci < cg; ci++)
            for (int i = 0; i < HW; i++) {
                double d = x[(size_t)(gi * cg + ci) * HW + i] - m;
                v += d * d;
            }
        v /= (double)n;
        for (int ci = 0; ci < cg; ci++) {
            int ch = gi * cg + ci;
            for (int i = 0; i < HW; i++) {
                float y = (float)((x[(size_t)ch * HW + i] - m) / sqrt(v + eps)) * (g ? g[ch] : 1) + (b ? b[ch] : 0);
                out[(size_t)ch * HW + i] = act ? silu(y) : y;
            }
        }
    }
}

typedef struct gn_args {
    const kern_ops *k;
    float *out;
    const float *x, *g, *b;
    int C, HW, G;
    float eps;
    bool act;
} gn_args;

static void gn_work(void *arg, int ith, int nth) {
    gn_args *a = arg;
    int64_t g0, g1;
    share(a->G, ith, nth, &g0, &g1);
    group_norm_groups(a->k, a->out, a->x, g0, g1, a->C, a->HW, a->G, a->eps, a->g, a->b, a->act);
}

void op_group_norm(op_ctx *c, float *out, const float *x, int C, int HW, int G, float eps, const float *g, const float *b, bool act) {
    ASSERT(G > 0 && C % G == 0);
    if (c->ref) return op_group_norm_ref(out, x, C, HW, G, eps, g, b, act);
    gn_args a = {c->k, out, x, g, b, C, HW, G, eps, act};
    run(c, gn_work, &a);
}

// --- attention ------------------------------------------------------------------------

void op_attention_ref(float *out, const float *q, const float *k, const float *v, const op_attn *a) {
    float scale = 1.0f / sqrtf((float)a->d);
    for (int h = 0; h < a->n_head; h++)
        for (int i = 0; i < a->Tq; i++) {
            int n = a->causal ? MIN(i + 1, a->Tk) : a->Tk;
            const float *qi = q + (size_t)i * a->ldq + (size_t)h * a->d;
            double mx = -INFINITY;
            for (int j = 0; j < n; j++) {
                double s = 0;
                for (int e = 0; e < a->d; e++) s += (double)qi[e] * k[(size_t)j * a->ldk + (size_t)h * a->d + e];
                mx = fmax(mx, s * scale);
            }
            float *o = out + (size_t)i * a->ldo + (size_t)h * a->d;
            for (int e = 0; e < a->d; e++) o[e] = 0;
            double sum = 0;
            for (int j = 0; j < n; j++) {
                double s = 0;
                for (int e = 0; e < a->d; e++) s += (double)qi[e] * k[(size_t)j * a->ldk + (size_t)h * a->d + e];
                double p = exp(s * scale - mx);
                sum += p;
                for (int e = 0; e < a->d; e++) o[e] += (float)(p * v[(size_t)j * a->ldv + (size_t)h * a->d + e]);
            }
            for (int e = 0; e < a->d; e++) o[e] = (float)(o[e] / sum);
        }
}

// The fast path: for each head and tile of AT_TQ queries (one thread's
// unit of work), over tiles of AT_TK keys: S = Q·Kᵀ (the GEMM, keys packed
// as rows), scaled; the online softmax (running max m and sum l per query;
// the output so far is rescaled by exp(m_old - m_new)); O += P·V (the
// GEMM accumulating). Scratch per thread: the GEMM's, S, O, m, l.
#define AT_TQ 64
#define AT_TK 256

static size_t attn_thread_floats(int d) { return SG_THREAD_FLOATS + (size_t)AT_TQ * AT_TK + (size_t)AT_TQ * (size_t)d + 2 * AT_TQ; }

size_t op_attention_scratch(const op_attn *a, int n_threads) { return (size_t)n_threads * attn_thread_floats(a->d); }

typedef struct attn_args {
    op_ctx *c;
    float *out;
    const float *q, *k, *v;
    const op_attn *a;
    pool_counter ctr;
} attn_args;

// Runs a planned product on the calling thread alone.
static void gemm_1(sg_args *g, float *buf) {
    sg_plan(g, 1);
    for (int64_t t = 0; t < sg_tiles(g); t++) sg_tile(g, t, buf);
}

static void attn_unit(const attn_args *A, int h, int i0, float *buf) {
    const op_attn *a = A->a;
    const kern_ops *K = A->c->k;
    int d = a->d, tq = MIN(AT_TQ, a->Tq - i0), n_keys = a->causal ? MIN(a->Tk, i0 + tq) : a->Tk;
    float *S = buf + SG_THREAD_FLOATS, *O = S + (size_t)AT_TQ * AT_TK, *m = O + (size_t)AT_TQ * d, *l = m + AT_TQ;
    float scale = 1.0f / sqrtf((float)d);
    memset(O, 0, (size_t)tq * d * sizeof *O);
    for (int i = 0; i < tq; i++) m[i] = -INFINITY, l[i] = 0;
    for (int j0 = 0; j0 < n_keys; j0 += AT_TK) {
        int tk = MIN(AT_TK, n_keys - j0);
        sg_rows kr = {TT_F32, A->k + (size_t)j0 * a->ldk + (size_t)h * d, (size_t)a->ldk};
        sg_args qk = {.k = K, .M = tq, .N = tk, .K = d, .a_type = TT_F32, .a = A->q + (size_t)i0 * a->ldq + (size_t)h * d,
                      .lda = (size_t)a->ldq, .pack_b = sg_pack_rows, .b = &kr, .c = S, .ldc = AT_TK};
        gemm_1(&qk, buf);
        for (int i = 0; i < tq; i++) {
            float *s = S + (size_t)i * AT_TK;
            int n = a->causal ? MIN(tk, i0 + i + 1 - j0) : tk; // keys this query sees in the tile
            if (n <= 0) {
                memset(s, 0, (size_t)tk * sizeof *s);
                continue;
            }
            float mx = m[i];
            for (int j = 0; j < n; j++) {
                s[j] *= scale;
                mx = s[j] > mx ? s[j] : mx; // (fmaxf is a libm call here)
            }
            float sum = K->exp_sum(s, n, mx), alpha = expf(m[i] - mx); // exp(-inf) = 0 on the first tile
            memset(s + n, 0, (size_t)(tk - n) * sizeof *s);
            l[i] = l[i] * alpha + sum, m[i] = mx;
            if (alpha != 1.0f)
                for (int e = 0; e < d; e++) O[(size_t)i * d + e] *= alpha;
        }
        sg_dense vr = {A->v + (size_t)j0 * a->ldv + (size_t)h * d, (size_t)a->ldv};
        sg_args pv = {.k = K, .M = tq, .N = d, .K = tk, .a_type = TT_F32, .a = S, .lda = AT_TK, .pack_b = sg_pack_dense,
                      .b = &vr, .c = O, .ldc = (size_t)d, .acc = true};
        gemm_1(&pv, buf);
    }
    for (int i = 0; i < tq; i++) {
        float inv = 1.0f / l[i], *o = A->out + (size_t)(i0 + i) * a->ldo + (size_t)h * d;
        for (int e = 0; e < d; e++) o[e] = O[(size_t)i * d + e] * inv;
    }
}

static void attn_work(void *arg, int ith, int nth) {
    (void)nth;
    attn_args *A = arg;
    float *buf = A->c->scratch + (size_t)ith * attn_thread_floats(A->a->d);
    int64_t n_qt = (A->a->Tq + AT_TQ - 1) / AT_TQ;
    for (int64_t u; (u = pool_claim(&A->ctr)) < n_qt * A->a->n_head;)
        attn_unit(A, (int)(u / n_qt), (int)(u % n_qt) * AT_TQ, buf);
}

void op_attention(op_ctx *c, float *out, const float *q, const float *k, const float *v, const op_attn *a) {
    ASSERT(a->Tq > 0 && a->Tk > 0 && a->n_head > 0 && a->d > 0);
    // QKᵀ and PV: 2·d FLOPs each per (query, key) pair seen.
    uint64_t pairs = a->causal ? 0 : (uint64_t)a->Tq * (uint64_t)a->Tk;
    for (int i = 0; a->causal && i < a->Tq; i++) pairs += (uint64_t)MIN(i + 1, a->Tk);
    count(c, 4ull * pairs * (uint64_t)a->d * (uint64_t)a->n_head);
    if (c->ref) return op_attention_ref(out, q, k, v, a);
    int nth = c->pool ? pool_size(c->pool) : 1;
    ASSERT(c->scratch && c->scratch_cap >= op_attention_scratch(a, nth));
    attn_args A = {c, out, q, k, v, a, {0}};
    run(c, attn_work, &A);
}

// --- element-wise -----------------------------------------------------------------------

float op_act_ref(op_act a, float x) {
    switch (a) {
    case OP_ACT_GELU: return 0.5f * x * (1.0f + erff(x * 0.70710678118654752f));
    case OP_ACT_QUICK_GELU: return x / (1.0f + expf(-1.702f * x));
    case OP_ACT_SILU: return silu(x);
    case OP_ACT_RELU: return x > 0 ? x : 0;
    case OP_ACT_TANH: return tanhf(x);
    }
    return x;
}

typedef struct act_args {
    const kern_ops *k; // NULL: the reference arithmetic
    float *x;
    size_t n;
    op_act a;
} act_args;

static void act_work(void *arg, int ith, int nth) {
    act_args *A = arg;
    int64_t i0, i1;
    share((int64_t)A->n, ith, nth, &i0, &i1);
    float *x = A->x;
    switch (A->a) {
    case OP_ACT_RELU:
        for (int64_t i = i0; i < i1; i++) x[i] = x[i] > 0 ? x[i] : 0;
        break;
    case OP_ACT_SILU:
        if (!A->k) goto ref;
        A->k->swiglu(x + i0, NULL, i1 - i0); // vectorized SiLU
        break;
    case OP_ACT_GELU:
        if (!A->k) goto ref;
        A->k->geglu(x + i0, NULL, x + i0, i1 - i0);
        break;
    default:
    ref:
        for (int64_t i = i0; i < i1; i++) x[i] = op_act_ref(A->a, x[i]);
    }
}

void op_act_inplace(op_ctx *c, float *x, size_t n, op_act a) {
    act_args A = {c->ref ? NULL : c->k, x, n, a};
    if (c->ref || n < 4096) act_work(&A, 0, 1);
    else run(c, act_work, &A);
}

void op_geglu_ref(float *out, const float *x, int T, int C) {
    for (int t = 0; t < T; t++)
        for (int i = 0; i < C; i++)
            out[(size_t)t * C + i] = x[(size_t)t * 2 * C + i] * op_act_ref(OP_ACT_GELU, x[(size_t)t * 2 * C + C + i]);
}

typedef struct geglu_args {
    const kern_ops *k;
    float *out;
    const float *x;
    int T, C;
} geglu_args;

static void geglu_work(void *arg, int ith, int nth) {
    geglu_args *a = arg;
    int64_t t0, t1;
    share(a->T, ith, nth, &t0, &t1);
    for (int64_t t = t0; t < t1; t++) { // row t's output lies below row t's inputs (or on its first half): in place works
        const float *row = a->x + (size_t)t * 2 * a->C;
        a->k->geglu(a->out + (size_t)t * a->C, row, row + a->C, a->C);
    }
}

void op_geglu(op_ctx *c, float *out, const float *x, int T, int C) {
    if (c->ref) return op_geglu_ref(out, x, T, C);
    geglu_args a = {c->k, out, x, T, C};
    // In place it must run in row order (row t is written below row 2t's inputs): one thread.
    if (out == x) geglu_work(&a, 0, 1);
    else run(c, geglu_work, &a);
}

void op_upsample2x_ref(float *y, const float *x, int C, int h, int w) {
    for (int ch = 0; ch < C; ch++)
        for (int oy = 0; oy < 2 * h; oy++)
            for (int ox = 0; ox < 2 * w; ox++)
                y[((size_t)ch * 2 * h + oy) * 2 * w + ox] = x[((size_t)ch * h + oy / 2) * w + ox / 2];
}

typedef struct up_args {
    float *y;
    const float *x;
    int C, h, w;
} up_args;

static void up_work(void *arg, int ith, int nth) {
    up_args *a = arg;
    int64_t r0, r1;
    share((int64_t)a->C * a->h, ith, nth, &r0, &r1);
    for (int64_t r = r0; r < r1; r++) { // input row r → output rows 2r, 2r+1 (same channel layout)
        const float *xi = a->x + (size_t)r * a->w;
        float *o = a->y + (size_t)r * 4 * a->w;
        for (int i = 0; i < a->w; i++) o[2 * i] = o[2 * i + 1] = xi[i];
        memcpy(o + 2 * a->w, o, (size_t)a->w * 2 * sizeof *o);
    }
}

void op_upsample2x(op_ctx *c, float *y, const float *x, int C, int h, int w) {
    if (c->ref) return op_upsample2x_ref(y, x, C, h, w);
    up_args a = {y, x, C, h, w};
    run(c, up_work, &a);
}

void op_concat(float *y, const float *a, int ca, const float *b, int cb, int HW) {
    memcpy(y, a, (size_t)ca * HW * sizeof *y);
    memcpy(y + (size_t)ca * HW, b, (size_t)cb * HW * sizeof *y);
}

typedef struct tr_args {
    float *y;
    const float *x;
    int H, W;
} tr_args;

static void tr_work(void *arg, int ith, int nth) {
    tr_args *a = arg;
    int64_t c0, c1; // output rows = input columns
    share(a->W, ith, nth, &c0, &c1);
    for (int64_t i0 = 0; i0 < a->H; i0 += 32)
        for (int64_t j = c0; j < c1; j++)
            for (int64_t i = i0; i < MIN(a->H, i0 + 32); i++) a->y[(size_t)j * a->H + i] = a->x[(size_t)i * a->W + j];
}

void op_transpose(op_ctx *c, float *y, const float *x, int H, int W) {
    tr_args a = {y, x, H, W};
    if (c->ref || (size_t)H * W < 4096) tr_work(&a, 0, 1);
    else run(c, tr_work, &a);
}

void op_add(float *y, const float *a, const float *b, size_t n) {
    for (size_t i = 0; i < n; i++) y[i] = a[i] + b[i];
}
