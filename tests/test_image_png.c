// test_image_png.c — the PNG codec: round trips of random images of odd
// sizes, tEXt round trips, the filter heuristic, files written by an
// independent Python writer (tests/data/png/make_png.py: every colour type,
// bit depth, filter, palette + tRNS, Adam7), and hostile files built byte by
// byte (bad CRC, truncation, huge sizes, IDAT overflow and underflow, bad
// filter bytes, bad palette indices), plus failing each allocation.
#include <stdlib.h>
#include <unistd.h>
#include <zlib.h>

#include "base/file.h"
#include "image/png.h"
#include "test.h"

static uint64_t rng_state = 0x9e3779b97f4a7c15ull;
static uint32_t rnd(void) {
    rng_state = rng_state * 6364136223846793005ull + 1442695040888963407ull;
    return (uint32_t)(rng_state >> 33);
}

// A random image with smooth regions (so every filter type gets picked) and noise.
static uint8_t *random_image(int w, int h, int ch) {
    uint8_t *p = malloc((size_t)w * h * ch);
    int kind = rnd() % 3;
    for (int y = 0; y < h; y++)
        for (int x = 0; x < w; x++)
            for (int c = 0; c < ch; c++) {
                uint8_t v = kind == 0 ? (uint8_t)rnd() : kind == 1 ? (uint8_t)(x * 3 + y * 5 + c * 40) : (uint8_t)((x / 3 + y) * 7 + c);
                p[((size_t)y * w + x) * ch + c] = v;
            }
    return p;
}

static void test_round_trip(void) {
    static const int sizes[][2] = {{1, 1}, {3, 1}, {1, 7}, {7, 3}, {31, 33}, {33, 31}, {255, 3}, {64, 64}, {1023, 2}, {300, 211}};
    for (size_t si = 0; si < ARRAY_LEN(sizes); si++)
        for (int ch = 3; ch <= 4; ch++) {
            int w = sizes[si][0], h = sizes[si][1];
            uint8_t *pix = random_image(w, h, ch), *file;
            size_t len;
            sim_err err;
            CHECK(png_encode(pix, w, h, ch, NULL, 0, &file, &len, &err) == SIM_OK);
            png_image img;
            sim_status st = png_decode(&img, file, len, &err);
            CHECK_MSG(st == SIM_OK, "%dx%d ch %d: %s", w, h, ch, err.msg);
            if (st == SIM_OK) {
                CHECK_EQ_INT(img.w, w);
                CHECK_EQ_INT(img.h, h);
                CHECK_EQ_INT(img.color_type, ch == 4 ? 6 : 2);
                int bad = 0;
                for (size_t i = 0; i < (size_t)w * h; i++)
                    for (int c = 0; c < 4; c++) {
                        uint8_t want = c < ch ? pix[i * ch + c] : 255;
                        if (img.rgba[i * 4 + c] != want && bad++ < 3)
                            fprintf(stderr, "  %dx%d ch %d: pixel %zu channel %d: %d != %d\n", w, h, ch, i, c, img.rgba[i * 4 + c], want);
                    }
                CHECK_EQ_INT(bad, 0);
            }
            png_image_free(&img);
            mem_free(file);
            free(pix);
        }
}

static void test_texts(void) {
    uint8_t pix[3 * 2 * 2] = {1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12}, *file;
    size_t len;
    sim_err err;
    png_text t[] = {{"parameters", "a lighthouse at dawn\nSteps: 4, Seed: 42, Sampler: DDIM"}, {"Software", "Simularity"}, {"empty", ""},
                    {"utf8", "caf\xc3\xa9 \xe2\x9c\x93"}};
    CHECK(png_encode(pix, 2, 2, 3, t, 4, &file, &len, &err) == SIM_OK);
    png_image img;
    CHECK(png_decode(&img, file, len, &err) == SIM_OK);
    CHECK_EQ_INT(img.n_texts, 4);
    CHECK(memmem(file, len, "iTXtutf8", 8) != NULL); // UTF-8 goes in iTXt
    CHECK_STR(png_text_find(&img, "parameters"), t[0].text);
    CHECK_STR(png_text_find(&img, "Software"), "Simularity");
    CHECK_STR(png_text_find(&img, "empty"), "");
    CHECK_STR(png_text_find(&img, "utf8"), "caf\xc3\xa9 \xe2\x9c\x93");
    CHECK(png_text_find(&img, "missing") == NULL);
    png_image_free(&img);
    mem_free(file);
    // bad keywords are refused
    png_text bad[] = {{"", "x"}, {" lead", "x"}, {"0123456789012345678901234567890123456789012345678901234567890123456789012345678901", "x"}, {"tab\there", "x"}};
    for (size_t i = 0; i < ARRAY_LEN(bad); i++) {
        CHECK(png_encode(pix, 2, 2, 3, &bad[i], 1, &file, &len, &err) == SIM_ERR_ARG);
        CHECK(strstr(err.msg, "keyword") != NULL);
    }
    CHECK(png_encode(pix, 0, 2, 3, NULL, 0, &file, &len, &err) == SIM_ERR_ARG);
    CHECK(png_encode(pix, 2, 2, 2, NULL, 0, &file, &len, &err) == SIM_ERR_ARG);
}

