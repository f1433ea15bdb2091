// test_sched.c — the server's scheduler on a generated model: batched
// results equal one-at-a-time sessions, prefix reuse across requests,
// cancellation frees the slot, a full queue says busy, grammars, logprobs.
#include <stdio.h>
#include <string.h>
#include <unistd.h>

#include "model/quantize.h"
#include "server/sched.h"
#include "test.h"

static char dir[256];
static model *m;

static fwd_ctx *ctx(int n_ctx, int n_outputs) {
    fwd_params p = fwd_default_params();
    p.n_ctx = n_ctx;
    p.n_batch = 64;
    p.n_outputs = n_outputs;
    p.n_threads = 2;
    fwd_ctx *c = NULL;
    sim_err err;
    CHECK_MSG(fwd_new(&c, m, &p, &err) == SIM_OK, "%s", err.msg);
    return c;
}

static void prompt_of(int k, int32_t *toks, int n) {
    for (int i = 0; i < n; i++) toks[i] = 1 + (int32_t)((i * 37 + k * 101 + (i * i) % 13) % 300);
}

// Greedy continuation of toks by a plain session (the reference).
static char *reference(const int32_t *toks, int n, int n_predict) {
    fwd_ctx *c = ctx(256, 4);
    sess *s;
    sess_params sp = sess_default_params();
    sim_err err;
    CHECK(sess_new(&s, c, &sp, &err) == SIM_OK);
    CHECK_MSG(sess_set_prompt(s, toks, n, NULL, &err) == SIM_OK, "%s", err.msg);
    smp_params p = smp_default_params();
    p.temp = 0;
    smp_ctx *smp;
    CHECK(smp_new(&smp, m->hp.n_vocab, &p, &err) == SIM_OK);
    sess_gen_params gp = {.n_predict = n_predict};
    sess_result r;
    CHECK_MSG(sess_generate(s, smp, &gp, &r, &err) == SIM_OK, "%s", err.msg);
    char *text = mem_strdup(r.text);
    sess_result_free(&r);
    smp_free(smp);
    sess_free(s);
    fwd_free(c);
    return text;
}

// Reads a task to its end: the text, the update that ended it.
static char *drain(sched_task *t, sched_update *last) {
    size_t cap = 1 << 16, len = 0;
    char *out = mem_alloc(cap);
    sched_update u = {0};
    for (;;) {
        if (!sched_take(t, &u, 5000)) {
            CHECK_MSG(false, "no news from the task for 5 s");
            break;
        }
        if (len + u.len < cap) {
            memcpy(out + len, u.text, u.len);
            len += u.len;
        }
        if (u.done) break;
    }
    out[len] = 0;
    if (last) {
        *last = u;
        last->text = NULL;
        last->toks = NULL;
    }
    sched_update_free(&u);
    return out;
}

static sched_job greedy_job(const int32_t *toks, int n, int n_predict) {
    sched_job j = sched_default_job();
    j.prompt = toks;
    j.n_prompt = n;
    j.sp.temp = 0;
    j.n_predict = n_predict;
    return j;
}

static void test_batched_equals_sequential(void) {
    enum { N = 10, LEN = 20, GEN = 24 };
    int32_t toks[N][LEN + 10];
    char *want[N];
    for (int k = 0; k < N; k++) {
        prompt_of(k, toks[k], LEN + k);
        want[k] = reference(toks[k], LEN + k, GEN);
    }
    fwd_ctx *c = ctx(4 * 128, 4);
    sched_config cfg = sched_default_config();
    cfg.n_slots = 4;
    sched *s;
    sim_err err;
    CHECK_MSG(sched_new(&s, c, &cfg, &err) == SIM_OK, "%s", err.msg);
    sched_task *t[N];
    for (int k = 0; k < N; k++) {
        sched_job j = greedy_job(toks[k], LEN + k, GEN);
        CHECK_MSG(sched_submit(s, &j, &t[k], &err) == SIM_OK, "%s", err.msg);
    }
    for (int k = 0; k < N; k++) {
        sched_update last;
        char *got = drain(t[k], &last);
        CHECK_MSG(strcmp(got, want[k]) == 0, "task %d: '%s' vs '%s'", k, got, want[k]);
        CHECK_EQ_INT(last.reason, SESS_STOP_LIMIT);
        CHECK_EQ_INT(last.usage.n_generated, GEN);
        CHECK_EQ_INT(last.usage.n_prompt, LEN + k);
        mem_free(got);
        mem_free(want[k]);
        sched_release(t[k]);
    }
    sched_stats st;
    sched_get_stats(s, &st);
    CHECK_EQ_INT(st.requests, N);
    CHECK_EQ_INT(st.tokens_generated, N * GEN);
    sched_free(s);
    fwd_free(c);
}

