// engine.h — a story being played: the scenario, its tree in the database,
// the stage, and a session on the model that never re-processes what it
// holds.
//
//     eng_params p = eng_default_params();
//     eng *e;
//     if (eng_create(&e, scn, db, ctx, &p, 0 /* episode */, "My story", &err) != SIM_OK) ...
//     eng_on_event(e, print_event, NULL);
//     eng_advance(e, &err);                 // the model writes the next line
//     eng_say(e, "Hello, Edda.", &err);     // the player writes one
//     eng_regenerate(e, &err);              // a new variant of the last model line
//     eng_save(e, "before the storm", NULL, 0, &id, &err);   // with a KV state file
//     eng_free(e);
//     ... later: eng_open(&e, scn, db, ctx, &p, story_id, &err) resumes with no prompt re-processing
//
// A model turn (see director.h) is generated phase by phase under grammars
// built from the current stage; each command is checked and applied as it
// arrives (ENG_EV_COMMAND), then the speaker, then the text streams
// (ENG_EV_TEXT), and the update is stored (ENG_EV_LINE).
//
// The prompt (see prompt.h): setup, summary, transcript, volatile. When it
// outgrows the budget (n_ctx minus the turn's reserve) the engine
// consolidates: the model summarizes the oldest half of the transcript (and
// the previous summary) under a one-line grammar, and the summary becomes a
// checkpoint (ENG_EV_CHECKPOINT) after which the transcript restarts. Lore
// entries whose keys appear in the last lines and memories recalled by
// full-text search from lines before the checkpoint go in the volatile part,
// each within its token budget.
//
// Ownership: the engine borrows the scenario, the database and the context
// (which must outlive it); it owns its session, which uses sequence 0 of the
// context. Not thread-safe: one caller at a time.
//
// Errors: precise messages; a failed operation leaves the tree and the stage
// as they were (a model turn is stored only when it is complete).
#ifndef SIM_ENGINE_H
#define SIM_ENGINE_H

#include "infer/sample.h"
#include "model/forward.h"
#include "story/scenario.h"
#include "story/stage.h"
#include "story/tree.h"

typedef struct eng_params {
    const char *locale;    // texts in this locale ("en-US")
    const char *user;      // the stories' owner (NULL: none)
    smp_params sampling;   // seed: each model turn uses seed + the number of completions logged
    int max_line_tokens;   // most tokens of one line's text (96)
    int reserve;           // tokens kept free for the turn (256)
    int lore_window;       // lines scanned for lore keys (4)
    int memory_hits;       // memories recalled per turn (3)
    int memory_budget;     // tokens of memories (160)
    const char *state_dir; // where KV state files go (NULL: saves have none)
} eng_params;

eng_params eng_default_params(void);

typedef enum eng_event_kind {
    ENG_EV_PROGRESS,    // done / total prompt tokens processed
    ENG_EV_COMMAND,     // text: a stage command (JSON) just applied
    ENG_EV_SPEAKER,     // text: the speaker id of the line being written
    ENG_EV_TEXT,        // text: more of the line
    ENG_EV_LINE,        // update: stored; variant / n_variants among its siblings
    ENG_EV_CHECKPOINT,  // text: the new summary; update: the last update it covers (only id set)
    ENG_EV_ACHIEVEMENT, // text: the achievement id just unlocked
} eng_event_kind;

typedef struct eng_event {
    eng_event_kind kind;
    int done, total;
    const char *text;
    size_t len;
    const tree_update *update;
    int variant, n_variants; // 1-based
} eng_event;

typedef void (*eng_event_fn)(void *ud, const eng_event *ev);

// What the last model turn cost.
typedef struct eng_turn_stats {
    int n_prompt;   // prompt tokens (setup .. volatile)
    int n_reused;   // found in the KV cache
    int n_prompt_decoded; // prompt tokens processed before the turn (what was not cached)
    int n_decoded;  // tokens processed in all (the phases' forced text and re-evaluations included)
    int n_generated;
    double ms_prompt, ms_generate, ms_first_token; // ms_first_token: from the call to the first sampled token
} eng_turn_stats;

typedef struct eng eng;

// A new story of episode `episode`, with its scripted opening lines stored.
sim_status eng_create(eng **out, const scn_scenario *s, tree_db *db, fwd_ctx *ctx, const eng_params *p, int episode,
                      const char *title, sim_err *err);
// An existing story; when a save or checkpoint of its current head has a
// state file that still matches, the session starts from it.
sim_status eng_open(eng **out, const scn_scenario *s, tree_db *db, fwd_ctx *ctx, const eng_params *p, int64_t story,
                    sim_err *err);
void eng_free(eng *e);

void eng_on_event(eng *e, eng_event_fn fn, void *ud);
// The sampling of the next model turns and the most tokens of a line.
void eng_set_sampling(eng *e, const smp_params *sp, int max_line_tokens);

sim_status eng_advance(eng *e, sim_err *err);
sim_status eng_say(eng *e, const char *text, sim_err *err);
sim_status eng_regenerate(eng *e, sim_err *err);
sim_status eng_choose(eng *e, int64_t update, sim_err *err);
sim_status eng_edit(eng *e, int64_t update, const char *text, sim_err *err);
sim_status eng_rewind(eng *e, int64_t update, sim_err *err);
sim_status eng_thumbs(eng *e, int64_t update, int thumbs, sim_err *err);
// Processes the next turn's prompt now (what eng_advance would start with);
// then saves with a state file when params.state_dir is set.
sim_status eng_prepare(eng *e, sim_err *err);
// thumb: n_thumb bytes of an image (a PNG) shown with the save, or NULL.
sim_status eng_save(eng *e, const char *name, const uint8_t *thumb, size_t n_thumb, int64_t *save_id, sim_err *err);
// A new story (owned by the same user) whose path is a copy of this one's up
// to the head; open it with eng_open.
sim_status eng_fork(eng *e, const char *title, int64_t *story, sim_err *err);

int64_t eng_story(const eng *e);
const stage *eng_stage(const eng *e);
// The current path root..head (borrowed until the next operation).
const tree_update *eng_path(const eng *e, int *n);
const eng_turn_stats *eng_last_turn(const eng *e);
// The session (for logits after eng_prepare, and statistics).
struct sess *eng_session(const eng *e);
// The prompt text of the next turn (mem_free), for inspection.
char *eng_prompt_text(eng *e);

#endif
