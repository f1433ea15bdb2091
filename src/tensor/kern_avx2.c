// kern_avx2.c — AVX2 + FMA + F16C kernels (compiled with -mavx2 -mfma -mf16c;
// only called after kern_detect() found those features).
//
// Every kernel here has a scalar twin with the same contract (quant.c,
// types.c, kern.c); tests/test_kern.c compares them on odd sizes.
//
// Techniques
//
// Integer dot products. Weights are unpacked to one byte per element in a
// 256-bit register (32 elements), activations are int8 (blk_q8_32 /
// blk_q8_K). _mm256_maddubs_epi16(unsigned, signed) multiplies byte pairs and
// adds neighbours into int16; _mm256_madd_epi16 then widens to int32 while
// multiplying by ones (32-element types) or by the sub-block scale
// (K-quants), so per block everything stays exact in integers and is scaled
// in float once. Saturation bounds of maddubs (int16): activation codes are
// in -127..127 (both activation quantizers clamp there), so with an unsigned
// weight code c the pair sum is at most 2*127*c: 4-bit 3810, 5-bit 7874,
// 6-bit 16002, all < 32767. Q8_0 has signed weights and uses the sign trick
// maddubs(|w|, sign(a, w)): |w| <= 128 as unsigned, and sign(a, w) never
// wraps because a != -128, so a pair is at most 2*128*127 = 32512.
//
// Offsets and mins. Unsigned codes with an offset (Q4_0: q - 8, Q5_0,
// Q3_K, Q6_K) are handled with the activation sums the activation format
// carries: sum (q - o)*a = sum q*a - o*sum a. The 32-element types add the
// integer offset to lane 0 of the block's int32 vector; the K-quants take
// madd(bsums, per-16 scales). Affine types (Q4_1, Q5_1, Q2_K, Q4_K, Q5_K)
// add their min term in float the same way.
//
// Tiles. gemm runs a register-blocked micro-tile of R weight rows x C
// activation columns: each weight block is unpacked once per tile and used
// C times, each activation block loaded once and used R times. The tile
// bodies are always-inline functions of (R, C) with fully unrolled loops;
// each type instantiates four shapes (R x C, 1 x C, R x 1, 1 x 1) and the
// edges of a gemm use the thin ones. Every (r, c) pair runs the same
// operations in the same order whatever the shape, so a result never depends
// on nr, nc or the thread split, and vec_dot of a quantized type is the 1 x 1
// tile (bit-identical to gemm). The float types' vec_dot uses four
// independent accumulators instead (one accumulator is latency-bound), so it
// matches their gemm only up to float rounding.
// Shapes (measured on 64 x 64 chunks as matmul.c hands them out): float
// types 4 x 3 (12 accumulators + 3 activations + 1 weight = 16 registers);
// 32-element types 4 x 4; K-quants 1 x 8 (their unpacking per block is the
// expensive part, so the widest reuse of one unpacked row wins; more rows
// only add register pressure).
//
// Half floats use F16C (vcvtph2ps / vcvtps2ph with round-to-nearest-even,
// bit-identical to tt_float_to_half). Dequantization (to_float) computes the
// same float expressions in the same order as quant.c, with separate
// multiplies and adds (the build's -std=c11 implies -ffp-contract=off in GCC,
// so they are not fused into FMAs).
#include <immintrin.h>
#include <string.h>

#include "tensor/kern.h"
#include "tensor/types.h"

#define INLINE static inline __attribute__((always_inline))
#define UNROLL _Pragma("GCC unroll 8")

// Largest tile side any type uses (the accumulator arrays are sized by it;
// the unrolled loops touch only R x C of them, which the compiler keeps in
// registers as far as they go).
#define TMAX 8

// --- helpers ------------------------------------------------------------------------

INLINE float hsum_ps(__m256 v) {
    __m128 s = _mm_add_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1));
    s = _mm_add_ps(s, _mm_movehl_ps(s, s));
    s = _mm_add_ss(s, _mm_movehdup_ps(s));
    return _mm_cvtss_f32(s);
}

INLINE int32_t hsum_epi32(__m256i v) {
    __m128i s = _mm_add_epi32(_mm256_castsi256_si128(v), _mm256_extracti128_si256(v, 1));
    s = _mm_add_epi32(s, _mm_unpackhi_epi64(s, s));
    s = _mm_add_epi32(s, _mm_shuffle_epi32(s, 0xB1));
    return _mm_cvtsi128_si32(s);
}

INLINE float hmax_ps(__m256 v) {
    __m128 s = _mm_max_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1));
    s = _mm_max_ps(s, _mm_movehl_ps(s, s));
    s = _mm_max_ss(s, _mm_movehdup_ps(s));
    return _mm_cvtss_f32(s);
}

INLINE float h2f(tt_half h) { return _cvtsh_ss(h); }

// Prefetches the block at p one tile further down (R rows of stride ws): the
// same block of the rows the next tile will read. A tile reads R short rows
// side by side, and each new tile starts R new streams the hardware
// prefetcher must detect again; measured from DRAM (rows of 2-3 KB) this
// recovered up to 2x for R > 1. With R == 1 the rows form one contiguous
// stream the hardware follows by itself. Past the matrix a prefetch is harmless.
INLINE void prefetch_next_tile(const void *p, int R, size_t ws, size_t bytes) {
    if (R == 1) return;
    const char *next = (const char *)p + (size_t)R * ws;
    for (size_t o = 0; o < bytes; o += 64) _mm_prefetch(next + o, _MM_HINT_T0);
}

INLINE __m256i loadu256(const void *p) { return _mm256_loadu_si256((const __m256i *)p); }
INLINE __m128i loadu128(const void *p) { return _mm_loadu_si128((const __m128i *)p); }

// A vector holding v in lane 0 and zeros elsewhere (adds a per-block term once).
INLINE __m256i lane0_epi32(int32_t v) { return _mm256_setr_epi32(v, 0, 0, 0, 0, 0, 0, 0); }
INLINE __m256 lane0_ps(float v) { return _mm256_setr_ps(v, 0, 0, 0, 0, 0, 0, 0); }

// 8 bfloat16 to float: the bits shifted into the top half of each float.
INLINE __m256 bf16x8_to_ps(__m128i h) {
    return _mm256_castsi256_ps(_mm256_slli_epi32(_mm256_cvtepu16_epi32(h), 16));
}

// Sum of 16-bit pairs of the unsigned x signed byte products, widened: 8 int32.
INLINE __m256i dot_u8i8(__m256i u, __m256i s) {
    return _mm256_madd_epi16(_mm256_maddubs_epi16(u, s), _mm256_set1_epi16(1));
}

// The same with each 16-bit pair sum multiplied by its int16 scale in sc.
INLINE __m256i dot_u8i8_scaled(__m256i u, __m256i s, __m256i sc) {
    return _mm256_madd_epi16(_mm256_maddubs_epi16(u, s), sc);
}

// y[0..16) = dl * (float)q[i] for 16 int8 codes (the K-quant dequantization).
INLINE void dq16_i8(__m128i q, __m256 dl, float *y) {
    _mm256_storeu_ps(y, _mm256_mul_ps(dl, _mm256_cvtepi32_ps(_mm256_cvtepi8_epi32(q))));
    __m256i hi = _mm256_cvtepi8_epi32(_mm_srli_si128(q, 8));
    _mm256_storeu_ps(y + 8, _mm256_mul_ps(dl, _mm256_cvtepi32_ps(hi)));
}