// The heuristic, against a direct computation on rows where the answer is known.
static void test_filter_choice(void) {
    uint8_t flat[12], ramp[12], prev[12], same[12];
    for (int i = 0; i < 12; i++) flat[i] = 200, ramp[i] = (uint8_t)(100 + i * 10), prev[i] = (uint8_t)(i * 37), same[i] = prev[i];
    CHECK_EQ_INT(png_pick_filter(flat, NULL, 12, 3), 1);   // sub: 200,200,200,0,... vs none: 12×200 (as int8: 56 each)
    CHECK_EQ_INT(png_pick_filter(same, prev, 12, 3), 2);   // up: all zero
    uint8_t zero[12] = {0};
    CHECK_EQ_INT(png_pick_filter(zero, NULL, 12, 3), 0);   // ties go to the lowest type
    CHECK(png_pick_filter(ramp, NULL, 12, 1) == 1 || png_pick_filter(ramp, NULL, 12, 1) == 4);
}

// --- reference files from Python ---------------------------------------------------------

static void test_python_reference(void) {
    char dir[] = "/tmp/sim_png_XXXXXX";
    if (!mkdtemp(dir)) {
        test_skip("mkdtemp failed");
        return;
    }
    char cmd[512];
    snprintf(cmd, sizeof cmd, "python3 tests/data/png/make_png.py %s", dir);
    if (system(cmd) != 0) {
        test_skip("python3 tests/data/png/make_png.py failed (python3 missing?)");
        return;
    }
    static const char *names[] = {"rgb8_f0", "rgb8_f1", "rgb8_f2", "rgb8_f3", "rgb8_f4", "gray16_f0", "gray16_f1", "gray16_f2",
                                  "gray16_f3", "gray16_f4", "gray1", "gray2", "gray4", "gray8", "gray8_trns", "graya8", "graya16",
                                  "rgb16", "rgb8_trns", "rgba8", "rgba16", "pal8", "pal4", "pal2", "pal1", "rgba8_adam7",
                                  "pal2_adam7", "gray16_adam7", "rgb8_adam7_1x1"};
    for (size_t i = 0; i < ARRAY_LEN(names); i++) {
        char p[600], q[600];
        snprintf(p, sizeof p, "%s/%s.png", dir, names[i]);
        snprintf(q, sizeof q, "%s/%s.rgba", dir, names[i]);
        png_image img;
        sim_err err;
        char *want;
        size_t want_len;
        sim_status st = png_read_file(&img, p, &err);
        CHECK_MSG(st == SIM_OK, "%s: %s", names[i], err.msg);
        CHECK(file_read_all(q, 1 << 20, &want, &want_len, &err) == SIM_OK);
        if (st == SIM_OK) {
            CHECK_EQ_INT(want_len, (size_t)img.w * img.h * 4);
            CHECK_STR(png_text_find(&img, "name"), names[i]);
            if (strcmp(names[i], "gray8") == 0) {
                const char *z = png_text_find(&img, "ztext");
                CHECK(z && strlen(z) == 24 * 20 && strncmp(z, "compressed latin-1 text ", 24) == 0);
                CHECK_STR(png_text_find(&img, "itext"), "caf\xc3\xa9 \xe2\x9c\x93 sprite");
                CHECK_STR(png_text_find(&img, "iplain"), "plain \xc3\xbc");
            }
            int bad = 0;
            for (size_t k = 0; k < want_len && k < (size_t)img.w * img.h * 4; k++)
                if (img.rgba[k] != (uint8_t)want[k] && bad++ < 3)
                    fprintf(stderr, "  %s: byte %zu (pixel %zu channel %zu): %d != %d\n", names[i], k, k / 4, k % 4, img.rgba[k],
                            (uint8_t)want[k]);
            CHECK_MSG(bad == 0, "%s: %d bytes differ", names[i], bad);
        }
        png_image_free(&img);
        mem_free(want);
        unlink(p), unlink(q);
    }
    rmdir(dir);
}

