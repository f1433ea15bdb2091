// session.c — prompt diffing, incremental decoding, context shift,
// generation with stop strings, forks and state files.
#include "infer/session.h"

#include <errno.h>
#include <stdio.h>
#include <string.h>

#include "base/file.h"

struct sess {
    fwd_ctx *c;
    sess_params p;
    int32_t *toks; // (cap) the tokens the sequence holds, token i at position i
    int n, cap;
    int32_t *queue; // (cap) tokens to decode next, at positions n, n + 1, ...
    int nq;
    uint64_t n_decoded, n_shifts; // totals over the session's life (for stats)
    float *logits; // (n_vocab) after the last decode; valid when have_logits
    bool have_logits;
};

sess_params sess_default_params(void) {
    return (sess_params){.seq = 0, .max_tokens = 0, .context_shift = true, .n_keep = -1, .n_discard = 0};
}

static int budget(const sess *s) {
    int n_ctx = fwd_n_ctx(s->c);
    return s->p.max_tokens > 0 ? MIN(s->p.max_tokens, n_ctx) : n_ctx;
}

sim_status sess_new(sess **out, fwd_ctx *c, const sess_params *p, sim_err *err) {
    *out = NULL;
    if (p->seq < 0 || p->seq >= KV_MAX_SEQ) return err_set(err, SIM_ERR_ARG, "sequence id %d outside 0..%d", p->seq, KV_MAX_SEQ - 1);
    if (p->max_tokens < 0 || p->n_discard < 0) return err_set(err, SIM_ERR_ARG, "invalid session budget or discard count");
    sess *s = mem_calloc(1, sizeof *s);
    if (!s) return err_set(err, SIM_ERR_NOMEM, "out of memory");
    s->c = c;
    s->p = *p;
    s->cap = budget(s);
    s->toks = mem_alloc((size_t)s->cap * sizeof *s->toks);
    s->queue = mem_alloc((size_t)s->cap * sizeof *s->queue);
    s->logits = mem_alloc((size_t)fwd_model(c)->hp.n_vocab * sizeof(float));
    if (!s->toks || !s->queue || !s->logits) {
        sess_free(s);
        return err_set(err, SIM_ERR_NOMEM, "out of memory");
    }
    *out = s;
    return SIM_OK;
}

void sess_free(sess *s) {
    if (!s) return;
    kv_seq_rm(fwd_kv(s->c), s->p.seq, 0, -1);
    mem_free(s->toks);
    mem_free(s->queue);
    mem_free(s->logits);
    mem_free(s);
}

const float *sess_logits(const sess *s) { return s->have_logits ? s->logits : NULL; }
int sess_n_tokens(const sess *s) { return s->n; }
const int32_t *sess_tokens(const sess *s) { return s->toks; }
int sess_seq(const sess *s) { return s->p.seq; }
fwd_ctx *sess_ctx(const sess *s) { return s->c; }
void sess_set_shift(sess *s, bool on, int n_keep) {
    s->p.context_shift = on;
    s->p.n_keep = n_keep;
}

// --- decoding ---------------------------------------------------------------------

int sess_n_queued(const sess *s) { return s->nq; }

// How many of toks[0..n) a shift keeps: n_keep, or the BOS token when the text starts with it.
static int keep_for(const sess *s, const int32_t *toks, int n) {
    if (s->p.n_keep >= 0) return MIN(s->p.n_keep, n);
    int32_t bos = tok_bos(fwd_model(s->c)->vocab);
    return n > 0 && bos != TOK_NULL && toks[0] == bos ? 1 : 0;
}

