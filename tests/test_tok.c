// test_tok.c — tokenizers: hand-derived tiny vocabs (always run), the
// reference vectors in ../shared/vocab, the golden prompt tokens of the test
// models, streaming detokenization, bad metadata, allocation failures,
// thread safety and speed.
#include <jansson.h>
#include <pthread.h>

#include "base/utf8.h"
#include "model/gguf.h"
#include "model/tok.h"
#include "test.h"

// --- helpers ---------------------------------------------------------------------

static char *read_all(const char *path, size_t *len) {
    FILE *fp = fopen(path, "rb");
    if (!fp) return NULL;
    fseek(fp, 0, SEEK_END);
    long n = ftell(fp);
    fseek(fp, 0, SEEK_SET);
    char *buf = malloc((size_t)n + 1);
    if (buf && fread(buf, 1, (size_t)n, fp) != (size_t)n) {
        free(buf);
        buf = NULL;
    }
    fclose(fp);
    if (buf) buf[n] = 0;
    if (len) *len = (size_t)n;
    return buf;
}

static void print_ids(const char *label, const int32_t *ids, int n) {
    fprintf(stderr, "    %s (%d):", label, n);
    for (int i = 0; i < n; i++) fprintf(stderr, " %d", ids[i]);
    fputc('\n', stderr);
}

// Encodes into a fresh heap array; returns the count (negative on error).
static int encode(const tok_vocab *v, const char *text, size_t len, bool add_special,
                  bool parse_special, int32_t **ids) {
    sim_err err = {0};
    int n = tok_encode(v, text, len, add_special, parse_special, NULL, 0, &err);
    *ids = NULL;
    if (n < 0) {
        fprintf(stderr, "    tok_encode: %s\n", err.msg);
        return n;
    }
    *ids = malloc(sizeof(int32_t) * (size_t)(n + 1));
    int m = tok_encode(v, text, len, add_special, parse_special, *ids, n, &err);
    CHECK_EQ_INT(m, n);
    return n;
}

static bool same_ids(const int32_t *a, int na, const int32_t *b, int nb) {
    if (na != nb) return false;
    for (int i = 0; i < na; i++)
        if (a[i] != b[i]) return false;
    return true;
}

// Checks that encoding text gives exactly the expected ids.
#define CHECK_ENC(v, text, add_special, parse_special, ...)                                \
    do {                                                                                   \
        const int32_t want_[] = {__VA_ARGS__};                                             \
        check_enc(__LINE__, v, text, add_special, parse_special, want_,                    \
                  (int)(sizeof want_ / sizeof want_[0]));                                  \
    } while (0)

static void check_enc(int line, const tok_vocab *v, const char *text, bool add_special,
                      bool parse_special, const int32_t *want, int n_want) {
    int32_t *got;
    int n = encode(v, text, strlen(text), add_special, parse_special, &got);
    if (!same_ids(got, n, want, n_want)) {
        fprintf(stderr, "  %s:%d: encoding \"%s\" differs\n", __FILE__, line, text);
        print_ids("expected", want, n_want);
        print_ids("actual  ", got, n);
        test_g.cur_failures++;
    }
    free(got);
}

static char *decode(const tok_vocab *v, const int32_t *ids, int n, unsigned flags, int *len) {
    int need = tok_decode(v, ids, n, flags, NULL, 0);
    CHECK(need >= 0);
    if (need < 0) need = 0;
    char *buf = malloc((size_t)need + 1);
    int got = tok_decode(v, ids, n, flags, buf, need);
    CHECK_EQ_INT(got, need);
    buf[need] = 0;
    if (len) *len = need;
    return buf;
}

// Loads a vocab from writer w's bytes; returns the status and the error text.
static sim_status load_from_writer(gguf_writer *w, tok_vocab **v, sim_err *err,
                                   uint8_t **bytes_out) {
    uint8_t *bytes;
    size_t size;
    sim_status st = gguf_writer_write_memory(w, &bytes, &size, err);
    if (st != SIM_OK) return st;
    gguf_file *f;
    st = gguf_open_memory(&f, bytes, size, "tiny", err);
    if (st != SIM_OK) {
        mem_free(bytes);
        return st;
    }
    st = tok_load(v, f, err);
    gguf_close(f); // the vocab must not depend on the file
    if (bytes_out) *bytes_out = bytes;
    else mem_free(bytes);
    return st;
}

// --- a tiny SentencePiece vocab, hand-derived expectations ------------------------------
//
//   0 <unk>  1 <s>  2 </s>   3..258 <0x00>..<0xFF>
//   259 ▁ (-10)  260 h (-10)  261 e (-10)  262 l (-10)  263 o (-10)
//   264 ▁h (-3)  265 el (-2)  266 ll (-1)  267 lo (-4)  268 llo (-1.5)
//   269 he (-0.5)  270 hello (-8)  271 ▁hello (-7)  272 <|user|> (user-defined)

static gguf_writer *tiny_spm_writer(void) {
    static char names[256][8];
    const char *pieces[273];
    float scores[273];
    int32_t types[273];
    pieces[0] = "<unk>", types[0] = 2;
    pieces[1] = "<s>", types[1] = 3;
    pieces[2] = "</s>", types[2] = 3;
    for (int b = 0; b < 256; b++) {
        snprintf(names[b], sizeof names[b], "<0x%02X>", b);
        pieces[3 + b] = names[b];
        types[3 + b] = 6;
    }
    const char *normal[] = {"\xE2\x96\x81", "h", "e", "l", "o", "\xE2\x96\x81h", "el", "ll", "lo",
                            "llo", "he", "hello", "\xE2\x96\x81hello", "<|user|>"};
    const float sc[] = {-10, -10, -10, -10, -10, -3, -2, -1, -4, -1.5f, -0.5f, -8, -7, 0};
    for (int i = 0; i < 14; i++) {
        pieces[259 + i] = normal[i];
        scores[259 + i] = sc[i];
        types[259 + i] = i == 13 ? 4 : 1;
    }
    for (int i = 0; i < 259; i++) scores[i] = 0;
    gguf_writer *w = gguf_writer_new();
    gguf_writer_set_str(w, "general.architecture", "llama");
    gguf_writer_set_str(w, "tokenizer.ggml.model", "llama");
    gguf_writer_set_str_arr(w, "tokenizer.ggml.tokens", pieces, 273);
    gguf_writer_set_arr(w, "tokenizer.ggml.scores", GGUF_F32, scores, 273);
    gguf_writer_set_arr(w, "tokenizer.ggml.token_type", GGUF_I32, types, 273);
    gguf_writer_set_u32(w, "tokenizer.ggml.bos_token_id", 1);
    gguf_writer_set_u32(w, "tokenizer.ggml.eos_token_id", 2);
    gguf_writer_set_u32(w, "tokenizer.ggml.unknown_token_id", 0);
    return w;
}

