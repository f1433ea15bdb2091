// model.c — hyperparameters and weights from GGUF, validated.
#include "model/model.h"

#include <math.h>
#include <stdio.h>
#include <string.h>

typedef struct loader {
    model *m;
    const char *path;
    sim_err *err;
    size_t owned_used, owned_cap; // floats
} loader;

// Reads "<arch>.<key>" as a u32 into *out; required keys fail with a message.
static sim_status arch_u32(loader *L, const char *key, bool required, int *out) {
    char full[128];
    snprintf(full, sizeof full, "%s.%s", L->m->hp.arch_name, key);
    uint32_t v;
    if (!gguf_get_u32(L->m->gguf, full, &v)) {
        if (!gguf_get(L->m->gguf, full) && !required) return SIM_OK;
        return err_set(L->err, SIM_ERR_FORMAT, "%s: metadata '%s' is %s", L->path, full,
                       gguf_get(L->m->gguf, full) ? "not an unsigned integer" : "missing");
    }
    if (v > (1u << 30)) return err_set(L->err, SIM_ERR_FORMAT, "%s: metadata '%s' = %u is implausible", L->path, full, v);
    *out = (int)v;
    return SIM_OK;
}

static sim_status arch_f32(loader *L, const char *key, float *out) {
    char full[128];
    snprintf(full, sizeof full, "%s.%s", L->m->hp.arch_name, key);
    if (!gguf_get(L->m->gguf, full)) return SIM_OK;
    float v;
    if (!gguf_get_f32(L->m->gguf, full, &v) || !isfinite(v))
        return err_set(L->err, SIM_ERR_FORMAT, "%s: metadata '%s' is not a finite float", L->path, full);
    *out = v;
    return SIM_OK;
}

// Finds a tensor and checks its shape: ne[0] = ne0, ne[1] = ne1 (ne1 = 0: 1-D).
static sim_status find(loader *L, const char *name, int64_t ne0, int64_t ne1, bool required,
                       const gguf_tensor **out) {
    *out = NULL;
    const gguf_tensor *t = gguf_find_tensor(L->m->gguf, name);
    if (!t) {
        if (!required) return SIM_OK;
        return err_set(L->err, SIM_ERR_FORMAT, "%s: tensor '%s' is missing", L->path, name);
    }
    bool ok = t->ne[0] == ne0 && t->ne[2] == 1 && t->ne[3] == 1 && (ne1 ? t->ne[1] == ne1 : t->ne[1] == 1);
    if (!ok)
        return err_set(L->err, SIM_ERR_FORMAT, "%s: tensor '%s' has shape [%lld, %lld, %lld, %lld], expected [%lld, %lld]",
                       L->path, name, (long long)t->ne[0], (long long)t->ne[1], (long long)t->ne[2],
                       (long long)t->ne[3], (long long)ne0, (long long)(ne1 ? ne1 : 1));
    *out = t;
    return SIM_OK;
}

static sim_status matrix(loader *L, const char *name, int64_t ne0, int64_t ne1, mm_tensor *out) {
    const gguf_tensor *t;
    sim_status st = find(L, name, ne0, ne1, true, &t);
    if (st) return st;
    *out = (mm_tensor){.type = t->type, .ne0 = t->ne[0], .ne1 = t->ne[1],
                       .row_bytes = tt_row_size(t->type, t->ne[0]), .data = t->data};
    return SIM_OK;
}

// A 1-D float vector: used in place when stored as F32, else converted.
static sim_status vector(loader *L, const char *name, int64_t n, bool required, const float **out) {
    const gguf_tensor *t;
    sim_status st = find(L, name, n, 0, required, &t);
    *out = NULL;
    if (st || !t) return st;
    if (t->type == TT_F32 && ((uintptr_t)t->data % sizeof(float)) == 0) {
        *out = t->data;
        return SIM_OK;
    }
    if (L->owned_used + (size_t)n > L->owned_cap)
        return err_set(L->err, SIM_ERR_FORMAT, "%s: too many converted vectors (tensor '%s')", L->path, name);
    float *dst = L->m->owned + L->owned_used;
    tt_get(t->type)->to_float(t->data, dst, n);
    L->owned_used += (size_t)n;
    *out = dst;
    return SIM_OK;
}

