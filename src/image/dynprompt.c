// dynprompt.c — dynamic prompts (see dynprompt.h for the syntax and order).
#include "image/dynprompt.h"

#include <string.h>

#include "base/strbuf.h"

typedef struct dp_seq dp_seq;
typedef struct dp_group dp_group;

typedef struct dp_item {
    char *lit;        // a literal (escapes resolved), or NULL for a group
    size_t lit_len;
    dp_group *g;
} dp_item;

struct dp_seq {
    dp_item *items;   // (n)
    int n;
    uint64_t count;   // expansions of the whole sequence (saturated)
};

struct dp_group {
    dp_seq *alts;     // (n_alts)
    int n_alts;
    int kmin, kmax;   // kmax already clamped to n_alts
    uint64_t *suf;    // (n_alts + 1, kmax + 1): elementary symmetric sums of the
                      // alternatives' counts from j on, taken k at a time (pick groups)
    uint64_t count;
};

struct dp_prompt {
    dp_seq root;
    bool saturated;   // some count overflowed: only random sampling works
};

#define DP_MAX_PICK_TABLE (1 << 20)

static uint64_t sat_add(dp_prompt *p, uint64_t a, uint64_t b) {
    uint64_t r;
    if (__builtin_add_overflow(a, b, &r)) return p->saturated = true, UINT64_MAX;
    return r;
}
static uint64_t sat_mul(dp_prompt *p, uint64_t a, uint64_t b) {
    uint64_t r;
    if (__builtin_mul_overflow(a, b, &r)) return p->saturated = true, UINT64_MAX;
    return r;
}

// --- parsing ---------------------------------------------------------------------------

typedef struct parser {
    const char *s;
    size_t pos, len;
    dp_prompt *p;
    sim_err *err;
} parser;

static void seq_free(dp_seq *q);

static void group_free(dp_group *g) {
    if (!g) return;
    for (int i = 0; i < g->n_alts; i++) seq_free(&g->alts[i]);
    mem_free(g->alts);
    mem_free(g->suf);
    mem_free(g);
}

static void seq_free(dp_seq *q) {
    for (int i = 0; i < q->n; i++) mem_free(q->items[i].lit), group_free(q->items[i].g);
    mem_free(q->items);
    *q = (dp_seq){0};
}

static bool seq_push(dp_seq *q, dp_item it) {
    if ((q->n & (q->n - 1)) == 0) { // grow at powers of two
        dp_item *n = mem_realloc(q->items, (size_t)(q->n ? 2 * q->n : 1) * sizeof *n);
        if (!n) return false;
        q->items = n;
    }
    q->items[q->n++] = it;
    return true;
}

static void seq_count(dp_prompt *p, dp_seq *q) {
    q->count = 1;
    for (int i = 0; i < q->n; i++)
        if (q->items[i].g) q->count = sat_mul(p, q->count, q->items[i].g->count);
}

static sim_status parse_group(parser *ps, size_t open, int depth, dp_group **out);

// A sequence up to (not including) an unescaped '|' or '}' inside a group,
// or up to the end at the top level.
static sim_status parse_seq(parser *ps, dp_seq *q, int depth, bool in_group) {
    sbuf lit = {0};
    sim_status st = SIM_OK;
    for (;;) {
        char c = ps->pos < ps->len ? ps->s[ps->pos] : 0;
        bool end = ps->pos >= ps->len || (in_group && (c == '|' || c == '}')) || c == '{' || (!in_group && c == '}');
        if (end && lit.n) {
            char *s = sb_take(&lit);
            size_t n = s ? strlen(s) : 0;
            // literal NULs cannot occur: the text is a C string
            if (!s || !seq_push(q, (dp_item){.lit = s, .lit_len = n})) {
                mem_free(s);
                st = err_set(ps->err, SIM_ERR_NOMEM, "prompts: out of memory");
                break;
            }
        }
        if (ps->pos >= ps->len || (in_group && (c == '|' || c == '}'))) break;
        if (!in_group && c == '}') {
            st = err_set(ps->err, SIM_ERR_FORMAT, "prompts: unbalanced '}' at offset %zu (write \\} for a literal brace)", ps->pos);
            break;
        }
        if (c == '{') {
            dp_group *g;
            size_t open = ps->pos++;
            if ((st = parse_group(ps, open, depth + 1, &g)) != SIM_OK) break;
            if (!seq_push(q, (dp_item){.g = g})) {
                group_free(g);
                st = err_set(ps->err, SIM_ERR_NOMEM, "prompts: out of memory");
                break;
            }
            continue;
        }
        if (c == '\\' && ps->pos + 1 < ps->len && strchr("{}|\\", ps->s[ps->pos + 1])) {
            sb_put(&lit, ps->s + ps->pos + 1, 1);
            ps->pos += 2;
            continue;
        }
        sb_put(&lit, &c, 1);
        ps->pos++;
    }
    sb_free(&lit);
    return st;
}

