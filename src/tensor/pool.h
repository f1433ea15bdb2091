// pool.h — a persistent thread pool for one parallel region at a time.
//
// The forward pass runs as one function on every thread (the caller is
// thread 0), with barriers between its steps, rather than one dispatch per
// operation: a decode step has hundreds of small steps and a barrier costs
// far less than waking threads.
//
//     pool *p;
//     if (pool_new(&p, 2, &err) != SIM_OK) ...
//     pool_run(p, work, &state);      // calls work(&state, ith, nth) on all threads
//     pool_free(p);
//
//     static void work(void *arg, int ith, int nth) {
//         ... my share of step 1 (split by rows: ith, nth) ...
//         pool_barrier(p);
//         ... step 2 ...
//     }
//
// Idle workers spin briefly, then sleep on a futex, so an idle pool costs no
// CPU. A pool runs one region at a time; pool_run is not reentrant and must
// be called from one thread at a time (a context owns its pool).
#ifndef SIM_POOL_H
#define SIM_POOL_H

#include <stdatomic.h>

#include "base/base.h"

typedef struct pool pool;
typedef void (*pool_fn)(void *arg, int ith, int nth);

#define POOL_MAX_THREADS 256

// n_threads counts the caller: 1 means no worker threads.
sim_status pool_new(pool **out, int n_threads, sim_err *err);
void pool_free(pool *p);
int pool_size(const pool *p);

// Runs fn(arg, ith, nth) on every thread and returns when all have returned.
void pool_run(pool *p, pool_fn fn, void *arg);

// Inside a region: returns when every thread of the pool has reached it.
void pool_barrier(pool *p);

// Dynamic work sharing inside a region: a counter that threads claim chunks
// from. Reset counters before the region (pool_run does not touch them).
typedef struct pool_counter {
    _Atomic int64_t next;
    char pad[64 - sizeof(int64_t)]; // one cache line each
} pool_counter;

static inline int64_t pool_claim(pool_counter *c) {
    return atomic_fetch_add_explicit(&c->next, 1, memory_order_relaxed);
}

// The number of CPUs this process may run on.
int pool_cpu_count(void);

#endif
