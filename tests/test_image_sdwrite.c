// test_image_sdwrite.c — the safetensors writer (src/image/stwrite.h) and
// the random-weight model writer (src/image/sdwrite.h):
//  - the tensor lists of the real families against facts of the published
//    models, written here by hand (tensor counts, parameter counts as
//    diffusers' num_parameters() reports them, names and shapes);
//  - an SD 1.5-shaped pipeline at small widths written in F16 loads with
//    sd_load (so every name and shape matches the engine's binding) and
//    generates a finite image; the same seed gives the same bytes;
//  - a random TAESD loads with taesd_load and decodes to finite pixels;
//  - stw_write round trips through st_open, and refuses bad arguments.
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "base/file.h"
#include "image/sd.h"
#include "image/sdwrite.h"
#include "image/taesd.h"
#include "test.h"

static char g_tmp[256];

static void check_shape(const sdw_list *l, const char *name, int nd, const int64_t *d) {
    int i = sdw_list_find(l, name);
    CHECK_MSG(i >= 0, "no tensor %s", name);
    if (i < 0) return;
    CHECK_EQ_INT(l->e[i].n_dims, nd);
    for (int k = 0; k < nd && k < l->e[i].n_dims; k++) CHECK_MSG(l->e[i].shape[k] == d[k], "%s dim %d: %lld != %lld", name, k, (long long)l->e[i].shape[k], (long long)d[k]);
}
#define SHAPE_OF(...) (int)(sizeof((int64_t[]){__VA_ARGS__}) / sizeof(int64_t)), (const int64_t[]){__VA_ARGS__}

static void unet_facts(sdw_family f, int n_tensors, int64_t n_params) {
    dif_pipeline p;
    sdw_family_configs(f, &p);
    sdw_list l = {0};
    sim_err err = {0};
    CHECK_EQ_INT(sdw_unet_tensors(&l, &p.unet, &err), SIM_OK);
    if (n_tensors) CHECK_EQ_INT(l.n, n_tensors);
    CHECK_EQ_INT(sdw_list_params(&l), n_params);
    for (int i = 0; i < l.n; i++) CHECK_MSG(sdw_list_find(&l, l.e[i].name) == i, "%s twice", l.e[i].name);
    sdw_list_free(&l);
}

