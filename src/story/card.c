// card.c — SillyTavern character cards: PNG chunk walk, base64, JSON fields.
#include "story/card.h"

#include <stdarg.h>
#include <stdio.h>
#include <string.h>

#include "base/utf8.h"

// --- CRC-32 -----------------------------------------------------------------------

// Nibble table for the reflected polynomial 0xEDB88320: 16 entries, two
// lookups per byte. Card PNGs are small, so this beats a 1 KiB table's cache cost.
static const uint32_t crc_nibble[16] = {
    0x00000000, 0x1DB71064, 0x3B6E20C8, 0x26D930AC, 0x76DC4190, 0x6B6B51F4,
    0x4DB26158, 0x5005713C, 0xEDB88320, 0xF00F9344, 0xD6D6A3E8, 0xCB61B38C,
    0x9B64C2B0, 0x86D3D2D4, 0xA00AE278, 0xBDBDF21C,
};

uint32_t card_crc32(uint32_t crc, const void *data, size_t n) {
    const uint8_t *p = data;
    crc = ~crc;
    for (size_t i = 0; i < n; i++) {
        crc ^= p[i];
        crc = crc_nibble[crc & 15] ^ (crc >> 4);
        crc = crc_nibble[crc & 15] ^ (crc >> 4);
    }
    return ~crc;
}

// --- base64 -----------------------------------------------------------------------

static int b64_value(uint8_t c) {
    if (c >= 'A' && c <= 'Z') return c - 'A';
    if (c >= 'a' && c <= 'z') return c - 'a' + 26;
    if (c >= '0' && c <= '9') return c - '0' + 52;
    if (c == '+') return 62;
    if (c == '/') return 63;
    return -1;
}

static bool b64_space(uint8_t c) { return c == ' ' || c == '\t' || c == '\r' || c == '\n'; }

sim_status card_base64_decode(const char *s, size_t n, uint8_t **out, size_t *out_len, sim_err *err) {
    *out = NULL;
    *out_len = 0;
    // First pass: count symbols and padding, and check every character.
    size_t n_sym = 0, n_pad = 0;
    for (size_t i = 0; i < n; i++) {
        uint8_t c = (uint8_t)s[i];
        if (b64_space(c)) continue;
        if (c == '=') {
            n_pad++;
            continue;
        }
        if (n_pad) return err_set(err, SIM_ERR_FORMAT, "invalid base64: data after '=' padding at offset %zu", i);
        if (b64_value(c) < 0)
            return err_set(err, SIM_ERR_FORMAT, "invalid base64: byte 0x%02x at offset %zu", c, i);
        n_sym++;
    }
    if (n_sym % 4 == 1) return err_set(err, SIM_ERR_FORMAT, "invalid base64: %zu symbols cannot encode whole bytes", n_sym);
    if (n_pad > 2 || (n_pad && (n_sym + n_pad) % 4 != 0))
        return err_set(err, SIM_ERR_FORMAT, "invalid base64: wrong '=' padding");
    size_t len = n_sym / 4 * 3 + (n_sym % 4 ? n_sym % 4 - 1 : 0);
    uint8_t *buf = mem_alloc(len + 1);
    if (!buf) return err_set(err, SIM_ERR_NOMEM, "out of memory decoding base64 (%zu bytes)", len);
    uint32_t acc = 0;
    int bits = 0;
    size_t o = 0;
    for (size_t i = 0; i < n; i++) {
        int v = b64_value((uint8_t)s[i]);
        if (v < 0) continue; // whitespace and padding, checked above
        acc = (acc << 6) | (uint32_t)v;
        bits += 6;
        if (bits >= 8) {
            bits -= 8;
            buf[o++] = (uint8_t)(acc >> bits);
            acc &= (1u << bits) - 1;
        }
    }
    ASSERT(o == len);
    buf[len] = 0;
    *out = buf;
    *out_len = len;
    return SIM_OK;
}

// --- JSON fields ---------------------------------------------------------------------

typedef struct pctx {
    const char *name; // for error messages
    sim_err *err;
} pctx;

#define PATH_CAP 256 // paths are formatted with bounded %.Ns, so they always fit

// "parent.key" (or "key" at the top of a V1 card).
static void path_join(char *buf, const char *parent, const char *key) {
    if (parent[0]) snprintf(buf, PATH_CAP, "%.180s.%.40s", parent, key);
    else snprintf(buf, PATH_CAP, "%.40s", key);
}

