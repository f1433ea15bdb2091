// test_image_clip_tok.c — the CLIP BPE tokenizer (src/image/clip_tok.h)
// against ids from the original CLIP tokenizer: every string of
// ../shared/diffusion/clip/clip_vectors.json, from both vocabulary sources,
// and micro-sd15's 77-token prompts from its golden.json.
#include <jansson.h>
#include <stdio.h>
#include <string.h>

#include "image/clip_tok.h"
#include "test.h"

static clip_tok *g_json, *g_gz;

static void test_load(void) {
    char v[1024], m[1024], gz[1024];
    sim_err err = {0};
    if (test_shared_path(v, sizeof v, "diffusion/micro-sd15/tokenizer/vocab.json") &&
        test_shared_path(m, sizeof m, "diffusion/micro-sd15/tokenizer/merges.txt")) {
        CHECK_MSG(clip_tok_load(&g_json, v, m, &err) == SIM_OK, "%s", err.msg);
        if (g_json) CHECK_EQ_INT(clip_tok_n_vocab(g_json), 49408);
    }
    if (test_shared_path(gz, sizeof gz, "diffusion/clip/bpe_simple_vocab_16e6.txt.gz")) {
        CHECK_MSG(clip_tok_load_gz(&g_gz, gz, &err) == SIM_OK, "%s", err.msg);
        if (g_gz) CHECK_EQ_INT(clip_tok_n_vocab(g_gz), 49408);
    }
    // Both sources give the same vocabulary.
    if (g_json && g_gz)
        for (int32_t i = 0; i < 49408; i++) {
            const char *a = clip_tok_text(g_json, i), *b = clip_tok_text(g_gz, i);
            if (strcmp(a, b) != 0) {
                CHECK_MSG(0, "token %d: '%s' vs '%s'", i, a, b);
                break;
            }
        }
}

static void check_ids(clip_tok *t, const char *src, const char *text, json_t *want) {
    int32_t ids[512];
    int n;
    sim_err err = {0};
    CHECK_MSG(clip_tok_encode(t, text, strlen(text), ids, 512, &n, &err) == SIM_OK, "%s", err.msg);
    bool same = (size_t)n == json_array_size(want);
    for (int i = 0; same && i < n; i++) same = ids[i] == json_integer_value(json_array_get(want, (size_t)i));
    if (!same) {
        fprintf(stderr, "  %s: \"%s\":\n    got ", src, text);
        for (int i = 0; i < n && i < 40; i++) fprintf(stderr, " %d", ids[i]);
        fprintf(stderr, "\n    want");
        for (size_t i = 0; i < json_array_size(want) && i < 40; i++)
            fprintf(stderr, " %d", (int)json_integer_value(json_array_get(want, i)));
        fprintf(stderr, "\n");
    }
    CHECK(same);
}

static void test_vectors(void) {
    char path[1024];
    if (!test_shared_path(path, sizeof path, "diffusion/clip/clip_vectors.json")) return;
    if (!g_json && !g_gz) return test_skip("no tokenizer loaded");
    json_error_t je;
    json_t *root = json_load_file(path, 0, &je);
    CHECK(root != NULL);
    json_t *vecs = json_object_get(root, "vectors");
    CHECK(json_array_size(vecs) >= 10);
    for (size_t i = 0; i < json_array_size(vecs); i++) {
        json_t *v = json_array_get(vecs, i);
        const char *text = json_string_value(json_object_get(v, "text"));
        json_t *ids = json_object_get(v, "ids");
        if (g_json) check_ids(g_json, "vocab.json", text, ids);
        if (g_gz) check_ids(g_gz, "bpe.gz", text, ids);
    }
    json_decref(root);
}

