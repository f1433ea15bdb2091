// test_sample.c — each sampling step's defining behaviour, with
// hand-derived distributions; the fast dense paths against brute force on a
// large vocabulary; order, seeds, n_probs, constraint, parameter checks,
// allocation failures and no allocation per token.
#include <string.h>

#include "infer/sample.h"
#include "model/gguf.h"
#include "model/tok.h"
#include "test.h"

static smp_ctx *make(int n_vocab, smp_params p) {
    smp_ctx *s = NULL;
    sim_err err;
    sim_status st = smp_new(&s, n_vocab, &p, &err);
    CHECK_MSG(st == SIM_OK, "%s", err.msg);
    return s;
}

// Every step off except temperature 1: the draw is softmax(logits).
static smp_params plain(void) {
    smp_params p = smp_default_params();
    p.temp = 1.0f;
    p.top_k = 0;
    p.top_p = 1.0f;
    p.min_p = 0.0f;
    p.seed = 1;
    return p;
}

static void set_order(smp_params *p, const char *text) {
    sim_err err;
    CHECK_MSG(smp_parse_order(p, text, &err) == SIM_OK, "%s", err.msg);
}

// The final logit of token id after the last sample (NAN when not a candidate).
static float final_logit(smp_ctx *s, int32_t id) {
    const smp_cand *c;
    int n = smp_last_candidates(s, &c);
    for (int i = 0; i < n; i++)
        if (c[i].id == id) return c[i].logit;
    return NAN;
}

static float final_p(smp_ctx *s, int32_t id) {
    const smp_cand *c;
    int n = smp_last_candidates(s, &c);
    for (int i = 0; i < n; i++)
        if (c[i].id == id) return c[i].p;
    return 0;
}

static int n_final(smp_ctx *s) {
    const smp_cand *c;
    return smp_last_candidates(s, &c);
}

static void accept_all(smp_ctx *s, const int32_t *ids, int n) {
    for (int i = 0; i < n; i++) smp_accept(s, ids[i]);
}

// --- basics (temperature, greedy, seeds) ----------------------------------------------

static void test_greedy(void) {
    float l[5] = {0.1f, 3.0f, -2.0f, 2.999f, 1.0f};
    smp_params p = plain();
    p.temp = 0;
    smp_ctx *s = make(5, p);
    for (int i = 0; i < 10; i++) CHECK_EQ_INT(smp_sample(s, l), 1);
    CHECK_EQ_INT(n_final(s), 1);
    smp_free(s);
    // Greedy is the temperature step: with the default chain too, and ties go to the lower id.
    float t[4] = {1, 7, 7, 0};
    p = smp_default_params();
    p.temp = 0;
    s = make(4, p);
    CHECK_EQ_INT(smp_sample(s, t), 1);
    smp_free(s);
}

// Frequencies of 40000 draws match softmax(logits / temp) computed by hand.
static void test_distribution_and_temperature(void) {
    float l[3] = {logf(0.5f), logf(0.3f), logf(0.2f)};
    for (int ti = 0; ti < 2; ti++) {
        smp_params p = plain();
        p.temp = ti ? 0.5f : 1.0f;
        smp_ctx *s = make(3, p);
        int count[3] = {0};
        for (int i = 0; i < 40000; i++) count[smp_sample(s, l)]++;
        // temp 0.5 squares the probabilities: 0.25, 0.09, 0.04 over 0.38
        double want[2][3] = {{0.5, 0.3, 0.2}, {0.25 / 0.38, 0.09 / 0.38, 0.04 / 0.38}};
        for (int k = 0; k < 3; k++) CHECK_NEAR(count[k] / 40000.0, want[ti][k], 0.01);
        for (int k = 0; k < 3; k++) CHECK_NEAR(final_p(s, k), want[ti][k], 1e-5);
        smp_free(s);
    }
}

static void test_seed_reproducible(void) {
    float l[50];
    for (int i = 0; i < 50; i++) l[i] = (float)(i % 7) * 0.3f;
    smp_params p = plain();
    p.seed = 42;
    smp_ctx *a = make(50, p), *b = make(50, p);
    p.seed = 43;
    smp_ctx *c = make(50, p);
    int diff = 0;
    for (int i = 0; i < 200; i++) {
        int x = smp_sample(a, l), y = smp_sample(b, l), z = smp_sample(c, l);
        CHECK_EQ_INT(x, y);
        diff += x != z;
    }
    CHECK(diff > 50);
    smp_free(a);
    smp_free(b);
    smp_free(c);
}

// Pseudo-logits that depend on the step and the previous token, as a model's
// would: a feedback loop, so one different draw changes everything after it.
static void fake_logits(float *l, int n, int step, int32_t prev) {
    smp_rng r;
    smp_rng_seed(&r, (uint64_t)step * 1000003u + (uint64_t)(prev + 1));
    for (int i = 0; i < n; i++) l[i] = (float)(smp_rng_uniform(&r) * 6.0 - 3.0);
    l[(prev + 1) % n] += 4; // a favourite, so penalties and DRY have loops to break
}

static void run_chain(smp_ctx *s, int32_t *out, int n_steps, int n_vocab) {
    float *l = malloc(sizeof(float) * (size_t)n_vocab);
    int32_t prev = 0;
    for (int i = 0; i < n_steps; i++) {
        fake_logits(l, n_vocab, i, prev);
        prev = out[i] = smp_sample(s, l);
        smp_accept(s, prev);
    }
    free(l);
}

// Every stochastic step on: the same seed gives the same tokens, another seed
// others, and smp_reset replays the first run.
static void test_seed_full_chain(void) {
    enum { N = 3000, STEPS = 300 };
    smp_params p = smp_default_params();
    p.top_k = 200;
    p.top_p = 0.97f;
    p.min_p = 0.01f;
    p.typical_p = 0.98f;
    p.top_n_sigma = 3.0f;
    p.xtc_probability = 0.5f;
    p.xtc_threshold = 0.05f;
    p.dynatemp_range = 0.3f;
    p.repeat_penalty = 1.1f;
    p.frequency_penalty = 0.05f;
    p.presence_penalty = 0.05f;
    p.dry_multiplier = 0.8f;
    p.n_dry_breakers = 0;
    for (int mir = 0; mir <= 2; mir++) {
        p.mirostat = mir;
        p.seed = 7;
        smp_ctx *a = make(N, p), *b = make(N, p);
        p.seed = 8;
        smp_ctx *c = make(N, p);
        int32_t ta[STEPS], tb[STEPS], tc[STEPS], tr[STEPS];
        run_chain(a, ta, STEPS, N);
        run_chain(b, tb, STEPS, N);
        run_chain(c, tc, STEPS, N);
        smp_reset(a);
        run_chain(a, tr, STEPS, N);
        int same = 0, diff = 0;
        for (int i = 0; i < STEPS; i++) {
            same += ta[i] == tb[i] && ta[i] == tr[i];
            diff += ta[i] != tc[i];
        }
        CHECK_MSG(same == STEPS, "mirostat %d: %d of %d tokens reproduced", mir, same, STEPS);
        CHECK_MSG(diff > STEPS / 2, "mirostat %d: only %d tokens differ with another seed", mir, diff);
        smp_free(a);
        smp_free(b);
        smp_free(c);
    }
}

// --- truncation ---------------------------------------------------------------------------

