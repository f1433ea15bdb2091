// simd_avx512.h — helpers shared by the AVX-512 kernel files (private to
// src/tensor/*_avx512.c; every includer is compiled with the AVX-512 flags).
//
// The kernel files:
//   kern_avx512.c   the table (kern_fill_avx512), float helpers, activation
//                   quantizers, dequantization
//   dot_avx512.c    vec_dot for every type (decoding: one weight row × one
//                   activation vector, bound by memory bandwidth)
//   gemm_avx512.c   gemm tiles (prompt processing: bound by VNNI throughput)
// The per-type unpackers below turn a block's packed codes into one byte per
// element in element order; vec_dot and the gemm panel packer both use them,
// so each bit layout is decoded in one place (the one variation: the Q4_0/
// Q4_1 vec_dot leaves high nibbles in place, see dot_q4x16 in dot_avx512.c).
#ifndef SIM_SIMD_AVX512_H
#define SIM_SIMD_AVX512_H

#include <immintrin.h>
#include <stdint.h>
#include <string.h>

#include "tensor/kern.h"
#include "tensor/types.h"

#define INLINE static inline __attribute__((always_inline))
// Loops over registers (blocks of a group, columns of a tile) must unroll
// completely or their vectors go through the stack; GCC does not always
// decide to at -O2.
#define UNROLL _Pragma("GCC unroll 16")

// --- small helpers --------------------------------------------------------------

// A half loaded from an unaligned address, as a float.
INLINE float k512_half(const void *p) {
    uint16_t h;
    memcpy(&h, p, 2);
    return _mm_cvtss_f32(_mm_cvtph_ps(_mm_cvtsi32_si128(h)));
}

INLINE uint32_t k512_load_u32(const void *p) {
    uint32_t v;
    memcpy(&v, p, 4);
    return v;
}

INLINE float k512_hsum256(__m256 v) {
    __m128 s = _mm_add_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1));
    s = _mm_add_ps(s, _mm_movehl_ps(s, s));
    s = _mm_add_ss(s, _mm_movehdup_ps(s));
    return _mm_cvtss_f32(s);
}

INLINE float k512_hsum512(__m512 v) {
    return k512_hsum256(_mm256_add_ps(_mm512_castps512_ps256(v), _mm512_extractf32x8_ps(v, 1)));
}

// A 32-byte block broadcast to both halves of a zmm (one load, no shuffle).
INLINE __m512i k512_bcast256(const void *p) {
    return _mm512_broadcast_i64x4(_mm256_loadu_si256((const __m256i *)p));
}

// --- 16x16 dword transpose (gemm panels, sgemm packing) ------------------------------

// z[r] holds 16 dwords of row r; afterwards z[k] holds dword k of rows 0..15.
INLINE void k512_transpose16(__m512i z[16]) {
    __m512i a[16], b[16];
    UNROLL
    for (int i = 0; i < 8; i++) {
        a[2 * i] = _mm512_unpacklo_epi32(z[2 * i], z[2 * i + 1]);
        a[2 * i + 1] = _mm512_unpackhi_epi32(z[2 * i], z[2 * i + 1]);
    }
    // b[4g+e], 128-bit lane L: rows 4g..4g+3 of dword 4L+e
    UNROLL
    for (int g = 0; g < 4; g++) {
        b[4 * g + 0] = _mm512_unpacklo_epi64(a[4 * g], a[4 * g + 2]);
        b[4 * g + 1] = _mm512_unpackhi_epi64(a[4 * g], a[4 * g + 2]);
        b[4 * g + 2] = _mm512_unpacklo_epi64(a[4 * g + 1], a[4 * g + 3]);
        b[4 * g + 3] = _mm512_unpackhi_epi64(a[4 * g + 1], a[4 * g + 3]);
    }
    // 4x4 transpose of 128-bit lanes: out[4L+e] lane g = b[4g+e] lane L
    UNROLL
    for (int e = 0; e < 4; e++) {
        __m512i c0 = _mm512_shuffle_i32x4(b[e], b[4 + e], 0x44);
        __m512i c1 = _mm512_shuffle_i32x4(b[e], b[4 + e], 0xEE);
        __m512i c2 = _mm512_shuffle_i32x4(b[8 + e], b[12 + e], 0x44);
        __m512i c3 = _mm512_shuffle_i32x4(b[8 + e], b[12 + e], 0xEE);
        z[e] = _mm512_shuffle_i32x4(c0, c2, 0x88);
        z[4 + e] = _mm512_shuffle_i32x4(c0, c2, 0xDD);
        z[8 + e] = _mm512_shuffle_i32x4(c1, c3, 0x88);
        z[12 + e] = _mm512_shuffle_i32x4(c1, c3, 0xDD);
    }
}

