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

// --- real configurations ----------------------------------------------------------------
// The config.json texts of the published models (unet/ and text_encoder/).

#define SD15_BLOCKS "\"down_block_types\": [\"CrossAttnDownBlock2D\", \"CrossAttnDownBlock2D\", \"CrossAttnDownBlock2D\", \"DownBlock2D\"],\n" \
                    "  \"up_block_types\": [\"UpBlock2D\", \"CrossAttnUpBlock2D\", \"CrossAttnUpBlock2D\", \"CrossAttnUpBlock2D\"],\n"

static const char SD15_UNET[] = "{\n  \"_class_name\": \"UNet2DConditionModel\",\n  \"_diffusers_version\": \"0.6.0\",\n  \"act_fn\": \"silu\",\n"
    "  \"attention_head_dim\": 8,\n  \"block_out_channels\": [320, 640, 1280, 1280],\n  \"center_input_sample\": false,\n"
    "  \"cross_attention_dim\": 768,\n  " SD15_BLOCKS "  \"downsample_padding\": 1,\n  \"flip_sin_to_cos\": true,\n  \"freq_shift\": 0,\n"
    "  \"in_channels\": 4,\n  \"layers_per_block\": 2,\n  \"mid_block_scale_factor\": 1,\n  \"norm_eps\": 1e-05,\n"
    "  \"norm_num_groups\": 32,\n  \"out_channels\": 4,\n  \"sample_size\": 64\n}\n";

static const char SD21_UNET[] = "{\n  \"_class_name\": \"UNet2DConditionModel\",\n  \"_diffusers_version\": \"0.10.0.dev0\",\n  \"act_fn\": \"silu\",\n"
    "  \"attention_head_dim\": [5, 10, 20, 20],\n  \"block_out_channels\": [320, 640, 1280, 1280],\n  \"center_input_sample\": false,\n"
    "  \"cross_attention_dim\": 1024,\n  " SD15_BLOCKS "  \"downsample_padding\": 1,\n  \"dual_cross_attention\": false,\n"
    "  \"flip_sin_to_cos\": true,\n  \"freq_shift\": 0,\n  \"in_channels\": 4,\n  \"layers_per_block\": 2,\n  \"mid_block_scale_factor\": 1,\n"
    "  \"norm_eps\": 1e-05,\n  \"norm_num_groups\": 32,\n  \"num_class_embeds\": null,\n  \"only_cross_attention\": false,\n"
    "  \"out_channels\": 4,\n  \"sample_size\": 96,\n  \"upcast_attention\": true,\n  \"use_linear_projection\": true\n}\n";

// diffusers >= 0.19 writes every option; segmind's BK-SDM folders are of that age.
#define NEW_OPTIONS "  \"addition_embed_type\": null,\n  \"addition_embed_type_num_heads\": 64,\n  \"addition_time_embed_dim\": null,\n" \
    "  \"center_input_sample\": false,\n  \"class_embed_type\": null,\n  \"class_embeddings_concat\": false,\n  \"conv_in_kernel\": 3,\n" \
    "  \"conv_out_kernel\": 3,\n  \"cross_attention_norm\": null,\n  \"downsample_padding\": 1,\n  \"dual_cross_attention\": false,\n" \
    "  \"encoder_hid_dim\": null,\n  \"encoder_hid_dim_type\": null,\n  \"flip_sin_to_cos\": true,\n  \"freq_shift\": 0,\n" \
    "  \"in_channels\": 4,\n  \"mid_block_only_cross_attention\": null,\n  \"mid_block_scale_factor\": 1,\n  \"norm_eps\": 1e-05,\n" \
    "  \"norm_num_groups\": 32,\n  \"num_attention_heads\": null,\n  \"num_class_embeds\": null,\n  \"only_cross_attention\": false,\n" \
    "  \"out_channels\": 4,\n  \"projection_class_embeddings_input_dim\": null,\n  \"resnet_out_scale_factor\": 1.0,\n" \
    "  \"resnet_skip_time_act\": false,\n  \"resnet_time_scale_shift\": \"default\",\n  \"time_cond_proj_dim\": null,\n" \
    "  \"time_embedding_act_fn\": null,\n  \"time_embedding_dim\": null,\n  \"time_embedding_type\": \"positional\",\n" \
    "  \"timestep_post_act\": null,\n  \"upcast_attention\": false,\n  \"act_fn\": \"silu\",\n"

