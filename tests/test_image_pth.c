// test_image_pth.c — PyTorch checkpoints through the safe unpickler
// (src/image/pth.h): hand-written pickles (state dicts, and hostile ones
// that call os.system and friends, which must be refused by name without
// running anything), hand-built zips, and the real taef2 .pth files.
#include <stdio.h>
#include <string.h>
#include <zip.h>

#include "image/pth.h"
#include "test.h"

// A state dict {"w": tensor(shape (2, 2), stride `stride`)} over storage '0' of `numel` floats.
static size_t state_dict(uint8_t *b, int numel, int s0, int s1) {
    size_t n = 0;
#define PUT(str) (memcpy(b + n, str, sizeof(str) - 1), n += sizeof(str) - 1)
    PUT("\x80\x02" "ccollections\nOrderedDict\nq\x00)Rq\x01(");
    PUT("X\x01\x00\x00\x00w");
    PUT("ctorch._utils\n_rebuild_tensor_v2\nq\x02((X\x07\x00\x00\x00storageq\x03" "ctorch\nFloatStorage\nq\x04");
    PUT("X\x01\x00\x00\x00" "0X\x03\x00\x00\x00" "cpuK");
    b[n++] = (uint8_t)numel;
    PUT("tQK\x00K\x02K\x02\x86K");
    b[n++] = (uint8_t)s0;
    b[n++] = 'K';
    b[n++] = (uint8_t)s1;
    PUT("\x86\x89h\x00)Rtq\x05Ru.");
#undef PUT
    return n;
}

static void refused(const char *what, const void *pkl, size_t n, sim_status code, const char *want) {
    int nt = -1;
    sim_err err = {0};
    sim_status st = pth_check_pickle(pkl, n, &nt, &err);
    CHECK_MSG(st == code, "%s: %d %s", what, st, err.msg);
    CHECK_MSG(strstr(err.msg, want) != NULL, "%s: '%s' lacks '%s'", what, err.msg, want);
}

#define P(s) s, sizeof(s) - 1

