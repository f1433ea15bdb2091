// test_quant.c — the quantized block formats (src/tensor/quant.c).
//
//   1. hand-built blocks of every type decode to values derived here by hand
//      from the layouts in types.h (independent of quant.c's unpackers);
//   2. quantize → dequantize round trips stay under per-type error bounds;
//   3. the reference dot products equal a double-precision dot product of
//      the dequantized operands, on quantized data and on random block bytes;
//   4. edge cases: zeros, constants, tiny and huge magnitudes;
//   5. real llama.cpp files: decoding a quantized tensor lands in the type's
//      error band against the f16 file, and requantizing the f16 tensor with
//      our reference quantizers reproduces the file's bytes exactly.
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "model/gguf.h"
#include "tensor/quant.h"
#include "tensor/types.h"
#include "test.h"

// --- helpers -----------------------------------------------------------------------

// splitmix64: a small deterministic generator, state passed explicitly.
typedef struct rng { uint64_t s; } rng;

static uint64_t rng_u64(rng *r) {
    uint64_t z = (r->s += 0x9E3779B97F4A7C15ull);
    z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
    z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
    return z ^ (z >> 31);
}
static double rng_unif(rng *r) { return (double)(rng_u64(r) >> 11) * (1.0 / 9007199254740992.0); }
static double rng_gauss(rng *r) {
    double u = rng_unif(r), v = rng_unif(r);
    return sqrt(-2 * log(u + 1e-300)) * cos(2 * M_PI * v);
}

// Half-precision bit patterns used by the hand-built blocks.
#define H_0_125 0x3000
#define H_0_25 0x3400
#define H_0_5 0x3800
#define H_1 0x3C00
#define H_2 0x4000
#define H_M1 0xBC00

// The ten quantized types with their round-trip bounds: relative RMSE
// (sqrt(sum err^2 / sum x^2)) for Gaussian and uniform [-1, 1) data. Measured
// (mean over 1/3/7-block rows, worst case in parentheses), Gaussian:
//   q4_0 .0857 (.092)  q4_1 .0783 (.083)  q5_0 .0428 (.047)  q5_1 .0378 (.040)
//   q8_0 .0054 (.0061) q2_K .293 (.311)   q3_K .150 (.158)   q4_K .0711 (.074)
//   q5_K .0361 (.038)  q6_K .0178 (.020)
// uniform:
//   q4_0 .0651 (.068)  q4_1 .0609 (.064)  q5_0 .0312 (.033)  q5_1 .0293 (.031)
//   q8_0 .0038 (.0040) q2_K .231 (.247)   q3_K .126 (.130)   q4_K .0544 (.059)
//   q5_K .0277 (.029)  q6_K .0133 (.014)
// These equal ggml's reference quantizers' (ours reproduce llama.cpp files
// byte for byte, test_real_requantize). Bounds: the worst case + ~10-15%.
typedef struct qtype {
    tt_type t;
    double bound_gauss, bound_unif;
} qtype;

static const qtype qtypes[] = {
    {TT_Q4_0, 0.100, 0.077}, {TT_Q4_1, 0.094, 0.072}, {TT_Q5_0, 0.052, 0.038},
    {TT_Q5_1, 0.046, 0.036}, {TT_Q8_0, 0.0070, 0.0046}, {TT_Q2_K, 0.34, 0.28},
    {TT_Q3_K, 0.175, 0.15},  {TT_Q4_K, 0.085, 0.067},  {TT_Q5_K, 0.043, 0.033},
    {TT_Q6_K, 0.023, 0.0165},
};
#define N_QTYPES (int)(sizeof qtypes / sizeof qtypes[0])

static double rel_rmse(const float *x, const float *y, int64_t n) {
    double e = 0, r = 0;
    for (int64_t i = 0; i < n; i++) {
        e += ((double)y[i] - x[i]) * ((double)y[i] - x[i]);
        r += (double)x[i] * x[i];
    }
    return r > 0 ? sqrt(e / r) : sqrt(e);
}

static bool all_finite(const float *y, int64_t n) {
    for (int64_t i = 0; i < n; i++)
        if (!isfinite(y[i])) return false;
    return true;
}

// Checks y[0..n) == want[0..n) exactly; prints the first few mismatches.
static void check_values(const char *what, const float *y, const float *want, int n) {
    int bad = 0;
    for (int i = 0; i < n; i++) {
        if (y[i] != want[i]) {
            if (bad < 5) fprintf(stderr, "  %s: element %d = %.9g, want %.9g\n", what, i, y[i], want[i]);
            bad++;
        }
    }
    CHECK_MSG(bad == 0, "%s: %d of %d elements differ", what, bad, n);
}

// --- 1. hand-built blocks ------------------------------------------------------------

static void test_hand_q4_0(void) {
    blk_q4_0 b[2];
    memset(b, 0, sizeof b);
    b[0].d = H_0_5;
    b[0].qs[0] = 0x1F; // element 0 = 15, element 16 = 1
    b[0].qs[15] = 0x80; // element 15 = 0, element 31 = 8
    for (int j = 1; j < 15; j++) b[0].qs[j] = 0x88; // codes 8: value 0
    b[1].d = H_M1;
    for (int j = 0; j < 16; j++) b[1].qs[j] = 0x88;
    b[1].qs[3] = 0x4C; // element 3 = 12, element 19 = 4
    float y[64], want[64] = {0};
    dequant_q4_0(b, y, 64);
    want[0] = 3.5f;   // (15 - 8) * 0.5
    want[16] = -3.5f; // (1 - 8) * 0.5
    want[15] = -4.0f; // (0 - 8) * 0.5
    want[31] = 0.0f;  // (8 - 8) * 0.5
    want[32 + 3] = -4.0f;  // (12 - 8) * -1
    want[32 + 19] = 4.0f;  // (4 - 8) * -1
    check_values("q4_0", y, want, 64);
}

