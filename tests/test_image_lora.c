// test_image_lora.c — LoRA merging (src/image/lora.h): merges equal
// hand-computed W + scale · up · down (linear, conv 3×3, 1×1 conv from a
// linear LoRA, alpha ≠ rank, two LoRAs, LoHa, F16 tensors, every key
// format); kohya names resolve to the right weight of micro-sd15's real
// U-Net and text encoder; malformed files, unknown keys, shape mismatches
// are refused with precise errors; prompt tags parse.
#include <stdio.h>
#include <stdlib.h>
#include <limits.h>
#include <string.h>
#include <unistd.h>

#include "base/file.h"
#include "base/strbuf.h"
#include "image/clip_text.h"
#include "image/diffusers.h"
#include "image/lora.h"
#include "image/sd.h"
#include "image/stwrite.h"
#include "image/unet.h"
#include "image/wts.h"
#include "tensor/types.h"
#include "test.h"

// --- a minimal safetensors writer (independent of the reader under test) ------------------------

typedef struct tw {
    sbuf hdr;
    uint8_t *data;
    size_t n, cap;
} tw;

// Adds tensor `name` of dtype "F32", "F16" or "I8" with values v (converted).
static void tw_add(tw *w, const char *name, const char *dtype, int nd, const int64_t *shape, const float *v) {
    int64_t ne = 1;
    for (int i = 0; i < nd; i++) ne *= shape[i];
    size_t es = strcmp(dtype, "F32") == 0 ? 4 : strcmp(dtype, "F16") == 0 ? 2 : 1, sz = (size_t)ne * es;
    if (w->n + sz > w->cap) {
        w->cap = (w->n + sz) * 2 + 64;
        w->data = realloc(w->data, w->cap);
    }
    for (int64_t i = 0; i < ne; i++) {
        uint8_t *p = w->data + w->n + (size_t)i * es;
        if (es == 4) memcpy(p, &v[i], 4);
        else if (es == 2) {
            tt_half h = tt_float_to_half(v[i]);
            memcpy(p, &h, 2);
        } else *p = (uint8_t)(int8_t)v[i];
    }
    sb_printf(&w->hdr, "%s\"%s\":{\"dtype\":\"%s\",\"shape\":[", w->hdr.n ? "," : "{", name, dtype);
    for (int i = 0; i < nd; i++) sb_printf(&w->hdr, "%s%lld", i ? "," : "", (long long)shape[i]);
    sb_printf(&w->hdr, "],\"data_offsets\":[%zu,%zu]}", w->n, w->n + sz);
    w->n += sz;
}
#define TW_ADD(w, name, dtype, v, ...) tw_add(w, name, dtype, WTS_SHAPE(__VA_ARGS__), v)

// The file's bytes (malloc'd; *len set); w is emptied.
static uint8_t *tw_bytes(tw *w, size_t *len) {
    sb_str(&w->hdr, w->hdr.n ? "}" : "{}");
    while ((w->hdr.n + 8) % 8) sb_str(&w->hdr, " ");
    char *h = sb_take(&w->hdr);
    size_t hl = strlen(h);
    uint8_t *b = malloc(8 + hl + w->n);
    for (int i = 0; i < 8; i++) b[i] = (uint8_t)((uint64_t)hl >> (8 * i));
    memcpy(b + 8, h, hl);
    if (w->n) memcpy(b + 8 + hl, w->data, w->n);
    *len = 8 + hl + w->n;
    mem_free(h);
    free(w->data);
    *w = (tw){0};
    return b;
}

// Opens w's bytes as an st_file named `name`; the bytes are kept in *keep (free them after st_close).
static st_file *tw_open(tw *w, const char *name, uint8_t **keep) {
    size_t len;
    *keep = tw_bytes(w, &len);
    st_file *f = NULL;
    sim_err err = {0};
    CHECK_MSG(st_open_memory(&f, *keep, len, name, &err) == SIM_OK, "%s", err.msg);
    return f;
}

static void tw_write(tw *w, const char *path) {
    size_t len;
    uint8_t *b = tw_bytes(w, &len);
    sim_err err = {0};
    CHECK_MSG(file_write_all(path, b, len, &err) == SIM_OK, "%s", err.msg);
    free(b);
}

// --- merges on hand-derived matrices ------------------------------------------------------------

// The target: a few weights of a made-up model.
static st_file *target_file(uint8_t **keep) {
    tw w = {0};
    static const float Wq[6] = {1, 2, 3, 4, 5, 6}, bias[3] = {0}, conv[18] = {0}, proj[4] = {1, 0, 0, 1};
    TW_ADD(&w, "blk.attn1.to_q.weight", "F32", Wq, 3, 2);
    TW_ADD(&w, "blk.attn1.to_q.bias", "F32", bias, 3);
    TW_ADD(&w, "blk.attn1.to_out.0.weight", "F32", proj, 2, 2);
    TW_ADD(&w, "blk.conv1.weight", "F32", conv, 2, 1, 3, 3);
    TW_ADD(&w, "blk.proj_in.weight", "F32", proj, 2, 2, 1, 1);
    TW_ADD(&w, "a.b_c.weight", "F32", proj, 2, 2);
    TW_ADD(&w, "a_b.c.weight", "F32", proj, 2, 2);
    return tw_open(&w, "target.safetensors", keep);
}

static void read_w(st_file *f, const char *name, float *out) {
    sim_err err = {0};
    CHECK_MSG(st_read_f32(f, name, NULL, 0, out, &err) == SIM_OK, "%s", err.msg);
}

static void check_vals(const char *what, const float *got, const float *want, int n) {
    for (int i = 0; i < n; i++) CHECK_MSG(got[i] == want[i], "%s[%d]: %.9g, expected %.9g", what, i, (double)got[i], (double)want[i]);
}

// LoRA A (kohya): to_q rank 2, alpha 1. up·down = [[1,2],[0,-1],[1,1]].
static st_file *lora_a(uint8_t **keep) {
    tw w = {0};
    static const float down[4] = {1, 2, 0, -1}, up[6] = {1, 0, 0, 1, 1, 1}, alpha = 1;
    TW_ADD(&w, "lora_unet_blk_attn1_to_q.lora_down.weight", "F32", down, 2, 2);
    TW_ADD(&w, "lora_unet_blk_attn1_to_q.lora_up.weight", "F32", up, 3, 2);
    tw_add(&w, "lora_unet_blk_attn1_to_q.alpha", "F32", 0, NULL, &alpha); // a scalar
    return tw_open(&w, "a.safetensors", keep);
}

