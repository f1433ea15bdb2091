// sched.c — slots, the request queue and the continuous-batching loop.
#include "server/sched.h"

#include <errno.h>
#include <math.h>
#include <pthread.h>
#include <stdatomic.h>
#include <string.h>
#include <time.h>

typedef enum slot_state { SLOT_IDLE = 0, SLOT_PROMPT = 1, SLOT_GEN = 2 } slot_state;

struct sched_task {
    atomic_int refs;   // the caller's and the scheduler's
    atomic_int cancel; // set by sched_cancel / sched_release / shutdown
    // The job (owned copies).
    int32_t *prompt;
    int n_prompt;
    smp_ctx *smp;
    gram_grammar *grammar;
    gram_state *gram;
    char **stop;
    int n_stop;
    int n_predict, n_top;
    bool logprobs;
    sched_task *next; // in the queue
    uint64_t t_submit, t_start, t_prompt_done;
    // Output, under mu.
    pthread_mutex_t mu;
    pthread_cond_t cv;
    char *text;
    size_t len, cap;
    sched_tok *toks;
    int n_toks, toks_cap;
    bool first_reported, done;
    sess_stop reason;
    sim_status status;
    sim_err err;
    sched_usage usage;
};

typedef struct slot {
    struct sched *owner;
    sess *s;
    slot_state state;
    sched_task *task;
    sess_gen *gen;
    uint64_t last_used;
} slot;

struct sched {
    fwd_ctx *c;
    const model *m;
    gram_vocab *gv; // made on the first job with a grammar (scheduler thread only)
    int n_slots, slot_ctx, max_queue;
    slot slots[KV_MAX_SEQ];
    int rr; // where the next step starts taking prompt chunks
    pthread_t th;
    pthread_mutex_t mu; // the queue, stop, stats
    pthread_cond_t work;
    sched_task *qhead, *qtail;
    int qlen;
    bool stop;
    sched_stats st; // what sched_get_stats returns (under mu; see snapshot)
    // Counters the scheduler thread adds to (read by sched_get_stats).
    _Atomic uint64_t n_prompt_toks, n_gen_toks, n_cached_toks, busy_ns;
};

sched_config sched_default_config(void) { return (sched_config){.n_slots = 4, .max_queue = 64}; }

sched_job sched_default_job(void) {
    return (sched_job){.sp = smp_default_params(), .n_predict = 128};
}

int sched_slot_ctx(const sched *s) { return s->slot_ctx; }

// --- tasks ------------------------------------------------------------------------

static void task_free(sched_task *t) {
    mem_free(t->prompt);
    smp_free(t->smp);
    gram_state_free(t->gram);
    gram_free(t->grammar);
    for (int i = 0; i < t->n_stop; i++) mem_free(t->stop[i]);
    mem_free(t->stop);
    mem_free(t->text);
    mem_free(t->toks);
    pthread_mutex_destroy(&t->mu);
    pthread_cond_destroy(&t->cv);
    mem_free(t);
}

static void task_unref(sched_task *t) {
    if (atomic_fetch_sub(&t->refs, 1) == 1) task_free(t);
}

// Marks the task done (under its lock) and wakes its reader.
static void task_end(sched_task *t, sess_stop reason, sim_status st, const sim_err *err) {
    pthread_mutex_lock(&t->mu);
    t->done = true;
    t->reason = reason;
    t->status = st;
    if (st && err) t->err = *err;
    uint64_t now = time_ns();
    if (t->t_start) t->usage.t_queue_ms = (double)(t->t_start - t->t_submit) / 1e6;
    if (t->t_prompt_done) {
        t->usage.t_prompt_ms = (double)(t->t_prompt_done - t->t_start) / 1e6;
        t->usage.t_gen_ms = (double)(now - t->t_prompt_done) / 1e6;
    }
    pthread_cond_broadcast(&t->cv);
    pthread_mutex_unlock(&t->mu);
}

static bool task_put_text(sched_task *t, const char *p, size_t n) {
    pthread_mutex_lock(&t->mu);
    bool ok = true;
    if (t->len + n + 1 > t->cap) {
        size_t cap = MAX(t->cap * 2, t->len + n + 256);
        char *np = mem_realloc(t->text, cap);
        if (np) {
            t->text = np;
            t->cap = cap;
        } else ok = false;
    }
    if (ok) {
        memcpy(t->text + t->len, p, n);
        t->len += n;
        t->text[t->len] = 0;
        pthread_cond_broadcast(&t->cv);
    }
    pthread_mutex_unlock(&t->mu);
    return ok;
}