static const char SMALL_SD_UNET[] = "{\n  \"_class_name\": \"UNet2DConditionModel\",\n  \"_diffusers_version\": \"0.19.0.dev0\",\n" NEW_OPTIONS
    "  \"attention_head_dim\": 8,\n  \"block_out_channels\": [320, 640, 1280, 1280],\n  \"cross_attention_dim\": 768,\n  " SD15_BLOCKS
    "  \"layers_per_block\": 1,\n  \"mid_block_type\": null,\n  \"sample_size\": 64,\n  \"transformer_layers_per_block\": 1,\n"
    "  \"use_linear_projection\": false\n}\n";

static const char TINY_SD_UNET[] = "{\n  \"_class_name\": \"UNet2DConditionModel\",\n  \"_diffusers_version\": \"0.19.0.dev0\",\n" NEW_OPTIONS
    "  \"attention_head_dim\": 8,\n  \"block_out_channels\": [320, 640, 1280],\n  \"cross_attention_dim\": 768,\n"
    "  \"down_block_types\": [\"CrossAttnDownBlock2D\", \"CrossAttnDownBlock2D\", \"CrossAttnDownBlock2D\"],\n"
    "  \"up_block_types\": [\"CrossAttnUpBlock2D\", \"CrossAttnUpBlock2D\", \"CrossAttnUpBlock2D\"],\n"
    "  \"layers_per_block\": 1,\n  \"mid_block_type\": null,\n  \"sample_size\": 64,\n  \"transformer_layers_per_block\": 1,\n"
    "  \"use_linear_projection\": false\n}\n";

static const char SDXL_UNET[] = "{\n  \"_class_name\": \"UNet2DConditionModel\",\n  \"_diffusers_version\": \"0.19.0.dev0\",\n  \"act_fn\": \"silu\",\n"
    "  \"addition_embed_type\": \"text_time\",\n  \"addition_embed_type_num_heads\": 64,\n  \"addition_time_embed_dim\": 256,\n"
    "  \"attention_head_dim\": [5, 10, 20],\n  \"block_out_channels\": [320, 640, 1280],\n  \"center_input_sample\": false,\n"
    "  \"class_embed_type\": null,\n  \"class_embeddings_concat\": false,\n  \"conv_in_kernel\": 3,\n  \"conv_out_kernel\": 3,\n"
    "  \"cross_attention_dim\": 2048,\n  \"cross_attention_norm\": null,\n"
    "  \"down_block_types\": [\"DownBlock2D\", \"CrossAttnDownBlock2D\", \"CrossAttnDownBlock2D\"],\n  \"downsample_padding\": 1,\n"
    "  \"dual_cross_attention\": false,\n  \"encoder_hid_dim\": null,\n  \"encoder_hid_dim_type\": null,\n  \"flip_sin_to_cos\": true,\n"
    "  \"freq_shift\": 0,\n  \"in_channels\": 4,\n  \"layers_per_block\": 2,\n  \"mid_block_only_cross_attention\": null,\n"
    "  \"mid_block_scale_factor\": 1,\n  \"mid_block_type\": \"UNetMidBlock2DCrossAttn\",\n  \"norm_eps\": 1e-05,\n  \"norm_num_groups\": 32,\n"
    "  \"num_attention_heads\": null,\n  \"num_class_embeds\": null,\n  \"only_cross_attention\": false,\n  \"out_channels\": 4,\n"
    "  \"projection_class_embeddings_input_dim\": 2816,\n  \"resnet_out_scale_factor\": 1.0,\n  \"resnet_skip_time_act\": false,\n"
    "  \"resnet_time_scale_shift\": \"default\",\n  \"sample_size\": 128,\n  \"time_cond_proj_dim\": null,\n  \"time_embedding_act_fn\": null,\n"
    "  \"time_embedding_dim\": null,\n  \"time_embedding_type\": \"positional\",\n  \"timestep_post_act\": null,\n"
    "  \"transformer_layers_per_block\": [1, 2, 10],\n  \"up_block_types\": [\"CrossAttnUpBlock2D\", \"CrossAttnUpBlock2D\", \"UpBlock2D\"],\n"
    "  \"upcast_attention\": null,\n  \"use_linear_projection\": true\n}\n";

