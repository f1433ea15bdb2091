// gguf.c — GGUF reader (validating, mmap-backed) and writer.
#include "model/gguf.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

// --- reading primitives -------------------------------------------------------

typedef struct reader {
    const uint8_t *p;
    size_t pos, size;
    const char *name; // for messages
    sim_err *err;
    gguf_file *f;
} reader;

static sim_status rd_fail(reader *r, sim_status code, const char *what) {
    return err_set(r->err, code, "%s: %s (at byte %zu)", r->name, what, r->pos);
}

static bool rd_need(reader *r, size_t n) { return r->size - r->pos >= n; }

static sim_status rd_bytes(reader *r, void *out, size_t n, const char *what) {
    if (!rd_need(r, n)) {
        char msg[160];
        snprintf(msg, sizeof msg, "truncated: %s needs %zu bytes, %zu left", what, n,
                 r->size - r->pos);
        return rd_fail(r, SIM_ERR_FORMAT, msg);
    }
    memcpy(out, r->p + r->pos, n);
    r->pos += n;
    return SIM_OK;
}

static sim_status rd_u32(reader *r, uint32_t *v, const char *what) {
    return rd_bytes(r, v, 4, what);
}
static sim_status rd_u64(reader *r, uint64_t *v, const char *what) {
    return rd_bytes(r, v, 8, what);
}

static sim_status rd_str(reader *r, gguf_str *s, const char *what) {
    uint64_t n = 0;
    sim_status st = rd_u64(r, &n, what);
    if (st) return st;
    if (n > r->size - r->pos) {
        char msg[200];
        snprintf(msg, sizeof msg, "%s has length %llu but only %zu bytes are left", what,
                 (unsigned long long)n, r->size - r->pos);
        r->pos -= 8;
        return rd_fail(r, SIM_ERR_FORMAT, msg);
    }
    s->s = (const char *)r->p + r->pos;
    s->n = n;
    r->pos += (size_t)n;
    return SIM_OK;
}

static bool track(gguf_file *f, void *p) {
    if (f->n_allocs == f->cap_allocs) {
        size_t cap = f->cap_allocs ? f->cap_allocs * 2 : 16;
        void **na = mem_realloc(f->allocs, cap * sizeof *na);
        if (!na) return false;
        f->allocs = na;
        f->cap_allocs = cap;
    }
    f->allocs[f->n_allocs++] = p;
    return true;
}

// Allocates n × size bytes owned by the file; NULL on overflow or out of memory.
static void *file_alloc(gguf_file *f, uint64_t n, size_t size) {
    if (n > SIZE_MAX / (size ? size : 1)) return NULL;
    void *p = mem_calloc((size_t)n ? (size_t)n : 1, size);
    if (!p) return NULL;
    if (!track(f, p)) {
        mem_free(p);
        return NULL;
    }
    return p;
}

static size_t vtype_size(gguf_vtype t) {
    switch (t) {
    case GGUF_U8: case GGUF_I8: case GGUF_BOOL: return 1;
    case GGUF_U16: case GGUF_I16: return 2;
    case GGUF_U32: case GGUF_I32: case GGUF_F32: return 4;
    case GGUF_U64: case GGUF_I64: case GGUF_F64: return 8;
    default: return 0;
    }
}

const char *gguf_vtype_name(gguf_vtype t) {
    static const char *names[] = {"u8",   "i8",     "u16",   "i16", "u32", "i32", "f32",
                                  "bool", "string", "array", "u64", "i64", "f64"};
    return (unsigned)t < GGUF_VTYPE_COUNT ? names[t] : "?";
}

// Decodes one scalar of type t from raw little-endian bytes into v.
static void scalar_decode(gguf_vtype t, const uint8_t *raw, gguf_value *v) {
    v->type = t;
    switch (t) {
    case GGUF_U8: v->u = raw[0]; break;
    case GGUF_BOOL: v->u = raw[0] != 0; break;
    case GGUF_I8: v->i = (int8_t)raw[0]; break;
    case GGUF_U16: { uint16_t x; memcpy(&x, raw, 2); v->u = x; break; }
    case GGUF_I16: { int16_t x; memcpy(&x, raw, 2); v->i = x; break; }
    case GGUF_U32: { uint32_t x; memcpy(&x, raw, 4); v->u = x; break; }
    case GGUF_I32: { int32_t x; memcpy(&x, raw, 4); v->i = x; break; }
    case GGUF_F32: { float x; memcpy(&x, raw, 4); v->f = x; break; }
    case GGUF_U64: { uint64_t x; memcpy(&x, raw, 8); v->u = x; break; }
    case GGUF_I64: { int64_t x; memcpy(&x, raw, 8); v->i = x; break; }
    case GGUF_F64: { double x; memcpy(&x, raw, 8); v->f = x; break; }
    default: break;
    }
}

static sim_status rd_value(reader *r, gguf_vtype t, gguf_value *v, int depth);