static sim_status load_hparams(loader *L, const model_params *params) {
    model *m = L->m;
    model_hparams *hp = &m->hp;
    gguf_file *f = m->gguf;
    if (!gguf_get_str(f, "general.architecture", hp->arch_name, sizeof hp->arch_name))
        return err_set(L->err, SIM_ERR_FORMAT, "%s: metadata 'general.architecture' is missing", L->path);
    if (strcmp(hp->arch_name, "llama") == 0) hp->arch = ARCH_LLAMA;
    else if (strcmp(hp->arch_name, "qwen2") == 0) hp->arch = ARCH_QWEN2;
    else return err_set(L->err, SIM_ERR_UNSUPPORTED, "%s: unsupported architecture '%s' (supported: llama, qwen2)", L->path, hp->arch_name);

    sim_status st;
    hp->n_ctx_train = 2048;
    if ((st = arch_u32(L, "context_length", false, &hp->n_ctx_train))) return st;
    if ((st = arch_u32(L, "embedding_length", true, &hp->n_embd))) return st;
    if ((st = arch_u32(L, "block_count", true, &hp->n_layer))) return st;
    if ((st = arch_u32(L, "feed_forward_length", true, &hp->n_ff))) return st;
    if ((st = arch_u32(L, "attention.head_count", true, &hp->n_head))) return st;
    hp->n_head_kv = hp->n_head;
    if ((st = arch_u32(L, "attention.head_count_kv", false, &hp->n_head_kv))) return st;
    if (hp->n_embd <= 0 || hp->n_layer <= 0 || hp->n_ff <= 0 || hp->n_head <= 0 || hp->n_head_kv <= 0 ||
        hp->n_head % hp->n_head_kv != 0)
        return err_set(L->err, SIM_ERR_FORMAT, "%s: invalid hyperparameters (embd %d, layers %d, ffn %d, heads %d/%d)",
                       L->path, hp->n_embd, hp->n_layer, hp->n_ff, hp->n_head, hp->n_head_kv);
    if (hp->n_layer > 1024) return err_set(L->err, SIM_ERR_FORMAT, "%s: %d layers is implausible", L->path, hp->n_layer);
    hp->head_dim = hp->n_embd / hp->n_head;
    if ((st = arch_u32(L, "attention.key_length", false, &hp->head_dim))) return st;
    int v_len = hp->head_dim;
    if ((st = arch_u32(L, "attention.value_length", false, &v_len))) return st;
    if (hp->head_dim <= 0 || v_len != hp->head_dim || hp->head_dim % 2 != 0)
        return err_set(L->err, SIM_ERR_UNSUPPORTED, "%s: head dimensions %d/%d are not supported", L->path, hp->head_dim, v_len);
    hp->rope_dim = hp->head_dim;
    if ((st = arch_u32(L, "rope.dimension_count", false, &hp->rope_dim))) return st;
    if (hp->rope_dim <= 0 || hp->rope_dim > hp->head_dim || hp->rope_dim % 2)
        return err_set(L->err, SIM_ERR_FORMAT, "%s: rope dimension %d invalid for head size %d", L->path, hp->rope_dim, hp->head_dim);
    hp->norm_eps = 1e-5f;
    if ((st = arch_f32(L, "attention.layer_norm_rms_epsilon", &hp->norm_eps))) return st;
    hp->rope_base = 10000.0f;
    if ((st = arch_f32(L, "rope.freq_base", &hp->rope_base))) return st;
    hp->rope_neox = hp->arch == ARCH_QWEN2;
    hp->rope_freq_scale = 1.0f;
    hp->rope_orig_ctx = hp->n_ctx_train;
    hp->yarn_ext_factor = 1.0f;
    hp->yarn_attn_factor = 1.0f;
    hp->yarn_beta_fast = 32.0f;
    hp->yarn_beta_slow = 1.0f;
    char key[128], type[32] = "";
    snprintf(key, sizeof key, "%s.rope.scaling.type", hp->arch_name);
    gguf_get_str(f, key, type, sizeof type);
    float factor = 0;
    if ((st = arch_f32(L, "rope.scaling.factor", &factor))) return st;
    if ((st = arch_u32(L, "rope.scaling.original_context_length", false, &hp->rope_orig_ctx))) return st;
    if ((st = arch_f32(L, "rope.scaling.attn_factor", &hp->yarn_attn_factor))) return st;
    if (type[0] == 0) hp->rope_scaling = factor > 0 && factor != 1 ? ROPE_SCALING_LINEAR : ROPE_SCALING_NONE;
    else if (!model_rope_scaling_from_name(type, &hp->rope_scaling))
        return err_set(L->err, SIM_ERR_UNSUPPORTED, "%s: rope scaling '%s' is not supported (none, linear, ntk, dynamic, yarn)", L->path, type);
    if (factor > 0) hp->rope_freq_scale = 1.0f / factor;
    // Overrides from the caller (command-line flags).
    if (params->has_rope_scaling) hp->rope_scaling = params->rope_scaling;
    if (params->rope_freq_base > 0) hp->rope_base = params->rope_freq_base;
    if (params->rope_freq_scale > 0) hp->rope_freq_scale = params->rope_freq_scale;
    if (params->yarn_orig_ctx > 0) hp->rope_orig_ctx = params->yarn_orig_ctx;
    if (params->yarn_ext_factor >= 0 && params->has_rope_scaling) hp->yarn_ext_factor = params->yarn_ext_factor;
    if (params->yarn_attn_factor > 0) hp->yarn_attn_factor = params->yarn_attn_factor;
    if (params->yarn_beta_fast > 0) hp->yarn_beta_fast = params->yarn_beta_fast;
    if (params->yarn_beta_slow > 0) hp->yarn_beta_slow = params->yarn_beta_slow;
    if (hp->rope_scaling == ROPE_SCALING_NONE) hp->rope_freq_scale = params->rope_freq_scale > 0 ? params->rope_freq_scale : 1.0f;
    if (!(hp->rope_base > 0) || !(hp->rope_freq_scale > 0) || !(hp->norm_eps > 0) || hp->rope_orig_ctx <= 0 ||
        !(hp->yarn_attn_factor > 0) || !(hp->yarn_beta_fast > 0) || !(hp->yarn_beta_slow > 0) || hp->rope_dim / 2 > 512)
        return err_set(L->err, SIM_ERR_FORMAT, "%s: invalid RoPE parameters (base %g, scale %g, original context %d) or norm epsilon",
                       L->path, hp->rope_base, hp->rope_freq_scale, hp->rope_orig_ctx);
    return SIM_OK;
}

