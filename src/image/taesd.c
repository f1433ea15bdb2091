// taesd.c — tiny autoencoder: weight binding, decoder and encoder (see taesd.h).
#include "image/taesd.h"

#include <math.h>
#include <stdio.h>
#include <string.h>

#include "image/wts.h"

#define CH 64      // the width of every block
#define GN_MUL 4   // pooled GroupNorm branch width: 4 × CH
#define GN_GROUPS 4
#define GN_EPS 1e-5f

typedef struct tblock {
    op_mat w[3];              // conv.0/2/4: (CH, CH, 3, 3)
    float *b[3];              // (CH)
    op_mat p0, p3;            // pool: (4CH, CH, 1, 1), (CH, 4CH, 1, 1); data NULL without
    float *pg, *pb;           // pool GroupNorm (4CH) ×2
} tblock;

typedef struct tconv {
    op_conv p;
    op_mat w;     // (cout, cin, 3, 3)
    float *b;     // (cout); NULL for bias-free convs
} tconv;

struct taesd {
    int lat;              // latent channels
    bool has_dec, has_enc;
    void *dec_weights, *enc_weights; // the arenas
    // decoder: 1 conv, 3 blocks, 3 × (up, conv, blocks), 19 conv
    tconv d_in, d_up[3], d_out;
    tblock d_blk[10];     // 3 + 3 + 3 + 1
    // encoder: 0 conv, 1 block, 3 × (conv s2, 3 blocks), 14 conv
    tconv e_in, e_down[3], e_out;
    tblock e_blk[10];     // 1 + 3 + 3 + 3
};

struct taesd_work {
    int lh, lw;
    float *a, *b, *t;     // (CH, 8lh, 8lw) each
    float *pool;          // (4CH, lh, lw)
    float *scratch;
    size_t scratch_cap;
};

// --- binding -------------------------------------------------------------------------------

static void take_conv(wts_loader *L, tconv *c, int cin, int cout, int stride, bool bias, int idx) {
    c->p = (op_conv){cin, cout, 3, 3, stride, 1, 1, 1, 1, false};
    wts_take_mat(L, &c->w, WTS_SHAPE(cout, cin, 3, 3), "%d.weight", idx);
    c->b = NULL;
    if (bias) wts_take(L, &c->b, WTS_SHAPE(cout), "%d.bias", idx);
}

static void take_block(wts_loader *L, tblock *b, bool gn, int idx) {
    for (int i = 0; i < 3; i++) {
        wts_take_mat(L, &b->w[i], WTS_SHAPE(CH, CH, 3, 3), "%d.conv.%d.weight", idx, 2 * i);
        wts_take(L, &b->b[i], WTS_SHAPE(CH), "%d.conv.%d.bias", idx, 2 * i);
    }
    b->p0 = b->p3 = (op_mat){0};
    b->pg = b->pb = NULL;
    if (!gn) return;
    wts_take_mat(L, &b->p0, WTS_SHAPE(GN_MUL * CH, CH, 1, 1), "%d.pool.0.weight", idx);
    wts_take(L, &b->pg, WTS_SHAPE(GN_MUL * CH), "%d.pool.1.weight", idx);
    wts_take(L, &b->pb, WTS_SHAPE(GN_MUL * CH), "%d.pool.1.bias", idx);
    wts_take_mat(L, &b->p3, WTS_SHAPE(CH, GN_MUL * CH, 1, 1), "%d.pool.3.weight", idx);
}

static void bind_decoder(wts_loader *L, taesd *m, bool gn) {
    take_conv(L, &m->d_in, m->lat, CH, 1, true, 1);
    m->d_in.p.relu = true; // Conv, ReLU
    int idx = 3, nb = 0;
    for (int i = 0; i < 3; i++) take_block(L, &m->d_blk[nb++], gn, idx++);
    for (int s = 0; s < 3; s++) {
        idx++; // the upsample
        take_conv(L, &m->d_up[s], CH, CH, 1, false, idx++);
        for (int i = 0; i < (s == 2 ? 1 : 3); i++) take_block(L, &m->d_blk[nb++], false, idx++);
    }
    take_conv(L, &m->d_out, CH, 3, 1, true, idx);
}

static void bind_encoder(wts_loader *L, taesd *m, bool gn) {
    take_conv(L, &m->e_in, 3, CH, 1, true, 0);
    take_block(L, &m->e_blk[0], false, 1);
    int idx = 2, nb = 1;
    for (int s = 0; s < 3; s++) {
        take_conv(L, &m->e_down[s], CH, CH, 2, false, idx++);
        for (int i = 0; i < 3; i++) take_block(L, &m->e_blk[nb++], gn && s == 2, idx++);
    }
    take_conv(L, &m->e_out, CH, m->lat, 1, true, idx);
}

