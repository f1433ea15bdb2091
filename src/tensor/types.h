// types.h — tensor element types: block layouts and the type table.
//
// Every tensor in a GGUF file has one of these types. Quantized types store
// rows as a sequence of blocks; a block holds `blck` elements in `bytes`
// bytes. The numeric ids are GGUF's (they appear in files).
//
//   type   blck bytes  value of element j
//   F32       1    4   the float
//   F16       1    2   IEEE half
//   BF16      1    2   top 16 bits of a float
//   Q4_0     32   18   d * (q - 8),            q in 0..15
//   Q4_1     32   20   d * q + m,              q in 0..15
//   Q5_0     32   22   d * (q - 16),           q in 0..31 (high bit in qh)
//   Q5_1     32   24   d * q + m,              q in 0..31
//   Q8_0     32   34   d * q,                  q in -128..127
//   Q2_K    256   84   d*sc*q - dmin*m,        q in 0..3, 4-bit sc/m per 16
//   Q3_K    256  110   d*sc*(q - 4),           q in 0..7, 6-bit signed sc per 16
//   Q4_K    256  144   d*sc*q - dmin*m,        q in 0..15, 6-bit sc/m per 32
//   Q5_K    256  176   d*sc*q - dmin*m,        q in 0..31, 6-bit sc/m per 32
//   Q6_K    256  210   d*sc*(q - 32),          q in 0..63, 8-bit signed sc per 16
//   Q8_K    256  292   d * q (activations only: float d, int16 sums per 16)
//
// Within 32-element blocks (Q4_0/Q4_1/Q5_0/Q5_1), byte i of qs holds element
// i in its low nibble and element i+16 in its high nibble; bit i of qh is the
// fifth bit of element i. The K-quant layouts are described above their structs.
//
// The table (tt_traits) gives, per type: name, block size and bytes,
// to_float (dequantize), a reference quantizer where one exists, the
// activation format its dot product takes (tt_act) and the scalar reference
// dot product. Fast SIMD dot products live in the kernel module (kern.h),
// which picks them at run time and keeps these references as its fallback.
#ifndef SIM_TYPES_H
#define SIM_TYPES_H

#include <assert.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

typedef uint16_t tt_half; // IEEE 754 binary16 bits
typedef uint16_t tt_bf16; // bfloat16 bits

typedef enum tt_type {
    TT_F32 = 0,
    TT_F16 = 1,
    TT_Q4_0 = 2,
    TT_Q4_1 = 3,
    TT_Q5_0 = 6,
    TT_Q5_1 = 7,
    TT_Q8_0 = 8,
    TT_Q2_K = 10,
    TT_Q3_K = 11,
    TT_Q4_K = 12,
    TT_Q5_K = 13,
    TT_Q6_K = 14,
    TT_Q8_K = 15,
    TT_BF16 = 30,
    TT_COUNT = 31 // one past the largest id (not every id below is supported)
} tt_type;

#define QK4_0 32
#define QK4_1 32
#define QK5_0 32
#define QK5_1 32
#define QK8_0 32
#define QK_K 256
#define K_SCALE_SIZE 12

typedef struct {
    tt_half d;
    uint8_t qs[QK4_0 / 2];
} blk_q4_0;
static_assert(sizeof(blk_q4_0) == 2 + QK4_0 / 2, "wrong q4_0 block size");

typedef struct {
    tt_half d, m;
    uint8_t qs[QK4_1 / 2];
} blk_q4_1;
static_assert(sizeof(blk_q4_1) == 4 + QK4_1 / 2, "wrong q4_1 block size");

typedef struct {
    tt_half d;
    uint8_t qh[4];
    uint8_t qs[QK5_0 / 2];
} blk_q5_0;
static_assert(sizeof(blk_q5_0) == 2 + 4 + QK5_0 / 2, "wrong q5_0 block size");

typedef struct {
    tt_half d, m;
    uint8_t qh[4];
    uint8_t qs[QK5_1 / 2];
} blk_q5_1;
static_assert(sizeof(blk_q5_1) == 4 + 4 + QK5_1 / 2, "wrong q5_1 block size");

typedef struct {
    tt_half d;
    int8_t qs[QK8_0];
} blk_q8_0;
static_assert(sizeof(blk_q8_0) == 2 + QK8_0, "wrong q8_0 block size");

// Q2_K: 16 sub-blocks of 16. scales[i]: low nibble = scale, high nibble = min.
// qs: 2-bit values; byte layout per 128-element half: for half h (0,1), shift
// s (0,2,4,6) and l in 0..31, element h*128 + (s/2)*32 + l = (qs[h*32 + l] >> s) & 3.
typedef struct {
    uint8_t scales[QK_K / 16];
    uint8_t qs[QK_K / 4];
    tt_half d, dmin;
} blk_q2_K;
static_assert(sizeof(blk_q2_K) == 2 * 2 + QK_K / 16 + QK_K / 4, "wrong q2_K block size");

// Q3_K: 16 sub-blocks of 16, 6-bit scales (minus 32) packed in 12 bytes; low
// 2 bits in qs as for Q2_K; the third bit in hmask (set bit = no -4 offset).
typedef struct {
    uint8_t hmask[QK_K / 8];
    uint8_t qs[QK_K / 4];
    uint8_t scales[12];
    tt_half d;
} blk_q3_K;
static_assert(sizeof(blk_q3_K) == 2 + QK_K / 4 + QK_K / 8 + 12, "wrong q3_K block size");

