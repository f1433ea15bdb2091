// clip_tok.c — CLIP BPE: vocabulary loading, text cleaning, splitting, merging.
#include "image/clip_tok.h"

#define PCRE2_CODE_UNIT_WIDTH 8
#include <jansson.h>
#include <pcre2.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <zlib.h>

#include "base/file.h"
#include "base/strbuf.h"
#include "base/utf8.h"

#define MAX_VOCAB (1 << 20)
#define MAX_TEXT (16 << 10) // bytes of prompt accepted: BPE is quadratic in a word's length
#define MAX_FILE (64u << 20)

static const char *const SPLIT_RE =
    "<\\|startoftext\\|>|<\\|endoftext\\|>|'s|'t|'re|'ve|'m|'ll|'d|[\\p{L}]+|[\\p{N}]|[^\\s\\p{L}\\p{N}]+";

typedef struct pair_slot {
    uint64_t key;   // a << 32 | b, +1 so 0 marks an empty slot
    int32_t rank;
    int32_t result; // the merged token
} pair_slot;

struct clip_tok {
    int32_t n_vocab;
    char **text;         // (n_vocab) token strings, into text_buf
    char *text_buf;
    int32_t *str_slots;  // (str_cap) open addressing string → id, -1 empty
    uint32_t str_cap;
    pair_slot *pairs;    // (pair_cap) open addressing (a, b) → merge
    uint32_t pair_cap;
    int32_t byte_id[256], byte_end_id[256]; // a byte as a word-inner / word-final symbol
    int32_t start_id, end_id;
    pcre2_general_context *gctx;
    pcre2_code *re;
};

// --- tables ---------------------------------------------------------------------------

static uint32_t pow2_at_least(size_t n) {
    uint32_t c = 16;
    while (c < n) c <<= 1;
    return c;
}

static int32_t str_find(const clip_tok *t, const char *s, size_t n) {
    uint32_t m = t->str_cap - 1;
    for (uint32_t i = (uint32_t)hash64(s, n, 0) & m;; i = (i + 1) & m) {
        int32_t id = t->str_slots[i];
        if (id < 0) return -1;
        if (strncmp(t->text[id], s, n) == 0 && t->text[id][n] == 0) return id;
    }
}

// Adds id (whose text is set); false when the text is already there.
static bool str_insert(clip_tok *t, int32_t id) {
    const char *s = t->text[id];
    size_t n = strlen(s);
    uint32_t m = t->str_cap - 1;
    for (uint32_t i = (uint32_t)hash64(s, n, 0) & m;; i = (i + 1) & m) {
        int32_t o = t->str_slots[i];
        if (o < 0) {
            t->str_slots[i] = id;
            return true;
        }
        if (strcmp(t->text[o], s) == 0) return false;
    }
}

static uint32_t pair_hash(uint64_t k) {
    k ^= k >> 33;
    k *= 0xff51afd7ed558ccdULL;
    k ^= k >> 33;
    return (uint32_t)k;
}

static const pair_slot *pair_find(const clip_tok *t, int32_t a, int32_t b) {
    uint64_t key = ((uint64_t)(uint32_t)a << 32 | (uint32_t)b) + 1;
    uint32_t m = t->pair_cap - 1;
    for (uint32_t i = pair_hash(key) & m;; i = (i + 1) & m) {
        if (t->pairs[i].key == key) return &t->pairs[i];
        if (t->pairs[i].key == 0) return NULL;
    }
}

static void pair_insert(clip_tok *t, int32_t a, int32_t b, int32_t rank, int32_t result) {
    uint64_t key = ((uint64_t)(uint32_t)a << 32 | (uint32_t)b) + 1;
    uint32_t m = t->pair_cap - 1;
    for (uint32_t i = pair_hash(key) & m;; i = (i + 1) & m) {
        if (t->pairs[i].key == key) return; // a repeated merge keeps its first rank
        if (t->pairs[i].key == 0) {
            t->pairs[i] = (pair_slot){key, rank, result};
            return;
        }
    }
}

// CLIP's bytes_to_unicode: printable Latin-1 bytes stand for themselves, the
// others for U+0100 + their order. Returns the code point for byte b.
static uint32_t byte_cp(int b) {
    if ((b >= '!' && b <= '~') || (b >= 0xA1 && b <= 0xAC) || (b >= 0xAE && b <= 0xFF)) return (uint32_t)b;
    int n = 0;
    for (int x = 0; x < b; x++)
        if (!((x >= '!' && x <= '~') || (x >= 0xA1 && x <= 0xAC) || (x >= 0xAE && x <= 0xFF))) n++;
    return 256u + (uint32_t)n;
}

// --- loading ------------------------------------------------------------------------

