// test_pack.c — scenario packs as folders and zips (src/story/pack.h): the
// zips are written here with libzip (and some patched byte by byte to lie),
// and every hostile one must be refused with a message naming the entry.
#include <fcntl.h>
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>
#include <zip.h>

#include "base/file.h"
#include "base/sha256.h"
#include "story/pack.h"
#include "story/scenario.h"
#include "test.h"

static char g_tmp[256];

// --- writing zips --------------------------------------------------------------------------------

enum { Z_FILE, Z_DIR, Z_LINK, Z_CRYPT, Z_STORE };

typedef struct zent {
    const char *name;
    const void *data;
    size_t len;
    int kind;
} zent;

// Writes a zip of ents[0..n) to g_tmp/name; returns its path (static buffer).
static const char *make_zip(const char *name, const zent *ents, int n) {
    static char path[512];
    snprintf(path, sizeof path, "%s/%s", g_tmp, name);
    int zerr;
    zip_t *za = zip_open(path, ZIP_CREATE | ZIP_TRUNCATE, &zerr);
    CHECK(za != NULL);
    if (!za) return path;
    for (int i = 0; i < n; i++) {
        const zent *e = &ents[i];
        if (e->kind == Z_DIR) {
            CHECK(zip_dir_add(za, e->name, ZIP_FL_ENC_UTF_8) >= 0);
            continue;
        }
        zip_source_t *src = zip_source_buffer(za, e->data, e->len, 0);
        zip_int64_t idx = zip_file_add(za, e->name, src, ZIP_FL_ENC_UTF_8);
        CHECK_MSG(idx >= 0, "%s: %s", e->name, zip_strerror(za));
        if (idx < 0) continue;
        zip_set_file_compression(za, (zip_uint64_t)idx, e->kind == Z_STORE ? ZIP_CM_STORE : ZIP_CM_DEFLATE, 9);
        if (e->kind == Z_LINK) zip_file_set_external_attributes(za, (zip_uint64_t)idx, 0, ZIP_OPSYS_UNIX, (zip_uint32_t)(S_IFLNK | 0777) << 16);
        if (e->kind == Z_CRYPT) CHECK(zip_file_set_encryption(za, (zip_uint64_t)idx, ZIP_EM_AES_256, "secret") == 0);
    }
    CHECK_MSG(zip_close(za) == 0, "%s", zip_strerror(za));
    return path;
}

static uint8_t *slurp(const char *path, size_t *n) {
    char *d;
    sim_err err;
    if (file_read_all(path, 1 << 26, &d, n, &err) != SIM_OK) return NULL;
    return (uint8_t *)d;
}

static void put32(uint8_t *p, uint32_t v) {
    p[0] = (uint8_t)v; p[1] = (uint8_t)(v >> 8); p[2] = (uint8_t)(v >> 16); p[3] = (uint8_t)(v >> 24);
}

// Sets the declared uncompressed size of entry `name` in its local header
// and its central directory record (so ZIP_CHECKCONS sees them agree).
static void patch_size(const char *path, const char *name, uint32_t size) {
    size_t n, nl = strlen(name);
    uint8_t *d = slurp(path, &n);
    CHECK(d != NULL);
    if (!d) return;
    int hits = 0;
    for (size_t i = 0; i + 46 + nl <= n; i++) {
        if (memcmp(d + i, "PK\3\4", 4) == 0 && d[i + 26] == nl && memcmp(d + i + 30, name, nl) == 0) put32(d + i + 22, size), hits++;
        if (memcmp(d + i, "PK\1\2", 4) == 0 && d[i + 28] == nl && memcmp(d + i + 46, name, nl) == 0) put32(d + i + 24, size), hits++;
    }
    CHECK_EQ_INT(hits, 2);
    sim_err err;
    CHECK(file_write_all(path, d, n, &err) == SIM_OK);
    mem_free(d);
}