static const char SD15_TEXT[] = "{\n  \"_name_or_path\": \"openai/clip-vit-large-patch14\",\n  \"architectures\": [\"CLIPTextModel\"],\n"
    "  \"attention_dropout\": 0.0,\n  \"bos_token_id\": 0,\n  \"dropout\": 0.0,\n  \"eos_token_id\": 2,\n  \"hidden_act\": \"quick_gelu\",\n"
    "  \"hidden_size\": 768,\n  \"initializer_factor\": 1.0,\n  \"initializer_range\": 0.02,\n  \"intermediate_size\": 3072,\n"
    "  \"layer_norm_eps\": 1e-05,\n  \"max_position_embeddings\": 77,\n  \"model_type\": \"clip_text_model\",\n  \"num_attention_heads\": 12,\n"
    "  \"num_hidden_layers\": 12,\n  \"pad_token_id\": 1,\n  \"projection_dim\": 768,\n  \"torch_dtype\": \"float32\",\n"
    "  \"transformers_version\": \"4.22.0.dev0\",\n  \"vocab_size\": 49408\n}\n";

static const char SD21_TEXT[] = "{\n  \"_name_or_path\": \"hf-models/stable-diffusion-v2-768x768/text_encoder\",\n  \"architectures\": [\"CLIPTextModel\"],\n"
    "  \"attention_dropout\": 0.0,\n  \"bos_token_id\": 0,\n  \"dropout\": 0.0,\n  \"eos_token_id\": 2,\n  \"hidden_act\": \"gelu\",\n"
    "  \"hidden_size\": 1024,\n  \"initializer_factor\": 1.0,\n  \"initializer_range\": 0.02,\n  \"intermediate_size\": 4096,\n"
    "  \"layer_norm_eps\": 1e-05,\n  \"max_position_embeddings\": 77,\n  \"model_type\": \"clip_text_model\",\n  \"num_attention_heads\": 16,\n"
    "  \"num_hidden_layers\": 23,\n  \"pad_token_id\": 1,\n  \"projection_dim\": 512,\n  \"torch_dtype\": \"float32\",\n"
    "  \"transformers_version\": \"4.25.0.dev0\",\n  \"vocab_size\": 49408\n}\n";

static bool read_unet(const char *json, dif_unet_config *c, sim_err *err) {
    put_file("real.json", json);
    char path[512];
    snprintf(path, sizeof path, "%s/real.json", g_tmp);
    return dif_read_unet_config(c, path, err) == SIM_OK;
}

