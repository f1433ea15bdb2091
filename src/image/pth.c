// pth.c — the safe unpickler and the torch zip archive reader (see pth.h).
#include "image/pth.h"

#include <stdio.h>
#include <string.h>
#include <zip.h>

#include "base/file.h"

#define MAX_NODES (1 << 22)
#define MAX_DEPTH 8
#define MAX_MEMO (1 << 22)

// --- values --------------------------------------------------------------------------------

typedef enum vkind { V_NONE, V_BOOL, V_INT, V_FLOAT, V_STR, V_TUPLE, V_LIST, V_DICT, V_GLOBAL, V_STORAGE, V_TENSOR } vkind;

typedef enum sym {
    SYM_ODICT,
    SYM_REBUILD,
    SYM_PARAM,
    SYM_STORAGE, // + dtype in node.i
} sym;

typedef struct node {
    vkind kind;
    int64_t i;            // INT, BOOL; GLOBAL: sym; STORAGE: numel; TENSOR: offset
    double f;
    const char *s;        // STR: into the pickle; STORAGE: key
    uint32_t len;         // STR / STORAGE key length
    int dtype;            // STORAGE, TENSOR (st_dtype); GLOBAL storage types
    int32_t *items;       // TUPLE / LIST items, DICT key,value pairs (owned)
    uint32_t n, cap;      // items used / allocated (DICT: 2 per entry)
    int32_t storage;      // TENSOR: its storage node
    int32_t shape, stride;// TENSOR: tuple nodes
} node;

typedef struct unpickler {
    const uint8_t *p, *end, *start;
    node *nodes;
    int32_t n_nodes, cap_nodes;
    int32_t *stack;
    int32_t sp, cap_stack;
    int32_t *marks;
    int32_t n_marks, cap_marks;
    int32_t *memo;
    int64_t cap_memo;
    int64_t memo_n; // distinct entries set (MEMOIZE's next index)
    sim_err *err;
    const char *what; // for messages
} unpickler;

static sim_status fail(unpickler *u, sim_status code, const char *fmt, const char *detail) {
    return err_set(u->err, code, "%s: pickle offset %zu: %s%s", u->what, (size_t)(u->p - u->start), fmt, detail ? detail : "");
}

static bool grow(void **p, int64_t *cap, int64_t need, size_t elem) {
    if (need <= *cap) return true;
    int64_t nc = *cap ? *cap : 16;
    while (nc < need) nc *= 2;
    void *q = mem_realloc(*p, (size_t)nc * elem);
    if (!q) return false;
    *p = q;
    *cap = nc;
    return true;
}

static int32_t new_node(unpickler *u, vkind k) {
    if (u->n_nodes >= MAX_NODES) return -1;
    if (u->n_nodes == u->cap_nodes) {
        int64_t cap = u->cap_nodes;
        if (!grow((void **)&u->nodes, &cap, (int64_t)u->n_nodes + 1, sizeof *u->nodes)) return -2;
        u->cap_nodes = (int32_t)cap;
    }
    node *n = &u->nodes[u->n_nodes];
    memset(n, 0, sizeof *n);
    n->kind = k;
    n->storage = n->shape = n->stride = -1;
    return u->n_nodes++;
}

static bool push(unpickler *u, int32_t v) {
    if (u->sp == u->cap_stack) {
        int64_t cap = u->cap_stack;
        if (!grow((void **)&u->stack, &cap, (int64_t)u->sp + 1, sizeof *u->stack)) return false;
        u->cap_stack = (int32_t)cap;
    }
    u->stack[u->sp++] = v;
    return true;
}

static bool add_item(unpickler *u, node *n, int32_t v) {
    (void)u;
    if (n->n == n->cap) {
        int64_t cap = n->cap;
        if (n->cap >= (1u << 30) || !grow((void **)&n->items, &cap, (int64_t)n->n + 1, sizeof *n->items)) return false;
        n->cap = (uint32_t)cap;
    }
    n->items[n->n++] = v;
    return true;
}

static void unpickler_free(unpickler *u) {
    for (int32_t i = 0; i < u->n_nodes; i++) mem_free(u->nodes[i].items);
    mem_free(u->nodes);
    mem_free(u->stack);
    mem_free(u->marks);
    mem_free(u->memo);
}

// --- the machine ------------------------------------------------------------------------------

static bool need(unpickler *u, size_t n) { return (size_t)(u->end - u->p) >= n; }

static uint64_t rd_le(const uint8_t *p, int n) {
    uint64_t v = 0;
    for (int i = n - 1; i >= 0; i--) v = v << 8 | p[i];
    return v;
}