static void test_pickles(void) {
    uint8_t b[512];
    int nt;
    sim_err err = {0};
    size_t n = state_dict(b, 4, 2, 1);
    CHECK_MSG(pth_check_pickle(b, n, &nt, &err) == SIM_OK, "%s", err.msg);
    CHECK_EQ_INT(nt, 1);
    // Every strict prefix is refused.
    for (size_t k = 0; k < n; k++) {
        uint8_t *c = mem_alloc(k + 1);
        memcpy(c, b, k);
        sim_status st = pth_check_pickle(c, k, &nt, &err);
        CHECK_MSG(st != SIM_OK, "prefix %zu accepted", k);
        mem_free(c);
    }
    // Hostile pickles: the usual payloads never get past GLOBAL.
    refused("os.system", P("\x80\x02" "cos\nsystem\nq\x00X\x02\x00\x00\x00lsq\x01\x85q\x02Rq\x03."), SIM_ERR_UNSUPPORTED,
            "refused GLOBAL 'os.system'");
    refused("posix.system via STACK_GLOBAL", P("\x80\x04\x8c\x05posix\x94\x8c\x06system\x94\x93\x94\x8c\x02ls\x94\x85\x94R\x94."),
            SIM_ERR_UNSUPPORTED, "refused GLOBAL 'posix.system'");
    refused("builtins.eval", P("\x80\x02" "cbuiltins\neval\nX\x04\x00\x00\x00" "1+1\x85R."), SIM_ERR_UNSUPPORTED, "'builtins.eval'");
    refused("torch.load", P("\x80\x02" "ctorch\nload\n."), SIM_ERR_UNSUPPORTED, "'torch.load'");
    refused("INST", P("(S'ls'\nios\nsystem\n."), SIM_ERR_UNSUPPORTED, "refused opcode 0x53 'S'");
    refused("OBJ", P("\x80\x02(ccollections\nOrderedDict\no."), SIM_ERR_UNSUPPORTED, "refused opcode 0x6f 'o'");
    refused("NEWOBJ", P("\x80\x02" "ccollections\nOrderedDict\n)\x81."), SIM_ERR_UNSUPPORTED, "refused opcode 0x81");
    refused("REDUCE of a non-global", P("\x80\x02K\x01)R."), SIM_ERR_UNSUPPORTED, "REDUCE of something other than an allowed global");
    refused("OrderedDict with args", P("\x80\x02" "ccollections\nOrderedDict\nK\x01\x85R."), SIM_ERR_UNSUPPORTED, "OrderedDict with arguments");
    refused("storage called", P("\x80\x02" "ctorch\nFloatStorage\n)R."), SIM_ERR_UNSUPPORTED, "REDUCE of a storage type");
    refused("protocol 0", P("\x80\x00}."), SIM_ERR_UNSUPPORTED, "protocol");
    refused("unset memo", P("\x80\x02h\x05."), SIM_ERR_FORMAT, "unset memo");
    refused("empty STOP", P("\x80\x02."), SIM_ERR_FORMAT, "STOP with other than one value");
    refused("no STOP", P("\x80\x02}"), SIM_ERR_FORMAT, "ends without STOP");
    refused("not a dict", P("\x80\x02K\x01."), SIM_ERR_FORMAT, "not a state dict");
    refused("SETITEM on a list", P("\x80\x02]K\x01K\x02s."), SIM_ERR_FORMAT, "SETITEM on a non-dict");
    refused("string past end", P("\x80\x02X\xff\x00\x00\x00ab."), SIM_ERR_FORMAT, "string runs past the end");
    refused("bad persid", P("\x80\x02K\x01\x85Q."), SIM_ERR_FORMAT, "persistent id");
    refused("BUILD on int", P("\x80\x02K\x01K\x02" "b."), SIM_ERR_UNSUPPORTED, "BUILD on something");
    refused("mark underflow", P("\x80\x02t."), SIM_ERR_FORMAT, "no MARK");
    // A deep nest of tuples is fine (no recursion in the machine); deep dicts are bounded.
    uint8_t deep[4096];
    size_t k = 0;
    deep[k++] = 0x80, deep[k++] = 2, deep[k++] = '}';
    for (int i = 0; i < 1000; i++) deep[k++] = 0x85;
    deep[k++] = '0', deep[k++] = '}', deep[k++] = '.';
    CHECK_EQ_INT(pth_check_pickle(deep, k, &nt, &err), SIM_OK);
}

static size_t make_zip(uint8_t *out, size_t cap, const void *pkl, size_t pl, const void *data, size_t dl) {
    zip_error_t ze;
    zip_error_init(&ze);
    zip_source_t *src = zip_source_buffer_create(NULL, 0, 0, &ze);
    zip_t *za = zip_open_from_source(src, ZIP_TRUNCATE, &ze);
    zip_source_keep(src);
    zip_file_add(za, "archive/data.pkl", zip_source_buffer(za, pkl, pl, 0), 0);
    zip_file_add(za, "archive/byteorder", zip_source_buffer(za, "little", 6, 0), 0);
    if (data) zip_file_add(za, "archive/data/0", zip_source_buffer(za, data, dl, 0), 0);
    CHECK(zip_close(za) == 0);
    zip_source_open(src);
    zip_int64_t n = zip_source_read(src, out, cap);
    zip_source_close(src);
    zip_source_free(src);
    zip_error_fini(&ze);
    return n > 0 ? (size_t)n : 0;
}

