// test_mix.c — models writing together. The reference runs each model alone
// (greedy, with a plain fwd_decode per step in its own context) and reads
// back its probabilities along the mixed text ("teacher forcing"), so every
// choice, credit and disagreement flag is re-derived independently.
// Real text: stories260K and a Q4_0 copy made here with the project's
// quantizer (skipped when ../shared is absent); always: generated models
// (one with another vocabulary).
#include <math.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

#include "infer/mix.h"
#include "model/quantize.h"
#include "test.h"

static char dir[256];

static model *load(const char *path) {
    model *out = NULL;
    sim_err err;
    CHECK_MSG(model_load(&out, path, NULL, &err) == SIM_OK, "%s: %s", path, err.msg);
    return out;
}

static model *synth(const char *name, uint64_t seed, int n_vocab) {
    char path[512];
    snprintf(path, sizeof path, "%s/%s.gguf", dir, name);
    qz_synth_params p = qz_synth_default();
    p.n_vocab = n_vocab;
    p.seed = seed;
    sim_err err;
    CHECK_MSG(qz_synth(path, &p, &err) == SIM_OK, "%s", err.msg);
    return load(path);
}

static fwd_ctx *ctx_for(model *md) {
    fwd_params p = fwd_default_params();
    p.n_ctx = 256;
    p.n_batch = 256;
    p.n_outputs = 1;
    p.n_threads = 2;
    fwd_ctx *c = NULL;
    sim_err err;
    CHECK_MSG(fwd_new(&c, md, &p, &err) == SIM_OK, "%s", err.msg);
    return c;
}

// Probabilities after toks[0..n) by one plain decode in a fresh context.
static void ref_probs(model *md, const int32_t *toks, int n, double *p) {
    fwd_ctx *c = ctx_for(md);
    int32_t pos[256];
    kv_seq_mask seq[256];
    for (int i = 0; i < n; i++) pos[i] = i, seq[i] = 1;
    fwd_batch b = {.n = n, .tokens = toks, .pos = pos, .seqs = seq};
    sim_err err;
    CHECK_MSG(fwd_decode(c, &b, &err) == SIM_OK, "%s", err.msg);
    const float *l = fwd_logits(c, 0);
    int nv = md->hp.n_vocab;
    double mx = -INFINITY, sum = 0;
    for (int i = 0; i < nv; i++) mx = fmax(mx, l[i]);
    for (int i = 0; i < nv; i++) sum += p[i] = exp(l[i] - mx);
    for (int i = 0; i < nv; i++) p[i] /= sum;
    fwd_free(c);
}

static bool has_text(const model *md, int32_t t) {
    size_t l;
    tok_token_text(md->vocab, t, false, &l);
    return l > 0 && !tok_is_eog(md->vocab, t);
}

// The most likely token with text (ties: lower id).
static int32_t ref_top(const model *md, const double *p) {
    int32_t best = -1;
    for (int i = 0; i < md->hp.n_vocab; i++)
        if (has_text(md, i) && (best < 0 || p[i] > p[best])) best = i;
    return best;
}

// A model's probability of a text: the sum over its tokens with that text.
static double ref_text_prob(const model *md, const double *p, const char *t, size_t n) {
    double s = 0;
    for (int i = 0; i < md->hp.n_vocab; i++) {
        size_t l;
        const char *x = tok_token_text(md->vocab, i, false, &l);
        if (l == n && l > 0 && !tok_is_eog(md->vocab, i) && memcmp(x, t, n) == 0) s += p[i];
    }
    return s;
}

// Greedy, alone: n tokens after the prompt (tokens with text only).
static int ref_greedy(model *md, const char *prompt, int n, int32_t *out) {
    int32_t toks[256];
    int np = tok_encode(md->vocab, prompt, strlen(prompt), true, false, toks, 256, NULL);
    double *p = malloc((size_t)md->hp.n_vocab * sizeof *p);
    for (int i = 0; i < n; i++) {
        ref_probs(md, toks, np + i, p);
        toks[np + i] = out[i] = ref_top(md, p);
    }
    free(p);
    return np;
}

static const char *text_of(const model *md, int32_t t, size_t *l) { return tok_token_text(md->vocab, t, false, l); }

