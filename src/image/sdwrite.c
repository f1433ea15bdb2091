// sdwrite.c — random-weight SD pipelines and TAESD files (see sdwrite.h).
#include "image/sdwrite.h"

#include <errno.h>
#include <jansson.h>
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "base/file.h"
#include "image/clip_tok.h"
#include "image/dsamp.h"

// --- families ------------------------------------------------------------------------------------

static const char *const FAMILY_NAMES[SDW_FAMILY_COUNT] = {"sd15", "sd21", "small-sd", "tiny-sd"};

const char *sdw_family_name(sdw_family f) { return (unsigned)f < SDW_FAMILY_COUNT ? FAMILY_NAMES[f] : "?"; }

bool sdw_family_parse(const char *name, sdw_family *out) {
    for (int i = 0; i < SDW_FAMILY_COUNT; i++)
        if (strcmp(name, FAMILY_NAMES[i]) == 0) {
            *out = (sdw_family)i;
            return true;
        }
    return false;
}

void sdw_family_configs(sdw_family f, dif_pipeline *p) {
    memset(p, 0, sizeof *p);
    bool v2 = f == SDW_SD21;
    p->clip = (dif_clip_config){.hidden = v2 ? 1024 : 768, .intermediate = v2 ? 4096 : 3072, .n_heads = v2 ? 16 : 12,
                                .n_layers = v2 ? 23 : 12, .vocab = 49408, .n_pos = 77, .act = v2 ? DIF_ACT_GELU : DIF_ACT_QUICK_GELU,
                                .ln_eps = 1e-5f, .bos = CLIP_TOK_START, .eos = CLIP_TOK_END};
    p->vae = (dif_vae_config){.in_ch = 3, .out_ch = 3, .latent_ch = 4, .n_blocks = 4, .block_out = {128, 256, 512, 512},
                              .layers_per_block = 2, .groups = 32, .scaling_factor = 0.18215f};
    dif_unet_config *u = &p->unet;
    *u = (dif_unet_config){.in_ch = 4, .out_ch = 4, .n_blocks = 4, .block_out = {320, 640, 1280, 1280}, .layers_per_block = 2,
                           .transformer_layers = 1, .cross_dim = v2 ? 1024 : 768, .mid_block = true, .groups = 32, .norm_eps = 1e-5f,
                           .linear_proj = v2, .flip_sin_to_cos = true, .freq_shift = 0};
    for (int i = 0; i < 4; i++) {
        u->down[i] = i < 3 ? DIF_BLOCK_CROSSATTN : DIF_BLOCK_PLAIN;
        u->up[i] = i ? DIF_BLOCK_CROSSATTN : DIF_BLOCK_PLAIN;
        u->head_dim[i] = v2 ? 64 : u->block_out[i] / 8;
    }
    if (f == SDW_SMALL_SD || f == SDW_TINY_SD) u->layers_per_block = 1, u->mid_block = false;
    if (f == SDW_TINY_SD) {
        u->n_blocks = 3;
        for (int i = 0; i < 3; i++) u->down[i] = u->up[i] = DIF_BLOCK_CROSSATTN;
    }
    for (int i = 0; i < u->n_blocks; i++) u->n_heads[i] = u->block_out[i] / u->head_dim[i];
}

// --- tensor lists --------------------------------------------------------------------------------

void sdw_list_free(sdw_list *l) {
    mem_free(l->e);
    memset(l, 0, sizeof *l);
}

int64_t sdw_list_params(const sdw_list *l) {
    int64_t n = 0;
    for (int i = 0; i < l->n; i++) n += stw_numel(&l->e[i]);
    return n;
}

int sdw_list_find(const sdw_list *l, const char *name) {
    for (int i = 0; i < l->n; i++)
        if (strcmp(l->e[i].name, name) == 0) return i;
    return -1;
}

// Appends (name from fmt, shape d[0..nd)); failures set l->oom.
static void add(sdw_list *l, int nd, const int64_t *d, const char *fmt, ...) __attribute__((format(printf, 4, 5)));
static void add(sdw_list *l, int nd, const int64_t *d, const char *fmt, ...) {
    if (l->oom) return;
    if (l->n == l->cap) {
        int cap = l->cap ? 2 * l->cap : 256;
        stw_entry *e = mem_realloc(l->e, (size_t)cap * sizeof *e);
        if (!e) {
            l->oom = true;
            return;
        }
        l->e = e, l->cap = cap;
    }
    stw_entry *e = &l->e[l->n++];
    memset(e, 0, sizeof *e);
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(e->name, sizeof e->name, fmt, ap);
    va_end(ap);
    e->n_dims = nd;
    memcpy(e->shape, d, (size_t)nd * sizeof *d);
}
#define SHAPE(...) (int)(sizeof((int64_t[]){__VA_ARGS__}) / sizeof(int64_t)), (const int64_t[]){__VA_ARGS__}

