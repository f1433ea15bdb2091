// vae.c — AutoencoderKL: weight binding, encoder and decoder (see vae.h).
#include "image/vae.h"

#include <stdio.h>
#include <string.h>

#include "image/resblock.h"
#include "image/wts.h"

#define VAE_EPS 1e-6f

typedef struct vae_attn {
    int C;
    float *gn_g, *gn_b;   // (C)
    op_mat qkv_w;         // (3C, C): q, k, v stacked
    float *qkv_b;         // (3C)
    op_mat out_w;         // (C, C)
    float *out_b;         // (C)
} vae_attn;

typedef struct vae_conv {
    op_conv p;
    op_mat w;  // (cout, cin, k, k)
    float *b;  // (cout)
} vae_conv;

struct vae {
    dif_vae_config cfg;
    void *weights, *enc_weights;                      // the arenas of the decoder and of the encoder (or NULL)
    // encoder
    vae_conv enc_in;                                  // in_ch → ch[0]
    rb_block *enc_res;                              // (n_blocks * layers_per_block)
    vae_conv enc_down[DIF_MAX_BLOCKS];                // stride 2, (n_blocks - 1)
    rb_block enc_mid[2];
    vae_attn enc_attn;
    float *enc_no_g, *enc_no_b;                       // (ch[-1])
    vae_conv enc_out;                                 // ch[-1] → 2·latent
    vae_conv quant;                                   // 1×1, 2·latent → 2·latent
    // decoder
    vae_conv post_quant;                              // 1×1, latent → latent
    vae_conv dec_in;                                  // latent → ch[-1]
    rb_block dec_mid[2];
    vae_attn dec_attn;
    rb_block *dec_res;                              // (n_blocks * (layers_per_block + 1))
    vae_conv dec_up[DIF_MAX_BLOCKS];                  // (n_blocks - 1)
    float *dec_no_g, *dec_no_b;                       // (ch[0])
    vae_conv dec_out;                                 // ch[0] → out_ch
};

struct vae_work {
    int lh, lw;
    size_t n_act;          // floats in each of a, b, t
    float *a, *b, *t;      // activations (C, H, W), the largest stage
    float *qkv, *att;      // mid-block attention, token-major (HW, 3C), (HW, C)
    float *scratch;        // GEMM packing and attention tiles
    size_t scratch_cap;
};

// --- binding -----------------------------------------------------------------------------

static void take_conv(wts_loader *L, vae_conv *c, int cin, int cout, int k, int stride, const char *name) {
    int pad = k / 2;
    c->p = (op_conv){cin, cout, k, k, stride, pad, pad, pad, pad, false};
    if (stride == 2) c->p = (op_conv){cin, cout, k, k, 2, 0, 0, 1, 1, false}; // diffusers pads (0, 1, 0, 1)
    wts_take_mat(L, &c->w, WTS_SHAPE(cout, cin, k, k), "%s.weight", name);
    wts_take(L, &c->b, WTS_SHAPE(cout), "%s.bias", name);
}

static void take_attn(wts_loader *L, vae_attn *a, int C, const char *name) {
    float *tmp;
    char q[3][200];
    a->C = C;
    wts_take(L, &a->gn_g, WTS_SHAPE(C), "%s.group_norm.weight", name);
    wts_take(L, &a->gn_b, WTS_SHAPE(C), "%s.group_norm.bias", name);
    for (int i = 0; i < 3; i++) snprintf(q[i], sizeof q[i], "%s.to_%c.weight", name, "qkv"[i]);
    wts_take_stack(L, &a->qkv_w, 3, WTS_SHAPE(C, C), (const char *const[]){q[0], q[1], q[2]});
    wts_take(L, &a->qkv_b, WTS_SHAPE(C), "%s.to_q.bias", name);
    wts_take(L, &tmp, WTS_SHAPE(C), "%s.to_k.bias", name);
    wts_take(L, &tmp, WTS_SHAPE(C), "%s.to_v.bias", name);
    wts_take_mat(L, &a->out_w, WTS_SHAPE(C, C), "%s.to_out.0.weight", name);
    wts_take(L, &a->out_b, WTS_SHAPE(C), "%s.to_out.0.bias", name);
}