static const struct {
    const char *module, *name;
    sym s;
    int dtype;
} GLOBALS[] = {
    {"collections", "OrderedDict", SYM_ODICT, 0},
    {"torch._utils", "_rebuild_tensor_v2", SYM_REBUILD, 0},
    {"torch._utils", "_rebuild_parameter", SYM_PARAM, 0},
    {"torch", "FloatStorage", SYM_STORAGE, ST_F32},
    {"torch", "HalfStorage", SYM_STORAGE, ST_F16},
    {"torch", "BFloat16Storage", SYM_STORAGE, ST_BF16},
    {"torch", "DoubleStorage", SYM_STORAGE, ST_F64},
    {"torch", "LongStorage", SYM_STORAGE, ST_I64},
    {"torch", "IntStorage", SYM_STORAGE, ST_I32},
    {"torch", "ShortStorage", SYM_STORAGE, ST_I16},
    {"torch", "CharStorage", SYM_STORAGE, ST_I8},
    {"torch", "ByteStorage", SYM_STORAGE, ST_U8},
    {"torch", "BoolStorage", SYM_STORAGE, ST_BOOL},
};

static sim_status do_global(unpickler *u, const char *mod, size_t ml, const char *name, size_t nl) {
    for (size_t i = 0; i < ARRAY_LEN(GLOBALS); i++)
        if (strlen(GLOBALS[i].module) == ml && memcmp(GLOBALS[i].module, mod, ml) == 0 && strlen(GLOBALS[i].name) == nl &&
            memcmp(GLOBALS[i].name, name, nl) == 0) {
            int32_t v = new_node(u, V_GLOBAL);
            if (v < 0) return fail(u, v == -2 ? SIM_ERR_NOMEM : SIM_ERR_FORMAT, "too many values", NULL);
            u->nodes[v].i = GLOBALS[i].s;
            u->nodes[v].dtype = GLOBALS[i].dtype;
            return push(u, v) ? SIM_OK : fail(u, SIM_ERR_NOMEM, "out of memory", NULL);
        }
    char d[160];
    snprintf(d, sizeof d, "'%.*s.%.*s' (only tensor rebuilding is allowed)", (int)MIN(ml, 60), mod, (int)MIN(nl, 60), name);
    for (char *c = d; *c; c++)
        if ((unsigned char)*c < 32 || (unsigned char)*c > 126) *c = '?';
    return fail(u, SIM_ERR_UNSUPPORTED, "refused GLOBAL ", d);
}

// Pops the items above the last mark into a new tuple/list node.
static sim_status pop_mark(unpickler *u, int32_t *base) {
    if (u->n_marks == 0) return fail(u, SIM_ERR_FORMAT, "no MARK to pop to", NULL);
    *base = u->marks[--u->n_marks];
    if (*base > u->sp) return fail(u, SIM_ERR_FORMAT, "stack below its MARK", NULL);
    return SIM_OK;
}

static sim_status make_seq(unpickler *u, vkind k, int32_t from, int32_t count) {
    int32_t v = new_node(u, k);
    if (v < 0) return fail(u, v == -2 ? SIM_ERR_NOMEM : SIM_ERR_FORMAT, "too many values", NULL);
    for (int32_t i = 0; i < count; i++)
        if (!add_item(u, &u->nodes[v], u->stack[from + i])) return fail(u, SIM_ERR_NOMEM, "out of memory", NULL);
    u->sp = from;
    return push(u, v) ? SIM_OK : fail(u, SIM_ERR_NOMEM, "out of memory", NULL);
}

static node *N(unpickler *u, int32_t i) { return &u->nodes[i]; }

// A tuple of non-negative ints, at most ST_MAX_DIMS long.
static bool int_tuple(unpickler *u, int32_t t, int64_t *out, int *nd) {
    node *n = N(u, t);
    if (n->kind != V_TUPLE || n->n > ST_MAX_DIMS) return false;
    for (uint32_t i = 0; i < n->n; i++) {
        node *x = N(u, n->items[i]);
        if (x->kind != V_INT || x->i < 0) return false;
        out[i] = x->i;
    }
    *nd = (int)n->n;
    return true;
}