// Replaces every occurrence of `from` by `to` (same length) in the file.
static void patch_bytes(const char *path, const char *from, const char *to) {
    size_t n, k = strlen(from);
    uint8_t *d = slurp(path, &n);
    CHECK(d != NULL && strlen(to) == k);
    if (!d) return;
    for (size_t i = 0; i + k <= n; i++)
        if (memcmp(d + i, from, k) == 0) memcpy(d + i, to, k);
    sim_err err;
    CHECK(file_write_all(path, d, n, &err) == SIM_OK);
    mem_free(d);
}

// pack_open must fail with a message containing want.
static void refused(const char *path, const char *want) {
    pack *p;
    sim_err err = {0};
    sim_status rc = pack_open(&p, path, &err);
    CHECK_MSG(rc != SIM_OK && p == NULL && strstr(err.msg, want), "want '%s', got %d '%s'", want, rc, err.msg);
    if (rc == SIM_OK) pack_close(p);
}

#define F(name, text) {name, text, sizeof text - 1, Z_FILE}

// --- the tests -------------------------------------------------------------------------------------

static void test_zip_read(void) {
    static const zent ents[] = {F("manifest.json", "{\"a\": 1}"), {"img", NULL, 0, Z_DIR}, F("img/x.png", "pixels"),
                                {"s.txt", "stored text", 11, Z_STORE}};
    const char *path = make_zip("ok.zip", ents, 4);
    pack *p;
    sim_err err;
    CHECK_MSG(pack_open(&p, path, &err) == SIM_OK, "%s", err.msg);
    if (!p) return;
    CHECK(pack_is_zip(p));
    CHECK_STR(pack_prefix(p), "");
    char *t;
    size_t n;
    CHECK(pack_read(p, "manifest.json", 100, &t, &n, NULL, &err) == SIM_OK && n == 8 && strcmp(t, "{\"a\": 1}") == 0);
    mem_free(t);
    CHECK(pack_read(p, "s.txt", 100, &t, &n, NULL, &err) == SIM_OK && n == 11 && strcmp(t, "stored text") == 0);
    mem_free(t);
    uint64_t sz;
    CHECK(pack_stat(p, "img/x.png", &sz, NULL, &err) == SIM_OK && sz == 6);
    const char *hint = NULL;
    CHECK(pack_read(p, "img/x.png", 5, &t, &n, &hint, &err) == SIM_ERR_RANGE && strstr(err.msg, "more than the 5-byte limit"));
    CHECK(hint != NULL);
    CHECK(pack_stat(p, "img/X.png", &sz, NULL, &err) == SIM_ERR_IO && strstr(err.msg, "does not exist"));
    CHECK(pack_stat(p, "img", &sz, NULL, &err) != SIM_OK && strstr(err.msg, "not a regular file"));
    CHECK(pack_stat(p, "../x", &sz, NULL, &err) != SIM_OK && strstr(err.msg, "leaves the folder"));
    CHECK(pack_exists(p, "img/x.png") && !pack_exists(p, "nope"));
    pack_close(p);
}

static void test_zip_top_folder(void) {
    static const zent ents[] = {F("pier/manifest.json", "{}"), F("pier/bg/a.jpg", "jpg"), F("__MACOSX/pier/._a.jpg", "junk")};
    const char *path = make_zip("top.zip", ents, 3);
    pack *p;
    sim_err err;
    CHECK_MSG(pack_open(&p, path, &err) == SIM_OK, "%s", err.msg);
    if (!p) return;
    CHECK_STR(pack_prefix(p), "pier/");
    char *t;
    size_t n;
    CHECK(pack_read(p, "manifest.json", 100, &t, &n, NULL, &err) == SIM_OK && strcmp(t, "{}") == 0);
    mem_free(t);
    CHECK(pack_read(p, "bg/a.jpg", 100, &t, &n, NULL, &err) == SIM_OK && strcmp(t, "jpg") == 0);
    mem_free(t);
    CHECK(pack_stat(p, "nope.png", &(uint64_t){0}, NULL, &err) == SIM_ERR_IO && strstr(err.msg, "no entry 'pier/nope.png'"));
    pack_close(p);
    // Two top-level folders: neither is the root.
    static const zent two[] = {F("a/manifest.json", "{}"), F("b/x", "x")};
    CHECK(pack_open(&p, make_zip("two.zip", two, 2), &err) == SIM_OK);
    if (p) CHECK_STR(pack_prefix(p), "");
    pack_close(p);
}

