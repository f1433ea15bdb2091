// quant.c — the quantized block formats: dequantization, reference
// quantizers and reference dot products (the scalar twins of kern_*.c).
//
// The layouts are ggml's, so blocks read from llama.cpp GGUF files decode
// bit-exactly: every product of a half scale (11 significant bits), a
// sub-block scale (at most 8) and a code (at most 6) is exact in float, so
// the only rounding is the one addition of a min term, as in ggml.
// All halves (tt_half) are IEEE binary16. In file order:
//
// 32-element blocks (x = the element, q = its stored code)
//   Q4_0  half d; u8 qs[16]                 x = d * (q - 8),   q in 0..15
//   Q4_1  half d, m; u8 qs[16]              x = d * q + m,     q in 0..15
//   Q5_0  half d; u8 qh[4]; u8 qs[16]       x = d * (q - 16),  q in 0..31
//   Q5_1  half d, m; u8 qh[4]; u8 qs[16]    x = d * q + m,     q in 0..31
//   Q8_0  half d; i8 qs[32]                 x = d * q
//   Nibbles: qs[i] holds element i (low) and element i + 16 (high). The fifth
//   bit of element i is bit i of the little-endian u32 qh.
//
// 256-element super-blocks ("K-quants"), split into sub-blocks that each have
// their own small integer scale (and min), themselves scaled by the halves d
// (and dmin):
//   Q2_K  u8 scales[16]; u8 qs[64]; half d, dmin
//         16 sub-blocks of 16: x = d*sc*q - dmin*m, sc = scales[j] & 15,
//         m = scales[j] >> 4, q in 0..3.
//   Q3_K  u8 hmask[32]; u8 qs[64]; u8 scales[12]; half d
//         16 sub-blocks of 16: x = d*(sc - 32)*(q - 4), sc a 6-bit code,
//         q = low two bits | third bit (hmask) << 2.
//   Q4_K  half d, dmin; u8 scales[12]; u8 qs[128]
//         8 sub-blocks of 32: x = d*sc*q - dmin*m, sc/m 6-bit codes, q in 0..15.
//   Q5_K  half d, dmin; u8 scales[12]; u8 qh[32]; u8 qs[128]
//         as Q4_K with a fifth bit per element, q in 0..31.
//   Q6_K  u8 ql[128]; u8 qh[64]; i8 scales[16]; half d
//         16 sub-blocks of 16: x = d*sc*(q - 32), q in 0..63 (low 4 bits in
//         ql, high 2 in qh).
// The bit positions are spelled out in each type's unpack function below;
// dequantization and the dot products both go through them, so the layout is
// written down exactly once per type.
//
// Activations (internal, never in files) are 8-bit with a float scale:
// blk_q8_32 (32 elements, plus the sum of its codes) for the 32-element
// types and blk_q8_K (256 elements, plus sums per 16) for the K-quants. The
// precomputed sums turn the offset and min terms of a dot product into one
// multiplication per (sub-)block:
//   Q4_0:  sum_j d*(q_j - 8) * da*a_j = d*da * (sum_j q_j*a_j - 8 * sum_j a_j).
//
// Reference dot products: every (sub-)block's integer dot product is exact
// in int32; the float scales are then applied in double (53 bits hold each
// block's contribution exactly, or within one double rounding for the types
// with a min) and summed in double. The result is the exact dot product of
// the dequantized operands up to the final rounding to float: what the fast
// kernels are tested against.
//
// Reference quantizers follow the semantics of ggml's reference quantizers
// (written independently here, down to the rounding of ties: half up for the
// 32-element types, half to even in the K-quants), and reproduce llama.cpp's
// Q8_0, Q4_0, Q4_K and Q6_K files byte for byte (tests/test_quant.c):
//   32-element blocks: one scale from the value of largest magnitude (Q4_0,
//   Q5_0, Q8_0) or from the min and max (Q4_1, Q5_1), then round to nearest.
//   K-quants: per sub-block a search over candidate scales (and mins) that
//   minimizes a weighted error, then the sub-block scales themselves are
//   quantized against the super-block's half scale and the elements are
//   re-rounded against the scale that will actually be stored.
// Scales that would overflow a half saturate at the largest finite half
// (ggml would store infinity), so every output block decodes to finite values.
#include "tensor/quant.h"

#include <math.h>
#include <stdbool.h>
#include <string.h>

#include "base/base.h"

// --- helpers ---------------------------------------------------------------------

// Groups whose largest magnitude is below this are stored as zeros (their
// inverse scale would overflow).
#define GROUP_EPS 1e-15f
#define HALF_MAX 65504.0f

static inline float fp16(tt_half h) { return tt_half_to_float(h); }

// Float to half, saturating at the largest finite half instead of overflowing.
static inline tt_half half_sat(float f) {
    if (f > HALF_MAX) f = HALF_MAX;
    if (f < -HALF_MAX) f = -HALF_MAX;
    return tt_float_to_half(f);
}

// Clamps v to [lo, hi] and converts to int; NaN becomes lo. Comparing in
// float first keeps the conversion defined for any input.
static inline int clamp_int(float v, int lo, int hi) {
    if (!(v >= (float)lo)) return lo;
    if (v >= (float)hi) return hi;
    return (int)v;
}

// Round to nearest, ties to even: what the SIMD conversions do under the
// default rounding mode, so fast quantizers can match this one bit for bit.
// Independent of the floating-point environment.
static inline float round_even(float v) {
    float r = roundf(v); // ties away from zero
    if (fabsf(r - v) == 0.5f) r = 2.0f * roundf(0.5f * v);
    return r;
}

// round_even then clamp to [lo, hi].
static inline int nearest(float v, int lo, int hi) { return clamp_int(round_even(v), lo, hi); }

// The signed value of largest magnitude (the first one on ties); *amax = its magnitude.
static float max_magnitude(const float *x, int n, float *amax) {
    float best = 0, abest = 0;
    for (int i = 0; i < n; i++) {
        float a = fabsf(x[i]);
        if (a > abest) {
            abest = a;
            best = x[i];
        }
    }
    *amax = abest;
    return best;
}

// --- 32-element blocks: Q4_0, Q4_1, Q5_0, Q5_1, Q8_0 -------------------------------

