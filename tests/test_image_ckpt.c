// test_image_ckpt.c — single-file checkpoints (src/image/ckpt.h). The test
// writes LDM-named files from diffusers weights with its own inverse
// mapping (a walk over the LDM layout, unlike the module's arithmetic),
// checked against names of the published SD 1.5 checkpoint, then:
//  - micro-sd15 as one file reproduces the U-Net, VAE and text encoder of
//    the diffusers folder bit for bit (and so the golden outputs);
//  - random SD 1.5- and SD 2.x-shaped models (the latter with the OpenCLIP
//    text tower, q/k/v stacked) give back their configurations by
//    inference and generate the same image through sd_load as the folder;
//  - other families, InstructPix2Pix, missing tensors, no tokenizer are refused
//    by name;
//  - micro-sd15's U-Net as a GGUF (F16, or Q8_0 matrices) stays within the
//    quantization error of the golden output; broken GGUFs are refused.
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "base/file.h"
#include "image/ckpt.h"
#include "image/clip_text.h"
#include "image/sd.h"
#include "image/sdwrite.h"
#include "image/unet.h"
#include "image/vae.h"
#include "model/gguf.h"
#include "test.h"

static char g_tmp[256];
static pool *g_pool;

// --- the inverse mapping: diffusers → LDM by walking the LDM layout -------------------------------

typedef enum pkind { PK_PLAIN, PK_UNET_RES, PK_VAE_RES, PK_VAE_ATTN } pkind;
typedef struct pair {
    char ldm[96], dif[96];
    pkind kind;
} pair;
static pair g_pairs[1024];
static int g_np;

static void add_pair(pkind k, const char *ldm, const char *dif) {
    if (g_np >= (int)ARRAY_LEN(g_pairs)) abort();
    snprintf(g_pairs[g_np].ldm, sizeof g_pairs[g_np].ldm, "%s", ldm);
    snprintf(g_pairs[g_np].dif, sizeof g_pairs[g_np].dif, "%s", dif);
    g_pairs[g_np++].kind = k;
}

// prefix + printf(f, ...) into buf; returns buf.
static const char *fmt(char *buf, size_t cap, const char *prefix, const char *f, ...) __attribute__((format(printf, 4, 5)));
static const char *fmt(char *buf, size_t cap, const char *prefix, const char *f, ...) {
    int k = snprintf(buf, cap, "%s", prefix);
    va_list ap;
    va_start(ap, f);
    vsnprintf(buf + k, cap - (size_t)k, f, ap);
    va_end(ap);
    return buf;
}

static void unet_pairs(const dif_unet_config *c) {
    const char *px = "model.diffusion_model.";
    char a[96], b[96];
    int n = c->n_blocks, L = c->layers_per_block, K = 1;
    add_pair(PK_PLAIN, "model.diffusion_model.time_embed.0.", "time_embedding.linear_1.");
    add_pair(PK_PLAIN, "model.diffusion_model.time_embed.2.", "time_embedding.linear_2.");
    add_pair(PK_PLAIN, "model.diffusion_model.input_blocks.0.0.", "conv_in.");
    add_pair(PK_PLAIN, "model.diffusion_model.out.0.", "conv_norm_out.");
    add_pair(PK_PLAIN, "model.diffusion_model.out.2.", "conv_out.");
    for (int i = 0; i < n; i++) {
        for (int j = 0; j < L; j++, K++) {
            add_pair(PK_UNET_RES, fmt(a, sizeof a, px, "input_blocks.%d.0.", K), fmt(b, sizeof b, "", "down_blocks.%d.resnets.%d.", i, j));
            add_pair(PK_PLAIN, fmt(a, sizeof a, px, "input_blocks.%d.1.", K), fmt(b, sizeof b, "", "down_blocks.%d.attentions.%d.", i, j));
        }
        if (i + 1 < n) add_pair(PK_PLAIN, fmt(a, sizeof a, px, "input_blocks.%d.0.op.", K++), fmt(b, sizeof b, "", "down_blocks.%d.downsamplers.0.conv.", i));
    }
    add_pair(PK_UNET_RES, "model.diffusion_model.middle_block.0.", "mid_block.resnets.0.");
    add_pair(PK_PLAIN, "model.diffusion_model.middle_block.1.", "mid_block.attentions.0.");
    add_pair(PK_UNET_RES, "model.diffusion_model.middle_block.2.", "mid_block.resnets.1.");
    K = 0;
    for (int i = 0; i < n; i++)
        for (int j = 0; j <= L; j++, K++) {
            add_pair(PK_UNET_RES, fmt(a, sizeof a, px, "output_blocks.%d.0.", K), fmt(b, sizeof b, "", "up_blocks.%d.resnets.%d.", i, j));
            bool attn = c->up[i] == DIF_BLOCK_CROSSATTN;
            if (attn) add_pair(PK_PLAIN, fmt(a, sizeof a, px, "output_blocks.%d.1.", K), fmt(b, sizeof b, "", "up_blocks.%d.attentions.%d.", i, j));
            if (j == L && i + 1 < n)
                add_pair(PK_PLAIN, fmt(a, sizeof a, px, "output_blocks.%d.%d.conv.", K, attn ? 2 : 1), fmt(b, sizeof b, "", "up_blocks.%d.upsamplers.0.conv.", i));
        }
}

static void vae_pairs(const dif_vae_config *c) {
    const char *px = "first_stage_model.";
    char a[96], b[96];
    int n = c->n_blocks;
    for (int i = 0; i < n; i++) {
        for (int j = 0; j < c->layers_per_block; j++)
            add_pair(PK_VAE_RES, fmt(a, sizeof a, px, "encoder.down.%d.block.%d.", i, j), fmt(b, sizeof b, "", "encoder.down_blocks.%d.resnets.%d.", i, j));
        if (i + 1 < n) add_pair(PK_PLAIN, fmt(a, sizeof a, px, "encoder.down.%d.downsample.conv.", i), fmt(b, sizeof b, "", "encoder.down_blocks.%d.downsamplers.0.conv.", i));
    }
    // The decoder's levels count from the top: up.(n-1) runs first.
    for (int lvl = n - 1, i = 0; lvl >= 0; lvl--, i++) {
        for (int j = 0; j <= c->layers_per_block; j++)
            add_pair(PK_VAE_RES, fmt(a, sizeof a, px, "decoder.up.%d.block.%d.", lvl, j), fmt(b, sizeof b, "", "decoder.up_blocks.%d.resnets.%d.", i, j));
        if (lvl > 0) add_pair(PK_PLAIN, fmt(a, sizeof a, px, "decoder.up.%d.upsample.conv.", lvl), fmt(b, sizeof b, "", "decoder.up_blocks.%d.upsamplers.0.conv.", i));
    }
    const char *half[2] = {"encoder", "decoder"};
    for (int h = 0; h < 2; h++) {
        add_pair(PK_VAE_RES, fmt(a, sizeof a, px, "%s.mid.block_1.", half[h]), fmt(b, sizeof b, "", "%s.mid_block.resnets.0.", half[h]));
        add_pair(PK_VAE_ATTN, fmt(a, sizeof a, px, "%s.mid.attn_1.", half[h]), fmt(b, sizeof b, "", "%s.mid_block.attentions.0.", half[h]));
        add_pair(PK_VAE_RES, fmt(a, sizeof a, px, "%s.mid.block_2.", half[h]), fmt(b, sizeof b, "", "%s.mid_block.resnets.1.", half[h]));
        add_pair(PK_PLAIN, fmt(a, sizeof a, px, "%s.norm_out.", half[h]), fmt(b, sizeof b, "", "%s.conv_norm_out.", half[h]));
    }
    add_pair(PK_PLAIN, "first_stage_model.", ""); // conv_in, conv_out, quant_conv, post_quant_conv
}

