// quantize.c — `simularity quantize` and `simularity synth`.
#include <string.h>

#include "cli/cli.h"
#include "model/quantize.h"
#include "tensor/pool.h"

int cmd_quantize(int argc, char **argv) {
    int n_threads = 0;
    cli_opt opts[] = {{"-t|--threads", OPT_INT, &n_threads, "threads (0: all CPUs)"}};
    const char *pos[3];
    int n_pos, rc;
    if ((rc = cli_parse("quantize IN.gguf OUT.gguf TYPE   (TYPE: f32 f16 bf16 q4_0 q4_1 q5_0 q5_1 q8_0 q2_k q3_k_m q4_k_s q4_k_m q5_k_s q5_k_m q6_k)",
                        argc, argv, opts, ARRAY_LEN(opts), pos, 3, &n_pos)))
        return rc;
    if (n_pos != 3) return cli_fail("quantize: expected IN.gguf OUT.gguf TYPE");
    qz_ftype ft;
    if (!qz_ftype_from_name(pos[2], &ft)) return cli_fail("quantize: unknown type '%s' (one of %s)", pos[2], qz_ftype_list());
    if (strcmp(pos[0], pos[1]) == 0) return cli_fail("quantize: the output would overwrite the input");
    // Loading the model first proves the input is a model we can run.
    model *m = cli_load_model(pos[0], NULL);
    if (!m) return 1;
    model_free(m);
    sim_err err;
    uint64_t t0 = time_ns();
    if (qz_quantize_file(pos[0], pos[1], ft, n_threads > 0 ? n_threads : pool_cpu_count(), &err) != SIM_OK)
        return cli_fail("%s", err.msg);
    fprintf(stderr, "simularity: wrote %s (%s) in %.1f s\n", pos[1], qz_ftype_name(ft), (double)(time_ns() - t0) / 1e9);
    return 0;
}

int cmd_synth(int argc, char **argv) {
    qz_synth_params p = qz_synth_default();
    const char *out = NULL, *type = "f32";
    bool tied = false;
    cli_opt opts[] = {
        {"-o|--output", OPT_STR, &out, "file to write"},
        {"--arch", OPT_STR, &p.arch, "llama or qwen2 [llama]"},
        {"--vocab", OPT_INT, &p.n_vocab, "vocabulary size [512]"},
        {"--dim", OPT_INT, &p.n_embd, "model width [64]"},
        {"--layers", OPT_INT, &p.n_layer, "blocks [2]"},
        {"--heads", OPT_INT, &p.n_head, "attention heads [4]"},
        {"--kv-heads", OPT_INT, &p.n_head_kv, "key/value heads [2]"},
        {"--ffn", OPT_INT, &p.n_ff, "feed-forward width [192]"},
        {"--ctx", OPT_INT, &p.n_ctx_train, "training context length [2048]"},
        {"--rope-base", OPT_FLOAT, &p.rope_base, "RoPE base [10000]"},
        {"--type", OPT_STR, &type, "weight recipe (as for quantize) [f32]"},
        {"--tied", OPT_FLAG, &tied, "no output matrix: the token embedding doubles as it"},
        {"--seed", OPT_U64, &p.seed, "random seed [1]"},
        {"--vocab-from", OPT_STR, &p.vocab_from, "copy the tokenizer of this GGUF (sets the vocabulary size)"},
        {"-t|--threads", OPT_INT, &p.n_threads, "threads (0: all CPUs) [1]"},
    };
    int n_pos, rc;
    if ((rc = cli_parse("synth -o OUT.gguf [shape options] [--type T]", argc, argv, opts, ARRAY_LEN(opts), NULL, 0, &n_pos)))
        return rc;
    if (!out) return cli_fail("synth: no output file (-o FILE)");
    if (!qz_ftype_from_name(type, &p.ftype)) return cli_fail("synth: unknown type '%s' (one of %s)", type, qz_ftype_list());
    p.tied = tied;
    sim_err err;
    if (qz_synth(out, &p, &err) != SIM_OK) return cli_fail("%s", err.msg);
    return 0;
}