static sim_status rd_array(reader *r, gguf_value *v, int depth) {
    if (depth >= GGUF_MAX_DEPTH) return rd_fail(r, SIM_ERR_FORMAT, "arrays nested too deeply");
    uint32_t et;
    uint64_t n;
    sim_status st = rd_u32(r, &et, "array element type");
    if (st) return st;
    if (et >= GGUF_VTYPE_COUNT) {
        char msg[80];
        snprintf(msg, sizeof msg, "unknown array element type %u", et);
        r->pos -= 4;
        return rd_fail(r, SIM_ERR_FORMAT, msg);
    }
    if ((st = rd_u64(r, &n, "array length"))) return st;
    v->type = GGUF_ARRAY;
    v->arr.etype = (gguf_vtype)et;
    v->arr.n = n;
    size_t es = vtype_size((gguf_vtype)et);
    size_t left = r->size - r->pos;
    if (es) {
        if (n > left / es) {
            char msg[160];
            snprintf(msg, sizeof msg, "array of %llu %s needs more bytes than the %zu left",
                     (unsigned long long)n, gguf_vtype_name((gguf_vtype)et), left);
            return rd_fail(r, SIM_ERR_FORMAT, msg);
        }
        v->arr.raw = r->p + r->pos;
        if (et == GGUF_BOOL) {
            for (uint64_t i = 0; i < n; i++)
                if (r->p[r->pos + i] > 1) return rd_fail(r, SIM_ERR_FORMAT, "bool array value not 0 or 1");
        }
        r->pos += (size_t)(n * es);
        return SIM_OK;
    }
    // Strings need at least 8 bytes each, arrays at least 12: bound n before allocating.
    size_t min_each = et == GGUF_STRING ? 8 : 12;
    if (n > left / min_each) {
        char msg[160];
        snprintf(msg, sizeof msg, "array of %llu %s cannot fit in the %zu bytes left",
                 (unsigned long long)n, gguf_vtype_name((gguf_vtype)et), left);
        return rd_fail(r, SIM_ERR_FORMAT, msg);
    }
    if (et == GGUF_STRING) {
        v->arr.strs = file_alloc(r->f, n, sizeof(gguf_str));
        if (!v->arr.strs) return err_set(r->err, SIM_ERR_NOMEM, "%s: out of memory", r->name);
        for (uint64_t i = 0; i < n; i++)
            if ((st = rd_str(r, &v->arr.strs[i], "string in array"))) return st;
        return SIM_OK;
    }
    v->arr.elems = file_alloc(r->f, n, sizeof(gguf_value));
    if (!v->arr.elems) return err_set(r->err, SIM_ERR_NOMEM, "%s: out of memory", r->name);
    for (uint64_t i = 0; i < n; i++)
        if ((st = rd_value(r, GGUF_ARRAY, &v->arr.elems[i], depth + 1))) return st;
    return SIM_OK;
}

static sim_status rd_value(reader *r, gguf_vtype t, gguf_value *v, int depth) {
    memset(v, 0, sizeof *v);
    if (t == GGUF_STRING) {
        v->type = GGUF_STRING;
        return rd_str(r, &v->str, "string value");
    }
    if (t == GGUF_ARRAY) return rd_array(r, v, depth);
    size_t es = vtype_size(t);
    uint8_t raw[8];
    sim_status st = rd_bytes(r, raw, es, gguf_vtype_name(t));
    if (st) return st;
    if (t == GGUF_BOOL && raw[0] > 1) {
        r->pos -= 1;
        return rd_fail(r, SIM_ERR_FORMAT, "bool value not 0 or 1");
    }
    scalar_decode(t, raw, v);
    return SIM_OK;
}

// --- opening ---------------------------------------------------------------------

static bool name_ok(gguf_str s) {
    if (s.n == 0 || s.n >= GGUF_MAX_NAME) return false;
    for (uint64_t i = 0; i < s.n; i++)
        if (s.s[i] == 0) return false;
    return true;
}

static int cmp_names(const void *a, const void *b) {
    return strcmp(*(const char *const *)a, *(const char *const *)b);
}

// Refuses duplicate metadata keys and duplicate tensor names (sorting, so a
// hostile file with many entries cannot make this quadratic).
static sim_status check_unique(gguf_file *f, sim_err *err) {
    size_t n = (size_t)MAX(f->n_kv, f->n_tensors);
    const char **names = mem_alloc((n ? n : 1) * sizeof *names);
    if (!names) return err_set(err, SIM_ERR_NOMEM, "%s: out of memory", f->path);
    for (int pass = 0; pass < 2; pass++) {
        size_t m = (size_t)(pass == 0 ? f->n_kv : f->n_tensors);
        for (size_t i = 0; i < m; i++) names[i] = pass == 0 ? f->kv[i].key : f->tensors[i].name;
        qsort(names, m, sizeof *names, cmp_names);
        for (size_t i = 1; i < m; i++) {
            if (strcmp(names[i - 1], names[i]) == 0) {
                sim_status st = err_set(err, SIM_ERR_FORMAT, "%s: duplicate %s '%s'", f->path,
                                        pass == 0 ? "metadata key" : "tensor name", names[i]);
                mem_free(names);
                return st;
            }
        }
    }
    mem_free(names);
    return SIM_OK;
}

