// tok.c — SentencePiece and byte-level BPE tokenizers (see tok.h for the contract).
//
// Layout of this file:
//   hashing and the two open-addressing maps (piece → id, (left, right) → merge)
//   pre-tokenizer table (regexes per `tokenizer.ggml.pre`)
//   loading (validation, special tokens, rendered token texts)
//   special-token partition of the input text
//   SentencePiece encoding, byte-level BPE encoding, tok_encode
//   decoding, streaming, accessors
#define PCRE2_CODE_UNIT_WIDTH 8
#include <pcre2.h>

#include "model/tok.h"

#include <stdio.h>
#include <string.h>

#include "base/utf8.h"

#define TOK_MAX_REGEX 6
#define TOK_MAX_PIECE 65535 // longest piece we accept, bytes
#define TOK_MAX_MERGES (1 << 25)

// "▁" (U+2581): SentencePiece's visible space.
static const char SPM_SPACE[3] = {(char)0xE2, (char)0x96, (char)0x81};

typedef struct tok_merge {
    uint64_t key; // (left id << 32) | right id
    int32_t rank; // -1: empty slot
    int32_t id;   // the merged token
} tok_merge;

struct tok_vocab {
    tok_kind kind;
    int32_t n_vocab;

    char *piece_buf;     // every piece, NUL-terminated, back to back
    uint32_t *piece_off; // (n_vocab + 1) offsets into piece_buf
    float *scores;       // (n_vocab)
    uint8_t *types;      // (n_vocab) tok_type
    uint16_t *attrs;     // (n_vocab) TOK_ATTR_*

    char *text_buf;      // rendered text of every token (what decoding emits), NUL-terminated
    uint32_t *text_off;  // (n_vocab + 1)
    int max_text;        // longest rendered text, bytes

    int32_t *map;        // (map_mask + 1) piece → id, TOK_NULL = empty slot
    uint32_t map_mask;

    tok_merge *merges;   // (merge_mask + 1) BPE pair → rank and result
    uint32_t merge_mask;
    int32_t n_merges;

    // SPM: the <0xXX> token of each byte; BPE: the token of each byte's
    // byte-level character. TOK_NULL when the vocab lacks it.
    int32_t byte_tok[256];
    // BPE: the UTF-8 bytes of each byte's byte-level character (1 or 2 bytes).
    char bl_chr[256][2];
    uint8_t bl_len[256];

    int32_t *special;    // (n_special) control / user-defined / unknown ids, longest piece first
    int n_special;
    int32_t *eog;        // (n_eog) end-of-generation ids, ascending
    int n_eog;

    int32_t bos, eos, eot, eom, unk, pad, sep;
    bool add_bos, add_eos, add_space_prefix, ignore_merges;
    char pre[64];
    char warning[160];

    pcre2_general_context *gctx;
    pcre2_code *re[TOK_MAX_REGEX]; // applied in order (BPE)
    int n_re;
};

// --- hashing and maps -------------------------------------------------------------

static uint64_t hash_bytes(const char *s, size_t n) {
    uint64_t h = 0x9E3779B97F4A7C15ull ^ (uint64_t)n;
    while (n >= 8) {
        uint64_t x;
        memcpy(&x, s, 8);
        h = (h ^ x) * 0xFF51AFD7ED558CCDull;
        h ^= h >> 32;
        s += 8;
        n -= 8;
    }
    uint64_t x = 0;
    memcpy(&x, s, n);
    h = (h ^ x) * 0xC4CEB9FE1A85EC53ull;
    h ^= h >> 29;
    return h;
}

static uint64_t hash_u64(uint64_t x) {
    x ^= x >> 33;
    x *= 0xFF51AFD7ED558CCDull;
    x ^= x >> 33;
    x *= 0xC4CEB9FE1A85EC53ull;
    x ^= x >> 33;
    return x;
}

static inline const char *piece_ptr(const tok_vocab *v, int32_t id) {
    return v->piece_buf + v->piece_off[id];
}
static inline size_t piece_len(const tok_vocab *v, int32_t id) {
    return v->piece_off[id + 1] - v->piece_off[id] - 1;
}

static int32_t map_find(const tok_vocab *v, const char *s, size_t n) {
    uint32_t i = (uint32_t)hash_bytes(s, n) & v->map_mask;
    for (;;) {
        int32_t id = v->map[i];
        if (id == TOK_NULL) return TOK_NULL;
        if (piece_len(v, id) == n && memcmp(piece_ptr(v, id), s, n) == 0) return id;
        i = (i + 1) & v->map_mask;
    }
}

// Inserts id unless its piece is already mapped (the first occurrence wins).
static void map_insert(tok_vocab *v, int32_t id) {
    const char *s = piece_ptr(v, id);
    size_t n = piece_len(v, id);
    uint32_t i = (uint32_t)hash_bytes(s, n) & v->map_mask;
    for (;;) {
        int32_t cur = v->map[i];
        if (cur == TOK_NULL) {
            v->map[i] = id;
            return;
        }
        if (piece_len(v, cur) == n && memcmp(piece_ptr(v, cur), s, n) == 0) return;
        i = (i + 1) & v->map_mask;
    }
}

static inline uint64_t merge_key(int32_t a, int32_t b) {
    return ((uint64_t)(uint32_t)a << 32) | (uint32_t)b;
}

static const tok_merge *merge_find(const tok_vocab *v, int32_t a, int32_t b) {
    uint64_t key = merge_key(a, b);
    uint32_t i = (uint32_t)hash_u64(key) & v->merge_mask;
    for (;;) {
        const tok_merge *m = &v->merges[i];
        if (m->rank < 0) return NULL;
        if (m->key == key) return m;
        i = (i + 1) & v->merge_mask;
    }
}

// Inserts a merge unless the pair is already there (the best rank wins).
static void merge_insert(tok_vocab *v, int32_t a, int32_t b, int32_t rank, int32_t id) {
    uint64_t key = merge_key(a, b);
    uint32_t i = (uint32_t)hash_u64(key) & v->merge_mask;
    for (;;) {
        tok_merge *m = &v->merges[i];
        if (m->rank < 0) {
            *m = (tok_merge){.key = key, .rank = rank, .id = id};
            v->n_merges++;
            return;
        }
        if (m->key == key) return;
        i = (i + 1) & v->merge_mask;
    }
}

static uint32_t pow2_at_least(uint64_t n) {
    uint32_t c = 16;
    while (c < n) c <<= 1;
    return c;
}

// --- GPT-2 byte-level alphabet ----------------------------------------------------
//
// Each byte maps to one printable code point: the bytes that are printable
// Latin-1 ('!'..'~', '¡'..'¬', '®'..'ÿ') map to themselves, the other 68 map
// to U+0100, U+0101, ... in byte order. Every code point is below U+0144.

static uint32_t bytelevel_cp(uint8_t b) {
    if ((b >= 0x21 && b <= 0x7E) || (b >= 0xA1 && b <= 0xAC) || (b >= 0xAE)) return b;
    uint32_t k = 0; // how many non-printable bytes come before b
    for (uint32_t c = 0; c < b; c++)
        if (!((c >= 0x21 && c <= 0x7E) || (c >= 0xA1 && c <= 0xAC) || (c >= 0xAE))) k++;
    return 0x100 + k;
}

// The byte a byte-level code point stands for, or -1.
static int bytelevel_byte(uint32_t cp) {
    static const int n_cp = 0x144;
    if (cp >= (uint32_t)n_cp) return -1;
    if ((cp >= 0x21 && cp <= 0x7E) || (cp >= 0xA1 && cp <= 0xAC) || (cp >= 0xAE && cp <= 0xFF))
        return (int)cp;
    if (cp < 0x100) return -1;
    uint32_t k = cp - 0x100;
    for (uint32_t c = 0; c < 256; c++) {
        if ((c >= 0x21 && c <= 0x7E) || (c >= 0xA1 && c <= 0xAC) || (c >= 0xAE)) continue;
        if (k == 0) return (int)c;
        k--;
    }
    return -1;
}

// --- pre-tokenizers -----------------------------------------------------------------
//
// The split regexes of each `tokenizer.ggml.pre` family, as the Hugging Face
// tokenizer.json files of those models define them (Split / ByteLevel /
// Digits / Punctuation pre-tokenizers, in order). Each regex isolates its
// matches inside every piece left by the previous one.

#define RE_GPT2 "'s|'t|'re|'ve|'m|'ll|'d| ?\\p{L}+| ?\\p{N}+| ?[^\\s\\p{L}\\p{N}]+|\\s+(?!\\S)|\\s+"
#define RE_LLAMA3                                                                          \
    "(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\\r\\n\\p{L}\\p{N}]?\\p{L}+|\\p{N}{1,3}|"              \
    " ?[^\\s\\p{L}\\p{N}]+[\\r\\n]*|\\s*[\\r\\n]+|\\s+(?!\\S)|\\s+"