// A pshufb control broadcasting 16-bit word lo_word across the low 128-bit
// lane and word hi_word across the high one.
INLINE __m256i word_bcast_ctrl(int lo_word, int hi_word) {
    return _mm256_set_m128i(_mm_set1_epi16((short)(((2 * hi_word + 1) << 8) | (2 * hi_word))),
                            _mm_set1_epi16((short)(((2 * lo_word + 1) << 8) | (2 * lo_word))));
}

// Expands 32 bits to 32 bytes: byte j is 0xFF when bit j of bits is set.
INLINE __m256i bits_to_bytes(uint32_t bits) {
    const __m256i shuf = _mm256_setr_epi8(0, 0, 0, 0, 0, 0, 0, 0, 1, 1, 1, 1, 1, 1, 1, 1,
                                          2, 2, 2, 2, 2, 2, 2, 2, 3, 3, 3, 3, 3, 3, 3, 3);
    const __m256i bit = _mm256_set1_epi64x((long long)0x8040201008040201ull);
    __m256i v = _mm256_shuffle_epi8(_mm256_set1_epi32((int)bits), shuf);
    return _mm256_cmpeq_epi8(_mm256_and_si256(v, bit), bit);
}

// y[i] = (float)(q[i] - off) * d (+ m when add_m) for 32 codes q, int8
// (is_signed) or uint8: quant.c's dequantization expressions.
INLINE void dq32(__m256i q, bool is_signed, int off, __m256 d, bool add_m, __m256 m, float *y) {
    __m128i half[2] = {_mm256_castsi256_si128(q), _mm256_extracti128_si256(q, 1)};
    const __m256i o = _mm256_set1_epi32(off);
    UNROLL for (int k = 0; k < 4; k++) {
        __m128i src = (k & 1) ? _mm_srli_si128(half[k >> 1], 8) : half[k >> 1];
        __m256i v = is_signed ? _mm256_cvtepi8_epi32(src) : _mm256_cvtepu8_epi32(src);
        __m256 f = _mm256_mul_ps(_mm256_cvtepi32_ps(_mm256_sub_epi32(v, o)), d);
        if (add_m) f = _mm256_add_ps(f, m);
        _mm256_storeu_ps(y + 8 * k, f);
    }
}

// --- tile driver ----------------------------------------------------------------------

// The float accumulators of a tile: zeroed, and reduced into out[c*ldo + r].
INLINE void tile_zero(int R, int C, __m256 acc[TMAX][TMAX]) {
    UNROLL for (int r = 0; r < R; r++) UNROLL for (int c = 0; c < C; c++) acc[r][c] = _mm256_setzero_ps();
}
INLINE void tile_store(int R, int C, __m256 acc[TMAX][TMAX], float *out, size_t ldo) {
    UNROLL for (int r = 0; r < R; r++) UNROLL for (int c = 0; c < C; c++) out[c * ldo + r] = hsum_ps(acc[r][c]);
}

// One tile: out[c*ldo + r] for its R x C pairs; w/a point at the tile's first row/column.
typedef void (*tile_fn)(int64_t n, const char *w, size_t ws, const char *a, size_t as, float *out,
                        size_t ldo);

// Covers nr x nc with TR x TC tiles, the leftover rows with 1 x TC tiles,
// the leftover columns with TR x 1 and the corner with 1 x 1. Rows are the
// outer loop so a tile's weight rows stay in cache while the columns stream.
static void gemm_drive(int64_t n, int nr, int nc, const void *w, size_t ws, const void *a, size_t as,
                       float *out, size_t ldo, int TR, int TC, tile_fn full, tile_fn row1,
                       tile_fn col1, tile_fn one) {
    const char *wp = w, *ap = a;
    int nr_full = nr - nr % TR, nc_full = nc - nc % TC;
    for (int r = 0; r < nr; r += (r < nr_full ? TR : 1)) {
        bool rfull = r < nr_full;
        for (int c = 0; c < nc; c += (c < nc_full ? TC : 1)) {
            bool cfull = c < nc_full;
            tile_fn f = rfull ? (cfull ? full : col1) : (cfull ? row1 : one);
            f(n, wp + (size_t)r * ws, ws, ap + (size_t)c * as, as, out + (size_t)c * ldo + r, ldo);
        }
    }
}

// Instantiates the four tile shapes of body T##_tile(R, C, ...) and the gemm
// of one type.
#define DEFINE_GEMM(T, TR, TC)                                                                   \
    static void T##_t_full(int64_t n, const char *w, size_t ws, const char *a, size_t as,        \
                           float *out, size_t ldo) {                                             \
        T##_tile(TR, TC, n, w, ws, a, as, out, ldo);                                             \
    }                                                                                            \
    static void T##_t_row1(int64_t n, const char *w, size_t ws, const char *a, size_t as,        \
                           float *out, size_t ldo) {                                             \
        T##_tile(1, TC, n, w, ws, a, as, out, ldo);                                              \
    }                                                                                            \
    static void T##_t_col1(int64_t n, const char *w, size_t ws, const char *a, size_t as,        \
                           float *out, size_t ldo) {                                             \
        T##_tile(TR, 1, n, w, ws, a, as, out, ldo);                                              \
    }                                                                                            \
    static void T##_t_one(int64_t n, const char *w, size_t ws, const char *a, size_t as,         \
                          float *out, size_t ldo) {                                              \
        T##_tile(1, 1, n, w, ws, a, as, out, ldo);                                               \
    }                                                                                            \
    static void gemm_##T(int64_t n, int nr, int nc, const void *w, size_t ws, const void *a,     \
                         size_t as, float *out, size_t ldo) {                                    \
        gemm_drive(n, nr, nc, w, ws, a, as, out, ldo, TR, TC, T##_t_full, T##_t_row1,            \
                   T##_t_col1, T##_t_one);                                                       \
    }

#define DEFINE_VEC_DOT_FROM_TILE(T)                                                              \
    static void vec_dot_##T(int64_t n, float *s, const void *w, const void *a) {                 \
        T##_t_one(n, w, 0, a, 0, s, 0);                                                          \
    }

// --- float types: F32, F16, BF16 ---------------------------------------------------------

enum { FT_F32, FT_F16, FT_BF16 };

INLINE __m256 load8_ft(int ft, const void *p, int64_t i) {
    switch (ft) {
    case FT_F32: return _mm256_loadu_ps((const float *)p + i);
    case FT_F16: return _mm256_cvtph_ps(loadu128((const tt_half *)p + i));
    default: return bf16x8_to_ps(loadu128((const tt_bf16 *)p + i));
    }
}

INLINE float load1_ft(int ft, const void *p, int64_t i) {
    switch (ft) {
    case FT_F32: return ((const float *)p)[i];
    case FT_F16: return h2f(((const tt_half *)p)[i]);
    default: return tt_bf16_to_float(((const tt_bf16 *)p)[i]);
    }
}

// dot(x, y) over n floats of x's type; four accumulators hide the FMA latency.
INLINE float dot_ft(int ft, const void *x, const float *y, int64_t n) {
    __m256 s0 = _mm256_setzero_ps(), s1 = s0, s2 = s0, s3 = s0;
    int64_t i = 0;
    for (; i + 32 <= n; i += 32) {
        s0 = _mm256_fmadd_ps(load8_ft(ft, x, i), _mm256_loadu_ps(y + i), s0);
        s1 = _mm256_fmadd_ps(load8_ft(ft, x, i + 8), _mm256_loadu_ps(y + i + 8), s1);
        s2 = _mm256_fmadd_ps(load8_ft(ft, x, i + 16), _mm256_loadu_ps(y + i + 16), s2);
        s3 = _mm256_fmadd_ps(load8_ft(ft, x, i + 24), _mm256_loadu_ps(y + i + 24), s3);
    }
    for (; i + 8 <= n; i += 8) s0 = _mm256_fmadd_ps(load8_ft(ft, x, i), _mm256_loadu_ps(y + i), s0);
    float s = hsum_ps(_mm256_add_ps(_mm256_add_ps(s0, s1), _mm256_add_ps(s2, s3)));
    for (; i < n; i++) s += load1_ft(ft, x, i) * y[i];
    return s;
}

