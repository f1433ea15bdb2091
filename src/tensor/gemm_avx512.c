// gemm_avx512.c — AVX-512 gemm tiles: out[c*ldo + r] = dot(w row r, act row c).
//
// Prompt processing multiplies every weight row by hundreds of activation
// rows, so these are bound by the multiply pipes, not memory. On Zen 4 one
// zmm vpdpbusd (64 int8 multiply-adds) issues per cycle and vpmulld, FMA
// and vpdpwssd compete for the same slot; the layout below spends about 8
// of every 10 multiply-pipe slots on vpdpbusd for the 32-element types (per
// block and tile column: 8 vpdpbusd, then one multiply for d*da and one for
// the conversion's product; the add runs on another pipe).
//
// Quantized types: panels. A panel is 16 weight rows unpacked to one
// unsigned byte per element and transposed so that zmm lane r holds 4
// consecutive codes of row r:
//     q[kstep][16 rows] dwords, kstep = element / 4
// (one 16x16 dword transpose per 64 elements of 16 rows), followed per block
// by the rows' scales as float/int32 vectors (lane r = row r). A multiply is
//     acc(16 rows, column c) += vpdpbusd(q[kstep], broadcast dword of act c)
// so no horizontal sums are ever needed and 16 outputs leave in one store
// (out is column-major in r). A micro-tile is 2 panels (32 rows) x C columns
// of accumulators in registers; per k-step it loads 2 panel vectors and C
// activation dwords for 2C vpdpbusd. Panels are rebuilt for each call (in a
// stack buffer sized for L1, a slab of blocks at a time): the weights stay
// in their file layout, and the unpack+transpose is amortized over all nc
// columns of the call.
//
// Per block (32-element types) or super-block (K-quants), the exact int32
// sum of each (r, c) gets the offset/min/scale treatment of the canonical
// arithmetic described in dot_avx512.c, with identical float operations, so
// every output equals the vec_dot of its row and column bit for bit,
// whatever tile or edge computed it. The float accumulators live in
// registers for one 8-block group (32-element types: the group sum is then
// added into out[]) or one slab of super-blocks (K-quants: stored to out[]
// and reloaded for the next slab; a store and a reload are exact).
//   - offsets (Q4_0 8, Q5_0 16, Q8_0 128 after xor 0x80): sum << log2(o)
//     subtracted from the int32 sums;
//   - affine 32-element types: + m * fl(da * sum) by FMA;
//   - K-quants: the sub-block sum (8 or 4 k-steps) times the row's scale
//     (vpmulld), then the bsums term by vpdpwssd of int16 pairs packed per
//     row ((m_s, m_s) for mins; (-o*sc_2t, -o*sc_2t+1) for Q3_K/Q6_K offsets)
//     against broadcast bsums dwords.
//
// Float types (F32, F16, BF16): no panels; a 4 rows x 6 columns tile of zmm
// accumulators over the shared k index (lane j = elements j mod 16), in the
// same order as their vec_dot.
//
// With fewer columns than Q32_MIN_COLS / K_MIN_COLS the panel would not pay
// for itself (measured: vec_dot per output is faster below 2 columns for
// the 32-element types, below 5 for the K-quants, whose panels cost more to
// build); such calls run vec_dot (identical results by construction).
#include <stdalign.h>

#include "tensor/simd_avx512.h"

#define Q32_MIN_COLS 2
#define K_MIN_COLS 5

// --- type descriptions -----------------------------------------------------------------

// 32-element types.
enum { Q4_0, Q4_1, Q5_0, Q5_1, Q8_0 };
#define Q32_AFFINE(t) ((t) == Q4_1 || (t) == Q5_1)
#define Q32_SHIFT(t) ((t) == Q4_0 ? 3 : (t) == Q5_0 ? 4 : (t) == Q8_0 ? 7 : 0) // log2 of the offset
#define Q32_BYTES(t) ((t) == Q4_0 ? 18 : (t) == Q4_1 ? 20 : (t) == Q5_0 ? 22 : (t) == Q5_1 ? 24 : 34)
// Panel block: codes (8 ksteps x 16 rows), d[16], m[16] (affine only).
#define Q32_PANEL_BLOCK(t) (512 + 64 + (Q32_AFFINE(t) ? 64 : 0))
// Blocks per slab, a multiple of the 8-block groups: 2 panels x 16 x 640 B =
// 20 KB of stack, in L1 with the activations it meets. (8..64 measure alike.)
#ifndef Q32_SLAB
#define Q32_SLAB 16
#endif

