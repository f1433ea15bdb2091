// jsonschema.c — JSON Schema → GBNF. See jsonschema.h for the subset.
//
// gen() turns one schema into a GBNF expression (a fragment such as
// `string`, `"\"a\"" | "\"b\""` or the name of a rule it defined). Objects
// and arrays get rules of their own, named after their place in the schema;
// referenced definitions get one rule each, defined the first time they are
// met (so recursion refers to the rule by name). While a definition's body
// has matched nothing yet, the definitions it refers to are recorded as
// "leftmost" edges; a cycle of them is a schema that never reaches a value.
#include "infer/jsonschema.h"

#include <jansson.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "base/strbuf.h"
#include "infer/grammar.h"

// --- converter state -----------------------------------------------------------------

enum {
    USE_WS = 1 << 0,
    USE_STRING = 1 << 1,
    USE_CHAR = 1 << 2,
    USE_NUMBER = 1 << 3,
    USE_INTEGER = 1 << 4,
    USE_BOOLEAN = 1 << 5,
    USE_NULL = 1 << 6,
    USE_VALUE = 1 << 7,
};

typedef struct jdef {
    const json_t *target; // the schema a reference points to
    char *name;           // its rule
    char *path;           // its JSON pointer (for messages)
} jdef;

typedef struct conv {
    const json_t *root;
    sbuf rules;     // rule definitions so far
    unsigned used;  // USE_* shared rules needed
    char path[1024];
    size_t plen;
    bool path_cut;  // path longer than the buffer
    char **names;   // rule names taken (open addressing)
    size_t names_cap, n_names;
    jdef *defs;
    size_t n_defs, cap_defs;
    int32_t *edges; // pairs (from def, to def): leftmost references
    size_t n_edges, cap_edges;
    int depth;
    sim_err *err;
    sim_status st;
} conv;

__attribute__((format(printf, 3, 4))) static char *cerr(conv *c, sim_status code, const char *fmt, ...) {
    if (c->st != SIM_OK) return NULL;
    char what[400];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(what, sizeof what, fmt, ap);
    va_end(ap);
    c->st = err_set(c->err, code, "%s%s: %s", c->plen ? c->path : "(schema root)", c->path_cut ? "..." : "", what);
    return NULL;
}

static char *nomem(conv *c) {
    if (c->st == SIM_OK) c->st = err_set(c->err, SIM_ERR_NOMEM, "out of memory converting the JSON schema");
    return NULL;
}

// Appends "/" + a JSON-pointer-escaped component; returns the old length.
static size_t path_push(conv *c, const char *comp) {
    size_t old = c->plen;
    char buf[sizeof c->path];
    size_t k = 0;
    buf[k++] = '/';
    for (const char *p = comp; *p && k + 2 < sizeof buf; p++) {
        if (*p == '~') buf[k++] = '~', buf[k++] = '0';
        else if (*p == '/') buf[k++] = '~', buf[k++] = '1';
        else buf[k++] = *p;
    }
    if (c->plen + k + 1 > sizeof c->path) {
        c->path_cut = true;
        return old;
    }
    memcpy(c->path + c->plen, buf, k);
    c->plen += k;
    c->path[c->plen] = 0;
    return old;
}

static size_t path_push_idx(conv *c, size_t i) {
    char b[32];
    snprintf(b, sizeof b, "%zu", i);
    return path_push(c, b);
}

static void path_pop(conv *c, size_t old) {
    c->plen = old;
    c->path[old] = 0;
}

static uint32_t str_hash(const char *s) {
    uint32_t h = 2166136261u;
    for (; *s; s++) h = (h ^ (uint8_t)*s) * 16777619u;
    return h;
}

static bool name_taken(const conv *c, const char *s) {
    if (!c->names_cap) return false;
    for (size_t i = str_hash(s) & (c->names_cap - 1); c->names[i]; i = (i + 1) & (c->names_cap - 1))
        if (strcmp(c->names[i], s) == 0) return true;
    return false;
}

static bool name_add(conv *c, char *s) {
    if ((c->n_names + 1) * 2 > c->names_cap) {
        size_t nc = c->names_cap ? c->names_cap * 2 : 64;
        char **t = mem_calloc(nc, sizeof(char *));
        if (!t) return false;
        for (size_t i = 0; i < c->names_cap; i++) {
            if (!c->names[i]) continue;
            size_t h = str_hash(c->names[i]) & (nc - 1);
            while (t[h]) h = (h + 1) & (nc - 1);
            t[h] = c->names[i];
        }
        mem_free(c->names);
        c->names = t, c->names_cap = nc;
    }
    size_t h = str_hash(s) & (c->names_cap - 1);
    while (c->names[h]) h = (h + 1) & (c->names_cap - 1);
    c->names[h] = s;
    c->n_names++;
    return true;
}

