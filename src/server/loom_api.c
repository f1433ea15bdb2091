// loom_api.c — the LLooM and model mixing over HTTP (see loom_api.h).
#include "server/loom_api.h"

#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "base/strbuf.h"
#include "infer/loom.h"
#include "infer/mix.h"
#include "model/tok.h"
#include "server/api.h"
#include "server/oai.h"

struct lapi {
    const model *models[MIX_MAX_MODELS];
    char *names[MIX_MAX_MODELS];
    int n_models;
    lapi_config cfg;
    fwd_ctx *ctx[MIX_MAX_MODELS]; // made on first use
    pthread_mutex_t mu;           // one tree or mix at a time (they use every context's sequences)
};

// --- a job streamed as Server-Sent Events ----------------------------------------------
//
// The work runs on its own thread and appends events to a buffer; the
// connection's thread reads them out. When the client leaves, `gone` makes
// the work's callbacks return false (which stops it), and done() joins it.

typedef struct job {
    lapi *la;
    http_conn *c;
    json_t *req;
    bool mix;
    pthread_t th;
    pthread_mutex_t mu;
    pthread_cond_t cv;
    sbuf out;
    size_t off;
    bool finished, gone;
} job;

static void job_event(job *jb, const char *name, json_t *data) {
    char *text = data ? json_dumps(data, JSON_COMPACT) : NULL;
    json_decref(data);
    pthread_mutex_lock(&jb->mu);
    if (text) sb_printf(&jb->out, "event: %s\ndata: %s\n\n", name, text);
    pthread_cond_signal(&jb->cv);
    pthread_mutex_unlock(&jb->mu);
    free(text);
}

static bool job_alive(job *jb) {
    pthread_mutex_lock(&jb->mu);
    bool alive = !jb->gone;
    pthread_mutex_unlock(&jb->mu);
    return alive && !http_client_gone(jb->c);
}

static size_t job_read(void *ud, char *buf, size_t cap) {
    job *jb = ud;
    pthread_mutex_lock(&jb->mu);
    while (jb->off == jb->out.n && !jb->finished) pthread_cond_wait(&jb->cv, &jb->mu);
    size_t k = jb->out.n - jb->off < cap ? jb->out.n - jb->off : cap;
    if (k) memcpy(buf, jb->out.s + jb->off, k);
    jb->off += k;
    pthread_mutex_unlock(&jb->mu);
    return k;
}

static void job_done(void *ud, bool gone) {
    job *jb = ud;
    pthread_mutex_lock(&jb->mu);
    jb->gone = true;
    pthread_mutex_unlock(&jb->mu);
    pthread_join(jb->th, NULL);
    json_decref(jb->req);
    sb_free(&jb->out);
    pthread_mutex_destroy(&jb->mu);
    pthread_cond_destroy(&jb->cv);
    mem_free(jb);
}

// --- parameters ---------------------------------------------------------------------------

// A number field within [lo, hi] (absent: unchanged); false with a message.
static bool num(json_t *j, const char *key, double lo, double hi, bool integer, double *out, char *msg, size_t cap) {
    json_t *v = json_object_get(j, key);
    if (!v || json_is_null(v)) return true;
    if (!json_is_number(v) || (integer && !json_is_integer(v)) || json_number_value(v) < lo || json_number_value(v) > hi) {
        snprintf(msg, cap, "\"%s\" must be %s in %g..%g", key, integer ? "an integer" : "a number", lo, hi);
        return false;
    }
    *out = json_number_value(v);
    return true;
}

static bool flag(json_t *j, const char *key, bool *out, char *msg, size_t cap) {
    json_t *v = json_object_get(j, key);
    if (!v || json_is_null(v)) return true;
    if (!json_is_boolean(v)) {
        snprintf(msg, cap, "\"%s\" must be true or false", key);
        return false;
    }
    *out = json_is_true(v);
    return true;
}

