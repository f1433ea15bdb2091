// chat.c — chat messages through a model's template (see chat.h).
#include "model/chat.h"

#include <string.h>

#include "model/jinja.h"

struct chat_template {
    jinja_template *t;
    char *bos, *eos; // NULL when absent
    bool fallback;
};

sim_status chat_template_new(chat_template **out, const char *tmpl, const char *bos, const char *eos, sim_err *err) {
    if (out) *out = NULL;
    if (!out) return err_set(err, SIM_ERR_ARG, "chat_template_new: NULL argument");
    chat_template *ct = mem_calloc(1, sizeof *ct);
    if (!ct) return err_set(err, SIM_ERR_NOMEM, "out of memory");
    ct->fallback = !tmpl || !*tmpl;
    const char *src = ct->fallback ? CHAT_TEMPLATE_CHATML : tmpl;
    sim_status st = jinja_parse(&ct->t, src, strlen(src), err);
    if (st == SIM_OK && ((bos && !(ct->bos = mem_strdup(bos))) || (eos && !(ct->eos = mem_strdup(eos)))))
        st = err_set(err, SIM_ERR_NOMEM, "out of memory");
    if (st != SIM_OK) {
        chat_template_free(ct);
        return st;
    }
    *out = ct;
    return SIM_OK;
}

void chat_template_free(chat_template *ct) {
    if (!ct) return;
    jinja_free(ct->t);
    mem_free(ct->bos);
    mem_free(ct->eos);
    mem_free(ct);
}

bool chat_template_is_fallback(const chat_template *ct) { return ct && ct->fallback; }

// --- messages ------------------------------------------------------------------------------

// Content parts to one string: the texts joined with "\n".
static sim_status join_parts(json_t *msg, size_t i, const json_t *parts, sim_err *err) {
    size_t len = 0, n = json_array_size(parts);
    for (size_t k = 0; k < n; k++) {
        const json_t *part = json_array_get(parts, k);
        const char *type = json_string_value(json_object_get(part, "type"));
        const json_t *text = json_object_get(part, "text");
        if (!json_is_object(part) || !type)
            return err_set(err, SIM_ERR_ARG, "messages[%zu].content[%zu]: a content part needs a \"type\"", i, k);
        if (strcmp(type, "text") != 0)
            return err_set(err, SIM_ERR_UNSUPPORTED, "messages[%zu].content[%zu]: content of type '%.40s' is not supported (text only)",
                           i, k, type);
        if (!json_is_string(text))
            return err_set(err, SIM_ERR_ARG, "messages[%zu].content[%zu]: a text part needs a string \"text\"", i, k);
        len += json_string_length(text) + 1;
    }
    char *buf = mem_alloc(len + 1), *p = buf;
    if (!buf) return err_set(err, SIM_ERR_NOMEM, "out of memory");
    for (size_t k = 0; k < n; k++) {
        const json_t *text = json_object_get(json_array_get(parts, k), "text");
        if (k) *p++ = '\n';
        memcpy(p, json_string_value(text), json_string_length(text));
        p += json_string_length(text);
    }
    json_t *s = json_stringn(buf, (size_t)(p - buf));
    mem_free(buf);
    if (!s || json_object_set_new(msg, "content", s)) return err_set(err, SIM_ERR_NOMEM, "out of memory");
    return SIM_OK;
}