INLINE __m256i q32_codes(int t, const uint8_t *blk) {
    switch (t) {
    case Q4_0: return k512_nib32(blk + 2);
    case Q4_1: return k512_nib32(blk + 4);
    case Q5_0: return k512_nib32_h(blk + 6, blk + 2);
    case Q5_1: return k512_nib32_h(blk + 8, blk + 4);
    default: return k512_q8_32((const int8_t *)blk + 2);
    }
}

// K-quants.
enum { Q2_K, Q3_K, Q4_K, Q5_K, Q6_K };
#define K_SUB16(t) ((t) == Q2_K || (t) == Q3_K || (t) == Q6_K) // sub-blocks of 16 (else 32)
#define K_NSB(t) (K_SUB16(t) ? 16 : 8)
#define K_KPS(t) (K_SUB16(t) ? 4 : 8) // k-steps per sub-block
#define K_MIN(t) ((t) == Q2_K || (t) == Q4_K || (t) == Q5_K)
#define K_BYTES(t) ((t) == Q2_K ? 84 : (t) == Q3_K ? 110 : (t) == Q4_K ? 144 : (t) == Q5_K ? 176 : 210)
// Panel super-block: codes (64 ksteps x 16 rows), sc[NSB][16] int32,
// pairs[8][16] (two int16), d[16], dmin[16].
#define K_OFF_SC 4096
#define K_OFF_PR(t) (K_OFF_SC + 64 * K_NSB(t))
#define K_OFF_D(t) (K_OFF_PR(t) + 512)
#define K_PANEL_BLOCK(t) (K_OFF_D(t) + 128)
// Super-blocks per slab: 2 panels x 2 x 5760 B = 23 KB of stack. (1..8 measure alike.)
#ifndef K_SLAB
#define K_SLAB 2
#endif

INLINE __m512i k_chunk(int t, const uint8_t *blk, int c) {
    switch (t) {
    case Q2_K: return k512_q2_chunk(blk + 16, c);
    case Q3_K: return k512_q3_chunk(blk + 32, k512_bcast256(blk), c);
    case Q4_K: return k512_q4k_chunk(blk + 16, c);
    case Q5_K: return k512_q5k_chunk(blk + 48, k512_bcast256(blk + 16), c);
    default: return k512_q6_chunk(blk, blk + 128, c);
    }
}

// One row's scales of one super-block into lane r of the panel block.
INLINE void k_scales(int t, const uint8_t *blk, uint8_t *pb, int r) {
    int32_t *sc = (int32_t *)(pb + K_OFF_SC) + r;
    uint32_t *pr = (uint32_t *)(pb + K_OFF_PR(t)) + r;
    float *d = (float *)(pb + K_OFF_D(t)) + r;
    int16_t s16[16], o16[16];
    switch (t) {
    case Q2_K:
        UNROLL
        for (int s = 0; s < 16; s++) {
            s16[s] = blk[s] & 0xF;
            o16[s] = blk[s] >> 4;
        }
        d[0] = k512_half(blk + 80);
        d[16] = k512_half(blk + 82);
        break;
    case Q3_K: {
        uint8_t codes[16];
        _mm_storeu_si128((__m128i *)codes, k512_q3_scales(blk + 96));
        UNROLL
        for (int s = 0; s < 16; s++) {
            s16[s] = (int16_t)(codes[s] - 32);
            o16[s] = (int16_t)(-4 * s16[s]);
        }
        d[0] = k512_half(blk + 108);
        break;
    }
    case Q4_K:
    case Q5_K: {
        uint64_t sc8, mn8;
        k512_k4_scales(blk + 4, &sc8, &mn8);
        UNROLL
        for (int s = 0; s < 8; s++) {
            s16[s] = (int16_t)((sc8 >> (8 * s)) & 0xFF);
            o16[2 * s] = o16[2 * s + 1] = (int16_t)((mn8 >> (8 * s)) & 0xFF); // (m_s, m_s)
        }
        d[0] = k512_half(blk);
        d[16] = k512_half(blk + 2);
        break;
    }
    default:
        UNROLL
        for (int s = 0; s < 16; s++) {
            s16[s] = (int8_t)blk[192 + s];
            o16[s] = (int16_t)(-32 * s16[s]);
        }
        d[0] = k512_half(blk + 208);
        break;
    }
    for (int s = 0; s < K_NSB(t); s++) sc[16 * s] = s16[s];
    UNROLL
    for (int p = 0; p < 8; p++) pr[16 * p] = (uint16_t)o16[2 * p] | (uint32_t)(uint16_t)o16[2 * p + 1] << 16;
}