// Drops n_discard tokens after the kept ones and moves the rest back.
static sim_status shift(sess *s, sim_err *err) {
    int keep = keep_for(s, s->toks, s->n);
    int discard = s->p.n_discard > 0 ? s->p.n_discard : (s->n - keep) / 2;
    discard = MIN(discard, s->n - keep);
    if (discard <= 0)
        return err_set(err, SIM_ERR_RANGE, "context full: %d tokens, %d of them kept, nothing left to discard", s->n, keep);
    kv_seq_rm(fwd_kv(s->c), s->p.seq, keep, keep + discard);
    fwd_seq_shift(s->c, s->p.seq, keep + discard, -1, -discard);
    memmove(s->toks + keep, s->toks + keep + discard, (size_t)(s->n - keep - discard) * sizeof *s->toks);
    s->n -= discard;
    s->n_shifts++;
    return SIM_OK;
}

// Whether one more token fits in the session's budget and in the cache.
static bool full(const sess *s) {
    const kv_cache *kv = fwd_kv(s->c);
    return s->n >= budget(s) || kv->n_used >= kv->n_ctx;
}

sim_status sess_queue_prompt(sess *s, const int32_t *toks, int n, sess_stats *stats, sim_err *err) {
    sess_stats local = {0};
    if (!stats) stats = &local;
    memset(stats, 0, sizeof *stats);
    if (n < 1) return err_set(err, SIM_ERR_ARG, "empty prompt");
    int n_vocab = fwd_model(s->c)->hp.n_vocab;
    for (int i = 0; i < n; i++)
        if (toks[i] < 0 || toks[i] >= n_vocab)
            return err_set(err, SIM_ERR_ARG, "prompt token %d (id %d) outside the vocabulary", i, toks[i]);
    int cap = budget(s);
    if (n > cap && !s->p.context_shift)
        return err_set(err, SIM_ERR_RANGE, "the prompt has %d tokens but the context holds %d (context shifting is off)", n, cap);
    int k = 0;
    while (k < s->n && k < n && s->toks[k] == toks[k]) k++;
    if (k == n) k = n - 1; // fully cached: decode the last token again for fresh logits
    int keep = n, tail = 0;
    if (n > cap) {
        // Too long even for an empty context: keep the first tokens and the
        // end, as a shift would, and decode the end.
        keep = MIN(keep_for(s, toks, n), cap / 2);
        tail = cap - keep - 1;
        k = MIN(k, keep);
        stats->n_shifts = 1;
    }
    // Other sequences may fill the cache: shifting ourselves is all we could do.
    const kv_cache *kv = fwd_kv(s->c);
    int own_freed = s->n - k, n_new = keep - k + tail;
    if (n_new > kv->n_ctx - kv->n_used + own_freed)
        return err_set(err, SIM_ERR_RANGE, "context full: %d new tokens, %d cells free", n_new,
                       kv->n_ctx - kv->n_used + own_freed);
    kv_seq_rm(fwd_kv(s->c), s->p.seq, k, -1);
    s->n = k;
    s->have_logits = false;
    memcpy(s->queue, toks + k, (size_t)(keep - k) * sizeof *toks);
    memcpy(s->queue + keep - k, toks + n - tail, (size_t)tail * sizeof *toks);
    s->nq = n_new;
    stats->n_reused = k;
    stats->n_decoded = n_new;
    return SIM_OK;
}

sim_status sess_set_prompt(sess *s, const int32_t *toks, int n, sess_stats *stats, sim_err *err) {
    sim_status st = sess_queue_prompt(s, toks, n, stats, err);
    int take = fwd_n_batch(s->c);
    while (st == SIM_OK && s->nq > 0) st = sess_decode_many(&s, &take, 1, err);
    s->nq = 0; // on error the rest is dropped; what was decoded stays
    return st;
}

