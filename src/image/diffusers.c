// diffusers.c — model_index.json and component config.json reading.
#include "image/diffusers.h"

#include <jansson.h>
#include <stdio.h>
#include <string.h>

#include "base/file.h"

#define CONFIG_MAX (1u << 20) // bytes of config JSON accepted
#define SUPPORTED "supported: SD 1.x, SD 2.x and BK-SDM U-Nets"

static sim_status load_json(json_t **out, const char *path, sim_err *err) {
    char *text;
    size_t n;
    sim_status st = file_read_all(path, CONFIG_MAX, &text, &n, err);
    if (st != SIM_OK) return st;
    json_error_t je;
    json_t *root = json_loadb(text, n, JSON_REJECT_DUPLICATES, &je);
    mem_free(text);
    if (!root) return err_set(err, SIM_ERR_FORMAT, "%s: line %d column %d: %s", path, je.line, je.column, je.text);
    if (!json_is_object(root)) {
        json_decref(root);
        return err_set(err, SIM_ERR_FORMAT, "%s: not a JSON object", path);
    }
    *out = root;
    return SIM_OK;
}

// An integer field in [lo, hi]; def when absent (def < lo: required).
static sim_status get_int(json_t *o, const char *key, int def, int lo, int hi, int *out, const char *path, sim_err *err) {
    json_t *v = json_object_get(o, key);
    if (!v || json_is_null(v)) {
        if (def < lo) return err_set(err, SIM_ERR_FORMAT, "%s: missing '%s'", path, key);
        *out = def;
        return SIM_OK;
    }
    if (!json_is_integer(v)) return err_set(err, SIM_ERR_FORMAT, "%s: '%s' is not an integer", path, key);
    json_int_t x = json_integer_value(v);
    if (x < lo || x > hi) return err_set(err, SIM_ERR_RANGE, "%s: '%s' = %lld outside [%d, %d]", path, key, (long long)x, lo, hi);
    *out = (int)x;
    return SIM_OK;
}

static sim_status get_float(json_t *o, const char *key, float def, float lo, float hi, float *out, const char *path, sim_err *err) {
    json_t *v = json_object_get(o, key);
    if (!v || json_is_null(v)) {
        *out = def;
        return SIM_OK;
    }
    if (!json_is_number(v)) return err_set(err, SIM_ERR_FORMAT, "%s: '%s' is not a number", path, key);
    double x = json_number_value(v);
    if (!(x >= lo && x <= hi)) return err_set(err, SIM_ERR_RANGE, "%s: '%s' = %g outside [%g, %g]", path, key, x, lo, hi);
    *out = (float)x;
    return SIM_OK;
}

static sim_status get_bool(json_t *o, const char *key, bool def, bool *out, const char *path, sim_err *err) {
    json_t *v = json_object_get(o, key);
    if (!v || json_is_null(v)) {
        *out = def;
        return SIM_OK;
    }
    if (!json_is_boolean(v)) return err_set(err, SIM_ERR_FORMAT, "%s: '%s' is not a boolean", path, key);
    *out = json_is_true(v);
    return SIM_OK;
}

// A string field (NULL when absent and not required).
static sim_status get_str(json_t *o, const char *key, bool required, const char **out, const char *path, sim_err *err) {
    json_t *v = json_object_get(o, key);
    *out = NULL;
    if (!v || json_is_null(v)) return required ? err_set(err, SIM_ERR_FORMAT, "%s: missing '%s'", path, key) : SIM_OK;
    if (!json_is_string(v)) return err_set(err, SIM_ERR_FORMAT, "%s: '%s' is not a string", path, key);
    *out = json_string_value(v);
    return SIM_OK;
}

