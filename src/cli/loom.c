// loom.c — `simularity loom`: the tree of likely continuations of a prompt
// (src/infer/loom.h), one suggestion per line with its score, or as JSON:
//   {"suggestions":[{"text":" there was","score":1.53,"tokens":[727,471]}, ...]}
// sorted by score (a text that is not valid UTF-8 — a suggestion ending
// inside a character — shows U+FFFD for the stray bytes; the token ids are
// exact). One trailing space of the prompt is dropped before
// tokenizing (the suggestions start with their own space). --compare also
// runs the naive expansion (one node per decode call), each twice, and
// prints the best wall time of each, their ratio and how many suggestions
// agree to stderr.
#include <jansson.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "base/utf8.h"
#include "cli/cli.h"
#include "infer/loom.h"

// A JSON string of bytes that may not be valid UTF-8 (a suggestion can end
// inside a character): invalid bytes become U+FFFD.
static json_t *json_text(const char *s, size_t n) {
    char *buf = mem_alloc(3 * n + 1);
    if (!buf) return NULL;
    size_t k = utf8_sanitize(s, n, buf);
    json_t *j = json_stringn(buf, k);
    mem_free(buf);
    return j;
}

static bool print_json(const loom_result *r) {
    json_t *arr = json_array();
    bool ok = arr != NULL;
    for (int i = 0; i < r->n_suggestions && ok; i++) {
        const loom_suggestion *s = &r->suggestions[i];
        json_t *toks = json_array();
        for (int k = 0; k < s->n_tokens && toks; k++)
            if (json_array_append_new(toks, json_integer(s->tokens[k]))) ok = false;
        json_t *o = json_pack("{s:o?, s:f, s:o?}", "text", json_text(s->text, s->len), "score", (double)s->score, "tokens", toks);
        if (!o || !toks || json_array_append_new(arr, o)) ok = false;
    }
    json_t *root = ok ? json_pack("{s:o}", "suggestions", arr) : NULL;
    if (!root) {
        if (!ok || arr) json_decref(arr);
        return false;
    }
    ok = json_dumpf(root, stdout, JSON_COMPACT | JSON_REAL_PRECISION(7)) == 0 && fputc('\n', stdout) != EOF;
    json_decref(root);
    return ok;
}

// How many of a's suggestions b has too (the same text, the score to 1e-4).
static int agreeing(const loom_result *a, const loom_result *b) {
    int n = 0;
    for (int i = 0; i < a->n_suggestions; i++) {
        const loom_suggestion *x = &a->suggestions[i];
        for (int j = 0; j < b->n_suggestions; j++) {
            const loom_suggestion *y = &b->suggestions[j];
            if (x->len == y->len && !memcmp(x->text, y->text, x->len) && fabsf(x->score - y->score) <= 1e-4f) {
                n++;
                break;
            }
        }
    }
    return n;
}

