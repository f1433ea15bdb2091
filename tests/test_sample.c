// test_sample.c — each sampling step's defining behaviour, with
// hand-derived distributions.
#include <string.h>

#include "infer/sample.h"
#include "test.h"

static smp_ctx *make(int n_vocab, smp_params p) {
    smp_ctx *s;
    sim_err err;
    CHECK(smp_new(&s, n_vocab, &p, &err) == SIM_OK);
    return s;
}

static smp_params plain(void) {
    smp_params p = smp_default_params();
    p.temp = 1.0f;
    p.top_k = 0;
    p.top_p = 1.0f;
    p.min_p = 0.0f;
    p.seed = 1;
    return p;
}

static void test_greedy(void) {
    float l[5] = {0.1f, 3.0f, -2.0f, 2.999f, 1.0f};
    smp_params p = plain();
    p.temp = 0;
    smp_ctx *s = make(5, p);
    for (int i = 0; i < 10; i++) CHECK_EQ_INT(smp_sample(s, l), 1);
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
    // A large vocabulary: the kept set equals a brute-force sorted prefix.
    int n = 5000;
    float *big = malloc(sizeof(float) * (size_t)n);
    smp_rng r;
    smp_rng_seed(&r, 9);
    for (int i = 0; i < n; i++) big[i] = (float)(smp_rng_uniform(&r) * 8.0);
    smp_params p = plain();
    p.top_p = 0.9f;
    smp_ctx *s = make(n, p);
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
}

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

static void test_bad_params(void) {
    smp_params p = plain();
    smp_ctx *s;
    sim_err err;
    p.top_p = 0;
    CHECK(smp_new(&s, 10, &p, &err) == SIM_ERR_ARG);
    p = plain();
    p.temp = -1;
    CHECK(smp_new(&s, 10, &p, &err) == SIM_ERR_ARG);
    p = plain();
    p.min_p = 2;
    CHECK(smp_new(&s, 10, &p, &err) == SIM_ERR_ARG);
    CHECK(smp_new(&s, 0, &p, &err) == SIM_ERR_ARG);
}

int main(int argc, char **argv) {
    test_init(argc, argv);
    TEST_RUN(test_greedy);
    TEST_RUN(test_distribution_and_temperature);
    TEST_RUN(test_seed_reproducible);
    TEST_RUN(test_top_k);
    TEST_RUN(test_top_p);
    TEST_RUN(test_min_p);
    TEST_RUN(test_repeat_penalty);
    TEST_RUN(test_bad_params);
    return test_finish();
}
