// forward.c — the forward pass as one parallel region with barriers.
//
// Every step splits its work either statically by token rows (norms, RoPE,
// SwiGLU: cheap, O(n·width)) or dynamically by fixed chunks claimed from a
// counter (matrix products, attention). Chunk boundaries depend only on the
// shapes, and each output is computed by one thread in a fixed order, so
// results do not depend on the thread count.
//
// The KV cache stores K as (layer, cell, kv_dim) and V transposed as
// (layer, kv_dim, cell): then both attention products are matrix products
// over contiguous rows that the gemm kernels already do well —
//   S = Q·Kᵀ : gemm over K rows (n = head_dim),
//   O += P·V : gemm over Vᵀ rows (n = cells of the tile).
#include "model/forward.h"

#include <math.h>
#include <string.h>

#define ATTN_ROWS 64   // query rows (heads × tokens) per attention work item
#define ATTN_TILE 256  // cells per tile of the online softmax
#define N_CTX_DEFAULT_CAP 4096

struct fwd_ctx {
    const model *m;
    fwd_params p;
    kv_cache kv;
    pool *pool;
    const kern_ops *k;
    int q_dim, kv_dim;
    rope_table rope_tab; // RoPE frequencies for this context
    void *mem; // the one allocation all buffers below are carved from

    float *x;     // (n_batch, n_embd) residual stream
    float *xn;    // (n_batch, n_embd) normalized input of the next products
    float *tmp;   // (n_batch, n_embd) output of Wo / Wdown before the residual add
    float *q;     // (n_batch, q_dim)
    float *kb;    // (n_batch, kv_dim)
    float *vb;    // (n_batch, kv_dim)
    float *attn;  // (n_batch, q_dim)
    float *gate;  // (n_batch, n_ff); holds silu(gate) ⊙ up after the SwiGLU step
    float *up;    // (n_batch, n_ff)
    void *act[3]; // (n_batch, max_width) activations per tt_act format (act[TT_ACT_F32] unused)
    float *rope;  // (n_batch, rope_dim/2, 2) cos and sin per token and frequency
    float *logits; // (n_outputs, n_vocab)
    int *out_idx;  // (n_outputs) batch index of each token that wants logits
    int n_logits;
    int *cells;    // (n_batch) the cells of the current batch
    int *moved;    // (n_ctx) cells a shift moved
    float *scratch; // (n_threads, scratch_floats) attention scratch
    size_t scratch_floats;
    pool_counter *ctrs;
    int n_ctrs;
    const fwd_batch *b; // the batch being decoded
    fwd_profile prof;
};

fwd_params fwd_default_params(void) {
    return (fwd_params){.n_ctx = 0, .n_batch = 512, .n_outputs = 32, .n_threads = 0,
                        .kv_type = TT_F16, .kernels = KERN_BEST};
}

fwd_params fwd_resolve_params(const model *m, const fwd_params *params) {
    fwd_params p = *params;
    if (p.n_ctx <= 0) p.n_ctx = MIN(m->hp.n_ctx_train, N_CTX_DEFAULT_CAP);
    if (p.n_threads <= 0) p.n_threads = pool_cpu_count();
    if (p.n_batch <= 0) p.n_batch = 512;
    if (p.n_batch > p.n_ctx) p.n_batch = p.n_ctx;
    if (p.n_outputs <= 0) p.n_outputs = 1;
    if (p.n_outputs > p.n_batch) p.n_outputs = p.n_batch;
    return p;
}

// --- setup -----------------------------------------------------------------------

// The scratch buffers, carved from one allocation.
enum { B_X, B_XN, B_TMP, B_Q, B_KB, B_VB, B_ATTN, B_GATE, B_UP, B_ACT32, B_ACTK, B_ROPE,
       B_LOGITS, B_OUT_IDX, B_CELLS, B_MOVED, B_SCRATCH, B_CTRS, B_COUNT };

