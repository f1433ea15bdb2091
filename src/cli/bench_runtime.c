// bench_runtime.c — `simularity bench --runtime`: what the runtime saves,
// each saving measured against the work it replaces, in one run:
//   - a growing conversation (turns appended to a session) vs decoding the
//     whole conversation again every turn;
//   - loading a state file vs processing the same prompt again;
//   - a context shift vs processing the kept tokens again;
//   - the cost of a JSON grammar per generated token.
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "cli/cli.h"
#include "infer/grammar.h"
#include "infer/jsonschema.h"
#include "infer/session.h"

static double secs(uint64_t t0) { return (double)(time_ns() - t0) / 1e9; }

typedef struct rt_env {
    model *m;
    fwd_ctx *c;
    int32_t *toks; // (n_tok) random prompt tokens after a BOS
    int n_tok;
    sim_err err;
} rt_env;

// A fresh session holding toks[0..n); returns the seconds it took, or -1.
static double fill(rt_env *e, sess **s, int n) {
    kv_clear(fwd_kv(e->c));
    sess_params sp = sess_default_params();
    if (sess_new(s, e->c, &sp, &e->err) != SIM_OK) return -1;
    uint64_t t0 = time_ns();
    if (sess_set_prompt(*s, e->toks, n, NULL, &e->err) != SIM_OK) return -1;
    return secs(t0);
}

static bool bench_conversation(rt_env *e, int turns, int per_turn) {
    sess *s;
    kv_clear(fwd_kv(e->c));
    sess_params sp = sess_default_params();
    if (sess_new(&s, e->c, &sp, &e->err) != SIM_OK) return false;
    double reuse = 0, fresh = 0;
    for (int t = 1; t <= turns; t++) {
        int n = 1 + t * per_turn;
        uint64_t t0 = time_ns();
        if (sess_set_prompt(s, e->toks, n, NULL, &e->err) != SIM_OK) return false;
        reuse += secs(t0);
        sess *f;
        sess_params fp = sess_default_params();
        fp.seq = 1;
        if (sess_new(&f, e->c, &fp, &e->err) != SIM_OK) return false;
        t0 = time_ns();
        if (sess_set_prompt(f, e->toks, n, NULL, &e->err) != SIM_OK) return false;
        fresh += secs(t0);
        sess_free(f);
    }
    printf("conversation: %d turns of %d tokens: %.3f s appending to a session, %.3f s decoding everything each turn"
           " (%.1fx)\n", turns, per_turn, reuse, fresh, fresh / reuse);
    sess_free(s);
    return true;
}

static bool bench_state_file(rt_env *e, int n) {
    sess *s;
    double pp = fill(e, &s, n);
    if (pp < 0) return false;
    char path[] = "/tmp/simularity-bench-state-XXXXXX";
    int fd = mkstemp(path);
    if (fd < 0) return cli_fail("cannot create a temporary file"), false;
    close(fd);
    uint64_t t0 = time_ns();
    bool ok = sess_save(s, path, &e->err) == SIM_OK;
    double save = secs(t0);
    sess_free(s);
    sess_params sp = sess_default_params();
    kv_clear(fwd_kv(e->c));
    ok = ok && sess_new(&s, e->c, &sp, &e->err) == SIM_OK;
    t0 = time_ns();
    sess_stats st = {0};
    ok = ok && sess_load(s, path, &e->err) == SIM_OK && sess_set_prompt(s, e->toks, n, &st, &e->err) == SIM_OK;
    double load = secs(t0);
    unlink(path);
    if (ok)
        printf("state file:   %d-token prompt: processing %.3f s; save %.3f s; load + resume %.3f s (%d token decoded)"
               " (%.0fx faster than processing)\n", n, pp, save, load, st.n_decoded, pp / load);
    sess_free(s);
    return ok;
}

static bool bench_shift(rt_env *e, int n) {
    sess *s;
    if (fill(e, &s, n) < 0) return false;
    int keep = 1, discard = (n - keep) / 2;
    uint64_t t0 = time_ns();
    kv_seq_rm(fwd_kv(e->c), 0, keep, keep + discard);
    fwd_seq_shift(e->c, 0, keep + discard, -1, -discard);
    double shift = secs(t0);
    sess_free(s);
    // The alternative: process the tokens that remain after the shift again.
    int32_t *rest = mem_alloc((size_t)(n - discard) * sizeof *rest);
    if (!rest) return false;
    rest[0] = e->toks[0];
    memcpy(rest + 1, e->toks + keep + discard, (size_t)(n - keep - discard) * sizeof *rest);
    kv_clear(fwd_kv(e->c));
    sess_params sp = sess_default_params();
    bool ok = sess_new(&s, e->c, &sp, &e->err) == SIM_OK;
    t0 = time_ns();
    ok = ok && sess_set_prompt(s, rest, n - discard, NULL, &e->err) == SIM_OK;
    double redo = secs(t0);
    if (ok)
        printf("shift:        dropping %d of %d tokens and re-rotating %d keys: %.4f s; processing the %d kept again:"
               " %.3f s (%.0fx)\n", discard, n, n - keep - discard, shift, n - discard, redo, redo / shift);
    mem_free(rest);
    sess_free(s);
    return ok;
}

