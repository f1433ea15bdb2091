// test_scenario.c — SHA-256 against FIPS 180-4 vectors (and sha256sum), and
// scenario packs: a valid fixture loads with every field; each kind of
// problem is reported at its JSON path; a manifest with several problems
// reports them all; allocation failures are clean.
#include <jansson.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "base/file.h"
#include "base/sha256.h"
#include "story/scenario.h"
#include "test.h"

// --- SHA-256 -------------------------------------------------------------------------------------

static void hex_of(const void *d, size_t n, char out[SHA256_HEX_SIZE]) {
    uint8_t dig[SHA256_SIZE];
    sha256(d, n, dig);
    sha256_hex(dig, out);
}

static void test_sha256_vectors(void) {
    char h[SHA256_HEX_SIZE];
    // FIPS 180-4 examples (csrc.nist.gov "SHA256.pdf", "SHA2_Additional.pdf").
    hex_of("abc", 3, h);
    CHECK_STR(h, "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad");
    hex_of("", 0, h);
    CHECK_STR(h, "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855");
    const char *m448 = "abcdbcdecdefdefgefghfghighijhijkijkljklmklmnlmnomnopnopq";
    hex_of(m448, strlen(m448), h);
    CHECK_STR(h, "248d6a61d20638b8e5c026930c3e6039a33ce45964ff2167f6ecedd419db06c1");
    // One million 'a', fed in uneven pieces so partial blocks are exercised.
    sha256_ctx c;
    sha256_init(&c);
    char a[1000];
    memset(a, 'a', sizeof a);
    size_t left = 1000000, step = 1;
    while (left) {
        size_t k = MIN(step, MIN(left, sizeof a));
        sha256_update(&c, a, k);
        left -= k;
        step = step % 997 + 13;
    }
    uint8_t d[SHA256_SIZE];
    sha256_final(&c, d);
    sha256_hex(d, h);
    CHECK_STR(h, "cdc76e5c9914fb9281a1c7e284d73e67f1809a48a497200e046d39ccc7112cd0");
    // Every length around the block and padding boundaries agrees between
    // one-shot and byte-by-byte hashing.
    uint8_t buf[200];
    for (int i = 0; i < 200; i++) buf[i] = (uint8_t)(i * 7 + 1);
    for (size_t n = 0; n <= 200; n++) {
        char h1[SHA256_HEX_SIZE], h2[SHA256_HEX_SIZE];
        hex_of(buf, n, h1);
        sha256_init(&c);
        for (size_t i = 0; i < n; i++) sha256_update(&c, buf + i, 1);
        sha256_final(&c, d);
        sha256_hex(d, h2);
        CHECK_MSG(strcmp(h1, h2) == 0, "length %zu", n);
    }
}

static char g_tmp[256]; // the test's temporary folder

// sha256sum (coreutils) as an independent reference, once.
static void test_sha256_vs_sha256sum(void) {
    char path[512], cmd[700], line[256];
    snprintf(path, sizeof path, "%s/sumcheck.bin", g_tmp);
    uint8_t data[3000];
    for (int i = 0; i < 3000; i++) data[i] = (uint8_t)((i * 131) ^ (i >> 3));
    sim_err err;
    CHECK(file_write_all(path, data, sizeof data, &err) == SIM_OK);
    snprintf(cmd, sizeof cmd, "sha256sum '%s' 2>/dev/null", path);
    FILE *p = popen(cmd, "r");
    if (!p) {
        test_skip("cannot run sha256sum");
        return;
    }
    bool got = fgets(line, sizeof line, p) != NULL;
    int rc = pclose(p);
    if (!got || rc != 0) {
        test_skip("sha256sum is not installed");
        return;
    }
    line[64] = 0;
    char h[SHA256_HEX_SIZE];
    hex_of(data, sizeof data, h);
    CHECK_STR(h, line);
}

// --- fixtures ----------------------------------------------------------------------------------------

static char g_pack[300]; // the fixture scenario folder

static void write_file(const char *rel, const char *content) {
    char path[700];
    snprintf(path, sizeof path, "%s/%s", g_pack, rel);
    // Create the parent folders.
    for (char *s = path + strlen(g_pack) + 1; *s; s++)
        if (*s == '/') {
            *s = 0;
            mkdir(path, 0755);
            *s = '/';
        }
    sim_err err;
    CHECK(file_write_all(path, content, strlen(content), &err) == SIM_OK);
}

static json_t *T(const char *en) { return json_pack("{s:s, s:s+}", "en-US", en, "ru-RU", "ru: ", en); }

static json_t *asset(const char *rel, const char *content) {
    write_file(rel, content);
    char h[SHA256_HEX_SIZE];
    hex_of(content, strlen(content), h);
    return json_pack("{s:s, s:s}", "path", rel, "sha256", h);
}

