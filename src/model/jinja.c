// jinja.c — a Jinja2 interpreter for chat templates (see jinja.h).
//
// Three stages, each following jinja2 3.1 closely because the output must be
// byte-identical: the lexer turns the source into tokens (text runs carry
// flags so that trim_blocks/lstrip_blocks can be applied at render time), a
// recursive-descent parser with jinja2's grammar and precedence builds an AST
// in the template's arena, and a tree-walking interpreter renders it with
// Python's value semantics. Every value made while rendering lives in one
// per-render arena, so there is no reference counting and nothing to leak.
#include "model/jinja.h"

#include <errno.h>
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "base/utf8.h"

// --- arena -------------------------------------------------------------------------

typedef struct ar_chunk {
    struct ar_chunk *next;
    size_t cap, used;
    _Alignas(16) unsigned char data[];
} ar_chunk;

typedef struct jarena {
    ar_chunk *head;
    size_t total; // bytes held in chunks
    size_t limit; // 0: none
    bool over;    // the last failure was the limit, not the allocator
} jarena;

#define AR_CHUNK ((size_t)64 << 10)

static size_t ar_round(size_t n) { return n ? (n + 15) & ~(size_t)15 : 16; }

// NULL when the limit is reached (a->over set) or memory is out.
static void *ar_alloc(jarena *a, size_t n) {
    if (n > SIZE_MAX / 4) {
        a->over = true;
        return NULL;
    }
    n = ar_round(n);
    ar_chunk *c = a->head;
    if (c && c->cap - c->used >= n) {
        void *p = c->data + c->used;
        c->used += n;
        return p;
    }
    size_t cap = n > AR_CHUNK / 4 ? n : AR_CHUNK;
    if (a->limit) {
        size_t left = a->total < a->limit ? a->limit - a->total : 0;
        if (n > left) {
            a->over = true;
            return NULL;
        }
        if (cap > left) cap = left; // a last, smaller chunk
    }
    ar_chunk *nc = mem_alloc(sizeof *nc + cap);
    if (!nc) {
        a->over = false;
        return NULL;
    }
    nc->cap = cap;
    nc->used = n;
    a->total += cap;
    if (n > AR_CHUNK / 4 && c) { // a big block of its own: keep filling the current chunk
        nc->next = c->next;
        c->next = nc;
    } else {
        nc->next = c;
        a->head = nc;
    }
    return nc->data;
}

// Grows the block p of old bytes to n bytes (in place when it is the last one).
static void *ar_grow(jarena *a, void *p, size_t old, size_t n) {
    ar_chunk *c = a->head;
    if (p && c && (unsigned char *)p + ar_round(old) == c->data + c->used &&
        c->cap - (size_t)((unsigned char *)p - c->data) >= ar_round(n) && n <= SIZE_MAX / 4) {
        c->used = (size_t)((unsigned char *)p - c->data) + ar_round(n);
        return p;
    }
    void *q = ar_alloc(a, n);
    if (q && p && old) memcpy(q, p, old < n ? old : n);
    return q;
}

static void ar_free_all(jarena *a) {
    ar_chunk *c = a->head;
    while (c) {
        ar_chunk *next = c->next;
        mem_free(c);
        c = next;
    }
    a->head = NULL;
    a->total = 0;
}

// --- text helpers -----------------------------------------------------------------

typedef struct jstr {
    const char *s;
    size_t n;
} jstr;

static bool str_is(const char *s, size_t n, const char *lit) {
    size_t m = strlen(lit);
    return m == n && memcmp(s, lit, n) == 0;
}

// Decodes the code point at s[*i] and advances; a byte that does not start a
// valid sequence (never in validated text) counts as one code point.
static uint32_t u8_next(const char *s, size_t n, size_t *i) {
    uint32_t cp;
    int k = utf8_decode(s + *i, n - *i, &cp);
    if (k <= 0) {
        cp = (uint8_t)s[*i];
        k = 1;
    }
    *i += (size_t)k;
    return cp;
}

// Start of the code point that ends at s[i) (i > 0).
static size_t u8_prev(const char *s, size_t i) {
    size_t j = i - 1;
    while (j > 0 && ((uint8_t)s[j] & 0xC0) == 0x80 && i - j < 4) j--;
    return j;
}

static size_t u8_count(const char *s, size_t n) {
    size_t c = 0;
    for (size_t i = 0; i < n; i++) c += ((uint8_t)s[i] & 0xC0) != 0x80;
    return c;
}

// Python's str.isspace (also what \s matches in jinja2's lexer).
static bool py_isspace(uint32_t c) {
    return (c >= 9 && c <= 13) || (c >= 0x1c && c <= 0x20) || c == 0x85 || c == 0xa0 || c == 0x1680 ||
           (c >= 0x2000 && c <= 0x200a) || c == 0x2028 || c == 0x2029 || c == 0x202f || c == 0x205f ||
           c == 0x3000;
}

// Length of the whitespace run at s[0..n).
static size_t ws_span(const char *s, size_t n) {
    size_t i = 0;
    while (i < n) {
        size_t j = i;
        if (!py_isspace(u8_next(s, n, &j))) break;
        i = j;
    }
    return i;
}

// Length of s[0..n) without its trailing whitespace.
static size_t ws_rtrim(const char *s, size_t n) {
    while (n > 0) {
        size_t j = u8_prev(s, n), k = j;
        if (!py_isspace(u8_next(s, n, &k))) break;
        n = j;
    }
    return n;
}

// Simple (one to one) case mapping: Latin, Greek, Cyrillic, Armenian, full-width.
static uint32_t cp_upper(uint32_t c) {
    if (c < 0x80) return c >= 'a' && c <= 'z' ? c - 32 : c;
    if (c == 0xb5) return 0x39c;
    if ((c >= 0xe0 && c <= 0xfe && c != 0xf7)) return c - 32;
    if (c == 0xff) return 0x178;
    if ((c >= 0x100 && c <= 0x137) || (c >= 0x14a && c <= 0x177)) return c & ~1u;
    if ((c >= 0x139 && c <= 0x148) || (c >= 0x179 && c <= 0x17e)) return (c & 1) ? c : c - 1;
    if (c == 0x131) return 'I';
    if (c >= 0x1c4 && c <= 0x1cc) return c - (c - 0x1c4) % 3;
    if (c >= 0x1f1 && c <= 0x1f3) return 0x1f1;
    if ((c >= 0x1cd && c <= 0x1dc)) return (c & 1) ? c : c - 1;
    if ((c >= 0x1de && c <= 0x1ef) || (c >= 0x1f8 && c <= 0x21f) || (c >= 0x222 && c <= 0x233)) return c & ~1u;
    if (c == 0x17f) return 'S';
    if (c >= 0x3b1 && c <= 0x3c9) return c == 0x3c2 ? 0x3a3 : c - 32;
    if (c == 0x3ac) return 0x386;
    if (c >= 0x3ad && c <= 0x3af) return c - 37;
    if (c == 0x3cc) return 0x38c;
    if (c == 0x3cd || c == 0x3ce) return c - 63;
    if (c >= 0x430 && c <= 0x44f) return c - 32;
    if (c >= 0x450 && c <= 0x45f) return c - 80;
    if ((c >= 0x460 && c <= 0x481) || (c >= 0x48a && c <= 0x4bf) || (c >= 0x4d0 && c <= 0x52f)) return c & ~1u;
    if (c >= 0x561 && c <= 0x586) return c - 48;
    if ((c >= 0x1e00 && c <= 0x1e95) || (c >= 0x1ea0 && c <= 0x1eff)) return c & ~1u;
    if (c >= 0xff41 && c <= 0xff5a) return c - 32;
    return c;
}

static uint32_t cp_lower(uint32_t c) {
    if (c < 0x80) return c >= 'A' && c <= 'Z' ? c + 32 : c;
    if (c >= 0xc0 && c <= 0xde && c != 0xd7) return c + 32;
    if (c == 0x178) return 0xff;
    if (c >= 0x1c4 && c <= 0x1cc) return c - (c - 0x1c4) % 3 + 2;
    if (c >= 0x1f1 && c <= 0x1f3) return 0x1f3;
    if ((c >= 0x1cd && c <= 0x1dc)) return (c & 1) ? c + 1 : c;
    if ((c >= 0x1de && c <= 0x1ef) || (c >= 0x1f8 && c <= 0x21f) || (c >= 0x222 && c <= 0x233)) return c | 1u;
    if ((c >= 0x100 && c <= 0x137) || (c >= 0x14a && c <= 0x177)) return c | 1u;
    if ((c >= 0x139 && c <= 0x148) || (c >= 0x179 && c <= 0x17e)) return (c & 1) ? c + 1 : c;
    if (c >= 0x391 && c <= 0x3a9 && c != 0x3a2) return c + 32;
    if (c == 0x386) return 0x3ac;
    if (c >= 0x388 && c <= 0x38a) return c + 37;
    if (c == 0x38c) return 0x3cc;
    if (c == 0x38e || c == 0x38f) return c + 63;
    if (c >= 0x410 && c <= 0x42f) return c + 32;
    if (c >= 0x400 && c <= 0x40f) return c + 80;
    if ((c >= 0x460 && c <= 0x481) || (c >= 0x48a && c <= 0x4bf) || (c >= 0x4d0 && c <= 0x52f)) return c | 1u;
    if (c >= 0x531 && c <= 0x556) return c + 48;
    if ((c >= 0x1e00 && c <= 0x1e95) || (c >= 0x1ea0 && c <= 0x1eff)) return c | 1u;
    if (c >= 0xff21 && c <= 0xff3a) return c + 32;
    return c;
}

static bool cp_is_upper(uint32_t c) { return cp_lower(c) != c; }
static bool cp_is_lower(uint32_t c) { return cp_upper(c) != c || c == 0xdf; }
static bool cp_is_cased(uint32_t c) { return cp_is_upper(c) || cp_is_lower(c); }
static bool cp_is_digit(uint32_t c) { return c >= '0' && c <= '9'; }
// Letters: ASCII, cased letters, and (roughly) the scripts without case.
static bool cp_is_alpha(uint32_t c) {
    if (c < 0x80) return (c | 32) >= 'a' && (c | 32) <= 'z';
    if (cp_is_cased(c) || c == 0xaa || c == 0xba) return true;
    return c >= 0x370 && !py_isspace(c) && !(c >= 0x2000 && c <= 0x2bff) && !(c >= 0x3000 && c <= 0x303f) &&
           !(c >= 0xff00 && c <= 0xff20) && !(c >= 0xfe30 && c <= 0xfe4f) && !(c >= 0x1f000 && c <= 0x1faff);
}

// --- values -----------------------------------------------------------------------

enum { V_UNDEF, V_NONE, V_BOOL, V_INT, V_FLOAT, V_STR, V_LIST, V_DICT, V_NS, V_FUNC, V_LOOP };
enum { UH_NONE, UH_NAME, UH_ATTR, UH_ITEM, UH_UNSAFE, UH_PARAM, UH_NOCALLER }; // where an undefined value came from

typedef struct jlist jlist;
typedef struct jdict jdict;
typedef struct jfunc jfunc;
typedef struct jloop jloop;
typedef struct jnode jnode;
typedef struct jscope jscope;

typedef struct jv {
    uint8_t k;     // V_*
    uint8_t sub;   // V_LIST: which Python type (SUB_*)
    uint8_t uh;    // V_UNDEF: UH_*
    uint8_t ut;    // V_UNDEF: the kind | sub << 4 of the object it came from
    size_t n;      // V_STR and the V_UNDEF hint: bytes
    union {
        bool b;
        int64_t i;
        double f;
        const char *s;
        jlist *l;
        jdict *d;
        jfunc *fn;
        jloop *lp;
    } u;
} jv;

// Python sequences that are not lists: tuples, the generators jinja2's
// filters return (always true, no len(), not subscriptable, consumed by
// iterating), reversed iterators, dict views and ranges (they print as such).
enum { SUB_LIST, SUB_TUPLE, SUB_GEN, SUB_REV, SUB_ITEMS, SUB_KEYS, SUB_VALUES, SUB_RANGE };
#define IS_ITER(v) ((v).k == V_LIST && ((v).sub == SUB_GEN || (v).sub == SUB_REV))
#define IS_PLAIN(v) ((v).k == V_LIST && (v).sub <= SUB_TUPLE)

struct jlist {
    jv *v;
    size_t n;
    size_t cur;           // SUB_GEN, SUB_REV: items before cur are consumed
    const char *broken;   // SUB_GEN: the error iterating it raises (its input was not iterable)
    int64_t r0, r1, rs;   // SUB_RANGE: start, stop, step (for printing)
};

// An insertion-ordered dict (also a namespace's attributes); an open-addressing
// index over the entries once there are more than DICT_LINEAR of them.
struct jdict {
    jv *key, *val;
    size_t n, cap;
    uint32_t *idx; // entry + 1, 0 = empty
    size_t icap;   // power of two
};
#define DICT_LINEAR 8

enum { F_GLOBAL, F_METHOD, F_MACRO, F_CALLER, F_UNSAFE };

struct jfunc {
    uint8_t kind; // F_*
    uint8_t id;   // F_GLOBAL, F_METHOD: which
    jv self;      // F_METHOD: the object
    const jnode *node;
    jscope *closure; // F_MACRO, F_CALLER: the scope it was defined in
    jstr name;       // for messages
};

struct jloop {
    const jlist *items;
    size_t i;
    int depth; // always 1: only recursive loops (not supported) go deeper
    bool changed_set;
    jv changed_last;
};

static jv v_undef(void) { return (jv){.k = V_UNDEF}; }
static jv v_none(void) { return (jv){.k = V_NONE}; }
static jv v_bool(bool b) { return (jv){.k = V_BOOL, .u.b = b}; }
static jv v_int(int64_t i) { return (jv){.k = V_INT, .u.i = i}; }
static jv v_float(double f) { return (jv){.k = V_FLOAT, .u.f = f}; }
static jv v_str(const char *s, size_t n) { return (jv){.k = V_STR, .n = n, .u.s = s}; }
static jv v_lit(const char *s) { return v_str(s, strlen(s)); }
static jv v_undef_name(const char *s, size_t n) { return (jv){.k = V_UNDEF, .uh = UH_NAME, .n = n, .u.s = s}; }
static jv v_undef_attr(jv obj, const char *s, size_t n) {
    return (jv){.k = V_UNDEF, .uh = UH_ATTR, .ut = (uint8_t)(obj.k | obj.sub << 4), .n = n, .u.s = s};
}

static const char *kind_name(int k, int sub) {
    static const char *const subs[] = {"list", "tuple", "generator", "list_reverseiterator", "dict_items",
                                       "dict_keys", "dict_values", "range"};
    switch (k) {
    case V_UNDEF: return "Undefined";
    case V_NONE: return "NoneType";
    case V_BOOL: return "bool";
    case V_INT: return "int";
    case V_FLOAT: return "float";
    case V_STR: return "str";
    case V_LIST: return subs[sub & 7];
    case V_DICT: return "dict";
    case V_NS: return "Namespace";
    case V_FUNC: return "function";
    default: return "LoopContext";
    }
}
static const char *tname(jv v) { return kind_name(v.k, v.sub); }

static bool is_intlike(jv v) { return v.k == V_INT || v.k == V_BOOL; }
static bool is_num(jv v) { return v.k == V_INT || v.k == V_BOOL || v.k == V_FLOAT; }
static int64_t as_int(jv v) { return v.k == V_BOOL ? (int64_t)v.u.b : v.u.i; }
static double as_f(jv v) { return v.k == V_FLOAT ? v.u.f : (double)as_int(v); }

static bool truthy(jv v) {
    switch (v.k) {
    case V_UNDEF:
    case V_NONE: return false;
    case V_BOOL: return v.u.b;
    case V_INT: return v.u.i != 0;
    case V_FLOAT: return v.u.f != 0;
    case V_STR: return v.n > 0;
    case V_LIST: return IS_ITER(v) || v.u.l->n > 0;
    case V_DICT: return v.u.d->n > 0;
    default: return true;
    }
}

// --- render state and errors ---------------------------------------------------------

typedef struct sink {
    char *p;
    size_t n, cap;
} sink;

struct jinja_template {
    jarena a;
    char *src; // the normalized source (\n newlines, no trailing newline)
    size_t len;
    jnode *root;
};

typedef struct R {
    const jinja_template *t;
    jarena a;
    sim_err *err;
    const json_t *ctx;
    jscope *ctxs;  // context values converted so far (parent of the template's scope)
    sink *out;     // where output goes now
    uint64_t steps, max_steps;
    size_t max_out;
    int depth;
    uint32_t pos;   // source offset of what is being evaluated (for error lines)
    bool trim, lstrip;
    struct tm now;
    jv captured;    // the body text a filter block or block set is filtering
    bool fold;      // folding constants at parse time: variables and calls are impossible (see fold)
} R;

enum { CTL_BREAK = 1, CTL_CONTINUE = 2, FOLD_IMPOSSIBLE = 3 }; // results besides SIM_OK and errors

static int line_of(const jinja_template *t, uint32_t pos) {
    int line = 1;
    for (uint32_t i = 0; i < pos && i < t->len; i++) line += t->src[i] == '\n';
    return line;
}

static int rerr(R *r, sim_status code, const char *fmt, ...) __attribute__((format(printf, 3, 4)));
static int rerr(R *r, sim_status code, const char *fmt, ...) {
    if (r->fold) return code; // folding constants: the expression is left to render time
    char msg[400];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    err_set(r->err, code, "line %d: %s", line_of(r->t, r->pos), msg);
    return code;
}

static int r_nomem(R *r) {
    if (r->a.over) return rerr(r, SIM_ERR_RANGE, "the template needs more than %zu bytes of memory", r->a.limit);
    return rerr(r, SIM_ERR_NOMEM, "out of memory");
}

static int type_err(R *r, const char *what, jv a, jv b) {
    return rerr(r, SIM_ERR_FORMAT, "unsupported operand type(s) for %s: '%s' and '%s'", what, tname(a), tname(b));
}

// The message jinja2's Undefined gives when it is used.
static int undef_err(R *r, jv u) {
    int n = (int)MIN(u.n, 120);
    switch (u.uh) {
    case UH_NAME: return rerr(r, SIM_ERR_FORMAT, "'%.*s' is undefined", n, u.u.s);
    case UH_ATTR:
        if ((u.ut & 15) == V_NONE) return rerr(r, SIM_ERR_FORMAT, "'None' has no attribute '%.*s'", n, u.u.s);
        return rerr(r, SIM_ERR_FORMAT, "'%s object' has no attribute '%.*s'", kind_name(u.ut & 15, u.ut >> 4), n,
                    u.u.s);
    case UH_ITEM:
        return rerr(r, SIM_ERR_FORMAT, "%s object has no element %.*s", kind_name(u.ut & 15, u.ut >> 4), n, u.u.s);
    case UH_PARAM: return rerr(r, SIM_ERR_FORMAT, "parameter '%.*s' was not provided", n, u.u.s);
    case UH_NOCALLER: return rerr(r, SIM_ERR_FORMAT, "No caller defined");
    case UH_UNSAFE:
        return rerr(r, SIM_ERR_FORMAT, "access to attribute '%.*s' of '%s' object is unsafe.", n, u.u.s,
                    kind_name(u.ut & 15, u.ut >> 4));
    default: return rerr(r, SIM_ERR_FORMAT, "a value is undefined");
    }
}

static int step(R *r, uint64_t n) {
    r->steps += n;
    if (r->steps > r->max_steps)
        return rerr(r, SIM_ERR_RANGE, "the template runs too long (more than %llu steps)",
                    (unsigned long long)r->max_steps);
    return SIM_OK;
}

#define TRY(x)                                                                          \
    do {                                                                                \
        int st_ = (x);                                                                  \
        if (st_ != SIM_OK) return st_;                                                  \
    } while (0)

static void *ralloc(R *r, size_t n) { return ar_alloc(&r->a, n); }

// --- sinks (growing output buffers in the arena) -------------------------------------

static int sk_put(R *r, sink *s, const char *p, size_t n) {
    if (n > r->max_out || s->n > r->max_out - n)
        return rerr(r, SIM_ERR_RANGE, "the output is longer than %zu bytes", r->max_out);
    if (s->n + n > s->cap) {
        size_t cap = s->cap ? s->cap : 64;
        while (cap < s->n + n) cap = cap > SIZE_MAX / 2 ? s->n + n : cap * 2;
        char *q = ar_grow(&r->a, s->p, s->cap, cap);
        if (!q) return r_nomem(r);
        s->p = q;
        s->cap = cap;
    }
    if (n) memcpy(s->p + s->n, p, n);
    s->n += n;
    return SIM_OK;
}
static int sk_puts(R *r, sink *s, const char *p) { return sk_put(r, s, p, strlen(p)); }
static int sk_putc(R *r, sink *s, char c) { return sk_put(r, s, &c, 1); }
static int sk_cp(R *r, sink *s, uint32_t cp) {
    char b[4];
    int k = utf8_encode(cp, b);
    return sk_put(r, s, b, (size_t)(k > 0 ? k : 0));
}
static int sk_printf(R *r, sink *s, const char *fmt, ...) __attribute__((format(printf, 3, 4)));
static int sk_printf(R *r, sink *s, const char *fmt, ...) {
    char b[64];
    va_list ap;
    va_start(ap, fmt);
    int k = vsnprintf(b, sizeof b, fmt, ap);
    va_end(ap);
    return sk_put(r, s, b, (size_t)(k < 0 ? 0 : MIN((size_t)k, sizeof b - 1)));
}
static jv sk_value(sink *s) { return v_str(s->p ? s->p : "", s->n); }

// --- tokens ------------------------------------------------------------------------

enum { T_EOF, T_TEXT, T_VAR_BEGIN, T_VAR_END, T_BLOCK_BEGIN, T_BLOCK_END, T_NAME, T_STRING, T_INT, T_FLOAT, T_OP };
enum {
    OP_NONE, OP_ADD, OP_SUB, OP_MUL, OP_DIV, OP_FLOORDIV, OP_MOD, OP_POW, OP_TILDE, OP_LBRACKET, OP_RBRACKET,
    OP_LPAREN, OP_RPAREN, OP_LBRACE, OP_RBRACE, OP_EQ, OP_NE, OP_GT, OP_GE, OP_LT, OP_LE, OP_ASSIGN, OP_DOT,
    OP_COLON, OP_PIPE, OP_COMMA, OP_SEMICOLON, OP_IN, OP_NOTIN
};
static const char *const op_text[] = {"",  "+", "-",  "*",  "/",  "//", "%",  "**", "~", "[",  "]",
                                      "(", ")", "{",  "}",  "==", "!=", ">",  ">=", "<", "<=", "=",
                                      ".", ":", "|",  ",",  ";",  "in", "not in"};

// Flags of a text run: what the tags around it allow at render time.
enum {
    TX_TRIM = 1,      // after a block/comment tag: trim_blocks drops a leading newline
    TX_LINESTART = 2, // starts a line (template start, or a `-` tag ate whitespace ending in \n)
    TX_LSTRIP = 4,    // before a block/comment tag: lstrip_blocks may drop the last line's blanks
    TX_TAILWS = 8,    // the text after the last newline is non-empty whitespace
};

typedef struct tok {
    uint8_t k, op, fl;
    uint32_t pos; // byte offset in the source
    const char *s;
    size_t n;
    union {
        int64_t i;
        double f;
    } u;
} tok;

typedef struct P {
    jinja_template *t;
    sim_err *err;
    tok *tk;
    size_t nt, cap;
    size_t i;  // parser position
    int nest;  // current nesting (blocks, brackets, unary chains)
    int loops; // enclosing for loops (break/continue are allowed)
    sim_status st; // the first error
} P;

static int perr(P *p, uint32_t pos, const char *fmt, ...) __attribute__((format(printf, 3, 4)));
static int perr(P *p, uint32_t pos, const char *fmt, ...) {
    const char *s = p->t->src;
    int line = 1;
    size_t ls = 0;
    for (size_t i = 0; i < pos && i < p->t->len; i++)
        if (s[i] == '\n') line++, ls = i + 1;
    size_t col = 1 + u8_count(s + ls, pos > ls ? pos - ls : 0);
    char msg[400];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    err_set(p->err, SIM_ERR_FORMAT, "line %d, column %zu: %s", line, col, msg);
    return p->st = SIM_ERR_FORMAT;
}

static int p_nomem(P *p) { return p->st = err_set(p->err, SIM_ERR_NOMEM, "out of memory parsing a template"); }

static tok *emit(P *p, int k, uint32_t pos) {
    if (p->nt == p->cap) {
        size_t cap = p->cap ? p->cap * 2 : 256;
        tok *t = mem_realloc(p->tk, cap * sizeof *t);
        if (!t) return NULL;
        p->tk = t;
        p->cap = cap;
    }
    tok *t = &p->tk[p->nt++];
    memset(t, 0, sizeof *t);
    t->k = (uint8_t)k;
    t->pos = pos;
    return t;
}

static bool starts(const char *s, size_t n, size_t i, const char *lit) {
    size_t m = strlen(lit);
    return i <= n && n - i >= m && memcmp(s + i, lit, m) == 0;
}

static int hexval(char c) {
    if (c >= '0' && c <= '9') return c - '0';
    if ((c | 32) >= 'a' && (c | 32) <= 'f') return (c | 32) - 'a' + 10;
    return -1;
}

// Decodes a string literal's body with Python's escapes into the arena.
static int unescape(P *p, const char *s, size_t n, uint32_t pos, tok *t) {
    char *o = ar_alloc(&p->t->a, n + 1);
    if (!o) return p_nomem(p);
    size_t k = 0;
    for (size_t i = 0; i < n; i++) {
        if (s[i] != '\\' || i + 1 >= n) {
            o[k++] = s[i];
            continue;
        }
        char e = s[++i];
        uint32_t cp;
        int digits = 0;
        switch (e) {
        case '\n': continue;
        case '\\': o[k++] = '\\'; continue;
        case '\'': o[k++] = '\''; continue;
        case '"': o[k++] = '"'; continue;
        case 'a': o[k++] = 7; continue;
        case 'b': o[k++] = 8; continue;
        case 'f': o[k++] = 12; continue;
        case 'n': o[k++] = '\n'; continue;
        case 'r': o[k++] = '\r'; continue;
        case 't': o[k++] = '\t'; continue;
        case 'v': o[k++] = 11; continue;
        case 'x': digits = 2; break;
        case 'u': digits = 4; break;
        case 'U': digits = 8; break;
        case 'N': return perr(p, pos, "\\N{...} escapes are not supported");
        default:
            if (e >= '0' && e <= '7') {
                cp = 0;
                int m = 0;
                while (m < 3 && i < n && s[i] >= '0' && s[i] <= '7') cp = cp * 8 + (uint32_t)(s[i++] - '0'), m++;
                i--;
                k += (size_t)utf8_encode(cp, o + k);
                continue;
            }
            o[k++] = '\\';
            o[k++] = e;
            continue;
        }
        cp = 0;
        for (int m = 0; m < digits; m++) {
            int h = i + 1 + (size_t)m < n ? hexval(s[i + 1 + m]) : -1;
            if (h < 0) return perr(p, pos, "truncated \\%c escape in a string", e);
            cp = cp * 16 + (uint32_t)h;
        }
        i += (size_t)digits;
        if (cp > 0x10FFFF || (cp >= 0xD800 && cp <= 0xDFFF))
            return perr(p, pos, "invalid code point U+%X in a string", (unsigned)cp);
        k += (size_t)utf8_encode(cp, o + k); // \xHH is at most 2 bytes, \u 3, \U 4: never longer than its escape
    }
    o[k] = 0;
    t->s = o;
    t->n = k;
    return SIM_OK;
}

// `\d(_?\d)*` style digit runs from i; returns the end (i when there is none).
static size_t digit_run(const char *s, size_t n, size_t i, int base) {
    size_t j = i;
    for (;;) {
        size_t k = j;
        if (k > i && k < n && s[k] == '_') k++;
        if (k >= n) break;
        int d = hexval(s[k]);
        if (d < 0 || d >= base) break;
        j = k + 1;
    }
    return j;
}

static int lex_number(P *p, size_t *pos) {
    const char *s = p->t->src;
    size_t n = p->t->len, i = *pos, e;
    char buf[80];
    bool is_float = false;
    int base = 10;
    size_t start = i;
    if (!(i > 0 && s[i - 1] == '.')) { // float: (?<!\.)\d+(\.\d+)?e[+-]?\d+ | \d+\.\d+
        size_t d = digit_run(s, n, i, 10);
        size_t f = d;
        bool frac = false, ex = false;
        if (f + 1 < n && s[f] == '.' && hexval(s[f + 1]) >= 0 && hexval(s[f + 1]) < 10) {
            f = digit_run(s, n, f + 1, 10);
            frac = true;
        }
        if (f < n && (s[f] | 32) == 'e') {
            size_t g = f + 1;
            if (g < n && (s[g] == '+' || s[g] == '-')) g++;
            size_t h = digit_run(s, n, g, 10);
            if (h > g) f = h, ex = true;
        }
        if (frac || ex) is_float = true, e = f;
    }
    if (!is_float) {
        if (s[i] == '0' && i + 2 < n && strchr("bBoOxX", s[i + 1]) && s[i + 1]) {
            base = (s[i + 1] | 32) == 'b' ? 2 : (s[i + 1] | 32) == 'o' ? 8 : 16;
            size_t j = i + 2;
            if (j < n && s[j] == '_') j++;
            e = digit_run(s, n, j, base);
            if (e == j) e = i + 1, base = 10; // just "0"
            else start = i + 2;
        } else if (s[i] == '0') {
            e = i + 1;
            while (e + 1 < n && ((s[e] == '_' && s[e + 1] == '0') || s[e] == '0')) e += s[e] == '_' ? 2 : 1;
        } else {
            e = digit_run(s, n, i, 10);
        }
    }
    size_t k = 0;
    for (size_t j = start; j < e && k + 1 < sizeof buf; j++)
        if (s[j] != '_') buf[k++] = s[j];
    buf[k] = 0;
    if (e - start >= sizeof buf) return perr(p, (uint32_t)i, "number literal too long");
    tok *t = emit(p, is_float ? T_FLOAT : T_INT, (uint32_t)i);
    if (!t) return p_nomem(p);
    errno = 0;
    if (is_float) {
        t->u.f = strtod(buf, NULL);
    } else {
        unsigned long long v = strtoull(buf, NULL, base);
        if (errno || v > INT64_MAX) return perr(p, (uint32_t)i, "integer literal too large");
        t->u.i = (int64_t)v;
    }
    *pos = e;
    return SIM_OK;
}

