// test_session.c — sessions on generated models: prefix reuse, fresh logits
// for a fully cached prompt, context shifts (against a fresh evaluation, and
// over 100 repeated shifts), state files (round trip and refusals), stop
// strings, abort, forks.
#include <stdio.h>
#include <string.h>
#include <unistd.h>

#include "infer/session.h"
#include "base/file.h"
#include "model/quantize.h"
#include "test.h"

static char dir[256];
static model *m;

static model *make_model_with(const char *name, int n_layer, const char *arch, const model_params *mp) {
    char path[512];
    snprintf(path, sizeof path, "%s/%s.gguf", dir, name);
    qz_synth_params p = qz_synth_default();
    p.arch = arch;
    p.n_vocab = 320;
    p.n_embd = 128;
    p.n_layer = n_layer;
    p.n_head = 4;
    p.n_head_kv = 2;
    p.n_ff = 256;
    p.seed = 11;
    sim_err err;
    model *out = NULL;
    CHECK_MSG(qz_synth(path, &p, &err) == SIM_OK, "%s", err.msg);
    CHECK_MSG(model_load(&out, path, mp, &err) == SIM_OK, "%s", err.msg);
    return out;
}

static model *make_model(const char *name, int n_layer) { return make_model_with(name, n_layer, "llama", NULL); }

static fwd_ctx *ctx(int n_ctx, tt_type kv) {
    fwd_params p = fwd_default_params();
    p.n_ctx = n_ctx;
    p.n_batch = 32;
    p.n_outputs = 4;
    p.n_threads = 2;
    p.kv_type = kv;
    fwd_ctx *c = NULL;
    sim_err err;
    CHECK_MSG(fwd_new(&c, m, &p, &err) == SIM_OK, "%s", err.msg);
    return c;
}

static sess *session(fwd_ctx *c, int seq, bool shift) {
    sess_params sp = sess_default_params();
    sp.seq = seq;
    sp.context_shift = shift;
    sess *s = NULL;
    sim_err err;
    CHECK(sess_new(&s, c, &sp, &err) == SIM_OK);
    return s;
}

static void tokens(int32_t *t, int n, int seed) {
    t[0] = 1; // BOS
    for (int i = 1; i < n; i++) t[i] = (int32_t)(3 + (i * 53 + seed * 17) % 300);
}

static double rel_diff(const float *a, const float *b) {
    double mx = 0, sc = 0;
    for (int i = 0; i < m->hp.n_vocab; i++) {
        mx = MAX(mx, fabs((double)a[i] - b[i]));
        sc = MAX(sc, fabs(b[i]));
    }
    return mx / sc;
}

// Logits of a fresh context after decoding toks[0..n).
static float *fresh_logits(const int32_t *toks, int n, int n_ctx, tt_type kv) {
    fwd_ctx *c = ctx(n_ctx, kv);
    sess *s = session(c, 0, false);
    sim_err err;
    CHECK(sess_set_prompt(s, toks, n, NULL, &err) == SIM_OK);
    float *out = malloc(sizeof(float) * (size_t)m->hp.n_vocab);
    memcpy(out, sess_logits(s), sizeof(float) * (size_t)m->hp.n_vocab);
    sess_free(s);
    fwd_free(c);
    return out;
}

static void test_prefix_reuse(void) {
    fwd_ctx *c = ctx(256, TT_F32);
    sess *s = session(c, 0, false);
    int32_t a[60];
    tokens(a, 60, 1);
    sess_stats st;
    sim_err err;
    CHECK(sess_set_prompt(s, a, 30, &st, &err) == SIM_OK);
    CHECK(st.n_reused == 0 && st.n_decoded == 30);
    CHECK(sess_set_prompt(s, a, 40, &st, &err) == SIM_OK); // grown conversation
    CHECK(st.n_reused == 30 && st.n_decoded == 10);
    int32_t b[40];
    memcpy(b, a, sizeof b);
    b[25] = 7; // an edit at 25: everything from there is decoded again
    CHECK(sess_set_prompt(s, b, 40, &st, &err) == SIM_OK);
    CHECK(st.n_reused == 25 && st.n_decoded == 15);
    CHECK_EQ_INT(fwd_kv(c)->n_used, 40);
    // Fully cached: only the last token is decoded again, and the logits are a fresh run's.
    CHECK(sess_set_prompt(s, b, 40, &st, &err) == SIM_OK);
    CHECK(st.n_reused == 39 && st.n_decoded == 1);
    float *f = fresh_logits(b, 40, 256, TT_F32);
    CHECK(rel_diff(sess_logits(s), f) < 1e-5);
    free(f);
    // A shorter prompt keeps only the common part.
    CHECK(sess_set_prompt(s, b, 10, &st, &err) == SIM_OK);
    CHECK(st.n_reused == 9 && st.n_decoded == 1 && sess_n_tokens(s) == 10 && fwd_kv(c)->n_used == 10);
    sess_free(s);
    CHECK_EQ_INT(fwd_kv(c)->n_used, 0);
    fwd_free(c);
}