static void vec_dot_f32(int64_t n, float *s, const void *w, const void *a) {
    *s = dot_ft(FT_F32, w, a, n);
}
static void vec_dot_f16(int64_t n, float *s, const void *w, const void *a) {
    *s = dot_ft(FT_F16, w, a, n);
}
static void vec_dot_bf16(int64_t n, float *s, const void *w, const void *a) {
    *s = dot_ft(FT_BF16, w, a, n);
}

// R x C tile of float rows: one accumulator per pair, weights converted once
// per 8 elements and used C times.
INLINE void tile_ft(int ft, int R, int C, int64_t n, const char *w, size_t ws, const char *a,
                    size_t as, float *out, size_t ldo) {
    __m256 acc[TMAX][TMAX];
    tile_zero(R, C, acc);
    int64_t i = 0;
    for (; i + 8 <= n; i += 8) {
        __m256 av[TMAX];
        UNROLL for (int c = 0; c < C; c++) av[c] = _mm256_loadu_ps((const float *)(a + c * as) + i);
        UNROLL for (int r = 0; r < R; r++) {
            __m256 wv = load8_ft(ft, w + r * ws, i);
            UNROLL for (int c = 0; c < C; c++) acc[r][c] = _mm256_fmadd_ps(wv, av[c], acc[r][c]);
        }
    }
    UNROLL for (int r = 0; r < R; r++) {
        UNROLL for (int c = 0; c < C; c++) {
            const float *y = (const float *)(a + c * as);
            float s = hsum_ps(acc[r][c]);
            for (int64_t j = i; j < n; j++) s += load1_ft(ft, w + r * ws, j) * y[j];
            out[c * ldo + r] = s;
        }
    }
}

#define f32_tile(R, C, ...) tile_ft(FT_F32, R, C, __VA_ARGS__)
#define f16_tile(R, C, ...) tile_ft(FT_F16, R, C, __VA_ARGS__)
#define bf16_tile(R, C, ...) tile_ft(FT_BF16, R, C, __VA_ARGS__)
DEFINE_GEMM(f32, 4, 3)
DEFINE_GEMM(f16, 4, 3)
DEFINE_GEMM(bf16, 4, 3)

static void to_float_f16(const void *src, float *dst, int64_t n) {
    const tt_half *x = src;
    int64_t i = 0;
    for (; i + 8 <= n; i += 8) _mm256_storeu_ps(dst + i, _mm256_cvtph_ps(loadu128(x + i)));
    for (; i < n; i++) dst[i] = h2f(x[i]);
}

static void to_float_bf16(const void *src, float *dst, int64_t n) {
    const tt_bf16 *x = src;
    int64_t i = 0;
    for (; i + 8 <= n; i += 8) _mm256_storeu_ps(dst + i, bf16x8_to_ps(loadu128(x + i)));
    for (; i < n; i++) dst[i] = tt_bf16_to_float(x[i]);
}

// --- float helpers for the forward pass ------------------------------------------------------

static float dot_f32(const float *x, const float *y, int64_t n) { return dot_ft(FT_F32, x, y, n); }
static float dot_f16_f32(const tt_half *x, const float *y, int64_t n) { return dot_ft(FT_F16, x, y, n); }

static void axpy_f16(float *y, float a, const tt_half *x, int64_t n) {
    const __m256 av = _mm256_set1_ps(a);
    int64_t i = 0;
    for (; i + 8 <= n; i += 8) {
        __m256 xv = _mm256_cvtph_ps(loadu128(x + i));
        _mm256_storeu_ps(y + i, _mm256_fmadd_ps(av, xv, _mm256_loadu_ps(y + i)));
    }
    for (; i < n; i++) y[i] += a * h2f(x[i]);
}

static void f32_to_f16(const float *x, tt_half *y, int64_t n) {
    int64_t i = 0;
    for (; i + 8 <= n; i += 8) {
        __m128i h = _mm256_cvtps_ph(_mm256_loadu_ps(x + i), _MM_FROUND_TO_NEAREST_INT);
        _mm_storeu_si128((__m128i *)(y + i), h);
    }
    for (; i < n; i++) y[i] = _cvtss_sh(x[i], _MM_FROUND_TO_NEAREST_INT);
}

// --- activation quantizers -------------------------------------------------------------------

// 32 floats to int8 codes round_even(x * id) (vcvtps2dq rounds to nearest even
// under the default MXCSR, as the reference does), in element order. Finite
// inputs give |x * id| <= 127; NaN/Inf convert to INT_MIN, and the clamp to
// -127 keeps the invariant the dot products rely on (no code is -128).
INLINE __m256i quant32(const float *x, __m256 id) {
    __m256i i0 = _mm256_cvtps_epi32(_mm256_mul_ps(_mm256_loadu_ps(x), id));
    __m256i i1 = _mm256_cvtps_epi32(_mm256_mul_ps(_mm256_loadu_ps(x + 8), id));
    __m256i i2 = _mm256_cvtps_epi32(_mm256_mul_ps(_mm256_loadu_ps(x + 16), id));
    __m256i i3 = _mm256_cvtps_epi32(_mm256_mul_ps(_mm256_loadu_ps(x + 24), id));
    // The packs interleave 128-bit lanes: dwords come out as
    // i0[0:4] i1[0:4] i2[0:4] i3[0:4] i0[4:8] i1[4:8] i2[4:8] i3[4:8].
    __m256i p = _mm256_packs_epi16(_mm256_packs_epi32(i0, i1), _mm256_packs_epi32(i2, i3));
    p = _mm256_max_epi8(p, _mm256_set1_epi8(-127));
    return _mm256_permutevar8x32_epi32(p, _mm256_setr_epi32(0, 4, 1, 5, 2, 6, 3, 7));
}

// The largest |x| of n floats (n a multiple of 8).
INLINE float absmax(const float *x, int n) {
    const __m256 sign = _mm256_set1_ps(-0.0f);
    __m256 m = _mm256_setzero_ps();
    for (int i = 0; i < n; i += 8) m = _mm256_max_ps(m, _mm256_andnot_ps(sign, _mm256_loadu_ps(x + i)));
    return hmax_ps(m);
}

// Same contract as tt_quantize_q8_32_ref: d = amax / 127, codes in -127..127.
static void quantize_q8_32(const float *x, void *vy, int64_t n) {
    blk_q8_32 *y = vy;
    for (int64_t b = 0; b < n / 32; b++) {
        const float *xb = x + b * 32;
        float d = absmax(xb, 32) / 127.0f;
        float id = d != 0 ? 1.0f / d : 0.0f;
        __m256i q = quant32(xb, _mm256_set1_ps(id));
        _mm256_storeu_si256((__m256i *)y[b].qs, q);
        y[b].d = d;
        y[b].sum = hsum_epi32(dot_u8i8(_mm256_set1_epi8(1), q));
    }
}

