// wts.h — binding a model's weights from a safetensors file into one
// arena, in two passes over the same binding function:
//
//     static void bind(wts_loader *L, void *ud) {
//         my_model *m = ud;
//         wts_take_mat(L, &m->conv_w, WTS_SHAPE(64, 4, 3, 3), "decoder.conv_in.weight");
//         wts_take(L, &m->conv_b, WTS_SHAPE(64), "decoder.conv_in.bias");
//         ...
//     }
//     void *arena;
//     wts_load(f, "", bind, m, &arena, err);  // pass 1 counts bytes, one allocation, pass 2 reads
//
// Matrix weights (convolutions, linear layers: wts_take_mat, wts_take_stack)
// stay in the file's type when it is F16 or BF16 — half the memory of
// float32, converted to f32 inside the GEMM's packing — and are float32
// otherwise; so may a large table of which few rows are read (the token
// embedding). Everything else (norms, biases, wts_take) is
// float32. When the file has a patch hook (st_set_patch, e.g. a LoRA
// merge), every tensor goes through st_read_f32 so the hook sees it, and a
// kept F16/BF16 tensor is converted back after patching.
//
// Tensors land in the arena in the order they are taken, each aligned to
// its element size. wts_take_stack takes several matrices of one shape as
// one (q, k, v stacked: (3C, C)), in one type.
// Errors: the first failure (missing tensor, other shape, unsupported
// dtype, no memory) is kept; later takes do nothing and wts_load returns
// it, so a binding function need not check each take.
#ifndef SIM_WTS_H
#define SIM_WTS_H

#include "image/safetensors.h"
#include "tensor/ops.h"

typedef struct wts_loader {
    const st_file *f;
    char prefix[96];     // prepended to every name
    bool counting;       // pass 1
    size_t count;        // bytes counted (pass 1) or used (pass 2)
    char *arena, *end;   // pass 2
    sim_status st;
    sim_err *err;
} wts_loader;

// Binds with bind(L, ud) twice: counting, then (after one allocation)
// reading. *arena gets the arena (mem_free) on success; on error nothing is kept.
sim_status wts_load(const st_file *f, const char *prefix, void (*bind)(wts_loader *L, void *ud), void *ud, void **arena,
                    sim_err *err);

// Takes the tensor prefix + printf(fmt, ...) with shape (d[0..nd)) as float32 into *out.
void wts_take(wts_loader *L, float **out, int nd, const int64_t *d, const char *fmt, ...) __attribute__((format(printf, 5, 6)));
// A matrix weight (shape d: rows first, e.g. (cout, cin, kh, kw)): F16/BF16 kept, else float32.
void wts_take_mat(wts_loader *L, op_mat *out, int nd, const int64_t *d, const char *fmt, ...) __attribute__((format(printf, 5, 6)));
// n matrices of shape d named prefix + names[i], back to back as one matrix
// of n·d[0] rows; kept in F16/BF16 only when all n are of that type.
void wts_take_stack(wts_loader *L, op_mat *out, int n, int nd, const int64_t *d, const char *const *names);
#define WTS_SHAPE(...) (int)(sizeof((int64_t[]){__VA_ARGS__}) / sizeof(int64_t)), (const int64_t[]){__VA_ARGS__}

#endif
