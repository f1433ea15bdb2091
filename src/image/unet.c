// unet.c — UNet2DConditionModel: weight binding and the forward pass (see unet.h).
#include "image/unet.h"

#include <math.h>
#include <stdio.h>
#include <string.h>

#include "image/resblock.h"
#include "image/wts.h"

#define TF_GN_EPS 1e-6f // Transformer2DModel's GroupNorm
#define LN_EPS 1e-5f

typedef struct u_tblock {
    float *n1_g, *n1_b, *o1_b;          // (C) ×3
    op_mat qkv_w, o1_w;                 // self-attention: (3C, C) stacked, no bias; (C, C)
    float *n2_g, *n2_b, *o2_b;          // (C) ×3
    op_mat q2_w, kv2_w, o2_w;           // cross: q (C, C), k v (2C, cross) stacked, (C, C)
    float *n3_g, *n3_b, *ff1_b, *ff2_b; // (C) ×2, (8C), (C)
    op_mat ff1_w, ff2_w;                // GEGLU (8C, C); (C, 4C)
} u_tblock;

typedef struct u_transformer {
    int C, heads;
    float *gn_g, *gn_b, *pin_b, *pout_b;    // (C)
    op_mat pin_w, pout_w;                   // (C, C) as linear layers
    u_tblock *blocks;                       // (transformer_layers)
} u_transformer;

typedef struct u_conv {
    op_conv p;
    op_mat w;  // (cout, cin, k, k)
    float *b;  // (cout)
} u_conv;

struct unet {
    dif_unet_config cfg;
    void *weights;                            // the arena everything below points into
    int temb_dim;                             // 4·c0
    op_mat t1_w, t2_w;                        // (4c0, c0), (4c0, 4c0)
    float *t1_b, *t2_b;                       // (4c0) ×2
    u_conv conv_in, conv_out;
    float *no_g, *no_b;
    rb_block *down_res;                       // (n_blocks * lpb)
    u_transformer *down_tf;                   // (n_blocks * lpb), .C = 0 when absent
    u_conv down_conv[DIF_MAX_BLOCKS];
    rb_block mid_res[2];
    u_transformer mid_tf;
    rb_block *up_res;                         // (n_blocks * (lpb + 1))
    u_transformer *up_tf;
    u_conv up_conv[DIF_MAX_BLOCKS];
    u_tblock *tblocks;                        // every transformer's blocks
};

struct unet_work {
    int lh, lw, n_ctx;
    float *x, *y, *t;                         // channel-major activations
    float *res;                               // kept down-path outputs
    float *s, *h, *att, *qkv, *ff, *kv;       // token-major transformer buffers
    float *temb, *temb_act, *tproj, *tsin;
    float *scratch;
    size_t scratch_cap;
};

// --- binding ----------------------------------------------------------------------------------

static void take_conv(wts_loader *L, u_conv *c, int cin, int cout, int k, int stride, const char *name) {
    c->p = (op_conv){cin, cout, k, k, stride, k / 2, k / 2, k / 2, k / 2, false};
    wts_take_mat(L, &c->w, WTS_SHAPE(cout, cin, k, k), "%s.weight", name);
    wts_take(L, &c->b, WTS_SHAPE(cout), "%s.bias", name);
}