static void test_zip_hostile_names(void) {
    static const struct { const char *name, *want; } cases[] = {
        {"../x", "entry '../x': the path leaves the folder with '..'"},
        {"a/../../x", "entry 'a/../../x': the path leaves the folder"},
        {"/abs", "entry '/abs': the path is absolute"},
        {"a\\b", "entry 'a\\b': the path contains a backslash"},
        {"C:/win", "entry 'C:/win': the path starts with a drive letter"},
        {"a/./b", "entry 'a/./b': the path has a '.' component"},
        {"a//b", "entry 'a//b': the path has an empty component"},
    };
    for (size_t i = 0; i < ARRAY_LEN(cases); i++) {
        zent ents[] = {F("manifest.json", "{}"), {cases[i].name, "x", 1, Z_FILE}};
        refused(make_zip("bad.zip", ents, 2), cases[i].want);
    }
    // libzip will not write a control character: patch one in.
    zent bell[] = {F("manifest.json", "{}"), F("bellX.png", "x")};
    const char *path = make_zip("bell.zip", bell, 2);
    patch_bytes(path, "bellX.png", "bell\a.png");
    refused(path, "entry 'bell?.png': the name contains a control character");
}

static void test_zip_hostile_entries(void) {
    zent link[] = {F("manifest.json", "{}"), {"bg.png", "/etc/passwd", 11, Z_LINK}};
    refused(make_zip("link.zip", link, 2), "entry 'bg.png' is a symbolic link");

    zent dup[] = {F("manifest.json", "{}"), F("dup1.png", "a"), F("dup2.png", "b")};
    const char *path = make_zip("dup.zip", dup, 3);
    patch_bytes(path, "dup2.png", "dup1.png");
    refused(path, "entry 'dup1.png' is a duplicate of 'dup1.png'");
    zent cased[] = {F("manifest.json", "{}"), F("Bg.png", "a"), F("bg.png", "b")};
    refused(make_zip("case.zip", cased, 3), "(names may not differ only in case)");
    zent filedir[] = {F("manifest.json", "{}"), F("a", "file"), F("a/b", "inside")};
    refused(make_zip("filedir.zip", filedir, 3), "entry 'a/b' is inside 'a', which is a file");

    // Declared size over the per-file limit (the headers patched to claim 512 MiB).
    zent big[] = {F("manifest.json", "{}"), F("big.bin", "small")};
    path = make_zip("big.zip", big, 2);
    patch_size(path, "big.bin", 512u << 20);
    refused(path, "entry 'big.bin' declares 536870912 bytes, more than the 268435456-byte limit");

    // A ratio bomb: 4 MiB of zeros deflate to a few KiB.
    size_t zn = (size_t)4 << 20;
    char *zeros = calloc(1, zn);
    zent bomb[] = {F("manifest.json", "{}"), {"zeros.bin", zeros, zn, Z_FILE}};
    refused(make_zip("bomb.zip", bomb, 2), "entry 'zeros.bin' unpacks 4194304 bytes from");
    free(zeros);

    zent crypt[] = {F("manifest.json", "{}"), {"secret.txt", "hidden", 6, Z_CRYPT}};
    refused(make_zip("crypt.zip", crypt, 2), "entry 'secret.txt' is encrypted");
}

