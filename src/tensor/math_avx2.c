// math_avx2.c — vectorized exp for the attention softmax (AVX2 + FMA).
//
// The method of math_avx512.c: n = round(x·log2 e), g = x − n·ln 2 in two
// steps, e^g by its degree-7 Taylor series, then 2^n built in the exponent
// bits. Inputs below −87.33654 (where e^x leaves the normal float range), -inf
// included, give exactly 0; inputs above 88.72283 give +inf. Within 2 ulp of
// expf elsewhere.
#include <immintrin.h>
#include <math.h>
#include <string.h>

#include "tensor/kern.h"

static inline __m256 exp256(__m256 x) {
    const __m256 log2e = _mm256_set1_ps(1.44269504088896341f);
    const __m256 ln2_hi = _mm256_set1_ps(0.693359375f), ln2_lo = _mm256_set1_ps(-2.12194440e-4f);
    __m256 tiny = _mm256_cmp_ps(x, _mm256_set1_ps(-87.33654f), _CMP_LT_OQ);
    __m256 huge = _mm256_cmp_ps(x, _mm256_set1_ps(88.72283f), _CMP_GT_OQ); // e^x > FLT_MAX
    x = _mm256_min_ps(x, _mm256_set1_ps(88.72283f));
    x = _mm256_max_ps(x, _mm256_set1_ps(-87.33654f));
    __m256 n = _mm256_round_ps(_mm256_mul_ps(x, log2e), _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC);
    __m256 g = _mm256_fnmadd_ps(n, ln2_hi, x);
    g = _mm256_fnmadd_ps(n, ln2_lo, g);
    __m256 p = _mm256_set1_ps(1.0f / 5040);
    p = _mm256_fmadd_ps(p, g, _mm256_set1_ps(1.0f / 720));
    p = _mm256_fmadd_ps(p, g, _mm256_set1_ps(1.0f / 120));
    p = _mm256_fmadd_ps(p, g, _mm256_set1_ps(1.0f / 24));
    p = _mm256_fmadd_ps(p, g, _mm256_set1_ps(1.0f / 6));
    p = _mm256_fmadd_ps(p, g, _mm256_set1_ps(0.5f));
    p = _mm256_fmadd_ps(p, g, _mm256_set1_ps(1.0f));
    p = _mm256_fmadd_ps(p, g, _mm256_set1_ps(1.0f));
    // 2^n: n in [-126, 128] here; add it to the exponent field.
    __m256i e = _mm256_slli_epi32(_mm256_add_epi32(_mm256_cvtps_epi32(n), _mm256_set1_epi32(127)), 23);
    __m256 r = _mm256_mul_ps(p, _mm256_castsi256_ps(e));
    r = _mm256_blendv_ps(r, _mm256_set1_ps(INFINITY), huge);
    return _mm256_andnot_ps(tiny, r);
}

static float exp_sum_avx2(float *x, int64_t n, float max) {
    __m256 m = _mm256_set1_ps(max), acc = _mm256_setzero_ps();
    int64_t i = 0;
    for (; i + 8 <= n; i += 8) {
        __m256 e = exp256(_mm256_sub_ps(_mm256_loadu_ps(x + i), m));
        _mm256_storeu_ps(x + i, e);
        acc = _mm256_add_ps(acc, e);
    }
    __m128 s = _mm_add_ps(_mm256_castps256_ps128(acc), _mm256_extractf128_ps(acc, 1));
    s = _mm_hadd_ps(s, s);
    s = _mm_hadd_ps(s, s);
    float sum = _mm_cvtss_f32(s);
    for (; i < n; i++) { // the same arithmetic, one lane at a time
        float v[8] = {x[i] - max};
        _mm256_storeu_ps(v, exp256(_mm256_loadu_ps(v)));
        x[i] = v[0];
        sum += v[0];
    }
    return sum;
}

// silu(g)·u = g·u / (1 + e^-g). exp256 flushes results below the normal
// range to 0 and saturates large inputs to +inf (see the clamp), so very
// negative g gives g·u / inf = 0, the right limit.
static void swiglu_avx2(float *g, const float *u, int64_t n) {
    const __m256 one = _mm256_set1_ps(1.0f);
    int64_t i = 0;
    for (; i + 8 <= n; i += 8) {
        __m256 x = _mm256_loadu_ps(g + i), y = u ? _mm256_loadu_ps(u + i) : one;
        __m256 e = exp256(_mm256_sub_ps(_mm256_setzero_ps(), x));
        _mm256_storeu_ps(g + i, _mm256_div_ps(_mm256_mul_ps(x, y), _mm256_add_ps(one, e)));
    }
    for (; i < n; i++) { // the same arithmetic, one lane at a time
        float v[8] = {-g[i]};
        _mm256_storeu_ps(v, exp256(_mm256_loadu_ps(v)));
        g[i] = g[i] * (u ? u[i] : 1.0f) / (1.0f + v[0]);
    }
}

// gelu as in math_avx512.c (erfc ≈ t·P(t)·e^(−z²), blended by the sign).
static inline __m256 gelu256(__m256 x) {
    const __m256 z = _mm256_mul_ps(_mm256_andnot_ps(_mm256_set1_ps(-0.0f), x), _mm256_set1_ps(0.70710678118654752f));
    const __m256 t = _mm256_div_ps(_mm256_set1_ps(1.0f), _mm256_fmadd_ps(_mm256_set1_ps(0.3275911f), z, _mm256_set1_ps(1.0f)));
    __m256 p = _mm256_set1_ps(1.061405429f);
    p = _mm256_fmadd_ps(p, t, _mm256_set1_ps(-1.453152027f));
    p = _mm256_fmadd_ps(p, t, _mm256_set1_ps(1.421413741f));
    p = _mm256_fmadd_ps(p, t, _mm256_set1_ps(-0.284496736f));
    p = _mm256_fmadd_ps(p, t, _mm256_set1_ps(0.254829592f));
    __m256 erfc = _mm256_mul_ps(_mm256_mul_ps(p, t), exp256(_mm256_sub_ps(_mm256_setzero_ps(), _mm256_mul_ps(z, z))));
    __m256 neg = _mm256_cmp_ps(x, _mm256_setzero_ps(), _CMP_LT_OQ);
    __m256 one_plus = _mm256_blendv_ps(_mm256_sub_ps(_mm256_set1_ps(2.0f), erfc), erfc, neg);
    return _mm256_mul_ps(_mm256_mul_ps(_mm256_set1_ps(0.5f), x), one_plus);
}

static void geglu_avx2(float *out, const float *a, const float *g, int64_t n) {
    for (int64_t i = 0; i < n; i += 8) {
        int64_t m = n - i < 8 ? n - i : 8;
        float gv[8] = {0}, av[8] = {0}, y[8];
        memcpy(gv, g + i, (size_t)m * sizeof *gv); // whole vectors and the tail alike (same arithmetic)
        if (a) memcpy(av, a + i, (size_t)m * sizeof *av);
        __m256 r = gelu256(_mm256_loadu_ps(gv));
        if (a) r = _mm256_mul_ps(_mm256_loadu_ps(av), r);
        _mm256_storeu_ps(y, r);
        memcpy(out + i, y, (size_t)m * sizeof *y);
    }
}

void kern_fill_math_avx2(kern_ops *k) {
    k->exp_sum = exp_sum_avx2;
    k->swiglu = swiglu_avx2;
    k->geglu = geglu_avx2;
}
