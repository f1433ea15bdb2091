// stage.h — what is on screen: the scene, the characters on stage (with
// their body, outfit and expression) and the story clock.
//
// The stage starts from an episode's start state and changes only through
// commands: JSON objects written by the model (through the director grammar)
// or read from the story tree. Every command is first checked against the
// scenario AND the current state, then applied:
//
//     stage st;
//     if (stage_start(&st, s, 0, &err) != SIM_OK) return err.code;
//     json_t *j = json_loads("{\"setScene\":{\"scene\":\"pier\"}}", 0, NULL);
//     stage_cmd c;
//     if (stage_check(&st, s, j, &c, &err) == SIM_OK) stage_apply(&st, &c);
//     else fprintf(stderr, "refused: %s\n", err.msg); // e.g. "setScene: 'pier' is already the current scene"
//
// Commands (exactly one key, the command name; its value an object holding
// exactly the fields below — unknown fields are refused; ids are strings):
//
//     {"setScene":        {"scene": <scene id>}}                     // not the current scene
//     {"addCharacter":    {"character": <id>,                         // not on stage yet
//                          "body": <body id>,                         //   optional: the first body
//                          "outfit": <outfit id>,                     //   optional: the first outfit
//                          "expression": <expression id>}}            //   optional: the first expression
//     {"removeCharacter": {"character": <id>}}                        // on stage
//     {"setExpression":   {"character": <id>, "expression": <id>}}   // on stage; not the current one
//     {"setOutfit":       {"character": <id>, "outfit": <id>}}       // on stage; not the current one
//     {"advanceClock":    {"minutes": <integer 1..1440>}}
//     {"setVariable":     {"variable": <id>, "value": <value>}}      // a value of its type; not the current one
//                         (an integer within min..max, true/false, or an enum value id)
//
// An added character goes to the end of the on-stage order; a removed one
// leaves the others in order.
//
// The state as JSON (stage_to_json / stage_from_json), for saves and the
// web player:
//
//     {"episode": "last-ferry", "scene": "pier", "minutes": 75, "clock": "01:15",
//      "characters": [{"character": "mira", "body": "standing",
//                      "outfit": "raincoat", "expression": "neutral"}, ...],
//      "variables": {"mira-trust": 4, "found-key": false, "weather": "storm"}}
//
// ("clock" is optional when read, and must agree with "minutes" if given; a
// variable missing from "variables" — or the whole map — reads as its default,
// so saves survive a scenario that gained variables.)
//
// Achievements: stage_holds evaluates a manifest condition on the state; the
// story engine records an achievement the first time its condition holds.
//
// Ownership: a stage is a plain value (no allocation; copy it freely). It
// holds indices into the scenario it was started with, which must outlive
// its use. stage_to_json returns a new JSON reference the caller owns.
//
// Errors: stage_check / stage_from_json / stage_start return SIM_ERR_FORMAT
// with the reason in err (prefixed by the command name) and leave their
// outputs unchanged; stage_to_json returns NULL only when memory ran out.
// stage_apply cannot fail: handing it an unchecked command is a bug (ASSERT).
#ifndef SIM_STAGE_H
#define SIM_STAGE_H

#include <jansson.h>

#include "base/base.h"
#include "story/scenario.h"

#define STAGE_MAX_ON_STAGE 32                   // characters on stage at once
#define STAGE_MAX_STEP 1440                     // minutes one advanceClock may add (a day)
#define STAGE_MAX_MINUTES (1440 * 365 * 100)    // the clock never passes 100 years
#define STAGE_CLOCK_SIZE 16                     // bytes for stage_clock_format ("HHHHHH:MM")

typedef struct stage_char {
    int character;  // into s->characters
    int body;       // into that character's bodies
    int outfit;     // into its outfits
    int expression; // into its expressions
} stage_char;

typedef struct stage {
    int episode;                          // into s->episodes: the episode started
    int scene;                            // into s->scenes
    int n_on_stage;
    stage_char on_stage[STAGE_MAX_ON_STAGE]; // (n_on_stage), in stage order (left to right)
    int minutes;                          // since the episode start, 0..STAGE_MAX_MINUTES
    int vars[SCN_MAX_VARIABLES];          // (s->n_variables) each variable's value (see scn_variable)
} stage;

typedef enum stage_cmd_kind {
    STAGE_CMD_SET_SCENE,
    STAGE_CMD_ADD_CHARACTER,
    STAGE_CMD_REMOVE_CHARACTER,
    STAGE_CMD_SET_EXPRESSION,
    STAGE_CMD_SET_OUTFIT,
    STAGE_CMD_ADVANCE_CLOCK,
    STAGE_CMD_SET_VARIABLE,
} stage_cmd_kind;

// A checked command, ids resolved. Fields a kind does not use are -1.
typedef struct stage_cmd {
    stage_cmd_kind kind;
    int scene;                         // SET_SCENE
    int character;                     // all character commands
    int body, outfit, expression;      // ADD_CHARACTER (all three); SET_OUTFIT / SET_EXPRESSION (one)
    int minutes;                       // ADVANCE_CLOCK, 1..STAGE_MAX_STEP
    int variable, value;               // SET_VARIABLE (the value as the stage holds it)
} stage_cmd;

// The stage at the start of s->episodes[episode] (clock 0). Fails only when
// the episode index is out of range or more than STAGE_MAX_ON_STAGE
// characters start on stage.
sim_status stage_start(stage *st, const scn_scenario *s, int episode, sim_err *err);

// Checks cmd against the scenario and the current state; on success fills
// *out. On refusal returns SIM_ERR_FORMAT with the reason and leaves *out
// untouched. Neither st nor cmd is changed.
sim_status stage_check(const stage *st, const scn_scenario *s, const json_t *cmd, stage_cmd *out, sim_err *err);

// Applies a command stage_check accepted for this very state.
void stage_apply(stage *st, const stage_cmd *c);

// The state as JSON (see the top); NULL when memory ran out.
json_t *stage_to_json(const stage *st, const scn_scenario *s);

// Reads a state written by stage_to_json, refusing anything inconsistent
// with the scenario (unknown ids, a character twice, too many characters,
// a clock out of range, unknown fields). *st is changed only on success.
sim_status stage_from_json(stage *st, const scn_scenario *s, const json_t *j, sim_err *err);

// Whether condition c (from s's achievements) holds in st.
bool stage_holds(const stage *st, const scn_scenario *s, const scn_cond *c);

// Variable i's value as JSON (a new reference: integer, boolean or enum id); NULL when memory ran out.
json_t *stage_var_json(const stage *st, const scn_scenario *s, int i);

// "HH:MM" for a minute count (hours are not wrapped: 1500 -> "25:00").
void stage_clock_format(int minutes, char buf[STAGE_CLOCK_SIZE]);

// Where character c stands in st->on_stage, or -1 when it is not on stage.
int stage_find(const stage *st, int character);

// --- what can be done now (for the director grammar) --------------------------------
// Each writes indices in ascending order into out and returns how many; out
// needs room for the scenario's count (n_scenes, n_characters, n_outfits,
// n_expressions of that character).

int stage_settable_scenes(const stage *st, const scn_scenario *s, int *out);     // every scene but the current
int stage_addable_characters(const stage *st, const scn_scenario *s, int *out);  // not on stage (none when full)
// The outfits / expressions an on-stage character can switch to (all but the
// current one); 0 when the character is not on stage.
int stage_switchable_outfits(const stage *st, const scn_scenario *s, int character, int *out);
int stage_switchable_expressions(const stage *st, const scn_scenario *s, int character, int *out);

#endif