static sim_status done(sdw_list *l, sim_err *err) {
    return l->oom ? err_set(err, SIM_ERR_NOMEM, "out of memory listing tensors") : SIM_OK;
}

static void conv(sdw_list *l, int cin, int cout, int k, bool bias, const char *name) {
    add(l, SHAPE(cout, cin, k, k), "%s.weight", name);
    if (bias) add(l, SHAPE(cout), "%s.bias", name);
}

static void norm(sdw_list *l, int C, const char *name) {
    add(l, SHAPE(C), "%s.weight", name);
    add(l, SHAPE(C), "%s.bias", name);
}

static void linear(sdw_list *l, int in, int out, bool bias, const char *name) {
    add(l, SHAPE(out, in), "%s.weight", name);
    if (bias) add(l, SHAPE(out), "%s.bias", name);
}

// A ResNet block (temb 0: none, as in the VAE).
static void resnet(sdw_list *l, int cin, int cout, int temb, const char *fmt, ...) __attribute__((format(printf, 5, 6)));
static void resnet(sdw_list *l, int cin, int cout, int temb, const char *fmt, ...) {
    char p[128], n[160];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(p, sizeof p, fmt, ap);
    va_end(ap);
    snprintf(n, sizeof n, "%s.norm1", p), norm(l, cin, n);
    snprintf(n, sizeof n, "%s.conv1", p), conv(l, cin, cout, 3, true, n);
    if (temb) snprintf(n, sizeof n, "%s.time_emb_proj", p), linear(l, temb, cout, true, n);
    snprintf(n, sizeof n, "%s.norm2", p), norm(l, cout, n);
    snprintf(n, sizeof n, "%s.conv2", p), conv(l, cout, cout, 3, true, n);
    if (cin != cout) snprintf(n, sizeof n, "%s.conv_shortcut", p), conv(l, cin, cout, 1, true, n);
}

// A Transformer2DModel of C channels.
static void transformer(sdw_list *l, const dif_unet_config *c, int C, const char *fmt, ...) __attribute__((format(printf, 4, 5)));
static void transformer(sdw_list *l, const dif_unet_config *c, int C, const char *fmt, ...) {
    char p[128], n[200];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(p, sizeof p, fmt, ap);
    va_end(ap);
    snprintf(n, sizeof n, "%s.norm", p), norm(l, C, n);
    snprintf(n, sizeof n, "%s.proj_in", p);
    if (c->linear_proj) linear(l, C, C, true, n);
    else conv(l, C, C, 1, true, n);
    for (int b = 0; b < c->transformer_layers; b++) {
        const char *sub[] = {"attn1.to_q", "attn1.to_k", "attn1.to_v"};
        snprintf(n, sizeof n, "%s.transformer_blocks.%d.norm1", p, b), norm(l, C, n);
        for (int i = 0; i < 3; i++) snprintf(n, sizeof n, "%s.transformer_blocks.%d.%s", p, b, sub[i]), linear(l, C, C, false, n);
        snprintf(n, sizeof n, "%s.transformer_blocks.%d.attn1.to_out.0", p, b), linear(l, C, C, true, n);
        snprintf(n, sizeof n, "%s.transformer_blocks.%d.norm2", p, b), norm(l, C, n);
        snprintf(n, sizeof n, "%s.transformer_blocks.%d.attn2.to_q", p, b), linear(l, C, C, false, n);
        snprintf(n, sizeof n, "%s.transformer_blocks.%d.attn2.to_k", p, b), linear(l, c->cross_dim, C, false, n);
        snprintf(n, sizeof n, "%s.transformer_blocks.%d.attn2.to_v", p, b), linear(l, c->cross_dim, C, false, n);
        snprintf(n, sizeof n, "%s.transformer_blocks.%d.attn2.to_out.0", p, b), linear(l, C, C, true, n);
        snprintf(n, sizeof n, "%s.transformer_blocks.%d.norm3", p, b), norm(l, C, n);
        snprintf(n, sizeof n, "%s.transformer_blocks.%d.ff.net.0.proj", p, b), linear(l, C, 8 * C, true, n);
        snprintf(n, sizeof n, "%s.transformer_blocks.%d.ff.net.2", p, b), linear(l, 4 * C, C, true, n);
    }
    snprintf(n, sizeof n, "%s.proj_out", p);
    if (c->linear_proj) linear(l, C, C, true, n);
    else conv(l, C, C, 1, true, n);
}