#define RE_QWEN2                                                                           \
    "(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\\r\\n\\p{L}\\p{N}]?\\p{L}+|\\p{N}|"                   \
    " ?[^\\s\\p{L}\\p{N}]+[\\r\\n]*|\\s*[\\r\\n]+|\\s+(?!\\S)|\\s+"
#define RE_TEKKEN                                                                          \
    "[^\\r\\n\\p{L}\\p{N}]?[\\p{Lu}\\p{Lt}\\p{Lm}\\p{Lo}\\p{M}]*[\\p{Ll}\\p{Lm}\\p{Lo}\\p{M}]+|" \
    "[^\\r\\n\\p{L}\\p{N}]?[\\p{Lu}\\p{Lt}\\p{Lm}\\p{Lo}\\p{M}]+[\\p{Ll}\\p{Lm}\\p{Lo}\\p{M}]*|" \
    "\\p{N}| ?[^\\s\\p{L}\\p{N}]+[\\r\\n/]*|\\s*[\\r\\n]+|\\s+(?!\\S)|\\s+"
// DeepSeek LLM's letter class: cased letters (Lu/Ll/Lt) of the listed scripts.
#define RE_DEEPSEEK_LETTERS                                                                \
    "A-Za-z\\x{B5}\\x{C0}-\\x{D6}\\x{D8}-\\x{F6}\\x{F8}-\\x{1BA}\\x{1BC}-\\x{1BF}"         \
    "\\x{1C4}-\\x{293}\\x{295}-\\x{2AF}\\x{370}-\\x{373}\\x{376}\\x{377}\\x{37B}-\\x{37D}" \
    "\\x{37F}\\x{386}\\x{388}-\\x{38A}\\x{38C}\\x{38E}-\\x{3A1}\\x{3A3}-\\x{3F5}"          \
    "\\x{3F7}-\\x{481}\\x{48A}-\\x{52F}\\x{531}-\\x{556}\\x{10A0}-\\x{10C5}"               \
    "\\x{13A0}-\\x{13F5}\\x{13F8}-\\x{13FD}\\x{1C90}-\\x{1CBA}\\x{1CBD}-\\x{1CBF}"         \
    "\\x{1D00}-\\x{1D2B}\\x{1D6B}-\\x{1D77}\\x{1D79}-\\x{1D9A}\\x{1E00}-\\x{1F15}"         \
    "\\x{1F18}-\\x{1F1D}\\x{1F20}-\\x{1F45}\\x{1F48}-\\x{1F4D}\\x{1F50}-\\x{1F57}"         \
    "\\x{1F59}\\x{1F5B}\\x{1F5D}\\x{1F5F}-\\x{1F7D}\\x{1F80}-\\x{1FB4}\\x{1FB6}-\\x{1FBC}" \
    "\\x{1FBE}\\x{1FC2}-\\x{1FC4}\\x{1FC6}-\\x{1FCC}\\x{1FD0}-\\x{1FD3}\\x{1FD6}-\\x{1FDB}" \
    "\\x{1FE0}-\\x{1FEC}\\x{1FF2}-\\x{1FF4}\\x{1FF6}-\\x{1FFC}\\x{2102}\\x{2107}"          \
    "\\x{210A}-\\x{2113}\\x{2115}\\x{2119}-\\x{211D}\\x{2124}\\x{2126}\\x{2128}"           \
    "\\x{212A}-\\x{212D}\\x{212F}-\\x{2134}\\x{2139}\\x{213C}-\\x{213F}\\x{2145}-\\x{2149}" \
    "\\x{214E}\\x{2183}\\x{2184}\\x{2C00}-\\x{2C7B}\\x{2C7E}-\\x{2CE4}\\x{2CEB}-\\x{2CEE}" \
    "\\x{2CF2}\\x{2CF3}\\x{A640}-\\x{A66D}\\x{A680}-\\x{A69B}\\x{A722}-\\x{A76F}"          \
    "\\x{A771}-\\x{A787}\\x{A78B}-\\x{A78E}\\x{AB70}-\\x{ABBF}\\x{FB00}-\\x{FB06}"         \
    "\\x{FB13}-\\x{FB17}\\x{FF21}-\\x{FF3A}\\x{FF41}-\\x{FF5A}\\x{10400}-\\x{1044F}"       \
    "\\x{104B0}-\\x{104D3}\\x{104D8}-\\x{104FB}\\x{10C80}-\\x{10CB2}\\x{10CC0}-\\x{10CF2}" \
    "\\x{118A0}-\\x{118DF}\\x{1E900}-\\x{1E943}"
#define RE_DEEPSEEK_CJK "[\\x{4E00}-\\x{9FA5}\\x{800}-\\x{4E00}\\x{AC00}-\\x{D7FF}]+"

typedef struct tok_pre_def {
    const char *names[12];             // NULL-terminated aliases
    const char *regex[TOK_MAX_REGEX];  // applied in order, NULL-terminated
    bool ignore_merges;                // a word that is a token is emitted whole
    bool add_bos;                      // default for add_bos_token
} tok_pre_def;

static const tok_pre_def PRE_DEFS[] = {
    {{"default", NULL},
     {"[\\p{P}\\$\\+<=>\\^~\\|]+", RE_GPT2, "\\p{N}+", "[0-9][0-9][0-9]", NULL},
     false, false},
    {{"gpt-2", "phi-2", "jina-es", "jina-de", "gigachat", "jina-v1-en", "jina-v2-es",
      "jina-v2-de", "jina-v2-code", "roberta-bpe", NULL},
     {RE_GPT2, NULL}, false, false},
    {{"mpt", "olmo", "jais", NULL}, {RE_GPT2, NULL}, false, false},
    {{"llama-bpe", "llama3", "llama-v3", "falcon3", NULL}, {RE_LLAMA3, NULL}, true, true},
    {{"dbrx", "smaug-bpe", NULL}, {RE_LLAMA3, NULL}, false, false},
    {{"qwen2", "stablelm2", "megrez", NULL}, {RE_QWEN2, NULL}, false, false},
    {{"deepseek-llm", NULL},
     {"[\\r\\n]", "\\s?[" RE_DEEPSEEK_LETTERS "]+",
      "\\s?[!-/:-~\\x{FF01}-\\x{FF0F}\\x{FF1A}-\\x{FF5E}\\x{2018}-\\x{201F}\\x{3000}-\\x{3002}]+",
      "\\s+$", RE_DEEPSEEK_CJK, "\\p{N}+"},
     false, false},
    {{"deepseek-coder", NULL},
     {"[\\r\\n]", "\\s?\\p{L}+", "\\s?\\p{P}+", RE_DEEPSEEK_CJK, "\\p{N}", NULL},
     false, false},
    {{"deepseek-v3", NULL},
     {"\\p{N}{1,3}", "[\\x{4E00}-\\x{9FA5}\\x{3040}-\\x{309F}\\x{30A0}-\\x{30FF}]+",
      "[!\"#$%&'()*+,\\-./:;<=>?@\\[\\\\\\]^_`{|}~][A-Za-z]+|[^\\r\\n\\p{L}\\p{P}\\p{S}]?"
      "[\\p{L}\\p{M}]+| ?[\\p{P}\\p{S}]+[\\r\\n]*|\\s*[\\r\\n]+|\\s+(?!\\S)|\\s+",
      NULL},
     false, false},
    {{"falcon", NULL},
     {"[\\p{P}\\$\\+<=>\\^~\\|`]+", RE_GPT2, "[0-9][0-9][0-9]", NULL}, false, false},
    {{"starcoder", "refact", "command-r", "smollm", "codeshell", "exaone", "minerva-7b", NULL},
     {"\\p{N}", RE_GPT2, NULL}, false, false},
    {{"tekken", NULL}, {RE_TEKKEN, NULL}, true, true},
};

static const tok_pre_def *pre_lookup(const char *name) {
    for (size_t i = 0; i < ARRAY_LEN(PRE_DEFS); i++)
        for (const char *const *n = PRE_DEFS[i].names; *n; n++)
            if (strcmp(*n, name) == 0) return &PRE_DEFS[i];
    return NULL;
}

static void *pcre_alloc_hook(PCRE2_SIZE n, void *ud) {
    (void)ud;
    return mem_alloc(n);
}
static void pcre_free_hook(void *p, void *ud) {
    (void)ud;
    mem_free(p);
}

// --- loading ------------------------------------------------------------------------

void tok_free(tok_vocab *v) {
    if (!v) return;
    for (int i = 0; i < v->n_re; i++) pcre2_code_free(v->re[i]);
    if (v->gctx) pcre2_general_context_free(v->gctx);
    mem_free(v->piece_buf);
    mem_free(v->piece_off);
    mem_free(v->scores);
    mem_free(v->types);
    mem_free(v->attrs);
    mem_free(v->text_buf);
    mem_free(v->text_off);
    mem_free(v->map);
    mem_free(v->merges);
    mem_free(v->special);
    mem_free(v->eog);
    mem_free(v);
}