// An array of n_want integers in [lo, hi] (n_want < 0: any length 1..DIF_MAX_BLOCKS,
// stored in *n). A bare integer is repeated when `scalar_ok`.
static sim_status get_int_list(json_t *o, const char *key, int n_want, bool scalar_ok, int lo, int hi, int *vals, int *n,
                               const char *path, sim_err *err) {
    json_t *v = json_object_get(o, key);
    if (!v) return err_set(err, SIM_ERR_FORMAT, "%s: missing '%s'", path, key);
    if (scalar_ok && json_is_integer(v) && n_want > 0) {
        json_int_t x = json_integer_value(v);
        if (x < lo || x > hi) return err_set(err, SIM_ERR_RANGE, "%s: '%s' = %lld outside [%d, %d]", path, key, (long long)x, lo, hi);
        for (int i = 0; i < n_want; i++) vals[i] = (int)x;
        if (n) *n = n_want;
        return SIM_OK;
    }
    if (!json_is_array(v)) return err_set(err, SIM_ERR_FORMAT, "%s: '%s' is not a list", path, key);
    size_t len = json_array_size(v);
    if (n_want >= 0 ? len != (size_t)n_want : len < 1 || len > DIF_MAX_BLOCKS)
        return err_set(err, SIM_ERR_FORMAT, "%s: '%s' has %zu entries, expected %s%d", path, key, len, n_want >= 0 ? "" : "1 to ",
                       n_want >= 0 ? n_want : DIF_MAX_BLOCKS);
    for (size_t i = 0; i < len; i++) {
        json_t *x = json_array_get(v, i);
        if (!json_is_integer(x) || json_integer_value(x) < lo || json_integer_value(x) > hi)
            return err_set(err, SIM_ERR_RANGE, "%s: '%s'[%zu] is not an integer in [%d, %d]", path, key, i, lo, hi);
        vals[i] = (int)json_integer_value(x);
    }
    if (n) *n = (int)len;
    return SIM_OK;
}

#define TRY(x)                                                                         \
    do {                                                                               \
        if ((st = (x)) != SIM_OK) goto done;                                           \
    } while (0)

// --- components ----------------------------------------------------------------------

sim_status dif_read_clip_config(dif_clip_config *c, const char *path, sim_err *err) {
    memset(c, 0, sizeof *c);
    json_t *o;
    sim_status st = load_json(&o, path, err);
    if (st != SIM_OK) return st;
    const char *act;
    TRY(get_int(o, "hidden_size", -1, 1, 1 << 14, &c->hidden, path, err));
    TRY(get_int(o, "intermediate_size", -1, 1, 1 << 16, &c->intermediate, path, err));
    TRY(get_int(o, "num_attention_heads", -1, 1, 1024, &c->n_heads, path, err));
    TRY(get_int(o, "num_hidden_layers", -1, 1, 256, &c->n_layers, path, err));
    TRY(get_int(o, "vocab_size", 49408, 1, 1 << 20, &c->vocab, path, err));
    TRY(get_int(o, "max_position_embeddings", 77, 2, 4096, &c->n_pos, path, err));
    TRY(get_float(o, "layer_norm_eps", 1e-5f, 0, 1, &c->ln_eps, path, err));
    TRY(get_int(o, "bos_token_id", 49406, 0, c->vocab - 1, &c->bos, path, err));
    TRY(get_int(o, "eos_token_id", 49407, 0, c->vocab - 1, &c->eos, path, err));
    // Configs written before transformers 4.31 (SD 1.x, 2.x) say 0 and 2, which
    // transformers reads as its "legacy" flag: the ids are the tokenizer's.
    if (c->eos == 2 && c->bos == 0 && c->vocab == 49408) c->bos = 49406, c->eos = 49407;
    TRY(get_str(o, "hidden_act", false, &act, path, err));
    if (!act || strcmp(act, "quick_gelu") == 0) c->act = DIF_ACT_QUICK_GELU;
    else if (strcmp(act, "gelu") == 0) c->act = DIF_ACT_GELU;
    else TRY(err_set(err, SIM_ERR_UNSUPPORTED, "%s: hidden_act '%.40s' (supported: quick_gelu, gelu)", path, act));
    if (c->hidden % c->n_heads)
        TRY(err_set(err, SIM_ERR_FORMAT, "%s: hidden_size %d is not a multiple of num_attention_heads %d", path, c->hidden, c->n_heads));
done:
    json_decref(o);
    return st;
}

