// grammar.c — GBNF parsing and compilation, the byte-level matcher with its
// lazy DFA, the vocabulary trie and the token filter. See grammar.h.
//
// Compiled form (as llama.cpp's, rebuilt here): every rule is a list of
// alternatives; an alternative is a run of elements ended by GE_END; an
// element is a character class (GE_CHAR, a set of code-point ranges) or a
// reference to a rule (GE_REF). Groups and repetitions become rules of
// their own: x* is R ::= x R | (nothing), x? is R ::= x |, x{m,n} is m
// copies of x followed by n-m nested optional rules.
//
// A parse stack is a chain of nodes (pos, parent): pos is the element to
// match next (the top: always a GE_CHAR) or to resume at when the child rule
// ends; node 0 is the empty stack (root fully matched). A reference followed
// by GE_END pushes no continuation (a tail call), so x* loops in constant
// depth. The top node also carries the UTF-8 sequence matched so far
// (`partial`). Nodes are hash-consed, so a set of stacks is a sorted array of
// node ids; each distinct set becomes a DFA state, and its transition on
// byte b (computed once, then cached) is the set reached by stepping every
// stack by b and expanding references until every top is a character class.
#include "infer/grammar.h"

#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "base/utf8.h"

// --- compiled grammar ----------------------------------------------------------

enum { GE_END = 0, GE_CHAR = 1, GE_REF = 2 };

typedef struct gelem {
    int32_t kind; // GE_*
    int32_t arg;  // class index (GE_CHAR) or rule index (GE_REF)
} gelem;

struct gram_grammar {
    gelem *el;        // (n_el) all rules' alternatives, each ended by GE_END
    int32_t n_el;
    int32_t *alt_pos; // (n_alt) element index where each alternative starts
    int32_t *alt_off; // (n_rules + 1) rule r's alternatives: alt_pos[alt_off[r] .. alt_off[r+1])
    int32_t n_rules;
    int32_t root;
    uint32_t *ranges; // (2 * n_ranges) sorted, disjoint [lo, hi] code-point pairs, no surrogates
    int32_t *cls_off; // (n_cls + 1) class c's ranges: ranges[2*cls_off[c] .. 2*cls_off[c+1])
    uint32_t *ascii;  // (n_cls * 4) bitmap of the ASCII code points each class holds
    int32_t n_cls;
};

int gram_n_rules(const gram_grammar *g) { return g ? g->n_rules : 0; }
int gram_n_elements(const gram_grammar *g) { return g ? g->n_el : 0; }

void gram_free(gram_grammar *g) {
    if (!g) return;
    mem_free(g->el);
    mem_free(g->alt_pos);
    mem_free(g->alt_off);
    mem_free(g->ranges);
    mem_free(g->cls_off);
    mem_free(g->ascii);
    mem_free(g);
}

// --- parser ----------------------------------------------------------------------

enum { SYN_USER = 0, SYN_GROUP, SYN_STAR, SYN_OPT };

typedef struct prule {
    const char *name; // into the source (NULL for a made-up rule)
    size_t name_len;
    size_t def_off;   // where it is defined (made-up rules: the group / operator)
    size_t ref_off;   // first reference (for "undefined rule")
    bool defined, referenced;
    int synth;        // SYN_*
    gelem *el;        // alternatives, each ended by GE_END
    size_t n, cap;
} prule;

typedef struct parser {
    const char *src;
    size_t len, pos;
    prule *rules;
    int32_t n_rules, cap_rules;
    uint32_t *ranges; // pairs
    size_t n_ranges, cap_ranges;
    int32_t *cls_off;
    int32_t n_cls, cap_cls;
    uint32_t *tmp;    // scratch pairs for one class
    size_t n_tmp, cap_tmp;
    int32_t *name_ht; // named rules by name hash (open addressing, -1 empty)
    uint32_t name_mask, n_named;
    size_t total_el;
    int nest;
    sim_err *err;
    sim_status st;    // first error
} parser;

// Line and column (1-based, columns in characters) of byte offset off.
static void loc_of(const char *src, size_t len, size_t off, int *line, int *col) {
    int l = 1, c = 1;
    if (off > len) off = len;
    for (size_t i = 0; i < off; i++) {
        uint8_t b = (uint8_t)src[i];
        if (b == '\n') l++, c = 1;
        else if ((b & 0xC0) != 0x80) c++;
    }
    *line = l, *col = c;
}

__attribute__((format(printf, 3, 4))) static sim_status perr(parser *p, size_t off, const char *fmt, ...) {
    if (p->st != SIM_OK) return p->st;
    int line, col;
    loc_of(p->src, p->len, off, &line, &col);
    char what[400];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(what, sizeof what, fmt, ap);
    va_end(ap);
    p->st = err_set(p->err, SIM_ERR_FORMAT, "line %d, column %d: %s", line, col, what);
    return p->st;
}

static sim_status pnomem(parser *p) {
    if (p->st == SIM_OK) p->st = err_set(p->err, SIM_ERR_NOMEM, "out of memory compiling the grammar");
    return p->st;
}

// A printable rendering of the character at off, for "unexpected X".
static const char *char_repr(parser *p, size_t off, char buf[16]) {
    if (off >= p->len) return "end of input";
    uint8_t b = (uint8_t)p->src[off];
    if (b == '\n') return "newline";
    if (b >= 0x20 && b < 0x7F) snprintf(buf, 16, "'%c'", b);
    else {
        uint32_t cp;
        int k = utf8_decode(p->src + off, p->len - off, &cp);
        if (k > 0 && cp >= 0x80) snprintf(buf, 16, "'%.*s'", k, p->src + off);
        else snprintf(buf, 16, "byte 0x%02X", b);
    }
    return buf;
}

static bool grow(void **ptr, size_t *cap, size_t need, size_t elsize) {
    if (need <= *cap) return true;
    size_t nc = *cap ? *cap : 8;
    while (nc < need) nc *= 2;
    size_t bytes;
    if (!size_mul(nc, elsize, &bytes)) return false;
    void *q = mem_realloc(*ptr, bytes);
    if (!q) return false;
    *ptr = q, *cap = nc;
    return true;
}

static int32_t new_rule(parser *p, const char *name, size_t name_len, size_t off, int synth) {
    if (p->n_rules >= (1 << 24)) {
        err_set(p->err, SIM_ERR_RANGE, "grammar too large: more than %d rules", 1 << 24);
        p->st = SIM_ERR_RANGE;
        return -1;
    }
    size_t cap = (size_t)p->cap_rules;
    if (!grow((void **)&p->rules, &cap, (size_t)p->n_rules + 1, sizeof(prule))) return pnomem(p), -1;
    p->cap_rules = (int32_t)cap;
    prule *r = &p->rules[p->n_rules];
    memset(r, 0, sizeof *r);
    r->name = name, r->name_len = name_len, r->def_off = off, r->synth = synth;
    return p->n_rules++;
}

static uint32_t name_hash(const char *s, size_t n) {
    uint32_t h = 2166136261u;
    for (size_t i = 0; i < n; i++) h = (h ^ (uint8_t)s[i]) * 16777619u;
    return h;
}

static int32_t find_rule(parser *p, const char *name, size_t n) {
    if (!p->name_ht) return -1;
    for (uint32_t i = name_hash(name, n) & p->name_mask;; i = (i + 1) & p->name_mask) {
        int32_t id = p->name_ht[i];
        if (id < 0) return -1;
        prule *r = &p->rules[id];
        if (r->name_len == n && memcmp(r->name, name, n) == 0) return id;
    }
}

// A new named rule, entered in the name table.
static int32_t new_named_rule(parser *p, const char *name, size_t n, size_t off) {
    if ((p->n_named + 1) * 2 > p->name_mask) {
        uint32_t nm = p->name_mask ? p->name_mask * 2 + 1 : 63;
        int32_t *t = mem_alloc(((size_t)nm + 1) * sizeof(int32_t));
        if (!t) return pnomem(p), -1;
        memset(t, 0xFF, ((size_t)nm + 1) * sizeof(int32_t));
        for (uint32_t i = 0; p->name_ht && i <= p->name_mask; i++) {
            int32_t id = p->name_ht[i];
            if (id < 0) continue;
            uint32_t h = name_hash(p->rules[id].name, p->rules[id].name_len) & nm;
            while (t[h] >= 0) h = (h + 1) & nm;
            t[h] = id;
        }
        mem_free(p->name_ht);
        p->name_ht = t, p->name_mask = nm;
    }
    int32_t r = new_rule(p, name, n, off, SYN_USER);
    if (r < 0) return -1;
    uint32_t h = name_hash(name, n) & p->name_mask;
    while (p->name_ht[h] >= 0) h = (h + 1) & p->name_mask;
    p->name_ht[h] = r;
    p->n_named++;
    return r;
}

static bool emit(parser *p, int32_t rule, int32_t kind, int32_t arg) {
    if (p->st != SIM_OK) return false;
    if (++p->total_el > GRAM_MAX_ELEMS) {
        p->st = err_set(p->err, SIM_ERR_RANGE, "grammar too large: more than %d elements after expanding repetitions",
                        GRAM_MAX_ELEMS);
        return false;
    }
    prule *r = &p->rules[rule];
    if (!grow((void **)&r->el, &r->cap, r->n + 1, sizeof(gelem))) return pnomem(p), false;
    r->el[r->n++] = (gelem){kind, arg};
    return true;
}

// --- character classes

static int cmp_pair(const void *a, const void *b) {
    const uint32_t *x = a, *y = b;
    return x[0] < y[0] ? -1 : x[0] > y[0] ? 1 : 0;
}

static bool tmp_add(parser *p, uint32_t lo, uint32_t hi) {
    if (!grow((void **)&p->tmp, &p->cap_tmp, 2 * (p->n_tmp + 1), sizeof(uint32_t))) return pnomem(p), false;
    p->tmp[2 * p->n_tmp] = lo, p->tmp[2 * p->n_tmp + 1] = hi;
    p->n_tmp++;
    return true;
}