// After a shift, logits equal a fresh evaluation of the kept tokens + the
// tail. Exactly so only for one layer: deeper layers' keys and values
// depend on the tokens the shift dropped, as they would in any
// StreamingLLM-style shift; one layer isolates the re-rotation.
static void test_shift_matches_fresh(void) {
    model *deep = m;
    // Plain RoPE, YaRN (whose magnitude factor must not be applied twice),
    // and NeoX RoPE (qwen2).
    model_params yarn = {.has_rope_scaling = true, .rope_scaling = ROPE_SCALING_YARN, .rope_freq_scale = 0.25f,
                         .yarn_orig_ctx = 16, .yarn_ext_factor = -1};
    struct { const char *name, *arch; const model_params *mp; } variants[] = {
        {"one-layer", "llama", NULL}, {"one-layer-yarn", "llama", &yarn}, {"one-layer-qwen2", "qwen2", NULL}};
    for (size_t v = 0; v < ARRAY_LEN(variants); v++) {
        m = make_model_with(variants[v].name, 1, variants[v].arch, variants[v].mp);
        if (!m) continue;
        if (variants[v].mp) {
            rope_table rt;
            model_rope_table(m, 64, &rt);
            CHECK(rt.mscale > 1.1f); // YaRN scales attention: 1 + 0.1 ln 4
        }
        for (int kv = 0; kv < 2; kv++) {
            tt_type kt = kv ? TT_F16 : TT_F32;
            fwd_ctx *c = ctx(64, kt);
            sess *s = session(c, 0, true);
            int32_t t[80];
            tokens(t, 80, 2);
            sim_err err;
            sess_stats st = {0};
            CHECK(sess_set_prompt(s, t, 64, &st, &err) == SIM_OK);
            // Full: the next push shifts (keep BOS, drop half of the rest = 31).
            CHECK(sess_push(s, t[64], &st, &err) == SIM_OK);
            CHECK_EQ_INT(st.n_shifts, 1);
            CHECK_EQ_INT(sess_n_tokens(s), 64 - 31 + 1);
            int32_t expect[64];
            expect[0] = t[0];
            memcpy(expect + 1, t + 32, 33 * sizeof(int32_t));
            CHECK(memcmp(sess_tokens(s), expect, 34 * sizeof(int32_t)) == 0);
            float *f = fresh_logits(expect, 34, 64, kt);
            double d = rel_diff(sess_logits(s), f);
            fprintf(stderr, "  %-16s %s cache: shifted vs fresh logits differ by %.2e\n", variants[v].name, tt_name(kt), d);
            CHECK(d < (kv ? 5e-3 : 1e-5));
            free(f);
            sess_free(s);
            fwd_free(c);
        }
        model_free(m);
    }
    m = deep;
}

// 100 shifts back and forth leave the keys where they were (F32 cache).
static void test_repeated_shifts_no_drift(void) {
    fwd_ctx *c = ctx(128, TT_F32);
    sess *s = session(c, 0, true);
    int32_t t[40];
    tokens(t, 40, 3);
    sim_err err;
    CHECK(sess_set_prompt(s, t, 40, NULL, &err) == SIM_OK);
    float *before = malloc(sizeof(float) * (size_t)m->hp.n_vocab);
    memcpy(before, sess_logits(s), sizeof(float) * (size_t)m->hp.n_vocab);
    for (int i = 0; i < 50; i++) {
        fwd_seq_shift(c, 0, 1, -1, 37);
        fwd_seq_shift(c, 0, 38, -1, -37);
    }
    CHECK_EQ_INT(kv_seq_pos_max(fwd_kv(c), 0), 39);
    sess_stats st;
    CHECK(sess_set_prompt(s, t, 40, &st, &err) == SIM_OK); // decodes the last token again
    double d = rel_diff(sess_logits(s), before);
    fprintf(stderr, "  after 100 shifts: logits differ by %.2e\n", d);
    CHECK(d < 1e-5);
    free(before);
    sess_free(s);
    fwd_free(c);
}

