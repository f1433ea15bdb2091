// sample.c — the sampler chain: constraint, bias, penalties, DRY, truncation,
// temperature, mirostat and a seeded draw.
//
// Semantics follow llama.cpp's llama-sampling.cpp / common/sampling.cpp (and
// koboldcpp's DRY and XTC, which llama.cpp ported); where we differ it is said
// at the step.
//
// Two representations, because a 150K-entry candidate array costs more to
// write than most steps cost to run:
//   - dense: the logits row itself (`dense`, id-indexed). Steps that change a
//     few logits by id (constraint, bias, penalties, DRY) patch a private copy
//     (`work`), made on the first patch. Selecting steps read it directly and
//     write candidates only for the tokens they keep: top-k through a bounded
//     heap, min-p and top-n-sigma through a threshold.
//   - candidates: cand[0..n_cand), filtered in place; `n_sorted` says how much
//     of the front is known to be the best in order, so truncation after
//     top-k never sorts again.
// Any other step turns the dense row into candidates first ("materialize"),
// dropping -INFINITY / NaN entries; so do mirostat and the draw.
#include "infer/sample.h"

#include <float.h>
#include <limits.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

// Selections of at most this many from a set at least HEAP_RATIO times
// larger use a bounded heap (one predictable pass) instead of quickselect.
#define SMP_HEAP_MAX 1024
#define SMP_HEAP_RATIO 8

struct smp_ctx {
    smp_params p; // a copy; its pointers are replaced by the copies below
    int n_vocab;
    smp_rng rng;
    smp_constraint_fn cfn;
    void *cctx;

    const float *dense; // (n_vocab) while is_dense: the logits, id-indexed (the caller's or work)
    float *work;        // (n_vocab) the patched copy of the logits
    bool is_dense;

    smp_cand *cand; // (n_vocab) the candidates of the current draw, once not dense
    smp_cand *tmp;  // (n_vocab) scratch: typical's keys
    smp_cand *heap; // (SMP_HEAP_MAX) selection of a few best from many
    int n_cand;
    int n_sorted; // cand[0..n_sorted) are the n_sorted best, most likely first

    smp_bias *bias; // (n_bias) copy of p.logit_bias
    int n_bias;

    // History: one ring serves both windows.
    int32_t *hist; // (hist_cap) accepted tokens; hist[(head - 1 - k) mod cap] is the k-th newest
    int hist_cap, n_hist, head;
    int rep_n;       // repetition window (resolved from -1)
    int32_t *counts; // (n_vocab) occurrences in the last rep_n tokens

    // DRY
    int dry_n; // window (resolved), 0 when DRY is off
    int n_breakers;
    char breakers[SMP_MAX_BREAKERS][SMP_MAX_BREAKER_LEN + 1];
    int breaker_len[SMP_MAX_BREAKERS];
    int max_breaker_len;
    uint8_t *breaker_tok; // (n_vocab / 8 + 1) bit per token whose text contains a breaker
    char *text;           // (max_breaker_len + tok_max_token_bytes + 1) tail of the text + a token
    int text_len;         // bytes of the text tail kept (< max_breaker_len)
    int since_break;      // accepted tokens after the last one a breaker ended in
    int32_t *dry_seq;     // (dry_n) the window, newest first
    int32_t *dry_z;       // (dry_n) Z-array of dry_seq
    int32_t *dry_touched; // (dry_n) tokens with dry_max set
    int32_t *dry_max;     // (n_vocab) longest repeat each token would extend; 0: none

    float mu; // mirostat: the surprise bound, starts at 2 * tau

    int32_t last_token; // SMP_NO_TOKEN before a sample
    float last_p;
    sim_err cerr; // the constraint's error (code SIM_OK when none)
};

// --- rng ---------------------------------------------------------------------------

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

// --- names and order ------------------------------------------------------------

static const char *const kind_names[SMP_KIND_COUNT] = {
    [SMP_KIND_PENALTIES] = "penalties", [SMP_KIND_DRY] = "dry",     [SMP_KIND_TOP_N_SIGMA] = "top_n_sigma",
    [SMP_KIND_TOP_K] = "top_k",         [SMP_KIND_TYPICAL] = "typ_p", [SMP_KIND_TOP_P] = "top_p",
    [SMP_KIND_MIN_P] = "min_p",         [SMP_KIND_XTC] = "xtc",     [SMP_KIND_TEMPERATURE] = "temperature",
};

// Other spellings llama.cpp accepts (its "alt names") plus the obvious ones.
static const struct {
    const char *name;
    smp_kind kind;
} kind_aliases[] = {
    {"top-n-sigma", SMP_KIND_TOP_N_SIGMA}, {"top-k", SMP_KIND_TOP_K},       {"typical", SMP_KIND_TYPICAL},
    {"typical_p", SMP_KIND_TYPICAL},       {"typical-p", SMP_KIND_TYPICAL}, {"typ-p", SMP_KIND_TYPICAL},
    {"typ", SMP_KIND_TYPICAL},             {"top-p", SMP_KIND_TOP_P},       {"nucleus", SMP_KIND_TOP_P},
    {"min-p", SMP_KIND_MIN_P},             {"temp", SMP_KIND_TEMPERATURE},
};

const char *smp_kind_name(smp_kind k) { return (unsigned)k < SMP_KIND_COUNT ? kind_names[k] : "?"; }

static bool kind_lookup(const char *s, size_t n, smp_kind *out) {
    for (int k = 0; k < SMP_KIND_COUNT; k++)
        if (strlen(kind_names[k]) == n && memcmp(kind_names[k], s, n) == 0) return *out = (smp_kind)k, true;
    for (size_t i = 0; i < ARRAY_LEN(kind_aliases); i++)
        if (strlen(kind_aliases[i].name) == n && memcmp(kind_aliases[i].name, s, n) == 0)
            return *out = kind_aliases[i].kind, true;
    return false;
}

static bool is_space(char c) { return c == ' ' || c == '\t' || c == '\n' || c == '\r'; }

sim_status smp_parse_order(smp_params *p, const char *text, sim_err *err) {
    if (!p || !text) return err_set(err, SIM_ERR_ARG, "sampler order: no text");
    smp_kind order[SMP_MAX_ORDER];
    int n = 0;
    const char *s = text;
    while (is_space(*s)) s++;
    // Items are separated by one ';' or ',' (with spaces around it) or by spaces alone.
    while (*s) {
        const char *b = s;
        while (*s && *s != ';' && *s != ',' && !is_space(*s)) s++;
        size_t len = (size_t)(s - b);
        if (len == 0)
            return err_set(err, SIM_ERR_ARG, "sampler order: empty name at item %d (byte %d) in \"%.120s\"", n + 1,
                           (int)(b - text), text);
        smp_kind k;
        if (!kind_lookup(b, len, &k))
            return err_set(err, SIM_ERR_ARG,
                           "sampler order: unknown sampler '%.*s' at item %d (byte %d); known: penalties, dry, "
                           "top_n_sigma, top_k, typ_p, top_p, min_p, xtc, temperature",
                           (int)MIN(len, 64), b, n + 1, (int)(b - text));
        if (n == SMP_MAX_ORDER)
            return err_set(err, SIM_ERR_ARG, "sampler order: more than %d samplers in \"%.120s\"", SMP_MAX_ORDER, text);
        order[n++] = k;
        while (is_space(*s)) s++;
        if (*s == ';' || *s == ',') {
            s++;
            while (is_space(*s)) s++;
            if (!*s)
                return err_set(err, SIM_ERR_ARG, "sampler order: empty name at item %d (byte %d) in \"%.120s\"",
                               n + 1, (int)(s - text), text);
        }
    }
    memcpy(p->order, order, sizeof(smp_kind) * (size_t)n);
    p->n_order = n;
    return SIM_OK;
}

