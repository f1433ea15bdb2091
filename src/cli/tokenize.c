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
    size_t len;
    char *prompt = cli_prompt(text, file, &len);
    if (!prompt) return 1;
    model *m = cli_load_model(model_path, true);
    int n = 0;
    int32_t *ids = m ? cli_tokenize(m, prompt, len, !no_bos, &n) : NULL;
    if (ids) {
        for (int i = 0; i < n; i++) printf(i ? " %d" : "%d", ids[i]);
        putchar('\n');
    }
    mem_free(ids);
    mem_free(prompt);
    model_free(m);
    return ids ? 0 : 1;
}
