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
    case SIM_ERR_BUSY: return "busy";
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

// --- sorting ---------------------------------------------------------------------

void sort_i32(int32_t *a, int32_t *tmp, int n, int (*cmp)(const void *ctx, int32_t x, int32_t y), const void *ctx) {
    if (n < 2) return;
    int h = n / 2;
    sort_i32(a, tmp, h, cmp, ctx);
    sort_i32(a + h, tmp, n - h, cmp, ctx);
    int i = 0, j = h, k = 0;
    while (i < h && j < n) tmp[k++] = cmp(ctx, a[j], a[i]) < 0 ? a[j++] : a[i++];
    while (i < h) tmp[k++] = a[i++];
    while (j < n) tmp[k++] = a[j++];
    memcpy(a, tmp, (size_t)n * sizeof *a);
}

// --- hashing ---------------------------------------------------------------------

#define H1 0x9E3779B185EBCA87ull
#define H2 0xC2B2AE3D27D4EB4Full
#define H3 0x165667B19E3779F9ull
#define H4 0x85EBCA77C2B2AE63ull
#define H5 0x27D4EB2F165667C5ull

static inline uint64_t rotl64(uint64_t x, int r) { return (x << r) | (x >> (64 - r)); }
static inline uint64_t load64(const uint8_t *p) {
    uint64_t v;
    memcpy(&v, p, 8);
    return v;
}
static inline uint64_t round64(uint64_t acc, uint64_t in) { return rotl64(acc + in * H2, 31) * H1; }
static inline uint64_t merge64(uint64_t acc, uint64_t v) { return (acc ^ round64(0, v)) * H1 + H4; }

uint64_t hash64(const void *data, size_t n, uint64_t seed) {
    const uint8_t *p = data, *end = p + n;
    uint64_t h;
    if (n >= 32) {
        uint64_t v1 = seed + H1 + H2, v2 = seed + H2, v3 = seed, v4 = seed - H1;
        for (; p + 32 <= end; p += 32) {
            v1 = round64(v1, load64(p));
            v2 = round64(v2, load64(p + 8));
            v3 = round64(v3, load64(p + 16));
            v4 = round64(v4, load64(p + 24));
        }
        h = rotl64(v1, 1) + rotl64(v2, 7) + rotl64(v3, 12) + rotl64(v4, 18);
        h = merge64(merge64(merge64(merge64(h, v1), v2), v3), v4);
    } else {
        h = seed + H5;
    }
    h += (uint64_t)n;
    for (; p + 8 <= end; p += 8) h = rotl64(h ^ round64(0, load64(p)), 27) * H1 + H4;
    for (; p < end; p++) h = rotl64(h ^ (*p * H5), 11) * H1;
    h ^= h >> 33;
    h *= H2;
    h ^= h >> 29;
    h *= H3;
    return h ^ (h >> 32);
}

// --- time ----------------------------------------------------------------------

uint64_t time_ns(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000000000ull + (uint64_t)ts.tv_nsec;
}
