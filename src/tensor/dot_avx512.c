// dot_avx512.c — AVX-512 vec_dot: one weight row · one activation vector.
//
// Decoding runs these over every weight once per token, so they have to
// keep up with memory: two cores reading ~30 GB/s (sometimes ~50 on this
// kind of VM) need ~15-25 GB/s of weights per core. Each kernel has a scalar
// reference in quant.c / types.c with the same contract.
//
// Every quantized output is computed with a canonical sequence of float
// operations (spelled out above each family below) that gemm_avx512.c
// repeats exactly, so vec_dot and every gemm tile agree bit for bit: a
// token's logits do not depend on whether it was decoded alone or in a batch,
// nor on tiling or threads. Integer parts are exact in int32 (largest:
// Q6_K, |Σ| < 2^28), so their order is free; only the float steps are fixed.
//
// What bounds these kernels on Zen 4 (measured): loads (two ymm per cycle,
// one if it splits a cache line; unaligned zmm loads cost almost two
// cycles), then shuffles (zmm shuffles one per cycle, ymm unpacks three),
// then the two multiply pipes. Hence ymm data paths where loads dominate,
// scale gathers through general-purpose registers, and reductions shared by
// groups of blocks. (Software prefetch was tried at 0.5-4 KB ahead: it cost
// single-thread bandwidth and gained nothing measurable with two threads.)
#include <math.h>

#include "tensor/simd_avx512.h"

// --- float weights -----------------------------------------------------------------

// Canonical order (shared with the float gemm tile): one zmm accumulator,
// lane j summing elements j, j+16, ... by FMA in order, the masked tail into
// the same accumulator, then k512_hsum512's fixed tree. One FMA chain is 4
// cycles per 16 elements: 29 GB/s of F16 per core, above what memory gives.
#define VEC_DOT_FLOAT(name, elem_t, LOAD, MASKZ_LOAD)                                          \
    static void name(int64_t n, float *s, const void *w, const void *a) {                      \
        const elem_t *x = w;                                                                    \
        const float *y = a;                                                                     \
        __m512 acc = _mm512_setzero_ps();                                                       \
        int64_t i = 0;                                                                          \
        for (; i + 16 <= n; i += 16) acc = _mm512_fmadd_ps(LOAD(x + i), _mm512_loadu_ps(y + i), acc); \
        if (i < n) {                                                                            \
            __mmask16 m = (__mmask16)((1u << (n - i)) - 1);                                     \
            acc = _mm512_fmadd_ps(MASKZ_LOAD(m, x + i), _mm512_maskz_loadu_ps(m, y + i), acc);  \
        }                                                                                       \
        *s = k512_hsum512(acc);                                                                 \
    }

INLINE __m512 ld_f32(const float *p) { return _mm512_loadu_ps(p); }
INLINE __m512 ldm_f32(__mmask16 m, const float *p) { return _mm512_maskz_loadu_ps(m, p); }
INLINE __m512 ld_f16(const tt_half *p) { return _mm512_cvtph_ps(_mm256_loadu_si256((const __m256i *)p)); }
INLINE __m512 ldm_f16(__mmask16 m, const tt_half *p) { return _mm512_cvtph_ps(_mm256_maskz_loadu_epi16(m, p)); }
// bf16 -> f32 is a 16-bit left shift of the zero-extended word.
INLINE __m512 ld_bf16(const tt_bf16 *p) {
    return _mm512_castsi512_ps(_mm512_slli_epi32(_mm512_cvtepu16_epi32(_mm256_loadu_si256((const __m256i *)p)), 16));
}
INLINE __m512 ldm_bf16(__mmask16 m, const tt_bf16 *p) {
    return _mm512_castsi512_ps(_mm512_slli_epi32(_mm512_cvtepu16_epi32(_mm256_maskz_loadu_epi16(m, p)), 16));
}

VEC_DOT_FLOAT(vec_dot_f32, float, ld_f32, ldm_f32)
VEC_DOT_FLOAT(vec_dot_f16, tt_half, ld_f16, ldm_f16)
VEC_DOT_FLOAT(vec_dot_bf16, tt_bf16, ld_bf16, ldm_bf16)

// --- 32-element blocks -------------------------------------------------------------
//
// The canonical arithmetic of one output (gemm_avx512.c performs exactly the
// same float operations, so vec_dot and every gemm tile agree bit for bit).
// With isum_b the exact integer Σ(q - o)·a of block b:
//     s_b = fl(d_b · da_b),  p_b = fl(fl(isum_b) · s_b)
// (affine types: p_b = fma(m_b, fl(da_b · sum_b), fl(isum_b · s_b))); blocks
// form groups of 8 ([8m, 8m+8), the last one shorter), each group is summed
// in order starting from 0, g = (((0 + p_8m) + p_8m+1) + ...), and the groups
// are added in order into the result, which starts at 0. Groups make the
// float chain short enough to overlap (one add chain across all blocks would
// be 3 cycles per block); in gemm they cost nothing but an add per group.
//
// Per block, one ymm vpdpbusd of the 32 unsigned codes against the 32 int8
// activations (its memory operand) leaves 8 int32 lanes; per group of 8, a
// ymm-only transpose-reduction turns 8 such vectors into the 8 block sums
// (shuffles at 2-3 per cycle, where zmm ones run at 1), the offset o·Σa
// (o = 8, 16, or 128 for Q8_0, whose codes are q xor 0x80) comes off with
// the activation sums, and s_b, p_b are computed for the 8 blocks in one
// vector. Weight scales are gathered through general-purpose registers
// (16-bit loads shifted and or-ed: integer pipes, no shuffles), activation
// scales and sums by two permutes per group.

