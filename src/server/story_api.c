// story_api.c — the native story API and the player's files (see story_api.h).
#include "server/story_api.h"

#include <dirent.h>
#include <stdarg.h>
#include <errno.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>

#include "base/sha256.h"
#include "base/strbuf.h"
#include "server/api.h"
#include "server/web.h"
#include "story/card.h"
#include "story/engine.h"
#include "story/pack.h"
#include "story/scenario.h"
#include "story/tree.h"

#define SAPI_MAX_THUMB ((size_t)2 << 20) // a save's thumbnail, decoded
#define SAPI_PING_S 15

// One listener of a story's events: SSE bytes waiting to be read.
typedef struct sub {
    struct sub *next;
    sapi *sa;
    int64_t story;
    http_conn *c;
    char *buf;
    size_t n, cap, off;
} sub;

struct sapi {
    const model *m;
    sapi_config cfg;
    char *db_path, *state_dir;
    scn_scenario *scn[SAPI_MAX_SCENARIOS];
    int n_scn;
    char **users; // (cfg.n_api_keys) "key-<16 hex>"
    tree_db *db;
    fwd_ctx *ctx;
    pthread_mutex_t mu; // subs, busy, stopping
    pthread_cond_t cv;
    sub *subs;
    int64_t busy[64];   // stories with an operation running
    int n_busy;
    bool stopping;
    pthread_mutex_t eng_mu; // the engine: one operation at a time
    eng *e;                 // the loaded story's engine (NULL: none)
    const scn_scenario *e_scn;
};

