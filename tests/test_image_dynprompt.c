// test_image_dynprompt.c — dynamic prompts against hand-written expansions:
// counts and order, nesting, pick-k, escapes, random determinism, errors.
#include "image/dynprompt.h"
#include "test.h"

// Expands text and compares with the expected list (NULL-terminated).
static void expect_all(const char *text, const char *const *want) {
    char **got;
    size_t n;
    sim_err err;
    sim_status st = dp_expand_all(text, DP_MAX_EXPANSIONS, &got, &n, &err);
    CHECK_MSG(st == SIM_OK, "'%s': %s", text, err.msg);
    if (st != SIM_OK) return;
    size_t nw = 0;
    while (want[nw]) nw++;
    CHECK_MSG(n == nw, "'%s': %zu expansions, %zu expected", text, n, nw);
    for (size_t i = 0; i < n && i < nw; i++) CHECK_STR(got[i], want[i]);
    dp_list_free(got, n);
}

static uint64_t count_of(const char *text) {
    dp_prompt *p;
    sim_err err;
    if (dp_parse(&p, text, &err) != SIM_OK) return 0;
    uint64_t c = dp_count(p);
    dp_free(p);
    return c;
}

static void test_plain_and_order(void) {
    expect_all("no groups", (const char *[]){"no groups", NULL});
    expect_all("", (const char *[]){"", NULL});
    expect_all("a {red|blue} {cat|dog|fox}",
               (const char *[]){"a red cat", "a red dog", "a red fox", "a blue cat", "a blue dog", "a blue fox", NULL});
    expect_all("{|big }{cat}", (const char *[]){"cat", "big cat", NULL});
    expect_all("{x|}", (const char *[]){"x", "", NULL});
    expect_all("{}", (const char *[]){"", NULL});
    CHECK_EQ_INT(count_of("{a|b|c}{d|e}{f|g|h|i}"), 24);
}

static void test_nesting(void) {
    expect_all("girl, {smiling {softly|widely}|crying}, {day|night}",
               (const char *[]){"girl, smiling softly, day", "girl, smiling softly, night", "girl, smiling widely, day",
                                "girl, smiling widely, night", "girl, crying, day", "girl, crying, night", NULL});
    expect_all("{a{1|2}{x|y}|b}", (const char *[]){"a1x", "a1y", "a2x", "a2y", "b", NULL});
    CHECK_EQ_INT(count_of("{{{a|b}|c}|{d|{e|f|g}}}"), 7);
}

static void test_pick(void) {
    expect_all("{2$$a|b|c}", (const char *[]){"a, b", "a, c", "b, c", NULL});
    expect_all("{1-2$$a|b|c}", (const char *[]){"a", "b", "c", "a, b", "a, c", "b, c", NULL});
    expect_all("{3$$a|b|c}", (const char *[]){"a, b, c", NULL});
    expect_all("{0-1$$a|b}", (const char *[]){"", "a", "b", NULL});
    expect_all("{2-9$$a|b}", (const char *[]){"a, b", NULL}); // the upper bound is clamped
    // alternatives with groups inside: the leftmost chosen one varies slowest
    expect_all("{2$${x|y}|b|c}", (const char *[]){"x, b", "y, b", "x, c", "y, c", "b, c", NULL});
    expect_all("<{2$$a|{p|q}|c}>", (const char *[]){"<a, p>", "<a, q>", "<a, c>", "<p, c>", "<q, c>", NULL});
    CHECK_EQ_INT(count_of("{3$$a|b|c|d|e|f}"), 20);
    CHECK_EQ_INT(count_of("{2$$a|b|c|d} {x|y}"), 12);
}

static void test_escapes(void) {
    expect_all("\\{not a group\\} a\\|b", (const char *[]){"{not a group} a|b", NULL});
    expect_all("{a\\|b|c\\}}", (const char *[]){"a|b", "c}", NULL});
    expect_all("back\\\\slash {x|y}", (const char *[]){"back\\slash x", "back\\slash y", NULL});
    expect_all("a|b $$ \\n", (const char *[]){"a|b $$ \\n", NULL}); // literal outside groups; unknown escapes kept
    expect_all("{2$x|y}", (const char *[]){"2$x", "y", NULL}); // one '$' is not a pick prefix
}

