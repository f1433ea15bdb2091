// api.c — request handlers: parse, tokenize, schedule, answer (whole or
// streamed as Server-Sent Events).
#include "server/api.h"

#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "model/chat.h"
#include "server/oai.h"

#define KEEPALIVE_MS 5000 // an SSE comment this often while nothing else is sent

enum { EP_COMPLETIONS, EP_CHAT, EP_MODELS, EP_HEALTH, EP_METRICS, EP_TOKENIZE, EP_DETOKENIZE, EP_PROPS, EP_COUNT };
static const char *const ep_names[EP_COUNT] = {"completions", "chat_completions", "models",     "health",
                                               "metrics",     "tokenize",         "detokenize", "props"};

struct api {
    const model *m;
    sched *s;
    api_config cfg;
    char *model_name;
    char *chat_template; // NULL: ChatML
    chat_template *tmpl; // the chat template, parsed (ChatML when the model has none)
    char bos[64], eos[64];
    atomic_ullong n_requests[EP_COUNT];
    atomic_ullong n_errors[EP_COUNT];
    atomic_ullong next_id;
    atomic_int active; // generation requests not yet answered in full
};

api_config api_default_config(void) { return (api_config){.model_name = "model", .max_tokens = 4096, .timeout_s = 600}; }

// --- helpers -------------------------------------------------------------------------

void api_respond_json(http_conn *c, int status, json_t *j) {
    char *text = j ? json_dumps(j, JSON_COMPACT) : NULL;
    if (text) http_respond(c, status, "application/json", text, strlen(text));
    else http_respond_error(c, 500, "server_error", NULL, "out of memory");
    free(text);
    json_decref(j);
}

// --- generation ----------------------------------------------------------------------

// What one generation request carries (a stream's state too).
typedef struct gen_req {
    api *a;
    http_conn *c; // valid until the response is over
    oai_kind kind;
    sched_task *t;
    sched_update u;
    char id[48];
    long long created;
    bool include_usage, logprobs;
    uint64_t deadline; // time_ns; 0: none
    // Streams: formatted bytes waiting to be read.
    char *out;
    size_t out_len, out_off, out_cap;
    bool finished, timed_out;
    uint64_t last_send;
    size_t text_off; // text bytes sent so far (completions' text_offset)
    // Whole responses: everything generated.
    char *text;
    size_t text_len, text_cap;
    sched_tok *toks;
    int n_toks, toks_cap;
} gen_req;

static void gen_req_free(gen_req *g) {
    atomic_fetch_sub(&g->a->active, 1);
    sched_release(g->t);
    sched_update_free(&g->u);
    mem_free(g->out);
    mem_free(g->text);
    mem_free(g->toks);
    mem_free(g);
}

static bool grow(char **p, size_t *cap, size_t need) {
    if (need <= *cap) return true;
    size_t c = MAX(*cap * 2, need + 1024);
    char *np = mem_realloc(*p, c);
    if (!np) return false;
    *p = np;
    *cap = c;
    return true;
}

// Appends "data: <json>\n\n" (consumes j).
static void sse_put(gen_req *g, json_t *j) {
    char *text = j ? json_dumps(j, JSON_COMPACT) : NULL;
    json_decref(j);
    if (!text) return;
    size_t n = strlen(text);
    if (grow(&g->out, &g->out_cap, g->out_len + n + 8)) {
        memcpy(g->out + g->out_len, "data: ", 6);
        memcpy(g->out + g->out_len + 6, text, n);
        memcpy(g->out + g->out_len + 6 + n, "\n\n", 2);
        g->out_len += n + 8;
    }
    free(text);
}

static void sse_raw(gen_req *g, const char *s) {
    size_t n = strlen(s);
    if (grow(&g->out, &g->out_cap, g->out_len + n)) {
        memcpy(g->out + g->out_len, s, n);
        g->out_len += n;
    }
}