static void test_hand_q4_1(void) {
    blk_q4_1 b;
    memset(&b, 0, sizeof b);
    b.d = H_0_25;
    b.m = H_M1;
    b.qs[0] = 0x3A; // element 0 = 10, element 16 = 3
    b.qs[9] = 0xF0; // element 9 = 0, element 25 = 15
    float y[32], want[32];
    for (int j = 0; j < 32; j++) want[j] = -1.0f; // code 0: just the min
    want[0] = 1.5f;   // 10 * 0.25 - 1
    want[16] = -0.25f; // 3 * 0.25 - 1
    want[25] = 2.75f; // 15 * 0.25 - 1
    dequant_q4_1(&b, y, 32);
    check_values("q4_1", y, want, 32);
}

static void test_hand_q5_0(void) {
    blk_q5_0 b;
    memset(&b, 0, sizeof b);
    b.d = H_1;
    for (int j = 0; j < 16; j++) b.qs[j] = 0x00;
    // Elements without a fifth bit have code 0 -> -16; give most of them the
    // fifth bit (code 16 -> 0) so the positions that differ stand out.
    b.qh[0] = 0xFF; b.qh[1] = 0xFF; b.qh[2] = 0xFF; b.qh[3] = 0xFF;
    b.qs[0] = 0x21;   // element 0 low 4 bits 1, element 16 low 4 bits 2
    b.qh[0] &= 0xFD;  // element 1: no fifth bit -> code 0
    b.qs[15] = 0xF0;  // element 31: low 4 bits 15 (fifth bit set) -> 31
    b.qh[2] &= 0xBF;  // element 22: no fifth bit; low nibble 0 of qs[6] -> code 0
    b.qs[6] = 0x07;   // element 6: code 16 + 7 = 23; element 22 high nibble 0
    float y[32], want[32] = {0};
    want[0] = 1.0f;   // 17 - 16
    want[16] = 2.0f;  // 18 - 16
    want[1] = -16.0f; // 0 - 16
    want[31] = 15.0f; // 31 - 16
    want[22] = -16.0f;
    want[6] = 7.0f;
    dequant_q5_0(&b, y, 32);
    check_values("q5_0", y, want, 32);
}

static void test_hand_q5_1(void) {
    blk_q5_1 b;
    memset(&b, 0, sizeof b);
    b.d = H_0_5;
    b.m = H_2;
    b.qs[5] = 0x0F;  // element 5 low bits 15, element 21 low bits 0
    b.qh[0] = 0x20;  // bit 5: element 5's fifth bit -> code 31
    b.qh[2] = 0x20;  // bit 21: element 21's fifth bit -> code 16
    b.qs[10] = 0x30; // element 26 low bits 3, no fifth bit
    float y[32], want[32];
    for (int j = 0; j < 32; j++) want[j] = 2.0f;
    want[5] = 17.5f;  // 31 * 0.5 + 2
    want[21] = 10.0f; // 16 * 0.5 + 2
    want[26] = 3.5f;  // 3 * 0.5 + 2
    dequant_q5_1(&b, y, 32);
    check_values("q5_1", y, want, 32);
}

static void test_hand_q8_0(void) {
    blk_q8_0 b;
    memset(&b, 0, sizeof b);
    b.d = H_0_25;
    b.qs[0] = -128;
    b.qs[7] = -3;
    b.qs[31] = 127;
    float y[32], want[32] = {0};
    want[0] = -32.0f;
    want[7] = -0.75f;
    want[31] = 31.75f;
    dequant_q8_0(&b, y, 32);
    check_values("q8_0", y, want, 32);
}

static void test_hand_q2_K(void) {
    blk_q2_K b;
    memset(&b, 0, sizeof b);
    b.d = H_0_5;
    b.dmin = H_0_25;
    // qs[0] holds elements 0, 32, 64, 96 in bits 0-1, 2-3, 4-5, 6-7.
    b.qs[0] = 0xE4;       // codes 0, 1, 2, 3
    b.qs[32] = 0x03;      // element 128: code 3
    b.scales[0] = 0x21;   // sub-block 0 (elements 0..15): scale 1, min 2
    b.scales[2] = 0x13;   // sub-block 2 (32..47): scale 3, min 1
    b.scales[4] = 0x0F;   // sub-block 4 (64..79): scale 15, min 0
    b.scales[6] = 0xF1;   // sub-block 6 (96..111): scale 1, min 15
    b.scales[8] = 0x52;   // sub-block 8 (128..143): scale 2, min 5
    float y[256], want[256] = {0};
    // Elements with code 0 in a sub-block with a min are -dmin*m.
    for (int l = 0; l < 16; l++) {
        want[l] = -0.5f;        // -0.25 * 2
        want[32 + l] = -0.25f;  // -0.25 * 1
        want[64 + l] = 0.0f;
        want[96 + l] = -3.75f;  // -0.25 * 15
        want[128 + l] = -1.25f; // -0.25 * 5
    }
    want[0] = -0.5f;   // 0.5*1*0 - 0.25*2
    want[32] = 1.25f;  // 0.5*3*1 - 0.25*1
    want[64] = 15.0f;  // 0.5*15*2 - 0
    want[96] = -2.25f; // 0.5*1*3 - 0.25*15
    want[128] = 1.75f; // 0.5*2*3 - 0.25*5
    dequant_q2_K(&b, y, 256);
    check_values("q2_K", y, want, 256);
}