// The codes of element j and j + 16 share byte j of qs; qh bit j is element j's fifth bit.
static void unpack_nibbles(const uint8_t qs[16], const uint8_t *qh, int q[32]) {
    uint32_t h = 0;
    if (qh) h = (uint32_t)qh[0] | (uint32_t)qh[1] << 8 | (uint32_t)qh[2] << 16 | (uint32_t)qh[3] << 24;
    for (int j = 0; j < 16; j++) {
        q[j] = (qs[j] & 0xF) | (int)((h >> j) & 1) << 4;
        q[j + 16] = (qs[j] >> 4) | (int)((h >> (j + 16)) & 1) << 4;
    }
}

static void pack_nibbles(const int q[32], uint8_t qs[16], uint8_t *qh) {
    uint32_t h = 0;
    for (int j = 0; j < 16; j++) {
        qs[j] = (uint8_t)((q[j] & 0xF) | (q[j + 16] & 0xF) << 4);
        h |= (uint32_t)((q[j] >> 4) & 1) << j;
        h |= (uint32_t)((q[j + 16] >> 4) & 1) << (j + 16);
    }
    if (qh)
        for (int k = 0; k < 4; k++) qh[k] = (uint8_t)(h >> (8 * k));
}

// sum_j q[j] * a->qs[j], exact.
static int32_t dot_codes32(const int q[32], const blk_q8_32 *a) {
    int32_t s = 0;
    for (int j = 0; j < 32; j++) s += q[j] * a->qs[j];
    return s;
}

// Symmetric types (Q4_0, Q5_0): d = max / -half_range, where max is the value of
// largest magnitude, so that value maps exactly to code 0 (-half_range) and
// the code range [-half_range, half_range - 1] is used without clipping the
// other sign by more than rounding. Codes round half up as ggml's do.
static float quant_sym32(const float *x, int q[32], int half_range) {
    float amax;
    float max = max_magnitude(x, 32, &amax);
    float d = max / (float)-half_range;
    if (d > HALF_MAX) d = HALF_MAX;
    if (d < -HALF_MAX) d = -HALF_MAX;
    float id = d != 0 ? 1.0f / d : 0.0f;
    for (int j = 0; j < 32; j++)
        q[j] = clamp_int(floorf(x[j] * id + ((float)half_range + 0.5f)), 0, 2 * half_range - 1);
    return d;
}

// Affine types (Q4_1, Q5_1): x = min + d * q spans [min, max] with nmax + 1 codes.
static float quant_affine32(const float *x, int q[32], int nmax, float *min_out) {
    float lo = x[0], hi = x[0];
    for (int j = 1; j < 32; j++) {
        lo = fminf(lo, x[j]);
        hi = fmaxf(hi, x[j]);
    }
    if (lo < -HALF_MAX) lo = -HALF_MAX;
    float d = (hi - lo) / (float)nmax;
    if (d > HALF_MAX) d = HALF_MAX;
    float id = d != 0 ? 1.0f / d : 0.0f;
    for (int j = 0; j < 32; j++) q[j] = clamp_int(floorf((x[j] - lo) * id + 0.5f), 0, nmax);
    *min_out = lo;
    return d;
}

void dequant_q4_0(const void *src, float *dst, int64_t n) {
    ASSERT(n % QK4_0 == 0);
    const blk_q4_0 *b = src;
    for (int64_t i = 0; i < n / QK4_0; i++) {
        int q[32];
        unpack_nibbles(b[i].qs, NULL, q);
        float d = fp16(b[i].d);
        for (int j = 0; j < 32; j++) dst[i * 32 + j] = (float)(q[j] - 8) * d;
    }
}

void quant_q4_0_ref(const float *src, void *dst, int64_t n) {
    ASSERT(n % QK4_0 == 0);
    blk_q4_0 *b = dst;
    for (int64_t i = 0; i < n / QK4_0; i++) {
        int q[32];
        b[i].d = tt_float_to_half(quant_sym32(src + i * 32, q, 8));
        pack_nibbles(q, b[i].qs, NULL);
    }
}

void vec_dot_q4_0_ref(int64_t n, float *s, const void *w, const void *a) {
    ASSERT(n % QK4_0 == 0);
    const blk_q4_0 *x = w;
    const blk_q8_32 *y = a;
    double sum = 0;
    for (int64_t i = 0; i < n / QK4_0; i++) {
        int q[32];
        unpack_nibbles(x[i].qs, NULL, q);
        int32_t sumi = dot_codes32(q, &y[i]) - 8 * y[i].sum;
        sum += (double)fp16(x[i].d) * y[i].d * sumi;
    }
    *s = (float)sum;
}

void dequant_q4_1(const void *src, float *dst, int64_t n) {
    ASSERT(n % QK4_1 == 0);
    const blk_q4_1 *b = src;
    for (int64_t i = 0; i < n / QK4_1; i++) {
        int q[32];
        unpack_nibbles(b[i].qs, NULL, q);
        float d = fp16(b[i].d), m = fp16(b[i].m);
        for (int j = 0; j < 32; j++) dst[i * 32 + j] = (float)q[j] * d + m;
    }
}

void quant_q4_1_ref(const float *src, void *dst, int64_t n) {
    ASSERT(n % QK4_1 == 0);
    blk_q4_1 *b = dst;
    for (int64_t i = 0; i < n / QK4_1; i++) {
        int q[32];
        float m;
        float d = quant_affine32(src + i * 32, q, 15, &m);
        b[i].d = tt_float_to_half(d);
        b[i].m = half_sat(m);
        pack_nibbles(q, b[i].qs, NULL);
    }
}

void vec_dot_q4_1_ref(int64_t n, float *s, const void *w, const void *a) {
    ASSERT(n % QK4_1 == 0);
    const blk_q4_1 *x = w;
    const blk_q8_32 *y = a;
    double sum = 0;
    for (int64_t i = 0; i < n / QK4_1; i++) {
        int q[32];
        unpack_nibbles(x[i].qs, NULL, q);
        // sum_j (d*q_j + m) * da*a_j = da * (d * sum q_j*a_j + m * sum a_j)
        sum += (double)y[i].d * ((double)fp16(x[i].d) * dot_codes32(q, &y[i]) +
                                 (double)fp16(x[i].m) * y[i].sum);
    }
    *s = (float)sum;
}

