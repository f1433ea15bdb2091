// oai.h — OpenAI-compatible request parsing and response formatting.
//
// The bodies of POST /v1/completions and /v1/chat/completions are parsed
// strictly: malformed JSON is an error with its line and column, every known
// field is checked for type and range, and the error names the field
// (OpenAI's `param`). Unknown fields are ignored, as OpenAI does. Our
// extensions use llama.cpp's names: top_k, min_p, typical_p, top_n_sigma,
// repeat_penalty, repeat_last_n, dry_multiplier, dry_base,
// dry_allowed_length, dry_penalty_last_n, dry_sequence_breakers,
// xtc_probability, xtc_threshold, mirostat, mirostat_tau, mirostat_eta,
// dynatemp_range, dynatemp_exponent, samplers (the chain order), min_keep,
// grammar (GBNF text), json_schema (a schema object), n_predict (an alias
// of max_tokens), cache_prompt (ignored: prompts are always cached).
//
//     oai_request rq;
//     oai_error e;
//     if (oai_parse(&rq, OAI_CHAT, body, len, &lim, &e) != SIM_OK) -> 400 with e.message, e.param
//     ... rq.messages, rq.sp, rq.max_tokens, rq.grammar ...
//     oai_request_free(&rq);
//
// Response formatting builds Jansson objects in OpenAI's shapes (see the
// functions below); the caller serializes them.
#ifndef SIM_OAI_H
#define SIM_OAI_H

#include <jansson.h>

#include "infer/sample.h"
#include "server/sched.h"

typedef enum oai_kind { OAI_COMPLETION, OAI_CHAT } oai_kind;

#define OAI_MAX_STOP 16
#define OAI_MAX_BIAS 1024

typedef struct oai_limits {
    int max_tokens; // the most a request may ask for (its default when it asks for none: see oai_parse)
    int n_vocab;    // token ids in prompts and logit_bias must be below it
} oai_limits;

typedef struct oai_error {
    char message[512];
    char param[64]; // the offending field ("" when none)
} oai_error;

typedef struct oai_request {
    oai_kind kind;
    json_t *root;      // the parsed body (owned)
    // completions: the prompt as text, or as token ids
    const char *prompt; // borrowed from root
    size_t prompt_len;
    int32_t *prompt_toks; // (n_prompt_toks) owned, when the prompt is a list of ids
    int n_prompt_toks;
    // chat
    json_t *messages;  // borrowed from root: an array of {role, content, ...}
    json_t *tools;     // borrowed, or NULL
    const char *model; // borrowed, or NULL
    bool stream, include_usage;
    int max_tokens;    // -1: not given
    smp_params sp;     // logit_bias and breakers point into this struct's arrays
    smp_bias bias[OAI_MAX_BIAS];
    const char *breakers[SMP_MAX_BREAKERS];
    const char *stop[OAI_MAX_STOP];
    int n_stop;
    bool logprobs;
    int top_logprobs;
    char *grammar;     // GBNF (owned): from `grammar`, `json_schema` or response_format; NULL: none
} oai_request;

// Parses and validates a request body. On error rq holds nothing to free
// and e says what and where.
sim_status oai_parse(oai_request *rq, oai_kind kind, const char *body, size_t len, const oai_limits *lim, oai_error *e);
void oai_request_free(oai_request *rq);

// A JSON string of text that may hold invalid UTF-8 (a model can emit any
// bytes): each byte outside a valid sequence becomes U+FFFD.
json_t *oai_text(const char *p, size_t n);
// A token's text as such a string; *bytes (when not NULL) gets its bytes as
// a list of numbers.
json_t *oai_token(const tok_vocab *v, int32_t id, json_t **bytes);

// OpenAI's finish_reason for a stop reason ("stop", "length"); NULL while running.
const char *oai_finish_reason(sess_stop reason);

// The "logprobs" object of a choice for these tokens: chat
// {"content":[{token, logprob, bytes, top_logprobs:[...]}]}, completions
// {tokens, token_logprobs, top_logprobs, text_offset} (offsets from text_offset0).
json_t *oai_logprobs(oai_kind kind, const tok_vocab *v, const sched_tok *toks, int n, size_t text_offset0);

// {"prompt_tokens","completion_tokens","total_tokens","prompt_tokens_details":{"cached_tokens"}}
json_t *oai_usage(const sched_usage *u);
// llama.cpp-style "timings" (prompt_n, prompt_ms, predicted_n, predicted_ms, per-second rates).
json_t *oai_timings(const sched_usage *u);

#endif
