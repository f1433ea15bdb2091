// prompt.h — the writer prompt's text, laid out stable-first.
//
//     setup      what never changes in a story: the format, the setting,
//                hidden instructions, the player, the characters (outfits,
//                expressions, relationships, variables), the scenes, the
//                variables, and the lore entries with position "setup"
//     summary    "# Earlier" + the latest checkpoint's summary (changes only
//                when the story is consolidated)
//     transcript "# Transcript" + one block per update:
//                    <system> [commands as JSON]        (when it has commands)
//                    <speaker> (HH:MM) text
//     volatile   a few "<system> ..." lines rebuilt every turn: memories
//                recalled from earlier in the story, lore whose keys appear in
//                recent lines, and the stage now
//
// Appending a turn only appends to the transcript, so everything before the
// volatile part stays cached. The model's turn follows the volatile part.
//
// Ownership: every function returns a new string (mem_free), NULL when
// memory ran out.
#ifndef SIM_PROMPT_H
#define SIM_PROMPT_H

#include "base/strbuf.h"
#include "story/scenario.h"
#include "story/stage.h"

char *prm_setup(const scn_scenario *s, int episode, const char *locale);

// "# Earlier\n<summary>\n\n# Transcript\n" (no "Earlier" part when summary is NULL or empty).
char *prm_summary(const char *summary);

// Appends one update's transcript block (commands may be NULL or "[]").
void prm_update(sbuf *b, const char *commands, const char *speaker, int minutes, const char *text);

// The "<system> Now: ..." line: scene, characters on stage with outfit and
// expression, the clock, and every variable.
void prm_now(sbuf *b, const stage *st, const scn_scenario *s, const char *locale);

// Lore entries (position "recent") whose keys appear as whole words in
// text, best priority first (ties: manifest order); returns how many were
// written into out (room for s->n_lore).
int prm_lore_active(const scn_scenario *s, const char *text, int *out);

#endif