// The LDM name of diffusers name d (the longest matching pair), and whether
// it is a VAE attention weight (stored as a 1×1 conv).
static bool to_ldm(const char *d, char *out, size_t cap, bool *conv1x1) {
    int best = -1;
    size_t bl = 0;
    for (int i = 0; i < g_np; i++) {
        size_t k = strlen(g_pairs[i].dif);
        if (strncmp(d, g_pairs[i].dif, k) == 0 && (best < 0 || k > bl)) best = i, bl = k;
    }
    if (best < 0) return false;
    static const char *const ures[] = {"norm1.", "in_layers.0.", "conv1.", "in_layers.2.", "time_emb_proj.", "emb_layers.1.",
                                       "norm2.", "out_layers.0.", "conv2.", "out_layers.3.", "conv_shortcut.", "skip_connection."};
    static const char *const vres[] = {"conv_shortcut.", "nin_shortcut."};
    static const char *const vatt[] = {"group_norm.", "norm.", "to_q.", "q.", "to_k.", "k.", "to_v.", "v.", "to_out.0.", "proj_out."};
    const char *rest = d + bl, *const *tab = NULL;
    int nt = 0;
    pkind k = g_pairs[best].kind;
    if (k == PK_UNET_RES) tab = ures, nt = ARRAY_LEN(ures);
    if (k == PK_VAE_RES) tab = vres, nt = ARRAY_LEN(vres);
    if (k == PK_VAE_ATTN) tab = vatt, nt = ARRAY_LEN(vatt);
    *conv1x1 = k == PK_VAE_ATTN && strstr(rest, ".weight") && !strstr(rest, "norm");
    for (int i = 0; i < nt; i += 2)
        if (strncmp(rest, tab[i], strlen(tab[i])) == 0) {
            snprintf(out, cap, "%s%s%s", g_pairs[best].ldm, tab[i + 1], rest + strlen(tab[i]));
            return true;
        }
    snprintf(out, cap, "%s%s", g_pairs[best].ldm, rest);
    return true;
}

// --- writing a single file from diffusers files -------------------------------------------------

typedef struct src_ref {
    const st_file *f; // NULL: zeros
    const char *names[3];
    int n;            // sources stacked along the first dimension
} src_ref;

typedef struct writer {
    stw_entry e[2048];
    src_ref r[2048];
    int n;
} writer;

static void put(writer *w, const char *name, int nd, const int64_t *shape, src_ref r) {
    if (w->n >= (int)ARRAY_LEN(w->e)) abort();
    stw_entry *e = &w->e[w->n];
    size_t len = strlen(name);
    if (len >= sizeof e->name) abort();
    memcpy(e->name, name, len + 1);
    e->n_dims = nd;
    memcpy(e->shape, shape, (size_t)nd * sizeof *shape);
    w->r[w->n++] = r;
}

static sim_status fill(void *ud, int i, float *out, sim_err *err) {
    const src_ref *r = &((writer *)ud)->r[i];
    int64_t n = stw_numel(&((writer *)ud)->e[i]);
    if (!r->f) {
        memset(out, 0, (size_t)n * sizeof *out);
        return SIM_OK;
    }
    for (int k = 0; k < r->n; k++) {
        sim_status st = st_read_f32(r->f, r->names[k], NULL, 0, out + k * (n / r->n), err);
        if (st != SIM_OK) return st;
    }
    return SIM_OK;
}

// When set, conv_in takes 9 channels (an inpainting U-Net; zero weights).
static bool g_widen;

// Every tensor of a diffusers U-Net or VAE file under its LDM name.
static void put_mapped(writer *w, const st_file *f) {
    for (int i = 0; i < f->n_tensors; i++) {
        const st_tensor *t = &f->tensors[i];
        char ldm[200];
        bool c11 = false;
        if (!to_ldm(t->name, ldm, sizeof ldm, &c11)) {
            CHECK_MSG(0, "no LDM name for %s", t->name);
            continue;
        }
        int64_t shape[4] = {t->shape[0], t->n_dims > 1 ? t->shape[1] : 1, 1, 1};
        if (g_widen && strcmp(t->name, "conv_in.weight") == 0) {
            put(w, ldm, 4, (int64_t[]){t->shape[0], 9, t->shape[2], t->shape[3]}, (src_ref){NULL, {NULL}, 1});
            continue;
        }
        put(w, ldm, c11 ? 4 : t->n_dims, c11 ? shape : t->shape, (src_ref){f, {t->name}, 1});
    }
}

// SD 1.x text: the transformers names under cond_stage_model.transformer.
static void put_clip(writer *w, const st_file *f) {
    for (int i = 0; i < f->n_tensors; i++) {
        char ldm[200];
        snprintf(ldm, sizeof ldm, "cond_stage_model.transformer.%s", f->tensors[i].name);
        put(w, ldm, f->tensors[i].n_dims, f->tensors[i].shape, (src_ref){f, {f->tensors[i].name}, 1});
    }
}