// The declared size is a lie: 64 KiB of data declared as 10 bytes.
static void test_zip_lie(void) {
    size_t n = 65536;
    char *data = malloc(n);
    for (size_t i = 0; i < n; i++) data[i] = (char)('a' + i % 7);
    zent ents[] = {F("manifest.json", "{}"), {"lie.txt", data, n, Z_FILE}};
    const char *path = make_zip("lie.zip", ents, 2);
    patch_size(path, "lie.txt", 10);
    pack *p;
    sim_err err;
    CHECK_MSG(pack_open(&p, path, &err) == SIM_OK, "%s", err.msg);
    if (p) {
        char *t = NULL;
        size_t len;
        CHECK(pack_read(p, "lie.txt", 1 << 20, &t, &len, NULL, &err) != SIM_OK && t == NULL);
        CHECK_MSG(strstr(err.msg, "lie.txt") != NULL, "%s", err.msg);
        // Streaming never hands out more than the declared bytes.
        pack_file *f;
        uint64_t sz;
        CHECK(pack_file_open(p, "lie.txt", 1 << 20, &f, &sz, NULL, &err) == SIM_OK && sz == 10);
        if (f) {
            char buf[4096];
            size_t got, total = 0;
            sim_status rc;
            while ((rc = pack_file_read(f, buf, sizeof buf, &got, NULL, &err)) == SIM_OK && got) total += got;
            CHECK(rc != SIM_OK && total <= 10);
            CHECK_MSG(strstr(err.msg, "zip entry 'lie.txt'"), "%s", err.msg);
            pack_file_close(f);
        }
        pack_close(p);
    }
    free(data);
}

static void test_zip_too_many(void) {
    int n = PACK_MAX_ENTRIES + 1;
    zent *ents = calloc((size_t)n, sizeof *ents);
    char(*names)[16] = calloc((size_t)n, 16);
    for (int i = 0; i < n; i++) {
        snprintf(names[i], 16, "f%d", i);
        ents[i] = (zent){names[i], "", 0, Z_STORE};
    }
    refused(make_zip("many.zip", ents, n), "20001 entries, more than the limit of 20000");
    free(ents);
    free(names);
}

static void test_corrupt(void) {
    char path[512];
    snprintf(path, sizeof path, "%s/corrupt.zip", g_tmp);
    sim_err err;
    CHECK(file_write_all(path, "PK\3\4 this is not a zip at all", 30, &err) == SIM_OK);
    refused(path, "is not a folder or a readable zip file");
    // A real zip cut in half.
    zent ents[] = {F("manifest.json", "{\"some\": \"text to make it longer\"}"), F("b.txt", "bbbbbbbbbbbbbbbbbbbbbbbbbbbbbbb")};
    const char *z = make_zip("cut.zip", ents, 2);
    size_t n;
    uint8_t *d = slurp(z, &n);
    CHECK(d && file_write_all(z, d, n / 2, &err) == SIM_OK);
    mem_free(d);
    refused(z, "is not a folder or a readable zip file");
    snprintf(path, sizeof path, "%s/none.zip", g_tmp);
    refused(path, "is not a folder or a zip file");
    refused("/dev/null", "is not a folder or a zip file");
}

