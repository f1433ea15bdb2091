// ckpt.c — single-file checkpoints as diffusers-named views (see ckpt.h).
#include "image/ckpt.h"

#include <stdarg.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

#include "image/gguf_st.h"
#include "image/pth.h"
#include "image/sdwrite.h"

#define SUPPORTED "supported: SD 1.x, SD 2.x and BK-SDM checkpoints"

// --- lookups -------------------------------------------------------------------------------------

// The tensor prefix + printf(fmt, ...), or NULL.
static const st_tensor *findf(const st_file *f, const char *prefix, const char *fmt, ...) __attribute__((format(printf, 3, 4)));
static const st_tensor *findf(const st_file *f, const char *prefix, const char *fmt, ...) {
    char name[320];
    int k = snprintf(name, sizeof name, "%s", prefix);
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(name + k, sizeof name - (size_t)k, fmt, ap);
    va_end(ap);
    return st_find(f, name);
}

// The prefix of the first tensor named "<prefix><suffix>" into out (cap bytes); false when none.
static bool find_prefix(const st_file *f, const char *suffix, char *out, size_t cap) {
    size_t k = strlen(suffix);
    for (int i = 0; i < f->n_tensors; i++) {
        const char *n = f->tensors[i].name;
        size_t len = strlen(n);
        if (len >= k && strcmp(n + len - k, suffix) == 0 && len - k < cap) {
            memcpy(out, n, len - k);
            out[len - k] = 0;
            return true;
        }
    }
    return false;
}

// The first tensor whose name contains part, or NULL.
static const char *name_with(const st_file *f, const char *part) {
    for (int i = 0; i < f->n_tensors; i++)
        if (strstr(f->tensors[i].name, part)) return f->tensors[i].name;
    return NULL;
}

static sim_status need(const st_tensor *t, int nd, const st_file *f, const char *prefix, const char *what, sim_err *err) {
    if (t && t->n_dims == nd) return SIM_OK;
    if (!t) return err_set(err, SIM_ERR_FORMAT, "%s: missing tensor '%s%s'", f->path, prefix, what);
    return err_set(err, SIM_ERR_FORMAT, "%s: tensor '%s%s' has %d dims, expected %d", f->path, prefix, what, t->n_dims, nd);
}

// --- configurations ------------------------------------------------------------------------------

