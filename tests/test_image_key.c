// test_image_key.c — chroma key on images drawn here: an anti-aliased disc
// (coverage from 4×4 supersampling, so the true alpha of every pixel is
// known) on green and on white, with a little background noise. Checks:
// interior alpha 255, background 0, edge alpha in between and monotonic,
// no green cast and no white fringe on edges, border colour detection, the
// trim box, and one canvas for a set.
#include <stdlib.h>

#include "image/key.h"
#include "test.h"

typedef struct scene {
    int w, h;
    float cx, cy, r;
    uint8_t fg[3], bg[3];
    uint8_t *rgba;   // (h, w, 4)
    float *cover;    // (h, w) the true alpha
} scene;

static uint32_t rng = 12345;
static int noise(int amp) {
    rng = rng * 1103515245u + 12345u;
    return (int)((rng >> 16) % (2 * amp + 1)) - amp;
}

// ramp > 0: a soft edge instead, alpha falling linearly over `ramp` pixels
// across the circle (as an upscaled or blurred generated image has).
static float ramp_px = 0;

static void draw(scene *s, int w, int h, float cx, float cy, float r, const uint8_t fg[3], const uint8_t bg[3], int amp) {
    *s = (scene){.w = w, .h = h, .cx = cx, .cy = cy, .r = r};
    memcpy(s->fg, fg, 3), memcpy(s->bg, bg, 3);
    s->rgba = malloc((size_t)w * h * 4), s->cover = malloc((size_t)w * h * sizeof(float));
    for (int y = 0; y < h; y++)
        for (int x = 0; x < w; x++) {
            int in = 0;
            for (int sy = 0; sy < 4; sy++)
                for (int sx = 0; sx < 4; sx++) {
                    float px = x + (sx + 0.5f) / 4, py = y + (sy + 0.5f) / 4;
                    in += (px - cx) * (px - cx) + (py - cy) * (py - cy) <= r * r;
                }
            float a = in / 16.0f;
            if (ramp_px > 0) {
                float dd = sqrtf((x + 0.5f - cx) * (x + 0.5f - cx) + (y + 0.5f - cy) * (y + 0.5f - cy));
                a = (r - dd) / ramp_px + 0.5f;
                a = a < 0 ? 0 : a > 1 ? 1 : a;
            }
            size_t i = (size_t)y * w + x;
            s->cover[i] = a;
            for (int c = 0; c < 3; c++) {
                int v = (int)lrintf(a * fg[c] + (1 - a) * bg[c]) + (a == 0 ? noise(amp) : 0);
                s->rgba[i * 4 + c] = (uint8_t)(v < 0 ? 0 : v > 255 ? 255 : v);
            }
            s->rgba[i * 4 + 3] = 255;
        }
}

static void scene_free(scene *s) { free(s->rgba), free(s->cover); }

// The common checks on a keyed disc; returns the number of edge pixels seen.
static int check_keyed(const scene *s, const char *what) {
    int bad_in = 0, bad_out = 0, between = 0, edges = 0;
    for (size_t i = 0; i < (size_t)s->w * s->h; i++) {
        uint8_t a = s->rgba[i * 4 + 3];
        if (s->cover[i] == 1 && a != 255) bad_in++;
        if (s->cover[i] == 0 && a != 0) bad_out++;
        if (s->cover[i] > 0 && s->cover[i] < 1) edges++, between += a > 0 && a < 255;
    }
    CHECK_MSG(bad_in == 0, "%s: %d interior pixels not opaque", what, bad_in);
    CHECK_MSG(bad_out == 0, "%s: %d background pixels not transparent", what, bad_out);
    CHECK_MSG(between > 0, "%s: no edge pixel has a partial alpha (%d edge pixels)", what, edges);
    // monotonic along rays from the centre: alpha never rises going out
    int rises = 0;
    for (int ray = 0; ray < 16; ray++) {
        float dx = cosf(ray * 0.3927f), dy = sinf(ray * 0.3927f);
        int last = 256;
        for (float t = 0; t < s->r + 6; t += 0.25f) {
            int x = (int)(s->cx + dx * t), y = (int)(s->cy + dy * t);
            if (x < 0 || y < 0 || x >= s->w || y >= s->h) break;
            int a = s->rgba[((size_t)y * s->w + x) * 4 + 3];
            // a ray crosses pixels whose coverage can tie; compare with the coverage order
            if (a > last) rises++;
            last = a;
        }
    }
    CHECK_MSG(rises == 0, "%s: alpha rises %d times going outwards", what, rises);
    return edges;
}