static void test_merge_linear_two(void) {
    uint8_t *kt, *ka, *kb;
    st_file *t = target_file(&kt);
    lora_set *s;
    sim_err err = {0};
    CHECK(lora_set_new(&s, &err) == SIM_OK);
    CHECK_MSG(lora_add_file(s, lora_a(&ka), 0.5f, &err) == SIM_OK, "%s", err.msg);
    CHECK(lora_touches(s, LORA_UNET) && !lora_touches(s, LORA_TEXT));
    float got[6];
    // scale = 0.5 · 1 / 2 = 0.25: W' = [[1,2],[3,4],[5,6]] + 0.25 · [[1,2],[0,-1],[1,1]]
    CHECK_MSG(lora_attach(s, LORA_UNET, t, &err) == SIM_OK, "%s", err.msg);
    read_w(t, "blk.attn1.to_q.weight", got);
    check_vals("one LoRA", got, (const float[]){1.25f, 2.5f, 3, 3.75f, 5.25f, 6.25f}, 6);
    // Unpatched tensors are untouched; all modules were read.
    read_w(t, "blk.attn1.to_out.0.weight", got);
    check_vals("untouched", got, (const float[]){1, 0, 0, 1}, 4);
    CHECK_MSG(lora_detach(s, LORA_UNET, t, &err) == SIM_OK, "%s", err.msg);
    read_w(t, "blk.attn1.to_q.weight", got);
    check_vals("detached", got, (const float[]){1, 2, 3, 4, 5, 6}, 6);
    // LoRA B (PEFT names, F16): rank 1, alpha 4, weight -0.5: scale -2; up·down = [[1,0],[2,0],[0,0]] (outer product).
    tw w = {0};
    static const float down[2] = {1, 0}, up[3] = {1, 2, 0}, alpha = 4;
    TW_ADD(&w, "unet.blk.attn1.to_q.lora_A.weight", "F16", down, 1, 2);
    TW_ADD(&w, "unet.blk.attn1.to_q.lora_B.weight", "F16", up, 3, 1);
    TW_ADD(&w, "unet.blk.attn1.to_q.alpha", "F16", &alpha, 1);
    CHECK_MSG(lora_add_file(s, tw_open(&w, "b.safetensors", &kb), -0.5f, &err) == SIM_OK, "%s", err.msg);
    CHECK_MSG(lora_attach(s, LORA_UNET, t, &err) == SIM_OK, "%s", err.msg);
    read_w(t, "blk.attn1.to_q.weight", got);
    check_vals("two LoRAs", got, (const float[]){1.25f - 2, 2.5f, 3 - 4, 3.75f, 5.25f, 6.25f}, 6);
    CHECK_MSG(lora_detach(s, LORA_UNET, t, &err) == SIM_OK, "%s", err.msg);
    lora_set_free(s);
    st_close(t);
    free(kt), free(ka), free(kb);
}

static void test_merge_conv_loha_old_names(void) {
    uint8_t *kt, *kl;
    st_file *t = target_file(&kt);
    tw w = {0};
    // conv 3×3 (diffusers old name): down (1, 1, 3, 3) = 1..9, up (2, 1, 1, 1) = (1, -2), no alpha: scale = weight 1.5.
    static const float d9[9] = {1, 2, 3, 4, 5, 6, 7, 8, 9}, up2[2] = {1, -2};
    TW_ADD(&w, "unet.blk.conv1.lora.down.weight", "F32", d9, 1, 1, 3, 3);
    TW_ADD(&w, "unet.blk.conv1.lora.up.weight", "F32", up2, 2, 1, 1, 1);
    // 1×1 conv from a linear LoRA: down (1, 2) = (1, 1), up (2, 1) = (0, 4), alpha 0.5: scale 1.5 · 0.5 = 0.75.
    static const float d2[2] = {1, 1}, u2[2] = {0, 4}, half = 0.5f;
    TW_ADD(&w, "lora_unet_blk_proj_in.lora_down.weight", "F32", d2, 1, 2);
    TW_ADD(&w, "lora_unet_blk_proj_in.lora_up.weight", "F32", u2, 2, 1);
    tw_add(&w, "lora_unet_blk_proj_in.alpha", "F32", 0, NULL, &half); // a scalar
    // LoHa on to_q: (w1a · w1b) ⊙ (w2a · w2b) = [[1,1],[2,2],[0,0]] ⊙ [[3,1],[-3,-1],[1,1]] = [[3,1],[-6,-2],[0,0]];
    // rank 1, alpha 2: scale 1.5 · 2 = 3.
    static const float w1a[3] = {1, 2, 0}, w1b[2] = {1, 1}, w2a[3] = {1, -1, 1}, w2b[2] = {3, 1}, two = 2;
    TW_ADD(&w, "lora_unet_blk_attn1_to_q.hada_w1_a", "F32", w1a, 3, 1);
    TW_ADD(&w, "lora_unet_blk_attn1_to_q.hada_w1_b", "F32", w1b, 1, 2);
    TW_ADD(&w, "lora_unet_blk_attn1_to_q.hada_w2_a", "F32", w2a, 3, 1);
    TW_ADD(&w, "lora_unet_blk_attn1_to_q.hada_w2_b", "F32", w2b, 1, 2);
    tw_add(&w, "lora_unet_blk_attn1_to_q.alpha", "F32", 0, NULL, &two); // a scalar
    // Attention processor form: to_out_lora patches to_out.0; rank 2, up·down = [[1,0],[0,1]], no alpha: scale 1.5.
    static const float id[4] = {1, 0, 0, 1};
    TW_ADD(&w, "unet.blk.attn1.processor.to_out_lora.down.weight", "F32", id, 2, 2);
    TW_ADD(&w, "unet.blk.attn1.processor.to_out_lora.up.weight", "F32", id, 2, 2);
    lora_set *s;
    sim_err err = {0};
    CHECK(lora_set_new(&s, &err) == SIM_OK);
    CHECK_MSG(lora_add_file(s, tw_open(&w, "c.safetensors", &kl), 1.5f, &err) == SIM_OK, "%s", err.msg);
    CHECK_MSG(lora_attach(s, LORA_UNET, t, &err) == SIM_OK, "%s", err.msg);
    float got[18], want[18];
    read_w(t, "blk.conv1.weight", got);
    for (int i = 0; i < 9; i++) want[i] = 1.5f * d9[i], want[9 + i] = -3 * d9[i];
    check_vals("conv 3x3", got, want, 18);
    read_w(t, "blk.proj_in.weight", got);
    check_vals("1x1 conv", got, (const float[]){1, 0, 0.75f * 4, 1 + 0.75f * 4}, 4);
    read_w(t, "blk.attn1.to_q.weight", got);
    check_vals("LoHa", got, (const float[]){1 + 9, 2 + 3, 3 - 18, 4 - 6, 5, 6}, 6);
    // to_out is read last: detach must refuse it before, accept it after.
    CHECK_EQ_INT(lora_detach(s, LORA_UNET, t, &err), SIM_ERR_FORMAT);
    CHECK_STR(err.msg, "c.safetensors: LoRA module 'unet.blk.attn1.processor.to_out' patches 'blk.attn1.to_out.0.weight', which the U-Net does not use");
    CHECK_MSG(lora_attach(s, LORA_UNET, t, &err) == SIM_OK, "%s", err.msg);
    read_w(t, "blk.attn1.to_out.0.weight", got);
    check_vals("processor to_out", got, (const float[]){2.5f, 0, 0, 2.5f}, 4);
    read_w(t, "blk.conv1.weight", got);
    read_w(t, "blk.proj_in.weight", got);
    read_w(t, "blk.attn1.to_q.weight", got);
    CHECK_MSG(lora_detach(s, LORA_UNET, t, &err) == SIM_OK, "%s", err.msg);
    lora_set_free(s);
    st_close(t);
    free(kt), free(kl);
}

