// jinja_value.c — the Jinja interpreter's values (part of model/jinja; see jinja_internal.h):
// the per-render arena, UTF-8 text helpers, Python's value semantics (lists, dicts, str(), repr(),
// HF's tojson, ==, <) and the conversion of the JSON context to values.
#include "model/jinja_internal.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

// --- arena -------------------------------------------------------------------------

#define AR_CHUNK ((size_t)64 << 10)

static size_t ar_round(size_t n) { return n ? (n + 15) & ~(size_t)15 : 16; }

// NULL when the limit is reached (a->over set) or memory is out.
void *jn_ar_alloc(jarena *a, size_t n) {
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
void *jn_ar_grow(jarena *a, void *p, size_t old, size_t n) {
    ar_chunk *c = a->head;
    if (p && c && (unsigned char *)p + ar_round(old) == c->data + c->used &&
        c->cap - (size_t)((unsigned char *)p - c->data) >= ar_round(n) && n <= SIZE_MAX / 4) {
        c->used = (size_t)((unsigned char *)p - c->data) + ar_round(n);
        return p;
    }
    void *q = jn_ar_alloc(a, n);
    if (q && p && old) memcpy(q, p, old < n ? old : n);
    return q;
}

void jn_ar_free_all(jarena *a) {
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

// Decodes the code point at s[*i] and advances; a byte that does not start a
// valid sequence (never in validated text) counts as one code point.
uint32_t jn_u8_next(const char *s, size_t n, size_t *i) {
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
size_t jn_u8_prev(const char *s, size_t i) {
    size_t j = i - 1;
    while (j > 0 && ((uint8_t)s[j] & 0xC0) == 0x80 && i - j < 4) j--;
    return j;
}

size_t jn_u8_count(const char *s, size_t n) {
    size_t c = 0;
    for (size_t i = 0; i < n; i++) c += ((uint8_t)s[i] & 0xC0) != 0x80;
    return c;
}

// Python's str.isspace (also what \s matches in jinja2's lexer).
bool jn_py_isspace(uint32_t c) {
    return (c >= 9 && c <= 13) || (c >= 0x1c && c <= 0x20) || c == 0x85 || c == 0xa0 || c == 0x1680 ||
           (c >= 0x2000 && c <= 0x200a) || c == 0x2028 || c == 0x2029 || c == 0x202f || c == 0x205f ||
           c == 0x3000;
}

// Length of the whitespace run at s[0..n).
size_t jn_ws_span(const char *s, size_t n) {
    size_t i = 0;
    while (i < n) {
        size_t j = i;
        if (!jn_py_isspace(jn_u8_next(s, n, &j))) break;
        i = j;
    }
    return i;
}

// Length of s[0..n) without its trailing whitespace.
size_t jn_ws_rtrim(const char *s, size_t n) {
    while (n > 0) {
        size_t j = jn_u8_prev(s, n), k = j;
        if (!jn_py_isspace(jn_u8_next(s, n, &k))) break;
        n = j;
    }
    return n;
}

// --- values -----------------------------------------------------------------------

const char *jn_kind_name(int k, int sub) {
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
// --- lists and dicts ---------------------------------------------------------------------

jlist *jn_list_new(R *r, size_t n) {
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

int jn_lv_push(R *r, lvec *b, jv x) {
    if (b->n == b->cap) {
        size_t cap = b->cap ? b->cap * 2 : 8;
        if (cap > SIZE_MAX / sizeof(jv) / 2) return jn_r_nomem(r);
        jv *q = jn_ar_grow(&r->a, b->v, b->cap * sizeof(jv), cap * sizeof(jv));
        if (!q) return jn_r_nomem(r);
        b->v = q;
        b->cap = cap;
    }
    b->v[b->n++] = x;
    return SIM_OK;
}

int jn_lv_done(R *r, lvec *b, int sub, jv *out) {
    jlist *l = ralloc(r, sizeof *l);
    if (!l) return jn_r_nomem(r);
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
int jn_key_hash(jv k, uint64_t *h, int depth) {
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
            if (jn_key_hash(k.u.l->v[i], &e, depth + 1)) return -1;
            *h = mix64(*h ^ e);
        }
        return 0;
    case V_NS:
    case V_FUNC:
    case V_LOOP: *h = mix64((uint64_t)(uintptr_t)k.u.d); return 0;
    default: return -1;
    }
}

jdict *jn_dict_new(R *r) {
    jdict *d = ralloc(r, sizeof *d);
    if (d) memset(d, 0, sizeof *d);
    return d;
}

static void dict_index_put(jdict *d, size_t e) {
    uint64_t h = 0;
    jn_key_hash(d->key[e], &h, 0);
    size_t m = d->icap - 1, i = (size_t)h & m;
    while (d->idx[i]) i = (i + 1) & m;
    d->idx[i] = (uint32_t)(e + 1);
}

// The entry for key k, or -1.
long jn_dict_find(const jdict *d, jv k) {
    if (!d->idx) {
        for (size_t i = 0; i < d->n; i++)
            if (jn_py_eq(d->key[i], k, 0)) return (long)i;
        return -1;
    }
    uint64_t h;
    if (jn_key_hash(k, &h, 0)) return -1;
    size_t m = d->icap - 1, i = (size_t)h & m;
    while (d->idx[i]) {
        size_t e = d->idx[i] - 1;
        if (jn_py_eq(d->key[e], k, 0)) return (long)e;
        i = (i + 1) & m;
    }
    return -1;
}

jv *jn_dict_get_s(const jdict *d, const char *s, size_t n) {
    long e = jn_dict_find(d, v_str(s, n));
    return e < 0 ? NULL : &d->val[e];
}

int jn_dict_set(R *r, jdict *d, jv k, jv v) {
    uint64_t h;
    if (jn_key_hash(k, &h, 0)) return jn_rerr(r, SIM_ERR_FORMAT, "unhashable type: '%s'", tname(k));
    long e = jn_dict_find(d, k);
    if (e >= 0) {
        d->val[e] = v;
        return SIM_OK;
    }
    if (d->n >= UINT32_MAX - 1) return jn_r_nomem(r);
    if (d->n == d->cap) {
        size_t cap = d->cap ? d->cap * 2 : 4;
        jv *nk = jn_ar_grow(&r->a, d->key, d->cap * sizeof(jv), cap * sizeof(jv));
        jv *nv = nk ? jn_ar_grow(&r->a, d->val, d->cap * sizeof(jv), cap * sizeof(jv)) : NULL;
        if (!nv) return jn_r_nomem(r);
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
        if (!idx) return jn_r_nomem(r);
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

int jn_from_json(R *r, const json_t *j, jv *out, int depth) {
    if (depth > 1000) return jn_rerr(r, SIM_ERR_RANGE, "the context nests too deeply");
    switch (json_typeof(j)) {
    case JSON_OBJECT: {
        jdict *d = jn_dict_new(r);
        if (!d) return jn_r_nomem(r);
        const char *k;
        json_t *v;
        json_object_foreach((json_t *)j, k, v) {
            jv x;
            TRY(jn_from_json(r, v, &x, depth + 1));
            TRY(jn_dict_set(r, d, v_str(k, strlen(k)), x));
        }
        *out = (jv){.k = V_DICT, .u.d = d};
        return SIM_OK;
    }
    case JSON_ARRAY: {
        size_t n = json_array_size(j);
        jlist *l = jn_list_new(r, n);
        if (!l) return jn_r_nomem(r);
        for (size_t i = 0; i < n; i++) TRY(jn_from_json(r, json_array_get(j, i), &l->v[i], depth + 1));
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
        uint32_t c = jn_u8_next(p, n, &j);
        if (c == (uint32_t)q || c == '\\') {
            TRY(sk_putc(r, s, '\\'));
            TRY(sk_putc(r, s, (char)c));
        } else if (c == '\n') TRY(sk_puts(r, s, "\\n"));
        else if (c == '\r') TRY(sk_puts(r, s, "\\r"));
        else if (c == '\t') TRY(sk_puts(r, s, "\\t"));
        else if (c == ' ') TRY(sk_putc(r, s, ' '));
        else if (cp_unprintable(c)) {
            if (c < 0x100) TRY(jn_sk_printf(r, s, "\\x%02x", c));
            else if (c < 0x10000) TRY(jn_sk_printf(r, s, "\\u%04x", c));
            else TRY(jn_sk_printf(r, s, "\\U%08x", c));
        } else TRY(jn_sk_put(r, s, p + i, j - i));
        i = j;
    }
    return sk_putc(r, s, q);
}

static int seq_write(R *r, sink *s, jv v, int depth) {
    const jlist *l = v.u.l;
    bool tuple = v.sub == SUB_TUPLE;
    switch (v.sub) {
    case SUB_GEN:
    case SUB_REV: return jn_sk_printf(r, s, "<%s object>", tname(v)); // Python adds an address
    case SUB_RANGE:
        if (l->rs == 1) return jn_sk_printf(r, s, "range(%lld, %lld)", (long long)l->r0, (long long)l->r1);
        return jn_sk_printf(r, s, "range(%lld, %lld, %lld)", (long long)l->r0, (long long)l->r1, (long long)l->rs);
    case SUB_ITEMS:
    case SUB_KEYS:
    case SUB_VALUES: TRY(jn_sk_printf(r, s, "%s(", tname(v))); break;
    }
    TRY(sk_putc(r, s, tuple ? '(' : '['));
    for (size_t i = 0; i < l->n; i++) {
        if (i) TRY(sk_puts(r, s, ", "));
        TRY(jn_v_write(r, s, l->v[i], true, depth + 1));
    }
    if (tuple && l->n == 1) TRY(sk_putc(r, s, ','));
    TRY(sk_putc(r, s, tuple ? ')' : ']'));
    return v.sub >= SUB_ITEMS ? sk_putc(r, s, ')') : SIM_OK;
}

static int dict_write(R *r, sink *s, const jdict *d, int depth) {
    TRY(sk_putc(r, s, '{'));
    for (size_t i = 0; i < d->n; i++) {
        if (i) TRY(sk_puts(r, s, ", "));
        TRY(jn_v_write(r, s, d->key[i], true, depth + 1));
        TRY(sk_puts(r, s, ": "));
        TRY(jn_v_write(r, s, d->val[i], true, depth + 1));
    }
    return sk_putc(r, s, '}');
}

// Python's str(v) (repr false) or repr(v).
int jn_v_write(R *r, sink *s, jv v, bool repr, int depth) {
    if (depth > 500) return jn_rerr(r, SIM_ERR_RANGE, "a value nests too deeply to print");
    char b[48];
    switch (v.k) {
    case V_UNDEF: return repr ? sk_puts(r, s, "Undefined") : SIM_OK;
    case V_NONE: return sk_puts(r, s, "None");
    case V_BOOL: return sk_puts(r, s, v.u.b ? "True" : "False");
    case V_INT: return jn_sk_printf(r, s, "%lld", (long long)v.u.i);
    case V_FLOAT: float_repr(v.u.f, b, sizeof b); return sk_puts(r, s, b);
    case V_STR: return repr ? str_repr(r, s, v.u.s, v.n) : jn_sk_put(r, s, v.u.s, v.n);
    case V_LIST: return seq_write(r, s, v, depth);
    case V_DICT: return dict_write(r, s, v.u.d, depth);
    case V_NS:
        TRY(sk_puts(r, s, "<Namespace "));
        TRY(dict_write(r, s, v.u.d, depth));
        return sk_putc(r, s, '>');
    case V_FUNC:
        if (v.u.fn->kind == F_MACRO)
            return jn_sk_printf(r, s, "<Macro '%.*s'>", (int)MIN(v.u.fn->name.n, 40), v.u.fn->name.s);
        if (v.u.fn->kind == F_METHOD) // Python adds an address
            return jn_sk_printf(r, s, "<built-in method %.*s of %s object>", (int)MIN(v.u.fn->name.n, 40),
                                v.u.fn->name.s, tname(v.u.fn->self));
        return jn_sk_printf(r, s, "<function %.*s>", (int)MIN(v.u.fn->name.n, 40), v.u.fn->name.s);
    default: return jn_sk_printf(r, s, "<LoopContext %zu/%zu>", v.u.lp->i + 1, v.u.lp->items->n);
    }
}

// str(v) as a string value (strings are returned as they are).
int jn_to_str(R *r, jv v, jv *out) {
    if (v.k == V_STR) {
        *out = v;
        return SIM_OK;
    }
    if (v.k == V_UNDEF) {
        *out = v_str("", 0);
        return SIM_OK;
    }
    sink s = {0};
    TRY(jn_v_write(r, &s, v, false, 0));
    *out = sk_value(&s);
    return SIM_OK;
}

// --- HF's tojson: json.dumps(x, ensure_ascii=False, indent=..., separators=..., sort_keys=...) --

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
        TRY(jn_sk_put(r, s, p + run, i - run));
        if (esc) {
            TRY(sk_puts(r, s, esc));
            i++;
        } else if (c < 0x20) {
            TRY(jn_sk_printf(r, s, "\\u%04x", c));
            i++;
        } else {
            uint32_t cp = jn_u8_next(p, n, &i);
            if (cp >= 0x10000) {
                cp -= 0x10000;
                TRY(jn_sk_printf(r, s, "\\u%04x\\u%04x", 0xd800 + (cp >> 10), 0xdc00 + (cp & 0x3ff)));
            } else {
                TRY(jn_sk_printf(r, s, "\\u%04x", cp));
            }
        }
        run = i;
    }
    TRY(jn_sk_put(r, s, p + run, n - run));
    return sk_putc(r, s, '"');
}

static int json_newline(R *r, sink *s, const json_fmt *f, int level) {
    TRY(sk_putc(r, s, '\n'));
    for (int i = 0; i < level; i++) TRY(jn_sk_put(r, s, f->indent.s, f->indent.n));
    return SIM_OK;
}

static int cmp_str(jv a, jv b) {
    int c = memcmp(a.u.s, b.u.s, MIN(a.n, b.n));
    return c ? c : (a.n > b.n) - (a.n < b.n);
}

int jn_json_write(R *r, sink *s, jv v, const json_fmt *f, int level) {
    if (level > 500) return jn_rerr(r, SIM_ERR_FORMAT, "Circular reference detected");
    TRY(jn_step(r, 1));
    char b[48];
    switch (v.k) {
    case V_NONE: return sk_puts(r, s, "null");
    case V_BOOL: return sk_puts(r, s, v.u.b ? "true" : "false");
    case V_INT: return jn_sk_printf(r, s, "%lld", (long long)v.u.i);
    case V_FLOAT:
        if (isnan(v.u.f)) return sk_puts(r, s, "NaN");
        if (isinf(v.u.f)) return sk_puts(r, s, v.u.f < 0 ? "-Infinity" : "Infinity");
        float_repr(v.u.f, b, sizeof b);
        return sk_puts(r, s, b);
    case V_STR: return json_str(r, s, v.u.s, v.n, f->ensure_ascii);
    case V_LIST: {
        const jlist *l = v.u.l;
        if (!IS_PLAIN(v)) return jn_rerr(r, SIM_ERR_FORMAT, "Object of type %s is not JSON serializable", tname(v));
        if (!l->n) return sk_puts(r, s, "[]");
        TRY(sk_putc(r, s, '['));
        for (size_t i = 0; i < l->n; i++) {
            if (i) TRY(jn_sk_put(r, s, f->item_sep.s, f->item_sep.n));
            if (f->indent.s) TRY(json_newline(r, s, f, level + 1));
            TRY(jn_json_write(r, s, l->v[i], f, level + 1));
        }
        if (f->indent.s) TRY(json_newline(r, s, f, level));
        return sk_putc(r, s, ']');
    }
    case V_DICT: {
        const jdict *d = v.u.d;
        if (!d->n) return sk_puts(r, s, "{}");
        size_t *order = ralloc(r, d->n * sizeof *order);
        if (!order) return jn_r_nomem(r);
        for (size_t i = 0; i < d->n; i++) order[i] = i;
        if (f->sort_keys) { // insertion sort by key (keys are strings in practice)
            for (size_t i = 0; i < d->n; i++)
                if (d->key[i].k != V_STR)
                    return jn_rerr(r, SIM_ERR_FORMAT, "sort_keys needs string keys, not '%s'", tname(d->key[i]));
            TRY(jn_step(r, d->n * d->n / 16));
            for (size_t i = 1; i < d->n; i++) {
                size_t x = order[i], j = i;
                while (j > 0 && cmp_str(d->key[order[j - 1]], d->key[x]) > 0) order[j] = order[j - 1], j--;
                order[j] = x;
            }
        }
        TRY(sk_putc(r, s, '{'));
        for (size_t i = 0; i < d->n; i++) {
            jv k = d->key[order[i]];
            if (i) TRY(jn_sk_put(r, s, f->item_sep.s, f->item_sep.n));
            if (f->indent.s) TRY(json_newline(r, s, f, level + 1));
            switch (k.k) {
            case V_STR: TRY(json_str(r, s, k.u.s, k.n, f->ensure_ascii)); break;
            case V_NONE:
            case V_BOOL:
            case V_INT:
            case V_FLOAT: {
                sink t = {0};
                TRY(jn_json_write(r, &t, k, f, level + 1));
                TRY(sk_putc(r, s, '"'));
                TRY(jn_sk_put(r, s, t.p, t.n));
                TRY(sk_putc(r, s, '"'));
                break;
            }
            default:
                return jn_rerr(r, SIM_ERR_FORMAT, "keys must be str, int, float, bool or None, not %s", tname(k));
            }
            TRY(jn_sk_put(r, s, f->key_sep.s, f->key_sep.n));
            TRY(jn_json_write(r, s, d->val[order[i]], f, level + 1));
        }
        if (f->indent.s) TRY(json_newline(r, s, f, level));
        return sk_putc(r, s, '}');
    }
    default:
        if (v.k == V_UNDEF) return jn_undef_err(r, v);
        return jn_rerr(r, SIM_ERR_FORMAT, "Object of type %s is not JSON serializable", tname(v));
    }
}

// --- comparisons ------------------------------------------------------------------------

bool jn_py_eq(jv a, jv b, int depth) {
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
            if (!jn_py_eq(a.u.l->v[i], b.u.l->v[i], depth + 1)) return false;
        return true;
    case V_DICT:
        if (a.u.d->n != b.u.d->n) return false;
        for (size_t i = 0; i < a.u.d->n; i++) {
            long e = jn_dict_find(b.u.d, a.u.d->key[i]);
            if (e < 0 || !jn_py_eq(a.u.d->val[i], b.u.d->val[e], depth + 1)) return false;
        }
        return true;
    case V_FUNC: return a.u.fn == b.u.fn;
    default: return a.u.d == b.u.d;
    }
}

// Python's ordering: *out < 0, 0, > 0; an error for types that do not order.
int jn_py_cmp(R *r, jv a, jv b, const char *op, int *out, int depth) {
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
            if (jn_py_eq(a.u.l->v[i], b.u.l->v[i], 0)) continue;
            return jn_py_cmp(r, a.u.l->v[i], b.u.l->v[i], op, out, depth + 1);
        }
        *out = (a.u.l->n > b.u.l->n) - (a.u.l->n < b.u.l->n);
        return SIM_OK;
    }
    if (a.k == V_UNDEF) return jn_undef_err(r, a);
    if (b.k == V_UNDEF) return jn_undef_err(r, b);
    return jn_rerr(r, SIM_ERR_FORMAT, "'%s' not supported between instances of '%s' and '%s'", op, tname(a), tname(b));
}