static sim_status load_tensors(loader *L) {
    model *m = L->m;
    model_hparams *hp = &m->hp;
    sim_status st;
    const gguf_tensor *emb = gguf_find_tensor(m->gguf, "token_embd.weight");
    if (!emb) return err_set(L->err, SIM_ERR_FORMAT, "%s: tensor 'token_embd.weight' is missing", L->path);
    if (emb->ne[0] != hp->n_embd || emb->ne[1] < 1 || emb->ne[1] > (1 << 24))
        return err_set(L->err, SIM_ERR_FORMAT, "%s: tensor 'token_embd.weight' has an invalid shape", L->path);
    hp->n_vocab = (int)emb->ne[1];
    if ((st = matrix(L, "token_embd.weight", hp->n_embd, hp->n_vocab, &m->tok_embd))) return st;
    if ((st = vector(L, "output_norm.weight", hp->n_embd, true, &m->out_norm))) return st;
    const gguf_tensor *out;
    if ((st = find(L, "output.weight", hp->n_embd, hp->n_vocab, false, &out))) return st;
    if (out) {
        if ((st = matrix(L, "output.weight", hp->n_embd, hp->n_vocab, &m->output))) return st;
    } else {
        m->output = m->tok_embd;
        m->tied_output = true;
    }
    if ((st = vector(L, "rope_freqs.weight", hp->rope_dim / 2, false, &m->rope_freqs))) return st;

    int64_t q_dim = (int64_t)hp->n_head * hp->head_dim, kv_dim = (int64_t)hp->n_head_kv * hp->head_dim;
    m->layers = mem_calloc((size_t)hp->n_layer, sizeof *m->layers);
    if (!m->layers) return err_set(L->err, SIM_ERR_NOMEM, "%s: out of memory", L->path);
    bool bias = hp->arch == ARCH_QWEN2;
    for (int i = 0; i < hp->n_layer; i++) {
        model_layer *ly = &m->layers[i];
        char n[96];
#define NAME(s) (snprintf(n, sizeof n, "blk.%d.%s", i, s), n)
        if ((st = vector(L, NAME("attn_norm.weight"), hp->n_embd, true, &ly->attn_norm))) return st;
        if ((st = matrix(L, NAME("attn_q.weight"), hp->n_embd, q_dim, &ly->wq))) return st;
        if ((st = matrix(L, NAME("attn_k.weight"), hp->n_embd, kv_dim, &ly->wk))) return st;
        if ((st = matrix(L, NAME("attn_v.weight"), hp->n_embd, kv_dim, &ly->wv))) return st;
        if ((st = matrix(L, NAME("attn_output.weight"), q_dim, hp->n_embd, &ly->wo))) return st;
        if ((st = vector(L, NAME("attn_q.bias"), q_dim, bias, &ly->bq))) return st;
        if ((st = vector(L, NAME("attn_k.bias"), kv_dim, bias, &ly->bk))) return st;
        if ((st = vector(L, NAME("attn_v.bias"), kv_dim, bias, &ly->bv))) return st;
        if ((st = vector(L, NAME("ffn_norm.weight"), hp->n_embd, true, &ly->ffn_norm))) return st;
        if ((st = matrix(L, NAME("ffn_gate.weight"), hp->n_embd, hp->n_ff, &ly->w_gate))) return st;
        if ((st = matrix(L, NAME("ffn_up.weight"), hp->n_embd, hp->n_ff, &ly->w_up))) return st;
        if ((st = matrix(L, NAME("ffn_down.weight"), hp->n_ff, hp->n_embd, &ly->w_down))) return st;
#undef NAME
    }
    for (int64_t i = 0; i < m->gguf->n_tensors; i++) {
        const gguf_tensor *t = &m->gguf->tensors[i];
        m->n_params += (uint64_t)(t->ne[0] * t->ne[1] * t->ne[2] * t->ne[3]);
        m->weight_bytes += t->size;
    }
    return SIM_OK;
}

