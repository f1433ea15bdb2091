// test_stage.c — the stage: a fixture scenario (2 characters with 2 outfits
// and 3 expressions each, 2 scenes, 1 episode) loaded with scn_load; the
// start state; every command applied; every refusal with its message; the
// JSON round trip and refused states; the valid-command lists.
#include <jansson.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "base/file.h"
#include "base/sha256.h"
#include "story/scenario.h"
#include "story/stage.h"
#include "test.h"

// --- the fixture -------------------------------------------------------------------------

static char g_tmp[256];
static scn_scenario *g_s;

static json_t *T(const char *en) { return json_pack("{s:s}", "en-US", en); }

// Writes rel (creating its folder) with `rel` as its content, returns the asset.
static json_t *asset(const char *rel) {
    char path[600];
    snprintf(path, sizeof path, "%s/%s", g_tmp, rel);
    for (char *p = path + strlen(g_tmp) + 1; *p; p++)
        if (*p == '/') {
            *p = 0;
            mkdir(path, 0755);
            *p = '/';
        }
    sim_err err;
    CHECK(file_write_all(path, rel, strlen(rel), &err) == SIM_OK);
    uint8_t d[SHA256_SIZE];
    char h[SHA256_HEX_SIZE];
    sha256(rel, strlen(rel), d);
    sha256_hex(d, h);
    return json_pack("{s:s, s:s}", "path", rel, "sha256", h);
}

static json_t *variant(const char *who, const char *id) {
    char rel[128];
    snprintf(rel, sizeof rel, "sprites/%s/%s.png", who, id);
    return json_pack("{s:s, s:o, s:{s:o}}", "id", id, "name", T(id), "layers", "body", asset(rel));
}

static json_t *character(const char *id, const char *o1, const char *o2, const char *e1, const char *e2,
                         const char *e3) {
    char rel[128];
    snprintf(rel, sizeof rel, "sprites/%s/body.png", id);
    return json_pack("{s:s, s:o, s:s, s:o, s:o, s:o, s:[{s:s, s:o}], s:[o, o], s:[o, o, o]}", "id", id, "name", T(id),
                     "color", "#336699", "about", T("about"), "personality", T("personality"), "appearance",
                     T("appearance"), "bodies", "id", "body", "image", asset(rel), "outfits", variant(id, o1),
                     variant(id, o2), "expressions", variant(id, e1), variant(id, e2), variant(id, e3));
}

static bool build_fixture(void) {
    json_t *m = json_pack(
        "{s:i, s:s, s:s, s:o, s:o, s:o, s:[s], s:{s:b}, s:i, s:o, s:{s:o, s:o}, s:[o, o],"
        " s:[{s:s, s:o, s:o, s:o}, {s:s, s:o, s:o, s:o}],"
        " s:[{s:s, s:o, s:{s:s, s:[{s:s, s:s, s:s}]}, s:[], s:[s, s]}]}",
        "version", 1, "id", "harbour", "scenarioVersion", "1.0.0", "name", T("Harbour"), "teaser", T("teaser"),
        "about", T("about"), "locales", "en-US", "content", "nsfw", 0, "recommendedContextSize", 4096,
        "globalScenario", T("A harbour."), "player", "name", T("You"), "about", T("A traveller."), "characters",
        character("alice", "casual", "formal", "neutral", "smile", "sad"),
        character("bob", "oilskin", "suit", "calm", "angry", "laugh"), "scenes", "id", "pier", "name", T("Pier"),
        "prompt", T("A pier."), "background", asset("bg/pier.png"), "id", "tavern", "name", T("Tavern"), "prompt",
        T("A tavern."), "background", asset("bg/tavern.png"), "episodes", "id", "evening", "name", T("Evening"),
        "start", "scene", "tavern", "characters", "character", "alice", "outfit", "formal", "expression", "smile",
        "openingLines", "allowedSpeakers", "alice", "bob");
    if (!m) return false;
    json_object_set_new(m, "variables", json_pack(
        "[{s:s, s:o, s:s, s:i, s:i, s:i, s:s}, {s:s, s:o, s:s}, {s:s, s:o, s:s, s:[s, s, s], s:s}]",
        "id", "alice-trust", "name", T("Alice's trust"), "type", "integer", "min", 0, "max", 10, "default", 3,
        "character", "alice", "id", "found-key", "name", T("Found the key"), "type", "boolean", "id", "weather",
        "name", T("Weather"), "type", "enum", "values", "calm", "rain", "storm", "default", "rain"));
    json_object_set_new(m, "achievements", json_pack(
        "[{s:s, s:o, s:o, s:{s:[{s:s, s:i}, {s:s}]}},"
        " {s:s, s:o, s:o, s:{s:[{s:s, s:s}, {s:{s:s}}]}},"
        " {s:s, s:o, s:o, s:{s:[{s:i}, {s:s, s:b}]}}]",
        "id", "trusted", "name", T("Trusted"), "description", T("d"), "when", "all", "variable", "alice-trust",
        "atLeast", 8, "onStage", "alice", "id", "storm", "name", T("Storm"), "description", T("d"), "when", "all",
        "variable", "weather", "equals", "storm", "not", "scene", "tavern", "id", "late", "name", T("Late"),
        "description", T("d"), "when", "any", "clockAtLeast", 120, "variable", "found-key", "equals", 1));
    char path[600];
    snprintf(path, sizeof path, "%s/manifest.json", g_tmp);
    int rc = json_dump_file(m, path, JSON_INDENT(2));
    json_decref(m);
    if (rc != 0) return false;
    scn_report rep;
    scn_report_init(&rep);
    sim_err err;
    sim_status st = scn_load(&g_s, g_tmp, &rep, &err);
    for (int i = 0; i < rep.n; i++) fprintf(stderr, "  fixture: %s: %s\n", rep.items[i].path, rep.items[i].msg);
    scn_report_free(&rep);
    return st == SIM_OK;
}