#define KEY(name) "tokenizer.ggml." name

static bool vtype_is_int(gguf_vtype t) {
    return t == GGUF_U8 || t == GGUF_I8 || t == GGUF_U16 || t == GGUF_I16 || t == GGUF_U32 ||
           t == GGUF_I32 || t == GGUF_U64 || t == GGUF_I64;
}

// An array value of the given key, or NULL when absent. Error when present
// with another element type (accept(etype) false) or another length than n
// (n >= 0).
static sim_status get_array(const gguf_file *f, const char *key, bool (*accept)(gguf_vtype),
                            const char *want, int64_t n, const gguf_value **out, sim_err *err) {
    *out = NULL;
    const gguf_value *val = gguf_get(f, key);
    if (!val) return SIM_OK;
    if (val->type != GGUF_ARRAY || !accept(val->arr.etype))
        return err_set(err, SIM_ERR_FORMAT, "%s: expected an array of %s, found %s%s", key,
                       want, val->type == GGUF_ARRAY ? "an array of " : "",
                       gguf_vtype_name(val->type == GGUF_ARRAY ? val->arr.etype : val->type));
    if (n >= 0 && val->arr.n != (uint64_t)n)
        return err_set(err, SIM_ERR_FORMAT,
                       "%s has %llu elements but tokenizer.ggml.tokens has %lld", key,
                       (unsigned long long)val->arr.n, (long long)n);
    *out = val;
    return SIM_OK;
}

static bool accept_string(gguf_vtype t) { return t == GGUF_STRING; }
static bool accept_float(gguf_vtype t) { return t == GGUF_F32 || t == GGUF_F64; }
static bool accept_int(gguf_vtype t) { return vtype_is_int(t); }

// Reads an optional token id key into *id (left alone when absent).
static sim_status get_token_id(const gguf_file *f, const char *key, int32_t n_vocab, int32_t *id,
                               sim_err *err) {
    const gguf_value *val = gguf_get(f, key);
    if (!val) return SIM_OK;
    if (!vtype_is_int(val->type))
        return err_set(err, SIM_ERR_FORMAT, "%s: expected an integer, found %s", key,
                       gguf_vtype_name(val->type));
    int64_t x = 0;
    bool ok = gguf_get_i64(f, key, &x);
    if (!ok || x < 0 || x >= n_vocab)
        return err_set(err, SIM_ERR_FORMAT, "%s = %s%lld is out of range (the vocab has %d tokens)",
                       key, ok ? "" : ">", ok ? (long long)x : (long long)INT64_MAX, (int)n_vocab);
    *id = (int32_t)x;
    return SIM_OK;
}

static sim_status get_flag(const gguf_file *f, const char *key, bool *flag, sim_err *err) {
    const gguf_value *val = gguf_get(f, key);
    if (!val) return SIM_OK;
    if (val->type != GGUF_BOOL)
        return err_set(err, SIM_ERR_FORMAT, "%s: expected a bool, found %s", key,
                       gguf_vtype_name(val->type));
    *flag = val->u != 0;
    return SIM_OK;
}

static uint16_t attr_of_type(tok_type t) {
    switch (t) {
    case TOK_TYPE_NORMAL: return TOK_ATTR_NORMAL;
    case TOK_TYPE_UNKNOWN: return TOK_ATTR_UNKNOWN;
    case TOK_TYPE_CONTROL: return TOK_ATTR_CONTROL;
    case TOK_TYPE_USER_DEFINED: return TOK_ATTR_USER_DEFINED;
    case TOK_TYPE_UNUSED: return TOK_ATTR_UNUSED;
    case TOK_TYPE_BYTE: return TOK_ATTR_BYTE;
    default: return 0;
    }
}

static int hexval(char c) {
    if (c >= '0' && c <= '9') return c - '0';
    if (c >= 'A' && c <= 'F') return c - 'A' + 10;
    if (c >= 'a' && c <= 'f') return c - 'a' + 10;
    return -1;
}

// The byte of a "<0xXX>" piece, or -1.
static int byte_piece_value(const char *s, size_t n) {
    if (n != 6 || s[0] != '<' || s[1] != '0' || s[2] != 'x' || s[5] != '>') return -1;
    int hi = hexval(s[3]), lo = hexval(s[4]);
    return hi < 0 || lo < 0 ? -1 : hi * 16 + lo;
}

// Writes token id's rendered text (what decoding emits with special = true)
// to dst (which has room for 2 × piece length) and returns its length.
static size_t render_token(const tok_vocab *v, int32_t id, char *dst) {
    const char *s = piece_ptr(v, id);
    size_t n = piece_len(v, id);
    switch ((tok_type)v->types[id]) {
    case TOK_TYPE_CONTROL:
    case TOK_TYPE_UNKNOWN:
    case TOK_TYPE_USER_DEFINED:
        memcpy(dst, s, n);
        return n;
    case TOK_TYPE_BYTE: {
        int b = byte_piece_value(s, n);
        if (b >= 0) {
            dst[0] = (char)b;
            return 1;
        }
        if (v->kind == TOK_KIND_SPM) return 0;
        break; // a BPE "byte" token that is no <0xXX>: decode it like a normal one
    }
    case TOK_TYPE_UNUSED: return 0; // placeholders: never text
    default: break;                 // normal, and undefined (unknown type numbers) like normal
    }
    size_t o = 0;
    if (v->kind == TOK_KIND_SPM) {
        for (size_t i = 0; i < n;) {
            if (i + 3 <= n && memcmp(s + i, SPM_SPACE, 3) == 0) {
                dst[o++] = ' ';
                i += 3;
            } else {
                dst[o++] = s[i++];
            }
        }
        return o;
    }
    // Byte-level: each character stands for one byte; anything outside the
    // alphabet (never in a well-formed vocab) is passed through unchanged.
    for (size_t i = 0; i < n;) {
        uint32_t cp;
        int k = utf8_decode(s + i, n - i, &cp);
        int b = k > 0 ? bytelevel_byte(cp) : -1;
        if (b >= 0) {
            dst[o++] = (char)b;
            i += (size_t)k;
        } else if (k > 0) {
            memcpy(dst + o, s + i, (size_t)k);
            o += (size_t)k;
            i += (size_t)k;
        } else {
            dst[o++] = s[i++];
        }
    }
    return o;
}

// Special ids, longest piece first (equal lengths keep id order).
static int longer_first(const void *ctx, int32_t a, int32_t b) {
    size_t la = piece_len(ctx, a), lb = piece_len(ctx, b);
    return (la < lb) - (la > lb);
}

static sim_status add_eog(tok_vocab *v, int32_t id) {
    if (id < 0) return SIM_OK;
    for (int i = 0; i < v->n_eog; i++)
        if (v->eog[i] == id) return SIM_OK;
    int32_t *e = mem_realloc(v->eog, (size_t)(v->n_eog + 1) * sizeof *e);
    if (!e) return SIM_ERR_NOMEM;
    v->eog = e;
    int i = v->n_eog++;
    while (i > 0 && e[i - 1] > id) {
        e[i] = e[i - 1];
        i--;
    }
    e[i] = id;
    return SIM_OK;
}

// Copies the pieces, scores and types and builds the piece map.
static sim_status load_tokens(tok_vocab *v, const gguf_value *toks, const gguf_value *scores,
                              const gguf_value *types, sim_err *err) {
    int32_t n = v->n_vocab;
    uint64_t total = 0;
    for (int32_t i = 0; i < n; i++) {
        uint64_t len = toks->arr.strs[i].n;
        if (len > TOK_MAX_PIECE)
            return err_set(err, SIM_ERR_FORMAT,
                           KEY("tokens") "[%d] is %llu bytes long (the limit is %d)", (int)i,
                           (unsigned long long)len, TOK_MAX_PIECE);
        total += len + 1;
    }
    if (total > UINT32_MAX / 2)
        return err_set(err, SIM_ERR_FORMAT, KEY("tokens") ": %llu bytes of pieces is too many",
                       (unsigned long long)total);
    v->piece_buf = mem_alloc((size_t)total);
    v->piece_off = mem_alloc(((size_t)n + 1) * sizeof *v->piece_off);
    v->scores = mem_alloc((size_t)n * sizeof *v->scores);
    v->types = mem_alloc((size_t)n);
    v->attrs = mem_alloc((size_t)n * sizeof *v->attrs);
    v->map_mask = pow2_at_least((uint64_t)n * 2) - 1;
    v->map = mem_alloc(((size_t)v->map_mask + 1) * sizeof *v->map);
    if (!v->piece_buf || !v->piece_off || !v->scores || !v->types || !v->attrs || !v->map)
        return err_set(err, SIM_ERR_NOMEM, "out of memory loading %d tokens", (int)n);
    uint32_t off = 0;
    for (int32_t i = 0; i < n; i++) {
        const gguf_str *s = &toks->arr.strs[i];
        v->piece_off[i] = off;
        memcpy(v->piece_buf + off, s->s, (size_t)s->n);
        off += (uint32_t)s->n;
        v->piece_buf[off++] = 0;
        v->scores[i] = scores ? (float)gguf_arr_float(scores, (uint64_t)i) : 0.0f;
        int64_t t = types ? gguf_arr_int(types, (uint64_t)i) : TOK_TYPE_NORMAL;
        bool known = t >= TOK_TYPE_NORMAL && t <= TOK_TYPE_BYTE;
        v->types[i] = (uint8_t)(known ? t : TOK_TYPE_UNDEFINED);
        v->attrs[i] = attr_of_type((tok_type)v->types[i]);
    }
    v->piece_off[n] = off;
    for (uint32_t i = 0; i <= v->map_mask; i++) v->map[i] = TOK_NULL;
    for (int32_t i = 0; i < n; i++)
        if (piece_len(v, i) > 0) map_insert(v, i);
    return SIM_OK;
}