sim_status sdw_unet_tensors(sdw_list *l, const dif_unet_config *c, sim_err *err) {
    int n = c->n_blocks, lpb = c->layers_per_block, c0 = c->block_out[0], T = 4 * c0, top = c->block_out[n - 1];
    char name[128];
    linear(l, c0, T, true, "time_embedding.linear_1");
    linear(l, T, T, true, "time_embedding.linear_2");
    conv(l, c->in_ch, c0, 3, true, "conv_in");
    int ch = c0;
    for (int i = 0; i < n; i++) {
        for (int j = 0; j < lpb; j++) {
            resnet(l, j ? c->block_out[i] : ch, c->block_out[i], T, "down_blocks.%d.resnets.%d", i, j);
            if (c->down[i] == DIF_BLOCK_CROSSATTN) transformer(l, c, c->block_out[i], "down_blocks.%d.attentions.%d", i, j);
        }
        ch = c->block_out[i];
        if (i + 1 < n) snprintf(name, sizeof name, "down_blocks.%d.downsamplers.0.conv", i), conv(l, ch, ch, 3, true, name);
    }
    if (c->mid_block) {
        resnet(l, top, top, T, "mid_block.resnets.0");
        transformer(l, c, top, "mid_block.attentions.0");
        resnet(l, top, top, T, "mid_block.resnets.1");
    }
    int prev = top;
    for (int i = 0; i < n; i++) {
        int lvl = n - 1 - i, out = c->block_out[lvl], in = c->block_out[lvl ? lvl - 1 : 0];
        for (int j = 0; j <= lpb; j++) {
            resnet(l, (j ? out : prev) + (j == lpb ? in : out), out, T, "up_blocks.%d.resnets.%d", i, j);
            if (c->up[i] == DIF_BLOCK_CROSSATTN) transformer(l, c, out, "up_blocks.%d.attentions.%d", i, j);
        }
        if (i + 1 < n) snprintf(name, sizeof name, "up_blocks.%d.upsamplers.0.conv", i), conv(l, out, out, 3, true, name);
        prev = out;
    }
    norm(l, c0, "conv_norm_out");
    conv(l, c0, c->out_ch, 3, true, "conv_out");
    return done(l, err);
}

static void vae_mid(sdw_list *l, int C, const char *half) {
    char n[128];
    resnet(l, C, C, 0, "%s.mid_block.resnets.0", half);
    snprintf(n, sizeof n, "%s.mid_block.attentions.0.group_norm", half), norm(l, C, n);
    const char *sub[] = {"to_q", "to_k", "to_v", "to_out.0"};
    for (int i = 0; i < 4; i++) snprintf(n, sizeof n, "%s.mid_block.attentions.0.%s", half, sub[i]), linear(l, C, C, true, n);
    resnet(l, C, C, 0, "%s.mid_block.resnets.1", half);
}

sim_status sdw_vae_tensors(sdw_list *l, const dif_vae_config *c, sim_err *err) {
    int n = c->n_blocks, lpb = c->layers_per_block, top = c->block_out[n - 1], lat = c->latent_ch;
    char name[128];
    conv(l, c->in_ch, c->block_out[0], 3, true, "encoder.conv_in");
    for (int i = 0; i < n; i++) {
        for (int j = 0; j < lpb; j++)
            resnet(l, j ? c->block_out[i] : c->block_out[i ? i - 1 : 0], c->block_out[i], 0, "encoder.down_blocks.%d.resnets.%d", i, j);
        if (i + 1 < n)
            snprintf(name, sizeof name, "encoder.down_blocks.%d.downsamplers.0.conv", i), conv(l, c->block_out[i], c->block_out[i], 3, true, name);
    }
    vae_mid(l, top, "encoder");
    norm(l, top, "encoder.conv_norm_out");
    conv(l, top, 2 * lat, 3, true, "encoder.conv_out");
    conv(l, 2 * lat, 2 * lat, 1, true, "quant_conv");
    conv(l, lat, lat, 1, true, "post_quant_conv");
    conv(l, lat, top, 3, true, "decoder.conv_in");
    vae_mid(l, top, "decoder");
    int prev = top;
    for (int i = 0; i < n; i++) {
        int ch = c->block_out[n - 1 - i];
        for (int j = 0; j <= lpb; j++) resnet(l, j ? ch : prev, ch, 0, "decoder.up_blocks.%d.resnets.%d", i, j);
        if (i + 1 < n) snprintf(name, sizeof name, "decoder.up_blocks.%d.upsamplers.0.conv", i), conv(l, ch, ch, 3, true, name);
        prev = ch;
    }
    norm(l, c->block_out[0], "decoder.conv_norm_out");
    conv(l, c->block_out[0], c->out_ch, 3, true, "decoder.conv_out");
    return done(l, err);
}

