// test_grammar.c — GBNF parsing errors, byte-level matching (whole, byte by
// byte, in random chunks split mid-character) checked against independent
// recognizers (PCRE2 regexes and a hand-written parser), token-level
// generation with random logits on an in-memory vocabulary and on the shared
// SentencePiece and GPT-2 vocabularies (outputs checked by PCRE2 and
// Jansson), JSON Schema conversion, limits, allocation failures, and the
// filter's speed (printed, not asserted).
#define PCRE2_CODE_UNIT_WIDTH 8
#include <jansson.h>
#include <pcre2.h>
#include <string.h>

#include "infer/grammar.h"
#include "infer/jsonschema.h"
#include "model/gguf.h"
#include "model/tok.h"
#include "test.h"

// --- helpers -------------------------------------------------------------------------

static gram_grammar *compile(const char *text) {
    gram_grammar *g = NULL;
    sim_err err;
    sim_status st = gram_parse(&g, text, strlen(text), &err);
    CHECK_MSG(st == SIM_OK, "%s\n  in grammar: %s", err.msg, text);
    return st == SIM_OK ? g : NULL;
}

enum { FEED_WHOLE, FEED_BYTES, FEED_CHUNKS, FEED_MODES };

// 1 when s[0..n) is accepted (every byte allowed and the root complete at the
// end), fed whole, byte by byte or in random chunks of 1..5 bytes; checks that
// gram_can_accept_bytes agrees with gram_accept_bytes at every chunk.
static int matches(const gram_grammar *g, const char *s, size_t n, int mode, smp_rng *rng) {
    gram_state *st;
    sim_err err;
    if (gram_state_new(&st, g, &err) != SIM_OK) {
        CHECK_MSG(0, "%s", err.msg);
        return -1;
    }
    size_t i = 0;
    int ok = 1;
    while (i < n) {
        size_t k = mode == FEED_WHOLE ? n : mode == FEED_BYTES ? 1 : 1 + (size_t)(smp_rng_next(rng) % 5);
        if (k > n - i) k = n - i;
        int can = gram_can_accept_bytes(st, s + i, k, &err);
        sim_status r = gram_accept_bytes(st, s + i, k, &err);
        CHECK_MSG(can == (r == SIM_OK), "can_accept %d vs accept %d at %zu", can, r, i);
        if (r != SIM_OK) {
            CHECK_MSG(r == SIM_ERR_ARG, "%s", err.msg);
            ok = 0;
            break;
        }
        i += k;
    }
    if (ok) ok = gram_is_complete(st);
    gram_state_free(st);
    return ok;
}

static int matches_all_modes(const gram_grammar *g, const char *s, size_t n, smp_rng *rng) {
    int r0 = matches(g, s, n, FEED_WHOLE, rng);
    for (int m = 1; m < FEED_MODES; m++) {
        int r = matches(g, s, n, m, rng);
        CHECK_MSG(r == r0, "feeding mode %d gives %d, whole gives %d for \"%.*s\"", m, r, r0, (int)n, s);
    }
    return r0;
}

static pcre2_code *regex(const char *pat, bool utf) {
    int ec;
    PCRE2_SIZE eo;
    pcre2_code *re = pcre2_compile((PCRE2_SPTR)pat, PCRE2_ZERO_TERMINATED, PCRE2_ANCHORED | PCRE2_ENDANCHORED | (utf ? PCRE2_UTF : 0),
                                   &ec, &eo, NULL);
    CHECK_MSG(re != NULL, "regex %s does not compile at %zu", pat, (size_t)eo);
    return re;
}

// Full match; invalid UTF-8 (in UTF mode) is no match.
static int re_match(pcre2_code *re, const char *s, size_t n) {
    pcre2_match_data *md = pcre2_match_data_create_from_pattern(re, NULL);
    int rc = pcre2_match(re, (PCRE2_SPTR)s, n, 0, 0, md, NULL);
    pcre2_match_data_free(md);
    return rc >= 0;
}

// --- 1. parse errors -------------------------------------------------------------------

static void test_parse_errors(void) {
    static const struct {
        const char *text, *want; // want: the start of the message
    } cases[] = {
        {"root ::= \"abc", "line 1, column 10: unterminated string literal"},
        {"root ::= [a-z", "line 1, column 10: unterminated character class"},
        {"root ::= [a-z\n]", "line 1, column 10: unterminated character class"},
        {"root ::= foo", "line 1, column 10: undefined rule 'foo'"},
        {"", "line 1, column 1: empty grammar: no rules"},
        {"# only a comment\n\n", "line 1, column 1: empty grammar: no rules"},
        {"item ::= \"a\"\n", "line 2, column 1: no 'root' rule"},
        {"root ::= \"\\q\"", "line 1, column 11: unknown escape '\\q'"},
        {"root ::= \"\\x4\"", "line 1, column 11: '\\x' needs 2 hex digits"},
        {"root ::= [\\u12G4]", "line 1, column 11: '\\u' needs 4 hex digits"},
        {"root ::= \"\\uD800\"", "line 1, column 11: escape '\\uD800' is not a Unicode scalar value"},
        {"root ::= \"\\U00110000\"", "line 1, column 11: escape '\\U00110000' is not a Unicode scalar value"},
        {"root ::= [z-a]", "line 1, column 11: range 'z-a' is out of order"},
        {"root ::= []", "line 1, column 10: empty character class"},
        {"root ::= [^\\x00-\\U0010FFFF]", "line 1, column 10: character class matches nothing"},
        {"root ::= expr\nexpr ::= expr \"+\" term | term\nterm ::= [0-9]+",
         "line 2, column 1: left recursion: 'expr' -> 'expr'"},
        {"root ::= a\na ::= b \"x\"\nb ::= \"\" | c\nc ::= [0-9]? a",
         "line 2, column 1: left recursion: 'a' -> 'b' -> 'c' -> 'a'"},
        {"root ::= x\nx ::= (\"a\"?)*", "line 2, column 13: repetition of something that can match the empty string"},
        {"root ::= (\"a\" | \"b\"", "line 1, column 10: unterminated group"},
        {"root ::= (\"a\" \"b\" ]", "line 1, column 19: expected ')' or '|', found ']'"},
        {"root ::= \"a\" )", "line 1, column 14: ')' without a matching '('"},
        {"root ::= * \"a\"", "line 1, column 10: '*' has nothing before it to repeat"},
        {"root ::= \"a\" | +", "line 1, column 16: '+' has nothing before it to repeat"},
        {"root ::= \"a\"{3,2}", "line 1, column 13: '{3,2}': the maximum is below the minimum"},
        {"root ::= \"a\"{2", "line 1, column 13: unterminated '{m,n}'"},
        {"root ::= \"a\"{x}", "line 1, column 14: expected a number in '{m,n}'"},
        {"root ::= \"a\"{10001}", "line 1, column 14: repetition count above 10000"},
        {"root ::= \"a\"\nroot ::= \"b\"", "line 2, column 1: rule 'root' is defined twice (first at line 1, column 1)"},
        {"root \"a\"", "line 1, column 6: expected '::=' after the rule name 'root', found '\"'"},
        {"root ::= \"a\" ; \"b\"", "line 1, column 14: unexpected ';'"},
        {"root ::= \"\xCE\xB1\" \"\xFF\"", "line 1, column 15: invalid UTF-8 (byte 0xFF)"},
        {"  # comment\n\n root ::= \"a\" \n  b ::= c\n", "line 4, column 9: undefined rule 'c'"},
        {"root ::= \"a\"\n\t| \"b\" 'c'", "line 2, column 8: unexpected '''"},
        {"::= \"a\"", "line 1, column 1: expected a rule name, found ':'"},
    };
    for (size_t i = 0; i < ARRAY_LEN(cases); i++) {
        gram_grammar *g = (gram_grammar *)1;
        sim_err err = {0};
        sim_status st = gram_parse(&g, cases[i].text, strlen(cases[i].text), &err);
        CHECK_MSG(st == SIM_ERR_FORMAT && g == NULL, "case %zu: status %d", i, st);
        CHECK_MSG(strncmp(err.msg, cases[i].want, strlen(cases[i].want)) == 0, "case %zu:\n    got  %s\n    want %s", i,
                  err.msg, cases[i].want);
        if (st == SIM_OK) gram_free(g);
    }
}

// Grammars that are fine: multi-line forms, comments, escapes, repetition forms.
static void test_parse_ok(void) {
    static const char *ok[] = {
        "root ::= \"a\"",
        "root ::=\n  \"a\"\n  | \"b\"   # a comment\n\n  | \"c\"\n",
        "root ::= (\n  \"a\" # inside\n  | \"b\"\n)+ end\nend ::= \"\\n\" | \"\\t\\r\\\\\\\"\\[\\]\"\n",
        "root ::= ws? | [\\-\\^a\\]] x{0} x{3} x{2,} x{1,4}\nws ::= [ \\t\\n]+\nx ::= \"\\x41\\u00e9\\U0001F600\"",
        "root ::= . [^\\n] [\xCE\xB1-\xCF\x89] \"\xF0\x9F\x98\x80\"",
        "root ::= \"\"",
        "root-rule_2 ::= \"a\"\nroot ::= root-rule_2 root |",
    };
    for (size_t i = 0; i < ARRAY_LEN(ok); i++) gram_free(compile(ok[i]));
}

