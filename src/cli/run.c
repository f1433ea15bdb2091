// run.c — `simularity run`: stream a continuation of a prompt to stdout.
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "cli/cli.h"
#include "infer/sample.h"
#include "model/forward.h"

int cmd_run(int argc, char **argv) {
    const char *model_path = NULL, *text = NULL, *file = NULL, *kv_type = "f16";
    int n_predict = -1, n_threads = 0, n_ctx = 0, n_batch = 512;
    smp_params sp = smp_default_params();
    uint64_t seed = 0;
    bool have_seed = false;
    const char *seed_str = NULL;
    cli_opt opts[] = {
        {"-m|--model", OPT_STR, &model_path, "model file (GGUF)"},
        {"-p|--prompt", OPT_STR, &text, "prompt text"},
        {"-f|--file", OPT_STR, &file, "read the prompt from a file"},
        {"-n|--n-predict", OPT_INT, &n_predict, "tokens to generate (-1: until the end of text or a full context)"},
        {"--temp", OPT_FLOAT, &sp.temp, "temperature (0: greedy) [0.8]"},
        {"--top-k", OPT_INT, &sp.top_k, "keep the k most likely tokens (0: off) [40]"},
        {"--top-p", OPT_FLOAT, &sp.top_p, "nucleus: smallest set with this probability (1: off) [0.95]"},
        {"--min-p", OPT_FLOAT, &sp.min_p, "drop tokens below this fraction of the best one [0.05]"},
        {"--repeat-penalty", OPT_FLOAT, &sp.repeat_penalty, "penalty for recent tokens (1: off) [1.0]"},
        {"--repeat-last-n", OPT_INT, &sp.repeat_last_n, "window of the penalty [64]"},
        {"--seed", OPT_STR, &seed_str, "random seed [random]"},
        {"-t|--threads", OPT_INT, &n_threads, "threads (0: all CPUs)"},
        {"-c|--ctx-size", OPT_INT, &n_ctx, "context size (0: the model's, at most 4096)"},
        {"-b|--batch-size", OPT_INT, &n_batch, "prompt tokens per batch [512]"},
        {"--kv-type", OPT_STR, &kv_type, "KV cache type: f16 or f32 [f16]"},
    };
    int n_pos, rc;
    if ((rc = cli_parse("run -m MODEL (-p TEXT | -f FILE) [options]", argc, argv, opts, ARRAY_LEN(opts), NULL, 0, &n_pos)))
        return rc;
    if (seed_str) {
        char *end;
        seed = strtoull(seed_str, &end, 0);
        if (*end || *seed_str == '-') return cli_fail("run: --seed '%s' is not a non-negative integer", seed_str);
        have_seed = true;
    }
    if (!have_seed) seed = (uint64_t)time(NULL) ^ ((uint64_t)getpid() << 32) ^ (uint64_t)clock();
    sp.seed = seed;
    tt_type kvt;
    if (strcmp(kv_type, "f16") == 0) kvt = TT_F16;
    else if (strcmp(kv_type, "f32") == 0) kvt = TT_F32;
    else return cli_fail("run: --kv-type must be f16 or f32");
    if (n_threads < 0 || n_ctx < 0 || n_batch < 1) return cli_fail("run: threads, context and batch sizes must be positive");

    cli_input in;
    if (!cli_input_open(&in, model_path, text, file, false, true)) return 1;
    model *m = in.m;
    int rcode = 1, n_prompt = in.n;
    const int32_t *toks = in.toks;
    fwd_ctx *c = NULL;
    smp_ctx *smp = NULL;
    sim_err err;
    fwd_params fp = fwd_default_params();
    fp.n_ctx = n_ctx;
    fp.n_batch = n_batch;
    fp.n_outputs = 1;
    fp.n_threads = n_threads;
    fp.kv_type = kvt;
    if (n_prompt == 0) {
        cli_fail("run: the prompt is empty and the model adds no BOS token");
        goto done;
    }
    if (fwd_new(&c, m, &fp, &err) != SIM_OK || smp_new(&smp, m->hp.n_vocab, &sp, &err) != SIM_OK) {
        cli_fail("%s", err.msg);
        goto done;
    }
    if (n_prompt >= fwd_n_ctx(c)) {
        cli_fail("run: the prompt has %d tokens but the context holds %d (raise -c)", n_prompt, fwd_n_ctx(c));
        goto done;
    }
    for (int i = 0; i < n_prompt; i++) smp_accept(smp, toks[i]);
    uint64_t t0 = time_ns();
    if (!cli_eval(c, toks, n_prompt, 0, false, NULL, NULL)) goto done;
    uint64_t t1 = time_ns();
    tok_stream ts;
    tok_stream_init(&ts, m->vocab, 0);
    char buf[TOK_STREAM_BUF];
    int n_gen = 0, n_past = n_prompt;
    const char *why = "the token limit was reached";
    while (n_predict < 0 || n_gen < n_predict) {
        int32_t tok = smp_sample(smp, fwd_logits(c, 0));
        if (tok < 0) {
            cli_fail("run: sampling failed: no token is allowed (are the logits finite?)");
            goto done;
        }
        smp_accept(smp, tok);
        n_gen++;
        if (tok_is_eog(m->vocab, tok)) {
            why = "the model ended the text";
            break;
        }
        int k = tok_stream_push(&ts, tok, buf, sizeof buf);
        if (k > 0) {
            fwrite(buf, 1, (size_t)k, stdout);
            fflush(stdout);
        }
        if (n_predict >= 0 && n_gen >= n_predict) break;
        if (n_past >= fwd_n_ctx(c)) {
            why = "the context is full (raise -c)";
            break;
        }
        int32_t pos = n_past;
        kv_seq_mask seq = 1;
        fwd_batch b = {.n = 1, .tokens = &tok, .pos = &pos, .seqs = &seq, .logits = NULL};
        if (fwd_decode(c, &b, &err) != SIM_OK) {
            cli_fail("%s", err.msg);
            goto done;
        }
        n_past++;
    }
    int k = tok_stream_flush(&ts, buf, sizeof buf);
    fwrite(buf, 1, (size_t)k, stdout);
    fflush(stdout);
    uint64_t t2 = time_ns();
    double pp_s = (double)(t1 - t0) / 1e9, tg_s = (double)(t2 - t1) / 1e9;
    fprintf(stderr, "\n\nsimularity: %s\n", why);
    fprintf(stderr, "prompt:     %d tokens in %.3f s (%.2f tokens/s)\n", n_prompt, pp_s, n_prompt / pp_s);
    fprintf(stderr, "generation: %d tokens in %.3f s (%.2f tokens/s)\n", n_gen, tg_s, n_gen / (tg_s > 0 ? tg_s : 1e-9));
    fprintf(stderr, "seed %llu, %d threads, %s kernels, context %d\n", (unsigned long long)seed, fwd_n_threads(c),
            fwd_kernels(c)->name, fwd_n_ctx(c));
    rcode = 0;
done:
    smp_free(smp);
    fwd_free(c);
    cli_input_close(&in);
    return rcode;
}