static tok_vocab *tiny_spm(void) {
    gguf_writer *w = tiny_spm_writer();
    tok_vocab *v = NULL;
    sim_err err;
    sim_status st = load_from_writer(w, &v, &err, NULL);
    gguf_writer_free(w);
    CHECK_MSG(st == SIM_OK, "%s", err.msg);
    return v;
}

static void test_spm_tiny(void) {
    tok_vocab *v = tiny_spm();
    if (!v) return;
    CHECK_EQ_INT(tok_get_kind(v), TOK_KIND_SPM);
    CHECK_EQ_INT(tok_n_vocab(v), 273);
    CHECK_EQ_INT(tok_bos(v), 1);
    CHECK_EQ_INT(tok_eos(v), 2);
    CHECK(tok_add_bos(v) && !tok_add_eos(v) && tok_add_space_prefix(v));
    CHECK(tok_is_eog(v, 2) && !tok_is_eog(v, 1));
    CHECK(tok_warning(v) == NULL);
    CHECK_EQ_INT(tok_find(v, "\xE2\x96\x81hello", 8), 271);
    CHECK_EQ_INT(tok_find(v, "nope", 4), TOK_NULL);

    // "▁hello": he (-0.5), ll (-1), llo (-1.5), then el/▁h/lo are stale,
    // hello (-8) joins he+llo, and ▁hello (-7) takes the rest.
    CHECK_ENC(v, "hello", false, false, 271);
    CHECK_ENC(v, "hello", true, false, 1, 271);
    // "▁hell": he, ll; "hell" is no piece.
    CHECK_ENC(v, "hell", false, false, 259, 269, 266);
    // Equal scores: the leftmost "ll" wins.
    CHECK_ENC(v, "lll", false, false, 259, 266, 262);
    // "é" is no piece: byte fallback <0xC3> <0xA9>.
    CHECK_ENC(v, "h\xC3\xA9", false, false, 264, 3 + 0xC3, 3 + 0xA9);
    // Spaces become ▁; unknown letters fall back to bytes.
    CHECK_ENC(v, "a b", false, false, 259, 3 + 'a', 259, 3 + 'b');
    // Control tokens only with parse_special; text after one gets a space prefix.
    CHECK_ENC(v, "<s>hello", false, true, 1, 271);
    CHECK_ENC(v, "<s>hello", false, false, 259, 3 + '<', 3 + 's', 3 + '>', 270);
    // User-defined tokens are matched even without parse_special.
    CHECK_ENC(v, "<|user|>hello", false, false, 272, 271);
    CHECK_ENC(v, "", false, false);
    CHECK_ENC(v, "", true, false, 1);

    // Decoding: ▁ → space, bytes → bytes, the first piece's space dropped at text start.
    const int32_t ids[] = {1, 264, 3 + 0xC3, 3 + 0xA9, 259, 270};
    char *s = decode(v, ids, 6, TOK_DECODE_TEXT_START, NULL);
    CHECK_STR(s, "h\xC3\xA9 hello");
    free(s);
    s = decode(v, ids, 6, 0, NULL);
    CHECK_STR(s, " h\xC3\xA9 hello");
    free(s);
    s = decode(v, ids, 6, TOK_DECODE_SPECIAL, NULL);
    CHECK_STR(s, "<s> h\xC3\xA9 hello");
    free(s);
    size_t n;
    CHECK_STR(tok_token_text(v, 1, false, &n), "");
    CHECK_EQ_INT(n, 0);
    CHECK_STR(tok_piece(v, 264, &n), "\xE2\x96\x81h");
    CHECK_EQ_INT(n, 4);
    char buf[8];
    CHECK_EQ_INT(tok_decode_token(v, 271, false, buf, 3), 6); // " hello": needs 6, wrote 3
    CHECK(memcmp(buf, " he", 3) == 0);
    CHECK_EQ_INT(tok_decode_token(v, 9999, false, buf, 8), SIM_ERR_RANGE);

    // Streaming: the é split across two byte tokens comes out whole.
    tok_stream st;
    tok_stream_init(&st, v, TOK_DECODE_TEXT_START);
    char out[64];
    CHECK_EQ_INT(tok_stream_push(&st, 1, out, sizeof out), 0);
    int k = tok_stream_push(&st, 264, out, sizeof out);
    CHECK(k == 1 && out[0] == 'h');
    CHECK_EQ_INT(tok_stream_push(&st, 3 + 0xC3, out, sizeof out), 0);
    k = tok_stream_push(&st, 3 + 0xA9, out, sizeof out);
    CHECK(k == 2 && memcmp(out, "\xC3\xA9", 2) == 0);
    CHECK_EQ_INT(tok_stream_push(&st, 3 + 0xE2, out, sizeof out), 0);
    CHECK_EQ_INT(tok_stream_push(&st, 271, out, 2), SIM_ERR_ARG); // too small: nothing changes
    k = tok_stream_push(&st, 271, out, sizeof out); // the E2 can never complete: passed through
    CHECK(k == 7 && memcmp(out, "\xE2 hello", 7) == 0);
    CHECK_EQ_INT(tok_stream_push(&st, 3 + 0xF0, out, sizeof out), 0);
    k = tok_stream_flush(&st, out, sizeof out);
    CHECK(k == 1 && (uint8_t)out[0] == 0xF0);
    tok_free(v);
}

static void test_spm_no_space_prefix(void) {
    gguf_writer *w = tiny_spm_writer();
    gguf_writer_set_bool(w, "tokenizer.ggml.add_space_prefix", false);
    gguf_writer_set_bool(w, "tokenizer.ggml.add_eos_token", true);
    tok_vocab *v = NULL;
    sim_err err;
    sim_status st = load_from_writer(w, &v, &err, NULL);
    gguf_writer_free(w);
    CHECK_MSG(st == SIM_OK, "%s", err.msg);
    if (!v) return;
    CHECK_ENC(v, "hello", false, false, 270);
    CHECK_ENC(v, "hello", true, false, 1, 270, 2);
    const int32_t ids[] = {269, 266};
    char *s = decode(v, ids, 2, TOK_DECODE_TEXT_START, NULL);
    CHECK_STR(s, "hell");
    free(s);
    tok_free(v);
}