static bool task_put_tok(sched_task *t, const sched_tok *k) {
    pthread_mutex_lock(&t->mu);
    bool ok = true;
    if (t->n_toks == t->toks_cap) {
        int cap = MAX(16, t->toks_cap * 2);
        sched_tok *np = mem_realloc(t->toks, (size_t)cap * sizeof *np);
        if (np) {
            t->toks = np;
            t->toks_cap = cap;
        } else ok = false;
    }
    if (ok) {
        t->toks[t->n_toks++] = *k;
        pthread_cond_broadcast(&t->cv);
    }
    pthread_mutex_unlock(&t->mu);
    return ok;
}

// --- the callbacks of a slot's generation -------------------------------------------

static sim_status constrain(void *ctx, smp_cand *cand, int n, sim_err *err) {
    slot *sl = ctx;
    return gram_filter(sl->task->gram, sl->owner->gv, cand, (size_t)n, err);
}

// The token's log-probability and the n_top most likely, from the raw logits.
static void logprobs_of(const float *logits, int n_vocab, int32_t tok, int n_top, sched_tok *out) {
    float mx = -INFINITY;
    for (int i = 0; i < n_vocab; i++) mx = isnan(logits[i]) ? mx : MAX(mx, logits[i]);
    double sum = 0;
    for (int i = 0; i < n_vocab; i++)
        if (!isnan(logits[i])) sum += exp((double)logits[i] - mx);
    float lse = mx + (float)log(sum);
    out->id = tok;
    out->logprob = logits[tok] - lse;
    out->n_top = 0;
    for (int i = 0; i < n_vocab; i++) { // insertion into the short sorted list
        float v = logits[i];
        if (isnan(v) || (out->n_top == n_top && (n_top == 0 || v <= out->top[n_top - 1].logprob + lse))) continue;
        int j = out->n_top < n_top ? out->n_top++ : n_top - 1;
        while (j > 0 && out->top[j - 1].logprob + lse < v) {
            out->top[j] = out->top[j - 1];
            j--;
        }
        out->top[j].id = i;
        out->top[j].logprob = v - lse;
    }
}

static sim_status on_token(void *ud, int seq, int32_t tok, sim_err *err) {
    slot *sl = ud;
    sched_task *t = sl->task;
    const model *m = sl->owner->m;
    if (t->logprobs) {
        sched_tok k;
        logprobs_of(sess_logits(sl->s), m->hp.n_vocab, tok, t->n_top, &k);
        if (!task_put_tok(t, &k)) return err_set(err, SIM_ERR_NOMEM, "out of memory");
    }
    if (t->gram && !tok_is_eog(m->vocab, tok)) return gram_accept_token(t->gram, sl->owner->gv, tok, err);
    return SIM_OK;
}

static bool on_text(void *ud, int seq, const char *text, size_t len) {
    slot *sl = ud;
    return task_put_text(sl->task, text, len) && !atomic_load(&sl->task->cancel);
}

// --- the loop ----------------------------------------------------------------------

// Ends the slot's task; the slot keeps its cached tokens for the next one.
static void slot_finish(sched *s, slot *sl, sess_stop reason, sim_status st, const sim_err *err) {
    sched_task *t = sl->task;
    sim_err e2 = {0};
    if (sl->gen) {
        sess_result r;
        sim_status fs = sess_gen_finish(sl->gen, &r, &e2);
        sl->gen = NULL;
        if (st == SIM_OK && fs) {
            st = fs;
            err = &e2;
        }
        reason = r.reason;
        t->usage.n_generated = r.n_tokens;
        sess_result_free(&r);
        if (atomic_load(&t->cancel)) reason = SESS_STOP_ABORTED;
    }
    s->n_gen_toks += (uint64_t)t->usage.n_generated;
    task_end(t, reason, st, err);
    task_unref(t);
    sl->task = NULL;
    sl->state = SLOT_IDLE;
    sl->last_used = time_ns();
}

