// jsonschema.h — JSON Schema → GBNF, for constraining a model to emit JSON
// that a schema accepts (the practical subset that structured output uses).
//
//     char *gbnf;
//     if (jsch_to_gbnf(schema_text, strlen(schema_text), &gbnf, &err) != SIM_OK) {
//         puts(err.msg);   // e.g. "/properties/age/type: unknown type \"integr\""
//         ...
//     }
//     gram_parse(&g, gbnf, strlen(gbnf), &err);   // see grammar.h
//     mem_free(gbnf);
//
// Supported:
//   - type: "object", "array", "string", "number", "integer", "boolean",
//     "null", or a list of them (a union); without `type` it is inferred from
//     the keywords (properties → object, items → array, minLength → string),
//     and a schema with none of them (`{}` or `true`) accepts any JSON value;
//   - objects: `properties` in the order declared, `required` (the others may
//     be left out; a required name that has no property schema takes any
//     value), `additionalProperties` (only `true` or a schema allows more
//     keys, after the declared ones; absent or false allows none — stricter
//     than JSON Schema's default, so the model cannot invent keys);
//   - arrays: `items`, `minItems`, `maxItems`;
//   - strings: `minLength`, `maxLength` (in characters; an escape counts as
//     one); `format` is ignored;
//   - numbers and integers: JSON syntax with at most 16 integer digits, 16
//     fraction digits and 2 exponent digits (every number a finite double;
//     parsers such as Jansson refuse 1e999); `minimum`, `maximum`, `exclusiveMinimum`,
//     `exclusiveMaximum` and `multipleOf` are NOT enforced (ignored);
//   - `enum`, `const` (any JSON values, matched in compact form);
//   - `anyOf`, `oneOf` (both as "any of": exclusivity is not enforced);
//   - `$ref` to a JSON pointer inside the schema ("#", "#/$defs/name",
//     "#/definitions/name", ...); recursive schemas give recursive grammars;
//     a cycle of references that never reaches a value is refused;
//   - annotations ignored: title, description, default, examples, $schema,
//     $id, $comment, format, readOnly, writeOnly, deprecated.
// Refused with a message: pattern, patternProperties, allOf, not,
// if/then/else, prefixItems, contains, uniqueItems, propertyNames,
// min/maxProperties, dependent*, unevaluated*; external references; bounds
// above GRAM_MAX_REPEAT; `false` schemas.
//
// Output: `root ::= …` plus one rule per object, array and referenced
// definition, and shared rules (ws, string, char, number, integer, value …).
// Whitespace between JSON tokens is optional and bounded: nothing, one space
// or tab, or one newline followed by up to 20 spaces/tabs — enough for
// pretty-printing, not enough for a model to loop on whitespace.
//
// Ownership: *out is a NUL-terminated string allocated with mem_alloc; free it
// with mem_free. Errors: SIM_ERR_FORMAT for text that is not JSON ("line L,
// column C: …", from Jansson) or not a valid schema ("/json/pointer: what"),
// SIM_ERR_UNSUPPORTED for keywords outside the subset ("/pointer: …"),
// SIM_ERR_NOMEM. On error *out is NULL.
#ifndef SIM_JSONSCHEMA_H
#define SIM_JSONSCHEMA_H

#include "base/base.h"

#define JSCH_MAX_DEPTH 128 // deepest schema nesting we convert

sim_status jsch_to_gbnf(const char *schema, size_t len, char **out, sim_err *err);

#endif
