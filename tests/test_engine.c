// test_engine.c — the story engine on stories260K and the demo scenario:
// over many seeds every generated command replays through stage_check to the
// stored stage and every speaker is allowed; regenerate / choose / edit /
// rewind on the tree; the database round trip; a small context consolidates
// into checkpoints; resuming from a save gives the same next-token logits as
// the live session without re-processing the prompt; lore activation.
#include <jansson.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "infer/session.h"
#include "model/model.h"
#include "story/engine.h"
#include "story/prompt.h"
#include "test.h"

static char g_tmp[256];
static model *g_m;
static scn_scenario *g_s;

static fwd_ctx *new_ctx(int n_ctx) {
    fwd_params fp = fwd_default_params();
    fp.n_ctx = n_ctx;
    fwd_ctx *c = NULL;
    sim_err err;
    CHECK_MSG(fwd_new(&c, g_m, &fp, &err) == SIM_OK, "%s", err.msg);
    return c;
}

static tree_db *open_db(const char *name) {
    char path[400];
    snprintf(path, sizeof path, "%s/%s", g_tmp, name);
    tree_db *db = NULL;
    sim_err err;
    CHECK_MSG(tree_open(&db, path, &err) == SIM_OK, "%s", err.msg);
    return db;
}

static eng_params params(uint64_t seed) {
    eng_params p = eng_default_params();
    p.sampling.seed = seed;
    p.state_dir = g_tmp;
    p.max_line_tokens = 32;
    return p;
}

static bool setup(void) {
    char path[512];
    if (!test_shared_path(path, sizeof path, "models/stories260K.gguf")) return false;
    sim_err err;
    if (!g_m) CHECK_MSG(model_load(&g_m, path, &(model_params){0}, &err) == SIM_OK, "%s", err.msg);
    return g_m != NULL;
}

static int speaker_ok(const stage *st, const char *who) {
    if (!strcmp(who, "narrator") || !strcmp(who, "player")) return 1;
    const scn_episode *e = &g_s->episodes[st->episode];
    for (int i = 0; i < e->n_allowed_speakers; i++)
        if (!strcmp(g_s->characters[e->allowed_speakers[i]].id, who)) return stage_find(st, e->allowed_speakers[i]) >= 0;
    return 0;
}

// Replays the path's commands from the episode start: each must pass
// stage_check, and the result must be the stored stage of every update.
static int replay(const tree_update *path, int n) {
    stage st;
    sim_err err;
    CHECK(stage_start(&st, g_s, 0, &err) == SIM_OK);
    int n_cmds = 0;
    for (int i = 0; i < n; i++) {
        json_t *cmds = path[i].commands ? json_loads(path[i].commands, 0, NULL) : json_array();
        CHECK_MSG(json_is_array(cmds), "update %lld: commands %s", (long long)path[i].id, path[i].commands);
        for (size_t k = 0; k < json_array_size(cmds); k++) {
            stage_cmd c;
            sim_status rc = stage_check(&st, g_s, json_array_get(cmds, k), &c, &err);
            CHECK_MSG(rc == SIM_OK, "update %lld: %s", (long long)path[i].id, err.msg);
            if (rc == SIM_OK) stage_apply(&st, &c), n_cmds++;
        }
        json_decref(cmds);
        CHECK_MSG(speaker_ok(&st, path[i].speaker), "update %lld: speaker '%s' not allowed", (long long)path[i].id,
                  path[i].speaker);
        CHECK(path[i].text[0] != 0 && !strchr(path[i].text, '\n'));
        json_t *stored = json_loads(path[i].stage, 0, NULL), *mine = stage_to_json(&st, g_s);
        CHECK_MSG(json_equal(stored, mine), "update %lld: stored stage differs from the replay", (long long)path[i].id);
        json_decref(stored);
        json_decref(mine);
    }
    return n_cmds;
}

