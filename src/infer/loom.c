// loom.c — breadth-first growth of the tree of likely continuations, one
// batched decode per depth over sequences that share their prefix cells.
#include "infer/loom.h"

#include <math.h>
#include <string.h>

loom_params loom_default_params(void) {
    return (loom_params){.depth = 12, .max = 25, .cutoff = 0.2f, .multiplier = 1.0f, .split = 3, .autostop = true,
                         .logprob = false, .seqs = 0, .max_frontier = 4096, .max_nodes = 1 << 20};
}

size_t loom_trim_prompt(const char *text, size_t len) { return len > 0 && text[len - 1] == ' ' ? len - 1 : len; }

// --- the children of a node ---------------------------------------------------------

static bool better(loom_cand a, loom_cand b) { return a.prob > b.prob || (a.prob == b.prob && a.token < b.token); }

int loom_children(const float *logits, int n_vocab, float cutoff, int split, loom_cand *out, int cap) {
    int limit = split > 0 ? MIN(split, LOOM_MAX_CHILDREN) : LOOM_MAX_CHILDREN;
    limit = MIN(limit, cap);
    if (limit < 1 || n_vocab < 1) return 0;
    float mx = -INFINITY;
    int best = -1;
    for (int i = 0; i < n_vocab; i++)
        if (logits[i] > mx) mx = logits[i], best = i;
    if (best < 0) return 0; // all -inf or NaN
    double sum = 0;
    for (int i = 0; i < n_vocab; i++)
        if (logits[i] > -INFINITY) sum += exp((double)logits[i] - mx);
    out[0] = (loom_cand){.token = best, .prob = (float)(1.0 / sum)};
    int n = 1;
    // A token reaches the cutoff when exp(l - mx) / sum >= cutoff: one
    // comparison per entry; only those pay the exp and the insertion.
    double lmin = cutoff > 0 ? (double)mx + log((double)cutoff * sum) : -INFINITY;
    for (int i = 0; i < n_vocab; i++) {
        if (i == best || !(logits[i] > -INFINITY) || (double)logits[i] < lmin) continue;
        loom_cand c = {.token = i, .prob = (float)(exp((double)logits[i] - mx) / sum)};
        if (c.prob < cutoff || c.prob <= 0) continue;
        if (n == limit && !better(c, out[n - 1])) continue;
        int j = n < limit ? n++ : n - 1;
        while (j > 1 && better(c, out[j - 1])) {
            out[j] = out[j - 1];
            j--;
        }
        out[j] = c;
    }
    return n;
}

static bool is_stop(char c) { return c == '.' || c == ','; }
static bool is_space(char c) { return c == ' ' || c == '\t' || c == '\n' || c == '\r' || c == '\v' || c == '\f'; }

// Scans t for a stop character after content; *content carries whether the
// branch has content so far (updated).
static bool stops_after(bool *content, const char *t, size_t n) {
    for (size_t i = 0; i < n; i++) {
        if (is_stop(t[i])) {
            if (*content) return true;
        } else if (!is_space(t[i])) *content = true;
    }
    return false;
}

bool loom_stops(const char *prev, size_t n_prev, const char *t, size_t n) {
    bool content = false;
    stops_after(&content, prev, n_prev);
    return stops_after(&content, t, n);
}

// --- the expansion --------------------------------------------------------------------

typedef struct branch {
    int node;
    sess *s; // holds the branch's path with the node's token queued; NULL: cold
} branch;

typedef struct loom {
    sess *root;
    const loom_params *p;
    const model *m;
    int n_vocab;
    kv_seq_mask free_ids;
    loom_node *nodes;
    bool *content; // (n_nodes) the branch up to the node has text besides stops and spaces
    int n_nodes, cap_nodes;
    branch *next; // the next depth's branches
    int n_next, cap_next;
    int32_t *toks; // (n_root + depth + 1) scratch: a branch's full token list
    loom_cand *cands; // (LOOM_MAX_CHILDREN)
    // Sequences of finished branches, kept (with their cells) until an id is
    // needed: a cold branch takes the one sharing the longest prefix with it
    // and decodes only the rest.
    sess *spare[KV_MAX_SEQ];
    int n_spare;
    loom_result *r;
    sim_err *err;
} loom;

static void release(loom *L, sess *s);

static void drop_spare(loom *L, int i) {
    sess *s = L->spare[i];
    L->spare[i] = L->spare[--L->n_spare];
    release(L, s);
}

