// fuzz_gguf.c — libFuzzer target: arbitrary bytes as a GGUF model file.
// Opening must fail with a message or succeed; a file that opens is loaded
// as a model (metadata, tokenizer, tensor shapes), and a model that loads
// tokenizes a short text. Build and run: make fuzz && build/fuzz/fuzz_gguf
// tests/fuzz/corpus-gguf (seeds: any small .gguf files).
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include "model/model.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    gguf_file *f;
    sim_err err;
    if (gguf_open_memory(&f, data, size, "fuzz.gguf", &err) != SIM_OK) return 0;
    model *m;
    model_params p = {.vocab_only = size % 2 == 0};
    if (model_load_gguf(&m, f, &p, &err) != SIM_OK) return 0;
    int32_t ids[64];
    const char *text = "Hello world! <s> é 日本 \xF0\x9F\x98\x80 123";
    tok_encode(m->vocab, text, strlen(text), true, true, ids, 64, &err);
    model_free(m);
    return 0;
}