// SD 2.x text: OpenCLIP names, q/k/v stacked, one more (unused) block and the projection.
static void put_openclip(writer *w, const st_file *f, const dif_clip_config *c) {
    const char *px = "cond_stage_model.model.";
    char ldm[200], a[3][160];
    static char keep[64][3][160]; // names outlive this call (the writer reads them later)
    int C = c->hidden, I = c->intermediate;
    snprintf(ldm, sizeof ldm, "%stoken_embedding.weight", px);
    put(w, ldm, 2, (int64_t[]){c->vocab, C}, (src_ref){f, {"text_model.embeddings.token_embedding.weight"}, 1});
    snprintf(ldm, sizeof ldm, "%spositional_embedding", px);
    put(w, ldm, 2, (int64_t[]){c->n_pos, C}, (src_ref){f, {"text_model.embeddings.position_embedding.weight"}, 1});
    for (int l = 0; l <= c->n_layers; l++) {
        const st_file *s = l < c->n_layers ? f : NULL; // the last block SD 2.x drops: zeros
        static const char *const pairs[] = {"ln_1.weight", "layer_norm1.weight", "ln_1.bias", "layer_norm1.bias",
                                            "attn.out_proj.weight", "self_attn.out_proj.weight", "attn.out_proj.bias", "self_attn.out_proj.bias",
                                            "ln_2.weight", "layer_norm2.weight", "ln_2.bias", "layer_norm2.bias",
                                            "mlp.c_fc.weight", "mlp.fc1.weight", "mlp.c_fc.bias", "mlp.fc1.bias",
                                            "mlp.c_proj.weight", "mlp.fc2.weight", "mlp.c_proj.bias", "mlp.fc2.bias"};
        for (size_t k = 0; k < ARRAY_LEN(pairs); k += 2) {
            snprintf(ldm, sizeof ldm, "%stransformer.resblocks.%d.%s", px, l, pairs[k]);
            char *src = keep[l][0];
            snprintf(src, 160, "text_model.encoder.layers.%d.%s", l, pairs[k + 1]);
            const st_tensor *t = s ? st_find(s, src) : NULL;
            bool mat = strstr(pairs[k], "weight") && !strstr(pairs[k], "ln_");
            int64_t rows = strstr(pairs[k], "c_fc") ? I : C, cols = strstr(pairs[k], "c_proj") ? I : C;
            put(w, ldm, mat ? 2 : 1, mat ? (int64_t[]){rows, cols} : (int64_t[]){rows}, (src_ref){s, {t ? t->name : NULL}, 1});
        }
        for (int b = 0; b < 2; b++) {
            const char *kind = b ? "bias" : "weight";
            for (int q = 0; q < 3; q++)
                snprintf(a[q], sizeof a[q], "text_model.encoder.layers.%d.self_attn.%c_proj.%s", l, "qkv"[q], kind);
            const st_tensor *t[3];
            for (int q = 0; q < 3; q++) t[q] = s ? st_find(s, a[q]) : NULL;
            snprintf(ldm, sizeof ldm, "%stransformer.resblocks.%d.attn.in_proj_%s", px, l, kind);
            put(w, ldm, b ? 1 : 2, b ? (int64_t[]){3 * C} : (int64_t[]){3 * C, C},
                (src_ref){s, {t[0] ? t[0]->name : NULL, t[1] ? t[1]->name : NULL, t[2] ? t[2]->name : NULL}, 3});
        }
    }
    put(w, "cond_stage_model.model.ln_final.weight", 1, (int64_t[]){C}, (src_ref){f, {"text_model.final_layer_norm.weight"}, 1});
    put(w, "cond_stage_model.model.ln_final.bias", 1, (int64_t[]){C}, (src_ref){f, {"text_model.final_layer_norm.bias"}, 1});
    put(w, "cond_stage_model.model.text_projection", 2, (int64_t[]){C, C}, (src_ref){NULL, {NULL}, 1});
}

typedef struct folder {
    dif_pipeline p;
    st_file *unet, *vae, *text;
} folder;

static bool open_folder(folder *fo, const char *dir) {
    memset(fo, 0, sizeof *fo);
    sim_err err = {0};
    char path[1200];
    bool ok = dif_open(&fo->p, dir, &err) == SIM_OK;
    ok = ok && dif_path(&fo->p, "unet/diffusion_pytorch_model.safetensors", path, sizeof path, &err) == SIM_OK && st_open(&fo->unet, path, &err) == SIM_OK;
    ok = ok && dif_path(&fo->p, "vae/diffusion_pytorch_model.safetensors", path, sizeof path, &err) == SIM_OK && st_open(&fo->vae, path, &err) == SIM_OK;
    ok = ok && dif_path(&fo->p, "text_encoder/model.safetensors", path, sizeof path, &err) == SIM_OK && st_open(&fo->text, path, &err) == SIM_OK;
    CHECK_MSG(ok, "%s", err.msg);
    return ok;
}

static void close_folder(folder *fo) {
    st_close(fo->unet), st_close(fo->vae), st_close(fo->text);
}

// The folder's weights as one LDM-named file at path (OpenCLIP names when
// openclip), every name after `lead` (as a .ckpt's "state_dict.").
static bool write_single_lead(const folder *fo, const char *path, bool openclip, const char *lead) {
    static writer w;
    w.n = 0, g_np = 0;
    unet_pairs(&fo->p.unet);
    vae_pairs(&fo->p.vae);
    put_mapped(&w, fo->unet);
    put_mapped(&w, fo->vae);
    if (openclip) put_openclip(&w, fo->text, &fo->p.clip);
    else put_clip(&w, fo->text);
    for (int i = 0; i < w.n; i++) {
        char name[128];
        snprintf(name, sizeof name, "%s%s", lead, w.e[i].name);
        memcpy(w.e[i].name, name, sizeof name);
    }
    sim_err err = {0};
    sim_status st = stw_write(path, w.e, w.n, ST_F32, NULL, fill, &w, &err);
    CHECK_MSG(st == SIM_OK, "%s", err.msg);
    return st == SIM_OK;
}

static bool write_single(const folder *fo, const char *path, bool openclip) { return write_single_lead(fo, path, openclip, ""); }

static const st_tensor *find_in(const char *path, const char *name, st_file **keep) {
    sim_err err;
    if (!*keep && st_open(keep, path, &err) != SIM_OK) return NULL;
    return st_find(*keep, name);
}

// --- tests ---------------------------------------------------------------------------------------

static void check_same_f32(const char *what, const float *a, const float *b, size_t n) {
    size_t bad = 0;
    for (size_t i = 0; i < n; i++) bad += memcmp(&a[i], &b[i], sizeof *a) != 0;
    CHECK_MSG(bad == 0, "%s: %zu of %zu values differ", what, bad, n);
}

