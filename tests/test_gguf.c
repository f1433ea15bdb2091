// test_gguf.c — the GGUF reader and writer: round trips of every value type,
// hand-built files in both versions, and a corpus of truncated and corrupted
// files that must all give precise errors (never a crash or a hang).
#include <string.h>

#include "base/file.h"
#include "model/gguf.h"
#include "model/model.h"
#include "test.h"

// --- building files by hand ----------------------------------------------------------

typedef struct bytes {
    uint8_t *p;
    size_t n, cap;
} bytes;

static void put(bytes *b, const void *src, size_t n) {
    if (b->n + n > b->cap) {
        b->cap = (b->n + n) * 2 + 64;
        b->p = realloc(b->p, b->cap);
    }
    memcpy(b->p + b->n, src, n);
    b->n += n;
}
static void u32(bytes *b, uint32_t v) { put(b, &v, 4); }
static void u64(bytes *b, uint64_t v) { put(b, &v, 8); }
static void str(bytes *b, const char *s) {
    u64(b, strlen(s));
    put(b, s, strlen(s));
}
static void pad(bytes *b, size_t align) {
    while (b->n % align) put(b, "", 1);
}

// A minimal valid file: one u32 key, one 1-D F32 tensor of 8 elements.
static bytes minimal_file(uint32_t version) {
    bytes b = {0};
    u32(&b, GGUF_MAGIC);
    u32(&b, version);
    u64(&b, 1); // tensors
    u64(&b, 1); // kv
    str(&b, "general.alignment");
    u32(&b, GGUF_U32);
    u32(&b, 32);
    str(&b, "t");
    u32(&b, 1);
    u64(&b, 8);
    u32(&b, TT_F32);
    u64(&b, 0);
    pad(&b, 32);
    for (int i = 0; i < 8; i++) {
        float f = (float)i;
        put(&b, &f, 4);
    }
    return b;
}

static sim_status open_bytes(const bytes *b, sim_err *err) {
    gguf_file *f;
    sim_status st = gguf_open_memory(&f, b->p, b->n, "mem.gguf", err);
    if (st == SIM_OK) gguf_close(f);
    return st;
}

// --- tests ----------------------------------------------------------------------------

static void test_minimal_v2_v3(void) {
    for (uint32_t v = 2; v <= 3; v++) {
        bytes b = minimal_file(v);
        gguf_file *f;
        sim_err err;
        CHECK(gguf_open_memory(&f, b.p, b.n, "mem.gguf", &err) == SIM_OK);
        if (f) {
            CHECK_EQ_INT(f->version, v);
            CHECK_EQ_INT(f->n_tensors, 1);
            const gguf_tensor *t = gguf_find_tensor(f, "t");
            CHECK(t && t->ne[0] == 8 && t->type == TT_F32 && t->size == 32);
            if (t) CHECK_NEAR(((const float *)t->data)[7], 7.0, 0);
            uint32_t a;
            CHECK(gguf_get_u32(f, "general.alignment", &a) && a == 32);
            gguf_close(f);
        }
        free(b.p);
    }
}

