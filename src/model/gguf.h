// gguf.h — read and write GGUF files (versions 2 and 3).
//
// The format, in file order (all integers little-endian):
//   u32  magic            "GGUF" (bytes 47 47 55 46)
//   u32  version          2 or 3 (version 1 used 32-bit counts; refused)
//   u64  n_tensors
//   u64  n_kv
//   n_kv × { string key; u32 value_type; value }
//        string = u64 length + bytes (not NUL-terminated)
//        value types: 0 u8, 1 i8, 2 u16, 3 i16, 4 u32, 5 i32, 6 f32, 7 bool,
//                     8 string, 9 array (u32 elem_type, u64 count, elems —
//                     arrays may nest), 10 u64, 11 i64, 12 f64
//   n_tensors × { string name; u32 n_dims (1..4); u64 ne[n_dims];
//                 u32 type (tt_type); u64 offset (from the data section) }
//   padding to `general.alignment` (u32, default 32, a power of two)
//   data section: each tensor at its offset, offsets multiples of the alignment
//
// ne[0] is the fastest-varying dimension: a weight matrix of shape
// (out, in) has ne[0] = in, ne[1] = out, and rows of ne[0] elements.
//
// Reading validates everything before anything is used: magic, version,
// counts against the bytes left, every string and array length, value types,
// nesting depth, tensor dimension products without overflow, types, block
// alignment of rows, offsets and sizes inside the file, duplicate names.
// The file is mmap'd; tensor data pointers point into the mapping.
//
//     gguf_file *f;
//     if (gguf_open(&f, "model.gguf", &err) != SIM_OK) { puts(err.msg); return 1; }
//     uint32_t n_layer;
//     if (gguf_get_u32(f, "llama.block_count", &n_layer)) ...
//     const gguf_tensor *t = gguf_find_tensor(f, "token_embd.weight");
//     gguf_close(f);
//
// Writing: gguf_writer collects metadata and tensors (the caller keeps the
// tensor data alive until gguf_writer_write) and writes a version 3 file.
#ifndef SIM_GGUF_H
#define SIM_GGUF_H

#include "base/base.h"
#include "base/file.h"
#include "tensor/types.h"

#define GGUF_MAGIC 0x46554747u
#define GGUF_DEFAULT_ALIGNMENT 32
#define GGUF_MAX_DIMS 4
#define GGUF_MAX_NAME 256  // longest tensor name or key we accept
#define GGUF_MAX_DEPTH 8   // deepest array nesting we accept

typedef enum gguf_vtype {
    GGUF_U8 = 0,
    GGUF_I8 = 1,
    GGUF_U16 = 2,
    GGUF_I16 = 3,
    GGUF_U32 = 4,
    GGUF_I32 = 5,
    GGUF_F32 = 6,
    GGUF_BOOL = 7,
    GGUF_STRING = 8,
    GGUF_ARRAY = 9,
    GGUF_U64 = 10,
    GGUF_I64 = 11,
    GGUF_F64 = 12,
    GGUF_VTYPE_COUNT
} gguf_vtype;

typedef struct gguf_str {
    const char *s; // points into the file: not NUL-terminated
    uint64_t n;
} gguf_str;

typedef struct gguf_value gguf_value;
struct gguf_value {
    gguf_vtype type;
    union {
        uint64_t u; // U8, U16, U32, U64, BOOL
        int64_t i;  // I8, I16, I32, I64
        double f;   // F32, F64
        gguf_str str;
        struct {
            gguf_vtype etype;
            uint64_t n;
            const uint8_t *raw;  // scalar elements: n × size, little-endian, unaligned
            gguf_str *strs;      // etype == STRING: n strings
            gguf_value *elems;   // etype == ARRAY: n nested arrays
        } arr;
    };
};

typedef struct gguf_kv {
    char *key; // NUL-terminated copy
    gguf_value v;
} gguf_kv;

typedef struct gguf_tensor {
    char *name;         // NUL-terminated copy
    tt_type type;
    int n_dims;
    int64_t ne[GGUF_MAX_DIMS]; // unused dims are 1
    uint64_t offset;    // from the start of the data section
    size_t size;        // bytes
    const void *data;   // into the mapping (NULL when the data is absent: vocab-only)
} gguf_tensor;

