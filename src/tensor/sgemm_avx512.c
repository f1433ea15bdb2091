// sgemm_avx512.c — the f32 GEMM micro-kernel and the 16×16 transpose for
// panel packing (contracts in kern.h, driver in sgemm.c).
//
// A tile is KERN_SG_MR (6) rows × KERN_SG_NR (64) columns: 6 × 4 zmm
// accumulators. Per k it loads 4 zmm of the packed B panel and broadcasts
// 6 floats of A (one embedded-broadcast FMA each), so 24 FMAs meet 10
// loads: the FMA pipes, not the loads, bound it. Narrow tiles (nr <= 48,
// e.g. attention heads of 40) run a variant with fewer vector columns
// instead of multiplying zeros.
#include "tensor/simd_avx512.h"

INLINE void tile_nv(const int NV, int kc, const float *a, size_t lda, const float *bp, float *c, size_t ldc, int mr, int nr,
                    const float *bias_r, const float *bias_c, int acc) {
    const float *ar[KERN_SG_MR];
    UNROLL
    for (int i = 0; i < KERN_SG_MR; i++) ar[i] = a + (size_t)(i < mr ? i : 0) * lda; // rows past mr: row 0 again, never stored
    __m512 s[KERN_SG_MR][4];
    UNROLL
    for (int i = 0; i < KERN_SG_MR; i++)
        UNROLL
        for (int j = 0; j < NV; j++) s[i][j] = _mm512_setzero_ps();
    for (int k = 0; k < kc; k++) {
        const float *b = bp + (size_t)k * KERN_SG_NR;
        __m512 bv[4];
        UNROLL
        for (int j = 0; j < NV; j++) bv[j] = _mm512_loadu_ps(b + 16 * j);
        UNROLL
        for (int i = 0; i < KERN_SG_MR; i++) {
            __m512 av = _mm512_set1_ps(ar[i][k]);
            UNROLL
            for (int j = 0; j < NV; j++) s[i][j] = _mm512_fmadd_ps(av, bv[j], s[i][j]);
        }
    }
    UNROLL
    for (int j = 0; j < NV; j++) {
        int left = nr - 16 * j;
        if (left <= 0) break;
        __mmask16 m = left >= 16 ? (__mmask16)0xFFFF : (__mmask16)((1u << left) - 1);
        __m512 bc = bias_c ? _mm512_maskz_loadu_ps(m, bias_c + 16 * j) : _mm512_setzero_ps();
        UNROLL
        for (int i = 0; i < KERN_SG_MR; i++) {
            if (i >= mr) break;
            float *o = c + (size_t)i * ldc + 16 * j;
            __m512 v = acc ? _mm512_add_ps(_mm512_maskz_loadu_ps(m, o), s[i][j]) : s[i][j];
            if (bias_r) v = _mm512_add_ps(v, _mm512_set1_ps(bias_r[i]));
            if (bias_c) v = _mm512_add_ps(v, bc);
            _mm512_mask_storeu_ps(o, m, v);
        }
    }
}

static void sg_tile_avx512(int kc, const float *a, size_t lda, const float *bp, float *c, size_t ldc, int mr, int nr,
                           const float *bias_r, const float *bias_c, int acc) {
    if (nr > 48) tile_nv(4, kc, a, lda, bp, c, ldc, mr, nr, bias_r, bias_c, acc);
    else if (nr > 32) tile_nv(3, kc, a, lda, bp, c, ldc, mr, nr, bias_r, bias_c, acc);
    else if (nr > 16) tile_nv(2, kc, a, lda, bp, c, ldc, mr, nr, bias_r, bias_c, acc);
    else tile_nv(1, kc, a, lda, bp, c, ldc, mr, nr, bias_r, bias_c, acc);
}

static void sg_transpose16_avx512(const float *src, size_t lds, float *dst, size_t ldd) {
    __m512i z[16];
    UNROLL
    for (int i = 0; i < 16; i++) z[i] = _mm512_castps_si512(_mm512_loadu_ps(src + (size_t)i * lds));
    k512_transpose16(z);
    UNROLL
    for (int j = 0; j < 16; j++) _mm512_storeu_ps(dst + (size_t)j * ldd, _mm512_castsi512_ps(z[j]));
}

// 12 accumulator chains: enough to cover the FMA latency at one zmm FMA
// per cycle (Zen 4) or two (Intel's server cores need 8+).
static uint64_t fma_peak_avx512(int64_t n, float *sink) {
    __m512 a[12];
    const __m512 m = _mm512_set1_ps(0.999f), b = _mm512_set1_ps(0.001f);
    UNROLL
    for (int i = 0; i < 12; i++) a[i] = _mm512_set1_ps((float)i);
    for (int64_t r = 0; r < n; r++) {
        UNROLL
        for (int i = 0; i < 12; i++) a[i] = _mm512_fmadd_ps(a[i], m, b);
        __asm__ volatile("" : "+v"(a[0]), "+v"(a[1]), "+v"(a[2]), "+v"(a[3]), "+v"(a[4]), "+v"(a[5]), "+v"(a[6]), "+v"(a[7]),
                         "+v"(a[8]), "+v"(a[9]), "+v"(a[10]), "+v"(a[11]));
    }
    __m512 s = a[0];
    UNROLL
    for (int i = 1; i < 12; i++) s = _mm512_add_ps(s, a[i]);
    *sink = _mm512_reduce_add_ps(s);
    return (uint64_t)n * 12 * 32;
}

void kern_fill_sgemm_avx512(kern_ops *k) {
    k->sg_tile = sg_tile_avx512;
    k->sg_transpose16 = sg_transpose16_avx512;
    k->fma_peak = fma_peak_avx512;
}