// One choice of a chunk or a response.
static json_t *choice(gen_req *g, const char *text, size_t len, const sched_tok *toks, int n_toks, const char *finish,
                      bool chunk) {
    json_t *c = json_pack("{s:i}", "index", 0);
    json_t *lp = g->logprobs && n_toks ? oai_logprobs(g->kind, g->a->m->vocab, toks, n_toks, g->text_off) : json_null();
    if (!g->logprobs) lp = json_null();
    if (g->kind == OAI_COMPLETION) json_object_set_new(c, "text", oai_text(text, len));
    else if (chunk) {
        json_t *delta = json_object();
        if (len || !finish) json_object_set_new(delta, "content", oai_text(text, len));
        json_object_set_new(c, "delta", delta);
    } else
        json_object_set_new(c, "message", json_pack("{s:s,s:o}", "role", "assistant", "content", oai_text(text, len)));
    json_object_set_new(c, "logprobs", lp);
    json_object_set_new(c, "finish_reason", finish ? json_string(finish) : json_null());
    return c;
}

static json_t *envelope(gen_req *g, bool chunk) {
    const char *object = g->kind == OAI_COMPLETION ? "text_completion" : chunk ? "chat.completion.chunk" : "chat.completion";
    return json_pack("{s:s,s:s,s:I,s:s,s:s}", "id", g->id, "object", object, "created", (json_int_t)g->created, "model",
                     g->a->model_name, "system_fingerprint", "simularity-" SIM_VERSION_STRING);
}

static const char *finish_of(gen_req *g) { return g->timed_out ? "length" : oai_finish_reason(g->u.reason); }

static void error_object(json_t **out, const sched_update *u) {
    *out = json_pack("{s:{s:s,s:s,s:n,s:n}}", "error", "message", u->err.msg, "type", "server_error", "param", "code");
}

// Formats what the last sched_take brought as SSE events.
static void stream_format(gen_req *g) {
    sched_update *u = &g->u;
    if (u->first && g->kind == OAI_CHAT) { // OpenAI opens with the role
        json_t *env = envelope(g, true);
        json_t *c = json_pack("{s:i,s:{s:s,s:s},s:n,s:n}", "index", 0, "delta", "role", "assistant", "content", "",
                              "logprobs", "finish_reason");
        json_object_set_new(env, "choices", json_pack("[o]", c));
        sse_put(g, env);
    }
    if (u->len || u->n_toks) {
        json_t *env = envelope(g, true);
        json_object_set_new(env, "choices", json_pack("[o]", choice(g, u->text, u->len, u->toks, u->n_toks, NULL, true)));
        sse_put(g, env);
        g->text_off += u->len;
    }
    if (!u->done) return;
    if (u->status) {
        json_t *e;
        error_object(&e, u);
        sse_put(g, e);
    } else {
        json_t *env = envelope(g, true);
        json_object_set_new(env, "choices", json_pack("[o]", choice(g, "", 0, NULL, 0, finish_of(g), true)));
        json_object_set_new(env, "timings", oai_timings(&u->usage));
        if (!g->include_usage) json_object_set_new(env, "usage", oai_usage(&u->usage));
        sse_put(g, env);
        if (g->include_usage) {
            env = envelope(g, true);
            json_object_set_new(env, "choices", json_array());
            json_object_set_new(env, "usage", oai_usage(&u->usage));
            sse_put(g, env);
        }
    }
    sse_raw(g, "data: [DONE]\n\n");
    g->finished = true;
}

static void check_deadline(gen_req *g) {
    if (g->deadline && !g->timed_out && time_ns() > g->deadline) {
        g->timed_out = true;
        sched_cancel(g->t);
    }
}

static size_t stream_read(void *ud, char *buf, size_t cap) {
    gen_req *g = ud;
    while (g->out_off == g->out_len) {
        if (g->finished) return 0;
        if (http_client_gone(g->c)) { // stop the work now, not at the next write
            sched_cancel(g->t);
            return 0;
        }
        g->out_len = g->out_off = 0;
        if (sched_take(g->t, &g->u, 250)) stream_format(g);
        else if (time_ns() - g->last_send > (uint64_t)KEEPALIVE_MS * 1000000)
            sse_raw(g, ": keep-alive\n\n"); // lets a write notice a client that left
        check_deadline(g);
    }
    size_t n = MIN(cap, g->out_len - g->out_off);
    memcpy(buf, g->out + g->out_off, n);
    g->out_off += n;
    g->last_send = time_ns();
    return n;
}

