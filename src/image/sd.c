// sd.c — the text-to-image pipeline over a diffusers folder (see sd.h).
#include "image/sd.h"

#include <jansson.h>
#include <math.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>

#include "image/ckpt.h"
#include "image/clip_text.h"
#include "image/diffusers.h"
#include "image/lora.h"
#include "image/resize.h"
#include "image/safetensors.h"
#include "image/taesd.h"
#include "image/tiny_ae.h"
#include "image/unet.h"
#include "image/vae.h"

struct sd_model {
    dif_pipeline pipe;
    clip_tok *tok;
    int32_t pad;      // the token that fills each 77-token window after the end token
    clip_text *text;
    unet *unet;
    vae *vae;
    dsamp_schedule sched;
    // The attached tiny autoencoder (NULL without) and its buffers, made for
    // the last latent size it decoded (tiny_lh × tiny_lw).
    taesd *tiny;
    taesd_work *tiny_w;
    int tiny_lh, tiny_lw;
    float *tiny_img;  // (3, 8·tiny_lh, 8·tiny_lw) in [0, 1]
    float *tiny_out;  // (3, f·tiny_lh, f·tiny_lw) in [-1, 1]
    // LoRAs: where the weights came from (a folder or a checkpoint file; read
    // again when the LoRAs change), the LoRA files and weights merged into
    // text and unet now (tag order), and the parts they patch.
    char *src, *unet_src; // unet_src: the U-Net's own file (sd_load_opts.unet) or NULL
    int n_lora;
    char *lora_file[LORA_MAX];
    float lora_w[LORA_MAX];
    bool lora_in[LORA_PART_COUNT];
};

sd_params sd_defaults(void) {
    return (sd_params){.prompt = "", .negative = "", .width = 512, .height = 512, .steps = 20, .cfg = 7.5f, .sampler = DSAMP_DDIM};
}

void sd_free(sd_model *m) {
    if (!m) return;
    clip_tok_free(m->tok);
    clip_text_free(m->text);
    unet_free(m->unet);
    vae_free(m->vae);
    sd_detach_taesd(m);
    mem_free(m->src);
    mem_free(m->unet_src);
    for (int i = 0; i < m->n_lora; i++) mem_free(m->lora_file[i]);
    mem_free(m);
}

// Opens DIR/rel (a .safetensors file) and hands it to load.
static sim_status with_file(sd_model *m, const char *rel, sim_status (*load)(sd_model *, const st_file *, sim_err *), sim_err *err) {
    char path[1200];
    sim_status st = dif_path(&m->pipe, rel, path, sizeof path, err);
    st_file *f = NULL;
    if (st == SIM_OK) st = st_open(&f, path, err);
    if (st == SIM_OK) st = load(m, f, err);
    st_close(f);
    return st;
}

static sim_status load_text(sd_model *m, const st_file *f, sim_err *err) { return clip_text_load(&m->text, &m->pipe.clip, f, err); }
static sim_status load_unet(sd_model *m, const st_file *f, sim_err *err) { return unet_load(&m->unet, &m->pipe.unet, f, err); }
static sim_status load_vae(sd_model *m, const st_file *f, sim_err *err) { return vae_load_decoder(&m->vae, &m->pipe.vae, f, err); }

// The padding token of a diffusers folder: tokenizer/special_tokens_map.json's
// pad_token (a string or {"content": ...}), a vocabulary entry looked up as
// spelled (SD 2.x: "!", id 0); without the file or the field, the end token.
static sim_status read_pad(sd_model *m, sim_err *err) {
    char path[1200];
    m->pad = m->pipe.clip.eos;
    sim_status st = dif_path(&m->pipe, "tokenizer/special_tokens_map.json", path, sizeof path, err);
    struct stat sb;
    if (st != SIM_OK || stat(path, &sb) != 0) return st;
    json_error_t je;
    json_t *root = json_load_file(path, 0, &je), *pt = json_object_get(root, "pad_token");
    if (json_is_object(pt)) pt = json_object_get(pt, "content");
    const char *text = json_string_value(pt);
    int32_t id = text ? clip_tok_id(m->tok, text) : -1;
    if (!root) st = err_set(err, SIM_ERR_FORMAT, "%s: line %d: %s", path, je.line, je.text);
    else if (!pt) st = SIM_OK; // no pad_token: the end token
    else if (!text) st = err_set(err, SIM_ERR_FORMAT, "%s: pad_token: expected a string or {\"content\": string}", path);
    else if (id < 0) st = err_set(err, SIM_ERR_FORMAT, "%s: pad_token '%s' is not in the tokenizer's vocabulary", path, text);
    else m->pad = id;
    json_decref(root);
    return st;
}

sim_status sd_load(sd_model **out, const char *path, sim_err *err) { return sd_load_ex(out, path, NULL, err); }