static sim_status check_act(json_t *o, const char *path, sim_err *err) {
    const char *act;
    sim_status st = get_str(o, "act_fn", false, &act, path, err);
    if (st == SIM_OK && act && strcmp(act, "silu") != 0)
        st = err_set(err, SIM_ERR_UNSUPPORTED, "%s: act_fn '%.40s' (supported: silu)", path, act);
    return st;
}

// Every entry of list `key` must be one of the names; sets kinds[i] to the index.
// like: the family an unknown type suggests (or NULL).
static sim_status get_kinds(json_t *o, const char *key, int n, const char *const *names, int n_names, int *kinds, const char *like,
                            const char *path, sim_err *err) {
    json_t *v = json_object_get(o, key);
    if (!json_is_array(v) || json_array_size(v) != (size_t)n)
        return err_set(err, SIM_ERR_FORMAT, "%s: '%s' is not a list of %d block types", path, key, n);
    for (int i = 0; i < n; i++) {
        const char *s = json_string_value(json_array_get(v, (size_t)i));
        int k = -1;
        for (int j = 0; s && j < n_names; j++)
            if (strcmp(s, names[j]) == 0) k = j;
        if (k < 0)
            return err_set(err, SIM_ERR_UNSUPPORTED, "%s: %s[%d] '%.40s' is not a supported block type%s%s%s", path, key, i,
                           s ? s : "(not a string)", like ? ": looks like " : "", like ? like : "", like ? " (" SUPPORTED ")" : "");
        kinds[i] = k;
    }
    return SIM_OK;
}

sim_status dif_read_vae_config(dif_vae_config *c, const char *path, sim_err *err) {
    memset(c, 0, sizeof *c);
    json_t *o;
    sim_status st = load_json(&o, path, err);
    if (st != SIM_OK) return st;
    int kinds[DIF_MAX_BLOCKS];
    static const char *const down[] = {"DownEncoderBlock2D"}, *const up[] = {"UpDecoderBlock2D"};
    TRY(get_int(o, "in_channels", 3, 1, 64, &c->in_ch, path, err));
    TRY(get_int(o, "out_channels", 3, 1, 64, &c->out_ch, path, err));
    TRY(get_int(o, "latent_channels", 4, 1, 256, &c->latent_ch, path, err));
    TRY(get_int_list(o, "block_out_channels", -1, false, 1, 4096, c->block_out, &c->n_blocks, path, err));
    TRY(get_int(o, "layers_per_block", 1, 1, 16, &c->layers_per_block, path, err));
    TRY(get_int(o, "norm_num_groups", 32, 1, 1024, &c->groups, path, err));
    TRY(get_float(o, "scaling_factor", 0.18215f, 1e-6f, 1e6f, &c->scaling_factor, path, err));
    TRY(check_act(o, path, err));
    TRY(get_kinds(o, "down_block_types", c->n_blocks, down, 1, kinds, NULL, path, err));
    TRY(get_kinds(o, "up_block_types", c->n_blocks, up, 1, kinds, NULL, path, err));
    for (int i = 0; i < c->n_blocks; i++)
        if (c->block_out[i] % c->groups)
            TRY(err_set(err, SIM_ERR_FORMAT, "%s: block_out_channels[%d] = %d is not a multiple of norm_num_groups %d", path, i,
                        c->block_out[i], c->groups));
done:
    json_decref(o);
    return st;
}

// --- families --------------------------------------------------------------------------

dif_family dif_unet_family(const dif_unet_config *c) {
    if (!c->mid_block || c->layers_per_block == 1) return DIF_FAMILY_BK_SDM;
    return c->linear_proj || c->cross_dim == 1024 ? DIF_FAMILY_SD2 : DIF_FAMILY_SD1;
}

const char *dif_family_name(dif_family f) {
    static const char *const names[] = {"SD 1.x", "SD 2.x", "BK-SDM"};
    return (unsigned)f < ARRAY_LEN(names) ? names[f] : "?";
}

static bool non_null(json_t *o, const char *key) {
    json_t *v = json_object_get(o, key);
    return v && !json_is_null(v);
}

