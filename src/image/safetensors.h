// safetensors.h — reading .safetensors weight files (diffusers and
// single-file Stable Diffusion checkpoints), mmap'd and validated.
//
// The format, in order:
//   u64 N            little-endian length of the header
//   N bytes          a UTF-8 JSON object (may end with spaces):
//                      { "NAME": {"dtype": "F32", "shape": [d0, d1, ...],
//                                 "data_offsets": [begin, end]}, ...,
//                        "__metadata__": {"key": "string value", ...} }   (optional)
//   the data buffer  every tensor's bytes at [begin, end) relative to here,
//                    row-major, little-endian
//
// Opening checks every bound before anything is used: N fits the file and a
// sane limit; the header is a JSON object without duplicate names; each
// entry has a known dtype, a shape of non-negative integers whose product
// times the dtype size equals end - begin (with overflow checks), offsets
// inside the data buffer, and no two tensors share a byte. A file that
// fails any check is refused with a message naming the tensor and the
// field; nothing is returned.
//
//     st_file *f;
//     if (st_open(&f, "unet/diffusion_pytorch_model.safetensors", &err) != SIM_OK) ...
//     const st_tensor *t = st_find(f, "conv_in.weight");
//     float w[...];
//     if (st_read_f32(f, "conv_in.weight", (int64_t[]){32, 4, 3, 3}, 4, w, &err) != SIM_OK) ...
//     st_close(f);
//
// Ownership: the st_file owns the mapping, the names and the tensor table;
// st_tensor.data points into the mapping and lives until st_close.
// Errors: sim_status plus a message in the caller's sim_err (base.h).
#ifndef SIM_SAFETENSORS_H
#define SIM_SAFETENSORS_H

#include "base/base.h"
#include "base/file.h"

typedef enum st_dtype {
    ST_F32 = 0,
    ST_F16,
    ST_BF16,
    // Known so files holding them open; st_read_f32 refuses them.
    ST_F64,
    ST_I64,
    ST_I32,
    ST_I16,
    ST_I8,
    ST_U8,
    ST_BOOL,
    ST_F8_E4M3,
    ST_F8_E5M2,
    ST_DTYPE_COUNT
} st_dtype;

#define ST_MAX_DIMS 8
#define ST_MAX_HEADER (100u << 20) // bytes of JSON accepted (the reference limit)

typedef struct st_tensor {
    const char *name;
    st_dtype dtype;
    int n_dims;                    // 0 for a scalar
    int64_t shape[ST_MAX_DIMS];    // outermost first (PyTorch order)
    int64_t n_elem;
    const uint8_t *data;           // in the mapping; not aligned in general
    size_t size;                   // bytes = n_elem * st_dtype_size(dtype)
} st_tensor;

// A hook st_read_f32 calls with every tensor it has just converted to
// float32 (e.g. to merge a LoRA into it): name as asked for, data holding
// n_elem floats of the tensor's shape. An error fails the read.
typedef sim_status (*st_patch_fn)(void *ud, const char *name, float *data, int n_dims, const int64_t *shape, sim_err *err);

typedef struct st_file {
    file_map map;        // unused when opened from memory
    const uint8_t *base; // the whole file
    size_t file_size;
    int n_tensors;
    st_tensor *tensors;  // sorted by name
    char *names;         // all names, NUL-terminated, back to back
    char *path;          // for messages
    uint8_t *owned;      // data owned by the file (st_from_parts), or NULL
    st_patch_fn patch;   // see st_set_patch; NULL: none
    void *patch_ud;
} st_file;

const char *st_dtype_name(st_dtype t);
size_t st_dtype_size(st_dtype t);

// Maps and validates path. On error *out is NULL and err says why.
sim_status st_open(st_file **out, const char *path, sim_err *err);
// The same over caller-owned bytes that must outlive the st_file; name is
// used in messages.
sim_status st_open_memory(st_file **out, const uint8_t *data, size_t size, const char *name,
                          sim_err *err);
void st_close(st_file *f);

// Wraps tensors assembled by another reader (PyTorch .pth archives) as an
// st_file, taking ownership of tensors[0..n) (whose names point into
// `names`), `names` and `data` (their bytes) — also on error. Names must be
// unique (SIM_ERR_FORMAT naming the duplicate otherwise).
sim_status st_from_parts(st_file **out, const char *path, st_tensor *tensors, int n, char *names, uint8_t *data,
                         size_t size, sim_err *err);

// The tensor called name, or NULL.
const st_tensor *st_find(const st_file *f, const char *name);

// Converts tensor `name` to float32 into out (room for its n_elem floats).
// When shape is not NULL the tensor must have exactly those n_dims dims.
// Errors: SIM_ERR_FORMAT for a missing tensor or another shape (the message
// gives both shapes), SIM_ERR_UNSUPPORTED for a dtype other than F32/F16/BF16.
sim_status st_read_f32(const st_file *f, const char *name, const int64_t *shape, int n_dims,
                       float *out, sim_err *err);

// Sets (or with fn NULL clears) the hook st_read_f32 calls after each read.
// Readers that keep a tensor in another type must take tensors through
// st_read_f32 when a hook is set, so that it sees every weight.
void st_set_patch(st_file *f, st_patch_fn fn, void *ud);

// Formats t's shape as "[a, b, c]" into buf.
const char *st_shape_str(const int64_t *shape, int n_dims, char *buf, size_t cap);

#endif