static void test_roundtrip_all_types(void) {
    gguf_writer *w = gguf_writer_new();
    CHECK(gguf_writer_set_u32(w, "a.u32", 4000000000u) == SIM_OK);
    CHECK(gguf_writer_set_i32(w, "a.i32", -7) == SIM_OK);
    CHECK(gguf_writer_set_f32(w, "a.f32", 1.5f) == SIM_OK);
    CHECK(gguf_writer_set_bool(w, "a.bool", true) == SIM_OK);
    CHECK(gguf_writer_set_str(w, "a.str", "héllo") == SIM_OK);
    int16_t i16s[3] = {-1, 2, -3};
    uint8_t u8s[2] = {200, 7};
    double f64s[2] = {0.25, -1e300};
    uint64_t u64s[1] = {UINT64_MAX};
    CHECK(gguf_writer_set_arr(w, "a.i16s", GGUF_I16, i16s, 3) == SIM_OK);
    CHECK(gguf_writer_set_arr(w, "a.u8s", GGUF_U8, u8s, 2) == SIM_OK);
    CHECK(gguf_writer_set_arr(w, "a.f64s", GGUF_F64, f64s, 2) == SIM_OK);
    CHECK(gguf_writer_set_arr(w, "a.u64s", GGUF_U64, u64s, 1) == SIM_OK);
    const char *strs[3] = {"x", "", "zzz"};
    CHECK(gguf_writer_set_str_arr(w, "a.strs", strs, 3) == SIM_OK);
    // A nested array: [[1, 2], [3]] of i32, then an empty array.
    int32_t one[2] = {1, 2}, two[1] = {3};
    gguf_value inner[2] = {
        {.type = GGUF_ARRAY, .arr = {.etype = GGUF_I32, .n = 2, .raw = (const uint8_t *)one}},
        {.type = GGUF_ARRAY, .arr = {.etype = GGUF_I32, .n = 1, .raw = (const uint8_t *)two}},
    };
    gguf_value nested = {.type = GGUF_ARRAY, .arr = {.etype = GGUF_ARRAY, .n = 2, .elems = inner}};
    CHECK(gguf_writer_set_value(w, "a.nested", &nested) == SIM_OK);
    CHECK(gguf_writer_set_arr(w, "a.empty", GGUF_F32, NULL, 0) == SIM_OK);
    CHECK(gguf_writer_set_u32(w, "a.u32", 4000000001u) == SIM_OK); // replaces
    float data[64];
    for (int i = 0; i < 64; i++) data[i] = (float)i * 0.5f;
    int64_t ne[2] = {32, 2};
    sim_err err;
    CHECK(gguf_writer_add_tensor(w, "m", TT_F32, 2, ne, data, &err) == SIM_OK);
    CHECK(gguf_writer_add_tensor(w, "m", TT_F32, 2, ne, data, &err) == SIM_ERR_ARG); // duplicate
    int64_t bad[1] = {33};
    CHECK(gguf_writer_add_tensor(w, "q", TT_Q8_0, 1, bad, data, &err) == SIM_ERR_ARG); // not a block multiple
    uint8_t *buf;
    size_t n;
    CHECK(gguf_writer_write_memory(w, &buf, &n, &err) == SIM_OK);
    gguf_writer_free(w);
    gguf_file *f;
    CHECK(gguf_open_memory(&f, buf, n, "rt.gguf", &err) == SIM_OK);
    if (f) {
        uint32_t u;
        int64_t i;
        float fl;
        bool bo;
        char s[32];
        CHECK(gguf_get_u32(f, "a.u32", &u) && u == 4000000001u);
        CHECK(gguf_get_i64(f, "a.i32", &i) && i == -7);
        CHECK(!gguf_get_u32(f, "a.i32", &u)); // negative does not convert to unsigned
        CHECK(gguf_get_f32(f, "a.f32", &fl) && fl == 1.5f);
        CHECK(gguf_get_bool(f, "a.bool", &bo) && bo);
        CHECK(gguf_get_str(f, "a.str", s, sizeof s));
        CHECK_STR(s, "héllo");
        const gguf_value *v;
        CHECK(gguf_get_arr(f, "a.i16s", GGUF_I16, &v) == 3 && gguf_arr_int(v, 2) == -3);
        CHECK(gguf_get_arr(f, "a.u8s", GGUF_U8, &v) == 2 && gguf_arr_int(v, 0) == 200);
        CHECK(gguf_get_arr(f, "a.f64s", GGUF_F64, &v) == 2 && gguf_arr_float(v, 1) == -1e300);
        CHECK(gguf_get_arr(f, "a.u64s", GGUF_U64, &v) == 1 && gguf_arr_int(v, 0) == INT64_MAX);
        CHECK(gguf_get_arr(f, "a.strs", GGUF_STRING, &v) == 3 && v->arr.strs[2].n == 3 && v->arr.strs[1].n == 0);
        CHECK(gguf_get_arr(f, "a.i16s", GGUF_I32, &v) == -1); // wrong element type
        CHECK(gguf_get_arr(f, "a.nested", GGUF_ARRAY, &v) == 2);
        if (v && v->arr.elems) {
            CHECK(v->arr.elems[0].arr.n == 2 && gguf_arr_int(&v->arr.elems[0], 1) == 2);
            CHECK(v->arr.elems[1].arr.n == 1 && gguf_arr_int(&v->arr.elems[1], 0) == 3);
        }
        CHECK(gguf_get_arr(f, "a.empty", GGUF_F32, &v) == 0);
        const gguf_tensor *t = gguf_find_tensor(f, "m");
        CHECK(t && t->ne[0] == 32 && t->ne[1] == 2 && t->offset % 32 == 0);
        if (t) CHECK(memcmp(t->data, data, sizeof data) == 0);
        CHECK(gguf_find_tensor(f, "nope") == NULL);
        gguf_close(f);
    }
    free(buf);
}