static sim_status perr(pctx *p, sim_status code, const char *fmt, ...) __attribute__((format(printf, 3, 4)));
static sim_status perr(pctx *p, sim_status code, const char *fmt, ...) {
    char msg[400];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    return err_set(p->err, code, "%s: %s", p->name, msg);
}

static sim_status nomem(pctx *p) { return perr(p, SIM_ERR_NOMEM, "out of memory"); }

// Copies a JSON string value (already known to be a string) after checking it.
static sim_status str_copy(pctx *p, json_t *v, const char *path, char **out) {
    const char *s = json_string_value(v);
    size_t n = json_string_length(v);
    if (n > CARD_MAX_STRING)
        return perr(p, SIM_ERR_RANGE, "%s is %zu bytes (at most %u)", path, n, CARD_MAX_STRING);
    if (strlen(s) != n) return perr(p, SIM_ERR_FORMAT, "%s: contains a NUL character", path);
    if (!utf8_valid(s, n)) return perr(p, SIM_ERR_FORMAT, "%s: invalid UTF-8", path);
    *out = mem_strndup(s, n);
    return *out ? SIM_OK : nomem(p);
}

// obj[key] as an owned string; "" when absent or null.
static sim_status get_str(pctx *p, json_t *obj, const char *parent, const char *key, char **out) {
    char path[PATH_CAP];
    path_join(path, parent, key);
    json_t *v = json_object_get(obj, key);
    if (!v || json_is_null(v)) {
        *out = mem_strdup("");
        return *out ? SIM_OK : nomem(p);
    }
    if (!json_is_string(v)) return perr(p, SIM_ERR_FORMAT, "%s must be a string", path);
    return str_copy(p, v, path, out);
}

// obj[key] as an array of owned strings (at most max); empty when absent or null.
static sim_status get_str_list(pctx *p, json_t *obj, const char *parent, const char *key, int max,
                               char ***out, int *n_out) {
    char path[PATH_CAP], ipath[PATH_CAP];
    path_join(path, parent, key);
    json_t *v = json_object_get(obj, key);
    if (!v || json_is_null(v)) return SIM_OK;
    if (!json_is_array(v)) return perr(p, SIM_ERR_FORMAT, "%s must be an array of strings", path);
    size_t n = json_array_size(v);
    if (n > (size_t)max) return perr(p, SIM_ERR_RANGE, "%s has %zu items (at most %d)", path, n, max);
    if (n == 0) return SIM_OK;
    *out = mem_calloc(n, sizeof **out);
    if (!*out) return nomem(p);
    *n_out = (int)n;
    for (size_t i = 0; i < n; i++) {
        json_t *e = json_array_get(v, i);
        snprintf(ipath, sizeof ipath, "%.200s[%zu]", path, i);
        if (!json_is_string(e)) return perr(p, SIM_ERR_FORMAT, "%s must be a string", ipath);
        sim_status st = str_copy(p, e, ipath, &(*out)[i]);
        if (st != SIM_OK) return st;
    }
    return SIM_OK;
}

static sim_status get_bool(pctx *p, json_t *obj, const char *parent, const char *key, bool def, bool *out) {
    json_t *v = json_object_get(obj, key);
    *out = def;
    if (!v || json_is_null(v)) return SIM_OK;
    if (!json_is_boolean(v)) {
        char path[PATH_CAP];
        path_join(path, parent, key);
        return perr(p, SIM_ERR_FORMAT, "%s must be true or false", path);
    }
    *out = json_is_true(v);
    return SIM_OK;
}

// An integer, or a real with an integral value (some editors write 100.0).
static sim_status get_int(pctx *p, json_t *obj, const char *parent, const char *key, int64_t def, int64_t *out) {
    json_t *v = json_object_get(obj, key);
    *out = def;
    if (!v || json_is_null(v)) return SIM_OK;
    if (json_is_integer(v)) {
        *out = (int64_t)json_integer_value(v);
        return SIM_OK;
    }
    if (json_is_real(v)) {
        double d = json_real_value(v);
        if (d >= -9.0e15 && d <= 9.0e15 && d == (double)(int64_t)d) {
            *out = (int64_t)d;
            return SIM_OK;
        }
    }
    char path[PATH_CAP];
    path_join(path, parent, key);
    return perr(p, SIM_ERR_FORMAT, "%s must be an integer", path);
}

// --- assets ----------------------------------------------------------------------------