void dequant_q5_0(const void *src, float *dst, int64_t n) {
    ASSERT(n % QK5_0 == 0);
    const blk_q5_0 *b = src;
    for (int64_t i = 0; i < n / QK5_0; i++) {
        int q[32];
        unpack_nibbles(b[i].qs, b[i].qh, q);
        float d = fp16(b[i].d);
        for (int j = 0; j < 32; j++) dst[i * 32 + j] = (float)(q[j] - 16) * d;
    }
}

void quant_q5_0_ref(const float *src, void *dst, int64_t n) {
    ASSERT(n % QK5_0 == 0);
    blk_q5_0 *b = dst;
    for (int64_t i = 0; i < n / QK5_0; i++) {
        int q[32];
        b[i].d = tt_float_to_half(quant_sym32(src + i * 32, q, 16));
        pack_nibbles(q, b[i].qs, b[i].qh);
    }
}

void vec_dot_q5_0_ref(int64_t n, float *s, const void *w, const void *a) {
    ASSERT(n % QK5_0 == 0);
    const blk_q5_0 *x = w;
    const blk_q8_32 *y = a;
    double sum = 0;
    for (int64_t i = 0; i < n / QK5_0; i++) {
        int q[32];
        unpack_nibbles(x[i].qs, x[i].qh, q);
        int32_t sumi = dot_codes32(q, &y[i]) - 16 * y[i].sum;
        sum += (double)fp16(x[i].d) * y[i].d * sumi;
    }
    *s = (float)sum;
}

void dequant_q5_1(const void *src, float *dst, int64_t n) {
    ASSERT(n % QK5_1 == 0);
    const blk_q5_1 *b = src;
    for (int64_t i = 0; i < n / QK5_1; i++) {
        int q[32];
        unpack_nibbles(b[i].qs, b[i].qh, q);
        float d = fp16(b[i].d), m = fp16(b[i].m);
        for (int j = 0; j < 32; j++) dst[i * 32 + j] = (float)q[j] * d + m;
    }
}

void quant_q5_1_ref(const float *src, void *dst, int64_t n) {
    ASSERT(n % QK5_1 == 0);
    blk_q5_1 *b = dst;
    for (int64_t i = 0; i < n / QK5_1; i++) {
        int q[32];
        float m;
        float d = quant_affine32(src + i * 32, q, 31, &m);
        b[i].d = tt_float_to_half(d);
        b[i].m = half_sat(m);
        pack_nibbles(q, b[i].qs, b[i].qh);
    }
}

void vec_dot_q5_1_ref(int64_t n, float *s, const void *w, const void *a) {
    ASSERT(n % QK5_1 == 0);
    const blk_q5_1 *x = w;
    const blk_q8_32 *y = a;
    double sum = 0;
    for (int64_t i = 0; i < n / QK5_1; i++) {
        int q[32];
        unpack_nibbles(x[i].qs, x[i].qh, q);
        sum += (double)y[i].d * ((double)fp16(x[i].d) * dot_codes32(q, &y[i]) +
                                 (double)fp16(x[i].m) * y[i].sum);
    }
    *s = (float)sum;
}

void dequant_q8_0(const void *src, float *dst, int64_t n) {
    ASSERT(n % QK8_0 == 0);
    const blk_q8_0 *b = src;
    for (int64_t i = 0; i < n / QK8_0; i++) {
        float d = fp16(b[i].d);
        for (int j = 0; j < 32; j++) dst[i * 32 + j] = (float)b[i].qs[j] * d;
    }
}

// d = amax / 127 and codes rounded half away from zero, as ggml does (so our
// Q8_0 files match llama.cpp's byte for byte).
void quant_q8_0_ref(const float *src, void *dst, int64_t n) {
    ASSERT(n % QK8_0 == 0);
    blk_q8_0 *b = dst;
    for (int64_t i = 0; i < n / QK8_0; i++) {
        const float *x = src + i * 32;
        float amax;
        max_magnitude(x, 32, &amax);
        float d = fminf(amax / 127.0f, HALF_MAX);
        float id = d != 0 ? 1.0f / d : 0.0f;
        b[i].d = tt_float_to_half(d);
        for (int j = 0; j < 32; j++) b[i].qs[j] = (int8_t)clamp_int(roundf(x[j] * id), -127, 127);
    }
}

void vec_dot_q8_0_ref(int64_t n, float *s, const void *w, const void *a) {
    ASSERT(n % QK8_0 == 0);
    const blk_q8_0 *x = w;
    const blk_q8_32 *y = a;
    double sum = 0;
    for (int64_t i = 0; i < n / QK8_0; i++) {
        int32_t sumi = 0;
        for (int j = 0; j < 32; j++) sumi += x[i].qs[j] * y[i].qs[j];
        sum += (double)fp16(x[i].d) * y[i].d * sumi;
    }
    *s = (float)sum;
}

// --- activations: Q8_32 and Q8_K ------------------------------------------------------

// Per 32: d = amax / 127, qs = round_even(x * (1/d)) (0 when d == 0), sum = sum of qs.
void tt_quantize_q8_32_ref(const float *x, blk_q8_32 *y, int64_t n) {
    ASSERT(n % 32 == 0);
    for (int64_t i = 0; i < n / 32; i++) {
        const float *xb = x + i * 32;
        float amax;
        max_magnitude(xb, 32, &amax);
        float d = amax / 127.0f;
        float id = d != 0 ? 1.0f / d : 0.0f;
        int32_t sum = 0;
        for (int j = 0; j < 32; j++) {
            int q = nearest(xb[j] * id, -127, 127);
            y[i].qs[j] = (int8_t)q;
            sum += q;
        }
        y[i].d = d;
        y[i].sum = sum;
    }
}

// Per 256: d = amax / 127 (positive, like Q8_32; ggml instead uses the signed
// value of largest magnitude over -127, the same grid up to sign), qs =
// round_even(x * (1/d)) in -127..127, bsums[k] = sum of qs[16k..16k+16).
void tt_quantize_q8_K_ref(const float *x, blk_q8_K *y, int64_t n) {
    ASSERT(n % QK_K == 0);
    for (int64_t i = 0; i < n / QK_K; i++) {
        const float *xb = x + i * QK_K;
        float amax;
        max_magnitude(xb, QK_K, &amax);
        float d = amax / 127.0f;
        float id = d != 0 ? 1.0f / d : 0.0f;
        for (int j = 0; j < QK_K; j++) y[i].qs[j] = (int8_t)nearest(xb[j] * id, -127, 127);
        for (int k = 0; k < QK_K / 16; k++) {
            int s = 0;
            for (int l = 0; l < 16; l++) s += y[i].qs[16 * k + l];
            y[i].bsums[k] = (int16_t)s;
        }
        y[i].d = d;
    }
}