static void drop_spares(loom *L) {
    while (L->n_spare > 0) drop_spare(L, L->n_spare - 1);
}

// A finished branch's sequence becomes a spare.
static void retire(loom *L, sess *s) {
    if (!s) return;
    ASSERT(L->n_spare < KV_MAX_SEQ);
    L->spare[L->n_spare++] = s;
}

// A free sequence id (a spare is given up for it when none is); -1: none.
static int acquire(loom *L) {
    if (!L->free_ids && L->n_spare > 0) drop_spare(L, 0);
    if (!L->free_ids) return -1;
    int id = __builtin_ctzll(L->free_ids);
    L->free_ids &= ~((kv_seq_mask)1 << id);
    return id;
}

static void release(loom *L, sess *s) {
    if (!s) return;
    L->free_ids |= (kv_seq_mask)1 << sess_seq(s);
    sess_free(s);
}

// The tokens of node's branch, root first, into out (room for depth); returns the count.
static int path(const loom *L, int node, int32_t *out) {
    int d = L->nodes[node].depth;
    for (int i = node, k = d - 1; i >= 0; i = L->nodes[i].parent, k--) out[k] = L->nodes[i].token;
    return d;
}

// sess_queue_prompt, giving up the spares' cells when the cache is short of them.
static sim_status queue_tokens(loom *L, sess *s, const int32_t *toks, int n) {
    sim_status st = sess_queue_prompt(s, toks, n, NULL, L->err);
    if (st == SIM_ERR_RANGE && L->n_spare > 0) {
        drop_spares(L);
        st = sess_queue_prompt(s, toks, n, NULL, L->err);
    }
    return st;
}

// Makes s hold root's tokens + node's path, queueing the tokens it lacks.
static sim_status queue_path(loom *L, sess *s, int node) {
    int nr = sess_n_tokens(L->root);
    memcpy(L->toks, sess_tokens(L->root), (size_t)nr * sizeof *L->toks);
    int d = path(L, node, L->toks + nr);
    return queue_tokens(L, s, L->toks, nr + d);
}

static sim_status push_next(loom *L, int node, sess *s) {
    if (L->n_next == L->cap_next) {
        int cap = MAX(64, L->cap_next * 2);
        branch *nb = mem_realloc(L->next, (size_t)cap * sizeof *nb);
        if (!nb) return err_set(L->err, SIM_ERR_NOMEM, "out of memory");
        L->next = nb;
        L->cap_next = cap;
    }
    L->next[L->n_next++] = (branch){.node = node, .s = s};
    return SIM_OK;
}

static sim_status add_node(loom *L, loom_node nd, bool content) {
    if (L->n_nodes >= L->p->max_nodes)
        return err_set(L->err, SIM_ERR_RANGE, "loom: the tree grows past %d nodes (raise the cutoff or lower split)",
                       L->p->max_nodes);
    if (L->n_nodes == L->cap_nodes) {
        int cap = MAX(256, L->cap_nodes * 2);
        loom_node *nn = mem_realloc(L->nodes, (size_t)cap * sizeof *nn);
        if (!nn) return err_set(L->err, SIM_ERR_NOMEM, "out of memory");
        L->nodes = nn;
        bool *nc = mem_realloc(L->content, (size_t)cap * sizeof *nc);
        if (!nc) return err_set(L->err, SIM_ERR_NOMEM, "out of memory");
        L->content = nc;
        L->cap_nodes = cap;
    }
    nd.id = L->n_nodes;
    L->nodes[L->n_nodes] = nd;
    L->content[L->n_nodes++] = content;
    if (L->p->on_node && !L->p->on_node(L->p->ud, &nd)) return err_set(L->err, SIM_ERR_ABORTED, "stopped by the caller");
    return SIM_OK;
}

