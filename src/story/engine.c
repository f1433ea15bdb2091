// engine.c — playing a story (see engine.h).
#include "story/engine.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "base/sha256.h"
#include "base/strbuf.h"
#include "base/utf8.h"
#include "infer/grammar.h"
#include "infer/session.h"
#include "model/tok.h"
#include "story/director.h"
#include "story/prompt.h"

#define ENG_MAX_SAY 4000          // bytes of a line the player writes
#define ENG_SUMMARY_TOKENS 120    // most tokens of a consolidation summary
#define ENG_MAX_SPEAKER 256       // bytes of a speaker id

struct eng {
    const scn_scenario *s;
    tree_db *db;
    fwd_ctx *ctx;
    const model *m;
    eng_params p;
    sess *sess;
    gram_vocab *gv;
    int64_t story;
    int episode;
    char *setup;               // prm_setup text
    tree_update *path;         // root..head
    int n_path;
    tree_checkpoint cp;        // the latest checkpoint on the path (id 0: none)
    int cp_index;              // its update's index in path (-1: none)
    stage st;                  // the stage at head
    eng_event_fn fn;
    void *ud;
    eng_turn_stats last;
    // During a turn:
    bool streaming;            // the text phase: on_text sends ENG_EV_TEXT
    uint64_t t_start;
    bool first_token_seen;
};

eng_params eng_default_params(void) {
    return (eng_params){.locale = "en-US",
                        .sampling = smp_default_params(),
                        .max_line_tokens = 96,
                        .reserve = 256,
                        .lore_window = 4,
                        .memory_hits = 3,
                        .memory_budget = 160};
}

static void emit(eng *e, const eng_event *ev) {
    if (e->fn) e->fn(e->ud, ev);
}

// --- the path and the stage ---------------------------------------------------------

static sim_status load(eng *e, sim_err *err) {
    tree_updates_free(e->path, e->n_path);
    e->path = NULL;
    e->n_path = 0;
    tree_checkpoint_free(&e->cp);
    memset(&e->cp, 0, sizeof e->cp);
    sim_status rc = tree_path(e->db, e->p.user, e->story, &e->path, &e->n_path, err);
    if (rc) return rc;
    int64_t head = e->n_path ? e->path[e->n_path - 1].id : 0;
    if ((rc = tree_checkpoint_latest_on_path(e->db, e->p.user, e->story, head, &e->cp, err))) return rc;
    e->cp_index = -1;
    for (int i = 0; i < e->n_path && e->cp.id; i++)
        if (e->path[i].id == e->cp.update) e->cp_index = i;
    if ((rc = stage_start(&e->st, e->s, e->episode, err))) return rc;
    const char *sj = e->n_path ? e->path[e->n_path - 1].stage : NULL;
    if (sj) {
        json_error_t je;
        json_t *j = json_loads(sj, 0, &je);
        if (!j) return err_set(err, SIM_ERR_FORMAT, "update %lld: its stage is not JSON: %s", (long long)head, je.text);
        rc = stage_from_json(&e->st, e->s, j, err);
        json_decref(j);
        if (rc) return err_prefix(err, "update %lld", (long long)head);
    }
    return SIM_OK;
}

static char *stage_text(const eng *e, const stage *st) {
    json_t *j = stage_to_json(st, e->s);
    char *t = j ? json_dumps(j, JSON_COMPACT) : NULL;
    json_decref(j);
    char *r = t ? mem_strdup(t) : NULL;
    free(t);
    return r;
}

// --- the prompt --------------------------------------------------------------------------

// Appends the transcript from index `from` of the path.
static void transcript(const eng *e, sbuf *b, int from) {
    for (int i = from; i < e->n_path; i++)
        prm_update(b, e->path[i].commands, e->path[i].speaker, e->path[i].minutes, e->path[i].text);
}

static int count_tokens(const eng *e, const char *text) {
    int32_t *t = NULL;
    sim_err err;
    int n = tok_encode_alloc(e->m->vocab, text, strlen(text), false, false, &t, &err);
    mem_free(t);
    return n < 0 ? 0 : n;
}

