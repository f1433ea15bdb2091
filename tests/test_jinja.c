// test_jinja.c — the Jinja2 interpreter and the chat layer.
//
//   - semantics: a table of templates with hand-derived outputs (whitespace
//     control, trim_blocks/lstrip_blocks, expressions, statements, filters,
//     tests, methods, undefined values, tojson); when Python's jinja2 is
//     installed the same table is rendered by tests/jinja_ref.py too, so every
//     expected string is also confirmed by the independent implementation;
//   - errors: parse errors with line and column, runtime errors, raise_exception;
//   - golden: every template in ../shared/templates rendered for several
//     conversations must be byte-identical to Python's jinja2 (Debian's
//     python3-jinja2 when present) with HF's settings, errors included;
//   - chat: content parts, the ChatML fallback, the retry variants (checked
//     against the reference too), refusals;
//   - limits: hostile templates (endless loops, deep nesting, recursion, huge
//     output, memory) fail cleanly; every allocation failure is survived;
//     concurrent renders of one template.
#include <dirent.h>
#include <jansson.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "model/chat.h"
#include "model/jinja.h"
#include "test.h"

// --- helpers -------------------------------------------------------------------------

// The fixed time strftime_now() sees: Friday 26 July 2024, 13:45:30.
static struct tm fixed_now(void) {
    struct tm tm = {.tm_year = 2024 - 1900, .tm_mon = 6, .tm_mday = 26, .tm_hour = 13, .tm_min = 45, .tm_sec = 30};
    time_t t = timegm(&tm);
    gmtime_r(&t, &tm);
    return tm;
}

// Renders tmpl with the JSON context ctx ("" or NULL: none). Returns the
// status; *out is the output (free with mem_free) or NULL.
static sim_status render(const char *tmpl, const char *ctx, bool tb, bool lb, char **out, size_t *n, sim_err *err) {
    jinja_template *t;
    *out = NULL;
    sim_status st = jinja_parse(&t, tmpl, strlen(tmpl), err);
    if (st != SIM_OK) return st;
    json_t *c = NULL;
    if (ctx && *ctx) {
        json_error_t je;
        c = json_loads(ctx, 0, &je);
        if (!c) {
            fprintf(stderr, "  bad test context %s: %s\n", ctx, je.text);
            jinja_free(t);
            return SIM_ERR_ARG;
        }
    }
    struct tm now = fixed_now();
    jinja_opts o = {.trim_blocks = tb, .lstrip_blocks = lb, .now = &now};
    st = jinja_render(t, c, &o, out, n, err);
    json_decref(c);
    jinja_free(t);
    return st;
}

static void show_diff(const char *what, const char *got, size_t gn, const char *want, size_t wn) {
    size_t i = 0;
    while (i < gn && i < wn && got[i] == want[i]) i++;
    size_t from = i > 30 ? i - 30 : 0;
    fprintf(stderr, "  %s: first difference at byte %zu (got %zu bytes, want %zu)\n    got:  \"", what, i, gn, wn);
    for (size_t k = from; k < gn && k < i + 40; k++) fprintf(stderr, k == i ? "[%c" : "%c", got[k] == '\n' ? '~' : got[k]);
    fprintf(stderr, "\"\n    want: \"");
    for (size_t k = from; k < wn && k < i + 40; k++) fprintf(stderr, k == i ? "[%c" : "%c", want[k] == '\n' ? '~' : want[k]);
    fprintf(stderr, "\"  (~ is a newline, [ marks the difference)\n");
}

// --- the Python reference ---------------------------------------------------------------

static const char *python_cmd(void) {
    static int state = -1; // -1 unknown, 0 none, 1 /usr/bin/python3, 2 python3
    static const char *const cmds[] = {NULL, "/usr/bin/python3", "python3"};
    if (state < 0) {
        state = 0;
        for (int i = 1; i <= 2 && !state; i++) {
            char cmd[200];
            snprintf(cmd, sizeof cmd, "%s -c 'import jinja2' >/dev/null 2>&1", cmds[i]);
            if (system(cmd) == 0) state = i;
        }
        if (state && access("tests/jinja_ref.py", R_OK) != 0) state = 0;
    }
    return cmds[state];
}

static bool need_python(void) {
    if (python_cmd()) return true;
    test_skip("python3 with jinja2 (make deps) or tests/jinja_ref.py is missing: no reference to compare with");
    return false;
}

// Renders every case (objects as tests/jinja_ref.py takes them) with Python's
// jinja2; returns the results array (one per case) or NULL.
static json_t *reference(json_t *cases) {
    char path[] = "/tmp/sim_jinja_XXXXXX";
    int fd = mkstemp(path);
    if (fd < 0) return NULL;
    close(fd);
    json_t *root = json_pack("{s:O}", "cases", cases);
    int w = json_dump_file(root, path, 0);
    json_decref(root);
    json_t *res = NULL;
    if (w == 0) {
        char cmd[512];
        snprintf(cmd, sizeof cmd, "%s tests/jinja_ref.py %s", python_cmd(), path);
        FILE *f = popen(cmd, "r");
        if (f) {
            json_error_t je;
            res = json_loadf(f, 0, &je);
            if (!res) fprintf(stderr, "  the reference printed no JSON: %s\n", je.text);
            pclose(f);
        }
    }
    unlink(path);
    if (res && (!json_is_array(res) || json_array_size(res) != json_array_size(cases))) {
        json_decref(res);
        res = NULL;
    }
    CHECK_MSG(res != NULL, "tests/jinja_ref.py failed");
    return res;
}

static json_t *ref_case(const char *tmpl, const char *tmpl_file, json_t *ctx, bool tb, bool lb) {
    json_t *c = json_pack("{s:O,s:b,s:b,s:[i,i,i,i,i,i]}", "context", ctx, "trim_blocks", tb, "lstrip_blocks", lb,
                          "now", 2024, 7, 26, 13, 45, 30);
    json_object_set_new(c, tmpl ? "template" : "template_file", json_string(tmpl ? tmpl : tmpl_file));
    return c;
}

// --- semantics: templates with hand-derived outputs ---------------------------------------

typedef struct sem_case {
    const char *tmpl;
    const char *ctx; // JSON object or NULL
    int opts;        // 1 trim_blocks, 2 lstrip_blocks
    const char *want;
} sem_case;