static void *pcre_alloc_hook(PCRE2_SIZE n, void *ud) {
    (void)ud;
    return mem_alloc(n);
}
static void pcre_free_hook(void *p, void *ud) {
    (void)ud;
    mem_free(p);
}

void clip_tok_free(clip_tok *t) {
    if (!t) return;
    if (t->re) pcre2_code_free(t->re);
    if (t->gctx) pcre2_general_context_free(t->gctx);
    mem_free(t->text);
    mem_free(t->text_buf);
    mem_free(t->str_slots);
    mem_free(t->pairs);
    mem_free(t);
}

// Allocates the tables for n tokens and n_merges merges.
static sim_status alloc_tables(clip_tok *t, size_t n, size_t text_bytes, size_t n_merges, const char *what, sim_err *err) {
    t->n_vocab = (int32_t)n;
    t->str_cap = pow2_at_least(n * 2);
    t->pair_cap = pow2_at_least(n_merges * 2 + 2);
    t->text = mem_calloc(n, sizeof *t->text);
    t->text_buf = mem_alloc(text_bytes);
    t->str_slots = mem_alloc(t->str_cap * sizeof *t->str_slots);
    t->pairs = mem_calloc(t->pair_cap, sizeof *t->pairs);
    if (!t->text || !t->text_buf || !t->str_slots || !t->pairs)
        return err_set(err, SIM_ERR_NOMEM, "%s: out of memory for %zu tokens", what, n);
    memset(t->str_slots, 0xff, t->str_cap * sizeof *t->str_slots);
    return SIM_OK;
}

// The byte symbols, the special tokens and the split regex.
static sim_status finish(clip_tok *t, const char *what, sim_err *err) {
    for (int b = 0; b < 256; b++) {
        char s[16];
        int k = utf8_encode(byte_cp(b), s);
        t->byte_id[b] = str_find(t, s, (size_t)k);
        memcpy(s + k, "</w>", 5);
        t->byte_end_id[b] = str_find(t, s, (size_t)k + 4);
        if (t->byte_id[b] < 0 || t->byte_end_id[b] < 0)
            return err_set(err, SIM_ERR_FORMAT, "%s: the vocabulary lacks the symbol of byte 0x%02x", what, b);
    }
    t->start_id = str_find(t, "<|startoftext|>", 15);
    t->end_id = str_find(t, "<|endoftext|>", 13);
    if (t->start_id < 0 || t->end_id < 0)
        return err_set(err, SIM_ERR_FORMAT, "%s: the vocabulary lacks <|startoftext|> or <|endoftext|>", what);
    t->gctx = pcre2_general_context_create(pcre_alloc_hook, pcre_free_hook, NULL);
    pcre2_compile_context *cctx = t->gctx ? pcre2_compile_context_create(t->gctx) : NULL;
    if (!cctx) return err_set(err, SIM_ERR_NOMEM, "out of memory creating the regex context");
    int code;
    PCRE2_SIZE at;
    t->re = pcre2_compile((PCRE2_SPTR)SPLIT_RE, PCRE2_ZERO_TERMINATED, PCRE2_UTF | PCRE2_UCP | PCRE2_CASELESS, &code, &at, cctx);
    pcre2_compile_context_free(cctx);
    if (!t->re) return err_set(err, SIM_ERR_NOMEM, "the CLIP split regex does not compile (error %d)", code);
    (void)pcre2_jit_compile(t->re, PCRE2_JIT_COMPLETE);
    return SIM_OK;
}

// Adds merge l[0..n) = "a b" with the given rank.
static sim_status merge_line(clip_tok *t, const char *l, size_t n, int32_t rank, const char *what, int line, sim_err *err) {
    char joined[512];
    const char *sp = memchr(l, ' ', n);
    if (!sp || sp == l || sp == l + n - 1 || memchr(sp + 1, ' ', (size_t)(l + n - sp - 1)) || n >= sizeof joined)
        return err_set(err, SIM_ERR_FORMAT, "%s: line %d is not a merge \"a b\"", what, line);
    size_t na = (size_t)(sp - l), nb = n - na - 1;
    int32_t a = str_find(t, l, na), b = str_find(t, sp + 1, nb);
    memcpy(joined, l, na);
    memcpy(joined + na, sp + 1, nb);
    int32_t ab = str_find(t, joined, na + nb);
    if (a < 0 || b < 0 || ab < 0)
        return err_set(err, SIM_ERR_FORMAT, "%s: line %d: merge '%.*s' uses a token not in the vocabulary", what, line, (int)MIN(n, 64), l);
    pair_insert(t, a, b, rank, ab);
    return SIM_OK;
}