// Tokens inside {{ }} or {% %}, up to and including the end tag. *sign is the
// end tag's '-', '+' or 0.
static int lex_tag(P *p, size_t *pos, bool var, char *sign) {
    const char *s = p->t->src;
    size_t n = p->t->len, i = *pos;
    uint8_t stack[JINJA_MAX_NEST];
    int depth = 0;
    for (;;) {
        i += ws_span(s + i, n - i);
        if (i >= n) return perr(p, (uint32_t)i, "unexpected end of template: missing '%s'", var ? "}}" : "%}");
        if (depth == 0) {
            const char *end = var ? "}}" : "%}";
            char c = s[i];
            if ((c == '-' || (c == '+' && !var)) && starts(s, n, i + 1, end)) {
                *sign = c;
                i += 3;
                break;
            }
            if (starts(s, n, i, end)) {
                *sign = 0;
                i += 2;
                break;
            }
        }
        char c = s[i];
        if (c >= '0' && c <= '9') {
            TRY(lex_number(p, &i));
            continue;
        }
        if (c == '_' || ((c | 32) >= 'a' && (c | 32) <= 'z')) {
            size_t j = i + 1;
            while (j < n && (s[j] == '_' || ((s[j] | 32) >= 'a' && (s[j] | 32) <= 'z') || (s[j] >= '0' && s[j] <= '9')))
                j++;
            tok *t = emit(p, T_NAME, (uint32_t)i);
            if (!t) return p_nomem(p);
            t->s = s + i;
            t->n = j - i;
            i = j;
            continue;
        }
        if (c == '\'' || c == '"') {
            size_t j = i + 1;
            while (j < n && s[j] != c) j += s[j] == '\\' ? 2 : 1;
            if (j >= n) return perr(p, (uint32_t)i, "unterminated string");
            tok *t = emit(p, T_STRING, (uint32_t)i);
            if (!t) return p_nomem(p);
            TRY(unescape(p, s + i + 1, j - i - 1, (uint32_t)i, t));
            i = j + 1;
            continue;
        }
        int op = OP_NONE;
        static const struct {
            const char *t;
            int op;
        } ops[] = {{"//", OP_FLOORDIV}, {"**", OP_POW}, {"==", OP_EQ}, {"!=", OP_NE}, {">=", OP_GE},
                   {"<=", OP_LE},       {"+", OP_ADD},  {"-", OP_SUB}, {"*", OP_MUL}, {"/", OP_DIV},
                   {"%", OP_MOD},       {"~", OP_TILDE}, {"[", OP_LBRACKET}, {"]", OP_RBRACKET},
                   {"(", OP_LPAREN},    {")", OP_RPAREN}, {"{", OP_LBRACE}, {"}", OP_RBRACE},
                   {">", OP_GT},        {"<", OP_LT},   {"=", OP_ASSIGN}, {".", OP_DOT}, {":", OP_COLON},
                   {"|", OP_PIPE},      {",", OP_COMMA}, {";", OP_SEMICOLON}};
        size_t len = 0;
        for (size_t k = 0; k < ARRAY_LEN(ops); k++)
            if (starts(s, n, i, ops[k].t)) {
                op = ops[k].op;
                len = strlen(ops[k].t);
                break;
            }
        if (op == OP_NONE) {
            size_t j = i;
            uint32_t cp = u8_next(s, n, &j);
            if (cp < 0x80) return perr(p, (uint32_t)i, "unexpected char '%c'", (char)cp);
            return perr(p, (uint32_t)i, "unexpected char U+%04X", (unsigned)cp);
        }
        if (op == OP_LBRACKET || op == OP_LPAREN || op == OP_LBRACE) {
            if (depth == JINJA_MAX_NEST) return perr(p, (uint32_t)i, "brackets nested too deeply");
            stack[depth++] = (uint8_t)op;
        } else if (op == OP_RBRACKET || op == OP_RPAREN || op == OP_RBRACE) {
            int want = op == OP_RBRACKET ? OP_LBRACKET : op == OP_RPAREN ? OP_LPAREN : OP_LBRACE;
            if (depth == 0) return perr(p, (uint32_t)i, "unexpected '%s'", op_text[op]);
            if (stack[depth - 1] != want)
                return perr(p, (uint32_t)i, "unexpected '%s', expected '%s'", op_text[op], op_text[stack[depth - 1] + 1]);
            depth--;
        }
        tok *t = emit(p, T_OP, (uint32_t)i);
        if (!t) return p_nomem(p);
        t->op = (uint8_t)op;
        i += len;
    }
    *pos = i;
    return SIM_OK;
}

static int emit_text(P *p, size_t pos, size_t n, uint8_t fl) {
    if (n == 0) return SIM_OK;
    tok *t = emit(p, T_TEXT, (uint32_t)pos);
    if (!t) return p_nomem(p);
    t->s = p->t->src + pos;
    t->n = n;
    size_t x1 = 0;
    for (size_t i = n; i > 0; i--)
        if (t->s[i - 1] == '\n') {
            x1 = i;
            break;
        }
    if (x1 < n && ws_span(t->s + x1, n - x1) == n - x1) fl |= TX_TAILWS;
    t->fl = fl;
    t->u.i = (int64_t)x1;
    return SIM_OK;
}

// Flags for the text after a tag that ended with `sign` at s[*pos] (a `-`
// eats the whitespace that follows).
static uint8_t after_tag(P *p, size_t *pos, char sign, bool block) {
    const char *s = p->t->src;
    if (sign == '-') {
        size_t w = ws_span(s + *pos, p->t->len - *pos);
        *pos += w;
        return w > 0 && s[*pos - 1] == '\n' ? TX_LINESTART : 0;
    }
    return sign == 0 && block ? TX_TRIM : 0;
}

static int lex(P *p) {
    const char *s = p->t->src;
    size_t n = p->t->len, pos = 0;
    uint8_t left = TX_LINESTART;
    for (;;) {
        size_t q = pos;
        while (q + 1 < n && !(s[q] == '{' && (s[q + 1] == '{' || s[q + 1] == '%' || s[q + 1] == '#'))) q++;
        if (q + 1 >= n) {
            TRY(emit_text(p, pos, n - pos, left));
            break;
        }
        char kind = s[q + 1], sign = 0;
        size_t a = q + 2;
        if (a < n && (s[a] == '-' || s[a] == '+')) sign = s[a++];
        // {% raw %} (jinja2 tries it before the other tags)
        size_t raw_after = 0;
        char raw_sign = 0;
        if (kind == '%') {
            size_t b = a + ws_span(s + a, n - a);
            if (starts(s, n, b, "raw")) {
                b += 3;
                b += ws_span(s + b, n - b);
                if (starts(s, n, b, "-%}")) raw_after = b + 3, raw_sign = '-';
                else if (starts(s, n, b, "%}")) raw_after = b + 2;
            }
        }
        size_t tn = q - pos;
        uint8_t fl = left;
        if (sign == '-') tn = ws_rtrim(s + pos, tn);
        else if (sign != '+' && kind != '{') fl |= TX_LSTRIP;
        TRY(emit_text(p, pos, tn, fl));
        if (raw_after) {
            size_t c = raw_after;
            uint8_t cl = after_tag(p, &c, raw_sign, false);
            size_t e = c, end_at = 0;
            char esign = 0, tsign = 0;
            for (;; e++) {
                while (e + 1 < n && !(s[e] == '{' && s[e + 1] == '%')) e++;
                if (e + 1 >= n) return perr(p, (uint32_t)q, "missing end of raw directive");
                size_t f = e + 2;
                char sg = 0;
                if (f < n && (s[f] == '-' || s[f] == '+')) sg = s[f++];
                f += ws_span(s + f, n - f);
                if (!starts(s, n, f, "endraw")) continue;
                f += 6;
                f += ws_span(s + f, n - f);
                if (starts(s, n, f, "-%}") || starts(s, n, f, "+%}")) tsign = s[f], end_at = f + 3;
                else if (starts(s, n, f, "%}")) end_at = f + 2;
                else continue;
                esign = sg;
                break;
            }
            size_t cn = e - c;
            if (esign == '-') cn = ws_rtrim(s + c, cn);
            else if (esign != '+') cl |= TX_LSTRIP;
            TRY(emit_text(p, c, cn, cl));
            pos = end_at;
            left = after_tag(p, &pos, tsign, true);
            continue;
        }
        if (kind == '#') {
            size_t e = a;
            while (e + 1 < n && !(s[e] == '#' && s[e + 1] == '}')) e++;
            if (e + 1 >= n) return perr(p, (uint32_t)q, "missing end of comment tag");
            char esign = e > a && (s[e - 1] == '-' || s[e - 1] == '+') ? s[e - 1] : 0;
            pos = e + 2;
            left = after_tag(p, &pos, esign, true);
            continue;
        }
        if (!emit(p, kind == '{' ? T_VAR_BEGIN : T_BLOCK_BEGIN, (uint32_t)q)) return p_nomem(p);
        pos = a;
        char esign = 0;
        TRY(lex_tag(p, &pos, kind == '{', &esign));
        if (!emit(p, kind == '{' ? T_VAR_END : T_BLOCK_END, (uint32_t)(pos - (esign ? 3 : 2)))) return p_nomem(p);
        left = after_tag(p, &pos, esign, kind == '%');
    }
    if (!emit(p, T_EOF, (uint32_t)n)) return p_nomem(p);
    return SIM_OK;
}

// --- AST ---------------------------------------------------------------------------

enum {
    // expressions
    E_CONST, E_NAME, E_LIST, E_TUPLE, E_DICT, E_ATTR, E_ITEM, E_SLICE, E_CALL, E_FILTER, E_TEST, E_NOT, E_NEG,
    E_POS, E_BIN, E_AND, E_OR, E_CONCAT, E_CMP, E_OPERAND, E_COND, E_KW, E_CAPTURED,
    // statements
    S_BODY, S_TEXT, S_OUT, S_IF, S_FOR, S_SET, S_SETBLOCK, S_MACRO, S_CALLBLOCK, S_FILTERBLOCK, S_BREAK,
    S_CONTINUE, S_WITH
};

typedef struct nlist {
    jnode **v;
    uint32_t n;
} nlist;

// One node shape for everything; what a, b, c, l1, l2 hold per kind:
//   E_ATTR a.name   E_ITEM a[b]   E_SLICE [a:b:c]   E_BIN a op b   E_COND a if b else c
//   E_CALL a(l1, l2=E_KW)   E_FILTER a|name(l1, l2)   E_TEST a is [op=not] name(l1, l2)
//   E_CMP a (l1 = E_OPERAND op a)...   E_LIST/E_TUPLE/E_CONCAT l1   E_DICT l1: l2
//   S_IF if a: l1 else l2   S_FOR for a in b if c: l1 else l2   S_SET a = b
//   S_SETBLOCK a = l1 | c   S_MACRO name(l2 = E_NAME with default a): l1
//   S_CALLBLOCK call(l2) a: l1   S_FILTERBLOCK l1 | c   S_WITH l2 = S_SET...: l1
//   S_TEXT name = the text, op = TX_* flags, x1 = offset after its last newline
struct jnode {
    uint8_t kind, op;
    bool negbase; // E_BIN **: the base is a folded negative constant (see fold)
    bool elif;    // S_IF: an elif (in its parent's l2)
    jstr *undef;  // frames (the root, S_FOR's body, macros, blocks): names that start out undefined
    uint32_t nundef, nundef2;
    jstr *undef2; // S_FOR's else block
    uint32_t pos;
    jnode *a, *b, *c;
    nlist l1, l2;
    jstr name;
    jv val;
    size_t x1;
};

typedef struct nvec {
    jnode **v;
    uint32_t n, cap;
} nvec;

static jnode *nnew(P *p, int kind, uint32_t pos) {
    jnode *x = ar_alloc(&p->t->a, sizeof *x);
    if (!x) {
        p_nomem(p);
        return NULL;
    }
    memset(x, 0, sizeof *x);
    x->kind = (uint8_t)kind;
    x->pos = pos;
    return x;
}

static bool nv_push(P *p, nvec *v, jnode *x) {
    if (v->n == v->cap) {
        uint32_t cap = v->cap ? v->cap * 2 : 4;
        jnode **q = ar_grow(&p->t->a, v->v, v->cap * sizeof *q, cap * sizeof *q);
        if (!q) {
            p_nomem(p);
            return false;
        }
        v->v = q;
        v->cap = cap;
    }
    v->v[v->n++] = x;
    return true;
}
static nlist nv_list(nvec *v) { return (nlist){v->v, v->n}; }

// --- parser ------------------------------------------------------------------------

static tok *cur(P *p) { return &p->tk[p->i]; }
static tok *peek(P *p, size_t k) { return &p->tk[p->i + k < p->nt ? p->i + k : p->nt - 1]; }
static void adv(P *p) {
    if (p->i + 1 < p->nt) p->i++;
}
static bool tok_op(const tok *t, int op) { return t->k == T_OP && t->op == op; }
static bool is_op(P *p, int op) { return tok_op(cur(p), op); }
static bool tok_name(const tok *t, const char *nm) { return t->k == T_NAME && str_is(t->s, t->n, nm); }
static bool is_name(P *p, const char *nm) { return tok_name(cur(p), nm); }

static void describe(const tok *t, char *buf, size_t cap) {
    switch (t->k) {
    case T_EOF: snprintf(buf, cap, "end of template"); break;
    case T_TEXT: snprintf(buf, cap, "template data"); break;
    case T_VAR_BEGIN: snprintf(buf, cap, "begin of print statement"); break;
    case T_VAR_END: snprintf(buf, cap, "end of print statement"); break;
    case T_BLOCK_BEGIN: snprintf(buf, cap, "begin of statement block"); break;
    case T_BLOCK_END: snprintf(buf, cap, "end of statement block"); break;
    case T_NAME: snprintf(buf, cap, "%.*s", (int)MIN(t->n, 60), t->s); break;
    case T_STRING: snprintf(buf, cap, "string"); break;
    case T_INT: snprintf(buf, cap, "integer"); break;
    case T_FLOAT: snprintf(buf, cap, "float"); break;
    default: snprintf(buf, cap, "%s", op_text[t->op]); break;
    }
}

static jnode *fail_unexpected(P *p) {
    char d[80];
    describe(cur(p), d, sizeof d);
    perr(p, cur(p)->pos, "unexpected '%s'", d);
    return NULL;
}

static bool expect_op(P *p, int op) {
    if (is_op(p, op)) {
        adv(p);
        return true;
    }
    char d[80];
    describe(cur(p), d, sizeof d);
    perr(p, cur(p)->pos, "expected '%s', got '%s'", op_text[op], d);
    return false;
}

static bool expect_kind(P *p, int k, const char *what) {
    if (cur(p)->k == k) {
        adv(p);
        return true;
    }
    char d[80];
    describe(cur(p), d, sizeof d);
    perr(p, cur(p)->pos, "expected %s, got '%s'", what, d);
    return false;
}

static bool nest_in(P *p) {
    if (++p->nest > JINJA_MAX_NEST) {
        perr(p, cur(p)->pos, "the template nests too deeply (more than %d levels)", JINJA_MAX_NEST);
        return false;
    }
    return true;
}

static jnode *parse_expression(P *p, bool with_condexpr);
static jnode *parse_tuple(P *p, bool simplified, bool with_condexpr, const char *extra_end, bool explicit_parens);
static jnode *parse_primary(P *p);
static jnode *parse_postfix(P *p, jnode *x);
static jnode *parse_filter(P *p, jnode *x, bool start_inline);
static bool parse_body(P *p, nlist *out, const char *const *ends, const char *block, uint32_t block_pos);

static bool parse_call_args(P *p, jnode *x) {
    uint32_t pos = cur(p)->pos;
    if (!expect_op(p, OP_LPAREN)) return false;
    nvec args = {0}, kws = {0};
    bool comma = false;
    while (!is_op(p, OP_RPAREN)) {
        if (comma) {
            if (!expect_op(p, OP_COMMA)) return false;
            if (is_op(p, OP_RPAREN)) break;
        }
        if (is_op(p, OP_MUL) || is_op(p, OP_POW)) {
            perr(p, cur(p)->pos, "*args and **kwargs in calls are not supported");
            return false;
        }
        if (cur(p)->k == T_NAME && tok_op(peek(p, 1), OP_ASSIGN)) {
            jnode *kw = nnew(p, E_KW, cur(p)->pos);
            if (!kw) return false;
            kw->name = (jstr){cur(p)->s, cur(p)->n};
            adv(p);
            adv(p);
            if (!(kw->a = parse_expression(p, true)) || !nv_push(p, &kws, kw)) return false;
        } else {
            if (kws.n) {
                perr(p, pos, "invalid syntax for function call expression");
                return false;
            }
            jnode *a = parse_expression(p, true);
            if (!a || !nv_push(p, &args, a)) return false;
        }
        comma = true;
    }
    if (!expect_op(p, OP_RPAREN)) return false;
    x->l1 = nv_list(&args);
    x->l2 = nv_list(&kws);
    return true;
}

// A dotted filter or test name (`a.b` is kept as written).
static bool parse_dotted(P *p, jstr *out) {
    tok *t = cur(p);
    if (!expect_kind(p, T_NAME, "a name")) return false;
    *out = (jstr){t->s, t->n};
    while (is_op(p, OP_DOT) && peek(p, 1)->k == T_NAME) {
        adv(p);
        out->n = (size_t)(cur(p)->s + cur(p)->n - out->s); // names and dots are contiguous in the source
        adv(p);
    }
    return true;
}

static jnode *parse_filter(P *p, jnode *x, bool start_inline) {
    while (is_op(p, OP_PIPE) || start_inline) {
        if (!start_inline) adv(p);
        start_inline = false;
        jnode *f = nnew(p, E_FILTER, cur(p)->pos);
        if (!f || !parse_dotted(p, &f->name)) return NULL;
        if (is_op(p, OP_LPAREN) && !parse_call_args(p, f)) return NULL;
        f->a = x;
        x = f;
    }
    return x;
}

static jnode *parse_test(P *p, jnode *x) {
    jnode *t = nnew(p, E_TEST, cur(p)->pos);
    if (!t) return NULL;
    adv(p); // is
    if (is_name(p, "not")) {
        t->op = 1;
        adv(p);
    }
    if (!parse_dotted(p, &t->name)) return NULL;
    t->a = x;
    tok *c = cur(p);
    if (is_op(p, OP_LPAREN)) {
        if (!parse_call_args(p, t)) return NULL;
    } else if ((c->k == T_NAME || c->k == T_STRING || c->k == T_INT || c->k == T_FLOAT || tok_op(c, OP_LBRACKET) ||
                tok_op(c, OP_LBRACE)) &&
               !tok_name(c, "else") && !tok_name(c, "or") && !tok_name(c, "and")) {
        if (tok_name(c, "is")) {
            perr(p, c->pos, "You cannot chain multiple tests with is");
            return NULL;
        }
        jnode *a = parse_primary(p);
        if (!a || !(a = parse_postfix(p, a))) return NULL;
        jnode **v = ar_alloc(&p->t->a, sizeof *v);
        if (!v) {
            p_nomem(p);
            return NULL;
        }
        v[0] = a;
        t->l1 = (nlist){v, 1};
    }
    return t;
}

static jnode *parse_filter_expr(P *p, jnode *x) {
    for (;;) {
        if (is_op(p, OP_PIPE)) x = parse_filter(p, x, false);
        else if (is_name(p, "is")) x = parse_test(p, x);
        else if (is_op(p, OP_LPAREN)) {
            jnode *c = nnew(p, E_CALL, cur(p)->pos);
            if (!c || !parse_call_args(p, c)) return NULL;
            c->a = x;
            x = c;
        } else return x;
        if (!x) return NULL;
    }
}

static jnode *parse_subscribed(P *p) {
    uint32_t pos = cur(p)->pos;
    jnode *args[3] = {0};
    if (is_op(p, OP_COLON)) {
        adv(p);
    } else {
        jnode *x = parse_expression(p, true);
        if (!x) return NULL;
        if (!is_op(p, OP_COLON)) return x;
        adv(p);
        args[0] = x;
    }
    if (!is_op(p, OP_COLON) && !is_op(p, OP_RBRACKET) && !is_op(p, OP_COMMA)) {
        if (!(args[1] = parse_expression(p, true))) return NULL;
    }
    if (is_op(p, OP_COLON)) {
        adv(p);
        if (!is_op(p, OP_RBRACKET) && !is_op(p, OP_COMMA) && !(args[2] = parse_expression(p, true))) return NULL;
    }
    jnode *s = nnew(p, E_SLICE, pos);
    if (!s) return NULL;
    s->a = args[0];
    s->b = args[1];
    s->c = args[2];
    return s;
}

static jnode *parse_postfix(P *p, jnode *x) {
    for (;;) {
        tok *t = cur(p);
        if (tok_op(t, OP_DOT)) {
            adv(p);
            tok *a = cur(p);
            if (a->k == T_NAME) {
                jnode *g = nnew(p, E_ATTR, t->pos);
                if (!g) return NULL;
                g->a = x;
                g->name = (jstr){a->s, a->n};
                adv(p);
                x = g;
            } else if (a->k == T_INT) {
                jnode *g = nnew(p, E_ITEM, t->pos), *k = nnew(p, E_CONST, a->pos);
                if (!g || !k) return NULL;
                k->val = v_int(a->u.i);
                g->a = x;
                g->b = k;
                adv(p);
                x = g;
            } else {
                perr(p, a->pos, "expected name or number");
                return NULL;
            }
        } else if (tok_op(t, OP_LBRACKET)) {
            adv(p);
            nvec args = {0};
            while (!is_op(p, OP_RBRACKET)) {
                if (args.n && !expect_op(p, OP_COMMA)) return NULL;
                jnode *s = parse_subscribed(p);
                if (!s || !nv_push(p, &args, s)) return NULL;
            }
            if (!expect_op(p, OP_RBRACKET)) return NULL;
            jnode *g = nnew(p, E_ITEM, t->pos);
            if (!g) return NULL;
            g->a = x;
            if (args.n == 1) {
                g->b = args.v[0];
            } else {
                jnode *tu = nnew(p, E_TUPLE, t->pos);
                if (!tu) return NULL;
                tu->l1 = nv_list(&args);
                g->b = tu;
            }
            x = g;
        } else if (tok_op(t, OP_LPAREN)) {
            jnode *c = nnew(p, E_CALL, t->pos);
            if (!c || !parse_call_args(p, c)) return NULL;
            c->a = x;
            x = c;
        } else {
            return x;
        }
    }
}

static jnode *parse_primary(P *p) {
    tok *t = cur(p);
    jnode *x;
    if (t->k == T_NAME) {
        x = nnew(p, E_CONST, t->pos);
        if (!x) return NULL;
        if (str_is(t->s, t->n, "true") || str_is(t->s, t->n, "True")) x->val = v_bool(true);
        else if (str_is(t->s, t->n, "false") || str_is(t->s, t->n, "False")) x->val = v_bool(false);
        else if (str_is(t->s, t->n, "none") || str_is(t->s, t->n, "None")) x->val = v_none();
        else {
            x->kind = E_NAME;
            x->name = (jstr){t->s, t->n};
        }
        adv(p);
    } else if (t->k == T_STRING) {
        x = nnew(p, E_CONST, t->pos);
        if (!x) return NULL;
        x->val = v_str(t->s, t->n);
        adv(p);
        while (cur(p)->k == T_STRING) { // adjacent literals concatenate
            tok *u = cur(p);
            char *s = ar_alloc(&p->t->a, x->val.n + u->n + 1);
            if (!s) {
                p_nomem(p);
                return NULL;
            }
            memcpy(s, x->val.u.s, x->val.n);
            memcpy(s + x->val.n, u->s, u->n);
            x->val = v_str(s, x->val.n + u->n);
            adv(p);
        }
    } else if (t->k == T_INT || t->k == T_FLOAT) {
        x = nnew(p, E_CONST, t->pos);
        if (!x) return NULL;
        x->val = t->k == T_INT ? v_int(t->u.i) : v_float(t->u.f);
        adv(p);
    } else if (tok_op(t, OP_LPAREN)) {
        adv(p);
        if (!nest_in(p)) return NULL;
        x = parse_tuple(p, false, true, NULL, true);
        p->nest--;
        if (!x || !expect_op(p, OP_RPAREN)) return NULL;
    } else if (tok_op(t, OP_LBRACKET) || tok_op(t, OP_LBRACE)) {
        bool dict = tok_op(t, OP_LBRACE);
        int close = dict ? OP_RBRACE : OP_RBRACKET;
        x = nnew(p, dict ? E_DICT : E_LIST, t->pos);
        if (!x || !nest_in(p)) return NULL;
        adv(p);
        nvec keys = {0}, vals = {0};
        while (!is_op(p, close)) {
            if (keys.n && !expect_op(p, OP_COMMA)) return NULL;
            if (is_op(p, close)) break;
            jnode *k = parse_expression(p, true);
            if (!k || !nv_push(p, &keys, k)) return NULL;
            if (dict) {
                jnode *v;
                if (!expect_op(p, OP_COLON) || !(v = parse_expression(p, true)) || !nv_push(p, &vals, v)) return NULL;
            }
        }
        p->nest--;
        if (!expect_op(p, close)) return NULL;
        x->l1 = nv_list(&keys);
        x->l2 = nv_list(&vals);
    } else {
        return fail_unexpected(p);
    }
    return x;
}

static jnode *parse_unary(P *p, bool with_filter) {
    tok *t = cur(p);
    jnode *x;
    if (tok_op(t, OP_SUB) || tok_op(t, OP_ADD)) {
        adv(p);
        if (!nest_in(p)) return NULL;
        jnode *a = parse_unary(p, false);
        p->nest--;
        if (!a || !(x = nnew(p, tok_op(t, OP_SUB) ? E_NEG : E_POS, t->pos))) return NULL;
        x->a = a;
    } else {
        x = parse_primary(p);
    }
    if (!x || !(x = parse_postfix(p, x))) return NULL;
    return with_filter ? parse_filter_expr(p, x) : x;
}

static jnode *bin(P *p, int kind, int op, uint32_t pos, jnode *a, jnode *b) {
    if (!a || !b) return NULL;
    jnode *x = nnew(p, kind, pos);
    if (!x) return NULL;
    x->op = (uint8_t)op;
    x->a = a;
    x->b = b;
    return x;
}

static jnode *parse_pow(P *p) {
    jnode *x = parse_unary(p, true);
    while (x && is_op(p, OP_POW)) {
        uint32_t pos = cur(p)->pos;
        adv(p);
        x = bin(p, E_BIN, OP_POW, pos, x, parse_unary(p, true));
    }
    return x;
}

static jnode *parse_math2(P *p) {
    jnode *x = parse_pow(p);
    while (x && (is_op(p, OP_MUL) || is_op(p, OP_DIV) || is_op(p, OP_FLOORDIV) || is_op(p, OP_MOD))) {
        tok *t = cur(p);
        adv(p);
        x = bin(p, E_BIN, t->op, t->pos, x, parse_pow(p));
    }
    return x;
}

static jnode *parse_concat(P *p) {
    jnode *x = parse_math2(p);
    if (!x || !is_op(p, OP_TILDE)) return x;
    jnode *c = nnew(p, E_CONCAT, cur(p)->pos);
    nvec v = {0};
    if (!c || !nv_push(p, &v, x)) return NULL;
    while (is_op(p, OP_TILDE)) {
        adv(p);
        jnode *y = parse_math2(p);
        if (!y || !nv_push(p, &v, y)) return NULL;
    }
    c->l1 = nv_list(&v);
    return c;
}

static jnode *parse_math1(P *p) {
    jnode *x = parse_concat(p);
    while (x && (is_op(p, OP_ADD) || is_op(p, OP_SUB))) {
        tok *t = cur(p);
        adv(p);
        x = bin(p, E_BIN, t->op, t->pos, x, parse_concat(p));
    }
    return x;
}

static jnode *parse_compare(P *p) {
    uint32_t pos = cur(p)->pos;
    jnode *x = parse_math1(p);
    if (!x) return NULL;
    nvec ops = {0};
    for (;;) {
        tok *t = cur(p);
        int op;
        if (t->k == T_OP && (t->op == OP_EQ || t->op == OP_NE || t->op == OP_LT || t->op == OP_LE ||
                             t->op == OP_GT || t->op == OP_GE)) {
            op = t->op;
            adv(p);
        } else if (tok_name(t, "in")) {
            op = OP_IN;
            adv(p);
        } else if (tok_name(t, "not") && tok_name(peek(p, 1), "in")) {
            op = OP_NOTIN;
            adv(p);
            adv(p);
        } else {
            break;
        }
        jnode *o = nnew(p, E_OPERAND, t->pos);
        if (!o || !(o->a = parse_math1(p)) || !nv_push(p, &ops, o)) return NULL;
        o->op = (uint8_t)op;
    }
    if (!ops.n) return x;
    jnode *c = nnew(p, E_CMP, pos);
    if (!c) return NULL;
    c->a = x;
    c->l1 = nv_list(&ops);
    return c;
}

static jnode *parse_not(P *p) {
    if (is_name(p, "not")) {
        uint32_t pos = cur(p)->pos;
        adv(p);
        if (!nest_in(p)) return NULL;
        jnode *a = parse_not(p);
        p->nest--;
        jnode *x = a ? nnew(p, E_NOT, pos) : NULL;
        if (x) x->a = a;
        return x;
    }
    return parse_compare(p);
}

static jnode *parse_and(P *p) {
    jnode *x = parse_not(p);
    while (x && is_name(p, "and")) {
        uint32_t pos = cur(p)->pos;
        adv(p);
        x = bin(p, E_AND, 0, pos, x, parse_not(p));
    }
    return x;
}

static jnode *parse_or(P *p) {
    jnode *x = parse_and(p);
    while (x && is_name(p, "or")) {
        uint32_t pos = cur(p)->pos;
        adv(p);
        x = bin(p, E_OR, 0, pos, x, parse_and(p));
    }
    return x;
}

static jnode *parse_condexpr(P *p) {
    jnode *x = parse_or(p);
    while (x && is_name(p, "if")) {
        jnode *c = nnew(p, E_COND, cur(p)->pos);
        if (!c) return NULL;
        adv(p);
        c->a = x;
        if (!(c->b = parse_or(p))) return NULL;
        if (is_name(p, "else")) {
            adv(p);
            if (!(c->c = parse_condexpr(p))) return NULL;
        }
        x = c;
    }
    return x;
}

static jnode *parse_expression(P *p, bool with_condexpr) {
    if (!nest_in(p)) return NULL;
    jnode *x = with_condexpr ? parse_condexpr(p) : parse_or(p);
    p->nest--;
    return x;
}

static bool tuple_end(P *p, const char *extra_end) {
    tok *t = cur(p);
    if (t->k == T_VAR_END || t->k == T_BLOCK_END || tok_op(t, OP_RPAREN)) return true;
    return extra_end && tok_name(t, extra_end);
}

static jnode *parse_tuple(P *p, bool simplified, bool with_condexpr, const char *extra_end, bool explicit_parens) {
    uint32_t pos = cur(p)->pos;
    nvec items = {0};
    bool is_tuple = false;
    for (;;) {
        if (items.n && !expect_op(p, OP_COMMA)) return NULL;
        if (tuple_end(p, extra_end)) break;
        jnode *x = simplified ? parse_primary(p) : parse_expression(p, with_condexpr);
        if (!x || !nv_push(p, &items, x)) return NULL;
        if (is_op(p, OP_COMMA)) is_tuple = true;
        else break;
    }
    if (!is_tuple) {
        if (items.n) return items.v[0];
        if (!explicit_parens) {
            char d[80];
            describe(cur(p), d, sizeof d);
            perr(p, cur(p)->pos, "expected an expression, got '%s'", d);
            return NULL;
        }
    }
    jnode *t = nnew(p, E_TUPLE, pos);
    if (t) t->l1 = nv_list(&items);
    return t;
}