static void test_context_full(void) {
    fwd_ctx *c = ctx(32, TT_F16);
    sess *s = session(c, 0, false);
    int32_t t[40];
    tokens(t, 40, 4);
    sim_err err;
    CHECK(sess_set_prompt(s, t, 40, NULL, &err) == SIM_ERR_RANGE && strstr(err.msg, "40 tokens but the context holds 32"));
    CHECK(sess_set_prompt(s, t, 30, NULL, &err) == SIM_OK);
    smp_params sp = smp_default_params();
    sp.temp = 0;
    smp_ctx *smp;
    CHECK(smp_new(&smp, m->hp.n_vocab, &sp, &err) == SIM_OK);
    sess_gen_params gp = {.n_predict = 100};
    sess_result r;
    CHECK(sess_generate(s, smp, &gp, &r, &err) == SIM_OK);
    CHECK(r.reason == SESS_STOP_FULL || r.reason == SESS_STOP_EOG);
    if (r.reason == SESS_STOP_FULL) CHECK_EQ_INT(r.n_tokens, 3); // 30 + 2 decoded, the third sampled
    sess_result_free(&r);
    sess_free(s);
    // With shifting on, generation goes on past the context.
    sess *s2 = session(c, 1, true);
    CHECK(sess_set_prompt(s2, t, 30, NULL, &err) == SIM_OK);
    gp.n_predict = 200;
    CHECK(sess_generate(s2, smp, &gp, &r, &err) == SIM_OK);
    CHECK(r.n_tokens == 200 || r.reason == SESS_STOP_EOG);
    if (r.reason != SESS_STOP_EOG) CHECK(r.stats.n_shifts >= 5);
    sess_result_free(&r);
    // A prompt longer than the context, shifting on: the kept start and the
    // end, leaving one cell to generate into.
    sess_stats st;
    int32_t big[100];
    tokens(big, 100, 5);
    CHECK(sess_set_prompt(s2, big, 100, &st, &err) == SIM_OK);
    CHECK(sess_n_tokens(s2) == 31 && sess_tokens(s2)[0] == 1 && sess_tokens(s2)[30] == big[99]);
    CHECK(memcmp(sess_tokens(s2) + 1, big + 70, 30 * sizeof(int32_t)) == 0);
    smp_free(smp);
    sess_free(s2);
    fwd_free(c);
}

typedef struct collect {
    char buf[8192];
    size_t n;
    int calls, abort_after;
} collect;

static bool on_text(void *ud, int seq, const char *text, size_t len) {
    (void)seq;
    collect *c = ud;
    memcpy(c->buf + c->n, text, len);
    c->n += len;
    c->buf[c->n] = 0;
    return ++c->calls != c->abort_after;
}

