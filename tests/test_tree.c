// test_tree.c — the story tree: a replayed scenario of operations (add,
// regenerate, choose, edit, rewind, branch) with the expected path after
// each; fork; delete (rows counted through a separate connection); ownership
// refusals; checkpoints across branches; saves with a blob; the completion
// log; achievements; the FTS memory search (ranking, filters, hostile
// queries); a reopen round trip; refused files (not SQLite, corrupt, another
// application, a newer schema) left byte for byte unchanged; threads; and
// allocation failures.
#include <pthread.h>
#include <sqlite3.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "base/file.h"
#include "story/tree.h"
#include "test.h"

static char g_tmp[256];

static const char *tmp_path(char *buf, size_t cap, const char *name) {
    snprintf(buf, cap, "%s/%s", g_tmp, name);
    return buf;
}

static tree_db *open_db(const char *name) {
    char p[512];
    tree_db *db = NULL;
    sim_err err;
    sim_status s = tree_open(&db, tmp_path(p, sizeof p, name), &err);
    CHECK_MSG(s == SIM_OK, "%s", err.msg);
    return db;
}

static int64_t add_line(tree_db *db, const char *user, int64_t story, int64_t parent, const char *speaker,
                        const char *text) {
    tree_update_in in = {.speaker = speaker, .text = text, .minutes = 10, .source = TREE_SOURCE_MODEL,
                         .stage = "{\"scene\":\"pier\"}"};
    int64_t id = 0;
    sim_err err;
    sim_status s = tree_update_add(db, user, story, parent, &in, &id, &err);
    CHECK_MSG(s == SIM_OK, "%s", err.msg);
    return id;
}

// Compares the story's path (or path_from head when head >= 0) with want.
static void check_path_at(int line, tree_db *db, const char *user, int64_t story, int64_t head, const int64_t *want,
                          int n_want) {
    tree_update *p = NULL;
    int n = 0;
    sim_err err;
    sim_status s = head >= 0 ? tree_path_from(db, user, story, head, &p, &n, &err)
                             : tree_path(db, user, story, &p, &n, &err);
    CHECK_MSG(s == SIM_OK, "line %d: %s", line, err.msg);
    bool same = n == n_want;
    for (int i = 0; same && i < n; i++) same = p[i].id == want[i];
    if (!same) {
        fprintf(stderr, "  line %d: path [", line);
        for (int i = 0; i < n; i++) fprintf(stderr, "%s%lld", i ? " " : "", (long long)p[i].id);
        fprintf(stderr, "], want [");
        for (int i = 0; i < n_want; i++) fprintf(stderr, "%s%lld", i ? " " : "", (long long)want[i]);
        fprintf(stderr, "]\n");
        test_g.cur_failures++;
    }
    // The path is linked: each parent is the previous update and chooses it.
    for (int i = 0; same && i < n; i++) {
        CHECK_EQ_INT(p[i].parent, i ? p[i - 1].id : 0);
        if (head < 0 && i) CHECK_EQ_INT(p[i - 1].chosen, p[i].id);
    }
    tree_updates_free(p, n);
}

#define IDS(...) ((const int64_t[]){__VA_ARGS__}), (int)(sizeof((const int64_t[]){__VA_ARGS__}) / sizeof(int64_t))
#define CHECK_PATH(db, user, story, ...) check_path_at(__LINE__, db, user, story, -1, IDS(__VA_ARGS__))
#define CHECK_PATH_FROM(db, user, story, head, ...) check_path_at(__LINE__, db, user, story, head, IDS(__VA_ARGS__))
#define CHECK_PATH_EMPTY(db, user, story) check_path_at(__LINE__, db, user, story, -1, NULL, 0)

static void check_children_at(int line, tree_db *db, const char *user, int64_t story, int64_t id,
                              int want_chosen, const int64_t *want, int n_want) {
    int64_t *ids = NULL;
    int n = 0, chosen = -2;
    sim_err err;
    sim_status s = tree_update_children(db, user, story, id, &ids, &n, &chosen, &err);
    CHECK_MSG(s == SIM_OK, "line %d: %s", line, err.msg);
    bool same = n == n_want && chosen == want_chosen;
    for (int i = 0; same && i < n; i++) same = ids[i] == want[i];
    if (!same) {
        fprintf(stderr, "  line %d: children of %lld [", line, (long long)id);
        for (int i = 0; i < n; i++) fprintf(stderr, "%s%lld", i ? " " : "", (long long)ids[i]);
        fprintf(stderr, "] chosen %d, want [", chosen);
        for (int i = 0; i < n_want; i++) fprintf(stderr, "%s%lld", i ? " " : "", (long long)want[i]);
        fprintf(stderr, "] chosen %d\n", want_chosen);
        test_g.cur_failures++;
    }
    tree_ids_free(ids);
}

#define CHECK_CHILDREN(db, user, story, id, chosen, ...)                                                      \
    check_children_at(__LINE__, db, user, story, id, chosen, IDS(__VA_ARGS__))

static int64_t head_of(tree_db *db, const char *user, int64_t story) {
    tree_story s;
    sim_err err;
    CHECK(tree_story_get(db, user, story, &s, &err) == SIM_OK);
    int64_t h = s.head;
    tree_story_free(&s);
    return h;
}

// --- the replayed scenario -----------------------------------------------------------