// --- K-quant scale searches ---------------------------------------------------------

// Fits x[i] ~ scale * L[i] - mn with codes L[i] in 0..nmax and mn >= 0 (the
// model of Q2_K/Q4_K/Q5_K sub-blocks), minimizing sum_i w[i] * err(residual),
// err = |r| (use_abs) or r^2. Starts from the grid spanning [min(x, 0),
// max(x)], then tries inverse scales (nmax + rmin + k*rdelta) / range for k in
// 0..nstep: for each, the codes are rounded and the best (scale, mn) for those
// codes comes from weighted least squares (with mn clamped to >= 0). As in
// ggml, an accepted candidate's min becomes the origin of the later
// candidates. Returns the scale, writes mn and the codes (L; aux is scratch).
static float search_scale_min(int n, int nmax, const float *x, const float *w, uint8_t *L,
                              uint8_t *aux, float *mn, float rmin, float rdelta, int nstep,
                              bool use_abs) {
    float lo = x[0], hi = x[0], sw = 0, swx = 0;
    for (int i = 0; i < n; i++) {
        lo = fminf(lo, x[i]);
        hi = fmaxf(hi, x[i]);
        sw += w[i];
        swx += w[i] * x[i];
    }
    if (lo > 0) lo = 0; // the min term can only subtract
    if (hi == lo) {
        memset(L, 0, (size_t)n);
        *mn = -lo;
        return 0;
    }
    float iscale = (float)nmax / (hi - lo), scale = 1 / iscale;
    float best = 0;
    for (int i = 0; i < n; i++) {
        L[i] = (uint8_t)nearest(iscale * (x[i] - lo), 0, nmax);
        float r = scale * L[i] + lo - x[i];
        best += w[i] * (use_abs ? fabsf(r) : r * r);
    }
    for (int k = 0; k <= nstep; k++) {
        iscale = (rmin + rdelta * (float)k + (float)nmax) / (hi - lo);
        float sl = 0, sl2 = 0, sxl = 0;
        for (int i = 0; i < n; i++) {
            int l = nearest(iscale * (x[i] - lo), 0, nmax);
            aux[i] = (uint8_t)l;
            sl += w[i] * (float)l;
            sl2 += w[i] * (float)l * (float)l;
            sxl += w[i] * (float)l * x[i];
        }
        float det = sw * sl2 - sl * sl;
        if (!(det > 0)) continue;
        float s = (sw * sxl - swx * sl) / det;
        float m = (sl2 * swx - sl * sxl) / det; // the (negative) offset
        if (m > 0) {
            m = 0;
            s = sxl / sl2;
        }
        float e = 0;
        for (int i = 0; i < n; i++) {
            float r = s * aux[i] + m - x[i];
            e += w[i] * (use_abs ? fabsf(r) : r * r);
        }
        if (e < best) {
            memcpy(L, aux, (size_t)n);
            best = e;
            scale = s;
            lo = m;
        }
    }
    *mn = -lo;
    return scale;
}

// Rounds x[i] * iscale to -nmax..nmax-1 into l (may be NULL) and returns the
// weighted sums sum w*x*l and sum w*l^2 with weights w = x^2.
static void round_sym(int n, int nmax, const float *x, float iscale, int *l, float *sxl,
                      float *sl2) {
    *sxl = *sl2 = 0;
    for (int i = 0; i < n; i++) {
        int li = nearest(iscale * x[i], -nmax, nmax - 1);
        if (l) l[i] = li;
        float w = x[i] * x[i];
        *sxl += w * x[i] * (float)li;
        *sl2 += w * (float)li * (float)li;
    }
}

// Fits x[i] ~ scale * l[i] with l[i] in -nmax..nmax-1 (Q6_K sub-blocks),
// weights x[i]^2. Starts from the inverse scale -nmax / max (max = the value
// of largest magnitude) and tries -(nmax + k/10) / max for k in -9..9,
// keeping the rounding whose least-squares scale explains the most weighted
// energy (sum w*x*l)^2 / sum w*l^2, i.e. leaves the least weighted squared
// error. Writes codes L[i] = l[i] + nmax and returns the scale (0 for a
// group of zeros).
static float search_scale_sym(int n, int nmax, const float *x, uint8_t *L) {
    float amax;
    float max = max_magnitude(x, n, &amax);
    if (amax < GROUP_EPS) {
        memset(L, 0, (size_t)n);
        return 0;
    }
    int l[QK_K], best_l[QK_K];
    float sxl, sl2;
    round_sym(n, nmax, x, -(float)nmax / max, best_l, &sxl, &sl2);
    float scale = sl2 > 0 ? sxl / sl2 : 0;
    float best = scale * sxl; // = sxl^2 / sl2
    for (int k = -9; k <= 9; k++) {
        if (k == 0) continue;
        round_sym(n, nmax, x, -((float)nmax + 0.1f * (float)k) / max, l, &sxl, &sl2);
        // sxl^2 / sl2 > best, without dividing
        if (sl2 > 0 && sxl * sxl > best * sl2) {
            memcpy(best_l, l, (size_t)n * sizeof *l);
            scale = sxl / sl2;
            best = scale * sxl;
        }
    }
    for (int i = 0; i < n; i++) L[i] = (uint8_t)(best_l[i] + nmax);
    return scale;
}

