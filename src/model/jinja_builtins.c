// jinja_builtins.c — what templates can call (part of model/jinja; see jinja_internal.h): the
// builtin tables, string functions and case mapping, methods of str/dict/list/loop, the
// globals, Python's % formatting, filters and tests.
#include "model/jinja_internal.h"

#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

// --- builtin tables (the functions are defined further down) -------------------------------

const char *const jn_global_names[G_COUNT] = {"range", "namespace", "dict", "raise_exception", "strftime_now"};

const char *const jn_method_names[] = {
    "strip", "lstrip", "rstrip", "upper", "lower", "title", "capitalize", "swapcase", "startswith", "endswith",
    "split", "rsplit", "splitlines", "replace", "find", "rfind", "count", "index", "join", "isalpha", "isdigit",
    "isalnum", "isspace", "islower", "isupper", "center", "ljust", "rjust", "zfill", "format",
    "get", "items", "keys", "values", "copy",
    "count", "index",
    "cycle", "changed"};
const char *const jn_dict_unsafe[] = {"pop", "popitem", "setdefault", "update", "clear", NULL};
const char *const jn_list_unsafe[] = {"append", "extend", "insert", "pop", "remove", "reverse", "sort", "clear", NULL};

int jn_make_func(R *r, int kind, int id, jv self, const char *name, jv *out) {
    jfunc *f = ralloc(r, sizeof *f);
    if (!f) return jn_r_nomem(r);
    *f = (jfunc){.kind = (uint8_t)kind, .id = (uint8_t)id, .self = self, .name = {name, strlen(name)}};
    *out = (jv){.k = V_FUNC, .u.fn = f};
    return SIM_OK;
}

// --- argument helpers ------------------------------------------------------------------------

// Python's argument binding: positional, then keywords by name.
static int bind(R *r, const char *fname, const jargs *a, const char *const *names, int n, jv *vals, bool *have) {
    for (int i = 0; i < n; i++) have[i] = false, vals[i] = v_none();
    if (a->npos > (size_t)n)
        return jn_rerr(r, SIM_ERR_FORMAT, "%s() takes at most %d argument(s) (%zu given)", fname, n, a->npos);
    for (size_t i = 0; i < a->npos; i++) vals[i] = a->pos[i], have[i] = true;
    for (size_t k = 0; k < a->nkw; k++) {
        int i = jn_find_name(names, (size_t)n, a->kwn[k].s, a->kwn[k].n);
        if (i < 0)
            return jn_rerr(r, SIM_ERR_FORMAT, "%s() got an unexpected keyword argument '%.*s'", fname,
                           (int)MIN(a->kwn[k].n, 60), a->kwn[k].s);
        if (have[i]) return jn_rerr(r, SIM_ERR_FORMAT, "%s() got multiple values for argument '%s'", fname, names[i]);
        vals[i] = a->kwv[k];
        have[i] = true;
    }
    return SIM_OK;
}

static int need_str(R *r, const char *fname, jv v) {
    if (v.k == V_STR) return SIM_OK;
    if (v.k == V_UNDEF) return jn_undef_err(r, v);
    return jn_rerr(r, SIM_ERR_FORMAT, "%s() argument must be str, not %s", fname, tname(v));
}

static int need_int(R *r, const char *fname, jv v, int64_t *out) {
    if (is_intlike(v)) {
        *out = as_int(v);
        return SIM_OK;
    }
    if (v.k == V_UNDEF) return jn_undef_err(r, v);
    return jn_rerr(r, SIM_ERR_FORMAT, "%s(): '%s' object cannot be interpreted as an integer", fname, tname(v));
}

static int no_args(R *r, const char *fname, const jargs *a) {
    if (a->npos || a->nkw) return jn_rerr(r, SIM_ERR_FORMAT, "%s() takes no arguments", fname);
    return SIM_OK;
}

// --- case mapping -----------------------------------------------------------------------------

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
    return c >= 0x370 && !jn_py_isspace(c) && !(c >= 0x2000 && c <= 0x2bff) && !(c >= 0x3000 && c <= 0x303f) &&
           !(c >= 0xff00 && c <= 0xff20) && !(c >= 0xfe30 && c <= 0xfe4f) && !(c >= 0x1f000 && c <= 0x1faff);
}

// --- strings ----------------------------------------------------------------------------------

enum { CASE_UPPER, CASE_LOWER, CASE_CAPITALIZE, CASE_TITLE, CASE_JTITLE, CASE_SWAP };

static int change_case(R *r, jv s, int mode, jv *out) {
    sink o = {0};
    bool prev_cased = false, word_start = true;
    for (size_t i = 0, k = 0; i < s.n; k++) {
        uint32_t c = jn_u8_next(s.u.s, s.n, &i), m;
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
        word_start = c == '-' || c == '(' || c == '{' || c == '[' || c == '<' || jn_py_isspace(c);
    }
    *out = sk_value(&o);
    return SIM_OK;
}

static bool in_chars(uint32_t c, const jv *chars) {
    if (!chars) return jn_py_isspace(c);
    for (size_t i = 0; i < chars->n;)
        if (jn_u8_next(chars->u.s, chars->n, &i) == c) return true;
    return false;
}

