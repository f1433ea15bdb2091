// test_image_wts.c — weight binding (src/image/wts.h) on a hand-built
// safetensors file: 16-bit matrices kept as they are, float32 for the rest,
// stacks contiguous in one type (float32 when the parts differ), the patch
// hook seeing every tensor and its changes surviving the trip back to F16,
// errors naming the tensor.
#include <stdio.h>
#include <string.h>

#include "image/wts.h"
#include "test.h"

// 2×3 tensors: a (F16: 0.5·i), b (F16: -i), c (F32: 10+i), d (BF16: 0.25·i); bias (F32, 3: 100+i).
static uint8_t g_file[4096];
static size_t g_size;

static void build_file(void) {
    uint8_t data[256];
    size_t o = 0;
    for (int i = 0; i < 6; i++) { // a
        tt_half h = tt_float_to_half(0.5f * (float)i);
        memcpy(data + o, &h, 2), o += 2;
    }
    for (int i = 0; i < 6; i++) { // b
        tt_half h = tt_float_to_half(-(float)i);
        memcpy(data + o, &h, 2), o += 2;
    }
    for (int i = 0; i < 6; i++) { // c
        float f = 10.0f + (float)i;
        memcpy(data + o, &f, 4), o += 4;
    }
    for (int i = 0; i < 6; i++) { // d
        tt_bf16 h = tt_float_to_bf16(0.25f * (float)i);
        memcpy(data + o, &h, 2), o += 2;
    }
    for (int i = 0; i < 3; i++) { // bias
        float f = 100.0f + (float)i;
        memcpy(data + o, &f, 4), o += 4;
    }
    char json[1024];
    int n = snprintf(json, sizeof json,
                     "{\"a.weight\":{\"dtype\":\"F16\",\"shape\":[2,3],\"data_offsets\":[0,12]},"
                     "\"b.weight\":{\"dtype\":\"F16\",\"shape\":[2,3],\"data_offsets\":[12,24]},"
                     "\"c.weight\":{\"dtype\":\"F32\",\"shape\":[2,3],\"data_offsets\":[24,48]},"
                     "\"d.weight\":{\"dtype\":\"BF16\",\"shape\":[2,3],\"data_offsets\":[48,60]},"
                     "\"bias\":{\"dtype\":\"F32\",\"shape\":[3],\"data_offsets\":[60,72]}}");
    uint64_t len = (uint64_t)n;
    memcpy(g_file, &len, 8);
    memcpy(g_file + 8, json, (size_t)n);
    memcpy(g_file + 8 + n, data, o);
    g_size = 8 + (size_t)n + o;
}

typedef struct model {
    op_mat a, ab, ac, d;
    float *bias;
    int64_t bad_shape0; // when not 0: a.weight is taken with this first dim
    bool missing;       // take a tensor the file lacks
} model;

static void bind(wts_loader *L, void *ud) {
    model *m = ud;
    wts_take_mat(L, &m->a, WTS_SHAPE(m->bad_shape0 ? m->bad_shape0 : 2, 3), "a.weight");
    wts_take_stack(L, &m->ab, 2, WTS_SHAPE(2, 3), (const char *const[]){"a.weight", "b.weight"});
    wts_take_stack(L, &m->ac, 2, WTS_SHAPE(2, 3), (const char *const[]){"a.weight", "c.weight"});
    wts_take_mat(L, &m->d, WTS_SHAPE(2, 3), "d.weight");
    wts_take(L, &m->bias, WTS_SHAPE(3), m->missing ? "nope" : "bias");
}