static sim_status load_merges(tok_vocab *v, const gguf_file *f, sim_err *err) {
    const gguf_value *m;
    sim_status st = get_array(f, KEY("merges"), accept_string, "string", -1, &m, err);
    if (st != SIM_OK) return st;
    if (!m) return err_set(err, SIM_ERR_FORMAT, KEY("merges") " is missing (required for gpt2)");
    if (m->arr.n > TOK_MAX_MERGES)
        return err_set(err, SIM_ERR_FORMAT, KEY("merges") " has %llu entries (the limit is %d)",
                       (unsigned long long)m->arr.n, TOK_MAX_MERGES);
    int32_t n = (int32_t)m->arr.n;
    v->merge_mask = pow2_at_least((uint64_t)n * 2) - 1;
    v->merges = mem_alloc(((size_t)v->merge_mask + 1) * sizeof *v->merges);
    char *joined = mem_alloc(2 * TOK_MAX_PIECE + 2);
    if (!v->merges || !joined) {
        mem_free(joined);
        return err_set(err, SIM_ERR_NOMEM, "out of memory loading %d merges", (int)n);
    }
    for (uint32_t i = 0; i <= v->merge_mask; i++) v->merges[i].rank = -1;
    st = SIM_OK;
    for (int32_t r = 0; r < n && st == SIM_OK; r++) {
        const char *s = m->arr.strs[r].s;
        size_t len = (size_t)m->arr.strs[r].n;
        // Split at the first space after the first byte ("  a" style pieces
        // never occur: byte-level pieces hold no raw spaces).
        const char *sp = len > 1 ? memchr(s + 1, ' ', len - 1) : NULL;
        if (!sp) {
            st = err_set(err, SIM_ERR_FORMAT, KEY("merges") "[%d] = '%.*s' is not 'left right'",
                         (int)r, (int)MIN(len, 64), s);
            break;
        }
        size_t la = (size_t)(sp - s), lb = len - la - 1;
        int32_t a = map_find(v, s, la);
        int32_t b = lb ? map_find(v, sp + 1, lb) : TOK_NULL;
        int32_t ab = TOK_NULL;
        if (a >= 0 && b >= 0 && la + lb <= 2 * TOK_MAX_PIECE) {
            memcpy(joined, s, la);
            memcpy(joined + la, sp + 1, lb);
            ab = map_find(v, joined, la + lb);
        }
        if (a < 0 || b < 0 || ab < 0) {
            st = err_set(err, SIM_ERR_FORMAT, KEY("merges") "[%d] = '%.*s' names %s",
                         (int)r, (int)MIN(len, 64), s,
                         a < 0   ? "an unknown left piece"
                         : b < 0 ? "an unknown right piece"
                                 : "a pair whose concatenation is no token");
            break;
        }
        merge_insert(v, a, b, r, ab);
    }
    mem_free(joined);
    return st;
}

static sim_status compile_pre(tok_vocab *v, const tok_pre_def *def, sim_err *err) {
    v->gctx = pcre2_general_context_create(pcre_alloc_hook, pcre_free_hook, NULL);
    if (!v->gctx) return err_set(err, SIM_ERR_NOMEM, "out of memory creating the regex context");
    pcre2_compile_context *cctx = pcre2_compile_context_create(v->gctx);
    if (!cctx) return err_set(err, SIM_ERR_NOMEM, "out of memory creating the regex context");
    sim_status st = SIM_OK;
    for (int i = 0; i < TOK_MAX_REGEX && def->regex[i]; i++) {
        int code;
        PCRE2_SIZE at;
        pcre2_code *re = pcre2_compile((PCRE2_SPTR)def->regex[i], PCRE2_ZERO_TERMINATED,
                                       PCRE2_UTF | PCRE2_UCP | PCRE2_MATCH_INVALID_UTF, &code,
                                       &at, cctx);
        if (!re) {
            PCRE2_UCHAR msg[160];
            pcre2_get_error_message(code, msg, sizeof msg);
            st = err_set(err, code == PCRE2_ERROR_HEAP_FAILED || code == PCRE2_ERROR_NOMEMORY
                                  ? SIM_ERR_NOMEM : SIM_ERR_UNSUPPORTED,
                         "pre-tokenizer '%s': regex %d does not compile at offset %zu: %s",
                         v->pre, i, (size_t)at, (const char *)msg);
            break;
        }
        // JIT makes splitting several times faster; without it the
        // interpreter gives the same results.
        (void)pcre2_jit_compile(re, PCRE2_JIT_COMPLETE);
        v->re[v->n_re++] = re;
    }
    pcre2_compile_context_free(cctx);
    return st;
}

// Builds the rendered text of every token.
static sim_status build_texts(tok_vocab *v, sim_err *err) {
    int32_t n = v->n_vocab;
    // Rendering never grows a piece by more than 2x (a byte-level character
    // outside the alphabet is copied as is; everything else shrinks).
    size_t cap = (size_t)v->piece_off[n] * 2 + 16;
    v->text_buf = mem_alloc(cap);
    v->text_off = mem_alloc(((size_t)n + 1) * sizeof *v->text_off);
    if (!v->text_buf || !v->text_off)
        return err_set(err, SIM_ERR_NOMEM, "out of memory rendering %d tokens", (int)n);
    uint32_t off = 0;
    v->max_text = 0;
    for (int32_t i = 0; i < n; i++) {
        v->text_off[i] = off;
        size_t k = render_token(v, i, v->text_buf + off);
        off += (uint32_t)k;
        v->text_buf[off++] = 0;
        if ((int)k > v->max_text) v->max_text = (int)k;
    }
    v->text_off[n] = off;
    return SIM_OK;
}

