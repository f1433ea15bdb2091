// image_tools.c — `simularity image key` (chroma key a sprite) and
// `simularity image prompts` (expand dynamic prompts).
#include <string.h>

#include "cli/cli.h"
#include "image/dynprompt.h"
#include "image/key.h"
#include "image/png.h"

int cmd_image_key(int argc, char **argv) {
    const char *color = "auto";
    float tolerance = key_defaults().tolerance, softness = key_defaults().softness;
    int margin = 4;
    bool no_trim = false, no_spill = false;
    cli_opt opts[] = {
        {"--color", OPT_STR, &color, "the background: auto (from the borders, default) or #RRGGBB"},
        {"--tolerance", OPT_FLOAT, &tolerance, "RGB distance up to which a pixel is background (default 40)"},
        {"--softness", OPT_FLOAT, &softness, "width of the soft edge past the tolerance (default 60)"},
        {"--margin", OPT_INT, &margin, "transparent pixels kept around the content when trimming (default 4)"},
        {"--no-trim", OPT_FLAG, &no_trim, "keep the image's size"},
        {"--no-spill", OPT_FLAG, &no_spill, "do not remove the background's cast on the edges"},
    };
    const char *pos[2];
    int n_pos, rc;
    if ((rc = cli_parse("image key IN.png OUT.png [--color auto|#RRGGBB] [--tolerance T] [--softness S] [--margin M] [--no-trim]",
                        argc, argv, opts, ARRAY_LEN(opts), pos, 2, &n_pos)))
        return rc;
    if (n_pos != 2) return cli_fail("image key: give the input and the output PNG (see --help)");
    key_params kp = key_defaults();
    kp.tolerance = tolerance, kp.softness = softness, kp.spill = !no_spill;
    if (strcmp(color, "auto") != 0) {
        if (!key_parse_color(color, kp.color)) return cli_fail("image key: --color '%s' is not auto or #RRGGBB", color);
        kp.auto_color = false;
    }
    if (margin < 0 || margin > 4096) return cli_fail("image key: --margin %d out of range (0..4096)", margin);
    png_image img;
    sim_err err;
    if (png_read_file(&img, pos[0], &err) != SIM_OK) return cli_fail("%s", err.msg);
    uint8_t used[3];
    if (key_apply(img.rgba, img.w, img.h, &kp, used, &err) != SIM_OK) {
        png_image_free(&img);
        return cli_fail("%s: %s", pos[0], err.msg);
    }
    key_box b = {0, 0, img.w, img.h};
    uint8_t *out = img.rgba;
    if (!no_trim) {
        if (!key_bbox(img.rgba, img.w, img.h, margin, &b)) {
            png_image_free(&img);
            return cli_fail("%s: every pixel is background (colour #%02X%02X%02X): lower --tolerance?", pos[0], used[0], used[1], used[2]);
        }
        if (key_crop(img.rgba, img.w, img.h, b, &out, &err) != SIM_OK) {
            png_image_free(&img);
            return cli_fail("%s", err.msg);
        }
    }
    // keep the input's text chunks (the generation parameters)
    sim_status st = png_write_file(pos[1], out, b.w, b.h, 4, img.texts, img.n_texts, &err);
    fprintf(stderr, "key: background #%02X%02X%02X, %dx%d -> %dx%d at +%d+%d\n", used[0], used[1], used[2], img.w, img.h, b.w, b.h,
            b.x, b.y);
    if (out != img.rgba) mem_free(out);
    png_image_free(&img);
    if (st != SIM_OK) return cli_fail("%s", err.msg);
    return 0;
}

int cmd_image_prompts(int argc, char **argv) {
    int n_random = 0;
    uint64_t seed = 0;
    cli_opt opts[] = {
        {"--random", OPT_INT, &n_random, "N random expansions instead of every combination"},
        {"--seed", OPT_U64, &seed, "the random generator's seed (default 0)"},
    };
    const char *pos[1];
    int n_pos, rc;
    if ((rc = cli_parse("image prompts TEXT [--random N] [--seed S]", argc, argv, opts, ARRAY_LEN(opts), pos, 1, &n_pos)))
        return rc;
    if (n_pos != 1) return cli_fail("image prompts: give the prompt text, e.g. \"a {red|blue} cat\" (see --help)");
    char **list;
    size_t n;
    sim_err err;
    sim_status st;
    if (n_random < 0 || n_random > DP_MAX_EXPANSIONS)
        return cli_fail("image prompts: --random %d out of range (1..%d)", n_random, DP_MAX_EXPANSIONS);
    if (n_random) st = dp_expand_random(pos[0], (size_t)(n = (size_t)n_random), seed, &list, &err);
    else st = dp_expand_all(pos[0], DP_MAX_EXPANSIONS, &list, &n, &err);
    if (st != SIM_OK) return cli_fail("%s", err.msg);
    for (size_t i = 0; i < n; i++) puts(list[i]);
    dp_list_free(list, n);
    return 0;
}
