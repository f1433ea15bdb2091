// scenario.c — loading and validating scenario packs (docs/scenario-format.md).
//
// Validation walks the manifest once with a JSON path kept in a buffer, so
// every problem is reported where it is, and goes on after each problem so
// one run lists them all. Ids are collected before the walk, so references
// resolve whatever the order of the sections.
#include "story/scenario.h"

#include <errno.h>
#include <fcntl.h>
#include <jansson.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "base/file.h"
#include "base/utf8.h"
#include "story/pack.h"

// --- the report -------------------------------------------------------------------------

void scn_report_init(scn_report *r) { memset(r, 0, sizeof *r); }

void scn_report_free(scn_report *r) {
    mem_free(r->items);
    memset(r, 0, sizeof *r);
}

static void copy_trunc(char *dst, size_t cap, const char *src) {
    size_t n = strlen(src);
    if (n >= cap) n = cap - 1;
    memcpy(dst, src, n);
    dst[n] = 0;
}

static bool report_addv(scn_report *r, const char *path, const char *hint, const char *fmt, va_list ap) {
    if (r->n >= SCN_MAX_PROBLEMS) {
        r->n_dropped++;
        return true;
    }
    if (r->n == r->cap) {
        int cap = r->cap ? r->cap * 2 : 16;
        scn_problem *p = mem_realloc(r->items, (size_t)cap * sizeof *p);
        if (!p) return false;
        r->items = p;
        r->cap = cap;
    }
    scn_problem *p = &r->items[r->n++];
    copy_trunc(p->path, sizeof p->path, path);
    copy_trunc(p->hint, sizeof p->hint, hint);
    vsnprintf(p->msg, sizeof p->msg, fmt, ap);
    return true;
}

bool scn_report_add(scn_report *r, const char *path, const char *hint, const char *fmt, ...) {
    va_list ap;
    va_start(ap, fmt);
    bool ok = report_addv(r, path, hint, fmt, ap);
    va_end(ap);
    return ok;
}

// --- the walk's context ---------------------------------------------------------------------

// An asset file already checked (several references may share one file).
typedef struct seen_file {
    const char *path;
    bool ok;                        // exists, inside, regular, small enough, hashed
    char sha256[SHA256_HEX_SIZE];   // when ok
    uint64_t size;
    char msg[400], hint[160];       // when not ok
} seen_file;

typedef struct vctx {
    scn_report *rep;
    scn_scenario *s;
    char path[256];
    size_t plen;
    bool nomem;
    const char *dir;
    pack *pack;       // the folder or zip the files are read from
    seen_file *seen;  // (n_seen)
    int n_seen, cap_seen;
    const char **char_ids; int n_char_ids; // pre-collected ids (entries may be NULL)
    const char **scene_ids; int n_scene_ids;
    const char **loc_ids; int n_loc_ids;
    const char **var_ids; int n_var_ids;
} vctx;

static size_t push_key(vctx *v, const char *key) {
    size_t old = v->plen;
    int n = snprintf(v->path + v->plen, sizeof v->path - v->plen, v->plen ? ".%s" : "%s", key);
    if (n > 0) v->plen = MIN(v->plen + (size_t)n, sizeof v->path - 1);
    return old;
}

static size_t push_idx(vctx *v, size_t i) {
    size_t old = v->plen;
    int n = snprintf(v->path + v->plen, sizeof v->path - v->plen, "[%zu]", i);
    if (n > 0) v->plen = MIN(v->plen + (size_t)n, sizeof v->path - 1);
    return old;
}

static void pop(vctx *v, size_t old) {
    v->plen = old;
    v->path[old] = 0;
}

__attribute__((format(printf, 3, 4))) static void problem(vctx *v, const char *hint, const char *fmt, ...) {
    va_list ap;
    va_start(ap, fmt);
    if (!report_addv(v->rep, v->path, hint, fmt, ap)) v->nomem = true;
    va_end(ap);
}

static void *alloc_n(vctx *v, size_t n, size_t size) {
    if (n == 0) return NULL;
    void *p = mem_calloc(n, size);
    if (!p) v->nomem = true;
    return p;
}

static const char *type_name(const json_t *j) {
    switch (json_typeof(j)) {
    case JSON_OBJECT: return "an object";
    case JSON_ARRAY: return "an array";
    case JSON_STRING: return "a string";
    case JSON_INTEGER: return "an integer";
    case JSON_REAL: return "a number";
    case JSON_TRUE: case JSON_FALSE: return "a boolean";
    case JSON_NULL: return "null";
    }
    return "?";
}

// --- field readers ---------------------------------------------------------------------------
// Each reads obj[key] with the path pushed, reports what is wrong, and returns
// NULL/false when the value is absent or unusable.

// Unknown keys are reported: they are nearly always typos of optional fields.
static void check_keys(vctx *v, json_t *obj, const char *const *allowed) {
    const char *key;
    json_t *val;
    json_object_foreach(obj, key, val) {
        bool ok = false;
        for (const char *const *a = allowed; *a; a++)
            if (strcmp(*a, key) == 0) ok = true;
        if (!ok) {
            size_t o = push_key(v, key);
            problem(v, "remove it, or check its spelling against docs/scenario-format.md", "unknown field '%s'", key);
            pop(v, o);
        }
    }
}

// obj[key] of type `type`, or NULL (reported when required or of the wrong type).
static json_t *field(vctx *v, json_t *obj, const char *key, json_type type, bool required) {
    json_t *j = json_object_get(obj, key);
    if (!j) {
        if (required) {
            size_t o = push_key(v, key);
            problem(v, "add it (see docs/scenario-format.md)", "missing required field '%s'", key);
            pop(v, o);
        }
        return NULL;
    }
    bool ok = json_typeof(j) == type || (type == JSON_TRUE && json_is_boolean(j)) ||
              (type == JSON_REAL && json_is_number(j));
    if (!ok) {
        static const char *names[] = {"an object", "an array", "a string", "an integer", "a number", "a boolean", "a boolean", "null"};
        size_t o = push_key(v, key);
        problem(v, "change its type", "expected %s, found %s", names[type], type_name(j));
        pop(v, o);
        return NULL;
    }
    return j;
}

// A string value already known to be a JSON string: no NUL, bounded length.
static const char *string_value(vctx *v, json_t *j, bool nonempty) {
    const char *s = json_string_value(j);
    size_t n = json_string_length(j);
    if (strlen(s) != n) {
        problem(v, "remove the \\u0000 escape", "the text contains a NUL character");
        return NULL;
    }
    if (n > SCN_MAX_STRING) {
        problem(v, "shorten it", "the text is %zu bytes, more than the %zu-byte limit", n, SCN_MAX_STRING);
        return NULL;
    }
    if (nonempty && n == 0) {
        problem(v, "write something", "the text is empty");
        return NULL;
    }
    return s;
}

static const char *get_string(vctx *v, json_t *obj, const char *key, bool required) {
    json_t *j = field(v, obj, key, JSON_STRING, required);
    if (!j) return NULL;
    size_t o = push_key(v, key);
    const char *s = string_value(v, j, true);
    pop(v, o);
    return s;
}