int smp_format_order(const smp_params *p, char *buf, int cap) {
    int len = 0;
    for (int i = 0; i < p->n_order; i++) {
        const char *name = smp_kind_name(p->order[i]);
        for (const char *c = i ? ";" : ""; *c; c++, len++)
            if (len < cap - 1) buf[len] = *c;
        for (const char *c = name; *c; c++, len++)
            if (len < cap - 1) buf[len] = *c;
    }
    if (cap > 0) buf[MIN(len, cap - 1)] = '\0';
    return len;
}

// --- setup -------------------------------------------------------------------------

static const char *const default_breakers[] = {"\n", ":", "\"", "*"};

smp_params smp_default_params(void) {
    smp_params p = {
        .order = {SMP_KIND_PENALTIES, SMP_KIND_DRY, SMP_KIND_TOP_N_SIGMA, SMP_KIND_TOP_K, SMP_KIND_TYPICAL,
                  SMP_KIND_TOP_P, SMP_KIND_MIN_P, SMP_KIND_XTC, SMP_KIND_TEMPERATURE},
        .n_order = 9,
        .temp = 0.8f,
        .dynatemp_range = 0.0f,
        .dynatemp_exponent = 1.0f,
        .top_k = 40,
        .top_p = 0.95f,
        .min_p = 0.05f,
        .typical_p = 1.0f,
        .top_n_sigma = -1.0f,
        .xtc_probability = 0.0f,
        .xtc_threshold = 0.1f,
        .min_keep = 0,
        .repeat_penalty = 1.0f,
        .frequency_penalty = 0.0f,
        .presence_penalty = 0.0f,
        .repeat_last_n = 64,
        .dry_multiplier = 0.0f,
        .dry_base = 1.75f,
        .dry_allowed_length = 2,
        .dry_penalty_last_n = -1,
        .dry_breakers = default_breakers,
        .n_dry_breakers = (int)ARRAY_LEN(default_breakers),
        .vocab = NULL,
        .mirostat = 0,
        .mirostat_tau = 5.0f,
        .mirostat_eta = 0.1f,
        .logit_bias = NULL,
        .n_logit_bias = 0,
        .n_ctx = 4096,
        .seed = 0,
    };
    return p;
}

static bool is_finite(float x) { return isfinite(x); }

// Every range check, with the parameter's name in the message.
static sim_status check_params(int n_vocab, const smp_params *p, sim_err *err) {
#define BAD(...) return err_set(err, SIM_ERR_ARG, "sampling: " __VA_ARGS__)
    if (n_vocab < 1 || n_vocab > TOK_MAX_VOCAB) BAD("n_vocab %d is not in 1..%d", n_vocab, TOK_MAX_VOCAB);
    if (p->n_order < 0 || p->n_order > SMP_MAX_ORDER) BAD("n_order %d is not in 0..%d", p->n_order, SMP_MAX_ORDER);
    for (int i = 0; i < p->n_order; i++)
        if ((unsigned)p->order[i] >= SMP_KIND_COUNT) BAD("order[%d] = %d is not a sampler kind", i, (int)p->order[i]);
    if (!(is_finite(p->temp) && p->temp >= 0)) BAD("temp %g must be >= 0", (double)p->temp);
    if (!(is_finite(p->dynatemp_range) && p->dynatemp_range >= 0))
        BAD("dynatemp_range %g must be >= 0", (double)p->dynatemp_range);
    if (!(is_finite(p->dynatemp_exponent) && p->dynatemp_exponent >= 0))
        BAD("dynatemp_exponent %g must be >= 0", (double)p->dynatemp_exponent);
    if (p->top_k < 0) BAD("top_k %d must be >= 0 (0: off)", p->top_k);
    if (!(p->top_p > 0 && p->top_p <= 1)) BAD("top_p %g must be in (0, 1] (1: off)", (double)p->top_p);
    if (!(p->min_p >= 0 && p->min_p <= 1)) BAD("min_p %g must be in [0, 1] (0: off)", (double)p->min_p);
    if (!(p->typical_p > 0 && p->typical_p <= 1)) BAD("typical_p %g must be in (0, 1] (1: off)", (double)p->typical_p);
    if (!is_finite(p->top_n_sigma)) BAD("top_n_sigma %g must be finite (<= 0: off)", (double)p->top_n_sigma);
    if (!(p->xtc_probability >= 0 && p->xtc_probability <= 1))
        BAD("xtc_probability %g must be in [0, 1] (0: off)", (double)p->xtc_probability);
    if (!(p->xtc_threshold >= 0 && p->xtc_threshold <= 1))
        BAD("xtc_threshold %g must be in [0, 1] (> 0.5: off)", (double)p->xtc_threshold);
    if (p->min_keep < 0) BAD("min_keep %d must be >= 0", p->min_keep);
    if (!(is_finite(p->repeat_penalty) && p->repeat_penalty > 0))
        BAD("repeat_penalty %g must be > 0 (1: off)", (double)p->repeat_penalty);
    if (!is_finite(p->frequency_penalty)) BAD("frequency_penalty %g must be finite", (double)p->frequency_penalty);
    if (!is_finite(p->presence_penalty)) BAD("presence_penalty %g must be finite", (double)p->presence_penalty);
    if (p->n_ctx < 1 || p->n_ctx > SMP_MAX_CTX) BAD("n_ctx %d is not in 1..%d", p->n_ctx, SMP_MAX_CTX);
    if (p->repeat_last_n < -1 || p->repeat_last_n > SMP_MAX_CTX)
        BAD("repeat_last_n %d is not in -1..%d (0: off, -1: n_ctx)", p->repeat_last_n, SMP_MAX_CTX);
    if (!(is_finite(p->dry_multiplier) && p->dry_multiplier >= 0))
        BAD("dry_multiplier %g must be >= 0 (0: off)", (double)p->dry_multiplier);
    if (p->dry_penalty_last_n < -1 || p->dry_penalty_last_n > SMP_MAX_CTX)
        BAD("dry_penalty_last_n %d is not in -1..%d (0: off, -1: n_ctx)", p->dry_penalty_last_n, SMP_MAX_CTX);
    if (p->dry_multiplier > 0) {
        if (!(is_finite(p->dry_base) && p->dry_base >= 1)) BAD("dry_base %g must be >= 1", (double)p->dry_base);
        if (p->dry_allowed_length < 1) BAD("dry_allowed_length %d must be >= 1", p->dry_allowed_length);
    }
    if (p->n_dry_breakers < 0 || p->n_dry_breakers > SMP_MAX_BREAKERS)
        BAD("n_dry_breakers %d is not in 0..%d", p->n_dry_breakers, SMP_MAX_BREAKERS);
    if (p->n_dry_breakers > 0 && !p->dry_breakers) BAD("dry_breakers is NULL but n_dry_breakers is %d", p->n_dry_breakers);
    for (int i = 0; i < p->n_dry_breakers; i++) {
        const char *b = p->dry_breakers[i];
        size_t len = b ? strlen(b) : 0;
        if (len == 0) BAD("dry_breakers[%d] is empty", i);
        if (len > SMP_MAX_BREAKER_LEN)
            BAD("dry_breakers[%d] is %zu bytes (at most %d)", i, len, SMP_MAX_BREAKER_LEN);
    }
    if (p->dry_multiplier > 0 && p->dry_penalty_last_n != 0 && p->n_dry_breakers > 0 && !p->vocab)
        BAD("DRY sequence breakers need the token texts: set smp_params.vocab");
    if (p->mirostat < 0 || p->mirostat > 2) BAD("mirostat %d must be 0 (off), 1 or 2", p->mirostat);
    if (!(is_finite(p->mirostat_tau) && p->mirostat_tau >= 0)) BAD("mirostat_tau %g must be >= 0", (double)p->mirostat_tau);
    if (!(is_finite(p->mirostat_eta) && p->mirostat_eta >= 0)) BAD("mirostat_eta %g must be >= 0", (double)p->mirostat_eta);
    if (p->n_logit_bias < 0 || p->n_logit_bias > n_vocab)
        BAD("n_logit_bias %d is not in 0..%d", p->n_logit_bias, n_vocab);
    if (p->n_logit_bias > 0 && !p->logit_bias) BAD("logit_bias is NULL but n_logit_bias is %d", p->n_logit_bias);
    for (int i = 0; i < p->n_logit_bias; i++) {
        const smp_bias *b = &p->logit_bias[i];
        if (b->token < 0 || b->token >= n_vocab)
            BAD("logit_bias[%d].token %d is not in 0..%d", i, (int)b->token, n_vocab - 1);
        if (isnan(b->bias) || b->bias == INFINITY) BAD("logit_bias[%d].bias must be a number or -INFINITY", i);
    }
    return SIM_OK;
#undef BAD
}