// One half (decoder or encoder) for wts_load.
typedef struct half {
    taesd *m;
    bool gn, dec;
} half;

static void bind_half(wts_loader *L, void *ud) {
    half *h = ud;
    if (h->dec) bind_decoder(L, h->m, h->gn);
    else bind_encoder(L, h->m, h->gn);
}

static sim_status load_half(taesd *m, const st_file *f, bool dec, void **arena, sim_err *err) {
    const st_tensor *t = st_find(f, dec ? "1.weight" : "14.weight");
    if (!t || t->n_dims != 4) return err_set(err, SIM_ERR_FORMAT, "%s: not a tiny autoencoder %s (no 4-D '%s')", f->path, dec ? "decoder" : "encoder", dec ? "1.weight" : "14.weight");
    int lat = (int)(dec ? t->shape[1] : t->shape[0]);
    if (lat < 1 || lat > 256) return err_set(err, SIM_ERR_FORMAT, "%s: %d latent channels", f->path, lat);
    if (m->lat && m->lat != lat) return err_set(err, SIM_ERR_FORMAT, "%s: %d latent channels, the other half has %d", f->path, lat, m->lat);
    m->lat = lat;
    bool gn = st_find(f, dec ? "3.pool.0.weight" : "13.pool.0.weight") != NULL;
    half h = {m, gn, dec};
    return wts_load(f, "", bind_half, &h, arena, err);
}

void taesd_free(taesd *m) {
    if (!m) return;
    mem_free(m->dec_weights);
    mem_free(m->enc_weights);
    mem_free(m);
}

sim_status taesd_load(taesd **out, const st_file *dec, const st_file *enc, sim_err *err) {
    *out = NULL;
    if (!dec && !enc) return err_set(err, SIM_ERR_ARG, "a tiny autoencoder needs a decoder or an encoder");
    taesd *m = mem_calloc(1, sizeof *m);
    if (!m) return err_set(err, SIM_ERR_NOMEM, "out of memory loading a tiny autoencoder");
    sim_status st = SIM_OK;
    if (dec && (st = load_half(m, dec, true, &m->dec_weights, err)) == SIM_OK) m->has_dec = true;
    if (st == SIM_OK && enc && (st = load_half(m, enc, false, &m->enc_weights, err)) == SIM_OK) m->has_enc = true;
    if (st != SIM_OK) {
        taesd_free(m);
        return st;
    }
    *out = m;
    return SIM_OK;
}

int taesd_latent_channels(const taesd *m) { return m->lat; }

sim_status taesd_work_new(taesd_work **out, const taesd *m, int lh, int lw, sim_err *err) {
    *out = NULL;
    if (lh < 1 || lw < 1 || lh > 512 || lw > 512) return err_set(err, SIM_ERR_RANGE, "latent %d x %d (1 to 512 per side)", lh, lw);
    size_t full = (size_t)CH * 64 * (size_t)lh * lw, npool = (size_t)GN_MUL * CH * lh * lw;
    size_t scratch = op_gemm_scratch(POOL_MAX_THREADS);
    size_t act = MAX(full, (size_t)MAX(3, m->lat) * 64 * lh * lw);
    taesd_work *w = mem_calloc(1, sizeof *w);
    float *buf = w ? mem_alloc((3 * act + npool + scratch) * sizeof(float)) : NULL;
    if (!buf) {
        mem_free(w);
        return err_set(err, SIM_ERR_NOMEM, "out of memory for tiny autoencoder buffers");
    }
    w->lh = lh, w->lw = lw;
    w->a = buf, w->b = buf + act, w->t = buf + 2 * act, w->pool = buf + 3 * act;
    w->scratch = w->pool + npool, w->scratch_cap = scratch;
    *out = w;
    return SIM_OK;
}

void taesd_work_free(taesd_work *w) {
    if (!w) return;
    mem_free(w->a);
    mem_free(w);
}

// --- forward ---------------------------------------------------------------------------------

static void relu(op_ctx *c, float *x, size_t n) { op_act_inplace(c, x, n, OP_ACT_RELU); }