static void test_zips(void) {
    static uint8_t z[8192];
    uint8_t pkl[512];
    float vals[4] = {1, -2, 3.5f, 4};
    sim_err err = {0};
    st_file *f;
    size_t pl = state_dict(pkl, 4, 2, 1), n = make_zip(z, sizeof z, pkl, pl, vals, 16);
    CHECK_MSG(pth_open_memory(&f, z, n, "ok.pth", &err) == SIM_OK, "%s", err.msg);
    if (f) {
        float o[4];
        CHECK_EQ_INT(st_read_f32(f, "w", (int64_t[]){2, 2}, 2, o, &err), SIM_OK);
        CHECK(memcmp(o, vals, 16) == 0);
        st_close(f);
    }
    n = make_zip(z, sizeof z, pkl, pl, vals, 12); // storage shorter than its pickle says
    CHECK_EQ_INT(pth_open_memory(&f, z, n, "short.pth", &err), SIM_ERR_FORMAT);
    CHECK(strstr(err.msg, "storage 'archive/data/0' is 12 bytes, its pickle says 4 elements") != NULL);
    n = make_zip(z, sizeof z, pkl, pl, NULL, 0);
    CHECK_EQ_INT(pth_open_memory(&f, z, n, "nodata.pth", &err), SIM_ERR_FORMAT);
    CHECK(strstr(err.msg, "missing archive entry 'archive/data/0'") != NULL);
    pl = state_dict(pkl, 3, 2, 1);
    n = make_zip(z, sizeof z, pkl, pl, vals, 12);
    CHECK_EQ_INT(pth_open_memory(&f, z, n, "small.pth", &err), SIM_ERR_FORMAT);
    CHECK(strstr(err.msg, "runs past its storage of 3") != NULL);
    pl = state_dict(pkl, 4, 1, 2);
    n = make_zip(z, sizeof z, pkl, pl, vals, 16);
    CHECK_EQ_INT(pth_open_memory(&f, z, n, "t.pth", &err), SIM_ERR_UNSUPPORTED);
    CHECK(strstr(err.msg, "not contiguous") != NULL);
    static const char evil[] = "\x80\x02" "cos\nsystem\nq\x00X\x02\x00\x00\x00lsq\x01\x85q\x02Rq\x03.";
    n = make_zip(z, sizeof z, evil, sizeof evil - 1, NULL, 0);
    CHECK_EQ_INT(pth_open_memory(&f, z, n, "evil.pth", &err), SIM_ERR_UNSUPPORTED);
    CHECK(strstr(err.msg, "evil.pth: pickle offset") && strstr(err.msg, "'os.system'"));
    CHECK_EQ_INT(pth_open_memory(&f, (const uint8_t *)"PK\3\4junk", 9, "junk.pth", &err), SIM_ERR_FORMAT);
    CHECK_EQ_INT(pth_open(&f, "/nonexistent.pth", &err), SIM_ERR_IO);
}

// Every allocation of ours failing in turn: a clean SIM_ERR_NOMEM, nothing leaked (ASan).
static void test_alloc_failures(void) {
    static uint8_t z[8192];
    uint8_t pkl[512];
    float vals[4] = {1, -2, 3.5f, 4};
    size_t pl = state_dict(pkl, 4, 2, 1), n = make_zip(z, sizeof z, pkl, pl, vals, 16);
    bool done = false;
    for (long k = 0; k < 200 && !done; k++) {
        st_file *f = NULL;
        sim_err err = {0};
        mem_fail_after(k);
        sim_status st = pth_open_memory(&f, z, n, "ok.pth", &err);
        bool failed = mem_fail_triggered();
        mem_fail_after(-1);
        if (st == SIM_OK) st_close(f);
        if (!failed) {
            CHECK_EQ_INT(st, SIM_OK);
            done = true;
        } else {
            CHECK_MSG(st == SIM_ERR_NOMEM && f == NULL, "allocation %ld: %d %s", k, st, err.msg);
        }
    }
    CHECK(done);
}

static void test_taef2(void) {
    char path[1024];
    if (!test_shared_path(path, sizeof path, "diffusion/taef2/taef2_decoder.pth")) return;
    st_file *f;
    sim_err err = {0};
    CHECK_MSG(pth_open(&f, path, &err) == SIM_OK, "%s", err.msg);
    if (!f) return;
    CHECK_EQ_INT(f->n_tensors, 79);
    const st_tensor *t = st_find(f, "1.weight");
    CHECK(t && t->dtype == ST_F16 && t->n_dims == 4 && t->shape[0] == 64 && t->shape[1] == 32);
    CHECK(st_find(f, "3.pool.0.weight") && st_find(f, "19.bias"));
    st_close(f);
}

int main(int argc, char **argv) {
    test_init(argc, argv);
    TEST_RUN(test_pickles);
    TEST_RUN(test_zips);
    TEST_RUN(test_alloc_failures);
    TEST_RUN(test_taef2);
    return test_finish();
}