static bool bit_get(const uint8_t *bits, int i) { return bits[i >> 3] >> (i & 7) & 1; }

// Whether any breaker occurs in s[0..len) ending after byte `from`.
static bool breaker_ends_in(const smp_ctx *s, const char *t, int len, int from) {
    for (int b = 0; b < s->n_breakers; b++) {
        int bl = s->breaker_len[b];
        for (int end = MAX(from + 1, bl); end <= len; end++)
            if (t[end - bl] == s->breakers[b][0] && memcmp(t + end - bl, s->breakers[b], (size_t)bl) == 0) return true;
    }
    return false;
}

static void *alloc_n(size_t n, size_t size) {
    size_t bytes;
    if (!size_mul(n, size, &bytes)) return NULL;
    return mem_alloc(bytes ? bytes : 1);
}

sim_status smp_new(smp_ctx **out, int n_vocab, const smp_params *p, sim_err *err) {
    *out = NULL;
    sim_status st = check_params(n_vocab, p, err);
    if (st != SIM_OK) return st;
    smp_ctx *s = mem_calloc(1, sizeof *s);
    if (!s) return err_set(err, SIM_ERR_NOMEM, "sampling: out of memory");
    s->p = *p;
    s->n_vocab = n_vocab;
    s->rep_n = p->repeat_last_n < 0 ? p->n_ctx : p->repeat_last_n;
    s->dry_n = p->dry_multiplier > 0 ? (p->dry_penalty_last_n < 0 ? p->n_ctx : p->dry_penalty_last_n) : 0;
    s->hist_cap = MAX(s->rep_n, s->dry_n);
    bool ok = true;
    s->cand = alloc_n((size_t)n_vocab, sizeof *s->cand);
    s->tmp = alloc_n((size_t)n_vocab, sizeof *s->tmp);
    s->heap = alloc_n(SMP_HEAP_MAX, sizeof *s->heap);
    s->work = alloc_n((size_t)n_vocab, sizeof *s->work);
    ok = s->cand && s->tmp && s->heap && s->work;
    if (ok && p->n_logit_bias) {
        s->bias = alloc_n((size_t)p->n_logit_bias, sizeof *s->bias);
        if ((ok = s->bias != NULL)) {
            memcpy(s->bias, p->logit_bias, sizeof *s->bias * (size_t)p->n_logit_bias);
            s->n_bias = p->n_logit_bias;
        }
    }
    if (ok && s->hist_cap) ok = (s->hist = alloc_n((size_t)s->hist_cap, sizeof *s->hist)) != NULL;
    if (ok && s->rep_n) ok = (s->counts = mem_calloc((size_t)n_vocab, sizeof *s->counts)) != NULL;
    if (ok && s->dry_n) {
        s->dry_seq = alloc_n((size_t)s->dry_n, sizeof *s->dry_seq);
        s->dry_z = alloc_n((size_t)s->dry_n, sizeof *s->dry_z);
        s->dry_touched = alloc_n((size_t)s->dry_n, sizeof *s->dry_touched);
        s->dry_max = mem_calloc((size_t)n_vocab, sizeof *s->dry_max);
        ok = s->dry_seq && s->dry_z && s->dry_touched && s->dry_max;
        // Breakers: keep the strings, mark the tokens that contain one (those
        // are never penalized: a breaker must stay free to end a repeat).
        s->n_breakers = p->n_dry_breakers;
        for (int b = 0; b < s->n_breakers; b++) {
            s->breaker_len[b] = (int)strlen(p->dry_breakers[b]);
            memcpy(s->breakers[b], p->dry_breakers[b], (size_t)s->breaker_len[b] + 1);
            s->max_breaker_len = MAX(s->max_breaker_len, s->breaker_len[b]);
        }
        if (ok && s->n_breakers) {
            int max_tok = tok_max_token_bytes(p->vocab);
            s->breaker_tok = mem_calloc((size_t)n_vocab / 8 + 1, 1);
            s->text = alloc_n((size_t)s->max_breaker_len + (size_t)MAX(max_tok, 0) + 1, 1);
            ok = s->breaker_tok && s->text;
            int n_text = MIN(n_vocab, tok_n_vocab(p->vocab));
            for (int id = 0; ok && id < n_text; id++) {
                size_t len;
                const char *t = tok_token_text(p->vocab, id, true, &len);
                if (breaker_ends_in(s, t, (int)len, 0)) s->breaker_tok[id >> 3] |= (uint8_t)(1u << (id & 7));
            }
        }
    }
    if (!ok) {
        int cap = s->hist_cap;
        smp_free(s);
        return err_set(err, SIM_ERR_NOMEM, "sampling: out of memory (vocabulary of %d, history of %d)", n_vocab, cap);
    }
    s->p.logit_bias = s->bias;
    s->p.dry_breakers = NULL; // copied into s->breakers
    smp_reset(s);
    *out = s;
    return SIM_OK;
}

void smp_free(smp_ctx *s) {
    if (!s) return;
    mem_free(s->cand);
    mem_free(s->tmp);
    mem_free(s->heap);
    mem_free(s->work);
    mem_free(s->bias);
    mem_free(s->hist);
    mem_free(s->counts);
    mem_free(s->dry_seq);
    mem_free(s->dry_z);
    mem_free(s->dry_touched);
    mem_free(s->dry_max);
    mem_free(s->breaker_tok);
    mem_free(s->text);
    mem_free(s);
}

void smp_reset(smp_ctx *s) {
    if (s->counts)
        for (int k = 0; k < MIN(s->n_hist, s->rep_n); k++) s->counts[s->hist[(s->head - 1 - k + s->hist_cap) % s->hist_cap]]--;
    s->n_hist = 0;
    s->head = 0;
    s->text_len = 0;
    s->since_break = INT_MAX / 2;
    s->mu = 2.0f * s->p.mirostat_tau;
    smp_rng_seed(&s->rng, s->p.seed);
    s->n_cand = 0;
    s->n_sorted = 0;
    s->is_dense = false;
    s->last_token = SMP_NO_TOKEN;
    s->last_p = 0;
}