// --- panel packing ----------------------------------------------------------------------

// Rows rows[0..15] (pointers at block kb0), nbk blocks -> panel dst.
INLINE void pack_q32(int t, const uint8_t *const rows[16], int nbk, uint8_t *dst) {
    const int bs = Q32_BYTES(t), pbk = Q32_PANEL_BLOCK(t);
    for (int b = 0; b < nbk; b += 2) {
        const int two = b + 1 < nbk;
        __m512i z[16];
        UNROLL
        for (int r = 0; r < 16; r++) {
            const uint8_t *x = rows[r] + (size_t)b * bs;
            __m256i hi = two ? q32_codes(t, x + bs) : _mm256_setzero_si256();
            z[r] = _mm512_inserti64x4(_mm512_castsi256_si512(q32_codes(t, x)), hi, 1);
        }
        k512_transpose16(z);
        uint8_t *p0 = dst + (size_t)b * pbk, *p1 = p0 + pbk;
        UNROLL
        for (int j = 0; j < 8; j++) _mm512_store_si512(p0 + 64 * j, z[j]);
        if (two)
            UNROLL
            for (int j = 0; j < 8; j++) _mm512_store_si512(p1 + 64 * j, z[8 + j]);
        for (int k = 0; k <= two; k++) {
            float *d = (float *)(p0 + (size_t)k * pbk + 512);
            UNROLL
            for (int r = 0; r < 16; r++) {
                const uint8_t *x = rows[r] + (size_t)(b + k) * bs;
                d[r] = k512_half(x);
                if (Q32_AFFINE(t)) d[16 + r] = k512_half(x + 2);
            }
        }
    }
}

INLINE void pack_k(int t, const uint8_t *const rows[16], int nbk, uint8_t *dst) {
    const int bs = K_BYTES(t), pbk = K_PANEL_BLOCK(t);
    for (int b = 0; b < nbk; b++) {
        uint8_t *pb = dst + (size_t)b * pbk;
        UNROLL
        for (int c = 0; c < 4; c++) {
            __m512i z[16];
            UNROLL
            for (int r = 0; r < 16; r++) z[r] = k_chunk(t, rows[r] + (size_t)b * bs, c);
            k512_transpose16(z);
            UNROLL
            for (int j = 0; j < 16; j++) _mm512_store_si512(pb + 64 * (16 * c + j), z[j]);
        }
        UNROLL
        for (int r = 0; r < 16; r++) k_scales(t, rows[r] + (size_t)b * bs, pb, r);
    }
}

// --- micro-tiles --------------------------------------------------------------------------

INLINE __m512i bcast_dword(const void *p) { return _mm512_set1_epi32((int)k512_load_u32(p)); }

// Loads (or zeroes, on the first slab) the float accumulators of RG panels x C columns.
#define TILE_LOAD_ACC(RG, C)                                                                   \
    __m512 facc[2][8];                                                                          \
    UNROLL                                                                                      \
    for (int g = 0; g < RG; g++)                                                                \
        UNROLL                                                                                  \
        for (int c = 0; c < C; c++)                                                             \
            facc[g][c] = first ? _mm512_setzero_ps() : _mm512_maskz_loadu_ps(rmask[g], out + c * ldo + 16 * g);
#define TILE_STORE_ACC(RG, C)                                                                  \
    UNROLL                                                                                      \
    for (int g = 0; g < RG; g++)                                                                \
        UNROLL                                                                                  \
        for (int c = 0; c < C; c++) _mm512_mask_storeu_ps(out + c * ldo + 16 * g, rmask[g], facc[g][c]);