// Every step of a mix of two same-vocabulary models, re-derived by teacher
// forcing along the mixed tokens: the chosen text, its credit, the probs and
// the disagreement flag. Returns the number of disagreements.
static int verify_same_vocab(model *a, model *b, const char *prompt, const mix_params *mp, const mix_result *r) {
    model *ms[2] = {a, b};
    int32_t toks[2][256];
    int np = tok_encode(a->vocab, prompt, strlen(prompt), true, false, toks[0], 256, NULL);
    memcpy(toks[1], toks[0], sizeof toks[0]);
    int nv = a->hp.n_vocab, n_dis = 0;
    double *p[2] = {malloc((size_t)nv * sizeof(double)), malloc((size_t)nv * sizeof(double))};
    for (int i = 0; i < r->n_tokens; i++) {
        const mix_token *t = &r->tokens[i];
        int32_t top[2];
        for (int k = 0; k < 2; k++) {
            ref_probs(ms[k], toks[k], np + i, p[k]);
            top[k] = ref_top(ms[k], p[k]);
            CHECK_NEAR(t->probs[k], ref_text_prob(ms[k], p[k], t->text, t->len), 1e-4);
        }
        int w = -1;
        int32_t chosen = -1;
        if (mp->mode == MIX_DEMOCRATIC) {
            // The largest summed probability over texts (ties: the smaller text).
            double best = -1;
            for (int j = 0; j < nv; j++) {
                if (!has_text(a, j)) continue;
                size_t l;
                const char *x = text_of(a, j, &l);
                double s = ref_text_prob(a, p[0], x, l) + ref_text_prob(b, p[1], x, l);
                size_t bl;
                const char *bx = chosen >= 0 ? text_of(a, chosen, &bl) : NULL;
                int cmp = bx ? memcmp(x, bx, l < bl ? l : bl) : 0;
                if (s > best + 1e-6 || (fabs(s - best) <= 1e-6 && bx && (cmp < 0 || (cmp == 0 && l < bl)))) best = s, chosen = j;
            }
            double pa = ref_text_prob(a, p[0], t->text, t->len), pb = ref_text_prob(b, p[1], t->text, t->len);
            w = pb > pa ? 1 : 0;
            if (fabs(pa - pb) < 1e-6) w = t->model; // too close to call independently
        } else {
            w = mp->mode == MIX_REFERENCE ? 0 : (i / mp->turn) % 2;
            chosen = top[w];
        }
        size_t cl;
        const char *ct = text_of(a, chosen, &cl);
        CHECK_MSG(cl == t->len && memcmp(ct, t->text, cl) == 0, "step %d: '%s', expected '%.*s'", i, t->text, (int)cl, ct);
        CHECK_EQ_INT(t->model, w);
        bool dis = false;
        for (int k = 0; k < 2; k++) {
            size_t l;
            const char *x = text_of(ms[k], top[k], &l);
            if (l != t->len || memcmp(x, t->text, l)) dis = true;
        }
        CHECK_MSG(t->disagree == dis, "step %d: disagree %d, expected %d", i, t->disagree, dis);
        n_dis += dis;
        // Follow the mix: each model appends its own most likely token with the text.
        for (int k = 0; k < 2; k++) {
            int32_t follow = -1;
            for (int j = 0; j < nv; j++) {
                size_t l;
                const char *x = text_of(a, j, &l);
                if (has_text(a, j) && l == t->len && memcmp(x, t->text, l) == 0 && (follow < 0 || p[k][j] > p[k][follow]))
                    follow = j;
            }
            toks[k][np + i] = follow;
        }
    }
    free(p[0]);
    free(p[1]);
    return n_dis;
}

static model *story, *story_q;