static sim_status do_reduce(unpickler *u) {
    if (u->sp < 2) return fail(u, SIM_ERR_FORMAT, "REDUCE on a short stack", NULL);
    int32_t args = u->stack[--u->sp], fn = u->stack[--u->sp];
    node *f = N(u, fn), *a = N(u, args);
    if (f->kind != V_GLOBAL || a->kind != V_TUPLE) return fail(u, SIM_ERR_UNSUPPORTED, "REDUCE of something other than an allowed global", NULL);
    int32_t v;
    switch ((sym)f->i) {
    case SYM_ODICT:
        if (a->n != 0) return fail(u, SIM_ERR_UNSUPPORTED, "OrderedDict with arguments", NULL);
        v = new_node(u, V_DICT);
        break;
    case SYM_REBUILD: {
        // (storage, offset, size, stride, requires_grad, backward_hooks[, metadata])
        if (a->n < 6 || a->n > 7) return fail(u, SIM_ERR_FORMAT, "_rebuild_tensor_v2 takes 6 or 7 arguments", NULL);
        int32_t st = a->items[0], off = a->items[1], sh = a->items[2], sd = a->items[3];
        int64_t tmp[ST_MAX_DIMS];
        int nd1, nd2;
        if (N(u, st)->kind != V_STORAGE || N(u, off)->kind != V_INT || N(u, off)->i < 0 || !int_tuple(u, sh, tmp, &nd1) ||
            !int_tuple(u, sd, tmp, &nd2) || nd1 != nd2)
            return fail(u, SIM_ERR_FORMAT, "malformed _rebuild_tensor_v2 arguments", NULL);
        v = new_node(u, V_TENSOR);
        if (v >= 0) {
            node *t = N(u, v);
            t->storage = st, t->i = N(u, off)->i, t->shape = sh, t->stride = sd, t->dtype = N(u, st)->dtype;
        }
        break;
    }
    case SYM_PARAM:
        if (a->n < 1 || N(u, a->items[0])->kind != V_TENSOR) return fail(u, SIM_ERR_FORMAT, "malformed _rebuild_parameter arguments", NULL);
        v = a->items[0];
        break;
    default:
        return fail(u, SIM_ERR_UNSUPPORTED, "REDUCE of a storage type", NULL);
    }
    if (v < 0) return fail(u, v == -2 ? SIM_ERR_NOMEM : SIM_ERR_FORMAT, "too many values", NULL);
    return push(u, v) ? SIM_OK : fail(u, SIM_ERR_NOMEM, "out of memory", NULL);
}

static sim_status do_persid(unpickler *u) {
    if (u->sp < 1) return fail(u, SIM_ERR_FORMAT, "BINPERSID on an empty stack", NULL);
    node *t = N(u, u->stack[u->sp - 1]);
    // ('storage', storage_type, key, location, numel)
    if (t->kind != V_TUPLE || t->n != 5) return fail(u, SIM_ERR_FORMAT, "persistent id is not a 5-tuple", NULL);
    node *tag = N(u, t->items[0]), *ty = N(u, t->items[1]), *key = N(u, t->items[2]), *numel = N(u, t->items[4]);
    if (tag->kind != V_STR || tag->len != 7 || memcmp(tag->s, "storage", 7) != 0 || ty->kind != V_GLOBAL || ty->i != SYM_STORAGE ||
        key->kind != V_STR || key->len == 0 || key->len > 64 || numel->kind != V_INT || numel->i < 0)
        return fail(u, SIM_ERR_FORMAT, "persistent id is not ('storage', torch.*Storage, key, location, numel)", NULL);
    for (uint32_t i = 0; i < key->len; i++)
        if (!((key->s[i] >= '0' && key->s[i] <= '9') || (key->s[i] >= 'a' && key->s[i] <= 'z') || (key->s[i] >= 'A' && key->s[i] <= 'Z') || key->s[i] == '_'))
            return fail(u, SIM_ERR_FORMAT, "storage key is not alphanumeric", NULL);
    int32_t v = new_node(u, V_STORAGE);
    if (v < 0) return fail(u, v == -2 ? SIM_ERR_NOMEM : SIM_ERR_FORMAT, "too many values", NULL);
    t = N(u, u->stack[u->sp - 1]); // nodes may have moved
    key = N(u, t->items[2]);
    N(u, v)->s = key->s, N(u, v)->len = key->len, N(u, v)->i = N(u, t->items[4])->i, N(u, v)->dtype = N(u, t->items[1])->dtype;
    u->stack[u->sp - 1] = v;
    return SIM_OK;
}

static sim_status memo_put(unpickler *u, int64_t idx) {
    if (u->sp < 1) return fail(u, SIM_ERR_FORMAT, "PUT on an empty stack", NULL);
    if (idx < 0 || idx >= MAX_MEMO) return fail(u, SIM_ERR_FORMAT, "memo index out of range", NULL);
    int64_t old = u->cap_memo;
    if (!grow((void **)&u->memo, &u->cap_memo, idx + 1, sizeof *u->memo)) return fail(u, SIM_ERR_NOMEM, "out of memory", NULL);
    for (int64_t i = old; i < u->cap_memo; i++) u->memo[i] = -1;
    if (u->memo[idx] < 0) u->memo_n++;
    u->memo[idx] = u->stack[u->sp - 1];
    return SIM_OK;
}

static sim_status memo_get(unpickler *u, int64_t idx) {
    if (idx < 0 || idx >= u->cap_memo || u->memo[idx] < 0) return fail(u, SIM_ERR_FORMAT, "GET of an unset memo entry", NULL);
    return push(u, u->memo[idx]) ? SIM_OK : fail(u, SIM_ERR_NOMEM, "out of memory", NULL);
}

