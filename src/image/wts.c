// wts.c — two-pass weight binding into one arena (see wts.h).
#include "image/wts.h"

#include <stdarg.h>
#include <stdio.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

static size_t elems(int nd, const int64_t *d) {
    size_t n = 1;
    for (int i = 0; i < nd; i++) n *= (size_t)d[i];
    return n;
}

// Room for n elements of es bytes, aligned to es: the next slot (pass 2) or NULL (pass 1).
static char *reserve(wts_loader *L, size_t n, size_t es) {
    size_t at = (L->count + es - 1) / es * es;
    L->count = at + n * es;
    if (L->counting) return NULL;
    ASSERT(L->arena + L->count <= L->end); // pass 2 takes what pass 1 counted
    return L->arena + at;
}

static void full_name(wts_loader *L, char *name, size_t cap, const char *fmt, va_list ap) {
    int k = snprintf(name, cap, "%s", L->prefix);
    vsnprintf(name + k, cap - (size_t)k, fmt, ap);
}

// After a tensor is copied: drops the whole pages of its bytes in a mapped
// file from this process (a shared read-only mapping: the page cache keeps
// them), so loading never holds a weight twice — the resident peak is the
// arena, not the arena plus the file.
static void release(const st_file *f, const char *name) {
    const st_tensor *t = st_find(f, name);
    if (!t || !f->map.data || t->data < f->map.data || t->data + t->size > f->map.data + f->map.size) return; // not mapped
    uintptr_t pg = (uintptr_t)sysconf(_SC_PAGESIZE), a = ((uintptr_t)t->data + pg - 1) / pg * pg,
              b = ((uintptr_t)t->data + t->size) / pg * pg;
    if (b > a) madvise((void *)a, b - a, MADV_DONTNEED);
}

static void take_f32(wts_loader *L, float **out, int nd, const int64_t *d, const char *name) {
    float *p = (float *)reserve(L, elems(nd, d), sizeof(float));
    *out = p;
    if (!p) return;
    L->st = st_read_f32(L->f, name, d, nd, p, L->err);
    release(L->f, name);
}

void wts_take(wts_loader *L, float **out, int nd, const int64_t *d, const char *fmt, ...) {
    if (L->st != SIM_OK) return;
    char name[256];
    va_list ap;
    va_start(ap, fmt);
    full_name(L, name, sizeof name, fmt, ap);
    va_end(ap);
    take_f32(L, out, nd, d, name);
}

// The 16-bit type a matrix is kept in (TT_F16, TT_BF16), or TT_F32.
static tt_type kept_type(const st_file *f, const char *name) {
    const st_tensor *t = st_find(f, name);
    return !t ? TT_F32 : t->dtype == ST_F16 ? TT_F16 : t->dtype == ST_BF16 ? TT_BF16 : TT_F32;
}

// Reads a 16-bit tensor of type tt as it is (or through st_read_f32 and
// the patch hook, then back to tt) into dst.
static sim_status read_16(wts_loader *L, const char *name, int nd, const int64_t *d, tt_type tt, void *dst) {
    const st_file *f = L->f;
    const st_tensor *t = st_find(f, name);
    size_t n = elems(nd, d);
    bool same = t->n_dims == nd;
    for (int i = 0; same && i < nd; i++) same = d[i] == t->shape[i];
    if (!f->patch && same) {
        memcpy(dst, t->data, n * 2);
        return SIM_OK;
    }
    float *tmp = mem_alloc(n * sizeof *tmp);
    if (!tmp) return err_set(L->err, SIM_ERR_NOMEM, "%s: out of memory reading '%s'", f->path, name);
    sim_status st = st_read_f32(f, name, d, nd, tmp, L->err); // checks the shape; calls the hook
    if (st == SIM_OK && tt == TT_F16) kern_get(KERN_BEST)->f32_to_f16(tmp, dst, (int64_t)n);
    else if (st == SIM_OK)
        for (size_t i = 0; i < n; i++) ((tt_bf16 *)dst)[i] = tt_float_to_bf16(tmp[i]);
    mem_free(tmp);
    return st;
}

void wts_take_stack(wts_loader *L, op_mat *out, int n, int nd, const int64_t *d, const char *const *names) {
    if (L->st != SIM_OK) return;
    char name[256];
    tt_type tt = TT_F32;
    for (int i = 0; i < n; i++) {
        snprintf(name, sizeof name, "%s%s", L->prefix, names[i]);
        tt_type ti = kept_type(L->f, name);
        tt = i == 0 || ti == tt ? ti : TT_F32;
    }
    size_t each = elems(nd, d), es = tt == TT_F32 ? 4 : 2;
    char *p = reserve(L, (size_t)n * each, es);
    *out = (op_mat){tt, p};
    for (int i = 0; p && i < n && L->st == SIM_OK; i++) {
        snprintf(name, sizeof name, "%s%s", L->prefix, names[i]);
        char *dst = p + (size_t)i * each * es;
        L->st = tt == TT_F32 ? st_read_f32(L->f, name, d, nd, (float *)dst, L->err) : read_16(L, name, nd, d, tt, dst);
        release(L->f, name);
    }
}

void wts_take_mat(wts_loader *L, op_mat *out, int nd, const int64_t *d, const char *fmt, ...) {
    if (L->st != SIM_OK) return;
    char name[256];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(name, sizeof name, fmt, ap);
    va_end(ap);
    const char *names[1] = {name};
    wts_take_stack(L, out, 1, nd, d, names);
}

sim_status wts_load(const st_file *f, const char *prefix, void (*bind)(wts_loader *L, void *ud), void *ud, void **arena,
                    sim_err *err) {
    wts_loader L = {.f = f, .counting = true, .err = err};
    snprintf(L.prefix, sizeof L.prefix, "%s", prefix);
    bind(&L, ud);
    if (L.st == SIM_OK) {
        L.arena = mem_alloc(L.count ? L.count : 1);
        if (!L.arena) L.st = err_set(err, SIM_ERR_NOMEM, "%s: out of memory for %zu bytes of weights", f->path, L.count);
    }
    if (L.st == SIM_OK) {
        L.end = L.arena + L.count;
        L.count = 0;
        L.counting = false;
        bind(&L, ud);
    }
    if (L.st != SIM_OK) {
        mem_free(L.arena);
        return L.st;
    }
    *arena = L.arena;
    return SIM_OK;
}