// --- a tiny byte-level BPE vocab ------------------------------------------------------------
//
//   0..255: the byte-level character of byte b (so a lone byte's id is its value)
//   merges (rank: pair → id): 0 h e → 256 he, 1 l l → 257 ll, 2 Ġ t → 258 Ġt,
//   3 t he → 259 the, 4 Ġt he → 260 Ġthe, 5 he ll → 261 hell, 6 hell o → 262 hello,
//   7 Ġ hello → 263 Ġhello;  264 <|endoftext|> (control);
//   8 1 2 → 265 12, 9 3 4 → 266 34, 10 12 3 → 267 123, 11 4 5 → 268 45,
//   12 ' S → 269 'S, 13 Ċ Ċ → 270 ĊĊ (two newlines)

static void bytelevel_char(int b, char *out) {
    // GPT-2's table: printable Latin-1 bytes map to themselves, the others to U+0100 + k.
    int k = 0;
    for (int c = 0; c < b; c++)
        if (!((c >= 0x21 && c <= 0x7E) || (c >= 0xA1 && c <= 0xAC) || c >= 0xAE)) k++;
    bool printable = (b >= 0x21 && b <= 0x7E) || (b >= 0xA1 && b <= 0xAC) || b >= 0xAE;
    int n = utf8_encode(printable ? (uint32_t)b : 0x100u + (uint32_t)k, out);
    out[n] = 0;
}

static gguf_writer *tiny_bpe_writer(const char *pre) {
    static char chars[256][4];
    const char *pieces[271];
    for (int b = 0; b < 256; b++) {
        bytelevel_char(b, chars[b]);
        pieces[b] = chars[b];
    }
    const char *more[] = {"he", "ll", "\xC4\xA0t", "the", "\xC4\xA0the", "hell", "hello",
                          "\xC4\xA0hello", "<|endoftext|>", "12", "34", "123", "45", "'S",
                          "\xC4\x8A\xC4\x8A"};
    for (int i = 0; i < 15; i++) pieces[256 + i] = more[i];
    int32_t types[271];
    for (int i = 0; i < 271; i++) types[i] = i == 264 ? 3 : 1;
    const char *merges[] = {"h e", "l l", "\xC4\xA0 t", "t he", "\xC4\xA0t he", "he ll",
                            "hell o", "\xC4\xA0 hello", "1 2", "3 4", "12 3", "4 5", "' S",
                            "\xC4\x8A \xC4\x8A"};
    gguf_writer *w = gguf_writer_new();
    gguf_writer_set_str(w, "tokenizer.ggml.model", "gpt2");
    if (pre) gguf_writer_set_str(w, "tokenizer.ggml.pre", pre);
    gguf_writer_set_str_arr(w, "tokenizer.ggml.tokens", pieces, 271);
    gguf_writer_set_arr(w, "tokenizer.ggml.token_type", GGUF_I32, types, 271);
    gguf_writer_set_str_arr(w, "tokenizer.ggml.merges", merges, 14);
    gguf_writer_set_u32(w, "tokenizer.ggml.bos_token_id", 264);
    gguf_writer_set_u32(w, "tokenizer.ggml.eos_token_id", 264);
    return w;
}

static tok_vocab *tiny_bpe(const char *pre) {
    gguf_writer *w = tiny_bpe_writer(pre);
    tok_vocab *v = NULL;
    sim_err err;
    sim_status st = load_from_writer(w, &v, &err, NULL);
    gguf_writer_free(w);
    CHECK_MSG(st == SIM_OK, "%s", err.msg);
    return v;
}

static void test_bpe_tiny(void) {
    tok_vocab *v = tiny_bpe("gpt-2");
    if (!v) return;
    CHECK_EQ_INT(tok_get_kind(v), TOK_KIND_BPE);
    CHECK_STR(tok_pre_name(v), "gpt-2");
    CHECK(!tok_add_bos(v) && !tok_add_space_prefix(v));
    CHECK(tok_is_eog(v, 264));
    // "the": h e (rank 0), then t he (3).  " hello": he, ll, hell, hello, Ġhello.
    CHECK_ENC(v, "the hello", false, false, 259, 263);
    // " the": he (0) goes first although Ġ t (2) is further left; then Ġt (2), Ġthe (4).
    CHECK_ENC(v, " the", false, false, 260);
    // No merges: one token per byte; multi-byte characters are split into bytes.
    CHECK_ENC(v, "Hi!", false, false, 'H', 'i', '!');
    CHECK_ENC(v, "\xC3\xA9\n", false, false, 0xC3, 0xA9, '\n');
    // gpt-2 splits contractions and runs of spaces.
    CHECK_ENC(v, "it's", false, false, 'i', 't', '\'', 's');
    CHECK_ENC(v, "a  the", false, false, 'a', ' ', 260);
    // Control tokens: parsed only with parse_special; add_special adds nothing (add_bos false).
    CHECK_ENC(v, "<|endoftext|>the", true, true, 264, 259);
    CHECK_ENC(v, "<|endoftext|>x", false, false, '<', '|', 'e', 'n', 'd', 'o', 'f', 't', 'e',
              'x', 't', '|', '>', 'x');
    // The output buffer: the count needed comes back, only cap ids are written.
    int32_t ids[2] = {-7, -7};
    CHECK_EQ_INT(tok_encode(v, "Hi!", 3, false, false, ids, 1, NULL), 3);
    CHECK(ids[0] == 'H' && ids[1] == -7);

    const int32_t seq[] = {264, 259, 263, 0xC3, 0xA9};
    char *s = decode(v, seq, 5, TOK_DECODE_TEXT_START, NULL);
    CHECK_STR(s, "the hello\xC3\xA9");
    free(s);
    s = decode(v, seq, 5, TOK_DECODE_SPECIAL, NULL);
    CHECK_STR(s, "<|endoftext|>the hello\xC3\xA9");
    free(s);
    tok_free(v);

    // llama-bpe ignores merges for words that are tokens, and adds BOS by default.
    v = tiny_bpe("llama-bpe");
    if (!v) return;
    CHECK(tok_add_bos(v));
    CHECK_ENC(v, "hello", true, false, 264, 262);
    tok_free(v);
}