// Same contract as tt_quantize_q8_K_ref: d = amax / 127 per 256, codes in
// -127..127, bsums per 16.
static void quantize_q8_K(const float *x, void *vy, int64_t n) {
    blk_q8_K *y = vy;
    const __m256i ones8 = _mm256_set1_epi8(1), ones16 = _mm256_set1_epi16(1);
    for (int64_t b = 0; b < n / QK_K; b++) {
        const float *xb = x + b * QK_K;
        float d = absmax(xb, QK_K) / 127.0f;
        const __m256 id = _mm256_set1_ps(d != 0 ? 1.0f / d : 0.0f);
        // Per 32 codes: 8 int32 partial sums, lanes 0-3 for the first 16, 4-7 for the second.
        __m256i part[8];
        for (int k = 0; k < 8; k++) {
            __m256i q = quant32(xb + 32 * k, id);
            _mm256_storeu_si256((__m256i *)(y[b].qs + 32 * k), q);
            part[k] = _mm256_madd_epi16(_mm256_maddubs_epi16(ones8, q), ones16);
        }
        // Two rounds of hadd leave the group sums with the even groups in the
        // low 128-bit lane and the odd ones in the high lane; pack to int16 and
        // interleave the lanes back into order.
        __m256i h0 = _mm256_hadd_epi32(_mm256_hadd_epi32(part[0], part[1]),
                                       _mm256_hadd_epi32(part[2], part[3]));
        __m256i h1 = _mm256_hadd_epi32(_mm256_hadd_epi32(part[4], part[5]),
                                       _mm256_hadd_epi32(part[6], part[7]));
        __m256i pk = _mm256_packs_epi32(h0, h1); // lo: g0 g2 .. g14, hi: g1 g3 .. g15
        __m128i lo = _mm256_castsi256_si128(pk), hi = _mm256_extracti128_si256(pk, 1);
        _mm_storeu_si128((__m128i *)y[b].bsums, _mm_unpacklo_epi16(lo, hi));
        _mm_storeu_si128((__m128i *)(y[b].bsums + 8), _mm_unpackhi_epi16(lo, hi));
        y[b].d = d;
    }
}

// --- 32-element types: Q4_0, Q4_1, Q5_0, Q5_1, Q8_0 ------------------------------------------

enum { K_Q4_0, K_Q4_1, K_Q5_0, K_Q5_1, K_Q8_0 };

INLINE size_t q32_bytes(int kind) {
    switch (kind) {
    case K_Q4_0: return sizeof(blk_q4_0);
    case K_Q4_1: return sizeof(blk_q4_1);
    case K_Q5_0: return sizeof(blk_q5_0);
    case K_Q5_1: return sizeof(blk_q5_1);
    default: return sizeof(blk_q8_0);
    }
}

// 16 bytes of nibbles to 32 codes in element order (low nibbles are elements
// 0..15, high nibbles 16..31).
INLINE __m256i nibbles32(const uint8_t *qs) {
    __m128i raw = loadu128(qs);
    return _mm256_and_si256(_mm256_set_m128i(_mm_srli_epi16(raw, 4), raw), _mm256_set1_epi8(0x0F));
}

// The fifth bits of Q5_x (bit j of the little-endian u32 qh) as 0x10 per byte.
INLINE __m256i fifth_bits(const uint8_t *qh) {
    uint32_t h;
    memcpy(&h, qh, 4);
    return _mm256_and_si256(bits_to_bytes(h), _mm256_set1_epi8(0x10));
}

// One weight block: q = its codes as unsigned bytes (|q| for Q8_0; qsgn the
// signed codes), d = its scale, m = its min (Q4_1 / Q5_1).
INLINE void q32_load(int kind, const char *blk, __m256i *q, __m256i *qsgn, float *d, float *m) {
    switch (kind) {
    case K_Q4_0: {
        const blk_q4_0 *x = (const blk_q4_0 *)blk;
        *q = nibbles32(x->qs);
        *d = h2f(x->d);
        break;
    }
    case K_Q4_1: {
        const blk_q4_1 *x = (const blk_q4_1 *)blk;
        *q = nibbles32(x->qs);
        *d = h2f(x->d);
        *m = h2f(x->m);
        break;
    }
    case K_Q5_0: {
        const blk_q5_0 *x = (const blk_q5_0 *)blk;
        *q = _mm256_or_si256(nibbles32(x->qs), fifth_bits(x->qh));
        *d = h2f(x->d);
        break;
    }
    case K_Q5_1: {
        const blk_q5_1 *x = (const blk_q5_1 *)blk;
        *q = _mm256_or_si256(nibbles32(x->qs), fifth_bits(x->qh));
        *d = h2f(x->d);
        *m = h2f(x->m);
        break;
    }
    default: {
        const blk_q8_0 *x = (const blk_q8_0 *)blk;
        *qsgn = loadu256(x->qs);
        *q = _mm256_abs_epi8(*qsgn);
        *d = h2f(x->d);
        break;
    }
    }
}

// R x C tile: per block, unpack R weight blocks, then for each activation
// column the R integer dot products, offset/min term, and one scaled add.
INLINE void tile_q32(int kind, int R, int C, int64_t n, const char *w, size_t ws, const char *a,
                     size_t as, float *out, size_t ldo) {
    const bool has_min = kind == K_Q4_1 || kind == K_Q5_1;
    const int off = kind == K_Q4_0 ? 8 : kind == K_Q5_0 ? 16 : 0;
    const size_t bs = q32_bytes(kind);
    __m256 acc[TMAX][TMAX];
    tile_zero(R, C, acc);
    for (int64_t b = 0; b < n / 32; b++) {
        __m256i q[TMAX], qs[TMAX];
        __m256 dw[TMAX], mw[TMAX];
        UNROLL for (int r = 0; r < R; r++) {
            float d, m = 0;
            qs[r] = _mm256_setzero_si256();
            prefetch_next_tile(w + r * ws + b * bs, R, ws, bs);
            q32_load(kind, w + r * ws + b * bs, &q[r], &qs[r], &d, &m);
            dw[r] = _mm256_set1_ps(d);
            mw[r] = _mm256_set1_ps(m);
        }
        UNROLL for (int c = 0; c < C; c++) {
            const blk_q8_32 *y = (const blk_q8_32 *)(a + c * as) + b;
            const __m256i av = loadu256(y->qs);
            const __m256 da = _mm256_set1_ps(y->d);
            const __m256i offv = lane0_epi32(-off * y->sum);
            const __m256 msum = lane0_ps(y->d * (float)y->sum);
            UNROLL for (int r = 0; r < R; r++) {
                // Q8_0: q = |w|, and the activation takes w's sign.
                __m256i p = dot_u8i8(q[r], kind == K_Q8_0 ? _mm256_sign_epi8(av, qs[r]) : av);
                if (off) p = _mm256_add_epi32(p, offv);
                __m256 t = _mm256_mul_ps(_mm256_cvtepi32_ps(p), _mm256_mul_ps(dw[r], da));
                if (has_min) t = _mm256_fmadd_ps(mw[r], msum, t);
                acc[r][c] = _mm256_add_ps(acc[r][c], t);
            }
        }
    }
    tile_store(R, C, acc, out, ldo);
}

#define q4_0_tile(R, C, ...) tile_q32(K_Q4_0, R, C, __VA_ARGS__)
#define q4_1_tile(R, C, ...) tile_q32(K_Q4_1, R, C, __VA_ARGS__)
#define q5_0_tile(R, C, ...) tile_q32(K_Q5_0, R, C, __VA_ARGS__)
#define q5_1_tile(R, C, ...) tile_q32(K_Q5_1, R, C, __VA_ARGS__)
#define q8_0_tile(R, C, ...) tile_q32(K_Q8_0, R, C, __VA_ARGS__)
DEFINE_GEMM(q4_0, 4, 4)
DEFINE_GEMM(q4_1, 4, 4)
DEFINE_GEMM(q5_0, 4, 4)
DEFINE_GEMM(q5_1, 4, 4)
DEFINE_GEMM(q8_0, 4, 4)
DEFINE_VEC_DOT_FROM_TILE(q4_0)
DEFINE_VEC_DOT_FROM_TILE(q4_1)
DEFINE_VEC_DOT_FROM_TILE(q5_0)
DEFINE_VEC_DOT_FROM_TILE(q5_1)
DEFINE_VEC_DOT_FROM_TILE(q8_0)