sim_status sdw_clip_tensors(sdw_list *l, const dif_clip_config *c, sim_err *err) {
    int C = c->hidden, I = c->intermediate;
    char n[128];
    add(l, SHAPE(c->vocab, C), "text_model.embeddings.token_embedding.weight");
    add(l, SHAPE(c->n_pos, C), "text_model.embeddings.position_embedding.weight");
    for (int i = 0; i < c->n_layers; i++) {
        const char *sub[] = {"q_proj", "k_proj", "v_proj", "out_proj"};
        snprintf(n, sizeof n, "text_model.encoder.layers.%d.layer_norm1", i), norm(l, C, n);
        for (int k = 0; k < 4; k++) snprintf(n, sizeof n, "text_model.encoder.layers.%d.self_attn.%s", i, sub[k]), linear(l, C, C, true, n);
        snprintf(n, sizeof n, "text_model.encoder.layers.%d.layer_norm2", i), norm(l, C, n);
        snprintf(n, sizeof n, "text_model.encoder.layers.%d.mlp.fc1", i), linear(l, C, I, true, n);
        snprintf(n, sizeof n, "text_model.encoder.layers.%d.mlp.fc2", i), linear(l, I, C, true, n);
    }
    norm(l, C, "text_model.final_layer_norm");
    return done(l, err);
}

// TAESD: 64 channels; a block is three 3×3 convs (Sequential indices 0, 2, 4).
#define TAESD_CH 64

static void taesd_block(sdw_list *l, int idx) {
    char n[64];
    for (int i = 0; i < 3; i++) snprintf(n, sizeof n, "%d.conv.%d", idx, 2 * i), conv(l, TAESD_CH, TAESD_CH, 3, true, n);
}

sim_status sdw_taesd_tensors(sdw_list *l, int lat, bool decoder, sim_err *err) {
    if (decoder) {
        // 0 clamp, 1 conv, 2 ReLU, 3-5 blocks, then 3 × (upsample, conv, blocks), 19 conv
        conv(l, lat, TAESD_CH, 3, true, "1");
        int idx = 3;
        for (int i = 0; i < 3; i++) taesd_block(l, idx++);
        for (int s = 0; s < 3; s++) {
            char n[16];
            idx++; // the upsample
            snprintf(n, sizeof n, "%d", idx++), conv(l, TAESD_CH, TAESD_CH, 3, false, n);
            for (int i = 0; i < (s == 2 ? 1 : 3); i++) taesd_block(l, idx++);
        }
        char n[16];
        snprintf(n, sizeof n, "%d", idx), conv(l, TAESD_CH, 3, 3, true, n);
    } else {
        // 0 conv, 1 block, then 3 × (stride-2 conv, 3 blocks), 14 conv
        conv(l, 3, TAESD_CH, 3, true, "0");
        taesd_block(l, 1);
        int idx = 2;
        for (int s = 0; s < 3; s++) {
            char n[16];
            snprintf(n, sizeof n, "%d", idx++), conv(l, TAESD_CH, TAESD_CH, 3, false, n);
            for (int i = 0; i < 3; i++) taesd_block(l, idx++);
        }
        char n[16];
        snprintf(n, sizeof n, "%d", idx), conv(l, TAESD_CH, lat, 3, true, n);
    }
    return done(l, err);
}

// --- random weights --------------------------------------------------------------------------------

typedef struct fill_ctx {
    const sdw_list *l;
    uint64_t seed;
} fill_ctx;