static void test_top_k(void) {
    float l[6] = {1, 5, 2, 4, 3, 0};
    smp_params p = plain();
    p.top_k = 3;
    smp_ctx *s = make(6, p);
    for (int i = 0; i < 300; i++) {
        int t = smp_sample(s, l);
        CHECK(t == 1 || t == 3 || t == 4);
    }
    const smp_cand *c;
    CHECK_EQ_INT(smp_last_candidates(s, &c), 3);
    CHECK(c[0].id == 1 && c[1].id == 3 && c[2].id == 4);
    smp_free(s);
    p.top_k = 1;
    p.temp = 5.0f;
    s = make(6, p);
    for (int i = 0; i < 50; i++) CHECK_EQ_INT(smp_sample(s, l), 1);
    smp_free(s);
}

static void test_top_p(void) {
    // p = 0.5, 0.3, 0.15, 0.05: top-p 0.75 keeps {0.5, 0.3};
    // 0.79 too; 0.81 keeps three.
    float l[4] = {logf(0.15f), logf(0.5f), logf(0.05f), logf(0.3f)};
    float ps[3] = {0.75f, 0.79f, 0.81f};
    int want[3] = {2, 2, 3};
    for (int i = 0; i < 3; i++) {
        smp_params p = plain();
        p.top_p = ps[i];
        smp_ctx *s = make(4, p);
        smp_sample(s, l);
        const smp_cand *c;
        int n = smp_last_candidates(s, &c);
        CHECK_MSG(n == want[i], "top-p %.2f kept %d", ps[i], n);
        CHECK(c[0].id == 1 && c[1].id == 3);
        smp_free(s);
    }
    // min_keep: top-p 0.4 alone keeps one; min_keep 3 keeps three.
    smp_params p = plain();
    p.top_p = 0.4f;
    p.min_keep = 3;
    smp_ctx *s = make(4, p);
    smp_sample(s, l);
    CHECK_EQ_INT(n_final(s), 3);
    smp_free(s);
    // A large vocabulary (the unsorted, mass-guided selection): the kept set
    // equals a brute-force sorted prefix.
    int n = 5000;
    float *big = malloc(sizeof(float) * (size_t)n);
    smp_rng r;
    smp_rng_seed(&r, 9);
    for (int i = 0; i < n; i++) big[i] = (float)(smp_rng_uniform(&r) * 8.0);
    p = plain();
    p.top_p = 0.9f;
    s = make(n, p);
    smp_sample(s, big);
    const smp_cand *c;
    int kept = smp_last_candidates(s, &c);
    // brute force
    double mx = 0, total = 0;
    for (int i = 0; i < n; i++) mx = MAX(mx, big[i]);
    for (int i = 0; i < n; i++) total += exp(big[i] - mx);
    int *order = malloc(sizeof(int) * (size_t)n);
    for (int i = 0; i < n; i++) order[i] = i;
    for (int i = 0; i < n; i++) // selection sort of the first part only
        for (int j = i + 1; j < n && i < kept + 1; j++)
            if (big[order[j]] > big[order[i]]) {
                int t = order[i];
                order[i] = order[j];
                order[j] = t;
            }
    double cum = 0;
    int want_n = 0;
    while (cum < 0.9) cum += exp(big[order[want_n++]] - mx) / total;
    CHECK_EQ_INT(kept, want_n);
    for (int i = 0; i < MIN(kept, want_n); i++) CHECK_EQ_INT(c[i].id, order[i]);
    free(order);
    free(big);
    smp_free(s);
}

static void test_min_p(void) {
    // p = 0.5, 0.3, 0.15, 0.05; min-p 0.2 keeps p >= 0.1: three tokens.
    float l[4] = {logf(0.5f), logf(0.3f), logf(0.15f), logf(0.05f)};
    smp_params p = plain();
    p.min_p = 0.2f;
    smp_ctx *s = make(4, p);
    for (int i = 0; i < 500; i++) CHECK(smp_sample(s, l) != 3);
    const smp_cand *c;
    CHECK_EQ_INT(smp_last_candidates(s, &c), 3);
    smp_free(s);
    // min-p 0.7 keeps p >= 0.35: one; with min_keep 2, two.
    p.min_p = 0.7f;
    s = make(4, p);
    smp_sample(s, l);
    CHECK_EQ_INT(n_final(s), 1);
    smp_free(s);
    p.min_keep = 2;
    s = make(4, p);
    smp_sample(s, l);
    CHECK_EQ_INT(n_final(s), 2);
    CHECK_NEAR(final_p(s, 1), 0.3 / 0.8, 1e-5);
    smp_free(s);
}

// Typical: p = 1/2, 1/4, 1/8, 1/8 has entropy 1.75 bits; the information
// -log2 p is 1, 2, 3, 3 bits, so the closest token to the entropy is the
// second most likely (|2 - 1.75| = 0.25), then the first (0.75), then the
// two tails (1.25). Kept: the fewest in that order whose mass exceeds p.
static void test_typical(void) {
    float l[4] = {logf(0.5f), logf(0.25f), logf(0.125f), logf(0.125f)};
    struct {
        float typ;
        int min_keep, n;
        int ids[3];
    } cases[] = {
        {0.2f, 0, 1, {1}},        // 0.25 > 0.2: only the second most likely
        {0.5f, 0, 2, {0, 1}},     // 0.25, then 0.75 > 0.5
        {0.8f, 0, 3, {0, 1, 2}},  // 0.875 > 0.8 (ties: lower id)
        {0.2f, 2, 2, {0, 1}},     // min_keep
    };
    for (size_t k = 0; k < ARRAY_LEN(cases); k++) {
        smp_params p = plain();
        p.typical_p = cases[k].typ;
        p.min_keep = cases[k].min_keep;
        smp_ctx *s = make(4, p);
        for (int i = 0; i < 200; i++) {
            int t = smp_sample(s, l);
            CHECK_MSG(t == cases[k].ids[0] || t == cases[k].ids[1 % cases[k].n] || t == cases[k].ids[2 % cases[k].n],
                      "typical %g drew %d", (double)cases[k].typ, t);
        }
        const smp_cand *c;
        int n = smp_last_candidates(s, &c);
        CHECK_MSG(n == cases[k].n, "typical %g kept %d", (double)cases[k].typ, n);
        for (int i = 0; i < MIN(n, cases[k].n); i++) CHECK_EQ_INT(c[i].id, cases[k].ids[i]);
        smp_free(s);
    }
    // typical 0.2 never draws the most likely token.
    smp_params p = plain();
    p.typical_p = 0.2f;
    smp_ctx *s = make(4, p);
    for (int i = 0; i < 100; i++) CHECK_EQ_INT(smp_sample(s, l), 1);
    smp_free(s);
}

// Typical on a large set (the selection path): every kept token is at least
// as close to the entropy as every dropped one, and the kept mass is the
// smallest exceeding p.
static void test_typical_large(void) {
    int n = 3000;
    float *l = malloc(sizeof(float) * (size_t)n);
    double *pr = malloc(sizeof(double) * (size_t)n), *dist = malloc(sizeof(double) * (size_t)n);
    bool *kept = calloc((size_t)n, 1);
    smp_rng r;
    smp_rng_seed(&r, 5);
    for (int i = 0; i < n; i++) l[i] = (float)(smp_rng_uniform(&r) * 10.0);
    double mx = 0, total = 0, h = 0;
    for (int i = 0; i < n; i++) mx = MAX(mx, l[i]);
    for (int i = 0; i < n; i++) total += exp(l[i] - mx);
    for (int i = 0; i < n; i++) pr[i] = exp(l[i] - mx) / total, h -= pr[i] * log(pr[i]);
    for (int i = 0; i < n; i++) dist[i] = fabs(-log(pr[i]) - h);
    smp_params p = plain();
    p.typical_p = 0.6f;
    smp_ctx *s = make(n, p);
    smp_sample(s, l);
    const smp_cand *c;
    int m = smp_last_candidates(s, &c);
    double mass = 0, far = 0;
    for (int i = 0; i < m; i++) kept[c[i].id] = true, mass += pr[c[i].id], far = MAX(far, dist[c[i].id]);
    int bad = 0;
    for (int i = 0; i < n; i++)
        if (!kept[i] && dist[i] < far - 1e-4) bad++;
    CHECK_MSG(bad == 0, "%d dropped tokens are closer to the entropy than a kept one", bad);
    CHECK_MSG(mass > 0.6 - 1e-4, "kept mass %g", mass);
    // Without the farthest kept token the mass would not exceed p.
    double near = 0;
    for (int i = 0; i < m; i++)
        if (dist[c[i].id] < far - 1e-9) near += pr[c[i].id];
    CHECK_MSG(near <= 0.6 + 1e-4, "a smaller set reaches p: %g", near);
    smp_free(s);
    free(l);
    free(pr);
    free(dist);
    free(kept);
}