// Adds the file w to a fresh set (expecting `st_add`), then attaches it to
// the target (expecting `st_att`); the last message must contain `msg`.
static void expect(tw *w, sim_status st_add, sim_status st_att, const char *msg) {
    uint8_t *kt, *kl;
    st_file *t = target_file(&kt);
    lora_set *s;
    sim_err err = {0};
    CHECK(lora_set_new(&s, &err) == SIM_OK);
    sim_status st = lora_add_file(s, tw_open(w, "bad.safetensors", &kl), 1, &err);
    CHECK_MSG(st == st_add, "add gave %d (%s), expected %d", st, err.msg, st_add);
    if (st == SIM_OK) {
        st = lora_attach(s, LORA_UNET, t, &err);
        CHECK_MSG(st == st_att, "attach gave %d (%s), expected %d", st, err.msg, st_att);
        CHECK(t->patch == NULL || st == SIM_OK);
        if (st == SIM_OK) lora_detach(s, LORA_UNET, t, &err);
    }
    CHECK_MSG(strstr(err.msg, msg) != NULL, "message '%s' lacks '%s'", err.msg, msg);
    lora_set_free(s);
    st_close(t);
    free(kt), free(kl);
}

static void test_refusals(void) {
    static const float v[64] = {1, 2, 3, 4};
    tw w = {0};
    TW_ADD(&w, "lora_unet_blk_attn1_to_q.lora_down.weight", "F32", v, 2, 2);
    TW_ADD(&w, "lora_unet_blk_attn1_to_q.weight", "F32", v, 2, 2);
    expect(&w, SIM_ERR_FORMAT, SIM_OK, "bad.safetensors: 'lora_unet_blk_attn1_to_q.weight' is not a LoRA key");
    TW_ADD(&w, "lora_unet_blk_attn1_to_q.lora_down.weight", "F32", v, 2, 2);
    expect(&w, SIM_ERR_FORMAT, SIM_OK, "LoRA module 'lora_unet_blk_attn1_to_q' has no up weight");
    TW_ADD(&w, "lora_unet_blk_attn1_to_q.lora_down.weight", "F32", v, 2, 2);
    TW_ADD(&w, "lora_unet_blk_attn1_to_q.lora_up.weight", "F32", v, 3, 1);
    expect(&w, SIM_ERR_FORMAT, SIM_OK, "module 'lora_unet_blk_attn1_to_q': down [2, 2] and up [3, 1] are not (rank, in[, kh, kw]) and (out, rank[, 1, 1])");
    TW_ADD(&w, "lora_unet_blk_attn1_to_q.lora_down.weight", "F32", v, 2, 2);
    TW_ADD(&w, "lora_unet_blk_attn1_to_q.lora_up.weight", "F32", v, 4, 2);
    expect(&w, SIM_OK, SIM_ERR_FORMAT, "LoRA module 'lora_unet_blk_attn1_to_q' (up [4, 2], down [2, 2]) does not fit 'blk.attn1.to_q.weight' [3, 2]");
    TW_ADD(&w, "lora_unet_blk_conv1.lora_down.weight", "F32", v, 1, 1, 2, 2);
    TW_ADD(&w, "lora_unet_blk_conv1.lora_up.weight", "F32", v, 2, 1, 1, 1);
    expect(&w, SIM_OK, SIM_ERR_FORMAT, "does not fit 'blk.conv1.weight' [2, 1, 3, 3]");
    TW_ADD(&w, "lora_unet_blk_attn1_to_q_bias.lora_down.weight", "F32", v, 1, 1);
    TW_ADD(&w, "lora_unet_blk_attn1_to_q_bias.lora_up.weight", "F32", v, 3, 1);
    expect(&w, SIM_OK, SIM_ERR_FORMAT, "bad.safetensors: LoRA module 'lora_unet_blk_attn1_to_q_bias' matches no weight of the U-Net (target.safetensors)");
    TW_ADD(&w, "lora_unet_a_b_c.lora_down.weight", "F32", v, 1, 2);
    TW_ADD(&w, "lora_unet_a_b_c.lora_up.weight", "F32", v, 2, 1);
    expect(&w, SIM_OK, SIM_ERR_FORMAT, "LoRA module 'lora_unet_a_b_c' is ambiguous: several weights of target.safetensors have that kohya name");
    TW_ADD(&w, "unet.a.b_c.lora_A.weight", "F32", v, 1, 2); // the diffusers name is not ambiguous
    TW_ADD(&w, "unet.a.b_c.lora_B.weight", "F32", v, 2, 1);
    expect(&w, SIM_OK, SIM_OK, "");
    TW_ADD(&w, "unet.blk.proj_in.lora_A.weight", "F32", v, 1, 2);
    TW_ADD(&w, "unet.blk.proj_in.lora_B.weight", "F32", v, 2, 1);
    TW_ADD(&w, "lora_unet_blk_proj_in.lora_down.weight", "F32", v, 1, 2);
    TW_ADD(&w, "lora_unet_blk_proj_in.lora_up.weight", "F32", v, 2, 1);
    expect(&w, SIM_OK, SIM_ERR_FORMAT, "LoRA modules 'lora_unet_blk_proj_in' and 'unet.blk.proj_in' both patch 'blk.proj_in.weight'");
    TW_ADD(&w, "unet.blk.proj_in.lora_A.weight", "F32", v, 1, 2);
    TW_ADD(&w, "unet.blk.proj_in.lora.down.weight", "F32", v, 1, 2);
    expect(&w, SIM_ERR_FORMAT, SIM_OK, "LoRA module 'unet.blk.proj_in' has two");
    TW_ADD(&w, "lora_unet_blk_proj_in.lora_down.weight", "F32", v, 1, 2);
    TW_ADD(&w, "lora_unet_blk_proj_in.lora_up.weight", "F32", v, 2, 1);
    TW_ADD(&w, "lora_unet_blk_proj_in.alpha", "F32", v, 2);
    expect(&w, SIM_ERR_FORMAT, SIM_OK, "LoRA alpha 'lora_unet_blk_proj_in.alpha' has 2 values (one expected)");
    TW_ADD(&w, "lora_unet_blk_proj_in.lora_down.weight", "I8", v, 1, 2);
    TW_ADD(&w, "lora_unet_blk_proj_in.lora_up.weight", "F32", v, 2, 1);
    expect(&w, SIM_ERR_UNSUPPORTED, SIM_OK, "LoRA tensor 'lora_unet_blk_proj_in.lora_down.weight' is I8 (F32, F16 or BF16 expected)");
    TW_ADD(&w, "lora_te2_text_model_encoder_layers_0_mlp_fc1.lora_down.weight", "F32", v, 1, 2);
    expect(&w, SIM_ERR_UNSUPPORTED, SIM_OK, "'lora_te2_text_model_encoder_layers_0_mlp_fc1.lora_down.weight' is for SDXL's second text encoder");
    TW_ADD(&w, "lora_unet_blk_conv1.lora_mid.weight", "F32", v, 1, 1, 3, 3);
    expect(&w, SIM_ERR_UNSUPPORTED, SIM_OK, "is a Tucker-decomposed LoCon module (not supported)");
    TW_ADD(&w, "lora_unet_input_blocks_1_1_proj_in.lora_down.weight", "F32", v, 1, 2);
    expect(&w, SIM_ERR_UNSUPPORTED, SIM_OK, "an LDM-style (non-diffusers) U-Net name");
    TW_ADD(&w, "vae.decoder.conv_in.lora_A.weight", "F32", v, 1, 2);
    expect(&w, SIM_ERR_FORMAT, SIM_OK, "LoRA key 'vae.decoder.conv_in' names no known model");
    TW_ADD(&w, "lora_unet_blk_attn1_to_q.hada_w1_a", "F32", v, 3, 1);
    TW_ADD(&w, "lora_unet_blk_attn1_to_q.hada_w1_b", "F32", v, 1, 2);
    TW_ADD(&w, "lora_unet_blk_attn1_to_q.hada_w2_a", "F32", v, 3, 2);
    expect(&w, SIM_ERR_FORMAT, SIM_OK, "LoHa module 'lora_unet_blk_attn1_to_q' has no hada_w2_b");
    TW_ADD(&w, "lora_unet_blk_attn1_to_q.hada_w1_a", "F32", v, 3, 1);
    TW_ADD(&w, "lora_unet_blk_attn1_to_q.hada_w1_b", "F32", v, 1, 2);
    TW_ADD(&w, "lora_unet_blk_attn1_to_q.hada_w2_a", "F32", v, 3, 2);
    TW_ADD(&w, "lora_unet_blk_attn1_to_q.hada_w2_b", "F32", v, 1, 2);
    expect(&w, SIM_ERR_FORMAT, SIM_OK, "w1_a [3, 1], w1_b [1, 2], w2_a [3, 2], w2_b [1, 2] do not form two (out, in) products");
    TW_ADD(&w, "lora_unet_blk_attn1_to_q.lora_down.weight", "F32", v, 1, 2);
    TW_ADD(&w, "lora_unet_blk_attn1_to_q.hada_w1_a", "F32", v, 3, 1);
    expect(&w, SIM_ERR_FORMAT, SIM_OK, "mixes lora and hada tensors");
    TW_ADD(&w, "unet.blk.conv1_lora.down.weight", "F32", v, 1, 2);
    expect(&w, SIM_ERR_FORMAT, SIM_OK, "LoRA key 'unet.blk.conv1' has a _lora suffix outside an attention processor");
    expect(&w, SIM_ERR_FORMAT, SIM_OK, "bad.safetensors: no tensors (not a LoRA)");
    // A file that is not safetensors; the set is unchanged by a failing add.
    char dir[] = "/tmp/sim_lora_XXXXXX", path[64];
    CHECK(mkdtemp(dir) != NULL);
    snprintf(path, sizeof path, "%s/junk.safetensors", dir);
    sim_err err = {0};
    CHECK(file_write_all(path, "not a safetensors file", 22, &err) == SIM_OK);
    lora_set *s;
    CHECK(lora_set_new(&s, &err) == SIM_OK);
    CHECK_EQ_INT(lora_add(s, path, 1, &err), SIM_ERR_FORMAT);
    CHECK(strstr(err.msg, "junk.safetensors") != NULL);
    snprintf(path, sizeof path, "%s/none.safetensors", dir);
    CHECK_EQ_INT(lora_add(s, path, 1, &err), SIM_ERR_IO);
    CHECK(!lora_touches(s, LORA_UNET));
    // Up to LORA_MAX files.
    uint8_t *ka[LORA_MAX + 1];
    for (int i = 0; i < LORA_MAX; i++) CHECK(lora_add_file(s, lora_a(&ka[i]), 1, &err) == SIM_OK);
    CHECK_EQ_INT(lora_add_file(s, lora_a(&ka[LORA_MAX]), 1, &err), SIM_ERR_ARG);
    CHECK_STR(err.msg, "a.safetensors: more than 16 LoRAs at once");
    CHECK(lora_touches(s, LORA_UNET));
    lora_set_free(s);
    for (int i = 0; i <= LORA_MAX; i++) free(ka[i]);
    snprintf(path, sizeof path, "%s/junk.safetensors", dir);
    unlink(path);
    rmdir(dir);
}

