// base.h — what every module uses: errors, assertions, allocation, time.
//
// Three kinds of error, never mixed (STYLE.md):
//   - ASSERT(cond) for bugs: prints file:line and aborts.
//   - a sim_status return plus a message in a caller-provided sim_err for
//     anything that can fail at run time (files, models, requests, memory):
//
//         sim_err err;
//         if (gguf_open(&f, path, &err) != SIM_OK) fprintf(stderr, "%s\n", err.msg);
//
//     err_set() formats the message and returns the status, so a failing
//     function ends with `return err_set(err, SIM_ERR_FORMAT, "%s: bad magic", path);`.
//   - exit() only in main().
//
// Allocation goes through mem_alloc/mem_calloc/mem_realloc/mem_free so tests
// can make the Nth allocation fail (mem_fail_after). The failure counter is
// thread-local: one test thread's injection never affects another thread.
#ifndef SIM_BASE_H
#define SIM_BASE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "simularity.h"

#define ASSERT(cond)                                                                   \
    do {                                                                               \
        if (!(cond)) base_assert_fail(__FILE__, __LINE__, #cond);                      \
    } while (0)

_Noreturn void base_assert_fail(const char *file, int line, const char *cond);

#define MIN(a, b) ((a) < (b) ? (a) : (b))
#define MAX(a, b) ((a) > (b) ? (a) : (b))
#define ARRAY_LEN(a) (sizeof(a) / sizeof((a)[0]))

// --- errors -------------------------------------------------------------------

// The public sim_error (simularity.h): a status and a one-line message.
typedef sim_error sim_err;

// Formats the message into *err (if err is not NULL) and returns code.
sim_status err_set(sim_err *err, sim_status code, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

// Prepends "prefix: " to an existing message (for adding the file name).
sim_status err_prefix(sim_err *err, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

// --- allocation ---------------------------------------------------------------

void *mem_alloc(size_t n);              // NULL on failure (or injected failure)
void *mem_calloc(size_t count, size_t size); // zeroed; NULL on overflow/failure
void *mem_realloc(void *p, size_t n);
void *mem_alloc_aligned(size_t align, size_t n); // free with mem_free_aligned
void mem_free(void *p);
void mem_free_aligned(void *p);
char *mem_strdup(const char *s);
char *mem_strndup(const char *s, size_t n);

// Test hook: the next `n` allocations on this thread succeed, the one after
// fails, and all later ones succeed again. n < 0 disables injection.
void mem_fail_after(long n);
// Whether an injected failure has happened since the last mem_fail_after.
bool mem_fail_triggered(void);

// Overflow-checked size arithmetic: return false when the result would not fit.
static inline bool size_mul(size_t a, size_t b, size_t *out) {
    return !__builtin_mul_overflow(a, b, out);
}
static inline bool size_add(size_t a, size_t b, size_t *out) {
    return !__builtin_add_overflow(a, b, out);
}

// --- sorting ---------------------------------------------------------------------

// Sorts a[0..n) with cmp(ctx, x, y) (< 0: x first), stably; tmp has room for
// n. (qsort takes no context argument in C11.)
void sort_i32(int32_t *a, int32_t *tmp, int n, int (*cmp)(const void *ctx, int32_t x, int32_t y), const void *ctx);

// --- hashing ---------------------------------------------------------------------

// A fast 64-bit non-cryptographic hash (four multiply-rotate lanes over
// 32-byte stripes, then a final avalanche): for content keys and checksums.
uint64_t hash64(const void *data, size_t n, uint64_t seed);

// --- time ----------------------------------------------------------------------

uint64_t time_ns(void); // monotonic clock, nanoseconds

#endif