static bool loom_params_of(json_t *j, loom_params *p, char *msg, size_t cap) {
    double depth = p->depth, max = p->max, cutoff = p->cutoff, mult = p->multiplier, split = p->split;
    bool ok = num(j, "depth", 1, 64, true, &depth, msg, cap) && num(j, "max", 1, 200, true, &max, msg, cap) &&
              num(j, "cutoff", 0.001, 1, false, &cutoff, msg, cap) && num(j, "multiplier", 0.1, 10, false, &mult, msg, cap) &&
              num(j, "split", 0, 16, true, &split, msg, cap) && flag(j, "autostop", &p->autostop, msg, cap) &&
              flag(j, "logprob", &p->logprob, msg, cap);
    p->depth = (int)depth, p->max = (int)max, p->cutoff = (float)cutoff, p->multiplier = (float)mult, p->split = (int)split;
    p->max_nodes = 20000; // a request's tree is bounded (cutoff near 0 with split 16 grows fast)
    return ok;
}

// --- the work -----------------------------------------------------------------------------------

static sim_status ensure_ctx(lapi *la, int i, sim_err *err) {
    if (la->ctx[i]) return SIM_OK;
    fwd_params fp = fwd_default_params();
    fp.n_ctx = la->cfg.n_ctx;
    fp.n_threads = la->cfg.n_threads;
    fp.n_outputs = 64; // a depth of the tree is one batch over up to 63 branches
    return fwd_new(&la->ctx[i], la->models[i], &fp, err);
}

static bool on_node(void *ud, const loom_node *n) {
    job *jb = ud;
    size_t len;
    const char *t = tok_token_text(jb->la->models[0]->vocab, n->token, false, &len);
    job_event(jb, "node", json_pack("{s:i, s:i, s:i, s:i, s:o, s:f, s:f, s:b}", "id", n->id, "parent", n->parent, "depth",
                                     n->depth, "token", n->token, "text", oai_text(t ? t : "", t ? len : 0), "prob",
                                     n->prob, "score", n->score, "leaf", n->leaf));
    return job_alive(jb);
}

static bool on_depth(void *ud, int depth, int n_open) {
    job *jb = ud;
    job_event(jb, "depth", json_pack("{s:i, s:i}", "depth", depth, "open", n_open));
    return job_alive(jb);
}

static json_t *suggestions_json(const loom_result *r) {
    json_t *a = json_array();
    for (int i = 0; i < r->n_suggestions; i++) {
        const loom_suggestion *s = &r->suggestions[i];
        json_t *toks = json_array();
        for (int k = 0; k < s->n_tokens; k++) json_array_append_new(toks, json_integer(s->tokens[k]));
        json_t *o = json_pack("{s:o, s:f, s:o, s:i}", "text", oai_text(s->text, s->len), "score", s->score, "tokens",
                              toks, "node", s->node);
        if (o) json_array_append_new(a, o);
    }
    return a;
}

static void run_loom(job *jb, sim_err *err) {
    lapi *la = jb->la;
    const char *text = json_string_value(json_object_get(jb->req, "text"));
    size_t len = loom_trim_prompt(text, strlen(text));
    loom_params p = loom_default_params();
    char msg[200];
    if (!loom_params_of(jb->req, &p, msg, sizeof msg)) {
        err_set(err, SIM_ERR_ARG, "%s", msg);
        return;
    }
    p.on_node = on_node, p.on_depth = on_depth, p.ud = jb;
    int32_t *toks = NULL;
    int n = tok_encode_alloc(la->models[0]->vocab, text, len, true, false, &toks, err);
    if (n < 0) return;
    sess *root = NULL;
    sess_params sp = sess_default_params();
    sp.context_shift = false;
    loom_result r = {0};
    uint64_t t0 = time_ns();
    if (sess_new(&root, la->ctx[0], &sp, err) == SIM_OK && sess_set_prompt(root, toks, n, NULL, err) == SIM_OK &&
        loom_expand(root, &p, &r, err) == SIM_OK) {
        job_event(jb, "done", json_pack("{s:o, s:i, s:i, s:i, s:b, s:f}", "suggestions", suggestions_json(&r), "nodes",
                                        r.n_nodes, "decodes", r.n_decodes, "prompt_tokens", n, "truncated", r.truncated,
                                        "ms", (double)(time_ns() - t0) / 1e6));
        loom_result_free(&r);
    }
    sess_free(root);
    mem_free(toks);
}

