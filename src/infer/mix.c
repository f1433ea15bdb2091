// mix.c — models writing together: per-step distributions, matching by token
// text, the three modes, and keeping every model's session on the same text.
#include "infer/mix.h"

#include <math.h>
#include <string.h>

mix_params mix_default_params(void) { return (mix_params){.mode = MIX_ROUND_ROBIN, .turn = 1, .n_predict = 32}; }

static const char *const mode_names[] = {"round-robin", "democratic", "reference"};

bool mix_mode_from_name(const char *name, mix_mode *out) {
    for (int i = 0; i < (int)ARRAY_LEN(mode_names); i++)
        if (strcmp(name, mode_names[i]) == 0) {
            *out = (mix_mode)i;
            return true;
        }
    return false;
}

const char *mix_mode_name(mix_mode m) { return (unsigned)m < ARRAY_LEN(mode_names) ? mode_names[m] : "?"; }

// --- one model: its tokens grouped by text ------------------------------------------

typedef struct mixer {
    fwd_ctx *c;
    const tok_vocab *v;
    int n_vocab;
    sess *s;
    int32_t *order; // (n_order) the tokens with text, sorted by text (ties: id)
    int n_order;
    int *gstart;    // (n_groups + 1) where each run of equal texts starts in order
    int n_groups;
    float *probs;   // (n_vocab) softmax of the current logits
    double *gsum;   // (n_groups) probability of each text
    int32_t top;    // the most likely token with text
} mixer;

static int text_cmp(const char *a, size_t na, const char *b, size_t nb) {
    int c = memcmp(a, b, MIN(na, nb));
    return c ? c : (na < nb ? -1 : na > nb);
}

static int by_text(const void *ctx, int32_t a, int32_t b) {
    size_t na, nb;
    const char *ta = tok_token_text(ctx, a, false, &na), *tb = tok_token_text(ctx, b, false, &nb);
    int c = text_cmp(ta, na, tb, nb);
    return c ? c : (a < b ? -1 : a > b);
}

static const char *group_text(const mixer *x, int g, size_t *len) {
    return tok_token_text(x->v, x->order[x->gstart[g]], false, len);
}

static sim_status mixer_init(mixer *x, fwd_ctx *c, sim_err *err) {
    x->c = c;
    x->v = fwd_model(c)->vocab;
    x->n_vocab = fwd_model(c)->hp.n_vocab;
    size_t nv = (size_t)x->n_vocab;
    x->order = mem_alloc(nv * 2 * sizeof *x->order);
    x->gstart = mem_alloc((nv + 1) * sizeof *x->gstart);
    x->probs = mem_alloc(nv * sizeof *x->probs);
    x->gsum = mem_alloc(nv * sizeof *x->gsum);
    if (!x->order || !x->gstart || !x->probs || !x->gsum) return err_set(err, SIM_ERR_NOMEM, "out of memory");
    for (int32_t i = 0; i < x->n_vocab; i++) {
        size_t len;
        tok_token_text(x->v, i, false, &len);
        if (len > 0 && !tok_is_eog(x->v, i)) x->order[x->n_order++] = i;
    }
    if (x->n_order == 0) return err_set(err, SIM_ERR_UNSUPPORTED, "mix: a model has no token with text");
    sort_i32(x->order, x->order + x->n_order, x->n_order, by_text, x->v);
    size_t pl = 0;
    const char *prev = NULL;
    for (int i = 0; i < x->n_order; i++) {
        size_t l;
        const char *t = tok_token_text(x->v, x->order[i], false, &l);
        if (!prev || text_cmp(prev, pl, t, l) != 0) x->gstart[x->n_groups++] = i;
        prev = t, pl = l;
    }
    x->gstart[x->n_groups] = x->n_order;
    sess_params sp = sess_default_params();
    sp.context_shift = false;
    return sess_new(&x->s, c, &sp, err);
}

static void mixer_free(mixer *x) {
    sess_free(x->s);
    mem_free(x->order);
    mem_free(x->gstart);
    mem_free(x->probs);
    mem_free(x->gsum);
}