static bool ends_with(const char *s, const char *suffix) {
    size_t n = strlen(s), k = strlen(suffix);
    return n >= k && strcmp(s + n - k, suffix) == 0;
}

static sim_status fill_random(void *ud, int i, float *out, sim_err *err) {
    const fill_ctx *f = ud;
    const stw_entry *e = &f->l->e[i];
    size_t n = (size_t)stw_numel(e);
    if (ends_with(e->name, ".bias") || e->n_dims == 1) {
        float v = ends_with(e->name, ".bias") ? 0.0f : 1.0f;
        for (size_t k = 0; k < n; k++) out[k] = v;
        return SIM_OK;
    }
    dsamp_gauss(hash64(e->name, strlen(e->name), f->seed), out, n);
    double fan_in = (double)n / (double)e->shape[0];
    float sd = strstr(e->name, "embeddings.") ? 0.02f : (float)(1.0 / sqrt(fan_in));
    for (size_t k = 0; k < n; k++) out[k] *= sd;
    return SIM_OK;
}

sim_status sdw_write_random(const char *path, const sdw_list *l, const sdw_opts *o, sim_err *err) {
    fill_ctx f = {l, o->seed};
    const char *meta[] = {"format", "pt", NULL};
    return stw_write(path, l->e, l->n, o->dtype, meta, fill_random, &f, err);
}

// --- folders ---------------------------------------------------------------------------------------

static sim_status make_dir(const char *path, sim_err *err) {
    if (mkdir(path, 0755) != 0 && errno != EEXIST) return err_set(err, SIM_ERR_IO, "%s: %s", path, strerror(errno));
    return SIM_OK;
}

// "<dir>/<rel>" into buf.
static sim_status join(char *buf, size_t cap, const char *dir, const char *rel, sim_err *err) {
    int k = snprintf(buf, cap, "%s/%s", dir, rel);
    if (k < 0 || (size_t)k >= cap) return err_set(err, SIM_ERR_RANGE, "%s/%s: path too long", dir, rel);
    return SIM_OK;
}

// Writes j (taking the reference) as indented JSON to dir/rel.
static sim_status write_json(const char *dir, const char *rel, json_t *j, sim_err *err) {
    char path[1200];
    sim_status st = join(path, sizeof path, dir, rel, err);
    char *text = j && st == SIM_OK ? json_dumps(j, JSON_INDENT(2) | JSON_PRESERVE_ORDER) : NULL;
    if (st == SIM_OK && !text) st = err_set(err, SIM_ERR_NOMEM, "%s: out of memory", path);
    if (st == SIM_OK) st = file_write_all(path, text, strlen(text), err);
    free(text);
    json_decref(j);
    return st;
}

// A float config value as its shortest decimal (1e-05, not 9.99999974e-06).
static json_t *real(float x) {
    char buf[32];
    snprintf(buf, sizeof buf, "%.7g", (double)x);
    return json_real(strtod(buf, NULL));
}

static json_t *int_list(const int *v, int n) {
    json_t *a = json_array();
    for (int i = 0; a && i < n; i++) json_array_append_new(a, json_integer(v[i]));
    return a;
}

static json_t *clip_json(const dif_clip_config *c) {
    return json_pack("{s:[s],s:i,s:i,s:i,s:i,s:i,s:i,s:s,s:o,s:i,s:i,s:i,s:s}", "architectures", "CLIPTextModel", "hidden_size",
                     c->hidden, "intermediate_size", c->intermediate, "num_attention_heads", c->n_heads, "num_hidden_layers",
                     c->n_layers, "vocab_size", c->vocab, "max_position_embeddings", c->n_pos, "hidden_act",
                     c->act == DIF_ACT_GELU ? "gelu" : "quick_gelu", "layer_norm_eps", real(c->ln_eps), "bos_token_id", c->bos,
                     "eos_token_id", c->eos, "pad_token_id", 1, "torch_dtype", "float32");
}

static json_t *block_types(const dif_block *b, int n, const char *plain, const char *cross) {
    json_t *a = json_array();
    for (int i = 0; a && i < n; i++) json_array_append_new(a, json_string(b[i] == DIF_BLOCK_CROSSATTN ? cross : plain));
    return a;
}