// --- 2. acceptance tables and differential checks -------------------------------------

typedef struct accept_case {
    const char *s;
    int want;
} accept_case;

static void check_table(const char *grammar, const accept_case *cases, size_t n) {
    gram_grammar *g = compile(grammar);
    if (!g) return;
    smp_rng rng;
    smp_rng_seed(&rng, 7);
    for (size_t i = 0; i < n && cases[i].s; i++) {
        int got = matches_all_modes(g, cases[i].s, strlen(cases[i].s), &rng);
        CHECK_MSG(got == cases[i].want, "\"%s\": got %d, want %d", cases[i].s, got, cases[i].want);
    }
    gram_free(g);
}

static const char *arith_grammar =
    "root   ::= expr\n"
    "expr   ::= term ((\"+\" | \"-\") term)*\n"
    "term   ::= factor ((\"*\" | \"/\") factor)*\n"
    "factor ::= [0-9]+ | \"(\" expr \")\" | \"-\" factor\n";

// An independent recursive-descent recognizer for the same language.
static bool ar_expr(const char **p, const char *e);
static bool ar_factor(const char **p, const char *e) {
    if (*p < e && **p >= '0' && **p <= '9') {
        while (*p < e && **p >= '0' && **p <= '9') (*p)++;
        return true;
    }
    if (*p < e && **p == '-') return (*p)++, ar_factor(p, e);
    if (*p < e && **p == '(') {
        (*p)++;
        if (!ar_expr(p, e) || *p >= e || **p != ')') return false;
        (*p)++;
        return true;
    }
    return false;
}
static bool ar_term(const char **p, const char *e) {
    if (!ar_factor(p, e)) return false;
    while (*p < e && (**p == '*' || **p == '/')) {
        (*p)++;
        if (!ar_factor(p, e)) return false;
    }
    return true;
}
static bool ar_expr(const char **p, const char *e) {
    if (!ar_term(p, e)) return false;
    while (*p < e && (**p == '+' || **p == '-')) {
        (*p)++;
        if (!ar_term(p, e)) return false;
    }
    return true;
}
static int arith_ok(const char *s, size_t n) {
    const char *p = s;
    return ar_expr(&p, s + n) && p == s + n;
}

static void test_accept_arithmetic(void) {
    static const accept_case cases[] = {
        {"1", 1},       {"1+2*3", 1},     {"(1+2)*3", 1},  {"12*(3-4)/5", 1}, {"--7", 1},   {"((((1))))", 1},
        {"", 0},        {"1+", 0},        {"(1", 0},       {"1)", 0},         {"1++2", 0},  {"()", 0},
        {"1 + 2", 0},   {"a", 0},         {"1*-2", 1},     {"007", 1},
    };
    check_table(arith_grammar, cases, ARRAY_LEN(cases));
    // differential: random strings over the alphabet against the hand parser
    gram_grammar *g = compile(arith_grammar);
    if (!g) return;
    smp_rng rng;
    smp_rng_seed(&rng, 11);
    static const char alpha[] = "0123456789+-*/()((()))";
    int agree = 0, accepted = 0;
    for (int t = 0; t < 3000; t++) {
        char s[24];
        size_t n = smp_rng_next(&rng) % 12;
        for (size_t i = 0; i < n; i++) s[i] = alpha[smp_rng_next(&rng) % (sizeof alpha - 1)];
        int want = arith_ok(s, n), got = matches(g, s, n, (int)(t % FEED_MODES), &rng);
        CHECK_MSG(got == want, "\"%.*s\": grammar %d, hand parser %d", (int)n, s, got, want);
        agree += got == want;
        accepted += want;
    }
    CHECK(accepted > 100); // the comparison saw both outcomes
    gram_free(g);
}

static const char *json_grammar =
    "root   ::= ws value ws\n"
    "value  ::= object | array | string | number | \"true\" | \"false\" | \"null\"\n"
    "object ::= \"{\" ws ( string ws \":\" ws value ws (\",\" ws string ws \":\" ws value ws)* )? \"}\"\n"
    "array  ::= \"[\" ws ( value ws (\",\" ws value ws)* )? \"]\"\n"
    "string ::= \"\\\"\" ( [^\"\\\\\\x00-\\x1F] | \"\\\\\" ([\"\\\\/bfnrt] | \"u\" [0-9a-fA-F]{4}) )* \"\\\"\"\n"
    "number ::= \"-\"? (\"0\" | [1-9] [0-9]*) (\".\" [0-9]+)? ([eE] [-+]? [0-9]+)?\n"
    "ws     ::= [ \\t\\n\\r]*\n";

static void test_accept_json(void) {
    static const accept_case cases[] = {
        {"{\"a\": [1, 2.5e3, true, null, \"x\\\"y\"]}", 1},
        {"[]", 1},
        {" {} ", 1},
        {"\"\\u00e9\"", 1},
        {"\"\xC3\xA9\xF0\x9F\x98\x80\xE4\xB8\xAD\"", 1}, // é 😀 中 as UTF-8
        {"-0.5", 1},
        {"[[[{\"k\":{\"k\":[]}}]]]", 1},
        {"{\"a\" 1}", 0},
        {"[1,]", 0},
        {"01", 0},
        {"\"\\x\"", 0},
        {"{\"a\":1}}", 0},
        {"\"a\tb\"", 0},                 // raw control character
        {"\"\xC3\"", 0},                 // truncated sequence
        {"\"\xC0\xAF\"", 0},             // overlong '/'
        {"\"\xE0\x80\xAF\"", 0},         // overlong, 3 bytes
        {"\"\xED\xA0\x80\"", 0},         // surrogate D800
        {"\"\xF4\x90\x80\x80\"", 0},     // above U+10FFFF
        {"\"\xF0\x9F\x98\"", 0},         // truncated emoji
        {"\"\x80\"", 0},                 // lone continuation byte
        {"\"\xEF\xBF\xBF\xF4\x8F\xBF\xBF\"", 1}, // U+FFFF, U+10FFFF
    };
    check_table(json_grammar, cases, ARRAY_LEN(cases));
    // the same table against Jansson (an independent JSON parser)
    for (size_t i = 0; i < ARRAY_LEN(cases); i++) {
        json_error_t je;
        json_t *j = json_loads(cases[i].s, JSON_DECODE_ANY | JSON_ALLOW_NUL, &je);
        CHECK_MSG((j != NULL) == cases[i].want, "Jansson disagrees on \"%s\"", cases[i].s);
        json_decref(j);
    }
}

// Names: {1,3} more names after the first (2 to 4 in all), against a regex.
static const char *names_grammar = "root ::= name (\",\" \" \"? name){1,3} \".\"\nname ::= [A-Z] [a-z]{1,8}\n";
static const char *names_regex = "[A-Z][a-z]{1,8}(, ?[A-Z][a-z]{1,8}){1,3}\\.";

// A list of 1..5 names, then (half the time) one random edit: near misses.
static void random_names(smp_rng *rng, char *s, size_t *n) {
    static const char up[] = "ABZ", low[] = "abz", junk[] = "aQ ,.;x";
    size_t k = 0;
    int names = 1 + (int)(smp_rng_next(rng) % 5);
    for (int i = 0; i < names; i++) {
        if (i) {
            s[k++] = ',';
            if (smp_rng_next(rng) % 2) s[k++] = ' ';
        }
        s[k++] = up[smp_rng_next(rng) % 3];
        int l = 1 + (int)(smp_rng_next(rng) % 9);
        for (int j = 0; j < l; j++) s[k++] = low[smp_rng_next(rng) % 3];
    }
    s[k++] = '.';
    if (smp_rng_next(rng) % 2) {
        size_t at = (size_t)(smp_rng_next(rng) % k);
        int op = (int)(smp_rng_next(rng) % 3);
        char ch = junk[smp_rng_next(rng) % (sizeof junk - 1)];
        if (op == 0) s[at] = ch;                                    // replace
        else if (op == 1) memmove(s + at, s + at + 1, k - at - 1), k--; // delete
        else memmove(s + at + 1, s + at, k - at), s[at] = ch, k++;      // insert
    }
    *n = k;
}

