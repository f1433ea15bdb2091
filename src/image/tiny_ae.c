// tiny_ae.c — tiny autoencoders from their published layouts (see tiny_ae.h).
#include "image/tiny_ae.h"

#include <dirent.h>
#include <jansson.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "base/file.h"
#include "image/pth.h"

// --- diffusers names ---------------------------------------------------------------------------

// The view of the tensors "<half>.layers.N.*" renamed "(N + shift).*", or NULL when there are none.
static sim_status half_view(const st_file *src, const char *half, int shift, st_file **out, sim_err *err) {
    *out = NULL;
    char lead[32];
    int k = snprintf(lead, sizeof lead, "%s.layers.", half), n = 0;
    size_t names_len = 0;
    for (int i = 0; i < src->n_tensors; i++)
        if (strncmp(src->tensors[i].name, lead, (size_t)k) == 0) n++, names_len += strlen(src->tensors[i].name) + 8;
    if (!n) return SIM_OK;
    st_tensor *ts = mem_calloc((size_t)n, sizeof *ts);
    char *names = mem_alloc(names_len), *np = names;
    if (!ts || !names) {
        mem_free(ts), mem_free(names);
        return err_set(err, SIM_ERR_NOMEM, "%s: out of memory for the %s view", src->path, half);
    }
    int m = 0;
    for (int i = 0; i < src->n_tensors; i++) {
        const st_tensor *t = &src->tensors[i];
        if (strncmp(t->name, lead, (size_t)k) != 0) continue;
        int idx, used = 0;
        if (sscanf(t->name + k, "%d.%n", &idx, &used) != 1 || used == 0 || idx < 0 || idx > 1000) {
            mem_free(ts), mem_free(names);
            return err_set(err, SIM_ERR_FORMAT, "%s: tensor '%s' is not '%sN.*'", src->path, t->name, lead);
        }
        ts[m] = *t;
        ts[m].name = np;
        np += sprintf(np, "%d.%s", idx + shift, t->name + k + used) + 1;
        m++;
    }
    char path[1200];
    snprintf(path, sizeof path, "%s [%s]", src->path, half);
    return st_from_parts(out, path, ts, m, names, NULL, 0, err);
}

sim_status tae_diffusers_views(const st_file *src, st_file **dec, st_file **enc, sim_err *err) {
    *dec = *enc = NULL;
    sim_status st = half_view(src, "decoder", 1, dec, err);
    if (st == SIM_OK) st = half_view(src, "encoder", 0, enc, err);
    if (st == SIM_OK && !*dec && !*enc)
        st = err_set(err, SIM_ERR_FORMAT, "%s: no 'decoder.layers.*' or 'encoder.layers.*' tensors: not a diffusers AutoencoderTiny", src->path);
    if (st != SIM_OK) {
        st_close(*dec), st_close(*enc);
        *dec = *enc = NULL;
    }
    return st;
}

// --- the diffusers config --------------------------------------------------------------------------

// Field key must equal the JSON text want (absent: the diffusers default, which is want).
static sim_status expect(json_t *o, const char *key, const char *want, const char *path, sim_err *err) {
    json_t *v = json_object_get(o, key), *w = json_loads(want, JSON_DECODE_ANY, NULL);
    bool ok = !v || (w && (json_is_number(v) && json_is_number(w) ? json_number_value(v) == json_number_value(w) : json_equal(v, w)));
    json_decref(w);
    if (ok) return SIM_OK;
    char *txt = json_dumps(v, JSON_ENCODE_ANY | JSON_COMPACT);
    sim_status st = err_set(err, SIM_ERR_UNSUPPORTED, "%s: '%s' = %.60s (supported: %s)", path, key, txt ? txt : "?", want);
    free(txt);
    return st;
}

static sim_status check_config(const char *path, sim_err *err) {
    char *text;
    size_t n;
    sim_status st = file_read_all(path, 1u << 20, &text, &n, err);
    if (st != SIM_OK) return st;
    json_error_t je;
    json_t *o = json_loadb(text, n, 0, &je);
    mem_free(text);
    if (!json_is_object(o)) {
        json_decref(o);
        return err_set(err, SIM_ERR_FORMAT, "%s: not a JSON object (line %d: %s)", path, je.line, je.text);
    }
    const char *cls = json_string_value(json_object_get(o, "_class_name"));
    if (!cls || strcmp(cls, "AutoencoderTiny") != 0) st = err_set(err, SIM_ERR_UNSUPPORTED, "%s: '_class_name' = '%.60s' (supported: AutoencoderTiny)", path, cls ? cls : "(none)");
    static const char *const fields[] = {"encoder_block_out_channels", "[64, 64, 64, 64]", "decoder_block_out_channels", "[64, 64, 64, 64]",
                                         "num_encoder_blocks", "[1, 3, 3, 3]", "num_decoder_blocks", "[3, 3, 3, 1]", "act_fn", "\"relu\"",
                                         "upsampling_scaling_factor", "2", "upsample_fn", "\"nearest\"", "in_channels", "3", "out_channels", "3"};
    for (size_t i = 0; i < ARRAY_LEN(fields) && st == SIM_OK; i += 2) st = expect(o, fields[i], fields[i + 1], path, err);
    json_decref(o);
    return st;
}

