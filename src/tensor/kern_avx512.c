// kern_avx512.c — AVX-512 (F, BW, VL, DQ, VNNI, BF16) kernels (compiled with
// the matching -m flags; only called after kern_detect() found them).
//
// Every kernel has a scalar twin with the same contract (quant.c, types.c,
// kern.c); tests/test_kern.c compares them on odd sizes. The kernels live in
// three files that share simd_avx512.h:
//   kern_avx512.c  this table, float helpers, activation quantizers, to_float
//   dot_avx512.c   vec_dot (decode: must keep up with memory, one row a call)
//   gemm_avx512.c  gemm micro-tiles (prompt processing: VNNI-bound)
//
// What the target (Zen 4, measured on this machine) dictates. A 512-bit op
// occupies a 256-bit pipe for two cycles, so zmm buys fewer instructions,
// not more throughput. vpdpbusd, vpdpwssd, vpmaddubsw, vpmulld and FMA share
// the two multiply pipes (one zmm op per cycle in total); conversions,
// logic, adds and shuffles run beside them. Loads: two ymm per cycle (one if
// it crosses a cache line), one aligned zmm, an unaligned zmm almost two
// cycles. zmm shuffles one per cycle, ymm unpacks three.
//
// Techniques, by kernel family (details above each kernel):
//   - Codes are unpacked to one unsigned byte per element in element order
//     (simd_avx512.h): nibbles by a 256-bit broadcast and a per-half vpsrlvq,
//     fifth/sixth bits by rotates or byte masks. Offsets (Q4_0: q - 8, Q5_0,
//     Q8_0 as q + 128, Q3_K, Q6_K) are never applied per element: the
//     activation sums carried by blk_q8_32 / blk_q8_K turn them into one
//     integer correction per (sub-)block.
//   - Every quantized output follows one canonical sequence of float
//     operations (dot_avx512.c), shared by vec_dot and gemm: the two agree
//     bit for bit whatever the tile, edge or thread split.
//   - vec_dot of the 32-element types: one ymm vpdpbusd per block, the 8
//     blocks of a group reduced together by ymm unpacks, scales applied to
//     the 8 blocks in one vector, weight scales gathered through integer
//     registers. Q4_0/Q4_1 skip the nibble shift (high nibbles stay in place
//     as 16·h and are divided back exactly after the reduction).
//   - vec_dot of the K-quants: a 64-element chunk per zmm vpmaddubsw, then
//     vpdpwssd against a vector of the sub-block scales (one vpermw builds
//     it); min/offset terms by one vpmaddwd of the bsums; four super-blocks
//     share one reduction.
//   - gemm of the quantized types: weights are unpacked and transposed into
//     a small stack panel (16 rows per zmm, dword k of each row in lane r), so
//     one vpdpbusd multiplies 16 weight rows by a broadcast dword of one
//     activation column; a micro-tile of 2 panels (32 rows) x 4 columns keeps
//     its accumulators in registers and writes 16 outputs per store; no
//     horizontal sums at all.
//   - gemm of the float types: 4 rows x 6 columns of zmm accumulators over
//     the shared k index, reduced once at the end.
//   - Activation quantizers are bit-identical to the references.
//   - Dequantization computes the reference's float expressions in its order,
//     never fused (ISO C mode keeps the compiler from contracting to FMA).
#include <math.h>

#include "tensor/quant.h"
#include "tensor/simd_avx512.h"

// --- float helpers --------------------------------------------------------------------

// Masks for the last n % 16 elements of a row.
INLINE __mmask16 tail_mask(int64_t n) { return (__mmask16)((1u << n) - 1); }

static float dot_f32(const float *x, const float *y, int64_t n) {
    __m512 s0 = _mm512_setzero_ps(), s1 = _mm512_setzero_ps();
    int64_t i = 0;
    for (; i + 32 <= n; i += 32) {
        s0 = _mm512_fmadd_ps(_mm512_loadu_ps(x + i), _mm512_loadu_ps(y + i), s0);
        s1 = _mm512_fmadd_ps(_mm512_loadu_ps(x + i + 16), _mm512_loadu_ps(y + i + 16), s1);
    }
    for (; i < n; i += 16) {
        __mmask16 m = n - i >= 16 ? 0xFFFF : tail_mask(n - i);
        s0 = _mm512_fmadd_ps(_mm512_maskz_loadu_ps(m, x + i), _mm512_maskz_loadu_ps(m, y + i), s0);
    }
    return k512_hsum512(_mm512_add_ps(s0, s1));
}