// Turns the pairs in p->tmp into a class: sorted, merged, negated if asked,
// surrogates removed. Returns the class index, or -1 (error set) — an empty
// class is an error at off.
static int32_t finish_class(parser *p, bool negate, size_t off) {
    uint32_t *t = p->tmp;
    size_t n = p->n_tmp;
    qsort(t, n, 2 * sizeof(uint32_t), cmp_pair);
    size_t m = 0;
    for (size_t i = 0; i < n; i++) {
        if (m && t[2 * i] <= t[2 * (m - 1) + 1] + 1) {
            if (t[2 * i + 1] > t[2 * (m - 1) + 1]) t[2 * (m - 1) + 1] = t[2 * i + 1];
        } else {
            t[2 * m] = t[2 * i], t[2 * m + 1] = t[2 * i + 1];
            m++;
        }
    }
    p->n_tmp = m;
    // Result: complement if negated, then minus [D800, DFFF], into p->ranges.
    size_t start = p->n_ranges;
    uint32_t prev = 0; // next code point not yet covered (negation)
    size_t k = 0;
    for (;;) {
        uint32_t lo, hi;
        if (!negate) {
            if (k == m) break;
            lo = t[2 * k], hi = t[2 * k + 1];
            k++;
        } else {
            if (prev > 0x10FFFF) break;
            if (k < m && t[2 * k] <= prev) {
                prev = t[2 * k + 1] + 1;
                k++;
                continue;
            }
            lo = prev;
            hi = k < m ? t[2 * k] - 1 : 0x10FFFF;
            prev = hi + 1;
        }
        // cut out surrogates
        uint32_t parts[2][2];
        int np = 0;
        if (hi < 0xD800 || lo > 0xDFFF) parts[np][0] = lo, parts[np][1] = hi, np++;
        else {
            if (lo < 0xD800) parts[np][0] = lo, parts[np][1] = 0xD7FF, np++;
            if (hi > 0xDFFF) parts[np][0] = 0xE000, parts[np][1] = hi, np++;
        }
        for (int j = 0; j < np; j++) {
            if (!grow((void **)&p->ranges, &p->cap_ranges, 2 * (p->n_ranges + 1), sizeof(uint32_t)))
                return pnomem(p), -1;
            p->ranges[2 * p->n_ranges] = parts[j][0];
            p->ranges[2 * p->n_ranges + 1] = parts[j][1];
            p->n_ranges++;
        }
    }
    if (p->n_ranges == start) return perr(p, off, "character class matches nothing"), -1;
    size_t cap = (size_t)p->cap_cls;
    if (!grow((void **)&p->cls_off, &cap, (size_t)p->n_cls + 2, sizeof(int32_t))) return pnomem(p), -1;
    p->cap_cls = (int32_t)cap;
    p->cls_off[p->n_cls] = (int32_t)start;
    p->cls_off[p->n_cls + 1] = (int32_t)p->n_ranges;
    return p->n_cls++;
}

static int32_t single_class(parser *p, uint32_t lo, uint32_t hi, size_t off) {
    p->n_tmp = 0;
    if (!tmp_add(p, lo, hi)) return -1;
    return finish_class(p, false, off);
}

// --- lexing

static bool is_word(uint8_t c) {
    return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '-' || c == '_';
}

static bool is_hex(uint8_t c, uint32_t *v) {
    if (c >= '0' && c <= '9') return *v = c - '0', true;
    if (c >= 'a' && c <= 'f') return *v = c - 'a' + 10, true;
    if (c >= 'A' && c <= 'F') return *v = c - 'A' + 10, true;
    return false;
}

// Skips spaces, tabs, CRs and comments; newlines too when newline_ok. At the
// top level (newline_ok false) a newline followed (after blank lines and
// comments) by '|' continues the rule: then we stop at that '|'.
static void skip_space(parser *p, bool newline_ok) {
    while (p->pos < p->len) {
        char c = p->src[p->pos];
        if (c == ' ' || c == '\t' || c == '\r') p->pos++;
        else if (c == '#') {
            while (p->pos < p->len && p->src[p->pos] != '\n') p->pos++;
        } else if (c == '\n') {
            if (newline_ok) {
                p->pos++;
                continue;
            }
            size_t q = p->pos;
            while (q < p->len) {
                char d = p->src[q];
                if (d == ' ' || d == '\t' || d == '\r' || d == '\n') q++;
                else if (d == '#') {
                    while (q < p->len && p->src[q] != '\n') q++;
                } else break;
            }
            if (q < p->len && p->src[q] == '|') p->pos = q;
            return;
        } else return;
    }
}

// One character of a literal or class at p->pos: an escape or a UTF-8
// character. Returns false (error set) on a bad one.
static bool parse_char(parser *p, uint32_t *cp, bool in_class) {
    size_t start = p->pos;
    const char *s = p->src;
    if (s[p->pos] == '\\') {
        if (p->pos + 1 >= p->len) return perr(p, start, "unterminated escape"), false;
        uint8_t e = (uint8_t)s[p->pos + 1];
        p->pos += 2;
        int digits = 0;
        switch (e) {
        case 'n': *cp = '\n'; return true;
        case 'r': *cp = '\r'; return true;
        case 't': *cp = '\t'; return true;
        case '\\': *cp = '\\'; return true;
        case '"': *cp = '"'; return true;
        case '[': *cp = '['; return true;
        case ']': *cp = ']'; return true;
        case '-': *cp = '-'; return true;
        case '^': *cp = '^'; return true;
        case 'x': digits = 2; break;
        case 'u': digits = 4; break;
        case 'U': digits = 8; break;
        default: {
            char buf[16];
            p->pos = start + 1;
            return perr(p, start, "unknown escape '\\%s'", e >= 0x20 && e < 0x7F ? (snprintf(buf, sizeof buf, "%c", e), buf) : "?"), false;
        }
        }
        uint32_t v = 0;
        for (int i = 0; i < digits; i++) {
            uint32_t d;
            if (p->pos >= p->len || !is_hex((uint8_t)s[p->pos], &d))
                return perr(p, start, "'\\%c' needs %d hex digits", e, digits), false;
            v = v * 16 + d;
            p->pos++;
        }
        if (v > 0x10FFFF || (v >= 0xD800 && v <= 0xDFFF))
            return perr(p, start, "escape '%.*s' is not a Unicode scalar value", (int)(p->pos - start), s + start), false;
        *cp = v;
        return true;
    }
    uint8_t b = (uint8_t)s[p->pos];
    if (b < 0x80) {
        if (b == '\n') return perr(p, start, in_class ? "newline in a character class" : "newline in a string literal"), false;
        if (b == 0) return perr(p, start, "NUL byte in the grammar"), false;
        *cp = b;
        p->pos++;
        return true;
    }
    int k = utf8_decode(s + p->pos, p->len - p->pos, cp);
    if (k <= 0) return perr(p, start, "invalid UTF-8 (byte 0x%02X)", b), false;
    p->pos += (size_t)k;
    return true;
}

static bool parse_literal(parser *p, int32_t rule) {
    size_t open = p->pos++;
    while (p->pos < p->len && p->src[p->pos] != '"') {
        if (p->src[p->pos] == '\n') return perr(p, open, "unterminated string literal"), false;
        size_t at = p->pos;
        uint32_t cp;
        if (!parse_char(p, &cp, false)) return false;
        int32_t c = single_class(p, cp, cp, at);
        if (c < 0 || !emit(p, rule, GE_CHAR, c)) return false;
    }
    if (p->pos >= p->len) return perr(p, open, "unterminated string literal"), false;
    p->pos++;
    return true;
}

static bool parse_class(parser *p, int32_t rule) {
    size_t open = p->pos++;
    bool negate = false;
    if (p->pos < p->len && p->src[p->pos] == '^') negate = true, p->pos++;
    p->n_tmp = 0;
    while (p->pos < p->len && p->src[p->pos] != ']') {
        if (p->src[p->pos] == '\n') return perr(p, open, "unterminated character class"), false;
        size_t at = p->pos;
        uint32_t lo, hi;
        if (!parse_char(p, &lo, true)) return false;
        hi = lo;
        if (p->pos + 1 < p->len && p->src[p->pos] == '-' && p->src[p->pos + 1] != ']') {
            p->pos++;
            if (p->src[p->pos] == '\n') return perr(p, open, "unterminated character class"), false;
            if (!parse_char(p, &hi, true)) return false;
            if (hi < lo) return perr(p, at, "range '%.*s' is out of order", (int)(p->pos - at), p->src + at), false;
        }
        if (!tmp_add(p, lo, hi)) return false;
    }
    if (p->pos >= p->len) return perr(p, open, "unterminated character class"), false;
    p->pos++;
    if (p->n_tmp == 0) return perr(p, open, "empty character class"), false;
    int32_t c = finish_class(p, negate, open);
    return c >= 0 && emit(p, rule, GE_CHAR, c);
}

// --- repetitions

// Moves the elements [start, n) of rule into a new rule (one alternative) and
// leaves a reference in their place; a single element stays as it is.
static bool wrap_item(parser *p, int32_t rule, size_t start, size_t off) {
    prule *r = &p->rules[rule];
    if (r->n - start == 1) return true;
    int32_t w = new_rule(p, NULL, 0, off, SYN_GROUP);
    if (w < 0) return false;
    r = &p->rules[rule];
    size_t cnt = r->n - start;
    gelem *tmp = mem_alloc((cnt ? cnt : 1) * sizeof(gelem));
    if (!tmp) return pnomem(p), false;
    memcpy(tmp, r->el + start, cnt * sizeof(gelem));
    r->n = start;
    p->total_el -= cnt;
    bool ok = true;
    for (size_t i = 0; ok && i < cnt; i++) ok = emit(p, w, tmp[i].kind, tmp[i].arg);
    mem_free(tmp);
    return ok && emit(p, w, GE_END, 0) && emit(p, rule, GE_REF, w);
}

