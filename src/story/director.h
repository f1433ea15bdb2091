// director.h — the grammars that let the model direct the stage and speak.
//
// The model writes one turn of the transcript at a time:
//
//     <system> [{"setScene":{"scene":"pier"}},{"setExpression":{"character":"mira","expression":"smile"}}]
//     <mira> (00:05) You came back.
//
// The commands line is optional. The engine generates a turn in phases,
// each under a GBNF grammar built from the CURRENT stage, so every command
// is valid when it is written and is applied before the next one is
// generated (an added character can then change expression in the same
// turn):
//
//   1. open      "<system> [" (commands follow) | "<" speaker ">"
//   2. command   one command valid now, then "," (another follows) or
//                "]\n" (the speaker follows); after DIR_MAX_COMMANDS only "]\n"
//   3. speaker   "<" speaker ">"  (when the commands line ended)
//   4. the engine appends " (HH:MM) " itself (the clock is the stage's)
//   5. text      the line: 1+ characters without control characters, then "\n"
//
// Speakers are the narrator and the episode's allowed speakers who are on
// stage. Commands valid now: setScene to another scene; addCharacter for a
// character not on stage (with any of its outfits and expressions, and a
// body when it has several); removeCharacter, setExpression, setOutfit for
// one on stage (a different expression/outfit); advanceClock 1..1440 minutes
// (while the clock has room); setVariable to a different value of the
// variable's type within its bounds. Commands are written in compact JSON
// with the keys in the order above — exactly what stage_check accepts.
//
// Ownership: every function returns a new string (mem_free) or NULL when
// memory ran out.
#ifndef SIM_DIRECTOR_H
#define SIM_DIRECTOR_H

#include "base/strbuf.h"
#include "story/scenario.h"
#include "story/stage.h"

#define DIR_MAX_COMMANDS 4 // commands in one turn
#define DIR_SYSTEM "<system> ["
#define DIR_MAX_SPEAKERS (STAGE_MAX_ON_STAGE + 1)

char *dir_open_grammar(const stage *st, const scn_scenario *s);
// One command; `last`: no further command may follow. NULL also when no
// command is valid now (see dir_any_command).
char *dir_command_grammar(const stage *st, const scn_scenario *s, bool last);
char *dir_speaker_grammar(const stage *st, const scn_scenario *s);
char *dir_text_grammar(void);

// Whether any command is valid now (the open grammar offers "<system> [" only then).
bool dir_any_command(const stage *st, const scn_scenario *s);

// The speakers the model may voice now: SCN_SPEAKER_NARRATOR, then character
// indices (allowed and on stage); out needs room for DIR_MAX_SPEAKERS.
int dir_speakers(const stage *st, const scn_scenario *s, int *out);

// Integers lo..hi (lo <= hi, |lo|, |hi| <= 10^9) as a GBNF alternation of
// exact digit patterns (no leading zeros, "-" for negatives), appended to b.
void dir_int_range(sbuf *b, long long lo, long long hi);

#endif
