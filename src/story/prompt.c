// prompt.c — the writer prompt's text (see prompt.h).
#include "story/prompt.h"

#include <ctype.h>
#include <stdlib.h>
#include <string.h>

#include "story/director.h"

static const char *T(const scn_scenario *s, const scn_text_map *t, const char *locale) {
    const char *x = scn_text(s, t, locale);
    return x ? x : "";
}

static void var_kind(sbuf *b, const scn_variable *x) {
    switch (x->type) {
    case SCN_VAR_INT: sb_printf(b, "an integer %d..%d", x->min, x->max); break;
    case SCN_VAR_BOOL: sb_str(b, "true or false"); break;
    case SCN_VAR_ENUM:
        sb_str(b, "one of");
        for (int i = 0; i < x->n_values; i++) sb_printf(b, "%s \"%s\"", i ? "," : "", x->values[i]);
        break;
    }
}

char *prm_setup(const scn_scenario *s, int episode, const char *locale) {
    sbuf b = {0};
    const scn_episode *e = &s->episodes[episode];
    sb_printf(&b, "# %s\n%s\n\n", T(s, &s->name, locale), T(s, &s->about, locale));
    sb_str(&b, "This is the transcript of an interactive story. Each line is \"<speaker> (HH:MM) text\": the speaker is "
               "\"narrator\", \"player\" or a character id, then the story clock. Stage changes come first, on a line "
               "\"<system> [commands]\" with the commands as JSON: setScene {\"scene\"}, addCharacter {\"character\", "
               "\"outfit\", \"expression\"}, removeCharacter {\"character\"}, setExpression {\"character\", "
               "\"expression\"}, setOutfit {\"character\", \"outfit\"}, advanceClock {\"minutes\"}, setVariable "
               "{\"variable\", \"value\"}.\n\n");
    sb_printf(&b, "# Setting\n%s\n\n", T(s, &s->global_scenario, locale));
    if (s->instructions.v) sb_printf(&b, "# Instructions\n%s\n\n", T(s, &s->instructions, locale));
    sb_printf(&b, "# The player: %s\n%s\n", T(s, &s->player.name, locale), T(s, &s->player.about, locale));
    if (s->player.appearance.v) sb_printf(&b, "Appearance: %s\n", T(s, &s->player.appearance, locale));
    sb_str(&b, "\n# Characters\n");
    for (int i = 0; i < s->n_characters; i++) {
        const scn_character *c = &s->characters[i];
        sb_printf(&b, "## %s: %s\n%s\nPersonality: %s\nAppearance: %s\n", c->id, T(s, &c->name, locale),
                  T(s, &c->about, locale), T(s, &c->personality, locale), T(s, &c->appearance, locale));
        for (int k = 0; k < c->n_relationships; k++)
            sb_printf(&b, "About %s: %s\n", c->relationships[k].to, T(s, &c->relationships[k].text, locale));
        sb_str(&b, "Outfits:");
        for (int k = 0; k < c->n_outfits; k++) {
            sb_printf(&b, "%s %s (%s", k ? ";" : "", c->outfits[k].id, T(s, &c->outfits[k].name, locale));
            if (c->outfits[k].description.v) sb_printf(&b, ": %s", T(s, &c->outfits[k].description, locale));
            sb_str(&b, ")");
        }
        sb_str(&b, "\nExpressions:");
        for (int k = 0; k < c->n_expressions; k++) sb_printf(&b, "%s %s", k ? "," : "", c->expressions[k].id);
        sb_str(&b, "\n");
        bool speaks = false;
        for (int k = 0; k < e->n_allowed_speakers; k++) speaks |= e->allowed_speakers[k] == i;
        if (!speaks) sb_str(&b, "(Does not speak in this episode.)\n");
    }
    sb_str(&b, "\n# Scenes\n");
    for (int i = 0; i < s->n_scenes; i++) {
        const scn_scene *sc = &s->scenes[i];
        sb_printf(&b, "## %s: %s\n%s\n", sc->id, T(s, &sc->name, locale), T(s, &sc->prompt, locale));
    }
    if (s->n_variables > 0) {
        sb_str(&b, "\n# Variables\n");
        for (int i = 0; i < s->n_variables; i++) {
            const scn_variable *x = &s->variables[i];
            sb_printf(&b, "- %s: %s (", x->id, T(s, &x->name, locale));
            var_kind(&b, x);
            sb_str(&b, ")\n");
        }
    }
    bool lore = false;
    for (int i = 0; i < s->n_lore; i++)
        if (s->lore[i].position == SCN_LORE_SETUP) {
            if (!lore) sb_str(&b, "\n# Lore\n");
            lore = true;
            sb_printf(&b, "- %s\n", T(s, &s->lore[i].text, locale));
        }
    sb_str(&b, "\n");
    return sb_take(&b);
}

