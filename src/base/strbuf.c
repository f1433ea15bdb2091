// strbuf.c — a growing string (see strbuf.h).
#include "base/strbuf.h"

#include <stdarg.h>
#include <stdio.h>
#include <string.h>

void sb_put(sbuf *b, const char *s, size_t n) {
    if (b->oom) return;
    if (b->n + n + 1 > b->cap) {
        size_t nc = b->cap ? b->cap * 2 : 256;
        while (nc < b->n + n + 1) nc *= 2;
        char *q = mem_realloc(b->s, nc);
        if (!q) {
            b->oom = true;
            return;
        }
        b->s = q, b->cap = nc;
    }
    memcpy(b->s + b->n, s, n);
    b->n += n;
    b->s[b->n] = 0;
}

void sb_str(sbuf *b, const char *s) { sb_put(b, s, strlen(s)); }

void sb_printf(sbuf *b, const char *fmt, ...) {
    char tmp[512];
    va_list ap;
    va_start(ap, fmt);
    int n = vsnprintf(tmp, sizeof tmp, fmt, ap);
    va_end(ap);
    if (n < 0) return;
    if ((size_t)n < sizeof tmp) {
        sb_put(b, tmp, (size_t)n);
        return;
    }
    char *big = mem_alloc((size_t)n + 1);
    if (!big) {
        b->oom = true;
        return;
    }
    va_start(ap, fmt);
    vsnprintf(big, (size_t)n + 1, fmt, ap);
    va_end(ap);
    sb_put(b, big, (size_t)n);
    mem_free(big);
}

char *sb_take(sbuf *b) {
    if (!b->oom && !b->s) sb_put(b, "", 0);
    char *s = b->oom ? NULL : b->s;
    if (b->oom) mem_free(b->s);
    *b = (sbuf){0};
    return s;
}

void sb_free(sbuf *b) {
    mem_free(b->s);
    *b = (sbuf){0};
}
