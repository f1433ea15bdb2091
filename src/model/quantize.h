// quantize.h — converting model weights between types, and random-weight
// models for tests and benchmarks.
//
// A file type (qz_ftype) names a recipe: a base tensor type plus rules that
// give some tensors more bits, as llama.cpp's mixes do:
//   - 1-D tensors (norms, biases) stay F32;
//   - the output matrix (or the token embedding when it doubles as the output)
//     gets Q6_K for every quantized recipe but Q8_0 (it decides every token);
//   - the "_M" mixes give attn_v and ffn_down Q6_K in the first and last
//     eighth of the layers and every third layer between (use_more_bits);
//   - a row length that is not a multiple of the type's block falls back to a
//     32-block type of similar size, then to F16.
//
//     qz_ftype ft;
//     if (!qz_ftype_from_name("q4_k_m", &ft)) ...
//     if (qz_quantize_file("in.gguf", "out.gguf", ft, 2, &err) != SIM_OK) puts(err.msg);
//
//     qz_synth_params sp = qz_synth_default();   // a random-weight llama
//     sp.n_embd = 2048; sp.n_layer = 22; ...
//     qz_synth("bench.gguf", &sp, &err);
#ifndef SIM_QUANTIZE_H
#define SIM_QUANTIZE_H

#include "base/base.h"
#include "tensor/types.h"

typedef enum qz_ftype {
    QZ_F32, QZ_F16, QZ_BF16, QZ_Q4_0, QZ_Q4_1, QZ_Q5_0, QZ_Q5_1, QZ_Q8_0,
    QZ_Q2_K, QZ_Q3_K_M, QZ_Q4_K_S, QZ_Q4_K_M, QZ_Q5_K_S, QZ_Q5_K_M, QZ_Q6_K,
    QZ_FTYPE_COUNT
} qz_ftype;

bool qz_ftype_from_name(const char *name, qz_ftype *out); // case-insensitive: "Q4_K_M", "q8_0", "f16"
const char *qz_ftype_name(qz_ftype ft);
uint32_t qz_ftype_gguf(qz_ftype ft); // the general.file_type value
// Every recipe name, for messages ("f32, f16, bf16, q4_0, ...").
const char *qz_ftype_list(void);

// The type a tensor gets under a recipe. name: the GGUF tensor name;
// n_dims/ne: its shape; n_layer: the model's block count; tied: the token
// embedding is also the output matrix.
tt_type qz_tensor_type(qz_ftype ft, const char *name, int n_dims, const int64_t *ne, int n_layer,
                       bool tied);

// Converts every tensor of a GGUF model file and writes the result; all
// metadata is kept (general.file_type updated). Rows are converted in
// parallel on n_threads threads.
sim_status qz_quantize_file(const char *in, const char *out, qz_ftype ft, int n_threads, sim_err *err);

typedef struct qz_synth_params {
    const char *arch;     // "llama" or "qwen2"
    int n_vocab, n_embd, n_layer, n_head, n_head_kv, n_ff, n_ctx_train;
    float rope_base;
    bool tied;            // no output.weight: the token embedding is the output
    qz_ftype ftype;
    uint64_t seed;
    const char *vocab_from; // copy tokenizer.* metadata from this GGUF (else a synthetic SentencePiece vocab)
    int n_threads;
} qz_synth_params;

qz_synth_params qz_synth_default(void); // a tiny llama: vocab 512, dim 64, 2 layers
sim_status qz_synth(const char *path, const qz_synth_params *p, sim_err *err);

#endif