static int cmp_offsets(const void *a, const void *b) {
    const gguf_tensor *x = *(const gguf_tensor *const *)a, *y = *(const gguf_tensor *const *)b;
    return x->offset < y->offset ? -1 : x->offset > y->offset;
}

static sim_status parse(gguf_file *f, sim_err *err) {
    reader r = {.p = f->base, .size = f->size, .name = f->path, .err = err, .f = f};
    uint32_t magic;
    sim_status st;
    if (f->size < 4) return err_set(err, SIM_ERR_FORMAT, "%s: not a GGUF file (%zu bytes)", f->path, f->size);
    rd_u32(&r, &magic, "magic");
    if (magic != GGUF_MAGIC) {
        if (magic == 0x47475546u)
            return err_set(err, SIM_ERR_UNSUPPORTED, "%s: big-endian GGUF is not supported", f->path);
        return err_set(err, SIM_ERR_FORMAT, "%s: not a GGUF file (bad magic)", f->path);
    }
    if ((st = rd_u32(&r, &f->version, "version"))) return st;
    if (f->version == 1)
        return err_set(err, SIM_ERR_UNSUPPORTED, "%s: GGUF version 1 is not supported (re-convert the model)", f->path);
    if (f->version != 2 && f->version != 3)
        return err_set(err, SIM_ERR_UNSUPPORTED, "%s: unknown GGUF version %u", f->path, f->version);
    uint64_t n_tensors, n_kv;
    if ((st = rd_u64(&r, &n_tensors, "tensor count"))) return st;
    if ((st = rd_u64(&r, &n_kv, "metadata count"))) return st;
    // Each key-value takes at least 8+1+4+1 bytes, each tensor info 8+1+4+8+4+8.
    size_t left = r.size - r.pos;
    if (n_kv > left / 14)
        return err_set(err, SIM_ERR_FORMAT, "%s: metadata count %llu cannot fit in the file", f->path, (unsigned long long)n_kv);
    if (n_tensors > left / 33)
        return err_set(err, SIM_ERR_FORMAT, "%s: tensor count %llu cannot fit in the file", f->path, (unsigned long long)n_tensors);

    f->kv = mem_calloc((size_t)n_kv ? (size_t)n_kv : 1, sizeof *f->kv);
    f->tensors = mem_calloc((size_t)n_tensors ? (size_t)n_tensors : 1, sizeof *f->tensors);
    if (!f->kv || !f->tensors) return err_set(err, SIM_ERR_NOMEM, "%s: out of memory", f->path);

    f->alignment = GGUF_DEFAULT_ALIGNMENT;
    for (uint64_t i = 0; i < n_kv; i++) {
        gguf_str key;
        uint32_t vt;
        if ((st = rd_str(&r, &key, "metadata key"))) return st;
        if (!name_ok(key)) return rd_fail(&r, SIM_ERR_FORMAT, "metadata key is empty, too long or contains NUL");
        char *k = mem_strndup(key.s, key.n);
        if (!k) return err_set(err, SIM_ERR_NOMEM, "%s: out of memory", f->path);
        f->kv[i].key = k;
        f->n_kv = (int64_t)i + 1;
        if ((st = rd_u32(&r, &vt, "value type"))) return st;
        if (vt >= GGUF_VTYPE_COUNT)
            return err_set(err, SIM_ERR_FORMAT, "%s: metadata '%s' has unknown value type %u", f->path, k, vt);
        if ((st = rd_value(&r, (gguf_vtype)vt, &f->kv[i].v, 0))) return err_prefix(err, "metadata '%s'", k);
        if (strcmp(k, "general.alignment") == 0) {
            const gguf_value *v = &f->kv[i].v;
            if (v->type != GGUF_U32 || v->u == 0 || (v->u & (v->u - 1)) != 0 || v->u > 65536)
                return err_set(err, SIM_ERR_FORMAT, "%s: general.alignment must be a u32 power of two up to 65536", f->path);
            f->alignment = (uint32_t)v->u;
        }
    }

    for (uint64_t i = 0; i < n_tensors; i++) {
        gguf_tensor *t = &f->tensors[i];
        gguf_str name;
        uint32_t n_dims, type;
        if ((st = rd_str(&r, &name, "tensor name"))) return st;
        if (!name_ok(name)) return rd_fail(&r, SIM_ERR_FORMAT, "tensor name is empty, too long or contains NUL");
        if (!(t->name = mem_strndup(name.s, name.n))) return err_set(err, SIM_ERR_NOMEM, "%s: out of memory", f->path);
        f->n_tensors = (int64_t)i + 1;
        if ((st = rd_u32(&r, &n_dims, "tensor dimension count"))) return st;
        if (n_dims < 1 || n_dims > GGUF_MAX_DIMS)
            return err_set(err, SIM_ERR_FORMAT, "%s: tensor '%s' has %u dimensions (1..4 allowed)", f->path, t->name, n_dims);
        t->n_dims = (int)n_dims;
        uint64_t n_elems = 1;
        for (int d = 0; d < GGUF_MAX_DIMS; d++) t->ne[d] = 1;
        for (uint32_t d = 0; d < n_dims; d++) {
            uint64_t ne;
            if ((st = rd_u64(&r, &ne, "tensor dimension"))) return st;
            if (ne == 0 || ne > (uint64_t)INT64_MAX / 2 || __builtin_mul_overflow(n_elems, ne, &n_elems) || n_elems > (uint64_t)INT64_MAX / 2)
                return err_set(err, SIM_ERR_FORMAT, "%s: tensor '%s' has an invalid shape (dimension %u = %llu)", f->path, t->name, d, (unsigned long long)ne);
            t->ne[d] = (int64_t)ne;
        }
        if ((st = rd_u32(&r, &type, "tensor type"))) return st;
        if (!tt_supported(type))
            return err_set(err, SIM_ERR_UNSUPPORTED, "%s: tensor '%s' has unsupported type %u", f->path, t->name, type);
        t->type = (tt_type)type;
        const tt_traits *tr = tt_get(t->type);
        if (t->ne[0] % tr->blck != 0)
            return err_set(err, SIM_ERR_FORMAT, "%s: tensor '%s' row of %lld is not a multiple of the %s block size %d", f->path, t->name, (long long)t->ne[0], tr->name, tr->blck);
        // bytes = (n_elems / blck) * bytes_per_block, overflow-checked.
        uint64_t size;
        if (__builtin_mul_overflow(n_elems / (uint64_t)tr->blck, (uint64_t)tr->bytes, &size) || size > SIZE_MAX)
            return err_set(err, SIM_ERR_FORMAT, "%s: tensor '%s' is too large", f->path, t->name);
        t->size = (size_t)size;
        if ((st = rd_u64(&r, &t->offset, "tensor offset"))) return st;
        if (t->offset % f->alignment != 0)
            return err_set(err, SIM_ERR_FORMAT, "%s: tensor '%s' offset %llu is not aligned to %u", f->path, t->name, (unsigned long long)t->offset, f->alignment);
    }

    if ((st = check_unique(f, err))) return st;

    // The data section starts at the next multiple of the alignment.
    size_t data = r.pos + (f->alignment - r.pos % f->alignment) % f->alignment;
    f->data_offset = data;
    if (n_tensors == 0) return SIM_OK; // vocab-only file: nothing more to check
    if (data > f->size)
        return err_set(err, SIM_ERR_FORMAT, "%s: truncated before the tensor data (file has %zu bytes, data starts at %zu)", f->path, f->size, data);
    size_t avail = f->size - data;
    for (int64_t i = 0; i < f->n_tensors; i++) {
        gguf_tensor *t = &f->tensors[i];
        if (t->offset > avail || t->size > avail - t->offset)
            return err_set(err, SIM_ERR_FORMAT, "%s: tensor '%s' (%zu bytes at offset %llu) extends past the end of the file (truncated?)",
                           f->path, t->name, t->size, (unsigned long long)t->offset);
        t->data = f->base + data + t->offset;
    }
    // Tensors must not overlap: sort a view by offset and check neighbours.
    gguf_tensor **byoff = mem_alloc((size_t)f->n_tensors * sizeof *byoff);
    if (!byoff) return err_set(err, SIM_ERR_NOMEM, "%s: out of memory", f->path);
    for (int64_t i = 0; i < f->n_tensors; i++) byoff[i] = &f->tensors[i];
    qsort(byoff, (size_t)f->n_tensors, sizeof *byoff, cmp_offsets);
    for (int64_t i = 1; i < f->n_tensors; i++) {
        if (byoff[i - 1]->offset + byoff[i - 1]->size > byoff[i]->offset) {
            st = err_set(err, SIM_ERR_FORMAT, "%s: tensors '%s' and '%s' overlap", f->path, byoff[i - 1]->name, byoff[i]->name);
            mem_free(byoff);
            return st;
        }
    }
    mem_free(byoff);
    return SIM_OK;
}

