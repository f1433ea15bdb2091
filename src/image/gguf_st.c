// gguf_st.c — GGUF tensors as an st_file (see gguf_st.h).
#include "image/gguf_st.h"

#include <stdio.h>
#include <string.h>

#include "model/gguf.h"

bool gguf_st_is_gguf(const char *path) {
    FILE *fp = fopen(path, "rb");
    uint8_t m[4] = {0};
    bool yes = fp && fread(m, 1, 4, fp) == 4 && (uint32_t)(m[0] | m[1] << 8 | m[2] << 16 | (uint32_t)m[3] << 24) == GGUF_MAGIC;
    if (fp) fclose(fp);
    return yes;
}

// The st dtype a GGUF tensor type becomes: itself for F32/F16/BF16, F16 otherwise.
static st_dtype dtype_of(tt_type t) {
    return t == TT_F32 ? ST_F32 : t == TT_BF16 ? ST_BF16 : ST_F16;
}

static sim_status convert(st_file **out, const gguf_file *g, sim_err *err) {
    if (g->n_tensors > (1 << 20)) return err_set(err, SIM_ERR_RANGE, "%s: %lld tensors", g->path, (long long)g->n_tensors);
    int n = (int)g->n_tensors;
    size_t names_len = 0, total = 0, max_row = 0;
    for (int i = 0; i < n; i++) {
        const gguf_tensor *t = &g->tensors[i];
        const tt_traits *tr = tt_get(t->type);
        if (!tr || !tr->to_float) return err_set(err, SIM_ERR_UNSUPPORTED, "%s: tensor '%s' is %s, which cannot be dequantized", g->path, t->name, tt_name(t->type));
        if (!t->data) return err_set(err, SIM_ERR_FORMAT, "%s: tensor '%s' has no data", g->path, t->name);
        size_t elems = 1, bytes;
        for (int d = 0; d < t->n_dims; d++) elems *= (size_t)t->ne[d]; // gguf.h checked the product
        if (!size_mul(elems, st_dtype_size(dtype_of(t->type)), &bytes) || !size_add(total, bytes, &total))
            return err_set(err, SIM_ERR_RANGE, "%s: tensor '%s' is too large", g->path, t->name);
        names_len += strlen(t->name) + 1;
        max_row = MAX(max_row, (size_t)t->ne[0]);
    }
    st_tensor *ts = mem_calloc((size_t)n + 1, sizeof *ts);
    char *names = mem_alloc(names_len + 1), *np = names;
    uint8_t *data = mem_alloc(total ? total : 1), *dp = data;
    float *row = mem_alloc((max_row ? max_row : 1) * sizeof *row);
    sim_status st = ts && names && data && row ? SIM_OK : err_set(err, SIM_ERR_NOMEM, "%s: out of memory for %zu bytes of weights", g->path, total);
    for (int i = 0; i < n && st == SIM_OK; i++) {
        const gguf_tensor *t = &g->tensors[i];
        st_tensor *s = &ts[i];
        size_t len = strlen(t->name) + 1;
        memcpy(np, t->name, len);
        s->name = np, np += len;
        s->dtype = dtype_of(t->type);
        s->n_dims = t->n_dims;
        s->n_elem = 1;
        for (int d = 0; d < t->n_dims; d++) s->shape[d] = t->ne[t->n_dims - 1 - d], s->n_elem *= t->ne[d];
        s->size = (size_t)s->n_elem * st_dtype_size(s->dtype);
        s->data = dp;
        if (s->dtype != ST_F16 || t->type == TT_F16) {
            memcpy(dp, t->data, s->size);
        } else {
            // Quantized: row by row through float32 to F16.
            size_t rb = tt_row_size(t->type, t->ne[0]), rows = t->ne[0] ? (size_t)(s->n_elem / t->ne[0]) : 0;
            const uint8_t *src = t->data;
            uint16_t *h = (uint16_t *)(void *)dp;
            for (size_t r = 0; r < rows; r++, src += rb) {
                tt_get(t->type)->to_float(src, row, t->ne[0]);
                for (int64_t k = 0; k < t->ne[0]; k++) *h++ = tt_float_to_half(row[k]);
            }
        }
        dp += s->size;
    }
    mem_free(row);
    if (st != SIM_OK) {
        mem_free(ts), mem_free(names), mem_free(data);
        return st;
    }
    return st_from_parts(out, g->path, ts, n, names, data, total, err);
}

sim_status gguf_st_open(st_file **out, const char *path, sim_err *err) {
    *out = NULL;
    gguf_file *g;
    sim_status st = gguf_open(&g, path, err);
    if (st != SIM_OK) return st;
    st = convert(out, g, err);
    gguf_close(g);
    return st;
}

sim_status gguf_st_open_memory(st_file **out, const uint8_t *data, size_t size, const char *name, sim_err *err) {
    *out = NULL;
    gguf_file *g;
    sim_status st = gguf_open_memory(&g, data, size, name, err);
    if (st != SIM_OK) return st;
    st = convert(out, g, err);
    gguf_close(g);
    return st;
}