// Bytes of each buffer (each rounded up to 64) for resolved parameters p.
static size_t buffer_sizes(const model_hparams *hp, const fwd_params *p, size_t sz[B_COUNT]) {
    size_t nb = (size_t)p->n_batch, f = sizeof(float);
    size_t q_dim = (size_t)hp->n_head * hp->head_dim, kv_dim = (size_t)hp->n_head_kv * hp->head_dim;
    int64_t max_width = MAX(MAX(hp->n_embd, hp->n_ff), (int64_t)q_dim);
    int G = hp->n_head / hp->n_head_kv;
    size_t rows = (size_t)MAX(G, ATTN_ROWS / G * G);
    sz[B_X] = sz[B_XN] = sz[B_TMP] = nb * hp->n_embd * f;
    sz[B_Q] = sz[B_ATTN] = nb * q_dim * f;
    sz[B_KB] = sz[B_VB] = nb * kv_dim * f;
    sz[B_GATE] = sz[B_UP] = nb * hp->n_ff * f;
    sz[B_ACT32] = nb * tt_act_row_size(TT_ACT_Q8_32, max_width);
    sz[B_ACTK] = nb * tt_act_row_size(TT_ACT_Q8_K, max_width);
    sz[B_ROPE] = nb * hp->rope_dim * f;
    sz[B_LOGITS] = (size_t)p->n_outputs * hp->n_vocab * f;
    sz[B_OUT_IDX] = (size_t)p->n_outputs * sizeof(int);
    sz[B_CELLS] = nb * sizeof(int);
    sz[B_MOVED] = (size_t)p->n_ctx * sizeof(int);
    // Per thread: the attention work item, or one K row being re-rotated.
    size_t per_thread = MAX(rows * (3 * (size_t)hp->head_dim + ATTN_TILE + 2) + 16, kv_dim);
    sz[B_SCRATCH] = (size_t)p->n_threads * per_thread * f;
    sz[B_CTRS] = (size_t)(8 * hp->n_layer + 1) * sizeof(pool_counter);
    size_t total = 0;
    for (int i = 0; i < B_COUNT; i++) {
        sz[i] = (sz[i] + 63) / 64 * 64;
        total += sz[i];
    }
    return total;
}

size_t fwd_scratch_bytes(const model *m, const fwd_params *params) {
    fwd_params p = fwd_resolve_params(m, params);
    size_t sz[B_COUNT];
    return buffer_sizes(&m->hp, &p, sz);
}

sim_status fwd_new(fwd_ctx **out, const model *m, const fwd_params *params, sim_err *err) {
    *out = NULL;
    const model_hparams *hp = &m->hp;
    fwd_params p = fwd_resolve_params(m, params);
    if (p.n_ctx > (1 << 24)) return err_set(err, SIM_ERR_ARG, "context size %d is too large", p.n_ctx);
    fwd_ctx *c = mem_calloc(1, sizeof *c);
    if (!c) return err_set(err, SIM_ERR_NOMEM, "out of memory");
    c->m = m;
    c->p = p;
    c->k = kern_get(p.kernels);
    c->q_dim = hp->n_head * hp->head_dim;
    c->kv_dim = hp->n_head_kv * hp->head_dim;
    model_rope_table(m, p.n_ctx, &c->rope_tab);
    sim_status st = kv_init(&c->kv, hp->n_layer, p.n_ctx, c->kv_dim, p.kv_type, err);
    if (st) {
        mem_free(c);
        return st;
    }
    if ((st = pool_new(&c->pool, p.n_threads, err))) {
        fwd_free(c);
        return st;
    }
    size_t sz[B_COUNT];
    size_t total = buffer_sizes(hp, &p, sz);
    if (!(c->mem = mem_alloc_aligned(64, total))) {
        fwd_free(c);
        return err_set(err, SIM_ERR_NOMEM, "out of memory for %.1f MiB of scratch buffers (a %d-token batch)",
                       (double)total / (1 << 20), p.n_batch);
    }
    void *bufs[B_COUNT];
    uint8_t *at = c->mem;
    for (int i = 0; i < B_COUNT; i++) {
        bufs[i] = at;
        at += sz[i];
    }
    c->x = bufs[B_X];
    c->xn = bufs[B_XN];
    c->tmp = bufs[B_TMP];
    c->q = bufs[B_Q];
    c->kb = bufs[B_KB];
    c->vb = bufs[B_VB];
    c->attn = bufs[B_ATTN];
    c->gate = bufs[B_GATE];
    c->up = bufs[B_UP];
    c->act[TT_ACT_Q8_32] = bufs[B_ACT32];
    c->act[TT_ACT_Q8_K] = bufs[B_ACTK];
    c->rope = bufs[B_ROPE];
    c->logits = bufs[B_LOGITS];
    c->out_idx = bufs[B_OUT_IDX];
    c->cells = bufs[B_CELLS];
    c->moved = bufs[B_MOVED];
    c->scratch = bufs[B_SCRATCH];
    c->scratch_floats = sz[B_SCRATCH] / sizeof(float) / (size_t)p.n_threads;
    c->ctrs = bufs[B_CTRS];
    c->n_ctrs = (int)(sz[B_CTRS] / sizeof(pool_counter));
    *out = c;
    return SIM_OK;
}