static void test_stop_strings_and_abort(void) {
    fwd_ctx *c = ctx(256, TT_F16);
    sess *s = session(c, 0, true);
    int32_t t[10];
    tokens(t, 10, 6);
    sim_err err;
    smp_params sp = smp_default_params();
    sp.temp = 0;
    smp_ctx *smp;
    CHECK(smp_new(&smp, m->hp.n_vocab, &sp, &err) == SIM_OK);
    CHECK(sess_set_prompt(s, t, 10, NULL, &err) == SIM_OK);
    collect col = {.abort_after = -1};
    sess_gen_params gp = {.n_predict = 40, .on_text = on_text, .ud = &col};
    sess_result full;
    CHECK(sess_generate(s, smp, &gp, &full, &err) == SIM_OK);
    CHECK(full.len == col.n && memcmp(full.text, col.buf, col.n) == 0); // streamed == returned
    CHECK(full.len > 20);
    // Stop at a string from the middle of that text: it and what follows are
    // trimmed, and the streamed text never contained any of it.
    char stop[8];
    memcpy(stop, full.text + full.len / 2, 5);
    stop[5] = 0;
    const char *first = strstr(full.text, stop);
    size_t want = (size_t)(first - full.text);
    const char *stops[2] = {"\x01never", stop};
    CHECK(sess_set_prompt(s, t, 10, NULL, &err) == SIM_OK);
    collect col2 = {.abort_after = -1};
    gp.stop = stops;
    gp.n_stop = 2;
    gp.ud = &col2;
    sess_result r;
    CHECK(sess_generate(s, smp, &gp, &r, &err) == SIM_OK);
    CHECK(r.reason == SESS_STOP_STRING);
    CHECK(r.len == want && memcmp(r.text, full.text, want) == 0);
    CHECK(col2.n == want && memcmp(col2.buf, full.text, want) == 0);
    sess_result_free(&r);
    // Abort from the callback.
    CHECK(sess_set_prompt(s, t, 10, NULL, &err) == SIM_OK);
    collect col3 = {.abort_after = 2};
    gp.stop = NULL;
    gp.n_stop = 0;
    gp.ud = &col3;
    CHECK(sess_generate(s, smp, &gp, &r, &err) == SIM_OK);
    CHECK(r.reason == SESS_STOP_ABORTED && col3.calls == 2 && r.n_tokens < 40);
    sess_result_free(&r);
    sess_result_free(&full);
    smp_free(smp);
    sess_free(s);
    fwd_free(c);
}

// Forks share the prompt's cells; each continues as a fresh session would.
static void test_fork(void) {
    fwd_ctx *c = ctx(256, TT_F32);
    sess *s = session(c, 0, true);
    int32_t t[50];
    tokens(t, 50, 7);
    sim_err err;
    CHECK(sess_set_prompt(s, t, 40, NULL, &err) == SIM_OK);
    sess *f;
    CHECK(sess_fork(s, 3, &f, &err) == SIM_OK);
    CHECK_EQ_INT(fwd_kv(c)->n_used, 40); // shared, not copied
    CHECK(sess_push(s, t[40], NULL, &err) == SIM_OK);
    CHECK(sess_push(f, t[45], NULL, &err) == SIM_OK);
    CHECK_EQ_INT(fwd_kv(c)->n_used, 42);
    int32_t alt[41];
    memcpy(alt, t, 40 * sizeof(int32_t));
    alt[40] = t[45];
    float *a = fresh_logits(t, 41, 256, TT_F32), *b = fresh_logits(alt, 41, 256, TT_F32);
    CHECK(rel_diff(sess_logits(s), a) < 1e-5);
    CHECK(rel_diff(sess_logits(f), b) < 1e-5);
    free(a);
    free(b);
    sess_free(f);
    CHECK_EQ_INT(fwd_kv(c)->n_used, 41);
    sess_free(s);
    fwd_free(c);
}

// Two interleaved sequences, one removed: defragmenting closes the holes
// and the survivor continues exactly as before.
static void test_defrag(void) {
    fwd_ctx *c = ctx(128, TT_F16);
    sess *a = session(c, 0, true), *b = session(c, 1, true);
    int32_t t[40], u[40];
    tokens(t, 40, 9);
    tokens(u, 40, 10);
    sim_err err;
    for (int i = 1; i <= 4; i++) { // grow both in turns so their cells interleave
        CHECK(sess_set_prompt(a, t, 10 * i, NULL, &err) == SIM_OK);
        CHECK(sess_set_prompt(b, u, 10 * i, NULL, &err) == SIM_OK);
    }
    CHECK(sess_push(a, 5, NULL, &err) == SIM_OK);
    float *before = malloc(sizeof(float) * (size_t)m->hp.n_vocab);
    memcpy(before, sess_logits(a), sizeof(float) * (size_t)m->hp.n_vocab);
    sess_free(b);
    kv_cache *kv = fwd_kv(c);
    CHECK(kv->n_used == 41 && kv->hi > 41);
    kv_defrag(kv);
    CHECK(kv->n_used == 41 && kv->hi == 41);
    // Re-evaluating the last token over the compacted cells gives the same logits.
    int32_t again[41];
    memcpy(again, sess_tokens(a), sizeof again);
    sess_stats st;
    CHECK(sess_set_prompt(a, again, 41, &st, &err) == SIM_OK && st.n_decoded == 1);
    CHECK(rel_diff(sess_logits(a), before) < 1e-5);
    free(before);
    sess_free(a);
    fwd_free(c);
}