static void test_micro_single_file(void) {
    char dir[1024], path[400];
    if (!test_shared_path(dir, sizeof dir, "diffusion/micro-sd15")) return;
    folder fo;
    if (!open_folder(&fo, dir)) return;
    snprintf(path, sizeof path, "%s/micro.safetensors", g_tmp);
    if (!write_single(&fo, path, false)) return;
    // The LDM layout at 2 levels of 1 layer: input 1 resnet, 2 downsampler, 3 resnet; output 0-1, 2-3.
    st_file *f = NULL;
    CHECK(find_in(path, "model.diffusion_model.input_blocks.2.0.op.weight", &f) != NULL);
    CHECK(find_in(path, "model.diffusion_model.output_blocks.1.1.conv.weight", &f) != NULL); // up block 0 has no attention
    CHECK(find_in(path, "model.diffusion_model.output_blocks.3.1.proj_in.weight", &f) != NULL);
    CHECK(find_in(path, "model.diffusion_model.input_blocks.1.0.emb_layers.1.weight", &f) != NULL);
    CHECK(find_in(path, "first_stage_model.decoder.up.1.block.0.conv1.weight", &f) != NULL);
    CHECK(find_in(path, "first_stage_model.decoder.up.1.upsample.conv.weight", &f) != NULL);
    CHECK(find_in(path, "first_stage_model.encoder.down.1.block.0.nin_shortcut.weight", &f) != NULL);
    const st_tensor *q = find_in(path, "first_stage_model.encoder.mid.attn_1.q.weight", &f);
    CHECK(q && q->n_dims == 4 && q->shape[2] == 1 && q->shape[3] == 1);
    CHECK(find_in(path, "cond_stage_model.transformer.text_model.encoder.layers.1.self_attn.q_proj.weight", &f) != NULL);
    st_close(f);

    sim_err err = {0};
    ckpt *c = NULL;
    CHECK_MSG(ckpt_open(&c, path, &fo.p, &err) == SIM_OK, "%s", err.msg);
    if (!c) return close_folder(&fo);
    CHECK(c->unet && c->vae && c->text);
    op_ctx ctx = {.pool = g_pool, .k = kern_get(KERN_BEST)};
    // U-Net: t = 500 on the golden latent and context, both loads.
    static float x[256], ref[256], cond[77 * 32], e1[256], e2[256];
    if (test_golden_f32("diffusion/micro-sd15/unet.in.latent.f32", x, 256) && test_golden_f32("diffusion/micro-sd15/unet.out.t500.f32", ref, 256) &&
        test_golden_f32("diffusion/micro-sd15/clip.prompt.hidden.f32", cond, 77 * 32)) {
        unet *u1 = NULL, *u2 = NULL;
        unet_work *w = NULL;
        CHECK_MSG(unet_load(&u1, &fo.p.unet, fo.unet, &err) == SIM_OK, "%s", err.msg);
        CHECK_MSG(unet_load(&u2, &c->cfg.unet, c->unet, &err) == SIM_OK, "%s", err.msg);
        if (u1 && u2 && unet_work_new(&w, u1, 8, 8, 77, &err) == SIM_OK) {
            CHECK_EQ_INT(unet_forward(u1, w, &ctx, x, 8, 8, 500.0f, cond, 77, e1, &err), SIM_OK);
            CHECK_EQ_INT(unet_forward(u2, w, &ctx, x, 8, 8, 500.0f, cond, 77, e2, &err), SIM_OK);
            check_same_f32("U-Net folder vs single file", e1, e2, 256);
            test_compare_rel("single-file U-Net vs golden", e2, ref, 256, 1e-3);
        }
        unet_work_free(w);
        unet_free(u1), unet_free(u2);
    }
    // VAE decode.
    static float z[256], img_ref[768], i1[768], i2[768];
    if (test_golden_f32("diffusion/micro-sd15/vae.decode.in.f32", z, 256) && test_golden_f32("diffusion/micro-sd15/vae.decode.out.f32", img_ref, 768)) {
        vae *v1 = NULL, *v2 = NULL;
        vae_work *w = NULL;
        CHECK_MSG(vae_load(&v1, &fo.p.vae, fo.vae, &err) == SIM_OK, "%s", err.msg);
        CHECK_MSG(vae_load(&v2, &c->cfg.vae, c->vae, &err) == SIM_OK, "%s", err.msg);
        if (v1 && v2 && vae_work_new(&w, v1, 8, 8, &err) == SIM_OK) {
            CHECK_EQ_INT(vae_decode(v1, w, &ctx, z, 8, 8, i1, &err), SIM_OK);
            CHECK_EQ_INT(vae_decode(v2, w, &ctx, z, 8, 8, i2, &err), SIM_OK);
            check_same_f32("VAE folder vs single file", i1, i2, 768);
            test_compare_rel("single-file VAE vs golden", i2, img_ref, 768, 1e-3);
        }
        vae_work_free(w);
        vae_free(v1), vae_free(v2);
    }
    // Text encoder on the golden prompt ids.
    static const int32_t ids[77] = {49406, 272, 1611, 267, 2368, 9861, 267, 900, 267, 4852, 1901, 5994, 267, 274, 270, 275, 1774, 32544};
    static int32_t full[77];
    static float h1[77 * 32], h2[77 * 32], href[77 * 32];
    for (int i = 0; i < 77; i++) full[i] = i < 18 ? ids[i] : 49407;
    if (test_golden_f32("diffusion/micro-sd15/clip.prompt.hidden.f32", href, 77 * 32)) {
        clip_text *t1 = NULL, *t2 = NULL;
        CHECK_MSG(clip_text_load(&t1, &fo.p.clip, fo.text, &err) == SIM_OK, "%s", err.msg);
        CHECK_MSG(clip_text_load(&t2, &c->cfg.clip, c->text, &err) == SIM_OK, "%s", err.msg);
        if (t1 && t2) {
            CHECK_EQ_INT(clip_text_encode(t1, &ctx, full, 77, 0, h1, &err), SIM_OK);
            CHECK_EQ_INT(clip_text_encode(t2, &ctx, full, 77, 0, h2, &err), SIM_OK);
            check_same_f32("text encoder folder vs single file", h1, h2, 77 * 32);
            test_compare_rel("single-file text encoder vs golden", h2, href, 77 * 32, 1e-3);
        }
        clip_text_free(t1), clip_text_free(t2);
    }
    ckpt_close(c);
    close_folder(&fo);
    // The folder with the single file's U-Net (--unet; configured like the folder) generates the same.
    sd_model *m1 = NULL, *m3 = NULL;
    CHECK_MSG(sd_load(&m1, dir, &err) == SIM_OK, "%s", err.msg);
    CHECK_MSG(sd_load_ex(&m3, dir, &(sd_load_opts){.unet = path}, &err) == SIM_OK, "%s", err.msg);
    if (m1 && m3) {
        static float l1[256], l3[256], img[768];
        sd_params p = sd_defaults();
        p.prompt = "cat ears", p.width = p.height = 16, p.steps = 2, p.seed = 9;
        CHECK_EQ_INT(sd_generate(m1, &ctx, &p, img, l1, &err), SIM_OK);
        CHECK_EQ_INT(sd_generate(m3, &ctx, &p, img, l3, &err), SIM_OK);
        check_same_f32("folder vs folder with the single file's U-Net", l1, l3, 256);
    }
    sd_free(m1), sd_free(m3);
}