static bool on_mix_token(void *ud, int i, const mix_token *t) {
    job *jb = ud;
    json_t *probs = json_array();
    for (int k = 0; k < jb->la->n_models && k < MIX_MAX_MODELS; k++) json_array_append_new(probs, json_real(t->probs[k]));
    json_t *d = json_pack("{s:i, s:o, s:i, s:o, s:b}", "index", i, "text", oai_text(t->text, t->len), "model", t->model,
                          "probs", probs, "disagree", t->disagree);
    if (d) job_event(jb, "token", d);
    return job_alive(jb);
}

static void run_mix(job *jb, sim_err *err) {
    lapi *la = jb->la;
    const char *text = json_string_value(json_object_get(jb->req, "text"));
    mix_params p = mix_default_params();
    const char *mode = json_string_value(json_object_get(jb->req, "mode"));
    if (mode && !mix_mode_from_name(mode, &p.mode)) {
        err_set(err, SIM_ERR_ARG, "\"mode\" must be round-robin, democratic or reference");
        return;
    }
    double turn = p.turn, n = p.n_predict;
    char msg[200];
    if (!num(jb->req, "turn", 1, 64, true, &turn, msg, sizeof msg) || !num(jb->req, "n", 1, 512, true, &n, msg, sizeof msg)) {
        err_set(err, SIM_ERR_ARG, "%s", msg);
        return;
    }
    p.turn = (int)turn, p.n_predict = (int)n, p.on_token = on_mix_token, p.ud = jb;
    for (int i = 0; i < la->n_models; i++)
        if (ensure_ctx(la, i, err) != SIM_OK) return;
    mix_result r = {0};
    uint64_t t0 = time_ns();
    if (mix_generate(la->ctx, la->n_models, text, strlen(text), &p, &r, err) == SIM_OK) {
        job_event(jb, "done", json_pack("{s:o, s:i, s:f}", "text", oai_text(r.text, r.len), "tokens", r.n_tokens, "ms",
                                        (double)(time_ns() - t0) / 1e6));
        mix_result_free(&r);
    }
}

static void *job_main(void *ud) {
    job *jb = ud;
    lapi *la = jb->la;
    sim_err err = {0};
    pthread_mutex_lock(&la->mu);
    if (ensure_ctx(la, 0, &err) == SIM_OK) {
        if (jb->mix) run_mix(jb, &err);
        else run_loom(jb, &err);
    }
    pthread_mutex_unlock(&la->mu);
    if (err.code != SIM_OK && err.code != SIM_ERR_ABORTED) job_event(jb, "error", json_pack("{s:s}", "message", err.msg));
    pthread_mutex_lock(&jb->mu);
    jb->finished = true;
    pthread_cond_signal(&jb->cv);
    pthread_mutex_unlock(&jb->mu);
    return NULL;
}

// --- routes -------------------------------------------------------------------------------------