// The pre-tokenizer families split digits, contractions and newlines
// differently; the merges above make each split visible in the ids.
static void test_bpe_pre_families(void) {
    struct {
        const char *pre;
        int32_t digits[5], nd;  // "12345"
        int32_t contr[4], nc;   // "IT'S"
        int32_t lines[4], nl;   // "a\n\nb"
    } cases[] = {
        // gpt-2: one digit run (12 and 34 merge first); 'S is no contraction; \n one by one
        {"gpt-2", {265, 266, '5'}, 3, {'I', 'T', '\'', 'S'}, 4, {'a', '\n', '\n', 'b'}, 4},
        // llama-bpe: digits in threes, contractions case-insensitive, newline runs together
        {"llama-bpe", {267, 268}, 2, {'I', 'T', 269}, 3, {'a', 270, 'b'}, 3},
        // qwen2: single digits
        {"qwen2", {'1', '2', '3', '4', '5'}, 5, {'I', 'T', 269}, 3, {'a', 270, 'b'}, 3},
        // starcoder: single digits, otherwise gpt-2
        {"starcoder", {'1', '2', '3', '4', '5'}, 5, {'I', 'T', '\'', 'S'}, 4,
         {'a', '\n', '\n', 'b'}, 4},
        // deepseek-llm: digit runs; "'S" is a punctuation run then a letter run; \n isolated
        {"deepseek-llm", {265, 266, '5'}, 3, {'I', 'T', '\'', 'S'}, 4, {'a', '\n', '\n', 'b'}, 4},
        // falcon: three-digit groups split after gpt-2's split
        {"falcon", {267, 268}, 2, {'I', 'T', '\'', 'S'}, 4, {'a', '\n', '\n', 'b'}, 4},
    };
    for (size_t i = 0; i < ARRAY_LEN(cases); i++) {
        tok_vocab *v = tiny_bpe(cases[i].pre);
        if (!v) continue;
        int before = test_g.cur_failures;
        check_enc(__LINE__, v, "12345", false, false, cases[i].digits, cases[i].nd);
        check_enc(__LINE__, v, "IT'S", false, false, cases[i].contr, cases[i].nc);
        check_enc(__LINE__, v, "a\n\nb", false, false, cases[i].lines, cases[i].nl);
        if (test_g.cur_failures != before)
            fprintf(stderr, "    (pre-tokenizer %s)\n", cases[i].pre);
        tok_free(v);
    }
}

static void test_bpe_missing_pre(void) {
    tok_vocab *v = tiny_bpe(NULL);
    if (!v) return;
    CHECK_STR(tok_pre_name(v), "default");
    CHECK(tok_warning(v) != NULL && strstr(tok_warning(v), "tokenizer.ggml.pre"));
    CHECK_ENC(v, "the hello", false, false, 259, 263);
    tok_free(v);
}

// Invalid UTF-8 never crashes and round-trips byte for byte.
static void test_invalid_utf8(void) {
    const char text[] = "\xFF\xFE abc \xC3 x\xE2\x82 \xF0\x9F\x98\x80\x80";
    size_t len = sizeof text - 1;
    tok_vocab *vs[2] = {tiny_spm(), tiny_bpe("gpt-2")};
    for (int i = 0; i < 2; i++) {
        if (!vs[i]) continue;
        int32_t *ids;
        int n = encode(vs[i], text, len, true, false, &ids);
        CHECK(n > 0);
        int dl;
        char *s = decode(vs[i], ids, n, TOK_DECODE_TEXT_START, &dl);
        CHECK_MSG(dl == (int)len && memcmp(s, text, len) == 0, "vocab %d round trip", i);
        free(s);
        free(ids);
        tok_free(vs[i]);
    }
}

// --- bad metadata ------------------------------------------------------------------------

typedef void (*writer_edit)(gguf_writer *w);

static void expect_load_error(int line, gguf_writer *w, sim_status want, const char *needle) {
    tok_vocab *v = NULL;
    sim_err err = {0};
    sim_status st = load_from_writer(w, &v, &err, NULL);
    gguf_writer_free(w);
    if (st != want || !strstr(err.msg, needle) || v) {
        fprintf(stderr, "  %s:%d: expected status %d with \"%s\", got %d: %s\n", __FILE__, line,
                (int)want, needle, (int)st, err.msg);
        test_g.cur_failures++;
    }
    tok_free(v);
}

