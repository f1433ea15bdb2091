// mix.c — `simularity mix`: two to four models write one continuation
// together, token by token (src/infer/mix.h). Plain output: the text, then
// per-model credit counts and the disagreements on stderr. --json:
//   {"text":"...","models":["a.gguf","b.gguf"],"mode":"reference",
//    "tokens":[{"text":" Tim","model":0,"probs":[0.61,0.58],"disagree":false}, ...]}
#include <jansson.h>
#include <stdlib.h>
#include <string.h>

#include "base/file.h"
#include "base/utf8.h"
#include "cli/cli.h"
#include "infer/mix.h"

static json_t *json_text(const char *s, size_t n) {
    char *buf = mem_alloc(3 * n + 1);
    if (!buf) return NULL;
    json_t *j = json_stringn(buf, utf8_sanitize(s, n, buf));
    mem_free(buf);
    return j;
}

static bool print_json(const mix_result *r, const cli_list *models, mix_mode mode) {
    json_t *toks = json_array(), *names = json_array();
    bool ok = toks && names;
    for (int i = 0; i < models->n && ok; i++)
        if (json_array_append_new(names, json_string(cli_basename(models->items[i])))) ok = false;
    for (int i = 0; i < r->n_tokens && ok; i++) {
        const mix_token *t = &r->tokens[i];
        json_t *probs = json_array();
        for (int k = 0; k < r->n_models && probs; k++)
            if (json_array_append_new(probs, json_real(t->probs[k]))) ok = false;
        json_t *o = json_pack("{s:o?, s:i, s:o?, s:b}", "text", json_text(t->text, t->len), "model", t->model, "probs",
                              probs, "disagree", t->disagree);
        if (!o || !probs || json_array_append_new(toks, o)) ok = false;
    }
    json_t *root = NULL;
    if (ok) {
        root = json_pack("{s:o?, s:O, s:s, s:O}", "text", json_text(r->text, r->len), "models", names, "mode",
                         mix_mode_name(mode), "tokens", toks);
    }
    json_decref(toks);
    json_decref(names);
    if (!root) return false;
    ok = json_dumpf(root, stdout, JSON_COMPACT | JSON_REAL_PRECISION(6)) == 0 && fputc('\n', stdout) != EOF;
    json_decref(root);
    return ok;
}

int cmd_mix(int argc, char **argv) {
    const char *text = NULL, *file = NULL, *mode_name = "round-robin";
    cli_list models = {0};
    int n_predict = 32, turn = 1, n_ctx = 0, n_threads = 0;
    bool json = false;
    cli_opt opts[] = {
        {"-m|--model", OPT_LIST, &models, "model file (GGUF); give 2 to 4"},
        {"-p|--prompt", OPT_STR, &text, "prompt text"},
        {"-f|--file", OPT_STR, &file, "read the prompt from a file"},
        {"--mode", OPT_STR, &mode_name, "round-robin, democratic or reference (the first model) [round-robin]"},
        {"--turn", OPT_INT, &turn, "round-robin: tokens per turn [1]"},
        {"-n|--n-predict", OPT_INT, &n_predict, "tokens to write [32]"},
        {"--json", OPT_FLAG, &json, "print the text and each token's model, probabilities and disagreement"},
        {"-c|--ctx-size", OPT_INT, &n_ctx, "context size per model (0: the model's, at most 4096)"},
        {"-t|--threads", OPT_INT, &n_threads, "threads per model (0: all CPUs)"},
    };
    int n_pos, rc;
    if ((rc = cli_parse("mix -m A -m B [-m C] (-p TEXT | -f FILE) [options]", argc, argv, opts, ARRAY_LEN(opts), NULL, 0,
                        &n_pos)))
        return rc;
    mix_params mp = mix_default_params();
    if (!mix_mode_from_name(mode_name, &mp.mode)) return cli_fail("mix: --mode must be round-robin, democratic or reference");
    if (models.n < 2 || models.n > MIX_MAX_MODELS) return cli_fail("mix: give 2 to %d models with -m", MIX_MAX_MODELS);
    if (turn < 1 || n_predict < 0 || n_ctx < 0 || n_threads < 0)
        return cli_fail("mix: --turn must be at least 1; -n, -c and -t must not be negative");
    if (!text == !file) return cli_fail("mix: give the prompt with -p or -f");
    mp.turn = turn;
    mp.n_predict = n_predict;
    char *prompt = NULL;
    size_t len = 0;
    sim_err err;
    if (text) prompt = mem_strdup(text), len = strlen(text);
    else if (file_read_all(file, (size_t)1 << 26, &prompt, &len, &err) != SIM_OK) return cli_fail("%s", err.msg);
    if (!prompt) return cli_fail("out of memory");
    model *ms[MIX_MAX_MODELS] = {0};
    fwd_ctx *cs[MIX_MAX_MODELS] = {0};
    mix_result r = {0};
    int rcode = 1;
    for (int i = 0; i < models.n; i++) {
        if (!(ms[i] = cli_load_model(models.items[i], NULL))) goto done;
        fwd_params fp = fwd_default_params();
        fp.n_ctx = n_ctx;
        fp.n_threads = n_threads;
        fp.n_outputs = 1;
        if (fwd_new(&cs[i], ms[i], &fp, &err) != SIM_OK) {
            cli_fail("%s: %s", models.items[i], err.msg);
            goto done;
        }
    }
    if (mix_generate(cs, models.n, prompt, len, &mp, &r, &err) != SIM_OK) {
        cli_fail("%s", err.msg);
        goto done;
    }
    if (json) {
        if (!print_json(&r, &models, mp.mode)) {
            cli_fail("mix: cannot write the output");
            goto done;
        }
    } else {
        fwrite(r.text, 1, r.len, stdout);
        putchar('\n');
        int credit[MIX_MAX_MODELS] = {0}, n_dis = 0;
        for (int i = 0; i < r.n_tokens; i++) credit[r.tokens[i].model]++, n_dis += r.tokens[i].disagree;
        for (int i = 0; i < models.n; i++) fprintf(stderr, "model %d (%s): %d tokens\n", i, cli_basename(models.items[i]), credit[i]);
        fprintf(stderr, "%d of %d tokens where the models' first choices differ\n", n_dis, r.n_tokens);
    }
    rcode = 0;
done:
    mix_result_free(&r);
    for (int i = 0; i < MIX_MAX_MODELS; i++) {
        fwd_free(cs[i]);
        model_free(ms[i]);
    }
    mem_free(prompt);
    return rcode;
}
