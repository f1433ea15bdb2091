// safetensors.c — the validated safetensors reader (format in safetensors.h).
#include "image/safetensors.h"

#include <jansson.h>
#include <stdio.h>
#include <string.h>

#include "tensor/types.h"

static const struct {
    const char *name;
    size_t size;
} DTYPES[ST_DTYPE_COUNT] = {
    [ST_F32] = {"F32", 4},  [ST_F16] = {"F16", 2},    [ST_BF16] = {"BF16", 2},
    [ST_F64] = {"F64", 8},  [ST_I64] = {"I64", 8},    [ST_I32] = {"I32", 4},
    [ST_I16] = {"I16", 2},  [ST_I8] = {"I8", 1},      [ST_U8] = {"U8", 1},
    [ST_BOOL] = {"BOOL", 1}, [ST_F8_E4M3] = {"F8_E4M3", 1}, [ST_F8_E5M2] = {"F8_E5M2", 1},
};

const char *st_dtype_name(st_dtype t) {
    return (unsigned)t < ST_DTYPE_COUNT ? DTYPES[t].name : "?";
}

size_t st_dtype_size(st_dtype t) {
    return (unsigned)t < ST_DTYPE_COUNT ? DTYPES[t].size : 0;
}

const char *st_shape_str(const int64_t *shape, int n_dims, char *buf, size_t cap) {
    size_t k = 0;
    k += (size_t)snprintf(buf, cap, "[");
    for (int i = 0; i < n_dims && k < cap; i++)
        k += (size_t)snprintf(buf + k, cap - k, "%s%lld", i ? ", " : "", (long long)shape[i]);
    if (k < cap) snprintf(buf + k, cap - k, "]");
    return buf;
}

// --- parsing ---------------------------------------------------------------------

static int cmp_name(const void *a, const void *b) {
    return strcmp(((const st_tensor *)a)->name, ((const st_tensor *)b)->name);
}

static int cmp_offset(const void *a, const void *b) {
    const st_tensor *x = *(const st_tensor *const *)a, *y = *(const st_tensor *const *)b;
    return x->data < y->data ? -1 : x->data > y->data;
}

// A JSON integer in [0, max], or -1.
static int64_t json_uint(const json_t *v, int64_t max) {
    if (!json_is_integer(v)) return -1;
    json_int_t x = json_integer_value(v);
    return x < 0 || x > max ? -1 : (int64_t)x;
}