// --- unpackers: codes to bytes ------------------------------------------------------
//
// Every unpacker yields unsigned codes (the offset of Q4_0/Q5_0/Q8_0/Q3_K/Q6_K
// is applied with the activation sums, never per element): the codes go into
// the unsigned operand of vpdpbusd / vpmaddubsw.

// Q4_0/Q4_1: 16 bytes of nibbles -> 32 codes (elements 0..15 from the low
// nibbles, 16..31 from the high ones: vpsrlvq shifts the upper lane by 4).
INLINE __m256i k512_nib32(const uint8_t *qs) {
    const __m256i b = _mm256_broadcastsi128_si256(_mm_loadu_si128((const __m128i *)qs));
    const __m256i sh = _mm256_setr_epi64x(0, 0, 4, 4);
    return _mm256_and_si256(_mm256_srlv_epi64(b, sh), _mm256_set1_epi8(0x0F));
}

// Q5_0/Q5_1: as k512_nib32 plus bit i of the u32 qh as bit 4 of element i
// (the bits become a byte mask; a masked add sets the fifth bit).
INLINE __m256i k512_nib32_h(const uint8_t *qs, const uint8_t *qh) {
    __m256i q = k512_nib32(qs);
    __mmask32 h = _cvtu32_mask32(k512_load_u32(qh));
    return _mm256_mask_add_epi8(q, h, q, _mm256_set1_epi8(0x10));
}

// Q8_0: signed codes + 128 (exact as unsigned bytes; the kernels subtract
// 128 * sum of the activations).
INLINE __m256i k512_q8_32(const int8_t *qs) {
    return _mm256_xor_si256(_mm256_loadu_si256((const __m256i *)qs), _mm256_set1_epi8((char)0x80));
}

// Q4_K/Q5_K chunk j (elements 64j..64j+63): 32 bytes qs[32j..] hold the
// first 32 in their low nibbles and the next 32 in their high nibbles; a
// 256-bit broadcast and a per-half shift of 0 / 4 put them in order.
INLINE __m512i k512_q4k_chunk(const uint8_t *qs, int j) {
    const __m512i b = k512_bcast256(qs + 32 * j);
    const __m512i sh = _mm512_setr_epi64(0, 0, 0, 0, 4, 4, 4, 4);
    return _mm512_and_si512(_mm512_srlv_epi64(b, sh), _mm512_set1_epi8(0x0F));
}

// Q5_K fifth bits of chunk j: bit 2j (first 32) / 2j+1 (next 32) of qh[l].
// A 64-bit rotate by 4 - 2j (resp. 3 - 2j) moves each byte's bit to bit 4
// of the same byte (a rotate, unlike a shift, keeps negative amounts in the
// byte); vpternlog then ORs bit 4 in.
INLINE __m512i k512_q5k_chunk(const uint8_t *qs, __m512i qh2, int j) {
    const __m512i q = k512_q4k_chunk(qs, j);
    const __m512i rot = _mm512_setr_epi64(4 - 2 * j, 4 - 2 * j, 4 - 2 * j, 4 - 2 * j, 3 - 2 * j,
                                          3 - 2 * j, 3 - 2 * j, 3 - 2 * j);
    const __m512i r = _mm512_rolv_epi64(qh2, _mm512_and_si512(rot, _mm512_set1_epi64(63)));
    // q | (r & 0x10): ternary-logic truth table of (A | (B & C)) with A=q, B=r, C=0x10.
    return _mm512_ternarylogic_epi32(q, r, _mm512_set1_epi8(0x10), 0xF8);
}

// Q2_K/Q3_K low two bits of chunk c (elements 64c..64c+63): half h = c/2 uses
// qs[32h..32h+32); its 2-bit fields s = 2(c%2) (first 32) and s+1 (next 32).
INLINE __m512i k512_q2_chunk(const uint8_t *qs, int c) {
    const __m512i b = k512_bcast256(qs + 32 * (c / 2));
    const int s = 2 * (c % 2);
    const __m512i sh = _mm512_setr_epi64(2 * s, 2 * s, 2 * s, 2 * s, 2 * s + 2, 2 * s + 2, 2 * s + 2, 2 * s + 2);
    return _mm512_and_si512(_mm512_srlv_epi64(b, sh), _mm512_set1_epi8(0x03));
}

