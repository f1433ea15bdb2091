// stwrite.c — the safetensors writer (see stwrite.h).
#include "image/stwrite.h"

#include <errno.h>
#include <jansson.h>
#include <stdio.h>
#include <string.h>

#include "tensor/types.h"

int64_t stw_numel(const stw_entry *e) {
    if (e->n_dims < 1 || e->n_dims > ST_MAX_DIMS) return 0;
    int64_t n = 1;
    for (int i = 0; i < e->n_dims; i++) {
        if (e->shape[i] < 1 || e->shape[i] > (INT64_C(1) << 40) / n) return 0;
        n *= e->shape[i];
    }
    return n;
}

// The header JSON (NUL-terminated, mem_free) or NULL; checks every entry.
static sim_status header(char **out, const char *path, const stw_entry *e, int n, st_dtype dtype, const char *const *metadata,
                         int64_t *max_elem, sim_err *err) {
    json_t *root = json_object();
    sim_status st = root ? SIM_OK : err_set(err, SIM_ERR_NOMEM, "%s: out of memory for the header", path);
    if (st == SIM_OK && metadata) {
        json_t *md = json_object();
        for (int i = 0; md && metadata[i] && metadata[i + 1]; i += 2) json_object_set_new(md, metadata[i], json_string(metadata[i + 1]));
        if (!md || json_object_set_new(root, "__metadata__", md) != 0) st = err_set(err, SIM_ERR_NOMEM, "%s: out of memory for the header", path);
    }
    int64_t off = 0;
    *max_elem = 1;
    for (int i = 0; i < n && st == SIM_OK; i++) {
        int64_t k = stw_numel(&e[i]);
        if (!k) {
            st = err_set(err, SIM_ERR_ARG, "%s: tensor '%s': bad shape", path, e[i].name);
            break;
        }
        if (json_object_get(root, e[i].name)) {
            st = err_set(err, SIM_ERR_ARG, "%s: tensor '%s' twice", path, e[i].name);
            break;
        }
        *max_elem = MAX(*max_elem, k);
        int64_t end = off + k * (int64_t)st_dtype_size(dtype);
        json_t *shape = json_array(), *t = json_object();
        for (int d = 0; shape && d < e[i].n_dims; d++) json_array_append_new(shape, json_integer(e[i].shape[d]));
        if (!shape || !t || json_object_set_new(t, "dtype", json_string(st_dtype_name(dtype))) ||
            json_object_set_new(t, "shape", shape) || json_object_set_new(t, "data_offsets", json_pack("[II]", (json_int_t)off, (json_int_t)end)) ||
            json_object_set_new(root, e[i].name, t))
            st = err_set(err, SIM_ERR_NOMEM, "%s: out of memory for the header", path);
        off = end;
    }
    *out = st == SIM_OK ? json_dumps(root, JSON_COMPACT | JSON_PRESERVE_ORDER) : NULL;
    if (st == SIM_OK && !*out) st = err_set(err, SIM_ERR_NOMEM, "%s: out of memory for the header", path);
    json_decref(root);
    return st;
}

// Converts n floats to dtype in place (the output is never longer).
static void convert(float *x, size_t n, st_dtype dtype) {
    if (dtype == ST_F16) {
        uint16_t *h = (uint16_t *)x;
        for (size_t i = 0; i < n; i++) h[i] = tt_float_to_half(x[i]);
    } else if (dtype == ST_BF16) {
        uint16_t *h = (uint16_t *)x;
        for (size_t i = 0; i < n; i++) h[i] = tt_float_to_bf16(x[i]);
    }
}

sim_status stw_write(const char *path, const stw_entry *e, int n, st_dtype dtype, const char *const *metadata, stw_fill_fn fill,
                     void *ud, sim_err *err) {
    if (dtype != ST_F32 && dtype != ST_F16 && dtype != ST_BF16)
        return err_set(err, SIM_ERR_ARG, "%s: cannot write dtype %s (F32, F16, BF16)", path, st_dtype_name(dtype));
    if (n < 0) return err_set(err, SIM_ERR_ARG, "%s: %d tensors", path, n);
    char *json;
    int64_t max_elem;
    sim_status st = header(&json, path, e, n, dtype, metadata, &max_elem, err);
    if (st != SIM_OK) return st;
    size_t len = strlen(json), padded = (len + 7) & ~(size_t)7;
    float *buf = mem_alloc((size_t)max_elem * sizeof *buf);
    FILE *fp = buf ? fopen(path, "wb") : NULL;
    if (!buf) st = err_set(err, SIM_ERR_NOMEM, "%s: out of memory for a %lld-element tensor", path, (long long)max_elem);
    else if (!fp) st = err_set(err, SIM_ERR_IO, "%s: %s", path, strerror(errno));
    if (st == SIM_OK) {
        uint8_t le[8];
        for (int i = 0; i < 8; i++) le[i] = (uint8_t)((uint64_t)padded >> (8 * i));
        bool ok = fwrite(le, 1, 8, fp) == 8 && fwrite(json, 1, len, fp) == len;
        for (size_t i = len; ok && i < padded; i++) ok = fputc(' ', fp) != EOF;
        for (int i = 0; ok && st == SIM_OK && i < n; i++) {
            size_t k = (size_t)stw_numel(&e[i]);
            st = fill(ud, i, buf, err);
            if (st != SIM_OK) break;
            convert(buf, k, dtype);
            ok = fwrite(buf, st_dtype_size(dtype), k, fp) == k;
        }
        if (fclose(fp) != 0) ok = false;
        if (st == SIM_OK && !ok) st = err_set(err, SIM_ERR_IO, "%s: write failed: %s", path, strerror(errno));
        if (st != SIM_OK) remove(path);
    }
    mem_free(buf);
    free(json);
    return st;
}