static bool assignable(const jnode *x) {
    if (x->kind == E_NAME) return true;
    if (x->kind != E_TUPLE) return false;
    for (uint32_t i = 0; i < x->l1.n; i++)
        if (!assignable(x->l1.v[i])) return false;
    return true;
}

static jnode *parse_assign_target(P *p, bool name_only, const char *extra_end, bool with_namespace) {
    tok *t = cur(p);
    jnode *x;
    if (with_namespace && t->k == T_NAME && tok_op(peek(p, 1), OP_DOT)) {
        jnode *ns = nnew(p, E_NAME, t->pos);
        x = nnew(p, E_ATTR, t->pos);
        if (!ns || !x) return NULL;
        ns->name = (jstr){t->s, t->n};
        adv(p);
        adv(p);
        tok *a = cur(p);
        if (!expect_kind(p, T_NAME, "a name")) return NULL;
        x->a = ns;
        x->name = (jstr){a->s, a->n};
        return x;
    }
    if (name_only) {
        if (!expect_kind(p, T_NAME, "a name")) return NULL;
        x = nnew(p, E_NAME, t->pos);
        if (x) x->name = (jstr){t->s, t->n};
        return x;
    }
    x = parse_tuple(p, true, true, extra_end, false);
    if (!x) return NULL;
    if (!assignable(x)) {
        perr(p, x->pos, "can't assign to this expression");
        return NULL;
    }
    return x;
}

// What a macro's body names among caller, varargs and kwargs (nested macros included, as jinja2).
enum { MF_CALLER = 1, MF_VARARGS = 2, MF_KWARGS = 4 };
static uint8_t special_names(const jnode *x) {
    if (!x) return 0;
    uint8_t f = 0;
    if (x->kind == E_NAME) {
        if (str_is(x->name.s, x->name.n, "caller")) f |= MF_CALLER;
        if (str_is(x->name.s, x->name.n, "varargs")) f |= MF_VARARGS;
        if (str_is(x->name.s, x->name.n, "kwargs")) f |= MF_KWARGS;
    }
    f |= special_names(x->a) | special_names(x->b) | special_names(x->c);
    for (uint32_t i = 0; i < x->l1.n; i++) f |= special_names(x->l1.v[i]);
    for (uint32_t i = 0; i < x->l2.n; i++) f |= special_names(x->l2.v[i]);
    return f;
}

static bool parse_signature(P *p, jnode *x) {
    if (!expect_op(p, OP_LPAREN)) return false;
    nvec params = {0};
    bool defaults = false;
    while (!is_op(p, OP_RPAREN)) {
        if (params.n && !expect_op(p, OP_COMMA)) return false;
        jnode *a = parse_assign_target(p, true, NULL, false);
        if (!a) return false;
        if (is_op(p, OP_ASSIGN)) {
            adv(p);
            if (!(a->a = parse_expression(p, true))) return false;
            defaults = true;
        } else if (defaults) {
            perr(p, a->pos, "non-default argument follows default argument");
            return false;
        }
        if (!nv_push(p, &params, a)) return false;
    }
    if (!expect_op(p, OP_RPAREN)) return false;
    x->l2 = nv_list(&params);
    return true;
}

// After a statement's own tokens: `%}`, the body up to one of ends, and (drop)
// the end tag's name. Leaves the parser on the end tag's name when !drop.
static bool parse_statements(P *p, nlist *out, const char *const *ends, bool drop, const char *block,
                             uint32_t block_pos) {
    if (is_op(p, OP_COLON)) adv(p);
    if (!expect_kind(p, T_BLOCK_END, "end of statement block")) return false;
    if (!parse_body(p, out, ends, block, block_pos)) return false;
    if (drop) adv(p);
    return true;
}

static jnode *parse_for(P *p, uint32_t pos) {
    jnode *x = nnew(p, S_FOR, pos);
    if (!x) return NULL;
    if (!(x->a = parse_assign_target(p, false, "in", false))) return NULL;
    if (!is_name(p, "in")) {
        perr(p, cur(p)->pos, "expected 'in'");
        return NULL;
    }
    adv(p);
    if (!(x->b = parse_tuple(p, false, false, "recursive", false))) return NULL;
    if (is_name(p, "if")) {
        adv(p);
        if (!(x->c = parse_expression(p, true))) return NULL;
    }
    if (is_name(p, "recursive")) {
        perr(p, cur(p)->pos, "recursive loops are not supported");
        return NULL;
    }
    static const char *const ends1[] = {"endfor", "else", NULL}, *const ends2[] = {"endfor", NULL};
    p->loops++;
    bool ok = parse_statements(p, &x->l1, ends1, false, "for", pos);
    p->loops--;
    if (!ok) return NULL;
    bool has_else = is_name(p, "else");
    adv(p);
    if (has_else && !parse_statements(p, &x->l2, ends2, true, "for", pos)) return NULL;
    return x;
}

static jnode *parse_if(P *p, uint32_t pos) {
    static const char *const ends1[] = {"elif", "else", "endif", NULL}, *const ends2[] = {"endif", NULL};
    jnode *first = NULL, *node = NULL;
    bool elif = false;
    for (;;) {
        jnode *x = nnew(p, S_IF, pos);
        if (!x || !(x->a = parse_tuple(p, false, false, NULL, false))) return NULL;
        x->elif = elif;
        if (node) {
            jnode **v = ar_alloc(&p->t->a, sizeof *v);
            if (!v) {
                p_nomem(p);
                return NULL;
            }
            v[0] = x;
            node->l2 = (nlist){v, 1};
        } else {
            first = x;
        }
        node = x;
        if (!parse_statements(p, &x->l1, ends1, false, "if", pos)) return NULL;
        tok *t = cur(p);
        adv(p);
        if (tok_name(t, "elif")) {
            pos = t->pos;
            elif = true;
            continue;
        }
        if (tok_name(t, "else") && !parse_statements(p, &x->l2, ends2, true, "if", pos)) return NULL;
        return first;
    }
}

static jnode *parse_statement(P *p) {
    tok *t = cur(p);
    uint32_t pos = t->pos;
    char nm[40];
    snprintf(nm, sizeof nm, "%.*s", (int)MIN(t->n, 30), t->s);
    adv(p);
    if (!strcmp(nm, "for")) return parse_for(p, pos);
    if (!strcmp(nm, "if")) return parse_if(p, pos);
    if (!strcmp(nm, "set")) {
        jnode *target = parse_assign_target(p, false, NULL, true);
        if (!target) return NULL;
        if (is_op(p, OP_ASSIGN)) {
            adv(p);
            jnode *x = nnew(p, S_SET, pos);
            if (!x || !(x->b = parse_tuple(p, false, true, NULL, false))) return NULL;
            x->a = target;
            return x;
        }
        static const char *const ends[] = {"endset", NULL};
        jnode *x = nnew(p, S_SETBLOCK, pos);
        if (!x) return NULL;
        x->a = target;
        if (is_op(p, OP_PIPE)) {
            jnode *cap = nnew(p, E_CAPTURED, pos);
            if (!cap || !(x->c = parse_filter(p, cap, false))) return NULL;
        }
        return parse_statements(p, &x->l1, ends, true, "set", pos) ? x : NULL;
    }
    if (!strcmp(nm, "macro") || !strcmp(nm, "call")) {
        bool macro = nm[0] == 'm';
        static const char *const mends[] = {"endmacro", NULL}, *const cends[] = {"endcall", NULL};
        jnode *x = nnew(p, macro ? S_MACRO : S_CALLBLOCK, pos);
        if (!x) return NULL;
        if (macro) {
            jnode *name = parse_assign_target(p, true, NULL, false);
            if (!name) return NULL;
            x->name = name->name;
            if (!parse_signature(p, x)) return NULL;
        } else {
            if (is_op(p, OP_LPAREN) && !parse_signature(p, x)) return NULL;
            if (!(x->a = parse_expression(p, true))) return NULL;
            if (x->a->kind != E_CALL) {
                perr(p, pos, "expected call");
                return NULL;
            }
        }
        int loops = p->loops;
        p->loops = 0;
        bool ok = parse_statements(p, &x->l1, macro ? mends : cends, true, nm, pos);
        p->loops = loops;
        if (!ok) return NULL;
        for (uint32_t i = 0; i < x->l1.n; i++) x->op |= special_names(x->l1.v[i]);
        return x;
    }
    if (!strcmp(nm, "filter")) {
        static const char *const ends[] = {"endfilter", NULL};
        jnode *x = nnew(p, S_FILTERBLOCK, pos), *cap = nnew(p, E_CAPTURED, pos);
        if (!x || !cap || !(x->c = parse_filter(p, cap, true))) return NULL;
        return parse_statements(p, &x->l1, ends, true, "filter", pos) ? x : NULL;
    }
    if (!strcmp(nm, "with")) {
        static const char *const ends[] = {"endwith", NULL};
        jnode *x = nnew(p, S_WITH, pos);
        nvec sets = {0};
        if (!x) return NULL;
        while (cur(p)->k != T_BLOCK_END) {
            if (sets.n && !expect_op(p, OP_COMMA)) return NULL;
            jnode *s = nnew(p, S_SET, cur(p)->pos);
            if (!s || !(s->a = parse_assign_target(p, false, NULL, false)) || !expect_op(p, OP_ASSIGN) ||
                !(s->b = parse_expression(p, true)) || !nv_push(p, &sets, s))
                return NULL;
        }
        x->l2 = nv_list(&sets);
        return parse_statements(p, &x->l1, ends, true, "with", pos) ? x : NULL;
    }
    if (!strcmp(nm, "break") || !strcmp(nm, "continue")) {
        if (!p->loops) {
            perr(p, pos, "'%s' outside loop", nm);
            return NULL;
        }
        return nnew(p, nm[0] == 'b' ? S_BREAK : S_CONTINUE, pos);
    }
    if (!strcmp(nm, "generation")) { // HF's assistant-mask marker: renders its body
        static const char *const ends[] = {"endgeneration", NULL};
        jnode *x = nnew(p, S_BODY, pos);
        return x && parse_statements(p, &x->l1, ends, true, "generation", pos) ? x : NULL;
    }
    if (!strcmp(nm, "block") || !strcmp(nm, "extends") || !strcmp(nm, "include") || !strcmp(nm, "import") ||
        !strcmp(nm, "from") || !strcmp(nm, "do") || !strcmp(nm, "autoescape") || !strcmp(nm, "trans")) {
        perr(p, pos, "the '%s' tag is not supported", nm);
        return NULL;
    }
    perr(p, pos, "Encountered unknown tag '%s'", nm);
    return NULL;
}

static bool parse_body(P *p, nlist *out, const char *const *ends, const char *block, uint32_t block_pos) {
    if (!nest_in(p)) return false;
    nvec body = {0};
    for (;;) {
        tok *t = cur(p);
        if (t->k == T_TEXT) {
            jnode *x = nnew(p, S_TEXT, t->pos);
            if (!x || !nv_push(p, &body, x)) return false;
            x->name = (jstr){t->s, t->n};
            x->op = t->fl;
            x->x1 = (size_t)t->u.i;
            adv(p);
        } else if (t->k == T_VAR_BEGIN) {
            adv(p);
            jnode *x = nnew(p, S_OUT, t->pos);
            if (!x || !(x->a = parse_tuple(p, false, true, NULL, false))) return false;
            if (!expect_kind(p, T_VAR_END, "end of print statement") || !nv_push(p, &body, x)) return false;
        } else if (t->k == T_BLOCK_BEGIN) {
            adv(p);
            tok *nm = cur(p);
            if (nm->k != T_NAME) {
                perr(p, nm->pos, "tag name expected");
                return false;
            }
            for (int i = 0; ends && ends[i]; i++)
                if (tok_name(nm, ends[i])) {
                    *out = nv_list(&body);
                    p->nest--;
                    return true;
                }
            jnode *x = parse_statement(p);
            if (!x || !nv_push(p, &body, x) || !expect_kind(p, T_BLOCK_END, "end of statement block")) return false;
        } else if (t->k == T_EOF) {
            if (ends) {
                char want[120] = "";
                for (int i = 0; ends[i]; i++)
                    snprintf(want + strlen(want), sizeof want - strlen(want), "%s'%s'", i ? " or " : "", ends[i]);
                perr(p, t->pos,
                     "unexpected end of template: expected %s (the innermost open block is '%s' on line %d)", want,
                     block, line_of(p->t, block_pos));
                return false;
            }
            *out = nv_list(&body);
            p->nest--;
            return true;
        } else {
            fail_unexpected(p);
            return false;
        }
    }
}

// --- lists and dicts ---------------------------------------------------------------------

static jlist *list_new(R *r, size_t n) {
    if (n > SIZE_MAX / sizeof(jv) / 2) {
        r->a.over = true;
        return NULL;
    }
    jlist *l = ralloc(r, sizeof *l);
    jv *v = n ? ralloc(r, n * sizeof *v) : NULL;
    if (!l || (n && !v)) return NULL;
    *l = (jlist){.v = v, .n = n};
    return l;
}

static jv v_list(jlist *l, int sub) { return (jv){.k = V_LIST, .sub = (uint8_t)sub, .u.l = l}; }

// A growing list under construction.
typedef struct lvec {
    jv *v;
    size_t n, cap;
} lvec;

static int lv_push(R *r, lvec *b, jv x) {
    if (b->n == b->cap) {
        size_t cap = b->cap ? b->cap * 2 : 8;
        if (cap > SIZE_MAX / sizeof(jv) / 2) return r_nomem(r);
        jv *q = ar_grow(&r->a, b->v, b->cap * sizeof(jv), cap * sizeof(jv));
        if (!q) return r_nomem(r);
        b->v = q;
        b->cap = cap;
    }
    b->v[b->n++] = x;
    return SIM_OK;
}

static int lv_done(R *r, lvec *b, int sub, jv *out) {
    jlist *l = ralloc(r, sizeof *l);
    if (!l) return r_nomem(r);
    *l = (jlist){.v = b->v, .n = b->n};
    *out = v_list(l, sub);
    return SIM_OK;
}

static uint64_t mix64(uint64_t x) {
    x ^= x >> 33;
    x *= 0xff51afd7ed558ccdull;
    x ^= x >> 33;
    x *= 0xc4ceb9fe1a85ec53ull;
    return x ^ (x >> 33);
}

// Python-consistent hashing (1 == 1.0 == True hash alike); -1 for unhashable.
static int key_hash(jv k, uint64_t *h, int depth) {
    switch (k.k) {
    case V_STR: *h = hash64(k.u.s, k.n, 7); return 0;
    case V_NONE: *h = 0x9e3779b97f4a7c15ull; return 0;
    case V_UNDEF: *h = 0x51ed270b27c4a3f1ull; return 0;
    case V_BOOL:
    case V_INT: *h = mix64((uint64_t)as_int(k)); return 0;
    case V_FLOAT:
        if (k.u.f == floor(k.u.f) && fabs(k.u.f) < 9.2e18) *h = mix64((uint64_t)(int64_t)k.u.f);
        else {
            uint64_t b;
            memcpy(&b, &k.u.f, 8);
            *h = mix64(b ^ 0x5555);
        }
        return 0;
    case V_LIST:
        if (IS_ITER(k)) {
            *h = mix64((uint64_t)(uintptr_t)k.u.l);
            return 0;
        }
        if ((k.sub != SUB_TUPLE && k.sub != SUB_RANGE) || depth > 64) return -1;
        *h = 0x1234567;
        for (size_t i = 0; i < k.u.l->n; i++) {
            uint64_t e;
            if (key_hash(k.u.l->v[i], &e, depth + 1)) return -1;
            *h = mix64(*h ^ e);
        }
        return 0;
    case V_NS:
    case V_FUNC:
    case V_LOOP: *h = mix64((uint64_t)(uintptr_t)k.u.d); return 0;
    default: return -1;
    }
}

static bool py_eq(jv a, jv b, int depth);

static jdict *dict_new(R *r) {
    jdict *d = ralloc(r, sizeof *d);
    if (d) memset(d, 0, sizeof *d);
    return d;
}

static void dict_index_put(jdict *d, size_t e) {
    uint64_t h = 0;
    key_hash(d->key[e], &h, 0);
    size_t m = d->icap - 1, i = (size_t)h & m;
    while (d->idx[i]) i = (i + 1) & m;
    d->idx[i] = (uint32_t)(e + 1);
}

// The entry for key k, or -1.
static long dict_find(const jdict *d, jv k) {
    if (!d->idx) {
        for (size_t i = 0; i < d->n; i++)
            if (py_eq(d->key[i], k, 0)) return (long)i;
        return -1;
    }
    uint64_t h;
    if (key_hash(k, &h, 0)) return -1;
    size_t m = d->icap - 1, i = (size_t)h & m;
    while (d->idx[i]) {
        size_t e = d->idx[i] - 1;
        if (py_eq(d->key[e], k, 0)) return (long)e;
        i = (i + 1) & m;
    }
    return -1;
}

static jv *dict_get_s(const jdict *d, const char *s, size_t n) {
    long e = dict_find(d, v_str(s, n));
    return e < 0 ? NULL : &d->val[e];
}

static int dict_set(R *r, jdict *d, jv k, jv v) {
    uint64_t h;
    if (key_hash(k, &h, 0)) return rerr(r, SIM_ERR_FORMAT, "unhashable type: '%s'", tname(k));
    long e = dict_find(d, k);
    if (e >= 0) {
        d->val[e] = v;
        return SIM_OK;
    }
    if (d->n >= UINT32_MAX - 1) return r_nomem(r);
    if (d->n == d->cap) {
        size_t cap = d->cap ? d->cap * 2 : 4;
        jv *nk = ar_grow(&r->a, d->key, d->cap * sizeof(jv), cap * sizeof(jv));
        jv *nv = nk ? ar_grow(&r->a, d->val, d->cap * sizeof(jv), cap * sizeof(jv)) : NULL;
        if (!nv) return r_nomem(r);
        d->key = nk;
        d->val = nv;
        d->cap = cap;
    }
    d->key[d->n] = k;
    d->val[d->n] = v;
    d->n++;
    if (d->n > DICT_LINEAR && d->n * 2 > d->icap) { // (re)build the index
        size_t icap = 32;
        while (icap < d->n * 4) icap *= 2;
        uint32_t *idx = ralloc(r, icap * sizeof *idx);
        if (!idx) return r_nomem(r);
        memset(idx, 0, icap * sizeof *idx);
        d->idx = idx;
        d->icap = icap;
        for (size_t i = 0; i < d->n; i++) dict_index_put(d, i);
    } else if (d->idx) {
        dict_index_put(d, d->n - 1);
    }
    return SIM_OK;
}

// --- JSON context to values --------------------------------------------------------------

static int from_json(R *r, const json_t *j, jv *out, int depth) {
    if (depth > 1000) return rerr(r, SIM_ERR_RANGE, "the context nests too deeply");
    switch (json_typeof(j)) {
    case JSON_OBJECT: {
        jdict *d = dict_new(r);
        if (!d) return r_nomem(r);
        const char *k;
        json_t *v;
        json_object_foreach((json_t *)j, k, v) {
            jv x;
            TRY(from_json(r, v, &x, depth + 1));
            TRY(dict_set(r, d, v_str(k, strlen(k)), x));
        }
        *out = (jv){.k = V_DICT, .u.d = d};
        return SIM_OK;
    }
    case JSON_ARRAY: {
        size_t n = json_array_size(j);
        jlist *l = list_new(r, n);
        if (!l) return r_nomem(r);
        for (size_t i = 0; i < n; i++) TRY(from_json(r, json_array_get(j, i), &l->v[i], depth + 1));
        *out = v_list(l, SUB_LIST);
        return SIM_OK;
    }
    case JSON_STRING: *out = v_str(json_string_value(j), json_string_length(j)); return SIM_OK;
    case JSON_INTEGER: *out = v_int((int64_t)json_integer_value(j)); return SIM_OK;
    case JSON_REAL: *out = v_float(json_real_value(j)); return SIM_OK;
    case JSON_TRUE: *out = v_bool(true); return SIM_OK;
    case JSON_FALSE: *out = v_bool(false); return SIM_OK;
    default: *out = v_none(); return SIM_OK;
    }
}

// --- Python's str() and repr() ------------------------------------------------------------

// repr(float): the shortest digits that round-trip, fixed notation for
// exponents in [-4, 16), else scientific with at least two exponent digits.
static void float_repr(double x, char *out, size_t cap) {
    if (isnan(x)) {
        snprintf(out, cap, "nan");
        return;
    }
    if (isinf(x)) {
        snprintf(out, cap, x < 0 ? "-inf" : "inf");
        return;
    }
    if (x == 0) {
        snprintf(out, cap, signbit(x) ? "-0.0" : "0.0");
        return;
    }
    char buf[40];
    for (int prec = 1; prec <= 17; prec++) {
        snprintf(buf, sizeof buf, "%.*e", prec - 1, x);
        if (strtod(buf, NULL) == x) break;
    }
    // buf = [-]d[.ddd]e[+-]XX
    char digits[24];
    int nd = 0, exp10;
    const char *q = buf;
    bool neg = *q == '-';
    if (neg) q++;
    for (; *q && *q != 'e'; q++)
        if (*q != '.') digits[nd++] = *q;
    exp10 = atoi(q + 1);
    while (nd > 1 && digits[nd - 1] == '0') nd--;
    char *o = out;
    size_t left = cap;
#define PUT(...)                                                                               \
    do {                                                                                       \
        int k_ = snprintf(o, left, __VA_ARGS__);                                               \
        if (k_ > 0 && (size_t)k_ < left) o += k_, left -= (size_t)k_;                          \
    } while (0)
    if (neg) PUT("-");
    if (exp10 >= -4 && exp10 < 16) {
        if (exp10 < 0) {
            PUT("0.");
            for (int i = 0; i < -exp10 - 1; i++) PUT("0");
            PUT("%.*s", nd, digits);
        } else {
            for (int i = 0; i <= exp10; i++) PUT("%c", i < nd ? digits[i] : '0');
            PUT(".");
            if (nd > exp10 + 1) PUT("%.*s", nd - exp10 - 1, digits + exp10 + 1);
            else PUT("0");
        }
    } else {
        PUT("%c", digits[0]);
        if (nd > 1) PUT(".%.*s", nd - 1, digits + 1);
        PUT("e%c%02d", exp10 < 0 ? '-' : '+', exp10 < 0 ? -exp10 : exp10);
    }
#undef PUT
}

// Characters Python's repr() escapes (str.isprintable() is false), roughly.
static bool cp_unprintable(uint32_t c) {
    return c < 0x20 || c == 0x7f || (c >= 0x80 && c <= 0xa0) || c == 0xad || (c >= 0x2000 && c <= 0x200f) ||
           (c >= 0x2028 && c <= 0x202f) || (c >= 0x205f && c <= 0x206f) || c == 0x3000 || c == 0xfeff ||
           (c >= 0xfff9 && c <= 0xfffb) || (c >= 0xe000 && c <= 0xf8ff) || c == 0x1680 || c >= 0xf0000;
}

static int str_repr(R *r, sink *s, const char *p, size_t n) {
    bool sq = memchr(p, '\'', n) != NULL, dq = memchr(p, '"', n) != NULL;
    char q = sq && !dq ? '"' : '\'';
    TRY(sk_putc(r, s, q));
    for (size_t i = 0; i < n;) {
        size_t j = i;
        uint32_t c = u8_next(p, n, &j);
        if (c == (uint32_t)q || c == '\\') {
            TRY(sk_putc(r, s, '\\'));
            TRY(sk_putc(r, s, (char)c));
        } else if (c == '\n') TRY(sk_puts(r, s, "\\n"));
        else if (c == '\r') TRY(sk_puts(r, s, "\\r"));
        else if (c == '\t') TRY(sk_puts(r, s, "\\t"));
        else if (c == ' ') TRY(sk_putc(r, s, ' '));
        else if (cp_unprintable(c)) {
            if (c < 0x100) TRY(sk_printf(r, s, "\\x%02x", c));
            else if (c < 0x10000) TRY(sk_printf(r, s, "\\u%04x", c));
            else TRY(sk_printf(r, s, "\\U%08x", c));
        } else TRY(sk_put(r, s, p + i, j - i));
        i = j;
    }
    return sk_putc(r, s, q);
}

static int v_write(R *r, sink *s, jv v, bool repr, int depth);

static int seq_write(R *r, sink *s, jv v, int depth) {
    const jlist *l = v.u.l;
    bool tuple = v.sub == SUB_TUPLE;
    switch (v.sub) {
    case SUB_GEN:
    case SUB_REV: return sk_printf(r, s, "<%s object>", tname(v)); // Python adds an address
    case SUB_RANGE:
        if (l->rs == 1) return sk_printf(r, s, "range(%lld, %lld)", (long long)l->r0, (long long)l->r1);
        return sk_printf(r, s, "range(%lld, %lld, %lld)", (long long)l->r0, (long long)l->r1, (long long)l->rs);
    case SUB_ITEMS:
    case SUB_KEYS:
    case SUB_VALUES: TRY(sk_printf(r, s, "%s(", tname(v))); break;
    }
    TRY(sk_putc(r, s, tuple ? '(' : '['));
    for (size_t i = 0; i < l->n; i++) {
        if (i) TRY(sk_puts(r, s, ", "));
        TRY(v_write(r, s, l->v[i], true, depth + 1));
    }
    if (tuple && l->n == 1) TRY(sk_putc(r, s, ','));
    TRY(sk_putc(r, s, tuple ? ')' : ']'));
    return v.sub >= SUB_ITEMS ? sk_putc(r, s, ')') : SIM_OK;
}

static int dict_write(R *r, sink *s, const jdict *d, int depth) {
    TRY(sk_putc(r, s, '{'));
    for (size_t i = 0; i < d->n; i++) {
        if (i) TRY(sk_puts(r, s, ", "));
        TRY(v_write(r, s, d->key[i], true, depth + 1));
        TRY(sk_puts(r, s, ": "));
        TRY(v_write(r, s, d->val[i], true, depth + 1));
    }
    return sk_putc(r, s, '}');
}

// Python's str(v) (repr false) or repr(v).
static int v_write(R *r, sink *s, jv v, bool repr, int depth) {
    if (depth > 500) return rerr(r, SIM_ERR_RANGE, "a value nests too deeply to print");
    char b[48];
    switch (v.k) {
    case V_UNDEF: return repr ? sk_puts(r, s, "Undefined") : SIM_OK;
    case V_NONE: return sk_puts(r, s, "None");
    case V_BOOL: return sk_puts(r, s, v.u.b ? "True" : "False");
    case V_INT: return sk_printf(r, s, "%lld", (long long)v.u.i);
    case V_FLOAT: float_repr(v.u.f, b, sizeof b); return sk_puts(r, s, b);
    case V_STR: return repr ? str_repr(r, s, v.u.s, v.n) : sk_put(r, s, v.u.s, v.n);
    case V_LIST: return seq_write(r, s, v, depth);
    case V_DICT: return dict_write(r, s, v.u.d, depth);
    case V_NS:
        TRY(sk_puts(r, s, "<Namespace "));
        TRY(dict_write(r, s, v.u.d, depth));
        return sk_putc(r, s, '>');
    case V_FUNC:
        if (v.u.fn->kind == F_MACRO)
            return sk_printf(r, s, "<Macro '%.*s'>", (int)MIN(v.u.fn->name.n, 40), v.u.fn->name.s);
        if (v.u.fn->kind == F_METHOD) // Python adds an address
            return sk_printf(r, s, "<built-in method %.*s of %s object>", (int)MIN(v.u.fn->name.n, 40),
                             v.u.fn->name.s, tname(v.u.fn->self));
        return sk_printf(r, s, "<function %.*s>", (int)MIN(v.u.fn->name.n, 40), v.u.fn->name.s);
    default: return sk_printf(r, s, "<LoopContext %zu/%zu>", v.u.lp->i + 1, v.u.lp->items->n);
    }
}

// str(v) as a string value (strings are returned as they are).
static int to_str(R *r, jv v, jv *out) {
    if (v.k == V_STR) {
        *out = v;
        return SIM_OK;
    }
    if (v.k == V_UNDEF) {
        *out = v_str("", 0);
        return SIM_OK;
    }
    sink s = {0};
    TRY(v_write(r, &s, v, false, 0));
    *out = sk_value(&s);
    return SIM_OK;
}

// --- HF's tojson: json.dumps(x, ensure_ascii=False, indent=..., separators=..., sort_keys=...) --

typedef struct json_fmt {
    jstr indent;  // NULL s: no indent (one line)
    jstr item_sep, key_sep;
    bool ensure_ascii, sort_keys;
} json_fmt;

static int json_str(R *r, sink *s, const char *p, size_t n, bool ascii) {
    TRY(sk_putc(r, s, '"'));
    size_t run = 0; // start of the pending run of plain bytes
    for (size_t i = 0; i < n;) {
        uint8_t c = (uint8_t)p[i];
        const char *esc = NULL;
        switch (c) {
        case '"': esc = "\\\""; break;
        case '\\': esc = "\\\\"; break;
        case '\n': esc = "\\n"; break;
        case '\r': esc = "\\r"; break;
        case '\t': esc = "\\t"; break;
        case '\b': esc = "\\b"; break;
        case '\f': esc = "\\f"; break;
        }
        if (!esc && c >= 0x20 && (c < 0x80 || !ascii)) {
            i++;
            continue;
        }
        TRY(sk_put(r, s, p + run, i - run));
        if (esc) {
            TRY(sk_puts(r, s, esc));
            i++;
        } else if (c < 0x20) {
            TRY(sk_printf(r, s, "\\u%04x", c));
            i++;
        } else {
            uint32_t cp = u8_next(p, n, &i);
            if (cp >= 0x10000) {
                cp -= 0x10000;
                TRY(sk_printf(r, s, "\\u%04x\\u%04x", 0xd800 + (cp >> 10), 0xdc00 + (cp & 0x3ff)));
            } else {
                TRY(sk_printf(r, s, "\\u%04x", cp));
            }
        }
        run = i;
    }
    TRY(sk_put(r, s, p + run, n - run));
    return sk_putc(r, s, '"');
}

static int json_newline(R *r, sink *s, const json_fmt *f, int level) {
    TRY(sk_putc(r, s, '\n'));
    for (int i = 0; i < level; i++) TRY(sk_put(r, s, f->indent.s, f->indent.n));
    return SIM_OK;
}

static int cmp_str(jv a, jv b) {
    int c = memcmp(a.u.s, b.u.s, MIN(a.n, b.n));
    return c ? c : (a.n > b.n) - (a.n < b.n);
}

