// grammar.h — grammar-constrained generation: GBNF grammars, matched byte by
// byte as tokens are generated, and a token filter for the sampler.
//
// The language is GBNF as llama.cpp defines it:
//
//     # comments run to the end of the line
//     root  ::= "{" ws pair ("," ws pair)* "}"     # `root` is where matching starts
//     pair  ::= key ws ":" ws value
//     key   ::= "\"" [a-z_]+ "\""
//     value ::= [0-9]+ | "true" | "false"
//     ws    ::= [ \t\n]{0,4}
//
//   - rules `name ::= alternatives`; names are letters, digits, '-' and '_';
//     a rule may span lines inside ( ), after a '|', or when the next line
//     starts with '|';
//   - string literals "…" and character classes […], [^…] (negated), `.`
//     (any character); escapes \n \r \t \\ \" \[ \] \- \^ \xHH \uHHHH
//     \UHHHHHHHH, all naming Unicode code points (\xE9 is "é", not a byte);
//     any other text is UTF-8;
//   - groups ( ), alternation |, repetition * + ? {m} {m,} {m,n}
//     (bounds at most GRAM_MAX_REPEAT).
// Refused with "line L, column C: what" (columns count characters from 1):
// syntax errors, bad escapes, unterminated strings / classes / groups, empty
// classes, ranges out of order, undefined rules, a rule defined twice, no
// `root`, an empty grammar, invalid UTF-8, and left recursion (a rule that can
// reach itself before matching a character, including `x*` where x can match
// the empty string), which would make a top-down matcher loop.
//
// Matching: the compiled grammar (gram_grammar) is immutable and may be
// shared by any number of threads. Each sequence owns a gram_state: the set
// of parse stacks that are still alive (as llama.cpp), advanced by bytes, so
// a token may end in the middle of a UTF-8 character and the next token
// finishes it. Stacks are hash-consed and every set of stacks becomes a state
// of a lazily built DFA, with its transitions cached in the gram_state; the
// token filter walks a byte trie of the vocabulary (gram_vocab, built once
// per vocabulary) along that DFA, so shared prefixes are matched once and,
// once the states a grammar visits are known, a filter costs one table
// lookup per trie node visited.
//
//     gram_grammar *g;  gram_vocab *gv;  gram_state *st;
//     if (gram_parse(&g, text, len, &err) != SIM_OK) { puts(err.msg); ... }
//     gram_vocab_new(&gv, vocab, &err);           // once per vocabulary
//     gram_state_new(&st, g, &err);               // once per sequence
//     for each step:
//         fill cands[0..n) with {id, logit}
//         gram_filter(st, gv, cands, n, &err);    // disallowed logits → -INFINITY
//         id = sample(cands);
//         if (tok_is_eog(vocab, id)) break;       // allowed only when complete
//         gram_accept_token(st, gv, id, &err);
//     gram_state_free(st); gram_vocab_free(gv); gram_free(g);
//
// Ownership: gram_parse copies what it needs from the text. A gram_vocab
// keeps a pointer to its tok_vocab (which must outlive it) and is immutable.
// A gram_state points at its grammar (which must outlive it) and is used by
// one thread at a time; clone it for a parallel sequence. Functions that take
// a `gram_state *` without changing what it has accepted (gram_filter,
// gram_can_accept_*) still grow its cache. The cache is flushed (keeping the
// current state) when it passes GRAM_CACHE_SOFT bytes (or the limit set by
// gram_state_set_cache_limit).
//
// Errors: functions return a sim_status and write a message into err.
// SIM_ERR_FORMAT: malformed grammar text. SIM_ERR_ARG: a token or bytes the
// grammar does not allow here (gram_accept_*), a NULL argument. SIM_ERR_RANGE:
// a limit was hit (more than GRAM_MAX_STACKS live parses — an ambiguous
// grammar —, stacks deeper than GRAM_MAX_DEPTH, a cache larger than
// GRAM_CACHE_HARD, a grammar too large). SIM_ERR_NOMEM. On any error the
// state still holds exactly what it had accepted before the call.
#ifndef SIM_GRAMMAR_H
#define SIM_GRAMMAR_H

#include "base/base.h"
#include "base/strbuf.h"
#include "infer/sample.h"
#include "model/tok.h"

#define GRAM_MAX_TEXT (16u << 20)     // longest grammar text, bytes
#define GRAM_MAX_REPEAT 10000         // largest m or n in {m,n}
#define GRAM_MAX_ELEMS (1 << 22)      // largest compiled grammar, elements
#define GRAM_MAX_NEST 256             // deepest ( ) nesting in the text
#define GRAM_MAX_STACKS 4096          // live parse stacks after one byte
#define GRAM_MAX_DEPTH 8192           // deepest parse stack (nesting of the input)
#define GRAM_CACHE_SOFT (32u << 20)   // flush the DFA cache above this, bytes
#define GRAM_CACHE_HARD (512u << 20)  // fail rather than grow the cache past this