static sim_status infer_unet(dif_unet_config *c, const st_file *f, const char *px, sim_err *err) {
    memset(c, 0, sizeof *c);
    const st_tensor *t = findf(f, px, "input_blocks.0.0.weight");
    sim_status st = need(t, 4, f, px, "input_blocks.0.0.weight", err);
    if (st != SIM_OK) return st;
    c->block_out[0] = (int)t->shape[0], c->in_ch = (int)t->shape[1];
    if (c->in_ch == 8)
        return err_set(err, SIM_ERR_UNSUPPORTED, "%s: '%sinput_blocks.0.0.weight' takes 8 channels: looks like InstructPix2Pix (" SUPPORTED ")", f->path,
                       px);
    t = findf(f, px, "out.2.weight");
    if ((st = need(t, 4, f, px, "out.2.weight", err)) != SIM_OK) return st;
    c->out_ch = (int)t->shape[0];
    // Levels: resnets (.0.in_layers) until a downsampler (.0.op), per level.
    int lvl = 0, layers = 0, K = 1;
    for (;; K++) {
        if (findf(f, px, "input_blocks.%d.0.op.weight", K)) {
            if (lvl == 0) c->layers_per_block = layers;
            else if (layers != c->layers_per_block) break;
            if (++lvl >= DIF_MAX_BLOCKS) break;
            layers = 0;
            continue;
        }
        t = findf(f, px, "input_blocks.%d.0.in_layers.2.weight", K);
        if (!t || t->n_dims != 4) break;
        if (layers == 0) c->block_out[lvl] = (int)t->shape[0];
        c->down[lvl] = findf(f, px, "input_blocks.%d.1.proj_in.weight", K) ? DIF_BLOCK_CROSSATTN : DIF_BLOCK_PLAIN;
        layers++;
    }
    if (lvl == 0) c->layers_per_block = layers;
    if (layers != c->layers_per_block || c->layers_per_block < 1)
        return err_set(err, SIM_ERR_FORMAT, "%s: input_blocks level %d has %d resnets, level 0 has %d ('%sinput_blocks.%d')", f->path, lvl, layers,
                       c->layers_per_block, px, K);
    c->n_blocks = lvl + 1;
    for (int i = 0; i < c->n_blocks; i++)
        c->up[i] = findf(f, px, "output_blocks.%d.1.proj_in.weight", i * (c->layers_per_block + 1)) ? DIF_BLOCK_CROSSATTN : DIF_BLOCK_PLAIN;
    c->mid_block = findf(f, px, "middle_block.0.in_layers.0.weight") != NULL;
    // The first transformer: context width, projections, depth.
    char tp[160] = "";
    for (int i = 0; i < f->n_tensors && !tp[0]; i++) {
        const char *n = f->tensors[i].name, *s = strstr(n, ".transformer_blocks.0.attn2.to_k.weight");
        if (s && strncmp(n, px, strlen(px)) == 0 && (size_t)(s - n) < sizeof tp) memcpy(tp, n, (size_t)(s - n)), tp[s - n] = 0;
    }
    if (!tp[0]) return err_set(err, SIM_ERR_UNSUPPORTED, "%s: the U-Net ('%s*') has no cross-attention (" SUPPORTED ")", f->path, px);
    const st_tensor *k = findf(f, "", "%s.transformer_blocks.0.attn2.to_k.weight", tp), *pin = findf(f, "", "%s.proj_in.weight", tp);
    if (!k || k->n_dims != 2 || !pin) return err_set(err, SIM_ERR_FORMAT, "%s: '%s' is not a transformer of the known layout", f->path, tp);
    if (findf(f, "", "%s.transformer_blocks.1.attn1.to_q.weight", tp))
        return err_set(err, SIM_ERR_UNSUPPORTED, "%s: '%s.transformer_blocks.1': looks like SDXL (" SUPPORTED ")", f->path, tp);
    c->cross_dim = (int)k->shape[1];
    c->linear_proj = pin->n_dims == 2;
    c->transformer_layers = 1, c->groups = 32, c->norm_eps = 1e-5f, c->flip_sin_to_cos = true, c->freq_shift = 0;
    bool v2 = c->linear_proj || c->cross_dim == 1024;
    for (int i = 0; i < c->n_blocks; i++) {
        int C = c->block_out[i], h = v2 ? C / 64 : 8;
        if (C % c->groups || h < 1 || C % h)
            return err_set(err, SIM_ERR_FORMAT, "%s: U-Net level %d has %d channels: not a multiple of %d groups and %d heads", f->path, i, C, c->groups, h);
        c->n_heads[i] = h, c->head_dim[i] = C / h;
    }
    return SIM_OK;
}

static sim_status infer_vae(dif_vae_config *c, const st_file *f, const char *px, sim_err *err) {
    memset(c, 0, sizeof *c);
    const st_tensor *t = findf(f, px, "encoder.conv_in.weight");
    sim_status st = need(t, 4, f, px, "encoder.conv_in.weight", err);
    if (st != SIM_OK) return st;
    c->in_ch = (int)t->shape[1];
    while (c->n_blocks < DIF_MAX_BLOCKS && (t = findf(f, px, "encoder.down.%d.block.0.conv1.weight", c->n_blocks)) && t->n_dims == 4)
        c->block_out[c->n_blocks++] = (int)t->shape[0];
    while (c->layers_per_block < 16 && findf(f, px, "encoder.down.0.block.%d.conv1.weight", c->layers_per_block)) c->layers_per_block++;
    if (!c->n_blocks) return need(NULL, 4, f, px, "encoder.down.0.block.0.conv1.weight", err);
    t = findf(f, px, "decoder.conv_in.weight");
    if ((st = need(t, 4, f, px, "decoder.conv_in.weight", err)) != SIM_OK) return st;
    c->latent_ch = (int)t->shape[1];
    t = findf(f, px, "decoder.conv_out.weight");
    if ((st = need(t, 4, f, px, "decoder.conv_out.weight", err)) != SIM_OK) return st;
    c->out_ch = (int)t->shape[0];
    c->groups = 32, c->scaling_factor = 0.18215f;
    for (int i = 0; i < c->n_blocks; i++)
        if (c->block_out[i] % c->groups)
            return err_set(err, SIM_ERR_FORMAT, "%s: VAE level %d has %d channels, not a multiple of %d groups", f->path, i, c->block_out[i], c->groups);
    return SIM_OK;
}

