// test_image_tiny_ae.c — tiny autoencoders from every published layout
// (src/image/tiny_ae.h): a random TAESD written as the original halves and,
// by the test's own renaming, as a diffusers AutoencoderTiny folder (with
// the real madebyollin/taesd config.json) and file decode and encode bit
// for bit alike; the real taef2 folder (*_decoder.pth) matches its golden
// output; configs of other layouts and empty folders are refused by name.
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "base/file.h"
#include "image/sdwrite.h"
#include "image/tiny_ae.h"
#include "test.h"

static char g_tmp[256];
static pool *g_pool;

static const char TAESD_CONFIG[] = "{\n  \"_class_name\": \"AutoencoderTiny\",\n  \"_diffusers_version\": \"0.20.0.dev0\",\n  \"act_fn\": \"relu\",\n"
    "  \"decoder_block_out_channels\": [64, 64, 64, 64],\n  \"encoder_block_out_channels\": [64, 64, 64, 64],\n  \"force_upcast\": false,\n"
    "  \"in_channels\": 3,\n  \"latent_channels\": 4,\n  \"latent_magnitude\": 3,\n  \"latent_shift\": 0.5,\n"
    "  \"num_decoder_blocks\": [3, 3, 3, 1],\n  \"num_encoder_blocks\": [1, 3, 3, 3],\n  \"out_channels\": 3,\n  \"scaling_factor\": 1.0,\n"
    "  \"upsampling_scaling_factor\": 2\n}\n";

// decode (4, 4, 4) → (3, 32, 32) and encode it back through m.
static void run(taesd *m, float *img, float *z) {
    static float lat[64];
    for (int i = 0; i < 64; i++) lat[i] = (float)((i * 37) % 11 - 5) * 0.3f;
    op_ctx c = {.pool = g_pool, .k = kern_get(KERN_BEST)};
    taesd_work *w = NULL;
    sim_err err = {0};
    CHECK_MSG(taesd_work_new(&w, m, 4, 4, &err) == SIM_OK, "%s", err.msg);
    if (!w) return;
    CHECK_MSG(taesd_decode(m, w, &c, lat, 4, 4, img, &err) == SIM_OK, "%s", err.msg);
    CHECK_MSG(taesd_encode(m, w, &c, img, 32, 32, z, &err) == SIM_OK, "%s", err.msg);
    taesd_work_free(w);
}

typedef struct renamed {
    st_file *src[2];
    stw_entry e[256];
    const char *from[256];
    const st_file *file[256];
    int n;
} renamed;

static sim_status fill(void *ud, int i, float *out, sim_err *err) {
    renamed *r = ud;
    return st_read_f32(r->file[i], r->from[i], NULL, 0, out, err);
}

// The original halves' tensors under diffusers AutoencoderTiny names: the
// decoder's Sequential index N is "decoder.layers.(N-1)" (no clamp layer).
static bool to_diffusers(const char *orig_dir, const char *out_path) {
    static renamed r;
    r.n = 0;
    sim_err err = {0};
    char p[600];
    for (int h = 0; h < 2; h++) {
        snprintf(p, sizeof p, "%s/taesd_%s.safetensors", orig_dir, h ? "encoder" : "decoder");
        if (st_open(&r.src[h], p, &err) != SIM_OK) {
            CHECK_MSG(0, "%s", err.msg);
            return false;
        }
        const st_file *f = r.src[h];
        for (int i = 0; i < f->n_tensors; i++) {
            const st_tensor *t = &f->tensors[i];
            char *dot = strchr(t->name, '.');
            stw_entry *e = &r.e[r.n];
            snprintf(e->name, sizeof e->name, "%s.layers.%d%s", h ? "encoder" : "decoder", atoi(t->name) - (h ? 0 : 1), dot);
            e->n_dims = t->n_dims;
            memcpy(e->shape, t->shape, sizeof e->shape);
            r.from[r.n] = t->name, r.file[r.n++] = f;
        }
    }
    bool ok = stw_write(out_path, r.e, r.n, ST_F16, NULL, fill, &r, &err) == SIM_OK;
    CHECK_MSG(ok, "%s", err.msg);
    st_close(r.src[0]), st_close(r.src[1]);
    return ok;
}

static void check_same(const char *what, const float *a, const float *b, size_t n) {
    size_t bad = 0;
    for (size_t i = 0; i < n; i++) bad += memcmp(&a[i], &b[i], sizeof *a) != 0;
    CHECK_MSG(bad == 0, "%s: %zu of %zu differ", what, bad, n);
}