static void bind_encoder(wts_loader *L, void *ud) {
    vae *v = ud;
    const dif_vae_config *c = &v->cfg;
    int n = c->n_blocks, lpb = c->layers_per_block, top = c->block_out[n - 1];
    char name[128];
    take_conv(L, &v->enc_in, c->in_ch, c->block_out[0], 3, 1, "encoder.conv_in");
    for (int i = 0; i < n; i++) {
        for (int j = 0; j < lpb; j++) {
            snprintf(name, sizeof name, "encoder.down_blocks.%d.resnets.%d", i, j);
            rb_take(L, &v->enc_res[i * lpb + j], j ? c->block_out[i] : c->block_out[i ? i - 1 : 0], c->block_out[i], 0, name);
        }
        if (i + 1 < n) {
            snprintf(name, sizeof name, "encoder.down_blocks.%d.downsamplers.0.conv", i);
            take_conv(L, &v->enc_down[i], c->block_out[i], c->block_out[i], 3, 2, name);
        }
    }
    rb_take(L, &v->enc_mid[0], top, top, 0, "encoder.mid_block.resnets.0");
    take_attn(L, &v->enc_attn, top, "encoder.mid_block.attentions.0");
    rb_take(L, &v->enc_mid[1], top, top, 0, "encoder.mid_block.resnets.1");
    wts_take(L, &v->enc_no_g, WTS_SHAPE(top), "encoder.conv_norm_out.weight");
    wts_take(L, &v->enc_no_b, WTS_SHAPE(top), "encoder.conv_norm_out.bias");
    take_conv(L, &v->enc_out, top, 2 * c->latent_ch, 3, 1, "encoder.conv_out");
    take_conv(L, &v->quant, 2 * c->latent_ch, 2 * c->latent_ch, 1, 1, "quant_conv");
}

static void bind_decoder(wts_loader *L, void *ud) {
    vae *v = ud;
    const dif_vae_config *c = &v->cfg;
    int n = c->n_blocks, lpb = c->layers_per_block, top = c->block_out[n - 1];
    char name[128];
    take_conv(L, &v->post_quant, c->latent_ch, c->latent_ch, 1, 1, "post_quant_conv");
    take_conv(L, &v->dec_in, c->latent_ch, top, 3, 1, "decoder.conv_in");
    rb_take(L, &v->dec_mid[0], top, top, 0, "decoder.mid_block.resnets.0");
    take_attn(L, &v->dec_attn, top, "decoder.mid_block.attentions.0");
    rb_take(L, &v->dec_mid[1], top, top, 0, "decoder.mid_block.resnets.1");
    int prev = top;
    for (int i = 0; i < n; i++) {
        int ch = c->block_out[n - 1 - i];
        for (int j = 0; j <= lpb; j++) {
            snprintf(name, sizeof name, "decoder.up_blocks.%d.resnets.%d", i, j);
            rb_take(L, &v->dec_res[i * (lpb + 1) + j], j ? ch : prev, ch, 0, name);
        }
        if (i + 1 < n) {
            snprintf(name, sizeof name, "decoder.up_blocks.%d.upsamplers.0.conv", i);
            take_conv(L, &v->dec_up[i], ch, ch, 3, 1, name);
        }
        prev = ch;
    }
    wts_take(L, &v->dec_no_g, WTS_SHAPE(c->block_out[0]), "decoder.conv_norm_out.weight");
    wts_take(L, &v->dec_no_b, WTS_SHAPE(c->block_out[0]), "decoder.conv_norm_out.bias");
    take_conv(L, &v->dec_out, c->block_out[0], c->out_ch, 3, 1, "decoder.conv_out");
}

void vae_free(vae *v) {
    if (!v) return;
    mem_free(v->weights);
    mem_free(v->enc_weights);
    mem_free(v->enc_res);
    mem_free(v->dec_res);
    mem_free(v);
}

sim_status vae_load_decoder(vae **out, const dif_vae_config *cfg, const st_file *f, sim_err *err) {
    *out = NULL;
    vae *v = mem_calloc(1, sizeof *v);
    if (!v) return err_set(err, SIM_ERR_NOMEM, "out of memory loading the VAE");
    v->cfg = *cfg;
    v->enc_res = mem_calloc((size_t)cfg->n_blocks * (size_t)cfg->layers_per_block, sizeof *v->enc_res);
    v->dec_res = mem_calloc((size_t)cfg->n_blocks * (size_t)(cfg->layers_per_block + 1), sizeof *v->dec_res);
    if (!v->enc_res || !v->dec_res) {
        vae_free(v);
        return err_set(err, SIM_ERR_NOMEM, "out of memory loading the VAE");
    }
    sim_status rc = wts_load(f, "", bind_decoder, v, &v->weights, err);
    if (rc) {
        vae_free(v);
        return rc;
    }
    *out = v;
    return SIM_OK;
}