static void test_accept_names(void) {
    static const accept_case cases[] = {
        {"Ann, Bob.", 1},     {"Ann,Bob,Cy, Dee.", 1}, {"Ann.", 0},          {"Ann, Bob, Cy, Dee, Eve.", 0},
        {"Ann,  Bob.", 0},    {"Annabellea, Bo.", 0},  {"Ann, bob.", 0},      {"Ab,Cd", 0},
        {"Abcdefghi,Xy.", 1},
    };
    check_table(names_grammar, cases, ARRAY_LEN(cases));
    gram_grammar *g = compile(names_grammar);
    pcre2_code *re = regex(names_regex, false);
    if (!g || !re) goto out;
    smp_rng rng;
    smp_rng_seed(&rng, 5);
    int accepted = 0;
    for (int t = 0; t < 3000; t++) {
        char s[256];
        size_t n;
        random_names(&rng, s, &n);
        int want = re_match(re, s, n), got = matches(g, s, n, (int)(t % FEED_MODES), &rng);
        CHECK_MSG(got == want, "\"%.*s\": grammar %d, regex %d", (int)n, s, got, want);
        accepted += want;
    }
    CHECK_MSG(accepted > 300 && accepted < 2700, "%d of 3000 accepted", accepted);
out:
    gram_free(g);
    pcre2_code_free(re);
}

// UTF-8: a Greek range, an emoji literal, negation; random strings made of
// whole and cut characters, fed in chunks that split characters.
static const char *utf_grammar = "root ::= ([\xCE\xB1-\xCF\x89] | \"\xF0\x9F\x98\x80\" | [0-9]){2,4} (\"!\" | \"\xC2\xA1\") [^a-z\\n]?\n";
static const char *utf_regex = "([\xCE\xB1-\xCF\x89]|\xF0\x9F\x98\x80|[0-9]){2,4}(!|\xC2\xA1)[^a-z\\n]?";

static void test_accept_utf8(void) {
    static const accept_case cases[] = {
        {"\xCE\xB1\xCF\x89!", 1},                         // αω!
        {"\xF0\x9F\x98\x80\xF0\x9F\x98\x80\xC2\xA1", 1}, // 😀😀¡
        {"1\xF0\x9F\x98\x80\xCE\xB2" "9!\xE4\xB8\xAD", 1}, // 1😀β9!中
        {"\xCE\xB1!", 0},                                 // one only
        {"\xCE\x91\xCE\xB1!", 0},                         // Α (capital) is outside α-ω
        {"\xF0\x9F\x98\x81\xCE\xB1!", 0},                 // 😁 is not 😀
        {"\xCE\xB1\xCE\xB1!a", 0},
        {"\xCE\xB1\xCE\xB1!\xF0\x9F\x98", 0},             // cut emoji at the end
        {"\xCE\xB1\xCE\xB1!\xF0\x9F\x98\x81", 1},
    };
    check_table(utf_grammar, cases, ARRAY_LEN(cases));
    gram_grammar *g = compile(utf_grammar);
    pcre2_code *re = regex(utf_regex, true);
    if (!g || !re) goto out;
    // a body of 1..5 characters, an end mark, a tail: each part sometimes wrong
    static const char *body[] = {"\xCE\xB1", "\xCF\x89", "\xCF\x88", "\xCE\x91", "\xF0\x9F\x98\x80",
                                 "\xF0\x9F\x98\x81", "1", "x", "\xCE", "\x98\x80"};
    static const char *end[] = {"!", "\xC2\xA1", "", "\xC2", "x"};
    static const char *tail[] = {"", "", "a", "\xE4\xB8\xAD", "\n", "\xF0\x9F\x98\x81", "\xF0\x9F\x98", "!!"};
    smp_rng rng;
    smp_rng_seed(&rng, 9);
    int accepted = 0;
    for (int t = 0; t < 4000; t++) {
        char s[64];
        size_t n = 0;
        int k = 1 + (int)(smp_rng_next(&rng) % 5);
        for (int i = 0; i < k; i++) {
            const char *p = body[smp_rng_next(&rng) % (t % 3 ? 7 : ARRAY_LEN(body))];
            memcpy(s + n, p, strlen(p)), n += strlen(p);
        }
        const char *e = end[smp_rng_next(&rng) % ARRAY_LEN(end)], *tl = tail[smp_rng_next(&rng) % ARRAY_LEN(tail)];
        memcpy(s + n, e, strlen(e)), n += strlen(e);
        memcpy(s + n, tl, strlen(tl)), n += strlen(tl);
        int want = re_match(re, s, n), got = matches(g, s, n, (int)(t % FEED_MODES), &rng);
        CHECK_MSG(got == want, "case %d: grammar %d, regex %d", t, got, want);
        accepted += want;
    }
    CHECK_MSG(accepted > 100 && accepted < 3900, "%d of 4000 accepted", accepted);
out:
    gram_free(g);
    pcre2_code_free(re);
}

// Completion, "done", reset, clone and copy, end-of-generation semantics.
static void test_state_lifecycle(void) {
    gram_grammar *g = compile("root ::= \"ab\" \"c\"?");
    if (!g) return;
    gram_state *s, *c = NULL;
    sim_err err;
    CHECK(gram_state_new(&s, g, &err) == SIM_OK);
    CHECK(!gram_is_complete(s) && !gram_is_done(s));
    CHECK(gram_accept_bytes(s, "a", 1, &err) == SIM_OK);
    CHECK(gram_state_clone(&c, s, &err) == SIM_OK);
    CHECK(gram_accept_bytes(s, "b", 1, &err) == SIM_OK);
    CHECK(gram_is_complete(s) && !gram_is_done(s));
    CHECK(gram_accept_bytes(s, "x", 1, &err) == SIM_ERR_ARG); // rejected: no change
    CHECK(gram_is_complete(s));
    CHECK(gram_accept_bytes(s, "c", 1, &err) == SIM_OK);
    CHECK(gram_is_complete(s) && gram_is_done(s));
    // the clone stayed after "a"
    CHECK(!gram_is_complete(c));
    CHECK_EQ_INT(gram_can_accept_bytes(c, "bc", 2, &err), 1);
    CHECK_EQ_INT(gram_can_accept_bytes(c, "a", 1, &err), 0);
    CHECK(gram_state_copy(c, s, &err) == SIM_OK);
    CHECK(gram_is_done(c));
    gram_state_reset(c);
    CHECK(!gram_is_complete(c));
    CHECK(gram_accept_bytes(c, "abc", 3, &err) == SIM_OK && gram_is_done(c));
    // a grammar accepting the empty string is complete at once
    gram_grammar *e = compile("root ::= \"x\"*");
    gram_state *es;
    CHECK(gram_state_new(&es, e, &err) == SIM_OK);
    CHECK(gram_is_complete(es) && !gram_is_done(es));
    CHECK(gram_state_copy(es, s, &err) == SIM_ERR_ARG); // different grammars
    gram_state_free(es);
    gram_free(e);
    gram_state_free(c);
    gram_state_free(s);
    gram_free(g);
}

// Ambiguity and nesting limits give errors, never hangs.
static void test_limits(void) {
    sim_err err;
    // every 'a' doubles the distinct stacks ("b" or "c" owed at each level)
    gram_grammar *g = compile("root ::= s\ns ::= \"a\" s \"b\" | \"a\" s \"c\" |");
    gram_state *s;
    if (g && gram_state_new(&s, g, &err) == SIM_OK) {
        char as[40];
        memset(as, 'a', sizeof as);
        sim_status st = gram_accept_bytes(s, as, sizeof as, &err);
        CHECK_EQ_INT(st, SIM_ERR_RANGE);
        CHECK_MSG(strstr(err.msg, "too ambiguous") != NULL, "%s", err.msg);
        CHECK(gram_accept_bytes(s, "aab", 3, &err) == SIM_OK); // unchanged, still usable
        gram_state_free(s);
    }
    gram_free(g);
    g = compile("root ::= \"(\" root \")\" | \"x\"");
    if (g && gram_state_new(&s, g, &err) == SIM_OK) {
        size_t n = GRAM_MAX_DEPTH + 10;
        char *p = malloc(n);
        memset(p, '(', n);
        sim_status st = gram_accept_bytes(s, p, n, &err);
        CHECK_EQ_INT(st, SIM_ERR_RANGE);
        CHECK_MSG(strstr(err.msg, "deeper") != NULL, "%s", err.msg);
        CHECK(gram_accept_bytes(s, "((x))", 5, &err) == SIM_OK && gram_is_complete(s));
        free(p);
        gram_state_free(s);
    }
    gram_free(g);
    // repetitions of literals past the element limit: 500 rules of 10000 copies
    size_t cap = 600 * 40, k = 0;
    char *big = malloc(cap);
    k += (size_t)snprintf(big + k, cap - k, "root ::= r0\n");
    for (int i = 0; i < 500; i++) k += (size_t)snprintf(big + k, cap - k, "r%d ::= \"ab\"{%d}\n", i, GRAM_MAX_REPEAT);
    gram_grammar *b = NULL;
    CHECK_EQ_INT(gram_parse(&b, big, k, &err), SIM_ERR_RANGE);
    CHECK_MSG(strstr(err.msg, "too large") != NULL, "%s", err.msg);
    free(big);
    CHECK(b == NULL);
}

// --- vocabularies ----------------------------------------------------------------------

