// simularity.h — the public C API of Simularity.
//
// Simularity runs AI-driven visual novels: it loads GGUF language models and
// runs them on the CPU. This header is what an embedding program sees:
// models, contexts (a KV cache shared by sessions), sessions (one sequence
// each, never reprocessing what they hold), samplers, grammars and state
// files.
//
//     #include <simularity.h>
//
//     sim_error err;
//     sim_model *m;
//     if (sim_model_load(&m, "model.gguf", NULL, &err) != SIM_OK) { puts(err.msg); return 1; }
//     sim_context *c;
//     sim_context_new(&c, m, NULL, &err);               // defaults: the model's context, all CPUs
//     sim_session *s;
//     sim_session_new(&s, c, 0, &err);                  // sequence 0
//     int32_t toks[512];
//     int n = sim_tokenize(m, "Once upon a time", 16, true, false, toks, 512, &err);
//     sim_session_set_prompt(s, toks, n, NULL, &err);   // decodes only what is new
//     sim_sampler_params sp = sim_sampler_default_params();
//     sp.temp = 0.7f;
//     sim_sampler *smp;
//     sim_sampler_new(&smp, m, &sp, &err);
//     sim_generate_params gp = {.n_predict = 100};
//     sim_generation g;
//     if (sim_session_generate(s, smp, &gp, &g, &err) == SIM_OK) puts(g.text);
//     sim_generation_free(&g);
//     sim_sampler_free(smp); sim_session_free(s); sim_context_free(c); sim_model_free(m);
//
// Ownership: each *_new / *_load returns an object the caller frees with the
// matching *_free, children before parents (sessions before their context,
// contexts before their model; a grammar may be freed once no sampler uses
// it). Objects are not thread-safe except models and grammars, which are
// immutable after loading and may be shared by any number of threads.
//
// Errors: every fallible call returns a sim_status (SIM_OK = 0, errors are
// negative) and writes a one-line message naming the input and the problem
// into the sim_error it is given (which may be NULL). On error nothing is
// created and nothing that existed is lost.
#ifndef SIMULARITY_H
#define SIMULARITY_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

#define SIM_VERSION_MAJOR 0
#define SIM_VERSION_MINOR 1
#define SIM_VERSION_PATCH 0
#define SIM_VERSION_STRING "0.1.0"

typedef enum sim_status {
    SIM_OK = 0,
    SIM_ERR_IO = -1,          // a file could not be opened, read, mapped or written
    SIM_ERR_FORMAT = -2,      // the input is malformed (truncated, corrupt, wrong magic)
    SIM_ERR_UNSUPPORTED = -3, // well-formed, but uses something we do not implement
    SIM_ERR_NOMEM = -4,       // an allocation failed
    SIM_ERR_ARG = -5,         // the caller passed an invalid argument
    SIM_ERR_RANGE = -6,       // a value is outside what the model or context allows
    SIM_ERR_ABORTED = -7,     // the caller asked to stop
    SIM_ERR_BUSY = -8,        // no room now (a full queue): try again later
} sim_status;

// A short constant name for a status ("io error", "format error", ...).
const char *sim_status_str(sim_status s);

typedef struct sim_error {
    sim_status code;
    char msg[512]; // one line, no trailing newline
} sim_error;

// --- models -------------------------------------------------------------------------

typedef struct sim_model sim_model;

typedef struct sim_model_params {
    bool vocab_only;          // the tokenizer only (vocab-only GGUF files load)
    float rope_freq_base;     // > 0: override the model's RoPE base
    float rope_freq_scale;    // > 0: override the frequency scale (1 / context factor)
    const char *rope_scaling; // NULL: the model's; else "none", "linear", "ntk", "dynamic", "yarn"
    int yarn_orig_ctx;        // > 0: YaRN's original context
} sim_model_params;

sim_status sim_model_load(sim_model **out, const char *path, const sim_model_params *p, sim_error *err);
void sim_model_free(sim_model *m);
const char *sim_model_arch(const sim_model *m); // "llama", "qwen2"
int sim_model_n_vocab(const sim_model *m);
int sim_model_n_ctx_train(const sim_model *m);
uint64_t sim_model_n_params(const sim_model *m);

// Tokens of text[0..len): the number of ids the text needs (only the first
// cap are written), or a negative sim_status. add_special adds BOS/EOS as the
// model asks; parse_special matches control tokens written in the text.
int sim_tokenize(const sim_model *m, const char *text, size_t len, bool add_special, bool parse_special,
                 int32_t *out, int cap, sim_error *err);
// The text of ids (special tokens rendered when special is true): its
// length (only the first cap bytes are written, no NUL), or a negative sim_status.
int sim_detokenize(const sim_model *m, const int32_t *ids, int n, bool special, char *buf, int cap);
int32_t sim_token_bos(const sim_model *m); // -1 when the model has none
int32_t sim_token_eos(const sim_model *m);
bool sim_token_is_eog(const sim_model *m, int32_t id); // ends generation (EOS, EOT, <|im_end|>, ...)

// --- contexts -----------------------------------------------------------------------

typedef struct sim_context sim_context;

typedef struct sim_context_params {
    int n_ctx;      // KV cells shared by the context's sessions (0: the model's, at most 4096)
    int n_batch;    // most tokens decoded per step (0: 512)
    int n_parallel; // most sequences generating together (0: 1)
    int n_threads;  // 0: all CPUs
    bool kv_f32;    // F32 KV cache instead of F16
} sim_context_params;

