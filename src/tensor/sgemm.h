// sgemm.h — the float32 matrix product of the image operators:
//
//     C (M, N) [+]= A (M, K) · B (K, N) [+ bias_r (M) per row] [+ bias_c (N) per column]
//
// A is rows of K elements in F32, F16 or BF16 (weights stay in their file
// type; a micro-panel of KERN_SG_MR rows is converted to f32 just before
// use, which costs 1/(2·SG_NC) of the multiply-adds). B is produced by a
// packer into panels of KERN_SG_NR columns, so a convolution's im2col
// writes straight into the layout the kernel reads and never exists as a
// whole matrix; sg_pack_dense (row-major f32) and sg_pack_rows (B = Rᵀ for
// rows R of any float type: linear weights, attention keys) cover the rest.
// C is row-major: NCHW images and token-major sequences come out directly.
//
// Blocking (BLIS-like): C is cut into tiles of mc rows × SG_NC columns
// whose sizes depend only on M, N, K; K into near-equal blocks of at most
// SG_KC. Per tile and K block the thread packs B (SG_KC × SG_NC floats:
// 384 KB, in L2), then for each KERN_SG_MR rows of A (18 KB, in L1) runs
// the micro-kernel over the B panels. Long K blocks matter most: on Zen 4
// one thread reaches 70% of its FMA peak with K blocks of 256 and 79%
// with 768 (the C tile is loaded and stored once per block). Each element of C is computed by one
// thread, over its K blocks in order, whatever thread takes its tile:
// results do not depend on the thread count.
//
//     sg_args g = {.k = k, .M = M, .N = N, .K = K, .a_type = TT_F16, .a = w, .lda = K,
//                  .pack_b = sg_pack_dense, .b = &(sg_dense){x, N}, .c = y, .ldc = N};
//     sg_plan(&g, 16);
//     ... in a pool region, every thread:  sg_run(&g, &ctr, scratch + ith * SG_THREAD_FLOATS);
//
// Buffers: the caller gives each thread SG_THREAD_FLOATS floats.
#ifndef SIM_SGEMM_H
#define SIM_SGEMM_H

#include <stdbool.h>

#include "tensor/kern.h"
#include "tensor/pool.h"

#define SG_KC 768 // K block (rows of a packed B block): long, so C tiles are loaded and stored rarely
#define SG_NC 128 // tile width (columns of a packed B block: 384 KB with SG_KC, in L2)
// Per-thread work floats: the packed B block, an A micro-panel converted to
// f32, and 16 rows for sg_pack_rows.
#define SG_THREAD_FLOATS ((size_t)SG_KC * SG_NC + (size_t)KERN_SG_MR * SG_KC + 16 * (size_t)SG_KC)

// Fills the packed block for rows k0 .. k0+kc and columns n0 .. n0+nc of B:
// ceil(nc / KERN_SG_NR) panels, panel p at bp + p * kc * KERN_SG_NR, with
// bp[p * kc * NR + k * NR + j] = B[k0 + k][n0 + p * NR + j] and zeros for
// columns at or past n0 + nc. tmp is 16 * SG_KC floats of work space.
typedef void (*sg_pack_fn)(const void *b, const kern_ops *k, int k0, int kc, int64_t n0, int nc, float *bp, float *tmp);

typedef struct sg_args {
    const kern_ops *k;
    int64_t M, N;
    int K;
    tt_type a_type;         // TT_F32, TT_F16 or TT_BF16
    const void *a;          // row m at a + m * lda elements
    size_t lda;
    sg_pack_fn pack_b;
    const void *b;          // the packer's description of B
    float *c;               // (M, N) rows ldc floats apart
    size_t ldc;
    const float *bias_r;    // (M) or NULL
    const float *bias_c;    // (N) or NULL
    bool acc;               // C += A·B (biases still added)
    bool relu;              // C = max(0, C) once the tile's last K block is in (while it is in cache)
    // set by sg_plan
    int mc, nc, kc, n_kb;   // tile rows (a multiple of KERN_SG_MR) and columns, K block, K blocks
    int64_t n_mt, n_nt;     // tiles down and across
} sg_args;

// Computes the tiling from the shapes and `tiles`, the number of tiles
// wanted at least (for threads to share; 1 for a product one thread does
// alone, which then packs each B block once). Call once before sg_run.
void sg_plan(sg_args *g, int tiles);
static inline int64_t sg_tiles(const sg_args *g) { return g->n_mt * g->n_nt; }
// Computes tile t (0 <= t < sg_tiles) with buf (SG_THREAD_FLOATS floats).
void sg_tile(const sg_args *g, int64_t t, float *buf);
// Claims tiles from ctr (reset to 0 before the region) until none are left.
void sg_run(const sg_args *g, pool_counter *ctr, float *buf);

// B (K, N) row-major f32: B[k][n] = b[k * ld + n].
typedef struct sg_dense {
    const float *b;
    size_t ld;
} sg_dense;
void sg_pack_dense(const void *b, const kern_ops *k, int k0, int kc, int64_t n0, int nc, float *bp, float *tmp);

// B = Rᵀ for N rows R of K elements of a float type: B[k][n] = R[n * ld + k].
typedef struct sg_rows {
    tt_type type; // TT_F32, TT_F16 or TT_BF16
    const void *r;
    size_t ld;    // elements
} sg_rows;
void sg_pack_rows(const void *b, const kern_ops *k, int k0, int kc, int64_t n0, int nc, float *bp, float *tmp);

// Bytes per element of a float type (F32, F16, BF16).
size_t sg_type_size(tt_type t);

#endif