static sim_status open_common(gguf_file **out, gguf_file *f, sim_err *err) {
    sim_status st = parse(f, err);
    if (st != SIM_OK) {
        gguf_close(f);
        *out = NULL;
        return st;
    }
    *out = f;
    return SIM_OK;
}

sim_status gguf_open(gguf_file **out, const char *path, sim_err *err) {
    *out = NULL;
    gguf_file *f = mem_calloc(1, sizeof *f);
    if (!f) return err_set(err, SIM_ERR_NOMEM, "%s: out of memory", path);
    if (!(f->path = mem_strdup(path))) {
        mem_free(f);
        return err_set(err, SIM_ERR_NOMEM, "%s: out of memory", path);
    }
    sim_status st = file_map_open(&f->map, path, err);
    if (st != SIM_OK) {
        gguf_close(f);
        return st;
    }
    f->base = f->map.data;
    f->size = f->map.size;
    return open_common(out, f, err);
}

sim_status gguf_open_memory(gguf_file **out, const void *data, size_t size, const char *name,
                            sim_err *err) {
    *out = NULL;
    gguf_file *f = mem_calloc(1, sizeof *f);
    if (!f) return err_set(err, SIM_ERR_NOMEM, "%s: out of memory", name);
    if (!(f->path = mem_strdup(name))) {
        mem_free(f);
        return err_set(err, SIM_ERR_NOMEM, "%s: out of memory", name);
    }
    f->base = data;
    f->size = size;
    return open_common(out, f, err);
}