sim_status sim_context_new(sim_context **out, sim_model *m, const sim_context_params *p, sim_error *err);
void sim_context_free(sim_context *c);
int sim_context_n_ctx(const sim_context *c);
int sim_context_n_used(const sim_context *c); // cells in use by all sessions

// --- grammars -----------------------------------------------------------------------

typedef struct sim_grammar sim_grammar;

// GBNF (llama.cpp's grammar language); errors say "line L, column C: what".
sim_status sim_grammar_parse(sim_grammar **out, const char *gbnf, size_t len, sim_error *err);
// JSON Schema (objects, required, enums, arrays, strings, numbers, booleans,
// null, anyOf, $ref); errors name the JSON path.
sim_status sim_grammar_from_json_schema(sim_grammar **out, const char *schema, size_t len, sim_error *err);
void sim_grammar_free(sim_grammar *g);

// --- samplers -----------------------------------------------------------------------

typedef struct sim_sampler sim_sampler;

typedef struct sim_sampler_params {
    const char *order;  // NULL: "penalties;dry;top_n_sigma;top_k;typ_p;top_p;min_p;xtc;temperature"
    float temp;         // 0: greedy
    float dynatemp_range, dynatemp_exponent;
    int top_k;
    float top_p, min_p, typical_p, top_n_sigma;
    float xtc_probability, xtc_threshold;
    int min_keep;
    float repeat_penalty, frequency_penalty, presence_penalty;
    int repeat_last_n;
    float dry_multiplier, dry_base;
    int dry_allowed_length, dry_penalty_last_n;
    int mirostat; // 0 off, 1, 2
    float mirostat_tau, mirostat_eta;
    uint64_t seed;
} sim_sampler_params;

sim_sampler_params sim_sampler_default_params(void);
sim_status sim_sampler_new(sim_sampler **out, const sim_model *m, const sim_sampler_params *p, sim_error *err);
void sim_sampler_free(sim_sampler *s);
// Constrains every later token to the grammar (NULL removes it), from its start.
sim_status sim_sampler_set_grammar(sim_sampler *s, const sim_grammar *g, sim_error *err);
// Bans (bias -INFINITY) or favours tokens.
sim_status sim_sampler_set_logit_bias(sim_sampler *s, const int32_t *tokens, const float *bias, int n, sim_error *err);
// Picks a token from logits (n_vocab floats) and records it (penalties,
// grammar). Returns the token or a negative sim_status.
int32_t sim_sampler_sample(sim_sampler *s, const float *logits, sim_error *err);
// Records tokens chosen elsewhere (a prompt) for the penalties.
void sim_sampler_accept(sim_sampler *s, int32_t token);

// --- sessions -----------------------------------------------------------------------

typedef struct sim_session sim_session;

typedef struct sim_prompt_stats {
    int n_reused;  // prompt tokens already cached
    int n_decoded; // tokens decoded
    int n_shifts;  // context shifts
} sim_prompt_stats;

typedef enum sim_stop_reason {
    SIM_STOP_LIMIT = 0, // n_predict reached
    SIM_STOP_EOG,       // the model ended the text
    SIM_STOP_STRING,    // a stop string (trimmed from the text)
    SIM_STOP_ABORTED,   // on_text returned false or *abort was set
    SIM_STOP_FULL,      // the context is full and shifting is off
} sim_stop_reason;

typedef struct sim_generate_params {
    int n_predict;              // < 0 (or 0 in a zeroed struct: use -1): until a stop
    const char *const *stop;    // stop strings
    int n_stop;
    bool (*on_text)(void *ud, const char *text, size_t len); // streamed text; false aborts
    void *ud;
    const volatile int *abort;  // polled before each token
} sim_generate_params;

typedef struct sim_generation {
    char *text; // the continuation, NUL-terminated (sim_generation_free)
    size_t len;
    int n_tokens;
    sim_stop_reason reason;
} sim_generation;

// A session owns sequence seq (0..63) of the context. Context shifting is on
// (sim_session_set_shift turns it off); the first token (BOS) survives shifts.
sim_status sim_session_new(sim_session **out, sim_context *c, int seq, sim_error *err);
void sim_session_free(sim_session *s); // frees its cells
void sim_session_set_shift(sim_session *s, bool on, int n_keep); // n_keep < 0: BOS
// Hands the whole prompt; only what differs from the cached tokens is decoded.
sim_status sim_session_set_prompt(sim_session *s, const int32_t *toks, int n, sim_prompt_stats *stats,
                                  sim_error *err);
// Appends one token and decodes it.
sim_status sim_session_push(sim_session *s, int32_t token, sim_error *err);
const float *sim_session_logits(const sim_session *s); // after the last token (n_vocab), or NULL
int sim_session_n_tokens(const sim_session *s);
const int32_t *sim_session_tokens(const sim_session *s);
// A new session on sequence dst sharing this one's cells (no copy).
sim_status sim_session_fork(const sim_session *s, int dst, sim_session **out, sim_error *err);
sim_status sim_session_generate(sim_session *s, sim_sampler *smp, const sim_generate_params *p, sim_generation *out,
                                sim_error *err);
void sim_generation_free(sim_generation *g);
// State files: the session's tokens and KV cells, keyed by the model's
// content hash, engine version, context size and KV type.
sim_status sim_session_save(const sim_session *s, const char *path, sim_error *err);
sim_status sim_session_load(sim_session *s, const char *path, sim_error *err);

#ifdef __cplusplus
}
#endif
#endif