sim_status sess_decode_many(sess **ss, const int *take, int n, sim_err *err) {
    fwd_ctx *c = ss[0]->c;
    int total = 0, outs = 0;
    for (int i = 0; i < n; i++) {
        if (ss[i]->c != c) return err_set(err, SIM_ERR_ARG, "sessions of different contexts");
        int k = MIN(take[i], ss[i]->nq);
        total += MAX(k, 0);
        outs += k > 0 && k == ss[i]->nq;
    }
    if (total == 0) return SIM_OK;
    if (total > fwd_n_batch(c) || outs > fwd_n_outputs(c))
        return err_set(err, SIM_ERR_ARG, "%d tokens with %d outputs, the context takes %d with %d a step", total, outs,
                       fwd_n_batch(c), fwd_n_outputs(c));
    int32_t *tokens = mem_alloc((size_t)total * sizeof *tokens), *pos = mem_alloc((size_t)total * sizeof *pos);
    kv_seq_mask *seqs = mem_alloc((size_t)total * sizeof *seqs);
    bool *want = mem_alloc((size_t)total * sizeof *want);
    sim_status st = SIM_OK;
    if (!tokens || !pos || !seqs || !want) st = err_set(err, SIM_ERR_NOMEM, "out of memory");
    for (int i = 0, j = 0; i < n && st == SIM_OK; i++) {
        sess *s = ss[i];
        int k = MIN(take[i], s->nq);
        if (k <= 0) continue;
        while (st == SIM_OK && (s->n + k > budget(s) || fwd_kv(c)->n_used + k > fwd_kv(c)->n_ctx)) {
            if (!s->p.context_shift)
                st = err_set(err, SIM_ERR_RANGE, "context full: %d tokens of %d (context shifting is off)", s->n, budget(s));
            else st = shift(s, err);
        }
        for (int q = 0; q < k && st == SIM_OK; q++, j++) {
            tokens[j] = s->queue[q];
            pos[j] = s->n + q;
            seqs[j] = (kv_seq_mask)1 << s->p.seq;
            want[j] = q == k - 1 && k == s->nq;
        }
    }
    if (st == SIM_OK) {
        fwd_batch b = {.n = total, .tokens = tokens, .pos = pos, .seqs = seqs, .logits = want};
        st = fwd_decode(c, &b, err);
    }
    for (int i = 0, o = 0; i < n && st == SIM_OK; i++) {
        sess *s = ss[i];
        int k = MIN(take[i], s->nq);
        if (k <= 0) continue;
        memcpy(s->toks + s->n, s->queue, (size_t)k * sizeof *s->queue);
        s->n += k;
        s->nq -= k;
        memmove(s->queue, s->queue + k, (size_t)s->nq * sizeof *s->queue);
        s->n_decoded += (uint64_t)k;
        if (s->nq == 0) {
            memcpy(s->logits, fwd_logits(c, o++), (size_t)fwd_model(c)->hp.n_vocab * sizeof(float));
            s->have_logits = true;
        }
    }
    mem_free(tokens);
    mem_free(pos);
    mem_free(seqs);
    mem_free(want);
    return st;
}

sim_status sess_fork(const sess *s, int dst, sess **out, sim_err *err) {
    sess_params p = s->p;
    p.seq = dst;
    sim_status st = sess_new(out, s->c, &p, err);
    if (st) return st;
    sess *d = *out;
    kv_seq_rm(fwd_kv(s->c), dst, 0, -1);
    kv_seq_cp(fwd_kv(s->c), s->p.seq, dst, 0, -1);
    memcpy(d->toks, s->toks, (size_t)s->n * sizeof *s->toks);
    d->n = s->n;
    memcpy(d->logits, s->logits, (size_t)fwd_model(s->c)->hp.n_vocab * sizeof(float));
    d->have_logits = s->have_logits;
    return SIM_OK;
}

// --- generation ---------------------------------------------------------------------

typedef struct textbuf {
    char *p;
    size_t n, cap, emitted; // emitted: bytes already handed to on_text
} textbuf;

static bool tb_put(textbuf *t, const char *s, size_t n) {
    if (t->n + n + 1 > t->cap) {
        size_t cap = MAX(t->cap * 2, t->n + n + 256);
        char *np = mem_realloc(t->p, cap);
        if (!np) return false;
        t->p = np;
        t->cap = cap;
    }
    memcpy(t->p + t->n, s, n);
    t->n += n;
    t->p[t->n] = 0;
    return true;
}