static sim_status push_scalar(unpickler *u, vkind k, int64_t i, double f) {
    int32_t v = new_node(u, k);
    if (v < 0) return fail(u, v == -2 ? SIM_ERR_NOMEM : SIM_ERR_FORMAT, "too many values", NULL);
    N(u, v)->i = i, N(u, v)->f = f;
    return push(u, v) ? SIM_OK : fail(u, SIM_ERR_NOMEM, "out of memory", NULL);
}

static sim_status push_str(unpickler *u, uint64_t len) {
    if (!need(u, len)) return fail(u, SIM_ERR_FORMAT, "string runs past the end", NULL);
    if (len > UINT32_MAX) return fail(u, SIM_ERR_FORMAT, "string too long", NULL);
    int32_t v = new_node(u, V_STR);
    if (v < 0) return fail(u, v == -2 ? SIM_ERR_NOMEM : SIM_ERR_FORMAT, "too many values", NULL);
    N(u, v)->s = (const char *)u->p, N(u, v)->len = (uint32_t)len;
    u->p += len;
    return push(u, v) ? SIM_OK : fail(u, SIM_ERR_NOMEM, "out of memory", NULL);
}

// Runs the pickle; on success *result is the value STOP returned.
static sim_status run_pickle(unpickler *u, int32_t *result) {
    sim_status st = SIM_OK;
    while (st == SIM_OK) {
        if (!need(u, 1)) return fail(u, SIM_ERR_FORMAT, "ends without STOP", NULL);
        uint8_t op = *u->p++;
        switch (op) {
        case 0x80: // PROTO
            if (!need(u, 1) || *u->p < 2 || *u->p > 5) return fail(u, SIM_ERR_UNSUPPORTED, "pickle protocol other than 2 to 5", NULL);
            u->p++;
            break;
        case 0x95: // FRAME: a length hint only
            if (!need(u, 8)) return fail(u, SIM_ERR_FORMAT, "truncated FRAME", NULL);
            u->p += 8;
            break;
        case '.': // STOP
            if (u->sp != 1) return fail(u, SIM_ERR_FORMAT, "STOP with other than one value on the stack", NULL);
            *result = u->stack[0];
            return SIM_OK;
        case '(': // MARK
            if (u->n_marks == u->cap_marks) {
                int64_t cap = u->cap_marks;
                if (!grow((void **)&u->marks, &cap, (int64_t)u->n_marks + 1, sizeof *u->marks)) return fail(u, SIM_ERR_NOMEM, "out of memory", NULL);
                u->cap_marks = (int32_t)cap;
            }
            u->marks[u->n_marks++] = u->sp;
            break;
        case 'c': { // GLOBAL "module\nname\n"
            const uint8_t *m = u->p, *nl1 = memchr(m, '\n', (size_t)(u->end - m));
            const uint8_t *nl2 = nl1 ? memchr(nl1 + 1, '\n', (size_t)(u->end - nl1 - 1)) : NULL;
            if (!nl2) return fail(u, SIM_ERR_FORMAT, "truncated GLOBAL", NULL);
            u->p = nl2 + 1;
            st = do_global(u, (const char *)m, (size_t)(nl1 - m), (const char *)nl1 + 1, (size_t)(nl2 - nl1 - 1));
            break;
        }
        case 0x93: { // STACK_GLOBAL
            if (u->sp < 2) return fail(u, SIM_ERR_FORMAT, "STACK_GLOBAL on a short stack", NULL);
            node *nm = N(u, u->stack[u->sp - 1]), *md = N(u, u->stack[u->sp - 2]);
            if (nm->kind != V_STR || md->kind != V_STR) return fail(u, SIM_ERR_FORMAT, "STACK_GLOBAL of non-strings", NULL);
            u->sp -= 2;
            st = do_global(u, md->s, md->len, nm->s, nm->len);
            break;
        }
        case '}': st = push_scalar(u, V_DICT, 0, 0); break;   // EMPTY_DICT
        case ']': st = push_scalar(u, V_LIST, 0, 0); break;   // EMPTY_LIST
        case ')': st = make_seq(u, V_TUPLE, u->sp, 0); break; // EMPTY_TUPLE
        case 't': case 'l': { // TUPLE, LIST
            int32_t base;
            if ((st = pop_mark(u, &base)) == SIM_OK) st = make_seq(u, op == 't' ? V_TUPLE : V_LIST, base, u->sp - base);
            break;
        }
        case 0x85: case 0x86: case 0x87: { // TUPLE1..3
            int32_t k = op - 0x84;
            if (u->sp < k) return fail(u, SIM_ERR_FORMAT, "TUPLEn on a short stack", NULL);
            st = make_seq(u, V_TUPLE, u->sp - k, k);
            break;
        }
        case 'd': { // DICT from mark
            int32_t base;
            if ((st = pop_mark(u, &base)) != SIM_OK) break;
            if ((u->sp - base) % 2) return fail(u, SIM_ERR_FORMAT, "DICT with an odd item count", NULL);
            st = make_seq(u, V_DICT, base, u->sp - base);
            break;
        }
        case 'a': case 'e': case 's': case 'u': { // APPEND, APPENDS, SETITEM, SETITEMS
            int32_t base = u->sp - (op == 'a' ? 1 : 2);
            if (op == 'e' || op == 'u') {
                if ((st = pop_mark(u, &base)) != SIM_OK) break;
            }
            if (base < 1) return fail(u, SIM_ERR_FORMAT, "APPEND/SETITEM without a container", NULL);
            node *c = N(u, u->stack[base - 1]);
            bool dict = op == 's' || op == 'u';
            if (c->kind != (dict ? V_DICT : V_LIST)) return fail(u, SIM_ERR_FORMAT, dict ? "SETITEM on a non-dict" : "APPEND on a non-list", NULL);
            if (dict && (u->sp - base) % 2) return fail(u, SIM_ERR_FORMAT, "SETITEMS with an odd item count", NULL);
            for (int32_t i = base; i < u->sp; i++)
                if (!add_item(u, c, u->stack[i])) return fail(u, SIM_ERR_NOMEM, "out of memory", NULL);
            u->sp = base;
            break;
        }
        case 'q': // BINPUT
            if (!need(u, 1)) return fail(u, SIM_ERR_FORMAT, "truncated BINPUT", NULL);
            st = memo_put(u, *u->p++);
            break;
        case 'r': // LONG_BINPUT
            if (!need(u, 4)) return fail(u, SIM_ERR_FORMAT, "truncated LONG_BINPUT", NULL);
            st = memo_put(u, (int64_t)rd_le(u->p, 4));
            u->p += 4;
            break;
        case 0x94: // MEMOIZE
            st = memo_put(u, u->memo_n);
            break;
        case 'h': // BINGET
            if (!need(u, 1)) return fail(u, SIM_ERR_FORMAT, "truncated BINGET", NULL);
            st = memo_get(u, *u->p++);
            break;
        case 'j': // LONG_BINGET
            if (!need(u, 4)) return fail(u, SIM_ERR_FORMAT, "truncated LONG_BINGET", NULL);
            st = memo_get(u, (int64_t)rd_le(u->p, 4));
            u->p += 4;
            break;
        case 'J': // BININT
            if (!need(u, 4)) return fail(u, SIM_ERR_FORMAT, "truncated BININT", NULL);
            st = push_scalar(u, V_INT, (int32_t)(uint32_t)rd_le(u->p, 4), 0);
            u->p += 4;
            break;
        case 'K': // BININT1
            if (!need(u, 1)) return fail(u, SIM_ERR_FORMAT, "truncated BININT1", NULL);
            st = push_scalar(u, V_INT, *u->p++, 0);
            break;
        case 'M': // BININT2
            if (!need(u, 2)) return fail(u, SIM_ERR_FORMAT, "truncated BININT2", NULL);
            st = push_scalar(u, V_INT, (int64_t)rd_le(u->p, 2), 0);
            u->p += 2;
            break;
        case 0x8a: { // LONG1
            if (!need(u, 1)) return fail(u, SIM_ERR_FORMAT, "truncated LONG1", NULL);
            int n = *u->p++;
            if (n > 8 || !need(u, (size_t)n)) return fail(u, SIM_ERR_FORMAT, "LONG1 longer than 8 bytes", NULL);
            uint64_t x = n ? rd_le(u->p, n) : 0;
            if (n && n < 8 && (u->p[n - 1] & 0x80)) x |= ~0ull << (8 * n); // sign-extend
            u->p += n;
            st = push_scalar(u, V_INT, (int64_t)x, 0);
            break;
        }
        case 'G': { // BINFLOAT (big-endian)
            if (!need(u, 8)) return fail(u, SIM_ERR_FORMAT, "truncated BINFLOAT", NULL);
            uint64_t b = 0;
            for (int i = 0; i < 8; i++) b = b << 8 | u->p[i];
            double d;
            memcpy(&d, &b, 8);
            u->p += 8;
            st = push_scalar(u, V_FLOAT, 0, d);
            break;
        }
        case 0x88: st = push_scalar(u, V_BOOL, 1, 0); break; // NEWTRUE
        case 0x89: st = push_scalar(u, V_BOOL, 0, 0); break; // NEWFALSE
        case 'N': st = push_scalar(u, V_NONE, 0, 0); break;
        case 'X': case 'T': case 'B': // BINUNICODE, BINSTRING, BINBYTES: 4-byte length
            if (!need(u, 4)) return fail(u, SIM_ERR_FORMAT, "truncated string length", NULL);
            u->p += 4;
            st = push_str(u, rd_le(u->p - 4, 4));
            break;
        case 0x8c: case 'U': case 'C': // SHORT_BINUNICODE, SHORT_BINSTRING, SHORT_BINBYTES
            if (!need(u, 1)) return fail(u, SIM_ERR_FORMAT, "truncated string length", NULL);
            u->p++;
            st = push_str(u, u->p[-1]);
            break;
        case 0x8d: case 0x8e: // BINUNICODE8, BINBYTES8
            if (!need(u, 8)) return fail(u, SIM_ERR_FORMAT, "truncated string length", NULL);
            u->p += 8;
            st = push_str(u, rd_le(u->p - 8, 8));
            break;
        case 'Q': st = do_persid(u); break; // BINPERSID
        case 'R': st = do_reduce(u); break; // REDUCE
        case 'b': { // BUILD: state on a dict (an OrderedDict's _metadata) is dropped
            if (u->sp < 2) return fail(u, SIM_ERR_FORMAT, "BUILD on a short stack", NULL);
            node *o = N(u, u->stack[u->sp - 2]);
            if (o->kind != V_DICT && o->kind != V_TENSOR) return fail(u, SIM_ERR_UNSUPPORTED, "BUILD on something other than a dict or tensor", NULL);
            u->sp--;
            break;
        }
        case '0': // POP
            if (u->sp < 1) return fail(u, SIM_ERR_FORMAT, "POP on an empty stack", NULL);
            u->sp--;
            break;
        case '1': { // POP_MARK
            int32_t base;
            if ((st = pop_mark(u, &base)) == SIM_OK) u->sp = base;
            break;
        }
        case '2': // DUP
            if (u->sp < 1) return fail(u, SIM_ERR_FORMAT, "DUP on an empty stack", NULL);
            st = push(u, u->stack[u->sp - 1]) ? SIM_OK : fail(u, SIM_ERR_NOMEM, "out of memory", NULL);
            break;
        default: {
            u->p--;
            char d[64];
            snprintf(d, sizeof d, "0x%02x%s%c%s (only data opcodes are allowed)", op, op >= 32 && op < 127 ? " '" : "",
                     op >= 32 && op < 127 ? op : ' ', op >= 32 && op < 127 ? "'" : "");
            return fail(u, SIM_ERR_UNSUPPORTED, "refused opcode ", d);
        }
        }
    }
    return st;
}