// 32-element types: RG panels (pstride bytes apart) x C columns, nbk blocks
// starting at a multiple of 8 (first: the slab holds block 0). Each group of
// 8 blocks is summed from 0 in registers and then added into out.
INLINE void tile_q32(int t, int RG, int C, const uint8_t *panel, size_t pstride, int nbk,
                     const blk_q8_32 *const act[], float *out, size_t ldo, const __mmask16 rmask[2], int first) {
    const int pbk = Q32_PANEL_BLOCK(t), sh = Q32_SHIFT(t);
    for (int b0 = 0; b0 < nbk; b0 += 8) {
        const int b1 = nbk - b0 < 8 ? nbk : b0 + 8;
        __m512 facc[2][8];
        UNROLL
        for (int g = 0; g < RG; g++)
            UNROLL
            for (int c = 0; c < C; c++) facc[g][c] = _mm512_setzero_ps();
        for (int b = b0; b < b1; b++) {
            const uint8_t *pb = panel + (size_t)b * pbk;
            __m512i acc[2][8];
            UNROLL
            for (int g = 0; g < RG; g++)
                UNROLL
                for (int c = 0; c < C; c++) acc[g][c] = _mm512_setzero_si512();
            UNROLL
            for (int j = 0; j < 8; j++) {
                __m512i w[2];
                UNROLL
                for (int g = 0; g < RG; g++) w[g] = _mm512_load_si512(pb + g * pstride + 64 * j);
                UNROLL
                for (int c = 0; c < C; c++) {
                    const __m512i av = bcast_dword(act[c][b].qs + 4 * j);
                    UNROLL
                    for (int g = 0; g < RG; g++) acc[g][c] = _mm512_dpbusd_epi32(acc[g][c], w[g], av);
                }
            }
            UNROLL
            for (int c = 0; c < C; c++) {
                const blk_q8_32 *y = &act[c][b];
                const __m512 da = _mm512_set1_ps(y->d);
                const __m512i corr = _mm512_slli_epi32(_mm512_set1_epi32(y->sum), sh);
                const __m512 tm = _mm512_set1_ps(y->d * (float)y->sum);
                UNROLL
                for (int g = 0; g < RG; g++) {
                    const uint8_t *pg = pb + g * pstride;
                    __m512i isum = sh ? _mm512_sub_epi32(acc[g][c], corr) : acc[g][c];
                    __m512 sd = _mm512_mul_ps(_mm512_load_ps((const float *)(pg + 512)), da);
                    __m512 p = _mm512_mul_ps(_mm512_cvtepi32_ps(isum), sd);
                    if (Q32_AFFINE(t)) p = _mm512_fmadd_ps(_mm512_load_ps((const float *)(pg + 576)), tm, p);
                    facc[g][c] = _mm512_add_ps(facc[g][c], p);
                }
            }
        }
        const int zero = first && b0 == 0;
        UNROLL
        for (int g = 0; g < RG; g++)
            UNROLL
            for (int c = 0; c < C; c++) {
                float *o = out + c * ldo + 16 * g;
                __m512 prev = zero ? _mm512_setzero_ps() : _mm512_maskz_loadu_ps(rmask[g], o);
                _mm512_mask_storeu_ps(o, rmask[g], _mm512_add_ps(prev, facc[g][c]));
            }
    }
}

