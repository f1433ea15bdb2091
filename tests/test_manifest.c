// test_manifest.c — manifest editing (src/story/manifest.h): atomic writes
// (replaced whole, no .tmp left, a failed write leaves the old file), the
// manifest shape check, texts in every locale cut at a UTF-8 boundary,
// assets with the sha256 sha256sum prints, layers with integral numbers
// written as integers, id lookup and the id rule.
#include <jansson.h>
#include <stdlib.h>
#include <sys/stat.h>
#include <unistd.h>

#include "base/file.h"
#include "story/manifest.h"
#include "story/scenario.h"
#include "test.h"

static char g_tmp[256];

static char *slurp(const char *path, size_t *n) {
    char *b = NULL;
    sim_err err;
    if (file_read_all(path, 1 << 20, &b, n, &err) != SIM_OK) return NULL;
    return b;
}

static void test_atomic_write(void) {
    char path[512], tmp[520];
    snprintf(path, sizeof path, "%s/a/b/file.txt", g_tmp);
    snprintf(tmp, sizeof tmp, "%s.tmp", path);
    sim_err err;
    CHECK_MSG(mf_write_file(g_tmp, "a/b/file.txt", "one\n", 4, &err) == SIM_OK, "%s", err.msg);
    CHECK_MSG(mf_write_file(g_tmp, "a/b/file.txt", "two", 3, &err) == SIM_OK, "%s", err.msg);
    size_t n;
    char *b = slurp(path, &n);
    CHECK(b && n == 3 && memcmp(b, "two", 3) == 0);
    mem_free(b);
    CHECK(access(tmp, F_OK) != 0);
    // A folder in the way of the .tmp: the write fails, the old file stays.
    CHECK(mkdir(tmp, 0755) == 0);
    CHECK(mf_write_atomic(path, "three", 5, &err) == SIM_ERR_IO && strstr(err.msg, "file.txt.tmp"));
    b = slurp(path, &n);
    CHECK(b && n == 3 && memcmp(b, "two", 3) == 0);
    mem_free(b);
    rmdir(tmp);
    // A file where a folder must go.
    CHECK(mf_write_file(g_tmp, "a/b/file.txt/x.png", "x", 1, &err) == SIM_ERR_IO && strstr(err.msg, "file.txt/x.png.tmp: Not a directory"));
}

static void test_load_write(void) {
    char path[512];
    snprintf(path, sizeof path, "%s/manifest.json", g_tmp);
    sim_err err;
    const char *src = "{\"version\": 1, \"zeta\": 2, \"locales\": [\"en-US\", \"fr-FR\"], \"characters\": [{\"id\": \"a\"}, {\"id\": \"b\"}]}";
    CHECK(file_write_all(path, src, strlen(src), &err) == SIM_OK);
    json_t *m = mf_load(path, &err);
    CHECK_MSG(m != NULL, "%s", err.msg);
    if (!m) return;
    json_t *chars = json_object_get(m, "characters");
    CHECK(mf_find(chars, "b") == json_array_get(chars, 1));
    CHECK(mf_find(chars, "c") == NULL);
    bool cut = true;
    json_t *t = mf_text(json_object_get(m, "locales"), "Hi", &cut);
    CHECK(!cut && t && json_object_size(t) == 2 && strcmp(json_string_value(json_object_get(t, "fr-FR")), "Hi") == 0);
    json_object_set_new(m, "name", t);
    json_t *l = mf_layer("s/x.png", "abc", 3, 0, 0.25, 1);
    json_object_set_new(m, "layer", l);
    CHECK_MSG(mf_write(m, path, &err) == SIM_OK, "%s", err.msg);
    json_decref(m);
    size_t n;
    char *b = slurp(path, &n);
    // Key order kept, integral numbers as integers, the sha256 of "abc", a final newline.
    const char *want =
        "{\n  \"version\": 1,\n  \"zeta\": 2,\n  \"locales\": [\n    \"en-US\",\n    \"fr-FR\"\n  ],\n"
        "  \"characters\": [\n    {\n      \"id\": \"a\"\n    },\n    {\n      \"id\": \"b\"\n    }\n  ],\n"
        "  \"name\": {\n    \"en-US\": \"Hi\",\n    \"fr-FR\": \"Hi\"\n  },\n"
        "  \"layer\": {\n    \"path\": \"s/x.png\",\n"
        "    \"sha256\": \"ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad\",\n"
        "    \"x\": 0,\n    \"y\": 0.25,\n    \"scale\": 1\n  }\n}\n";
    CHECK_STR(b, want);
    mem_free(b);

    // Not JSON (line and column), not a manifest.
    CHECK(file_write_all(path, "{\n  \"a\": }", 10, &err) == SIM_OK);
    CHECK(mf_load(path, &err) == NULL && err.code == SIM_ERR_FORMAT && strstr(err.msg, "line 2"));
    CHECK(file_write_all(path, "{\"locales\": [], \"characters\": []}", 33, &err) == SIM_OK);
    CHECK(mf_load(path, &err) == NULL && err.code == SIM_ERR_FORMAT && strstr(err.msg, "not a scenario manifest"));
    snprintf(path, sizeof path, "%s/none/manifest.json", g_tmp);
    CHECK(mf_load(path, &err) == NULL && err.code == SIM_ERR_IO && strstr(err.msg, "none/manifest.json"));
}

static void test_text_cut(void) {
    // A 2-byte character straddling the limit is dropped whole.
    size_t n = SCN_MAX_STRING + 1;
    char *s = malloc(n + 1);
    memset(s, 'a', n);
    s[SCN_MAX_STRING - 1] = (char)0xC3, s[SCN_MAX_STRING] = (char)0xA9, s[n] = 0;
    json_t *loc = json_pack("[s]", "en-US");
    bool cut = false;
    json_t *t = mf_text(loc, s, &cut);
    CHECK(cut && t && json_string_length(json_object_get(t, "en-US")) == SCN_MAX_STRING - 1);
    json_decref(t);
    json_decref(loc);
    free(s);
}

static void test_ids(void) {
    CHECK(mf_id_ok("a") && mf_id_ok("mira-2_x") && !mf_id_ok("") && !mf_id_ok("2a") && !mf_id_ok("Mira") && !mf_id_ok("a.b"));
    char long_id[66];
    memset(long_id, 'a', 65), long_id[65] = 0;
    CHECK(!mf_id_ok(long_id));
    long_id[64] = 0;
    CHECK(mf_id_ok(long_id));
    uint32_t c = mf_color("Mira Vale");
    for (int sh = 0; sh < 24; sh += 8) CHECK(((c >> sh) & 0xff) >= 0x40 && ((c >> sh) & 0xff) <= 0xbf);
}

int main(int argc, char **argv) {
    test_init(argc, argv);
    snprintf(g_tmp, sizeof g_tmp, "/tmp/sim_test_manifest_%d", (int)getpid());
    mkdir(g_tmp, 0755);
    TEST_RUN(test_atomic_write);
    TEST_RUN(test_load_write);
    TEST_RUN(test_text_cut);
    TEST_RUN(test_ids);
    char cmd[300];
    snprintf(cmd, sizeof cmd, "rm -rf %s", g_tmp);
    if (system(cmd) != 0) fprintf(stderr, "could not remove %s\n", g_tmp);
    return test_finish();
}
