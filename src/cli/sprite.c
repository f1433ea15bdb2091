// sprite.c — `simularity sprite`: a character's layered sprite set, or a
// scene's background, generated with a Stable Diffusion model and written
// straight into a scenario folder (docs/sprites.md).
//
//   simularity sprite CHARACTER --scenario DIR --model M --base "..."
//       --outfits "{casual|coat}" --expressions "{happy|sad}" [--sheet S.png]
//   simularity sprite --background SCENE --scenario DIR --model M --prompt "..."
//
// A set is 1 + outfits + expressions images, all with ONE seed (so the
// figure stays the same): the body (the base prompt), each outfit (base +
// outfit text), each expression (base + expression text, inpainted onto
// the body's head box at --strength unless --no-inpaint), every prompt
// ending with "plain green background" (or white; nothing with --color
// auto). Each image is keyed (the background colour detected from its
// borders), trimmed, and the set is put on one canvas with a common
// bottom-centre anchor (image/key.h). Layers (docs/scenario-format.md):
//   - body    <body>.png: the base image on the canvas;
//   - outfit  <body>.outfit.<id>.png: the whole outfit image on the canvas,
//             x = 0, y = 0, scale = 1 (it covers the body);
//   - expression <body>.expression.<id>.png: the head box of the expression
//             image, placed where it sits: the head box is the top --head
//             fraction of the body's content box (the body image's opaque
//             pixels), the same box for every expression, so x, y are its
//             corner as fractions of the canvas and scale is 1.
// Files go to sprites/<character>/, ids are slugs of the variant texts
// (made unique). The manifest is edited as JSON (story/manifest.h): the
// character is created when missing; the body's image is replaced or the
// body added; each outfit/expression of the set gets its layer for the
// body replaced (name and other layers kept) or is added. Nothing is written
// until every image is made; the asset files and then the manifest are
// written atomically, and the result is checked like `simularity check`
// (a failing check puts the old manifest back).
#include <errno.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "base/file.h"
#include "base/strbuf.h"
#include "cli/cli.h"
#include "image/dynprompt.h"
#include "image/key.h"
#include "image/png.h"
#include "image/sd.h"
#include "image/sheet.h"
#include "story/import.h"
#include "story/manifest.h"
#include "story/scenario.h"
#include "tensor/kern.h"
#include "tensor/pool.h"

#define SPRITE_MAX_VARIANTS 64 // outfits (or expressions) in one set
#define SPRITE_MAX_STEPS 1000
#define SPRITE_MASK_BLUR 4.0f  // pixels (σ): the edge of the head mask, softened

typedef enum spr_kind { SPR_BODY, SPR_OUTFIT, SPR_EXPRESSION, SPR_BACKGROUND } spr_kind;
static const char *const KIND_NAME[] = {"body", "outfit", "expression", "background"};

// One image of the set.
typedef struct spr_image {
    spr_kind kind;
    char id[72];        // the variant's id (the body's id, the scene's id)
    const char *text;   // the variant text (borrowed from the expansion list); NULL for the body
    char *prompt;       // the full prompt (mem_alloc'd)
    char path[256];     // relative to the scenario folder
    uint8_t *rgba;      // (h, w, 4): keyed and trimmed, then on the canvas (the expression: its head box)
    int w, h;
    double x, y;        // the layer's placement (fractions of the canvas)
    uint8_t *png;       // the encoded file (png_len bytes)
    size_t png_len;
} spr_image;

typedef struct spr_args {
    const char *dir, *model, *base, *outfits, *expressions, *body, *negative, *sampler, *color, *sheet, *background, *prompt;
    int steps, width, height, threads, margin;
    float cfg, tolerance, softness, head, strength;
    uint64_t seed;
    bool dry_run, no_inpaint;
} spr_args;

typedef struct spr_set {
    spr_image *im; // (n): [0] the body, then the outfits, then the expressions (or one background)
    int n, n_outfits, n_expressions;
    char **outfit_texts, **expression_texts; // the expansions
    size_t n_outfit_texts, n_expression_texts;
    char mpath[4096];
    char *old;       // the manifest's bytes before the edit (to put back)
    size_t old_len;
    json_t *m;       // the manifest being edited
} spr_set;

static void set_free(spr_set *s) {
    for (int i = 0; i < s->n; i++) mem_free(s->im[i].prompt), mem_free(s->im[i].rgba), mem_free(s->im[i].png);
    mem_free(s->im);
    dp_list_free(s->outfit_texts, s->n_outfit_texts);
    dp_list_free(s->expression_texts, s->n_expression_texts);
    mem_free(s->old);
    json_decref(s->m);
}

