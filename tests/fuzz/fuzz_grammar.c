// fuzz_grammar.c — libFuzzer target for the grammar module: the input is a
// GBNF grammar, optionally followed by a NUL byte and a subject text.
//   - gram_parse must succeed or fail with "line L, column C: ..." (format
//     errors) — never crash, hang or leak;
//   - a grammar that compiles matches the subject in chunks whose sizes come
//     from the subject itself; gram_can_accept_bytes must agree with
//     gram_accept_bytes, and a clone fed the rest byte by byte must end in
//     the same completeness;
//   - the token filter over a small in-memory vocabulary (byte tokens and a
//     few words) must agree with gram_can_accept_token for every token;
//   - the same input is also converted as a JSON Schema; a schema that
//     converts must give a grammar that compiles.
// Build and run: make fuzz && build/fuzz/fuzz_grammar tests/fuzz/corpus-grammar
// (seeds: any .gbnf files and JSON schemas).
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "infer/grammar.h"
#include "infer/jsonschema.h"
#include "model/gguf.h"
#include "model/tok.h"

static tok_vocab *vocab;
static gram_vocab *gvocab;

static void load_vocab(void) {
    static char bytes[256][8];
    static const char *words[] = {"\xE2\x96\x81", "{", "}", "\":", "true", "ab", "\xCE\xB1", "\xF0\x9F\x98\x80", "12", "\n"};
    const char *pieces[3 + 256 + 10];
    int32_t types[3 + 256 + 10];
    float scores[3 + 256 + 10];
    int n = 0;
    pieces[n] = "<unk>", types[n++] = 2;
    pieces[n] = "<s>", types[n++] = 3;
    pieces[n] = "</s>", types[n++] = 3;
    for (int b = 0; b < 256; b++) {
        snprintf(bytes[b], sizeof bytes[b], "<0x%02X>", b);
        pieces[n] = bytes[b], types[n++] = 6;
    }
    for (int i = 0; i < 10; i++) pieces[n] = words[i], types[n++] = 1;
    for (int i = 0; i < n; i++) scores[i] = -(float)i;
    gguf_writer *w = gguf_writer_new();
    gguf_writer_set_str(w, "tokenizer.ggml.model", "llama");
    gguf_writer_set_str_arr(w, "tokenizer.ggml.tokens", pieces, (uint64_t)n);
    gguf_writer_set_arr(w, "tokenizer.ggml.scores", GGUF_F32, scores, (uint64_t)n);
    gguf_writer_set_arr(w, "tokenizer.ggml.token_type", GGUF_I32, types, (uint64_t)n);
    gguf_writer_set_u32(w, "tokenizer.ggml.eos_token_id", 2);
    uint8_t *data;
    size_t size;
    sim_err err;
    gguf_file *f;
    if (gguf_writer_write_memory(w, &data, &size, &err) != SIM_OK || gguf_open_memory(&f, data, size, "tiny", &err) != SIM_OK ||
        tok_load(&vocab, f, &err) != SIM_OK || gram_vocab_new(&gvocab, vocab, &err) != SIM_OK) {
        fprintf(stderr, "fuzz_grammar: %s\n", err.msg);
        abort();
    }
    gguf_close(f);
    mem_free(data);
    gguf_writer_free(w);
}

static void check_filter(gram_state *s) {
    int32_t nv = tok_n_vocab(vocab);
    smp_cand c[3 + 256 + 10];
    for (int32_t i = 0; i < nv; i++) c[i] = (smp_cand){i, 0, 0};
    sim_err err;
    if (gram_filter(s, gvocab, c, (size_t)nv, &err) != SIM_OK) return; // a limit: fine
    for (int32_t i = 0; i < nv; i++) {
        int can = gram_can_accept_token(s, gvocab, i, &err);
        if (can < 0) return;
        if (can != (int)isfinite(c[i].logit)) {
            fprintf(stderr, "filter and can_accept disagree on token %d\n", i);
            abort();
        }
    }
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    if (!vocab) load_vocab();
    const char *text = (const char *)data;
    const uint8_t *nul = memchr(data, 0, size);
    size_t glen = nul ? (size_t)(nul - data) : size;
    const char *subj = nul ? (const char *)nul + 1 : "";
    size_t slen = nul ? size - glen - 1 : 0;
    if (slen > 512) slen = 512;
    sim_err err;

    char *gbnf = NULL;
    if (jsch_to_gbnf(text, glen, &gbnf, &err) == SIM_OK) {
        gram_grammar *jg;
        if (gram_parse(&jg, gbnf, strlen(gbnf), &err) != SIM_OK) {
            fprintf(stderr, "schema grammar does not compile: %s\n%s\n", err.msg, gbnf);
            abort();
        }
        gram_free(jg);
        mem_free(gbnf);
    }

    gram_grammar *g;
    sim_status st = gram_parse(&g, text, glen, &err);
    if (st != SIM_OK) {
        if (st == SIM_ERR_FORMAT && strncmp(err.msg, "line ", 5) != 0) {
            fprintf(stderr, "format error without a position: %s\n", err.msg);
            abort();
        }
        return 0;
    }
    gram_state *s, *c = NULL;
    if (gram_state_new(&s, g, &err) != SIM_OK) {
        gram_free(g);
        return 0;
    }
    check_filter(s);
    size_t i = 0, i0 = 0;
    bool alive = true;
    while (i < slen && alive) {
        size_t k = 1 + (uint8_t)subj[i] % 4;
        if (k > slen - i) k = slen - i;
        int can = gram_can_accept_bytes(s, subj + i, k, &err);
        st = gram_accept_bytes(s, subj + i, k, &err);
        if (can >= 0 && can != (st == SIM_OK)) {
            fprintf(stderr, "can_accept %d but accept %d\n", can, st);
            abort();
        }
        if (st != SIM_OK) alive = false;
        else i += k;
        if (!c && alive && i >= slen / 2 && gram_state_clone(&c, s, &err) == SIM_OK) i0 = i;
    }
    check_filter(s);
    if (c && alive) {
        // the clone, fed the rest byte by byte, ends where the original did
        bool ok = true;
        for (size_t j = i0; j < i && ok; j++) ok = gram_accept_bytes(c, subj + j, 1, &err) == SIM_OK;
        if (ok && (gram_is_complete(c) != gram_is_complete(s) || gram_is_done(c) != gram_is_done(s))) {
            fprintf(stderr, "the clone and the original differ\n");
            abort();
        }
        if (!ok && err.code == SIM_ERR_ARG) {
            fprintf(stderr, "the clone rejects what the original accepted: %s\n", err.msg);
            abort();
        }
    }
    gram_state_free(c);
    gram_state_free(s);
    gram_free(g);
    return 0;
}
