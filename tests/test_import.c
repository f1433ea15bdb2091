// test_import.c — SillyTavern cards imported into scenario folders
// (src/story/import.h): a V2 PNG card into a new folder, a V3 JSON card
// added beside it, the duplicate id refused with the manifest unchanged byte
// for byte, the lorebook mapping, slugs. Every result is checked with scn_load.
#include <jansson.h>
#include <stdlib.h>
#include <sys/stat.h>
#include <unistd.h>

#include "base/file.h"
#include "base/sha256.h"
#include "story/card.h"
#include "story/import.h"
#include "story/scenario.h"
#include "test.h"

static char g_tmp[256];

// --- a PNG card (test.h: IHDR 1x1, tEXt chara, IDAT, IEND) -----------------------------

static test_buf g_png;

static const char *V2 =
    "{\"spec\":\"chara_card_v2\",\"spec_version\":\"2.0\",\"data\":{"
    "\"name\":\"Mira Vale\",\"description\":\"{{char}} keeps the lighthouse; she likes {{user}}.\","
    "\"personality\":\"wry, warm\",\"scenario\":\"A lighthouse on a cliff.\",\"first_mes\":\"Hello, {{user}}. I'm {{char}}.\","
    "\"mes_example\":\"\",\"creator_notes\":\"A quiet card.\",\"system_prompt\":\"\",\"post_history_instructions\":\"\","
    "\"alternate_greetings\":[\"Back again, {{user}}?\",\"The lamp is out.\"],\"tags\":[\"nsfw\"],\"creator\":\"\","
    "\"character_version\":\"\",\"extensions\":{},"
    "\"character_book\":{\"name\":\"Lore\",\"extensions\":{},\"entries\":["
    "{\"keys\":[\"lamp\",\"light\"],\"content\":\"The lamp is from 1890.\",\"extensions\":{},\"enabled\":true,"
    "\"insertion_order\":50,\"name\":\"The Lamp\",\"case_sensitive\":true,\"secondary_keys\":[\"old\"],\"selective\":true},"
    "{\"keys\":[],\"content\":\"{{char}} lives alone.\",\"extensions\":{},\"enabled\":true,\"insertion_order\":-5,\"constant\":true},"
    "{\"keys\":[\"off\"],\"content\":\"disabled\",\"extensions\":{},\"enabled\":false,\"insertion_order\":1},"
    "{\"keys\":[],\"content\":\"no keys\",\"extensions\":{},\"enabled\":true,\"insertion_order\":1}"
    "]}}}";

static const char *V3 =
    "{\"spec\":\"chara_card_v3\",\"spec_version\":\"3.0\",\"data\":{"
    "\"name\":\"Tomás\",\"description\":\"A fisherman.\",\"personality\":\"\",\"scenario\":\"\",\"first_mes\":\"Ahoy.\","
    "\"mes_example\":\"\",\"creator_notes\":\"\",\"system_prompt\":\"\",\"post_history_instructions\":\"\","
    "\"alternate_greetings\":[],\"group_only_greetings\":[],\"tags\":[],\"creator\":\"\",\"character_version\":\"\",\"extensions\":{},"
    "\"character_book\":{\"extensions\":{},\"entries\":[{\"keys\":[\"boat\"],\"content\":\"The boat leaks.\",\"extensions\":{},"
    "\"enabled\":true,\"insertion_order\":7,\"name\":\"The Lamp\",\"use_regex\":false}]}}}";

static void put_file(const char *name, const void *data, size_t n, char *path, size_t cap) {
    snprintf(path, cap, "%s/%s", g_tmp, name);
    sim_err err;
    CHECK(file_write_all(path, data, n, &err) == SIM_OK);
}

static scn_scenario *load(const char *dir) {
    scn_report rep;
    scn_report_init(&rep);
    scn_scenario *s = NULL;
    sim_err err;
    sim_status rc = scn_load(&s, dir, &rep, &err);
    CHECK_MSG(rc == SIM_OK, "%s: %s; first: %s: %s", dir, err.msg, rep.n ? rep.items[0].path : "", rep.n ? rep.items[0].msg : "");
    scn_report_free(&rep);
    return s;
}

static int find_char(const scn_scenario *s, const char *id) {
    for (int i = 0; i < s->n_characters; i++)
        if (strcmp(s->characters[i].id, id) == 0) return i;
    return -1;
}