static void test_grammar_guarantees(void) {
    if (!setup()) return;
    fwd_ctx *c = new_ctx(8192);
    tree_db *db = open_db("seeds.db");
    int total = 0, lines = 0;
    for (uint64_t seed = 1; seed <= 12; seed++) {
        eng_params p = params(seed);
        // Flat sampling: the tiny model then opens a commands line often enough.
        p.sampling.temp = 1.5f;
        p.sampling.top_k = 0;
        p.sampling.top_p = 1.0f;
        p.sampling.min_p = 0.0f;
        eng *e;
        sim_err err;
        CHECK_MSG(eng_create(&e, g_s, db, c, &p, 0, "seed", &err) == SIM_OK, "%s", err.msg);
        for (int t = 0; t < 4; t++) CHECK_MSG(eng_advance(e, &err) == SIM_OK, "seed %llu: %s", (unsigned long long)seed, err.msg);
        int n;
        const tree_update *path = eng_path(e, &n);
        CHECK_EQ_INT(n, g_s->episodes[0].n_opening + 4);
        total += replay(path, n);
        lines += n;
        eng_free(e);
    }
    printf("  12 seeds: %d lines, %d stage commands, every one valid and replayed\n", lines, total);
    CHECK(total > 0);
    tree_close(db);
    fwd_free(c);
}

static void test_operations(void) {
    if (!setup()) return;
    fwd_ctx *c = new_ctx(8192);
    tree_db *db = open_db("ops.db");
    eng_params p = params(5);
    eng *e;
    sim_err err;
    CHECK_MSG(eng_create(&e, g_s, db, c, &p, 0, "ops", &err) == SIM_OK, "%s", err.msg);
    int n0 = g_s->episodes[0].n_opening, n;
    CHECK(eng_advance(e, &err) == SIM_OK);
    CHECK(eng_say(e, "Good evening.\nHow are you?", &err) == SIM_OK);
    const tree_update *path = eng_path(e, &n);
    CHECK_EQ_INT(n, n0 + 2);
    CHECK_STR(path[n - 1].text, "Good evening. How are you?"); // one line
    CHECK(eng_regenerate(e, &err) == SIM_ERR_ARG && strstr(err.msg, "not written by the model"));
    CHECK(eng_advance(e, &err) == SIM_OK);
    path = eng_path(e, &n);
    int64_t first = path[n - 1].id;
    char *first_text = strdup(path[n - 1].text);
    CHECK(eng_regenerate(e, &err) == SIM_OK);
    path = eng_path(e, &n);
    int64_t second = path[n - 1].id;
    CHECK(second != first && path[n - 1].parent == path[n - 2].id);
    int64_t *ids;
    int nv, chosen;
    CHECK(tree_update_children(db, NULL, eng_story(e), path[n - 2].id, &ids, &nv, &chosen, &err) == SIM_OK);
    CHECK(nv == 2 && ids[0] == first && ids[1] == second && chosen == 1);
    tree_ids_free(ids);
    CHECK(eng_choose(e, first, &err) == SIM_OK);
    path = eng_path(e, &n);
    CHECK(path[n - 1].id == first);
    CHECK_STR(path[n - 1].text, first_text);
    // Edit keeps the original.
    CHECK(eng_edit(e, first, "Edited line.", &err) == SIM_OK);
    path = eng_path(e, &n);
    CHECK_STR(path[n - 1].text, "Edited line.");
    CHECK(path[n - 1].edit_of == first);
    tree_update orig;
    CHECK(tree_update_get(db, NULL, first, &orig, &err) == SIM_OK);
    CHECK_STR(orig.text, first_text);
    tree_update_free(&orig);
    CHECK(eng_edit(e, first, "two\nlines", &err) == SIM_ERR_ARG);
    // Rewind to the second opening line, then a new branch.
    int64_t keep = path[1].id;
    CHECK(eng_rewind(e, keep, &err) == SIM_OK);
    path = eng_path(e, &n);
    CHECK(n == 2 && path[1].id == keep);
    CHECK(eng_advance(e, &err) == SIM_OK);
    path = eng_path(e, &n);
    CHECK(n == 3 && path[2].parent == keep);
    // Nothing was lost: the old branch is still a child of keep.
    CHECK(tree_update_children(db, NULL, eng_story(e), keep, &ids, &nv, &chosen, &err) == SIM_OK);
    CHECK(nv == 2);
    tree_ids_free(ids);
    CHECK(eng_rewind(e, 999999, &err) != SIM_OK);
    CHECK(eng_choose(e, 999999, &err) != SIM_OK);
    // The database round trip: reopen and the story is the same.
    int64_t story = eng_story(e);
    int64_t head = path[n - 1].id;
    eng_free(e);
    tree_close(db);
    db = open_db("ops.db");
    CHECK(eng_open(&e, g_s, db, c, &p, story, &err) == SIM_OK);
    path = eng_path(e, &n);
    CHECK(n == 3 && path[2].id == head);
    CHECK(eng_open(&(eng *){0}, g_s, db, c, &p, story + 100, &err) != SIM_OK && strstr(err.msg, "not found"));
    free(first_text);
    eng_free(e);
    tree_close(db);
    fwd_free(c);
}