static void test_scenario_replay(void) {
    tree_db *db = open_db("replay.db");
    if (!db) return;
    sim_err err;
    int64_t story = 0;
    CHECK(tree_story_create(db, "ann", "lighthouse", "1.0", "last-ferry", "First night", &story, &err) == SIM_OK);
    CHECK(story > 0);
    CHECK_PATH_EMPTY(db, "ann", story);
    CHECK_EQ_INT(head_of(db, "ann", story), 0);

    // Three lines.
    int64_t a = add_line(db, "ann", story, 0, "narrator", "The ferry is late.");
    CHECK_PATH(db, "ann", story, a);
    int64_t b = add_line(db, "ann", story, a, "mira", "It always is.");
    CHECK_PATH(db, "ann", story, a, b);
    int64_t c = add_line(db, "ann", story, b, "narrator", "Fog rolls in.");
    CHECK_PATH(db, "ann", story, a, b, c);
    CHECK_EQ_INT(head_of(db, "ann", story), c);

    // The fields round trip.
    tree_update_in in = {.speaker = "mira", .text = "Look — the lamp!", .minutes = 75, .source = TREE_SOURCE_PLAYER,
                         .commands = "[{\"setScene\":{\"scene\":\"pier\"}}]", .stage = "{\"minutes\":75}"};
    int64_t c2 = 0;
    CHECK(tree_update_add(db, "ann", story, b, &in, &c2, &err) == SIM_OK); // regenerate: a sibling of c
    tree_update u;
    CHECK(tree_update_get(db, "ann", c2, &u, &err) == SIM_OK);
    CHECK_EQ_INT(u.id, c2);
    CHECK_EQ_INT(u.story, story);
    CHECK_EQ_INT(u.parent, b);
    CHECK_STR(u.speaker, "mira");
    CHECK_STR(u.text, "Look — the lamp!");
    CHECK_STR(u.commands, "[{\"setScene\":{\"scene\":\"pier\"}}]");
    CHECK_STR(u.stage, "{\"minutes\":75}");
    CHECK_EQ_INT(u.minutes, 75);
    CHECK_EQ_INT(u.source, TREE_SOURCE_PLAYER);
    CHECK_EQ_INT(u.edit_of, 0);
    CHECK_EQ_INT(u.chosen, 0);
    CHECK_EQ_INT(u.thumbs, 0);
    CHECK(u.created > 1600000000000LL);
    tree_update_free(&u);
    CHECK_STR(tree_source_name(TREE_SOURCE_SCRIPT), "script");

    // Two variants; the new one chosen.
    CHECK_CHILDREN(db, "ann", story, b, 1, c, c2);
    CHECK_PATH(db, "ann", story, a, b, c2);
    // Choose back.
    CHECK(tree_update_choose(db, "ann", c, &err) == SIM_OK);
    CHECK_CHILDREN(db, "ann", story, b, 0, c, c2);
    CHECK_PATH(db, "ann", story, a, b, c);
    // A line under c; choosing c2 and c again follows the chosen chain down.
    int64_t d = add_line(db, "ann", story, c, "mira", "Then we wait.");
    CHECK_PATH(db, "ann", story, a, b, c, d);
    CHECK(tree_update_choose(db, "ann", c2, &err) == SIM_OK);
    CHECK_PATH(db, "ann", story, a, b, c2);
    CHECK(tree_update_choose(db, "ann", c, &err) == SIM_OK);
    CHECK_PATH(db, "ann", story, a, b, c, d);

    // Edit b: a sibling with edit_of; the original and its subtree stay.
    int64_t b2 = 0;
    CHECK(tree_update_edit(db, "ann", b, "It never is.", NULL, &b2, &err) == SIM_OK);
    CHECK(b2 > d);
    CHECK_PATH(db, "ann", story, a, b2);
    CHECK_CHILDREN(db, "ann", story, a, 1, b, b2);
    CHECK(tree_update_get(db, "ann", b2, &u, &err) == SIM_OK);
    CHECK_EQ_INT(u.edit_of, b);
    CHECK_EQ_INT(u.parent, a);
    CHECK_STR(u.speaker, "mira");
    CHECK_STR(u.text, "It never is.");
    CHECK_STR(u.stage, "{\"scene\":\"pier\"}");
    CHECK_EQ_INT(u.minutes, 10);
    CHECK(u.commands == NULL);
    tree_update_free(&u);
    CHECK(tree_update_get(db, "ann", b, &u, &err) == SIM_OK);
    CHECK_STR(u.text, "It always is.");
    CHECK_EQ_INT(u.chosen, c);
    tree_update_free(&u);
    CHECK_CHILDREN(db, "ann", story, b, 0, c, c2);
    // An edit with new commands.
    int64_t c3 = 0;
    CHECK(tree_update_edit(db, "ann", c2, "Look, a light!", "[]", &c3, &err) == SIM_OK);
    CHECK(tree_update_get(db, "ann", c3, &u, &err) == SIM_OK);
    CHECK_STR(u.commands, "[]");
    CHECK_EQ_INT(u.source, TREE_SOURCE_PLAYER);
    CHECK_EQ_INT(u.minutes, 75);
    tree_update_free(&u);
    CHECK_PATH(db, "ann", story, a, b, c3); // every ancestor chose the way to c3
    CHECK_CHILDREN(db, "ann", story, a, 0, b, b2);
    CHECK_CHILDREN(db, "ann", story, b, 2, c, c2, c3);
    CHECK(tree_update_choose(db, "ann", c, &err) == SIM_OK);
    CHECK_PATH(db, "ann", story, a, b, c, d);

    // Rewind keeps the chosen chain, so choose comes back.
    CHECK(tree_rewind(db, "ann", story, a, &err) == SIM_OK);
    CHECK_PATH(db, "ann", story, a);
    CHECK_CHILDREN(db, "ann", story, a, 0, b, b2);
    CHECK(tree_update_get(db, "ann", a, &u, &err) == SIM_OK);
    CHECK_EQ_INT(u.chosen, b);
    tree_update_free(&u);
    CHECK(tree_update_choose(db, "ann", b, &err) == SIM_OK);
    CHECK_PATH(db, "ann", story, a, b, c, d);
    // Rewind, then add: a new branch.
    CHECK(tree_rewind(db, "ann", story, a, &err) == SIM_OK);
    int64_t e = add_line(db, "ann", story, a, "narrator", "A horn sounds.");
    CHECK_PATH(db, "ann", story, a, e);
    CHECK_CHILDREN(db, "ann", story, a, 2, b, b2, e);
    CHECK_PATH_FROM(db, "ann", story, d, a, b, c, d); // the old branch is all there
    CHECK_PATH_FROM(db, "ann", story, 0);

    // Rewind to before the first line; a second first line.
    CHECK(tree_rewind(db, "ann", story, 0, &err) == SIM_OK);
    CHECK_PATH_EMPTY(db, "ann", story);
    CHECK_CHILDREN(db, "ann", story, 0, 0, a);
    int64_t r2 = add_line(db, "ann", story, 0, "narrator", "Rain.");
    CHECK_PATH(db, "ann", story, r2);
    CHECK_CHILDREN(db, "ann", story, 0, 1, a, r2);
    tree_story st;
    CHECK(tree_story_get(db, "ann", story, &st, &err) == SIM_OK);
    CHECK_EQ_INT(st.first_chosen, r2);
    CHECK_EQ_INT(st.head, r2);
    CHECK_STR(st.scenario, "lighthouse");
    CHECK_STR(st.scenario_version, "1.0");
    CHECK_STR(st.episode, "last-ferry");
    CHECK_STR(st.owner, "ann");
    CHECK_STR(st.title, "First night");
    tree_story_free(&st);
    CHECK(tree_update_choose(db, "ann", a, &err) == SIM_OK);
    CHECK_PATH(db, "ann", story, a, e);
    CHECK_CHILDREN(db, "ann", story, 0, 0, a, r2);
    check_children_at(__LINE__, db, "ann", story, d, -1, NULL, 0); // a leaf
    CHECK(tree_update_choose(db, "ann", d, &err) == SIM_OK);
    CHECK_PATH(db, "ann", story, a, b, c, d);

    // Thumbs.
    CHECK(tree_update_thumbs(db, "ann", c, 1, &err) == SIM_OK);
    CHECK(tree_update_thumbs(db, "ann", d, -1, &err) == SIM_OK);
    CHECK(tree_update_get(db, "ann", c, &u, &err) == SIM_OK);
    CHECK_EQ_INT(u.thumbs, 1);
    tree_update_free(&u);
    CHECK(tree_update_thumbs(db, "ann", c, 2, &err) == SIM_ERR_RANGE);

    // Refusals change nothing.
    int64_t other = 0, x = 0;
    CHECK(tree_story_create(db, "ann", "lighthouse", "1.0", "last-ferry", "Other", &other, &err) == SIM_OK);
    int64_t o1 = add_line(db, "ann", other, 0, "narrator", "Elsewhere.");
    CHECK(tree_update_add(db, "ann", story, o1, &in, &x, &err) == SIM_ERR_ARG); // parent of another story
    CHECK_MSG(strstr(err.msg, "not found") != NULL, "%s", err.msg);
    CHECK(tree_rewind(db, "ann", story, o1, &err) == SIM_ERR_ARG);
    CHECK(tree_path_from(db, "ann", story, o1, &(tree_update *){0}, &(int){0}, &err) == SIM_ERR_ARG);
    CHECK(tree_update_add(db, "ann", story, 999999, &in, &x, &err) == SIM_ERR_ARG);
    tree_update_in bad = in;
    bad.text = "bad \xff utf8";
    CHECK(tree_update_add(db, "ann", story, d, &bad, &x, &err) == SIM_ERR_FORMAT);
    bad = in;
    bad.commands = "{\"setScene\":{}}";
    CHECK(tree_update_add(db, "ann", story, d, &bad, &x, &err) == SIM_ERR_FORMAT);
    CHECK_MSG(strstr(err.msg, "array") != NULL, "%s", err.msg);
    bad.commands = "[1,";
    CHECK(tree_update_add(db, "ann", story, d, &bad, &x, &err) == SIM_ERR_FORMAT);
    bad = in;
    bad.stage = "{not json";
    CHECK(tree_update_add(db, "ann", story, d, &bad, &x, &err) == SIM_ERR_FORMAT);
    bad = in;
    bad.source = (tree_source)7;
    CHECK(tree_update_add(db, "ann", story, d, &bad, &x, &err) == SIM_ERR_ARG);
    bad = in;
    bad.minutes = -1;
    CHECK(tree_update_add(db, "ann", story, d, &bad, &x, &err) == SIM_ERR_RANGE);
    bad = in;
    bad.speaker = "";
    CHECK(tree_update_add(db, "ann", story, d, &bad, &x, &err) == SIM_ERR_ARG);
    char *big = malloc(TREE_MAX_TEXT + 2);
    memset(big, 'a', TREE_MAX_TEXT + 1);
    big[TREE_MAX_TEXT + 1] = 0;
    bad = in;
    bad.text = big;
    CHECK(tree_update_add(db, "ann", story, d, &bad, &x, &err) == SIM_ERR_RANGE);
    big[TREE_MAX_TEXT] = 0; // exactly the limit
    bad.text = big;
    x = 0;
    CHECK(tree_update_add(db, "ann", story, d, &bad, &x, &err) == SIM_OK);
    free(big);
    CHECK_PATH(db, "ann", story, a, b, c, d, x);
    CHECK(tree_rewind(db, "ann", story, d, &err) == SIM_OK);
    CHECK(tree_update_edit(db, "ann", d, "x", "{}", &x, &err) == SIM_ERR_FORMAT);
    CHECK_PATH(db, "ann", story, a, b, c, d);
    CHECK(tree_update_get(db, "ann", 0, &u, &err) == SIM_ERR_ARG);
    CHECK(tree_update_choose(db, "ann", 12345678, &err) == SIM_ERR_ARG);
    CHECK_STR(err.msg, "update 12345678 not found");
    // An edit without new commands keeps the original's.
    CHECK(tree_update_edit(db, "ann", c2, "Look, the lamp.", NULL, &x, &err) == SIM_OK);
    CHECK(tree_update_get(db, "ann", x, &u, &err) == SIM_OK);
    CHECK_STR(u.commands, "[{\"setScene\":{\"scene\":\"pier\"}}]");
    CHECK_EQ_INT(u.edit_of, c2);
    tree_update_free(&u);
    CHECK_PATH(db, "ann", story, a, b, x);
    tree_close(db);
}