// A small SentencePiece vocab made in memory: byte tokens (so any text can be
// written and characters split across tokens), JSON punctuation, words, Greek,
// an emoji, a control token and </s> as end of generation.
static tok_vocab *tiny_vocab(void) {
    static char bytes[256][8];
    static const char *words[] = {
        "\xE2\x96\x81", "{", "}", "[", "]", "\"", ":", ",", "\":", "\",", "{\"", "\"}", "\xE2\x96\x81\"", ",\xE2\x96\x81",
        "true", "false", "null", "name", "age", "mood", "happy", "sad", "alice", "bob", "cmd", "who", "scene", "park",
        "0", "1", "2", "3", "4", "5", "6", "7", "8", "9", "12", "-", ".", "e", "A", "B", "Ann", "Bob", "an", "ob", "y",
        "\xCE\xB1", "\xCF\x89", "\xCE\xB2", "\xF0\x9F\x98\x80", "!", "\xC2\xA1", "\\", "\\n", "\\u", "\n", "\xE2\x96\x81\xE2\x96\x81",
        "\xE4\xB8\xAD\xE6\x96\x87", "x", "\"x\"", "setScene", "addCharacter", "outfit", "cafe", "tags", "pos", "note",
    };
    enum { N_WORDS = ARRAY_LEN(words) };
    const char *pieces[4 + 256 + N_WORDS];
    float scores[4 + 256 + N_WORDS];
    int32_t types[4 + 256 + N_WORDS];
    int n = 0;
    pieces[n] = "<unk>", types[n++] = 2;
    pieces[n] = "<s>", types[n++] = 3;
    pieces[n] = "</s>", types[n++] = 3;
    pieces[n] = "<|ctl|>", types[n++] = 3;
    for (int b = 0; b < 256; b++) {
        snprintf(bytes[b], sizeof bytes[b], "<0x%02X>", b);
        pieces[n] = bytes[b], types[n++] = 6;
    }
    for (size_t i = 0; i < N_WORDS; i++) pieces[n] = words[i], types[n++] = 1;
    for (int i = 0; i < n; i++) scores[i] = -(float)i;
    gguf_writer *w = gguf_writer_new();
    gguf_writer_set_str(w, "tokenizer.ggml.model", "llama");
    gguf_writer_set_str_arr(w, "tokenizer.ggml.tokens", pieces, (uint64_t)n);
    gguf_writer_set_arr(w, "tokenizer.ggml.scores", GGUF_F32, scores, (uint64_t)n);
    gguf_writer_set_arr(w, "tokenizer.ggml.token_type", GGUF_I32, types, (uint64_t)n);
    gguf_writer_set_u32(w, "tokenizer.ggml.bos_token_id", 1);
    gguf_writer_set_u32(w, "tokenizer.ggml.eos_token_id", 2);
    gguf_writer_set_u32(w, "tokenizer.ggml.unknown_token_id", 0);
    uint8_t *data;
    size_t size;
    sim_err err;
    tok_vocab *v = NULL;
    gguf_file *f = NULL;
    sim_status st = gguf_writer_write_memory(w, &data, &size, &err);
    gguf_writer_free(w);
    if (st == SIM_OK) {
        st = gguf_open_memory(&f, data, size, "tiny", &err);
        if (st == SIM_OK) st = tok_load(&v, f, &err);
        gguf_close(f);
        mem_free(data);
    }
    CHECK_MSG(st == SIM_OK, "%s", err.msg);
    return v;
}

static tok_vocab *shared_vocab(const char *name) {
    char rel[128], path[1024];
    snprintf(rel, sizeof rel, "vocab/ggml-vocab-%s.gguf", name);
    if (!test_shared_path(path, sizeof path, rel)) return NULL;
    gguf_file *f;
    sim_err err;
    tok_vocab *v = NULL;
    if (gguf_open(&f, path, &err) != SIM_OK) {
        CHECK_MSG(0, "%s", err.msg);
        return NULL;
    }
    if (tok_load(&v, f, &err) != SIM_OK) CHECK_MSG(0, "%s", err.msg);
    gguf_close(f);
    return v;
}

// --- 3. token-level generation ------------------------------------------------------------

typedef struct gen_stats {
    int runs, completed;
    long tokens;
    double filter_ns, max_filter_ns;
    long filters;
} gen_stats;

// Draws tokens with uniform random logits ("high temperature") through the
// grammar filter until an end-of-generation token (allowed only when
// complete) or `budget` tokens. Checks, every step, that a small candidate
// set (the token-by-token path) and gram_can_accept_token agree with the
// trie walk. Writes the text (NUL-terminated) and returns whether it ended
// with the grammar complete.
static bool generate(const gram_grammar *g, const gram_vocab *gv, const tok_vocab *v, uint64_t seed, int budget,
                     char *out, size_t cap, gen_stats *gs) {
    int32_t nv = tok_n_vocab(v);
    smp_cand *cand = malloc((size_t)nv * sizeof *cand);
    smp_cand small[48];
    gram_state *s;
    sim_err err;
    smp_rng rng;
    smp_rng_seed(&rng, seed);
    size_t len = 0;
    bool ended = false;
    out[0] = 0;
    if (gram_state_new(&s, g, &err) != SIM_OK) {
        CHECK_MSG(0, "%s", err.msg);
        free(cand);
        return false;
    }
    gs->runs++;
    for (int step = 0; step < budget && !ended; step++) {
        for (int32_t i = 0; i < nv; i++) cand[i] = (smp_cand){i, (float)(smp_rng_uniform(&rng) * 4.0), 0};
        uint64_t t0 = time_ns();
        sim_status st = gram_filter(s, gv, cand, (size_t)nv, &err);
        double dt = (double)(time_ns() - t0);
        gs->filter_ns += dt, gs->filters++;
        if (dt > gs->max_filter_ns) gs->max_filter_ns = dt;
        if (st != SIM_OK) {
            CHECK_MSG(0, "filter: %s", err.msg);
            break;
        }
        // the small-set path and can_accept agree with the trie walk
        for (int k = 0; k < 48; k++) {
            int32_t id = (int32_t)(smp_rng_next(&rng) % (uint64_t)nv);
            small[k] = (smp_cand){id, 1.0f, 0};
        }
        CHECK(gram_filter(s, gv, small, 48, &err) == SIM_OK);
        for (int k = 0; k < 48; k++) {
            bool big_ok = isfinite(cand[small[k].id].logit), small_ok = isfinite(small[k].logit);
            int can = gram_can_accept_token(s, gv, small[k].id, &err);
            if (big_ok != small_ok || can != (int)big_ok) {
                CHECK_MSG(0, "token %d: trie %d, token path %d, can_accept %d", small[k].id, big_ok, small_ok, can);
                break;
            }
        }
        // draw from softmax over the allowed
        double total = 0;
        for (int32_t i = 0; i < nv; i++)
            if (isfinite(cand[i].logit)) total += exp(cand[i].logit);
        if (total == 0) {
            CHECK_MSG(0, "seed %llu: no token allowed after \"%s\"", (unsigned long long)seed, out);
            break;
        }
        double r = smp_rng_uniform(&rng) * total;
        int32_t pick = -1;
        for (int32_t i = 0; i < nv; i++) {
            if (!isfinite(cand[i].logit)) continue;
            pick = i;
            if ((r -= exp(cand[i].logit)) < 0) break;
        }
        if (tok_is_eog(v, pick)) {
            CHECK(gram_is_complete(s));
            CHECK(gram_accept_token(s, gv, pick, &err) == SIM_OK && gram_is_done(s));
            ended = true;
            break;
        }
        st = gram_accept_token(s, gv, pick, &err);
        if (st != SIM_OK) {
            CHECK_MSG(0, "accept: %s", err.msg);
            break;
        }
        gs->tokens++;
        size_t tl;
        const char *t = tok_token_text(v, pick, false, &tl);
        if (len + tl < cap) memcpy(out + len, t, tl), len += tl, out[len] = 0;
    }
    bool ok = ended && gram_is_complete(s);
    gs->completed += ok;
    gram_state_free(s);
    free(cand);
    return ok;
}

typedef bool (*text_check)(const char *text, void *ctx, char *why, size_t why_cap);

static bool check_regex(const char *text, void *ctx, char *why, size_t cap) {
    if (re_match(ctx, text, strlen(text))) return true;
    snprintf(why, cap, "the regex does not match");
    return false;
}

static bool check_json_parses(const char *text, void *ctx, char *why, size_t cap) {
    json_error_t je;
    json_t *j = json_loads(text, JSON_DECODE_ANY | JSON_ALLOW_NUL, &je);
    if (!j) snprintf(why, cap, "Jansson: %s", je.text);
    json_decref(j);
    return j != NULL;
}

