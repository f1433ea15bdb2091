// oai.c — strict parsing of OpenAI-style requests, and the shapes of the
// responses.
#include "server/oai.h"

#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "base/utf8.h"
#include "infer/jsonschema.h"

// --- errors --------------------------------------------------------------------------

__attribute__((format(printf, 3, 4))) static sim_status fail(oai_error *e, const char *param, const char *fmt, ...) {
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(e->message, sizeof e->message, fmt, ap);
    va_end(ap);
    snprintf(e->param, sizeof e->param, "%s", param ? param : "");
    return SIM_ERR_ARG;
}

// --- typed fields ---------------------------------------------------------------------
//
// Each getter returns 1 when the field is present (and valid), 0 when it is
// absent or null, and a negative status (with e filled) when it is invalid.

static int get_number(json_t *o, const char *key, double lo, double hi, double *out, oai_error *e) {
    json_t *v = json_object_get(o, key);
    if (!v || json_is_null(v)) return 0;
    if (!json_is_number(v)) return fail(e, key, "'%s' must be a number", key);
    double x = json_number_value(v);
    if (!(x >= lo && x <= hi)) return fail(e, key, "'%s' is %g; it must be between %g and %g", key, x, lo, hi);
    *out = x;
    return 1;
}

static int get_float(json_t *o, const char *key, double lo, double hi, float *out, oai_error *e) {
    double x = 0;
    int r = get_number(o, key, lo, hi, &x, e);
    if (r == 1) *out = (float)x;
    return r;
}

static int get_int(json_t *o, const char *key, long long lo, long long hi, long long *out, oai_error *e) {
    json_t *v = json_object_get(o, key);
    if (!v || json_is_null(v)) return 0;
    if (!json_is_integer(v)) return fail(e, key, "'%s' must be an integer", key);
    long long x = json_integer_value(v);
    if (x < lo || x > hi) return fail(e, key, "'%s' is %lld; it must be between %lld and %lld", key, x, lo, hi);
    *out = x;
    return 1;
}

static int get_int32(json_t *o, const char *key, int lo, int hi, int *out, oai_error *e) {
    long long x = 0;
    int r = get_int(o, key, lo, hi, &x, e);
    if (r == 1) *out = (int)x;
    return r;
}

static int get_bool(json_t *o, const char *key, bool *out, oai_error *e) {
    json_t *v = json_object_get(o, key);
    if (!v || json_is_null(v)) return 0;
    if (!json_is_boolean(v)) return fail(e, key, "'%s' must be true or false", key);
    *out = json_is_true(v);
    return 1;
}

static int get_string(json_t *o, const char *key, const char **out, oai_error *e) {
    json_t *v = json_object_get(o, key);
    if (!v || json_is_null(v)) return 0;
    if (!json_is_string(v)) return fail(e, key, "'%s' must be a string", key);
    *out = json_string_value(v);
    return 1;
}

#define TRY(x)                    \
    do {                          \
        int r_ = (x);             \
        if (r_ < 0) return r_;    \
    } while (0)

// --- sections of a request -------------------------------------------------------------