// SD 1.x (transformers names) or, with openclip, SD 2.x's OpenCLIP text tower.
static sim_status infer_clip(dif_clip_config *c, const st_file *f, const char *px, bool openclip, sim_err *err) {
    memset(c, 0, sizeof *c);
    const char *emb = openclip ? "token_embedding.weight" : "embeddings.token_embedding.weight";
    const char *pos = openclip ? "positional_embedding" : "embeddings.position_embedding.weight";
    const char *fc1 = openclip ? "transformer.resblocks.0.mlp.c_fc.weight" : "encoder.layers.0.mlp.fc1.weight";
    const st_tensor *t = findf(f, px, "%s", emb), *p = findf(f, px, "%s", pos), *m = findf(f, px, "%s", fc1);
    sim_status st = need(t, 2, f, px, emb, err);
    if (st == SIM_OK) st = need(p, 2, f, px, pos, err);
    if (st == SIM_OK) st = need(m, 2, f, px, fc1, err);
    if (st != SIM_OK) return st;
    c->vocab = (int)t->shape[0], c->hidden = (int)t->shape[1], c->n_pos = (int)p->shape[0], c->intermediate = (int)m->shape[0];
    while (c->n_layers < 256 && findf(f, px, openclip ? "transformer.resblocks.%d.ln_1.weight" : "encoder.layers.%d.layer_norm1.weight", c->n_layers))
        c->n_layers++;
    if (openclip) c->n_layers--; // SD 2.x takes the penultimate layer's output
    c->n_heads = c->hidden / 64;
    c->act = openclip ? DIF_ACT_GELU : DIF_ACT_QUICK_GELU;
    c->ln_eps = 1e-5f, c->bos = CLIP_TOK_START, c->eos = CLIP_TOK_END;
    if (c->n_layers < 1 || c->n_heads < 1 || c->hidden % 64 || c->vocab <= CLIP_TOK_END)
        return err_set(err, SIM_ERR_FORMAT, "%s: text encoder '%s*' of width %d, %d layers, %d tokens: not a CLIP text model", f->path, px, c->hidden,
                       c->n_layers, c->vocab);
    return SIM_OK;
}

// --- diffusers → LDM names -------------------------------------------------------------------------

// A view tensor's source: LDM name `name`, part `part` of `parts` equal row blocks.
typedef struct ldm_ref {
    char name[200];
    int part, parts;
} ldm_ref;

// Renames a leading `from` of s to `to` (in place through out); false when s does not start with it.
static bool lead(const char *s, const char *from, const char *to, char *out, size_t cap) {
    size_t k = strlen(from);
    if (strncmp(s, from, k) != 0) return false;
    snprintf(out, cap, "%s%s", to, s + k);
    return true;
}

// Renames the first matching leading part of s by the table {from, to, ...}; else copies s.
static void lead_table(const char *s, const char *const *tab, int n, char *out, size_t cap) {
    for (int i = 0; i < n; i += 2)
        if (lead(s, tab[i], tab[i + 1], out, cap)) return;
    snprintf(out, cap, "%s", s);
}

// sscanf of the whole pattern: k conversions and the trailing %n reached.
#define MATCH_IN(s, k, ...) ((n = 0), sscanf(s, __VA_ARGS__) == (k) && n > 0)
#define MATCH(k, ...) MATCH_IN(d, k, __VA_ARGS__)

static const char *const UNET_RESNET[] = {"norm1.", "in_layers.0.", "conv1.", "in_layers.2.", "time_emb_proj.", "emb_layers.1.", "norm2.",
                                          "out_layers.0.", "conv2.", "out_layers.3.", "conv_shortcut.", "skip_connection."};
static const char *const VAE_RESNET[] = {"conv_shortcut.", "nin_shortcut."};
static const char *const VAE_ATTN[] = {"group_norm.", "norm.", "to_q.", "q.", "to_k.", "k.", "to_v.", "v.", "to_out.0.", "proj_out."};