// Adds the merges of a merges.txt (an optional "#version" first line, then
// one "a b" per line by rank; empty lines skipped).
static sim_status add_merges(clip_tok *t, const char *lines, size_t len, const char *what, sim_err *err) {
    const char *p = lines, *end = lines + len;
    int32_t rank = 0;
    for (int line = 1; p < end; line++) {
        const char *nl = memchr(p, '\n', (size_t)(end - p));
        const char *le = nl ? nl : end;
        if (le > p && le[-1] == '\r') le--;
        size_t n = (size_t)(le - p);
        const char *l = p;
        p = nl ? nl + 1 : end;
        if (n == 0 || (line == 1 && n >= 8 && memcmp(l, "#version", 8) == 0)) continue;
        sim_status st = merge_line(t, l, n, rank++, what, line, err);
        if (st != SIM_OK) return st;
    }
    return SIM_OK;
}

sim_status clip_tok_load(clip_tok **out, const char *vocab_path, const char *merges_path, sim_err *err) {
    *out = NULL;
    clip_tok *t = mem_calloc(1, sizeof *t);
    if (!t) return err_set(err, SIM_ERR_NOMEM, "out of memory loading %s", vocab_path);
    char *vtext = NULL, *mtext = NULL;
    size_t vlen, mlen;
    json_t *root = NULL;
    sim_status st = file_read_all(vocab_path, MAX_FILE, &vtext, &vlen, err);
    if (st == SIM_OK) st = file_read_all(merges_path, MAX_FILE, &mtext, &mlen, err);
    if (st != SIM_OK) goto done;
    json_error_t je;
    root = json_loadb(vtext, vlen, JSON_REJECT_DUPLICATES, &je);
    if (!root || !json_is_object(root)) {
        st = root ? err_set(err, SIM_ERR_FORMAT, "%s: not a JSON object", vocab_path)
                  : err_set(err, SIM_ERR_FORMAT, "%s: line %d column %d: %s", vocab_path, je.line, je.column, je.text);
        goto done;
    }
    size_t n = json_object_size(root), bytes = 0;
    if (n == 0 || n > MAX_VOCAB) {
        st = err_set(err, SIM_ERR_FORMAT, "%s: %zu tokens (expected 1 to %d)", vocab_path, n, MAX_VOCAB);
        goto done;
    }
    const char *key;
    json_t *v;
    json_object_foreach(root, key, v) bytes += strlen(key) + 1;
    if ((st = alloc_tables(t, n, bytes, n, vocab_path, err)) != SIM_OK) goto done;
    char *tp = t->text_buf;
    json_object_foreach(root, key, v) {
        json_int_t id = json_is_integer(v) ? json_integer_value(v) : -1;
        if (id < 0 || (size_t)id >= n || t->text[id]) {
            st = err_set(err, SIM_ERR_FORMAT, "%s: token '%.64s' has id %s (ids must be 0..%zu, each once)", vocab_path, key,
                         json_is_integer(v) ? "out of range or repeated" : "not an integer", n - 1);
            goto done;
        }
        size_t kl = strlen(key);
        memcpy(tp, key, kl + 1);
        t->text[id] = tp;
        tp += kl + 1;
        if (!str_insert(t, (int32_t)id)) {
            st = err_set(err, SIM_ERR_FORMAT, "%s: token '%.64s' appears twice", vocab_path, key);
            goto done;
        }
    }
    if ((st = add_merges(t, mtext, mlen, merges_path, err)) != SIM_OK) goto done;
    st = finish(t, vocab_path, err);
done:
    json_decref(root);
    mem_free(vtext);
    mem_free(mtext);
    if (st != SIM_OK) clip_tok_free(t);
    else *out = t;
    return st;
}

// The original file: a header line, then merges; CLIP uses the first
// 49152 - 256 - 2 of them and derives the vocabulary from them.
#define GZ_MERGES (49152 - 256 - 2)