// Each case: a file built by hand with one thing wrong, and words the error must contain.
static void test_malformed_cases(void) {
    sim_err err;
    bytes b;
    // bad magic
    b = minimal_file(3);
    b.p[0] = 'X';
    CHECK(open_bytes(&b, &err) == SIM_ERR_FORMAT && strstr(err.msg, "bad magic"));
    free(b.p);
    // version 1 and 4
    b = minimal_file(3);
    b.p[4] = 1;
    CHECK(open_bytes(&b, &err) == SIM_ERR_UNSUPPORTED && strstr(err.msg, "version 1"));
    b.p[4] = 4;
    CHECK(open_bytes(&b, &err) == SIM_ERR_UNSUPPORTED && strstr(err.msg, "version 4"));
    free(b.p);
    // huge counts
    b = minimal_file(3);
    uint64_t huge = (uint64_t)1 << 60;
    memcpy(b.p + 8, &huge, 8);
    CHECK(open_bytes(&b, &err) == SIM_ERR_FORMAT && strstr(err.msg, "tensor count"));
    free(b.p);
    b = minimal_file(3);
    memcpy(b.p + 16, &huge, 8);
    CHECK(open_bytes(&b, &err) == SIM_ERR_FORMAT && strstr(err.msg, "metadata count"));
    free(b.p);
    // key length beyond the file
    b = minimal_file(3);
    memcpy(b.p + 24, &huge, 8);
    CHECK(open_bytes(&b, &err) == SIM_ERR_FORMAT && strstr(err.msg, "length"));
    free(b.p);
    // unknown value type
    b = minimal_file(3);
    uint32_t vt = 13;
    memcpy(b.p + 24 + 8 + 17, &vt, 4);
    CHECK(open_bytes(&b, &err) == SIM_ERR_FORMAT && strstr(err.msg, "unknown value type 13"));
    free(b.p);
    // alignment not a power of two
    b = minimal_file(3);
    uint32_t al = 24;
    memcpy(b.p + 24 + 8 + 17 + 4, &al, 4);
    CHECK(open_bytes(&b, &err) == SIM_ERR_FORMAT && strstr(err.msg, "alignment"));
    free(b.p);
    // tensor fields start after the kv: name(8+1) n_dims(4) ne(8) type(4) offset(8)
    size_t t0 = 24 + 8 + 17 + 4 + 4;
    // zero dimensions / five dimensions
    b = minimal_file(3);
    uint32_t nd = 5;
    memcpy(b.p + t0 + 9, &nd, 4);
    CHECK(open_bytes(&b, &err) == SIM_ERR_FORMAT && strstr(err.msg, "5 dimensions"));
    free(b.p);
    // a dimension of zero
    b = minimal_file(3);
    uint64_t zero = 0;
    memcpy(b.p + t0 + 13, &zero, 8);
    CHECK(open_bytes(&b, &err) == SIM_ERR_FORMAT && strstr(err.msg, "invalid shape"));
    free(b.p);
    // element count too large for the file
    b = minimal_file(3);
    uint64_t big = (uint64_t)1 << 40;
    memcpy(b.p + t0 + 13, &big, 8);
    CHECK(open_bytes(&b, &err) == SIM_ERR_FORMAT && strstr(err.msg, "past the end"));
    free(b.p);
    // unsupported type id
    b = minimal_file(3);
    uint32_t ty = 16; // IQ2_XXS
    memcpy(b.p + t0 + 21, &ty, 4);
    CHECK(open_bytes(&b, &err) == SIM_ERR_UNSUPPORTED && strstr(err.msg, "unsupported type 16"));
    free(b.p);
    // row not a multiple of the block size (8 elements of Q4_0)
    b = minimal_file(3);
    ty = TT_Q4_0;
    memcpy(b.p + t0 + 21, &ty, 4);
    CHECK(open_bytes(&b, &err) == SIM_ERR_FORMAT && strstr(err.msg, "block size"));
    free(b.p);
    // unaligned offset, offset past the end
    b = minimal_file(3);
    uint64_t off = 4;
    memcpy(b.p + t0 + 25, &off, 8);
    CHECK(open_bytes(&b, &err) == SIM_ERR_FORMAT && strstr(err.msg, "not aligned"));
    off = 1024;
    memcpy(b.p + t0 + 25, &off, 8);
    CHECK(open_bytes(&b, &err) == SIM_ERR_FORMAT && strstr(err.msg, "past the end"));
    free(b.p);
    // product of dimensions overflowing 64 bits
    {
        bytes c = {0};
        u32(&c, GGUF_MAGIC);
        u32(&c, 3);
        u64(&c, 1);
        u64(&c, 0);
        str(&c, "t");
        u32(&c, 3);
        u64(&c, (uint64_t)1 << 31);
        u64(&c, (uint64_t)1 << 31);
        u64(&c, (uint64_t)1 << 31);
        u32(&c, TT_F32);
        u64(&c, 0);
        pad(&c, 32);
        for (int i = 0; i < 64; i++) put(&c, "", 1);
        CHECK(open_bytes(&c, &err) == SIM_ERR_FORMAT && strstr(err.msg, "invalid shape"));
        free(c.p);
    }
    // duplicate keys and tensor names, overlapping tensors
    {
        bytes c = {0};
        u32(&c, GGUF_MAGIC);
        u32(&c, 3);
        u64(&c, 0);
        u64(&c, 2);
        for (int i = 0; i < 2; i++) {
            str(&c, "k");
            u32(&c, GGUF_U8);
            put(&c, "x", 1);
        }
        CHECK(open_bytes(&c, &err) == SIM_ERR_FORMAT && strstr(err.msg, "duplicate metadata key 'k'"));
        free(c.p);
    }
    for (int same_name = 0; same_name < 2; same_name++) {
        bytes c = {0};
        u32(&c, GGUF_MAGIC);
        u32(&c, 3);
        u64(&c, 2);
        u64(&c, 0);
        for (int i = 0; i < 2; i++) {
            str(&c, same_name ? "t" : (i ? "b" : "a"));
            u32(&c, 1);
            u64(&c, 16);
            u32(&c, TT_F32);
            u64(&c, same_name ? (uint64_t)i * 64 : 32 * (uint64_t)i);
        }
        pad(&c, 32);
        for (int i = 0; i < 160; i++) put(&c, "", 1);
        CHECK(open_bytes(&c, &err) == SIM_ERR_FORMAT &&
              strstr(err.msg, same_name ? "duplicate tensor name 't'" : "overlap"));
        free(c.p);
    }
    // a bool that is neither 0 nor 1; arrays nested too deeply
    {
        bytes c = {0};
        u32(&c, GGUF_MAGIC);
        u32(&c, 3);
        u64(&c, 0);
        u64(&c, 1);
        str(&c, "b");
        u32(&c, GGUF_BOOL);
        put(&c, "\x02", 1);
        CHECK(open_bytes(&c, &err) == SIM_ERR_FORMAT && strstr(err.msg, "bool"));
        free(c.p);
        bytes d = {0};
        u32(&d, GGUF_MAGIC);
        u32(&d, 3);
        u64(&d, 0);
        u64(&d, 1);
        str(&d, "deep");
        u32(&d, GGUF_ARRAY);
        for (int i = 0; i < 20; i++) {
            u32(&d, GGUF_ARRAY);
            u64(&d, 1);
        }
        u32(&d, GGUF_U8);
        u64(&d, 0);
        CHECK(open_bytes(&d, &err) == SIM_ERR_FORMAT && strstr(err.msg, "nested too deeply"));
        free(d.p);
    }
    // a huge array of strings must be refused before allocating
    {
        bytes c = {0};
        u32(&c, GGUF_MAGIC);
        u32(&c, 3);
        u64(&c, 0);
        u64(&c, 1);
        str(&c, "s");
        u32(&c, GGUF_ARRAY);
        u32(&c, GGUF_STRING);
        u64(&c, (uint64_t)1 << 50);
        CHECK(open_bytes(&c, &err) == SIM_ERR_FORMAT && strstr(err.msg, "cannot fit"));
        free(c.p);
    }
    // empty file, short file
    b = (bytes){0};
    CHECK(open_bytes(&b, &err) == SIM_ERR_FORMAT && strstr(err.msg, "not a GGUF file"));
    b = minimal_file(3);
    b.n = 6;
    CHECK(open_bytes(&b, &err) == SIM_ERR_FORMAT && strstr(err.msg, "truncated"));
    free(b.p);
}