sim_status sd_load_ex(sd_model **out, const char *dir, const sd_load_opts *o, sim_err *err) {
    *out = NULL;
    const char *tok_dir = o ? o->tokenizer : NULL, *unet_path = o ? o->unet : NULL;
    sd_model *m = mem_calloc(1, sizeof *m);
    if (!m) return err_set(err, SIM_ERR_NOMEM, "out of memory loading %s", dir);
    char v[1200], mg[1200];
    struct stat sb;
    sim_status st = (m->src = mem_strdup(dir)) && (!unet_path || (m->unet_src = mem_strdup(unet_path)))
                        ? SIM_OK
                        : err_set(err, SIM_ERR_NOMEM, "out of memory loading %s", dir);
    if (st != SIM_OK) {
    } else if (stat(dir, &sb) == 0 && S_ISREG(sb.st_mode)) {
        ckpt *c = NULL;
        st = ckpt_open(&c, dir, NULL, err);
        if (st == SIM_OK && (!c->text || !c->vae))
            st = err_set(err, SIM_ERR_FORMAT, "%s: no %s in the checkpoint", dir, c->text ? "VAE (first_stage_model.*)" : "text encoder (cond_stage_model.*)");
        if (st == SIM_OK) m->pipe = c->cfg, st = ckpt_tokenizer(&m->tok, dir, tok_dir, err);
        m->pad = m->pipe.family == DIF_FAMILY_SD2 ? 0 : m->pipe.clip.eos; // OpenCLIP pads with 0 ("!")
        if (st == SIM_OK) st = load_text(m, c->text, err);
        if (st == SIM_OK && !unet_path) st = load_unet(m, c->unet, err);
        if (st == SIM_OK) st = load_vae(m, c->vae, err);
        ckpt_close(c);
    } else {
        st = dif_open(&m->pipe, dir, err);
        if (st == SIM_OK && tok_dir) {
            st = ckpt_tokenizer(&m->tok, dir, tok_dir, err);
        } else {
            if (st == SIM_OK) st = dif_path(&m->pipe, "tokenizer/vocab.json", v, sizeof v, err);
            if (st == SIM_OK) st = dif_path(&m->pipe, "tokenizer/merges.txt", mg, sizeof mg, err);
            if (st == SIM_OK) st = clip_tok_load(&m->tok, v, mg, err);
        }
        if (st == SIM_OK) st = read_pad(m, err);
        if (st == SIM_OK) st = with_file(m, "text_encoder/model.safetensors", load_text, err);
        if (st == SIM_OK && !unet_path) st = with_file(m, "unet/diffusion_pytorch_model.safetensors", load_unet, err);
        if (st == SIM_OK) st = with_file(m, "vae/diffusion_pytorch_model.safetensors", load_vae, err);
    }
    if (st == SIM_OK && unet_path) { // the U-Net from its own file, read with the model's configuration
        ckpt *c = NULL;
        st = ckpt_open(&c, unet_path, &m->pipe, err);
        if (st == SIM_OK) st = load_unet(m, c->unet, err);
        ckpt_close(c);
    }
    if (st != SIM_OK) {
        sd_free(m);
        return st;
    }
    dsamp_schedule_sd(&m->sched);
    *out = m;
    return SIM_OK;
}

int sd_latent_channels(const sd_model *m) { return m->pipe.vae.latent_ch; }
int sd_vae_factor(const sd_model *m) { return vae_factor(m->vae); }

// --- the tiny autoencoder -----------------------------------------------------------------------

void sd_detach_taesd(sd_model *m) {
    taesd_free(m->tiny);
    taesd_work_free(m->tiny_w);
    mem_free(m->tiny_img);
    mem_free(m->tiny_out);
    m->tiny = NULL, m->tiny_w = NULL, m->tiny_img = m->tiny_out = NULL, m->tiny_lh = m->tiny_lw = 0;
}

sim_status sd_attach_taesd(sd_model *m, const char *path, sim_err *err) {
    taesd *t = NULL;
    sim_status st = tae_open(&t, path, err);
    if (st != SIM_OK) return err_prefix(err, "tiny autoencoder");
    if (taesd_latent_channels(t) != m->pipe.vae.latent_ch) {
        int tc = taesd_latent_channels(t);
        taesd_free(t);
        return err_set(err, SIM_ERR_UNSUPPORTED, "tiny autoencoder %s: %d latent channels, the model has %d", path, tc,
                       m->pipe.vae.latent_ch);
    }
    sd_detach_taesd(m);
    m->tiny = t;
    return SIM_OK;
}

bool sd_has_taesd(const sd_model *m) { return m->tiny != NULL; }