static void stream_done(void *ud, bool client_gone) { gen_req_free(ud); }

// Waits for the whole result, watching the client and the deadline.
static void respond_whole(gen_req *g, http_conn *c) {
    for (;;) {
        if (sched_take(g->t, &g->u, 200)) {
            sched_update *u = &g->u;
            if (!grow(&g->text, &g->text_cap, g->text_len + u->len + 1)) sched_cancel(g->t);
            else {
                memcpy(g->text + g->text_len, u->text, u->len);
                g->text_len += u->len;
            }
            if (u->n_toks) {
                if (g->n_toks + u->n_toks > g->toks_cap) {
                    int cap = MAX(g->toks_cap * 2, g->n_toks + u->n_toks + 16);
                    sched_tok *np = mem_realloc(g->toks, (size_t)cap * sizeof *np);
                    if (np) {
                        g->toks = np;
                        g->toks_cap = cap;
                    }
                }
                if (g->n_toks + u->n_toks <= g->toks_cap) {
                    memcpy(g->toks + g->n_toks, u->toks, (size_t)u->n_toks * sizeof *u->toks);
                    g->n_toks += u->n_toks;
                }
            }
            if (u->done) break;
        } else if (http_client_gone(c)) {
            sched_cancel(g->t);
        }
        check_deadline(g);
    }
    if (g->u.status) {
        http_respond_error(c, 500, "server_error", NULL, "%s", g->u.err.msg);
        return;
    }
    json_t *env = envelope(g, false);
    g->text_off = 0;
    json_object_set_new(env, "choices",
                        json_pack("[o]", choice(g, g->text ? g->text : "", g->text_len, g->toks, g->n_toks, finish_of(g), false)));
    json_object_set_new(env, "usage", oai_usage(&g->u.usage));
    json_object_set_new(env, "timings", oai_timings(&g->u.usage));
    api_respond_json(c, 200, env);
}

// The prompt of a request as tokens.
static sim_status request_tokens(api *a, const oai_request *rq, int32_t **toks, int *n, sim_err *err) {
    if (rq->kind == OAI_COMPLETION) {
        if (rq->prompt_toks) {
            *toks = mem_alloc((size_t)rq->n_prompt_toks * sizeof **toks);
            if (!*toks) return err_set(err, SIM_ERR_NOMEM, "out of memory");
            memcpy(*toks, rq->prompt_toks, (size_t)rq->n_prompt_toks * sizeof **toks);
            *n = rq->n_prompt_toks;
            return SIM_OK;
        }
        *n = tok_encode_alloc(a->m->vocab, rq->prompt, rq->prompt_len, true, true, toks, err);
        return *n < 0 ? (sim_status)*n : SIM_OK;
    }
    char *text;
    size_t len;
    chat_params cp = {.messages = rq->messages, .tools = rq->tools, .add_generation_prompt = true};
    sim_status st = chat_render(a->tmpl, &cp, &text, &len, err);
    if (st) return st;
    *n = tok_encode_alloc(a->m->vocab, text, len, false, true, toks, err);
    mem_free(text);
    if (*n < 0) return (sim_status)*n;
    // The template may leave BOS to the tokenizer.
    int32_t bos = tok_bos(a->m->vocab);
    if (tok_add_bos(a->m->vocab) && bos != TOK_NULL && (*n == 0 || (*toks)[0] != bos)) {
        int32_t *np = mem_realloc(*toks, (size_t)(*n + 1) * sizeof *np);
        if (!np) return err_set(err, SIM_ERR_NOMEM, "out of memory");
        memmove(np + 1, np, (size_t)*n * sizeof *np);
        np[0] = bos;
        *toks = np;
        (*n)++;
    }
    return SIM_OK;
}