// Folder mode: the path rules, symlinks out, FIFOs, and the size limit.
static void test_folder(void) {
    char dir[512], path[700], out[700];
    snprintf(dir, sizeof dir, "%s/folder", g_tmp);
    mkdir(dir, 0755);
    sim_err err;
    snprintf(path, sizeof path, "%s/a.txt", dir);
    CHECK(file_write_all(path, "hello", 5, &err) == SIM_OK);
    snprintf(out, sizeof out, "%s/outside.txt", g_tmp);
    CHECK(file_write_all(out, "secret", 6, &err) == SIM_OK);
    snprintf(path, sizeof path, "%s/link.txt", dir);
    CHECK(symlink(out, path) == 0);
    snprintf(path, sizeof path, "%s/fifo", dir);
    CHECK(mkfifo(path, 0644) == 0);
    pack *p;
    CHECK_MSG(pack_open(&p, dir, &err) == SIM_OK, "%s", err.msg);
    if (!p) return;
    CHECK(!pack_is_zip(p));
    char *t;
    size_t n;
    CHECK(pack_read(p, "a.txt", 5, &t, &n, NULL, &err) == SIM_OK && n == 5 && strcmp(t, "hello") == 0);
    mem_free(t);
    CHECK(pack_read(p, "a.txt", 4, &t, &n, NULL, &err) == SIM_ERR_RANGE);
    CHECK(pack_read(p, "link.txt", 100, &t, &n, NULL, &err) == SIM_ERR_FORMAT && strstr(err.msg, "resolves outside"));
    CHECK(pack_read(p, "fifo", 100, &t, &n, NULL, &err) == SIM_ERR_FORMAT && strstr(err.msg, "not a regular file"));
    CHECK(pack_read(p, "../outside.txt", 100, &t, &n, NULL, &err) == SIM_ERR_FORMAT && strstr(err.msg, "leaves the folder"));
    CHECK(pack_read(p, "nope", 100, &t, &n, NULL, &err) == SIM_ERR_IO && strstr(err.msg, "does not exist"));
    CHECK(pack_exists(p, "link.txt") && !pack_exists(p, "nope"));
    pack_close(p);
}

// --- scn_load on zips ---------------------------------------------------------------------------------

// A small valid scenario: its files (path, content), manifest.json last (built with their digests).
static const char *const g_files[][2] = {
    {"sprites/mira/body.png", "body pixels\n"},
    {"sprites/mira/neutral.png", "face pixels\n"},
    {"bg/pier.jpg", "pier pixels\n"},
};
static char g_manifest[4096];

static void hex(const char *s, char out[SHA256_HEX_SIZE]) {
    uint8_t d[SHA256_SIZE];
    sha256(s, strlen(s), d);
    sha256_hex(d, out);
}

static void build_manifest(void) {
    char h[3][SHA256_HEX_SIZE];
    for (int i = 0; i < 3; i++) hex(g_files[i][1], h[i]);
    snprintf(g_manifest, sizeof g_manifest,
             "{\"version\": 1, \"id\": \"pier\", \"scenarioVersion\": \"1.0\", \"name\": {\"en-US\": \"The Pier\"},"
             " \"teaser\": {\"en-US\": \"Rain.\"}, \"about\": {\"en-US\": \"A story.\"}, \"locales\": [\"en-US\"],"
             " \"content\": {\"nsfw\": false}, \"recommendedContextSize\": 4096, \"globalScenario\": {\"en-US\": \"A harbour.\"},"
             " \"player\": {\"name\": {\"en-US\": \"You\"}, \"about\": {\"en-US\": \"A traveller.\"}},"
             " \"characters\": [{\"id\": \"mira\", \"name\": {\"en-US\": \"Mira\"}, \"color\": \"#3a7bd5\","
             "  \"about\": {\"en-US\": \"a\"}, \"personality\": {\"en-US\": \"p\"}, \"appearance\": {\"en-US\": \"ap\"},"
             "  \"bodies\": [{\"id\": \"standing\", \"image\": {\"path\": \"%s\", \"sha256\": \"%s\"}}],"
             "  \"outfits\": [{\"id\": \"coat\", \"name\": {\"en-US\": \"Coat\"}, \"layers\": {\"standing\": {\"path\": \"%s\", \"sha256\": \"%s\"}}}],"
             "  \"expressions\": [{\"id\": \"neutral\", \"name\": {\"en-US\": \"Neutral\"}, \"layers\": {\"standing\": {\"path\": \"%s\", \"sha256\": \"%s\"}}}]}],"
             " \"scenes\": [{\"id\": \"pier\", \"name\": {\"en-US\": \"The pier\"}, \"prompt\": {\"en-US\": \"Rain.\"},"
             "  \"background\": {\"path\": \"%s\", \"sha256\": \"%s\"}}],"
             " \"episodes\": [{\"id\": \"e1\", \"name\": {\"en-US\": \"E1\"}, \"start\": {\"scene\": \"pier\", \"characters\":"
             "  [{\"character\": \"mira\", \"outfit\": \"coat\", \"expression\": \"neutral\"}]},"
             "  \"openingLines\": [{\"speaker\": \"mira\", \"text\": {\"en-US\": \"Hi.\"}}], \"allowedSpeakers\": [\"mira\"]}]}",
             g_files[0][0], h[0], g_files[1][0], h[1], g_files[1][0], h[1], g_files[2][0], h[2]);
}

