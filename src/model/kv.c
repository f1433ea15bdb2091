// kv.c — cells, slot finding, sequence bookkeeping.
#include "model/kv.h"

#include <string.h>

size_t kv_bytes_per_cell(int n_layer, int n_kv_dim, tt_type type) {
    return 2 * (size_t)n_layer * (size_t)n_kv_dim * (type == TT_F16 ? 2 : 4);
}

sim_status kv_init(kv_cache *kv, int n_layer, int n_ctx, int n_kv_dim, tt_type type, sim_err *err) {
    memset(kv, 0, sizeof *kv);
    if (type != TT_F16 && type != TT_F32) return err_set(err, SIM_ERR_ARG, "KV cache type must be f16 or f32");
    if (n_ctx < 1 || n_layer < 1 || n_kv_dim < 1) return err_set(err, SIM_ERR_ARG, "invalid KV cache size");
    kv->n_layer = n_layer;
    kv->n_ctx = n_ctx;
    kv->n_kv_dim = n_kv_dim;
    kv->type = type;
    kv->row_bytes = (size_t)n_kv_dim * (type == TT_F16 ? 2 : 4);
    size_t bytes;
    if (!size_mul(kv->row_bytes, (size_t)n_ctx * (size_t)n_layer, &bytes))
        return err_set(err, SIM_ERR_RANGE, "KV cache of %d cells is too large", n_ctx);
    // Zeroed, so cells never written (masked out anyway) hold finite values.
    kv->k = mem_calloc(1, bytes);
    kv->v = mem_calloc(1, bytes);
    kv->cells = mem_calloc((size_t)n_ctx, sizeof *kv->cells);
    if (!kv->k || !kv->v || !kv->cells) {
        kv_free(kv);
        return err_set(err, SIM_ERR_NOMEM, "out of memory for a KV cache of %d cells (%.1f MiB)", n_ctx,
                       2.0 * (double)bytes / (1 << 20));
    }
    kv_clear(kv);
    return SIM_OK;
}

void kv_free(kv_cache *kv) {
    mem_free(kv->k);
    mem_free(kv->v);
    mem_free(kv->cells);
    memset(kv, 0, sizeof *kv);
}

void kv_clear(kv_cache *kv) {
    for (int i = 0; i < kv->n_ctx; i++) kv->cells[i] = (kv_cell){.pos = -1, .seqs = 0};
    kv->n_used = 0;
    kv->hi = 0;
}

sim_status kv_find_slot(const kv_cache *kv, int n, int *cells) {
    if (n > kv->n_ctx - kv->n_used) return SIM_ERR_RANGE;
    int k = 0;
    for (int i = 0; i < kv->n_ctx && k < n; i++)
        if (kv->cells[i].seqs == 0) cells[k++] = i;
    return k == n ? SIM_OK : SIM_ERR_RANGE;
}

void kv_commit(kv_cache *kv, int n, const int *cells, const int32_t *pos, const kv_seq_mask *seqs) {
    for (int i = 0; i < n; i++) {
        kv_cell *c = &kv->cells[cells[i]];
        ASSERT(c->seqs == 0 && seqs[i] != 0);
        c->pos = pos[i];
        c->seqs = seqs[i];
        kv->n_used++;
        if (cells[i] + 1 > kv->hi) kv->hi = cells[i] + 1;
    }
}

int32_t kv_seq_pos_max(const kv_cache *kv, int s) {
    int32_t mx = -1;
    for (int i = 0; i < kv->hi; i++)
        if ((kv->cells[i].seqs >> s) & 1) mx = MAX(mx, kv->cells[i].pos);
    return mx;
}

void kv_seq_rm(kv_cache *kv, int s, int32_t p0, int32_t p1) {
    kv_seq_mask bit = (kv_seq_mask)1 << s;
    for (int i = 0; i < kv->hi; i++) {
        kv_cell *c = &kv->cells[i];
        if (!(c->seqs & bit) || c->pos < p0 || (p1 >= 0 && c->pos >= p1)) continue;
        c->seqs &= ~bit;
        if (c->seqs == 0) {
            c->pos = -1;
            kv->n_used--;
        }
    }
    while (kv->hi > 0 && kv->cells[kv->hi - 1].seqs == 0) kv->hi--;
}

void kv_seq_cp(kv_cache *kv, int src, int dst, int32_t p0, int32_t p1) {
    kv_seq_mask from = (kv_seq_mask)1 << src, to = (kv_seq_mask)1 << dst;
    for (int i = 0; i < kv->hi; i++) {
        kv_cell *c = &kv->cells[i];
        if ((c->seqs & from) && c->pos >= p0 && (p1 < 0 || c->pos < p1)) c->seqs |= to;
    }
}

void kv_seq_keep(kv_cache *kv, int s) {
    kv_seq_mask bit = (kv_seq_mask)1 << s;
    for (int i = 0; i < kv->hi; i++) {
        kv_cell *c = &kv->cells[i];
        if (c->seqs == 0) continue;
        c->seqs &= bit;
        if (c->seqs == 0) {
            c->pos = -1;
            kv->n_used--;
        }
    }
    while (kv->hi > 0 && kv->cells[kv->hi - 1].seqs == 0) kv->hi--;
}

int kv_seq_shift_cells(kv_cache *kv, int s, int32_t p0, int32_t p1, int32_t delta, int *moved) {
    kv_seq_mask bit = (kv_seq_mask)1 << s;
    int n = 0;
    for (int i = 0; i < kv->hi; i++) {
        kv_cell *c = &kv->cells[i];
        if (!(c->seqs & bit) || c->pos < p0 || (p1 >= 0 && c->pos >= p1)) continue;
        if ((int64_t)c->pos + delta < 0) {
            c->seqs = 0;
            c->pos = -1;
            kv->n_used--;
            continue;
        }
        c->pos += delta;
        moved[n++] = i;
    }
    while (kv->hi > 0 && kv->cells[kv->hi - 1].seqs == 0) kv->hi--;
    return n;
}

int kv_seq_cells(const kv_cache *kv, int s, int *cells) {
    kv_seq_mask bit = (kv_seq_mask)1 << s;
    int n = 0;
    for (int i = 0; i < kv->hi; i++)
        if (kv->cells[i].seqs & bit) cells[n++] = i;
    return n;
}

void kv_defrag(kv_cache *kv) {
    size_t esz = kv->type == TT_F16 ? 2 : 4;
    int dst = 0;
    for (int src = 0; src < kv->hi; src++) {
        if (kv->cells[src].seqs == 0) continue;
        if (src != dst) {
            for (int l = 0; l < kv->n_layer; l++) {
                memcpy(kv_k_row(kv, l, dst), kv_k_row(kv, l, src), kv->row_bytes);
                uint8_t *vt = kv_v_row(kv, l, 0); // V is (kv_dim, n_ctx): move one column
                for (int d = 0; d < kv->n_kv_dim; d++) {
                    uint8_t *row = vt + (size_t)d * kv->n_ctx * esz;
                    memcpy(row + (size_t)dst * esz, row + (size_t)src * esz, esz);
                }
            }
            kv->cells[dst] = kv->cells[src];
            kv->cells[src] = (kv_cell){.pos = -1, .seqs = 0};
        }
        dst++;
    }
    kv->hi = dst;
}