// Indices in the fixture.
enum { PIER = 0, TAVERN = 1, ALICE = 0, BOB = 1 };
enum { CASUAL = 0, FORMAL = 1, NEUTRAL = 0, SMILE = 1, SAD = 2 };         // alice
enum { OILSKIN = 0, SUIT = 1, CALM = 0, ANGRY = 1, LAUGH = 2 };           // bob

// --- helpers ---------------------------------------------------------------------------------

static sim_err g_err;

// Checks a command given as JSON text; applies it when accepted.
static sim_status run(stage *st, const char *text) {
    json_error_t je;
    json_t *j = json_loads(text, 0, &je);
    CHECK_MSG(j != NULL, "bad test JSON %s: %s", text, je.text);
    stage before = *st;
    stage_cmd c;
    memset(&g_err, 0, sizeof g_err);
    sim_status rc = stage_check(st, g_s, j, &c, &g_err);
    json_decref(j);
    CHECK(memcmp(&before, st, sizeof before) == 0); // checking never changes the state
    if (rc == SIM_OK) stage_apply(st, &c);
    return rc;
}

static void ok(stage *st, const char *text) {
    sim_status rc = run(st, text);
    CHECK_MSG(rc == SIM_OK, "%s refused: %s", text, g_err.msg);
}

// Expects text refused with a message containing frag, and the state unchanged.
static void refused(stage *st, const char *text, const char *frag) {
    stage before = *st;
    sim_status rc = run(st, text);
    CHECK_MSG(rc == SIM_ERR_FORMAT, "%s: accepted (status %d)", text, rc);
    CHECK_MSG(strstr(g_err.msg, frag) != NULL, "%s: message '%s' lacks '%s'", text, g_err.msg, frag);
    CHECK(memcmp(&before, st, sizeof before) == 0);
}

static stage start(void) {
    stage st;
    sim_err err;
    CHECK(stage_start(&st, g_s, 0, &err) == SIM_OK);
    return st;
}

// --- tests -----------------------------------------------------------------------------------

static void test_start(void) {
    stage st = start();
    CHECK_EQ_INT(st.episode, 0);
    CHECK_EQ_INT(st.scene, TAVERN);
    CHECK_EQ_INT(st.minutes, 0);
    CHECK_EQ_INT(st.n_on_stage, 1);
    CHECK_EQ_INT(st.on_stage[0].character, ALICE);
    CHECK_EQ_INT(st.on_stage[0].body, 0);
    CHECK_EQ_INT(st.on_stage[0].outfit, FORMAL);
    CHECK_EQ_INT(st.on_stage[0].expression, SMILE);
    sim_err err;
    CHECK(stage_start(&st, g_s, 1, &err) == SIM_ERR_ARG);
    CHECK(stage_start(&st, g_s, -1, &err) == SIM_ERR_ARG);
}