// The distribution after the session's tokens, each text's probability and the top token.
static void mixer_read(mixer *x) {
    const float *l = sess_logits(x->s);
    float mx = -INFINITY;
    for (int i = 0; i < x->n_vocab; i++) mx = MAX(mx, l[i]);
    double sum = 0;
    for (int i = 0; i < x->n_vocab; i++) sum += x->probs[i] = l[i] > -INFINITY ? expf(l[i] - mx) : 0;
    for (int i = 0; i < x->n_vocab; i++) x->probs[i] = (float)(x->probs[i] / sum);
    x->top = x->order[0];
    for (int i = 0; i < x->n_order; i++) {
        int32_t t = x->order[i];
        if (x->probs[t] > x->probs[x->top] || (x->probs[t] == x->probs[x->top] && t < x->top)) x->top = t;
    }
    for (int g = 0; g < x->n_groups; g++) {
        double s = 0;
        for (int k = x->gstart[g]; k < x->gstart[g + 1]; k++) s += x->probs[x->order[k]];
        x->gsum[g] = s;
    }
}

// The group whose text is t[0..n), or -1.
static int mixer_find(const mixer *x, const char *t, size_t n) {
    int lo = 0, hi = x->n_groups;
    while (lo < hi) {
        int mid = (lo + hi) / 2;
        size_t gl;
        const char *gt = group_text(x, mid, &gl);
        int c = text_cmp(gt, gl, t, n);
        if (c == 0) return mid;
        if (c < 0) lo = mid + 1;
        else hi = mid;
    }
    return -1;
}

// The most likely token of group g (ties: the lower id).
static int32_t group_best(const mixer *x, int g) {
    int32_t best = x->order[x->gstart[g]];
    for (int k = x->gstart[g] + 1; k < x->gstart[g + 1]; k++)
        if (x->probs[x->order[k]] > x->probs[best]) best = x->order[k];
    return best;
}

// --- generation -----------------------------------------------------------------------

// Democratic: merges the models' text-sorted groups and returns the text
// with the largest summed probability (ties: the smaller text).
static const char *vote(mixer *xs, int n, size_t *len) {
    int cur[MIX_MAX_MODELS] = {0};
    const char *best = NULL;
    size_t best_len = 0;
    double best_sum = -1;
    for (;;) {
        const char *mt = NULL;
        size_t ml = 0;
        for (int i = 0; i < n; i++) {
            if (cur[i] >= xs[i].n_groups) continue;
            size_t l;
            const char *t = group_text(&xs[i], cur[i], &l);
            if (!mt || text_cmp(t, l, mt, ml) < 0) mt = t, ml = l;
        }
        if (!mt) break;
        double sum = 0;
        for (int i = 0; i < n; i++) {
            if (cur[i] >= xs[i].n_groups) continue;
            size_t l;
            const char *t = group_text(&xs[i], cur[i], &l);
            if (text_cmp(t, l, mt, ml) == 0) sum += xs[i].gsum[cur[i]++];
        }
        if (sum > best_sum) best = mt, best_len = ml, best_sum = sum; // texts come in order: ties keep the smaller
    }
    *len = best_len;
    return best;
}

static bool text_put(char **buf, size_t *n, size_t *cap, const char *t, size_t len) {
    if (*n + len + 1 > *cap) {
        size_t nc = MAX(*cap * 2, *n + len + 256);
        char *nb = mem_realloc(*buf, nc);
        if (!nb) return false;
        *buf = nb;
        *cap = nc;
    }
    memcpy(*buf + *n, t, len);
    *n += len;
    (*buf)[*n] = 0;
    return true;
}

// Makes x hold the tokenization of all[0..n) (the fallback for a text it has no token for).
static sim_status retokenize(mixer *x, const char *all, size_t n, sim_err *err) {
    int32_t *toks;
    int k = tok_encode_alloc(x->v, all, n, true, false, &toks, err);
    if (k < 0) return (sim_status)k;
    sim_status st = sess_set_prompt(x->s, toks, k, NULL, err);
    mem_free(toks);
    return st;
}