// Runs n_seeds generations and checks every output; all must complete.
static void run_generation(const char *label, const char *grammar, const tok_vocab *v, const gram_vocab *gv,
                           int n_seeds, int budget, text_check check, void *ctx, gen_stats *gs_out) {
    gram_grammar *g = compile(grammar);
    if (!g) return;
    gen_stats gs = {0};
    char *text = malloc(1 << 16);
    int bad = 0;
    for (int seed = 0; seed < n_seeds; seed++) {
        bool done = generate(g, gv, v, 1000 + (uint64_t)seed, budget, text, 1 << 16, &gs);
        char why[256] = "";
        if (!done) snprintf(why, sizeof why, "did not complete within %d tokens", budget);
        else check(text, ctx, why, sizeof why);
        if (why[0] && bad++ < 5) CHECK_MSG(0, "%s seed %d: %s\n    text: %s", label, seed, why, text);
    }
    CHECK_MSG(bad == 0, "%s: %d of %d outputs failed", label, bad, n_seeds);
    fprintf(stderr, "  %-28s %3d/%d complete, %5.1f tokens/output, filter %.3f ms/token (max %.2f ms)\n", label,
            gs.completed, gs.runs, (double)gs.tokens / (gs.runs ? gs.runs : 1), gs.filter_ns / (gs.filters ? gs.filters : 1) / 1e6,
            gs.max_filter_ns / 1e6);
    if (gs_out) *gs_out = gs;
    free(text);
    gram_free(g);
}

// JSON with bounded strings and numbers and two levels of nesting, so random
// tokens finish within the budget.
static const char *json_bounded_grammar =
    "root    ::= object\n"
    "object  ::= \"{\" ws ( member (\",\" ws member){0,3} )? \"}\"\n"
    "member  ::= string ws \":\" ws value1 ws\n"
    "value1  ::= scalar | \"[\" ws ( value2 ws (\",\" ws value2 ws){0,3} )? \"]\" | \"{\" ws ( string ws \":\" ws value2 ws )? \"}\"\n"
    "value2  ::= scalar | \"[\" ws ( scalar ws (\",\" ws scalar ws){0,2} )? \"]\"\n"
    "scalar  ::= string | number | \"true\" | \"false\" | \"null\"\n"
    "string  ::= \"\\\"\" ( [^\"\\\\\\x00-\\x1F] | \"\\\\\" ([\"\\\\/bfnrt] | \"u\" [0-9a-cA-C] [0-9a-fA-F]{3}) ){0,8} \"\\\"\"\n"
    "number  ::= \"-\"? ([0-9] | [1-9] [0-9]{1,5}) (\".\" [0-9]{1,4})? ([eE] [-+]? [0-9]{1,2})?\n"
    "ws      ::= [ \\n]?\n";

static void run_vocab_suite(const char *label, const tok_vocab *v, int n_seeds) {
    gram_vocab *gv;
    sim_err err;
    if (gram_vocab_new(&gv, v, &err) != SIM_OK) {
        CHECK_MSG(0, "%s", err.msg);
        return;
    }
    char l[64];
    pcre2_code *re = regex(names_regex, false);
    snprintf(l, sizeof l, "%s names", label);
    if (re) run_generation(l, names_grammar, v, gv, n_seeds, 300, check_regex, re, NULL);
    pcre2_code_free(re);
    re = regex(utf_regex, true);
    snprintf(l, sizeof l, "%s utf-8", label);
    if (re) run_generation(l, utf_grammar, v, gv, n_seeds, 300, check_regex, re, NULL);
    pcre2_code_free(re);
    snprintf(l, sizeof l, "%s json", label);
    run_generation(l, json_bounded_grammar, v, gv, n_seeds, 400, check_json_parses, NULL, NULL);
    gram_vocab_free(gv);
}

static void test_generate_tiny(void) {
    tok_vocab *v = tiny_vocab();
    if (!v) return;
    run_vocab_suite("tiny", v, 200);
    tok_free(v);
}

static void test_generate_llama_spm(void) {
    tok_vocab *v = shared_vocab("llama-spm");
    if (!v) return;
    run_vocab_suite("llama-spm", v, 200);
    tok_free(v);
}

static void test_generate_gpt2(void) {
    tok_vocab *v = shared_vocab("gpt-2");
    if (!v) return;
    run_vocab_suite("gpt-2", v, 200);
    tok_free(v);
}

// Token rules: control tokens never, end of generation only when complete,
// a token ending mid-character followed by one finishing it.
static void test_token_rules(void) {
    tok_vocab *v = tiny_vocab();
    if (!v) return;
    gram_grammar *g = compile("root ::= \"\xCE\xB1\" \"x\"?");
    gram_vocab *gv;
    gram_state *s;
    sim_err err;
    if (!g || gram_vocab_new(&gv, v, &err) != SIM_OK) goto out0;
    CHECK(gram_state_new(&s, g, &err) == SIM_OK);
    int32_t eos = tok_eos(v), ctl = 3, ce = 4 + 0xCE, b1 = 4 + 0xB1, alpha = tok_find(v, "\xCE\xB1", 2);
    CHECK(alpha > 0);
    CHECK_EQ_INT(gram_can_accept_token(s, gv, eos, &err), 0);
    CHECK_EQ_INT(gram_can_accept_token(s, gv, ctl, &err), 0);
    CHECK_EQ_INT(gram_can_accept_token(s, gv, 1, &err), 0); // BOS (control)
    CHECK_EQ_INT(gram_can_accept_token(s, gv, 0, &err), 0); // <unk>: empty text
    CHECK_EQ_INT(gram_can_accept_token(s, gv, -1, &err), 0);
    CHECK_EQ_INT(gram_can_accept_token(s, gv, 99999, &err), 0);
    CHECK_EQ_INT(gram_can_accept_token(s, gv, alpha, &err), 1);
    CHECK_EQ_INT(gram_can_accept_token(s, gv, ce, &err), 1);
    CHECK_EQ_INT(gram_can_accept_token(s, gv, b1, &err), 0);
    CHECK(gram_accept_token(s, gv, eos, &err) == SIM_ERR_ARG);
    CHECK(gram_accept_token(s, gv, ctl, &err) == SIM_ERR_ARG);
    CHECK(gram_accept_token(s, gv, ce, &err) == SIM_OK); // half of α
    CHECK(!gram_is_complete(s));
    CHECK_EQ_INT(gram_can_accept_token(s, gv, eos, &err), 0);
    CHECK_EQ_INT(gram_can_accept_token(s, gv, b1, &err), 1);
    CHECK_EQ_INT(gram_can_accept_token(s, gv, alpha, &err), 0);
    // filter with a candidate list over the whole vocab: exactly <0xB1> survives
    int32_t nv = tok_n_vocab(v);
    smp_cand *c = malloc((size_t)nv * sizeof *c);
    for (int32_t i = 0; i < nv; i++) c[i] = (smp_cand){i, 0.5f, 0};
    CHECK(gram_filter(s, gv, c, (size_t)nv, &err) == SIM_OK);
    int n_ok = 0;
    for (int32_t i = 0; i < nv; i++) n_ok += isfinite(c[i].logit);
    CHECK_EQ_INT(n_ok, 1);
    CHECK(isfinite(c[b1].logit));
    CHECK(gram_accept_token(s, gv, b1, &err) == SIM_OK);
    CHECK(gram_is_complete(s) && !gram_is_done(s));
    for (int32_t i = 0; i < nv; i++) c[i] = (smp_cand){i, 0.5f, 0};
    CHECK(gram_filter(s, gv, c, (size_t)nv, &err) == SIM_OK);
    CHECK(isfinite(c[eos].logit) && isfinite(c[4 + 'x'].logit) && !isfinite(c[ctl].logit) && !isfinite(c[1].logit));
    CHECK(gram_accept_token(s, gv, eos, &err) == SIM_OK && gram_is_done(s));
    CHECK(gram_accept_token(s, gv, 4 + 'x', &err) == SIM_ERR_ARG); // ended
    free(c);
    gram_state_free(s);
    gram_vocab_free(gv);
out0:
    gram_free(g);
    tok_free(v);
}