// Resuming from a save: the same next-token logits, nothing re-processed.
static void test_resume(void) {
    if (!setup()) return;
    fwd_ctx *c = new_ctx(8192);
    tree_db *db = open_db("resume.db");
    eng_params p = params(9);
    eng *e;
    sim_err err;
    CHECK(eng_create(&e, g_s, db, c, &p, 0, "resume", &err) == SIM_OK);
    CHECK(eng_advance(e, &err) == SIM_OK);
    CHECK(eng_say(e, "Tell me about the lens.", &err) == SIM_OK);
    int64_t save;
    CHECK_MSG(eng_save(e, "s", NULL, 0, &save, &err) == SIM_OK, "%s", err.msg);
    CHECK(eng_prepare(e, &err) == SIM_OK);
    int nv = g_m->hp.n_vocab, n_live = sess_n_tokens(eng_session(e));
    float *live = malloc((size_t)nv * sizeof *live);
    memcpy(live, sess_logits(eng_session(e)), (size_t)nv * sizeof *live);
    int64_t story = eng_story(e);
    eng_free(e);
    fwd_free(c);

    c = new_ctx(8192); // a fresh context: only the state file can make this instant
    CHECK(eng_open(&e, g_s, db, c, &p, story, &err) == SIM_OK);
    CHECK(eng_prepare(e, &err) == SIM_OK);
    const eng_turn_stats *t = eng_last_turn(e);
    printf("  resume: %d prompt tokens, %d reused, %d decoded\n", t->n_prompt, t->n_reused, t->n_decoded);
    CHECK_EQ_INT(t->n_prompt, n_live);
    CHECK(t->n_decoded <= 1); // the last token is evaluated again for fresh logits
    const float *back = sess_logits(eng_session(e));
    float maxd = 0;
    for (int i = 0; i < nv; i++) maxd = fmaxf(maxd, fabsf(back[i] - live[i]));
    printf("  resume: max |logit difference| %g\n", maxd);
    CHECK(maxd < 1e-4f);
    eng_free(e);
    fwd_free(c);
    // Without the state file, the same story re-processes the whole prompt.
    c = new_ctx(8192);
    p.state_dir = NULL;
    CHECK(eng_open(&e, g_s, db, c, &p, story, &err) == SIM_OK);
    tree_save sv;
    CHECK(tree_save_get(db, NULL, save, &sv, &err) == SIM_OK);
    CHECK(sv.state_path && unlink(sv.state_path) == 0);
    tree_save_free(&sv);
    eng_free(e);
    CHECK(eng_open(&e, g_s, db, c, &p, story, &err) == SIM_OK);
    CHECK(eng_prepare(e, &err) == SIM_OK);
    CHECK_EQ_INT(eng_last_turn(e)->n_decoded, n_live);
    free(live);
    eng_free(e);
    tree_close(db);
    fwd_free(c);
}