// T[k] = sum of the 8 lanes of p[k], k = 0..7. With hi16, lanes 4..7 of
// every p[k] hold 16 times their true value (high nibbles left in place,
// see dot_q4x16) and are divided back exactly (arithmetic shift) once they
// have been summed.
INLINE __m256i hsum8x8(const __m256i p[8], int hi16) {
    __m256i a[4], b[2];
    UNROLL
    for (int k = 0; k < 4; k++)
        a[k] = _mm256_add_epi32(_mm256_unpacklo_epi32(p[2 * k], p[2 * k + 1]),
                                _mm256_unpackhi_epi32(p[2 * k], p[2 * k + 1]));
    UNROLL
    for (int m = 0; m < 2; m++) {
        b[m] = _mm256_add_epi32(_mm256_unpacklo_epi64(a[2 * m], a[2 * m + 1]),
                                _mm256_unpackhi_epi64(a[2 * m], a[2 * m + 1]));
        if (hi16) b[m] = _mm256_srav_epi32(b[m], _mm256_setr_epi32(0, 0, 0, 0, 4, 4, 4, 4));
    }
    // b[m], 128-bit lane L: sums of the half L of blocks 4m..4m+3
    return _mm256_add_epi32(_mm256_permute2x128_si256(b[0], b[1], 0x20), _mm256_permute2x128_si256(b[0], b[1], 0x31));
}

// The halves at byte 0 (off = 0) or 2 of 8 consecutive blocks of bs bytes,
// as floats: 16-bit loads packed four to a 64-bit register.
INLINE __m256 gather8_half(const uint8_t *p, int bs, int off) {
    uint64_t lo = 0, hi = 0;
    UNROLL
    for (int k = 0; k < 4; k++) {
        uint16_t h0, h1;
        memcpy(&h0, p + k * bs + off, 2);
        memcpy(&h1, p + (k + 4) * bs + off, 2);
        lo |= (uint64_t)h0 << (16 * k);
        hi |= (uint64_t)h1 << (16 * k);
    }
    return _mm256_cvtph_ps(_mm_unpacklo_epi64(_mm_cvtsi64_si128((long long)lo), _mm_cvtsi64_si128((long long)hi)));
}

// d and sum of 8 consecutive blk_q8_32 blocks (40 bytes: floats 10k, 10k+1).
INLINE void gather8_act(const blk_q8_32 *y, __m256 *da, __m256i *sum) {
    const float *f = (const float *)y;
    const __m512i idx = _mm512_setr_epi32(0, 10, 20, 30, 1, 11, 21, 31, 0, 0, 0, 0, 0, 0, 0, 0);
    __m256 x = _mm512_castps512_ps256(_mm512_permutex2var_ps(_mm512_loadu_ps(f), idx, _mm512_loadu_ps(f + 16)));
    __m256 z = _mm512_castps512_ps256(_mm512_permutex2var_ps(_mm512_loadu_ps(f + 40), idx, _mm512_loadu_ps(f + 56)));
    *da = _mm256_permute2f128_ps(x, z, 0x20);
    *sum = _mm256_castps_si256(_mm256_permute2f128_ps(x, z, 0x31));
}

// 0 + p[0] + p[1] + ... + p[7], in that order (7 lane shuffles and a chain
// of adds; consecutive groups overlap).
INLINE float chain8(__m256 p) {
    const __m128 lo = _mm256_castps256_ps128(p), hi = _mm256_extractf128_ps(p, 1);
    float g = 0.0f + _mm_cvtss_f32(lo);
    g += _mm_cvtss_f32(_mm_movehdup_ps(lo));
    g += _mm_cvtss_f32(_mm_movehl_ps(lo, lo));
    g += _mm_cvtss_f32(_mm_shuffle_ps(lo, lo, 3));
    g += _mm_cvtss_f32(hi);
    g += _mm_cvtss_f32(_mm_movehdup_ps(hi));
    g += _mm_cvtss_f32(_mm_movehl_ps(hi, hi));
    g += _mm_cvtss_f32(_mm_shuffle_ps(hi, hi, 3));
    return g;
}

INLINE int32_t hsum_epi32_256(__m256i v) {
    __m128i s = _mm_add_epi32(_mm256_castsi256_si128(v), _mm256_extracti128_si256(v, 1));
    s = _mm_add_epi32(s, _mm_unpackhi_epi64(s, s));
    s = _mm_add_epi32(s, _mm_shuffle_epi32(s, 0xB1));
    return _mm_cvtsi128_si32(s);
}

// One block: 32 codes · 32 activations in 8 int32 lanes.
INLINE __m256i dot32(__m256i codes, const blk_q8_32 *y) {
    return _mm256_dpbusd_epi32(_mm256_setzero_si256(), codes, _mm256_loadu_si256((const __m256i *)y->qs));
}

// Q4_0/Q4_1 without a shift: [qs | qs] masked with [0x0F.. | 0xF0..] keeps
// the high nibbles in place, as 16·h (at most 240: still a u8), so lanes 4..7
// come out 16 times too large, exactly; hsum8x8(.., 1) divides them back.
INLINE __m256i dot_q4x16(const uint8_t *qs, const blk_q8_32 *y) {
    const __m256i b = _mm256_broadcastsi128_si256(_mm_loadu_si128((const __m128i *)qs));
    const __m256i m = _mm256_inserti128_si256(_mm256_set1_epi8(0x0F), _mm_set1_epi8((char)0xF0), 1);
    return dot32(_mm256_and_si256(b, m), y);
}

