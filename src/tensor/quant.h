// quant.h — quantized block formats: dequantization, reference quantizers,
// reference dot products. (Internal to the tensor layer: other modules use
// the type table in types.h.)
//
// For each quantized type T in {q4_0, q4_1, q5_0, q5_1, q8_0, q2_K, q3_K, q4_K,
// q5_K, q6_K}:
//   dequant_T(src, dst, n)      n elements (a multiple of the block size) to floats
//   quant_T_ref(src, dst, n)    the reference quantizer (round to nearest;
//                               K-quants search scales/mins to minimize error)
//   vec_dot_T_ref(n, s, w, a)   s = dot(row w, activations a), a in the type's
//                               tt_act format (blk_q8_32 or blk_q8_K blocks),
//                               exact integer sums per block, scaled in float
// These are the algorithmic references; kern.h has the fast SIMD twins.
#ifndef SIM_QUANT_H
#define SIM_QUANT_H

#include "tensor/types.h"

#define QUANT_DECLARE(T)                                                   \
    void dequant_##T(const void *src, float *dst, int64_t n);              \
    void quant_##T##_ref(const float *src, void *dst, int64_t n);          \
    void vec_dot_##T##_ref(int64_t n, float *s, const void *w, const void *a);

QUANT_DECLARE(q4_0)
QUANT_DECLARE(q4_1)
QUANT_DECLARE(q5_0)
QUANT_DECLARE(q5_1)
QUANT_DECLARE(q8_0)
QUANT_DECLARE(q2_K)
QUANT_DECLARE(q3_K)
QUANT_DECLARE(q4_K)
QUANT_DECLARE(q5_K)
QUANT_DECLARE(q6_K)

#undef QUANT_DECLARE

#endif