static void test_layouts(void) {
    char orig[300], diff[300], path[400];
    snprintf(orig, sizeof orig, "%s/orig", g_tmp);
    snprintf(diff, sizeof diff, "%s/diffusers", g_tmp);
    sdw_opts o = {.dtype = ST_F16, .seed = 5};
    sim_err err = {0};
    int64_t n;
    CHECK_MSG(sdw_write_taesd(orig, 4, &o, &n, &err) == SIM_OK, "%s", err.msg);
    static float img0[3 * 32 * 32], z0[64], img[3 * 32 * 32], z[64];
    taesd *m = NULL;
    CHECK_MSG(tae_open(&m, orig, &err) == SIM_OK, "%s", err.msg); // the taesd_*.safetensors halves
    if (!m) return;
    run(m, img0, z0);
    taesd_free(m);

    snprintf(path, sizeof path, "mkdir -p %s", diff);
    CHECK(system(path) == 0);
    snprintf(path, sizeof path, "%s/diffusion_pytorch_model.safetensors", diff);
    if (!to_diffusers(orig, path)) return;
    // Names of the published diffusers AutoencoderTiny.
    st_file *f = NULL;
    CHECK(st_open(&f, path, &err) == SIM_OK);
    if (f) {
        const st_tensor *t = st_find(f, "decoder.layers.0.weight");
        CHECK(t && t->shape[0] == 64 && t->shape[1] == 4);
        t = st_find(f, "decoder.layers.18.weight");
        CHECK(t && t->shape[0] == 3 && t->shape[1] == 64);
        CHECK(st_find(f, "decoder.layers.17.conv.4.bias") && st_find(f, "decoder.layers.6.weight") && !st_find(f, "decoder.layers.6.bias"));
        t = st_find(f, "encoder.layers.14.weight");
        CHECK(t && t->shape[0] == 4 && t->shape[1] == 64);
        CHECK(st_find(f, "encoder.layers.2.weight") && !st_find(f, "encoder.layers.2.bias") && st_find(f, "encoder.layers.13.conv.0.weight"));
        st_close(f);
    }
    char cfg[400];
    snprintf(cfg, sizeof cfg, "%s/config.json", diff);
    CHECK(file_write_all(cfg, TAESD_CONFIG, strlen(TAESD_CONFIG), &err) == SIM_OK);
    CHECK_MSG(tae_open(&m, diff, &err) == SIM_OK, "%s", err.msg);
    if (m) {
        run(m, img, z);
        check_same("diffusers folder decode", img, img0, ARRAY_LEN(img));
        check_same("diffusers folder encode", z, z0, ARRAY_LEN(z));
        taesd_free(m);
    }
    CHECK_MSG(tae_open(&m, path, &err) == SIM_OK, "%s", err.msg); // the file alone
    if (m) {
        run(m, img, z);
        check_same("diffusers file decode", img, img0, ARRAY_LEN(img));
        taesd_free(m);
    }
    // A decoder file alone: decodes, has no encoder.
    snprintf(path, sizeof path, "%s/taesd_decoder.safetensors", orig);
    CHECK_MSG(tae_open(&m, path, &err) == SIM_OK, "%s", err.msg);
    taesd_free(m);

    // Other layouts in the config are refused naming the field.
    static const struct {
        const char *from, *to, *want;
    } bad[] = {
        {"\"num_decoder_blocks\": [3, 3, 3, 1]", "\"num_decoder_blocks\": [3, 3, 3, 3]", "'num_decoder_blocks' = [3,3,3,3]"},
        {"\"act_fn\": \"relu\"", "\"act_fn\": \"silu\"", "'act_fn' = \"silu\""},
        {"\"AutoencoderTiny\"", "\"AutoencoderKL\"", "'_class_name' = 'AutoencoderKL'"},
    };
    for (size_t i = 0; i < ARRAY_LEN(bad); i++) {
        char text[1024];
        const char *at = strstr(TAESD_CONFIG, bad[i].from);
        snprintf(text, sizeof text, "%.*s%s%s", (int)(at - TAESD_CONFIG), TAESD_CONFIG, bad[i].to, at + strlen(bad[i].from));
        CHECK(file_write_all(cfg, text, strlen(text), &err) == SIM_OK);
        CHECK_EQ_INT(tae_open(&m, diff, &err), SIM_ERR_UNSUPPORTED);
        CHECK_MSG(strstr(err.msg, "config.json") && strstr(err.msg, bad[i].want), "'%s' lacks '%s'", err.msg, bad[i].want);
    }
    CHECK_EQ_INT(tae_open(&m, g_tmp, &err), SIM_ERR_IO); // nothing there
    CHECK_MSG(strstr(err.msg, "no tiny autoencoder"), "%s", err.msg);
    snprintf(path, sizeof path, "%s/none.safetensors", g_tmp);
    CHECK_EQ_INT(tae_open(&m, path, &err), SIM_ERR_IO);
}

// The real taef2 folder (taef2_decoder.pth, taef2_encoder.pth) against its golden decode.
static void test_taef2_folder(void) {
    char dir[1024];
    if (!test_shared_path(dir, sizeof dir, "diffusion/taef2")) return;
    static float z[32 * 8 * 8], ref[3 * 64 * 64], img[3 * 64 * 64];
    if (!test_golden_f32("diffusion/taef2/taef2_decoder.sq.in.f32", z, ARRAY_LEN(z)) ||
        !test_golden_f32("diffusion/taef2/taef2_decoder.sq.out.f32", ref, ARRAY_LEN(ref)))
        return;
    taesd *m = NULL;
    sim_err err = {0};
    CHECK_MSG(tae_open(&m, dir, &err) == SIM_OK, "%s", err.msg);
    if (!m) return;
    CHECK_EQ_INT(taesd_latent_channels(m), 32);
    op_ctx c = {.pool = g_pool, .k = kern_get(KERN_BEST)};
    taesd_work *w = NULL;
    CHECK_EQ_INT(taesd_work_new(&w, m, 8, 8, &err), SIM_OK);
    if (w) {
        CHECK_EQ_INT(taesd_decode(m, w, &c, z, 8, 8, img, &err), SIM_OK);
        test_compare_rel("taef2 folder decode", img, ref, ARRAY_LEN(ref), 1e-3);
    }
    taesd_work_free(w);
    taesd_free(m);
}

int main(int argc, char **argv) {
    test_init(argc, argv);
    snprintf(g_tmp, sizeof g_tmp, "/tmp/sim_test_tae_XXXXXX");
    sim_err err;
    if (!mkdtemp(g_tmp) || pool_new(&g_pool, 2, &err) != SIM_OK) {
        perror("setup");
        return 1;
    }
    TEST_RUN(test_layouts);
    TEST_RUN(test_taef2_folder);
    pool_free(g_pool);
    char cmd[300];
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", g_tmp);
    if (system(cmd) != 0) fprintf(stderr, "could not remove %s\n", g_tmp);
    return test_finish();
}