static void test_real_configs(void) {
    dif_unet_config c;
    sim_err err = {0};
    CHECK_MSG(read_unet(SD15_UNET, &c, &err), "%s", err.msg);
    CHECK_EQ_INT(dif_unet_family(&c), DIF_FAMILY_SD1);
    CHECK(c.n_blocks == 4 && c.layers_per_block == 2 && c.mid_block && c.n_heads[0] == 8 && c.head_dim[0] == 40 && c.head_dim[3] == 160);
    CHECK(c.cross_dim == 768 && !c.linear_proj && c.down[3] == DIF_BLOCK_PLAIN && c.up[0] == DIF_BLOCK_PLAIN);
    CHECK_MSG(read_unet(SD21_UNET, &c, &err), "%s", err.msg);
    CHECK_EQ_INT(dif_unet_family(&c), DIF_FAMILY_SD2);
    CHECK(c.linear_proj && c.cross_dim == 1024 && c.n_heads[0] == 5 && c.n_heads[3] == 20 && c.head_dim[0] == 64 && c.head_dim[3] == 64);
    CHECK_MSG(read_unet(SMALL_SD_UNET, &c, &err), "%s", err.msg);
    CHECK_EQ_INT(dif_unet_family(&c), DIF_FAMILY_BK_SDM);
    CHECK(c.n_blocks == 4 && c.layers_per_block == 1 && !c.mid_block);
    CHECK_MSG(read_unet(TINY_SD_UNET, &c, &err), "%s", err.msg);
    CHECK_EQ_INT(dif_unet_family(&c), DIF_FAMILY_BK_SDM);
    CHECK(c.n_blocks == 3 && c.layers_per_block == 1 && !c.mid_block && c.down[2] == DIF_BLOCK_CROSSATTN && c.up[0] == DIF_BLOCK_CROSSATTN);
    CHECK(strcmp(dif_family_name(DIF_FAMILY_SD2), "SD 2.x") == 0);

    // SDXL base: refused at its first foreign field, named with the file and the family.
    CHECK(!read_unet(SDXL_UNET, &c, &err));
    CHECK_EQ_INT(err.code, SIM_ERR_UNSUPPORTED);
    CHECK_MSG(strstr(err.msg, "real.json: 'addition_embed_type' = \"text_time\": looks like SDXL"), "%s", err.msg);

    // Text encoders: the legacy 0 / 2 ids are the tokenizer's start and end.
    dif_clip_config t;
    char path[512];
    snprintf(path, sizeof path, "%s/text.json", g_tmp);
    put_file("text.json", SD15_TEXT);
    CHECK_MSG(dif_read_clip_config(&t, path, &err) == SIM_OK, "%s", err.msg);
    CHECK(t.hidden == 768 && t.n_layers == 12 && t.act == DIF_ACT_QUICK_GELU && t.bos == 49406 && t.eos == 49407);
    put_file("text.json", SD21_TEXT);
    CHECK_MSG(dif_read_clip_config(&t, path, &err) == SIM_OK, "%s", err.msg);
    CHECK(t.hidden == 1024 && t.n_layers == 23 && t.n_heads == 16 && t.act == DIF_ACT_GELU && t.bos == 49406 && t.eos == 49407);
}