sim_status model_load(model **out, const char *path, const model_params *params, sim_err *err) {
    *out = NULL;
    gguf_file *f;
    sim_status st = gguf_open(&f, path, err);
    if (st) return st;
    return model_load_gguf(out, f, params, err);
}

sim_status model_load_gguf(model **out, gguf_file *f, const model_params *params, sim_err *err) {
    *out = NULL;
    model_params defaults = {0};
    if (!params) params = &defaults;
    const char *path = f->path;
    model *m = mem_calloc(1, sizeof *m);
    if (!m) {
        gguf_close(f);
        return err_set(err, SIM_ERR_NOMEM, "%s: out of memory", path);
    }
    m->gguf = f;
    pthread_mutex_init(&m->hash_lock, NULL);
    loader L = {.m = m, .path = path, .err = err};
    sim_status st = tok_load(&m->vocab, m->gguf, err);
    if (st) {
        err_prefix(err, "%s", path);
        goto fail;
    }
    if (!params->vocab_only) {
        if ((st = load_hparams(&L, params))) goto fail;
        // Room for every 1-D tensor converted to float (norms and biases).
        L.owned_cap = (size_t)m->hp.n_embd * (size_t)(2 * m->hp.n_layer + 1) +
                      (size_t)m->hp.n_layer * (size_t)(m->hp.n_head + 2 * m->hp.n_head_kv) * (size_t)m->hp.head_dim +
                      (size_t)m->hp.rope_dim;
        if (!(m->owned = mem_alloc(L.owned_cap * sizeof(float)))) {
            st = err_set(err, SIM_ERR_NOMEM, "%s: out of memory", path);
            goto fail;
        }
        if ((st = load_tensors(&L))) goto fail;
        if (tok_n_vocab(m->vocab) > m->hp.n_vocab) {
            st = err_set(err, SIM_ERR_FORMAT, "%s: the vocabulary has %d tokens but the embedding only %d rows",
                         path, tok_n_vocab(m->vocab), m->hp.n_vocab);
            goto fail;
        }
        file_map_prefetch(&m->gguf->map);
    }
    *out = m;
    return SIM_OK;
fail:
    model_free(m);
    return st;
}

