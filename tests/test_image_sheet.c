// test_image_sheet.c — contact sheets (src/image/sheet.h) on hand-made
// images: the sheet's size, every cell's position and bottom-centre
// placement, the checkerboard squares, compositing over it (values derived
// by hand from the "over" formula), labels (glyph rows at their positions,
// a column label cut to the cell width), bad sizes and an allocation failure.
#include "image/sheet.h"
#include "test.h"

static const uint8_t *px(const uint8_t *img, int w, int x, int y) { return img + ((size_t)y * w + x) * 4; }

// Checks that pixel (x, y) is the opaque grey level g.
#define CHECK_GREY(img, w, x, y, g)                                                                       \
    do {                                                                                                 \
        const uint8_t *p_ = px(img, w, x, y);                                                            \
        CHECK_MSG(p_[0] == (g) && p_[1] == (g) && p_[2] == (g) && p_[3] == 255, "(%d, %d) = %d %d %d %d, want grey %d", \
                  x, y, p_[0], p_[1], p_[2], p_[3], (int)(g));                                              \
    } while (0)

static void test_grid(void) {
    uint8_t red[2 * 3 * 4], big[12 * 10 * 4] = {0}, clear[4] = {0, 0, 255, 0};
    for (int i = 0; i < 6; i++) red[i * 4] = 255, red[i * 4 + 1] = 0, red[i * 4 + 2] = 0, red[i * 4 + 3] = 255;
    memcpy(big, (uint8_t[]){10, 20, 30, 255}, 4);            // (0, 0) opaque
    memcpy(big + (9 * 12 + 11) * 4, (uint8_t[]){0, 0, 0, 128}, 4); // (11, 9) half black
    sheet_cell cells[4] = {{red, 2, 3}, {big, 12, 10}, {NULL, 0, 0}, {clear, 1, 1}};
    const char *rows[] = {"a", "bb"}, *cols[] = {"x", "yyyyyy"};
    uint8_t *o;
    int w, h;
    sim_err err;
    CHECK_MSG(sheet_grid(cells, 2, 2, rows, cols, &o, &w, &h, &err) == SIM_OK, "%s", err.msg);
    // cell 12x10; label bands: 4 + width("bb") = 11 + 4 = 19 wide, 4 + 7 + 4 = 15 high.
    CHECK_EQ_INT(w, 19 + 4 + 2 * (12 + 4));
    CHECK_EQ_INT(h, 15 + 4 + 2 * (10 + 4));
    if (w != 55 || h != 47) {
        mem_free(o);
        return;
    }
    for (int i = 0; i < w * h; i++) CHECK(o[i * 4 + 3] == 255);
    // Cell (0, 0) at (23, 19): the red 2x3 at its bottom centre (28..29, 26..28).
    for (int y = 19; y < 29; y++)
        for (int x = 23; x < 35; x++) {
            const uint8_t *p = px(o, w, x, y);
            if (x >= 28 && x <= 29 && y >= 26) CHECK_MSG(p[0] == 255 && p[1] == 0 && p[2] == 0, "(%d, %d)", x, y);
            else CHECK_GREY(o, w, x, y, (((x - 23) / 8 + (y - 19) / 8) & 1) ? SHEET_DARK : SHEET_LIGHT);
        }
    CHECK_GREY(o, w, 31, 19, 0xCC); // the checkerboard's second square
    CHECK_GREY(o, w, 23, 27, 0xCC);
    CHECK_GREY(o, w, 31, 27, 0xFF);
    // Cell (0, 1) at (39, 19): the 12x10 image fills it.
    const uint8_t *p = px(o, w, 39, 19);
    CHECK(p[0] == 10 && p[1] == 20 && p[2] == 30);
    CHECK_GREY(o, w, 50, 28, 127); // black at 128/255 over white: 255·(1 - 128/255) = 127
    CHECK_GREY(o, w, 49, 28, 0xFF);
    // Cell (1, 0) at (23, 33): empty, checkerboard only; cell (1, 1): the transparent pixel leaves it.
    CHECK_GREY(o, w, 23, 33, 0xFF);
    CHECK_GREY(o, w, 31, 33, 0xCC);
    CHECK_GREY(o, w, 44, 42, 0xCC);
    // Gutters.
    CHECK_GREY(o, w, 0, 0, SHEET_BG);
    CHECK_GREY(o, w, 22, 19, SHEET_BG);
    CHECK_GREY(o, w, 35, 19, SHEET_BG);
    CHECK_GREY(o, w, 23, 29, SHEET_BG);
    CHECK_GREY(o, w, 54, 46, SHEET_BG);
    // Row labels at x = 4, y = row top + (10 - 7) / 2: 'A' row 0 is .###., 'B' row 0 is ####.
    CHECK_GREY(o, w, 4, 20, SHEET_BG);
    for (int x = 5; x <= 7; x++) CHECK_GREY(o, w, x, 20, SHEET_INK);
    CHECK_GREY(o, w, 8, 20, SHEET_BG);
    for (int x = 4; x <= 7; x++) CHECK_GREY(o, w, x, 34, SHEET_INK);
    CHECK_GREY(o, w, 8, 34, SHEET_BG);
    CHECK_GREY(o, w, 10, 34, SHEET_INK);
    // 'A' row 3 is ##### (the bar), row 6 #...#.
    for (int x = 4; x <= 8; x++) CHECK_GREY(o, w, x, 23, SHEET_INK);
    CHECK_GREY(o, w, 4, 26, SHEET_INK);
    CHECK_GREY(o, w, 6, 26, SHEET_BG);
    CHECK_GREY(o, w, 8, 26, SHEET_INK);
    // Column labels at y = 4: 'X' row 0 is #...#; "yyyyyy" cut to the 2 characters that fit in 12 pixels.
    CHECK_GREY(o, w, 23, 4, SHEET_INK);
    CHECK_GREY(o, w, 24, 4, SHEET_BG);
    CHECK_GREY(o, w, 27, 4, SHEET_INK);
    CHECK_GREY(o, w, 39, 4, SHEET_INK);
    CHECK_GREY(o, w, 43, 4, SHEET_INK);
    CHECK_GREY(o, w, 45, 4, SHEET_INK);
    CHECK_GREY(o, w, 49, 4, SHEET_INK);
    for (int y = 4; y < 11; y++)
        for (int x = 50; x < w; x++) CHECK_GREY(o, w, x, y, SHEET_BG);
    mem_free(o);

    // No labels: no bands.
    CHECK(sheet_grid(cells, 1, 2, NULL, NULL, &o, &w, &h, &err) == SIM_OK);
    CHECK(w == 4 + 2 * 16 && h == 4 + 14);
    p = px(o, w, 4 + 16, 4);
    CHECK(p[0] == 10 && p[1] == 20 && p[2] == 30);
    mem_free(o);
}