static void handle_generate(api *a, oai_kind kind, const http_req *hr, http_conn *c) {
    int ep = kind == OAI_CHAT ? EP_CHAT : EP_COMPLETIONS;
    oai_limits lim = {.max_tokens = a->cfg.max_tokens, .n_vocab = a->m->hp.n_vocab};
    oai_request rq;
    oai_error e;
    if (oai_parse(&rq, kind, hr->body, hr->body_len, &lim, &e) != SIM_OK) {
        atomic_fetch_add(&a->n_errors[ep], 1);
        http_respond_error(c, 400, "invalid_request_error", e.param[0] ? e.param : NULL, "%s", e.message);
        return;
    }
    int32_t *toks = NULL;
    int n = 0;
    sim_err err;
    sim_status st = request_tokens(a, &rq, &toks, &n, &err);
    const char *prompt_param = kind == OAI_CHAT ? "messages" : "prompt";
    int slot_ctx = sched_slot_ctx(a->s);
    if (st) {
        http_respond_error(c, st == SIM_ERR_NOMEM ? 500 : 400, "invalid_request_error", prompt_param, "%s", err.msg);
    } else if (n >= slot_ctx) {
        st = SIM_ERR_RANGE;
        http_respond_error(c, 400, "invalid_request_error", prompt_param,
                           "the prompt has %d tokens; this server's context holds %d per request", n, slot_ctx);
    }
    if (st) {
        atomic_fetch_add(&a->n_errors[ep], 1);
        mem_free(toks);
        oai_request_free(&rq);
        return;
    }
    sched_job job = sched_default_job();
    job.prompt = toks;
    job.n_prompt = n;
    job.sp = rq.sp;
    job.grammar = rq.grammar;
    job.n_predict = rq.max_tokens >= 0 ? rq.max_tokens : kind == OAI_COMPLETION ? 16 : MIN(a->cfg.max_tokens, slot_ctx - n);
    job.stop = rq.stop;
    job.n_stop = rq.n_stop;
    job.logprobs = rq.logprobs;
    job.n_top = rq.top_logprobs;
    gen_req *g = mem_calloc(1, sizeof *g);
    if (!g) {
        http_respond_error(c, 500, "server_error", NULL, "out of memory");
        mem_free(toks);
        oai_request_free(&rq);
        return;
    }
    st = sched_submit(a->s, &job, &g->t, &err);
    mem_free(toks);
    if (st) {
        atomic_fetch_add(&a->n_errors[ep], 1);
        if (st == SIM_ERR_BUSY) {
            http_add_header(c, "Retry-After", "1");
            http_respond_error(c, 503, "server_busy", NULL, "%s; try again shortly", err.msg);
        } else if (st == SIM_ERR_ABORTED) http_respond_error(c, 503, "server_error", NULL, "%s", err.msg);
        else http_respond_error(c, 400, "invalid_request_error", rq.grammar ? "grammar" : NULL, "%s", err.msg);
        oai_request_free(&rq);
        mem_free(g);
        return;
    }
    g->a = a;
    g->c = c;
    atomic_fetch_add(&a->active, 1);
    g->kind = kind;
    snprintf(g->id, sizeof g->id, "%s-%llx", kind == OAI_CHAT ? "chatcmpl" : "cmpl",
             (unsigned long long)atomic_fetch_add(&a->next_id, 1) + 1);
    g->created = (long long)time(NULL);
    g->include_usage = rq.include_usage;
    g->logprobs = rq.logprobs;
    g->deadline = a->cfg.timeout_s > 0 ? time_ns() + (uint64_t)a->cfg.timeout_s * 1000000000ull : 0;
    g->last_send = time_ns();
    bool stream = rq.stream;
    oai_request_free(&rq);
    if (stream) {
        http_add_header(c, "Cache-Control", "no-cache");
        http_add_header(c, "X-Accel-Buffering", "no");
        http_respond_stream(c, 200, "text/event-stream", stream_read, stream_done, g);
        return; // the stream frees g
    }
    respond_whole(g, c);
    gen_req_free(g);
}