// The volatile part: memories, active lore, the stage now.
static void volatile_part(eng *e, sbuf *b) {
    const scn_scenario *s = e->s;
    // The recent lines: lore keys and the memory query come from them.
    sbuf recent = {0};
    int from = e->n_path - e->p.lore_window;
    for (int i = from < 0 ? 0 : from; i < e->n_path; i++) {
        sb_str(&recent, e->path[i].text);
        sb_str(&recent, "\n");
    }
    const char *rtext = recent.s ? recent.s : "";
    // Memories: lines of this path that left the prompt (up to the checkpoint).
    if (e->cp_index >= 0 && e->p.memory_hits > 0) {
        int64_t *allowed = mem_alloc((size_t)(e->cp_index + 1) * sizeof *allowed);
        tree_hit *hits = NULL;
        int n_hits = 0;
        sim_err err;
        if (allowed) {
            for (int i = 0; i <= e->cp_index; i++) allowed[i] = e->path[i].id;
            if (tree_memory_search(e->db, e->p.user, e->story, rtext, allowed, e->cp_index + 1, e->p.memory_hits, &hits,
                                   &n_hits, &err) != SIM_OK)
                n_hits = 0; // memories are a help, never a reason to fail a turn
        }
        int used = 0;
        for (int i = 0; i < n_hits; i++) {
            sbuf line = {0};
            sb_printf(&line, "<system> Memory: %s\n", hits[i].text);
            int cost = line.s ? count_tokens(e, line.s) : 0;
            if (line.s && used + cost <= e->p.memory_budget) {
                sb_str(b, line.s);
                used += cost;
            }
            sb_free(&line);
        }
        tree_hits_free(hits, n_hits);
        mem_free(allowed);
    }
    int *active = mem_alloc((size_t)(s->n_lore + 1) * sizeof *active);
    int n_active = active ? prm_lore_active(s, rtext, active) : 0, used = 0;
    for (int i = 0; i < n_active; i++) {
        sbuf line = {0};
        sb_printf(&line, "<system> Lore: %s\n", scn_text(s, &s->lore[active[i]].text, e->p.locale));
        int cost = line.s ? count_tokens(e, line.s) : 0;
        if (line.s && used + cost <= s->lore_budget) {
            sb_str(b, line.s);
            used += cost;
        }
        sb_free(&line);
    }
    mem_free(active);
    sb_free(&recent);
    prm_now(b, &e->st, s, e->p.locale);
}

static char *prompt_text(eng *e) {
    sbuf b = {0};
    sb_str(&b, e->setup);
    char *sum = prm_summary(e->cp.id ? e->cp.summary : NULL);
    if (sum) sb_str(&b, sum);
    else b.oom = true;
    mem_free(sum);
    transcript(e, &b, e->cp_index + 1);
    volatile_part(e, &b);
    return sb_take(&b);
}

char *eng_prompt_text(eng *e) { return prompt_text(e); }

// --- decoding --------------------------------------------------------------------------

// Makes the session hold the tokens of text (with BOS), decoding what is new
// in chunks and reporting progress.
static sim_status set_text(eng *e, const char *text, bool progress, sess_stats *st, sim_err *err) {
    int32_t *toks = NULL;
    int n = tok_encode_alloc(e->m->vocab, text, strlen(text), true, false, &toks, err);
    if (n < 0) return err->code;
    if (n > fwd_n_ctx(e->ctx)) {
        mem_free(toks);
        return err_set(err, SIM_ERR_RANGE, "the prompt is %d tokens, more than the context (%d)", n, fwd_n_ctx(e->ctx));
    }
    sim_status rc = sess_queue_prompt(e->sess, toks, n, st, err);
    mem_free(toks);
    int total = sess_n_queued(e->sess), chunk = fwd_n_batch(e->ctx);
    while (rc == SIM_OK && sess_n_queued(e->sess) > 0) {
        int take = sess_n_queued(e->sess) < chunk ? sess_n_queued(e->sess) : chunk;
        rc = sess_decode_many(&e->sess, &take, 1, err);
        if (rc == SIM_OK && progress) {
            eng_event ev = {.kind = ENG_EV_PROGRESS, .done = total - sess_n_queued(e->sess), .total = total};
            emit(e, &ev);
        }
    }
    return rc;
}

typedef struct phase {
    eng *e;
    gram_state *gs;
} phase;

static sim_status phase_constraint(void *ctx, smp_cand *cand, int n, sim_err *err) {
    phase *ph = ctx;
    return gram_filter(ph->gs, ph->e->gv, cand, (size_t)n, err);
}