static sim_status load_specials(tok_vocab *v, const gguf_file *f, sim_err *err) {
    int32_t n = v->n_vocab;
    // Tokens that end a turn in common chat formats. llama.cpp finds them by
    // their text too (the converters do not always mark them), makes them
    // control tokens and stops generation on them.
    static const char *const eot_names[] = {"<|eot_id|>", "<|im_end|>", "<|end|>",
                                            "<end_of_turn>", "<|endoftext|>", "<EOT>",
                                            "<\xEF\xBD\x9C" "end\xE2\x96\x81of\xE2\x96\x81sentence"
                                            "\xEF\xBD\x9C>"};
    static const char *const eog_names[] = {"<|eot_id|>", "<|im_end|>", "<|end|>",
                                            "<end_of_turn>", "<|endoftext|>", "<|eom_id|>",
                                            "<EOT>", "<|fim_pad|>", "<|repo_name|>",
                                            "<|file_sep|>"};
    if (v->eot == TOK_NULL) {
        for (size_t k = 0; k < ARRAY_LEN(eot_names) && v->eot == TOK_NULL; k++) {
            int32_t id = map_find(v, eot_names[k], strlen(eot_names[k]));
            if (id >= 0) v->eot = id;
        }
    }
    if (v->eom == TOK_NULL) v->eom = map_find(v, "<|eom_id|>", 10);
    sim_status st = SIM_OK;
    for (size_t k = 0; k < ARRAY_LEN(eog_names) && st == SIM_OK; k++) {
        int32_t id = map_find(v, eog_names[k], strlen(eog_names[k]));
        if (id < 0) continue;
        st = add_eog(v, id);
    }
    int32_t forced[] = {v->eot, v->eom};
    for (size_t k = 0; k < ARRAY_LEN(forced); k++) {
        if (forced[k] < 0) continue;
        if (st == SIM_OK) st = add_eog(v, forced[k]);
    }
    // Tokens found by name are control tokens whatever the file says.
    for (int i = 0; i < v->n_eog; i++) {
        int32_t id = v->eog[i];
        v->types[id] = TOK_TYPE_CONTROL;
        v->attrs[id] = (uint16_t)((v->attrs[id] & (TOK_ATTR_LSTRIP | TOK_ATTR_RSTRIP)) |
                                  TOK_ATTR_CONTROL);
    }
    if (st == SIM_OK) st = add_eog(v, v->eos);
    if (st != SIM_OK) return err_set(err, SIM_ERR_NOMEM, "out of memory");

    int ns = 0;
    for (int32_t i = 0; i < n; i++)
        if ((v->attrs[i] & (TOK_ATTR_CONTROL | TOK_ATTR_USER_DEFINED | TOK_ATTR_UNKNOWN)) &&
            piece_len(v, i) > 0)
            ns++;
    v->special = mem_alloc((size_t)(ns ? ns : 1) * sizeof *v->special);
    int32_t *tmp = mem_alloc((size_t)(ns ? ns : 1) * sizeof *tmp);
    if (!v->special || !tmp) {
        mem_free(tmp);
        return err_set(err, SIM_ERR_NOMEM, "out of memory");
    }
    ns = 0;
    for (int32_t i = 0; i < n; i++)
        if ((v->attrs[i] & (TOK_ATTR_CONTROL | TOK_ATTR_USER_DEFINED | TOK_ATTR_UNKNOWN)) &&
            piece_len(v, i) > 0)
            v->special[ns++] = i;
    sort_i32(v->special, tmp, ns, longer_first, v);
    mem_free(tmp);
    v->n_special = ns;

    // Phi-3's tokenizer strips the whitespace after its special tokens
    // (rstrip in its added_tokens), which the GGUF does not record; llama.cpp
    // recognizes the model by name, and so do we.
    char name[128] = "";
    gguf_get_str(f, "general.name", name, sizeof name);
    for (char *p = name; *p; p++)
        if (*p >= 'A' && *p <= 'Z') *p = (char)(*p - 'A' + 'a');
    if (strstr(name, "phi-3") || strstr(name, "phi3")) {
        for (int i = 0; i < ns; i++) v->attrs[v->special[i]] |= TOK_ATTR_RSTRIP;
        int32_t eos_piece = map_find(v, "</s>", 4);
        if (eos_piece >= 0) v->attrs[eos_piece] |= TOK_ATTR_RSTRIP;
        static const char *const keep[] = {"<unk>", "<s>", "<|endoftext|>"};
        for (size_t k = 0; k < ARRAY_LEN(keep); k++) {
            int32_t id = map_find(v, keep[k], strlen(keep[k]));
            if (id >= 0) v->attrs[id] &= (uint16_t)~TOK_ATTR_RSTRIP;
        }
    }
    return SIM_OK;
}

sim_status tok_load(tok_vocab **out, const gguf_file *f, sim_err *err) {
    *out = NULL;
    if (!f) return err_set(err, SIM_ERR_ARG, "tok_load: no gguf file");

    const gguf_value *model = gguf_get(f, KEY("model"));
    if (!model) return err_set(err, SIM_ERR_FORMAT, KEY("model") " is missing");
    if (model->type != GGUF_STRING)
        return err_set(err, SIM_ERR_FORMAT, KEY("model") ": expected a string, found %s",
                       gguf_vtype_name(model->type));
    tok_kind kind;
    if (model->str.n == 5 && memcmp(model->str.s, "llama", 5) == 0) kind = TOK_KIND_SPM;
    else if (model->str.n == 4 && memcmp(model->str.s, "gpt2", 4) == 0) kind = TOK_KIND_BPE;
    else
        return err_set(err, SIM_ERR_UNSUPPORTED,
                       KEY("model") " = '%.*s' is not supported (only 'llama' and 'gpt2')",
                       (int)MIN(model->str.n, 64), model->str.s);

    const gguf_value *toks, *scores, *types;
    sim_status st = get_array(f, KEY("tokens"), accept_string, "string", -1, &toks, err);
    if (st != SIM_OK) return st;
    if (!toks) return err_set(err, SIM_ERR_FORMAT, KEY("tokens") " is missing");
    if (toks->arr.n == 0 || toks->arr.n > TOK_MAX_VOCAB)
        return err_set(err, SIM_ERR_FORMAT, KEY("tokens") " has %llu entries (expected 1..%d)",
                       (unsigned long long)toks->arr.n, TOK_MAX_VOCAB);
    int32_t n = (int32_t)toks->arr.n;
    if ((st = get_array(f, KEY("scores"), accept_float, "f32", n, &scores, err)) != SIM_OK)
        return st;
    if ((st = get_array(f, KEY("token_type"), accept_int, "i32", n, &types, err)) != SIM_OK)
        return st;

    tok_vocab *v = mem_calloc(1, sizeof *v);
    if (!v) return err_set(err, SIM_ERR_NOMEM, "out of memory");
    v->kind = kind;
    v->n_vocab = n;
    if ((st = load_tokens(v, toks, scores, types, err)) != SIM_OK) goto fail;

    // Defaults as llama.cpp has them: SentencePiece vocabs start with
    // <unk> <s> </s> and add BOS and a space prefix; BPE vocabs name their
    // special tokens (we assume none when they do not).
    v->bos = v->eos = v->eot = v->eom = v->unk = v->pad = v->sep = TOK_NULL;
    if (kind == TOK_KIND_SPM) {
        v->unk = n > 0 ? 0 : TOK_NULL;
        v->bos = n > 1 ? 1 : TOK_NULL;
        v->eos = n > 2 ? 2 : TOK_NULL;
        v->add_bos = true;
        v->add_space_prefix = true;
    }
    const struct { const char *key; int32_t *dst; } ids[] = {
        {KEY("bos_token_id"), &v->bos},     {KEY("eos_token_id"), &v->eos},
        {KEY("unknown_token_id"), &v->unk}, {KEY("padding_token_id"), &v->pad},
        {KEY("eot_token_id"), &v->eot},     {KEY("eom_token_id"), &v->eom},
        {KEY("seperator_token_id"), &v->sep},
    };
    for (size_t i = 0; i < ARRAY_LEN(ids); i++)
        if ((st = get_token_id(f, ids[i].key, n, ids[i].dst, err)) != SIM_OK) goto fail;

    if (kind == TOK_KIND_BPE) {
        const gguf_value *pre = gguf_get(f, KEY("pre"));
        const tok_pre_def *def;
        if (!pre) {
            snprintf(v->pre, sizeof v->pre, "default");
            snprintf(v->warning, sizeof v->warning,
                     KEY("pre") " is absent: using the 'default' pre-tokenizer (tokenization "
                                "may differ from the model's own)");
        } else if (pre->type != GGUF_STRING) {
            st = err_set(err, SIM_ERR_FORMAT, KEY("pre") ": expected a string, found %s",
                         gguf_vtype_name(pre->type));
            goto fail;
        } else {
            snprintf(v->pre, sizeof v->pre, "%.*s", (int)MIN(pre->str.n, sizeof v->pre - 1),
                     pre->str.s);
        }
        def = pre_lookup(v->pre);
        if (!def || (pre && pre->str.n >= sizeof v->pre)) {
            st = err_set(err, SIM_ERR_UNSUPPORTED,
                         KEY("pre") " = '%s' is not a known pre-tokenizer (known: default, "
                                    "gpt-2, llama-bpe, qwen2, deepseek-llm, deepseek-coder, "
                                    "deepseek-v3, falcon, starcoder, mpt, dbrx, tekken, ...)",
                         v->pre);
            goto fail;
        }
        v->ignore_merges = def->ignore_merges;
        v->add_bos = def->add_bos;
        if ((st = compile_pre(v, def, err)) != SIM_OK) goto fail;
        if ((st = load_merges(v, f, err)) != SIM_OK) goto fail;
    }
    if ((st = get_flag(f, KEY("add_bos_token"), &v->add_bos, err)) != SIM_OK) goto fail;
    if ((st = get_flag(f, KEY("add_eos_token"), &v->add_eos, err)) != SIM_OK) goto fail;
    if ((st = get_flag(f, KEY("add_space_prefix"), &v->add_space_prefix, err)) != SIM_OK)
        goto fail;

    for (int b = 0; b < 256; b++) {
        char buf[8];
        size_t k;
        if (kind == TOK_KIND_SPM) {
            k = (size_t)snprintf(buf, sizeof buf, "<0x%02X>", b);
        } else {
            k = (size_t)utf8_encode(bytelevel_cp((uint8_t)b), buf);
            memcpy(v->bl_chr[b], buf, k);
            v->bl_len[b] = (uint8_t)k;
        }
        v->byte_tok[b] = map_find(v, buf, k);
    }
    if ((st = load_specials(v, f, err)) != SIM_OK) goto fail;
    if ((st = build_texts(v, err)) != SIM_OK) goto fail;
    *out = v;
    return SIM_OK;
fail:
    tok_free(v);
    return st;
}