// Q4_K: 8 sub-blocks of 32, 6-bit scales and mins packed in 12 bytes; qs per
// 64 elements: 32 bytes, low nibbles = first 32, high nibbles = next 32.
typedef struct {
    tt_half d, dmin;
    uint8_t scales[K_SCALE_SIZE];
    uint8_t qs[QK_K / 2];
} blk_q4_K;
static_assert(sizeof(blk_q4_K) == 2 * 2 + K_SCALE_SIZE + QK_K / 2, "wrong q4_K block size");

// Q5_K: as Q4_K plus a fifth bit per element in qh (bit 2k / 2k+1 of qh[l]
// for the low / high nibbles of the k-th 64-element group).
typedef struct {
    tt_half d, dmin;
    uint8_t scales[K_SCALE_SIZE];
    uint8_t qh[QK_K / 8];
    uint8_t qs[QK_K / 2];
} blk_q5_K;
static_assert(sizeof(blk_q5_K) == 2 * 2 + K_SCALE_SIZE + QK_K / 2 + QK_K / 8,
              "wrong q5_K block size");

// Q6_K: 16 sub-blocks of 16 with int8 scales; low 4 bits in ql, high 2 in qh.
typedef struct {
    uint8_t ql[QK_K / 2];
    uint8_t qh[QK_K / 4];
    int8_t scales[QK_K / 16];
    tt_half d;
} blk_q6_K;
static_assert(sizeof(blk_q6_K) == 2 + QK_K / 16 + 3 * QK_K / 4, "wrong q6_K block size");

// Q8_K: activations for K-quant dot products. bsums[i] = sum of qs[16i..16i+16).
// Codes are in -127..127 (never -128): kernels rely on it (the sign trick).
typedef struct {
    float d;
    int8_t qs[QK_K];
    int16_t bsums[QK_K / 16];
} blk_q8_K;
static_assert(sizeof(blk_q8_K) == sizeof(float) + QK_K + QK_K / 16 * sizeof(int16_t),
              "wrong q8_K block size");

// Activations for the 32-element types (internal, never in files): value j is
// d * qs[j]; sum = sum of qs (for the offset and min terms of Q4_x / Q5_x).
// Codes are in -127..127 (never -128): kernels rely on it (the sign trick).
typedef struct {
    float d;
    int32_t sum;
    int8_t qs[32];
} blk_q8_32;
static_assert(sizeof(blk_q8_32) == 8 + 32, "wrong q8_32 block size");

// The format of the activation vector a type's dot product takes.
typedef enum tt_act {
    TT_ACT_F32 = 0, // plain floats (F32, F16, BF16 weights)
    TT_ACT_Q8_32,   // blk_q8_32 blocks (Q4_0, Q4_1, Q5_0, Q5_1, Q8_0)
    TT_ACT_Q8_K,    // blk_q8_K blocks (Q2_K .. Q6_K)
} tt_act;

// s = dot(row w of n elements of the weight type, activations a in the type's
// tt_act format). n is a multiple of the block size.
typedef void (*tt_vec_dot_fn)(int64_t n, float *s, const void *w, const void *a);
typedef void (*tt_to_float_fn)(const void *src, float *dst, int64_t n);
typedef void (*tt_from_float_fn)(const float *src, void *dst, int64_t n);

typedef struct tt_traits {
    const char *name;       // "q4_K"
    int blck;               // elements per block; 0 for an unsupported id
    size_t bytes;           // bytes per block
    bool quantized;
    tt_act act;
    tt_to_float_fn to_float;
    tt_from_float_fn from_float; // reference quantizer; NULL where none
    tt_vec_dot_fn vec_dot_ref;   // scalar reference; NULL for Q8_K
} tt_traits;

// The traits of a type; NULL for an id we do not support.
const tt_traits *tt_get(tt_type t);
bool tt_supported(uint32_t t);
const char *tt_name(tt_type t); // "?" for unsupported
// Parses a name ("q4_K", "Q4_K", "f16"); returns false when unknown.
bool tt_from_name(const char *name, tt_type *out);

// Bytes of a row of n elements (n must be a multiple of the block size).
size_t tt_row_size(tt_type t, int64_t n);

// Bytes of an activation row of n elements in format act.
size_t tt_act_row_size(tt_act act, int64_t n);
// Reference activation quantizers (the kernel module has faster twins).
void tt_quantize_q8_32_ref(const float *x, blk_q8_32 *y, int64_t n);
void tt_quantize_q8_K_ref(const float *x, blk_q8_K *y, int64_t n);

// --- half and bfloat16 --------------------------------------------------------

float tt_half_to_float(tt_half h);
tt_half tt_float_to_half(float f); // round to nearest even
static inline float tt_bf16_to_float(tt_bf16 h) {
    union { uint32_t u; float f; } v = {.u = (uint32_t)h << 16};
    return v.f;
}
tt_bf16 tt_float_to_bf16(float f); // round to nearest even; NaN stays NaN

#endif