// Top-n-sigma on logits 10, 9, 8 and five zeros: mean 3.375, variance
// 153.875 / 8 = 19.234375, sigma 4.3857. n = 1 keeps logits >= 5.614 (three);
// n = 0.3 keeps >= 8.684 (two). -inf and NaN entries do not count.
static void test_top_n_sigma(void) {
    float l[10] = {10, 9, 8, 0, 0, 0, 0, 0, -INFINITY, NAN};
    struct {
        float n, temp;
        const char *order;
        int want;
    } cases[] = {
        {1.0f, 1.0f, NULL, 3},
        {0.3f, 1.0f, NULL, 2},
        {1.0f, 5.0f, NULL, 3},               // before temperature: heat does not widen it
        {1.0f, 1.0f, "min_p;top_n_sigma", 3}, // on candidates (min-p 1e-9 keeps all eight)
        {0.3f, 1.0f, "min_p;top_n_sigma", 2},
    };
    for (size_t k = 0; k < ARRAY_LEN(cases); k++) {
        smp_params p = plain();
        p.top_n_sigma = cases[k].n;
        p.temp = cases[k].temp;
        if (cases[k].order) {
            set_order(&p, cases[k].order);
            p.min_p = 1e-9f;
        }
        smp_ctx *s = make(10, p);
        for (int i = 0; i < 100; i++) CHECK(smp_sample(s, l) < cases[k].want);
        CHECK_MSG(n_final(s) == cases[k].want, "case %zu kept %d", k, n_final(s));
        smp_free(s);
    }
}

// XTC on p = 0.4, 0.3, 0.2, 0.1: with threshold 0.15 the three above it go
// but the least likely of them stays: {0.2, 0.1} → 2/3, 1/3.
static void test_xtc(void) {
    float l[4] = {logf(0.4f), logf(0.3f), logf(0.2f), logf(0.1f)};
    smp_params p = plain();
    p.xtc_probability = 1.0f;
    p.xtc_threshold = 0.15f;
    smp_ctx *s = make(4, p);
    for (int i = 0; i < 100; i++) CHECK(smp_sample(s, l) >= 2);
    CHECK_EQ_INT(n_final(s), 2);
    CHECK_NEAR(final_p(s, 2), 2.0 / 3, 1e-5);
    CHECK_NEAR(final_p(s, 3), 1.0 / 3, 1e-5);
    smp_free(s);
    struct {
        float thr;
        int min_keep, want;
    } cases[] = {
        {0.25f, 0, 3}, // {0.4, 0.3} above: only 0.4 goes
        {0.35f, 0, 4}, // one above: nothing to exclude
        {0.15f, 3, 4}, // two would remain, fewer than min_keep
        {0.6f, 0, 4},  // > 0.5: off
    };
    for (size_t k = 0; k < ARRAY_LEN(cases); k++) {
        p.xtc_threshold = cases[k].thr;
        p.min_keep = cases[k].min_keep;
        s = make(4, p);
        smp_sample(s, l);
        CHECK_MSG(n_final(s) == cases[k].want, "threshold %g kept %d", (double)cases[k].thr, n_final(s));
        smp_free(s);
    }
    // It acts on a fraction xtc_probability of the draws.
    p = plain();
    p.xtc_probability = 0.3f;
    p.xtc_threshold = 0.15f;
    s = make(4, p);
    int acted = 0;
    for (int i = 0; i < 5000; i++) {
        smp_sample(s, l);
        acted += n_final(s) == 2;
    }
    CHECK_NEAR(acted / 5000.0, 0.3, 0.025);
    smp_free(s);
}

// --- temperature ---------------------------------------------------------------------------

// Dynamic temperature by hand: t = lo + (hi - lo) * (H / log n)^exponent, and
// the final distribution is softmax(logits / t).
static double dyn_want_p0(const float *l, int n, double temp, double range, double ex) {
    double mx = l[0], sum = 0, h = 0, p[8];
    for (int i = 0; i < n; i++) mx = MAX(mx, l[i]);
    for (int i = 0; i < n; i++) sum += exp(l[i] - mx);
    for (int i = 0; i < n; i++) p[i] = exp(l[i] - mx) / sum, h -= p[i] * log(p[i]);
    double lo = MAX(0.0, temp - range), hi = temp + range;
    double t = lo + (hi - lo) * pow(h / log((double)n), ex);
    double z = 0;
    for (int i = 0; i < n; i++) z += exp((l[i] - mx) / t);
    return exp((l[0] - mx) / t) / z;
}

static void test_dynatemp(void) {
    // Unsure: logits 2, 1, 0 have normalized entropy 0.758 → t = 0.5 + 0.758 = 1.258.
    // Confident: 8, 0, 0 → entropy 0.0067 nats, t close to 0.5: sharper.
    float unsure[3] = {2, 1, 0}, confident[3] = {8, 0, 0};
    const float *rows[2] = {unsure, confident};
    double ex[2] = {1.0, 2.0};
    for (int r = 0; r < 2; r++)
        for (int e = 0; e < 2; e++) {
            smp_params p = plain();
            p.dynatemp_range = 0.5f;
            p.dynatemp_exponent = (float)ex[e];
            smp_ctx *s = make(3, p);
            smp_sample(s, rows[r]);
            double want = dyn_want_p0(rows[r], 3, 1.0, 0.5, ex[e]);
            CHECK_NEAR(final_p(s, 0), want, 1e-5);
            smp_free(s);
        }
    // The defining property: the unsure row is heated (p0 below plain
    // softmax's 0.665), the confident one cooled (p0 above 0.99933).
    CHECK(dyn_want_p0(unsure, 3, 1.0, 0.5, 1.0) < 0.66);
    CHECK(dyn_want_p0(confident, 3, 1.0, 0.5, 1.0) > 0.9999);
    // By hand: H = 0.8324 nats, / log 3 = 0.7577, t = 1.2577, logits / t =
    // 1.5902, 0.7951, 0 → p0 = 4.9047 / (4.9047 + 2.2148 + 1) = 0.6041.
    CHECK_NEAR(dyn_want_p0(unsure, 3, 1.0, 0.5, 1.0), 0.6041, 1e-3);
}

// --- penalties ------------------------------------------------------------------------------