static void test_hand_q3_K(void) {
    blk_q3_K b;
    memset(&b, 0, sizeof b);
    b.d = H_0_5;
    // Scale codes: all 32 (scale 0): low nibbles 0, high 2-bit fields 2.
    for (int k = 8; k < 12; k++) b.scales[k] = 0xAA;
    // Sub-block 0: code 33 = 0b10'0001 -> low nibble of scales[0] = 1.
    b.scales[0] = 0x01;
    // Sub-block 9: code 0: high nibble of scales[1] = 0 (already), bits 4-5 of scales[9] = 0.
    b.scales[9] = 0x8A;
    // Sub-block 15: code 63: high nibble of scales[7] = 15, bits 6-7 of scales[11] = 3.
    b.scales[7] = 0xF0;
    b.scales[11] = 0xEA;
    // Element 0: low bits 3 (qs[0] bits 0-1), hmask[0] bit 0 set -> 3.
    b.qs[0] = 0x03;
    b.hmask[0] = 0x01;
    // Element 144 (half 1, shift 0, l = 16): qs[48] bits 0-1 = 2, hmask[16] bit 4 -> 2.
    b.qs[48] = 0x02;
    b.hmask[16] = 0x10;
    // Element 255 (half 1, shift 6, l = 31): qs[63] bits 6-7 = 1, hmask[31] bit 7 -> 1.
    b.qs[63] = 0x40;
    b.hmask[31] = 0x80;
    float y[256], want[256] = {0};
    // Every other element has code -4 (low bits 0, no hmask bit).
    for (int l = 0; l < 16; l++) {
        want[l] = -2.0f;         // 0.5 * 1 * -4
        want[144 + l] = 64.0f;   // 0.5 * -32 * -4
        want[240 + l] = -62.0f;  // 0.5 * 31 * -4
    }
    want[0] = 1.5f;     // 0.5 * 1 * 3
    want[144] = -32.0f; // 0.5 * -32 * 2
    want[255] = 15.5f;  // 0.5 * 31 * 1
    dequant_q3_K(&b, y, 256);
    check_values("q3_K", y, want, 256);
}

// Q4_K and Q5_K share the scales: sub-block 0 scale 5 min 3, sub-block 2
// scale 1 min 0, sub-block 5 scale 37 min 50 (both need their high 2 bits).
static void hand_k4_scales(uint8_t s[12]) {
    memset(s, 0, 12);
    s[0] = 5;            // scale 0
    s[4] = 3;            // min 0
    s[2] = 1;            // scale 2 (min 2 = s[6] = 0)
    s[9] = 0x25;         // scale 5 low 4 bits 5, min 5 low 4 bits 2
    s[1] = 0x80;         // scale 5 high 2 bits 2 (37 = 0b10'0101); scale 1 = 0
    s[5] = 0xC0;         // min 5 high 2 bits 3 (50 = 0b11'0010); min 1 = 0
}

static void test_hand_q4_K(void) {
    blk_q4_K b;
    memset(&b, 0, sizeof b);
    b.d = H_1;
    b.dmin = H_0_5;
    hand_k4_scales(b.scales);
    b.qs[0] = 0x79;  // element 0 = 9; element 32 (sub-block 1, scale 0) = 7
    b.qs[65] = 0xF0; // element 161 (group 2, high nibble, l = 1) = 15; element 129 = 0
    b.qs[40] = 0x0C; // element 72 (group 1, low nibble, l = 8; sub-block 2) = 12
    float y[256], want[256] = {0};
    for (int l = 0; l < 32; l++) {
        want[l] = -1.5f;         // 0.5 * 3
        want[160 + l] = -25.0f;  // 0.5 * 50
    }
    want[0] = 43.5f;   // 1*5*9 - 1.5
    want[161] = 530.0f; // 1*37*15 - 25
    want[72] = 12.0f;  // 1*1*12 - 0
    dequant_q4_K(&b, y, 256);
    check_values("q4_K", y, want, 256);
}

static void test_hand_q5_K(void) {
    blk_q5_K b;
    memset(&b, 0, sizeof b);
    b.d = H_1;
    b.dmin = H_0_5;
    hand_k4_scales(b.scales);
    b.qs[0] = 0x79;  // element 0 low bits 9; element 32 (scale 0) 7
    b.qh[0] = 0x05;  // bit 0: element 0 +16; bit 2: element 64 +16
    b.qs[65] = 0xF0; // element 161 low bits 15
    b.qh[1] = 0x20;  // bit 5 (group 2, high nibble): element 161 +16
    float y[256], want[256] = {0};
    for (int l = 0; l < 32; l++) {
        want[l] = -1.5f;
        want[160 + l] = -25.0f;
    }
    want[0] = 123.5f;   // 5 * 25 - 1.5
    want[64] = 16.0f;   // 1 * 16 - 0
    want[161] = 1122.0f; // 37 * 31 - 25
    dequant_q5_K(&b, y, 256);
    check_values("q5_K", y, want, 256);
}

