// scenario.h — scenario packs: a folder with manifest.json and its assets.
//
// The format is documented in docs/scenario-format.md (JSON Schema:
// docs/scenario.schema.json). scn_load reads DIR/manifest.json, validates
// every field and every cross-reference, and checks every asset (relative
// path inside the folder, regular file, size limit, SHA-256). It collects
// EVERY problem into a report rather than stopping at the first:
//
//     scn_report rep;
//     scn_report_init(&rep);
//     scn_scenario *s;
//     if (scn_load(&s, "scenarios/lighthouse", &rep, &err) != SIM_OK) {
//         for (int i = 0; i < rep.n; i++)
//             printf("%s: %s (fix: %s)\n", rep.items[i].path, rep.items[i].msg, rep.items[i].hint);
//     } else {
//         puts(scn_text(s, &s->name, "en-US"));
//         scn_free(s);
//     }
//     scn_report_free(&rep);
//
// Ownership: the scenario owns everything it points to (its strings point
// into the parsed JSON document it keeps); scn_free releases it all. The
// report owns its problems. Errors: scn_load returns SIM_OK with *out set
// only when the report gained no problem; otherwise *out is NULL, err says
// how many problems there were, and the report lists them (SIM_ERR_NOMEM
// when memory ran out, SIM_ERR_IO when manifest.json cannot be read,
// SIM_ERR_FORMAT for everything else).
//
// dir may also be a .zip of the folder (manifest.json at its root or in its
// one top-level folder); every entry is checked as hostile input first and
// asset problems name the zip entry (src/story/pack.h).
#ifndef SIM_SCENARIO_H
#define SIM_SCENARIO_H

#include "base/base.h"
#include "base/sha256.h"

// --- limits (a scenario is hostile input) -------------------------------------------

#define SCN_FORMAT_VERSION 1
#define SCN_MAX_MANIFEST ((size_t)4 << 20)     // manifest.json bytes
#define SCN_MAX_STRING ((size_t)64 << 10)      // bytes of any one string
#define SCN_MAX_ITEMS 4096                     // entries of any one array or map
#define SCN_MAX_ASSET_BYTES ((uint64_t)256 << 20) // one asset file
#define SCN_MAX_PATH 1024                      // bytes of an asset path
#define SCN_MAX_PROBLEMS 1000                  // problems kept in a report (more are counted)
#define SCN_MAX_LOCALES 64

// --- the report -----------------------------------------------------------------------

typedef struct scn_problem {
    char path[256]; // JSON path: "characters[1].outfits[0].layers.body.sha256" ("" = the file itself)
    char msg[512];  // what is wrong
    char hint[256]; // how to fix it
} scn_problem;

typedef struct scn_report {
    scn_problem *items; // (n)
    int n, cap;
    int n_dropped;      // problems past SCN_MAX_PROBLEMS (counted, not kept)
} scn_report;

void scn_report_init(scn_report *r);
void scn_report_free(scn_report *r);
// Adds a problem (path, hint and message are truncated to fit). Returns false
// only when memory ran out.
bool scn_report_add(scn_report *r, const char *path, const char *hint, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));

// --- the scenario -----------------------------------------------------------------------

// A text in every locale: v[i] is the text for s->locales[i] (never NULL once
// loaded). An optional text that is absent has v == NULL.
typedef struct scn_text_map {
    const char **v; // (n_locales) or NULL
} scn_text_map;

typedef struct scn_asset {
    const char *path;    // relative to the folder, '/'-separated
    char sha256[SHA256_HEX_SIZE];
    uint64_t size;       // bytes (filled by the asset check)
} scn_asset;

// One sprite layer: an image placed on the body canvas. x, y: the layer's top
// left corner as fractions of the body image's width and height, [0, 1];
// scale: the layer's size relative to its pixel size, (0, 4].
typedef struct scn_layer {
    scn_asset image;
    double x, y, scale;
} scn_layer;

typedef struct scn_body {
    const char *id;
    scn_asset image; // the base layer: its size is the canvas of the other layers
} scn_body;

// An outfit or an expression: one layer per body, layers[i] for bodies[i].
typedef struct scn_variant {
    const char *id;
    scn_text_map name;
    scn_text_map description; // optional: what the model is told it looks like
    scn_layer *layers;        // (n_bodies), in the order of the character's bodies
} scn_variant;

typedef struct scn_relationship {
    const char *to; // a character id
    int to_index;   // into s->characters
    scn_text_map text;
} scn_relationship;

typedef struct scn_character {
    const char *id;
    scn_text_map name, about, personality, appearance;
    uint32_t color; // 0xRRGGBB
    scn_relationship *relationships; int n_relationships;
    scn_body *bodies; int n_bodies;
    scn_variant *outfits; int n_outfits;
    scn_variant *expressions; int n_expressions;
} scn_character;

typedef struct scn_player {
    scn_text_map name, about, appearance; // appearance optional
} scn_player;

typedef struct scn_location {
    const char *id;
    scn_text_map name, description;
} scn_location;

typedef struct scn_scene {
    const char *id;
    scn_text_map name;
    scn_text_map prompt;    // the description the model is given
    const char *location;   // a location id or NULL
    int location_index;     // -1 when none
    scn_asset background;
    scn_asset *ambience; int n_ambience;
} scn_scene;

