// forward.h — the transformer forward pass over a batch of tokens.
//
// A fwd_ctx owns what one model evaluation needs besides the weights: the
// KV cache, a thread pool, and scratch buffers sized once for the largest
// batch, so fwd_decode never allocates. A batch holds tokens with their
// positions and sequence sets; each may ask for its logits.
//
//     fwd_ctx *c;
//     fwd_params p = fwd_default_params();
//     p.n_ctx = 2048;
//     if (fwd_new(&c, m, &p, &err) != SIM_OK) ...
//     int32_t tok[3] = {1, 450, 4996}, pos[3] = {0, 1, 2};
//     kv_seq_mask seq[3] = {1, 1, 1};
//     bool want[3] = {false, false, true};
//     fwd_batch b = {.n = 3, .tokens = tok, .pos = pos, .seqs = seq, .logits = want};
//     if (fwd_decode(c, &b, &err) != SIM_OK) ...   // e.g. context full
//     const float *l = fwd_logits(c, 0);           // (n_vocab) for the first token that wanted logits
//     fwd_free(c);
//
// One layer, for the n tokens of a batch (x: (n, n_embd) residual stream):
//   xn = rmsnorm(x) * attn_norm
//   q, k, v = xn·Wq (+bq), xn·Wk (+bk), xn·Wv (+bv); RoPE on q and k
//   k, v → cache cells; attn = softmax(q·Kᵀ/√d + mask) · V per head (GQA:
//   n_head/n_head_kv query heads share a K/V head), streamed over tiles of
//   cells with an online softmax
//   x += attn·Wo
//   xn = rmsnorm(x) * ffn_norm;  x += (silu(xn·Wgate) ⊙ xn·Wup)·Wdown
// then logits = rmsnorm(x) * out_norm · Wout for the tokens that want them.
//
// Errors (a batch too large, a token outside the vocabulary, a full
// context) are reported before anything is changed.
#ifndef SIM_FORWARD_H
#define SIM_FORWARD_H

#include "model/kv.h"
#include "model/model.h"
#include "tensor/kern.h"
#include "tensor/pool.h"

typedef struct fwd_ctx fwd_ctx;

typedef struct fwd_params {
    int n_ctx;         // KV cells (0: the model's training context, capped at 4096)
    int n_batch;       // most tokens per fwd_decode call
    int n_outputs;     // most tokens per call that may want logits
    int n_threads;     // threads of the pool (0: all CPUs)
    tt_type kv_type;   // TT_F16 (default) or TT_F32
    kern_level kernels; // cap on the kernel level (KERN_BEST by default)
    bool profile;      // time each step (fwd_get_profile)
} fwd_params;

// Where the time of fwd_decode goes (with fwd_params.profile): wall time of
// each step, summed over layers and calls, measured on thread 0 up to the
// barrier that ends the step.
typedef enum fwd_step {
    FWD_STEP_NORM,      // norms, activation quantization, SwiGLU
    FWD_STEP_QKV,       // the Q, K and V products
    FWD_STEP_ROPE,      // biases, RoPE, writing K and V into the cache
    FWD_STEP_ATTENTION, // softmax(QKᵀ)V
    FWD_STEP_WO,        // the attention output product
    FWD_STEP_GATE_UP,   // the gate and up products
    FWD_STEP_DOWN,      // the down product
    FWD_STEP_OUTPUT,    // the output (logits) product
    FWD_STEP_TOTAL,     // all of fwd_decode's region
    FWD_STEP_COUNT
} fwd_step;

typedef struct fwd_profile {
    uint64_t ns[FWD_STEP_COUNT];
    uint64_t n_calls, n_tokens;
} fwd_profile;

const fwd_profile *fwd_get_profile(const fwd_ctx *c);
void fwd_reset_profile(fwd_ctx *c);

typedef struct fwd_batch {
    int n;
    const int32_t *tokens;    // (n)
    const int32_t *pos;       // (n) positions
    const kv_seq_mask *seqs;  // (n) sequence sets, non-empty
    const bool *logits;       // (n) whether to compute the token's logits; NULL: only the last
} fwd_batch;


fwd_params fwd_default_params(void);
// The parameters with defaults filled in (context size, threads, batch caps).
fwd_params fwd_resolve_params(const model *m, const fwd_params *p);
// Bytes of scratch buffers a context with these parameters allocates (beside the KV cache).
size_t fwd_scratch_bytes(const model *m, const fwd_params *p);
sim_status fwd_new(fwd_ctx **out, const model *m, const fwd_params *p, sim_err *err);
void fwd_free(fwd_ctx *c);

sim_status fwd_decode(fwd_ctx *c, const fwd_batch *b, sim_err *err);

// Logits of the i-th token (in batch order) that asked for them in the last
// fwd_decode: (n_vocab) floats, valid until the next fwd_decode.
const float *fwd_logits(const fwd_ctx *c, int i);
int fwd_n_logits(const fwd_ctx *c);

// Shifts the positions [p0, p1) of sequence s by delta (p1 < 0: to the
// end) and re-rotates the cached keys to match: a pure rotation by
// delta · omega (YaRN's magnitude factor is not applied again). Positions
// that would become negative are removed. Uses the context's threads.
void fwd_seq_shift(fwd_ctx *c, int s, int32_t p0, int32_t p1, int32_t delta);

kv_cache *fwd_kv(fwd_ctx *c);
const model *fwd_model(const fwd_ctx *c);
int fwd_n_ctx(const fwd_ctx *c);
int fwd_n_batch(const fwd_ctx *c);
int fwd_n_outputs(const fwd_ctx *c);
int fwd_n_threads(const fwd_ctx *c);
const kern_ops *fwd_kernels(const fwd_ctx *c);

#endif