void fwd_free(fwd_ctx *c) {
    if (!c) return;
    pool_free(c->pool);
    kv_free(&c->kv);
    mem_free_aligned(c->mem);
    mem_free(c);
}

kv_cache *fwd_kv(fwd_ctx *c) { return &c->kv; }
const model *fwd_model(const fwd_ctx *c) { return c->m; }
int fwd_n_ctx(const fwd_ctx *c) { return c->p.n_ctx; }
int fwd_n_batch(const fwd_ctx *c) { return c->p.n_batch; }
int fwd_n_outputs(const fwd_ctx *c) { return c->p.n_outputs; }
int fwd_n_threads(const fwd_ctx *c) { return c->p.n_threads; }
const kern_ops *fwd_kernels(const fwd_ctx *c) { return c->k; }
int fwd_n_logits(const fwd_ctx *c) { return c->n_logits; }

const float *fwd_logits(const fwd_ctx *c, int i) {
    ASSERT(i >= 0 && i < c->n_logits);
    return c->logits + (size_t)i * c->m->hp.n_vocab;
}

// --- row steps ---------------------------------------------------------------------

// The activations a product with W reads: the floats themselves or the
// quantized copy in W's format.
static const void *act_for(const fwd_ctx *c, const mm_tensor *W, const float *src) {
    tt_act a = tt_get(W->type)->act;
    return a == TT_ACT_F32 ? (const void *)src : c->act[a];
}

// Quantizes row r of src (width floats) into every format in the mask.
static void quantize_row(const fwd_ctx *c, unsigned act_mask, const float *src, int r, int width) {
    for (int a = TT_ACT_Q8_32; a <= TT_ACT_Q8_K; a++) {
        if (!(act_mask & (1u << a))) continue;
        size_t rb = tt_act_row_size((tt_act)a, width);
        c->k->quantize_act[a](src + (size_t)r * width, (char *)c->act[a] + (size_t)r * rb, width);
    }
}

static unsigned act_mask_of(const mm_tensor *a, const mm_tensor *b, const mm_tensor *cc) {
    unsigned m = 0;
    const mm_tensor *ts[3] = {a, b, cc};
    for (int i = 0; i < 3; i++)
        if (ts[i]) m |= 1u << tt_get(ts[i]->type)->act;
    return m & ~(1u << TT_ACT_F32);
}

static void rmsnorm(float *dst, const float *x, const float *w, int n, float eps) {
    double ss = 0;
    for (int i = 0; i < n; i++) ss += (double)x[i] * x[i];
    float scale = (float)(1.0 / sqrt(ss / n + eps));
    for (int i = 0; i < n; i++) dst[i] = x[i] * scale * w[i];
}