static void h_completions(void *ud, const http_req *rq, http_conn *c) {
    api *a = ud;
    atomic_fetch_add(&a->n_requests[EP_COMPLETIONS], 1);
    handle_generate(a, OAI_COMPLETION, rq, c);
}

static void h_chat(void *ud, const http_req *rq, http_conn *c) {
    api *a = ud;
    atomic_fetch_add(&a->n_requests[EP_CHAT], 1);
    handle_generate(a, OAI_CHAT, rq, c);
}

// --- native endpoints ------------------------------------------------------------------

static void h_models(void *ud, const http_req *rq, http_conn *c) {
    api *a = ud;
    atomic_fetch_add(&a->n_requests[EP_MODELS], 1);
    json_t *meta = json_pack("{s:s,s:i,s:i,s:i,s:I}", "arch", a->m->hp.arch_name,
                             "n_vocab", a->m->hp.n_vocab, "n_ctx_train", a->m->hp.n_ctx_train, "n_embd", a->m->hp.n_embd,
                             "size", (json_int_t)a->m->gguf->size);
    json_t *entry = json_pack("{s:s,s:s,s:I,s:s,s:o}", "id", a->model_name, "object", "model", "created",
                              (json_int_t)time(NULL), "owned_by", "simularity", "meta", meta);
    api_respond_json(c, 200, json_pack("{s:s,s:[o]}", "object", "list", "data", entry));
}

static void h_health(void *ud, const http_req *rq, http_conn *c) {
    api *a = ud;
    atomic_fetch_add(&a->n_requests[EP_HEALTH], 1);
    sched_stats st;
    sched_get_stats(a->s, &st);
    api_respond_json(c, 200, json_pack("{s:s,s:i,s:i,s:i}", "status", "ok", "slots_idle", st.n_slots - st.n_busy,
                                   "slots_processing", st.n_busy, "queue", st.queue_len));
}

static void h_metrics(void *ud, const http_req *rq, http_conn *c) {
    api *a = ud;
    atomic_fetch_add(&a->n_requests[EP_METRICS], 1);
    sched_stats st;
    sched_get_stats(a->s, &st);
    char *buf = NULL;
    size_t len = 0;
    FILE *f = open_memstream(&buf, &len);
    if (!f) {
        http_respond_error(c, 500, "server_error", NULL, "out of memory");
        return;
    }
#define METRIC(name, type, help, fmt, ...) \
    fprintf(f, "# HELP simularity_" name " " help "\n# TYPE simularity_" name " " type "\n" fmt, __VA_ARGS__)
    fprintf(f, "# HELP simularity_http_requests_total HTTP requests by endpoint.\n# TYPE simularity_http_requests_total counter\n");
    for (int i = 0; i < EP_COUNT; i++)
        fprintf(f, "simularity_http_requests_total{endpoint=\"%s\"} %llu\n", ep_names[i],
                (unsigned long long)atomic_load(&a->n_requests[i]));
    fprintf(f, "# HELP simularity_http_request_errors_total Requests answered with an error, by endpoint.\n"
               "# TYPE simularity_http_request_errors_total counter\n");
    for (int i = 0; i < EP_COUNT; i++)
        fprintf(f, "simularity_http_request_errors_total{endpoint=\"%s\"} %llu\n", ep_names[i],
                (unsigned long long)atomic_load(&a->n_errors[i]));
    METRIC("generation_requests_total", "counter", "Generation requests accepted by the scheduler.", "simularity_generation_requests_total %llu\n",
           (unsigned long long)st.requests);
    METRIC("requests_rejected_total", "counter", "Requests refused because the queue was full (503).",
           "simularity_requests_rejected_total %llu\n", (unsigned long long)st.requests_rejected);
    METRIC("prompt_tokens_total", "counter", "Prompt tokens decoded.", "simularity_prompt_tokens_total %llu\n",
           (unsigned long long)st.tokens_prompt);
    METRIC("prompt_tokens_cached_total", "counter", "Prompt tokens reused from the cache.",
           "simularity_prompt_tokens_cached_total %llu\n", (unsigned long long)st.tokens_cached);
    METRIC("generated_tokens_total", "counter", "Tokens generated.", "simularity_generated_tokens_total %llu\n",
           (unsigned long long)st.tokens_generated);
    METRIC("decode_seconds_total", "counter", "Time spent in decode steps.", "simularity_decode_seconds_total %.6f\n",
           st.busy_s);
    METRIC("tokens_per_second", "gauge", "Tokens (prompt and generated) per second of decoding, over the server's life.",
           "simularity_tokens_per_second %.3f\n",
           st.busy_s > 0 ? (double)(st.tokens_prompt + st.tokens_generated) / st.busy_s : 0.0);
    METRIC("queue_length", "gauge", "Requests waiting for a slot.", "simularity_queue_length %d\n", st.queue_len);
    METRIC("kv_cells_used", "gauge", "KV cache cells in use.", "simularity_kv_cells_used %d\n", st.kv_used);
    METRIC("kv_cells_total", "gauge", "KV cache cells.", "simularity_kv_cells_total %d\n", st.kv_size);
    METRIC("kv_usage_ratio", "gauge", "Fraction of the KV cache in use.", "simularity_kv_usage_ratio %.4f\n",
           st.kv_size ? (double)st.kv_used / st.kv_size : 0.0);
    METRIC("slots_busy", "gauge", "Slots processing a request.", "simularity_slots_busy %d\n", st.n_busy);
    METRIC("slots_total", "gauge", "Slots.", "simularity_slots_total %d\n", st.n_slots);
    fprintf(f, "# HELP simularity_slot_state Each slot's state: 0 idle, 1 prompt, 2 generating.\n# TYPE simularity_slot_state gauge\n");
    for (int i = 0; i < st.n_slots; i++) fprintf(f, "simularity_slot_state{slot=\"%d\"} %d\n", i, st.slots[i].state);
    fprintf(f, "# HELP simularity_slot_tokens Tokens cached in each slot.\n# TYPE simularity_slot_tokens gauge\n");
    for (int i = 0; i < st.n_slots; i++) fprintf(f, "simularity_slot_tokens{slot=\"%d\"} %d\n", i, st.slots[i].n_tokens);
#undef METRIC
    fclose(f);
    http_respond(c, 200, "text/plain; version=0.0.4", buf, len);
    free(buf);
}

