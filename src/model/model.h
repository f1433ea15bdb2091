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

#include "base/base.h"
#include "model/gguf.h"
#include "model/tok.h"
#include "tensor/matmul.h"

typedef enum model_arch {
    ARCH_LLAMA = 0,
    ARCH_QWEN2 = 1,
} model_arch;

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
    float rope_freq_scale; // positions are multiplied by this (linear scaling: 1/factor)
} model_hparams;

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
    float rope_freq_base;  // override when > 0
    float rope_freq_scale; // override when > 0
} model_params;

typedef struct model {
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
} model;

sim_status model_load(model **out, const char *path, const model_params *params, sim_err *err);
// The same from an opened file, which the model takes over (closed on error too).
sim_status model_load_gguf(model **out, gguf_file *f, const model_params *params, sim_err *err);
void model_free(model *m);

// The most common weight type (by bytes), for reports ("q4_K").
tt_type model_main_type(const model *m);

#endif