// Applies x{min,max} (max < 0: unbounded) to the item at [start, n) of rule.
static bool repeat(parser *p, int32_t rule, size_t start, long min, long max, size_t off) {
    if (!wrap_item(p, rule, start, off)) return false;
    gelem x = p->rules[rule].el[start];
    p->rules[rule].n = start;
    p->total_el--;
    for (long i = 0; i < min; i++)
        if (!emit(p, rule, x.kind, x.arg)) return false;
    if (max < 0) { // R ::= x R |
        int32_t r = new_rule(p, NULL, 0, off, SYN_STAR);
        if (r < 0) return false;
        return emit(p, r, x.kind, x.arg) && emit(p, r, GE_REF, r) && emit(p, r, GE_END, 0) && emit(p, r, GE_END, 0) &&
               emit(p, rule, GE_REF, r);
    }
    int32_t prev = -1; // opt_k ::= x opt_{k-1} |
    for (long i = min; i < max; i++) {
        int32_t r = new_rule(p, NULL, 0, off, SYN_OPT);
        if (r < 0) return false;
        if (!emit(p, r, x.kind, x.arg)) return false;
        if (prev >= 0 && !emit(p, r, GE_REF, prev)) return false;
        if (!emit(p, r, GE_END, 0) || !emit(p, r, GE_END, 0)) return false;
        prev = r;
    }
    return prev < 0 || emit(p, rule, GE_REF, prev);
}

static bool parse_count(parser *p, long *v) {
    size_t at = p->pos;
    if (p->pos >= p->len || p->src[p->pos] < '0' || p->src[p->pos] > '9')
        return perr(p, at, "expected a number in '{m,n}'"), false;
    long x = 0;
    while (p->pos < p->len && p->src[p->pos] >= '0' && p->src[p->pos] <= '9') {
        x = x * 10 + (p->src[p->pos++] - '0');
        if (x > GRAM_MAX_REPEAT) return perr(p, at, "repetition count above %d", GRAM_MAX_REPEAT), false;
    }
    *v = x;
    return true;
}

// --- sequences and alternatives

static bool parse_alternates(parser *p, int32_t rule, bool nested);

static bool parse_sequence(parser *p, int32_t rule, bool nested) {
    long last = -1; // start of the last item in rule's elements (for repetition)
    for (;;) {
        skip_space(p, nested);
        if (p->pos >= p->len) return true;
        size_t at = p->pos;
        uint8_t c = (uint8_t)p->src[at];
        size_t n_before = p->rules[rule].n;
        if (c == '"') {
            if (!parse_literal(p, rule)) return false;
            last = (long)n_before;
        } else if (c == '[') {
            if (!parse_class(p, rule)) return false;
            last = (long)n_before;
        } else if (c == '.') {
            p->pos++;
            int32_t k = single_class(p, 0, 0x10FFFF, at);
            if (k < 0 || !emit(p, rule, GE_CHAR, k)) return false;
            last = (long)n_before;
        } else if (is_word(c)) {
            while (p->pos < p->len && is_word((uint8_t)p->src[p->pos])) p->pos++;
            size_t n = p->pos - at;
            int32_t r = find_rule(p, p->src + at, n);
            if (r < 0 && (r = new_named_rule(p, p->src + at, n, at)) < 0) return false;
            if (!p->rules[r].referenced) p->rules[r].referenced = true, p->rules[r].ref_off = at;
            if (!emit(p, rule, GE_REF, r)) return false;
            last = (long)n_before;
        } else if (c == '(') {
            if (++p->nest > GRAM_MAX_NEST) return perr(p, at, "groups nested deeper than %d", GRAM_MAX_NEST), false;
            p->pos++;
            int32_t g = new_rule(p, NULL, 0, at, SYN_GROUP);
            if (g < 0) return false;
            skip_space(p, true);
            if (!parse_alternates(p, g, true)) return false;
            skip_space(p, true);
            if (p->pos >= p->len) return perr(p, at, "unterminated group: no ')' for this '('"), false;
            if (p->src[p->pos] != ')') {
                char buf[16];
                return perr(p, p->pos, "expected ')' or '|', found %s", char_repr(p, p->pos, buf)), false;
            }
            p->pos++;
            p->nest--;
            if (!emit(p, rule, GE_REF, g)) return false;
            last = (long)n_before;
        } else if (c == '*' || c == '+' || c == '?' || c == '{') {
            if (last < 0) return perr(p, at, "'%c' has nothing before it to repeat", c), false;
            long min, max;
            p->pos++;
            if (c == '*') min = 0, max = -1;
            else if (c == '+') min = 1, max = -1;
            else if (c == '?') min = 0, max = 1;
            else {
                skip_space(p, true);
                if (!parse_count(p, &min)) return false;
                skip_space(p, true);
                max = min;
                if (p->pos < p->len && p->src[p->pos] == ',') {
                    p->pos++;
                    skip_space(p, true);
                    if (p->pos < p->len && p->src[p->pos] == '}') max = -1;
                    else {
                        if (!parse_count(p, &max)) return false;
                        if (max < min) return perr(p, at, "'{%ld,%ld}': the maximum is below the minimum", min, max), false;
                    }
                    skip_space(p, true);
                }
                if (p->pos >= p->len || p->src[p->pos] != '}') return perr(p, at, "unterminated '{m,n}'"), false;
                p->pos++;
            }
            if (!repeat(p, rule, (size_t)last, min, max, at)) return false;
            // The result is one element (or none for {0}); it may be repeated again.
            last = p->rules[rule].n > (size_t)last ? last : -1;
        } else {
            return true; // '|', ')', newline or something the caller reports
        }
    }
}

static bool parse_alternates(parser *p, int32_t rule, bool nested) {
    if (!parse_sequence(p, rule, nested) || !emit(p, rule, GE_END, 0)) return false;
    while (p->pos < p->len && p->src[p->pos] == '|') {
        p->pos++;
        skip_space(p, true);
        if (!parse_sequence(p, rule, nested) || !emit(p, rule, GE_END, 0)) return false;
    }
    return true;
}

static void parse_all(parser *p) {
    skip_space(p, true);
    while (p->pos < p->len && p->st == SIM_OK) {
        size_t at = p->pos;
        char buf[16];
        if (!is_word((uint8_t)p->src[at])) {
            perr(p, at, "expected a rule name, found %s", char_repr(p, at, buf));
            return;
        }
        while (p->pos < p->len && is_word((uint8_t)p->src[p->pos])) p->pos++;
        size_t n = p->pos - at;
        skip_space(p, false);
        if (p->pos + 3 > p->len || memcmp(p->src + p->pos, "::=", 3) != 0) {
            perr(p, p->pos, "expected '::=' after the rule name '%.*s', found %s", (int)MIN(n, 64), p->src + at,
                 char_repr(p, p->pos, buf));
            return;
        }
        p->pos += 3;
        int32_t r = find_rule(p, p->src + at, n);
        if (r >= 0 && p->rules[r].defined) {
            int l, c;
            loc_of(p->src, p->len, p->rules[r].def_off, &l, &c);
            perr(p, at, "rule '%.*s' is defined twice (first at line %d, column %d)", (int)MIN(n, 64), p->src + at, l, c);
            return;
        }
        if (r < 0 && (r = new_named_rule(p, p->src + at, n, at)) < 0) return;
        p->rules[r].defined = true;
        p->rules[r].def_off = at;
        skip_space(p, true);
        if (!parse_alternates(p, r, false)) return;
        skip_space(p, false);
        if (p->pos < p->len && p->src[p->pos] != '\n') {
            if (p->src[p->pos] == ')') perr(p, p->pos, "')' without a matching '('");
            else perr(p, p->pos, "unexpected %s", char_repr(p, p->pos, buf));
            return;
        }
        skip_space(p, true);
    }
}

// --- checks: undefined rules, root, left recursion

// Rules that can match the empty string (fixpoint over all alternatives).
static bool *compute_nullable(parser *p) {
    bool *nul = mem_calloc((size_t)p->n_rules, sizeof(bool));
    if (!nul) return NULL;
    for (bool changed = true; changed;) {
        changed = false;
        for (int32_t r = 0; r < p->n_rules; r++) {
            if (nul[r]) continue;
            prule *pr = &p->rules[r];
            bool alt_ok = true;
            for (size_t i = 0; i < pr->n; i++) {
                gelem e = pr->el[i];
                if (e.kind == GE_END) {
                    if (alt_ok) {
                        nul[r] = changed = true;
                        break;
                    }
                    alt_ok = true;
                } else if (e.kind == GE_CHAR || !nul[e.arg]) alt_ok = false;
            }
        }
    }
    return nul;
}

// Finds a cycle in "r can reach s before matching a character" (depth-first,
// iterative: grammars can be deep). Reports the first one found.
static void check_left_recursion(parser *p, const bool *nul) {
    int32_t n = p->n_rules;
    uint8_t *color = mem_calloc((size_t)n, 1); // 0 new, 1 on the path, 2 done
    int32_t *path = mem_alloc((size_t)n * sizeof(int32_t));
    size_t *it = mem_alloc((size_t)n * sizeof(size_t)); // next element to look at, per path entry
    bool *blk = mem_alloc((size_t)n * sizeof(bool));     // the current alternative matched a character
    if (!color || !path || !it || !blk) {
        pnomem(p);
        goto out;
    }
    for (int32_t s = 0; s < n; s++) {
        if (color[s]) continue;
        int32_t depth = 0;
        path[0] = s, it[0] = 0, blk[0] = false, color[s] = 1;
        while (depth >= 0) {
            int32_t r = path[depth];
            prule *pr = &p->rules[r];
            int32_t next = -1;
            while (next < 0 && it[depth] < pr->n) {
                gelem e = pr->el[it[depth]++];
                if (e.kind == GE_END) {
                    blk[depth] = false;
                    continue;
                }
                if (blk[depth]) continue;
                if (e.kind == GE_CHAR) {
                    blk[depth] = true;
                    continue;
                }
                if (!nul[e.arg]) blk[depth] = true;
                if (color[e.arg] == 0) next = e.arg;
                else if (color[e.arg] == 1) {
                    int32_t from = depth;
                    while (path[from] != e.arg) from--;
                    int32_t len = depth - from + 1, first = -1;
                    for (int32_t k = 0; k < len && first < 0; k++)
                        if (p->rules[path[from + k]].synth == SYN_USER) first = k;
                    if (first < 0) {
                        perr(p, p->rules[path[from]].def_off,
                             "repetition of something that can match the empty string (it would loop forever)");
                        goto out;
                    }
                    char chain[320];
                    size_t cl = 0;
                    for (int32_t j = 0; j <= len && cl < sizeof chain - 100; j++) {
                        prule *q = &p->rules[path[from + (first + j) % len]];
                        if (q->synth != SYN_USER) continue;
                        cl += (size_t)snprintf(chain + cl, sizeof chain - cl, "%s'%.*s'", cl ? " -> " : "",
                                               (int)MIN(q->name_len, 40), q->name);
                    }
                    perr(p, p->rules[path[from + first]].def_off,
                         "left recursion: %s (a rule must match a character before it refers to itself again)", chain);
                    goto out;
                }
            }
            if (next >= 0) {
                color[next] = 1;
                depth++;
                path[depth] = next, it[depth] = 0, blk[depth] = false;
            } else {
                color[r] = 2;
                depth--;
            }
        }
    }
out:
    mem_free(color);
    mem_free(path);
    mem_free(it);
    mem_free(blk);
}