// m->tiny_out (3, f·lh, f·lw) in [-1, 1] from the sampler's latent through the
// tiny autoencoder (8× up, then resampled to the model's factor f if it
// differs). TAESD decoders are distilled on the U-Net's latents (diffusers'
// AutoencoderTiny has scaling_factor 1), so the latent goes in unscaled.
static sim_status tiny_decode(sd_model *m, const op_ctx *c, const float *latent, int lh, int lw, sim_err *err) {
    int f = vae_factor(m->vae);
    if (lh != m->tiny_lh || lw != m->tiny_lw) {
        taesd_work_free(m->tiny_w);
        mem_free(m->tiny_img);
        mem_free(m->tiny_out);
        m->tiny_w = NULL, m->tiny_lh = m->tiny_lw = 0;
        m->tiny_img = mem_alloc((size_t)3 * 64 * lh * lw * sizeof *m->tiny_img);
        m->tiny_out = mem_alloc((size_t)3 * f * f * lh * lw * sizeof *m->tiny_out);
        if (!m->tiny_img || !m->tiny_out) return err_set(err, SIM_ERR_NOMEM, "out of memory for a %d x %d preview", 8 * lw, 8 * lh);
        sim_status st = taesd_work_new(&m->tiny_w, m->tiny, lh, lw, err);
        if (st != SIM_OK) return st;
        m->tiny_lh = lh, m->tiny_lw = lw;
    }
    float *image = m->tiny_out;
    sim_status st = taesd_decode(m->tiny, m->tiny_w, c, latent, lh, lw, m->tiny_img, err);
    if (st == SIM_OK && f != 8)
        st = rsz_planes(m->tiny_img, 3, 8 * lw, 8 * lh, (rsz_box){0, 0, 8 * lw, 8 * lh}, image, f * lw, f * lh, RSZ_AREA, err);
    else if (st == SIM_OK) memcpy(image, m->tiny_img, (size_t)3 * 64 * lh * lw * sizeof *image);
    for (size_t i = 0; st == SIM_OK && i < (size_t)3 * f * f * lh * lw; i++) image[i] = image[i] * 2 - 1;
    return st;
}

// --- generation ----------------------------------------------------------------------------------

typedef struct gen {
    sd_model *m;
    const op_ctx *c;
    const sd_params *p;
    unet_work *uw;
    int lh, lw, n_ctx;
    size_t nl;                  // latent floats: C_lat · lh · lw
    const float *cond, *uncond; // (n_ctx, hidden): chunks of n_pos tokens
    float *eu, *ec;             // (C_lat, lh, lw)
    // Inpainting: the latent mask and, for ordinary U-Nets, what is blended
    // back after each step; for 9-channel ones the extra U-Net input.
    const float *mask;          // (lh, lw) in [0, 1], 1 = repaint; NULL without
    const float *init, *noise;  // (C_lat, lh, lw): init latent (scaled), the start noise
    float *unet_in;             // (2·C_lat + 1, lh, lw): x, mask, masked-image latent; NULL for 4-channel U-Nets
    uint64_t t0;
} gen;

static sim_status guided_eps(void *ctx, const float *x, float t, float *eps, sim_err *err) {
    gen *g = ctx;
    int n_ctx = g->n_ctx;
    size_t n = g->nl;
    if (g->unet_in) { // concat(x, mask, masked-image latent) along the channels (diffusers' order)
        memcpy(g->unet_in, x, n * sizeof *x);
        x = g->unet_in;
    }
    sim_status st = unet_forward(g->m->unet, g->uw, g->c, x, g->lh, g->lw, t, g->cond, n_ctx, g->ec, err);
    if (st != SIM_OK) return st;
    if (g->p->cfg == 1.0f) {
        memcpy(eps, g->ec, n * sizeof *eps);
    } else {
        st = unet_forward(g->m->unet, g->uw, g->c, x, g->lh, g->lw, t, g->uncond, n_ctx, g->eu, err);
        if (st != SIM_OK) return st;
        for (size_t i = 0; i < n; i++) eps[i] = g->eu[i] + g->p->cfg * (g->ec[i] - g->eu[i]);
    }
    return SIM_OK;
}

// After each sampler step: for an ordinary U-Net with a mask, x outside the
// mask becomes the init latent noised to the next level,
//     x = m·x + (1 - m)·(√ᾱ init + √(1-ᾱ) noise)        (DDIM scale),
// which after the last step (ᾱ = 1) is the init latent itself; then the
// caller's progress callback with x0.
static sim_status after_step(void *ctx, int i, int steps, float *x, double xscale, const float *x0, double acp_next, sim_err *err) {
    gen *g = ctx;
    if (g->mask && !g->unet_in) {
        size_t plane = (size_t)g->lh * g->lw;
        double a = sqrt(acp_next), b = sqrt(1 - acp_next);
        for (size_t j = 0; j < g->nl; j++) {
            double m = g->mask[j % plane];
            x[j] = (float)(m * x[j] + (1 - m) * ((a * g->init[j] + b * g->noise[j]) / xscale));
        }
    }
    if (g->p->on_step && !g->p->on_step(g->p->ud, i + 1, steps, (double)(time_ns() - g->t0) / 1e9, x0))
        return err_set(err, SIM_ERR_ABORTED, "stopped after step %d of %d", i + 1, steps);
    return SIM_OK;
}