static int json_write(R *r, sink *s, jv v, const json_fmt *f, int level) {
    if (level > 500) return rerr(r, SIM_ERR_FORMAT, "Circular reference detected");
    TRY(step(r, 1));
    char b[48];
    switch (v.k) {
    case V_NONE: return sk_puts(r, s, "null");
    case V_BOOL: return sk_puts(r, s, v.u.b ? "true" : "false");
    case V_INT: return sk_printf(r, s, "%lld", (long long)v.u.i);
    case V_FLOAT:
        if (isnan(v.u.f)) return sk_puts(r, s, "NaN");
        if (isinf(v.u.f)) return sk_puts(r, s, v.u.f < 0 ? "-Infinity" : "Infinity");
        float_repr(v.u.f, b, sizeof b);
        return sk_puts(r, s, b);
    case V_STR: return json_str(r, s, v.u.s, v.n, f->ensure_ascii);
    case V_LIST: {
        const jlist *l = v.u.l;
        if (!IS_PLAIN(v)) return rerr(r, SIM_ERR_FORMAT, "Object of type %s is not JSON serializable", tname(v));
        if (!l->n) return sk_puts(r, s, "[]");
        TRY(sk_putc(r, s, '['));
        for (size_t i = 0; i < l->n; i++) {
            if (i) TRY(sk_put(r, s, f->item_sep.s, f->item_sep.n));
            if (f->indent.s) TRY(json_newline(r, s, f, level + 1));
            TRY(json_write(r, s, l->v[i], f, level + 1));
        }
        if (f->indent.s) TRY(json_newline(r, s, f, level));
        return sk_putc(r, s, ']');
    }
    case V_DICT: {
        const jdict *d = v.u.d;
        if (!d->n) return sk_puts(r, s, "{}");
        size_t *order = ralloc(r, d->n * sizeof *order);
        if (!order) return r_nomem(r);
        for (size_t i = 0; i < d->n; i++) order[i] = i;
        if (f->sort_keys) { // insertion sort by key (keys are strings in practice)
            for (size_t i = 0; i < d->n; i++)
                if (d->key[i].k != V_STR)
                    return rerr(r, SIM_ERR_FORMAT, "sort_keys needs string keys, not '%s'", tname(d->key[i]));
            TRY(step(r, d->n * d->n / 16));
            for (size_t i = 1; i < d->n; i++) {
                size_t x = order[i], j = i;
                while (j > 0 && cmp_str(d->key[order[j - 1]], d->key[x]) > 0) order[j] = order[j - 1], j--;
                order[j] = x;
            }
        }
        TRY(sk_putc(r, s, '{'));
        for (size_t i = 0; i < d->n; i++) {
            jv k = d->key[order[i]];
            if (i) TRY(sk_put(r, s, f->item_sep.s, f->item_sep.n));
            if (f->indent.s) TRY(json_newline(r, s, f, level + 1));
            switch (k.k) {
            case V_STR: TRY(json_str(r, s, k.u.s, k.n, f->ensure_ascii)); break;
            case V_NONE:
            case V_BOOL:
            case V_INT:
            case V_FLOAT: {
                sink t = {0};
                TRY(json_write(r, &t, k, f, level + 1));
                TRY(sk_putc(r, s, '"'));
                TRY(sk_put(r, s, t.p, t.n));
                TRY(sk_putc(r, s, '"'));
                break;
            }
            default:
                return rerr(r, SIM_ERR_FORMAT, "keys must be str, int, float, bool or None, not %s", tname(k));
            }
            TRY(sk_put(r, s, f->key_sep.s, f->key_sep.n));
            TRY(json_write(r, s, d->val[order[i]], f, level + 1));
        }
        if (f->indent.s) TRY(json_newline(r, s, f, level));
        return sk_putc(r, s, '}');
    }
    default:
        if (v.k == V_UNDEF) return undef_err(r, v);
        return rerr(r, SIM_ERR_FORMAT, "Object of type %s is not JSON serializable", tname(v));
    }
}

// --- comparisons ------------------------------------------------------------------------

static bool py_eq(jv a, jv b, int depth) {
    if (depth > 500) return false;
    if (is_num(a) && is_num(b)) {
        if (a.k == V_FLOAT || b.k == V_FLOAT) return as_f(a) == as_f(b);
        return as_int(a) == as_int(b);
    }
    if (a.k != b.k) return false;
    switch (a.k) {
    case V_UNDEF:
    case V_NONE: return true;
    case V_STR: return a.n == b.n && memcmp(a.u.s, b.u.s, a.n) == 0;
    case V_LIST:
        if (a.sub != b.sub || a.u.l->n != b.u.l->n) return false;
        if (IS_ITER(a)) return a.u.l == b.u.l;
        for (size_t i = 0; i < a.u.l->n; i++)
            if (!py_eq(a.u.l->v[i], b.u.l->v[i], depth + 1)) return false;
        return true;
    case V_DICT:
        if (a.u.d->n != b.u.d->n) return false;
        for (size_t i = 0; i < a.u.d->n; i++) {
            long e = dict_find(b.u.d, a.u.d->key[i]);
            if (e < 0 || !py_eq(a.u.d->val[i], b.u.d->val[e], depth + 1)) return false;
        }
        return true;
    case V_FUNC: return a.u.fn == b.u.fn;
    default: return a.u.d == b.u.d;
    }
}

// Python's ordering: *out < 0, 0, > 0; an error for types that do not order.
static int py_cmp(R *r, jv a, jv b, const char *op, int *out, int depth) {
    if (is_num(a) && is_num(b)) {
        if (a.k == V_FLOAT || b.k == V_FLOAT) {
            double x = as_f(a), y = as_f(b);
            *out = x < y ? -1 : x > y ? 1 : x == y ? 0 : 2; // 2: unordered (nan)
        } else {
            int64_t x = as_int(a), y = as_int(b);
            *out = (x > y) - (x < y);
        }
        return SIM_OK;
    }
    if (a.k == V_STR && b.k == V_STR) {
        int c = cmp_str(a, b);
        *out = (c > 0) - (c < 0);
        return SIM_OK;
    }
    if (IS_PLAIN(a) && IS_PLAIN(b) && a.sub == b.sub && depth < 500) {
        size_t n = MIN(a.u.l->n, b.u.l->n);
        for (size_t i = 0; i < n; i++) {
            if (py_eq(a.u.l->v[i], b.u.l->v[i], 0)) continue;
            return py_cmp(r, a.u.l->v[i], b.u.l->v[i], op, out, depth + 1);
        }
        *out = (a.u.l->n > b.u.l->n) - (a.u.l->n < b.u.l->n);
        return SIM_OK;
    }
    if (a.k == V_UNDEF) return undef_err(r, a);
    if (b.k == V_UNDEF) return undef_err(r, b);
    return rerr(r, SIM_ERR_FORMAT, "'%s' not supported between instances of '%s' and '%s'", op, tname(a), tname(b));
}

// --- scopes ------------------------------------------------------------------------------

typedef struct jvar {
    const char *s;
    size_t n;
    jv v;
} jvar;

struct jscope {
    jscope *parent;
    jvar *vars;
    uint32_t n, cap;
};

static jscope *scope_new(R *r, jscope *parent) {
    jscope *s = ralloc(r, sizeof *s);
    if (s) *s = (jscope){.parent = parent};
    return s;
}

static jv *scope_get(jscope *sc, const char *s, size_t n) {
    for (uint32_t i = 0; i < sc->n; i++)
        if (sc->vars[i].n == n && memcmp(sc->vars[i].s, s, n) == 0) return &sc->vars[i].v;
    return NULL;
}

static int scope_set(R *r, jscope *sc, const char *s, size_t n, jv v) {
    jv *x = scope_get(sc, s, n);
    if (x) {
        *x = v;
        return SIM_OK;
    }
    if (sc->n == sc->cap) {
        uint32_t cap = sc->cap ? sc->cap * 2 : 4;
        jvar *q = ar_grow(&r->a, sc->vars, sc->cap * sizeof *q, cap * sizeof *q);
        if (!q) return r_nomem(r);
        sc->vars = q;
        sc->cap = cap;
    }
    sc->vars[sc->n++] = (jvar){s, n, v};
    return SIM_OK;
}

// Sets the names that start out undefined in sc (entering a frame).
static int predeclare(R *r, jscope *sc, const jstr *names, uint32_t n) {
    for (uint32_t i = 0; i < n; i++) TRY(scope_set(r, sc, names[i].s, names[i].n, v_undef_name(names[i].s, names[i].n)));
    return SIM_OK;
}

// --- builtin tables (the functions are defined further down) -------------------------------

typedef struct jargs {
    const jv *pos;
    size_t npos;
    const jstr *kwn;
    const jv *kwv;
    size_t nkw;
} jargs;

enum { G_RANGE, G_NAMESPACE, G_DICT, G_RAISE, G_STRFTIME, G_COUNT };
static const char *const global_names[G_COUNT] = {"range", "namespace", "dict", "raise_exception", "strftime_now"};

enum {
    // str
    M_STRIP, M_LSTRIP, M_RSTRIP, M_UPPER, M_LOWER, M_TITLE, M_CAPITALIZE, M_SWAPCASE, M_STARTSWITH, M_ENDSWITH,
    M_SPLIT, M_RSPLIT, M_SPLITLINES, M_REPLACE, M_FIND, M_RFIND, M_COUNT, M_INDEX, M_JOIN, M_ISALPHA, M_ISDIGIT,
    M_ISALNUM, M_ISSPACE, M_ISLOWER, M_ISUPPER, M_CENTER, M_LJUST, M_RJUST, M_ZFILL, M_FORMAT,
    M_STR_END,
    // dict
    M_GET = M_STR_END, M_ITEMS, M_KEYS, M_VALUES, M_COPY,
    M_DICT_END,
    // list
    M_LCOUNT = M_DICT_END, M_LINDEX,
    M_LIST_END,
    // loop
    M_CYCLE = M_LIST_END, M_CHANGED,
};
static const char *const method_names[] = {
    "strip", "lstrip", "rstrip", "upper", "lower", "title", "capitalize", "swapcase", "startswith", "endswith",
    "split", "rsplit", "splitlines", "replace", "find", "rfind", "count", "index", "join", "isalpha", "isdigit",
    "isalnum", "isspace", "islower", "isupper", "center", "ljust", "rjust", "zfill", "format",
    "get", "items", "keys", "values", "copy",
    "count", "index",
    "cycle", "changed"};
static const char *const dict_unsafe[] = {"pop", "popitem", "setdefault", "update", "clear", NULL};
static const char *const list_unsafe[] = {"append", "extend", "insert", "pop", "remove", "reverse", "sort", "clear", NULL};

static int call_global(R *r, int id, const jargs *a, jv *out);
static int call_method(R *r, const jfunc *f, const jargs *a, jv *out);
static int call_filter(R *r, jstr name, jv v, const jargs *a, jv *out);
static int call_test(R *r, jstr name, jv v, const jargs *a, bool *out);
static int exec_body(R *r, const nlist *body, jscope *sc);

static int make_func(R *r, int kind, int id, jv self, const char *name, jv *out) {
    jfunc *f = ralloc(r, sizeof *f);
    if (!f) return r_nomem(r);
    *f = (jfunc){.kind = (uint8_t)kind, .id = (uint8_t)id, .self = self, .name = {name, strlen(name)}};
    *out = (jv){.k = V_FUNC, .u.fn = f};
    return SIM_OK;
}

// --- variables, attributes, items -------------------------------------------------------------

static int lookup(R *r, jscope *sc, const char *s, size_t n, jv *out) {
    for (jscope *c = sc; c; c = c->parent) {
        jv *x = scope_get(c, s, n);
        if (x) {
            *out = *x;
            return SIM_OK;
        }
    }
    char name[128];
    if (n < sizeof name) {
        memcpy(name, s, n);
        name[n] = 0;
        json_t *j = r->ctx && !memchr(s, 0, n) ? json_object_get(r->ctx, name) : NULL;
        if (j) {
            TRY(from_json(r, j, out, 0));
            return scope_set(r, r->ctxs, s, n, *out);
        }
        for (int g = 0; g < G_COUNT; g++)
            if (!strcmp(name, global_names[g])) {
                TRY(make_func(r, F_GLOBAL, g, v_none(), global_names[g], out));
                return scope_set(r, r->ctxs, s, n, *out);
            }
    }
    *out = v_undef_name(s, n);
    return SIM_OK;
}

static int find_name(const char *const *names, size_t count, const char *s, size_t n) {
    for (size_t i = 0; i < count; i++)
        if (names[i] && str_is(s, n, names[i])) return (int)i;
    return -1;
}

static jv v_unsafe(jv obj, const char *s, size_t n) {
    jv u = v_undef_attr(obj, s, n);
    u.uh = UH_UNSAFE;
    return u;
}

static int loop_attr(R *r, jloop *lp, const char *s, size_t n, jv *out) {
    size_t len = lp->items->n, i = lp->i;
    if (str_is(s, n, "index")) *out = v_int((int64_t)i + 1);
    else if (str_is(s, n, "index0")) *out = v_int((int64_t)i);
    else if (str_is(s, n, "revindex")) *out = v_int((int64_t)(len - i));
    else if (str_is(s, n, "revindex0")) *out = v_int((int64_t)(len - i - 1));
    else if (str_is(s, n, "first")) *out = v_bool(i == 0);
    else if (str_is(s, n, "last")) *out = v_bool(i + 1 == len);
    else if (str_is(s, n, "length")) *out = v_int((int64_t)len);
    else if (str_is(s, n, "depth")) *out = v_int(lp->depth);
    else if (str_is(s, n, "depth0")) *out = v_int(lp->depth - 1);
    else if (str_is(s, n, "previtem")) *out = i > 0 ? lp->items->v[i - 1] : v_undef();
    else if (str_is(s, n, "nextitem")) *out = i + 1 < len ? lp->items->v[i + 1] : v_undef();
    else if (str_is(s, n, "cycle") || str_is(s, n, "changed")) {
        jv self = {.k = V_LOOP, .u.lp = lp};
        return make_func(r, F_METHOD, s[1] == 'y' ? M_CYCLE : M_CHANGED, self, s[1] == 'y' ? "cycle" : "changed", out);
    } else *out = v_undef_attr((jv){.k = V_LOOP}, s, n);
    return SIM_OK;
}

// obj.name: the sandbox's getattr — a Python attribute (method) first, then the item.
static int get_attr(R *r, jv obj, const char *s, size_t n, jv *out) {
    int m;
    switch (obj.k) {
    case V_UNDEF: return undef_err(r, obj);
    case V_DICT:
        if ((m = find_name(method_names + M_STR_END, M_DICT_END - M_STR_END, s, n)) >= 0)
            return make_func(r, F_METHOD, M_STR_END + m, obj, method_names[M_STR_END + m], out);
        if (find_name(dict_unsafe, 5, s, n) >= 0) {
            *out = v_unsafe(obj, s, n);
            return SIM_OK;
        }
        // fall through
    case V_NS: {
        jv *x = dict_get_s(obj.u.d, s, n);
        *out = x ? *x : v_undef_attr(obj, s, n);
        return SIM_OK;
    }
    case V_STR:
        if ((m = find_name(method_names, M_STR_END, s, n)) >= 0)
            return make_func(r, F_METHOD, m, obj, method_names[m], out);
        break;
    case V_LIST:
        if (obj.sub != SUB_LIST && obj.sub != SUB_TUPLE && obj.sub != SUB_RANGE) break;
        if ((m = find_name(method_names + M_DICT_END, M_LIST_END - M_DICT_END, s, n)) >= 0)
            return make_func(r, F_METHOD, M_DICT_END + m, obj, method_names[M_DICT_END + m], out);
        if (obj.sub == SUB_LIST && find_name(list_unsafe, 8, s, n) >= 0) {
            *out = v_unsafe(obj, s, n);
            return SIM_OK;
        }
        break;
    case V_LOOP: return loop_attr(r, obj.u.lp, s, n, out);
    default: break;
    }
    *out = v_undef_attr(obj, s, n);
    return SIM_OK;
}

// Byte offset of code point k of s[0..n) (n when k is past the end).
static size_t cp_offset(const char *s, size_t n, size_t k) {
    size_t i = 0;
    while (i < n && k > 0) {
        i++;
        while (i < n && ((uint8_t)s[i] & 0xC0) == 0x80) i++;
        k--;
    }
    return i;
}

static int undef_item(R *r, jv obj, jv key, jv *out) {
    if (key.k == V_STR) {
        *out = v_undef_attr(obj, key.u.s, key.n);
        return SIM_OK;
    }
    sink s = {0};
    TRY(v_write(r, &s, key, true, 0));
    *out = v_undef_attr(obj, s.p, s.n);
    out->uh = UH_ITEM;
    return SIM_OK;
}

// obj[key]: the sandbox's getitem — the item first, then a Python attribute.
static int get_item(R *r, jv obj, jv key, jv *out) {
    if (obj.k == V_UNDEF) return undef_err(r, obj);
    if (obj.k == V_DICT) {
        uint64_t h;
        if (!key_hash(key, &h, 0)) {
            long e = dict_find(obj.u.d, key);
            if (e >= 0) {
                *out = obj.u.d->val[e];
                return SIM_OK;
            }
        }
    } else if ((IS_PLAIN(obj) || (obj.k == V_LIST && obj.sub == SUB_RANGE) || obj.k == V_STR) && is_intlike(key)) {
        int64_t i = as_int(key);
        size_t len = obj.k == V_LIST ? obj.u.l->n : u8_count(obj.u.s, obj.n);
        if (i < 0) i += (int64_t)len;
        if (i >= 0 && (uint64_t)i < len) {
            if (obj.k == V_LIST) {
                *out = obj.u.l->v[i];
            } else {
                size_t b = cp_offset(obj.u.s, obj.n, (size_t)i), e = b;
                u8_next(obj.u.s, obj.n, &e);
                *out = v_str(obj.u.s + b, e - b);
            }
            return SIM_OK;
        }
    }
    if (key.k == V_STR) {
        TRY(get_attr(r, obj, key.u.s, key.n, out));
        if (out->k != V_UNDEF || out->uh == UH_UNSAFE) return SIM_OK;
    }
    return undef_item(r, obj, key, out);
}

static int slice_index(R *r, jv v, int64_t *out) {
    if (!is_intlike(v)) {
        if (v.k == V_UNDEF) return undef_err(r, v);
        return rerr(r, SIM_ERR_FORMAT, "slice indices must be integers or None, not %s", tname(v));
    }
    *out = as_int(v);
    return SIM_OK;
}

// obj[start:stop:step] with Python's rules.
static int get_slice(R *r, jv obj, jv start, jv stop, jv stepv, jv *out) {
    if (obj.k == V_UNDEF) return undef_err(r, obj);
    // jinja2 compiles slices to Python's own subscription (not its forgiving
    // getitem), unless it computes the expression at compile time
    if ((obj.k != V_LIST && obj.k != V_STR) || (obj.k == V_LIST && !IS_PLAIN(obj) && obj.sub != SUB_RANGE)) {
        if (r->fold) {
            *out = v_undef();
            return SIM_OK;
        }
        if (obj.k == V_DICT) return rerr(r, SIM_ERR_FORMAT, "unhashable type: 'slice'");
        return rerr(r, SIM_ERR_FORMAT, "'%s' object is not subscriptable", tname(obj));
    }
    int64_t st = 1, a, b;
    if (stepv.k != V_NONE) TRY(slice_index(r, stepv, &st));
    if (st == 0) return rerr(r, SIM_ERR_FORMAT, "slice step cannot be zero");
    int64_t len = (int64_t)(obj.k == V_LIST ? obj.u.l->n : u8_count(obj.u.s, obj.n));
    int64_t lower = st > 0 ? 0 : -1, upper = st > 0 ? len : len - 1;
    if (start.k == V_NONE) a = st < 0 ? upper : lower;
    else {
        TRY(slice_index(r, start, &a));
        if (a < 0) a = a + len < lower ? lower : a + len;
        else if (a > upper) a = upper;
    }
    if (stop.k == V_NONE) b = st < 0 ? lower : upper;
    else {
        TRY(slice_index(r, stop, &b));
        if (b < 0) b = b + len < lower ? lower : b + len;
        else if (b > upper) b = upper;
    }
    int64_t count = 0;
    if (st > 0 && a < b) count = (b - a + st - 1) / st;
    if (st < 0 && b < a) count = (a - b - st - 1) / (-st);
    TRY(step(r, (uint64_t)count / 8));
    if (obj.k == V_LIST) {
        jlist *l = list_new(r, (size_t)count);
        if (!l) return r_nomem(r);
        for (int64_t i = 0; i < count; i++) l->v[i] = obj.u.l->v[a + i * st];
        *out = v_list(l, obj.sub == SUB_TUPLE ? SUB_TUPLE : SUB_LIST);
        if (obj.sub == SUB_RANGE) { // a slice of a range is a range
            l->r0 = obj.u.l->r0 + a * obj.u.l->rs;
            l->r1 = obj.u.l->r0 + b * obj.u.l->rs;
            l->rs = obj.u.l->rs * st;
            out->sub = SUB_RANGE;
        }
        return SIM_OK;
    }
    if (st == 1) { // a view of the same bytes
        size_t ba = cp_offset(obj.u.s, obj.n, (size_t)a), bb = count ? cp_offset(obj.u.s, obj.n, (size_t)b) : ba;
        *out = v_str(obj.u.s + ba, bb - ba);
        return SIM_OK;
    }
    size_t *offs = ralloc(r, ((size_t)len + 1) * sizeof *offs);
    if (!offs) return r_nomem(r);
    size_t i = 0, k = 0;
    while (i < obj.n) {
        offs[k++] = i;
        u8_next(obj.u.s, obj.n, &i);
    }
    offs[k] = obj.n;
    sink s = {0};
    for (int64_t j = 0; j < count; j++) {
        int64_t c = a + j * st;
        TRY(sk_put(r, &s, obj.u.s + offs[c], offs[c + 1] - offs[c]));
    }
    *out = sk_value(&s);
    return SIM_OK;
}

// The items iterating v yields (dict: keys, str: characters, undefined: none).
static int iterate(R *r, jv v, const jlist **out) {
    static const jlist empty = {0};
    switch (v.k) {
    case V_UNDEF: *out = &empty; return SIM_OK;
    case V_LIST:
        if (v.u.l->broken) return rerr(r, SIM_ERR_FORMAT, "%s", v.u.l->broken);
        if (IS_ITER(v)) { // consumed by iterating
            jlist *l = ralloc(r, sizeof *l);
            if (!l) return r_nomem(r);
            *l = (jlist){.v = v.u.l->v + v.u.l->cur, .n = v.u.l->n - v.u.l->cur};
            v.u.l->cur = v.u.l->n;
            *out = l;
            return SIM_OK;
        }
        *out = v.u.l;
        return SIM_OK;
    case V_DICT: {
        jlist *l = ralloc(r, sizeof *l);
        if (!l) return r_nomem(r);
        l->v = v.u.d->key;
        l->n = v.u.d->n;
        *out = l;
        return SIM_OK;
    }
    case V_STR: {
        jlist *l = list_new(r, u8_count(v.u.s, v.n));
        if (!l) return r_nomem(r);
        size_t i = 0, k = 0;
        while (i < v.n) {
            size_t j = i;
            u8_next(v.u.s, v.n, &j);
            l->v[k++] = v_str(v.u.s + i, j - i);
            i = j;
        }
        l->n = k;
        *out = l;
        return SIM_OK;
    }
    default: return rerr(r, SIM_ERR_FORMAT, "'%s' object is not iterable", tname(v));
    }
}

// len(v)
static int length_of(R *r, jv v, int64_t *out) {
    switch (v.k) {
    case V_UNDEF: *out = 0; return SIM_OK;
    case V_STR: *out = (int64_t)u8_count(v.u.s, v.n); return SIM_OK;
    case V_LIST:
        if (IS_ITER(v)) break;
        *out = (int64_t)v.u.l->n;
        return SIM_OK;
    case V_DICT: *out = (int64_t)v.u.d->n; return SIM_OK;
    case V_LOOP: *out = (int64_t)v.u.lp->items->n; return SIM_OK;
    default: break;
    }
    return rerr(r, SIM_ERR_FORMAT, "object of type '%s' has no len()", tname(v));
}

// --- operators -------------------------------------------------------------------------------

static int str_concat(R *r, jv a, jv b, jv *out) {
    sink s = {0};
    TRY(sk_put(r, &s, a.u.s, a.n));
    TRY(sk_put(r, &s, b.u.s, b.n));
    *out = sk_value(&s);
    return SIM_OK;
}

static int repeat(R *r, jv seq, int64_t times, jv *out) {
    if (times < 0) times = 0;
    if (seq.k == V_STR) {
        if (seq.n && (uint64_t)times > r->max_out / seq.n)
            return rerr(r, SIM_ERR_RANGE, "the output is longer than %zu bytes", r->max_out);
        sink s = {0};
        for (int64_t i = 0; i < times; i++) TRY(sk_put(r, &s, seq.u.s, seq.n));
        *out = sk_value(&s);
        return SIM_OK;
    }
    size_t n = seq.u.l->n;
    if (n && (uint64_t)times > (uint64_t)(r->max_steps / n)) return step(r, r->max_steps + 1);
    TRY(step(r, (uint64_t)times * n / 8));
    jlist *l = list_new(r, n * (size_t)times);
    if (!l) return r_nomem(r);
    for (int64_t i = 0; i < times; i++) memcpy(l->v + (size_t)i * n, seq.u.l->v, n * sizeof(jv));
    *out = v_list(l, seq.sub);
    return SIM_OK;
}

static int py_format(R *r, jv fmt, jv args, jv *out);

static int overflow(R *r) { return rerr(r, SIM_ERR_FORMAT, "integer overflow (integers are 64-bit here)"); }

static int binop(R *r, int op, jv a, jv b, jv *out) {
    if (op == OP_MOD && a.k == V_STR) return py_format(r, a, b, out); // str.__mod__ goes first
    if (a.k == V_UNDEF) return undef_err(r, a);
    if (b.k == V_UNDEF) return undef_err(r, b);
    static const char *const sym[] = {[OP_ADD] = "+", [OP_SUB] = "-", [OP_MUL] = "*", [OP_DIV] = "/",
                                      [OP_FLOORDIV] = "//", [OP_MOD] = "%", [OP_POW] = "** or pow()"};
    if (is_num(a) && is_num(b)) {
        bool fl = a.k == V_FLOAT || b.k == V_FLOAT;
        if (op == OP_DIV) {
            double y = as_f(b);
            if (y == 0) return rerr(r, SIM_ERR_FORMAT, "division by zero");
            *out = v_float(as_f(a) / y);
            return SIM_OK;
        }
        if (!fl) {
            int64_t x = as_int(a), y = as_int(b), z;
            switch (op) {
            case OP_ADD:
                if (__builtin_add_overflow(x, y, &z)) return overflow(r);
                break;
            case OP_SUB:
                if (__builtin_sub_overflow(x, y, &z)) return overflow(r);
                break;
            case OP_MUL:
                if (__builtin_mul_overflow(x, y, &z)) return overflow(r);
                break;
            case OP_FLOORDIV:
            case OP_MOD:
                if (y == 0) return rerr(r, SIM_ERR_FORMAT, "integer division or modulo by zero");
                if (x == INT64_MIN && y == -1) {
                    if (op == OP_FLOORDIV) return overflow(r);
                    z = 0;
                    break;
                }
                if (op == OP_FLOORDIV) z = x / y - ((x % y != 0) && ((x < 0) != (y < 0)));
                else {
                    z = x % y;
                    if (z != 0 && ((z < 0) != (y < 0))) z += y;
                }
                break;
            default: // OP_POW
                if (y < 0) {
                    if (x == 0) return rerr(r, SIM_ERR_FORMAT, "0.0 cannot be raised to a negative power");
                    *out = v_float(pow((double)x, (double)y));
                    return SIM_OK;
                }
                z = 1;
                for (int64_t base = x, e = y; e > 0; e >>= 1) {
                    if ((e & 1) && __builtin_mul_overflow(z, base, &z)) return overflow(r);
                    if (e > 1 && __builtin_mul_overflow(base, base, &base)) return overflow(r);
                }
                break;
            }
            *out = v_int(z);
            return SIM_OK;
        }
        double x = as_f(a), y = as_f(b), z;
        switch (op) {
        case OP_ADD: z = x + y; break;
        case OP_SUB: z = x - y; break;
        case OP_MUL: z = x * y; break;
        case OP_FLOORDIV:
        case OP_MOD: {
            if (y == 0) return rerr(r, SIM_ERR_FORMAT, "float division by zero");
            double mod = fmod(x, y), div = (x - mod) / y;
            if (mod != 0) {
                if ((y < 0) != (mod < 0)) mod += y, div -= 1.0;
            } else {
                mod = copysign(0.0, y);
            }
            if (op == OP_MOD) {
                z = mod;
                break;
            }
            if (div != 0) {
                z = floor(div);
                if (div - z > 0.5) z += 1.0;
            } else {
                z = copysign(0.0, x / y);
            }
            break;
        }
        default:
            if (x == 0 && y < 0) return rerr(r, SIM_ERR_FORMAT, "0.0 cannot be raised to a negative power");
            if (x < 0 && y != floor(y)) return rerr(r, SIM_ERR_FORMAT, "a negative number to a fractional power is complex");
            z = pow(x, y);
            break;
        }
        *out = v_float(z);
        return SIM_OK;
    }
    if (op == OP_ADD && a.k == V_STR && b.k == V_STR) return str_concat(r, a, b, out);
    if (op == OP_ADD && IS_PLAIN(a) && IS_PLAIN(b) && a.sub == b.sub) {
        size_t n = a.u.l->n + b.u.l->n;
        jlist *l = list_new(r, n);
        if (!l) return r_nomem(r);
        if (a.u.l->n) memcpy(l->v, a.u.l->v, a.u.l->n * sizeof(jv));
        if (b.u.l->n) memcpy(l->v + a.u.l->n, b.u.l->v, b.u.l->n * sizeof(jv));
        *out = v_list(l, a.sub);
        return SIM_OK;
    }
    if (op == OP_MUL && (a.k == V_STR || IS_PLAIN(a)) && is_intlike(b)) return repeat(r, a, as_int(b), out);
    if (op == OP_MUL && (b.k == V_STR || IS_PLAIN(b)) && is_intlike(a)) return repeat(r, b, as_int(a), out);
    if (op == OP_ADD && (a.k == V_STR || IS_PLAIN(a)))
        return rerr(r, SIM_ERR_FORMAT, "can only concatenate %s (not \"%s\") to %s", tname(a), tname(b), tname(a));
    if (op == OP_MUL && (a.k == V_STR || IS_PLAIN(a) || b.k == V_STR || IS_PLAIN(b)))
        return rerr(r, SIM_ERR_FORMAT, "can't multiply sequence by non-int of type '%s'",
                    tname(a.k == V_STR || IS_PLAIN(a) ? b : a));
    return type_err(r, sym[op], a, b);
}