static void take_tf(wts_loader *L, const dif_unet_config *cf, u_transformer *t, u_tblock *blocks, int C, int heads, const char *name) {
    t->C = C, t->heads = heads, t->blocks = blocks;
    wts_take(L, &t->gn_g, WTS_SHAPE(C), "%s.norm.weight", name);
    wts_take(L, &t->gn_b, WTS_SHAPE(C), "%s.norm.bias", name);
    if (cf->linear_proj) wts_take_mat(L, &t->pin_w, WTS_SHAPE(C, C), "%s.proj_in.weight", name);
    else wts_take_mat(L, &t->pin_w, WTS_SHAPE(C, C, 1, 1), "%s.proj_in.weight", name);
    wts_take(L, &t->pin_b, WTS_SHAPE(C), "%s.proj_in.bias", name);
    for (int b = 0; b < cf->transformer_layers; b++) {
        u_tblock *k = &blocks[b];
        char p[160], q[3][200];
        snprintf(p, sizeof p, "%s.transformer_blocks.%d", name, b);
        wts_take(L, &k->n1_g, WTS_SHAPE(C), "%s.norm1.weight", p);
        wts_take(L, &k->n1_b, WTS_SHAPE(C), "%s.norm1.bias", p);
        for (int i = 0; i < 3; i++) snprintf(q[i], sizeof q[i], "%s.attn1.to_%c.weight", p, "qkv"[i]);
        wts_take_stack(L, &k->qkv_w, 3, WTS_SHAPE(C, C), (const char *const[]){q[0], q[1], q[2]});
        wts_take_mat(L, &k->o1_w, WTS_SHAPE(C, C), "%s.attn1.to_out.0.weight", p);
        wts_take(L, &k->o1_b, WTS_SHAPE(C), "%s.attn1.to_out.0.bias", p);
        wts_take(L, &k->n2_g, WTS_SHAPE(C), "%s.norm2.weight", p);
        wts_take(L, &k->n2_b, WTS_SHAPE(C), "%s.norm2.bias", p);
        wts_take_mat(L, &k->q2_w, WTS_SHAPE(C, C), "%s.attn2.to_q.weight", p);
        for (int i = 0; i < 2; i++) snprintf(q[i], sizeof q[i], "%s.attn2.to_%c.weight", p, "kv"[i]);
        wts_take_stack(L, &k->kv2_w, 2, WTS_SHAPE(C, cf->cross_dim), (const char *const[]){q[0], q[1]});
        wts_take_mat(L, &k->o2_w, WTS_SHAPE(C, C), "%s.attn2.to_out.0.weight", p);
        wts_take(L, &k->o2_b, WTS_SHAPE(C), "%s.attn2.to_out.0.bias", p);
        wts_take(L, &k->n3_g, WTS_SHAPE(C), "%s.norm3.weight", p);
        wts_take(L, &k->n3_b, WTS_SHAPE(C), "%s.norm3.bias", p);
        wts_take_mat(L, &k->ff1_w, WTS_SHAPE(8 * C, C), "%s.ff.net.0.proj.weight", p);
        wts_take(L, &k->ff1_b, WTS_SHAPE(8 * C), "%s.ff.net.0.proj.bias", p);
        wts_take_mat(L, &k->ff2_w, WTS_SHAPE(C, 4 * C), "%s.ff.net.2.weight", p);
        wts_take(L, &k->ff2_b, WTS_SHAPE(C), "%s.ff.net.2.bias", p);
    }
    if (cf->linear_proj) wts_take_mat(L, &t->pout_w, WTS_SHAPE(C, C), "%s.proj_out.weight", name);
    else wts_take_mat(L, &t->pout_w, WTS_SHAPE(C, C, 1, 1), "%s.proj_out.weight", name);
    wts_take(L, &t->pout_b, WTS_SHAPE(C), "%s.proj_out.bias", name);
}

