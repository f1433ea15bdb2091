// test.c — the harness behind test.h.
#include "test.h"

#include "base/file.h"

#include <sys/stat.h>

test_state test_g;

void test_init(int argc, char **argv) {
    (void)argc;
    const char *b = argv && argv[0] ? strrchr(argv[0], '/') : NULL;
    test_g.binary = b ? b + 1 : (argv && argv[0] ? argv[0] : "test");
}

void test_run_one(const char *name, void (*fn)(void)) {
    test_g.cur_name = name;
    test_g.cur_failures = 0;
    test_g.cur_skipped = false;
    fn();
    if (test_g.cur_failures) {
        test_g.failed++;
        fprintf(stderr, "FAIL %s (%d failed checks)\n", name, test_g.cur_failures);
    } else if (test_g.cur_skipped) {
        test_g.skipped++;
    } else {
        test_g.passed++;
        fprintf(stderr, "ok   %s\n", name);
    }
}

void test_skip(const char *why) {
    if (!test_g.cur_skipped) fprintf(stderr, "SKIP %s: %s\n", test_g.cur_name, why);
    test_g.cur_skipped = true;
}

int test_finish(void) {
    printf("%s: %d passed, %d failed, %d skipped\n", test_g.binary ? test_g.binary : "test",
           test_g.passed, test_g.failed, test_g.skipped);
    return test_g.failed ? 1 : 0;
}

const char *test_shared_dir(void) {
    static char dir[1024];
    const char *env = getenv("SIM_SHARED");
    snprintf(dir, sizeof dir, "%s", env && *env ? env : "../shared");
    struct stat st;
    if (stat(dir, &st) != 0 || !S_ISDIR(st.st_mode)) return NULL;
    return dir;
}

const char *test_shared_path(char *buf, size_t cap, const char *rel) {
    const char *dir = test_shared_dir();
    if (!dir) {
        test_skip("../shared is absent (set SIM_SHARED to its path)");
        return NULL;
    }
    snprintf(buf, cap, "%s/%s", dir, rel);
    struct stat st;
    if (stat(buf, &st) != 0) {
        char why[1200];
        snprintf(why, sizeof why, "%s is absent", buf);
        test_skip(why);
        return NULL;
    }
    return buf;
}

// --- PNG fixtures --------------------------------------------------------------------

const uint8_t test_png_ihdr_1x1[13] = {0, 0, 0, 1, 0, 0, 0, 1, 8, 6, 0, 0, 0};
// zlib: CMF/FLG 78 01, one final stored block of 5 bytes (filter 0 + RGBA 0000), Adler-32 00050001.
const uint8_t test_png_idat_1x1[16] = {0x78, 0x01, 0x01, 0x05, 0x00, 0xfa, 0xff, 0,
                                       0,    0,    0,    0,    0x00, 0x05, 0x00, 0x01};

void test_put(test_buf *b, const void *p, size_t n) {
    if (n > sizeof b->d - b->n) {
        fprintf(stderr, "test_put: fixture over %zu bytes\n", sizeof b->d);
        abort();
    }
    if (n) memcpy(b->d + b->n, p, n);
    b->n += n;
}

void test_put32(test_buf *b, uint32_t v) {
    uint8_t x[4] = {(uint8_t)(v >> 24), (uint8_t)(v >> 16), (uint8_t)(v >> 8), (uint8_t)v};
    test_put(b, x, 4);
}

uint32_t test_png_crc32(const void *p, size_t n) {
    const uint8_t *u = p;
    uint32_t c = 0xFFFFFFFFu;
    for (size_t i = 0; i < n; i++) {
        c ^= u[i];
        for (int k = 0; k < 8; k++) c = c & 1 ? (c >> 1) ^ 0xEDB88320u : c >> 1;
    }
    return c ^ 0xFFFFFFFFu;
}

void test_png_chunk(test_buf *b, const char *type, const void *data, size_t n) {
    test_put32(b, (uint32_t)n);
    size_t at = b->n;
    test_put(b, type, 4);
    test_put(b, data, n);
    test_put32(b, test_png_crc32(b->d + at, 4 + n));
}

size_t test_b64enc(const char *s, char *out) {
    static const char a[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    size_t n = strlen(s), o = 0;
    const uint8_t *u = (const uint8_t *)s;
    for (size_t i = 0; i < n; i += 3) {
        uint32_t v = (uint32_t)u[i] << 16 | (i + 1 < n ? (uint32_t)u[i + 1] << 8 : 0) | (i + 2 < n ? u[i + 2] : 0);
        out[o++] = a[v >> 18 & 63];
        out[o++] = a[v >> 12 & 63];
        out[o++] = i + 1 < n ? a[v >> 6 & 63] : '=';
        out[o++] = i + 2 < n ? a[v & 63] : '=';
    }
    out[o] = 0;
    return o;
}

void test_png_begin(test_buf *b) {
    b->n = 0;
    test_put(b, "\x89PNG\r\n\x1a\n", 8);
    test_png_chunk(b, "IHDR", test_png_ihdr_1x1, sizeof test_png_ihdr_1x1);
}

void test_png_end(test_buf *b) {
    test_png_chunk(b, "IDAT", test_png_idat_1x1, sizeof test_png_idat_1x1);
    test_png_chunk(b, "IEND", NULL, 0);
}

void test_png_card(test_buf *b, const char *json) {
    static char tmp[1 << 15];
    test_png_begin(b);
    memcpy(tmp, "chara", 6);
    size_t k = 6 + test_b64enc(json, tmp + 6);
    test_png_chunk(b, "tEXt", tmp, k);
    test_png_end(b);
}

bool test_golden_f32(const char *rel, float *out, size_t n) {
    char path[1024];
    if (!test_shared_path(path, sizeof path, rel)) return false;
    char *d;
    size_t len;
    sim_err err;
    if (file_read_all(path, (size_t)1 << 28, &d, &len, &err) != SIM_OK) {
        CHECK_MSG(0, "%s", err.msg);
        return false;
    }
    CHECK_MSG(len == n * 4, "%s: %zu bytes, expected %zu", rel, len, n * 4);
    if (len == n * 4) memcpy(out, d, len);
    mem_free(d);
    return len == n * 4;
}

double test_compare_rel(const char *what, const float *a, const float *ref, size_t n, double tol) {
    double md = 0, mr = 0;
    size_t at = 0;
    for (size_t i = 0; i < n; i++) {
        double d = fabs((double)a[i] - ref[i]);
        if (!(d <= md)) md = d, at = i;
        mr = fmax(mr, fabs(ref[i]));
    }
    fprintf(stderr, "  %s: max |d| = %.3g (%.3g of max |ref| %.3g)\n", what, md, md / mr, mr);
    CHECK_MSG(md <= tol * mr, "%s: at %zu: %g vs %g", what, at, (double)a[at], (double)ref[at]);
    return md / mr;
}