static json_t *layer(const char *rel, const char *content, double x, double y, double scale) {
    json_t *a = asset(rel, content);
    json_object_set_new(a, "x", json_real(x));
    json_object_set_new(a, "y", json_real(y));
    json_object_set_new(a, "scale", json_real(scale));
    return a;
}

// The valid fixture's manifest (the assets are written as a side effect).
static json_t *valid_manifest(void) {
    json_t *alice = json_pack(
        "{s:s, s:o, s:s, s:o, s:o, s:o, s:[{s:s, s:o}], s:[{s:s, s:o}],"
        " s:[{s:s, s:o, s:o, s:{s:o}}],"
        " s:[{s:s, s:o, s:{s:o}}, {s:s, s:o, s:{s:o}}]}",
        "id", "alice", "name", T("Alice"), "color", "#e0457b", "about", T("A lighthouse keeper."),
        "personality", T("Curious, stubborn."), "appearance", T("Red hair, green coat."),
        "relationships", "to", "bob", "text", T("Her old friend."),
        "bodies", "id", "body", "image", asset("sprites/alice/body.png", "alice body"),
        "outfits", "id", "coat", "name", T("Green coat"), "description", T("A long green coat."),
        "layers", "body", layer("sprites/alice/coat.png", "alice coat", 0.1, 0.25, 1.0),
        "expressions", "id", "neutral", "name", T("Neutral"), "layers", "body",
        layer("sprites/alice/neutral.png", "alice neutral", 0.4, 0.05, 0.5), "id", "happy", "name", T("Happy"),
        "layers", "body", layer("sprites/alice/happy.png", "alice happy", 0.4, 0.05, 0.5));
    json_t *bob = json_pack(
        "{s:s, s:o, s:s, s:o, s:o, s:o, s:[{s:s, s:o}, {s:s, s:o}],"
        " s:[{s:s, s:o, s:{s:o, s:o}}], s:[{s:s, s:o, s:{s:o, s:o}}]}",
        "id", "bob", "name", T("Bob"), "color", "#3366FF", "about", T("A fisherman."), "personality", T("Calm."),
        "appearance", T("Tall, grey beard."), "bodies", "id", "standing", "image",
        asset("sprites/bob/standing.png", "bob standing"), "id", "sitting", "image",
        asset("sprites/bob/sitting.png", "bob sitting"), "outfits", "id", "oilskin", "name", T("Oilskin"), "layers",
        "standing", layer("sprites/bob/oil_standing.png", "bob oil standing", 0, 0.3, 1), "sitting",
        layer("sprites/bob/oil_sitting.png", "bob oil sitting", 0, 0.5, 1), "expressions", "id", "neutral", "name",
        T("Neutral"), "layers", "standing", layer("sprites/bob/neutral.png", "bob face", 0.3, 0, 1), "sitting",
        layer("sprites/bob/neutral.png", "bob face", 0.3, 0.2, 1));
    json_t *scenes = json_pack(
        "[{s:s, s:o, s:o, s:s, s:o, s:[o]}, {s:s, s:o, s:o, s:o}]",
        "id", "beach", "name", T("The beach"), "prompt", T("A grey pebble beach below the lighthouse."),
        "location", "island", "background", asset("bg/beach.png", "beach bg"), "ambience",
        asset("sounds/waves.ogg", "waves"), "id", "lamp-room", "name", T("The lamp room"), "prompt",
        T("The top of the lighthouse."), "background", asset("bg/lamp.png", "lamp bg"));
    json_t *episodes = json_pack(
        "[{s:s, s:o, s:{s:s, s:[{s:s, s:s, s:s}, {s:s, s:s, s:s, s:s}]},"
        " s:[{s:s, s:o}, {s:s, s:o}], s:[s, s]}]",
        "id", "arrival", "name", T("Arrival"), "start", "scene", "beach", "characters", "character", "alice",
        "outfit", "coat", "expression", "happy", "character", "bob", "body", "sitting", "outfit", "oilskin",
        "expression", "neutral", "openingLines", "speaker", "narrator", "text", T("The ferry leaves you on the beach."),
        "speaker", "alice", "text", T("You came!"), "allowedSpeakers", "alice", "bob");
    json_t *m = json_pack(
        "{s:s, s:i, s:s, s:s, s:o, s:o, s:o, s:[s, s], s:{s:b}, s:i, s:o, s:o, s:o,"
        " s:{s:o, s:o}, s:[o, o], s:[{s:s, s:o, s:o}], s:o, s:o}",
        "$schema", "../../docs/scenario.schema.json", "version", 1, "id", "lighthouse", "scenarioVersion", "1.2.0",
        "name", T("The Lighthouse"), "teaser", T("A storm is coming."), "about", T("A short story on an island."),
        "locales", "en-US", "ru-RU", "content", "nsfw", 0, "recommendedContextSize", 8192, "thumbnail",
        asset("thumb.png", "thumbnail"), "globalScenario", T("An island in the North Sea, 1920."), "instructions",
        T("Never reveal the keeper's secret early."), "player", "name", T("The visitor"), "about",
        T("A journalist from the mainland."), "characters", alice, bob, "locations", "id", "island", "name",
        T("The island"), "description", T("Rock, grass and a lighthouse."), "scenes", scenes, "episodes", episodes);
    CHECK(m != NULL);
    json_object_set_new(m, "variables", json_pack(
        "[{s:s, s:o, s:s, s:i, s:i, s:i, s:s}, {s:s, s:o, s:s, s:b}, {s:s, s:o, s:s, s:[s, s]}]",
        "id", "alice-trust", "name", T("Alice's trust"), "type", "integer", "min", -5, "max", 5, "default", 0,
        "character", "alice", "id", "secret-known", "name", T("Knows the secret"), "type", "boolean", "hidden", 1,
        "id", "tide", "name", T("Tide"), "type", "enum", "values", "low", "high"));
    json_object_set_new(m, "achievements", json_pack(
        "[{s:s, s:o, s:o, s:{s:[{s:s, s:i}, {s:{s:s}}, {s:s}, {s:s, s:s}, {s:i}]}}]",
        "id", "confidant", "name", T("Confidant"), "description", T("Alice trusts you."), "when", "all", "variable",
        "alice-trust", "atLeast", 4, "not", "onStage", "bob", "scene", "lamp-room", "variable", "tide", "equals",
        "high", "clockAtLeast", 60));
    json_object_set_new(m, "lore", json_pack(
        "[{s:s, s:[s, s], s:o, s:i}, {s:s, s:o, s:s}]",
        "id", "lamp", "keys", "lamp", "light", "text", T("The lamp has not been lit since 1912."), "priority", 5,
        "id", "island", "text", T("The island has no trees."), "position", "setup"));
    json_object_set_new(m, "loreBudget", json_integer(200));
    return m;
}