// A new rule name from hint (letters, digits and '-'; other characters become
// '-'), made unique with a number. Owned by c.
static const char *new_name(conv *c, const char *hint) {
    char base[72];
    size_t k = 0;
    for (const char *p = hint; *p && k < 60; p++) {
        char ch = *p;
        bool ok = (ch >= 'a' && ch <= 'z') || (ch >= 'A' && ch <= 'Z') || (ch >= '0' && ch <= '9');
        if (ok) base[k++] = ch;
        else if (k && base[k - 1] != '-') base[k++] = '-';
    }
    while (k && base[k - 1] == '-') k--;
    if (!k) memcpy(base, "item", 4), k = 4;
    base[k] = 0;
    char buf[96];
    snprintf(buf, sizeof buf, "%s", base);
    for (unsigned i = 1; name_taken(c, buf); i++) snprintf(buf, sizeof buf, "%s-%u", base, i);
    char *s = mem_strdup(buf);
    if (!s || !name_add(c, s)) {
        mem_free(s);
        return nomem(c);
    }
    return s;
}

static void define(conv *c, const char *name, const char *body) {
    sb_str(&c->rules, name);
    sb_str(&c->rules, " ::= ");
    sb_str(&c->rules, body);
    sb_str(&c->rules, "\n");
    if (c->rules.oom) nomem(c);
}

static char *dup_str(conv *c, const char *s) {
    char *d = mem_strdup(s);
    return d ? d : nomem(c);
}

static char *take(conv *c, sbuf *b) {
    if (b->oom) {
        mem_free(b->s);
        return nomem(c);
    }
    if (!b->s) return dup_str(c, "");
    return b->s;
}

// --- keyword helpers -------------------------------------------------------------------

// A non-negative integer keyword, at most GRAM_MAX_REPEAT: false (error set) if malformed.
static bool get_count(conv *c, const json_t *s, const char *key, long *out, bool *present) {
    *present = false;
    const json_t *v = json_object_get(s, key);
    if (!v) return true;
    size_t old = path_push(c, key);
    double d = json_is_integer(v) ? (double)json_integer_value(v) : json_is_real(v) ? json_real_value(v) : -1;
    bool ok = false;
    if (!json_is_number(v) || d < 0 || d != (double)(long)d) cerr(c, SIM_ERR_FORMAT, "must be a non-negative integer");
    else if (d > GRAM_MAX_REPEAT) cerr(c, SIM_ERR_UNSUPPORTED, "%.0f is above the supported maximum %d", d, GRAM_MAX_REPEAT);
    else *out = (long)d, *present = ok = true;
    path_pop(c, old);
    return ok;
}

static const char *const refused[] = {
    "pattern",         "patternProperties", "allOf",         "not",           "if",
    "then",            "else",              "prefixItems",   "contains",      "minContains",
    "maxContains",     "uniqueItems",       "propertyNames", "minProperties", "maxProperties",
    "dependentRequired", "dependentSchemas", "dependencies", "unevaluatedProperties", "unevaluatedItems",
    "additionalItems", "$dynamicRef",       "$recursiveRef",
};

static bool check_refused(conv *c, const json_t *s) {
    for (size_t i = 0; i < ARRAY_LEN(refused); i++) {
        if (!json_object_get(s, refused[i])) continue;
        size_t old = path_push(c, refused[i]);
        cerr(c, SIM_ERR_UNSUPPORTED, "\"%s\" is not supported", refused[i]);
        path_pop(c, old);
        return false;
    }
    return true;
}

static char *gen(conv *c, const json_t *s, const char *hint, int lead);

// The GBNF literal for a JSON value in compact form.
static char *gen_literal(conv *c, const json_t *v) {
    char *txt = json_dumps(v, JSON_ENCODE_ANY | JSON_COMPACT | JSON_REAL_PRECISION(17));
    if (!txt) return nomem(c);
    sbuf b = {0};
    gram_sb_literal(&b, txt, strlen(txt));
    free(txt); // Jansson's allocator
    return take(c, &b);
}

static char *gen_enum(conv *c, const json_t *arr) {
    size_t old = path_push(c, "enum");
    if (!json_is_array(arr) || json_array_size(arr) == 0) {
        cerr(c, SIM_ERR_FORMAT, "must be a non-empty array");
        path_pop(c, old);
        return NULL;
    }
    sbuf b = {0};
    sb_str(&b, "(");
    for (size_t i = 0; i < json_array_size(arr); i++) {
        char *lit = gen_literal(c, json_array_get(arr, i));
        if (!lit) {
            mem_free(b.s);
            path_pop(c, old);
            return NULL;
        }
        if (i) sb_str(&b, " | ");
        sb_str(&b, lit);
        mem_free(lit);
    }
    sb_str(&b, ")");
    path_pop(c, old);
    return take(c, &b);
}