// --- planning -------------------------------------------------------------------------------

// The expansions of a dynamic prompt as variants: ids are their slugs, made
// unique with -2, -3... Prints the error and returns false on failure.
static bool expand(const char *opt, const char *text, char ***list, size_t *n, spr_image *out, spr_kind kind) {
    sim_err err;
    if (dp_expand_all(text, SPRITE_MAX_VARIANTS, list, n, &err) != SIM_OK) {
        cli_fail("sprite: %s: %s", opt, err.msg);
        return false;
    }
    for (size_t i = 0; i < *n; i++) {
        char slug[65];
        imp_slug((*list)[i], slug);
        if (!slug[0]) {
            cli_fail("sprite: %s: expansion %zu ('%.60s') has no letter to make an id of (write e.g. \"{happy|sad}\")", opt, i + 1, (*list)[i]);
            return false;
        }
        spr_image *im = &out[i];
        im->kind = kind, im->text = (*list)[i];
        snprintf(im->id, sizeof im->id, "%s", slug);
        for (int k = 2;; k++) {
            bool dup = false;
            for (size_t j = 0; j < i; j++) dup |= strcmp(out[j].id, im->id) == 0;
            if (!dup) break;
            snprintf(im->id, sizeof im->id, "%.58s-%d", slug, k);
        }
    }
    return true;
}

// Builds "<base>, <text>, plain <colour> background" (parts left out when absent).
static char *make_prompt(const char *base, const char *text, const char *color) {
    sbuf b = {0};
    sb_str(&b, base);
    if (text && text[0]) sb_printf(&b, "%s%s", b.n ? ", " : "", text);
    if (strcmp(color, "auto") != 0) sb_printf(&b, "%splain %s background", b.n ? ", " : "", color);
    return sb_take(&b);
}

// Checks that the manifest stays valid when the set is drawn for `body`:
// every outfit/expression needs a layer for every body. Prints the error
// and returns false otherwise; when it is valid, notes the variants that
// keep a layer made for the body image this set replaces.
static bool check_layers(const spr_set *s, json_t *ch, const char *cid, const char *body) {
    json_t *bodies = json_object_get(ch, "bodies");
    bool body_new = !mf_find(bodies, body);
    const char *other = NULL;
    size_t i;
    json_t *e;
    json_array_foreach(bodies, i, e) {
        const char *id = json_string_value(json_object_get(e, "id"));
        if (id && strcmp(id, body) != 0) other = id;
    }
    for (int pass = 0; pass < 2; pass++) // 0: errors, 1: notes
        for (int k = SPR_OUTFIT; k <= SPR_EXPRESSION; k++) {
            json_t *vs = json_object_get(ch, k == SPR_OUTFIT ? "outfits" : "expressions");
            json_array_foreach(vs, i, e) { // kept variants need a layer for a new body
                const char *id = json_string_value(json_object_get(e, "id"));
                bool in_set = false;
                for (int j = 1; j < s->n; j++) in_set |= s->im[j].kind == (spr_kind)k && id && strcmp(s->im[j].id, id) == 0;
                if (in_set) continue;
                if (pass == 1)
                    fprintf(stderr, "sprite: note: the %s '%s' keeps its layer for the body '%s' (made for the old body image; put it "
                            "in --%ss to redraw it)\n", KIND_NAME[k], id ? id : "?", body, KIND_NAME[k]);
                else if (body_new) {
                    cli_fail("sprite: %s: character '%s': the %s '%s' would have no layer for the new body '%s' (add it to --%ss, "
                             "or draw the set for an existing body with --body)", s->mpath, cid, KIND_NAME[k], id ? id : "?", body,
                             KIND_NAME[k]);
                    return false;
                }
            }
            for (int j = 1; pass == 0 && j < s->n; j++) // new variants need a layer for the other bodies
                if (s->im[j].kind == (spr_kind)k && !mf_find(vs, s->im[j].id) && other) {
                    cli_fail("sprite: %s: character '%s': the new %s '%s' would have no layer for the body '%s' (a set is drawn "
                             "for one body; a character with several bodies can only get new layers for the variants it has)",
                             s->mpath, cid, KIND_NAME[k], s->im[j].id, other);
                    return false;
                }
        }
    return true;
}

// --- generation ------------------------------------------------------------------------------

// The head box: the top `head` fraction of the content box c, full width.
static key_box head_box(key_box c, float head) { return (key_box){c.x, c.y, c.w, MAX(1, (int)lrintf(c.h * head))}; }