void gguf_close(gguf_file *f) {
    if (!f) return;
    for (int64_t i = 0; i < f->n_kv; i++) mem_free(f->kv[i].key);
    for (int64_t i = 0; i < f->n_tensors; i++) mem_free(f->tensors[i].name);
    for (size_t i = 0; i < f->n_allocs; i++) mem_free(f->allocs[i]);
    mem_free(f->allocs);
    mem_free(f->kv);
    mem_free(f->tensors);
    file_map_close(&f->map);
    mem_free((void *)f->path);
    mem_free(f);
}

// --- lookups -------------------------------------------------------------------

const gguf_value *gguf_get(const gguf_file *f, const char *key) {
    for (int64_t i = 0; i < f->n_kv; i++)
        if (strcmp(f->kv[i].key, key) == 0) return &f->kv[i].v;
    return NULL;
}

static bool value_int(const gguf_value *v, int64_t *out, bool *is_unsigned_big) {
    *is_unsigned_big = false;
    switch (v->type) {
    case GGUF_U8: case GGUF_U16: case GGUF_U32: case GGUF_U64:
        if (v->u > (uint64_t)INT64_MAX) { *is_unsigned_big = true; return false; }
        *out = (int64_t)v->u;
        return true;
    case GGUF_I8: case GGUF_I16: case GGUF_I32: case GGUF_I64:
        *out = v->i;
        return true;
    default: return false;
    }
}

bool gguf_get_i64(const gguf_file *f, const char *key, int64_t *out) {
    const gguf_value *v = gguf_get(f, key);
    bool big;
    return v && value_int(v, out, &big);
}

bool gguf_get_u32(const gguf_file *f, const char *key, uint32_t *out) {
    int64_t x;
    if (!gguf_get_i64(f, key, &x) || x < 0 || x > (int64_t)UINT32_MAX) return false;
    *out = (uint32_t)x;
    return true;
}

bool gguf_get_f32(const gguf_file *f, const char *key, float *out) {
    const gguf_value *v = gguf_get(f, key);
    if (!v || (v->type != GGUF_F32 && v->type != GGUF_F64)) return false;
    *out = (float)v->f;
    return true;
}

bool gguf_get_bool(const gguf_file *f, const char *key, bool *out) {
    const gguf_value *v = gguf_get(f, key);
    if (!v || v->type != GGUF_BOOL) return false;
    *out = v->u != 0;
    return true;
}

bool gguf_get_str(const gguf_file *f, const char *key, char *buf, size_t cap) {
    const gguf_value *v = gguf_get(f, key);
    if (!v || v->type != GGUF_STRING || cap == 0) return false;
    size_t n = v->str.n < cap - 1 ? (size_t)v->str.n : cap - 1;
    memcpy(buf, v->str.s, n);
    buf[n] = 0;
    return true;
}

int64_t gguf_get_arr(const gguf_file *f, const char *key, gguf_vtype etype, const gguf_value **out) {
    const gguf_value *v = gguf_get(f, key);
    if (!v || v->type != GGUF_ARRAY || v->arr.etype != etype) return -1;
    if (v->arr.n > (uint64_t)INT64_MAX) return -1;
    *out = v;
    return (int64_t)v->arr.n;
}

int64_t gguf_arr_int(const gguf_value *arr, uint64_t i) {
    gguf_value v;
    size_t es = vtype_size(arr->arr.etype);
    ASSERT(es && i < arr->arr.n);
    scalar_decode(arr->arr.etype, arr->arr.raw + i * es, &v);
    int64_t x = 0;
    bool big;
    if (!value_int(&v, &x, &big)) {
        if (big) x = INT64_MAX;
        else if (v.type == GGUF_F32 || v.type == GGUF_F64) x = (int64_t)v.f;
        else if (v.type == GGUF_BOOL) x = (int64_t)v.u;
    }
    return x;
}