// Every prefix of a real model and many random corruptions: each must open
// cleanly or fail with a message, never crash (ASan in `make debug` checks reads).
static uint64_t rng = 88172645463325252ull;
static uint64_t next(void) {
    rng ^= rng << 13;
    rng ^= rng >> 7;
    rng ^= rng << 17;
    return rng;
}

static void corrupt_and_open(const uint8_t *orig, size_t n, int rounds) {
    uint8_t *buf = malloc(n);
    int ok = 0, failed = 0;
    for (int r = 0; r < rounds; r++) {
        memcpy(buf, orig, n);
        int flips = 1 + (int)(next() % 8);
        size_t hdr = n < 4096 ? n : 4096; // most structure is in the header
        for (int k = 0; k < flips; k++) {
            size_t at = (size_t)(next() % (next() % 4 ? hdr : n));
            switch (next() % 4) {
            case 0: buf[at] ^= (uint8_t)(1u << (next() % 8)); break;
            case 1: buf[at] = (uint8_t)next(); break;
            case 2: buf[at] = 0xFF; break;
            default: buf[at] = 0; break;
            }
        }
        size_t len = next() % 5 == 0 ? (size_t)(next() % n) : n;
        gguf_file *f;
        sim_err err = {0};
        if (gguf_open_memory(&f, buf, len, "fuzz.gguf", &err) == SIM_OK) {
            ok++;
            // Touch everything the reader exposes.
            for (int64_t i = 0; i < f->n_tensors; i++) {
                const gguf_tensor *t = &f->tensors[i];
                if (t->data && t->size) CHECK(((const uint8_t *)t->data)[t->size - 1] == buf[(const uint8_t *)t->data - buf + t->size - 1]);
            }
            gguf_close(f);
        } else {
            failed++;
            CHECK(strlen(err.msg) > 10 && strstr(err.msg, "fuzz.gguf"));
        }
    }
    fprintf(stderr, "  %d corrupted files: %d opened, %d refused with a message\n", rounds, ok, failed);
    free(buf);
}