// image (3, f·lh, f·lw) from the sampler's latent x (scaled in place for the full VAE).
static sim_status decode_latent(sd_model *m, const op_ctx *c, vae_work *vw, float *x, int lh, int lw, bool tiny, float *image,
                                sim_err *err) {
    if (tiny) {
        sim_status st = tiny_decode(m, c, x, lh, lw, err);
        if (st == SIM_OK) memcpy(image, m->tiny_out, (size_t)3 * lh * lw * vae_factor(m->vae) * vae_factor(m->vae) * sizeof *image);
        return st;
    }
    float inv = 1.0f / m->pipe.vae.scaling_factor;
    for (size_t i = 0; i < (size_t)m->pipe.vae.latent_ch * lh * lw; i++) x[i] *= inv;
    return vae_decode(m->vae, vw, c, x, lh, lw, image, err);
}

// Checks p against the model; the number of latent channels of the U-Net input.
static sim_status check_params(const sd_model *m, const sd_params *p, sim_err *err) {
    int f = vae_factor(m->vae), uf = 1 << (m->pipe.unet.n_blocks - 1), step = f * uf, cl = m->pipe.vae.latent_ch;
    if (p->width < step || p->height < step || p->width % step || p->height % step || p->width > 4096 || p->height > 4096)
        return err_set(err, SIM_ERR_ARG, "image %d x %d: sides must be multiples of %d (up to 4096)", p->width, p->height, step);
    if (p->steps < 1 || p->steps > DSAMP_TRAIN_STEPS) return err_set(err, SIM_ERR_ARG, "%d steps (1 to %d)", p->steps, DSAMP_TRAIN_STEPS);
    if (!(p->cfg >= 0 && p->cfg <= 100)) return err_set(err, SIM_ERR_ARG, "guidance scale %g (0 to 100)", (double)p->cfg);
    if ((unsigned)p->sampler >= DSAMP_COUNT) return err_set(err, SIM_ERR_ARG, "unknown sampler %d", (int)p->sampler);
    if (p->init_image && !(p->strength >= 0 && p->strength <= 1))
        return err_set(err, SIM_ERR_ARG, "denoising strength %g (0 to 1)", (double)p->strength);
    if (p->mask && !p->init_image) return err_set(err, SIM_ERR_ARG, "a mask needs an init image");
    if (!(p->mask_blur >= 0 && p->mask_blur <= 256)) return err_set(err, SIM_ERR_ARG, "mask blur %g pixels (0 to 256)", (double)p->mask_blur);
    if (!(p->subseed_strength >= 0 && p->subseed_strength <= 1))
        return err_set(err, SIM_ERR_ARG, "variation strength %g (0 to 1)", (double)p->subseed_strength);
    if (m->pipe.unet.out_ch != cl)
        return err_set(err, SIM_ERR_UNSUPPORTED, "the U-Net predicts %d channels; the VAE has %d latent channels", m->pipe.unet.out_ch, cl);
    if (m->pipe.unet.in_ch == 2 * cl + 1) {
        if (!p->mask) return err_set(err, SIM_ERR_ARG, "an inpainting U-Net (%d input channels) needs an init image and a mask", 2 * cl + 1);
    } else if (m->pipe.unet.in_ch != cl) {
        return err_set(err, SIM_ERR_UNSUPPORTED, "a U-Net with %d input channels for %d latent channels", m->pipe.unet.in_ch, cl);
    }
    if (p->taesd_decode && !m->tiny) return err_set(err, SIM_ERR_ARG, "decoding with the tiny autoencoder: none is attached");
    return SIM_OK;
}

// --- LoRAs --------------------------------------------------------------------------------------

// Loads part (into *out) from f with the LoRAs of s that patch it merged.
static sim_status load_merged(sd_model *m, lora_set *s, lora_part part, st_file *f, void *out, sim_err *err) {
    bool merge = lora_touches(s, part);
    sim_status st = merge ? lora_attach(s, part, f, err) : SIM_OK;
    if (st != SIM_OK) return st;
    st = part == LORA_TEXT ? clip_text_load(out, &m->pipe.clip, f, err) : unet_load(out, &m->pipe.unet, f, err);
    if (merge) { // the first error stands
        sim_err e2;
        sim_status st2 = lora_detach(s, part, f, &e2);
        if (st == SIM_OK && st2 != SIM_OK) st = err_set(err, st2, "%s", e2.msg);
    }
    return st;
}