// Makes the children of parent (-1: the root) from the logits after it. ps
// holds the parent's path: the first continuing child takes it over (never
// the root's), the others fork it; without a free id a child goes cold.
static sim_status expand(loom *L, int parent, const float *logits, sess *ps) {
    const loom_params *p = L->p;
    int d = parent < 0 ? 0 : L->nodes[parent].depth; // the children's depth index
    float cutoff = p->cutoff * powf(p->multiplier, (float)d);
    int n = loom_children(logits, L->n_vocab, cutoff, p->split, L->cands, LOOM_MAX_CHILDREN);
    float score0 = parent < 0 ? 0 : L->nodes[parent].score;
    bool content0 = parent < 0 ? false : L->content[parent];
    bool took = parent < 0; // the root's sequence is never taken
    sim_status st = SIM_OK;
    for (int i = 0; i < n && st == SIM_OK; i++) {
        loom_cand c = L->cands[i];
        size_t tl;
        const char *t = tok_token_text(L->m->vocab, c.token, false, &tl);
        bool content = content0, eog = tok_is_eog(L->m->vocab, c.token);
        bool stop = stops_after(&content, t, tl);
        loom_node nd = {.parent = parent, .depth = d + 1, .token = c.token, .prob = c.prob,
                        .score = score0 + (p->logprob ? logf(c.prob) : c.prob)};
        nd.leaf = eog || d + 1 >= p->depth || (p->autostop && stop);
        if ((st = add_node(L, nd, content)) || nd.leaf) continue;
        int id = L->n_nodes - 1;
        sess *s = NULL;
        if (!took) {
            s = ps;
            took = true;
        } else {
            int seq = acquire(L);
            if (seq >= 0 && (st = sess_fork(ps, seq, &s, L->err)) != SIM_OK) {
                L->free_ids |= (kv_seq_mask)1 << seq;
                break;
            }
            if (s) sess_set_shift(s, false, 0);
        }
        if (s && (st = queue_path(L, s, id)) != SIM_OK) {
            release(L, s); // ps too when taken: nothing else holds it now
            break;
        }
        if ((st = push_next(L, id, s)) != SIM_OK) release(L, s);
    }
    if (!took) retire(L, ps);
    return st;
}

// How many of toks[0..n) s holds at its start.
static int common_prefix(const sess *s, const int32_t *toks, int n) {
    const int32_t *t = sess_tokens(s);
    int k = 0, ns = sess_n_tokens(s);
    while (k < ns && k < n && t[k] == toks[k]) k++;
    return k;
}

// Gives a cold branch a sequence holding as much of its path as can be had,
// so it decodes only the rest: the held sequence (a spare, a pending
// branch's, a next-depth branch's, the root) sharing the longest prefix
// with it is taken when it is a spare and forked otherwise. Without a free
// id, a spare is given up, else the last live branch of the next depth is
// taken back (it turns cold). b->s stays NULL when no sequence can be had.
static sim_status attach_cold(loom *L, branch *cur, int n_cur, branch *b) {
    int nr = sess_n_tokens(L->root);
    memcpy(L->toks, sess_tokens(L->root), (size_t)nr * sizeof *L->toks);
    int n = nr + path(L, b->node, L->toks + nr);
    sess *donor = L->root;
    int lcp = nr, spare = -1, next = -1;
    for (int i = 0; i < L->n_spare; i++) {
        int k = common_prefix(L->spare[i], L->toks, n);
        if (k > lcp) donor = L->spare[i], lcp = k, spare = i;
    }
    for (int i = 0; i < n_cur; i++) {
        int k = cur[i].s ? common_prefix(cur[i].s, L->toks, n) : -1;
        if (k > lcp) donor = cur[i].s, lcp = k, spare = -1, next = -1;
    }
    for (int i = 0; i < L->n_next; i++) {
        int k = L->next[i].s ? common_prefix(L->next[i].s, L->toks, n) : -1;
        if (k > lcp) donor = L->next[i].s, lcp = k, spare = -1, next = i;
    }
    sess *s = NULL;
    if (spare >= 0) { // reuse it as it is
        s = L->spare[spare];
        L->spare[spare] = L->spare[--L->n_spare];
    } else {
        int id = acquire(L); // the donor is no spare: giving one up is fine
        for (int i = L->n_next - 1; id < 0 && i >= 0; i--)
            if (L->next[i].s && i != next) {
                retire(L, L->next[i].s);
                L->next[i].s = NULL;
                id = acquire(L);
            }
        if (id < 0 && next >= 0) { // the donor is the only one: take it over
            s = donor;
            L->next[next].s = NULL;
        } else if (id < 0) {
            return SIM_OK;
        } else {
            sim_status st = sess_fork(donor, id, &s, L->err);
            if (st != SIM_OK) {
                L->free_ids |= (kv_seq_mask)1 << id;
                return st;
            }
            sess_set_shift(s, false, 0);
        }
    }
    b->s = s;
    return queue_tokens(L, s, L->toks, n);
}

