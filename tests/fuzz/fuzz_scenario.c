// fuzz_scenario.c — libFuzzer target for scenario manifests: the input is
// written as manifest.json into a scratch folder that holds a few assets
// (a.png = "a", b/c.ogg = "c", a link out of the folder, a FIFO).
//   - scn_load must accept it or report at least one problem — never crash,
//     hang or leak;
//   - an accepted scenario keeps its promises: en-US among the locales, every
//     required text present in every locale, every index in range.
// Build and run: make fuzz && build/fuzz/fuzz_scenario tests/fuzz/corpus-scenario
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "base/file.h"
#include "story/scenario.h"

static char g_dir[64];

static void setup(void) {
    snprintf(g_dir, sizeof g_dir, "/tmp/fuzz_scenario_XXXXXX");
    if (!mkdtemp(g_dir)) abort();
    char p[128];
    sim_err err;
    snprintf(p, sizeof p, "%s/a.png", g_dir);
    file_write_all(p, "a", 1, &err);
    snprintf(p, sizeof p, "%s/b", g_dir);
    mkdir(p, 0755);
    snprintf(p, sizeof p, "%s/b/c.ogg", g_dir);
    file_write_all(p, "c", 1, &err);
    snprintf(p, sizeof p, "%s/out", g_dir);
    if (symlink("/etc/hostname", p) != 0) perror("symlink");
    snprintf(p, sizeof p, "%s/fifo", g_dir);
    if (mkfifo(p, 0644) != 0) perror("mkfifo");
}

static void check_text(const scn_scenario *s, const scn_text_map *t, bool required) {
    if (!t->v) {
        if (required) abort();
        return;
    }
    for (int i = 0; i < s->n_locales; i++)
        if (!t->v[i]) abort();
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    if (!g_dir[0]) setup();
    char p[128];
    sim_err err;
    snprintf(p, sizeof p, "%s/manifest.json", g_dir);
    if (file_write_all(p, data, size, &err) != SIM_OK) abort();
    scn_report rep;
    scn_report_init(&rep);
    scn_scenario *s = NULL;
    sim_status rc = scn_load(&s, g_dir, &rep, &err);
    if (rc != SIM_OK) {
        if (s || (rep.n == 0 && rc != SIM_ERR_NOMEM)) abort();
        for (int i = 0; i < rep.n; i++)
            if (!rep.items[i].msg[0] || !rep.items[i].hint[0]) abort();
        scn_report_free(&rep);
        return 0;
    }
    if (rep.n || !s) abort();
    bool en = false;
    for (int i = 0; i < s->n_locales; i++) en |= strcmp(s->locales[i], "en-US") == 0;
    if (!en) abort();
    check_text(s, &s->name, true);
    check_text(s, &s->global_scenario, true);
    for (int i = 0; i < s->n_characters; i++) {
        const scn_character *c = &s->characters[i];
        check_text(s, &c->name, true);
        if (c->n_bodies < 1 || c->n_outfits < 1 || c->n_expressions < 1) abort();
        for (int k = 0; k < c->n_relationships; k++)
            if (c->relationships[k].to_index < 0 || c->relationships[k].to_index >= s->n_characters) abort();
        for (int k = 0; k < c->n_outfits; k++)
            for (int b = 0; b < c->n_bodies; b++)
                if (!c->outfits[k].layers[b].image.path) abort();
    }
    for (int i = 0; i < s->n_episodes; i++) {
        const scn_episode *e = &s->episodes[i];
        if (e->start_scene_index < 0 || e->start_scene_index >= s->n_scenes) abort();
        for (int k = 0; k < e->n_on_stage; k++) {
            const scn_stage_character *st = &e->on_stage[k];
            if (st->index < 0 || st->index >= s->n_characters) abort();
            const scn_character *c = &s->characters[st->index];
            if (st->body_index < 0 || st->body_index >= c->n_bodies || st->outfit_index < 0 ||
                st->outfit_index >= c->n_outfits || st->expression_index < 0 || st->expression_index >= c->n_expressions)
                abort();
        }
        for (int k = 0; k < e->n_allowed_speakers; k++)
            if (e->allowed_speakers[k] < 0 || e->allowed_speakers[k] >= s->n_characters) abort();
    }
    scn_free(s);
    scn_report_free(&rep);
    return 0;
}