static void test_types(void) {
    st_file *f;
    sim_err err;
    CHECK(st_open_memory(&f, g_file, g_size, "mem.safetensors", &err) == SIM_OK);
    model m = {0};
    void *arena = NULL;
    CHECK(wts_load(f, "", bind, &m, &arena, &err) == SIM_OK);
    CHECK(m.a.type == TT_F16 && m.ab.type == TT_F16 && m.ac.type == TT_F32 && m.d.type == TT_BF16);
    for (int i = 0; i < 6; i++) {
        CHECK(op_mat_at(m.a, (size_t)i) == 0.5f * (float)i);
        CHECK(op_mat_at(m.ab, (size_t)i) == 0.5f * (float)i && op_mat_at(m.ab, (size_t)i + 6) == -(float)i);
        CHECK(op_mat_at(m.ac, (size_t)i) == 0.5f * (float)i && op_mat_at(m.ac, (size_t)i + 6) == 10.0f + (float)i);
        CHECK(op_mat_at(m.d, (size_t)i) == 0.25f * (float)i);
    }
    CHECK(m.bias[0] == 100 && m.bias[2] == 102);
    CHECK(((uintptr_t)m.bias & 3) == 0 && ((uintptr_t)m.ac.data & 3) == 0); // f32 after 16-bit tensors stays aligned
    mem_free(arena);
    st_close(f);
}

// The hook adds 1 to a.weight and counts every tensor it sees.
typedef struct seen {
    int n;
    char names[16][32];
} seen;

static sim_status add_one(void *ud, const char *name, float *data, int n_dims, const int64_t *shape, sim_err *err) {
    (void)err;
    seen *s = ud;
    if (s->n < 16) snprintf(s->names[s->n++], sizeof s->names[0], "%s", name);
    if (strcmp(name, "a.weight") == 0)
        for (int64_t i = 0; i < shape[0] * (n_dims > 1 ? shape[1] : 1); i++) data[i] += 1;
    return SIM_OK;
}

static void test_patch(void) {
    st_file *f;
    sim_err err;
    CHECK(st_open_memory(&f, g_file, g_size, "mem.safetensors", &err) == SIM_OK);
    seen s = {0};
    st_set_patch(f, add_one, &s);
    model m = {0};
    void *arena = NULL;
    CHECK(wts_load(f, "", bind, &m, &arena, &err) == SIM_OK);
    CHECK(m.a.type == TT_F16); // still kept as F16, patched
    for (int i = 0; i < 6; i++) CHECK(op_mat_at(m.a, (size_t)i) == 0.5f * (float)i + 1);
    CHECK(op_mat_at(m.ab, 3) == 2.5f && op_mat_at(m.ab, 9) == -3.0f);
    CHECK(op_mat_at(m.d, 2) == 0.5f);
    // a (3 times: alone and in two stacks), b, c, d, bias: every take went through the hook.
    CHECK_EQ_INT(s.n, 7);
    int na = 0;
    for (int i = 0; i < s.n; i++) na += strcmp(s.names[i], "a.weight") == 0;
    CHECK_EQ_INT(na, 3);
    mem_free(arena);
    st_close(f);
}

static void test_errors(void) {
    st_file *f;
    sim_err err;
    CHECK(st_open_memory(&f, g_file, g_size, "mem.safetensors", &err) == SIM_OK);
    void *arena = NULL;
    model m = {.bad_shape0 = 3};
    CHECK(wts_load(f, "", bind, &m, &arena, &err) == SIM_ERR_FORMAT);
    CHECK(strstr(err.msg, "a.weight") && strstr(err.msg, "[2, 3]") && strstr(err.msg, "[3, 3]"));
    CHECK(arena == NULL);
    model m2 = {.missing = true};
    CHECK(wts_load(f, "", bind, &m2, &arena, &err) == SIM_ERR_FORMAT);
    CHECK(strstr(err.msg, "'nope'") != NULL);
    // Every allocation failing in turn: an error, nothing leaked (ASan).
    for (long k = 0;; k++) {
        model m3 = {0};
        seen s = {0};
        st_set_patch(f, add_one, &s); // the patched path allocates a float32 copy per 16-bit tensor
        mem_fail_after(k);
        sim_status st = wts_load(f, "", bind, &m3, &arena, &err);
        bool failed = mem_fail_triggered();
        mem_fail_after(-1);
        if (!failed) {
            CHECK(st == SIM_OK);
            mem_free(arena);
            break;
        }
        CHECK(st == SIM_ERR_NOMEM);
    }
    st_close(f);
}

int main(int argc, char **argv) {
    test_init(argc, argv);
    build_file();
    TEST_RUN(test_types);
    TEST_RUN(test_patch);
    TEST_RUN(test_errors);
    return test_finish();
}