INLINE __m512 load_h16(const tt_half *x) { return _mm512_cvtph_ps(_mm256_loadu_si256((const __m256i *)x)); }
INLINE __m512 maskz_load_h16(__mmask16 m, const tt_half *x) {
    return _mm512_cvtph_ps(_mm256_maskz_loadu_epi16(m, x));
}

static float dot_f16_f32(const tt_half *x, const float *y, int64_t n) {
    __m512 s0 = _mm512_setzero_ps(), s1 = _mm512_setzero_ps();
    int64_t i = 0;
    for (; i + 32 <= n; i += 32) {
        s0 = _mm512_fmadd_ps(load_h16(x + i), _mm512_loadu_ps(y + i), s0);
        s1 = _mm512_fmadd_ps(load_h16(x + i + 16), _mm512_loadu_ps(y + i + 16), s1);
    }
    for (; i < n; i += 16) {
        __mmask16 m = n - i >= 16 ? 0xFFFF : tail_mask(n - i);
        s0 = _mm512_fmadd_ps(maskz_load_h16(m, x + i), _mm512_maskz_loadu_ps(m, y + i), s0);
    }
    return k512_hsum512(_mm512_add_ps(s0, s1));
}

static void axpy_f16(float *y, float a, const tt_half *x, int64_t n) {
    const __m512 va = _mm512_set1_ps(a);
    int64_t i = 0;
    for (; i + 16 <= n; i += 16)
        _mm512_storeu_ps(y + i, _mm512_fmadd_ps(va, load_h16(x + i), _mm512_loadu_ps(y + i)));
    if (i < n) {
        __mmask16 m = tail_mask(n - i);
        _mm512_mask_storeu_ps(y + i, m, _mm512_fmadd_ps(va, maskz_load_h16(m, x + i), _mm512_maskz_loadu_ps(m, y + i)));
    }
}

// vcvtps2ph with round-to-nearest-even is bit-identical to tt_float_to_half
// (including overflow to infinity and quiet NaNs that keep their top bits).
static void f32_to_f16(const float *x, tt_half *y, int64_t n) {
    int64_t i = 0;
    for (; i + 16 <= n; i += 16)
        _mm256_storeu_si256((__m256i *)(y + i),
                            _mm512_cvtps_ph(_mm512_loadu_ps(x + i), _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC));
    if (i < n) {
        __mmask16 m = tail_mask(n - i);
        __m256i h = _mm512_cvtps_ph(_mm512_maskz_loadu_ps(m, x + i), _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC);
        _mm256_mask_storeu_epi16(y + i, m, h);
    }
}

// --- activation quantizers -------------------------------------------------------------
//
// Bit-identical to the references: d = amax / 127 and id = 1 / d computed
// the same way in scalar float, codes = vcvtps2dq(x * id) (round to nearest
// even under the default MXCSR, as round_even), saturated to int8 by vpmovsdb
// (|x * id| <= 127 after rounding, so saturation never triggers).

INLINE __m512 abs_ps(__m512 v) { return _mm512_castsi512_ps(_mm512_and_si512(_mm512_castps_si512(v), _mm512_set1_epi32(0x7FFFFFFF))); }

static void quantize_q8_32(const float *x, void *vy, int64_t n) {
    blk_q8_32 *y = vy;
    for (int64_t b = 0; b < n / 32; b++) {
        const float *xb = x + b * 32;
        __m512 v0 = _mm512_loadu_ps(xb), v1 = _mm512_loadu_ps(xb + 16);
        float amax = _mm512_reduce_max_ps(_mm512_max_ps(abs_ps(v0), abs_ps(v1)));
        float d = amax / 127.0f;
        float id = d != 0 ? 1.0f / d : 0.0f;
        __m512 vid = _mm512_set1_ps(id);
        __m512i q0 = _mm512_cvtps_epi32(_mm512_mul_ps(v0, vid));
        __m512i q1 = _mm512_cvtps_epi32(_mm512_mul_ps(v1, vid));
        _mm_storeu_si128((__m128i *)y[b].qs, _mm512_cvtsepi32_epi8(q0));
        _mm_storeu_si128((__m128i *)(y[b].qs + 16), _mm512_cvtsepi32_epi8(q1));
        y[b].d = d;
        y[b].sum = _mm512_reduce_add_epi32(_mm512_add_epi32(q0, q1));
    }
}

