// clip_text.c — CLIP text encoder: weight loading and the forward pass.
#include "image/clip_text.h"

#include <stdio.h>
#include <string.h>

typedef struct clip_layer {
    float *ln1_g, *ln1_b;   // (C)
    float *qkv_w, *qkv_b;   // (3C, C), (3C): q, k, v stacked
    float *out_w, *out_b;   // (C, C), (C)
    float *ln2_g, *ln2_b;   // (C)
    float *fc1_w, *fc1_b;   // (I, C), (I)
    float *fc2_w, *fc2_b;   // (C, I), (C)
} clip_layer;

struct clip_text {
    dif_clip_config cfg;
    float *weights;         // every tensor below points into this one allocation
    float *tok_emb;         // (vocab, C)
    float *pos_emb;         // (n_pos, C)
    clip_layer *layers;     // (n_layers)
    float *lnf_g, *lnf_b;   // (C)
    // activations, sized for n_pos tokens
    float *x;               // (T, C) the residual stream
    float *h;               // (T, C) normalized input of a sublayer
    float *qkv;             // (T, 3C)
    float *att;             // (T, C)
    float *mlp;             // (T, I)
    float *scratch;         // attention scores
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

typedef struct loader {
    const st_file *f;
    const char *prefix;
    float *next; // where the next tensor goes
    sim_err *err;
} loader;

// Reads prefix+name with the given shape into the next floats of the arena.
static sim_status take(loader *L, float **out, const char *name, int64_t d0, int64_t d1) {
    char full[256];
    snprintf(full, sizeof full, "%s%s", L->prefix, name);
    int64_t shape[2] = {d0, d1};
    sim_status st = st_read_f32(L->f, full, shape, d1 ? 2 : 1, L->next, L->err);
    if (st != SIM_OK) return st;
    *out = L->next;
    L->next += d0 * (d1 ? d1 : 1);
    return SIM_OK;
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
    int64_t C = cfg->hidden, I = cfg->intermediate, L = cfg->n_layers, T = cfg->n_pos;
    size_t per_layer = (size_t)(4 * C + 3 * C * C + 3 * C + C * C + C + I * C + I + C * I + C);
    size_t total = (size_t)(cfg->vocab + T) * (size_t)C + (size_t)L * per_layer + 2 * (size_t)C;
    clip_text *m = mem_calloc(1, sizeof *m);
    if (!m) return err_set(err, SIM_ERR_NOMEM, "out of memory loading the text encoder");
    m->cfg = *cfg;
    m->weights = mem_alloc(total * sizeof(float));
    m->layers = mem_calloc((size_t)L, sizeof *m->layers);
    size_t n_act = (size_t)T * (size_t)(C + C + 3 * C + C + I);
    m->scratch_cap = op_attention_scratch(&(op_attn){.Tk = (int)T}, POOL_MAX_THREADS);
    m->x = mem_alloc((n_act + m->scratch_cap) * sizeof(float));
    if (!m->weights || !m->layers || !m->x) {
        clip_text_free(m);
        return err_set(err, SIM_ERR_NOMEM, "out of memory for a %zu-float text encoder", total);
    }
    m->h = m->x + T * C;
    m->qkv = m->h + T * C;
    m->att = m->qkv + T * 3 * C;
    m->mlp = m->att + T * C;
    m->scratch = m->mlp + T * I;

    loader ld = {f, prefix, m->weights, err};
    sim_status st;
#define TAKE(dst, name, d0, d1)                                                        \
    do {                                                                               \
        if ((st = take(&ld, &(dst), name, d0, d1)) != SIM_OK) goto fail;               \
    } while (0)
    TAKE(m->tok_emb, "embeddings.token_embedding.weight", cfg->vocab, C);
    TAKE(m->pos_emb, "embeddings.position_embedding.weight", T, C);
    for (int l = 0; l < L; l++) {
        clip_layer *y = &m->layers[l];
        char n[128];
#define LN(field, suffix, d0, d1)                                                      \
    do {                                                                               \
        snprintf(n, sizeof n, "encoder.layers.%d.%s", l, suffix);                      \
        TAKE(y->field, n, d0, d1);                                                     \
    } while (0)
        LN(ln1_g, "layer_norm1.weight", C, 0);
        LN(ln1_b, "layer_norm1.bias", C, 0);
        // q, k, v weights then biases land back to back: one (3C, C) matrix.
        float *tmp;
#define LNT(suffix, d0, d1)                                                            \
    do {                                                                               \
        snprintf(n, sizeof n, "encoder.layers.%d.%s", l, suffix);                      \
        TAKE(tmp, n, d0, d1);                                                          \
    } while (0)
        LN(qkv_w, "self_attn.q_proj.weight", C, C);
        LNT("self_attn.k_proj.weight", C, C);
        LNT("self_attn.v_proj.weight", C, C);
        LN(qkv_b, "self_attn.q_proj.bias", C, 0);
        LNT("self_attn.k_proj.bias", C, 0);
        LNT("self_attn.v_proj.bias", C, 0);
#undef LNT
        LN(out_w, "self_attn.out_proj.weight", C, C);
        LN(out_b, "self_attn.out_proj.bias", C, 0);
        LN(ln2_g, "layer_norm2.weight", C, 0);
        LN(ln2_b, "layer_norm2.bias", C, 0);
        LN(fc1_w, "mlp.fc1.weight", I, C);
        LN(fc1_b, "mlp.fc1.bias", I, 0);
        LN(fc2_w, "mlp.fc2.weight", C, I);
        LN(fc2_b, "mlp.fc2.bias", C, 0);
#undef LN
    }
    TAKE(m->lnf_g, "final_layer_norm.weight", C, 0);
    TAKE(m->lnf_b, "final_layer_norm.bias", C, 0);
#undef TAKE
    ASSERT(ld.next == m->weights + total);
    *out = m;
    return SIM_OK;
fail:
    clip_text_free(m);
    return st;
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
    for (int t = 0; t < n; t++)
        for (int i = 0; i < C; i++) m->x[(size_t)t * C + i] = m->tok_emb[(size_t)ids[t] * C + i] + m->pos_emb[(size_t)t * C + i];
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