sim_status mix_generate(fwd_ctx *const *ctxs, int n, const char *prompt, size_t len, const mix_params *p, mix_result *r,
                        sim_err *err) {
    memset(r, 0, sizeof *r);
    if (n < 2 || n > MIX_MAX_MODELS) return err_set(err, SIM_ERR_ARG, "mix: 2 to %d models", MIX_MAX_MODELS);
    if ((unsigned)p->mode > MIX_REFERENCE) return err_set(err, SIM_ERR_ARG, "mix: unknown mode");
    if (p->turn < 1 || p->n_predict < 0) return err_set(err, SIM_ERR_ARG, "mix: turn must be at least 1, n_predict not negative");
    for (int i = 0; i < n; i++)
        for (int j = 0; j < i; j++)
            if (ctxs[i] == ctxs[j]) return err_set(err, SIM_ERR_ARG, "mix: models %d and %d share a context", j, i);
    mixer xs[MIX_MAX_MODELS] = {0};
    char *all = NULL;
    size_t n_all = 0, cap_all = 0, cap_text = 0;
    sim_status st = SIM_OK;
    r->n_models = n;
    if (!text_put(&all, &n_all, &cap_all, prompt, len) || !text_put(&r->text, &r->len, &cap_text, "", 0) ||
        !(r->tokens = mem_calloc((size_t)MAX(p->n_predict, 1), sizeof *r->tokens)))
        st = err_set(err, SIM_ERR_NOMEM, "out of memory");
    for (int i = 0; i < n && st == SIM_OK; i++)
        if ((st = mixer_init(&xs[i], ctxs[i], err)) == SIM_OK && (st = retokenize(&xs[i], all, n_all, err)) != SIM_OK)
            err_prefix(err, "mix: model %d", i);
    for (int step = 0; step < p->n_predict && st == SIM_OK; step++) {
        for (int i = 0; i < n; i++) mixer_read(&xs[i]);
        int w = 0;
        const char *t;
        size_t tl;
        if (p->mode == MIX_DEMOCRATIC) {
            t = vote(xs, n, &tl);
        } else {
            w = p->mode == MIX_ROUND_ROBIN ? (step / p->turn) % n : 0;
            t = tok_token_text(xs[w].v, xs[w].top, false, &tl);
        }
        mix_token *mt = &r->tokens[step];
        int g[MIX_MAX_MODELS];
        float bestp = -1;
        for (int i = 0; i < n; i++) {
            g[i] = mixer_find(&xs[i], t, tl);
            mt->probs[i] = g[i] >= 0 ? (float)xs[i].gsum[g[i]] : 0;
            size_t ol;
            const char *ot = tok_token_text(xs[i].v, xs[i].top, false, &ol);
            if (text_cmp(ot, ol, t, tl) != 0) mt->disagree = true;
            if (p->mode == MIX_DEMOCRATIC && mt->probs[i] > bestp) bestp = mt->probs[i], w = i;
        }
        mt->model = w;
        mt->text = mem_strndup(t, tl);
        mt->len = tl;
        r->n_tokens = step + 1;
        if (!mt->text || !text_put(&r->text, &r->len, &cap_text, t, tl) || !text_put(&all, &n_all, &cap_all, t, tl)) {
            st = err_set(err, SIM_ERR_NOMEM, "out of memory");
            break;
        }
        if (p->on_token && !p->on_token(p->ud, step, mt)) {
            st = err_set(err, SIM_ERR_ABORTED, "stopped by the caller");
            break;
        }
        if (step + 1 == p->n_predict) break; // nothing more to read
        for (int i = 0; i < n && st == SIM_OK; i++) {
            st = g[i] >= 0 ? sess_push(xs[i].s, group_best(&xs[i], g[i]), NULL, err) : retokenize(&xs[i], all, n_all, err);
            if (st != SIM_OK) err_prefix(err, "mix: model %d", i);
        }
    }
    for (int i = 0; i < n; i++) mixer_free(&xs[i]);
    mem_free(all);
    if (st != SIM_OK) mix_result_free(r);
    return st;
}

void mix_result_free(mix_result *r) {
    if (!r) return;
    for (int i = 0; i < r->n_tokens; i++) mem_free(r->tokens[i].text);
    mem_free(r->tokens);
    mem_free(r->text);
    memset(r, 0, sizeof *r);
}