// K-quants: RG panels x C columns, nbk super-blocks.
INLINE void tile_k(int t, int RG, int C, const uint8_t *panel, size_t pstride, int nbk,
                   const blk_q8_K *const act[], float *out, size_t ldo, const __mmask16 rmask[2], int first) {
    const int pbk = K_PANEL_BLOCK(t), nsb = K_NSB(t), kps = K_KPS(t);
    TILE_LOAD_ACC(RG, C)
    for (int b = 0; b < nbk; b++) {
        const uint8_t *pb = panel + (size_t)b * pbk;
        __m512i acc[2][8], tmp[2][8];
        UNROLL
        for (int g = 0; g < RG; g++)
            UNROLL
            for (int c = 0; c < C; c++) acc[g][c] = _mm512_setzero_si512();
        UNROLL
        for (int s = 0; s < nsb; s++) {
            UNROLL
            for (int g = 0; g < RG; g++)
                UNROLL
                for (int c = 0; c < C; c++) tmp[g][c] = _mm512_setzero_si512();
            UNROLL
            for (int j = s * kps; j < (s + 1) * kps; j++) {
                __m512i w[2];
                UNROLL
                for (int g = 0; g < RG; g++) w[g] = _mm512_load_si512(pb + g * pstride + 64 * j);
                UNROLL
                for (int c = 0; c < C; c++) {
                    const __m512i av = bcast_dword(act[c][b].qs + 4 * j);
                    UNROLL
                    for (int g = 0; g < RG; g++) tmp[g][c] = _mm512_dpbusd_epi32(tmp[g][c], w[g], av);
                }
            }
            UNROLL
            for (int g = 0; g < RG; g++) {
                const __m512i sc = _mm512_load_si512(pb + g * pstride + K_OFF_SC + 64 * s);
                UNROLL
                for (int c = 0; c < C; c++) acc[g][c] = _mm512_add_epi32(acc[g][c], _mm512_mullo_epi32(tmp[g][c], sc));
            }
        }
        // bsums term: into a separate sum for mins, into isum for offsets.
        UNROLL
        for (int g = 0; g < RG; g++)
            UNROLL
            for (int c = 0; c < C; c++) tmp[g][c] = K_MIN(t) ? _mm512_setzero_si512() : acc[g][c];
        UNROLL
        for (int p = 0; p < 8; p++) {
            __m512i pr[2];
            UNROLL
            for (int g = 0; g < RG; g++) pr[g] = _mm512_load_si512(pb + g * pstride + K_OFF_PR(t) + 64 * p);
            UNROLL
            for (int c = 0; c < C; c++) {
                const __m512i bv = bcast_dword(&act[c][b].bsums[2 * p]);
                UNROLL
                for (int g = 0; g < RG; g++) tmp[g][c] = _mm512_dpwssd_epi32(tmp[g][c], pr[g], bv);
            }
        }
        UNROLL
        for (int c = 0; c < C; c++) {
            const __m512 da = _mm512_set1_ps(act[c][b].d);
            UNROLL
            for (int g = 0; g < RG; g++) {
                const float *dg = (const float *)(pb + g * pstride + K_OFF_D(t));
                __m512 p;
                if (K_MIN(t)) {
                    p = _mm512_mul_ps(_mm512_cvtepi32_ps(acc[g][c]), _mm512_mul_ps(_mm512_load_ps(dg), da));
                    p = _mm512_fnmadd_ps(_mm512_cvtepi32_ps(tmp[g][c]), _mm512_mul_ps(_mm512_load_ps(dg + 16), da), p);
                } else {
                    p = _mm512_mul_ps(_mm512_cvtepi32_ps(tmp[g][c]), _mm512_mul_ps(_mm512_load_ps(dg), da));
                }
                facc[g][c] = _mm512_add_ps(facc[g][c], p);
            }
        }
    }
    TILE_STORE_ACC(RG, C)
}

// --- drivers -------------------------------------------------------------------------------

// Columns per micro-tile (measured: 32-element types 4 ~ 5 ~ 6 > 3; K-quants
// 4 > 3 > 2). 2 panels x 4 columns = 8 int32 + 8 float accumulators (K-quants:
// + 8 sub-block sums), 64-column chunks split evenly.
#ifndef Q32_COLS
#define Q32_COLS 4
#endif
#ifndef K_COLS
#define K_COLS 4
#endif

// Calls TILE(t, RG, C, ...) with compile-time RG in {1,2} and C in 1..CMAX.
#define DISPATCH_C(TILE, t, CMAX, RG, C, ...)                                                   \
    switch (C) {                                                                                \
    case 1: TILE(t, RG, 1, __VA_ARGS__); break;                                                 \
    case 2: if (CMAX >= 2) TILE(t, RG, 2, __VA_ARGS__); break;                                  \
    case 3: if (CMAX >= 3) TILE(t, RG, 3, __VA_ARGS__); break;                                  \
    case 4: if (CMAX >= 4) TILE(t, RG, 4, __VA_ARGS__); break;                                  \
    case 5: if (CMAX >= 5) TILE(t, RG, 5, __VA_ARGS__); break;                                  \
    default: if (CMAX >= 6) TILE(t, RG, 6, __VA_ARGS__); break;                                 \
    }