static void free_parser(parser *p) {
    for (int32_t i = 0; i < p->n_rules; i++) mem_free(p->rules[i].el);
    mem_free(p->rules);
    mem_free(p->ranges);
    mem_free(p->cls_off);
    mem_free(p->tmp);
    mem_free(p->name_ht);
}

sim_status gram_parse(gram_grammar **out, const char *text, size_t len, sim_err *err) {
    if (!out) return err_set(err, SIM_ERR_ARG, "gram_parse: NULL output");
    *out = NULL;
    if (!text && len) return err_set(err, SIM_ERR_ARG, "gram_parse: NULL text");
    if (len > GRAM_MAX_TEXT) return err_set(err, SIM_ERR_RANGE, "grammar text of %zu bytes (at most %u)", len, GRAM_MAX_TEXT);
    parser p = {.src = text ? text : "", .len = len, .err = err};
    parse_all(&p);
    int32_t root = -1;
    if (p.st == SIM_OK) {
        bool any = false;
        for (int32_t i = 0; i < p.n_rules; i++) any |= p.rules[i].defined;
        if (!any) perr(&p, 0, "empty grammar: no rules");
    }
    if (p.st == SIM_OK) {
        // the first undefined reference in the text
        int32_t bad = -1;
        for (int32_t i = 0; i < p.n_rules; i++)
            if (p.rules[i].synth == SYN_USER && !p.rules[i].defined && (bad < 0 || p.rules[i].ref_off < p.rules[bad].ref_off))
                bad = i;
        if (bad >= 0)
            perr(&p, p.rules[bad].ref_off, "undefined rule '%.*s'", (int)MIN(p.rules[bad].name_len, 64), p.rules[bad].name);
    }
    if (p.st == SIM_OK && ((root = find_rule(&p, "root", 4)) < 0 || !p.rules[root].defined))
        perr(&p, len, "no 'root' rule (matching starts at the rule named root)");
    if (p.st == SIM_OK) {
        bool *nul = compute_nullable(&p);
        if (!nul) pnomem(&p);
        else check_left_recursion(&p, nul);
        mem_free(nul);
    }
    if (p.st != SIM_OK) {
        free_parser(&p);
        return p.st;
    }
    // Flatten.
    gram_grammar *g = mem_calloc(1, sizeof *g);
    size_t n_alt = 0;
    for (int32_t i = 0; i < p.n_rules; i++)
        for (size_t k = 0; k < p.rules[i].n; k++) n_alt += p.rules[i].el[k].kind == GE_END;
    if (g) {
        g->n_rules = p.n_rules;
        g->n_el = (int32_t)p.total_el;
        g->root = root;
        g->el = mem_alloc(p.total_el * sizeof(gelem) + sizeof(gelem));
        g->alt_pos = mem_alloc(n_alt * sizeof(int32_t) + sizeof(int32_t));
        g->alt_off = mem_alloc(((size_t)p.n_rules + 1) * sizeof(int32_t));
        g->n_cls = p.n_cls;
        g->ranges = mem_alloc(p.n_ranges * 2 * sizeof(uint32_t) + sizeof(uint32_t));
        g->cls_off = mem_alloc(((size_t)p.n_cls + 1) * sizeof(int32_t));
        g->ascii = mem_calloc((size_t)p.n_cls * 4 + 1, sizeof(uint32_t));
    }
    if (!g || !g->el || !g->alt_pos || !g->alt_off || !g->ranges || !g->cls_off || !g->ascii) {
        gram_free(g);
        free_parser(&p);
        return err_set(err, SIM_ERR_NOMEM, "out of memory compiling the grammar");
    }
    int32_t ne = 0, na = 0;
    for (int32_t i = 0; i < p.n_rules; i++) {
        g->alt_off[i] = na;
        bool at_start = true;
        for (size_t k = 0; k < p.rules[i].n; k++) {
            if (at_start) g->alt_pos[na++] = ne;
            g->el[ne++] = p.rules[i].el[k];
            at_start = p.rules[i].el[k].kind == GE_END;
        }
    }
    g->alt_off[p.n_rules] = na;
    if (p.n_ranges) memcpy(g->ranges, p.ranges, p.n_ranges * 2 * sizeof(uint32_t));
    if (p.n_cls) memcpy(g->cls_off, p.cls_off, ((size_t)p.n_cls + 1) * sizeof(int32_t));
    else g->cls_off[0] = 0;
    for (int32_t c = 0; c < p.n_cls; c++)
        for (int32_t k = g->cls_off[c]; k < g->cls_off[c + 1]; k++)
            for (uint32_t cp = g->ranges[2 * k]; cp <= g->ranges[2 * k + 1] && cp < 128; cp++)
                g->ascii[4 * c + cp / 32] |= 1u << (cp % 32);
    free_parser(&p);
    *out = g;
    return SIM_OK;
}

// --- character-class stepping on UTF-8 bytes ----------------------------------

// A node's `partial`: 0, or the UTF-8 sequence begun so far.
//   PART_ON | len << 23 | rem << 21 | prefix   the exact code-point bits seen (rem bytes to go)
//   PART_ON | PART_ANY | rem << 21             every valid completion is in the class
// PART_ANY keeps the number of distinct partial states small (inside a JSON
// string every lead byte gives the same state).
#define PART_ON (1u << 27)
#define PART_ANY (1u << 26)

enum { CS_FAIL, CS_PART, CS_DONE };

static const uint32_t min_cp[5] = {0, 0, 0x80, 0x800, 0x10000};

static bool cls_has(const gram_grammar *g, int32_t c, uint32_t cp) {
    const uint32_t *r = g->ranges;
    int32_t lo = g->cls_off[c], hi = g->cls_off[c + 1] - 1;
    while (lo <= hi) {
        int32_t m = (lo + hi) / 2;
        if (cp < r[2 * m]) hi = m - 1;
        else if (cp > r[2 * m + 1]) lo = m + 1;
        else return true;
    }
    return false;
}

// Index of the first range of class c whose end is >= cp (cls_off[c+1] if none).
static int32_t cls_first_ge(const gram_grammar *g, int32_t c, uint32_t cp) {
    int32_t lo = g->cls_off[c], hi = g->cls_off[c + 1];
    while (lo < hi) {
        int32_t m = (lo + hi) / 2;
        if (g->ranges[2 * m + 1] < cp) lo = m + 1;
        else hi = m;
    }
    return lo;
}

static bool cls_meets(const gram_grammar *g, int32_t c, uint32_t lo, uint32_t hi) {
    int32_t k = cls_first_ge(g, c, lo);
    return k < g->cls_off[c + 1] && g->ranges[2 * k] <= hi;
}

// Every Unicode scalar value in [lo, hi] is in class c.
static bool cls_covers(const gram_grammar *g, int32_t c, uint32_t lo, uint32_t hi) {
    uint32_t x = lo;
    while (x <= hi) {
        if (x >= 0xD800 && x <= 0xDFFF) {
            x = 0xE000;
            continue;
        }
        int32_t k = cls_first_ge(g, c, x);
        if (k >= g->cls_off[c + 1] || g->ranges[2 * k] > x) return false;
        x = g->ranges[2 * k + 1] + 1;
    }
    return true;
}

// The code points that can still complete `prefix` (rem bytes to go).
static int narrow(const gram_grammar *g, int32_t c, uint32_t len, uint32_t rem, uint32_t prefix, bool exact,
                  uint32_t *np) {
    uint32_t lo = prefix << (6 * rem), hi = lo | ((1u << (6 * rem)) - 1);
    if (lo < min_cp[len]) lo = min_cp[len];
    if (hi > 0x10FFFF) hi = 0x10FFFF;
    if (lo > hi || !cls_meets(g, c, lo, hi)) return CS_FAIL;
    if (!exact && cls_covers(g, c, lo, hi)) *np = PART_ON | PART_ANY | (rem << 21);
    else *np = PART_ON | (len << 23) | (rem << 21) | prefix;
    return CS_PART;
}

// Steps class c (with its partial sequence) by byte b: the character fails,
// goes on (*np) or is complete. Strict UTF-8: no overlong forms, surrogates
// or code points above U+10FFFF.
static int class_step(const gram_grammar *g, int32_t c, uint32_t partial, uint8_t b, uint32_t *np) {
    uint32_t len, prefix;
    if (!partial) {
        if (b < 0x80) return (g->ascii[4 * c + b / 32] >> (b % 32)) & 1 ? CS_DONE : CS_FAIL;
        if (b >= 0xC2 && b <= 0xDF) len = 2, prefix = b & 0x1F;
        else if (b >= 0xE0 && b <= 0xEF) len = 3, prefix = b & 0x0F;
        else if (b >= 0xF0 && b <= 0xF4) len = 4, prefix = b & 0x07;
        else return CS_FAIL;
        // these leads restrict their second byte, which PART_ANY cannot express
        bool exact = b == 0xE0 || b == 0xED || b == 0xF0 || b == 0xF4;
        return narrow(g, c, len, len - 1, prefix, exact, np);
    }
    if ((b & 0xC0) != 0x80) return CS_FAIL;
    uint32_t rem = (partial >> 21) & 3;
    if (partial & PART_ANY) {
        if (rem == 1) return CS_DONE;
        *np = PART_ON | PART_ANY | ((rem - 1) << 21);
        return CS_PART;
    }
    len = (partial >> 23) & 7;
    prefix = ((partial & 0x1FFFFF) << 6) | (b & 0x3F);
    if (--rem == 0) return prefix >= min_cp[len] && cls_has(g, c, prefix) ? CS_DONE : CS_FAIL;
    return narrow(g, c, len, rem, prefix, false, np);
}

