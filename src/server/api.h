// api.h — the server's endpoints, on a scheduler and the HTTP layer.
//
//   POST /v1/completions, /v1/chat/completions   OpenAI-compatible (SSE with "stream": true)
//   GET  /v1/models                              the one model served
//   GET  /health                                 {"status":"ok", ...} (no API key needed)
//   GET  /metrics                                Prometheus text
//   POST /api/tokenize, /api/detokenize          {"content"} <-> {"tokens"}
//   GET  /api/props                              the model, context, slots, chat template
//
// Chat messages are rendered with the model's `tokenizer.chat_template`
// (or cfg.chat_template); a model without one gets ChatML (see
// model/chat.h). Request limits: cfg.max_tokens per request (the default
// when a chat request gives none: what is left of the slot's context;
// completions default to 16 as OpenAI's), the prompt must fit a slot, and a
// request running longer than cfg.timeout_s is stopped (finish_reason
// "length"... as far as it got).
//
//     api *a;
//     if (api_new(&a, m, sch, &cfg, &err) != SIM_OK) ...
//     http_route routes[API_N_ROUTES];
//     int n = api_routes(a, routes);
//     http_start(&srv, &hcfg, routes, n, &err);
//     ... sched_shutdown(sch); api_drain(a, 5000); http_stop(srv); api_free(a);
//
// Ownership: the api borrows the model and the scheduler.
#ifndef SIM_API_H
#define SIM_API_H

#include <jansson.h>

#include "server/http.h"
#include "server/sched.h"

#define API_N_ROUTES 8

typedef struct api api;

typedef struct api_config {
    const char *model_name;    // the id /v1/models reports
    int max_tokens;            // most tokens a request may generate
    int timeout_s;             // most seconds a request may run (0: no limit)
    const char *chat_template; // overrides the model's (NULL: the model's)
} api_config;

api_config api_default_config(void); // max_tokens 4096, timeout 600 s

sim_status api_new(api **out, const model *m, sched *s, const api_config *cfg, sim_err *err);
// Waits (up to timeout_ms) until every generation request has been answered
// in full — after sched_shutdown, streams still send their last events.
void api_drain(api *a, int timeout_ms);
void api_free(api *a);
// The request body as a JSON object (an empty body is {} when empty_ok), or
// NULL after answering 400 with where the JSON is wrong.
json_t *api_json_body(const http_req *rq, http_conn *c, bool empty_ok);

// Answers with j as compact JSON (a 500 when j is NULL) and releases j.
void api_respond_json(http_conn *c, int status, json_t *j);

// Writes the routes (API_N_ROUTES of them) and returns their count.
int api_routes(api *a, http_route *out);

#endif