static char *gen_alternatives(conv *c, const json_t *arr, const char *kw, const char *hint, int lead) {
    size_t old = path_push(c, kw);
    if (!json_is_array(arr) || json_array_size(arr) == 0) {
        cerr(c, SIM_ERR_FORMAT, "must be a non-empty array of schemas");
        path_pop(c, old);
        return NULL;
    }
    sbuf b = {0};
    sb_str(&b, "(");
    for (size_t i = 0; i < json_array_size(arr); i++) {
        size_t o2 = path_push_idx(c, i);
        char *e = gen(c, json_array_get(arr, i), hint, lead);
        path_pop(c, o2);
        if (!e) {
            mem_free(b.s);
            path_pop(c, old);
            return NULL;
        }
        if (i) sb_str(&b, " | ");
        sb_str(&b, e);
        mem_free(e);
    }
    sb_str(&b, ")");
    path_pop(c, old);
    return take(c, &b);
}

// Resolves a "#/a/b" pointer in the root schema; NULL if absent.
static const json_t *resolve(const json_t *root, const char *ref) {
    if (ref[0] != '#') return NULL;
    const json_t *v = root;
    const char *p = ref + 1;
    if (*p == 0) return v;
    if (*p != '/') return NULL;
    while (*p == '/' && v) {
        p++;
        char comp[256];
        size_t k = 0;
        while (*p && *p != '/') {
            char ch = *p++;
            if (ch == '~' && *p == '0') ch = '~', p++;
            else if (ch == '~' && *p == '1') ch = '/', p++;
            else if (ch == '%') return NULL; // percent-encoding: not supported
            if (k + 1 >= sizeof comp) return NULL;
            comp[k++] = ch;
        }
        comp[k] = 0;
        if (json_is_object(v)) v = json_object_get(v, comp);
        else if (json_is_array(v)) {
            char *end;
            long i = strtol(comp, &end, 10);
            v = (*end || !k || i < 0) ? NULL : json_array_get(v, (size_t)i);
        } else v = NULL;
    }
    return v;
}

static bool add_edge(conv *c, int from, int to) {
    if (c->n_edges + 2 > c->cap_edges) {
        size_t cap = c->cap_edges ? c->cap_edges * 2 : 32;
        int32_t *e = mem_realloc(c->edges, cap * sizeof(int32_t));
        if (!e) return false;
        c->edges = e, c->cap_edges = cap;
    }
    c->edges[c->n_edges++] = from;
    c->edges[c->n_edges++] = to;
    return true;
}

// The rule for the target of $ref (defined on first use).
static char *gen_ref(conv *c, const json_t *ref, int lead) {
    size_t old = path_push(c, "$ref");
    if (!json_is_string(ref)) {
        cerr(c, SIM_ERR_FORMAT, "must be a string");
        path_pop(c, old);
        return NULL;
    }
    const char *r = json_string_value(ref);
    const json_t *t = resolve(c->root, r);
    if (!t) {
        if (r[0] != '#') cerr(c, SIM_ERR_UNSUPPORTED, "external reference \"%s\" is not supported (only \"#/...\")", r);
        else cerr(c, SIM_ERR_FORMAT, "reference \"%s\" points to nothing in the schema", r);
        path_pop(c, old);
        return NULL;
    }
    path_pop(c, old);
    size_t d;
    for (d = 0; d < c->n_defs; d++)
        if (c->defs[d].target == t) break;
    if (d == c->n_defs) {
        if (c->n_defs == c->cap_defs) {
            size_t cap = c->cap_defs ? c->cap_defs * 2 : 16;
            jdef *nd = mem_realloc(c->defs, cap * sizeof(jdef));
            if (!nd) return nomem(c);
            c->defs = nd, c->cap_defs = cap;
        }
        const char *slash = strrchr(r, '/');
        const char *name = new_name(c, slash ? slash + 1 : "ref");
        char *path = name ? mem_strdup(r + 1) : NULL;
        if (!name || !path) {
            mem_free(path);
            return nomem(c);
        }
        c->defs[d] = (jdef){t, (char *)name, path};
        c->n_defs++;
        if (lead >= 0 && !add_edge(c, lead, (int)d)) return nomem(c);
        // Define it now, with the pointer as the path for its messages.
        char saved[sizeof c->path];
        size_t saved_len = c->plen;
        bool saved_cut = c->path_cut;
        memcpy(saved, c->path, c->plen + 1);
        snprintf(c->path, sizeof c->path, "%s", path);
        c->plen = strlen(c->path);
        char *body = gen(c, t, name, (int)d);
        memcpy(c->path, saved, saved_len + 1);
        c->plen = saved_len, c->path_cut = saved_cut;
        if (!body) return NULL;
        define(c, name, body);
        mem_free(body);
    } else if (lead >= 0 && !add_edge(c, lead, (int)d)) return nomem(c);
    return dup_str(c, c->defs[d].name);
}

