// kv.h — the key/value cache: n_ctx cells, each with a position and a set of
// sequences, holding every layer's K and V rows for one token.
//
// A cell is free when its sequence set is empty. The forward pass writes a
// batch's K/V rows into the cells kv_find_slot picked, and a query token of
// sequence s at position p attends to every cell that belongs to s and
// holds a position <= p. The cells of a sequence need not be contiguous and
// may be shared by several sequences (a common prefix).
//
//     kv_cache kv;
//     if (kv_init(&kv, n_layer, n_ctx, n_kv_dim, TT_F16, &err) != SIM_OK) ...
//     int cells[n];
//     if (kv_find_slot(&kv, n, cells) != SIM_OK) ... // context full
//     ... forward writes rows, then kv_commit sets positions and sequences ...
//     kv_free(&kv);
//
// Storage: for each layer, K and V as (n_ctx, n_kv_dim) rows in F16 (the
// default: half the memory, no measurable loss) or F32.
#ifndef SIM_KV_H
#define SIM_KV_H

#include "base/base.h"
#include "tensor/types.h"

typedef uint64_t kv_seq_mask; // bit s = sequence s (up to 64 sequences)
#define KV_MAX_SEQ 64

typedef struct kv_cell {
    int32_t pos;      // position of the token held, -1 when free
    kv_seq_mask seqs; // sequences that contain this cell
} kv_cell;

typedef struct kv_cache {
    int n_layer;
    int n_ctx;         // cells
    int n_kv_dim;      // n_head_kv * head_dim
    tt_type type;      // TT_F16 or TT_F32
    size_t row_bytes;  // bytes of one cell's K (or V) row in one layer
    uint8_t *k;        // (n_layer, n_ctx, n_kv_dim)
    uint8_t *v;        // (n_layer, n_ctx, n_kv_dim)
    kv_cell *cells;    // (n_ctx)
    int n_used;        // cells with a non-empty sequence set
    int hi;            // one past the highest used cell (attention scans [0, hi))
} kv_cache;

sim_status kv_init(kv_cache *kv, int n_layer, int n_ctx, int n_kv_dim, tt_type type, sim_err *err);
void kv_free(kv_cache *kv);

// Bytes of K+V storage per cell (all layers): 2 × n_layer × n_kv_dim × element size.
size_t kv_bytes_per_cell(int n_layer, int n_kv_dim, tt_type type);

// Picks n free cells (the lowest-numbered) into cells[]; SIM_ERR_RANGE when
// fewer than n are free. Nothing changes until kv_commit.
sim_status kv_find_slot(const kv_cache *kv, int n, int *cells);

// Marks cells[i] as holding position pos[i] of the sequences seqs[i].
void kv_commit(kv_cache *kv, int n, const int *cells, const int32_t *pos, const kv_seq_mask *seqs);

// Empties the cache.
void kv_clear(kv_cache *kv);

// The highest position sequence s holds, or -1 when it holds none.
int32_t kv_seq_pos_max(const kv_cache *kv, int s);

// Removes positions [p0, p1) of sequence s (p1 < 0: to the end).
void kv_seq_rm(kv_cache *kv, int s, int32_t p0, int32_t p1);

// Adds sequence dst to every cell of sequence src with a position in
// [p0, p1) (p1 < 0: to the end): the cells are shared, no data is copied.
void kv_seq_cp(kv_cache *kv, int src, int dst, int32_t p0, int32_t p1);

// Removes every sequence but s from the cache.
void kv_seq_keep(kv_cache *kv, int s);

// Adds delta to the positions of sequence s's cells in [p0, p1) (p1 < 0: to
// the end). A cell shared with other sequences moves for all of them. Cells
// whose position would become negative are freed. Writes the moved cells to
// moved[] (room for n_ctx) and returns their count: their keys must be
// re-rotated by delta (fwd_seq_shift does both).
int kv_seq_shift_cells(kv_cache *kv, int s, int32_t p0, int32_t p1, int32_t delta, int *moved);

// Moves the used cells to the front, keeping their order, so the attention
// scan [0, hi) covers no holes. Copies K rows and V columns.
void kv_defrag(kv_cache *kv);

// Cells in use that belong to sequence s, in cell order (cells: room for n_ctx).
int kv_seq_cells(const kv_cache *kv, int s, int *cells);

static inline uint8_t *kv_k_row(const kv_cache *kv, int layer, int cell) {
    return kv->k + ((size_t)layer * (size_t)kv->n_ctx + (size_t)cell) * kv->row_bytes;
}
static inline uint8_t *kv_v_row(const kv_cache *kv, int layer, int cell) {
    return kv->v + ((size_t)layer * (size_t)kv->n_ctx + (size_t)cell) * kv->row_bytes;
}

#endif