// Generates every image of the set (keyed and trimmed unless a background).
static bool generate(spr_set *s, const spr_args *a, int sampler) {
    sim_err err;
    sd_model *m = NULL;
    pool *pl = NULL;
    float *img = NULL, *body = NULL, *mask = NULL; // body: (3, H, W) as generated; mask: (H, W), 1 on its head box
    size_t npx = (size_t)a->width * a->height;
    bool ok = false;
    if (sd_load(&m, a->model, &err) != SIM_OK) {
        cli_fail("sprite: --model: %s", err.msg);
        goto done;
    }
    img = mem_alloc(3 * npx * sizeof *img);
    bool inpaint = !a->no_inpaint && s->n_expressions > 0;
    if (inpaint) body = mem_alloc(3 * npx * sizeof *body), mask = mem_calloc(npx, sizeof *mask);
    if (!img || (inpaint && (!body || !mask)) || pool_new(&pl, a->threads ? a->threads : (int)sysconf(_SC_NPROCESSORS_ONLN), &err) != SIM_OK) {
        cli_fail("sprite: out of memory for a %dx%d image", a->width, a->height);
        goto done;
    }
    op_ctx oc = {.pool = pl, .k = kern_get(KERN_BEST)};
    key_params kp = key_defaults();
    kp.tolerance = a->tolerance, kp.softness = a->softness;
    for (int i = 0; i < s->n; i++) {
        spr_image *im = &s->im[i];
        sd_params p = sd_defaults();
        p.prompt = im->prompt, p.negative = a->negative, p.width = a->width, p.height = a->height, p.steps = a->steps;
        p.cfg = a->cfg, p.sampler = (dsamp_kind)sampler, p.seed = a->seed;
        if (inpaint && im->kind == SPR_EXPRESSION) // repaint the body's head
            p.init_image = body, p.strength = a->strength, p.mask = mask, p.mask_blur = SPRITE_MASK_BLUR;
        uint64_t t0 = time_ns();
        if (sd_generate(m, &oc, &p, img, NULL, &err) != SIM_OK) {
            cli_fail("sprite: %s '%s': %s", KIND_NAME[im->kind], im->id, err.msg);
            goto done;
        }
        uint8_t *rgba = mem_alloc((size_t)4 * a->width * a->height);
        if (!rgba) {
            cli_fail("sprite: out of memory");
            goto done;
        }
        sd_image_bytes(img, a->width, a->height, 4, rgba);
        im->rgba = rgba, im->w = a->width, im->h = a->height;
        if (im->kind != SPR_BACKGROUND) {
            uint8_t used[3];
            key_box b;
            if (key_apply(rgba, im->w, im->h, &kp, used, &err) != SIM_OK) {
                cli_fail("sprite: %s '%s': %s", KIND_NAME[im->kind], im->id, err.msg);
                goto done;
            }
            if (!key_bbox(rgba, im->w, im->h, 0, &b)) {
                cli_fail("sprite: %s '%s': every pixel is background (key colour #%02X%02X%02X): lower --tolerance", KIND_NAME[im->kind],
                         im->id, used[0], used[1], used[2]);
                goto done;
            }
            if (inpaint && im->kind == SPR_BODY) {
                memcpy(body, img, 3 * npx * sizeof *body);
                key_box hb = head_box(b, a->head);
                for (int y = hb.y; y < hb.y + hb.h; y++)
                    for (int x = hb.x; x < hb.x + hb.w; x++) mask[(size_t)y * a->width + x] = 1;
            }
            if (key_crop(rgba, im->w, im->h, b, &im->rgba, &err) != SIM_OK) {
                im->rgba = rgba; // freed with the set
                cli_fail("sprite: %s", err.msg);
                goto done;
            }
            mem_free(rgba);
            im->w = b.w, im->h = b.h;
        }
        fprintf(stderr, "sprite: [%d/%d] %s '%s': %.1f s\n", i + 1, s->n, KIND_NAME[im->kind], im->id, (time_ns() - t0) / 1e9);
    }
    ok = true;
done:
    sd_free(m);
    pool_free(pl);
    mem_free(img), mem_free(body), mem_free(mask);
    return ok;
}