// The earliest complete stop string in t (its offset), or -1; also the
// length of the longest text suffix that is a proper prefix of some stop
// string (that much must be held back).
static long find_stop(const textbuf *t, const sess_gen_params *gp, size_t *hold) {
    long first = -1;
    *hold = 0;
    for (int i = 0; i < gp->n_stop; i++) {
        const char *st = gp->stop[i];
        size_t m = strlen(st);
        if (m == 0) continue;
        // Search from just before the already emitted part (a stop string may
        // start there only if it was held back, so start at emitted).
        for (size_t at = t->emitted; at + m <= t->n; at++)
            if (memcmp(t->p + at, st, m) == 0) {
                if (first < 0 || (long)at < first) first = (long)at;
                break;
            }
        for (size_t k = MIN(m - 1, t->n - t->emitted); k > *hold; k--)
            if (memcmp(t->p + t->n - k, st, k) == 0) {
                *hold = k;
                break;
            }
    }
    return first;
}

// What one sequence's generation carries between steps.
struct sess_gen {
    sess *s;
    smp_ctx *smp;
    sess_gen_params gp;
    tok_stream ts;
    textbuf t;
    size_t skip; // bytes of healed prompt text still to drop from the output
    sess_result r;
    uint64_t decoded0, shifts0; // the session's totals when generation began
    bool done;
};
typedef sess_gen gen;

// Appends decoded bytes, dropping the first g->skip of them.
static bool gen_put(gen *g, const char *p, size_t n) {
    size_t k = MIN(n, g->skip);
    g->skip -= k;
    return tb_put(&g->t, p + k, n - k);
}

// Samples g's next token and handles its text. Returns the token to decode
// next, or -1 when g is done (reason set) or failed (*st set).
static int32_t gen_step(gen *g, sim_status *st, sim_err *err) {
    const model *m = fwd_model(g->s->c);
    const sess_gen_params *gp = &g->gp;
    sess_result *r = &g->r;
    if (gp->abort && *gp->abort) {
        r->reason = SESS_STOP_ABORTED;
        return -1;
    }
    int32_t tok = smp_sample(g->smp, g->s->logits);
    if (tok == SMP_FAILED) {
        *st = err_set(err, SIM_ERR_ARG, "sampling failed: %s", smp_last_err(g->smp)->msg);
        return -1;
    }
    if (tok == SMP_NO_TOKEN) {
        *st = err_set(err, SIM_ERR_RANGE, "sampling failed: every token was excluded (or the logits are not finite)");
        return -1;
    }
    smp_accept(g->smp, tok);
    r->n_tokens++;
    if (gp->on_token && (*st = gp->on_token(gp->ud, sess_seq(g->s), tok, err))) return -1;
    if (tok_is_eog(m->vocab, tok)) {
        r->reason = SESS_STOP_EOG;
        return -1;
    }
    char piece[TOK_STREAM_BUF];
    int k = tok_stream_push(&g->ts, tok, piece, sizeof piece);
    if (k > 0 && !gen_put(g, piece, (size_t)k)) {
        *st = err_set(err, SIM_ERR_NOMEM, "out of memory");
        return -1;
    }
    textbuf *t = &g->t;
    size_t hold;
    long at = find_stop(t, gp, &hold);
    if (at >= 0) {
        t->n = (size_t)at;
        t->p[t->n] = 0;
        r->reason = SESS_STOP_STRING;
        return -1;
    }
    size_t ready = t->n - hold;
    if (ready > t->emitted) {
        bool go_on = !gp->on_text || gp->on_text(gp->ud, sess_seq(g->s), t->p + t->emitted, ready - t->emitted);
        t->emitted = ready;
        if (!go_on) {
            r->reason = SESS_STOP_ABORTED;
            return -1;
        }
    }
    if (gp->n_predict >= 0 && r->n_tokens >= gp->n_predict) return -1; // reason stays LIMIT
    if (full(g->s) && !g->s->p.context_shift) {
        r->reason = SESS_STOP_FULL;
        return -1;
    }
    return tok;
}