static sim_status parse_sampling(oai_request *rq, json_t *o, oai_error *e) {
    smp_params *sp = &rq->sp;
    long long seed;
    TRY(get_float(o, "temperature", 0, 10, &sp->temp, e));
    TRY(get_float(o, "top_p", 0, 1, &sp->top_p, e));
    if (sp->top_p == 0) sp->top_p = 1e-6f; // OpenAI allows 0: keep only the top token
    TRY(get_float(o, "frequency_penalty", -2, 2, &sp->frequency_penalty, e));
    TRY(get_float(o, "presence_penalty", -2, 2, &sp->presence_penalty, e));
    int r = get_int(o, "seed", INT64_MIN, INT64_MAX, &seed, e);
    if (r < 0) return r;
    if (r == 1) sp->seed = (uint64_t)seed;
    // Extensions (llama.cpp's names and ranges).
    TRY(get_int32(o, "top_k", 0, 1 << 30, &sp->top_k, e));
    TRY(get_float(o, "min_p", 0, 1, &sp->min_p, e));
    TRY(get_float(o, "typical_p", 0, 1, &sp->typical_p, e));
    if (sp->typical_p == 0) return fail(e, "typical_p", "'typical_p' must be above 0 (1 turns it off)");
    TRY(get_float(o, "top_n_sigma", -1, 100, &sp->top_n_sigma, e));
    TRY(get_float(o, "repeat_penalty", 0.01, 10, &sp->repeat_penalty, e));
    TRY(get_int32(o, "repeat_last_n", -1, SMP_MAX_CTX, &sp->repeat_last_n, e));
    TRY(get_float(o, "dry_multiplier", 0, 100, &sp->dry_multiplier, e));
    TRY(get_float(o, "dry_base", 1, 100, &sp->dry_base, e));
    TRY(get_int32(o, "dry_allowed_length", 1, 1 << 20, &sp->dry_allowed_length, e));
    TRY(get_int32(o, "dry_penalty_last_n", -1, SMP_MAX_CTX, &sp->dry_penalty_last_n, e));
    TRY(get_float(o, "xtc_probability", 0, 1, &sp->xtc_probability, e));
    TRY(get_float(o, "xtc_threshold", 0, 1, &sp->xtc_threshold, e));
    TRY(get_int32(o, "mirostat", 0, 2, &sp->mirostat, e));
    TRY(get_float(o, "mirostat_tau", 0, 100, &sp->mirostat_tau, e));
    TRY(get_float(o, "mirostat_eta", 0, 10, &sp->mirostat_eta, e));
    TRY(get_float(o, "dynatemp_range", 0, 10, &sp->dynatemp_range, e));
    TRY(get_float(o, "dynatemp_exponent", 0, 100, &sp->dynatemp_exponent, e));
    TRY(get_int32(o, "min_keep", 0, 1 << 20, &sp->min_keep, e));
    json_t *br = json_object_get(o, "dry_sequence_breakers");
    if (br && !json_is_null(br)) {
        if (!json_is_array(br) || json_array_size(br) > SMP_MAX_BREAKERS)
            return fail(e, "dry_sequence_breakers", "'dry_sequence_breakers' must be a list of at most %d strings",
                        SMP_MAX_BREAKERS);
        size_t i;
        json_t *v;
        json_array_foreach(br, i, v) {
            size_t n = json_is_string(v) ? json_string_length(v) : 0;
            if (n < 1 || n > SMP_MAX_BREAKER_LEN)
                return fail(e, "dry_sequence_breakers", "each DRY sequence breaker must be a string of 1..%d bytes",
                            SMP_MAX_BREAKER_LEN);
            rq->breakers[i] = json_string_value(v);
        }
        sp->dry_breakers = rq->breakers;
        sp->n_dry_breakers = (int)json_array_size(br);
    }
    const char *order;
    r = get_string(o, "samplers", &order, e);
    if (r < 0) return r;
    if (r == 1) {
        sim_err err;
        if (smp_parse_order(sp, order, &err) != SIM_OK) return fail(e, "samplers", "'samplers': %s", err.msg);
    }
    return SIM_OK;
}

