// tree.h — the story tree: every story, every line ever shown, every
// variant and edit, checkpoints, saves, completion records, achievements and
// the long-term memory index, in one SQLite database.
//
// A story is a tree of updates. An update is one turn of the visual novel:
// optional stage commands (a JSON array) and one line (speaker + text) at a
// story clock. Regenerating a line adds a sibling (a variant); editing a line
// adds a sibling with edit_of set (the original and everything under it
// stay). Every parent has a `chosen` child (the variant shown; for the roots
// the story keeps `first_chosen`), and the story has a `head`: the current
// story is the path root..head. Nothing is ever deleted except a whole story.
//
//     tree_db *db;
//     sim_err err;
//     if (tree_open(&db, "saves.db", &err) != SIM_OK) { fprintf(stderr, "%s\n", err.msg); return 1; }
//     int64_t story, a, b;
//     tree_story_create(db, "ann", "lighthouse", "1.0", "last-ferry", "First night", &story, &err);
//     tree_update_in in = {.speaker = "mira", .text = "The ferry is late.", .source = TREE_SOURCE_MODEL,
//                          .commands = "[{\"setScene\":{\"scene\":\"pier\"}}]", .stage = "{\"scene\":\"pier\"}"};
//     tree_update_add(db, "ann", story, 0, &in, &a, &err);      // head = a
//     tree_update_add(db, "ann", story, 0, &in, &b, &err);      // a variant of a: head = b
//     tree_update_choose(db, "ann", a, &err);                   // back to a
//     tree_update *path; int n;
//     tree_path(db, "ann", story, &path, &n, &err);             // [a]
//     tree_updates_free(path, n);
//     tree_close(db);
//
// Users: every call takes the acting user (NULL = anonymous, e.g. the CLI).
// A story with an owner is visible only to that user; to anyone else it does
// not exist ("story 12 not found", "update 40 not found": existence never
// leaks). A story without owner is open to every user.
//
// Threads: a tree_db holds one connection guarded by a mutex; every public
// function takes it, so one tree_db may be shared by the server's threads.
//
// Ownership: every struct or array a function returns is the caller's and
// goes back through its _free function (which accepts NULL). Input strings
// are only read during the call.
//
// Errors: a sim_status and a message in err. SIM_ERR_ARG for bad arguments
// and for things that do not exist (or belong to someone else): "story 12
// not found"; SIM_ERR_RANGE for strings over the limits below;
// SIM_ERR_FORMAT for invalid UTF-8 or JSON, and for files that are not our
// database (not SQLite, another application, corrupt); SIM_ERR_UNSUPPORTED
// for a database written by a newer schema; SIM_ERR_BUSY when another
// process holds the write lock past the busy timeout; SIM_ERR_NOMEM;
// SIM_ERR_IO for everything else SQLite reports. Every operation that writes
// more than one row is one transaction (BEGIN IMMEDIATE): on error nothing
// is changed. A refused tree_open never writes to the file.
//
// The database (application_id TREE_APP_ID, user_version TREE_SCHEMA_VERSION,
// WAL journal, foreign keys on):
//
//     story(id, scenario, scenario_version, episode, owner NULL, title,
//           head NULL, first_chosen NULL, created, updated)
//     upd(id, story -> story, parent -> upd NULL (a first line), speaker,
//         commands NULL (JSON array), text, minutes, stage NULL (JSON),
//         source 'model'|'player'|'script', edit_of -> upd NULL,
//         chosen NULL (a child), thumbs -1..1, created)
//     upd_fts  FTS5(text) over upd (external content, kept by triggers;
//              unicode61 with remove_diacritics 2)
//     checkpoint(id, story, upd -> upd, summary, stage, state_path NULL, created)
//     save(id, story, upd -> upd NULL, name, thumbnail BLOB NULL, state_path NULL, created)
//     completion(id, story, upd -> upd NULL, prompt_hash, options, n_prompt_tokens,
//                n_reused, n_decoded, n_generated, ms_prompt, ms_generate, created)
//     achievement(story, achievement, upd -> upd NULL, created; PRIMARY KEY(story, achievement))
//
// Times are unix milliseconds. In the API an id of 0 means "none" (the
// database stores NULL).
#ifndef SIM_TREE_H
#define SIM_TREE_H