// Every allocation failing in turn while adding, attaching and merging gives
// SIM_ERR_NOMEM (or success) and leaks nothing (the sanitizer build checks).
static void test_alloc_failures(void) {
    int nomem = 0, ok = 0;
    for (long k = 0; k < 40; k++) {
        uint8_t *kt, *ka;
        st_file *t = target_file(&kt), *a = lora_a(&ka);
        lora_set *s = NULL;
        sim_err err = {0};
        float got[6];
        mem_fail_after(k);
        sim_status st = lora_set_new(&s, &err);
        if (st == SIM_OK) st = lora_add_file(s, a, 0.5f, &err);
        else st_close(a);
        if (st == SIM_OK) st = lora_attach(s, LORA_UNET, t, &err);
        if (st == SIM_OK) {
            st = st_read_f32(t, "blk.attn1.to_q.weight", NULL, 0, got, &err);
            sim_status st2 = lora_detach(s, LORA_UNET, t, &err);
            if (st == SIM_OK) st = st2;
        }
        bool failed = mem_fail_triggered();
        mem_fail_after(-1);
        CHECK_MSG(st == SIM_OK || (failed && st == SIM_ERR_NOMEM), "k=%ld: %d (%s)", k, st, err.msg);
        if (st == SIM_OK) check_vals("merged", got, (const float[]){1.25f, 2.5f, 3, 3.75f, 5.25f, 6.25f}, 6);
        nomem += st == SIM_ERR_NOMEM, ok += st == SIM_OK;
        lora_set_free(s);
        st_close(t);
        free(kt), free(ka);
    }
    CHECK(nomem >= 5 && ok > 0);
}