static void quantize_q8_K(const float *x, void *vy, int64_t n) {
    blk_q8_K *y = vy;
    for (int64_t b = 0; b < n / QK_K; b++) {
        const float *xb = x + b * QK_K;
        __m512 m = _mm512_setzero_ps();
        for (int i = 0; i < 16; i++) m = _mm512_max_ps(m, abs_ps(_mm512_loadu_ps(xb + 16 * i)));
        float amax = _mm512_reduce_max_ps(m);
        float d = amax / 127.0f;
        float id = d != 0 ? 1.0f / d : 0.0f;
        __m512 vid = _mm512_set1_ps(id);
        // Sums per 16: one reduce_add per group of 16 codes (quantization
        // runs once per activation row; this is not the hot loop).
        for (int i = 0; i < 16; i++) {
            __m512i q = _mm512_cvtps_epi32(_mm512_mul_ps(_mm512_loadu_ps(xb + 16 * i), vid));
            _mm_storeu_si128((__m128i *)(y[b].qs + 16 * i), _mm512_cvtsepi32_epi8(q));
            y[b].bsums[i] = (int16_t)_mm512_reduce_add_epi32(q);
        }
        y[b].d = d;
    }
}

static void quantize_f32_copy(const float *x, void *y, int64_t n) { memcpy(y, x, (size_t)n * 4); }

// --- dequantization (to_float) ---------------------------------------------------------

static void to_float_f16(const void *src, float *dst, int64_t n) {
    const tt_half *x = src;
    int64_t i = 0;
    for (; i + 16 <= n; i += 16) _mm512_storeu_ps(dst + i, load_h16(x + i));
    if (i < n) _mm512_mask_storeu_ps(dst + i, tail_mask(n - i), maskz_load_h16(tail_mask(n - i), x + i));
}

INLINE __m512 bf16x16(__m256i h) { return _mm512_castsi512_ps(_mm512_slli_epi32(_mm512_cvtepu16_epi32(h), 16)); }

static void to_float_bf16(const void *src, float *dst, int64_t n) {
    const tt_bf16 *x = src;
    int64_t i = 0;
    for (; i + 16 <= n; i += 16) _mm512_storeu_ps(dst + i, bf16x16(_mm256_loadu_si256((const __m256i *)(x + i))));
    if (i < n) {
        __mmask16 m = tail_mask(n - i);
        _mm512_mask_storeu_ps(dst + i, m, bf16x16(_mm256_maskz_loadu_epi16(m, x + i)));
    }
}

// 32 unsigned codes (ymm) -> two float vectors (elements 0..15, 16..31).
INLINE void codes32_to_ps(__m256i q, __m512 *lo, __m512 *hi) {
    *lo = _mm512_cvtepi32_ps(_mm512_cvtepu8_epi32(_mm256_castsi256_si128(q)));
    *hi = _mm512_cvtepi32_ps(_mm512_cvtepu8_epi32(_mm256_extracti128_si256(q, 1)));
}

// Q4_0/Q5_0: (q - off) * d;  Q4_1/Q5_1: q * d + m (multiply, then add).
#define TO_FLOAT_Q32(name, blk_t, UNPACK, AFFINE, OFF)                                         \
    static void name(const void *src, float *dst, int64_t n) {                                 \
        const blk_t *b = src;                                                                   \
        for (int64_t i = 0; i < n / 32; i++, dst += 32) {                                       \
            __m512 lo, hi;                                                                      \
            codes32_to_ps(UNPACK, &lo, &hi);                                                    \
            const __m512 d = _mm512_set1_ps(k512_half(&b[i].d));                                \
            if (AFFINE) {                                                                       \
                const __m512 m = _mm512_set1_ps(k512_half((const char *)&b[i].d + 2));          \
                _mm512_storeu_ps(dst, _mm512_add_ps(_mm512_mul_ps(lo, d), m));                  \
                _mm512_storeu_ps(dst + 16, _mm512_add_ps(_mm512_mul_ps(hi, d), m));             \
            } else {                                                                            \
                const __m512 o = _mm512_set1_ps(OFF);                                           \
                _mm512_storeu_ps(dst, _mm512_mul_ps(_mm512_sub_ps(lo, o), d));                  \
                _mm512_storeu_ps(dst + 16, _mm512_mul_ps(_mm512_sub_ps(hi, o), d));             \
            }                                                                                   \
        }                                                                                       \
    }