uint64_t model_content_hash(model *m) {
    pthread_mutex_lock(&m->hash_lock);
    if (!m->hash_done) {
        m->content_hash = hash64(m->gguf->base, m->gguf->size, 0x53494D554C415249ull);
        m->hash_done = true;
    }
    uint64_t h = m->content_hash;
    pthread_mutex_unlock(&m->hash_lock);
    return h;
}

void model_free(model *m) {
    if (!m) return;
    pthread_mutex_destroy(&m->hash_lock);
    tok_free(m->vocab);
    gguf_close(m->gguf);
    mem_free(m->layers);
    mem_free(m->owned);
    mem_free(m);
}

// --- RoPE ------------------------------------------------------------------------------

static const char *scaling_names[] = {"none", "linear", "ntk", "dynamic", "yarn"};

bool model_rope_scaling_from_name(const char *name, rope_scaling *out) {
    for (int i = 0; i < (int)ARRAY_LEN(scaling_names); i++)
        if (strcmp(name, scaling_names[i]) == 0) {
            *out = (rope_scaling)i;
            return true;
        }
    return false;
}

const char *model_rope_scaling_name(rope_scaling s) {
    return (unsigned)s < ARRAY_LEN(scaling_names) ? scaling_names[s] : "?";
}

// YaRN's ramp bound: the dimension pair index at which a frequency makes
// n_rot full rotations over the original context.
static double yarn_dim(int n_dims, int n_ctx_orig, double n_rot, double base) {
    return n_dims * log(n_ctx_orig / (n_rot * 2 * M_PI)) / (2 * log(base));
}

void model_rope_table(const model *m, int n_ctx, rope_table *t) {
    const model_hparams *hp = &m->hp;
    int d = hp->rope_dim;
    double base = hp->rope_base, scale = hp->rope_freq_scale;
    t->n = d / 2;
    t->mscale = 1.0f;
    if (hp->rope_scaling == ROPE_SCALING_NTK || hp->rope_scaling == ROPE_SCALING_DYNAMIC) {
        // NTK-aware: stretch the base so the lowest frequency is interpolated by
        // the factor while the highest stay put; dynamic NTK picks the factor
        // from how far this context goes past the training context.
        double factor = 1.0 / scale;
        if (hp->rope_scaling == ROPE_SCALING_DYNAMIC)
            factor = MAX(1.0, (double)n_ctx / hp->rope_orig_ctx);
        base *= pow(factor, (double)d / (d - 2));
        scale = 1.0;
    }
    double low = 0, high = 0, ext = 0;
    if (hp->rope_scaling == ROPE_SCALING_YARN) {
        low = MAX(0.0, floor(yarn_dim(d, hp->rope_orig_ctx, hp->yarn_beta_fast, base)));
        high = MIN(d - 1.0, ceil(yarn_dim(d, hp->rope_orig_ctx, hp->yarn_beta_slow, base)));
        ext = hp->yarn_ext_factor;
        t->mscale = hp->yarn_attn_factor * (ext != 0 ? (float)(1.0 + 0.1 * log(1.0 / scale)) : 1.0f);
    }
    for (int i = 0; i < t->n; i++) {
        double extrap = pow(base, -2.0 * i / d);
        if (m->rope_freqs) extrap /= m->rope_freqs[i];
        double w = extrap * scale; // interpolation (linear scaling)
        if (hp->rope_scaling == ROPE_SCALING_YARN && ext != 0) {
            double y = (i - low) / MAX(0.001, high - low);
            double mix = (1.0 - MIN(1.0, MAX(0.0, y))) * ext; // 1 for high frequencies: extrapolate
            w = w * (1 - mix) + extrap * mix;
        }
        t->omega[i] = (float)w;
    }
}

tt_type model_main_type(const model *m) {
    size_t bytes[TT_COUNT] = {0};
    for (int64_t i = 0; i < m->gguf->n_tensors; i++) bytes[m->gguf->tensors[i].type] += m->gguf->tensors[i].size;
    int best = 0;
    for (int t = 1; t < TT_COUNT; t++)
        if (bytes[t] > bytes[best]) best = t;
    return (tt_type)best;
}