static void test_hand_q6_K(void) {
    blk_q6_K b;
    memset(&b, 0, sizeof b);
    b.d = H_0_25;
    b.scales[0] = 2;
    b.scales[6] = -3;
    b.scales[15] = 127;
    // Element 0 (half 0, s 0, l 0): ql[0] low nibble, qh[0] bits 0-1: code 63.
    b.ql[0] = 0x0F;
    b.qh[0] = 0x03;
    // Element 100 (half 0, s 3, l 4): ql[36] high nibble 5, qh[4] bits 6-7 = 1: code 21.
    b.ql[36] = 0x50;
    b.qh[4] = 0x40;
    // Element 255 (half 1, s 3, l 31): ql[127] high nibble 1, qh[63] bits 6-7 = 2: code 33.
    b.ql[127] = 0x10;
    b.qh[63] = 0x80;
    float y[256], want[256] = {0};
    // Every other element has code 0 -> -32.
    for (int l = 0; l < 16; l++) {
        want[l] = -16.0f;          // 0.25 * 2 * -32
        want[96 + l] = 24.0f;      // 0.25 * -3 * -32
        want[240 + l] = -1016.0f;  // 0.25 * 127 * -32
    }
    want[0] = 15.5f;   // 0.25 * 2 * 31
    want[100] = 8.25f; // 0.25 * -3 * -11
    want[255] = 31.75f; // 0.25 * 127 * 1
    dequant_q6_K(&b, y, 256);
    check_values("q6_K", y, want, 256);
}

static void test_hand_act(void) {
    // Q8_32: amax 127 -> d = 1; ties round to even.
    float x[64] = {0};
    x[0] = 127.0f; x[1] = -63.5f; x[2] = 0.5f; x[3] = 1.5f; x[4] = 2.5f; x[5] = -2.4f;
    for (int j = 32; j < 64; j++) x[j] = 0; // an all-zero block
    blk_q8_32 a[2];
    tt_quantize_q8_32_ref(x, a, 64);
    CHECK(a[0].d == 1.0f);
    CHECK_EQ_INT(a[0].qs[0], 127);
    CHECK_EQ_INT(a[0].qs[1], -64);
    CHECK_EQ_INT(a[0].qs[2], 0);
    CHECK_EQ_INT(a[0].qs[3], 2);
    CHECK_EQ_INT(a[0].qs[4], 2);
    CHECK_EQ_INT(a[0].qs[5], -2);
    CHECK_EQ_INT(a[0].sum, 127 - 64 + 0 + 2 + 2 - 2);
    CHECK(a[1].d == 0.0f);
    CHECK_EQ_INT(a[1].sum, 0);
    // Q8_K: amax 254 -> d = 2; bsums per 16.
    float xk[256] = {0};
    xk[0] = -254.0f; xk[15] = 3.0f; xk[16] = 10.0f; xk[255] = 7.0f;
    blk_q8_K k;
    tt_quantize_q8_K_ref(xk, &k, 256);
    CHECK(k.d == 2.0f);
    CHECK_EQ_INT(k.qs[0], -127);
    CHECK_EQ_INT(k.qs[15], 2); // 1.5 ties to even
    CHECK_EQ_INT(k.qs[16], 5);
    CHECK_EQ_INT(k.qs[255], 4); // 3.5 -> 4
    CHECK_EQ_INT(k.bsums[0], -125);
    CHECK_EQ_INT(k.bsums[1], 5);
    CHECK_EQ_INT(k.bsums[15], 4);
}

// --- 2. round trips -------------------------------------------------------------------

static void test_round_trip(void) {
    rng r = {42};
    const int nblocks[] = {1, 3, 7};
    for (int k = 0; k < N_QTYPES; k++) {
        const tt_traits *tr = tt_get(qtypes[k].t);
        for (int dist = 0; dist < 2; dist++) {
            for (size_t s = 0; s < 3; s++) {
                int64_t n = (int64_t)nblocks[s] * tr->blck;
                float *x = malloc((size_t)n * sizeof *x), *y = malloc((size_t)n * sizeof *y);
                void *b = malloc(tt_row_size(qtypes[k].t, n));
                for (int64_t i = 0; i < n; i++) x[i] = (float)(dist == 0 ? rng_gauss(&r) : 2 * rng_unif(&r) - 1);
                tr->from_float(x, b, n);
                tr->to_float(b, y, n);
                double e = rel_rmse(x, y, n);
                double bound = dist == 0 ? qtypes[k].bound_gauss : qtypes[k].bound_unif;
                CHECK_MSG(e < bound, "%s %s %d blocks: relative RMSE %.4f >= %.4f", tr->name,
                          dist == 0 ? "gaussian" : "uniform", nblocks[s], e, bound);
                free(x); free(y); free(b);
            }
        }
    }
}