// --- fork ----------------------------------------------------------------------------

static void test_fork(void) {
    tree_db *db = open_db("fork.db");
    if (!db) return;
    sim_err err;
    int64_t s1 = 0;
    CHECK(tree_story_create(db, "ann", "lighthouse", "1.0", "last-ferry", "Original", &s1, &err) == SIM_OK);
    int64_t a = add_line(db, "ann", s1, 0, "narrator", "One.");
    int64_t b = add_line(db, "ann", s1, a, "mira", "Two.");
    int64_t b2 = add_line(db, "ann", s1, a, "mira", "Two again."); // a variant
    int64_t c = add_line(db, "ann", s1, b, "narrator", "Three.");
    int64_t d = add_line(db, "ann", s1, c, "narrator", "Four.");
    (void)b2;
    tree_update *orig = NULL;
    int n_orig = 0;
    CHECK(tree_path_from(db, "ann", s1, c, &orig, &n_orig, &err) == SIM_OK);

    int64_t s2 = 0;
    CHECK(tree_story_fork(db, "bob", s1, c, NULL, &s2, &err) == SIM_ERR_ARG); // bob cannot see it
    CHECK(tree_story_fork(db, "ann", s1, c, "Fork", &s2, &err) == SIM_OK);
    CHECK(s2 != s1);
    tree_update *p = NULL;
    int n = 0;
    CHECK(tree_path(db, "ann", s2, &p, &n, &err) == SIM_OK);
    CHECK_EQ_INT(n, 3);
    for (int i = 0; i < n && i < n_orig; i++) {
        CHECK(p[i].id != orig[i].id);
        CHECK_EQ_INT(p[i].story, s2);
        CHECK_STR(p[i].text, orig[i].text);
        CHECK_STR(p[i].speaker, orig[i].speaker);
        CHECK_STR(p[i].stage, orig[i].stage);
        CHECK_EQ_INT(p[i].minutes, orig[i].minutes);
        CHECK_EQ_INT(p[i].source, orig[i].source);
        CHECK_EQ_INT(p[i].created, orig[i].created);
        CHECK_EQ_INT(p[i].edit_of, 0);
        // No variants in the fork.
        int64_t *ids = NULL;
        int nc = 0, ch = -1;
        CHECK(tree_update_children(db, "ann", s2, i ? p[i - 1].id : 0, &ids, &nc, &ch, &err) == SIM_OK);
        CHECK_EQ_INT(nc, 1);
        CHECK_EQ_INT(ch, 0);
        tree_ids_free(ids);
    }
    tree_story st;
    CHECK(tree_story_get(db, "ann", s2, &st, &err) == SIM_OK);
    CHECK_STR(st.title, "Fork");
    CHECK_STR(st.owner, "ann");
    CHECK_STR(st.scenario, "lighthouse");
    CHECK_EQ_INT(st.head, n == 3 ? p[2].id : -1);
    CHECK_EQ_INT(st.first_chosen, n ? p[0].id : -1);
    tree_story_free(&st);
    tree_updates_free(p, n);
    tree_updates_free(orig, n_orig);
    // The original is unchanged.
    CHECK_PATH(db, "ann", s1, a, b, c, d);
    CHECK_CHILDREN(db, "ann", s1, a, 0, b, b2);

    // A fork of nothing; a fork by another user of an ownerless story.
    int64_t s3 = 0, s4 = 0, open_story = 0;
    CHECK(tree_story_fork(db, "ann", s1, 0, NULL, &s3, &err) == SIM_OK);
    CHECK_PATH_EMPTY(db, "ann", s3);
    CHECK(tree_story_get(db, "ann", s3, &st, &err) == SIM_OK);
    CHECK_STR(st.title, "Original");
    tree_story_free(&st);
    CHECK(tree_story_create(db, NULL, "lighthouse", "1.0", "last-ferry", "Shared", &open_story, &err) == SIM_OK);
    int64_t o = add_line(db, NULL, open_story, 0, "narrator", "Open.");
    CHECK(tree_story_fork(db, "bob", open_story, o, NULL, &s4, &err) == SIM_OK);
    CHECK(tree_story_get(db, "bob", s4, &st, &err) == SIM_OK);
    CHECK_STR(st.owner, "bob");
    tree_story_free(&st);
    CHECK(tree_story_get(db, "ann", s4, &st, &err) == SIM_ERR_ARG);
    // A fork at an update of another story is refused.
    CHECK(tree_story_fork(db, "ann", s1, o, NULL, &s4, &err) == SIM_ERR_ARG);
    tree_close(db);
}

// --- delete --------------------------------------------------------------------------

static int64_t count_rows(sqlite3 *sql, const char *q, int64_t id) {
    sqlite3_stmt *st = NULL;
    int64_t n = -1;
    if (sqlite3_prepare_v2(sql, q, -1, &st, NULL) == SQLITE_OK) {
        sqlite3_bind_int64(st, 1, id);
        if (sqlite3_step(st) == SQLITE_ROW) n = sqlite3_column_int64(st, 0);
    } else {
        fprintf(stderr, "  %s: %s\n", q, sqlite3_errmsg(sql));
    }
    sqlite3_finalize(st);
    return n;
}

// Fills a story with one row of every kind.
static int64_t fill_story(tree_db *db, const char *user, const char *word) {
    sim_err err;
    int64_t s = 0, id = 0;
    CHECK(tree_story_create(db, user, "lighthouse", "1.0", "last-ferry", word, &s, &err) == SIM_OK);
    int64_t a = add_line(db, user, s, 0, "narrator", word);
    int64_t b = add_line(db, user, s, a, "mira", word);
    CHECK(tree_update_edit(db, user, b, word, NULL, &id, &err) == SIM_OK);
    CHECK(tree_checkpoint_add(db, user, s, a, "summary", "{}", NULL, &id, &err) == SIM_OK);
    CHECK(tree_save_add(db, user, s, b, "save", (const uint8_t *)"png", 3, "/tmp/x.state", &id, &err) == SIM_OK);
    tree_completion c = {.update = b, .prompt_hash = "abcdef", .options = "{}", .n_prompt_tokens = 5};
    CHECK(tree_completion_add(db, user, s, &c, &id, &err) == SIM_OK);
    CHECK(tree_achievement_unlock(db, user, s, "first-steps", a, &err) == SIM_OK);
    return s;
}

static const char *const STORY_TABLES[] = {
    "SELECT count(*) FROM story WHERE id = ?1",        "SELECT count(*) FROM upd WHERE story = ?1",
    "SELECT count(*) FROM checkpoint WHERE story = ?1", "SELECT count(*) FROM save WHERE story = ?1",
    "SELECT count(*) FROM completion WHERE story = ?1", "SELECT count(*) FROM achievement WHERE story = ?1",
};