// --- the per-sequence cache: stack nodes, sets, DFA states -------------------

enum { TR_ERROR = -3, TR_UNKNOWN = -2, TR_DEAD = -1 };
enum { DS_COMPLETE = 1, DS_MORE = 2 };

typedef struct gnode {
    int32_t pos;      // element index (node 0, the empty stack: -1)
    int32_t parent;   // node id (node 0: -1)
    uint32_t partial; // UTF-8 sequence in progress (top nodes only)
    int32_t depth;    // stack length
} gnode;

typedef struct gdst {
    int32_t set_off, set_len; // the sorted node ids in cache.sets
    uint32_t hash;
    uint8_t flags;            // DS_*
    int32_t *dense;           // (256) transitions, TR_UNKNOWN where not computed yet; NULL before the first
    uint16_t *grp;            // (256) byte classes: bytes of one class lead to the same state (0: dead)
} gdst;

typedef struct gcache {
    gnode *nodes;
    int32_t n_nodes, cap_nodes;
    int32_t *node_ht; // open addressing over node ids (-1 empty); mask + 1 slots
    uint32_t node_mask;
    int32_t *sets;
    size_t n_sets, cap_sets;
    gdst *st;
    int32_t n_st, cap_st;
    int32_t *st_ht;
    uint32_t st_mask;
    size_t n_dense;   // states with transition tables
    size_t bytes;     // memory held, for the flush policy
} gcache;

struct gram_state {
    const gram_grammar *g;
    gcache c;
    int32_t cur, init; // DFA states
    bool finished;     // an end-of-generation token was accepted
    int32_t n_flushes;
    size_t cache_soft; // flush above this many bytes
    sim_status status; // of the last TR_ERROR
    // scratch of one step
    int32_t *out;      // node ids reached
    size_t n_out, cap_out;
    int32_t *work;     // (pos, parent) pairs to expand
    size_t n_work, cap_work;
    uint64_t *vis;     // visited (pos, parent) pairs, stamped with gen
    uint32_t *vis_gen;
    uint32_t vis_mask, gen, n_vis;
    // scratch of the filter
    uint32_t *sig;     // (256 * 64) byte signatures while making a transition table
    uint64_t *bits;    // allowed tokens
    size_t n_bits_words;
    int32_t *walk;     // DFA state per trie depth
    size_t cap_walk;
};

static inline uint32_t mix32(uint64_t x) {
    x ^= x >> 33;
    x *= 0xff51afd7ed558ccdull;
    x ^= x >> 33;
    x *= 0xc4ceb9fe1a85ec53ull;
    x ^= x >> 33;
    return (uint32_t)x;
}

static inline uint32_t node_hash(int32_t pos, int32_t parent, uint32_t partial) {
    return mix32(((uint64_t)(uint32_t)pos << 32 | (uint32_t)parent) ^ ((uint64_t)partial * 0x9E3779B97F4A7C15ull));
}

#define TABLE_BYTES (256 * sizeof(int32_t) + 256 * sizeof(uint16_t)) // dense + grp, one block

static size_t cache_bytes(const gcache *c) {
    return (size_t)c->cap_nodes * sizeof(gnode) + ((size_t)c->node_mask + 1) * 4 + c->cap_sets * 4 +
           (size_t)c->cap_st * sizeof(gdst) + ((size_t)c->st_mask + 1) * 4 + c->n_dense * TABLE_BYTES;
}

static void cache_free(gcache *c) {
    for (int32_t i = 0; i < c->n_st; i++) mem_free(c->st[i].dense);
    mem_free(c->nodes);
    mem_free(c->node_ht);
    mem_free(c->sets);
    mem_free(c->st);
    mem_free(c->st_ht);
    memset(c, 0, sizeof *c);
}

static sim_status cache_init(gcache *c, sim_err *err) {
    memset(c, 0, sizeof *c);
    c->cap_nodes = 1024, c->node_mask = 2047, c->cap_st = 256, c->st_mask = 511, c->cap_sets = 1024;
    c->nodes = mem_alloc((size_t)c->cap_nodes * sizeof(gnode));
    c->node_ht = mem_alloc(((size_t)c->node_mask + 1) * 4);
    c->st = mem_alloc((size_t)c->cap_st * sizeof(gdst));
    c->st_ht = mem_alloc(((size_t)c->st_mask + 1) * 4);
    c->sets = mem_alloc(c->cap_sets * 4);
    if (!c->nodes || !c->node_ht || !c->st || !c->st_ht || !c->sets) {
        cache_free(c);
        return err_set(err, SIM_ERR_NOMEM, "out of memory for the grammar state");
    }
    memset(c->node_ht, 0xFF, ((size_t)c->node_mask + 1) * 4);
    memset(c->st_ht, 0xFF, ((size_t)c->st_mask + 1) * 4);
    c->nodes[0] = (gnode){-1, -1, 0, 0};
    c->n_nodes = 1;
    c->bytes = cache_bytes(c);
    return SIM_OK;
}

static int32_t fail(gram_state *s, sim_err *err, sim_status st, const char *msg) {
    s->status = err_set(err, st, "%s", msg);
    return TR_ERROR;
}

static int32_t too_big(gram_state *s, sim_err *err) {
    s->status = err_set(err, SIM_ERR_RANGE, "grammar state cache above %u MiB (the grammar is too ambiguous)",
                        GRAM_CACHE_HARD >> 20);
    return TR_ERROR;
}

// Doubles an open-addressing table of ids (hash recomputed by fn).
static bool rehash_ids(int32_t **tab, uint32_t *mask, uint32_t (*fn)(const gcache *, int32_t), const gcache *c) {
    uint32_t nm = *mask * 2 + 1;
    int32_t *t = mem_alloc(((size_t)nm + 1) * 4);
    if (!t) return false;
    memset(t, 0xFF, ((size_t)nm + 1) * 4);
    for (uint32_t i = 0; i <= *mask; i++) {
        int32_t id = (*tab)[i];
        if (id < 0) continue;
        uint32_t h = fn(c, id) & nm;
        while (t[h] >= 0) h = (h + 1) & nm;
        t[h] = id;
    }
    mem_free(*tab);
    *tab = t, *mask = nm;
    return true;
}

static uint32_t node_hash_of(const gcache *c, int32_t id) {
    const gnode *n = &c->nodes[id];
    return node_hash(n->pos, n->parent, n->partial);
}

static uint32_t st_hash_of(const gcache *c, int32_t id) { return c->st[id].hash; }

// The id of node (pos, parent, partial), made if new.
static int32_t node_get(gram_state *s, gcache *c, int32_t pos, int32_t parent, uint32_t partial, sim_err *err) {
    uint32_t h = node_hash(pos, parent, partial);
    for (uint32_t i = h & c->node_mask;; i = (i + 1) & c->node_mask) {
        int32_t id = c->node_ht[i];
        if (id < 0) break;
        const gnode *n = &c->nodes[id];
        if (n->pos == pos && n->parent == parent && n->partial == partial) return id;
    }
    int32_t depth = c->nodes[parent].depth + 1;
    if (depth > GRAM_MAX_DEPTH) {
        s->status = err_set(err, SIM_ERR_RANGE, "input nested deeper than %d levels of the grammar", GRAM_MAX_DEPTH);
        return TR_ERROR;
    }
    if (c->bytes > GRAM_CACHE_HARD) return too_big(s, err);
    if (c->n_nodes == c->cap_nodes) {
        size_t cap = (size_t)c->cap_nodes;
        if (cap >= (1u << 30) || !grow((void **)&c->nodes, &cap, cap + 1, sizeof(gnode)))
            return fail(s, err, SIM_ERR_NOMEM, "out of memory in the grammar state");
        c->cap_nodes = (int32_t)cap;
        c->bytes = cache_bytes(c);
    }
    if ((uint32_t)c->n_nodes * 2 > c->node_mask) {
        if (!rehash_ids(&c->node_ht, &c->node_mask, node_hash_of, c))
            return fail(s, err, SIM_ERR_NOMEM, "out of memory in the grammar state");
        c->bytes = cache_bytes(c);
    }
    int32_t id = c->n_nodes++;
    c->nodes[id] = (gnode){pos, parent, partial, depth};
    uint32_t i = h & c->node_mask;
    while (c->node_ht[i] >= 0) i = (i + 1) & c->node_mask;
    c->node_ht[i] = id;
    return id;
}

static uint32_t set_hash(const int32_t *ids, size_t n) {
    uint64_t h = 0x12345678u + n;
    for (size_t i = 0; i < n; i++) h = (h ^ (uint32_t)ids[i]) * 0x100000001B3ull + (h >> 29);
    return mix32(h);
}

// The DFA state for the sorted set ids[0..n), made if new.
static int32_t state_get(gram_state *s, gcache *c, const int32_t *ids, size_t n, sim_err *err) {
    uint32_t h = set_hash(ids, n);
    for (uint32_t i = h & c->st_mask;; i = (i + 1) & c->st_mask) {
        int32_t id = c->st_ht[i];
        if (id < 0) break;
        const gdst *d = &c->st[id];
        if (d->hash == h && (size_t)d->set_len == n && memcmp(c->sets + d->set_off, ids, n * 4) == 0) return id;
    }
    if (c->bytes > GRAM_CACHE_HARD) return too_big(s, err);
    if (c->n_st == c->cap_st) {
        size_t cap = (size_t)c->cap_st;
        if (cap >= (1u << 30) || !grow((void **)&c->st, &cap, cap + 1, sizeof(gdst)))
            return fail(s, err, SIM_ERR_NOMEM, "out of memory in the grammar state");
        c->cap_st = (int32_t)cap;
    }
    if (c->n_sets + n > (size_t)INT32_MAX || !grow((void **)&c->sets, &c->cap_sets, c->n_sets + n, 4))
        return fail(s, err, SIM_ERR_NOMEM, "out of memory in the grammar state");
    if ((uint32_t)c->n_st * 2 > c->st_mask && !rehash_ids(&c->st_ht, &c->st_mask, st_hash_of, c))
        return fail(s, err, SIM_ERR_NOMEM, "out of memory in the grammar state");
    int32_t id = c->n_st++;
    gdst *d = &c->st[id];
    memset(d, 0, sizeof *d);
    d->set_off = (int32_t)c->n_sets, d->set_len = (int32_t)n, d->hash = h;
    memcpy(c->sets + c->n_sets, ids, n * 4);
    c->n_sets += n;
    for (size_t k = 0; k < n; k++) d->flags |= ids[k] == 0 ? DS_COMPLETE : DS_MORE;
    uint32_t i = h & c->st_mask;
    while (c->st_ht[i] >= 0) i = (i + 1) & c->st_mask;
    c->st_ht[i] = id;
    c->bytes = cache_bytes(c);
    return id;
}