// Quality on a large sample (64 super-blocks of Gaussian data), where the
// error is stable to about 1.5% between seeds: a 3% margin over the measured
// value catches a weakened scale search (e.g. Q4_K without its candidate
// scales: .0760 instead of .0720) that the loose per-row bounds above miss.
static void test_quality(void) {
    static const struct { tt_type t; double rmse; } want[] = {
        {TT_Q4_0, 0.08573}, {TT_Q4_1, 0.07869}, {TT_Q5_0, 0.04286}, {TT_Q5_1, 0.03814},
        {TT_Q8_0, 0.00536}, {TT_Q2_K, 0.29517}, {TT_Q3_K, 0.15046}, {TT_Q4_K, 0.07200},
        {TT_Q5_K, 0.03634}, {TT_Q6_K, 0.01787},
    };
    enum { N = 64 * QK_K };
    float *x = malloc(N * sizeof *x), *y = malloc(N * sizeof *y);
    void *b = malloc(N * sizeof(float));
    rng r = {77};
    for (int i = 0; i < N; i++) x[i] = (float)rng_gauss(&r);
    for (size_t k = 0; k < sizeof want / sizeof want[0]; k++) {
        const tt_traits *tr = tt_get(want[k].t);
        tr->from_float(x, b, N);
        tr->to_float(b, y, N);
        double e = rel_rmse(x, y, N);
        CHECK_MSG(e < want[k].rmse * 1.03, "%s: relative RMSE %.5f, measured %.5f", tr->name, e, want[k].rmse);
    }
    free(x); free(y); free(b);
}

// Values already on a Q4_0 / Q5_0 / Q8_0 grid survive a second round trip unchanged.
static void test_idempotent(void) {
    rng r = {7};
    const tt_type ts[] = {TT_Q4_0, TT_Q5_0, TT_Q8_0};
    for (size_t k = 0; k < 3; k++) {
        const tt_traits *tr = tt_get(ts[k]);
        enum { N = 7 * 32 };
        float x[N], y[N], z[N];
        uint8_t b[N * 2];
        for (int i = 0; i < N; i++) x[i] = (float)rng_gauss(&r);
        tr->from_float(x, b, N);
        tr->to_float(b, y, N);
        tr->from_float(y, b, N);
        tr->to_float(b, z, N);
        int bad = 0;
        for (int i = 0; i < N; i++) bad += y[i] != z[i];
        CHECK_MSG(bad == 0, "%s: %d values moved on requantization", tr->name, bad);
    }
}

// --- 3. dot products ----------------------------------------------------------------------

// Activation row of n elements in format act, with its dequantized values.
static void *make_act(tt_act act, const float *x, int64_t n, float *deq, rng *r, bool raw) {
    void *a = malloc(tt_act_row_size(act, n));
    if (act == TT_ACT_Q8_32) {
        blk_q8_32 *b = a;
        if (raw) {
            for (int64_t i = 0; i < n / 32; i++) {
                b[i].d = (float)(rng_unif(r) * 0.02 + 1e-4) * (rng_u64(r) & 1 ? 1 : -1);
                b[i].sum = 0;
                for (int j = 0; j < 32; j++) {
                    b[i].qs[j] = (int8_t)(rng_u64(r) & 0xFF);
                    b[i].sum += b[i].qs[j];
                }
            }
        } else {
            tt_quantize_q8_32_ref(x, b, n);
        }
        for (int64_t i = 0; i < n / 32; i++)
            for (int j = 0; j < 32; j++) deq[i * 32 + j] = b[i].d * (float)b[i].qs[j];
    } else {
        blk_q8_K *b = a;
        if (raw) {
            for (int64_t i = 0; i < n / QK_K; i++) {
                b[i].d = (float)(rng_unif(r) * 0.02 + 1e-4) * (rng_u64(r) & 1 ? 1 : -1);
                for (int j = 0; j < QK_K; j++) b[i].qs[j] = (int8_t)(rng_u64(r) & 0xFF);
                for (int k = 0; k < 16; k++) {
                    int s = 0;
                    for (int l = 0; l < 16; l++) s += b[i].qs[16 * k + l];
                    b[i].bsums[k] = (int16_t)s;
                }
            }
        } else {
            tt_quantize_q8_K_ref(x, b, n);
        }
        for (int64_t i = 0; i < n / QK_K; i++)
            for (int j = 0; j < QK_K; j++) deq[i * QK_K + j] = b[i].d * (float)b[i].qs[j];
    }
    return a;
}

// Replaces every half scale field of n/blck blocks of type t by a random sane
// value (magnitude 2^-12 .. 2^2, either sign), leaving all other bytes random.
static void sane_halves(tt_type t, void *w, int64_t nb, rng *r) {
    for (int64_t i = 0; i < nb; i++) {
        tt_half h[2];
        for (int k = 0; k < 2; k++) {
            float v = (float)ldexp(1 + rng_unif(r), (int)(rng_u64(r) % 14) - 12);
            h[k] = tt_float_to_half(rng_u64(r) & 1 ? -v : v);
        }
        switch (t) {
        case TT_Q4_0: ((blk_q4_0 *)w)[i].d = h[0]; break;
        case TT_Q4_1: ((blk_q4_1 *)w)[i].d = h[0]; ((blk_q4_1 *)w)[i].m = h[1]; break;
        case TT_Q5_0: ((blk_q5_0 *)w)[i].d = h[0]; break;
        case TT_Q5_1: ((blk_q5_1 *)w)[i].d = h[0]; ((blk_q5_1 *)w)[i].m = h[1]; break;
        case TT_Q8_0: ((blk_q8_0 *)w)[i].d = h[0]; break;
        case TT_Q2_K: ((blk_q2_K *)w)[i].d = h[0]; ((blk_q2_K *)w)[i].dmin = h[1]; break;
        case TT_Q3_K: ((blk_q3_K *)w)[i].d = h[0]; break;
        case TT_Q4_K: ((blk_q4_K *)w)[i].d = h[0]; ((blk_q4_K *)w)[i].dmin = h[1]; break;
        case TT_Q5_K: ((blk_q5_K *)w)[i].d = h[0]; ((blk_q5_K *)w)[i].dmin = h[1]; break;
        case TT_Q6_K: ((blk_q6_K *)w)[i].d = h[0]; break;
        default: break;
        }
    }
}