static bool unet_ref(const dif_unet_config *c, const char *d, ldm_ref *r) {
    int i, j, n, L = c->layers_per_block;
    char rest[160], tmp[160];
    r->part = 0, r->parts = 1;
#define OUT(...) (snprintf(r->name, sizeof r->name, __VA_ARGS__), true)
    if (MATCH(2, "down_blocks.%d.resnets.%d.%n", &i, &j, &n))
        return lead_table(d + n, UNET_RESNET, ARRAY_LEN(UNET_RESNET), rest, sizeof rest), OUT("input_blocks.%d.0.%s", 1 + i * (L + 1) + j, rest);
    if (MATCH(2, "down_blocks.%d.attentions.%d.%n", &i, &j, &n)) return OUT("input_blocks.%d.1.%s", 1 + i * (L + 1) + j, d + n);
    if (MATCH(1, "down_blocks.%d.downsamplers.0.conv.%n", &i, &n)) return OUT("input_blocks.%d.0.op.%s", (i + 1) * (L + 1), d + n);
    if (MATCH(1, "mid_block.resnets.%d.%n", &j, &n))
        return lead_table(d + n, UNET_RESNET, ARRAY_LEN(UNET_RESNET), rest, sizeof rest), OUT("middle_block.%d.%s", 2 * j, rest);
    if (lead(d, "mid_block.attentions.0.", "middle_block.1.", tmp, sizeof tmp)) return OUT("%s", tmp);
    if (MATCH(2, "up_blocks.%d.resnets.%d.%n", &i, &j, &n))
        return lead_table(d + n, UNET_RESNET, ARRAY_LEN(UNET_RESNET), rest, sizeof rest), OUT("output_blocks.%d.0.%s", i * (L + 1) + j, rest);
    if (MATCH(2, "up_blocks.%d.attentions.%d.%n", &i, &j, &n)) return OUT("output_blocks.%d.1.%s", i * (L + 1) + j, d + n);
    if (MATCH(1, "up_blocks.%d.upsamplers.0.conv.%n", &i, &n) && i < c->n_blocks)
        return OUT("output_blocks.%d.%d.conv.%s", i * (L + 1) + L, c->up[i] == DIF_BLOCK_CROSSATTN ? 2 : 1, d + n);
    static const char *const top[] = {"time_embedding.linear_1.", "time_embed.0.", "time_embedding.linear_2.", "time_embed.2.",
                                      "conv_in.", "input_blocks.0.0.", "conv_norm_out.", "out.0.", "conv_out.", "out.2."};
    for (size_t k = 0; k < ARRAY_LEN(top); k += 2)
        if (lead(d, top[k], top[k + 1], r->name, sizeof r->name)) return true;
    return false;
}

static bool vae_ref(const dif_vae_config *c, const char *d, ldm_ref *r) {
    int i, j, n;
    char half[8], rest[160];
    r->part = 0, r->parts = 1;
    if (MATCH(2, "encoder.down_blocks.%d.resnets.%d.%n", &i, &j, &n))
        return lead_table(d + n, VAE_RESNET, ARRAY_LEN(VAE_RESNET), rest, sizeof rest), OUT("encoder.down.%d.block.%d.%s", i, j, rest);
    if (MATCH(1, "encoder.down_blocks.%d.downsamplers.0.conv.%n", &i, &n)) return OUT("encoder.down.%d.downsample.conv.%s", i, d + n);
    if (MATCH(2, "decoder.up_blocks.%d.resnets.%d.%n", &i, &j, &n))
        return lead_table(d + n, VAE_RESNET, ARRAY_LEN(VAE_RESNET), rest, sizeof rest),
               OUT("decoder.up.%d.block.%d.%s", c->n_blocks - 1 - i, j, rest);
    if (MATCH(1, "decoder.up_blocks.%d.upsamplers.0.conv.%n", &i, &n))
        return OUT("decoder.up.%d.upsample.conv.%s", c->n_blocks - 1 - i, d + n);
    if (MATCH(2, "%7[a-z].mid_block.resnets.%d.%n", half, &j, &n))
        return lead_table(d + n, VAE_RESNET, ARRAY_LEN(VAE_RESNET), rest, sizeof rest), OUT("%s.mid.block_%d.%s", half, j + 1, rest);
    if (MATCH(1, "%7[a-z].mid_block.attentions.0.%n", half, &n))
        return lead_table(d + n, VAE_ATTN, ARRAY_LEN(VAE_ATTN), rest, sizeof rest), OUT("%s.mid.attn_1.%s", half, rest);
    if (MATCH(1, "%7[a-z].conv_norm_out.%n", half, &n)) return OUT("%s.norm_out.%s", half, d + n);
    return OUT("%s", d); // conv_in, conv_out, quant_conv, post_quant_conv
}