// --- kohya names against micro-sd15's real tensors ------------------------------------------------

// Every 2-D or 4-D weight of `rel` (except embeddings) gets a rank-1 kohya
// module (prefix `pre`) whose update is the constant (i + 1) / 64 for the
// i-th weight: down all ones, up all (i + 1) / 64 (a linear 2-D LoRA for
// 1×1 convs). Attached, every weight must read as the original plus its
// constant; then the model loads with every module applied.
static void kohya_real(const char *rel, const char *pre, lora_part part) {
    char path[1024], cfg[1024];
    if (!test_shared_path(path, sizeof path, rel)) return;
    snprintf(cfg, sizeof cfg, "%.*sconfig.json", (int)(strrchr(path, '/') - path + 1), path);
    sim_err err = {0};
    st_file *t = NULL;
    CHECK_MSG(st_open(&t, path, &err) == SIM_OK, "%s", err.msg);
    if (!t) return;
    tw w = {0};
    float *ones = malloc(64 * 128 * 9 * sizeof *ones), *ups = malloc(512 * sizeof *ups);
    for (int i = 0; i < 64 * 128 * 9; i++) ones[i] = 1;
    int n = 0;
    for (int i = 0; i < t->n_tensors; i++) {
        const st_tensor *x = &t->tensors[i];
        size_t len = strlen(x->name);
        if ((x->n_dims != 2 && x->n_dims != 4) || strstr(x->name, "embedding") || strcmp(x->name + len - 7, ".weight") != 0) continue;
        char key[300], name[340];
        snprintf(key, sizeof key, "%s%.*s", pre, (int)len - 7, x->name);
        for (char *c = key; *c; c++) *c = *c == '.' ? '_' : *c;
        int64_t out = x->shape[0], in = x->shape[1];
        bool k1 = x->n_dims == 2 || (x->shape[2] == 1 && x->shape[3] == 1);
        for (int j = 0; j < out; j++) ups[j] = (float)(n + 1) / 64;
        snprintf(name, sizeof name, "%s.lora_down.weight", key);
        if (k1) tw_add(&w, name, "F32", WTS_SHAPE(1, in), ones);
        else tw_add(&w, name, "F32", WTS_SHAPE(1, in, x->shape[2], x->shape[3]), ones);
        snprintf(name, sizeof name, "%s.lora_up.weight", key);
        tw_add(&w, name, "F32", WTS_SHAPE(out, 1), ups);
        n++;
    }
    uint8_t *kl;
    lora_set *s;
    CHECK(lora_set_new(&s, &err) == SIM_OK);
    CHECK_MSG(lora_add_file(s, tw_open(&w, "real.safetensors", &kl), 1, &err) == SIM_OK, "%s", err.msg);
    st_file *t0 = NULL; // the same file without the hook: the original weights
    CHECK_MSG(st_open(&t0, path, &err) == SIM_OK, "%s", err.msg);
    CHECK_MSG(lora_attach(s, part, t, &err) == SIM_OK, "%s", err.msg);
    int k = 0, bad = 0;
    for (int i = 0; t0 && i < t->n_tensors; i++) {
        const st_tensor *x = &t->tensors[i];
        size_t len = strlen(x->name);
        if ((x->n_dims != 2 && x->n_dims != 4) || strstr(x->name, "embedding") || strcmp(x->name + len - 7, ".weight") != 0) continue;
        float *a = malloc((size_t)x->n_elem * sizeof *a), *b = malloc((size_t)x->n_elem * sizeof *b);
        read_w(t0, x->name, a);
        read_w(t, x->name, b);
        float d = (float)(k + 1) / 64;
        for (int64_t j = 0; j < x->n_elem; j++) bad += b[j] != a[j] + d;
        free(a), free(b);
        k++;
    }
    st_close(t0);
    CHECK_EQ_INT(bad, 0);
    CHECK_EQ_INT(k, n);
    CHECK_MSG(lora_detach(s, part, t, &err) == SIM_OK, "%s", err.msg);
    // The model itself reads every weight the LoRA patches.
    CHECK_MSG(lora_attach(s, part, t, &err) == SIM_OK, "%s", err.msg);
    sim_status st;
    if (part == LORA_UNET) {
        dif_unet_config c;
        unet *u = NULL;
        CHECK_MSG((st = dif_read_unet_config(&c, cfg, &err)) == SIM_OK, "%s", err.msg);
        if (st == SIM_OK) CHECK_MSG(unet_load(&u, &c, t, &err) == SIM_OK, "%s", err.msg);
        unet_free(u);
    } else {
        dif_clip_config c;
        clip_text *m = NULL;
        CHECK_MSG((st = dif_read_clip_config(&c, cfg, &err)) == SIM_OK, "%s", err.msg);
        if (st == SIM_OK) CHECK_MSG(clip_text_load(&m, &c, t, &err) == SIM_OK, "%s", err.msg);
        clip_text_free(m);
    }
    CHECK_MSG(lora_detach(s, part, t, &err) == SIM_OK, "%s", err.msg);
    printf("  %s: %d kohya modules resolved and merged\n", rel, n);
    lora_set_free(s);
    st_close(t);
    free(kl), free(ones), free(ups);
}

