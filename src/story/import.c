// import.c — SillyTavern cards into scenario folders (see import.h).
//
// The manifest is built as a Jansson tree (the existing one, loaded, or a
// new one), the asset files are written first, and the manifest last with a
// rename (story/manifest.h), so a failure at any step leaves the old
// manifest as it was.
#include "story/import.h"

#include <dirent.h>
#include <errno.h>
#include <jansson.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/stat.h>

#include "base/file.h"
#include "story/card.h"
#include "story/manifest.h"
#include "story/scenario.h"

// --- small helpers ---------------------------------------------------------------------------

__attribute__((format(printf, 2, 3))) static void note(imp_result *r, const char *fmt, ...) {
    if (r->n_notes >= IMP_MAX_NOTES) return;
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(r->notes[r->n_notes++], sizeof r->notes[0], fmt, ap);
    va_end(ap);
}

// Latin-1 letters U+00C0..U+00FF without their accents ('-': not a letter).
static const char LATIN1[] = "aaaaaaaceeeeiiiidnooooo-ouuuuyts" "aaaaaaaceeeeiiiidnooooo-ouuuuyty";

void imp_slug(const char *name, char out[65]) {
    size_t n = 0;
    bool dash = false;
    for (const unsigned char *s = (const unsigned char *)name; *s && n < 64; s++) {
        char c = (char)*s;
        if (s[0] == 0xC3 && s[1] >= 0x80 && s[1] <= 0xBF) c = LATIN1[*++s - 0x80]; // U+00C0..U+00FF
        if (c >= 'A' && c <= 'Z') c = (char)(c - 'A' + 'a');
        bool ok = (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9');
        if (!ok) {
            dash = n > 0;
            continue;
        }
        if (n == 0 && !(c >= 'a' && c <= 'z')) continue; // ids start with a letter
        if (dash && n < 63) out[n++] = '-';
        dash = false;
        out[n++] = c;
    }
    out[n] = 0;
}

// A text in every locale of the manifest: {"en-US": s, ...}, a cut noted
// (what = "" or NULL: not noted). NULL on no memory.
static json_t *text(imp_result *r, json_t *locales, const char *what, const char *s) {
    bool cut;
    json_t *t = mf_text(locales, s, &cut);
    if (t && cut && what && what[0])
        note(r, "%s was cut to %zu bytes (the limit of a scenario text)", what,
             json_string_length(json_object_iter_value(json_object_iter(t))));
    return t;
}

// Like text() but with {{char}} and {{user}} expanded.
static json_t *text_x(imp_result *r, json_t *locales, const char *what, const char *s, const char *cn, const char *un) {
    char *x = card_expand(s, cn, un);
    if (!x) return NULL;
    json_t *t = text(r, locales, what, x);
    mem_free(x);
    return t;
}

// --- generated images --------------------------------------------------------------------------

static const char OVERLAY_SVG[] =
    "<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"1\" height=\"1\" viewBox=\"0 0 1 1\"/>\n";

static void placeholder_svg(char *out, size_t cap, uint32_t color) {
    snprintf(out, cap,
             "<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"400\" height=\"800\" viewBox=\"0 0 400 800\">\n"
             "  <!-- a placeholder silhouette written by `simularity import-card`: replace it with the character's art -->\n"
             "  <circle cx=\"200\" cy=\"150\" r=\"90\" fill=\"#%06x\" opacity=\"0.6\"/>\n"
             "  <path d=\"M60 800 C60 420 110 270 200 270 C290 270 340 420 340 800 Z\" fill=\"#%06x\" opacity=\"0.6\"/>\n"
             "  <text x=\"200\" y=\"560\" font-family=\"sans-serif\" font-size=\"28\" text-anchor=\"middle\" fill=\"#ffffff\">placeholder</text>\n"
             "</svg>\n",
             color, color);
}

static const char BACKGROUND_SVG[] =
    "<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"1280\" height=\"720\" viewBox=\"0 0 1280 720\">\n"
    "  <!-- a plain background written by `simularity import-card`: replace it with the scene's art -->\n"
    "  <defs><linearGradient id=\"g\" x1=\"0\" y1=\"0\" x2=\"0\" y2=\"1\">\n"
    "    <stop offset=\"0\" stop-color=\"#4a5568\"/><stop offset=\"1\" stop-color=\"#1a202c\"/>\n"
    "  </linearGradient></defs>\n"
    "  <rect width=\"1280\" height=\"720\" fill=\"url(#g)\"/>\n"
    "</svg>\n";

// --- the manifest ---------------------------------------------------------------------------------

// The lorebook as "lore" entries appended to lore.
static sim_status add_lore(imp_result *r, const card *c, const char *cid, json_t *locales, json_t *lore, const char *cn,
                           const char *un, sim_err *err) {
    int skipped_disabled = 0, skipped_regex = 0, skipped_nokey = 0, dropped_secondary = 0, dropped_keys = 0;
    for (int i = 0; i < c->n_entries; i++) {
        const card_entry *e = &c->entries[i];
        if (!e->enabled) { skipped_disabled++; continue; }
        if (e->use_regex) { skipped_regex++; continue; }
        if (r->n_lore >= IMP_MAX_LORE || json_array_size(lore) >= SCN_MAX_ITEMS) {
            note(r, "only %d lorebook entries were imported (the limit); %d more were left out", r->n_lore, c->n_entries - i);
            break;
        }
        json_t *keys = json_array();
        if (!keys) return err_set(err, SIM_ERR_NOMEM, "out of memory");
        for (int k = 0; k < e->n_keys; k++) {
            if (!e->keys[k][0] || strlen(e->keys[k]) > 100 || json_array_size(keys) >= SCN_MAX_ITEMS) { dropped_keys++; continue; }
            json_array_append_new(keys, json_string(e->keys[k]));
        }
        if (!e->constant && json_array_size(keys) == 0) {
            json_decref(keys);
            skipped_nokey++;
            continue;
        }
        if (e->n_secondary_keys) dropped_secondary++;
        // The id: <character>-<slug of the entry's name or comment>, else <character>-lore-<n>; made unique.
        char slug[65], id[80], base[80];
        imp_slug(e->name[0] ? e->name : e->comment, slug);
        if (slug[0]) snprintf(base, sizeof base, "%.30s-%.30s", cid, slug);
        else snprintf(base, sizeof base, "%.30s-lore-%d", cid, i + 1);
        snprintf(id, sizeof id, "%s", base);
        for (int k = 2; mf_find(lore, id); k++) snprintf(id, sizeof id, "%.58s-%d", base, k);
        int64_t pr = e->insertion_order;
        if (pr > 1000000) pr = 1000000;
        if (pr < -1000000) pr = -1000000;
        char what[100];
        snprintf(what, sizeof what, "lorebook entry %d", i + 1);
        json_t *t = text_x(r, locales, what, e->content, cn, un);
        json_t *o = t ? json_pack("{s:s, s:o, s:o, s:s, s:I, s:b}", "id", id, "keys", keys, "text", t, "position",
                                  e->constant ? "setup" : "recent", "priority", (json_int_t)pr, "caseSensitive", e->case_sensitive)
                      : NULL;
        if (!t) json_decref(keys);
        if (!o || json_array_append_new(lore, o) != 0) return err_set(err, SIM_ERR_NOMEM, "out of memory");
        r->n_lore++;
    }
    if (skipped_disabled) note(r, "%d disabled lorebook entr%s skipped", skipped_disabled, skipped_disabled == 1 ? "y was" : "ies were");
    if (skipped_regex) note(r, "%d lorebook entr%s with regular-expression keys skipped (lore keys are plain words)", skipped_regex, skipped_regex == 1 ? "y" : "ies");
    if (skipped_nokey) note(r, "%d lorebook entr%s without a usable key skipped", skipped_nokey, skipped_nokey == 1 ? "y" : "ies");
    if (dropped_secondary) note(r, "secondary keys of %d lorebook entr%s dropped (lore entries have one key list)", dropped_secondary, dropped_secondary == 1 ? "y" : "ies");
    if (dropped_keys) note(r, "%d empty or over-long (> 100 bytes) lorebook keys dropped", dropped_keys);
    return SIM_OK;
}

static const uint8_t PNG_SIG[8] = {0x89, 'P', 'N', 'G', '\r', '\n', 0x1a, '\n'};

// Whether dir is missing or an empty folder.
static bool dir_empty(const char *dir, bool *exists) {
    DIR *d = opendir(dir);
    *exists = d != NULL || errno != ENOENT;
    if (!d) return !*exists;
    struct dirent *e;
    bool empty = true;
    while (empty && (e = readdir(d)))
        if (strcmp(e->d_name, ".") != 0 && strcmp(e->d_name, "..") != 0) empty = false;
    closedir(d);
    return empty;
}

sim_status imp_card(const char *card_path, const char *dir, const char *want_id, imp_result *r, sim_err *err) {
    memset(r, 0, sizeof *r);
    char mpath[4096];
    if (snprintf(mpath, sizeof mpath, "%s/manifest.json", dir) >= (int)sizeof mpath - 8)
        return err_set(err, SIM_ERR_ARG, "%s: path too long", dir);
    if (want_id && !mf_id_ok(want_id))
        return err_set(err, SIM_ERR_ARG, "--id '%.80s' is not a valid id (use 1-64 characters a-z, 0-9, '_' or '-', starting with a letter)", want_id);

    char *bytes = NULL;
    size_t len = 0;
    card *c = NULL;
    json_t *m = NULL;
    char *body_svg = NULL;
    sim_status rc = file_read_all(card_path, CARD_MAX_BYTES, &bytes, &len, err);
    if (rc != SIM_OK) return rc;
    if ((rc = card_parse(&c, bytes, len, card_path, err)) != SIM_OK) goto done;
    bool png = len >= 8 && memcmp(bytes, PNG_SIG, 8) == 0;

    struct stat st;
    bool exists;
    r->created = stat(mpath, &st) != 0;
    if (r->created && !dir_empty(dir, &exists)) {
        rc = err_set(err, SIM_ERR_ARG, "%s has files but no manifest.json: give an empty or new folder, or a scenario folder", dir);
        goto done;
    }
    if (!r->created && !(m = mf_load(mpath, err))) {
        rc = err->code;
        goto done;
    }
    if (r->created) {
        if (mkdir(dir, 0755) != 0 && errno != EEXIST) {
            rc = err_set(err, SIM_ERR_IO, "cannot create %s: %s", dir, strerror(errno));
            goto done;
        }
        m = json_pack("{s:i, s:s, s:s, s:[s]}", "version", SCN_FORMAT_VERSION, "id", "x", "scenarioVersion", "1.0.0", "locales", "en-US");
        json_t *chars = json_array();
        if (!m || !chars || json_object_set_new(m, "characters", chars) != 0) goto nomem;
    }
    json_t *locales = json_object_get(m, "locales"), *chars = json_object_get(m, "characters");

    // The character's id.
    char id[68];
    if (want_id) snprintf(id, sizeof id, "%s", want_id);
    else {
        imp_slug(c->name, id);
        if (!id[0] || strcmp(id, "narrator") == 0 || strcmp(id, "player") == 0) {
            for (int k = 1;; k++) {
                snprintf(id, sizeof id, "character%d", k);
                if (!mf_find(chars, id)) break;
            }
            note(r, "the name '%.60s' gives no usable id: the character's id is '%s' (or give --id)", c->name, id);
        }
    }
    if (mf_find(chars, id) || strcmp(id, "narrator") == 0 || strcmp(id, "player") == 0) {
        rc = err_set(err, SIM_ERR_ARG, "%s: a character with the id '%s' already exists (give another with --id NEW)", mpath, id);
        goto done;
    }
    snprintf(r->id, sizeof r->id, "%s", id);

    // {{char}} is the nickname when the card has one; {{user}} the player's name.
    const char *cn = c->nickname[0] ? c->nickname : c->name;
    const char *un = "You";
    json_t *pn = json_object_get(json_object_get(json_object_get(m, "player"), "name"), "en-US");
    if (json_is_string(pn) && json_string_length(pn) > 0) un = json_string_value(pn);

    // The assets.
    char body_path[128], overlay_path[128];
    uint32_t color = mf_color(c->name);
    const void *body_data;
    size_t body_len;
    snprintf(overlay_path, sizeof overlay_path, "characters/%s/overlay.svg", id);
    if (png) {
        snprintf(body_path, sizeof body_path, "characters/%s/card.png", id);
        body_data = bytes;
        body_len = len;
    } else {
        snprintf(body_path, sizeof body_path, "characters/%s/placeholder.svg", id);
        if (!(body_svg = mem_alloc(2048))) goto nomem;
        placeholder_svg(body_svg, 2048, color);
        body_data = body_svg;
        body_len = strlen(body_svg);
        note(r, "a JSON card has no picture: %s is a placeholder silhouette; replace it (and its sha256)", body_path);
    }
    if ((rc = mf_write_file(dir, body_path, body_data, body_len, err)) != SIM_OK) goto done;
    if ((rc = mf_write_file(dir, overlay_path, OVERLAY_SVG, sizeof OVERLAY_SVG - 1, err)) != SIM_OK) goto done;

    // The character.
    char hexcolor[8];
    snprintf(hexcolor, sizeof hexcolor, "#%06x", color);
    const char *about = c->description[0] ? c->description : c->name;
    const char *personality = c->personality[0] ? c->personality : "Not described.";
    note(r, "the card has no appearance field: 'appearance' is the description; edit it to describe only the looks");
    json_t *layer = mf_layer(overlay_path, OVERLAY_SVG, sizeof OVERLAY_SVG - 1, 0, 0, 1);
    if (!layer) goto nomem;
    json_t *ch = json_pack("{s:s, s:o*, s:s, s:o*, s:o*, s:o*, s:[{s:s, s:o*}], s:[{s:s, s:o*, s:{s:O}}], s:[{s:s, s:o*, s:{s:O}}]}",
                           "id", id, "name", text(r, locales, "the name", c->name), "color", hexcolor,
                           "about", text_x(r, locales, "the description", about, cn, un),
                           "personality", text_x(r, locales, "the personality", personality, cn, un),
                           "appearance", text_x(r, locales, "the description", about, cn, un),
                           "bodies", "id", "default", "image", mf_asset(body_path, body_data, body_len),
                           "outfits", "id", "default", "name", text(r, locales, "", "Default"), "layers", "default", layer,
                           "expressions", "id", "neutral", "name", text(r, locales, "", "Neutral"), "layers", "default", layer);
    json_decref(layer);
    if (!ch || json_array_append_new(chars, ch) != 0) goto nomem;

    // The lorebook.
    json_t *lore = json_object_get(m, "lore");
    if (c->n_entries && !lore) {
        if (!(lore = json_array()) || json_object_set_new(m, "lore", lore) != 0) goto nomem;
    }
    if (c->n_entries && (rc = add_lore(r, c, id, locales, lore, cn, un, err)) != SIM_OK) goto done;

    if (r->created) {
        // The scenario around the character.
        const char *bg = "backgrounds/default.svg";
        if ((rc = mf_write_file(dir, bg, BACKGROUND_SVG, sizeof BACKGROUND_SVG - 1, err)) != SIM_OK) goto done;
        const char *setting = c->scenario[0] ? c->scenario : "An ordinary day; the story begins here.";
        const char *cabout = c->creator_notes[0] ? c->creator_notes : about;
        char teaser[300];
        size_t nl = strlen(c->name);
        if (nl > 200) { // cut at a UTF-8 boundary
            nl = 200;
            while (nl > 0 && ((unsigned char)c->name[nl] & 0xC0) == 0x80) nl--;
        }
        snprintf(teaser, sizeof teaser, "A story with %.*s.", (int)nl, c->name);
        bool nsfw = false;
        for (int i = 0; i < c->n_tags; i++) nsfw |= strcasecmp(c->tags[i], "nsfw") == 0;
        json_object_set_new(m, "id", json_string(id));
        json_t *extra = json_pack("{s:o*, s:o*, s:o*, s:{s:b}, s:i, s:o*, s:{s:o*, s:o*}}",
                                  "name", text(r, locales, "the name", c->name), "teaser", text(r, locales, "", teaser),
                                  "about", text_x(r, locales, "the creator notes", cabout, cn, un), "content", "nsfw", nsfw,
                                  "recommendedContextSize", 8192, "globalScenario", text_x(r, locales, "the scenario", setting, cn, un),
                                  "player", "name", text(r, locales, "", "You"), "about", text(r, locales, "", "The player."));
        json_t *scenes = json_pack("[{s:s, s:o*, s:o*, s:o*}]", "id", "default", "name", text(r, locales, "", "Default"),
                                   "prompt", text_x(r, locales, "the scenario", setting, cn, un), "background",
                                   mf_asset(bg, BACKGROUND_SVG, sizeof BACKGROUND_SVG - 1));
        json_t *eps = json_array();
        if (!extra || !scenes || !eps || json_object_update(m, extra) != 0) {
            json_decref(extra);
            json_decref(scenes);
            json_decref(eps);
            goto nomem;
        }
        json_decref(extra);
        // Keep the documented order: characters, then scenes, episodes, lore.
        json_t *keep_chars = json_incref(chars), *keep_lore = lore ? json_incref(lore) : NULL;
        json_object_del(m, "characters");
        json_object_del(m, "lore");
        json_object_set_new(m, "characters", keep_chars);
        json_object_set_new(m, "scenes", scenes);
        json_object_set_new(m, "episodes", eps);
        if (keep_lore) json_object_set_new(m, "lore", keep_lore);
        int n_greet = 1 + c->n_alternate_greetings;
        for (int g = 0; g < n_greet; g++) {
            const char *line = g == 0 ? c->first_mes : c->alternate_greetings[g - 1];
            if (!line[0]) continue;
            char eid[32], ename[64], what[64];
            int k = (int)json_array_size(eps) + 1;
            snprintf(eid, sizeof eid, k == 1 ? "start" : "start-%d", k);
            snprintf(ename, sizeof ename, k == 1 ? "The beginning" : "Another beginning (%d)", k);
            snprintf(what, sizeof what, g ? "alternate greeting %d" : "the first message", g);
            json_t *ep = json_pack("{s:s, s:o*, s:{s:s, s:[{s:s, s:s, s:s}]}, s:[{s:s, s:o*}], s:[s]}", "id", eid, "name",
                                   text(r, locales, "", ename), "start", "scene", "default", "characters", "character", id,
                                   "outfit", "default", "expression", "neutral", "openingLines", "speaker", id, "text",
                                   text_x(r, locales, what, line, cn, un), "allowedSpeakers", id);
            if (!ep || json_array_append_new(eps, ep) != 0) goto nomem;
        }
        if (json_array_size(eps) == 0) {
            json_t *ep = json_pack("{s:s, s:o*, s:{s:s, s:[{s:s, s:s, s:s}]}, s:[], s:[s]}", "id", "start", "name",
                                   text(r, locales, "", "The beginning"), "start", "scene", "default", "characters", "character",
                                   id, "outfit", "default", "expression", "neutral", "openingLines", "allowedSpeakers", id);
            if (!ep || json_array_append_new(eps, ep) != 0) goto nomem;
            note(r, "the card has no greeting: the episode 'start' has no opening lines");
        }
        r->n_episodes = (int)json_array_size(eps);
    }
    rc = mf_write(m, mpath, err);
    goto done;
nomem:
    rc = err_set(err, SIM_ERR_NOMEM, "%s: out of memory", card_path);
done:
    json_decref(m);
    card_free(c);
    mem_free(bytes);
    mem_free(body_svg);
    return rc;
}