static int by_score(const void *ctx, int32_t a, int32_t b) {
    const loom *L = ctx;
    const branch *x = &L->next[a], *y = &L->next[b];
    float sa = L->nodes[x->node].score, sb = L->nodes[y->node].score;
    if (sa != sb) return sa > sb ? -1 : 1;
    return x->node < y->node ? -1 : x->node > y->node;
}

// Keeps the max_frontier best-scored branches of the next depth, in their order.
static sim_status cut_frontier(loom *L) {
    int n = L->n_next, keep = L->p->max_frontier;
    if (n <= keep) return SIM_OK;
    int32_t *idx = mem_alloc((size_t)n * 2 * sizeof *idx);
    bool *kept = mem_calloc((size_t)n, sizeof *kept);
    if (!idx || !kept) {
        mem_free(idx);
        mem_free(kept);
        return err_set(L->err, SIM_ERR_NOMEM, "out of memory");
    }
    for (int i = 0; i < n; i++) idx[i] = i;
    sort_i32(idx, idx + n, n, by_score, L);
    for (int i = 0; i < keep; i++) kept[idx[i]] = true;
    int k = 0;
    for (int i = 0; i < n; i++) {
        if (kept[i]) L->next[k++] = L->next[i];
        else retire(L, L->next[i].s);
    }
    L->n_next = k;
    L->r->truncated = true;
    mem_free(idx);
    mem_free(kept);
    return SIM_OK;
}

// Decodes every branch of cur (one token each when live, the whole path
// when cold) in as few batches as fit, expanding each into L->next.
static sim_status decode_depth(loom *L, branch *cur, int n_cur) {
    fwd_ctx *c = sess_ctx(L->root);
    int cap_out = L->p->naive ? 1 : MIN(fwd_n_outputs(c), fwd_n_batch(c)), n_batch = fwd_n_batch(c);
    bool *done = mem_calloc((size_t)n_cur, sizeof *done);
    int *pick = mem_alloc((size_t)n_cur * sizeof *pick), *take = mem_alloc((size_t)n_cur * sizeof *take);
    sess **ss = mem_alloc((size_t)n_cur * sizeof *ss);
    sim_status st = SIM_OK;
    if (!done || !pick || !take || !ss) st = err_set(L->err, SIM_ERR_NOMEM, "out of memory");
    for (int left = n_cur; st == SIM_OK && left > 0;) {
        int k = 0, ntok = 0;
        // In frontier order, so siblings go together and a cold one finds
        // its parent's path in a sibling's sequence.
        for (int i = 0; i < n_cur && k < cap_out && ntok < n_batch && st == SIM_OK; i++) {
            branch *b = &cur[i];
            if (done[i]) continue;
            if (!b->s && ((st = attach_cold(L, cur, n_cur, b)) != SIM_OK || !b->s)) continue;
            int need = sess_n_queued(b->s); // 1, or what a cold branch's sequence lacks
            ASSERT(need >= 1 && need <= n_batch);
            if (ntok + need > n_batch) continue; // keeps its sequence for the next batch
            pick[k] = i;
            ss[k] = b->s;
            take[k++] = need;
            ntok += need;
        }
        if (st != SIM_OK) break;
        ASSERT(k > 0);
        const kv_cache *kv = fwd_kv(c);
        if (kv->n_ctx - kv->n_used < ntok) drop_spares(L); // their cells are needed
        if ((st = sess_decode_many(ss, take, k, L->err)) != SIM_OK) break;
        L->r->n_decodes++;
        L->r->n_decoded += ntok;
        // Expand in frontier order so the tree's ids do not depend on batching.
        for (int j = 0; j < k && st == SIM_OK; j++) {
            branch *b = &cur[pick[j]];
            sess *s = b->s;
            b->s = NULL; // expand owns it now
            done[pick[j]] = true;
            left--;
            st = expand(L, b->node, sess_logits(s), s);
        }
    }
    mem_free(done);
    mem_free(pick);
    mem_free(take);
    mem_free(ss);
    return st;
}

// --- suggestions --------------------------------------------------------------------

// Bytes, then length: a prefix first.
static int text_cmp(const loom_suggestion *x, const loom_suggestion *y) {
    int c = memcmp(x->text, y->text, MIN(x->len, y->len));
    return c ? c : (x->len < y->len ? -1 : x->len > y->len);
}

static int sug_by_text(const void *ctx, int32_t a, int32_t b) {
    const loom_suggestion *s = ctx;
    const loom_suggestion *x = &s[a], *y = &s[b];
    int c = text_cmp(x, y);
    if (c) return c;
    if (x->score != y->score) return x->score > y->score ? -1 : 1;
    return x->node < y->node ? -1 : x->node > y->node;
}