static void test_commands(void) {
    stage st = start();
    ok(&st, "{\"setScene\":{\"scene\":\"pier\"}}");
    CHECK_EQ_INT(st.scene, PIER);
    ok(&st, "{\"addCharacter\":{\"character\":\"bob\"}}"); // defaults: the first of each
    CHECK_EQ_INT(st.n_on_stage, 2);
    CHECK_EQ_INT(st.on_stage[1].character, BOB);
    CHECK_EQ_INT(st.on_stage[1].body, 0);
    CHECK_EQ_INT(st.on_stage[1].outfit, OILSKIN);
    CHECK_EQ_INT(st.on_stage[1].expression, CALM);
    ok(&st, "{\"setExpression\":{\"character\":\"bob\",\"expression\":\"laugh\"}}");
    CHECK_EQ_INT(st.on_stage[1].expression, LAUGH);
    ok(&st, "{\"setOutfit\":{\"character\":\"alice\",\"outfit\":\"casual\"}}");
    CHECK_EQ_INT(st.on_stage[0].outfit, CASUAL);
    CHECK_EQ_INT(st.on_stage[0].expression, SMILE);
    ok(&st, "{\"advanceClock\":{\"minutes\":15}}");
    ok(&st, "{\"advanceClock\":{\"minutes\":1440}}");
    CHECK_EQ_INT(st.minutes, 1455);
    char clock[STAGE_CLOCK_SIZE];
    stage_clock_format(st.minutes, clock);
    CHECK_STR(clock, "24:15");
    stage_clock_format(5, clock);
    CHECK_STR(clock, "00:05");
    // Removing the first keeps the rest in order; adding appends with the given variants.
    ok(&st, "{\"removeCharacter\":{\"character\":\"alice\"}}");
    CHECK_EQ_INT(st.n_on_stage, 1);
    CHECK_EQ_INT(st.on_stage[0].character, BOB);
    CHECK_EQ_INT(st.on_stage[0].expression, LAUGH);
    ok(&st, "{\"addCharacter\":{\"character\":\"alice\",\"outfit\":\"casual\",\"expression\":\"sad\",\"body\":\"body\"}}");
    CHECK_EQ_INT(st.n_on_stage, 2);
    CHECK_EQ_INT(st.on_stage[1].character, ALICE);
    CHECK_EQ_INT(st.on_stage[1].outfit, CASUAL);
    CHECK_EQ_INT(st.on_stage[1].expression, SAD);
    CHECK_EQ_INT(stage_find(&st, ALICE), 1);
    CHECK_EQ_INT(stage_find(&st, BOB), 0);
}

