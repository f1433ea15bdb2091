// check.c — `simularity check DIR`: validate a scenario pack.
//
// Every problem goes to stderr on its own line, "DIR/manifest.json: PATH:
// MESSAGE (fix: HINT)", and the exit code is 1; a valid pack prints a summary
// to stdout and exits 0.
#include <string.h>

#include "cli/cli.h"
#include "story/scenario.h"

int cmd_check(int argc, char **argv) {
    const char *pos[1];
    int n_pos, rc;
    if ((rc = cli_parse("check DIR", argc, argv, NULL, 0, pos, 1, &n_pos))) return rc;
    if (n_pos != 1) return cli_fail("check: give one scenario folder");
    const char *dir = pos[0];
    scn_report rep;
    scn_report_init(&rep);
    scn_scenario *s;
    sim_err err;
    sim_status st = scn_load(&s, dir, &rep, &err);
    if (st != SIM_OK) {
        if (rep.n == 0) {
            scn_report_free(&rep);
            return cli_fail("%s", err.msg);
        }
        for (int i = 0; i < rep.n; i++) {
            const scn_problem *p = &rep.items[i];
            fprintf(stderr, "%s/manifest.json: %s%s%s (fix: %s)\n", dir, p->path, p->path[0] ? ": " : "", p->msg, p->hint);
        }
        if (rep.n_dropped) fprintf(stderr, "%s/manifest.json: and %d more problems\n", dir, rep.n_dropped);
        scn_report_free(&rep);
        return 1;
    }
    scn_report_free(&rep);
    printf("scenario:    %s (%s)\n", scn_text(s, &s->name, "en-US"), s->id);
    printf("version:     %s (format %d)\n", s->scenario_version, s->version);
    printf("locales:    ");
    for (int i = 0; i < s->n_locales; i++) printf(" %s", s->locales[i]);
    printf("\ncontent:     %s; recommended context %d tokens\n", s->nsfw ? "nsfw" : "sfw", s->context_size);
    printf("characters:  %d\nlocations:   %d\nscenes:      %d\nepisodes:    %d\n", s->n_characters, s->n_locations,
           s->n_scenes, s->n_episodes);
    printf("variables:   %d\nachievements: %d\nlore:        %d entries (budget %d tokens)\n", s->n_variables,
           s->n_achievements, s->n_lore, s->lore_budget);
    printf("assets:      %d files, %llu bytes, every sha256 matches\n", s->n_assets, (unsigned long long)s->asset_bytes);
    printf("ok\n");
    scn_free(s);
    return 0;
}