// --- hostile files ------------------------------------------------------------------------

static uint8_t ihdr(uint8_t *d, uint32_t w, uint32_t h, int depth, int ctype, int interlace) {
    uint8_t v[13] = {(uint8_t)(w >> 24), (uint8_t)(w >> 16), (uint8_t)(w >> 8), (uint8_t)w, (uint8_t)(h >> 24), (uint8_t)(h >> 16),
                     (uint8_t)(h >> 8), (uint8_t)h, (uint8_t)depth, (uint8_t)ctype, 0, 0, (uint8_t)interlace};
    memcpy(d, v, 13);
    return 0;
}

// A stored (uncompressed) zlib stream of raw[0..n) (n < 65536), built by hand.
static size_t zstored(uint8_t *out, const uint8_t *raw, size_t n) {
    out[0] = 0x78, out[1] = 0x01, out[2] = 1, out[3] = (uint8_t)n, out[4] = (uint8_t)(n >> 8), out[5] = (uint8_t)~n,
    out[6] = (uint8_t)(~n >> 8);
    memcpy(out + 7, raw, n);
    uint32_t a = 1, b = 0;
    for (size_t i = 0; i < n; i++) a = (a + raw[i]) % 65521, b = (b + a) % 65521;
    uint32_t ad = b << 16 | a;
    out[7 + n] = (uint8_t)(ad >> 24), out[8 + n] = (uint8_t)(ad >> 16), out[9 + n] = (uint8_t)(ad >> 8), out[10 + n] = (uint8_t)ad;
    return n + 11;
}

// A file: signature, IHDR(w, h, depth, ctype), optional chunk, IDAT of raw bytes, IEND.
static void build(test_buf *b, uint32_t w, uint32_t h, int depth, int ctype, const uint8_t *raw, size_t n, const char *xtype,
                  const void *x, size_t xn) {
    static const uint8_t sig[8] = {0x89, 'P', 'N', 'G', '\r', '\n', 0x1A, '\n'};
    b->n = 0;
    test_put(b, sig, 8);
    uint8_t h13[13];
    ihdr(h13, w, h, depth, ctype, 0);
    test_png_chunk(b, "IHDR", h13, 13);
    if (xtype) test_png_chunk(b, xtype, x, xn);
    uint8_t z[2048];
    size_t zn = zstored(z, raw, n);
    test_png_chunk(b, "IDAT", z, zn);
    test_png_chunk(b, "IEND", NULL, 0);
}

static void expect_error(const test_buf *b, const char *what, const char *msg_part) {
    png_image img;
    sim_err err = {0};
    sim_status st = png_decode(&img, b->d, b->n, &err);
    CHECK_MSG(st != SIM_OK, "%s: accepted", what);
    CHECK_MSG(strstr(err.msg, msg_part) != NULL, "%s: message '%s' lacks '%s'", what, err.msg, msg_part);
    CHECK(img.rgba == NULL && img.w == 0);
}