static void test_prefix_reuse(void) {
    fwd_ctx *c = ctx(2 * 128, 2);
    sched_config cfg = {.n_slots = 2, .max_queue = 4};
    sched *s;
    sim_err err;
    CHECK(sched_new(&s, c, &cfg, &err) == SIM_OK);
    int32_t a[80], b[80];
    prompt_of(1, a, 80);
    prompt_of(2, b, 80);
    sched_update last;
    sched_task *t;
    // Conversation A, then B, then A grown: A's slot is picked and only the new part decoded.
    sched_job j = greedy_job(a, 30, 4);
    CHECK(sched_submit(s, &j, &t, &err) == SIM_OK);
    mem_free(drain(t, &last));
    sched_release(t);
    j = greedy_job(b, 30, 4);
    CHECK(sched_submit(s, &j, &t, &err) == SIM_OK);
    mem_free(drain(t, &last));
    sched_release(t);
    j = greedy_job(a, 50, 4);
    CHECK(sched_submit(s, &j, &t, &err) == SIM_OK);
    mem_free(drain(t, &last));
    CHECK_EQ_INT(last.usage.n_cached, 30);
    sched_release(t);
    // The same prompt again: all but the last token cached.
    CHECK(sched_submit(s, &j, &t, &err) == SIM_OK);
    mem_free(drain(t, &last));
    CHECK_EQ_INT(last.usage.n_cached, 49);
    sched_release(t);
    sched_free(s);
    fwd_free(c);
}

static void test_cancel_and_busy(void) {
    fwd_ctx *c = ctx(256, 1);
    sched_config cfg = {.n_slots = 1, .max_queue = 1};
    sched *s;
    sim_err err;
    CHECK(sched_new(&s, c, &cfg, &err) == SIM_OK);
    int32_t a[20];
    prompt_of(3, a, 20);
    sched_job j = greedy_job(a, 20, 100000); // shifts forever until cancelled
    j.sp.temp = 1.0f;
    sched_task *t1, *t2, *t3;
    CHECK(sched_submit(s, &j, &t1, &err) == SIM_OK);
    sched_update u = {0};
    CHECK(sched_take(t1, &u, 5000)); // it runs
    CHECK(sched_submit(s, &j, &t2, &err) == SIM_OK); // waits in the queue
    CHECK_EQ_INT(sched_submit(s, &j, &t3, &err), SIM_ERR_BUSY);
    CHECK(strstr(err.msg, "busy") != NULL);
    sched_cancel(t1);
    sched_update last;
    mem_free(drain(t1, &last));
    CHECK_EQ_INT(last.reason, SESS_STOP_ABORTED);
    // The slot went to the waiting task; releasing it cancels it too.
    CHECK(sched_take(t2, &u, 5000));
    sched_release(t2);
    sched_release(t1);
    sched_stats st;
    for (int i = 0; i < 100; i++) { // the slot frees within a step
        usleep(10000);
        sched_get_stats(s, &st);
        if (st.n_busy == 0) break;
    }
    CHECK_EQ_INT(st.n_busy, 0);
    CHECK_EQ_INT(st.requests_rejected, 1);
    // A released task still queued when the server stops is fine too.
    CHECK(sched_submit(s, &j, &t1, &err) == SIM_OK);
    sched_update_free(&u);
    sched_free(s); // ends t1
    mem_free(drain(t1, &last));
    CHECK_EQ_INT(last.reason, SESS_STOP_ABORTED);
    sched_release(t1);
    fwd_free(c);
}