// The idle slot for a prompt: the longest cached prefix, then the least recently used.
static slot *pick_slot(sched *s, const int32_t *toks, int n) {
    slot *best = NULL;
    int best_k = -1;
    for (int i = 0; i < s->n_slots; i++) {
        slot *sl = &s->slots[i];
        if (sl->state != SLOT_IDLE) continue;
        const int32_t *have = sess_tokens(sl->s);
        int m = sess_n_tokens(sl->s), k = 0;
        while (k < m && k < n && have[k] == toks[k]) k++;
        if (k > best_k || (k == best_k && sl->last_used < best->last_used)) {
            best = sl;
            best_k = k;
        }
    }
    return best;
}

// Moves queued tasks into idle slots (under s->mu).
static void admit(sched *s) {
    while (s->qhead) {
        sched_task *t = s->qhead;
        if (atomic_load(&t->cancel)) {
            s->qhead = t->next;
            s->qlen--;
            task_end(t, SESS_STOP_ABORTED, SIM_OK, NULL);
            task_unref(t);
            continue;
        }
        slot *sl = pick_slot(s, t->prompt, t->n_prompt);
        if (!sl) break;
        s->qhead = t->next;
        s->qlen--;
        t->t_start = time_ns();
        sl->task = t;
        sess_stats ps;
        sim_err err;
        if (sess_queue_prompt(sl->s, t->prompt, t->n_prompt, &ps, &err) != SIM_OK) {
            sl->state = SLOT_PROMPT; // slot_finish takes it back
            slot_finish(s, sl, SESS_STOP_LIMIT, err.code, &err);
            continue;
        }
        t->usage.n_prompt = t->n_prompt;
        t->usage.n_cached = ps.n_reused;
        s->n_cached_toks += (uint64_t)ps.n_reused;
        sl->state = SLOT_PROMPT;
    }
    if (!s->qhead) s->qtail = NULL;
}

// Samples the slot's next token (queued for the next step) or ends its task.
static void slot_step(sched *s, slot *sl) {
    bool more = false;
    sim_err err;
    sim_status st = sess_gen_step(sl->gen, &more, &err);
    if (st || !more) slot_finish(s, sl, SESS_STOP_LIMIT, st, &err);
}

static void slot_start_gen(sched *s, slot *sl) {
    sched_task *t = sl->task;
    t->t_prompt_done = time_ns();
    sim_err err;
    sim_status st = SIM_OK;
    if (t->grammar && !s->gv) st = gram_vocab_new(&s->gv, s->m->vocab, &err);
    if (st == SIM_OK && t->grammar) st = gram_state_new(&t->gram, t->grammar, &err);
    if (st) {
        slot_finish(s, sl, SESS_STOP_LIMIT, st, &err);
        return;
    }
    smp_set_constraint(t->smp, t->gram ? constrain : NULL, sl);
    sess_gen_params gp = {.n_predict = t->n_predict, .stop = (const char *const *)t->stop, .n_stop = t->n_stop,
                          .on_text = on_text, .on_token = on_token, .ud = sl};
    st = sess_gen_new(&sl->gen, sl->s, t->smp, &gp, &err);
    if (st) {
        slot_finish(s, sl, SESS_STOP_LIMIT, st, &err);
        return;
    }
    sl->state = SLOT_GEN;
    slot_step(s, sl);
}

// One decode: the next token of every generating slot and prompt chunks
// round-robin in what is left of the batch.
static void step(sched *s) {
    sess *ss[KV_MAX_SEQ];
    slot *which[KV_MAX_SEQ];
    int take[KV_MAX_SEQ], n = 0, room = fwd_n_batch(s->c), n_prompt_toks = 0;
    for (int i = 0; i < s->n_slots; i++) {
        slot *sl = &s->slots[i];
        if (sl->state == SLOT_IDLE || !atomic_load(&sl->task->cancel)) continue;
        slot_finish(s, sl, SESS_STOP_ABORTED, SIM_OK, NULL);
    }
    for (int i = 0; i < s->n_slots; i++) {
        slot *sl = &s->slots[i];
        if (sl->state != SLOT_GEN) continue;
        ss[n] = sl->s;
        which[n] = sl;
        take[n++] = 1;
        room--;
    }
    for (int k = 0; k < s->n_slots && room > 0; k++) {
        slot *sl = &s->slots[(s->rr + k) % s->n_slots];
        if (sl->state != SLOT_PROMPT) continue;
        int q = MIN(room, sess_n_queued(sl->s));
        ss[n] = sl->s;
        which[n] = sl;
        take[n++] = q;
        room -= q;
        n_prompt_toks += q;
    }
    s->rr = (s->rr + 1) % s->n_slots;
    if (n == 0) return;
    sim_err err;
    uint64_t t0 = time_ns();
    sim_status st = sess_decode_many(ss, take, n, &err);
    s->busy_ns += time_ns() - t0;
    if (st == SIM_OK) s->n_prompt_toks += (uint64_t)n_prompt_toks;
    for (int i = 0; i < n; i++) {
        slot *sl = which[i];
        if (st) slot_finish(s, sl, SESS_STOP_LIMIT, st, &err);
        else if (sl->state == SLOT_GEN) slot_step(s, sl);
        else if (sess_n_queued(sl->s) == 0) slot_start_gen(s, sl);
    }
}

