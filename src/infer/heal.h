// heal.h — token healing: fix the tokenization boundary at the end of a prompt.
//
// A prompt that ends mid-word ("Once upon a ti") is tokenized into pieces the
// model rarely saw at a word's end ("▁ti"), so it continues badly. Healing
// rolls back the last token(s), remembers their text (" ti"), and constrains
// the next token(s) to pieces that begin with that text (" time") — or that
// are a prefix of it, when the text spans several tokens. The caller then
// strips the healed text from the output, so the continuation starts with
// "me".
//
//     heal_index *ix;                           // once per vocabulary
//     heal_index_new(&ix, vocab, &err);
//     heal_state hs;
//     int keep = heal_rollback(ix, toks, n, HEAL_DYNAMIC, &hs);  // decode toks[0..keep)
//     ... before sampling: heal_filter(ix, &hs, cands, n_cands); after: heal_accept(ix, &hs, tok);
//     ... skip hs.removed_len bytes of generated text
//     heal_index_free(ix);
//
// Rollback never crosses a special (control, unknown, unused) token and
// keeps at least one token. The index is immutable and shareable; a
// heal_state is per sequence and holds no heap memory.
#ifndef SIM_HEAL_H
#define SIM_HEAL_H

#include "infer/sample.h"
#include "model/tok.h"

typedef enum heal_mode {
    HEAL_OFF = 0,
    HEAL_LAST,    // roll back the last token
    HEAL_DYNAMIC, // roll back as many tokens as some vocabulary piece can still cover
} heal_mode;

#define HEAL_MAX_BYTES 256

typedef struct heal_index heal_index;

typedef struct heal_state {
    char removed[HEAL_MAX_BYTES]; // the text rolled back
    int removed_len;
    int matched; // bytes of removed already produced by accepted tokens
} heal_state;

sim_status heal_index_new(heal_index **out, const tok_vocab *v, sim_err *err);
void heal_index_free(heal_index *ix);
bool heal_parse_mode(const char *name, heal_mode *out); // "off", "last", "dynamic"

// Chooses how many of toks[0..n) to keep and fills st with the removed text.
// Returns n (nothing removed) when healing does not apply.
int heal_rollback(const heal_index *ix, const int32_t *toks, int n, heal_mode mode, heal_state *st);

// Whether generated tokens must still be constrained.
static inline bool heal_active(const heal_state *st) { return st->matched < st->removed_len; }

// Sets the logit of every candidate that cannot continue the removed text to -INFINITY.
void heal_filter(const heal_index *ix, const heal_state *st, smp_cand *cands, int n);

// Records a chosen token (it must have passed heal_filter).
void heal_accept(const heal_index *ix, heal_state *st, int32_t tok);

#endif