// Fits x[i] ~ scale * l[i] with l[i] in -nmax..nmax-1 (Q3_K sub-blocks),
// weights x[i]^2: starts from the rounding with inverse scale -nmax / max, then
// repeatedly moves single codes to the value that is optimal for the current
// least-squares scale when that raises sum(w x l)^2 / sum(w l^2), for at most
// five passes. Writes L[i] = l[i] + nmax and returns the scale.
static float search_scale_q3(int n, int nmax, const float *x, uint8_t *L) {
    float amax;
    float max = max_magnitude(x, n, &amax);
    if (amax < GROUP_EPS) {
        memset(L, 0, (size_t)n);
        return 0;
    }
    float iscale = -(float)nmax / max;
    int l[QK_K];
    float sxl = 0, sl2 = 0;
    for (int i = 0; i < n; i++) {
        l[i] = nearest(iscale * x[i], -nmax, nmax - 1);
        float w = x[i] * x[i];
        sxl += w * x[i] * (float)l[i];
        sl2 += w * (float)l[i] * (float)l[i];
    }
    for (int pass = 0; pass < 5; pass++) {
        int changed = 0;
        for (int i = 0; i < n; i++) {
            float w = x[i] * x[i];
            float sxl_o = sxl - w * x[i] * (float)l[i]; // the sums without element i
            if (!(sxl_o > 0)) continue;
            float sl2_o = sl2 - w * (float)l[i] * (float)l[i];
            int nl = nearest(x[i] * sl2_o / sxl_o, -nmax, nmax - 1);
            if (nl == l[i]) continue;
            float sxl_n = sxl_o + w * x[i] * (float)nl;
            float sl2_n = sl2_o + w * (float)nl * (float)nl;
            if (sl2_n > 0 && sxl_n * sxl_n * sl2 > sxl * sxl * sl2_n) {
                l[i] = nl;
                sxl = sxl_n;
                sl2 = sl2_n;
                changed++;
            }
        }
        if (!changed) break;
    }
    for (int i = 0; i < n; i++) L[i] = (uint8_t)(l[i] + nmax);
    return sl2 > 0 ? sxl / sl2 : 0;
}

// Quantizes non-negative sub-block scales v[0..n) to codes 0..qmax against
// one super-block scale max(v) / qmax (returned; 0 when all are 0).
static float quant_sub_scales(const float *v, int n, int qmax, uint8_t *codes) {
    float vmax = 0;
    for (int j = 0; j < n; j++) vmax = fmaxf(vmax, v[j]);
    if (!(vmax > GROUP_EPS)) {
        memset(codes, 0, (size_t)n);
        return 0;
    }
    float iv = (float)qmax / vmax;
    for (int j = 0; j < n; j++) codes[j] = (uint8_t)nearest(iv * v[j], 0, qmax);
    return vmax / (float)qmax;
}

// --- Q2_K ------------------------------------------------------------------------------

// 2-bit codes: per 128-element half h, byte qs[32h + l] holds elements
// 128h + 32s + l in bits 2s..2s+1 for s = 0..3. (Q3_K shares this layout.)
static void unpack_2bit(const uint8_t qs[64], uint8_t q[QK_K]) {
    for (int h = 0; h < 2; h++)
        for (int s = 0; s < 4; s++)
            for (int l = 0; l < 32; l++) q[128 * h + 32 * s + l] = (qs[32 * h + l] >> (2 * s)) & 3;
}

static void pack_2bit(const uint8_t q[QK_K], uint8_t qs[64]) {
    for (int h = 0; h < 2; h++)
        for (int l = 0; l < 32; l++) {
            const uint8_t *e = q + 128 * h + l;
            qs[32 * h + l] = (uint8_t)((e[0] & 3) | (e[32] & 3) << 2 | (e[64] & 3) << 4 | (e[96] & 3) << 6);
        }
}

void dequant_q2_K(const void *src, float *dst, int64_t n) {
    ASSERT(n % QK_K == 0);
    const blk_q2_K *b = src;
    for (int64_t i = 0; i < n / QK_K; i++) {
        uint8_t q[QK_K];
        unpack_2bit(b[i].qs, q);
        float d = fp16(b[i].d), dmin = fp16(b[i].dmin);
        float *y = dst + i * QK_K;
        for (int j = 0; j < 16; j++) {
            float dl = d * (float)(b[i].scales[j] & 0xF), ml = dmin * (float)(b[i].scales[j] >> 4);
            for (int l = 0; l < 16; l++) y[16 * j + l] = dl * (float)q[16 * j + l] - ml;
        }
    }
}

// Sub-blocks are fitted with weights |x| and absolute error (few codes: the
// fit should favour the large values); the 16 scales and 16 mins are then
// quantized to 4 bits against d and dmin.
void quant_q2_K_ref(const float *src, void *dst, int64_t n) {
    ASSERT(n % QK_K == 0);
    blk_q2_K *b = dst;
    for (int64_t i = 0; i < n / QK_K; i++) {
        const float *x = src + i * QK_K;
        uint8_t L[QK_K], aux[16], sc[16], mc[16];
        float scales[16], mins[16], w[16];
        for (int j = 0; j < 16; j++) {
            for (int l = 0; l < 16; l++) w[l] = fabsf(x[16 * j + l]);
            scales[j] = search_scale_min(16, 3, x + 16 * j, w, L + 16 * j, aux, &mins[j], -0.5f,
                                         0.1f, 15, true);
        }
        float d = quant_sub_scales(scales, 16, 15, sc);
        float dmin = quant_sub_scales(mins, 16, 15, mc);
        b[i].d = half_sat(d);
        b[i].dmin = half_sat(dmin);
        for (int j = 0; j < 16; j++) b[i].scales[j] = (uint8_t)(sc[j] | mc[j] << 4);
        // Re-round every element against the scale and min as stored.
        for (int j = 0; j < 16; j++) {
            float dl = fp16(b[i].d) * (float)sc[j], ml = fp16(b[i].dmin) * (float)mc[j];
            for (int l = 0; l < 16; l++)
                L[16 * j + l] = dl != 0 ? (uint8_t)nearest((x[16 * j + l] + ml) / dl, 0, 3) : 0;
        }
        pack_2bit(L, b[i].qs);
    }
}

void vec_dot_q2_K_ref(int64_t n, float *s, const void *w, const void *a) {
    ASSERT(n % QK_K == 0);
    const blk_q2_K *x = w;
    const blk_q8_K *y = a;
    double sum = 0;
    for (int64_t i = 0; i < n / QK_K; i++) {
        uint8_t q[QK_K];
        unpack_2bit(x[i].qs, q);
        int32_t sumi = 0, summ = 0; // sum_j sc_j * (q.a)_j and sum_j m_j * (sum a)_j
        for (int j = 0; j < 16; j++) {
            int32_t dot = 0;
            for (int l = 0; l < 16; l++) dot += q[16 * j + l] * y[i].qs[16 * j + l];
            sumi += (x[i].scales[j] & 0xF) * dot;
            summ += (x[i].scales[j] >> 4) * y[i].bsums[j];
        }
        sum += (double)y[i].d * ((double)fp16(x[i].d) * sumi - (double)fp16(x[i].dmin) * summ);
    }
    *s = (float)sum;
}