static void test_kohya_unet(void) { kohya_real("diffusion/micro-sd15/unet/diffusion_pytorch_model.safetensors", "lora_unet_", LORA_UNET); }
static void test_kohya_text(void) { kohya_real("diffusion/micro-sd15/text_encoder/model.safetensors", "lora_te_", LORA_TEXT); }

// --- prompt tags -----------------------------------------------------------------------------------

static void test_tags(void) {
    lora_tag tags[4];
    int n = -1;
    char *clean = NULL;
    sim_err err = {0};
    CHECK_MSG(lora_tags_parse("a <lora:style_v2:0.7> cat <lora: my lora > dog, <hypernet:x:1> <lora:z:-1.5e-1>", &clean, tags, 4, &n, &err) == SIM_OK, "%s", err.msg);
    CHECK_STR(clean, "a  cat  dog, <hypernet:x:1> ");
    CHECK_EQ_INT(n, 3);
    CHECK_STR(tags[0].name, "style_v2");
    CHECK(tags[0].weight == 0.7f);
    CHECK_STR(tags[1].name, "my lora");
    CHECK(tags[1].weight == 1);
    CHECK_STR(tags[2].name, "z");
    CHECK(tags[2].weight == -0.15f);
    mem_free(clean);
    CHECK(lora_tags_parse("plain", &clean, tags, 4, &n, &err) == SIM_OK);
    CHECK_STR(clean, "plain");
    CHECK_EQ_INT(n, 0);
    mem_free(clean);
    static const struct {
        const char *prompt, *msg;
    } BAD[] = {
        {"x <lora:a:1", "prompt: <lora: tag at byte 2 has no closing '>'"},
        {"<lora:../etc/x:1>", "prompt: <lora:...> tag at byte 0: bad name '../etc/x'"},
        {"<lora:a/b>", "bad name 'a/b'"},
        {"<lora::1>", "bad name ''"},
        {"<lora:a:x1>", "prompt: <lora:a:...> tag at byte 0: weight 'x1' is not a number from -100 to 100"},
        {"<lora:a:1:0.5>", "weight '1:0.5' is not"},
        {"<lora:a:>", "weight '' is not"},
        {"<lora:a:nan>", "weight 'nan' is not"},
        {"<lora:a:1e3>", "weight '1e3' is not"},
        {"<lora:a><lora:b><lora:c><lora:d><lora:e>", "prompt: more than 4 <lora:...> tags (at byte 32)"},
    };
    for (size_t i = 0; i < ARRAY_LEN(BAD); i++) {
        clean = (char *)1;
        CHECK_EQ_INT(lora_tags_parse(BAD[i].prompt, &clean, tags, 4, &n, &err), SIM_ERR_ARG);
        CHECK(clean == NULL);
        CHECK_MSG(strstr(err.msg, BAD[i].msg) != NULL, "'%s': '%s' lacks '%s'", BAD[i].prompt, err.msg, BAD[i].msg);
    }
    char path[32];
    CHECK(lora_path("dir", "x", path, sizeof path, &err) == SIM_OK);
    CHECK_STR(path, "dir/x.safetensors");
    CHECK_EQ_INT(lora_path("a-long-directory", "name", path, sizeof path, &err), SIM_ERR_ARG);
    // Allocation failures.
    for (long k = 0; k < 8; k++) {
        mem_fail_after(k);
        sim_status st = lora_tags_parse("a <lora:x:1> b", &clean, tags, 4, &n, &err);
        mem_fail_after(-1);
        CHECK(st == SIM_OK || st == SIM_ERR_NOMEM);
        if (st == SIM_OK) mem_free(clean);
    }
}

// --- end to end: <lora:x:0.7> in a micro-sd15 generation ---------------------------------------

// The test LoRA's modules, with their targets, as the merged copy applies them.
typedef struct e2e_mod {
    const char *key, *down, *up, *alpha; // tensor names in the LoRA file (alpha NULL: rank)
    const char *target;
    lora_part part;
    int rank;
    float a;
} e2e_mod;