static char *gen_string(conv *c, const json_t *s) {
    long min = 0, max = -1;
    bool has_min, has_max;
    if (!get_count(c, s, "minLength", &min, &has_min) || !get_count(c, s, "maxLength", &max, &has_max)) return NULL;
    if (!has_min) min = 0;
    if (!has_max) max = -1;
    if (max >= 0 && max < min) {
        size_t old = path_push(c, "maxLength");
        cerr(c, SIM_ERR_FORMAT, "maxLength %ld is below minLength %ld", max, min);
        path_pop(c, old);
        return NULL;
    }
    if (!has_min && !has_max) {
        c->used |= USE_STRING | USE_CHAR;
        return dup_str(c, "string");
    }
    c->used |= USE_CHAR;
    sbuf b = {0};
    if (max < 0) sb_printf(&b, "\"\\\"\" char{%ld,} \"\\\"\"", min);
    else sb_printf(&b, "\"\\\"\" char{%ld,%ld} \"\\\"\"", min, max);
    return take(c, &b);
}

static char *gen_array(conv *c, const json_t *s, const char *hint) {
    long min = 0, max = -1;
    bool has_min, has_max;
    if (!get_count(c, s, "minItems", &min, &has_min) || !get_count(c, s, "maxItems", &max, &has_max)) return NULL;
    if (!has_min) min = 0;
    if (!has_max) max = -1;
    if (max >= 0 && max < min) {
        size_t old = path_push(c, "maxItems");
        cerr(c, SIM_ERR_FORMAT, "maxItems %ld is below minItems %ld", max, min);
        path_pop(c, old);
        return NULL;
    }
    const json_t *items = json_object_get(s, "items");
    char *item;
    if (items) {
        size_t old = path_push(c, "items");
        if (json_is_array(items)) {
            cerr(c, SIM_ERR_UNSUPPORTED, "an array of item schemas (tuple) is not supported");
            path_pop(c, old);
            return NULL;
        }
        char ih[96];
        snprintf(ih, sizeof ih, "%s-item", hint);
        item = gen(c, items, ih, -1);
        path_pop(c, old);
    } else {
        c->used |= USE_VALUE;
        item = dup_str(c, "value");
    }
    if (!item) return NULL;
    c->used |= USE_WS;
    sbuf b = {0};
    if (max == 0) sb_str(&b, "\"[\" ws \"]\"");
    else if (min == 0) {
        sb_printf(&b, "\"[\" ws (%s ws (\",\" ws %s ws)", item, item);
        if (max < 0) sb_str(&b, "*");
        else if (max > 1) sb_printf(&b, "{0,%ld}", max - 1);
        else sb_str(&b, "{0}");
        sb_str(&b, ")? \"]\"");
    } else {
        sb_printf(&b, "\"[\" ws %s ws (\",\" ws %s ws)", item, item);
        if (max < 0) sb_printf(&b, "{%ld,}", min - 1);
        else sb_printf(&b, "{%ld,%ld}", min - 1, max - 1);
        sb_str(&b, " \"]\"");
    }
    mem_free(item);
    char *body = take(c, &b);
    if (!body) return NULL;
    const char *name = new_name(c, hint);
    if (!name) {
        mem_free(body);
        return NULL;
    }
    define(c, name, body);
    mem_free(body);
    return dup_str(c, name);
}

typedef struct oprop {
    const char *key;
    char *kv;     // rule name of `"key" ws ":" ws value ws`
    bool required;
} oprop;