static bool on_tok(void *ud, int seq, const char *t, size_t n) {
    (void)ud, (void)seq, (void)t, (void)n;
    return true;
}

typedef struct gram_ctx {
    gram_state *st;
    const gram_vocab *gv;
    const tok_vocab *v;
} gram_ctx;

static sim_status gram_constrain(void *ctx, smp_cand *c, int n, sim_err *err) {
    gram_ctx *g = ctx;
    return gram_filter(g->st, g->gv, c, (size_t)n, err);
}

static sim_status gram_token(void *ud, int seq, int32_t tok, sim_err *err) {
    (void)seq;
    gram_ctx *g = ud;
    return tok_is_eog(g->v, tok) ? SIM_OK : gram_accept_token(g->st, g->gv, tok, err);
}

static bool bench_grammar(rt_env *e, int n_gen) {
    const char *schema = "{\"type\":\"object\",\"properties\":{\"name\":{\"type\":\"string\"},"
                         "\"lines\":{\"type\":\"array\",\"items\":{\"type\":\"string\"}},"
                         "\"mood\":{\"enum\":[\"happy\",\"sad\",\"angry\"]}},\"required\":[\"name\",\"lines\",\"mood\"]}";
    char *gbnf = NULL;
    gram_grammar *g = NULL;
    gram_vocab *gv = NULL;
    gram_ctx gc = {.v = e->m->vocab};
    bool ok = jsch_to_gbnf(schema, strlen(schema), &gbnf, &e->err) == SIM_OK &&
              gram_parse(&g, gbnf, strlen(gbnf), &e->err) == SIM_OK && gram_vocab_new(&gv, e->m->vocab, &e->err) == SIM_OK;
    mem_free(gbnf);
    double per_tok[2] = {0, 0};
    for (int with = 0; with < 2 && ok; with++) {
        sess *s;
        ok = fill(e, &s, 64) >= 0;
        smp_params sp = smp_default_params();
        sp.seed = 7;
        smp_ctx *smp = NULL;
        ok = ok && smp_new(&smp, e->m->hp.n_vocab, &sp, &e->err) == SIM_OK;
        if (ok && with) {
            gc.gv = gv;
            ok = gram_state_new(&gc.st, g, &e->err) == SIM_OK;
            smp_set_constraint(smp, gram_constrain, &gc);
        }
        sess_gen_params gp = {.n_predict = n_gen, .on_text = on_tok, .on_token = with ? gram_token : NULL, .ud = &gc};
        sess_result r = {0};
        uint64_t t0 = time_ns();
        ok = ok && sess_generate(s, smp, &gp, &r, &e->err) == SIM_OK;
        per_tok[with] = r.n_tokens ? secs(t0) / r.n_tokens : 0;
        sess_result_free(&r);
        gram_state_free(gc.st);
        gc.st = NULL;
        smp_free(smp);
        sess_free(s);
    }
    if (ok)
        printf("grammar:      %.2f ms per token free, %.2f ms with a JSON-Schema grammar (+%.3f ms, %.1f%%)\n",
               per_tok[0] * 1e3, per_tok[1] * 1e3, (per_tok[1] - per_tok[0]) * 1e3,
               100 * (per_tok[1] - per_tok[0]) / per_tok[0]);
    gram_vocab_free(gv);
    gram_free(g);
    return ok;
}

int bench_runtime(model *m, int n_threads, int n_prompt) {
    rt_env e = {.m = m, .n_tok = n_prompt};
    fwd_params fp = fwd_default_params();
    fp.n_ctx = 2 * n_prompt + 64; // the conversation runs two sessions side by side
    fp.n_threads = n_threads;
    fp.n_outputs = 1;
    if (fwd_new(&e.c, m, &fp, &e.err) != SIM_OK) return cli_fail("%s", e.err.msg);
    e.toks = mem_alloc((size_t)n_prompt * sizeof *e.toks);
    if (!e.toks) {
        fwd_free(e.c);
        return cli_fail("out of memory");
    }
    smp_rng rng;
    smp_rng_seed(&rng, 99);
    e.toks[0] = tok_bos(m->vocab) >= 0 ? tok_bos(m->vocab) : 0;
    for (int i = 1; i < n_prompt; i++) e.toks[i] = (int32_t)(smp_rng_next(&rng) % (uint64_t)m->hp.n_vocab);
    printf("runtime on %s, %d threads, %s kernels\n", m->gguf->path, n_threads, fwd_kernels(e.c)->name);
    bool ok = bench_conversation(&e, 10, n_prompt / 10 - 1) && bench_state_file(&e, n_prompt) &&
              bench_shift(&e, n_prompt) && bench_grammar(&e, 48);
    if (!ok) cli_fail("%s", e.err.msg);
    mem_free(e.toks);
    fwd_free(e.c);
    return ok ? 0 : 1;
}