static const sem_case sem_cases[] = {
    // text, comments, raw, newline normalization, the dropped final newline
    {"Hello {{ name }}!", "{\"name\": \"world\"}", 0, "Hello world!"},
    {"a{# comment #}b{#- x -#}  c", NULL, 0, "abc"},
    {"line1\r\nline2\rline3\n", NULL, 0, "line1\nline2\nline3"},
    {"x\n\n", NULL, 0, "x\n"},
    {"{% raw %}{{ not }} {% evaluated %}{% endraw %}", NULL, 0, "{{ not }} {% evaluated %}"},
    {"  {%- raw -%}  {{ x }}  {%- endraw -%}  z", NULL, 0, "{{ x }}z"},
    // whitespace control and the two options
    {"a  {{- 1 -}}  \n b", NULL, 0, "a1b"},
    {"<ul>\n  {% for i in [1, 2] %}\n  <li>{{ i }}</li>\n  {% endfor %}\n</ul>", NULL, 0,
     "<ul>\n  \n  <li>1</li>\n  \n  <li>2</li>\n  \n</ul>"},
    {"<ul>\n  {% for i in [1, 2] %}\n  <li>{{ i }}</li>\n  {% endfor %}\n</ul>", NULL, 1,
     "<ul>\n    <li>1</li>\n    <li>2</li>\n  </ul>"},
    {"<ul>\n  {% for i in [1, 2] %}\n  <li>{{ i }}</li>\n  {% endfor %}\n</ul>", NULL, 2,
     "<ul>\n\n  <li>1</li>\n\n  <li>2</li>\n\n</ul>"},
    {"<ul>\n  {% for i in [1, 2] %}\n  <li>{{ i }}</li>\n  {% endfor %}\n</ul>", NULL, 3,
     "<ul>\n  <li>1</li>\n  <li>2</li>\n</ul>"},
    {"  {% if true %}\n  x\n  {% endif %}\n  y\n", NULL, 3, "  x\n  y"},
    {"  {%+ if true %}\n  x\n  {% endif +%}\n  y\n", NULL, 3, "    x\n\n  y"},
    {"a\n  {{ 1 }}\n", NULL, 3, "a\n  1"},
    {"a  {#- c -#}  \n b  {# c #}\nc", NULL, 3, "ab  c"},
    {"a\n   {% raw %}x{% endraw %}", NULL, 3, "a\nx"},
    {"{% raw %}\n  {{ x }}{% endraw %}\n  {% if true %}y{% endif %}", NULL, 3, "\n  {{ x }}y"},
    {"{% if true %}\ttab\n{% endif %}", NULL, 1, "\ttab\n"},
    {"x {%- if true %} y {% endif -%} z", NULL, 0, "x y z"},
    // literals and printing (Python's str of values)
    {"{{ 1.0 }} {{ 1e20 }} {{ 1e16 }} {{ 1e15 }} {{ 0.0001 }} {{ 0.00001 }} {{ 0.1 + 0.2 }} {{ 1/3 }}", NULL, 0,
     "1.0 1e+20 1e+16 1000000000000000.0 0.0001 1e-05 0.30000000000000004 0.3333333333333333"},
    {"{{ [1, 'a', none, true, 1.5, {'k': 'v'}] }} {{ (1,) }} {{ () }} {{ (1, 2) }}", NULL, 0,
     "[1, 'a', None, True, 1.5, {'k': 'v'}] (1,) () (1, 2)"},
    {"{{ \"it's\" }} {{ ['it\\'s', 'a\"b', 'both\\'\"', '\\n\\x00\\\\'] }}", NULL, 0,
     "it's [\"it's\", 'a\"b', 'both\\'\"', '\\n\\x00\\\\']"},
    {"{{ 'a\\tb\\u00e9\\x41\\101' 'c' }} {{ 1_000 }} {{ 0x1F }} {{ 1e3 }} {{ 1.5e-3 }}", NULL, 0,
     "a\tbéAAc 1000 31 1000.0 0.0015"},
    {"{{ none }} {{ true }} {{ False }} {{ x }}|{{ x.y is defined }}", "{\"x\": {}}", 0, "None True False {}|False"},
    // operators and precedence
    {"{{ 2**3**2 }} {{ -2**2 }} {{ 7//2 }} {{ -7//2 }} {{ -7 % 3 }} {{ 7/2 }} {{ 4/2 }} {{ 1 ~ 2 * 3 }} {{ 2**-1 }}",
     NULL, 0, "64 4 3 -4 2 3.5 2.0 16 0.5"},
    {"{{ 7.5 // 2 }} {{ -7.5 % 2 }} {{ 1 + 2.5 }} {{ true + true }} {{ 'ab' * 2 }} {{ [0] * 2 }} {{ (1,) + (2,) }}",
     NULL, 0, "3.0 0.5 3.5 2 abab [0, 0] (1, 2)"},
    {"{{ 1 < 2 < 3 }} {{ 3 > 2 > 2 }} {{ true == 1 }} {{ 1 == 1.0 }} {{ [1, 2] == (1, 2) }} {{ 'a' < 'b' }}", NULL, 0,
     "True False True True False True"},
    {"{{ 'ab' in 'cabd' }} {{ 1 in [1, 2] }} {{ 'a' in {'a': 1} }} {{ 'a' not in 'b' }} {{ x in [1] }}", NULL, 0,
     "True True True True False"},
    {"{{ 1 and 'x' }} {{ 0 or 'y' }} {{ none or [] }} {{ not 0 }} {{ 'a' if false }}|{{ 'a' ~ 1.5 ~ none ~ true }}",
     NULL, 0, "x y [] True |a1.5NoneTrue"},
    {"{{ -x|abs }} {{ -(x|abs) }} {{ not x is defined }} {{ x is not defined }}", "{\"x\": -3}", 0, "3 -3 False False"},
    // what jinja2's compiler computes itself: constant slices through getitem, an unparenthesized negative base
    {"{{ 7[1:] }}|{{ (0[:2] is not true) and x }}|{{ -3 ** x }} {{ (-2) ** x }} {{ -2 ** 2 }} {{ 2 ** -x }}",
     "{\"x\": 2}", 0, "|2|-9 -4 4 0.25"},
    // subscripts, attributes, slices (code points)
    {"{{ 'abc'[::-1] }} {{ [1, 2, 3][1:] }} {{ 'héllo'[1] }} {{ 'héllo'|length }} {{ 'héllo'[1:-1] }} {{ [1, 2, 3][-1] }}",
     NULL, 0, "cba [2, 3] é 5 éll 3"},
    {"{{ m[0].role }} {{ m[0]['role'] }} {{ m.0.role }} {{ m[5] }}|{{ m[0].nope }}|", "{\"m\": [{\"role\": \"user\"}]}", 0,
     "user user user ||"},
    {"{{ d['items'] }} {{ d.get('items') }} {{ d.keys()|list }}", "{\"d\": {\"items\": 1}}", 0, "1 1 ['items']"},
    // statements
    {"{% for i in [1, 2] %}[{{ x }}]{% set x = i %}{% endfor %}{{ x }}", "{\"x\": \"o\"}", 0, "[o][o]o"},
    {"{% set x = 1 %}{% if true %}{% set x = 2 %}{% endif %}{{ x }}", NULL, 0, "2"},
    {"{% set ns = namespace(c=0) %}{% for i in range(5) %}{% set ns.c = ns.c + i %}{% endfor %}{{ ns.c }}", NULL, 0,
     "10"},
    {"{% for x in 'ab' %}{{ loop.index }}{{ loop.index0 }}{{ loop.revindex }}{{ loop.first }}{{ loop.last }}"
     "{{ loop.length }}{{ loop.previtem }}{{ loop.nextitem }}{{ loop.cycle('o', 'e') }};{% endfor %}",
     NULL, 0, "102TrueFalse2bo;211FalseTrue2ae;"},
    {"{% for x in [1, 2, 3, 4] if x is even %}{{ loop.index }}/{{ loop.length }}:{{ x }} {% else %}none{% endfor %}",
     NULL, 0, "1/2:2 2/2:4 "},
    {"{% for a in [] %}x{% else %}empty{% endfor %}", NULL, 0, "empty"},
    {"{% for k, v in {'a': 1, 'b': 2}.items() %}{{ k }}={{ v }};{% endfor %}", NULL, 0, "a=1;b=2;"},
    {"{% for i in range(10) %}{% if i is odd %}{% continue %}{% endif %}{% if i > 6 %}{% break %}{% endif %}{{ i }}"
     "{% endfor %}",
     NULL, 0, "0246"},
    {"{% set a, b = 1, 2 %}{{ a }}{{ b }}{% set t = 1, 2 %}{{ t }}", NULL, 0, "12(1, 2)"},
    {"{% set x | upper | trim %}  a {{ 1 }} {% endset %}[{{ x }}]", NULL, 0, "[A 1]"},
    {"{% filter upper %}abc{{ 'd' }}{% endfilter %}", NULL, 0, "ABCD"},
    {"{% with a = 1, b = 2 %}{{ a + b }}{% endwith %}{{ a }}|", NULL, 0, "3|"},
    {"{% macro f(a, b=2) %}{{ a }}-{{ b }}{% endmacro %}{{ f(1) }} {{ f(1, 3) }} {{ f(b=5, a=0) }} {{ f() }}|", NULL, 0,
     "1-2 1-3 0-5 -2|"},
    {"{% macro m(n) %}{% if n > 0 %}{{ n }}{{ m(n - 1) }}{% endif %}{% endmacro %}{{ m(5) }}", NULL, 0, "54321"},
    {"{% macro f(a) %}{{ caller(a) }}{% endmacro %}{% call(x) f(3) %}[{{ x }}]{% endcall %}", NULL, 0, "[3]"},
    {"{% macro m() %}{{ y }}{% endmacro %}{% set y = 5 %}{{ m() }}", NULL, 0, "5"},
    {"{% macro m() %}{{ y }}{% endmacro %}{% for y in [7] %}{{ m() }}{% endfor %}|", NULL, 0, "|"},
    {"{% if messages[0]['role'] == 'system' %}{% set messages = messages[1:] %}{% endif %}"
     "{% for m in messages %}{{ m.role }}{% endfor %}",
     "{\"messages\": [{\"role\": \"system\"}, {\"role\": \"user\"}]}", 0, "user"},
    {"{% generation %}gen{% endgeneration %}", NULL, 0, "gen"},
    // jinja2's static scoping: a name assigned later in a frame is undefined (not the context's) before that
    {"{% for i in [1] %}{{ a }}{% endfor %}{% set a = 1 %}{{ a }}|{{ b }}{% set b = 2 %}{% for i in [1] %}{{ b }}"
     "{% endfor %}",
     "{\"a\": \"A\", \"b\": \"B\"}", 0, "1|B2"},
    {"{% macro m() %}{{ a }}{% endmacro %}{{ m() }}{% set a = 1 %}{{ m() }}|{% set x %}{% for i in [1] %}{{ y }}"
     "{% endfor %}{% set y = 2 %}{% endset %}[{{ x }}]",
     "{\"a\": \"A\", \"y\": \"Y\"}", 0, "1|[]"},
    {"{% for i in [1, 2] %}{{ i }}{% break %}{% else %}E{% endfor %} {% for i in [1, 2] %}{% continue %}{% else %}E"
     "{% endfor %} {% for i in [1, 2] %}{{ i }}{% else %}E{% endfor %}",
     NULL, 0, "1E E 12"},
    {"{% macro m() %}{{ varargs }}{{ kwargs }}{% endmacro %}{{ m(1, 2, a=3) }}", NULL, 0, "(1, 2){'a': 3}"},
    // filters
    {"{{ '  x  '|trim }}|{{ 'xxaxx'|trim('x') }}|{{ 'hello world'|title }}|{{ 'héllo wörld. FOO-bar (baz)'|title }}|"
     "{{ 'HELLO'|capitalize }}|{{ 'ß'|upper }}",
     NULL, 0, "x|a|Hello World|Héllo Wörld. Foo-Bar (Baz)|Hello|SS"},
    {"{{ [3, 1, 2]|sort }} {{ ['b', 'A', 'c']|sort }} {{ ['b', 'A', 'c']|sort(case_sensitive=true) }} "
     "{{ [3, 1, 2]|sort(reverse=true) }}",
     NULL, 0, "[1, 2, 3] ['A', 'b', 'c'] ['A', 'b', 'c'] [3, 2, 1]"},
    {"{{ [{'n': 'b', 'a': 2}, {'n': 'a', 'a': 2}, {'n': 'c', 'a': 1}]|sort(attribute='a,n')|map(attribute='n')|join }}",
     NULL, 0, "cab"},
    {"{{ 'a\nb\n\nc'|indent }}|{{ 'a\nb\n\nc'|indent(2, true, true) }}|{{ 'a\n'|indent(2) }}|", NULL, 0,
     "a\n    b\n\n    c|  a\n  b\n  \n  c|a\n|"},
    {"{{ 3.7|int }} {{ '3.7'|int }} {{ 'x'|int }} {{ ' 42 '|int }} {{ '0x1A'|int(0, 16) }} {{ 2.5|round }} "
     "{{ 3.5|round }} {{ 2.675|round(2) }} {{ 3|round }} {{ 2.5|round(0, 'floor') }} {{ 1250|round(-2) }}",
     NULL, 0, "3 3 0 42 26 2.0 4.0 2.67 3 2.0 1200"},
    {"{{ [1, 2, 3]|sum }} {{ [1, 2, 3]|max }} {{ ['b', 'A']|min }} {{ [1, 2, 1, 3]|unique|list }} "
     "{{ [1, 2]|reverse|list }} {{ 'abc'|reverse }}",
     NULL, 0, "6 3 A [1, 2, 3] [2, 1] cba"},
    {"{{ l|map(attribute='a')|list }} {{ l|selectattr('a')|list }} {{ l|selectattr('a', 'equalto', 2)|list }} "
     "{{ l|rejectattr('a', 'defined')|list }}",
     "{\"l\": [{\"a\": 1}, {\"a\": 2}, {\"b\": 3}]}", 0, "[1, 2, Undefined] [{'a': 1}, {'a': 2}] [{'a': 2}] [{'b': 3}]"},
    {"{{ [1, 2, 3, 4]|select('odd')|list }} {{ [1, 2, 3, 4]|reject('divisibleby', 2)|list }} "
     "{{ ['a', 'b']|map('upper')|join(', ') }}",
     NULL, 0, "[1, 3] [1, 3] A, B"},
    {"{{ 'hello world foo'|wordcount }} {{ '<a>&\"\\''|e }} {{ -3|abs }} {{ 'x'|string }} {{ none|string }}", NULL, 0,
     "3 &lt;a&gt;&amp;&#34;&#39; 3 x None"},
    {"{{ [1, 2]|first }} {{ [1, 2]|last }} {{ 'ab'|first }} {{ []|first }}|{{ 'abc'|replace('b', 'X') }} "
     "{{ 'aaa'|replace('a', 'b', 2) }}",
     NULL, 0, "1 2 a |aXc bba"},
    {"{{ x|default('d') }} {{ x|default('d', true) }} {{ ''|default('d') }}|{{ ''|d('d', true) }} {{ none|d('e') }}",
     NULL, 0, "d d |d None"},
    {"{{ 'abc'|list }} {{ {'a': 1}|list }} {{ {'b': 1, 'a': 2}|items|list }} {{ {'b': 1, 'a': 2}|dictsort }}", NULL,
     0, "['a', 'b', 'c'] ['a'] [('b', 1), ('a', 2)] [('a', 2), ('b', 1)]"},
    {"{{ [1, 2, 3, 4, 5]|batch(2)|list }} {{ 'hi'|center(6) }}| {{ '%s-%05d|%.2f'|format('a', 42, 3.14159) }}", NULL, 0,
     "[[1, 2], [3, 4], [5]]   hi  | a-00042|3.14"},
    {"{{ messages|selectattr('role', 'equalto', 'user')|map(attribute='content')|join(' / ') }}",
     "{\"messages\": [{\"role\": \"user\", \"content\": \"a\"}, {\"role\": \"bot\", \"content\": \"b\"}, "
     "{\"role\": \"user\", \"content\": \"c\"}]}",
     0, "a / c"},
    {"{{ [1, 2]|select|list|length }} {{ [1, 2]|select is sequence }} {{ []|select and 1 }}", NULL, 0, "2 False 1"},
    // HF's tojson
    {"{{ x|tojson }}", "{\"x\": {\"a\": [1, 2.5, null, true, \"é\\n\\\"\\\\\\u0001<>&'\"], \"b\": {}, \"c\": []}}", 0,
     "{\"a\": [1, 2.5, null, true, \"é\\n\\\"\\\\\\u0001<>&'\"], \"b\": {}, \"c\": []}"},
    {"{{ x|tojson(indent=2) }}", "{\"x\": {\"a\": [1, {\"b\": []}], \"c\": \"d\"}}", 0,
     "{\n  \"a\": [\n    1,\n    {\n      \"b\": []\n    }\n  ],\n  \"c\": \"d\"\n}"},
    {"{{ x|tojson(sort_keys=true) }} {{ x|tojson(separators=(',', ':')) }} {{ 'é😀'|tojson(ensure_ascii=true) }}",
     "{\"x\": {\"b\": 1, \"a\": [1]}}", 0, "{\"a\": [1], \"b\": 1} {\"b\":1,\"a\":[1]} \"\\u00e9\\ud83d\\ude00\""},
    // tests
    {"{{ 5 is divisibleby 3 }} {{ 6 is divisibleby(3) }} {{ 'a' is eq 'a' }} {{ 'a' is in 'abc' }} {{ none is none }} "
     "{{ {} is mapping }} {{ [] is sequence }} {{ 'a' is sequence }} {{ 1.0 is float }} {{ true is boolean }} "
     "{{ true is number }} {{ true is integer }} {{ 0 is false }}",
     NULL, 0, "False True True True True True True True True True True False False"},
    {"{{ x is iterable }} {{ none is iterable }} {{ 1 is iterable }} {{ {} is iterable }} {{ 'a' is mapping }} "
     "{{ x is string }} {{ x is sequence }}",
     NULL, 0, "True False False True False False True"},
    // methods
    {"{{ '  a b  '.split() }} {{ 'a,b,,c'.split(',') }} {{ 'a,b,c'.split(',', 1) }} {{ 'a,b,c'.rsplit(',', 1) }} "
     "{{ 'xxaxx'.strip('x') }}",
     NULL, 0, "['a', 'b'] ['a', 'b', '', 'c'] ['a', 'b,c'] ['a,b', 'c'] a"},
    {"{{ 'abc'.startswith(('x', 'a')) }} {{ 'abc'.endswith('bc') }} {{ 'a-b'.replace('-', '+') }} "
     "{{ {'a': 1}.get('a') }} {{ {'a': 1}.get('b') }} {{ {'a': 1}.get('b', 2) }} {{ \"they're\".title() }}",
     NULL, 0, "True True a+b 1 None 2 They'Re"},
    {"{{ '<think>\nabc\n</think>\n\nanswer'.split('</think>')[-1].lstrip('\n') }} {{ 'héllo'.find('l') }} "
     "{{ '-5'.zfill(4) }} {{ 'Ab'.swapcase() }}",
     NULL, 0, "answer 2 -005 aB"},
    // globals
    {"{{ range(3)|list }} {{ range(1, 10, 3)|list }} {{ range(5, 0, -2)|list }} {{ range(3) }} {{ dict(a=1) }}", NULL,
     0, "[0, 1, 2] [1, 4, 7] [5, 3, 1] range(0, 3) {'a': 1}"},
    {"{{ strftime_now('%d %b %Y') }} {{ strftime_now('%Y-%m-%d %H:%M:%S %A') }}", NULL, 0,
     "26 Jul 2024 2024-07-26 13:45:30 Friday"},
    {"{% set ns = namespace({'a': 1}, b=2) %}{{ ns.a }}{{ ns.b }}{{ ns['a'] }} {{ ns }}", NULL, 0,
     "121 <Namespace {'a': 1, 'b': 2}>"},
    // undefined values
    {"[{{ u }}] {{ u is defined }} {{ u|length }} {% for i in u %}x{% endfor %}{{ u == v }} {{ not u }} {{ u ~ 'a' }}",
     NULL, 0, "[] False 0 True True a"},
    {"{{ x.y }}|{{ none.y }}|{{ [1][5] }}|{{ [1, 2].append }}|", "{\"x\": null}", 0, "||||"},
};

