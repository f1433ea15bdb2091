// sample.h — choosing the next token from logits: the sampler chain.
//
// One smp_sample call turns a row of logits into a token in three stages:
//
//   1. constraint, then logit bias (always first, see smp_set_constraint)
//      — candidates whose logit becomes -INFINITY are removed;
//   2. the chain: the steps listed in smp_params.order, in that order.
//      Default (llama.cpp's): penalties → dry → top_n_sigma → top_k →
//      typical → top_p → min_p → xtc → temperature. A step whose parameter
//      is at its "off" value does nothing;
//   3. a draw from softmax(remaining logits) with the seeded RNG — or, when
//      mirostat is 1 or 2, a mirostat draw, which replaces the truncation
//      steps (top_n_sigma, top_k, typical, top_p, min_p, xtc) and the
//      dynamic temperature: only penalties and dry run from the order, then
//      plain temperature, then mirostat.
//
// Temperature 0 (with no dynamic range) keeps only the most likely candidate
// at the temperature step: greedy decoding. The same seed, parameters,
// accepted tokens and logits give the same tokens.
//
// Where we differ from llama.cpp on purpose: in mirostat mode penalties and
// DRY still run (llama.cpp's common sampler drops the whole chain there), so
// repetition control survives a switch to mirostat; DRY's sequence breakers
// are matched in the decoded text, so a breaker split across tokens in any
// way counts (llama.cpp matches one precomputed tokenization of each
// breaker's tail; see step_dry in sample.c); the RNG is xoshiro256** shared
// by XTC, mirostat and the draw (llama.cpp: mt19937 per sampler), so a seed
// does not reproduce llama.cpp's tokens; smp_reset also reseeds.
//
// Cost per token (one x86-64 core): the default chain reads the logits once
// for top-k and touches only the survivors: ~30 us at 32K entries, ~75 us at
// 150K; penalties and DRY over a 4096-token history add ~15 us. Chains that
// need the whole distribution (top-p, typical or mirostat with no top-k
// before them) pay an expf per entry: ~0.2 ms at 32K, ~0.8-2.5 ms at 150K.
//
//     smp_params sp = smp_default_params();
//     sp.temp = 0.8f; sp.seed = 42;
//     sp.dry_multiplier = 0.8f; sp.vocab = vocab;     // DRY needs token texts
//     if (smp_parse_order(&sp, "penalties;dry;min_p;temperature", &err) != SIM_OK) ...
//     smp_ctx *s;
//     if (smp_new(&s, n_vocab, &sp, &err) != SIM_OK) ...
//     for each prompt token: smp_accept(s, tok);      // history for penalties / DRY
//     int32_t tok = smp_sample(s, logits);            // does not modify logits
//     smp_accept(s, tok);
//     smp_cand top[5]; float p;
//     int n = smp_last_probs(s, top, 5, &p);          // n_probs: top 5 and p(tok)
//     smp_free(s);
//
// Ownership: smp_new copies everything in smp_params (order, logit bias list,
// sequence-breaker strings) except `vocab`, which is borrowed: it must outlive
// the sampler. A sampler allocates all its buffers in smp_new (sized by the
// vocabulary and the history windows); smp_sample and smp_accept never
// allocate. A sampler is one sequence's state: use one per sequence, from one
// thread at a time.
//
// Errors: smp_new and smp_parse_order return a sim_status and name the
// offending parameter and its allowed range in err; on error nothing is
// created or changed. smp_sample returns SMP_NO_TOKEN when every candidate
// was removed (all logits NaN / -INFINITY, or banned by bias or constraint)
// and SMP_FAILED when the constraint reported an error (smp_last_err).
#ifndef SIM_SAMPLE_H
#define SIM_SAMPLE_H

#include "base/base.h"
#include "model/tok.h"

#define SMP_NO_TOKEN (-1)      // smp_sample: no candidate was left
#define SMP_FAILED (-2)        // smp_sample: the constraint failed (see smp_last_err)
#define SMP_MAX_ORDER 16       // longest chain in smp_params.order
#define SMP_MAX_BREAKERS 32    // DRY sequence breakers
#define SMP_MAX_BREAKER_LEN 40 // bytes per breaker (as llama.cpp's limit)
#define SMP_MIROSTAT_M 100     // mirostat v1: tokens used to estimate the Zipf exponent
#define SMP_MAX_CTX (1 << 20)  // largest history window (n_ctx)