// The slots and the KV use as the stats show them (under s->mu).
static void snapshot(sched *s) {
    s->st.n_busy = 0;
    for (int i = 0; i < s->n_slots; i++) {
        s->st.slots[i] = (sched_slot_info){.state = (int)s->slots[i].state, .n_tokens = sess_n_tokens(s->slots[i].s)};
        s->st.n_busy += s->slots[i].state != SLOT_IDLE;
    }
    s->st.kv_used = fwd_kv(s->c)->n_used;
    s->st.queue_len = s->qlen;
}

static void *loop(void *arg) {
    sched *s = arg;
    pthread_mutex_lock(&s->mu);
    while (!s->stop) {
        admit(s);
        snapshot(s);
        if (s->st.n_busy == 0) {
            pthread_cond_wait(&s->work, &s->mu);
            continue;
        }
        pthread_mutex_unlock(&s->mu);
        step(s);
        pthread_mutex_lock(&s->mu);
    }
    pthread_mutex_unlock(&s->mu);
    return NULL;
}

// --- public -------------------------------------------------------------------------

sim_status sched_new(sched **out, fwd_ctx *ctx, const sched_config *cfg, sim_err *err) {
    *out = NULL;
    int most = MIN(KV_MAX_SEQ, fwd_n_outputs(ctx));
    if (cfg->n_slots < 1 || cfg->n_slots > most)
        return err_set(err, SIM_ERR_ARG, "%d slots: this context allows 1..%d", cfg->n_slots, most);
    if (cfg->max_queue < 0) return err_set(err, SIM_ERR_ARG, "negative queue length");
    int slot_ctx = fwd_n_ctx(ctx) / cfg->n_slots;
    if (slot_ctx < 16)
        return err_set(err, SIM_ERR_ARG, "a context of %d cells leaves %d per slot for %d slots (at least 16 needed)",
                       fwd_n_ctx(ctx), slot_ctx, cfg->n_slots);
    if (fwd_n_batch(ctx) < cfg->n_slots)
        return err_set(err, SIM_ERR_ARG, "a batch of %d tokens cannot hold %d slots' tokens", fwd_n_batch(ctx), cfg->n_slots);
    sched *s = mem_calloc(1, sizeof *s);
    if (!s) return err_set(err, SIM_ERR_NOMEM, "out of memory");
    s->c = ctx;
    s->m = fwd_model(ctx);
    s->n_slots = cfg->n_slots;
    s->slot_ctx = slot_ctx;
    s->max_queue = cfg->max_queue;
    s->st.n_slots = cfg->n_slots;
    s->st.kv_size = fwd_n_ctx(ctx);
    for (int i = 0; i < s->n_slots; i++) {
        sess_params sp = sess_default_params();
        sp.seq = i;
        sp.max_tokens = slot_ctx;
        s->slots[i].owner = s;
        sim_status st = sess_new(&s->slots[i].s, ctx, &sp, err);
        if (st) {
            for (int j = 0; j < i; j++) sess_free(s->slots[j].s);
            mem_free(s);
            return st;
        }
    }
    pthread_mutex_init(&s->mu, NULL);
    pthread_cond_init(&s->work, NULL);
    if (pthread_create(&s->th, NULL, loop, s) != 0) {
        for (int j = 0; j < s->n_slots; j++) sess_free(s->slots[j].s);
        pthread_mutex_destroy(&s->mu);
        pthread_cond_destroy(&s->work);
        mem_free(s);
        return err_set(err, SIM_ERR_NOMEM, "cannot start the scheduler thread");
    }
    *out = s;
    return SIM_OK;
}