static void test_refusals(void) {
    stage st = start(); // tavern; alice (formal, smile)
    // Shape.
    refused(&st, "[]", "exactly one key");
    refused(&st, "{}", "exactly one key");
    refused(&st, "{\"setScene\":{\"scene\":\"pier\"},\"advanceClock\":{\"minutes\":1}}", "exactly one key");
    refused(&st, "{\"teleport\":{}}", "unknown stage command 'teleport' (known: setScene");
    refused(&st, "{\"setScene\":\"pier\"}", "setScene: the arguments must be a JSON object");
    refused(&st, "{\"setScene\":{}}", "setScene: missing \"scene\"");
    refused(&st, "{\"setScene\":{\"scene\":3}}", "setScene: \"scene\" must be a string");
    refused(&st, "{\"setScene\":{\"scene\":\"pier\",\"fade\":true}}", "setScene: unknown field \"fade\"");
    refused(&st, "{\"addCharacter\":{\"character\":\"bob\",\"outfit\":1}}", "addCharacter: \"outfit\" must be a string");
    refused(&st, "{\"setOutfit\":{\"character\":\"alice\"}}", "setOutfit: missing \"outfit\"");
    refused(&st, "{\"advanceClock\":{}}", "advanceClock: missing \"minutes\"");
    refused(&st, "{\"advanceClock\":{\"minutes\":\"5\"}}", "\"minutes\" must be an integer");
    refused(&st, "{\"advanceClock\":{\"minutes\":1.5}}", "\"minutes\" must be an integer");
    // Unknown ids: named, with valid ones listed.
    refused(&st, "{\"setScene\":{\"scene\":\"peir\"}}", "setScene: no scene has the id 'peir' (valid: pier, tavern)");
    refused(&st, "{\"addCharacter\":{\"character\":\"carol\"}}",
            "addCharacter: no character has the id 'carol' (valid: alice, bob)");
    refused(&st, "{\"removeCharacter\":{\"character\":\"carol\"}}", "no character has the id 'carol'");
    refused(&st, "{\"addCharacter\":{\"character\":\"bob\",\"outfit\":\"tux\"}}",
            "addCharacter: 'bob' has no outfit 'tux' (valid: oilskin, suit)");
    refused(&st, "{\"addCharacter\":{\"character\":\"bob\",\"expression\":\"smile\"}}",
            "'bob' has no expression 'smile' (valid: calm, angry, laugh)");
    refused(&st, "{\"addCharacter\":{\"character\":\"bob\",\"body\":\"sitting\"}}", "'bob' has no body 'sitting' (valid: body)");
    refused(&st, "{\"setOutfit\":{\"character\":\"alice\",\"outfit\":\"oilskin\"}}",
            "setOutfit: 'alice' has no outfit 'oilskin' (valid: casual, formal)");
    refused(&st, "{\"setExpression\":{\"character\":\"alice\",\"expression\":\"calm\"}}",
            "setExpression: 'alice' has no expression 'calm' (valid: neutral, smile, sad)");
    // Against the state.
    refused(&st, "{\"setScene\":{\"scene\":\"tavern\"}}", "setScene: 'tavern' is already the current scene");
    refused(&st, "{\"addCharacter\":{\"character\":\"alice\"}}", "addCharacter: 'alice' is already on stage");
    refused(&st, "{\"removeCharacter\":{\"character\":\"bob\"}}", "removeCharacter: 'bob' is not on stage");
    refused(&st, "{\"setExpression\":{\"character\":\"bob\",\"expression\":\"calm\"}}",
            "setExpression: 'bob' is not on stage");
    refused(&st, "{\"setOutfit\":{\"character\":\"bob\",\"outfit\":\"suit\"}}", "setOutfit: 'bob' is not on stage");
    refused(&st, "{\"setOutfit\":{\"character\":\"alice\",\"outfit\":\"formal\"}}",
            "setOutfit: 'alice' already has outfit 'formal'");
    refused(&st, "{\"setExpression\":{\"character\":\"alice\",\"expression\":\"smile\"}}",
            "setExpression: 'alice' already has expression 'smile'");
    refused(&st, "{\"advanceClock\":{\"minutes\":0}}", "advanceClock: \"minutes\" must be 1..1440 (got 0)");
    refused(&st, "{\"advanceClock\":{\"minutes\":-5}}", "must be 1..1440 (got -5)");
    refused(&st, "{\"advanceClock\":{\"minutes\":1441}}", "must be 1..1440 (got 1441)");
    // The clock stops at its limit.
    st.minutes = STAGE_MAX_MINUTES - 10;
    refused(&st, "{\"advanceClock\":{\"minutes\":11}}", "the clock cannot pass");
    ok(&st, "{\"advanceClock\":{\"minutes\":10}}");
}

static json_t *state_json(const char *text) {
    json_error_t je;
    json_t *j = json_loads(text, 0, &je);
    CHECK_MSG(j != NULL, "bad test JSON %s: %s", text, je.text);
    return j;
}

