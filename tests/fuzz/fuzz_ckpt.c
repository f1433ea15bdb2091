// fuzz_ckpt.c — libFuzzer target for the image model formats: arbitrary
// bytes as a single-file checkpoint (.safetensors, a PyTorch zip .ckpt, and
// a GGUF through gguf_st), as a diffusers AutoencoderTiny file, and as each diffusers
// config.json. Opening must fail with a message or succeed; every tensor of
// a view that opens lies inside the file's bytes and converts.
// Build and run: make fuzz && build/fuzz/fuzz_ckpt DIR (seeds: small
// single-file checkpoints and GGUFs, e.g. those test_image_ckpt writes, and
// config.json files).
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <unistd.h>

#include "base/file.h"
#include "image/ckpt.h"
#include "image/diffusers.h"
#include "image/gguf_st.h"
#include "image/pth.h"
#include "image/tiny_ae.h"

// Every tensor of v inside src's bytes, found by its name, and readable.
static void check_view(const st_file *v, const st_file *src) {
    if (!v) return;
    for (int i = 0; i < v->n_tensors; i++) {
        const st_tensor *t = &v->tensors[i];
        if (t->data < src->base || t->data + t->size > src->base + src->file_size || st_find(v, t->name) != t) __builtin_trap();
        if (t->n_elem > (1 << 16)) continue;
        float *out = mem_alloc((size_t)(t->n_elem ? t->n_elem : 1) * sizeof(float));
        sim_err err;
        if (out) st_read_f32(v, t->name, NULL, 0, out, &err);
        mem_free(out);
    }
}

static void views(st_file *f) {
    st_file *dec, *enc;
    sim_err err;
    if (tae_diffusers_views(f, &dec, &enc, &err) == SIM_OK) {
        check_view(dec, f), check_view(enc, f);
        st_close(dec), st_close(enc);
    }
    ckpt *c;
    if (ckpt_from_file(&c, f, NULL, &err) != SIM_OK) return; // closes f
    check_view(c->unet, c->src), check_view(c->vae, c->src), check_view(c->text, c->src);
    ckpt_close(c);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    st_file *f;
    sim_err err;
    if (st_open_memory(&f, data, size, "fuzz.safetensors", &err) == SIM_OK) views(f);
    if (gguf_st_open_memory(&f, data, size, "fuzz.gguf", &err) == SIM_OK) views(f);
    if (size > 4 && data[0] == 'P' && data[1] == 'K' && pth_open_memory(&f, data, size, "fuzz.ckpt", &err) == SIM_OK) views(f);
    // The configs are read from files.
    char path[64];
    snprintf(path, sizeof path, "/tmp/fuzz_ckpt_%d.json", (int)getpid());
    if (file_write_all(path, data, size, &err) == SIM_OK) {
        dif_unet_config u;
        dif_vae_config v;
        dif_clip_config c;
        dif_read_unet_config(&u, path, &err);
        dif_read_vae_config(&v, path, &err);
        dif_read_clip_config(&c, path, &err);
        unlink(path);
    }
    return 0;
}