static const scn_lore *find_lore(const scn_scenario *s, const char *id) {
    for (int i = 0; i < s->n_lore; i++)
        if (strcmp(s->lore[i].id, id) == 0) return &s->lore[i];
    return NULL;
}

static bool has_note(const imp_result *r, const char *part) {
    for (int i = 0; i < r->n_notes; i++)
        if (strstr(r->notes[i], part)) return true;
    return false;
}

// --- tests ------------------------------------------------------------------------------------------

static void test_slug(void) {
    static const char *cases[][2] = {
        {"Mira Vale", "mira-vale"}, {"  Élodie   Moreau!! ", "elodie-moreau"}, {"2B", "b"}, {"東京", ""},
        {"R2-D2", "r2-d2"}, {"---", ""}, {"Zoë_Ñ", "zoe-n"},
    };
    for (size_t i = 0; i < ARRAY_LEN(cases); i++) {
        char out[65];
        imp_slug(cases[i][0], out);
        CHECK_STR(out, cases[i][1]);
    }
    char longname[300], out[65];
    memset(longname, 'a', 299);
    longname[299] = 0;
    imp_slug(longname, out);
    CHECK_EQ_INT(strlen(out), 64);
}

static void test_new_and_add(void) {
    char dir[512], card_path[600], card2[600];
    snprintf(dir, sizeof dir, "%s/lighthouse", g_tmp);
    test_png_card(&g_png, V2);
    put_file("mira.png", g_png.d, g_png.n, card_path, sizeof card_path);
    imp_result r;
    sim_err err;
    CHECK_MSG(imp_card(card_path, dir, NULL, &r, &err) == SIM_OK, "%s", err.msg);
    CHECK(r.created);
    CHECK_STR(r.id, "mira-vale");
    CHECK_EQ_INT(r.n_episodes, 3);
    CHECK_EQ_INT(r.n_lore, 2); // the disabled and the keyless recent entries are skipped
    CHECK(has_note(&r, "1 disabled lorebook entry was skipped"));
    CHECK(has_note(&r, "without a usable key"));
    CHECK(has_note(&r, "secondary keys of 1 lorebook entry dropped"));
    CHECK(has_note(&r, "'appearance' is the description"));

    scn_scenario *s = load(dir);
    if (s) {
        CHECK_STR(s->id, "mira-vale");
        CHECK(s->nsfw);
        CHECK_EQ_INT(s->n_characters, 1);
        const scn_character *c = &s->characters[0];
        CHECK_STR(c->id, "mira-vale");
        CHECK_STR(scn_text(s, &c->name, "en-US"), "Mira Vale");
        CHECK_STR(scn_text(s, &c->about, "en-US"), "Mira Vale keeps the lighthouse; she likes You.");
        CHECK_STR(scn_text(s, &c->personality, "en-US"), "wry, warm");
        CHECK_STR(scn_text(s, &c->appearance, "en-US"), "Mira Vale keeps the lighthouse; she likes You.");
        CHECK(c->n_bodies == 1 && c->n_outfits == 1 && c->n_expressions == 1);
        CHECK_STR(c->bodies[0].image.path, "characters/mira-vale/card.png");
        // The body is the PNG card itself.
        uint8_t d[SHA256_SIZE];
        char hex[SHA256_HEX_SIZE];
        sha256(g_png.d, g_png.n, d);
        sha256_hex(d, hex);
        CHECK_STR(c->bodies[0].image.sha256, hex);
        CHECK_STR(c->outfits[0].id, "default");
        CHECK_STR(c->expressions[0].id, "neutral");
        CHECK(c->expressions[0].layers[0].x == 0 && c->expressions[0].layers[0].y == 0 && c->expressions[0].layers[0].scale == 1);
        CHECK_STR(scn_text(s, &s->global_scenario, "en-US"), "A lighthouse on a cliff.");
        CHECK_STR(scn_text(s, &s->about, "en-US"), "A quiet card.");
        CHECK_STR(scn_text(s, &s->player.name, "en-US"), "You");
        CHECK_EQ_INT(s->n_scenes, 1);
        CHECK_EQ_INT(s->n_episodes, 3);
        if (s->n_episodes == 3) {
            CHECK_STR(scn_text(s, &s->episodes[0].opening[0].text, "en-US"), "Hello, You. I'm Mira Vale.");
            CHECK_STR(scn_text(s, &s->episodes[1].opening[0].text, "en-US"), "Back again, You?");
            CHECK_EQ_INT(s->episodes[2].opening[0].speaker_index, 0);
            CHECK(s->episodes[2].n_allowed_speakers == 1 && s->episodes[2].allowed_speakers[0] == 0);
        }
        const scn_lore *l = find_lore(s, "mira-vale-the-lamp");
        CHECK(l != NULL);
        if (l) {
            CHECK(l->position == SCN_LORE_RECENT && l->priority == 50 && l->case_sensitive);
            CHECK(l->n_keys == 2 && strcmp(l->keys[0], "lamp") == 0 && strcmp(l->keys[1], "light") == 0);
            CHECK_STR(scn_text(s, &l->text, "en-US"), "The lamp is from 1890.");
        }
        l = find_lore(s, "mira-vale-lore-2");
        CHECK(l != NULL);
        if (l) {
            CHECK(l->position == SCN_LORE_SETUP && l->priority == -5 && !l->case_sensitive);
            CHECK_STR(scn_text(s, &l->text, "en-US"), "Mira Vale lives alone.");
        }
        scn_free(s);
    }

    // A second card, JSON V3: added beside the first; its lore id does not clash.
    put_file("tomas.json", V3, strlen(V3), card2, sizeof card2);
    CHECK_MSG(imp_card(card2, dir, NULL, &r, &err) == SIM_OK, "%s", err.msg);
    CHECK(!r.created);
    CHECK_STR(r.id, "tomas");
    CHECK(has_note(&r, "placeholder"));
    s = load(dir);
    if (s) {
        CHECK_EQ_INT(s->n_characters, 2);
        int t = find_char(s, "tomas");
        CHECK(t >= 0);
        if (t >= 0) {
            CHECK_STR(s->characters[t].bodies[0].image.path, "characters/tomas/placeholder.svg");
            CHECK_STR(scn_text(s, &s->characters[t].personality, "en-US"), "Not described.");
        }
        CHECK_EQ_INT(s->n_episodes, 3); // episodes are left alone
        CHECK(find_lore(s, "tomas-the-lamp") != NULL);
        CHECK_EQ_INT(s->n_lore, 3);
        scn_free(s);
    }

    // The same card again: refused, and the manifest is unchanged byte for byte.
    char mpath[600], *before, *after;
    size_t nb, na;
    snprintf(mpath, sizeof mpath, "%s/manifest.json", dir);
    CHECK(file_read_all(mpath, 1 << 24, &before, &nb, &err) == SIM_OK);
    CHECK(imp_card(card2, dir, NULL, &r, &err) == SIM_ERR_ARG);
    CHECK_MSG(strstr(err.msg, "a character with the id 'tomas' already exists"), "%s", err.msg);
    CHECK(imp_card(card2, dir, "mira-vale", &r, &err) == SIM_ERR_ARG);
    CHECK(imp_card(card2, dir, "Bad Id", &r, &err) == SIM_ERR_ARG && strstr(err.msg, "not a valid id"));
    CHECK(file_read_all(mpath, 1 << 24, &after, &na, &err) == SIM_OK);
    CHECK(nb == na && memcmp(before, after, nb) == 0);
    mem_free(after);
    char tmp[700];
    snprintf(tmp, sizeof tmp, "%s.tmp", mpath);
    CHECK(access(tmp, F_OK) != 0);
    // With --id it goes in.
    CHECK_MSG(imp_card(card2, dir, "tomas-2", &r, &err) == SIM_OK, "%s", err.msg);
    s = load(dir);
    if (s) CHECK(s->n_characters == 3 && find_char(s, "tomas-2") == 2);
    scn_free(s);
    mem_free(before);
}