// OFF: the code offset (8, 16, 128) for symmetric types, 0 for affine ones.
// DOT8: the 8-lane dot of one block; HI16: whether its lanes 4..7 are x16.
#define VEC_DOT_Q32(name, blk_t, DOT8, HI16, OFF, AFFINE)                                           \
    static void name(int64_t n, float *s, const void *w, const void *a) {                      \
        const blk_t *x = w;                                                                     \
        const blk_q8_32 *y = a;                                                                 \
        const int64_t nb = n / 32;                                                              \
        float acc = 0;                                                                          \
        int64_t i = 0;                                                                          \
        for (; i + 8 <= nb; i += 8) {                                                           \
            __m256i p[8];                                                                       \
            UNROLL                                                                              \
            for (int k = 0; k < 8; k++) p[k] = DOT8(&x[i + k], &y[i + k]);                      \
            __m256i isum = hsum8x8(p, HI16), sum;                                               \
            __m256 da;                                                                          \
            gather8_act(&y[i], &da, &sum);                                                      \
            if (OFF) isum = _mm256_sub_epi32(isum, _mm256_mullo_epi32(sum, _mm256_set1_epi32(OFF))); \
            const __m256 sd = _mm256_mul_ps(gather8_half((const uint8_t *)&x[i], sizeof(blk_t), 0), da); \
            __m256 pb = _mm256_mul_ps(_mm256_cvtepi32_ps(isum), sd);                            \
            if (AFFINE)                                                                         \
                pb = _mm256_fmadd_ps(gather8_half((const uint8_t *)&x[i], sizeof(blk_t), 2),    \
                                     _mm256_mul_ps(da, _mm256_cvtepi32_ps(sum)), pb);           \
            acc += chain8(pb);                                                                  \
        }                                                                                       \
        if (i < nb) {                                                                           \
            float g = 0;                                                                        \
            for (; i < nb; i++) {                                                               \
                /* one block: shifted nibbles, no x16 lanes to undo */                          \
                int32_t isum = HI16 ? hsum_epi32_256(dot32(k512_nib32((const uint8_t *)&x[i] + sizeof(blk_t) - 16), &y[i])) \
                                    : hsum_epi32_256(DOT8(&x[i], &y[i]));                       \
                isum -= (OFF) * y[i].sum;                                                       \
                float pb = (float)isum * (k512_half(&x[i]) * y[i].d);                           \
                if (AFFINE) pb = fmaf(k512_half((const uint8_t *)&x[i] + 2), y[i].d * (float)y[i].sum, pb); \
                g += pb;                                                                        \
            }                                                                                   \
            acc += g;                                                                           \
        }                                                                                       \
        *s = acc;                                                                               \
    }

#define DOT_Q4X16(b, y) dot_q4x16((b)->qs, y)
#define DOT_Q5(b, y) dot32(k512_nib32_h((b)->qs, (b)->qh), y)
#define DOT_Q8(b, y) dot32(k512_q8_32((b)->qs), y)
VEC_DOT_Q32(vec_dot_q4_0, blk_q4_0, DOT_Q4X16, 1, 8, 0)
VEC_DOT_Q32(vec_dot_q4_1, blk_q4_1, DOT_Q4X16, 1, 0, 1)
VEC_DOT_Q32(vec_dot_q5_0, blk_q5_0, DOT_Q5, 0, 16, 0)
VEC_DOT_Q32(vec_dot_q5_1, blk_q5_1, DOT_Q5, 0, 0, 1)
VEC_DOT_Q32(vec_dot_q8_0, blk_q8_0, DOT_Q8, 0, 128, 0)

// --- K-quants --------------------------------------------------------------------------
//
// Canonical arithmetic per super-block (shared with gemm_avx512.c): isum =
// Σ_s sc_s·(q·a)_s including any offset term (Q3_K: -4·Σ sc_s·bsum_s, Q6_K:
// -32·Σ sc_s·bsum_s), imin = Σ_s m_s·bsum_s (Q2_K, Q4_K, Q5_K; exact int32),
// sd = fl(d·da), sm = fl(dmin·da),
//     p = fl(fl(isum)·sd) - fl(imin)·sm  (one rounding: fnmadd), acc = fl(acc + p),
// super-blocks in order, acc starting at 0.
//
// One 64-element chunk per zmm: vpmaddubsw(codes, activations) gives 32
// int16 pair sums (no saturation: codes <= 63, |a| <= 127, pair <= 16002);
// vpdpwssd multiplies them by a vector holding each pair's sub-block scale
// (one vpermw of the decoded scales per chunk) and accumulates int32. The
// min or offset term is one vpmaddwd of the 16 bsums with the per-16 scales
// (or per-32 mins doubled into both words of a dword). Four super-blocks share
// one transpose-reduction of their isum and imin vectors and scale in one
// vector; only the four adds into acc are sequential.

// vpermw indices giving each int16 pair of chunk c its sub-block's scale
// (scales as 16-bit words 0..7 or 0..15 of the source vector).
INLINE __m512i perm_sub32(int j) { // sub-blocks of 32: words 0..15 -> 2j, 16..31 -> 2j+1
    return _mm512_inserti64x4(_mm512_set1_epi16((short)(2 * j)), _mm256_set1_epi16((short)(2 * j + 1)), 1);
}
INLINE __m512i perm_sub16(int c) { // sub-blocks of 16: words 8g..8g+7 -> 4c+g
    const __m512i g = _mm512_setr_epi64(0, 0, 0x0001000100010001ll, 0x0001000100010001ll, 0x0002000200020002ll,
                                        0x0002000200020002ll, 0x0003000300030003ll, 0x0003000300030003ll);
    return _mm512_add_epi16(g, _mm512_set1_epi16((short)(4 * c)));
}

// Σ over a chunk: acc += Σ_pairs maddubs(codes, a) * scale-of-pair.
INLINE __m512i chunk_dot(__m512i acc, __m512i codes, const int8_t *a, __m512i scales) {
    return _mm512_dpwssd_epi32(acc, _mm512_maddubs_epi16(codes, _mm512_loadu_si512(a)), scales);
}