double gguf_arr_float(const gguf_value *arr, uint64_t i) {
    gguf_value v;
    size_t es = vtype_size(arr->arr.etype);
    ASSERT(es && i < arr->arr.n);
    scalar_decode(arr->arr.etype, arr->arr.raw + i * es, &v);
    if (v.type == GGUF_F32 || v.type == GGUF_F64) return v.f;
    int64_t x = 0;
    bool big;
    if (value_int(&v, &x, &big)) return (double)x;
    return big ? (double)v.u : (double)v.u;
}

const gguf_tensor *gguf_find_tensor(const gguf_file *f, const char *name) {
    for (int64_t i = 0; i < f->n_tensors; i++)
        if (strcmp(f->tensors[i].name, name) == 0) return &f->tensors[i];
    return NULL;
}

// --- writer ----------------------------------------------------------------------

typedef struct wkv {
    char *key;
    gguf_vtype type;
    uint8_t *bytes; // the serialized value (without key and type)
    size_t n;
} wkv;

typedef struct wtensor {
    char *name;
    tt_type type;
    int n_dims;
    int64_t ne[GGUF_MAX_DIMS];
    const void *data;
    size_t size;
} wtensor;

struct gguf_writer {
    wkv *kv;
    size_t n_kv, cap_kv;
    wtensor *t;
    size_t n_t, cap_t;
};

typedef struct buf {
    uint8_t *p;
    size_t n, cap;
    bool oom;
} buf;

static void buf_put(buf *b, const void *src, size_t n) {
    if (b->oom || n == 0) return;
    if (b->cap - b->n < n) {
        size_t cap = b->cap ? b->cap : 64;
        while (cap - b->n < n) {
            if (cap > SIZE_MAX / 2) { b->oom = true; return; }
            cap *= 2;
        }
        uint8_t *np = mem_realloc(b->p, cap);
        if (!np) { b->oom = true; return; }
        b->p = np;
        b->cap = cap;
    }
    memcpy(b->p + b->n, src, n);
    b->n += n;
}
static void buf_u32(buf *b, uint32_t v) { buf_put(b, &v, 4); }
static void buf_u64(buf *b, uint64_t v) { buf_put(b, &v, 8); }
static void buf_str(buf *b, const char *s, uint64_t n) {
    buf_u64(b, n);
    buf_put(b, s, (size_t)n);
}

gguf_writer *gguf_writer_new(void) { return mem_calloc(1, sizeof(gguf_writer)); }

void gguf_writer_free(gguf_writer *w) {
    if (!w) return;
    for (size_t i = 0; i < w->n_kv; i++) {
        mem_free(w->kv[i].key);
        mem_free(w->kv[i].bytes);
    }
    for (size_t i = 0; i < w->n_t; i++) mem_free(w->t[i].name);
    mem_free(w->kv);
    mem_free(w->t);
    mem_free(w);
}

// Takes ownership of the serialized bytes in b.
static sim_status put_kv(gguf_writer *w, const char *key, gguf_vtype type, buf *b) {
    if (b->oom) {
        mem_free(b->p);
        return SIM_ERR_NOMEM;
    }
    for (size_t i = 0; i < w->n_kv; i++) {
        if (strcmp(w->kv[i].key, key) == 0) {
            mem_free(w->kv[i].bytes);
            w->kv[i].type = type;
            w->kv[i].bytes = b->p;
            w->kv[i].n = b->n;
            return SIM_OK;
        }
    }
    if (w->n_kv == w->cap_kv) {
        size_t cap = w->cap_kv ? w->cap_kv * 2 : 32;
        wkv *nk = mem_realloc(w->kv, cap * sizeof *nk);
        if (!nk) { mem_free(b->p); return SIM_ERR_NOMEM; }
        w->kv = nk;
        w->cap_kv = cap;
    }
    char *k = mem_strdup(key);
    if (!k) { mem_free(b->p); return SIM_ERR_NOMEM; }
    w->kv[w->n_kv++] = (wkv){.key = k, .type = type, .bytes = b->p, .n = b->n};
    return SIM_OK;
}

static sim_status set_scalar(gguf_writer *w, const char *key, gguf_vtype t, const void *v) {
    buf b = {0};
    buf_put(&b, v, vtype_size(t));
    return put_kv(w, key, t, &b);
}

sim_status gguf_writer_set_u32(gguf_writer *w, const char *key, uint32_t v) { return set_scalar(w, key, GGUF_U32, &v); }
sim_status gguf_writer_set_i32(gguf_writer *w, const char *key, int32_t v) { return set_scalar(w, key, GGUF_I32, &v); }
sim_status gguf_writer_set_f32(gguf_writer *w, const char *key, float v) { return set_scalar(w, key, GGUF_F32, &v); }
sim_status gguf_writer_set_bool(gguf_writer *w, const char *key, bool v) {
    uint8_t x = v;
    return set_scalar(w, key, GGUF_BOOL, &x);
}
sim_status gguf_writer_set_str(gguf_writer *w, const char *key, const char *v) {
    buf b = {0};
    buf_str(&b, v, strlen(v));
    return put_kv(w, key, GGUF_STRING, &b);
}