// A tiny cache limit forces flushes; filtering and matching must not change
// (compared step by step with a twin state that never flushes).
static void test_cache_flush(void) {
    tok_vocab *v = tiny_vocab();
    gram_grammar *g = compile(json_grammar);
    gram_vocab *gv = NULL;
    gram_state *s = NULL, *twin = NULL;
    sim_err err;
    if (!v || !g || gram_vocab_new(&gv, v, &err) != SIM_OK || gram_state_new(&s, g, &err) != SIM_OK ||
        gram_state_new(&twin, g, &err) != SIM_OK)
        goto out;
    gram_state_set_cache_limit(s, 128 << 10);
    // nesting makes new stacks, hence new states, at every level
    char doc[4096];
    size_t n = 0;
    for (int i = 0; i < 300; i++) n += (size_t)snprintf(doc + n, sizeof doc - n, i % 2 ? "[" : "{\"k\": ");
    n += (size_t)snprintf(doc + n, sizeof doc - n, "\"\xCE\xB1\"");
    for (int i = 299; i >= 0; i--) n += (size_t)snprintf(doc + n, sizeof doc - n, i % 2 ? "]" : "}");
    int32_t nv = tok_n_vocab(v);
    smp_cand *a = malloc((size_t)nv * sizeof *a), *b = malloc((size_t)nv * sizeof *b);
    int diffs = 0;
    for (size_t i = 0; i < n; i++) {
        for (int32_t k = 0; k < nv; k++) a[k] = b[k] = (smp_cand){k, 0, 0};
        CHECK(gram_filter(s, gv, a, (size_t)nv, &err) == SIM_OK);
        CHECK(gram_filter(twin, gv, b, (size_t)nv, &err) == SIM_OK);
        for (int32_t k = 0; k < nv; k++) diffs += isfinite(a[k].logit) != isfinite(b[k].logit);
        CHECK(gram_accept_bytes(s, doc + i, 1, &err) == SIM_OK);
        CHECK(gram_accept_bytes(twin, doc + i, 1, &err) == SIM_OK);
    }
    CHECK_EQ_INT(diffs, 0);
    CHECK(gram_is_complete(s) && !gram_is_done(s)); // trailing whitespace may follow
    gram_stats st = gram_state_stats(s);
    CHECK_MSG(st.n_flushes > 0, "%d flushes, cache %zu bytes", st.n_flushes, st.cache_bytes);
    fprintf(stderr, "  %d flushes; cache %zu bytes (%d states) vs %zu bytes (%d states) unflushed\n", st.n_flushes,
            st.cache_bytes, st.n_states, gram_state_stats(twin).cache_bytes, gram_state_stats(twin).n_states);
    CHECK_EQ_INT(gram_state_stats(twin).n_flushes, 0);
    gram_state_reset(s); // the start state survives flushes
    CHECK(gram_accept_bytes(s, "[1]", 3, &err) == SIM_OK && gram_is_complete(s));
    free(a);
    free(b);
out:
    gram_state_free(s);
    gram_state_free(twin);
    gram_vocab_free(gv);
    gram_free(g);
    tok_free(v);
}

// --- 4. JSON Schema -----------------------------------------------------------------------

static size_t utf8_chars(const char *s, size_t n) {
    size_t k = 0;
    for (size_t i = 0; i < n; i++) k += ((uint8_t)s[i] & 0xC0) != 0x80;
    return k;
}

static bool str_len_in(const json_t *j, size_t lo, size_t hi) {
    if (!json_is_string(j)) return false;
    size_t n = utf8_chars(json_string_value(j), json_string_length(j));
    return n >= lo && n <= hi;
}

// Only the listed keys, in this order, the required ones present.
static bool keys_ok(const json_t *o, const char *const *keys, const bool *req, size_t n, char *why, size_t cap) {
    if (!json_is_object(o)) return snprintf(why, cap, "not an object"), false;
    size_t at = 0;
    const char *k;
    json_t *val;
    json_object_foreach((json_t *)o, k, val) {
        while (at < n && strcmp(keys[at], k) != 0) {
            if (req[at]) return snprintf(why, cap, "required key %s missing or out of order", keys[at]), false;
            at++;
        }
        if (at == n) return snprintf(why, cap, "unexpected key %s", k), false;
        at++;
    }
    for (; at < n; at++)
        if (req[at]) return snprintf(why, cap, "required key %s missing", keys[at]), false;
    return true;
}

static const char *schema_sheet =
    "{\"type\":\"object\",\"properties\":{"
    "\"name\":{\"type\":\"string\",\"minLength\":1,\"maxLength\":12},"
    "\"age\":{\"type\":\"integer\"},"
    "\"mood\":{\"enum\":[\"happy\",\"sad\",\"angry\",null,3]},"
    "\"alive\":{\"type\":\"boolean\"},"
    "\"tags\":{\"type\":\"array\",\"items\":{\"type\":\"string\",\"maxLength\":6},\"maxItems\":3},"
    "\"pos\":{\"type\":\"object\",\"properties\":{\"x\":{\"type\":\"number\"},\"y\":{\"type\":\"number\"}},\"required\":[\"x\",\"y\"]},"
    "\"note\":{\"type\":[\"string\",\"null\"],\"maxLength\":8}"
    "},\"required\":[\"name\",\"mood\",\"pos\"]}";

static bool check_sheet(const char *text, void *ctx, char *why, size_t cap) {
    json_error_t je;
    json_t *j = json_loads(text, JSON_ALLOW_NUL, &je);
    if (!j) return snprintf(why, cap, "Jansson: %s", je.text), false;
    static const char *keys[] = {"name", "age", "mood", "alive", "tags", "pos", "note"};
    static const bool req[] = {true, false, true, false, false, true, false};
    bool ok = keys_ok(j, keys, req, 7, why, cap);
    json_t *x;
    if (ok && !str_len_in(json_object_get(j, "name"), 1, 12)) ok = false, snprintf(why, cap, "name");
    if (ok && (x = json_object_get(j, "age")) && !json_is_integer(x)) ok = false, snprintf(why, cap, "age");
    if (ok) {
        x = json_object_get(j, "mood");
        json_t *e = json_loads("[\"happy\",\"sad\",\"angry\",null,3]", 0, NULL);
        bool in = false;
        for (size_t i = 0; i < json_array_size(e); i++) in |= json_equal(x, json_array_get(e, i)) || (json_is_null(x) && json_is_null(json_array_get(e, i)));
        json_decref(e);
        if (!in) ok = false, snprintf(why, cap, "mood not in the enum");
    }
    if (ok && (x = json_object_get(j, "alive")) && !json_is_boolean(x)) ok = false, snprintf(why, cap, "alive");
    if (ok && (x = json_object_get(j, "tags"))) {
        if (!json_is_array(x) || json_array_size(x) > 3) ok = false, snprintf(why, cap, "tags");
        for (size_t i = 0; ok && i < json_array_size(x); i++)
            if (!str_len_in(json_array_get(x, i), 0, 6)) ok = false, snprintf(why, cap, "tags[%zu]", i);
    }
    if (ok) {
        static const char *pk[] = {"x", "y"};
        static const bool pr[] = {true, true};
        x = json_object_get(j, "pos");
        ok = keys_ok(x, pk, pr, 2, why, cap) && json_is_number(json_object_get(x, "x")) && json_is_number(json_object_get(x, "y"));
        if (!ok && !why[0]) snprintf(why, cap, "pos");
    }
    if (ok && (x = json_object_get(j, "note")) && !json_is_null(x) && !str_len_in(x, 0, 8)) ok = false, snprintf(why, cap, "note");
    json_decref(j);
    return ok;
}

static const char *schema_stage =
    "{\"$defs\":{\"who\":{\"enum\":[\"alice\",\"bob\"]},"
    "\"cmd\":{\"anyOf\":["
    "{\"type\":\"object\",\"properties\":{\"cmd\":{\"const\":\"setScene\"},\"scene\":{\"enum\":[\"park\",\"cafe\"]}},\"required\":[\"cmd\",\"scene\"]},"
    "{\"type\":\"object\",\"properties\":{\"cmd\":{\"const\":\"addCharacter\"},\"who\":{\"$ref\":\"#/$defs/who\"},"
    "\"outfit\":{\"type\":\"string\",\"maxLength\":5}},\"required\":[\"cmd\",\"who\"]}]}},"
    "\"type\":\"array\",\"items\":{\"$ref\":\"#/$defs/cmd\"},\"minItems\":1,\"maxItems\":3}";

static bool check_stage(const char *text, void *ctx, char *why, size_t cap) {
    json_error_t je;
    json_t *j = json_loads(text, JSON_ALLOW_NUL, &je);
    if (!j) return snprintf(why, cap, "Jansson: %s", je.text), false;
    bool ok = json_is_array(j) && json_array_size(j) >= 1 && json_array_size(j) <= 3;
    if (!ok) snprintf(why, cap, "not an array of 1..3");
    for (size_t i = 0; ok && i < json_array_size(j); i++) {
        json_t *c = json_array_get(j, i);
        const char *cmd = json_string_value(json_object_get(c, "cmd"));
        if (cmd && strcmp(cmd, "setScene") == 0) {
            static const char *k[] = {"cmd", "scene"};
            static const bool r[] = {true, true};
            const char *sc = json_string_value(json_object_get(c, "scene"));
            ok = keys_ok(c, k, r, 2, why, cap) && sc && (strcmp(sc, "park") == 0 || strcmp(sc, "cafe") == 0);
        } else if (cmd && strcmp(cmd, "addCharacter") == 0) {
            static const char *k[] = {"cmd", "who", "outfit"};
            static const bool r[] = {true, true, false};
            const char *w = json_string_value(json_object_get(c, "who"));
            json_t *o = json_object_get(c, "outfit");
            ok = keys_ok(c, k, r, 3, why, cap) && w && (strcmp(w, "alice") == 0 || strcmp(w, "bob") == 0) &&
                 (!o || str_len_in(o, 0, 5));
        } else ok = false;
        if (!ok && !why[0]) snprintf(why, cap, "command %zu", i);
    }
    json_decref(j);
    return ok;
}