static int sug_by_score(const void *ctx, int32_t a, int32_t b) {
    const loom_suggestion *s = ctx;
    const loom_suggestion *x = &s[a], *y = &s[b];
    if (x->score != y->score) return x->score > y->score ? -1 : 1;
    int c = text_cmp(x, y);
    return c ? c : (x->node < y->node ? -1 : x->node > y->node);
}

static void sug_free(loom_suggestion *s) {
    mem_free(s->text);
    mem_free(s->tokens);
}

// Builds the suggestions from the leaves: dedup by text, sort, keep max.
static sim_status collect(loom *L) {
    int n_leaf = 0;
    for (int i = 0; i < L->n_nodes; i++) n_leaf += L->nodes[i].leaf;
    loom_suggestion *sg = mem_calloc((size_t)MAX(n_leaf, 1), sizeof *sg);
    int32_t *idx = mem_alloc((size_t)MAX(n_leaf, 1) * 2 * sizeof *idx);
    if (!sg || !idx) {
        mem_free(sg);
        mem_free(idx);
        return err_set(L->err, SIM_ERR_NOMEM, "out of memory");
    }
    int n = 0;
    sim_status st = SIM_OK;
    for (int i = 0; i < L->n_nodes && st == SIM_OK; i++) {
        if (!L->nodes[i].leaf) continue;
        loom_suggestion *s = &sg[n];
        s->tokens = mem_alloc((size_t)L->nodes[i].depth * sizeof *s->tokens);
        if (!s->tokens) {
            st = err_set(L->err, SIM_ERR_NOMEM, "out of memory");
            break;
        }
        int d = path(L, i, s->tokens);
        if (tok_is_eog(L->m->vocab, s->tokens[d - 1])) d--; // the end is no part of the text
        size_t len = 0;
        for (int k = 0; k < d; k++) {
            size_t tl;
            tok_token_text(L->m->vocab, s->tokens[k], false, &tl);
            len += tl;
        }
        if (len == 0) {
            mem_free(s->tokens);
            s->tokens = NULL;
            continue;
        }
        if (!(s->text = mem_alloc(len + 1))) {
            st = err_set(L->err, SIM_ERR_NOMEM, "out of memory");
            break;
        }
        len = 0;
        for (int k = 0; k < d; k++) {
            size_t tl;
            const char *t = tok_token_text(L->m->vocab, s->tokens[k], false, &tl);
            memcpy(s->text + len, t, tl);
            len += tl;
        }
        s->text[len] = 0;
        s->len = len;
        s->n_tokens = d;
        s->score = L->nodes[i].score;
        s->node = i;
        n++;
    }
    if (st != SIM_OK) {
        for (int i = 0; i <= n && i < MAX(n_leaf, 1); i++) sug_free(&sg[i]);
        mem_free(sg);
        mem_free(idx);
        return st;
    }
    // Dedup: equal texts sort together, the best first.
    for (int i = 0; i < n; i++) idx[i] = i;
    sort_i32(idx, idx + n, n, sug_by_text, sg);
    int m = 0;
    for (int i = 0; i < n; i++) {
        loom_suggestion *s = &sg[idx[i]];
        if (m > 0) {
            const loom_suggestion *prev = &sg[idx[m - 1]];
            if (prev->len == s->len && memcmp(prev->text, s->text, s->len) == 0) {
                sug_free(s);
                continue;
            }
        }
        idx[m++] = idx[i];
    }
    sort_i32(idx, idx + n, m, sug_by_score, sg);
    int keep = MIN(m, L->p->max);
    loom_suggestion *out = mem_alloc((size_t)MAX(keep, 1) * sizeof *out);
    if (!out) {
        for (int i = 0; i < m; i++) sug_free(&sg[idx[i]]);
        mem_free(sg);
        mem_free(idx);
        return err_set(L->err, SIM_ERR_NOMEM, "out of memory");
    }
    for (int i = 0; i < m; i++) {
        if (i < keep) out[i] = sg[idx[i]];
        else sug_free(&sg[idx[i]]);
    }
    L->r->suggestions = out;
    L->r->n_suggestions = keep;
    mem_free(sg);
    mem_free(idx);
    return SIM_OK;
}

// --- entry points ---------------------------------------------------------------------