static void test_over(void) {
    // Onto a transparent pixel: the source as it is.
    uint8_t d[4] = {0, 0, 0, 0}, s[4] = {200, 100, 50, 128};
    sheet_over(d, 1, 1, s, 1, 1, 0, 0);
    CHECK(d[0] == 200 && d[1] == 100 && d[2] == 50 && d[3] == 128);
    // Half red over half blue: a = 0.502 + 0.502·0.498 = 0.7520 (191.75 → 192),
    // R = 255·0.502 / 0.752 = 170.2, B = 255·0.502·0.498 / 0.752 = 84.8.
    uint8_t d2[4] = {0, 0, 255, 128}, s2[4] = {255, 0, 0, 128};
    sheet_over(d2, 1, 1, s2, 1, 1, 0, 0);
    CHECK_MSG(d2[0] == 170 && d2[1] == 0 && d2[2] == 85 && d2[3] == 192, "%d %d %d %d", d2[0], d2[1], d2[2], d2[3]);
    // Clipping: a 2x2 source at (-1, 1) on a 2x2 destination touches only (0, 1).
    uint8_t dd[16] = {0}, ss[16];
    for (int i = 0; i < 4; i++) ss[i * 4] = (uint8_t)(10 * (i + 1)), ss[i * 4 + 1] = ss[i * 4 + 2] = 0, ss[i * 4 + 3] = 255;
    sheet_over(dd, 2, 2, ss, 2, 2, -1, 1);
    CHECK(dd[2 * 4] == 20 && dd[2 * 4 + 3] == 255); // source (1, 0)
    CHECK(dd[3] == 0 && dd[7] == 0 && dd[15] == 0);
    // Text clipped at the edges: "1" at (-2, -3) on 4x4 — row 3 of '1' (..#..) lands at (0, 0).
    uint8_t t[4 * 4 * 4] = {0};
    sheet_text(t, 4, 4, -2, -3, "1", 200);
    CHECK(t[0] == 200 && t[3] == 255);
    CHECK(t[4 * 4 * 4 - 1] == 0);
    CHECK_EQ_INT(sheet_text_width(""), 0);
    CHECK_EQ_INT(sheet_text_width("abc"), 17);
}

static void test_errors(void) {
    uint8_t one[4] = {1, 2, 3, 255};
    sheet_cell c = {one, 1, 1}, bad = {one, 0, 1};
    uint8_t *o = (uint8_t *)1;
    int w, h;
    sim_err err;
    CHECK(sheet_grid(&c, 0, 1, NULL, NULL, &o, &w, &h, &err) == SIM_ERR_ARG && o == NULL);
    CHECK(sheet_grid(&bad, 1, 1, NULL, NULL, &o, &w, &h, &err) == SIM_ERR_ARG && strstr(err.msg, "0x1"));
    const char *long_label[] = {NULL};
    char lab[3000];
    memset(lab, 'a', sizeof lab - 1), lab[sizeof lab - 1] = 0;
    long_label[0] = lab;
    CHECK(sheet_grid(&c, 1, 1, long_label, NULL, &o, &w, &h, &err) == SIM_ERR_RANGE && strstr(err.msg, "16384"));
    mem_fail_after(0);
    CHECK(sheet_grid(&c, 1, 1, NULL, NULL, &o, &w, &h, &err) == SIM_ERR_NOMEM && o == NULL);
    mem_fail_after(-1);
}

int main(int argc, char **argv) {
    test_init(argc, argv);
    TEST_RUN(test_grid);
    TEST_RUN(test_over);
    TEST_RUN(test_errors);
    return test_finish();
}