// For the rows of this thread: optionally x += tmp, then xn = rmsnorm(x) * w,
// quantized for the next products.
static void norm_step(fwd_ctx *c, bool add_tmp, const float *w, unsigned act_mask, int ith, int nth) {
    int d = c->m->hp.n_embd;
    for (int r = ith; r < c->b->n; r += nth) {
        float *x = c->x + (size_t)r * d;
        if (add_tmp) {
            const float *t = c->tmp + (size_t)r * d;
            for (int i = 0; i < d; i++) x[i] += t[i];
        }
        rmsnorm(c->xn + (size_t)r * d, x, w, d, c->m->hp.norm_eps);
        quantize_row(c, act_mask, c->xn, r, d);
    }
}

// cos and sin (times mscale) of the angles delta · omega[i].
static void rope_angles(const rope_table *t, double delta, float mscale, float *cs) {
    for (int i = 0; i < t->n; i++) {
        double theta = delta * t->omega[i];
        cs[2 * i] = (float)cos(theta) * mscale;
        cs[2 * i + 1] = (float)sin(theta) * mscale;
    }
}

static void rope_row(float *v, int n_heads, int head_dim, int rope_dim, bool neox, const float *cs) {
    int half = rope_dim / 2;
    for (int h = 0; h < n_heads; h++) {
        float *x = v + (size_t)h * head_dim;
        for (int i = 0; i < half; i++) {
            float co = cs[2 * i], si = cs[2 * i + 1];
            int i0 = neox ? i : 2 * i, i1 = neox ? i + half : 2 * i + 1;
            float a = x[i0], b = x[i1];
            x[i0] = a * co - b * si;
            x[i1] = a * si + b * co;
        }
    }
}

// Biases, RoPE on q and k, and the token's K and V into its cache cell.
static void qkv_step(fwd_ctx *c, int layer, int ith, int nth) {
    const model_hparams *hp = &c->m->hp;
    const model_layer *ly = &c->m->layers[layer];
    kv_cache *kv = &c->kv;
    for (int r = ith; r < c->b->n; r += nth) {
        float *q = c->q + (size_t)r * c->q_dim, *k = c->kb + (size_t)r * c->kv_dim,
              *v = c->vb + (size_t)r * c->kv_dim;
        if (ly->bq)
            for (int i = 0; i < c->q_dim; i++) q[i] += ly->bq[i];
        if (ly->bk)
            for (int i = 0; i < c->kv_dim; i++) k[i] += ly->bk[i];
        if (ly->bv)
            for (int i = 0; i < c->kv_dim; i++) v[i] += ly->bv[i];
        const float *cs = c->rope + (size_t)r * hp->rope_dim;
        rope_row(q, hp->n_head, hp->head_dim, hp->rope_dim, hp->rope_neox, cs);
        rope_row(k, hp->n_head_kv, hp->head_dim, hp->rope_dim, hp->rope_neox, cs);
        int cell = c->cells[r];
        uint8_t *krow = kv_k_row(kv, layer, cell);
        if (kv->type == TT_F16) {
            c->k->f32_to_f16(k, (tt_half *)krow, c->kv_dim);
            tt_half *vt = (tt_half *)kv_v_row(kv, layer, 0);
            for (int i = 0; i < c->kv_dim; i++) vt[(size_t)i * kv->n_ctx + cell] = tt_float_to_half(v[i]);
        } else {
            memcpy(krow, k, (size_t)c->kv_dim * sizeof(float));
            float *vt = (float *)kv_v_row(kv, layer, 0);
            for (int i = 0; i < c->kv_dim; i++) vt[(size_t)i * kv->n_ctx + cell] = v[i];
        }
    }
}