static void test_repeat_penalty(void) {
    // Positive logits are divided by the penalty, negative ones multiplied.
    float l[3] = {2.0f, 1.5f, -1.0f};
    smp_params p = plain();
    p.temp = 0;
    p.repeat_penalty = 1.5f;
    p.repeat_last_n = 2;
    smp_ctx *s = make(3, p);
    CHECK_EQ_INT(smp_sample(s, l), 0);
    smp_accept(s, 0); // 2.0 / 1.5 = 1.33 < 1.5
    CHECK_EQ_INT(smp_sample(s, l), 1);
    smp_accept(s, 1); // now both penalized: 1.33 vs 1.0
    CHECK_EQ_INT(smp_sample(s, l), 0);
    smp_accept(s, 2); // the window of 2 forgets token 0
    smp_accept(s, 2);
    CHECK_EQ_INT(smp_sample(s, l), 0);
    smp_free(s);
    // -1 * 1.5 = -1.5 < -1.2
    float m[2] = {-1.0f, -1.2f};
    s = make(2, p);
    smp_accept(s, 0);
    CHECK_EQ_INT(smp_sample(s, m), 1);
    smp_free(s);
}

// Frequency and presence: logit -= count * f + (count > 0) * p over the window.
static void test_frequency_presence(void) {
    float l[4] = {1, 1, 1, 1};
    const char *orders[2] = {NULL, "min_p;penalties"}; // dense row, then candidates
    for (int o = 0; o < 2; o++) {
        smp_params p = plain();
        p.frequency_penalty = 0.5f;
        p.presence_penalty = 0.25f;
        p.repeat_last_n = 3;
        if (orders[o]) {
            set_order(&p, orders[o]);
            p.min_p = 1e-9f;
        }
        smp_ctx *s = make(4, p);
        int32_t h[3] = {0, 0, 1};
        accept_all(s, h, 3);
        smp_sample(s, l);
        CHECK_NEAR(final_logit(s, 0), 1 - 2 * 0.5 - 0.25, 1e-6); // -0.25
        CHECK_NEAR(final_logit(s, 1), 1 - 1 * 0.5 - 0.25, 1e-6); // 0.25
        CHECK_NEAR(final_logit(s, 2), 1, 1e-6);
        CHECK_NEAR(final_logit(s, 3), 1, 1e-6);
        // p from the penalized logits
        double z = exp(-0.25) + exp(0.25) + 2 * exp(1.0);
        CHECK_NEAR(final_p(s, 0), exp(-0.25) / z, 1e-6);
        smp_accept(s, 2); // the window is now 0, 1, 2: one each
        smp_sample(s, l);
        for (int t = 0; t < 3; t++) CHECK_NEAR(final_logit(s, t), 0.25, 1e-6);
        CHECK_NEAR(final_logit(s, 3), 1, 1e-6);
        smp_free(s);
    }
    // With a repeat penalty too: 1 / 2 first, then the subtraction.
    smp_params p = plain();
    p.repeat_penalty = 2.0f;
    p.frequency_penalty = 0.5f;
    p.presence_penalty = 0.25f;
    p.repeat_last_n = -1; // n_ctx
    smp_ctx *s = make(4, p);
    int32_t h[3] = {0, 0, 1};
    accept_all(s, h, 3);
    smp_sample(s, l);
    CHECK_NEAR(final_logit(s, 0), 0.5 - 1 - 0.25, 1e-6);
    CHECK_NEAR(final_logit(s, 1), 0.5 - 0.5 - 0.25, 1e-6);
    // smp_reset forgets the history.
    smp_reset(s);
    smp_sample(s, l);
    CHECK_NEAR(final_logit(s, 0), 1, 1e-6);
    smp_free(s);
}

static void test_logit_bias(void) {
    float l[3] = {3, 2, 1};
    smp_bias ban[1] = {{0, -INFINITY}};
    smp_params p = plain();
    p.temp = 0;
    p.logit_bias = ban;
    p.n_logit_bias = 1;
    smp_ctx *s = make(3, p);
    ban[0].token = 2; // copied at creation: this changes nothing
    for (int i = 0; i < 20; i++) CHECK_EQ_INT(smp_sample(s, l), 1);
    smp_free(s);
    // A positive bias: 1 + 5 beats 3.
    smp_bias up[1] = {{2, 5.0f}};
    p.logit_bias = up;
    s = make(3, p);
    CHECK_EQ_INT(smp_sample(s, l), 2);
    smp_free(s);
    // Probabilities: +log 3 on one of two equal tokens gives 1/4, 3/4.
    float e[2] = {0, 0};
    smp_bias third[1] = {{1, logf(3)}};
    p = plain();
    p.logit_bias = third;
    p.n_logit_bias = 1;
    s = make(2, p);
    smp_sample(s, e);
    CHECK_NEAR(final_p(s, 0), 0.25, 1e-6);
    CHECK_NEAR(final_p(s, 1), 0.75, 1e-6);
    smp_free(s);
    // Everything banned: no token, and no n_probs.
    smp_bias all[3] = {{0, -INFINITY}, {1, -INFINITY}, {2, -INFINITY}};
    p = smp_default_params();
    p.logit_bias = all;
    p.n_logit_bias = 3;
    s = make(3, p);
    CHECK_EQ_INT(smp_sample(s, l), SMP_NO_TOKEN);
    smp_cand top[3];
    float cp = 1;
    CHECK_EQ_INT(smp_last_probs(s, top, 3, &cp), 0);
    CHECK(cp == 0);
    smp_free(s);
}

// --- DRY ------------------------------------------------------------------------------------

// A tiny SentencePiece vocab: the pieces decode to themselves ("<0x0A>" to a newline).
enum { T_A = 3, T_B, T_C, T_D, T_E, T_COLON, T_NL, T_XCOLON, T_EN, T_DD, T_E1, T_ND, T_XEN, T_F, N_TINY };

static tok_vocab *tiny_vocab(void) {
    const char *pieces[N_TINY] = {"<unk>", "<s>", "</s>", "a", "b", "c", "d", "e", ":", "<0x0A>", "x:",
                                  "EN", "D", "E", "ND", "xEN", "f"};
    int32_t types[N_TINY];
    for (int i = 0; i < N_TINY; i++) types[i] = 1;
    types[0] = 2, types[1] = 3, types[2] = 3, types[T_NL] = 6;
    gguf_writer *w = gguf_writer_new();
    gguf_writer_set_str(w, "tokenizer.ggml.model", "llama");
    gguf_writer_set_str_arr(w, "tokenizer.ggml.tokens", pieces, N_TINY);
    gguf_writer_set_arr(w, "tokenizer.ggml.token_type", GGUF_I32, types, N_TINY);
    uint8_t *bytes = NULL;
    size_t size = 0;
    sim_err err;
    tok_vocab *v = NULL;
    gguf_file *f = NULL;
    sim_status st = gguf_writer_write_memory(w, &bytes, &size, &err);
    if (st == SIM_OK) st = gguf_open_memory(&f, bytes, size, "tiny", &err);
    if (st == SIM_OK) st = tok_load(&v, f, &err);
    CHECK_MSG(st == SIM_OK, "%s", err.msg);
    gguf_close(f);
    mem_free(bytes);
    gguf_writer_free(w);
    if (v) {
        CHECK_STR(tok_token_text(v, T_NL, true, NULL), "\n");
        CHECK_STR(tok_token_text(v, T_XEN, true, NULL), "xEN");
    }
    return v;
}

static smp_params dry_params(const tok_vocab *v) {
    smp_params p = plain();
    p.dry_multiplier = 1.0f;
    p.dry_base = 2.0f;
    p.dry_allowed_length = 2;
    p.dry_penalty_last_n = -1;
    p.vocab = v;
    return p;
}

// Accepts hist, samples from flat logits and returns the final logit of `tok`.
static float dry_logit(smp_params p, const int32_t *hist, int n, int32_t tok) {
    float l[N_TINY] = {0};
    smp_ctx *s = make(N_TINY, p);
    if (!s) return NAN;
    accept_all(s, hist, n);
    smp_sample(s, l);
    float x = final_logit(s, tok);
    smp_free(s);
    return x;
}