sim_status clip_tok_load_gz(clip_tok **out, const char *path, sim_err *err) {
    *out = NULL;
    gzFile gz = gzopen(path, "rb");
    if (!gz) return err_set(err, SIM_ERR_IO, "%s: cannot open", path);
    size_t cap = 4u << 20, len = 0;
    char *buf = mem_alloc(cap);
    sim_status st = buf ? SIM_OK : err_set(err, SIM_ERR_NOMEM, "%s: out of memory", path);
    while (st == SIM_OK) {
        if (len == cap) {
            char *nb = cap < MAX_FILE ? mem_realloc(buf, cap * 2) : NULL;
            if (!nb) {
                st = cap < MAX_FILE ? err_set(err, SIM_ERR_NOMEM, "%s: out of memory", path)
                                    : err_set(err, SIM_ERR_FORMAT, "%s: more than %u bytes uncompressed", path, MAX_FILE);
                break;
            }
            buf = nb, cap *= 2;
        }
        int r = gzread(gz, buf + len, (unsigned)MIN(cap - len, 1u << 30));
        if (r < 0) st = err_set(err, SIM_ERR_FORMAT, "%s: not a valid gzip file", path);
        if (r <= 0) break;
        len += (size_t)r;
    }
    gzclose(gz);
    clip_tok *t = NULL;
    if (st == SIM_OK && !(t = mem_calloc(1, sizeof *t))) st = err_set(err, SIM_ERR_NOMEM, "%s: out of memory", path);
    // Pass 1: the merge lines.
    char **lines = NULL;
    int n_merges = 0;
    if (st == SIM_OK && !(lines = mem_alloc(GZ_MERGES * sizeof *lines))) st = err_set(err, SIM_ERR_NOMEM, "%s: out of memory", path);
    if (st == SIM_OK) {
        char *p = memchr(buf, '\n', len);
        char *end = buf + len;
        p = p ? p + 1 : end;
        while (p < end && n_merges < GZ_MERGES) {
            char *nl = memchr(p, '\n', (size_t)(end - p));
            if (nl) *nl = 0;
            else if (len < cap) buf[len] = 0;
            else break;
            lines[n_merges++] = p;
            p = nl ? nl + 1 : end;
        }
        if (n_merges < GZ_MERGES) st = err_set(err, SIM_ERR_FORMAT, "%s: %d merges, expected %d", path, n_merges, GZ_MERGES);
    }
    if (st == SIM_OK) {
        size_t bytes = 512 * 9 + 32;
        for (int i = 0; i < n_merges; i++) bytes += strlen(lines[i]) + 1;
        st = alloc_tables(t, 512 + (size_t)n_merges + 2, bytes, (size_t)n_merges, path, err);
    }
    if (st == SIM_OK) {
        char *tp = t->text_buf;
        int32_t id = 0;
        for (int pass = 0; pass < 2; pass++) {
            // Vocabulary order: the printable bytes first, then the others (bytes_to_unicode's order).
            for (int kind = 0; kind < 2; kind++)
                for (int b = 0; b < 256; b++) {
                    if ((byte_cp(b) < 256) != (kind == 0)) continue;
                    int k = utf8_encode(byte_cp(b), tp);
                    if (pass) memcpy(tp + k, "</w>", 4), k += 4;
                    tp[k] = 0;
                    t->text[id] = tp;
                    str_insert(t, id++);
                    tp += k + 1;
                }
        }
        for (int i = 0; i < n_merges && st == SIM_OK; i++) {
            char *l = lines[i], *sp = strchr(l, ' ');
            size_t n = strlen(l);
            if (n && l[n - 1] == '\r') l[--n] = 0;
            if (!sp || sp == l || !sp[1] || strchr(sp + 1, ' ')) {
                st = err_set(err, SIM_ERR_FORMAT, "%s: line %d is not a merge \"a b\"", path, i + 2);
                break;
            }
            memcpy(tp, l, (size_t)(sp - l));
            strcpy(tp + (sp - l), sp + 1);
            t->text[id] = tp;
            tp += n;
            if (!str_insert(t, id)) {
                st = err_set(err, SIM_ERR_FORMAT, "%s: line %d: merge result '%.64s' repeated", path, i + 2, t->text[id]);
                break;
            }
            id++;
        }
        if (st == SIM_OK) {
            strcpy(tp, "<|startoftext|>");
            t->text[id] = tp, str_insert(t, id++), tp += 16;
            strcpy(tp, "<|endoftext|>");
            t->text[id] = tp, str_insert(t, id++);
            // Merges, now that every part has an id.
            for (int i = 0; i < n_merges && st == SIM_OK; i++)
                st = merge_line(t, lines[i], strlen(lines[i]), i, path, i + 2, err);
        }
    }
    mem_free(lines);
    mem_free(buf);
    if (st == SIM_OK) st = finish(t, path, err);
    if (st != SIM_OK) clip_tok_free(t);
    else *out = t;
    return st;
}

int32_t clip_tok_n_vocab(const clip_tok *t) { return t->n_vocab; }

int32_t clip_tok_id(const clip_tok *t, const char *text) { return str_find(t, text, strlen(text)); }

const char *clip_tok_text(const clip_tok *t, int32_t id) {
    return id >= 0 && id < t->n_vocab ? t->text[id] : NULL;
}

// --- text cleaning --------------------------------------------------------------------