static const e2e_mod E2E[] = {
    {"lora_unet_down_blocks_0_attentions_0_transformer_blocks_0_attn2_to_k", ".lora_down.weight", ".lora_up.weight", ".alpha",
     "down_blocks.0.attentions.0.transformer_blocks.0.attn2.to_k.weight", LORA_UNET, 2, 1},
    {"lora_unet_down_blocks_0_resnets_0_conv1", ".lora_down.weight", ".lora_up.weight", ".alpha", "down_blocks.0.resnets.0.conv1.weight", LORA_UNET, 2, 3},
    {"unet.mid_block.attentions.0.proj_in", ".lora_A.weight", ".lora_B.weight", NULL, "mid_block.attentions.0.proj_in.weight", LORA_UNET, 2, 2},
    {"lora_unet_up_blocks_1_attentions_0_transformer_blocks_0_ff_net_0_proj", ".lora_down.weight", ".lora_up.weight", ".alpha",
     "up_blocks.1.attentions.0.transformer_blocks.0.ff.net.0.proj.weight", LORA_UNET, 4, 8},
    {"lora_te_text_model_encoder_layers_0_self_attn_q_proj", ".lora_down.weight", ".lora_up.weight", ".alpha",
     "text_model.encoder.layers.0.self_attn.q_proj.weight", LORA_TEXT, 2, 1},
    {"text_encoder.text_model.encoder.layers.1.mlp.fc1", ".lora_A.weight", ".lora_B.weight", NULL, "text_model.encoder.layers.1.mlp.fc1.weight", LORA_TEXT, 2, 2},
};

typedef struct e2e {
    const st_file *src;          // the original weights
    float *down[ARRAY_LEN(E2E)], *up[ARRAY_LEN(E2E)];
    float w;
} e2e;

static uint64_t g_rng = 0x9e3779b97f4a7c15ull;
static float uniform(float a) { // in (-a, a)
    g_rng = g_rng * 6364136223846793005ull + 1442695040888963407ull;
    return a * (2.0f * (float)(g_rng >> 40) / (float)(1 << 24) - 1.0f);
}

// The test's own merge: tensor i of the original plus w · alpha / rank · up · down (in double).
static sim_status merged_fill(void *ud, int i, float *out, sim_err *err) {
    e2e *E = ud;
    const st_tensor *t = &E->src->tensors[i];
    sim_status st = st_read_f32(E->src, t->name, NULL, 0, out, err);
    for (size_t k = 0; st == SIM_OK && k < ARRAY_LEN(E2E); k++) {
        if (strcmp(E2E[k].target, t->name) != 0) continue;
        int64_t out_n = t->shape[0], K = t->n_elem / out_n;
        double scale = E->w * (double)E2E[k].a / E2E[k].rank;
        for (int64_t o = 0; o < out_n; o++)
            for (int64_t j = 0; j < K; j++) {
                double d = 0;
                for (int r = 0; r < E2E[k].rank; r++) d += (double)E->up[k][o * E2E[k].rank + r] * E->down[k][r * K + j];
                out[o * K + j] = (float)(out[o * K + j] + scale * d);
            }
    }
    return st;
}

// Writes the original file `from` merged with the test LoRA into `to`.
static void write_merged(e2e *E, const char *from, const char *to) {
    st_file *f = NULL;
    sim_err err = {0};
    CHECK_MSG(st_open(&f, from, &err) == SIM_OK, "%s", err.msg);
    if (!f) return;
    stw_entry *e = calloc((size_t)f->n_tensors, sizeof *e);
    for (int i = 0; i < f->n_tensors; i++) {
        snprintf(e[i].name, sizeof e[i].name, "%s", f->tensors[i].name);
        e[i].n_dims = f->tensors[i].n_dims;
        memcpy(e[i].shape, f->tensors[i].shape, sizeof e[i].shape);
    }
    E->src = f;
    CHECK_MSG(stw_write(to, e, f->n_tensors, ST_F32, NULL, merged_fill, E, &err) == SIM_OK, "%s", err.msg);
    free(e);
    st_close(f);
}

static void run(sd_model *m, const op_ctx *c, sd_params *p, const char *prompt, float *lat, sim_status want) {
    static float img[3 * 16 * 16];
    sim_err err = {0};
    p->prompt = prompt;
    sim_status st = sd_generate(m, c, p, img, lat, &err);
    CHECK_MSG(st == want, "'%s': %d (%s), expected %d", prompt, st, err.msg, want);
}

