// resize.c — separable resampling, fitting modes and the Gaussian blur (see resize.h).
#include "image/resize.h"

#include <math.h>
#include <string.h>

#define RSZ_MAX_SIDE 16384

static const char *const MODES[RSZ_MODE_COUNT] = {"just", "crop", "fill"};

int rsz_mode_parse(const char *name) {
    for (int i = 0; i < RSZ_MODE_COUNT; i++)
        if (strcmp(name, MODES[i]) == 0) return i;
    return -1;
}

const char *rsz_mode_name(rsz_mode m) { return (unsigned)m < RSZ_MODE_COUNT ? MODES[m] : "?"; }

rsz_box rsz_fit(int sw, int sh, int dw, int dh, rsz_mode mode) {
    rsz_box b = {0, 0, sw, sh};
    if (mode == RSZ_JUST) return b;
    // The source is wider than the output (crop its sides / fill above and below) or not.
    bool wider = (double)sw * dh > (double)sh * dw;
    if (wider == (mode == RSZ_CROP)) b.w = (double)sh * dw / dh;
    else b.h = (double)sw * dh / dw;
    b.x = (sw - b.w) / 2, b.y = (sh - b.h) / 2;
    return b;
}

// --- the kernels ---------------------------------------------------------------------------------

static double sinc(double x) {
    if (x == 0) return 1;
    if (x == round(x)) return 0; // exact zeros, so a same-size resize copies
    return sin(M_PI * x) / (M_PI * x);
}

// Taps of one axis: output i reads source pixels first[i] + k (clamped), k < n_taps, with weights w[i·n_taps + k].
typedef struct taps {
    int n_taps;
    int *first; // (dn)
    double *w;  // (dn, n_taps)
} taps;

static void taps_free(taps *t) {
    mem_free(t->first);
    mem_free(t->w);
    t->first = NULL, t->w = NULL;
}

static sim_status taps_make(taps *t, double b, double len, int dn, rsz_filter f, sim_err *err) {
    double step = len / dn, s = MAX(step, 1.0), support = (f == RSZ_LANCZOS3 ? 3.0 : 0.5) * s;
    t->n_taps = (int)ceil(2 * support) + 2;
    t->first = mem_alloc((size_t)dn * sizeof *t->first);
    t->w = mem_alloc((size_t)dn * t->n_taps * sizeof *t->w);
    if (!t->first || !t->w) {
        taps_free(t);
        return err_set(err, SIM_ERR_NOMEM, "out of memory for the resampling weights (%d taps x %d)", t->n_taps, dn);
    }
    for (int i = 0; i < dn; i++) {
        double c = b + (i + 0.5) * step, sum = 0, *w = t->w + (size_t)i * t->n_taps;
        int j0 = (int)floor(c - support);
        t->first[i] = j0;
        for (int k = 0; k < t->n_taps; k++) {
            double j = j0 + k;
            if (f == RSZ_LANCZOS3) {
                double x = (j + 0.5 - c) / s;
                w[k] = fabs(x) < 3 ? sinc(x) * sinc(x / 3) : 0;
            } else {
                w[k] = fmax(0, fmin(j + 1, c + s / 2) - fmax(j, c - s / 2));
            }
            sum += w[k];
        }
        ASSERT(sum > 0);
        for (int k = 0; k < t->n_taps; k++) w[k] /= sum;
    }
    return SIM_OK;
}

static int clampi(int v, int lo, int hi) { return v < lo ? lo : v > hi ? hi : v; }

// --- resampling -----------------------------------------------------------------------------------

sim_status rsz_planes(const float *src, int n_planes, int sw, int sh, rsz_box box, float *dst, int dw, int dh, rsz_filter f,
                      sim_err *err) {
    if (sw < 1 || sh < 1 || dw < 1 || dh < 1 || sw > RSZ_MAX_SIDE || sh > RSZ_MAX_SIDE || dw > RSZ_MAX_SIDE || dh > RSZ_MAX_SIDE)
        return err_set(err, SIM_ERR_ARG, "resize %d x %d to %d x %d: sides must be 1..%d", sw, sh, dw, dh, RSZ_MAX_SIDE);
    if (!(box.w > 0 && box.h > 0 && box.w <= 4.0 * RSZ_MAX_SIDE && box.h <= 4.0 * RSZ_MAX_SIDE && fabs(box.x) <= 4.0 * RSZ_MAX_SIDE &&
          fabs(box.y) <= 4.0 * RSZ_MAX_SIDE))
        return err_set(err, SIM_ERR_ARG, "resize: source span %g x %g at (%g, %g) is empty or out of range", box.w, box.h, box.x, box.y);
    taps tx = {0}, ty = {0};
    sim_status st = taps_make(&tx, box.x, box.w, dw, f, err);
    if (st == SIM_OK) st = taps_make(&ty, box.y, box.h, dh, f, err);
    float *tmp = st == SIM_OK ? mem_alloc((size_t)n_planes * sh * dw * sizeof *tmp) : NULL;
    if (st == SIM_OK && !tmp) st = err_set(err, SIM_ERR_NOMEM, "out of memory resizing %d x %d to %d x %d", sw, sh, dw, dh);
    for (int p = 0; p < n_planes && st == SIM_OK; p++) {
        const float *sp = src + (size_t)p * sw * sh;
        float *tp = tmp + (size_t)p * sh * dw, *dp = dst + (size_t)p * dw * dh;
        for (int y = 0; y < sh; y++)
            for (int x = 0; x < dw; x++) {
                const double *w = tx.w + (size_t)x * tx.n_taps;
                double acc = 0;
                for (int k = 0; k < tx.n_taps; k++)
                    if (w[k] != 0) acc += w[k] * sp[(size_t)y * sw + clampi(tx.first[x] + k, 0, sw - 1)];
                tp[(size_t)y * dw + x] = (float)acc;
            }
        for (int y = 0; y < dh; y++) {
            const double *w = ty.w + (size_t)y * ty.n_taps;
            for (int x = 0; x < dw; x++) {
                double acc = 0;
                for (int k = 0; k < ty.n_taps; k++)
                    if (w[k] != 0) acc += w[k] * tp[(size_t)clampi(ty.first[y] + k, 0, sh - 1) * dw + x];
                dp[(size_t)y * dw + x] = (float)acc;
            }
        }
    }
    mem_free(tmp);
    taps_free(&tx);
    taps_free(&ty);
    return st;
}

