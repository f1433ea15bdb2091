// info.c — `simularity info`: what a model is and what running it costs.
#include <string.h>

#include "cli/cli.h"
#include "model/forward.h"

static double mib(size_t b) { return (double)b / (1 << 20); }

int cmd_info(int argc, char **argv) {
    const char *model_path = NULL;
    int n_ctx = 0;
    cli_opt opts[] = {
        {"-m|--model", OPT_STR, &model_path, "model file (GGUF)"},
        {"-c|--ctx-size", OPT_INT, &n_ctx, "context size to cost (0: the model's, at most 4096)"},
    };
    int n_pos, rc;
    if ((rc = cli_parse("info -m MODEL [-c CTX]", argc, argv, opts, ARRAY_LEN(opts), NULL, 0, &n_pos))) return rc;
    if (n_ctx < 0) return cli_fail("info: the context size must be positive");
    model *m = cli_load_model(model_path, NULL);
    if (!m) return 1;
    const model_hparams *hp = &m->hp;
    const gguf_file *g = m->gguf;
    printf("file:          %s (%zu bytes, %.1f MiB, GGUF v%u)\n", model_path, g->size, mib(g->size), g->version);
    printf("architecture:  %s\n", hp->arch_name);
    printf("parameters:    %.3f B (%llu)\n", (double)m->n_params / 1e9, (unsigned long long)m->n_params);
    printf("shape:         %d layers, width %d, %d heads / %d KV heads of %d, ffn %d, vocab %d\n", hp->n_layer,
           hp->n_embd, hp->n_head, hp->n_head_kv, hp->head_dim, hp->n_ff, hp->n_vocab);
    printf("context:       trained for %d; RoPE %s, base %g, %d dims, scale %g%s\n", hp->n_ctx_train,
           hp->rope_neox ? "neox" : "normal", hp->rope_base, hp->rope_dim, hp->rope_freq_scale,
           m->rope_freqs ? ", frequency factors" : "");
    printf("output:        %s\n", m->tied_output ? "tied to the token embedding" : "separate matrix");
    printf("tokenizer:     %s%s%s, %d tokens\n", tok_get_kind(m->vocab) == TOK_KIND_SPM ? "SentencePiece" : "byte-level BPE",
           tok_get_kind(m->vocab) == TOK_KIND_BPE ? ", pre " : "", tok_pre_name(m->vocab), tok_n_vocab(m->vocab));
    printf("tensor types: ");
    for (int t = 0; t < TT_COUNT; t++) {
        int count = 0;
        size_t bytes = 0;
        for (int64_t i = 0; i < g->n_tensors; i++)
            if ((int)g->tensors[i].type == t) {
                count++;
                bytes += g->tensors[i].size;
            }
        if (count) printf(" %s ×%d (%.1f MiB)", tt_name((tt_type)t), count, mib(bytes));
    }
    printf("\n");
    fwd_params fp = fwd_default_params();
    fp.n_ctx = n_ctx;
    fp = fwd_resolve_params(m, &fp);
    size_t per_tok = kv_bytes_per_cell(hp->n_layer, hp->n_head_kv * hp->head_dim, fp.kv_type);
    size_t kv = per_tok * (size_t)fp.n_ctx, scratch = fwd_scratch_bytes(m, &fp);
    printf("KV cache:      %zu bytes per token (f16); %.1f MiB for a context of %d\n", per_tok, mib(kv), fp.n_ctx);
    printf("memory:        weights %.1f MiB (mapped) + KV %.1f MiB + scratch %.1f MiB (batch %d, %d threads) = %.1f MiB\n",
           mib(m->weight_bytes), mib(kv), mib(scratch), fp.n_batch, fp.n_threads, mib(m->weight_bytes + kv + scratch));
    model_free(m);
    return 0;
}