static jv strip(jv s, const jv *chars, bool left, bool right) {
    size_t b = 0, e = s.n;
    while (left && b < e) {
        size_t j = b;
        if (!in_chars(jn_u8_next(s.u.s, e, &j), chars)) break;
        b = j;
    }
    while (right && e > b) {
        size_t j = jn_u8_prev(s.u.s, e), k = j;
        if (!in_chars(jn_u8_next(s.u.s, e, &k), chars)) break;
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
    if (sep && sep->n == 0) return jn_rerr(r, SIM_ERR_FORMAT, "empty separator");
    if (!from_right) {
        size_t i = 0;
        if (!sep) {
            for (;;) {
                i += jn_ws_span(p + i, n - i);
                if (i >= n) break;
                if (maxsplit >= 0 && (int64_t)parts.n >= maxsplit) {
                    TRY(jn_lv_push(r, &parts, v_str(p + i, n - i)));
                    break;
                }
                size_t j = i;
                while (j < n) {
                    size_t k = j;
                    if (jn_py_isspace(jn_u8_next(p, n, &k))) break;
                    j = k;
                }
                TRY(jn_lv_push(r, &parts, v_str(p + i, j - i)));
                i = j;
            }
        } else {
            for (;;) {
                const char *f = maxsplit >= 0 && (int64_t)parts.n >= maxsplit ? NULL : find_sub(p + i, n - i, sep->u.s, sep->n);
                if (!f) {
                    TRY(jn_lv_push(r, &parts, v_str(p + i, n - i)));
                    break;
                }
                TRY(jn_lv_push(r, &parts, v_str(p + i, (size_t)(f - (p + i)))));
                i = (size_t)(f - p) + sep->n;
            }
        }
    } else { // collect from the right, then reverse
        size_t e = n;
        if (!sep) {
            for (;;) {
                e = jn_ws_rtrim(p, e);
                if (e == 0) break;
                if (maxsplit >= 0 && (int64_t)parts.n >= maxsplit) {
                    TRY(jn_lv_push(r, &parts, v_str(p, e)));
                    break;
                }
                size_t b = e;
                while (b > 0) {
                    size_t j = jn_u8_prev(p, b), k = j;
                    if (jn_py_isspace(jn_u8_next(p, b, &k))) break;
                    b = j;
                }
                TRY(jn_lv_push(r, &parts, v_str(p + b, e - b)));
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
                    TRY(jn_lv_push(r, &parts, v_str(p, e)));
                    break;
                }
                TRY(jn_lv_push(r, &parts, v_str(f + sep->n, (size_t)(p + e - f) - sep->n)));
                e = (size_t)(f - p);
            }
        }
        for (size_t i = 0; i < parts.n / 2; i++) {
            jv t = parts.v[i];
            parts.v[i] = parts.v[parts.n - 1 - i];
            parts.v[parts.n - 1 - i] = t;
        }
    }
    TRY(jn_step(r, parts.n / 8));
    return jn_lv_done(r, &parts, SUB_LIST, out);
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
        TRY(jn_lv_push(r, &parts, v_str(s.u.s + b, (keepends ? i + k : i) - b)));
        i += k;
        b = i;
    }
    if (b < s.n) TRY(jn_lv_push(r, &parts, v_str(s.u.s + b, s.n - b)));
    return jn_lv_done(r, &parts, SUB_LIST, out);
}

static int replace(R *r, jv s, jv old, jv new, int64_t count, jv *out) {
    sink o = {0};
    size_t i = 0;
    int64_t done = 0;
    if (old.n == 0) {
        while (count < 0 || done < count) {
            TRY(jn_sk_put(r, &o, new.u.s, new.n));
            done++;
            if (i >= s.n) break;
            size_t j = i;
            jn_u8_next(s.u.s, s.n, &j);
            TRY(jn_sk_put(r, &o, s.u.s + i, j - i));
            i = j;
        }
    } else {
        while (count < 0 || done < count) {
            const char *f = memmem(s.u.s + i, s.n - i, old.u.s, old.n);
            if (!f) break;
            TRY(jn_sk_put(r, &o, s.u.s + i, (size_t)(f - (s.u.s + i))));
            TRY(jn_sk_put(r, &o, new.u.s, new.n));
            i = (size_t)(f - s.u.s) + old.n;
            done++;
        }
    }
    TRY(jn_sk_put(r, &o, s.u.s + i, s.n - i));
    *out = sk_value(&o);
    return SIM_OK;
}

// s padded to width code points with fill: where 0 left, 1 right (ljust), 2 center.
static int pad(R *r, jv s, int64_t width, jv fill, int where, jv *out) {
    int64_t len = (int64_t)jn_u8_count(s.u.s, s.n);
    if (fill.k != V_STR || jn_u8_count(fill.u.s, fill.n) != 1)
        return jn_rerr(r, SIM_ERR_FORMAT, "The fill character must be exactly one character long");
    if (width <= len) {
        *out = s;
        return SIM_OK;
    }
    if (width - len > (int64_t)r->max_out) return jn_rerr(r, SIM_ERR_RANGE, "the output is longer than %zu bytes", r->max_out);
    int64_t marg = width - len, left = where == 0 ? marg : where == 1 ? 0 : marg / 2 + (marg & width & 1);
    sink o = {0};
    for (int64_t i = 0; i < left; i++) TRY(jn_sk_put(r, &o, fill.u.s, fill.n));
    TRY(jn_sk_put(r, &o, s.u.s, s.n));
    for (int64_t i = 0; i < marg - left; i++) TRY(jn_sk_put(r, &o, fill.u.s, fill.n));
    *out = sk_value(&o);
    return SIM_OK;
}

