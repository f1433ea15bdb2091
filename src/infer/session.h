// session.h — one sequence of a context that never reprocesses what it holds.
//
// The caller hands the whole prompt every time; the session compares it with
// the tokens its sequence already holds in the KV cache, removes the part
// that differs, and decodes only the new tokens (in batches of the context's
// batch size). Positions stay exact: token i of the session is at position i.
// When the prompt is entirely cached, the last token is decoded again so the
// logits are fresh rather than stale.
//
//     sess *s;
//     sess_params sp = sess_default_params();
//     if (sess_new(&s, ctx, &sp, &err) != SIM_OK) ...
//     if (sess_set_prompt(s, toks, n, &stats, &err) != SIM_OK) ...   // stats.n_decoded
//     sess_gen_params gp = {.n_predict = 200, .stop = stops, .n_stop = 1, .on_text = print, .ud = out};
//     sess_result r;
//     if (sess_generate(s, smp, &gp, &r, &err) != SIM_OK) ...        // r.text, r.reason
//     sess_result_free(&r);
//     sess_free(s);
//
// Context shift: when the context (or the session's own budget) is full, the
// session keeps its first n_keep tokens, drops the next n_discard, and moves
// the rest back (fwd_seq_shift re-rotates their keys) — generation goes on
// indefinitely. With context_shift off a full context ends generation with
// SIM_ERR_RANGE and a clear message.
//
// State files (sess_save / sess_load) hold the session's tokens and KV
// cells, keyed by the model's content hash, the engine version, the context
// size and the KV type; a file that does not match, or is corrupt, is
// refused with a precise error and the session is left as it was.
//
// Ownership: a session borrows its fwd_ctx (several sessions may share one
// context, each with its own sequence id) and owns its token list.
#ifndef SIM_SESSION_H
#define SIM_SESSION_H

#include "infer/sample.h"
#include "model/forward.h"

typedef struct sess sess;

typedef struct sess_params {
    int seq;           // sequence id in the context's KV cache (0..63)
    int max_tokens;    // the session's budget of cells (0: the context size)
    bool context_shift; // shift instead of failing when full (default true)
    int n_keep;        // tokens kept at the front on a shift (-1: BOS if the text starts with it)
    int n_discard;     // tokens dropped per shift (0: half of those after n_keep)
} sess_params;

typedef struct sess_stats {
    int n_reused;  // prompt tokens that were already cached
    int n_decoded; // tokens decoded (includes the re-evaluated last token)
    int n_shifts;  // context shifts done
} sess_stats;

typedef enum sess_stop {
    SESS_STOP_LIMIT = 0, // n_predict reached
    SESS_STOP_EOG,       // the model ended the text
    SESS_STOP_STRING,    // a stop string appeared (trimmed from the text)
    SESS_STOP_ABORTED,   // on_text returned false or *abort was set
    SESS_STOP_FULL,      // the context is full and shifting is off
} sess_stop;

typedef struct sess_gen_params {
    int n_predict;                 // tokens to generate per sequence (< 0: no limit)
    const char *const *stop;       // stop strings
    int n_stop;
    // Receives a sequence's text as it becomes final (never half a UTF-8
    // character, never text that might still turn out to be part of a stop
    // string). Returning false stops that sequence.
    bool (*on_text)(void *ud, int seq, const char *text, size_t len);
    // Called with each sampled token before its text is handled (to advance a
    // grammar or healing state); an error stops generation with that error.
    sim_status (*on_token)(void *ud, int seq, int32_t tok, sim_err *err);
    void *ud;
    const volatile int *abort;     // polled before each token when not NULL
    size_t skip_bytes;             // drop this many bytes of output first (a healed prompt end)
} sess_gen_params;

typedef struct sess_result {
    char *text;       // the generated text, stop string trimmed (NUL-terminated; sess_result_free)
    size_t len;
    int n_tokens;     // tokens sampled
    sess_stop reason;
    sess_stats stats;
} sess_result;

sess_params sess_default_params(void);
sim_status sess_new(sess **out, fwd_ctx *c, const sess_params *p, sim_err *err);
void sess_free(sess *s); // removes its sequence from the cache

