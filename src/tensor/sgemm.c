// sgemm.c — the f32 GEMM driver: tiling, B packers, A conversion (see sgemm.h).
#include "tensor/sgemm.h"

#include <string.h>

#define MR KERN_SG_MR
#define NR KERN_SG_NR
#define MC_MAX 384   // tile rows: B's packing is amortized over this many
#define MC_MIN 24    // ... but tiles get as small as this to give threads work

size_t sg_type_size(tt_type t) {
    ASSERT(t == TT_F32 || t == TT_F16 || t == TT_BF16);
    return t == TT_F32 ? 4 : 2;
}

static int64_t cdiv(int64_t a, int64_t b) { return (a + b - 1) / b; }

void sg_plan(sg_args *g, int tiles) {
    ASSERT(g->M > 0 && g->N > 0 && g->K > 0);
    g->n_kb = (int)cdiv(g->K, SG_KC);
    g->kc = (int)cdiv(g->K, g->n_kb);
    int64_t n_nt = cdiv(g->N, SG_NC);
    g->nc = (int)(cdiv(cdiv(g->N, n_nt), NR) * NR);
    g->n_nt = cdiv(g->N, g->nc);
    int64_t n_mt = MAX(cdiv(g->M, MC_MAX), MIN(cdiv(MAX(tiles, 1), g->n_nt), cdiv(g->M, MC_MIN)));
    g->mc = (int)(cdiv(cdiv(g->M, n_mt), MR) * MR);
    g->n_mt = cdiv(g->M, g->mc);
}

void sg_tile(const sg_args *g, int64_t t, float *buf) {
    const kern_ops *k = g->k;
    float *bp = buf, *at = bp + (size_t)SG_KC * SG_NC, *tmp = at + (size_t)MR * SG_KC;
    int64_t m0 = t / g->n_nt * g->mc, n0 = t % g->n_nt * g->nc, m1 = MIN(g->M, m0 + g->mc);
    int nc = (int)MIN((int64_t)g->nc, g->N - n0);
    size_t es = sg_type_size(g->a_type);
    for (int kb = 0; kb < g->n_kb; kb++) {
        int k0 = kb * g->kc, kc = MIN(g->kc, g->K - k0);
        g->pack_b(g->b, k, k0, kc, n0, nc, bp, tmp);
        for (int64_t m = m0; m < m1; m += MR) {
            int mr = (int)MIN((int64_t)MR, m1 - m);
            const float *a = (const float *)g->a + (size_t)m * g->lda + k0;
            size_t lda = g->lda;
            if (g->a_type != TT_F32) { // this micro-panel's rows to f32, in L1
                for (int i = 0; i < mr; i++)
                    k->to_float[g->a_type]((const char *)g->a + ((size_t)(m + i) * g->lda + (size_t)k0) * es, at + (size_t)i * SG_KC, kc);
                a = at, lda = SG_KC;
            }
            const float *br = kb == 0 && g->bias_r ? g->bias_r + m : NULL;
            for (int p = 0; p * NR < nc; p++) {
                const float *bc = kb == 0 && g->bias_c ? g->bias_c + n0 + p * NR : NULL;
                k->sg_tile(kc, a, lda, bp + (size_t)p * kc * NR, g->c + (size_t)m * g->ldc + (size_t)n0 + (size_t)p * NR, g->ldc, mr,
                           MIN(NR, nc - p * NR), br, bc, g->acc || kb > 0);
            }
            if (g->relu && kb == g->n_kb - 1)
                for (int i = 0; i < mr; i++) {
                    float *row = g->c + (size_t)(m + i) * g->ldc + (size_t)n0;
                    for (int j = 0; j < nc; j++) row[j] = row[j] > 0 ? row[j] : 0;
                }
        }
    }
}

void sg_run(const sg_args *g, pool_counter *ctr, float *buf) {
    for (int64_t t; (t = pool_claim(ctr)) < sg_tiles(g);) sg_tile(g, t, buf);
}

// --- packers -----------------------------------------------------------------------------

void sg_pack_dense(const void *b, const kern_ops *k, int k0, int kc, int64_t n0, int nc, float *bp, float *tmp) {
    (void)k, (void)tmp;
    const sg_dense *d = b;
    for (int p = 0; p * NR < nc; p++) {
        int np = MIN(NR, nc - p * NR);
        float *dst = bp + (size_t)p * kc * NR;
        for (int kk = 0; kk < kc; kk++) {
            memcpy(dst + (size_t)kk * NR, d->b + (size_t)(k0 + kk) * d->ld + (size_t)n0 + (size_t)p * NR, (size_t)np * sizeof *dst);
            if (np < NR) memset(dst + (size_t)kk * NR + np, 0, (size_t)(NR - np) * sizeof *dst);
        }
    }
}

void sg_pack_rows(const void *b, const kern_ops *k, int k0, int kc, int64_t n0, int nc, float *bp, float *tmp) {
    const sg_rows *r = b;
    size_t es = sg_type_size(r->type);
    for (int p = 0; p * NR < nc; p++) {
        float *dst = bp + (size_t)p * kc * NR;
        // 16 columns (rows of R) at a time: to f32 (unless they are), then 16×16 transposes.
        for (int g0 = 0; g0 < NR; g0 += 16) {
            int nv = MIN(16, nc - p * NR - g0);
            if (nv <= 0) {
                for (int kk = 0; kk < kc; kk++) memset(dst + (size_t)kk * NR + g0, 0, 16 * sizeof *dst);
                continue;
            }
            size_t row0 = (size_t)n0 + (size_t)p * NR + (size_t)g0;
            const float *src = (const float *)r->r + row0 * r->ld + (size_t)k0;
            size_t lds = r->ld;
            if (r->type != TT_F32 || nv < 16) {
                for (int i = 0; i < 16; i++) {
                    float *t = tmp + (size_t)i * SG_KC;
                    const char *row = (const char *)r->r + ((row0 + (size_t)i) * r->ld + (size_t)k0) * es;
                    if (i >= nv) memset(t, 0, (size_t)kc * sizeof *t);
                    else if (r->type == TT_F32) memcpy(t, row, (size_t)kc * sizeof *t);
                    else k->to_float[r->type](row, t, kc);
                }
                src = tmp, lds = SG_KC;
            }
            int kk = 0;
            for (; kk + 16 <= kc; kk += 16) k->sg_transpose16(src + kk, lds, dst + (size_t)kk * NR + g0, NR);
            for (; kk < kc; kk++)
                for (int i = 0; i < 16; i++) dst[(size_t)kk * NR + g0 + i] = src[(size_t)i * lds + kk];
        }
    }
}