// The steps of the chain (smp_params.order). Names for smp_parse_order in
// brackets; llama.cpp's spellings are accepted too.
typedef enum smp_kind {
    SMP_KIND_PENALTIES = 0, // "penalties": repeat / frequency / presence
    SMP_KIND_DRY,           // "dry"
    SMP_KIND_TOP_N_SIGMA,   // "top_n_sigma" ("top-n-sigma")
    SMP_KIND_TOP_K,         // "top_k" ("top-k")
    SMP_KIND_TYPICAL,       // "typ_p" ("typical", "typical_p", "typical-p", "typ-p", "typ")
    SMP_KIND_TOP_P,         // "top_p" ("top-p", "nucleus")
    SMP_KIND_MIN_P,         // "min_p" ("min-p")
    SMP_KIND_XTC,           // "xtc"
    SMP_KIND_TEMPERATURE,   // "temperature" ("temp"); includes dynamic temperature
    SMP_KIND_COUNT
} smp_kind;

typedef struct smp_bias {
    int32_t token;
    float bias; // added to the logit; -INFINITY bans the token
} smp_bias;

typedef struct smp_params {
    // --- the chain ---
    smp_kind order[SMP_MAX_ORDER]; // steps in order (repeats allowed)
    int n_order;                   // 0..SMP_MAX_ORDER

    // --- temperature ---
    float temp;              // >= 0; logits are divided by it; 0: keep only the best (greedy)
    float dynatemp_range;    // >= 0; > 0: temperature in [temp - range, temp + range] by entropy
    float dynatemp_exponent; // >= 0; the entropy → temperature curve (1: linear)

    // --- truncation ---
    int top_k;         // keep the k most likely (0: off)
    float top_p;       // (0, 1]: keep the smallest most-likely set with mass >= p (1: off)
    float min_p;       // [0, 1]: keep p >= min_p * p_max (0: off)
    float typical_p;   // (0, 1]: keep the set closest to the entropy with mass > p (1: off)
    float top_n_sigma; // keep logits >= max - n * stddev (<= 0: off)
    float xtc_probability; // [0, 1]: chance that XTC acts on a draw (0: off)
    float xtc_threshold;   // [0, 1]: XTC removes top tokens with p >= this (> 0.5: off)
    int min_keep;          // >= 0: top-p, min-p, typical and XTC keep at least this many

    // --- penalties over the last repeat_last_n accepted tokens ---
    float repeat_penalty;   // > 0; 1: off; seen tokens: positive logits / it, others * it
    float frequency_penalty; // logit -= count * it (0: off)
    float presence_penalty;  // logit -= it if count > 0 (0: off)
    int repeat_last_n;       // window; 0: off, -1: n_ctx

    // --- DRY ("don't repeat yourself") ---
    float dry_multiplier;    // >= 0; 0: off
    float dry_base;          // >= 1 (when on); penalty = multiplier * base^(length - allowed)
    int dry_allowed_length;  // >= 1; repeats up to this long are free
    int dry_penalty_last_n;  // window; 0: off, -1: n_ctx
    const char *const *dry_breakers; // strings that end a repeat ("\n", ":", "\"", "*")
    int n_dry_breakers;              // 0..SMP_MAX_BREAKERS; each 1..SMP_MAX_BREAKER_LEN bytes
    const tok_vocab *vocab;  // token texts for the breakers; borrowed (needed when DRY has breakers)

    // --- mirostat (replaces the truncation steps when on) ---
    int mirostat;       // 0: off, 1: v1 (m = SMP_MIROSTAT_M), 2: v2
    float mirostat_tau; // >= 0: target surprise, bits
    float mirostat_eta; // >= 0: learning rate of mu

    // --- logit bias (applied first) ---
    const smp_bias *logit_bias; // (n_logit_bias); tokens in [0, n_vocab); copied
    int n_logit_bias;

    int n_ctx;     // 1..SMP_MAX_CTX: the history a window of -1 covers
    uint64_t seed; // the RNG's seed (the draw, XTC, mirostat)
} smp_params;

// A candidate token. Steps keep `logit` current; `p` is valid after the steps
// that compute probabilities and, at the end of smp_sample, is the final
// distribution the token was drawn from.
typedef struct smp_cand {
    int32_t id;
    float logit;
    float p;
} smp_cand;

typedef struct smp_ctx smp_ctx;

// --- setup -------------------------------------------------------------------------

// llama.cpp's defaults: the order above, temp 0.8, top-k 40, top-p 0.95,
// min-p 0.05, typical 1, top-n-sigma -1, XTC 0 / 0.1, min_keep 0, penalties
// off (1, 0, 0) over 64 tokens, DRY off (multiplier 0, base 1.75, allowed 2,
// window -1, breakers "\n" ":" "\"" "*"), mirostat off (tau 5, eta 0.1),
// no bias, n_ctx 4096, seed 0.
smp_params smp_default_params(void);

