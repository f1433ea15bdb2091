// jinja_internal.h — the parts of the Jinja2 interpreter (model/jinja.h) share
// these types and functions. Private to the jinja module: only
// src/model/jinja_*.c include it.
//
// Three stages, each following jinja2 3.1 closely because the output must be
// byte-identical: the lexer turns the source into tokens (text runs carry
// flags so that trim_blocks/lstrip_blocks can be applied at render time), a
// recursive-descent parser with jinja2's grammar and precedence builds an AST
// in the template's arena, and a tree-walking interpreter renders it with
// Python's value semantics. Every value made while rendering lives in one
// per-render arena, so there is no reference counting and nothing to leak.
//
// The module is split by concern into files of a readable size:
//   jinja_value.c    arena, UTF-8 text helpers, values, lists and dicts, JSON
//                    context to values, Python's str()/repr(), HF's tojson,
//                    comparisons
//   jinja_parse.c    tokens, AST, parser, tree depth, scoping analysis,
//                    constant folding; jinja_parse, jinja_free
//   jinja_eval.c     render state and errors, sinks, scopes, variables,
//                    attributes and items, operators, evaluation, statements;
//                    jinja_render
//   jinja_builtins.c builtin tables, argument helpers, case mapping, string
//                    functions, methods, globals, % formatting, filters, tests
// A function or table one part uses from another carries the internal prefix
// jn_ (jinja_ is the public API), so nothing collides with the rest of the
// library; the tiny helpers every part uses (value constructors, truthy,
// ralloc, sk_puts, ...) are static inline at the end of this header;
// everything else is static in its part.
#ifndef SIM_JINJA_INTERNAL_H
#define SIM_JINJA_INTERNAL_H

#include <stdbool.h>
#include <stdint.h>
#include <string.h>
#include <time.h>

#include "base/utf8.h"
#include "model/jinja.h"

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

// --- text helpers -----------------------------------------------------------------

typedef struct jstr {
    const char *s;
    size_t n;
} jstr;

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

#define TRY(x)                                                                          \
    do {                                                                                \
        int st_ = (x);                                                                  \
        if (st_ != SIM_OK) return st_;                                                  \
    } while (0)

// --- tokens ------------------------------------------------------------------------

enum {
    OP_NONE, OP_ADD, OP_SUB, OP_MUL, OP_DIV, OP_FLOORDIV, OP_MOD, OP_POW, OP_TILDE, OP_LBRACKET, OP_RBRACKET,
    OP_LPAREN, OP_RPAREN, OP_LBRACE, OP_RBRACE, OP_EQ, OP_NE, OP_GT, OP_GE, OP_LT, OP_LE, OP_ASSIGN, OP_DOT,
    OP_COLON, OP_PIPE, OP_COMMA, OP_SEMICOLON, OP_IN, OP_NOTIN
};

// Flags of a text run: what the tags around it allow at render time.
enum {
    TX_TRIM = 1,      // after a block/comment tag: trim_blocks drops a leading newline
    TX_LINESTART = 2, // starts a line (template start, or a `-` tag ate whitespace ending in \n)
    TX_LSTRIP = 4,    // before a block/comment tag: lstrip_blocks may drop the last line's blanks
    TX_TAILWS = 8,    // the text after the last newline is non-empty whitespace
};

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

// --- parser ------------------------------------------------------------------------

// What a macro's body names among caller, varargs and kwargs (nested macros included, as jinja2).
enum { MF_CALLER = 1, MF_VARARGS = 2, MF_KWARGS = 4 };

// --- lists and dicts ---------------------------------------------------------------------

// A growing list under construction.
typedef struct lvec {
    jv *v;
    size_t n, cap;
} lvec;

// --- HF's tojson: json.dumps(x, ensure_ascii=False, indent=..., separators=..., sort_keys=...) --

typedef struct json_fmt {
    jstr indent;  // NULL s: no indent (one line)
    jstr item_sep, key_sep;
    bool ensure_ascii, sort_keys;
} json_fmt;

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

// --- builtin tables (in jinja_builtins.c) ---------------------------------------------------

typedef struct jargs {
    const jv *pos;
    size_t npos;
    const jstr *kwn;
    const jv *kwv;
    size_t nkw;
} jargs;

enum { G_RANGE, G_NAMESPACE, G_DICT, G_RAISE, G_STRFTIME, G_COUNT };
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

// --- functions and tables shared between the parts ----------------------------------------

// jinja_value.c
void *jn_ar_alloc(jarena *a, size_t n);
void *jn_ar_grow(jarena *a, void *p, size_t old, size_t n);
void jn_ar_free_all(jarena *a);
uint32_t jn_u8_next(const char *s, size_t n, size_t *i);
size_t jn_u8_prev(const char *s, size_t i);
size_t jn_u8_count(const char *s, size_t n);
bool jn_py_isspace(uint32_t c);
size_t jn_ws_span(const char *s, size_t n);
size_t jn_ws_rtrim(const char *s, size_t n);
const char *jn_kind_name(int k, int sub);
jlist *jn_list_new(R *r, size_t n);
int jn_lv_push(R *r, lvec *b, jv x);
int jn_lv_done(R *r, lvec *b, int sub, jv *out);
int jn_key_hash(jv k, uint64_t *h, int depth);
jdict *jn_dict_new(R *r);
long jn_dict_find(const jdict *d, jv k);
jv *jn_dict_get_s(const jdict *d, const char *s, size_t n);
int jn_dict_set(R *r, jdict *d, jv k, jv v);
int jn_from_json(R *r, const json_t *j, jv *out, int depth);
int jn_v_write(R *r, sink *s, jv v, bool repr, int depth);
int jn_to_str(R *r, jv v, jv *out);
int jn_json_write(R *r, sink *s, jv v, const json_fmt *f, int level);
bool jn_py_eq(jv a, jv b, int depth);
int jn_py_cmp(R *r, jv a, jv b, const char *op, int *out, int depth);