static void test_dry(void) {
    tok_vocab *v = tiny_vocab();
    if (!v) return;
    smp_params p = dry_params(v);
    // "a b c d a b c": the newest "a b c" (3) repeats and was followed by d:
    // d gets 1 * 2^(3 - 2) = 2; every other token nothing.
    int32_t h1[] = {T_A, T_B, T_C, T_D, T_A, T_B, T_C};
    CHECK_NEAR(dry_logit(p, h1, 7, T_D), -2, 1e-6);
    CHECK_NEAR(dry_logit(p, h1, 7, T_A), 0, 1e-6);
    CHECK_NEAR(dry_logit(p, h1, 7, T_E), 0, 1e-6);
    // "a b c d a b c d a b c": the repeat is 7 long → 2^5 = 32.
    int32_t h2[] = {T_A, T_B, T_C, T_D, T_A, T_B, T_C, T_D, T_A, T_B, T_C};
    CHECK_NEAR(dry_logit(p, h2, 11, T_D), -32, 1e-4);
    // The multiplier scales it: 0.5 * 2^5.
    p.dry_multiplier = 0.5f;
    CHECK_NEAR(dry_logit(p, h2, 11, T_D), -16, 1e-4);
    p.dry_multiplier = 1.0f;
    // allowed_length: "a b e a b" repeats 2 = allowed → 2^0 = 1; allowed 3 → free.
    int32_t h3[] = {T_A, T_B, T_E, T_A, T_B};
    CHECK_NEAR(dry_logit(p, h3, 5, T_E), -1, 1e-6);
    p.dry_allowed_length = 3;
    CHECK_NEAR(dry_logit(p, h3, 5, T_E), 0, 1e-6);
    p.dry_allowed_length = 2;
    // The window: the last 3 or 5 tokens hold no long repeat; the last 7 do.
    p.dry_penalty_last_n = 3;
    CHECK_NEAR(dry_logit(p, h1, 7, T_D), 0, 1e-6);
    p.dry_penalty_last_n = 5;
    CHECK_NEAR(dry_logit(p, h1, 7, T_D), 0, 1e-6);
    p.dry_penalty_last_n = 7;
    CHECK_NEAR(dry_logit(p, h1, 7, T_D), -2, 1e-6);
    p.dry_penalty_last_n = -1;
    // A breaker inside the repeat ends it: "a : b c a : b" would repeat
    // "a : b" (3) but may only look back to after the ':' (1 < 2).
    int32_t h4[] = {T_A, T_COLON, T_B, T_C, T_A, T_COLON, T_B};
    int32_t h4c[] = {T_A, T_E, T_B, T_C, T_A, T_E, T_B}; // control: no breaker
    CHECK_NEAR(dry_logit(p, h4, 7, T_C), 0, 1e-6);
    CHECK_NEAR(dry_logit(p, h4c, 7, T_C), -2, 1e-6);
    int32_t h4n[] = {T_A, T_NL, T_B, T_C, T_A, T_NL, T_B}; // a byte token decoding to "\n"
    CHECK_NEAR(dry_logit(p, h4n, 7, T_C), 0, 1e-6);
    // A token that contains a breaker ("x:") breaks too.
    int32_t h4x[] = {T_A, T_XCOLON, T_B, T_C, T_A, T_XCOLON, T_B};
    CHECK_NEAR(dry_logit(p, h4x, 7, T_C), 0, 1e-6);
    // Breaker tokens are never penalized: after "a b : a b" the repeat
    // "a b" continues with ':' (and after "a b x: a b" with "x:").
    int32_t h5[] = {T_A, T_B, T_COLON, T_A, T_B};
    int32_t h5x[] = {T_A, T_B, T_XCOLON, T_A, T_B};
    int32_t h5c[] = {T_A, T_B, T_F, T_A, T_B};
    CHECK_NEAR(dry_logit(p, h5, 5, T_COLON), 0, 1e-6);
    CHECK_NEAR(dry_logit(p, h5x, 5, T_XCOLON), 0, 1e-6);
    CHECK_NEAR(dry_logit(p, h5c, 5, T_F), -1, 1e-6);
    // On candidates (after a top-k that drops only token f) the result is the same.
    smp_params q = p;
    set_order(&q, "top_k;dry");
    q.top_k = N_TINY - 1;
    CHECK_NEAR(dry_logit(q, h1, 7, T_D), -2, 1e-6);
    CHECK_NEAR(dry_logit(q, h5, 5, T_COLON), 0, 1e-6);
    tok_free(v);
}

// Breakers that span several tokens, however the tokens split them.
static void test_dry_multi_token_breaker(void) {
    tok_vocab *v = tiny_vocab();
    if (!v) return;
    const char *brk[1] = {"END"};
    smp_params p = dry_params(v);
    p.dry_breakers = brk;
    p.n_dry_breakers = 1;
    // "a EN D b c a EN D b": "END" ends in the D before the last b → the
    // repeat may only be 1 long: c is free.
    int32_t h1[] = {T_A, T_EN, T_DD, T_B, T_C, T_A, T_EN, T_DD, T_B};
    CHECK_NEAR(dry_logit(p, h1, 9, T_C), 0, 1e-6);
    // "a EN E b c a EN E b": no "END" anywhere → the repeat "a EN E b" (4) → 2^2.
    int32_t h2[] = {T_A, T_EN, T_E1, T_B, T_C, T_A, T_EN, T_E1, T_B};
    CHECK_NEAR(dry_logit(p, h2, 9, T_C), -4, 1e-6);
    // Split as E + ND, and as xEN + D: still a breaker.
    int32_t h3[] = {T_A, T_E1, T_ND, T_B, T_C, T_A, T_E1, T_ND, T_B};
    int32_t h4[] = {T_A, T_XEN, T_DD, T_B, T_C, T_A, T_XEN, T_DD, T_B};
    CHECK_NEAR(dry_logit(p, h3, 9, T_C), 0, 1e-6);
    CHECK_NEAR(dry_logit(p, h4, 9, T_C), 0, 1e-6);
    // Without the breaker list, the same history is penalized.
    p.n_dry_breakers = 0;
    CHECK_NEAR(dry_logit(p, h1, 9, T_C), -4, 1e-6);
    tok_free(v);
}

// --- mirostat -------------------------------------------------------------------------------

// Over many draws the observed surprise -log2 p(token) averages tau.
static void test_mirostat(void) {
    int n = 1000;
    float *l = malloc(sizeof(float) * (size_t)n);
    for (int i = 0; i < n; i++) l[i] = -1.2f * logf((float)(i + 1)); // Zipf-like
    for (int v = 1; v <= 2; v++)
        for (int ti = 0; ti < 2; ti++) {
            float tau = ti ? 4.0f : 2.5f;
            smp_params p = plain();
            p.mirostat = v;
            p.mirostat_tau = tau;
            p.mirostat_eta = 0.1f;
            p.top_k = 1; // replaced by mirostat: must not make it greedy
            p.min_p = 0.9f;
            p.seed = 3;
            smp_ctx *s = make(n, p);
            double sum = 0;
            int distinct = 0, seen[64] = {0};
            for (int i = 0; i < 6000; i++) {
                int t = smp_sample(s, l);
                float cp;
                smp_cand top[1];
                smp_last_probs(s, top, 1, &cp);
                if (i >= 1000) sum += -log2(cp);
                if (t < 64 && !seen[t]++) distinct++;
            }
            double mean = sum / 5000;
            CHECK_MSG(fabs(mean - tau) < 0.2, "mirostat v%d: mean surprise %.3f for tau %.1f", v, mean, (double)tau);
            CHECK_MSG(distinct > 3, "mirostat v%d drew %d distinct tokens", v, distinct);
            smp_free(s);
        }
    free(l);
}