// Opens one part of m->src again (a checkpoint file or a diffusers folder):
// part LORA_TEXT or LORA_UNET, or -1 for the VAE; hands its weights to fn.
static sim_status with_part(sd_model *m, int part, sim_status (*fn)(sd_model *, st_file *, void *, sim_err *), void *ud,
                            sim_err *err) {
    struct stat sb;
    sim_status st;
    const char *src = part == LORA_UNET && m->unet_src ? m->unet_src : m->src;
    if (stat(src, &sb) == 0 && S_ISREG(sb.st_mode)) {
        ckpt *c = NULL;
        st = ckpt_open(&c, src, &m->pipe, err);
        if (st == SIM_OK) st = fn(m, part == LORA_TEXT ? c->text : part == LORA_UNET ? c->unet : c->vae, ud, err);
        ckpt_close(c);
        return st;
    }
    const char *rel = part == LORA_TEXT   ? "text_encoder/model.safetensors"
                      : part == LORA_UNET ? "unet/diffusion_pytorch_model.safetensors"
                                          : "vae/diffusion_pytorch_model.safetensors";
    char path[1200];
    st_file *f = NULL;
    st = dif_path(&m->pipe, rel, path, sizeof path, err);
    if (st == SIM_OK) st = st_open(&f, path, err);
    if (st == SIM_OK) st = fn(m, f, ud, err);
    st_close(f);
    return st;
}

typedef struct merged_load {
    lora_set *s;
    lora_part part;
    void *out;
} merged_load;

static sim_status part_merged(sd_model *m, st_file *f, void *ud, sim_err *err) {
    merged_load *a = ud;
    return load_merged(m, a->s, a->part, f, a->out, err);
}

// Reads the parts marked in `want` again from m->src with the LoRAs of s
// merged: text into *text, unet into *u.
static sim_status reload(sd_model *m, lora_set *s, const bool want[LORA_PART_COUNT], clip_text **text, unet **u, sim_err *err) {
    void *out[LORA_PART_COUNT] = {[LORA_TEXT] = text, [LORA_UNET] = u};
    sim_status st = SIM_OK;
    for (int p = 0; p < LORA_PART_COUNT && st == SIM_OK; p++) {
        merged_load a = {s, (lora_part)p, out[p]};
        if (want[p]) st = with_part(m, p, part_merged, &a, err);
    }
    return st;
}

static sim_status part_encoder(sd_model *m, st_file *f, void *ud, sim_err *err) { return vae_load_encoder(m->vae, f, err); }

// Makes the merged LoRAs those of tags[0..n) (files in dir): when the list
// (files and weights, in order) differs from what is merged, the text
// encoder and the U-Net are read again with the new LoRAs merged (a part
// neither the old nor the new LoRAs patch is kept). On error the model is
// unchanged.
static sim_status use_loras(sd_model *m, const char *dir, const lora_tag *tags, int n, sim_err *err) {
    if (n && !dir) return err_set(err, SIM_ERR_ARG, "the prompt has <lora:%s> but no LoRA folder is set", tags[0].name);
    char path[LORA_MAX][1200];
    bool same = n == m->n_lora;
    for (int i = 0; i < n; i++) {
        sim_status st = lora_path(dir, tags[i].name, path[i], sizeof path[i], err);
        if (st != SIM_OK) return st;
        same = same && strcmp(path[i], m->lora_file[i]) == 0 && tags[i].weight == m->lora_w[i];
    }
    if (same) return SIM_OK;
    lora_set *s = NULL;
    clip_text *text = NULL;
    unet *u = NULL;
    char *names[LORA_MAX] = {0};
    sim_status st = lora_set_new(&s, err);
    for (int i = 0; i < n && st == SIM_OK; i++) {
        st = lora_add(s, path[i], tags[i].weight, err);
        if (st == SIM_OK && !(names[i] = mem_strdup(path[i]))) st = err_set(err, SIM_ERR_NOMEM, "out of memory for LoRA %s", path[i]);
    }
    bool in[LORA_PART_COUNT] = {false}, want[LORA_PART_COUNT] = {false};
    for (int p = 0; p < LORA_PART_COUNT && st == SIM_OK; p++) in[p] = lora_touches(s, p), want[p] = in[p] || m->lora_in[p];
    if (st == SIM_OK) st = reload(m, s, want, &text, &u, err);
    lora_set_free(s);
    if (st != SIM_OK) {
        clip_text_free(text);
        unet_free(u);
        for (int i = 0; i < n; i++) mem_free(names[i]);
        return st;
    }
    if (text) clip_text_free(m->text), m->text = text;
    if (u) unet_free(m->unet), m->unet = u;
    for (int i = 0; i < m->n_lora; i++) mem_free(m->lora_file[i]);
    for (int i = 0; i < n; i++) m->lora_file[i] = names[i], m->lora_w[i] = tags[i].weight;
    m->n_lora = n;
    memcpy(m->lora_in, in, sizeof in);
    return SIM_OK;
}