static char *gen_object(conv *c, const json_t *s, const char *hint) {
    const json_t *props = json_object_get(s, "properties");
    const json_t *req = json_object_get(s, "required");
    const json_t *addl = json_object_get(s, "additionalProperties");
    if (props && !json_is_object(props)) {
        size_t old = path_push(c, "properties");
        cerr(c, SIM_ERR_FORMAT, "must be an object");
        path_pop(c, old);
        return NULL;
    }
    if (req) {
        size_t old = path_push(c, "required");
        bool ok = json_is_array(req);
        if (!ok) cerr(c, SIM_ERR_FORMAT, "must be an array of property names");
        for (size_t i = 0; ok && i < json_array_size(req); i++) {
            if (json_is_string(json_array_get(req, i))) continue;
            size_t o2 = path_push_idx(c, i);
            cerr(c, SIM_ERR_FORMAT, "must be a string");
            path_pop(c, o2);
            ok = false;
        }
        path_pop(c, old);
        if (!ok) return NULL;
    }
    if (addl && !json_is_boolean(addl) && !json_is_object(addl)) {
        size_t old = path_push(c, "additionalProperties");
        cerr(c, SIM_ERR_FORMAT, "must be a boolean or a schema");
        path_pop(c, old);
        return NULL;
    }
    const char *name = new_name(c, hint);
    if (!name) return NULL;
    size_t n_props = props ? json_object_size(props) : 0, n_req = req ? json_array_size(req) : 0;
    oprop *op = mem_calloc(n_props + n_req + 1, sizeof(oprop));
    if (!op) return nomem(c);
    size_t n = 0;
    char *extra = NULL, *body = NULL;
    sbuf b = {0};
    // declared properties, in the order of the schema text (Jansson keeps insertion order)
    const char *key;
    json_t *sub;
    json_object_foreach((json_t *)props, key, sub) {
        op[n].key = key;
        for (size_t i = 0; i < n_req; i++)
            if (strcmp(json_string_value(json_array_get(req, i)), key) == 0) op[n].required = true;
        n++;
    }
    // required names without a property schema take any value
    for (size_t i = 0; i < n_req; i++) {
        const char *rk = json_string_value(json_array_get(req, i));
        bool seen = false;
        for (size_t k = 0; k < n && !seen; k++) seen = strcmp(op[k].key, rk) == 0;
        if (!seen) op[n].key = rk, op[n].required = true, n++;
    }
    c->used |= USE_WS;
    for (size_t i = 0; i < n; i++) {
        const json_t *ps = props ? json_object_get(props, op[i].key) : NULL;
        char *val;
        char vh[96];
        snprintf(vh, sizeof vh, "%s-%s", name, op[i].key);
        if (ps) {
            size_t o1 = path_push(c, "properties");
            size_t o2 = path_push(c, op[i].key);
            val = gen(c, ps, vh, -1);
            path_pop(c, o2);
            path_pop(c, o1);
        } else {
            c->used |= USE_VALUE;
            val = dup_str(c, "value");
        }
        if (!val) goto out;
        sbuf kv = {0};
        size_t klen = strlen(op[i].key);
        // the key as JSON text ("a\"b"), then as a GBNF literal
        json_t *ks = json_stringn(op[i].key, klen);
        char *kj = ks ? json_dumps(ks, JSON_ENCODE_ANY) : NULL;
        json_decref(ks);
        if (!kj) {
            mem_free(val);
            nomem(c);
            goto out;
        }
        gram_sb_literal(&kv, kj, strlen(kj));
        free(kj);
        sb_printf(&kv, " ws \":\" ws %s ws", val);
        mem_free(val);
        char *kvb = take(c, &kv);
        if (!kvb) goto out;
        char kh[96];
        snprintf(kh, sizeof kh, "%s-%s-kv", name, op[i].key);
        const char *kvn = new_name(c, kh);
        if (kvn) define(c, kvn, kvb);
        mem_free(kvb);
        if (!kvn || !(op[i].kv = dup_str(c, kvn))) goto out;
    }
    bool more = addl && (json_is_true(addl) || json_is_object(addl));
    if (more) {
        char *val;
        if (json_is_object(addl)) {
            size_t o1 = path_push(c, "additionalProperties");
            char vh[96];
            snprintf(vh, sizeof vh, "%s-additional", name);
            val = gen(c, addl, vh, -1);
            path_pop(c, o1);
        } else {
            c->used |= USE_VALUE;
            val = dup_str(c, "value");
        }
        if (!val) goto out;
        c->used |= USE_STRING | USE_CHAR;
        sbuf eb = {0};
        sb_printf(&eb, "string ws \":\" ws %s ws", val);
        mem_free(val);
        char *eb_s = take(c, &eb);
        char eh[96];
        snprintf(eh, sizeof eh, "%s-additional-kv", name);
        const char *en = eb_s ? new_name(c, eh) : NULL;
        if (en) define(c, en, eb_s);
        mem_free(eb_s);
        if (!en || !(extra = dup_str(c, en))) goto out;
    }
    // rest_i: what may follow once something was written, from property i on
    // (a chain of rules keeps the grammar linear in the number of properties).
    // first: alternatives for the first property written.
    size_t first_req = n;
    for (size_t i = 0; i < n; i++)
        if (op[i].required) {
            first_req = i;
            break;
        }
    char **rest = mem_calloc(n + 2, sizeof(char *));
    if (!rest) {
        nomem(c);
        goto out;
    }
    bool ok = true;
    for (size_t i = n + 1; ok && i-- > 0;) {
        sbuf rb = {0};
        if (i == n) {
            if (extra) sb_printf(&rb, "(\",\" ws %s)*", extra);
        } else {
            if (op[i].required) sb_printf(&rb, "\",\" ws %s", op[i].kv);
            else sb_printf(&rb, "(\",\" ws %s)?", op[i].kv);
            if (rest[i + 1][0]) sb_printf(&rb, " %s", rest[i + 1]);
        }
        char *rbody = take(c, &rb);
        if (!rbody) {
            ok = false;
            break;
        }
        // short rests stay inline; longer ones become rules
        if (i < n && strlen(rbody) > 60) {
            char rh[96];
            snprintf(rh, sizeof rh, "%s-rest", name);
            const char *rn = new_name(c, rh);
            if (rn) define(c, rn, rbody);
            mem_free(rbody);
            rbody = rn ? dup_str(c, rn) : NULL;
            if (!rbody) {
                ok = false;
                break;
            }
        }
        rest[i] = rbody;
    }
    if (ok) {
        sb_str(&b, "\"{\" ws ");
        sbuf alts = {0};
        size_t n_alts = 0;
        for (size_t i = 0; i <= first_req && i < n; i++, n_alts++)
            sb_printf(&alts, "%s%s%s%s", n_alts ? " | " : "", op[i].kv, rest[i + 1][0] ? " " : "", rest[i + 1]);
        if (first_req == n && extra) sb_printf(&alts, "%s%s%s%s", n_alts++ ? " | " : "", extra, rest[n][0] ? " " : "", rest[n]);
        if (n_alts == 0) sb_str(&b, "\"}\"");
        else if (first_req == n) sb_printf(&b, "(%s)? \"}\"", alts.s ? alts.s : "");
        else sb_printf(&b, "(%s) \"}\"", alts.s ? alts.s : "");
        if (alts.oom) b.oom = true;
        mem_free(alts.s);
        body = take(c, &b);
        b.s = NULL;
        if (body) define(c, name, body);
    }
    for (size_t i = 0; i <= n; i++) mem_free(rest[i]);
    mem_free(rest);
out:
    mem_free(b.s);
    for (size_t i = 0; i < n; i++) mem_free(op[i].kv);
    mem_free(op);
    mem_free(extra);
    if (!body || c->st != SIM_OK) {
        mem_free(body);
        return NULL;
    }
    mem_free(body);
    return dup_str(c, name);
}