// --- state dict → tensors ------------------------------------------------------------------

typedef struct found {
    char name[256];
    int32_t tensor;
} found;

typedef struct collect {
    found *v;
    int n, cap;
} collect;

static sim_status flatten(unpickler *u, int32_t d, const char *prefix, int depth, collect *c) {
    node *dn = N(u, d);
    if (depth > MAX_DEPTH) return fail(u, SIM_ERR_FORMAT, "dicts nested too deeply", NULL);
    for (uint32_t i = 0; i + 1 < dn->n; i += 2) {
        node *k = N(u, dn->items[i]);
        int32_t val = dn->items[i + 1];
        if (k->kind != V_STR) continue;
        char name[256];
        int len = snprintf(name, sizeof name, "%s%.*s", prefix, (int)k->len, k->s);
        if (len < 0 || (size_t)len >= sizeof name || memchr(k->s, 0, k->len)) return fail(u, SIM_ERR_FORMAT, "tensor name too long or with NUL", NULL);
        if (N(u, val)->kind == V_DICT) {
            char p[256];
            if (snprintf(p, sizeof p, "%s.", name) >= (int)sizeof p) return fail(u, SIM_ERR_FORMAT, "tensor name too long", NULL);
            sim_status st = flatten(u, val, p, depth + 1, c);
            if (st != SIM_OK) return st;
        } else if (N(u, val)->kind == V_TENSOR) {
            if (c->n == c->cap) {
                int64_t cap = c->cap;
                if (!grow((void **)&c->v, &cap, (int64_t)c->n + 1, sizeof *c->v)) return fail(u, SIM_ERR_NOMEM, "out of memory", NULL);
                c->cap = (int)cap;
            }
            memcpy(c->v[c->n].name, name, (size_t)len + 1);
            c->v[c->n++].tensor = val;
        }
    }
    return SIM_OK;
}