void smp_set_constraint(smp_ctx *s, smp_constraint_fn fn, void *ctx) {
    s->cfn = fn;
    s->cctx = fn ? ctx : NULL;
}

// --- history -----------------------------------------------------------------------

static int32_t hist_at(const smp_ctx *s, int k) { // k-th newest, k < n_hist
    return s->hist[(s->head - 1 - k + s->hist_cap) % s->hist_cap];
}

// DRY breakers in text: the token's text is appended to the tail of the
// text before it, and a breaker that ends inside the token (whether it
// started there or in earlier tokens) resets the count of tokens since the
// last breaker.
static void track_breakers(smp_ctx *s, int32_t token) {
    size_t len;
    const char *t = tok_token_text(s->p.vocab, token, true, &len);
    int keep = s->max_breaker_len - 1; // tail bytes a breaker can start in
    memcpy(s->text + s->text_len, t, len);
    int total = s->text_len + (int)len;
    bool hit = breaker_ends_in(s, s->text, total, s->text_len);
    s->since_break = hit ? 0 : MIN(s->since_break + 1, INT_MAX / 2);
    int tail = MIN(total, keep);
    memmove(s->text, s->text + total - tail, (size_t)tail);
    s->text_len = tail;
}

void smp_accept(smp_ctx *s, int32_t token) {
    if (token < 0 || token >= s->n_vocab) return;
    if (s->hist_cap) {
        if (s->rep_n) {
            if (s->n_hist >= s->rep_n) s->counts[hist_at(s, s->rep_n - 1)]--; // leaves the window
            s->counts[token]++;
        }
        s->hist[s->head] = token;
        s->head = (s->head + 1) % s->hist_cap;
        if (s->n_hist < s->hist_cap) s->n_hist++;
    }
    if (s->text) track_breakers(s, token);
}

// --- candidate helpers -------------------------------------------------------------

// The total order of candidates: higher logit first, ties by lower id.
static inline bool better(const smp_cand *a, const smp_cand *b) {
    return a->logit > b->logit || (a->logit == b->logit && a->id < b->id);
}

static void swap_cand(smp_cand *a, smp_cand *b) {
    smp_cand t = *a;
    *a = *b;
    *b = t;
}

// Heap order: the root h[0] is the worst of the kept.
static void heap_down(smp_cand *h, int n, int i) {
    smp_cand x = h[i];
    for (;;) {
        int c = 2 * i + 1;
        if (c >= n) break;
        if (c + 1 < n && better(&h[c], &h[c + 1])) c++;
        if (!better(&x, &h[c])) break;
        h[i] = h[c];
        i = c;
    }
    h[i] = x;
}

// Sorts c[0..n) best first. Our own introsort rather than the C library's
// sort, which may call malloc (glibc's merge sort does above a few hundred
// entries): quicksort with a median-of-three pivot, insertion sort for short
// ranges, heap sort when the recursion gets too deep. The order is total, so
// every correct sort gives the same array.
static void sort_desc(smp_cand *c, int n) {
    int depth = 0;
    for (int m = n; m > 1; m >>= 1) depth += 2;
    while (n > 16) {
        if (depth-- == 0) { // heap sort: popping the worst to the back leaves best-first
            for (int i = n / 2 - 1; i >= 0; i--) heap_down(c, n, i);
            for (int i = n - 1; i > 0; i--) {
                swap_cand(&c[0], &c[i]);
                heap_down(c, i, 0);
            }
            return;
        }
        int mid = n / 2;
        if (better(&c[mid], &c[0])) swap_cand(&c[mid], &c[0]);
        if (better(&c[n - 1], &c[0])) swap_cand(&c[n - 1], &c[0]);
        if (better(&c[n - 1], &c[mid])) swap_cand(&c[n - 1], &c[mid]);
        // c[0] >= c[mid] >= c[n-1]: the median is the pivot, the ends are sentinels.
        smp_cand pivot = c[mid];
        int i = 0, j = n - 1;
        for (;;) {
            do i++; while (better(&c[i], &pivot));
            do j--; while (better(&pivot, &c[j]));
            if (i >= j) break;
            swap_cand(&c[i], &c[j]);
        }
        // c[0..j] >= pivot >= c[j+1..n); recurse on the smaller side.
        if (j + 1 < n - j - 1) {
            sort_desc(c, j + 1);
            c += j + 1;
            n -= j + 1;
        } else {
            sort_desc(c + j + 1, n - j - 1);
            n = j + 1;
        }
    }
    for (int i = 1; i < n; i++) {
        smp_cand x = c[i];
        int j = i;
        for (; j > 0 && better(&x, &c[j - 1]); j--) c[j] = c[j - 1];
        c[j] = x;
    }
}