static void test_delete(void) {
    tree_db *db = open_db("delete.db");
    if (!db) return;
    sim_err err;
    int64_t gone = fill_story(db, "ann", "zanzibar");
    int64_t kept = fill_story(db, "ann", "quixotic");
    CHECK(tree_story_delete(db, "bob", gone, &err) == SIM_ERR_ARG); // not bob's
    char want[64];
    snprintf(want, sizeof want, "story %lld not found", (long long)gone);
    CHECK_STR(err.msg, want);
    CHECK(tree_story_delete(db, "ann", gone, &err) == SIM_OK);
    CHECK(tree_story_delete(db, "ann", gone, &err) == SIM_ERR_ARG); // already gone
    tree_story st;
    CHECK(tree_story_get(db, "ann", gone, &st, &err) == SIM_ERR_ARG);
    tree_close(db);

    // Count through a fresh connection.
    char p[512];
    sqlite3 *sql = NULL;
    CHECK(sqlite3_open_v2(tmp_path(p, sizeof p, "delete.db"), &sql, SQLITE_OPEN_READONLY, NULL) == SQLITE_OK);
    for (size_t i = 0; i < ARRAY_LEN(STORY_TABLES); i++) {
        CHECK_EQ_INT(count_rows(sql, STORY_TABLES[i], gone), 0);
        CHECK_MSG(count_rows(sql, STORY_TABLES[i], kept) >= 1, "%s", STORY_TABLES[i]);
    }
    CHECK_EQ_INT(count_rows(sql, "SELECT count(*) FROM upd_fts WHERE upd_fts MATCH 'zanzibar' AND ?1", 1), 0);
    CHECK_EQ_INT(count_rows(sql, "SELECT count(*) FROM upd_fts WHERE upd_fts MATCH 'quixotic' AND ?1", 1), 3);
    CHECK_EQ_INT(count_rows(sql, "SELECT count(*) FROM upd WHERE ?1", 1), 3);
    sqlite3_close(sql);

    // And through the module.
    db = open_db("delete.db");
    if (!db) return;
    tree_update *path = NULL;
    int n = 0;
    CHECK(tree_path(db, "ann", kept, &path, &n, &err) == SIM_OK);
    CHECK_EQ_INT(n, 2);
    tree_updates_free(path, n);
    tree_close(db);
}

// --- ownership -----------------------------------------------------------------------

static void test_ownership(void) {
    tree_db *db = open_db("owner.db");
    if (!db) return;
    sim_err err;
    int64_t s = fill_story(db, "ann", "owned");
    int64_t a = head_of(db, "ann", s);
    char want[64], want_missing[64];
    snprintf(want, sizeof want, "story %lld not found", (long long)s);
    snprintf(want_missing, sizeof want_missing, "story %lld not found", (long long)(s + 1000));

    const char *strangers[] = {"bob", NULL};
    for (int k = 0; k < 2; k++) {
        const char *who = strangers[k];
        tree_story st;
        tree_update u;
        tree_update *p;
        int n, ch;
        int64_t id, *ids;
        CHECK(tree_story_get(db, who, s, &st, &err) == SIM_ERR_ARG);
        CHECK_STR(err.msg, want); // the same words as a story that does not exist
        CHECK(tree_story_get(db, who, s + 1000, &st, &err) == SIM_ERR_ARG);
        CHECK_STR(err.msg, want_missing);
        CHECK(tree_story_rename(db, who, s, "mine", &err) == SIM_ERR_ARG);
        CHECK(tree_path(db, who, s, &p, &n, &err) == SIM_ERR_ARG);
        CHECK(tree_path_from(db, who, s, a, &p, &n, &err) == SIM_ERR_ARG);
        CHECK(tree_update_get(db, who, a, &u, &err) == SIM_ERR_ARG);
        snprintf(want_missing, sizeof want_missing, "update %lld not found", (long long)a);
        CHECK_STR(err.msg, want_missing);
        snprintf(want_missing, sizeof want_missing, "story %lld not found", (long long)(s + 1000));
        CHECK(tree_update_children(db, who, s, 0, &ids, &n, &ch, &err) == SIM_ERR_ARG);
        CHECK(tree_update_children(db, who, 0, a, &ids, &n, &ch, &err) == SIM_ERR_ARG);
        CHECK(tree_update_choose(db, who, a, &err) == SIM_ERR_ARG);
        CHECK(tree_update_edit(db, who, a, "hijack", NULL, &id, &err) == SIM_ERR_ARG);
        CHECK(tree_update_thumbs(db, who, a, 1, &err) == SIM_ERR_ARG);
        CHECK(tree_rewind(db, who, s, 0, &err) == SIM_ERR_ARG);
        tree_update_in in = {.speaker = "x", .text = "x"};
        CHECK(tree_update_add(db, who, s, 0, &in, &id, &err) == SIM_ERR_ARG);
        CHECK(tree_checkpoint_add(db, who, s, a, "s", NULL, NULL, &id, &err) == SIM_ERR_ARG);
        tree_checkpoint cp;
        CHECK(tree_checkpoint_latest_on_path(db, who, s, a, &cp, &err) == SIM_ERR_ARG);
        tree_save *sv;
        CHECK(tree_save_list(db, who, s, &sv, &n, &err) == SIM_ERR_ARG);
        CHECK(tree_save_add(db, who, s, a, "s", NULL, 0, NULL, &id, &err) == SIM_ERR_ARG);
        tree_completion *cl;
        CHECK(tree_completion_list(db, who, s, 10, &cl, &n, &err) == SIM_ERR_ARG);
        tree_achievement *ac;
        CHECK(tree_achievement_list(db, who, s, &ac, &n, &err) == SIM_ERR_ARG);
        CHECK(tree_achievement_unlock(db, who, s, "x", 0, &err) == SIM_ERR_ARG);
        tree_hit *h;
        CHECK(tree_memory_search(db, who, s, "owned", &a, 1, 5, &h, &n, &err) == SIM_ERR_ARG);
        CHECK(tree_story_delete(db, who, s, &err) == SIM_ERR_ARG);
    }
    // Saves by id too.
    tree_save *sv = NULL;
    int n = 0;
    CHECK(tree_save_list(db, "ann", s, &sv, &n, &err) == SIM_OK);
    CHECK_EQ_INT(n, 1);
    int64_t save_id = n ? sv[0].id : 0;
    tree_saves_free(sv, n);
    tree_save one;
    CHECK(tree_save_get(db, "bob", save_id, &one, &err) == SIM_ERR_ARG);
    CHECK(tree_save_delete(db, "bob", save_id, &err) == SIM_ERR_ARG);
    CHECK(tree_save_get(db, "ann", save_id, &one, &err) == SIM_OK);
    tree_save_free(&one);
    // Still all there for ann.
    tree_story st;
    CHECK(tree_story_get(db, "ann", s, &st, &err) == SIM_OK);
    CHECK_STR(st.title, "owned");
    tree_story_free(&st);

    // Ownerless stories are open to everyone; lists filter by owner and scenario, newest first.
    int64_t open_story = 0, s2 = 0, s3 = 0;
    CHECK(tree_story_create(db, NULL, "lighthouse", "1.0", "e", "open", &open_story, &err) == SIM_OK);
    CHECK(tree_story_get(db, "bob", open_story, &st, &err) == SIM_OK);
    CHECK(st.owner == NULL);
    tree_story_free(&st);
    CHECK(tree_story_rename(db, "bob", open_story, "renamed", &err) == SIM_OK);
    CHECK(tree_story_create(db, "ann", "harbor", "2", "e", "second", &s2, &err) == SIM_OK);
    CHECK(tree_story_create(db, "ann", "lighthouse", "1.0", "e", "third", &s3, &err) == SIM_OK);
    tree_story *list = NULL;
    CHECK(tree_story_list(db, "ann", NULL, &list, &n, &err) == SIM_OK);
    CHECK_EQ_INT(n, 3);
    if (n == 3) {
        CHECK_EQ_INT(list[0].id, s3);
        CHECK_EQ_INT(list[1].id, s2);
        CHECK_EQ_INT(list[2].id, s);
    }
    tree_stories_free(list, n);
    CHECK(tree_story_list(db, "ann", "lighthouse", &list, &n, &err) == SIM_OK);
    CHECK_EQ_INT(n, 2);
    tree_stories_free(list, n);
    CHECK(tree_story_list(db, "bob", NULL, &list, &n, &err) == SIM_OK);
    CHECK_EQ_INT(n, 0);
    CHECK(list == NULL);
    CHECK(tree_story_list(db, NULL, NULL, &list, &n, &err) == SIM_OK);
    CHECK_EQ_INT(n, 1);
    if (n == 1) CHECK_STR(list[0].title, "renamed");
    tree_stories_free(list, n);
    // Bad strings.
    CHECK(tree_story_create(db, "ann\xc3", "x", "1", "e", "t", &s2, &err) == SIM_ERR_FORMAT);
    CHECK(tree_story_create(db, "", "x", "1", "e", "t", &s2, &err) == SIM_ERR_ARG);
    CHECK(tree_story_create(db, "ann", "", "1", "e", "t", &s2, &err) == SIM_ERR_ARG);
    CHECK(tree_story_create(db, "ann", "x", "1", "e", NULL, &s2, &err) == SIM_ERR_ARG);
    tree_close(db);
}

// --- checkpoints ---------------------------------------------------------------------