// Folds a zmm of int32 partial sums to a ymm with the same lane sum.
INLINE __m256i fold512(__m512i v) { return _mm256_add_epi32(_mm512_castsi512_si256(v), _mm512_extracti64x4_epi64(v, 1)); }

// Per super-block kernels: return a vector whose lane sum is isum (the offset
// term of Q3_K/Q6_K included) and set *mins to one whose lane sum is imin
// (zero for types without mins).

// Q4_K/Q5_K: sub-blocks of 32 with 6-bit scales and mins.
INLINE __m256i sb_k45(const uint8_t *blk, const uint8_t *qh, const uint8_t *qs, const blk_q8_K *y, __m256i *mins) {
    uint64_t sc8, mn8;
    k512_k4_scales(blk + 4, &sc8, &mn8);
    const __m512i sc16 = _mm512_castsi128_si512(_mm_cvtepu8_epi16(_mm_cvtsi64_si128((long long)sc8)));
    const __m512i qh2 = qh ? k512_bcast256(qh) : _mm512_setzero_si512();
    // Two accumulators: four dependent vpdpwssd would serialize the super-block.
    __m512i s[2] = {_mm512_setzero_si512(), _mm512_setzero_si512()};
    UNROLL
    for (int j = 0; j < 4; j++) {
        __m512i codes = qh ? k512_q5k_chunk(qs, qh2, j) : k512_q4k_chunk(qs, j);
        s[j & 1] = chunk_dot(s[j & 1], codes, y->qs + 64 * j, _mm512_permutexvar_epi16(perm_sub32(j), sc16));
    }
    // mins: m_s * (bsums[2s] + bsums[2s+1]), with m_s in both words of dword s.
    __m256i m32 = _mm256_cvtepu8_epi32(_mm_cvtsi64_si128((long long)mn8));
    m32 = _mm256_or_si256(m32, _mm256_slli_epi32(m32, 16));
    *mins = _mm256_madd_epi16(_mm256_loadu_si256((const __m256i *)y->bsums), m32);
    return fold512(_mm512_add_epi32(s[0], s[1]));
}
INLINE __m256i sb_q4_K(const blk_q4_K *x, const blk_q8_K *y, __m256i *mins) {
    return sb_k45((const uint8_t *)x, NULL, x->qs, y, mins);
}
INLINE __m256i sb_q5_K(const blk_q5_K *x, const blk_q8_K *y, __m256i *mins) {
    return sb_k45((const uint8_t *)x, x->qh, x->qs, y, mins);
}

// Q6_K: codes 0..63, value sc*(q - 32): the offset is -32·Σ sc_s·bsums_s.
INLINE __m256i sb_q6_K(const blk_q6_K *x, const blk_q8_K *y, __m256i *mins) {
    const __m256i sc16 = _mm256_cvtepi8_epi16(_mm_loadu_si128((const __m128i *)x->scales));
    const __m512i sc = _mm512_castsi256_si512(sc16);
    __m512i pp[2] = {_mm512_setzero_si512(), _mm512_setzero_si512()};
    UNROLL
    for (int c = 0; c < 4; c++)
        pp[c & 1] = chunk_dot(pp[c & 1], k512_q6_chunk(x->ql, x->qh, c), y->qs + 64 * c, _mm512_permutexvar_epi16(perm_sub16(c), sc));
    const __m512i p = _mm512_add_epi32(pp[0], pp[1]);
    __m256i off = _mm256_madd_epi16(_mm256_loadu_si256((const __m256i *)y->bsums), sc16);
    *mins = _mm256_setzero_si256();
    return _mm256_sub_epi32(fold512(p), _mm256_slli_epi32(off, 5));
}

// Q3_K: codes 0..7 (low two bits + 4 * hmask bit), value (sc-32)*(q - 4).
INLINE __m256i sb_q3_K(const blk_q3_K *x, const blk_q8_K *y, __m256i *mins) {
    const __m256i sc16 = _mm256_sub_epi16(_mm256_cvtepu8_epi16(k512_q3_scales(x->scales)), _mm256_set1_epi16(32));
    const __m512i sc = _mm512_castsi256_si512(sc16);
    const __m512i hm2 = k512_bcast256(x->hmask);
    __m512i pp[2] = {_mm512_setzero_si512(), _mm512_setzero_si512()};
    UNROLL
    for (int c = 0; c < 4; c++)
        pp[c & 1] = chunk_dot(pp[c & 1], k512_q3_chunk(x->qs, hm2, c), y->qs + 64 * c, _mm512_permutexvar_epi16(perm_sub16(c), sc));
    const __m512i p = _mm512_add_epi32(pp[0], pp[1]);
    __m256i off = _mm256_madd_epi16(_mm256_loadu_si256((const __m256i *)y->bsums), sc16);
    *mins = _mm256_setzero_si256();
    return _mm256_sub_epi32(fold512(p), _mm256_slli_epi32(off, 2));
}

// Q2_K: codes 0..3, per-16 4-bit scale (low nibble) and min (high nibble).
INLINE __m256i sb_q2_K(const blk_q2_K *x, const blk_q8_K *y, __m256i *mins) {
    const __m128i sb = _mm_loadu_si128((const __m128i *)x->scales);
    const __m256i sc16 = _mm256_cvtepu8_epi16(_mm_and_si128(sb, _mm_set1_epi8(0x0F)));
    const __m256i mn16 = _mm256_cvtepu8_epi16(_mm_and_si128(_mm_srli_epi16(sb, 4), _mm_set1_epi8(0x0F)));
    const __m512i sc = _mm512_castsi256_si512(sc16);
    __m512i pp[2] = {_mm512_setzero_si512(), _mm512_setzero_si512()};
    UNROLL
    for (int c = 0; c < 4; c++)
        pp[c & 1] = chunk_dot(pp[c & 1], k512_q2_chunk(x->qs, c), y->qs + 64 * c, _mm512_permutexvar_epi16(perm_sub16(c), sc));
    const __m512i p = _mm512_add_epi32(pp[0], pp[1]);
    *mins = _mm256_madd_epi16(_mm256_loadu_si256((const __m256i *)y->bsums), mn16);
    return fold512(p);
}