sim_status vae_load_encoder(vae *v, const st_file *f, sim_err *err) {
    return v->enc_weights ? SIM_OK : wts_load(f, "", bind_encoder, v, &v->enc_weights, err);
}

bool vae_has_encoder(const vae *v) { return v->enc_weights != NULL; }

sim_status vae_load(vae **out, const dif_vae_config *cfg, const st_file *f, sim_err *err) {
    sim_status st = vae_load_decoder(out, cfg, f, err);
    if (st == SIM_OK && (st = vae_load_encoder(*out, f, err)) != SIM_OK) {
        vae_free(*out);
        *out = NULL;
    }
    return st;
}

int vae_factor(const vae *v) { return 1 << (v->cfg.n_blocks - 1); }

// --- buffers --------------------------------------------------------------------------------

sim_status vae_work_new(vae_work **out, const vae *v, int lh, int lw, sim_err *err) {
    *out = NULL;
    const dif_vae_config *c = &v->cfg;
    int n = c->n_blocks, f = vae_factor(v);
    if (lh < 1 || lw < 1 || lh > 4096 / f || lw > 4096 / f)
        return err_set(err, SIM_ERR_RANGE, "latent %d x %d (1 to %d per side)", lh, lw, 4096 / f);
    // The largest (channels × pixels) any stage holds, on either side.
    size_t big = 0;
    for (int i = 0; i < n; i++) {
        size_t hw = (size_t)(lh << (n - 1 - i)) * (size_t)(lw << (n - 1 - i)); // resolution of encoder block i
        int cin = i ? c->block_out[i - 1] : c->block_out[0];
        big = MAX(big, (size_t)MAX(MAX(cin, c->block_out[i]), MAX(c->in_ch, c->out_ch)) * hw);
        // decoder block n-1-i runs at this resolution with input channels block_out[i+1] (or the top)
        int dprev = i + 1 < n ? c->block_out[i + 1] : c->block_out[n - 1];
        big = MAX(big, (size_t)MAX(dprev, c->block_out[i]) * hw);
    }
    size_t hw_mid = (size_t)lh * lw, top = (size_t)c->block_out[n - 1];
    size_t scratch = MAX(op_gemm_scratch(POOL_MAX_THREADS), op_attention_scratch(&(op_attn){.d = (int)top}, POOL_MAX_THREADS));
    size_t total = 3 * big + 4 * top * hw_mid + scratch;
    vae_work *w = mem_calloc(1, sizeof *w);
    float *buf = w ? mem_alloc(total * sizeof(float)) : NULL;
    if (!buf) {
        mem_free(w);
        return err_set(err, SIM_ERR_NOMEM, "out of memory for VAE buffers (%zu MB)", total * 4 >> 20);
    }
    w->lh = lh, w->lw = lw, w->n_act = big;
    w->a = buf, w->b = buf + big, w->t = buf + 2 * big;
    w->qkv = buf + 3 * big, w->att = w->qkv + 3 * top * hw_mid;
    w->scratch = w->att + top * hw_mid, w->scratch_cap = scratch;
    *out = w;
    return SIM_OK;
}

void vae_work_free(vae_work *w) {
    if (!w) return;
    mem_free(w->a);
    mem_free(w);
}

// --- blocks ---------------------------------------------------------------------------------

static void conv(op_ctx *c, float *y, const float *x, const vae_conv *k, int h, int w) {
    op_conv2d(c, y, x, &k->p, h, w, k->w, k->b);
}

// y = x + attention(groupnorm(x)), one head over the hw pixels.
static void attention(op_ctx *c, vae_work *wk, int G, float *y, const float *x, float *t, const vae_attn *a, int hw) {
    int C = a->C;
    op_group_norm(c, t, x, C, hw, G, VAE_EPS, a->gn_g, a->gn_b, false);
    op_transpose(c, y, t, C, hw); // (hw, C)
    op_linear(c, wk->qkv, y, a->qkv_w, a->qkv_b, hw, C, 3 * C);
    op_attn at = {.Tq = hw, .Tk = hw, .n_head = 1, .d = C, .ldq = 3 * C, .ldk = 3 * C, .ldv = 3 * C, .ldo = C};
    op_attention(c, wk->att, wk->qkv, wk->qkv + C, wk->qkv + 2 * C, &at);
    op_linear(c, t, wk->att, a->out_w, a->out_b, hw, C, C);
    op_transpose(c, y, t, hw, C); // back to (C, hw)
    op_add(y, y, x, (size_t)C * hw);
}