static char *gen_type(conv *c, const json_t *s, const char *t, const char *hint) {
    if (strcmp(t, "object") == 0) return gen_object(c, s, hint);
    if (strcmp(t, "array") == 0) return gen_array(c, s, hint);
    if (strcmp(t, "string") == 0) return gen_string(c, s);
    if (strcmp(t, "number") == 0) return c->used |= USE_NUMBER | USE_INTEGER, dup_str(c, "number");
    if (strcmp(t, "integer") == 0) return c->used |= USE_INTEGER, dup_str(c, "integer");
    if (strcmp(t, "boolean") == 0) return c->used |= USE_BOOLEAN, dup_str(c, "boolean");
    if (strcmp(t, "null") == 0) return c->used |= USE_NULL, dup_str(c, "null");
    return cerr(c, SIM_ERR_FORMAT, "unknown type \"%s\"", t);
}

// lead: the definition whose body this schema starts (nothing matched yet), or -1.
static char *gen(conv *c, const json_t *s, const char *hint, int lead) {
    if (c->st != SIM_OK) return NULL;
    if (json_is_true(s)) return c->used |= USE_VALUE, dup_str(c, "value");
    if (json_is_false(s)) return cerr(c, SIM_ERR_UNSUPPORTED, "the schema false matches nothing");
    if (!json_is_object(s)) return cerr(c, SIM_ERR_FORMAT, "a schema must be an object or a boolean");
    if (++c->depth > JSCH_MAX_DEPTH) return cerr(c, SIM_ERR_UNSUPPORTED, "schema nested deeper than %d", JSCH_MAX_DEPTH);
    char *res = NULL;
    const json_t *v;
    if (!check_refused(c, s)) goto out;
    if ((v = json_object_get(s, "$ref"))) res = gen_ref(c, v, lead);
    else if ((v = json_object_get(s, "const"))) {
        size_t old = path_push(c, "const");
        res = gen_literal(c, v);
        path_pop(c, old);
    } else if ((v = json_object_get(s, "enum"))) res = gen_enum(c, v);
    else if ((v = json_object_get(s, "anyOf"))) res = gen_alternatives(c, v, "anyOf", hint, lead);
    else if ((v = json_object_get(s, "oneOf"))) res = gen_alternatives(c, v, "oneOf", hint, lead);
    else if ((v = json_object_get(s, "type"))) {
        size_t old = path_push(c, "type");
        if (json_is_string(v)) {
            path_pop(c, old);
            const char *t = json_string_value(v);
            old = path_push(c, "type");
            bool known = false;
            static const char *const types[] = {"object", "array", "string", "number", "integer", "boolean", "null"};
            for (size_t i = 0; i < ARRAY_LEN(types); i++) known |= strcmp(t, types[i]) == 0;
            if (!known) cerr(c, SIM_ERR_FORMAT, "unknown type \"%s\"", t);
            path_pop(c, old);
            if (known) res = gen_type(c, s, t, hint);
        } else if (json_is_array(v) && json_array_size(v) > 0) {
            sbuf b = {0};
            sb_str(&b, "(");
            bool ok = true;
            for (size_t i = 0; ok && i < json_array_size(v); i++) {
                const json_t *t = json_array_get(v, i);
                size_t o2 = path_push_idx(c, i);
                if (!json_is_string(t)) {
                    cerr(c, SIM_ERR_FORMAT, "must be a type name");
                    ok = false;
                } else {
                    // messages about the type name point at it; the rest at the schema
                    static const char *const types[] = {"object", "array", "string", "number", "integer", "boolean", "null"};
                    bool known = false;
                    for (size_t k = 0; k < ARRAY_LEN(types); k++) known |= strcmp(json_string_value(t), types[k]) == 0;
                    if (!known) {
                        cerr(c, SIM_ERR_FORMAT, "unknown type \"%s\"", json_string_value(t));
                        ok = false;
                    }
                }
                path_pop(c, o2);
                if (!ok) break;
                path_pop(c, old);
                char *e = gen_type(c, s, json_string_value(t), hint);
                old = path_push(c, "type");
                if (!e) {
                    ok = false;
                    break;
                }
                sb_printf(&b, "%s%s", i ? " | " : "", e);
                mem_free(e);
            }
            path_pop(c, old);
            sb_str(&b, ")");
            if (ok) res = take(c, &b);
            else mem_free(b.s);
        } else {
            cerr(c, SIM_ERR_FORMAT, "must be a type name or a non-empty array of them");
            path_pop(c, old);
        }
    } else if (json_object_get(s, "properties") || json_object_get(s, "required") ||
               json_object_get(s, "additionalProperties"))
        res = gen_object(c, s, hint);
    else if (json_object_get(s, "items") || json_object_get(s, "minItems") || json_object_get(s, "maxItems"))
        res = gen_array(c, s, hint);
    else if (json_object_get(s, "minLength") || json_object_get(s, "maxLength"))
        res = gen_string(c, s);
    else res = (c->used |= USE_VALUE, dup_str(c, "value"));
out:
    c->depth--;
    if (c->st != SIM_OK) {
        mem_free(res);
        return NULL;
    }
    return res;
}

