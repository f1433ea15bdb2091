// test_api.c — the public C API (include/simularity.h), used as an embedding
// program would: only the public header, except for writing a test model.
#include <jansson.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

#include "simularity.h"
#include "test.h"

// Writing a model is not part of the public API: use the internal generator.
#include "model/quantize.h"

static char dir[256], model_path[512];

static void make_model(void) {
    snprintf(model_path, sizeof model_path, "%s/m.gguf", dir);
    qz_synth_params p = qz_synth_default();
    p.n_vocab = 400;
    p.n_embd = 128;
    p.n_head = 4;
    p.n_head_kv = 2;
    p.n_ff = 256;
    sim_error err;
    CHECK_MSG(qz_synth(model_path, &p, &err) == SIM_OK, "%s", err.msg);
}

// The example at the top of simularity.h, verbatim but for the model path.
static void test_header_example(void) {
    sim_error err;
    sim_model *m;
    if (sim_model_load(&m, model_path, NULL, &err) != SIM_OK) { puts(err.msg); CHECK(false); return; }
    sim_context *c;
    sim_context_new(&c, m, NULL, &err);               // defaults: the model's context, all CPUs
    sim_session *s;
    sim_session_new(&s, c, 0, &err);                  // sequence 0
    int32_t toks[512];
    int n = sim_tokenize(m, "Once upon a time", 16, true, false, toks, 512, &err);
    sim_session_set_prompt(s, toks, n, NULL, &err);   // decodes only what is new
    sim_sampler_params sp = sim_sampler_default_params();
    sp.temp = 0.7f;
    sim_sampler *smp;
    sim_sampler_new(&smp, m, &sp, &err);
    sim_generate_params gp = {.n_predict = 100};
    sim_generation g;
    if (sim_session_generate(s, smp, &gp, &g, &err) == SIM_OK) CHECK(g.n_tokens > 0 && g.text != NULL);
    else CHECK_MSG(false, "%s", err.msg);
    sim_generation_free(&g);
    sim_sampler_free(smp); sim_session_free(s); sim_context_free(c); sim_model_free(m);
}

static void test_errors(void) {
    sim_error err;
    sim_model *m;
    CHECK(sim_model_load(&m, "/nonexistent.gguf", NULL, &err) == SIM_ERR_IO && strstr(err.msg, "/nonexistent.gguf"));
    sim_model_params mp = {.rope_scaling = "warp"};
    CHECK(sim_model_load(&m, model_path, &mp, &err) == SIM_ERR_ARG && strstr(err.msg, "warp"));
    CHECK(sim_model_load(&m, model_path, NULL, NULL) == SIM_OK); // a NULL error is fine
    sim_context *c;
    sim_context_params cp = {.n_ctx = 64, .n_parallel = 100};
    CHECK(sim_context_new(&c, m, &cp, &err) == SIM_ERR_ARG);
    cp.n_parallel = 2;
    CHECK(sim_context_new(&c, m, &cp, &err) == SIM_OK);
    sim_session *s;
    CHECK(sim_session_new(&s, c, 64, &err) == SIM_ERR_ARG);
    CHECK(sim_session_new(&s, c, 1, &err) == SIM_OK);
    int32_t bad = 100000;
    CHECK(sim_session_set_prompt(s, &bad, 1, NULL, &err) == SIM_ERR_ARG);
    sim_grammar *g;
    CHECK(sim_grammar_parse(&g, "root ::= (", 10, &err) == SIM_ERR_FORMAT && strstr(err.msg, "line 1, column"));
    CHECK(sim_grammar_from_json_schema(&g, "{\"type\": 7}", 11, &err) != SIM_OK && strstr(err.msg, "/type"));
    sim_sampler_params sp = sim_sampler_default_params();
    sp.top_p = 2;
    sim_sampler *smp;
    CHECK(sim_sampler_new(&smp, m, &sp, &err) == SIM_ERR_ARG && strstr(err.msg, "top"));
    sp = sim_sampler_default_params();
    sp.order = "top_k;bogus";
    CHECK(sim_sampler_new(&smp, m, &sp, &err) == SIM_ERR_ARG && strstr(err.msg, "bogus"));
    CHECK(strcmp(sim_status_str(SIM_ERR_IO), "io error") == 0);
    sim_session_free(s);
    sim_context_free(c);
    sim_model_free(m);
}

typedef struct streamed {
    char buf[4096];
    size_t n;
} streamed;

static bool collect(void *ud, const char *text, size_t len) {
    streamed *s = ud;
    if (s->n + len < sizeof s->buf) {
        memcpy(s->buf + s->n, text, len);
        s->n += len;
    }
    return true;
}