static int str_test(jv s, int which) { // isalpha isdigit isalnum isspace islower isupper
    if (s.n == 0) return 0;
    bool cased = false;
    for (size_t i = 0; i < s.n;) {
        uint32_t c = jn_u8_next(s.u.s, s.n, &i);
        switch (which) {
        case M_ISALPHA: if (!cp_is_alpha(c)) return 0; break;
        case M_ISDIGIT: if (!cp_is_digit(c)) return 0; break;
        case M_ISALNUM: if (!cp_is_alpha(c) && !cp_is_digit(c)) return 0; break;
        case M_ISSPACE: if (!jn_py_isspace(c)) return 0; break;
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
    else return jn_rerr(r, SIM_ERR_FORMAT, "%s first arg must be str or a tuple of str, not %s", end ? "endswith" : "startswith", tname(arg));
    *out = false;
    for (size_t i = 0; i < opts->n; i++) {
        jv p = opts->v[i];
        if (p.k != V_STR) return jn_rerr(r, SIM_ERR_FORMAT, "tuple for startswith must only contain str, not %s", tname(p));
        if (p.n <= s.n && !memcmp(s.u.s + (end ? s.n - p.n : 0), p.u.s, p.n)) *out = true;
    }
    return SIM_OK;
}

int jn_call_method(R *r, const jfunc *f, const jargs *a, jv *out) {
    jv s = f->self, v[3];
    bool h[3];
    const char *fname = jn_method_names[f->id];
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
        if (!h[0]) return jn_rerr(r, SIM_ERR_FORMAT, "%s() takes at least 1 argument (0 given)", fname);
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
        if (!h[0] || !h[1]) return jn_rerr(r, SIM_ERR_FORMAT, "replace() takes at least 2 arguments");
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
        if (!h[0]) return jn_rerr(r, SIM_ERR_FORMAT, "%s() takes at least 1 argument (0 given)", fname);
        TRY(need_str(r, fname, v[0]));
        jv sub = v[0];
        if (f->id == M_COUNT) {
            int64_t c = 0;
            if (sub.n == 0) c = (int64_t)jn_u8_count(s.u.s, s.n) + 1;
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
        if (!at && f->id == M_INDEX) return jn_rerr(r, SIM_ERR_FORMAT, "substring not found");
        *out = v_int(at ? (int64_t)jn_u8_count(s.u.s, (size_t)(at - s.u.s)) : -1);
        return SIM_OK;
    }
    case M_JOIN: {
        static const char *const p[] = {"iterable"};
        const jlist *items;
        TRY(bind(r, fname, a, p, 1, v, h));
        if (!h[0]) return jn_rerr(r, SIM_ERR_FORMAT, "join() takes exactly one argument (0 given)");
        TRY(jn_iterate(r, v[0], &items));
        sink o = {0};
        for (size_t i = 0; i < items->n; i++) {
            if (items->v[i].k != V_STR)
                return jn_rerr(r, SIM_ERR_FORMAT, "sequence item %zu: expected str instance, %s found", i, tname(items->v[i]));
            if (i) TRY(jn_sk_put(r, &o, s.u.s, s.n));
            TRY(jn_sk_put(r, &o, items->v[i].u.s, items->v[i].n));
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
        if (!h[0]) return jn_rerr(r, SIM_ERR_FORMAT, "%s() takes at least 1 argument (0 given)", fname);
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
        return jn_str_concat(r, sign, body, out);
    }
    case M_FORMAT: return jn_rerr(r, SIM_ERR_FORMAT, "str.format is not supported (use the format filter or %%)");
    case M_GET: {
        static const char *const p[] = {"key", "default"};
        TRY(bind(r, fname, a, p, 2, v, h));
        if (!h[0]) return jn_rerr(r, SIM_ERR_FORMAT, "get expected at least 1 argument, got 0");
        uint64_t hh;
        long e = jn_key_hash(v[0], &hh, 0) ? -1 : jn_dict_find(s.u.d, v[0]);
        if (jn_key_hash(v[0], &hh, 0)) return jn_rerr(r, SIM_ERR_FORMAT, "unhashable type: '%s'", tname(v[0]));
        *out = e >= 0 ? s.u.d->val[e] : v[1];
        return SIM_OK;
    }
    case M_ITEMS: {
        TRY(no_args(r, fname, a));
        jlist *l = jn_list_new(r, s.u.d->n);
        if (!l) return jn_r_nomem(r);
        for (size_t i = 0; i < s.u.d->n; i++) {
            jlist *pair = jn_list_new(r, 2);
            if (!pair) return jn_r_nomem(r);
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
        if (!l) return jn_r_nomem(r);
        *l = (jlist){.v = f->id == M_KEYS ? s.u.d->key : s.u.d->val, .n = s.u.d->n};
        *out = v_list(l, f->id == M_KEYS ? SUB_KEYS : SUB_VALUES);
        return SIM_OK;
    }
    case M_COPY: TRY(no_args(r, fname, a)); *out = s; return SIM_OK;
    case M_LCOUNT:
    case M_LINDEX: {
        static const char *const p[] = {"value"};
        TRY(bind(r, fname, a, p, 1, v, h));
        if (!h[0]) return jn_rerr(r, SIM_ERR_FORMAT, "%s() takes exactly one argument (0 given)", fname);
        int64_t c = 0;
        TRY(jn_step(r, s.u.l->n / 8));
        for (size_t i = 0; i < s.u.l->n; i++)
            if (jn_py_eq(s.u.l->v[i], v[0], 0)) {
                if (f->id == M_LINDEX) {
                    *out = v_int((int64_t)i);
                    return SIM_OK;
                }
                c++;
            }
        if (f->id == M_LINDEX) return jn_rerr(r, SIM_ERR_FORMAT, "value is not in list");
        *out = v_int(c);
        return SIM_OK;
    }
    case M_CYCLE:
        if (a->nkw) return jn_rerr(r, SIM_ERR_FORMAT, "cycle() takes no keyword arguments");
        if (!a->npos) return jn_rerr(r, SIM_ERR_FORMAT, "no items for cycling given");
        *out = a->pos[s.u.lp->i % a->npos];
        return SIM_OK;
    case M_CHANGED: {
        if (a->nkw) return jn_rerr(r, SIM_ERR_FORMAT, "changed() takes no keyword arguments");
        jlist *l = jn_list_new(r, a->npos);
        if (!l) return jn_r_nomem(r);
        if (a->npos) memcpy(l->v, a->pos, a->npos * sizeof(jv));
        jv cur = v_list(l, SUB_TUPLE);
        jloop *lp = s.u.lp;
        bool changed = !lp->changed_set || !jn_py_eq(lp->changed_last, cur, 0);
        lp->changed_set = true;
        lp->changed_last = cur;
        *out = v_bool(changed);
        return SIM_OK;
    }
    default: return jn_rerr(r, SIM_ERR_FORMAT, "internal error: method %d", f->id);
    }
}

// --- globals ------------------------------------------------------------------------------------

// dict(...) / namespace(...): one mapping or list of pairs, then keywords.
static int make_mapping(R *r, const char *fname, const jargs *a, jdict **out) {
    jdict *d = jn_dict_new(r);
    if (!d) return jn_r_nomem(r);
    if (a->npos > 1) return jn_rerr(r, SIM_ERR_FORMAT, "%s expected at most 1 argument, got %zu", fname, a->npos);
    if (a->npos == 1) {
        jv src = a->pos[0];
        if (src.k == V_DICT || src.k == V_NS) {
            for (size_t i = 0; i < src.u.d->n; i++) TRY(jn_dict_set(r, d, src.u.d->key[i], src.u.d->val[i]));
        } else {
            const jlist *items;
            TRY(jn_iterate(r, src, &items));
            for (size_t i = 0; i < items->n; i++) {
                const jlist *pair;
                TRY(jn_iterate(r, items->v[i], &pair));
                if (pair->n != 2)
                    return jn_rerr(r, SIM_ERR_FORMAT, "dictionary update sequence element #%zu has length %zu; 2 is required", i, pair->n);
                TRY(jn_dict_set(r, d, pair->v[0], pair->v[1]));
            }
        }
    }
    for (size_t k = 0; k < a->nkw; k++) TRY(jn_dict_set(r, d, v_str(a->kwn[k].s, a->kwn[k].n), a->kwv[k]));
    *out = d;
    return SIM_OK;
}

int jn_call_global(R *r, int id, const jargs *a, jv *out) {
    switch (id) {
    case G_RANGE: {
        int64_t x[3] = {0, 0, 1};
        if (a->nkw) return jn_rerr(r, SIM_ERR_FORMAT, "range() takes no keyword arguments");
        if (a->npos < 1 || a->npos > 3) return jn_rerr(r, SIM_ERR_FORMAT, "range expected 1 to 3 arguments, got %zu", a->npos);
        for (size_t i = 0; i < a->npos; i++) TRY(need_int(r, "range", a->pos[i], &x[a->npos == 1 ? 1 : i]));
        if (x[2] == 0) return jn_rerr(r, SIM_ERR_FORMAT, "range() arg 3 must not be zero");
        int64_t n = 0;
        if (x[2] > 0 && x[0] < x[1]) n = (int64_t)(((uint64_t)x[1] - (uint64_t)x[0] - 1) / (uint64_t)x[2] + 1);
        if (x[2] < 0 && x[0] > x[1]) n = (int64_t)(((uint64_t)x[0] - (uint64_t)x[1] - 1) / (uint64_t)(-(x[2] + 1) + 1) + 1);
        if (n > 100000 || n < 0)
            return jn_rerr(r, SIM_ERR_RANGE, "Range too big. The sandbox blocks ranges larger than MAX_RANGE (100000).");
        TRY(jn_step(r, (uint64_t)n / 8));
        jlist *l = jn_list_new(r, (size_t)n);
        if (!l) return jn_r_nomem(r);
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
        if (a->npos) TRY(jn_to_str(r, a->pos[0], &msg));
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
            return jn_rerr(r, SIM_ERR_FORMAT, "strftime_now: the format is too long");
        memcpy(fmt, v[0].u.s, v[0].n);
        fmt[v[0].n] = 0;
        size_t n = strftime(buf, sizeof buf, fmt, &r->now);
        char *s = ralloc(r, n + 1);
        if (!s) return jn_r_nomem(r);
        memcpy(s, buf, n);
        *out = v_str(s, n);
        return SIM_OK;
    }
    }
}

// --- Python's % formatting ------------------------------------------------------------------------

int jn_py_format(R *r, jv fmt, jv args, jv *out) {
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
        TRY(jn_sk_put(r, &o, s + i, run));
        i += run;
        if (i >= n) break;
        i++; // '%'
        jv val;
        bool have_val = false;
        if (i < n && s[i] == '(') {
            size_t e = i + 1;
            while (e < n && s[e] != ')') e++;
            if (e >= n) return jn_rerr(r, SIM_ERR_FORMAT, "incomplete format key");
            if (args.k == V_UNDEF) return jn_undef_err(r, args);
            if (!map) return jn_rerr(r, SIM_ERR_FORMAT, mapping ? "%s indices must be integers or slices, not str" : "format requires a mapping", tname(args));
            jv *x = jn_dict_get_s(map, s + i + 1, e - i - 1);
            if (!x) return jn_rerr(r, SIM_ERR_FORMAT, "format key '%.*s' not found", (int)MIN(e - i - 1, 60), s + i + 1);
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
                if (next >= pos->n) return jn_rerr(r, SIM_ERR_FORMAT, "not enough arguments for format string");
                TRY(need_int(r, "format", pos->v[next++], dst));
                i++;
            } else {
                while (i < n && s[i] >= '0' && s[i] <= '9') {
                    *dst = (*dst < 0 ? 0 : *dst) * 10 + (s[i++] - '0');
                    if (*dst > 100000) return jn_rerr(r, SIM_ERR_RANGE, "format width too large");
                }
            }
        }
        while (i < n && strchr("hlL", s[i]) && s[i]) i++;
        if (i >= n) return jn_rerr(r, SIM_ERR_FORMAT, "incomplete format");
        char conv = s[i++];
        if (conv == '%') {
            TRY(sk_putc(r, &o, '%'));
            continue;
        }
        if (!have_val) {
            if (mapping) val = args;
            else {
                if (next >= pos->n) return jn_rerr(r, SIM_ERR_FORMAT, "not enough arguments for format string");
                val = pos->v[next++];
            }
        }
        char cf[32], buf[512];
        jv text;
        switch (conv) {
        case 's':
        case 'r':
        case 'a': {
            if (conv == 's') TRY(jn_to_str(r, val, &text));
            else {
                sink t = {0};
                TRY(jn_v_write(r, &t, val, true, 0));
                text = sk_value(&t);
            }
            if (prec >= 0) text.n = jn_cp_offset(text.u.s, text.n, (size_t)prec);
            int64_t len = (int64_t)jn_u8_count(text.u.s, text.n);
            bool left = strchr(flags, '-') != NULL;
            if (!left)
                for (int64_t k = len; k < width; k++) TRY(sk_putc(r, &o, ' '));
            TRY(jn_sk_put(r, &o, text.u.s, text.n));
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
            else if (conv == 'c' && val.k == V_STR && jn_u8_count(val.u.s, val.n) == 1) {
                TRY(jn_sk_put(r, &o, val.u.s, val.n));
                continue;
            } else return jn_rerr(r, SIM_ERR_FORMAT, "%%%c format: a real number is required, not %s", conv, tname(val));
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
            if (!is_num(val)) return jn_rerr(r, SIM_ERR_FORMAT, "must be real number, not %s", tname(val));
            snprintf(cf, sizeof cf, "%%%s*.*%c", flags, conv);
            snprintf(buf, sizeof buf, cf, (int)MAX(width, 0), (int)(prec < 0 ? 6 : MIN(prec, 100)), as_f(val));
            TRY(sk_puts(r, &o, buf));
            continue;
        }
        default: return jn_rerr(r, SIM_ERR_FORMAT, "unsupported format character '%c'", conv);
        }
    }
    if (!mapping && next < pos->n) return jn_rerr(r, SIM_ERR_FORMAT, "not all arguments converted during string formatting");
    *out = sk_value(&o);
    return SIM_OK;
}

// --- filters --------------------------------------------------------------------------------------

typedef int (*filter_fn)(R *r, jv v, const jargs *a, jv *out);
typedef int (*test_fn)(R *r, jv v, const jargs *a, bool *out);

// jinja's make_attrgetter: "a.b.0" looked up part by part with getitem (digits are indexes).
static int attr_path(R *r, jv item, jv attr, jv *out) {
    if (attr.k != V_STR) return jn_get_item(r, item, attr, out);
    size_t b = 0;
    for (;;) {
        size_t e = b;
        while (e < attr.n && attr.u.s[e] != '.') e++;
        jv key = v_str(attr.u.s + b, e - b);
        bool digits = e > b;
        for (size_t i = b; i < e; i++) digits &= attr.u.s[i] >= '0' && attr.u.s[i] <= '9';
        if (digits && e - b < 18) key = v_int(strtoll(attr.u.s + b, NULL, 10));
        TRY(jn_get_item(r, item, key, &item));
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
        TRY(jn_lv_push(r, &parts, k));
        if (attr.k != V_STR || e >= attr.n) break;
        b = e + 1;
    }
    return jn_lv_done(r, &parts, SUB_LIST, out);
}

// A stable merge sort of idx[0..n) by keys (Python's sorted, reverse included).
static int msort(R *r, const jv *keys, size_t *idx, size_t *tmp, size_t n, bool rev) {
    if (n < 2) return SIM_OK;
    size_t m = n / 2, i = 0, j = m, k = 0;
    TRY(msort(r, keys, idx, tmp, m, rev));
    TRY(msort(r, keys, idx + m, tmp, n - m, rev));
    TRY(jn_step(r, n / 4));
    while (i < m && j < n) {
        int c;
        if (rev) TRY(jn_py_cmp(r, keys[idx[i]], keys[idx[j]], "<", &c, 0));
        else TRY(jn_py_cmp(r, keys[idx[j]], keys[idx[i]], "<", &c, 0));
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
    jlist *l = jn_list_new(r, n);
    if (!idx || !tmp || !l) return jn_r_nomem(r);
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
    TRY(jn_iterate(r, v, &items));
    jv *keys = ralloc(r, (items->n + 1) * sizeof *keys);
    if (!keys) return jn_r_nomem(r);
    for (size_t i = 0; i < items->n; i++) TRY(item_key(r, items->v[i], x[2], true, truthy(x[1]), &keys[i]));
    return sorted(r, items, keys, truthy(x[0]), out);
}

static int f_dictsort(R *r, jv v, const jargs *a, jv *out) {
    static const char *const p[] = {"case_sensitive", "by", "reverse"};
    jv x[3];
    bool h[3];
    TRY(bind(r, "dictsort", a, p, 3, x, h));
    if (v.k != V_DICT) return jn_rerr(r, SIM_ERR_FORMAT, "dictsort: '%s' object has no attribute 'items'", tname(v));
    int by = 0;
    if (h[1]) {
        if (x[1].k == V_STR && str_is(x[1].u.s, x[1].n, "value")) by = 1;
        else if (!(x[1].k == V_STR && str_is(x[1].u.s, x[1].n, "key")))
            return jn_rerr(r, SIM_ERR_FORMAT, "You can only sort by either 'key' or 'value'");
    }
    size_t n = v.u.d->n;
    jlist *items = jn_list_new(r, n);
    jv *keys = ralloc(r, (n + 1) * sizeof *keys);
    if (!items || !keys) return jn_r_nomem(r);
    for (size_t i = 0; i < n; i++) {
        jlist *pair = jn_list_new(r, 2);
        if (!pair) return jn_r_nomem(r);
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
    TRY(jn_iterate(r, v, &items));
    jdict *seen = jn_dict_new(r);
    lvec o = {0};
    if (!seen) return jn_r_nomem(r);
    for (size_t i = 0; i < items->n; i++) {
        jv k;
        TRY(item_key(r, items->v[i], x[1], false, truthy(x[0]), &k));
        uint64_t hh;
        if (jn_key_hash(k, &hh, 0)) return jn_rerr(r, SIM_ERR_FORMAT, "unhashable type: '%s'", tname(k));
        if (jn_dict_find(seen, k) >= 0) continue;
        TRY(jn_dict_set(r, seen, k, v_none()));
        TRY(jn_lv_push(r, &o, items->v[i]));
    }
    return jn_lv_done(r, &o, SUB_GEN, out);
}

static int min_max(R *r, jv v, const jargs *a, bool max, jv *out) {
    static const char *const p[] = {"case_sensitive", "attribute"};
    jv x[2];
    bool h[2];
    const jlist *items;
    TRY(bind(r, max ? "max" : "min", a, p, 2, x, h));
    TRY(jn_iterate(r, v, &items));
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
        TRY(jn_py_cmp(r, k, bk, max ? ">" : "<", &c, 0));
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
    TRY(jn_iterate(r, v, &items));
    jv acc = h[1] ? x[1] : v_int(0);
    for (size_t i = 0; i < items->n; i++) {
        jv it = items->v[i];
        if (h[0] && x[0].k != V_NONE) TRY(attr_path(r, it, x[0], &it));
        TRY(jn_binop(r, OP_ADD, acc, it, &acc));
    }
    *out = acc;
    return SIM_OK;
}

static int f_first(R *r, jv v, const jargs *a, jv *out) {
    const jlist *items;
    TRY(no_args(r, "first", a));
    if (v.k == V_LIST && v.u.l->broken) return jn_rerr(r, SIM_ERR_FORMAT, "%s", v.u.l->broken);
    if (IS_ITER(v)) { // next() takes one item
        *out = v.u.l->cur < v.u.l->n ? v.u.l->v[v.u.l->cur++] : v_undef();
        return SIM_OK;
    }
    TRY(jn_iterate(r, v, &items));
    *out = items->n ? items->v[0] : v_undef();
    return SIM_OK;
}

static int f_last(R *r, jv v, const jargs *a, jv *out) {
    const jlist *items;
    TRY(no_args(r, "last", a));
    if (IS_ITER(v)) return jn_rerr(r, SIM_ERR_FORMAT, "'%s' object is not reversible", tname(v));
    TRY(jn_iterate(r, v, &items));
    *out = items->n ? items->v[items->n - 1] : v_undef();
    return SIM_OK;
}

static int f_length(R *r, jv v, const jargs *a, jv *out) {
    int64_t n = 0;
    TRY(no_args(r, "length", a));
    TRY(jn_length_of(r, v, &n));
    *out = v_int(n);
    return SIM_OK;
}

static int f_list(R *r, jv v, const jargs *a, jv *out) {
    const jlist *items;
    TRY(no_args(r, "list", a));
    TRY(jn_iterate(r, v, &items));
    jlist *l = jn_list_new(r, items->n);
    if (!l) return jn_r_nomem(r);
    if (items->n) memcpy(l->v, items->v, items->n * sizeof(jv));
    *out = v_list(l, SUB_LIST);
    return SIM_OK;
}

static int gen_items(R *r, jv v, const jargs *a, jv *out) {
    TRY(no_args(r, "items", a));
    if (v.k == V_UNDEF) {
        jlist *l = jn_list_new(r, 0);
        if (!l) return jn_r_nomem(r);
        *out = v_list(l, SUB_GEN);
        return SIM_OK;
    }
    if (v.k != V_DICT) return jn_rerr(r, SIM_ERR_FORMAT, "Can only get item pairs from a mapping.");
    jfunc f = {.kind = F_METHOD, .id = M_ITEMS, .self = v};
    jargs none = {0};
    TRY(jn_call_method(r, &f, &none, out));
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
    if (h[0]) TRY(jn_to_str(r, x[0], &sep));
    TRY(jn_iterate(r, v, &items));
    sink o = {0};
    for (size_t i = 0; i < items->n; i++) {
        jv it = items->v[i];
        if (h[1] && x[1].k != V_NONE) TRY(attr_path(r, it, x[1], &it));
        if (i) TRY(jn_sk_put(r, &o, sep.u.s, sep.n));
        TRY(jn_v_write(r, &o, it, false, 0));
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
    TRY(jn_to_str(r, v, &v));
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
    TRY(jn_to_str(r, v, &v));
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
    if (!h[0] || !h[1]) return jn_rerr(r, SIM_ERR_FORMAT, "replace() missing required arguments");
    TRY(jn_to_str(r, v, &v));
    TRY(jn_to_str(r, x[0], &x[0]));
    TRY(jn_to_str(r, x[1], &x[1]));
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
    TRY(jn_to_str(r, v, &v));
    return pad(r, v, w, v_lit(" "), 2, out);
}

static int f_string(R *r, jv v, const jargs *a, jv *out) {
    TRY(no_args(r, "string", a));
    return jn_to_str(r, v, out);
}

static int f_safe(R *r, jv v, const jargs *a, jv *out) {
    TRY(no_args(r, "safe", a));
    return jn_to_str(r, v, out);
}

static int f_escape(R *r, jv v, const jargs *a, jv *out) {
    TRY(no_args(r, "escape", a));
    TRY(jn_to_str(r, v, &v));
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
        TRY(jn_sk_put(r, &o, v.u.s + run, i - run));
        TRY(sk_puts(r, &o, e));
        run = i + 1;
    }
    TRY(jn_sk_put(r, &o, v.u.s + run, v.n - run));
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
        TRY(jn_repeat(r, v_lit(" "), w, &ind));
    }
    if (v.k == V_UNDEF) return jn_undef_err(r, v);
    if (v.k != V_STR) return jn_rerr(r, SIM_ERR_FORMAT, "unsupported operand type(s) for +=: '%s' and 'str'", tname(v));
    jv lines;
    // jinja2 splits s + "\n": the lines of s, and an empty one after a final line break
    TRY(splitlines(r, v, false, &lines));
    jlist *ls = lines.u.l;
    if (v.n == 0 || (v.u.s[v.n - 1] != '\r' && line_break(v.u.s, v.n, jn_u8_prev(v.u.s, v.n)))) {
        jlist *l = jn_list_new(r, ls->n + 1);
        if (!l) return jn_r_nomem(r);
        if (ls->n) memcpy(l->v, ls->v, ls->n * sizeof(jv));
        l->v[ls->n] = v_str("", 0);
        ls = l;
    }
    sink o = {0};
    if (truthy(x[1])) TRY(jn_sk_put(r, &o, ind.u.s, ind.n));
    for (size_t i = 0; i < ls->n; i++) {
        if (i) {
            TRY(sk_putc(r, &o, '\n'));
            if (truthy(x[2]) || ls->v[i].n) TRY(jn_sk_put(r, &o, ind.u.s, ind.n));
        }
        TRY(jn_sk_put(r, &o, ls->v[i].u.s, ls->v[i].n));
    }
    *out = sk_value(&o);
    return SIM_OK;
}

static int f_wordcount(R *r, jv v, const jargs *a, jv *out) {
    TRY(no_args(r, "wordcount", a));
    TRY(jn_to_str(r, v, &v));
    int64_t words = 0;
    bool in = false;
    for (size_t i = 0; i < v.n;) {
        uint32_t c = jn_u8_next(v.u.s, v.n, &i);
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
    if (v.k == V_UNDEF) return jn_undef_err(r, v); // Undefined.__int__ raises
    if (v.k == V_STR && parse_pyint(v, (int)base, &i)) *out = v_int(i);
    else if (is_intlike(v)) *out = v_int(as_int(v));
    else if (v.k == V_FLOAT || (v.k == V_STR && parse_pyfloat(v, &d))) {
        if (v.k == V_FLOAT) d = v.u.f;
        if (isinf(d)) return jn_rerr(r, SIM_ERR_FORMAT, "cannot convert float infinity to integer");
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
    if (v.k == V_UNDEF) return jn_undef_err(r, v); // Undefined.__float__ raises
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
    } else if (v.k == V_UNDEF) return jn_undef_err(r, v);
    else return jn_rerr(r, SIM_ERR_FORMAT, "bad operand type for abs(): '%s'", tname(v));
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
            return jn_rerr(r, SIM_ERR_FORMAT, "method must be common, ceil or floor");
    }
    if (!is_num(v)) {
        if (v.k == V_UNDEF) return jn_undef_err(r, v);
        return jn_rerr(r, SIM_ERR_FORMAT, "type %s doesn't define __round__ method", tname(v));
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
            TRY(jn_repeat(r, v_lit(" "), w, &ind));
            f.indent = (jstr){ind.u.s ? ind.u.s : "", ind.n};
        }
    }
    f.item_sep = f.indent.s ? (jstr){",", 1} : (jstr){", ", 2};
    f.key_sep = (jstr){": ", 2};
    if (x[2].k != V_NONE) {
        const jlist *seps;
        TRY(jn_iterate(r, x[2], &seps));
        if (seps->n != 2 || seps->v[0].k != V_STR || seps->v[1].k != V_STR)
            return jn_rerr(r, SIM_ERR_FORMAT, "tojson: separators must be two strings");
        f.item_sep = (jstr){seps->v[0].u.s, seps->v[0].n};
        f.key_sep = (jstr){seps->v[1].u.s, seps->v[1].n};
    }
    sink o = {0};
    TRY(jn_json_write(r, &o, v, &f, 0));
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
        int m = jn_find_name(jn_method_names + M_STR_END, M_DICT_END - M_STR_END, x[0].u.s, x[0].n);
        if (m >= 0) return jn_make_func(r, F_METHOD, M_STR_END + m, v, jn_method_names[M_STR_END + m], out);
        *out = v_undef_attr(v, x[0].u.s, x[0].n);
        return SIM_OK;
    }
    return jn_get_attr(r, v, x[0].u.s, x[0].n, out);
}

