// test_director.c — the turn grammars: integer ranges accept exactly their
// numbers; random walks through every phase grammar (a random byte among
// those each grammar allows, from random stages of the demo scenario) only
// ever produce commands stage_check accepts, speakers the episode allows,
// and well-formed lines.
#include <jansson.h>
#include <stdlib.h>
#include <string.h>

#include "infer/grammar.h"
#include "story/director.h"
#include "test.h"

static gram_grammar *compile(const char *gbnf) {
    gram_grammar *g = NULL;
    sim_err err;
    CHECK_MSG(gbnf && gram_parse(&g, gbnf, strlen(gbnf), &err) == SIM_OK, "grammar refused: %s\n%s", gbnf ? err.msg : "",
              gbnf ? gbnf : "(null)");
    return g;
}

static bool accepts(const gram_grammar *g, const char *text) {
    gram_state *st;
    sim_err err;
    CHECK(gram_state_new(&st, g, &err) == SIM_OK);
    bool ok = gram_accept_bytes(st, text, strlen(text), &err) == SIM_OK && gram_is_complete(st);
    gram_state_free(st);
    return ok;
}

static void check_range(long long lo, long long hi) {
    sbuf b = {0};
    sb_str(&b, "root ::= ");
    dir_int_range(&b, lo, hi);
    sb_str(&b, "\n");
    char *text = sb_take(&b);
    gram_grammar *g = compile(text);
    if (!g) return;
    long long span = hi - lo;
    long long from = lo - 30, to = hi + 30;
    long long step = span > 3000 ? span / 997 : 1;
    char num[32];
    for (long long x = from; x <= to; x += (x < lo + 40 || x > hi - 40) ? 1 : step) {
        snprintf(num, sizeof num, "%lld", x);
        bool want = x >= lo && x <= hi;
        CHECK_MSG(accepts(g, num) == want, "range %lld..%lld: %s %s", lo, hi, num, want ? "refused" : "accepted");
    }
    // Leading zeros, "-0", "+1", and empty never match.
    CHECK(!accepts(g, "") && !accepts(g, "+1") && !accepts(g, "-0") && !accepts(g, "00"));
    if (lo <= 7 && hi >= 7) CHECK(!accepts(g, "007"));
    gram_free(g);
    mem_free(text);
}

static void test_int_ranges(void) {
    static const long long r[][2] = {{0, 0},     {1, 1440}, {0, 9},       {5, 5},        {-5, 5},      {-100, -7},
                                     {37, 4521}, {99, 100}, {-1, 0},      {10, 99},      {123, 129},   {1000, 1000},
                                     {0, 10},    {-10, 0},  {-999, 1001}, {8, 1000000000}, {-1000000000, -999999990}};
    for (size_t i = 0; i < ARRAY_LEN(r); i++) check_range(r[i][0], r[i][1]);
    srand(7);
    for (int i = 0; i < 40; i++) {
        long long a = rand() % 20000 - 10000, b = a + rand() % 5000;
        check_range(a, b);
    }
}

// A random string the grammar allows: a random allowed byte at a time (printable
// ASCII and '\n'), until the grammar is done or max bytes were written.
static char *walk(const gram_grammar *g, int max) {
    gram_state *st;
    sim_err err;
    CHECK(gram_state_new(&st, g, &err) == SIM_OK);
    char *out = calloc((size_t)max + 1, 1);
    int n = 0;
    while (n < max && !gram_is_done(st)) {
        char cand[96];
        int nc = 0;
        for (int c = 0x20; c < 0x7F; c++) {
            char ch = (char)c;
            if (gram_can_accept_bytes(st, &ch, 1, &err) == 1) cand[nc++] = ch;
        }
        char nl = '\n';
        if (gram_can_accept_bytes(st, &nl, 1, &err) == 1) cand[nc++] = '\n';
        if (nc == 0) break;
        // Prefer ending lines soon, so free text does not run to max.
        char ch = (nl == '\n' && cand[nc - 1] == '\n' && rand() % 8 == 0) ? '\n' : cand[rand() % nc];
        CHECK(gram_accept_bytes(st, &ch, 1, &err) == SIM_OK);
        out[n++] = ch;
    }
    gram_state_free(st);
    return out;
}