// --- Q3_K ------------------------------------------------------------------------------

// The 16 6-bit scale codes: the low 4 bits of code j are the low (j < 8) or
// high (j >= 8) nibble of scales[j % 8]; its high 2 bits are bits 2(j/4)..
// 2(j/4)+1 of scales[8 + j % 4]. The scale is code - 32.
static void unpack_q3_scales(const uint8_t s[12], int sc[16]) {
    for (int j = 0; j < 16; j++) {
        int lo = j < 8 ? s[j] & 0xF : s[j - 8] >> 4;
        int hi = (s[8 + j % 4] >> (2 * (j / 4))) & 3;
        sc[j] = (lo | hi << 4) - 32;
    }
}

static void pack_q3_scales(const int sc[16], uint8_t s[12]) {
    memset(s, 0, 12);
    for (int j = 0; j < 16; j++) {
        int c = sc[j] + 32; // 0..63
        s[j % 8] |= (uint8_t)((c & 0xF) << (j < 8 ? 0 : 4));
        s[8 + j % 4] |= (uint8_t)((c >> 4) << (2 * (j / 4)));
    }
}

// Element e's value code q - 4 in -4..3: the low two bits as in Q2_K, and bit
// e / 32 of hmask[e % 32] set when the -4 offset does not apply.
static void unpack_q3(const blk_q3_K *b, int8_t q[QK_K]) {
    uint8_t low[QK_K];
    unpack_2bit(b->qs, low);
    for (int e = 0; e < QK_K; e++)
        q[e] = (int8_t)(low[e] - ((b->hmask[e % 32] >> (e / 32)) & 1 ? 0 : 4));
}

void dequant_q3_K(const void *src, float *dst, int64_t n) {
    ASSERT(n % QK_K == 0);
    const blk_q3_K *b = src;
    for (int64_t i = 0; i < n / QK_K; i++) {
        int8_t q[QK_K];
        int sc[16];
        unpack_q3(&b[i], q);
        unpack_q3_scales(b[i].scales, sc);
        float d = fp16(b[i].d);
        float *y = dst + i * QK_K;
        for (int j = 0; j < 16; j++) {
            float dl = d * (float)sc[j];
            for (int l = 0; l < 16; l++) y[16 * j + l] = dl * (float)q[16 * j + l];
        }
    }
}

// Sub-blocks: symmetric 3-bit fits (weights x^2); the 16 signed scales are
// quantized to -32..31 against d = max_scale / -32 (max_scale = the scale of
// largest magnitude, which thus gets code -32).
void quant_q3_K_ref(const float *src, void *dst, int64_t n) {
    ASSERT(n % QK_K == 0);
    blk_q3_K *b = dst;
    for (int64_t i = 0; i < n / QK_K; i++) {
        const float *x = src + i * QK_K;
        uint8_t L[QK_K];
        float scales[16];
        for (int j = 0; j < 16; j++) scales[j] = search_scale_q3(16, 4, x + 16 * j, L + 16 * j);
        float amax;
        float max_scale = max_magnitude(scales, 16, &amax);
        int sc[16] = {0};
        float d = 0;
        if (amax > GROUP_EPS) {
            float iscale = -32.0f / max_scale;
            for (int j = 0; j < 16; j++) sc[j] = nearest(iscale * scales[j], -32, 31);
            d = 1 / iscale;
        }
        pack_q3_scales(sc, b[i].scales);
        b[i].d = half_sat(d);
        for (int j = 0; j < 16; j++) {
            float dl = fp16(b[i].d) * (float)sc[j];
            for (int l = 0; l < 16; l++)
                L[16 * j + l] = dl != 0 ? (uint8_t)(nearest(x[16 * j + l] / dl, -4, 3) + 4) : 4;
        }
        // Codes 4..7 (value >= 0) set their hmask bit and keep the low two bits.
        memset(b[i].hmask, 0, sizeof b[i].hmask);
        for (int e = 0; e < QK_K; e++)
            if (L[e] > 3) {
                b[i].hmask[e % 32] |= (uint8_t)(1 << (e / 32));
                L[e] -= 4;
            }
        pack_2bit(L, b[i].qs);
    }
}

void vec_dot_q3_K_ref(int64_t n, float *s, const void *w, const void *a) {
    ASSERT(n % QK_K == 0);
    const blk_q3_K *x = w;
    const blk_q8_K *y = a;
    double sum = 0;
    for (int64_t i = 0; i < n / QK_K; i++) {
        int8_t q[QK_K];
        int sc[16];
        unpack_q3(&x[i], q);
        unpack_q3_scales(x[i].scales, sc);
        int32_t sumi = 0;
        for (int j = 0; j < 16; j++) {
            int32_t dot = 0;
            for (int l = 0; l < 16; l++) dot += q[16 * j + l] * y[i].qs[16 * j + l];
            sumi += sc[j] * dot;
        }
        sum += (double)y[i].d * fp16(x[i].d) * sumi;
    }
    *s = (float)sum;
}

// --- Q4_K and Q5_K -------------------------------------------------------------------------

// 8 scale codes and 8 min codes of 6 bits in 12 bytes. For j < 4: scale j is
// the low 6 bits of s[j], min j the low 6 bits of s[j + 4]. For j >= 4: the
// low nibble / high nibble of s[j + 4] are the low 4 bits of scale / min j,
// and their high 2 bits are the top 2 bits of s[j - 4] / s[j].
static void unpack_k4_scales(const uint8_t s[12], uint8_t sc[8], uint8_t m[8]) {
    for (int j = 0; j < 4; j++) {
        sc[j] = s[j] & 63;
        m[j] = s[j + 4] & 63;
    }
    for (int j = 4; j < 8; j++) {
        sc[j] = (uint8_t)((s[j + 4] & 0xF) | (s[j - 4] >> 6) << 4);
        m[j] = (uint8_t)((s[j + 4] >> 4) | (s[j] >> 6) << 4);
    }
}