char *prm_summary(const char *summary) {
    sbuf b = {0};
    if (summary && *summary) sb_printf(&b, "# Earlier\n%s\n\n", summary);
    sb_str(&b, "# Transcript\n");
    return sb_take(&b);
}

void prm_update(sbuf *b, const char *commands, const char *speaker, int minutes, const char *text) {
    if (commands && strcmp(commands, "[]") != 0) sb_printf(b, "%s%s\n", DIR_SYSTEM, commands + 1);
    char clock[STAGE_CLOCK_SIZE];
    stage_clock_format(minutes, clock);
    sb_printf(b, "<%s> (%s) %s\n", speaker, clock, text);
}

void prm_now(sbuf *b, const stage *st, const scn_scenario *s, const char *locale) {
    char clock[STAGE_CLOCK_SIZE];
    stage_clock_format(st->minutes, clock);
    sb_printf(b, "<system> Now: %s (%s); ", s->scenes[st->scene].id, T(s, &s->scenes[st->scene].name, locale));
    if (st->n_on_stage == 0) sb_str(b, "nobody on stage");
    else sb_str(b, "on stage:");
    for (int i = 0; i < st->n_on_stage; i++) {
        const stage_char *c = &st->on_stage[i];
        const scn_character *ch = &s->characters[c->character];
        sb_printf(b, "%s %s (%s, %s)", i ? "," : "", ch->id, ch->outfits[c->outfit].id, ch->expressions[c->expression].id);
    }
    sb_printf(b, "; time %s", clock);
    for (int i = 0; i < s->n_variables; i++) {
        const scn_variable *x = &s->variables[i];
        sb_printf(b, "%s %s ", i ? "," : ";", x->id);
        if (x->type == SCN_VAR_INT) sb_printf(b, "%d", st->vars[i]);
        else if (x->type == SCN_VAR_BOOL) sb_str(b, st->vars[i] ? "true" : "false");
        else sb_str(b, x->values[st->vars[i]]);
    }
    sb_str(b, "\n");
}

// Whether key occurs in text as a whole word (no letter or digit either side).
static bool has_word(const char *text, const char *key, bool case_sensitive) {
    size_t kl = strlen(key);
    if (kl == 0) return false;
    for (const char *p = text; *p; p++) {
        bool match = case_sensitive ? strncmp(p, key, kl) == 0 : strncasecmp(p, key, kl) == 0;
        if (!match) continue;
        bool left = p == text || !isalnum((unsigned char)p[-1]);
        bool right = !isalnum((unsigned char)p[kl]);
        if (left && right) return true;
    }
    return false;
}

int prm_lore_active(const scn_scenario *s, const char *text, int *out) {
    int n = 0;
    for (int i = 0; i < s->n_lore; i++) {
        const scn_lore *l = &s->lore[i];
        if (l->position != SCN_LORE_RECENT) continue;
        for (int k = 0; k < l->n_keys; k++)
            if (has_word(text, l->keys[k], l->case_sensitive)) {
                out[n++] = i;
                break;
            }
    }
    // Insertion sort by priority (descending), stable: lists are short.
    for (int i = 1; i < n; i++)
        for (int k = i; k > 0 && s->lore[out[k]].priority > s->lore[out[k - 1]].priority; k--) {
            int t = out[k];
            out[k] = out[k - 1];
            out[k - 1] = t;
        }
    return n;
}