static int contains(R *r, jv item, jv seq, bool *out) {
    switch (seq.k) {
    case V_STR:
        if (item.k != V_STR) {
            if (item.k == V_UNDEF) return rerr(r, SIM_ERR_FORMAT, "'in <string>' requires string as left operand, not Undefined");
            return rerr(r, SIM_ERR_FORMAT, "'in <string>' requires string as left operand, not %s", tname(item));
        }
        *out = item.n == 0 || memmem(seq.u.s, seq.n, item.u.s, item.n) != NULL;
        return SIM_OK;
    case V_LIST: {
        jlist *l = seq.u.l;
        size_t i = IS_ITER(seq) ? l->cur : 0;
        if (l->broken) return rerr(r, SIM_ERR_FORMAT, "%s", l->broken);
        *out = false;
        TRY(step(r, l->n / 8));
        for (; i < l->n && !*out; i++) *out = py_eq(item, l->v[i], 0);
        if (IS_ITER(seq)) l->cur = i; // an iterator is consumed up to the match
        return SIM_OK;
    }
    case V_DICT: {
        uint64_t h;
        if (key_hash(item, &h, 0)) return rerr(r, SIM_ERR_FORMAT, "unhashable type: '%s'", tname(item));
        *out = dict_find(seq.u.d, item) >= 0;
        return SIM_OK;
    }
    case V_UNDEF: *out = false; return SIM_OK;
    default: return rerr(r, SIM_ERR_FORMAT, "argument of type '%s' is not iterable", tname(seq));
    }
}

static int compare(R *r, int op, jv a, jv b, bool *out) {
    int c;
    switch (op) {
    case OP_EQ: *out = py_eq(a, b, 0); return SIM_OK;
    case OP_NE: *out = !py_eq(a, b, 0); return SIM_OK;
    case OP_IN: return contains(r, a, b, out);
    case OP_NOTIN: TRY(contains(r, a, b, out)); *out = !*out; return SIM_OK;
    default:
        TRY(py_cmp(r, a, b, op_text[op], &c, 0));
        *out = op == OP_LT ? c == -1 : op == OP_LE ? (c == -1 || c == 0) : op == OP_GT ? c == 1 : (c == 1 || c == 0);
        return SIM_OK;
    }
}

// --- evaluation ------------------------------------------------------------------------------

static int eval(R *r, const jnode *e, jscope *sc, jv *out);

static int eval_args(R *r, const jnode *e, jscope *sc, jargs *a) {
    jv *pos = e->l1.n ? ralloc(r, e->l1.n * sizeof *pos) : NULL;
    jv *kwv = e->l2.n ? ralloc(r, e->l2.n * sizeof *kwv) : NULL;
    jstr *kwn = e->l2.n ? ralloc(r, e->l2.n * sizeof *kwn) : NULL;
    if ((e->l1.n && !pos) || (e->l2.n && (!kwv || !kwn))) return r_nomem(r);
    for (uint32_t i = 0; i < e->l1.n; i++) TRY(eval(r, e->l1.v[i], sc, &pos[i]));
    for (uint32_t i = 0; i < e->l2.n; i++) {
        kwn[i] = e->l2.v[i]->name;
        TRY(eval(r, e->l2.v[i]->a, sc, &kwv[i]));
    }
    *a = (jargs){pos, e->l1.n, kwn, kwv, e->l2.n};
    return SIM_OK;
}

// jinja2's Macro.__call__: positional arguments, then keywords for the rest;
// `caller`, `varargs` and `kwargs` exist only when the body names them.
static int call_macro(R *r, const jfunc *f, const jargs *a, jv *out) {
    const jnode *m = f->node; // S_MACRO or S_CALLBLOCK: parameters in l2, body in l1, MF_* in op
    jscope *sc = scope_new(r, f->closure);
    if (!sc) return r_nomem(r);
    TRY(predeclare(r, sc, m->undef, m->nundef));
    int nm = (int)MIN(f->name.n, 60);
    size_t np = m->l2.n, given = MIN(a->npos, np);
    bool *used = a->nkw ? ralloc(r, a->nkw) : NULL;
    if (a->nkw && !used) return r_nomem(r);
    if (a->nkw) memset(used, 0, a->nkw);
    for (size_t i = 0; i < np; i++) {
        const jstr *pn = &m->l2.v[i]->name;
        jv v = {0};
        bool have = i < given;
        if (have) v = a->pos[i];
        for (size_t k = 0; !have && k < a->nkw; k++)
            if (!used[k] && a->kwn[k].n == pn->n && !memcmp(a->kwn[k].s, pn->s, pn->n)) v = a->kwv[k], used[k] = have = true;
        TRY(scope_set(r, sc, pn->s, pn->n, v_undef())); // defaults see the earlier parameters
        if (!have) {
            v = (jv){.k = V_UNDEF, .uh = UH_PARAM, .n = pn->n, .u.s = pn->s};
            if (m->l2.v[i]->a) TRY(eval(r, m->l2.v[i]->a, sc, &v));
        }
        TRY(scope_set(r, sc, pn->s, pn->n, v));
    }
    if (m->op & MF_CALLER) {
        jv caller = {.k = V_UNDEF, .uh = UH_NOCALLER};
        for (size_t k = 0; k < a->nkw; k++)
            if (!used[k] && str_is(a->kwn[k].s, a->kwn[k].n, "caller")) caller = a->kwv[k], used[k] = true;
        TRY(scope_set(r, sc, "caller", 6, caller));
    }
    if (m->op & MF_KWARGS) {
        jdict *d = dict_new(r);
        if (!d) return r_nomem(r);
        for (size_t k = 0; k < a->nkw; k++)
            if (!used[k]) TRY(dict_set(r, d, v_str(a->kwn[k].s, a->kwn[k].n), a->kwv[k]));
        TRY(scope_set(r, sc, "kwargs", 6, (jv){.k = V_DICT, .u.d = d}));
    } else {
        for (size_t k = 0; k < a->nkw; k++) {
            if (used[k]) continue;
            if (str_is(a->kwn[k].s, a->kwn[k].n, "caller"))
                return rerr(r, SIM_ERR_FORMAT,
                            "macro '%.*s' was invoked with two values for the special caller argument. This is most "
                            "likely a bug.",
                            nm, f->name.s);
            return rerr(r, SIM_ERR_FORMAT, "macro '%.*s' takes no keyword argument '%.*s'", nm, f->name.s,
                        (int)MIN(a->kwn[k].n, 60), a->kwn[k].s);
        }
    }
    if (m->op & MF_VARARGS) {
        jlist *l = list_new(r, a->npos - given);
        if (!l) return r_nomem(r);
        for (size_t i = given; i < a->npos; i++) l->v[i - given] = a->pos[i];
        TRY(scope_set(r, sc, "varargs", 7, v_list(l, SUB_TUPLE)));
    } else if (a->npos > np) {
        return rerr(r, SIM_ERR_FORMAT, "macro '%.*s' takes not more than %zu argument(s)", nm, f->name.s, np);
    }
    sink s = {0}, *saved = r->out;
    r->out = &s;
    int st = exec_body(r, &m->l1, sc);
    r->out = saved;
    if (st < 0) return st;
    *out = sk_value(&s);
    return SIM_OK;
}

static int call_value(R *r, jv f, const jargs *a, jv *out) {
    if (f.k == V_UNDEF) return undef_err(r, f);
    if (f.k != V_FUNC) return rerr(r, SIM_ERR_FORMAT, "'%s' object is not callable", tname(f));
    switch (f.u.fn->kind) {
    case F_GLOBAL: return call_global(r, f.u.fn->id, a, out);
    case F_METHOD: return call_method(r, f.u.fn, a, out);
    default: return call_macro(r, f.u.fn, a, out);
    }
}

// Values jinja2's optimizer keeps as constants (compiler.has_safe_repr);
// *size adds up their bytes.
static bool safe_const(jv v, int depth, size_t *size) {
    if (depth > 100) return false;
    *size += sizeof(jv);
    switch (v.k) {
    case V_NONE:
    case V_BOOL:
    case V_INT:
    case V_FLOAT: return true;
    case V_STR: *size += v.n; return true;
    case V_LIST:
        if (v.sub != SUB_RANGE && !IS_PLAIN(v)) return false;
        for (size_t i = 0; i < v.u.l->n; i++)
            if (!safe_const(v.u.l->v[i], depth + 1, size)) return false;
        return true;
    case V_DICT:
        for (size_t i = 0; i < v.u.d->n; i++)
            if (!safe_const(v.u.d->key[i], depth + 1, size) || !safe_const(v.u.d->val[i], depth + 1, size)) return false;
        return true;
    default: return false;
    }
}

static int eval_inner(R *r, const jnode *e, jscope *sc, jv *out) {
    jv a, b;
    switch (e->kind) {
    case E_CONST: *out = e->val; return SIM_OK;
    case E_NAME:
        if (r->fold) return FOLD_IMPOSSIBLE;
        return lookup(r, sc, e->name.s, e->name.n, out);
    case E_CAPTURED:
        if (r->fold) return FOLD_IMPOSSIBLE;
        *out = r->captured;
        return SIM_OK;
    case E_LIST:
    case E_TUPLE: {
        jlist *l = list_new(r, e->l1.n);
        if (!l) return r_nomem(r);
        for (uint32_t i = 0; i < e->l1.n; i++) TRY(eval(r, e->l1.v[i], sc, &l->v[i]));
        *out = v_list(l, e->kind == E_TUPLE ? SUB_TUPLE : SUB_LIST);
        return SIM_OK;
    }
    case E_DICT: {
        jdict *d = dict_new(r);
        if (!d) return r_nomem(r);
        for (uint32_t i = 0; i < e->l1.n; i++) {
            TRY(eval(r, e->l1.v[i], sc, &a));
            TRY(eval(r, e->l2.v[i], sc, &b));
            r->pos = e->pos;
            TRY(dict_set(r, d, a, b));
        }
        *out = (jv){.k = V_DICT, .u.d = d};
        return SIM_OK;
    }
    case E_ATTR:
        TRY(eval(r, e->a, sc, &a));
        return get_attr(r, a, e->name.s, e->name.n, out);
    case E_ITEM:
        TRY(eval(r, e->a, sc, &a));
        if (e->b->kind == E_SLICE) {
            jv x[3] = {v_none(), v_none(), v_none()};
            const jnode *p[3] = {e->b->a, e->b->b, e->b->c};
            for (int i = 0; i < 3; i++)
                if (p[i]) TRY(eval(r, p[i], sc, &x[i]));
            return get_slice(r, a, x[0], x[1], x[2], out);
        }
        TRY(eval(r, e->b, sc, &b));
        return get_item(r, a, b, out);
    case E_CALL: {
        jargs args;
        if (r->fold) return FOLD_IMPOSSIBLE; // the sandbox never calls at compile time
        TRY(eval(r, e->a, sc, &a));
        TRY(eval_args(r, e, sc, &args));
        return call_value(r, a, &args, out);
    }
    case E_FILTER: {
        jargs args;
        static const char *const ctx_filters[] = {"select", "reject", "selectattr", "rejectattr", "map"};
        if (r->fold && find_name(ctx_filters, ARRAY_LEN(ctx_filters), e->name.s, e->name.n) >= 0)
            return FOLD_IMPOSSIBLE; // filters that take the context run at run time
        TRY(eval(r, e->a, sc, &a));
        TRY(eval_args(r, e, sc, &args));
        return call_filter(r, e->name, a, &args, out);
    }
    case E_TEST: {
        jargs args;
        bool res = false;
        TRY(eval(r, e->a, sc, &a));
        TRY(eval_args(r, e, sc, &args));
        TRY(call_test(r, e->name, a, &args, &res));
        *out = v_bool(e->op ? !res : res);
        return SIM_OK;
    }
    case E_NOT:
        TRY(eval(r, e->a, sc, &a));
        *out = v_bool(!truthy(a));
        return SIM_OK;
    case E_NEG:
    case E_POS:
        TRY(eval(r, e->a, sc, &a));
        if (a.k == V_UNDEF) return undef_err(r, a);
        if (a.k == V_FLOAT) *out = v_float(e->kind == E_NEG ? -a.u.f : a.u.f);
        else if (is_intlike(a)) {
            if (e->kind == E_NEG && as_int(a) == INT64_MIN) return overflow(r);
            *out = v_int(e->kind == E_NEG ? -as_int(a) : as_int(a));
        } else return rerr(r, SIM_ERR_FORMAT, "bad operand type for unary %c: '%s'", e->kind == E_NEG ? '-' : '+', tname(a));
        return SIM_OK;
    case E_BIN:
        TRY(eval(r, e->a, sc, &a));
        TRY(eval(r, e->b, sc, &b));
        r->pos = e->pos;
        if (e->negbase && is_num(a) && as_f(a) < 0) {
            // jinja2 emits a folded negative base without parentheses: `-3 ** x` runs as -(3 ** x)
            TRY(binop(r, OP_POW, a.k == V_FLOAT ? v_float(-a.u.f) : v_int(-as_int(a)), b, &a));
            return binop(r, OP_SUB, v_int(0), a, out);
        }
        return binop(r, e->op, a, b, out);
    case E_AND:
    case E_OR:
        TRY(eval(r, e->a, sc, &a));
        if (truthy(a) == (e->kind == E_OR)) {
            *out = a;
            return SIM_OK;
        }
        return eval(r, e->b, sc, out);
    case E_CONCAT: {
        sink s = {0};
        for (uint32_t i = 0; i < e->l1.n; i++) {
            TRY(eval(r, e->l1.v[i], sc, &a));
            if (a.k == V_STR) TRY(sk_put(r, &s, a.u.s, a.n));
            else TRY(v_write(r, &s, a, false, 0));
        }
        *out = sk_value(&s);
        return SIM_OK;
    }
    case E_CMP: {
        TRY(eval(r, e->a, sc, &a));
        for (uint32_t i = 0; i < e->l1.n; i++) {
            bool res = false;
            TRY(eval(r, e->l1.v[i]->a, sc, &b));
            r->pos = e->l1.v[i]->pos;
            TRY(compare(r, e->l1.v[i]->op, a, b, &res));
            if (!res) {
                *out = v_bool(false);
                return SIM_OK;
            }
            a = b;
        }
        *out = v_bool(true);
        return SIM_OK;
    }
    case E_COND:
        TRY(eval(r, e->b, sc, &a));
        if (truthy(a)) return eval(r, e->a, sc, out);
        if (e->c) return eval(r, e->c, sc, out);
        *out = v_undef();
        return SIM_OK;
    default: return rerr(r, SIM_ERR_FORMAT, "internal error: node %d is not an expression", e->kind);
    }
}

static int eval(R *r, const jnode *e, jscope *sc, jv *out) {
    if (r->depth >= JINJA_MAX_DEPTH)
        return rerr(r, SIM_ERR_RANGE, "the template nests too deeply (more than %d levels)", JINJA_MAX_DEPTH);
    uint32_t saved = r->pos;
    r->pos = e->pos;
    TRY(step(r, 1));
    r->depth++;
    int st = eval_inner(r, e, sc, out);
    r->depth--;
    if (st == SIM_OK) r->pos = saved;
    return st;
}

// --- statements ----------------------------------------------------------------------------

static int assign(R *r, const jnode *t, jv v, jscope *sc) {
    if (t->kind == E_NAME) return scope_set(r, sc, t->name.s, t->name.n, v);
    if (t->kind == E_ATTR) { // ns.attr
        jv ns;
        TRY(lookup(r, sc, t->a->name.s, t->a->name.n, &ns));
        if (ns.k != V_NS) return rerr(r, SIM_ERR_FORMAT, "cannot assign attribute on non-namespace object");
        return dict_set(r, ns.u.d, v_str(t->name.s, t->name.n), v);
    }
    const jlist *items; // tuple unpacking
    TRY(iterate(r, v, &items));
    if (items->n < t->l1.n)
        return rerr(r, SIM_ERR_FORMAT, "not enough values to unpack (expected %u, got %zu)", t->l1.n, items->n);
    if (items->n > t->l1.n) return rerr(r, SIM_ERR_FORMAT, "too many values to unpack (expected %u)", t->l1.n);
    for (uint32_t i = 0; i < t->l1.n; i++) TRY(assign(r, t->l1.v[i], items->v[i], sc));
    return SIM_OK;
}

// Renders a block's body (l1) into a new string, in a frame of its own.
static int capture(R *r, const jnode *blk, jscope *sc, jv *out) {
    const nlist *body = &blk->l1;
    jscope *inner = scope_new(r, sc);
    if (!inner) return r_nomem(r);
    TRY(predeclare(r, inner, blk->undef, blk->nundef));
    sink s = {0}, *saved = r->out;
    r->out = &s;
    int st = exec_body(r, body, inner);
    r->out = saved;
    if (st < 0) return st;
    *out = sk_value(&s);
    return SIM_OK;
}

static int filter_captured(R *r, const jnode *chain, jscope *sc, jv *v) {
    if (!chain) return SIM_OK;
    jv saved = r->captured;
    r->captured = *v;
    int st = eval(r, chain, sc, v);
    r->captured = saved;
    return st;
}

static int exec_for(R *r, const jnode *s, jscope *sc) {
    jv it;
    const jlist *items;
    TRY(eval(r, s->b, sc, &it));
    TRY(iterate(r, it, &items));
    jscope *inner = scope_new(r, sc);
    if (!inner) return r_nomem(r);
    if (s->c) { // the `if` filter decides which items the loop sees (loop.length counts those)
        lvec kept = {0};
        for (size_t i = 0; i < items->n; i++) {
            jv keep;
            TRY(step(r, 1));
            inner->n = 0;
            TRY(assign(r, s->a, items->v[i], inner));
            TRY(eval(r, s->c, inner, &keep));
            if (truthy(keep)) TRY(lv_push(r, &kept, items->v[i]));
        }
        jlist *l = ralloc(r, sizeof *l);
        if (!l) return r_nomem(r);
        *l = (jlist){.v = kept.v, .n = kept.n};
        items = l;
    }
    jloop *lp = ralloc(r, sizeof *lp);
    if (!lp) return r_nomem(r);
    *lp = (jloop){.items = items, .depth = 1};
    bool completed = false; // jinja2 runs `else` unless a turn reached the end of the body
    for (size_t i = 0; i < items->n; i++) {
        TRY(step(r, 1));
        lp->i = i;
        inner->n = 0; // each turn starts from the enclosing scope's values
        TRY(predeclare(r, inner, s->undef, s->nundef));
        TRY(assign(r, s->a, items->v[i], inner));
        TRY(scope_set(r, inner, "loop", 4, (jv){.k = V_LOOP, .u.lp = lp}));
        int st = exec_body(r, &s->l1, inner);
        if (st == CTL_BREAK) break;
        if (st < 0) return st;
        completed |= st == SIM_OK;
    }
    if (completed || !s->l2.n) return SIM_OK;
    jscope *els = scope_new(r, sc);
    if (!els) return r_nomem(r);
    TRY(predeclare(r, els, s->undef2, s->nundef2));
    return exec_body(r, &s->l2, els);
}

static int exec(R *r, const jnode *s, jscope *sc) {
    if (r->depth >= JINJA_MAX_DEPTH)
        return rerr(r, SIM_ERR_RANGE, "the template nests too deeply (more than %d levels)", JINJA_MAX_DEPTH);
    r->pos = s->pos;
    TRY(step(r, 1));
    r->depth++;
    int st = SIM_OK;
    jv v;
    switch (s->kind) {
    case S_TEXT: {
        const char *t = s->name.s;
        size_t n = s->name.n, b = 0, e = n;
        if (r->trim && (s->op & TX_TRIM) && t[0] == '\n') b = 1;
        if (r->lstrip && (s->op & TX_LSTRIP) && (s->op & TX_TAILWS) && (s->x1 > b || b || (s->op & TX_LINESTART)))
            e = s->x1;
        st = sk_put(r, r->out, t + b, e - b);
        break;
    }
    case S_OUT:
        st = eval(r, s->a, sc, &v);
        if (st == SIM_OK) st = v.k == V_STR ? sk_put(r, r->out, v.u.s, v.n) : v_write(r, r->out, v, false, 0);
        break;
    case S_IF:
        st = eval(r, s->a, sc, &v);
        if (st == SIM_OK) st = exec_body(r, truthy(v) ? &s->l1 : &s->l2, sc);
        break;
    case S_FOR: st = exec_for(r, s, sc); break;
    case S_SET:
        st = eval(r, s->b, sc, &v);
        if (st == SIM_OK) st = assign(r, s->a, v, sc);
        break;
    case S_SETBLOCK:
        st = capture(r, s, sc, &v);
        if (st == SIM_OK) st = filter_captured(r, s->c, sc, &v);
        if (st == SIM_OK) st = assign(r, s->a, v, sc);
        break;
    case S_FILTERBLOCK:
        st = capture(r, s, sc, &v);
        if (st == SIM_OK) st = filter_captured(r, s->c, sc, &v);
        if (st == SIM_OK) st = v.k == V_STR ? sk_put(r, r->out, v.u.s, v.n) : v_write(r, r->out, v, false, 0);
        break;
    case S_MACRO: {
        jfunc *f = ralloc(r, sizeof *f);
        if (!f) {
            st = r_nomem(r);
            break;
        }
        *f = (jfunc){.kind = F_MACRO, .node = s, .closure = sc, .name = s->name};
        st = scope_set(r, sc, s->name.s, s->name.n, (jv){.k = V_FUNC, .u.fn = f});
        break;
    }
    case S_CALLBLOCK: {
        const jnode *call = s->a;
        jfunc *caller = ralloc(r, sizeof *caller);
        jargs a;
        jv fn;
        if (!caller) {
            st = r_nomem(r);
            break;
        }
        *caller = (jfunc){.kind = F_CALLER, .node = s, .closure = sc, .name = {"caller", 6}};
        if ((st = eval(r, call->a, sc, &fn)) != SIM_OK || (st = eval_args(r, call, sc, &a)) != SIM_OK) break;
        jv *kwv = ralloc(r, (a.nkw + 1) * sizeof *kwv);
        jstr *kwn = ralloc(r, (a.nkw + 1) * sizeof *kwn);
        if (!kwv || !kwn) {
            st = r_nomem(r);
            break;
        }
        if (a.nkw) memcpy(kwv, a.kwv, a.nkw * sizeof *kwv), memcpy(kwn, a.kwn, a.nkw * sizeof *kwn);
        kwv[a.nkw] = (jv){.k = V_FUNC, .u.fn = caller};
        kwn[a.nkw] = (jstr){"caller", 6};
        a.kwv = kwv;
        a.kwn = kwn;
        a.nkw++;
        st = call_value(r, fn, &a, &v);
        if (st == SIM_OK) st = v.k == V_STR ? sk_put(r, r->out, v.u.s, v.n) : v_write(r, r->out, v, false, 0);
        break;
    }
    case S_WITH: {
        jscope *inner = scope_new(r, sc);
        if (!inner) {
            st = r_nomem(r);
            break;
        }
        st = predeclare(r, inner, s->undef, s->nundef);
        for (uint32_t i = 0; i < s->l2.n && st == SIM_OK; i++) {
            st = eval(r, s->l2.v[i]->b, sc, &v);
            if (st == SIM_OK) st = assign(r, s->l2.v[i]->a, v, inner);
        }
        if (st == SIM_OK) st = exec_body(r, &s->l1, inner);
        break;
    }
    case S_BODY: { // HF's generation block: a call block, so a frame of its own
        jscope *inner = scope_new(r, sc);
        st = inner ? predeclare(r, inner, s->undef, s->nundef) : r_nomem(r);
        if (st == SIM_OK) st = exec_body(r, &s->l1, inner);
        break;
    }
    case S_BREAK: st = CTL_BREAK; break;
    case S_CONTINUE: st = CTL_CONTINUE; break;
    default: st = rerr(r, SIM_ERR_FORMAT, "internal error: node %d is not a statement", s->kind);
    }
    r->depth--;
    return st;
}

static int exec_body(R *r, const nlist *body, jscope *sc) {
    for (uint32_t i = 0; i < body->n; i++) {
        int st = exec(r, body->v[i], sc);
        if (st != SIM_OK) return st;
    }
    return SIM_OK;
}

// --- argument helpers ------------------------------------------------------------------------

// Python's argument binding: positional, then keywords by name.
static int bind(R *r, const char *fname, const jargs *a, const char *const *names, int n, jv *vals, bool *have) {
    for (int i = 0; i < n; i++) have[i] = false, vals[i] = v_none();
    if (a->npos > (size_t)n)
        return rerr(r, SIM_ERR_FORMAT, "%s() takes at most %d argument(s) (%zu given)", fname, n, a->npos);
    for (size_t i = 0; i < a->npos; i++) vals[i] = a->pos[i], have[i] = true;
    for (size_t k = 0; k < a->nkw; k++) {
        int i = find_name(names, (size_t)n, a->kwn[k].s, a->kwn[k].n);
        if (i < 0)
            return rerr(r, SIM_ERR_FORMAT, "%s() got an unexpected keyword argument '%.*s'", fname,
                        (int)MIN(a->kwn[k].n, 60), a->kwn[k].s);
        if (have[i]) return rerr(r, SIM_ERR_FORMAT, "%s() got multiple values for argument '%s'", fname, names[i]);
        vals[i] = a->kwv[k];
        have[i] = true;
    }
    return SIM_OK;
}

static int need_str(R *r, const char *fname, jv v) {
    if (v.k == V_STR) return SIM_OK;
    if (v.k == V_UNDEF) return undef_err(r, v);
    return rerr(r, SIM_ERR_FORMAT, "%s() argument must be str, not %s", fname, tname(v));
}

static int need_int(R *r, const char *fname, jv v, int64_t *out) {
    if (is_intlike(v)) {
        *out = as_int(v);
        return SIM_OK;
    }
    if (v.k == V_UNDEF) return undef_err(r, v);
    return rerr(r, SIM_ERR_FORMAT, "%s(): '%s' object cannot be interpreted as an integer", fname, tname(v));
}

static int no_args(R *r, const char *fname, const jargs *a) {
    if (a->npos || a->nkw) return rerr(r, SIM_ERR_FORMAT, "%s() takes no arguments", fname);
    return SIM_OK;
}

// --- strings ----------------------------------------------------------------------------------

enum { CASE_UPPER, CASE_LOWER, CASE_CAPITALIZE, CASE_TITLE, CASE_JTITLE, CASE_SWAP };

static int change_case(R *r, jv s, int mode, jv *out) {
    sink o = {0};
    bool prev_cased = false, word_start = true;
    for (size_t i = 0, k = 0; i < s.n; k++) {
        uint32_t c = u8_next(s.u.s, s.n, &i), m;
        bool up;
        switch (mode) {
        case CASE_UPPER: up = true; break;
        case CASE_LOWER: up = false; break;
        case CASE_CAPITALIZE: up = k == 0; break;
        case CASE_TITLE: up = !prev_cased; break;
        case CASE_JTITLE: up = word_start; break;
        default: up = cp_is_lower(c); break;
        }
        if (mode == CASE_SWAP && !cp_is_cased(c)) m = c;
        else m = up ? cp_upper(c) : cp_lower(c);
        if (c == 0xdf && up) TRY(sk_puts(r, &o, (mode == CASE_UPPER || mode == CASE_JTITLE || mode == CASE_SWAP) ? "SS" : "Ss"));
        else TRY(sk_cp(r, &o, m));
        prev_cased = cp_is_cased(c);
        word_start = c == '-' || c == '(' || c == '{' || c == '[' || c == '<' || py_isspace(c);
    }
    *out = sk_value(&o);
    return SIM_OK;
}

static bool in_chars(uint32_t c, const jv *chars) {
    if (!chars) return py_isspace(c);
    for (size_t i = 0; i < chars->n;)
        if (u8_next(chars->u.s, chars->n, &i) == c) return true;
    return false;
}

static jv strip(jv s, const jv *chars, bool left, bool right) {
    size_t b = 0, e = s.n;
    while (left && b < e) {
        size_t j = b;
        if (!in_chars(u8_next(s.u.s, e, &j), chars)) break;
        b = j;
    }
    while (right && e > b) {
        size_t j = u8_prev(s.u.s, e), k = j;
        if (!in_chars(u8_next(s.u.s, e, &k), chars)) break;
        e = j;
    }
    return v_str(s.u.s + b, e - b);
}

static const char *find_sub(const char *s, size_t n, const char *sub, size_t m) {
    if (m == 0) return s;
    return memmem(s, n, sub, m);
}

// Python's str.split / str.rsplit.
static int split(R *r, jv s, const jv *sep, int64_t maxsplit, bool from_right, jv *out) {
    lvec parts = {0};
    const char *p = s.u.s;
    size_t n = s.n;
    if (sep && sep->n == 0) return rerr(r, SIM_ERR_FORMAT, "empty separator");
    if (!from_right) {
        size_t i = 0;
        if (!sep) {
            for (;;) {
                i += ws_span(p + i, n - i);
                if (i >= n) break;
                if (maxsplit >= 0 && (int64_t)parts.n >= maxsplit) {
                    TRY(lv_push(r, &parts, v_str(p + i, n - i)));
                    break;
                }
                size_t j = i;
                while (j < n) {
                    size_t k = j;
                    if (py_isspace(u8_next(p, n, &k))) break;
                    j = k;
                }
                TRY(lv_push(r, &parts, v_str(p + i, j - i)));
                i = j;
            }
        } else {
            for (;;) {
                const char *f = maxsplit >= 0 && (int64_t)parts.n >= maxsplit ? NULL : find_sub(p + i, n - i, sep->u.s, sep->n);
                if (!f) {
                    TRY(lv_push(r, &parts, v_str(p + i, n - i)));
                    break;
                }
                TRY(lv_push(r, &parts, v_str(p + i, (size_t)(f - (p + i)))));
                i = (size_t)(f - p) + sep->n;
            }
        }
    } else { // collect from the right, then reverse
        size_t e = n;
        if (!sep) {
            for (;;) {
                e = ws_rtrim(p, e);
                if (e == 0) break;
                if (maxsplit >= 0 && (int64_t)parts.n >= maxsplit) {
                    TRY(lv_push(r, &parts, v_str(p, e)));
                    break;
                }
                size_t b = e;
                while (b > 0) {
                    size_t j = u8_prev(p, b), k = j;
                    if (py_isspace(u8_next(p, b, &k))) break;
                    b = j;
                }
                TRY(lv_push(r, &parts, v_str(p + b, e - b)));
                e = b;
            }
        } else {
            for (;;) {
                const char *f = NULL;
                if (!(maxsplit >= 0 && (int64_t)parts.n >= maxsplit) && e >= sep->n)
                    for (size_t b = e - sep->n + 1; b-- > 0;)
                        if (!memcmp(p + b, sep->u.s, sep->n)) {
                            f = p + b;
                            break;
                        }
                if (!f) {
                    TRY(lv_push(r, &parts, v_str(p, e)));
                    break;
                }
                TRY(lv_push(r, &parts, v_str(f + sep->n, (size_t)(p + e - f) - sep->n)));
                e = (size_t)(f - p);
            }
        }
        for (size_t i = 0; i < parts.n / 2; i++) {
            jv t = parts.v[i];
            parts.v[i] = parts.v[parts.n - 1 - i];
            parts.v[parts.n - 1 - i] = t;
        }
    }
    TRY(step(r, parts.n / 8));
    return lv_done(r, &parts, SUB_LIST, out);
}