static int g_checkpoints;
static void count_checkpoints(void *ud, const eng_event *ev) {
    if (ev->kind == ENG_EV_CHECKPOINT) g_checkpoints++;
}

static void test_consolidation(void) {
    if (!setup()) return;
    char *setup_text = prm_setup(g_s, 0, "en-US");
    int32_t *t = NULL;
    sim_err err;
    int n_setup = tok_encode_alloc(g_m->vocab, setup_text, strlen(setup_text), true, false, &t, &err);
    mem_free(t);
    mem_free(setup_text);
    // Room for the setup, the reserve and a few lines only.
    fwd_ctx *c = new_ctx(n_setup + 256 + 900);
    tree_db *db = open_db("small.db");
    eng_params p = params(3);
    eng *e;
    CHECK_MSG(eng_create(&e, g_s, db, c, &p, 0, "small", &err) == SIM_OK, "%s", err.msg);
    eng_on_event(e, count_checkpoints, NULL);
    for (int i = 0; i < 12; i++) CHECK_MSG(eng_advance(e, &err) == SIM_OK, "turn %d: %s", i, err.msg);
    printf("  %d checkpoints in 12 turns (context %d, setup %d tokens)\n", g_checkpoints, n_setup + 1156, n_setup);
    CHECK(g_checkpoints > 0);
    char *prompt = eng_prompt_text(e);
    CHECK(prompt && strstr(prompt, "# Earlier\n"));
    mem_free(prompt);
    int n;
    const tree_update *path = eng_path(e, &n);
    tree_checkpoint cp;
    CHECK(tree_checkpoint_latest_on_path(db, NULL, eng_story(e), path[n - 1].id, &cp, &err) == SIM_OK && cp.id > 0);
    CHECK(cp.summary && cp.summary[0] && cp.stage);
    CHECK_MSG(cp.state_path && access(cp.state_path, R_OK) == 0, "the checkpoint has no state file");
    tree_checkpoint_free(&cp);
    eng_free(e);
    // A context too small for the setup is refused with the numbers.
    fwd_free(c);
    c = new_ctx(1024);
    CHECK(eng_create(&e, g_s, db, c, &p, 0, "tiny", &err) == SIM_OK);
    CHECK(eng_advance(e, &err) == SIM_ERR_RANGE && strstr(err.msg, "use a context of at least"));
    eng_free(e);
    tree_close(db);
    fwd_free(c);
}

static void test_lore(void) {
    int a[16];
    int n = prm_lore_active(g_s, "Has the Merry Tern come in? The LENS must turn.", a);
    CHECK_EQ_INT(n, 2);
    if (n == 2) {
        CHECK_STR(g_s->lore[a[0]].id, "merry-tern"); // priority 10 before 8
        CHECK_STR(g_s->lore[a[1]].id, "clockwork");
    }
    CHECK_EQ_INT(prm_lore_active(g_s, "boats and lenses", a), 0); // whole words only
    CHECK_EQ_INT(prm_lore_active(g_s, "", a), 0);
}

int main(int argc, char **argv) {
    test_init(argc, argv);
    snprintf(g_tmp, sizeof g_tmp, "/tmp/sim_engine_XXXXXX");
    if (!mkdtemp(g_tmp)) return 1;
    scn_report rep;
    scn_report_init(&rep);
    sim_err err;
    if (scn_load(&g_s, "scenarios/demo", &rep, &err) != SIM_OK) {
        fprintf(stderr, "scenarios/demo: %s\n", err.msg);
        return 1;
    }
    scn_report_free(&rep);
    TEST_RUN(test_lore);
    TEST_RUN(test_grammar_guarantees);
    TEST_RUN(test_operations);
    TEST_RUN(test_resume);
    TEST_RUN(test_consolidation);
    scn_free(g_s);
    model_free(g_m);
    char cmd[400];
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", g_tmp);
    if (system(cmd) != 0) fprintf(stderr, "could not remove %s\n", g_tmp);
    return test_finish();
}
