// strbuf.h — a growing NUL-terminated string for building text (prompts,
// grammars, JSON fragments) without checking every append.
//
//     sbuf b = {0};
//     sb_str(&b, "root ::= ");
//     sb_printf(&b, "\"%d\"", 42);
//     char *text = sb_take(&b);          // NULL when memory ran out at any point
//     ...
//     mem_free(text);
//
// Ownership: the buffer owns b.s until sb_take hands it over (or sb_free
// releases it). Errors: the first failed allocation sets b.oom; every later
// append is ignored, and sb_take returns NULL (and frees what was built).
#ifndef SIM_STRBUF_H
#define SIM_STRBUF_H

#include "base/base.h"

typedef struct sbuf {
    char *s;        // NUL-terminated once anything was appended (NULL before)
    size_t n, cap;
    bool oom;
} sbuf;

void sb_put(sbuf *b, const char *s, size_t n);
void sb_str(sbuf *b, const char *s);
void sb_printf(sbuf *b, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
// The text (an empty string when nothing was appended), or NULL after an
// allocation failure; the buffer is left empty either way.
char *sb_take(sbuf *b);
void sb_free(sbuf *b);

#endif