#define DISPATCH_TILE(TILE, t, CMAX, RG, C, ...)                                                \
    do {                                                                                        \
        if ((RG) == 2) {                                                                        \
            DISPATCH_C(TILE, t, CMAX, 2, C, __VA_ARGS__)                                        \
        } else {                                                                                \
            DISPATCH_C(TILE, t, CMAX, 1, C, __VA_ARGS__)                                        \
        }                                                                                       \
    } while (0)

// Row pointers of the panels of rows r0.. (rows past nr repeat the last row:
// valid memory, results masked off).
INLINE void panel_rows(const void *w, size_t ws, int r0, int nr, int p, size_t off, const uint8_t *rows[16],
                       __mmask16 *mask) {
    int valid = nr - r0 - 16 * p;
    if (valid > 16) valid = 16;
    UNROLL
    for (int i = 0; i < 16; i++) {
        int r = r0 + 16 * p + (i < valid ? i : valid - 1);
        rows[i] = (const uint8_t *)w + (size_t)r * ws + off;
    }
    *mask = (__mmask16)((1u << valid) - 1);
}

INLINE void gemm_q32(int t, tt_vec_dot_fn dot, int64_t n, int nr, int nc, const void *w, size_t ws,
                     const void *a, size_t as, float *out, size_t ldo) {
    if (nc < Q32_MIN_COLS) {
        for (int c = 0; c < nc; c++)
            for (int r = 0; r < nr; r++)
                dot(n, &out[(size_t)c * ldo + r], (const char *)w + (size_t)r * ws, (const char *)a + (size_t)c * as);
        return;
    }
    const int nb = (int)(n / 32), pbk = Q32_PANEL_BLOCK(t);
    const size_t pstride = (size_t)Q32_SLAB * pbk;
    alignas(64) uint8_t scratch[2 * Q32_SLAB * Q32_PANEL_BLOCK(Q4_1)];
    for (int r0 = 0; r0 < nr; r0 += 32) {
        const int rg = nr - r0 > 16 ? 2 : 1;
        __mmask16 rmask[2] = {0, 0};
        for (int kb0 = 0; kb0 < nb; kb0 += Q32_SLAB) {
            const int nbk = nb - kb0 < Q32_SLAB ? nb - kb0 : Q32_SLAB;
            for (int p = 0; p < rg; p++) {
                const uint8_t *rows[16];
                panel_rows(w, ws, r0, nr, p, (size_t)kb0 * Q32_BYTES(t), rows, &rmask[p]);
                pack_q32(t, rows, nbk, scratch + p * pstride);
            }
            for (int c0 = 0; c0 < nc; c0 += Q32_COLS) {
                const int cc = nc - c0 < Q32_COLS ? nc - c0 : Q32_COLS;
                const blk_q8_32 *act[Q32_COLS];
                for (int c = 0; c < cc; c++) act[c] = (const blk_q8_32 *)((const char *)a + (size_t)(c0 + c) * as) + kb0;
                DISPATCH_TILE(tile_q32, t, Q32_COLS, rg, cc, scratch, pstride, nbk, act, out + (size_t)c0 * ldo + r0,
                              ldo, rmask, kb0 == 0);
            }
        }
    }
}

INLINE void gemm_k(int t, tt_vec_dot_fn dot, int64_t n, int nr, int nc, const void *w, size_t ws, const void *a,
                   size_t as, float *out, size_t ldo) {
    if (nc < K_MIN_COLS) {
        for (int c = 0; c < nc; c++)
            for (int r = 0; r < nr; r++)
                dot(n, &out[(size_t)c * ldo + r], (const char *)w + (size_t)r * ws, (const char *)a + (size_t)c * as);
        return;
    }
    const int nb = (int)(n / QK_K), pbk = K_PANEL_BLOCK(t);
    const size_t pstride = (size_t)K_SLAB * pbk;
    alignas(64) uint8_t scratch[2 * K_SLAB * K_PANEL_BLOCK(Q6_K)];
    for (int r0 = 0; r0 < nr; r0 += 32) {
        const int rg = nr - r0 > 16 ? 2 : 1;
        __mmask16 rmask[2] = {0, 0};
        for (int kb0 = 0; kb0 < nb; kb0 += K_SLAB) {
            const int nbk = nb - kb0 < K_SLAB ? nb - kb0 : K_SLAB;
            for (int p = 0; p < rg; p++) {
                const uint8_t *rows[16];
                panel_rows(w, ws, r0, nr, p, (size_t)kb0 * K_BYTES(t), rows, &rmask[p]);
                pack_k(t, rows, nbk, scratch + p * pstride);
            }
            for (int c0 = 0; c0 < nc; c0 += K_COLS) {
                const int cc = nc - c0 < K_COLS ? nc - c0 : K_COLS;
                const blk_q8_K *act[K_COLS];
                for (int c = 0; c < cc; c++) act[c] = (const blk_q8_K *)((const char *)a + (size_t)(c0 + c) * as) + kb0;
                DISPATCH_TILE(tile_k, t, K_COLS, rg, cc, scratch, pstride, nbk, act, out + (size_t)c0 * ldo + r0, ldo,
                              rmask, kb0 == 0);
            }
        }
    }
}