// Writes the scenario as a folder under g_tmp/name.
static void write_folder(const char *name) {
    char path[700];
    sim_err err;
    for (int i = 0; i < 4; i++) {
        const char *rel = i < 3 ? g_files[i][0] : "manifest.json", *data = i < 3 ? g_files[i][1] : g_manifest;
        snprintf(path, sizeof path, "%s/%s/%s", g_tmp, name, rel);
        for (char *q = path + strlen(g_tmp) + 1; *q; q++)
            if (*q == '/') {
                *q = 0;
                mkdir(path, 0755);
                *q = '/';
            }
        CHECK(file_write_all(path, data, strlen(data), &err) == SIM_OK);
    }
}

// Writes the scenario as a zip, every name after `top` ("" or "pier/"); the
// file `swap` (if any) gets `with` as its content.
static const char *write_scn_zip(const char *name, const char *top, const char *swap, const char *with) {
    static char names[4][200];
    zent ents[4];
    for (int i = 0; i < 4; i++) {
        const char *rel = i < 3 ? g_files[i][0] : "manifest.json", *data = i < 3 ? g_files[i][1] : g_manifest;
        if (swap && strcmp(rel, swap) == 0) data = with;
        snprintf(names[i], sizeof names[i], "%s%s", top, rel);
        ents[i] = (zent){names[i], data, strlen(data), Z_FILE};
    }
    return make_zip(name, ents, 4);
}

static scn_scenario *load_ok(const char *path) {
    scn_report rep;
    scn_report_init(&rep);
    scn_scenario *s = NULL;
    sim_err err;
    sim_status rc = scn_load(&s, path, &rep, &err);
    CHECK_MSG(rc == SIM_OK, "%s: %s (%s)", path, err.msg, rep.n ? rep.items[0].msg : "");
    scn_report_free(&rep);
    return s;
}

// scn_load must fail on path with a problem whose message has want.
static void load_refused(const char *path, const char *at, const char *want) {
    scn_report rep;
    scn_report_init(&rep);
    scn_scenario *s = NULL;
    sim_err err;
    CHECK(scn_load(&s, path, &rep, &err) != SIM_OK && s == NULL);
    bool found = false;
    for (int i = 0; i < rep.n; i++) found |= strcmp(rep.items[i].path, at) == 0 && strstr(rep.items[i].msg, want) != NULL;
    CHECK_MSG(found, "want '%s: %s', got %d problems, first '%s: %s'", at, want, rep.n, rep.n ? rep.items[0].path : "",
              rep.n ? rep.items[0].msg : "");
    scn_report_free(&rep);
}

static void same_scenario(const scn_scenario *a, const scn_scenario *b) {
    if (!a || !b) return;
    CHECK_STR(a->id, b->id);
    CHECK_EQ_INT(a->n_assets, b->n_assets);
    CHECK_EQ_INT(a->asset_bytes, b->asset_bytes);
    CHECK_EQ_INT(a->n_characters, b->n_characters);
    CHECK_STR(scn_text(a, &a->characters[0].name, "en-US"), scn_text(b, &b->characters[0].name, "en-US"));
    CHECK_STR(a->characters[0].bodies[0].image.sha256, b->characters[0].bodies[0].image.sha256);
    CHECK_STR(a->scenes[0].background.path, b->scenes[0].background.path);
    CHECK_EQ_INT(a->scenes[0].background.size, b->scenes[0].background.size);
}