// Serializes v (its payload, without the type tag) into b.
static void ser_value(buf *b, const gguf_value *v) {
    switch (v->type) {
    case GGUF_STRING: buf_str(b, v->str.s, v->str.n); break;
    case GGUF_ARRAY: {
        buf_u32(b, v->arr.etype);
        buf_u64(b, v->arr.n);
        size_t es = vtype_size(v->arr.etype);
        if (es) buf_put(b, v->arr.raw, (size_t)v->arr.n * es);
        else if (v->arr.etype == GGUF_STRING)
            for (uint64_t i = 0; i < v->arr.n; i++) buf_str(b, v->arr.strs[i].s, v->arr.strs[i].n);
        else
            for (uint64_t i = 0; i < v->arr.n; i++) ser_value(b, &v->arr.elems[i]);
        break;
    }
    default: {
        uint8_t raw[8];
        switch (v->type) {
        case GGUF_U8: case GGUF_BOOL: raw[0] = (uint8_t)v->u; break;
        case GGUF_I8: raw[0] = (uint8_t)(int8_t)v->i; break;
        case GGUF_U16: { uint16_t x = (uint16_t)v->u; memcpy(raw, &x, 2); break; }
        case GGUF_I16: { int16_t x = (int16_t)v->i; memcpy(raw, &x, 2); break; }
        case GGUF_U32: { uint32_t x = (uint32_t)v->u; memcpy(raw, &x, 4); break; }
        case GGUF_I32: { int32_t x = (int32_t)v->i; memcpy(raw, &x, 4); break; }
        case GGUF_F32: { float x = (float)v->f; memcpy(raw, &x, 4); break; }
        case GGUF_U64: memcpy(raw, &v->u, 8); break;
        case GGUF_I64: memcpy(raw, &v->i, 8); break;
        case GGUF_F64: memcpy(raw, &v->f, 8); break;
        default: break;
        }
        buf_put(b, raw, vtype_size(v->type));
    }
    }
}

sim_status gguf_writer_set_value(gguf_writer *w, const char *key, const gguf_value *v) {
    buf b = {0};
    ser_value(&b, v);
    return put_kv(w, key, v->type, &b);
}

sim_status gguf_writer_set_arr(gguf_writer *w, const char *key, gguf_vtype etype, const void *data,
                               uint64_t n) {
    size_t es = vtype_size(etype);
    if (!es) return SIM_ERR_ARG;
    buf b = {0};
    buf_u32(&b, etype);
    buf_u64(&b, n);
    buf_put(&b, data, (size_t)n * es);
    return put_kv(w, key, GGUF_ARRAY, &b);
}

sim_status gguf_writer_set_str_arr(gguf_writer *w, const char *key, const char *const *strs,
                                   uint64_t n) {
    buf b = {0};
    buf_u32(&b, GGUF_STRING);
    buf_u64(&b, n);
    for (uint64_t i = 0; i < n; i++) buf_str(&b, strs[i], strlen(strs[i]));
    return put_kv(w, key, GGUF_ARRAY, &b);
}

sim_status gguf_writer_copy_kv(gguf_writer *w, const gguf_file *f, bool (*skip)(const char *key)) {
    for (int64_t i = 0; i < f->n_kv; i++) {
        if (skip && skip(f->kv[i].key)) continue;
        sim_status st = gguf_writer_set_value(w, f->kv[i].key, &f->kv[i].v);
        if (st) return st;
    }
    return SIM_OK;
}

sim_status gguf_writer_add_tensor(gguf_writer *w, const char *name, tt_type type, int n_dims,
                                  const int64_t *ne, const void *data, sim_err *err) {
    const tt_traits *tr = tt_get(type);
    if (!tr) return err_set(err, SIM_ERR_ARG, "tensor '%s': unsupported type %d", name, (int)type);
    if (n_dims < 1 || n_dims > GGUF_MAX_DIMS) return err_set(err, SIM_ERR_ARG, "tensor '%s': %d dimensions", name, n_dims);
    if (strlen(name) == 0 || strlen(name) >= GGUF_MAX_NAME) return err_set(err, SIM_ERR_ARG, "tensor name '%s' is empty or too long", name);
    size_t n_rows = 1;
    for (int d = 1; d < n_dims; d++) {
        if (ne[d] <= 0 || !size_mul(n_rows, (size_t)ne[d], &n_rows))
            return err_set(err, SIM_ERR_ARG, "tensor '%s': invalid shape", name);
    }
    if (ne[0] <= 0 || ne[0] % tr->blck)
        return err_set(err, SIM_ERR_ARG, "tensor '%s': row of %lld is not a multiple of the %s block size %d", name, (long long)ne[0], tr->name, tr->blck);
    size_t size;
    if (!size_mul(tt_row_size(type, ne[0]), n_rows, &size)) return err_set(err, SIM_ERR_ARG, "tensor '%s' is too large", name);
    for (size_t i = 0; i < w->n_t; i++)
        if (strcmp(w->t[i].name, name) == 0) return err_set(err, SIM_ERR_ARG, "duplicate tensor name '%s'", name);
    if (w->n_t == w->cap_t) {
        size_t cap = w->cap_t ? w->cap_t * 2 : 64;
        wtensor *nt = mem_realloc(w->t, cap * sizeof *nt);
        if (!nt) return err_set(err, SIM_ERR_NOMEM, "out of memory");
        w->t = nt;
        w->cap_t = cap;
    }
    wtensor *t = &w->t[w->n_t];
    memset(t, 0, sizeof *t);
    if (!(t->name = mem_strdup(name))) return err_set(err, SIM_ERR_NOMEM, "out of memory");
    t->type = type;
    t->n_dims = n_dims;
    for (int d = 0; d < GGUF_MAX_DIMS; d++) t->ne[d] = d < n_dims ? ne[d] : 1;
    t->data = data;
    t->size = size;
    w->n_t++;
    return SIM_OK;
}