// Moves the k best of c[0..n) to the front (unordered): quickselect.
static void select_top(smp_cand *c, int n, int k) {
    int lo = 0, hi = n - 1;
    while (lo < hi) {
        smp_cand pivot = c[lo + (hi - lo) / 2];
        int i = lo, j = hi;
        while (i <= j) {
            while (better(&c[i], &pivot)) i++;
            while (better(&pivot, &c[j])) j--;
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

// Moves the k best of c[0..n) to the front (unordered), like select_top, for
// k <= SMP_HEAP_MAX: a pass keeps the k best seen in a heap (most candidates
// fail one compare against its worst), then a partition pass moves every
// candidate at least as good as the k-th to the front. The order is total,
// so exactly k move.
static void select_top_heap(smp_cand *c, int n, int k, smp_cand *h) {
    memcpy(h, c, sizeof *h * (size_t)k);
    for (int i = k / 2 - 1; i >= 0; i--) heap_down(h, k, i);
    for (int i = k; i < n; i++) {
        if (c[i].logit < h[0].logit || !better(&c[i], &h[0])) continue;
        h[0] = c[i];
        heap_down(h, k, 0);
    }
    smp_cand kth = h[0];
    int j = 0;
    for (int i = 0; i < n; i++) {
        if (c[i].logit < kth.logit || better(&kth, &c[i])) continue;
        smp_cand t = c[j];
        c[j++] = c[i];
        c[i] = t;
    }
}

// Makes cand[0..want) the `want` best candidates, most likely first,
// extending the part already known sorted (never sorting it again).
static void sort_prefix(smp_ctx *s, int want) {
    want = MIN(want, s->n_cand);
    if (want <= s->n_sorted) return;
    smp_cand *c = s->cand + s->n_sorted;
    int rest = s->n_cand - s->n_sorted, need = want - s->n_sorted;
    if (need <= SMP_HEAP_MAX && rest >= SMP_HEAP_RATIO * need) select_top_heap(c, rest, need, s->heap);
    else if (need < rest) select_top(c, rest, need);
    sort_desc(c, need);
    s->n_sorted = want;
}

static void keep_top(smp_ctx *s, int k) {
    sort_prefix(s, k);
    s->n_cand = MIN(k, s->n_cand);
}

// Keeps the k best without ordering them (beyond the sorted prefix known).
static void keep_top_unordered(smp_ctx *s, int k) {
    if (k >= s->n_cand) return;
    if (k > s->n_sorted) {
        smp_cand *c = s->cand + s->n_sorted;
        int rest = s->n_cand - s->n_sorted, need = k - s->n_sorted;
        if (need <= SMP_HEAP_MAX && rest >= SMP_HEAP_RATIO * need) select_top_heap(c, rest, need, s->heap);
        else select_top(c, rest, need);
    }
    s->n_cand = k;
    s->n_sorted = MIN(s->n_sorted, k);
}

// p = softmax(logit) over the current candidates; returns the max logit.
// Four accumulators each for the max and the sum: one serial chain would
// cost its latency per element. The max is exact in any order and the sum's
// order is fixed, so the result is deterministic.
static float softmax(smp_ctx *s) {
    smp_cand *c = s->cand;
    int n = s->n_cand, i;
    float mx = c[0].logit;
    if (s->n_sorted == 0) {
        float m[4] = {mx, mx, mx, mx};
        for (i = 0; i + 4 <= n; i += 4)
            for (int j = 0; j < 4; j++) m[j] = c[i + j].logit > m[j] ? c[i + j].logit : m[j];
        for (; i < n; i++) m[0] = c[i].logit > m[0] ? c[i].logit : m[0];
        mx = MAX(MAX(m[0], m[1]), MAX(m[2], m[3]));
    }
    double sum[4] = {0, 0, 0, 0};
    for (i = 0; i + 4 <= n; i += 4)
        for (int j = 0; j < 4; j++) {
            c[i + j].p = expf(c[i + j].logit - mx);
            sum[j] += c[i + j].p;
        }
    for (; i < n; i++) {
        c[i].p = expf(c[i].logit - mx);
        sum[0] += c[i].p;
    }
    float inv = (float)(1.0 / ((sum[0] + sum[1]) + (sum[2] + sum[3])));
    for (i = 0; i < n; i++) c[i].p *= inv;
    return mx;
}

// Keeps only the best candidate (dense: the first of the largest logits).
static void keep_best(smp_ctx *s) {
    if (s->is_dense) {
        const float *x = s->dense;
        int best = -1;
        float mx = -INFINITY;
        for (int i = 0; i < s->n_vocab; i++)
            if (x[i] > mx) mx = x[i], best = i;
        s->is_dense = false;
        s->n_cand = best >= 0;
        s->n_sorted = s->n_cand;
        if (best >= 0) s->cand[0] = (smp_cand){.id = best, .logit = mx, .p = 1};
        return;
    }
    int best = 0;
    if (s->n_sorted == 0)
        for (int i = 1; i < s->n_cand; i++)
            if (better(&s->cand[i], &s->cand[best])) best = i;
    s->cand[0] = s->cand[best];
    s->n_cand = 1;
    s->n_sorted = 1;
}

// The dense row, writable: copies the logits into work on the first patch.
static float *dense_mut(smp_ctx *s) {
    if (s->dense != s->work) {
        memcpy(s->work, s->dense, sizeof *s->work * (size_t)s->n_vocab);
        s->dense = s->work;
    }
    return s->work;
}

// Turns the dense row into candidates, keeping the logits >= thresh (and
// dropping -INFINITY and NaN whatever thresh is). Ids stay ascending.
static void materialize(smp_ctx *s, float thresh) {
    const float *x = s->dense;
    smp_cand *c = s->cand;
    int k = 0;
    if (!(thresh > -INFINITY)) thresh = -FLT_MAX;
    for (int i = 0; i < s->n_vocab; i++)
        if (x[i] >= thresh) c[k++] = (smp_cand){.id = i, .logit = x[i], .p = 0};
    s->n_cand = k;
    s->n_sorted = 0;
    s->is_dense = false;
}

static void materialize_all(smp_ctx *s) {
    if (s->is_dense) materialize(s, -INFINITY);
}

// The largest logit of the dense row (-INFINITY when none is a number).
static float dense_max(const smp_ctx *s) {
    const float *x = s->dense;
    float m[4] = {-INFINITY, -INFINITY, -INFINITY, -INFINITY};
    int i = 0;
    for (; i + 4 <= s->n_vocab; i += 4)
        for (int j = 0; j < 4; j++) m[j] = x[i + j] > m[j] ? x[i + j] : m[j];
    for (; i < s->n_vocab; i++) m[0] = x[i] > m[0] ? x[i] : m[0];
    return MAX(MAX(m[0], m[1]), MAX(m[2], m[3]));
}

// Top-k straight from the dense row, for k <= SMP_HEAP_MAX: a heap of the k
// best seen (ids only grow, so an equal logit later is never better), then
// the k sorted become the candidates, minus any -INFINITY among them.
static void top_k_dense(smp_ctx *s, int k) {
    const float *x = s->dense;
    smp_cand *h = s->heap;
    for (int i = 0; i < k; i++) h[i] = (smp_cand){.id = i, .logit = x[i] > -INFINITY ? x[i] : -INFINITY, .p = 0};
    for (int i = k / 2 - 1; i >= 0; i--) heap_down(h, k, i);
    float worst = h[0].logit;
    int n = s->n_vocab, i = k;
    for (; i + 8 <= n; i += 8) {
        // Most blocks hold nothing better than the worst kept: one branch
        // per 8 (the compares are branch-free and NaN never passes).
        int any = (x[i] > worst) | (x[i + 1] > worst) | (x[i + 2] > worst) | (x[i + 3] > worst) |
                  (x[i + 4] > worst) | (x[i + 5] > worst) | (x[i + 6] > worst) | (x[i + 7] > worst);
        if (!any) continue;
        for (int j = i; j < i + 8; j++) {
            if (!(x[j] > worst)) continue;
            h[0] = (smp_cand){.id = j, .logit = x[j], .p = 0};
            heap_down(h, k, 0);
            worst = h[0].logit;
        }
    }
    for (; i < n; i++) {
        if (!(x[i] > worst)) continue;
        h[0] = (smp_cand){.id = i, .logit = x[i], .p = 0};
        heap_down(h, k, 0);
        worst = h[0].logit;
    }
    sort_desc(h, k);
    while (k > 0 && !(h[k - 1].logit > -INFINITY)) k--;
    memcpy(s->cand, h, sizeof *h * (size_t)k);
    s->n_cand = k;
    s->n_sorted = k;
    s->is_dense = false;
}

// Walks candidates best-first (by the key in .logit, sorting only as far as
// needed) and returns the length of the shortest prefix whose mass (.p)
// reaches `target` (> when strict, else >=) with at least min_keep entries.
// On return cand[0..result) are sorted.
static int mass_prefix(smp_ctx *s, double target, bool strict, int min_keep) {
    int n = s->n_cand;
    double cum = 0;
    for (int i = 0; i < n; i++) {
        if (i == s->n_sorted) sort_prefix(s, n <= 1024 ? n : MAX(256, 4 * i));
        cum += s->cand[i].p;
        if ((strict ? cum > target : cum >= target) && i + 1 >= min_keep) return i + 1;
    }
    return n;
}

// The same cut for a large unsorted set without sorting it: a quickselect
// that partitions by the key (.logit) and descends by mass (.p). Moves the
// prefix to the front, unordered, and returns its length. Expected O(n);
// the sums run in another order than a sorted walk's, so a cut can differ
// from it only when the target equals a partial sum to rounding.
static int mass_select(smp_ctx *s, double target, bool strict) {
    smp_cand *c = s->cand;
    int lo = 0, hi = s->n_cand; // the cut lies in (lo, hi]; c[0..lo) are in it
    double acc = 0;             // mass of c[0..lo)
#define REACHED(m) (strict ? (m) > target : (m) >= target)
    while (hi - lo > 64) {
        // Median-of-three pivot, moved to the end of the range.
        int a = lo, b = lo + (hi - lo) / 2, e = hi - 1, mid;
        if (better(&c[a], &c[b])) mid = better(&c[b], &c[e]) ? b : better(&c[a], &c[e]) ? e : a;
        else mid = better(&c[a], &c[e]) ? a : better(&c[b], &c[e]) ? e : b;
        smp_cand pivot = c[mid];
        c[mid] = c[e];
        c[e] = pivot;
        int m = lo;
        double upper = 0;
        for (int i = lo; i < e; i++)
            if (better(&c[i], &pivot)) {
                upper += c[i].p;
                smp_cand t = c[m];
                c[m++] = c[i];
                c[i] = t;
            }
        c[e] = c[m];
        c[m] = pivot;
        if (REACHED(acc + upper)) hi = m; // the cut is among the better ones
        else if (REACHED(acc + upper + pivot.p)) return m + 1;
        else acc += upper + pivot.p, lo = m + 1;
    }
    sort_desc(c + lo, hi - lo);
    for (int i = lo; i < hi; i++) {
        acc += c[i].p;
        if (REACHED(acc)) return i + 1;
    }
#undef REACHED
    return hi;
}

// Keeps the shortest best-first prefix with mass reaching target, and at
// least min_keep: by a sorted walk when sorted or small, else by mass_select.
static void keep_mass(smp_ctx *s, double target, bool strict, int min_keep) {
    int n = s->n_cand, m;
    if (s->n_sorted == n || n <= 1024) {
        m = mass_prefix(s, target, strict, min_keep);
    } else {
        m = mass_select(s, target, strict);
        s->n_sorted = 0;
        if (m < min_keep) {
            keep_top(s, MIN(min_keep, n));
            return;
        }
    }
    s->n_cand = m;
    if (s->n_sorted > m) s->n_sorted = m;
}

// --- steps -------------------------------------------------------------------------

// Repetition penalties (llama.cpp's "penalties"): for each token seen in the
// last repeat_last_n accepted tokens, count times: a positive logit is divided
// by repeat_penalty and a non-positive one multiplied (dividing a negative
// logit would make the token more likely), then count * frequency_penalty +
// presence_penalty is subtracted. Discourages loops over a short window.
static void step_penalties(smp_ctx *s) {
    float rep = s->p.repeat_penalty, freq = s->p.frequency_penalty, pres = s->p.presence_penalty;
    if (s->rep_n == 0 || s->n_hist == 0 || (rep == 1.0f && freq == 0.0f && pres == 0.0f)) return;
    int window = MIN(s->n_hist, s->rep_n);
    if (s->is_dense) {
        // Visit each distinct token of the window once: a negated count
        // marks a token done (counts of tokens in the window are > 0).
        float *x = dense_mut(s);
        for (int k = 0; k < window; k++) {
            int32_t t = hist_at(s, k);
            int count = s->counts[t];
            if (count < 0) continue;
            x[t] = x[t] > 0 ? x[t] / rep : x[t] * rep;
            x[t] -= (float)count * freq + pres;
            s->counts[t] = -count;
        }
        for (int k = 0; k < window; k++) {
            int32_t t = hist_at(s, k);
            if (s->counts[t] < 0) s->counts[t] = -s->counts[t];
        }
    } else {
        for (int i = 0; i < s->n_cand; i++) {
            smp_cand *c = &s->cand[i];
            int count = s->counts[c->id];
            if (count == 0) continue;
            c->logit = c->logit > 0 ? c->logit / rep : c->logit * rep;
            c->logit -= (float)count * freq + pres;
        }
    }
    s->n_sorted = 0;
}

// DRY (koboldcpp's "don't repeat yourself", as llama.cpp ported it): if the
// newest tokens repeat an earlier stretch of the history, the token that
// followed that stretch would extend the repeat; it is penalized by
// multiplier * base^(length - allowed_length) once the repeated length
// reaches allowed_length. Repeats never reach back across a sequence breaker
// (a newline, a speaker's colon…), so common scaffolding such as
// "\nName:" is not punished, and tokens that contain a breaker are never
// penalized. Catches long verbatim loops that the windowed penalties miss.
//
// Breakers are matched in the text, not in token ids: smp_accept keeps the
// tail of the decoded text and notes when a breaker ends inside a token,
// whatever the tokens it spans. llama.cpp instead precomputes, for each
// token that ends with a breaker's prefix, the tokenization of the rest of
// the breaker, and so misses breakers split in other ways; the limit
// (repeats stop at the token where the newest breaker ends) is the same.
static void step_dry(smp_ctx *s) {
    if (s->dry_n == 0) return;
    int allowed = s->p.dry_allowed_length;
    int L = MIN(s->n_hist, s->dry_n);
    if (L <= allowed) return;
    int rep_limit = MIN(L, s->since_break);
    if (rep_limit < allowed) return;
    int32_t *r = s->dry_seq, *z = s->dry_z;
    for (int k = 0; k < L; k++) r[k] = hist_at(s, k);
    // Z-algorithm on the newest-first sequence: z[k] = how many tokens
    // ending k positions back equal the newest tokens (the repeat's length).
    int lo = 0, hi = 0; // the rightmost match box r[lo..hi) == r[0..hi-lo)
    z[0] = L;
    for (int k = 1; k < L; k++) {
        int zk = k < hi ? MIN(hi - k, z[k - lo]) : 0;
        while (k + zk < L && r[zk] == r[k + zk]) zk++;
        if (k + zk > hi) lo = k, hi = k + zk;
        z[k] = zk;
    }
    // The token after each repeat (r[k - 1], newer than the match) extends it.
    int n_touched = 0;
    for (int k = 1; k < L; k++) {
        int len = MIN(z[k], rep_limit);
        if (len < allowed) continue;
        int32_t t = r[k - 1];
        if (s->dry_max[t] == 0) s->dry_touched[n_touched++] = t;
        if (len > s->dry_max[t]) s->dry_max[t] = len;
    }
    if (n_touched == 0) return;
    // Clamp the exponent so base^exp stays finite in float (as llama.cpp).
    double base = s->p.dry_base, mult = s->p.dry_multiplier;
    int max_exp = base > 1.000001 ? (int)(88.7228391 / log(base)) : 0;
    if (s->is_dense) {
        float *x = dense_mut(s);
        for (int i = 0; i < n_touched; i++) {
            int32_t t = s->dry_touched[i];
            if (s->breaker_tok && bit_get(s->breaker_tok, t)) continue;
            int e = s->dry_max[t] - allowed;
            if (max_exp > 0) e = MIN(e, max_exp);
            x[t] -= (float)(mult * pow(base, e));
        }
    } else {
        for (int i = 0; i < s->n_cand; i++) {
            int32_t t = s->cand[i].id;
            if (s->dry_max[t] == 0 || (s->breaker_tok && bit_get(s->breaker_tok, t))) continue;
            int e = s->dry_max[t] - allowed;
            if (max_exp > 0) e = MIN(e, max_exp);
            s->cand[i].logit -= (float)(mult * pow(base, e));
        }
    }
    for (int i = 0; i < n_touched; i++) s->dry_max[s->dry_touched[i]] = 0;
    s->n_sorted = 0;
}

// Top-n-sigma: keeps the logits within n standard deviations of the best
// (logit >= max - n * sigma, over the current candidates). Unlike top-p it
// works on logits before temperature, so the kept set does not widen with
// heat.
static void step_top_n_sigma(smp_ctx *s) {
    float nsig = s->p.top_n_sigma;
    if (nsig <= 0) return;
    if (s->is_dense) {
        const float *x = s->dense;
        double mx = -INFINITY, sum = 0, acc = 0;
        int count = 0;
        for (int i = 0; i < s->n_vocab; i++)
            if (x[i] > -INFINITY) {
                mx = MAX(mx, (double)x[i]);
                sum += x[i];
                count++;
            }
        if (count == 0) return;
        double mean = sum / count;
        for (int i = 0; i < s->n_vocab; i++)
            if (x[i] > -INFINITY) acc += (x[i] - mean) * (x[i] - mean);
        materialize(s, (float)(mx - nsig * sqrt(acc / count)));
        return;
    }
    int n = s->n_cand;
    if (n <= 1) return;
    double mx = -INFINITY, sum = 0, acc = 0;
    for (int i = 0; i < n; i++) {
        mx = MAX(mx, (double)s->cand[i].logit);
        sum += s->cand[i].logit;
    }
    double mean = sum / n;
    for (int i = 0; i < n; i++) acc += (s->cand[i].logit - mean) * (s->cand[i].logit - mean);
    float thresh = (float)(mx - nsig * sqrt(acc / n));
    int k = 0;
    for (int i = 0; i < n; i++)
        if (s->cand[i].logit >= thresh) s->cand[k++] = s->cand[i];
    s->n_cand = k;
    s->n_sorted = s->n_sorted == n ? k : 0;
}

// Top-k: keeps the k most likely. Partial selection, then a sort of the k.
static void step_top_k(smp_ctx *s) {
    int k = s->p.top_k;
    if (k <= 0) return;
    if (s->is_dense) {
        if (k >= s->n_vocab) return;
        if (k <= SMP_HEAP_MAX && s->n_vocab >= SMP_HEAP_RATIO * k) {
            top_k_dense(s, k);
            return;
        }
        materialize_all(s);
    }
    if (k < s->n_cand) keep_top(s, k);
}

// Locally typical sampling (Meister et al.): keeps the tokens whose
// information -log p is closest to the distribution's entropy, the fewest
// such that their mass exceeds typical_p. Drops both the too-obvious and
// the too-surprising. The result is ordered by that closeness.
static void step_typical(smp_ctx *s) {
    if (s->p.typical_p >= 1.0f) return;
    materialize_all(s);
    if (s->n_cand <= 1) return;
    softmax(s);
    int n = s->n_cand;
    double h = 0;
    for (int i = 0; i < n; i++)
        if (s->cand[i].p > 0) h -= s->cand[i].p * log(s->cand[i].p);
    // Sort keys go in tmp (.logit = -distance, .id = index into cand), so the
    // best-first machinery selects the closest first.
    smp_cand *saved = s->cand;
    for (int i = 0; i < n; i++) {
        float p = saved[i].p;
        float dist = p > 0 ? (float)fabs(-log(p) - h) : INFINITY;
        s->tmp[i] = (smp_cand){.id = i, .logit = -dist, .p = p};
    }
    s->cand = s->tmp;
    s->tmp = saved;
    s->n_sorted = 0;
    keep_mass(s, s->p.typical_p, true, s->p.min_keep);
    int m = s->n_cand;
    // Gather the kept candidates, in closeness order, back into the array.
    smp_cand *keys = s->cand;
    for (int j = 0; j < m; j++) keys[j] = saved[keys[j].id];
    s->cand = saved;
    s->tmp = keys;
    memcpy(s->cand, keys, sizeof *keys * (size_t)m);
    s->n_cand = m;
    s->n_sorted = 0;
}

// Top-p (nucleus): keeps the most likely tokens until their mass reaches
// top_p. Sorts only as far as the cut (in growing chunks) when the set is
// small or sorted (after top-k); a large unsorted set is cut by a mass-guided
// quickselect without sorting.
static void step_top_p(smp_ctx *s) {
    if (s->p.top_p >= 1.0f) return;
    materialize_all(s);
    if (s->n_cand <= 1) return;
    softmax(s);
    keep_mass(s, s->p.top_p, false, s->p.min_keep);
}

// Min-p: keeps tokens with p >= min_p * p_max, i.e. logit >= max + log(min_p):
// a cut that scales with the model's confidence. One pass, no sort.
static void step_min_p(smp_ctx *s) {
    float mp = s->p.min_p;
    if (mp <= 0) return;
    if (s->is_dense) {
        float thresh = dense_max(s) + logf(mp);
        int count = 0;
        if (s->p.min_keep > 1)
            for (int i = 0; i < s->n_vocab; i++) count += s->dense[i] >= thresh;
        if (s->p.min_keep <= 1 || count >= s->p.min_keep) { // the best always passes
            materialize(s, thresh);
            return;
        }
        materialize_all(s);
    }
    int n = s->n_cand;
    if (n <= 1) return;
    float mx = s->cand[0].logit;
    if (s->n_sorted == 0)
        for (int i = 1; i < n; i++) mx = MAX(mx, s->cand[i].logit);
    float thresh = mx + logf(mp);
    int min_keep = MIN(s->p.min_keep, n);
    if (s->n_sorted == n) {
        int i = 1;
        while (i < n && (s->cand[i].logit >= thresh || i < min_keep)) i++;
        s->n_cand = i;
        s->n_sorted = i;
    } else {
        int count = 0;
        for (int i = 0; i < n; i++) count += s->cand[i].logit >= thresh;
        if (count >= min_keep) {
            int k = 0;
            for (int i = 0; i < n; i++)
                if (s->cand[i].logit >= thresh) s->cand[k++] = s->cand[i];
            s->n_cand = k;
            s->n_sorted = s->n_sorted == n ? k : 0;
        } else {
            keep_top(s, min_keep);
        }
    }
}

// XTC, "exclude top choices" (koboldcpp / llama.cpp): with probability
// xtc_probability, removes every token with p >= xtc_threshold except the
// least likely of them, steering away from the most predictable continuation
// while keeping a still-plausible one. Acts only when two or more tokens
// pass the threshold and at least min_keep remain; a threshold above 0.5 is
// off (at most one token can pass it).
static void step_xtc(smp_ctx *s) {
    float prob = s->p.xtc_probability, thr = s->p.xtc_threshold;
    if (prob <= 0 || thr > 0.5f) return;
    materialize_all(s);
    int n = s->n_cand;
    if (n < 2) return;
    if (smp_rng_uniform(&s->rng) > prob) return;
    softmax(s);
    int above = 0, last = -1; // last: the least likely above the threshold
    for (int i = 0; i < n; i++)
        if (s->cand[i].p >= thr) {
            above++;
            if (last < 0 || better(&s->cand[last], &s->cand[i])) last = i;
        }
    if (above < 2 || n - (above - 1) < s->p.min_keep) return;
    int k = 0;
    for (int i = 0; i < n; i++)
        if (s->cand[i].p < thr || i == last) s->cand[k++] = s->cand[i];
    s->n_cand = k;
    s->n_sorted = s->n_sorted == n ? k : 0;
}

// Divides logits by t; t <= 0 keeps only the best candidate (greedy).
static void apply_temp(smp_ctx *s, float t) {
    if (t <= 0) {
        keep_best(s);
        return;
    }
    if (t == 1.0f) return;
    materialize_all(s);
    float inv = 1.0f / t;
    for (int i = 0; i < s->n_cand; i++) s->cand[i].logit *= inv;
}

// Temperature, or dynamic temperature (llama.cpp's "temp-ext", after
// kalomaze): with dynatemp_range > 0 the temperature moves within
// [max(0, temp - range), temp + range] by the normalized entropy H / log(n)
// raised to dynatemp_exponent — hot when the model is unsure, cold when it
// is confident.
static void step_temperature(smp_ctx *s) {
    float range = s->p.dynatemp_range, t = s->p.temp;
    if (range > 0) {
        materialize_all(s);
        int n = s->n_cand;
        if (n <= 1) return;
        float lo = MAX(0.0f, t - range), hi = t + range;
        softmax(s);
        double h = 0;
        for (int i = 0; i < n; i++)
            if (s->cand[i].p > 0) h -= s->cand[i].p * log(s->cand[i].p);
        double norm = h / log((double)n);
        t = (float)(lo + (hi - lo) * pow(norm, s->p.dynatemp_exponent));
    }
    apply_temp(s, t);
}

// --- draws -------------------------------------------------------------------------

// Draws from softmax over the candidates; returns the index.
static int draw(smp_ctx *s) {
    if (s->n_cand == 1) {
        s->cand[0].p = 1;
        return 0;
    }
    softmax(s);
    double r = smp_rng_uniform(&s->rng), cum = 0;
    for (int i = 0; i < s->n_cand; i++) {
        cum += s->cand[i].p;
        if (r < cum) return i;
    }
    return s->n_cand - 1; // rounding left r above the last sum
}

// Mirostat v1 (Basu et al., "Mirostat: a neural text decoding algorithm that
// directly controls perplexity"): estimates the Zipf exponent s from the top
// m probabilities, derives the k whose top-k truncation would give surprise
// mu, samples from the top k, and moves mu by eta * (observed surprise - tau)
// so the text's surprise (bits per token) tracks tau.
static int mirostat_v1(smp_ctx *s) {
    int m = SMP_MIROSTAT_M;
    sort_prefix(s, m);
    int n = s->n_cand, lim = MIN(m - 1, n - 1);
    double sum_tb = 0, sum_tt = 0;
    for (int i = 0; i < lim; i++) {
        double t = log((double)(i + 2) / (double)(i + 1));
        double b = (double)s->cand[i].logit - (double)s->cand[i + 1].logit; // log(p_i / p_i+1)
        sum_tb += t * b;
        sum_tt += t * t;
    }
    double s_hat = sum_tt > 0 ? sum_tb / sum_tt : 0;
    double eps = s_hat - 1;
    double k = pow(eps * pow(2.0, s->mu) / (1 - pow((double)s->n_vocab, -eps)), 1 / s_hat);
    int ki = !(k < n) ? n : k < 1 ? 1 : (int)k; // NaN (flat distribution): no cut
    keep_top_unordered(s, ki);
    int idx = draw(s);
    double surprise = -log2(s->cand[idx].p);
    s->mu -= s->p.mirostat_eta * (float)(surprise - s->p.mirostat_tau);
    return idx;
}

// Mirostat v2: drops tokens whose surprise -log2 p exceeds mu (keeping at
// least the best), samples from the rest renormalized, and updates mu as v1.
static int mirostat_v2(smp_ctx *s) {
    softmax(s);
    int n = s->n_cand, k = 0;
    float pmin = exp2f(-s->mu);
    for (int i = 0; i < n; i++)
        if (s->cand[i].p >= pmin) s->cand[k++] = s->cand[i];
    if (k == 0) {
        keep_best(s); // every token is too surprising: the best one stays
    } else {
        s->n_cand = k;
        s->n_sorted = s->n_sorted == n ? k : 0;
    }
    int idx = draw(s);
    double surprise = -log2(s->cand[idx].p);
    s->mu -= s->p.mirostat_eta * (float)(surprise - s->p.mirostat_tau);
    return idx;
}

// --- the chain ---------------------------------------------------------------------

static bool is_truncation(smp_kind k) {
    return k == SMP_KIND_TOP_N_SIGMA || k == SMP_KIND_TOP_K || k == SMP_KIND_TYPICAL || k == SMP_KIND_TOP_P ||
           k == SMP_KIND_MIN_P || k == SMP_KIND_XTC;
}

static void run_step(smp_ctx *s, smp_kind k) {
    switch (k) {
    case SMP_KIND_PENALTIES: step_penalties(s); break;
    case SMP_KIND_DRY: step_dry(s); break;
    case SMP_KIND_TOP_N_SIGMA: step_top_n_sigma(s); break;
    case SMP_KIND_TOP_K: step_top_k(s); break;
    case SMP_KIND_TYPICAL: step_typical(s); break;
    case SMP_KIND_TOP_P: step_top_p(s); break;
    case SMP_KIND_MIN_P: step_min_p(s); break;
    case SMP_KIND_XTC: step_xtc(s); break;
    case SMP_KIND_TEMPERATURE: step_temperature(s); break;
    case SMP_KIND_COUNT: break;
    }
}

// The constraint sees every token as a candidate in id order; its verdicts
// go back into the dense row.
static bool apply_constraint(smp_ctx *s) {
    int n = s->n_vocab;
    for (int i = 0; i < n; i++) s->cand[i] = (smp_cand){.id = i, .logit = s->dense[i], .p = 0};
    sim_status st = s->cfn(s->cctx, s->cand, n, &s->cerr);
    if (st != SIM_OK) {
        if (s->cerr.code == SIM_OK) err_set(&s->cerr, st, "sampling: the constraint failed (%s)", sim_status_str(st));
        s->is_dense = false;
        s->n_cand = 0;
        return false;
    }
    float *x = s->work;
    for (int i = 0; i < n; i++) {
        ASSERT(s->cand[i].id == i); // a constraint must not reorder
        x[i] = s->cand[i].logit;
    }
    s->dense = x;
    return true;
}

int32_t smp_sample(smp_ctx *s, const float *logits) {
    s->dense = logits;
    s->is_dense = true;
    s->n_cand = s->n_vocab;
    s->n_sorted = 0;
    s->last_token = SMP_NO_TOKEN;
    s->last_p = 0;
    s->cerr.code = SIM_OK;
    s->cerr.msg[0] = '\0';
    if (s->cfn && !apply_constraint(s)) return SMP_FAILED;
    if (s->n_bias) {
        float *x = dense_mut(s);
        for (int i = 0; i < s->n_bias; i++) x[s->bias[i].token] += s->bias[i].bias;
    }
    if (s->p.mirostat) {
        for (int i = 0; i < s->p.n_order; i++)
            if (!is_truncation(s->p.order[i]) && s->p.order[i] != SMP_KIND_TEMPERATURE) run_step(s, s->p.order[i]);
        apply_temp(s, s->p.temp);
        materialize_all(s);
        if (s->n_cand == 0) return SMP_NO_TOKEN;
        int idx = s->p.mirostat == 1 ? mirostat_v1(s) : mirostat_v2(s);
        s->last_token = s->cand[idx].id;
        s->last_p = s->cand[idx].p;
        return s->last_token;
    }
    for (int i = 0; i < s->p.n_order && (s->is_dense || s->n_cand > 0); i++) run_step(s, s->p.order[i]);
    materialize_all(s);
    if (s->n_cand == 0) return SMP_NO_TOKEN;
    int idx = draw(s);
    s->last_token = s->cand[idx].id;
    s->last_p = s->cand[idx].p;
    return s->last_token;
}

// --- inspection --------------------------------------------------------------------

const sim_err *smp_last_err(const smp_ctx *s) { return &s->cerr; }

int smp_last_candidates(smp_ctx *s, const smp_cand **out) {
    sort_prefix(s, s->n_cand);
    *out = s->cand;
    return s->n_cand;
}

int smp_last_probs(smp_ctx *s, smp_cand *out, int n, float *chosen_p) {
    if (chosen_p) *chosen_p = s->last_p;
    if (s->last_token == SMP_NO_TOKEN || n <= 0) return 0;
    n = MIN(n, s->n_cand);
    sort_prefix(s, n);
    memcpy(out, s->cand, sizeof *out * (size_t)n);
    return n;
}