static json_t *unet_json(const dif_unet_config *c) {
    bool same = true;
    for (int i = 1; i < c->n_blocks; i++) same = same && c->n_heads[i] == c->n_heads[0];
    // attention_head_dim holds head counts in SD 1.x/2.x configs (diffusers' historical naming).
    json_t *heads = same ? json_integer(c->n_heads[0]) : int_list(c->n_heads, c->n_blocks);
    return json_pack("{s:s,s:i,s:i,s:i,s:o,s:i,s:o,s:i,s:o,s:o,s:s?,s:i,s:i,s:o,s:b,s:b,s:i,s:s,s:b,s:i}", "_class_name",
                     "UNet2DConditionModel", "sample_size", c->cross_dim == 1024 ? 96 : 64, "in_channels", c->in_ch, "out_channels",
                     c->out_ch, "block_out_channels", int_list(c->block_out, c->n_blocks), "layers_per_block", c->layers_per_block,
                     "attention_head_dim", heads, "cross_attention_dim", c->cross_dim, "down_block_types",
                     block_types(c->down, c->n_blocks, "DownBlock2D", "CrossAttnDownBlock2D"), "up_block_types",
                     block_types(c->up, c->n_blocks, "UpBlock2D", "CrossAttnUpBlock2D"), "mid_block_type",
                     c->mid_block ? "UNetMidBlock2DCrossAttn" : NULL, "transformer_layers_per_block", c->transformer_layers,
                     "norm_num_groups", c->groups, "norm_eps", real(c->norm_eps), "use_linear_projection", c->linear_proj,
                     "flip_sin_to_cos", c->flip_sin_to_cos, "freq_shift", c->freq_shift, "act_fn", "silu", "center_input_sample", 0,
                     "downsample_padding", 1);
}

static json_t *vae_json(const dif_vae_config *c) {
    json_t *down = json_array(), *up = json_array();
    for (int i = 0; down && up && i < c->n_blocks; i++) {
        json_array_append_new(down, json_string("DownEncoderBlock2D"));
        json_array_append_new(up, json_string("UpDecoderBlock2D"));
    }
    return json_pack("{s:s,s:i,s:i,s:i,s:o,s:i,s:i,s:o,s:o,s:s,s:o,s:i}", "_class_name", "AutoencoderKL", "in_channels", c->in_ch,
                     "out_channels", c->out_ch, "latent_channels", c->latent_ch, "block_out_channels", int_list(c->block_out, c->n_blocks),
                     "layers_per_block", c->layers_per_block, "norm_num_groups", c->groups, "down_block_types", down, "up_block_types", up,
                     "act_fn", "silu", "scaling_factor", real(c->scaling_factor), "sample_size", 512);
}

// The scheduler SD ships with; SD 2.1 (768) predicts v.
static json_t *scheduler_json(const dif_pipeline *p) {
    return json_pack("{s:s,s:i,s:f,s:f,s:s,s:s,s:b,s:i,s:b,s:b}", "_class_name", "PNDMScheduler", "num_train_timesteps", 1000,
                     "beta_start", 0.00085, "beta_end", 0.012, "beta_schedule", "scaled_linear", "prediction_type",
                     p->unet.cross_dim == 1024 ? "v_prediction" : "epsilon", "set_alpha_to_one", 0, "steps_offset", 1, "skip_prk_steps",
                     1, "clip_sample", 0);
}

static json_t *index_json(void) {
    return json_pack("{s:s,s:[ss],s:[ss],s:[ss],s:[ss],s:[ss]}", "_class_name", "StableDiffusionPipeline", "scheduler", "diffusers",
                     "PNDMScheduler", "text_encoder", "transformers", "CLIPTextModel", "tokenizer", "transformers", "CLIPTokenizer", "unet",
                     "diffusers", "UNet2DConditionModel", "vae", "diffusers", "AutoencoderKL");
}

// Copies the tokenizer after checking it loads and matches the vocabulary size.
static sim_status copy_tokenizer(const char *dir, const char *from, int vocab, sim_err *err) {
    char v[1200], m[1200];
    sim_status st = join(v, sizeof v, from, "vocab.json", err);
    if (st == SIM_OK) st = join(m, sizeof m, from, "merges.txt", err);
    clip_tok *t = NULL;
    if (st == SIM_OK) st = clip_tok_load(&t, v, m, err);
    if (st == SIM_OK && clip_tok_n_vocab(t) != vocab)
        st = err_set(err, SIM_ERR_FORMAT, "%s: %d tokens, the text encoder has %d", v, clip_tok_n_vocab(t), vocab);
    clip_tok_free(t);
    const char *files[] = {"vocab.json", "merges.txt"};
    for (int i = 0; i < 2 && st == SIM_OK; i++) {
        char src[1200], dst[1200], rel[64], *text;
        size_t n;
        snprintf(rel, sizeof rel, "tokenizer/%s", files[i]);
        st = join(src, sizeof src, from, files[i], err);
        if (st == SIM_OK) st = join(dst, sizeof dst, dir, rel, err);
        if (st == SIM_OK) st = file_read_all(src, 64u << 20, &text, &n, err);
        if (st == SIM_OK) {
            st = file_write_all(dst, text, n, err);
            mem_free(text);
        }
    }
    return st;
}