static void test_semantics(void) {
    for (size_t i = 0; i < ARRAY_LEN(sem_cases); i++) {
        const sem_case *c = &sem_cases[i];
        char *out;
        size_t n;
        sim_err err = {0};
        sim_status st = render(c->tmpl, c->ctx, c->opts & 1, c->opts & 2, &out, &n, &err);
        CHECK_MSG(st == SIM_OK, "case %zu: %s\n    template: %s", i, err.msg, c->tmpl);
        if (st != SIM_OK) continue;
        if (n != strlen(c->want) || memcmp(out, c->want, n) != 0) {
            fprintf(stderr, "  case %zu: %s\n", i, c->tmpl);
            show_diff("output", out, n, c->want, strlen(c->want));
            test_g.cur_failures++;
        }
        mem_free(out);
    }
}

// The expected strings above, confirmed by Python's jinja2.
static void test_semantics_reference(void) {
    if (!need_python()) return;
    json_t *cases = json_array();
    for (size_t i = 0; i < ARRAY_LEN(sem_cases); i++) {
        json_t *ctx = sem_cases[i].ctx ? json_loads(sem_cases[i].ctx, 0, NULL) : json_object();
        json_array_append_new(cases, ref_case(sem_cases[i].tmpl, NULL, ctx, sem_cases[i].opts & 1, sem_cases[i].opts & 2));
        json_decref(ctx);
    }
    json_t *res = reference(cases);
    for (size_t i = 0; res && i < ARRAY_LEN(sem_cases); i++) {
        json_t *r = json_array_get(res, i);
        const char *out = json_string_value(json_object_get(r, "output"));
        if (!json_is_true(json_object_get(r, "ok"))) {
            CHECK_MSG(0, "case %zu: the reference fails: %s", i, json_string_value(json_object_get(r, "error")));
        } else if (strlen(sem_cases[i].want) != json_string_length(json_object_get(r, "output")) ||
                   memcmp(out, sem_cases[i].want, strlen(sem_cases[i].want)) != 0) {
            fprintf(stderr, "  case %zu: the hand-derived output disagrees with jinja2: %s\n", i, sem_cases[i].tmpl);
            show_diff("expected vs reference", sem_cases[i].want, strlen(sem_cases[i].want), out,
                      json_string_length(json_object_get(r, "output")));
            test_g.cur_failures++;
        }
    }
    json_decref(res);
    json_decref(cases);
}