// A cycle of leftmost references: reports it.
static bool check_ref_cycles(conv *c) {
    size_t n = c->n_defs;
    if (!n) return true;
    uint8_t *color = mem_calloc(n, 1);
    int32_t *stack = mem_alloc(n * sizeof(int32_t));
    size_t *it = mem_alloc(n * sizeof(size_t));
    bool ok = true;
    if (!color || !stack || !it) {
        nomem(c);
        ok = false;
        goto out;
    }
    for (size_t s0 = 0; ok && s0 < n; s0++) {
        if (color[s0]) continue;
        size_t sp = 0;
        stack[0] = (int32_t)s0, it[0] = 0, color[s0] = 1;
        while (ok && sp != (size_t)-1) {
            int32_t d = stack[sp];
            bool pushed = false;
            while (it[sp] < c->n_edges) {
                size_t e = it[sp];
                it[sp] += 2;
                if (c->edges[e] != d) continue;
                int32_t t = c->edges[e + 1];
                if (color[t] == 1) {
                    sbuf b = {0};
                    size_t from = sp;
                    while (stack[from] != t) from--;
                    for (size_t k = from; k <= sp; k++) sb_printf(&b, "#%s -> ", c->defs[stack[k]].path);
                    sb_printf(&b, "#%s", c->defs[t].path);
                    snprintf(c->path, sizeof c->path, "%s", c->defs[t].path);
                    c->plen = strlen(c->path);
                    cerr(c, SIM_ERR_FORMAT, "$ref cycle that never reaches a value: %s", b.s ? b.s : "");
                    mem_free(b.s);
                    ok = false;
                    break;
                }
                if (color[t] == 0) {
                    color[t] = 1;
                    stack[++sp] = t, it[sp] = 0;
                    pushed = true;
                    break;
                }
            }
            if (!ok || pushed) continue;
            color[d] = 2;
            sp--;
        }
    }
out:
    mem_free(color);
    mem_free(stack);
    mem_free(it);
    return ok;
}