static void pack_k4_scales(const uint8_t sc[8], const uint8_t m[8], uint8_t s[12]) {
    for (int j = 0; j < 4; j++) {
        s[j] = (uint8_t)((sc[j] & 63) | (sc[j + 4] >> 4) << 6);
        s[j + 4] = (uint8_t)((m[j] & 63) | (m[j + 4] >> 4) << 6);
        s[j + 8] = (uint8_t)((sc[j + 4] & 0xF) | (m[j + 4] & 0xF) << 4);
    }
}

// Codes of Q4_K (qh == NULL) and Q5_K: per 64-element group g, byte
// qs[32g + l] holds element 64g + l (low nibble) and 64g + 32 + l (high
// nibble); their fifth bits are bits 2g and 2g + 1 of qh[l].
static void unpack_k45(const uint8_t qs[128], const uint8_t *qh, uint8_t q[QK_K]) {
    for (int g = 0; g < 4; g++)
        for (int l = 0; l < 32; l++) {
            uint8_t h = qh ? qh[l] : 0;
            q[64 * g + l] = (uint8_t)((qs[32 * g + l] & 0xF) | ((h >> (2 * g)) & 1) << 4);
            q[64 * g + 32 + l] = (uint8_t)((qs[32 * g + l] >> 4) | ((h >> (2 * g + 1)) & 1) << 4);
        }
}

static void pack_k45(const uint8_t q[QK_K], uint8_t qs[128], uint8_t *qh) {
    if (qh) memset(qh, 0, 32);
    for (int g = 0; g < 4; g++)
        for (int l = 0; l < 32; l++) {
            uint8_t a = q[64 * g + l], c = q[64 * g + 32 + l];
            qs[32 * g + l] = (uint8_t)((a & 0xF) | (c & 0xF) << 4);
            if (qh) qh[l] |= (uint8_t)(((a >> 4) & 1) << (2 * g) | ((c >> 4) & 1) << (2 * g + 1));
        }
}

// x = (d*sc)*q - dmin*m, per sub-block of 32, as ggml computes it.
static void dequant_k45_block(tt_half dh, tt_half dminh, const uint8_t scales[12],
                              const uint8_t q[QK_K], float *y) {
    uint8_t sc[8], m[8];
    unpack_k4_scales(scales, sc, m);
    float d = fp16(dh), dmin = fp16(dminh);
    for (int j = 0; j < 8; j++) {
        float dl = d * (float)sc[j], ml = dmin * (float)m[j];
        for (int l = 0; l < 32; l++) y[32 * j + l] = dl * (float)q[32 * j + l] - ml;
    }
}

// Shared quantizer of Q4_K (nmax 15) and Q5_K (nmax 31). Sub-blocks of 32 are
// fitted with weights rms(x) + |x| (squared error), then the 8 scales and 8
// mins are quantized to 6 bits against d and dmin, and the elements re-rounded.
static void quant_k45_block(const float *x, int nmax, float rmin, int nstep, tt_half *dh,
                            tt_half *dminh, uint8_t scales[12], uint8_t L[QK_K]) {
    uint8_t aux[32], sc[8], mc[8];
    float sub_scale[8], sub_min[8], w[32];
    for (int j = 0; j < 8; j++) {
        const float *xs = x + 32 * j;
        float s2 = 0;
        for (int l = 0; l < 32; l++) s2 += xs[l] * xs[l];
        float rms = sqrtf(s2 / 32);
        for (int l = 0; l < 32; l++) w[l] = rms + fabsf(xs[l]);
        sub_scale[j] = search_scale_min(32, nmax, xs, w, L + 32 * j, aux, &sub_min[j], rmin, 0.1f,
                                        nstep, false);
    }
    float d = quant_sub_scales(sub_scale, 8, 63, sc);
    float dmin = quant_sub_scales(sub_min, 8, 63, mc);
    *dh = half_sat(d);
    *dminh = half_sat(dmin);
    pack_k4_scales(sc, mc, scales);
    for (int j = 0; j < 8; j++) {
        float dl = fp16(*dh) * (float)sc[j], ml = fp16(*dminh) * (float)mc[j];
        for (int l = 0; l < 32; l++)
            L[32 * j + l] = dl != 0 ? (uint8_t)nearest((x[32 * j + l] + ml) / dl, 0, nmax) : 0;
    }
}

// sum over the 8 sub-blocks of d*sc_j*(q.a)_j - dmin*m_j*(sum a)_j, times da;
// the sums of a per 32 are pairs of Q8_K's per-16 bsums.
static double dot_k45_block(tt_half dh, tt_half dminh, const uint8_t scales[12],
                            const uint8_t q[QK_K], const blk_q8_K *y) {
    uint8_t sc[8], m[8];
    unpack_k4_scales(scales, sc, m);
    int32_t sumi = 0, summ = 0;
    for (int j = 0; j < 8; j++) {
        int32_t dot = 0;
        for (int l = 0; l < 32; l++) dot += q[32 * j + l] * y->qs[32 * j + l];
        sumi += sc[j] * dot;
        summ += m[j] * (y->bsums[2 * j] + y->bsums[2 * j + 1]);
    }
    return (double)y->d * ((double)fp16(dh) * sumi - (double)fp16(dminh) * summ);
}

void dequant_q4_K(const void *src, float *dst, int64_t n) {
    ASSERT(n % QK_K == 0);
    const blk_q4_K *b = src;
    for (int64_t i = 0; i < n / QK_K; i++) {
        uint8_t q[QK_K];
        unpack_k45(b[i].qs, NULL, q);
        dequant_k45_block(b[i].d, b[i].dmin, b[i].scales, q, dst + i * QK_K);
    }
}

void quant_q4_K_ref(const float *src, void *dst, int64_t n) {
    ASSERT(n % QK_K == 0);
    blk_q4_K *b = dst;
    for (int64_t i = 0; i < n / QK_K; i++) {
        uint8_t L[QK_K];
        quant_k45_block(src + i * QK_K, 15, -1.0f, 20, &b[i].d, &b[i].dmin, b[i].scales, L);
        pack_k45(L, b[i].qs, NULL);
    }
}

void vec_dot_q4_K_ref(int64_t n, float *s, const void *w, const void *a) {
    ASSERT(n % QK_K == 0);
    const blk_q4_K *x = w;
    const blk_q8_K *y = a;
    double sum = 0;
    for (int64_t i = 0; i < n / QK_K; i++) {
        uint8_t q[QK_K];
        unpack_k45(x[i].qs, NULL, q);
        sum += dot_k45_block(x[i].d, x[i].dmin, x[i].scales, q, &y[i]);
    }
    *s = (float)sum;
}