// --- errors ----------------------------------------------------------------------------

typedef struct err_case {
    const char *tmpl;
    const char *ctx;
    sim_status code;
    const char *msg; // the exact message
} err_case;

static const err_case err_cases[] = {
    // parse errors: line and column (characters, from 1)
    {"{% if x %}", NULL, SIM_ERR_FORMAT,
     "line 1, column 11: unexpected end of template: expected 'elif' or 'else' or 'endif' (the innermost open block "
     "is 'if' on line 1)"},
    {"ab\ncd {{ 1 + }}", NULL, SIM_ERR_FORMAT, "line 2, column 11: unexpected 'end of print statement'"},
    {"x\n\n  é {% endif %}", NULL, SIM_ERR_FORMAT, "line 3, column 8: Encountered unknown tag 'endif'"},
    {"{{ 'abc }}", NULL, SIM_ERR_FORMAT, "line 1, column 4: unterminated string"},
    {"{{ (1 }}", NULL, SIM_ERR_FORMAT, "line 1, column 7: unexpected '}', expected ')'"},
    {"{# never closed", NULL, SIM_ERR_FORMAT, "line 1, column 1: missing end of comment tag"},
    {"{% break %}", NULL, SIM_ERR_FORMAT, "line 1, column 4: 'break' outside loop"},
    {"{% include 'x' %}", NULL, SIM_ERR_FORMAT, "line 1, column 4: the 'include' tag is not supported"},
    {"{{ 012 }}", NULL, SIM_ERR_FORMAT, "line 1, column 5: expected end of print statement, got 'integer'"},
    {"{{ x ? y }}", NULL, SIM_ERR_FORMAT, "line 1, column 6: unexpected char '?'"},
    {"{% macro f(a=1, b) %}{% endmacro %}", NULL, SIM_ERR_FORMAT,
     "line 1, column 17: non-default argument follows default argument"},
    // render errors: "line L: " and jinja2's message
    {"a\n{{ x.y }}", NULL, SIM_ERR_FORMAT, "line 2: 'x' is undefined"},
    {"{{ {'a': 1}.b.c }}", NULL, SIM_ERR_FORMAT, "line 1: 'dict object' has no attribute 'b'"},
    {"{{ 'a' + 1 }}", NULL, SIM_ERR_FORMAT, "line 1: can only concatenate str (not \"int\") to str"},
    {"{{ 1 + 'a' }}", NULL, SIM_ERR_FORMAT, "line 1: unsupported operand type(s) for +: 'int' and 'str'"},
    {"{{ 'a' < 1 }}", NULL, SIM_ERR_FORMAT, "line 1: '<' not supported between instances of 'str' and 'int'"},
    {"{% for a in none %}{% endfor %}", NULL, SIM_ERR_FORMAT, "line 1: 'NoneType' object is not iterable"},
    {"{{ 10 // 0 }}", NULL, SIM_ERR_FORMAT, "line 1: integer division or modulo by zero"},
    {"{{ n[1:] }}", "{\"n\": 5}", SIM_ERR_FORMAT, "line 1: 'int' object is not subscriptable"},
    {"{{ x|nosuch }}", NULL, SIM_ERR_FORMAT, "line 1: No filter named 'nosuch'."},
    {"{{ [1, 2].append(3) }}", NULL, SIM_ERR_FORMAT, "line 1: access to attribute 'append' of 'list' object is unsafe."},
    {"{% macro f(a) %}{% endmacro %}{{ f(1, 2) }}", NULL, SIM_ERR_FORMAT, "line 1: macro 'f' takes not more than 1 argument(s)"},
    {"{% macro m() %}x{% endmacro %}{% call m() %}y{% endcall %}", NULL, SIM_ERR_FORMAT,
     "line 1: macro 'm' was invoked with two values for the special caller argument. This is most likely a bug."},
    {"{% set a, b = [1] %}", NULL, SIM_ERR_FORMAT, "line 1: not enough values to unpack (expected 2, got 1)"},
    {"{{ x|tojson }}", NULL, SIM_ERR_FORMAT, "line 1: 'x' is undefined"},
    {"{{ range(100001)|length }}", NULL, SIM_ERR_RANGE,
     "line 1: Range too big. The sandbox blocks ranges larger than MAX_RANGE (100000)."},
    // raise_exception: the template's message as it is
    {"{% if messages[0].role == 'system' %}{{ raise_exception('System role not supported') }}{% endif %}",
     "{\"messages\": [{\"role\": \"system\"}]}", SIM_ERR_ARG, "System role not supported"},
    {"{% for m in ['a'] %}{% if true %}{{ raise_exception('Bad role: ' ~ m ~ '!') }}{% endif %}{% endfor %}after",
     NULL, SIM_ERR_ARG, "Bad role: a!"},
};