// Reads the text encoder again (with the merged LoRAs that patch it) after
// a request released it (sd_params.release_text).
static sim_status ensure_text(sd_model *m, sim_err *err) {
    if (m->text) return SIM_OK;
    lora_set *s = NULL;
    sim_status st = lora_set_new(&s, err);
    for (int i = 0; i < m->n_lora && st == SIM_OK; i++) st = lora_add(s, m->lora_file[i], m->lora_w[i], err);
    bool want[LORA_PART_COUNT] = {[LORA_TEXT] = true};
    if (st == SIM_OK) st = reload(m, s, want, &m->text, NULL, err);
    lora_set_free(s);
    return st;
}

sim_status sd_generate(sd_model *m, const op_ctx *c, const sd_params *p, float *image, float *latent_out, sim_err *err) {
    sim_status st = check_params(m, p, err);
    // <lora:NAME:W> tags out of the prompt; their LoRAs merged.
    lora_tag tags[LORA_MAX];
    int n_tags = 0;
    char *prompt = NULL;
    if (st == SIM_OK) st = lora_tags_parse(p->prompt ? p->prompt : "", &prompt, tags, LORA_MAX, &n_tags, err);
    if (st == SIM_OK) st = use_loras(m, p->lora_dir, tags, n_tags, err);
    if (st != SIM_OK) {
        mem_free(prompt);
        return st;
    }
    int f = vae_factor(m->vae), lh = p->height / f, lw = p->width / f, C = m->pipe.clip.hidden, T = m->pipe.clip.n_pos, per = T - 2;
    int cl = m->pipe.vae.latent_ch;
    bool cat9 = m->pipe.unet.in_ch == 2 * cl + 1;
    size_t nl = (size_t)cl * lh * lw, plane = (size_t)lh * lw, npx = (size_t)p->width * p->height;
    // Prompts: weighted tokens, in chunks of T - 2 between start and end.
    int cap = per * SD_MAX_CHUNKS, nt[2] = {0, 0};
    int32_t *tok = mem_alloc((size_t)2 * cap * sizeof *tok);
    float *tw = mem_alloc((size_t)2 * cap * sizeof *tw);
    if (!tok || !tw) st = err_set(err, SIM_ERR_NOMEM, "out of memory for the prompts");
    for (int k = 0; k < 2 && st == SIM_OK; k++) {
        const char *text = k ? (p->negative ? p->negative : "") : prompt;
        st = clip_tok_encode_weighted(m->tok, text, tok + k * cap, tw + k * cap, cap, &nt[k], err);
        nt[k] = MIN(nt[k], cap); // longer prompts are cut at SD_MAX_CHUNKS chunks
    }
    int chunks = MAX(1, (MAX(nt[0], p->cfg == 1.0f ? 0 : nt[1]) + per - 1) / per), n_ctx = chunks * T;
    // Per-request memory: text states; latents x, eu, ec, the start noise, the init latent, moments
    // (2 C_lat), the latent mask, the U-Net input (2 C_lat + 1, and room for the log-variance the
    // encoder writes after the mean); sampler work; the pixel mask; model buffers.
    size_t floats = (size_t)2 * n_ctx * C + T + 7 * nl + plane + (cat9 ? 3 * nl + plane : 0) + dsamp_work_floats(nl) + (p->mask ? npx : 0);
    float *buf = st == SIM_OK ? mem_alloc(floats * sizeof(float)) : NULL;
    int32_t *ids = mem_alloc((size_t)T * sizeof *ids);
    int *ts = mem_alloc((size_t)p->steps * sizeof *ts);
    unet_work *uw = NULL;
    vae_work *vw = NULL;
    if (st == SIM_OK && !(buf && ids && ts)) st = err_set(err, SIM_ERR_NOMEM, "out of memory for a %d x %d image", p->width, p->height);
    if (st == SIM_OK) st = ensure_text(m, err);
    // The VAE's buffers now only for img2img (the encoder runs first); else
    // after the U-Net's are freed, so the two never coexist.
    if (st == SIM_OK && p->init_image && !vae_has_encoder(m->vae)) st = with_part(m, -1, part_encoder, NULL, err); // read when first needed
    if (st == SIM_OK && p->init_image) st = vae_work_new(&vw, m->vae, lh, lw, err);
    float *cond = buf, *uncond = cond + (size_t)n_ctx * C, *w77 = uncond + (size_t)n_ctx * C, *x = w77 + T, *eu = x + nl, *ec = eu + nl,
          *noise = ec + nl, *init = noise + nl, *moments = init + nl, *mlat = moments + 2 * nl, *unet_in = mlat + plane,
          *work = unet_in + (cat9 ? 3 * nl + plane : 0), *mpx = work + dsamp_work_floats(nl);
    for (int k = 0; k < 2 && st == SIM_OK; k++) {
        if (k == 1 && p->cfg == 1.0f) break;
        for (int j = 0; j < chunks && st == SIM_OK; j++) {
            // start, this chunk's tokens, end, then padding (the end token for SD 1.x, "!" for SD 2.x)
            int from = j * per, cnt = MAX(0, MIN(per, nt[k] - from));
            ids[0] = m->pipe.clip.bos, w77[0] = 1;
            for (int i = 0; i < cnt; i++) ids[1 + i] = tok[k * cap + from + i], w77[1 + i] = tw[k * cap + from + i];
            for (int i = cnt + 1; i < T; i++) ids[i] = i == cnt + 1 ? m->pipe.clip.eos : m->pad, w77[i] = 1;
            float *h = (k ? uncond : cond) + (size_t)j * T * C;
            st = clip_text_encode(m->text, c, ids, T, p->clip_skip, h, err);
            if (st != SIM_OK) break;
            // Weights scale each token's state; the mean is then restored (as the web UIs do).
            double m0 = 0, m1 = 0;
            for (size_t i = 0; i < (size_t)T * C; i++) m0 += h[i];
            for (int t = 0; t < T; t++)
                for (int i = 0; i < C; i++) h[(size_t)t * C + i] *= w77[t];
            for (size_t i = 0; i < (size_t)T * C; i++) m1 += h[i];
            if (m1 != 0 && m0 != m1)
                for (size_t i = 0; i < (size_t)T * C; i++) h[i] = (float)(h[i] * (m0 / m1));
        }
    }
    if (st == SIM_OK && p->release_text) clip_text_free(m->text), m->text = NULL;
    if (st == SIM_OK) st = unet_work_new(&uw, m->unet, lh, lw, n_ctx, err);
    // The start noise: given, or seeded (and slerped towards the variation seed's).
    if (st == SIM_OK) {
        if (p->init_latent) memcpy(x, p->init_latent, nl * sizeof *x);
        else dsamp_gauss(p->seed, x, nl);
        if (!p->init_latent && p->subseed_strength > 0) {
            dsamp_gauss(p->subseed, noise, nl);
            sd_slerp(x, noise, nl, p->subseed_strength, x);
        }
        memcpy(noise, x, nl * sizeof *x);
    }
    // img2img: the init latent (scaled); inpainting: the mask, blurred, on the latent grid.
    float sf = m->pipe.vae.scaling_factor;
    // The encoder's moments are (mean, log-variance); the mean is the latent (not a sample: the same image,
    // the same latent).
    if (st == SIM_OK && p->init_image) st = vae_encode(m->vae, vw, c, p->init_image, p->height, p->width, moments, err);
    for (size_t i = 0; st == SIM_OK && p->init_image && i < nl; i++) init[i] = moments[i] * sf;
    if (st == SIM_OK && p->mask) {
        memcpy(mpx, p->mask, npx * sizeof *mpx);
        st = rsz_blur(mpx, p->width, p->height, p->mask_blur, err);
        if (st == SIM_OK) st = rsz_planes(mpx, 1, p->width, p->height, (rsz_box){0, 0, p->width, p->height}, mlat, lw, lh, RSZ_AREA, err);
    }
    if (st == SIM_OK && cat9) {
        // The masked image (pixels where the blurred mask is under ½, the rest 0) through the encoder:
        // its latent and the mask follow x in the U-Net input. `image` is scratch until the decode.
        for (int ch = 0; ch < 3; ch++)
            for (size_t i = 0; i < npx; i++) image[ch * npx + i] = mpx[i] < 0.5f ? p->init_image[ch * npx + i] : 0.0f;
        st = vae_encode(m->vae, vw, c, image, p->height, p->width, unet_in + nl + plane, err); // only the mean is kept
        memcpy(unet_in + nl, mlat, plane * sizeof *mlat);
        for (size_t i = 0; i < nl; i++) unet_in[nl + plane + i] *= sf;
    }
    int first = p->init_image ? p->steps - (int)floor(p->steps * (double)p->strength + 0.5) : 0;
    if (st == SIM_OK && first < p->steps) {
        if (p->timesteps) memcpy(ts, p->timesteps, (size_t)p->steps * sizeof *ts);
        else dsamp_timesteps(&m->sched, p->steps, ts);
        dsamp_params sp = {.kind = p->sampler, .karras = p->karras, .seed = p->seed, .first = first};
        if (first > 0) { // img2img: the init latent noised to the first step's level
            double acp = dsamp_start_acp(&m->sched, &sp, ts, p->steps), a = sqrt(acp), b = sqrt(1 - acp);
            for (size_t i = 0; i < nl; i++) x[i] = (float)(a * init[i] + b * x[i]);
        }
        gen g = {m, c, p, uw, lh, lw, n_ctx, nl, cond, uncond, eu, ec, p->mask ? mlat : NULL, init, noise, cat9 ? unet_in : NULL, time_ns()};
        sp.on_step = after_step, sp.step_ctx = &g;
        st = dsamp_run(&m->sched, &sp, ts, p->steps, x, nl, work, guided_eps, &g, err);
    } else if (st == SIM_OK) { // strength 0: the init image's latent as it is
        memcpy(x, init, nl * sizeof *x);
    }
    if (st == SIM_OK && latent_out) memcpy(latent_out, x, nl * sizeof *x);
    unet_work_free(uw);
    uw = NULL;
    if (st == SIM_OK && !vw && !p->taesd_decode) st = vae_work_new(&vw, m->vae, lh, lw, err);
    if (st == SIM_OK && first == p->steps && !p->taesd_decode) st = vae_decode(m->vae, vw, c, moments, lh, lw, image, err); // unscaled: exact
    else if (st == SIM_OK) st = decode_latent(m, c, vw, x, lh, lw, p->taesd_decode, image, err);
    vae_work_free(vw);
    unet_work_free(uw);
    mem_free(ts);
    mem_free(ids);
    mem_free(buf);
    mem_free(tok);
    mem_free(tw);
    mem_free(prompt);
    return st;
}

