// test_image_safetensors.c — the safetensors reader (src/image/safetensors.h):
// hand-built files, every hostile variant refused with a message naming
// the problem, every truncation refused, allocation failures, and the real
// micro-sd15 weight files.
#include <stdio.h>
#include <string.h>

#include "base/file.h"
#include "image/safetensors.h"
#include "tensor/types.h"
#include "test.h"

// Builds a file: u64 header length, header, then `data` (n bytes). Returns
// its size; the bytes are in a static buffer.
static uint8_t g_buf[1 << 16];
static size_t build(const char *header, const void *data, size_t n) {
    size_t hl = strlen(header);
    for (int i = 0; i < 8; i++) g_buf[i] = (uint8_t)((uint64_t)hl >> (8 * i));
    memcpy(g_buf + 8, header, hl);
    if (n) memcpy(g_buf + 8 + hl, data, n);
    return 8 + hl + n;
}

static const char *VALID =
    "{\"__metadata__\":{\"format\":\"pt\"},"
    "\"b.f16\":{\"dtype\":\"F16\",\"shape\":[3],\"data_offsets\":[24,30]},"
    "\"a.f32\":{\"dtype\":\"F32\",\"shape\":[2,3],\"data_offsets\":[0,24]},"
    "\"c.bf16\":{\"dtype\":\"BF16\",\"shape\":[2],\"data_offsets\":[30,34]},"
    "\"d.i64\":{\"dtype\":\"I64\",\"shape\":[1],\"data_offsets\":[34,42]},"
    "\"e.empty\":{\"dtype\":\"F32\",\"shape\":[0,5],\"data_offsets\":[42,42]},"
    "\"f.scalar\":{\"dtype\":\"F32\",\"shape\":[],\"data_offsets\":[42,46]}}  ";

static size_t valid_data(uint8_t *d) {
    float f[6] = {1, -2, 3.5f, 0, 1e-3f, -7};
    memcpy(d, f, 24);
    tt_half h[3] = {tt_float_to_half(0.5f), tt_float_to_half(-1.25f), tt_float_to_half(65504.f)};
    memcpy(d + 24, h, 6);
    tt_bf16 b[2] = {tt_float_to_bf16(3.0f), tt_float_to_bf16(-0.15625f)};
    memcpy(d + 30, b, 4);
    int64_t i = 42;
    memcpy(d + 34, &i, 8);
    float s = 9.f;
    memcpy(d + 42, &s, 4);
    return 46;
}

static void test_valid(void) {
    uint8_t d[64];
    size_t n = build(VALID, d, valid_data(d));
    st_file *f;
    sim_err err = {0};
    CHECK_EQ_INT(st_open_memory(&f, g_buf, n, "valid", &err), SIM_OK);
    if (!f) return;
    CHECK_EQ_INT(f->n_tensors, 6);
    const st_tensor *t = st_find(f, "a.f32");
    CHECK(t && t->dtype == ST_F32 && t->n_dims == 2 && t->shape[0] == 2 && t->shape[1] == 3 && t->n_elem == 6);
    CHECK(st_find(f, "__metadata__") == NULL && st_find(f, "zz") == NULL && st_find(f, "") == NULL);
    float o[8];
    CHECK_EQ_INT(st_read_f32(f, "a.f32", (int64_t[]){2, 3}, 2, o, &err), SIM_OK);
    CHECK(o[0] == 1 && o[2] == 3.5f && o[5] == -7);
    CHECK_EQ_INT(st_read_f32(f, "b.f16", NULL, 0, o, &err), SIM_OK);
    CHECK(o[0] == 0.5f && o[1] == -1.25f && o[2] == 65504.f);
    CHECK_EQ_INT(st_read_f32(f, "c.bf16", (int64_t[]){2}, 1, o, &err), SIM_OK);
    CHECK(o[0] == 3.0f && o[1] == -0.15625f);
    CHECK_EQ_INT(st_read_f32(f, "f.scalar", (int64_t[]){0}, 0, o, &err), SIM_OK);
    CHECK(o[0] == 9.f);
    CHECK_EQ_INT(st_read_f32(f, "e.empty", (int64_t[]){0, 5}, 2, o, &err), SIM_OK);
    // Errors name the tensor and the shapes.
    CHECK_EQ_INT(st_read_f32(f, "a.f32", (int64_t[]){3, 2}, 2, o, &err), SIM_ERR_FORMAT);
    CHECK(strstr(err.msg, "'a.f32' has shape [2, 3], expected [3, 2]") != NULL);
    CHECK_EQ_INT(st_read_f32(f, "a.f32", (int64_t[]){2, 3, 1}, 3, o, &err), SIM_ERR_FORMAT);
    CHECK_EQ_INT(st_read_f32(f, "d.i64", NULL, 0, o, &err), SIM_ERR_UNSUPPORTED);
    CHECK(strstr(err.msg, "I64") != NULL);
    CHECK_EQ_INT(st_read_f32(f, "nope", NULL, 0, o, &err), SIM_ERR_FORMAT);
    CHECK(strstr(err.msg, "missing tensor 'nope'") != NULL);
    st_close(f);
}