static void write_manifest(json_t *m) {
    char path[700];
    snprintf(path, sizeof path, "%s/manifest.json", g_pack);
    CHECK(json_dump_file(m, path, JSON_INDENT(2)) == 0);
}

// The value at a path like "characters[1].outfits[0].layers" (NULL if absent).
static json_t *at(json_t *j, const char *path) {
    char key[128];
    const char *p = path;
    while (*p && j) {
        if (*p == '.') p++;
        if (*p == '[') {
            size_t i = strtoul(p + 1, (char **)&p, 10);
            p++; // ']'
            j = json_array_get(j, i);
        } else {
            size_t n = strcspn(p, ".[");
            snprintf(key, sizeof key, "%.*s", (int)n, p);
            j = json_object_get(j, key);
            p += n;
        }
    }
    return j;
}

// Splits "a.b[2].c" into the parent path and the last key or index.
static void set_at(json_t *root, const char *path, json_t *val) {
    const char *dot = strrchr(path, '.'), *br = strrchr(path, '[');
    char parent[256];
    if (br && (!dot || br > dot)) {
        snprintf(parent, sizeof parent, "%.*s", (int)(br - path), path);
        json_array_set_new(at(root, parent), strtoul(br + 1, NULL, 10), val);
        return;
    }
    const char *key = dot ? dot + 1 : path;
    snprintf(parent, sizeof parent, "%.*s", dot ? (int)(dot - path) : 0, path);
    json_t *obj = dot ? at(root, parent) : root;
    CHECK_MSG(obj != NULL, "no parent for %s", path);
    if (val) json_object_set_new(obj, key, val);
    else CHECK_MSG(json_object_del(obj, key) == 0, "no %s to delete", path);
}

static scn_report g_rep;

// Loads the pack; returns the status (the report is in g_rep).
static sim_status load(scn_scenario **s) {
    scn_report_free(&g_rep);
    scn_report_init(&g_rep);
    sim_err err;
    return scn_load(s, g_pack, &g_rep, &err);
}

static bool has_problem(const char *path, const char *msg_part) {
    for (int i = 0; i < g_rep.n; i++)
        if (strcmp(g_rep.items[i].path, path) == 0 && strstr(g_rep.items[i].msg, msg_part) && g_rep.items[i].hint[0])
            return true;
    return false;
}