static sim_status parse_bias(oai_request *rq, json_t *o, const oai_limits *lim, oai_error *e) {
    json_t *b = json_object_get(o, "logit_bias");
    if (!b || json_is_null(b)) return SIM_OK;
    int n = 0;
    if (json_is_object(b)) { // OpenAI: {"token id": bias}
        const char *key;
        json_t *v;
        json_object_foreach(b, key, v) {
            char *end;
            long id = strtol(key, &end, 10);
            if (!*key || *end || id < 0 || id >= lim->n_vocab)
                return fail(e, "logit_bias", "logit_bias key '%.40s' is not a token id below %d", key, lim->n_vocab);
            if (!json_is_number(v) || !(fabs(json_number_value(v)) <= 100))
                return fail(e, "logit_bias", "logit_bias values must be numbers between -100 and 100");
            if (n == OAI_MAX_BIAS) return fail(e, "logit_bias", "at most %d logit_bias entries", OAI_MAX_BIAS);
            double x = json_number_value(v);
            rq->bias[n++] = (smp_bias){.token = (int32_t)id, .bias = x <= -100 ? -INFINITY : (float)x};
        }
    } else if (json_is_array(b)) { // llama.cpp: [[id, bias or false], ...]
        size_t i;
        json_t *v;
        json_array_foreach(b, i, v) {
            json_t *id = json_array_get(v, 0), *x = json_array_get(v, 1);
            if (!json_is_array(v) || json_array_size(v) != 2 || !json_is_integer(id) ||
                json_integer_value(id) < 0 || json_integer_value(id) >= lim->n_vocab ||
                !(json_is_false(x) || (json_is_number(x) && fabs(json_number_value(x)) <= 100)))
                return fail(e, "logit_bias", "logit_bias entries must be [token id below %d, bias in -100..100 or false]",
                            lim->n_vocab);
            if (n == OAI_MAX_BIAS) return fail(e, "logit_bias", "at most %d logit_bias entries", OAI_MAX_BIAS);
            float bias = json_is_false(x) || json_number_value(x) <= -100 ? -INFINITY : (float)json_number_value(x);
            rq->bias[n++] = (smp_bias){.token = (int32_t)json_integer_value(id), .bias = bias};
        }
    } else return fail(e, "logit_bias", "'logit_bias' must be an object of token id -> bias");
    rq->sp.logit_bias = rq->bias;
    rq->sp.n_logit_bias = n;
    return SIM_OK;
}

static sim_status parse_stop(oai_request *rq, json_t *o, oai_error *e) {
    json_t *s = json_object_get(o, "stop");
    if (!s || json_is_null(s)) return SIM_OK;
    if (json_is_string(s)) {
        if (json_string_length(s) == 0 || json_string_length(s) > 256)
            return fail(e, "stop", "a stop string must have 1..256 bytes");
        rq->stop[rq->n_stop++] = json_string_value(s);
        return SIM_OK;
    }
    if (!json_is_array(s) || json_array_size(s) > OAI_MAX_STOP)
        return fail(e, "stop", "'stop' must be a string or a list of at most %d strings", OAI_MAX_STOP);
    size_t i;
    json_t *v;
    json_array_foreach(s, i, v) {
        if (!json_is_string(v) || json_string_length(v) == 0 || json_string_length(v) > 256)
            return fail(e, "stop", "each stop string must be a string of 1..256 bytes");
        rq->stop[rq->n_stop++] = json_string_value(v);
    }
    return SIM_OK;
}

// grammar (GBNF), json_schema, or response_format: at most one.
static sim_status parse_constraint(oai_request *rq, json_t *o, oai_error *e) {
    const char *gbnf = NULL;
    int r = get_string(o, "grammar", &gbnf, e);
    if (r < 0) return r;
    json_t *schema = json_object_get(o, "json_schema");
    const char *schema_param = "json_schema";
    if (schema && !json_is_null(schema) && !json_is_object(schema) && !json_is_boolean(schema))
        return fail(e, "json_schema", "'json_schema' must be a JSON Schema object");
    if (json_is_null(schema)) schema = NULL;
    json_t *rf = json_object_get(o, "response_format");
    json_t *any = NULL;
    if (rf && !json_is_null(rf)) {
        const char *type = json_string_value(json_object_get(rf, "type"));
        if (!json_is_object(rf) || !type)
            return fail(e, "response_format", "'response_format' must be an object with a 'type'");
        if (strcmp(type, "json_object") == 0) {
            any = json_pack("{s:s}", "type", "object");
            if (!any) return fail(e, "response_format", "out of memory");
            schema = any;
            schema_param = "response_format";
        } else if (strcmp(type, "json_schema") == 0) {
            json_t *js = json_object_get(rf, "json_schema");
            json_t *sc = json_object_get(js, "schema");
            if (!json_is_object(js) || !(json_is_object(sc) || json_is_boolean(sc)))
                return fail(e, "response_format.json_schema.schema",
                            "response_format of type json_schema needs json_schema.schema (an object)");
            if (schema) return fail(e, "response_format", "give json_schema or response_format, not both");
            schema = sc;
            schema_param = "response_format.json_schema.schema";
        } else if (strcmp(type, "text") != 0)
            return fail(e, "response_format.type", "response_format type '%.40s' is not text, json_object or json_schema",
                        type);
    }
    if (gbnf && schema) {
        json_decref(any);
        return fail(e, "grammar", "give a grammar or a JSON schema, not both");
    }
    if (gbnf) {
        if (!(rq->grammar = mem_strdup(gbnf))) return fail(e, "grammar", "out of memory");
        return SIM_OK;
    }
    if (!schema) return SIM_OK;
    char *text = json_dumps(schema, JSON_COMPACT | JSON_ENCODE_ANY);
    json_decref(any);
    if (!text) return fail(e, schema_param, "out of memory");
    sim_err err;
    sim_status st = jsch_to_gbnf(text, strlen(text), &rq->grammar, &err);
    free(text);
    if (st) return fail(e, schema_param, "JSON schema: %s", err.msg);
    return SIM_OK;
}