// Emits what is left after the last step and hands the text to the result.
static sim_status gen_finish(gen *g, sim_err *err) {
    const sess_gen_params *gp = &g->gp;
    sess_result *r = &g->r;
    char piece[TOK_STREAM_BUF];
    sim_status st = SIM_OK;
    if (r->reason != SESS_STOP_STRING) {
        int k = tok_stream_flush(&g->ts, piece, sizeof piece);
        if (k > 0 && !gen_put(g, piece, (size_t)k)) st = err_set(err, SIM_ERR_NOMEM, "out of memory");
    }
    if (st == SIM_OK && r->reason != SESS_STOP_ABORTED && g->t.n > g->t.emitted && gp->on_text)
        gp->on_text(gp->ud, sess_seq(g->s), g->t.p + g->t.emitted, g->t.n - g->t.emitted);
    r->text = g->t.p;
    r->len = g->t.n;
    g->t.p = NULL;
    r->stats.n_decoded = (int)(g->s->n_decoded - g->decoded0);
    r->stats.n_shifts = (int)(g->s->n_shifts - g->shifts0);
    return st;
}

sim_status sess_push(sess *s, int32_t tok, sess_stats *stats, sim_err *err) {
    if (tok < 0 || tok >= fwd_model(s->c)->hp.n_vocab) return err_set(err, SIM_ERR_ARG, "token id %d outside the vocabulary", tok);
    if (s->nq > 0) return err_set(err, SIM_ERR_ARG, "the session has %d queued tokens", s->nq);
    uint64_t shifts0 = s->n_shifts;
    s->queue[s->nq++] = tok;
    int one = 1;
    sim_status st = sess_decode_many(&s, &one, 1, err);
    s->nq = 0;
    if (stats && st == SIM_OK) {
        stats->n_decoded++;
        stats->n_shifts += (int)(s->n_shifts - shifts0);
    }
    return st;
}

sim_status sess_gen_new(sess_gen **out, sess *s, smp_ctx *smp, const sess_gen_params *gp, sim_err *err) {
    *out = NULL;
    if (!s->have_logits) return err_set(err, SIM_ERR_ARG, "the session has no logits yet: set a prompt first");
    if (s->nq > 0) return err_set(err, SIM_ERR_ARG, "the session still has %d queued tokens", s->nq);
    gen *g = mem_calloc(1, sizeof *g);
    if (!g || !tb_put(&g->t, "", 0)) {
        mem_free(g);
        return err_set(err, SIM_ERR_NOMEM, "out of memory");
    }
    *g = (gen){.s = s, .smp = smp, .gp = *gp, .t = g->t, .skip = gp->skip_bytes, .decoded0 = s->n_decoded,
               .shifts0 = s->n_shifts, .done = gp->n_predict == 0};
    tok_stream_init(&g->ts, fwd_model(s->c)->vocab, 0);
    *out = g;
    return SIM_OK;
}

sim_status sess_gen_step(sess_gen *g, bool *more, sim_err *err) {
    sim_status st = SIM_OK;
    *more = false;
    if (g->done) return SIM_OK;
    ASSERT(g->s->nq == 0 && g->s->have_logits);
    int32_t tok = gen_step(g, &st, err);
    if (tok < 0) {
        g->done = true;
        return st;
    }
    g->s->queue[g->s->nq++] = tok;
    *more = true;
    return SIM_OK;
}

sim_status sess_gen_finish(sess_gen *g, sess_result *r, sim_err *err) {
    sim_status st = gen_finish(g, err);
    *r = g->r;
    g->s->nq = 0; // a token sampled but never decoded is dropped
    mem_free(g->t.p);
    mem_free(g);
    return st;
}

const sess_result *sess_gen_result(const sess_gen *g) { return &g->r; }

