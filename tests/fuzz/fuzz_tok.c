// fuzz_tok.c — libFuzzer target: arbitrary bytes as text for every
// tokenizer in ../shared/vocab (SentencePiece and byte-level BPE), with and
// without special-token parsing; then a decode round trip of the ids.
// Build and run: make fuzz && build/fuzz/fuzz_tok
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "model/model.h"

static tok_vocab *vocabs[8];
static int n_vocabs;

static void load_vocabs(void) {
    static const char *names[] = {"llama-spm", "phi-3", "gpt-2", "deepseek-llm", "starcoder", "falcon"};
    const char *dir = getenv("SIM_SHARED") ? getenv("SIM_SHARED") : "../shared";
    for (size_t i = 0; i < sizeof names / sizeof *names; i++) {
        char path[1024];
        snprintf(path, sizeof path, "%s/vocab/ggml-vocab-%s.gguf", dir, names[i]);
        gguf_file *f;
        sim_err err;
        if (gguf_open(&f, path, &err) != SIM_OK) continue;
        if (tok_load(&vocabs[n_vocabs], f, &err) == SIM_OK) n_vocabs++;
        gguf_close(f);
    }
    if (n_vocabs == 0) {
        fprintf(stderr, "fuzz_tok: no vocabularies found in %s/vocab\n", dir);
        abort();
    }
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    if (!n_vocabs) load_vocabs();
    static int32_t ids[1 << 16];
    static char text[1 << 18];
    sim_err err;
    for (int v = 0; v < n_vocabs; v++) {
        int n = tok_encode(vocabs[v], (const char *)data, size, size & 1, size & 2, ids, 1 << 16, &err);
        if (n < 0 || n > (1 << 16)) continue;
        tok_decode(vocabs[v], ids, n, 0, text, sizeof text);
    }
    return 0;
}
