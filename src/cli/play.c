// play.c — `simularity play DIR -m MODEL`: the story engine in a terminal.
//
// Reads commands (one per line) from the terminal, or from --script FILE:
//
//     advance | a | (empty line)   the model writes the next line
//     say TEXT                     the player says TEXT
//     regenerate | r               a new variant of the last model line
//     variants                     the variants of the last line
//     choose N                     show variant N (1-based) of the last line
//     edit [@ID] TEXT              replace a line's text (the last line by default); the original is kept
//     rewind ID                    go back to update ID (0: the start); nothing is lost
//     history                      the current path with update ids
//     thumbs up|down|none [@ID]    rate a line (the last one by default)
//     save [NAME]                  a save with a KV state file (instant resume)
//     fork [TITLE]                 continue in a new story that copies this one's path
//     state                        the stage as JSON
//     quit                         (interactive: saves "autosave" first)
//
// With --json every event is one JSON object per line on stdout (progress,
// command, speaker, text, line, checkpoint, achievement, variants, history,
// saved, error), and the run ends with {"event": "state", ...}.
#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "cli/cli.h"
#include "story/engine.h"
#include "story/scenario.h"

typedef struct player {
    eng *e;
    fwd_ctx *ctx;
    const eng_params *ep;
    const scn_scenario *s;
    tree_db *db;
    const char *user;
    bool json;
    bool tty;
} player;

static void put_json(json_t *j) {
    char *t = json_dumps(j, JSON_COMPACT | JSON_ENSURE_ASCII);
    if (t) puts(t);
    free(t);
    json_decref(j);
    fflush(stdout);
}

static json_t *update_json(const tree_update *u) {
    char clock[STAGE_CLOCK_SIZE];
    stage_clock_format(u->minutes, clock);
    json_t *cmds = u->commands ? json_loads(u->commands, 0, NULL) : json_array();
    return json_pack("{s:I, s:I, s:s, s:s, s:s, s:o, s:s, s:i, s:I}", "id", (json_int_t)u->id, "parent",
                     (json_int_t)u->parent, "speaker", u->speaker, "text", u->text, "clock", clock, "commands",
                     cmds ? cmds : json_array(), "source", tree_source_name(u->source), "thumbs", u->thumbs,
                     "edit_of", (json_int_t)u->edit_of);
}

static const char *speaker_name(const player *pl, const char *id) {
    for (int i = 0; i < pl->s->n_characters; i++)
        if (strcmp(pl->s->characters[i].id, id) == 0) return scn_text(pl->s, &pl->s->characters[i].name, "en-US");
    return id;
}