static bool prefix_ci(const char *s, const char *prefix) {
    for (; *prefix; s++, prefix++)
        if ((*s | 0x20) != (*prefix | 0x20) || !*s) return false;
    return true;
}

// A path inside the card archive (or relative to it): refuse anything that
// could name a file outside it.
static sim_status check_rel_path(pctx *p, const char *path, const char *what) {
    const char *s = what;
    if (!s[0]) return perr(p, SIM_ERR_FORMAT, "%s: empty path", path);
    if (s[0] == '/' || s[0] == '\\')
        return perr(p, SIM_ERR_FORMAT, "%s: absolute path \"%.60s\" not allowed", path, s);
    if (((s[0] | 0x20) >= 'a' && (s[0] | 0x20) <= 'z') && s[1] == ':')
        return perr(p, SIM_ERR_FORMAT, "%s: absolute path \"%.60s\" not allowed", path, s);
    for (const char *c = s; *c;) {
        size_t n = strcspn(c, "/\\");
        if ((n == 2 && c[0] == '.' && c[1] == '.') || (n == 6 && prefix_ci(c, "%2e%2e")) ||
            (n == 4 && (prefix_ci(c, ".%2e") || prefix_ci(c, "%2e."))))
            return perr(p, SIM_ERR_FORMAT, "%s: path traversal (\"..\") in \"%.60s\" not allowed", path, s);
        c += n;
        if (*c) c++;
    }
    return SIM_OK;
}