static void dump_report(void) {
    for (int i = 0; i < g_rep.n; i++)
        fprintf(stderr, "    [%s] %s (fix: %s)\n", g_rep.items[i].path, g_rep.items[i].msg, g_rep.items[i].hint);
}

// Applies one change to the valid manifest and expects (path, message) among the problems.
static void expect(const char *set_path, json_t *val, const char *path, const char *msg) {
    json_t *m = valid_manifest();
    set_at(m, set_path, val);
    write_manifest(m);
    json_decref(m);
    scn_scenario *s;
    sim_status rc = load(&s);
    CHECK_MSG(rc == SIM_ERR_FORMAT, "%s: status %d", set_path, rc);
    CHECK(s == NULL);
    bool ok = has_problem(path, msg);
    CHECK_MSG(ok, "setting %s: no problem at '%s' saying '%s'; got:", set_path, path, msg);
    if (!ok) dump_report();
    scn_free(s);
}

// --- tests ------------------------------------------------------------------------------------------

static void test_valid(void) {
    json_t *m = valid_manifest();
    write_manifest(m);
    json_decref(m);
    scn_scenario *s;
    CHECK_EQ_INT(load(&s), SIM_OK);
    if (!s) {
        dump_report();
        return;
    }
    CHECK_EQ_INT(g_rep.n, 0);
    CHECK_EQ_INT(s->version, 1);
    CHECK_STR(s->id, "lighthouse");
    CHECK_STR(s->scenario_version, "1.2.0");
    CHECK_EQ_INT(s->n_locales, 2);
    CHECK_STR(s->locales[1], "ru-RU");
    CHECK_STR(scn_text(s, &s->name, "en-US"), "The Lighthouse");
    CHECK_STR(scn_text(s, &s->name, "ru-RU"), "ru: The Lighthouse");
    CHECK_STR(scn_text(s, &s->name, "de-DE"), "The Lighthouse"); // falls back to en-US
    CHECK_STR(scn_text(s, &s->teaser, NULL), "A storm is coming.");
    CHECK_STR(scn_text(s, &s->global_scenario, "en-US"), "An island in the North Sea, 1920.");
    CHECK_STR(scn_text(s, &s->instructions, "en-US"), "Never reveal the keeper's secret early.");
    CHECK(!s->nsfw);
    CHECK_EQ_INT(s->context_size, 8192);
    CHECK(s->thumbnail && strcmp(s->thumbnail->path, "thumb.png") == 0);
    CHECK_STR(scn_text(s, &s->player.name, "en-US"), "The visitor");
    CHECK(scn_text(s, &s->player.appearance, "en-US") == NULL);

    CHECK_EQ_INT(s->n_characters, 2);
    const scn_character *a = &s->characters[0], *b = &s->characters[1];
    CHECK_STR(a->id, "alice");
    CHECK_EQ_INT(a->color, 0xe0457b);
    CHECK_EQ_INT(b->color, 0x3366ff);
    CHECK_STR(scn_text(s, &a->personality, "en-US"), "Curious, stubborn.");
    CHECK_STR(scn_text(s, &a->appearance, "en-US"), "Red hair, green coat.");
    CHECK_EQ_INT(a->n_relationships, 1);
    CHECK_EQ_INT(a->relationships[0].to_index, 1);
    CHECK_STR(scn_text(s, &a->relationships[0].text, "ru-RU"), "ru: Her old friend.");
    CHECK_EQ_INT(a->n_bodies, 1);
    CHECK_STR(a->bodies[0].image.path, "sprites/alice/body.png");
    CHECK_EQ_INT(a->bodies[0].image.size, 10);
    CHECK_EQ_INT(a->n_outfits, 1);
    CHECK_STR(scn_text(s, &a->outfits[0].description, "en-US"), "A long green coat.");
    CHECK_NEAR(a->outfits[0].layers[0].x, 0.1, 1e-12);
    CHECK_NEAR(a->outfits[0].layers[0].y, 0.25, 1e-12);
    CHECK_EQ_INT(a->n_expressions, 2);
    CHECK_STR(a->expressions[1].id, "happy");
    CHECK_NEAR(a->expressions[1].layers[0].scale, 0.5, 1e-12);
    char h[SHA256_HEX_SIZE];
    hex_of("alice happy", 11, h);
    CHECK_STR(a->expressions[1].layers[0].image.sha256, h);
    CHECK_EQ_INT(b->n_bodies, 2);
    CHECK_STR(b->outfits[0].layers[1].image.path, "sprites/bob/oil_sitting.png");

    CHECK_EQ_INT(s->n_locations, 1);
    CHECK_EQ_INT(s->n_scenes, 2);
    CHECK_EQ_INT(s->scenes[0].location_index, 0);
    CHECK_EQ_INT(s->scenes[1].location_index, -1);
    CHECK_EQ_INT(s->scenes[0].n_ambience, 1);
    CHECK_STR(s->scenes[0].ambience[0].path, "sounds/waves.ogg");
    CHECK_STR(scn_text(s, &s->scenes[1].prompt, "en-US"), "The top of the lighthouse.");

    CHECK_EQ_INT(s->n_episodes, 1);
    const scn_episode *e = &s->episodes[0];
    CHECK_EQ_INT(e->start_scene_index, 0);
    CHECK_EQ_INT(e->n_on_stage, 2);
    CHECK_EQ_INT(e->on_stage[0].expression_index, 1);
    CHECK_EQ_INT(e->on_stage[0].body_index, 0);
    CHECK_EQ_INT(e->on_stage[1].body_index, 1);
    CHECK_EQ_INT(e->n_opening, 2);
    CHECK_EQ_INT(e->opening[0].speaker_index, SCN_SPEAKER_NARRATOR);
    CHECK_EQ_INT(e->opening[1].speaker_index, 0);
    CHECK_EQ_INT(e->n_allowed_speakers, 2);
    CHECK_EQ_INT(e->allowed_speakers[1], 1);

    CHECK_EQ_INT(s->n_variables, 3);
    const scn_variable *x = s->variables;
    CHECK(x[0].type == SCN_VAR_INT && x[0].min == -5 && x[0].max == 5 && x[0].def == 0 && x[0].character_index == 0);
    CHECK(x[1].type == SCN_VAR_BOOL && x[1].max == 1 && x[1].def == 0 && x[1].hidden && x[1].character_index == -1);
    CHECK(x[2].type == SCN_VAR_ENUM && x[2].n_values == 2 && x[2].def == 0 && x[2].max == 1);
    CHECK_STR(x[2].values[1], "high");
    CHECK_EQ_INT(s->n_achievements, 1);
    const scn_cond *w = &s->achievements[0].when;
    CHECK(w->kind == SCN_COND_ALL && w->n_sub == 5);
    CHECK(w->sub[0].kind == SCN_COND_VARIABLE && w->sub[0].index == 0 && w->sub[0].op == SCN_OP_GE && w->sub[0].value == 4);
    CHECK(w->sub[1].kind == SCN_COND_NOT && w->sub[1].sub[0].kind == SCN_COND_ON_STAGE && w->sub[1].sub[0].index == 1);
    CHECK(w->sub[2].kind == SCN_COND_SCENE && w->sub[2].index == 1);
    CHECK(w->sub[3].kind == SCN_COND_VARIABLE && w->sub[3].op == SCN_OP_EQ && w->sub[3].value == 1);
    CHECK(w->sub[4].kind == SCN_COND_CLOCK && w->sub[4].value == 60);
    CHECK_EQ_INT(s->n_lore, 2);
    CHECK(s->lore[0].position == SCN_LORE_RECENT && s->lore[0].n_keys == 2 && s->lore[0].priority == 5);
    CHECK(s->lore[1].position == SCN_LORE_SETUP && s->lore[1].n_keys == 0 && !s->lore[1].case_sensitive);
    CHECK_STR(scn_text(s, &s->lore[1].text, "en-US"), "The island has no trees.");
    CHECK_EQ_INT(s->lore_budget, 200);

    // 13 distinct files (bob's neutral face is shared by both bodies).
    CHECK_EQ_INT(s->n_assets, 13);
    uint64_t bytes = 0;
    const char *contents[] = {"thumbnail", "alice body", "alice coat", "alice neutral", "alice happy", "bob standing",
                              "bob sitting", "bob oil standing", "bob oil sitting", "bob face", "beach bg", "waves", "lamp bg"};
    for (size_t i = 0; i < ARRAY_LEN(contents); i++) bytes += strlen(contents[i]);
    CHECK_EQ_INT(s->asset_bytes, bytes);
    scn_free(s);
}

