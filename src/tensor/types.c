// types.c — the type table, half/bfloat16 conversion, float types.
//
// The quantized types' functions (dequantize, reference quantizers,
// reference dot products) live in quant.c; this file ties them together.
#include "tensor/types.h"

#include <math.h>
#include <string.h>

#include "base/base.h"
#include "tensor/quant.h"

// --- half and bfloat16 --------------------------------------------------------

float tt_half_to_float(tt_half h) {
    uint32_t sign = (uint32_t)(h & 0x8000) << 16;
    uint32_t exp = (h >> 10) & 0x1F;
    uint32_t man = h & 0x3FF;
    uint32_t bits;
    if (exp == 0x1F) {
        bits = sign | 0x7F800000u | (man << 13); // inf / NaN
    } else if (exp != 0) {
        bits = sign | ((exp + 112) << 23) | (man << 13);
    } else if (man == 0) {
        bits = sign;
    } else {
        // Subnormal: normalize the mantissa.
        int e = -1;
        do {
            man <<= 1;
            e++;
        } while (!(man & 0x400));
        bits = sign | ((uint32_t)(112 - e) << 23) | ((man & 0x3FF) << 13);
    }
    float f;
    memcpy(&f, &bits, 4);
    return f;
}

tt_half tt_float_to_half(float f) {
    uint32_t x;
    memcpy(&x, &f, 4);
    uint32_t sign = (x >> 16) & 0x8000;
    uint32_t absx = x & 0x7FFFFFFFu;
    if (absx >= 0x7F800000u) // inf or NaN (keep NaN quiet and non-zero)
        return (tt_half)(sign | 0x7C00 | (absx > 0x7F800000u ? 0x200 | ((absx >> 13) & 0x3FF) : 0));
    if (absx >= 0x477FF000u) return (tt_half)(sign | 0x7C00); // rounds to >= 65520: inf
    if (absx < 0x38800000u) {
        // Result is subnormal (or zero): value / 2^-24, rounded to nearest even.
        if (absx < 0x33000000u) return (tt_half)sign; // < 2^-25: rounds to zero
        uint32_t e = absx >> 23;
        uint32_t man = (absx & 0x7FFFFF) | 0x800000;
        uint32_t shift = 126 - e; // 14 + (113 - e) - 1
        uint32_t q = man >> shift;
        uint32_t rem = man & ((1u << shift) - 1);
        uint32_t half = 1u << (shift - 1);
        if (rem > half || (rem == half && (q & 1))) q++;
        return (tt_half)(sign | q);
    }
    uint32_t q = absx - 0x38000000u; // rebias the exponent from 127 to 15
    // Round to nearest even on the 13 dropped bits (a carry may bump the exponent).
    uint32_t dropped = q & 0x1FFF;
    uint32_t r = q >> 13;
    if (dropped > 0x1000 || (dropped == 0x1000 && (r & 1))) r++;
    return (tt_half)(sign | r);
}

tt_bf16 tt_float_to_bf16(float f) {
    uint32_t x;
    memcpy(&x, &f, 4);
    if ((x & 0x7FFFFFFFu) > 0x7F800000u) return (tt_bf16)((x >> 16) | 0x40); // quiet NaN
    x += 0x7FFF + ((x >> 16) & 1);
    return (tt_bf16)(x >> 16);
}

// --- float types ----------------------------------------------------------------

static void f32_to_float(const void *src, float *dst, int64_t n) { memcpy(dst, src, (size_t)n * 4); }
static void f32_from_float(const float *src, void *dst, int64_t n) { memcpy(dst, src, (size_t)n * 4); }

static void f16_to_float(const void *src, float *dst, int64_t n) {
    const tt_half *s = src;
    for (int64_t i = 0; i < n; i++) dst[i] = tt_half_to_float(s[i]);
}
static void f16_from_float(const float *src, void *dst, int64_t n) {
    tt_half *d = dst;
    for (int64_t i = 0; i < n; i++) d[i] = tt_float_to_half(src[i]);
}
static void bf16_to_float(const void *src, float *dst, int64_t n) {
    const tt_bf16 *s = src;
    for (int64_t i = 0; i < n; i++) dst[i] = tt_bf16_to_float(s[i]);
}
static void bf16_from_float(const float *src, void *dst, int64_t n) {
    tt_bf16 *d = dst;
    for (int64_t i = 0; i < n; i++) d[i] = tt_float_to_bf16(src[i]);
}

// Reference dot products of float-type rows with float activations. Summed
// in double so the reference is more accurate than any fast kernel.
static void vec_dot_f32_ref(int64_t n, float *s, const void *w, const void *a) {
    const float *x = w, *y = a;
    double sum = 0;
    for (int64_t i = 0; i < n; i++) sum += (double)x[i] * y[i];
    *s = (float)sum;
}
static void vec_dot_f16_ref(int64_t n, float *s, const void *w, const void *a) {
    const tt_half *x = w;
    const float *y = a;
    double sum = 0;
    for (int64_t i = 0; i < n; i++) sum += (double)tt_half_to_float(x[i]) * y[i];
    *s = (float)sum;
}
static void vec_dot_bf16_ref(int64_t n, float *s, const void *w, const void *a) {
    const tt_bf16 *x = w;
    const float *y = a;
    double sum = 0;
    for (int64_t i = 0; i < n; i++) sum += (double)tt_bf16_to_float(x[i]) * y[i];
    *s = (float)sum;
}