// Named character references: the common ones of HTML5's table. `legacy`
// ones are also recognised without the semicolon, as html.unescape does.
static const struct {
    const char *name;
    uint32_t cp;
    bool legacy;
} ENTITIES[] = {
    {"amp", '&', true}, {"lt", '<', true}, {"gt", '>', true}, {"quot", '"', true}, {"apos", '\'', false},
    {"AMP", '&', true}, {"LT", '<', true}, {"GT", '>', true}, {"QUOT", '"', true}, {"nbsp", 0xA0, true},
    {"copy", 0xA9, true}, {"COPY", 0xA9, true}, {"reg", 0xAE, true}, {"REG", 0xAE, true}, {"deg", 0xB0, true},
    {"times", 0xD7, true}, {"divide", 0xF7, true}, {"laquo", 0xAB, true}, {"raquo", 0xBB, true},
    {"middot", 0xB7, true}, {"pound", 0xA3, true}, {"yen", 0xA5, true}, {"cent", 0xA2, true}, {"sect", 0xA7, true},
    {"para", 0xB6, true}, {"eacute", 0xE9, true}, {"egrave", 0xE8, true}, {"agrave", 0xE0, true},
    {"aacute", 0xE1, true}, {"uuml", 0xFC, true}, {"ouml", 0xF6, true}, {"auml", 0xE4, true}, {"szlig", 0xDF, true},
    {"ccedil", 0xE7, true}, {"ntilde", 0xF1, true}, {"iuml", 0xEF, true}, {"hellip", 0x2026, false},
    {"mdash", 0x2014, false}, {"ndash", 0x2013, false}, {"lsquo", 0x2018, false}, {"rsquo", 0x2019, false},
    {"ldquo", 0x201C, false}, {"rdquo", 0x201D, false}, {"trade", 0x2122, false}, {"euro", 0x20AC, false},
    {"bull", 0x2022, false}, {"hearts", 0x2665, false}, {"star", 0x2606, false},
};

// html.unescape's numeric rules: C1 controls are read as Windows-1252.
static const uint16_t CP1252[32] = {
    0x20AC, 0x81, 0x201A, 0x192, 0x201E, 0x2026, 0x2020, 0x2021, 0x2C6, 0x2030, 0x160, 0x2039, 0x152, 0x8D, 0x17D, 0x8F,
    0x90, 0x2018, 0x2019, 0x201C, 0x201D, 0x2022, 0x2013, 0x2014, 0x2DC, 0x2122, 0x161, 0x203A, 0x153, 0x9D, 0x17E, 0x178,
};

static void put_cp(sbuf *b, uint32_t cp) {
    char s[4];
    int k = utf8_encode(cp, s);
    sb_put(b, s, (size_t)k);
}

// One html.unescape pass over s[0..n) into b.
static void unescape(sbuf *b, const char *s, size_t n) {
    size_t i = 0;
    while (i < n) {
        if (s[i] != '&') {
            sb_put(b, s + i, 1);
            i++;
            continue;
        }
        size_t j = i + 1;
        if (j < n && s[j] == '#') {
            bool hex = j + 1 < n && (s[j + 1] == 'x' || s[j + 1] == 'X');
            size_t k = j + 1 + hex, d0 = k;
            uint64_t v = 0;
            while (k < n && (hex ? (s[k] >= '0' && s[k] <= '9') || ((s[k] | 32) >= 'a' && (s[k] | 32) <= 'f') : s[k] >= '0' && s[k] <= '9')) {
                int dv = s[k] <= '9' ? s[k] - '0' : (s[k] | 32) - 'a' + 10;
                v = v > 0x10FFFFu ? v : v * (hex ? 16 : 10) + (uint64_t)dv;
                k++;
            }
            if (k == d0) { // "&#" without digits stays as it is
                sb_put(b, "&", 1);
                i++;
                continue;
            }
            if (k < n && s[k] == ';') k++;
            if (v == 0) put_cp(b, 0xFFFD);
            else if (v == 0x0D) put_cp(b, '\r');
            else if (v >= 0x80 && v <= 0x9F) put_cp(b, CP1252[v - 0x80]);
            else if ((v >= 0xD800 && v <= 0xDFFF) || v > 0x10FFFF) put_cp(b, 0xFFFD);
            else if ((v >= 1 && v <= 8) || v == 0x0B || (v >= 0x0E && v <= 0x1F) || v == 0x7F || (v >= 0xFDD0 && v <= 0xFDEF) ||
                     (v & 0xFFFE) == 0xFFFE)
                ; // html.unescape drops these
            else put_cp(b, (uint32_t)v);
            i = k;
            continue;
        }
        // A name: up to 32 characters other than \t \n \f space < & # ;, then an optional ';'.
        size_t k = j;
        while (k < n && k - j < 32 && !strchr("\t\n\f <&#;", s[k])) k++;
        size_t nl = k - j;
        bool semi = k < n && s[k] == ';';
        int hit = -1;
        size_t used = 0;
        for (size_t e = 0; e < ARRAY_LEN(ENTITIES) && nl; e++) {
            size_t el = strlen(ENTITIES[e].name);
            if (el == nl && memcmp(ENTITIES[e].name, s + j, el) == 0 && (semi || ENTITIES[e].legacy)) {
                hit = (int)e, used = el + semi;
                break;
            }
        }
        // Otherwise the longest legacy name that starts the run (and is shorter than it).
        for (size_t e = 0; hit < 0 && e < ARRAY_LEN(ENTITIES); e++) {
            size_t el = strlen(ENTITIES[e].name);
            if (ENTITIES[e].legacy && el < nl && el >= 2 && memcmp(ENTITIES[e].name, s + j, el) == 0 && el > used) used = el;
        }
        if (hit < 0 && used) {
            for (size_t e = 0; e < ARRAY_LEN(ENTITIES); e++)
                if (ENTITIES[e].legacy && strlen(ENTITIES[e].name) == used && memcmp(ENTITIES[e].name, s + j, used) == 0) hit = (int)e;
        }
        if (hit < 0) {
            sb_put(b, "&", 1);
            i++;
            continue;
        }
        put_cp(b, ENTITIES[hit].cp);
        i = j + used;
    }
}