#include "base/base.h"

#define TREE_APP_ID 0x53494d54        // 'SIMT' in the SQLite header (offset 68)
#define TREE_SCHEMA_VERSION 1         // PRAGMA user_version

// --- limits (bytes, without the NUL) -------------------------------------------------

#define TREE_MAX_NAME 256                       // ids, user, title, speaker, save name, achievement
#define TREE_MAX_TEXT ((size_t)64 << 10)        // a line, a checkpoint summary
#define TREE_MAX_JSON ((size_t)1 << 20)         // commands, stage, completion options
#define TREE_MAX_PATH 4096                      // state file paths
#define TREE_MAX_HASH 128                       // prompt hash (hex digits)
#define TREE_MAX_THUMB ((size_t)8 << 20)        // save thumbnail blob
#define TREE_MAX_MINUTES (1440 * 365 * 100)     // the story clock (as stage.h)
#define TREE_MAX_QUERY_WORDS 32                 // words a memory search keeps
#define TREE_MAX_LIST 100000                    // rows any list returns at most

typedef struct tree_db tree_db;

// --- opening -------------------------------------------------------------------------

// Opens (or creates, with its schema) the database at path (":memory:" for a
// private in-memory one). An existing file is first checked through a
// read-only connection: it must be SQLite, carry TREE_APP_ID (or be an empty
// database), have a user_version <= TREE_SCHEMA_VERSION and pass
// PRAGMA quick_check; otherwise the open fails and the file is untouched.
sim_status tree_open(tree_db **out, const char *path, sim_err *err);
void tree_close(tree_db *db);

// --- stories -------------------------------------------------------------------------

typedef struct tree_story {
    int64_t id;
    char *scenario;          // scenario id
    char *scenario_version;
    char *episode;           // episode id
    char *owner;             // NULL = no owner
    char *title;
    int64_t head;            // last update of the current path, 0 = none yet
    int64_t first_chosen;    // the chosen first line, 0 = none
    int64_t created, updated; // unix ms
} tree_story;

void tree_story_free(tree_story *s);               // frees the strings, not s
void tree_stories_free(tree_story *a, int n);      // frees the array too

// A new empty story owned by user (NULL: no owner).
sim_status tree_story_create(tree_db *db, const char *user, const char *scenario, const char *scenario_version,
                             const char *episode, const char *title, int64_t *id, sim_err *err);
sim_status tree_story_get(tree_db *db, const char *user, int64_t id, tree_story *out, sim_err *err);
// The stories owned by user (user NULL: the stories without owner), of one
// scenario unless scenario is NULL, newest first.
sim_status tree_story_list(tree_db *db, const char *user, const char *scenario, tree_story **out, int *n,
                           sim_err *err);
sim_status tree_story_rename(tree_db *db, const char *user, int64_t id, const char *title, sim_err *err);
// Deletes the story and every row that belongs to it, in one transaction.
sim_status tree_story_delete(tree_db *db, const char *user, int64_t id, sim_err *err);
// A new story (owned by user, titled title or, when NULL, like the source)
// whose only path is a copy of root..update of story (update 0: empty). The
// copies keep speaker, text, commands, minutes, stage, source and created;
// they have no variants, no edit_of and no thumbs. Other rows (checkpoints,
// saves, ...) are not copied.
sim_status tree_story_fork(tree_db *db, const char *user, int64_t story, int64_t update, const char *title,
                           int64_t *new_id, sim_err *err);

// --- updates -------------------------------------------------------------------------

typedef enum tree_source {
    TREE_SOURCE_MODEL,  // written by the model
    TREE_SOURCE_PLAYER, // typed by the player
    TREE_SOURCE_SCRIPT, // an episode's scripted line
} tree_source;

const char *tree_source_name(tree_source s); // "model", "player", "script"

