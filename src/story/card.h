// card.h — SillyTavern character cards (V1, V2, V3) from JSON or PNG.
//
// A card is a character definition shared as a JSON file or embedded in a
// PNG picture of the character. The formats, in order of detection:
//
//   PNG   8-byte signature, then chunks: length (u32 BE, <= 2^31-1), type (4
//         ASCII letters), data, CRC-32 of type+data. IHDR must come first;
//         parsing stops at IEND. The card is the text of a tEXt chunk whose
//         keyword is `ccv3` (V3, preferred when present) or `chara` (V2/V1),
//         base64 of the card JSON. Uncompressed iTXt with those keywords is
//         accepted too; compressed ones (zTXt, compressed iTXt) are refused.
//   JSON  V3: {"spec":"chara_card_v3","spec_version":"3.0","data":{...}}
//         V2: {"spec":"chara_card_v2","spec_version":"2.0","data":{...}}
//         V1: a flat object {name, description, personality, scenario,
//             first_mes, mes_example} with no "spec".
//
//     card *c = NULL;
//     sim_err err;
//     if (card_parse(&c, bytes, len, "alice.png", &err) != SIM_OK) {
//         fprintf(stderr, "%s\n", err.msg); // "alice.png: data.tags[2] must be a string"
//         return err.code;
//     }
//     char *greeting = card_expand(c->first_mes, c->name, "Player");
//     ...
//     mem_free(greeting);
//     card_free(c);
//
// Ownership: card_parse returns one heap card; every string, array and entry
// in it belongs to the card and is released by card_free (which takes NULL).
// Every string field is non-NULL, valid UTF-8 without NUL bytes ("" when the
// card leaves it out or sets it to null). `extensions` (and
// `creator_notes_multilingual` when present) are Jansson references owned by
// the card (json_decref'd by card_free); borrow them, or json_incref to keep.
//
// Hostile input: the whole card (PNG or JSON) is at most CARD_MAX_BYTES, one
// string at most CARD_MAX_STRING bytes, counts are bounded (below). Wrong
// types, invalid UTF-8, bad asset URIs and a missing name are refused with
// the JSON path of the field ("data.alternate_greetings[3]: invalid UTF-8");
// unknown fields are ignored; JSON null counts as absent. Every message
// starts with name_for_errors. Allocation goes through mem_* (base.h).
#ifndef SIM_CARD_H
#define SIM_CARD_H

#include <jansson.h>

#include "base/base.h"

#define CARD_MAX_BYTES (16u << 20)  // a whole card file, and its decoded JSON
#define CARD_MAX_STRING (1u << 20)  // any one string, in bytes
#define CARD_MAX_GREETINGS 1000     // alternate_greetings, group_only_greetings (each)
#define CARD_MAX_ENTRIES 10000      // lorebook entries
#define CARD_MAX_LIST 1000          // tags, sources, assets, keys of one entry
#define CARD_MAX_PNG_CHUNKS 100000

typedef enum card_spec {
    CARD_SPEC_V1 = 1,
    CARD_SPEC_V2 = 2,
    CARD_SPEC_V3 = 3,
} card_spec;

// Where a lorebook entry is inserted relative to the character definition.
typedef enum card_position {
    CARD_POS_BEFORE_CHAR = 0, // also the default when absent
    CARD_POS_AFTER_CHAR = 1,
} card_position;

// What an asset URI points at. Nothing is fetched by the parser.
typedef enum card_uri_kind {
    CARD_URI_EMBEDDED, // "embeded://p" (sic, the spec's spelling) or "embedded://p": p inside the card archive
    CARD_URI_DEFAULT,  // "ccdefault:": the application's default for the type (e.g. the PNG itself)
    CARD_URI_DATA,     // "data:..." inline
    CARD_URI_REMOTE,   // "http://" or "https://"
    CARD_URI_PATH,     // no scheme: a relative path
    CARD_URI_OTHER,    // another scheme: recorded, never used
} card_uri_kind;