// Creates a sampler for logits of n_vocab entries. Checks every parameter
// (SIM_ERR_ARG with the parameter's name and range); SIM_ERR_NOMEM.
sim_status smp_new(smp_ctx **out, int n_vocab, const smp_params *p, sim_err *err);
void smp_free(smp_ctx *s); // NULL is fine

// Back to the state smp_new left: history, mirostat mu and the RNG (reseeded).
void smp_reset(smp_ctx *s);

// --- the chain order -----------------------------------------------------------------

// Parses "penalties;dry;top_k;typical;top_p;min_p;xtc;temperature" (names
// separated by ';', ',' or spaces) into p->order / p->n_order. An unknown or
// empty name is SIM_ERR_ARG naming it and its position; p is then unchanged.
sim_status smp_parse_order(smp_params *p, const char *text, sim_err *err);
const char *smp_kind_name(smp_kind k); // canonical name; "?" out of range
// Writes the order as text ("penalties;dry;...") into buf (NUL-terminated,
// truncated to cap); returns the full length.
int smp_format_order(const smp_params *p, char *buf, int cap);

// --- constraint ----------------------------------------------------------------------
//
// A constraint (a grammar) runs before everything else on every draw. It
// gets every token as a candidate, in id order (cand[i].id == i for i <
// n_vocab, logit as the model gave it, p 0), and sets the logit of each one
// it rejects to -INFINITY; it must not change ids or order (checked by an
// ASSERT) and should leave the other fields alone. Rejected tokens never
// become candidates, so every later step — penalties, truncation, the draw,
// the n_probs report — sees only allowed tokens. It returns SIM_OK, or an
// error status with a message in err: smp_sample then returns SMP_FAILED and
// smp_last_err says why. ctx is borrowed. The constraint's own state (a
// grammar's position) is the caller's to advance after each sampled token:
// smp_accept does not call it, because callers also pass prompt tokens
// through smp_accept. With the grammar module (infer/grammar.h):
//
//     typedef struct { gram_state *st; const gram_vocab *gv; } gram_ctx;
//     static sim_status gram_constraint(void *ctx, smp_cand *cand, int n, sim_err *err) {
//         gram_ctx *g = ctx;
//         return gram_filter(g->st, g->gv, cand, (size_t)n, err);
//     }
//     smp_set_constraint(s, gram_constraint, &g);
//     tok = smp_sample(s, logits);   // then gram_accept_token(g.st, g.gv, tok, &err)
//
// Cost: one pass writing n_vocab candidates and one reading them back, plus
// the constraint's own work.
typedef sim_status (*smp_constraint_fn)(void *ctx, smp_cand *cand, int n, sim_err *err);
void smp_set_constraint(smp_ctx *s, smp_constraint_fn fn, void *ctx); // fn NULL: none

// --- sampling --------------------------------------------------------------------------

// Samples a token from logits[0..n_vocab) (not modified). NaN logits count
// as -INFINITY. Returns the token, SMP_NO_TOKEN when no candidate is left,
// or SMP_FAILED when the constraint failed.
int32_t smp_sample(smp_ctx *s, const float *logits);

// The constraint's error after smp_sample returned SMP_FAILED (code SIM_OK
// otherwise).
const sim_err *smp_last_err(const smp_ctx *s);

// Adds a token to the history (penalties, DRY). Feed the prompt and every
// sampled token. Ids outside [0, n_vocab) are ignored.
void smp_accept(smp_ctx *s, int32_t token);

// The candidates the last smp_sample drew from, most likely first, with
// their final probabilities; returns their count (0 before any sample).
// (Sorts them on first call after a sample: O(n log n) in their number.)
int smp_last_candidates(smp_ctx *s, const smp_cand **out);

// n_probs: writes the min(n, count) most likely final candidates of the last
// smp_sample (id, final logit, p) to out, most likely first, and returns how
// many; *chosen_p (if not NULL) gets the sampled token's probability (0
// before any sample or after SMP_NO_TOKEN). The p are the distribution the
// token was drawn from, so they sum to <= 1. Costs a partial selection.
int smp_last_probs(smp_ctx *s, smp_cand *out, int n, float *chosen_p);

// --- rng -------------------------------------------------------------------------------

// A seeded generator (xoshiro256**): the sampler's, exposed for tests and tools.
typedef struct smp_rng {
    uint64_t s[4];
} smp_rng;
void smp_rng_seed(smp_rng *r, uint64_t seed);
uint64_t smp_rng_next(smp_rng *r);
double smp_rng_uniform(smp_rng *r); // [0, 1)

#endif