static sim_status phase_token(void *ud, int seq, int32_t tok, sim_err *err) {
    phase *ph = ud;
    if (!ph->e->first_token_seen) {
        ph->e->first_token_seen = true;
        ph->e->last.ms_first_token = (double)(time_ns() - ph->e->t_start) / 1e6;
    }
    ph->e->last.n_generated++;
    return tok_is_eog(ph->e->m->vocab, tok) ? SIM_OK : gram_accept_token(ph->gs, ph->e->gv, tok, err);
}

static bool phase_text(void *ud, int seq, const char *text, size_t len) {
    phase *ph = ud;
    if (ph->e->streaming) {
        eng_event ev = {.kind = ENG_EV_TEXT, .text = text, .len = len};
        emit(ph->e, &ev);
    }
    return true;
}

// Generates under grammar gbnf after the text `so_far` (which the session is
// made to hold first); appends the output to so_far and returns a copy of it.
static char *phase_run(eng *e, smp_ctx *smp, sbuf *so_far, const char *gbnf, int n_predict, sim_err *err) {
    if (!gbnf || so_far->oom) {
        err_set(err, SIM_ERR_NOMEM, "out of memory");
        return NULL;
    }
    sess_stats st;
    if (set_text(e, so_far->s, false, &st, err) != SIM_OK) return NULL;
    e->last.n_decoded += st.n_decoded;
    gram_grammar *g = NULL;
    phase ph = {.e = e};
    char *out = NULL;
    if (gram_parse(&g, gbnf, strlen(gbnf), err) != SIM_OK || gram_state_new(&ph.gs, g, err) != SIM_OK) {
        err_prefix(err, "the director grammar");
        goto done;
    }
    smp_set_constraint(smp, phase_constraint, &ph);
    sess_gen_params gp = {.n_predict = n_predict, .on_text = phase_text, .on_token = phase_token, .ud = &ph};
    sess_result r;
    uint64_t t0 = time_ns();
    if (sess_generate(e->sess, smp, &gp, &r, err) != SIM_OK) goto done;
    e->last.ms_generate += (double)(time_ns() - t0) / 1e6;
    sb_put(so_far, r.text, r.len);
    out = mem_strndup(r.text, r.len);
    sess_result_free(&r);
    if (!out) err_set(err, SIM_ERR_NOMEM, "out of memory");
done:
    smp_set_constraint(smp, NULL, NULL);
    gram_state_free(ph.gs);
    gram_free(g);
    return out;
}

// --- consolidation --------------------------------------------------------------------------

// Summarizes the oldest part of the transcript into a checkpoint.
static sim_status consolidate(eng *e, smp_ctx *smp, sim_err *err) {
    int first = e->cp_index + 1, n_lines = e->n_path - first;
    if (n_lines < 2)
        return err_set(err, SIM_ERR_RANGE,
                       "the prompt does not fit the context even without the transcript (context %d tokens, "
                       "reserve %d): use a larger context",
                       fwd_n_ctx(e->ctx), e->p.reserve);
    int cut = first + n_lines / 2 - 1; // the last line summarized
    sbuf b = {0};
    sb_str(&b, e->setup);
    if (e->cp.id && e->cp.summary && *e->cp.summary) sb_printf(&b, "# Earlier\n%s\n\n", e->cp.summary);
    sb_str(&b, "# Transcript\n");
    for (int i = first; i <= cut; i++)
        prm_update(&b, e->path[i].commands, e->path[i].speaker, e->path[i].minutes, e->path[i].text);
    sb_str(&b, "<system> Summary of everything above, in a few sentences: ");
    char *g = dir_text_grammar();
    char *sum = phase_run(e, smp, &b, g, ENG_SUMMARY_TOKENS, err);
    mem_free(g);
    sb_free(&b);
    if (!sum) return err_prefix(err, "consolidating the story");
    size_t n = strlen(sum);
    while (n > 0 && (sum[n - 1] == '\n' || sum[n - 1] == ' ')) sum[--n] = 0;
    // The checkpoint carries a KV state file of the prompt's new stable
    // prefix (setup, summary, the transcript after the cut), which the next
    // turn processes anyway: a story opened at this point starts from it.
    char state[TREE_MAX_PATH] = "";
    if (e->p.state_dir) {
        sbuf pre = {0};
        sb_str(&pre, e->setup);
        char *ps = prm_summary(sum);
        if (ps) sb_str(&pre, ps);
        mem_free(ps);
        for (int i = cut + 1; i < e->n_path; i++)
            prm_update(&pre, e->path[i].commands, e->path[i].speaker, e->path[i].minutes, e->path[i].text);
        sess_stats st;
        snprintf(state, sizeof state, "%s/story%lld-checkpoint%lld-%llx.state", e->p.state_dir, (long long)e->story,
                 (long long)e->path[cut].id, (unsigned long long)time_ns());
        sim_err e2;
        if (pre.oom || set_text(e, pre.s, true, &st, &e2) != SIM_OK || sess_save(e->sess, state, &e2) != SIM_OK)
            state[0] = 0; // a checkpoint without a state file still works (it is re-processed once)
        sb_free(&pre);
    }
    int64_t id;
    sim_status rc = tree_checkpoint_add(e->db, e->p.user, e->story, e->path[cut].id, sum, e->path[cut].stage,
                                        state[0] ? state : NULL, &id, err);
    if (rc == SIM_OK) {
        tree_update u = {.id = e->path[cut].id};
        eng_event ev = {.kind = ENG_EV_CHECKPOINT, .text = sum, .len = n, .update = &u};
        emit(e, &ev);
        rc = load(e, err);
    }
    mem_free(sum);
    return rc;
}