static scn_scenario *load_demo(void) {
    scn_report rep;
    scn_report_init(&rep);
    scn_scenario *s = NULL;
    sim_err err;
    sim_status rc = scn_load(&s, "scenarios/demo", &rep, &err);
    CHECK_MSG(rc == SIM_OK, "scenarios/demo: %s", err.msg);
    scn_report_free(&rep);
    return s;
}

static void test_random_turns(void) {
    scn_scenario *s = load_demo();
    if (!s) return;
    srand(11);
    stage st;
    sim_err err;
    CHECK(stage_start(&st, s, 0, &err) == SIM_OK);
    int n_cmds = 0, n_turns = 0, kinds[8] = {0};
    for (int turn = 0; turn < 300; turn++) {
        char *gt = dir_open_grammar(&st, s);
        gram_grammar *g = compile(gt);
        char *open = walk(g, 200);
        gram_free(g);
        mem_free(gt);
        bool commands = strcmp(open, DIR_SYSTEM) == 0;
        char *who = NULL;
        if (commands) {
            for (int k = 0; k < DIR_MAX_COMMANDS; k++) {
                gt = dir_command_grammar(&st, s, k == DIR_MAX_COMMANDS - 1);
                g = compile(gt);
                char *c = walk(g, 4000);
                size_t len = strlen(c);
                bool more = len > 0 && c[len - 1] == ',';
                CHECK_MSG(more || (len >= 2 && strcmp(c + len - 2, "]\n") == 0), "command ends badly: %s", c);
                c[len - (more ? 1 : 2)] = 0;
                json_error_t je;
                json_t *j = json_loads(c, 0, &je);
                CHECK_MSG(j != NULL, "not JSON: %s (%s)", c, je.text);
                stage_cmd cmd;
                sim_status rc = j ? stage_check(&st, s, j, &cmd, &err) : SIM_ERR_FORMAT;
                CHECK_MSG(rc == SIM_OK, "refused %s: %s", c, err.msg);
                if (rc == SIM_OK) {
                    stage_apply(&st, &cmd);
                    kinds[cmd.kind]++;
                    n_cmds++;
                }
                json_decref(j);
                free(c);
                gram_free(g);
                mem_free(gt);
                if (!more) break;
            }
            gt = dir_speaker_grammar(&st, s);
            g = compile(gt);
            who = walk(g, 200);
            gram_free(g);
            mem_free(gt);
        } else {
            who = strdup(open);
        }
        // The speaker: "<id>", the narrator or an allowed character on stage.
        size_t wl = strlen(who);
        CHECK_MSG(wl > 2 && who[0] == '<' && who[wl - 1] == '>', "speaker '%s'", who);
        who[wl - 1] = 0;
        int sp[DIR_MAX_SPEAKERS], n_sp = dir_speakers(&st, s, sp);
        bool found = false;
        for (int i = 0; i < n_sp; i++)
            found |= strcmp(who + 1, sp[i] == SCN_SPEAKER_NARRATOR ? "narrator" : s->characters[sp[i]].id) == 0;
        CHECK_MSG(found, "speaker '%s' is not allowed now", who + 1);
        if (found && strcmp(who + 1, "narrator") != 0) {
            int c = -1;
            for (int i = 0; i < s->n_characters; i++)
                if (strcmp(s->characters[i].id, who + 1) == 0) c = i;
            CHECK(stage_find(&st, c) >= 0);
        }
        free(who);
        free(open);
        n_turns++;
    }
    // The text grammar: one line, no control characters, not starting with a space.
    char *gt = dir_text_grammar();
    gram_grammar *g = compile(gt);
    for (int i = 0; i < 50; i++) {
        char *t = walk(g, 300);
        size_t len = strlen(t);
        if (len < 300) CHECK_MSG(len >= 2 && t[len - 1] == '\n' && t[0] != ' ' && !strchr(t, '\n')[1], "line '%s'", t);
        free(t);
    }
    CHECK(accepts(g, "Hello there.\n") && !accepts(g, "\n") && !accepts(g, " x\n") && !accepts(g, "a\tb\n") &&
          !accepts(g, "two\nlines\n"));
    gram_free(g);
    mem_free(gt);
    printf("  %d turns, %d commands (scene %d, add %d, remove %d, expression %d, outfit %d, clock %d, variable %d)\n",
           n_turns, n_cmds, kinds[0], kinds[1], kinds[2], kinds[3], kinds[4], kinds[5], kinds[6]);
    for (int k = 0; k <= STAGE_CMD_SET_VARIABLE; k++) CHECK_MSG(kinds[k] > 0, "command kind %d never generated", k);
    scn_free(s);
}