// Length of the line break at s[i] (Python's str.splitlines boundaries), 0 if none.
static size_t line_break(const char *s, size_t n, size_t i) {
    uint8_t c = (uint8_t)s[i];
    if (c == '\r') return i + 1 < n && s[i + 1] == '\n' ? 2 : 1;
    if (c == '\n' || c == 0x0b || c == 0x0c || (c >= 0x1c && c <= 0x1e)) return 1;
    if (c == 0xc2 && i + 1 < n && (uint8_t)s[i + 1] == 0x85) return 2;
    if (c == 0xe2 && i + 2 < n && (uint8_t)s[i + 1] == 0x80 && ((uint8_t)s[i + 2] == 0xa8 || (uint8_t)s[i + 2] == 0xa9))
        return 3;
    return 0;
}

static int splitlines(R *r, jv s, bool keepends, jv *out) {
    lvec parts = {0};
    size_t b = 0;
    for (size_t i = 0; i < s.n;) {
        size_t k = line_break(s.u.s, s.n, i);
        if (!k) {
            i++;
            continue;
        }
        TRY(lv_push(r, &parts, v_str(s.u.s + b, (keepends ? i + k : i) - b)));
        i += k;
        b = i;
    }
    if (b < s.n) TRY(lv_push(r, &parts, v_str(s.u.s + b, s.n - b)));
    return lv_done(r, &parts, SUB_LIST, out);
}

static int replace(R *r, jv s, jv old, jv new, int64_t count, jv *out) {
    sink o = {0};
    size_t i = 0;
    int64_t done = 0;
    if (old.n == 0) {
        while (count < 0 || done < count) {
            TRY(sk_put(r, &o, new.u.s, new.n));
            done++;
            if (i >= s.n) break;
            size_t j = i;
            u8_next(s.u.s, s.n, &j);
            TRY(sk_put(r, &o, s.u.s + i, j - i));
            i = j;
        }
    } else {
        while (count < 0 || done < count) {
            const char *f = memmem(s.u.s + i, s.n - i, old.u.s, old.n);
            if (!f) break;
            TRY(sk_put(r, &o, s.u.s + i, (size_t)(f - (s.u.s + i))));
            TRY(sk_put(r, &o, new.u.s, new.n));
            i = (size_t)(f - s.u.s) + old.n;
            done++;
        }
    }
    TRY(sk_put(r, &o, s.u.s + i, s.n - i));
    *out = sk_value(&o);
    return SIM_OK;
}

// s padded to width code points with fill: where 0 left, 1 right (ljust), 2 center.
static int pad(R *r, jv s, int64_t width, jv fill, int where, jv *out) {
    int64_t len = (int64_t)u8_count(s.u.s, s.n);
    if (fill.k != V_STR || u8_count(fill.u.s, fill.n) != 1)
        return rerr(r, SIM_ERR_FORMAT, "The fill character must be exactly one character long");
    if (width <= len) {
        *out = s;
        return SIM_OK;
    }
    if (width - len > (int64_t)r->max_out) return rerr(r, SIM_ERR_RANGE, "the output is longer than %zu bytes", r->max_out);
    int64_t marg = width - len, left = where == 0 ? marg : where == 1 ? 0 : marg / 2 + (marg & width & 1);
    sink o = {0};
    for (int64_t i = 0; i < left; i++) TRY(sk_put(r, &o, fill.u.s, fill.n));
    TRY(sk_put(r, &o, s.u.s, s.n));
    for (int64_t i = 0; i < marg - left; i++) TRY(sk_put(r, &o, fill.u.s, fill.n));
    *out = sk_value(&o);
    return SIM_OK;
}

static int str_test(jv s, int which) { // isalpha isdigit isalnum isspace islower isupper
    if (s.n == 0) return 0;
    bool cased = false;
    for (size_t i = 0; i < s.n;) {
        uint32_t c = u8_next(s.u.s, s.n, &i);
        switch (which) {
        case M_ISALPHA: if (!cp_is_alpha(c)) return 0; break;
        case M_ISDIGIT: if (!cp_is_digit(c)) return 0; break;
        case M_ISALNUM: if (!cp_is_alpha(c) && !cp_is_digit(c)) return 0; break;
        case M_ISSPACE: if (!py_isspace(c)) return 0; break;
        case M_ISLOWER: if (cp_is_upper(c)) return 0; cased |= cp_is_lower(c); break;
        default: if (cp_is_lower(c) && c != 0xdf) return 0; if (c == 0xdf) return 0; cased |= cp_is_upper(c); break;
        }
    }
    return which == M_ISLOWER || which == M_ISUPPER ? cased : 1;
}

// --- methods ----------------------------------------------------------------------------------

static int affix(R *r, jv s, jv arg, bool end, bool *out) {
    const jlist *opts;
    jlist one = {.v = &arg, .n = 1};
    if (arg.k == V_LIST && arg.sub == SUB_TUPLE) opts = arg.u.l;
    else if (arg.k == V_STR) opts = &one;
    else return rerr(r, SIM_ERR_FORMAT, "%s first arg must be str or a tuple of str, not %s", end ? "endswith" : "startswith", tname(arg));
    *out = false;
    for (size_t i = 0; i < opts->n; i++) {
        jv p = opts->v[i];
        if (p.k != V_STR) return rerr(r, SIM_ERR_FORMAT, "tuple for startswith must only contain str, not %s", tname(p));
        if (p.n <= s.n && !memcmp(s.u.s + (end ? s.n - p.n : 0), p.u.s, p.n)) *out = true;
    }
    return SIM_OK;
}

static int call_method(R *r, const jfunc *f, const jargs *a, jv *out) {
    jv s = f->self, v[3];
    bool h[3];
    const char *fname = method_names[f->id];
    switch (f->id) {
    case M_STRIP:
    case M_LSTRIP:
    case M_RSTRIP: {
        static const char *const p[] = {"chars"};
        TRY(bind(r, fname, a, p, 1, v, h));
        if (v[0].k != V_NONE) TRY(need_str(r, fname, v[0]));
        *out = strip(s, v[0].k == V_STR ? &v[0] : NULL, f->id != M_RSTRIP, f->id != M_LSTRIP);
        return SIM_OK;
    }
    case M_UPPER: TRY(no_args(r, fname, a)); return change_case(r, s, CASE_UPPER, out);
    case M_LOWER: TRY(no_args(r, fname, a)); return change_case(r, s, CASE_LOWER, out);
    case M_TITLE: TRY(no_args(r, fname, a)); return change_case(r, s, CASE_TITLE, out);
    case M_CAPITALIZE: TRY(no_args(r, fname, a)); return change_case(r, s, CASE_CAPITALIZE, out);
    case M_SWAPCASE: TRY(no_args(r, fname, a)); return change_case(r, s, CASE_SWAP, out);
    case M_STARTSWITH:
    case M_ENDSWITH: {
        static const char *const p[] = {"prefix"};
        bool res = false;
        TRY(bind(r, fname, a, p, 1, v, h));
        if (!h[0]) return rerr(r, SIM_ERR_FORMAT, "%s() takes at least 1 argument (0 given)", fname);
        TRY(affix(r, s, v[0], f->id == M_ENDSWITH, &res));
        *out = v_bool(res);
        return SIM_OK;
    }
    case M_SPLIT:
    case M_RSPLIT: {
        static const char *const p[] = {"sep", "maxsplit"};
        int64_t maxsplit = -1;
        TRY(bind(r, fname, a, p, 2, v, h));
        if (v[0].k != V_NONE) TRY(need_str(r, fname, v[0]));
        if (h[1]) TRY(need_int(r, fname, v[1], &maxsplit));
        return split(r, s, v[0].k == V_STR ? &v[0] : NULL, maxsplit, f->id == M_RSPLIT, out);
    }
    case M_SPLITLINES: {
        static const char *const p[] = {"keepends"};
        TRY(bind(r, fname, a, p, 1, v, h));
        return splitlines(r, s, truthy(v[0]), out);
    }
    case M_REPLACE: {
        static const char *const p[] = {"old", "new", "count"};
        int64_t count = -1;
        TRY(bind(r, fname, a, p, 3, v, h));
        if (!h[0] || !h[1]) return rerr(r, SIM_ERR_FORMAT, "replace() takes at least 2 arguments");
        TRY(need_str(r, fname, v[0]));
        TRY(need_str(r, fname, v[1]));
        if (h[2]) TRY(need_int(r, fname, v[2], &count));
        return replace(r, s, v[0], v[1], count, out);
    }
    case M_FIND:
    case M_RFIND:
    case M_INDEX:
    case M_COUNT: {
        static const char *const p[] = {"sub"};
        TRY(bind(r, fname, a, p, 1, v, h));
        if (!h[0]) return rerr(r, SIM_ERR_FORMAT, "%s() takes at least 1 argument (0 given)", fname);
        TRY(need_str(r, fname, v[0]));
        jv sub = v[0];
        if (f->id == M_COUNT) {
            int64_t c = 0;
            if (sub.n == 0) c = (int64_t)u8_count(s.u.s, s.n) + 1;
            else
                for (const char *q = s.u.s, *e = s.u.s + s.n; (q = memmem(q, (size_t)(e - q), sub.u.s, sub.n)); q += sub.n) c++;
            *out = v_int(c);
            return SIM_OK;
        }
        const char *at = NULL;
        if (f->id == M_RFIND) {
            for (size_t b = s.n >= sub.n ? s.n - sub.n + 1 : 0; b-- > 0;)
                if (!memcmp(s.u.s + b, sub.u.s, sub.n)) {
                    at = s.u.s + b;
                    break;
                }
        } else {
            at = find_sub(s.u.s, s.n, sub.u.s, sub.n);
        }
        if (!at && f->id == M_INDEX) return rerr(r, SIM_ERR_FORMAT, "substring not found");
        *out = v_int(at ? (int64_t)u8_count(s.u.s, (size_t)(at - s.u.s)) : -1);
        return SIM_OK;
    }
    case M_JOIN: {
        static const char *const p[] = {"iterable"};
        const jlist *items;
        TRY(bind(r, fname, a, p, 1, v, h));
        if (!h[0]) return rerr(r, SIM_ERR_FORMAT, "join() takes exactly one argument (0 given)");
        TRY(iterate(r, v[0], &items));
        sink o = {0};
        for (size_t i = 0; i < items->n; i++) {
            if (items->v[i].k != V_STR)
                return rerr(r, SIM_ERR_FORMAT, "sequence item %zu: expected str instance, %s found", i, tname(items->v[i]));
            if (i) TRY(sk_put(r, &o, s.u.s, s.n));
            TRY(sk_put(r, &o, items->v[i].u.s, items->v[i].n));
        }
        *out = sk_value(&o);
        return SIM_OK;
    }
    case M_ISALPHA:
    case M_ISDIGIT:
    case M_ISALNUM:
    case M_ISSPACE:
    case M_ISLOWER:
    case M_ISUPPER: TRY(no_args(r, fname, a)); *out = v_bool(str_test(s, f->id)); return SIM_OK;
    case M_CENTER:
    case M_LJUST:
    case M_RJUST: {
        static const char *const p[] = {"width", "fillchar"};
        int64_t w;
        TRY(bind(r, fname, a, p, 2, v, h));
        if (!h[0]) return rerr(r, SIM_ERR_FORMAT, "%s() takes at least 1 argument (0 given)", fname);
        TRY(need_int(r, fname, v[0], &w));
        return pad(r, s, w, h[1] ? v[1] : v_lit(" "), f->id == M_CENTER ? 2 : f->id == M_LJUST ? 1 : 0, out);
    }
    case M_ZFILL: {
        static const char *const p[] = {"width"};
        int64_t w;
        TRY(bind(r, fname, a, p, 1, v, h));
        TRY(need_int(r, fname, v[0], &w));
        jv body = s, sign = v_str("", 0);
        if (s.n && (s.u.s[0] == '-' || s.u.s[0] == '+')) sign = v_str(s.u.s, 1), body = v_str(s.u.s + 1, s.n - 1);
        TRY(pad(r, body, w - (int64_t)sign.n, v_lit("0"), 0, &body));
        return str_concat(r, sign, body, out);
    }
    case M_FORMAT: return rerr(r, SIM_ERR_FORMAT, "str.format is not supported (use the format filter or %%)");
    case M_GET: {
        static const char *const p[] = {"key", "default"};
        TRY(bind(r, fname, a, p, 2, v, h));
        if (!h[0]) return rerr(r, SIM_ERR_FORMAT, "get expected at least 1 argument, got 0");
        uint64_t hh;
        long e = key_hash(v[0], &hh, 0) ? -1 : dict_find(s.u.d, v[0]);
        if (key_hash(v[0], &hh, 0)) return rerr(r, SIM_ERR_FORMAT, "unhashable type: '%s'", tname(v[0]));
        *out = e >= 0 ? s.u.d->val[e] : v[1];
        return SIM_OK;
    }
    case M_ITEMS: {
        TRY(no_args(r, fname, a));
        jlist *l = list_new(r, s.u.d->n);
        if (!l) return r_nomem(r);
        for (size_t i = 0; i < s.u.d->n; i++) {
            jlist *pair = list_new(r, 2);
            if (!pair) return r_nomem(r);
            pair->v[0] = s.u.d->key[i];
            pair->v[1] = s.u.d->val[i];
            l->v[i] = v_list(pair, SUB_TUPLE);
        }
        *out = v_list(l, SUB_ITEMS);
        return SIM_OK;
    }
    case M_KEYS:
    case M_VALUES: {
        TRY(no_args(r, fname, a));
        jlist *l = ralloc(r, sizeof *l);
        if (!l) return r_nomem(r);
        *l = (jlist){.v = f->id == M_KEYS ? s.u.d->key : s.u.d->val, .n = s.u.d->n};
        *out = v_list(l, f->id == M_KEYS ? SUB_KEYS : SUB_VALUES);
        return SIM_OK;
    }
    case M_COPY: TRY(no_args(r, fname, a)); *out = s; return SIM_OK;
    case M_LCOUNT:
    case M_LINDEX: {
        static const char *const p[] = {"value"};
        TRY(bind(r, fname, a, p, 1, v, h));
        if (!h[0]) return rerr(r, SIM_ERR_FORMAT, "%s() takes exactly one argument (0 given)", fname);
        int64_t c = 0;
        TRY(step(r, s.u.l->n / 8));
        for (size_t i = 0; i < s.u.l->n; i++)
            if (py_eq(s.u.l->v[i], v[0], 0)) {
                if (f->id == M_LINDEX) {
                    *out = v_int((int64_t)i);
                    return SIM_OK;
                }
                c++;
            }
        if (f->id == M_LINDEX) return rerr(r, SIM_ERR_FORMAT, "value is not in list");
        *out = v_int(c);
        return SIM_OK;
    }
    case M_CYCLE:
        if (a->nkw) return rerr(r, SIM_ERR_FORMAT, "cycle() takes no keyword arguments");
        if (!a->npos) return rerr(r, SIM_ERR_FORMAT, "no items for cycling given");
        *out = a->pos[s.u.lp->i % a->npos];
        return SIM_OK;
    case M_CHANGED: {
        if (a->nkw) return rerr(r, SIM_ERR_FORMAT, "changed() takes no keyword arguments");
        jlist *l = list_new(r, a->npos);
        if (!l) return r_nomem(r);
        if (a->npos) memcpy(l->v, a->pos, a->npos * sizeof(jv));
        jv cur = v_list(l, SUB_TUPLE);
        jloop *lp = s.u.lp;
        bool changed = !lp->changed_set || !py_eq(lp->changed_last, cur, 0);
        lp->changed_set = true;
        lp->changed_last = cur;
        *out = v_bool(changed);
        return SIM_OK;
    }
    default: return rerr(r, SIM_ERR_FORMAT, "internal error: method %d", f->id);
    }
}

// --- globals ------------------------------------------------------------------------------------

// dict(...) / namespace(...): one mapping or list of pairs, then keywords.
static int make_mapping(R *r, const char *fname, const jargs *a, jdict **out) {
    jdict *d = dict_new(r);
    if (!d) return r_nomem(r);
    if (a->npos > 1) return rerr(r, SIM_ERR_FORMAT, "%s expected at most 1 argument, got %zu", fname, a->npos);
    if (a->npos == 1) {
        jv src = a->pos[0];
        if (src.k == V_DICT || src.k == V_NS) {
            for (size_t i = 0; i < src.u.d->n; i++) TRY(dict_set(r, d, src.u.d->key[i], src.u.d->val[i]));
        } else {
            const jlist *items;
            TRY(iterate(r, src, &items));
            for (size_t i = 0; i < items->n; i++) {
                const jlist *pair;
                TRY(iterate(r, items->v[i], &pair));
                if (pair->n != 2)
                    return rerr(r, SIM_ERR_FORMAT, "dictionary update sequence element #%zu has length %zu; 2 is required", i, pair->n);
                TRY(dict_set(r, d, pair->v[0], pair->v[1]));
            }
        }
    }
    for (size_t k = 0; k < a->nkw; k++) TRY(dict_set(r, d, v_str(a->kwn[k].s, a->kwn[k].n), a->kwv[k]));
    *out = d;
    return SIM_OK;
}

static int call_global(R *r, int id, const jargs *a, jv *out) {
    switch (id) {
    case G_RANGE: {
        int64_t x[3] = {0, 0, 1};
        if (a->nkw) return rerr(r, SIM_ERR_FORMAT, "range() takes no keyword arguments");
        if (a->npos < 1 || a->npos > 3) return rerr(r, SIM_ERR_FORMAT, "range expected 1 to 3 arguments, got %zu", a->npos);
        for (size_t i = 0; i < a->npos; i++) TRY(need_int(r, "range", a->pos[i], &x[a->npos == 1 ? 1 : i]));
        if (x[2] == 0) return rerr(r, SIM_ERR_FORMAT, "range() arg 3 must not be zero");
        int64_t n = 0;
        if (x[2] > 0 && x[0] < x[1]) n = (int64_t)(((uint64_t)x[1] - (uint64_t)x[0] - 1) / (uint64_t)x[2] + 1);
        if (x[2] < 0 && x[0] > x[1]) n = (int64_t)(((uint64_t)x[0] - (uint64_t)x[1] - 1) / (uint64_t)(-(x[2] + 1) + 1) + 1);
        if (n > 100000 || n < 0)
            return rerr(r, SIM_ERR_RANGE, "Range too big. The sandbox blocks ranges larger than MAX_RANGE (100000).");
        TRY(step(r, (uint64_t)n / 8));
        jlist *l = list_new(r, (size_t)n);
        if (!l) return r_nomem(r);
        for (int64_t i = 0; i < n; i++) l->v[i] = v_int(x[0] + i * x[2]);
        l->r0 = x[0];
        l->r1 = x[1];
        l->rs = x[2];
        *out = v_list(l, SUB_RANGE);
        return SIM_OK;
    }
    case G_NAMESPACE:
    case G_DICT: {
        jdict *d = NULL;
        TRY(make_mapping(r, id == G_DICT ? "dict" : "namespace", a, &d));
        *out = (jv){.k = id == G_DICT ? V_DICT : V_NS, .u.d = d};
        return SIM_OK;
    }
    case G_RAISE: {
        jv msg = v_str("", 0);
        if (a->npos) TRY(to_str(r, a->pos[0], &msg));
        err_set(r->err, SIM_ERR_ARG, "%.*s", (int)MIN(msg.n, 511), msg.u.s);
        return SIM_ERR_ARG;
    }
    default: { // G_STRFTIME
        static const char *const p[] = {"format"};
        jv v[1];
        bool h[1];
        TRY(bind(r, "strftime_now", a, p, 1, v, h));
        TRY(need_str(r, "strftime_now", v[0]));
        char fmt[256], buf[512];
        if (v[0].n >= sizeof fmt || memchr(v[0].u.s, 0, v[0].n))
            return rerr(r, SIM_ERR_FORMAT, "strftime_now: the format is too long");
        memcpy(fmt, v[0].u.s, v[0].n);
        fmt[v[0].n] = 0;
        size_t n = strftime(buf, sizeof buf, fmt, &r->now);
        char *s = ralloc(r, n + 1);
        if (!s) return r_nomem(r);
        memcpy(s, buf, n);
        *out = v_str(s, n);
        return SIM_OK;
    }
    }
}

// --- Python's % formatting ------------------------------------------------------------------------

static int py_format(R *r, jv fmt, jv args, jv *out) {
    const jlist *pos = NULL;
    jlist one = {.v = &args, .n = 1};
    const jdict *map = args.k == V_DICT ? args.u.d : NULL;
    // Python treats anything with __getitem__ but a tuple or str as a mapping
    bool mapping = args.k == V_DICT || args.k == V_UNDEF || (args.k == V_LIST && (args.sub == SUB_LIST || args.sub == SUB_RANGE));
    pos = args.k == V_LIST && args.sub == SUB_TUPLE ? args.u.l : &one;
    size_t next = 0;
    sink o = {0};
    const char *s = fmt.u.s;
    size_t n = fmt.n;
    for (size_t i = 0; i < n;) {
        const char *pc = memchr(s + i, '%', n - i);
        size_t run = pc ? (size_t)(pc - (s + i)) : n - i;
        TRY(sk_put(r, &o, s + i, run));
        i += run;
        if (i >= n) break;
        i++; // '%'
        jv val;
        bool have_val = false;
        if (i < n && s[i] == '(') {
            size_t e = i + 1;
            while (e < n && s[e] != ')') e++;
            if (e >= n) return rerr(r, SIM_ERR_FORMAT, "incomplete format key");
            if (args.k == V_UNDEF) return undef_err(r, args);
            if (!map) return rerr(r, SIM_ERR_FORMAT, mapping ? "%s indices must be integers or slices, not str" : "format requires a mapping", tname(args));
            jv *x = dict_get_s(map, s + i + 1, e - i - 1);
            if (!x) return rerr(r, SIM_ERR_FORMAT, "format key '%.*s' not found", (int)MIN(e - i - 1, 60), s + i + 1);
            val = *x;
            have_val = true;
            i = e + 1;
        }
        char flags[8];
        int nf = 0;
        while (i < n && strchr("-+ #0", s[i]) && s[i] && nf < 7) flags[nf++] = s[i++];
        flags[nf] = 0;
        int64_t width = -1, prec = -1;
        for (int part = 0; part < 2; part++) {
            int64_t *dst = part ? &prec : &width;
            if (part) {
                if (i >= n || s[i] != '.') break;
                i++;
                prec = 0;
            }
            if (i < n && s[i] == '*') {
                if (next >= pos->n) return rerr(r, SIM_ERR_FORMAT, "not enough arguments for format string");
                TRY(need_int(r, "format", pos->v[next++], dst));
                i++;
            } else {
                while (i < n && s[i] >= '0' && s[i] <= '9') {
                    *dst = (*dst < 0 ? 0 : *dst) * 10 + (s[i++] - '0');
                    if (*dst > 100000) return rerr(r, SIM_ERR_RANGE, "format width too large");
                }
            }
        }
        while (i < n && strchr("hlL", s[i]) && s[i]) i++;
        if (i >= n) return rerr(r, SIM_ERR_FORMAT, "incomplete format");
        char conv = s[i++];
        if (conv == '%') {
            TRY(sk_putc(r, &o, '%'));
            continue;
        }
        if (!have_val) {
            if (mapping) val = args;
            else {
                if (next >= pos->n) return rerr(r, SIM_ERR_FORMAT, "not enough arguments for format string");
                val = pos->v[next++];
            }
        }
        char cf[32], buf[512];
        jv text;
        switch (conv) {
        case 's':
        case 'r':
        case 'a': {
            if (conv == 's') TRY(to_str(r, val, &text));
            else {
                sink t = {0};
                TRY(v_write(r, &t, val, true, 0));
                text = sk_value(&t);
            }
            if (prec >= 0) text.n = cp_offset(text.u.s, text.n, (size_t)prec);
            int64_t len = (int64_t)u8_count(text.u.s, text.n);
            bool left = strchr(flags, '-') != NULL;
            if (!left)
                for (int64_t k = len; k < width; k++) TRY(sk_putc(r, &o, ' '));
            TRY(sk_put(r, &o, text.u.s, text.n));
            if (left)
                for (int64_t k = len; k < width; k++) TRY(sk_putc(r, &o, ' '));
            continue;
        }
        case 'd':
        case 'i':
        case 'u':
        case 'o':
        case 'x':
        case 'X':
        case 'c': {
            int64_t iv;
            if (is_intlike(val)) iv = as_int(val);
            else if (val.k == V_FLOAT && conv != 'c' && conv != 'o' && conv != 'x' && conv != 'X' && fabs(val.u.f) < 9.2e18) iv = (int64_t)val.u.f;
            else if (conv == 'c' && val.k == V_STR && u8_count(val.u.s, val.n) == 1) {
                TRY(sk_put(r, &o, val.u.s, val.n));
                continue;
            } else return rerr(r, SIM_ERR_FORMAT, "%%%c format: a real number is required, not %s", conv, tname(val));
            if (conv == 'c') {
                TRY(sk_cp(r, &o, (uint32_t)iv));
                continue;
            }
            char lc = conv == 'i' || conv == 'u' ? 'd' : conv;
            if ((lc == 'x' || lc == 'X' || lc == 'o') && iv < 0) { // Python prints a sign where C would wrap
                snprintf(cf, sizeof cf, "-%%%sll%c", strchr(flags, '#') ? "#" : "", lc);
                snprintf(buf, sizeof buf, cf, (unsigned long long)(-(uint64_t)iv));
            } else if (prec < 0) {
                snprintf(cf, sizeof cf, "%%%s*ll%c", flags, lc);
                snprintf(buf, sizeof buf, cf, (int)MAX(width, 0), (long long)iv);
            } else {
                snprintf(cf, sizeof cf, "%%%s*.*ll%c", flags, lc);
                snprintf(buf, sizeof buf, cf, (int)MAX(width, 0), (int)prec, (long long)iv);
            }
            if (lc == 'o' && strchr(flags, '#')) { // Python's alternate octal is 0o
                char *z = strchr(buf, '0');
                if (z && iv != 0) {
                    memmove(z + 2, z + 1, strlen(z + 1) + 1);
                    z[1] = 'o';
                }
            }
            TRY(sk_puts(r, &o, buf));
            continue;
        }
        case 'e':
        case 'E':
        case 'f':
        case 'F':
        case 'g':
        case 'G': {
            if (!is_num(val)) return rerr(r, SIM_ERR_FORMAT, "must be real number, not %s", tname(val));
            snprintf(cf, sizeof cf, "%%%s*.*%c", flags, conv);
            snprintf(buf, sizeof buf, cf, (int)MAX(width, 0), (int)(prec < 0 ? 6 : MIN(prec, 100)), as_f(val));
            TRY(sk_puts(r, &o, buf));
            continue;
        }
        default: return rerr(r, SIM_ERR_FORMAT, "unsupported format character '%c'", conv);
        }
    }
    if (!mapping && next < pos->n) return rerr(r, SIM_ERR_FORMAT, "not all arguments converted during string formatting");
    *out = sk_value(&o);
    return SIM_OK;
}

// --- filters --------------------------------------------------------------------------------------

typedef int (*filter_fn)(R *r, jv v, const jargs *a, jv *out);
typedef int (*test_fn)(R *r, jv v, const jargs *a, bool *out);

// jinja's make_attrgetter: "a.b.0" looked up part by part with getitem (digits are indexes).
static int attr_path(R *r, jv item, jv attr, jv *out) {
    if (attr.k != V_STR) return get_item(r, item, attr, out);
    size_t b = 0;
    for (;;) {
        size_t e = b;
        while (e < attr.n && attr.u.s[e] != '.') e++;
        jv key = v_str(attr.u.s + b, e - b);
        bool digits = e > b;
        for (size_t i = b; i < e; i++) digits &= attr.u.s[i] >= '0' && attr.u.s[i] <= '9';
        if (digits && e - b < 18) key = v_int(strtoll(attr.u.s + b, NULL, 10));
        TRY(get_item(r, item, key, &item));
        if (e >= attr.n) break;
        b = e + 1;
    }
    *out = item;
    return SIM_OK;
}

static int lower_key(R *r, jv v, bool case_sensitive, jv *out) {
    if (!case_sensitive && v.k == V_STR) return change_case(r, v, CASE_LOWER, out);
    *out = v;
    return SIM_OK;
}

// The sort key of item: attribute (a path, or for sort a comma-separated list of them), lowercased.
static int item_key(R *r, jv item, jv attr, bool multi, bool case_sensitive, jv *out) {
    if (!multi) {
        if (attr.k != V_NONE) TRY(attr_path(r, item, attr, &item));
        return lower_key(r, item, case_sensitive, out);
    }
    lvec parts = {0}; // sort: a list of keys, one per comma-separated attribute
    for (size_t b = 0;;) {
        size_t e = b;
        while (attr.k == V_STR && e < attr.n && attr.u.s[e] != ',') e++;
        jv k = item;
        if (attr.k == V_STR) TRY(attr_path(r, item, v_str(attr.u.s + b, e - b), &k));
        else if (attr.k != V_NONE) TRY(attr_path(r, item, attr, &k));
        TRY(lower_key(r, k, case_sensitive, &k));
        TRY(lv_push(r, &parts, k));
        if (attr.k != V_STR || e >= attr.n) break;
        b = e + 1;
    }
    return lv_done(r, &parts, SUB_LIST, out);
}

// A stable merge sort of idx[0..n) by keys (Python's sorted, reverse included).
static int msort(R *r, const jv *keys, size_t *idx, size_t *tmp, size_t n, bool rev) {
    if (n < 2) return SIM_OK;
    size_t m = n / 2, i = 0, j = m, k = 0;
    TRY(msort(r, keys, idx, tmp, m, rev));
    TRY(msort(r, keys, idx + m, tmp, n - m, rev));
    TRY(step(r, n / 4));
    while (i < m && j < n) {
        int c;
        if (rev) TRY(py_cmp(r, keys[idx[i]], keys[idx[j]], "<", &c, 0));
        else TRY(py_cmp(r, keys[idx[j]], keys[idx[i]], "<", &c, 0));
        tmp[k++] = c == -1 ? idx[j++] : idx[i++];
    }
    while (i < m) tmp[k++] = idx[i++];
    while (j < n) tmp[k++] = idx[j++];
    memcpy(idx, tmp, n * sizeof *idx);
    return SIM_OK;
}

static int sorted(R *r, const jlist *items, const jv *keys, bool rev, jv *out) {
    size_t n = items->n;
    size_t *idx = ralloc(r, (n + 1) * sizeof *idx), *tmp = ralloc(r, (n + 1) * sizeof *tmp);
    jlist *l = list_new(r, n);
    if (!idx || !tmp || !l) return r_nomem(r);
    for (size_t i = 0; i < n; i++) idx[i] = i;
    TRY(msort(r, keys, idx, tmp, n, rev));
    for (size_t i = 0; i < n; i++) l->v[i] = items->v[idx[i]];
    *out = v_list(l, SUB_LIST);
    return SIM_OK;
}

