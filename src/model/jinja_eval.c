// jinja_eval.c — rendering a template (part of model/jinja; see jinja_internal.h): the render
// state and its errors, output sinks, scopes, variable/attribute/item lookup, operators, the
// expression evaluator and the statements; jinja_render.
#include "model/jinja_internal.h"

#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <string.h>
#include <time.h>

// --- render state and errors ---------------------------------------------------------

int jn_line_of(const jinja_template *t, uint32_t pos) {
    int line = 1;
    for (uint32_t i = 0; i < pos && i < t->len; i++) line += t->src[i] == '\n';
    return line;
}

int jn_rerr(R *r, sim_status code, const char *fmt, ...) {
    if (r->fold) return code; // folding constants: the expression is left to render time
    char msg[400];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    err_set(r->err, code, "line %d: %s", jn_line_of(r->t, r->pos), msg);
    return code;
}

int jn_r_nomem(R *r) {
    if (r->a.over) return jn_rerr(r, SIM_ERR_RANGE, "the template needs more than %zu bytes of memory", r->a.limit);
    return jn_rerr(r, SIM_ERR_NOMEM, "out of memory");
}

static int type_err(R *r, const char *what, jv a, jv b) {
    return jn_rerr(r, SIM_ERR_FORMAT, "unsupported operand type(s) for %s: '%s' and '%s'", what, tname(a), tname(b));
}

// The message jinja2's Undefined gives when it is used.
int jn_undef_err(R *r, jv u) {
    int n = (int)MIN(u.n, 120);
    switch (u.uh) {
    case UH_NAME: return jn_rerr(r, SIM_ERR_FORMAT, "'%.*s' is undefined", n, u.u.s);
    case UH_ATTR:
        if ((u.ut & 15) == V_NONE) return jn_rerr(r, SIM_ERR_FORMAT, "'None' has no attribute '%.*s'", n, u.u.s);
        return jn_rerr(r, SIM_ERR_FORMAT, "'%s object' has no attribute '%.*s'", jn_kind_name(u.ut & 15, u.ut >> 4), n,
                       u.u.s);
    case UH_ITEM:
        return jn_rerr(r, SIM_ERR_FORMAT, "%s object has no element %.*s", jn_kind_name(u.ut & 15, u.ut >> 4), n, u.u.s);
    case UH_PARAM: return jn_rerr(r, SIM_ERR_FORMAT, "parameter '%.*s' was not provided", n, u.u.s);
    case UH_NOCALLER: return jn_rerr(r, SIM_ERR_FORMAT, "No caller defined");
    case UH_UNSAFE:
        return jn_rerr(r, SIM_ERR_FORMAT, "access to attribute '%.*s' of '%s' object is unsafe.", n, u.u.s,
                       jn_kind_name(u.ut & 15, u.ut >> 4));
    default: return jn_rerr(r, SIM_ERR_FORMAT, "a value is undefined");
    }
}

int jn_step(R *r, uint64_t n) {
    r->steps += n;
    if (r->steps > r->max_steps)
        return jn_rerr(r, SIM_ERR_RANGE, "the template runs too long (more than %llu steps)",
                       (unsigned long long)r->max_steps);
    return SIM_OK;
}

// --- sinks (growing output buffers in the arena) -------------------------------------

int jn_sk_put(R *r, sink *s, const char *p, size_t n) {
    if (n > r->max_out || s->n > r->max_out - n)
        return jn_rerr(r, SIM_ERR_RANGE, "the output is longer than %zu bytes", r->max_out);
    if (s->n + n > s->cap) {
        size_t cap = s->cap ? s->cap : 64;
        while (cap < s->n + n) cap = cap > SIZE_MAX / 2 ? s->n + n : cap * 2;
        char *q = jn_ar_grow(&r->a, s->p, s->cap, cap);
        if (!q) return jn_r_nomem(r);
        s->p = q;
        s->cap = cap;
    }
    if (n) memcpy(s->p + s->n, p, n);
    s->n += n;
    return SIM_OK;
}
int jn_sk_printf(R *r, sink *s, const char *fmt, ...) {
    char b[64];
    va_list ap;
    va_start(ap, fmt);
    int k = vsnprintf(b, sizeof b, fmt, ap);
    va_end(ap);
    return jn_sk_put(r, s, b, (size_t)(k < 0 ? 0 : MIN((size_t)k, sizeof b - 1)));
}
// --- scopes ------------------------------------------------------------------------------

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
        jvar *q = jn_ar_grow(&r->a, sc->vars, sc->cap * sizeof *q, cap * sizeof *q);
        if (!q) return jn_r_nomem(r);
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
            TRY(jn_from_json(r, j, out, 0));
            return scope_set(r, r->ctxs, s, n, *out);
        }
        for (int g = 0; g < G_COUNT; g++)
            if (!strcmp(name, jn_global_names[g])) {
                TRY(jn_make_func(r, F_GLOBAL, g, v_none(), jn_global_names[g], out));
                return scope_set(r, r->ctxs, s, n, *out);
            }
    }
    *out = v_undef_name(s, n);
    return SIM_OK;
}