static void test_scn_zip(void) {
    build_manifest();
    write_folder("pierdir");
    char dir[600];
    snprintf(dir, sizeof dir, "%s/pierdir", g_tmp);
    scn_scenario *f = load_ok(dir);
    CHECK(f && f->n_assets == 3);
    scn_scenario *z = load_ok(write_scn_zip("pier.zip", "", NULL, NULL));
    same_scenario(f, z);
    scn_free(z);
    z = load_ok(write_scn_zip("pier-top.zip", "pier/", NULL, NULL));
    same_scenario(f, z);
    scn_free(z);
    scn_free(f);

    // An asset problem in a zip names the entry.
    load_refused(write_scn_zip("tampered.zip", "pier/", "bg/pier.jpg", "other pixels\n"), "scenes[0].background.sha256",
                 "does not match the file 'bg/pier.jpg'");
    char m2[sizeof g_manifest];
    snprintf(m2, sizeof m2, "%s", g_manifest);
    char *at = strstr(g_manifest, "bg/pier.jpg");
    memcpy(at, "bg/peir.jpg", 11);
    load_refused(write_scn_zip("missing.zip", "pier/", NULL, NULL), "scenes[0].background.path", "no entry 'pier/bg/peir.jpg'");
    snprintf(g_manifest, sizeof g_manifest, "%s", m2);
    // A hostile zip is refused whole, naming the entry; a zip without a manifest says so.
    zent bad[] = {F("manifest.json", "{}"), F("../evil", "x")};
    load_refused(make_zip("evil.zip", bad, 2), "", "entry '../evil': the path leaves the folder");
    zent none[] = {F("readme.txt", "x"), F("other.txt", "y")};
    load_refused(make_zip("none.zip", none, 2), "", "there is no manifest.json file");
}

// Every allocation failure is reported as SIM_ERR_NOMEM and leaks nothing.
static void test_alloc_failures(void) {
    static const zent ents[] = {F("pier/manifest.json", "{\"a\": 1}"), F("pier/img/x.png", "pixels")};
    const char *path = make_zip("alloc.zip", ents, 2);
    int done = 0;
    for (long k = 0; k < 200 && !done; k++) {
        mem_fail_after(k);
        pack *p;
        sim_err err;
        sim_status rc = pack_open(&p, path, &err);
        char *t = NULL;
        size_t n;
        if (rc == SIM_OK) {
            rc = pack_read(p, "img/x.png", 100, &t, &n, NULL, &err);
            pack_close(p);
        }
        bool failed = mem_fail_triggered();
        mem_fail_after(-1);
        mem_free(t);
        if (!failed) done = 1;
        else CHECK_MSG(rc == SIM_ERR_NOMEM, "allocation %ld: %d %s", k, rc, err.msg);
    }
    CHECK(done);
}

int main(int argc, char **argv) {
    test_init(argc, argv);
    snprintf(g_tmp, sizeof g_tmp, "/tmp/sim_test_pack_XXXXXX");
    if (!mkdtemp(g_tmp)) {
        perror("mkdtemp");
        return 1;
    }
    TEST_RUN(test_zip_read);
    TEST_RUN(test_zip_top_folder);
    TEST_RUN(test_zip_hostile_names);
    TEST_RUN(test_zip_hostile_entries);
    TEST_RUN(test_zip_lie);
    TEST_RUN(test_zip_too_many);
    TEST_RUN(test_corrupt);
    TEST_RUN(test_folder);
    TEST_RUN(test_scn_zip);
    TEST_RUN(test_alloc_failures);
    char cmd[300];
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", g_tmp);
    if (system(cmd) != 0) fprintf(stderr, "could not remove %s\n", g_tmp);
    return test_finish();
}