static int f_sort(R *r, jv v, const jargs *a, jv *out) {
    static const char *const p[] = {"reverse", "case_sensitive", "attribute"};
    jv x[3];
    bool h[3];
    const jlist *items;
    TRY(bind(r, "sort", a, p, 3, x, h));
    TRY(iterate(r, v, &items));
    jv *keys = ralloc(r, (items->n + 1) * sizeof *keys);
    if (!keys) return r_nomem(r);
    for (size_t i = 0; i < items->n; i++) TRY(item_key(r, items->v[i], x[2], true, truthy(x[1]), &keys[i]));
    return sorted(r, items, keys, truthy(x[0]), out);
}

static int f_dictsort(R *r, jv v, const jargs *a, jv *out) {
    static const char *const p[] = {"case_sensitive", "by", "reverse"};
    jv x[3];
    bool h[3];
    TRY(bind(r, "dictsort", a, p, 3, x, h));
    if (v.k != V_DICT) return rerr(r, SIM_ERR_FORMAT, "dictsort: '%s' object has no attribute 'items'", tname(v));
    int by = 0;
    if (h[1]) {
        if (x[1].k == V_STR && str_is(x[1].u.s, x[1].n, "value")) by = 1;
        else if (!(x[1].k == V_STR && str_is(x[1].u.s, x[1].n, "key")))
            return rerr(r, SIM_ERR_FORMAT, "You can only sort by either 'key' or 'value'");
    }
    size_t n = v.u.d->n;
    jlist *items = list_new(r, n);
    jv *keys = ralloc(r, (n + 1) * sizeof *keys);
    if (!items || !keys) return r_nomem(r);
    for (size_t i = 0; i < n; i++) {
        jlist *pair = list_new(r, 2);
        if (!pair) return r_nomem(r);
        pair->v[0] = v.u.d->key[i];
        pair->v[1] = v.u.d->val[i];
        items->v[i] = v_list(pair, SUB_TUPLE);
        TRY(lower_key(r, pair->v[by], truthy(x[0]), &keys[i]));
    }
    return sorted(r, items, keys, truthy(x[2]), out);
}

static int gen_unique(R *r, jv v, const jargs *a, jv *out) {
    static const char *const p[] = {"case_sensitive", "attribute"};
    jv x[2];
    bool h[2];
    const jlist *items;
    TRY(bind(r, "unique", a, p, 2, x, h));
    TRY(iterate(r, v, &items));
    jdict *seen = dict_new(r);
    lvec o = {0};
    if (!seen) return r_nomem(r);
    for (size_t i = 0; i < items->n; i++) {
        jv k;
        TRY(item_key(r, items->v[i], x[1], false, truthy(x[0]), &k));
        uint64_t hh;
        if (key_hash(k, &hh, 0)) return rerr(r, SIM_ERR_FORMAT, "unhashable type: '%s'", tname(k));
        if (dict_find(seen, k) >= 0) continue;
        TRY(dict_set(r, seen, k, v_none()));
        TRY(lv_push(r, &o, items->v[i]));
    }
    return lv_done(r, &o, SUB_GEN, out);
}

static int min_max(R *r, jv v, const jargs *a, bool max, jv *out) {
    static const char *const p[] = {"case_sensitive", "attribute"};
    jv x[2];
    bool h[2];
    const jlist *items;
    TRY(bind(r, max ? "max" : "min", a, p, 2, x, h));
    TRY(iterate(r, v, &items));
    if (!items->n) {
        *out = v_undef();
        return SIM_OK;
    }
    jv best = items->v[0], bk;
    TRY(item_key(r, best, x[1], false, truthy(x[0]), &bk));
    for (size_t i = 1; i < items->n; i++) {
        jv k;
        int c;
        TRY(item_key(r, items->v[i], x[1], false, truthy(x[0]), &k));
        TRY(py_cmp(r, k, bk, max ? ">" : "<", &c, 0));
        if (c == (max ? 1 : -1)) best = items->v[i], bk = k;
    }
    *out = best;
    return SIM_OK;
}
static int f_max(R *r, jv v, const jargs *a, jv *out) { return min_max(r, v, a, true, out); }
static int f_min(R *r, jv v, const jargs *a, jv *out) { return min_max(r, v, a, false, out); }

static int f_sum(R *r, jv v, const jargs *a, jv *out) {
    static const char *const p[] = {"attribute", "start"};
    jv x[2];
    bool h[2];
    const jlist *items;
    TRY(bind(r, "sum", a, p, 2, x, h));
    TRY(iterate(r, v, &items));
    jv acc = h[1] ? x[1] : v_int(0);
    for (size_t i = 0; i < items->n; i++) {
        jv it = items->v[i];
        if (h[0] && x[0].k != V_NONE) TRY(attr_path(r, it, x[0], &it));
        TRY(binop(r, OP_ADD, acc, it, &acc));
    }
    *out = acc;
    return SIM_OK;
}

static int f_first(R *r, jv v, const jargs *a, jv *out) {
    const jlist *items;
    TRY(no_args(r, "first", a));
    if (v.k == V_LIST && v.u.l->broken) return rerr(r, SIM_ERR_FORMAT, "%s", v.u.l->broken);
    if (IS_ITER(v)) { // next() takes one item
        *out = v.u.l->cur < v.u.l->n ? v.u.l->v[v.u.l->cur++] : v_undef();
        return SIM_OK;
    }
    TRY(iterate(r, v, &items));
    *out = items->n ? items->v[0] : v_undef();
    return SIM_OK;
}

static int f_last(R *r, jv v, const jargs *a, jv *out) {
    const jlist *items;
    TRY(no_args(r, "last", a));
    if (IS_ITER(v)) return rerr(r, SIM_ERR_FORMAT, "'%s' object is not reversible", tname(v));
    TRY(iterate(r, v, &items));
    *out = items->n ? items->v[items->n - 1] : v_undef();
    return SIM_OK;
}

static int f_length(R *r, jv v, const jargs *a, jv *out) {
    int64_t n = 0;
    TRY(no_args(r, "length", a));
    TRY(length_of(r, v, &n));
    *out = v_int(n);
    return SIM_OK;
}

static int f_list(R *r, jv v, const jargs *a, jv *out) {
    const jlist *items;
    TRY(no_args(r, "list", a));
    TRY(iterate(r, v, &items));
    jlist *l = list_new(r, items->n);
    if (!l) return r_nomem(r);
    if (items->n) memcpy(l->v, items->v, items->n * sizeof(jv));
    *out = v_list(l, SUB_LIST);
    return SIM_OK;
}

static int gen_items(R *r, jv v, const jargs *a, jv *out) {
    TRY(no_args(r, "items", a));
    if (v.k == V_UNDEF) {
        jlist *l = list_new(r, 0);
        if (!l) return r_nomem(r);
        *out = v_list(l, SUB_GEN);
        return SIM_OK;
    }
    if (v.k != V_DICT) return rerr(r, SIM_ERR_FORMAT, "Can only get item pairs from a mapping.");
    jfunc f = {.kind = F_METHOD, .id = M_ITEMS, .self = v};
    jargs none = {0};
    TRY(call_method(r, &f, &none, out));
    out->sub = SUB_GEN;
    return SIM_OK;
}

static int f_join(R *r, jv v, const jargs *a, jv *out) {
    static const char *const p[] = {"d", "attribute"};
    jv x[2];
    bool h[2];
    const jlist *items;
    TRY(bind(r, "join", a, p, 2, x, h));
    jv sep = v_str("", 0);
    if (h[0]) TRY(to_str(r, x[0], &sep));
    TRY(iterate(r, v, &items));
    sink o = {0};
    for (size_t i = 0; i < items->n; i++) {
        jv it = items->v[i];
        if (h[1] && x[1].k != V_NONE) TRY(attr_path(r, it, x[1], &it));
        if (i) TRY(sk_put(r, &o, sep.u.s, sep.n));
        TRY(v_write(r, &o, it, false, 0));
    }
    *out = sk_value(&o);
    return SIM_OK;
}

static int f_default(R *r, jv v, const jargs *a, jv *out) {
    static const char *const p[] = {"default_value", "boolean"};
    jv x[2];
    bool h[2];
    TRY(bind(r, "default", a, p, 2, x, h));
    if (!h[0]) x[0] = v_str("", 0);
    *out = v.k == V_UNDEF || (truthy(x[1]) && !truthy(v)) ? x[0] : v;
    return SIM_OK;
}

static int str_filter(R *r, const char *fname, jv v, const jargs *a, int mode, jv *out) {
    TRY(no_args(r, fname, a));
    TRY(to_str(r, v, &v));
    return change_case(r, v, mode, out);
}
static int f_upper(R *r, jv v, const jargs *a, jv *out) { return str_filter(r, "upper", v, a, CASE_UPPER, out); }
static int f_lower(R *r, jv v, const jargs *a, jv *out) { return str_filter(r, "lower", v, a, CASE_LOWER, out); }
static int f_title(R *r, jv v, const jargs *a, jv *out) { return str_filter(r, "title", v, a, CASE_JTITLE, out); }
static int f_capitalize(R *r, jv v, const jargs *a, jv *out) {
    return str_filter(r, "capitalize", v, a, CASE_CAPITALIZE, out);
}

static int f_trim(R *r, jv v, const jargs *a, jv *out) {
    static const char *const p[] = {"chars"};
    jv x[1];
    bool h[1];
    TRY(bind(r, "trim", a, p, 1, x, h));
    TRY(to_str(r, v, &v));
    if (x[0].k != V_NONE) TRY(need_str(r, "trim", x[0]));
    *out = strip(v, x[0].k == V_STR ? &x[0] : NULL, true, true);
    return SIM_OK;
}

static int f_replace(R *r, jv v, const jargs *a, jv *out) {
    static const char *const p[] = {"old", "new", "count"};
    jv x[3];
    bool h[3];
    int64_t count = -1;
    TRY(bind(r, "replace", a, p, 3, x, h));
    if (!h[0] || !h[1]) return rerr(r, SIM_ERR_FORMAT, "replace() missing required arguments");
    TRY(to_str(r, v, &v));
    TRY(to_str(r, x[0], &x[0]));
    TRY(to_str(r, x[1], &x[1]));
    if (x[2].k != V_NONE) TRY(need_int(r, "replace", x[2], &count));
    return replace(r, v, x[0], x[1], count, out);
}

static int f_center(R *r, jv v, const jargs *a, jv *out) {
    static const char *const p[] = {"width"};
    jv x[1];
    bool h[1];
    int64_t w = 80;
    TRY(bind(r, "center", a, p, 1, x, h));
    if (h[0]) TRY(need_int(r, "center", x[0], &w));
    TRY(to_str(r, v, &v));
    return pad(r, v, w, v_lit(" "), 2, out);
}

static int f_string(R *r, jv v, const jargs *a, jv *out) {
    TRY(no_args(r, "string", a));
    return to_str(r, v, out);
}

static int f_safe(R *r, jv v, const jargs *a, jv *out) {
    TRY(no_args(r, "safe", a));
    return to_str(r, v, out);
}

static int f_escape(R *r, jv v, const jargs *a, jv *out) {
    TRY(no_args(r, "escape", a));
    TRY(to_str(r, v, &v));
    sink o = {0};
    size_t run = 0;
    for (size_t i = 0; i < v.n; i++) {
        const char *e = NULL;
        switch (v.u.s[i]) {
        case '&': e = "&amp;"; break;
        case '<': e = "&lt;"; break;
        case '>': e = "&gt;"; break;
        case '"': e = "&#34;"; break;
        case '\'': e = "&#39;"; break;
        }
        if (!e) continue;
        TRY(sk_put(r, &o, v.u.s + run, i - run));
        TRY(sk_puts(r, &o, e));
        run = i + 1;
    }
    TRY(sk_put(r, &o, v.u.s + run, v.n - run));
    *out = sk_value(&o);
    return SIM_OK;
}

static int f_indent(R *r, jv v, const jargs *a, jv *out) {
    static const char *const p[] = {"width", "first", "blank"};
    jv x[3];
    bool h[3];
    TRY(bind(r, "indent", a, p, 3, x, h));
    jv ind = v_str("", 0);
    if (x[0].k == V_STR) ind = x[0];
    else {
        int64_t w = 4;
        if (h[0]) TRY(need_int(r, "indent", x[0], &w));
        TRY(repeat(r, v_lit(" "), w, &ind));
    }
    if (v.k == V_UNDEF) return undef_err(r, v);
    if (v.k != V_STR) return rerr(r, SIM_ERR_FORMAT, "unsupported operand type(s) for +=: '%s' and 'str'", tname(v));
    jv lines;
    // jinja2 splits s + "\n": the lines of s, and an empty one after a final line break
    TRY(splitlines(r, v, false, &lines));
    jlist *ls = lines.u.l;
    if (v.n == 0 || (v.u.s[v.n - 1] != '\r' && line_break(v.u.s, v.n, u8_prev(v.u.s, v.n)))) {
        jlist *l = list_new(r, ls->n + 1);
        if (!l) return r_nomem(r);
        if (ls->n) memcpy(l->v, ls->v, ls->n * sizeof(jv));
        l->v[ls->n] = v_str("", 0);
        ls = l;
    }
    sink o = {0};
    if (truthy(x[1])) TRY(sk_put(r, &o, ind.u.s, ind.n));
    for (size_t i = 0; i < ls->n; i++) {
        if (i) {
            TRY(sk_putc(r, &o, '\n'));
            if (truthy(x[2]) || ls->v[i].n) TRY(sk_put(r, &o, ind.u.s, ind.n));
        }
        TRY(sk_put(r, &o, ls->v[i].u.s, ls->v[i].n));
    }
    *out = sk_value(&o);
    return SIM_OK;
}

static int f_wordcount(R *r, jv v, const jargs *a, jv *out) {
    TRY(no_args(r, "wordcount", a));
    TRY(to_str(r, v, &v));
    int64_t words = 0;
    bool in = false;
    for (size_t i = 0; i < v.n;) {
        uint32_t c = u8_next(v.u.s, v.n, &i);
        bool w = c == '_' || cp_is_digit(c) || cp_is_alpha(c);
        if (w && !in) words++;
        in = w;
    }
    *out = v_int(words);
    return SIM_OK;
}

// Python's int(str, base): sign, optional prefix, digits with single underscores.
static bool parse_pyint(jv s, int base, int64_t *out) {
    s = strip(s, NULL, true, true);
    const char *p = s.u.s, *e = p + s.n;
    bool neg = false;
    if (p < e && (*p == '+' || *p == '-')) neg = *p++ == '-';
    if (p + 1 < e && p[0] == '0') {
        char c = (char)(p[1] | 32);
        int pb = c == 'x' ? 16 : c == 'o' ? 8 : c == 'b' ? 2 : 0;
        if (pb && (base == 0 || base == pb)) {
            base = pb;
            p += 2;
            if (p < e && *p == '_') p++;
        }
    }
    if (base == 0) {
        base = 10;
        if (p < e && *p == '0') { // only zeros may start with 0 in base 0
            for (const char *q = p; q < e; q++)
                if (*q != '0' && *q != '_') return false;
        }
    }
    if (base < 2 || base > 36 || p >= e) return false;
    uint64_t v = 0;
    bool prev_digit = false;
    for (; p < e; p++) {
        if (*p == '_') {
            if (!prev_digit || p + 1 >= e) return false;
            prev_digit = false;
            continue;
        }
        int d = *p >= '0' && *p <= '9' ? *p - '0' : ((*p | 32) >= 'a' && (*p | 32) <= 'z') ? (*p | 32) - 'a' + 10 : 99;
        if (d >= base) return false;
        if (v > (UINT64_MAX - (uint64_t)d) / (uint64_t)base) return false;
        v = v * (uint64_t)base + (uint64_t)d;
        prev_digit = true;
    }
    if (v > (uint64_t)INT64_MAX + neg) return false;
    *out = neg ? (int64_t)(0 - v) : (int64_t)v;
    return true;
}

static bool parse_pyfloat(jv s, double *out) {
    s = strip(s, NULL, true, true);
    char buf[128];
    size_t k = 0;
    if (!s.n || s.n >= sizeof buf) return false;
    for (size_t i = 0; i < s.n; i++) {
        char c = s.u.s[i];
        if (c == '_') {
            if (!(i > 0 && i + 1 < s.n && s.u.s[i - 1] >= '0' && s.u.s[i - 1] <= '9' && s.u.s[i + 1] >= '0' && s.u.s[i + 1] <= '9')) return false;
            continue;
        }
        if (c == 'x' || c == 'X' || c == 'p' || c == 'P' || c == 0) return false;
        buf[k++] = c;
    }
    buf[k] = 0;
    char *end;
    errno = 0;
    double d = strtod(buf, &end);
    if (end != buf + k || end == buf) return false;
    *out = d;
    return true;
}

static int f_int(R *r, jv v, const jargs *a, jv *out) {
    static const char *const p[] = {"default", "base"};
    jv x[2];
    bool h[2];
    int64_t base = 10, i;
    double d;
    TRY(bind(r, "int", a, p, 2, x, h));
    if (!h[0]) x[0] = v_int(0);
    if (h[1]) TRY(need_int(r, "int", x[1], &base));
    if (v.k == V_UNDEF) return undef_err(r, v); // Undefined.__int__ raises
    if (v.k == V_STR && parse_pyint(v, (int)base, &i)) *out = v_int(i);
    else if (is_intlike(v)) *out = v_int(as_int(v));
    else if (v.k == V_FLOAT || (v.k == V_STR && parse_pyfloat(v, &d))) {
        if (v.k == V_FLOAT) d = v.u.f;
        if (isinf(d)) return rerr(r, SIM_ERR_FORMAT, "cannot convert float infinity to integer");
        if (isnan(d)) *out = x[0];
        else if (fabs(d) >= 9.2e18) return overflow(r);
        else *out = v_int((int64_t)d);
    } else *out = x[0];
    return SIM_OK;
}

static int f_float(R *r, jv v, const jargs *a, jv *out) {
    static const char *const p[] = {"default"};
    jv x[1];
    bool h[1];
    double d;
    TRY(bind(r, "float", a, p, 1, x, h));
    if (!h[0]) x[0] = v_float(0);
    if (v.k == V_UNDEF) return undef_err(r, v); // Undefined.__float__ raises
    if (is_num(v)) *out = v_float(as_f(v));
    else if (v.k == V_STR && parse_pyfloat(v, &d)) *out = v_float(d);
    else *out = x[0];
    return SIM_OK;
}

static int f_abs(R *r, jv v, const jargs *a, jv *out) {
    TRY(no_args(r, "abs", a));
    if (v.k == V_FLOAT) *out = v_float(fabs(v.u.f));
    else if (is_intlike(v)) {
        if (as_int(v) == INT64_MIN) return overflow(r);
        *out = v_int(as_int(v) < 0 ? -as_int(v) : as_int(v));
    } else if (v.k == V_UNDEF) return undef_err(r, v);
    else return rerr(r, SIM_ERR_FORMAT, "bad operand type for abs(): '%s'", tname(v));
    return SIM_OK;
}

static double round_half_even(double y) {
    double z = round(y);
    if (fabs(y - z) == 0.5) z = 2.0 * round(y / 2.0);
    return z;
}

static int f_round(R *r, jv v, const jargs *a, jv *out) {
    static const char *const p[] = {"precision", "method"};
    jv x[2];
    bool h[2];
    int64_t prec = 0;
    TRY(bind(r, "round", a, p, 2, x, h));
    if (h[0]) TRY(need_int(r, "round", x[0], &prec));
    int method = 0; // common, ceil, floor
    if (h[1]) {
        if (x[1].k == V_STR && str_is(x[1].u.s, x[1].n, "ceil")) method = 1;
        else if (x[1].k == V_STR && str_is(x[1].u.s, x[1].n, "floor")) method = 2;
        else if (!(x[1].k == V_STR && str_is(x[1].u.s, x[1].n, "common")))
            return rerr(r, SIM_ERR_FORMAT, "method must be common, ceil or floor");
    }
    if (!is_num(v)) {
        if (v.k == V_UNDEF) return undef_err(r, v);
        return rerr(r, SIM_ERR_FORMAT, "type %s doesn't define __round__ method", tname(v));
    }
    if (prec > 400) prec = 400;
    if (prec < -400) prec = -400;
    double pw = pow(10.0, (double)(prec < 0 ? -prec : prec));
    if (method) {
        double y = prec >= 0 ? as_f(v) * pw : as_f(v) / pw;
        y = method == 1 ? ceil(y) : floor(y);
        *out = v_float(prec >= 0 ? y / pw : y * pw);
        return SIM_OK;
    }
    if (is_intlike(v)) {
        int64_t i = as_int(v);
        if (prec >= 0 || pw > 9.2e18) {
            *out = v_int(prec >= 0 ? i : 0);
            return SIM_OK;
        }
        int64_t m = (int64_t)pw, q = i / m, rem = i % m;
        if (rem < 0) rem += m, q--;
        if (2 * rem > m || (2 * rem == m && (q & 1))) q++;
        *out = v_int(q * m);
        return SIM_OK;
    }
    double d = v.u.f;
    if (!isfinite(d)) {
        *out = v;
        return SIM_OK;
    }
    if (prec >= 0) {
        if (prec > 320) {
            *out = v;
            return SIM_OK;
        }
        char buf[720];
        snprintf(buf, sizeof buf, "%.*f", (int)prec, d); // correctly rounded, ties to even on the exact value
        *out = v_float(strtod(buf, NULL));
    } else {
        *out = v_float(round_half_even(d / pw) * pw);
    }
    return SIM_OK;
}

static int f_tojson(R *r, jv v, const jargs *a, jv *out) {
    static const char *const p[] = {"ensure_ascii", "indent", "separators", "sort_keys"};
    jv x[4];
    bool h[4];
    TRY(bind(r, "tojson", a, p, 4, x, h));
    json_fmt f = {.ensure_ascii = truthy(x[0]), .sort_keys = truthy(x[3])};
    if (x[1].k != V_NONE) {
        if (x[1].k == V_STR) f.indent = (jstr){x[1].u.s, x[1].n};
        else {
            int64_t w;
            jv ind = v_str("", 0);
            TRY(need_int(r, "tojson", x[1], &w));
            TRY(repeat(r, v_lit(" "), w, &ind));
            f.indent = (jstr){ind.u.s ? ind.u.s : "", ind.n};
        }
    }
    f.item_sep = f.indent.s ? (jstr){",", 1} : (jstr){", ", 2};
    f.key_sep = (jstr){": ", 2};
    if (x[2].k != V_NONE) {
        const jlist *seps;
        TRY(iterate(r, x[2], &seps));
        if (seps->n != 2 || seps->v[0].k != V_STR || seps->v[1].k != V_STR)
            return rerr(r, SIM_ERR_FORMAT, "tojson: separators must be two strings");
        f.item_sep = (jstr){seps->v[0].u.s, seps->v[0].n};
        f.key_sep = (jstr){seps->v[1].u.s, seps->v[1].n};
    }
    sink o = {0};
    TRY(json_write(r, &o, v, &f, 0));
    *out = sk_value(&o);
    return SIM_OK;
}

static int f_attr(R *r, jv v, const jargs *a, jv *out) {
    static const char *const p[] = {"name"};
    jv x[1];
    bool h[1];
    TRY(bind(r, "attr", a, p, 1, x, h));
    TRY(need_str(r, "attr", x[0]));
    if (v.k == V_DICT) { // a Python attribute only: methods, never keys
        int m = find_name(method_names + M_STR_END, M_DICT_END - M_STR_END, x[0].u.s, x[0].n);
        if (m >= 0) return make_func(r, F_METHOD, M_STR_END + m, v, method_names[M_STR_END + m], out);
        *out = v_undef_attr(v, x[0].u.s, x[0].n);
        return SIM_OK;
    }
    return get_attr(r, v, x[0].u.s, x[0].n, out);
}

static int gen_batch(R *r, jv v, const jargs *a, jv *out) {
    static const char *const p[] = {"linecount", "fill_with"};
    jv x[2];
    bool h[2];
    int64_t n;
    const jlist *items;
    TRY(bind(r, "batch", a, p, 2, x, h));
    TRY(need_int(r, "batch", x[0], &n));
    TRY(iterate(r, v, &items));
    lvec o = {0}, cur = {0};
    for (size_t i = 0; i < items->n; i++) {
        if ((int64_t)cur.n == n) {
            jv l;
            TRY(lv_done(r, &cur, SUB_LIST, &l));
            TRY(lv_push(r, &o, l));
            cur = (lvec){0};
        }
        TRY(lv_push(r, &cur, items->v[i]));
    }
    if (cur.n) {
        while (x[1].k != V_NONE && (int64_t)cur.n < n) TRY(lv_push(r, &cur, x[1]));
        jv l;
        TRY(lv_done(r, &cur, SUB_LIST, &l));
        TRY(lv_push(r, &o, l));
    }
    return lv_done(r, &o, SUB_GEN, out);
}

static int f_reverse(R *r, jv v, const jargs *a, jv *out) {
    TRY(no_args(r, "reverse", a));
    if (v.k == V_STR) return get_slice(r, v, v_none(), v_none(), v_int(-1), out);
    bool was_iter = IS_ITER(v); // reversed() refuses iterators, so jinja2 makes a list
    const jlist *items;
    TRY(iterate(r, v, &items));
    jlist *l = list_new(r, items->n);
    if (!l) return r_nomem(r);
    for (size_t i = 0; i < items->n; i++) l->v[i] = items->v[items->n - 1 - i];
    *out = v_list(l, was_iter ? SUB_LIST : SUB_REV);
    return SIM_OK;
}

static int f_format(R *r, jv v, const jargs *a, jv *out) {
    if (a->npos && a->nkw) return rerr(r, SIM_ERR_FORMAT, "can't handle positional and keyword arguments at the same time");
    TRY(to_str(r, v, &v));
    if (a->nkw) {
        jdict *d = dict_new(r);
        if (!d) return r_nomem(r);
        for (size_t k = 0; k < a->nkw; k++) TRY(dict_set(r, d, v_str(a->kwn[k].s, a->kwn[k].n), a->kwv[k]));
        return py_format(r, v, (jv){.k = V_DICT, .u.d = d}, out);
    }
    jlist *l = list_new(r, a->npos);
    if (!l) return r_nomem(r);
    if (a->npos) memcpy(l->v, a->pos, a->npos * sizeof(jv));
    return py_format(r, v, v_list(l, SUB_TUPLE), out);
}

// jinja2's generator filters run only when consumed: an error they meet
// becomes a generator that raises it then (printing one, or testing its
// truth, never fails).
static int deferred(R *r, filter_fn fn, jv v, const jargs *a, jv *out) {
    int st = fn(r, v, a, out);
    if (st != SIM_ERR_FORMAT) return st;
    if (r->fold) return FOLD_IMPOSSIBLE;
    const char *m = r->err->msg, *c = strstr(m, ": ");
    if (!strncmp(m, "line ", 5) && c) m = c + 2;
    jlist *l = list_new(r, 0);
    char *msg = ralloc(r, strlen(m) + 1);
    if (!l || !msg) return r_nomem(r);
    strcpy(msg, m);
    l->broken = msg;
    *out = v_list(l, SUB_GEN);
    return SIM_OK;
}

// select / reject / selectattr / rejectattr
static int select_items(R *r, jv v, const jargs *a, bool attr, bool keep_if, jv *out) {
    const jlist *items;
    if (!truthy(v)) return lv_done(r, &(lvec){0}, SUB_GEN, out); // jinja2 checks `if value:` first
    size_t off = attr ? 1 : 0;
    if (attr && a->npos < 1) return rerr(r, SIM_ERR_FORMAT, "Missing parameter for attribute name");
    bool has_test = a->npos > off;
    jstr test = {0};
    if (has_test) {
        TRY(need_str(r, "select", a->pos[off]));
        test = (jstr){a->pos[off].u.s, a->pos[off].n};
    }
    jargs targs = {a->pos + off + 1, has_test ? a->npos - off - 1 : 0, a->kwn, a->kwv, a->nkw};
    TRY(iterate(r, v, &items));
    lvec o = {0};
    for (size_t i = 0; i < items->n; i++) {
        jv it = items->v[i];
        bool res = false;
        if (attr) TRY(attr_path(r, it, a->pos[0], &it));
        if (has_test) TRY(call_test(r, test, it, &targs, &res));
        else res = truthy(it);
        if (res == keep_if) TRY(lv_push(r, &o, items->v[i]));
    }
    return lv_done(r, &o, SUB_GEN, out);
}
static int gen_select(R *r, jv v, const jargs *a, jv *out) { return select_items(r, v, a, false, true, out); }
static int gen_reject(R *r, jv v, const jargs *a, jv *out) { return select_items(r, v, a, false, false, out); }
static int gen_selectattr(R *r, jv v, const jargs *a, jv *out) { return select_items(r, v, a, true, true, out); }
static int gen_rejectattr(R *r, jv v, const jargs *a, jv *out) { return select_items(r, v, a, true, false, out); }

static int gen_map(R *r, jv v, const jargs *a, jv *out) {
    const jlist *items;
    if (!truthy(v)) return lv_done(r, &(lvec){0}, SUB_GEN, out); // jinja2 checks `if value:` first
    TRY(iterate(r, v, &items));
    jv attr = v_none(), dflt = v_none();
    bool by_attr = false;
    if (!a->npos) {
        for (size_t k = 0; k < a->nkw; k++) {
            if (str_is(a->kwn[k].s, a->kwn[k].n, "attribute")) attr = a->kwv[k], by_attr = true;
            else if (str_is(a->kwn[k].s, a->kwn[k].n, "default")) dflt = a->kwv[k];
            else return rerr(r, SIM_ERR_FORMAT, "Unexpected keyword argument '%.*s'", (int)MIN(a->kwn[k].n, 60), a->kwn[k].s);
        }
        if (!by_attr) return rerr(r, SIM_ERR_FORMAT, "map requires a filter argument");
    } else {
        TRY(need_str(r, "map", a->pos[0]));
    }
    jargs fargs = {a->pos + (a->npos ? 1 : 0), a->npos ? a->npos - 1 : 0, a->kwn, a->kwv, a->nkw};
    jlist *l = list_new(r, items->n);
    if (!l) return r_nomem(r);
    for (size_t i = 0; i < items->n; i++) {
        if (by_attr) {
            TRY(attr_path(r, items->v[i], attr, &l->v[i]));
            if (l->v[i].k == V_UNDEF && dflt.k != V_NONE) l->v[i] = dflt;
        } else {
            TRY(call_filter(r, (jstr){a->pos[0].u.s, a->pos[0].n}, items->v[i], &fargs, &l->v[i]));
        }
    }
    *out = v_list(l, SUB_GEN);
    return SIM_OK;
}