json_t *api_json_body(const http_req *rq, http_conn *c, bool empty_ok) {
    if (empty_ok && rq->body_len == 0) return json_object();
    json_error_t je;
    json_t *j = json_loadb(rq->body, rq->body_len, JSON_REJECT_DUPLICATES, &je);
    if (!j || !json_is_object(j)) {
        if (j) http_respond_error(c, 400, "invalid_request_error", NULL, "the request body must be a JSON object");
        else http_respond_error(c, 400, "invalid_request_error", NULL, "invalid JSON at line %d, column %d: %s", je.line,
                                je.column, je.text);
        json_decref(j);
        return NULL;
    }
    return j;
}

// api_json_body, counting a refused body as an error of endpoint ep.
static json_t *json_body(api *a, int ep, const http_req *rq, http_conn *c) {
    json_t *j = api_json_body(rq, c, false);
    if (!j) atomic_fetch_add(&a->n_errors[ep], 1);
    return j;
}

static bool opt_bool(json_t *o, const char *key, bool dflt, bool *out) {
    json_t *v = json_object_get(o, key);
    if (!v || json_is_null(v)) {
        *out = dflt;
        return true;
    }
    *out = json_is_true(v);
    return json_is_boolean(v);
}

static void h_tokenize(void *ud, const http_req *rq, http_conn *c) {
    api *a = ud;
    atomic_fetch_add(&a->n_requests[EP_TOKENIZE], 1);
    json_t *j = json_body(a, EP_TOKENIZE, rq, c);
    if (!j) return;
    json_t *content = json_object_get(j, "content");
    bool add_special, with_pieces, parse_special;
    const char *bad = !json_is_string(content)                            ? "content"
                      : !opt_bool(j, "add_special", false, &add_special)   ? "add_special"
                      : !opt_bool(j, "with_pieces", false, &with_pieces)   ? "with_pieces"
                      : !opt_bool(j, "parse_special", true, &parse_special) ? "parse_special"
                                                                            : NULL;
    if (bad) {
        atomic_fetch_add(&a->n_errors[EP_TOKENIZE], 1);
        http_respond_error(c, 400, "invalid_request_error", bad, "'%s' must be %s", bad,
                           strcmp(bad, "content") == 0 ? "a string" : "true or false");
        json_decref(j);
        return;
    }
    sim_err err;
    const char *text = json_string_value(content);
    size_t len = json_string_length(content);
    int32_t *toks;
    int n = tok_encode_alloc(a->m->vocab, text, len, add_special, parse_special, &toks, &err);
    if (n < 0) {
        atomic_fetch_add(&a->n_errors[EP_TOKENIZE], 1);
        http_respond_error(c, 400, "invalid_request_error", "content", "%s", err.msg);
        json_decref(j);
        return;
    }
    json_t *arr = json_array();
    for (int i = 0; i < n; i++) {
        if (!with_pieces) {
            json_array_append_new(arr, json_integer(toks[i]));
            continue;
        }
        json_array_append_new(arr, json_pack("{s:i,s:o}", "id", toks[i], "piece", oai_token(a->m->vocab, toks[i], NULL)));
    }
    mem_free(toks);
    json_decref(j);
    api_respond_json(c, 200, json_pack("{s:o}", "tokens", arr));
}