// Python's str.isspace.
static bool is_space(uint32_t c) {
    return (c >= 9 && c <= 13) || (c >= 0x1C && c <= 0x20) || c == 0x85 || c == 0xA0 || c == 0x1680 ||
           (c >= 0x2000 && c <= 0x200A) || c == 0x2028 || c == 0x2029 || c == 0x202F || c == 0x205F || c == 0x3000;
}

// Python's str.lower for the scripts with case that prompts use. Returns the
// lowercase code point (U+0130 is handled by the caller: it lowers to two).
static uint32_t to_lower(uint32_t c) {
    if (c < 0x80) return c >= 'A' && c <= 'Z' ? c + 32 : c;
    if (c >= 0xC0 && c <= 0xDE && c != 0xD7) return c + 32;
    if (c >= 0x100 && c <= 0x17F) {
        if (c == 0x178) return 0xFF;
        if ((c >= 0x139 && c <= 0x148) || (c >= 0x179 && c <= 0x17E)) return c & 1 ? c + 1 : c;
        if (c == 0x130 || c == 0x131 || c == 0x138 || c == 0x149 || c == 0x17F) return c;
        return c & 1 ? c : c + 1;
    }
    if (c >= 0x391 && c <= 0x3AB && c != 0x3A2) return c + 32;
    if (c == 0x386) return 0x3AC;
    if (c >= 0x388 && c <= 0x38A) return c + 37;
    if (c == 0x38C) return 0x3CC;
    if (c == 0x38E || c == 0x38F) return c + 63;
    if (c >= 0x410 && c <= 0x42F) return c + 32;
    if (c >= 0x400 && c <= 0x40F) return c + 80;
    if ((c >= 0x460 && c <= 0x481) || (c >= 0x48A && c <= 0x4BF) || (c >= 0x4D0 && c <= 0x52F)) return c & 1 ? c : c + 1;
    if (c == 0x4C0) return 0x4CF;
    if (c >= 0x4C1 && c <= 0x4CE) return c & 1 ? c + 1 : c;
    if (c >= 0x531 && c <= 0x556) return c + 48;
    if ((c >= 0x1E00 && c <= 0x1E95) || (c >= 0x1EA0 && c <= 0x1EFF)) return c & 1 ? c : c + 1;
    if (c == 0x1E9E) return 0xDF;
    if (c >= 0xFF21 && c <= 0xFF3A) return c + 32;
    if (c >= 0x2160 && c <= 0x216F) return c + 16;
    if (c >= 0x24B6 && c <= 0x24CF) return c + 26;
    return c;
}

// Unescape twice, collapse whitespace, trim, lowercase. Invalid UTF-8 bytes
// become U+FFFD. Returns the cleaned text (mem_free it) or NULL on no memory.
static char *clean(const char *text, size_t len) {
    sbuf a = {0}, b = {0};
    // Invalid bytes first, so everything after works on code points.
    for (size_t i = 0; i < len;) {
        uint32_t cp;
        int k = utf8_decode(text + i, len - i, &cp);
        if (k <= 0) put_cp(&a, 0xFFFD), i++;
        else sb_put(&a, text + i, (size_t)k), i += (size_t)k;
    }
    for (int pass = 0; pass < 2 && !a.oom; pass++) {
        unescape(&b, a.s ? a.s : "", a.n);
        sb_free(&a);
        a = b;
        b = (sbuf){0};
    }
    if (a.oom) { // a failed allocation must not pass for an empty text
        sb_free(&a);
        return NULL;
    }
    bool space = false;
    for (size_t i = 0; i < a.n;) {
        uint32_t cp;
        int k = utf8_decode(a.s + i, a.n - i, &cp);
        if (k <= 0) cp = 0xFFFD, k = 1; // cannot happen: the text is valid
        i += (size_t)k;
        if (is_space(cp)) {
            space = true;
            continue;
        }
        if (space && b.n) sb_put(&b, " ", 1);
        space = false;
        if (cp == 0x130) { // İ lowers to i + combining dot above
            sb_put(&b, "i", 1);
            put_cp(&b, 0x307);
        } else {
            put_cp(&b, to_lower(cp));
        }
    }
    sb_free(&a);
    if (!b.s && !b.oom) sb_put(&b, "", 0);
    return sb_take(&b);
}