// Makes the session hold toks[0..n) with fresh logits for the last token.
// Errors (the prompt does not fit with shifting off, a bad token) leave the
// cached tokens that still match the prompt in place.
sim_status sess_set_prompt(sess *s, const int32_t *toks, int n, sess_stats *stats, sim_err *err);

// Appends a token (decoding it), shifting first when the session is full.
sim_status sess_push(sess *s, int32_t tok, sess_stats *stats, sim_err *err);

// Samples and appends tokens until a stop condition. The result's text is
// the continuation only.
sim_status sess_generate(sess *s, smp_ctx *smp, const sess_gen_params *gp, sess_result *r, sim_err *err);
// The same for n sessions of one context (each with its own sampler), one
// batched decode per step: parallel continuations. rs has room for n.
sim_status sess_generate_many(sess **ss, smp_ctx **smps, int n, const sess_gen_params *gp, sess_result *rs,
                              sim_err *err);
void sess_result_free(sess_result *r);

// --- stepwise use: a scheduler batching many sessions ----------------------------
//
// A server decodes the sessions of many clients together: each step it takes
// a chunk of every pending prompt and the next token of every generating
// session into one fwd_decode (continuous batching).
//
//     sess_queue_prompt(s, toks, n, &stats, &err);   // diff; the new tokens wait in s's queue
//     while (sess_n_queued(s) > 0) sess_decode_many(ss, take, k, &err);   // s among ss
//     sess_gen *g; sess_gen_new(&g, s, smp, &gp, &err);
//     for (bool more = true; more;) {
//         sess_gen_step(g, &more, &err);             // samples; queues the token when more
//         if (more) sess_decode_many(ss, ones, k, &err);
//     }
//     sess_gen_finish(g, &r, &err);

// Like sess_set_prompt but decodes nothing: drops the cached tail that
// differs from the prompt and queues the tokens still to decode (stats
// counts them as n_decoded). Errors leave the session unchanged.
sim_status sess_queue_prompt(sess *s, const int32_t *toks, int n, sess_stats *stats, sim_err *err);
int sess_n_queued(const sess *s);

// One fwd_decode for the sessions ss[0..n) of one context: up to take[i]
// queued tokens of session i, in queue order (sessions shift first when
// full and shifting is on). A session whose queue empties gets fresh
// logits. The total must fit the context's batch; on error (context full
// with shifting off, a bad batch) nothing is decoded.
sim_status sess_decode_many(sess **ss, const int *take, int n, sim_err *err);

// One sequence's generation, a token at a time (what sess_generate loops).
typedef struct sess_gen sess_gen;
// Needs fresh logits and an empty queue. gp is copied (its strings borrowed).
sim_status sess_gen_new(sess_gen **out, sess *s, smp_ctx *smp, const sess_gen_params *gp, sim_err *err);
// Samples the next token from the session's logits and handles its text (on_text,
// stop strings). *more: the token was queued for decoding; false: generation
// has ended (see sess_gen_result()->reason) or failed (the status).
sim_status sess_gen_step(sess_gen *g, bool *more, sim_err *err);
// The result so far (n_tokens, reason).
const sess_result *sess_gen_result(const sess_gen *g);
// Flushes the remaining text into r and frees g.
sim_status sess_gen_finish(sess_gen *g, sess_result *r, sim_err *err);

// The logits after the last decoded token, (n_vocab); NULL before any decode.
const float *sess_logits(const sess *s);
int sess_n_tokens(const sess *s);
const int32_t *sess_tokens(const sess *s);
int sess_seq(const sess *s);
fwd_ctx *sess_ctx(const sess *s);

// Adds a sequence sharing this session's cells (no copy): a new session on
// seq dst holding the same tokens and logits.
sim_status sess_fork(const sess *s, int dst, sess **out, sim_err *err);

// Turns context shifting on or off and sets how many tokens a shift keeps at
// the start (n_keep < 0: BOS; e.g. the length of a system prompt).
void sess_set_shift(sess *s, bool on, int n_keep);

// State files.
sim_status sess_save(const sess *s, const char *path, sim_err *err);
sim_status sess_load(sess *s, const char *path, sim_err *err);

#endif
