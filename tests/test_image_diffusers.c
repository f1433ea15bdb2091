// test_image_diffusers.c — the diffusers folder layout (src/image/diffusers.h):
// micro-sd15's configs read as the files say, and broken configs refused
// with messages naming the file and the field.
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "base/file.h"
#include "image/diffusers.h"
#include "test.h"

static char g_tmp[256];

static void test_micro_sd15(void) {
    char dir[1024];
    if (!test_shared_path(dir, sizeof dir, "diffusion/micro-sd15")) return;
    dif_pipeline p;
    sim_err err = {0};
    CHECK_MSG(dif_open(&p, dir, &err) == SIM_OK, "%s", err.msg);
    CHECK_EQ_INT(p.clip.hidden, 32);
    CHECK_EQ_INT(p.clip.intermediate, 64);
    CHECK_EQ_INT(p.clip.n_heads, 2);
    CHECK_EQ_INT(p.clip.n_layers, 2);
    CHECK_EQ_INT(p.clip.vocab, 49408);
    CHECK_EQ_INT(p.clip.n_pos, 77);
    CHECK_EQ_INT(p.clip.act, DIF_ACT_QUICK_GELU);
    CHECK_EQ_INT(p.clip.bos, 49406);
    CHECK_EQ_INT(p.clip.eos, 49407);
    CHECK_EQ_INT(p.unet.n_blocks, 2);
    CHECK(p.unet.block_out[0] == 32 && p.unet.block_out[1] == 64);
    CHECK(p.unet.down[0] == DIF_BLOCK_CROSSATTN && p.unet.down[1] == DIF_BLOCK_PLAIN);
    CHECK(p.unet.up[0] == DIF_BLOCK_PLAIN && p.unet.up[1] == DIF_BLOCK_CROSSATTN);
    CHECK(p.unet.n_heads[0] == 2 && p.unet.head_dim[0] == 16 && p.unet.head_dim[1] == 32);
    CHECK(p.unet.mid_block && !p.unet.linear_proj && p.unet.flip_sin_to_cos && p.unet.freq_shift == 0);
    CHECK_EQ_INT(p.unet.groups, 8);
    CHECK_EQ_INT(p.unet.cross_dim, 32);
    CHECK_EQ_INT(p.unet.layers_per_block, 1);
    CHECK_EQ_INT(p.vae.n_blocks, 2);
    CHECK_EQ_INT(p.vae.latent_ch, 4);
    CHECK_EQ_INT(p.vae.groups, 8);
    CHECK_NEAR(p.vae.scaling_factor, 0.18215, 1e-7);
    char path[1200];
    CHECK_EQ_INT(dif_path(&p, "unet/config.json", path, sizeof path, &err), SIM_OK);
    CHECK(strstr(path, "micro-sd15/unet/config.json") != NULL);
}

static void put_file(const char *name, const char *text) {
    char path[512];
    snprintf(path, sizeof path, "%s/%s", g_tmp, name);
    sim_err err;
    CHECK(file_write_all(path, text, strlen(text), &err) == SIM_OK);
}

static void unet_refused(const char *json, sim_status code, const char *want) {
    put_file("u.json", json);
    char path[512];
    snprintf(path, sizeof path, "%s/u.json", g_tmp);
    dif_unet_config c;
    sim_err err = {0};
    sim_status st = dif_read_unet_config(&c, path, &err);
    CHECK_MSG(st == code, "%s: %d %s", json, st, err.msg);
    CHECK_MSG(strstr(err.msg, want) && strstr(err.msg, "u.json"), "'%s' lacks '%s'", err.msg, want);
}

#define UNET_OK "\"block_out_channels\":[32,64],\"down_block_types\":[\"CrossAttnDownBlock2D\",\"DownBlock2D\"]," \
                "\"up_block_types\":[\"UpBlock2D\",\"CrossAttnUpBlock2D\"],\"norm_num_groups\":8"