static void test_checkpoints(void) {
    tree_db *db = open_db("cp.db");
    if (!db) return;
    sim_err err;
    int64_t s = 0;
    CHECK(tree_story_create(db, "ann", "lighthouse", "1.0", "e", "cp", &s, &err) == SIM_OK);
    int64_t a = add_line(db, "ann", s, 0, "n", "a");
    int64_t b = add_line(db, "ann", s, a, "n", "b");
    int64_t c = add_line(db, "ann", s, b, "n", "c");
    int64_t d = add_line(db, "ann", s, c, "n", "d");
    int64_t x = add_line(db, "ann", s, b, "n", "x"); // a branch at b
    int64_t y = add_line(db, "ann", s, x, "n", "y");
    int64_t r = add_line(db, "ann", s, 0, "n", "r"); // a second root
    tree_checkpoint cp;
    // None yet.
    CHECK(tree_checkpoint_latest_on_path(db, "ann", s, d, &cp, &err) == SIM_OK);
    CHECK_EQ_INT(cp.id, 0);
    int64_t k1 = 0, k2 = 0, k3 = 0, k4 = 0;
    CHECK(tree_checkpoint_add(db, "ann", s, a, "Mira waits.", "{\"minutes\":1}", NULL, &k1, &err) == SIM_OK);
    CHECK(tree_checkpoint_add(db, "ann", s, c, "Fog.", "{\"minutes\":3}", "/states/c.bin", &k2, &err) == SIM_OK);
    CHECK(tree_checkpoint_add(db, "ann", s, x, "A light.", NULL, NULL, &k3, &err) == SIM_OK);
    struct {
        int64_t head, want;
    } cases[] = {{a, k1}, {b, k1}, {c, k2}, {d, k2}, {x, k3}, {y, k3}, {r, 0}, {0, 0}};
    for (size_t i = 0; i < ARRAY_LEN(cases); i++) {
        CHECK(tree_checkpoint_latest_on_path(db, "ann", s, cases[i].head, &cp, &err) == SIM_OK);
        CHECK_MSG(cp.id == cases[i].want, "head %lld: checkpoint %lld, want %lld", (long long)cases[i].head,
                  (long long)cp.id, (long long)cases[i].want);
        tree_checkpoint_free(&cp);
    }
    CHECK(tree_checkpoint_latest_on_path(db, "ann", s, d, &cp, &err) == SIM_OK);
    CHECK_EQ_INT(cp.story, s);
    CHECK_EQ_INT(cp.update, c);
    CHECK_STR(cp.summary, "Fog.");
    CHECK_STR(cp.stage, "{\"minutes\":3}");
    CHECK_STR(cp.state_path, "/states/c.bin");
    CHECK(cp.created > 0);
    tree_checkpoint_free(&cp);
    // Two at the same update: the newest.
    CHECK(tree_checkpoint_add(db, "ann", s, c, "Fog, again.", NULL, NULL, &k4, &err) == SIM_OK);
    CHECK(tree_checkpoint_latest_on_path(db, "ann", s, d, &cp, &err) == SIM_OK);
    CHECK_EQ_INT(cp.id, k4);
    CHECK(cp.stage == NULL && cp.state_path == NULL);
    tree_checkpoint_free(&cp);
    // Refusals.
    int64_t other = 0, o = 0, id;
    CHECK(tree_story_create(db, "ann", "lighthouse", "1.0", "e", "other", &other, &err) == SIM_OK);
    o = add_line(db, "ann", other, 0, "n", "o");
    CHECK(tree_checkpoint_add(db, "ann", s, o, "s", NULL, NULL, &id, &err) == SIM_ERR_ARG);
    CHECK(tree_checkpoint_add(db, "ann", s, 0, "s", NULL, NULL, &id, &err) == SIM_ERR_ARG);
    CHECK(tree_checkpoint_add(db, "ann", s, a, "s", "{", NULL, &id, &err) == SIM_ERR_FORMAT);
    CHECK(tree_checkpoint_latest_on_path(db, "ann", s, o, &cp, &err) == SIM_ERR_ARG);
    tree_close(db);
}

// --- saves, completions, achievements ------------------------------------------------

static void test_saves(void) {
    tree_db *db = open_db("saves.db");
    if (!db) return;
    sim_err err;
    int64_t s = 0;
    CHECK(tree_story_create(db, "ann", "lighthouse", "1.0", "e", "saves", &s, &err) == SIM_OK);
    int64_t a = add_line(db, "ann", s, 0, "n", "a");
    uint8_t thumb[1000];
    for (size_t i = 0; i < sizeof thumb; i++) thumb[i] = (uint8_t)(i * 7); // with NUL bytes inside
    int64_t v1 = 0, v2 = 0, v3 = 0;
    CHECK(tree_save_add(db, "ann", s, a, "Before the storm", thumb, sizeof thumb, "/st/1.kv", &v1, &err) == SIM_OK);
    CHECK(tree_save_add(db, "ann", s, 0, "Start", NULL, 0, NULL, &v2, &err) == SIM_OK);
    CHECK(tree_save_add(db, "ann", s, a, "Empty thumb", thumb, 0, NULL, &v3, &err) == SIM_OK);
    tree_save sv;
    CHECK(tree_save_get(db, "ann", v1, &sv, &err) == SIM_OK);
    CHECK_EQ_INT(sv.id, v1);
    CHECK_EQ_INT(sv.story, s);
    CHECK_EQ_INT(sv.update, a);
    CHECK_STR(sv.name, "Before the storm");
    CHECK_STR(sv.state_path, "/st/1.kv");
    CHECK_EQ_INT(sv.n_thumb, sizeof thumb);
    CHECK(sv.thumb && memcmp(sv.thumb, thumb, sizeof thumb) == 0);
    tree_save_free(&sv);
    CHECK(tree_save_get(db, "ann", v2, &sv, &err) == SIM_OK);
    CHECK(sv.thumb == NULL && sv.n_thumb == 0 && sv.state_path == NULL && sv.update == 0);
    tree_save_free(&sv);
    CHECK(tree_save_get(db, "ann", v3, &sv, &err) == SIM_OK);
    CHECK_EQ_INT(sv.n_thumb, 0);
    tree_save_free(&sv);
    tree_save *list = NULL;
    int n = 0;
    CHECK(tree_save_list(db, "ann", s, &list, &n, &err) == SIM_OK);
    CHECK_EQ_INT(n, 3);
    if (n == 3) {
        CHECK_EQ_INT(list[0].id, v3);
        CHECK_EQ_INT(list[2].id, v1);
        CHECK(list[2].thumb == NULL);
        CHECK_STR(list[2].name, "Before the storm");
    }
    tree_saves_free(list, n);
    CHECK(tree_save_delete(db, "ann", v1, &err) == SIM_OK);
    CHECK(tree_save_get(db, "ann", v1, &sv, &err) == SIM_ERR_ARG);
    CHECK(tree_save_delete(db, "ann", v1, &err) == SIM_ERR_ARG);
    CHECK(tree_save_list(db, "ann", s, &list, &n, &err) == SIM_OK);
    CHECK_EQ_INT(n, 2);
    tree_saves_free(list, n);
    int64_t id;
    CHECK(tree_save_add(db, "ann", s, a, "x", NULL, 5, NULL, &id, &err) == SIM_ERR_ARG);
    CHECK(tree_save_add(db, "ann", s, a, "x", thumb, TREE_MAX_THUMB + 1, NULL, &id, &err) == SIM_ERR_RANGE);
    tree_close(db);
}