// One plane per output channel from RGBA8: RGB scaled to [-1, 1], or luma in [0, 1].
static sim_status from_rgba8(const uint8_t *rgba, int sw, int sh, rsz_box box, rsz_filter f, bool luma, float *dst, int dw, int dh,
                             sim_err *err) {
    if (sw < 1 || sh < 1 || sw > RSZ_MAX_SIDE || sh > RSZ_MAX_SIDE)
        return err_set(err, SIM_ERR_ARG, "resize: a %d x %d picture (sides 1..%d)", sw, sh, RSZ_MAX_SIDE);
    int np = luma ? 1 : 3;
    size_t plane = (size_t)sw * sh;
    float *src = mem_alloc(np * plane * sizeof *src);
    if (!src) return err_set(err, SIM_ERR_NOMEM, "out of memory for a %d x %d picture", sw, sh);
    for (size_t i = 0; i < plane; i++) {
        const uint8_t *px = rgba + 4 * i;
        if (luma) src[i] = (0.299f * px[0] + 0.587f * px[1] + 0.114f * px[2]) / 255.0f;
        else
            for (int c = 0; c < 3; c++) src[c * plane + i] = px[c] / 127.5f - 1.0f;
    }
    sim_status st = rsz_planes(src, np, sw, sh, box, dst, dw, dh, f, err);
    mem_free(src);
    float lo = luma ? 0.0f : -1.0f;
    for (size_t i = 0; st == SIM_OK && i < (size_t)np * dw * dh; i++) dst[i] = dst[i] < lo ? lo : dst[i] > 1 ? 1 : dst[i];
    return st;
}

sim_status rsz_rgba8(const uint8_t *rgba, int sw, int sh, rsz_box box, rsz_filter f, float *rgb, int dw, int dh, sim_err *err) {
    return from_rgba8(rgba, sw, sh, box, f, false, rgb, dw, dh, err);
}

sim_status rsz_rgba8_luma(const uint8_t *rgba, int sw, int sh, rsz_box box, rsz_filter f, float *mask, int dw, int dh,
                          sim_err *err) {
    return from_rgba8(rgba, sw, sh, box, f, true, mask, dw, dh, err);
}

// --- blur -------------------------------------------------------------------------------------------

sim_status rsz_blur(float *plane, int w, int h, double sigma, sim_err *err) {
    if (!(sigma > 0)) return SIM_OK;
    if (sigma > 1000) return err_set(err, SIM_ERR_ARG, "blur of %g pixels (at most 1000)", sigma);
    int r = (int)ceil(3 * sigma), len = MAX(w, h);
    double *k = mem_alloc((size_t)(2 * r + 1) * sizeof *k);
    float *line = mem_alloc((size_t)len * sizeof *line);
    if (!k || !line) {
        mem_free(k);
        mem_free(line);
        return err_set(err, SIM_ERR_NOMEM, "out of memory for a blur of %g pixels", sigma);
    }
    double sum = 0;
    for (int i = -r; i <= r; i++) sum += k[i + r] = exp(-(double)i * i / (2 * sigma * sigma));
    for (int i = 0; i <= 2 * r; i++) k[i] /= sum;
    // Rows, then columns: each line copied out, then convolved back with its edges repeated.
    for (int pass = 0; pass < 2; pass++) {
        int n_lines = pass ? w : h, n = pass ? h : w;
        size_t stride = pass ? (size_t)w : 1, next = pass ? 1 : (size_t)w;
        for (int l = 0; l < n_lines; l++) {
            float *p = plane + (size_t)l * next;
            for (int i = 0; i < n; i++) line[i] = p[i * stride];
            for (int i = 0; i < n; i++) {
                double acc = 0;
                for (int t = -r; t <= r; t++) acc += k[t + r] * line[clampi(i + t, 0, n - 1)];
                p[i * stride] = (float)acc;
            }
        }
    }
    mem_free(k);
    mem_free(line);
    return SIM_OK;
}