// --- variations -------------------------------------------------------------------------------------

void sd_slerp(const float *a, const float *b, size_t n, double t, float *out) {
    double ab = 0, aa = 0, bb = 0;
    for (size_t i = 0; i < n; i++) ab += (double)a[i] * b[i], aa += (double)a[i] * a[i], bb += (double)b[i] * b[i];
    double dot = aa > 0 && bb > 0 ? ab / sqrt(aa * bb) : 1, ka = 1 - t, kb = t;
    if (fabs(dot) < SD_SLERP_PARALLEL) {
        double omega = acos(dot), so = sin(omega);
        ka = sin((1 - t) * omega) / so, kb = sin(t * omega) / so;
    }
    for (size_t i = 0; i < n; i++) out[i] = (float)(ka * a[i] + kb * b[i]);
}

// --- previews ----------------------------------------------------------------------------------

// SD 1.4 latent channel → (R, G, B) weights (see sd.h).
static const float PREVIEW_K[4][3] = {
    {0.298f, 0.207f, 0.208f},
    {0.187f, 0.286f, 0.173f},
    {-0.158f, 0.189f, 0.264f},
    {-0.184f, -0.271f, -0.473f},
};

static uint8_t to_byte(float v) { return (uint8_t)(v < 0 ? 0 : v > 255 ? 255 : lrintf(v)); }