static void test_errors(void) {
    for (size_t i = 0; i < ARRAY_LEN(err_cases); i++) {
        const err_case *c = &err_cases[i];
        char *out;
        size_t n;
        sim_err err = {0};
        sim_status st = render(c->tmpl, c->ctx, true, true, &out, &n, &err);
        CHECK_MSG(st == c->code, "case %zu: status %d, want %d (%s)", i, st, c->code, err.msg);
        CHECK_MSG(out == NULL, "case %zu: output on error", i);
        CHECK_MSG(st != SIM_OK && !strcmp(err.msg, c->msg), "case %zu:\n    got:  %s\n    want: %s", i, err.msg, c->msg);
        mem_free(out);
    }
}

// Every template above that fails must fail in jinja2 too (parse or render).
static void test_errors_reference(void) {
    if (!need_python()) return;
    json_t *cases = json_array();
    for (size_t i = 0; i < ARRAY_LEN(err_cases); i++) {
        json_t *ctx = err_cases[i].ctx ? json_loads(err_cases[i].ctx, 0, NULL) : json_object();
        json_array_append_new(cases, ref_case(err_cases[i].tmpl, NULL, ctx, true, true));
        json_decref(ctx);
    }
    json_t *res = reference(cases);
    for (size_t i = 0; res && i < ARRAY_LEN(err_cases); i++) {
        json_t *r = json_array_get(res, i);
        CHECK_MSG(!json_is_true(json_object_get(r, "ok")), "case %zu renders in jinja2: %s", i, err_cases[i].tmpl);
        if (err_cases[i].code == SIM_ERR_ARG) // raise_exception: the same message
            CHECK_STR(json_string_value(json_object_get(r, "error")), err_cases[i].msg);
    }
    json_decref(res);
    json_decref(cases);
}

// --- golden: the shared chat templates against Python's jinja2 ----------------------------

static const char *const TOOLS =
    "[{\"type\": \"function\", \"function\": {\"name\": \"get_weather\", \"description\": \"Get the current weather "
    "in a city.\", \"parameters\": {\"type\": \"object\", \"properties\": {\"location\": {\"type\": \"string\", "
    "\"description\": \"The city, e.g. Paris\"}, \"unit\": {\"type\": \"string\", \"enum\": [\"celsius\", "
    "\"fahrenheit\"], \"description\": \"Temperature unit\"}}, \"required\": [\"location\"]}}}, {\"type\": "
    "\"function\", \"function\": {\"name\": \"search\", \"description\": \"Search the web.\", \"parameters\": "
    "{\"type\": \"object\", \"properties\": {\"query\": {\"type\": \"string\", \"description\": \"What to look "
    "for\"}, \"max_results\": {\"type\": \"integer\", \"description\": \"How many\"}}, \"required\": [\"query\"]}}}]";

#define SYS "{\"role\": \"system\", \"content\": \"You are a helpful assistant.\"}, "
#define CHAT                                                                                                    \
    "{\"role\": \"user\", \"content\": \"Hello! How are you?\"}, {\"role\": \"assistant\", \"content\": \"I'm " \
    "fine, thanks. How can I help?\"}, {\"role\": \"user\", \"content\": \"Tell me a joke.\"}"
#define TOOL_CALL(args)                                                                                        \
    "{\"role\": \"system\", \"content\": \"You can call tools.\"}, {\"role\": \"user\", \"content\": \"What's "  \
    "the weather in Paris?\"}, {\"role\": \"assistant\", \"content\": null, \"tool_calls\": [{\"id\": "          \
    "\"call12345\", \"type\": \"function\", \"function\": {\"name\": \"get_weather\", \"arguments\": " args      \
    "}}]}, {\"role\": \"tool\", \"tool_call_id\": \"call12345\", \"name\": \"get_weather\", \"content\": "        \
    "\"{\\\"temperature\\\": 22, \\\"sky\\\": \\\"clear\\\"}\"}"
#define TOOL_END                                                                                                \
    ", {\"role\": \"assistant\", \"content\": \"It is 22 °C and clear in Paris.\"}, {\"role\": \"user\", "       \
    "\"content\": \"Thanks! And in Tokyo?\"}"
#define ARGS_OBJ "{\"location\": \"Paris\", \"unit\": \"celsius\"}"
#define ARGS_STR "\"{\\\"location\\\": \\\"Paris\\\", \\\"unit\\\": \\\"celsius\\\"}\""

typedef struct conv {
    const char *name;
    const char *messages;
    bool tools, gen;
    const char *vars; // more variables, or NULL
} conv;