static void swiglu_step(fwd_ctx *c, unsigned act_mask, int ith, int nth) {
    int f = c->m->hp.n_ff;
    for (int r = ith; r < c->b->n; r += nth) {
        c->k->swiglu(c->gate + (size_t)r * f, c->up + (size_t)r * f, f);
        quantize_row(c, act_mask, c->gate, r, f);
    }
}

// --- attention -----------------------------------------------------------------------

static inline bool visible(const kv_cell *cell, int32_t pos, kv_seq_mask seqs) {
    return (cell->seqs & seqs) && cell->pos <= pos;
}

// Which cells of the tile [j0, j0 + nk) each token of the block sees. In the
// usual case (cells in position order, all in the token's sequences) a token
// sees a prefix of the tile: lim[t] is its length. Otherwise lim[t] = -1 and
// the rows are masked cell by cell. Returns one past the last cell any token
// sees (0: the tile can be skipped), so no work is spent past the diagonal.
static int tile_limits(const kv_cache *kv, const fwd_batch *b, int j0, int nk, int t0, int nt, int *lim) {
    int end = 0;
    for (int t = 0; t < nt; t++) {
        int32_t pos = b->pos[t0 + t];
        kv_seq_mask seqs = b->seqs[t0 + t];
        int n_vis = 0, last = -1;
        bool prefix = true;
        for (int j = 0; j < nk; j++) {
            if (visible(&kv->cells[j0 + j], pos, seqs)) {
                prefix = prefix && j == n_vis;
                n_vis++;
                last = j;
            }
        }
        lim[t] = prefix ? n_vis : -1;
        end = MAX(end, last + 1);
    }
    return end;
}

// One work item: the query heads of KV head g for a block of tokens, streamed
// over tiles of cells with an online softmax.
static void attend(fwd_ctx *c, int layer, int g, int t0, int nt, float *scr) {
    const model_hparams *hp = &c->m->hp;
    const kv_cache *kv = &c->kv;
    const fwd_batch *b = c->b;
    int hd = hp->head_dim, G = hp->n_head / hp->n_head_kv, rows = nt * G;
    float *Q = scr;                         // (rows, hd) scaled queries
    float *S = Q + (size_t)rows * hd;       // (rows, ATTN_TILE) scores, then probabilities
    float *O = S + (size_t)rows * ATTN_TILE; // (rows, hd) output accumulator
    float *T = O + (size_t)rows * hd;       // (rows, hd) one tile's P·V
    float *M = T + (size_t)rows * hd;       // (rows) running max
    float *L = M + rows;                    // (rows) running sum
    float scale = 1.0f / sqrtf((float)hd);
    for (int t = 0; t < nt; t++)
        for (int h = 0; h < G; h++) {
            const float *src = c->q + (size_t)(t0 + t) * c->q_dim + (size_t)(g * G + h) * hd;
            float *dst = Q + (size_t)(t * G + h) * hd;
            for (int i = 0; i < hd; i++) dst[i] = src[i] * scale;
        }
    memset(O, 0, (size_t)rows * hd * sizeof(float));
    for (int r = 0; r < rows; r++) {
        M[r] = -INFINITY;
        L[r] = 0;
    }
    kern_gemm_fn gemm = c->k->gemm[kv->type];
    size_t esz = kv->type == TT_F16 ? 2 : 4;
    int lim[ATTN_ROWS];
    for (int j0 = 0; j0 < kv->hi; j0 += ATTN_TILE) {
        int nk = tile_limits(kv, b, j0, MIN(ATTN_TILE, kv->hi - j0), t0, nt, lim);
        if (nk == 0) continue; // nothing visible to any token of the block
        const uint8_t *K = kv_k_row(kv, layer, j0) + (size_t)g * hd * esz;
        gemm(hd, nk, rows, K, kv->row_bytes, Q, (size_t)hd * sizeof(float), S, ATTN_TILE);
        for (int r = 0; r < rows; r++) {
            int t = r / G, n_vis = lim[t] >= 0 ? lim[t] : nk;
            float *s = S + (size_t)r * ATTN_TILE;
            if (lim[t] < 0) // mixed visibility: mask cell by cell
                for (int j = 0; j < nk; j++)
                    if (!visible(&kv->cells[j0 + j], b->pos[t0 + t], b->seqs[t0 + t])) s[j] = -INFINITY;
            float mt = -INFINITY;
            for (int j = 0; j < n_vis; j++) mt = s[j] > mt ? s[j] : mt;
            if (mt == -INFINITY) { // nothing visible in this tile for this row
                memset(s, 0, (size_t)nk * sizeof(float));
                continue;
            }
            float m_new = MAX(M[r], mt);
            float corr = expf(M[r] - m_new); // 0 when M[r] was -inf
            float sum = c->k->exp_sum(s, n_vis, m_new);
            if (n_vis < nk) memset(s + n_vis, 0, (size_t)(nk - n_vis) * sizeof(float));
            L[r] = L[r] * corr + sum;
            M[r] = m_new;
            if (corr != 1.0f) {
                float *o = O + (size_t)r * hd;
                for (int i = 0; i < hd; i++) o[i] *= corr;
            }
        }
        const uint8_t *Vt = kv_v_row(kv, layer, 0) + ((size_t)g * hd * kv->n_ctx + (size_t)j0) * esz;
        gemm(nk, hd, rows, Vt, (size_t)kv->n_ctx * esz, S, ATTN_TILE * sizeof(float), T, hd);
        for (size_t i = 0; i < (size_t)rows * hd; i++) O[i] += T[i];
    }
    for (int r = 0; r < rows; r++) {
        int t = t0 + r / G, h = g * G + r % G;
        float *dst = c->attn + (size_t)t * c->q_dim + (size_t)h * hd;
        const float *o = O + (size_t)r * hd;
        float inv = L[r] > 0 ? 1.0f / L[r] : 0.0f;
        for (int i = 0; i < hd; i++) dst[i] = o[i] * inv;
    }
}