// Fills t from the header entry v; data points into the buffer.
static sim_status parse_entry(st_tensor *t, const char *name, json_t *v, const uint8_t *buf,
                              size_t buf_size, const char *path, sim_err *err) {
    if (!json_is_object(v)) return err_set(err, SIM_ERR_FORMAT, "%s: tensor '%s': not an object", path, name);
    const char *key;
    json_t *val;
    json_object_foreach(v, key, val) {
        if (strcmp(key, "dtype") && strcmp(key, "shape") && strcmp(key, "data_offsets"))
            return err_set(err, SIM_ERR_FORMAT, "%s: tensor '%s': unknown field '%s'", path, name, key);
    }
    const char *dt = json_string_value(json_object_get(v, "dtype"));
    if (!dt) return err_set(err, SIM_ERR_FORMAT, "%s: tensor '%s': missing or non-string dtype", path, name);
    int d = -1;
    for (int i = 0; i < ST_DTYPE_COUNT; i++)
        if (strcmp(dt, DTYPES[i].name) == 0) d = i;
    if (d < 0) return err_set(err, SIM_ERR_UNSUPPORTED, "%s: tensor '%s': unknown dtype '%.32s'", path, name, dt);
    t->dtype = (st_dtype)d;

    json_t *shape = json_object_get(v, "shape");
    if (!json_is_array(shape)) return err_set(err, SIM_ERR_FORMAT, "%s: tensor '%s': missing shape array", path, name);
    size_t nd = json_array_size(shape);
    if (nd > ST_MAX_DIMS)
        return err_set(err, SIM_ERR_UNSUPPORTED, "%s: tensor '%s': %zu dims (at most %d)", path, name, nd, ST_MAX_DIMS);
    t->n_dims = (int)nd;
    size_t n_elem = 1;
    for (size_t i = 0; i < nd; i++) {
        int64_t x = json_uint(json_array_get(shape, i), INT64_MAX);
        if (x < 0) return err_set(err, SIM_ERR_FORMAT, "%s: tensor '%s': shape[%zu] is not a non-negative integer", path, name, i);
        t->shape[i] = x;
        if ((uint64_t)x > SIZE_MAX || !size_mul(n_elem, (size_t)x, &n_elem))
            return err_set(err, SIM_ERR_FORMAT, "%s: tensor '%s': shape overflows", path, name);
    }
    size_t bytes;
    if (!size_mul(n_elem, DTYPES[d].size, &bytes) || n_elem > (size_t)INT64_MAX)
        return err_set(err, SIM_ERR_FORMAT, "%s: tensor '%s': shape overflows", path, name);
    t->n_elem = (int64_t)n_elem;

    json_t *off = json_object_get(v, "data_offsets");
    if (!json_is_array(off) || json_array_size(off) != 2)
        return err_set(err, SIM_ERR_FORMAT, "%s: tensor '%s': data_offsets is not a pair", path, name);
    int64_t b = json_uint(json_array_get(off, 0), INT64_MAX), e = json_uint(json_array_get(off, 1), INT64_MAX);
    if (b < 0 || e < 0) return err_set(err, SIM_ERR_FORMAT, "%s: tensor '%s': data_offsets are not non-negative integers", path, name);
    if (b > e) return err_set(err, SIM_ERR_FORMAT, "%s: tensor '%s': data_offsets [%lld, %lld] end before they begin", path, name, (long long)b, (long long)e);
    if ((uint64_t)e > buf_size)
        return err_set(err, SIM_ERR_FORMAT, "%s: tensor '%s': data_offsets [%lld, %lld] beyond the %zu-byte data buffer (truncated file?)",
                       path, name, (long long)b, (long long)e, buf_size);
    if ((uint64_t)(e - b) != bytes) {
        char s[160];
        return err_set(err, SIM_ERR_FORMAT, "%s: tensor '%s': %s %s needs %zu bytes but data_offsets give %lld", path, name,
                       DTYPES[d].name, st_shape_str(t->shape, t->n_dims, s, sizeof s), bytes, (long long)(e - b));
    }
    t->data = buf + b;
    t->size = bytes;
    return SIM_OK;
}