static const char *schema_ints = "{\"type\":\"array\",\"items\":{\"type\":\"integer\"},\"minItems\":2,\"maxItems\":4}";

static bool check_ints(const char *text, void *ctx, char *why, size_t cap) {
    json_t *j = json_loads(text, 0, NULL);
    bool ok = json_is_array(j) && json_array_size(j) >= 2 && json_array_size(j) <= 4;
    for (size_t i = 0; ok && i < json_array_size(j); i++) ok = json_is_integer(json_array_get(j, i));
    if (!ok) snprintf(why, cap, "not an array of 2..4 integers");
    json_decref(j);
    return ok;
}

static char *schema_gbnf(const char *schema) {
    char *out = NULL;
    sim_err err;
    sim_status st = jsch_to_gbnf(schema, strlen(schema), &out, &err);
    CHECK_MSG(st == SIM_OK, "%s\n  schema: %s", err.msg, schema);
    return out;
}

static void schema_suite(const char *label, const tok_vocab *v, int n_seeds) {
    gram_vocab *gv;
    sim_err err;
    if (gram_vocab_new(&gv, v, &err) != SIM_OK) {
        CHECK_MSG(0, "%s", err.msg);
        return;
    }
    static const struct {
        const char *name, **schema;
        text_check check;
    } sets[] = {{"sheet", &schema_sheet, check_sheet}, {"stage", &schema_stage, check_stage}, {"ints", &schema_ints, check_ints}};
    for (size_t i = 0; i < ARRAY_LEN(sets); i++) {
        char *gbnf = schema_gbnf(*sets[i].schema);
        if (!gbnf) continue;
        char l[64];
        snprintf(l, sizeof l, "%s schema %s", label, sets[i].name);
        run_generation(l, gbnf, v, gv, n_seeds, 400, sets[i].check, NULL, NULL);
        mem_free(gbnf);
    }
    gram_vocab_free(gv);
}

static void test_schema_generate_tiny(void) {
    tok_vocab *v = tiny_vocab();
    if (!v) return;
    schema_suite("tiny", v, 200);
    tok_free(v);
}

static void test_schema_generate_real(void) {
    tok_vocab *v = shared_vocab("llama-spm");
    if (v) schema_suite("llama-spm", v, 100);
    tok_free(v);
    v = shared_vocab("gpt-2");
    if (v) schema_suite("gpt-2", v, 100);
    tok_free(v);
}

// Strings checked against the grammar made from a schema (accept / reject).
static void test_schema_tables(void) {
    static const struct {
        const char *schema;
        accept_case cases[8];
    } t[] = {
        {"{\"type\":\"object\",\"properties\":{\"a\":{\"type\":\"integer\"},\"b\":{\"type\":\"string\"},\"c\":{\"type\":\"boolean\"}},\"required\":[\"b\"]}",
         {{"{\"b\":\"x\"}", 1}, {"{\"a\":1,\"b\":\"x\",\"c\":true}", 1}, {"{ \"a\": -12, \"b\": \"\" }", 1},
          {"{\"a\":1}", 0}, {"{\"b\":\"x\",\"a\":1}", 0}, {"{\"b\":\"x\",\"d\":1}", 0}, {"{}", 0}, {"{\"b\":\"x\",}", 0}}},
        {"{\"type\":\"object\",\"properties\":{\"a\":{\"type\":\"null\"},\"b\":{\"type\":\"number\"}}}",
         {{"{}", 1}, {"{\"a\":null}", 1}, {"{\"b\":1.5e3}", 1}, {"{\"a\":null,\"b\":0}", 1}, {"{,\"b\":0}", 0},
          {"{\"b\":01}", 0}, {"{\"a\":null\n  ,\n  \"b\":2}", 1}, {"{\"a\":null,        \"b\":2}", 0}}},
        {"{\"$defs\":{\"node\":{\"type\":\"object\",\"properties\":{\"v\":{\"type\":\"integer\"},\"kids\":{\"type\":\"array\",\"items\":{\"$ref\":\"#/$defs/node\"}}},\"required\":[\"v\"]}},\"$ref\":\"#/$defs/node\"}",
         {{"{\"v\":1}", 1}, {"{\"v\":1,\"kids\":[{\"v\":2},{\"v\":3,\"kids\":[{\"v\":4}]}]}", 1}, {"{\"v\":1,\"kids\":[{}]}", 0},
          {"{\"kids\":[]}", 0}}},
        {"{\"type\":\"object\",\"additionalProperties\":{\"type\":\"integer\"},\"properties\":{\"id\":{\"const\":\"x\"}}}",
         {{"{}", 1}, {"{\"id\":\"x\"}", 1}, {"{\"id\":\"x\",\"n\":2,\"m\":3}", 1}, {"{\"n\":2}", 1}, {"{\"n\":\"2\"}", 0},
          {"{\"id\":\"y\"}", 0}}},
        {"{\"type\":\"string\",\"minLength\":2,\"maxLength\":3}",
         {{"\"ab\"", 1}, {"\"\xCE\xB1\xCE\xB2\xCE\xB3\"", 1}, {"\"a\\nb\"", 1}, {"\"a\"", 0}, {"\"abcd\"", 0},
          {"\"\\ud800x\"", 0}, {"\"\\u00e9x\"", 1}}},
        {"{\"anyOf\":[{\"type\":\"integer\"},{\"type\":\"array\",\"items\":{\"enum\":[1,\"a\",[true]]},\"minItems\":1}]}",
         {{"5", 1}, {"[1]", 1}, {"[\"a\", [true], 1]", 1}, {"[]", 0}, {"[2]", 0}, {"1.5", 0}}},
        {"{}", {{"{\"a\":[1,{\"b\":null}]}", 1}, {"\"x\"", 1}, {"-1e5", 1}, {"tru", 0}}},
        {"true", {{"[false]", 1}, {"nul", 0}}},
    };
    for (size_t i = 0; i < ARRAY_LEN(t); i++) {
        char *gbnf = schema_gbnf(t[i].schema);
        if (!gbnf) continue;
        int before = test_g.cur_failures;
        check_table(gbnf, t[i].cases, ARRAY_LEN(t[i].cases));
        if (test_g.cur_failures != before) fprintf(stderr, "  for the grammar:\n%s\n", gbnf);
        mem_free(gbnf);
    }
}

static void test_schema_errors(void) {
    static const struct {
        const char *schema, *want;
        sim_status st;
    } cases[] = {
        {"{\"properties\":{\"age\":{\"type\":\"integr\"}}}", "/properties/age/type: unknown type \"integr\"", SIM_ERR_FORMAT},
        {"{\"type\":\"string\",\"pattern\":\"^a\"}", "/pattern: \"pattern\" is not supported", SIM_ERR_UNSUPPORTED},
        {"{\"type\":\"array\",\"items\":{\"type\":\"string\",\"maxLength\":-1}}", "/items/maxLength: must be a non-negative integer", SIM_ERR_FORMAT},
        {"{\"type\":\"object\",\"required\":[\"a\",3]}", "/required/1: must be a string", SIM_ERR_FORMAT},
        {"{\"$ref\":\"#/$defs/nope\"}", "/$ref: reference \"#/$defs/nope\" points to nothing in the schema", SIM_ERR_FORMAT},
        {"{\"$defs\":{\"a\":{\"$ref\":\"#/$defs/a\"}},\"$ref\":\"#/$defs/a\"}", "/$defs/a: $ref cycle that never reaches a value", SIM_ERR_FORMAT},
        {"{\"definitions\":{\"a\":{\"anyOf\":[{\"$ref\":\"#/definitions/b\"}]},\"b\":{\"oneOf\":[{\"type\":\"null\"},{\"$ref\":\"#/definitions/a\"}]}},\"$ref\":\"#/definitions/a\"}",
         "/definitions/a: $ref cycle that never reaches a value: #/definitions/a -> #/definitions/b -> #/definitions/a", SIM_ERR_FORMAT},
        {"{\"anyOf\":[]}", "/anyOf: must be a non-empty array of schemas", SIM_ERR_FORMAT},
        {"{\"type\":[\"string\",5]}", "/type/1: must be a type name", SIM_ERR_FORMAT},
        {"{\"type\":[\"string\",\"nul\"]}", "/type/1: unknown type \"nul\"", SIM_ERR_FORMAT},
        {"{\"type\":\"object\",\"properties\":{\"a~b/c\":{\"type\":\"nul\"}}}", "/properties/a~0b~1c/type: unknown type \"nul\"", SIM_ERR_FORMAT},
        {"{\"a\":", "line 1, column 5:", SIM_ERR_FORMAT},
        {"{\"a\":1,\"a\":2}", "line 1, column 10: duplicate object key", SIM_ERR_FORMAT},
        {"{\"minItems\":3,\"maxItems\":2}", "/maxItems: maxItems 2 is below minItems 3", SIM_ERR_FORMAT},
        {"{\"type\":\"array\",\"maxItems\":20000}", "/maxItems: 20000 is above the supported maximum 10000", SIM_ERR_UNSUPPORTED},
        {"{\"$ref\":\"http://example.com/s.json\"}", "/$ref: external reference", SIM_ERR_UNSUPPORTED},
        {"{\"properties\":{\"a\":false}}", "/properties/a: the schema false matches nothing", SIM_ERR_UNSUPPORTED},
        {"{\"items\":{\"allOf\":[{}]}}", "/items/allOf: \"allOf\" is not supported", SIM_ERR_UNSUPPORTED},
        {"{\"properties\":{\"a\":{\"enum\":[]}}}", "/properties/a/enum: must be a non-empty array", SIM_ERR_FORMAT},
        {"{\"properties\":5}", "/properties: must be an object", SIM_ERR_FORMAT},
        {"[1]", "(schema root): a schema must be an object or a boolean", SIM_ERR_FORMAT},
        {"{\"type\":\"array\",\"items\":[{}]}", "/items: an array of item schemas (tuple) is not supported", SIM_ERR_UNSUPPORTED},
    };
    for (size_t i = 0; i < ARRAY_LEN(cases); i++) {
        char *out = (char *)1;
        sim_err err = {0};
        sim_status st = jsch_to_gbnf(cases[i].schema, strlen(cases[i].schema), &out, &err);
        CHECK_MSG(st == cases[i].st && out == NULL, "case %zu: status %d", i, st);
        CHECK_MSG(strncmp(err.msg, cases[i].want, strlen(cases[i].want)) == 0, "case %zu:\n    got  %s\n    want %s", i,
                  err.msg, cases[i].want);
        if (st == SIM_OK) mem_free(out);
    }
}

