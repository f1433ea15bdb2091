// sheet.c — contact sheets, "over" compositing, a 5x7 font (see sheet.h).
#include "image/sheet.h"

#include <math.h>
#include <stdio.h>
#include <string.h>

// --- the font ----------------------------------------------------------------------------

// Each glyph is 7 rows of 5 bits, the leftmost column in bit 4.
static const struct {
    char c;
    uint8_t rows[SHEET_GLYPH_H];
} GLYPHS[] = {
    {' ', {0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00}}, {'-', {0x00, 0x00, 0x00, 0x1F, 0x00, 0x00, 0x00}},
    {'_', {0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x1F}}, {'.', {0x00, 0x00, 0x00, 0x00, 0x00, 0x0C, 0x0C}},
    {':', {0x00, 0x0C, 0x0C, 0x00, 0x0C, 0x0C, 0x00}}, {'?', {0x0E, 0x11, 0x01, 0x02, 0x04, 0x00, 0x04}},
    {'0', {0x0E, 0x11, 0x13, 0x15, 0x19, 0x11, 0x0E}}, {'1', {0x04, 0x0C, 0x04, 0x04, 0x04, 0x04, 0x0E}},
    {'2', {0x0E, 0x11, 0x01, 0x02, 0x04, 0x08, 0x1F}}, {'3', {0x1F, 0x02, 0x04, 0x02, 0x01, 0x11, 0x0E}},
    {'4', {0x02, 0x06, 0x0A, 0x12, 0x1F, 0x02, 0x02}}, {'5', {0x1F, 0x10, 0x1E, 0x01, 0x01, 0x11, 0x0E}},
    {'6', {0x06, 0x08, 0x10, 0x1E, 0x11, 0x11, 0x0E}}, {'7', {0x1F, 0x01, 0x02, 0x04, 0x08, 0x08, 0x08}},
    {'8', {0x0E, 0x11, 0x11, 0x0E, 0x11, 0x11, 0x0E}}, {'9', {0x0E, 0x11, 0x11, 0x0F, 0x01, 0x02, 0x0C}},
    {'A', {0x0E, 0x11, 0x11, 0x1F, 0x11, 0x11, 0x11}}, {'B', {0x1E, 0x11, 0x11, 0x1E, 0x11, 0x11, 0x1E}},
    {'C', {0x0E, 0x11, 0x10, 0x10, 0x10, 0x11, 0x0E}}, {'D', {0x1C, 0x12, 0x11, 0x11, 0x11, 0x12, 0x1C}},
    {'E', {0x1F, 0x10, 0x10, 0x1E, 0x10, 0x10, 0x1F}}, {'F', {0x1F, 0x10, 0x10, 0x1E, 0x10, 0x10, 0x10}},
    {'G', {0x0E, 0x11, 0x10, 0x17, 0x11, 0x11, 0x0F}}, {'H', {0x11, 0x11, 0x11, 0x1F, 0x11, 0x11, 0x11}},
    {'I', {0x0E, 0x04, 0x04, 0x04, 0x04, 0x04, 0x0E}}, {'J', {0x07, 0x02, 0x02, 0x02, 0x02, 0x12, 0x0C}},
    {'K', {0x11, 0x12, 0x14, 0x18, 0x14, 0x12, 0x11}}, {'L', {0x10, 0x10, 0x10, 0x10, 0x10, 0x10, 0x1F}},
    {'M', {0x11, 0x1B, 0x15, 0x15, 0x11, 0x11, 0x11}}, {'N', {0x11, 0x11, 0x19, 0x15, 0x13, 0x11, 0x11}},
    {'O', {0x0E, 0x11, 0x11, 0x11, 0x11, 0x11, 0x0E}}, {'P', {0x1E, 0x11, 0x11, 0x1E, 0x10, 0x10, 0x10}},
    {'Q', {0x0E, 0x11, 0x11, 0x11, 0x15, 0x12, 0x0D}}, {'R', {0x1E, 0x11, 0x11, 0x1E, 0x14, 0x12, 0x11}},
    {'S', {0x0F, 0x10, 0x10, 0x0E, 0x01, 0x01, 0x1E}}, {'T', {0x1F, 0x04, 0x04, 0x04, 0x04, 0x04, 0x04}},
    {'U', {0x11, 0x11, 0x11, 0x11, 0x11, 0x11, 0x0E}}, {'V', {0x11, 0x11, 0x11, 0x11, 0x11, 0x0A, 0x04}},
    {'W', {0x11, 0x11, 0x11, 0x15, 0x15, 0x15, 0x0A}}, {'X', {0x11, 0x11, 0x0A, 0x04, 0x0A, 0x11, 0x11}},
    {'Y', {0x11, 0x11, 0x11, 0x0A, 0x04, 0x04, 0x04}}, {'Z', {0x1F, 0x01, 0x02, 0x04, 0x08, 0x10, 0x1F}},
};

static const uint8_t *glyph(unsigned char c) {
    if (c >= 'a' && c <= 'z') c = (unsigned char)(c - 'a' + 'A');
    for (size_t i = 0; i < ARRAY_LEN(GLYPHS); i++)
        if ((unsigned char)GLYPHS[i].c == c) return GLYPHS[i].rows;
    return GLYPHS[5].rows; // '?'
}

int sheet_text_width(const char *s) {
    size_t n = strlen(s);
    return n ? (int)MIN(n * SHEET_ADVANCE - 1, (size_t)INT32_MAX) : 0;
}