// --- BPE --------------------------------------------------------------------------------

// Merges the symbols s[0..n) by rank, in place; returns the new count.
static int bpe(const clip_tok *t, int32_t *s, int n) {
    while (n > 1) {
        int32_t best = INT32_MAX, ba = 0, bb = 0, res = 0;
        for (int i = 0; i + 1 < n; i++) {
            const pair_slot *p = pair_find(t, s[i], s[i + 1]);
            if (p && p->rank < best) best = p->rank, ba = s[i], bb = s[i + 1], res = p->result;
        }
        if (best == INT32_MAX) break;
        int o = 0;
        for (int i = 0; i < n; i++) {
            if (i + 1 < n && s[i] == ba && s[i + 1] == bb) s[o++] = res, i++;
            else s[o++] = s[i];
        }
        n = o;
    }
    return n;
}

sim_status clip_tok_encode(const clip_tok *t, const char *text, size_t len, int32_t *ids, int cap, int *n_out, sim_err *err) {
    *n_out = 0;
    if (len > MAX_TEXT) return err_set(err, SIM_ERR_RANGE, "prompt of %zu bytes (at most %d)", len, MAX_TEXT);
    char *s = clean(text, len);
    if (!s) return err_set(err, SIM_ERR_NOMEM, "out of memory tokenizing a prompt");
    size_t n = strlen(s);
    int32_t *sym = mem_alloc((n + 1) * sizeof *sym);
    pcre2_match_data *md = pcre2_match_data_create_from_pattern(t->re, t->gctx);
    if (!sym || !md) {
        mem_free(sym);
        if (md) pcre2_match_data_free(md);
        mem_free(s);
        return err_set(err, SIM_ERR_NOMEM, "out of memory tokenizing a prompt");
    }
    sim_status st = SIM_OK;
    int count = 0;
    PCRE2_SIZE at = 0;
    while (at < n) {
        int rc = pcre2_match(t->re, (PCRE2_SPTR)s, n, at, 0, md, NULL);
        if (rc == PCRE2_ERROR_NOMATCH) break;
        if (rc < 0) {
            st = err_set(err, SIM_ERR_ARG, "splitting a prompt failed (regex error %d)", rc);
            break;
        }
        PCRE2_SIZE *ov = pcre2_get_ovector_pointer(md);
        const char *w = s + ov[0];
        size_t wl = ov[1] - ov[0];
        at = ov[1] > at ? ov[1] : at + 1;
        if (wl == 0) continue;
        int ns;
        if (wl == 15 && memcmp(w, "<|startoftext|>", 15) == 0) sym[0] = t->start_id, ns = 1;
        else if (wl == 13 && memcmp(w, "<|endoftext|>", 13) == 0) sym[0] = t->end_id, ns = 1;
        else {
            for (size_t i = 0; i < wl; i++) sym[i] = i + 1 < wl ? t->byte_id[(uint8_t)w[i]] : t->byte_end_id[(uint8_t)w[i]];
            ns = bpe(t, sym, (int)wl);
        }
        for (int i = 0; i < ns; i++, count++)
            if (count < cap) ids[count] = sym[i];
    }
    pcre2_match_data_free(md);
    mem_free(sym);
    mem_free(s);
    *n_out = count;
    return st;
}

sim_status clip_tok_encode_sd(const clip_tok *t, const char *text, int32_t *ids, int n_ctx, int32_t pad_id, int *n_text,
                              sim_err *err) {
    if (n_ctx < 2) return err_set(err, SIM_ERR_ARG, "a context of %d tokens cannot hold start and end", n_ctx);
    int n;
    sim_status st = clip_tok_encode(t, text, strlen(text), ids + 1, n_ctx - 2, &n, err);
    if (st != SIM_OK) return st;
    if (n_text) *n_text = n;
    int k = MIN(n, n_ctx - 2);
    ids[0] = t->start_id;
    ids[k + 1] = t->end_id;
    for (int i = k + 2; i < n_ctx; i++) ids[i] = pad_id;
    return SIM_OK;
}