// 4 halves at byte off of 4 consecutive blocks of bs bytes -> floats.
INLINE __m128 gather4_half(const uint8_t *p, int bs, int off) {
    uint64_t v = 0;
    UNROLL
    for (int k = 0; k < 4; k++) {
        uint16_t h;
        memcpy(&h, p + k * bs + off, 2);
        v |= (uint64_t)h << (16 * k);
    }
    return _mm_cvtph_ps(_mm_cvtsi64_si128((long long)v));
}

// Driver: 4 super-blocks at a time share one transpose-reduction (isum and
// imin of all four in one ymm) and do their scaling in a vector; the adds
// into the result stay in order. DOFF/DMOFF: byte offsets of d and dmin.
#define VEC_DOT_K(name, blk_t, SB, HAS_MIN, DOFF, DMOFF)                                       \
    static void name(int64_t n, float *s, const void *w, const void *a) {                      \
        const blk_t *x = w;                                                                     \
        const blk_q8_K *y = a;                                                                  \
        const int64_t nb = n / QK_K;                                                            \
        float acc = 0;                                                                          \
        int64_t i = 0;                                                                          \
        for (; i + 4 <= nb; i += 4) {                                                           \
            __m256i v[8];                                                                       \
            UNROLL                                                                              \
            for (int k = 0; k < 4; k++) v[k] = SB(&x[i + k], &y[i + k], &v[4 + k]);             \
            const __m256 t = _mm256_cvtepi32_ps(hsum8x8(v, 0)); /* isum 0..3 | imin 0..3 */     \
            const __m128 da = _mm_setr_ps(y[i].d, y[i + 1].d, y[i + 2].d, y[i + 3].d);          \
            const __m128 sd = _mm_mul_ps(gather4_half((const uint8_t *)&x[i], sizeof(blk_t), DOFF), da); \
            __m128 p = _mm_mul_ps(_mm256_castps256_ps128(t), sd);                               \
            if (HAS_MIN)                                                                        \
                p = _mm_fnmadd_ps(_mm256_extractf128_ps(t, 1),                                  \
                                  _mm_mul_ps(gather4_half((const uint8_t *)&x[i], sizeof(blk_t), DMOFF), da), p); \
            acc += _mm_cvtss_f32(p);                                                            \
            acc += _mm_cvtss_f32(_mm_movehdup_ps(p));                                           \
            acc += _mm_cvtss_f32(_mm_movehl_ps(p, p));                                          \
            acc += _mm_cvtss_f32(_mm_shuffle_ps(p, p, 3));                                      \
        }                                                                                       \
        for (; i < nb; i++) {                                                                   \
            __m256i m;                                                                          \
            const int32_t isum = hsum_epi32_256(SB(&x[i], &y[i], &m));                          \
            const float da = y[i].d;                                                            \
            float p = (float)isum * (k512_half((const uint8_t *)&x[i] + DOFF) * da);            \
            if (HAS_MIN) p = fmaf(-(float)hsum_epi32_256(m), k512_half((const uint8_t *)&x[i] + DMOFF) * da, p); \
            acc += p;                                                                           \
        }                                                                                       \
        *s = acc;                                                                               \
    }

VEC_DOT_K(vec_dot_q2_K, blk_q2_K, sb_q2_K, 1, 80, 82)
VEC_DOT_K(vec_dot_q3_K, blk_q3_K, sb_q3_K, 0, 108, 0)
VEC_DOT_K(vec_dot_q4_K, blk_q4_K, sb_q4_K, 1, 0, 2)
VEC_DOT_K(vec_dot_q5_K, blk_q5_K, sb_q5_K, 1, 0, 2)
VEC_DOT_K(vec_dot_q6_K, blk_q6_K, sb_q6_K, 0, 208, 0)

// --- several activation columns ------------------------------------------------------
//
// vec_dot_n: one weight row against nc <= 8 activation rows (a batch of
// decoded tokens). Each output is computed with exactly the float operations
// of this file's vec_dot, in the same order (the canonical arithmetic above),
// so it equals vec_dot bit for bit; what the columns share is everything that
// depends on the weights alone: the block codes (unpacked once into
// registers), the weight scales and, for the K-quants, the per-chunk scale
// vectors. The integer sums are exact, so only their float use is fixed.
// The weight row is read from memory once for all columns; per column there
// remain the multiplies, the integer reductions and the scaling.

// Codes of one 32-element block as vpdpbusd takes them (Q4_0/Q4_1 with the
// high nibbles left in place, as in dot_q4x16).
INLINE __m256i codes_q4x16(const uint8_t *qs) {
    const __m256i b = _mm256_broadcastsi128_si256(_mm_loadu_si128((const __m128i *)qs));
    return _mm256_and_si256(b, _mm256_inserti128_si256(_mm256_set1_epi8(0x0F), _mm_set1_epi8((char)0xF0), 1));
}
#define CODES_Q4X16(b) codes_q4x16((b)->qs)
#define CODES_Q5(b) k512_nib32_h((b)->qs, (b)->qh)
#define CODES_Q8(b) k512_q8_32((b)->qs)

