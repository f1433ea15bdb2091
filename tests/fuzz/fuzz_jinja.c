// fuzz_jinja.c — libFuzzer target for the Jinja interpreter and the chat layer.
// The input's first byte holds options (bit 0 trim_blocks, bit 1 lstrip_blocks,
// bit 2 also render through chat_render); the rest is a template, optionally
// followed by a NUL byte and a JSON context object (else a fixed
// conversation with tools is the context).
//   - jinja_parse must succeed or fail with "line L, column C: ..." — never
//     crash, hang or leak;
//   - a template that parses renders within small limits (steps, output,
//     memory) or fails with a status and a message; output is NUL-terminated
//     at its length.
// Build and run: make fuzz && build/fuzz/fuzz_jinja -max_len=4096 DIR
// (seeds: ../shared/templates/*.jinja with a 0x03 byte in front).
#include <stdint.h>
#include <string.h>

#include "base/utf8.h"
#include "model/chat.h"
#include "model/jinja.h"

static const char *const CONTEXT =
    "{\"messages\": [{\"role\": \"system\", \"content\": \"Be brief.\"}, {\"role\": \"user\", \"content\": \"Hi "
    "\\u00e9\"}, {\"role\": \"assistant\", \"content\": null, \"tool_calls\": [{\"id\": \"call12345\", \"type\": "
    "\"function\", \"function\": {\"name\": \"f\", \"arguments\": {\"x\": 1.5, \"y\": [true, null]}}}]}, "
    "{\"role\": \"tool\", \"content\": \"{\\\"ok\\\": 1}\"}, {\"role\": \"user\", \"content\": [{\"type\": "
    "\"text\", \"text\": \"a\"}]}], \"tools\": [{\"type\": \"function\", \"function\": {\"name\": \"f\", "
    "\"parameters\": {\"type\": \"object\", \"properties\": {\"x\": {\"type\": \"number\"}}}}}], "
    "\"add_generation_prompt\": true, \"bos_token\": \"<s>\", \"eos_token\": \"</s>\"}";

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    if (size < 1) return 0;
    uint8_t flags = data[0];
    const char *src = (const char *)data + 1;
    size_t n = size - 1, tn = n;
    const char *nul = memchr(src, 0, n);
    json_t *ctx = NULL;
    if (nul) {
        tn = (size_t)(nul - src);
        ctx = json_loadb(nul + 1, n - tn - 1, 0, NULL);
        if (!json_is_object(ctx)) {
            json_decref(ctx);
            ctx = NULL;
        }
    }
    if (!ctx) ctx = json_loads(CONTEXT, 0, NULL);
    struct tm now = {.tm_year = 124, .tm_mon = 6, .tm_mday = 26, .tm_wday = 5, .tm_yday = 207};
    jinja_template *t;
    sim_err err;
    if (jinja_parse(&t, src, tn, &err) == SIM_OK) {
        jinja_opts o = {.trim_blocks = flags & 1, .lstrip_blocks = (flags & 2) != 0, .now = &now,
                        .max_output = 1 << 16, .max_steps = 20000, .max_memory = 16 << 20};
        char *out;
        size_t on;
        if (jinja_render(t, ctx, &o, &out, &on, &err) == SIM_OK) {
            if (out[on] != 0) __builtin_trap();
            mem_free(out);
        } else if (out) { // (the message may be empty: raise_exception(undefined))
            __builtin_trap();
        }
        jinja_free(t);
    } else if (err.code == SIM_ERR_FORMAT && strncmp(err.msg, "line ", 5) != 0 && utf8_valid(src, tn)) {
        __builtin_trap(); // a format error without a position
    }
    if (flags & 4 && tn < 4096) { // the chat layer, with its retries, on the same template
        char *tmpl = mem_strndup(src, tn);
        chat_template *ct;
        if (tmpl && chat_template_new(&ct, tmpl, "<s>", NULL, &err) == SIM_OK) {
            chat_params p = {.messages = json_object_get(ctx, "messages"), .tools = json_object_get(ctx, "tools"),
                             .add_generation_prompt = true, .now = &now, .max_steps = 20000, .max_output = 1 << 16};
            char *out;
            if (!json_is_array(p.tools)) p.tools = NULL;
            if (chat_render(ct, &p, &out, NULL, &err) == SIM_OK) mem_free(out);
            chat_template_free(ct);
        }
        mem_free(tmpl);
    }
    json_decref(ctx);
    return 0;
}