static void test_each_problem(void) {
    expect("name", NULL, "name", "missing required field 'name'");
    expect("characters[0].color", json_integer(5), "characters[0].color", "expected a string, found an integer");
    expect("characters[0].color", json_string("pink"), "characters[0].color", "not a colour");
    expect("scenes", json_object(), "scenes", "expected an array, found an object");
    expect("characters[1].id", json_string("Bob!"), "characters[1].id", "not a valid id");
    expect("characters[1].id", json_string("narrator"), "characters[1].id", "reserved");
    expect("scenes[1].id", json_string("beach"), "scenes[1].id", "duplicate scene id 'beach'");
    expect("characters[0].expressions[1].id", json_string("neutral"), "characters[0].expressions[1].id",
           "duplicate expression id 'neutral'");
    expect("episodes[0].start.scene", json_string("nowhere"), "episodes[0].start.scene", "no scene has the id 'nowhere'");
    expect("characters[0].relationships[0].to", json_string("carol"), "characters[0].relationships[0].to",
           "no character has the id 'carol'");
    expect("episodes[0].start.characters[0].outfit", json_string("gown"), "episodes[0].start.characters[0].outfit",
           "'alice' has no outfit 'gown'");
    expect("episodes[0].start.characters[1].expression", json_string("angry"),
           "episodes[0].start.characters[1].expression", "'bob' has no expression 'angry'");
    expect("episodes[0].allowedSpeakers[1]", json_string("carol"), "episodes[0].allowedSpeakers[1]", "no character");
    expect("episodes[0].openingLines[1].speaker", json_string("carol"), "episodes[0].openingLines[1].speaker", "no character");
    expect("scenes[0].location", json_string("moon"), "scenes[0].location", "no location has the id 'moon'");
    expect("characters[0].name.ru-RU", NULL, "characters[0].name", "missing the 'ru-RU' text");
    expect("characters[0].name.de-DE", json_string("Alice"), "characters[0].name.de-DE", "not one of the scenario's locales");
    expect("locales", json_pack("[s]", "ru-RU"), "locales", "\"en-US\" is not among the locales");
    expect("characters[1].outfits[0].layers.sitting", NULL, "characters[1].outfits[0].layers", "no layer for the body 'sitting'");
    expect("characters[0].outfits[0].layers.body.x", json_real(1.5), "characters[0].outfits[0].layers.body.x", "outside");
    expect("characters[0].outfits[0].layers.body.scale", json_real(0), "characters[0].outfits[0].layers.body.scale", "outside");
    expect("characters[0].outfits[0].layers.body.sha256", json_string("e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"),
           "characters[0].outfits[0].layers.body.sha256", "does not match the file 'sprites/alice/coat.png'");
    expect("thumbnail.sha256", json_string("abc"), "thumbnail.sha256", "not a SHA-256 digest");
    expect("scenes[0].background.path", json_string("bg/missing.png"), "scenes[0].background.path", "does not exist");
    expect("scenes[0].background.path", json_string("../outside.png"), "scenes[0].background.path", "leaves the folder");
    expect("scenes[0].background.path", json_string("bg/../../outside.png"), "scenes[0].background.path", "leaves the folder");
    expect("scenes[0].background.path", json_string("/etc/passwd"), "scenes[0].background.path", "absolute");
    expect("scenes[0].background.path", json_string("bg\\beach.png"), "scenes[0].background.path", "backslash");
    expect("scenes[0].background.path", json_string("escape.png"), "scenes[0].background.path", "resolves outside");
    expect("scenes[0].background.path", json_string("bg"), "scenes[0].background.path", "not a regular file");
    expect("scenes[0].background.path", json_string("pipe.png"), "scenes[0].background.path", "not a regular file");
    expect("characters[1].bodies[1].id", json_string("standing"), "characters[1].bodies[1].id", "duplicate body id");
    json_t *v0 = valid_manifest();
    json_t *eps = json_pack("[o, o]", json_deep_copy(at(v0, "episodes[0]")), json_deep_copy(at(v0, "episodes[0]")));
    json_decref(v0);
    expect("episodes", eps, "episodes[1].id", "duplicate episode id 'arrival'");
    expect("version", json_integer(2), "version", "unsupported format version 2");
    expect("colour", json_string("#ffffff"), "colour", "unknown field 'colour'");
    expect("content.nsfw", json_string("no"), "content.nsfw", "expected a boolean");
    expect("recommendedContextSize", json_integer(10), "recommendedContextSize", "out of range");
    expect("episodes[0].start.characters[1].character", json_string("alice"), "episodes[0].start.characters[1]",
           "already on stage");
    expect("episodes[0].start.characters[0]", json_pack("{s:s, s:s, s:s}", "character", "bob", "outfit", "oilskin",
                                                        "expression", "neutral"),
           "episodes[0].openingLines[1].speaker", "not on stage");
    expect("characters", json_array(), "characters", "needs at least 1 entry");
    // variables
    expect("variables[0].type", json_string("float"), "variables[0].type", "unknown variable type 'float'");
    expect("variables[0].max", json_integer(-6), "variables[0].max", "max -6 is below min -5");
    expect("variables[0].default", json_integer(6), "variables[0].default", "6 is outside [-5, 5]");
    expect("variables[0].min", json_integer(-2000000000), "variables[0].min", "outside");
    expect("variables[0].character", json_string("carol"), "variables[0].character", "no character has the id 'carol'");
    expect("variables[1].default", json_integer(1), "variables[1].default", "'secret-known' takes a boolean");
    expect("variables[1].min", json_integer(0), "variables[1].min", "not an integer variable");
    expect("variables[2].values[1]", json_string("low"), "variables[2].values[1]", "duplicate value id 'low'");
    expect("variables[2].default", json_string("mid"), "variables[2].default", "'mid' is not a value of 'tide'");
    expect("variables[2].id", json_string("alice-trust"), "variables[2].id", "duplicate variable id 'alice-trust'");
    // achievements
    expect("achievements[0].when.all[0].variable", json_string("gold"), "achievements[0].when.all[0].variable",
           "no variable has the id 'gold'");
    expect("achievements[0].when.all[3].equals", json_string("mid"), "achievements[0].when.all[3].equals",
           "'mid' is not a value of 'tide'");
    expect("achievements[0].when.all[3].atLeast", json_integer(1), "achievements[0].when.all[3]",
           "needs one comparison");
    expect("achievements[0].when.all[1].not.onStage", json_string("carol"), "achievements[0].when.all[1].not.onStage",
           "no character has the id 'carol'");
    expect("achievements[0].when.all[2].scene", json_string("moon"), "achievements[0].when.all[2].scene",
           "no scene has the id 'moon'");
    expect("achievements[0].when.all[4]", json_pack("{s:i}", "clockAtMost", 5), "achievements[0].when.all[4].clockAtMost",
           "unknown condition 'clockAtMost'");
    expect("achievements[0].when.all[4]", json_pack("{s:i, s:s}", "clockAtLeast", 5, "scene", "beach"),
           "achievements[0].when.all[4]", "exactly one key, found 2");
    expect("achievements[0].when", NULL, "achievements[0].when", "missing required field 'when'");
    json_t *deep = json_pack("{s:s}", "scene", "beach");
    for (int i = 0; i < SCN_MAX_COND_DEPTH + 2; i++) deep = json_pack("{s:o}", "not", deep);
    char deep_path[256] = "achievements[0].when";
    for (int i = 0; i <= SCN_MAX_COND_DEPTH; i++) strcat(deep_path, ".not");
    expect("achievements[0].when", deep, deep_path, "nested more than 16 levels deep");
    // lore
    expect("lore[0].keys", json_array(), "lore[0].keys", "needs at least 1 entry");
    expect("lore[0].keys[1]", json_integer(3), "lore[0].keys[1]", "expected a string");
    expect("lore[0].position", json_string("top"), "lore[0].position", "unknown position 'top'");
    expect("lore[1].id", json_string("lamp"), "lore[1].id", "duplicate lore entry id 'lamp'");
    expect("loreBudget", json_integer(-1), "loreBudget", "outside");
}

