// math_avx512.c — vectorized exp for the attention softmax (AVX-512F).
//
// exp(x) = 2^n · e^g with n = round(x·log2 e) and g = x − n·ln 2 computed in
// two steps (Cody–Waite: ln 2 split into a high part exact in float and a
// low remainder), so |g| <= ln2/2 without cancellation error; e^g is its
// Taylor series to degree 7 (truncation < 6e-9 relative) and 2^n is applied
// with vscalefps, which also underflows to exactly 0 for very negative x
// (-inf included). Within 2 ulp of expf.
#include <immintrin.h>

#include "tensor/kern.h"

static inline __m512 exp512(__m512 x) {
    const __m512 log2e = _mm512_set1_ps(1.44269504088896341f);
    const __m512 ln2_hi = _mm512_set1_ps(0.693359375f), ln2_lo = _mm512_set1_ps(-2.12194440e-4f);
    x = _mm512_max_ps(x, _mm512_set1_ps(-104.0f)); // below: e^x < 2^-149, scalef gives 0; keeps -inf finite
    x = _mm512_min_ps(x, _mm512_set1_ps(104.0f));  // above: e^x > 2^150, scalef gives +inf
    __m512 n = _mm512_roundscale_ps(_mm512_mul_ps(x, log2e), _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC);
    __m512 g = _mm512_fnmadd_ps(n, ln2_hi, x);
    g = _mm512_fnmadd_ps(n, ln2_lo, g);
    __m512 p = _mm512_set1_ps(1.0f / 5040);
    p = _mm512_fmadd_ps(p, g, _mm512_set1_ps(1.0f / 720));
    p = _mm512_fmadd_ps(p, g, _mm512_set1_ps(1.0f / 120));
    p = _mm512_fmadd_ps(p, g, _mm512_set1_ps(1.0f / 24));
    p = _mm512_fmadd_ps(p, g, _mm512_set1_ps(1.0f / 6));
    p = _mm512_fmadd_ps(p, g, _mm512_set1_ps(0.5f));
    p = _mm512_fmadd_ps(p, g, _mm512_set1_ps(1.0f));
    p = _mm512_fmadd_ps(p, g, _mm512_set1_ps(1.0f));
    return _mm512_scalef_ps(p, n);
}

static float exp_sum_avx512(float *x, int64_t n, float max) {
    __m512 m = _mm512_set1_ps(max), acc = _mm512_setzero_ps();
    int64_t i = 0;
    for (; i + 16 <= n; i += 16) {
        __m512 e = exp512(_mm512_sub_ps(_mm512_loadu_ps(x + i), m));
        _mm512_storeu_ps(x + i, e);
        acc = _mm512_add_ps(acc, e);
    }
    if (i < n) {
        __mmask16 k = (__mmask16)((1u << (n - i)) - 1);
        __m512 e = exp512(_mm512_sub_ps(_mm512_maskz_loadu_ps(k, x + i), m));
        _mm512_mask_storeu_ps(x + i, k, e);
        acc = _mm512_add_ps(acc, _mm512_maskz_mov_ps(k, e));
    }
    return _mm512_reduce_add_ps(acc);
}

// silu(g)·u = g·u / (1 + e^-g); e^-g overflows to +inf for g < -88, which
// gives the right limit 0 (g·u / inf); the division is exact IEEE.
static void swiglu_avx512(float *g, const float *u, int64_t n) {
    const __m512 one = _mm512_set1_ps(1.0f);
    int64_t i = 0;
    for (; i < n; i += 16) {
        __mmask16 k = n - i >= 16 ? (__mmask16)0xFFFF : (__mmask16)((1u << (n - i)) - 1);
        __m512 x = _mm512_maskz_loadu_ps(k, g + i), y = u ? _mm512_maskz_loadu_ps(k, u + i) : one;
        __m512 e = exp512(_mm512_sub_ps(_mm512_setzero_ps(), x));
        _mm512_mask_storeu_ps(g + i, k, _mm512_div_ps(_mm512_mul_ps(x, y), _mm512_add_ps(one, e)));
    }
}

// gelu(x) = x/2 · (1 + erf(x/√2)); with z = |x|/√2 and erfc(z) ≈ t·P(t)·e^(−z²),
// t = 1/(1 + p·z): 1 + erf = 2 − erfc for x ≥ 0, erfc for x < 0 (no cancellation).
static inline __m512 gelu512(__m512 x) {
    const __m512 z = _mm512_mul_ps(_mm512_abs_ps(x), _mm512_set1_ps(0.70710678118654752f));
    const __m512 t = _mm512_div_ps(_mm512_set1_ps(1.0f), _mm512_fmadd_ps(_mm512_set1_ps(0.3275911f), z, _mm512_set1_ps(1.0f)));
    __m512 p = _mm512_set1_ps(1.061405429f);
    p = _mm512_fmadd_ps(p, t, _mm512_set1_ps(-1.453152027f));
    p = _mm512_fmadd_ps(p, t, _mm512_set1_ps(1.421413741f));
    p = _mm512_fmadd_ps(p, t, _mm512_set1_ps(-0.284496736f));
    p = _mm512_fmadd_ps(p, t, _mm512_set1_ps(0.254829592f));
    __m512 erfc = _mm512_mul_ps(_mm512_mul_ps(p, t), exp512(_mm512_sub_ps(_mm512_setzero_ps(), _mm512_mul_ps(z, z))));
    __mmask16 neg = _mm512_cmp_ps_mask(x, _mm512_setzero_ps(), _CMP_LT_OQ);
    __m512 one_plus = _mm512_mask_blend_ps(neg, _mm512_sub_ps(_mm512_set1_ps(2.0f), erfc), erfc);
    return _mm512_mul_ps(_mm512_mul_ps(_mm512_set1_ps(0.5f), x), one_plus);
}

static void geglu_avx512(float *out, const float *a, const float *g, int64_t n) {
    for (int64_t i = 0; i < n; i += 16) {
        __mmask16 k = n - i >= 16 ? (__mmask16)0xFFFF : (__mmask16)((1u << (n - i)) - 1);
        __m512 y = gelu512(_mm512_maskz_loadu_ps(k, g + i));
        if (a) y = _mm512_mul_ps(_mm512_maskz_loadu_ps(k, a + i), y);
        _mm512_mask_storeu_ps(out + i, k, y);
    }
}

void kern_fill_math_avx512(kern_ops *k) {
    k->exp_sum = exp_sum_avx512;
    k->swiglu = swiglu_avx512;
    k->geglu = geglu_avx512;
}