// --- prompt weighting ----------------------------------------------------------------------------

typedef struct wseg {
    size_t off, len; // into the unescaped text buffer
    double w;
} wseg;

sim_status clip_tok_encode_weighted(const clip_tok *t, const char *text, int32_t *ids, float *weights, int cap, int *n_out,
                                    sim_err *err) {
    *n_out = 0;
    size_t len = strlen(text);
    if (len > MAX_TEXT) return err_set(err, SIM_ERR_RANGE, "prompt of %zu bytes (at most %d)", len, MAX_TEXT);
    // Segments of literal text (copied into buf) with weights; bracket stacks hold segment indices.
    char *buf = mem_alloc(len + 1);
    wseg *seg = mem_alloc((len + 1) * sizeof *seg);
    int *round = mem_alloc((len + 1) * sizeof *round), *square = mem_alloc((len + 1) * sizeof *square);
    if (!buf || !seg || !round || !square) {
        mem_free(buf), mem_free(seg), mem_free(round), mem_free(square);
        return err_set(err, SIM_ERR_NOMEM, "out of memory parsing a prompt");
    }
    int ns = 0, nr = 0, nq = 0;
    size_t bl = 0;
#define MULTIPLY(from, f)                                                              \
    do {                                                                               \
        for (int k_ = (from); k_ < ns; k_++) seg[k_].w *= (f);                         \
    } while (0)
#define LITERAL(p, n)                                                                  \
    do {                                                                               \
        memcpy(buf + bl, (p), (n));                                                    \
        seg[ns++] = (wseg){bl, (n), 1.0};                                              \
        bl += (n);                                                                     \
    } while (0)
    for (size_t i = 0; i < len;) {
        char ch = text[i];
        if (ch == '\\' && i + 1 < len && strchr("()[]\\", text[i + 1])) {
            LITERAL(text + i + 1, 1);
            i += 2;
        } else if (ch == '(') {
            round[nr++] = ns, i++;
        } else if (ch == '[') {
            square[nq++] = ns, i++;
        } else if (ch == ':') {
            // ":<spaces><number><spaces>)" closes a round bracket with that weight
            size_t j = i + 1;
            while (j < len && (text[j] == ' ' || text[j] == '\t')) j++;
            size_t n0 = j;
            if (j < len && (text[j] == '+' || text[j] == '-')) j++;
            while (j < len && ((text[j] >= '0' && text[j] <= '9') || text[j] == '.')) j++;
            size_t n1 = j;
            while (j < len && (text[j] == ' ' || text[j] == '\t')) j++;
            char num[32];
            double w = 0;
            bool ok = n1 > n0 && n1 - n0 < sizeof num && j < len && text[j] == ')' && nr > 0;
            if (ok) {
                memcpy(num, text + n0, n1 - n0);
                num[n1 - n0] = 0;
                char *e;
                w = strtod(num, &e);
                ok = *e == 0 && w == w;
            }
            if (ok) {
                MULTIPLY(round[--nr], w);
                i = j + 1;
            } else {
                LITERAL(text + i, 1);
                i++;
            }
        } else if (ch == ')' && nr > 0) {
            MULTIPLY(round[--nr], 1.1);
            i++;
        } else if (ch == ']' && nq > 0) {
            MULTIPLY(square[--nq], 1 / 1.1);
            i++;
        } else {
            // A run of ordinary text (a lone '\\' or unmatched bracket is text too).
            size_t j = i + 1;
            if (!strchr("\\()[]:", ch))
                while (j < len && !strchr("\\()[]:", text[j])) j++;
            LITERAL(text + i, j - i);
            i = j;
        }
    }
    while (nr > 0) MULTIPLY(round[--nr], 1.1);
    while (nq > 0) MULTIPLY(square[--nq], 1 / 1.1);
#undef MULTIPLY
#undef LITERAL
    // Merge neighbours of equal weight, then tokenize each run.
    int m = 0;
    for (int k = 0; k < ns; k++) {
        if (m && seg[m - 1].w == seg[k].w && seg[m - 1].off + seg[m - 1].len == seg[k].off) seg[m - 1].len += seg[k].len;
        else seg[m++] = seg[k];
    }
    sim_status st = SIM_OK;
    int count = 0;
    for (int k = 0; k < m && st == SIM_OK; k++) {
        int n;
        int room = cap > count ? cap - count : 0;
        st = clip_tok_encode(t, buf + seg[k].off, seg[k].len, ids + (room ? count : 0), room, &n, err);
        for (int i = 0; i < n && count + i < cap; i++) weights[count + i] = (float)seg[k].w;
        count += n;
    }
    mem_free(buf), mem_free(seg), mem_free(round), mem_free(square);
    *n_out = count;
    return st;
}