void sched_shutdown(sched *s) {
    pthread_mutex_lock(&s->mu);
    bool was = s->stop;
    s->stop = true;
    pthread_cond_signal(&s->work);
    pthread_mutex_unlock(&s->mu);
    if (was) return;
    pthread_join(s->th, NULL);
    // The thread is gone: what it owned is ours now; s->stop keeps submit out.
    for (int i = 0; i < s->n_slots; i++) {
        slot *sl = &s->slots[i];
        if (sl->state == SLOT_IDLE) continue;
        atomic_store(&sl->task->cancel, 1);
        slot_finish(s, sl, SESS_STOP_ABORTED, SIM_OK, NULL);
    }
    pthread_mutex_lock(&s->mu);
    while (s->qhead) {
        sched_task *t = s->qhead;
        s->qhead = t->next;
        task_end(t, SESS_STOP_ABORTED, SIM_OK, NULL);
        task_unref(t);
    }
    s->qtail = NULL;
    s->qlen = 0;
    snapshot(s);
    pthread_mutex_unlock(&s->mu);
}

void sched_free(sched *s) {
    if (!s) return;
    sched_shutdown(s);
    for (int i = 0; i < s->n_slots; i++) sess_free(s->slots[i].s);
    gram_vocab_free(s->gv);
    pthread_mutex_destroy(&s->mu);
    pthread_cond_destroy(&s->work);
    mem_free(s);
}

sim_status sched_submit(sched *s, const sched_job *job, sched_task **out, sim_err *err) {
    *out = NULL;
    const model *m = s->m;
    if (job->n_prompt < 1) return err_set(err, SIM_ERR_ARG, "the prompt is empty");
    if (job->n_prompt >= s->slot_ctx)
        return err_set(err, SIM_ERR_ARG, "the prompt has %d tokens; a slot's context holds %d", job->n_prompt,
                       s->slot_ctx);
    for (int i = 0; i < job->n_prompt; i++)
        if (job->prompt[i] < 0 || job->prompt[i] >= m->hp.n_vocab)
            return err_set(err, SIM_ERR_ARG, "prompt token %d (id %d) outside the vocabulary", i, job->prompt[i]);
    if (job->n_predict < 0) return err_set(err, SIM_ERR_ARG, "n_predict must be >= 0");
    if (job->n_top < 0 || job->n_top > SCHED_MAX_TOP)
        return err_set(err, SIM_ERR_ARG, "top logprobs must be 0..%d", SCHED_MAX_TOP);
    if (job->n_stop < 0 || job->n_stop > 64) return err_set(err, SIM_ERR_ARG, "at most 64 stop strings");
    sched_task *t = mem_calloc(1, sizeof *t);
    if (!t) return err_set(err, SIM_ERR_NOMEM, "out of memory");
    pthread_mutex_init(&t->mu, NULL);
    pthread_cond_init(&t->cv, NULL);
    atomic_init(&t->refs, 2);
    atomic_init(&t->cancel, 0);
    t->n_predict = job->n_predict;
    t->n_top = job->n_top;
    t->logprobs = job->logprobs || job->n_top > 0;
    sim_status st = SIM_OK;
    smp_params sp = job->sp;
    sp.vocab = m->vocab;
    t->prompt = mem_alloc((size_t)job->n_prompt * sizeof *t->prompt);
    t->stop = mem_calloc((size_t)MAX(job->n_stop, 1), sizeof *t->stop);
    if (!t->prompt || !t->stop) st = err_set(err, SIM_ERR_NOMEM, "out of memory");
    if (st == SIM_OK) {
        memcpy(t->prompt, job->prompt, (size_t)job->n_prompt * sizeof *t->prompt);
        t->n_prompt = job->n_prompt;
        for (int i = 0; i < job->n_stop && st == SIM_OK; i++, t->n_stop++)
            if (!(t->stop[i] = mem_strdup(job->stop[i]))) st = err_set(err, SIM_ERR_NOMEM, "out of memory");
    }
    if (st == SIM_OK) st = smp_new(&t->smp, m->hp.n_vocab, &sp, err);
    if (st == SIM_OK && job->grammar) st = gram_parse(&t->grammar, job->grammar, strlen(job->grammar), err);
    if (st) {
        task_free(t);
        return st;
    }
    for (int i = 0; i < t->n_prompt; i++) smp_accept(t->smp, t->prompt[i]);
    t->t_submit = time_ns();
    pthread_mutex_lock(&s->mu);
    if (s->stop) st = err_set(err, SIM_ERR_ABORTED, "the server is shutting down");
    else if (s->qlen >= s->max_queue && s->st.n_busy == s->n_slots) {
        s->st.requests_rejected++;
        st = err_set(err, SIM_ERR_BUSY, "all %d slots are busy and %d requests are waiting", s->n_slots, s->qlen);
    } else {
        if (s->qtail) s->qtail->next = t;
        else s->qhead = t;
        s->qtail = t;
        s->qlen++;
        s->st.requests++;
        pthread_cond_signal(&s->work);
    }
    pthread_mutex_unlock(&s->mu);
    if (st) {
        task_free(t);
        return st;
    }
    *out = t;
    return SIM_OK;
}