static void test_generate(void) {
    char rel[1024], dir[PATH_MAX];
    if (!test_shared_path(rel, sizeof rel, "diffusion/micro-sd15")) return;
    CHECK(realpath(rel, dir) != NULL); // for the links
    char tmp[] = "/tmp/sim_lora_e2e_XXXXXX", path[PATH_MAX + 100], from[PATH_MAX + 100], cmd[6 * PATH_MAX];
    CHECK(mkdtemp(tmp) != NULL);
    // The LoRA: random up and down for each module.
    e2e E = {.w = 0.7f};
    tw w = {0};
    st_file *ft = NULL, *fu = NULL;
    sim_err err = {0};
    snprintf(path, sizeof path, "%s/text_encoder/model.safetensors", dir);
    CHECK(st_open(&ft, path, &err) == SIM_OK);
    snprintf(path, sizeof path, "%s/unet/diffusion_pytorch_model.safetensors", dir);
    CHECK(st_open(&fu, path, &err) == SIM_OK);
    if (!ft || !fu) return;
    for (size_t k = 0; k < ARRAY_LEN(E2E); k++) {
        const st_tensor *t = st_find(E2E[k].part == LORA_UNET ? fu : ft, E2E[k].target);
        CHECK(t != NULL);
        if (!t) return;
        int r = E2E[k].rank;
        int64_t out = t->shape[0], K = t->n_elem / out;
        E.down[k] = malloc((size_t)(r * K) * sizeof(float));
        E.up[k] = malloc((size_t)(out * r) * sizeof(float));
        for (int64_t i = 0; i < r * K; i++) E.down[k][i] = uniform(0.2f);
        for (int64_t i = 0; i < out * r; i++) E.up[k][i] = uniform(0.2f);
        char name[200];
        int64_t dshape[4] = {r, t->shape[1], t->n_dims == 4 ? t->shape[2] : 1, t->n_dims == 4 ? t->shape[3] : 1}, ushape[4] = {out, r, 1, 1};
        snprintf(name, sizeof name, "%s%s", E2E[k].key, E2E[k].down);
        tw_add(&w, name, "F32", t->n_dims, dshape, E.down[k]);
        snprintf(name, sizeof name, "%s%s", E2E[k].key, E2E[k].up);
        tw_add(&w, name, "F32", t->n_dims, ushape, E.up[k]);
        if (E2E[k].alpha) {
            snprintf(name, sizeof name, "%s%s", E2E[k].key, E2E[k].alpha);
            tw_add(&w, name, "F32", 0, NULL, &E2E[k].a);
        }
    }
    st_close(ft), st_close(fu);
    snprintf(path, sizeof path, "%s/x.safetensors", tmp);
    tw_write(&w, path);
    // The merged copy: the test's own merge of the two files, the rest linked.
    snprintf(cmd, sizeof cmd, "mkdir -p %s/m/unet %s/m/text_encoder && ln -s %s/model_index.json %s/tokenizer %s/vae %s/m/ && "
             "ln -s %s/unet/config.json %s/m/unet/ && ln -s %s/text_encoder/config.json %s/m/text_encoder/", tmp, tmp, dir, dir, dir, tmp, dir, tmp, dir, tmp);
    CHECK(system(cmd) == 0);
    snprintf(from, sizeof from, "%s/unet/diffusion_pytorch_model.safetensors", dir);
    snprintf(path, sizeof path, "%s/m/unet/diffusion_pytorch_model.safetensors", tmp);
    write_merged(&E, from, path);
    snprintf(from, sizeof from, "%s/text_encoder/model.safetensors", dir);
    snprintf(path, sizeof path, "%s/m/text_encoder/model.safetensors", tmp);
    write_merged(&E, from, path);
    // Generations.
    sd_model *m = NULL, *mm = NULL;
    CHECK_MSG(sd_load(&m, dir, &err) == SIM_OK, "%s", err.msg);
    snprintf(path, sizeof path, "%s/m", tmp);
    CHECK_MSG(sd_load(&mm, path, &err) == SIM_OK, "%s", err.msg);
    pool *pl = NULL;
    CHECK(pool_new(&pl, 2, &err) == SIM_OK);
    if (m && mm && pl) {
        op_ctx c = {.pool = pl, .k = kern_get(KERN_BEST)};
        sd_params p = sd_defaults();
        p.width = p.height = 16, p.steps = 3, p.seed = 7, p.lora_dir = tmp;
        static float base[256], lora[256], merged[256], again[256]; // (4, 8, 8)
        run(m, &c, &p, "cat ears, happy", base, SIM_OK);
        run(m, &c, &p, "cat ears, happy<lora:x:0.7>", lora, SIM_OK);
        run(mm, &c, &p, "cat ears, happy", merged, SIM_OK);
        double d = test_compare_rel("<lora:x:0.7> vs the test's merged copy", lora, merged, 256, 1e-4), change = 0, peak = 0;
        for (int i = 0; i < 256; i++) change = fmax(change, fabs(lora[i] - base[i])), peak = fmax(peak, fabs(base[i]));
        printf("  the LoRA changes the latent by %.3g (max |latent| %.3g); merged copy differs by %.2g of it\n", change, peak, d);
        CHECK(change > 0.05 * peak);
        // The same tags again: nothing reloads (the file is gone and it still works), same result.
        snprintf(path, sizeof path, "%s/x.safetensors", tmp);
        CHECK(unlink(path) == 0);
        run(m, &c, &p, "cat ears, happy <lora: x :0.70>", again, SIM_OK);
        CHECK(memcmp(again, lora, sizeof lora) == 0);
        // Another weight needs the file: refused, the model unchanged.
        run(m, &c, &p, "cat ears, happy<lora:x:0.5>", again, SIM_ERR_IO);
        run(m, &c, &p, "cat ears, happy<lora:x:0.7>", again, SIM_OK);
        CHECK(memcmp(again, lora, sizeof lora) == 0);
        // No tags: the original weights, bit for bit.
        run(m, &c, &p, "cat ears, happy", again, SIM_OK);
        CHECK(memcmp(again, base, sizeof base) == 0);
        // A LoRA whose U-Net part merges (the U-Net is read first) but whose
        // text encoder part fits no weight: refused naming the key, the
        // model kept as it was.
        static const float d2[2 * 64] = {0.5f}, u2[64 * 2] = {0.5f};
        TW_ADD(&w, "lora_unet_mid_block_attentions_0_proj_in.lora_down.weight", "F32", d2, 2, 64);
        TW_ADD(&w, "lora_unet_mid_block_attentions_0_proj_in.lora_up.weight", "F32", u2, 64, 2);
        TW_ADD(&w, "lora_te_text_model_encoder_layers_0_self_attn_q_proj.lora_down.weight", "F32", d2, 2, 32);
        TW_ADD(&w, "lora_te_text_model_encoder_layers_0_self_attn_q_proj.lora_up.weight", "F32", u2, 64, 2);
        snprintf(path, sizeof path, "%s/bad.safetensors", tmp);
        tw_write(&w, path);
        static float img[3 * 16 * 16];
        p.prompt = "cat ears, happy<lora:bad>";
        CHECK_EQ_INT(sd_generate(m, &c, &p, img, again, &err), SIM_ERR_FORMAT);
        CHECK_MSG(strstr(err.msg, "bad.safetensors: LoRA module 'lora_te_text_model_encoder_layers_0_self_attn_q_proj' (up [64, 2], down [2, 32]) "
                                  "does not fit 'text_model.encoder.layers.0.self_attn.q_proj.weight' [32, 32]") != NULL, "%s", err.msg);
        run(m, &c, &p, "cat ears, happy", again, SIM_OK);
        CHECK(memcmp(again, base, sizeof base) == 0);
        p.lora_dir = NULL;
        run(m, &c, &p, "cat ears, happy<lora:x:0.7>", again, SIM_ERR_ARG);
        run(m, &c, &p, "cat ears, happy<lora:x:0.7", again, SIM_ERR_ARG);
    }
    pool_free(pl);
    sd_free(m);
    sd_free(mm);
    for (size_t k = 0; k < ARRAY_LEN(E2E); k++) free(E.down[k]), free(E.up[k]);
    snprintf(cmd, sizeof cmd, "rm -rf %s", tmp);
    CHECK(system(cmd) == 0);
}

int main(int argc, char **argv) {
    test_init(argc, argv);
    TEST_RUN(test_merge_linear_two);
    TEST_RUN(test_merge_conv_loha_old_names);
    TEST_RUN(test_refusals);
    TEST_RUN(test_alloc_failures);
    TEST_RUN(test_kohya_unet);
    TEST_RUN(test_kohya_text);
    TEST_RUN(test_tags);
    TEST_RUN(test_generate);
    return test_finish();
}
