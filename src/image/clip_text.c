// clip_text.c — CLIP text encoder: weight loading and the forward pass.
#include "image/clip_text.h"

#include "image/wts.h"

#include <stdio.h>
#include <string.h>

typedef struct clip_layer {
    float *ln1_g, *ln1_b;   // (C)
    op_mat qkv_w;           // (3C, C): q, k, v stacked
    float *qkv_b;           // (3C)
    op_mat out_w;           // (C, C)
    float *out_b;           // (C)
    float *ln2_g, *ln2_b;   // (C)
    op_mat fc1_w;           // (I, C)
    float *fc1_b;           // (I)
    op_mat fc2_w;           // (C, I)
    float *fc2_b;           // (C)
} clip_layer;

struct clip_text {
    dif_clip_config cfg;
    void *weights;          // every tensor below points into this one arena
    op_mat tok_emb;         // (vocab, C): only n rows are read per prompt
    float *pos_emb;         // (n_pos, C)
    clip_layer *layers;     // (n_layers)
    float *lnf_g, *lnf_b;   // (C)
    // activations, sized for n_pos tokens
    float *x;               // (T, C) the residual stream
    float *h;               // (T, C) normalized input of a sublayer
    float *qkv;             // (T, 3C)
    float *att;             // (T, C)
    float *mlp;             // (T, I)
    float *scratch;         // GEMM packing and attention tiles
    size_t scratch_cap;
};

void clip_text_free(clip_text *m) {
    if (!m) return;
    mem_free(m->weights);
    mem_free(m->layers);
    mem_free(m->x);
    mem_free(m);
}

// --- loading ---------------------------------------------------------------------------

static void bind(wts_loader *L, void *ud) {
    clip_text *m = ud;
    const dif_clip_config *cfg = &m->cfg;
    int64_t C = cfg->hidden, I = cfg->intermediate;
    wts_take_mat(L, &m->tok_emb, WTS_SHAPE(cfg->vocab, C), "embeddings.token_embedding.weight");
    wts_take(L, &m->pos_emb, WTS_SHAPE(cfg->n_pos, C), "embeddings.position_embedding.weight");
    for (int l = 0; l < cfg->n_layers; l++) {
        clip_layer *y = &m->layers[l];
        char p[64], q[3][96];
        float *tmp;
        snprintf(p, sizeof p, "encoder.layers.%d", l);
        wts_take(L, &y->ln1_g, WTS_SHAPE(C), "%s.layer_norm1.weight", p);
        wts_take(L, &y->ln1_b, WTS_SHAPE(C), "%s.layer_norm1.bias", p);
        // q, k, v weights and then biases land back to back: one (3C, C) matrix, one (3C) bias.
        for (int i = 0; i < 3; i++) snprintf(q[i], sizeof q[i], "%s.self_attn.%c_proj.weight", p, "qkv"[i]);
        wts_take_stack(L, &y->qkv_w, 3, WTS_SHAPE(C, C), (const char *const[]){q[0], q[1], q[2]});
        wts_take(L, &y->qkv_b, WTS_SHAPE(C), "%s.self_attn.q_proj.bias", p);
        wts_take(L, &tmp, WTS_SHAPE(C), "%s.self_attn.k_proj.bias", p);
        wts_take(L, &tmp, WTS_SHAPE(C), "%s.self_attn.v_proj.bias", p);
        wts_take_mat(L, &y->out_w, WTS_SHAPE(C, C), "%s.self_attn.out_proj.weight", p);
        wts_take(L, &y->out_b, WTS_SHAPE(C), "%s.self_attn.out_proj.bias", p);
        wts_take(L, &y->ln2_g, WTS_SHAPE(C), "%s.layer_norm2.weight", p);
        wts_take(L, &y->ln2_b, WTS_SHAPE(C), "%s.layer_norm2.bias", p);
        wts_take_mat(L, &y->fc1_w, WTS_SHAPE(I, C), "%s.mlp.fc1.weight", p);
        wts_take(L, &y->fc1_b, WTS_SHAPE(I), "%s.mlp.fc1.bias", p);
        wts_take_mat(L, &y->fc2_w, WTS_SHAPE(C, I), "%s.mlp.fc2.weight", p);
        wts_take(L, &y->fc2_b, WTS_SHAPE(C), "%s.mlp.fc2.bias", p);
    }
    wts_take(L, &m->lnf_g, WTS_SHAPE(C), "final_layer_norm.weight");
    wts_take(L, &m->lnf_b, WTS_SHAPE(C), "final_layer_norm.bias");
}