static void test_json(void) {
    stage st = start();
    ok(&st, "{\"addCharacter\":{\"character\":\"bob\",\"outfit\":\"suit\",\"expression\":\"angry\"}}");
    ok(&st, "{\"advanceClock\":{\"minutes\":75}}");
    ok(&st, "{\"setVariable\":{\"variable\":\"alice-trust\",\"value\":5}}");
    ok(&st, "{\"setVariable\":{\"variable\":\"found-key\",\"value\":true}}");
    json_t *j = stage_to_json(&st, g_s);
    CHECK(j != NULL);
    char *text = json_dumps(j, JSON_SORT_KEYS | JSON_COMPACT);
    CHECK_STR(text, "{\"characters\":[{\"body\":\"body\",\"character\":\"alice\",\"expression\":\"smile\",\"outfit\":"
                    "\"formal\"},{\"body\":\"body\",\"character\":\"bob\",\"expression\":\"angry\",\"outfit\":\"suit\"}],"
                    "\"clock\":\"01:15\",\"episode\":\"evening\",\"minutes\":75,\"scene\":\"tavern\","
                    "\"variables\":{\"alice-trust\":5,\"found-key\":true,\"weather\":\"rain\"}}");
    free(text);
    stage back;
    memset(&back, 0x55, sizeof back);
    sim_err err;
    CHECK_MSG(stage_from_json(&back, g_s, j, &err) == SIM_OK, "%s", err.msg);
    CHECK_EQ_INT(back.episode, st.episode);
    CHECK_EQ_INT(back.scene, st.scene);
    CHECK_EQ_INT(back.minutes, 75);
    CHECK_EQ_INT(back.n_on_stage, 2);
    CHECK(memcmp(back.on_stage, st.on_stage, 2 * sizeof *st.on_stage) == 0);
    CHECK(memcmp(back.vars, st.vars, 3 * sizeof *st.vars) == 0);
    json_decref(j);
    // Without "clock" it still reads.
    j = state_json("{\"episode\":\"evening\",\"scene\":\"pier\",\"minutes\":0,\"characters\":[]}");
    CHECK(stage_from_json(&back, g_s, j, &err) == SIM_OK);
    CHECK_EQ_INT(back.n_on_stage, 0);
    CHECK_EQ_INT(back.scene, PIER);
    CHECK_EQ_INT(back.vars[0], 3); // absent variables read as their defaults
    CHECK_EQ_INT(back.vars[2], 1);
    json_decref(j);
}