static void attention_step(fwd_ctx *c, int layer, int ith, pool_counter *ctr) {
    const model_hparams *hp = &c->m->hp;
    int G = hp->n_head / hp->n_head_kv;
    int bq = MAX(1, ATTN_ROWS / G);
    int n_tb = (c->b->n + bq - 1) / bq;
    int64_t n_items = (int64_t)n_tb * hp->n_head_kv;
    float *scr = c->scratch + (size_t)ith * c->scratch_floats;
    for (int64_t it; (it = pool_claim(ctr)) < n_items;) {
        int g = (int)(it % hp->n_head_kv), tb = (int)(it / hp->n_head_kv);
        int t0 = tb * bq;
        attend(c, layer, g, t0, MIN(bq, c->b->n - t0), scr);
    }
}

// --- the region ----------------------------------------------------------------------

// Ends a step: waits for every thread, and (when profiling) charges the
// time since the last step to this one, on thread 0.
static void step_done(fwd_ctx *c, int ith, fwd_step step, uint64_t *t) {
    pool_barrier(c->pool);
    if (c->p.profile && ith == 0) {
        uint64_t now = time_ns();
        c->prof.ns[step] += now - *t;
        *t = now;
    }
}

static void region(void *arg, int ith, int nth) {
    fwd_ctx *c = arg;
    const model *m = c->m;
    const model_hparams *hp = &m->hp;
    const kern_ops *k = c->k;
    int n = c->b->n;
    pool_counter *ctr = c->ctrs;
    uint64_t t = c->p.profile && ith == 0 ? time_ns() : 0;
    for (int l = 0; l < hp->n_layer; l++) {
        const model_layer *ly = &m->layers[l];
        norm_step(c, l > 0, ly->attn_norm, act_mask_of(&ly->wq, &ly->wk, &ly->wv), ith, nth);
        step_done(c, ith, FWD_STEP_NORM, &t);
        mm_mul(k, &ly->wq, act_for(c, &ly->wq, c->xn), n, c->q, c->q_dim, ctr++, nth);
        mm_mul(k, &ly->wk, act_for(c, &ly->wk, c->xn), n, c->kb, c->kv_dim, ctr++, nth);
        mm_mul(k, &ly->wv, act_for(c, &ly->wv, c->xn), n, c->vb, c->kv_dim, ctr++, nth);
        step_done(c, ith, FWD_STEP_QKV, &t);
        qkv_step(c, l, ith, nth);
        step_done(c, ith, FWD_STEP_ROPE, &t);
        attention_step(c, l, ith, ctr++);
        step_done(c, ith, FWD_STEP_ATTENTION, &t);
        unsigned mo = act_mask_of(&ly->wo, NULL, NULL);
        for (int r = ith; r < n; r += nth) quantize_row(c, mo, c->attn, r, c->q_dim);
        step_done(c, ith, FWD_STEP_NORM, &t);
        mm_mul(k, &ly->wo, act_for(c, &ly->wo, c->attn), n, c->tmp, hp->n_embd, ctr++, nth);
        step_done(c, ith, FWD_STEP_WO, &t);
        norm_step(c, true, ly->ffn_norm, act_mask_of(&ly->w_gate, &ly->w_up, NULL), ith, nth);
        step_done(c, ith, FWD_STEP_NORM, &t);
        mm_mul(k, &ly->w_gate, act_for(c, &ly->w_gate, c->xn), n, c->gate, hp->n_ff, ctr++, nth);
        mm_mul(k, &ly->w_up, act_for(c, &ly->w_up, c->xn), n, c->up, hp->n_ff, ctr++, nth);
        step_done(c, ith, FWD_STEP_GATE_UP, &t);
        swiglu_step(c, act_mask_of(&ly->w_down, NULL, NULL), ith, nth);
        step_done(c, ith, FWD_STEP_NORM, &t);
        mm_mul(k, &ly->w_down, act_for(c, &ly->w_down, c->gate), n, c->tmp, hp->n_embd, ctr++, nth);
        step_done(c, ith, FWD_STEP_DOWN, &t);
    }
    // Final norm of the rows that want logits, packed into xn[0 .. n_logits).
    int d = hp->n_embd;
    unsigned mo = act_mask_of(&m->output, NULL, NULL);
    for (int i = ith; i < c->n_logits; i += nth) {
        int r = c->out_idx[i];
        float *x = c->x + (size_t)r * d;
        const float *tm = c->tmp + (size_t)r * d;
        for (int j = 0; j < d; j++) x[j] += tm[j];
        rmsnorm(c->xn + (size_t)i * d, x, m->out_norm, d, hp->norm_eps);
        quantize_row(c, mo, c->xn, i, d);
    }
    step_done(c, ith, FWD_STEP_NORM, &t);
    mm_mul(k, &m->output, act_for(c, &m->output, c->xn), c->n_logits, c->logits, hp->n_vocab, ctr++, nth);
    if (c->p.profile) step_done(c, ith, FWD_STEP_OUTPUT, &t);
}