typedef struct tree_update {
    int64_t id;
    int64_t story;
    int64_t parent;     // 0: a first line of the story
    char *speaker;      // character id (or e.g. "narrator"; opaque here)
    char *commands;     // JSON array text, or NULL
    char *text;
    int minutes;        // story clock, 0..TREE_MAX_MINUTES
    char *stage;        // JSON of the stage after this update, or NULL (opaque here)
    tree_source source;
    int64_t edit_of;    // 0, or the update this one is an edit of
    int64_t chosen;     // the chosen child, 0 = none
    int thumbs;         // -1, 0, +1
    int64_t created;    // unix ms
} tree_update;

void tree_update_free(tree_update *u);             // frees the strings, not u
void tree_updates_free(tree_update *a, int n);     // frees the array too

// What tree_update_add takes (the rest is set by the tree).
typedef struct tree_update_in {
    const char *speaker;  // required, 1..TREE_MAX_NAME bytes
    const char *commands; // NULL or a JSON array
    const char *text;     // required (may be empty), <= TREE_MAX_TEXT
    int minutes;
    const char *stage;    // NULL or JSON
    tree_source source;
} tree_update_in;

// Appends a child of parent (0: a first line; otherwise an update of this
// story). The new update becomes its parent's chosen child, every ancestor
// chooses the path to it, and it becomes the story's head.
sim_status tree_update_add(tree_db *db, const char *user, int64_t story, int64_t parent, const tree_update_in *in,
                           int64_t *id, sim_err *err);
sim_status tree_update_get(tree_db *db, const char *user, int64_t id, tree_update *out, sim_err *err);
// The children of update id (id 0: the first lines of story; otherwise story
// is ignored and may be 0), in creation order: the variants. *chosen is the
// index of the chosen one in *ids, or -1. *ids is NULL when there are none.
sim_status tree_update_children(tree_db *db, const char *user, int64_t story, int64_t id, int64_t **ids, int *n,
                                int *chosen, sim_err *err);
void tree_ids_free(int64_t *ids);
// Makes id its parent's chosen child (every ancestor choosing the path to
// it) and moves head to the end of the chosen chain that starts at id.
sim_status tree_update_choose(tree_db *db, const char *user, int64_t id, sim_err *err);
// A new sibling of id with the new text and commands (NULL: keep id's),
// copying speaker, minutes, stage and source, with edit_of = id; it becomes
// the chosen variant and the head. id and everything under it stay.
sim_status tree_update_edit(tree_db *db, const char *user, int64_t id, const char *text, const char *commands,
                            int64_t *new_id, sim_err *err);
// head = update (0: before the first line); update must belong to story.
// Nothing else changes: the chosen chain below still leads back down.
sim_status tree_rewind(tree_db *db, const char *user, int64_t story, int64_t update, sim_err *err);
sim_status tree_update_thumbs(tree_db *db, const char *user, int64_t id, int thumbs, sim_err *err);

// The updates root..head of story, in order (*out NULL when n is 0).
sim_status tree_path(tree_db *db, const char *user, int64_t story, tree_update **out, int *n, sim_err *err);
// The same for any head of story (0: empty).
sim_status tree_path_from(tree_db *db, const char *user, int64_t story, int64_t head, tree_update **out, int *n,
                          sim_err *err);

// --- checkpoints ---------------------------------------------------------------------

// A summary of the story up to and including `update`, with the stage at
// that point and optionally a KV state file.
typedef struct tree_checkpoint {
    int64_t id;         // 0: none
    int64_t story;
    int64_t update;     // the last update the summary covers
    char *summary;
    char *stage;        // JSON or NULL
    char *state_path;   // NULL: no state file
    int64_t created;
} tree_checkpoint;

void tree_checkpoint_free(tree_checkpoint *c);

sim_status tree_checkpoint_add(tree_db *db, const char *user, int64_t story, int64_t update, const char *summary,
                               const char *stage, const char *state_path, int64_t *id, sim_err *err);
// The checkpoint on the path root..head nearest to head (the newest one when
// several cover the same update); out->id == 0 when there is none.
// Checkpoints of other branches are never returned.
sim_status tree_checkpoint_latest_on_path(tree_db *db, const char *user, int64_t story, int64_t head,
                                          tree_checkpoint *out, sim_err *err);

// --- saves ---------------------------------------------------------------------------