// vec_dot_ref of one weight row against one activation row, compared with a
// double dot of the dequantized operands: the error must be within 1e-6 of
// sum |w_i a_i| (the reference is exact up to the final float rounding).
static void check_dot(tt_type t, int64_t nb, bool raw, rng *r) {
    const tt_traits *tr = tt_get(t);
    int64_t n = nb * tr->blck;
    size_t wbytes = tt_row_size(t, n);
    uint8_t *w = malloc(wbytes);
    float *x = malloc((size_t)n * 4), *wd = malloc((size_t)n * 4), *ad = malloc((size_t)n * 4);
    if (raw) {
        for (size_t i = 0; i < wbytes; i++) w[i] = (uint8_t)rng_u64(r);
        sane_halves(t, w, nb, r);
    } else {
        for (int64_t i = 0; i < n; i++) x[i] = (float)rng_gauss(r);
        tr->from_float(x, w, n);
    }
    for (int64_t i = 0; i < n; i++) x[i] = (float)rng_gauss(r);
    void *a = make_act(tr->act, x, n, ad, r, raw);
    tr->to_float(w, wd, n);
    double want = 0, mag = 0;
    for (int64_t i = 0; i < n; i++) {
        want += (double)wd[i] * ad[i];
        mag += fabs((double)wd[i] * ad[i]);
    }
    float got = -1;
    tr->vec_dot_ref(n, &got, w, a);
    CHECK_MSG(fabs(got - want) <= 1e-6 * mag + 1e-30, "%s %s nb=%lld: dot %.9g, want %.9g (scale %.3g)",
              tr->name, raw ? "raw" : "quantized", (long long)nb, got, want, mag);
    free(w); free(x); free(wd); free(ad); free(a);
}

static void test_vec_dot(void) {
    rng r = {99};
    const int64_t nbs[] = {1, 3, 7, 31, 33};
    for (int k = 0; k < N_QTYPES; k++)
        for (size_t s = 0; s < 5; s++) {
            check_dot(qtypes[k].t, nbs[s], false, &r);
            check_dot(qtypes[k].t, nbs[s], true, &r);
        }
}

// Many random-byte blocks: every code and scale bit pattern gets exercised.
static void test_vec_dot_raw_many(void) {
    rng r = {2024};
    for (int k = 0; k < N_QTYPES; k++)
        for (int rep = 0; rep < 200; rep++) check_dot(qtypes[k].t, 1 + rep % 4, true, &r);
}

// --- 4. edge cases ----------------------------------------------------------------------

static void test_zeros(void) {
    for (int k = 0; k < N_QTYPES; k++) {
        const tt_traits *tr = tt_get(qtypes[k].t);
        int64_t n = 3 * tr->blck;
        float *x = calloc((size_t)n, 4), *y = malloc((size_t)n * 4);
        uint8_t *b = malloc(tt_row_size(qtypes[k].t, n));
        memset(b, 0xAB, tt_row_size(qtypes[k].t, n)); // the quantizer must overwrite every byte that matters
        tr->from_float(x, b, n);
        tr->to_float(b, y, n);
        int bad = 0;
        for (int64_t i = 0; i < n; i++) bad += y[i] != 0.0f;
        CHECK_MSG(bad == 0, "%s: %d nonzero values from zero input", tr->name, bad);
        free(x); free(y); free(b);
    }
    // Zero activations: d = 0, codes 0, sums 0.
    float z[256] = {0};
    blk_q8_K k;
    tt_quantize_q8_K_ref(z, &k, 256);
    CHECK(k.d == 0.0f);
    int nz = 0;
    for (int j = 0; j < 256; j++) nz += k.qs[j] != 0;
    for (int j = 0; j < 16; j++) nz += k.bsums[j] != 0;
    CHECK_EQ_INT(nz, 0);
}

// Constant rows (positive, negative) decode close to the constant; also a
// row that is constant except for one outlier keeps the outlier's sign.
static void test_constant(void) {
    const float cs[] = {0.7f, -0.7f, 3.0f};
    for (int k = 0; k < N_QTYPES; k++) {
        const tt_traits *tr = tt_get(qtypes[k].t);
        int64_t n = 2 * tr->blck;
        float *x = malloc((size_t)n * 4), *y = malloc((size_t)n * 4);
        uint8_t *b = malloc(tt_row_size(qtypes[k].t, n));
        for (size_t c = 0; c < 3; c++) {
            for (int64_t i = 0; i < n; i++) x[i] = cs[c];
            tr->from_float(x, b, n);
            tr->to_float(b, y, n);
            // Exactness is limited by the half scale (and for K-quants the
            // 4/6-bit scale codes): within 2% of the constant everywhere.
            double worst = 0;
            for (int64_t i = 0; i < n; i++) worst = fmax(worst, fabs(y[i] - x[i]));
            CHECK_MSG(worst <= 0.02 * fabs(cs[c]), "%s constant %g: max error %g", tr->name, cs[c], worst);
        }
        free(x); free(y); free(b);
    }
}