// Dequantization in quant.c's expressions: (q - o) * d, or q * d + m.
INLINE void to_float_q32(int kind, const void *src, float *dst, int64_t n) {
    const size_t bs = q32_bytes(kind);
    const bool has_min = kind == K_Q4_1 || kind == K_Q5_1;
    const int off = kind == K_Q4_0 ? 8 : kind == K_Q5_0 ? 16 : 0;
    for (int64_t b = 0; b < n / 32; b++) {
        __m256i q, qs = _mm256_setzero_si256();
        float d, m = 0;
        q32_load(kind, (const char *)src + b * bs, &q, &qs, &d, &m);
        const __m256 dv = _mm256_set1_ps(d), mv = _mm256_set1_ps(m);
        if (kind == K_Q8_0) dq32(qs, true, 0, dv, false, mv, dst + 32 * b);
        else dq32(q, false, off, dv, has_min, mv, dst + 32 * b);
    }
}

static void to_float_q4_0(const void *s, float *d, int64_t n) { to_float_q32(K_Q4_0, s, d, n); }
static void to_float_q4_1(const void *s, float *d, int64_t n) { to_float_q32(K_Q4_1, s, d, n); }
static void to_float_q5_0(const void *s, float *d, int64_t n) { to_float_q32(K_Q5_0, s, d, n); }
static void to_float_q5_1(const void *s, float *d, int64_t n) { to_float_q32(K_Q5_1, s, d, n); }
static void to_float_q8_0(const void *s, float *d, int64_t n) { to_float_q32(K_Q8_0, s, d, n); }

// --- K-quant helpers ---------------------------------------------------------------------------

// Q4_K/Q5_K scales: the 8 6-bit scale codes as int16 (in a 128-bit vector)
// and the 8 min codes, each repeated twice as int16, to pair with Q8_K's 16 bsums.
INLINE void k4_scales(const uint8_t s[12], __m128i *sc16, __m256i *m16) {
    uint32_t u[3];
    memcpy(u, s, 12);
    // Codes 0..3 are the low 6 bits of bytes 0..3 (scales) / 4..7 (mins);
    // codes 4..7 take their low nibbles from bytes 8..11 and their top two
    // bits from the top two bits of bytes 0..3 / 4..7.
    uint32_t sc_lo = u[0] & 0x3f3f3f3f, m_lo = u[1] & 0x3f3f3f3f;
    uint32_t sc_hi = (u[2] & 0x0f0f0f0f) | ((u[0] >> 2) & 0x30303030);
    uint32_t m_hi = ((u[2] >> 4) & 0x0f0f0f0f) | ((u[1] >> 2) & 0x30303030);
    __m128i v = _mm_setr_epi32((int)sc_lo, (int)sc_hi, (int)m_lo, (int)m_hi);
    *sc16 = _mm_cvtepu8_epi16(v);
    *m16 = _mm256_cvtepu8_epi16(_mm_unpackhi_epi8(v, v));
}

// Q3_K scales: the 16 6-bit codes minus 32 as int16 (see quant.c's unpack_q3_scales).
INLINE __m256i q3_scales(const uint8_t s[12]) {
    uint32_t u[3];
    memcpy(u, s, 12);
    uint32_t c0 = (u[0] & 0x0f0f0f0f) | ((u[2] << 4) & 0x30303030);        // codes 0..3
    uint32_t c1 = (u[1] & 0x0f0f0f0f) | ((u[2] << 2) & 0x30303030);        // codes 4..7
    uint32_t c2 = ((u[0] >> 4) & 0x0f0f0f0f) | (u[2] & 0x30303030);        // codes 8..11
    uint32_t c3 = ((u[1] >> 4) & 0x0f0f0f0f) | ((u[2] >> 2) & 0x30303030); // codes 12..15
    __m128i v = _mm_sub_epi8(_mm_setr_epi32((int)c0, (int)c1, (int)c2, (int)c3), _mm_set1_epi8(32));
    return _mm256_cvtepi8_epi16(v);
}

// For types with per-16 scales (Q2_K, Q3_K, Q6_K): the scales of the 32
// elements 32*j .. 32*j+31 of a 128-element half, as 16 int16 (8 of scale
// 2j, then 8 of scale 2j+1), from that half's 8 scales in both 128-bit lanes.
INLINE __m256i scale_pair(__m256i half_scales, int j) {
    return _mm256_shuffle_epi8(half_scales, word_bcast_ctrl(2 * j, 2 * j + 1));
}

// The 8 int16 scales of half h of 16 (lanes 0-7 for h = 0, 8-15 for h = 1)
// in both 128-bit lanes.
INLINE __m256i half_scales(__m256i sc16, int h) {
    return h ? _mm256_permute2x128_si256(sc16, sc16, 0x11) : _mm256_permute2x128_si256(sc16, sc16, 0x00);
}

// Float finish of one K block for pair (r, c): acc += cvt(isum) * (d * da)
// [- cvt(msum) * (dmin * da)].
INLINE __m256 k_finish(__m256 acc, __m256i isum, float d, float da, bool has_min, __m256i msum,
                       float dmin) {
    __m256 t = _mm256_mul_ps(_mm256_cvtepi32_ps(isum), _mm256_set1_ps(d * da));
    if (has_min) t = _mm256_fnmadd_ps(_mm256_cvtepi32_ps(msum), _mm256_set1_ps(dmin * da), t);
    return _mm256_add_ps(acc, t);
}

#define Y_K(c, b) ((const blk_q8_K *)(a + (c) * as) + (b))

// --- Q2_K -------------------------------------------------------------------------------------

// Per half h and shift s, the codes (qs[32h + l] >> 2s) & 3 are elements
// 128h + 32s + l: sub-blocks 8h + 2s and 8h + 2s + 1.
INLINE void q2_K_tile(int R, int C, int64_t n, const char *w, size_t ws, const char *a, size_t as,
                      float *out, size_t ldo) {
    const __m256i m3 = _mm256_set1_epi8(3);
    __m256 acc[TMAX][TMAX];
    tile_zero(R, C, acc);
    for (int64_t b = 0; b < n / QK_K; b++) {
        const blk_q2_K *x[TMAX];
        __m256i sc16[TMAX], m16[TMAX], isum[TMAX][TMAX];
        UNROLL for (int r = 0; r < R; r++) {
            x[r] = (const blk_q2_K *)(w + r * ws) + b;
            prefetch_next_tile(x[r], R, ws, sizeof *x[r]);
            __m128i raw = loadu128(x[r]->scales);
            sc16[r] = _mm256_cvtepu8_epi16(_mm_and_si128(raw, _mm_set1_epi8(0x0F)));
            m16[r] = _mm256_cvtepu8_epi16(_mm_and_si128(_mm_srli_epi16(raw, 4), _mm_set1_epi8(0x0F)));
            UNROLL for (int c = 0; c < C; c++) isum[r][c] = _mm256_setzero_si256();
        }
        for (int h = 0; h < 2; h++) {
            __m256i qv[TMAX], hs[TMAX];
            UNROLL for (int r = 0; r < R; r++) {
                qv[r] = loadu256(x[r]->qs + 32 * h);
                hs[r] = half_scales(sc16[r], h);
            }
            UNROLL for (int s = 0; s < 4; s++) {
                __m256i q[TMAX], sc[TMAX];
                UNROLL for (int r = 0; r < R; r++) {
                    q[r] = _mm256_and_si256(_mm256_srli_epi16(qv[r], 2 * s), m3);
                    sc[r] = scale_pair(hs[r], s);
                }
                UNROLL for (int c = 0; c < C; c++) {
                    const __m256i av = loadu256(Y_K(c, b)->qs + 128 * h + 32 * s);
                    UNROLL for (int r = 0; r < R; r++)
                        isum[r][c] = _mm256_add_epi32(isum[r][c], dot_u8i8_scaled(q[r], av, sc[r]));
                }
            }
        }
        UNROLL for (int c = 0; c < C; c++) {
            const blk_q8_K *y = Y_K(c, b);
            const __m256i bsums = loadu256(y->bsums);
            UNROLL for (int r = 0; r < R; r++)
                acc[r][c] = k_finish(acc[r][c], isum[r][c], h2f(x[r]->d), y->d, true,
                                     _mm256_madd_epi16(bsums, m16[r]), h2f(x[r]->dmin));
        }
    }
    tile_store(R, C, acc, out, ldo);
}

