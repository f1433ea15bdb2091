// tokenize.c — `simularity tokenize`: token ids of a text on one line.
#include "cli/cli.h"

int cmd_tokenize(int argc, char **argv) {
    const char *model_path = NULL, *text = NULL, *file = NULL;
    bool no_bos = false;
    cli_opt opts[] = {
        {"-m|--model", OPT_STR, &model_path, "model or vocab-only file (GGUF)"},
        {"-p|--prompt", OPT_STR, &text, "text to tokenize"},
        {"-f|--file", OPT_STR, &file, "read the text from a file"},
        {"--no-bos", OPT_FLAG, &no_bos, "do not add the BOS token the model asks for"},
    };
    int n_pos, rc;
    if ((rc = cli_parse("tokenize -m MODEL (-p TEXT | -f FILE) [--no-bos]", argc, argv, opts, ARRAY_LEN(opts), NULL, 0, &n_pos)))
        return rc;
    cli_input in;
    if (!cli_input_open(&in, model_path, text, file, &(model_params){.vocab_only = true}, !no_bos)) return 1;
    for (int i = 0; i < in.n; i++) printf(i ? " %d" : "%d", in.toks[i]);
    putchar('\n');
    cli_input_close(&in);
    return 0;
}
