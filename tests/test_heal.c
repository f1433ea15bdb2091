// test_heal.c — token healing: rollback choice and the prefix constraint,
// on a real SentencePiece vocabulary and a byte-level BPE one.
#include <string.h>

#include "infer/heal.h"
#include "model/gguf.h"
#include "test.h"

static tok_vocab *load_vocab(const char *rel) {
    char path[1200];
    if (!test_shared_path(path, sizeof path, rel)) return NULL;
    gguf_file *f;
    sim_err err;
    tok_vocab *v = NULL;
    CHECK(gguf_open(&f, path, &err) == SIM_OK);
    if (f) {
        CHECK(tok_load(&v, f, &err) == SIM_OK);
        gguf_close(f);
    }
    return v;
}

static int encode(const tok_vocab *v, const char *text, int32_t *ids) {
    sim_err err;
    return tok_encode(v, text, strlen(text), true, false, ids, 256, &err);
}

// Which of the given texts' tokens the filter lets through.
static bool allowed(const heal_index *ix, const heal_state *st, const tok_vocab *v, const char *piece) {
    int32_t id = tok_find(v, piece, strlen(piece));
    CHECK_MSG(id != TOK_NULL, "no piece '%s'", piece);
    smp_cand c = {.id = id, .logit = 1.0f};
    heal_filter(ix, st, &c, 1);
    return c.logit == 1.0f;
}

static void test_spm(void) {
    tok_vocab *v = load_vocab("vocab/ggml-vocab-llama-spm.gguf");
    if (!v) return;
    heal_index *ix;
    sim_err err;
    CHECK(heal_index_new(&ix, v, &err) == SIM_OK);
    int32_t ids[256];
    int n = encode(v, "Once upon a ti", ids);
    heal_state st;
    int keep = heal_rollback(ix, ids, n, HEAL_LAST, &st);
    CHECK_EQ_INT(keep, n - 1);
    CHECK(st.removed_len == 3 && memcmp(st.removed, " ti", 3) == 0);
    // " time" and " tim" continue it, " t" is a prefix of it, "me" and " a" do not.
    CHECK(allowed(ix, &st, v, "\xE2\x96\x81time"));
    CHECK(allowed(ix, &st, v, "\xE2\x96\x81t"));
    CHECK(!allowed(ix, &st, v, "me"));
    CHECK(!allowed(ix, &st, v, "\xE2\x96\x81" "a"));
    CHECK(!allowed(ix, &st, v, "</s>"));
    // After " t" is chosen, only pieces starting with "i" remain allowed.
    heal_accept(ix, &st, tok_find(v, "\xE2\x96\x81t", 4));
    CHECK(heal_active(&st) && st.matched == 2);
    CHECK(allowed(ix, &st, v, "ime"));
    CHECK(!allowed(ix, &st, v, "\xE2\x96\x81time"));
    heal_accept(ix, &st, tok_find(v, "ime", 3));
    CHECK(!heal_active(&st));
    // Dynamic: roll back while some piece still starts with the removed text.
    n = encode(v, "The quick brown fo", ids);
    keep = heal_rollback(ix, ids, n, HEAL_DYNAMIC, &st);
    CHECK(keep < n && keep >= 1);
    CHECK(st.removed_len >= 3 && memcmp(st.removed + st.removed_len - 3, " fo", 3) == 0);
    // Never past BOS, never everything: "a" alone keeps BOS.
    n = encode(v, "a", ids);
    keep = heal_rollback(ix, ids, n, HEAL_DYNAMIC, &st);
    CHECK(keep >= 1 && ids[0] == tok_bos(v));
    int32_t only_bos = tok_bos(v);
    CHECK_EQ_INT(heal_rollback(ix, &only_bos, 1, HEAL_DYNAMIC, &st), 1);
    CHECK(!heal_active(&st));
    // Byte tokens: an emoji split into <0xF0>.. bytes is rolled back as raw bytes.
    n = encode(v, "hi \xF0\x9F\x98", ids); // an incomplete emoji at the end
    keep = heal_rollback(ix, ids, n, HEAL_LAST, &st);
    if (keep < n) CHECK(st.removed_len >= 1 && (unsigned char)st.removed[st.removed_len - 1] == 0x98);
    heal_index_free(ix);
    tok_free(v);
}

static void test_bpe(void) {
    tok_vocab *v = load_vocab("vocab/ggml-vocab-gpt-2.gguf");
    if (!v) return;
    heal_index *ix;
    sim_err err;
    CHECK(heal_index_new(&ix, v, &err) == SIM_OK);
    int32_t ids[256];
    int n = encode(v, "Hello wor", ids);
    heal_state st;
    int keep = heal_rollback(ix, ids, n, HEAL_LAST, &st);
    CHECK_EQ_INT(keep, n - 1);
    CHECK(st.removed_len == 4 && memcmp(st.removed, " wor", 4) == 0);
    CHECK(allowed(ix, &st, v, "\xC4\xA0world")); // "Ġworld"
    CHECK(!allowed(ix, &st, v, "world"));
    heal_mode mode;
    CHECK(heal_parse_mode("dynamic", &mode) && mode == HEAL_DYNAMIC);
    CHECK(!heal_parse_mode("sometimes", &mode));
    heal_index_free(ix);
    tok_free(v);
}

int main(int argc, char **argv) {
    test_init(argc, argv);
    TEST_RUN(test_spm);
    TEST_RUN(test_bpe);
    return test_finish();
}
