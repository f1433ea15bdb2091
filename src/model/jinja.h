// jinja.h — a Jinja2 template interpreter for chat templates.
//
// Models ship their prompt format as a Jinja2 template (the GGUF metadata
// string `tokenizer.chat_template`, from Hugging Face's tokenizer_config).
// This module parses such a template once and renders it for a context of
// JSON values (messages, tools, add_generation_prompt, bos_token, ...); the
// output must be byte-identical to what Python's jinja2 produces, because the
// model was trained on exactly those bytes. model/chat.h wraps it with
// Hugging Face's conventions for OpenAI-style messages.
//
//     jinja_template *t;
//     sim_err err;
//     if (jinja_parse(&t, src, strlen(src), &err) != SIM_OK) puts(err.msg); // "line 3, column 7: ..."
//     json_t *ctx = json_pack("{s:[{s:s,s:s}], s:b}", "messages", "role", "user",
//                             "content", "Hi", "add_generation_prompt", 1);
//     jinja_opts o = {.trim_blocks = true, .lstrip_blocks = true};         // as HF renders
//     char *out; size_t n;
//     if (jinja_render(t, ctx, &o, &out, &n, &err) == SIM_OK) { fwrite(out, 1, n, stdout); mem_free(out); }
//     json_decref(ctx); jinja_free(t);
//
// What is covered (the language real chat templates use, as jinja2 3.1 with
// ImmutableSandboxedEnvironment and the loopcontrols extension, like HF):
//   - {{ }}, {% %}, {# #}, {% raw %}; whitespace control `-` and `+` on every
//     tag; trim_blocks and lstrip_blocks as render options (jinja2's
//     Environment() default is false/false, HF uses true/true); newlines are
//     normalized to \n and one trailing newline is dropped, as jinja2 does.
//   - statements: if/elif/else; for (tuple targets, `if` filter, else, loop.
//     index/index0/revindex/revindex0/first/last/length/depth/depth0/
//     previtem/nextitem/cycle()/changed()); break, continue; set (names,
//     tuples, `ns.attr`, block set with filters); macro with defaults, call
//     blocks and caller(), varargs, kwargs; filter blocks; with; HF's
//     generation block.
//   - expressions: literals (strings with Python escapes, ints, floats, lists,
//     tuples, dicts, true/false/none in both cases), + - * / // % ** ~,
//     comparisons (chained), and/or/not, in/not in, is/is not tests,
//     a if c else b, x.y (attribute, then item), x[k], slices x[a:b:c],
//     calls with keyword arguments, filters with arguments.
//   - filters: abs attr batch capitalize center count d default dictsort e
//     escape first float forceescape format indent int items join last length
//     list lower map max min replace reject rejectattr reverse round safe select
//     selectattr sort string sum title tojson trim unique upper wordcount;
//     tojson is HF's (json.dumps with ensure_ascii=False; indent, separators,
//     sort_keys, ensure_ascii arguments).
//   - tests: boolean callable defined divisibleby eq equalto escaped even false
//     filter float ge greaterthan gt in integer iterable le lessthan lower lt
//     mapping ne none number odd sameas sequence string test true undefined
//     upper.
//   - methods: str strip lstrip rstrip upper lower title capitalize swapcase
//     startswith endswith split rsplit splitlines replace find rfind count
//     index join isalpha isdigit isalnum isspace islower isupper center ljust
//     rjust zfill; dict get items keys values copy; list count index.
//   - globals: range, namespace, dict, raise_exception(msg), strftime_now(fmt),
//     then whatever the context holds (context variables shadow globals).
//   - undefined values behave as jinja2's default Undefined: print as "",
//     are false, iterate as empty, equal only each other; an attribute of
//     one, or arithmetic on one, is an error naming it ("'x' is undefined").
//   - Python's types where templates can see them: tuples, dict views
//     (x.items() prints as dict_items([...])), ranges, and the generators
//     jinja2's select/map/unique/batch/items filters return (always true, no
//     len(), not subscriptable, used up by one iteration; only their printed
//     form, which has an address in Python, differs).
//   - what jinja2 decides when it compiles: its static scoping (a name
//     assigned later in a loop, macro, block or the template itself is
//     undefined there before that, not the context's value) and its constant
//     folding (constant subexpressions are computed through its forgiving
//     getitem, a folded negative base is not parenthesized: `-3 ** x` is
//     -(3 ** x)).
// Not covered (refused with a message): template inheritance and includes
// (extends, block, include, import), recursive loops, *args/**kwargs in
// calls, str.format, the cycler/joiner/lipsum globals, list/dict mutation
// (the immutable sandbox refuses it too).
// Integers are 64-bit (overflow is an error); case mapping covers Latin,
// Greek, Cyrillic and Armenian letters (plus ß→SS), not Unicode's special
// casing; names are ASCII identifiers.
//
// Ownership: jinja_parse copies the source; the template is immutable and
// may be rendered by any number of threads at once. jinja_render does not
// keep ctx; strings in *out are malloc'd through mem_* (free with mem_free).
// Every value made while rendering lives in one arena freed before return.
//
// Errors: every function returns a sim_status and fills err. Parse errors are
// SIM_ERR_FORMAT with "line L, column C: what" (columns count characters
// from 1). Render errors: SIM_ERR_ARG when the template called
// raise_exception (err.msg is exactly its message: the template refused the
// input), SIM_ERR_FORMAT for any other template error ("line L: what": type
// errors, undefined values, unknown filters), SIM_ERR_RANGE when a limit was
// hit (output size, steps, memory, nesting), SIM_ERR_NOMEM. A hostile
// template cannot hang, crash or exhaust memory: parsing refuses sources
// nested deeper than JINJA_MAX_NEST and syntax trees deeper than
// JINJA_MAX_TREE; every loop is bounded by the step budget, recursion by
// JINJA_MAX_DEPTH, output and memory by the limits.
#ifndef SIM_JINJA_H
#define SIM_JINJA_H