// A manifest with several problems in different sections reports every one.
static void test_all_problems(void) {
    json_t *m = valid_manifest();
    set_at(m, "teaser", NULL);
    set_at(m, "characters[1].color", json_true());
    set_at(m, "scenes[1].background.path", json_string("../x.png"));
    set_at(m, "episodes[0].start.scene", json_string("attic"));
    set_at(m, "locations[0].name.ru-RU", NULL);
    write_manifest(m);
    json_decref(m);
    scn_scenario *s;
    CHECK_EQ_INT(load(&s), SIM_ERR_FORMAT);
    CHECK_EQ_INT(g_rep.n, 5);
    CHECK(has_problem("teaser", "missing"));
    CHECK(has_problem("characters[1].color", "expected a string, found a boolean"));
    CHECK(has_problem("scenes[1].background.path", "leaves the folder"));
    CHECK(has_problem("episodes[0].start.scene", "no scene"));
    CHECK(has_problem("locations[0].name", "missing the 'ru-RU' text"));
    if (g_rep.n != 5) dump_report();
}

// Past SCN_MAX_PROBLEMS problems are counted, not kept.
static void test_problem_cap(void) {
    json_t *m = valid_manifest();
    json_t *chars = json_array();
    for (int i = 0; i < SCN_MAX_PROBLEMS + 200; i++) json_array_append_new(chars, json_integer(i));
    set_at(m, "characters", chars);
    write_manifest(m);
    json_decref(m);
    scn_scenario *s;
    CHECK_EQ_INT(load(&s), SIM_ERR_FORMAT);
    CHECK_EQ_INT(g_rep.n, SCN_MAX_PROBLEMS);
    CHECK(g_rep.n_dropped >= 200);
    CHECK(has_problem("characters[999]", "expected an object, found an integer"));
}