static void test_json_refused(void) {
    static const struct {
        const char *json, *frag;
    } cases[] = {
        {"[]", "must be a JSON object"},
        {"{\"episode\":\"evening\",\"scene\":\"pier\",\"minutes\":0,\"characters\":[],\"x\":1}", "unknown field \"x\""},
        {"{\"scene\":\"pier\",\"minutes\":0,\"characters\":[]}", "missing \"episode\""},
        {"{\"episode\":\"morning\",\"scene\":\"pier\",\"minutes\":0,\"characters\":[]}",
         "no episode has the id 'morning' (valid: evening)"},
        {"{\"episode\":\"evening\",\"scene\":\"beach\",\"minutes\":0,\"characters\":[]}",
         "no scene has the id 'beach' (valid: pier, tavern)"},
        {"{\"episode\":\"evening\",\"scene\":\"pier\",\"characters\":[]}", "\"minutes\" must be an integer"},
        {"{\"episode\":\"evening\",\"scene\":\"pier\",\"minutes\":-1,\"characters\":[]}", "\"minutes\" must be an integer 0.."},
        {"{\"episode\":\"evening\",\"scene\":\"pier\",\"minutes\":999999999,\"characters\":[]}", "\"minutes\" must be"},
        {"{\"episode\":\"evening\",\"scene\":\"pier\",\"minutes\":75,\"clock\":\"01:16\",\"characters\":[]}",
         "\"clock\" must be \"01:15\""},
        {"{\"episode\":\"evening\",\"scene\":\"pier\",\"minutes\":0}", "\"characters\" must be an array"},
        {"{\"episode\":\"evening\",\"scene\":\"pier\",\"minutes\":0,\"characters\":[1]}", "characters[0]: must be an object"},
        {"{\"episode\":\"evening\",\"scene\":\"pier\",\"minutes\":0,\"characters\":[{\"character\":\"alice\",\"body\":"
         "\"body\",\"outfit\":\"casual\"}]}",
         "characters[0]: missing \"expression\""},
        {"{\"episode\":\"evening\",\"scene\":\"pier\",\"minutes\":0,\"characters\":[{\"character\":\"carol\",\"body\":"
         "\"body\",\"outfit\":\"casual\",\"expression\":\"sad\"}]}",
         "no character has the id 'carol'"},
        {"{\"episode\":\"evening\",\"scene\":\"pier\",\"minutes\":0,\"characters\":[{\"character\":\"alice\",\"body\":"
         "\"body\",\"outfit\":\"suit\",\"expression\":\"sad\"}]}",
         "'alice' has no outfit 'suit'"},
        {"{\"episode\":\"evening\",\"scene\":\"pier\",\"minutes\":0,\"characters\":[{\"character\":\"alice\",\"body\":"
         "\"body\",\"outfit\":\"casual\",\"expression\":\"calm\"}]}",
         "'alice' has no expression 'calm'"},
        {"{\"episode\":\"evening\",\"scene\":\"pier\",\"minutes\":0,\"characters\":[{\"character\":\"alice\",\"body\":"
         "\"seated\",\"outfit\":\"casual\",\"expression\":\"sad\"}]}",
         "'alice' has no body 'seated'"},
        {"{\"episode\":\"evening\",\"scene\":\"pier\",\"minutes\":0,\"characters\":[{\"character\":\"alice\",\"body\":"
         "\"body\",\"outfit\":\"casual\",\"expression\":\"sad\",\"hat\":\"red\"}]}",
         "characters[0]: unknown field \"hat\""},
        {"{\"episode\":\"evening\",\"scene\":\"pier\",\"minutes\":0,\"characters\":[],\"variables\":[]}",
         "\"variables\" must be an object"},
        {"{\"episode\":\"evening\",\"scene\":\"pier\",\"minutes\":0,\"characters\":[],\"variables\":{\"gold\":1}}",
         "no variable has the id 'gold'"},
        {"{\"episode\":\"evening\",\"scene\":\"pier\",\"minutes\":0,\"characters\":[],\"variables\":{\"alice-trust\":11}}",
         "11 is outside 'alice-trust''s range 0..10"},
        {"{\"episode\":\"evening\",\"scene\":\"pier\",\"minutes\":0,\"characters\":[],\"variables\":{\"weather\":\"snow\"}}",
         "'snow' is not a value of 'weather' (valid: calm, rain, storm)"},
        {"{\"episode\":\"evening\",\"scene\":\"pier\",\"minutes\":0,\"characters\":[{\"character\":\"bob\",\"body\":"
         "\"body\",\"outfit\":\"suit\",\"expression\":\"calm\"},{\"character\":\"bob\",\"body\":\"body\",\"outfit\":"
         "\"oilskin\",\"expression\":\"calm\"}]}",
         "characters[1]: 'bob' is on stage twice"},
    };
    for (size_t i = 0; i < ARRAY_LEN(cases); i++) {
        json_t *j = state_json(cases[i].json);
        stage st = start(), before = st;
        sim_err err = {0};
        sim_status rc = stage_from_json(&st, g_s, j, &err);
        CHECK_MSG(rc == SIM_ERR_FORMAT, "case %zu accepted", i);
        CHECK_MSG(strstr(err.msg, cases[i].frag) != NULL, "case %zu: '%s' lacks '%s'", i, err.msg, cases[i].frag);
        CHECK(memcmp(&st, &before, sizeof st) == 0);
        json_decref(j);
    }
    // Too many characters (more than STAGE_MAX_ON_STAGE entries) is refused before any is read.
    json_t *j = state_json("{\"episode\":\"evening\",\"scene\":\"pier\",\"minutes\":0,\"characters\":[]}");
    for (int i = 0; i <= STAGE_MAX_ON_STAGE; i++) json_array_append_new(json_object_get(j, "characters"), json_null());
    stage st;
    sim_err err;
    CHECK(stage_from_json(&st, g_s, j, &err) == SIM_ERR_FORMAT);
    CHECK(strstr(err.msg, "at most 32") != NULL);
    json_decref(j);
}