// Reads "K$$" or "K-M$$" at ps->pos if present.
static bool parse_pick(parser *ps, int *kmin, int *kmax) {
    size_t i = ps->pos;
    long a = 0, b;
    int nd = 0;
    while (i < ps->len && ps->s[i] >= '0' && ps->s[i] <= '9' && nd < 6) a = a * 10 + (ps->s[i++] - '0'), nd++;
    if (!nd) return false;
    b = a;
    if (i < ps->len && ps->s[i] == '-') {
        i++, b = 0, nd = 0;
        while (i < ps->len && ps->s[i] >= '0' && ps->s[i] <= '9' && nd < 6) b = b * 10 + (ps->s[i++] - '0'), nd++;
        if (!nd) return false;
    }
    if (i + 1 >= ps->len || ps->s[i] != '$' || ps->s[i + 1] != '$') return false;
    ps->pos = i + 2;
    *kmin = (int)a, *kmax = (int)b;
    return true;
}

static sim_status parse_group(parser *ps, size_t open, int depth, dp_group **out) {
    *out = NULL;
    if (depth > DP_MAX_DEPTH)
        return err_set(ps->err, SIM_ERR_RANGE, "prompts: groups nested deeper than %d at offset %zu", DP_MAX_DEPTH, open);
    dp_group *g = mem_calloc(1, sizeof *g);
    if (!g) return err_set(ps->err, SIM_ERR_NOMEM, "prompts: out of memory");
    g->kmin = g->kmax = 1;
    bool pick = parse_pick(ps, &g->kmin, &g->kmax);
    sim_status st = SIM_OK;
    for (;;) {
        if ((g->n_alts & (g->n_alts - 1)) == 0) {
            dp_seq *n = mem_realloc(g->alts, (size_t)(g->n_alts ? 2 * g->n_alts : 1) * sizeof *n);
            if (!n) {
                st = err_set(ps->err, SIM_ERR_NOMEM, "prompts: out of memory");
                goto fail;
            }
            g->alts = n;
        }
        g->alts[g->n_alts] = (dp_seq){0};
        st = parse_seq(ps, &g->alts[g->n_alts], depth, true);
        g->n_alts++;
        if (st != SIM_OK) goto fail;
        seq_count(ps->p, &g->alts[g->n_alts - 1]);
        if (ps->pos >= ps->len) {
            st = err_set(ps->err, SIM_ERR_FORMAT, "prompts: '{' at offset %zu is never closed", open);
            goto fail;
        }
        if (ps->s[ps->pos++] == '}') break; // else '|': the next alternative
    }
    if (pick) {
        if (g->kmax < g->kmin) {
            st = err_set(ps->err, SIM_ERR_FORMAT, "prompts: group at offset %zu picks %d-%d: the range is reversed", open, g->kmin, g->kmax);
            goto fail;
        }
        if (g->kmin > g->n_alts) {
            st = err_set(ps->err, SIM_ERR_FORMAT, "prompts: group at offset %zu picks %d of %d alternatives", open, g->kmin, g->n_alts);
            goto fail;
        }
        g->kmax = MIN(g->kmax, g->n_alts);
        if (g->kmax > DP_MAX_PICK) {
            st = err_set(ps->err, SIM_ERR_RANGE, "prompts: group at offset %zu picks up to %d alternatives (at most %d)", open, g->kmax,
                         DP_MAX_PICK);
            goto fail;
        }
    }
    // counts: the alternatives' counts are known now
    if (g->kmin == 1 && g->kmax == 1) {
        for (int i = 0; i < g->n_alts; i++) g->count = sat_add(ps->p, g->count, g->alts[i].count);
    } else {
        size_t rows = (size_t)g->n_alts + 1, cols = (size_t)g->kmax + 1;
        if (rows * cols > DP_MAX_PICK_TABLE) {
            st = err_set(ps->err, SIM_ERR_RANGE, "prompts: group at offset %zu picks up to %d of %d alternatives: too large", open,
                         g->kmax, g->n_alts);
            goto fail;
        }
        g->suf = mem_calloc(rows * cols, sizeof *g->suf);
        if (!g->suf) {
            st = err_set(ps->err, SIM_ERR_NOMEM, "prompts: out of memory");
            goto fail;
        }
        // suf[j][k] = sum over k-subsets of alternatives j.. of the product of their counts
        for (size_t j = rows; j-- > 0;) {
            g->suf[j * cols] = 1;
            if (j == rows - 1) continue;
            for (size_t k = 1; k < cols; k++)
                g->suf[j * cols + k] = sat_add(ps->p, g->suf[(j + 1) * cols + k],
                                               sat_mul(ps->p, g->alts[j].count, g->suf[(j + 1) * cols + k - 1]));
        }
        for (int k = g->kmin; k <= g->kmax; k++) g->count = sat_add(ps->p, g->count, g->suf[k]);
    }
    *out = g;
    return SIM_OK;
fail:
    group_free(g);
    return st;
}