// Q3_K chunk c: low two bits plus 4 where bit e/32 of hmask[e%32] is set
// (those elements have no -4 offset: code = q3 in 0..7, value = code - 4).
// hm2 = hmask broadcast to both halves.
INLINE __m512i k512_q3_chunk(const uint8_t *qs, __m512i hm2, int c) {
    const __m512i lo = k512_q2_chunk(qs, c);
    const int b0 = 2 * c, b1 = 2 * c + 1; // hmask bit for the two halves
    const __m512i bit = _mm512_inserti64x4(_mm512_set1_epi8((char)(1 << b0)),
                                           _mm256_set1_epi8((char)(1 << b1)), 1);
    const __mmask64 k = _mm512_test_epi8_mask(hm2, bit);
    return _mm512_mask_add_epi8(lo, k, lo, _mm512_set1_epi8(4));
}

// Q6_K chunk c (elements 64c..64c+63), h = c/2, s0 = 2(c%2): low nibbles
// from ql[64h + 0..63] (low for c even, high for c odd), high two bits from
// qh[32h + l] bits 2s..2s+1 for s = s0 (first 32) and s0+1 (next 32). A
// 16-bit shift by 4-2s (left or right) puts the two bits at bits 4..5; the
// bits it drags in from the neighbouring byte are masked off.
INLINE __m512i k512_q6_chunk(const uint8_t *ql, const uint8_t *qh, int c) {
    const int h = c / 2, odd = c % 2;
    __m512i lo = _mm512_loadu_si512(ql + 64 * h);
    if (odd) lo = _mm512_srli_epi16(lo, 4);
    lo = _mm512_and_si512(lo, _mm512_set1_epi8(0x0F));
    const __m512i hb = k512_bcast256(qh + 32 * h);
    __m512i hi;
    if (!odd) // s = 0 | 1: left by 4 | 2
        hi = _mm512_sllv_epi16(hb, _mm512_inserti64x4(_mm512_set1_epi16(4), _mm256_set1_epi16(2), 1));
    else // s = 2 | 3: none | right by 2
        hi = _mm512_srlv_epi16(hb, _mm512_inserti64x4(_mm512_set1_epi16(0), _mm256_set1_epi16(2), 1));
    // lo | (hi & 0x30)
    return _mm512_ternarylogic_epi32(lo, hi, _mm512_set1_epi8(0x30), 0xF8);
}

// --- scale decoding -------------------------------------------------------------------

// Q4_K/Q5_K: the 8 six-bit scales and 8 mins packed in 12 bytes (see quant.c
// unpack_k4_scales), as two little-endian u64 of bytes.
INLINE void k512_k4_scales(const uint8_t *s, uint64_t *sc, uint64_t *mn) {
    uint32_t u0 = k512_load_u32(s), u1 = k512_load_u32(s + 4), u2 = k512_load_u32(s + 8);
    uint32_t sc_lo = u0 & 0x3F3F3F3Fu, mn_lo = u1 & 0x3F3F3F3Fu;
    uint32_t sc_hi = (u2 & 0x0F0F0F0Fu) | ((u0 >> 6) & 0x03030303u) << 4;
    uint32_t mn_hi = ((u2 >> 4) & 0x0F0F0F0Fu) | ((u1 >> 6) & 0x03030303u) << 4;
    *sc = sc_lo | (uint64_t)sc_hi << 32;
    *mn = mn_lo | (uint64_t)mn_hi << 32;
}

// Q3_K: the 16 six-bit codes (scale = code - 32) as 16 bytes (see quant.c
// unpack_q3_scales: low nibbles from s[0..7], high bits from s[8..11]).
INLINE __m128i k512_q3_scales(const uint8_t *s) {
    uint32_t a0 = k512_load_u32(s), a1 = k512_load_u32(s + 4), t = k512_load_u32(s + 8);
    uint32_t c0 = (a0 & 0x0F0F0F0Fu) | ((t >> 0) & 0x03030303u) << 4;
    uint32_t c1 = (a1 & 0x0F0F0F0Fu) | ((t >> 2) & 0x03030303u) << 4;
    uint32_t c2 = ((a0 >> 4) & 0x0F0F0F0Fu) | ((t >> 4) & 0x03030303u) << 4;
    uint32_t c3 = ((a1 >> 4) & 0x0F0F0F0Fu) | ((t >> 6) & 0x03030303u) << 4;
    return _mm_setr_epi32((int)c0, (int)c1, (int)c2, (int)c3);
}

// --- entry points of the other kernel files ------------------------------------------

void k512_fill_vec_dot(kern_ops *k);
tt_vec_dot_fn k512_vec_dot(tt_type t); // this level's vec_dot of t (NULL if none)
void k512_fill_gemm(kern_ops *k);

#endif
