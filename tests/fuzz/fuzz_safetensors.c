// fuzz_safetensors.c — libFuzzer target for the image weight parsers:
// arbitrary bytes as a .safetensors file, as a pickle for the safe
// unpickler, and as a PyTorch zip checkpoint. Opening must fail with a
// message or succeed; a safetensors file that opens has every tensor inside
// the buffer, and each F32/F16/BF16 tensor converts.
// Build and run: make fuzz && build/fuzz/fuzz_safetensors DIR
#include <stddef.h>
#include <stdint.h>

#include "image/pth.h"
#include "image/safetensors.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    st_file *f;
    sim_err err;
    int nt;
    pth_check_pickle(data, size, &nt, &err);
    if (size > 4 && data[0] == 'P' && data[1] == 'K' && pth_open_memory(&f, data, size, "fuzz.pth", &err) == SIM_OK) st_close(f);
    if (st_open_memory(&f, data, size, "fuzz.safetensors", &err) != SIM_OK) return 0;
    for (int i = 0; i < f->n_tensors; i++) {
        const st_tensor *t = &f->tensors[i];
        if (t->data < data || t->data + t->size > data + size) __builtin_trap();
        if (t->n_elem > (1 << 20)) continue;
        float *out = mem_alloc((size_t)(t->n_elem ? t->n_elem : 1) * sizeof(float));
        if (!out) continue;
        if (st_find(f, t->name) != t) __builtin_trap();
        st_read_f32(f, t->name, t->shape, t->n_dims, out, &err);
        mem_free(out);
    }
    st_close(f);
    return 0;
}
