// dynprompt.h — dynamic prompts: `{a|b|c}` alternatives expanded into every
// combination or sampled at random, for batches of sprite variants.
//
//     dp_prompt *p;
//     if (dp_parse(&p, "a {red|blue} {cat|dog}", &err) != SIM_OK) ...
//     uint64_t n = dp_count(p);                       // 4
//     char *s;
//     for (uint64_t i = 0; i < n; i++) {              // a red cat, a red dog,
//         dp_expand_nth(p, i, &s, &err);              // a blue cat, a blue dog
//         puts(s), mem_free(s);
//     }
//     dp_free(p);
//
// Syntax:
//   {a|b|c}      one of the alternatives; an alternative may hold groups
//                ({a {x|y}|b} is three prompts) and may be empty ({|big }).
//   {2$$a|b|c}   k distinct alternatives, in their written order, joined by
//                ", " (a, b / a, c / b, c); {1-2$$a|b|c} any k in 1..2
//                (k ascending: the 1-subsets first); an upper bound past the
//                number of alternatives is clamped, a lower one is an error.
//   \{ \} \| \\  literal characters; a '|' or '$' outside a group is literal.
//
// Order (combinatorial): the leftmost group varies slowest, alternatives in
// written order; a pick group goes through k ascending, then its k-subsets in
// lexicographic order of their indices, and within one subset the leftmost
// chosen alternative varies slowest.
// Random: the generator is splitmix64 over the state (the seed), next() its
// 64-bit output. A one-of group takes alternative next() % n; a pick group
// takes k = kmin + next() % (kmax - kmin + 1), then k distinct alternatives
// by selection sampling (alternative j is taken when next() % (n - j) < k -
// taken so far), kept in written order; chosen alternatives are expanded the
// same way, left to right. A seed gives the same samples on every machine.
//
// Bounds: text ≤ DP_MAX_TEXT bytes, nesting ≤ DP_MAX_DEPTH,
// dp_expand_all refuses more than `max` (≤ DP_MAX_EXPANSIONS) expansions.
// Ownership: dp_parse returns a tree freed by dp_free; strings and lists
// returned are mem_alloc'd (mem_free, dp_list_free). Errors: sim_status +
// sim_err with the byte offset of the problem.
#ifndef SIM_DYNPROMPT_H
#define SIM_DYNPROMPT_H

#include "base/base.h"

#define DP_MAX_EXPANSIONS 100000
#define DP_MAX_TEXT (1 << 20)
#define DP_MAX_DEPTH 32
#define DP_MAX_PICK 64 // k of a pick group

typedef struct dp_prompt dp_prompt;

sim_status dp_parse(dp_prompt **out, const char *text, sim_err *err);
void dp_free(dp_prompt *p);

// The number of combinatorial expansions, saturated at UINT64_MAX.
uint64_t dp_count(const dp_prompt *p);

// Expansion number i (0 ≤ i < dp_count) in combinatorial order.
sim_status dp_expand_nth(const dp_prompt *p, uint64_t i, char **out, sim_err *err);

// One random expansion; *state is the generator's state (advanced).
sim_status dp_sample(const dp_prompt *p, uint64_t *state, char **out, sim_err *err);

// Every expansion of text, or SIM_ERR_RANGE when there are more than max
// (which is clamped to DP_MAX_EXPANSIONS). *out: (*n) strings.
sim_status dp_expand_all(const char *text, uint64_t max, char ***out, size_t *n, sim_err *err);

// n random expansions with the generator seeded by seed.
sim_status dp_expand_random(const char *text, size_t n, uint64_t seed, char ***out, sim_err *err);

void dp_list_free(char **list, size_t n);

#endif