static sim_status parse(st_file *f, sim_err *err) {
    const char *path = f->path;
    if (f->file_size < 8) return err_set(err, SIM_ERR_FORMAT, "%s: %zu bytes: too short for a safetensors file", path, f->file_size);
    uint64_t n = 0;
    for (int i = 7; i >= 0; i--) n = n << 8 | f->base[i];
    if (n > f->file_size - 8)
        return err_set(err, SIM_ERR_FORMAT, "%s: header length %llu exceeds the %zu bytes after it (truncated or not safetensors)",
                       path, (unsigned long long)n, f->file_size - 8);
    if (n > ST_MAX_HEADER) return err_set(err, SIM_ERR_FORMAT, "%s: header length %llu exceeds the %u-byte limit", path, (unsigned long long)n, ST_MAX_HEADER);
    if (n < 2 || f->base[8] != '{') return err_set(err, SIM_ERR_FORMAT, "%s: the header is not a JSON object", path);
    const uint8_t *buf = f->base + 8 + n;
    size_t buf_size = f->file_size - 8 - (size_t)n;

    json_error_t je;
    json_t *root = json_loadb((const char *)f->base + 8, (size_t)n, JSON_REJECT_DUPLICATES, &je);
    if (!root) return err_set(err, SIM_ERR_FORMAT, "%s: header JSON, line %d column %d: %s", path, je.line, je.column, je.text);
    sim_status st = SIM_OK;
    if (!json_is_object(root)) {
        st = err_set(err, SIM_ERR_FORMAT, "%s: the header is not a JSON object", path);
        goto done;
    }
    // Sizes first, so one allocation each holds the table and the names.
    size_t count = 0, name_bytes = 0;
    const char *key;
    json_t *val;
    json_object_foreach(root, key, val) {
        if (strcmp(key, "__metadata__") == 0) {
            if (!json_is_object(val)) {
                st = err_set(err, SIM_ERR_FORMAT, "%s: __metadata__ is not an object", path);
                goto done;
            }
            const char *mk;
            json_t *mv;
            json_object_foreach(val, mk, mv) {
                if (!json_is_string(mv)) {
                    st = err_set(err, SIM_ERR_FORMAT, "%s: __metadata__ '%.64s' is not a string", path, mk);
                    goto done;
                }
            }
            continue;
        }
        count++;
        name_bytes += strlen(key) + 1;
    }
    if (count > (size_t)INT32_MAX) {
        st = err_set(err, SIM_ERR_FORMAT, "%s: too many tensors", path);
        goto done;
    }
    f->tensors = mem_calloc(count ? count : 1, sizeof *f->tensors);
    f->names = mem_alloc(name_bytes ? name_bytes : 1);
    st_tensor **by_off = mem_calloc(count ? count : 1, sizeof *by_off);
    if (!f->tensors || !f->names || !by_off) {
        mem_free(by_off);
        st = err_set(err, SIM_ERR_NOMEM, "%s: out of memory for %zu tensors", path, count);
        goto done;
    }
    char *np = f->names;
    json_object_foreach(root, key, val) {
        if (strcmp(key, "__metadata__") == 0) continue;
        st_tensor *t = &f->tensors[f->n_tensors];
        size_t kl = strlen(key);
        memcpy(np, key, kl + 1);
        t->name = np;
        np += kl + 1;
        if ((st = parse_entry(t, t->name, val, buf, buf_size, path, err)) != SIM_OK) break;
        by_off[f->n_tensors++] = t;
    }
    if (st == SIM_OK) {
        // No two tensors may share a byte (empty tensors share none).
        qsort(by_off, (size_t)f->n_tensors, sizeof *by_off, cmp_offset);
        const st_tensor *prev = NULL;
        for (int i = 0; i < f->n_tensors; i++) {
            const st_tensor *t = by_off[i];
            if (t->size == 0) continue;
            if (prev && t->data < prev->data + prev->size) {
                st = err_set(err, SIM_ERR_FORMAT, "%s: tensors '%s' and '%s' overlap in the data buffer", path, prev->name, t->name);
                break;
            }
            prev = t;
        }
    }
    mem_free(by_off);
    if (st == SIM_OK) qsort(f->tensors, (size_t)f->n_tensors, sizeof *f->tensors, cmp_name);
done:
    json_decref(root);
    return st;
}

// --- open / close -------------------------------------------------------------------

static sim_status open_common(st_file **out, st_file *f, sim_err *err) {
    sim_status st = parse(f, err);
    if (st != SIM_OK) {
        st_close(f);
        return st;
    }
    *out = f;
    return SIM_OK;
}

sim_status st_open_memory(st_file **out, const uint8_t *data, size_t size, const char *name, sim_err *err) {
    *out = NULL;
    st_file *f = mem_calloc(1, sizeof *f);
    if (!f || !(f->path = mem_strdup(name ? name : "(memory)"))) {
        mem_free(f);
        return err_set(err, SIM_ERR_NOMEM, "out of memory opening %s", name ? name : "(memory)");
    }
    f->base = data;
    f->file_size = data ? size : 0;
    return open_common(out, f, err);
}