static sim_status parse_prompt(oai_request *rq, json_t *o, const oai_limits *lim, oai_error *e) {
    json_t *p = json_object_get(o, "prompt");
    if (json_is_array(p) && json_array_size(p) == 1 && !json_is_integer(json_array_get(p, 0)))
        p = json_array_get(p, 0); // ["text"] or [[ids]]
    if (json_is_string(p)) {
        rq->prompt = json_string_value(p);
        rq->prompt_len = json_string_length(p);
        if (rq->prompt_len == 0) return fail(e, "prompt", "the prompt is empty");
        return SIM_OK;
    }
    if (!json_is_array(p) || json_array_size(p) == 0)
        return fail(e, "prompt", "'prompt' must be a string or a list of token ids (one prompt per request)");
    size_t n = json_array_size(p), i;
    json_t *v;
    if (n > (size_t)1 << 20) return fail(e, "prompt", "the prompt has too many tokens");
    rq->prompt_toks = mem_alloc(n * sizeof *rq->prompt_toks);
    if (!rq->prompt_toks) return fail(e, "prompt", "out of memory");
    json_array_foreach(p, i, v) {
        if (!json_is_integer(v) || json_integer_value(v) < 0 || json_integer_value(v) >= lim->n_vocab)
            return fail(e, "prompt", "prompt entry %zu is not a token id below %d (one prompt per request)", i,
                        lim->n_vocab);
        rq->prompt_toks[i] = (int32_t)json_integer_value(v);
    }
    rq->n_prompt_toks = (int)n;
    return SIM_OK;
}

static sim_status parse_messages(oai_request *rq, json_t *o, oai_error *e) {
    json_t *ms = json_object_get(o, "messages");
    if (!json_is_array(ms) || json_array_size(ms) == 0)
        return fail(e, "messages", "'messages' must be a non-empty list of messages");
    size_t i;
    json_t *m;
    json_array_foreach(ms, i, m) {
        char param[64];
        snprintf(param, sizeof param, "messages[%zu]", i);
        const char *role = json_string_value(json_object_get(m, "role"));
        if (!json_is_object(m) || !role) return fail(e, param, "%s must be an object with a string 'role'", param);
        static const char *const roles[] = {"system", "developer", "user", "assistant", "tool", "function"};
        bool known = false;
        for (size_t r = 0; r < ARRAY_LEN(roles); r++) known |= strcmp(role, roles[r]) == 0;
        if (!known) return fail(e, param, "%s has an unknown role '%.40s'", param, role);
        json_t *c = json_object_get(m, "content");
        if (json_is_array(c)) {
            size_t k;
            json_t *part;
            json_array_foreach(c, k, part) {
                const char *type = json_string_value(json_object_get(part, "type"));
                if (!type || strcmp(type, "text") != 0 || !json_is_string(json_object_get(part, "text")))
                    return fail(e, param, "%s content part %zu: only {\"type\":\"text\",\"text\":...} parts are supported",
                                param, k);
            }
        } else if (!json_is_string(c) && !(json_is_null(c) || !c))
            return fail(e, param, "%s content must be a string, a list of text parts or null", param);
        else if ((json_is_null(c) || !c) && strcmp(role, "assistant") != 0)
            return fail(e, param, "%s has no content", param);
    }
    rq->messages = ms;
    json_t *tools = json_object_get(o, "tools");
    if (tools && !json_is_null(tools)) {
        if (!json_is_array(tools)) return fail(e, "tools", "'tools' must be a list");
        rq->tools = tools;
    }
    return SIM_OK;
}