static void to_float_q2_K(const void *src, float *dst, int64_t n) {
    const blk_q2_K *x = src;
    const __m256i m3 = _mm256_set1_epi8(3);
    for (int64_t b = 0; b < n / QK_K; b++) {
        float d = h2f(x[b].d), dmin = h2f(x[b].dmin);
        float *y = dst + b * QK_K;
        for (int h = 0; h < 2; h++) {
            __m256i qv = loadu256(x[b].qs + 32 * h);
            for (int s = 0; s < 4; s++) {
                __m256i q = _mm256_and_si256(_mm256_srli_epi16(qv, 2 * s), m3);
                __m128i half[2] = {_mm256_castsi256_si128(q), _mm256_extracti128_si256(q, 1)};
                for (int g = 0; g < 2; g++) { // 16 elements of sub-block j
                    int j = 8 * h + 2 * s + g;
                    __m256 dl = _mm256_set1_ps(d * (float)(x[b].scales[j] & 0xF));
                    __m256 ml = _mm256_set1_ps(dmin * (float)(x[b].scales[j] >> 4));
                    float *yj = y + 16 * j;
                    __m256 f0 = _mm256_cvtepi32_ps(_mm256_cvtepu8_epi32(half[g]));
                    __m256 f1 = _mm256_cvtepi32_ps(_mm256_cvtepu8_epi32(_mm_srli_si128(half[g], 8)));
                    _mm256_storeu_ps(yj, _mm256_sub_ps(_mm256_mul_ps(dl, f0), ml));
                    _mm256_storeu_ps(yj + 8, _mm256_sub_ps(_mm256_mul_ps(dl, f1), ml));
                }
            }
        }
    }
}

// --- Q3_K -------------------------------------------------------------------------------------

// Codes as Q2_K plus the third bit: bit (4h + s) of hmask[l], so per 32-element
// chunk the mask is shifted right once. The stored code is u = low | bit << 2
// in 0..7 and the value u - 4, so sum sc*(u - 4)*a = sum sc*u*a - 4*sum sc*bsum.
INLINE void q3_K_tile(int R, int C, int64_t n, const char *w, size_t ws, const char *a, size_t as,
                      float *out, size_t ldo) {
    const __m256i m3 = _mm256_set1_epi8(3), m1 = _mm256_set1_epi8(1);
    __m256 acc[TMAX][TMAX];
    tile_zero(R, C, acc);
    for (int64_t b = 0; b < n / QK_K; b++) {
        const blk_q3_K *x[TMAX];
        __m256i sc16[TMAX], hm[TMAX], isum[TMAX][TMAX];
        UNROLL for (int r = 0; r < R; r++) {
            x[r] = (const blk_q3_K *)(w + r * ws) + b;
            prefetch_next_tile(x[r], R, ws, sizeof *x[r]);
            sc16[r] = q3_scales(x[r]->scales);
            hm[r] = loadu256(x[r]->hmask);
            UNROLL for (int c = 0; c < C; c++) isum[r][c] = _mm256_setzero_si256();
        }
        for (int h = 0; h < 2; h++) {
            __m256i qv[TMAX], hs[TMAX];
            UNROLL for (int r = 0; r < R; r++) {
                qv[r] = loadu256(x[r]->qs + 32 * h);
                hs[r] = half_scales(sc16[r], h);
            }
            UNROLL for (int s = 0; s < 4; s++) {
                __m256i q[TMAX], sc[TMAX];
                UNROLL for (int r = 0; r < R; r++) {
                    // After 4h + s shifts bit 0 of each byte is that byte's bit 4h + s
                    // (bits shifted in from the neighbour byte only reach bit 7 and up).
                    __m256i hb = _mm256_slli_epi16(_mm256_and_si256(hm[r], m1), 2);
                    hm[r] = _mm256_srli_epi16(hm[r], 1);
                    q[r] = _mm256_or_si256(_mm256_and_si256(_mm256_srli_epi16(qv[r], 2 * s), m3), hb);
                    sc[r] = scale_pair(hs[r], s);
                }
                UNROLL for (int c = 0; c < C; c++) {
                    const __m256i av = loadu256(Y_K(c, b)->qs + 128 * h + 32 * s);
                    UNROLL for (int r = 0; r < R; r++)
                        isum[r][c] = _mm256_add_epi32(isum[r][c], dot_u8i8_scaled(q[r], av, sc[r]));
                }
            }
        }
        UNROLL for (int c = 0; c < C; c++) {
            const blk_q8_K *y = Y_K(c, b);
            const __m256i bsums = loadu256(y->bsums);
            UNROLL for (int r = 0; r < R; r++) {
                __m256i offs = _mm256_slli_epi32(_mm256_madd_epi16(bsums, sc16[r]), 2);
                acc[r][c] = k_finish(acc[r][c], _mm256_sub_epi32(isum[r][c], offs), h2f(x[r]->d), y->d,
                                     false, offs, 0);
            }
        }
    }
    tile_store(R, C, acc, out, ldo);
}

static void to_float_q3_K(const void *src, float *dst, int64_t n) {
    const blk_q3_K *x = src;
    const __m256i m3 = _mm256_set1_epi8(3), m1 = _mm256_set1_epi8(1), four = _mm256_set1_epi8(4);
    for (int64_t b = 0; b < n / QK_K; b++) {
        float d = h2f(x[b].d);
        int16_t sc[16];
        _mm256_storeu_si256((__m256i *)sc, q3_scales(x[b].scales));
        __m256i hm = loadu256(x[b].hmask);
        float *y = dst + b * QK_K;
        for (int h = 0; h < 2; h++) {
            __m256i qv = loadu256(x[b].qs + 32 * h);
            for (int s = 0; s < 4; s++) {
                __m256i hb = _mm256_slli_epi16(_mm256_and_si256(hm, m1), 2);
                hm = _mm256_srli_epi16(hm, 1);
                __m256i low = _mm256_and_si256(_mm256_srli_epi16(qv, 2 * s), m3);
                __m256i q = _mm256_sub_epi8(_mm256_or_si256(low, hb), four);
                __m128i half[2] = {_mm256_castsi256_si128(q), _mm256_extracti128_si256(q, 1)};
                for (int g = 0; g < 2; g++) {
                    int j = 8 * h + 2 * s + g;
                    __m256 dl = _mm256_set1_ps(d * (float)sc[j]);
                    dq16_i8(half[g], dl, y + 16 * j);
                }
            }
        }
    }
}