sim_status st_open(st_file **out, const char *path, sim_err *err) {
    *out = NULL;
    st_file *f = mem_calloc(1, sizeof *f);
    if (!f || !(f->path = mem_strdup(path))) {
        mem_free(f);
        return err_set(err, SIM_ERR_NOMEM, "out of memory opening %s", path);
    }
    sim_status st = file_map_open(&f->map, path, err);
    if (st != SIM_OK) {
        st_close(f);
        return st;
    }
    f->base = f->map.data;
    f->file_size = f->map.size;
    return open_common(out, f, err);
}

sim_status st_from_parts(st_file **out, const char *path, st_tensor *tensors, int n, char *names, uint8_t *data,
                         size_t size, sim_err *err) {
    *out = NULL;
    st_file *f = mem_calloc(1, sizeof *f);
    char *p = mem_strdup(path);
    if (!f || !p) {
        mem_free(f), mem_free(p), mem_free(tensors), mem_free(names), mem_free(data);
        return err_set(err, SIM_ERR_NOMEM, "out of memory opening %s", path);
    }
    f->path = p;
    f->tensors = tensors;
    f->n_tensors = n;
    f->names = names;
    f->owned = data;
    f->base = data;
    f->file_size = size;
    qsort(f->tensors, (size_t)n, sizeof *f->tensors, cmp_name);
    for (int i = 1; i < n; i++)
        if (strcmp(f->tensors[i - 1].name, f->tensors[i].name) == 0) {
            sim_status st = err_set(err, SIM_ERR_FORMAT, "%s: tensor '%s' appears twice", path, f->tensors[i].name);
            st_close(f);
            return st;
        }
    *out = f;
    return SIM_OK;
}

void st_close(st_file *f) {
    if (!f) return;
    file_map_close(&f->map);
    mem_free(f->owned);
    mem_free(f->tensors);
    mem_free(f->names);
    mem_free(f->path);
    mem_free(f);
}

// --- lookup ---------------------------------------------------------------------------

const st_tensor *st_find(const st_file *f, const char *name) {
    int lo = 0, hi = f->n_tensors - 1;
    while (lo <= hi) {
        int mid = lo + (hi - lo) / 2;
        int c = strcmp(f->tensors[mid].name, name);
        if (c == 0) return &f->tensors[mid];
        if (c < 0) lo = mid + 1;
        else hi = mid - 1;
    }
    return NULL;
}

sim_status st_read_f32(const st_file *f, const char *name, const int64_t *shape, int n_dims, float *out,
                       sim_err *err) {
    const st_tensor *t = st_find(f, name);
    if (!t) return err_set(err, SIM_ERR_FORMAT, "%s: missing tensor '%s'", f->path, name);
    if (shape) {
        bool same = n_dims == t->n_dims;
        for (int i = 0; same && i < n_dims; i++) same = shape[i] == t->shape[i];
        if (!same) {
            char a[160], b[160];
            return err_set(err, SIM_ERR_FORMAT, "%s: tensor '%s' has shape %s, expected %s", f->path, name,
                           st_shape_str(t->shape, t->n_dims, a, sizeof a), st_shape_str(shape, n_dims, b, sizeof b));
        }
    }
    const uint8_t *p = t->data;
    switch (t->dtype) {
    case ST_F32:
        memcpy(out, p, t->size);
        break;
    case ST_F16:
        for (int64_t i = 0; i < t->n_elem; i++) out[i] = tt_half_to_float((tt_half)(p[2 * i] | p[2 * i + 1] << 8));
        break;
    case ST_BF16:
        for (int64_t i = 0; i < t->n_elem; i++) out[i] = tt_bf16_to_float((tt_bf16)(p[2 * i] | p[2 * i + 1] << 8));
        break;
    default:
        return err_set(err, SIM_ERR_UNSUPPORTED, "%s: tensor '%s' is %s (only F32, F16 and BF16 weights are supported)",
                       f->path, name, st_dtype_name(t->dtype));
    }
    return f->patch ? f->patch(f->patch_ud, name, out, t->n_dims, t->shape, err) : SIM_OK;
}

void st_set_patch(st_file *f, st_patch_fn fn, void *ud) {
    f->patch = fn;
    f->patch_ud = ud;
}