static sim_status unpickle(unpickler *u, const uint8_t *pkl, size_t n, const char *what, collect *c, sim_err *err) {
    memset(u, 0, sizeof *u);
    u->p = u->start = pkl;
    u->end = pkl + n;
    u->err = err;
    u->what = what;
    int32_t root = -1;
    sim_status st = run_pickle(u, &root);
    if (st != SIM_OK) return st;
    if (N(u, root)->kind != V_DICT) return err_set(err, SIM_ERR_FORMAT, "%s: the pickle is not a state dict", what);
    return flatten(u, root, "", 0, c);
}

sim_status pth_check_pickle(const uint8_t *pkl, size_t n, int *n_tensors, sim_err *err) {
    unpickler u;
    collect c = {0};
    sim_status st = unpickle(&u, pkl, n, "pickle", &c, err);
    *n_tensors = c.n;
    mem_free(c.v);
    unpickler_free(&u);
    return st;
}

// --- the archive ----------------------------------------------------------------------------

// Reads zip entry `name` whole (at most max bytes) into a new buffer.
static sim_status read_entry(zip_t *za, const char *name, uint64_t max, uint8_t **out, size_t *len, const char *what, sim_err *err) {
    *out = NULL;
    zip_stat_t s;
    zip_stat_init(&s);
    if (zip_stat(za, name, 0, &s) != 0) return err_set(err, SIM_ERR_FORMAT, "%s: missing archive entry '%s'", what, name);
    if (!(s.valid & ZIP_STAT_SIZE)) return err_set(err, SIM_ERR_FORMAT, "%s: entry '%s' has no size", what, name);
    if ((s.valid & ZIP_STAT_ENCRYPTION_METHOD) && s.encryption_method != ZIP_EM_NONE)
        return err_set(err, SIM_ERR_UNSUPPORTED, "%s: entry '%s' is encrypted", what, name);
    if (s.size > max) return err_set(err, SIM_ERR_FORMAT, "%s: entry '%s' is %llu bytes (at most %llu)", what, name, (unsigned long long)s.size, (unsigned long long)max);
    uint8_t *b = mem_alloc(s.size ? (size_t)s.size : 1);
    if (!b) return err_set(err, SIM_ERR_NOMEM, "%s: out of memory for entry '%s'", what, name);
    zip_file_t *zf = zip_fopen(za, name, 0);
    zip_int64_t r = zf ? zip_fread(zf, b, s.size) : -1;
    char one;
    bool extra = zf && r == (zip_int64_t)s.size && zip_fread(zf, &one, 1) > 0;
    if (zf) zip_fclose(zf);
    if (r != (zip_int64_t)s.size || extra) {
        mem_free(b);
        return err_set(err, SIM_ERR_FORMAT, "%s: entry '%s' is corrupt or not %llu bytes", what, name, (unsigned long long)s.size);
    }
    *out = b;
    *len = (size_t)s.size;
    return SIM_OK;
}