// --- Q4_K and Q5_K -----------------------------------------------------------------------------

// Per 64-element group g: qs[32g + l] low nibbles are sub-block 2g, high
// nibbles sub-block 2g + 1; Q5_K's fifth bits are bits 2g / 2g + 1 of qh[l]
// (shifting qh right by 2 per group keeps them at bits 0 / 1 of each byte).
INLINE void tile_k45(bool five, int R, int C, int64_t n, const char *w, size_t ws, const char *a,
                     size_t as, float *out, size_t ldo) {
    const __m256i m4 = _mm256_set1_epi8(0x0F), bit4 = _mm256_set1_epi8(0x10);
    const size_t bs = five ? sizeof(blk_q5_K) : sizeof(blk_q4_K);
    __m256 acc[TMAX][TMAX];
    tile_zero(R, C, acc);
    for (int64_t b = 0; b < n / QK_K; b++) {
        const char *xb[TMAX];
        const uint8_t *qs[TMAX];
        __m256i scb[TMAX], m16[TMAX], qh[TMAX], isum[TMAX][TMAX];
        UNROLL for (int r = 0; r < R; r++) {
            xb[r] = w + r * ws + b * bs;
            prefetch_next_tile(xb[r], R, ws, bs);
            __m128i sc16;
            if (five) {
                const blk_q5_K *x = (const blk_q5_K *)xb[r];
                k4_scales(x->scales, &sc16, &m16[r]);
                qh[r] = loadu256(x->qh);
                qs[r] = x->qs;
            } else {
                const blk_q4_K *x = (const blk_q4_K *)xb[r];
                k4_scales(x->scales, &sc16, &m16[r]);
                qs[r] = x->qs;
            }
            scb[r] = _mm256_broadcastsi128_si256(sc16);
            UNROLL for (int c = 0; c < C; c++) isum[r][c] = _mm256_setzero_si256();
        }
        for (int g = 0; g < 4; g++) {
            __m256i lo[TMAX], hi[TMAX], slo[TMAX], shi[TMAX];
            UNROLL for (int r = 0; r < R; r++) {
                __m256i raw = loadu256(qs[r] + 32 * g);
                lo[r] = _mm256_and_si256(raw, m4);
                hi[r] = _mm256_and_si256(_mm256_srli_epi16(raw, 4), m4);
                if (five) {
                    lo[r] = _mm256_or_si256(lo[r], _mm256_and_si256(_mm256_slli_epi16(qh[r], 4), bit4));
                    hi[r] = _mm256_or_si256(hi[r], _mm256_and_si256(_mm256_slli_epi16(qh[r], 3), bit4));
                    qh[r] = _mm256_srli_epi16(qh[r], 2);
                }
                slo[r] = _mm256_shuffle_epi8(scb[r], word_bcast_ctrl(2 * g, 2 * g));
                shi[r] = _mm256_shuffle_epi8(scb[r], word_bcast_ctrl(2 * g + 1, 2 * g + 1));
            }
            UNROLL for (int c = 0; c < C; c++) {
                const int8_t *yq = Y_K(c, b)->qs + 64 * g;
                const __m256i a0 = loadu256(yq), a1 = loadu256(yq + 32);
                UNROLL for (int r = 0; r < R; r++) {
                    __m256i p0 = dot_u8i8_scaled(lo[r], a0, slo[r]);
                    __m256i p1 = dot_u8i8_scaled(hi[r], a1, shi[r]);
                    isum[r][c] = _mm256_add_epi32(isum[r][c], _mm256_add_epi32(p0, p1));
                }
            }
        }
        UNROLL for (int c = 0; c < C; c++) {
            const blk_q8_K *y = Y_K(c, b);
            const __m256i bsums = loadu256(y->bsums);
            UNROLL for (int r = 0; r < R; r++) {
                // d and dmin are the first two halves of both block types.
                const tt_half *dd = (const tt_half *)xb[r];
                acc[r][c] = k_finish(acc[r][c], isum[r][c], h2f(dd[0]), y->d, true,
                                     _mm256_madd_epi16(bsums, m16[r]), h2f(dd[1]));
            }
        }
    }
    tile_store(R, C, acc, out, ldo);
}

#define q4_K_tile(R, C, ...) tile_k45(false, R, C, __VA_ARGS__)
#define q5_K_tile(R, C, ...) tile_k45(true, R, C, __VA_ARGS__)

INLINE void to_float_k45(bool five, const void *src, float *dst, int64_t n) {
    const __m256i m4 = _mm256_set1_epi8(0x0F), bit4 = _mm256_set1_epi8(0x10);
    const size_t bs = five ? sizeof(blk_q5_K) : sizeof(blk_q4_K);
    for (int64_t b = 0; b < n / QK_K; b++) {
        const char *xb = (const char *)src + b * bs;
        const tt_half *dd = (const tt_half *)xb;
        const uint8_t *scales = five ? ((const blk_q5_K *)xb)->scales : ((const blk_q4_K *)xb)->scales;
        const uint8_t *qs = five ? ((const blk_q5_K *)xb)->qs : ((const blk_q4_K *)xb)->qs;
        __m256i qh = five ? loadu256(((const blk_q5_K *)xb)->qh) : _mm256_setzero_si256();
        float d = h2f(dd[0]), dmin = h2f(dd[1]);
        __m128i sc16;
        __m256i m16;
        k4_scales(scales, &sc16, &m16);
        int16_t sc[8], m[16];
        _mm_storeu_si128((__m128i *)sc, sc16);
        _mm256_storeu_si256((__m256i *)m, m16); // each min twice
        for (int g = 0; g < 4; g++) {
            __m256i raw = loadu256(qs + 32 * g);
            __m256i q[2] = {_mm256_and_si256(raw, m4), _mm256_and_si256(_mm256_srli_epi16(raw, 4), m4)};
            if (five) {
                q[0] = _mm256_or_si256(q[0], _mm256_and_si256(_mm256_slli_epi16(qh, 4), bit4));
                q[1] = _mm256_or_si256(q[1], _mm256_and_si256(_mm256_slli_epi16(qh, 3), bit4));
                qh = _mm256_srli_epi16(qh, 2);
            }
            for (int k = 0; k < 2; k++) {
                int j = 2 * g + k;
                __m256 dl = _mm256_set1_ps(d * (float)sc[j]);
                __m256 ml = _mm256_set1_ps(dmin * (float)m[2 * j]);
                __m128i half[2] = {_mm256_castsi256_si128(q[k]), _mm256_extracti128_si256(q[k], 1)};
                float *yj = dst + b * QK_K + 32 * j;
                for (int e = 0; e < 4; e++) {
                    __m128i src8 = (e & 1) ? _mm_srli_si128(half[e >> 1], 8) : half[e >> 1];
                    __m256 f = _mm256_cvtepi32_ps(_mm256_cvtepu8_epi32(src8));
                    _mm256_storeu_ps(yj + 8 * e, _mm256_sub_ps(_mm256_mul_ps(dl, f), ml));
                }
            }
        }
    }
}

static void to_float_q4_K(const void *s, float *d, int64_t n) { to_float_k45(false, s, d, n); }
static void to_float_q5_K(const void *s, float *d, int64_t n) { to_float_k45(true, s, d, n); }

// --- Q6_K -------------------------------------------------------------------------------------