static void test_sd_golden(void) {
    char path[1024];
    if (!test_shared_path(path, sizeof path, "diffusion/micro-sd15/golden.json")) return;
    if (!g_json) return test_skip("no tokenizer loaded");
    json_error_t je;
    json_t *root = json_load_file(path, 0, &je);
    CHECK(root != NULL);
    static const char *const keys[] = {"prompt", "negative"};
    for (int k = 0; k < 2; k++) {
        const char *text = json_string_value(json_object_get(json_object_get(root, "prompts"), keys[k]));
        json_t *want = json_object_get(json_object_get(root, "token_ids"), keys[k]);
        int32_t ids[77];
        int n;
        sim_err err = {0};
        CHECK_EQ_INT(clip_tok_encode_sd(g_json, text, ids, 77, CLIP_TOK_END, &n, &err), SIM_OK);
        CHECK_EQ_INT(json_array_size(want), 77);
        for (int i = 0; i < 77; i++) CHECK_EQ_INT(ids[i], json_integer_value(json_array_get(want, (size_t)i)));
    }
    json_decref(root);
}

static void test_sd_layout(void) {
    if (!g_json) return test_skip("no tokenizer loaded");
    int32_t ids[77];
    int n;
    sim_err err = {0};
    // 90 words: truncated to start + 75 + end.
    char text[400] = "";
    for (int i = 0; i < 90; i++) strcat(text, "cat ");
    CHECK_EQ_INT(clip_tok_encode_sd(g_json, text, ids, 77, 0, &n, &err), SIM_OK);
    CHECK_EQ_INT(n, 90);
    CHECK_EQ_INT(ids[0], CLIP_TOK_START);
    CHECK_EQ_INT(ids[1], 2368);
    CHECK_EQ_INT(ids[75], 2368);
    CHECK_EQ_INT(ids[76], CLIP_TOK_END);
    // SD 2.x pads with 0.
    CHECK_EQ_INT(clip_tok_encode_sd(g_json, "cat", ids, 77, 0, &n, &err), SIM_OK);
    CHECK(n == 1 && ids[1] == 2368 && ids[2] == CLIP_TOK_END && ids[3] == 0 && ids[76] == 0);
    // Entities, special tokens, invalid UTF-8, case.
    int32_t a[16], b[16];
    int na, nb;
    CHECK_EQ_INT(clip_tok_encode(g_json, "Cat &amp;amp; DOG", 17, a, 16, &na, &err), SIM_OK);
    CHECK_EQ_INT(clip_tok_encode(g_json, "cat & dog", 9, b, 16, &nb, &err), SIM_OK);
    CHECK(na == nb && memcmp(a, b, sizeof *a * (size_t)na) == 0);
    CHECK_EQ_INT(clip_tok_encode(g_json, "x<|endoftext|>", 14, a, 16, &na, &err), SIM_OK);
    CHECK(na == 2 && a[1] == CLIP_TOK_END);
    CHECK_EQ_INT(clip_tok_encode(g_json, "\xff\xfe" "a", 3, a, 16, &na, &err), SIM_OK);
    CHECK(na >= 1);
    CHECK_EQ_INT(clip_tok_encode(g_json, "ÀÉÎ ΑΒΓ АБВ", strlen("ÀÉÎ ΑΒΓ АБВ"), a, 16, &na, &err), SIM_OK);
    CHECK_EQ_INT(clip_tok_encode(g_json, "àéî αβγ абв", strlen("àéî αβγ абв"), b, 16, &nb, &err), SIM_OK);
    CHECK(na == nb && memcmp(a, b, sizeof *a * (size_t)na) == 0);
    // The count goes past cap; nothing is written past it.
    a[2] = -7;
    CHECK_EQ_INT(clip_tok_encode(g_json, "a b c d", 7, a, 2, &na, &err), SIM_OK);
    CHECK(na == 4 && a[2] == -7);
    static char big[20000];
    memset(big, 'x', sizeof big);
    CHECK_EQ_INT(clip_tok_encode(g_json, big, sizeof big, a, 16, &na, &err), SIM_ERR_RANGE);
}