static void run_green(float ramp) {
    scene s;
    const uint8_t fg[3] = {220, 120, 60}, bg[3] = {20, 230, 40};
    ramp_px = ramp;
    draw(&s, 61, 47, 30.3f, 22.7f, 15.2f, fg, bg, 3);
    ramp_px = 0;
    uint8_t det[3], used[3];
    sim_err err;
    CHECK(key_detect_color(s.rgba, s.w, s.h, 40, det, &err) == SIM_OK);
    for (int c = 0; c < 3; c++) CHECK_NEAR(det[c], bg[c], 2);
    // before keying the edges have a green cast
    int cast_before = 0;
    for (size_t i = 0; i < (size_t)s.w * s.h; i++)
        if (s.cover[i] > 0 && s.cover[i] < 1) cast_before += s.rgba[i * 4 + 1] > MAX(s.rgba[i * 4], s.rgba[i * 4 + 2]) + 4;
    CHECK(cast_before > 10);
    key_params kp = key_defaults();
    CHECK(key_apply(s.rgba, s.w, s.h, &kp, used, &err) == SIM_OK);
    for (int c = 0; c < 3; c++) CHECK_NEAR(used[c], bg[c], 2);
    check_keyed(&s, "green");
    int cast = 0, far = 0;
    for (size_t i = 0; i < (size_t)s.w * s.h; i++) {
        const uint8_t *p = s.rgba + i * 4;
        if (!p[3]) {
            CHECK(p[0] == 0 && p[1] == 0 && p[2] == 0);
            continue;
        }
        if (p[1] > MAX(p[0], p[2]) + 2) cast++;
        // a soft edge wider than the unmix window leaves a mixed colour on the faintest pixels
        if (p[3] >= (ramp > 0 ? 32 : 1) && (abs(p[0] - fg[0]) > 30 || abs(p[1] - fg[1]) > 30 || abs(p[2] - fg[2]) > 30) && far++ < 3)
            fprintf(stderr, "  pixel (%zu, %zu) cover %.3f: %d %d %d alpha %d\n", i % s.w, i / s.w, s.cover[i], p[0], p[1], p[2], p[3]);
    }
    CHECK_MSG(cast == 0, "ramp %g: %d pixels keep a green cast", ramp, cast);
    CHECK_MSG(far == 0, "ramp %g: %d visible pixels are far from the subject colour", ramp, far);
    if (ramp > 0) {
        scene_free(&s);
        return;
    }
    // trim: the disc's box plus the margin
    key_box b;
    CHECK(key_bbox(s.rgba, s.w, s.h, 2, &b));
    int x0 = (int)floorf(s.cx - s.r) - 2, x1 = (int)floorf(s.cx + s.r) + 2, y0 = (int)floorf(s.cy - s.r) - 2, y1 = (int)floorf(s.cy + s.r) + 2;
    CHECK_NEAR(b.x, x0, 1);
    CHECK_NEAR(b.y, y0, 1);
    CHECK_NEAR(b.x + b.w - 1, x1, 1);
    CHECK_NEAR(b.y + b.h - 1, y1, 1);
    uint8_t *crop;
    CHECK(key_crop(s.rgba, s.w, s.h, b, &crop, &err) == SIM_OK);
    CHECK(memcmp(crop, s.rgba + ((size_t)b.y * s.w + b.x) * 4, (size_t)b.w * 4) == 0);
    mem_free(crop);
    CHECK(key_crop(s.rgba, s.w, s.h, (key_box){s.w - 2, 0, 5, 5}, &crop, &err) == SIM_ERR_ARG);
    scene_free(&s);
}