static void test_valid_lists(void) {
    stage st = start();
    int out[8], n;
    n = stage_settable_scenes(&st, g_s, out);
    CHECK_EQ_INT(n, 1);
    CHECK_EQ_INT(out[0], PIER);
    n = stage_addable_characters(&st, g_s, out);
    CHECK_EQ_INT(n, 1);
    CHECK_EQ_INT(out[0], BOB);
    n = stage_switchable_outfits(&st, g_s, ALICE, out);
    CHECK_EQ_INT(n, 1);
    CHECK_EQ_INT(out[0], CASUAL);
    n = stage_switchable_expressions(&st, g_s, ALICE, out);
    CHECK_EQ_INT(n, 2);
    CHECK_EQ_INT(out[0], NEUTRAL);
    CHECK_EQ_INT(out[1], SAD);
    CHECK_EQ_INT(stage_switchable_outfits(&st, g_s, BOB, out), 0); // not on stage
    CHECK_EQ_INT(stage_switchable_expressions(&st, g_s, BOB, out), 0);

    ok(&st, "{\"setScene\":{\"scene\":\"pier\"}}");
    ok(&st, "{\"addCharacter\":{\"character\":\"bob\",\"expression\":\"angry\"}}");
    ok(&st, "{\"setExpression\":{\"character\":\"alice\",\"expression\":\"sad\"}}");
    n = stage_settable_scenes(&st, g_s, out);
    CHECK_EQ_INT(n, 1);
    CHECK_EQ_INT(out[0], TAVERN);
    CHECK_EQ_INT(stage_addable_characters(&st, g_s, out), 0);
    n = stage_switchable_expressions(&st, g_s, ALICE, out);
    CHECK_EQ_INT(n, 2);
    CHECK_EQ_INT(out[0], NEUTRAL);
    CHECK_EQ_INT(out[1], SMILE);
    n = stage_switchable_expressions(&st, g_s, BOB, out);
    CHECK_EQ_INT(n, 2);
    CHECK_EQ_INT(out[0], CALM);
    CHECK_EQ_INT(out[1], LAUGH);
    n = stage_switchable_outfits(&st, g_s, BOB, out);
    CHECK_EQ_INT(n, 1);
    CHECK_EQ_INT(out[0], SUIT);

    // Every listed option is accepted by stage_check, and every other one refused.
    ok(&st, "{\"removeCharacter\":{\"character\":\"alice\"}}");
    n = stage_addable_characters(&st, g_s, out);
    CHECK_EQ_INT(n, 1);
    CHECK_EQ_INT(out[0], ALICE);
    CHECK_EQ_INT(stage_switchable_outfits(&st, g_s, ALICE, out), 0);
    for (int e = 0; e < g_s->characters[BOB].n_expressions; e++) {
        int list[8], k = stage_switchable_expressions(&st, g_s, BOB, list);
        bool listed = false;
        for (int i = 0; i < k; i++) listed = listed || list[i] == e;
        json_t *cmd = json_pack("{s:{s:s, s:s}}", "setExpression", "character", "bob", "expression",
                                g_s->characters[BOB].expressions[e].id);
        stage_cmd c;
        sim_err err;
        CHECK_EQ_INT(stage_check(&st, g_s, cmd, &c, &err) == SIM_OK, listed);
        json_decref(cmd);
    }
}

static void test_full_stage(void) {
    // The fixture has two characters, so a full stage is built by hand
    // (placeholder entries that match no character): addCharacter must
    // still refuse rather than write past the array.
    stage st = start();
    st.n_on_stage = STAGE_MAX_ON_STAGE;
    for (int i = 1; i < STAGE_MAX_ON_STAGE; i++) st.on_stage[i] = (stage_char){-1, 0, 0, 0};
    refused(&st, "{\"addCharacter\":{\"character\":\"bob\"}}", "addCharacter: the stage is full (32 characters)");
    int out[8];
    CHECK_EQ_INT(stage_addable_characters(&st, g_s, out), 0);
}

