// sample.c — penalties, truncation, temperature and a seeded draw.
#include "infer/sample.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

struct smp_ctx {
    smp_params p;
    int n_vocab;
    smp_rng rng;
    smp_cand *cand;   // (n_vocab)
    int n_cand;
    bool sorted;      // cand[0..n_cand) sorted by logit, descending
    int32_t *hist;    // (repeat_last_n) ring of recent tokens
    int n_hist, hist_pos;
};

// --- rng -------------------------------------------------------------------------

static uint64_t splitmix64(uint64_t *x) {
    uint64_t z = (*x += 0x9E3779B97F4A7C15ull);
    z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
    z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
    return z ^ (z >> 31);
}

void smp_rng_seed(smp_rng *r, uint64_t seed) {
    for (int i = 0; i < 4; i++) r->s[i] = splitmix64(&seed);
}

static uint64_t rotl(uint64_t x, int k) { return (x << k) | (x >> (64 - k)); }

uint64_t smp_rng_next(smp_rng *r) {
    uint64_t *s = r->s;
    uint64_t result = rotl(s[1] * 5, 7) * 9, t = s[1] << 17;
    s[2] ^= s[0];
    s[3] ^= s[1];
    s[1] ^= s[2];
    s[0] ^= s[3];
    s[2] ^= t;
    s[3] = rotl(s[3], 45);
    return result;
}

double smp_rng_uniform(smp_rng *r) { return (double)(smp_rng_next(r) >> 11) * (1.0 / 9007199254740992.0); }

// --- setup -------------------------------------------------------------------------

smp_params smp_default_params(void) {
    return (smp_params){.temp = 0.8f, .top_k = 40, .top_p = 0.95f, .min_p = 0.05f,
                        .repeat_penalty = 1.0f, .repeat_last_n = 64, .seed = 0};
}

sim_status smp_new(smp_ctx **out, int n_vocab, const smp_params *p, sim_err *err) {
    *out = NULL;
    if (n_vocab < 1) return err_set(err, SIM_ERR_ARG, "empty vocabulary");
    if (!(p->temp >= 0) || p->top_k < 0 || !(p->top_p > 0 && p->top_p <= 1) || !(p->min_p >= 0 && p->min_p <= 1) ||
        !(p->repeat_penalty > 0) || p->repeat_last_n < 0)
        return err_set(err, SIM_ERR_ARG, "invalid sampling parameters (temp >= 0, top-k >= 0, 0 < top-p <= 1, 0 <= min-p <= 1, penalty > 0)");
    smp_ctx *s = mem_calloc(1, sizeof *s);
    if (!s) return err_set(err, SIM_ERR_NOMEM, "out of memory");
    s->p = *p;
    s->n_vocab = n_vocab;
    s->cand = mem_alloc((size_t)n_vocab * sizeof *s->cand);
    s->hist = mem_alloc((size_t)(p->repeat_last_n ? p->repeat_last_n : 1) * sizeof *s->hist);
    if (!s->cand || !s->hist) {
        smp_free(s);
        return err_set(err, SIM_ERR_NOMEM, "out of memory");
    }
    smp_rng_seed(&s->rng, p->seed);
    *out = s;
    return SIM_OK;
}

void smp_free(smp_ctx *s) {
    if (!s) return;
    mem_free(s->cand);
    mem_free(s->hist);
    mem_free(s);
}

void smp_reset(smp_ctx *s) {
    s->n_hist = 0;
    s->hist_pos = 0;
}

void smp_accept(smp_ctx *s, int32_t token) {
    if (s->p.repeat_last_n == 0) return;
    s->hist[s->hist_pos] = token;
    s->hist_pos = (s->hist_pos + 1) % s->p.repeat_last_n;
    if (s->n_hist < s->p.repeat_last_n) s->n_hist++;
}

int smp_last_candidates(const smp_ctx *s, const smp_cand **out) {
    *out = s->cand;
    return s->n_cand;
}

// --- steps -------------------------------------------------------------------------

static int cmp_desc(const void *a, const void *b) {
    float x = ((const smp_cand *)a)->logit, y = ((const smp_cand *)b)->logit;
    if (x != y) return x > y ? -1 : 1;
    int32_t i = ((const smp_cand *)a)->id, j = ((const smp_cand *)b)->id;
    return (i > j) - (i < j); // ties: lower id first, so the order is total
}

// Moves the k largest candidates to the front (unordered): quickselect.
static void select_top(smp_cand *c, int n, int k) {
    int lo = 0, hi = n - 1;
    while (lo < hi) {
        smp_cand pivot = c[(lo + hi) / 2];
        int i = lo, j = hi;
        while (i <= j) {
            while (cmp_desc(&c[i], &pivot) < 0) i++;
            while (cmp_desc(&c[j], &pivot) > 0) j--;
            if (i <= j) {
                smp_cand t = c[i];
                c[i] = c[j];
                c[j] = t;
                i++;
                j--;
            }
        }
        if (k - 1 <= j) hi = j;
        else if (k - 1 >= i) lo = i;
        else break;
    }
}