// --- one step: expanding references ----------------------------------------------

static bool out_add(gram_state *s, int32_t id) {
    if (!grow((void **)&s->out, &s->cap_out, s->n_out + 1, 4)) return false;
    s->out[s->n_out++] = id;
    return true;
}

static void vis_clear(gram_state *s) {
    s->n_vis = 0;
    if (++s->gen == 0) { // wrapped: really clear
        if (s->vis_gen) memset(s->vis_gen, 0, ((size_t)s->vis_mask + 1) * 4);
        s->gen = 1;
    }
}

// Queues (pos, parent) unless this step already did. 1 queued, 0 seen, TR_ERROR.
static int work_push(gram_state *s, int32_t pos, int32_t parent, sim_err *err) {
    if (s->n_vis * 2 >= s->vis_mask) {
        if (s->n_vis >= (uint32_t)GRAM_MAX_STACKS * 16)
            return s->status = err_set(err, SIM_ERR_RANGE,
                                       "more than %d parse positions after one byte (the grammar is too ambiguous)",
                                       GRAM_MAX_STACKS * 16),
                   TR_ERROR;
        uint32_t nm = s->vis_mask ? s->vis_mask * 2 + 1 : 255;
        uint64_t *nv = mem_alloc(((size_t)nm + 1) * 8);
        uint32_t *ng = mem_calloc((size_t)nm + 1, 4);
        if (!nv || !ng) {
            mem_free(nv), mem_free(ng);
            return fail(s, err, SIM_ERR_NOMEM, "out of memory in the grammar state");
        }
        for (uint32_t i = 0; s->vis && i <= s->vis_mask; i++) {
            if (s->vis_gen[i] != s->gen) continue;
            uint32_t h = mix32(s->vis[i]) & nm;
            while (ng[h]) h = (h + 1) & nm;
            nv[h] = s->vis[i], ng[h] = 1;
        }
        mem_free(s->vis), mem_free(s->vis_gen);
        s->vis = nv, s->vis_gen = ng, s->vis_mask = nm, s->gen = 1;
    }
    uint64_t key = (uint64_t)(uint32_t)pos << 32 | (uint32_t)parent;
    uint32_t i = mix32(key) & s->vis_mask;
    for (; s->vis_gen[i] == s->gen; i = (i + 1) & s->vis_mask)
        if (s->vis[i] == key) return 0;
    s->vis[i] = key, s->vis_gen[i] = s->gen;
    s->n_vis++;
    if (!grow((void **)&s->work, &s->cap_work, s->n_work + 2, 4))
        return fail(s, err, SIM_ERR_NOMEM, "out of memory in the grammar state");
    s->work[s->n_work++] = pos;
    s->work[s->n_work++] = parent;
    return 1;
}

// Expands the queued positions until every stack top is a character class
// (or the stack is empty), adding the tops to s->out.
static bool closure(gram_state *s, gcache *c, sim_err *err) {
    const gram_grammar *g = s->g;
    while (s->n_work) {
        int32_t parent = s->work[--s->n_work];
        int32_t pos = s->work[--s->n_work];
        gelem e = g->el[pos];
        if (e.kind == GE_END) {
            if (parent == 0) {
                if (!out_add(s, 0)) return fail(s, err, SIM_ERR_NOMEM, "out of memory in the grammar state"), false;
            } else {
                gnode pn = c->nodes[parent];
                if (work_push(s, pn.pos, pn.parent, err) < 0) return false;
            }
        } else if (e.kind == GE_CHAR) {
            int32_t id = node_get(s, c, pos, parent, 0, err);
            if (id < 0) return false;
            if (!out_add(s, id)) return fail(s, err, SIM_ERR_NOMEM, "out of memory in the grammar state"), false;
        } else {
            int32_t cont = parent;
            if (g->el[pos + 1].kind != GE_END && (cont = node_get(s, c, pos + 1, parent, 0, err)) < 0) return false;
            for (int32_t a = g->alt_off[e.arg]; a < g->alt_off[e.arg + 1]; a++)
                if (work_push(s, g->alt_pos[a], cont, err) < 0) return false;
        }
    }
    return true;
}

static int cmp_i32(const void *a, const void *b) {
    int32_t x = *(const int32_t *)a, y = *(const int32_t *)b;
    return x < y ? -1 : x > y;
}

// Sorts and dedups s->out and makes it a state (TR_DEAD when empty).
static int32_t finish_step(gram_state *s, gcache *c, sim_err *err) {
    size_t n = s->n_out;
    if (n == 0) return TR_DEAD;
    if (n < 16) {
        for (size_t i = 1; i < n; i++) {
            int32_t v = s->out[i];
            size_t j = i;
            while (j > 0 && s->out[j - 1] > v) s->out[j] = s->out[j - 1], j--;
            s->out[j] = v;
        }
    } else qsort(s->out, n, 4, cmp_i32);
    size_t m = 1;
    for (size_t i = 1; i < n; i++)
        if (s->out[i] != s->out[m - 1]) s->out[m++] = s->out[i];
    if (m > GRAM_MAX_STACKS) {
        s->status = err_set(err, SIM_ERR_RANGE, "more than %d parse stacks alive at once (the grammar is too ambiguous)",
                            GRAM_MAX_STACKS);
        return TR_ERROR;
    }
    return state_get(s, c, s->out, m, err);
}

// The state reached from state st by byte b.
static int32_t step(gram_state *s, int32_t st, uint8_t b, sim_err *err) {
    gcache *c = &s->c;
    const gram_grammar *g = s->g;
    s->n_out = s->n_work = 0;
    vis_clear(s);
    int32_t off = c->st[st].set_off, n = c->st[st].set_len;
    for (int32_t k = 0; k < n; k++) {
        int32_t id = c->sets[off + k];
        if (id == 0) continue;
        gnode nd = c->nodes[id];
        uint32_t np = 0;
        int r = class_step(g, g->el[nd.pos].arg, nd.partial, b, &np);
        if (r == CS_PART) {
            int32_t nid = node_get(s, c, nd.pos, nd.parent, np, err);
            if (nid < 0) return TR_ERROR;
            if (!out_add(s, nid)) return fail(s, err, SIM_ERR_NOMEM, "out of memory in the grammar state");
        } else if (r == CS_DONE) {
            if (work_push(s, nd.pos + 1, nd.parent, err) < 0) return TR_ERROR;
        }
    }
    if (!closure(s, c, err)) return TR_ERROR;
    return finish_step(s, c, err);
}

static int32_t initial_state(gram_state *s, gcache *c, sim_err *err) {
    const gram_grammar *g = s->g;
    s->n_out = s->n_work = 0;
    vis_clear(s);
    for (int32_t a = g->alt_off[g->root]; a < g->alt_off[g->root + 1]; a++)
        if (work_push(s, g->alt_pos[a], 0, err) < 0) return TR_ERROR;
    if (!closure(s, c, err)) return TR_ERROR;
    int32_t st = finish_step(s, c, err);
    if (st == TR_DEAD) st = fail(s, err, SIM_ERR_FORMAT, "the grammar matches nothing");
    return st;
}

// Gives state st its transition table. Bytes are grouped by what they do to
// every stack top (fail, finish the character, or the same partial UTF-8
// sequence): bytes of one group lead to the same state, so step() runs once
// per group, and a group that fails everywhere is dead at once. Inside a JSON
// string that is about ten groups instead of ~150 distinct bytes.
static bool make_table(gram_state *s, int32_t st, sim_err *err) {
    gcache *c = &s->c;
    const gram_grammar *g = s->g;
    if (c->bytes > GRAM_CACHE_HARD) return too_big(s, err), false;
    int32_t *tab = mem_alloc(TABLE_BYTES);
    if (!tab) return fail(s, err, SIM_ERR_NOMEM, "out of memory in the grammar state"), false;
    uint16_t *grp = (uint16_t *)(tab + 256);
    int32_t off = c->st[st].set_off, n = c->st[st].set_len;
    const int32_t *ids = c->sets + off;
    int32_t nt = 0; // stack tops (node 0, the empty stack, steps nowhere)
    for (int32_t k = 0; k < n; k++) nt += ids[k] != 0;
    enum { MAX_SIG = 64 };
    if (nt <= MAX_SIG && !s->sig) s->sig = mem_alloc(256 * MAX_SIG * sizeof(uint32_t));
    if (nt <= MAX_SIG && s->sig) {
        // signature of byte b: per top, 0 fail, 1 done, else the new partial
        uint32_t *sig = s->sig;
        int reps[256], n_reps = 0;
        for (int b = 0; b < 256; b++) {
            uint32_t *row = sig + (size_t)b * (size_t)nt, any = 0;
            for (int32_t k = 0, j = 0; k < n; k++) {
                if (ids[k] == 0) continue;
                const gnode *nd = &c->nodes[ids[k]];
                uint32_t np = 0;
                int r = class_step(g, g->el[nd->pos].arg, nd->partial, (uint8_t)b, &np);
                row[j] = r == CS_FAIL ? 0 : r == CS_DONE ? 1 : np;
                any |= row[j++];
            }
            tab[b] = any ? TR_UNKNOWN : TR_DEAD;
            grp[b] = 0;
            if (!any) continue;
            int q = 0;
            while (q < n_reps && memcmp(sig + (size_t)reps[q] * (size_t)nt, row, (size_t)nt * 4) != 0) q++;
            if (q == n_reps) reps[n_reps++] = b;
            grp[b] = (uint16_t)(q + 1);
        }
    } else {
        for (int b = 0; b < 256; b++) tab[b] = TR_UNKNOWN, grp[b] = (uint16_t)(b + 1); // every byte its own group
    }
    c->st[st].dense = tab;
    c->st[st].grp = grp;
    c->n_dense++;
    c->bytes = cache_bytes(c);
    return true;
}