#include <jansson.h>
#include <time.h>

#include "base/base.h"

#define JINJA_MAX_SOURCE (1u << 20)           // longest template, bytes
#define JINJA_MAX_NEST 128                    // deepest nesting of blocks and brackets in the source
#define JINJA_MAX_TREE 256                    // deepest syntax tree (long operator or elif chains count)
#define JINJA_MAX_DEPTH 512                   // deepest evaluation (macro recursion included)
#define JINJA_MAX_OUTPUT (64u << 20)          // default output limit, bytes
#define JINJA_MAX_STEPS (20u * 1000u * 1000u) // default budget of evaluation steps
#define JINJA_MAX_MEMORY (512u << 20)         // default per-render memory limit, bytes

typedef struct jinja_template jinja_template;

typedef struct jinja_opts {
    bool trim_blocks;      // drop the first newline after a block or comment tag
    bool lstrip_blocks;    // drop spaces and tabs from a line's start up to a block or comment tag
    const struct tm *now;  // what strftime_now() formats; NULL: the current local time
    size_t max_output;     // bytes of output (and of any one string); 0: JINJA_MAX_OUTPUT
    uint64_t max_steps;    // evaluation steps (expressions, statements, loop turns); 0: JINJA_MAX_STEPS
    size_t max_memory;     // bytes the render may allocate; 0: JINJA_MAX_MEMORY
} jinja_opts;

// Parses src[0..len) (need not be NUL-terminated; must be UTF-8). On success
// *out owns a new template; on error *out is NULL.
sim_status jinja_parse(jinja_template **out, const char *src, size_t len, sim_err *err);
void jinja_free(jinja_template *t); // NULL is fine

// Renders t with the variables of ctx (a JSON object, or NULL for none).
// opts NULL means all defaults (trim_blocks and lstrip_blocks false, as
// jinja2's Environment()). On success *out is a new NUL-terminated string of
// *out_len bytes (out_len may be NULL); on error *out is NULL.
sim_status jinja_render(const jinja_template *t, const json_t *ctx, const jinja_opts *opts, char **out,
                        size_t *out_len, sim_err *err);

#endif