void dequant_q5_K(const void *src, float *dst, int64_t n) {
    ASSERT(n % QK_K == 0);
    const blk_q5_K *b = src;
    for (int64_t i = 0; i < n / QK_K; i++) {
        uint8_t q[QK_K];
        unpack_k45(b[i].qs, b[i].qh, q);
        dequant_k45_block(b[i].d, b[i].dmin, b[i].scales, q, dst + i * QK_K);
    }
}

void quant_q5_K_ref(const float *src, void *dst, int64_t n) {
    ASSERT(n % QK_K == 0);
    blk_q5_K *b = dst;
    for (int64_t i = 0; i < n / QK_K; i++) {
        uint8_t L[QK_K];
        quant_k45_block(src + i * QK_K, 31, -0.5f, 15, &b[i].d, &b[i].dmin, b[i].scales, L);
        pack_k45(L, b[i].qs, b[i].qh);
    }
}

void vec_dot_q5_K_ref(int64_t n, float *s, const void *w, const void *a) {
    ASSERT(n % QK_K == 0);
    const blk_q5_K *x = w;
    const blk_q8_K *y = a;
    double sum = 0;
    for (int64_t i = 0; i < n / QK_K; i++) {
        uint8_t q[QK_K];
        unpack_k45(x[i].qs, x[i].qh, q);
        sum += dot_k45_block(x[i].d, x[i].dmin, x[i].scales, q, &y[i]);
    }
    *s = (float)sum;
}

// --- Q6_K ------------------------------------------------------------------------------------

// Element codes q - 32 in -32..31. Per 128-element half h, with ql/qh
// advanced by 64h / 32h, for l in 0..31 and s in 0..3 element 128h + 32s + l
// has its low 4 bits in ql[l + 32(s & 1)] (low nibble for s < 2, high nibble
// for s >= 2) and its high 2 bits in bits 2s..2s+1 of qh[l].
static void unpack_q6(const blk_q6_K *b, int8_t q[QK_K]) {
    for (int h = 0; h < 2; h++) {
        const uint8_t *ql = b->ql + 64 * h, *qh = b->qh + 32 * h;
        for (int s = 0; s < 4; s++)
            for (int l = 0; l < 32; l++) {
                int lo = (ql[l + 32 * (s & 1)] >> (s < 2 ? 0 : 4)) & 0xF;
                int hi = (qh[l] >> (2 * s)) & 3;
                q[128 * h + 32 * s + l] = (int8_t)((lo | hi << 4) - 32);
            }
    }
}

static void pack_q6(const uint8_t L[QK_K], blk_q6_K *b) {
    memset(b->ql, 0, sizeof b->ql);
    memset(b->qh, 0, sizeof b->qh);
    for (int h = 0; h < 2; h++) {
        uint8_t *ql = b->ql + 64 * h, *qh = b->qh + 32 * h;
        for (int s = 0; s < 4; s++)
            for (int l = 0; l < 32; l++) {
                int c = L[128 * h + 32 * s + l]; // 0..63
                ql[l + 32 * (s & 1)] |= (uint8_t)((c & 0xF) << (s < 2 ? 0 : 4));
                qh[l] |= (uint8_t)((c >> 4) << (2 * s));
            }
    }
}

void dequant_q6_K(const void *src, float *dst, int64_t n) {
    ASSERT(n % QK_K == 0);
    const blk_q6_K *b = src;
    for (int64_t i = 0; i < n / QK_K; i++) {
        int8_t q[QK_K];
        unpack_q6(&b[i], q);
        float d = fp16(b[i].d);
        float *y = dst + i * QK_K;
        // (d * sc) * q as ggml writes it; any order gives the same bits, as
        // 11 + 8 + 6 significant bits fit a float's 24.
        for (int j = 0; j < 16; j++) {
            float dl = d * (float)b[i].scales[j];
            for (int l = 0; l < 16; l++) y[16 * j + l] = dl * (float)q[16 * j + l];
        }
    }
}

// Sub-blocks: symmetric 6-bit fits (weights x^2); the 16 signed scales are
// quantized to int8 against d = max_scale / -128 (max_scale = the scale of
// largest magnitude, which gets code -128).
void quant_q6_K_ref(const float *src, void *dst, int64_t n) {
    ASSERT(n % QK_K == 0);
    blk_q6_K *b = dst;
    for (int64_t i = 0; i < n / QK_K; i++) {
        const float *x = src + i * QK_K;
        uint8_t L[QK_K];
        float scales[16];
        for (int j = 0; j < 16; j++) scales[j] = search_scale_sym(16, 32, x + 16 * j, L + 16 * j);
        float amax;
        float max_scale = max_magnitude(scales, 16, &amax);
        float d = 0;
        if (amax > GROUP_EPS) {
            float iscale = -128.0f / max_scale;
            for (int j = 0; j < 16; j++) b[i].scales[j] = (int8_t)nearest(iscale * scales[j], -128, 127);
            d = 1 / iscale;
        } else {
            memset(b[i].scales, 0, sizeof b[i].scales);
        }
        b[i].d = half_sat(d);
        for (int j = 0; j < 16; j++) {
            float dl = fp16(b[i].d) * (float)b[i].scales[j];
            for (int l = 0; l < 16; l++)
                L[16 * j + l] = dl != 0 ? (uint8_t)(nearest(x[16 * j + l] / dl, -32, 31) + 32) : 32;
        }
        pack_q6(L, &b[i]);
    }
}

void vec_dot_q6_K_ref(int64_t n, float *s, const void *w, const void *a) {
    ASSERT(n % QK_K == 0);
    const blk_q6_K *x = w;
    const blk_q8_K *y = a;
    double sum = 0;
    for (int64_t i = 0; i < n / QK_K; i++) {
        int8_t q[QK_K];
        unpack_q6(&x[i], q);
        int32_t sumi = 0;
        for (int j = 0; j < 16; j++) {
            int32_t dot = 0;
            for (int l = 0; l < 16; l++) dot += q[16 * j + l] * y[i].qs[16 * j + l];
            sumi += x[i].scales[j] * dot;
        }
        sum += (double)y[i].d * fp16(x[i].d) * sumi;
    }
    *s = (float)sum;
}