static void test_refusals(void) {
    char dir[512], path[600];
    imp_result r;
    sim_err err;
    // A folder with files but no manifest.
    snprintf(dir, sizeof dir, "%s/busy", g_tmp);
    mkdir(dir, 0755);
    put_file("busy/file.txt", "x", 1, path, sizeof path);
    put_file("t3.json", V3, strlen(V3), path, sizeof path);
    CHECK(imp_card(path, dir, NULL, &r, &err) == SIM_ERR_ARG && strstr(err.msg, "has files but no manifest.json"));
    // A broken card.
    put_file("broken.json", "{\"name\": 3}", 11, path, sizeof path);
    snprintf(dir, sizeof dir, "%s/fresh", g_tmp);
    CHECK(imp_card(path, dir, NULL, &r, &err) != SIM_OK && strstr(err.msg, "broken.json"));
    CHECK(access(dir, F_OK) != 0); // nothing was created
    // A name with nothing to slug: the fallback id.
    const char *j = "{\"name\": \"東京\", \"description\": \"d\", \"first_mes\": \"\"}";
    put_file("tokyo.json", j, strlen(j), path, sizeof path);
    CHECK_MSG(imp_card(path, dir, NULL, &r, &err) == SIM_OK, "%s", err.msg);
    CHECK_STR(r.id, "character1");
    CHECK(has_note(&r, "no greeting"));
    scn_scenario *s = load(dir);
    if (s) CHECK(s->n_episodes == 1 && s->episodes[0].n_opening == 0);
    scn_free(s);
    CHECK_MSG(imp_card(path, dir, NULL, &r, &err) == SIM_OK, "%s", err.msg);
    CHECK_STR(r.id, "character2");
}