TO_FLOAT_Q32(to_float_q4_0, blk_q4_0, k512_nib32(b[i].qs), 0, 8.0f)
TO_FLOAT_Q32(to_float_q4_1, blk_q4_1, k512_nib32(b[i].qs), 1, 0.0f)
TO_FLOAT_Q32(to_float_q5_0, blk_q5_0, k512_nib32_h(b[i].qs, b[i].qh), 0, 16.0f)
TO_FLOAT_Q32(to_float_q5_1, blk_q5_1, k512_nib32_h(b[i].qs, b[i].qh), 1, 0.0f)

static void to_float_q8_0(const void *src, float *dst, int64_t n) {
    const blk_q8_0 *b = src;
    for (int64_t i = 0; i < n / 32; i++, dst += 32) {
        const __m512 d = _mm512_set1_ps(k512_half(&b[i].d));
        __m256i q = _mm256_loadu_si256((const __m256i *)b[i].qs);
        _mm512_storeu_ps(dst, _mm512_mul_ps(_mm512_cvtepi32_ps(_mm512_cvtepi8_epi32(_mm256_castsi256_si128(q))), d));
        _mm512_storeu_ps(dst + 16, _mm512_mul_ps(_mm512_cvtepi32_ps(_mm512_cvtepi8_epi32(_mm256_extracti128_si256(q, 1))), d));
    }
}

// 64 unsigned codes (one K-quant chunk) -> 4 float vectors.
INLINE void codes64_to_ps(__m512i q, __m512 f[4]) {
    f[0] = _mm512_cvtepi32_ps(_mm512_cvtepu8_epi32(_mm512_castsi512_si128(q)));
    f[1] = _mm512_cvtepi32_ps(_mm512_cvtepu8_epi32(_mm512_extracti32x4_epi32(q, 1)));
    f[2] = _mm512_cvtepi32_ps(_mm512_cvtepu8_epi32(_mm512_extracti32x4_epi32(q, 2)));
    f[3] = _mm512_cvtepi32_ps(_mm512_cvtepu8_epi32(_mm512_extracti32x4_epi32(q, 3)));
}

// Q2_K: per 16, y = (d*sc) * q - dmin*m.
static void to_float_q2_K(const void *src, float *dst, int64_t n) {
    const blk_q2_K *b = src;
    for (int64_t i = 0; i < n / QK_K; i++) {
        float d = k512_half(&b[i].d), dmin = k512_half(&b[i].dmin);
        for (int c = 0; c < 4; c++) {
            __m512 f[4];
            codes64_to_ps(k512_q2_chunk(b[i].qs, c), f);
            for (int g = 0; g < 4; g++, dst += 16) {
                uint8_t s = b[i].scales[4 * c + g];
                __m512 dl = _mm512_set1_ps(d * (float)(s & 0xF)), ml = _mm512_set1_ps(dmin * (float)(s >> 4));
                _mm512_storeu_ps(dst, _mm512_sub_ps(_mm512_mul_ps(dl, f[g]), ml));
            }
        }
    }
}

// Q3_K: per 16, y = (d*(sc-32)) * (q3 - 4).
static void to_float_q3_K(const void *src, float *dst, int64_t n) {
    const blk_q3_K *b = src;
    for (int64_t i = 0; i < n / QK_K; i++) {
        float d = k512_half(&b[i].d);
        int8_t sc[16];
        _mm_storeu_si128((__m128i *)sc, _mm_sub_epi8(k512_q3_scales(b[i].scales), _mm_set1_epi8(32)));
        const __m512i hm2 = k512_bcast256(b[i].hmask);
        for (int c = 0; c < 4; c++) {
            __m512 f[4];
            codes64_to_ps(k512_q3_chunk(b[i].qs, hm2, c), f);
            for (int g = 0; g < 4; g++, dst += 16) {
                __m512 dl = _mm512_set1_ps(d * (float)sc[4 * c + g]);
                _mm512_storeu_ps(dst, _mm512_mul_ps(dl, _mm512_sub_ps(f[g], _mm512_set1_ps(4.0f))));
            }
        }
    }
}

