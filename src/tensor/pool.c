// pool.c — persistent workers, a spinning barrier, futex sleep when idle.
#include "tensor/pool.h"

#include <errno.h>
#include <limits.h>
#include <linux/futex.h>
#include <pthread.h>
#include <sched.h>
#include <string.h>
#include <sys/syscall.h>
#include <unistd.h>

#if defined(__x86_64__) || defined(__i386__)
#include <immintrin.h>
#define CPU_RELAX() _mm_pause()
#else
#define CPU_RELAX() ((void)0)
#endif

// Spins before sleeping: long enough to bridge the gap between the decode
// steps of a busy generation loop, short enough that an idle pool sleeps.
#define SPIN_BEFORE_SLEEP 20000
#define SPIN_BEFORE_YIELD 4000

typedef struct worker {
    pool *p;
    int ith;
    pthread_t tid;
} worker;

struct pool {
    int n;
    worker *workers;             // n - 1 workers (thread 0 is the caller)
    _Alignas(64) _Atomic uint32_t gen;   // bumped by each pool_run (futex word)
    _Alignas(64) _Atomic int n_done;     // workers finished with the current region
    _Alignas(64) _Atomic int bar_count;  // threads arrived at the current barrier
    _Alignas(64) _Atomic uint32_t bar_gen;
    pool_fn fn;
    void *arg;
    _Atomic bool stop;
};

static void futex_wait(_Atomic uint32_t *addr, uint32_t val) {
    syscall(SYS_futex, (uint32_t *)addr, FUTEX_WAIT_PRIVATE, val, NULL, NULL, 0);
}

static void futex_wake_all(_Atomic uint32_t *addr) {
    syscall(SYS_futex, (uint32_t *)addr, FUTEX_WAKE_PRIVATE, INT_MAX, NULL, NULL, 0);
}

static void *worker_main(void *argp) {
    worker *w = argp;
    pool *p = w->p;
    uint32_t seen = 0;
    for (;;) {
        uint32_t g;
        int spins = 0;
        while ((g = atomic_load(&p->gen)) == seen) {
            if (++spins < SPIN_BEFORE_SLEEP) CPU_RELAX();
            else futex_wait(&p->gen, seen);
        }
        seen = g;
        if (atomic_load(&p->stop)) break;
        p->fn(p->arg, w->ith, p->n);
        atomic_fetch_add(&p->n_done, 1);
    }
    return NULL;
}

sim_status pool_new(pool **out, int n_threads, sim_err *err) {
    *out = NULL;
    if (n_threads < 1 || n_threads > POOL_MAX_THREADS)
        return err_set(err, SIM_ERR_ARG, "thread count %d outside 1..%d", n_threads, POOL_MAX_THREADS);
    pool *p = mem_alloc_aligned(64, sizeof *p);
    if (!p) return err_set(err, SIM_ERR_NOMEM, "out of memory for the thread pool");
    memset(p, 0, sizeof *p);
    p->n = n_threads;
    p->workers = mem_calloc((size_t)n_threads, sizeof *p->workers);
    if (!p->workers) {
        mem_free_aligned(p);
        return err_set(err, SIM_ERR_NOMEM, "out of memory for the thread pool");
    }
    for (int i = 1; i < n_threads; i++) {
        worker *w = &p->workers[i];
        w->p = p;
        w->ith = i;
        int rc = pthread_create(&w->tid, NULL, worker_main, w);
        if (rc != 0) {
            p->n = i; // only the threads created so far
            pool_free(p);
            return err_set(err, SIM_ERR_NOMEM, "cannot start thread %d: %s", i, strerror(rc));
        }
    }
    *out = p;
    return SIM_OK;
}

void pool_free(pool *p) {
    if (!p) return;
    atomic_store(&p->stop, true);
    atomic_fetch_add(&p->gen, 1);
    futex_wake_all(&p->gen);
    for (int i = 1; i < p->n; i++) pthread_join(p->workers[i].tid, NULL);
    mem_free(p->workers);
    mem_free_aligned(p);
}

int pool_size(const pool *p) { return p->n; }

void pool_run(pool *p, pool_fn fn, void *arg) {
    if (p->n == 1) {
        fn(arg, 0, 1);
        return;
    }
    p->fn = fn;
    p->arg = arg;
    atomic_store(&p->n_done, 0);
    atomic_fetch_add(&p->gen, 1);
    futex_wake_all(&p->gen);
    fn(arg, 0, p->n);
    int spins = 0;
    while (atomic_load(&p->n_done) != p->n - 1) {
        if (++spins < SPIN_BEFORE_YIELD) CPU_RELAX();
        else sched_yield();
    }
}

void pool_barrier(pool *p) {
    if (p->n == 1) return;
    uint32_t g = atomic_load(&p->bar_gen);
    if (atomic_fetch_add(&p->bar_count, 1) == p->n - 1) {
        atomic_store(&p->bar_count, 0);
        atomic_fetch_add(&p->bar_gen, 1);
        return;
    }
    int spins = 0;
    while (atomic_load(&p->bar_gen) == g) {
        if (++spins < SPIN_BEFORE_YIELD) CPU_RELAX();
        else sched_yield();
    }
}

int pool_cpu_count(void) {
    cpu_set_t set;
    if (sched_getaffinity(0, sizeof set, &set) == 0) {
        int n = CPU_COUNT(&set);
        if (n > 0) return n;
    }
    long n = sysconf(_SC_NPROCESSORS_ONLN);
    return n > 0 ? (int)n : 1;
}