static void swap(float **a, float **b) {
    float *t = *a;
    *a = *b;
    *b = t;
}

sim_status vae_decode(const vae *v, vae_work *wk, const op_ctx *cin, const float *z, int lh, int lw, float *image, sim_err *err) {
    const dif_vae_config *cf = &v->cfg;
    if (lh < 1 || lw < 1 || lh > wk->lh || lw > wk->lw)
        return err_set(err, SIM_ERR_RANGE, "latent %d x %d does not fit the buffers (up to %d x %d)", lh, lw, wk->lh, wk->lw);
    op_ctx c = *cin;
    c.scratch = wk->scratch;
    c.scratch_cap = wk->scratch_cap;
    int G = cf->groups, n = cf->n_blocks, lpb = cf->layers_per_block, h = lh, w = lw;
    float *x = wk->a, *y = wk->b, *t = wk->t;
    conv(&c, t, z, &v->post_quant, h, w);
    conv(&c, x, t, &v->dec_in, h, w);
    rb_forward(&c, &v->dec_mid[0], G, VAE_EPS, y, x, t, NULL, NULL, h, w);
    attention(&c, wk, G, x, y, t, &v->dec_attn, h * w);
    rb_forward(&c, &v->dec_mid[1], G, VAE_EPS, y, x, t, NULL, NULL, h, w);
    swap(&x, &y);
    for (int i = 0; i < n; i++) {
        for (int j = 0; j <= lpb; j++) {
            rb_forward(&c, &v->dec_res[i * (lpb + 1) + j], G, VAE_EPS, y, x, t, NULL, NULL, h, w);
            swap(&x, &y);
        }
        if (i + 1 < n) {
            int ch = cf->block_out[n - 1 - i];
            op_upsample2x(&c, t, x, ch, h, w);
            h *= 2, w *= 2;
            conv(&c, x, t, &v->dec_up[i], h, w);
        }
    }
    op_group_norm(&c, t, x, cf->block_out[0], h * w, G, VAE_EPS, v->dec_no_g, v->dec_no_b, true);
    conv(&c, image, t, &v->dec_out, h, w);
    return SIM_OK;
}

sim_status vae_encode(const vae *v, vae_work *wk, const op_ctx *cin, const float *image, int H, int W, float *moments, sim_err *err) {
    const dif_vae_config *cf = &v->cfg;
    int f = vae_factor(v);
    if (!v->enc_weights) return err_set(err, SIM_ERR_ARG, "the VAE was loaded without its encoder");
    if (H < f || W < f || H % f || W % f) return err_set(err, SIM_ERR_ARG, "image %d x %d: sides must be multiples of %d", H, W, f);
    if (H / f > wk->lh || W / f > wk->lw)
        return err_set(err, SIM_ERR_RANGE, "image %d x %d is larger than the buffers (%d x %d)", H, W, wk->lh * f, wk->lw * f);
    op_ctx c = *cin;
    c.scratch = wk->scratch;
    c.scratch_cap = wk->scratch_cap;
    int G = cf->groups, n = cf->n_blocks, lpb = cf->layers_per_block, h = H, w = W, top = cf->block_out[n - 1];
    float *x = wk->a, *y = wk->b, *t = wk->t;
    conv(&c, x, image, &v->enc_in, h, w);
    for (int i = 0; i < n; i++) {
        for (int j = 0; j < lpb; j++) {
            rb_forward(&c, &v->enc_res[i * lpb + j], G, VAE_EPS, y, x, t, NULL, NULL, h, w);
            swap(&x, &y);
        }
        if (i + 1 < n) {
            conv(&c, y, x, &v->enc_down[i], h, w);
            h /= 2, w /= 2;
            swap(&x, &y);
        }
    }
    rb_forward(&c, &v->enc_mid[0], G, VAE_EPS, y, x, t, NULL, NULL, h, w);
    attention(&c, wk, G, x, y, t, &v->enc_attn, h * w);
    rb_forward(&c, &v->enc_mid[1], G, VAE_EPS, y, x, t, NULL, NULL, h, w);
    op_group_norm(&c, t, y, top, h * w, G, VAE_EPS, v->enc_no_g, v->enc_no_b, true);
    conv(&c, x, t, &v->enc_out, h, w);
    conv(&c, moments, x, &v->quant, h, w);
    return SIM_OK;
}