static void start(lapi *la, const http_req *rq, http_conn *c, bool mix) {
    json_t *j = api_json_body(rq, c, false);
    if (!j) return;
    json_t *t = json_object_get(j, "text");
    if (!json_is_string(t) || json_string_length(t) == 0 || strlen(json_string_value(t)) != json_string_length(t)) {
        http_respond_error(c, 400, "invalid_request_error", "text", "\"text\" is required: the text to continue (no NUL)");
        json_decref(j);
        return;
    }
    if (mix && la->n_models < 2) {
        http_respond_error(c, 400, "invalid_request_error", NULL,
                           "mixing needs two or more models: start the server with --mix-model FILE");
        json_decref(j);
        return;
    }
    // Refuse bad parameters before the stream starts.
    loom_params lp = loom_default_params();
    char msg[200];
    if (!mix && !loom_params_of(j, &lp, msg, sizeof msg)) {
        http_respond_error(c, 400, "invalid_request_error", NULL, "%s", msg);
        json_decref(j);
        return;
    }
    job *jb = mem_calloc(1, sizeof *jb);
    if (!jb) {
        json_decref(j);
        http_respond_error(c, 500, "server_error", NULL, "out of memory");
        return;
    }
    jb->la = la, jb->c = c, jb->req = j, jb->mix = mix;
    pthread_mutex_init(&jb->mu, NULL);
    pthread_cond_init(&jb->cv, NULL);
    if (pthread_create(&jb->th, NULL, job_main, jb) != 0) {
        pthread_mutex_destroy(&jb->mu);
        pthread_cond_destroy(&jb->cv);
        json_decref(j);
        mem_free(jb);
        http_respond_error(c, 500, "server_error", NULL, "cannot start a thread");
        return;
    }
    http_add_header(c, "Cache-Control", "no-cache");
    http_respond_stream(c, 200, "text/event-stream", job_read, job_done, jb);
}

static void h_loom(void *ud, const http_req *rq, http_conn *c) { start(ud, rq, c, false); }
static void h_mix(void *ud, const http_req *rq, http_conn *c) { start(ud, rq, c, true); }

static void h_models(void *ud, const http_req *rq, http_conn *c) {
    lapi *la = ud;
    json_t *a = json_array();
    for (int i = 0; i < la->n_models; i++) json_array_append_new(a, json_pack("{s:i, s:s}", "index", i, "name", la->names[i]));
    api_respond_json(c, 200, json_pack("{s:o, s:[s, s, s]}", "models", a, "modes", "round-robin", "democratic", "reference"));
}

sim_status lapi_new(lapi **out, const model *const *models, const char *const *names, int n, const lapi_config *cfg,
                    sim_err *err) {
    *out = NULL;
    if (n < 1 || n > MIX_MAX_MODELS) return err_set(err, SIM_ERR_ARG, "the LLooM takes 1..%d models", MIX_MAX_MODELS);
    lapi *la = mem_calloc(1, sizeof *la);
    if (!la) return err_set(err, SIM_ERR_NOMEM, "out of memory");
    la->cfg = *cfg;
    if (la->cfg.n_ctx <= 0) la->cfg.n_ctx = 4096;
    la->n_models = n;
    pthread_mutex_init(&la->mu, NULL);
    for (int i = 0; i < n; i++) {
        la->models[i] = models[i];
        if (!(la->names[i] = mem_strdup(names[i]))) {
            lapi_free(la);
            return err_set(err, SIM_ERR_NOMEM, "out of memory");
        }
    }
    *out = la;
    return SIM_OK;
}

void lapi_free(lapi *la) {
    if (!la) return;
    for (int i = 0; i < MIX_MAX_MODELS; i++) {
        fwd_free(la->ctx[i]);
        mem_free(la->names[i]);
    }
    pthread_mutex_destroy(&la->mu);
    mem_free(la);
}

int lapi_routes(lapi *la, http_route *out) {
    const http_route r[] = {
        {"POST", "/api/loom", h_loom, la, false, false},
        {"POST", "/api/mix", h_mix, la, false, false},
        {"GET", "/api/loom/models", h_models, la, false, false},
    };
    _Static_assert(ARRAY_LEN(r) == LAPI_N_ROUTES, "LAPI_N_ROUTES");
    memcpy(out, r, sizeof r);
    return LAPI_N_ROUTES;
}