// The cached transition of st on b, computing it on first use.
static int32_t trans_slow(gram_state *s, int32_t st, uint8_t b, sim_err *err) {
    if (!s->c.st[st].dense && !make_table(s, st, err)) return TR_ERROR;
    int32_t t = s->c.st[st].dense[b];
    if (t != TR_UNKNOWN) return t;
    t = step(s, st, b, err);
    if (t == TR_ERROR) return t;
    gdst *d = &s->c.st[st]; // step may have moved the state array
    uint16_t gid = d->grp[b];
    for (int k = 0; k < 256; k++)
        if (d->grp[k] == gid) d->dense[k] = t;
    return t;
}

static inline int32_t trans(gram_state *s, int32_t st, uint8_t b, sim_err *err) {
    const int32_t *d = s->c.st[st].dense;
    if (d && d[b] != TR_UNKNOWN) return d[b];
    return trans_slow(s, st, b, err);
}

// --- states: making, copying, flushing -----------------------------------------

// Re-makes state st of src (its stacks) in dst; map (src->n_nodes, -1 filled) remembers nodes done.
static int32_t import_state(gram_state *s, gcache *dst, const gcache *src, int32_t st, int32_t *map, sim_err *err) {
    int32_t off = src->st[st].set_off, n = src->st[st].set_len;
    int32_t *ids = mem_alloc((size_t)(n ? n : 1) * 4);
    int32_t *chain = mem_alloc((size_t)(GRAM_MAX_DEPTH + 1) * 4);
    int32_t res = TR_ERROR;
    if (!ids || !chain) {
        fail(s, err, SIM_ERR_NOMEM, "out of memory copying the grammar state");
        goto out;
    }
    for (int32_t k = 0; k < n; k++) {
        int32_t id = src->sets[off + k], nc = 0;
        while (map[id] < 0) chain[nc++] = id, id = src->nodes[id].parent;
        while (nc > 0) {
            const gnode *o = &src->nodes[chain[--nc]];
            int32_t nid = node_get(s, dst, o->pos, map[o->parent], o->partial, err);
            if (nid < 0) goto out;
            map[chain[nc]] = nid;
        }
        ids[k] = map[src->sets[off + k]];
    }
    qsort(ids, (size_t)n, 4, cmp_i32);
    res = state_get(s, dst, ids, (size_t)n, err);
out:
    mem_free(ids);
    mem_free(chain);
    return res;
}

// Builds a fresh cache holding src's start and current states into *c.
static sim_status rebuild(gram_state *s, const gram_state *src, gcache *c, int32_t *init, int32_t *cur, sim_err *err) {
    if (cache_init(c, err) != SIM_OK) return SIM_ERR_NOMEM;
    int32_t *map = mem_alloc((size_t)src->c.n_nodes * 4);
    if (!map) {
        cache_free(c);
        return err_set(err, SIM_ERR_NOMEM, "out of memory copying the grammar state");
    }
    memset(map, 0xFF, (size_t)src->c.n_nodes * 4);
    map[0] = 0;
    *init = import_state(s, c, &src->c, src->init, map, err);
    if (*init >= 0) *cur = import_state(s, c, &src->c, src->cur, map, err);
    mem_free(map);
    if (*init < 0 || *cur < 0) {
        cache_free(c);
        return s->status;
    }
    return SIM_OK;
}

static sim_status maybe_flush(gram_state *s, sim_err *err) {
    if (s->c.bytes <= s->cache_soft) return SIM_OK;
    gcache c;
    int32_t init, cur;
    sim_status st = rebuild(s, s, &c, &init, &cur, err);
    if (st != SIM_OK) return st;
    cache_free(&s->c);
    s->c = c, s->init = init, s->cur = cur;
    s->n_flushes++;
    return SIM_OK;
}

static void state_free_scratch(gram_state *s) {
    mem_free(s->out);
    mem_free(s->work);
    mem_free(s->vis);
    mem_free(s->vis_gen);
    mem_free(s->bits);
    mem_free(s->walk);
    mem_free(s->sig);
}

void gram_state_free(gram_state *s) {
    if (!s) return;
    cache_free(&s->c);
    state_free_scratch(s);
    mem_free(s);
}

sim_status gram_state_new(gram_state **out, const gram_grammar *g, sim_err *err) {
    if (!out || !g) return err_set(err, SIM_ERR_ARG, "gram_state_new: NULL argument");
    *out = NULL;
    gram_state *s = mem_calloc(1, sizeof *s);
    if (!s) return err_set(err, SIM_ERR_NOMEM, "out of memory for the grammar state");
    s->g = g;
    s->cache_soft = GRAM_CACHE_SOFT;
    if (cache_init(&s->c, err) != SIM_OK) {
        mem_free(s);
        return SIM_ERR_NOMEM;
    }
    s->init = s->cur = initial_state(s, &s->c, err);
    if (s->init < 0) {
        sim_status st = s->status;
        gram_state_free(s);
        return st;
    }
    *out = s;
    return SIM_OK;
}

sim_status gram_state_clone(gram_state **out, const gram_state *src, sim_err *err) {
    if (!out || !src) return err_set(err, SIM_ERR_ARG, "gram_state_clone: NULL argument");
    *out = NULL;
    gram_state *s = mem_calloc(1, sizeof *s);
    if (!s) return err_set(err, SIM_ERR_NOMEM, "out of memory for the grammar state");
    s->g = src->g;
    s->cache_soft = src->cache_soft;
    sim_status st = rebuild(s, src, &s->c, &s->init, &s->cur, err);
    if (st != SIM_OK) {
        state_free_scratch(s);
        mem_free(s);
        return st;
    }
    s->finished = src->finished;
    *out = s;
    return SIM_OK;
}

sim_status gram_state_copy(gram_state *dst, const gram_state *src, sim_err *err) {
    if (!dst || !src) return err_set(err, SIM_ERR_ARG, "gram_state_copy: NULL argument");
    if (dst->g != src->g) return err_set(err, SIM_ERR_ARG, "gram_state_copy: the states use different grammars");
    if (dst == src) return SIM_OK;
    gcache c;
    int32_t init, cur;
    sim_status st = rebuild(dst, src, &c, &init, &cur, err);
    if (st != SIM_OK) return st;
    cache_free(&dst->c);
    dst->c = c, dst->init = init, dst->cur = cur;
    dst->finished = src->finished;
    return SIM_OK;
}

void gram_state_set_cache_limit(gram_state *s, size_t bytes) {
    s->cache_soft = bytes < GRAM_CACHE_HARD ? bytes : GRAM_CACHE_HARD;
}

void gram_state_reset(gram_state *s) {
    s->cur = s->init;
    s->finished = false;
}

bool gram_is_complete(const gram_state *s) { return s->finished || (s->c.st[s->cur].flags & DS_COMPLETE); }

bool gram_is_done(const gram_state *s) {
    return s->finished || s->c.st[s->cur].flags == DS_COMPLETE;
}

gram_stats gram_state_stats(const gram_state *s) {
    return (gram_stats){s->c.bytes, s->c.n_st, s->c.n_nodes, s->n_flushes};
}

// Runs bytes from the current state: the state reached, TR_DEAD, or TR_ERROR.
static int32_t run_bytes(gram_state *s, const char *bytes, size_t n, size_t *dead_at, sim_err *err) {
    int32_t st = s->cur;
    for (size_t i = 0; i < n; i++) {
        st = trans(s, st, (uint8_t)bytes[i], err);
        if (st < 0) {
            if (dead_at) *dead_at = i;
            return st;
        }
    }
    return st;
}

int gram_can_accept_bytes(gram_state *s, const char *bytes, size_t n, sim_err *err) {
    if (!s || (!bytes && n)) return err_set(err, SIM_ERR_ARG, "gram_can_accept_bytes: NULL argument");
    if (s->finished) return n == 0;
    sim_status st = maybe_flush(s, err);
    if (st != SIM_OK) return st;
    int32_t t = run_bytes(s, bytes, n, NULL, err);
    return t == TR_ERROR ? s->status : t >= 0;
}

sim_status gram_accept_bytes(gram_state *s, const char *bytes, size_t n, sim_err *err) {
    if (!s || (!bytes && n)) return err_set(err, SIM_ERR_ARG, "gram_accept_bytes: NULL argument");
    if (s->finished) {
        if (n == 0) return SIM_OK;
        return err_set(err, SIM_ERR_ARG, "the grammar has ended (an end-of-generation token was accepted)");
    }
    sim_status st = maybe_flush(s, err);
    if (st != SIM_OK) return st;
    size_t at = 0;
    int32_t t = run_bytes(s, bytes, n, &at, err);
    if (t == TR_ERROR) return s->status;
    if (t == TR_DEAD)
        return err_set(err, SIM_ERR_ARG, "the grammar does not allow byte %zu of %zu (0x%02X) here", at + 1, n,
                       (uint8_t)bytes[at]);
    s->cur = t;
    return SIM_OK;
}

// --- vocabulary trie -------------------------------------------------------------

enum { GV_NEVER = 0, GV_TEXT = 1, GV_EOG = 2 };

struct gram_vocab {
    const tok_vocab *v;
    int32_t n_vocab;
    uint8_t *kind;    // (n_vocab) GV_*
    int32_t n_nodes;
    int32_t max_depth;
    uint8_t *byte;    // (n_nodes) trie in preorder, children by byte
    uint16_t *depth;  // (n_nodes) 1 for the root's children
    int32_t *end;     // (n_nodes) first node after this node's subtree
    int32_t *tok_off; // (n_nodes + 1) tokens whose text ends at node i: toks[tok_off[i] .. tok_off[i+1])
    int32_t *toks;    // (n_text) token ids
};