// Puts the set on one canvas, cuts the expressions' head box, encodes the PNGs.
static bool compose(spr_set *s, const spr_args *a, int sampler) {
    sim_err err;
    int n = s->n;
    if (s->im[0].kind != SPR_BACKGROUND) {
        key_sprite *in = mem_calloc((size_t)n, sizeof *in), *out = mem_calloc((size_t)n, sizeof *out);
        sim_status st = in && out ? SIM_OK : err_set(&err, SIM_ERR_NOMEM, "out of memory");
        for (int i = 0; st == SIM_OK && i < n; i++) in[i] = (key_sprite){s->im[i].rgba, s->im[i].w, s->im[i].h};
        if (st == SIM_OK) st = key_canvas(in, n, KEY_ANCHOR_BOTTOM_CENTER, a->margin, out, &err);
        for (int i = 0; st == SIM_OK && i < n; i++) {
            mem_free(s->im[i].rgba);
            s->im[i].rgba = out[i].rgba, s->im[i].w = out[i].w, s->im[i].h = out[i].h;
        }
        mem_free(in), mem_free(out);
        if (st != SIM_OK) return cli_fail("sprite: %s", err.msg), false;
        // The head box: the top --head fraction of the body's content.
        const spr_image *body = &s->im[0];
        key_box cb, hb;
        if (!key_bbox(body->rgba, body->w, body->h, 0, &cb)) return cli_fail("sprite: the body image is empty"), false;
        hb = head_box(cb, a->head);
        for (int i = 0; i < n; i++) {
            spr_image *im = &s->im[i];
            if (im->kind != SPR_EXPRESSION) continue;
            uint8_t *crop;
            if (key_crop(im->rgba, im->w, im->h, hb, &crop, &err) != SIM_OK) return cli_fail("sprite: %s", err.msg), false;
            mem_free(im->rgba);
            im->rgba = crop, im->w = hb.w, im->h = hb.h;
            im->x = (double)hb.x / body->w, im->y = (double)hb.y / body->h;
        }
    }
    for (int i = 0; i < n; i++) {
        spr_image *im = &s->im[i];
        char params[8192], inp[80] = "";
        if (im->kind == SPR_EXPRESSION && !a->no_inpaint)
            snprintf(inp, sizeof inp, ", Denoising strength: %g, Inpainted: the body's head", a->strength);
        snprintf(params, sizeof params, "%s\nNegative prompt: %s\nSteps: %d, Sampler: %s, CFG scale: %g, Seed: %llu, Size: %dx%d%s, "
                 "Model: %s, Engine: simularity sprite", im->prompt, a->negative, a->steps, dsamp_name((dsamp_kind)sampler), a->cfg,
                 (unsigned long long)a->seed, a->width, a->height, inp, cli_basename(a->model));
        png_text t = {"parameters", params};
        if (im->kind == SPR_BACKGROUND) { // opaque: RGB
            for (size_t p = 0; p < (size_t)im->w * im->h; p++) memmove(im->rgba + p * 3, im->rgba + p * 4, 3);
        }
        if (png_encode(im->rgba, im->w, im->h, im->kind == SPR_BACKGROUND ? 3 : 4, &t, 1, &im->png, &im->png_len, &err) != SIM_OK)
            return cli_fail("sprite: %s", err.msg), false;
    }
    return true;
}

// The contact sheet: rows = outfits, columns = expressions, each cell the
// body with the outfit and the expression layered as the player draws them.
static bool write_sheet(const spr_set *s, const char *path) {
    const spr_image *body = &s->im[0], *outfits = &s->im[1], *exprs = &s->im[1 + s->n_outfits];
    int rows = s->n_outfits, cols = s->n_expressions;
    size_t cell = (size_t)body->w * body->h * 4;
    if (cell * rows * cols > (size_t)SHEET_MAX_SIDE * SHEET_MAX_SIDE * 4) // more pixels than the largest sheet
        return cli_fail("sprite: --sheet: %d x %d cells of %dx%d do not fit on a sheet of %d pixels a side", rows, cols, body->w, body->h,
                        SHEET_MAX_SIDE), false;
    uint8_t *pix = mem_alloc(cell * rows * cols), *out = NULL;
    sheet_cell *cells = mem_calloc((size_t)rows * cols, sizeof *cells);
    const char **rl = mem_calloc((size_t)rows, sizeof *rl), **cl = mem_calloc((size_t)cols, sizeof *cl);
    sim_err err;
    sim_status st = pix && cells && rl && cl ? SIM_OK : err_set(&err, SIM_ERR_NOMEM, "out of memory for the sheet");
    for (int r = 0; st == SIM_OK && r < rows; r++) {
        rl[r] = outfits[r].id;
        for (int c = 0; c < cols; c++) {
            cl[c] = exprs[c].id;
            uint8_t *p = pix + cell * (r * cols + c);
            memcpy(p, body->rgba, cell);
            sheet_over(p, body->w, body->h, outfits[r].rgba, outfits[r].w, outfits[r].h, 0, 0);
            sheet_over(p, body->w, body->h, exprs[c].rgba, exprs[c].w, exprs[c].h, (int)lrint(exprs[c].x * body->w),
                       (int)lrint(exprs[c].y * body->h));
            cells[r * cols + c] = (sheet_cell){p, body->w, body->h};
        }
    }
    int w, h;
    if (st == SIM_OK) st = sheet_grid(cells, rows, cols, rl, cl, &out, &w, &h, &err);
    if (st == SIM_OK) st = png_write_file(path, out, w, h, 4, NULL, 0, &err);
    mem_free(pix), mem_free(cells), mem_free(rl), mem_free(cl), mem_free(out);
    if (st != SIM_OK) return cli_fail("sprite: --sheet: %s", err.msg), false;
    fprintf(stderr, "sprite: sheet %s: %d outfits x %d expressions, %dx%d\n", path, rows, cols, w, h);
    return true;
}

