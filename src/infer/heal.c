// heal.c — rollback choice over a sorted index of token texts, and the
// prefix constraint.
#include "infer/heal.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

struct heal_index {
    const tok_vocab *v;
    int32_t *sorted; // ids of normal/user/byte tokens with non-empty text, by text bytes
    int n;
};

static int cmp_text(const void *ctx, int32_t a, int32_t b) {
    const tok_vocab *v = ctx;
    size_t la, lb;
    const char *ta = tok_token_text(v, a, false, &la), *tb = tok_token_text(v, b, false, &lb);
    int c = memcmp(ta, tb, MIN(la, lb));
    return c ? c : (la > lb) - (la < lb);
}

static bool healable(const tok_vocab *v, int32_t id) {
    unsigned a = tok_token_attr(v, id);
    return !(a & (TOK_ATTR_CONTROL | TOK_ATTR_UNKNOWN | TOK_ATTR_UNUSED));
}

sim_status heal_index_new(heal_index **out, const tok_vocab *v, sim_err *err) {
    *out = NULL;
    heal_index *ix = mem_calloc(1, sizeof *ix);
    int nv = tok_n_vocab(v);
    int32_t *tmp = mem_alloc((size_t)nv * sizeof *tmp);
    if (ix) ix->sorted = mem_alloc((size_t)nv * sizeof *ix->sorted);
    if (!ix || !ix->sorted || !tmp) {
        mem_free(tmp);
        heal_index_free(ix);
        return err_set(err, SIM_ERR_NOMEM, "out of memory for the token-healing index");
    }
    ix->v = v;
    for (int32_t id = 0; id < nv; id++) {
        size_t len;
        tok_token_text(v, id, false, &len);
        if (len > 0 && healable(v, id)) ix->sorted[ix->n++] = id;
    }
    sort_i32(ix->sorted, tmp, ix->n, cmp_text, v);
    mem_free(tmp);
    *out = ix;
    return SIM_OK;
}

void heal_index_free(heal_index *ix) {
    if (!ix) return;
    mem_free(ix->sorted);
    mem_free(ix);
}

bool heal_parse_mode(const char *name, heal_mode *out) {
    static const char *names[] = {"off", "last", "dynamic"};
    for (int i = 0; i < 3; i++)
        if (strcmp(name, names[i]) == 0) {
            *out = (heal_mode)i;
            return true;
        }
    return false;
}

// Whether some token's text starts with s[0..n) (and is longer or equal).
static bool some_token_starts_with(const heal_index *ix, const char *s, size_t n) {
    int lo = 0, hi = ix->n; // first text >= s
    while (lo < hi) {
        int mid = (lo + hi) / 2;
        size_t len;
        const char *t = tok_token_text(ix->v, ix->sorted[mid], false, &len);
        int c = memcmp(t, s, MIN(len, n));
        if (c < 0 || (c == 0 && len < n)) lo = mid + 1;
        else hi = mid;
    }
    if (lo == ix->n) return false;
    size_t len;
    const char *t = tok_token_text(ix->v, ix->sorted[lo], false, &len);
    return len >= n && memcmp(t, s, n) == 0;
}

int heal_rollback(const heal_index *ix, const int32_t *toks, int n, heal_mode mode, heal_state *st) {
    memset(st, 0, sizeof *st);
    if (mode == HEAL_OFF || n < 2) return n;
    char text[HEAL_MAX_BYTES];
    int best = 0, best_len = 0;
    size_t len = 0;
    int max_k = mode == HEAL_LAST ? 1 : n - 1;
    for (int k = 1; k <= max_k; k++) {
        int32_t id = toks[n - k];
        if (!healable(ix->v, id)) break;
        size_t tl;
        const char *t = tok_token_text(ix->v, id, false, &tl);
        if (tl == 0 || len + tl > sizeof text) break;
        memmove(text + tl, text, len); // prepend
        memcpy(text, t, tl);
        len += tl;
        // Rolling back only pays when some piece can stand for the whole text.
        if (!some_token_starts_with(ix, text, len)) break;
        best = k;
        best_len = (int)len;
    }
    if (best == 0) return n;
    // Pieces were prepended: the chosen text is the last best_len bytes.
    memcpy(st->removed, text + len - (size_t)best_len, (size_t)best_len);
    st->removed_len = best_len;
    return n - best;
}

void heal_filter(const heal_index *ix, const heal_state *st, smp_cand *cands, int n) {
    if (!heal_active(st)) return;
    const char *want = st->removed + st->matched;
    size_t wn = (size_t)(st->removed_len - st->matched);
    for (int i = 0; i < n; i++) {
        size_t len;
        const char *t = tok_token_text(ix->v, cands[i].id, false, &len);
        // Allowed: text that starts with what is left, or a non-empty prefix of it.
        bool ok = len > 0 && healable(ix->v, cands[i].id) && memcmp(t, want, MIN(len, wn)) == 0;
        if (!ok) cands[i].logit = -INFINITY;
    }
}

void heal_accept(const heal_index *ix, heal_state *st, int32_t tok) {
    if (!heal_active(st)) return;
    size_t len;
    tok_token_text(ix->v, tok, false, &len);
    st->matched = (int)MIN((size_t)st->removed_len, (size_t)st->matched + len);
}