static sim_status parse_asset(pctx *p, json_t *a, const char *path, card_asset *out) {
    if (!json_is_object(a)) return perr(p, SIM_ERR_FORMAT, "%s must be an object", path);
    sim_status st;
    if ((st = get_str(p, a, path, "type", &out->type)) != SIM_OK) return st;
    if ((st = get_str(p, a, path, "uri", &out->uri)) != SIM_OK) return st;
    if ((st = get_str(p, a, path, "name", &out->name)) != SIM_OK) return st;
    if ((st = get_str(p, a, path, "ext", &out->ext)) != SIM_OK) return st;
    if (!out->type[0]) return perr(p, SIM_ERR_FORMAT, "%s.type is missing", path);
    if (!out->uri[0]) return perr(p, SIM_ERR_FORMAT, "%s.uri is missing", path);
    size_t ne = strlen(out->ext);
    if (ne > 16) return perr(p, SIM_ERR_FORMAT, "%s.ext is too long (%zu bytes)", path, ne);
    for (size_t i = 0; i < ne; i++) {
        char c = out->ext[i];
        if (!((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9')))
            return perr(p, SIM_ERR_FORMAT, "%s.ext must be letters and digits", path);
        out->ext[i] = (char)(c >= 'A' && c <= 'Z' ? c + 32 : c);
    }
    char upath[PATH_CAP];
    snprintf(upath, sizeof upath, "%.200s.uri", path);
    const char *u = out->uri, *rel = NULL;
    if (prefix_ci(u, "embeded://")) {
        out->kind = CARD_URI_EMBEDDED;
        rel = u + strlen("embeded://");
    } else if (prefix_ci(u, "embedded://")) {
        out->kind = CARD_URI_EMBEDDED;
        rel = u + strlen("embedded://");
    } else if (prefix_ci(u, "ccdefault:")) {
        out->kind = CARD_URI_DEFAULT;
    } else if (prefix_ci(u, "data:")) {
        out->kind = CARD_URI_DATA;
    } else if (prefix_ci(u, "http://") || prefix_ci(u, "https://")) {
        out->kind = CARD_URI_REMOTE;
    } else {
        // RFC 3986 scheme: a letter, then letters, digits, '+', '-', '.', then ':'.
        // One letter is a Windows drive ("C:\"), which check_rel_path refuses.
        size_t k = 0;
        if ((u[0] | 0x20) >= 'a' && (u[0] | 0x20) <= 'z')
            while (u[k] && (((u[k] | 0x20) >= 'a' && (u[k] | 0x20) <= 'z') || (u[k] >= '0' && u[k] <= '9') ||
                            u[k] == '+' || u[k] == '-' || u[k] == '.'))
                k++;
        if (k >= 2 && u[k] == ':') {
            out->kind = CARD_URI_OTHER;
        } else {
            out->kind = CARD_URI_PATH;
            rel = u;
        }
    }
    if (rel) {
        if ((st = check_rel_path(p, upath, rel)) != SIM_OK) return st;
        out->path = mem_strdup(rel);
    } else {
        out->path = mem_strdup("");
    }
    return out->path ? SIM_OK : nomem(p);
}

// --- lorebook ---------------------------------------------------------------------------

static sim_status parse_entry(pctx *p, json_t *e, const char *path, card_entry *out) {
    if (!json_is_object(e)) return perr(p, SIM_ERR_FORMAT, "%s must be an object", path);
    sim_status st;
    if ((st = get_str_list(p, e, path, "keys", CARD_MAX_LIST, &out->keys, &out->n_keys)) != SIM_OK) return st;
    if ((st = get_str_list(p, e, path, "secondary_keys", CARD_MAX_LIST, &out->secondary_keys,
                           &out->n_secondary_keys)) != SIM_OK)
        return st;
    if ((st = get_str(p, e, path, "content", &out->content)) != SIM_OK) return st;
    if ((st = get_str(p, e, path, "name", &out->name)) != SIM_OK) return st;
    if ((st = get_str(p, e, path, "comment", &out->comment)) != SIM_OK) return st;
    if ((st = get_bool(p, e, path, "enabled", true, &out->enabled)) != SIM_OK) return st;
    if ((st = get_bool(p, e, path, "constant", false, &out->constant)) != SIM_OK) return st;
    if ((st = get_bool(p, e, path, "selective", false, &out->selective)) != SIM_OK) return st;
    if ((st = get_bool(p, e, path, "case_sensitive", false, &out->case_sensitive)) != SIM_OK) return st;
    if ((st = get_bool(p, e, path, "use_regex", false, &out->use_regex)) != SIM_OK) return st;
    if ((st = get_int(p, e, path, "insertion_order", 100, &out->insertion_order)) != SIM_OK) return st;
    if ((st = get_int(p, e, path, "priority", 0, &out->priority)) != SIM_OK) return st;
    json_t *pos = json_object_get(e, "position");
    out->position = CARD_POS_BEFORE_CHAR;
    if (pos && !json_is_null(pos)) {
        const char *s = json_string_value(pos);
        if (s && strcmp(s, "after_char") == 0) out->position = CARD_POS_AFTER_CHAR;
        else if (!s || (s[0] && strcmp(s, "before_char") != 0))
            return perr(p, SIM_ERR_FORMAT, "%s.position must be \"before_char\" or \"after_char\"", path);
    }
    return SIM_OK;
}

static sim_status parse_book(pctx *p, card *c, json_t *data, const char *parent) {
    char path[PATH_CAP], epath[PATH_CAP], ipath[PATH_CAP];
    path_join(path, parent, "character_book");
    json_t *book = json_object_get(data, "character_book");
    if (!book || json_is_null(book)) {
        c->book_name = mem_strdup("");
        return c->book_name ? SIM_OK : nomem(p);
    }
    if (!json_is_object(book)) return perr(p, SIM_ERR_FORMAT, "%s must be an object", path);
    sim_status st = get_str(p, book, path, "name", &c->book_name);
    if (st != SIM_OK) return st;
    snprintf(epath, sizeof epath, "%.200s.entries", path);
    json_t *entries = json_object_get(book, "entries");
    if (!entries || json_is_null(entries)) return SIM_OK;
    if (!json_is_array(entries)) return perr(p, SIM_ERR_FORMAT, "%s must be an array", epath);
    size_t n = json_array_size(entries);
    if (n > CARD_MAX_ENTRIES)
        return perr(p, SIM_ERR_RANGE, "%s has %zu items (at most %d)", epath, n, CARD_MAX_ENTRIES);
    if (n == 0) return SIM_OK;
    c->entries = mem_calloc(n, sizeof *c->entries);
    if (!c->entries) return nomem(p);
    c->n_entries = (int)n;
    for (size_t i = 0; i < n; i++) {
        snprintf(ipath, sizeof ipath, "%.200s[%zu]", epath, i);
        if ((st = parse_entry(p, json_array_get(entries, i), ipath, &c->entries[i])) != SIM_OK) return st;
    }
    return SIM_OK;
}

// --- card fields -------------------------------------------------------------------------

// The fields of a V1 card (the whole object) or of a V2/V3 card's "data".
static sim_status parse_data(pctx *p, card *c, json_t *d, const char *parent) {
    char path[PATH_CAP], ipath[PATH_CAP];
    sim_status st;
    struct {
        const char *key;
        char **dst;
        bool v1; // a V1 field
    } strs[] = {
        {"name", &c->name, true},
        {"description", &c->description, true},
        {"personality", &c->personality, true},
        {"scenario", &c->scenario, true},
        {"first_mes", &c->first_mes, true},
        {"mes_example", &c->mes_example, true},
        {"creator_notes", &c->creator_notes, false},
        {"system_prompt", &c->system_prompt, false},
        {"post_history_instructions", &c->post_history_instructions, false},
        {"creator", &c->creator, false},
        {"character_version", &c->character_version, false},
        {"nickname", &c->nickname, false},
    };
    for (size_t i = 0; i < ARRAY_LEN(strs); i++) {
        bool wanted = strs[i].v1 || (c->spec >= CARD_SPEC_V2 && (strs[i].dst != &c->nickname || c->spec == CARD_SPEC_V3));
        if (wanted) st = get_str(p, d, parent, strs[i].key, strs[i].dst);
        else st = (*strs[i].dst = mem_strdup("")) ? SIM_OK : nomem(p);
        if (st != SIM_OK) return st;
    }
    if (!c->name[0]) {
        path_join(path, parent, "name");
        return perr(p, SIM_ERR_FORMAT, "%s is missing or empty", path);
    }
    if (c->spec == CARD_SPEC_V1) {
        c->book_name = mem_strdup("");
        c->extensions = json_object();
        return c->book_name && c->extensions ? SIM_OK : nomem(p);
    }
    if ((st = get_str_list(p, d, parent, "alternate_greetings", CARD_MAX_GREETINGS, &c->alternate_greetings,
                           &c->n_alternate_greetings)) != SIM_OK)
        return st;
    if ((st = get_str_list(p, d, parent, "tags", CARD_MAX_LIST, &c->tags, &c->n_tags)) != SIM_OK) return st;
    if ((st = parse_book(p, c, d, parent)) != SIM_OK) return st;

    path_join(path, parent, "extensions");
    json_t *ext = json_object_get(d, "extensions");
    if (ext && !json_is_null(ext)) {
        if (!json_is_object(ext)) return perr(p, SIM_ERR_FORMAT, "%s must be an object", path);
        c->extensions = json_incref(ext);
    } else {
        c->extensions = json_object();
        if (!c->extensions) return nomem(p);
    }
    if (c->spec != CARD_SPEC_V3) return SIM_OK;

    if ((st = get_str_list(p, d, parent, "group_only_greetings", CARD_MAX_GREETINGS, &c->group_only_greetings,
                           &c->n_group_only_greetings)) != SIM_OK)
        return st;
    if ((st = get_str_list(p, d, parent, "source", CARD_MAX_LIST, &c->source, &c->n_source)) != SIM_OK) return st;
    if ((st = get_int(p, d, parent, "creation_date", 0, &c->creation_date)) != SIM_OK) return st;
    if ((st = get_int(p, d, parent, "modification_date", 0, &c->modification_date)) != SIM_OK) return st;

    path_join(path, parent, "creator_notes_multilingual");
    json_t *ml = json_object_get(d, "creator_notes_multilingual");
    if (ml && !json_is_null(ml)) {
        if (!json_is_object(ml)) return perr(p, SIM_ERR_FORMAT, "%s must be an object", path);
        const char *lang;
        json_t *v;
        json_object_foreach(ml, lang, v) {
            snprintf(ipath, sizeof ipath, "%.200s.%.40s", path, lang);
            if (!json_is_string(v)) return perr(p, SIM_ERR_FORMAT, "%s must be a string", ipath);
            size_t n = json_string_length(v);
            if (n > CARD_MAX_STRING)
                return perr(p, SIM_ERR_RANGE, "%s is %zu bytes (at most %u)", ipath, n, CARD_MAX_STRING);
            if (!utf8_valid(json_string_value(v), n)) return perr(p, SIM_ERR_FORMAT, "%s: invalid UTF-8", ipath);
        }
        c->creator_notes_multilingual = json_incref(ml);
    }

    path_join(path, parent, "assets");
    json_t *assets = json_object_get(d, "assets");
    if (assets && !json_is_null(assets)) {
        if (!json_is_array(assets)) return perr(p, SIM_ERR_FORMAT, "%s must be an array", path);
        size_t n = json_array_size(assets);
        if (n > CARD_MAX_LIST) return perr(p, SIM_ERR_RANGE, "%s has %zu items (at most %d)", path, n, CARD_MAX_LIST);
        if (n) {
            c->assets = mem_calloc(n, sizeof *c->assets);
            if (!c->assets) return nomem(p);
            c->n_assets = (int)n;
            for (size_t i = 0; i < n; i++) {
                snprintf(ipath, sizeof ipath, "%.200s[%zu]", path, i);
                if ((st = parse_asset(p, json_array_get(assets, i), ipath, &c->assets[i])) != SIM_OK) return st;
            }
        }
    }
    return SIM_OK;
}

static void str_list_free(char **a, int n) {
    if (!a) return;
    for (int i = 0; i < n; i++) mem_free(a[i]);
    mem_free(a);
}

void card_free(card *c) {
    if (!c) return;
    char **strs[] = {&c->spec_version, &c->name, &c->nickname, &c->description, &c->personality,
                     &c->scenario, &c->first_mes, &c->mes_example, &c->creator_notes, &c->system_prompt,
                     &c->post_history_instructions, &c->creator, &c->character_version, &c->book_name};
    for (size_t i = 0; i < ARRAY_LEN(strs); i++) mem_free(*strs[i]);
    str_list_free(c->alternate_greetings, c->n_alternate_greetings);
    str_list_free(c->group_only_greetings, c->n_group_only_greetings);
    str_list_free(c->tags, c->n_tags);
    str_list_free(c->source, c->n_source);
    for (int i = 0; i < c->n_entries && c->entries; i++) {
        card_entry *e = &c->entries[i];
        str_list_free(e->keys, e->n_keys);
        str_list_free(e->secondary_keys, e->n_secondary_keys);
        mem_free(e->content);
        mem_free(e->name);
        mem_free(e->comment);
    }
    mem_free(c->entries);
    for (int i = 0; i < c->n_assets && c->assets; i++) {
        card_asset *a = &c->assets[i];
        mem_free(a->type);
        mem_free(a->uri);
        mem_free(a->name);
        mem_free(a->ext);
        mem_free(a->path);
    }
    mem_free(c->assets);
    json_decref(c->creator_notes_multilingual);
    json_decref(c->extensions);
    mem_free(c);
}

static sim_status parse_json(pctx *p, card **out, const char *text, size_t len) {
    if (len >= 3 && memcmp(text, "\xEF\xBB\xBF", 3) == 0) text += 3, len -= 3; // UTF-8 BOM
    json_error_t je;
    json_t *root = json_loadb(text, len, JSON_REJECT_DUPLICATES, &je);
    if (!root) return perr(p, SIM_ERR_FORMAT, "invalid JSON at line %d, column %d: %s", je.line, je.column, je.text);
    sim_status st;
    card *c = mem_calloc(1, sizeof *c);
    if (!c) {
        st = nomem(p);
        goto done;
    }
    if (!json_is_object(root)) {
        st = perr(p, SIM_ERR_FORMAT, "the card is not a JSON object");
        goto done;
    }
    json_t *spec = json_object_get(root, "spec"), *data = root;
    const char *parent = "";
    if (!spec || json_is_null(spec)) {
        c->spec = CARD_SPEC_V1;
    } else {
        const char *s = json_string_value(spec);
        if (!s) {
            st = perr(p, SIM_ERR_FORMAT, "spec must be a string");
            goto done;
        }
        if (strcmp(s, "chara_card_v2") == 0) c->spec = CARD_SPEC_V2;
        else if (strcmp(s, "chara_card_v3") == 0) c->spec = CARD_SPEC_V3;
        else {
            st = perr(p, SIM_ERR_UNSUPPORTED, "unknown spec \"%.40s\" (want chara_card_v2 or chara_card_v3)", s);
            goto done;
        }
        data = json_object_get(root, "data");
        parent = "data";
        if (!json_is_object(data)) {
            st = perr(p, SIM_ERR_FORMAT, "data must be an object");
            goto done;
        }
    }
    json_t *ver = json_object_get(root, "spec_version");
    if (c->spec != CARD_SPEC_V1 && json_is_number(ver)) {
        char buf[32];
        snprintf(buf, sizeof buf, "%.1f", json_number_value(ver));
        c->spec_version = mem_strdup(buf);
        st = c->spec_version ? SIM_OK : nomem(p);
    } else if (c->spec != CARD_SPEC_V1) {
        st = get_str(p, root, "", "spec_version", &c->spec_version);
    } else {
        c->spec_version = mem_strdup("");
        st = c->spec_version ? SIM_OK : nomem(p);
    }
    if (st == SIM_OK) st = parse_data(p, c, data, parent);
done:
    json_decref(root);
    if (st != SIM_OK) {
        card_free(c);
        c = NULL;
    }
    *out = c;
    return st;
}

// --- PNG --------------------------------------------------------------------------------

static const uint8_t png_sig[8] = {0x89, 'P', 'N', 'G', '\r', '\n', 0x1A, '\n'};

static uint32_t be32(const uint8_t *b) {
    return (uint32_t)b[0] << 24 | (uint32_t)b[1] << 16 | (uint32_t)b[2] << 8 | b[3];
}

static bool chunk_type_ok(const uint8_t *t) {
    for (int i = 0; i < 4; i++)
        if (!((t[i] >= 'A' && t[i] <= 'Z') || (t[i] >= 'a' && t[i] <= 'z'))) return false;
    return true;
}

typedef struct png_text {
    const char *text; // not NUL-terminated
    size_t len;
    const char *chunk; // "tEXt" or "iTXt"
} png_text;

// Finds the card text chunks; checks the chunk structure of the whole file.
static sim_status png_walk(pctx *p, const uint8_t *d, size_t len, png_text *ccv3, png_text *chara) {
    size_t pos = 8;
    for (long n = 0;; n++) {
        if (n >= CARD_MAX_PNG_CHUNKS) return perr(p, SIM_ERR_RANGE, "PNG has more than %d chunks", CARD_MAX_PNG_CHUNKS);
        if (pos == len) return perr(p, SIM_ERR_FORMAT, "PNG is truncated: no IEND chunk");
        if (len - pos < 12)
            return perr(p, SIM_ERR_FORMAT, "PNG is truncated: chunk header at offset %zu needs 12 bytes, %zu left", pos,
                        len - pos);
        uint32_t clen = be32(d + pos);
        const uint8_t *type = d + pos + 4, *body = d + pos + 8;
        char tname[5] = {0};
        if (!chunk_type_ok(type)) return perr(p, SIM_ERR_FORMAT, "PNG chunk at offset %zu has an invalid type", pos);
        memcpy(tname, type, 4);
        if (clen > 0x7FFFFFFFu)
            return perr(p, SIM_ERR_FORMAT, "PNG chunk %s at offset %zu: length %u is over 2^31-1", tname, pos, clen);
        if (clen > len - pos - 12)
            return perr(p, SIM_ERR_FORMAT, "PNG chunk %s at offset %zu: length %u runs past the end (%zu bytes left)",
                        tname, pos, clen, len - pos - 12);
        uint32_t stored = be32(body + clen), crc = card_crc32(0, type, 4 + (size_t)clen);
        if (stored != crc)
            return perr(p, SIM_ERR_FORMAT, "PNG chunk %s at offset %zu: CRC mismatch (stored %08x, computed %08x)",
                        tname, pos, stored, crc);
        bool is_ihdr = memcmp(type, "IHDR", 4) == 0;
        if (n == 0 && (!is_ihdr || clen != 13))
            return perr(p, SIM_ERR_FORMAT, "PNG does not start with a 13-byte IHDR chunk (found %s, %u bytes)", tname, clen);
        if (n > 0 && is_ihdr) return perr(p, SIM_ERR_FORMAT, "PNG has a second IHDR chunk at offset %zu", pos);
        if (memcmp(type, "IEND", 4) == 0) return SIM_OK; // anything after IEND is ignored
        bool text = memcmp(type, "tEXt", 4) == 0, itxt = memcmp(type, "iTXt", 4) == 0,
             ztxt = memcmp(type, "zTXt", 4) == 0;
        if (text || itxt || ztxt) {
            const uint8_t *z = memchr(body, 0, MIN((size_t)clen, 80));
            if (!z || z == body)
                return perr(p, SIM_ERR_FORMAT, "PNG %s chunk at offset %zu: keyword missing or over 79 bytes", tname, pos);
            size_t klen = (size_t)(z - body);
            png_text *dst = NULL;
            if (klen == 4 && memcmp(body, "ccv3", 4) == 0) dst = ccv3;
            else if (klen == 5 && memcmp(body, "chara", 5) == 0) dst = chara;
            if (dst && ztxt)
                return perr(p, SIM_ERR_UNSUPPORTED, "PNG card chunk %.*s is compressed (zTXt), which is not supported",
                            (int)klen, (const char *)body);
            if (dst && !dst->text) {
                const uint8_t *t = z + 1, *end = body + clen;
                if (itxt) { // flag, method, language\0, translated keyword\0, text
                    if (end - t < 2)
                        return perr(p, SIM_ERR_FORMAT, "PNG iTXt chunk at offset %zu is truncated", pos);
                    if (t[0] != 0)
                        return perr(p, SIM_ERR_UNSUPPORTED, "PNG card chunk %.*s is compressed (iTXt), which is not supported",
                                    (int)klen, (const char *)body);
                    t += 2;
                    for (int k = 0; k < 2; k++) {
                        const uint8_t *e = memchr(t, 0, (size_t)(end - t));
                        if (!e) return perr(p, SIM_ERR_FORMAT, "PNG iTXt chunk at offset %zu is truncated", pos);
                        t = e + 1;
                    }
                }
                dst->text = (const char *)t;
                dst->len = (size_t)(end - t);
                dst->chunk = tname[0] == 't' ? "tEXt" : "iTXt";
            }
        }
        pos += 12 + (size_t)clen;
    }
}

static sim_status parse_png(pctx *p, card **out, const uint8_t *d, size_t len) {
    png_text ccv3 = {0}, chara = {0};
    sim_status st = png_walk(p, d, len, &ccv3, &chara);
    if (st != SIM_OK) return st;
    png_text *t = ccv3.text ? &ccv3 : &chara;
    const char *kw = ccv3.text ? "ccv3" : "chara";
    if (!t->text) return perr(p, SIM_ERR_FORMAT, "PNG has no character card (no tEXt chunk \"ccv3\" or \"chara\")");
    uint8_t *json;
    size_t jlen;
    sim_err e;
    st = card_base64_decode(t->text, t->len, &json, &jlen, &e);
    if (st != SIM_OK) return perr(p, st, "%s chunk %s: %s", t->chunk, kw, e.msg);
    char name[300];
    snprintf(name, sizeof name, "%s (%s chunk %s)", p->name, t->chunk, kw);
    pctx q = {name, p->err};
    st = parse_json(&q, out, (const char *)json, jlen);
    mem_free(json);
    return st;
}

sim_status card_parse(card **out, const void *data, size_t len, const char *name_for_errors, sim_err *err) {
    pctx p = {name_for_errors ? name_for_errors : "card", err};
    *out = NULL;
    if (len > CARD_MAX_BYTES) return perr(&p, SIM_ERR_RANGE, "card is %zu bytes (at most %u)", len, CARD_MAX_BYTES);
    if (!data || len == 0) return perr(&p, SIM_ERR_FORMAT, "card is empty");
    if (len >= 8 && memcmp(data, png_sig, 8) == 0) return parse_png(&p, out, data, len);
    return parse_json(&p, out, data, len);
}

// --- macros -------------------------------------------------------------------------------

char *card_expand(const char *text, const char *char_name, const char *user_name) {
    ASSERT(text);
    const char *names[2] = {char_name ? char_name : "", user_name ? user_name : ""};
    size_t nlen[2] = {strlen(names[0]), strlen(names[1])};
    static const struct {
        const char *pat;
        size_t len;
        int who; // 0: char, 1: user
    } macros[] = {{"{{char}}", 8, 0}, {"{{user}}", 8, 1}, {"<bot>", 5, 0}, {"<user>", 6, 1}};
    char *out = NULL;
    size_t cap = 0;
    for (int pass = 0; pass < 2; pass++) { // pass 0 measures, pass 1 writes
        size_t o = 0;
        for (const char *s = text; *s;) {
            int m = -1;
            if (*s == '{' || *s == '<')
                for (int k = 0; k < (int)ARRAY_LEN(macros) && m < 0; k++)
                    if (prefix_ci(s, macros[k].pat)) m = k;
            if (m >= 0) {
                int w = macros[m].who;
                if (pass) memcpy(out + o, names[w], nlen[w]);
                if (!size_add(o, nlen[w], &o)) return NULL;
                s += macros[m].len;
            } else {
                if (pass) out[o] = *s;
                o++;
                s++;
            }
        }
        if (pass) {
            out[o] = 0;
        } else {
            if (!size_add(o, 1, &cap)) return NULL;
            out = mem_alloc(cap);
            if (!out) return NULL;
        }
    }
    return out;
}