static void bind(wts_loader *L, void *ud) {
    unet *u = ud;
    const dif_unet_config *c = &u->cfg;
    int n = c->n_blocks, lpb = c->layers_per_block, c0 = c->block_out[0], T = u->temb_dim, nt = c->transformer_layers;
    u_tblock *tb = u->tblocks;
    char name[128];
    wts_take_mat(L, &u->t1_w, WTS_SHAPE(T, c0), "time_embedding.linear_1.weight");
    wts_take(L, &u->t1_b, WTS_SHAPE(T), "time_embedding.linear_1.bias");
    wts_take_mat(L, &u->t2_w, WTS_SHAPE(T, T), "time_embedding.linear_2.weight");
    wts_take(L, &u->t2_b, WTS_SHAPE(T), "time_embedding.linear_2.bias");
    take_conv(L, &u->conv_in, c->in_ch, c0, 3, 1, "conv_in");
    int ch = c0;
    for (int i = 0; i < n; i++) {
        for (int j = 0; j < lpb; j++) {
            snprintf(name, sizeof name, "down_blocks.%d.resnets.%d", i, j);
            rb_take(L, &u->down_res[i * lpb + j], j ? c->block_out[i] : ch, c->block_out[i], T, name);
            u->down_tf[i * lpb + j].C = 0;
            if (c->down[i] == DIF_BLOCK_CROSSATTN) {
                snprintf(name, sizeof name, "down_blocks.%d.attentions.%d", i, j);
                take_tf(L, c, &u->down_tf[i * lpb + j], tb, c->block_out[i], c->n_heads[i], name);
                tb += nt;
            }
        }
        ch = c->block_out[i];
        if (i + 1 < n) {
            snprintf(name, sizeof name, "down_blocks.%d.downsamplers.0.conv", i);
            take_conv(L, &u->down_conv[i], ch, ch, 3, 2, name);
        }
    }
    int top = c->block_out[n - 1];
    if (c->mid_block) {
        rb_take(L, &u->mid_res[0], top, top, T, "mid_block.resnets.0");
        take_tf(L, c, &u->mid_tf, tb, top, c->n_heads[n - 1], "mid_block.attentions.0");
        tb += nt;
        rb_take(L, &u->mid_res[1], top, top, T, "mid_block.resnets.1");
    }
    int prev = top;
    for (int i = 0; i < n; i++) {
        int lvl = n - 1 - i, out = c->block_out[lvl], in = c->block_out[lvl ? lvl - 1 : 0];
        for (int j = 0; j <= lpb; j++) {
            int skip = j == lpb ? in : out, rin = j ? out : prev;
            snprintf(name, sizeof name, "up_blocks.%d.resnets.%d", i, j);
            rb_take(L, &u->up_res[i * (lpb + 1) + j], rin + skip, out, T, name);
            u->up_tf[i * (lpb + 1) + j].C = 0;
            if (c->up[i] == DIF_BLOCK_CROSSATTN) {
                snprintf(name, sizeof name, "up_blocks.%d.attentions.%d", i, j);
                take_tf(L, c, &u->up_tf[i * (lpb + 1) + j], tb, out, c->n_heads[lvl], name);
                tb += nt;
            }
        }
        if (i + 1 < n) {
            snprintf(name, sizeof name, "up_blocks.%d.upsamplers.0.conv", i);
            take_conv(L, &u->up_conv[i], out, out, 3, 1, name);
        }
        prev = out;
    }
    wts_take(L, &u->no_g, WTS_SHAPE(c0), "conv_norm_out.weight");
    wts_take(L, &u->no_b, WTS_SHAPE(c0), "conv_norm_out.bias");
    take_conv(L, &u->conv_out, c0, c->out_ch, 3, 1, "conv_out");
}

void unet_free(unet *u) {
    if (!u) return;
    mem_free(u->weights);
    mem_free(u->down_res);
    mem_free(u->down_tf);
    mem_free(u->up_res);
    mem_free(u->up_tf);
    mem_free(u->tblocks);
    mem_free(u);
}

sim_status unet_load(unet **out, const dif_unet_config *cfg, const st_file *f, sim_err *err) {
    *out = NULL;
    unet *u = mem_calloc(1, sizeof *u);
    if (!u) return err_set(err, SIM_ERR_NOMEM, "out of memory loading the U-Net");
    u->cfg = *cfg;
    u->temb_dim = 4 * cfg->block_out[0];
    size_t nd = (size_t)cfg->n_blocks * (size_t)cfg->layers_per_block, nu = (size_t)cfg->n_blocks * (size_t)(cfg->layers_per_block + 1);
    size_t ntf = (nd + nu + 1) * (size_t)cfg->transformer_layers;
    u->down_res = mem_calloc(nd, sizeof *u->down_res);
    u->down_tf = mem_calloc(nd, sizeof *u->down_tf);
    u->up_res = mem_calloc(nu, sizeof *u->up_res);
    u->up_tf = mem_calloc(nu, sizeof *u->up_tf);
    u->tblocks = mem_calloc(ntf, sizeof *u->tblocks);
    if (!u->down_res || !u->down_tf || !u->up_res || !u->up_tf || !u->tblocks) {
        unet_free(u);
        return err_set(err, SIM_ERR_NOMEM, "out of memory loading the U-Net");
    }
    sim_status rc = wts_load(f, "", bind, u, &u->weights, err);
    if (rc) {
        unet_free(u);
        return rc;
    }
    *out = u;
    return SIM_OK;
}