static bool clip_ref(const char *d, bool openclip, ldm_ref *r) {
    int l, n;
    char rest[160];
    r->part = 0, r->parts = 1;
    if (!lead(d, "text_model.", "", rest, sizeof rest)) return false;
    if (!openclip) return OUT("%s", rest);
    static const char *const top[] = {"embeddings.token_embedding.weight", "token_embedding.weight", "embeddings.position_embedding.weight",
                                      "positional_embedding", "final_layer_norm.", "ln_final."};
    for (size_t k = 0; k < ARRAY_LEN(top); k += 2)
        if (lead(rest, top[k], top[k + 1], r->name, sizeof r->name)) return true;
    if (!MATCH_IN(rest, 1, "encoder.layers.%d.%n", &l, &n)) return false;
    const char *s = rest + n;
    static const char *const qkv[] = {"self_attn.q_proj.", "self_attn.k_proj.", "self_attn.v_proj."};
    for (int k = 0; k < 3; k++)
        if (strncmp(s, qkv[k], strlen(qkv[k])) == 0) {
            r->part = k, r->parts = 3;
            return OUT("transformer.resblocks.%d.attn.in_proj_%s", l, s + strlen(qkv[k]));
        }
    static const char *const layer[] = {"layer_norm1.", "ln_1.", "layer_norm2.", "ln_2.", "self_attn.out_proj.", "attn.out_proj.",
                                        "mlp.fc1.", "mlp.c_fc.", "mlp.fc2.", "mlp.c_proj."};
    char tail[160];
    lead_table(s, layer, ARRAY_LEN(layer), tail, sizeof tail);
    return OUT("transformer.resblocks.%d.%s", l, tail);
#undef OUT
}

// --- views ---------------------------------------------------------------------------------------

typedef enum comp { COMP_UNET, COMP_VAE, COMP_CLIP, COMP_OPENCLIP } comp;

// The view of one component: every tensor the configuration implies.
static sim_status make_view(st_file **out, const st_file *src, comp k, const dif_pipeline *cfg, const char *px, sim_err *err) {
    *out = NULL;
    static const char *const tags[] = {"unet", "vae", "text encoder", "text encoder"};
    sdw_list l = {0};
    sim_status st = k == COMP_UNET ? sdw_unet_tensors(&l, &cfg->unet, err)
                    : k == COMP_VAE ? sdw_vae_tensors(&l, &cfg->vae, err)
                                    : sdw_clip_tensors(&l, &cfg->clip, err);
    size_t names_len = 0;
    for (int i = 0; i < l.n; i++) names_len += strlen(l.e[i].name) + 1;
    st_tensor *ts = st == SIM_OK ? mem_calloc((size_t)l.n + 1, sizeof *ts) : NULL;
    char *names = ts ? mem_alloc(names_len + 1) : NULL, *np = names;
    if (st == SIM_OK && !names) st = err_set(err, SIM_ERR_NOMEM, "%s: out of memory for the %s view", src->path, tags[k]);
    for (int i = 0; i < l.n && st == SIM_OK; i++) {
        const stw_entry *e = &l.e[i];
        ldm_ref r;
        bool ok = k == COMP_UNET ? unet_ref(&cfg->unet, e->name, &r) : k == COMP_VAE ? vae_ref(&cfg->vae, e->name, &r) : clip_ref(e->name, k == COMP_OPENCLIP, &r);
        ASSERT(ok); // every name the lists produce has a counterpart
        const st_tensor *t = findf(src, px, "%s", r.name);
        int64_t n = stw_numel(e);
        char a[96], b[96];
        if (!t) {
            st = err_set(err, SIM_ERR_FORMAT, "%s: missing tensor '%s%s' (the %s's '%s')", src->path, px, r.name, tags[k], e->name);
            break;
        }
        if (t->n_elem != n * r.parts || (r.parts > 1 && t->shape[0] % r.parts)) {
            st = err_set(err, SIM_ERR_FORMAT, "%s: tensor '%s%s' has shape %s, the %s's '%s' needs %s%s", src->path, px, r.name,
                         st_shape_str(t->shape, t->n_dims, a, sizeof a), tags[k], e->name, st_shape_str(e->shape, e->n_dims, b, sizeof b),
                         r.parts > 1 ? " (a third of it)" : "");
            break;
        }
        st_tensor *v = &ts[i];
        size_t len = strlen(e->name) + 1;
        memcpy(np, e->name, len);
        v->name = np, np += len;
        v->dtype = t->dtype, v->n_dims = e->n_dims, v->n_elem = n;
        memcpy(v->shape, e->shape, sizeof v->shape);
        v->size = t->size / (size_t)r.parts;
        v->data = t->data + v->size * (size_t)r.part;
    }
    int n = l.n;
    sdw_list_free(&l);
    if (st != SIM_OK) {
        mem_free(ts);
        mem_free(names);
        return st;
    }
    char path[1200];
    snprintf(path, sizeof path, "%s [%s]", src->path, tags[k]);
    return st_from_parts(out, path, ts, n, names, NULL, 0, err);
}