// A small random model of family f's structure whose head counts follow the
// single-file inference rules (8 heads in SD 1.x U-Nets, 64 channels per
// head elsewhere).
static void small_model(sdw_family f, dif_pipeline *p) {
    sdw_family_configs(f, p);
    bool v2 = f == SDW_SD21;
    const int u1[4] = {64, 128, 128, 128}, v[4] = {32, 64, 128, 128}; // the real ratios
    for (int i = 0; i < p->unet.n_blocks; i++) {
        p->unet.block_out[i] = u1[i];
        p->unet.n_heads[i] = v2 ? u1[i] / 64 : 8;
        p->unet.head_dim[i] = u1[i] / p->unet.n_heads[i];
        p->vae.block_out[i] = v[i];
    }
    p->vae.groups = 32;
    p->unet.cross_dim = p->clip.hidden = 128;
    p->clip.intermediate = 256, p->clip.n_heads = 2, p->clip.n_layers = 2;
}

static bool same_config(const dif_pipeline *a, const dif_pipeline *b) {
    const dif_unet_config *x = &a->unet, *y = &b->unet;
    bool ok = x->in_ch == y->in_ch && x->out_ch == y->out_ch && x->n_blocks == y->n_blocks && x->layers_per_block == y->layers_per_block &&
              x->cross_dim == y->cross_dim && x->mid_block == y->mid_block && x->linear_proj == y->linear_proj && x->groups == y->groups &&
              x->transformer_layers == y->transformer_layers;
    for (int i = 0; i < x->n_blocks; i++)
        ok = ok && x->block_out[i] == y->block_out[i] && x->down[i] == y->down[i] && x->up[i] == y->up[i] && x->n_heads[i] == y->n_heads[i] &&
             x->head_dim[i] == y->head_dim[i];
    const dif_vae_config *v = &a->vae, *w = &b->vae;
    ok = ok && v->n_blocks == w->n_blocks && v->layers_per_block == w->layers_per_block && v->latent_ch == w->latent_ch && v->in_ch == w->in_ch &&
         v->out_ch == w->out_ch && v->groups == w->groups && v->scaling_factor == w->scaling_factor;
    for (int i = 0; i < v->n_blocks; i++) ok = ok && v->block_out[i] == w->block_out[i];
    const dif_clip_config *c = &a->clip, *d = &b->clip;
    return ok && c->hidden == d->hidden && c->intermediate == d->intermediate && c->n_heads == d->n_heads && c->n_layers == d->n_layers &&
           c->vocab == d->vocab && c->n_pos == d->n_pos && c->act == d->act && c->bos == d->bos && c->eos == d->eos;
}

// Folder and single file of family f generate the same image through sd_load.
static void single_vs_folder(sdw_family f, bool openclip) {
    char tok[1024], dir[400], path[500];
    if (!test_shared_path(tok, sizeof tok, "diffusion/micro-sd15/tokenizer")) return;
    dif_pipeline p;
    small_model(f, &p);
    if (f == SDW_SD21) p.clip.n_heads = 2, p.clip.act = DIF_ACT_GELU;
    snprintf(dir, sizeof dir, "%s/%s", g_tmp, sdw_family_name(f));
    sdw_opts o = {.dtype = ST_F16, .seed = 11, .tokenizer = tok};
    sim_err err = {0};
    int64_t n;
    CHECK_MSG(sdw_write_pipeline(dir, &p, &o, &n, &err) == SIM_OK, "%s", err.msg);
    folder fo;
    if (!open_folder(&fo, dir)) return;
    // Beside the folder's tokenizer/ (found there by sd_load).
    snprintf(path, sizeof path, "%s/model.safetensors", dir);
    bool wrote = write_single(&fo, path, openclip);
    if (wrote && f == SDW_SD15) {
        // The same as an inpainting checkpoint: 9 input channels, inferred.
        char ip[600];
        snprintf(ip, sizeof ip, "%s/inpaint.safetensors", g_tmp);
        g_widen = true;
        ckpt *c = NULL;
        if (write_single(&fo, ip, false)) CHECK_MSG(ckpt_open(&c, ip, NULL, &err) == SIM_OK, "%s", err.msg);
        g_widen = false;
        const st_tensor *t = c ? st_find(c->unet, "conv_in.weight") : NULL;
        CHECK(c && c->cfg.unet.in_ch == 9 && c->cfg.unet.out_ch == 4 && t && t->shape[1] == 9);
        ckpt_close(c);
    }
    close_folder(&fo);
    if (!wrote) return;
    if (f == SDW_SD15) {
        // Names of the published v1-5-pruned-emaonly checkpoint.
        static const char *const real[] = {
            "model.diffusion_model.input_blocks.3.0.op.weight", "model.diffusion_model.input_blocks.11.0.in_layers.0.weight",
            "model.diffusion_model.output_blocks.2.1.conv.weight", "model.diffusion_model.output_blocks.5.2.conv.weight",
            "model.diffusion_model.output_blocks.8.2.conv.weight", "model.diffusion_model.output_blocks.11.1.transformer_blocks.0.attn2.to_k.weight",
            "model.diffusion_model.middle_block.2.out_layers.3.weight", "first_stage_model.decoder.up.3.upsample.conv.weight",
            "first_stage_model.decoder.up.0.block.2.conv2.weight", "first_stage_model.encoder.down.1.block.0.nin_shortcut.weight",
            "first_stage_model.decoder.up.1.block.0.nin_shortcut.weight", "first_stage_model.encoder.down.3.block.1.norm2.bias",
        };
        st_file *sf = NULL;
        for (size_t i = 0; i < ARRAY_LEN(real); i++) CHECK_MSG(find_in(path, real[i], &sf) != NULL, "no %s", real[i]);
        CHECK(find_in(path, "model.diffusion_model.output_blocks.11.2.conv.weight", &sf) == NULL);
        st_close(sf);
    }
    ckpt *c = NULL;
    CHECK_MSG(ckpt_open(&c, path, NULL, &err) == SIM_OK, "%s", err.msg);
    if (c) {
        dif_pipeline want;
        CHECK_EQ_INT(dif_open(&want, dir, &err), SIM_OK);
        CHECK_MSG(same_config(&c->cfg, &want), "%s: inferred configuration differs", sdw_family_name(f));
        CHECK_EQ_INT(c->cfg.family, dif_unet_family(&want.unet));
        ckpt_close(c);
    }
    sd_model *m1 = NULL, *m2 = NULL;
    CHECK_MSG(sd_load(&m1, dir, &err) == SIM_OK, "%s", err.msg);
    CHECK_MSG(sd_load(&m2, path, &err) == SIM_OK, "%s", err.msg);
    if (m1 && m2) {
        op_ctx ctx = {.pool = g_pool, .k = kern_get(KERN_BEST)};
        sd_params sp = sd_defaults();
        sp.prompt = "a red fox in snow";
        sp.negative = "blurry";
        sp.width = sp.height = 64;
        sp.steps = 2;
        sp.seed = 3;
        static float a[3 * 64 * 64], b[3 * 64 * 64];
        CHECK_MSG(sd_generate(m1, &ctx, &sp, a, NULL, &err) == SIM_OK, "%s", err.msg);
        CHECK_MSG(sd_generate(m2, &ctx, &sp, b, NULL, &err) == SIM_OK, "%s", err.msg);
        check_same_f32(sdw_family_name(f), a, b, ARRAY_LEN(a));
        if (f == SDW_SD15) {
            // Alone in a folder without a tokenizer: refused listing where it looked; --tokenizer names one.
            sd_model *m3 = NULL;
            char alone[600], nowhere[600];
            snprintf(alone, sizeof alone, "%s/alone.safetensors", g_tmp);
            snprintf(nowhere, sizeof nowhere, "%s/nowhere", g_tmp);
            char cmd[1300];
            snprintf(cmd, sizeof cmd, "cp '%s' '%s'", path, alone);
            CHECK(system(cmd) == 0);
            CHECK_EQ_INT(sd_load(&m3, alone, &err), SIM_ERR_IO);
            CHECK_MSG(strstr(err.msg, "vocab.json") != NULL, "%s", err.msg);
            CHECK_EQ_INT(sd_load_ex(&m3, alone, &(sd_load_opts){.tokenizer = nowhere}, &err), SIM_ERR_IO);
            CHECK_MSG(strstr(err.msg, "nowhere") != NULL, "%s", err.msg);
            CHECK_MSG(sd_load_ex(&m3, alone, &(sd_load_opts){.tokenizer = tok}, &err) == SIM_OK, "%s", err.msg);
            if (m3) {
                CHECK_MSG(sd_generate(m3, &ctx, &sp, b, NULL, &err) == SIM_OK, "%s", err.msg);
                check_same_f32("single file with --tokenizer", a, b, ARRAY_LEN(a));
            }
            sd_free(m3);
        }
    }
    sd_free(m1);
    sd_free(m2);
}