// The read hook sees every tensor read, after conversion, and can fail it.
static sim_status add_name_len(void *ud, const char *name, float *data, int n_dims, const int64_t *shape, sim_err *err) {
    int *calls = ud;
    (*calls)++;
    if (strcmp(name, "c.bf16") == 0) return err_set(err, SIM_ERR_ARG, "refused '%s'", name);
    int64_t n = 1;
    for (int i = 0; i < n_dims; i++) n *= shape[i];
    for (int64_t i = 0; i < n; i++) data[i] += (float)strlen(name);
    return SIM_OK;
}

static void test_patch_hook(void) {
    uint8_t d[64];
    size_t n = build(VALID, d, valid_data(d));
    st_file *f;
    sim_err err = {0};
    CHECK_EQ_INT(st_open_memory(&f, g_buf, n, "valid", &err), SIM_OK);
    if (!f) return;
    int calls = 0;
    st_set_patch(f, add_name_len, &calls);
    float o[8];
    CHECK_EQ_INT(st_read_f32(f, "a.f32", (int64_t[]){2, 3}, 2, o, &err), SIM_OK);
    CHECK(o[0] == 1 + 5 && o[5] == -7 + 5);
    CHECK_EQ_INT(st_read_f32(f, "b.f16", NULL, 0, o, &err), SIM_OK);
    CHECK(o[1] == -1.25f + 5);
    CHECK_EQ_INT(st_read_f32(f, "c.bf16", NULL, 0, o, &err), SIM_ERR_ARG);
    CHECK(strstr(err.msg, "refused 'c.bf16'") != NULL);
    CHECK_EQ_INT(st_read_f32(f, "nope", NULL, 0, o, &err), SIM_ERR_FORMAT); // not called
    CHECK_EQ_INT(calls, 3);
    st_set_patch(f, NULL, NULL);
    CHECK_EQ_INT(st_read_f32(f, "a.f32", NULL, 0, o, &err), SIM_OK);
    CHECK(o[0] == 1 && calls == 3);
    st_close(f);
}

// Opens header+data; expects failure with `code` and `want` in the message.
static void refuse(const char *header, size_t data_len, sim_status code, const char *want) {
    uint8_t d[256] = {0};
    size_t n = build(header, d, data_len);
    st_file *f = (st_file *)1;
    sim_err err = {0};
    sim_status st = st_open_memory(&f, g_buf, n, "bad", &err);
    CHECK_MSG(st == code, "%s: got %d (%s)", header, st, err.msg);
    CHECK(f == NULL);
    CHECK_MSG(strstr(err.msg, want) != NULL, "%s: message '%s' lacks '%s'", header, err.msg, want);
    if (st == SIM_OK && f) st_close(f);
}

static void test_hostile(void) {
    refuse("x", 0, SIM_ERR_FORMAT, "not a JSON object");
    refuse("[1,2]", 0, SIM_ERR_FORMAT, "not a JSON object");
    refuse("{\"a\":", 0, SIM_ERR_FORMAT, "header JSON");
    refuse("{\"a\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[0,4]},"
           "\"a\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[4,8]}}", 8, SIM_ERR_FORMAT, "duplicate");
    refuse("{\"a\":{\"dtype\":\"Q4\",\"shape\":[1],\"data_offsets\":[0,4]}}", 4, SIM_ERR_UNSUPPORTED, "unknown dtype 'Q4'");
    refuse("{\"a\":{\"shape\":[1],\"data_offsets\":[0,4]}}", 4, SIM_ERR_FORMAT, "dtype");
    refuse("{\"a\":{\"dtype\":\"F32\",\"data_offsets\":[0,4]}}", 4, SIM_ERR_FORMAT, "shape");
    refuse("{\"a\":{\"dtype\":\"F32\",\"shape\":[-1],\"data_offsets\":[0,4]}}", 4, SIM_ERR_FORMAT, "shape[0]");
    refuse("{\"a\":{\"dtype\":\"F32\",\"shape\":[1.0],\"data_offsets\":[0,4]}}", 4, SIM_ERR_FORMAT, "shape[0]");
    refuse("{\"a\":{\"dtype\":\"F32\",\"shape\":[1,1,1,1,1,1,1,1,1],\"data_offsets\":[0,4]}}", 4, SIM_ERR_UNSUPPORTED, "9 dims");
    refuse("{\"a\":{\"dtype\":\"F32\",\"shape\":[4294967296,4294967296],\"data_offsets\":[0,4]}}", 4, SIM_ERR_FORMAT, "overflows");
    refuse("{\"a\":{\"dtype\":\"F32\",\"shape\":[4611686018427387904],\"data_offsets\":[0,4]}}", 4, SIM_ERR_FORMAT, "overflows");
    refuse("{\"a\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[0]}}", 4, SIM_ERR_FORMAT, "not a pair");
    refuse("{\"a\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[4,0]}}", 4, SIM_ERR_FORMAT, "end before");
    refuse("{\"a\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[-4,0]}}", 4, SIM_ERR_FORMAT, "non-negative");
    refuse("{\"a\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[0,8]}}", 4, SIM_ERR_FORMAT, "beyond the 4-byte data buffer");
    refuse("{\"a\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[0,4]}}", 4, SIM_ERR_FORMAT, "F32 [2] needs 8 bytes but data_offsets give 4");
    refuse("{\"a\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[0,8]},"
           "\"b\":{\"dtype\":\"F16\",\"shape\":[2],\"data_offsets\":[6,10]}}", 12, SIM_ERR_FORMAT, "'a' and 'b' overlap");
    refuse("{\"a\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[0,4],\"x\":1}}", 4, SIM_ERR_FORMAT, "unknown field 'x'");
    refuse("{\"a\":[1]}", 4, SIM_ERR_FORMAT, "'a': not an object");
    refuse("{\"__metadata__\":{\"k\":1}}", 0, SIM_ERR_FORMAT, "__metadata__ 'k'");
    refuse("{\"__metadata__\":[]}", 0, SIM_ERR_FORMAT, "__metadata__ is not an object");

    // Header lengths that lie.
    sim_err err = {0};
    st_file *f;
    uint8_t b[16] = {0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, '{', '}'};
    CHECK_EQ_INT(st_open_memory(&f, b, 10, "huge", &err), SIM_ERR_FORMAT);
    CHECK(strstr(err.msg, "exceeds the 2 bytes after it") != NULL);
    CHECK_EQ_INT(st_open_memory(&f, b, 5, "short", &err), SIM_ERR_FORMAT);
    CHECK(strstr(err.msg, "too short") != NULL);
    CHECK_EQ_INT(st_open_memory(&f, NULL, 0, "empty", &err), SIM_ERR_FORMAT);
    uint8_t e[10] = {2, 0, 0, 0, 0, 0, 0, 0, '{', '}'};
    CHECK_EQ_INT(st_open_memory(&f, e, 10, "no tensors", &err), SIM_OK);
    if (f) {
        CHECK_EQ_INT(f->n_tensors, 0);
        st_close(f);
    }
}