const char *tok_warning(const tok_vocab *v) { return v && v->warning[0] ? v->warning : NULL; }

// --- encoding: scratch, output --------------------------------------------------------

typedef struct tok_frag {
    int32_t id;    // a special token, or TOK_NULL for text
    uint32_t off;  // text: bytes [off, off + len) of the input
    uint32_t len;
} tok_frag;

typedef struct tok_span {
    uint32_t off, len;
} tok_span;

typedef struct tok_sym {
    int32_t prev, next; // neighbours in the live list, -1 at the ends
    uint32_t off, n;    // bytes of the (escaped) text; n == 0 once merged away
    int32_t id;         // BPE: the symbol's token (TOK_NULL: none)
} tok_sym;

typedef struct tok_bigram {
    float score;   // SPM: piece score (higher first)
    int32_t rank;  // BPE: merge rank (lower first)
    int32_t left, right;
    int32_t a, b;  // BPE: the ids the pair had when queued (stale check)
    uint32_t size; // SPM: bytes of the pair when queued (stale check)
} tok_bigram;

// Per-call working memory (grown as needed, freed at the end of tok_encode).
typedef struct tok_work {
    const tok_vocab *v;
    const char *text;
    int32_t *out;
    int cap;
    int64_t n_out;
    char *esc;   size_t esc_cap;   // SPM: escaped fragment
    tok_sym *sym; size_t sym_cap;
    tok_bigram *heap; size_t heap_cap, heap_n;
    tok_span *spans[2]; size_t span_cap[2];
    char *enc; size_t enc_cap;     // BPE: byte-level word (ignore_merges lookups)
    pcre2_match_data *md;
    sim_err *err;
} tok_work;

static bool grow(void **p, size_t *cap, size_t need, size_t elem) {
    if (need <= *cap) return true;
    size_t c = *cap ? *cap : 64;
    while (c < need) c *= 2;
    void *q = mem_realloc(*p, c * elem);
    if (!q) return false;
    *p = q;
    *cap = c;
    return true;
}

static inline void emit(tok_work *w, int32_t id) {
    if (w->n_out < w->cap) w->out[w->n_out] = id;
    w->n_out++;
}

// SPM and BPE heaps share one array; less(a, b) says a pops first.
static bool spm_before(const tok_bigram *a, const tok_bigram *b) {
    return a->score > b->score || (a->score == b->score && a->left < b->left);
}
static bool bpe_before(const tok_bigram *a, const tok_bigram *b) {
    return a->rank < b->rank || (a->rank == b->rank && a->left < b->left);
}

typedef bool (*tok_before_fn)(const tok_bigram *, const tok_bigram *);

static bool heap_push(tok_work *w, tok_bigram g, tok_before_fn before) {
    if (!grow((void **)&w->heap, &w->heap_cap, w->heap_n + 1, sizeof *w->heap)) return false;
    size_t i = w->heap_n++;
    while (i > 0) {
        size_t p = (i - 1) / 2;
        if (!before(&g, &w->heap[p])) break;
        w->heap[i] = w->heap[p];
        i = p;
    }
    w->heap[i] = g;
    return true;
}

static tok_bigram heap_pop(tok_work *w, tok_before_fn before) {
    tok_bigram top = w->heap[0];
    tok_bigram last = w->heap[--w->heap_n];
    size_t n = w->heap_n, i = 0;
    for (;;) {
        size_t c = 2 * i + 1;
        if (c >= n) break;
        if (c + 1 < n && before(&w->heap[c + 1], &w->heap[c])) c++;
        if (!before(&w->heap[c], &last)) break;
        w->heap[i] = w->heap[c];
        i = c;
    }
    if (n) w->heap[i] = last;
    return top;
}

// --- encoding: special-token partition -------------------------------------------------

static bool ascii_space(char c) {
    return c == ' ' || c == '\t' || c == '\n' || c == '\v' || c == '\f' || c == '\r';
}

// Splits text into fragments: special tokens and the text between them.
// Longer special tokens are taken first, each one at all its (leftmost,
// non-overlapping) occurrences in what is still text.
static sim_status partition(const tok_vocab *v, const char *text, size_t len, bool parse_special,
                            tok_frag **out, size_t *n_out) {
    size_t cap = 16, n = 0;
    tok_frag *fr = mem_alloc(cap * sizeof *fr), *tmp = NULL;
    size_t tmp_cap = 0;
    if (!fr) return SIM_ERR_NOMEM;
    if (len) fr[n++] = (tok_frag){TOK_NULL, 0, (uint32_t)len};
    bool present[256] = {false};
    for (size_t i = 0; i < len; i++) present[(uint8_t)text[i]] = true;

    for (int s = 0; s < v->n_special && n; s++) {
        int32_t id = v->special[s];
        unsigned attr = v->attrs[id];
        if (!parse_special && (attr & (TOK_ATTR_CONTROL | TOK_ATTR_UNKNOWN))) continue;
        const char *p = piece_ptr(v, id);
        size_t pl = piece_len(v, id);
        if (pl > len || !present[(uint8_t)p[0]]) continue;
        bool found = false;
        for (size_t i = 0; i < n && !found; i++)
            found = fr[i].id == TOK_NULL && fr[i].len >= pl &&
                    memmem(text + fr[i].off, fr[i].len, p, pl) != NULL;
        if (!found) continue;

        size_t m = 0;
        for (size_t i = 0; i < n; i++) {
            if (fr[i].id != TOK_NULL) {
                if (!grow((void **)&tmp, &tmp_cap, m + 1, sizeof *tmp)) goto nomem;
                tmp[m++] = fr[i];
                continue;
            }
            size_t off = fr[i].off, flen = fr[i].len;
            while (flen > 0) {
                const char *hit = flen >= pl ? memmem(text + off, flen, p, pl) : NULL;
                if (!grow((void **)&tmp, &tmp_cap, m + 3, sizeof *tmp)) goto nomem;
                if (!hit) {
                    tmp[m++] = (tok_frag){TOK_NULL, (uint32_t)off, (uint32_t)flen};
                    break;
                }
                size_t at = (size_t)(hit - text);
                size_t left = at - off;
                if (attr & TOK_ATTR_LSTRIP)
                    while (left > 0 && ascii_space(text[off + left - 1])) left--;
                if (left) tmp[m++] = (tok_frag){TOK_NULL, (uint32_t)off, (uint32_t)left};
                tmp[m++] = (tok_frag){id, 0, 0};
                size_t roff = at + pl, rlen = off + flen - roff;
                if (attr & TOK_ATTR_RSTRIP)
                    while (rlen > 0 && ascii_space(text[roff])) {
                        roff++;
                        rlen--;
                    }
                off = roff;
                flen = rlen;
            }
        }
        tok_frag *t = fr;
        fr = tmp;
        tmp = t;
        size_t c = cap;
        cap = tmp_cap;
        tmp_cap = c;
        n = m;
    }
    mem_free(tmp);
    *out = fr;
    *n_out = n;
    return SIM_OK;
nomem:
    mem_free(tmp);
    mem_free(fr);
    return SIM_ERR_NOMEM;
}

// --- encoding: SentencePiece ------------------------------------------------------------

// Pieces that plain text may turn into: not control, unknown, unused or byte
// tokens (SentencePiece never produces those from text; bytes come from the
// fallback), so that decoding gives the text back.
static bool spm_text_piece(const tok_vocab *v, int32_t id) {
    return id >= 0 && !(v->attrs[id] & (TOK_ATTR_CONTROL | TOK_ATTR_UNKNOWN | TOK_ATTR_UNUSED |
                                        TOK_ATTR_BYTE));
}

static bool spm_try_pair(tok_work *w, int32_t l, int32_t r) {
    if (l < 0 || r < 0) return true;
    const tok_sym *sl = &w->sym[l], *sr = &w->sym[r];
    int32_t id = map_find(w->v, w->esc + sl->off, sl->n + sr->n);
    if (!spm_text_piece(w->v, id)) return true;
    tok_bigram g = {.score = w->v->scores[id], .left = l, .right = r, .size = sl->n + sr->n};
    return heap_push(w, g, spm_before);
}

static void spm_emit_symbol(tok_work *w, const tok_sym *s) {
    const tok_vocab *v = w->v;
    int32_t id = map_find(v, w->esc + s->off, s->n);
    if (spm_text_piece(v, id)) {
        emit(w, id);
        return;
    }
    for (uint32_t i = 0; i < s->n; i++) {
        int32_t b = v->byte_tok[(uint8_t)w->esc[s->off + i]];
        if (b != TOK_NULL) emit(w, b);
        else if (v->unk != TOK_NULL) emit(w, v->unk);
    }
}