static void test_hostile(void) {
    test_buf *b = malloc(sizeof *b);
    uint8_t raw[2 * (1 + 2 * 3)] = {0, 1, 2, 3, 4, 5, 6, 1, 9, 9, 9, 1, 1, 1}; // 2x2 RGB, filters none and sub
    build(b, 2, 2, 8, 2, raw, sizeof raw, NULL, NULL, 0);
    png_image img;
    sim_err err;
    CHECK(png_decode(&img, b->d, b->n, &err) == SIM_OK);
    if (img.rgba) CHECK(img.rgba[4] == 4 && img.rgba[8] == 9 && img.rgba[9] == 9 && img.rgba[10] == 9 && img.rgba[11] == 255 && img.rgba[12] == 10);
    png_image_free(&img);

    // bad CRC: flip one bit of every byte of the file in turn, the signature aside
    int accepted = 0;
    test_buf *c = malloc(sizeof *c);
    for (size_t i = 8; i < b->n; i++) {
        *c = *b;
        c->d[i] ^= 0x10;
        if (png_decode(&img, c->d, c->n, &err) == SIM_OK) accepted++, png_image_free(&img);
    }
    CHECK_EQ_INT(accepted, 0);
    *c = *b;
    c->d[8 + 8 + 3] ^= 1; // IHDR width byte
    expect_error(c, "bad crc", "bad CRC");
    // every truncation
    int trunc_ok = 0;
    for (size_t n = 0; n < b->n; n++)
        if (png_decode(&img, b->d, n, &err) == SIM_OK) trunc_ok++, png_image_free(&img);
    CHECK_EQ_INT(trunc_ok, 0);
    *c = *b;
    c->n -= 12; // no IEND
    expect_error(c, "no IEND", "no IEND");
    c->n = 8 + 25 + 14;
    expect_error(c, "chunk past end", "only");
    expect_error(&(test_buf){.d = "GIF89a", .n = 6}, "not png", "not a PNG");

    // sizes
    build(b, 100000, 1, 8, 2, raw, sizeof raw, NULL, NULL, 0);
    expect_error(b, "wide", "too large");
    build(b, 16384, 16384, 8, 2, raw, sizeof raw, NULL, NULL, 0);
    expect_error(b, "64M", "too large");
    build(b, 0, 5, 8, 2, raw, sizeof raw, NULL, NULL, 0);
    expect_error(b, "empty", "empty");
    build(b, 0xffffffffu, 0xffffffffu, 8, 6, raw, sizeof raw, NULL, NULL, 0);
    expect_error(b, "4G", "too large");
    build(b, 2, 2, 3, 2, raw, sizeof raw, NULL, NULL, 0);
    expect_error(b, "depth 3", "bit depth 3");
    build(b, 2, 2, 8, 5, raw, sizeof raw, NULL, NULL, 0);
    expect_error(b, "ctype 5", "colour type 5");

    // IDAT size: one byte more, one byte less than IHDR implies
    uint8_t more[sizeof raw + 1] = {0};
    memcpy(more, raw, sizeof raw);
    build(b, 2, 2, 8, 2, more, sizeof more, NULL, NULL, 0);
    expect_error(b, "overflow", "more than the 14 bytes");
    build(b, 2, 2, 8, 2, raw, sizeof raw - 1, NULL, NULL, 0);
    expect_error(b, "underflow", "inflates to 13 bytes");
    // a tiny file claiming the largest image allowed: refused from its data
    build(b, 16384, 4096, 16, 6, raw, sizeof raw, NULL, NULL, 0);
    expect_error(b, "claims huge", "inflates to 14 bytes, IHDR implies 536875008");
    uint8_t big[1000] = {0};
    build(b, 2, 2, 8, 2, big, sizeof big, NULL, NULL, 0);
    expect_error(b, "overflow big", "more than");

    // filter bytes
    uint8_t badf[sizeof raw];
    memcpy(badf, raw, sizeof raw);
    badf[7] = 5;
    build(b, 2, 2, 8, 2, badf, sizeof badf, NULL, NULL, 0);
    expect_error(b, "filter 5", "row 1 has an invalid filter type 5");

    // palette: no PLTE; index past the palette; tRNS too long
    uint8_t pidx[2 * 3] = {0, 0, 1, 0, 2, 0};
    build(b, 2, 2, 8, 3, pidx, sizeof pidx, NULL, NULL, 0);
    expect_error(b, "no plte", "without a PLTE");
    build(b, 2, 2, 8, 3, pidx, sizeof pidx, "PLTE", "\1\2\3\4\5\6", 6);
    expect_error(b, "index", "palette index past the 2 entries");
    build(b, 2, 2, 8, 3, pidx, sizeof pidx, "PLTE", "\1\2\3\4\5\6\7\10\11", 10);
    expect_error(b, "plte len", "PLTE of 10 bytes");

    // chunk order and kinds
    build(b, 2, 2, 8, 2, raw, sizeof raw, "ABCD", "x", 1);
    expect_error(b, "critical", "unknown critical chunk 'ABCD'");
    build(b, 2, 2, 8, 2, raw, sizeof raw, "abCD", "x", 1); // ancillary: ignored
    CHECK(png_decode(&img, b->d, b->n, &err) == SIM_OK);
    png_image_free(&img);
    build(b, 2, 2, 8, 2, raw, sizeof raw, "tEXt", "nokeyword", 9);
    expect_error(b, "text", "keyword");
    build(b, 2, 2, 8, 2, raw, sizeof raw, "zTXt", "k\0\1xx", 5);
    expect_error(b, "ztxt method", "zTXt with an unknown compression method");
    build(b, 2, 2, 8, 2, raw, sizeof raw, "iTXt", "k\0\0\0en", 6);
    expect_error(b, "itxt truncated", "truncated iTXt");
    build(b, 2, 2, 8, 2, raw, sizeof raw, "zTXt", "k\0\0\x78\x01\x01", 6);
    expect_error(b, "ztxt corrupt", "corrupt compressed text");
    {   // a 2 MiB text bomb in 2 KiB
        static uint8_t zeros[2 << 20], bomb[8192];
        uLongf bn = sizeof bomb - 3;
        bomb[0] = 'k', bomb[1] = 0, bomb[2] = 0;
        CHECK(compress(bomb + 3, &bn, zeros, sizeof zeros) == Z_OK);
        build(b, 2, 2, 8, 2, raw, sizeof raw, "zTXt", bomb, bn + 3);
        expect_error(b, "ztxt bomb", "inflates to more than 1048576 bytes");
    }
    build(b, 2, 2, 8, 6, raw, sizeof raw, "tRNS", "\0\1", 2);
    expect_error(b, "trns alpha", "tRNS in an image with an alpha channel");
    // IHDR not first
    b->n = 0;
    test_put(b, "\x89PNG\r\n\x1a\n", 8);
    test_png_chunk(b, "tEXt", "a\0b", 3);
    expect_error(b, "ihdr first", "not IHDR");

    free(b);
    free(c);
}