static void test_file_problems(void) {
    char path[700];
    snprintf(path, sizeof path, "%s/manifest.json", g_pack);
    sim_err err;
    scn_scenario *s;
    const char *bad = "{\n  \"version\": 1,\n  oops\n}\n";
    CHECK(file_write_all(path, bad, strlen(bad), &err) == SIM_OK);
    CHECK_EQ_INT(load(&s), SIM_ERR_FORMAT);
    CHECK(g_rep.n == 1 && strcmp(g_rep.items[0].path, "") == 0 && strstr(g_rep.items[0].msg, "line 3, column"));
    const char *dup = "{\"version\": 1, \"version\": 1}";
    CHECK(file_write_all(path, dup, strlen(dup), &err) == SIM_OK);
    CHECK_EQ_INT(load(&s), SIM_ERR_FORMAT);
    CHECK(g_rep.n == 1 && strstr(g_rep.items[0].msg, "duplicate"));
    CHECK(file_write_all(path, "[1]", 3, &err) == SIM_OK);
    CHECK_EQ_INT(load(&s), SIM_ERR_FORMAT);
    CHECK(g_rep.n == 1 && strstr(g_rep.items[0].msg, "expected an object, found an array"));

    size_t big = SCN_MAX_MANIFEST + 1;
    char *buf = malloc(big);
    memset(buf, ' ', big);
    buf[0] = '{';
    buf[big - 1] = '}';
    CHECK(file_write_all(path, buf, big, &err) == SIM_OK);
    free(buf);
    CHECK_EQ_INT(load(&s), SIM_ERR_FORMAT);
    CHECK(g_rep.n == 1 && strstr(g_rep.items[0].msg, "more than the 4194304-byte limit"));

    unlink(path);
    CHECK_EQ_INT(load(&s), SIM_ERR_IO);
    CHECK(g_rep.n == 1 && strstr(g_rep.items[0].msg, "no manifest.json"));
    scn_report_free(&g_rep);
    scn_report_init(&g_rep);
    snprintf(path, sizeof path, "%s/none", g_tmp);
    CHECK_EQ_INT(scn_load(&s, path, &g_rep, &err), SIM_ERR_IO);
    CHECK(g_rep.n == 1 && strstr(g_rep.items[0].msg, "is not a folder"));
    CHECK(s == NULL);
}