sim_status dp_parse(dp_prompt **out, const char *text, sim_err *err) {
    *out = NULL;
    size_t len = strlen(text);
    if (len > DP_MAX_TEXT) return err_set(err, SIM_ERR_RANGE, "prompts: text of %zu bytes (at most %d)", len, DP_MAX_TEXT);
    dp_prompt *p = mem_calloc(1, sizeof *p);
    if (!p) return err_set(err, SIM_ERR_NOMEM, "prompts: out of memory");
    parser ps = {.s = text, .len = len, .p = p, .err = err};
    sim_status st = parse_seq(&ps, &p->root, 0, false);
    if (st != SIM_OK) {
        dp_free(p);
        return st;
    }
    seq_count(p, &p->root);
    *out = p;
    return SIM_OK;
}

void dp_free(dp_prompt *p) {
    if (!p) return;
    seq_free(&p->root);
    mem_free(p);
}

uint64_t dp_count(const dp_prompt *p) { return p->saturated ? UINT64_MAX : p->root.count; }

// --- combinatorial expansion ---------------------------------------------------------------

static void expand_seq(const dp_seq *q, uint64_t i, sbuf *b);

static void expand_group(const dp_group *g, uint64_t i, sbuf *b) {
    if (!g->suf) { // one alternative: find the one whose range holds i
        for (int a = 0; a < g->n_alts; a++) {
            if (i < g->alts[a].count) {
                expand_seq(&g->alts[a], i, b);
                return;
            }
            i -= g->alts[a].count;
        }
        return;
    }
    // subset-major: find the k-subset (lexicographic) whose block holds i,
    // then split the rest over its alternatives, the leftmost slowest. The
    // block of "the next chosen one is j" holds P × count_j × suf[j+1][k-1]
    // expansions, P the product of the counts chosen so far.
    size_t cols = (size_t)g->kmax + 1;
    int k = g->kmin;
    for (; k < g->kmax && i >= g->suf[k]; k++) i -= g->suf[k];
    int chosen[DP_MAX_PICK], n_ch = 0;
    uint64_t prod = 1;
    for (int j = 0, left = k; left > 0 && j < g->n_alts; j++) {
        uint64_t pc = prod * g->alts[j].count, here = pc * g->suf[(size_t)(j + 1) * cols + left - 1];
        if (i >= here) {
            i -= here;
            continue;
        }
        chosen[n_ch++] = j, prod = pc, left--;
    }
    for (int t = 0; t < n_ch; t++) {
        const dp_seq *alt = &g->alts[chosen[t]];
        prod /= alt->count;
        if (t) sb_str(b, ", ");
        expand_seq(alt, i / prod, b);
        i %= prod;
    }
}

static void expand_seq(const dp_seq *q, uint64_t i, sbuf *b) {
    // mixed radix: the divisor of item t is the product of the counts after it
    uint64_t div = q->count;
    for (int t = 0; t < q->n; t++) {
        const dp_item *it = &q->items[t];
        if (!it->g) {
            sb_put(b, it->lit, it->lit_len);
            continue;
        }
        div /= it->g->count;
        expand_group(it->g, i / div, b);
        i %= div;
    }
}

sim_status dp_expand_nth(const dp_prompt *p, uint64_t i, char **out, sim_err *err) {
    *out = NULL;
    if (p->saturated) return err_set(err, SIM_ERR_RANGE, "prompts: more than 2^64 expansions: only random sampling works");
    if (i >= p->root.count)
        return err_set(err, SIM_ERR_RANGE, "prompts: expansion %llu of %llu", (unsigned long long)i, (unsigned long long)p->root.count);
    sbuf b = {0};
    expand_seq(&p->root, i, &b);
    if (!(*out = sb_take(&b))) return err_set(err, SIM_ERR_NOMEM, "prompts: out of memory");
    return SIM_OK;
}