static void test_story_modes(void) {
    if (!story || !story_q) {
        char buf[512];
        test_shared_path(buf, sizeof buf, "models/stories260K.gguf");
        return;
    }
    fwd_ctx *cs[2] = {ctx_for(story), ctx_for(story_q)};
    const char *prompt = "Once upon a time";
    mix_params mp = mix_default_params();
    mp.n_predict = 48;
    mix_result r;
    sim_err err;
    // Reference: the text is model A's greedy text alone; B's differing
    // first choices are flagged where they happen.
    mp.mode = MIX_REFERENCE;
    CHECK_MSG(mix_generate(cs, 2, prompt, strlen(prompt), &mp, &r, &err) == SIM_OK, "%s", err.msg);
    CHECK_EQ_INT(r.n_tokens, 48);
    int32_t ga[48], gb[48];
    ref_greedy(story, prompt, 48, ga);
    ref_greedy(story_q, prompt, 48, gb);
    size_t off = 0;
    int first_diff = -1, first_flag = -1;
    for (int i = 0; i < 48; i++) {
        size_t l;
        const char *t = text_of(story, ga[i], &l);
        CHECK(r.tokens[i].len == l && memcmp(r.tokens[i].text, t, l) == 0);
        CHECK(off + l <= r.len && memcmp(r.text + off, t, l) == 0);
        off += l;
        CHECK_EQ_INT(r.tokens[i].model, 0);
        if (first_diff < 0 && ga[i] != gb[i]) first_diff = i;
        if (first_flag < 0 && r.tokens[i].disagree) first_flag = i;
    }
    CHECK_EQ_INT(off, r.len);
    // Until they part, both alone write the same: the first flag is where B alone turns away.
    CHECK_EQ_INT(first_flag, first_diff);
    int n_dis = verify_same_vocab(story, story_q, prompt, &mp, &r);
    CHECK_MSG(n_dis >= 1, "no disagreement between the model and its Q4_0 copy");
    printf("  reference: %d of 48 positions flagged, the first at %d\n", n_dis, first_flag);
    mix_result_free(&r);
    // Round-robin, 3 tokens a turn.
    mp.mode = MIX_ROUND_ROBIN;
    mp.turn = 3;
    mp.n_predict = 24;
    CHECK_MSG(mix_generate(cs, 2, prompt, strlen(prompt), &mp, &r, &err) == SIM_OK, "%s", err.msg);
    for (int i = 0; i < r.n_tokens; i++) CHECK_EQ_INT(r.tokens[i].model, (i / 3) % 2);
    verify_same_vocab(story, story_q, prompt, &mp, &r);
    mix_result_free(&r);
    // Democratic.
    mp.mode = MIX_DEMOCRATIC;
    CHECK_MSG(mix_generate(cs, 2, prompt, strlen(prompt), &mp, &r, &err) == SIM_OK, "%s", err.msg);
    verify_same_vocab(story, story_q, prompt, &mp, &r);
    int credit[2] = {0};
    for (int i = 0; i < r.n_tokens; i++) credit[r.tokens[i].model]++;
    CHECK(credit[0] > 0 && credit[1] > 0);
    mix_result_free(&r);
    fwd_free(cs[0]);
    fwd_free(cs[1]);
}

static void test_synth_modes(void) {
    model *a = synth("a", 1, 512), *b = synth("b", 2, 512);
    if (!a || !b) return;
    fwd_ctx *cs[2] = {ctx_for(a), ctx_for(b)};
    const char *prompt = "ab cd";
    mix_params mp = mix_default_params();
    mp.n_predict = 12;
    mix_result r;
    sim_err err;
    mix_mode modes[3] = {MIX_REFERENCE, MIX_ROUND_ROBIN, MIX_DEMOCRATIC};
    for (int k = 0; k < 3; k++) {
        mp.mode = modes[k];
        mp.turn = 2;
        CHECK_MSG(mix_generate(cs, 2, prompt, strlen(prompt), &mp, &r, &err) == SIM_OK, "%s", err.msg);
        CHECK_EQ_INT(r.n_tokens, 12);
        verify_same_vocab(a, b, prompt, &mp, &r);
        mix_result_free(&r);
    }
    // Errors: too few models, a shared context, a bad turn.
    CHECK(mix_generate(cs, 1, prompt, 5, &mp, &r, &err) == SIM_ERR_ARG);
    fwd_ctx *same[2] = {cs[0], cs[0]};
    CHECK(mix_generate(same, 2, prompt, 5, &mp, &r, &err) == SIM_ERR_ARG);
    mp.turn = 0;
    CHECK(mix_generate(cs, 2, prompt, 5, &mp, &r, &err) == SIM_ERR_ARG);
    // Allocation failures: an error and nothing leaked.
    mp.turn = 1;
    mp.n_predict = 4;
    int fails = 0;
    for (long n = 0; n < 2000; n++) {
        mem_fail_after(n);
        sim_status st = mix_generate(cs, 2, prompt, 5, &mp, &r, &err);
        bool hit = mem_fail_triggered();
        mem_fail_after(-1);
        if (!hit) {
            CHECK(st == SIM_OK);
            mix_result_free(&r);
            break;
        }
        fails++;
        CHECK(st != SIM_OK && r.tokens == NULL);
    }
    CHECK(fails > 5);
    fwd_free(cs[0]);
    fwd_free(cs[1]);
    model_free(a);
    model_free(b);
}