static bool id_valid(const char *s) {
    size_t n = strlen(s);
    if (n < 1 || n > 64 || !(s[0] >= 'a' && s[0] <= 'z')) return false;
    for (size_t i = 1; i < n; i++) {
        char c = s[i];
        if (!((c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '_' || c == '-')) return false;
    }
    return true;
}

static const char *ID_HINT = "use 1-64 characters a-z, 0-9, '_' or '-', starting with a letter";

// An id string at the current path (already known to be a JSON string).
static const char *id_value(vctx *v, json_t *j) {
    const char *s = string_value(v, j, false);
    if (!s) return NULL;
    if (!id_valid(s)) {
        problem(v, ID_HINT, "'%.80s' is not a valid id", s);
        return NULL;
    }
    return s;
}

static const char *get_id(vctx *v, json_t *obj, const char *key, bool required) {
    json_t *j = field(v, obj, key, JSON_STRING, required);
    if (!j) return NULL;
    size_t o = push_key(v, key);
    const char *s = id_value(v, j);
    pop(v, o);
    return s;
}

// An array with at most SCN_MAX_ITEMS entries (and at least min).
static json_t *get_array(vctx *v, json_t *obj, const char *key, bool required, size_t min) {
    json_t *a = field(v, obj, key, JSON_ARRAY, required);
    if (!a) return NULL;
    size_t n = json_array_size(a);
    size_t o = push_key(v, key);
    if (n > SCN_MAX_ITEMS) {
        problem(v, "split the scenario", "%zu entries, more than the limit of %d", n, SCN_MAX_ITEMS);
        a = NULL;
    } else if (n < min) {
        problem(v, "add one", "needs at least %zu %s", min, min == 1 ? "entry" : "entries");
    }
    pop(v, o);
    return a;
}

static bool get_number(vctx *v, json_t *obj, const char *key, double lo, double hi, bool lo_open,
                       double def, double *out) {
    *out = def;
    json_t *j = field(v, obj, key, JSON_REAL, false);
    if (!j) return json_object_get(obj, key) == NULL;
    double x = json_number_value(j);
    if (!(lo_open ? x > lo : x >= lo) || !(x <= hi)) {
        size_t o = push_key(v, key);
        problem(v, "use a number in range", "%g is outside %s%g, %g]", x, lo_open ? "(" : "[", lo, hi);
        pop(v, o);
        return false;
    }
    *out = x;
    return true;
}

// Finds id in ids[0..n) (entries may be NULL); -1 when absent.
static int find_id(const char *const *ids, int n, const char *id) {
    if (!id) return -1;
    for (int i = 0; i < n; i++)
        if (ids[i] && strcmp(ids[i], id) == 0) return i;
    return -1;
}

// Reports a duplicate of ids[i] among ids[0..i) at the current path.
static void check_dup(vctx *v, const char *const *ids, int i, const char *what) {
    if (!ids[i]) return;
    int j = find_id(ids, i, ids[i]);
    if (j >= 0) problem(v, "give each one its own id", "duplicate %s id '%s' (also at index %d)", what, ids[i], j);
}

// --- texts --------------------------------------------------------------------------------------

static bool locale_valid(const char *s) {
    // BCP 47 in the common shape: "en", "en-US", "zh-Hant-TW": a 2-3 letter
    // language, then subtags of 2-8 letters or digits.
    size_t n = strlen(s), i = 0;
    while (i < n && s[i] >= 'a' && s[i] <= 'z') i++;
    if (i < 2 || i > 3) return false;
    while (i < n) {
        if (s[i++] != '-') return false;
        size_t st = i;
        while (i < n && ((s[i] >= 'a' && s[i] <= 'z') || (s[i] >= 'A' && s[i] <= 'Z') || (s[i] >= '0' && s[i] <= '9'))) i++;
        if (i - st < 2 || i - st > 8) return false;
    }
    return n <= 35;
}

// A text: an object with one string per declared locale.
static bool get_text(vctx *v, json_t *obj, const char *key, bool required, scn_text_map *out) {
    out->v = NULL;
    json_t *m = field(v, obj, key, JSON_OBJECT, required);
    if (!m) return false;
    scn_scenario *s = v->s;
    size_t o = push_key(v, key);
    const char **vals = alloc_n(v, (size_t)s->n_locales, sizeof *vals);
    bool ok = vals != NULL;
    const char *lk;
    json_t *val;
    json_object_foreach(m, lk, val) {
        size_t o2 = push_key(v, lk);
        int li = find_id(s->locales, s->n_locales, lk);
        if (li < 0) {
            problem(v, "add the locale to \"locales\", or remove this text", "'%.40s' is not one of the scenario's locales", lk);
            ok = false;
        } else if (!json_is_string(val)) {
            problem(v, "write the text as a string", "expected a string, found %s", type_name(val));
            ok = false;
        } else {
            const char *t = string_value(v, val, false);
            if (t && vals) vals[li] = t;
            else ok = false;
        }
        pop(v, o2);
    }
    for (int i = 0; i < s->n_locales; i++) {
        if (!json_object_get(m, s->locales[i])) {
            problem(v, "add the translation (every text needs every locale)", "missing the '%s' text", s->locales[i]);
            ok = false;
        }
    }
    pop(v, o);
    if (!ok) {
        mem_free(vals);
        return false;
    }
    out->v = vals;
    return true;
}

static void text_free(scn_text_map *t) { mem_free(t->v); }

const char *scn_text(const scn_scenario *s, const scn_text_map *t, const char *locale) {
    if (!t->v) return NULL;
    int i = locale ? find_id(s->locales, s->n_locales, locale) : -1;
    if (i < 0) i = find_id(s->locales, s->n_locales, "en-US");
    return i >= 0 ? t->v[i] : NULL;
}

// --- assets ---------------------------------------------------------------------------------------

// Checks the file behind a relative path (once per distinct path).
static seen_file *check_file(vctx *v, const char *rel) {
    for (int i = 0; i < v->n_seen; i++)
        if (strcmp(v->seen[i].path, rel) == 0) return &v->seen[i];
    if (v->n_seen == v->cap_seen) {
        int cap = v->cap_seen ? v->cap_seen * 2 : 32;
        seen_file *p = mem_realloc(v->seen, (size_t)cap * sizeof *p);
        if (!p) {
            v->nomem = true;
            return NULL;
        }
        v->seen = p;
        v->cap_seen = cap;
    }
    seen_file *f = &v->seen[v->n_seen++];
    memset(f, 0, sizeof *f);
    f->path = rel;
    // The pack keeps the folder rules (inside after realpath, regular file,
    // size, also while read) and names the entry in a zip.
    const char *hint = "check the file";
    sim_err err;
    pack_file *pf;
    uint64_t size;
    sim_status rc = pack_file_open(v->pack, rel, SCN_MAX_ASSET_BYTES, &pf, &size, &hint, &err);
    if (rc == SIM_OK) {
        sha256_ctx c;
        sha256_init(&c);
        uint8_t buf[1 << 16];
        size_t got;
        uint64_t total = 0;
        while ((rc = pack_file_read(pf, buf, sizeof buf, &got, &hint, &err)) == SIM_OK && got) {
            sha256_update(&c, buf, got);
            total += got;
        }
        pack_file_close(pf);
        if (rc == SIM_OK) {
            uint8_t d[SHA256_SIZE];
            sha256_final(&c, d);
            sha256_hex(d, f->sha256);
            f->size = total;
            f->ok = true;
        }
    }
    if (rc == SIM_ERR_NOMEM) {
        v->nomem = true;
        v->n_seen--;
        return NULL;
    }
    if (!f->ok) {
        copy_trunc(f->msg, sizeof f->msg, err.msg);
        copy_trunc(f->hint, sizeof f->hint, hint);
    }
    return f;
}

static bool sha_valid(const char *s) {
    if (strlen(s) != 64) return false;
    for (int i = 0; i < 64; i++)
        if (!((s[i] >= '0' && s[i] <= '9') || (s[i] >= 'a' && s[i] <= 'f'))) return false;
    return true;
}

// An asset object {path, sha256} (plus the placement keys when `layer`) at
// the current path; checks the file. Returns true when all is well.
static bool asset_value(vctx *v, json_t *a, scn_asset *out, scn_layer *layer) {
    static const char *const asset_keys[] = {"path", "sha256", NULL};
    static const char *const layer_keys[] = {"path", "sha256", "x", "y", "scale", NULL};
    memset(out, 0, sizeof *out);
    if (!json_is_object(a)) {
        problem(v, "write {\"path\": \"...\", \"sha256\": \"...\"}", "expected an asset object, found %s", type_name(a));
        return false;
    }
    check_keys(v, a, layer ? layer_keys : asset_keys);
    bool ok = true;
    if (layer) {
        ok &= get_number(v, a, "x", 0, 1, false, 0, &layer->x);
        ok &= get_number(v, a, "y", 0, 1, false, 0, &layer->y);
        ok &= get_number(v, a, "scale", 0, 4, true, 1, &layer->scale);
    }
    const char *path = get_string(v, a, "path", true);
    const char *sha = get_string(v, a, "sha256", true);
    if (sha && !sha_valid(sha)) {
        size_t o = push_key(v, "sha256");
        problem(v, "write 64 lowercase hex digits (sha256sum FILE prints them)", "'%.80s' is not a SHA-256 digest", sha);
        pop(v, o);
        sha = NULL;
    }
    if (!path) return false;
    const char *hint;
    const char *bad = pack_path_problem(path, &hint);
    size_t o = push_key(v, "path");
    if (bad) {
        problem(v, hint, "%s: '%.200s'", bad, path);
        pop(v, o);
        return false;
    }
    seen_file *f = check_file(v, path);
    if (!f) {
        pop(v, o);
        return false;
    }
    if (!f->ok) {
        problem(v, f->hint, "%s", f->msg);
        pop(v, o);
        return false;
    }
    pop(v, o);
    out->path = path;
    out->size = f->size;
    copy_trunc(out->sha256, sizeof out->sha256, f->sha256);
    if (sha && strcmp(sha, f->sha256) != 0) {
        o = push_key(v, "sha256");
        problem(v, "if the file is right, set sha256 to the file's digest; otherwise restore the file",
                "does not match the file '%.200s' (its SHA-256 is %s)", path, f->sha256);
        pop(v, o);
        return false;
    }
    return ok && sha;
}

static bool get_asset(vctx *v, json_t *obj, const char *key, bool required, scn_asset *out, scn_layer *layer) {
    memset(out, 0, sizeof *out);
    json_t *a = json_object_get(obj, key);
    if (!a) {
        if (required) field(v, obj, key, JSON_OBJECT, true);
        return false;
    }
    size_t o = push_key(v, key);
    bool ok = asset_value(v, a, out, layer);
    pop(v, o);
    return ok;
}

// --- sections --------------------------------------------------------------------------------------

// The ids of arr's entries (NULL where absent or not a string), for references.
static const char **collect_ids(vctx *v, json_t *arr, const char *key, int *n) {
    *n = 0;
    if (!json_is_array(arr) || json_array_size(arr) > SCN_MAX_ITEMS) return NULL;
    size_t count = json_array_size(arr);
    const char **ids = alloc_n(v, count, sizeof *ids);
    if (!ids) return NULL;
    for (size_t i = 0; i < count; i++) {
        json_t *id = json_object_get(json_array_get(arr, i), key);
        ids[i] = json_is_string(id) && id_valid(json_string_value(id)) ? json_string_value(id) : NULL;
    }
    *n = (int)count;
    return ids;
}

// An id referring to one of ids[0..n), with what it is for the message.
static int get_ref(vctx *v, json_t *obj, const char *key, bool required, const char *const *ids, int n,
                   const char *what, const char **out) {
    *out = get_id(v, obj, key, required);
    if (!*out) return -1;
    int i = find_id(ids, n, *out);
    if (i < 0) {
        size_t o = push_key(v, key);
        problem(v, "use the id of an existing entry, or add it", "no %s has the id '%s'", what, *out);
        pop(v, o);
    }
    return i;
}

// An outfit or expression: {id, name, description?, layers: {bodyId: layer}}.
static void parse_variant(vctx *v, json_t *j, scn_variant *out, const scn_character *c) {
    static const char *const keys[] = {"id", "name", "description", "layers", NULL};
    check_keys(v, j, keys);
    out->id = get_id(v, j, "id", true);
    get_text(v, j, "name", true, &out->name);
    get_text(v, j, "description", false, &out->description);
    json_t *layers = field(v, j, "layers", JSON_OBJECT, true);
    if (!layers) return;
    size_t o = push_key(v, "layers");
    out->layers = alloc_n(v, (size_t)c->n_bodies, sizeof *out->layers);
    const char *bk;
    json_t *lv;
    json_object_foreach(layers, bk, lv) {
        size_t o2 = push_key(v, bk);
        int bi = -1;
        for (int i = 0; i < c->n_bodies; i++)
            if (c->bodies[i].id && strcmp(c->bodies[i].id, bk) == 0) bi = i;
        if (bi < 0) {
            problem(v, "key each layer by one of the character's body ids", "'%.64s' is not a body of this character", bk);
        } else {
            scn_layer tmp;
            scn_layer *L = out->layers ? &out->layers[bi] : &tmp;
            asset_value(v, lv, &L->image, L);
        }
        pop(v, o2);
    }
    for (int i = 0; i < c->n_bodies; i++)
        if (c->bodies[i].id && !json_object_get(layers, c->bodies[i].id))
            problem(v, "add a layer for every body (sprites are bodies x outfits x expressions)",
                    "no layer for the body '%s'", c->bodies[i].id);
    pop(v, o);
}

static void parse_variants(vctx *v, json_t *j, const char *key, scn_variant **out, int *n_out, const scn_character *c,
                           const char *what) {
    json_t *arr = get_array(v, j, key, true, 1);
    if (!arr) return;
    size_t n = json_array_size(arr);
    *out = alloc_n(v, n, sizeof **out);
    if (!*out) return;
    *n_out = (int)n;
    const char **ids = alloc_n(v, n, sizeof *ids);
    size_t o = push_key(v, key);
    for (size_t i = 0; i < n; i++) {
        size_t o2 = push_idx(v, i);
        json_t *e = json_array_get(arr, i);
        if (!json_is_object(e)) problem(v, "write an object", "expected an object, found %s", type_name(e));
        else {
            parse_variant(v, e, &(*out)[i], c);
            if (ids) {
                ids[i] = (*out)[i].id;
                size_t o3 = push_key(v, "id");
                check_dup(v, ids, (int)i, what);
                pop(v, o3);
            }
        }
        pop(v, o2);
    }
    pop(v, o);
    mem_free(ids);
}

static bool parse_color(const char *s, uint32_t *out) {
    if (strlen(s) != 7 || s[0] != '#') return false;
    uint32_t x = 0;
    for (int i = 1; i < 7; i++) {
        char c = s[i];
        int d = c >= '0' && c <= '9' ? c - '0' : c >= 'a' && c <= 'f' ? c - 'a' + 10 : c >= 'A' && c <= 'F' ? c - 'A' + 10 : -1;
        if (d < 0) return false;
        x = x << 4 | (uint32_t)d;
    }
    *out = x;
    return true;
}

static void parse_character(vctx *v, json_t *j, scn_character *c, int self) {
    static const char *const keys[] = {"id", "name", "color", "about", "personality", "appearance",
                                       "relationships", "bodies", "outfits", "expressions", NULL};
    check_keys(v, j, keys);
    c->id = get_id(v, j, "id", true);
    if (c->id && (strcmp(c->id, "narrator") == 0 || strcmp(c->id, "player") == 0)) {
        size_t o = push_key(v, "id");
        problem(v, "choose another id", "'%s' is reserved for the %s", c->id, c->id);
        pop(v, o);
    }
    get_text(v, j, "name", true, &c->name);
    const char *color = get_string(v, j, "color", true);
    if (color && !parse_color(color, &c->color)) {
        size_t o = push_key(v, "color");
        problem(v, "write it as #rrggbb, e.g. #e0457b", "'%.40s' is not a colour", color);
        pop(v, o);
    }
    get_text(v, j, "about", true, &c->about);
    get_text(v, j, "personality", true, &c->personality);
    get_text(v, j, "appearance", true, &c->appearance);

    json_t *rel = get_array(v, j, "relationships", false, 0);
    if (rel) {
        size_t n = json_array_size(rel);
        c->relationships = alloc_n(v, n, sizeof *c->relationships);
        if (c->relationships) c->n_relationships = (int)n;
        size_t o = push_key(v, "relationships");
        for (size_t i = 0; i < n && c->relationships; i++) {
            size_t o2 = push_idx(v, i);
            json_t *e = json_array_get(rel, i);
            scn_relationship *r = &c->relationships[i];
            r->to_index = -1;
            if (!json_is_object(e)) problem(v, "write {\"to\": ID, \"text\": {...}}", "expected an object, found %s", type_name(e));
            else {
                static const char *const rkeys[] = {"to", "text", NULL};
                check_keys(v, e, rkeys);
                r->to_index = get_ref(v, e, "to", true, v->char_ids, v->n_char_ids, "character", &r->to);
                if (r->to_index >= 0 && r->to_index == self) {
                    size_t o3 = push_key(v, "to");
                    problem(v, "describe relationships to other characters", "a character's relationship to itself");
                    pop(v, o3);
                }
                for (size_t k = 0; k < i && r->to; k++)
                    if (c->relationships[k].to && strcmp(c->relationships[k].to, r->to) == 0) {
                        size_t o3 = push_key(v, "to");
                        problem(v, "merge them into one", "a second relationship to '%s'", r->to);
                        pop(v, o3);
                    }
                get_text(v, e, "text", true, &r->text);
            }
            pop(v, o2);
        }
        pop(v, o);
    }

    json_t *bodies = get_array(v, j, "bodies", true, 1);
    if (bodies) {
        size_t n = json_array_size(bodies);
        c->bodies = alloc_n(v, n, sizeof *c->bodies);
        if (c->bodies) c->n_bodies = (int)n;
        const char **ids = alloc_n(v, n, sizeof *ids);
        size_t o = push_key(v, "bodies");
        for (size_t i = 0; i < n && c->bodies; i++) {
            size_t o2 = push_idx(v, i);
            json_t *e = json_array_get(bodies, i);
            if (!json_is_object(e)) problem(v, "write {\"id\": ..., \"image\": {...}}", "expected an object, found %s", type_name(e));
            else {
                static const char *const bkeys[] = {"id", "image", NULL};
                check_keys(v, e, bkeys);
                c->bodies[i].id = get_id(v, e, "id", true);
                if (ids) {
                    ids[i] = c->bodies[i].id;
                    size_t o3 = push_key(v, "id");
                    check_dup(v, ids, (int)i, "body");
                    pop(v, o3);
                }
                get_asset(v, e, "image", true, &c->bodies[i].image, NULL);
            }
            pop(v, o2);
        }
        pop(v, o);
        mem_free(ids);
    }
    parse_variants(v, j, "outfits", &c->outfits, &c->n_outfits, c, "outfit");
    parse_variants(v, j, "expressions", &c->expressions, &c->n_expressions, c, "expression");
}

static void parse_scene(vctx *v, json_t *j, scn_scene *sc) {
    static const char *const keys[] = {"id", "name", "prompt", "location", "background", "ambience", NULL};
    check_keys(v, j, keys);
    sc->id = get_id(v, j, "id", true);
    get_text(v, j, "name", true, &sc->name);
    get_text(v, j, "prompt", true, &sc->prompt);
    sc->location_index = -1;
    if (json_object_get(j, "location"))
        sc->location_index = get_ref(v, j, "location", false, v->loc_ids, v->n_loc_ids, "location", &sc->location);
    get_asset(v, j, "background", true, &sc->background, NULL);
    json_t *amb = get_array(v, j, "ambience", false, 0);
    if (amb) {
        size_t n = json_array_size(amb);
        sc->ambience = alloc_n(v, n, sizeof *sc->ambience);
        if (sc->ambience) sc->n_ambience = (int)n;
        size_t o = push_key(v, "ambience");
        for (size_t i = 0; i < n && sc->ambience; i++) {
            size_t o2 = push_idx(v, i);
            asset_value(v, json_array_get(amb, i), &sc->ambience[i], NULL);
            pop(v, o2);
        }
        pop(v, o);
    }
}

static int find_variant(const scn_variant *vs, int n, const char *id) {
    for (int i = 0; i < n; i++)
        if (vs[i].id && strcmp(vs[i].id, id) == 0) return i;
    return -1;
}

static void parse_stage_char(vctx *v, json_t *e, scn_stage_character *st) {
    static const char *const keys[] = {"character", "body", "outfit", "expression", NULL};
    scn_scenario *s = v->s;
    check_keys(v, e, keys);
    st->index = get_ref(v, e, "character", true, v->char_ids, v->n_char_ids, "character", &st->id);
    st->body_index = st->outfit_index = st->expression_index = -1;
    const scn_character *c = st->index >= 0 && st->index < s->n_characters ? &s->characters[st->index] : NULL;
    st->body = get_id(v, e, "body", false);
    st->outfit = get_id(v, e, "outfit", true);
    st->expression = get_id(v, e, "expression", true);
    if (!c) return;
    if (st->body) {
        for (int i = 0; i < c->n_bodies; i++)
            if (c->bodies[i].id && strcmp(c->bodies[i].id, st->body) == 0) st->body_index = i;
        if (st->body_index < 0) {
            size_t o = push_key(v, "body");
            problem(v, "use one of the character's body ids", "'%s' has no body '%s'", c->id, st->body);
            pop(v, o);
        }
    } else if (c->n_bodies > 0) st->body_index = 0;
    if (st->outfit && (st->outfit_index = find_variant(c->outfits, c->n_outfits, st->outfit)) < 0) {
        size_t o = push_key(v, "outfit");
        problem(v, "use one of the character's outfit ids", "'%s' has no outfit '%s'", c->id, st->outfit);
        pop(v, o);
    }
    if (st->expression && (st->expression_index = find_variant(c->expressions, c->n_expressions, st->expression)) < 0) {
        size_t o = push_key(v, "expression");
        problem(v, "use one of the character's expression ids", "'%s' has no expression '%s'", c->id, st->expression);
        pop(v, o);
    }
}

static void parse_episode(vctx *v, json_t *j, scn_episode *ep) {
    static const char *const keys[] = {"id", "name", "about", "start", "openingLines", "allowedSpeakers", NULL};
    check_keys(v, j, keys);
    ep->id = get_id(v, j, "id", true);
    get_text(v, j, "name", true, &ep->name);
    get_text(v, j, "about", false, &ep->about);
    ep->start_scene_index = -1;
    json_t *start = field(v, j, "start", JSON_OBJECT, true);
    if (start) {
        static const char *const skeys[] = {"scene", "characters", NULL};
        size_t o = push_key(v, "start");
        check_keys(v, start, skeys);
        ep->start_scene_index = get_ref(v, start, "scene", true, v->scene_ids, v->n_scene_ids, "scene", &ep->start_scene);
        json_t *chars = get_array(v, start, "characters", true, 0);
        if (chars) {
            size_t n = json_array_size(chars);
            ep->on_stage = alloc_n(v, n, sizeof *ep->on_stage);
            if (ep->on_stage) ep->n_on_stage = (int)n;
            size_t o2 = push_key(v, "characters");
            for (size_t i = 0; i < n && ep->on_stage; i++) {
                size_t o3 = push_idx(v, i);
                json_t *e = json_array_get(chars, i);
                scn_stage_character *st = &ep->on_stage[i];
                st->index = -1;
                if (!json_is_object(e)) problem(v, "write {\"character\": ..., \"outfit\": ..., \"expression\": ...}", "expected an object, found %s", type_name(e));
                else {
                    parse_stage_char(v, e, st);
                    for (size_t k = 0; k < i; k++)
                        if (st->index >= 0 && ep->on_stage[k].index == st->index)
                            problem(v, "list each character once", "'%s' is already on stage (index %zu)", st->id, k);
                }
                pop(v, o3);
            }
            pop(v, o2);
        }
        pop(v, o);
    }
    json_t *lines = get_array(v, j, "openingLines", true, 0);
    if (lines) {
        size_t n = json_array_size(lines);
        ep->opening = alloc_n(v, n, sizeof *ep->opening);
        if (ep->opening) ep->n_opening = (int)n;
        size_t o = push_key(v, "openingLines");
        for (size_t i = 0; i < n && ep->opening; i++) {
            size_t o2 = push_idx(v, i);
            json_t *e = json_array_get(lines, i);
            scn_line *L = &ep->opening[i];
            if (!json_is_object(e)) problem(v, "write {\"speaker\": ..., \"text\": {...}}", "expected an object, found %s", type_name(e));
            else {
                static const char *const lkeys[] = {"speaker", "text", NULL};
                check_keys(v, e, lkeys);
                L->speaker = get_id(v, e, "speaker", true);
                if (L->speaker && strcmp(L->speaker, "narrator") == 0) L->speaker_index = SCN_SPEAKER_NARRATOR;
                else if (L->speaker && strcmp(L->speaker, "player") == 0) L->speaker_index = SCN_SPEAKER_PLAYER;
                else if (L->speaker) {
                    L->speaker_index = find_id(v->char_ids, v->n_char_ids, L->speaker);
                    size_t o3 = push_key(v, "speaker");
                    if (L->speaker_index < 0)
                        problem(v, "use a character id, \"narrator\" or \"player\"", "no character has the id '%s'", L->speaker);
                    else {
                        bool on = false;
                        for (int k = 0; k < ep->n_on_stage; k++) on |= ep->on_stage[k].index == L->speaker_index;
                        if (!on) problem(v, "add them to start.characters", "'%s' speaks but is not on stage at the start", L->speaker);
                    }
                    pop(v, o3);
                }
                get_text(v, e, "text", true, &L->text);
            }
            pop(v, o2);
        }
        pop(v, o);
    }
    json_t *sp = get_array(v, j, "allowedSpeakers", true, 0);
    if (sp) {
        size_t n = json_array_size(sp);
        ep->allowed_speakers = alloc_n(v, n, sizeof *ep->allowed_speakers);
        if (ep->allowed_speakers) ep->n_allowed_speakers = (int)n;
        size_t o = push_key(v, "allowedSpeakers");
        for (size_t i = 0; i < n && ep->allowed_speakers; i++) {
            size_t o2 = push_idx(v, i);
            json_t *e = json_array_get(sp, i);
            ep->allowed_speakers[i] = -1;
            if (!json_is_string(e)) problem(v, "write a character id", "expected a string, found %s", type_name(e));
            else {
                const char *id = id_value(v, e);
                int ci = find_id(v->char_ids, v->n_char_ids, id);
                if (id && ci < 0) problem(v, "use the id of an existing character (the narrator may always speak)", "no character has the id '%s'", id);
                ep->allowed_speakers[i] = ci;
                for (size_t k = 0; k < i && ci >= 0; k++)
                    if (ep->allowed_speakers[k] == ci) problem(v, "list each character once", "'%s' is listed twice", id);
            }
            pop(v, o2);
        }
        pop(v, o);
    }
}

// An array section: each entry an object parsed by fn into out[i] (elem bytes each).
static void *parse_section(vctx *v, json_t *root, const char *key, bool required, size_t min, size_t elem, int *n_out,
                           const char *const *ids, const char *what, void (*fn)(vctx *, json_t *, void *, int)) {
    *n_out = 0;
    json_t *arr = get_array(v, root, key, required, min);
    if (!arr) return NULL;
    size_t n = json_array_size(arr);
    char *out = alloc_n(v, n, elem);
    if (!out) return NULL;
    *n_out = (int)n;
    size_t o = push_key(v, key);
    for (size_t i = 0; i < n; i++) {
        size_t o2 = push_idx(v, i);
        json_t *e = json_array_get(arr, i);
        if (!json_is_object(e)) problem(v, "write an object", "expected an object, found %s", type_name(e));
        else {
            fn(v, e, out + i * elem, (int)i);
            if (ids) {
                size_t o3 = push_key(v, "id");
                check_dup(v, ids, (int)i, what);
                pop(v, o3);
            }
        }
        pop(v, o2);
    }
    pop(v, o);
    return out;
}

// --- variables, achievements, lore ------------------------------------------------------------

// An integer field within [lo, hi]; false when absent (and reported when required) or bad.
static bool get_int(vctx *v, json_t *obj, const char *key, bool required, long long lo, long long hi, int *out) {
    json_t *j = field(v, obj, key, JSON_INTEGER, required);
    if (!j) return false;
    long long x = json_integer_value(j);
    if (x < lo || x > hi) {
        size_t o = push_key(v, key);
        problem(v, "use an integer in range", "%lld is outside [%lld, %lld]", x, lo, hi);
        pop(v, o);
        return false;
    }
    *out = (int)x;
    return true;
}

static bool get_bool(vctx *v, json_t *obj, const char *key, bool def) {
    json_t *j = field(v, obj, key, JSON_TRUE, false);
    return j ? json_is_true(j) : def;
}

// A value of variable x written as JSON (an integer, a boolean or an enum value id) as the int the
// stage holds; false (reported at the current path) when it is not one.
static bool var_value(vctx *v, const scn_variable *x, json_t *j, int *out) {
    if (x->type == SCN_VAR_INT && json_is_integer(j)) {
        long long n = json_integer_value(j);
        if (n >= x->min && n <= x->max) {
            *out = (int)n;
            return true;
        }
        problem(v, "use a value within the variable's min and max", "%lld is outside [%d, %d]", n, x->min, x->max);
        return false;
    }
    if (x->type == SCN_VAR_BOOL && json_is_boolean(j)) {
        *out = json_is_true(j);
        return true;
    }
    if (x->type == SCN_VAR_ENUM && json_is_string(j)) {
        int i = find_id(x->values, x->n_values, json_string_value(j));
        if (i >= 0) {
            *out = i;
            return true;
        }
        problem(v, "use one of the variable's \"values\"", "'%.64s' is not a value of '%s'", json_string_value(j), x->id);
        return false;
    }
    static const char *want[] = {"an integer", "a boolean", "one of its value ids (a string)"};
    problem(v, "write a value of the variable's type", "'%s' takes %s, found %s", x->id ? x->id : "?", want[x->type],
            type_name(j));
    return false;
}

static void sec_variable(vctx *v, json_t *j, void *out, int i) {
    static const char *const keys[] = {"id", "name", "type", "min", "max", "values", "default", "character", "hidden", NULL};
    scn_variable *x = out;
    check_keys(v, j, keys);
    x->id = get_id(v, j, "id", true);
    get_text(v, j, "name", true, &x->name);
    x->character_index = -1;
    if (json_object_get(j, "character"))
        x->character_index = get_ref(v, j, "character", false, v->char_ids, v->n_char_ids, "character", &x->character);
    x->hidden = get_bool(v, j, "hidden", false);
    const char *type = get_string(v, j, "type", true);
    if (!type) return;
    size_t o;
    if (strcmp(type, "integer") == 0) {
        x->type = SCN_VAR_INT;
        bool lo = get_int(v, j, "min", true, -SCN_MAX_VAR_ABS, SCN_MAX_VAR_ABS, &x->min);
        bool hi = get_int(v, j, "max", true, -SCN_MAX_VAR_ABS, SCN_MAX_VAR_ABS, &x->max);
        if (lo && hi && x->min > x->max) {
            o = push_key(v, "max");
            problem(v, "make max at least min", "max %d is below min %d", x->max, x->min);
            pop(v, o);
        }
    } else if (strcmp(type, "boolean") == 0) {
        x->type = SCN_VAR_BOOL;
        x->max = 1;
    } else if (strcmp(type, "enum") == 0) {
        x->type = SCN_VAR_ENUM;
        json_t *vals = get_array(v, j, "values", true, 1);
        size_t n = vals ? json_array_size(vals) : 0;
        x->values = alloc_n(v, n, sizeof *x->values);
        if (!x->values) return;
        x->n_values = (int)n;
        x->max = (int)n - 1;
        o = push_key(v, "values");
        for (size_t k = 0; k < n; k++) {
            size_t o2 = push_idx(v, k);
            json_t *e = json_array_get(vals, k);
            if (!json_is_string(e)) problem(v, "write value ids as strings", "expected a string, found %s", type_name(e));
            else {
                x->values[k] = id_value(v, e);
                check_dup(v, x->values, (int)k, "value");
            }
            pop(v, o2);
        }
        pop(v, o);
    } else {
        o = push_key(v, "type");
        problem(v, "use \"integer\", \"boolean\" or \"enum\"", "unknown variable type '%.40s'", type);
        pop(v, o);
        return;
    }
    static const char *const bounds[] = {"min", "max"};
    for (int k = 0; k < 2 && x->type != SCN_VAR_INT; k++)
        if (json_object_get(j, bounds[k])) {
            o = push_key(v, bounds[k]);
            problem(v, "remove it (only integer variables have bounds)", "'%s' is not an integer variable", type);
            pop(v, o);
        }
    if (x->type != SCN_VAR_ENUM && json_object_get(j, "values")) {
        o = push_key(v, "values");
        problem(v, "remove it (only enum variables list values)", "'%s' is not an enum variable", type);
        pop(v, o);
    }
    x->def = x->type == SCN_VAR_INT && x->min > 0 ? x->min : x->type == SCN_VAR_INT && x->max < 0 ? x->max : 0;
    json_t *d = json_object_get(j, "default");
    if (d) {
        o = push_key(v, "default");
        var_value(v, x, d, &x->def);
        pop(v, o);
    }
}

static const char *COND_HINT = "write one of {\"all\": [...]}, {\"any\": [...]}, {\"not\": {...}}, {\"variable\": ID, "
                               "\"equals\"|\"atLeast\"|\"atMost\": VALUE}, {\"scene\": ID}, {\"onStage\": ID}, "
                               "{\"clockAtLeast\": MINUTES}";

static void parse_cond(vctx *v, json_t *j, scn_cond *c, int depth) {
    c->kind = SCN_COND_ALL; // an unusable condition parses as "all of nothing"
    if (!json_is_object(j)) {
        problem(v, COND_HINT, "expected a condition object, found %s", type_name(j));
        return;
    }
    if (depth > SCN_MAX_COND_DEPTH) {
        problem(v, "flatten the condition", "nested more than %d levels deep", SCN_MAX_COND_DEPTH);
        return;
    }
    size_t n = json_object_size(j);
    json_t *e;
    if (json_object_get(j, "variable")) {
        static const char *const keys[] = {"variable", "equals", "atLeast", "atMost", NULL};
        check_keys(v, j, keys);
        c->kind = SCN_COND_VARIABLE;
        const char *id;
        c->index = get_ref(v, j, "variable", true, v->var_ids, v->n_var_ids, "variable", &id);
        if (n != 2) {
            problem(v, "give exactly one of \"equals\", \"atLeast\", \"atMost\"", "a variable condition needs one comparison");
            return;
        }
        const char *opk = json_object_get(j, "equals") ? "equals" : json_object_get(j, "atLeast") ? "atLeast" : "atMost";
        c->op = opk[0] == 'e' ? SCN_OP_EQ : opk[2] == 'L' ? SCN_OP_GE : SCN_OP_LE;
        if (c->index < 0 || c->index >= v->s->n_variables) return; // unknown, or the variables were not allocated
        const scn_variable *x = &v->s->variables[c->index];
        size_t o = push_key(v, opk);
        if (c->op != SCN_OP_EQ && x->type != SCN_VAR_INT)
            problem(v, "compare with \"equals\"", "'%s' is not an integer variable", x->id);
        else var_value(v, x, json_object_get(j, opk), &c->value);
        pop(v, o);
        return;
    }
    if (n != 1) {
        problem(v, COND_HINT, "a condition has exactly one key, found %zu", n);
        return;
    }
    const char *k = json_object_iter_key(json_object_iter(j));
    e = json_object_get(j, k);
    size_t o = push_key(v, k);
    if (strcmp(k, "all") == 0 || strcmp(k, "any") == 0) {
        c->kind = k[1] == 'l' ? SCN_COND_ALL : SCN_COND_ANY;
        if (!json_is_array(e) || json_array_size(e) > SCN_MAX_ITEMS) {
            problem(v, "write an array of conditions", "expected an array of conditions");
        } else if ((c->sub = alloc_n(v, json_array_size(e), sizeof *c->sub))) {
            c->n_sub = (int)json_array_size(e);
            for (int i = 0; i < c->n_sub; i++) {
                size_t o2 = push_idx(v, (size_t)i);
                parse_cond(v, json_array_get(e, (size_t)i), &c->sub[i], depth + 1);
                pop(v, o2);
            }
        }
    } else if (strcmp(k, "not") == 0) {
        c->kind = SCN_COND_NOT;
        if ((c->sub = alloc_n(v, 1, sizeof *c->sub))) {
            c->n_sub = 1;
            parse_cond(v, e, c->sub, depth + 1);
        }
    } else if (strcmp(k, "scene") == 0 || strcmp(k, "onStage") == 0) {
        bool scene = k[0] == 's';
        c->kind = scene ? SCN_COND_SCENE : SCN_COND_ON_STAGE;
        const char *id = json_is_string(e) ? id_value(v, e) : NULL;
        if (!json_is_string(e)) problem(v, "write an id", "expected a string id, found %s", type_name(e));
        c->index = scene ? find_id(v->scene_ids, v->n_scene_ids, id) : find_id(v->char_ids, v->n_char_ids, id);
        if (id && c->index < 0)
            problem(v, "use the id of an existing entry, or add it", "no %s has the id '%s'", scene ? "scene" : "character", id);
    } else if (strcmp(k, "clockAtLeast") == 0) {
        c->kind = SCN_COND_CLOCK;
        long long m = json_is_integer(e) ? json_integer_value(e) : -1;
        if (m < 0 || m > 1440LL * 365 * 100) problem(v, "use minutes since the episode start", "expected minutes in 0..52560000");
        else c->value = (int)m;
    } else {
        problem(v, COND_HINT, "unknown condition '%.40s'", k);
    }
    pop(v, o);
}

static void sec_achievement(vctx *v, json_t *j, void *out, int i) {
    static const char *const keys[] = {"id", "name", "description", "when", NULL};
    scn_achievement *a = out;
    check_keys(v, j, keys);
    a->id = get_id(v, j, "id", true);
    get_text(v, j, "name", true, &a->name);
    get_text(v, j, "description", true, &a->description);
    json_t *w = json_object_get(j, "when");
    size_t o = push_key(v, "when");
    if (!w) problem(v, "add the condition under which it unlocks", "missing required field 'when'");
    else parse_cond(v, w, &a->when, 0);
    pop(v, o);
}

static void sec_lore(vctx *v, json_t *j, void *out, int i) {
    static const char *const keys[] = {"id", "keys", "text", "position", "priority", "caseSensitive", NULL};
    scn_lore *l = out;
    check_keys(v, j, keys);
    l->id = get_id(v, j, "id", true);
    get_text(v, j, "text", true, &l->text);
    l->position = SCN_LORE_RECENT;
    const char *pos = json_object_get(j, "position") ? get_string(v, j, "position", false) : NULL;
    if (pos && strcmp(pos, "setup") == 0) l->position = SCN_LORE_SETUP;
    else if (pos && strcmp(pos, "recent") != 0) {
        size_t o = push_key(v, "position");
        problem(v, "use \"setup\" (always in the prompt) or \"recent\" (when a key appears)", "unknown position '%.40s'", pos);
        pop(v, o);
    }
    get_int(v, j, "priority", false, -1000000, 1000000, &l->priority);
    l->case_sensitive = get_bool(v, j, "caseSensitive", false);
    json_t *ks = get_array(v, j, "keys", l->position == SCN_LORE_RECENT, l->position == SCN_LORE_RECENT ? 1 : 0);
    size_t n = ks ? json_array_size(ks) : 0;
    if (!(l->keys = alloc_n(v, n, sizeof *l->keys))) return;
    l->n_keys = (int)n;
    size_t o = push_key(v, "keys");
    for (size_t k = 0; k < n; k++) {
        size_t o2 = push_idx(v, k);
        json_t *e = json_array_get(ks, k);
        if (!json_is_string(e)) problem(v, "write keys as strings", "expected a string, found %s", type_name(e));
        else if ((l->keys[k] = string_value(v, e, true)) && strlen(l->keys[k]) > 100) {
            problem(v, "use a word or a short phrase", "a key longer than 100 bytes");
            l->keys[k] = NULL;
        }
        pop(v, o2);
    }
    pop(v, o);
}

static void sec_character(vctx *v, json_t *j, void *out, int i) { parse_character(v, j, out, i); }
static void sec_scene(vctx *v, json_t *j, void *out, int i) { parse_scene(v, j, out); }
static void sec_episode(vctx *v, json_t *j, void *out, int i) { parse_episode(v, j, out); }
static void sec_location(vctx *v, json_t *j, void *out, int i) {
    static const char *const keys[] = {"id", "name", "description", NULL};
    scn_location *l = out;
    check_keys(v, j, keys);
    l->id = get_id(v, j, "id", true);
    get_text(v, j, "name", true, &l->name);
    get_text(v, j, "description", true, &l->description);
}

static void parse_locales(vctx *v, json_t *root) {
    scn_scenario *s = v->s;
    static const char *fallback[] = {"en-US"};
    json_t *arr = get_array(v, root, "locales", true, 1);
    size_t n = arr ? json_array_size(arr) : 0;
    bool ok = arr && n <= SCN_MAX_LOCALES;
    size_t o = push_key(v, "locales");
    if (arr && n > SCN_MAX_LOCALES) problem(v, "ship fewer locales", "%zu locales, more than %d", n, SCN_MAX_LOCALES);
    const char **ls = ok ? alloc_n(v, n ? n : 1, sizeof *ls) : NULL;
    bool en = false;
    for (size_t i = 0; ok && ls && i < n; i++) {
        size_t o2 = push_idx(v, i);
        json_t *e = json_array_get(arr, i);
        const char *l = json_is_string(e) ? json_string_value(e) : NULL;
        if (!l) problem(v, "write a locale tag like \"en-US\"", "expected a string, found %s", type_name(e));
        else if (!locale_valid(l)) problem(v, "write a BCP 47 tag like \"en-US\" or \"fr-FR\"", "'%.40s' is not a locale tag", l);
        else if (find_id(ls, (int)i, l) >= 0) problem(v, "list each locale once", "duplicate locale '%s'", l);
        else {
            ls[i] = l;
            en |= strcmp(l, "en-US") == 0;
            pop(v, o2);
            continue;
        }
        ok = false;
        pop(v, o2);
    }
    if (arr && ok && !en) {
        problem(v, "add \"en-US\" (every scenario has English texts)", "\"en-US\" is not among the locales");
        ok = false;
    }
    pop(v, o);
    if (ok && ls && n > 0) {
        s->locales = ls;
        s->n_locales = (int)n;
    } else {
        // Go on checking the texts against en-US alone.
        mem_free(ls);
        s->locales = NULL;
        ls = alloc_n(v, 1, sizeof *ls);
        if (ls) {
            ls[0] = fallback[0];
            s->locales = ls;
            s->n_locales = 1;
        }
    }
}

// Duplicate ids among entries that start with `const char *id` (no references point to them).
static void dup_ids(vctx *v, const char *key, const void *arr, size_t stride, int n, const char *what) {
    for (int i = 0; i < n; i++) {
        const char *a = *(const char *const *)((const char *)arr + (size_t)i * stride);
        for (int k = 0; k < i && a; k++) {
            const char *b = *(const char *const *)((const char *)arr + (size_t)k * stride);
            if (b && strcmp(a, b) == 0) {
                char p[64];
                snprintf(p, sizeof p, "%s[%d].id", key, i);
                if (!scn_report_add(v->rep, p, "give each one its own id", "duplicate %s id '%s' (also at index %d)", what,
                                    a, k))
                    v->nomem = true;
                break;
            }
        }
    }
}

static void parse_root(vctx *v, json_t *root) {
    scn_scenario *s = v->s;
    static const char *const keys[] = {"$schema", "version", "id", "scenarioVersion", "name", "teaser", "about", "locales",
                                       "content", "recommendedContextSize", "thumbnail", "globalScenario", "instructions",
                                       "player", "characters", "locations", "scenes", "episodes", "variables",
                                       "achievements", "lore", "loreBudget", NULL};
    check_keys(v, root, keys);
    json_t *ver = field(v, root, "version", JSON_INTEGER, true);
    if (ver) {
        s->version = (int)json_integer_value(ver);
        if (json_integer_value(ver) != SCN_FORMAT_VERSION) {
            size_t o = push_key(v, "version");
            problem(v, "this program reads format version 1; update simularity or the pack",
                    "unsupported format version %lld", (long long)json_integer_value(ver));
            pop(v, o);
            return; // a newer format: its fields mean something else
        }
    }
    parse_locales(v, root);
    if (!s->locales) return;
    s->id = get_id(v, root, "id", true);
    s->scenario_version = get_string(v, root, "scenarioVersion", true);
    if (s->scenario_version && strlen(s->scenario_version) > 64) {
        size_t o = push_key(v, "scenarioVersion");
        problem(v, "use a short version like \"1.2.0\"", "longer than 64 bytes");
        pop(v, o);
    }
    get_text(v, root, "name", true, &s->name);
    get_text(v, root, "teaser", true, &s->teaser);
    get_text(v, root, "about", true, &s->about);
    json_t *content = field(v, root, "content", JSON_OBJECT, true);
    if (content) {
        static const char *const ckeys[] = {"nsfw", NULL};
        size_t o = push_key(v, "content");
        check_keys(v, content, ckeys);
        json_t *nsfw = field(v, content, "nsfw", JSON_TRUE, true);
        s->nsfw = nsfw && json_is_true(nsfw);
        pop(v, o);
    }
    json_t *ctx = field(v, root, "recommendedContextSize", JSON_INTEGER, true);
    if (ctx) {
        json_int_t c = json_integer_value(ctx);
        if (c < 512 || c > 1048576) {
            size_t o = push_key(v, "recommendedContextSize");
            problem(v, "use a token count in 512..1048576, e.g. 8192", "%lld is out of range", (long long)c);
            pop(v, o);
        } else s->context_size = (int)c;
    }
    if (json_object_get(root, "thumbnail")) {
        s->thumbnail = alloc_n(v, 1, sizeof *s->thumbnail);
        if (s->thumbnail) get_asset(v, root, "thumbnail", false, s->thumbnail, NULL);
    }
    get_text(v, root, "globalScenario", true, &s->global_scenario);
    get_text(v, root, "instructions", false, &s->instructions);
    json_t *player = field(v, root, "player", JSON_OBJECT, true);
    if (player) {
        static const char *const pkeys[] = {"name", "about", "appearance", NULL};
        size_t o = push_key(v, "player");
        check_keys(v, player, pkeys);
        get_text(v, player, "name", true, &s->player.name);
        get_text(v, player, "about", true, &s->player.about);
        get_text(v, player, "appearance", false, &s->player.appearance);
        pop(v, o);
    }
    v->char_ids = collect_ids(v, json_object_get(root, "characters"), "id", &v->n_char_ids);
    v->scene_ids = collect_ids(v, json_object_get(root, "scenes"), "id", &v->n_scene_ids);
    v->loc_ids = collect_ids(v, json_object_get(root, "locations"), "id", &v->n_loc_ids);
    s->characters = parse_section(v, root, "characters", true, 1, sizeof(scn_character), &s->n_characters,
                                  v->char_ids, "character", sec_character);
    s->locations = parse_section(v, root, "locations", false, 0, sizeof(scn_location), &s->n_locations,
                                 v->loc_ids, "location", sec_location);
    s->scenes = parse_section(v, root, "scenes", true, 1, sizeof(scn_scene), &s->n_scenes, v->scene_ids, "scene", sec_scene);
    v->var_ids = collect_ids(v, json_object_get(root, "variables"), "id", &v->n_var_ids);
    s->variables = parse_section(v, root, "variables", false, 0, sizeof(scn_variable), &s->n_variables, v->var_ids,
                                 "variable", sec_variable);
    if (s->n_variables > SCN_MAX_VARIABLES) {
        size_t o = push_key(v, "variables");
        problem(v, "merge some (flags can share an enum)", "%d variables, more than the limit of %d", s->n_variables,
                SCN_MAX_VARIABLES);
        pop(v, o);
    }
    s->achievements = parse_section(v, root, "achievements", false, 0, sizeof(scn_achievement), &s->n_achievements,
                                    NULL, NULL, sec_achievement);
    s->lore = parse_section(v, root, "lore", false, 0, sizeof(scn_lore), &s->n_lore, NULL, NULL, sec_lore);
    s->lore_budget = SCN_DEFAULT_LORE_BUDGET;
    get_int(v, root, "loreBudget", false, 0, 1048576, &s->lore_budget);
    // Episode ids are checked for duplicates after the walk (no references point to them).
    s->episodes = parse_section(v, root, "episodes", true, 1, sizeof(scn_episode), &s->n_episodes, NULL, NULL, sec_episode);
    dup_ids(v, "episodes", s->episodes, sizeof *s->episodes, s->n_episodes, "episode");
    dup_ids(v, "achievements", s->achievements, sizeof *s->achievements, s->n_achievements, "achievement");
    dup_ids(v, "lore", s->lore, sizeof *s->lore, s->n_lore, "lore entry");
}

// --- load / free ---------------------------------------------------------------------------------------

static void variant_free(scn_variant *vs, int n) {
    for (int i = 0; i < n; i++) {
        text_free(&vs[i].name);
        text_free(&vs[i].description);
        mem_free(vs[i].layers);
    }
    mem_free(vs);
}

static void cond_free(scn_cond *c) {
    for (int i = 0; i < c->n_sub; i++) cond_free(&c->sub[i]);
    mem_free(c->sub);
}

void scn_free(scn_scenario *s) {
    if (!s) return;
    for (int i = 0; i < s->n_characters; i++) {
        scn_character *c = &s->characters[i];
        text_free(&c->name); text_free(&c->about); text_free(&c->personality); text_free(&c->appearance);
        for (int k = 0; k < c->n_relationships; k++) text_free(&c->relationships[k].text);
        mem_free(c->relationships);
        mem_free(c->bodies);
        variant_free(c->outfits, c->n_outfits);
        variant_free(c->expressions, c->n_expressions);
    }
    mem_free(s->characters);
    for (int i = 0; i < s->n_locations; i++) {
        text_free(&s->locations[i].name);
        text_free(&s->locations[i].description);
    }
    mem_free(s->locations);
    for (int i = 0; i < s->n_scenes; i++) {
        text_free(&s->scenes[i].name);
        text_free(&s->scenes[i].prompt);
        mem_free(s->scenes[i].ambience);
    }
    mem_free(s->scenes);
    for (int i = 0; i < s->n_episodes; i++) {
        scn_episode *e = &s->episodes[i];
        text_free(&e->name); text_free(&e->about);
        mem_free(e->on_stage);
        for (int k = 0; k < e->n_opening; k++) text_free(&e->opening[k].text);
        mem_free(e->opening);
        mem_free(e->allowed_speakers);
    }
    mem_free(s->episodes);
    for (int i = 0; i < s->n_variables; i++) {
        text_free(&s->variables[i].name);
        mem_free(s->variables[i].values);
    }
    mem_free(s->variables);
    for (int i = 0; i < s->n_achievements; i++) {
        text_free(&s->achievements[i].name);
        text_free(&s->achievements[i].description);
        cond_free(&s->achievements[i].when);
    }
    mem_free(s->achievements);
    for (int i = 0; i < s->n_lore; i++) {
        text_free(&s->lore[i].text);
        mem_free(s->lore[i].keys);
    }
    mem_free(s->lore);
    text_free(&s->name); text_free(&s->teaser); text_free(&s->about);
    text_free(&s->global_scenario); text_free(&s->instructions);
    text_free(&s->player.name); text_free(&s->player.about); text_free(&s->player.appearance);
    mem_free(s->thumbnail);
    mem_free(s->locales);
    mem_free(s->dir);
    if (s->doc) json_decref((json_t *)s->doc);
    mem_free(s);
}

sim_status scn_load(scn_scenario **out, const char *dir, scn_report *rep, sim_err *err) {
    *out = NULL;
    int before = rep->n + rep->n_dropped;
    size_t dl = strlen(dir);
    char *mpath = mem_alloc(dl + sizeof "/manifest.json");
    scn_scenario *s = mem_calloc(1, sizeof *s);
    if (!mpath || !s || !(s->dir = mem_strdup(dir))) {
        mem_free(mpath);
        mem_free(s);
        return err_set(err, SIM_ERR_NOMEM, "%s: out of memory", dir);
    }
    snprintf(mpath, dl + sizeof "/manifest.json", "%s/manifest.json", dir);

    char *text = NULL;
    size_t len = 0;
    uint64_t msize = 0;
    pack *pk = NULL;
    const char *hint = "check the file";
    sim_err ferr;
    sim_status rc = pack_open(&pk, dir, &ferr);
    if (rc == SIM_ERR_NOMEM) goto fail_nomem;
    if (rc != SIM_OK) {
        // The report is about dir already: "dir: entry 'x': ..." loses its "dir: ".
        const char *msg = ferr.msg;
        if (strncmp(msg, dir, dl) == 0 && msg[dl] == ':' && msg[dl + 1] == ' ') msg += dl + 2;
        scn_report_add(rep, "", rc == SIM_ERR_IO ? "give the scenario's folder or its .zip"
                                                 : "rebuild the zip from the scenario folder, without that entry", "%s", msg);
        rc = rc == SIM_ERR_IO ? SIM_ERR_IO : SIM_ERR_FORMAT;
    } else if (!pack_exists(pk, "manifest.json")) {
        scn_report_add(rep, "", pack_is_zip(pk) ? "put manifest.json at the top of the zip, or in its one top-level folder"
                                                : "put manifest.json at the top of the scenario folder",
                       "there is no manifest.json file");
        rc = SIM_ERR_IO;
    } else if ((rc = pack_stat(pk, "manifest.json", &msize, &hint, &ferr)) == SIM_OK && msize > SCN_MAX_MANIFEST) {
        scn_report_add(rep, "", "keep the manifest under 4 MiB (long texts belong in fewer, shorter fields)",
                       "manifest.json is %llu bytes, more than the %zu-byte limit", (unsigned long long)msize,
                       SCN_MAX_MANIFEST);
        rc = SIM_ERR_FORMAT;
    } else if (rc != SIM_OK || (rc = pack_read(pk, "manifest.json", SCN_MAX_MANIFEST, &text, &len, &hint, &ferr)) != SIM_OK) {
        if (rc == SIM_ERR_NOMEM) goto fail_nomem;
        scn_report_add(rep, "", hint, "%s", ferr.msg);
        rc = rc == SIM_ERR_IO ? SIM_ERR_IO : SIM_ERR_FORMAT;
    }
    if (rc != SIM_OK) goto fail;

    json_error_t je;
    json_t *root = json_loadb(text, len, JSON_REJECT_DUPLICATES, &je);
    mem_free(text);
    text = NULL;
    if (!root) {
        scn_report_add(rep, "", "fix the JSON syntax there (and keys must be unique)", "line %d, column %d: %s", je.line,
                       je.column, je.text);
        rc = SIM_ERR_FORMAT;
        goto fail;
    }
    s->doc = root;
    if (!json_is_object(root)) {
        scn_report_add(rep, "", "the manifest is one JSON object", "expected an object, found %s", type_name(root));
        rc = SIM_ERR_FORMAT;
        goto fail;
    }
    vctx v = {.rep = rep, .s = s, .dir = dir, .pack = pk};
    parse_root(&v, root);
    for (int i = 0; i < v.n_seen; i++)
        if (v.seen[i].ok) {
            s->n_assets++;
            s->asset_bytes += v.seen[i].size;
        }
    mem_free(v.seen);
    mem_free(v.char_ids);
    mem_free(v.scene_ids);
    mem_free(v.loc_ids);
    mem_free(v.var_ids);
    if (v.nomem) goto fail_nomem;
    if (rep->n + rep->n_dropped > before) {
        rc = SIM_ERR_FORMAT;
        goto fail;
    }
    mem_free(mpath);
    pack_close(pk);
    *out = s;
    return SIM_OK;

fail_nomem:
    pack_close(pk);
    mem_free(text);
    mem_free(mpath);
    scn_free(s);
    return err_set(err, SIM_ERR_NOMEM, "%s: out of memory", dir);
fail: {
    int n = rep->n + rep->n_dropped - before;
    err_set(err, rc, "%s: %d problem%s", mpath, n, n == 1 ? "" : "s");
    pack_close(pk);
    mem_free(text);
    mem_free(mpath);
    scn_free(s);
    return rc;
}
}