typedef struct card_entry { // one lorebook (character_book) entry
    char **keys;            // (n_keys) primary trigger keys
    int n_keys;
    char **secondary_keys;  // (n_secondary_keys) used when selective
    int n_secondary_keys;
    char *content;
    char *name;             // "" when absent
    char *comment;          // "" when absent
    bool enabled;           // default true
    bool constant;          // always inserted
    bool selective;         // needs a secondary key too
    bool case_sensitive;
    bool use_regex;         // keys are regular expressions (V3)
    int64_t insertion_order; // lower first; default 100
    int64_t priority;       // default 0
    card_position position;
} card_entry;

typedef struct card_asset { // V3 data.assets[i]
    char *type;             // "icon", "background", "user_icon", "emotion", ...
    char *uri;              // as written in the card
    char *name;             // "main" for the main asset of a type
    char *ext;              // lower-case letters and digits ("png"), or "" (ccdefault:)
    card_uri_kind kind;
    char *path;             // EMBEDDED: the path after the scheme; PATH: the uri; else ""
} card_asset;

typedef struct card {
    card_spec spec;
    char *spec_version;     // "2.0", "3.0"; "" for V1
    char *name;             // never empty
    char *nickname;         // V3: used in place of name for {{char}} when set
    char *description;
    char *personality;
    char *scenario;
    char *first_mes;
    char *mes_example;
    char *creator_notes;
    char *system_prompt;
    char *post_history_instructions;
    char *creator;
    char *character_version;
    char **alternate_greetings;   // (n_alternate_greetings)
    int n_alternate_greetings;
    char **group_only_greetings;  // (n_group_only_greetings) V3
    int n_group_only_greetings;
    char **tags;                  // (n_tags)
    int n_tags;
    char **source;                // (n_source) V3 source URLs/ids
    int n_source;
    char *book_name;              // character_book.name
    card_entry *entries;          // (n_entries) character_book.entries
    int n_entries;
    card_asset *assets;           // (n_assets) V3
    int n_assets;
    int64_t creation_date;        // V3, Unix seconds; 0 when absent
    int64_t modification_date;
    json_t *creator_notes_multilingual; // V3 object {lang: string}, or NULL
    json_t *extensions;           // data.extensions as is (an object; {} when absent)
} card;

// Parses a card from data[0..len) (PNG when it starts with the PNG
// signature, JSON otherwise). On success *out is a new card (card_free);
// on error *out is NULL and err says why, prefixed by name_for_errors
// ("card" when NULL): SIM_ERR_FORMAT for malformed input, SIM_ERR_UNSUPPORTED
// for compressed PNG text or an unknown spec, SIM_ERR_RANGE for limits,
// SIM_ERR_NOMEM when an allocation fails.
sim_status card_parse(card **out, const void *data, size_t len, const char *name_for_errors,
                      sim_err *err);

void card_free(card *c);

// Returns a new string (mem_free) with the macros {{char}}, {{user}} and the
// legacy <BOT>, <USER> replaced (case-insensitively, as SillyTavern does) by
// char_name and user_name (NULL counts as ""). NULL when allocation fails.
char *card_expand(const char *text, const char *char_name, const char *user_name);

// Exposed for tests and tools: CRC-32 (ISO-HDLC, as PNG and zlib use) of
// data[0..n) continuing from crc (start with 0).
uint32_t card_crc32(uint32_t crc, const void *data, size_t n);

// Strict base64 (standard alphabet): whitespace anywhere is skipped, the
// trailing '=' padding may be present or left out; any other character, or
// a length that cannot be base64, is refused. On success *out is a new
// NUL-terminated buffer (mem_free) of *out_len bytes.
sim_status card_base64_decode(const char *s, size_t n, uint8_t **out, size_t *out_len, sim_err *err);

#endif
