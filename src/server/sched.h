// sched.h — the server's scheduler: many requests, one model, one KV cache,
// continuous batching.
//
// N slots share one context: each slot is a session on its own sequence
// with a budget of n_ctx / N cells (shifting past it, as `run` does). A
// thread of its own runs the steps; each step is one fwd_decode holding the
// next token of every generating slot plus chunks of pending prompts (taken
// round-robin, so a long prompt cannot starve the others). Requests wait in
// a bounded queue when every slot is busy (sched_submit says SIM_ERR_BUSY
// when that is full too); a waiting request goes to the idle slot whose
// cached tokens share the longest prefix with its prompt, so a client
// resending a grown conversation decodes only the new part.
//
//     sched *s;
//     sched_config cfg = sched_default_config();
//     if (sched_new(&s, ctx, &cfg, &err) != SIM_OK) ...
//     sched_job job = sched_default_job();
//     job.prompt = toks; job.n_prompt = n; job.sp.temp = 0; job.n_predict = 64;
//     sched_task *t;
//     if (sched_submit(s, &job, &t, &err) != SIM_OK) ...      // SIM_ERR_BUSY: answer 503
//     sched_update u;
//     while (sched_take(t, &u, 100)) { fwrite(u.text, 1, u.len, out); if (u.done) break; }
//     sched_update_free(&u);
//     sched_release(t);                                        // cancels it if still running
//     sched_free(s);
//
// Threads: sched_submit, sched_take, sched_cancel, sched_release and
// sched_get_stats may be called from any thread. A task is shared by the
// caller and the scheduler; it is freed when both have let go.
#ifndef SIM_SCHED_H
#define SIM_SCHED_H

#include "infer/grammar.h"
#include "infer/sample.h"
#include "infer/session.h"

#define SCHED_MAX_TOP 20 // most alternatives reported per token (top_logprobs)

typedef struct sched sched;
typedef struct sched_task sched_task;

typedef struct sched_config {
    int n_slots;   // parallel sequences (1..min(KV_MAX_SEQ, the context's outputs per step))
    int max_queue; // requests waiting for a slot before sched_submit says busy
} sched_config;

// What a request asks for. Everything is copied by sched_submit.
typedef struct sched_job {
    const int32_t *prompt; // (n_prompt) tokens, BOS included when the model wants it
    int n_prompt;
    smp_params sp;          // the sampler (sp.vocab is set by the scheduler)
    const char *grammar;    // GBNF text constraining the output, or NULL
    int n_predict;          // most tokens to generate (>= 0)
    const char *const *stop; // stop strings
    int n_stop;
    int n_top;              // alternatives to report per generated token (0..SCHED_MAX_TOP); logprobs
    bool logprobs;          // report each generated token with its log-probability
} sched_job;

// A generated token as reported with logprobs: log-softmax of the model's raw
// logits (before any sampler step), its text, and the n_top most likely.
typedef struct sched_tok {
    int32_t id;
    float logprob;
    int n_top;
    struct {
        int32_t id;
        float logprob;
    } top[SCHED_MAX_TOP];
} sched_tok;

typedef struct sched_usage {
    int n_prompt;    // prompt tokens
    int n_cached;    // of which were already in the slot's cache
    int n_generated; // tokens sampled
    double t_queue_ms, t_prompt_ms, t_gen_ms; // waiting for a slot, prompt decode, generation
} sched_usage;

// What sched_take hands out: what is new since the last call.
typedef struct sched_update {
    char *text;     // new final text (NUL-terminated; never half a UTF-8 character)
    size_t len;
    sched_tok *toks; // new tokens (with logprobs when asked), n_toks of them
    int n_toks;
    bool first;      // the first update with generated text or tokens
    bool done;       // the task has ended: reason or status says how
    sess_stop reason;
    sim_status status; // an error during the task (message in err)
    sim_err err;
    sched_usage usage; // filled when done
    size_t text_cap, toks_cap; // buffers reused across calls
} sched_update;

typedef struct sched_slot_info {
    int state;     // 0 idle, 1 prompt, 2 generating
    int n_tokens;  // cached tokens
} sched_slot_info;

typedef struct sched_stats {
    uint64_t requests, requests_rejected, tokens_prompt, tokens_cached, tokens_generated;
    double busy_s;        // time spent in decode steps
    int queue_len, n_slots, n_busy;
    int kv_used, kv_size;
    sched_slot_info slots[KV_MAX_SEQ];
} sched_stats;

sched_config sched_default_config(void); // 4 slots, a queue of 64
sched_job sched_default_job(void);       // smp_default_params, 128 tokens, no logprobs

// Starts the scheduler's thread on ctx (borrowed; the scheduler owns its
// sequences). Errors: a bad config for this context.
sim_status sched_new(sched **out, fwd_ctx *ctx, const sched_config *cfg, sim_err *err);
// Stops the thread: running and waiting tasks end with SESS_STOP_ABORTED
// (they stay valid until released) and sched_submit refuses new ones. For a
// graceful server stop: shut down, let the HTTP handlers finish, then free.
void sched_shutdown(sched *s);
// Shuts down (if not yet) and frees the sessions.
void sched_free(sched *s);

// Queues a job. Errors: SIM_ERR_ARG (bad sampler parameters, a prompt that
// does not fit a slot, a token outside the vocabulary), SIM_ERR_FORMAT (a
// malformed grammar: line and column in the message), SIM_ERR_BUSY (the
// queue is full), SIM_ERR_ABORTED (shutting down).
sim_status sched_submit(sched *s, const sched_job *job, sched_task **out, sim_err *err);

// Waits up to timeout_ms for news and moves it into u (buffers reused;
// start with a zeroed update). Returns true when u holds something new or
// the task is done, false on timeout.
bool sched_take(sched_task *t, sched_update *u, int timeout_ms);
void sched_update_free(sched_update *u);

// The work stops at the next step and the slot frees (keeping its cache).
void sched_cancel(sched_task *t);
// The caller lets go of the task (cancelling it if it still runs).
void sched_release(sched_task *t);

void sched_get_stats(sched *s, sched_stats *out);
int sched_slot_ctx(const sched *s); // cells per slot

#endif