// A hostile card: more lore entries than written, a description over the
// scenario's string limit (cut at a character boundary), a very long name.
static void test_hostile(void) {
    size_t cap = (size_t)4 << 20;
    char *j = malloc(cap);
    size_t n = 0;
    n += (size_t)snprintf(j + n, cap - n, "{\"spec\":\"chara_card_v2\",\"spec_version\":\"2.0\",\"data\":{\"name\":\"");
    for (int i = 0; i < 300; i++) n += (size_t)snprintf(j + n, cap - n, "\u00e9");
    n += (size_t)snprintf(j + n, cap - n, "\",\"description\":\"");
    for (int i = 0; i < 40000; i++) n += (size_t)snprintf(j + n, cap - n, "\u00e9"); // 80000 bytes of UTF-8
    n += (size_t)snprintf(j + n, cap - n, "\",\"first_mes\":\"hi\",\"character_book\":{\"entries\":[");
    for (int i = 0; i < IMP_MAX_LORE + 200; i++)
        n += (size_t)snprintf(j + n, cap - n, "%s{\"keys\":[\"k%d\"],\"content\":\"c\",\"extensions\":{},\"enabled\":true,\"insertion_order\":%d}",
                              i ? "," : "", i, i);
    n += (size_t)snprintf(j + n, cap - n, "]}}}");
    char path[600], dir[512];
    put_file("hostile.json", j, n, path, sizeof path);
    free(j);
    snprintf(dir, sizeof dir, "%s/hostile", g_tmp);
    imp_result r;
    sim_err err;
    CHECK_MSG(imp_card(path, dir, NULL, &r, &err) == SIM_OK, "%s", err.msg);
    CHECK_EQ_INT(r.n_lore, IMP_MAX_LORE);
    CHECK(has_note(&r, "only 1000 lorebook entries were imported"));
    CHECK(has_note(&r, "the description was cut"));
    CHECK_EQ_INT(strlen(r.id), 64);
    scn_scenario *s = load(dir);
    if (s) {
        const char *about = scn_text(s, &s->characters[0].about, "en-US");
        CHECK(about && strlen(about) <= SCN_MAX_STRING && strlen(about) % 2 == 0);
        CHECK_EQ_INT(s->n_lore, IMP_MAX_LORE);
    }
    scn_free(s);
}

int main(int argc, char **argv) {
    test_init(argc, argv);
    snprintf(g_tmp, sizeof g_tmp, "/tmp/sim_test_import_XXXXXX");
    if (!mkdtemp(g_tmp)) {
        perror("mkdtemp");
        return 1;
    }
    TEST_RUN(test_slug);
    TEST_RUN(test_new_and_add);
    TEST_RUN(test_refusals);
    TEST_RUN(test_hostile);
    char cmd[300];
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", g_tmp);
    if (system(cmd) != 0) fprintf(stderr, "could not remove %s\n", g_tmp);
    return test_finish();
}
