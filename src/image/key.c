// key.c — chroma key, trim and a common canvas (see key.h for the rules).
#include "image/key.h"

#include <math.h>
#include <string.h>

key_params key_defaults(void) {
    return (key_params){.auto_color = true, .tolerance = 40, .softness = 60, .spill = true};
}

static int hexval(char c) {
    if (c >= '0' && c <= '9') return c - '0';
    if ((c | 32) >= 'a' && (c | 32) <= 'f') return (c | 32) - 'a' + 10;
    return -1;
}

bool key_parse_color(const char *s, uint8_t out[3]) {
    if (*s == '#') s++;
    if (strlen(s) != 6) return false;
    for (int i = 0; i < 3; i++) {
        int h = hexval(s[2 * i]), l = hexval(s[2 * i + 1]);
        if (h < 0 || l < 0) return false;
        out[i] = (uint8_t)(h * 16 + l);
    }
    return true;
}

static float dist3(const uint8_t *p, const float k[3]) {
    float dr = p[0] - k[0], dg = p[1] - k[1], db = p[2] - k[2];
    return sqrtf(dr * dr + dg * dg + db * db);
}

// --- border colour ---------------------------------------------------------------------

// Runs the body on every border pixel once (x, y: its coordinates).
#define FOR_BORDER(w, h, x, y, ...)                                                      \
    for (int y = 0; y < (h); y++)                                                        \
        for (int x = 0; x < (w); x += (y == 0 || y == (h) - 1) ? 1 : ((w) > 1 ? (w) - 1 : 1)) __VA_ARGS__

sim_status key_detect_color(const uint8_t *rgba, int w, int h, float tolerance, uint8_t out[3], sim_err *err) {
    if (w < 1 || h < 1) return err_set(err, SIM_ERR_ARG, "key: empty image");
    uint32_t *count = mem_calloc(4096, sizeof *count);
    uint64_t *sum = mem_calloc(4096 * 3, sizeof *sum);
    if (!count || !sum) {
        mem_free(count), mem_free(sum);
        return err_set(err, SIM_ERR_NOMEM, "key: out of memory");
    }
    uint64_t n = 0;
    FOR_BORDER(w, h, x, y, {
        const uint8_t *p = rgba + ((size_t)y * w + x) * 4;
        int bin = (p[0] >> 4) << 8 | (p[1] >> 4) << 4 | p[2] >> 4;
        count[bin]++, n++;
        for (int c = 0; c < 3; c++) sum[bin * 3 + c] += p[c];
    });
    int best = 0;
    for (int i = 1; i < 4096; i++)
        if (count[i] > count[best]) best = i;
    float mode[3], acc[3] = {0};
    for (int c = 0; c < 3; c++) mode[c] = (float)sum[best * 3 + c] / (float)count[best];
    uint64_t near = 0;
    FOR_BORDER(w, h, x, y, {
        const uint8_t *p = rgba + ((size_t)y * w + x) * 4;
        if (dist3(p, mode) <= tolerance) {
            near++;
            for (int c = 0; c < 3; c++) acc[c] += p[c];
        }
    });
    mem_free(count), mem_free(sum);
    if (near * 4 < n || near == 0)
        return err_set(err, SIM_ERR_FORMAT,
                       "key: no flat background: the most common border colour #%02X%02X%02X covers %llu of %llu border pixels "
                       "(give --color or a larger --tolerance)",
                       (int)lrintf(mode[0]), (int)lrintf(mode[1]), (int)lrintf(mode[2]), (unsigned long long)near, (unsigned long long)n);
    for (int c = 0; c < 3; c++) out[c] = (uint8_t)lrintf(acc[c] / (float)near);
    return SIM_OK;
}

// --- keying ------------------------------------------------------------------------------

static uint8_t clamp8(float v) { return v <= 0 ? 0 : v >= 255 ? 255 : (uint8_t)lrintf(v); }