// t[k] lane c = p[c] lane k (an 8x8 transpose of floats).
INLINE void transpose8_ps(const __m256 p[8], __m256 t[8]) {
    __m256 a[8], b[8];
    UNROLL
    for (int k = 0; k < 4; k++) {
        a[2 * k] = _mm256_unpacklo_ps(p[2 * k], p[2 * k + 1]);
        a[2 * k + 1] = _mm256_unpackhi_ps(p[2 * k], p[2 * k + 1]);
    }
    UNROLL
    for (int m = 0; m < 2; m++) {
        b[4 * m + 0] = _mm256_shuffle_ps(a[4 * m], a[4 * m + 2], 0x44);
        b[4 * m + 1] = _mm256_shuffle_ps(a[4 * m], a[4 * m + 2], 0xEE);
        b[4 * m + 2] = _mm256_shuffle_ps(a[4 * m + 1], a[4 * m + 3], 0x44);
        b[4 * m + 3] = _mm256_shuffle_ps(a[4 * m + 1], a[4 * m + 3], 0xEE);
    }
    UNROLL
    for (int k = 0; k < 4; k++) {
        t[k] = _mm256_permute2f128_ps(b[k], b[4 + k], 0x20);
        t[4 + k] = _mm256_permute2f128_ps(b[k], b[4 + k], 0x31);
    }
}

// acc[c] += chain8(pb[c]) for c < 8 at once: lanes become columns, and the
// chain's adds (0 + p_0, then p_1, ...) run as 8 vector adds.
INLINE void chain8x8(const __m256 pb[8], float acc[8]) {
    __m256 t[8];
    transpose8_ps(pb, t);
    __m256 g = _mm256_add_ps(_mm256_setzero_ps(), t[0]);
    UNROLL
    for (int k = 1; k < 8; k++) g = _mm256_add_ps(g, t[k]);
    _mm256_storeu_ps(acc, _mm256_add_ps(_mm256_loadu_ps(acc), g));
}

#define VEC_DOT_N_Q32(name, blk_t, CODES, HI16, OFF, AFFINE)                                        \
    static void name(int64_t n, int nc, float *s, size_t s_stride, const void *w, const void *a,  \
                     size_t a_stride) {                                                             \
        const blk_t *x = w;                                                                         \
        const int64_t nb = n / 32;                                                                  \
        float acc[8] = {0};                                                                         \
        int64_t i = 0;                                                                              \
        for (; i + 8 <= nb; i += 8) {                                                               \
            __m256i codes[8];                                                                       \
            UNROLL                                                                                  \
            for (int k = 0; k < 8; k++) codes[k] = CODES(&x[i + k]);                                \
            const __m256 wd = gather8_half((const uint8_t *)&x[i], sizeof(blk_t), 0);               \
            const __m256 wm = AFFINE ? gather8_half((const uint8_t *)&x[i], sizeof(blk_t), 2) : wd; \
            __m256 pbs[8];                                                                          \
            for (int c = 0; c < 8; c++) {                                                           \
                if (c >= nc) { pbs[c] = _mm256_setzero_ps(); continue; }                            \
                const blk_q8_32 *y = (const blk_q8_32 *)((const char *)a + (size_t)c * a_stride) + i; \
                __m256i p[8];                                                                       \
                UNROLL                                                                              \
                for (int k = 0; k < 8; k++) p[k] = dot32(codes[k], &y[k]);                          \
                __m256i isum = hsum8x8(p, HI16), sum;                                               \
                __m256 da;                                                                          \
                gather8_act(y, &da, &sum);                                                          \
                if (OFF) isum = _mm256_sub_epi32(isum, _mm256_slli_epi32(sum, __builtin_ctz(OFF + 0u))); \
                const __m256 sd = _mm256_mul_ps(wd, da);                                            \
                __m256 pb = _mm256_mul_ps(_mm256_cvtepi32_ps(isum), sd);                            \
                if (AFFINE) pb = _mm256_fmadd_ps(wm, _mm256_mul_ps(da, _mm256_cvtepi32_ps(sum)), pb); \
                pbs[c] = pb;                                                                        \
                if (nc < 4) acc[c] += chain8(pb);                                                   \
            }                                                                                       \
            if (nc >= 4) chain8x8(pbs, acc);                                                        \
        }                                                                                           \
        if (i < nb) {                                                                               \
            float g[8] = {0};                                                                       \
            for (; i < nb; i++) {                                                                   \
                const __m256i codes = HI16 ? k512_nib32((const uint8_t *)&x[i] + sizeof(blk_t) - 16) : CODES(&x[i]); \
                const float d = k512_half(&x[i]);                                                   \
                const float m = AFFINE ? k512_half((const uint8_t *)&x[i] + 2) : 0.0f;              \
                for (int c = 0; c < nc; c++) {                                                      \
                    const blk_q8_32 *y = (const blk_q8_32 *)((const char *)a + (size_t)c * a_stride) + i; \
                    int32_t isum = hsum_epi32_256(dot32(codes, y)) - (OFF) * y->sum;                \
                    float pb = (float)isum * (d * y->d);                                            \
                    if (AFFINE) pb = fmaf(m, y->d * (float)y->sum, pb);                             \
                    g[c] += pb;                                                                     \
                }                                                                                   \
            }                                                                                       \
            for (int c = 0; c < nc; c++) acc[c] += g[c];                                            \
        }                                                                                           \
        for (int c = 0; c < nc; c++) s[(size_t)c * s_stride] = acc[c];                              \
    }

VEC_DOT_N_Q32(vec_dot_n_q4_0, blk_q4_0, CODES_Q4X16, 1, 8, 0)
VEC_DOT_N_Q32(vec_dot_n_q4_1, blk_q4_1, CODES_Q4X16, 1, 0, 1)
VEC_DOT_N_Q32(vec_dot_n_q5_0, blk_q5_0, CODES_Q5, 0, 16, 0)
VEC_DOT_N_Q32(vec_dot_n_q5_1, blk_q5_1, CODES_Q5, 0, 0, 1)
VEC_DOT_N_Q32(vec_dot_n_q8_0, blk_q8_0, CODES_Q8, 0, 128, 0)