// Expects the weighted encoding of text to be the plain encodings of the
// runs, with their weights.
static void check_weighted(const char *text, const char *const *runs, const double *w, int n_runs) {
    int32_t ids[128], want[128];
    float wt[128];
    float wwant[128];
    int n, nw = 0;
    sim_err err = {0};
    CHECK_EQ_INT(clip_tok_encode_weighted(g_json, text, ids, wt, 128, &n, &err), SIM_OK);
    for (int r = 0; r < n_runs; r++) {
        int k;
        CHECK_EQ_INT(clip_tok_encode(g_json, runs[r], strlen(runs[r]), want + nw, 128 - nw, &k, &err), SIM_OK);
        for (int i = 0; i < k; i++) wwant[nw + i] = (float)w[r];
        nw += k;
    }
    CHECK_MSG(n == nw, "'%s': %d tokens, expected %d", text, n, nw);
    for (int i = 0; i < n && i < nw; i++) {
        CHECK_MSG(ids[i] == want[i], "'%s' token %d: %d vs %d", text, i, ids[i], want[i]);
        CHECK_MSG(fabsf(wt[i] - wwant[i]) < 1e-6f, "'%s' weight %d: %g vs %g", text, i, wt[i], wwant[i]);
    }
}

static void test_weighted(void) {
    if (!g_json) return test_skip("no tokenizer loaded");
    check_weighted("(masterpiece:1.2), [blurry], \\(x\\)", (const char *[]){"masterpiece", ", ", "blurry", ", (x)"},
                   (double[]){1.2, 1, 1 / 1.1, 1}, 4);
    check_weighted("((cat)) dog", (const char *[]){"cat", " dog"}, (double[]){1.21, 1}, 2);
    check_weighted("a (b", (const char *[]){"a ", "b"}, (double[]){1, 1.1}, 2);
    check_weighted("a:1.2) b", (const char *[]){"a:1.2) b"}, (double[]){1}, 1);
    check_weighted("(a:x)", (const char *[]){"a:x"}, (double[]){1.1}, 1);
    check_weighted("[(a:1.5) b]", (const char *[]){"a", " b"}, (double[]){1.5 / 1.1, 1 / 1.1}, 2);
    check_weighted("plain words", (const char *[]){"plain words"}, (double[]){1}, 1);
    check_weighted("", (const char *[]){""}, (double[]){1}, 1);
}

static void test_bad_vocab(void) {
    sim_err err = {0};
    clip_tok *t;
    CHECK_EQ_INT(clip_tok_load(&t, "/nonexistent/vocab.json", "/nonexistent/merges.txt", &err), SIM_ERR_IO);
    FILE *f = fopen("/tmp/sim_clip_v.json", "w");
    fputs("{\"a\": 0, \"b\": 5}", f);
    fclose(f);
    f = fopen("/tmp/sim_clip_m.txt", "w");
    fputs("#version: 0.2\na b\n", f);
    fclose(f);
    CHECK_EQ_INT(clip_tok_load(&t, "/tmp/sim_clip_v.json", "/tmp/sim_clip_m.txt", &err), SIM_ERR_FORMAT);
    CHECK(strstr(err.msg, "token 'b' has id out of range") != NULL);
    f = fopen("/tmp/sim_clip_v.json", "w");
    fputs("{\"a\": 0, \"b\": 1}", f);
    fclose(f);
    CHECK_EQ_INT(clip_tok_load(&t, "/tmp/sim_clip_v.json", "/tmp/sim_clip_m.txt", &err), SIM_ERR_FORMAT);
    CHECK(strstr(err.msg, "line 2: merge 'a b' uses a token not in the vocabulary") != NULL);
    f = fopen("/tmp/sim_clip_m.txt", "w");
    fputs("#version: 0.2\n", f);
    fclose(f);
    CHECK_EQ_INT(clip_tok_load(&t, "/tmp/sim_clip_v.json", "/tmp/sim_clip_m.txt", &err), SIM_ERR_FORMAT);
    CHECK(strstr(err.msg, "lacks the symbol of byte 0x00") != NULL);
    CHECK_EQ_INT(clip_tok_load_gz(&t, "/tmp/sim_clip_m.txt", &err), SIM_ERR_FORMAT); // plain text: too few merges
    remove("/tmp/sim_clip_v.json");
    remove("/tmp/sim_clip_m.txt");
}

int main(int argc, char **argv) {
    test_init(argc, argv);
    TEST_RUN(test_load);
    TEST_RUN(test_vectors);
    TEST_RUN(test_sd_golden);
    TEST_RUN(test_sd_layout);
    TEST_RUN(test_weighted);
    TEST_RUN(test_bad_vocab);
    clip_tok_free(g_json);
    clip_tok_free(g_gz);
    return test_finish();
}