// Parallel continuations: forks of one prompt generated in one batch per
// step. Greedy forks all equal the single-sequence continuation; seeded
// random ones differ; the prompt's cells are shared, not copied.
static void test_parallel(void) {
    fwd_ctx *c = ctx(256, TT_F32);
    sess *s = session(c, 0, true);
    int32_t t[20];
    tokens(t, 20, 12);
    sim_err err;
    CHECK(sess_set_prompt(s, t, 20, NULL, &err) == SIM_OK);
    smp_params gp_greedy = smp_default_params();
    gp_greedy.temp = 0;
    smp_ctx *g0;
    CHECK(smp_new(&g0, m->hp.n_vocab, &gp_greedy, &err) == SIM_OK);
    sess *f;
    CHECK(sess_fork(s, 5, &f, &err) == SIM_OK);
    sess_gen_params gp = {.n_predict = 16};
    sess_result single;
    CHECK(sess_generate(f, g0, &gp, &single, &err) == SIM_OK);
    sess_free(f);
    sess *ss[3];
    smp_ctx *smps[3];
    for (int i = 0; i < 3; i++) {
        CHECK(sess_fork(s, i + 1, &ss[i], &err) == SIM_OK);
        CHECK(smp_new(&smps[i], m->hp.n_vocab, &gp_greedy, &err) == SIM_OK);
    }
    CHECK_EQ_INT(fwd_kv(c)->n_used, 20);
    sess_result rs[3];
    CHECK(sess_generate_many(ss, smps, 3, &gp, rs, &err) == SIM_OK);
    for (int i = 0; i < 3; i++) {
        CHECK(rs[i].len == single.len && memcmp(rs[i].text, single.text, single.len) == 0);
        CHECK_EQ_INT(rs[i].n_tokens, 16);
        sess_result_free(&rs[i]);
    }
    CHECK_EQ_INT(fwd_kv(c)->n_used, 20 + 3 * 15); // the shared prompt once, 15 decoded tokens each
    // Random sampling with different seeds gives different continuations.
    for (int i = 0; i < 3; i++) {
        smp_free(smps[i]);
        smp_params sp = smp_default_params();
        sp.temp = 1.5f;
        sp.top_k = 0;
        sp.top_p = 1;
        sp.min_p = 0;
        sp.seed = 100 + (uint64_t)i;
        CHECK(smp_new(&smps[i], m->hp.n_vocab, &sp, &err) == SIM_OK);
        sess_stats st;
        CHECK(sess_set_prompt(ss[i], t, 20, &st, &err) == SIM_OK);
    }
    CHECK(sess_generate_many(ss, smps, 3, &gp, rs, &err) == SIM_OK);
    CHECK(strcmp(rs[0].text, rs[1].text) != 0 || strcmp(rs[1].text, rs[2].text) != 0);
    for (int i = 0; i < 3; i++) {
        sess_result_free(&rs[i]);
        smp_free(smps[i]);
        sess_free(ss[i]);
    }
    sess_result_free(&single);
    smp_free(g0);
    sess_free(s);
    fwd_free(c);
}