// --- opening ---------------------------------------------------------------------------------------

void ckpt_close(ckpt *c) {
    if (!c) return;
    st_close(c->unet);
    st_close(c->vae);
    st_close(c->text);
    st_close(c->src);
    mem_free(c);
}

// Other families' checkpoints, by a tensor only they have.
static sim_status check_family(const st_file *f, sim_err *err) {
    static const struct {
        const char *part, *like;
    } marks[] = {
        {"conditioner.embedders.", "SDXL"}, {"label_emb.", "SDXL"}, {"joint_blocks.", "SD 3"}, {"double_blocks.", "Flux"},
        {"single_transformer_blocks.", "Flux"}, {"x_embedder.", "a diffusion transformer"},
    };
    for (size_t i = 0; i < ARRAY_LEN(marks); i++) {
        const char *n = name_with(f, marks[i].part);
        if (n) return err_set(err, SIM_ERR_UNSUPPORTED, "%s: tensor '%s': looks like %s (" SUPPORTED ")", f->path, n, marks[i].like);
    }
    return SIM_OK;
}

sim_status ckpt_from_file(ckpt **out, st_file *src, const dif_pipeline *like, sim_err *err) {
    *out = NULL;
    ckpt *c = mem_calloc(1, sizeof *c);
    if (!c) {
        sim_status st = err_set(err, SIM_ERR_NOMEM, "out of memory opening %s", src->path);
        st_close(src);
        return st;
    }
    c->src = src;
    const char *slash = strrchr(src->path, '/');
    if (!slash) snprintf(c->cfg.dir, sizeof c->cfg.dir, ".");
    else snprintf(c->cfg.dir, sizeof c->cfg.dir, "%.*s", (int)(slash - src->path), src->path);
    char up[128], vp[128], tp[128];
    sim_status st = check_family(src, err);
    if (st == SIM_OK && !find_prefix(src, "input_blocks.0.0.weight", up, sizeof up))
        st = err_set(err, SIM_ERR_FORMAT, "%s: no U-Net (no tensor '*input_blocks.0.0.weight'): not a Stable Diffusion checkpoint", src->path);
    bool has_vae = find_prefix(src, "encoder.conv_in.weight", vp, sizeof vp), openclip = false;
    bool has_text = find_prefix(src, "embeddings.token_embedding.weight", tp, sizeof tp);
    if (!has_text && find_prefix(src, "token_embedding.weight", tp, sizeof tp) && findf(src, tp, "positional_embedding")) has_text = openclip = true;
    if (like) {
        dif_pipeline keep = c->cfg;
        c->cfg = *like;
        memcpy(c->cfg.dir, keep.dir, sizeof keep.dir);
    } else {
        if (st == SIM_OK) st = infer_unet(&c->cfg.unet, src, up, err);
        if (st == SIM_OK && has_vae) st = infer_vae(&c->cfg.vae, src, vp, err);
        if (st == SIM_OK && has_text) st = infer_clip(&c->cfg.clip, src, tp, openclip, err);
    }
    c->cfg.family = dif_unet_family(&c->cfg.unet);
    if (st == SIM_OK && has_text && c->cfg.unet.cross_dim != c->cfg.clip.hidden)
        st = err_set(err, SIM_ERR_FORMAT, "%s: the U-Net's context is %d wide, the text encoder's %d", src->path, c->cfg.unet.cross_dim, c->cfg.clip.hidden);
    // Inpainting U-Nets take x, the mask and the masked image's latent: 2·latent + 1.
    if (st == SIM_OK && has_vae && c->cfg.unet.in_ch != c->cfg.vae.latent_ch && c->cfg.unet.in_ch != 2 * c->cfg.vae.latent_ch + 1)
        st = err_set(err, SIM_ERR_FORMAT, "%s: the U-Net takes %d channels, the VAE's latents have %d", src->path, c->cfg.unet.in_ch, c->cfg.vae.latent_ch);
    if (st == SIM_OK) st = make_view(&c->unet, src, COMP_UNET, &c->cfg, up, err);
    if (st == SIM_OK && has_vae) st = make_view(&c->vae, src, COMP_VAE, &c->cfg, vp, err);
    if (st == SIM_OK && has_text) st = make_view(&c->text, src, openclip ? COMP_OPENCLIP : COMP_CLIP, &c->cfg, tp, err);
    if (st != SIM_OK) {
        ckpt_close(c);
        return st;
    }
    *out = c;
    return SIM_OK;
}

