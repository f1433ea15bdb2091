// cli.h — what the commands of `simularity` share: option parsing, error
// reporting, prompt input, model loading with messages.
//
// Every command is `int cmd_NAME(int argc, char **argv)` (argv[0] is the
// command name) returning the process exit code: 0 on success, 1 on any
// error after printing one line "simularity: <what went wrong>" to stderr.
#ifndef SIM_CLI_H
#define SIM_CLI_H

#include <stdio.h>

#include "base/base.h"
#include "model/forward.h"
#include "model/model.h"

typedef enum cli_kind { OPT_STR, OPT_INT, OPT_FLOAT, OPT_U64, OPT_FLAG, OPT_LIST } cli_kind;

// An option that may be given several times (OPT_LIST): every value, in order.
#define CLI_LIST_MAX 512
typedef struct cli_list {
    const char *items[CLI_LIST_MAX];
    int n;
} cli_list;

typedef struct cli_opt {
    const char *names; // "-m|--model": alternatives separated by '|'
    cli_kind kind;
    void *dst;         // const char **, int *, float *, uint64_t *, bool *, cli_list *
    const char *help;
} cli_opt;

// Parses argv[1..argc): options of the table (values as the next argument or
// after '='), everything else positional (at most max_pos). Returns 0, or 1
// after printing an error; returns 2 when --help was asked (usage printed).
int cli_parse(const char *synopsis, int argc, char **argv, const cli_opt *opts, int n_opts,
              const char **pos, int max_pos, int *n_pos);

int cli_fail(const char *fmt, ...) __attribute__((format(printf, 1, 2))); // prints, returns 1

// Loads a model, printing the error on failure (returns NULL).
model *cli_load_model(const char *path, const model_params *mp);

// A prompt (from -p or -f), the model it is for, and its tokens: what run,
// logits and tokenize start from.
typedef struct cli_input {
    char *prompt;
    size_t len;
    model *m;
    int32_t *toks; // (n)
    int n;
} cli_input;

// Reads the prompt, loads the model and tokenizes (add_special: BOS/EOS as
// the model asks). Prints the error and returns false on failure, with
// everything released.
bool cli_input_open(cli_input *in, const char *model_path, const char *text, const char *file,
                    const model_params *mp, bool add_special);
void cli_input_close(cli_input *in);

const char *cli_basename(const char *path);

// The KV cache type of a --kv-type value ("f16" or "f32"); false for anything else.
bool cli_kv_type(const char *name, tt_type *out);

// Decodes tokens[0..n) of sequence 0 at positions pos0.. in batches of the
// context's batch size. on_logits (may be NULL) is called after each batch
// with the batch's first index when all_logits is set; otherwise only the
// last token's logits are computed (read them with fwd_logits(c, 0)).
// Prints the error and returns false on failure.
bool cli_eval(fwd_ctx *c, const int32_t *tokens, int n, int pos0, bool all_logits,
              void (*on_logits)(void *arg, fwd_ctx *c, int first, int count), void *arg);

int cmd_run(int argc, char **argv);
int cmd_serve(int argc, char **argv);
int cmd_logits(int argc, char **argv);
int cmd_tokenize(int argc, char **argv);
int cmd_info(int argc, char **argv);
int cmd_bench(int argc, char **argv);
int cmd_quantize(int argc, char **argv);
int cmd_synth(int argc, char **argv);
int cmd_play(int argc, char **argv);
int cmd_check(int argc, char **argv);
int cmd_import_card(int argc, char **argv);
int cmd_loom(int argc, char **argv);
int cmd_mix(int argc, char **argv);
int cmd_image(int argc, char **argv);
int cmd_image_gen(int argc, char **argv);
int cmd_image_key(int argc, char **argv);
int cmd_image_prompts(int argc, char **argv);
int cmd_sprite(int argc, char **argv);

// bench --runtime (bench_runtime.c): the runtime's savings on a model.
int bench_runtime(model *m, int n_threads, int n_prompt);
// bench image (bench_image.c): the image engine's speed and memory; argv[0] is "image".
int bench_image(int argc, char **argv);

#endif