int cmd_loom(int argc, char **argv) {
    const char *model_path = NULL, *text = NULL, *file = NULL;
    int n_ctx = 0, n_threads = 0;
    bool no_autostop = false, json = false, compare = false;
    loom_params lp = loom_default_params();
    cli_opt opts[] = {
        {"-m|--model", OPT_STR, &model_path, "model file (GGUF)"},
        {"-p|--prompt", OPT_STR, &text, "prompt text"},
        {"-f|--file", OPT_STR, &file, "read the prompt from a file"},
        {"--depth", OPT_INT, &lp.depth, "most tokens per suggestion [12]"},
        {"--cutoff", OPT_FLOAT, &lp.cutoff, "least probability that splits off a branch [0.2]"},
        {"--multiplier", OPT_FLOAT, &lp.multiplier, "multiply the cutoff by this at each depth [1.0]"},
        {"--split", OPT_INT, &lp.split, "most children per node (0: no limit) [3]"},
        {"--max", OPT_INT, &lp.max, "most suggestions [25]"},
        {"--no-autostop", OPT_FLAG, &no_autostop, "do not end suggestions at '.' or ','"},
        {"--logprob", OPT_FLAG, &lp.logprob, "score with the sum of log-probabilities"},
        {"--json", OPT_FLAG, &json, "print {\"suggestions\":[{\"text\",\"score\",\"tokens\"}]}"},
        {"--compare", OPT_FLAG, &compare, "also expand one node per decode call; print both best-of-2 wall times"},
        {"-c|--ctx-size", OPT_INT, &n_ctx, "context size (0: the model's, at most 4096)"},
        {"-t|--threads", OPT_INT, &n_threads, "threads (0: all CPUs)"},
    };
    int n_pos, rc;
    if ((rc = cli_parse("loom -m MODEL (-p TEXT | -f FILE) [options]", argc, argv, opts, ARRAY_LEN(opts), NULL, 0, &n_pos)))
        return rc;
    lp.autostop = !no_autostop;
    if (n_ctx < 0 || n_threads < 0) return cli_fail("loom: context size and threads must not be negative");
    cli_input in;
    if (!cli_input_open(&in, model_path, text, file, NULL, true)) return 1;
    int rcode = 1;
    fwd_ctx *c = NULL;
    sess *root = NULL;
    loom_result r = {0}, rn = {0};
    sim_err err;
    size_t len = loom_trim_prompt(in.prompt, in.len);
    if (len != in.len) { // tokenize without the trailing space
        mem_free(in.toks);
        in.toks = NULL;
        int n = tok_encode_alloc(in.m->vocab, in.prompt, len, true, true, &in.toks, &err);
        if (n < 0) {
            cli_fail("cannot tokenize the prompt: %s", err.msg);
            goto done;
        }
        in.n = n;
    }
    if (in.n == 0) {
        cli_fail("loom: the prompt is empty and the model adds no BOS token");
        goto done;
    }
    fwd_params fp = fwd_default_params();
    fp.n_ctx = n_ctx;
    fp.n_outputs = KV_MAX_SEQ;
    fp.n_threads = n_threads;
    if (fwd_new(&c, in.m, &fp, &err) != SIM_OK) {
        cli_fail("%s", err.msg);
        goto done;
    }
    sess_params sp = sess_default_params();
    sp.context_shift = false;
    if (sess_new(&root, c, &sp, &err) != SIM_OK || sess_set_prompt(root, in.toks, in.n, NULL, &err) != SIM_OK) {
        cli_fail("loom: %s", err.msg);
        goto done;
    }
    uint64_t t0 = time_ns();
    if (loom_expand(root, &lp, &r, &err) != SIM_OK) {
        cli_fail("loom: %s", err.msg);
        goto done;
    }
    uint64_t t1 = time_ns();
    if (json) {
        if (!print_json(&r)) {
            cli_fail("loom: cannot write the output");
            goto done;
        }
    } else {
        for (int i = 0; i < r.n_suggestions; i++) {
            const loom_suggestion *s = &r.suggestions[i];
            printf("%8.4f\t", s->score);
            for (size_t k = 0; k < s->len; k++) putchar(s->text[k] == '\n' ? ' ' : s->text[k]);
            putchar('\n');
        }
    }
    fflush(stdout);
    if (r.truncated) fprintf(stderr, "simularity: loom: a frontier was cut to %d branches\n", lp.max_frontier);
    if (compare) {
        // Naive, then batched and naive once more: the best time of each, so
        // neither pays alone for a cold cache or a busy moment.
        double tb = (double)(t1 - t0) / 1e9, tn = 1e30;
        for (int rep = 0; rep < 2; rep++) {
            uint64_t t2 = time_ns();
            loom_result_free(&rn);
            if (loom_expand_naive(root, &lp, &rn, &err) != SIM_OK) {
                cli_fail("loom: naive: %s", err.msg);
                goto done;
            }
            uint64_t t3 = time_ns();
            tn = MIN(tn, (double)(t3 - t2) / 1e9);
            if (rep == 1) break;
            loom_result again;
            if (loom_expand(root, &lp, &again, &err) != SIM_OK) {
                cli_fail("loom: %s", err.msg);
                goto done;
            }
            tb = MIN(tb, (double)(time_ns() - t3) / 1e9);
            loom_result_free(&again);
        }
        fprintf(stderr, "loom: %d nodes, %d suggestions, depth %d, cutoff %g, split %d, %d threads\n", r.n_nodes,
                r.n_suggestions, lp.depth, (double)lp.cutoff, lp.split, fwd_n_threads(c));
        fprintf(stderr, "batched: %.3f s (%d decode calls, %d tokens)\n", tb, r.n_decodes, r.n_decoded);
        fprintf(stderr, "naive:   %.3f s (%d decode calls, %d tokens)\n", tn, rn.n_decodes, rn.n_decoded);
        fprintf(stderr, "ratio:   %.2fx (naive / batched)\n", tn / (tb > 0 ? tb : 1e-9));
        // Batched and single-token decodes round differently (gemm vs gemv
        // kernels): near-ties between probabilities may resolve differently.
        fprintf(stderr, "agree:   %d of %d suggestions%s\n", agreeing(&r, &rn), r.n_suggestions,
                agreeing(&r, &rn) == r.n_suggestions && r.n_suggestions == rn.n_suggestions ? "" :
                " (the rest differ at near-ties: batched and single-token decodes round differently)");
    }
    rcode = 0;
done:
    loom_result_free(&r);
    loom_result_free(&rn);
    sess_free(root);
    fwd_free(c);
    cli_input_close(&in);
    return rcode;
}