static bool str_is(json_t *o, const char *key, const char *want) {
    const char *s = json_string_value(json_object_get(o, key));
    return s && strcmp(s, want) == 0;
}

// Whether a block-type list names one containing `part`.
static bool has_block(json_t *o, const char *part) {
    const char *keys[] = {"down_block_types", "up_block_types", "mid_block_type"};
    for (int k = 0; k < 3; k++) {
        json_t *v = json_object_get(o, keys[k]);
        if (json_is_string(v) && strstr(json_string_value(v), part)) return true;
        for (size_t i = 0; json_is_array(v) && i < json_array_size(v); i++) {
            const char *s = json_string_value(json_array_get(v, i));
            if (s && strstr(s, part)) return true;
        }
    }
    return false;
}

// The family a U-Net config we do not implement most likely belongs to.
static const char *unet_looks_like(json_t *o) {
    json_t *tl = json_object_get(o, "transformer_layers_per_block");
    json_int_t in = json_integer_value(json_object_get(o, "in_channels"));
    if (str_is(o, "addition_embed_type", "text_time") || json_integer_value(json_object_get(o, "cross_attention_dim")) == 2048 ||
        json_is_array(tl) || json_integer_value(tl) > 1 || non_null(o, "projection_class_embeddings_input_dim"))
        return "SDXL";
    if (non_null(o, "time_cond_proj_dim")) return "an LCM-distilled U-Net with a guidance embedding";
    if (str_is(o, "class_embed_type", "projection")) return "Stable unCLIP";
    if (non_null(o, "num_class_embeds") || in == 7) return "the SD x4 upscaler";
    if (non_null(o, "encoder_hid_dim_type") || non_null(o, "encoder_hid_dim") || has_block(o, "Simple") || has_block(o, "ResnetDownsample"))
        return "DeepFloyd IF or Kandinsky";
    if (has_block(o, "Flat")) return "Versatile Diffusion";
    if (has_block(o, "KCrossAttn") || has_block(o, "KDownBlock")) return "the SD x2 latent upscaler";
    if (in == 9) return "an SD inpainting U-Net";
    if (in == 8) return "InstructPix2Pix";
    return "an unknown family";
}

// diffusers options whose non-default values the engine does not implement.
static const struct {
    const char *key, *def; // def: the JSON of the default; null is always the default too
} UNET_DEFAULTS[] = {
    {"addition_embed_type", "null"},     {"addition_time_embed_dim", "null"},
    {"class_embed_type", "null"},        {"num_class_embeds", "null"},
    {"class_embeddings_concat", "false"}, {"projection_class_embeddings_input_dim", "null"},
    {"time_cond_proj_dim", "null"},      {"encoder_hid_dim", "null"},
    {"encoder_hid_dim_type", "null"},    {"conv_in_kernel", "3"},
    {"conv_out_kernel", "3"},            {"dual_cross_attention", "false"},
    {"only_cross_attention", "false"},   {"mid_block_only_cross_attention", "false"},
    {"resnet_time_scale_shift", "\"default\""}, {"resnet_skip_time_act", "false"},
    {"resnet_out_scale_factor", "1"},    {"mid_block_scale_factor", "1"},
    {"time_embedding_type", "\"positional\""}, {"time_embedding_act_fn", "null"},
    {"time_embedding_dim", "null"},      {"timestep_post_act", "null"},
    {"cross_attention_norm", "null"},    {"attention_type", "\"default\""},
    {"reverse_transformer_layers_per_block", "null"}, {"center_input_sample", "false"},
    {"downsample_padding", "1"},         {"dropout", "0"},
};

static bool json_same(json_t *v, json_t *def) {
    if (json_is_number(v) && json_is_number(def)) return json_number_value(v) == json_number_value(def);
    return json_equal(v, def);
}