void sd_image_bytes(const float *img, int w, int h, int channels, uint8_t *out) {
    size_t plane = (size_t)w * h;
    for (size_t i = 0; i < plane; i++) {
        for (int ch = 0; ch < 3; ch++) out[i * channels + ch] = to_byte((img[ch * plane + i] + 1.0f) * 127.5f);
        if (channels == 4) out[i * 4 + 3] = 255;
    }
}

sim_status sd_preview(sd_model *m, const op_ctx *c, const float *latent, int lh, int lw, uint8_t *rgb, sim_err *err) {
    int cl = m->pipe.vae.latent_ch, f = vae_factor(m->vae);
    size_t plane = (size_t)lh * lw, W = (size_t)lw * f;
    if (m->tiny) {
        sim_status st = tiny_decode(m, c, latent, lh, lw, err);
        if (st != SIM_OK) return st;
        size_t n = plane * f * f;
        for (size_t i = 0; i < n; i++)
            for (int o = 0; o < 3; o++) rgb[i * 3 + o] = to_byte((m->tiny_out[o * n + i] + 1) * 127.5f);
        return SIM_OK;
    }
    if (cl != 4) return err_set(err, SIM_ERR_UNSUPPORTED, "no preview for %d latent channels without a tiny autoencoder", cl);
    for (int y = 0; y < lh; y++)
        for (int x = 0; x < lw; x++) {
            uint8_t px[3];
            for (int o = 0; o < 3; o++) {
                float v = 0;
                for (int k = 0; k < 4; k++) v += latent[k * plane + (size_t)y * lw + x] * PREVIEW_K[k][o];
                px[o] = to_byte((v + 1) * 127.5f);
            }
            for (int dy = 0; dy < f; dy++)
                for (int dx = 0; dx < f; dx++) memcpy(rgb + (((size_t)y * f + dy) * W + (size_t)x * f + dx) * 3, px, 3);
        }
    return SIM_OK;
}