// By the magic: GGUF, a PyTorch zip (.ckpt: names flattened as
// "state_dict.model.diffusion_model...", the prefix found like any other), or safetensors.
static sim_status open_any(st_file **f, const char *path, sim_err *err) {
    if (gguf_st_is_gguf(path)) return gguf_st_open(f, path, err);
    FILE *fp = fopen(path, "rb");
    uint8_t m[4] = {0};
    bool zip = fp && fread(m, 1, 4, fp) == 4 && memcmp(m, "PK\3\4", 4) == 0;
    if (fp) fclose(fp);
    return zip ? pth_open(f, path, err) : st_open(f, path, err);
}

sim_status ckpt_open(ckpt **out, const char *path, const dif_pipeline *like, sim_err *err) {
    *out = NULL;
    st_file *f = NULL;
    sim_status st = open_any(&f, path, err);
    if (st != SIM_OK) return st;
    return ckpt_from_file(out, f, like, err);
}

// --- tokenizer -----------------------------------------------------------------------------------

static bool exists(const char *dir, const char *name, char *buf, size_t cap) {
    int n = snprintf(buf, cap, "%s/%s", dir, name);
    return n > 0 && (size_t)n < cap && access(buf, R_OK) == 0;
}

// From a folder with vocab.json + merges.txt or bpe_simple_vocab_16e6.txt.gz.
static bool tok_in(clip_tok **out, const char *dir, sim_status *st, sim_err *err) {
    char v[1200], m[1200];
    if (exists(dir, "vocab.json", v, sizeof v) && exists(dir, "merges.txt", m, sizeof m)) return *st = clip_tok_load(out, v, m, err), true;
    if (exists(dir, "bpe_simple_vocab_16e6.txt.gz", v, sizeof v)) return *st = clip_tok_load_gz(out, v, err), true;
    return false;
}

sim_status ckpt_tokenizer(clip_tok **out, const char *ckpt_path, const char *dir, sim_err *err) {
    *out = NULL;
    sim_status st = SIM_OK;
    if (dir) {
        if (tok_in(out, dir, &st, err)) return st;
        return err_set(err, SIM_ERR_IO, "%s: no CLIP tokenizer (vocab.json + merges.txt or bpe_simple_vocab_16e6.txt.gz)", dir);
    }
    char here[1024], sub[1100];
    const char *slash = strrchr(ckpt_path, '/');
    if (!slash) snprintf(here, sizeof here, ".");
    else snprintf(here, sizeof here, "%.*s", (int)(slash - ckpt_path), ckpt_path);
    snprintf(sub, sizeof sub, "%s/tokenizer", here);
    if (tok_in(out, here, &st, err) || tok_in(out, sub, &st, err)) return st;
    return err_set(err, SIM_ERR_IO,
                   "%s: no CLIP tokenizer beside the checkpoint (looked for vocab.json + merges.txt and bpe_simple_vocab_16e6.txt.gz in %s and %s; "
                   "give the folder explicitly)",
                   ckpt_path, here, sub);
}