// Checks messages and makes the copy templates see: content parts joined;
// with parse_args, tool-call arguments that are JSON object strings parsed;
// with empty_null, null content as "". *has_args and *has_null say whether
// there are such arguments and such content (whether changed or not).
static sim_status prepare(const json_t *messages, bool parse_args, bool empty_null, json_t **out, bool *has_args,
                          bool *has_null, sim_err *err) {
    *out = NULL;
    *has_args = *has_null = false;
    if (!json_is_array(messages)) return err_set(err, SIM_ERR_ARG, "messages must be an array");
    json_t *copy = json_deep_copy(messages);
    if (!copy) return err_set(err, SIM_ERR_NOMEM, "out of memory");
    sim_status st = SIM_OK;
    size_t i;
    json_t *msg;
    json_array_foreach(copy, i, msg) {
        if (!json_is_object(msg)) {
            st = err_set(err, SIM_ERR_ARG, "messages[%zu]: a message must be an object", i);
            break;
        }
        if (!json_is_string(json_object_get(msg, "role"))) {
            st = err_set(err, SIM_ERR_ARG, "messages[%zu]: \"role\" must be a string", i);
            break;
        }
        json_t *content = json_object_get(msg, "content");
        if (json_is_array(content)) {
            if ((st = join_parts(msg, i, content, err)) != SIM_OK) break;
        } else if (content && !json_is_string(content) && !json_is_null(content)) {
            st = err_set(err, SIM_ERR_ARG, "messages[%zu]: \"content\" must be a string, an array of parts or null", i);
            break;
        }
        if (json_is_null(json_object_get(msg, "content"))) {
            *has_null = true;
            if (empty_null && json_object_set_new(msg, "content", json_string(""))) {
                st = err_set(err, SIM_ERR_NOMEM, "out of memory");
                break;
            }
        }
        json_t *calls = json_object_get(msg, "tool_calls"), *call;
        size_t k;
        if (!json_is_array(calls)) continue;
        json_array_foreach(calls, k, call) {
            json_t *fn = json_object_get(call, "function");
            const char *args = json_string_value(json_object_get(fn, "arguments"));
            if (!args) continue;
            json_t *parsed = json_loadb(args, json_string_length(json_object_get(fn, "arguments")), 0, NULL);
            if (json_is_object(parsed)) {
                *has_args = true;
                if (parse_args) json_object_set(fn, "arguments", parsed);
            }
            json_decref(parsed);
        }
    }
    if (st != SIM_OK) {
        json_decref(copy);
        return st;
    }
    *out = copy;
    return SIM_OK;
}

// --- rendering -----------------------------------------------------------------------------

static sim_status render_once(const chat_template *ct, const chat_params *p, json_t *messages, char **out,
                              size_t *out_len, sim_err *err) {
    json_t *ctx = json_object();
    if (!ctx) return err_set(err, SIM_ERR_NOMEM, "out of memory");
    bool ok = true;
    if (p->vars) ok &= json_object_update(ctx, (json_t *)p->vars) == 0;
    ok &= json_object_set(ctx, "messages", messages) == 0;
    ok &= json_object_set(ctx, "tools", p->tools ? (json_t *)p->tools : json_null()) == 0;
    ok &= json_object_set_new(ctx, "documents", json_null()) == 0;
    ok &= json_object_set_new(ctx, "add_generation_prompt", json_boolean(p->add_generation_prompt)) == 0;
    if (ct->bos) ok &= json_object_set_new(ctx, "bos_token", json_string(ct->bos)) == 0;
    if (ct->eos) ok &= json_object_set_new(ctx, "eos_token", json_string(ct->eos)) == 0;
    sim_status st;
    if (!ok) {
        st = err_set(err, SIM_ERR_ARG, "the chat variables could not be built (are bos/eos valid UTF-8?)");
    } else {
        jinja_opts o = {.trim_blocks = true, .lstrip_blocks = true, .now = p->now, .max_steps = p->max_steps,
                        .max_output = p->max_output};
        st = jinja_render(ct->t, ctx, &o, out, out_len, err);
    }
    json_decref(ctx);
    return st;
}

sim_status chat_render(const chat_template *ct, const chat_params *p, char **out, size_t *out_len, sim_err *err) {
    if (out) *out = NULL;
    if (out_len) *out_len = 0;
    if (!ct || !p || !out) return err_set(err, SIM_ERR_ARG, "chat_render: NULL argument");
    if (p->tools && !json_is_array(p->tools)) return err_set(err, SIM_ERR_ARG, "tools must be an array");
    if (p->vars && !json_is_object(p->vars)) return err_set(err, SIM_ERR_ARG, "template variables must be an object");
    // (parse arguments, empty null content): HF's convention first, then what other templates need.
    static const bool variants[4][2] = {{true, false}, {false, false}, {true, true}, {false, true}};
    sim_err first = {0};
    sim_status first_st = SIM_OK;
    bool has_args = false, has_null = false;
    for (int v = 0; v < 4; v++) {
        if ((!variants[v][0] && !has_args) || (variants[v][1] && !has_null)) continue; // same as one tried
        json_t *msgs;
        sim_err e = {0};
        sim_status st = prepare(p->messages, variants[v][0], variants[v][1], &msgs, &has_args, &has_null, &e);
        if (st == SIM_OK) st = render_once(ct, p, msgs, out, out_len, &e);
        json_decref(msgs);
        if (st == SIM_OK) return SIM_OK;
        if (v == 0) first = e, first_st = st;
        if (st != SIM_ERR_FORMAT) break; // only template type errors are worth another variant
    }
    if (err) *err = first;
    return first_st;
}
