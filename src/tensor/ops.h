// ops.h — the image-model operators: linear, normalizations, conv2d,
// attention, activations, resampling. Float32 activations; NCHW images
// (batch handled by the caller: one image per call) and token-major
// sequences (T, C).
//
// Every operator has a scalar `_ref` twin written as the textbook loop; the
// fast path splits work across the pool's threads. Linear layers,
// convolutions and attention run on the f32 GEMM (sgemm.h): weights stay in
// their file type (op_mat: F32, F16 or BF16 rows), a convolution's im2col
// is written straight into the GEMM's packed panels, attention runs in
// tiles with an online softmax. Work is split by tiles whose boundaries
// depend only on the shapes, never by reductions, so results do not depend
// on the thread count.
//
//     op_ctx c = {.pool = p, .k = kern_get(KERN_AVX512), .scratch = buf, .scratch_cap = n};
//     op_conv2d(&c, y, x, &(op_conv){.cin = 4, .cout = 32, .kh = 3, .kw = 3, .stride = 1,
//               .pad_t = 1, .pad_l = 1, .pad_b = 1, .pad_r = 1}, H, W, op_f32(weight), bias);
//     op_group_norm(&c, y, y, 32, H * W, 8, 1e-5f, gamma, beta, true);   // + SiLU
//
// Ownership: operators never allocate; the caller owns every buffer and
// gives the context a scratch buffer sized with op_gemm_scratch and
// op_attention_scratch (the largest over a model's calls). `out` may equal
// `in` only where a comment says so. Errors are bugs here (shapes are
// checked by the model loaders), so operators ASSERT instead of returning
// a status.
#ifndef SIM_OPS_H
#define SIM_OPS_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "tensor/kern.h"
#include "tensor/pool.h"

typedef struct op_ctx {
    pool *pool;           // NULL: the calling thread does everything
    const kern_ops *k;    // kernel table (kern_get)
    bool ref;             // force the scalar references (for tests and debugging)
    float *scratch;       // caller-owned work memory
    size_t scratch_cap;   // floats in scratch
    uint64_t *flops;      // when not NULL, += the FLOPs of each linear, conv and attention
} op_ctx;

// A weight matrix: row-major elements of type F32, F16 or BF16.
typedef struct op_mat {
    tt_type type;
    const void *data;
} op_mat;
static inline op_mat op_f32(const float *w) { return (op_mat){TT_F32, w}; }
// Element i as a float.
float op_mat_at(op_mat m, size_t i);

// Floats of scratch op_linear and op_conv2d need with n_threads threads.
size_t op_gemm_scratch(int n_threads);

// --- matrix products -----------------------------------------------------------------

// y (N, n_out) = x (N, n_in) · W^T + b; W (n_out, n_in) row-major, b (n_out) or NULL.
void op_linear(op_ctx *c, float *y, const float *x, op_mat W, const float *b, int N, int n_in, int n_out);
void op_linear_ref(float *y, const float *x, op_mat W, const float *b, int N, int n_in, int n_out);

typedef struct op_conv {
    int cin, cout;
    int kh, kw;
    int stride;
    int pad_t, pad_l, pad_b, pad_r; // zero padding on each side (asymmetric allowed)
    bool relu;                      // y = max(0, conv + bias): the activation in the same pass
} op_conv;

// The output size of a convolution over an h × w input.
void op_conv_out_size(const op_conv *p, int h, int w, int *ho, int *wo);
// y (cout, ho, wo) = conv(x (cin, h, w), weight (cout, cin, kh, kw)) + bias (cout) or NULL
// (then max(0, ·) with p->relu). Scratch: op_gemm_scratch.
void op_conv2d(op_ctx *c, float *y, const float *x, const op_conv *p, int h, int w, op_mat weight, const float *bias);
void op_conv2d_ref(float *y, const float *x, const op_conv *p, int h, int w, op_mat weight, const float *bias);

// --- normalization -------------------------------------------------------------------

// Each of the T rows of x (T, C): (x - mean) / sqrt(var + eps) * g + b. out may equal x.
void op_layer_norm(op_ctx *c, float *out, const float *x, int T, int C, float eps, const float *g, const float *b);
void op_layer_norm_ref(float *out, const float *x, int T, int C, float eps, const float *g, const float *b);

// x (C, HW) in G groups of C/G channels: normalized per group, then
// * g[c] + b[c], then SiLU when `silu`. out may equal x.
void op_group_norm(op_ctx *c, float *out, const float *x, int C, int HW, int G, float eps, const float *g, const float *b,
                   bool silu);
void op_group_norm_ref(float *out, const float *x, int C, int HW, int G, float eps, const float *g, const float *b, bool silu);

// --- attention -------------------------------------------------------------------------

// Multi-head scaled dot-product attention, token-major:
//   q (Tq, n_head*d) rows ldq floats apart, k and v (Tk, n_head*d) rows ldk / ldv apart,
//   out (Tq, n_head*d) rows ldo apart; causal: query i sees keys 0..i only.
// Scale 1/sqrt(d). Self-attention passes the same buffer for the three
// inputs with their column offsets; cross-attention takes k, v from the
// text context. out must not overlap q, k or v. Scratch: op_attention_scratch
// (which needs d and the thread count; it does not grow with Tq or Tk).
typedef struct op_attn {
    int Tq, Tk, n_head, d;
    int ldq, ldk, ldv, ldo;
    bool causal;
} op_attn;
size_t op_attention_scratch(const op_attn *a, int n_threads);
void op_attention(op_ctx *c, float *out, const float *q, const float *k, const float *v, const op_attn *a);
void op_attention_ref(float *out, const float *q, const float *k, const float *v, const op_attn *a);

// --- element-wise ----------------------------------------------------------------------

typedef enum op_act {
    OP_ACT_GELU,       // x * Φ(x) (erf form, as PyTorch's default)
    OP_ACT_QUICK_GELU, // x * sigmoid(1.702 x) (CLIP)
    OP_ACT_SILU,       // x * sigmoid(x)
    OP_ACT_RELU,
    OP_ACT_TANH,
} op_act;

float op_act_ref(op_act a, float x);
// x[i] = act(x[i]) for i < n, in place.
void op_act_inplace(op_ctx *c, float *x, size_t n, op_act a);

// GEGLU over T rows of x (T, 2*C): out (T, C) = x[:, :C] * gelu(x[:, C:]). out may equal x
// (rows are then compacted in order, on one thread); otherwise they must not overlap.
void op_geglu(op_ctx *c, float *out, const float *x, int T, int C);
void op_geglu_ref(float *out, const float *x, int T, int C);

// y (C, 2h, 2w) = nearest 2× upsampling of x (C, h, w).
void op_upsample2x(op_ctx *c, float *y, const float *x, int C, int h, int w);
void op_upsample2x_ref(float *y, const float *x, int C, int h, int w);

// y (ca + cb, HW) = channels of a (ca, HW) then of b (cb, HW). y must not overlap a or b.
void op_concat(float *y, const float *a, int ca, const float *b, int cb, int HW);

// y (W, H) = transpose of x (H, W) (channel-major ↔ token-major).
void op_transpose(op_ctx *c, float *y, const float *x, int H, int W);

// y[i] = a[i] + b[i] (y may equal a or b).
void op_add(float *y, const float *a, const float *b, size_t n);

#endif