// --- buffers ------------------------------------------------------------------------------------

sim_status unet_work_new(unet_work **out, const unet *u, int lh, int lw, int n_ctx, sim_err *err) {
    *out = NULL;
    const dif_unet_config *c = &u->cfg;
    int n = c->n_blocks, f = 1 << (n - 1), maxc = 0;
    if (lh < f || lw < f || lh % f || lw % f || lh > 1024 || lw > 1024)
        return err_set(err, SIM_ERR_ARG, "latent %d x %d: sides must be multiples of %d (up to 1024)", lh, lw, f);
    if (n_ctx < 1 || n_ctx > 4096) return err_set(err, SIM_ERR_ARG, "context of %d tokens", n_ctx);
    for (int i = 0; i < n; i++) maxc = MAX(maxc, c->block_out[i]);
    size_t hw0 = (size_t)lh * lw, big = (size_t)3 * maxc * hw0, chw = 0, res = (size_t)c->block_out[0] * hw0;
    for (int i = 0; i < n; i++) {
        size_t hw = hw0 >> (2 * i);
        chw = MAX(chw, (size_t)c->block_out[i] * hw);
        res += (size_t)c->layers_per_block * c->block_out[i] * hw + (i + 1 < n ? (size_t)c->block_out[i] * (hw >> 2) : 0);
    }
    int dmax = 0; // the widest attention head
    for (int i = 0; i < n; i++) dmax = MAX(dmax, c->block_out[i] / c->n_heads[i]);
    size_t scratch = MAX(op_gemm_scratch(POOL_MAX_THREADS), op_attention_scratch(&(op_attn){.d = dmax}, POOL_MAX_THREADS));
    size_t T = (size_t)u->temb_dim;
    size_t total = 3 * big + res + 18 * chw + (size_t)n_ctx * 2 * maxc + 3 * T + (size_t)maxc + scratch;
    unet_work *w = mem_calloc(1, sizeof *w);
    float *b = w ? mem_alloc(total * sizeof(float)) : NULL;
    if (!b) {
        mem_free(w);
        return err_set(err, SIM_ERR_NOMEM, "out of memory for U-Net buffers (%zu MB)", total * 4 >> 20);
    }
    w->lh = lh, w->lw = lw, w->n_ctx = n_ctx;
    w->x = b, b += big;
    w->y = b, b += big;
    w->t = b, b += big;
    w->res = b, b += res;
    w->s = b, b += chw;
    w->h = b, b += chw;
    w->att = b, b += chw;
    w->qkv = b, b += 3 * chw;
    w->ff = b, b += 12 * chw; // GEGLU's input (8C per token), then its output (4C)
    w->kv = b, b += (size_t)n_ctx * 2 * maxc;
    w->tsin = b, b += T;
    w->temb = b, b += T;
    w->temb_act = b, b += T;
    w->tproj = b, b += maxc;
    w->scratch = b, w->scratch_cap = scratch;
    *out = w;
    return SIM_OK;
}

void unet_work_free(unet_work *w) {
    if (!w) return;
    mem_free(w->x);
    mem_free(w);
}

// --- forward --------------------------------------------------------------------------------------