sim_status clip_text_load(clip_text **out, const dif_clip_config *cfg, const st_file *f, sim_err *err) {
    *out = NULL;
    static const char *const prefixes[] = {"text_model.", "cond_stage_model.transformer.text_model.", ""};
    const char *prefix = NULL;
    for (size_t i = 0; i < ARRAY_LEN(prefixes) && !prefix; i++) {
        char name[256];
        snprintf(name, sizeof name, "%sembeddings.token_embedding.weight", prefixes[i]);
        if (st_find(f, name)) prefix = prefixes[i];
    }
    if (!prefix) return err_set(err, SIM_ERR_FORMAT, "%s: no CLIP text encoder (no *embeddings.token_embedding.weight)", f->path);
    size_t C = (size_t)cfg->hidden, I = (size_t)cfg->intermediate, T = (size_t)cfg->n_pos;
    clip_text *m = mem_calloc(1, sizeof *m);
    if (!m) return err_set(err, SIM_ERR_NOMEM, "out of memory loading the text encoder");
    m->cfg = *cfg;
    m->layers = mem_calloc((size_t)cfg->n_layers, sizeof *m->layers);
    size_t n_act = T * (C + C + 3 * C + C + I);
    m->scratch_cap = MAX(op_gemm_scratch(POOL_MAX_THREADS),
                         op_attention_scratch(&(op_attn){.d = cfg->hidden / cfg->n_heads}, POOL_MAX_THREADS));
    m->x = mem_alloc((n_act + m->scratch_cap) * sizeof(float));
    if (!m->layers || !m->x) {
        clip_text_free(m);
        return err_set(err, SIM_ERR_NOMEM, "out of memory for the text encoder's buffers");
    }
    m->h = m->x + T * C;
    m->qkv = m->h + T * C;
    m->att = m->qkv + T * 3 * C;
    m->mlp = m->att + T * C;
    m->scratch = m->mlp + T * I;
    sim_status st = wts_load(f, prefix, bind, m, &m->weights, err);
    if (st != SIM_OK) {
        clip_text_free(m);
        return st;
    }
    *out = m;
    return SIM_OK;
}

// --- forward ----------------------------------------------------------------------------

sim_status clip_text_encode(clip_text *m, const op_ctx *cin, const int32_t *ids, int n, int skip, float *hidden, sim_err *err) {
    const dif_clip_config *cfg = &m->cfg;
    int C = cfg->hidden, I = cfg->intermediate, H = cfg->n_heads;
    if (n < 1 || n > cfg->n_pos) return err_set(err, SIM_ERR_ARG, "%d tokens (the text encoder takes 1 to %d)", n, cfg->n_pos);
    if (skip < 0 || skip >= cfg->n_layers) return err_set(err, SIM_ERR_ARG, "CLIP skip %d (0 to %d)", skip, cfg->n_layers - 1);
    for (int t = 0; t < n; t++)
        if (ids[t] < 0 || ids[t] >= cfg->vocab) return err_set(err, SIM_ERR_ARG, "token id %d at %d outside the vocabulary", ids[t], t);
    op_ctx c = *cin;
    c.scratch = m->scratch;
    c.scratch_cap = m->scratch_cap;
    size_t es = m->tok_emb.type == TT_F32 ? 4 : 2;
    for (int t = 0; t < n; t++) {
        float *x = m->x + (size_t)t * C;
        c.k->to_float[m->tok_emb.type]((const char *)m->tok_emb.data + (size_t)ids[t] * C * es, x, C);
        for (int i = 0; i < C; i++) x[i] += m->pos_emb[(size_t)t * C + i];
    }
    op_act act = cfg->act == DIF_ACT_GELU ? OP_ACT_GELU : OP_ACT_QUICK_GELU;
    op_attn at = {.Tq = n, .Tk = n, .n_head = H, .d = C / H, .ldq = 3 * C, .ldk = 3 * C, .ldv = 3 * C, .ldo = C, .causal = true};
    for (int l = 0; l < cfg->n_layers - skip; l++) {
        const clip_layer *y = &m->layers[l];
        op_layer_norm(&c, m->h, m->x, n, C, cfg->ln_eps, y->ln1_g, y->ln1_b);
        op_linear(&c, m->qkv, m->h, y->qkv_w, y->qkv_b, n, C, 3 * C);
        op_attention(&c, m->att, m->qkv, m->qkv + C, m->qkv + 2 * C, &at);
        op_linear(&c, m->h, m->att, y->out_w, y->out_b, n, C, C);
        op_add(m->x, m->x, m->h, (size_t)n * C);
        op_layer_norm(&c, m->h, m->x, n, C, cfg->ln_eps, y->ln2_g, y->ln2_b);
        op_linear(&c, m->mlp, m->h, y->fc1_w, y->fc1_b, n, C, I);
        op_act_inplace(&c, m->mlp, (size_t)n * I, act);
        op_linear(&c, m->h, m->mlp, y->fc2_w, y->fc2_b, n, I, C);
        op_add(m->x, m->x, m->h, (size_t)n * C);
    }
    op_layer_norm(&c, hidden, m->x, n, C, cfg->ln_eps, m->lnf_g, m->lnf_b);
    return SIM_OK;
}