typedef struct tree_save {
    int64_t id;
    int64_t story;
    int64_t update;     // the head saved (0: the empty story)
    char *name;
    uint8_t *thumb;     // (n_thumb) bytes, e.g. a PNG; NULL when absent (always NULL in lists)
    size_t n_thumb;
    char *state_path;   // NULL: no state file
    int64_t created;
} tree_save;

void tree_save_free(tree_save *s);
void tree_saves_free(tree_save *a, int n);

sim_status tree_save_add(tree_db *db, const char *user, int64_t story, int64_t update, const char *name,
                         const uint8_t *thumb, size_t n_thumb, const char *state_path, int64_t *id, sim_err *err);
// The saves of story, newest first, without their thumbnails.
sim_status tree_save_list(tree_db *db, const char *user, int64_t story, tree_save **out, int *n, sim_err *err);
sim_status tree_save_get(tree_db *db, const char *user, int64_t id, tree_save *out, sim_err *err);
sim_status tree_save_delete(tree_db *db, const char *user, int64_t id, sim_err *err);

// --- completion log ------------------------------------------------------------------

// One model call: what was asked and what it cost.
typedef struct tree_completion {
    int64_t id;             // set by the tree
    int64_t story;
    int64_t update;         // the update it produced, 0 = none
    char *prompt_hash;      // hex digits
    char *options;          // JSON (sampling options)
    int n_prompt_tokens;    // tokens in the prompt
    int n_reused;           // of which found in the KV cache
    int n_decoded;          // prompt tokens decoded
    int n_generated;        // tokens generated
    double ms_prompt;       // prompt processing time
    double ms_generate;     // generation time
    int64_t created;        // set by the tree
} tree_completion;

void tree_completions_free(tree_completion *a, int n);

// Records c (its id and created are ignored); *id is the new record.
sim_status tree_completion_add(tree_db *db, const char *user, int64_t story, const tree_completion *c, int64_t *id,
                               sim_err *err);
// The newest `limit` records of story, newest first.
sim_status tree_completion_list(tree_db *db, const char *user, int64_t story, int limit, tree_completion **out,
                                int *n, sim_err *err);

// --- achievements --------------------------------------------------------------------

typedef struct tree_achievement {
    char *achievement;  // the scenario's achievement id
    int64_t update;     // where it was unlocked (0: none)
    int64_t created;
} tree_achievement;

void tree_achievements_free(tree_achievement *a, int n);

// Unlocks achievement at update; unlocking it again keeps the first unlock.
sim_status tree_achievement_unlock(tree_db *db, const char *user, int64_t story, const char *achievement,
                                   int64_t update, sim_err *err);
// In unlock order.
sim_status tree_achievement_list(tree_db *db, const char *user, int64_t story, tree_achievement **out, int *n,
                                 sim_err *err);

// --- long-term memory ----------------------------------------------------------------

typedef struct tree_hit {
    int64_t id;     // the update
    double score;   // -bm25: larger is better
    char *text;
} tree_hit;

void tree_hits_free(tree_hit *a, int n);

// Full-text search over the update texts of story. The query is free text:
// it is split into words (runs of ASCII letters/digits and non-ASCII
// characters other than punctuation and symbols; invalid UTF-8 separates),
// words under 3 bytes and repeats (ignoring ASCII case) are dropped, at most TREE_MAX_QUERY_WORDS are kept, each becomes a quoted FTS5
// string and they are OR-ed — so no query text is ever FTS5 syntax. Only ids
// in allowed[0..n_allowed) are returned (the caller passes the ids of the
// current path that have left the prompt), at most `limit`, best first. A
// query with no word gives 0 hits. *out is NULL when *n is 0.
sim_status tree_memory_search(tree_db *db, const char *user, int64_t story, const char *query,
                              const int64_t *allowed, int n_allowed, int limit, tree_hit **out, int *n,
                              sim_err *err);

// The FTS5 query tree_memory_search would run for `query` (for tests and
// logs), written to buf; returns its length (0: no words), or -1 when cap
// is too small.
int tree_memory_query(const char *query, char *buf, size_t cap);

#endif