sim_status key_apply(uint8_t *rgba, int w, int h, const key_params *p, uint8_t used[3], sim_err *err) {
    if (w < 1 || h < 1) return err_set(err, SIM_ERR_ARG, "key: empty image");
    if (!(p->tolerance >= 0) || !(p->softness > 0) || p->tolerance > 442)
        return err_set(err, SIM_ERR_ARG, "key: tolerance %g and softness %g out of range (0..441, > 0)", p->tolerance, p->softness);
    uint8_t kc[3];
    if (p->auto_color) {
        sim_status st = key_detect_color(rgba, w, h, p->tolerance, kc, err);
        if (st != SIM_OK) return st;
    } else memcpy(kc, p->color, 3);
    if (used) memcpy(used, kc, 3);
    float k[3] = {kc[0], kc[1], kc[2]};
    size_t n = (size_t)w * h;
    uint8_t *src = mem_alloc(n * 4), *alpha = mem_alloc(n), *dt = mem_alloc(n);
    float *dist = mem_alloc(n * sizeof *dist); // (h, w) distance of each input pixel to the key
    if (!src || !alpha || !dt || !dist) {
        mem_free(src), mem_free(alpha), mem_free(dt), mem_free(dist);
        return err_set(err, SIM_ERR_NOMEM, "key: out of memory for a %dx%d image", w, h);
    }
    memcpy(src, rgba, n * 4);
    // alpha from the distance ramp (the input's alpha as an upper bound)
    for (size_t i = 0; i < n; i++) {
        float d = dist3(src + i * 4, k), a = (d - p->tolerance) / p->softness;
        alpha[i] = (uint8_t)((unsigned)clamp8(a * 255) * src[i * 4 + 3] / 255);
    }
    // chromatic keys: which channels carry the spill
    int kmax = MAX(kc[0], MAX(kc[1], kc[2])), kmin = MIN(kc[0], MIN(kc[1], kc[2]));
    bool chroma = kmax - kmin >= 64, spill_ch[3];
    for (int c = 0; c < 3; c++) spill_ch[c] = kc[c] >= kmax - 16;
    // dt: chessboard distance to the nearest background pixel (capped at 255)
    for (int pass = 0; pass < 2; pass++)
        for (size_t t = 0; t < n; t++) {
            size_t i = pass ? n - 1 - t : t;
            int x = (int)(i % (size_t)w), y = (int)(i / (size_t)w), s = pass ? 1 : -1, best = 255;
            if (alpha[i] == 0) {
                dt[i] = 0;
                continue;
            }
            // the neighbours already visited in this pass' order
            const int nb[4][2] = {{s, 0}, {-1, s}, {0, s}, {1, s}};
            for (int q = 0; q < 4; q++) {
                int xx = x + nb[q][0], yy = y + nb[q][1];
                if (xx >= 0 && yy >= 0 && xx < w && yy < h) best = MIN(best, dt[(size_t)yy * w + xx] + 1);
            }
            dt[i] = (uint8_t)MIN(pass ? dt[i] : 255, best);
        }
    for (size_t i = 0; i < n; i++) dist[i] = dist3(src + i * 4, k);
    const int R = KEY_EDGE_RADIUS, F = KEY_SPILL_FADE;
    for (int y = 0; y < h; y++)
        for (int x = 0; x < w; x++) {
            size_t i = (size_t)y * w + x;
            uint8_t *o = rgba + i * 4;
            if (alpha[i] == 0) {
                memset(o, 0, 4);
                continue;
            }
            o[3] = alpha[i];
            if (!p->spill) continue;
            bool edge = dt[i] <= R || alpha[i] < 255;
            float px[3] = {o[0], o[1], o[2]};
            if (edge) { // unmix towards the subject colour f: the farthest pixel from k within R
                size_t fi = i;
                for (int yy = MAX(0, y - R); yy <= MIN(h - 1, y + R); yy++)
                    for (int xx = MAX(0, x - R); xx <= MIN(w - 1, x + R); xx++)
                        if (dist[(size_t)yy * w + xx] > dist[fi]) fi = (size_t)yy * w + xx;
                const uint8_t *f = src + fi * 4;
                if (dist[fi] > dist[i] + 1) {
                    float fk[3] = {f[0] - k[0], f[1] - k[1], f[2] - k[2]}, dot = 0, nn = 0;
                    for (int c = 0; c < 3; c++) dot += (px[c] - k[c]) * fk[c], nn += fk[c] * fk[c];
                    float a = nn > 0 ? dot / nn : 1;
                    if (a > 1) a = 1;
                    if (a > 0.02f)
                        for (int c = 0; c < 3; c++) px[c] = (px[c] - (1 - a) * k[c]) / a;
                }
            }
            if (chroma) {
                float blend = edge ? 1 : MAX(1 - alpha[i] / 255.0f, (float)(R + F - dt[i]) / F), limit = 0;
                if (blend > 0) {
                    for (int c = 0; c < 3; c++)
                        if (!spill_ch[c]) limit = MAX(limit, px[c]);
                    for (int c = 0; c < 3; c++)
                        if (spill_ch[c] && px[c] > limit) px[c] -= blend * (px[c] - limit);
                }
            }
            for (int c = 0; c < 3; c++) o[c] = clamp8(px[c]);
        }
    mem_free(dt), mem_free(dist);
    mem_free(src), mem_free(alpha);
    return SIM_OK;
}