static sim_status open_zip(st_file **out, zip_t *za, const char *what, sim_err *err) {
    // The pickle: the one entry named data.pkl at the top or one folder down.
    zip_int64_t ne = zip_get_num_entries(za, 0);
    char dir[256] = "";
    int found_pkl = 0;
    for (zip_int64_t i = 0; i < ne; i++) {
        const char *nm = zip_get_name(za, (zip_uint64_t)i, ZIP_FL_ENC_RAW);
        if (!nm) continue;
        size_t l = strlen(nm);
        const char *slash = strchr(nm, '/');
        if (l >= 8 && strcmp(nm + l - 8, "data.pkl") == 0 && (l == 8 || (slash == nm + l - 9 && l - 8 < sizeof dir))) {
            found_pkl++;
            memcpy(dir, nm, l - 8);
            dir[l - 8] = 0;
        }
    }
    if (found_pkl != 1)
        return err_set(err, SIM_ERR_FORMAT, "%s: %s data.pkl (not a PyTorch zip checkpoint?)", what, found_pkl ? "more than one" : "no");
    char name[512];
    uint8_t *bo = NULL;
    size_t bl;
    snprintf(name, sizeof name, "%sbyteorder", dir);
    if (zip_name_locate(za, name, 0) >= 0) {
        sim_status st = read_entry(za, name, 16, &bo, &bl, what, err);
        if (st != SIM_OK) return st;
        bool little = bl == 6 && memcmp(bo, "little", 6) == 0;
        mem_free(bo);
        if (!little) return err_set(err, SIM_ERR_UNSUPPORTED, "%s: big-endian checkpoint", what);
    }
    uint8_t *pkl;
    size_t pl;
    snprintf(name, sizeof name, "%sdata.pkl", dir);
    sim_status st = read_entry(za, name, PTH_MAX_PICKLE, &pkl, &pl, what, err);
    if (st != SIM_OK) return st;
    unpickler u;
    collect c = {0};
    st = unpickle(&u, pkl, pl, what, &c, err);
    st_tensor *ts = NULL;
    char *names = NULL;
    uint8_t *data = NULL;
    size_t total = 0, names_len = 0;
    // Sizes, with every bound checked against the storage's declared numel.
    for (int i = 0; st == SIM_OK && i < c.n; i++) {
        node *t = N(&u, c.v[i].tensor), *s = N(&u, t->storage);
        int64_t shape[ST_MAX_DIMS], stride[ST_MAX_DIMS];
        int nd, nd2;
        int_tuple(&u, t->shape, shape, &nd);
        int_tuple(&u, t->stride, stride, &nd2);
        size_t numel = 1, expect = 1;
        bool ok = true;
        for (int d = nd - 1; d >= 0; d--) {
            if (shape[d] != 1 && (uint64_t)stride[d] != expect) ok = false;
            if (!size_mul(expect, (size_t)shape[d], &expect)) ok = false;
        }
        numel = expect;
        if (!ok) {
            st = err_set(err, SIM_ERR_UNSUPPORTED, "%s: tensor '%s' is not contiguous (or its shape overflows)", what, c.v[i].name);
            break;
        }
        size_t end;
        if (!size_add((size_t)t->i, numel, &end) || end > (uint64_t)s->i) {
            st = err_set(err, SIM_ERR_FORMAT, "%s: tensor '%s' (offset %lld, %zu elements) runs past its storage of %lld", what, c.v[i].name,
                         (long long)t->i, numel, (long long)s->i);
            break;
        }
        size_t bytes;
        if (!size_mul(numel, st_dtype_size((st_dtype)t->dtype), &bytes) || !size_add(total, bytes, &total) || total > PTH_MAX_DATA) {
            st = err_set(err, SIM_ERR_FORMAT, "%s: tensors larger than %llu bytes", what, (unsigned long long)PTH_MAX_DATA);
            break;
        }
        names_len += strlen(c.v[i].name) + 1;
    }
    if (st == SIM_OK) {
        ts = mem_calloc((size_t)(c.n ? c.n : 1), sizeof *ts);
        names = mem_alloc(names_len ? names_len : 1);
        data = mem_alloc(total ? total : 1);
        if (!ts || !names || !data) st = err_set(err, SIM_ERR_NOMEM, "%s: out of memory for %zu bytes of tensors", what, total);
    }
    // Bytes: each storage read once per tensor that uses it (storages are rarely shared).
    size_t off = 0, noff = 0;
    for (int i = 0; st == SIM_OK && i < c.n; i++) {
        node *t = N(&u, c.v[i].tensor), *s = N(&u, t->storage);
        st_tensor *o = &ts[i];
        int nd2;
        int_tuple(&u, t->shape, o->shape, &o->n_dims);
        int64_t stride[ST_MAX_DIMS];
        int_tuple(&u, t->stride, stride, &nd2);
        o->dtype = (st_dtype)t->dtype;
        o->n_elem = 1;
        for (int d = 0; d < o->n_dims; d++) o->n_elem *= o->shape[d];
        size_t es = st_dtype_size(o->dtype);
        o->size = (size_t)o->n_elem * es;
        snprintf(name, sizeof name, "%sdata/%.*s", dir, (int)s->len, s->s);
        uint8_t *sb;
        size_t sl;
        if ((st = read_entry(za, name, PTH_MAX_DATA, &sb, &sl, what, err)) != SIM_OK) break;
        if (sl != (size_t)s->i * es) {
            st = err_set(err, SIM_ERR_FORMAT, "%s: storage '%s' is %zu bytes, its pickle says %lld elements of %zu", what, name, sl, (long long)s->i, es);
            mem_free(sb);
            break;
        }
        memcpy(data + off, sb + (size_t)t->i * es, o->size);
        mem_free(sb);
        o->data = data + off;
        off += o->size;
        size_t nl = strlen(c.v[i].name);
        memcpy(names + noff, c.v[i].name, nl + 1);
        o->name = names + noff;
        noff += nl + 1;
    }
    int n = c.n;
    mem_free(c.v);
    unpickler_free(&u);
    mem_free(pkl);
    if (st != SIM_OK) {
        mem_free(ts), mem_free(names), mem_free(data);
        return st;
    }
    return st_from_parts(out, what, ts, n, names, data, total, err);
}