typedef struct gram_grammar gram_grammar;
typedef struct gram_vocab gram_vocab;
typedef struct gram_state gram_state;

// --- grammars ----------------------------------------------------------------

// Parses and compiles GBNF text[0..len) (need not be NUL-terminated). On
// success *out owns a new grammar (free with gram_free); on error *out is NULL
// and err->msg is "line L, column C: what" (SIM_ERR_FORMAT), or SIM_ERR_RANGE
// for a grammar whose expansion exceeds GRAM_MAX_ELEMS.
sim_status gram_parse(gram_grammar **out, const char *text, size_t len, sim_err *err);
// Appends s[0..n) to b as a GBNF string literal (quotes included, escaped) —
// for code that writes grammars.
void gram_sb_literal(sbuf *b, const char *s, size_t n);
void gram_free(gram_grammar *g); // NULL is fine

int gram_n_rules(const gram_grammar *g);    // including those made for groups and repetitions
int gram_n_elements(const gram_grammar *g); // compiled size

// --- per-sequence state ------------------------------------------------------

// A state at the start of the grammar (nothing accepted).
sim_status gram_state_new(gram_state **out, const gram_grammar *g, sim_err *err);
void gram_state_free(gram_state *s); // NULL is fine
// A new state that has accepted what src has (its cache starts empty).
sim_status gram_state_clone(gram_state **out, const gram_state *src, sim_err *err);
// Makes dst accept what src has accepted; both must use the same grammar
// (SIM_ERR_ARG otherwise). On error dst is unchanged.
sim_status gram_state_copy(gram_state *dst, const gram_state *src, sim_err *err);
// Back to the start of the grammar (keeps the cache). Cannot fail.
void gram_state_reset(gram_state *s);
// The cache size above which the next call flushes it (default
// GRAM_CACHE_SOFT, at most GRAM_CACHE_HARD): lower it for many sequences.
void gram_state_set_cache_limit(gram_state *s, size_t bytes);

// Root fully matched: generation may end here (partial UTF-8 is never complete).
bool gram_is_complete(const gram_state *s);
// Complete and nothing more can follow (or an end-of-generation token was accepted).
bool gram_is_done(const gram_state *s);

// Whether bytes[0..n) can all be accepted from here: 1 yes, 0 no, or a
// negative sim_status on error (a limit, out of memory). Changes nothing
// that the state has accepted.
int gram_can_accept_bytes(gram_state *s, const char *bytes, size_t n, sim_err *err);
// Accepts bytes[0..n), all or nothing: SIM_ERR_ARG (and no change) when the
// grammar does not allow them. n == 0 is fine.
sim_status gram_accept_bytes(gram_state *s, const char *bytes, size_t n, sim_err *err);

// --- tokens ------------------------------------------------------------------

// Builds the byte trie of v's token texts (tok_token_text without special).
// Control tokens are never allowed, end-of-generation tokens (tok_is_eog)
// are allowed exactly when the grammar is complete, tokens with empty text
// never. v must outlive the gram_vocab.
sim_status gram_vocab_new(gram_vocab **out, const tok_vocab *v, sim_err *err);
void gram_vocab_free(gram_vocab *gv); // NULL is fine
int32_t gram_vocab_n_nodes(const gram_vocab *gv); // trie size, for statistics

// 1 when token id can be accepted now, 0 when not, negative sim_status on error.
int gram_can_accept_token(gram_state *s, const gram_vocab *gv, int32_t id, sim_err *err);
// Advances by token id's text; an end-of-generation token is accepted when
// the grammar is complete and makes the state done. SIM_ERR_ARG (and no
// change) for a token the grammar does not allow here.
sim_status gram_accept_token(gram_state *s, const gram_vocab *gv, int32_t id, sim_err *err);
// Sets cand[i].logit = -INFINITY for every candidate the grammar cannot
// accept now (ids out of the vocabulary's range included); other fields and
// the order are untouched. Large candidate sets are matched through the
// trie, small ones (after top-k) token by token. On error the logits may be
// partly filtered: do not sample from them.
sim_status gram_filter(gram_state *s, const gram_vocab *gv, smp_cand *cand, size_t n, sim_err *err);

// Cache statistics, for tests and benchmarks.
typedef struct gram_stats {
    size_t cache_bytes; // memory held by the cache now
    int32_t n_states;   // DFA states built since the last flush
    int32_t n_nodes;    // stack nodes since the last flush
    int32_t n_flushes;
} gram_stats;
gram_stats gram_state_stats(const gram_state *s);

#endif