// Every strict prefix of a valid file is refused, never read past.
static void test_truncated(void) {
    uint8_t d[64];
    size_t n = build(VALID, d, valid_data(d));
    static uint8_t copy[sizeof g_buf];
    for (size_t k = 0; k < n; k++) {
        memcpy(copy, g_buf, k); // the exact prefix, nothing after it
        uint8_t *heap = mem_alloc(k ? k : 1);
        memcpy(heap, copy, k);
        st_file *f;
        sim_err err = {0};
        sim_status st = st_open_memory(&f, heap, k, "cut", &err);
        CHECK_MSG(st == SIM_ERR_FORMAT, "prefix %zu: %d %s", k, st, err.msg);
        if (st == SIM_OK) st_close(f);
        mem_free(heap);
    }
}

static void test_alloc_failures(void) {
    uint8_t d[64];
    size_t n = build(VALID, d, valid_data(d));
    bool done = false;
    for (long k = 0; k < 50 && !done; k++) {
        st_file *f;
        sim_err err = {0};
        mem_fail_after(k);
        sim_status st = st_open_memory(&f, g_buf, n, "valid", &err);
        bool failed = mem_fail_triggered();
        mem_fail_after(-1);
        if (st == SIM_OK) st_close(f);
        if (!failed) {
            CHECK_EQ_INT(st, SIM_OK);
            done = true;
        } else CHECK_MSG(st == SIM_ERR_NOMEM && f == NULL, "allocation %ld: %d %s", k, st, err.msg);
    }
    CHECK(done);
}

static void test_real_files(void) {
    static const char *const files[] = {
        "diffusion/micro-sd15/text_encoder/model.safetensors",
        "diffusion/micro-sd15/unet/diffusion_pytorch_model.safetensors",
        "diffusion/micro-sd15/vae/diffusion_pytorch_model.safetensors",
    };
    for (size_t i = 0; i < ARRAY_LEN(files); i++) {
        char path[1024];
        if (!test_shared_path(path, sizeof path, files[i])) return;
        st_file *f;
        sim_err err = {0};
        CHECK_MSG(st_open(&f, path, &err) == SIM_OK, "%s", err.msg);
        if (!f) continue;
        CHECK(f->n_tensors > 10);
        if (i == 0) {
            const st_tensor *t = st_find(f, "text_model.embeddings.token_embedding.weight");
            CHECK(t && t->n_dims == 2 && t->shape[0] == 49408 && t->shape[1] == 32);
        }
        st_close(f);
    }
    st_file *f;
    sim_err err = {0};
    CHECK_EQ_INT(st_open(&f, "/nonexistent/x.safetensors", &err), SIM_ERR_IO);
    CHECK(strstr(err.msg, "/nonexistent/x.safetensors") != NULL);
}

int main(int argc, char **argv) {
    test_init(argc, argv);
    TEST_RUN(test_valid);
    TEST_RUN(test_patch_hook);
    TEST_RUN(test_hostile);
    TEST_RUN(test_truncated);
    TEST_RUN(test_alloc_failures);
    TEST_RUN(test_real_files);
    return test_finish();
}