// Sorts the k best to the front (descending) and keeps them.
static void keep_top(smp_ctx *s, int k) {
    if (k < s->n_cand) {
        select_top(s->cand, s->n_cand, k);
        s->n_cand = k;
    }
    qsort(s->cand, (size_t)s->n_cand, sizeof *s->cand, cmp_desc);
    s->sorted = true;
}

// p = softmax(logit) over the current candidates.
static void softmax(smp_ctx *s) {
    float mx = -INFINITY;
    for (int i = 0; i < s->n_cand; i++) mx = MAX(mx, s->cand[i].logit);
    double sum = 0;
    for (int i = 0; i < s->n_cand; i++) {
        s->cand[i].p = expf(s->cand[i].logit - mx);
        sum += s->cand[i].p;
    }
    for (int i = 0; i < s->n_cand; i++) s->cand[i].p = (float)(s->cand[i].p / sum);
}

static void apply_penalty(smp_ctx *s) {
    float pen = s->p.repeat_penalty;
    if (pen == 1.0f || s->n_hist == 0) return;
    // Candidates are still indexed by id here (cand[i].id == i).
    for (int i = 0; i < s->n_hist; i++) {
        int32_t t = s->hist[i];
        if (t < 0 || t >= s->n_cand) continue;
        smp_cand *c = &s->cand[t];
        if (c->p != 0) continue; // already penalized (p marks it during this step)
        c->logit = c->logit > 0 ? c->logit / pen : c->logit * pen;
        c->p = 1;
    }
}

static void top_p(smp_ctx *s) {
    float p = s->p.top_p;
    if (p >= 1.0f) return;
    // Find the smallest prefix reaching p, sorting only as much as needed.
    for (int k = 256;; k *= 4) {
        bool all = k >= s->n_cand;
        if (!all || !s->sorted) {
            if (all) keep_top(s, s->n_cand);
            else {
                select_top(s->cand, s->n_cand, k);
                qsort(s->cand, (size_t)k, sizeof *s->cand, cmp_desc);
            }
        }
        // Probabilities over all candidates, with the max at cand[0].
        float mx = s->cand[0].logit;
        double total = 0;
        for (int i = 0; i < s->n_cand; i++) total += exp((double)s->cand[i].logit - mx);
        double cum = 0;
        int lim = all ? s->n_cand : k;
        for (int i = 0; i < lim; i++) {
            cum += exp((double)s->cand[i].logit - mx) / total;
            if (cum >= p) {
                s->n_cand = i + 1;
                s->sorted = true;
                return;
            }
        }
        if (all) return;
    }
}

static void min_p(smp_ctx *s) {
    float mp = s->p.min_p;
    if (mp <= 0) return;
    float mx = -INFINITY;
    for (int i = 0; i < s->n_cand; i++) mx = MAX(mx, s->cand[i].logit);
    float thresh = mx + logf(mp); // p_i >= mp * p_max  <=>  logit_i >= max + log(mp)
    int k = 0;
    for (int i = 0; i < s->n_cand; i++)
        if (s->cand[i].logit >= thresh) s->cand[k++] = s->cand[i];
    s->n_cand = k; // relative order (and sortedness) is kept
}

int32_t smp_sample(smp_ctx *s, const float *logits) {
    s->n_cand = s->n_vocab;
    s->sorted = false;
    for (int i = 0; i < s->n_vocab; i++) s->cand[i] = (smp_cand){.id = i, .logit = logits[i], .p = 0};
    apply_penalty(s);
    if (s->p.temp <= 0) {
        int best = 0;
        for (int i = 1; i < s->n_cand; i++)
            if (s->cand[i].logit > s->cand[best].logit) best = i;
        s->cand[0] = s->cand[best];
        s->cand[0].p = 1;
        s->n_cand = 1;
        return s->cand[0].id;
    }
    if (s->p.top_k > 0) keep_top(s, MIN(s->p.top_k, s->n_cand));
    top_p(s);
    min_p(s);
    for (int i = 0; i < s->n_cand; i++) s->cand[i].logit /= s->p.temp;
    softmax(s);
    double r = smp_rng_uniform(&s->rng), cum = 0;
    for (int i = 0; i < s->n_cand; i++) {
        cum += s->cand[i].p;
        if (r < cum) return s->cand[i].id;
    }
    return s->cand[s->n_cand - 1].id; // rounding left r above the last sum
}