// --- opening -----------------------------------------------------------------------------------------

static bool has_suffix(const char *s, const char *suffix) {
    size_t n = strlen(s), k = strlen(suffix);
    return n >= k && strcmp(s + n - k, suffix) == 0;
}

static sim_status open_weights(st_file **f, const char *path, sim_err *err) {
    return has_suffix(path, ".pth") || has_suffix(path, ".ckpt") ? pth_open(f, path, err) : st_open(f, path, err);
}

// A .safetensors file: diffusers names, or an original decoder.
static sim_status load_file(taesd **out, const char *path, sim_err *err) {
    st_file *f = NULL, *dec = NULL, *enc = NULL;
    sim_status st = open_weights(&f, path, err);
    if (st != SIM_OK) return st;
    bool diffusers = false;
    for (int i = 0; i < f->n_tensors && !diffusers; i++) diffusers = strncmp(f->tensors[i].name, "decoder.layers.", 15) == 0 || strncmp(f->tensors[i].name, "encoder.layers.", 15) == 0;
    if (diffusers) st = tae_diffusers_views(f, &dec, &enc, err);
    if (st == SIM_OK) st = diffusers ? taesd_load(out, dec, enc, err) : taesd_load(out, f, NULL, err);
    st_close(dec), st_close(enc), st_close(f);
    return st;
}

// The lexically first DIR/*<suffix> into buf; false when none.
static bool find_named(const char *dir, const char *suffix, char *buf, size_t cap) {
    DIR *d = opendir(dir);
    if (!d) return false;
    char best[256] = "";
    for (struct dirent *e; (e = readdir(d));)
        if (has_suffix(e->d_name, suffix) && strlen(e->d_name) < sizeof best && (!best[0] || strcmp(e->d_name, best) < 0)) snprintf(best, sizeof best, "%s", e->d_name);
    closedir(d);
    return best[0] && snprintf(buf, cap, "%s/%s", dir, best) < (int)cap;
}

sim_status tae_open(taesd **out, const char *path, sim_err *err) {
    *out = NULL;
    struct stat sb;
    if (stat(path, &sb) != 0) return err_set(err, SIM_ERR_IO, "%s: no such file or folder", path);
    if (!S_ISDIR(sb.st_mode)) return load_file(out, path, err);
    char cfg[1200], w[1200], dec[1200], enc[1200];
    snprintf(cfg, sizeof cfg, "%s/config.json", path);
    snprintf(w, sizeof w, "%s/diffusion_pytorch_model.safetensors", path);
    if (access(cfg, R_OK) == 0 && access(w, R_OK) == 0) {
        sim_status st = check_config(cfg, err);
        return st == SIM_OK ? load_file(out, w, err) : st;
    }
    static const char *const exts[] = {".safetensors", ".pth"};
    bool has_dec = false, has_enc = false;
    for (size_t i = 0; i < ARRAY_LEN(exts); i++) {
        char suffix[32];
        snprintf(suffix, sizeof suffix, "_decoder%s", exts[i]);
        if (!has_dec) has_dec = find_named(path, suffix, dec, sizeof dec);
        snprintf(suffix, sizeof suffix, "_encoder%s", exts[i]);
        if (!has_enc) has_enc = find_named(path, suffix, enc, sizeof enc);
    }
    if (!has_dec && !has_enc)
        return err_set(err, SIM_ERR_IO, "%s: no tiny autoencoder (config.json + diffusion_pytorch_model.safetensors, or *_decoder / *_encoder .safetensors / .pth)", path);
    st_file *d = NULL, *e = NULL;
    sim_status st = has_dec ? open_weights(&d, dec, err) : SIM_OK;
    if (st == SIM_OK && has_enc) st = open_weights(&e, enc, err);
    if (st == SIM_OK) st = taesd_load(out, d, e, err);
    st_close(d), st_close(e);
    return st;
}