// The prompt text of the next turn, consolidating until it fits the budget.
static char *fitted_prompt(eng *e, smp_ctx *smp, sim_err *err) {
    int budget = fwd_n_ctx(e->ctx) - e->p.reserve;
    int setup = count_tokens(e, e->setup);
    if (setup + 64 > budget) {
        err_set(err, SIM_ERR_RANGE,
                "the scenario's setup is %d tokens for this model; a context of %d minus the turn's reserve of %d "
                "leaves %d: use a context of at least %d",
                setup, fwd_n_ctx(e->ctx), e->p.reserve, budget, setup + e->p.reserve + 1024);
        return NULL;
    }
    for (;;) {
        char *text = prompt_text(e);
        if (!text) {
            err_set(err, SIM_ERR_NOMEM, "out of memory");
            return NULL;
        }
        if (count_tokens(e, text) + 1 <= budget) return text;
        mem_free(text);
        if (consolidate(e, smp, err) != SIM_OK) return NULL;
    }
}

// --- turns -----------------------------------------------------------------------------------

static sim_status new_sampler(eng *e, smp_ctx **smp, sim_err *err) {
    tree_completion *log = NULL;
    int n_log = 0;
    // A different seed per turn (and per variant), reproducible from the log's length.
    sim_status rc = tree_completion_list(e->db, e->p.user, e->story, 1000000, &log, &n_log, err);
    tree_completions_free(log, n_log);
    if (rc) return rc;
    smp_params sp = e->p.sampling;
    sp.seed += (uint64_t)n_log;
    sp.n_ctx = fwd_n_ctx(e->ctx);
    return smp_new(smp, e->m->hp.n_vocab, &sp, err);
}

// Stores an update after the head and reloads; emits ENG_EV_LINE and achievements.
static sim_status store(eng *e, const char *speaker, const char *commands, const char *text, const stage *after,
                        tree_source source, int64_t *id, sim_err *err) {
    char *sj = stage_text(e, after);
    if (!sj) return err_set(err, SIM_ERR_NOMEM, "out of memory");
    tree_update_in in = {.speaker = speaker, .commands = commands, .text = text, .minutes = after->minutes, .stage = sj,
                         .source = source};
    int64_t parent = e->n_path ? e->path[e->n_path - 1].id : 0;
    sim_status rc = tree_update_add(e->db, e->p.user, e->story, parent, &in, id, err);
    mem_free(sj);
    if (rc || (rc = load(e, err))) return rc;
    // Achievements whose condition now holds, recorded once.
    tree_achievement *got = NULL;
    int n_got = 0;
    if ((rc = tree_achievement_list(e->db, e->p.user, e->story, &got, &n_got, err))) return rc;
    for (int i = 0; i < e->s->n_achievements && rc == SIM_OK; i++) {
        const scn_achievement *a = &e->s->achievements[i];
        bool had = false;
        for (int k = 0; k < n_got; k++) had |= strcmp(got[k].achievement, a->id) == 0;
        if (had || !stage_holds(&e->st, e->s, &a->when)) continue;
        if ((rc = tree_achievement_unlock(e->db, e->p.user, e->story, a->id, *id, err)) == SIM_OK) {
            eng_event ev = {.kind = ENG_EV_ACHIEVEMENT, .text = a->id, .len = strlen(a->id)};
            emit(e, &ev);
        }
    }
    tree_achievements_free(got, n_got);
    if (rc) return rc;
    int64_t *ids = NULL;
    int n = 0, chosen = -1;
    if ((rc = tree_update_children(e->db, e->p.user, e->story, parent, &ids, &n, &chosen, err))) return rc;
    tree_ids_free(ids);
    eng_event ev = {.kind = ENG_EV_LINE, .update = &e->path[e->n_path - 1], .variant = chosen + 1, .n_variants = n};
    emit(e, &ev);
    return SIM_OK;
}

