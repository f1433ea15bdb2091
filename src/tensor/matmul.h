// matmul.h — weight matrix × activations, split across the threads of a region.
//
// Weights stay in their file layout (mmap'd, never repacked): row r of an
// mm_tensor is ne0 elements of its type at data + r * row_bytes.
// Activations are token-major: token c's vector is contiguous.
//
// Inside a pool region (see pool.h), each thread calls the same sequence:
//
//     mm_quantize(k, W->type, x, N, ne0, qbuf, ith, nth); // x → W's activation format
//     pool_barrier(p);
//     mm_mul(k, W, qbuf, N, y, ldy, &counters[i], nth);    // y[c*ldy + r] = W[r]·x[c]
//     pool_barrier(p);
//
// Several matrices that share an input (Q, K, V; gate and up) need one
// quantization and one barrier. Work is cut into chunks whose boundaries
// depend only on the shapes, never on the thread count, and each output is
// computed by exactly one thread in a fixed order: results are identical for
// any number of threads.
#ifndef SIM_MATMUL_H
#define SIM_MATMUL_H

#include "tensor/kern.h"
#include "tensor/pool.h"
#include "tensor/types.h"

typedef struct mm_tensor {
    tt_type type;
    int64_t ne0;      // elements per row (the input dimension)
    int64_t ne1;      // rows (the output dimension)
    size_t row_bytes; // tt_row_size(type, ne0)
    const void *data; // (ne1, ne0) in file layout
} mm_tensor;

// Bytes one activation row of ne0 elements takes in W's activation format.
size_t mm_act_row_bytes(tt_type wtype, int64_t ne0);

// Converts N activation rows (stride ne0 floats) into the activation format
// of weight type wtype, rows at q + c * mm_act_row_bytes(wtype, ne0). Rows
// are split statically between threads. For float formats this copies.
void mm_quantize(const kern_ops *k, tt_type wtype, const float *x, int N, int64_t ne0, void *q,
                 int ith, int nth);

// y[c * ldy + r] = dot(W row r, activation row c) for r < ne1, c < N, with
// activations as mm_quantize wrote them. Chunks are claimed from ctr (reset
// to 0 before the region), so fast threads take more; nth (the region's
// thread count) sizes them.
void mm_mul(const kern_ops *k, const mm_tensor *W, const void *q, int N, float *y, size_t ldy,
            pool_counter *ctr, int nth);

#endif