static sim_status parse_logprobs(oai_request *rq, json_t *o, oai_error *e) {
    json_t *lp = json_object_get(o, "logprobs");
    if (rq->kind == OAI_COMPLETION) { // an integer: how many alternatives (0..5 in OpenAI, we allow 20)
        if (!lp || json_is_null(lp)) return SIM_OK;
        if (json_is_boolean(lp)) {
            rq->logprobs = json_is_true(lp);
            return SIM_OK;
        }
        TRY(get_int32(o, "logprobs", 0, SCHED_MAX_TOP, &rq->top_logprobs, e));
        rq->logprobs = true;
        return SIM_OK;
    }
    TRY(get_bool(o, "logprobs", &rq->logprobs, e));
    int r = get_int32(o, "top_logprobs", 0, SCHED_MAX_TOP, &rq->top_logprobs, e);
    if (r < 0) return r;
    if (r == 1 && !rq->logprobs) return fail(e, "top_logprobs", "'top_logprobs' needs 'logprobs': true");
    return SIM_OK;
}

static sim_status parse_body(oai_request *rq, json_t *o, const oai_limits *lim, oai_error *e) {
    TRY(get_string(o, "model", &rq->model, e));
    TRY(get_bool(o, "stream", &rq->stream, e));
    json_t *so = json_object_get(o, "stream_options");
    if (so && !json_is_null(so)) {
        if (!json_is_object(so)) return fail(e, "stream_options", "'stream_options' must be an object");
        TRY(get_bool(so, "include_usage", &rq->include_usage, e));
    }
    int n = 1;
    TRY(get_int32(o, "n", 1, 1, &n, e));
    TRY(get_int32(o, "best_of", 1, 1, &n, e));
    bool echo = false;
    TRY(get_bool(o, "echo", &echo, e));
    if (echo) return fail(e, "echo", "'echo' is not supported");
    const char *suffix = NULL;
    TRY(get_string(o, "suffix", &suffix, e));
    if (suffix && *suffix) return fail(e, "suffix", "'suffix' is not supported");
    static const char *const max_keys[] = {"max_tokens", "max_completion_tokens", "n_predict"};
    for (size_t i = 0; i < ARRAY_LEN(max_keys); i++) {
        long long x;
        int r = get_int(o, max_keys[i], -1, INT32_MAX, &x, e);
        if (r < 0) return r;
        if (r == 1 && x >= 0) {
            if (x > lim->max_tokens)
                return fail(e, max_keys[i], "'%s' is %lld; this server allows at most %d", max_keys[i], x,
                            lim->max_tokens);
            rq->max_tokens = (int)x;
        }
    }
    TRY(parse_sampling(rq, o, e));
    TRY(parse_bias(rq, o, lim, e));
    TRY(parse_stop(rq, o, e));
    TRY(parse_logprobs(rq, o, e));
    TRY(parse_constraint(rq, o, e));
    return rq->kind == OAI_CHAT ? parse_messages(rq, o, e) : parse_prompt(rq, o, lim, e);
}

sim_status oai_parse(oai_request *rq, oai_kind kind, const char *body, size_t len, const oai_limits *lim, oai_error *e) {
    memset(rq, 0, sizeof *rq);
    memset(e, 0, sizeof *e);
    rq->kind = kind;
    rq->max_tokens = -1;
    rq->sp = smp_default_params();
    json_error_t je;
    rq->root = json_loadb(body, len, JSON_REJECT_DUPLICATES, &je);
    if (!rq->root) return fail(e, NULL, "invalid JSON at line %d, column %d: %s", je.line, je.column, je.text);
    if (!json_is_object(rq->root)) {
        oai_request_free(rq);
        return fail(e, NULL, "the request body must be a JSON object");
    }
    sim_status st = parse_body(rq, rq->root, lim, e);
    if (st) oai_request_free(rq);
    return st;
}

void oai_request_free(oai_request *rq) {
    json_decref(rq->root);
    mem_free(rq->prompt_toks);
    mem_free(rq->grammar);
    memset(rq, 0, sizeof *rq);
}

// --- responses -------------------------------------------------------------------------