static void test_sd15_single_file(void) { single_vs_folder(SDW_SD15, false); }
static void test_sd21_single_file(void) { single_vs_folder(SDW_SD21, true); }
static void test_tiny_sd_single_file(void) { single_vs_folder(SDW_TINY_SD, false); }

// A file with the given tensors (all 4×4×3×3 zeros unless a shape is given).
static void write_names(const char *path, const char *const *names, int n, const int64_t *shape0) {
    static writer w;
    w.n = 0;
    for (int i = 0; i < n; i++) put(&w, names[i], 4, i == 0 && shape0 ? shape0 : (int64_t[]){4, 4, 3, 3}, (src_ref){NULL, {NULL}, 1});
    sim_err err;
    CHECK(stw_write(path, w.e, w.n, ST_F16, NULL, fill, &w, &err) == SIM_OK);
}

static void refused(const char *path, sim_status code, const char *want) {
    ckpt *c = NULL;
    sim_err err = {0};
    sim_status st = ckpt_open(&c, path, NULL, &err);
    CHECK_MSG(st == code && !c, "%d: %s", st, err.msg);
    CHECK_MSG(strstr(err.msg, want) != NULL, "'%s' lacks '%s'", err.msg, want);
}

static void test_refusals(void) {
    char path[400];
    snprintf(path, sizeof path, "%s/bad.safetensors", g_tmp);
    const char *sdxl[] = {"model.diffusion_model.input_blocks.0.0.weight", "conditioner.embedders.1.model.ln_final.weight"};
    write_names(path, sdxl, 2, NULL);
    refused(path, SIM_ERR_UNSUPPORTED, "tensor 'conditioner.embedders.1.model.ln_final.weight': looks like SDXL");
    const char *flux[] = {"double_blocks.0.img_attn.qkv.weight"};
    write_names(path, flux, 1, NULL);
    refused(path, SIM_ERR_UNSUPPORTED, "looks like Flux");
    const char *none[] = {"first_stage_model.encoder.conv_in.weight"};
    write_names(path, none, 1, NULL);
    refused(path, SIM_ERR_FORMAT, "no U-Net");
    const char *pix2pix[] = {"model.diffusion_model.input_blocks.0.0.weight", "model.diffusion_model.out.2.weight"};
    write_names(path, pix2pix, 2, (int64_t[]){320, 8, 3, 3});
    refused(path, SIM_ERR_UNSUPPORTED, "'model.diffusion_model.input_blocks.0.0.weight' takes 8 channels: looks like InstructPix2Pix");
    write_names(path, pix2pix, 1, (int64_t[]){320, 4, 3, 3});
    refused(path, SIM_ERR_FORMAT, "missing tensor 'model.diffusion_model.out.2.weight'");

    // micro-sd15 as a file with one tensor missing: named with its diffusers counterpart.
    char dir[1024];
    if (!test_shared_path(dir, sizeof dir, "diffusion/micro-sd15")) return;
    folder fo;
    if (!open_folder(&fo, dir)) return;
    static writer w;
    w.n = 0, g_np = 0;
    unet_pairs(&fo.p.unet);
    vae_pairs(&fo.p.vae);
    put_mapped(&w, fo.unet);
    put_mapped(&w, fo.vae);
    for (int i = 0; i < w.n; i++)
        if (strcmp(w.e[i].name, "first_stage_model.decoder.mid.attn_1.v.weight") == 0) w.e[i] = w.e[--w.n], w.r[i] = w.r[w.n];
    sim_err err = {0};
    CHECK(stw_write(path, w.e, w.n, ST_F32, NULL, fill, &w, &err) == SIM_OK);
    ckpt *c = NULL;
    CHECK_EQ_INT(ckpt_open(&c, path, &fo.p, &err), SIM_ERR_FORMAT);
    CHECK_MSG(strstr(err.msg, "missing tensor 'first_stage_model.decoder.mid.attn_1.v.weight' (the vae's 'decoder.mid_block.attentions.0.to_v.weight')"),
              "%s", err.msg);
    // Names led by "state_dict." (a .ckpt's, flattened) open like the bare ones.
    CHECK(write_single_lead(&fo, path, false, "state_dict."));
    CHECK_MSG(ckpt_open(&c, path, &fo.p, &err) == SIM_OK, "%s", err.msg);
    if (c) CHECK(c->unet && c->vae && c->text && st_find(c->unet, "mid_block.attentions.0.proj_out.weight"));
    ckpt_close(c);
    close_folder(&fo);
    // A PyTorch zip goes through the safe unpickler: taef2's decoder is a .pth without a U-Net.
    char pth[1024];
    if (test_shared_path(pth, sizeof pth, "diffusion/taef2/taef2_decoder.pth")) {
        CHECK_EQ_INT(ckpt_open(&c, pth, NULL, &err), SIM_ERR_FORMAT);
        CHECK_MSG(strstr(err.msg, "taef2_decoder.pth: no U-Net"), "%s", err.msg);
    }
    // No tokenizer beside a lone file.
    clip_tok *t = NULL;
    CHECK_EQ_INT(ckpt_tokenizer(&t, path, NULL, &err), SIM_ERR_IO);
    CHECK_MSG(strstr(err.msg, "no CLIP tokenizer beside the checkpoint") && strstr(err.msg, "bpe_simple_vocab_16e6.txt.gz"), "%s", err.msg);
    CHECK_EQ_INT(ckpt_tokenizer(&t, path, g_tmp, &err), SIM_ERR_IO);
    char clip[1024];
    if (test_shared_path(clip, sizeof clip, "diffusion/clip")) {
        CHECK_MSG(ckpt_tokenizer(&t, path, clip, &err) == SIM_OK, "%s", err.msg);
        CHECK(t && clip_tok_n_vocab(t) == 49408);
        clip_tok_free(t);
    }
}