static void test_bad_metadata(void) {
    gguf_writer *w;
    const char *two[] = {"a", "b"};
    int32_t i32s[3] = {1, 1, 1};
    float f32s[3] = {0, 0, 0};

    w = gguf_writer_new();
    gguf_writer_set_str_arr(w, "tokenizer.ggml.tokens", two, 2);
    expect_load_error(__LINE__, w, SIM_ERR_FORMAT, "tokenizer.ggml.model is missing");

    w = tiny_spm_writer();
    gguf_writer_set_str(w, "tokenizer.ggml.model", "bert");
    expect_load_error(__LINE__, w, SIM_ERR_UNSUPPORTED, "'bert' is not supported");

    w = tiny_spm_writer();
    gguf_writer_set_u32(w, "tokenizer.ggml.model", 1);
    expect_load_error(__LINE__, w, SIM_ERR_FORMAT, "tokenizer.ggml.model: expected a string");

    w = gguf_writer_new();
    gguf_writer_set_str(w, "tokenizer.ggml.model", "llama");
    expect_load_error(__LINE__, w, SIM_ERR_FORMAT, "tokenizer.ggml.tokens is missing");

    w = tiny_spm_writer();
    gguf_writer_set_arr(w, "tokenizer.ggml.tokens", GGUF_I32, i32s, 3);
    expect_load_error(__LINE__, w, SIM_ERR_FORMAT,
                      "tokenizer.ggml.tokens: expected an array of string");

    w = tiny_spm_writer();
    gguf_writer_set_str_arr(w, "tokenizer.ggml.tokens", two, 0);
    expect_load_error(__LINE__, w, SIM_ERR_FORMAT, "has 0 entries");

    w = tiny_spm_writer();
    gguf_writer_set_arr(w, "tokenizer.ggml.scores", GGUF_F32, f32s, 3);
    expect_load_error(__LINE__, w, SIM_ERR_FORMAT, "tokenizer.ggml.scores has 3 elements but");

    w = tiny_spm_writer();
    gguf_writer_set_arr(w, "tokenizer.ggml.scores", GGUF_I32, i32s, 3);
    expect_load_error(__LINE__, w, SIM_ERR_FORMAT,
                      "tokenizer.ggml.scores: expected an array of f32");

    w = tiny_spm_writer();
    gguf_writer_set_arr(w, "tokenizer.ggml.token_type", GGUF_I32, i32s, 3);
    expect_load_error(__LINE__, w, SIM_ERR_FORMAT, "tokenizer.ggml.token_type has 3 elements");

    w = tiny_spm_writer();
    gguf_writer_set_u32(w, "tokenizer.ggml.bos_token_id", 273);
    expect_load_error(__LINE__, w, SIM_ERR_FORMAT,
                      "tokenizer.ggml.bos_token_id = 273 is out of range");

    w = tiny_spm_writer();
    gguf_writer_set_i32(w, "tokenizer.ggml.eos_token_id", -1);
    expect_load_error(__LINE__, w, SIM_ERR_FORMAT,
                      "tokenizer.ggml.eos_token_id = -1 is out of range");

    w = tiny_spm_writer();
    gguf_writer_set_str(w, "tokenizer.ggml.unknown_token_id", "0");
    expect_load_error(__LINE__, w, SIM_ERR_FORMAT,
                      "tokenizer.ggml.unknown_token_id: expected an integer");

    w = tiny_spm_writer();
    gguf_writer_set_u32(w, "tokenizer.ggml.add_bos_token", 1);
    expect_load_error(__LINE__, w, SIM_ERR_FORMAT, "tokenizer.ggml.add_bos_token: expected a bool");

    w = tiny_bpe_writer("gpt-2");
    const char *bad_merge[] = {"h e", "h zz"};
    gguf_writer_set_str_arr(w, "tokenizer.ggml.merges", bad_merge, 2);
    expect_load_error(__LINE__, w, SIM_ERR_FORMAT,
                      "merges[1] = 'h zz' names an unknown right piece");

    w = tiny_bpe_writer("gpt-2");
    const char *bad_merge2[] = {"qq e"};
    gguf_writer_set_str_arr(w, "tokenizer.ggml.merges", bad_merge2, 1);
    expect_load_error(__LINE__, w, SIM_ERR_FORMAT, "names an unknown left piece");

    w = tiny_bpe_writer("gpt-2");
    const char *bad_merge3[] = {"e h"}; // both pieces exist, "eh" does not
    gguf_writer_set_str_arr(w, "tokenizer.ggml.merges", bad_merge3, 1);
    expect_load_error(__LINE__, w, SIM_ERR_FORMAT, "concatenation is no token");

    w = tiny_bpe_writer("gpt-2");
    const char *bad_merge4[] = {"he"};
    gguf_writer_set_str_arr(w, "tokenizer.ggml.merges", bad_merge4, 1);
    expect_load_error(__LINE__, w, SIM_ERR_FORMAT, "merges[0] = 'he' is not 'left right'");

    // A gpt2 vocab without merges: written from scratch without the key.
    {
        const char *pieces[] = {"a", "b"};
        w = gguf_writer_new();
        gguf_writer_set_str(w, "tokenizer.ggml.model", "gpt2");
        gguf_writer_set_str(w, "tokenizer.ggml.pre", "gpt-2");
        gguf_writer_set_str_arr(w, "tokenizer.ggml.tokens", pieces, 2);
        expect_load_error(__LINE__, w, SIM_ERR_FORMAT, "tokenizer.ggml.merges is missing");
    }

    w = tiny_bpe_writer("no-such-regex");
    expect_load_error(__LINE__, w, SIM_ERR_UNSUPPORTED,
                      "'no-such-regex' is not a known pre-tokenizer");

    w = tiny_bpe_writer("gpt-2");
    gguf_writer_set_u32(w, "tokenizer.ggml.pre", 2);
    expect_load_error(__LINE__, w, SIM_ERR_FORMAT, "tokenizer.ggml.pre: expected a string");

    // Bad arguments to the encoder and decoder.
    tok_vocab *v = tiny_spm();
    if (!v) return;
    int32_t ids[4];
    CHECK_EQ_INT(tok_encode(v, NULL, 3, false, false, ids, 4, NULL), SIM_ERR_ARG);
    CHECK_EQ_INT(tok_encode(v, "abc", 3, false, false, ids, -1, NULL), SIM_ERR_ARG);
    CHECK_EQ_INT(tok_encode(v, "abc", 3, false, false, NULL, 4, NULL), SIM_ERR_ARG);
    CHECK_EQ_INT(tok_encode(NULL, "abc", 3, false, false, ids, 4, NULL), SIM_ERR_ARG);
    CHECK_EQ_INT(tok_encode(v, NULL, 0, false, false, NULL, 0, NULL), 0);
    const int32_t bad[] = {5, 99999};
    CHECK_EQ_INT(tok_decode(v, bad, 2, 0, NULL, 0), SIM_ERR_RANGE);
    CHECK_EQ_INT(tok_decode(v, bad, -1, 0, NULL, 0), SIM_ERR_ARG);
    tok_stream st;
    char buf[32];
    tok_stream_init(&st, v, 0);
    CHECK_EQ_INT(tok_stream_push(&st, -3, buf, sizeof buf), SIM_ERR_RANGE);
    CHECK_EQ_INT(tok_token_type(v, 1 << 20), TOK_TYPE_UNDEFINED);
    CHECK_EQ_INT(tok_token_attr(v, -1), 0);
    tok_free(v);
    tok_free(NULL);
}

// Every allocation of loading and encoding may fail: the result is a clean
// SIM_ERR_NOMEM, never a crash or a leak (run under ASan by `make debug`).
static void test_alloc_failures(void) {
    const char *pres[] = {NULL, "deepseek-llm"};
    for (int kind = 0; kind < 3; kind++) {
        gguf_writer *w = kind == 0 ? tiny_spm_writer() : tiny_bpe_writer(pres[kind - 1]);
        uint8_t *bytes;
        size_t size;
        sim_err err;
        if (gguf_writer_write_memory(w, &bytes, &size, &err) != SIM_OK) {
            gguf_writer_free(w);
            CHECK(0);
            return;
        }
        gguf_writer_free(w);
        gguf_file *f;
        CHECK(gguf_open_memory(&f, bytes, size, "tiny", &err) == SIM_OK);
        int loads = 0;
        for (long n = 0; n < 10000; n++) {
            tok_vocab *v = NULL;
            mem_fail_after(n);
            sim_status st = tok_load(&v, f, &err);
            bool failed = mem_fail_triggered();
            mem_fail_after(-1);
            if (st == SIM_OK) {
                CHECK(v != NULL);
                tok_free(v);
                if (!failed) break;
            } else {
                CHECK_MSG(st == SIM_ERR_NOMEM, "load failure %ld: %s", n, err.msg);
                CHECK(v == NULL);
            }
            loads++;
        }
        CHECK(loads > 5);
        tok_vocab *v = NULL;
        CHECK(tok_load(&v, f, &err) == SIM_OK);
        gguf_close(f);
        mem_free(bytes);
        if (!v) return;
        const char *text = "<s>hello the  hello\xC3\xA9 it's <|endoftext|>x";
        int32_t want[64], got[64];
        int nw = tok_encode(v, text, strlen(text), true, true, want, 64, NULL);
        CHECK(nw > 0);
        for (long n = 0; n < 10000; n++) {
            mem_fail_after(n);
            int ng = tok_encode(v, text, strlen(text), true, true, got, 64, NULL);
            bool failed = mem_fail_triggered();
            mem_fail_after(-1);
            if (ng >= 0) {
                CHECK(same_ids(got, ng, want, nw));
                if (!failed) break;
            } else {
                CHECK_EQ_INT(ng, SIM_ERR_NOMEM);
            }
        }
        tok_free(v);
    }
}

