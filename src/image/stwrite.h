// stwrite.h — writing .safetensors files (the format is described in
// safetensors.h): random test models, converted checkpoints, test fixtures.
//
//     stw_entry e[2] = {{"conv.weight", 4, {8, 4, 3, 3}}, {"conv.bias", 1, {8}}};
//     stw_write("model.safetensors", e, 2, ST_F16, NULL, fill, ud, &err);
//
// The header lists the tensors in the given order with consecutive
// data_offsets; then each tensor's data, which fill(ud, i, out) produces as
// float32 (out has room for the tensor's elements) and the writer converts
// to the file's dtype (F32, F16 or BF16, rounded to nearest even). Only one
// tensor's floats are in memory at a time, so files larger than memory can
// be written. The header is padded with spaces to a multiple of 8 bytes.
//
// Errors: sim_status + sim_err naming the path (or the tensor): bad
// arguments, a failing fill, no memory, I/O. On error the partial file is
// removed.
#ifndef SIM_STWRITE_H
#define SIM_STWRITE_H

#include "image/safetensors.h"

typedef struct stw_entry {
    char name[128];
    int n_dims;                 // 1..ST_MAX_DIMS
    int64_t shape[ST_MAX_DIMS]; // outermost first
} stw_entry;

// Elements of e (0 for a bad shape).
int64_t stw_numel(const stw_entry *e);

// Tensor i's n elements as float32 into out.
typedef sim_status (*stw_fill_fn)(void *ud, int i, float *out, sim_err *err);

// Writes e[0..n) in `dtype` (ST_F32, ST_F16 or ST_BF16). metadata: NULL or
// pairs of strings {key, value, key, value, ..., NULL} for "__metadata__".
sim_status stw_write(const char *path, const stw_entry *e, int n, st_dtype dtype, const char *const *metadata, stw_fill_fn fill,
                     void *ud, sim_err *err);

#endif
