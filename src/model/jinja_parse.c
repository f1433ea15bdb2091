// jinja_parse.c — compiling a template (part of model/jinja; see jinja_internal.h): the lexer,
// the parser that builds the AST, and the passes jinja2 runs when it compiles (tree depth,
// its static scoping, constant folding); jinja_parse and jinja_free.
#include "model/jinja_internal.h"

#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

// --- tokens ------------------------------------------------------------------------

enum { T_EOF, T_TEXT, T_VAR_BEGIN, T_VAR_END, T_BLOCK_BEGIN, T_BLOCK_END, T_NAME, T_STRING, T_INT, T_FLOAT, T_OP };
const char *const jn_op_text[] = {"",  "+", "-",  "*",  "/",  "//", "%",  "**", "~", "[",  "]",
                                  "(", ")", "{",  "}",  "==", "!=", ">",  ">=", "<", "<=", "=",
                                  ".", ":", "|",  ",",  ";",  "in", "not in"};

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
    size_t col = 1 + jn_u8_count(s + ls, pos > ls ? pos - ls : 0);
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
    char *o = jn_ar_alloc(&p->t->a, n + 1);
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
        i += jn_ws_span(s + i, n - i);
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
            uint32_t cp = jn_u8_next(s, n, &j);
            if (cp < 0x80) return perr(p, (uint32_t)i, "unexpected char '%c'", (char)cp);
            return perr(p, (uint32_t)i, "unexpected char U+%04X", (unsigned)cp);
        }
        if (op == OP_LBRACKET || op == OP_LPAREN || op == OP_LBRACE) {
            if (depth == JINJA_MAX_NEST) return perr(p, (uint32_t)i, "brackets nested too deeply");
            stack[depth++] = (uint8_t)op;
        } else if (op == OP_RBRACKET || op == OP_RPAREN || op == OP_RBRACE) {
            int want = op == OP_RBRACKET ? OP_LBRACKET : op == OP_RPAREN ? OP_LPAREN : OP_LBRACE;
            if (depth == 0) return perr(p, (uint32_t)i, "unexpected '%s'", jn_op_text[op]);
            if (stack[depth - 1] != want)
                return perr(p, (uint32_t)i, "unexpected '%s', expected '%s'", jn_op_text[op], jn_op_text[stack[depth - 1] + 1]);
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
    if (x1 < n && jn_ws_span(t->s + x1, n - x1) == n - x1) fl |= TX_TAILWS;
    t->fl = fl;
    t->u.i = (int64_t)x1;
    return SIM_OK;
}

// Flags for the text after a tag that ended with `sign` at s[*pos] (a `-`
// eats the whitespace that follows).
static uint8_t after_tag(P *p, size_t *pos, char sign, bool block) {
    const char *s = p->t->src;
    if (sign == '-') {
        size_t w = jn_ws_span(s + *pos, p->t->len - *pos);
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
            size_t b = a + jn_ws_span(s + a, n - a);
            if (starts(s, n, b, "raw")) {
                b += 3;
                b += jn_ws_span(s + b, n - b);
                if (starts(s, n, b, "-%}")) raw_after = b + 3, raw_sign = '-';
                else if (starts(s, n, b, "%}")) raw_after = b + 2;
            }
        }
        size_t tn = q - pos;
        uint8_t fl = left;
        if (sign == '-') tn = jn_ws_rtrim(s + pos, tn);
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
                f += jn_ws_span(s + f, n - f);
                if (!starts(s, n, f, "endraw")) continue;
                f += 6;
                f += jn_ws_span(s + f, n - f);
                if (starts(s, n, f, "-%}") || starts(s, n, f, "+%}")) tsign = s[f], end_at = f + 3;
                else if (starts(s, n, f, "%}")) end_at = f + 2;
                else continue;
                esign = sg;
                break;
            }
            size_t cn = e - c;
            if (esign == '-') cn = jn_ws_rtrim(s + c, cn);
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

typedef struct nvec {
    jnode **v;
    uint32_t n, cap;
} nvec;

static jnode *nnew(P *p, int kind, uint32_t pos) {
    jnode *x = jn_ar_alloc(&p->t->a, sizeof *x);
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
        jnode **q = jn_ar_grow(&p->t->a, v->v, v->cap * sizeof *q, cap * sizeof *q);
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
    default: snprintf(buf, cap, "%s", jn_op_text[t->op]); break;
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
    perr(p, cur(p)->pos, "expected '%s', got '%s'", jn_op_text[op], d);
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
        jnode **v = jn_ar_alloc(&p->t->a, sizeof *v);
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
            char *s = jn_ar_alloc(&p->t->a, x->val.n + u->n + 1);
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
            jnode **v = jn_ar_alloc(&p->t->a, sizeof *v);
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
                     block, jn_line_of(p->t, block_pos));
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
        jstr *nn = jn_ar_grow(t->a, t->name, t->cap * sizeof *nn, cap * sizeof *nn);
        uint8_t *nl = nn ? jn_ar_grow(t->a, t->load, t->cap, cap) : NULL;
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
        jstr *q = jn_ar_grow(t->a, t->stores, t->scap * sizeof *q, cap * sizeof *q);
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
        *undef = jn_ar_alloc(&p->t->a, n * sizeof **undef);
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
        char *s = jn_ar_alloc(a, v.n + 1);
        if (!s) return false;
        if (v.n) memcpy(s, v.u.s, v.n);
        out->u.s = s;
    } else if (v.k == V_LIST) {
        jlist *l = jn_ar_alloc(a, sizeof *l);
        jv *items = v.u.l->n ? jn_ar_alloc(a, v.u.l->n * sizeof *items) : NULL;
        if (!l || (v.u.l->n && !items)) return false;
        *l = *v.u.l;
        l->v = items;
        for (size_t i = 0; i < l->n; i++)
            if (!copy_const(a, v.u.l->v[i], &items[i])) return false;
        out->u.l = l;
    } else if (v.k == V_DICT) {
        const jdict *d = v.u.d;
        jdict *c = jn_ar_alloc(a, sizeof *c);
        jv *k = d->n ? jn_ar_alloc(a, d->n * sizeof *k) : NULL, *vals = d->n ? jn_ar_alloc(a, d->n * sizeof *vals) : NULL;
        uint32_t *idx = d->idx ? jn_ar_alloc(a, d->icap * sizeof *idx) : NULL;
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
    int st = jn_eval(r, e, &none, out);
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
        if (!const_eval(r, e->a, &v) || (v.k != V_STR && jn_v_write(r, &s, v, false, 0) != SIM_OK)) return true;
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
    if (!const_eval(r, e, &v) || !jn_safe_const(v, 0, &size) || size > FOLD_MAX_VALUE) return true;
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
    char *s = jn_ar_alloc(&t->a, len + 1);
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
        jn_ar_free_all(&scratch_a);
    }
    if (st == SIM_OK) {
        sim_err scratch;
        R r = {.t = t, .err = &scratch, .max_steps = FOLD_STEPS, .max_out = JINJA_MAX_OUTPUT};
        r.a.limit = FOLD_MEMORY;
        if (!fold(&r, &p, &t->root)) st = p.st;
        jn_ar_free_all(&r.a);
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
    jn_ar_free_all(&t->a);
    mem_free(t);
}