const char *oai_finish_reason(sess_stop reason) {
    switch (reason) {
    case SESS_STOP_EOG:
    case SESS_STOP_STRING: return "stop";
    case SESS_STOP_LIMIT:
    case SESS_STOP_FULL: return "length";
    case SESS_STOP_ABORTED: return "stop";
    }
    return "stop";
}

json_t *oai_text(const char *p, size_t n) {
    json_t *s = json_stringn(p, n);
    if (s) return s;
    char *fixed = mem_alloc(n * 3 + 1);
    if (!fixed) return json_string("");
    s = json_stringn(fixed, utf8_sanitize(p, n, fixed));
    mem_free(fixed);
    return s;
}

json_t *oai_token(const tok_vocab *v, int32_t id, json_t **bytes) {
    char buf[256];
    int n = tok_decode_token(v, id, true, buf, sizeof buf);
    if (n < 0) n = 0;
    if (n > (int)sizeof buf) n = (int)sizeof buf;
    if (bytes) {
        *bytes = json_array();
        for (int i = 0; i < n; i++) json_array_append_new(*bytes, json_integer((unsigned char)buf[i]));
    }
    return oai_text(buf, (size_t)n);
}

json_t *oai_logprobs(oai_kind kind, const tok_vocab *v, const sched_tok *toks, int n, size_t text_offset0) {
    if (kind == OAI_CHAT) {
        json_t *content = json_array();
        for (int i = 0; i < n; i++) {
            json_t *bytes, *tops = json_array();
            json_t *tok = oai_token(v, toks[i].id, &bytes);
            for (int k = 0; k < toks[i].n_top; k++) {
                json_t *tb, *ts = oai_token(v, toks[i].top[k].id, &tb);
                json_array_append_new(tops, json_pack("{s:o,s:f,s:o}", "token", ts, "logprob",
                                                      (double)toks[i].top[k].logprob, "bytes", tb));
            }
            json_array_append_new(content, json_pack("{s:o,s:f,s:o,s:o}", "token", tok, "logprob",
                                                     (double)toks[i].logprob, "bytes", bytes, "top_logprobs", tops));
        }
        return json_pack("{s:o}", "content", content);
    }
    json_t *tokens = json_array(), *lps = json_array(), *tops = json_array(), *offs = json_array();
    size_t off = text_offset0;
    for (int i = 0; i < n; i++) {
        json_t *t = oai_token(v, toks[i].id, NULL);
        size_t len = json_string_length(t);
        json_array_append_new(tokens, t);
        json_array_append_new(lps, json_real(toks[i].logprob));
        json_t *top = json_object();
        for (int k = 0; k < toks[i].n_top; k++) {
            json_t *ts = oai_token(v, toks[i].top[k].id, NULL);
            json_object_set_new(top, json_string_value(ts), json_real(toks[i].top[k].logprob));
            json_decref(ts);
        }
        json_array_append_new(tops, top);
        json_array_append_new(offs, json_integer((json_int_t)off));
        off += len;
    }
    return json_pack("{s:o,s:o,s:o,s:o}", "tokens", tokens, "token_logprobs", lps, "top_logprobs", tops, "text_offset",
                     offs);
}

json_t *oai_usage(const sched_usage *u) {
    return json_pack("{s:i,s:i,s:i,s:{s:i}}", "prompt_tokens", u->n_prompt, "completion_tokens", u->n_generated,
                     "total_tokens", u->n_prompt + u->n_generated, "prompt_tokens_details", "cached_tokens",
                     u->n_cached);
}

json_t *oai_timings(const sched_usage *u) {
    int n_dec = u->n_prompt - u->n_cached;
    return json_pack("{s:i,s:i,s:f,s:f,s:i,s:f,s:f,s:f}", "prompt_n", n_dec, "cache_n", u->n_cached, "prompt_ms",
                     u->t_prompt_ms, "prompt_per_second", u->t_prompt_ms > 0 ? n_dec * 1e3 / u->t_prompt_ms : 0.0,
                     "predicted_n", u->n_generated, "predicted_ms", u->t_gen_ms, "predicted_per_second",
                     u->t_gen_ms > 0 ? u->n_generated * 1e3 / u->t_gen_ms : 0.0, "queue_ms", u->t_queue_ms);
}