static int gen_batch(R *r, jv v, const jargs *a, jv *out) {
    static const char *const p[] = {"linecount", "fill_with"};
    jv x[2];
    bool h[2];
    int64_t n;
    const jlist *items;
    TRY(bind(r, "batch", a, p, 2, x, h));
    TRY(need_int(r, "batch", x[0], &n));
    TRY(jn_iterate(r, v, &items));
    lvec o = {0}, cur = {0};
    for (size_t i = 0; i < items->n; i++) {
        if ((int64_t)cur.n == n) {
            jv l;
            TRY(jn_lv_done(r, &cur, SUB_LIST, &l));
            TRY(jn_lv_push(r, &o, l));
            cur = (lvec){0};
        }
        TRY(jn_lv_push(r, &cur, items->v[i]));
    }
    if (cur.n) {
        while (x[1].k != V_NONE && (int64_t)cur.n < n) TRY(jn_lv_push(r, &cur, x[1]));
        jv l;
        TRY(jn_lv_done(r, &cur, SUB_LIST, &l));
        TRY(jn_lv_push(r, &o, l));
    }
    return jn_lv_done(r, &o, SUB_GEN, out);
}

static int f_reverse(R *r, jv v, const jargs *a, jv *out) {
    TRY(no_args(r, "reverse", a));
    if (v.k == V_STR) return jn_get_slice(r, v, v_none(), v_none(), v_int(-1), out);
    bool was_iter = IS_ITER(v); // reversed() refuses iterators, so jinja2 makes a list
    const jlist *items;
    TRY(jn_iterate(r, v, &items));
    jlist *l = jn_list_new(r, items->n);
    if (!l) return jn_r_nomem(r);
    for (size_t i = 0; i < items->n; i++) l->v[i] = items->v[items->n - 1 - i];
    *out = v_list(l, was_iter ? SUB_LIST : SUB_REV);
    return SIM_OK;
}