// --- the reference vectors ----------------------------------------------------------------

typedef struct vec_set {
    char *inp;    // the .inp file, cut in place into strings
    char **str;   // (n) test strings
    size_t *len;  // (n)
    char *out;    // the .out file, cut in place into lines
    char **line;  // (n)
    int n;
} vec_set;

// Splits the .inp file at "\n__ggml_vocab_test__\n": each string ends with
// the newline before its separator line, which is not part of the string.
static bool vec_load(const char *inp_path, const char *out_path, vec_set *vs) {
    memset(vs, 0, sizeof *vs);
    size_t inp_len;
    vs->inp = read_all(inp_path, &inp_len);
    vs->out = read_all(out_path, NULL);
    if (!vs->inp || !vs->out) return false;
    static const char sep[] = "\n__ggml_vocab_test__\n";
    const size_t sl = sizeof sep - 1;
    int cap = 64;
    vs->str = malloc(sizeof(char *) * (size_t)cap);
    vs->len = malloc(sizeof(size_t) * (size_t)cap);
    char *p = vs->inp, *end = vs->inp + inp_len;
    while (p < end) {
        char *hit = memmem(p, (size_t)(end - p), sep, sl);
        if (!hit) break;
        if (vs->n == cap) {
            cap *= 2;
            vs->str = realloc(vs->str, sizeof(char *) * (size_t)cap);
            vs->len = realloc(vs->len, sizeof(size_t) * (size_t)cap);
        }
        vs->str[vs->n] = p;
        vs->len[vs->n] = (size_t)(hit - p);
        vs->n++;
        *hit = 0;
        p = hit + sl;
    }
    CHECK_MSG(p == end, "%s: text after the last separator", inp_path);
    vs->line = malloc(sizeof(char *) * (size_t)(vs->n + 1));
    int lines = 0;
    for (char *q = vs->out; *q && lines <= vs->n;) {
        char *nl = strchr(q, '\n');
        if (nl) *nl = 0;
        if (lines < vs->n) vs->line[lines] = q;
        lines++;
        if (!nl) break;
        q = nl + 1;
    }
    CHECK_MSG(lines == vs->n, "%s has %d strings but %s has %d lines", inp_path, vs->n, out_path,
              lines);
    return lines == vs->n;
}

static void vec_free(vec_set *vs) {
    free(vs->inp);
    free(vs->out);
    free(vs->str);
    free(vs->len);
    free(vs->line);
}

static int parse_ids(const char *line, int32_t *ids, int cap) {
    int n = 0;
    const char *p = line;
    for (;;) {
        while (*p == ' ') p++;
        if (!*p) break;
        char *e;
        long x = strtol(p, &e, 10);
        if (e == p) break;
        if (n < cap) ids[n] = (int32_t)x;
        n++;
        p = e;
    }
    return n;
}

static void print_escaped(const char *s, size_t n) {
    fputc('"', stderr);
    for (size_t i = 0; i < n; i++) {
        unsigned char c = (unsigned char)s[i];
        if (c == '\n') fputs("\\n", stderr);
        else if (c == '\t') fputs("\\t", stderr);
        else if (c < 0x20) fprintf(stderr, "\\x%02x", c);
        else fputc(c, stderr);
    }
    fputc('"', stderr);
}

static tok_vocab *load_vocab_file(const char *path) {
    gguf_file *f;
    sim_err err;
    if (gguf_open(&f, path, &err) != SIM_OK) {
        CHECK_MSG(0, "%s", err.msg);
        return NULL;
    }
    tok_vocab *v = NULL;
    sim_status st = tok_load(&v, f, &err);
    gguf_close(f);
    CHECK_MSG(st == SIM_OK, "%s: %s", path, err.msg);
    return v;
}

static void run_vocab(const char *name) {
    char gpath[512], ipath[512], opath[512], rel[256];
    snprintf(rel, sizeof rel, "vocab/ggml-vocab-%s.gguf", name);
    if (!test_shared_path(gpath, sizeof gpath, rel)) return;
    snprintf(rel, sizeof rel, "vocab/ggml-vocab-%s.gguf.inp", name);
    if (!test_shared_path(ipath, sizeof ipath, rel)) return;
    snprintf(rel, sizeof rel, "vocab/ggml-vocab-%s.gguf.out", name);
    if (!test_shared_path(opath, sizeof opath, rel)) return;
    tok_vocab *v = load_vocab_file(gpath);
    if (!v) return;
    vec_set vs;
    if (!vec_load(ipath, opath, &vs)) {
        vec_free(&vs);
        tok_free(v);
        return;
    }
    int pass = 0, rt_pass = 0;
    bool shown = false, rt_shown = false;
    for (int i = 0; i < vs.n; i++) {
        int32_t want[1024];
        int nw = parse_ids(vs.line[i], want, 1024);
        int32_t *got;
        int ng = encode(v, vs.str[i], vs.len[i], false, false, &got);
        if (same_ids(got, ng, want, nw)) {
            pass++;
        } else if (!shown) {
            shown = true;
            fprintf(stderr, "  %s: string %d ", name, i);
            print_escaped(vs.str[i], vs.len[i]);
            fputc('\n', stderr);
            print_ids("expected", want, nw);
            print_ids("actual  ", got, ng);
        }
        // Round trip, with and without BOS in front.
        int dl;
        char *d = decode(v, got, ng, TOK_DECODE_TEXT_START, &dl);
        bool ok = dl == (int)vs.len[i] && memcmp(d, vs.str[i], vs.len[i]) == 0;
        free(d);
        free(got);
        ng = encode(v, vs.str[i], vs.len[i], true, false, &got);
        d = decode(v, got, ng, TOK_DECODE_TEXT_START, &dl);
        ok = ok && dl == (int)vs.len[i] && memcmp(d, vs.str[i], vs.len[i]) == 0;
        if (ok) {
            rt_pass++;
        } else if (!rt_shown) {
            rt_shown = true;
            fprintf(stderr, "  %s: round trip of string %d: ", name, i);
            print_escaped(vs.str[i], vs.len[i]);
            fputs(" came back as ", stderr);
            print_escaped(d, (size_t)dl);
            fputc('\n', stderr);
        }
        free(d);
        free(got);
    }
    CHECK_MSG(pass == vs.n, "%s: %d of %d vectors match", name, pass, vs.n);
    CHECK_MSG(rt_pass == vs.n, "%s: %d of %d round trips", name, rt_pass, vs.n);
    fprintf(stderr, "  %-13s %d/%d vectors, %d/%d round trips\n", name, pass, vs.n, rt_pass, vs.n);
    vec_free(&vs);
    tok_free(v);
}