static void h_detokenize(void *ud, const http_req *rq, http_conn *c) {
    api *a = ud;
    atomic_fetch_add(&a->n_requests[EP_DETOKENIZE], 1);
    json_t *j = json_body(a, EP_DETOKENIZE, rq, c);
    if (!j) return;
    json_t *arr = json_object_get(j, "tokens");
    size_t n = json_is_array(arr) ? json_array_size(arr) : 0;
    int32_t *toks = mem_alloc(MAX(n, 1) * sizeof *toks);
    const char *bad = !json_is_array(arr) ? "'tokens' must be a list of token ids" : !toks ? "out of memory" : NULL;
    for (size_t i = 0; i < n && !bad; i++) {
        json_t *v = json_array_get(arr, i);
        if (!json_is_integer(v) || json_integer_value(v) < 0 || json_integer_value(v) >= a->m->hp.n_vocab)
            bad = "every token must be an id in the vocabulary";
        else toks[i] = (int32_t)json_integer_value(v);
    }
    char *text = NULL;
    int len = 0;
    if (!bad) {
        len = tok_decode(a->m->vocab, toks, (int)n, 0, NULL, 0);
        text = len >= 0 ? mem_alloc((size_t)len + 1) : NULL;
        if (!text) bad = "out of memory";
        else len = tok_decode(a->m->vocab, toks, (int)n, 0, text, len + 1);
    }
    if (bad) {
        atomic_fetch_add(&a->n_errors[EP_DETOKENIZE], 1);
        http_respond_error(c, 400, "invalid_request_error", "tokens", "%s", bad);
    } else api_respond_json(c, 200, json_pack("{s:o}", "content", oai_text(text, (size_t)MAX(len, 0))));
    mem_free(text);
    mem_free(toks);
    json_decref(j);
}

static void h_props(void *ud, const http_req *rq, http_conn *c) {
    api *a = ud;
    atomic_fetch_add(&a->n_requests[EP_PROPS], 1);
    sched_stats st;
    sched_get_stats(a->s, &st);
    smp_params d = smp_default_params();
    char order[256];
    smp_format_order(&d, order, sizeof order);
    json_t *defaults = json_pack("{s:f,s:i,s:f,s:f,s:f,s:f,s:i,s:s}", "temperature", (double)d.temp, "top_k", d.top_k,
                                 "top_p", (double)d.top_p, "min_p", (double)d.min_p, "typical_p", (double)d.typical_p,
                                 "repeat_penalty", (double)d.repeat_penalty, "repeat_last_n", d.repeat_last_n,
                                 "samplers", order);
    json_t *j = json_pack("{s:s,s:i,s:i,s:i,s:i,s:s?,s:b,s:s,s:s,s:i,s:s,s:o}", "model", a->model_name, "n_ctx",
                          st.kv_size, "n_ctx_slot", sched_slot_ctx(a->s), "total_slots", st.n_slots, "max_tokens",
                          a->cfg.max_tokens, "chat_template", a->chat_template, "chat_template_fallback",
                          a->chat_template == NULL, "bos_token", a->bos, "eos_token", a->eos, "n_vocab",
                          a->m->hp.n_vocab, "build", SIM_VERSION_STRING, "default_generation_settings", defaults);
    api_respond_json(c, 200, j);
}