int jn_find_name(const char *const *names, size_t count, const char *s, size_t n) {
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
        return jn_make_func(r, F_METHOD, s[1] == 'y' ? M_CYCLE : M_CHANGED, self, s[1] == 'y' ? "cycle" : "changed", out);
    } else *out = v_undef_attr((jv){.k = V_LOOP}, s, n);
    return SIM_OK;
}

// obj.name: the sandbox's getattr — a Python attribute (method) first, then the item.
int jn_get_attr(R *r, jv obj, const char *s, size_t n, jv *out) {
    int m;
    switch (obj.k) {
    case V_UNDEF: return jn_undef_err(r, obj);
    case V_DICT:
        if ((m = jn_find_name(jn_method_names + M_STR_END, M_DICT_END - M_STR_END, s, n)) >= 0)
            return jn_make_func(r, F_METHOD, M_STR_END + m, obj, jn_method_names[M_STR_END + m], out);
        if (jn_find_name(jn_dict_unsafe, 5, s, n) >= 0) {
            *out = v_unsafe(obj, s, n);
            return SIM_OK;
        }
        // fall through
    case V_NS: {
        jv *x = jn_dict_get_s(obj.u.d, s, n);
        *out = x ? *x : v_undef_attr(obj, s, n);
        return SIM_OK;
    }
    case V_STR:
        if ((m = jn_find_name(jn_method_names, M_STR_END, s, n)) >= 0)
            return jn_make_func(r, F_METHOD, m, obj, jn_method_names[m], out);
        break;
    case V_LIST:
        if (obj.sub != SUB_LIST && obj.sub != SUB_TUPLE && obj.sub != SUB_RANGE) break;
        if ((m = jn_find_name(jn_method_names + M_DICT_END, M_LIST_END - M_DICT_END, s, n)) >= 0)
            return jn_make_func(r, F_METHOD, M_DICT_END + m, obj, jn_method_names[M_DICT_END + m], out);
        if (obj.sub == SUB_LIST && jn_find_name(jn_list_unsafe, 8, s, n) >= 0) {
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
size_t jn_cp_offset(const char *s, size_t n, size_t k) {
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
    TRY(jn_v_write(r, &s, key, true, 0));
    *out = v_undef_attr(obj, s.p, s.n);
    out->uh = UH_ITEM;
    return SIM_OK;
}

// obj[key]: the sandbox's getitem — the item first, then a Python attribute.
int jn_get_item(R *r, jv obj, jv key, jv *out) {
    if (obj.k == V_UNDEF) return jn_undef_err(r, obj);
    if (obj.k == V_DICT) {
        uint64_t h;
        if (!jn_key_hash(key, &h, 0)) {
            long e = jn_dict_find(obj.u.d, key);
            if (e >= 0) {
                *out = obj.u.d->val[e];
                return SIM_OK;
            }
        }
    } else if ((IS_PLAIN(obj) || (obj.k == V_LIST && obj.sub == SUB_RANGE) || obj.k == V_STR) && is_intlike(key)) {
        int64_t i = as_int(key);
        size_t len = obj.k == V_LIST ? obj.u.l->n : jn_u8_count(obj.u.s, obj.n);
        if (i < 0) i += (int64_t)len;
        if (i >= 0 && (uint64_t)i < len) {
            if (obj.k == V_LIST) {
                *out = obj.u.l->v[i];
            } else {
                size_t b = jn_cp_offset(obj.u.s, obj.n, (size_t)i), e = b;
                jn_u8_next(obj.u.s, obj.n, &e);
                *out = v_str(obj.u.s + b, e - b);
            }
            return SIM_OK;
        }
    }
    if (key.k == V_STR) {
        TRY(jn_get_attr(r, obj, key.u.s, key.n, out));
        if (out->k != V_UNDEF || out->uh == UH_UNSAFE) return SIM_OK;
    }
    return undef_item(r, obj, key, out);
}

static int slice_index(R *r, jv v, int64_t *out) {
    if (!is_intlike(v)) {
        if (v.k == V_UNDEF) return jn_undef_err(r, v);
        return jn_rerr(r, SIM_ERR_FORMAT, "slice indices must be integers or None, not %s", tname(v));
    }
    *out = as_int(v);
    return SIM_OK;
}

// obj[start:stop:step] with Python's rules.
int jn_get_slice(R *r, jv obj, jv start, jv stop, jv stepv, jv *out) {
    if (obj.k == V_UNDEF) return jn_undef_err(r, obj);
    // jinja2 compiles slices to Python's own subscription (not its forgiving
    // getitem), unless it computes the expression at compile time
    if ((obj.k != V_LIST && obj.k != V_STR) || (obj.k == V_LIST && !IS_PLAIN(obj) && obj.sub != SUB_RANGE)) {
        if (r->fold) {
            *out = v_undef();
            return SIM_OK;
        }
        if (obj.k == V_DICT) return jn_rerr(r, SIM_ERR_FORMAT, "unhashable type: 'slice'");
        return jn_rerr(r, SIM_ERR_FORMAT, "'%s' object is not subscriptable", tname(obj));
    }
    int64_t st = 1, a, b;
    if (stepv.k != V_NONE) TRY(slice_index(r, stepv, &st));
    if (st == 0) return jn_rerr(r, SIM_ERR_FORMAT, "slice step cannot be zero");
    int64_t len = (int64_t)(obj.k == V_LIST ? obj.u.l->n : jn_u8_count(obj.u.s, obj.n));
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
    TRY(jn_step(r, (uint64_t)count / 8));
    if (obj.k == V_LIST) {
        jlist *l = jn_list_new(r, (size_t)count);
        if (!l) return jn_r_nomem(r);
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
        size_t ba = jn_cp_offset(obj.u.s, obj.n, (size_t)a), bb = count ? jn_cp_offset(obj.u.s, obj.n, (size_t)b) : ba;
        *out = v_str(obj.u.s + ba, bb - ba);
        return SIM_OK;
    }
    size_t *offs = ralloc(r, ((size_t)len + 1) * sizeof *offs);
    if (!offs) return jn_r_nomem(r);
    size_t i = 0, k = 0;
    while (i < obj.n) {
        offs[k++] = i;
        jn_u8_next(obj.u.s, obj.n, &i);
    }
    offs[k] = obj.n;
    sink s = {0};
    for (int64_t j = 0; j < count; j++) {
        int64_t c = a + j * st;
        TRY(jn_sk_put(r, &s, obj.u.s + offs[c], offs[c + 1] - offs[c]));
    }
    *out = sk_value(&s);
    return SIM_OK;
}

// The items iterating v yields (dict: keys, str: characters, undefined: none).
int jn_iterate(R *r, jv v, const jlist **out) {
    static const jlist empty = {0};
    switch (v.k) {
    case V_UNDEF: *out = &empty; return SIM_OK;
    case V_LIST:
        if (v.u.l->broken) return jn_rerr(r, SIM_ERR_FORMAT, "%s", v.u.l->broken);
        if (IS_ITER(v)) { // consumed by iterating
            jlist *l = ralloc(r, sizeof *l);
            if (!l) return jn_r_nomem(r);
            *l = (jlist){.v = v.u.l->v + v.u.l->cur, .n = v.u.l->n - v.u.l->cur};
            v.u.l->cur = v.u.l->n;
            *out = l;
            return SIM_OK;
        }
        *out = v.u.l;
        return SIM_OK;
    case V_DICT: {
        jlist *l = ralloc(r, sizeof *l);
        if (!l) return jn_r_nomem(r);
        l->v = v.u.d->key;
        l->n = v.u.d->n;
        *out = l;
        return SIM_OK;
    }
    case V_STR: {
        jlist *l = jn_list_new(r, jn_u8_count(v.u.s, v.n));
        if (!l) return jn_r_nomem(r);
        size_t i = 0, k = 0;
        while (i < v.n) {
            size_t j = i;
            jn_u8_next(v.u.s, v.n, &j);
            l->v[k++] = v_str(v.u.s + i, j - i);
            i = j;
        }
        l->n = k;
        *out = l;
        return SIM_OK;
    }
    default: return jn_rerr(r, SIM_ERR_FORMAT, "'%s' object is not iterable", tname(v));
    }
}

// len(v)
int jn_length_of(R *r, jv v, int64_t *out) {
    switch (v.k) {
    case V_UNDEF: *out = 0; return SIM_OK;
    case V_STR: *out = (int64_t)jn_u8_count(v.u.s, v.n); return SIM_OK;
    case V_LIST:
        if (IS_ITER(v)) break;
        *out = (int64_t)v.u.l->n;
        return SIM_OK;
    case V_DICT: *out = (int64_t)v.u.d->n; return SIM_OK;
    case V_LOOP: *out = (int64_t)v.u.lp->items->n; return SIM_OK;
    default: break;
    }
    return jn_rerr(r, SIM_ERR_FORMAT, "object of type '%s' has no len()", tname(v));
}

// --- operators -------------------------------------------------------------------------------

int jn_str_concat(R *r, jv a, jv b, jv *out) {
    sink s = {0};
    TRY(jn_sk_put(r, &s, a.u.s, a.n));
    TRY(jn_sk_put(r, &s, b.u.s, b.n));
    *out = sk_value(&s);
    return SIM_OK;
}

int jn_repeat(R *r, jv seq, int64_t times, jv *out) {
    if (times < 0) times = 0;
    if (seq.k == V_STR) {
        if (seq.n && (uint64_t)times > r->max_out / seq.n)
            return jn_rerr(r, SIM_ERR_RANGE, "the output is longer than %zu bytes", r->max_out);
        sink s = {0};
        for (int64_t i = 0; i < times; i++) TRY(jn_sk_put(r, &s, seq.u.s, seq.n));
        *out = sk_value(&s);
        return SIM_OK;
    }
    size_t n = seq.u.l->n;
    if (n && (uint64_t)times > (uint64_t)(r->max_steps / n)) return jn_step(r, r->max_steps + 1);
    TRY(jn_step(r, (uint64_t)times * n / 8));
    jlist *l = jn_list_new(r, n * (size_t)times);
    if (!l) return jn_r_nomem(r);
    for (int64_t i = 0; i < times; i++) memcpy(l->v + (size_t)i * n, seq.u.l->v, n * sizeof(jv));
    *out = v_list(l, seq.sub);
    return SIM_OK;
}

int jn_binop(R *r, int op, jv a, jv b, jv *out) {
    if (op == OP_MOD && a.k == V_STR) return jn_py_format(r, a, b, out); // str.__mod__ goes first
    if (a.k == V_UNDEF) return jn_undef_err(r, a);
    if (b.k == V_UNDEF) return jn_undef_err(r, b);
    static const char *const sym[] = {[OP_ADD] = "+", [OP_SUB] = "-", [OP_MUL] = "*", [OP_DIV] = "/",
                                      [OP_FLOORDIV] = "//", [OP_MOD] = "%", [OP_POW] = "** or pow()"};
    if (is_num(a) && is_num(b)) {
        bool fl = a.k == V_FLOAT || b.k == V_FLOAT;
        if (op == OP_DIV) {
            double y = as_f(b);
            if (y == 0) return jn_rerr(r, SIM_ERR_FORMAT, "division by zero");
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
                if (y == 0) return jn_rerr(r, SIM_ERR_FORMAT, "integer division or modulo by zero");
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
                    if (x == 0) return jn_rerr(r, SIM_ERR_FORMAT, "0.0 cannot be raised to a negative power");
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
            if (y == 0) return jn_rerr(r, SIM_ERR_FORMAT, "float division by zero");
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
            if (x == 0 && y < 0) return jn_rerr(r, SIM_ERR_FORMAT, "0.0 cannot be raised to a negative power");
            if (x < 0 && y != floor(y)) return jn_rerr(r, SIM_ERR_FORMAT, "a negative number to a fractional power is complex");
            z = pow(x, y);
            break;
        }
        *out = v_float(z);
        return SIM_OK;
    }
    if (op == OP_ADD && a.k == V_STR && b.k == V_STR) return jn_str_concat(r, a, b, out);
    if (op == OP_ADD && IS_PLAIN(a) && IS_PLAIN(b) && a.sub == b.sub) {
        size_t n = a.u.l->n + b.u.l->n;
        jlist *l = jn_list_new(r, n);
        if (!l) return jn_r_nomem(r);
        if (a.u.l->n) memcpy(l->v, a.u.l->v, a.u.l->n * sizeof(jv));
        if (b.u.l->n) memcpy(l->v + a.u.l->n, b.u.l->v, b.u.l->n * sizeof(jv));
        *out = v_list(l, a.sub);
        return SIM_OK;
    }
    if (op == OP_MUL && (a.k == V_STR || IS_PLAIN(a)) && is_intlike(b)) return jn_repeat(r, a, as_int(b), out);
    if (op == OP_MUL && (b.k == V_STR || IS_PLAIN(b)) && is_intlike(a)) return jn_repeat(r, b, as_int(a), out);
    if (op == OP_ADD && (a.k == V_STR || IS_PLAIN(a)))
        return jn_rerr(r, SIM_ERR_FORMAT, "can only concatenate %s (not \"%s\") to %s", tname(a), tname(b), tname(a));
    if (op == OP_MUL && (a.k == V_STR || IS_PLAIN(a) || b.k == V_STR || IS_PLAIN(b)))
        return jn_rerr(r, SIM_ERR_FORMAT, "can't multiply sequence by non-int of type '%s'",
                       tname(a.k == V_STR || IS_PLAIN(a) ? b : a));
    return type_err(r, sym[op], a, b);
}

static int contains(R *r, jv item, jv seq, bool *out) {
    switch (seq.k) {
    case V_STR:
        if (item.k != V_STR) {
            if (item.k == V_UNDEF) return jn_rerr(r, SIM_ERR_FORMAT, "'in <string>' requires string as left operand, not Undefined");
            return jn_rerr(r, SIM_ERR_FORMAT, "'in <string>' requires string as left operand, not %s", tname(item));
        }
        *out = item.n == 0 || memmem(seq.u.s, seq.n, item.u.s, item.n) != NULL;
        return SIM_OK;
    case V_LIST: {
        jlist *l = seq.u.l;
        size_t i = IS_ITER(seq) ? l->cur : 0;
        if (l->broken) return jn_rerr(r, SIM_ERR_FORMAT, "%s", l->broken);
        *out = false;
        TRY(jn_step(r, l->n / 8));
        for (; i < l->n && !*out; i++) *out = jn_py_eq(item, l->v[i], 0);
        if (IS_ITER(seq)) l->cur = i; // an iterator is consumed up to the match
        return SIM_OK;
    }
    case V_DICT: {
        uint64_t h;
        if (jn_key_hash(item, &h, 0)) return jn_rerr(r, SIM_ERR_FORMAT, "unhashable type: '%s'", tname(item));
        *out = jn_dict_find(seq.u.d, item) >= 0;
        return SIM_OK;
    }
    case V_UNDEF: *out = false; return SIM_OK;
    default: return jn_rerr(r, SIM_ERR_FORMAT, "argument of type '%s' is not iterable", tname(seq));
    }
}

int jn_compare(R *r, int op, jv a, jv b, bool *out) {
    int c;
    switch (op) {
    case OP_EQ: *out = jn_py_eq(a, b, 0); return SIM_OK;
    case OP_NE: *out = !jn_py_eq(a, b, 0); return SIM_OK;
    case OP_IN: return contains(r, a, b, out);
    case OP_NOTIN: TRY(contains(r, a, b, out)); *out = !*out; return SIM_OK;
    default:
        TRY(jn_py_cmp(r, a, b, jn_op_text[op], &c, 0));
        *out = op == OP_LT ? c == -1 : op == OP_LE ? (c == -1 || c == 0) : op == OP_GT ? c == 1 : (c == 1 || c == 0);
        return SIM_OK;
    }
}

// --- evaluation ------------------------------------------------------------------------------

static int eval_args(R *r, const jnode *e, jscope *sc, jargs *a) {
    jv *pos = e->l1.n ? ralloc(r, e->l1.n * sizeof *pos) : NULL;
    jv *kwv = e->l2.n ? ralloc(r, e->l2.n * sizeof *kwv) : NULL;
    jstr *kwn = e->l2.n ? ralloc(r, e->l2.n * sizeof *kwn) : NULL;
    if ((e->l1.n && !pos) || (e->l2.n && (!kwv || !kwn))) return jn_r_nomem(r);
    for (uint32_t i = 0; i < e->l1.n; i++) TRY(jn_eval(r, e->l1.v[i], sc, &pos[i]));
    for (uint32_t i = 0; i < e->l2.n; i++) {
        kwn[i] = e->l2.v[i]->name;
        TRY(jn_eval(r, e->l2.v[i]->a, sc, &kwv[i]));
    }
    *a = (jargs){pos, e->l1.n, kwn, kwv, e->l2.n};
    return SIM_OK;
}

// jinja2's Macro.__call__: positional arguments, then keywords for the rest;
// `caller`, `varargs` and `kwargs` exist only when the body names them.
static int call_macro(R *r, const jfunc *f, const jargs *a, jv *out) {
    const jnode *m = f->node; // S_MACRO or S_CALLBLOCK: parameters in l2, body in l1, MF_* in op
    jscope *sc = scope_new(r, f->closure);
    if (!sc) return jn_r_nomem(r);
    TRY(predeclare(r, sc, m->undef, m->nundef));
    int nm = (int)MIN(f->name.n, 60);
    size_t np = m->l2.n, given = MIN(a->npos, np);
    bool *used = a->nkw ? ralloc(r, a->nkw) : NULL;
    if (a->nkw && !used) return jn_r_nomem(r);
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
            if (m->l2.v[i]->a) TRY(jn_eval(r, m->l2.v[i]->a, sc, &v));
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
        jdict *d = jn_dict_new(r);
        if (!d) return jn_r_nomem(r);
        for (size_t k = 0; k < a->nkw; k++)
            if (!used[k]) TRY(jn_dict_set(r, d, v_str(a->kwn[k].s, a->kwn[k].n), a->kwv[k]));
        TRY(scope_set(r, sc, "kwargs", 6, (jv){.k = V_DICT, .u.d = d}));
    } else {
        for (size_t k = 0; k < a->nkw; k++) {
            if (used[k]) continue;
            if (str_is(a->kwn[k].s, a->kwn[k].n, "caller"))
                return jn_rerr(r, SIM_ERR_FORMAT,
                               "macro '%.*s' was invoked with two values for the special caller argument. This is most "
                               "likely a bug.",
                               nm, f->name.s);
            return jn_rerr(r, SIM_ERR_FORMAT, "macro '%.*s' takes no keyword argument '%.*s'", nm, f->name.s,
                           (int)MIN(a->kwn[k].n, 60), a->kwn[k].s);
        }
    }
    if (m->op & MF_VARARGS) {
        jlist *l = jn_list_new(r, a->npos - given);
        if (!l) return jn_r_nomem(r);
        for (size_t i = given; i < a->npos; i++) l->v[i - given] = a->pos[i];
        TRY(scope_set(r, sc, "varargs", 7, v_list(l, SUB_TUPLE)));
    } else if (a->npos > np) {
        return jn_rerr(r, SIM_ERR_FORMAT, "macro '%.*s' takes not more than %zu argument(s)", nm, f->name.s, np);
    }
    sink s = {0}, *saved = r->out;
    r->out = &s;
    int st = jn_exec_body(r, &m->l1, sc);
    r->out = saved;
    if (st < 0) return st;
    *out = sk_value(&s);
    return SIM_OK;
}

static int call_value(R *r, jv f, const jargs *a, jv *out) {
    if (f.k == V_UNDEF) return jn_undef_err(r, f);
    if (f.k != V_FUNC) return jn_rerr(r, SIM_ERR_FORMAT, "'%s' object is not callable", tname(f));
    switch (f.u.fn->kind) {
    case F_GLOBAL: return jn_call_global(r, f.u.fn->id, a, out);
    case F_METHOD: return jn_call_method(r, f.u.fn, a, out);
    default: return call_macro(r, f.u.fn, a, out);
    }
}

// Values jinja2's optimizer keeps as constants (compiler.has_safe_repr);
// *size adds up their bytes.
bool jn_safe_const(jv v, int depth, size_t *size) {
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
            if (!jn_safe_const(v.u.l->v[i], depth + 1, size)) return false;
        return true;
    case V_DICT:
        for (size_t i = 0; i < v.u.d->n; i++)
            if (!jn_safe_const(v.u.d->key[i], depth + 1, size) || !jn_safe_const(v.u.d->val[i], depth + 1, size)) return false;
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
        jlist *l = jn_list_new(r, e->l1.n);
        if (!l) return jn_r_nomem(r);
        for (uint32_t i = 0; i < e->l1.n; i++) TRY(jn_eval(r, e->l1.v[i], sc, &l->v[i]));
        *out = v_list(l, e->kind == E_TUPLE ? SUB_TUPLE : SUB_LIST);
        return SIM_OK;
    }
    case E_DICT: {
        jdict *d = jn_dict_new(r);
        if (!d) return jn_r_nomem(r);
        for (uint32_t i = 0; i < e->l1.n; i++) {
            TRY(jn_eval(r, e->l1.v[i], sc, &a));
            TRY(jn_eval(r, e->l2.v[i], sc, &b));
            r->pos = e->pos;
            TRY(jn_dict_set(r, d, a, b));
        }
        *out = (jv){.k = V_DICT, .u.d = d};
        return SIM_OK;
    }
    case E_ATTR:
        TRY(jn_eval(r, e->a, sc, &a));
        return jn_get_attr(r, a, e->name.s, e->name.n, out);
    case E_ITEM:
        TRY(jn_eval(r, e->a, sc, &a));
        if (e->b->kind == E_SLICE) {
            jv x[3] = {v_none(), v_none(), v_none()};
            const jnode *p[3] = {e->b->a, e->b->b, e->b->c};
            for (int i = 0; i < 3; i++)
                if (p[i]) TRY(jn_eval(r, p[i], sc, &x[i]));
            return jn_get_slice(r, a, x[0], x[1], x[2], out);
        }
        TRY(jn_eval(r, e->b, sc, &b));
        return jn_get_item(r, a, b, out);
    case E_CALL: {
        jargs args;
        if (r->fold) return FOLD_IMPOSSIBLE; // the sandbox never calls at compile time
        TRY(jn_eval(r, e->a, sc, &a));
        TRY(eval_args(r, e, sc, &args));
        return call_value(r, a, &args, out);
    }
    case E_FILTER: {
        jargs args;
        static const char *const ctx_filters[] = {"select", "reject", "selectattr", "rejectattr", "map"};
        if (r->fold && jn_find_name(ctx_filters, ARRAY_LEN(ctx_filters), e->name.s, e->name.n) >= 0)
            return FOLD_IMPOSSIBLE; // filters that take the context run at run time
        TRY(jn_eval(r, e->a, sc, &a));
        TRY(eval_args(r, e, sc, &args));
        return jn_call_filter(r, e->name, a, &args, out);
    }
    case E_TEST: {
        jargs args;
        bool res = false;
        TRY(jn_eval(r, e->a, sc, &a));
        TRY(eval_args(r, e, sc, &args));
        TRY(jn_call_test(r, e->name, a, &args, &res));
        *out = v_bool(e->op ? !res : res);
        return SIM_OK;
    }
    case E_NOT:
        TRY(jn_eval(r, e->a, sc, &a));
        *out = v_bool(!truthy(a));
        return SIM_OK;
    case E_NEG:
    case E_POS:
        TRY(jn_eval(r, e->a, sc, &a));
        if (a.k == V_UNDEF) return jn_undef_err(r, a);
        if (a.k == V_FLOAT) *out = v_float(e->kind == E_NEG ? -a.u.f : a.u.f);
        else if (is_intlike(a)) {
            if (e->kind == E_NEG && as_int(a) == INT64_MIN) return overflow(r);
            *out = v_int(e->kind == E_NEG ? -as_int(a) : as_int(a));
        } else return jn_rerr(r, SIM_ERR_FORMAT, "bad operand type for unary %c: '%s'", e->kind == E_NEG ? '-' : '+', tname(a));
        return SIM_OK;
    case E_BIN:
        TRY(jn_eval(r, e->a, sc, &a));
        TRY(jn_eval(r, e->b, sc, &b));
        r->pos = e->pos;
        if (e->negbase && is_num(a) && as_f(a) < 0) {
            // jinja2 emits a folded negative base without parentheses: `-3 ** x` runs as -(3 ** x)
            TRY(jn_binop(r, OP_POW, a.k == V_FLOAT ? v_float(-a.u.f) : v_int(-as_int(a)), b, &a));
            return jn_binop(r, OP_SUB, v_int(0), a, out);
        }
        return jn_binop(r, e->op, a, b, out);
    case E_AND:
    case E_OR:
        TRY(jn_eval(r, e->a, sc, &a));
        if (truthy(a) == (e->kind == E_OR)) {
            *out = a;
            return SIM_OK;
        }
        return jn_eval(r, e->b, sc, out);
    case E_CONCAT: {
        sink s = {0};
        for (uint32_t i = 0; i < e->l1.n; i++) {
            TRY(jn_eval(r, e->l1.v[i], sc, &a));
            if (a.k == V_STR) TRY(jn_sk_put(r, &s, a.u.s, a.n));
            else TRY(jn_v_write(r, &s, a, false, 0));
        }
        *out = sk_value(&s);
        return SIM_OK;
    }
    case E_CMP: {
        TRY(jn_eval(r, e->a, sc, &a));
        for (uint32_t i = 0; i < e->l1.n; i++) {
            bool res = false;
            TRY(jn_eval(r, e->l1.v[i]->a, sc, &b));
            r->pos = e->l1.v[i]->pos;
            TRY(jn_compare(r, e->l1.v[i]->op, a, b, &res));
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
        TRY(jn_eval(r, e->b, sc, &a));
        if (truthy(a)) return jn_eval(r, e->a, sc, out);
        if (e->c) return jn_eval(r, e->c, sc, out);
        *out = v_undef();
        return SIM_OK;
    default: return jn_rerr(r, SIM_ERR_FORMAT, "internal error: node %d is not an expression", e->kind);
    }
}

int jn_eval(R *r, const jnode *e, jscope *sc, jv *out) {
    if (r->depth >= JINJA_MAX_DEPTH)
        return jn_rerr(r, SIM_ERR_RANGE, "the template nests too deeply (more than %d levels)", JINJA_MAX_DEPTH);
    uint32_t saved = r->pos;
    r->pos = e->pos;
    TRY(jn_step(r, 1));
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
        if (ns.k != V_NS) return jn_rerr(r, SIM_ERR_FORMAT, "cannot assign attribute on non-namespace object");
        return jn_dict_set(r, ns.u.d, v_str(t->name.s, t->name.n), v);
    }
    const jlist *items; // tuple unpacking
    TRY(jn_iterate(r, v, &items));
    if (items->n < t->l1.n)
        return jn_rerr(r, SIM_ERR_FORMAT, "not enough values to unpack (expected %u, got %zu)", t->l1.n, items->n);
    if (items->n > t->l1.n) return jn_rerr(r, SIM_ERR_FORMAT, "too many values to unpack (expected %u)", t->l1.n);
    for (uint32_t i = 0; i < t->l1.n; i++) TRY(assign(r, t->l1.v[i], items->v[i], sc));
    return SIM_OK;
}

// Renders a block's body (l1) into a new string, in a frame of its own.
static int capture(R *r, const jnode *blk, jscope *sc, jv *out) {
    const nlist *body = &blk->l1;
    jscope *inner = scope_new(r, sc);
    if (!inner) return jn_r_nomem(r);
    TRY(predeclare(r, inner, blk->undef, blk->nundef));
    sink s = {0}, *saved = r->out;
    r->out = &s;
    int st = jn_exec_body(r, body, inner);
    r->out = saved;
    if (st < 0) return st;
    *out = sk_value(&s);
    return SIM_OK;
}

static int filter_captured(R *r, const jnode *chain, jscope *sc, jv *v) {
    if (!chain) return SIM_OK;
    jv saved = r->captured;
    r->captured = *v;
    int st = jn_eval(r, chain, sc, v);
    r->captured = saved;
    return st;
}

static int exec_for(R *r, const jnode *s, jscope *sc) {
    jv it;
    const jlist *items;
    TRY(jn_eval(r, s->b, sc, &it));
    TRY(jn_iterate(r, it, &items));
    jscope *inner = scope_new(r, sc);
    if (!inner) return jn_r_nomem(r);
    if (s->c) { // the `if` filter decides which items the loop sees (loop.length counts those)
        lvec kept = {0};
        for (size_t i = 0; i < items->n; i++) {
            jv keep;
            TRY(jn_step(r, 1));
            inner->n = 0;
            TRY(assign(r, s->a, items->v[i], inner));
            TRY(jn_eval(r, s->c, inner, &keep));
            if (truthy(keep)) TRY(jn_lv_push(r, &kept, items->v[i]));
        }
        jlist *l = ralloc(r, sizeof *l);
        if (!l) return jn_r_nomem(r);
        *l = (jlist){.v = kept.v, .n = kept.n};
        items = l;
    }
    jloop *lp = ralloc(r, sizeof *lp);
    if (!lp) return jn_r_nomem(r);
    *lp = (jloop){.items = items, .depth = 1};
    bool completed = false; // jinja2 runs `else` unless a turn reached the end of the body
    for (size_t i = 0; i < items->n; i++) {
        TRY(jn_step(r, 1));
        lp->i = i;
        inner->n = 0; // each turn starts from the enclosing scope's values
        TRY(predeclare(r, inner, s->undef, s->nundef));
        TRY(assign(r, s->a, items->v[i], inner));
        TRY(scope_set(r, inner, "loop", 4, (jv){.k = V_LOOP, .u.lp = lp}));
        int st = jn_exec_body(r, &s->l1, inner);
        if (st == CTL_BREAK) break;
        if (st < 0) return st;
        completed |= st == SIM_OK;
    }
    if (completed || !s->l2.n) return SIM_OK;
    jscope *els = scope_new(r, sc);
    if (!els) return jn_r_nomem(r);
    TRY(predeclare(r, els, s->undef2, s->nundef2));
    return jn_exec_body(r, &s->l2, els);
}

static int exec(R *r, const jnode *s, jscope *sc) {
    if (r->depth >= JINJA_MAX_DEPTH)
        return jn_rerr(r, SIM_ERR_RANGE, "the template nests too deeply (more than %d levels)", JINJA_MAX_DEPTH);
    r->pos = s->pos;
    TRY(jn_step(r, 1));
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
        st = jn_sk_put(r, r->out, t + b, e - b);
        break;
    }
    case S_OUT:
        st = jn_eval(r, s->a, sc, &v);
        if (st == SIM_OK) st = v.k == V_STR ? jn_sk_put(r, r->out, v.u.s, v.n) : jn_v_write(r, r->out, v, false, 0);
        break;
    case S_IF:
        st = jn_eval(r, s->a, sc, &v);
        if (st == SIM_OK) st = jn_exec_body(r, truthy(v) ? &s->l1 : &s->l2, sc);
        break;
    case S_FOR: st = exec_for(r, s, sc); break;
    case S_SET:
        st = jn_eval(r, s->b, sc, &v);
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
        if (st == SIM_OK) st = v.k == V_STR ? jn_sk_put(r, r->out, v.u.s, v.n) : jn_v_write(r, r->out, v, false, 0);
        break;
    case S_MACRO: {
        jfunc *f = ralloc(r, sizeof *f);
        if (!f) {
            st = jn_r_nomem(r);
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
            st = jn_r_nomem(r);
            break;
        }
        *caller = (jfunc){.kind = F_CALLER, .node = s, .closure = sc, .name = {"caller", 6}};
        if ((st = jn_eval(r, call->a, sc, &fn)) != SIM_OK || (st = eval_args(r, call, sc, &a)) != SIM_OK) break;
        jv *kwv = ralloc(r, (a.nkw + 1) * sizeof *kwv);
        jstr *kwn = ralloc(r, (a.nkw + 1) * sizeof *kwn);
        if (!kwv || !kwn) {
            st = jn_r_nomem(r);
            break;
        }
        if (a.nkw) memcpy(kwv, a.kwv, a.nkw * sizeof *kwv), memcpy(kwn, a.kwn, a.nkw * sizeof *kwn);
        kwv[a.nkw] = (jv){.k = V_FUNC, .u.fn = caller};
        kwn[a.nkw] = (jstr){"caller", 6};
        a.kwv = kwv;
        a.kwn = kwn;
        a.nkw++;
        st = call_value(r, fn, &a, &v);
        if (st == SIM_OK) st = v.k == V_STR ? jn_sk_put(r, r->out, v.u.s, v.n) : jn_v_write(r, r->out, v, false, 0);
        break;
    }
    case S_WITH: {
        jscope *inner = scope_new(r, sc);
        if (!inner) {
            st = jn_r_nomem(r);
            break;
        }
        st = predeclare(r, inner, s->undef, s->nundef);
        for (uint32_t i = 0; i < s->l2.n && st == SIM_OK; i++) {
            st = jn_eval(r, s->l2.v[i]->b, sc, &v);
            if (st == SIM_OK) st = assign(r, s->l2.v[i]->a, v, inner);
        }
        if (st == SIM_OK) st = jn_exec_body(r, &s->l1, inner);
        break;
    }
    case S_BODY: { // HF's generation block: a call block, so a frame of its own
        jscope *inner = scope_new(r, sc);
        st = inner ? predeclare(r, inner, s->undef, s->nundef) : jn_r_nomem(r);
        if (st == SIM_OK) st = jn_exec_body(r, &s->l1, inner);
        break;
    }
    case S_BREAK: st = CTL_BREAK; break;
    case S_CONTINUE: st = CTL_CONTINUE; break;
    default: st = jn_rerr(r, SIM_ERR_FORMAT, "internal error: node %d is not a statement", s->kind);
    }
    r->depth--;
    return st;
}

int jn_exec_body(R *r, const nlist *body, jscope *sc) {
    for (uint32_t i = 0; i < body->n; i++) {
        int st = exec(r, body->v[i], sc);
        if (st != SIM_OK) return st;
    }
    return SIM_OK;
}

// --- public API ------------------------------------------------------------------------------------

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
    if (!(r.ctxs = scope_new(&r, NULL)) || !(top = scope_new(&r, r.ctxs))) st = jn_r_nomem(&r);
    if (st == SIM_OK) st = predeclare(&r, top, t->root->undef, t->root->nundef);
    if (st == SIM_OK) st = jn_exec_body(&r, &t->root->l1, top);
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
    jn_ar_free_all(&r.a);
    return st > 0 ? SIM_OK : st;
}