// y (C, hw) = x + transformer(x); t is work space.
static void transformer(op_ctx *c, const unet *u, unet_work *w, float *y, const float *x, float *t, const u_transformer *tf, int hw,
                        const float *ctx, int n_ctx) {
    int C = tf->C, H = tf->heads, d = C / H, X = u->cfg.cross_dim;
    op_group_norm(c, t, x, C, hw, u->cfg.groups, TF_GN_EPS, tf->gn_g, tf->gn_b, false);
    op_transpose(c, w->h, t, C, hw);
    op_linear(c, w->s, w->h, tf->pin_w, tf->pin_b, hw, C, C);
    for (int b = 0; b < u->cfg.transformer_layers; b++) {
        const u_tblock *k = &tf->blocks[b];
        op_layer_norm(c, w->h, w->s, hw, C, LN_EPS, k->n1_g, k->n1_b);
        op_linear(c, w->qkv, w->h, k->qkv_w, NULL, hw, C, 3 * C);
        op_attn a1 = {.Tq = hw, .Tk = hw, .n_head = H, .d = d, .ldq = 3 * C, .ldk = 3 * C, .ldv = 3 * C, .ldo = C};
        op_attention(c, w->att, w->qkv, w->qkv + C, w->qkv + 2 * C, &a1);
        op_linear(c, w->h, w->att, k->o1_w, k->o1_b, hw, C, C);
        op_add(w->s, w->s, w->h, (size_t)hw * C);

        op_layer_norm(c, w->h, w->s, hw, C, LN_EPS, k->n2_g, k->n2_b);
        op_linear(c, w->qkv, w->h, k->q2_w, NULL, hw, C, C);
        op_linear(c, w->kv, ctx, k->kv2_w, NULL, n_ctx, X, 2 * C);
        op_attn a2 = {.Tq = hw, .Tk = n_ctx, .n_head = H, .d = d, .ldq = C, .ldk = 2 * C, .ldv = 2 * C, .ldo = C};
        op_attention(c, w->att, w->qkv, w->kv, w->kv + C, &a2);
        op_linear(c, w->h, w->att, k->o2_w, k->o2_b, hw, C, C);
        op_add(w->s, w->s, w->h, (size_t)hw * C);

        op_layer_norm(c, w->h, w->s, hw, C, LN_EPS, k->n3_g, k->n3_b);
        op_linear(c, w->ff, w->h, k->ff1_w, k->ff1_b, hw, C, 8 * C);
        op_geglu(c, w->ff + (size_t)8 * C * hw, w->ff, hw, 4 * C);
        op_linear(c, w->h, w->ff + (size_t)8 * C * hw, k->ff2_w, k->ff2_b, hw, 4 * C, C);
        op_add(w->s, w->s, w->h, (size_t)hw * C);
    }
    op_linear(c, w->h, w->s, tf->pout_w, tf->pout_b, hw, C, C);
    op_transpose(c, y, w->h, hw, C);
    op_add(y, y, x, (size_t)C * hw);
}

static void swap(float **a, float **b) {
    float *t = *a;
    *a = *b;
    *b = t;
}