static int f_format(R *r, jv v, const jargs *a, jv *out) {
    if (a->npos && a->nkw) return jn_rerr(r, SIM_ERR_FORMAT, "can't handle positional and keyword arguments at the same time");
    TRY(jn_to_str(r, v, &v));
    if (a->nkw) {
        jdict *d = jn_dict_new(r);
        if (!d) return jn_r_nomem(r);
        for (size_t k = 0; k < a->nkw; k++) TRY(jn_dict_set(r, d, v_str(a->kwn[k].s, a->kwn[k].n), a->kwv[k]));
        return jn_py_format(r, v, (jv){.k = V_DICT, .u.d = d}, out);
    }
    jlist *l = jn_list_new(r, a->npos);
    if (!l) return jn_r_nomem(r);
    if (a->npos) memcpy(l->v, a->pos, a->npos * sizeof(jv));
    return jn_py_format(r, v, v_list(l, SUB_TUPLE), out);
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
    jlist *l = jn_list_new(r, 0);
    char *msg = ralloc(r, strlen(m) + 1);
    if (!l || !msg) return jn_r_nomem(r);
    strcpy(msg, m);
    l->broken = msg;
    *out = v_list(l, SUB_GEN);
    return SIM_OK;
}

// select / reject / selectattr / rejectattr
static int select_items(R *r, jv v, const jargs *a, bool attr, bool keep_if, jv *out) {
    const jlist *items;
    if (!truthy(v)) return jn_lv_done(r, &(lvec){0}, SUB_GEN, out); // jinja2 checks `if value:` first
    size_t off = attr ? 1 : 0;
    if (attr && a->npos < 1) return jn_rerr(r, SIM_ERR_FORMAT, "Missing parameter for attribute name");
    bool has_test = a->npos > off;
    jstr test = {0};
    if (has_test) {
        TRY(need_str(r, "select", a->pos[off]));
        test = (jstr){a->pos[off].u.s, a->pos[off].n};
    }
    jargs targs = {a->pos + off + 1, has_test ? a->npos - off - 1 : 0, a->kwn, a->kwv, a->nkw};
    TRY(jn_iterate(r, v, &items));
    lvec o = {0};
    for (size_t i = 0; i < items->n; i++) {
        jv it = items->v[i];
        bool res = false;
        if (attr) TRY(attr_path(r, it, a->pos[0], &it));
        if (has_test) TRY(jn_call_test(r, test, it, &targs, &res));
        else res = truthy(it);
        if (res == keep_if) TRY(jn_lv_push(r, &o, items->v[i]));
    }
    return jn_lv_done(r, &o, SUB_GEN, out);
}
static int gen_select(R *r, jv v, const jargs *a, jv *out) { return select_items(r, v, a, false, true, out); }
static int gen_reject(R *r, jv v, const jargs *a, jv *out) { return select_items(r, v, a, false, false, out); }
static int gen_selectattr(R *r, jv v, const jargs *a, jv *out) { return select_items(r, v, a, true, true, out); }
static int gen_rejectattr(R *r, jv v, const jargs *a, jv *out) { return select_items(r, v, a, true, false, out); }