// K-quants: a super-block's weight-only part (codes of its four 64-element
// chunks, the scale vector of each chunk, and the vector the bsums are
// multiplied by for the min or offset term), then per column the same
// integer sums as the sb_* kernels above.
typedef struct kprep {
    __m512i codes[4], scl[4];
    __m256i mv;  // Q2_K/Q4_K/Q5_K: per-pair mins; Q3_K/Q6_K: per-16 scales (offset term)
} kprep;

INLINE void prep_k45(const uint8_t *blk, const uint8_t *qh, const uint8_t *qs, kprep *p) {
    uint64_t sc8, mn8;
    k512_k4_scales(blk + 4, &sc8, &mn8);
    const __m512i sc16 = _mm512_castsi128_si512(_mm_cvtepu8_epi16(_mm_cvtsi64_si128((long long)sc8)));
    const __m512i qh2 = qh ? k512_bcast256(qh) : _mm512_setzero_si512();
    UNROLL
    for (int j = 0; j < 4; j++) {
        p->codes[j] = qh ? k512_q5k_chunk(qs, qh2, j) : k512_q4k_chunk(qs, j);
        p->scl[j] = _mm512_permutexvar_epi16(perm_sub32(j), sc16);
    }
    __m256i m32 = _mm256_cvtepu8_epi32(_mm_cvtsi64_si128((long long)mn8));
    p->mv = _mm256_or_si256(m32, _mm256_slli_epi32(m32, 16));
}
INLINE void prep_q4_K(const blk_q4_K *x, kprep *p) { prep_k45((const uint8_t *)x, NULL, x->qs, p); }
INLINE void prep_q5_K(const blk_q5_K *x, kprep *p) { prep_k45((const uint8_t *)x, x->qh, x->qs, p); }

INLINE void prep_q6_K(const blk_q6_K *x, kprep *p) {
    p->mv = _mm256_cvtepi8_epi16(_mm_loadu_si128((const __m128i *)x->scales));
    const __m512i sc = _mm512_castsi256_si512(p->mv);
    UNROLL
    for (int c = 0; c < 4; c++) {
        p->codes[c] = k512_q6_chunk(x->ql, x->qh, c);
        p->scl[c] = _mm512_permutexvar_epi16(perm_sub16(c), sc);
    }
}

INLINE void prep_q3_K(const blk_q3_K *x, kprep *p) {
    p->mv = _mm256_sub_epi16(_mm256_cvtepu8_epi16(k512_q3_scales(x->scales)), _mm256_set1_epi16(32));
    const __m512i sc = _mm512_castsi256_si512(p->mv);
    const __m512i hm2 = k512_bcast256(x->hmask);
    UNROLL
    for (int c = 0; c < 4; c++) {
        p->codes[c] = k512_q3_chunk(x->qs, hm2, c);
        p->scl[c] = _mm512_permutexvar_epi16(perm_sub16(c), sc);
    }
}

INLINE void prep_q2_K(const blk_q2_K *x, kprep *p) {
    const __m128i sb = _mm_loadu_si128((const __m128i *)x->scales);
    const __m512i sc = _mm512_castsi256_si512(_mm256_cvtepu8_epi16(_mm_and_si128(sb, _mm_set1_epi8(0x0F))));
    p->mv = _mm256_cvtepu8_epi16(_mm_and_si128(_mm_srli_epi16(sb, 4), _mm_set1_epi8(0x0F)));
    UNROLL
    for (int c = 0; c < 4; c++) {
        p->codes[c] = k512_q2_chunk(x->qs, c);
        p->scl[c] = _mm512_permutexvar_epi16(perm_sub16(c), sc);
    }
}

// One column of a prepared super-block: returns a vector whose lane sum is
// isum; *mins gets imin's (OSH = 0: types with mins) or zero (OSH = 2 / 5:
// the offset term -2^OSH·Σ sc·bsums is folded into isum).
INLINE __m256i kcol(const kprep *p, const blk_q8_K *y, int osh, __m256i *mins) {
    __m512i pp[2] = {_mm512_setzero_si512(), _mm512_setzero_si512()};
    UNROLL
    for (int c = 0; c < 4; c++) pp[c & 1] = chunk_dot(pp[c & 1], p->codes[c], y->qs + 64 * c, p->scl[c]);
    const __m256i v = fold512(_mm512_add_epi32(pp[0], pp[1]));
    const __m256i t = _mm256_madd_epi16(_mm256_loadu_si256((const __m256i *)y->bsums), p->mv);
    if (osh) {
        *mins = _mm256_setzero_si256();
        return _mm256_sub_epi32(v, _mm256_slli_epi32(t, osh));
    }
    *mins = t;
    return v;
}