static void test_random(void) {
    const char *text = "{a|b|c|d} {1|2|3} {2$$x|y|z}";
    char **r1, **r2, **r3;
    sim_err err;
    CHECK(dp_expand_random(text, 50, 7, &r1, &err) == SIM_OK);
    CHECK(dp_expand_random(text, 50, 7, &r2, &err) == SIM_OK);
    CHECK(dp_expand_random(text, 50, 8, &r3, &err) == SIM_OK);
    int same = 0, distinct_seed = 0;
    bool seen_a = false, seen_d = false;
    for (int i = 0; i < 50; i++) {
        same += strcmp(r1[i], r2[i]) == 0;
        distinct_seed += strcmp(r1[i], r3[i]) != 0;
        seen_a |= r1[i][0] == 'a', seen_d |= r1[i][0] == 'd';
        // every sample is one of the combinatorial expansions
        CHECK(strlen(r1[i]) == strlen("a 1 x, y"));
        CHECK(r1[i][4] < r1[i][7]); // the pick keeps the written order
    }
    CHECK_EQ_INT(same, 50);
    CHECK(distinct_seed > 10);
    CHECK(seen_a && seen_d);
    dp_list_free(r1, 50), dp_list_free(r2, 50), dp_list_free(r3, 50);
    // the generator is documented: splitmix64 from the seed; the first sample of seed 1 is fixed
    CHECK(dp_expand_random("{a|b|c|d|e|f|g|h}", 1, 1, &r1, &err) == SIM_OK);
    // splitmix64(1) first output 0x910a2dec89025cc1 % 8 = 1
    CHECK_STR(r1[0], "b");
    dp_list_free(r1, 1);
    // random works where the combinatorial count is astronomical
    char big[2000] = "";
    for (int i = 0; i < 70; i++) strcat(big, "{a|b|c}");
    CHECK(count_of(big) == UINT64_MAX);
    CHECK(dp_expand_random(big, 3, 1, &r1, &err) == SIM_OK);
    CHECK_EQ_INT(strlen(r1[2]), 70);
    dp_list_free(r1, 3);
}

static void expect_error(const char *text, const char *part) {
    char **got;
    size_t n;
    sim_err err = {0};
    sim_status st = dp_expand_all(text, DP_MAX_EXPANSIONS, &got, &n, &err);
    CHECK_MSG(st != SIM_OK, "'%s' accepted", text);
    if (st == SIM_OK) dp_list_free(got, n);
    else CHECK_MSG(strstr(err.msg, part) != NULL, "'%s': '%s' lacks '%s'", text, err.msg, part);
}

static void test_errors(void) {
    expect_error("a {b|c", "'{' at offset 2 is never closed");
    expect_error("{a|{b|c}", "'{' at offset 0 is never closed");
    expect_error("a} b", "unbalanced '}' at offset 1");
    expect_error("{a|b}}", "unbalanced '}' at offset 5");
    expect_error("{3$$a|b}", "picks 3 of 2 alternatives");
    expect_error("{3-2$$a|b|c}", "reversed");
    char deep[200] = "";
    for (int i = 0; i < 40; i++) strcat(deep, "{");
    expect_error(deep, "nested deeper than 32");
    // 10 groups of 4 = 1048576 > 100000
    expect_error("{a|b|c|d}{a|b|c|d}{a|b|c|d}{a|b|c|d}{a|b|c|d}{a|b|c|d}{a|b|c|d}{a|b|c|d}{a|b|c|d}{a|b|c|d}",
                 "1048576 expansions (at most 100000");
    char big[2000] = "";
    for (int i = 0; i < 70; i++) strcat(big, "{a|b|c}");
    expect_error(big, "more than 2^64");
    dp_prompt *p;
    sim_err err;
    char *s;
    CHECK(dp_parse(&p, "{a|b}", &err) == SIM_OK);
    CHECK(dp_expand_nth(p, 2, &s, &err) == SIM_ERR_RANGE);
    dp_free(p);
}

static void test_alloc_failures(void) {
    int fails = 0;
    for (long n = 0; n < 500; n++) {
        char **got;
        size_t cnt;
        sim_err err;
        mem_fail_after(n);
        sim_status st = dp_expand_all("x {a|b {c|d}} {2$$p|q|r} \\{", 1000, &got, &cnt, &err);
        bool hit = mem_fail_triggered();
        mem_fail_after(-1);
        if (st == SIM_OK) dp_list_free(got, cnt);
        if (!hit) break;
        fails += st != SIM_OK;
    }
    CHECK(fails > 10);
}

int main(int argc, char **argv) {
    test_init(argc, argv);
    TEST_RUN(test_plain_and_order);
    TEST_RUN(test_nesting);
    TEST_RUN(test_pick);
    TEST_RUN(test_escapes);
    TEST_RUN(test_random);
    TEST_RUN(test_errors);
    TEST_RUN(test_alloc_failures);
    return test_finish();
}