// y = block(x); x is modified by the pooled branch; t and gbuf are work space.
static void block(op_ctx *c, const tblock *b, float *y, float *x, float *t, float *gbuf, int h, int w) {
    size_t n = (size_t)CH * h * w;
    op_conv k3 = {CH, CH, 3, 3, 1, 1, 1, 1, 1, false}, k3r = {CH, CH, 3, 3, 1, 1, 1, 1, 1, true}; // k3r: + ReLU
    if (b->p0.data) {
        op_conv up = {CH, GN_MUL * CH, 1, 1, 1, 0, 0, 0, 0, false}, down = {GN_MUL * CH, CH, 1, 1, 1, 0, 0, 0, 0, false};
        op_conv2d(c, gbuf, x, &up, h, w, b->p0, NULL);
        op_group_norm(c, gbuf, gbuf, GN_MUL * CH, h * w, GN_GROUPS, GN_EPS, b->pg, b->pb, false);
        relu(c, gbuf, (size_t)GN_MUL * n);
        op_conv2d(c, t, gbuf, &down, h, w, b->p3, NULL);
        op_add(x, x, t, n);
    }
    op_conv2d(c, t, x, &k3r, h, w, b->w[0], b->b[0]);
    op_conv2d(c, y, t, &k3r, h, w, b->w[1], b->b[1]);
    op_conv2d(c, t, y, &k3, h, w, b->w[2], b->b[2]);
    op_add(y, t, x, n);
    relu(c, y, n);
}

static void swap(float **a, float **b) {
    float *t = *a;
    *a = *b;
    *b = t;
}

sim_status taesd_decode(const taesd *m, taesd_work *wk, const op_ctx *cin, const float *z, int lh, int lw, float *image, sim_err *err) {
    if (!m->has_dec) return err_set(err, SIM_ERR_ARG, "this tiny autoencoder has no decoder");
    if (lh < 1 || lw < 1 || lh > wk->lh || lw > wk->lw)
        return err_set(err, SIM_ERR_RANGE, "latent %d x %d does not fit the buffers (up to %d x %d)", lh, lw, wk->lh, wk->lw);
    op_ctx c = *cin;
    c.scratch = wk->scratch;
    c.scratch_cap = wk->scratch_cap;
    float *x = wk->a, *y = wk->b, *t = wk->t;
    int h = lh, w = lw;
    size_t nz = (size_t)m->lat * h * w;
    for (size_t i = 0; i < nz; i++) t[i] = tanhf(z[i] / 3.0f) * 3.0f;
    op_conv2d(&c, x, t, &m->d_in.p, h, w, m->d_in.w, m->d_in.b); // with its ReLU (bind_decoder)
    int nb = 0;
    for (int i = 0; i < 3; i++, swap(&x, &y)) block(&c, &m->d_blk[nb++], y, x, t, wk->pool, h, w);
    for (int s = 0; s < 3; s++) {
        op_upsample2x(&c, t, x, CH, h, w);
        h *= 2, w *= 2;
        op_conv2d(&c, x, t, &m->d_up[s].p, h, w, m->d_up[s].w, NULL);
        for (int i = 0; i < (s == 2 ? 1 : 3); i++, swap(&x, &y)) block(&c, &m->d_blk[nb++], y, x, t, wk->pool, h, w);
    }
    op_conv2d(&c, image, x, &m->d_out.p, h, w, m->d_out.w, m->d_out.b);
    return SIM_OK;
}

sim_status taesd_encode(const taesd *m, taesd_work *wk, const op_ctx *cin, const float *image, int H, int W, float *z, sim_err *err) {
    if (!m->has_enc) return err_set(err, SIM_ERR_ARG, "this tiny autoencoder has no encoder");
    if (H < 8 || W < 8 || H % 8 || W % 8) return err_set(err, SIM_ERR_ARG, "image %d x %d: sides must be multiples of 8", H, W);
    if (H / 8 > wk->lh || W / 8 > wk->lw)
        return err_set(err, SIM_ERR_RANGE, "image %d x %d does not fit the buffers (up to %d x %d)", H, W, wk->lh * 8, wk->lw * 8);
    op_ctx c = *cin;
    c.scratch = wk->scratch;
    c.scratch_cap = wk->scratch_cap;
    float *x = wk->a, *y = wk->b, *t = wk->t;
    int h = H, w = W;
    op_conv2d(&c, x, image, &m->e_in.p, h, w, m->e_in.w, m->e_in.b);
    block(&c, &m->e_blk[0], y, x, t, wk->pool, h, w);
    swap(&x, &y);
    int nb = 1;
    for (int s = 0; s < 3; s++) {
        op_conv2d(&c, y, x, &m->e_down[s].p, h, w, m->e_down[s].w, NULL);
        h /= 2, w /= 2;
        swap(&x, &y);
        for (int i = 0; i < 3; i++, swap(&x, &y)) block(&c, &m->e_blk[nb++], y, x, t, wk->pool, h, w);
    }
    op_conv2d(&c, z, x, &m->e_out.p, h, w, m->e_out.w, m->e_out.b);
    return SIM_OK;
}