// One component's random weights into dir/rel.
static sim_status write_component(const char *dir, const char *rel, sim_status st, const sdw_list *l, const sdw_opts *o,
                                  int64_t *n_params, sim_err *err) {
    char path[1200];
    if (st == SIM_OK) st = join(path, sizeof path, dir, rel, err);
    if (st == SIM_OK) st = sdw_write_random(path, l, o, err);
    if (st == SIM_OK) *n_params += sdw_list_params(l);
    return st;
}

sim_status sdw_write_pipeline(const char *dir, const dif_pipeline *p, const sdw_opts *o, int64_t *n_params, sim_err *err) {
    *n_params = 0;
    if (!o->tokenizer) return err_set(err, SIM_ERR_ARG, "%s: no tokenizer folder to copy", dir);
    sim_status st = make_dir(dir, err);
    const char *subs[] = {"text_encoder", "tokenizer", "unet", "vae", "scheduler"};
    for (size_t i = 0; i < ARRAY_LEN(subs) && st == SIM_OK; i++) {
        char path[1200];
        st = join(path, sizeof path, dir, subs[i], err);
        if (st == SIM_OK) st = make_dir(path, err);
    }
    if (st == SIM_OK) st = copy_tokenizer(dir, o->tokenizer, p->clip.vocab, err);
    // The padding token: SD 2.x's OpenCLIP tokenizer pads with "!" (id 0), SD 1.x with the end token.
    if (st == SIM_OK)
        st = write_json(dir, "tokenizer/special_tokens_map.json",
                        json_pack("{s:s}", "pad_token", dif_unet_family(&p->unet) == DIF_FAMILY_SD2 ? "!" : "<|endoftext|>"), err);
    if (st == SIM_OK) st = write_json(dir, "model_index.json", index_json(), err);
    if (st == SIM_OK) st = write_json(dir, "scheduler/scheduler_config.json", scheduler_json(p), err);
    if (st == SIM_OK) st = write_json(dir, "text_encoder/config.json", clip_json(&p->clip), err);
    if (st == SIM_OK) st = write_json(dir, "unet/config.json", unet_json(&p->unet), err);
    if (st == SIM_OK) st = write_json(dir, "vae/config.json", vae_json(&p->vae), err);
    sdw_list l = {0};
    if (st == SIM_OK) st = write_component(dir, "text_encoder/model.safetensors", sdw_clip_tensors(&l, &p->clip, err), &l, o, n_params, err);
    sdw_list_free(&l);
    if (st == SIM_OK)
        st = write_component(dir, "unet/diffusion_pytorch_model.safetensors", sdw_unet_tensors(&l, &p->unet, err), &l, o, n_params, err);
    sdw_list_free(&l);
    if (st == SIM_OK)
        st = write_component(dir, "vae/diffusion_pytorch_model.safetensors", sdw_vae_tensors(&l, &p->vae, err), &l, o, n_params, err);
    sdw_list_free(&l);
    return st;
}

sim_status sdw_write_taesd(const char *dir, int latent_ch, const sdw_opts *o, int64_t *n_params, sim_err *err) {
    *n_params = 0;
    if (latent_ch < 1 || latent_ch > 256) return err_set(err, SIM_ERR_ARG, "%d latent channels (1 to 256)", latent_ch);
    sim_status st = make_dir(dir, err);
    sdw_list l = {0};
    if (st == SIM_OK) st = write_component(dir, "taesd_decoder.safetensors", sdw_taesd_tensors(&l, latent_ch, true, err), &l, o, n_params, err);
    sdw_list_free(&l);
    if (st == SIM_OK) st = write_component(dir, "taesd_encoder.safetensors", sdw_taesd_tensors(&l, latent_ch, false, err), &l, o, n_params, err);
    sdw_list_free(&l);
    return st;
}