// --- order ----------------------------------------------------------------------------------

static void test_order(void) {
    // min-p before temperature cuts logit -1 (p ratio e^-1 < 0.5); after
    // temperature 2 the ratio is e^-0.5 > 0.5 and it stays.
    float l[2] = {0, -1};
    smp_params p = plain();
    p.min_p = 0.5f;
    p.temp = 2.0f;
    set_order(&p, "min_p;temperature");
    smp_ctx *s = make(2, p);
    smp_sample(s, l);
    CHECK_EQ_INT(n_final(s), 1);
    smp_free(s);
    set_order(&p, "temperature;min_p");
    s = make(2, p);
    smp_sample(s, l);
    CHECK_EQ_INT(n_final(s), 2);
    smp_free(s);
    // Penalties before top-k 1 demote the repeated best; after, top-k has
    // already chosen it.
    float m[3] = {2.0f, 1.5f, 0};
    p = plain();
    p.top_k = 1;
    p.repeat_penalty = 2.0f;
    set_order(&p, "penalties;top_k");
    s = make(3, p);
    smp_accept(s, 0);
    CHECK_EQ_INT(smp_sample(s, m), 1);
    smp_free(s);
    set_order(&p, "top_k;penalties");
    s = make(3, p);
    smp_accept(s, 0);
    CHECK_EQ_INT(smp_sample(s, m), 0);
    smp_free(s);
    // An empty chain is a plain softmax draw.
    p = smp_default_params();
    set_order(&p, "");
    CHECK_EQ_INT(p.n_order, 0);
    s = make(3, p);
    smp_sample(s, m);
    CHECK_EQ_INT(n_final(s), 3);
    smp_free(s);
}

static void test_parse_order(void) {
    smp_params p = smp_default_params(), d = smp_default_params();
    sim_err err;
    char buf[256];
    smp_format_order(&d, buf, sizeof buf);
    CHECK_STR(buf, "penalties;dry;top_n_sigma;top_k;typ_p;top_p;min_p;xtc;temperature");
    set_order(&p, buf);
    CHECK_EQ_INT(p.n_order, d.n_order);
    CHECK(memcmp(p.order, d.order, sizeof(smp_kind) * (size_t)d.n_order) == 0);
    set_order(&p, " top-k, nucleus ;typical  temp\n");
    CHECK_EQ_INT(p.n_order, 4);
    CHECK(p.order[0] == SMP_KIND_TOP_K && p.order[1] == SMP_KIND_TOP_P && p.order[2] == SMP_KIND_TYPICAL &&
          p.order[3] == SMP_KIND_TEMPERATURE);
    // Errors name the problem and change nothing.
    smp_params before = p;
    CHECK(smp_parse_order(&p, "top_k;topp;temp", &err) == SIM_ERR_ARG);
    CHECK_MSG(strstr(err.msg, "'topp'") && strstr(err.msg, "item 2"), "%s", err.msg);
    CHECK(smp_parse_order(&p, "top_k;;temp", &err) == SIM_ERR_ARG);
    CHECK_MSG(strstr(err.msg, "empty name at item 2"), "%s", err.msg);
    CHECK(smp_parse_order(&p, "top_k;", &err) == SIM_ERR_ARG);
    CHECK_MSG(strstr(err.msg, "empty name at item 2"), "%s", err.msg);
    CHECK(smp_parse_order(&p, ";top_k", &err) == SIM_ERR_ARG);
    CHECK(smp_parse_order(&p, "top_k top_k top_k top_k top_k top_k top_k top_k top_k top_k top_k top_k top_k "
                              "top_k top_k top_k top_k",
                          &err) == SIM_ERR_ARG);
    CHECK_MSG(strstr(err.msg, "more than 16"), "%s", err.msg);
    CHECK(memcmp(&before, &p, sizeof p) == 0);
    CHECK_STR(smp_kind_name(SMP_KIND_XTC), "xtc");
    CHECK_STR(smp_kind_name((smp_kind)99), "?");
    // Truncated formatting still says the full length.
    char small[8];
    CHECK_EQ_INT(smp_format_order(&d, small, sizeof small), (int)strlen(buf));
    CHECK_STR(small, "penalti");
}

// --- n_probs ---------------------------------------------------------------------------------

static void test_n_probs(void) {
    // Top-k 4 of p = 0.4, 0.3, 0.2, 0.06, 0.04 leaves 0.4, 0.3, 0.2, 0.06 over 0.96.
    float l[5] = {logf(0.06f), logf(0.3f), logf(0.04f), logf(0.4f), logf(0.2f)};
    smp_params p = plain();
    p.top_k = 4;
    smp_ctx *s = make(5, p);
    smp_cand top[8];
    float cp = -1;
    CHECK_EQ_INT(smp_last_probs(s, top, 3, &cp), 0); // before any sample
    CHECK(cp == 0);
    for (int it = 0; it < 50; it++) {
        int32_t t = smp_sample(s, l);
        int n = smp_last_probs(s, top, 3, &cp);
        CHECK_EQ_INT(n, 3);
        CHECK(top[0].id == 3 && top[1].id == 1 && top[2].id == 4);
        CHECK_NEAR(top[0].p, 0.4 / 0.96, 1e-6);
        CHECK_NEAR(top[1].p, 0.3 / 0.96, 1e-6);
        CHECK_NEAR(top[2].p, 0.2 / 0.96, 1e-6);
        CHECK(top[0].p + top[1].p + top[2].p <= 1.0f);
        double want = t == 3 ? 0.4 : t == 1 ? 0.3 : t == 4 ? 0.2 : t == 0 ? 0.06 : -1;
        CHECK_NEAR(cp, want / 0.96, 1e-6);
    }
    int n = smp_last_probs(s, top, 8, NULL);
    CHECK_EQ_INT(n, 4);
    double sum = 0;
    for (int i = 0; i < n; i++) sum += top[i].p;
    CHECK_NEAR(sum, 1.0, 1e-6);
    smp_free(s);
}

// --- constraint -------------------------------------------------------------------------------

typedef struct parity {
    int keep; // 1: odd ids only, 2: nothing, 3: fail
    int calls;
} parity;

static sim_status parity_fn(void *ctx, smp_cand *cand, int n, sim_err *err) {
    parity *c = ctx;
    c->calls++;
    if (c->keep == 3) return err_set(err, SIM_ERR_RANGE, "grammar: too many stacks");
    for (int i = 0; i < n; i++) {
        CHECK(cand[i].id == i);
        if (c->keep == 2 || i % 2 == 0) cand[i].logit = -INFINITY;
    }
    return SIM_OK;
}