// Tokenizes one text fragment; prefix: put "▁" in front.
static sim_status spm_fragment(tok_work *w, const char *s, size_t n, bool prefix) {
    size_t need = n + 3;
    for (size_t i = 0; i < n; i++) need += s[i] == ' ' ? 2 : 0;
    if (!grow((void **)&w->esc, &w->esc_cap, need, 1)) return SIM_ERR_NOMEM;
    size_t e = 0;
    if (prefix) {
        memcpy(w->esc, SPM_SPACE, 3);
        e = 3;
    }
    for (size_t i = 0; i < n; i++) {
        if (s[i] == ' ') {
            memcpy(w->esc + e, SPM_SPACE, 3);
            e += 3;
        } else {
            w->esc[e++] = s[i];
        }
    }
    if (e == 0) return SIM_OK;
    if (!grow((void **)&w->sym, &w->sym_cap, e, sizeof *w->sym)) return SIM_ERR_NOMEM;
    int32_t ns = 0;
    for (size_t i = 0; i < e;) {
        uint32_t cp;
        int k = utf8_decode(w->esc + i, e - i, &cp);
        if (k <= 0) k = 1; // an invalid byte is a symbol of its own (it falls back to a byte token)
        w->sym[ns] = (tok_sym){ns - 1, -1, (uint32_t)i, (uint32_t)k, TOK_NULL};
        if (ns > 0) w->sym[ns - 1].next = ns;
        ns++;
        i += (size_t)k;
    }
    w->heap_n = 0;
    for (int32_t i = 1; i < ns; i++)
        if (!spm_try_pair(w, i - 1, i)) return SIM_ERR_NOMEM;
    while (w->heap_n) {
        tok_bigram g = heap_pop(w, spm_before);
        tok_sym *l = &w->sym[g.left], *r = &w->sym[g.right];
        if (l->n == 0 || r->n == 0 || l->n + r->n != g.size) continue; // stale
        l->n += r->n;
        r->n = 0;
        l->next = r->next;
        if (r->next >= 0) w->sym[r->next].prev = g.left;
        if (!spm_try_pair(w, l->prev, g.left) || !spm_try_pair(w, g.left, l->next))
            return SIM_ERR_NOMEM;
    }
    for (int32_t i = 0; i != -1; i = w->sym[i].next) spm_emit_symbol(w, &w->sym[i]);
    return SIM_OK;
}

// --- encoding: byte-level BPE ------------------------------------------------------------

static bool bpe_try_pair(tok_work *w, int32_t l, int32_t r) {
    if (l < 0 || r < 0) return true;
    int32_t a = w->sym[l].id, b = w->sym[r].id;
    if (a < 0 || b < 0) return true;
    const tok_merge *m = merge_find(w->v, a, b);
    if (!m) return true;
    tok_bigram g = {.rank = m->rank, .left = l, .right = r, .a = a, .b = b};
    return heap_push(w, g, bpe_before);
}

// Applies the merges to one pre-tokenized word s[0..n).
static sim_status bpe_word(tok_work *w, const char *s, size_t n) {
    const tok_vocab *v = w->v;
    if (v->ignore_merges) {
        if (!grow((void **)&w->enc, &w->enc_cap, 2 * n, 1)) return SIM_ERR_NOMEM;
        size_t e = 0;
        for (size_t i = 0; i < n; i++) {
            uint8_t c = (uint8_t)s[i];
            memcpy(w->enc + e, v->bl_chr[c], v->bl_len[c]);
            e += v->bl_len[c];
        }
        int32_t id = map_find(v, w->enc, e);
        if (id >= 0 && !(v->attrs[id] & (TOK_ATTR_CONTROL | TOK_ATTR_UNKNOWN))) {
            emit(w, id);
            return SIM_OK;
        }
    }
    if (!grow((void **)&w->sym, &w->sym_cap, n, sizeof *w->sym)) return SIM_ERR_NOMEM;
    for (size_t i = 0; i < n; i++)
        w->sym[i] = (tok_sym){(int32_t)i - 1, i + 1 < n ? (int32_t)i + 1 : -1, (uint32_t)i, 1,
                              v->byte_tok[(uint8_t)s[i]]};
    w->heap_n = 0;
    for (size_t i = 1; i < n; i++)
        if (!bpe_try_pair(w, (int32_t)i - 1, (int32_t)i)) return SIM_ERR_NOMEM;
    while (w->heap_n) {
        tok_bigram g = heap_pop(w, bpe_before);
        tok_sym *l = &w->sym[g.left], *r = &w->sym[g.right];
        if (l->n == 0 || r->n == 0 || l->id != g.a || r->id != g.b) continue; // stale
        l->n += r->n;
        l->id = merge_find(v, g.a, g.b)->id;
        r->n = 0;
        l->next = r->next;
        if (r->next >= 0) w->sym[r->next].prev = g.left;
        if (!bpe_try_pair(w, l->prev, g.left) || !bpe_try_pair(w, g.left, l->next))
            return SIM_ERR_NOMEM;
    }
    for (int32_t i = 0; i != -1; i = w->sym[i].next) {
        if (w->sym[i].id >= 0) emit(w, w->sym[i].id);
        else if (v->unk != TOK_NULL) emit(w, v->unk); // a byte with no token: only in broken vocabs
    }
    return SIM_OK;
}

// Splits every span of src by regex re into dst: matches and the gaps
// between them each become a span.
static sim_status split_spans(tok_work *w, const pcre2_code *re, const tok_span *src, size_t n_src,
                              tok_span *dst, size_t *n_dst) {
    size_t m = 0;
    for (size_t i = 0; i < n_src; i++) {
        const char *s = w->text + src[i].off;
        size_t n = src[i].len, pos = 0, last = 0;
        while (pos < n) {
            int rc = pcre2_match(re, (PCRE2_SPTR)s, n, pos, 0, w->md, NULL);
            if (rc == PCRE2_ERROR_NOMATCH) break;
            if (rc < 0) {
                PCRE2_UCHAR msg[120];
                pcre2_get_error_message(rc, msg, sizeof msg);
                sim_status code = rc == PCRE2_ERROR_NOMEMORY ? SIM_ERR_NOMEM : SIM_ERR_UNSUPPORTED;
                return err_set(w->err, code, "pre-tokenizer '%s': regex match failed: %s",
                               w->v->pre, (const char *)msg);
            }
            const PCRE2_SIZE *ov = pcre2_get_ovector_pointer(w->md);
            size_t ms = ov[0], me = ov[1];
            if (me <= ms) { // an empty match splits nothing: step over one character
                uint32_t cp;
                int k = utf8_decode(s + ms, n - ms, &cp);
                pos = ms + (k > 0 ? (size_t)k : 1);
                continue;
            }
            if (ms > last)
                dst[m++] = (tok_span){src[i].off + (uint32_t)last, (uint32_t)(ms - last)};
            dst[m++] = (tok_span){src[i].off + (uint32_t)ms, (uint32_t)(me - ms)};
            last = pos = me;
        }
        if (last < n) dst[m++] = (tok_span){src[i].off + (uint32_t)last, (uint32_t)(n - last)};
    }
    *n_dst = m;
    return SIM_OK;
}

static sim_status bpe_fragment(tok_work *w, uint32_t off, uint32_t len) {
    const tok_vocab *v = w->v;
    // Every span is non-empty, so a fragment never splits into more than len spans.
    for (int k = 0; k < 2; k++)
        if (!grow((void **)&w->spans[k], &w->span_cap[k], (size_t)len + 1, sizeof(tok_span)))
            return SIM_ERR_NOMEM;
    tok_span *a = w->spans[0], *b = w->spans[1];
    size_t na = 1, nb = 0;
    a[0] = (tok_span){off, len};
    for (int r = 0; r < v->n_re; r++) {
        sim_status st = split_spans(w, v->re[r], a, na, b, &nb);
        if (st != SIM_OK) return st;
        tok_span *t = a;
        a = b;
        b = t;
        na = nb;
    }
    for (size_t i = 0; i < na; i++) {
        sim_status st = bpe_word(w, w->text + a[i].off, a[i].len);
        if (st != SIM_OK) return st;
    }
    return SIM_OK;
}

// --- encoding: entry point ---------------------------------------------------------------