sim_status unet_forward(const unet *u, unet_work *w, const op_ctx *cin, const float *latent, int lh, int lw, float timestep,
                        const float *context, int n_ctx, float *eps, sim_err *err) {
    const dif_unet_config *cf = &u->cfg;
    int n = cf->n_blocks, lpb = cf->layers_per_block, f = 1 << (n - 1), c0 = cf->block_out[0];
    if (lh < f || lw < f || lh % f || lw % f || lh > w->lh || lw > w->lw)
        return err_set(err, SIM_ERR_RANGE, "latent %d x %d does not fit the buffers (%d x %d, multiples of %d)", lh, lw, w->lh, w->lw, f);
    if (n_ctx < 1 || n_ctx > w->n_ctx) return err_set(err, SIM_ERR_RANGE, "context of %d tokens (buffers hold %d)", n_ctx, w->n_ctx);
    if (!(timestep >= 0 && timestep <= 1e6f)) return err_set(err, SIM_ERR_ARG, "timestep %g", (double)timestep);
    op_ctx c = *cin;
    c.scratch = w->scratch;
    c.scratch_cap = w->scratch_cap;

    // Sinusoidal embedding: diffusers' get_timestep_embedding.
    int half = c0 / 2;
    for (int i = 0; i < half; i++) {
        float e = expf(-logf(10000.0f) * (float)i / (float)(half - cf->freq_shift)) * timestep;
        float s = sinf(e), co = cosf(e);
        w->tsin[cf->flip_sin_to_cos ? i : i + half] = cf->flip_sin_to_cos ? co : s;
        w->tsin[cf->flip_sin_to_cos ? i + half : i] = cf->flip_sin_to_cos ? s : co;
    }
    if (c0 % 2) w->tsin[c0 - 1] = 0;
    op_linear(&c, w->temb, w->tsin, u->t1_w, u->t1_b, 1, c0, u->temb_dim);
    op_act_inplace(&c, w->temb, (size_t)u->temb_dim, OP_ACT_SILU);
    op_linear(&c, w->temb_act, w->temb, u->t2_w, u->t2_b, 1, u->temb_dim, u->temb_dim);
    op_act_inplace(&c, w->temb_act, (size_t)u->temb_dim, OP_ACT_SILU); // every resnet takes silu(temb)

    float *x = w->x, *y = w->y, *t = w->t;
    int h = lh, wd = lw;
    // Kept outputs for the skip connections, back to back in w->res.
    float *res_at[64];
    int res_ch[64], n_res = 0;
    float *rp = w->res;
#define KEEP(ch)                                                                       \
    do {                                                                               \
        ASSERT(n_res < 64);                                                            \
        memcpy(rp, x, (size_t)(ch) * h * wd * sizeof *rp);                             \
        res_at[n_res] = rp, res_ch[n_res++] = (ch);                                    \
        rp += (size_t)(ch) * h * wd;                                                   \
    } while (0)
    op_conv2d(&c, x, latent, &u->conv_in.p, h, wd, u->conv_in.w, u->conv_in.b);
    KEEP(c0);
    for (int i = 0; i < n; i++) {
        for (int j = 0; j < lpb; j++) {
            rb_forward(&c, &u->down_res[i * lpb + j], u->cfg.groups, u->cfg.norm_eps, y, x, t, w->temb_act, w->tproj, h, wd);
            swap(&x, &y);
            const u_transformer *tf = &u->down_tf[i * lpb + j];
            if (tf->C) {
                transformer(&c, u, w, y, x, t, tf, h * wd, context, n_ctx);
                swap(&x, &y);
            }
            KEEP(cf->block_out[i]);
        }
        if (i + 1 < n) {
            op_conv2d(&c, y, x, &u->down_conv[i].p, h, wd, u->down_conv[i].w, u->down_conv[i].b);
            h /= 2, wd /= 2;
            swap(&x, &y);
            KEEP(cf->block_out[i]);
        }
    }
    if (cf->mid_block) {
        rb_forward(&c, &u->mid_res[0], u->cfg.groups, u->cfg.norm_eps, y, x, t, w->temb_act, w->tproj, h, wd);
        transformer(&c, u, w, x, y, t, &u->mid_tf, h * wd, context, n_ctx);
        rb_forward(&c, &u->mid_res[1], u->cfg.groups, u->cfg.norm_eps, y, x, t, w->temb_act, w->tproj, h, wd);
        swap(&x, &y);
    }
    int ch = cf->block_out[n - 1];
    for (int i = 0; i < n; i++) {
        for (int j = 0; j <= lpb; j++) {
            const rb_block *r = &u->up_res[i * (lpb + 1) + j];
            ASSERT(n_res > 0);
            n_res--;
            ASSERT(ch + res_ch[n_res] == r->cin);
            op_concat(y, x, ch, res_at[n_res], res_ch[n_res], h * wd);
            rb_forward(&c, r, u->cfg.groups, u->cfg.norm_eps, x, y, t, w->temb_act, w->tproj, h, wd);
            ch = r->cout;
            const u_transformer *tf = &u->up_tf[i * (lpb + 1) + j];
            if (tf->C) {
                transformer(&c, u, w, y, x, t, tf, h * wd, context, n_ctx);
                swap(&x, &y);
            }
        }
        if (i + 1 < n) {
            op_upsample2x(&c, t, x, ch, h, wd);
            h *= 2, wd *= 2;
            op_conv2d(&c, x, t, &u->up_conv[i].p, h, wd, u->up_conv[i].w, u->up_conv[i].b);
        }
    }
#undef KEEP
    op_group_norm(&c, t, x, c0, h * wd, cf->groups, cf->norm_eps, u->no_g, u->no_b, true);
    op_conv2d(&c, eps, t, &u->conv_out.p, h, wd, u->conv_out.w, u->conv_out.b);
    return SIM_OK;
}