static void on_event(void *ud, const eng_event *ev) {
    player *pl = ud;
    if (pl->json) {
        json_t *j = NULL;
        switch (ev->kind) {
        case ENG_EV_PROGRESS: j = json_pack("{s:s, s:i, s:i}", "event", "progress", "done", ev->done, "total", ev->total); break;
        case ENG_EV_COMMAND: j = json_pack("{s:s, s:o}", "event", "command", "command", json_loadb(ev->text, ev->len, 0, NULL)); break;
        case ENG_EV_SPEAKER: j = json_pack("{s:s, s:s%}", "event", "speaker", "speaker", ev->text, ev->len); break;
        case ENG_EV_TEXT: j = json_pack("{s:s, s:s%}", "event", "text", "text", ev->text, ev->len); break;
        case ENG_EV_LINE: {
            j = json_pack("{s:s, s:o, s:i, s:i}", "event", "line", "update", update_json(ev->update), "variant", ev->variant,
                          "variants", ev->n_variants);
            const eng_turn_stats *t = pl->e ? eng_last_turn(pl->e) : NULL;
            if (j && t && ev->update->source == TREE_SOURCE_MODEL)
                json_object_set_new(j, "turn", json_pack("{s:i, s:i, s:i, s:i, s:i, s:f, s:f, s:f}", "prompt", t->n_prompt,
                                                         "reused", t->n_reused, "prompt_decoded", t->n_prompt_decoded,
                                                         "decoded", t->n_decoded, "generated",
                                                         t->n_generated, "ms_prompt", t->ms_prompt, "ms_first_token",
                                                         t->ms_first_token, "ms_generate", t->ms_generate));
            break;
        }
        case ENG_EV_CHECKPOINT:
            j = json_pack("{s:s, s:I, s:s%}", "event", "checkpoint", "update", (json_int_t)ev->update->id, "summary", ev->text,
                          ev->len);
            break;
        case ENG_EV_ACHIEVEMENT: j = json_pack("{s:s, s:s}", "event", "achievement", "id", ev->text); break;
        }
        if (j) put_json(j);
        return;
    }
    switch (ev->kind) {
    case ENG_EV_PROGRESS:
        if (pl->tty) fprintf(stderr, "\r[prompt %d/%d]%s", ev->done, ev->total, ev->done == ev->total ? "\r             \r" : "");
        break;
    case ENG_EV_COMMAND: printf("  [stage] %.*s\n", (int)ev->len, ev->text); break;
    case ENG_EV_SPEAKER: printf("%s: ", speaker_name(pl, ev->text)); break;
    case ENG_EV_TEXT: printf("%.*s", (int)ev->len, ev->text); break;
    case ENG_EV_LINE:
        if (ev->update->source == TREE_SOURCE_MODEL) printf("\n");
        else printf("%s: %s\n", speaker_name(pl, ev->update->speaker), ev->update->text);
        if (ev->n_variants > 1) printf("  (variant %d/%d)\n", ev->variant, ev->n_variants);
        break;
    case ENG_EV_CHECKPOINT: printf("  [summary] %.*s\n", (int)ev->len, ev->text); break;
    case ENG_EV_ACHIEVEMENT: printf("  [achievement] %s\n", ev->text); break;
    }
    fflush(stdout);
}

static void report_error(player *pl, const char *msg) {
    if (pl->json) put_json(json_pack("{s:s, s:s}", "event", "error", "message", msg));
    else fprintf(stderr, "error: %s\n", msg);
}

// The last line's parent and its variants.
static bool variants(player *pl, int64_t **ids, int *n, int *chosen, sim_err *err) {
    int np;
    const tree_update *path = eng_path(pl->e, &np);
    if (np == 0) {
        err_set(err, SIM_ERR_ARG, "the story has no line yet");
        return false;
    }
    return tree_update_children(pl->db, pl->user, eng_story(pl->e), path[np - 1].parent, ids, n, chosen, err) == SIM_OK;
}

static void print_state(player *pl) {
    json_t *st = stage_to_json(eng_stage(pl->e), pl->s);
    int np;
    const tree_update *path = eng_path(pl->e, &np);
    const eng_turn_stats *t = eng_last_turn(pl->e);
    put_json(json_pack("{s:s, s:I, s:I, s:i, s:o, s:{s:i, s:i, s:i, s:i}}", "event", "state", "story",
                       (json_int_t)eng_story(pl->e), "head", (json_int_t)(np ? path[np - 1].id : 0), "lines", np, "stage",
                       st ? st : json_null(), "last_turn", "prompt", t->n_prompt, "reused", t->n_reused, "decoded",
                       t->n_decoded, "generated", t->n_generated));
}

// "@123 rest" -> 123 and rest; otherwise def and the whole text.
static const char *at_id(const char *arg, int64_t def, int64_t *id) {
    *id = def;
    if (arg[0] != '@') return arg;
    char *end;
    long long v = strtoll(arg + 1, &end, 10);
    if (end == arg + 1) return arg;
    *id = v;
    while (*end == ' ') end++;
    return end;
}

