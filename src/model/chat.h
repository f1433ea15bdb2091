// chat.h — OpenAI-style chat messages to a model's prompt text, through the
// model's own chat template (GGUF `tokenizer.chat_template`), with Hugging
// Face's conventions so the bytes match what the model was trained on.
//
//     chat_template *ct;
//     if (chat_template_new(&ct, tmpl /* NULL: ChatML */, "<s>", "</s>", &err) != SIM_OK) ...
//     chat_params p = {.messages = msgs, .tools = tools /* or NULL */, .add_generation_prompt = true};
//     char *prompt; size_t n;
//     if (chat_render(ct, &p, &prompt, &n, &err) == SIM_OK) { tokenize(prompt); mem_free(prompt); }
//     chat_template_free(ct);
//
// What the template sees (as transformers' apply_chat_template passes it):
// `messages`, `tools` (None when there are none), `documents` (None),
// `add_generation_prompt`, `bos_token` and `eos_token` (when given), plus
// any extra variables (p.vars, e.g. enable_thinking); rendering uses
// trim_blocks and lstrip_blocks, HF's tojson, raise_exception and
// strftime_now (see model/jinja.h).
//
// Messages are passed through as they are, except:
//   - content given as an array of parts ([{"type": "text", "text": ...}])
//     becomes one string, the texts joined with "\n" (as llama.cpp does for
//     templates that take strings); any other part type is refused
//     (SIM_ERR_UNSUPPORTED: this engine reads text only);
//   - when the render fails with a template error (not raise_exception),
//     chat_render retries with what templates disagree on: first tool-call
//     `arguments` given as a JSON string are passed parsed into an object (the
//     HF convention, e.g. Llama 3.1 and Qwen 2.5 apply tojson to them); then
//     the strings as sent (DeepSeek-R1 concatenates them); then each of
//     those with null content as "" (Qwen 3 and Phi 3.5 concatenate content).
//     The first variant that renders wins; if none does, the error is the
//     first variant's.
//
// Fallback: a model without a template gets ChatML, the format HF used as
// its default chat template:
//     <|im_start|>{role}\n{content}<|im_end|>\n   (for each message)
//     <|im_start|>assistant\n                      (with add_generation_prompt)
// CHAT_TEMPLATE_CHATML is that template's source.
//
// Ownership: chat_template_new copies the template and the tokens; a
// chat_template is immutable and may be shared by threads. chat_render
// does not keep the JSON it is given; *out is allocated with mem_alloc (free
// with mem_free).
//
// Errors: SIM_ERR_FORMAT when the template does not parse ("line L, column
// C: ...") or fails while rendering; SIM_ERR_ARG for malformed messages
// ("messages[2]: ...") and when the template refused the conversation with
// raise_exception (err.msg is the template's own message, e.g. "Conversation
// roles must alternate user/assistant/user/assistant/..."); SIM_ERR_UNSUPPORTED
// for non-text content parts; SIM_ERR_RANGE for a render over jinja's limits.
#ifndef SIM_CHAT_H
#define SIM_CHAT_H

#include <jansson.h>
#include <time.h>

#include "base/base.h"

#define CHAT_TEMPLATE_CHATML                                                                          \
    "{% for message in messages %}{{'<|im_start|>' + message['role'] + '\\n' + message['content'] + " \
    "'<|im_end|>' + '\\n'}}{% endfor %}{% if add_generation_prompt %}{{ '<|im_start|>assistant\\n' }}{% endif %}"

typedef struct chat_template chat_template;

// Parses tmpl (NULL or "" for the ChatML fallback). bos and eos are the
// model's token texts, NULL when the model has none (the variable is then
// undefined in the template).
sim_status chat_template_new(chat_template **out, const char *tmpl, const char *bos, const char *eos, sim_err *err);
void chat_template_free(chat_template *ct); // NULL is fine
bool chat_template_is_fallback(const chat_template *ct);

typedef struct chat_params {
    const json_t *messages;     // an array of {"role", "content", ...} objects
    const json_t *tools;        // an array of tool definitions, or NULL
    bool add_generation_prompt; // end with the start of an assistant turn
    const json_t *vars;         // an object of more template variables, or NULL
    const struct tm *now;       // what strftime_now() formats; NULL: the current local time
    uint64_t max_steps;         // jinja's step budget per render; 0: JINJA_MAX_STEPS
    size_t max_output;          // bytes; 0: JINJA_MAX_OUTPUT
} chat_params;

// Renders the conversation into a new NUL-terminated string *out of *out_len
// bytes (out_len may be NULL).
sim_status chat_render(const chat_template *ct, const chat_params *p, char **out, size_t *out_len, sim_err *err);

#endif