static int f_select(R *r, jv v, const jargs *a, jv *out) { return deferred(r, gen_select, v, a, out); }
static int f_reject(R *r, jv v, const jargs *a, jv *out) { return deferred(r, gen_reject, v, a, out); }
static int f_selectattr(R *r, jv v, const jargs *a, jv *out) { return deferred(r, gen_selectattr, v, a, out); }
static int f_rejectattr(R *r, jv v, const jargs *a, jv *out) { return deferred(r, gen_rejectattr, v, a, out); }
static int f_map(R *r, jv v, const jargs *a, jv *out) { return deferred(r, gen_map, v, a, out); }
static int f_unique(R *r, jv v, const jargs *a, jv *out) { return deferred(r, gen_unique, v, a, out); }
static int f_batch(R *r, jv v, const jargs *a, jv *out) { return deferred(r, gen_batch, v, a, out); }
static int f_items(R *r, jv v, const jargs *a, jv *out) { return deferred(r, gen_items, v, a, out); }

static const struct {
    const char *name;
    filter_fn fn;
} filters[] = {
    {"abs", f_abs},           {"attr", f_attr},         {"batch", f_batch},     {"capitalize", f_capitalize},
    {"center", f_center},     {"count", f_length},      {"d", f_default},       {"default", f_default},
    {"dictsort", f_dictsort}, {"e", f_escape},          {"escape", f_escape},   {"first", f_first},
    {"float", f_float},       {"forceescape", f_escape}, {"format", f_format},  {"indent", f_indent},
    {"int", f_int},           {"items", f_items},       {"join", f_join},       {"last", f_last},
    {"length", f_length},     {"list", f_list},         {"lower", f_lower},     {"map", f_map},
    {"max", f_max},           {"min", f_min},           {"reject", f_reject},   {"rejectattr", f_rejectattr},
    {"replace", f_replace},   {"reverse", f_reverse},   {"round", f_round},     {"safe", f_safe},
    {"select", f_select},     {"selectattr", f_selectattr}, {"sort", f_sort},   {"string", f_string},
    {"sum", f_sum},           {"title", f_title},       {"tojson", f_tojson},   {"trim", f_trim},
    {"unique", f_unique},     {"upper", f_upper},       {"wordcount", f_wordcount},
};

static int call_filter(R *r, jstr name, jv v, const jargs *a, jv *out) {
    TRY(step(r, 1));
    for (size_t i = 0; i < ARRAY_LEN(filters); i++)
        if (str_is(name.s, name.n, filters[i].name)) return filters[i].fn(r, v, a, out);
    return rerr(r, SIM_ERR_FORMAT, "No filter named '%.*s'.", (int)MIN(name.n, 60), name.s);
}

// --- tests ----------------------------------------------------------------------------------------

static int test_arg(R *r, const char *name, const jargs *a, jv *out) {
    static const char *const p[] = {"other"};
    bool h[1];
    TRY(bind(r, name, a, p, 1, out, h));
    if (!h[0]) return rerr(r, SIM_ERR_FORMAT, "%s() missing 1 required positional argument", name);
    return SIM_OK;
}

enum {
    TS_DEFINED, TS_UNDEFINED, TS_NONE, TS_BOOLEAN, TS_FALSE, TS_TRUE, TS_INTEGER, TS_FLOAT, TS_NUMBER, TS_STRING,
    TS_MAPPING, TS_ITERABLE, TS_SEQUENCE, TS_CALLABLE, TS_ODD, TS_EVEN, TS_DIVISIBLEBY, TS_EQ, TS_NE, TS_LT, TS_LE,
    TS_GT, TS_GE, TS_IN, TS_SAMEAS, TS_LOWER, TS_UPPER, TS_ESCAPED, TS_FILTER, TS_TEST
};
static const struct {
    const char *name;
    int id;
} tests[] = {
    {"defined", TS_DEFINED}, {"undefined", TS_UNDEFINED}, {"none", TS_NONE},       {"boolean", TS_BOOLEAN},
    {"false", TS_FALSE},     {"true", TS_TRUE},           {"integer", TS_INTEGER}, {"float", TS_FLOAT},
    {"number", TS_NUMBER},   {"string", TS_STRING},       {"mapping", TS_MAPPING}, {"iterable", TS_ITERABLE},
    {"sequence", TS_SEQUENCE}, {"callable", TS_CALLABLE}, {"odd", TS_ODD},         {"even", TS_EVEN},
    {"divisibleby", TS_DIVISIBLEBY}, {"eq", TS_EQ},       {"equalto", TS_EQ},      {"==", TS_EQ},
    {"ne", TS_NE},           {"!=", TS_NE},               {"lt", TS_LT},           {"lessthan", TS_LT},
    {"<", TS_LT},            {"le", TS_LE},               {"<=", TS_LE},           {"gt", TS_GT},
    {"greaterthan", TS_GT},  {">", TS_GT},                {"ge", TS_GE},           {">=", TS_GE},
    {"in", TS_IN},           {"sameas", TS_SAMEAS},       {"lower", TS_LOWER},     {"upper", TS_UPPER},
    {"escaped", TS_ESCAPED}, {"filter", TS_FILTER},       {"test", TS_TEST},
};

static int call_test(R *r, jstr name, jv v, const jargs *a, bool *out) {
    TRY(step(r, 1));
    int id = -1;
    for (size_t i = 0; i < ARRAY_LEN(tests) && id < 0; i++)
        if (str_is(name.s, name.n, tests[i].name)) id = tests[i].id;
    if (id < 0) return rerr(r, SIM_ERR_FORMAT, "No test named '%.*s'.", (int)MIN(name.n, 60), name.s);
    if (id < TS_ODD || id == TS_LOWER || id == TS_UPPER || id == TS_ESCAPED) TRY(no_args(r, name.s, a));
    jv o;
    switch (id) {
    case TS_DEFINED: *out = v.k != V_UNDEF; return SIM_OK;
    case TS_UNDEFINED: *out = v.k == V_UNDEF; return SIM_OK;
    case TS_NONE: *out = v.k == V_NONE; return SIM_OK;
    case TS_BOOLEAN: *out = v.k == V_BOOL; return SIM_OK;
    case TS_FALSE: *out = v.k == V_BOOL && !v.u.b; return SIM_OK;
    case TS_TRUE: *out = v.k == V_BOOL && v.u.b; return SIM_OK;
    case TS_INTEGER: *out = v.k == V_INT; return SIM_OK;
    case TS_FLOAT: *out = v.k == V_FLOAT; return SIM_OK;
    case TS_NUMBER: *out = is_num(v); return SIM_OK;
    case TS_STRING: *out = v.k == V_STR; return SIM_OK;
    case TS_MAPPING: *out = v.k == V_DICT; return SIM_OK;
    case TS_ITERABLE: *out = v.k == V_UNDEF || v.k == V_STR || v.k == V_LIST || v.k == V_DICT || v.k == V_LOOP; return SIM_OK;
    case TS_SEQUENCE:
        *out = v.k == V_UNDEF || v.k == V_STR || IS_PLAIN(v) || (v.k == V_LIST && v.sub == SUB_RANGE) || v.k == V_DICT ||
               v.k == V_LOOP;
        return SIM_OK;
    case TS_CALLABLE: *out = v.k == V_FUNC || v.k == V_UNDEF || v.k == V_LOOP; return SIM_OK; // Undefined has __call__
    case TS_ODD:
    case TS_EVEN:
    case TS_DIVISIBLEBY: {
        jv m = v_int(2), rem;
        if (id == TS_DIVISIBLEBY) TRY(test_arg(r, "divisibleby", a, &m));
        else TRY(no_args(r, name.s, a));
        TRY(binop(r, OP_MOD, v, m, &rem));
        *out = id == TS_ODD ? py_eq(rem, v_int(1), 0) : py_eq(rem, v_int(0), 0);
        return SIM_OK;
    }
    case TS_EQ:
    case TS_NE:
    case TS_LT:
    case TS_LE:
    case TS_GT:
    case TS_GE:
    case TS_IN: {
        static const int ops[] = {[TS_EQ] = OP_EQ, [TS_NE] = OP_NE, [TS_LT] = OP_LT, [TS_LE] = OP_LE,
                                  [TS_GT] = OP_GT, [TS_GE] = OP_GE, [TS_IN] = OP_IN};
        TRY(test_arg(r, name.s, a, &o));
        return compare(r, ops[id], v, o, out);
    }
    case TS_SAMEAS:
        TRY(test_arg(r, "sameas", a, &o));
        if (v.k != o.k) *out = false;
        else if (v.k == V_STR) *out = v.u.s == o.u.s && v.n == o.n;
        else if (v.k == V_LIST || v.k == V_DICT || v.k == V_NS || v.k == V_FUNC || v.k == V_LOOP) *out = v.u.l == o.u.l;
        else *out = py_eq(v, o, 0);
        return SIM_OK;
    case TS_LOWER:
    case TS_UPPER:
        TRY(to_str(r, v, &o));
        *out = str_test(o, id == TS_LOWER ? M_ISLOWER : M_ISUPPER);
        return SIM_OK;
    case TS_ESCAPED: *out = false; return SIM_OK;
    default: { // filter / test: whether one of that name exists
        TRY(no_args(r, name.s, a));
        *out = false;
        if (v.k != V_STR) return SIM_OK;
        if (id == TS_FILTER) {
            for (size_t i = 0; i < ARRAY_LEN(filters); i++) *out |= str_is(v.u.s, v.n, filters[i].name);
        } else {
            for (size_t i = 0; i < ARRAY_LEN(tests); i++) *out |= str_is(v.u.s, v.n, tests[i].name);
        }
        return SIM_OK;
    }
    }
}

// --- tree depth ---------------------------------------------------------------------------------------

// Refuses trees deeper than JINJA_MAX_TREE (1+1+1+... or a long elif chain
// parse without recursion but nest deeply), so the passes below and the
// interpreter can recurse. Iterative.
static int check_depth(P *p, jnode *root) {
    typedef struct item {
        jnode *n;
        int depth;
    } item;
    size_t cap = 256, n = 0;
    item *st = mem_alloc(cap * sizeof *st);
    if (!st) return p_nomem(p);
    st[n++] = (item){root, 1};
    int rc = SIM_OK;
    while (n && rc == SIM_OK) {
        item it = st[--n];
        if (it.depth > JINJA_MAX_TREE) {
            rc = perr(p, it.n->pos, "the template nests too deeply (more than %d levels)", JINJA_MAX_TREE);
            break;
        }
        jnode *kids[3] = {it.n->a, it.n->b, it.n->c};
        size_t need = n + 3 + it.n->l1.n + it.n->l2.n;
        if (need > cap) {
            while (cap < need) cap *= 2;
            item *q = mem_realloc(st, cap * sizeof *st);
            if (!q) {
                rc = p_nomem(p);
                break;
            }
            st = q;
        }
        for (int k = 0; k < 3; k++)
            if (kids[k]) st[n++] = (item){kids[k], it.depth + 1};
        for (uint32_t k = 0; k < it.n->l1.n; k++) st[n++] = (item){it.n->l1.v[k], it.depth + 1};
        for (uint32_t k = 0; k < it.n->l2.n; k++) st[n++] = (item){it.n->l2.v[k], it.depth + 1};
    }
    mem_free(st);
    return rc;
}

// --- scoping: jinja2's symbol analysis ----------------------------------------------------------------
//
// jinja2 decides at compile time where each name of a frame (the template,
// a loop body, a macro, a block) comes from. A name whose first mention in a
// frame is an assignment (on every branch, as jinja2 counts them), and that
// no enclosing frame mentions anywhere, starts out undefined in that frame,
// hiding the context: `{% for %}{{ a }}{% endfor %}{% set a = 1 %}` prints
// nothing even when the context has `a`. Every other name is looked up
// through the enclosing frames at run time, which is what jinja2's aliases
// and context lookups amount to. This pass computes, per frame, the names
// that start out undefined (jnode.undef), mirroring idtracking.py.

enum { L_UNDEF, L_RESOLVE, L_PARAM }; // how a frame's own name starts (jinja2's aliases count as resolve)

typedef struct symtab {
    const struct symtab *parent;
    jarena *a;
    jstr *name;
    uint8_t *load;
    uint32_t n, cap;
    jstr *stores;
    uint32_t ns, scap;
} symtab;

static long sym_own(const symtab *t, jstr nm) {
    for (uint32_t i = 0; i < t->n; i++)
        if (t->name[i].n == nm.n && !memcmp(t->name[i].s, nm.s, nm.n)) return (long)i;
    return -1;
}

static bool sym_ref(const symtab *t, jstr nm) {
    for (; t; t = t->parent)
        if (sym_own(t, nm) >= 0) return true;
    return false;
}

static bool sym_set(symtab *t, jstr nm, int load) {
    long i = sym_own(t, nm);
    if (i >= 0) {
        t->load[i] = (uint8_t)load;
        return true;
    }
    if (t->n == t->cap) {
        uint32_t cap = t->cap ? t->cap * 2 : 8;
        jstr *nn = ar_grow(t->a, t->name, t->cap * sizeof *nn, cap * sizeof *nn);
        uint8_t *nl = nn ? ar_grow(t->a, t->load, t->cap, cap) : NULL;
        if (!nl) return false;
        t->name = nn;
        t->load = nl;
        t->cap = cap;
    }
    t->name[t->n] = nm;
    t->load[t->n++] = (uint8_t)load;
    return true;
}

static bool sym_stored(const symtab *t, jstr nm) {
    for (uint32_t i = 0; i < t->ns; i++)
        if (t->stores[i].n == nm.n && !memcmp(t->stores[i].s, nm.s, nm.n)) return true;
    return false;
}

static bool sym_add_store(symtab *t, jstr nm) {
    if (sym_stored(t, nm)) return true;
    if (t->ns == t->scap) {
        uint32_t cap = t->scap ? t->scap * 2 : 8;
        jstr *q = ar_grow(t->a, t->stores, t->scap * sizeof *q, cap * sizeof *q);
        if (!q) return false;
        t->stores = q;
        t->scap = cap;
    }
    t->stores[t->ns++] = nm;
    return true;
}

static bool sym_load(symtab *t, jstr nm) { return sym_ref(t, nm) || sym_set(t, nm, L_RESOLVE); }

static bool sym_store(symtab *t, jstr nm) {
    if (!sym_add_store(t, nm)) return false;
    if (sym_own(t, nm) >= 0) return true;
    return sym_set(t, nm, t->parent && sym_ref(t->parent, nm) ? L_RESOLVE : L_UNDEF);
}

static bool sym_param(symtab *t, jstr nm) { return sym_add_store(t, nm) && sym_set(t, nm, L_PARAM); }

static bool sym_copy(const symtab *t, symtab *c) {
    *c = (symtab){.parent = t->parent, .a = t->a};
    for (uint32_t i = 0; i < t->n; i++)
        if (!sym_set(c, t->name[i], t->load[i])) return false;
    for (uint32_t i = 0; i < t->ns; i++)
        if (!sym_add_store(c, t->stores[i])) return false;
    return true;
}

// Symbols.branch_update: names stored on some branches only are looked up.
static bool sym_branches(symtab *t, symtab *br, int nb) {
    for (int b = 0; b < nb; b++) {
        for (uint32_t i = 0; i < br[b].n; i++)
            if (!sym_set(t, br[b].name[i], br[b].load[i])) return false;
    }
    symtab before = {0};
    if (!sym_copy(t, &before)) return false; // t's stores before the branches
    for (int b = 0; b < nb; b++)
        for (uint32_t i = 0; i < br[b].ns; i++)
            if (!sym_add_store(t, br[b].stores[i])) return false;
    for (int b = 0; b < nb; b++)
        for (uint32_t i = 0; i < br[b].ns; i++) {
            jstr nm = br[b].stores[i];
            if (sym_stored(&before, nm)) continue;
            int count = 0;
            for (int c = 0; c < nb; c++) count += sym_stored(&br[c], nm);
            long own = sym_own(t, nm);
            if (count < nb && own >= 0) t->load[own] = L_RESOLVE;
        }
    return true;
}

static bool sym_expr(symtab *t, const jnode *e) {
    if (!e) return true;
    if (e->kind == E_NAME && !sym_load(t, e->name)) return false;
    if (!sym_expr(t, e->a) || !sym_expr(t, e->b) || !sym_expr(t, e->c)) return false;
    for (uint32_t i = 0; i < e->l1.n; i++)
        if (!sym_expr(t, e->l1.v[i])) return false;
    for (uint32_t i = 0; i < e->l2.n; i++)
        if (!sym_expr(t, e->l2.v[i])) return false;
    return true;
}

static bool sym_target(symtab *t, const jnode *x, bool param) {
    if (x->kind == E_NAME) return param ? sym_param(t, x->name) : sym_store(t, x->name);
    if (x->kind == E_ATTR) return sym_load(t, x->a->name); // ns.attr
    for (uint32_t i = 0; i < x->l1.n; i++)
        if (!sym_target(t, x->l1.v[i], param)) return false;
    return true;
}

static bool sym_stmts(symtab *t, const nlist *body);

static bool sym_if(symtab *t, const jnode *s, bool with_elifs) {
    if (!sym_expr(t, s->a)) return false;
    symtab br[3];
    const jnode *last = s;
    if (!sym_copy(t, &br[0]) || !sym_stmts(&br[0], &s->l1) || !sym_copy(t, &br[1]) || !sym_copy(t, &br[2]))
        return false;
    // jinja2 keeps elifs in a list of their own (each an if without else) and the else at the end
    while (with_elifs && last->l2.n == 1 && last->l2.v[0]->kind == S_IF && last->l2.v[0]->elif) {
        last = last->l2.v[0];
        if (!sym_if(&br[1], last, false)) return false;
    }
    if (with_elifs && !sym_stmts(&br[2], &last->l2)) return false;
    return sym_branches(t, br, 3);
}

// FrameSymbolVisitor: a statement's mark on its own frame (inner frames are analysed later).
static bool sym_stmt(symtab *t, const jnode *s) {
    switch (s->kind) {
    case S_OUT: return sym_expr(t, s->a);
    case S_IF: return sym_if(t, s, true);
    case S_FOR: return sym_expr(t, s->b);
    case S_SET: return sym_expr(t, s->b) && sym_target(t, s->a, false);
    case S_SETBLOCK: return sym_target(t, s->a, false);
    case S_MACRO: return sym_store(t, s->name);
    case S_CALLBLOCK: return sym_expr(t, s->a);
    case S_FILTERBLOCK: return sym_expr(t, s->c);
    case S_WITH:
        for (uint32_t i = 0; i < s->l2.n; i++)
            if (!sym_expr(t, s->l2.v[i]->b)) return false;
        return true;
    default: return true;
    }
}

static bool sym_stmts(symtab *t, const nlist *body) {
    for (uint32_t i = 0; i < body->n; i++)
        if (!sym_stmt(t, body->v[i])) return false;
    return true;
}

static bool sym_frames(P *p, const symtab *t, const nlist *body);

// Analyses one frame: its parameters, its statements, then the frames inside it.
static bool sym_frame(P *p, const symtab *parent, jarena *a, const nlist *params, bool targets, const nlist *body,
                      const jnode *after, jstr **undef, uint32_t *nundef) {
    symtab t = {.parent = parent, .a = a};
    for (uint32_t i = 0; params && i < params->n; i++) {
        const jnode *x = params->v[i];
        if (targets) {
            if (!sym_target(&t, x->kind == S_SET ? x->a : x, true)) return false;
        } else if (!sym_param(&t, x->name) || !sym_expr(&t, x->a)) {
            return false;
        }
    }
    if (!sym_stmts(&t, body) || (after && !sym_expr(&t, after))) return false;
    uint32_t n = 0;
    for (uint32_t i = 0; i < t.n; i++) n += t.load[i] == L_UNDEF;
    if (n) {
        *undef = ar_alloc(&p->t->a, n * sizeof **undef);
        if (!*undef) return false;
        for (uint32_t i = 0, k = 0; i < t.n; i++)
            if (t.load[i] == L_UNDEF) (*undef)[k++] = t.name[i];
    }
    *nundef = n;
    return sym_frames(p, &t, body);
}

// The frames directly inside body (its if-blocks belong to the same frame).
static bool sym_frames(P *p, const symtab *t, const nlist *body) {
    static const jstr loop = {"loop", 4};
    for (uint32_t i = 0; i < body->n; i++) {
        jnode *s = body->v[i];
        bool ok = true;
        switch (s->kind) {
        case S_IF: ok = sym_frames(p, t, &s->l1) && sym_frames(p, t, &s->l2); break;
        case S_FOR: {
            jnode loopvar = {.kind = E_NAME, .name = loop}, *pv[2] = {s->a, &loopvar};
            nlist params = {pv, 2};
            ok = sym_frame(p, t, t->a, &params, true, &s->l1, NULL, &s->undef, &s->nundef) &&
                 sym_frame(p, t, t->a, NULL, false, &s->l2, NULL, &s->undef2, &s->nundef2);
            break;
        }
        case S_MACRO:
        case S_CALLBLOCK: ok = sym_frame(p, t, t->a, &s->l2, false, &s->l1, NULL, &s->undef, &s->nundef); break;
        case S_SETBLOCK:
        case S_BODY: ok = sym_frame(p, t, t->a, NULL, false, &s->l1, NULL, &s->undef, &s->nundef); break;
        case S_FILTERBLOCK: ok = sym_frame(p, t, t->a, NULL, false, &s->l1, s->c, &s->undef, &s->nundef); break;
        case S_WITH: ok = sym_frame(p, t, t->a, &s->l2, true, &s->l1, NULL, &s->undef, &s->nundef); break;
        default: break;
        }
        if (!ok) return false;
    }
    return true;
}

// --- constant folding ------------------------------------------------------------------------------
//
// jinja2 compiles a template to Python after replacing every expression it
// can compute without the context (no variables, no calls, no filters that
// take the context) by its value, when that value has a safe repr; a {{ }}
// whose expression it can compute is printed at compile time, whatever the
// value. Slices then go through its forgiving getitem (a slice of a
// non-sequence is undefined, where at run time it is a TypeError), and a
// folded negative base is written without parentheses (`-3 ** x` runs as
// -(3 ** x)). This pass does the same, evaluating with a scratch render
// state; it also saves work at render time.

#define FOLD_STEPS 200000        // per template; past it, expressions are left to render time
#define FOLD_MEMORY (16u << 20)   // scratch memory per template
#define FOLD_MAX_VALUE (64u << 10) // bytes a folded value may take in the template

// A copy of a safe constant in the template's arena.
static bool copy_const(jarena *a, jv v, jv *out) {
    *out = v;
    if (v.k == V_STR) {
        char *s = ar_alloc(a, v.n + 1);
        if (!s) return false;
        if (v.n) memcpy(s, v.u.s, v.n);
        out->u.s = s;
    } else if (v.k == V_LIST) {
        jlist *l = ar_alloc(a, sizeof *l);
        jv *items = v.u.l->n ? ar_alloc(a, v.u.l->n * sizeof *items) : NULL;
        if (!l || (v.u.l->n && !items)) return false;
        *l = *v.u.l;
        l->v = items;
        for (size_t i = 0; i < l->n; i++)
            if (!copy_const(a, v.u.l->v[i], &items[i])) return false;
        out->u.l = l;
    } else if (v.k == V_DICT) {
        const jdict *d = v.u.d;
        jdict *c = ar_alloc(a, sizeof *c);
        jv *k = d->n ? ar_alloc(a, d->n * sizeof *k) : NULL, *vals = d->n ? ar_alloc(a, d->n * sizeof *vals) : NULL;
        uint32_t *idx = d->idx ? ar_alloc(a, d->icap * sizeof *idx) : NULL;
        if (!c || (d->n && (!k || !vals)) || (d->idx && !idx)) return false;
        *c = (jdict){.key = k, .val = vals, .n = d->n, .cap = d->n, .idx = idx, .icap = d->icap};
        if (idx) memcpy(idx, d->idx, d->icap * sizeof *idx); // hashes depend on content only
        for (size_t i = 0; i < d->n; i++)
            if (!copy_const(a, d->key[i], &k[i]) || !copy_const(a, d->val[i], &vals[i])) return false;
        out->u.d = c;
    }
    return true;
}

static bool const_eval(R *r, const jnode *e, jv *out) {
    jscope none = {0}; // names are impossible here, so nothing is looked up or set
    if (r->steps >= r->max_steps) return false;
    r->fold = true;
    r->depth = 0;
    int st = eval(r, e, &none, out);
    r->fold = false;
    return st == SIM_OK;
}

// Folds e's children, then e; returns what replaces e (false on no memory).
static bool fold(R *r, P *p, jnode **slot) {
    jnode *e = *slot;
    if (!e) return true;
    if (!fold(r, p, &e->a) || !fold(r, p, &e->b) || !fold(r, p, &e->c)) return false;
    for (uint32_t i = 0; i < e->l1.n; i++)
        if (!fold(r, p, &e->l1.v[i])) return false;
    for (uint32_t i = 0; i < e->l2.n; i++)
        if (!fold(r, p, &e->l2.v[i])) return false;
    jv v;
    if (e->kind == E_BIN && e->op == OP_POW && e->a->kind == E_CONST && e->b->kind != E_CONST) e->negbase = true;
    if (e->kind == S_OUT) { // printed at compile time when it can be computed
        sink s = {0};
        if (!const_eval(r, e->a, &v) || (v.k != V_STR && v_write(r, &s, v, false, 0) != SIM_OK)) return true;
        jv text = v.k == V_STR ? v : sk_value(&s);
        if (text.n > FOLD_MAX_VALUE) return true;
        if (!copy_const(&p->t->a, text, &text)) return p_nomem(p), false;
        e->kind = S_TEXT;
        e->name = (jstr){text.u.s, text.n};
        e->op = 0; // no trim_blocks / lstrip_blocks
        e->x1 = 0;
        return true;
    }
    if (e->kind >= S_BODY || e->kind == E_CONST || e->kind == E_KW || e->kind == E_OPERAND || e->kind == E_SLICE)
        return true;
    size_t size = 0;
    if (!const_eval(r, e, &v) || !safe_const(v, 0, &size) || size > FOLD_MAX_VALUE) return true;
    jnode *c = nnew(p, E_CONST, e->pos);
    if (!c || !copy_const(&p->t->a, v, &c->val)) return p_nomem(p), false;
    *slot = c;
    return true;
}

// --- public API ------------------------------------------------------------------------------------

sim_status jinja_parse(jinja_template **out, const char *src, size_t len, sim_err *err) {
    if (out) *out = NULL;
    if (!out || (!src && len)) return err_set(err, SIM_ERR_ARG, "jinja_parse: NULL argument");
    if (len > JINJA_MAX_SOURCE)
        return err_set(err, SIM_ERR_RANGE, "the template is %zu bytes, more than the %u allowed", len, JINJA_MAX_SOURCE);
    if (!utf8_valid(src, len)) return err_set(err, SIM_ERR_FORMAT, "the template is not valid UTF-8");
    jinja_template *t = mem_calloc(1, sizeof *t);
    if (!t) return err_set(err, SIM_ERR_NOMEM, "out of memory parsing a template");
    char *s = ar_alloc(&t->a, len + 1);
    if (!s) {
        mem_free(t);
        return err_set(err, SIM_ERR_NOMEM, "out of memory parsing a template");
    }
    // jinja2 normalizes \r\n and \r to \n and drops one trailing newline (keep_trailing_newline=False).
    size_t n = 0;
    for (size_t i = 0; i < len; i++) {
        if (src[i] == '\r') {
            s[n++] = '\n';
            if (i + 1 < len && src[i + 1] == '\n') i++;
        } else {
            s[n++] = src[i];
        }
    }
    if (n && s[n - 1] == '\n') n--;
    s[n] = 0;
    t->src = s;
    t->len = n;
    P p = {.t = t, .err = err};
    int st = lex(&p);
    if (st == SIM_OK) {
        t->root = nnew(&p, S_BODY, 0);
        if (!t->root) st = SIM_ERR_NOMEM;
        else if (!parse_body(&p, &t->root->l1, NULL, NULL, 0)) st = p.st ? p.st : SIM_ERR_FORMAT;
        else st = check_depth(&p, t->root);
    }
    if (st == SIM_OK) {
        jarena scratch_a = {0};
        if (!sym_frame(&p, NULL, &scratch_a, NULL, false, &t->root->l1, NULL, &t->root->undef, &t->root->nundef))
            st = p_nomem(&p);
        ar_free_all(&scratch_a);
    }
    if (st == SIM_OK) {
        sim_err scratch;
        R r = {.t = t, .err = &scratch, .max_steps = FOLD_STEPS, .max_out = JINJA_MAX_OUTPUT};
        r.a.limit = FOLD_MEMORY;
        if (!fold(&r, &p, &t->root)) st = p.st;
        ar_free_all(&r.a);
    }
    mem_free(p.tk);
    if (st != SIM_OK) {
        jinja_free(t);
        return st;
    }
    *out = t;
    return SIM_OK;
}

void jinja_free(jinja_template *t) {
    if (!t) return;
    ar_free_all(&t->a);
    mem_free(t);
}

sim_status jinja_render(const jinja_template *t, const json_t *ctx, const jinja_opts *opts, char **out,
                        size_t *out_len, sim_err *err) {
    if (out) *out = NULL;
    if (out_len) *out_len = 0;
    if (!t || !out) return err_set(err, SIM_ERR_ARG, "jinja_render: NULL argument");
    if (ctx && !json_is_object(ctx)) return err_set(err, SIM_ERR_ARG, "jinja_render: the context must be a JSON object");
    sim_err local;
    if (!err) err = &local; // deferred errors read the message back
    jinja_opts o = opts ? *opts : (jinja_opts){0};
    R r = {.t = t, .err = err, .ctx = ctx, .trim = o.trim_blocks, .lstrip = o.lstrip_blocks};
    r.max_out = o.max_output ? o.max_output : JINJA_MAX_OUTPUT;
    r.max_steps = o.max_steps ? o.max_steps : JINJA_MAX_STEPS;
    r.a.limit = o.max_memory ? o.max_memory : JINJA_MAX_MEMORY;
    if (o.now) r.now = *o.now;
    else {
        time_t now = time(NULL);
        localtime_r(&now, &r.now);
    }
    sink s = {0};
    r.out = &s;
    int st = SIM_OK;
    jscope *top = NULL;
    if (!(r.ctxs = scope_new(&r, NULL)) || !(top = scope_new(&r, r.ctxs))) st = r_nomem(&r);
    if (st == SIM_OK) st = predeclare(&r, top, t->root->undef, t->root->nundef);
    if (st == SIM_OK) st = exec_body(&r, &t->root->l1, top);
    if (st == SIM_OK) {
        char *res = mem_alloc(s.n + 1);
        if (!res) st = err_set(err, SIM_ERR_NOMEM, "out of memory");
        else {
            if (s.n) memcpy(res, s.p, s.n);
            res[s.n] = 0;
            *out = res;
            if (out_len) *out_len = s.n;
        }
    }
    ar_free_all(&r.a);
    return st > 0 ? SIM_OK : st;
}