// Every allocation failure is reported as SIM_ERR_NOMEM and leaks nothing
// (the ASan build checks the leaks).
static void test_alloc_failures(void) {
    json_t *m = valid_manifest();
    write_manifest(m);
    json_decref(m);
    for (long n = 0;; n++) {
        scn_scenario *s;
        scn_report rep;
        scn_report_init(&rep);
        sim_err err;
        mem_fail_after(n);
        sim_status rc = scn_load(&s, g_pack, &rep, &err);
        bool failed = mem_fail_triggered();
        mem_fail_after(-1);
        scn_report_free(&rep);
        if (!failed) {
            CHECK_EQ_INT(rc, SIM_OK);
            scn_free(s);
            break;
        }
        CHECK_MSG(rc == SIM_ERR_NOMEM && s == NULL, "failing allocation %ld: status %d", n, rc);
        scn_free(s);
        if (n > 10000) {
            CHECK(!"too many allocations");
            break;
        }
    }
}

int main(int argc, char **argv) {
    test_init(argc, argv);
    snprintf(g_tmp, sizeof g_tmp, "/tmp/sim_scenario_XXXXXX");
    if (!mkdtemp(g_tmp)) {
        perror("mkdtemp");
        return 1;
    }
    snprintf(g_pack, sizeof g_pack, "%s/pack", g_tmp);
    mkdir(g_pack, 0755);
    // A file outside the pack, and a link inside the pack that points to it.
    char out[400], link[400];
    snprintf(out, sizeof out, "%s/outside.png", g_tmp);
    sim_err err;
    file_write_all(out, "secret", 6, &err);
    snprintf(link, sizeof link, "%s/escape.png", g_pack);
    if (symlink(out, link) != 0) perror("symlink");
    snprintf(link, sizeof link, "%s/pipe.png", g_pack);
    if (mkfifo(link, 0644) != 0) perror("mkfifo"); // opening it would block
    scn_report_init(&g_rep);

    TEST_RUN(test_sha256_vectors);
    TEST_RUN(test_sha256_vs_sha256sum);
    TEST_RUN(test_valid);
    TEST_RUN(test_each_problem);
    TEST_RUN(test_all_problems);
    TEST_RUN(test_problem_cap);
    TEST_RUN(test_file_problems);
    TEST_RUN(test_alloc_failures);

    scn_report_free(&g_rep);
    char cmd[400];
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", g_tmp);
    if (system(cmd) != 0) fprintf(stderr, "could not remove %s\n", g_tmp);
    return test_finish();
}