static void test_real_families(void) {
    // U-Nets: SD 1.5 and 2.1 as diffusers reports them (686 tensors each);
    // segmind's small-sd and tiny-sd are BK-SDM small (482,346,884) and tiny (323,384,964).
    unet_facts(SDW_SD15, 686, 859520964);
    unet_facts(SDW_SD21, 686, 865910724);
    unet_facts(SDW_SMALL_SD, 0, 482346884);
    unet_facts(SDW_TINY_SD, 0, 323384964);

    dif_pipeline p;
    sim_err err = {0};
    sdw_list l = {0};
    sdw_family_configs(SDW_SD15, &p);
    CHECK_EQ_INT(sdw_unet_tensors(&l, &p.unet, &err), SIM_OK);
    check_shape(&l, "down_blocks.0.attentions.0.transformer_blocks.0.attn1.to_q.weight", SHAPE_OF(320, 320));
    check_shape(&l, "down_blocks.0.attentions.0.transformer_blocks.0.attn2.to_k.weight", SHAPE_OF(320, 768));
    check_shape(&l, "down_blocks.0.attentions.0.proj_in.weight", SHAPE_OF(320, 320, 1, 1));
    check_shape(&l, "down_blocks.1.resnets.0.conv_shortcut.weight", SHAPE_OF(640, 320, 1, 1));
    check_shape(&l, "mid_block.resnets.0.conv1.weight", SHAPE_OF(1280, 1280, 3, 3));
    check_shape(&l, "up_blocks.0.resnets.0.conv1.weight", SHAPE_OF(1280, 2560, 3, 3));
    check_shape(&l, "up_blocks.1.resnets.2.conv1.weight", SHAPE_OF(1280, 1920, 3, 3));
    check_shape(&l, "up_blocks.3.resnets.0.conv_shortcut.weight", SHAPE_OF(320, 960, 1, 1));
    check_shape(&l, "up_blocks.3.attentions.2.transformer_blocks.0.ff.net.0.proj.weight", SHAPE_OF(2560, 320));
    check_shape(&l, "up_blocks.2.upsamplers.0.conv.weight", SHAPE_OF(640, 640, 3, 3));
    check_shape(&l, "time_embedding.linear_1.weight", SHAPE_OF(1280, 320));
    check_shape(&l, "conv_out.weight", SHAPE_OF(4, 320, 3, 3));
    CHECK(sdw_list_find(&l, "down_blocks.3.attentions.0.norm.weight") < 0);
    CHECK(sdw_list_find(&l, "down_blocks.3.downsamplers.0.conv.weight") < 0);
    sdw_list_free(&l);

    // VAE: 248 tensors, 83,653,863 parameters.
    CHECK_EQ_INT(sdw_vae_tensors(&l, &p.vae, &err), SIM_OK);
    CHECK_EQ_INT(l.n, 248);
    CHECK_EQ_INT(sdw_list_params(&l), 83653863);
    check_shape(&l, "encoder.mid_block.attentions.0.to_q.weight", SHAPE_OF(512, 512));
    check_shape(&l, "decoder.up_blocks.2.resnets.0.conv_shortcut.weight", SHAPE_OF(256, 512, 1, 1));
    check_shape(&l, "quant_conv.weight", SHAPE_OF(8, 8, 1, 1));
    sdw_list_free(&l);

    // CLIP ViT-L/14 text: 196 tensors (197 with the position_ids buffer), 123,060,480.
    CHECK_EQ_INT(sdw_clip_tensors(&l, &p.clip, &err), SIM_OK);
    CHECK_EQ_INT(l.n, 196);
    CHECK_EQ_INT(sdw_list_params(&l), 123060480);
    check_shape(&l, "text_model.embeddings.token_embedding.weight", SHAPE_OF(49408, 768));
    check_shape(&l, "text_model.encoder.layers.11.mlp.fc1.weight", SHAPE_OF(3072, 768));
    sdw_list_free(&l);

    // SD 2.1: linear projections, 1024-wide context, OpenCLIP-H text (23 layers, 340,387,840).
    sdw_family_configs(SDW_SD21, &p);
    CHECK_EQ_INT(sdw_unet_tensors(&l, &p.unet, &err), SIM_OK);
    check_shape(&l, "down_blocks.0.attentions.0.proj_in.weight", SHAPE_OF(320, 320));
    check_shape(&l, "up_blocks.1.attentions.0.transformer_blocks.0.attn2.to_v.weight", SHAPE_OF(1280, 1024));
    sdw_list_free(&l);
    CHECK_EQ_INT(sdw_clip_tensors(&l, &p.clip, &err), SIM_OK);
    CHECK_EQ_INT(sdw_list_params(&l), 340387840);
    check_shape(&l, "text_model.encoder.layers.22.self_attn.q_proj.weight", SHAPE_OF(1024, 1024));
    CHECK(sdw_list_find(&l, "text_model.encoder.layers.23.self_attn.q_proj.weight") < 0);
    sdw_list_free(&l);
    CHECK(p.unet.n_heads[0] == 5 && p.unet.n_heads[3] == 20 && p.unet.head_dim[2] == 64);

    // tiny-sd: three blocks, no mid block; the last down block keeps its attentions.
    sdw_family_configs(SDW_TINY_SD, &p);
    CHECK_EQ_INT(sdw_unet_tensors(&l, &p.unet, &err), SIM_OK);
    check_shape(&l, "down_blocks.2.attentions.0.proj_out.weight", SHAPE_OF(1280, 1280, 1, 1));
    check_shape(&l, "up_blocks.0.resnets.1.conv1.weight", SHAPE_OF(1280, 1920, 3, 3));
    CHECK(sdw_list_find(&l, "mid_block.resnets.0.conv1.weight") < 0);
    CHECK(sdw_list_find(&l, "down_blocks.0.resnets.1.conv1.weight") < 0);
    sdw_list_free(&l);

    sdw_family f;
    CHECK(sdw_family_parse("small-sd", &f) && f == SDW_SMALL_SD);
    CHECK(!sdw_family_parse("sdxl", &f));
}

// SD 1.5's structure (4 blocks, 2 layers, mid block, 8 heads) at small widths.
static void small_sd15(dif_pipeline *p) {
    sdw_family_configs(SDW_SD15, p);
    const int u[4] = {32, 64, 64, 64}, v[4] = {16, 32, 32, 32};
    for (int i = 0; i < 4; i++) {
        p->unet.block_out[i] = u[i], p->unet.head_dim[i] = u[i] / 8;
        p->vae.block_out[i] = v[i];
    }
    p->unet.groups = p->vae.groups = 8;
    p->unet.cross_dim = p->clip.hidden = 64;
    p->clip.intermediate = 128, p->clip.n_heads = 2, p->clip.n_layers = 2;
}

static bool same_file(const char *a, const char *b) {
    char *x = NULL, *y = NULL;
    size_t nx = 0, ny = 0;
    sim_err err;
    bool same = file_read_all(a, 1u << 30, &x, &nx, &err) == SIM_OK && file_read_all(b, 1u << 30, &y, &ny, &err) == SIM_OK &&
                nx == ny && memcmp(x, y, nx) == 0;
    mem_free(y);
    mem_free(x);
    return same;
}