void sheet_text(uint8_t *dst, int dw, int dh, int x, int y, const char *s, uint8_t ink) {
    for (; *s; s++, x += SHEET_ADVANCE) {
        if (x >= dw) return;
        const uint8_t *g = glyph((unsigned char)*s);
        for (int r = 0; r < SHEET_GLYPH_H; r++)
            for (int c = 0; c < SHEET_GLYPH_W; c++) {
                int px = x + c, py = y + r;
                if (!(g[r] >> (SHEET_GLYPH_W - 1 - c) & 1) || px < 0 || py < 0 || px >= dw || py >= dh) continue;
                uint8_t *o = dst + ((size_t)py * dw + px) * 4;
                o[0] = o[1] = o[2] = ink, o[3] = 255;
            }
    }
}

// --- compositing ---------------------------------------------------------------------------

void sheet_over(uint8_t *dst, int dw, int dh, const uint8_t *src, int sw, int sh, int x, int y) {
    for (int sy = MAX(0, -y); sy < sh && y + sy < dh; sy++)
        for (int sx = MAX(0, -x); sx < sw && x + sx < dw; sx++) {
            const uint8_t *s = src + ((size_t)sy * sw + sx) * 4;
            uint8_t *d = dst + ((size_t)(y + sy) * dw + (x + sx)) * 4;
            if (s[3] == 0) continue;
            float as = s[3] / 255.0f, ad = d[3] / 255.0f, a = as + ad * (1 - as);
            for (int c = 0; c < 3; c++) d[c] = (uint8_t)lrintf((s[c] * as + d[c] * ad * (1 - as)) / a);
            d[3] = (uint8_t)lrintf(a * 255);
        }
}

// --- the grid ---------------------------------------------------------------------------------

sim_status sheet_grid(const sheet_cell *cells, int rows, int cols, const char *const *row_labels,
                      const char *const *col_labels, uint8_t **out, int *out_w, int *out_h, sim_err *err) {
    *out = NULL;
    if (rows < 1 || cols < 1 || rows > SHEET_MAX_SIDE || cols > SHEET_MAX_SIDE)
        return err_set(err, SIM_ERR_ARG, "sheet: %d x %d cells (1 to %d each way)", rows, cols, SHEET_MAX_SIDE);
    int64_t cw = 1, ch = 1, lw = 0, lh = col_labels ? 2 * SHEET_PAD + SHEET_GLYPH_H : 0;
    for (int i = 0; i < rows * cols; i++) {
        if (!cells[i].rgba) continue;
        if (cells[i].w < 1 || cells[i].h < 1 || cells[i].w > SHEET_MAX_SIDE || cells[i].h > SHEET_MAX_SIDE)
            return err_set(err, SIM_ERR_ARG, "sheet: cell %d (row %d, column %d) is %dx%d", i, i / cols, i % cols, cells[i].w, cells[i].h);
        cw = MAX(cw, cells[i].w), ch = MAX(ch, cells[i].h);
    }
    if (row_labels)
        for (int r = 0; r < rows; r++) lw = MAX(lw, 2 * SHEET_PAD + (int64_t)sheet_text_width(row_labels[r]));
    int64_t W = lw + SHEET_PAD + cols * (cw + SHEET_PAD), H = lh + SHEET_PAD + rows * (ch + SHEET_PAD);
    if (W > SHEET_MAX_SIDE || H > SHEET_MAX_SIDE)
        return err_set(err, SIM_ERR_RANGE, "sheet: %lldx%lld pixels, more than %d a side", (long long)W, (long long)H, SHEET_MAX_SIDE);
    uint8_t *o = mem_alloc((size_t)W * H * 4);
    if (!o) return err_set(err, SIM_ERR_NOMEM, "sheet: out of memory for %lldx%lld pixels", (long long)W, (long long)H);
    for (size_t i = 0; i < (size_t)W * H; i++) o[i * 4] = o[i * 4 + 1] = o[i * 4 + 2] = SHEET_BG, o[i * 4 + 3] = 255;
    for (int r = 0; r < rows; r++)
        for (int c = 0; c < cols; c++) {
            int x0 = (int)(lw + SHEET_PAD + c * (cw + SHEET_PAD)), y0 = (int)(lh + SHEET_PAD + r * (ch + SHEET_PAD));
            for (int y = 0; y < ch; y++)
                for (int x = 0; x < cw; x++) {
                    uint8_t *p = o + ((size_t)(y0 + y) * W + x0 + x) * 4;
                    p[0] = p[1] = p[2] = ((x / SHEET_CHECK + y / SHEET_CHECK) & 1) ? SHEET_DARK : SHEET_LIGHT;
                }
            const sheet_cell *e = &cells[r * cols + c];
            if (e->rgba) sheet_over(o, (int)W, (int)H, e->rgba, e->w, e->h, x0 + (int)(cw - e->w) / 2, y0 + (int)ch - e->h);
        }
    char buf[SHEET_MAX_SIDE / SHEET_ADVANCE + 2];
    for (int c = 0; col_labels && c < cols; c++) {
        size_t fit = (size_t)(cw + 1) / SHEET_ADVANCE;
        snprintf(buf, sizeof buf, "%.*s", (int)MIN(fit, sizeof buf - 1), col_labels[c]);
        sheet_text(o, (int)W, (int)H, (int)(lw + SHEET_PAD + c * (cw + SHEET_PAD)), SHEET_PAD, buf, SHEET_INK);
    }
    for (int r = 0; row_labels && r < rows; r++)
        sheet_text(o, (int)W, (int)H, SHEET_PAD, (int)(lh + SHEET_PAD + r * (ch + SHEET_PAD) + (ch - SHEET_GLYPH_H) / 2), row_labels[r],
                   SHEET_INK);
    *out = o, *out_w = (int)W, *out_h = (int)H;
    return SIM_OK;
}