static void test_green(void) { run_green(0); }
static void test_green_soft_edge(void) { run_green(5); }

static void test_white(void) {
    scene s;
    const uint8_t fg[3] = {30, 40, 160}, bg[3] = {255, 255, 255};
    draw(&s, 40, 52, 19.6f, 27.1f, 13.7f, fg, bg, 2);
    uint8_t used[3];
    sim_err err;
    int fringe_before = 0;
    for (size_t i = 0; i < (size_t)s.w * s.h; i++)
        if (s.cover[i] > 0.3f && s.cover[i] < 1) fringe_before += s.rgba[i * 4] > fg[0] + 60;
    CHECK(fringe_before > 5);
    key_params kp = key_defaults();
    CHECK(key_apply(s.rgba, s.w, s.h, &kp, used, &err) == SIM_OK);
    CHECK(used[0] >= 252 && used[1] >= 252 && used[2] >= 252);
    check_keyed(&s, "white");
    int fringe = 0;
    for (size_t i = 0; i < (size_t)s.w * s.h; i++) {
        const uint8_t *p = s.rgba + i * 4;
        if (p[3] && (abs(p[0] - fg[0]) > 30 || abs(p[1] - fg[1]) > 30 || abs(p[2] - fg[2]) > 30)) fringe++;
    }
    CHECK_MSG(fringe == 0, "%d visible pixels keep a white fringe", fringe);
    scene_free(&s);
}

// A green subject inside the sprite (not at its edge) keeps its colour; an
// explicit key colour works; without spill suppression the edge keeps its cast.
static void test_green_subject_and_options(void) {
    scene s;
    const uint8_t fg[3] = {230, 190, 160}, bg[3] = {0, 255, 0};
    draw(&s, 50, 50, 25, 25, 18, fg, bg, 0);
    for (int y = 22; y < 28; y++)
        for (int x = 22; x < 28; x++) {
            uint8_t *p = s.rgba + ((size_t)y * 50 + x) * 4;
            p[0] = 40, p[1] = 140, p[2] = 60; // green eyes
        }
    key_params kp = key_defaults();
    kp.auto_color = false;
    CHECK(key_parse_color("#00FF00", kp.color));
    sim_err err;
    uint8_t *copy = malloc(50 * 50 * 4);
    memcpy(copy, s.rgba, 50 * 50 * 4);
    CHECK(key_apply(s.rgba, 50, 50, &kp, NULL, &err) == SIM_OK);
    const uint8_t *eye = s.rgba + ((size_t)25 * 50 + 25) * 4;
    CHECK(eye[0] == 40 && eye[1] == 140 && eye[2] == 60 && eye[3] == 255);
    kp.spill = false;
    CHECK(key_apply(copy, 50, 50, &kp, NULL, &err) == SIM_OK);
    int cast = 0;
    for (size_t i = 0; i < 2500; i++)
        if (copy[i * 4 + 3] && copy[i * 4 + 3] < 255) cast += copy[i * 4 + 1] > copy[i * 4] + 10;
    CHECK(cast > 0);
    free(copy);
    scene_free(&s);
    uint8_t c[3];
    CHECK(key_parse_color("ffffff", c) && c[0] == 255);
    CHECK(key_parse_color("#1a2B3c", c) && c[0] == 0x1a && c[1] == 0x2b && c[2] == 0x3c);
    CHECK(!key_parse_color("#12345", c) && !key_parse_color("#12345g", c) && !key_parse_color("green", c));
}