// --- setup -----------------------------------------------------------------------------

static void token_text(const tok_vocab *v, int32_t id, char *buf, size_t cap) {
    buf[0] = 0;
    if (id == TOK_NULL) return;
    size_t len;
    const char *t = tok_token_text(v, id, true, &len);
    if (t) snprintf(buf, cap, "%.*s", (int)MIN(len, cap - 1), t);
}

sim_status api_new(api **out, const model *m, sched *s, const api_config *cfg, sim_err *err) {
    *out = NULL;
    if (cfg->max_tokens < 1) return err_set(err, SIM_ERR_ARG, "the request token limit must be at least 1");
    api *a = mem_calloc(1, sizeof *a);
    if (!a) return err_set(err, SIM_ERR_NOMEM, "out of memory");
    a->m = m;
    a->s = s;
    a->cfg = *cfg;
    a->model_name = mem_strdup(cfg->model_name ? cfg->model_name : "model");
    const gguf_value *tv = gguf_get(m->gguf, "tokenizer.chat_template");
    if (cfg->chat_template) a->chat_template = mem_strdup(cfg->chat_template);
    else if (tv && tv->type == GGUF_STRING) {
        a->chat_template = mem_alloc(tv->str.n + 1);
        if (a->chat_template) {
            memcpy(a->chat_template, tv->str.s, tv->str.n);
            a->chat_template[tv->str.n] = 0;
        }
    }
    token_text(m->vocab, tok_bos(m->vocab), a->bos, sizeof a->bos);
    token_text(m->vocab, tok_eos(m->vocab), a->eos, sizeof a->eos);
    if (!a->model_name || ((cfg->chat_template || tv) && !a->chat_template)) {
        api_free(a);
        return err_set(err, SIM_ERR_NOMEM, "out of memory");
    }
    sim_status st = chat_template_new(&a->tmpl, a->chat_template, a->bos[0] ? a->bos : NULL, a->eos[0] ? a->eos : NULL, err);
    if (st) { // refused now, not at the first request
        char why[sizeof err->msg];
        snprintf(why, sizeof why, "%s", err->msg);
        api_free(a);
        return err_set(err, st, "chat template: %s", why);
    }
    *out = a;
    return SIM_OK;
}

void api_drain(api *a, int timeout_ms) {
    for (int waited = 0; atomic_load(&a->active) > 0 && waited < timeout_ms; waited += 10) {
        struct timespec ts = {0, 10 * 1000000L};
        nanosleep(&ts, NULL);
    }
}

void api_free(api *a) {
    if (!a) return;
    mem_free(a->model_name);
    mem_free(a->chat_template);
    chat_template_free(a->tmpl);
    mem_free(a);
}

int api_routes(api *a, http_route *out) {
    const http_route r[API_N_ROUTES] = {
        {"POST", "/v1/completions", h_completions, a, false, false},
        {"POST", "/v1/chat/completions", h_chat, a, false, false},
        {"GET", "/v1/models", h_models, a, false, false},
        {"GET", "/health", h_health, a, true, false},
        {"GET", "/metrics", h_metrics, a, false, false},
        {"POST", "/api/tokenize", h_tokenize, a, false, false},
        {"POST", "/api/detokenize", h_detokenize, a, false, false},
        {"GET", "/api/props", h_props, a, false, false},
    };
    memcpy(out, r, sizeof r);
    return API_N_ROUTES;
}