static void test_completions(void) {
    tree_db *db = open_db("compl.db");
    if (!db) return;
    sim_err err;
    int64_t s = 0;
    CHECK(tree_story_create(db, NULL, "lighthouse", "1.0", "e", "c", &s, &err) == SIM_OK);
    int64_t a = add_line(db, NULL, s, 0, "n", "a");
    int64_t ids[3] = {0};
    for (int i = 0; i < 3; i++) {
        tree_completion c = {.update = i ? a : 0, .prompt_hash = "0123456789abcdefABCDEF",
                             .options = "{\"temperature\":0.7}", .n_prompt_tokens = 100 + i, .n_reused = 90,
                             .n_decoded = 10 + i, .n_generated = 20 + i, .ms_prompt = 1.5 * i, .ms_generate = 30.25};
        CHECK(tree_completion_add(db, NULL, s, &c, &ids[i], &err) == SIM_OK);
    }
    tree_completion *list = NULL;
    int n = 0;
    CHECK(tree_completion_list(db, NULL, s, 2, &list, &n, &err) == SIM_OK);
    CHECK_EQ_INT(n, 2);
    if (n == 2) {
        CHECK_EQ_INT(list[0].id, ids[2]);
        CHECK_EQ_INT(list[1].id, ids[1]);
        CHECK_EQ_INT(list[0].story, s);
        CHECK_EQ_INT(list[0].update, a);
        CHECK_STR(list[0].prompt_hash, "0123456789abcdefABCDEF");
        CHECK_STR(list[0].options, "{\"temperature\":0.7}");
        CHECK_EQ_INT(list[0].n_prompt_tokens, 102);
        CHECK_EQ_INT(list[0].n_reused, 90);
        CHECK_EQ_INT(list[0].n_decoded, 12);
        CHECK_EQ_INT(list[0].n_generated, 22);
        CHECK_NEAR(list[0].ms_prompt, 3.0, 0);
        CHECK_NEAR(list[0].ms_generate, 30.25, 0);
        CHECK(list[0].created > 0);
    }
    tree_completions_free(list, n);
    CHECK(tree_completion_list(db, NULL, s, 100, &list, &n, &err) == SIM_OK);
    CHECK_EQ_INT(n, 3);
    if (n == 3) CHECK_EQ_INT(list[2].update, 0);
    tree_completions_free(list, n);
    tree_completion bad = {.prompt_hash = "xyz", .options = "{}"};
    int64_t id;
    CHECK(tree_completion_add(db, NULL, s, &bad, &id, &err) == SIM_ERR_FORMAT);
    bad.prompt_hash = "ab";
    bad.options = "{";
    CHECK(tree_completion_add(db, NULL, s, &bad, &id, &err) == SIM_ERR_FORMAT);
    bad.options = NULL;
    bad.n_decoded = -1;
    CHECK(tree_completion_add(db, NULL, s, &bad, &id, &err) == SIM_ERR_RANGE);
    tree_close(db);
}

static void test_achievements(void) {
    tree_db *db = open_db("ach.db");
    if (!db) return;
    sim_err err;
    int64_t s = 0;
    CHECK(tree_story_create(db, "ann", "lighthouse", "1.0", "e", "a", &s, &err) == SIM_OK);
    int64_t a = add_line(db, "ann", s, 0, "n", "a");
    int64_t b = add_line(db, "ann", s, a, "n", "b");
    CHECK(tree_achievement_unlock(db, "ann", s, "met-mira", a, &err) == SIM_OK);
    CHECK(tree_achievement_unlock(db, "ann", s, "met-mira", b, &err) == SIM_OK); // kept: the first
    CHECK(tree_achievement_unlock(db, "ann", s, "lit-lamp", b, &err) == SIM_OK);
    CHECK(tree_achievement_unlock(db, "ann", s, "secret", 0, &err) == SIM_OK);
    tree_achievement *list = NULL;
    int n = 0;
    CHECK(tree_achievement_list(db, "ann", s, &list, &n, &err) == SIM_OK);
    CHECK_EQ_INT(n, 3);
    if (n == 3) {
        CHECK_STR(list[0].achievement, "met-mira");
        CHECK_EQ_INT(list[0].update, a);
        CHECK_STR(list[1].achievement, "lit-lamp");
        CHECK_EQ_INT(list[1].update, b);
        CHECK_STR(list[2].achievement, "secret");
        CHECK_EQ_INT(list[2].update, 0);
        CHECK(list[0].created > 0);
    }
    tree_achievements_free(list, n);
    CHECK(tree_achievement_unlock(db, "ann", s, "", a, &err) == SIM_ERR_ARG);
    CHECK(tree_achievement_unlock(db, "ann", s, "x", 99999, &err) == SIM_ERR_ARG);
    tree_close(db);
}

// --- long-term memory ----------------------------------------------------------------

static void check_query(const char *in, const char *want) {
    char buf[512];
    int n = tree_memory_query(in, buf, sizeof buf);
    CHECK_MSG(n >= 0 && strcmp(buf, want) == 0, "query [%s] -> [%s], want [%s]", in, buf, want);
    CHECK_EQ_INT(n, (int)strlen(want));
}

static void test_memory_query(void) {
    check_query("", "");
    check_query("a to be", "");
    check_query("lighthouse lamp", "\"lighthouse\" OR \"lamp\"");
    check_query("\"lighthouse\" OR lamp*", "\"lighthouse\" OR \"lamp\"");
    check_query("NEAR(lamp fog, 2)", "\"NEAR\" OR \"lamp\" OR \"fog\"");
    check_query("text:lamp -fog ^sea {text}", "\"text\" OR \"lamp\" OR \"fog\" OR \"sea\"");
    check_query("Lamp lamp LAMP lamps", "\"Lamp\" OR \"lamps\"");
    check_query("café, naïve — 東京タワー", "\"café\" OR \"naïve\" OR \"東京タワー\"");
    check_query("\xff\xfelamp\xc3(fog", "\"lamp\" OR \"fog\"");
    char buf[8];
    CHECK_EQ_INT(tree_memory_query("lighthouse", buf, sizeof buf), -1);
    // At most TREE_MAX_QUERY_WORDS words.
    char many[2048] = "", big[4096];
    for (int i = 0; i < 40; i++) snprintf(many + strlen(many), sizeof many - strlen(many), "word%03d ", i);
    int n = tree_memory_query(many, big, sizeof big);
    int words = 0;
    for (const char *p = big; (p = strstr(p, "\"word")); p++) words++;
    CHECK(n > 0);
    CHECK_EQ_INT(words, TREE_MAX_QUERY_WORDS);
}