static sim_status open_source(st_file **out, zip_source_t *src, const char *what, sim_err *err) {
    zip_error_t ze;
    zip_error_init(&ze);
    zip_t *za = zip_open_from_source(src, ZIP_RDONLY, &ze);
    if (!za) {
        sim_status st = err_set(err, zip_error_code_zip(&ze) == ZIP_ER_MEMORY ? SIM_ERR_NOMEM : SIM_ERR_FORMAT, "%s: not a zip archive: %s",
                                what, zip_error_strerror(&ze));
        zip_error_fini(&ze);
        zip_source_free(src);
        return st;
    }
    zip_error_fini(&ze);
    sim_status st = open_zip(out, za, what, err);
    zip_discard(za);
    return st;
}

sim_status pth_open_memory(st_file **out, const uint8_t *data, size_t size, const char *name, sim_err *err) {
    *out = NULL;
    zip_error_t ze;
    zip_error_init(&ze);
    zip_source_t *src = zip_source_buffer_create(data, size, 0, &ze);
    zip_error_fini(&ze);
    if (!src) return err_set(err, SIM_ERR_NOMEM, "%s: out of memory", name);
    return open_source(out, src, name, err);
}

sim_status pth_open(st_file **out, const char *path, sim_err *err) {
    *out = NULL;
    file_map m;
    sim_status st = file_map_open(&m, path, err);
    if (st != SIM_OK) return st;
    st = m.data ? pth_open_memory(out, m.data, m.size, path, err) : err_set(err, SIM_ERR_FORMAT, "%s: empty file", path);
    file_map_close(&m);
    return st;
}