static void test_bad_jobs(void) {
    fwd_ctx *c = ctx(128, 2);
    sched_config cfg = {.n_slots = 2, .max_queue = 4};
    sched *s;
    sim_err err;
    CHECK(sched_new(&s, c, &cfg, &err) == SIM_OK);
    int32_t a[100];
    prompt_of(4, a, 100);
    sched_task *t;
    sched_job j = greedy_job(a, 100, 4); // a slot holds 64
    CHECK_EQ_INT(sched_submit(s, &j, &t, &err), SIM_ERR_ARG);
    CHECK(strstr(err.msg, "slot") != NULL);
    j = greedy_job(a, 10, 4);
    a[3] = 99999;
    CHECK_EQ_INT(sched_submit(s, &j, &t, &err), SIM_ERR_ARG);
    a[3] = 5;
    j.grammar = "root ::= \"a\" | ";
    j.grammar = "root ::= (\"a\"";
    CHECK_EQ_INT(sched_submit(s, &j, &t, &err), SIM_ERR_FORMAT);
    j.grammar = NULL;
    j.sp.top_p = 7;
    CHECK_EQ_INT(sched_submit(s, &j, &t, &err), SIM_ERR_ARG);
    cfg.n_slots = 3; // more than the context's outputs per step
    sched *s2;
    CHECK_EQ_INT(sched_new(&s2, c, &cfg, &err), SIM_ERR_ARG);
    sched_free(s);
    fwd_free(c);
}

static void test_grammar_and_logprobs(void) {
    fwd_ctx *c = ctx(256, 2);
    sched_config cfg = {.n_slots = 2, .max_queue = 4};
    sched *s;
    sim_err err;
    CHECK(sched_new(&s, c, &cfg, &err) == SIM_OK);
    int32_t a[10];
    prompt_of(5, a, 10);
    sched_job j = greedy_job(a, 10, 12);
    j.sp.temp = 1.5f;
    j.sp.seed = 7;
    j.grammar = "root ::= [a-c]+";
    j.logprobs = true;
    j.n_top = 3;
    sched_task *t;
    CHECK_MSG(sched_submit(s, &j, &t, &err) == SIM_OK, "%s", err.msg);
    sched_update u = {0};
    int n_toks = 0;
    size_t len = 0;
    char text[4096];
    for (;;) {
        CHECK(sched_take(t, &u, 5000));
        for (size_t i = 0; i < u.len; i++) CHECK_MSG(u.text[i] >= 'a' && u.text[i] <= 'c', "'%c'", u.text[i]);
        memcpy(text + len, u.text, MIN(u.len, sizeof text - len - 1));
        len += MIN(u.len, sizeof text - len - 1);
        for (int i = 0; i < u.n_toks; i++) {
            const sched_tok *k = &u.toks[i];
            CHECK(k->logprob <= 0);
            CHECK_EQ_INT(k->n_top, 3);
            CHECK(k->top[0].logprob >= k->top[1].logprob && k->top[1].logprob >= k->top[2].logprob);
            CHECK(k->logprob <= k->top[0].logprob);
            n_toks++;
        }
        if (u.done) break;
    }
    CHECK(len > 0);
    CHECK_EQ_INT(n_toks, u.usage.n_generated);
    sched_update_free(&u);
    sched_release(t);
    sched_free(s);
    fwd_free(c);
}

int main(int argc, char **argv) {
    test_init(argc, argv);
    snprintf(dir, sizeof dir, "/tmp/sim-test-sched-XXXXXX");
    if (!mkdtemp(dir)) return 1;
    char path[512];
    snprintf(path, sizeof path, "%s/m.gguf", dir);
    qz_synth_params p = qz_synth_default();
    p.n_vocab = 320;
    p.n_embd = 128;
    p.n_layer = 2;
    p.n_head = 4;
    p.n_head_kv = 2;
    p.n_ff = 256;
    p.seed = 5;
    sim_err err;
    if (qz_synth(path, &p, &err) != SIM_OK || model_load(&m, path, NULL, &err) != SIM_OK) {
        fprintf(stderr, "cannot make the test model: %s\n", err.msg);
        return 1;
    }
    TEST_RUN(test_batched_equals_sequential);
    TEST_RUN(test_prefix_reuse);
    TEST_RUN(test_cancel_and_busy);
    TEST_RUN(test_bad_jobs);
    TEST_RUN(test_grammar_and_logprobs);
    model_free(m);
    unlink(path);
    rmdir(dir);
    return test_finish();
}