static void test_vectors_llama_spm(void) { run_vocab("llama-spm"); }
static void test_vectors_phi3(void) { run_vocab("phi-3"); }
static void test_vectors_gpt2(void) { run_vocab("gpt-2"); }
static void test_vectors_deepseek_llm(void) { run_vocab("deepseek-llm"); }
static void test_vectors_starcoder(void) { run_vocab("starcoder"); }
static void test_vectors_falcon(void) { run_vocab("falcon"); }

// Special tokens on real vocabs: phi-3's rstrip and llama's control tokens.
static void test_specials_real(void) {
    char path[512];
    if (!test_shared_path(path, sizeof path, "vocab/ggml-vocab-phi-3.gguf")) return;
    tok_vocab *v = load_vocab_file(path);
    if (!v) return;
    int32_t user = tok_find(v, "<|user|>", 8), end = tok_find(v, "<|end|>", 7);
    CHECK(user >= 0 && end >= 0);
    CHECK(tok_is_eog(v, end) && tok_is_eog(v, tok_eos(v)));
    CHECK_EQ_INT(tok_eot(v), end);
    // "<|user|>\nHi<|end|>": the newline after <|user|> is stripped (rstrip),
    // and "Hi" gets the space prefix that follows a special token.
    int32_t *ids;
    const char *text = "<|user|>\nHi<|end|>";
    int n = encode(v, text, strlen(text), true, true, &ids);
    int32_t hi[2];
    int nh = tok_encode(v, "Hi", 2, false, false, hi, 2, NULL);
    CHECK(n == 3 + nh && ids[0] == tok_bos(v) && ids[1] == user && ids[n - 1] == end);
    if (n == 3 + nh) CHECK(same_ids(ids + 2, nh, hi, nh));
    free(ids);
    // Without parse_special the control token is plain text.
    n = encode(v, "<|end|>", 7, false, false, &ids);
    CHECK(n > 1);
    free(ids);
    tok_free(v);
}

// --- golden prompts of the test models ------------------------------------------------------

typedef struct model_vocab {
    const char *file;
    tok_vocab *v;
} model_vocab;

static void test_golden_prompts(void) {
    char dir[512];
    if (!test_shared_path(dir, sizeof dir, "golden")) return;
    const char *files[] = {
        "stories260K.kid.json", "stories260K.path.json", "stories260K.short.json",
        "synth-llama-256.f16.long.json", "synth-llama-256.f16.short.json",
        "synth-llama-256.f16.unicode.json", "synth-llama-256.Q4_0.long.json",
        "synth-llama-256.Q4_0.short.json", "synth-llama-256.Q4_0.unicode.json",
        "synth-llama-256.Q4_K_M.long.json", "synth-llama-256.Q4_K_M.short.json",
        "synth-llama-256.Q4_K_M.unicode.json", "synth-llama-256.Q6_K.long.json",
        "synth-llama-256.Q6_K.short.json", "synth-llama-256.Q6_K.unicode.json",
        "synth-llama-256.Q8_0.long.json", "synth-llama-256.Q8_0.short.json",
        "synth-llama-256.Q8_0.unicode.json", "synth-qwen2-128.f16.long.json",
        "synth-qwen2-128.f16.short.json", "synth-qwen2-128.f16.unicode.json",
    };
    model_vocab cache[8] = {{0}};
    int n_cache = 0, checked = 0;
    for (size_t i = 0; i < ARRAY_LEN(files); i++) {
        char path[700];
        snprintf(path, sizeof path, "%s/%s", dir, files[i]);
        json_error_t jerr;
        json_t *root = json_load_file(path, 0, &jerr);
        if (!root) {
            CHECK_MSG(0, "%s:%d: %s", path, jerr.line, jerr.text);
            continue;
        }
        const char *model = json_string_value(json_object_get(root, "model"));
        json_t *prompt = json_object_get(root, "prompt");
        json_t *tokens = json_object_get(root, "tokens");
        CHECK(model && json_is_string(prompt) && json_is_array(tokens));
        if (!model || !json_is_string(prompt) || !json_is_array(tokens)) {
            json_decref(root);
            continue;
        }
        tok_vocab *v = NULL;
        for (int k = 0; k < n_cache; k++)
            if (strcmp(cache[k].file, model) == 0) v = cache[k].v;
        if (!v && n_cache < 8) {
            char mpath[700], rel[300];
            snprintf(rel, sizeof rel, "models/%s", model);
            if (!test_shared_path(mpath, sizeof mpath, rel)) {
                json_decref(root);
                continue;
            }
            v = load_vocab_file(mpath);
            cache[n_cache].file = strdup(model);
            cache[n_cache++].v = v;
        }
        if (v) {
            size_t nw = json_array_size(tokens);
            int32_t *want = malloc(sizeof(int32_t) * (nw + 1));
            for (size_t k = 0; k < nw; k++)
                want[k] = (int32_t)json_integer_value(json_array_get(tokens, k));
            int32_t *got;
            int ng = encode(v, json_string_value(prompt), json_string_length(prompt), true,
                            false, &got);
            if (!same_ids(got, ng, want, (int)nw)) {
                fprintf(stderr, "  %s: prompt tokens differ\n", files[i]);
                print_ids("expected", want, (int)nw);
                print_ids("actual  ", got, ng);
                test_g.cur_failures++;
            }
            int dl;
            char *d = decode(v, got, ng, TOK_DECODE_TEXT_START, &dl);
            CHECK_MSG(dl == (int)json_string_length(prompt) &&
                          memcmp(d, json_string_value(prompt), (size_t)dl) == 0,
                      "%s: round trip", files[i]);
            free(d);
            free(got);
            free(want);
            checked++;
        }
        json_decref(root);
    }
    fprintf(stderr, "  %d golden prompts checked\n", checked);
    for (int k = 0; k < n_cache; k++) {
        free((char *)cache[k].file);
        tok_free(cache[k].v);
    }
}

// --- streaming detokenization on real vocabs ---------------------------------------------------