const fwd_profile *fwd_get_profile(const fwd_ctx *c) { return &c->prof; }
void fwd_reset_profile(fwd_ctx *c) { memset(&c->prof, 0, sizeof c->prof); }

// --- shifting ------------------------------------------------------------------------------

typedef struct shift_job {
    fwd_ctx *c;
    const int *cells;
    int n;
    const float *cs; // (rope_dim) rotation by delta
} shift_job;

static void shift_region(void *arg, int ith, int nth) {
    shift_job *j = arg;
    fwd_ctx *c = j->c;
    kv_cache *kv = &c->kv;
    const model_hparams *hp = &c->m->hp;
    float *row = c->scratch + (size_t)ith * c->scratch_floats; // one K row
    int64_t total = (int64_t)kv->n_layer * j->n;
    for (int64_t i = ith; i < total; i += nth) {
        int layer = (int)(i / j->n), cell = j->cells[i % j->n];
        uint8_t *k = kv_k_row(kv, layer, cell);
        if (kv->type == TT_F16) tt_get(TT_F16)->to_float(k, row, c->kv_dim);
        else memcpy(row, k, (size_t)c->kv_dim * sizeof(float));
        rope_row(row, hp->n_head_kv, hp->head_dim, hp->rope_dim, hp->rope_neox, j->cs);
        if (kv->type == TT_F16) c->k->f32_to_f16(row, (tt_half *)k, c->kv_dim);
        else memcpy(k, row, (size_t)c->kv_dim * sizeof(float));
    }
}