static void prompt_hash(const char *text, char hex[SHA256_HEX_SIZE]) {
    uint8_t d[SHA256_SIZE];
    sha256(text, strlen(text), d);
    sha256_hex(d, hex);
}

// One model turn after the head (see director.h for the phases).
static sim_status model_turn(eng *e, sim_err *err) {
    memset(&e->last, 0, sizeof e->last);
    e->t_start = time_ns();
    e->first_token_seen = false;
    smp_ctx *smp = NULL;
    sim_status rc = new_sampler(e, &smp, err);
    if (rc) return rc;
    char *prompt = fitted_prompt(e, smp, err);
    sbuf b = {0}, cmds = {0};
    char *out = NULL, *g = NULL;
    stage st = e->st;
    if (!prompt) {
        rc = err->code;
        goto done;
    }
    // The prompt, with progress.
    sess_stats ps;
    uint64_t t0 = time_ns();
    if ((rc = set_text(e, prompt, true, &ps, err))) goto done;
    e->last.ms_prompt = (double)(time_ns() - t0) / 1e6;
    e->last.n_prompt = sess_n_tokens(e->sess);
    e->last.n_reused = ps.n_reused;
    e->last.n_decoded = e->last.n_prompt_decoded = ps.n_decoded;
    sb_str(&b, prompt);

    // Open: commands or a speaker.
    g = dir_open_grammar(&st, e->s);
    if (!(out = phase_run(e, smp, &b, g, 32, err))) goto fail;
    mem_free(g);
    g = NULL;
    if (strcmp(out, DIR_SYSTEM) == 0) {
        sb_str(&cmds, "[");
        for (int k = 0; k < DIR_MAX_COMMANDS; k++) {
            mem_free(out);
            g = dir_command_grammar(&st, e->s, k == DIR_MAX_COMMANDS - 1);
            if (!(out = phase_run(e, smp, &b, g, 400, err))) goto fail;
            mem_free(g);
            g = NULL;
            size_t len = strlen(out);
            bool more = len > 0 && out[len - 1] == ',';
            bool end = len >= 2 && strcmp(out + len - 2, "]\n") == 0;
            if (!more && !end) {
                rc = err_set(err, SIM_ERR_RANGE, "the model did not finish a stage command: %.200s", out);
                goto done;
            }
            out[len - (more ? 1 : 2)] = 0;
            json_error_t je;
            json_t *j = json_loads(out, 0, &je);
            stage_cmd c;
            rc = j ? stage_check(&st, e->s, j, &c, err) : err_set(err, SIM_ERR_FORMAT, "a stage command is not JSON: %s", je.text);
            json_decref(j);
            if (rc) goto done; // the grammar makes this unreachable; refuse rather than store it
            stage_apply(&st, &c);
            e->st = st; // the volatile "now" is not rebuilt mid-turn; this is the stage the next phases see
            sb_printf(&cmds, "%s%s", k ? "," : "", out);
            eng_event ev = {.kind = ENG_EV_COMMAND, .text = out, .len = strlen(out)};
            emit(e, &ev);
            if (!more) break;
        }
        sb_str(&cmds, "]");
        mem_free(out);
        g = dir_speaker_grammar(&st, e->s);
        if (!(out = phase_run(e, smp, &b, g, 32, err))) goto fail;
        mem_free(g);
        g = NULL;
    }
    // The speaker "<id>".
    size_t ol = strlen(out);
    if (ol < 3 || out[0] != '<' || out[ol - 1] != '>') {
        rc = err_set(err, SIM_ERR_RANGE, "the model did not name a speaker: %.100s", out);
        goto done;
    }
    out[ol - 1] = 0;
    char speaker[ENG_MAX_SPEAKER];
    snprintf(speaker, sizeof speaker, "%s", out + 1);
    mem_free(out);
    out = NULL;
    eng_event sev = {.kind = ENG_EV_SPEAKER, .text = speaker, .len = strlen(speaker)};
    emit(e, &sev);
    char clock[STAGE_CLOCK_SIZE];
    stage_clock_format(st.minutes, clock);
    sb_printf(&b, " (%s) ", clock);
    // The text.
    g = dir_text_grammar();
    e->streaming = true;
    out = phase_run(e, smp, &b, g, e->p.max_line_tokens, err);
    e->streaming = false;
    if (!out) goto fail;
    // A line cut by the token limit may end inside a character, and byte
    // tokens may form invalid sequences: store valid UTF-8 only.
    size_t tl = utf8_complete_prefix(out, strlen(out));
    char *clean = mem_alloc(3 * tl + 1);
    if (!clean) {
        rc = err_set(err, SIM_ERR_NOMEM, "out of memory");
        goto done;
    }
    clean[utf8_sanitize(out, tl, clean)] = 0;
    mem_free(out);
    out = clean;
    tl = strlen(out);
    while (tl > 0 && (out[tl - 1] == '\n' || out[tl - 1] == ' ')) out[--tl] = 0;
    if (tl == 0) {
        mem_free(out);
        out = mem_strdup("…");
    }
    int64_t id;
    stage before = e->st;
    if ((rc = store(e, speaker, cmds.s, out, &st, TREE_SOURCE_MODEL, &id, err))) {
        e->st = before;
        goto done;
    }
    // The completion log.
    char hash[SHA256_HEX_SIZE];
    prompt_hash(prompt, hash);
    char opts[256];
    snprintf(opts, sizeof opts, "{\"temp\":%g,\"top_k\":%d,\"top_p\":%g,\"min_p\":%g,\"seed\":%llu,\"max_line_tokens\":%d}",
             e->p.sampling.temp, e->p.sampling.top_k, e->p.sampling.top_p, e->p.sampling.min_p,
             (unsigned long long)e->p.sampling.seed, e->p.max_line_tokens);
    tree_completion c = {.update = id, .prompt_hash = hash, .options = opts, .n_prompt_tokens = e->last.n_prompt,
                         .n_reused = e->last.n_reused, .n_decoded = e->last.n_decoded,
                         .n_generated = e->last.n_generated, .ms_prompt = e->last.ms_prompt,
                         .ms_generate = e->last.ms_generate};
    rc = tree_completion_add(e->db, e->p.user, e->story, &c, &id, err);
    goto done;
fail:
    rc = err->code ? err->code : SIM_ERR_NOMEM;
done:
    if (rc) {
        // Nothing was stored: the stage is the head's again.
        sim_err e2;
        load(e, &e2);
    }
    mem_free(g);
    mem_free(out);
    mem_free(prompt);
    sb_free(&b);
    sb_free(&cmds);
    smp_free(smp);
    return rc;
}

