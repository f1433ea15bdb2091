// base.c — errors, assertions, the allocation hook, time.
#include "base/base.h"

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

_Noreturn void base_assert_fail(const char *file, int line, const char *cond) {
    fprintf(stderr, "%s:%d: assertion failed: %s\n", file, line, cond);
    fflush(stderr);
    abort();
}

const char *sim_status_str(sim_status s) {
    switch (s) {
    case SIM_OK: return "ok";
    case SIM_ERR_IO: return "io error";
    case SIM_ERR_FORMAT: return "format error";
    case SIM_ERR_UNSUPPORTED: return "unsupported";
    case SIM_ERR_NOMEM: return "out of memory";
    case SIM_ERR_ARG: return "invalid argument";
    case SIM_ERR_RANGE: return "out of range";
    case SIM_ERR_ABORTED: return "aborted";
    }
    return "unknown status";
}

// --- errors -------------------------------------------------------------------

sim_status err_set(sim_err *err, sim_status code, const char *fmt, ...) {
    if (err) {
        va_list ap;
        va_start(ap, fmt);
        vsnprintf(err->msg, sizeof err->msg, fmt, ap);
        va_end(ap);
        err->code = code;
    }
    return code;
}

sim_status err_prefix(sim_err *err, const char *fmt, ...) {
    if (!err) return SIM_OK;
    char prefix[160];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(prefix, sizeof prefix, fmt, ap);
    va_end(ap);
    char old[sizeof err->msg];
    memcpy(old, err->msg, sizeof old);
    // Both parts fit in most cases; a very long pair is cut at the end.
    int n = snprintf(err->msg, sizeof err->msg, "%s: ", prefix);
    if (n > 0 && (size_t)n < sizeof err->msg) snprintf(err->msg + n, sizeof err->msg - (size_t)n, "%s", old);
    return err->code;
}

// --- allocation ---------------------------------------------------------------

static _Thread_local long fail_countdown = -1;
static _Thread_local bool fail_triggered;

void mem_fail_after(long n) {
    fail_countdown = n;
    fail_triggered = false;
}

bool mem_fail_triggered(void) { return fail_triggered; }

static bool inject_failure(void) {
    if (fail_countdown < 0) return false;
    if (fail_countdown == 0) {
        fail_countdown = -1;
        fail_triggered = true;
        return true;
    }
    fail_countdown--;
    return false;
}

void *mem_alloc(size_t n) {
    if (inject_failure()) return NULL;
    return malloc(n ? n : 1);
}

void *mem_calloc(size_t count, size_t size) {
    size_t total;
    if (!size_mul(count, size, &total)) return NULL;
    if (inject_failure()) return NULL;
    return calloc(total ? total : 1, 1);
}

void *mem_realloc(void *p, size_t n) {
    if (inject_failure()) return NULL;
    return realloc(p, n ? n : 1);
}

void *mem_alloc_aligned(size_t align, size_t n) {
    if (inject_failure()) return NULL;
    size_t rounded;
    if (!size_add(n ? n : 1, align - 1, &rounded)) return NULL;
    rounded -= rounded % align;
    return aligned_alloc(align, rounded);
}

void mem_free(void *p) { free(p); }
void mem_free_aligned(void *p) { free(p); }

char *mem_strndup(const char *s, size_t n) {
    char *d = mem_alloc(n + 1);
    if (!d) return NULL;
    memcpy(d, s, n);
    d[n] = 0;
    return d;
}

char *mem_strdup(const char *s) { return mem_strndup(s, strlen(s)); }

// --- time ----------------------------------------------------------------------

uint64_t time_ns(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000000000ull + (uint64_t)ts.tv_nsec;
}