int tok_encode(const tok_vocab *v, const char *text, size_t len, bool add_special,
               bool parse_special, int32_t *out, int cap, sim_err *err) {
    if (!v || (!text && len) || cap < 0 || (cap > 0 && !out))
        return err_set(err, SIM_ERR_ARG, "tok_encode: invalid arguments");
    if (len > TOK_MAX_TEXT)
        return err_set(err, SIM_ERR_RANGE, "tok_encode: text of %zu bytes is longer than %d",
                       len, TOK_MAX_TEXT);
    tok_work w = {.v = v, .text = text, .out = out, .cap = cap, .err = err};
    tok_frag *fr = NULL;
    size_t n_fr = 0;
    sim_status st = partition(v, text, len, parse_special, &fr, &n_fr);
    if (st == SIM_OK && v->kind == TOK_KIND_BPE && n_fr) {
        w.md = pcre2_match_data_create(4, v->gctx);
        if (!w.md) st = SIM_ERR_NOMEM;
    }
    if (st == SIM_OK) {
        if (add_special && v->add_bos && v->bos != TOK_NULL) emit(&w, v->bos);
        bool prev_special = true; // SPM: text after BOS / a special token gets the space prefix
        for (size_t i = 0; i < n_fr && st == SIM_OK; i++) {
            if (fr[i].id != TOK_NULL) {
                emit(&w, fr[i].id);
                prev_special = true;
            } else if (v->kind == TOK_KIND_SPM) {
                st = spm_fragment(&w, text + fr[i].off, fr[i].len,
                                  v->add_space_prefix && prev_special);
                prev_special = false;
            } else {
                st = bpe_fragment(&w, fr[i].off, fr[i].len);
            }
        }
        if (st == SIM_OK && add_special && v->add_eos && v->eos != TOK_NULL) emit(&w, v->eos);
    }
    mem_free(fr);
    mem_free(w.esc);
    mem_free(w.sym);
    mem_free(w.heap);
    mem_free(w.spans[0]);
    mem_free(w.spans[1]);
    mem_free(w.enc);
    if (w.md) pcre2_match_data_free(w.md);
    if (st == SIM_ERR_NOMEM) return err_set(err, st, "tok_encode: out of memory");
    if (st != SIM_OK) return st; // err already says what failed
    if (w.n_out > INT32_MAX)
        return err_set(err, SIM_ERR_RANGE, "tok_encode: more than %d tokens", INT32_MAX);
    return (int)w.n_out;
}

// --- decoding ---------------------------------------------------------------------------

int tok_encode_alloc(const tok_vocab *v, const char *text, size_t len, bool add_special, bool parse_special,
                     int32_t **out, sim_err *err) {
    *out = NULL;
    int n = tok_encode(v, text, len, add_special, parse_special, NULL, 0, err);
    if (n < 0) return n;
    int32_t *ids = mem_alloc((size_t)MAX(n, 1) * sizeof *ids);
    if (!ids) return err_set(err, SIM_ERR_NOMEM, "out of memory");
    int k = tok_encode(v, text, len, add_special, parse_special, ids, n, err);
    if (k < 0) {
        mem_free(ids);
        return k;
    }
    ASSERT(k == n);
    *out = ids;
    return n;
}

const char *tok_token_text(const tok_vocab *v, int32_t id, bool special, size_t *len) {
    if (len) *len = 0;
    if (!v || id < 0 || id >= v->n_vocab) return "";
    if (!special && (v->attrs[id] & (TOK_ATTR_CONTROL | TOK_ATTR_UNKNOWN))) return "";
    if (len) *len = v->text_off[id + 1] - v->text_off[id] - 1;
    return v->text_buf + v->text_off[id];
}

int tok_decode_token(const tok_vocab *v, int32_t id, bool special, char *buf, int cap) {
    if (!v || id < 0 || id >= v->n_vocab) return SIM_ERR_RANGE;
    if (cap < 0 || (cap > 0 && !buf)) return SIM_ERR_ARG;
    size_t n;
    const char *t = tok_token_text(v, id, special, &n);
    if (cap > 0) memcpy(buf, t, MIN(n, (size_t)cap));
    return (int)n;
}

// The text of ids[i] within a sequence, with the leading space dropped when strip.
static const char *seq_text(const tok_vocab *v, int32_t id, unsigned flags, bool strip, size_t *n) {
    const char *t = tok_token_text(v, id, (flags & TOK_DECODE_SPECIAL) != 0, n);
    if (strip && *n > 0 && t[0] == ' ') {
        t++;
        (*n)--;
    }
    return t;
}

int tok_decode(const tok_vocab *v, const int32_t *ids, int n_ids, unsigned flags, char *buf,
               int cap) {
    if (!v || n_ids < 0 || (n_ids > 0 && !ids) || cap < 0 || (cap > 0 && !buf))
        return SIM_ERR_ARG;
    bool strip = (flags & TOK_DECODE_TEXT_START) && v->add_space_prefix;
    int64_t total = 0;
    for (int i = 0; i < n_ids; i++) {
        if (ids[i] < 0 || ids[i] >= v->n_vocab) return SIM_ERR_RANGE;
        size_t n;
        bool s = strip && ids[i] != v->bos;
        const char *t = seq_text(v, ids[i], flags, s, &n);
        if (ids[i] != v->bos) strip = false;
        if (total < cap) memcpy(buf + total, t, (size_t)MIN((int64_t)n, cap - total));
        total += (int64_t)n;
        if (total > INT32_MAX) return SIM_ERR_RANGE;
    }
    return (int)total;
}

void tok_stream_init(tok_stream *s, const tok_vocab *v, unsigned flags) {
    *s = (tok_stream){.v = v, .flags = flags};
    s->strip_pending = v && (flags & TOK_DECODE_TEXT_START) && v->add_space_prefix;
}

int tok_stream_push(tok_stream *s, int32_t id, char *buf, int cap) {
    const tok_vocab *v = s->v;
    if (!v || id < 0 || id >= v->n_vocab) return SIM_ERR_RANGE;
    bool strip = s->strip_pending && id != v->bos;
    size_t n;
    const char *t = seq_text(v, id, s->flags, strip, &n);
    size_t total = s->n_held + n;
    if (cap < 0 || (size_t)cap < total || (cap > 0 && !buf)) return SIM_ERR_ARG;
    if (id != v->bos) s->strip_pending = false;
    if (total == 0) return 0;
    memcpy(buf, s->held, s->n_held);
    memcpy(buf + s->n_held, t, n);
    size_t ready = utf8_complete_prefix(buf, total);
    // At most 3 bytes: only a proper prefix of one character is held back.
    s->n_held = (uint8_t)(total - ready);
    memcpy(s->held, buf + ready, s->n_held);
    return (int)ready;
}

int tok_stream_flush(tok_stream *s, char *buf, int cap) {
    if (cap < s->n_held || (s->n_held && !buf)) return SIM_ERR_ARG;
    int n = s->n_held;
    if (n) memcpy(buf, s->held, (size_t)n);
    s->n_held = 0;
    s->strip_pending = false;
    return n;
}

// --- accessors --------------------------------------------------------------------------

tok_kind tok_get_kind(const tok_vocab *v) { return v->kind; }
const char *tok_pre_name(const tok_vocab *v) { return v->pre; }
int32_t tok_n_vocab(const tok_vocab *v) { return v->n_vocab; }
int tok_max_token_bytes(const tok_vocab *v) { return v->max_text; }
int32_t tok_bos(const tok_vocab *v) { return v->bos; }
int32_t tok_eos(const tok_vocab *v) { return v->eos; }
int32_t tok_eot(const tok_vocab *v) { return v->eot; }
int32_t tok_unk(const tok_vocab *v) { return v->unk; }
int32_t tok_pad(const tok_vocab *v) { return v->pad; }
bool tok_add_bos(const tok_vocab *v) { return v->add_bos; }
bool tok_add_eos(const tok_vocab *v) { return v->add_eos; }
bool tok_add_space_prefix(const tok_vocab *v) { return v->add_space_prefix; }

bool tok_is_eog(const tok_vocab *v, int32_t id) {
    for (int i = 0; i < v->n_eog; i++)
        if (v->eog[i] == id) return true;
    return false;
}

int tok_eog_ids(const tok_vocab *v, const int32_t **ids) {
    *ids = v->eog;
    return v->n_eog;
}

tok_type tok_token_type(const tok_vocab *v, int32_t id) {
    return id >= 0 && id < v->n_vocab ? (tok_type)v->types[id] : TOK_TYPE_UNDEFINED;
}

unsigned tok_token_attr(const tok_vocab *v, int32_t id) {
    return id >= 0 && id < v->n_vocab ? v->attrs[id] : 0;
}

float tok_score(const tok_vocab *v, int32_t id) {
    return id >= 0 && id < v->n_vocab ? v->scores[id] : 0.0f;
}

const char *tok_piece(const tok_vocab *v, int32_t id, size_t *len) {
    if (id < 0 || id >= v->n_vocab) {
        if (len) *len = 0;
        return "";
    }
    if (len) *len = piece_len(v, id);
    return piece_ptr(v, id);
}

int32_t tok_find(const tok_vocab *v, const char *piece, size_t len) {
    if (!piece || len == 0) return TOK_NULL;
    return map_find(v, piece, len);
}