sim_status eng_advance(eng *e, sim_err *err) { return model_turn(e, err); }

sim_status eng_say(eng *e, const char *text, sim_err *err) {
    size_t n = strlen(text);
    if (n == 0) return err_set(err, SIM_ERR_ARG, "say: the line is empty");
    if (n > ENG_MAX_SAY) return err_set(err, SIM_ERR_ARG, "say: the line is %zu bytes (at most %d)", n, ENG_MAX_SAY);
    if (!utf8_valid(text, n)) return err_set(err, SIM_ERR_ARG, "say: the line is not valid UTF-8");
    char *line = mem_strdup(text);
    if (!line) return err_set(err, SIM_ERR_NOMEM, "out of memory");
    for (char *p = line; *p; p++)
        if ((unsigned char)*p < 0x20 || *p == 0x7F) *p = ' '; // one line: newlines and controls become spaces
    int64_t id;
    stage st = e->st;
    sim_status rc = store(e, "player", NULL, line, &st, TREE_SOURCE_PLAYER, &id, err);
    mem_free(line);
    return rc;
}

sim_status eng_regenerate(eng *e, sim_err *err) {
    if (e->n_path == 0) return err_set(err, SIM_ERR_ARG, "regenerate: the story has no line yet");
    const tree_update *h = &e->path[e->n_path - 1];
    if (h->source != TREE_SOURCE_MODEL)
        return err_set(err, SIM_ERR_ARG, "regenerate: the last line was not written by the model (advance instead)");
    int64_t head = h->id, parent = h->parent;
    sim_status rc = tree_rewind(e->db, e->p.user, e->story, parent, err);
    if (rc || (rc = load(e, err))) return rc;
    if ((rc = model_turn(e, err)) != SIM_OK) {
        sim_err e2;
        if (tree_rewind(e->db, e->p.user, e->story, head, &e2) == SIM_OK) load(e, &e2);
    }
    return rc;
}