void gram_vocab_free(gram_vocab *gv) {
    if (!gv) return;
    mem_free(gv->kind);
    mem_free(gv->byte);
    mem_free(gv->depth);
    mem_free(gv->end);
    mem_free(gv->tok_off);
    mem_free(gv->toks);
    mem_free(gv);
}

int32_t gram_vocab_n_nodes(const gram_vocab *gv) { return gv ? gv->n_nodes : 0; }

typedef struct tok_text {
    const char *s;
    uint32_t n;
    int32_t id;
} tok_text;

static int cmp_text(const void *a, const void *b) {
    const tok_text *x = a, *y = b;
    int c = memcmp(x->s, y->s, MIN(x->n, y->n));
    if (c) return c;
    if (x->n != y->n) return x->n < y->n ? -1 : 1;
    return x->id < y->id ? -1 : x->id > y->id;
}

#define GV_MAX_TOKEN 4096 // longer token texts are never allowed (none seen is over 256)

sim_status gram_vocab_new(gram_vocab **out, const tok_vocab *v, sim_err *err) {
    if (!out || !v) return err_set(err, SIM_ERR_ARG, "gram_vocab_new: NULL argument");
    *out = NULL;
    int32_t n = tok_n_vocab(v);
    gram_vocab *gv = mem_calloc(1, sizeof *gv);
    tok_text *tt = mem_alloc((size_t)(n ? n : 1) * sizeof(tok_text));
    if (!gv || !tt) goto nomem;
    gv->v = v, gv->n_vocab = n;
    gv->kind = mem_calloc((size_t)(n ? n : 1), 1);
    if (!gv->kind) goto nomem;
    size_t n_text = 0, total = 0;
    for (int32_t id = 0; id < n; id++) {
        if (tok_is_eog(v, id)) {
            gv->kind[id] = GV_EOG;
            continue;
        }
        if (tok_token_type(v, id) == TOK_TYPE_CONTROL) continue;
        size_t len;
        const char *t = tok_token_text(v, id, false, &len);
        if (len == 0 || len > GV_MAX_TOKEN) continue;
        gv->kind[id] = GV_TEXT;
        tt[n_text++] = (tok_text){t, (uint32_t)len, id};
        total += len;
    }
    qsort(tt, n_text, sizeof *tt, cmp_text);
    gv->byte = mem_alloc(total + 1);
    gv->depth = mem_alloc((total + 1) * sizeof(uint16_t));
    gv->end = mem_alloc((total + 1) * sizeof(int32_t));
    gv->tok_off = mem_calloc(total + 2, sizeof(int32_t));
    gv->toks = mem_alloc((n_text + 1) * sizeof(int32_t));
    int32_t path[GV_MAX_TOKEN + 1];
    if (!gv->byte || !gv->depth || !gv->end || !gv->tok_off || !gv->toks) goto nomem;
    int32_t nn = 0;
    uint32_t plen = 0; // length of the current path
    const char *prev = "";
    for (size_t k = 0; k < n_text; k++) {
        const tok_text *t = &tt[k];
        uint32_t lcp = 0;
        while (lcp < plen && lcp < t->n && prev[lcp] == t->s[lcp]) lcp++;
        for (uint32_t d = plen; d > lcp; d--) gv->end[path[d]] = nn;
        for (uint32_t d = lcp + 1; d <= t->n; d++) {
            gv->byte[nn] = (uint8_t)t->s[d - 1];
            gv->depth[nn] = (uint16_t)d;
            path[d] = nn++;
        }
        plen = t->n, prev = t->s;
        gv->tok_off[path[t->n] + 1]++; // counts, prefix-summed below
        gv->toks[k] = t->id;
        if ((int32_t)t->n > gv->max_depth) gv->max_depth = (int32_t)t->n;
    }
    for (uint32_t d = plen; d > 0; d--) gv->end[path[d]] = nn;
    for (int32_t i = 0; i < nn; i++) gv->tok_off[i + 1] += gv->tok_off[i];
    gv->n_nodes = nn;
    mem_free(tt);
    *out = gv;
    return SIM_OK;
nomem:
    mem_free(tt);
    gram_vocab_free(gv);
    return err_set(err, SIM_ERR_NOMEM, "out of memory building the vocabulary trie");
}

// --- tokens ----------------------------------------------------------------------

// 1 allowed, 0 not, TR_ERROR.
static int token_ok(gram_state *s, const gram_vocab *gv, int32_t id, bool complete, sim_err *err) {
    if (id < 0 || id >= gv->n_vocab) return 0;
    uint8_t k = gv->kind[id];
    if (k == GV_EOG) return complete;
    if (k != GV_TEXT || s->finished) return 0;
    size_t len;
    const char *t = tok_token_text(gv->v, id, false, &len);
    int32_t st = run_bytes(s, t, len, NULL, err);
    return st == TR_ERROR ? TR_ERROR : st >= 0;
}

int gram_can_accept_token(gram_state *s, const gram_vocab *gv, int32_t id, sim_err *err) {
    if (!s || !gv) return err_set(err, SIM_ERR_ARG, "gram_can_accept_token: NULL argument");
    sim_status st = maybe_flush(s, err);
    if (st != SIM_OK) return st;
    int r = token_ok(s, gv, id, gram_is_complete(s), err);
    return r == TR_ERROR ? s->status : r;
}

sim_status gram_accept_token(gram_state *s, const gram_vocab *gv, int32_t id, sim_err *err) {
    if (!s || !gv) return err_set(err, SIM_ERR_ARG, "gram_accept_token: NULL argument");
    if (id < 0 || id >= gv->n_vocab) return err_set(err, SIM_ERR_ARG, "token %d is outside the vocabulary", id);
    uint8_t k = gv->kind[id];
    if (k == GV_EOG) {
        if (!gram_is_complete(s))
            return err_set(err, SIM_ERR_ARG, "end-of-generation token %d before the grammar is complete", id);
        s->finished = true;
        return SIM_OK;
    }
    if (s->finished) return err_set(err, SIM_ERR_ARG, "token %d after the grammar has ended", id);
    if (k != GV_TEXT) return err_set(err, SIM_ERR_ARG, "token %d (control or empty) is never allowed by a grammar", id);
    size_t len;
    const char *t = tok_token_text(gv->v, id, false, &len);
    sim_status st = gram_accept_bytes(s, t, len, err);
    if (st == SIM_ERR_ARG) err_prefix(err, "token %d", id);
    return st;
}

sim_status gram_filter(gram_state *s, const gram_vocab *gv, smp_cand *cand, size_t n, sim_err *err) {
    if (!s || !gv || (!cand && n)) return err_set(err, SIM_ERR_ARG, "gram_filter: NULL argument");
    sim_status st = maybe_flush(s, err);
    if (st != SIM_OK) return st;
    bool complete = gram_is_complete(s);
    if (s->finished || n <= 64 || n * 8 < (size_t)gv->n_vocab) {
        // few candidates (after top-k): token by token
        for (size_t i = 0; i < n; i++) {
            int r = token_ok(s, gv, cand[i].id, complete, err);
            if (r == TR_ERROR) return s->status;
            if (!r) cand[i].logit = -INFINITY;
        }
        return SIM_OK;
    }
    size_t words = ((size_t)gv->n_vocab + 63) / 64;
    if (s->n_bits_words < words) {
        uint64_t *b = mem_alloc(words * 8);
        if (!b) return err_set(err, SIM_ERR_NOMEM, "out of memory for the token filter");
        mem_free(s->bits);
        s->bits = b, s->n_bits_words = words;
    }
    if (s->cap_walk < (size_t)gv->max_depth + 1) {
        int32_t *w = mem_alloc(((size_t)gv->max_depth + 1) * 4);
        if (!w) return err_set(err, SIM_ERR_NOMEM, "out of memory for the token filter");
        mem_free(s->walk);
        s->walk = w, s->cap_walk = (size_t)gv->max_depth + 1;
    }
    uint64_t *bits = s->bits;
    memset(bits, 0, words * 8);
    // Walk the trie in preorder along the DFA; a dead transition skips the subtree.
    int32_t *states = s->walk;
    states[0] = s->cur;
    const uint8_t *byte = gv->byte;
    const uint16_t *depth = gv->depth;
    const int32_t *end = gv->end, *toff = gv->tok_off, *toks = gv->toks;
    for (int32_t i = 0, nn = gv->n_nodes; i < nn;) {
        int32_t from = states[depth[i] - 1];
        const int32_t *d = s->c.st[from].dense;
        int32_t t = d ? d[byte[i]] : TR_UNKNOWN;
        if (t == TR_UNKNOWN && (t = trans_slow(s, from, byte[i], err)) == TR_ERROR) return s->status;
        if (t == TR_DEAD) {
            i = end[i];
            continue;
        }
        states[depth[i]] = t;
        for (int32_t k = toff[i]; k < toff[i + 1]; k++) bits[toks[k] >> 6] |= 1ull << (toks[k] & 63);
        i++;
    }
    for (size_t i = 0; i < n; i++) {
        int32_t id = cand[i].id;
        bool ok = false;
        if (id >= 0 && id < gv->n_vocab) {
            uint8_t k = gv->kind[id];
            ok = k == GV_EOG ? complete : k == GV_TEXT && ((bits[id >> 6] >> (id & 63)) & 1);
        }
        if (!ok) cand[i].logit = -INFINITY;
    }
    return SIM_OK;
}

void gram_sb_literal(sbuf *b, const char *s, size_t n) {
    sb_put(b, "\"", 1);
    for (size_t i = 0; i < n; i++) {
        unsigned char c = (unsigned char)s[i];
        if (c == '"') sb_put(b, "\\\"", 2);
        else if (c == '\\') sb_put(b, "\\\\", 2);
        else if (c == '\n') sb_put(b, "\\n", 2);
        else if (c == '\r') sb_put(b, "\\r", 2);
        else if (c == '\t') sb_put(b, "\\t", 2);
        else if (c < 0x20 || c == 0x7F) sb_printf(b, "\\x%02X", c);
        else sb_put(b, (const char *)&c, 1);
    }
    sb_put(b, "\"", 1);
}