static void stream_check(const char *model, const char *text) {
    char path[512], rel[256];
    snprintf(rel, sizeof rel, "models/%s", model);
    if (!test_shared_path(path, sizeof path, rel)) return;
    tok_vocab *v = load_vocab_file(path);
    if (!v) return;
    int32_t *ids;
    int n = encode(v, text, strlen(text), true, false, &ids);
    int full_len;
    char *full = decode(v, ids, n, TOK_DECODE_TEXT_START, &full_len);
    CHECK_MSG(full_len == (int)strlen(text) && memcmp(full, text, strlen(text)) == 0,
              "%s: decode(encode(text)) != text", model);
    char *cat = malloc((size_t)full_len + 16);
    int cat_len = 0, held_back = 0;
    tok_stream st;
    tok_stream_init(&st, v, TOK_DECODE_TEXT_START);
    int cap = tok_max_token_bytes(v) + 4;
    char *buf = malloc((size_t)cap);
    for (int i = 0; i < n; i++) {
        int k = tok_stream_push(&st, ids[i], buf, cap);
        CHECK(k >= 0);
        if (k < 0) break;
        CHECK_MSG(utf8_valid(buf, (size_t)k), "%s: chunk %d is not valid UTF-8", model, i);
        if (st.n_held) held_back++;
        CHECK(cat_len + k <= full_len);
        if (cat_len + k > full_len) break;
        memcpy(cat + cat_len, buf, (size_t)k);
        cat_len += k;
    }
    int k = tok_stream_flush(&st, buf, cap);
    CHECK_EQ_INT(k, 0);
    CHECK(cat_len == full_len && memcmp(cat, full, (size_t)full_len) == 0);
    // The unicode prompt splits characters across tokens in both vocab kinds.
    CHECK_MSG(held_back > 0, "%s: no token ended inside a character", model);
    free(buf);
    free(cat);
    free(full);
    free(ids);
    tok_free(v);
}

static void test_stream_unicode(void) {
    char path[512];
    if (!test_shared_path(path, sizeof path, "golden/unicode.txt")) return;
    char *text = read_all(path, NULL);
    CHECK(text != NULL);
    if (!text) return;
    stream_check("synth-llama-256.Q8_0.gguf", text);
    stream_check("synth-qwen2-128.f16.gguf", text);
    free(text);
}

// --- thread safety and speed ------------------------------------------------------------------

typedef struct enc_job {
    const tok_vocab *v;
    const char *text;
    size_t len;
    int32_t *ids;
    int n;
} enc_job;

static void *enc_thread(void *p) {
    enc_job *j = p;
    for (int r = 0; r < 5; r++) {
        j->n = tok_encode(j->v, j->text, j->len, true, true, j->ids, 1 << 16, NULL);
    }
    return NULL;
}

// Builds ~10 KB of mixed text from the golden prompts.
static char *ten_kb_text(size_t *len) {
    char path[512];
    const char *parts[] = {"golden/long.txt", "golden/unicode.txt", "golden/kid.txt"};
    char *chunks[3] = {0};
    for (int i = 0; i < 3; i++) {
        if (!test_shared_path(path, sizeof path, parts[i])) goto fail;
        chunks[i] = read_all(path, NULL);
        if (!chunks[i]) goto fail;
    }
    size_t cap = 12000, n = 0;
    char *text = malloc(cap + 4096);
    while (n < 10240)
        for (int i = 0; i < 3; i++) {
            size_t l = strlen(chunks[i]);
            memcpy(text + n, chunks[i], l);
            n += l;
            text[n++] = '\n';
        }
    text[n] = 0;
    *len = n;
    for (int i = 0; i < 3; i++) free(chunks[i]);
    return text;
fail:
    for (int i = 0; i < 3; i++) free(chunks[i]);
    return NULL;
}

static void test_threads_and_speed(void) {
    size_t len;
    char *text = ten_kb_text(&len);
    if (!text) return;
    const char *vocabs[] = {"llama-spm", "gpt-2", "deepseek-llm", "starcoder", "falcon", "phi-3"};
    for (size_t k = 0; k < ARRAY_LEN(vocabs); k++) {
        char path[512], rel[256];
        snprintf(rel, sizeof rel, "vocab/ggml-vocab-%s.gguf", vocabs[k]);
        if (!test_shared_path(path, sizeof path, rel)) break;
        tok_vocab *v = load_vocab_file(path);
        if (!v) continue;
        int32_t *ref = malloc(sizeof(int32_t) << 16);
        uint64_t t0 = time_ns();
        int n = tok_encode(v, text, len, true, true, ref, 1 << 16, NULL);
        double ms = (double)(time_ns() - t0) / 1e6;
        CHECK(n > 0);
        fprintf(stderr, "  %-13s encodes %zu bytes into %d tokens in %.2f ms\n", vocabs[k], len,
                n, ms);
        // Generous bound (sanitizer builds are slow); the target is well under 50 ms.
        CHECK_MSG(ms < 500, "%s: %.1f ms", vocabs[k], ms);
        enc_job jobs[3];
        pthread_t th[3];
        for (int t = 0; t < 3; t++) {
            jobs[t] = (enc_job){v, text, len, malloc(sizeof(int32_t) << 16), 0};
            pthread_create(&th[t], NULL, enc_thread, &jobs[t]);
        }
        for (int t = 0; t < 3; t++) {
            pthread_join(th[t], NULL);
            CHECK(same_ids(jobs[t].ids, jobs[t].n, ref, n));
            free(jobs[t].ids);
        }
        free(ref);
        tok_free(v);
    }
    free(text);
}

int main(int argc, char **argv) {
    test_init(argc, argv);
    TEST_RUN(test_spm_tiny);
    TEST_RUN(test_spm_no_space_prefix);
    TEST_RUN(test_bpe_tiny);
    TEST_RUN(test_bpe_pre_families);
    TEST_RUN(test_bpe_missing_pre);
    TEST_RUN(test_invalid_utf8);
    TEST_RUN(test_bad_metadata);
    TEST_RUN(test_alloc_failures);
    TEST_RUN(test_vectors_llama_spm);
    TEST_RUN(test_vectors_phi3);
    TEST_RUN(test_vectors_gpt2);
    TEST_RUN(test_vectors_deepseek_llm);
    TEST_RUN(test_vectors_starcoder);
    TEST_RUN(test_vectors_falcon);
    TEST_RUN(test_specials_real);
    TEST_RUN(test_golden_prompts);
    TEST_RUN(test_stream_unicode);
    TEST_RUN(test_threads_and_speed);
    return test_finish();
}