// Runs one command line; false on "quit".
static bool run_command(player *pl, char *line) {
    size_t n = strlen(line);
    while (n > 0 && (line[n - 1] == '\n' || line[n - 1] == '\r' || line[n - 1] == ' ')) line[--n] = 0;
    char *arg = strchr(line, ' ');
    if (arg) *arg++ = 0;
    else arg = line + n;
    while (*arg == ' ') arg++;
    const char *cmd = line;
    sim_err err = {0};
    sim_status rc = SIM_OK;
    int np;
    const tree_update *path = eng_path(pl->e, &np);
    int64_t head = np ? path[np - 1].id : 0;
    if (!*cmd || !strcmp(cmd, "advance") || !strcmp(cmd, "a")) rc = eng_advance(pl->e, &err);
    else if (!strcmp(cmd, "say")) rc = eng_say(pl->e, arg, &err);
    else if (!strcmp(cmd, "regenerate") || !strcmp(cmd, "r")) rc = eng_regenerate(pl->e, &err);
    else if (!strcmp(cmd, "variants") || !strcmp(cmd, "choose")) {
        int64_t *ids = NULL;
        int nv = 0, chosen = -1;
        if (!variants(pl, &ids, &nv, &chosen, &err)) rc = err.code ? err.code : SIM_ERR_ARG;
        else if (!strcmp(cmd, "choose")) {
            char *end;
            long k = strtol(arg, &end, 10);
            if (end == arg || *end || k < 1 || k > nv) rc = err_set(&err, SIM_ERR_ARG, "choose: give a variant 1..%d", nv);
            else rc = eng_choose(pl->e, ids[k - 1], &err);
        } else if (pl->json) {
            json_t *a = json_array();
            for (int i = 0; i < nv; i++) json_array_append_new(a, json_integer(ids[i]));
            put_json(json_pack("{s:s, s:o, s:i}", "event", "variants", "ids", a, "chosen", chosen + 1));
        } else {
            for (int i = 0; i < nv; i++) {
                tree_update u;
                if (tree_update_get(pl->db, pl->user, ids[i], &u, &err) != SIM_OK) continue;
                printf("%s %d. [%lld] %s: %s\n", i == chosen ? "*" : " ", i + 1, (long long)u.id, u.speaker, u.text);
                tree_update_free(&u);
            }
        }
        tree_ids_free(ids);
    } else if (!strcmp(cmd, "edit")) {
        int64_t id;
        const char *text = at_id(arg, head, &id);
        rc = eng_edit(pl->e, id, text, &err);
        if (rc == SIM_OK && pl->json) {
            path = eng_path(pl->e, &np);
            put_json(json_pack("{s:s, s:o}", "event", "edited", "update", update_json(&path[np - 1])));
        }
    } else if (!strcmp(cmd, "rewind")) {
        char *end;
        long long id = strtoll(arg, &end, 10);
        if (end == arg || *end) rc = err_set(&err, SIM_ERR_ARG, "rewind: give an update id (0: the start)");
        else rc = eng_rewind(pl->e, id, &err);
    } else if (!strcmp(cmd, "history")) {
        json_t *a = pl->json ? json_array() : NULL;
        for (int i = 0; i < np; i++) {
            if (a) json_array_append_new(a, update_json(&path[i]));
            else printf("[%lld] (%s) %s: %s\n", (long long)path[i].id, tree_source_name(path[i].source), path[i].speaker,
                        path[i].text);
        }
        if (a) put_json(json_pack("{s:s, s:o}", "event", "history", "lines", a));
    } else if (!strcmp(cmd, "thumbs")) {
        int64_t id;
        const char *v = at_id(arg, head, &id);
        int t = !strcmp(v, "up") ? 1 : !strcmp(v, "down") ? -1 : !strcmp(v, "none") ? 0 : 2;
        if (t == 2) rc = err_set(&err, SIM_ERR_ARG, "thumbs: up, down or none");
        else rc = eng_thumbs(pl->e, id, t, &err);
    } else if (!strcmp(cmd, "save")) {
        int64_t id;
        rc = eng_save(pl->e, *arg ? arg : "save", NULL, 0, &id, &err);
        if (rc == SIM_OK) {
            if (pl->json) put_json(json_pack("{s:s, s:I}", "event", "saved", "id", (json_int_t)id));
            else printf("  [saved %lld]\n", (long long)id);
        }
    } else if (!strcmp(cmd, "fork")) {
        int64_t story;
        eng *fresh = NULL;
        rc = eng_fork(pl->e, *arg ? arg : NULL, &story, &err);
        if (rc == SIM_OK) rc = eng_open(&fresh, pl->s, pl->db, pl->ctx, pl->ep, story, &err);
        if (rc == SIM_OK) {
            eng_free(pl->e);
            pl->e = fresh;
            eng_on_event(fresh, on_event, pl);
            if (pl->json) put_json(json_pack("{s:s, s:I}", "event", "forked", "story", (json_int_t)story));
            else printf("  [forked: now story %lld]\n", (long long)story);
        }
    } else if (!strcmp(cmd, "state")) {
        print_state(pl);
    } else if (!strcmp(cmd, "quit") || !strcmp(cmd, "q")) {
        return false;
    } else {
        rc = err_set(&err, SIM_ERR_ARG,
                     "unknown command '%s' (advance, say, regenerate, variants, choose, edit, rewind, history, thumbs, "
                     "save, fork, state, quit)",
                     cmd);
    }
    if (rc != SIM_OK) report_error(pl, err.msg);
    return true;
}