// Scale invariance: data scaled by 1e4 and by 1e-2 keeps the round-trip
// bound (the half scales stay normal: no overflow, little underflow); data
// far beyond the half range (1e7) and far below it (1e-9) still decodes to
// finite values (scales saturate or flush to zero, never infinity or NaN).
static void test_magnitudes(void) {
    rng r = {5};
    for (int k = 0; k < N_QTYPES; k++) {
        const tt_traits *tr = tt_get(qtypes[k].t);
        int64_t n = 3 * tr->blck;
        float *x = malloc((size_t)n * 4), *y = malloc((size_t)n * 4);
        uint8_t *b = malloc(tt_row_size(qtypes[k].t, n));
        const double scales[] = {1e4, 1e-2, 1e7, 1e-9};
        for (size_t s = 0; s < 4; s++) {
            for (int64_t i = 0; i < n; i++) x[i] = (float)(rng_gauss(&r) * scales[s]);
            tr->from_float(x, b, n);
            tr->to_float(b, y, n);
            CHECK_MSG(all_finite(y, n), "%s scale %g: non-finite output", tr->name, scales[s]);
            if (s < 2) {
                // 1e-2 data has Q6_K/Q3_K block scales near the half's
                // subnormal range: allow 20% more error there.
                double e = rel_rmse(x, y, n), bound = qtypes[k].bound_gauss * (s == 1 ? 1.2 : 1.0);
                CHECK_MSG(e < bound, "%s scale %g: relative RMSE %.4f >= %.4f", tr->name, scales[s], e, bound);
            }
        }
        free(x); free(y); free(b);
    }
    // Activations of huge and tiny magnitude.
    float xa[256];
    for (int i = 0; i < 256; i++) xa[i] = (float)(rng_gauss(&r) * 1e30);
    blk_q8_K ak;
    tt_quantize_q8_K_ref(xa, &ak, 256);
    CHECK(isfinite(ak.d) && ak.d > 0);
    blk_q8_32 a32[8];
    for (int i = 0; i < 256; i++) xa[i] = (float)(rng_gauss(&r) * 1e-30);
    tt_quantize_q8_32_ref(xa, a32, 256);
    for (int i = 0; i < 8; i++) CHECK(isfinite(a32[i].d) && a32[i].d > 0);
}

// --- 5. real files ---------------------------------------------------------------------

typedef struct real_case {
    const char *file;   // synth-llama-256.<file>.gguf
    const char *tensor;
    tt_type want_type;
    double lo, hi;      // band of relative RMSE against the f16 file
} real_case;

// The f16 file is the source the quantized files were made from (their bytes
// are reproduced below), so the decoded error must look like our round-trip
// error on that data: bands around the values measured on these files.
static const real_case real_cases[] = {
    {"Q8_0", "blk.0.ffn_up.weight", TT_Q8_0, 0.003, 0.007},
    {"Q4_0", "blk.0.ffn_up.weight", TT_Q4_0, 0.06, 0.10},
    {"Q6_K", "blk.0.ffn_up.weight", TT_Q6_K, 0.012, 0.023},
    {"Q4_K_M", "blk.0.ffn_up.weight", TT_Q4_K, 0.05, 0.085},
    {"Q4_K_M", "blk.1.ffn_down.weight", TT_Q6_K, 0.012, 0.023},
    {"Q4_0", "token_embd.weight", TT_Q6_K, 0.012, 0.023},
};

static gguf_file *open_model(const char *which) {
    char rel[128], path[1024];
    snprintf(rel, sizeof rel, "models/synth-llama-256.%s.gguf", which);
    if (!test_shared_path(path, sizeof path, rel)) return NULL;
    gguf_file *f;
    sim_err err;
    if (gguf_open(&f, path, &err) != SIM_OK) {
        CHECK_MSG(0, "%s", err.msg);
        return NULL;
    }
    return f;
}

static int64_t tensor_elems(const gguf_tensor *t) { return t->ne[0] * t->ne[1] * t->ne[2] * t->ne[3]; }

static void test_real_dequant(void) {
    gguf_file *ff = open_model("f16");
    if (!ff) return;
    for (size_t c = 0; c < sizeof real_cases / sizeof real_cases[0]; c++) {
        const real_case *rc = &real_cases[c];
        gguf_file *fq = open_model(rc->file);
        if (!fq) break;
        const gguf_tensor *tf = gguf_find_tensor(ff, rc->tensor), *tq = gguf_find_tensor(fq, rc->tensor);
        CHECK(tf && tq);
        if (!tf || !tq) { gguf_close(fq); continue; }
        CHECK_EQ_INT(tq->type, rc->want_type);
        CHECK_EQ_INT(tf->type, TT_F16);
        int64_t n = tensor_elems(tf);
        CHECK_EQ_INT(tensor_elems(tq), n);
        if (tq->type == rc->want_type && tf->type == TT_F16 && tensor_elems(tq) == n) {
            float *ref = malloc((size_t)n * 4), *y = malloc((size_t)n * 4);
            tt_get(TT_F16)->to_float(tf->data, ref, n);
            tt_get(tq->type)->to_float(tq->data, y, n);
            double e = rel_rmse(ref, y, n);
            CHECK_MSG(e >= rc->lo && e <= rc->hi, "%s %s (%s): relative RMSE %.4f outside [%g, %g]",
                      rc->file, rc->tensor, tt_name(tq->type), e, rc->lo, rc->hi);
            free(ref); free(y);
        }
        gguf_close(fq);
    }
    gguf_close(ff);
}