// Refuses an update that is not this story's (as "not found").
static sim_status own_update(eng *e, int64_t update, sim_err *err) {
    tree_update u;
    sim_status rc = tree_update_get(e->db, e->p.user, update, &u, err);
    if (rc) return rc;
    bool mine = u.story == e->story;
    tree_update_free(&u);
    return mine ? SIM_OK : err_set(err, SIM_ERR_ARG, "update %lld not found", (long long)update);
}

sim_status eng_choose(eng *e, int64_t update, sim_err *err) {
    sim_status rc = own_update(e, update, err);
    if (rc || (rc = tree_update_choose(e->db, e->p.user, update, err))) return rc;
    return load(e, err);
}

sim_status eng_edit(eng *e, int64_t update, const char *text, sim_err *err) {
    size_t n = strlen(text);
    if (n == 0 || n > ENG_MAX_SAY || !utf8_valid(text, n) || strpbrk(text, "\n\r"))
        return err_set(err, SIM_ERR_ARG, "edit: the text must be one line of 1..%d bytes of UTF-8", ENG_MAX_SAY);
    sim_status rc = own_update(e, update, err);
    if (rc) return rc;
    int64_t id;
    if ((rc = tree_update_edit(e->db, e->p.user, update, text, NULL, &id, err))) return rc;
    return load(e, err);
}

sim_status eng_rewind(eng *e, int64_t update, sim_err *err) {
    sim_status rc = tree_rewind(e->db, e->p.user, e->story, update, err);
    return rc ? rc : load(e, err);
}

sim_status eng_thumbs(eng *e, int64_t update, int thumbs, sim_err *err) {
    sim_status rc = tree_update_thumbs(e->db, e->p.user, update, thumbs, err);
    return rc ? rc : load(e, err);
}

sim_status eng_prepare(eng *e, sim_err *err) {
    smp_ctx *smp = NULL;
    sim_status rc = new_sampler(e, &smp, err);
    if (rc) return rc;
    char *prompt = fitted_prompt(e, smp, err);
    smp_free(smp);
    if (!prompt) return err->code;
    sess_stats st;
    uint64_t t0 = time_ns();
    rc = set_text(e, prompt, true, &st, err);
    e->last = (eng_turn_stats){.n_prompt = sess_n_tokens(e->sess), .n_reused = st.n_reused, .n_decoded = st.n_decoded,
                               .n_prompt_decoded = st.n_decoded,
                               .ms_prompt = (double)(time_ns() - t0) / 1e6};
    mem_free(prompt);
    return rc;
}

sim_status eng_save(eng *e, const char *name, const uint8_t *thumb, size_t n_thumb, int64_t *save_id, sim_err *err) {
    int64_t head = e->n_path ? e->path[e->n_path - 1].id : 0;
    char path[TREE_MAX_PATH] = "";
    sim_status rc;
    if (e->p.state_dir) {
        if ((rc = eng_prepare(e, err))) return rc;
        snprintf(path, sizeof path, "%s/story%lld-update%lld-%llx.state", e->p.state_dir, (long long)e->story,
                 (long long)head, (unsigned long long)time_ns());
        if ((rc = sess_save(e->sess, path, err))) return rc;
    }
    return tree_save_add(e->db, e->p.user, e->story, head, name, thumb, n_thumb, path[0] ? path : NULL, save_id, err);
}

// --- lifetime ----------------------------------------------------------------------------------

static sim_status start(eng **out, const scn_scenario *s, tree_db *db, fwd_ctx *ctx, const eng_params *p,
                        int64_t story, int episode, sim_err *err) {
    *out = NULL;
    eng *e = mem_calloc(1, sizeof *e);
    if (!e) return err_set(err, SIM_ERR_NOMEM, "out of memory");
    e->s = s, e->db = db, e->ctx = ctx, e->m = fwd_model(ctx), e->p = *p, e->story = story, e->episode = episode;
    e->cp_index = -1;
    sess_params sp = sess_default_params();
    sim_status rc;
    if ((rc = sess_new(&e->sess, ctx, &sp, err)) || (rc = gram_vocab_new(&e->gv, e->m->vocab, err))) goto fail;
    if (!(e->setup = prm_setup(s, episode, p->locale))) {
        rc = err_set(err, SIM_ERR_NOMEM, "out of memory");
        goto fail;
    }
    if ((rc = load(e, err))) goto fail;
    *out = e;
    return SIM_OK;
fail:
    eng_free(e);
    return rc;
}