static void test_sessions_grammar_state(void) {
    sim_error err;
    sim_model *m;
    CHECK(sim_model_load(&m, model_path, NULL, &err) == SIM_OK);
    CHECK(strcmp(sim_model_arch(m), "llama") == 0 && sim_model_n_vocab(m) == 400 && sim_model_n_params(m) > 0);
    sim_context *c;
    sim_context_params cp = {.n_ctx = 256, .n_parallel = 2, .n_threads = 2};
    CHECK(sim_context_new(&c, m, &cp, &err) == SIM_OK);
    sim_session *s;
    CHECK(sim_session_new(&s, c, 0, &err) == SIM_OK);
    int32_t toks[64];
    int n = sim_tokenize(m, "a story about a cat", 19, true, false, toks, 64, &err);
    CHECK(n > 2 && toks[0] == sim_token_bos(m));
    char text[64];
    int tl = sim_detokenize(m, toks + 1, n - 1, false, text, sizeof text);
    CHECK(tl > 0 && tl < (int)sizeof text);
    sim_prompt_stats st;
    CHECK(sim_session_set_prompt(s, toks, n, &st, &err) == SIM_OK && st.n_decoded == n);
    CHECK(sim_session_set_prompt(s, toks, n, &st, &err) == SIM_OK && st.n_reused == n - 1 && st.n_decoded == 1);
    CHECK(sim_session_n_tokens(s) == n && sim_session_logits(s) != NULL && sim_context_n_used(c) == n);
    // JSON Schema-constrained generation: the output parses and validates.
    const char *schema = "{\"type\":\"object\",\"properties\":{\"ok\":{\"type\":\"boolean\"},"
                         "\"n\":{\"type\":\"integer\"}},\"required\":[\"ok\",\"n\"]}";
    sim_grammar *g;
    CHECK(sim_grammar_from_json_schema(&g, schema, strlen(schema), &err) == SIM_OK);
    for (int seed = 0; seed < 5; seed++) {
        sim_sampler_params sp = sim_sampler_default_params();
        sp.temp = 1.5f;
        sp.seed = (uint64_t)seed;
        sim_sampler *smp;
        CHECK(sim_sampler_new(&smp, m, &sp, &err) == SIM_OK);
        CHECK(sim_sampler_set_grammar(smp, g, &err) == SIM_OK);
        CHECK(sim_session_set_prompt(s, toks, n, NULL, &err) == SIM_OK);
        streamed out = {0};
        sim_generate_params gp = {.n_predict = 300, .on_text = collect, .ud = &out};
        sim_generation gen;
        CHECK(sim_session_generate(s, smp, &gp, &gen, &err) == SIM_OK);
        CHECK(gen.reason == SIM_STOP_EOG && out.n == gen.len && memcmp(out.buf, gen.text, gen.len) == 0);
        json_error_t je;
        json_t *j = json_loadb(gen.text, gen.len, 0, &je);
        CHECK_MSG(j && json_is_boolean(json_object_get(j, "ok")) && json_is_integer(json_object_get(j, "n")),
                  "output '%s'", gen.text);
        json_decref(j);
        sim_generation_free(&gen);
        sim_sampler_free(smp);
    }
    sim_grammar_free(g);
    // A banned token never appears.
    sim_sampler_params sp = sim_sampler_default_params();
    sp.temp = 2.0f;
    sp.top_k = 0;
    sp.top_p = 1;
    sp.min_p = 0;
    sim_sampler *smp;
    CHECK(sim_sampler_new(&smp, m, &sp, &err) == SIM_OK);
    int32_t ban[300];
    float inf[300];
    for (int i = 0; i < 300; i++) {
        ban[i] = 100 + i;
        inf[i] = -INFINITY;
    }
    CHECK(sim_sampler_set_logit_bias(smp, ban, inf, 300, &err) == SIM_OK);
    int32_t out_of_range = 500;
    CHECK(sim_sampler_set_logit_bias(smp, &out_of_range, inf, 1, &err) == SIM_ERR_ARG);
    for (int i = 0; i < 50; i++) {
        int32_t t = sim_sampler_sample(smp, sim_session_logits(s), &err);
        CHECK(t >= 0 && (t < 100 || t >= 400));
    }
    // State files and forks.
    char path[600];
    snprintf(path, sizeof path, "%s/state", dir);
    CHECK(sim_session_save(s, path, &err) == SIM_OK);
    sim_session *s2, *f;
    CHECK(sim_session_new(&s2, c, 1, &err) == SIM_OK);
    CHECK(sim_session_load(s2, path, &err) == SIM_OK && sim_session_n_tokens(s2) == sim_session_n_tokens(s));
    CHECK(sim_session_fork(s, 3, &f, &err) == SIM_OK && sim_session_n_tokens(f) == sim_session_n_tokens(s));
    CHECK(sim_session_push(f, toks[1], &err) == SIM_OK && sim_session_n_tokens(f) == sim_session_n_tokens(s) + 1);
    sim_session_set_shift(f, false, -1);
    sim_session_free(f);
    sim_session_free(s2);
    sim_sampler_free(smp);
    sim_session_free(s);
    sim_context_free(c);
    sim_model_free(m);
}

int main(int argc, char **argv) {
    test_init(argc, argv);
    snprintf(dir, sizeof dir, "/tmp/sim-test-api-XXXXXX");
    if (!mkdtemp(dir)) return 1;
    make_model();
    TEST_RUN(test_header_example);
    TEST_RUN(test_errors);
    TEST_RUN(test_sessions_grammar_state);
    char cmd[300];
    snprintf(cmd, sizeof cmd, "rm -rf %s", dir);
    if (system(cmd) != 0) fprintf(stderr, "could not remove %s\n", dir);
    return test_finish();
}