static void test_truncations_and_corruptions(void) {
    // A small model written by our own writer: every prefix must fail cleanly.
    gguf_writer *w = gguf_writer_new();
    const char *toks[4] = {"<unk>", "<s>", "</s>", "a"};
    gguf_writer_set_str(w, "general.architecture", "llama");
    gguf_writer_set_str_arr(w, "tokenizer.ggml.tokens", toks, 4);
    float data[256] = {0};
    int64_t ne[2] = {32, 8};
    sim_err err;
    gguf_writer_add_tensor(w, "token_embd.weight", TT_F32, 2, ne, data, &err);
    gguf_writer_add_tensor(w, "x", TT_F16, 2, ne, data, &err);
    uint8_t *buf;
    size_t n;
    CHECK(gguf_writer_write_memory(w, &buf, &n, &err) == SIM_OK);
    gguf_writer_free(w);
    int refused = 0;
    for (size_t len = 0; len < n; len++) {
        gguf_file *f;
        uint8_t *copy = malloc(len ? len : 1); // exact-size buffer: ASan sees any overread
        memcpy(copy, buf, len);
        if (gguf_open_memory(&f, copy, len, "trunc.gguf", &err) == SIM_OK) gguf_close(f);
        else refused++;
        free(copy);
    }
    CHECK_EQ_INT(refused, (int)n); // every strict prefix lacks tensor data
    corrupt_and_open(buf, n, 3000);
    free(buf);
    char path[1200];
    if (!test_shared_path(path, sizeof path, "models/synth-llama-256.Q4_K_M.gguf")) return;
    file_map m;
    CHECK(file_map_open(&m, path, &err) == SIM_OK);
    corrupt_and_open(m.data, m.size, 300);
    file_map_close(&m);
}