static const conv convs[] = {
    {"system+chat", "[" SYS CHAT "]", false, true, NULL},
    {"system+chat, no generation prompt", "[" SYS CHAT "]", false, false, NULL},
    {"no system", "[" CHAT "]", false, true, NULL},
    {"no system, no generation prompt", "[" CHAT "]", false, false, NULL},
    {"unicode",
     "[{\"role\": \"system\", \"content\": \"Réponds en français. 日本語も OK 😀 — \\\"quotes\\\" and \\\\backslash\\\\\"}, "
     "{\"role\": \"user\", \"content\": \"  Ünïcödé   {{ not a tag }} {% neither %}\\n\\tline two\\r\\nline three  \"}, "
     "{\"role\": \"assistant\", \"content\": \"Ça va ! ✓ 𝔘𝔫𝔦𝔠𝔬𝔡𝔢\"}, {\"role\": \"user\", \"content\": \"Merci — ещё раз?\"}]",
     false, true, NULL},
    {"thinking",
     "[{\"role\": \"user\", \"content\": \"What is 2+2?\"}, {\"role\": \"assistant\", \"content\": \"<think>\\nSimple "
     "arithmetic.\\n</think>\\n\\n2+2 = 4.\"}, {\"role\": \"user\", \"content\": \"And 3+3?\"}]",
     false, true, NULL},
    {"tools", "[" TOOL_CALL(ARGS_OBJ) TOOL_END "]", true, true, NULL},
    {"tools, string arguments", "[" TOOL_CALL(ARGS_STR) TOOL_END "]", true, true, NULL},
    {"tools, ending with the tool result", "[" TOOL_CALL(ARGS_OBJ) "]", true, false, NULL},
    {"extra variables", "[" SYS CHAT "]", false, true, "{\"enable_thinking\": false, \"date_string\": \"1 Jan 2025\"}"},
};

// The context HF's apply_chat_template builds (chat.c builds the same).
static json_t *conv_ctx(const conv *c) {
    json_t *ctx = c->vars ? json_loads(c->vars, 0, NULL) : json_object();
    json_object_set_new(ctx, "messages", json_loads(c->messages, 0, NULL));
    json_object_set_new(ctx, "tools", c->tools ? json_loads(TOOLS, 0, NULL) : json_null());
    json_object_set_new(ctx, "documents", json_null());
    json_object_set_new(ctx, "add_generation_prompt", json_boolean(c->gen));
    json_object_set_new(ctx, "bos_token", json_string("<s>"));
    json_object_set_new(ctx, "eos_token", json_string("</s>"));
    CHECK(json_is_array(json_object_get(ctx, "messages")));
    return ctx;
}

static char *read_text(const char *path, size_t *n) {
    FILE *f = fopen(path, "rb");
    if (!f) return NULL;
    fseek(f, 0, SEEK_END);
    long len = ftell(f);
    rewind(f);
    char *s = len >= 0 ? malloc((size_t)len + 1) : NULL;
    if (s && fread(s, 1, (size_t)len, f) != (size_t)len) {
        free(s);
        s = NULL;
    }
    fclose(f);
    if (s) s[len] = 0, *n = (size_t)len;
    return s;
}

static int cmp_names(const void *a, const void *b) { return strcmp(*(char *const *)a, *(char *const *)b); }

// The shared templates' paths (sorted); NULL (and the test skipped) without them.
static char **shared_templates(size_t *count) {
    char dir[1100];
    *count = 0;
    if (!test_shared_path(dir, sizeof dir, "templates")) return NULL;
    DIR *d = opendir(dir);
    if (!d) return NULL;
    char **names = NULL;
    struct dirent *e;
    while ((e = readdir(d))) {
        size_t n = strlen(e->d_name);
        if (n < 7 || strcmp(e->d_name + n - 6, ".jinja") != 0) continue;
        names = realloc(names, (*count + 1) * sizeof *names);
        names[*count] = malloc(strlen(dir) + n + 2);
        sprintf(names[*count], "%s/%s", dir, e->d_name);
        (*count)++;
    }
    closedir(d);
    if (*count) qsort(names, *count, sizeof *names, cmp_names);
    else test_skip("no templates in ../shared/templates");
    return names;
}

// Compares one render with the reference's result: the same bytes, or both
// failing (raise_exception with the same message).
static bool same_as_reference(const char *what, sim_status st, const char *out, size_t n, const sim_err *err,
                              json_t *ref) {
    bool ok = json_is_true(json_object_get(ref, "ok"));
    const char *rtype = json_string_value(json_object_get(ref, "type"));
    const char *rerr = json_string_value(json_object_get(ref, "error"));
    if (!ok) {
        if (st == SIM_OK) {
            fprintf(stderr, "  %s: renders, but jinja2 fails: %s: %s\n", what, rtype, rerr);
            return false;
        }
        if (rtype && !strcmp(rtype, "TemplateError") && (st != SIM_ERR_ARG || strcmp(err->msg, rerr) != 0)) {
            fprintf(stderr, "  %s: jinja2 raises \"%s\", we fail with %d \"%s\"\n", what, rerr, st, err->msg);
            return false;
        }
        return true;
    }
    if (st != SIM_OK) {
        fprintf(stderr, "  %s: fails (%s), jinja2 renders\n", what, err->msg);
        return false;
    }
    const char *want = json_string_value(json_object_get(ref, "output"));
    size_t wn = json_string_length(json_object_get(ref, "output"));
    if (n != wn || memcmp(out, want, n) != 0) {
        show_diff(what, out, n, want, wn);
        return false;
    }
    return true;
}

static void test_golden_templates(void) {
    size_t nt;
    char **paths = shared_templates(&nt);
    if (!paths || !need_python()) goto done;
    json_t *cases = json_array();
    for (size_t t = 0; t < nt; t++)
        for (size_t c = 0; c < ARRAY_LEN(convs); c++) {
            json_t *ctx = conv_ctx(&convs[c]);
            json_array_append_new(cases, ref_case(NULL, paths[t], ctx, true, true));
            json_decref(ctx);
        }
    json_t *res = reference(cases);
    int compared = 0, rendered = 0;
    struct tm now = fixed_now();
    for (size_t t = 0; res && t < nt; t++) {
        size_t len;
        char *src = read_text(paths[t], &len);
        jinja_template *tpl = NULL;
        sim_err err = {0};
        CHECK_MSG(src && jinja_parse(&tpl, src, len, &err) == SIM_OK, "%s: %s", paths[t], err.msg);
        for (size_t c = 0; tpl && c < ARRAY_LEN(convs); c++) {
            json_t *ctx = conv_ctx(&convs[c]);
            jinja_opts o = {.trim_blocks = true, .lstrip_blocks = true, .now = &now};
            char *out = NULL, what[1300];
            size_t n = 0;
            sim_status st = jinja_render(tpl, ctx, &o, &out, &n, &err);
            snprintf(what, sizeof what, "%s, %s", strrchr(paths[t], '/') + 1, convs[c].name);
            if (!same_as_reference(what, st, out, n, &err, json_array_get(res, t * ARRAY_LEN(convs) + c)))
                test_g.cur_failures++;
            compared++;
            rendered += st == SIM_OK;
            mem_free(out);
            json_decref(ctx);
        }
        jinja_free(tpl);
        free(src);
    }
    printf("golden: %d renders of %zu templates compared with jinja2 (%d render, the rest fail in both)\n", compared,
           nt, rendered);
    json_decref(res);
    json_decref(cases);
done:
    for (size_t t = 0; t < nt; t++) free(paths[t]);
    free(paths);
}

// --- chat ---------------------------------------------------------------------------------

