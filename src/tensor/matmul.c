// matmul.c — chunked GEMV/GEMM over the kernel table.
//
// Decoding one token (N == 1) is a matrix-vector product bound by memory:
// each row is one vec_dot, and each thread should stream long runs of
// consecutive rows, which the hardware prefetchers follow (short chunks
// alternating between threads cost a fifth of the bandwidth here). So the
// rows are cut into about GEMV_CHUNKS_PER_THREAD chunks per thread — long
// runs, with a little room for a slower thread to be helped. A row's result
// does not depend on which chunk holds it. Prompt processing
// (N > 1) is compute-bound: chunks are tiles of GEMM_ROWS weight rows ×
// GEMM_COLS tokens handed to the kernel's gemm, which register-blocks inside.
// A tile's weights (64 rows of a 2048-wide Q8_0 matrix: 136 KB) and
// activations (64 tokens: 160 KB) stay in L2 while the kernel works on it.
// Chunks are numbered row-block-major, so a thread that claims consecutive
// chunks keeps its weight rows in cache.
//
// A few tokens (several sequences decoded in one step) take the GEMV path
// when the level has vec_dot_n: each weight row is streamed once and
// unpacked once for all columns, where the GEMM path pays its panel packing
// for only a few. But vec_dot_n still reduces every (block, column) product
// horizontally, which the GEMM's transposed panels never do, so past a few
// columns the GEMM wins: measured on the 1.1B models (AVX-512, one core), at
// about 5 columns for the 32-element types (cheap codes, one reduction per
// 32 elements) and past 8 for the K-quants (costly codes, one per 256).
// vec_dot_n equals vec_dot bit for bit, so a token's result does not depend
// on how many others share its step, nor on the path.
#include "tensor/matmul.h"

#define GEMV_CHUNKS_PER_THREAD 4
#define GEMV_MIN_ROWS 16
#define GEMM_ROWS 64
#define GEMM_COLS 64
#define DOT_N_MAX_Q8_32 4 // the most columns for vec_dot_n, 32-element types
#define DOT_N_MAX_Q8_K 8  // and K-quants

size_t mm_act_row_bytes(tt_type wtype, int64_t ne0) {
    return tt_act_row_size(tt_get(wtype)->act, ne0);
}

void mm_quantize(const kern_ops *k, tt_type wtype, const float *x, int N, int64_t ne0, void *q,
                 int ith, int nth) {
    tt_act act = tt_get(wtype)->act;
    size_t rb = tt_act_row_size(act, ne0);
    for (int c = ith; c < N; c += nth)
        k->quantize_act[act](x + (size_t)c * (size_t)ne0, (char *)q + (size_t)c * rb, ne0);
}

void mm_mul(const kern_ops *k, const mm_tensor *W, const void *q, int N, float *y, size_t ldy,
            pool_counter *ctr, int nth) {
    size_t arow = mm_act_row_bytes(W->type, W->ne0);
    const char *wd = W->data;
    int64_t M = W->ne1;
    kern_vec_dot_n_fn dot_n = k->vec_dot_n[W->type];
    int dot_n_max = tt_get(W->type)->act == TT_ACT_Q8_K ? DOT_N_MAX_Q8_K : DOT_N_MAX_Q8_32;
    if (N == 1 || (dot_n && N <= dot_n_max)) {
        tt_vec_dot_fn dot = k->vec_dot[W->type];
        int64_t rows = (M + (int64_t)nth * GEMV_CHUNKS_PER_THREAD - 1) / ((int64_t)nth * GEMV_CHUNKS_PER_THREAD);
        rows = MAX(GEMV_MIN_ROWS, (rows + 15) / 16 * 16);
        int64_t n_chunks = (M + rows - 1) / rows;
        for (int64_t ch; (ch = pool_claim(ctr)) < n_chunks;) {
            int64_t r0 = ch * rows, r1 = MIN(M, r0 + rows);
            if (N == 1) {
                for (int64_t r = r0; r < r1; r++) dot(W->ne0, &y[r], wd + (size_t)r * W->row_bytes, q);
                continue;
            }
            // Columns in passes of KERN_DOT_N_MAX; the row stays in L1 between passes.
            for (int64_t r = r0; r < r1; r++)
                for (int c0 = 0; c0 < N; c0 += KERN_DOT_N_MAX)
                    dot_n(W->ne0, MIN(KERN_DOT_N_MAX, N - c0), &y[(size_t)c0 * ldy + r], ldy,
                          wd + (size_t)r * W->row_bytes, (const char *)q + (size_t)c0 * arow, arow);
        }
        return;
    }
    kern_gemm_fn gemm = k->gemm[W->type];
    int64_t n_rb = (M + GEMM_ROWS - 1) / GEMM_ROWS, n_cb = (N + GEMM_COLS - 1) / GEMM_COLS;
    for (int64_t ch; (ch = pool_claim(ctr)) < n_rb * n_cb;) {
        int64_t r0 = (ch / n_cb) * GEMM_ROWS, c0 = (ch % n_cb) * GEMM_COLS;
        int nr = (int)MIN(GEMM_ROWS, M - r0), nc = (int)MIN(GEMM_COLS, N - c0);
        gemm(W->ne0, nr, nc, wd + (size_t)r0 * W->row_bytes, W->row_bytes,
             (const char *)q + (size_t)c0 * arow, arow, y + (size_t)c0 * ldy + r0, ldy);
    }
}