void fwd_seq_shift(fwd_ctx *c, int s, int32_t p0, int32_t p1, int32_t delta) {
    if (delta == 0) return;
    int n = kv_seq_shift_cells(&c->kv, s, p0, p1, delta, c->moved);
    if (n > 0) {
        float cs[2 * 512];
        rope_angles(&c->rope_tab, delta, 1.0f, cs);
        shift_job j = {.c = c, .cells = c->moved, .n = n, .cs = cs};
        pool_run(c->pool, shift_region, &j);
    }
}

// --- decode ----------------------------------------------------------------------------

sim_status fwd_decode(fwd_ctx *c, const fwd_batch *b, sim_err *err) {
    const model *m = c->m;
    const model_hparams *hp = &m->hp;
    if (b->n < 1 || b->n > c->p.n_batch)
        return err_set(err, SIM_ERR_ARG, "batch of %d tokens (1..%d allowed)", b->n, c->p.n_batch);
    int n_out = 0;
    for (int i = 0; i < b->n; i++) {
        if (b->tokens[i] < 0 || b->tokens[i] >= hp->n_vocab)
            return err_set(err, SIM_ERR_ARG, "token id %d outside the vocabulary (0..%d)", b->tokens[i], hp->n_vocab - 1);
        if (b->pos[i] < 0) return err_set(err, SIM_ERR_ARG, "negative position %d", b->pos[i]);
        if (b->seqs[i] == 0) return err_set(err, SIM_ERR_ARG, "token %d belongs to no sequence", i);
        bool want = b->logits ? b->logits[i] : i == b->n - 1;
        if (want) {
            if (n_out == c->p.n_outputs)
                return err_set(err, SIM_ERR_ARG, "more than %d tokens want logits", c->p.n_outputs);
            c->out_idx[n_out++] = i;
        }
    }
    if (kv_find_slot(&c->kv, b->n, c->cells) != SIM_OK)
        return err_set(err, SIM_ERR_RANGE, "context full: %d tokens do not fit in the %d free of %d cells",
                       b->n, c->kv.n_ctx - c->kv.n_used, c->kv.n_ctx);
    c->n_logits = n_out;
    c->b = b;

    // Embeddings and RoPE tables (cheap, single-threaded).
    const mm_tensor *E = &m->tok_embd;
    for (int i = 0; i < b->n; i++)
        c->k->to_float[E->type]((const char *)E->data + (size_t)b->tokens[i] * E->row_bytes,
                                c->x + (size_t)i * hp->n_embd, hp->n_embd);
    for (int i = 0; i < b->n; i++) rope_angles(&c->rope_tab, b->pos[i], c->rope_tab.mscale, c->rope + (size_t)i * hp->rope_dim);
    kv_commit(&c->kv, b->n, c->cells, b->pos, b->seqs);
    memset(c->ctrs, 0, (size_t)c->n_ctrs * sizeof(pool_counter));
    uint64_t t0 = c->p.profile ? time_ns() : 0;
    pool_run(c->pool, region, c);
    if (c->p.profile) {
        c->prof.ns[FWD_STEP_TOTAL] += time_ns() - t0;
        c->prof.n_calls++;
        c->prof.n_tokens += b->n;
    }
    c->b = NULL;
    return SIM_OK;
}
