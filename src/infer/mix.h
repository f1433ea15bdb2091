// mix.h — several models write one text together, token by token (as
// VisuaLL): each step every model reads the same text and gives its
// distribution (softmax of the raw logits at temperature 1), one piece of
// text is chosen, and every model appends it.
//
// Modes:
//   MIX_ROUND_ROBIN  the models take turns, `turn` tokens each: the writer's
//                    most likely token is taken, the writer is credited;
//   MIX_DEMOCRATIC   the models' probabilities are summed per token text and
//                    the largest sum wins (ties: the smaller text bytes); the
//                    model that gave it the highest probability is credited
//                    (ties: the lower index);
//   MIX_REFERENCE    model 0's most likely token is always taken (credited).
// In every mode a token is flagged `disagree` when some model's own most
// likely token has a different text than the one taken.
//
// Matching by text: models with different vocabularies meet on token TEXT,
// the bytes a token decodes to (tok_token_text, special tokens excluded). A
// model's probability of a text is the sum of the probabilities of its tokens
// with exactly those bytes; a text none of its tokens has gets 0 there.
// Tokens with no text (control, end of generation) are never chosen: a mix
// writes exactly n_predict tokens. "Most likely token" means among tokens
// with text.
//
// Keeping the models in step: a model that has a token with the chosen text
// appends that token (the writer its own, the others their most likely one
// with that text), so a model alone writes exactly what it writes greedily
// by itself. A model that has no such token re-tokenizes the prompt and the
// whole text so far with its own tokenizer and decodes only what differs
// from what it holds (sess_set_prompt's diff), so every model always holds
// exactly prompt + text.
//
//     fwd_ctx *ctxs[2] = {ca, cb};               // one context per model
//     mix_params mp = mix_default_params();
//     mp.mode = MIX_REFERENCE; mp.n_predict = 64;
//     mix_result r;
//     if (mix_generate(ctxs, 2, prompt, strlen(prompt), &mp, &r, &err) != SIM_OK) ...
//     for (int i = 0; i < r.n_tokens; i++) if (r.tokens[i].disagree) ...
//     mix_result_free(&r);
//
// Ownership: the contexts are borrowed; mix uses (and empties) their
// sequence 0. The result owns its strings (mix_result_free). Errors (a full
// context, an untokenizable prompt, no memory, an abort from on_token) come
// back as a status with a message in err and an empty result.
#ifndef SIM_MIX_H
#define SIM_MIX_H

#include "infer/session.h"

#define MIX_MAX_MODELS 4

typedef enum mix_mode { MIX_ROUND_ROBIN = 0, MIX_DEMOCRATIC, MIX_REFERENCE } mix_mode;

typedef struct mix_token {
    char *text;                  // the piece taken (NUL-terminated)
    size_t len;
    int model;                   // the model credited
    float probs[MIX_MAX_MODELS]; // each model's probability of this text
    bool disagree;               // some model's most likely token has another text
} mix_token;

typedef struct mix_result {
    char *text;        // every piece, in order (NUL-terminated); the prompt not included
    size_t len;
    mix_token *tokens; // (n_tokens)
    int n_tokens;
    int n_models;
} mix_result;

typedef struct mix_params {
    mix_mode mode;
    int turn;       // round-robin: tokens per turn [1]
    int n_predict;  // tokens to write [32]
    // Called with each token as it is taken (index i of the result); false stops (SIM_ERR_ABORTED).
    bool (*on_token)(void *ud, int i, const mix_token *t);
    void *ud;
} mix_params;

mix_params mix_default_params(void);
bool mix_mode_from_name(const char *name, mix_mode *out); // "round-robin", "democratic", "reference"
const char *mix_mode_name(mix_mode m);

// Writes n_predict tokens after prompt[0..len) with the models of ctxs[0..n)
// (2..MIX_MAX_MODELS, distinct contexts). See the top of this file.
sim_status mix_generate(fwd_ctx *const *ctxs, int n, const char *prompt, size_t len, const mix_params *p, mix_result *r,
                        sim_err *err);
void mix_result_free(mix_result *r);

#endif