static void conv_free(conv *c) {
    mem_free(c->rules.s);
    for (size_t i = 0; i < c->names_cap; i++) mem_free(c->names[i]);
    mem_free(c->names);
    for (size_t i = 0; i < c->n_defs; i++) mem_free(c->defs[i].path);
    mem_free(c->defs);
    mem_free(c->edges);
}

sim_status jsch_to_gbnf(const char *schema, size_t len, char **out, sim_err *err) {
    if (!out) return err_set(err, SIM_ERR_ARG, "jsch_to_gbnf: NULL output");
    *out = NULL;
    if (!schema && len) return err_set(err, SIM_ERR_ARG, "jsch_to_gbnf: NULL schema");
    json_error_t je;
    json_t *root = json_loadb(schema ? schema : "", len, JSON_REJECT_DUPLICATES | JSON_DECODE_ANY, &je);
    if (!root) return err_set(err, SIM_ERR_FORMAT, "line %d, column %d: %s", je.line, je.column, je.text);
    conv c = {.root = root, .err = err};
    // names the shared rules use
    static const char *const fixed[] = {"root", "ws", "string", "char", "number", "integer", "boolean", "null", "value",
                                        "object", "array", "value-object", "value-array", "hex", "digits"};
    for (size_t i = 0; i < ARRAY_LEN(fixed); i++) {
        char *s = mem_strdup(fixed[i]);
        if (!s || !name_add(&c, s)) {
            mem_free(s);
            nomem(&c);
            break;
        }
    }
    char *top = c.st == SIM_OK ? gen(&c, root, "root", -1) : NULL;
    if (top && check_ref_cycles(&c)) {
        sbuf b = {0};
        sb_printf(&b, "root ::= %s\n", top);
        sb_put(&b, c.rules.s ? c.rules.s : "", c.rules.n);
        if (c.used & USE_VALUE) {
            c.used |= USE_STRING | USE_CHAR | USE_NUMBER | USE_INTEGER | USE_BOOLEAN | USE_NULL | USE_WS;
            sb_str(&b, "value ::= value-object | value-array | string | number | boolean | null\n"
                       "value-object ::= \"{\" ws (string ws \":\" ws value ws (\",\" ws string ws \":\" ws value ws)*)? \"}\"\n"
                       "value-array ::= \"[\" ws (value ws (\",\" ws value ws)*)? \"]\"\n");
        }
        if (c.used & USE_STRING) sb_str(&b, "string ::= \"\\\"\" char* \"\\\"\"\n");
        if (c.used & USE_CHAR)
            // no \u escapes of surrogates: unpaired ones are not valid JSON text
            sb_str(&b, "char ::= [^\"\\\\\\x00-\\x1F] | \"\\\\\" ([\"\\\\/bfnrt] | \"u\" ([0-9a-cA-CeEfF] hex{3} | [dD] [0-7] hex{2}))\n"
                       "hex ::= [0-9a-fA-F]\n");
        if (c.used & USE_NUMBER) sb_str(&b, "number ::= integer (\".\" [0-9]{1,16})? ([eE] [-+]? [0-9]{1,2})?\n");
        if (c.used & USE_INTEGER) sb_str(&b, "integer ::= \"-\"? (\"0\" | [1-9] [0-9]{0,15})\n");
        if (c.used & USE_BOOLEAN) sb_str(&b, "boolean ::= \"true\" | \"false\"\n");
        if (c.used & USE_NULL) sb_str(&b, "null ::= \"null\"\n");
        if (c.used & USE_WS) sb_str(&b, "ws ::= | [ \\t] | \"\\n\" [ \\t]{0,20}\n");
        if (b.oom) {
            mem_free(b.s);
            nomem(&c);
        } else {
            // The output must compile (this also applies the grammar's size limits).
            gram_grammar *g;
            sim_err gerr;
            sim_status st = gram_parse(&g, b.s, b.n, &gerr);
            if (st == SIM_OK) {
                gram_free(g);
                *out = b.s;
            } else {
                mem_free(b.s);
                c.st = err_set(err, st == SIM_ERR_FORMAT ? SIM_ERR_UNSUPPORTED : st,
                               "the schema's grammar does not compile: %s", gerr.msg);
            }
        }
    }
    mem_free(top);
    sim_status st = c.st;
    conv_free(&c);
    json_decref(root);
    return st;
}