static void test_vocab_only_and_files(void) {
    sim_err err;
    gguf_file *f;
    CHECK(gguf_open(&f, "/nonexistent/model.gguf", &err) == SIM_ERR_IO && strstr(err.msg, "/nonexistent/model.gguf"));
    CHECK(gguf_open(&f, "/", &err) == SIM_ERR_IO);
    char path[1200];
    if (!test_shared_path(path, sizeof path, "vocab/ggml-vocab-gpt-2.gguf")) return;
    CHECK(gguf_open(&f, path, &err) == SIM_OK);
    if (f) {
        CHECK_EQ_INT(f->n_tensors, 0);
        const gguf_value *v;
        CHECK(gguf_get_arr(f, "tokenizer.ggml.tokens", GGUF_STRING, &v) == 50257);
        gguf_close(f);
    }
    model *m;
    model_params p = {.vocab_only = true};
    CHECK(model_load(&m, path, &p, &err) == SIM_OK);
    if (m) model_free(m);
    p.vocab_only = false;
    CHECK(model_load(&m, path, &p, &err) != SIM_OK && strstr(err.msg, "ggml-vocab-gpt-2.gguf"));
}

// Injected allocation failures at every point of opening a real file: each
// returns SIM_ERR_NOMEM cleanly (ASan checks for leaks and bad frees).
static void test_allocation_failures(void) {
    bytes b = minimal_file(3);
    sim_err err;
    int nomem = 0;
    for (long k = 0; k < 40; k++) {
        gguf_file *f = NULL;
        mem_fail_after(k);
        sim_status st = gguf_open_memory(&f, b.p, b.n, "mem.gguf", &err);
        bool hit = mem_fail_triggered();
        mem_fail_after(-1);
        if (hit) {
            CHECK(st == SIM_ERR_NOMEM && f == NULL);
            nomem++;
        } else {
            CHECK(st == SIM_OK);
            gguf_close(f);
            break;
        }
    }
    CHECK(nomem >= 3);
    free(b.p);
}

int main(int argc, char **argv) {
    test_init(argc, argv);
    TEST_RUN(test_minimal_v2_v3);
    TEST_RUN(test_roundtrip_all_types);
    TEST_RUN(test_malformed_cases);
    TEST_RUN(test_truncations_and_corruptions);
    TEST_RUN(test_vocab_only_and_files);
    TEST_RUN(test_allocation_failures);
    return test_finish();
}
