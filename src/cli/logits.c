// logits.c — `simularity logits`: the top raw logits at every prompt
// position, as one JSON object in the schema of ../shared/golden:
//   {"model", "prompt", "tokens": [ids], "top_logits": [[[id, logit] × K] per position]}
#include <jansson.h>
#include <string.h>

#include "cli/cli.h"
#include "model/forward.h"

typedef struct top_state {
    json_t *rows;
    int k, n_vocab;
    int *idx; // (n_vocab) scratch for the partial sort
    bool oom;
} top_state;

// The k largest of x (descending; ties: lower id first), by repeated selection
// over a shrinking candidate set: cheap for the small k this prints.
static void top_k(const float *x, int n, int k, int *idx, int *out) {
    for (int i = 0; i < n; i++) idx[i] = i;
    for (int j = 0; j < k; j++) {
        int best = j;
        for (int i = j + 1; i < n; i++)
            if (x[idx[i]] > x[idx[best]] || (x[idx[i]] == x[idx[best]] && idx[i] < idx[best])) best = i;
        int t = idx[j];
        idx[j] = idx[best];
        idx[best] = t;
        out[j] = idx[j];
    }
}

static void collect(void *arg, fwd_ctx *c, int first, int count) {
    (void)first;
    top_state *s = arg;
    int ids[256];
    for (int i = 0; i < count; i++) {
        const float *l = fwd_logits(c, i);
        top_k(l, s->n_vocab, s->k, s->idx, ids);
        json_t *row = json_array();
        for (int j = 0; j < s->k; j++) {
            json_t *pair = json_pack("[i,f]", ids[j], (double)l[ids[j]]);
            if (!pair || json_array_append_new(row, pair)) s->oom = true;
        }
        if (!row || json_array_append_new(s->rows, row)) s->oom = true;
    }
}

int cmd_logits(int argc, char **argv) {
    const char *model_path = NULL, *text = NULL, *file = NULL;
    int top = 20, n_threads = 0, n_batch = 512;
    cli_opt opts[] = {
        {"-m|--model", OPT_STR, &model_path, "model file (GGUF)"},
        {"-f|--file", OPT_STR, &file, "read the prompt from a file"},
        {"-p|--prompt", OPT_STR, &text, "prompt text"},
        {"--top", OPT_INT, &top, "logits per position [20]"},
        {"-t|--threads", OPT_INT, &n_threads, "threads (0: all CPUs)"},
        {"-b|--batch-size", OPT_INT, &n_batch, "tokens per batch [512]"},
    };
    int n_pos, rc;
    if ((rc = cli_parse("logits -m MODEL (-f FILE | -p TEXT) [--top K]", argc, argv, opts, ARRAY_LEN(opts), NULL, 0, &n_pos)))
        return rc;
    if (top < 1 || top > 256) return cli_fail("logits: --top must be between 1 and 256");
    if (n_batch < 1 || n_threads < 0) return cli_fail("logits: invalid batch size or thread count");
    cli_input in;
    if (!cli_input_open(&in, model_path, text, file, NULL, true)) return 1;
    model *m = in.m;
    int n = in.n, rcode = 1;
    const int32_t *toks = in.toks;
    fwd_ctx *c = NULL;
    top_state s = {.rows = json_array(), .k = MIN(top, m->hp.n_vocab), .n_vocab = m->hp.n_vocab};
    s.idx = mem_alloc((size_t)m->hp.n_vocab * sizeof(int));
    json_t *root = NULL;
    if (!s.rows || !s.idx) {
        cli_fail("out of memory");
        goto done;
    }
    fwd_params fp = fwd_default_params();
    fp.n_ctx = MAX(n, 1);
    fp.n_batch = MIN(n_batch, MAX(n, 1));
    fp.n_outputs = fp.n_batch;
    fp.n_threads = n_threads;
    sim_err err;
    if (fwd_new(&c, m, &fp, &err) != SIM_OK) {
        cli_fail("%s", err.msg);
        goto done;
    }
    if (n > 0 && !cli_eval(c, toks, n, 0, true, collect, &s)) goto done;
    json_t *tokens = json_array();
    for (int i = 0; i < n && tokens; i++)
        if (json_array_append_new(tokens, json_integer(toks[i]))) s.oom = true;
    root = json_pack("{s:s, s:s%, s:o, s:O}", "model", cli_basename(model_path), "prompt", in.prompt, in.len, "tokens",
                     tokens, "top_logits", s.rows);
    if (!root || s.oom) {
        cli_fail("out of memory (or the prompt is not valid UTF-8)");
        goto done;
    }
    if (json_dumpf(root, stdout, JSON_COMPACT | JSON_REAL_PRECISION(7)) != 0 || fputc('\n', stdout) == EOF) {
        cli_fail("logits: cannot write the output");
        goto done;
    }
    rcode = 0;
done:
    json_decref(root);
    json_decref(s.rows);
    mem_free(s.idx);
    fwd_free(c);
    cli_input_close(&in);
    return rcode;
}
