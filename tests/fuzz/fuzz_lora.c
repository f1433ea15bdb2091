// fuzz_lora.c — libFuzzer target for the LoRA parser and merge (image/lora.h):
// arbitrary bytes as a LoRA .safetensors file, added to a set, attached to
// a small fixed target (linear, 1×1 and 3×3 convs, an ambiguous kohya pair)
// whose every weight is then read through the patch hook; and the same
// bytes as a prompt with <lora:...> tags. Every step must fail with a
// message or succeed; the parsed tags must be well-formed.
// Build and run: make fuzz && build/fuzz/fuzz_lora DIR
#include <math.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include "image/lora.h"

static const char TARGET_HEADER[] =
    "{\"blk.attn1.to_q.weight\":{\"dtype\":\"F32\",\"shape\":[3,2],\"data_offsets\":[0,24]},"
    "\"blk.conv1.weight\":{\"dtype\":\"F32\",\"shape\":[2,1,3,3],\"data_offsets\":[24,96]},"
    "\"blk.proj_in.weight\":{\"dtype\":\"F32\",\"shape\":[2,2,1,1],\"data_offsets\":[96,112]},"
    "\"a.b_c.weight\":{\"dtype\":\"F32\",\"shape\":[2,2],\"data_offsets\":[112,128]},"
    "\"a_b.c.weight\":{\"dtype\":\"F32\",\"shape\":[2,2],\"data_offsets\":[128,144]},"
    "\"blk.bias\":{\"dtype\":\"F32\",\"shape\":[3],\"data_offsets\":[144,156]}}";

static void fuzz_tags(const uint8_t *data, size_t size) {
    char prompt[4096];
    size_t n = size < sizeof prompt - 1 ? size : sizeof prompt - 1;
    memcpy(prompt, data, n);
    prompt[n] = 0;
    lora_tag tags[LORA_MAX];
    int nt;
    char *clean;
    sim_err err;
    if (lora_tags_parse(prompt, &clean, tags, LORA_MAX, &nt, &err) != SIM_OK) return;
    if (nt < 0 || nt > LORA_MAX || strlen(clean) > n) __builtin_trap();
    for (int i = 0; i < nt; i++)
        if (!tags[i].name[0] || strchr(tags[i].name, '/') || !(fabsf(tags[i].weight) <= 100)) __builtin_trap();
    mem_free(clean);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    fuzz_tags(data, size);
    static uint8_t target[8 + sizeof TARGET_HEADER + 160];
    size_t hl = sizeof TARGET_HEADER - 1;
    for (int i = 0; i < 8; i++) target[i] = (uint8_t)((uint64_t)hl >> (8 * i));
    memcpy(target + 8, TARGET_HEADER, hl);
    memset(target + 8 + hl, 0, 156);
    st_file *t, *f;
    lora_set *s;
    sim_err err;
    if (st_open_memory(&t, target, 8 + hl + 156, "target", &err) != SIM_OK) __builtin_trap();
    if (lora_set_new(&s, &err) != SIM_OK) {
        st_close(t);
        return 0;
    }
    if (st_open_memory(&f, data, size, "fuzz.safetensors", &err) == SIM_OK && lora_add_file(s, f, 0.5f, &err) == SIM_OK &&
        lora_attach(s, LORA_UNET, t, &err) == SIM_OK) {
        float w[18];
        for (int i = 0; i < t->n_tensors; i++) st_read_f32(t, t->tensors[i].name, NULL, 0, w, &err);
        lora_detach(s, LORA_UNET, t, &err);
    }
    lora_set_free(s);
    st_close(t);
    return 0;
}