// Refuses a U-Net config of another family, naming the field and the family.
static sim_status check_family(json_t *o, const char *path, sim_err *err) {
    const char *cls = json_string_value(json_object_get(o, "_class_name"));
    if (cls && strcmp(cls, "UNet2DConditionModel") != 0) {
        const char *like = strcmp(cls, "UNet2DModel") == 0 ? "an unconditional diffusion U-Net"
                           : strstr(cls, "Transformer")     ? "a diffusion transformer (SD 3, Flux, PixArt ...)"
                           : strstr(cls, "SpatioTemporal")  ? "Stable Video Diffusion"
                                                            : "an unknown family";
        return err_set(err, SIM_ERR_UNSUPPORTED, "%s: '_class_name' = '%.60s': looks like %s (" SUPPORTED ")", path, cls, like);
    }
    const char *like = unet_looks_like(o);
    for (size_t i = 0; i < ARRAY_LEN(UNET_DEFAULTS); i++) {
        json_t *v = json_object_get(o, UNET_DEFAULTS[i].key);
        if (!v || json_is_null(v)) continue;
        json_t *def = json_loads(UNET_DEFAULTS[i].def, JSON_DECODE_ANY, NULL);
        bool same = def && json_same(v, def);
        json_decref(def);
        if (same) continue;
        char *txt = json_dumps(v, JSON_ENCODE_ANY | JSON_COMPACT);
        sim_status st = err_set(err, SIM_ERR_UNSUPPORTED, "%s: '%s' = %.60s: looks like %s (" SUPPORTED ")", path, UNET_DEFAULTS[i].key,
                                txt ? txt : "?", like);
        free(txt);
        return st;
    }
    json_t *tl = json_object_get(o, "transformer_layers_per_block");
    if (json_is_array(tl) || json_integer_value(tl) > 1) {
        char *txt = json_dumps(tl, JSON_ENCODE_ANY | JSON_COMPACT);
        sim_status st = err_set(err, SIM_ERR_UNSUPPORTED, "%s: 'transformer_layers_per_block' = %.60s: looks like %s (" SUPPORTED ")", path,
                                txt ? txt : "?", like);
        free(txt);
        return st;
    }
    if (json_integer_value(json_object_get(o, "cross_attention_dim")) == 2048)
        return err_set(err, SIM_ERR_UNSUPPORTED, "%s: 'cross_attention_dim' = 2048: looks like SDXL (" SUPPORTED ")", path);
    json_t *in = json_object_get(o, "in_channels"), *out = json_object_get(o, "out_channels");
    json_int_t n_out = json_is_integer(out) ? json_integer_value(out) : 4; // in = out, or inpainting's 2·out + 1
    if (json_is_integer(in) && json_integer_value(in) != n_out && json_integer_value(in) != 2 * n_out + 1)
        return err_set(err, SIM_ERR_UNSUPPORTED, "%s: 'in_channels' = %lld: looks like %s (" SUPPORTED ")", path,
                       (long long)json_integer_value(in), like);
    return SIM_OK;
}