// --- random sampling ---------------------------------------------------------------------

static uint64_t splitmix64(uint64_t *s) {
    uint64_t z = (*s += 0x9e3779b97f4a7c15ull);
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
    return z ^ (z >> 31);
}

static void sample_seq(const dp_seq *q, uint64_t *s, sbuf *b);

static void sample_group(const dp_group *g, uint64_t *s, sbuf *b) {
    if (!g->suf) { // one of n: one draw
        sample_seq(&g->alts[splitmix64(s) % (uint64_t)g->n_alts], s, b);
        return;
    }
    int k = g->kmin + (int)(splitmix64(s) % (uint64_t)(g->kmax - g->kmin + 1));
    // selection sampling (Knuth's algorithm S): k of n in written order
    int chosen = 0;
    for (int j = 0; j < g->n_alts && chosen < k; j++) {
        if (splitmix64(s) % (uint64_t)(g->n_alts - j) >= (uint64_t)(k - chosen)) continue;
        if (chosen++) sb_str(b, ", ");
        sample_seq(&g->alts[j], s, b);
    }
}

static void sample_seq(const dp_seq *q, uint64_t *s, sbuf *b) {
    for (int t = 0; t < q->n; t++) {
        if (q->items[t].g) sample_group(q->items[t].g, s, b);
        else sb_put(b, q->items[t].lit, q->items[t].lit_len);
    }
}

sim_status dp_sample(const dp_prompt *p, uint64_t *state, char **out, sim_err *err) {
    sbuf b = {0};
    sample_seq(&p->root, state, &b);
    if (!(*out = sb_take(&b))) return err_set(err, SIM_ERR_NOMEM, "prompts: out of memory");
    return SIM_OK;
}

// --- lists ---------------------------------------------------------------------------------

void dp_list_free(char **list, size_t n) {
    if (!list) return;
    for (size_t i = 0; i < n; i++) mem_free(list[i]);
    mem_free(list);
}

sim_status dp_expand_all(const char *text, uint64_t max, char ***out, size_t *n, sim_err *err) {
    *out = NULL, *n = 0;
    if (max > DP_MAX_EXPANSIONS) max = DP_MAX_EXPANSIONS;
    dp_prompt *p;
    sim_status st = dp_parse(&p, text, err);
    if (st != SIM_OK) return st;
    uint64_t c = dp_count(p);
    if (c > max) {
        dp_free(p);
        if (c == UINT64_MAX) return err_set(err, SIM_ERR_RANGE, "prompts: more than 2^64 expansions (at most %llu; use random sampling)", (unsigned long long)max);
        return err_set(err, SIM_ERR_RANGE, "prompts: %llu expansions (at most %llu; use random sampling)", (unsigned long long)c,
                       (unsigned long long)max);
    }
    char **list = mem_calloc((size_t)c, sizeof *list);
    if (!list) {
        dp_free(p);
        return err_set(err, SIM_ERR_NOMEM, "prompts: out of memory");
    }
    for (uint64_t i = 0; i < c; i++)
        if ((st = dp_expand_nth(p, i, &list[i], err)) != SIM_OK) {
            dp_list_free(list, (size_t)c);
            dp_free(p);
            return st;
        }
    dp_free(p);
    *out = list, *n = (size_t)c;
    return SIM_OK;
}

sim_status dp_expand_random(const char *text, size_t n, uint64_t seed, char ***out, sim_err *err) {
    *out = NULL;
    if (n > DP_MAX_EXPANSIONS) return err_set(err, SIM_ERR_RANGE, "prompts: %zu random samples (at most %d)", n, DP_MAX_EXPANSIONS);
    dp_prompt *p;
    sim_status st = dp_parse(&p, text, err);
    if (st != SIM_OK) return st;
    char **list = mem_calloc(n ? n : 1, sizeof *list);
    if (!list) {
        dp_free(p);
        return err_set(err, SIM_ERR_NOMEM, "prompts: out of memory");
    }
    uint64_t s = seed;
    for (size_t i = 0; i < n; i++)
        if ((st = dp_sample(p, &s, &list[i], err)) != SIM_OK) {
            dp_list_free(list, n);
            dp_free(p);
            return st;
        }
    dp_free(p);
    *out = list;
    return SIM_OK;
}