static sim_status chat(const char *tmpl, const char *messages, const char *tools, bool gen, char **out, sim_err *err) {
    chat_template *ct;
    sim_status st = chat_template_new(&ct, tmpl, "<s>", "</s>", err);
    if (st != SIM_OK) return st;
    json_t *m = json_loads(messages, 0, NULL), *t = tools ? json_loads(tools, 0, NULL) : NULL;
    struct tm now = fixed_now();
    chat_params p = {.messages = m, .tools = t, .add_generation_prompt = gen, .now = &now};
    st = chat_render(ct, &p, out, NULL, err);
    json_decref(m);
    json_decref(t);
    chat_template_free(ct);
    return st;
}

static void test_chat_basics(void) {
    char *out;
    sim_err err = {0};
    // the ChatML fallback
    CHECK(chat(NULL, "[{\"role\": \"user\", \"content\": \"Hi\"}]", NULL, true, &out, &err) == SIM_OK);
    CHECK_STR(out, "<|im_start|>user\nHi<|im_end|>\n<|im_start|>assistant\n");
    mem_free(out);
    chat_template *ct;
    CHECK(chat_template_new(&ct, "", NULL, NULL, &err) == SIM_OK && chat_template_is_fallback(ct));
    chat_template_free(ct);
    // content parts are joined with \n; bos/eos are visible
    CHECK(chat("{{ bos_token }}{% for m in messages %}[{{ m.content }}]{% endfor %}{{ eos_token }}{{ tools }}",
               "[{\"role\": \"user\", \"content\": [{\"type\": \"text\", \"text\": \"a\"}, {\"type\": \"text\", "
               "\"text\": \"b\"}]}, {\"role\": \"assistant\", \"content\": \"c\"}]",
               NULL, false, &out, &err) == SIM_OK);
    CHECK_STR(out, "<s>[a\nb][c]</s>None");
    mem_free(out);
    // refusals
    CHECK(chat(NULL, "[{\"role\": \"user\", \"content\": [{\"type\": \"image_url\", \"image_url\": {}}]}]", NULL, true,
               &out, &err) == SIM_ERR_UNSUPPORTED);
    CHECK_STR(err.msg, "messages[0].content[0]: content of type 'image_url' is not supported (text only)");
    CHECK(chat(NULL, "[{\"content\": \"no role\"}]", NULL, true, &out, &err) == SIM_ERR_ARG);
    CHECK_STR(err.msg, "messages[0]: \"role\" must be a string");
    CHECK(chat(NULL, "{\"role\": \"user\"}", NULL, true, &out, &err) == SIM_ERR_ARG);
    CHECK(chat("{{ x", "[]", NULL, true, &out, &err) == SIM_ERR_FORMAT);
    CHECK(out == NULL);
    CHECK(chat("{{ raise_exception('no: ' ~ messages|length) }}", "[]", NULL, true, &out, &err) == SIM_ERR_ARG);
    CHECK_STR(err.msg, "no: 0");
}

// Tool-call arguments and null content: chat_render's variants, each checked
// against jinja2 rendering that variant's messages.
static void test_chat_variants(void) {
    size_t nt;
    char **paths = shared_templates(&nt);
    if (!paths || !need_python()) goto done;
    // variant v of a conversation: (parse string arguments, null content as "")
    static const bool variants[4][2] = {{true, false}, {false, false}, {true, true}, {false, true}};
    const conv *cv[] = {&convs[7], &convs[6], &convs[0]}; // string arguments, object arguments, plain
    json_t *cases = json_array();
    for (size_t t = 0; t < nt; t++)
        for (size_t c = 0; c < ARRAY_LEN(cv); c++)
            for (int v = 0; v < 4; v++) {
                json_t *ctx = conv_ctx(cv[c]);
                json_t *msgs = json_object_get(ctx, "messages"), *m;
                size_t i;
                json_array_foreach(msgs, i, m) {
                    if (variants[v][1] && json_is_null(json_object_get(m, "content")))
                        json_object_set_new(m, "content", json_string(""));
                    json_t *fn = json_object_get(json_array_get(json_object_get(m, "tool_calls"), 0), "function");
                    const char *args = json_string_value(json_object_get(fn, "arguments"));
                    if (variants[v][0] && args) json_object_set_new(fn, "arguments", json_loads(args, 0, NULL));
                }
                json_array_append_new(cases, ref_case(NULL, paths[t], ctx, true, true));
                json_decref(ctx);
            }
    json_t *res = reference(cases);
    for (size_t t = 0; res && t < nt; t++) {
        size_t len;
        char *src = read_text(paths[t], &len);
        for (size_t c = 0; src && c < ARRAY_LEN(cv); c++) {
            // what chat_render must give: the first variant jinja2 renders, stopping at raise_exception
            json_t *want = NULL;
            for (int v = 0; v < 4; v++) {
                json_t *r = json_array_get(res, (t * ARRAY_LEN(cv) + c) * 4 + v);
                if (!want) want = r; // the first variant's failure, if all fail
                if (json_is_true(json_object_get(r, "ok"))) {
                    want = r;
                    break;
                }
                if (!strcmp(json_string_value(json_object_get(r, "type")), "TemplateError")) break;
            }
            char *out = NULL;
            sim_err err = {0};
            sim_status st = chat(src, cv[c]->messages, cv[c]->tools ? TOOLS : NULL, cv[c]->gen, &out, &err);
            char what[1300];
            snprintf(what, sizeof what, "chat_render %s, %s", strrchr(paths[t], '/') + 1, cv[c]->name);
            if (!same_as_reference(what, st, out, out ? strlen(out) : 0, &err, want)) test_g.cur_failures++;
            mem_free(out);
        }
        free(src);
    }
    json_decref(res);
    json_decref(cases);
done:
    for (size_t t = 0; t < nt; t++) free(paths[t]);
    free(paths);
}

// --- limits and robustness ------------------------------------------------------------------

static void expect_fail(const char *tmpl, const char *ctx, sim_status want, const char *msg_part) {
    char *out;
    size_t n;
    sim_err err = {0};
    uint64_t t0 = time_ns();
    sim_status st = render(tmpl, ctx, false, false, &out, &n, &err);
    double ms = (double)(time_ns() - t0) / 1e6;
    CHECK_MSG(st == want, "status %d (%s), want %d for %.80s", st, err.msg, want, tmpl);
    CHECK_MSG(!msg_part || strstr(err.msg, msg_part), "message \"%s\" lacks \"%s\"", err.msg, msg_part);
    CHECK_MSG(ms < 20000, "took %.0f ms to fail", ms);
    mem_free(out);
}