static void test_variables(void) {
    stage st = start();
    CHECK_EQ_INT(g_s->n_variables, 3);
    CHECK_EQ_INT(st.vars[0], 3); // defaults
    CHECK_EQ_INT(st.vars[1], 0);
    CHECK_EQ_INT(st.vars[2], 1);
    ok(&st, "{\"setVariable\":{\"variable\":\"alice-trust\",\"value\":10}}");
    CHECK_EQ_INT(st.vars[0], 10);
    ok(&st, "{\"setVariable\":{\"variable\":\"alice-trust\",\"value\":0}}");
    ok(&st, "{\"setVariable\":{\"variable\":\"weather\",\"value\":\"storm\"}}");
    CHECK_EQ_INT(st.vars[2], 2);
    ok(&st, "{\"setVariable\":{\"variable\":\"found-key\",\"value\":true}}");
    CHECK_EQ_INT(st.vars[1], 1);
    refused(&st, "{\"setVariable\":{\"variable\":\"alice-trust\",\"value\":11}}", "11 is outside 'alice-trust''s range 0..10");
    refused(&st, "{\"setVariable\":{\"variable\":\"alice-trust\",\"value\":-1}}", "outside");
    refused(&st, "{\"setVariable\":{\"variable\":\"alice-trust\",\"value\":2.5}}", "takes an integer 0..10");
    refused(&st, "{\"setVariable\":{\"variable\":\"alice-trust\",\"value\":0}}", "'alice-trust' already has that value");
    refused(&st, "{\"setVariable\":{\"variable\":\"found-key\",\"value\":1}}", "'found-key' takes true or false");
    refused(&st, "{\"setVariable\":{\"variable\":\"weather\",\"value\":\"snow\"}}",
            "'snow' is not a value of 'weather' (valid: calm, rain, storm)");
    refused(&st, "{\"setVariable\":{\"variable\":\"gold\",\"value\":1}}",
            "no variable has the id 'gold' (valid: alice-trust, found-key, weather)");
    refused(&st, "{\"setVariable\":{\"variable\":\"weather\"}}", "missing \"value\"");
    refused(&st, "{\"setVariable\":{\"variable\":\"weather\",\"value\":\"calm\",\"by\":1}}", "unknown field \"by\"");
}

static int achievement(const char *id) {
    for (int i = 0; i < g_s->n_achievements; i++)
        if (strcmp(g_s->achievements[i].id, id) == 0) return i;
    CHECK_MSG(false, "no achievement %s", id);
    return 0;
}

static bool holds(const stage *st, const char *id) { return stage_holds(st, g_s, &g_s->achievements[achievement(id)].when); }

static void test_achievements(void) {
    CHECK_EQ_INT(g_s->n_achievements, 3);
    stage st = start(); // tavern, alice on stage, trust 3, rain, no key, 00:00
    CHECK(!holds(&st, "trusted"));
    CHECK(!holds(&st, "storm"));
    CHECK(!holds(&st, "late"));
    ok(&st, "{\"setVariable\":{\"variable\":\"alice-trust\",\"value\":8}}"); // atLeast is inclusive
    CHECK(holds(&st, "trusted"));
    ok(&st, "{\"removeCharacter\":{\"character\":\"alice\"}}"); // and alice must be on stage
    CHECK(!holds(&st, "trusted"));
    ok(&st, "{\"setVariable\":{\"variable\":\"weather\",\"value\":\"storm\"}}");
    CHECK(!holds(&st, "storm")); // still in the tavern ("not": scene tavern)
    ok(&st, "{\"setScene\":{\"scene\":\"pier\"}}");
    CHECK(holds(&st, "storm"));
    ok(&st, "{\"advanceClock\":{\"minutes\":119}}");
    CHECK(!holds(&st, "late"));
    ok(&st, "{\"advanceClock\":{\"minutes\":1}}"); // clockAtLeast 120 is inclusive
    CHECK(holds(&st, "late"));
    stage st2 = start();
    ok(&st2, "{\"setVariable\":{\"variable\":\"found-key\",\"value\":true}}"); // "any": the other branch
    CHECK(holds(&st2, "late"));
}

int main(int argc, char **argv) {
    test_init(argc, argv);
    snprintf(g_tmp, sizeof g_tmp, "/tmp/sim_stage_XXXXXX");
    if (!mkdtemp(g_tmp)) {
        perror("mkdtemp");
        return 1;
    }
    if (!build_fixture()) {
        fprintf(stderr, "the fixture scenario does not load\n");
        return 1;
    }
    TEST_RUN(test_start);
    TEST_RUN(test_commands);
    TEST_RUN(test_refusals);
    TEST_RUN(test_json);
    TEST_RUN(test_json_refused);
    TEST_RUN(test_valid_lists);
    TEST_RUN(test_full_stage);
    TEST_RUN(test_variables);
    TEST_RUN(test_achievements);
    scn_free(g_s);
    char cmd[400];
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", g_tmp);
    if (system(cmd) != 0) fprintf(stderr, "could not remove %s\n", g_tmp);
    return test_finish();
}