// --- the manifest ------------------------------------------------------------------------------

// "mira-vale" → "Mira Vale".
static void id_to_name(const char *id, char *out, size_t cap) {
    size_t i = 0;
    for (bool up = true; *id && i + 1 < cap; id++) {
        char c = *id == '-' || *id == '_' ? ' ' : *id;
        out[i++] = up && c >= 'a' && c <= 'z' ? (char)(c - 'a' + 'A') : c;
        up = c == ' ';
    }
    out[i] = 0;
}

static bool set_new(json_t *obj, const char *key, json_t *v) { return v && json_object_set_new(obj, key, v) == 0; }

// Adds the set (or the background) to s->m. False on no memory.
static bool edit(spr_set *s, const spr_args *a, const char *id, const char *body) {
    json_t *locales = json_object_get(s->m, "locales");
    char name[80];
    id_to_name(id, name, sizeof name);
    if (s->im[0].kind == SPR_BACKGROUND) {
        json_t *scenes = json_object_get(s->m, "scenes"), *sc = mf_find(scenes, id);
        json_t *asset = mf_asset(s->im[0].path, s->im[0].png, s->im[0].png_len);
        if (sc) return set_new(sc, "background", asset);
        sc = json_pack("{s:s, s:o*, s:o*, s:o*}", "id", id, "name", mf_text(locales, name, NULL), "prompt",
                       mf_text(locales, a->prompt, NULL), "background", asset);
        return sc && json_array_append_new(scenes, sc) == 0;
    }
    json_t *chars = json_object_get(s->m, "characters"), *ch = mf_find(chars, id);
    if (!ch) {
        char color[8];
        snprintf(color, sizeof color, "#%06x", mf_color(name));
        ch = json_pack("{s:s, s:o*, s:s, s:o*, s:o*, s:o*, s:[], s:[], s:[]}", "id", id, "name", mf_text(locales, name, NULL), "color",
                       color, "about", mf_text(locales, "Not described yet.", NULL), "personality",
                       mf_text(locales, "Not described yet.", NULL), "appearance", mf_text(locales, a->base, NULL), "bodies",
                       "outfits", "expressions");
        if (!ch || json_array_append_new(chars, ch) != 0) return false;
    }
    json_t *bodies = json_object_get(ch, "bodies"), *b = mf_find(bodies, body);
    json_t *image = mf_asset(s->im[0].path, s->im[0].png, s->im[0].png_len);
    if (b) {
        if (!set_new(b, "image", image)) return false;
    } else if (!(b = json_pack("{s:s, s:o*}", "id", body, "image", image)) || json_array_append_new(bodies, b) != 0) return false;
    for (int i = 1; i < s->n; i++) {
        const spr_image *im = &s->im[i];
        json_t *vs = json_object_get(ch, im->kind == SPR_OUTFIT ? "outfits" : "expressions"), *v = mf_find(vs, im->id);
        json_t *layer = mf_layer(im->path, im->png, im->png_len, im->x, im->y, 1);
        if (v) {
            json_t *layers = json_object_get(v, "layers");
            if (!set_new(layers, body, layer)) return false;
        } else {
            v = json_pack("{s:s, s:o*, s:{s:o*}}", "id", im->id, "name", mf_text(locales, im->text, NULL), "layers", body, layer);
            if (!v || json_array_append_new(vs, v) != 0) return false;
        }
    }
    return true;
}