bool sched_take(sched_task *t, sched_update *u, int timeout_ms) {
    struct timespec until;
    clock_gettime(CLOCK_REALTIME, &until);
    until.tv_sec += timeout_ms / 1000;
    until.tv_nsec += (long)(timeout_ms % 1000) * 1000000L;
    if (until.tv_nsec >= 1000000000L) {
        until.tv_sec++;
        until.tv_nsec -= 1000000000L;
    }
    u->len = 0;
    u->n_toks = 0;
    u->first = false;
    pthread_mutex_lock(&t->mu);
    while (t->len == 0 && t->n_toks == 0 && !t->done)
        if (pthread_cond_timedwait(&t->cv, &t->mu, &until) == ETIMEDOUT) break;
    bool news = t->len > 0 || t->n_toks > 0 || t->done;
    bool ok = true;
    if (t->len + 1 > u->text_cap) {
        char *np = mem_realloc(u->text, t->len + 1);
        if (np) {
            u->text = np;
            u->text_cap = t->len + 1;
        } else ok = false;
    }
    if (ok && (size_t)t->n_toks > u->toks_cap) {
        sched_tok *np = mem_realloc(u->toks, (size_t)t->n_toks * sizeof *np);
        if (np) {
            u->toks = np;
            u->toks_cap = (size_t)t->n_toks;
        } else ok = false;
    }
    if (ok && news) {
        memcpy(u->text, t->text ? t->text : "", t->len);
        u->text[t->len] = 0;
        u->len = t->len;
        if (t->n_toks) memcpy(u->toks, t->toks, (size_t)t->n_toks * sizeof *u->toks);
        u->n_toks = t->n_toks;
        t->len = 0;
        t->n_toks = 0;
        if ((u->len || u->n_toks) && !t->first_reported) u->first = t->first_reported = true;
        // Done only once everything before it has been handed out.
        u->done = t->done;
        if (t->done) {
            u->reason = t->reason;
            u->status = t->status;
            u->err = t->err;
            u->usage = t->usage;
        }
    } else if (!ok) { // no memory for the update: end it for the reader
        u->done = true;
        u->status = err_set(&u->err, SIM_ERR_NOMEM, "out of memory");
        news = true;
    }
    pthread_mutex_unlock(&t->mu);
    return news;
}

void sched_update_free(sched_update *u) {
    mem_free(u->text);
    mem_free(u->toks);
    memset(u, 0, sizeof *u);
}

void sched_cancel(sched_task *t) { atomic_store(&t->cancel, 1); }

void sched_release(sched_task *t) {
    if (!t) return;
    sched_cancel(t);
    task_unref(t);
}

void sched_get_stats(sched *s, sched_stats *out) {
    pthread_mutex_lock(&s->mu);
    *out = s->st;
    out->queue_len = s->qlen;
    out->tokens_prompt = atomic_load(&s->n_prompt_toks);
    out->tokens_generated = atomic_load(&s->n_gen_toks);
    out->tokens_cached = atomic_load(&s->n_cached_toks);
    out->busy_s = (double)atomic_load(&s->busy_ns) / 1e9;
    pthread_mutex_unlock(&s->mu);
}