// --- allocation failures ------------------------------------------------------------------

// Every allocation in parsing, matching, filtering and conversion failing in
// turn: a clean error (SIM_ERR_NOMEM), no leak (ASan), and the state keeps
// what it had accepted.
static void test_alloc_failures(void) {
    sim_err err;
    int parse_fail = 0, schema_fail = 0, match_fail = 0;
    for (long n = 0; n < 400; n++) {
        gram_grammar *g = NULL;
        mem_fail_after(n);
        sim_status st = gram_parse(&g, json_grammar, strlen(json_grammar), &err);
        bool hit = mem_fail_triggered();
        mem_fail_after(-1);
        CHECK(hit ? st == SIM_ERR_NOMEM && g == NULL : st == SIM_OK);
        parse_fail += hit;
        gram_free(g);
        if (!hit) break;
    }
    for (long n = 0; n < 3000; n++) {
        char *out = NULL;
        mem_fail_after(n);
        sim_status st = jsch_to_gbnf(schema_sheet, strlen(schema_sheet), &out, &err);
        bool hit = mem_fail_triggered();
        mem_fail_after(-1);
        CHECK_MSG(hit ? st == SIM_ERR_NOMEM && out == NULL : st == SIM_OK, "n=%ld st=%d %s", n, st, st ? err.msg : "");
        schema_fail += hit;
        mem_free(out);
        if (!hit) break;
    }
    gram_grammar *g = compile(json_grammar);
    tok_vocab *v = tiny_vocab();
    gram_vocab *gv = NULL;
    if (!g || !v || gram_vocab_new(&gv, v, &err) != SIM_OK) goto out;
    static const char text[] = "{\"k\": [1, \"\xCE\xB1\", {\"x\": null}], \"e\": -2.5e3}";
    int32_t nv = tok_n_vocab(v);
    smp_cand *c = malloc((size_t)nv * sizeof *c);
    for (long n = 0; n < 2000; n++) {
        gram_state *s = NULL, *cl = NULL;
        mem_fail_after(n);
        sim_status st = gram_state_new(&s, g, &err);
        size_t done = 0;
        while (st == SIM_OK && done < sizeof text - 1) {
            size_t k = MIN((size_t)3, sizeof text - 1 - done);
            st = gram_accept_bytes(s, text + done, k, &err);
            if (st == SIM_OK) done += k;
            if (st == SIM_OK && done == 12) {
                for (int32_t i = 0; i < nv; i++) c[i] = (smp_cand){i, 0, 0};
                st = gram_filter(s, gv, c, (size_t)nv, &err);
                if (st == SIM_OK) st = gram_state_clone(&cl, s, &err);
            }
        }
        bool hit = mem_fail_triggered();
        mem_fail_after(-1);
        CHECK_MSG(!hit || st == SIM_ERR_NOMEM || st == SIM_OK, "n=%ld: %d %s", n, st, err.msg);
        if (s) { // the state kept what it had: the rest of the text still completes it
            sim_status r = gram_accept_bytes(s, text + done, sizeof text - 1 - done, &err);
            CHECK_MSG(r == SIM_OK && gram_is_complete(s), "n=%ld: %s", n, r ? err.msg : "incomplete");
        }
        match_fail += hit;
        gram_state_free(cl);
        gram_state_free(s);
        if (!hit) break;
    }
    free(c);
out:
    CHECK(parse_fail > 10 && schema_fail > 10 && match_fail > 10);
    gram_vocab_free(gv);
    tok_free(v);
    gram_free(g);
}

// --- 5. speed ---------------------------------------------------------------------------

// Filtering the whole vocabulary in three places of a JSON document: after
// `{` (keys), inside a string (nearly every token allowed) and after a value.
// Cold is the first filter from a state (the DFA transitions are built), warm
// the same filter again (what a steady generation mostly pays).
static void speed_one(const char *label, const tok_vocab *v) {
    gram_grammar *g = compile(json_grammar);
    gram_vocab *gv = NULL;
    sim_err err;
    uint64_t t0 = time_ns();
    if (!g || gram_vocab_new(&gv, v, &err) != SIM_OK) goto out;
    double build_ms = (double)(time_ns() - t0) / 1e6;
    int32_t nv = tok_n_vocab(v);
    smp_cand *c = malloc((size_t)nv * sizeof *c);
    static const char *prefixes[] = {"{", "{\"name\": \"Ali", "{\"name\": \"Alice\", \"age\": 3"};
    fprintf(stderr, "  %s: %d tokens, trie of %d nodes built in %.1f ms\n", label, nv, gram_vocab_n_nodes(gv), build_ms);
    for (size_t p = 0; p < ARRAY_LEN(prefixes); p++) {
        gram_state *s;
        if (gram_state_new(&s, g, &err) != SIM_OK) continue;
        CHECK(gram_accept_bytes(s, prefixes[p], strlen(prefixes[p]), &err) == SIM_OK);
        double cold = 0, warm = 1e30;
        int allowed = 0;
        for (int r = 0; r < 20; r++) {
            for (int32_t i = 0; i < nv; i++) c[i] = (smp_cand){i, 0, 0};
            uint64_t a = time_ns();
            CHECK(gram_filter(s, gv, c, (size_t)nv, &err) == SIM_OK);
            double dt = (double)(time_ns() - a) / 1e6;
            if (r == 0) cold = dt;
            else if (dt < warm) warm = dt;
            if (r == 0)
                for (int32_t i = 0; i < nv; i++) allowed += isfinite(c[i].logit);
        }
        gram_stats stt = gram_state_stats(s);
        fprintf(stderr, "    after %-32s %6d allowed: cold %.3f ms, warm %.3f ms (%d DFA states)\n", prefixes[p], allowed,
                cold, warm, stt.n_states);
        gram_state_free(s);
    }
    free(c);
out:
    gram_vocab_free(gv);
    gram_free(g);
}

static void test_filter_speed(void) {
    tok_vocab *v = shared_vocab("llama-spm");
    if (v) speed_one("llama-spm (32K)", v);
    tok_free(v);
    v = shared_vocab("gpt-2");
    if (v) speed_one("gpt-2 (50K)", v);
    tok_free(v);
}

int main(int argc, char **argv) {
    test_init(argc, argv);
    TEST_RUN(test_parse_errors);
    TEST_RUN(test_parse_ok);
    TEST_RUN(test_accept_arithmetic);
    TEST_RUN(test_accept_json);
    TEST_RUN(test_accept_names);
    TEST_RUN(test_accept_utf8);
    TEST_RUN(test_state_lifecycle);
    TEST_RUN(test_limits);
    TEST_RUN(test_cache_flush);
    TEST_RUN(test_token_rules);
    TEST_RUN(test_schema_errors);
    TEST_RUN(test_schema_tables);
    TEST_RUN(test_alloc_failures);
    TEST_RUN(test_generate_tiny);
    TEST_RUN(test_schema_generate_tiny);
    TEST_RUN(test_generate_llama_spm);
    TEST_RUN(test_generate_gpt2);
    TEST_RUN(test_schema_generate_real);
    TEST_RUN(test_filter_speed);
    return test_finish();
}