// jinja_eval.c
int jn_line_of(const jinja_template *t, uint32_t pos);
int jn_rerr(R *r, sim_status code, const char *fmt, ...) __attribute__((format(printf, 3, 4)));
int jn_r_nomem(R *r);
int jn_undef_err(R *r, jv u);
int jn_step(R *r, uint64_t n);
int jn_sk_put(R *r, sink *s, const char *p, size_t n);
int jn_sk_printf(R *r, sink *s, const char *fmt, ...) __attribute__((format(printf, 3, 4)));
int jn_find_name(const char *const *names, size_t count, const char *s, size_t n);
int jn_get_attr(R *r, jv obj, const char *s, size_t n, jv *out);
size_t jn_cp_offset(const char *s, size_t n, size_t k);
int jn_get_item(R *r, jv obj, jv key, jv *out);
int jn_get_slice(R *r, jv obj, jv start, jv stop, jv stepv, jv *out);
int jn_iterate(R *r, jv v, const jlist **out);
int jn_length_of(R *r, jv v, int64_t *out);
int jn_str_concat(R *r, jv a, jv b, jv *out);
int jn_repeat(R *r, jv seq, int64_t times, jv *out);
int jn_binop(R *r, int op, jv a, jv b, jv *out);
int jn_compare(R *r, int op, jv a, jv b, bool *out);
bool jn_safe_const(jv v, int depth, size_t *size);
int jn_eval(R *r, const jnode *e, jscope *sc, jv *out);
int jn_exec_body(R *r, const nlist *body, jscope *sc);

// jinja_builtins.c
extern const char *const jn_global_names[G_COUNT];
extern const char *const jn_method_names[];
extern const char *const jn_dict_unsafe[];
extern const char *const jn_list_unsafe[];
int jn_make_func(R *r, int kind, int id, jv self, const char *name, jv *out);
int jn_call_method(R *r, const jfunc *f, const jargs *a, jv *out);
int jn_call_global(R *r, int id, const jargs *a, jv *out);
int jn_py_format(R *r, jv fmt, jv args, jv *out);
int jn_call_filter(R *r, jstr name, jv v, const jargs *a, jv *out);
int jn_call_test(R *r, jstr name, jv v, const jargs *a, bool *out);

// jinja_parse.c
extern const char *const jn_op_text[];

// --- small helpers every part uses ------------------------------------------------------------

static inline bool str_is(const char *s, size_t n, const char *lit) {
    size_t m = strlen(lit);
    return m == n && memcmp(s, lit, n) == 0;
}

static inline jv v_undef(void) { return (jv){.k = V_UNDEF}; }
static inline jv v_none(void) { return (jv){.k = V_NONE}; }
static inline jv v_bool(bool b) { return (jv){.k = V_BOOL, .u.b = b}; }
static inline jv v_int(int64_t i) { return (jv){.k = V_INT, .u.i = i}; }
static inline jv v_float(double f) { return (jv){.k = V_FLOAT, .u.f = f}; }
static inline jv v_str(const char *s, size_t n) { return (jv){.k = V_STR, .n = n, .u.s = s}; }
static inline jv v_lit(const char *s) { return v_str(s, strlen(s)); }
static inline jv v_undef_name(const char *s, size_t n) { return (jv){.k = V_UNDEF, .uh = UH_NAME, .n = n, .u.s = s}; }
static inline jv v_undef_attr(jv obj, const char *s, size_t n) {
    return (jv){.k = V_UNDEF, .uh = UH_ATTR, .ut = (uint8_t)(obj.k | obj.sub << 4), .n = n, .u.s = s};
}

static inline const char *tname(jv v) { return jn_kind_name(v.k, v.sub); }

static inline bool is_intlike(jv v) { return v.k == V_INT || v.k == V_BOOL; }
static inline bool is_num(jv v) { return v.k == V_INT || v.k == V_BOOL || v.k == V_FLOAT; }
static inline int64_t as_int(jv v) { return v.k == V_BOOL ? (int64_t)v.u.b : v.u.i; }
static inline double as_f(jv v) { return v.k == V_FLOAT ? v.u.f : (double)as_int(v); }

static inline bool truthy(jv v) {
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

static inline void *ralloc(R *r, size_t n) { return jn_ar_alloc(&r->a, n); }

static inline int sk_puts(R *r, sink *s, const char *p) { return jn_sk_put(r, s, p, strlen(p)); }
static inline int sk_putc(R *r, sink *s, char c) { return jn_sk_put(r, s, &c, 1); }
static inline int sk_cp(R *r, sink *s, uint32_t cp) {
    char b[4];
    int k = utf8_encode(cp, b);
    return jn_sk_put(r, s, b, (size_t)(k > 0 ? k : 0));
}
static inline jv sk_value(sink *s) { return v_str(s->p ? s->p : "", s->n); }

static inline jv v_list(jlist *l, int sub) { return (jv){.k = V_LIST, .sub = (uint8_t)sub, .u.l = l}; }

static inline int overflow(R *r) { return jn_rerr(r, SIM_ERR_FORMAT, "integer overflow (integers are 64-bit here)"); }

#endif