// Writes the files and the manifest, then checks the scenario; a failed
// check puts the old manifest back. Prints and returns false on failure.
static bool commit(spr_set *s, const char *dir) {
    sim_err err;
    for (int i = 0; i < s->n; i++)
        if (mf_write_file(dir, s->im[i].path, s->im[i].png, s->im[i].png_len, &err) != SIM_OK)
            return cli_fail("sprite: %s", err.msg), false;
    if (mf_write(s->m, s->mpath, &err) != SIM_OK) return cli_fail("sprite: %s", err.msg), false;
    scn_report rep;
    scn_report_init(&rep);
    scn_scenario *sc;
    if (scn_load(&sc, dir, &rep, &err) == SIM_OK) {
        scn_free(sc);
        scn_report_free(&rep);
        return true;
    }
    for (int i = 0; i < rep.n; i++)
        fprintf(stderr, "%s: %s%s%s (fix: %s)\n", s->mpath, rep.items[i].path, rep.items[i].path[0] ? ": " : "", rep.items[i].msg,
                rep.items[i].hint);
    scn_report_free(&rep);
    sim_err e2;
    if (mf_write_atomic(s->mpath, s->old, s->old_len, &e2) != SIM_OK)
        return cli_fail("sprite: the edited manifest does not check (%s), and putting the old one back failed: %s", err.msg, e2.msg), false;
    return cli_fail("sprite: the edited manifest does not check (%s); the old manifest was put back", err.msg), false;
}

// Checks that dir is a valid scenario folder and loads its manifest for editing.
static bool open_scenario(spr_set *s, const char *dir) {
    struct stat st;
    if (stat(dir, &st) != 0) return cli_fail("sprite: --scenario %s: %s", dir, strerror(errno)), false;
    if (!S_ISDIR(st.st_mode)) return cli_fail("sprite: --scenario %s: not a folder (sprites are written into a scenario folder, not a zip)", dir), false;
    if (snprintf(s->mpath, sizeof s->mpath, "%s/manifest.json", dir) >= (int)sizeof s->mpath - 8)
        return cli_fail("sprite: --scenario %s: path too long", dir), false;
    scn_report rep;
    scn_report_init(&rep);
    scn_scenario *sc;
    sim_err err;
    if (scn_load(&sc, dir, &rep, &err) != SIM_OK) {
        if (rep.n == 0) cli_fail("sprite: %s", err.msg);
        else cli_fail("sprite: %s: %d problem%s, the first: %s%s%s (fix it first: simularity check %s)", s->mpath, rep.n + rep.n_dropped,
                      rep.n + rep.n_dropped == 1 ? "" : "s", rep.items[0].path, rep.items[0].path[0] ? ": " : "", rep.items[0].msg, dir);
        scn_report_free(&rep);
        return false;
    }
    scn_free(sc);
    scn_report_free(&rep);
    if (file_read_all(s->mpath, SCN_MAX_MANIFEST, &s->old, &s->old_len, &err) != SIM_OK || !(s->m = mf_load(s->mpath, &err)))
        return cli_fail("sprite: %s", err.msg), false;
    return true;
}

// --- the command --------------------------------------------------------------------------------