// --- float types ----------------------------------------------------------------------------

enum { FT_F32, FT_F16, FT_BF16 };
#define FT_BYTES(t) ((t) == FT_F32 ? 4 : 2)
#define F_ROWS 4
#define F_COLS 6

INLINE __m512 ft_load(int t, const uint8_t *p, __mmask16 m) {
    switch (t) {
    case FT_F32: return _mm512_maskz_loadu_ps(m, p);
    case FT_F16: return _mm512_cvtph_ps(_mm256_maskz_loadu_epi16(m, p));
    default: return _mm512_castsi512_ps(_mm512_slli_epi32(_mm512_cvtepu16_epi32(_mm256_maskz_loadu_epi16(m, p)), 16));
    }
}

// R rows x C columns over all n; lane j sums elements j mod 16 in order,
// then the same masked tail and reduction tree as vec_dot_f32/f16/bf16.
INLINE void tile_f(int t, int R, int C, int64_t n, const uint8_t *w, size_t ws, const uint8_t *a, size_t as,
                   float *out, size_t ldo) {
    __m512 acc[F_ROWS][F_COLS];
    UNROLL
    for (int r = 0; r < R; r++)
        UNROLL
        for (int c = 0; c < C; c++) acc[r][c] = _mm512_setzero_ps();
    for (int64_t i = 0; i < n; i += 16) {
        const __mmask16 m = n - i >= 16 ? 0xFFFF : (__mmask16)((1u << (n - i)) - 1);
        __m512 x[F_ROWS];
        UNROLL
        for (int r = 0; r < R; r++) x[r] = ft_load(t, w + (size_t)r * ws + (size_t)i * FT_BYTES(t), m);
        UNROLL
        for (int c = 0; c < C; c++) {
            const __m512 y = _mm512_maskz_loadu_ps(m, (const float *)(a + (size_t)c * as) + i);
            UNROLL
            for (int r = 0; r < R; r++) acc[r][c] = _mm512_fmadd_ps(x[r], y, acc[r][c]);
        }
    }
    UNROLL
    for (int c = 0; c < C; c++)
        UNROLL
        for (int r = 0; r < R; r++) out[(size_t)c * ldo + r] = k512_hsum512(acc[r][c]);
}

INLINE void gemm_float(int t, int64_t n, int nr, int nc, const void *w, size_t ws, const void *a, size_t as,
                       float *out, size_t ldo) {
    for (int r0 = 0; r0 < nr; r0 += F_ROWS) {
        const int rr = nr - r0 < F_ROWS ? nr - r0 : F_ROWS;
        for (int c0 = 0; c0 < nc; c0 += F_COLS) {
            const int cc = nc - c0 < F_COLS ? nc - c0 : F_COLS;
            const uint8_t *wr = (const uint8_t *)w + (size_t)r0 * ws;
            const uint8_t *ac = (const uint8_t *)a + (size_t)c0 * as;
            float *o = out + (size_t)c0 * ldo + r0;
#define F_CASE_C(R)                                                                            \
    switch (cc) {                                                                               \
    case 1: tile_f(t, R, 1, n, wr, ws, ac, as, o, ldo); break;                                \
    case 2: tile_f(t, R, 2, n, wr, ws, ac, as, o, ldo); break;                                \
    case 3: tile_f(t, R, 3, n, wr, ws, ac, as, o, ldo); break;                                \
    case 4: tile_f(t, R, 4, n, wr, ws, ac, as, o, ldo); break;                                \
    case 5: tile_f(t, R, 5, n, wr, ws, ac, as, o, ldo); break;                                \
    default: tile_f(t, R, 6, n, wr, ws, ac, as, o, ldo); break;                               \
    }
            if (rr == F_ROWS) {
                F_CASE_C(4)
            } else {
                // Leftover rows one at a time (same per-output operations).
                for (int r = 0; r < rr; r++) {
                    wr = (const uint8_t *)w + (size_t)(r0 + r) * ws;
                    o = out + (size_t)c0 * ldo + r0 + r;
                    F_CASE_C(1)
                }
            }
#undef F_CASE_C
        }
    }
}