sim_status sess_generate_many(sess **ss, smp_ctx **smps, int n, const sess_gen_params *gp, sess_result *rs,
                              sim_err *err) {
    if (n < 1 || n > KV_MAX_SEQ) return err_set(err, SIM_ERR_ARG, "%d sequences (1..%d)", n, KV_MAX_SEQ);
    if (n > fwd_n_outputs(ss[0]->c))
        return err_set(err, SIM_ERR_ARG, "%d sequences but the context computes logits for at most %d tokens a step",
                       n, fwd_n_outputs(ss[0]->c));
    for (int i = 0; i < n; i++)
        if (ss[i]->c != ss[0]->c) return err_set(err, SIM_ERR_ARG, "sessions of different contexts");
    gen **gs = mem_calloc((size_t)n, sizeof *gs);
    sess **active = mem_alloc((size_t)n * sizeof *active);
    int *ones = mem_alloc((size_t)n * sizeof *ones);
    sim_status st = SIM_OK;
    if (!gs || !active || !ones) st = err_set(err, SIM_ERR_NOMEM, "out of memory");
    memset(rs, 0, (size_t)n * sizeof *rs);
    for (int i = 0; i < n && st == SIM_OK; i++) {
        st = sess_gen_new(&gs[i], ss[i], smps[i], gp, err);
        ones[i] = 1;
    }
    while (st == SIM_OK) {
        int k = 0;
        for (int i = 0; i < n && st == SIM_OK; i++) {
            bool more;
            st = sess_gen_step(gs[i], &more, err);
            if (more) active[k++] = ss[i];
        }
        if (st != SIM_OK || k == 0) break;
        st = sess_decode_many(active, ones, k, err);
    }
    for (int i = 0; i < n && gs; i++) {
        if (!gs[i]) continue;
        sim_status fs = sess_gen_finish(gs[i], &rs[i], err);
        if (st == SIM_OK) st = fs;
    }
    mem_free(gs);
    mem_free(active);
    mem_free(ones);
    return st;
}

sim_status sess_generate(sess *s, smp_ctx *smp, const sess_gen_params *gp, sess_result *r, sim_err *err) {
    return sess_generate_many(&s, &smp, 1, gp, r, err);
}

void sess_result_free(sess_result *r) {
    mem_free(r->text);
    memset(r, 0, sizeof *r);
}

// --- state files ----------------------------------------------------------------------
//
// Layout (little-endian):
//   "SIMSTATE"  u32 format  char engine[16]  u64 model_hash
//   u32 n_ctx  u32 kv_type  u32 n_layer  u32 n_kv_dim  u32 n_vocab
//   u32 n_tokens  i32 tokens[n_tokens]          (token i at position i)
//   per layer: n_tokens K rows (row_bytes each), then for each of n_kv_dim
//   dimensions n_tokens V values
//   u64 hash64 of everything before it

#define STATE_MAGIC "SIMSTATE"
#define STATE_FORMAT 1

typedef struct state_hdr {
    char magic[8];
    uint32_t format;
    char engine[16];
    uint64_t model_hash;
    uint32_t n_ctx, kv_type, n_layer, n_kv_dim, n_vocab, n_tokens;
} state_hdr;

static state_hdr header_of(const sess *s) {
    const kv_cache *kv = fwd_kv(s->c);
    state_hdr h;
    memset(&h, 0, sizeof h);
    memcpy(h.magic, STATE_MAGIC, 8);
    h.format = STATE_FORMAT;
    snprintf(h.engine, sizeof h.engine, "%s", SIM_VERSION_STRING);
    h.model_hash = model_content_hash((model *)fwd_model(s->c));
    h.n_ctx = (uint32_t)kv->n_ctx;
    h.kv_type = (uint32_t)kv->type;
    h.n_layer = (uint32_t)kv->n_layer;
    h.n_kv_dim = (uint32_t)kv->n_kv_dim;
    h.n_vocab = (uint32_t)fwd_model(s->c)->hp.n_vocab;
    h.n_tokens = (uint32_t)s->n;
    return h;
}