sim_status dif_read_unet_config(dif_unet_config *c, const char *path, sim_err *err) {
    memset(c, 0, sizeof *c);
    json_t *o;
    sim_status st = load_json(&o, path, err);
    if (st != SIM_OK) return st;
    static const char *const down[] = {"DownBlock2D", "CrossAttnDownBlock2D"}, *const up[] = {"UpBlock2D", "CrossAttnUpBlock2D"};
    int kinds[DIF_MAX_BLOCKS], heads[DIF_MAX_BLOCKS];
    const char *mid;
    TRY(check_family(o, path, err));
    TRY(get_int(o, "in_channels", 4, 1, 256, &c->in_ch, path, err));
    TRY(get_int(o, "out_channels", 4, 1, 256, &c->out_ch, path, err));
    TRY(get_int_list(o, "block_out_channels", -1, false, 1, 8192, c->block_out, &c->n_blocks, path, err));
    TRY(get_int(o, "layers_per_block", 2, 1, 16, &c->layers_per_block, path, err));
    TRY(get_int(o, "cross_attention_dim", 1280, 1, 1 << 14, &c->cross_dim, path, err));
    TRY(get_int(o, "transformer_layers_per_block", 1, 1, 16, &c->transformer_layers, path, err));
    TRY(get_int(o, "norm_num_groups", 32, 1, 1024, &c->groups, path, err));
    TRY(get_float(o, "norm_eps", 1e-5f, 0, 1, &c->norm_eps, path, err));
    TRY(get_bool(o, "use_linear_projection", false, &c->linear_proj, path, err));
    TRY(get_bool(o, "flip_sin_to_cos", true, &c->flip_sin_to_cos, path, err));
    TRY(get_int(o, "freq_shift", 0, 0, 1, &c->freq_shift, path, err));
    TRY(check_act(o, path, err));
    TRY(get_kinds(o, "down_block_types", c->n_blocks, down, 2, kinds, unet_looks_like(o), path, err));
    for (int i = 0; i < c->n_blocks; i++) c->down[i] = (dif_block)kinds[i];
    TRY(get_kinds(o, "up_block_types", c->n_blocks, up, 2, kinds, unet_looks_like(o), path, err));
    for (int i = 0; i < c->n_blocks; i++) c->up[i] = (dif_block)kinds[i];
    // diffusers: num_attention_heads defaults to attention_head_dim, which in
    // SD 1.x/2.x configs holds the head count (a historical misnaming).
    json_t *nh = json_object_get(o, "num_attention_heads");
    const char *hkey = nh && !json_is_null(nh) ? "num_attention_heads" : "attention_head_dim";
    TRY(get_int_list(o, hkey, c->n_blocks, true, 1, 1024, heads, NULL, path, err));
    for (int i = 0; i < c->n_blocks; i++) {
        if (c->block_out[i] % c->groups)
            TRY(err_set(err, SIM_ERR_FORMAT, "%s: block_out_channels[%d] = %d is not a multiple of norm_num_groups %d", path, i,
                        c->block_out[i], c->groups));
        if (c->block_out[i] % heads[i])
            TRY(err_set(err, SIM_ERR_FORMAT, "%s: block_out_channels[%d] = %d is not a multiple of %d heads", path, i,
                        c->block_out[i], heads[i]));
        c->n_heads[i] = heads[i];
        c->head_dim[i] = c->block_out[i] / heads[i];
    }
    TRY(get_str(o, "mid_block_type", false, &mid, path, err));
    if (!json_object_get(o, "mid_block_type")) mid = "UNetMidBlock2DCrossAttn"; // the diffusers default
    if (mid && strcmp(mid, "UNetMidBlock2DCrossAttn") != 0)
        TRY(err_set(err, SIM_ERR_UNSUPPORTED, "%s: 'mid_block_type' = '%.40s': looks like %s (supported: UNetMidBlock2DCrossAttn or null)", path,
                    mid, unet_looks_like(o)));
    c->mid_block = mid != NULL;
done:
    json_decref(o);
    return st;
}

// --- the pipeline --------------------------------------------------------------------

sim_status dif_path(const dif_pipeline *p, const char *rel, char *buf, size_t cap, sim_err *err) {
    int n = snprintf(buf, cap, "%s/%s", p->dir, rel);
    if (n < 0 || (size_t)n >= cap) return err_set(err, SIM_ERR_RANGE, "%s/%s: path too long", p->dir, rel);
    return SIM_OK;
}

// model_index.json must name the component class we implement.
static sim_status check_component(json_t *idx, const char *key, const char *cls, const char *path, sim_err *err) {
    json_t *v = json_object_get(idx, key);
    const char *c = json_is_array(v) && json_array_size(v) == 2 ? json_string_value(json_array_get(v, 1)) : NULL;
    if (!c) return err_set(err, SIM_ERR_FORMAT, "%s: '%s' is missing or not a [library, class] pair", path, key);
    if (strcmp(c, cls) != 0) return err_set(err, SIM_ERR_UNSUPPORTED, "%s: %s is a %.60s (supported: %s)", path, key, c, cls);
    return SIM_OK;
}

