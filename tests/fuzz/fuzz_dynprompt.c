// fuzz_dynprompt.c — libFuzzer target for dynamic prompts (image/dynprompt.h):
// arbitrary text parses or fails with a message; a parsed prompt expands its
// first and last combinations and a few random samples.
// Build and run: make fuzz && build/fuzz/fuzz_dynprompt DIR
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include "image/dynprompt.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    if (size > 4096) return 0;
    char *text = mem_strndup((const char *)data, size);
    if (!text) return 0;
    dp_prompt *p;
    sim_err err;
    if (dp_parse(&p, text, &err) == SIM_OK) {
        uint64_t n = dp_count(p), s = 1;
        char *out;
        if (n && n != UINT64_MAX) {
            if (dp_expand_nth(p, 0, &out, &err) == SIM_OK) mem_free(out);
            if (dp_expand_nth(p, n - 1, &out, &err) == SIM_OK) mem_free(out);
            if (dp_expand_nth(p, n, &out, &err) == SIM_OK) __builtin_trap();
        }
        for (int i = 0; i < 3; i++)
            if (dp_sample(p, &s, &out, &err) == SIM_OK) mem_free(out);
        dp_free(p);
    }
    mem_free(text);
    return 0;
}