static void test_refused(void) {
    put_file("ok.json", "{" UNET_OK ",\"attention_head_dim\":[2,4],\"mid_block_type\":null}");
    char path[512];
    snprintf(path, sizeof path, "%s/ok.json", g_tmp);
    dif_unet_config c;
    sim_err err = {0};
    CHECK_MSG(dif_read_unet_config(&c, path, &err) == SIM_OK, "%s", err.msg);
    CHECK(!c.mid_block && c.n_heads[1] == 4 && c.head_dim[1] == 16 && c.layers_per_block == 2 && c.cross_dim == 1280);
    unet_refused("[1]", SIM_ERR_FORMAT, "not a JSON object");
    unet_refused("{\"a\":", SIM_ERR_FORMAT, "line 1");
    unet_refused("{" UNET_OK "}", SIM_ERR_FORMAT, "missing 'attention_head_dim'");
    unet_refused("{" UNET_OK ",\"attention_head_dim\":3}", SIM_ERR_FORMAT, "not a multiple of 3 heads");
    unet_refused("{" UNET_OK ",\"attention_head_dim\":[2]}", SIM_ERR_FORMAT, "has 1 entries, expected 2");
    unet_refused("{" UNET_OK ",\"attention_head_dim\":2,\"norm_num_groups\":7}", SIM_ERR_FORMAT, "duplicate");
    unet_refused("{\"block_out_channels\":[30,64],\"down_block_types\":[\"CrossAttnDownBlock2D\",\"DownBlock2D\"],"
                 "\"up_block_types\":[\"UpBlock2D\",\"CrossAttnUpBlock2D\"],\"norm_num_groups\":8,\"attention_head_dim\":2}",
                 SIM_ERR_FORMAT, "not a multiple of norm_num_groups 8");
    unet_refused("{\"block_out_channels\":[32,64],\"down_block_types\":[\"SimpleCrossAttnDownBlock2D\",\"DownBlock2D\"],"
                 "\"up_block_types\":[\"UpBlock2D\",\"CrossAttnUpBlock2D\"],\"attention_head_dim\":2}",
                 SIM_ERR_UNSUPPORTED, "down_block_types[0] 'SimpleCrossAttnDownBlock2D'");
    unet_refused("{" UNET_OK ",\"attention_head_dim\":2,\"mid_block_type\":\"UNetMidBlock2DSimpleCrossAttn\"}", SIM_ERR_UNSUPPORTED,
                 "mid_block_type");
    unet_refused("{" UNET_OK ",\"attention_head_dim\":2,\"act_fn\":\"mish\"}", SIM_ERR_UNSUPPORTED, "act_fn 'mish'");
    unet_refused("{" UNET_OK ",\"attention_head_dim\":2,\"layers_per_block\":-1}", SIM_ERR_RANGE, "'layers_per_block' = -1");
    unet_refused("{" UNET_OK ",\"attention_head_dim\":2,\"norm_eps\":\"x\"}", SIM_ERR_FORMAT, "'norm_eps' is not a number");
    unet_refused("{\"block_out_channels\":[],\"attention_head_dim\":2}", SIM_ERR_FORMAT, "expected 1 to 8");

    // A pipeline whose parts disagree, or name another class.
    char cmd[1024];
    snprintf(cmd, sizeof cmd, "mkdir -p %s/p/text_encoder %s/p/unet %s/p/vae", g_tmp, g_tmp, g_tmp);
    CHECK(system(cmd) == 0);
    put_file("p/model_index.json", "{\"_class_name\":\"StableDiffusionXLPipeline\"}");
    dif_pipeline p;
    snprintf(path, sizeof path, "%s/p", g_tmp);
    CHECK_EQ_INT(dif_open(&p, path, &err), SIM_ERR_UNSUPPORTED);
    CHECK(strstr(err.msg, "StableDiffusionXLPipeline") != NULL);
    put_file("p/model_index.json", "{\"_class_name\":\"StableDiffusionPipeline\",\"text_encoder\":[\"transformers\",\"CLIPTextModel\"],"
                                "\"unet\":[\"diffusers\",\"UNet2DConditionModel\"],\"vae\":[\"diffusers\",\"AutoencoderTiny\"]}");
    CHECK_EQ_INT(dif_open(&p, path, &err), SIM_ERR_UNSUPPORTED);
    CHECK(strstr(err.msg, "vae is a AutoencoderTiny") != NULL);
    put_file("p/model_index.json", "{\"_class_name\":\"StableDiffusionPipeline\",\"text_encoder\":[\"transformers\",\"CLIPTextModel\"],"
                                "\"unet\":[\"diffusers\",\"UNet2DConditionModel\"],\"vae\":[\"diffusers\",\"AutoencoderKL\"]}");
    put_file("p/text_encoder/config.json", "{\"hidden_size\":48,\"intermediate_size\":64,\"num_attention_heads\":2,\"num_hidden_layers\":1}");
    put_file("p/unet/config.json", "{" UNET_OK ",\"attention_head_dim\":2,\"cross_attention_dim\":32}");
    put_file("p/vae/config.json", "{\"block_out_channels\":[32,64],\"norm_num_groups\":8,\"down_block_types\":[\"DownEncoderBlock2D\","
                               "\"DownEncoderBlock2D\"],\"up_block_types\":[\"UpDecoderBlock2D\",\"UpDecoderBlock2D\"]}");
    CHECK_EQ_INT(dif_open(&p, path, &err), SIM_ERR_FORMAT);
    CHECK(strstr(err.msg, "cross_attention_dim 32 differs from the text encoder's hidden_size 48") != NULL);
    put_file("p/text_encoder/config.json", "{\"hidden_size\":32,\"intermediate_size\":64,\"num_attention_heads\":2,\"num_hidden_layers\":1,"
                                        "\"hidden_act\":\"relu\"}");
    CHECK_EQ_INT(dif_open(&p, path, &err), SIM_ERR_UNSUPPORTED);
    CHECK(strstr(err.msg, "hidden_act 'relu'") != NULL);
    put_file("p/text_encoder/config.json", "{\"hidden_size\":32,\"intermediate_size\":64,\"num_attention_heads\":2,\"num_hidden_layers\":1}");
    CHECK_MSG(dif_open(&p, path, &err) == SIM_OK, "%s", err.msg);
    snprintf(path, sizeof path, "%s/none", g_tmp);
    CHECK_EQ_INT(dif_open(&p, path, &err), SIM_ERR_IO);
    CHECK(strstr(err.msg, "none/model_index.json") != NULL);
}

int main(int argc, char **argv) {
    test_init(argc, argv);
    snprintf(g_tmp, sizeof g_tmp, "/tmp/sim_test_dif_XXXXXX");
    if (!mkdtemp(g_tmp)) {
        perror("mkdtemp");
        return 1;
    }
    TEST_RUN(test_micro_sd15);
    TEST_RUN(test_refused);
    char cmd[300];
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", g_tmp);
    if (system(cmd) != 0) fprintf(stderr, "could not remove %s\n", g_tmp);
    return test_finish();
}