static void test_state_files(void) {
    char path[512], other[512];
    snprintf(path, sizeof path, "%s/state.bin", dir);
    snprintf(other, sizeof other, "%s/other.gguf", dir);
    int32_t t[50];
    tokens(t, 50, 8);
    sim_err err;
    fwd_ctx *c = ctx(128, TT_F16);
    sess *s = session(c, 0, true);
    CHECK(sess_set_prompt(s, t, 45, NULL, &err) == SIM_OK);
    CHECK(sess_save(s, path, &err) == SIM_OK);
    float *want = fresh_logits(t, 46, 128, TT_F16);
    // Load into a new context: same tokens, then one more token gives the fresh-run logits.
    fwd_ctx *c2 = ctx(128, TT_F16);
    sess *s2 = session(c2, 2, true);
    CHECK_MSG(sess_load(s2, path, &err) == SIM_OK, "%s", err.msg);
    CHECK(sess_n_tokens(s2) == 45 && memcmp(sess_tokens(s2), t, 45 * sizeof(int32_t)) == 0);
    sess_stats st;
    CHECK(sess_set_prompt(s2, t, 46, &st, &err) == SIM_OK);
    CHECK(st.n_reused == 45 && st.n_decoded == 1);
    CHECK(rel_diff(sess_logits(s2), want) < 1e-5);
    free(want);
    // Refusals: another context size, another KV type, another model, corruption, truncation.
    fwd_ctx *c3 = ctx(256, TT_F16), *c4 = ctx(128, TT_F32);
    sess *s3 = session(c3, 0, true), *s4 = session(c4, 0, true);
    CHECK(sess_load(s3, path, &err) == SIM_ERR_FORMAT && strstr(err.msg, "context size 128"));
    CHECK(sess_load(s4, path, &err) == SIM_ERR_FORMAT && strstr(err.msg, "f16 KV cache"));
    qz_synth_params p = qz_synth_default();
    p.n_vocab = 320;
    p.n_embd = 128;
    p.n_layer = 2;
    p.n_head = 4;
    p.n_head_kv = 2;
    p.n_ff = 256;
    p.seed = 12; // same shape, other weights
    CHECK(qz_synth(other, &p, &err) == SIM_OK);
    model *m2;
    CHECK(model_load(&m2, other, NULL, &err) == SIM_OK);
    fwd_params fp = fwd_default_params();
    fp.n_ctx = 128;
    fwd_ctx *c5;
    CHECK(fwd_new(&c5, m2, &fp, &err) == SIM_OK);
    sess *s5 = session(c5, 0, true);
    CHECK(sess_load(s5, path, &err) == SIM_ERR_FORMAT && strstr(err.msg, "different model"));
    char *data;
    size_t len;
    CHECK(file_read_all(path, 1 << 24, &data, &len, &err) == SIM_OK);
    data[len / 2] ^= 0x40;
    CHECK(file_write_all(path, data, len, &err) == SIM_OK);
    CHECK(sess_load(s2, path, &err) == SIM_ERR_FORMAT && strstr(err.msg, "checksum"));
    CHECK(file_write_all(path, data, len - 100, &err) == SIM_OK);
    CHECK(sess_load(s2, path, &err) == SIM_ERR_FORMAT && strstr(err.msg, "truncated"));
    CHECK(file_write_all(path, "hello", 5, &err) == SIM_OK);
    CHECK(sess_load(s2, path, &err) == SIM_ERR_FORMAT);
    CHECK(sess_load(s2, "/nonexistent/state", &err) == SIM_ERR_IO);
    mem_free(data);
    // Nothing was lost by the refusals.
    CHECK(sess_n_tokens(s2) == 46 && fwd_kv(c2)->n_used == 46);
    CHECK(sess_set_prompt(s2, t, 47, &st, &err) == SIM_OK && st.n_decoded == 1);
    sess_free(s5);
    fwd_free(c5);
    model_free(m2);
    sess_free(s4);
    sess_free(s3);
    fwd_free(c4);
    fwd_free(c3);
    sess_free(s2);
    fwd_free(c2);
    sess_free(s);
    fwd_free(c);
}

int main(int argc, char **argv) {
    test_init(argc, argv);
    snprintf(dir, sizeof dir, "/tmp/sim-test-session-XXXXXX");
    if (!mkdtemp(dir)) return 1;
    m = make_model("two-layers", 2);
    if (m) {
        TEST_RUN(test_prefix_reuse);
        TEST_RUN(test_shift_matches_fresh);
        TEST_RUN(test_repeated_shifts_no_drift);
        TEST_RUN(test_context_full);
        TEST_RUN(test_stop_strings_and_abort);
        TEST_RUN(test_fork);
        TEST_RUN(test_defrag);
        TEST_RUN(test_parallel);
        TEST_RUN(test_state_files);
        model_free(m);
    }
    char cmd[300];
    snprintf(cmd, sizeof cmd, "rm -rf %s", dir);
    if (system(cmd) != 0) fprintf(stderr, "could not remove %s\n", dir);
    return test_finish();
}
