// kern.c — CPU feature detection and the per-level kernel tables.
//
// Each level's table starts as a copy of the level below and the level's
// kernel file overrides what it implements, so a type without a SIMD kernel
// falls back to the best one below it and ultimately to the scalar reference.
#include "tensor/kern.h"

#include <cpuid.h>
#include <math.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>

#include "base/base.h"

// --- detection ------------------------------------------------------------------

static uint64_t xgetbv0(void) {
    uint32_t lo, hi;
    __asm__ volatile("xgetbv" : "=a"(lo), "=d"(hi) : "c"(0));
    return ((uint64_t)hi << 32) | lo;
}

kern_level kern_detect(void) {
    unsigned a, b, c, d;
    if (!__get_cpuid(1, &a, &b, &c, &d)) return KERN_REF;
    bool osxsave = c & (1u << 27), fma = c & (1u << 12), f16c = c & (1u << 29),
         avx = c & (1u << 28);
    if (!osxsave || !avx) return KERN_REF;
    uint64_t xcr0 = xgetbv0();
    bool ymm_os = (xcr0 & 0x6) == 0x6;
    bool zmm_os = (xcr0 & 0xE6) == 0xE6;
    if (!ymm_os || !fma || !f16c) return KERN_REF;
    if (__get_cpuid_max(0, NULL) < 7) return KERN_REF;
    __cpuid_count(7, 0, a, b, c, d);
    bool avx2 = b & (1u << 5);
    if (!avx2) return KERN_REF;
    bool avx512f = b & (1u << 16), avx512dq = b & (1u << 17), avx512bw = b & (1u << 30),
         avx512vl = b & (1u << 31), vnni = c & (1u << 11);
    __cpuid_count(7, 1, a, b, c, d);
    bool bf16 = a & (1u << 5);
    if (zmm_os && avx512f && avx512dq && avx512bw && avx512vl && vnni && bf16) return KERN_AVX512;
    return KERN_AVX2;
}

// --- the reference level -----------------------------------------------------------

static void quantize_f32_copy(const float *x, void *y, int64_t n) { memcpy(y, x, (size_t)n * 4); }
static void quantize_q8_32(const float *x, void *y, int64_t n) { tt_quantize_q8_32_ref(x, y, n); }
static void quantize_q8_K(const float *x, void *y, int64_t n) { tt_quantize_q8_K_ref(x, y, n); }

// A gemm built from a row dot product: the fallback for every type and level.
#define GEMM_FROM_VEC_DOT(name, dotfn)                                                  \
    static void name(int64_t n, int nr, int nc, const void *w, size_t w_stride,        \
                     const void *a, size_t a_stride, float *out, size_t ldo) {         \
        for (int c = 0; c < nc; c++)                                                   \
            for (int r = 0; r < nr; r++)                                               \
                dotfn(n, &out[(size_t)c * ldo + r], (const char *)w + (size_t)r * w_stride, \
                      (const char *)a + (size_t)c * a_stride);                         \
    }

static float dot_f32_ref(const float *x, const float *y, int64_t n) {
    float s = 0;
    for (int64_t i = 0; i < n; i++) s += x[i] * y[i];
    return s;
}
static float dot_f16_f32_ref(const tt_half *x, const float *y, int64_t n) {
    float s = 0;
    for (int64_t i = 0; i < n; i++) s += tt_half_to_float(x[i]) * y[i];
    return s;
}
static void axpy_f16_ref(float *y, float a, const tt_half *x, int64_t n) {
    for (int64_t i = 0; i < n; i++) y[i] += a * tt_half_to_float(x[i]);
}
static void f32_to_f16_ref(const float *x, tt_half *y, int64_t n) {
    for (int64_t i = 0; i < n; i++) y[i] = tt_float_to_half(x[i]);
}

static float exp_sum_ref(float *x, int64_t n, float max) {
    float sum = 0;
    for (int64_t i = 0; i < n; i++) {
        x[i] = expf(x[i] - max);
        sum += x[i];
    }
    return sum;
}

static void swiglu_ref(float *g, const float *u, int64_t n) {
    for (int64_t i = 0; i < n; i++) g[i] = g[i] / (1.0f + expf(-g[i])) * (u ? u[i] : 1.0f);
}

static void geglu_ref(float *out, const float *a, const float *g, int64_t n) {
    for (int64_t i = 0; i < n; i++) out[i] = (a ? a[i] : 1.0f) * (0.5f * g[i] * (1.0f + erff(g[i] * 0.70710678118654752f)));
}

static void sg_tile_ref(int kc, const float *a, size_t lda, const float *bp, float *c, size_t ldc, int mr, int nr,
                        const float *bias_r, const float *bias_c, int acc) {
    for (int i = 0; i < mr; i++)
        for (int j = 0; j < nr; j++) {
            float s = 0;
            for (int k = 0; k < kc; k++) s += a[(size_t)i * lda + k] * bp[(size_t)k * KERN_SG_NR + j];
            float *o = &c[(size_t)i * ldc + j];
            *o = (acc ? *o : 0) + s + (bias_r ? bias_r[i] : 0) + (bias_c ? bias_c[j] : 0);
        }
}

static void sg_transpose16_ref(const float *src, size_t lds, float *dst, size_t ldd) {
    for (int i = 0; i < 16; i++)
        for (int j = 0; j < 16; j++) dst[(size_t)j * ldd + i] = src[(size_t)i * lds + j];
}