#define VEC_DOT_N_K(name, blk_t, PREP, OSH, HAS_MIN, DOFF, DMOFF)                                   \
    static void name(int64_t n, int nc, float *s, size_t s_stride, const void *w, const void *a,  \
                     size_t a_stride) {                                                             \
        const blk_t *x = w;                                                                         \
        const int64_t nb = n / QK_K;                                                                \
        float acc[8] = {0};                                                                         \
        int64_t i = 0;                                                                              \
        for (; i + 4 <= nb; i += 4) {                                                               \
            __m256i v[8][8]; /* [column][isum 0..3 | imin 0..3] */                                  \
            UNROLL                                                                                  \
            for (int k = 0; k < 4; k++) {                                                           \
                kprep p;                                                                            \
                PREP(&x[i + k], &p);                                                                \
                for (int c = 0; c < nc; c++) {                                                      \
                    const blk_q8_K *y = (const blk_q8_K *)((const char *)a + (size_t)c * a_stride); \
                    v[c][k] = kcol(&p, &y[i + k], OSH, &v[c][4 + k]);                               \
                }                                                                                   \
            }                                                                                       \
            const __m128 wd = gather4_half((const uint8_t *)&x[i], sizeof(blk_t), DOFF);            \
            const __m128 wm = HAS_MIN ? gather4_half((const uint8_t *)&x[i], sizeof(blk_t), DMOFF) : wd; \
            for (int c = 0; c < nc; c++) {                                                          \
                const blk_q8_K *y = (const blk_q8_K *)((const char *)a + (size_t)c * a_stride) + i; \
                const __m256 t = _mm256_cvtepi32_ps(hsum8x8(v[c], 0));                              \
                const __m128 da = _mm_setr_ps(y[0].d, y[1].d, y[2].d, y[3].d);                      \
                __m128 p = _mm_mul_ps(_mm256_castps256_ps128(t), _mm_mul_ps(wd, da));               \
                if (HAS_MIN) p = _mm_fnmadd_ps(_mm256_extractf128_ps(t, 1), _mm_mul_ps(wm, da), p); \
                float r = acc[c];                                                                   \
                r += _mm_cvtss_f32(p);                                                              \
                r += _mm_cvtss_f32(_mm_movehdup_ps(p));                                             \
                r += _mm_cvtss_f32(_mm_movehl_ps(p, p));                                            \
                r += _mm_cvtss_f32(_mm_shuffle_ps(p, p, 3));                                        \
                acc[c] = r;                                                                         \
            }                                                                                       \
        }                                                                                           \
        for (; i < nb; i++) {                                                                       \
            kprep p;                                                                                \
            PREP(&x[i], &p);                                                                        \
            const float d = k512_half((const uint8_t *)&x[i] + DOFF);                               \
            const float dm = HAS_MIN ? k512_half((const uint8_t *)&x[i] + DMOFF) : 0.0f;            \
            for (int c = 0; c < nc; c++) {                                                          \
                const blk_q8_K *y = (const blk_q8_K *)((const char *)a + (size_t)c * a_stride) + i; \
                __m256i m;                                                                          \
                const int32_t isum = hsum_epi32_256(kcol(&p, y, OSH, &m));                          \
                float pb = (float)isum * (d * y->d);                                                \
                if (HAS_MIN) pb = fmaf(-(float)hsum_epi32_256(m), dm * y->d, pb);                   \
                acc[c] += pb;                                                                       \
            }                                                                                       \
        }                                                                                           \
        for (int c = 0; c < nc; c++) s[(size_t)c * s_stride] = acc[c];                              \
    }

VEC_DOT_N_K(vec_dot_n_q2_K, blk_q2_K, prep_q2_K, 0, 1, 80, 82)
VEC_DOT_N_K(vec_dot_n_q3_K, blk_q3_K, prep_q3_K, 2, 0, 108, 0)
VEC_DOT_N_K(vec_dot_n_q4_K, blk_q4_K, prep_q4_K, 0, 1, 0, 2)
VEC_DOT_N_K(vec_dot_n_q5_K, blk_q5_K, prep_q5_K, 0, 1, 0, 2)
VEC_DOT_N_K(vec_dot_n_q6_K, blk_q6_K, prep_q6_K, 5, 0, 208, 0)

// --- table ---------------------------------------------------------------------------------

tt_vec_dot_fn k512_vec_dot(tt_type t) {
    switch (t) {
    case TT_F32: return vec_dot_f32;
    case TT_F16: return vec_dot_f16;
    case TT_BF16: return vec_dot_bf16;
    case TT_Q4_0: return vec_dot_q4_0;
    case TT_Q4_1: return vec_dot_q4_1;
    case TT_Q5_0: return vec_dot_q5_0;
    case TT_Q5_1: return vec_dot_q5_1;
    case TT_Q8_0: return vec_dot_q8_0;
    case TT_Q2_K: return vec_dot_q2_K;
    case TT_Q3_K: return vec_dot_q3_K;
    case TT_Q4_K: return vec_dot_q4_K;
    case TT_Q5_K: return vec_dot_q5_K;
    case TT_Q6_K: return vec_dot_q6_K;
    default: return NULL;
    }
}

void k512_fill_vec_dot(kern_ops *k) {
    static const tt_type types[] = {TT_F32,  TT_F16,  TT_BF16, TT_Q4_0, TT_Q4_1, TT_Q5_0, TT_Q5_1,
                                    TT_Q8_0, TT_Q2_K, TT_Q3_K, TT_Q4_K, TT_Q5_K, TT_Q6_K};
    for (size_t i = 0; i < sizeof types / sizeof types[0]; i++) k->vec_dot[types[i]] = k512_vec_dot(types[i]);
    k->vec_dot_n[TT_Q4_0] = vec_dot_n_q4_0;
    k->vec_dot_n[TT_Q4_1] = vec_dot_n_q4_1;
    k->vec_dot_n[TT_Q5_0] = vec_dot_n_q5_0;
    k->vec_dot_n[TT_Q5_1] = vec_dot_n_q5_1;
    k->vec_dot_n[TT_Q8_0] = vec_dot_n_q8_0;
    k->vec_dot_n[TT_Q2_K] = vec_dot_n_q2_K;
    k->vec_dot_n[TT_Q3_K] = vec_dot_n_q3_K;
    k->vec_dot_n[TT_Q4_K] = vec_dot_n_q4_K;
    k->vec_dot_n[TT_Q5_K] = vec_dot_n_q5_K;
    k->vec_dot_n[TT_Q6_K] = vec_dot_n_q6_K;
}