// Q4_K/Q5_K: per 32, y = (d*sc) * q - dmin*m.
INLINE void to_float_k45(const uint8_t *blk, const uint8_t *qh, const uint8_t *qs, float *dst) {
    float d = k512_half(blk), dmin = k512_half(blk + 2);
    uint64_t sc8, mn8;
    k512_k4_scales(blk + 4, &sc8, &mn8);
    __m512i qh2 = qh ? k512_bcast256(qh) : _mm512_setzero_si512();
    for (int j = 0; j < 4; j++) {
        __m512 f[4];
        codes64_to_ps(qh ? k512_q5k_chunk(qs, qh2, j) : k512_q4k_chunk(qs, j), f);
        for (int g = 0; g < 2; g++) {
            int s = 2 * j + g;
            __m512 dl = _mm512_set1_ps(d * (float)((sc8 >> (8 * s)) & 0xFF));
            __m512 ml = _mm512_set1_ps(dmin * (float)((mn8 >> (8 * s)) & 0xFF));
            _mm512_storeu_ps(dst + 32 * s, _mm512_sub_ps(_mm512_mul_ps(dl, f[2 * g]), ml));
            _mm512_storeu_ps(dst + 32 * s + 16, _mm512_sub_ps(_mm512_mul_ps(dl, f[2 * g + 1]), ml));
        }
    }
}

static void to_float_q4_K(const void *src, float *dst, int64_t n) {
    const blk_q4_K *b = src;
    for (int64_t i = 0; i < n / QK_K; i++) to_float_k45((const uint8_t *)&b[i], NULL, b[i].qs, dst + i * QK_K);
}

static void to_float_q5_K(const void *src, float *dst, int64_t n) {
    const blk_q5_K *b = src;
    for (int64_t i = 0; i < n / QK_K; i++) to_float_k45((const uint8_t *)&b[i], b[i].qh, b[i].qs, dst + i * QK_K);
}

// Q6_K: per 16, y = (d*sc) * (q - 32).
static void to_float_q6_K(const void *src, float *dst, int64_t n) {
    const blk_q6_K *b = src;
    for (int64_t i = 0; i < n / QK_K; i++) {
        float d = k512_half(&b[i].d);
        for (int c = 0; c < 4; c++) {
            __m512 f[4];
            codes64_to_ps(k512_q6_chunk(b[i].ql, b[i].qh, c), f);
            for (int g = 0; g < 4; g++, dst += 16) {
                __m512 dl = _mm512_set1_ps(d * (float)b[i].scales[4 * c + g]);
                _mm512_storeu_ps(dst, _mm512_mul_ps(dl, _mm512_sub_ps(f[g], _mm512_set1_ps(32.0f))));
            }
        }
    }
}

// --- the table ------------------------------------------------------------------------------

void kern_fill_avx512(kern_ops *k) {
    k->quantize_act[TT_ACT_F32] = quantize_f32_copy;
    k->quantize_act[TT_ACT_Q8_32] = quantize_q8_32;
    k->quantize_act[TT_ACT_Q8_K] = quantize_q8_K;

    k->to_float[TT_F16] = to_float_f16;
    k->to_float[TT_BF16] = to_float_bf16;
    k->to_float[TT_Q4_0] = to_float_q4_0;
    k->to_float[TT_Q4_1] = to_float_q4_1;
    k->to_float[TT_Q5_0] = to_float_q5_0;
    k->to_float[TT_Q5_1] = to_float_q5_1;
    k->to_float[TT_Q8_0] = to_float_q8_0;
    k->to_float[TT_Q2_K] = to_float_q2_K;
    k->to_float[TT_Q3_K] = to_float_q3_K;
    k->to_float[TT_Q4_K] = to_float_q4_K;
    k->to_float[TT_Q5_K] = to_float_q5_K;
    k->to_float[TT_Q6_K] = to_float_q6_K;

    k->dot_f32 = dot_f32;
    k->dot_f16_f32 = dot_f16_f32;
    k->axpy_f16 = axpy_f16;
    k->f32_to_f16 = f32_to_f16;

    k512_fill_vec_dot(k);
    k512_fill_gemm(k);
}