// With nobody on stage, only the narrator may speak and no character command is offered.
static void test_empty_stage(void) {
    scn_scenario *s = load_demo();
    if (!s) return;
    stage st;
    sim_err err;
    CHECK(stage_start(&st, s, 0, &err) == SIM_OK);
    st.n_on_stage = 0;
    char *gt = dir_speaker_grammar(&st, s);
    gram_grammar *g = compile(gt);
    CHECK(accepts(g, "<narrator>") && !accepts(g, "<edda>") && !accepts(g, "<player>"));
    gram_free(g);
    mem_free(gt);
    gt = dir_command_grammar(&st, s, true);
    g = compile(gt);
    CHECK(accepts(g, "{\"addCharacter\":{\"character\":\"edda\",\"outfit\":\"oilskin\",\"expression\":\"sad\"}}]\n"));
    CHECK(!accepts(g, "{\"removeCharacter\":{\"character\":\"edda\"}}]\n"));
    CHECK(!accepts(g, "{\"setScene\":{\"scene\":\"harbour-dusk\"}}]\n")); // the current scene
    CHECK(accepts(g, "{\"setScene\":{\"scene\":\"lamp-room\"}}]\n"));
    CHECK(!accepts(g, "{\"setScene\":{\"scene\":\"lamp-room\"}},")); // last: no comma
    CHECK(accepts(g, "{\"setVariable\":{\"variable\":\"edda-trust\",\"value\":10}}]\n"));
    CHECK(!accepts(g, "{\"setVariable\":{\"variable\":\"edda-trust\",\"value\":3}}]\n")); // its current value
    CHECK(!accepts(g, "{\"setVariable\":{\"variable\":\"edda-trust\",\"value\":11}}]\n"));
    CHECK(accepts(g, "{\"setVariable\":{\"variable\":\"storm\",\"value\":\"raging\"}}]\n"));
    CHECK(!accepts(g, "{\"setVariable\":{\"variable\":\"storm\",\"value\":\"rising\"}}]\n"));
    CHECK(accepts(g, "{\"setVariable\":{\"variable\":\"spring-found\",\"value\":true}}]\n"));
    CHECK(!accepts(g, "{\"setVariable\":{\"variable\":\"spring-found\",\"value\":false}}]\n"));
    CHECK(accepts(g, "{\"advanceClock\":{\"minutes\":1440}}]\n") && !accepts(g, "{\"advanceClock\":{\"minutes\":0}}]\n"));
    gram_free(g);
    mem_free(gt);
    scn_free(s);
}

int main(int argc, char **argv) {
    test_init(argc, argv);
    TEST_RUN(test_int_ranges);
    TEST_RUN(test_random_turns);
    TEST_RUN(test_empty_stage);
    return test_finish();
}