static void test_memory_search(void) {
    tree_db *db = open_db("memory.db");
    if (!db) return;
    sim_err err;
    int64_t s = 0, s2 = 0;
    CHECK(tree_story_create(db, "ann", "lighthouse", "1.0", "e", "m", &s, &err) == SIM_OK);
    CHECK(tree_story_create(db, "ann", "lighthouse", "1.0", "e", "m2", &s2, &err) == SIM_OK);
    int64_t u[6];
    u[0] = add_line(db, "ann", s, 0, "n", "The lighthouse keeper lit the lamp at dusk.");
    u[1] = add_line(db, "ann", s, u[0], "n", "Mira walked along the pier in the rain.");
    u[2] = add_line(db, "ann", s, u[1], "n", "The old lighthouse stood dark over the harbor.");
    u[3] = add_line(db, "ann", s, u[2], "n", "She ordered a café crème at the harbor bar.");
    u[4] = add_line(db, "ann", s, u[3], "n", "Nothing happened for a while.");
    u[5] = add_line(db, "ann", s, u[4], "n", "Quotes \"inside\" the line: (x) * - ^ {} lamp");
    int64_t foreign = add_line(db, "ann", s2, 0, "n", "Another lighthouse with a lamp, in another story.");
    int64_t all[7] = {u[0], u[1], u[2], u[3], u[4], u[5], foreign};
    tree_hit *h = NULL;
    int n = 0;

    // Both words beat one word; the other story never shows, even when allowed.
    CHECK(tree_memory_search(db, "ann", s, "lighthouse lamp", all, 7, 10, &h, &n, &err) == SIM_OK);
    CHECK_EQ_INT(n, 3);
    if (n == 3) {
        CHECK_EQ_INT(h[0].id, u[0]);
        CHECK_STR(h[0].text, "The lighthouse keeper lit the lamp at dusk.");
        CHECK(h[0].score > h[1].score && h[1].score >= h[2].score);
        CHECK((h[1].id == u[2] && h[2].id == u[5]) || (h[1].id == u[5] && h[2].id == u[2]));
    }
    tree_hits_free(h, n);
    // The allowed filter happens before the limit.
    int64_t some[2] = {u[2], u[3]};
    CHECK(tree_memory_search(db, "ann", s, "lighthouse lamp", some, 2, 1, &h, &n, &err) == SIM_OK);
    CHECK_EQ_INT(n, 1);
    if (n == 1) CHECK_EQ_INT(h[0].id, u[2]);
    tree_hits_free(h, n);
    CHECK(tree_memory_search(db, "ann", s, "lighthouse lamp", all, 7, 1, &h, &n, &err) == SIM_OK);
    CHECK_EQ_INT(n, 1);
    if (n == 1) CHECK_EQ_INT(h[0].id, u[0]);
    tree_hits_free(h, n);
    CHECK(tree_memory_search(db, "ann", s, "lighthouse lamp", NULL, 0, 10, &h, &n, &err) == SIM_OK);
    CHECK_EQ_INT(n, 0);
    CHECK(h == NULL);
    // Diacritics and case fold: "CAFE" finds "café".
    CHECK(tree_memory_search(db, "ann", s, "CAFE", all, 7, 10, &h, &n, &err) == SIM_OK);
    CHECK_EQ_INT(n, 1);
    if (n == 1) CHECK_EQ_INT(h[0].id, u[3]);
    tree_hits_free(h, n);
    // Edits are indexed too.
    int64_t e = 0;
    CHECK(tree_update_edit(db, "ann", u[4], "A gull screamed.", NULL, &e, &err) == SIM_OK);
    int64_t with_e[2] = {e, u[4]};
    CHECK(tree_memory_search(db, "ann", s, "gull", with_e, 2, 10, &h, &n, &err) == SIM_OK);
    CHECK_EQ_INT(n, 1);
    tree_hits_free(h, n);

    // No word: no hit, no error.
    const char *empty[] = {"", "   ", "a b c", "!!", "\"\"", "*", "((", "to be", "\xff\xfe"};
    for (size_t i = 0; i < ARRAY_LEN(empty); i++) {
        CHECK_MSG(tree_memory_search(db, "ann", s, empty[i], all, 7, 10, &h, &n, &err) == SIM_OK, "[%s]: %s",
                  empty[i], err.msg);
        CHECK_EQ_INT(n, 0);
        tree_hits_free(h, n);
    }
    // Hostile text: never an error, and the same hits as the bare words
    // (the extra words match nothing).
    tree_hit *base = NULL;
    int n_base = 0;
    CHECK(tree_memory_search(db, "ann", s, "lighthouse lamp", all, 7, 10, &base, &n_base, &err) == SIM_OK);
    const char *hostile[] = {
        "\"lighthouse\" \"lamp",         "lighthouse* lamp*",           "NEAR(lighthouse lamp, 1)",
        "lighthouse OR lamp",            "-lighthouse -lamp",           "text:lighthouse text:lamp",
        "{text}: lighthouse ^lamp",      "lighthouse\" OR \"lamp\" OR \"",  "lighthouse'); DROP TABLE upd;-- lamp",
        "lighthouse + lamp :: ** ()",    "\x01\x02lighthouse\x7flamp\x1b", "lighthouse\xff\xc3lamp\xe2\x82",
        "ЛАМПА lighthouse lamp 灯台 🌊", "lighthouse lamp lighthouse lamp LAMP",
    };
    for (size_t i = 0; i < ARRAY_LEN(hostile); i++) {
        sim_status st = tree_memory_search(db, "ann", s, hostile[i], all, 7, 10, &h, &n, &err);
        CHECK_MSG(st == SIM_OK, "[%s]: %s", hostile[i], err.msg);
        bool same = n == n_base;
        for (int k = 0; same && k < n; k++) same = h[k].id == base[k].id && h[k].score == base[k].score;
        CHECK_MSG(same, "[%s]: %d hits, want %d", hostile[i], n, n_base);
        tree_hits_free(h, n);
    }
    tree_hits_free(base, n_base);
    // The table is still whole.
    tree_update *p = NULL;
    CHECK(tree_path(db, "ann", s, &p, &n, &err) == SIM_OK);
    CHECK_EQ_INT(n, 5);
    tree_updates_free(p, n);
    // A word that is only in the quoted text of u[5] finds it.
    CHECK(tree_memory_search(db, "ann", s, "\"inside\"", all, 7, 10, &h, &n, &err) == SIM_OK);
    CHECK_EQ_INT(n, 1);
    if (n == 1) CHECK_EQ_INT(h[0].id, u[5]);
    tree_hits_free(h, n);
    CHECK(tree_memory_search(db, "ann", s, "lamp", all, -1, 10, &h, &n, &err) == SIM_ERR_ARG);
    tree_close(db);
}

// --- files ---------------------------------------------------------------------------

static void test_reopen(void) {
    char path[512];
    tmp_path(path, sizeof path, "reopen.db");
    tree_db *db = open_db("reopen.db");
    if (!db) return;
    sim_err err;
    int64_t s = fill_story(db, "ann", "persisted");
    int64_t head = head_of(db, "ann", s);
    tree_update *p1 = NULL;
    int n1 = 0;
    CHECK(tree_path(db, "ann", s, &p1, &n1, &err) == SIM_OK);
    tree_close(db);

    db = open_db("reopen.db");
    if (!db) {
        tree_updates_free(p1, n1);
        return;
    }
    CHECK_EQ_INT(head_of(db, "ann", s), head);
    tree_update *p2 = NULL;
    int n2 = 0;
    CHECK(tree_path(db, "ann", s, &p2, &n2, &err) == SIM_OK);
    CHECK_EQ_INT(n1, n2);
    for (int i = 0; i < n1 && i < n2; i++) {
        CHECK_EQ_INT(p1[i].id, p2[i].id);
        CHECK_STR(p1[i].text, p2[i].text);
        CHECK_STR(p1[i].stage, p2[i].stage);
        CHECK_EQ_INT(p1[i].edit_of, p2[i].edit_of);
        CHECK_EQ_INT(p1[i].created, p2[i].created);
    }
    tree_updates_free(p1, n1);
    tree_updates_free(p2, n2);
    tree_save *sv = NULL;
    int n = 0;
    CHECK(tree_save_list(db, "ann", s, &sv, &n, &err) == SIM_OK);
    CHECK_EQ_INT(n, 1);
    tree_saves_free(sv, n);
    tree_achievement *ac = NULL;
    CHECK(tree_achievement_list(db, "ann", s, &ac, &n, &err) == SIM_OK);
    CHECK_EQ_INT(n, 1);
    tree_achievements_free(ac, n);
    tree_checkpoint cp;
    CHECK(tree_checkpoint_latest_on_path(db, "ann", s, head, &cp, &err) == SIM_OK);
    CHECK(cp.id > 0);
    tree_checkpoint_free(&cp);
    tree_hit *h = NULL;
    CHECK(tree_memory_search(db, "ann", s, "persisted", &head, 1, 5, &h, &n, &err) == SIM_OK);
    CHECK_EQ_INT(n, 1);
    tree_hits_free(h, n);
    tree_close(db);

    // The header marks and the journal mode.
    sqlite3 *sql = NULL;
    CHECK(sqlite3_open_v2(path, &sql, SQLITE_OPEN_READONLY, NULL) == SQLITE_OK);
    CHECK_EQ_INT(count_rows(sql, "PRAGMA application_id", 0), TREE_APP_ID);
    CHECK_EQ_INT(count_rows(sql, "PRAGMA user_version", 0), TREE_SCHEMA_VERSION);
    sqlite3_stmt *st = NULL;
    CHECK(sqlite3_prepare_v2(sql, "PRAGMA journal_mode", -1, &st, NULL) == SQLITE_OK);
    CHECK(sqlite3_step(st) == SQLITE_ROW);
    CHECK_STR((const char *)sqlite3_column_text(st, 0), "wal");
    sqlite3_finalize(st);
    sqlite3_close(sql);

    // In memory, and an empty file, are fine.
    CHECK(tree_open(&db, ":memory:", &err) == SIM_OK);
    int64_t m = 0;
    CHECK(tree_story_create(db, NULL, "x", "1", "e", "t", &m, &err) == SIM_OK);
    tree_close(db);
    char empty[512];
    CHECK(file_write_all(tmp_path(empty, sizeof empty, "empty.db"), "", 0, &err) == SIM_OK);
    CHECK(tree_open(&db, empty, &err) == SIM_OK);
    tree_close(db);
}

static char *slurp(const char *path, size_t *n) {
    char *d = NULL;
    sim_err err;
    if (file_read_all(path, (size_t)64 << 20, &d, n, &err) != SIM_OK) return NULL;
    return d;
}

// tree_open must fail with code and a message holding `words`, leaving the file as it was.
static void check_refused_at(int line, const char *path, sim_status code, const char *words) {
    size_t n0 = 0, n1 = 0;
    char *before = slurp(path, &n0);
    CHECK_MSG(before != NULL, "line %d: cannot read %s", line, path);
    tree_db *db = NULL;
    sim_err err = {0};
    sim_status s = tree_open(&db, path, &err);
    CHECK_MSG(s == code, "line %d: status %d, want %d (%s)", line, (int)s, (int)code, err.msg);
    CHECK_MSG(db == NULL, "line %d", line);
    CHECK_MSG(strstr(err.msg, words) != NULL, "line %d: [%s] lacks [%s]", line, err.msg, words);
    CHECK_MSG(strstr(err.msg, path) != NULL, "line %d: [%s] names no file", line, err.msg);
    if (db) tree_close(db);
    char *after = slurp(path, &n1);
    CHECK_MSG(after && n0 == n1 && memcmp(before, after, n0) == 0, "line %d: %s changed", line, path);
    mem_free(before);
    mem_free(after);
}
#define CHECK_REFUSED(path, code, words) check_refused_at(__LINE__, path, code, words)

