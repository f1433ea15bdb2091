// wts.h — binding a model's weights from a safetensors file into one
// float32 arena, in two passes over the same binding function:
//
//     static sim_status bind(wts_loader *L, my_model *m) {
//         WTS_TAKE(L, &m->conv_w, SHAPE(64, 4, 3, 3), "decoder.conv_in.weight");
//         ...
//     }
//     wts_loader L;
//     wts_begin(&L, f, "", err);        // pass 1: only counts floats
//     bind(&L, m);
//     wts_alloc(&L);                    // one allocation of the counted size
//     bind(&L, m);                      // pass 2: reads, converts and checks shapes
//     m->weights = wts_arena(&L);
//
// (wts_load does exactly this with a callback.)
//
// Tensors land in the arena in the order they are taken, so consecutive
// takes of (C, C) matrices form one (k·C, C) matrix (q, k, v stacked).
// Errors: the first failure (missing tensor, other shape, unsupported
// dtype, no memory) is kept; later takes do nothing and wts_status
// returns it, so a binding function need not check each take.
#ifndef SIM_WTS_H
#define SIM_WTS_H

#include "image/safetensors.h"

typedef struct wts_loader {
    const st_file *f;
    char prefix[96];     // prepended to every name
    bool counting;       // pass 1
    size_t count;        // floats counted (pass 1) or used (pass 2)
    float *arena, *next; // pass 2
    sim_status st;
    sim_err *err;
} wts_loader;

void wts_begin(wts_loader *L, const st_file *f, const char *prefix, sim_err *err);
// Ends pass 1: allocates the arena (SIM_ERR_NOMEM kept in L->st on failure).
sim_status wts_alloc(wts_loader *L);
// The arena (the caller frees it with mem_free); NULL after an error.
float *wts_arena(wts_loader *L);
void wts_abort(wts_loader *L); // frees the arena after an error

// Both passes at once: bind(L, ud) counts, the arena is allocated, bind(L, ud)
// reads. *arena gets the arena (mem_free) on success; on error nothing is kept.
sim_status wts_load(const st_file *f, const char *prefix, void (*bind)(wts_loader *L, void *ud), void *ud, float **arena,
                    sim_err *err);

// Takes the tensor prefix + printf(fmt, ...) with shape (d[0..nd)) into *out.
void wts_take(wts_loader *L, float **out, int nd, const int64_t *d, const char *fmt, ...) __attribute__((format(printf, 5, 6)));
// A conv weight (cout, cin, kh, kw), stored packed as op_conv_pack does
// ((cout, kh, kw, cin)); use it with op_conv.packed = true.
void wts_take_conv(wts_loader *L, float **out, int cout, int cin, int kh, int kw, const char *fmt, ...) __attribute__((format(printf, 7, 8)));
#define WTS_SHAPE(...) (int)(sizeof((int64_t[]){__VA_ARGS__}) / sizeof(int64_t)), (const int64_t[]){__VA_ARGS__}

#endif
