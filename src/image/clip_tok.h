// clip_tok.h — the CLIP BPE tokenizer that Stable Diffusion's text encoders
// use (OpenAI's simple_tokenizer.py, without ftfy's text repair).
//
// A text becomes ids in five steps, as the original does:
//   1. HTML entities are unescaped (twice): "&amp;" → "&", "&#233;" → "é";
//   2. runs of whitespace become one space; the ends are trimmed;
//   3. the text is lowercased (Unicode: Latin, Greek, Cyrillic, Armenian,
//      fullwidth Latin — the scripts with case in practice);
//   4. it is split by the regex
//        <|startoftext|>|<|endoftext|>|'s|'t|'re|'ve|'m|'ll|'d|\p{L}+|\p{N}|[^\s\p{L}\p{N}]+
//      (so every digit is its own word);
//   5. each word's UTF-8 bytes become byte symbols, the last one marked as a
//      word end ("</w>"), and BPE merges them by rank.
// The vocabulary comes from a diffusers tokenizer folder (vocab.json +
// merges.txt) or from the original bpe_simple_vocab_16e6.txt.gz; both give
// 49408 ids, 49406 = <|startoftext|>, 49407 = <|endoftext|>.
//
//     clip_tok *t;
//     if (clip_tok_load(&t, "tok/vocab.json", "tok/merges.txt", &err) != SIM_OK) ...
//     int32_t ids[77];
//     clip_tok_encode_sd(t, "a photo of a cat", ids, 77, CLIP_TOK_END, &err);
//     clip_tok_free(t);
//
// Ownership: the clip_tok owns its tables; encoding allocates only
// temporaries and is safe from several threads at once. Errors: sim_status
// plus a message in sim_err; a malformed vocabulary is refused whole.
#ifndef SIM_CLIP_TOK_H
#define SIM_CLIP_TOK_H

#include "base/base.h"

#define CLIP_TOK_START 49406
#define CLIP_TOK_END 49407

typedef struct clip_tok clip_tok;

// From a vocab.json (token → id) and a merges.txt ("#version" line, then
// "a b" per line, by rank). Every merge's parts and result must be tokens.
sim_status clip_tok_load(clip_tok **out, const char *vocab_json_path, const char *merges_path, sim_err *err);
// From the original gzip'd merges file (the vocabulary is derived from it).
sim_status clip_tok_load_gz(clip_tok **out, const char *bpe_gz_path, sim_err *err);
void clip_tok_free(clip_tok *t);

int32_t clip_tok_n_vocab(const clip_tok *t);
// The token's text (byte symbols, "</w>" marking a word end), or NULL.
const char *clip_tok_text(const clip_tok *t, int32_t id);
// The id of the vocabulary entry spelled exactly `text` (no BPE: "!" is 0,
// "!</w>" 256), or -1.
int32_t clip_tok_id(const clip_tok *t, const char *text);

// The ids of text (no start/end tokens) into ids[0..cap); *n_out gets the
// full count, which may exceed cap (the rest is dropped).
sim_status clip_tok_encode(const clip_tok *t, const char *text, size_t len, int32_t *ids, int cap, int *n_out,
                           sim_err *err);

// Stable Diffusion's input: start, the first n_ctx - 2 ids, end, then pad_id
// up to n_ctx (SD 1.x pads with the end token, SD 2.x with 0). Returns the
// number of text ids before truncation in *n_text (NULL allowed).
sim_status clip_tok_encode_sd(const clip_tok *t, const char *text, int32_t *ids, int n_ctx, int32_t pad_id, int *n_text,
                              sim_err *err);

// Prompt weighting as the common web UIs write it: "(word)" ×1.1, "((word))"
// ×1.21, "(word:1.5)" ×1.5, "[word]" ÷1.1, "\\(" a literal parenthesis;
// unclosed brackets apply to the end. Each run of equal weight is tokenized
// on its own (as those UIs do). ids/weights get up to cap entries (no start
// or end tokens); *n_out the full count.
sim_status clip_tok_encode_weighted(const clip_tok *t, const char *text, int32_t *ids, float *weights, int cap, int *n_out,
                                    sim_err *err);

#endif