static void test_hostile(void) {
    // endless-ish loops: the step budget
    expect_fail("{% for i in range(100000) %}{% for j in range(100000) %}{% endfor %}{% endfor %}", NULL, SIM_ERR_RANGE,
                "runs too long");
    expect_fail("{% macro f() %}{{ f() }}{% endmacro %}{{ f() }}", NULL, SIM_ERR_RANGE, "nests too deeply");
    // huge output and memory: doubling strings
    expect_fail("{% set ns = namespace(s='x') %}{% for i in range(64) %}{% set ns.s = ns.s ~ ns.s %}{% endfor %}"
                "{{ ns.s }}",
                NULL, SIM_ERR_RANGE, NULL);
    expect_fail("{{ 'x' * 1000000000 }}", NULL, SIM_ERR_RANGE, "longer than");
    expect_fail("{% for i in range(100000) %}{{ 'abcdefghij' * 1000 }}{% endfor %}", NULL, SIM_ERR_RANGE, "longer than");
    expect_fail("{{ [1] * 1000000000 }}", NULL, SIM_ERR_RANGE, NULL);
    expect_fail("{% set ns = namespace(l=[1]) %}{% for i in range(40) %}{% set ns.l = ns.l + ns.l %}{% endfor %}", NULL,
                SIM_ERR_RANGE, NULL);
    // a namespace that holds itself cannot loop the printer
    expect_fail("{% set ns = namespace() %}{% set ns.me = ns %}{{ ns }}", NULL, SIM_ERR_RANGE, NULL);
    expect_fail("{% set ns = namespace() %}{% set ns.me = ns %}{{ ns.me|tojson }}", NULL, SIM_ERR_FORMAT, NULL);
    // deep nesting in the source: refused by the parser, without deep recursion
    char *deep = malloc(200000);
    strcpy(deep, "{{ ");
    for (int i = 0; i < 50000; i++) strcat(deep + 3 + i, "(");
    strcat(deep, "1");
    expect_fail(deep, NULL, SIM_ERR_FORMAT, "nested too deeply");
    strcpy(deep, "{{ ");
    for (int i = 0; i < 20000; i++) memcpy(deep + 3 + i * 4, "not ", 4);
    strcpy(deep + 3 + 20000 * 4, "1 }}");
    expect_fail(deep, NULL, SIM_ERR_FORMAT, "nests too deeply");
    deep[0] = 0;
    for (int i = 0; i < 5000; i++) strcat(deep + i * 10, "{% if 1 %}");
    expect_fail(deep, NULL, SIM_ERR_FORMAT, "nests too deeply");
    // long chains parse without recursion but make deep trees
    strcpy(deep, "{{ ");
    for (int i = 0; i < 40000; i++) memcpy(deep + 3 + i * 2, "1+", 2);
    strcpy(deep + 3 + 40000 * 2, "1 }}");
    expect_fail(deep, NULL, SIM_ERR_FORMAT, "nests too deeply");
    strcpy(deep, "{% if 0 %}");
    for (int i = 0; i < 10000; i++) memcpy(deep + 10 + i * 12, "{% elif 0 %}", 12);
    strcpy(deep + 10 + 10000 * 12, "{% endif %}");
    expect_fail(deep, NULL, SIM_ERR_FORMAT, "nests too deeply");
    strcpy(deep, "{{ x");
    for (int i = 0; i < 30000; i++) memcpy(deep + 4 + i * 6, "|upper", 6);
    strcpy(deep + 4 + 30000 * 6, " }}");
    expect_fail(deep, NULL, SIM_ERR_FORMAT, "nests too deeply");
    free(deep);
    // limits given by the caller
    jinja_template *t;
    sim_err err;
    const char *src = "{% for i in range(1000) %}{{ i }}{% endfor %}";
    CHECK(jinja_parse(&t, src, strlen(src), &err) == SIM_OK);
    char *out;
    jinja_opts o = {.max_output = 100};
    CHECK(jinja_render(t, NULL, &o, &out, NULL, &err) == SIM_ERR_RANGE);
    o = (jinja_opts){.max_steps = 500};
    CHECK(jinja_render(t, NULL, &o, &out, NULL, &err) == SIM_ERR_RANGE);
    o = (jinja_opts){.max_memory = 16 << 10};
    CHECK(jinja_render(t, NULL, &o, &out, NULL, &err) == SIM_ERR_RANGE);
    CHECK_MSG(strstr(err.msg, "memory"), "%s", err.msg);
    CHECK(jinja_render(t, NULL, NULL, &out, NULL, &err) == SIM_OK);
    mem_free(out);
    jinja_free(t);
    // bad input
    CHECK(jinja_parse(&t, "\xff{{ x }}", 8, &err) == SIM_ERR_FORMAT);
    CHECK(t == NULL);
    CHECK(jinja_parse(&t, "{{ '\\u00e9' }}\x00{{ 1 }}", 22, &err) == SIM_OK); // NUL is text
    jinja_free(t);
}

// Fail the Nth allocation for every N: each run either renders the same
// bytes or fails with SIM_ERR_NOMEM, and leaks nothing (ASan checks).
static void test_alloc_failures(void) {
    const char *src = "{% set ns = namespace(n=0) %}{% macro m(x) %}<{{ x|upper }}>{% endmacro %}"
                      "{% for msg in messages %}{{ m(msg.role) }}{{ msg.content|trim }}{{ msg|tojson }}"
                      "{% set ns.n = ns.n + 1 %}{% endfor %}{{ ns.n }}{{ messages|map(attribute='role')|join(',') }}";
    json_t *ctx = json_loads("{\"messages\": [{\"role\": \"system\", \"content\": \" a \"}, {\"role\": \"user\", "
                             "\"content\": \"b\"}]}",
                             0, NULL);
    sim_err err;
    jinja_template *t;
    char *want;
    size_t wn;
    CHECK(jinja_parse(&t, src, strlen(src), &err) == SIM_OK);
    CHECK(jinja_render(t, ctx, NULL, &want, &wn, &err) == SIM_OK);
    jinja_free(t);
    int ok = 0, failed = 0;
    for (long n = 0; n < 100000; n++) {
        mem_fail_after(n);
        sim_status st = jinja_parse(&t, src, strlen(src), &err);
        char *out = NULL;
        size_t on = 0;
        if (st == SIM_OK) {
            st = jinja_render(t, ctx, NULL, &out, &on, &err);
            jinja_free(t);
        }
        bool triggered = mem_fail_triggered();
        mem_fail_after(-1);
        if (st == SIM_OK) {
            CHECK(on == wn && !memcmp(out, want, wn));
            mem_free(out);
            ok++;
            if (!triggered) break; // no allocation left to fail
        } else {
            CHECK_MSG(st == SIM_ERR_NOMEM, "allocation %ld: status %d (%s)", n, st, err.msg);
            failed++;
        }
    }
    CHECK_MSG(failed >= 5 && ok == 1, "%d runs failed, %d succeeded", failed, ok);
    mem_free(want);
    json_decref(ctx);
}

typedef struct thread_job {
    const jinja_template *t;
    const json_t *ctx;
    const char *want;
    int bad;
} thread_job;

static void *render_many(void *arg) {
    thread_job *j = arg;
    jinja_opts o = {.trim_blocks = true, .lstrip_blocks = true};
    for (int i = 0; i < 200; i++) {
        char *out;
        sim_err err;
        if (jinja_render(j->t, j->ctx, &o, &out, NULL, &err) != SIM_OK || strcmp(out, j->want) != 0) j->bad++;
        else mem_free(out);
    }
    return NULL;
}

// One template rendered by several threads at once.
static void test_threads(void) {
    const char *src = "{% for m in messages %}{{ m.role|upper }}: {{ m.content }}\n{% endfor %}";
    jinja_template *t;
    sim_err err;
    CHECK(jinja_parse(&t, src, strlen(src), &err) == SIM_OK);
    json_t *ctx = json_loads("{\"messages\": [{\"role\": \"user\", \"content\": \"hi\"}, {\"role\": \"bot\", "
                             "\"content\": \"yo\"}]}",
                             0, NULL);
    thread_job jobs[4];
    pthread_t th[4];
    for (int i = 0; i < 4; i++) {
        jobs[i] = (thread_job){t, ctx, "USER: hi\nBOT: yo\n", 0};
        pthread_create(&th[i], NULL, render_many, &jobs[i]);
    }
    for (int i = 0; i < 4; i++) {
        pthread_join(th[i], NULL);
        CHECK_EQ_INT(jobs[i].bad, 0);
    }
    json_decref(ctx);
    jinja_free(t);
}

int main(int argc, char **argv) {
    test_init(argc, argv);
    TEST_RUN(test_semantics);
    TEST_RUN(test_semantics_reference);
    TEST_RUN(test_errors);
    TEST_RUN(test_errors_reference);
    TEST_RUN(test_golden_templates);
    TEST_RUN(test_chat_basics);
    TEST_RUN(test_chat_variants);
    TEST_RUN(test_hostile);
    TEST_RUN(test_alloc_failures);
    TEST_RUN(test_threads);
    return test_finish();
}