static sim_status check_params(sess *root, const loom_params *p, sim_err *err) {
    if (!root || !p) return err_set(err, SIM_ERR_ARG, "loom: no root session or parameters");
    if (!sess_logits(root) || sess_n_queued(root) > 0)
        return err_set(err, SIM_ERR_ARG, "loom: the root session needs a decoded prompt");
    if (p->depth < 1 || p->depth > LOOM_MAX_DEPTH) return err_set(err, SIM_ERR_ARG, "loom: depth must be 1..%d", LOOM_MAX_DEPTH);
    if (p->max < 1) return err_set(err, SIM_ERR_ARG, "loom: max must be at least 1");
    if (!(p->cutoff >= 0 && p->cutoff <= 1)) return err_set(err, SIM_ERR_ARG, "loom: cutoff must be between 0 and 1");
    if (!(p->multiplier >= 0 && p->multiplier <= 1e6f)) return err_set(err, SIM_ERR_ARG, "loom: multiplier must be between 0 and 1e6");
    if (p->split < 0) return err_set(err, SIM_ERR_ARG, "loom: split must not be negative");
    if (p->max_frontier < 1 || p->max_nodes < 1) return err_set(err, SIM_ERR_ARG, "loom: max_frontier and max_nodes must be at least 1");
    if (p->depth > fwd_n_batch(sess_ctx(root)))
        return err_set(err, SIM_ERR_RANGE, "loom: depth %d exceeds the context's batch size %d", p->depth,
                       fwd_n_batch(sess_ctx(root)));
    return SIM_OK;
}

sim_status loom_expand(sess *root, const loom_params *p, loom_result *r, sim_err *err) {
    memset(r, 0, sizeof *r);
    sim_status st = check_params(root, p, err);
    if (st) return st;
    const model *m = fwd_model(sess_ctx(root));
    loom L = {.root = root, .p = p, .m = m, .n_vocab = m->hp.n_vocab, .r = r, .err = err};
    L.free_ids = (p->seqs ? p->seqs : ~(kv_seq_mask)0) & ~((kv_seq_mask)1 << sess_seq(root));
    if (!L.free_ids) return err_set(err, SIM_ERR_ARG, "loom: no sequence id to use besides the root's");
    L.toks = mem_alloc(((size_t)sess_n_tokens(root) + (size_t)p->depth + 1) * sizeof *L.toks);
    L.cands = mem_alloc(LOOM_MAX_CHILDREN * sizeof *L.cands);
    branch *cur = NULL;
    int n_cur = 0;
    if (!L.toks || !L.cands) st = err_set(err, SIM_ERR_NOMEM, "out of memory");
    if (st == SIM_OK) st = expand(&L, -1, sess_logits(root), root);
    for (int depth = 1; st == SIM_OK; depth++) {
        if ((st = cut_frontier(&L)) != SIM_OK) break;
        if (p->on_depth && !p->on_depth(p->ud, depth, L.n_next)) {
            st = err_set(err, SIM_ERR_ABORTED, "stopped by the caller");
            break;
        }
        if (L.n_next == 0) break;
        // The next depth becomes the current one.
        mem_free(cur);
        cur = L.next;
        n_cur = L.n_next;
        L.next = NULL;
        L.n_next = L.cap_next = 0;
        st = decode_depth(&L, cur, n_cur);
    }
    if (st == SIM_OK) st = collect(&L);
    for (int i = 0; i < n_cur; i++) release(&L, cur[i].s);
    for (int i = 0; i < L.n_next; i++) release(&L, L.next[i].s);
    drop_spares(&L);
    mem_free(cur);
    mem_free(L.next);
    mem_free(L.toks);
    mem_free(L.cands);
    mem_free(L.content);
    r->nodes = L.nodes;
    r->n_nodes = L.n_nodes;
    if (st != SIM_OK) loom_result_free(r);
    return st;
}

sim_status loom_expand_naive(sess *root, const loom_params *p, loom_result *r, sim_err *err) {
    if (!p) return err_set(err, SIM_ERR_ARG, "loom: no parameters");
    loom_params q = *p;
    q.naive = true;
    return loom_expand(root, &q, r, err);
}

void loom_result_free(loom_result *r) {
    if (!r) return;
    for (int i = 0; i < r->n_suggestions; i++) sug_free(&r->suggestions[i]);
    mem_free(r->suggestions);
    mem_free(r->nodes);
    memset(r, 0, sizeof *r);
}