static bool stop_at_3(void *ud, int i, const mix_token *t) {
    (void)ud;
    (void)t;
    return i < 2;
}

static void test_other_vocab(void) {
    // A synthetic vocabulary (letters, byte tokens) beside stories260K's (or
    // a second synthetic one of another size): texts one model lacks get 0
    // there, and the model re-tokenizes the text to keep up.
    model *a = synth("v1", 3, 300), *b = story ? NULL : synth("v2", 4, 700);
    model *other = story ? story : b;
    if (!a || !other) {
        model_free(a);
        model_free(b);
        return;
    }
    fwd_ctx *cs[2] = {ctx_for(other), ctx_for(a)};
    const char *prompt = "Once upon a time";
    mix_params mp = mix_default_params();
    mp.n_predict = 16;
    mix_result r;
    sim_err err;
    mix_mode modes[3] = {MIX_REFERENCE, MIX_ROUND_ROBIN, MIX_DEMOCRATIC};
    model *ms[2] = {other, a};
    int lacking = 0;
    for (int k = 0; k < 3; k++) {
        mp.mode = modes[k];
        CHECK_MSG(mix_generate(cs, 2, prompt, strlen(prompt), &mp, &r, &err) == SIM_OK, "%s", err.msg);
        CHECK_EQ_INT(r.n_tokens, 16);
        size_t off = 0;
        for (int i = 0; i < r.n_tokens; i++) {
            const mix_token *t = &r.tokens[i];
            CHECK(memcmp(r.text + off, t->text, t->len) == 0);
            off += t->len;
            for (int j = 0; j < 2; j++) {
                bool has = false;
                for (int id = 0; id < ms[j]->hp.n_vocab && !has; id++) {
                    size_t l;
                    const char *x = text_of(ms[j], id, &l);
                    has = has_text(ms[j], id) && l == t->len && memcmp(x, t->text, l) == 0;
                }
                if (!has) {
                    CHECK_EQ_INT(t->probs[j], 0);
                    lacking++;
                }
                else CHECK(t->probs[j] > 0);
            }
        }
        CHECK_EQ_INT(off, r.len);
        if (mp.mode == MIX_REFERENCE) {
            int32_t g[16];
            ref_greedy(other, prompt, 16, g);
            size_t o2 = 0;
            for (int i = 0; i < 16; i++) {
                size_t l;
                const char *x = text_of(other, g[i], &l);
                CHECK(o2 + l <= r.len && memcmp(r.text + o2, x, l) == 0);
                o2 += l;
            }
        }
        mix_result_free(&r);
    }
    CHECK_MSG(lacking > 0, "every text was in both vocabularies: the re-tokenizing path did not run");
    // Abort from the callback.
    mp.on_token = stop_at_3;
    CHECK(mix_generate(cs, 2, prompt, strlen(prompt), &mp, &r, &err) == SIM_ERR_ABORTED);
    CHECK(r.tokens == NULL && r.n_tokens == 0);
    fwd_free(cs[0]);
    fwd_free(cs[1]);
    model_free(a);
    model_free(b);
}

int main(int argc, char **argv) {
    test_init(argc, argv);
    snprintf(dir, sizeof dir, "/tmp/sim_test_mix_%d", (int)getpid());
    char cmd[300];
    snprintf(cmd, sizeof cmd, "mkdir -p %s", dir);
    if (system(cmd) != 0) return 1;
    const char *sd = test_shared_dir();
    char path[512], qpath[512];
    if (sd) {
        snprintf(path, sizeof path, "%s/models/stories260K.gguf", sd);
        snprintf(qpath, sizeof qpath, "%s/stories260K.Q4_0.gguf", dir);
        sim_err err;
        if (access(path, R_OK) == 0) {
            story = load(path);
            if (qz_quantize_file(path, qpath, QZ_Q4_0, 2, &err) != SIM_OK) fprintf(stderr, "quantize: %s\n", err.msg);
            else story_q = load(qpath);
        }
    }
    TEST_RUN(test_story_modes);
    TEST_RUN(test_synth_modes);
    TEST_RUN(test_other_vocab);
    model_free(story);
    model_free(story_q);
    snprintf(cmd, sizeof cmd, "rm -rf %s", dir);
    if (system(cmd) != 0) return 1;
    return test_finish();
}