typedef struct scn_stage_character {
    const char *id; int index;              // the character
    const char *body; int body_index;       // default: the first body
    const char *outfit; int outfit_index;
    const char *expression; int expression_index;
} scn_stage_character;

#define SCN_SPEAKER_NARRATOR (-1)
#define SCN_SPEAKER_PLAYER (-2)

typedef struct scn_line {
    const char *speaker; // a character id, "narrator" or "player"
    int speaker_index;   // into s->characters, or SCN_SPEAKER_*
    scn_text_map text;
} scn_line;

typedef struct scn_episode {
    const char *id;
    scn_text_map name, about; // about optional
    const char *start_scene; int start_scene_index;
    scn_stage_character *on_stage; int n_on_stage;
    scn_line *opening; int n_opening;
    int *allowed_speakers; int n_allowed_speakers; // character indices
} scn_episode;

// --- variables, achievements, lore -------------------------------------------------

#define SCN_MAX_VARIABLES 256      // variables of one scenario (the stage holds them all)
#define SCN_MAX_VAR_ABS 1000000000 // |min|, |max| of an integer variable
#define SCN_MAX_COND_DEPTH 16      // nesting of achievement conditions
#define SCN_DEFAULT_LORE_BUDGET 256

typedef enum scn_var_type {
    SCN_VAR_INT,  // an integer in [min, max]
    SCN_VAR_BOOL, // false/true, held as 0/1
    SCN_VAR_ENUM, // one of `values`, held as its index
} scn_var_type;

// A scenario-defined piece of the stage state (affection, flags, counts).
// Every value is held as an int: INT itself, BOOL 0/1, ENUM an index.
typedef struct scn_variable {
    const char *id;
    scn_text_map name;
    scn_var_type type;
    int min, max;                 // the value range (BOOL 0..1, ENUM 0..n_values-1)
    const char **values; int n_values; // ENUM: the value ids
    int def;                      // the value at the episode start
    const char *character; int character_index; // optional: whose variable it is (-1)
    bool hidden;                  // not shown to the player (the model still sees it)
} scn_variable;

typedef enum scn_cond_kind {
    SCN_COND_ALL,      // every sub-condition holds (all of zero: true)
    SCN_COND_ANY,      // at least one holds
    SCN_COND_NOT,      // sub[0] does not hold
    SCN_COND_VARIABLE, // variables[index] `op` value
    SCN_COND_SCENE,    // the current scene is scenes[index]
    SCN_COND_ON_STAGE, // characters[index] is on stage
    SCN_COND_CLOCK,    // the clock is at least `value` minutes
} scn_cond_kind;

typedef enum scn_cond_op { SCN_OP_EQ, SCN_OP_GE, SCN_OP_LE } scn_cond_op;

typedef struct scn_cond {
    scn_cond_kind kind;
    struct scn_cond *sub; int n_sub; // ALL, ANY (n), NOT (1)
    int index;
    scn_cond_op op;
    int value;
} scn_cond;

typedef struct scn_achievement {
    const char *id;
    scn_text_map name, description;
    scn_cond when;
} scn_achievement;

typedef enum scn_lore_position {
    SCN_LORE_SETUP,  // always in the prompt's lore section (stable, cached)
    SCN_LORE_RECENT, // when a key appears in recent lines, among the volatile injections
} scn_lore_position;

typedef struct scn_lore {
    const char *id;
    const char **keys; int n_keys; // matched as whole words
    scn_text_map text;
    scn_lore_position position;
    int priority;                  // higher first when the budget is short
    bool case_sensitive;
} scn_lore;

typedef struct scn_scenario {
    int version;                 // the format version (SCN_FORMAT_VERSION)
    const char *id;
    const char *scenario_version; // the author's own version string
    const char **locales; int n_locales; // locales[0]... ; "en-US" is among them
    scn_text_map name, teaser, about;
    bool nsfw;
    int context_size;            // recommended context size in tokens
    scn_text_map global_scenario, instructions; // instructions optional (hidden from players)
    scn_asset *thumbnail;        // optional
    scn_player player;
    scn_character *characters; int n_characters;
    scn_location *locations; int n_locations;
    scn_scene *scenes; int n_scenes;
    scn_episode *episodes; int n_episodes;
    scn_variable *variables; int n_variables;
    scn_achievement *achievements; int n_achievements;
    scn_lore *lore; int n_lore;
    int lore_budget;             // tokens of activated lore per prompt
    int n_assets;                // distinct asset files
    uint64_t asset_bytes;        // their total size
    char *dir;                   // the folder, as given
    void *doc;                   // the parsed manifest (json_t *), which the strings point into
} scn_scenario;

// Loads and validates dir/manifest.json and its assets (see the top).
sim_status scn_load(scn_scenario **out, const char *dir, scn_report *rep, sim_err *err);
void scn_free(scn_scenario *s);

// The text of t in `locale` (falls back to "en-US"), or NULL when t is absent.
const char *scn_text(const scn_scenario *s, const scn_text_map *t, const char *locale);

#endif
