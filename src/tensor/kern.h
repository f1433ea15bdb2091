// kern.h — compute kernels, picked at run time from CPUID.
//
// Three instruction-set levels: the scalar reference (always there), AVX2+FMA
// (+F16C), and AVX-512 (F, BW, VL, DQ, VNNI; BF16 where used). Each SIMD
// kernel has a scalar `_ref` twin in quant.c/types.c with the same contract,
// and the tests compare them on odd sizes. kern_get() returns the table for
// the best level the CPU supports, capped by the caller (or by the
// environment variable SIM_KERNELS=ref|avx2|avx512, which forces a level).
//
//     const kern_ops *k = kern_get(KERN_BEST);
//     k->quantize_act[TT_ACT_Q8_32](x, act, n);      // activations, once per row
//     k->vec_dot[TT_Q4_0](n, &s, w_row, act);         // one weight row
//     k->gemm[TT_Q4_0](n, nr, nc, w, w_stride, act, a_stride, out, ldo);
//     if (k->vec_dot_n[TT_Q4_0])                      // a few tokens, one row
//         k->vec_dot_n[TT_Q4_0](n, nc, s, s_stride, w_row, act, a_stride);
//
// The table is immutable after the first kern_get (built once, thread-safe).
#ifndef SIM_KERN_H
#define SIM_KERN_H

#include "tensor/types.h"

typedef enum kern_level {
    KERN_REF = 0,
    KERN_AVX2 = 1,
    KERN_AVX512 = 2,
    KERN_BEST = 99,
} kern_level;

// Quantizes one activation row of n floats into the format of act
// (TT_ACT_F32 copies). n is a multiple of the format's block size.
typedef void (*kern_quantize_fn)(const float *x, void *y, int64_t n);

// A block of a matrix product over whole rows of length n:
//   out[c * ldo + r] = dot(weight row r, activation row c)
// for r < nr, c < nc. Weight row r starts at (const char *)w + r * w_stride;
// activation row c (already in the type's tt_act format) at
// (const char *)a + c * a_stride. Each output must equal what vec_dot of the
// same level gives up to float rounding of the final scaling (tests allow a
// relative 1e-5): the kernel tiles for reuse of loaded blocks, but the
// result of one (r, c) never depends on nr, nc or the thread count.
typedef void (*kern_gemm_fn)(int64_t n, int nr, int nc, const void *w, size_t w_stride,
                             const void *a, size_t a_stride, float *out, size_t ldo);

// One weight row against nc activation rows (1 <= nc <= KERN_DOT_N_MAX):
//   s[c * s_stride] = dot(w_row, activation row c), c < nc,
// activation row c at (const char *)acts + c * act_stride. Every output
// equals the same level's vec_dot of that row and column bit for bit; the
// kernel unpacks each weight block once for all columns (batched decoding:
// several sequences' tokens against the same weights).
#define KERN_DOT_N_MAX 8
typedef void (*kern_vec_dot_n_fn)(int64_t n, int nc, float *s, size_t s_stride, const void *w_row,
                                  const void *acts, size_t act_stride);

typedef struct kern_ops {
    kern_level level;
    const char *name;                     // "ref", "avx2", "avx512"
    tt_vec_dot_fn vec_dot[TT_COUNT];      // NULL for unsupported types
    kern_gemm_fn gemm[TT_COUNT];          // NULL for unsupported types
    kern_vec_dot_n_fn vec_dot_n[TT_COUNT]; // optional: NULL where a level has none
    kern_quantize_fn quantize_act[3];     // indexed by tt_act
    tt_to_float_fn to_float[TT_COUNT];    // fast dequantization (for embeddings)

    // Float helpers for the forward pass (n any size).
    float (*dot_f32)(const float *x, const float *y, int64_t n);
    float (*dot_f16_f32)(const tt_half *x, const float *y, int64_t n);  // K cache rows
    void (*axpy_f16)(float *y, float a, const tt_half *x, int64_t n);   // y += a*x (V rows)
    void (*f32_to_f16)(const float *x, tt_half *y, int64_t n);
    // Softmax numerator: x[i] = exp(x[i] - max) (-inf gives 0); returns the sum.
    // Accurate to a few ulp of expf.
    float (*exp_sum)(float *x, int64_t n, float max);
    // SwiGLU: g[i] = silu(g[i]) * u[i], silu(x) = x / (1 + exp(-x)); u NULL
    // means 1 (SiLU in place, for the image models' activations).
    void (*swiglu)(float *g, const float *u, int64_t n);
    // GEGLU: out[i] = a[i] · gelu(g[i]) (a NULL: 1), gelu(x) = x·Φ(x) (erf
    // form); out may be a or g. The vector levels use erfc ≈ t·P(t)·e^(−z²)
    // (Abramowitz–Stegun 7.1.26, |error| ≤ 1.5e-7): within 1e-6·max(1, |x|).
    void (*geglu)(float *out, const float *a, const float *g, int64_t n);

    // The f32 GEMM's micro-kernel (sgemm.h): for i < mr <= KERN_SG_MR, j < nr <= KERN_SG_NR,
    //   s = sum over k < kc of a[i * lda + k] * bp[k * KERN_SG_NR + j]   (k in order)
    //   c[i * ldc + j] = (acc ? c[i * ldc + j] : 0) + s + bias_r[i] + bias_c[j]
    // (a NULL bias adds nothing). Rows of a at or past mr are never read;
    // bp is a packed panel (zero past nr).
    void (*sg_tile)(int kc, const float *a, size_t lda, const float *bp, float *c, size_t ldc, int mr, int nr,
                    const float *bias_r, const float *bias_c, int acc);
    // dst[j * ldd + i] = src[i * lds + j] for i, j < 16 (panel packing of transposed operands).
    void (*sg_transpose16)(const float *src, size_t lds, float *dst, size_t ldd);
    // The machine's multiply-add peak: n rounds of independent FMAs on
    // registers only (nothing else in the loop); returns the FLOPs done.
    // *sink gets a result so the loop is not optimized away.
    uint64_t (*fma_peak)(int64_t n, float *sink);
} kern_ops;

#define KERN_SG_MR 6  // micro-tile rows (broadcast operand)
#define KERN_SG_NR 64 // micro-tile columns (vector operand: 4 zmm)

kern_level kern_detect(void);              // the best level this CPU supports
const kern_ops *kern_get(kern_level max);  // the table for min(max, detected, $SIM_KERNELS)

// Per-level tables, for tests that compare levels (NULL when the CPU lacks it).
const kern_ops *kern_get_exact(kern_level level);

// Level tables filled by each kernel file (internal).
void kern_fill_ref(kern_ops *k);
void kern_fill_avx2(kern_ops *k);
void kern_fill_avx512(kern_ops *k);
void kern_fill_math_avx2(kern_ops *k);   // math_avx2.c: exp_sum, swiglu
void kern_fill_math_avx512(kern_ops *k); // math_avx512.c: exp_sum, swiglu
void kern_fill_sgemm_avx2(kern_ops *k);   // sgemm_avx2.c: sg_tile, fma_peak
void kern_fill_sgemm_avx512(kern_ops *k); // sgemm_avx512.c: sg_tile, sg_transpose16, fma_peak

#endif