// --- entry points ----------------------------------------------------------------------------

#define GEMM_ENTRY(name, body)                                                                  \
    static void name(int64_t n, int nr, int nc, const void *w, size_t ws, const void *a, size_t as, \
                     float *out, size_t ldo) {                                                  \
        body;                                                                                   \
    }

GEMM_ENTRY(gemm_f32, gemm_float(FT_F32, n, nr, nc, w, ws, a, as, out, ldo))
GEMM_ENTRY(gemm_f16, gemm_float(FT_F16, n, nr, nc, w, ws, a, as, out, ldo))
GEMM_ENTRY(gemm_bf16, gemm_float(FT_BF16, n, nr, nc, w, ws, a, as, out, ldo))

GEMM_ENTRY(gemm_q4_0, gemm_q32(Q4_0, k512_vec_dot(TT_Q4_0), n, nr, nc, w, ws, a, as, out, ldo))
GEMM_ENTRY(gemm_q4_1, gemm_q32(Q4_1, k512_vec_dot(TT_Q4_1), n, nr, nc, w, ws, a, as, out, ldo))
GEMM_ENTRY(gemm_q5_0, gemm_q32(Q5_0, k512_vec_dot(TT_Q5_0), n, nr, nc, w, ws, a, as, out, ldo))
GEMM_ENTRY(gemm_q5_1, gemm_q32(Q5_1, k512_vec_dot(TT_Q5_1), n, nr, nc, w, ws, a, as, out, ldo))
GEMM_ENTRY(gemm_q8_0, gemm_q32(Q8_0, k512_vec_dot(TT_Q8_0), n, nr, nc, w, ws, a, as, out, ldo))
GEMM_ENTRY(gemm_q2_K, gemm_k(Q2_K, k512_vec_dot(TT_Q2_K), n, nr, nc, w, ws, a, as, out, ldo))
GEMM_ENTRY(gemm_q3_K, gemm_k(Q3_K, k512_vec_dot(TT_Q3_K), n, nr, nc, w, ws, a, as, out, ldo))
GEMM_ENTRY(gemm_q4_K, gemm_k(Q4_K, k512_vec_dot(TT_Q4_K), n, nr, nc, w, ws, a, as, out, ldo))
GEMM_ENTRY(gemm_q5_K, gemm_k(Q5_K, k512_vec_dot(TT_Q5_K), n, nr, nc, w, ws, a, as, out, ldo))
GEMM_ENTRY(gemm_q6_K, gemm_k(Q6_K, k512_vec_dot(TT_Q6_K), n, nr, nc, w, ws, a, as, out, ldo))

void k512_fill_gemm(kern_ops *k) {
    k->gemm[TT_F32] = gemm_f32;
    k->gemm[TT_F16] = gemm_f16;
    k->gemm[TT_BF16] = gemm_bf16;
    k->gemm[TT_Q4_0] = gemm_q4_0;
    k->gemm[TT_Q4_1] = gemm_q4_1;
    k->gemm[TT_Q5_0] = gemm_q5_0;
    k->gemm[TT_Q5_1] = gemm_q5_1;
    k->gemm[TT_Q8_0] = gemm_q8_0;
    k->gemm[TT_Q2_K] = gemm_q2_K;
    k->gemm[TT_Q3_K] = gemm_q3_K;
    k->gemm[TT_Q4_K] = gemm_q4_K;
    k->gemm[TT_Q5_K] = gemm_q5_K;
    k->gemm[TT_Q6_K] = gemm_q6_K;
}
