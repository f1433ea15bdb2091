// import.h — a SillyTavern character card (V1/V2/V3, JSON or PNG) imported
// into a scenario folder as a character (docs/scenario-format.md).
//
//     imp_result r;
//     sim_err err;
//     if (imp_card("alice.png", "scenarios/alice", NULL, &r, &err) != SIM_OK) {
//         fprintf(stderr, "%s\n", err.msg); // nothing was changed in the manifest
//         return 1;
//     }
//     for (int i = 0; i < r.n_notes; i++) fprintf(stderr, "note: %s\n", r.notes[i]);
//
// Two cases:
//   - DIR/manifest.json exists: the character (and its lorebook) is added to
//     it; everything else in the manifest is kept as it was (key order too).
//     An id already taken is refused (pass another as id).
//   - DIR does not exist or is empty: a new minimal scenario is written
//     around the card: one scene "default" with a plain generated background,
//     the player "You", one episode per greeting (first_mes, then each
//     alternate greeting) in which the character speaks it.
// The character: id from its name (a slug; "character<N>" when the name has
// no letters to slug), a colour from a hash of its name, about = description,
// personality, appearance = description (noted), one body = the PNG card
// itself (characters/<id>/card.png) or a generated SVG placeholder for a
// JSON card (noted), one outfit "default" and one expression "neutral" whose
// layer is a transparent 1x1 SVG. Every text is copied into every locale of
// the manifest. The lorebook becomes "lore" entries (constant → "setup",
// others → "recent", insertion_order → priority; disabled, regex and keyless
// entries skipped, secondary keys dropped, all noted), at most IMP_MAX_LORE.
//
// The manifest is written atomically (manifest.json.tmp, fsync, rename): on
// any error the old manifest is untouched (asset files may have been
// written). imp_card does not validate the result: call scn_load after it.
// The manifest editing and atomic writes are story/manifest.h's.
// Errors: SIM_ERR_IO (files), SIM_ERR_FORMAT/UNSUPPORTED/RANGE (the card or
// the existing manifest), SIM_ERR_ARG (an id that is taken or invalid),
// SIM_ERR_NOMEM; err names the file and the problem. Never prints.
#ifndef SIM_IMPORT_H
#define SIM_IMPORT_H

#include "base/base.h"

#define IMP_MAX_LORE 1000 // lore entries written from one card
#define IMP_MAX_NOTES 16

typedef struct imp_result {
    char id[68];        // the character's id
    bool created;       // a new scenario was written (else the character was added)
    int n_episodes;     // episodes written (new scenario)
    int n_lore;         // lore entries written
    char notes[IMP_MAX_NOTES][300]; // what the import could not keep as it was
    int n_notes;
} imp_result;

// Imports the card file card_path into the scenario folder dir. id, when not
// NULL, is the character's id instead of the one derived from its name.
sim_status imp_card(const char *card_path, const char *dir, const char *id, imp_result *res, sim_err *err);

// The id derived from a name: lowercase ASCII letters and digits, other runs
// as one '-', at most 64 bytes, starting with a letter; "" when nothing is left.
void imp_slug(const char *name, char out[65]);

#endif