static size_t state_size(const state_hdr *h, size_t esz) {
    return sizeof *h + (size_t)h->n_tokens * 4 + 2 * (size_t)h->n_layer * h->n_tokens * h->n_kv_dim * esz + 8;
}

sim_status sess_save(const sess *s, const char *path, sim_err *err) {
    const kv_cache *kv = fwd_kv(s->c);
    size_t esz = kv->type == TT_F16 ? 2 : 4;
    state_hdr h = header_of(s);
    size_t total = state_size(&h, esz);
    uint8_t *buf = mem_alloc(total), *p = buf;
    int *cells = mem_alloc((size_t)kv->n_ctx * sizeof(int));
    if (!buf || !cells) {
        mem_free(buf);
        mem_free(cells);
        return err_set(err, SIM_ERR_NOMEM, "%s: out of memory for %zu bytes of state", path, total);
    }
    // The session's cells, ordered by position (token i at position i).
    int nc = kv_seq_cells(kv, s->p.seq, cells);
    ASSERT(nc == s->n);
    int *by_pos = mem_alloc((size_t)(nc ? nc : 1) * sizeof(int));
    if (!by_pos) {
        mem_free(buf);
        mem_free(cells);
        return err_set(err, SIM_ERR_NOMEM, "%s: out of memory", path);
    }
    for (int i = 0; i < nc; i++) by_pos[kv->cells[cells[i]].pos] = cells[i];
    memcpy(p, &h, sizeof h);
    p += sizeof h;
    memcpy(p, s->toks, (size_t)s->n * 4);
    p += (size_t)s->n * 4;
    for (int l = 0; l < kv->n_layer; l++) {
        for (int i = 0; i < nc; i++, p += kv->row_bytes) memcpy(p, kv_k_row(kv, l, by_pos[i]), kv->row_bytes);
        const uint8_t *vt = kv_v_row(kv, l, 0);
        for (int d = 0; d < kv->n_kv_dim; d++)
            for (int i = 0; i < nc; i++, p += esz) memcpy(p, vt + ((size_t)d * kv->n_ctx + (size_t)by_pos[i]) * esz, esz);
    }
    uint64_t sum = hash64(buf, (size_t)(p - buf), 0);
    memcpy(p, &sum, 8);
    p += 8;
    ASSERT((size_t)(p - buf) == total);
    sim_status st = file_write_all(path, buf, total, err);
    mem_free(by_pos);
    mem_free(cells);
    mem_free(buf);
    return st;
}