typedef struct gguf_file {
    const char *path;   // copy, for messages
    file_map map;       // empty when opened from memory
    const uint8_t *base;
    size_t size;
    uint32_t version;
    uint32_t alignment;
    size_t data_offset; // start of the data section
    int64_t n_kv;
    gguf_kv *kv;
    int64_t n_tensors;
    gguf_tensor *tensors;
    // allocation list for nested arrays and string tables, freed by gguf_close
    void **allocs;
    size_t n_allocs, cap_allocs;
} gguf_file;

// Opens and validates a file. On error *out is NULL and err names the file.
sim_status gguf_open(gguf_file **out, const char *path, sim_err *err);
// Same, for bytes in memory (which must outlive the gguf_file). name is used in messages.
sim_status gguf_open_memory(gguf_file **out, const void *data, size_t size, const char *name,
                            sim_err *err);
void gguf_close(gguf_file *f);

const char *gguf_vtype_name(gguf_vtype t);

// --- metadata lookups (NULL / false when the key is absent or of another kind)

const gguf_value *gguf_get(const gguf_file *f, const char *key);
// Integers of any width and signedness convert when the value fits.
bool gguf_get_u32(const gguf_file *f, const char *key, uint32_t *out);
bool gguf_get_i64(const gguf_file *f, const char *key, int64_t *out);
bool gguf_get_f32(const gguf_file *f, const char *key, float *out); // F32 or F64
bool gguf_get_bool(const gguf_file *f, const char *key, bool *out);
// A string value as a NUL-terminated copy into buf (truncated to cap-1).
bool gguf_get_str(const gguf_file *f, const char *key, char *buf, size_t cap);
// A whole array of one element type: returns its length, or -1 when absent or of another type.
int64_t gguf_get_arr(const gguf_file *f, const char *key, gguf_vtype etype, const gguf_value **out);

// Element accessors for scalar arrays (bounds are the caller's: i < n).
int64_t gguf_arr_int(const gguf_value *arr, uint64_t i);
double gguf_arr_float(const gguf_value *arr, uint64_t i);

const gguf_tensor *gguf_find_tensor(const gguf_file *f, const char *name);

// --- writer ------------------------------------------------------------------

typedef struct gguf_writer gguf_writer;

gguf_writer *gguf_writer_new(void); // NULL on out of memory
void gguf_writer_free(gguf_writer *w);

// Setters replace an existing key of the same name. They return SIM_ERR_NOMEM on failure.
sim_status gguf_writer_set_u32(gguf_writer *w, const char *key, uint32_t v);
sim_status gguf_writer_set_i32(gguf_writer *w, const char *key, int32_t v);
sim_status gguf_writer_set_f32(gguf_writer *w, const char *key, float v);
sim_status gguf_writer_set_bool(gguf_writer *w, const char *key, bool v);
sim_status gguf_writer_set_str(gguf_writer *w, const char *key, const char *v);
// Any value, including arrays (nested arrays too), copied deeply.
sim_status gguf_writer_set_value(gguf_writer *w, const char *key, const gguf_value *v);
// Arrays of scalars from a C array (elements of the size etype implies) or strings.
sim_status gguf_writer_set_arr(gguf_writer *w, const char *key, gguf_vtype etype,
                               const void *data, uint64_t n);
sim_status gguf_writer_set_str_arr(gguf_writer *w, const char *key, const char *const *strs,
                                   uint64_t n);
// Copies every key of f except those for which skip(key) returns true (skip may be NULL).
sim_status gguf_writer_copy_kv(gguf_writer *w, const gguf_file *f,
                               bool (*skip)(const char *key));

// Adds a tensor. data must hold tt_row_size(type, ne[0]) * (ne[1]*ne[2]*ne[3]) bytes
// and stay valid until gguf_writer_write. Errors: bad shape or type, duplicate name.
sim_status gguf_writer_add_tensor(gguf_writer *w, const char *name, tt_type type, int n_dims,
                                  const int64_t *ne, const void *data, sim_err *err);

// Writes the file (version 3, alignment 32 unless general.alignment was set).
sim_status gguf_writer_write(gguf_writer *w, const char *path, sim_err *err);
// Same, into a heap buffer (free with mem_free), for tests.
sim_status gguf_writer_write_memory(gguf_writer *w, uint8_t **out, size_t *out_size,
                                    sim_err *err);

#endif