static int gen_map(R *r, jv v, const jargs *a, jv *out) {
    const jlist *items;
    if (!truthy(v)) return jn_lv_done(r, &(lvec){0}, SUB_GEN, out); // jinja2 checks `if value:` first
    TRY(jn_iterate(r, v, &items));
    jv attr = v_none(), dflt = v_none();
    bool by_attr = false;
    if (!a->npos) {
        for (size_t k = 0; k < a->nkw; k++) {
            if (str_is(a->kwn[k].s, a->kwn[k].n, "attribute")) attr = a->kwv[k], by_attr = true;
            else if (str_is(a->kwn[k].s, a->kwn[k].n, "default")) dflt = a->kwv[k];
            else return jn_rerr(r, SIM_ERR_FORMAT, "Unexpected keyword argument '%.*s'", (int)MIN(a->kwn[k].n, 60), a->kwn[k].s);
        }
        if (!by_attr) return jn_rerr(r, SIM_ERR_FORMAT, "map requires a filter argument");
    } else {
        TRY(need_str(r, "map", a->pos[0]));
    }
    jargs fargs = {a->pos + (a->npos ? 1 : 0), a->npos ? a->npos - 1 : 0, a->kwn, a->kwv, a->nkw};
    jlist *l = jn_list_new(r, items->n);
    if (!l) return jn_r_nomem(r);
    for (size_t i = 0; i < items->n; i++) {
        if (by_attr) {
            TRY(attr_path(r, items->v[i], attr, &l->v[i]));
            if (l->v[i].k == V_UNDEF && dflt.k != V_NONE) l->v[i] = dflt;
        } else {
            TRY(jn_call_filter(r, (jstr){a->pos[0].u.s, a->pos[0].n}, items->v[i], &fargs, &l->v[i]));
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

int jn_call_filter(R *r, jstr name, jv v, const jargs *a, jv *out) {
    TRY(jn_step(r, 1));
    for (size_t i = 0; i < ARRAY_LEN(filters); i++)
        if (str_is(name.s, name.n, filters[i].name)) return filters[i].fn(r, v, a, out);
    return jn_rerr(r, SIM_ERR_FORMAT, "No filter named '%.*s'.", (int)MIN(name.n, 60), name.s);
}

// --- tests ----------------------------------------------------------------------------------------

static int test_arg(R *r, const char *name, const jargs *a, jv *out) {
    static const char *const p[] = {"other"};
    bool h[1];
    TRY(bind(r, name, a, p, 1, out, h));
    if (!h[0]) return jn_rerr(r, SIM_ERR_FORMAT, "%s() missing 1 required positional argument", name);
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

int jn_call_test(R *r, jstr name, jv v, const jargs *a, bool *out) {
    TRY(jn_step(r, 1));
    int id = -1;
    for (size_t i = 0; i < ARRAY_LEN(tests) && id < 0; i++)
        if (str_is(name.s, name.n, tests[i].name)) id = tests[i].id;
    if (id < 0) return jn_rerr(r, SIM_ERR_FORMAT, "No test named '%.*s'.", (int)MIN(name.n, 60), name.s);
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
        TRY(jn_binop(r, OP_MOD, v, m, &rem));
        *out = id == TS_ODD ? jn_py_eq(rem, v_int(1), 0) : jn_py_eq(rem, v_int(0), 0);
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
        return jn_compare(r, ops[id], v, o, out);
    }
    case TS_SAMEAS:
        TRY(test_arg(r, "sameas", a, &o));
        if (v.k != o.k) *out = false;
        else if (v.k == V_STR) *out = v.u.s == o.u.s && v.n == o.n;
        else if (v.k == V_LIST || v.k == V_DICT || v.k == V_NS || v.k == V_FUNC || v.k == V_LOOP) *out = v.u.l == o.u.l;
        else *out = jn_py_eq(v, o, 0);
        return SIM_OK;
    case TS_LOWER:
    case TS_UPPER:
        TRY(jn_to_str(r, v, &o));
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