// Other families' U-Nets: each refused naming the field and the family it looks like.
static void test_other_families(void) {
    static const struct {
        const char *json, *want;
    } cases[] = {
        {"{\"_class_name\":\"UNet2DModel\"," UNET_OK "}", "'_class_name' = 'UNet2DModel': looks like an unconditional diffusion U-Net"},
        {"{\"_class_name\":\"SD3Transformer2DModel\"}", "looks like a diffusion transformer"},
        {"{" UNET_OK ",\"attention_head_dim\":2,\"transformer_layers_per_block\":2}", "'transformer_layers_per_block' = 2: looks like SDXL"},
        {"{" UNET_OK ",\"attention_head_dim\":2,\"cross_attention_dim\":2048}", "'cross_attention_dim' = 2048: looks like SDXL"},
        {"{" UNET_OK ",\"attention_head_dim\":2,\"in_channels\":9,\"out_channels\":3}", "'in_channels' = 9: looks like an SD inpainting U-Net"},
        {"{" UNET_OK ",\"attention_head_dim\":2,\"in_channels\":8}", "looks like InstructPix2Pix"},
        {"{" UNET_OK ",\"attention_head_dim\":2,\"in_channels\":7,\"num_class_embeds\":1000}", "'num_class_embeds' = 1000: looks like the SD x4 upscaler"},
        {"{" UNET_OK ",\"attention_head_dim\":2,\"class_embed_type\":\"projection\"}", "looks like Stable unCLIP"},
        {"{" UNET_OK ",\"attention_head_dim\":2,\"time_cond_proj_dim\":256}", "'time_cond_proj_dim' = 256: looks like an LCM"},
        {"{" UNET_OK ",\"attention_head_dim\":2,\"encoder_hid_dim_type\":\"text_proj\"}", "looks like DeepFloyd IF or Kandinsky"},
        {"{" UNET_OK ",\"attention_head_dim\":2,\"resnet_time_scale_shift\":\"scale_shift\"}", "'resnet_time_scale_shift' = \"scale_shift\""},
        {"{" UNET_OK ",\"attention_head_dim\":2,\"conv_in_kernel\":7}", "'conv_in_kernel' = 7"},
        {"{" UNET_OK ",\"attention_head_dim\":2,\"center_input_sample\":true}", "'center_input_sample' = true"},
        {"{\"block_out_channels\":[32,64],\"down_block_types\":[\"ResnetDownsampleBlock2D\",\"DownBlock2D\"],\"up_block_types\":[\"UpBlock2D\","
         "\"CrossAttnUpBlock2D\"],\"attention_head_dim\":2}",
         "down_block_types[0] 'ResnetDownsampleBlock2D' is not a supported block type: looks like DeepFloyd IF"},
    };
    for (size_t i = 0; i < ARRAY_LEN(cases); i++) unet_refused(cases[i].json, SIM_ERR_UNSUPPORTED, cases[i].want);
    // Mid blocks other than the cross-attention one.
    unet_refused("{" UNET_OK ",\"attention_head_dim\":2,\"mid_block_type\":\"UNetMidBlock2DSimpleCrossAttn\"}", SIM_ERR_UNSUPPORTED,
                 "'mid_block_type' = 'UNetMidBlock2DSimpleCrossAttn': looks like DeepFloyd IF");

    // Pipelines: the model_index.json of SDXL, SD 3 and Flux.
    char cmd[600], path[512];
    snprintf(cmd, sizeof cmd, "mkdir -p %s/f", g_tmp);
    CHECK(system(cmd) == 0);
    snprintf(path, sizeof path, "%s/f", g_tmp);
    static const struct {
        const char *json, *want;
    } pipes[] = {
        {"{\"_class_name\": \"StableDiffusionXLPipeline\", \"_diffusers_version\": \"0.19.0.dev0\", \"force_zeros_for_empty_prompt\": true,"
         " \"add_watermarker\": null, \"scheduler\": [\"diffusers\", \"EulerDiscreteScheduler\"], \"text_encoder\": [\"transformers\","
         " \"CLIPTextModel\"], \"text_encoder_2\": [\"transformers\", \"CLIPTextModelWithProjection\"], \"tokenizer\": [\"transformers\","
         " \"CLIPTokenizer\"], \"tokenizer_2\": [\"transformers\", \"CLIPTokenizer\"], \"unet\": [\"diffusers\", \"UNet2DConditionModel\"],"
         " \"vae\": [\"diffusers\", \"AutoencoderKL\"]}",
         "model_index.json: '_class_name' = 'StableDiffusionXLPipeline': looks like SDXL"},
        {"{\"_class_name\": \"StableDiffusion3Pipeline\", \"scheduler\": [\"diffusers\", \"FlowMatchEulerDiscreteScheduler\"],"
         " \"text_encoder\": [\"transformers\", \"CLIPTextModelWithProjection\"], \"text_encoder_2\": [\"transformers\", \"CLIPTextModelWithProjection\"],"
         " \"text_encoder_3\": [\"transformers\", \"T5EncoderModel\"], \"transformer\": [\"diffusers\", \"SD3Transformer2DModel\"],"
         " \"vae\": [\"diffusers\", \"AutoencoderKL\"]}",
         "looks like SD 3"},
        {"{\"_class_name\": \"FluxPipeline\", \"text_encoder_2\": [\"transformers\", \"T5EncoderModel\"],"
         " \"transformer\": [\"diffusers\", \"FluxTransformer2DModel\"], \"vae\": [\"diffusers\", \"AutoencoderKL\"]}",
         "'_class_name' = 'FluxPipeline': looks like Flux"},
        {"{\"_class_name\": \"StableDiffusionPipeline\", \"text_encoder_2\": [\"transformers\", \"CLIPTextModelWithProjection\"],"
         " \"text_encoder\": [\"transformers\", \"CLIPTextModel\"], \"unet\": [\"diffusers\", \"UNet2DConditionModel\"],"
         " \"vae\": [\"diffusers\", \"AutoencoderKL\"]}",
         "model_index.json: 'text_encoder_2': looks like SDXL"},
    };
    for (size_t i = 0; i < ARRAY_LEN(pipes); i++) {
        put_file("f/model_index.json", pipes[i].json);
        dif_pipeline p;
        sim_err err = {0};
        CHECK_EQ_INT(dif_open(&p, path, &err), SIM_ERR_UNSUPPORTED);
        CHECK_MSG(strstr(err.msg, pipes[i].want) != NULL, "'%s' lacks '%s'", err.msg, pipes[i].want);
    }
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
    TEST_RUN(test_real_configs);
    TEST_RUN(test_other_families);
    char cmd[300];
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", g_tmp);
    if (system(cmd) != 0) fprintf(stderr, "could not remove %s\n", g_tmp);
    return test_finish();
}