static uint64_t fma_peak_ref(int64_t n, float *sink) {
    float a[8] = {0, 1, 2, 3, 4, 5, 6, 7};
    for (int64_t r = 0; r < n; r++)
        for (int i = 0; i < 8; i++) a[i] = fmaf(a[i], 0.999f, 0.001f);
    *sink = a[0] + a[1] + a[2] + a[3] + a[4] + a[5] + a[6] + a[7];
    return (uint64_t)n * 8 * 2;
}

// One generic gemm per type, calling that type's reference dot product.
#define REF_GEMM(T, TT)                                                                 \
    static void vd_##T(int64_t n, float *s, const void *w, const void *a) {            \
        tt_get(TT)->vec_dot_ref(n, s, w, a);                                           \
    }                                                                                  \
    GEMM_FROM_VEC_DOT(gemm_##T##_ref, vd_##T)
REF_GEMM(f32, TT_F32)
REF_GEMM(f16, TT_F16)
REF_GEMM(bf16, TT_BF16)
REF_GEMM(q4_0, TT_Q4_0)
REF_GEMM(q4_1, TT_Q4_1)
REF_GEMM(q5_0, TT_Q5_0)
REF_GEMM(q5_1, TT_Q5_1)
REF_GEMM(q8_0, TT_Q8_0)
REF_GEMM(q2_K, TT_Q2_K)
REF_GEMM(q3_K, TT_Q3_K)
REF_GEMM(q4_K, TT_Q4_K)
REF_GEMM(q5_K, TT_Q5_K)
REF_GEMM(q6_K, TT_Q6_K)

void kern_fill_ref(kern_ops *k) {
    memset(k, 0, sizeof *k);
    k->level = KERN_REF;
    k->name = "ref";
    static const struct { tt_type t; kern_gemm_fn g; } gemms[] = {
        {TT_F32, gemm_f32_ref},   {TT_F16, gemm_f16_ref},   {TT_BF16, gemm_bf16_ref},
        {TT_Q4_0, gemm_q4_0_ref}, {TT_Q4_1, gemm_q4_1_ref}, {TT_Q5_0, gemm_q5_0_ref},
        {TT_Q5_1, gemm_q5_1_ref}, {TT_Q8_0, gemm_q8_0_ref}, {TT_Q2_K, gemm_q2_K_ref},
        {TT_Q3_K, gemm_q3_K_ref}, {TT_Q4_K, gemm_q4_K_ref}, {TT_Q5_K, gemm_q5_K_ref},
        {TT_Q6_K, gemm_q6_K_ref},
    };
    for (size_t i = 0; i < ARRAY_LEN(gemms); i++) {
        const tt_traits *tr = tt_get(gemms[i].t);
        k->vec_dot[gemms[i].t] = tr->vec_dot_ref;
        k->gemm[gemms[i].t] = gemms[i].g;
        k->to_float[gemms[i].t] = tr->to_float;
    }
    k->quantize_act[TT_ACT_F32] = quantize_f32_copy;
    k->quantize_act[TT_ACT_Q8_32] = quantize_q8_32;
    k->quantize_act[TT_ACT_Q8_K] = quantize_q8_K;
    k->dot_f32 = dot_f32_ref;
    k->dot_f16_f32 = dot_f16_f32_ref;
    k->axpy_f16 = axpy_f16_ref;
    k->f32_to_f16 = f32_to_f16_ref;
    k->exp_sum = exp_sum_ref;
    k->swiglu = swiglu_ref;
    k->geglu = geglu_ref;
    k->sg_tile = sg_tile_ref;
    k->sg_transpose16 = sg_transpose16_ref;
    k->fma_peak = fma_peak_ref;
}

// --- the tables ------------------------------------------------------------------

static kern_ops tables[3];
static kern_level detected;
static kern_level forced = KERN_BEST;
static pthread_once_t once = PTHREAD_ONCE_INIT;

static void build(void) {
    detected = kern_detect();
    kern_fill_ref(&tables[KERN_REF]);
    if (detected >= KERN_AVX2) {
        tables[KERN_AVX2] = tables[KERN_REF];
        tables[KERN_AVX2].level = KERN_AVX2;
        tables[KERN_AVX2].name = "avx2";
        // vec_dot_n must match the level's own vec_dot: never inherit it.
        memset(tables[KERN_AVX2].vec_dot_n, 0, sizeof tables[KERN_AVX2].vec_dot_n);
        kern_fill_avx2(&tables[KERN_AVX2]);
        kern_fill_math_avx2(&tables[KERN_AVX2]);
        kern_fill_sgemm_avx2(&tables[KERN_AVX2]);
    }
    if (detected >= KERN_AVX512) {
        tables[KERN_AVX512] = tables[KERN_AVX2];
        tables[KERN_AVX512].level = KERN_AVX512;
        tables[KERN_AVX512].name = "avx512";
        memset(tables[KERN_AVX512].vec_dot_n, 0, sizeof tables[KERN_AVX512].vec_dot_n);
        kern_fill_avx512(&tables[KERN_AVX512]);
        kern_fill_math_avx512(&tables[KERN_AVX512]);
        kern_fill_sgemm_avx512(&tables[KERN_AVX512]);
    }
    const char *env = getenv("SIM_KERNELS");
    if (env && strcmp(env, "ref") == 0) forced = KERN_REF;
    else if (env && strcmp(env, "avx2") == 0) forced = KERN_AVX2;
    else if (env && strcmp(env, "avx512") == 0) forced = KERN_AVX512;
}

const kern_ops *kern_get(kern_level max) {
    pthread_once(&once, build);
    kern_level l = detected;
    if (max < l) l = max;
    if (forced < l) l = forced;
    return &tables[l];
}

const kern_ops *kern_get_exact(kern_level level) {
    pthread_once(&once, build);
    if (level > detected || level > KERN_AVX512) return NULL;
    return &tables[level];
}