static void test_constraint(void) {
    float l[10], orig[10];
    for (int i = 0; i < 10; i++) orig[i] = l[i] = (float)(10 - i); // token 0 is the best
    smp_params p = plain();
    p.top_k = 3; // after the constraint: the best three odd ids
    smp_ctx *s = make(10, p);
    parity c = {.keep = 1};
    smp_set_constraint(s, parity_fn, &c);
    for (int i = 0; i < 200; i++) {
        int t = smp_sample(s, l);
        CHECK(t == 1 || t == 3 || t == 5);
    }
    CHECK_EQ_INT(c.calls, 200);
    CHECK(memcmp(l, orig, sizeof l) == 0); // the caller's row is untouched
    CHECK_EQ_INT(smp_last_err(s)->code, SIM_OK);
    smp_cand top[10];
    int n = smp_last_probs(s, top, 10, NULL);
    CHECK_EQ_INT(n, 3);
    double sum = 0;
    for (int i = 0; i < n; i++) {
        CHECK(top[i].id % 2 == 1);
        sum += top[i].p;
    }
    CHECK_NEAR(sum, 1.0, 1e-6);
    c.keep = 2;
    CHECK_EQ_INT(smp_sample(s, l), SMP_NO_TOKEN);
    c.keep = 3;
    CHECK_EQ_INT(smp_sample(s, l), SMP_FAILED);
    CHECK_EQ_INT(smp_last_err(s)->code, SIM_ERR_RANGE);
    CHECK_STR(smp_last_err(s)->msg, "grammar: too many stacks");
    CHECK_EQ_INT(smp_last_probs(s, top, 10, NULL), 0);
    c.keep = 1;
    CHECK(smp_sample(s, l) % 2 == 1);
    CHECK_EQ_INT(smp_last_err(s)->code, SIM_OK);
    smp_set_constraint(s, NULL, NULL);
    CHECK(smp_sample(s, l) <= 2);
    smp_free(s);
}

// NaN and -inf logits are never candidates.
static void test_bad_logits(void) {
    float l[4] = {NAN, 1, -INFINITY, 0};
    smp_params p = smp_default_params();
    smp_ctx *s = make(4, p);
    for (int i = 0; i < 100; i++) {
        int t = smp_sample(s, l);
        CHECK(t == 1 || t == 3);
    }
    smp_free(s);
    float all[3] = {NAN, -INFINITY, NAN};
    for (int mir = 0; mir <= 2; mir++) {
        p.mirostat = mir;
        s = make(3, p);
        CHECK_EQ_INT(smp_sample(s, all), SMP_NO_TOKEN);
        smp_free(s);
    }
}

// --- the dense fast paths against brute force on a large vocabulary -----------------------

typedef struct idl {
    float l;
    int id;
} idl;

static int cmp_best(const void *a, const void *b) { // higher logit first, ties by lower id
    const idl *x = a, *y = b;
    if (x->l != y->l) return x->l > y->l ? -1 : 1;
    return (x->id > y->id) - (x->id < y->id);
}

static void test_large_vocab_paths(void) {
    int n = 150001; // leaves a tail for the 8-wide scan of dense top-k
    float *l = malloc(sizeof(float) * (size_t)n);
    idl *sorted = malloc(sizeof(idl) * (size_t)n);
    int *idx = malloc(sizeof(int) * (size_t)n);
    smp_rng r;
    smp_rng_seed(&r, 11);
    int n_finite = 0;
    for (int i = 0; i < n; i++) {
        l[i] = (float)((int)(smp_rng_uniform(&r) * 4000) / 200.0 - 10); // many exact ties
        if (i % 997 == 0) l[i] = -INFINITY;
        if (i % 1009 == 0) l[i] = NAN;
        if (l[i] > -INFINITY) sorted[n_finite++] = (idl){l[i], i};
    }
    qsort(sorted, (size_t)n_finite, sizeof *sorted, cmp_best);
    for (int i = 0; i < n_finite; i++) idx[i] = sorted[i].id;
    free(sorted);
    // top-k, dense heap (40, 1000) and quickselect (2000), and on candidates.
    int ks[3] = {40, 1000, 2000};
    for (int ki = 0; ki < 3; ki++)
        for (int cand = 0; cand < 2; cand++) {
            smp_params p = plain();
            p.top_k = ks[ki];
            if (cand) {
                set_order(&p, "min_p;top_k");
                p.min_p = 1e-30f;
            }
            smp_ctx *s = make(n, p);
            smp_sample(s, l);
            const smp_cand *c;
            int m = smp_last_candidates(s, &c);
            CHECK_EQ_INT(m, ks[ki]);
            int bad = 0;
            for (int i = 0; i < MIN(m, ks[ki]); i++) bad += c[i].id != idx[i];
            CHECK_MSG(bad == 0, "top-k %d (%s): %d ids differ", ks[ki], cand ? "candidates" : "dense", bad);
            smp_free(s);
        }
    // min-p: the kept set is exactly the logits >= max + log(min_p).
    float mx = l[idx[0]];
    smp_params p = plain();
    p.min_p = 0.05f;
    smp_ctx *s = make(n, p);
    smp_sample(s, l);
    int want = 0;
    for (int i = 0; i < n_finite; i++) want += l[idx[i]] >= mx + logf(0.05f);
    CHECK_EQ_INT(n_final(s), want);
    smp_free(s);
    // top-n-sigma 2: the same with the threshold from the finite logits.
    double sum = 0, acc = 0;
    for (int i = 0; i < n_finite; i++) sum += l[idx[i]];
    for (int i = 0; i < n_finite; i++) acc += (l[idx[i]] - sum / n_finite) * (l[idx[i]] - sum / n_finite);
    float thresh = (float)(mx - 2.0 * sqrt(acc / n_finite));
    p = plain();
    p.top_n_sigma = 2.0f;
    s = make(n, p);
    smp_sample(s, l);
    want = 0;
    for (int i = 0; i < n_finite; i++) want += l[idx[i]] >= thresh;
    CHECK_EQ_INT(n_final(s), want);
    // n_probs on the full distribution: the top 5 of softmax over every finite logit.
    smp_cand top[5];
    CHECK_EQ_INT(smp_last_probs(s, top, 5, NULL), 5);
    for (int i = 0; i < 5; i++) CHECK_EQ_INT(top[i].id, idx[i]);
    smp_free(s);
    free(l);
    free(idx);
}

// Dense top-k on odd sizes (the 8-wide scan's tail, k from 1 to n / 8):
// the same ids, in order, as a brute-force sort; ties go to the lower id.
static void test_top_k_sizes(void) {
    int sizes[] = {8, 9, 15, 31, 33, 255, 1023, 4099};
    smp_rng r;
    smp_rng_seed(&r, 21);
    for (size_t si = 0; si < ARRAY_LEN(sizes); si++) {
        int n = sizes[si];
        float *l = malloc(sizeof(float) * (size_t)n);
        idl *sorted = malloc(sizeof(idl) * (size_t)n);
        for (int i = 0; i < n; i++) {
            l[i] = (float)(int)(smp_rng_uniform(&r) * 50); // ties
            sorted[i] = (idl){l[i], i};
        }
        qsort(sorted, (size_t)n, sizeof *sorted, cmp_best);
        int ks[3] = {1, 3, n / 8};
        for (int ki = 0; ki < 3; ki++) {
            int k = ks[ki];
            if (k < 1) continue;
            smp_params p = plain();
            p.top_k = k;
            smp_ctx *s = make(n, p);
            smp_sample(s, l);
            const smp_cand *c;
            int m = smp_last_candidates(s, &c);
            CHECK_EQ_INT(m, k);
            int bad = 0;
            for (int i = 0; i < MIN(m, k); i++) bad += c[i].id != sorted[i].id;
            CHECK_MSG(bad == 0, "n %d, top-k %d: %d ids differ", n, k, bad);
            smp_free(s);
        }
        free(l);
        free(sorted);
    }
}

// --- parameters and memory ---------------------------------------------------------------------