int cmd_sprite(int argc, char **argv) {
    spr_args a = {.negative = "", .sampler = "ddim", .color = "green", .steps = 20, .margin = 4, .cfg = 7.5f,
                  .tolerance = key_defaults().tolerance, .softness = key_defaults().softness, .head = 0.25f, .strength = 0.75f};
    cli_opt opts[] = {
        {"--scenario", OPT_STR, &a.dir, "the scenario folder to write into"},
        {"-m|--model", OPT_STR, &a.model, "a diffusers folder (Stable Diffusion)"},
        {"--base", OPT_STR, &a.base, "the character: what every image of the set shows"},
        {"--outfits", OPT_STR, &a.outfits, "the outfits, a dynamic prompt: \"{casual clothes|a long coat}\""},
        {"--expressions", OPT_STR, &a.expressions, "the expressions, a dynamic prompt: \"{happy|sad}\""},
        {"--body", OPT_STR, &a.body, "the body id the set is drawn for [the character's first body, or default]"},
        {"--background", OPT_STR, &a.background, "draw the background of this scene instead (with --prompt)"},
        {"-p|--prompt", OPT_STR, &a.prompt, "the background's prompt (with --background)"},
        {"--negative", OPT_STR, &a.negative, "what not to draw"},
        {"--seed", OPT_U64, &a.seed, "the one seed of the whole set [0]"},
        {"--steps", OPT_INT, &a.steps, "sampling steps [20]"},
        {"--cfg", OPT_FLOAT, &a.cfg, "guidance scale [7.5]"},
        {"--sampler", OPT_STR, &a.sampler, "ddim, euler, euler_a, dpmpp_2m, lcm [ddim]"},
        {"-W|--width", OPT_INT, &a.width, "pixels [512 for sprites, 768 for backgrounds]"},
        {"-H|--height", OPT_INT, &a.height, "pixels [768 for sprites, 512 for backgrounds]"},
        {"--color", OPT_STR, &a.color, "green or white: the background prompted for; auto: none added [green]"},
        {"--tolerance", OPT_FLOAT, &a.tolerance, "key: RGB distance up to which a pixel is background [40]"},
        {"--softness", OPT_FLOAT, &a.softness, "key: width of the soft edge [60]"},
        {"--margin", OPT_INT, &a.margin, "transparent pixels around the set's canvas [4]"},
        {"--head", OPT_FLOAT, &a.head, "the expressions' layer: this top fraction of the body [0.25]"},
        {"--strength", OPT_FLOAT, &a.strength, "how much of the body's head the expressions repaint, 0..1 [0.75]"},
        {"--no-inpaint", OPT_FLAG, &a.no_inpaint, "draw each expression as a whole new image (like the outfits)"},
        {"--sheet", OPT_STR, &a.sheet, "also write a contact sheet PNG (outfits x expressions)"},
        {"--dry-run", OPT_FLAG, &a.dry_run, "print the images, prompts and files; generate and write nothing"},
        {"-t|--threads", OPT_INT, &a.threads, "threads (0: all CPUs)"},
    };
    const char *pos[1];
    int n_pos, rc;
    if ((rc = cli_parse("sprite CHARACTER --scenario DIR -m MODEL --base TEXT --outfits \"{a|b}\" --expressions \"{c|d}\" [options]\n"
                        "       sprite --background SCENE --scenario DIR -m MODEL -p TEXT [options]\n"
                        "  Generates a character's layered sprite set (body, outfits, expressions) with one seed, keys it,\n"
                        "  and adds it to DIR/manifest.json; or a scene's background. See docs/sprites.md.",
                        argc, argv, opts, (int)ARRAY_LEN(opts), pos, 1, &n_pos)))
        return rc;
    bool bg = a.background != NULL;
    const char *id = bg ? a.background : n_pos == 1 ? pos[0] : NULL;
    if (bg && n_pos) return cli_fail("sprite: --background SCENE takes no CHARACTER");
    if (!id) return cli_fail("sprite: give the character's id (or --background SCENE; see --help)");
    if (!mf_id_ok(id) || (!bg && (strcmp(id, "narrator") == 0 || strcmp(id, "player") == 0)))
        return cli_fail("sprite: '%.80s' is not a valid %s id (1-64 characters a-z, 0-9, '_' or '-', starting with a letter%s)", id,
                        bg ? "scene" : "character", bg ? "" : "; not narrator or player");
    if (!a.dir) return cli_fail("sprite: give the scenario folder with --scenario");
    if (!a.model) return cli_fail("sprite: give the model folder with -m");
    if (bg && !a.prompt) return cli_fail("sprite: --background needs the picture's --prompt");
    if (bg && (a.base || a.outfits || a.expressions || a.body || a.sheet))
        return cli_fail("sprite: --background draws one picture: --base, --outfits, --expressions, --body and --sheet are for a character");
    if (!bg && a.prompt) return cli_fail("sprite: --prompt is for --background; a character's set uses --base");
    if (!bg && (!a.base || !a.outfits || !a.expressions)) return cli_fail("sprite: give --base, --outfits and --expressions");
    if (a.body && !mf_id_ok(a.body)) return cli_fail("sprite: --body '%.80s' is not a valid id", a.body);
    if (!a.width) a.width = bg ? 768 : 512;
    if (!a.height) a.height = bg ? 512 : 768;
    if (a.steps < 1 || a.steps > SPRITE_MAX_STEPS) return cli_fail("sprite: --steps must be 1..%d", SPRITE_MAX_STEPS);
    if (a.width < 8 || a.height < 8 || a.width > 4096 || a.height > 4096) return cli_fail("sprite: -W and -H must be 8..4096 pixels");
    if (!(a.cfg >= 0 && a.cfg <= 100)) return cli_fail("sprite: --cfg must be 0..100");
    if (!(a.tolerance >= 0 && a.tolerance <= 441) || !(a.softness > 0 && a.softness <= 441))
        return cli_fail("sprite: --tolerance must be 0..441 and --softness more than 0 (up to 441)");
    if (a.margin < 0 || a.margin > 4096) return cli_fail("sprite: --margin must be 0..4096");
    if (!(a.head > 0 && a.head <= 1)) return cli_fail("sprite: --head must be a fraction in (0, 1]");
    if (!(a.strength > 0 && a.strength <= 1)) return cli_fail("sprite: --strength must be in (0, 1]");
    if (a.threads < 0) return cli_fail("sprite: --threads must not be negative");
    if (strcmp(a.color, "green") != 0 && strcmp(a.color, "white") != 0 && strcmp(a.color, "auto") != 0)
        return cli_fail("sprite: --color '%s' is not green, white or auto", a.color);
    if (a.sheet) { // its folder must exist: found out now, not after the generation
        char d[4096];
        snprintf(d, sizeof d, "%s", a.sheet);
        char *sl = strrchr(d, '/');
        struct stat st;
        if (sl) *sl = 0;
        if (sl && d[0] && (stat(d, &st) != 0 || !S_ISDIR(st.st_mode))) return cli_fail("sprite: --sheet %s: no folder %s", a.sheet, d);
    }
    int sampler = dsamp_parse(a.sampler);
    if (sampler < 0) return cli_fail("sprite: --sampler '%s' is unknown (ddim, euler, euler_a, dpmpp_2m, lcm)", a.sampler);

    spr_set s = {0};
    rc = 1;
    // The images: the body, the outfits, the expressions (or the background).
    if (!(s.im = mem_calloc(1 + 2 * SPRITE_MAX_VARIANTS, sizeof *s.im))) {
        cli_fail("sprite: out of memory");
        goto done;
    }
    if (bg) {
        s.n = 1;
        s.im[0] = (spr_image){.kind = SPR_BACKGROUND, .prompt = mem_strdup(a.prompt)};
        snprintf(s.im[0].id, sizeof s.im[0].id, "%s", id);
        snprintf(s.im[0].path, sizeof s.im[0].path, "backgrounds/%s.png", id);
    } else {
        if (!expand("--outfits", a.outfits, &s.outfit_texts, &s.n_outfit_texts, s.im + 1, SPR_OUTFIT)) goto done;
        s.n_outfits = (int)s.n_outfit_texts;
        if (!expand("--expressions", a.expressions, &s.expression_texts, &s.n_expression_texts, s.im + 1 + s.n_outfits, SPR_EXPRESSION))
            goto done;
        s.n_expressions = (int)s.n_expression_texts;
        s.n = 1 + s.n_outfits + s.n_expressions;
        s.im[0].kind = SPR_BODY;
    }
    if (!open_scenario(&s, a.dir)) goto done;
    const char *body = NULL;
    if (!bg) {
        json_t *ch = mf_find(json_object_get(s.m, "characters"), id);
        json_t *first = json_array_get(json_object_get(ch, "bodies"), 0);
        body = a.body ? a.body : first ? json_string_value(json_object_get(first, "id")) : "default";
        if (ch && !check_layers(&s, ch, id, body)) goto done;
        snprintf(s.im[0].id, sizeof s.im[0].id, "%s", body);
        for (int i = 0; i < s.n; i++) {
            spr_image *im = &s.im[i];
            im->prompt = make_prompt(a.base, im->text, a.color);
            if (i == 0) snprintf(im->path, sizeof im->path, "sprites/%s/%s.png", id, body);
            else snprintf(im->path, sizeof im->path, "sprites/%s/%s.%s.%s.png", id, body, KIND_NAME[im->kind], im->id);
        }
    }
    for (int i = 0; i < s.n; i++)
        if (!s.im[i].prompt) {
            cli_fail("sprite: out of memory");
            goto done;
        }
    if (a.dry_run) {
        for (int i = 0; i < s.n; i++)
            printf("%-10s %-20s %s/%s  seed %llu  \"%s\"%s\n", KIND_NAME[s.im[i].kind], s.im[i].id, a.dir, s.im[i].path,
                   (unsigned long long)a.seed, s.im[i].prompt,
                   s.im[i].kind == SPR_EXPRESSION && !a.no_inpaint ? "  (inpainted on the body's head)" : "");
        rc = 0;
        goto done;
    }
    if (!generate(&s, &a, sampler) || !compose(&s, &a, sampler)) goto done;
    if (a.sheet && !write_sheet(&s, a.sheet)) goto done;
    if (!edit(&s, &a, id, body)) {
        cli_fail("sprite: out of memory editing %s", s.mpath);
        goto done;
    }
    if (!commit(&s, a.dir)) goto done;
    if (bg) printf("sprite: scene '%s': background %s/%s (%dx%d)\n", id, a.dir, s.im[0].path, s.im[0].w, s.im[0].h);
    else
        printf("sprite: character '%s', body '%s': %d outfit%s, %d expression%s on a %dx%d canvas in %s/sprites/%s/\n", id, body,
               s.n_outfits, s.n_outfits == 1 ? "" : "s", s.n_expressions, s.n_expressions == 1 ? "" : "s", s.im[0].w, s.im[0].h, a.dir, id);
    rc = 0;
done:
    set_free(&s);
    return rc;
}
