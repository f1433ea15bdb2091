// test.h — the tiny test harness every test binary uses.
//
//     static void test_something(void) { CHECK(1 + 1 == 2); CHECK_NEAR(x, 0.5, 1e-6); }
//     int main(int argc, char **argv) {
//         TEST_RUN(test_something);
//         return test_finish();
//     }
//
// Each TEST_RUN counts as one test: it passes when none of its checks fail.
// A check failure prints file:line and the values, and the test goes on (so
// one run shows every mismatch). test_skip("why") marks the current test as
// skipped with a visible message. test_finish prints
// "<binary>: N passed, N failed, N skipped" and returns non-zero on any
// failure, which tests/run.sh adds up into the suite's last line.
#ifndef SIM_TEST_H
#define SIM_TEST_H

#include <math.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

typedef struct test_state {
    int passed, failed, skipped;
    int cur_failures;
    bool cur_skipped;
    const char *cur_name;
    const char *binary;
} test_state;

extern test_state test_g;

#define CHECK(cond)                                                                    \
    do {                                                                               \
        if (!(cond)) {                                                                 \
            fprintf(stderr, "  %s:%d: check failed: %s\n", __FILE__, __LINE__, #cond); \
            test_g.cur_failures++;                                                     \
        }                                                                              \
    } while (0)

#define CHECK_MSG(cond, ...)                                                           \
    do {                                                                               \
        if (!(cond)) {                                                                 \
            fprintf(stderr, "  %s:%d: check failed: %s: ", __FILE__, __LINE__, #cond);  \
            fprintf(stderr, __VA_ARGS__);                                              \
            fputc('\n', stderr);                                                       \
            test_g.cur_failures++;                                                     \
        }                                                                              \
    } while (0)

#define CHECK_EQ_INT(a, b)                                                             \
    do {                                                                               \
        long long va_ = (long long)(a), vb_ = (long long)(b);                          \
        if (va_ != vb_) {                                                              \
            fprintf(stderr, "  %s:%d: %s == %s failed: %lld != %lld\n", __FILE__,      \
                    __LINE__, #a, #b, va_, vb_);                                       \
            test_g.cur_failures++;                                                     \
        }                                                                              \
    } while (0)

#define CHECK_NEAR(a, b, tol)                                                          \
    do {                                                                               \
        double va_ = (double)(a), vb_ = (double)(b);                                   \
        if (!(fabs(va_ - vb_) <= (tol))) {                                             \
            fprintf(stderr, "  %s:%d: |%s - %s| <= %g failed: %.9g vs %.9g\n",        \
                    __FILE__, __LINE__, #a, #b, (double)(tol), va_, vb_);              \
            test_g.cur_failures++;                                                     \
        }                                                                              \
    } while (0)

#define CHECK_STR(a, b)                                                                \
    do {                                                                               \
        const char *sa_ = (a), *sb_ = (b);                                             \
        if (!sa_ || !sb_ || strcmp(sa_, sb_) != 0) {                                   \
            fprintf(stderr, "  %s:%d: %s == %s failed: \"%s\" != \"%s\"\n", __FILE__,  \
                    __LINE__, #a, #b, sa_ ? sa_ : "(null)", sb_ ? sb_ : "(null)");     \
            test_g.cur_failures++;                                                     \
        }                                                                              \
    } while (0)

#define TEST_RUN(fn) test_run_one(#fn, fn)

void test_init(int argc, char **argv);
void test_run_one(const char *name, void (*fn)(void));
void test_skip(const char *why);
int test_finish(void);

// The shared reference data folder (../shared beside the checkout, or
// $SIM_SHARED). Returns NULL when it is absent.
const char *test_shared_dir(void);
// Builds "<shared>/<rel>" into buf; returns NULL (and skips the current test
// with a visible message) when the shared folder or that file is absent.
const char *test_shared_path(char *buf, size_t cap, const char *rel);

// Reads n float32 values (little-endian, raw) of <shared>/<rel> into out.
// False when the file is absent (the test is skipped) or has another size
// (a check failure).
bool test_golden_f32(const char *rel, float *out, size_t n);
// Checks max |a - ref| <= tol × max |ref| over n values, prints the measured
// error with `what`, and returns it relative to max |ref|.
double test_compare_rel(const char *what, const float *a, const float *ref, size_t n, double tol);

// --- PNG fixtures --------------------------------------------------------------------
//
// Byte-level PNG builders for the card and import tests, independent of the
// code under test (the chunk CRC is computed here):
//
//     static test_buf png;
//     test_png_begin(&png);                       // signature, IHDR (1x1 RGBA)
//     test_png_chunk(&png, "tEXt", "Comment\0hi", 10);
//     test_png_end(&png);                         // IDAT, IEND
//
// test_png_card(&png, json) is the whole V2 card: a tEXt "chara" chunk of
// base64(json) between the two.

typedef struct test_buf {
    uint8_t d[1 << 16];
    size_t n;
} test_buf;

extern const uint8_t test_png_ihdr_1x1[13]; // IHDR data: 1x1, 8-bit RGBA
extern const uint8_t test_png_idat_1x1[16]; // IDAT data: a stored zlib block of one RGBA 0000 row

// Appends n bytes (aborts past the buffer's end: a bug in the test).
void test_put(test_buf *b, const void *p, size_t n);
void test_put32(test_buf *b, uint32_t v); // big-endian
uint32_t test_png_crc32(const void *p, size_t n); // CRC-32/ISO-HDLC, as PNG uses
// One chunk: length, type (4 bytes), data, CRC-32 of type and data.
void test_png_chunk(test_buf *b, const char *type, const void *data, size_t n);
// base64 (with padding) of the string s into out, NUL-terminated; returns its length.
size_t test_b64enc(const char *s, char *out);
void test_png_begin(test_buf *b); // empties b, then the signature and IHDR
void test_png_end(test_buf *b);   // IDAT and IEND
void test_png_card(test_buf *b, const char *json);

#endif