// --- GGUF U-Nets ---------------------------------------------------------------------------------

// micro-sd15's U-Net as a stable-diffusion.cpp style GGUF (LDM names, or
// without their "model.diffusion_model." prefix when bare): 2-D weights in
// `mat` (Q8_0 or F16), convs F16, the rest F32. Returns the bytes written to
// path (0 on failure).
static size_t write_gguf(const folder *fo, const char *path, tt_type mat, bool bare) {
    static writer w;
    w.n = 0, g_np = 0;
    unet_pairs(&fo->p.unet);
    put_mapped(&w, fo->unet);
    gguf_writer *gw = gguf_writer_new();
    sim_err err = {0};
    bool ok = gw && gguf_writer_set_str(gw, "general.architecture", "sd1") == SIM_OK;
    void **bufs = calloc((size_t)w.n, sizeof *bufs);
    for (int i = 0; ok && i < w.n; i++) {
        const stw_entry *e = &w.e[i];
        int64_t n = stw_numel(e), ne[4] = {1, 1, 1, 1};
        for (int d = 0; d < e->n_dims; d++) ne[d] = e->shape[e->n_dims - 1 - d];
        tt_type t = e->n_dims == 2 ? mat : e->n_dims == 4 ? TT_F16 : TT_F32;
        float *x = malloc((size_t)n * sizeof *x);
        bufs[i] = malloc(tt_row_size(t, ne[0]) * (size_t)(n / ne[0]));
        ok = x && bufs[i] && fill(&w, i, x, &err) == SIM_OK;
        for (int64_t r = 0; ok && r < n / ne[0]; r++)
            tt_get(t)->from_float(x + r * ne[0], (uint8_t *)bufs[i] + (size_t)r * tt_row_size(t, ne[0]), ne[0]);
        free(x);
        const char *name = bare ? e->name + strlen("model.diffusion_model.") : e->name;
        ok = ok && gguf_writer_add_tensor(gw, name, t, e->n_dims, ne, bufs[i], &err) == SIM_OK;
    }
    ok = ok && gguf_writer_write(gw, path, &err) == SIM_OK;
    CHECK_MSG(ok, "%s", err.msg);
    for (int i = 0; i < w.n; i++) free(bufs[i]);
    free(bufs);
    gguf_writer_free(gw);
    FILE *fp = ok ? fopen(path, "rb") : NULL;
    long size = fp && fseek(fp, 0, SEEK_END) == 0 ? ftell(fp) : 0;
    if (fp) fclose(fp);
    return (size_t)size;
}

// eps at t = 500 on the golden latent and context through the U-Net of a GGUF file.
static bool gguf_eps(const char *path, const dif_pipeline *p, float *eps) {
    static float x[256], cond[77 * 32];
    if (!test_golden_f32("diffusion/micro-sd15/unet.in.latent.f32", x, 256) || !test_golden_f32("diffusion/micro-sd15/clip.prompt.hidden.f32", cond, 77 * 32))
        return false;
    sim_err err = {0};
    ckpt *c = NULL;
    CHECK_MSG(ckpt_open(&c, path, p, &err) == SIM_OK, "%s", err.msg);
    if (!c) return false;
    CHECK(c->unet && !c->vae && !c->text);
    const st_tensor *t = st_find(c->unet, "down_blocks.0.attentions.0.transformer_blocks.0.attn1.to_q.weight");
    CHECK(t && t->dtype == ST_F16 && t->n_dims == 2 && t->shape[0] == 32 && t->shape[1] == 32);
    t = st_find(c->unet, "conv_in.weight");
    CHECK(t && t->n_dims == 4 && t->shape[0] == 32 && t->shape[1] == 4 && t->shape[2] == 3);
    unet *u = NULL;
    unet_work *w = NULL;
    op_ctx ctx = {.pool = g_pool, .k = kern_get(KERN_BEST)};
    bool ok = unet_load(&u, &c->cfg.unet, c->unet, &err) == SIM_OK && unet_work_new(&w, u, 8, 8, 77, &err) == SIM_OK &&
              unet_forward(u, w, &ctx, x, 8, 8, 500.0f, cond, 77, eps, &err) == SIM_OK;
    CHECK_MSG(ok, "%s", err.msg);
    unet_work_free(w);
    unet_free(u);
    ckpt_close(c);
    return ok;
}