// Every quantized tensor of every file, requantized from the f16 file with
// our reference quantizer, must equal the file byte for byte: the files were
// made by llama.cpp's reference quantizers, so this pins ours to theirs (and
// our decoders to the files' layouts) exactly.
static void test_real_requantize(void) {
    gguf_file *ff = open_model("f16");
    if (!ff) return;
    const char *files[] = {"Q8_0", "Q4_0", "Q6_K", "Q4_K_M"};
    for (size_t k = 0; k < 4; k++) {
        gguf_file *fq = open_model(files[k]);
        if (!fq) break;
        int checked = 0;
        for (int64_t i = 0; i < fq->n_tensors; i++) {
            const gguf_tensor *tq = &fq->tensors[i];
            const tt_traits *tr = tt_get(tq->type);
            if (!tr || !tr->quantized) continue;
            const gguf_tensor *tf = gguf_find_tensor(ff, tq->name);
            CHECK(tf && tf->type == TT_F16);
            if (!tf || tf->type != TT_F16) continue;
            int64_t n = tensor_elems(tq);
            float *x = malloc((size_t)n * 4);
            uint8_t *b = malloc(tq->size);
            tt_get(TT_F16)->to_float(tf->data, x, n);
            tr->from_float(x, b, n);
            int64_t nb = n / tr->blck, bad = 0, first = -1;
            for (int64_t j = 0; j < nb; j++)
                if (memcmp(b + j * tr->bytes, (const uint8_t *)tq->data + j * tr->bytes, tr->bytes) != 0) {
                    if (first < 0) first = j;
                    bad++;
                }
            CHECK_MSG(bad == 0, "%s %s (%s): %lld of %lld blocks differ, first %lld", files[k], tq->name,
                      tr->name, (long long)bad, (long long)nb, (long long)first);
            checked++;
            free(x); free(b);
        }
        CHECK(checked >= 14);
        gguf_close(fq);
    }
    gguf_close(ff);
}

// The dot products of real quantized rows with quantized activations are
// close to the f16 rows' dot products with the float activations: the RMS
// over rows of (error / sqrt(sum (w_i a_i)^2)) is about the combined relative
// RMSE of weights and activations (measured: Q8_0 .0076, Q4_0 .084, Q6_K
// .018, Q4_K_M .076; the 8-bit activations add about .005).
static void test_real_dot(void) {
    gguf_file *ff = open_model("f16");
    if (!ff) return;
    const char *files[] = {"Q8_0", "Q4_0", "Q6_K", "Q4_K_M"};
    const double tol[] = {0.010, 0.10, 0.025, 0.085};
    rng r = {11};
    for (size_t k = 0; k < 4; k++) {
        gguf_file *fq = open_model(files[k]);
        if (!fq) break;
        const gguf_tensor *tq = gguf_find_tensor(fq, "blk.0.attn_q.weight");
        const gguf_tensor *tf = gguf_find_tensor(ff, "blk.0.attn_q.weight");
        CHECK(tq && tf && tq->ne[0] == 256 && tf->ne[0] == 256);
        if (tq && tf && tq->ne[0] == 256 && tf->ne[0] == 256) {
            const tt_traits *tr = tt_get(tq->type);
            int64_t n = 256;
            float x[256], wf[256], ad[256];
            for (int i = 0; i < 256; i++) x[i] = (float)rng_gauss(&r);
            void *a = make_act(tr->act, x, n, ad, &r, false);
            double se = 0;
            for (int64_t row = 0; row < tq->ne[1]; row++) {
                tt_get(TT_F16)->to_float((const uint8_t *)tf->data + row * tt_row_size(TT_F16, n), wf, n);
                double want = 0, norm = 0;
                for (int64_t i = 0; i < n; i++) {
                    want += (double)wf[i] * x[i];
                    norm += (double)wf[i] * x[i] * wf[i] * x[i];
                }
                float got;
                tr->vec_dot_ref(n, &got, (const uint8_t *)tq->data + row * tt_row_size(tq->type, n), a);
                se += (got - want) * (got - want) / norm;
            }
            double rms = sqrt(se / (double)tq->ne[1]);
            CHECK_MSG(rms < tol[k], "%s: RMS relative dot error %.4f >= %.3f", files[k], rms, tol[k]);
            free(a);
        }
        gguf_close(fq);
    }
    gguf_close(ff);
}

int main(int argc, char **argv) {
    test_init(argc, argv);
    TEST_RUN(test_hand_q4_0);
    TEST_RUN(test_hand_q4_1);
    TEST_RUN(test_hand_q5_0);
    TEST_RUN(test_hand_q5_1);
    TEST_RUN(test_hand_q8_0);
    TEST_RUN(test_hand_q2_K);
    TEST_RUN(test_hand_q3_K);
    TEST_RUN(test_hand_q4_K);
    TEST_RUN(test_hand_q5_K);
    TEST_RUN(test_hand_q6_K);
    TEST_RUN(test_hand_act);
    TEST_RUN(test_round_trip);
    TEST_RUN(test_quality);
    TEST_RUN(test_idempotent);
    TEST_RUN(test_vec_dot);
    TEST_RUN(test_vec_dot_raw_many);
    TEST_RUN(test_zeros);
    TEST_RUN(test_constant);
    TEST_RUN(test_magnitudes);
    TEST_RUN(test_real_dequant);
    TEST_RUN(test_real_requantize);
    TEST_RUN(test_real_dot);
    return test_finish();
}
