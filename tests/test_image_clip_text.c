// test_image_clip_text.c — the CLIP text encoder (src/image/clip_text.h) on
// micro-sd15: the prompt's and the empty negative prompt's hidden states
// match the golden arrays of an independent PyTorch implementation
// (max |Δ| ≤ 1e-3 × max |reference|), on the fast path with 1 and 2
// threads and on the scalar references; wrong shapes are refused.
#include <jansson.h>
#include <stdio.h>
#include <string.h>

#include "base/file.h"
#include "image/clip_text.h"
#include "image/clip_tok.h"
#include "test.h"

static void test_micro_sd15(void) {
    char dir[1024], path[1200];
    if (!test_shared_path(dir, sizeof dir, "diffusion/micro-sd15")) return;
    dif_pipeline p;
    sim_err err = {0};
    if (dif_open(&p, dir, &err) != SIM_OK) {
        CHECK_MSG(0, "%s", err.msg);
        return;
    }
    clip_tok *tok = NULL;
    char v[1200], mg[1200];
    dif_path(&p, "tokenizer/vocab.json", v, sizeof v, &err);
    dif_path(&p, "tokenizer/merges.txt", mg, sizeof mg, &err);
    CHECK_MSG(clip_tok_load(&tok, v, mg, &err) == SIM_OK, "%s", err.msg);
    dif_path(&p, "text_encoder/model.safetensors", path, sizeof path, &err);
    st_file *f = NULL;
    CHECK_MSG(st_open(&f, path, &err) == SIM_OK, "%s", err.msg);
    clip_text *m = NULL;
    if (f) CHECK_MSG(clip_text_load(&m, &p.clip, f, &err) == SIM_OK, "%s", err.msg);
    // A config that disagrees with the weights is refused, naming the tensor.
    dif_clip_config bad = p.clip;
    bad.hidden = 48;
    clip_text *mb = NULL;
    if (f) {
        CHECK_EQ_INT(clip_text_load(&mb, &bad, f, &err), SIM_ERR_FORMAT);
        CHECK(strstr(err.msg, "token_embedding.weight' has shape [49408, 32], expected [49408, 48]") != NULL);
    }
    st_close(f);
    if (!tok || !m) {
        clip_tok_free(tok);
        clip_text_free(m);
        return;
    }
    pool *pl;
    CHECK(pool_new(&pl, 2, &err) == SIM_OK);
    static const char *const prompts[] = {"1girl, cat ears, happy, bright green background, 3/4 body sprite", ""};
    static const char *const files[] = {"diffusion/micro-sd15/clip.prompt.hidden.f32", "diffusion/micro-sd15/clip.negative.hidden.f32"};
    static float ref[77 * 32], out[77 * 32], out1[77 * 32];
    for (int k = 0; k < 2; k++) {
        int32_t ids[77];
        CHECK_EQ_INT(clip_tok_encode_sd(tok, prompts[k], ids, 77, CLIP_TOK_END, NULL, &err), SIM_OK);
        if (!test_golden_f32(files[k], ref, 77 * 32)) continue;
        op_ctx c = {.pool = pl, .k = kern_get(KERN_BEST)};
        CHECK_EQ_INT(clip_text_encode(m, &c, ids, 77, 0, out, &err), SIM_OK);
        test_compare_rel(k ? "negative (2 threads)" : "prompt (2 threads)", out, ref, 77 * 32, 1e-3);
        c.pool = NULL;
        CHECK_EQ_INT(clip_text_encode(m, &c, ids, 77, 0, out1, &err), SIM_OK);
        CHECK(memcmp(out, out1, sizeof out) == 0);
        c.ref = true;
        CHECK_EQ_INT(clip_text_encode(m, &c, ids, 77, 0, out1, &err), SIM_OK);
        test_compare_rel(k ? "negative (reference ops)" : "prompt (reference ops)", out1, ref, 77 * 32, 1e-3);
    }
    int32_t ids[2] = {1, 49408};
    op_ctx c = {.k = kern_get(KERN_BEST)};
    CHECK_EQ_INT(clip_text_encode(m, &c, ids, 2, 0, out, &err), SIM_ERR_ARG);
    CHECK_EQ_INT(clip_text_encode(m, &c, ids, 78, 0, out, &err), SIM_ERR_ARG);
    CHECK_EQ_INT(clip_text_encode(m, &c, ids, 1, 2, out, &err), SIM_ERR_ARG);
    CHECK_EQ_INT(clip_text_encode(m, &c, ids, 1, 1, out, &err), SIM_OK); // CLIP skip 1
    pool_free(pl);
    clip_tok_free(tok);
    clip_text_free(m);
}

int main(int argc, char **argv) {
    test_init(argc, argv);
    TEST_RUN(test_micro_sd15);
    return test_finish();
}