static void raw_exec(const char *path, const char *q) {
    sqlite3 *sql = NULL;
    CHECK(sqlite3_open(path, &sql) == SQLITE_OK);
    char *msg = NULL;
    CHECK_MSG(sqlite3_exec(sql, q, NULL, NULL, &msg) == SQLITE_OK, "%s: %s", q, msg ? msg : "");
    sqlite3_free(msg);
    sqlite3_close(sql);
}

static void test_refused_files(void) {
    sim_err err;
    char p[512];
    // Not SQLite: text, and a short file.
    const char *text = "This is a plain text file, long enough to hold a header of one hundred bytes or more, "
                       "and yet it is not SQLite at all.\n";
    CHECK(file_write_all(tmp_path(p, sizeof p, "notes.txt"), text, strlen(text), &err) == SIM_OK);
    CHECK_REFUSED(p, SIM_ERR_FORMAT, "not an SQLite database");
    CHECK(file_write_all(tmp_path(p, sizeof p, "short.db"), "SQLite", 6, &err) == SIM_OK);
    CHECK_REFUSED(p, SIM_ERR_FORMAT, "not an SQLite database");
    // A directory.
    tree_db *db = NULL;
    CHECK(tree_open(&db, g_tmp, &err) == SIM_ERR_IO);

    // Another application's database, and an unmarked one with tables.
    tmp_path(p, sizeof p, "other.db");
    raw_exec(p, "CREATE TABLE t(a); INSERT INTO t VALUES (1); PRAGMA application_id = 1234;");
    CHECK_REFUSED(p, SIM_ERR_FORMAT, "another application");
    tmp_path(p, sizeof p, "plain.db");
    raw_exec(p, "CREATE TABLE t(a);");
    CHECK_REFUSED(p, SIM_ERR_FORMAT, "another application");

    // A newer schema.
    tmp_path(p, sizeof p, "newer.db");
    CHECK(tree_open(&db, p, &err) == SIM_OK);
    tree_close(db);
    raw_exec(p, "PRAGMA journal_mode = DELETE; PRAGMA user_version = 2;");
    CHECK_REFUSED(p, SIM_ERR_UNSUPPORTED, "newer");

    // A corrupt database: a story with enough text for many pages, then
    // garbage over the middle of the file.
    tmp_path(p, sizeof p, "corrupt.db");
    db = open_db("corrupt.db");
    if (!db) return;
    int64_t s = 0, parent = 0;
    CHECK(tree_story_create(db, NULL, "x", "1", "e", "t", &s, &err) == SIM_OK);
    char line[600];
    for (int i = 0; i < 200; i++) {
        snprintf(line, sizeof line, "Line %d of the corrupted story, with some words to index: lamp fog pier %0400d",
                 i, i);
        parent = add_line(db, NULL, s, parent, "n", line);
    }
    tree_close(db);
    size_t n = 0;
    char *bytes = slurp(p, &n);
    CHECK(bytes && n > 16 * 4096);
    if (!bytes) return;
    for (size_t i = n / 3; i < 2 * n / 3; i++) bytes[i] = (char)0xa5;
    CHECK(file_write_all(p, bytes, n, &err) == SIM_OK);
    mem_free(bytes);
    CHECK_REFUSED(p, SIM_ERR_FORMAT, "corrupt");
}

// --- threads and allocation failures -------------------------------------------------

typedef struct worker {
    tree_db *db;
    int64_t story;
    int fails;
} worker;

static void *work(void *arg) {
    worker *w = arg;
    int64_t parent = 0;
    for (int i = 0; i < 50; i++) {
        tree_update_in in = {.speaker = "n", .text = "threaded line", .source = TREE_SOURCE_MODEL};
        int64_t id = 0;
        sim_err err;
        if (tree_update_add(w->db, NULL, w->story, parent, &in, &id, &err) != SIM_OK) w->fails++;
        parent = id;
    }
    return NULL;
}

static void test_threads(void) {
    tree_db *db = open_db("threads.db");
    if (!db) return;
    sim_err err;
    worker w[4];
    pthread_t t[4];
    for (int i = 0; i < 4; i++) {
        w[i] = (worker){.db = db};
        CHECK(tree_story_create(db, NULL, "x", "1", "e", "t", &w[i].story, &err) == SIM_OK);
    }
    for (int i = 0; i < 4; i++) CHECK(pthread_create(&t[i], NULL, work, &w[i]) == 0);
    for (int i = 0; i < 4; i++) pthread_join(t[i], NULL);
    for (int i = 0; i < 4; i++) {
        CHECK_EQ_INT(w[i].fails, 0);
        tree_update *p = NULL;
        int n = 0;
        CHECK(tree_path(db, NULL, w[i].story, &p, &n, &err) == SIM_OK);
        CHECK_EQ_INT(n, 50);
        tree_updates_free(p, n);
    }
    tree_close(db);
}

static void test_alloc_failures(void) {
    tree_db *db = NULL;
    sim_err err;
    CHECK(tree_open(&db, ":memory:", &err) == SIM_OK);
    if (!db) return;
    int64_t s = fill_story(db, "ann", "memory");
    int64_t head = head_of(db, "ann", s);
    int64_t all[3] = {head - 2, head - 1, head};
    int fails = 0;
    for (long k = 0; k < 40; k++) {
        tree_update *p = NULL;
        tree_story *l = NULL;
        tree_hit *h = NULL;
        tree_save *sv = NULL;
        int n = -1;
        int64_t f = 0;
        mem_fail_after(k);
        sim_status a = tree_path(db, "ann", s, &p, &n, &err);
        if (mem_fail_triggered()) { CHECK(a == SIM_ERR_NOMEM && p == NULL && n == 0); fails++; }
        else tree_updates_free(p, n);
        mem_fail_after(k);
        a = tree_story_list(db, "ann", NULL, &l, &n, &err);
        if (mem_fail_triggered()) { CHECK(a == SIM_ERR_NOMEM && l == NULL && n == 0); fails++; }
        else tree_stories_free(l, n);
        mem_fail_after(k);
        a = tree_memory_search(db, "ann", s, "memory", all, 3, 5, &h, &n, &err);
        if (mem_fail_triggered()) { CHECK(a == SIM_ERR_NOMEM && h == NULL && n == 0); fails++; }
        else tree_hits_free(h, n);
        mem_fail_after(k);
        a = tree_save_list(db, "ann", s, &sv, &n, &err);
        if (mem_fail_triggered()) { CHECK(a == SIM_ERR_NOMEM && sv == NULL); fails++; }
        else tree_saves_free(sv, n);
        mem_fail_after(k);
        a = tree_story_fork(db, "ann", s, head, NULL, &f, &err);
        if (mem_fail_triggered()) { CHECK(a == SIM_ERR_NOMEM); fails++; }
        mem_fail_after(-1);
    }
    CHECK(fails > 10);
    // A failed fork left nothing behind: the forks that exist are whole.
    tree_story *l = NULL;
    int n = 0;
    CHECK(tree_story_list(db, "ann", NULL, &l, &n, &err) == SIM_OK);
    for (int i = 0; i < n; i++) {
        tree_update *p = NULL;
        int np = 0;
        CHECK(tree_path(db, "ann", l[i].id, &p, &np, &err) == SIM_OK);
        CHECK_EQ_INT(np, 2);
        tree_updates_free(p, np);
    }
    tree_stories_free(l, n);
    tree_close(db);
}

int main(int argc, char **argv) {
    test_init(argc, argv);
    snprintf(g_tmp, sizeof g_tmp, "%s/sim_tree_XXXXXX", getenv("TMPDIR") ? getenv("TMPDIR") : "/tmp");
    if (!mkdtemp(g_tmp)) {
        perror("mkdtemp");
        return 1;
    }
    TEST_RUN(test_scenario_replay);
    TEST_RUN(test_fork);
    TEST_RUN(test_delete);
    TEST_RUN(test_ownership);
    TEST_RUN(test_checkpoints);
    TEST_RUN(test_saves);
    TEST_RUN(test_completions);
    TEST_RUN(test_achievements);
    TEST_RUN(test_memory_query);
    TEST_RUN(test_memory_search);
    TEST_RUN(test_reopen);
    TEST_RUN(test_refused_files);
    TEST_RUN(test_threads);
    TEST_RUN(test_alloc_failures);
    char cmd[300];
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", g_tmp);
    if (system(cmd) != 0) fprintf(stderr, "could not remove %s\n", g_tmp);
    return test_finish();
}