static void test_pipeline_loads(void) {
    char tok[1024];
    if (!test_shared_path(tok, sizeof tok, "diffusion/micro-sd15/tokenizer")) return;
    dif_pipeline p;
    small_sd15(&p);
    sdw_opts o = {.dtype = ST_F16, .seed = 7, .tokenizer = tok};
    char dir[300], dir2[300];
    snprintf(dir, sizeof dir, "%s/sd15", g_tmp);
    snprintf(dir2, sizeof dir2, "%s/sd15b", g_tmp);
    sim_err err = {0};
    int64_t n = 0, n2 = 0;
    CHECK_MSG(sdw_write_pipeline(dir, &p, &o, &n, &err) == SIM_OK, "%s", err.msg);
    CHECK(n > 49408 * 64);
    sd_model *m = NULL;
    CHECK_MSG(sd_load(&m, dir, &err) == SIM_OK, "%s", err.msg);
    if (m) {
        pool *pl;
        CHECK(pool_new(&pl, 2, &err) == SIM_OK);
        op_ctx c = {.pool = pl, .k = kern_get(KERN_BEST)};
        sd_params sp = sd_defaults();
        sp.prompt = "a lighthouse at dawn";
        sp.width = sp.height = 64;
        sp.steps = 2;
        static float img[3 * 64 * 64];
        CHECK_MSG(sd_generate(m, &c, &sp, img, NULL, &err) == SIM_OK, "%s", err.msg);
        int bad = 0;
        double mx = 0;
        for (size_t i = 0; i < ARRAY_LEN(img); i++) {
            if (!isfinite(img[i])) bad++;
            else mx = fmax(mx, fabs(img[i]));
        }
        CHECK_EQ_INT(bad, 0);
        CHECK(mx > 0);
        printf("  random SD 1.5-shaped model: %lld parameters, image max |x| %.3g\n", (long long)n, mx);
        pool_free(pl);
        sd_free(m);
    }
    // Deterministic from the seed; another seed differs.
    CHECK_EQ_INT(sdw_write_pipeline(dir2, &p, &o, &n2, &err), SIM_OK);
    char a[400], b[400];
    snprintf(a, sizeof a, "%s/unet/diffusion_pytorch_model.safetensors", dir);
    snprintf(b, sizeof b, "%s/unet/diffusion_pytorch_model.safetensors", dir2);
    CHECK(same_file(a, b));
    o.seed = 8;
    CHECK_EQ_INT(sdw_write_pipeline(dir2, &p, &o, &n2, &err), SIM_OK);
    CHECK(!same_file(a, b));
    // A tokenizer folder without the files is refused by name.
    o.tokenizer = g_tmp;
    CHECK_EQ_INT(sdw_write_pipeline(dir2, &p, &o, &n2, &err), SIM_ERR_IO);
    CHECK(strstr(err.msg, "vocab.json") != NULL);
}

static void test_taesd(void) {
    char dir[300], path[400];
    snprintf(dir, sizeof dir, "%s/taesd", g_tmp);
    sdw_opts o = {.dtype = ST_F16, .seed = 3};
    sim_err err = {0};
    int64_t n = 0;
    CHECK_MSG(sdw_write_taesd(dir, 4, &o, &n, &err) == SIM_OK, "%s", err.msg);
    st_file *d = NULL, *e = NULL;
    snprintf(path, sizeof path, "%s/taesd_decoder.safetensors", dir);
    CHECK_MSG(st_open(&d, path, &err) == SIM_OK, "%s", err.msg);
    snprintf(path, sizeof path, "%s/taesd_encoder.safetensors", dir);
    CHECK_MSG(st_open(&e, path, &err) == SIM_OK, "%s", err.msg);
    // Each half: two biased convs, ten blocks of three biased convs, three bias-free convs.
    CHECK_EQ_INT(d ? d->n_tensors : 0, 2 + 10 * 6 + 3 + 2);
    CHECK_EQ_INT(e ? e->n_tensors : 0, 2 + 10 * 6 + 3 + 2);
    taesd *m = NULL;
    if (d && e) CHECK_MSG(taesd_load(&m, d, e, &err) == SIM_OK, "%s", err.msg);
    st_close(d);
    st_close(e);
    if (!m) return;
    CHECK_EQ_INT(taesd_latent_channels(m), 4);
    pool *pl;
    CHECK(pool_new(&pl, 2, &err) == SIM_OK);
    op_ctx c = {.pool = pl, .k = kern_get(KERN_BEST)};
    taesd_work *w;
    CHECK_EQ_INT(taesd_work_new(&w, m, 4, 4, &err), SIM_OK);
    static float z[4 * 16], img[3 * 32 * 32];
    for (int i = 0; i < 64; i++) z[i] = (float)((i * 37) % 11 - 5) * 0.3f;
    CHECK_MSG(taesd_decode(m, w, &c, z, 4, 4, img, &err) == SIM_OK, "%s", err.msg);
    int bad = 0;
    for (size_t i = 0; i < ARRAY_LEN(img); i++) bad += !isfinite(img[i]);
    CHECK_EQ_INT(bad, 0);
    taesd_work_free(w);
    taesd_free(m);
    pool_free(pl);
}