static void logf_(sapi *sa, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static void logf_(sapi *sa, const char *fmt, ...) {
    if (!sa->cfg.log) return;
    char msg[600];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    sa->cfg.log(sa->cfg.log_ud, msg);
}

// --- scenarios -------------------------------------------------------------------------

static const scn_scenario *find_scn(const sapi *sa, const char *id, size_t n) {
    for (int i = 0; i < sa->n_scn; i++)
        if (strlen(sa->scn[i]->id) == n && strncmp(sa->scn[i]->id, id, n) == 0) return sa->scn[i];
    return NULL;
}

static int by_name(const void *a, const void *b) { return strcmp(*(char *const *)a, *(char *const *)b); }

static void load_scenarios(sapi *sa) {
    DIR *d = opendir(sa->cfg.scenarios);
    if (!d) {
        logf_(sa, "scenarios: cannot read %s: %s", sa->cfg.scenarios, strerror(errno));
        return;
    }
    char *names[SAPI_MAX_SCENARIOS];
    int n = 0;
    struct dirent *de;
    while ((de = readdir(d)) && n < SAPI_MAX_SCENARIOS) {
        if (de->d_name[0] == '.') continue;
        names[n] = mem_strdup(de->d_name);
        if (names[n]) n++;
    }
    closedir(d);
    qsort(names, (size_t)n, sizeof *names, by_name);
    for (int i = 0; i < n; i++) {
        char path[4096];
        snprintf(path, sizeof path, "%s/%s", sa->cfg.scenarios, names[i]);
        mem_free(names[i]);
        struct stat st;
        size_t len = strlen(path);
        bool zip = len > 4 && strcmp(path + len - 4, ".zip") == 0;
        if (stat(path, &st) != 0 || !(S_ISDIR(st.st_mode) || (zip && S_ISREG(st.st_mode)))) continue;
        scn_report rep;
        scn_report_init(&rep);
        scn_scenario *s = NULL;
        sim_err err;
        if (scn_load(&s, path, &rep, &err) != SIM_OK) {
            logf_(sa, "scenarios: %s is not loaded: %s%s%s", path, err.msg, rep.n ? "; first: " : "",
                  rep.n ? rep.items[0].msg : "");
        } else if (find_scn(sa, s->id, strlen(s->id))) {
            logf_(sa, "scenarios: %s: the id '%s' is already taken by another pack; skipped", path, s->id);
            scn_free(s);
        } else {
            sa->scn[sa->n_scn++] = s;
        }
        scn_report_free(&rep);
    }
}

static const char *locale_of(const http_req *rq, char *buf, size_t cap) {
    const char *q = strstr(rq->query, "locale=");
    if (!q || (q != rq->query && q[-1] != '&')) return "en-US";
    q += 7;
    size_t n = strcspn(q, "&");
    if (n == 0 || n >= cap) return "en-US";
    memcpy(buf, q, n);
    buf[n] = 0;
    return buf;
}

static json_t *text_json(const scn_scenario *s, const scn_text_map *t, const char *locale) {
    const char *x = scn_text(s, t, locale);
    return x ? json_string(x) : json_null();
}

static json_t *scenario_summary(const scn_scenario *s, const char *locale) {
    json_t *eps = json_array(), *locs = json_array();
    for (int i = 0; i < s->n_episodes; i++)
        json_array_append_new(eps, json_pack("{s:s, s:o, s:o}", "id", s->episodes[i].id, "name",
                                             text_json(s, &s->episodes[i].name, locale), "about",
                                             text_json(s, &s->episodes[i].about, locale)));
    for (int i = 0; i < s->n_locales; i++) json_array_append_new(locs, json_string(s->locales[i]));
    char cover[1400];
    if (s->thumbnail) snprintf(cover, sizeof cover, "/api/scenarios/%s/assets/%s", s->id, s->thumbnail->path);
    return json_pack("{s:s, s:o, s:o, s:o, s:b, s:o, s:o, s:o, s:i}", "id", s->id, "name", text_json(s, &s->name, locale),
                     "teaser", text_json(s, &s->teaser, locale), "about", text_json(s, &s->about, locale), "nsfw",
                     s->nsfw, "locales", locs, "cover", s->thumbnail ? json_string(cover) : json_null(), "episodes", eps,
                     "recommendedContextSize", s->context_size);
}

static void h_scenarios(void *ud, const http_req *rq, http_conn *c) {
    sapi *sa = ud;
    char lb[40];
    const char *locale = locale_of(rq, lb, sizeof lb);
    json_t *a = json_array();
    for (int i = 0; i < sa->n_scn; i++) json_array_append_new(a, scenario_summary(sa->scn[i], locale));
    api_respond_json(c, 200, json_pack("{s:o}", "scenarios", a));
}

// The asset of s at rel, or NULL when the manifest names no such file.
static const scn_asset *find_asset(const scn_scenario *s, const char *rel) {
#define TRY(a) if ((a).path && strcmp((a).path, rel) == 0) return &(a)
    if (s->thumbnail) TRY(*s->thumbnail);
    for (int i = 0; i < s->n_scenes; i++) {
        TRY(s->scenes[i].background);
        for (int k = 0; k < s->scenes[i].n_ambience; k++) TRY(s->scenes[i].ambience[k]);
    }
    for (int i = 0; i < s->n_characters; i++) {
        const scn_character *ch = &s->characters[i];
        for (int b = 0; b < ch->n_bodies; b++) {
            TRY(ch->bodies[b].image);
            for (int k = 0; k < ch->n_outfits; k++) TRY(ch->outfits[k].layers[b].image);
            for (int k = 0; k < ch->n_expressions; k++) TRY(ch->expressions[k].layers[b].image);
        }
    }
#undef TRY
    return NULL;
}

static void h_scenario(void *ud, const http_req *rq, http_conn *c) {
    sapi *sa = ud;
    const char *rest = rq->path + strlen("/api/scenarios/");
    size_t idn = strcspn(rest, "/");
    const scn_scenario *s = find_scn(sa, rest, idn);
    if (!s) {
        http_respond_error(c, 404, "not_found_error", NULL, "no scenario '%.*s'", (int)(idn > 80 ? 80 : idn), rest);
        return;
    }
    if (rest[idn] == 0) {
        char lb[40];
        json_t *j = scenario_summary(s, locale_of(rq, lb, sizeof lb));
        char base[200];
        snprintf(base, sizeof base, "/api/scenarios/%s/assets/", s->id);
        json_object_set_new(j, "assetBase", json_string(base));
        json_object_set(j, "manifest", (json_t *)s->doc);
        api_respond_json(c, 200, j);
        return;
    }
    if (strncmp(rest + idn, "/assets/", 8) != 0) {
        http_respond_error(c, 404, "not_found_error", NULL, "no route for %.200s", rq->path);
        return;
    }
    const char *rel = rest + idn + 8;
    const scn_asset *a = find_asset(s, rel);
    if (!a) {
        http_respond_error(c, 404, "not_found_error", NULL, "scenario '%s' has no asset '%.200s'", s->id, rel);
        return;
    }
    char etag[SHA256_HEX_SIZE + 2];
    snprintf(etag, sizeof etag, "\"%s\"", a->sha256);
    const char *inm = http_req_header(c, "If-None-Match");
    if (inm && strstr(inm, a->sha256)) {
        http_add_header(c, "ETag", etag);
        http_respond(c, 304, NULL, "", 0);
        return;
    }
    pack *p = NULL;
    char *data = NULL;
    size_t len = 0;
    sim_err err;
    if (pack_open(&p, s->dir, &err) != SIM_OK ||
        pack_read(p, a->path, (size_t)SCN_MAX_ASSET_BYTES, &data, &len, NULL, &err) != SIM_OK) {
        pack_close(p);
        http_respond_error(c, 500, "server_error", NULL, "scenario '%s': %s", s->id, err.msg);
        return;
    }
    pack_close(p);
    http_add_header(c, "ETag", etag);
    http_add_header(c, "Cache-Control", "public, max-age=86400");
    http_respond(c, 200, web_mime(a->path), data, len);
    mem_free(data);
}

// --- users and ids ------------------------------------------------------------------------

static const char *user_of(const sapi *sa, const http_req *rq) {
    return rq->key_index >= 0 && rq->key_index < sa->cfg.n_api_keys ? sa->users[rq->key_index] : NULL;
}

// Parses "/api/stories/123..." into 123 and the rest ("", "/tree", ...).
static bool story_path(const char *path, int64_t *id, const char **rest) {
    const char *p = path + strlen("/api/stories/");
    char *end;
    errno = 0;
    long long v = strtoll(p, &end, 10);
    if (end == p || errno || v <= 0 || (*end && *end != '/')) return false;
    *id = v;
    *rest = end;
    return true;
}

// story_path for a handler: want "" (the story itself), "/" (a sub-path) or
// "any"; answers 404 and returns false otherwise.
static bool story_target(const http_req *rq, http_conn *c, int64_t *id, const char **rest, const char *want) {
    bool ok = story_path(rq->path, id, rest);
    if (ok && !strcmp(want, "")) ok = !**rest;
    else if (ok && !strcmp(want, "/")) ok = (*rest)[0] == '/';
    if (!ok) http_respond_error(c, 404, "not_found_error", NULL, "no route for %s %.200s", rq->method, rq->path);
    return ok;
}

static const scn_scenario *story_scn(const sapi *sa, const tree_story *ts) {
    return find_scn(sa, ts->scenario, strlen(ts->scenario));
}

// --- the story object ------------------------------------------------------------------------

static json_t *update_json(const tree_update *u) {
    char clock[STAGE_CLOCK_SIZE];
    stage_clock_format(u->minutes, clock);
    json_t *cmds = u->commands ? json_loads(u->commands, 0, NULL) : NULL;
    return json_pack("{s:I, s:I, s:s, s:s, s:s, s:i, s:o, s:s, s:i, s:I}", "id", (json_int_t)u->id, "parent",
                     (json_int_t)u->parent, "speaker", u->speaker, "text", u->text, "clock", clock, "minutes", u->minutes,
                     "commands", cmds ? cmds : json_array(), "source", tree_source_name(u->source), "thumbs", u->thumbs,
                     "edit_of", (json_int_t)u->edit_of);
}

// The story object of docs/story-api.md, or NULL with err set.
static json_t *story_json(sapi *sa, const char *user, int64_t id, sim_err *err) {
    tree_story ts;
    if (tree_story_get(sa->db, user, id, &ts, err) != SIM_OK) return NULL;
    const scn_scenario *s = story_scn(sa, &ts);
    tree_update *path = NULL;
    tree_achievement *ach = NULL;
    tree_save *saves = NULL;
    int n = 0, n_ach = 0, n_saves = 0;
    json_t *j = NULL;
    if (!s) {
        err_set(err, SIM_ERR_ARG, "story %lld: its scenario '%s' is not loaded on this server", (long long)id, ts.scenario);
        goto done;
    }
    if (tree_path(sa->db, user, id, &path, &n, err) != SIM_OK ||
        tree_achievement_list(sa->db, user, id, &ach, &n_ach, err) != SIM_OK ||
        tree_save_list(sa->db, user, id, &saves, &n_saves, err) != SIM_OK)
        goto done;
    json_t *pj = json_array();
    for (int i = 0; i < n; i++) {
        json_t *u = update_json(&path[i]);
        int64_t *ids = NULL;
        int nv = 0, chosen = -1;
        if (tree_update_children(sa->db, user, id, path[i].parent, &ids, &nv, &chosen, err) == SIM_OK) {
            int at = 1;
            json_t *sib = json_array();
            for (int k = 0; k < nv; k++) {
                if (ids[k] == path[i].id) at = k + 1;
                json_array_append_new(sib, json_integer(ids[k]));
            }
            json_object_set_new(u, "variant", json_integer(at));
            json_object_set_new(u, "variants", json_integer(nv));
            json_object_set_new(u, "siblings", sib);
        }
        tree_ids_free(ids);
        json_array_append_new(pj, u);
    }
    stage st;
    json_t *stj = NULL;
    int episode = 0;
    for (int i = 0; i < s->n_episodes; i++)
        if (strcmp(s->episodes[i].id, ts.episode) == 0) episode = i;
    if (n > 0 && path[n - 1].stage) stj = json_loads(path[n - 1].stage, 0, NULL);
    else if (stage_start(&st, s, episode, err) == SIM_OK) stj = stage_to_json(&st, s);
    json_t *aj = json_array();
    for (int i = 0; i < n_ach; i++)
        json_array_append_new(aj, json_pack("{s:s, s:I, s:I}", "id", ach[i].achievement, "update",
                                            (json_int_t)ach[i].update, "created", (json_int_t)ach[i].created));
    json_t *sj = json_array();
    for (int i = 0; i < n_saves; i++) {
        char thumb[128];
        snprintf(thumb, sizeof thumb, "/api/stories/%lld/saves/%lld/thumbnail", (long long)id, (long long)saves[i].id);
        json_array_append_new(sj, json_pack("{s:I, s:s, s:I, s:I, s:s}", "id", (json_int_t)saves[i].id, "name",
                                            saves[i].name, "update", (json_int_t)saves[i].update, "created",
                                            (json_int_t)saves[i].created, "thumbnail", thumb));
    }
    int used = 0;
    if (sa->e && eng_story(sa->e) == id) used = eng_last_turn(sa->e)->n_prompt;
    pthread_mutex_lock(&sa->mu);
    bool busy = false;
    for (int i = 0; i < sa->n_busy; i++) busy |= sa->busy[i] == id;
    pthread_mutex_unlock(&sa->mu);
    j = json_pack("{s:I, s:s, s:s, s:s, s:I, s:I, s:o, s:o, s:o, s:o, s:{s:i, s:i}, s:b}", "id", (json_int_t)id,
                  "scenario", ts.scenario, "episode", ts.episode, "title", ts.title ? ts.title : "", "created",
                  (json_int_t)ts.created, "updated", (json_int_t)ts.updated, "path", pj, "stage",
                  stj ? stj : json_null(), "achievements", aj, "saves", sj, "context", "size", fwd_n_ctx(sa->ctx),
                  "used", used, "busy", busy);
    if (!j) err_set(err, SIM_ERR_NOMEM, "out of memory");
done:
    tree_updates_free(path, n);
    tree_achievements_free(ach, n_ach);
    tree_saves_free(saves, n_saves);
    tree_story_free(&ts);
    return j;
}

static int status_of(const sim_err *err) {
    switch (err->code) {
    case SIM_ERR_NOMEM:
    case SIM_ERR_IO: return 500;
    case SIM_ERR_BUSY: return 409;
    default: return strstr(err->msg, "not found") ? 404 : 400;
    }
}

static void respond_err(http_conn *c, const sim_err *err) {
    int st = status_of(err);
    http_respond_error(c, st, st == 404 ? "not_found_error" : st >= 500 ? "server_error" : "invalid_request_error", NULL,
                       "%s", err->msg);
}

// --- events ------------------------------------------------------------------------------------

static void sub_put(sub *s, const char *p, size_t n) {
    if (s->n + n > s->cap) {
        size_t nc = s->cap ? s->cap * 2 : 4096;
        while (nc < s->n + n) nc *= 2;
        char *q = mem_realloc(s->buf, nc);
        if (!q) return; // a listener short of memory misses an event
        s->buf = q, s->cap = nc;
    }
    memcpy(s->buf + s->n, p, n);
    s->n += n;
}

// Sends `event: name` with data j to every listener of story (j released).
static void broadcast(sapi *sa, int64_t story, const char *name, json_t *j) {
    char *data = j ? json_dumps(j, JSON_COMPACT) : NULL;
    json_decref(j);
    if (!data) return;
    sbuf b = {0};
    sb_printf(&b, "event: %s\ndata: %s\n\n", name, data);
    free(data);
    if (b.s) {
        pthread_mutex_lock(&sa->mu);
        for (sub *s = sa->subs; s; s = s->next)
            if (s->story == story) sub_put(s, b.s, b.n);
        pthread_cond_broadcast(&sa->cv);
        pthread_mutex_unlock(&sa->mu);
    }
    sb_free(&b);
}

static void on_engine_event(void *ud, const eng_event *ev) {
    sapi *sa = ud;
    int64_t story = eng_story(sa->e);
    json_t *j = NULL;
    const char *name = NULL;
    switch (ev->kind) {
    case ENG_EV_PROGRESS: name = "progress", j = json_pack("{s:i, s:i}", "done", ev->done, "total", ev->total); break;
    case ENG_EV_COMMAND: name = "command", j = json_pack("{s:o}", "command", json_loadb(ev->text, ev->len, 0, NULL)); break;
    case ENG_EV_SPEAKER: name = "speaker", j = json_pack("{s:s%}", "speaker", ev->text, ev->len); break;
    case ENG_EV_TEXT: name = "text", j = json_pack("{s:s%}", "text", ev->text, ev->len); break;
    case ENG_EV_LINE: {
        name = "line";
        j = json_pack("{s:o, s:i, s:i}", "update", update_json(ev->update), "variant", ev->variant, "variants",
                      ev->n_variants);
        const eng_turn_stats *t = eng_last_turn(sa->e);
        if (j && ev->update->source == TREE_SOURCE_MODEL)
            json_object_set_new(j, "turn", json_pack("{s:i, s:i, s:i, s:i, s:f, s:f, s:f, s:f}", "prompt", t->n_prompt,
                                                     "reused", t->n_reused, "prompt_decoded", t->n_prompt_decoded,
                                                     "generated", t->n_generated, "ms_prompt", t->ms_prompt,
                                                     "ms_first_token", t->ms_first_token, "ms_generate", t->ms_generate,
                                                     "tokens_per_s",
                                                     t->ms_generate > 0 ? 1000.0 * t->n_generated / t->ms_generate : 0.0));
        break;
    }
    case ENG_EV_CHECKPOINT:
        name = "checkpoint";
        j = json_pack("{s:I, s:s%}", "update", (json_int_t)ev->update->id, "summary", ev->text, ev->len);
        break;
    case ENG_EV_ACHIEVEMENT: {
        name = "achievement";
        const scn_scenario *s = sa->e_scn;
        for (int i = 0; i < s->n_achievements; i++)
            if (strcmp(s->achievements[i].id, ev->text) == 0)
                j = json_pack("{s:s, s:o, s:o}", "id", ev->text, "name", text_json(s, &s->achievements[i].name, "en-US"),
                              "description", text_json(s, &s->achievements[i].description, "en-US"));
        break;
    }
    }
    if (name) broadcast(sa, story, name, j);
    else json_decref(j);
}

static size_t ev_read(void *ud, char *buf, size_t cap) {
    sub *s = ud;
    sapi *sa = s->sa;
    pthread_mutex_lock(&sa->mu);
    int waited = 0;
    while (s->off == s->n && !sa->stopping) {
        struct timespec ts;
        clock_gettime(CLOCK_REALTIME, &ts);
        ts.tv_sec += 1;
        pthread_cond_timedwait(&sa->cv, &sa->mu, &ts);
        if (s->off < s->n) break;
        if (http_client_gone(s->c)) break;
        if (++waited >= SAPI_PING_S) {
            static const char ping[] = ": ping\n\n";
            sub_put(s, ping, sizeof ping - 1);
            break;
        }
    }
    size_t k = s->n - s->off < cap ? s->n - s->off : cap;
    memcpy(buf, s->buf + s->off, k);
    s->off += k;
    if (s->off == s->n) s->off = s->n = 0;
    pthread_mutex_unlock(&sa->mu);
    return k; // 0: stopping or the client left
}

static void ev_done(void *ud, bool gone) {
    sub *s = ud;
    sapi *sa = s->sa;
    pthread_mutex_lock(&sa->mu);
    for (sub **pp = &sa->subs; *pp; pp = &(*pp)->next)
        if (*pp == s) {
            *pp = s->next;
            break;
        }
    pthread_mutex_unlock(&sa->mu);
    mem_free(s->buf);
    mem_free(s);
}

static void events(sapi *sa, int64_t id, const char *user, http_conn *c) {
    tree_story ts;
    sim_err err;
    if (tree_story_get(sa->db, user, id, &ts, &err) != SIM_OK) {
        respond_err(c, &err);
        return;
    }
    tree_story_free(&ts);
    sub *s = mem_calloc(1, sizeof *s);
    if (!s) {
        http_respond_error(c, 500, "server_error", NULL, "out of memory");
        return;
    }
    s->sa = sa, s->story = id, s->c = c;
    static const char hello[] = ": simularity story events\n\n";
    sub_put(s, hello, sizeof hello - 1);
    pthread_mutex_lock(&sa->mu);
    s->next = sa->subs;
    sa->subs = s;
    pthread_mutex_unlock(&sa->mu);
    http_add_header(c, "Cache-Control", "no-cache");
    http_add_header(c, "X-Accel-Buffering", "no");
    http_respond_stream(c, 200, "text/event-stream", ev_read, ev_done, s);
}

// --- the engine ---------------------------------------------------------------------------------

// Saves the loaded story (an autosave with a KV state file, so coming back is
// instant) and frees its engine (eng_mu held).
static void unload_engine(sapi *sa, const char *why) {
    if (!sa->e) return;
    int64_t save;
    sim_err err;
    if (eng_save(sa->e, "autosave", NULL, 0, &save, &err) != SIM_OK)
        logf_(sa, "story %lld: the %s save failed: %s", (long long)eng_story(sa->e), why, err.msg);
    eng_free(sa->e);
    sa->e = NULL;
}

static eng_params engine_params(const sapi *sa, const char *user) {
    eng_params p = eng_default_params();
    p.user = user;
    p.state_dir = sa->state_dir;
    return p;
}

// Makes sa->e the engine of story id (eng_mu held). Saves the one it replaces.
static sim_status load_engine(sapi *sa, const char *user, int64_t id, sim_err *err) {
    if (sa->e && eng_story(sa->e) == id) return SIM_OK;
    tree_story ts;
    sim_status rc = tree_story_get(sa->db, user, id, &ts, err);
    if (rc) return rc;
    const scn_scenario *s = story_scn(sa, &ts);
    if (!s) rc = err_set(err, SIM_ERR_ARG, "story %lld: its scenario '%s' is not loaded on this server", (long long)id,
                         ts.scenario);
    tree_story_free(&ts);
    if (rc) return rc;
    unload_engine(sa, "switch");
    eng_params p = engine_params(sa, user);
    if ((rc = eng_open(&sa->e, s, sa->db, sa->ctx, &p, id, err))) return rc;
    sa->e_scn = s;
    eng_on_event(sa->e, on_engine_event, sa);
    return SIM_OK;
}

static bool mark_busy(sapi *sa, int64_t id) {
    pthread_mutex_lock(&sa->mu);
    bool ok = sa->n_busy < (int)ARRAY_LEN(sa->busy);
    for (int i = 0; i < sa->n_busy; i++) ok &= sa->busy[i] != id;
    if (ok) sa->busy[sa->n_busy++] = id;
    pthread_mutex_unlock(&sa->mu);
    return ok;
}

static void clear_busy(sapi *sa, int64_t id) {
    pthread_mutex_lock(&sa->mu);
    for (int i = 0; i < sa->n_busy; i++)
        if (sa->busy[i] == id) sa->busy[i] = sa->busy[--sa->n_busy];
    pthread_mutex_unlock(&sa->mu);
}

// --- request bodies -----------------------------------------------------------------------------

// An integer field (required); false after answering 400.
static bool int_field(json_t *j, const char *key, int64_t lo, int64_t hi, int64_t *out, http_conn *c) {
    json_t *v = json_object_get(j, key);
    if (!json_is_integer(v) || json_integer_value(v) < lo || json_integer_value(v) > hi) {
        http_respond_error(c, 400, "invalid_request_error", key, "\"%s\" must be an integer %lld..%lld", key,
                           (long long)lo, (long long)hi);
        return false;
    }
    *out = json_integer_value(v);
    return true;
}

static bool str_field(json_t *j, const char *key, bool required, const char **out, http_conn *c) {
    json_t *v = json_object_get(j, key);
    *out = NULL;
    if (!v || json_is_null(v)) {
        if (!required) return true;
        http_respond_error(c, 400, "invalid_request_error", key, "\"%s\" is required (a string)", key);
        return false;
    }
    if (!json_is_string(v)) {
        http_respond_error(c, 400, "invalid_request_error", key, "\"%s\" must be a string", key);
        return false;
    }
    *out = json_string_value(v);
    return true;
}

// "sampling": {...} onto the engine; false after answering 400.
static bool sampling(sapi *sa, json_t *j, http_conn *c) {
    json_t *sp = json_object_get(j, "sampling");
    smp_params p = eng_default_params().sampling;
    int max_tokens = 0;
    if (sp && !json_is_object(sp)) {
        http_respond_error(c, 400, "invalid_request_error", "sampling", "\"sampling\" must be an object");
        return false;
    }
    const char *k;
    json_t *v;
    json_object_foreach(sp, k, v) {
        double x = json_number_value(v);
        bool num = json_is_number(v);
        if (!strcmp(k, "temperature") && num && x >= 0 && x <= 5) p.temp = (float)x;
        else if (!strcmp(k, "top_p") && num && x > 0 && x <= 1) p.top_p = (float)x;
        else if (!strcmp(k, "min_p") && num && x >= 0 && x <= 1) p.min_p = (float)x;
        else if (!strcmp(k, "top_k") && json_is_integer(v) && x >= 0 && x <= 100000) p.top_k = (int)x;
        else if (!strcmp(k, "seed") && json_is_integer(v) && x >= 0) p.seed = (uint64_t)json_integer_value(v);
        else if (!strcmp(k, "max_tokens") && json_is_integer(v) && x >= 1 && x <= 4096) max_tokens = (int)x;
        else {
            http_respond_error(c, 400, "invalid_request_error", "sampling",
                               "sampling.%.40s: unknown, or out of range (temperature 0..5, top_p (0,1], min_p [0,1], "
                               "top_k >= 0, seed >= 0, max_tokens 1..4096)",
                               k);
            return false;
        }
    }
    eng_set_sampling(sa->e, &p, max_tokens ? max_tokens : 96);
    return true;
}

// --- story routes -------------------------------------------------------------------------------

static void h_story_create(void *ud, const http_req *rq, http_conn *c) {
    sapi *sa = ud;
    json_t *j = api_json_body(rq, c, true);
    if (!j) return;
    const char *sid, *eid, *title;
    if (!str_field(j, "scenario", true, &sid, c) || !str_field(j, "episode", false, &eid, c) ||
        !str_field(j, "title", false, &title, c)) {
        json_decref(j);
        return;
    }
    const scn_scenario *s = find_scn(sa, sid, strlen(sid));
    int episode = 0;
    if (s && eid) {
        episode = -1;
        for (int i = 0; i < s->n_episodes; i++)
            if (strcmp(s->episodes[i].id, eid) == 0) episode = i;
    }
    if (!s || episode < 0) {
        http_respond_error(c, 404, "not_found_error", s ? "episode" : "scenario", s ? "scenario '%s' has no episode '%.80s'" : "no scenario '%.80s'%s",
                           s ? s->id : sid, s ? eid : "");
        json_decref(j);
        return;
    }
    const char *user = user_of(sa, rq);
    sim_err err;
    pthread_mutex_lock(&sa->eng_mu);
    unload_engine(sa, "switch"); // the new story takes the context
    eng_params p = engine_params(sa, user);
    sim_status rc = eng_create(&sa->e, s, sa->db, sa->ctx, &p, episode, title ? title : scn_text(s, &s->name, "en-US"),
                               &err);
    json_t *out = NULL;
    if (rc == SIM_OK) {
        sa->e_scn = s;
        eng_on_event(sa->e, on_engine_event, sa);
        out = story_json(sa, user, eng_story(sa->e), &err);
    }
    pthread_mutex_unlock(&sa->eng_mu);
    json_decref(j);
    if (!out) respond_err(c, &err);
    else api_respond_json(c, 201, out);
}

static void h_story_list(void *ud, const http_req *rq, http_conn *c) {
    sapi *sa = ud;
    const char *q = strstr(rq->query, "scenario=");
    char sid[80] = "";
    if (q && (q == rq->query || q[-1] == '&')) snprintf(sid, sizeof sid, "%.*s", (int)strcspn(q + 9, "&"), q + 9);
    tree_story *list = NULL;
    int n = 0;
    sim_err err;
    if (tree_story_list(sa->db, user_of(sa, rq), sid[0] ? sid : NULL, &list, &n, &err) != SIM_OK) {
        respond_err(c, &err);
        return;
    }
    json_t *a = json_array();
    for (int i = 0; i < n; i++)
        json_array_append_new(a, json_pack("{s:I, s:s, s:s, s:s, s:I, s:I, s:I}", "id", (json_int_t)list[i].id, "scenario",
                                           list[i].scenario, "episode", list[i].episode, "title",
                                           list[i].title ? list[i].title : "", "created", (json_int_t)list[i].created,
                                           "updated", (json_int_t)list[i].updated, "head", (json_int_t)list[i].head));
    tree_stories_free(list, n);
    api_respond_json(c, 200, json_pack("{s:o}", "stories", a));
}

static void tree_route(sapi *sa, const char *user, int64_t id, http_conn *c) {
    sim_err err;
    tree_story ts;
    if (tree_story_get(sa->db, user, id, &ts, &err) != SIM_OK) {
        respond_err(c, &err);
        return;
    }
    // Breadth-first from the roots: every update of every branch.
    json_t *ups = json_array();
    int64_t *queue = NULL;
    size_t qn = 0, qcap = 0, qi = 0;
    bool ok = true;
    int64_t parent = 0;
    for (;;) {
        int64_t *ids = NULL;
        int n = 0, chosen = -1;
        if (tree_update_children(sa->db, user, id, parent, &ids, &n, &chosen, &err) != SIM_OK) {
            ok = false;
            break;
        }
        for (int k = 0; k < n && ok; k++) {
            tree_update u;
            if (tree_update_get(sa->db, user, ids[k], &u, &err) != SIM_OK) {
                ok = false;
                break;
            }
            json_array_append_new(ups, json_pack("{s:I, s:I, s:s, s:s, s:s, s:I, s:I, s:i}", "id", (json_int_t)u.id,
                                                 "parent", (json_int_t)u.parent, "speaker", u.speaker, "text", u.text,
                                                 "source", tree_source_name(u.source), "chosen", (json_int_t)u.chosen,
                                                 "edit_of", (json_int_t)u.edit_of, "thumbs", u.thumbs));
            tree_update_free(&u);
            if (qn == qcap) {
                qcap = qcap ? qcap * 2 : 64;
                int64_t *q2 = mem_realloc(queue, qcap * sizeof *queue);
                if (!q2) {
                    ok = false;
                    err_set(&err, SIM_ERR_NOMEM, "out of memory");
                    break;
                }
                queue = q2;
            }
            queue[qn++] = ids[k];
        }
        tree_ids_free(ids);
        if (!ok || qi == qn) break;
        parent = queue[qi++];
    }
    mem_free(queue);
    if (!ok) {
        json_decref(ups);
        tree_story_free(&ts);
        respond_err(c, &err);
        return;
    }
    api_respond_json(c, 200, json_pack("{s:I, s:o}", "head", (json_int_t)ts.head, "updates", ups));
    tree_story_free(&ts);
}

static void thumbnail(sapi *sa, const char *user, int64_t id, const char *rest, http_conn *c) {
    char *end;
    long long save = strtoll(rest + strlen("/saves/"), &end, 10);
    sim_err err;
    tree_save sv;
    if (strcmp(end, "/thumbnail") != 0 || save <= 0) {
        http_respond_error(c, 404, "not_found_error", NULL, "no route for this story path");
        return;
    }
    if (tree_save_get(sa->db, user, save, &sv, &err) != SIM_OK || sv.story != id) {
        if (err.code == SIM_OK || sv.story != id) err_set(&err, SIM_ERR_ARG, "save %lld not found", save);
        respond_err(c, &err);
        return;
    }
    if (!sv.thumb) http_respond_error(c, 404, "not_found_error", NULL, "save %lld has no thumbnail", save);
    else {
        http_add_header(c, "Cache-Control", "private, max-age=86400");
        http_respond(c, 200, "image/png", (const char *)sv.thumb, sv.n_thumb);
    }
    tree_save_free(&sv);
}

static void h_story_get(void *ud, const http_req *rq, http_conn *c) {
    sapi *sa = ud;
    int64_t id;
    const char *rest;
    if (!story_target(rq, c, &id, &rest, "any")) return;
    const char *user = user_of(sa, rq);
    sim_err err;
    if (!*rest) {
        json_t *j = story_json(sa, user, id, &err);
        if (j) api_respond_json(c, 200, j);
        else respond_err(c, &err);
    } else if (!strcmp(rest, "/tree")) tree_route(sa, user, id, c);
    else if (!strcmp(rest, "/events")) events(sa, id, user, c);
    else if (!strncmp(rest, "/saves/", 7)) thumbnail(sa, user, id, rest, c);
    else http_respond_error(c, 404, "not_found_error", NULL, "no route for %.200s", rq->path);
}

static void h_story_delete(void *ud, const http_req *rq, http_conn *c) {
    sapi *sa = ud;
    int64_t id;
    const char *rest;
    if (!story_target(rq, c, &id, &rest, "")) return;
    if (!mark_busy(sa, id)) {
        http_respond_error(c, 409, "conflict_error", NULL, "story %lld is busy with another operation", (long long)id);
        return;
    }
    pthread_mutex_lock(&sa->eng_mu);
    sim_err err;
    sim_status rc = tree_story_delete(sa->db, user_of(sa, rq), id, &err);
    if (rc == SIM_OK && sa->e && eng_story(sa->e) == id) {
        eng_free(sa->e);
        sa->e = NULL;
    }
    pthread_mutex_unlock(&sa->eng_mu);
    clear_busy(sa, id);
    if (rc) respond_err(c, &err);
    else http_respond(c, 204, NULL, "", 0);
}

// POST /api/stories/{id}/{op}
static void h_story_op(void *ud, const http_req *rq, http_conn *c) {
    sapi *sa = ud;
    int64_t id;
    const char *rest;
    if (!story_target(rq, c, &id, &rest, "/")) return;
    const char *op = rest + 1;
    static const char *const ops[] = {"advance", "say", "regenerate", "choose", "edit", "rewind",
                                      "thumbs",  "save", "load",      "fork"};
    bool known = false;
    for (size_t i = 0; i < ARRAY_LEN(ops); i++) known |= !strcmp(op, ops[i]);
    if (!known) {
        http_respond_error(c, 404, "not_found_error", NULL,
                           "no story operation '%.40s' (advance, say, regenerate, choose, edit, rewind, thumbs, save, "
                           "load, fork)",
                           op);
        return;
    }
    json_t *j = api_json_body(rq, c, true);
    if (!j) return;
    const char *user = user_of(sa, rq);
    if (!mark_busy(sa, id)) {
        http_respond_error(c, 409, "conflict_error", NULL, "story %lld is busy with another operation", (long long)id);
        json_decref(j);
        return;
    }
    pthread_mutex_lock(&sa->eng_mu);
    sim_err err = {0};
    sim_status rc = load_engine(sa, user, id, &err);
    int status = 200;
    int64_t x = 0, new_id = 0;
    const char *text = NULL;
    bool answered = false; // a 400 was sent by a field reader
    if (rc == SIM_OK) {
        if (!strcmp(op, "advance") || !strcmp(op, "regenerate")) {
            if (!(answered = !sampling(sa, j, c)))
                rc = op[0] == 'a' ? eng_advance(sa->e, &err) : eng_regenerate(sa->e, &err);
        } else if (!strcmp(op, "say")) {
            if (!(answered = !str_field(j, "text", true, &text, c))) rc = eng_say(sa->e, text, &err);
        } else if (!strcmp(op, "choose")) {
            if (!(answered = !int_field(j, "update", 1, INT64_MAX, &x, c))) rc = eng_choose(sa->e, x, &err);
        } else if (!strcmp(op, "edit")) {
            if (!(answered = !int_field(j, "update", 1, INT64_MAX, &x, c) || !str_field(j, "text", true, &text, c)))
                rc = eng_edit(sa->e, x, text, &err);
        } else if (!strcmp(op, "rewind")) {
            if (!(answered = !int_field(j, "update", 0, INT64_MAX, &x, c))) rc = eng_rewind(sa->e, x, &err);
        } else if (!strcmp(op, "thumbs")) {
            int64_t v;
            if (!(answered = !int_field(j, "update", 1, INT64_MAX, &x, c) || !int_field(j, "value", -1, 1, &v, c)))
                rc = eng_thumbs(sa->e, x, (int)v, &err);
        } else if (!strcmp(op, "save")) {
            const char *name, *thumb;
            uint8_t *png = NULL;
            size_t n_png = 0;
            if (!(answered = !str_field(j, "name", true, &name, c) || !str_field(j, "thumbnail", false, &thumb, c))) {
                static const char prefix[] = "data:image/png;base64,";
                if (thumb && strncmp(thumb, prefix, sizeof prefix - 1) != 0)
                    rc = err_set(&err, SIM_ERR_ARG, "thumbnail: expected a data:image/png;base64 URL");
                else if (thumb && strlen(thumb) > SAPI_MAX_THUMB * 4 / 3 + 64)
                    rc = err_set(&err, SIM_ERR_ARG, "thumbnail: more than %zu bytes", SAPI_MAX_THUMB);
                else if (thumb)
                    rc = card_base64_decode(thumb + sizeof prefix - 1, strlen(thumb) - (sizeof prefix - 1), &png,
                                            &n_png, &err);
                if (rc == SIM_OK) rc = eng_save(sa->e, name, png, n_png, &new_id, &err);
                mem_free(png);
                status = 201;
            }
        } else if (!strcmp(op, "load")) {
            tree_save sv;
            if (!(answered = !int_field(j, "save", 1, INT64_MAX, &x, c))) {
                rc = tree_save_get(sa->db, user, x, &sv, &err);
                if (rc == SIM_OK) {
                    if (sv.story != id) rc = err_set(&err, SIM_ERR_ARG, "save %lld not found", (long long)x);
                    else rc = eng_rewind(sa->e, sv.update, &err);
                    tree_save_free(&sv);
                }
            }
        } else if (!strcmp(op, "fork")) {
            const char *title;
            if (!(answered = !str_field(j, "title", false, &title, c))) rc = eng_fork(sa->e, title, &new_id, &err);
            status = 201;
        }
    }
    json_t *out = NULL;
    if (!answered && rc == SIM_OK) {
        if (!strcmp(op, "save")) {
            tree_save sv;
            if (tree_save_get(sa->db, user, new_id, &sv, &err) == SIM_OK) {
                out = json_pack("{s:{s:I, s:s, s:I, s:I}}", "save", "id", (json_int_t)sv.id, "name", sv.name, "update",
                                (json_int_t)sv.update, "created", (json_int_t)sv.created);
                tree_save_free(&sv);
            }
        } else {
            out = story_json(sa, user, !strcmp(op, "fork") ? new_id : id, &err);
        }
        clear_busy(sa, id); // the state sent says what a client may do now
        json_t *state = story_json(sa, user, id, &err);
        if (state) broadcast(sa, id, "state", state);
    } else if (!answered) {
        broadcast(sa, id, "error", json_pack("{s:s}", "message", err.msg));
    }
    pthread_mutex_unlock(&sa->eng_mu);
    clear_busy(sa, id);
    json_decref(j);
    if (answered) return;
    if (rc != SIM_OK || !out) respond_err(c, &err);
    else api_respond_json(c, status, out);
}

// --- lifetime -------------------------------------------------------------------------------------

sim_status sapi_new(sapi **out, const model *m, const sapi_config *cfg, sim_err *err) {
    *out = NULL;
    sapi *sa = mem_calloc(1, sizeof *sa);
    if (!sa) return err_set(err, SIM_ERR_NOMEM, "out of memory");
    sa->m = m;
    sa->cfg = *cfg;
    pthread_mutex_init(&sa->mu, NULL);
    pthread_mutex_init(&sa->eng_mu, NULL);
    pthread_cond_init(&sa->cv, NULL);
    sim_status rc = SIM_OK;
    char states[4096];
    snprintf(states, sizeof states, "%s.states", cfg->db);
    sa->db_path = mem_strdup(cfg->db);
    sa->state_dir = mem_strdup(cfg->state_dir ? cfg->state_dir : states);
    sa->users = cfg->n_api_keys ? mem_calloc((size_t)cfg->n_api_keys, sizeof *sa->users) : NULL;
    if (!sa->db_path || !sa->state_dir || (cfg->n_api_keys && !sa->users)) {
        rc = err_set(err, SIM_ERR_NOMEM, "out of memory");
        goto fail;
    }
    sa->cfg.api_keys = NULL;
    for (int i = 0; i < cfg->n_api_keys; i++) {
        uint8_t d[SHA256_SIZE];
        char hex[SHA256_HEX_SIZE];
        sha256(cfg->api_keys[i], strlen(cfg->api_keys[i]), d);
        sha256_hex(d, hex);
        char user[32];
        snprintf(user, sizeof user, "key-%.16s", hex);
        if (!(sa->users[i] = mem_strdup(user))) {
            rc = err_set(err, SIM_ERR_NOMEM, "out of memory");
            goto fail;
        }
    }
    if (mkdir(sa->state_dir, 0755) != 0 && errno != EEXIST) {
        rc = err_set(err, SIM_ERR_IO, "cannot create %s: %s", sa->state_dir, strerror(errno));
        goto fail;
    }
    if ((rc = tree_open(&sa->db, cfg->db, err))) goto fail;
    if (cfg->scenarios) load_scenarios(sa);
    // The context: what the scenarios recommend (the largest), 8192 when none does.
    fwd_params fp = fwd_default_params();
    fp.n_ctx = 0;
    for (int i = 0; i < sa->n_scn; i++) fp.n_ctx = sa->scn[i]->context_size > fp.n_ctx ? sa->scn[i]->context_size : fp.n_ctx;
    if (cfg->n_ctx > 0) fp.n_ctx = cfg->n_ctx;
    else if (fp.n_ctx == 0) fp.n_ctx = 8192;
    fp.n_threads = cfg->n_threads;
    if ((rc = fwd_new(&sa->ctx, m, &fp, err))) goto fail;
    *out = sa;
    return SIM_OK;
fail:
    sapi_free(sa);
    return rc;
}

void sapi_shutdown(sapi *sa) {
    if (!sa) return;
    pthread_mutex_lock(&sa->mu);
    sa->stopping = true;
    pthread_cond_broadcast(&sa->cv);
    pthread_mutex_unlock(&sa->mu);
}

void sapi_free(sapi *sa) {
    if (!sa) return;
    unload_engine(sa, "closing");
    for (int i = 0; i < sa->n_scn; i++) scn_free(sa->scn[i]);
    for (int i = 0; sa->users && i < sa->cfg.n_api_keys; i++) mem_free(sa->users[i]);
    mem_free(sa->users);
    fwd_free(sa->ctx);
    tree_close(sa->db);
    mem_free(sa->db_path);
    mem_free(sa->state_dir);
    pthread_mutex_destroy(&sa->mu);
    pthread_mutex_destroy(&sa->eng_mu);
    pthread_cond_destroy(&sa->cv);
    mem_free(sa);
}

int sapi_n_scenarios(const sapi *sa) { return sa->n_scn; }

int sapi_routes(sapi *sa, http_route *out) {
    const http_route r[] = {
        {"GET", "/api/scenarios", h_scenarios, sa, false, false},
        {"GET", "/api/scenarios/*", h_scenario, sa, false, true}, // assets load from <img>/<audio>: ?key= allowed
        {"POST", "/api/stories", h_story_create, sa, false, false},
        {"GET", "/api/stories", h_story_list, sa, false, false},
        {"GET", "/api/stories/*", h_story_get, sa, false, true}, // events load from EventSource: ?key= allowed
        {"DELETE", "/api/stories/*", h_story_delete, sa, false, false},
        {"POST", "/api/stories/*", h_story_op, sa, false, false},
    };
    _Static_assert(ARRAY_LEN(r) == SAPI_N_ROUTES, "SAPI_N_ROUTES");
    memcpy(out, r, sizeof r);
    return SAPI_N_ROUTES;
}