// Per half h, chunk s (elements 128h + 32s + l): low 4 bits from ql[64h + l +
// 32(s & 1)] (low nibble for s < 2, high for s >= 2), high 2 bits = bits 2s,
// 2s+1 of qh[32h + l]. Codes u in 0..63, value u - 32, so
// sum sc*(u - 32)*a = sum sc*u*a - 32*sum sc*bsum.
INLINE __m256i q6_codes(__m256i ql0, __m256i ql1, __m256i qh, int s) {
    const __m256i m4 = _mm256_set1_epi8(0x0F), m30 = _mm256_set1_epi8(0x30);
    __m256i lo, hi;
    switch (s) {
    case 0:
        lo = _mm256_and_si256(ql0, m4);
        hi = _mm256_slli_epi16(qh, 4);
        break;
    case 1:
        lo = _mm256_and_si256(ql1, m4);
        hi = _mm256_slli_epi16(qh, 2);
        break;
    case 2:
        lo = _mm256_and_si256(_mm256_srli_epi16(ql0, 4), m4);
        hi = qh;
        break;
    default:
        lo = _mm256_and_si256(_mm256_srli_epi16(ql1, 4), m4);
        hi = _mm256_srli_epi16(qh, 2);
        break;
    }
    // The 16-bit shifts move bits across bytes only outside 0x30 of each byte.
    return _mm256_or_si256(lo, _mm256_and_si256(hi, m30));
}

INLINE void q6_K_tile(int R, int C, int64_t n, const char *w, size_t ws, const char *a, size_t as,
                      float *out, size_t ldo) {
    __m256 acc[TMAX][TMAX];
    tile_zero(R, C, acc);
    for (int64_t b = 0; b < n / QK_K; b++) {
        const blk_q6_K *x[TMAX];
        __m256i sc16[TMAX], isum[TMAX][TMAX];
        UNROLL for (int r = 0; r < R; r++) {
            x[r] = (const blk_q6_K *)(w + r * ws) + b;
            prefetch_next_tile(x[r], R, ws, sizeof *x[r]);
            sc16[r] = _mm256_cvtepi8_epi16(loadu128(x[r]->scales));
            UNROLL for (int c = 0; c < C; c++) isum[r][c] = _mm256_setzero_si256();
        }
        for (int h = 0; h < 2; h++) {
            __m256i ql0[TMAX], ql1[TMAX], qh[TMAX], hs[TMAX];
            UNROLL for (int r = 0; r < R; r++) {
                ql0[r] = loadu256(x[r]->ql + 64 * h);
                ql1[r] = loadu256(x[r]->ql + 64 * h + 32);
                qh[r] = loadu256(x[r]->qh + 32 * h);
                hs[r] = half_scales(sc16[r], h);
            }
            UNROLL for (int s = 0; s < 4; s++) {
                __m256i q[TMAX], sc[TMAX];
                UNROLL for (int r = 0; r < R; r++) {
                    q[r] = q6_codes(ql0[r], ql1[r], qh[r], s);
                    sc[r] = scale_pair(hs[r], s);
                }
                UNROLL for (int c = 0; c < C; c++) {
                    const __m256i av = loadu256(Y_K(c, b)->qs + 128 * h + 32 * s);
                    UNROLL for (int r = 0; r < R; r++)
                        isum[r][c] = _mm256_add_epi32(isum[r][c], dot_u8i8_scaled(q[r], av, sc[r]));
                }
            }
        }
        UNROLL for (int c = 0; c < C; c++) {
            const blk_q8_K *y = Y_K(c, b);
            const __m256i bsums = loadu256(y->bsums);
            UNROLL for (int r = 0; r < R; r++) {
                __m256i offs = _mm256_slli_epi32(_mm256_madd_epi16(bsums, sc16[r]), 5);
                acc[r][c] = k_finish(acc[r][c], _mm256_sub_epi32(isum[r][c], offs), h2f(x[r]->d), y->d,
                                     false, offs, 0);
            }
        }
    }
    tile_store(R, C, acc, out, ldo);
}

static void to_float_q6_K(const void *src, float *dst, int64_t n) {
    const blk_q6_K *x = src;
    const __m256i k32 = _mm256_set1_epi8(32);
    for (int64_t b = 0; b < n / QK_K; b++) {
        float d = h2f(x[b].d);
        float *y = dst + b * QK_K;
        for (int h = 0; h < 2; h++) {
            __m256i ql0 = loadu256(x[b].ql + 64 * h), ql1 = loadu256(x[b].ql + 64 * h + 32);
            __m256i qh = loadu256(x[b].qh + 32 * h);
            for (int s = 0; s < 4; s++) {
                __m256i q = _mm256_sub_epi8(q6_codes(ql0, ql1, qh, s), k32);
                __m128i half[2] = {_mm256_castsi256_si128(q), _mm256_extracti128_si256(q, 1)};
                for (int g = 0; g < 2; g++) {
                    int j = 8 * h + 2 * s + g;
                    __m256 dl = _mm256_set1_ps(d * (float)x[b].scales[j]);
                    dq16_i8(half[g], dl, y + 16 * j);
                }
            }
        }
    }
}

// --- tables -------------------------------------------------------------------------------------

DEFINE_GEMM(q2_K, 1, 8)
DEFINE_GEMM(q3_K, 1, 8)
DEFINE_GEMM(q4_K, 1, 8)
DEFINE_GEMM(q5_K, 1, 8)
DEFINE_GEMM(q6_K, 1, 8)
DEFINE_VEC_DOT_FROM_TILE(q2_K)
DEFINE_VEC_DOT_FROM_TILE(q3_K)
DEFINE_VEC_DOT_FROM_TILE(q4_K)
DEFINE_VEC_DOT_FROM_TILE(q5_K)
DEFINE_VEC_DOT_FROM_TILE(q6_K)

void kern_fill_avx2(kern_ops *k) {
    static const struct {
        tt_type t;
        tt_vec_dot_fn dot;
        kern_gemm_fn gemm;
        tt_to_float_fn to_float; // NULL: keep the level below's
    } ops[] = {
        {TT_F32, vec_dot_f32, gemm_f32, NULL},
        {TT_F16, vec_dot_f16, gemm_f16, to_float_f16},
        {TT_BF16, vec_dot_bf16, gemm_bf16, to_float_bf16},
        {TT_Q4_0, vec_dot_q4_0, gemm_q4_0, to_float_q4_0},
        {TT_Q4_1, vec_dot_q4_1, gemm_q4_1, to_float_q4_1},
        {TT_Q5_0, vec_dot_q5_0, gemm_q5_0, to_float_q5_0},
        {TT_Q5_1, vec_dot_q5_1, gemm_q5_1, to_float_q5_1},
        {TT_Q8_0, vec_dot_q8_0, gemm_q8_0, to_float_q8_0},
        {TT_Q2_K, vec_dot_q2_K, gemm_q2_K, to_float_q2_K},
        {TT_Q3_K, vec_dot_q3_K, gemm_q3_K, to_float_q3_K},
        {TT_Q4_K, vec_dot_q4_K, gemm_q4_K, to_float_q4_K},
        {TT_Q5_K, vec_dot_q5_K, gemm_q5_K, to_float_q5_K},
        {TT_Q6_K, vec_dot_q6_K, gemm_q6_K, to_float_q6_K},
    };
    for (size_t i = 0; i < sizeof ops / sizeof ops[0]; i++) {
        k->vec_dot[ops[i].t] = ops[i].dot;
        k->gemm[ops[i].t] = ops[i].gemm;
        if (ops[i].to_float) k->to_float[ops[i].t] = ops[i].to_float;
    }
    k->quantize_act[TT_ACT_Q8_32] = quantize_q8_32;
    k->quantize_act[TT_ACT_Q8_K] = quantize_q8_K;
    k->dot_f32 = dot_f32;
    k->dot_f16_f32 = dot_f16_f32;
    k->axpy_f16 = axpy_f16;
    k->f32_to_f16 = f32_to_f16;
}