sim_status sess_load(sess *s, const char *path, sim_err *err) {
    kv_cache *kv = fwd_kv(s->c);
    size_t esz = kv->type == TT_F16 ? 2 : 4;
    state_hdr want = header_of(s);
    char *data;
    size_t len;
    // The largest state this context can hold bounds what we read.
    state_hdr most = want;
    most.n_tokens = (uint32_t)budget(s);
    sim_status st = file_read_all(path, state_size(&most, esz), &data, &len, err);
    if (st) return st;
    state_hdr h;
    const char *why = NULL;
    char buf[200];
    if (len < sizeof h + 8) why = "truncated (shorter than its header)";
    else {
        memcpy(&h, data, sizeof h);
        if (memcmp(h.magic, STATE_MAGIC, 8) != 0) why = "not a Simularity state file";
        else if (h.format != STATE_FORMAT) why = (snprintf(buf, sizeof buf, "state format %u, this engine reads %u", h.format, STATE_FORMAT), buf);
        else if (memcmp(h.engine, want.engine, sizeof h.engine) != 0)
            why = (snprintf(buf, sizeof buf, "written by engine %.16s, this is %s", h.engine, SIM_VERSION_STRING), buf);
        else if (h.model_hash != want.model_hash) why = "written for a different model (content hash differs)";
        else if (h.n_ctx != want.n_ctx) why = (snprintf(buf, sizeof buf, "written for context size %u, this context has %u", h.n_ctx, want.n_ctx), buf);
        else if (h.kv_type != want.kv_type) why = (snprintf(buf, sizeof buf, "written with a %s KV cache, this one is %s", tt_name((tt_type)h.kv_type), tt_name((tt_type)want.kv_type)), buf);
        else if (h.n_layer != want.n_layer || h.n_kv_dim != want.n_kv_dim || h.n_vocab != want.n_vocab) why = "model shape differs";
        else if (h.n_tokens < 1 || (int)h.n_tokens > budget(s)) why = (snprintf(buf, sizeof buf, "holds %u tokens, the session allows 1..%d", h.n_tokens, budget(s)), buf);
        else if (len != state_size(&h, esz)) why = (snprintf(buf, sizeof buf, "%zu bytes, expected %zu (truncated or corrupt)", len, state_size(&h, esz)), buf);
        else {
            uint64_t sum;
            memcpy(&sum, data + len - 8, 8);
            if (sum != hash64(data, len - 8, 0)) why = "checksum mismatch (corrupt)";
        }
    }
    if (!why) {
        const int32_t *toks = (const int32_t *)(data + sizeof h);
        for (uint32_t i = 0; i < h.n_tokens && !why; i++)
            if (toks[i] < 0 || toks[i] >= (int32_t)h.n_vocab) why = "a token id is outside the vocabulary";
    }
    // Room: the session's own cells are replaced, the others stay.
    int n_own = 0;
    if (!why) {
        for (int i = 0; i < kv->hi; i++) n_own += kv->cells[i].seqs == ((kv_seq_mask)1 << s->p.seq);
        if ((int)h.n_tokens > kv->n_ctx - kv->n_used + n_own) why = "not enough free cells in the context";
    }
    if (why) {
        mem_free(data);
        return err_set(err, SIM_ERR_FORMAT, "%s: %s", path, why);
    }
    // Valid: replace the session's sequence.
    kv_seq_rm(kv, s->p.seq, 0, -1);
    int n = (int)h.n_tokens;
    int *cells = mem_alloc((size_t)n * sizeof(int));
    int32_t *pos = mem_alloc((size_t)n * sizeof(int32_t));
    kv_seq_mask *seqs = mem_alloc((size_t)n * sizeof(kv_seq_mask));
    if (!cells || !pos || !seqs) {
        mem_free(cells);
        mem_free(pos);
        mem_free(seqs);
        mem_free(data);
        s->n = 0;
        s->have_logits = false;
        return err_set(err, SIM_ERR_NOMEM, "%s: out of memory", path);
    }
    ASSERT(kv_find_slot(kv, n, cells) == SIM_OK);
    const uint8_t *p = (const uint8_t *)data + sizeof h;
    memcpy(s->toks, p, (size_t)n * 4);
    p += (size_t)n * 4;
    for (int l = 0; l < kv->n_layer; l++) {
        for (int i = 0; i < n; i++, p += kv->row_bytes) memcpy(kv_k_row(kv, l, cells[i]), p, kv->row_bytes);
        uint8_t *vt = kv_v_row(kv, l, 0);
        for (int d = 0; d < kv->n_kv_dim; d++)
            for (int i = 0; i < n; i++, p += esz) memcpy(vt + ((size_t)d * kv->n_ctx + (size_t)cells[i]) * esz, p, esz);
    }
    for (int i = 0; i < n; i++) {
        pos[i] = i;
        seqs[i] = (kv_seq_mask)1 << s->p.seq;
    }
    kv_commit(kv, n, cells, pos, seqs);
    s->n = n;
    s->have_logits = false; // the next sess_set_prompt decodes at least the last token
    mem_free(cells);
    mem_free(pos);
    mem_free(seqs);
    mem_free(data);
    return SIM_OK;
}
