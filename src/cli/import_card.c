// import_card.c — `simularity import-card CARD DIR`: a SillyTavern card
// (JSON or PNG) into a scenario folder, as a new scenario or an added
// character (src/story/import.h).
//
// Notes (what could not be kept as it was) go to stderr; the result is then
// validated like `simularity check`: every problem on stderr and exit 1, or
// a one-line summary on stdout and exit 0.
#include <string.h>

#include "cli/cli.h"
#include "story/import.h"
#include "story/scenario.h"

int cmd_import_card(int argc, char **argv) {
    const char *id = NULL;
    const cli_opt opts[] = {
        {"--id", OPT_STR, &id, "the character's id (default: from the card's name)"},
    };
    const char *pos[2];
    int n_pos, rc;
    if ((rc = cli_parse("import-card CARD DIR [--id ID]\n"
                        "  Imports a SillyTavern card (V1/V2/V3, .json or .png) into the scenario folder DIR:\n"
                        "  adds the character to DIR/manifest.json, or writes a new scenario when DIR is new or empty.",
                        argc, argv, opts, (int)ARRAY_LEN(opts), pos, 2, &n_pos)))
        return rc;
    if (n_pos != 2) return cli_fail("import-card: give a card file and a scenario folder (see --help)");
    imp_result r;
    sim_err err;
    if (imp_card(pos[0], pos[1], id, &r, &err) != SIM_OK) return cli_fail("%s", err.msg);
    for (int i = 0; i < r.n_notes; i++) fprintf(stderr, "note: %s\n", r.notes[i]);

    scn_report rep;
    scn_report_init(&rep);
    scn_scenario *s;
    if (scn_load(&s, pos[1], &rep, &err) != SIM_OK) {
        for (int i = 0; i < rep.n; i++) {
            const scn_problem *p = &rep.items[i];
            fprintf(stderr, "%s/manifest.json: %s%s%s (fix: %s)\n", pos[1], p->path, p->path[0] ? ": " : "", p->msg, p->hint);
        }
        if (rep.n == 0) fprintf(stderr, "simularity: %s\n", err.msg);
        scn_report_free(&rep);
        return 1;
    }
    scn_report_free(&rep);
    if (r.created)
        printf("created %s: scenario '%s' with character '%s', %d episode%s, %d lore entr%s\n", pos[1], s->id, r.id, r.n_episodes,
               r.n_episodes == 1 ? "" : "s", r.n_lore, r.n_lore == 1 ? "y" : "ies");
    else
        printf("added character '%s' to %s (%d characters now), %d lore entr%s\n", r.id, pos[1], s->n_characters, r.n_lore,
               r.n_lore == 1 ? "y" : "ies");
    scn_free(s);
    return 0;
}