// stw_write: values back exactly (F32) or rounded to nearest even (F16).
static const float VALS[6] = {1.0f, -2.5f, 0.1f, 65504.0f, 1e-8f, 3.0f};
static sim_status fill_vals(void *ud, int i, float *out, sim_err *err) {
    (void)ud, (void)err;
    for (int k = 0; k < (i ? 2 : 6); k++) out[k] = VALS[k] * (float)(i + 1);
    return SIM_OK;
}
static sim_status fill_fail(void *ud, int i, float *out, sim_err *err) {
    (void)ud, (void)out;
    return err_set(err, SIM_ERR_IO, "source for tensor %d broke", i);
}

static void test_stwrite(void) {
    char path[400];
    snprintf(path, sizeof path, "%s/t.safetensors", g_tmp);
    stw_entry e[2] = {{"b.weight", 2, {2, 3}}, {"a", 1, {2}}};
    sim_err err = {0};
    const char *meta[] = {"format", "pt", NULL};
    for (int k = 0; k < 2; k++) {
        st_dtype dt = k ? ST_F16 : ST_F32;
        CHECK_MSG(stw_write(path, e, 2, dt, meta, fill_vals, NULL, &err) == SIM_OK, "%s", err.msg);
        st_file *f = NULL;
        CHECK_MSG(st_open(&f, path, &err) == SIM_OK, "%s", err.msg);
        if (!f) continue;
        CHECK_EQ_INT(f->n_tensors, 2);
        // The header is padded to 8 bytes: data starts 8-aligned.
        size_t hl = 0;
        for (int i = 0; i < 8; i++) hl |= (size_t)f->base[i] << (8 * i);
        CHECK_EQ_INT(hl % 8, 0);
        const st_tensor *t = st_find(f, "b.weight");
        CHECK(t && t->dtype == dt && t->n_dims == 2 && t->shape[1] == 3);
        float w[6];
        CHECK_EQ_INT(st_read_f32(f, "b.weight", (int64_t[]){2, 3}, 2, w, &err), SIM_OK);
        CHECK(w[0] == 1.0f && w[1] == -2.5f && w[3] == 65504.0f && w[5] == 3.0f);
        if (k) CHECK(w[2] == 0.0999755859375f && w[4] == 0.0f); // nearest halves of 0.1 and 1e-8
        else CHECK(w[2] == 0.1f && w[4] == 1e-8f);
        CHECK_EQ_INT(st_read_f32(f, "a", (int64_t[]){2}, 1, w, &err), SIM_OK);
        CHECK(w[0] == 2.0f && w[1] == -5.0f);
        st_close(f);
    }
    // Refusals: a duplicate name, a bad shape, a dtype it cannot write, a failing source.
    stw_entry dup[2] = {{"x", 1, {2}}, {"x", 1, {2}}};
    CHECK_EQ_INT(stw_write(path, dup, 2, ST_F32, NULL, fill_vals, NULL, &err), SIM_ERR_ARG);
    CHECK(strstr(err.msg, "'x' twice") != NULL);
    stw_entry bad = {"y", 2, {3, 0}};
    CHECK_EQ_INT(stw_write(path, &bad, 1, ST_F32, NULL, fill_vals, NULL, &err), SIM_ERR_ARG);
    CHECK(strstr(err.msg, "'y'") != NULL);
    CHECK_EQ_INT(stw_write(path, e, 2, ST_I8, NULL, fill_vals, NULL, &err), SIM_ERR_ARG);
    CHECK_EQ_INT(stw_write(path, e, 2, ST_F32, NULL, fill_fail, NULL, &err), SIM_ERR_IO);
    CHECK(strstr(err.msg, "broke") != NULL);
    CHECK(access(path, F_OK) != 0); // the partial file is removed
}

int main(int argc, char **argv) {
    test_init(argc, argv);
    snprintf(g_tmp, sizeof g_tmp, "/tmp/sim_test_sdw_XXXXXX");
    if (!mkdtemp(g_tmp)) {
        perror("mkdtemp");
        return 1;
    }
    TEST_RUN(test_real_families);
    TEST_RUN(test_stwrite);
    TEST_RUN(test_taesd);
    TEST_RUN(test_pipeline_loads);
    char cmd[300];
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", g_tmp);
    if (system(cmd) != 0) fprintf(stderr, "could not remove %s\n", g_tmp);
    return test_finish();
}