sim_status eng_create(eng **out, const scn_scenario *s, tree_db *db, fwd_ctx *ctx, const eng_params *p, int episode,
                      const char *title, sim_err *err) {
    *out = NULL;
    if (episode < 0 || episode >= s->n_episodes)
        return err_set(err, SIM_ERR_ARG, "episode %d is out of range (the scenario has %d)", episode, s->n_episodes);
    int64_t story;
    sim_status rc = tree_story_create(db, p->user, s->id, s->scenario_version, s->episodes[episode].id, title, &story, err);
    if (rc) return rc;
    if ((rc = start(out, s, db, ctx, p, story, episode, err))) return rc;
    eng *e = *out;
    const scn_episode *ep = &s->episodes[episode];
    for (int i = 0; i < ep->n_opening && rc == SIM_OK; i++) {
        const scn_line *l = &ep->opening[i];
        const char *who = l->speaker_index >= 0 ? s->characters[l->speaker_index].id : l->speaker;
        stage st = e->st;
        int64_t id;
        rc = store(e, who, NULL, scn_text(s, &l->text, p->locale), &st, TREE_SOURCE_SCRIPT, &id, err);
    }
    if (rc) {
        eng_free(e);
        *out = NULL;
        sim_err e2;
        tree_story_delete(db, p->user, story, &e2);
    }
    return rc;
}

sim_status eng_open(eng **out, const scn_scenario *s, tree_db *db, fwd_ctx *ctx, const eng_params *p, int64_t story,
                    sim_err *err) {
    *out = NULL;
    tree_story ts;
    sim_status rc = tree_story_get(db, p->user, story, &ts, err);
    if (rc) return rc;
    int episode = -1;
    for (int i = 0; i < s->n_episodes; i++)
        if (strcmp(s->episodes[i].id, ts.episode) == 0) episode = i;
    if (strcmp(ts.scenario, s->id) != 0 || episode < 0) {
        rc = err_set(err, SIM_ERR_ARG, "story %lld belongs to scenario '%s' episode '%s', not to this scenario ('%s')",
                     (long long)story, ts.scenario, ts.episode, s->id);
        tree_story_free(&ts);
        return rc;
    }
    tree_story_free(&ts);
    if ((rc = start(out, s, db, ctx, p, story, episode, err))) return rc;
    eng *e = *out;
    // The newest save of this head with a state file, else the checkpoint's.
    int64_t head = e->n_path ? e->path[e->n_path - 1].id : 0;
    tree_save *saves = NULL;
    int n = 0;
    sim_err e2;
    if (tree_save_list(db, p->user, story, &saves, &n, &e2) == SIM_OK) {
        for (int i = 0; i < n; i++) {
            if (saves[i].update != head || !saves[i].state_path) continue;
            if (sess_load(e->sess, saves[i].state_path, &e2) == SIM_OK) break;
        }
    }
    tree_saves_free(saves, n);
    if (sess_n_tokens(e->sess) == 0 && e->cp.id && e->cp.state_path) sess_load(e->sess, e->cp.state_path, &e2);
    return SIM_OK;
}

void eng_free(eng *e) {
    if (!e) return;
    sess_free(e->sess);
    gram_vocab_free(e->gv);
    mem_free(e->setup);
    tree_updates_free(e->path, e->n_path);
    tree_checkpoint_free(&e->cp);
    mem_free(e);
}

void eng_on_event(eng *e, eng_event_fn fn, void *ud) {
    e->fn = fn;
    e->ud = ud;
}

sim_status eng_fork(eng *e, const char *title, int64_t *story, sim_err *err) {
    int64_t head = e->n_path ? e->path[e->n_path - 1].id : 0;
    return tree_story_fork(e->db, e->p.user, e->story, head, title, story, err);
}

void eng_set_sampling(eng *e, const smp_params *sp, int max_line_tokens) {
    e->p.sampling = *sp;
    if (max_line_tokens > 0) e->p.max_line_tokens = max_line_tokens;
}

int64_t eng_story(const eng *e) { return e->story; }
const stage *eng_stage(const eng *e) { return &e->st; }
const tree_update *eng_path(const eng *e, int *n) {
    *n = e->n_path;
    return e->path;
}
const eng_turn_stats *eng_last_turn(const eng *e) { return &e->last; }
sess *eng_session(const eng *e) { return e->sess; }