// The zlib stream split into 1-byte IDAT chunks (and empty ones between):
// the decoder streams across chunks, the trailer included.
static void test_idat_split(void) {
    uint8_t *pix = random_image(13, 11, 3), *file;
    size_t len;
    sim_err err;
    CHECK(png_encode(pix, 13, 11, 3, NULL, 0, &file, &len, &err) == SIM_OK);
    // the encoder writes signature, IHDR (25 bytes), one IDAT, IEND
    uint32_t zn = (uint32_t)file[33] << 24 | (uint32_t)file[34] << 16 | (uint32_t)file[35] << 8 | file[36];
    CHECK(memcmp(file + 37, "IDAT", 4) == 0);
    test_buf *b = malloc(sizeof *b);
    b->n = 0;
    test_put(b, file, 33);
    for (uint32_t i = 0; i < zn; i++) {
        test_png_chunk(b, "IDAT", file + 41 + i, 1);
        if (i % 7 == 0) test_png_chunk(b, "IDAT", NULL, 0);
    }
    test_png_chunk(b, "IEND", NULL, 0);
    png_image img;
    sim_status st = png_decode(&img, b->d, b->n, &err);
    CHECK_MSG(st == SIM_OK, "%s", err.msg);
    if (st == SIM_OK)
        for (int i = 0; i < 13 * 11; i++) CHECK(img.rgba[i * 4] == pix[i * 3] && img.rgba[i * 4 + 2] == pix[i * 3 + 2]);
    png_image_free(&img);
    // the same stream, then an IDAT after a tEXt: not consecutive
    b->n -= 12;
    test_png_chunk(b, "tEXt", "k\0v", 3);
    test_png_chunk(b, "IDAT", "x", 1);
    test_png_chunk(b, "IEND", NULL, 0);
    CHECK(png_decode(&img, b->d, b->n, &err) == SIM_ERR_FORMAT);
    CHECK(strstr(err.msg, "not consecutive") != NULL);
    free(b);
    mem_free(file);
    free(pix);
}

// Every allocation of an encode + decode fails in turn: an error, never a crash or leak.
static void test_alloc_failures(void) {
    uint8_t *pix = random_image(17, 9, 4), *file = NULL;
    size_t len;
    sim_err err;
    png_text t = {"k", "v"};
    CHECK(png_encode(pix, 17, 9, 4, &t, 1, &file, &len, &err) == SIM_OK);
    int fails = 0;
    for (long n = 0; n < 200; n++) {
        uint8_t *f2;
        size_t l2;
        png_image img;
        mem_fail_after(n);
        sim_status a = png_encode(pix, 17, 9, 4, &t, 1, &f2, &l2, &err);
        if (a == SIM_OK) mem_free(f2);
        sim_status d = png_decode(&img, file, len, &err);
        bool hit = mem_fail_triggered();
        mem_fail_after(-1);
        if (d == SIM_OK) png_image_free(&img);
        if (!hit) break;
        if (a != SIM_OK || d != SIM_OK) fails++;
    }
    CHECK(fails > 0);
    mem_free(file);
    free(pix);
}

int main(int argc, char **argv) {
    test_init(argc, argv);
    TEST_RUN(test_round_trip);
    TEST_RUN(test_texts);
    TEST_RUN(test_filter_choice);
    TEST_RUN(test_python_reference);
    TEST_RUN(test_hostile);
    TEST_RUN(test_idat_split);
    TEST_RUN(test_alloc_failures);
    return test_finish();
}