static void test_detect_errors(void) {
    uint8_t img[16 * 16 * 4];
    for (size_t i = 0; i < sizeof img; i++) img[i] = (uint8_t)(i * 97 + (i >> 3) * 31);
    uint8_t out[3];
    sim_err err;
    CHECK(key_detect_color(img, 16, 16, 20, out, &err) == SIM_ERR_FORMAT);
    CHECK(strstr(err.msg, "no flat background") != NULL);
    key_params kp = key_defaults();
    CHECK(key_apply(img, 16, 16, &kp, NULL, &err) == SIM_ERR_FORMAT);
    kp.softness = 0;
    CHECK(key_apply(img, 16, 16, &kp, NULL, &err) == SIM_ERR_ARG);
    // a 1x1 image is all border
    uint8_t one[4] = {1, 2, 3, 255};
    CHECK(key_detect_color(one, 1, 1, 10, out, &err) == SIM_OK && out[2] == 3);
    memset(img, 0, sizeof img);
    key_box b;
    CHECK(!key_bbox(img, 16, 16, 3, &b));
}

// Three expressions of different sizes line up on one canvas, bottom centre.
static void test_canvas(void) {
    const int sz[3][2] = {{20, 30}, {25, 27}, {19, 33}};
    key_sprite in[3], out[3];
    for (int i = 0; i < 3; i++) {
        in[i] = (key_sprite){malloc((size_t)sz[i][0] * sz[i][1] * 4), sz[i][0], sz[i][1]};
        memset(in[i].rgba, 200, (size_t)sz[i][0] * sz[i][1] * 4); // opaque content everywhere
    }
    sim_err err;
    CHECK(key_canvas(in, 3, KEY_ANCHOR_BOTTOM_CENTER, 4, out, &err) == SIM_OK);
    for (int i = 0; i < 3; i++) {
        CHECK_EQ_INT(out[i].w, 25 + 8);
        CHECK_EQ_INT(out[i].h, 33 + 8);
        key_box b;
        CHECK(key_bbox(out[i].rgba, out[i].w, out[i].h, 0, &b));
        CHECK_EQ_INT(b.y + b.h, out[i].h - 4);                 // the same floor line
        CHECK_NEAR(b.x + b.w / 2.0, out[i].w / 2.0, 1);         // the same centre
        CHECK_EQ_INT(b.w, sz[i][0]);
        CHECK_EQ_INT(b.h, sz[i][1]);
        mem_free(out[i].rgba);
    }
    CHECK(key_canvas(in, 3, KEY_ANCHOR_TOP_CENTER, 0, out, &err) == SIM_OK);
    for (int i = 0; i < 3; i++) {
        key_box b;
        CHECK(key_bbox(out[i].rgba, out[i].w, out[i].h, 0, &b) && b.y == 0);
        mem_free(out[i].rgba);
    }
    CHECK(key_canvas(in, 0, KEY_ANCHOR_CENTER, 0, out, &err) == SIM_ERR_ARG);
    for (int i = 0; i < 3; i++) free(in[i].rgba);
}

// Each allocation failing in turn: an error and the image unchanged.
static void test_alloc_failures(void) {
    scene s;
    const uint8_t fg[3] = {200, 50, 50}, bg[3] = {0, 255, 0};
    draw(&s, 20, 20, 10, 10, 6, fg, bg, 0);
    uint8_t *orig = malloc(20 * 20 * 4);
    memcpy(orig, s.rgba, 20 * 20 * 4);
    int fails = 0;
    for (long n = 0; n < 20; n++) {
        key_params kp = key_defaults();
        sim_err err;
        mem_fail_after(n);
        sim_status st = key_apply(s.rgba, 20, 20, &kp, NULL, &err);
        bool hit = mem_fail_triggered();
        mem_fail_after(-1);
        if (!hit) break;
        fails++;
        CHECK(st == SIM_ERR_NOMEM);
        CHECK(memcmp(orig, s.rgba, 20 * 20 * 4) == 0);
    }
    CHECK(fails >= 4);
    free(orig);
    scene_free(&s);
}

int main(int argc, char **argv) {
    test_init(argc, argv);
    TEST_RUN(test_green);
    TEST_RUN(test_green_soft_edge);
    TEST_RUN(test_white);
    TEST_RUN(test_green_subject_and_options);
    TEST_RUN(test_detect_errors);
    TEST_RUN(test_canvas);
    TEST_RUN(test_alloc_failures);
    return test_finish();
}
