// main.c — `simularity <command> [options]`.
#include <stdio.h>
#include <string.h>

#include "cli/cli.h"

static const struct {
    const char *name;
    int (*fn)(int, char **);
    const char *what;
} commands[] = {
    {"run", cmd_run, "generate a continuation of a prompt"},
    {"serve", cmd_serve, "serve the model over HTTP (OpenAI-compatible API)"},
    {"logits", cmd_logits, "print the top logits at every prompt position as JSON"},
    {"tokenize", cmd_tokenize, "print the token ids of a text"},
    {"info", cmd_info, "describe a model: shape, types, memory"},
    {"bench", cmd_bench, "measure prompt processing and generation speed"},
    {"quantize", cmd_quantize, "convert a model's weights to another type"},
    {"synth", cmd_synth, "write a random-weight model of a given shape"},
    {"check", cmd_check, "validate a scenario folder: every problem with its JSON path"},
    {"play", cmd_play, "play a scenario in the terminal (the story engine; --script --json for tests)"},
    {"import-card", cmd_import_card, "import a SillyTavern character card into a scenario folder"},
    {"loom", cmd_loom, "the tree of likely continuations of a prompt (LLooM)"},
    {"mix", cmd_mix, "several models write one text together, token by token"},
    {"image", cmd_image, "image tools: key (chroma key), prompts (dynamic prompts)"},
    {"sprite", cmd_sprite, "generate a character's layered sprite set (or a background) into a scenario"},
};

static int usage(FILE *f) {
    fprintf(f, "Simularity %s — AI-driven visual novels on your CPU\n\nusage: simularity <command> [options]\n\ncommands:\n",
            SIM_VERSION_STRING);
    for (size_t i = 0; i < ARRAY_LEN(commands); i++) fprintf(f, "  %-10s %s\n", commands[i].name, commands[i].what);
    fprintf(f, "\n`simularity <command> --help` lists a command's options.\n");
    return f == stdout ? 0 : 1;
}

int main(int argc, char **argv) {
    if (argc < 2) return usage(stderr);
    if (strcmp(argv[1], "-h") == 0 || strcmp(argv[1], "--help") == 0 || strcmp(argv[1], "help") == 0) return usage(stdout);
    if (strcmp(argv[1], "--version") == 0 || strcmp(argv[1], "version") == 0) {
        printf("simularity %s\n", SIM_VERSION_STRING);
        return 0;
    }
    for (size_t i = 0; i < ARRAY_LEN(commands); i++) {
        if (strcmp(argv[1], commands[i].name) == 0) {
            int rc = commands[i].fn(argc - 1, argv + 1);
            return rc == 2 ? 0 : rc; // 2: --help was printed
        }
    }
    fprintf(stderr, "simularity: unknown command '%s'\n\n", argv[1]);
    return usage(stderr);
}