static void test_bad_params(void) {
    smp_ctx *s = (smp_ctx *)1;
    sim_err err;
    smp_params p = plain();
    CHECK(smp_new(&s, 0, &p, &err) == SIM_ERR_ARG);
    CHECK(s == NULL);
    CHECK_MSG(strstr(err.msg, "n_vocab"), "%s", err.msg);
    static const char *long_breaker[1] = {"0123456789012345678901234567890123456789x"};
    static const char *empty_breaker[1] = {""};
    static const smp_bias bad_tok[1] = {{10, 1.0f}};
    static const smp_bias bad_bias[1] = {{1, INFINITY}};
#define BAD_CASE(field_assign, needle)                                                           \
    do {                                                                                         \
        smp_params q = plain();                                                                  \
        field_assign;                                                                            \
        sim_status st_ = smp_new(&s, 10, &q, &err);                                              \
        CHECK_MSG(st_ == SIM_ERR_ARG, "%s: accepted", #field_assign);                            \
        if (st_ == SIM_OK) smp_free(s);                                                          \
        else CHECK_MSG(strstr(err.msg, needle), "%s: message '%s' lacks '%s'", #field_assign, err.msg, needle); \
    } while (0)
    BAD_CASE(q.top_p = 0, "top_p");
    BAD_CASE(q.temp = -1, "temp");
    BAD_CASE(q.temp = NAN, "temp");
    BAD_CASE(q.min_p = 2, "min_p");
    BAD_CASE(q.top_k = -1, "top_k");
    BAD_CASE(q.typical_p = 0, "typical_p");
    BAD_CASE(q.top_n_sigma = INFINITY, "top_n_sigma");
    BAD_CASE(q.xtc_probability = 1.5f, "xtc_probability");
    BAD_CASE(q.xtc_threshold = -0.1f, "xtc_threshold");
    BAD_CASE(q.min_keep = -1, "min_keep");
    BAD_CASE(q.dynatemp_range = -1, "dynatemp_range");
    BAD_CASE(q.dynatemp_exponent = -1, "dynatemp_exponent");
    BAD_CASE(q.repeat_penalty = 0, "repeat_penalty");
    BAD_CASE(q.frequency_penalty = NAN, "frequency_penalty");
    BAD_CASE(q.presence_penalty = INFINITY, "presence_penalty");
    BAD_CASE(q.repeat_last_n = -2, "repeat_last_n");
    BAD_CASE(q.n_ctx = 0, "n_ctx");
    BAD_CASE(q.dry_multiplier = -1, "dry_multiplier");
    BAD_CASE((q.dry_multiplier = 1, q.n_dry_breakers = 0, q.dry_base = 0.5f), "dry_base");
    BAD_CASE((q.dry_multiplier = 1, q.n_dry_breakers = 0, q.dry_allowed_length = 0), "dry_allowed_length");
    BAD_CASE(q.dry_penalty_last_n = -2, "dry_penalty_last_n");
    BAD_CASE(q.dry_multiplier = 1, "vocab"); // breakers but no vocab
    BAD_CASE((q.dry_breakers = long_breaker, q.n_dry_breakers = 1), "dry_breakers[0]");
    BAD_CASE((q.dry_breakers = empty_breaker, q.n_dry_breakers = 1), "dry_breakers[0] is empty");
    BAD_CASE(q.n_dry_breakers = 33, "n_dry_breakers");
    BAD_CASE(q.mirostat = 3, "mirostat");
    BAD_CASE(q.mirostat_tau = -1, "mirostat_tau");
    BAD_CASE(q.mirostat_eta = NAN, "mirostat_eta");
    BAD_CASE((q.logit_bias = bad_tok, q.n_logit_bias = 1), "logit_bias[0].token");
    BAD_CASE((q.logit_bias = bad_bias, q.n_logit_bias = 1), "logit_bias[0].bias");
    BAD_CASE(q.n_logit_bias = 1, "logit_bias is NULL");
    BAD_CASE(q.n_order = 17, "n_order");
    BAD_CASE(q.order[2] = (smp_kind)42, "order[2]");
#undef BAD_CASE
}

// Every allocation in smp_new may fail: a clean SIM_ERR_NOMEM each time.
static void test_alloc_failures(void) {
    tok_vocab *v = tiny_vocab();
    if (!v) return;
    smp_bias b[1] = {{3, 1.0f}};
    smp_params p = dry_params(v);
    p.repeat_penalty = 1.1f;
    p.logit_bias = b;
    p.n_logit_bias = 1;
    int fails = 0;
    for (long i = 0; i < 100; i++) {
        smp_ctx *s = NULL;
        sim_err err;
        mem_fail_after(i);
        sim_status st = smp_new(&s, N_TINY, &p, &err);
        bool hit = mem_fail_triggered();
        mem_fail_after(-1);
        if (!hit) {
            CHECK(st == SIM_OK);
            smp_free(s);
            break;
        }
        fails++;
        CHECK_MSG(st == SIM_ERR_NOMEM && s == NULL, "failing allocation %ld: status %d", i, (int)st);
    }
    CHECK(fails >= 8);
    tok_free(v);
}

// smp_sample and smp_accept never allocate, whatever the chain.
static void test_no_alloc_per_token(void) {
    tok_vocab *v = tiny_vocab();
    if (!v) return;
    enum { N = 5000 };
    smp_params p = dry_params(v);
    p.dry_multiplier = 0.8f;
    p.repeat_penalty = 1.1f;
    p.frequency_penalty = 0.1f;
    p.top_k = 0;
    p.typical_p = 0.9f;
    p.top_p = 0.9f;
    p.xtc_probability = 0.5f;
    p.dynatemp_range = 0.5f;
    p.top_n_sigma = 3;
    for (int mir = 0; mir <= 2; mir++) {
        p.mirostat = mir;
        smp_ctx *s = make(N, p);
        float *l = malloc(sizeof(float) * N);
        smp_cand top[10];
        mem_fail_after(0);
        int32_t prev = 0;
        for (int i = 0; i < 50; i++) {
            fake_logits(l, N, i, prev);
            prev = smp_sample(s, l);
            smp_accept(s, prev % N_TINY); // tokens the vocab can decode
            smp_last_probs(s, top, 10, NULL);
            const smp_cand *c;
            smp_last_candidates(s, &c);
        }
        bool hit = mem_fail_triggered();
        mem_fail_after(-1);
        CHECK_MSG(!hit, "mirostat %d: an allocation during sampling", mir);
        free(l);
        smp_free(s);
    }
    tok_free(v);
}

int main(int argc, char **argv) {
    test_init(argc, argv);
    TEST_RUN(test_greedy);
    TEST_RUN(test_distribution_and_temperature);
    TEST_RUN(test_seed_reproducible);
    TEST_RUN(test_seed_full_chain);
    TEST_RUN(test_top_k);
    TEST_RUN(test_top_p);
    TEST_RUN(test_min_p);
    TEST_RUN(test_typical);
    TEST_RUN(test_typical_large);
    TEST_RUN(test_top_n_sigma);
    TEST_RUN(test_xtc);
    TEST_RUN(test_dynatemp);
    TEST_RUN(test_repeat_penalty);
    TEST_RUN(test_frequency_presence);
    TEST_RUN(test_logit_bias);
    TEST_RUN(test_dry);
    TEST_RUN(test_dry_multi_token_breaker);
    TEST_RUN(test_mirostat);
    TEST_RUN(test_order);
    TEST_RUN(test_parse_order);
    TEST_RUN(test_n_probs);
    TEST_RUN(test_constraint);
    TEST_RUN(test_bad_logits);
    TEST_RUN(test_large_vocab_paths);
    TEST_RUN(test_top_k_sizes);
    TEST_RUN(test_bad_params);
    TEST_RUN(test_alloc_failures);
    TEST_RUN(test_no_alloc_per_token);
    return test_finish();
}