int cmd_play(int argc, char **argv) {
    const char *model_path = NULL, *db_path = "stories.db", *script = NULL, *episode_id = NULL, *title = NULL;
    const char *state_dir = NULL, *user = NULL;
    int n_ctx = 0, n_threads = 0, max_line = 96;
    uint64_t seed = 0;
    int64_t story = 0;
    bool json = false, cont = false;
    eng_params ep = eng_default_params();
    uint64_t story_u = 0;
    cli_opt opts[] = {
        {"-m|--model", OPT_STR, &model_path, "model file (GGUF)"},
        {"--db", OPT_STR, &db_path, "the story database (SQLite; created if missing) [stories.db]"},
        {"--story", OPT_U64, &story_u, "continue story ID"},
        {"--continue", OPT_FLAG, &cont, "continue the newest story of this scenario"},
        {"--episode", OPT_STR, &episode_id, "start this episode [the first]"},
        {"--title", OPT_STR, &title, "title of a new story"},
        {"--script", OPT_STR, &script, "read the commands from FILE instead of the terminal"},
        {"--json", OPT_FLAG, &json, "print every event as one JSON object per line"},
        {"--state-dir", OPT_STR, &state_dir, "where saves keep KV state files [DB.states]"},
        {"--user", OPT_STR, &user, "the stories' owner"},
        {"-c|--ctx-size", OPT_INT, &n_ctx, "context size [the scenario's recommendation, within the model's]"},
        {"-t|--threads", OPT_INT, &n_threads, "threads (0: all CPUs)"},
        {"--seed", OPT_U64, &seed, "random seed [0]"},
        {"--temp", OPT_FLOAT, &ep.sampling.temp, "temperature [0.8]"},
        {"--top-p", OPT_FLOAT, &ep.sampling.top_p, "nucleus sampling [0.95]"},
        {"--min-p", OPT_FLOAT, &ep.sampling.min_p, "min-p [0.05]"},
        {"--max-line-tokens", OPT_INT, &max_line, "most tokens of one line [96]"},
    };
    const char *pos[1];
    int n_pos, rc;
    if ((rc = cli_parse("play DIR -m MODEL [options]", argc, argv, opts, ARRAY_LEN(opts), pos, 1, &n_pos))) return rc;
    if (n_pos != 1) return cli_fail("play: give the scenario folder (or .zip)");
    if (!model_path) return cli_fail("play: give the model with -m");
    if (max_line < 1 || max_line > 4096) return cli_fail("play: --max-line-tokens must be 1..4096");
    story = (int64_t)story_u;
    scn_report rep;
    scn_report_init(&rep);
    scn_scenario *s = NULL;
    sim_err err;
    if (scn_load(&s, pos[0], &rep, &err) != SIM_OK) {
        for (int i = 0; i < rep.n; i++) fprintf(stderr, "%s: %s: %s\n", pos[0], rep.items[i].path, rep.items[i].msg);
        scn_report_free(&rep);
        return cli_fail("play: %s (run `simularity check %s`)", err.msg, pos[0]);
    }
    scn_report_free(&rep);
    int episode = 0;
    if (episode_id) {
        episode = -1;
        for (int i = 0; i < s->n_episodes; i++)
            if (!strcmp(s->episodes[i].id, episode_id)) episode = i;
        if (episode < 0) {
            scn_free(s);
            return cli_fail("play: the scenario has no episode '%s'", episode_id);
        }
    }
    model *m = cli_load_model(model_path, &(model_params){0});
    if (!m) {
        scn_free(s);
        return 1;
    }
    char states[4096];
    snprintf(states, sizeof states, "%s.states", db_path);
    if (!state_dir) state_dir = states;
    if (mkdir(state_dir, 0755) != 0 && errno != EEXIST) {
        model_free(m);
        scn_free(s);
        return cli_fail("play: cannot create %s: %s", state_dir, strerror(errno));
    }
    fwd_params fp = fwd_default_params();
    fp.n_ctx = n_ctx > 0 ? n_ctx : s->context_size;
    if (n_ctx <= 0 && m->hp.n_ctx_train > 0 && fp.n_ctx > m->hp.n_ctx_train) fp.n_ctx = m->hp.n_ctx_train;
    fp.n_threads = n_threads;
    fwd_ctx *ctx = NULL;
    tree_db *db = NULL;
    eng *e = NULL;
    player pl = {0};
    int ret = 1;
    if (fwd_new(&ctx, m, &fp, &err) != SIM_OK) {
        cli_fail("play: %s", err.msg);
        goto done;
    }
    if (tree_open(&db, db_path, &err) != SIM_OK) {
        cli_fail("play: %s", err.msg);
        goto done;
    }
    ep.user = user;
    ep.state_dir = state_dir;
    ep.sampling.seed = seed;
    ep.max_line_tokens = max_line;
    if (cont && !story) {
        tree_story *list = NULL;
        int n = 0;
        if (tree_story_list(db, user, s->id, &list, &n, &err) == SIM_OK && n > 0) story = list[0].id;
        tree_stories_free(list, n);
        if (!story) fprintf(stderr, "play: no story of '%s' yet: starting one\n", s->id);
    }
    pl = (player){.s = s, .db = db, .ctx = ctx, .ep = &ep, .user = user, .json = json, .tty = isatty(2) && !json};
    if (story) {
        if (eng_open(&e, s, db, ctx, &ep, story, &err) != SIM_OK) {
            cli_fail("play: %s", err.msg);
            goto done;
        }
        pl.e = e;
        eng_on_event(e, on_event, &pl);
        if (!json) run_command(&pl, (char[]){"history"});
    } else {
        if (!json && !script) printf("%s\n\n", scn_text(s, &s->name, "en-US"));
        // The opening lines are events too: subscribe before creating.
        eng_params cp = ep;
        if (eng_create(&e, s, db, ctx, &cp, episode, title ? title : scn_text(s, &s->name, "en-US"), &err) != SIM_OK) {
            cli_fail("play: %s", err.msg);
            goto done;
        }
        pl.e = e;
        eng_on_event(e, on_event, &pl);
        int np;
        const tree_update *path = eng_path(e, &np);
        for (int i = 0; i < np; i++) {
            eng_event ev = {.kind = ENG_EV_LINE, .update = &path[i], .variant = 1, .n_variants = 1};
            on_event(&pl, &ev);
        }
    }
    FILE *in = stdin;
    if (script && !(in = fopen(script, "r"))) {
        cli_fail("play: cannot open %s: %s", script, strerror(errno));
        goto done;
    }
    bool interactive = !script && isatty(0);
    char line[8192];
    for (;;) {
        if (interactive) {
            printf("> ");
            fflush(stdout);
        }
        if (!fgets(line, sizeof line, in)) break;
        if (line[0] == '#') continue; // comments in scripts
        if (!run_command(&pl, line)) break;
    }
    if (interactive) {
        int64_t id;
        if (eng_save(pl.e, "autosave", NULL, 0, &id, &err) == SIM_OK)
            printf("saved (story %lld): continue with --story %lld\n", (long long)eng_story(pl.e),
                   (long long)eng_story(pl.e));
    }
    if (in != stdin) fclose(in);
    if (json) print_state(&pl);
    ret = 0;
done:
    eng_free(pl.e ? pl.e : e); // pl.e: after a fork, the engine of the new story
    tree_close(db);
    fwd_free(ctx);
    model_free(m);
    scn_free(s);
    return ret;
}
