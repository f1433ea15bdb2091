// sgemm_avx2.c — the f32 GEMM micro-kernel for AVX2 + FMA machines
// (contract in kern.h, driver in sgemm.c). The panel is KERN_SG_MR (6) rows
// × KERN_SG_NR (64) columns as on AVX-512, but 16 ymm registers hold only
// 6 × 2 accumulators, so the tile runs as four 16-column strips, each over
// the whole K (the A rows stay in L1 between strips).
#include <immintrin.h>

#include "tensor/kern.h"

#define INLINE static inline __attribute__((always_inline))
#define UNROLL _Pragma("GCC unroll 16")

INLINE void strip(int kc, const float *const ar[KERN_SG_MR], const float *bp, float *c, size_t ldc, int mr, int nr,
                  const float *bias_r, const float *bias_c, int acc) {
    __m256 s[KERN_SG_MR][2];
    UNROLL
    for (int i = 0; i < KERN_SG_MR; i++) s[i][0] = s[i][1] = _mm256_setzero_ps();
    for (int k = 0; k < kc; k++) {
        const float *b = bp + (size_t)k * KERN_SG_NR;
        __m256 b0 = _mm256_loadu_ps(b), b1 = _mm256_loadu_ps(b + 8);
        UNROLL
        for (int i = 0; i < KERN_SG_MR; i++) {
            __m256 av = _mm256_broadcast_ss(ar[i] + k);
            s[i][0] = _mm256_fmadd_ps(av, b0, s[i][0]);
            s[i][1] = _mm256_fmadd_ps(av, b1, s[i][1]);
        }
    }
    // Stores through a small buffer: AVX2 has no masked float stores of any width.
    for (int i = 0; i < mr; i++) {
        float t[16], *o = c + (size_t)i * ldc;
        _mm256_storeu_ps(t, s[i][0]);
        _mm256_storeu_ps(t + 8, s[i][1]);
        for (int j = 0; j < nr; j++) o[j] = (acc ? o[j] : 0) + t[j] + (bias_r ? bias_r[i] : 0) + (bias_c ? bias_c[j] : 0);
    }
}

static void sg_tile_avx2(int kc, const float *a, size_t lda, const float *bp, float *c, size_t ldc, int mr, int nr,
                         const float *bias_r, const float *bias_c, int acc) {
    const float *ar[KERN_SG_MR];
    for (int i = 0; i < KERN_SG_MR; i++) ar[i] = a + (size_t)(i < mr ? i : 0) * lda; // rows past mr: row 0 again, never stored
    for (int j0 = 0; j0 < nr; j0 += 16)
        strip(kc, ar, bp + j0, c + j0, ldc, mr, nr - j0 < 16 ? nr - j0 : 16, bias_r, bias_c ? bias_c + j0 : NULL, acc);
}

// 12 independent ymm FMA chains (see fma_peak_avx512).
static uint64_t fma_peak_avx2(int64_t n, float *sink) {
    __m256 a[12];
    const __m256 m = _mm256_set1_ps(0.999f), b = _mm256_set1_ps(0.001f);
    UNROLL
    for (int i = 0; i < 12; i++) a[i] = _mm256_set1_ps((float)i);
    for (int64_t r = 0; r < n; r++) {
        UNROLL
        for (int i = 0; i < 12; i++) a[i] = _mm256_fmadd_ps(a[i], m, b);
        __asm__ volatile("" : "+x"(a[0]), "+x"(a[1]), "+x"(a[2]), "+x"(a[3]), "+x"(a[4]), "+x"(a[5]), "+x"(a[6]), "+x"(a[7]),
                         "+x"(a[8]), "+x"(a[9]), "+x"(a[10]), "+x"(a[11]));
    }
    float t[8];
    __m256 s = a[0];
    UNROLL
    for (int i = 1; i < 12; i++) s = _mm256_add_ps(s, a[i]);
    _mm256_storeu_ps(t, s);
    *sink = t[0] + t[1] + t[2] + t[3] + t[4] + t[5] + t[6] + t[7];
    return (uint64_t)n * 12 * 16;
}

void kern_fill_sgemm_avx2(kern_ops *k) {
    k->sg_tile = sg_tile_avx2;
    k->fma_peak = fma_peak_avx2;
}
