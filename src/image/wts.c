// wts.c — two-pass weight binding into a float32 arena (see wts.h).
#include "image/wts.h"

#include "tensor/ops.h"

#include <stdarg.h>
#include <stdio.h>
#include <string.h>

void wts_begin(wts_loader *L, const st_file *f, const char *prefix, sim_err *err) {
    memset(L, 0, sizeof *L);
    L->f = f;
    snprintf(L->prefix, sizeof L->prefix, "%s", prefix);
    L->counting = true;
    L->err = err;
}

sim_status wts_alloc(wts_loader *L) {
    if (L->st != SIM_OK) return L->st;
    L->counting = false;
    L->arena = L->next = mem_alloc((L->count ? L->count : 1) * sizeof(float));
    if (!L->arena) L->st = err_set(L->err, SIM_ERR_NOMEM, "%s: out of memory for %zu weights", L->f->path, L->count);
    return L->st;
}

float *wts_arena(wts_loader *L) {
    return L->st == SIM_OK ? L->arena : NULL;
}

void wts_abort(wts_loader *L) {
    mem_free(L->arena);
    L->arena = L->next = NULL;
}

void wts_take(wts_loader *L, float **out, int nd, const int64_t *d, const char *fmt, ...) {
    if (L->st != SIM_OK) return;
    size_t n = 1;
    for (int i = 0; i < nd; i++) n *= (size_t)d[i];
    if (L->counting) {
        L->count += n;
        *out = NULL;
        return;
    }
    char name[256];
    int k = snprintf(name, sizeof name, "%s", L->prefix);
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(name + k, sizeof name - (size_t)k, fmt, ap);
    va_end(ap);
    ASSERT(L->next + n <= L->arena + L->count); // pass 2 takes what pass 1 counted
    L->st = st_read_f32(L->f, name, d, nd, L->next, L->err);
    *out = L->next;
    L->next += n;
}

void wts_take_conv(wts_loader *L, float **out, int cout, int cin, int kh, int kw, const char *fmt, ...) {
    char name[256];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(name, sizeof name, fmt, ap);
    va_end(ap);
    wts_take(L, out, 4, (const int64_t[]){cout, cin, kh, kw}, "%s", name);
    if (L->counting || L->st != SIM_OK || (kh == 1 && kw == 1)) return; // 1×1: packing is the identity
    size_t n = (size_t)cout * cin * kh * kw;
    float *tmp = mem_alloc(n * sizeof *tmp);
    if (!tmp) {
        L->st = err_set(L->err, SIM_ERR_NOMEM, "%s: out of memory packing '%s'", L->f->path, name);
        return;
    }
    memcpy(tmp, *out, n * sizeof *tmp);
    op_conv p = {.cin = cin, .cout = cout, .kh = kh, .kw = kw};
    op_conv_pack(&p, tmp, *out);
    mem_free(tmp);
}

sim_status wts_load(const st_file *f, const char *prefix, void (*bind)(wts_loader *L, void *ud), void *ud, float **arena,
                    sim_err *err) {
    wts_loader L;
    wts_begin(&L, f, prefix, err);
    bind(&L, ud);
    if (wts_alloc(&L) == SIM_OK) bind(&L, ud);
    if (L.st != SIM_OK) {
        wts_abort(&L);
        return L.st;
    }
    *arena = wts_arena(&L);
    return SIM_OK;
}