static void test_gguf_unet(void) {
    char dir[1024], path[400];
    static float ref[256], eps[256];
    if (!test_shared_path(dir, sizeof dir, "diffusion/micro-sd15") || !test_golden_f32("diffusion/micro-sd15/unet.out.t500.f32", ref, 256)) return;
    folder fo;
    if (!open_folder(&fo, dir)) return;
    snprintf(path, sizeof path, "%s/unet-f16.gguf", g_tmp);
    // F16 everywhere: weights rounded to 11 bits (relative 2^-12) move the output by ~1e-3 of its range.
    static float bare[256];
    if (write_gguf(&fo, path, TT_F16, false) && gguf_eps(path, &fo.p, eps)) test_compare_rel("GGUF F16 U-Net vs golden", eps, ref, 256, 3e-3);
    // The whole pipeline with that U-Net (--unet) runs the golden 4-step DDIM close to the folder's.
    static float init[256], lref[256], lat[256], img[768];
    sd_model *m = NULL;
    sim_err e0 = {0};
    CHECK_MSG(sd_load_ex(&m, dir, &(sd_load_opts){.unet = path}, &e0) == SIM_OK, "%s", e0.msg);
    if (m && test_golden_f32("diffusion/micro-sd15/unet.in.latent.f32", init, 256) &&
        test_golden_f32("diffusion/micro-sd15/pipeline.final_latent.f32", lref, 256)) {
        sd_params p = sd_defaults();
        p.prompt = "1girl, cat ears, happy, bright green background, 3/4 body sprite";
        p.width = p.height = 16, p.steps = 4, p.init_latent = init;
        op_ctx ctx = {.pool = g_pool, .k = kern_get(KERN_BEST)};
        CHECK_MSG(sd_generate(m, &ctx, &p, img, lat, &e0) == SIM_OK, "%s", e0.msg);
        test_compare_rel("pipeline with the GGUF F16 U-Net vs golden", lat, lref, 256, 3e-3);
    }
    sd_free(m);
    // The same tensors without the LDM prefix give the same output.
    snprintf(path, sizeof path, "%s/unet-bare.gguf", g_tmp);
    if (write_gguf(&fo, path, TT_F16, true) && gguf_eps(path, &fo.p, bare)) CHECK(memcmp(bare, eps, sizeof eps) == 0);
    // Q8_0 matrices: each weight within half a step of its block's max/127 (~0.4% of the block's
    // largest), a random-walk error over the U-Net's ~20 matrices in a row: allow 3% of the range.
    snprintf(path, sizeof path, "%s/unet-q8_0.gguf", g_tmp);
    size_t size = write_gguf(&fo, path, TT_Q8_0, false);
    if (size && gguf_eps(path, &fo.p, eps)) {
        double rel = test_compare_rel("GGUF Q8_0 U-Net vs golden", eps, ref, 256, 3e-2);
        CHECK(rel > 0); // quantized: not the exact weights
    }
    // Truncated and corrupted copies are refused, naming the file.
    FILE *fp = fopen(path, "rb");
    uint8_t *bytes = malloc(size);
    CHECK(fp && bytes && fread(bytes, 1, size, fp) == size);
    if (fp) fclose(fp);
    char bad[400];
    snprintf(bad, sizeof bad, "%s/bad.gguf", g_tmp);
    sim_err err = {0};
    ckpt *c = NULL;
    struct {
        size_t keep;
        size_t at;
        uint8_t val;
        const char *want;
    } cases[] = {
        {size / 2, 0, 0, "extends past the end of the file"}, // the data runs past the end
        {40, 0, 0, "cannot fit in the file"},                 // cut inside the header
        {size, 4, 9, "unknown GGUF version 9"},               // an unknown version
        {size, 16, 0xff, "bad.gguf: metadata key"},           // a key count that misreads the rest
    };
    for (size_t i = 0; bytes && i < ARRAY_LEN(cases); i++) {
        uint8_t keep = bytes[cases[i].at];
        if (cases[i].val) bytes[cases[i].at] = cases[i].val;
        CHECK(file_write_all(bad, bytes, cases[i].keep, &err) == SIM_OK);
        bytes[cases[i].at] = keep;
        sim_status st = ckpt_open(&c, bad, &fo.p, &err);
        CHECK_MSG(st != SIM_OK && !c && strstr(err.msg, "bad.gguf") && strstr(err.msg, cases[i].want), "case %zu: %d %s", i, st, err.msg);
    }
    free(bytes);
    close_folder(&fo);
}

// Every allocation failing in turn while opening a checkpoint (safetensors
// and GGUF) gives SIM_ERR_NOMEM and keeps nothing (the sanitizer build
// reports leaks).
static void test_alloc_failures(void) {
    char dir[1024], st_path[400], gg_path[400];
    if (!test_shared_path(dir, sizeof dir, "diffusion/micro-sd15")) return;
    folder fo;
    if (!open_folder(&fo, dir)) return;
    snprintf(st_path, sizeof st_path, "%s/alloc.safetensors", g_tmp);
    snprintf(gg_path, sizeof gg_path, "%s/alloc.gguf", g_tmp);
    bool ok = write_single(&fo, st_path, false) && write_gguf(&fo, gg_path, TT_Q8_0, false) > 0;
    for (int which = 0; ok && which < 2; which++) {
        bool done = false;
        for (long k = 0; k < 400 && !done; k++) {
            ckpt *c = NULL;
            sim_err err = {0};
            mem_fail_after(k);
            sim_status st = ckpt_open(&c, which ? gg_path : st_path, &fo.p, &err);
            bool failed = mem_fail_triggered();
            mem_fail_after(-1);
            ckpt_close(c);
            if (!failed) {
                CHECK_MSG(st == SIM_OK, "%s", err.msg);
                done = true;
            } else {
                CHECK_MSG(st == SIM_ERR_NOMEM && !c, "allocation %ld: %d %s", k, st, err.msg);
            }
        }
        CHECK(done);
    }
    close_folder(&fo);
}

int main(int argc, char **argv) {
    test_init(argc, argv);
    snprintf(g_tmp, sizeof g_tmp, "/tmp/sim_test_ckpt_XXXXXX");
    sim_err err;
    if (!mkdtemp(g_tmp) || pool_new(&g_pool, 2, &err) != SIM_OK) {
        perror("setup");
        return 1;
    }
    TEST_RUN(test_micro_single_file);
    TEST_RUN(test_sd15_single_file);
    TEST_RUN(test_sd21_single_file);
    TEST_RUN(test_tiny_sd_single_file);
    TEST_RUN(test_refusals);
    TEST_RUN(test_gguf_unet);
    TEST_RUN(test_alloc_failures);
    pool_free(g_pool);
    char cmd[300];
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", g_tmp);
    if (system(cmd) != 0) fprintf(stderr, "could not remove %s\n", g_tmp);
    return test_finish();
}
