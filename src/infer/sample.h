// sample.h — choosing the next token from logits.
//
// The basic chain, in order: repetition penalty over the last N tokens →
// top-k → top-p → min-p → temperature → a draw from the remaining
// distribution with a seeded RNG. Temperature 0 means greedy (argmax after
// the penalty). The same seed and the same logits give the same tokens.
//
//     smp_params sp = smp_default_params();
//     sp.temp = 0.8f; sp.seed = 42;
//     smp_ctx *s;
//     if (smp_new(&s, n_vocab, &sp, &err) != SIM_OK) ...
//     int32_t tok = smp_sample(s, logits);   // does not modify logits
//     smp_accept(s, tok);                    // history for the penalty
//     smp_free(s);
//
// A sampler owns its candidate buffer (allocated once in smp_new), so
// sampling never allocates.
#ifndef SIM_SAMPLE_H
#define SIM_SAMPLE_H

#include "base/base.h"

typedef struct smp_params {
    float temp;           // 0: greedy; otherwise logits are divided by it
    int top_k;            // keep the k most likely (0: off)
    float top_p;          // keep the smallest set with cumulative probability >= p (1: off)
    float min_p;          // keep tokens with p >= min_p * p_max (0: off)
    float repeat_penalty; // 1: off; >1 discourages tokens seen in the last repeat_last_n
    int repeat_last_n;    // window of the penalty
    uint64_t seed;
} smp_params;

typedef struct smp_cand {
    int32_t id;
    float logit;
    float p; // probability after softmax (filled by the steps that need it)
} smp_cand;

typedef struct smp_ctx smp_ctx;

smp_params smp_default_params(void); // temp 0.8, top-k 40, top-p 0.95, min-p 0.05, penalty 1.0 (off)
sim_status smp_new(smp_ctx **out, int n_vocab, const smp_params *p, sim_err *err);
void smp_free(smp_ctx *s);

int32_t smp_sample(smp_ctx *s, const float *logits);
void smp_accept(smp_ctx *s, int32_t token);
void smp_reset(smp_ctx *s); // forget the history

// The candidates left after the last smp_sample's filters, most likely first
// (for inspection and tests): returns their count.
int smp_last_candidates(const smp_ctx *s, const smp_cand **out);

// A seeded generator (xoshiro256**): the sampler's, exposed for tests and tools.
typedef struct smp_rng {
    uint64_t s[4];
} smp_rng;
void smp_rng_seed(smp_rng *r, uint64_t seed);
uint64_t smp_rng_next(smp_rng *r);
double smp_rng_uniform(smp_rng *r); // [0, 1)

#endif