// --- trim and canvas ---------------------------------------------------------------------

bool key_bbox(const uint8_t *rgba, int w, int h, int margin, key_box *box) {
    int x0 = w, y0 = h, x1 = -1, y1 = -1;
    for (int y = 0; y < h; y++)
        for (int x = 0; x < w; x++)
            if (rgba[((size_t)y * w + x) * 4 + 3]) x0 = MIN(x0, x), x1 = MAX(x1, x), y0 = MIN(y0, y), y1 = MAX(y1, y);
    if (x1 < 0) return false;
    if (margin < 0) margin = 0;
    x0 = MAX(0, x0 - margin), y0 = MAX(0, y0 - margin);
    x1 = (int)MIN((long)w - 1, (long)x1 + margin), y1 = (int)MIN((long)h - 1, (long)y1 + margin);
    *box = (key_box){x0, y0, x1 - x0 + 1, y1 - y0 + 1};
    return true;
}

sim_status key_crop(const uint8_t *rgba, int w, int h, key_box b, uint8_t **out, sim_err *err) {
    *out = NULL;
    if (b.x < 0 || b.y < 0 || b.w < 1 || b.h < 1 || b.x > w - b.w || b.y > h - b.h)
        return err_set(err, SIM_ERR_ARG, "key: crop box %dx%d+%d+%d outside the %dx%d image", b.w, b.h, b.x, b.y, w, h);
    uint8_t *o = mem_alloc((size_t)b.w * b.h * 4);
    if (!o) return err_set(err, SIM_ERR_NOMEM, "key: out of memory");
    for (int y = 0; y < b.h; y++) memcpy(o + (size_t)y * b.w * 4, rgba + ((size_t)(b.y + y) * w + b.x) * 4, (size_t)b.w * 4);
    *out = o;
    return SIM_OK;
}

sim_status key_canvas(const key_sprite *in, int n, key_anchor anchor, int margin, key_sprite *out, sim_err *err) {
    if (n < 1) return err_set(err, SIM_ERR_ARG, "key: no sprites to place");
    if (margin < 0 || margin > 4096) return err_set(err, SIM_ERR_ARG, "key: margin %d out of range (0..4096)", margin);
    int W = 0, H = 0;
    for (int i = 0; i < n; i++) {
        if (in[i].w < 1 || in[i].h < 1 || in[i].w > 32768 || in[i].h > 32768)
            return err_set(err, SIM_ERR_ARG, "key: sprite %d has size %dx%d", i, in[i].w, in[i].h);
        W = MAX(W, in[i].w), H = MAX(H, in[i].h);
    }
    W += 2 * margin, H += 2 * margin;
    for (int i = 0; i < n; i++) out[i] = (key_sprite){0};
    for (int i = 0; i < n; i++) {
        uint8_t *o = mem_calloc((size_t)W * H, 4);
        if (!o) {
            for (int j = 0; j < i; j++) mem_free(out[j].rgba), out[j] = (key_sprite){0};
            return err_set(err, SIM_ERR_NOMEM, "key: out of memory for %d canvases of %dx%d", n, W, H);
        }
        int x0 = (W - in[i].w) / 2;
        int y0 = anchor == KEY_ANCHOR_TOP_CENTER ? margin : anchor == KEY_ANCHOR_CENTER ? (H - in[i].h) / 2 : H - margin - in[i].h;
        for (int y = 0; y < in[i].h; y++)
            memcpy(o + ((size_t)(y0 + y) * W + x0) * 4, in[i].rgba + (size_t)y * in[i].w * 4, (size_t)in[i].w * 4);
        out[i] = (key_sprite){o, W, H};
    }
    return SIM_OK;
}
