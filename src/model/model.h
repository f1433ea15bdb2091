// model.h — a loaded language model: hyperparameters, weights, vocabulary.
//
// Supported architectures (general.architecture):
//   llama  — Llama 1/2/3, Mistral, TinyLlama: RMSNorm, RoPE (adjacent pairs),
//            grouped-query attention, SwiGLU, tied or separate output,
//            optional rope_freqs (Llama 3 rope scaling) and linear scaling
//   qwen2  — as llama with Q/K/V biases and NeoX RoPE (halves rotated)
//
//     model *m;
//     if (model_load(&m, path, &(model_params){0}, &err) != SIM_OK) { puts(err.msg); return 1; }
//     ... m->hp.n_embd, m->vocab, m->layers[i].wq ...
//     model_free(m);
//
// Weights point into the mmap'd file (no copies); only small 1-D tensors
// stored in a non-float type are converted into an owned buffer. Every shape
// is checked against the hyperparameters at load, with an error naming the
// file and the tensor.
#ifndef SIM_MODEL_H
#define SIM_MODEL_H

#include <pthread.h>

#include "base/base.h"
#include "model/gguf.h"
#include "model/tok.h"
#include "tensor/matmul.h"

typedef enum model_arch {
    ARCH_LLAMA = 0,
    ARCH_QWEN2 = 1,
} model_arch;

typedef struct model model;

// How positions map to RoPE angles beyond the plain base^(-2i/d) frequencies.
typedef enum rope_scaling {
    ROPE_SCALING_NONE = 0,
    ROPE_SCALING_LINEAR,  // positions × freq_scale (position interpolation)
    ROPE_SCALING_NTK,     // NTK-aware: base × factor^(d/(d-2)), frequencies unscaled
    ROPE_SCALING_DYNAMIC, // NTK with the factor taken from the context size over the training context
    ROPE_SCALING_YARN,    // YaRN: per-frequency mix of interpolation and extrapolation + attention scale
} rope_scaling;

typedef struct model_hparams {
    model_arch arch;
    char arch_name[32];
    int n_vocab;     // rows of token_embd
    int n_embd;      // model width
    int n_layer;
    int n_head;      // query heads
    int n_head_kv;   // key/value heads (GQA when < n_head)
    int head_dim;    // per head
    int n_ff;        // feed-forward width
    int n_ctx_train; // training context length
    float norm_eps;  // RMSNorm epsilon
    // RoPE
    int rope_dim;        // rotated dimensions per head (<= head_dim)
    bool rope_neox;      // rotate (i, i + rope_dim/2) pairs instead of (2i, 2i+1)
    float rope_base;     // theta base
    float rope_freq_scale; // 1/factor: positions (linear) or low frequencies (YaRN) scaled by it
    rope_scaling rope_scaling;
    int rope_orig_ctx;     // YaRN / dynamic NTK: the context the model was trained for
    float yarn_ext_factor; // YaRN: weight of extrapolation in the ramp (1 by default, 0 turns the mix off)
    float yarn_attn_factor; // YaRN: extra attention magnitude factor (1 by default)
    float yarn_beta_fast;  // YaRN: ramp bounds in rotations over the original context (32, 1)
    float yarn_beta_slow;
} model_hparams;

// Per-frequency RoPE angles: the angle of pair i at position p is p · omega[i];
// cos and sin are multiplied by mscale (YaRN's attention factor, else 1).
// Shifting a cached key by Δ positions rotates it by Δ · omega[i] with no
// magnitude change (the factor is already in the key).
typedef struct rope_table {
    int n;          // rope_dim / 2
    float omega[512];
    float mscale;
} rope_table;

// Fills t for a context of n_ctx cells (only dynamic NTK depends on it).
void model_rope_table(const model *m, int n_ctx, rope_table *t);

typedef struct model_layer {
    const float *attn_norm; // (n_embd)
    mm_tensor wq;           // (n_head*head_dim rows, n_embd)
    mm_tensor wk;           // (n_head_kv*head_dim rows, n_embd)
    mm_tensor wv;           // (n_head_kv*head_dim rows, n_embd)
    mm_tensor wo;           // (n_embd rows, n_head*head_dim)
    const float *bq;        // (n_head*head_dim) or NULL
    const float *bk;        // (n_head_kv*head_dim) or NULL
    const float *bv;        // (n_head_kv*head_dim) or NULL
    const float *ffn_norm;  // (n_embd)
    mm_tensor w_gate;       // (n_ff rows, n_embd)
    mm_tensor w_up;         // (n_ff rows, n_embd)
    mm_tensor w_down;       // (n_embd rows, n_ff)
} model_layer;

typedef struct model_params {
    bool vocab_only;       // load the tokenizer only (works on vocab-only files)
    // RoPE overrides (0 / ROPE_SCALING_NONE with has_rope_scaling false: from the file)
    float rope_freq_base;
    float rope_freq_scale;
    bool has_rope_scaling;
    rope_scaling rope_scaling;
    int yarn_orig_ctx;
    float yarn_ext_factor;  // < 0: default
    float yarn_attn_factor; // 0: default
    float yarn_beta_fast, yarn_beta_slow; // 0: default
} model_params;

// Parses "none", "linear", "ntk", "dynamic", "yarn".
bool model_rope_scaling_from_name(const char *name, rope_scaling *out);
const char *model_rope_scaling_name(rope_scaling s);

struct model {
    model_hparams hp;
    gguf_file *gguf;        // owns the mapping the weights point into
    tok_vocab *vocab;
    mm_tensor tok_embd;     // (n_vocab rows, n_embd)
    const float *out_norm;  // (n_embd)
    mm_tensor output;       // (n_vocab rows, n_embd); the same data as tok_embd when tied
    bool tied_output;
    const float *rope_freqs; // (rope_dim/2) frequency divisors, or NULL
    model_layer *layers;    // (n_layer)
    uint64_t n_params;      // elements of all tensors
    size_t weight_bytes;    // bytes of all tensor data
    float *owned;           // converted 1-D tensors
    pthread_mutex_t hash_lock; // guards the lazily computed content hash
    bool hash_done;
    uint64_t content_hash;
};

sim_status model_load(model **out, const char *path, const model_params *params, sim_err *err);
// The same from an opened file, which the model takes over (closed on error too).
sim_status model_load_gguf(model **out, gguf_file *f, const model_params *params, sim_err *err);
void model_free(model *m);

// A 64-bit hash of the whole model file, computed on first use (about a
// second for 10 GB); keys state files to the exact weights. Thread-safe.
uint64_t model_content_hash(model *m);

// The most common weight type (by bytes), for reports ("q4_K").
tt_type model_main_type(const model *m);

#endif