// --- the table ------------------------------------------------------------------

static const tt_traits traits[TT_COUNT] = {
    [TT_F32] = {.name = "f32", .blck = 1, .bytes = 4, .act = TT_ACT_F32,
                .to_float = f32_to_float, .from_float = f32_from_float, .vec_dot_ref = vec_dot_f32_ref},
    [TT_F16] = {.name = "f16", .blck = 1, .bytes = 2, .act = TT_ACT_F32,
                .to_float = f16_to_float, .from_float = f16_from_float, .vec_dot_ref = vec_dot_f16_ref},
    [TT_BF16] = {.name = "bf16", .blck = 1, .bytes = 2, .act = TT_ACT_F32,
                 .to_float = bf16_to_float, .from_float = bf16_from_float, .vec_dot_ref = vec_dot_bf16_ref},
    [TT_Q4_0] = {.name = "q4_0", .blck = 32, .bytes = sizeof(blk_q4_0), .quantized = true, .act = TT_ACT_Q8_32,
                 .to_float = dequant_q4_0, .from_float = quant_q4_0_ref, .vec_dot_ref = vec_dot_q4_0_ref},
    [TT_Q4_1] = {.name = "q4_1", .blck = 32, .bytes = sizeof(blk_q4_1), .quantized = true, .act = TT_ACT_Q8_32,
                 .to_float = dequant_q4_1, .from_float = quant_q4_1_ref, .vec_dot_ref = vec_dot_q4_1_ref},
    [TT_Q5_0] = {.name = "q5_0", .blck = 32, .bytes = sizeof(blk_q5_0), .quantized = true, .act = TT_ACT_Q8_32,
                 .to_float = dequant_q5_0, .from_float = quant_q5_0_ref, .vec_dot_ref = vec_dot_q5_0_ref},
    [TT_Q5_1] = {.name = "q5_1", .blck = 32, .bytes = sizeof(blk_q5_1), .quantized = true, .act = TT_ACT_Q8_32,
                 .to_float = dequant_q5_1, .from_float = quant_q5_1_ref, .vec_dot_ref = vec_dot_q5_1_ref},
    [TT_Q8_0] = {.name = "q8_0", .blck = 32, .bytes = sizeof(blk_q8_0), .quantized = true, .act = TT_ACT_Q8_32,
                 .to_float = dequant_q8_0, .from_float = quant_q8_0_ref, .vec_dot_ref = vec_dot_q8_0_ref},
    [TT_Q2_K] = {.name = "q2_K", .blck = QK_K, .bytes = sizeof(blk_q2_K), .quantized = true, .act = TT_ACT_Q8_K,
                 .to_float = dequant_q2_K, .from_float = quant_q2_K_ref, .vec_dot_ref = vec_dot_q2_K_ref},
    [TT_Q3_K] = {.name = "q3_K", .blck = QK_K, .bytes = sizeof(blk_q3_K), .quantized = true, .act = TT_ACT_Q8_K,
                 .to_float = dequant_q3_K, .from_float = quant_q3_K_ref, .vec_dot_ref = vec_dot_q3_K_ref},
    [TT_Q4_K] = {.name = "q4_K", .blck = QK_K, .bytes = sizeof(blk_q4_K), .quantized = true, .act = TT_ACT_Q8_K,
                 .to_float = dequant_q4_K, .from_float = quant_q4_K_ref, .vec_dot_ref = vec_dot_q4_K_ref},
    [TT_Q5_K] = {.name = "q5_K", .blck = QK_K, .bytes = sizeof(blk_q5_K), .quantized = true, .act = TT_ACT_Q8_K,
                 .to_float = dequant_q5_K, .from_float = quant_q5_K_ref, .vec_dot_ref = vec_dot_q5_K_ref},
    [TT_Q6_K] = {.name = "q6_K", .blck = QK_K, .bytes = sizeof(blk_q6_K), .quantized = true, .act = TT_ACT_Q8_K,
                 .to_float = dequant_q6_K, .from_float = quant_q6_K_ref, .vec_dot_ref = vec_dot_q6_K_ref},
};

const tt_traits *tt_get(tt_type t) {
    if ((unsigned)t >= TT_COUNT || traits[t].blck == 0) return NULL;
    return &traits[t];
}

bool tt_supported(uint32_t t) { return t < TT_COUNT && traits[t].blck != 0; }

const char *tt_name(tt_type t) {
    const tt_traits *tr = tt_get(t);
    return tr ? tr->name : "?";
}

bool tt_from_name(const char *name, tt_type *out) {
    for (int t = 0; t < TT_COUNT; t++) {
        if (traits[t].blck && strcasecmp(traits[t].name, name) == 0) {
            *out = (tt_type)t;
            return true;
        }
    }
    return false;
}

size_t tt_row_size(tt_type t, int64_t n) {
    const tt_traits *tr = tt_get(t);
    ASSERT(tr && n % tr->blck == 0);
    return (size_t)(n / tr->blck) * tr->bytes;
}

size_t tt_act_row_size(tt_act act, int64_t n) {
    switch (act) {
    case TT_ACT_F32: return (size_t)n * sizeof(float);
    case TT_ACT_Q8_32: return (size_t)(n / 32) * sizeof(blk_q8_32);
    case TT_ACT_Q8_K: return (size_t)(n / QK_K) * sizeof(blk_q8_K);
    }
    return 0;
}