static uint32_t writer_alignment(const gguf_writer *w) {
    for (size_t i = 0; i < w->n_kv; i++) {
        if (strcmp(w->kv[i].key, "general.alignment") == 0 && w->kv[i].type == GGUF_U32) {
            uint32_t a;
            memcpy(&a, w->kv[i].bytes, 4);
            if (a && (a & (a - 1)) == 0) return a;
        }
    }
    return GGUF_DEFAULT_ALIGNMENT;
}

static size_t pad_to(size_t x, size_t a) { return (x + a - 1) / a * a; }

// Serializes the header (through the padding before the data section).
static sim_status write_header(gguf_writer *w, buf *b) {
    uint32_t align = writer_alignment(w);
    buf_u32(b, GGUF_MAGIC);
    buf_u32(b, 3);
    buf_u64(b, w->n_t);
    buf_u64(b, w->n_kv);
    for (size_t i = 0; i < w->n_kv; i++) {
        buf_str(b, w->kv[i].key, strlen(w->kv[i].key));
        buf_u32(b, w->kv[i].type);
        buf_put(b, w->kv[i].bytes, w->kv[i].n);
    }
    uint64_t off = 0;
    for (size_t i = 0; i < w->n_t; i++) {
        wtensor *t = &w->t[i];
        buf_str(b, t->name, strlen(t->name));
        buf_u32(b, (uint32_t)t->n_dims);
        for (int d = 0; d < t->n_dims; d++) buf_u64(b, (uint64_t)t->ne[d]);
        buf_u32(b, t->type);
        buf_u64(b, off);
        off = pad_to(off + t->size, align);
    }
    static const uint8_t zeros[64] = {0};
    size_t pad = pad_to(b->n, align) - b->n;
    while (pad > 0) {
        size_t k = pad < sizeof zeros ? pad : sizeof zeros;
        buf_put(b, zeros, k);
        pad -= k;
    }
    return b->oom ? SIM_ERR_NOMEM : SIM_OK;
}

// Streams the whole file (header, then each tensor padded to the alignment) to put().
static bool emit(gguf_writer *w, bool (*put)(void *ctx, const void *p, size_t n), void *ctx) {
    buf h = {0};
    if (write_header(w, &h)) {
        mem_free(h.p);
        return false;
    }
    bool ok = put(ctx, h.p, h.n);
    mem_free(h.p);
    uint32_t align = writer_alignment(w);
    static const uint8_t zeros[64] = {0};
    for (size_t i = 0; ok && i < w->n_t; i++) {
        ok = put(ctx, w->t[i].data, w->t[i].size);
        size_t pad = pad_to(w->t[i].size, align) - w->t[i].size;
        while (ok && pad > 0) {
            size_t k = pad < sizeof zeros ? pad : sizeof zeros;
            ok = put(ctx, zeros, k);
            pad -= k;
        }
    }
    return ok;
}

static bool put_file(void *ctx, const void *p, size_t n) { return fwrite(p, 1, n, ctx) == n; }

static bool put_buf(void *ctx, const void *p, size_t n) {
    buf_put(ctx, p, n);
    return !((buf *)ctx)->oom;
}

sim_status gguf_writer_write(gguf_writer *w, const char *path, sim_err *err) {
    FILE *f = fopen(path, "wb");
    if (!f) return err_set(err, SIM_ERR_IO, "%s: cannot create: %s", path, strerror(errno));
    bool ok = emit(w, put_file, f);
    int e = errno;
    ok = (fclose(f) == 0) && ok;
    if (!ok) return err_set(err, SIM_ERR_IO, "%s: write error: %s", path, strerror(e));
    return SIM_OK;
}

sim_status gguf_writer_write_memory(gguf_writer *w, uint8_t **out, size_t *out_size, sim_err *err) {
    buf b = {0};
    if (!emit(w, put_buf, &b)) {
        mem_free(b.p);
        return err_set(err, SIM_ERR_NOMEM, "out of memory");
    }
    *out = b.p;
    *out_size = b.n;
    return SIM_OK;
}