// The family a pipeline we do not implement most likely is.
static const char *pipeline_looks_like(json_t *idx, const char *cls) {
    static const struct {
        const char *part, *like;
    } by_class[] = {
        {"StableDiffusion3", "SD 3"}, {"XL", "SDXL"}, {"Flux", "Flux"}, {"Upscale", "an SD upscaler"},
        {"UnCLIP", "Stable unCLIP"}, {"IF", "DeepFloyd IF"}, {"Kandinsky", "Kandinsky"}, {"PixArt", "PixArt"}, {"Cascade", "Stable Cascade"},
        {"Video", "a video model"},
    };
    if (json_object_get(idx, "text_encoder_3")) return "SD 3";
    for (size_t i = 0; i < ARRAY_LEN(by_class); i++)
        if (strstr(cls, by_class[i].part)) return by_class[i].like;
    if (json_object_get(idx, "text_encoder_2")) return "SDXL";
    if (json_object_get(idx, "transformer")) return "a diffusion transformer pipeline";
    return "an unknown family";
}

// Only StableDiffusion(Inpaint)Pipeline folders, and none with another family's components.
static sim_status check_pipeline(json_t *idx, const char *cls, const char *path, sim_err *err) {
    const char *like = pipeline_looks_like(idx, cls);
    if (strcmp(cls, "StableDiffusionPipeline") != 0 && strcmp(cls, "StableDiffusionInpaintPipeline") != 0)
        return err_set(err, SIM_ERR_UNSUPPORTED, "%s: '_class_name' = '%.60s': looks like %s (supported: StableDiffusionPipeline: %s)", path,
                       cls, like, SUPPORTED + 11);
    static const char *const foreign[] = {"text_encoder_2", "text_encoder_3", "transformer", "prior", "image_encoder"};
    for (size_t i = 0; i < ARRAY_LEN(foreign); i++) {
        json_t *v = json_object_get(idx, foreign[i]);
        // diffusers writes [null, null] for an absent optional component
        if (v && !(json_is_array(v) && json_is_null(json_array_get(v, 1))))
            return err_set(err, SIM_ERR_UNSUPPORTED, "%s: '%s': looks like %s (%s)", path, foreign[i], like, SUPPORTED);
    }
    return SIM_OK;
}

sim_status dif_open(dif_pipeline *p, const char *dir, sim_err *err) {
    memset(p, 0, sizeof *p);
    size_t dl = strlen(dir);
    while (dl > 1 && dir[dl - 1] == '/') dl--;
    if (dl + 64 >= sizeof p->dir) return err_set(err, SIM_ERR_RANGE, "%s: path too long", dir);
    memcpy(p->dir, dir, dl);
    p->dir[dl] = 0;
    char path[1200];
    snprintf(path, sizeof path, "%s/model_index.json", p->dir);
    json_t *idx;
    sim_status st = load_json(&idx, path, err);
    if (st != SIM_OK) return st;
    const char *cls;
    TRY(get_str(idx, "_class_name", true, &cls, path, err));
    TRY(check_pipeline(idx, cls, path, err));
    TRY(check_component(idx, "text_encoder", "CLIPTextModel", path, err));
    TRY(check_component(idx, "unet", "UNet2DConditionModel", path, err));
    TRY(check_component(idx, "vae", "AutoencoderKL", path, err));
    snprintf(path, sizeof path, "%s/text_encoder/config.json", p->dir);
    TRY(dif_read_clip_config(&p->clip, path, err));
    snprintf(path, sizeof path, "%s/unet/config.json", p->dir);
    TRY(dif_read_unet_config(&p->unet, path, err));
    snprintf(path, sizeof path, "%s/vae/config.json", p->dir);
    TRY(dif_read_vae_config(&p->vae, path, err));
    p->family = dif_unet_family(&p->unet);
    if (p->unet.cross_dim != p->clip.hidden)
        TRY(err_set(err, SIM_ERR_FORMAT, "%s: unet cross_attention_dim %d differs from the text encoder's hidden_size %d", p->dir,
                    p->unet.cross_dim, p->clip.hidden));
    if (p->unet.in_ch != p->vae.latent_ch && p->unet.in_ch != 2 * p->vae.latent_ch + 1)
        TRY(err_set(err, SIM_ERR_FORMAT, "%s: unet in_channels %d is neither the vae's latent_channels %d nor 2 x that + 1", p->dir, p->unet.in_ch,
                    p->vae.latent_ch));
done:
    json_decref(idx);
    return st;
}
