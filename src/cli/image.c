// image.c — `simularity image <subcommand>`: the image tools.
#include <string.h>

#include "cli/cli.h"

static const struct {
    const char *name;
    int (*fn)(int, char **);
    const char *what;
} subs[] = {
    {"gen", cmd_image_gen, "text to image with a Stable Diffusion model (diffusers folder) into a PNG"},
    {"key", cmd_image_key, "cut a flat background out of a PNG (chroma key, soft edges, trim)"},
    {"prompts", cmd_image_prompts, "print the expansions of a dynamic prompt, one per line"},
};

static int usage(FILE *f) {
    fprintf(f, "usage: simularity image <subcommand> [options]\n\nsubcommands:\n");
    for (size_t i = 0; i < ARRAY_LEN(subs); i++) fprintf(f, "  %-8s %s\n", subs[i].name, subs[i].what);
    fprintf(f, "\n`simularity image <subcommand> --help` lists its options.\n");
    return f == stdout ? 2 : 1;
}

int cmd_image(int argc, char **argv) {
    if (argc < 2) return usage(stderr);
    if (strcmp(argv[1], "-h") == 0 || strcmp(argv[1], "--help") == 0 || strcmp(argv[1], "help") == 0) return usage(stdout);
    for (size_t i = 0; i < ARRAY_LEN(subs); i++)
        if (strcmp(argv[1], subs[i].name) == 0) return subs[i].fn(argc - 1, argv + 1);
    fprintf(stderr, "simularity: image: unknown subcommand '%s' (gen, key, prompts)\n", argv[1]);
    return 1;
}
