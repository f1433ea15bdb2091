// image_api.c — image generation over HTTP (see image_api.h).
#include "server/image_api.h"

#include <errno.h>
#include <math.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include <jansson.h>

#include "base/file.h"
#include "base/sha256.h"
#include "base/strbuf.h"
#include "image/ckpt.h"
#include "image/diffusers.h"
#include "image/lora.h"
#include "image/png.h"
#include "image/resize.h"
#include "image/sd.h"
#include "server/api.h"
#include "story/card.h"
#include "tensor/kern.h"
#include "tensor/pool.h"

// The files of a diffusers folder that make a model's identity, in this order.
static const char *const MODEL_FILES[] = {
    "model_index.json",
    "text_encoder/config.json",
    "text_encoder/model.safetensors",
    "tokenizer/vocab.json",
    "tokenizer/merges.txt",
    "unet/config.json",
    "unet/diffusion_pytorch_model.safetensors",
    "vae/config.json",
    "vae/diffusion_pytorch_model.safetensors",
};

// The web UI's sampler names (and the aliases it accepts) on ours. Its
// legacy names with the schedule in them ("DPM++ 2M Karras") are that
// sampler with scheduler "Karras", as the web UI itself now reads them.
typedef struct sampler_def {
    const char *name;
    dsamp_kind kind;
    int base; // the legacy names: the entry of the sampler they use with Karras (else -1)
    const char *aliases[3];
} sampler_def;

static const sampler_def SAMPLERS[] = {
    {"Euler a", DSAMP_EULER_A, -1, {"k_euler_a", "k_euler_ancestral", "euler_a"}},
    {"Euler", DSAMP_EULER, -1, {"k_euler", "euler"}},
    {"DDIM", DSAMP_DDIM, -1, {"ddim"}},
    {"DPM++ 2M", DSAMP_DPMPP_2M, -1, {"k_dpmpp_2m", "dpmpp_2m"}},
    {"DPM++ 2M Karras", DSAMP_DPMPP_2M, 3, {"k_dpmpp_2m_ka"}},
    {"LCM", DSAMP_LCM, -1, {"k_lcm", "lcm"}},
};
#define DEFAULT_SAMPLER 1 // "Euler": the web UI's default sampler_index

// --- requests ----------------------------------------------------------------------------------------

// What one request asks for, checked. Image i has seed seed + i.
typedef struct ireq {
    char *prompt, *negative; // owned
    char *loras;             // the prompt's <lora:NAME:W> files: "NAME W size mtime" lines (owned; NULL: none)
    int width, height, steps, clip_skip, batch_size, n_iter, n_images;
    float cfg;
    const sampler_def *sampler;
    bool karras;
    long long seed_asked; // -1: random
    uint64_t seed;        // the first image's
    bool send_images;
    int preview_every; // /api/image: a preview with every K-th step event (0: none)
    // Variations: image i's start noise leans towards subseed + i's.
    long long subseed_asked;
    uint64_t subseed;
    float subseed_strength; // 0: none (the subseed then changes nothing)
    // img2img (init != NULL) and inpainting (mask != NULL).
    float *init;   // (3, height, width) in [-1, 1], the picture resized as resize_mode says
    float *mask;   // (height, width) in [0, 1], 1 = repaint (inverted when asked)
    float strength;
    int resize_mode, mask_blur;
    bool invert;
    char init_sha[SHA256_HEX_SIZE], mask_sha[SHA256_HEX_SIZE]; // of the pictures as sent (size and RGBA pixels)
} ireq;

static void ireq_free(ireq *r) {
    mem_free(r->loras);
    mem_free(r->prompt);
    mem_free(r->negative);
    mem_free(r->init);
    mem_free(r->mask);
}

// One generated (or cached) image.
typedef struct iimage {
    uint8_t *png; // mem_alloc'd file
    size_t len;
    uint64_t seed;
    bool cached, ready;
    uint8_t key[SHA256_SIZE];
} iimage;

typedef enum job_state { JOB_NEW, JOB_QUEUED, JOB_RUNNING, JOB_FINISHED } job_state;

typedef struct ijob {
    struct iapi *ia;
    ireq rq;
    bool sse;           // /api/image (events) or the web UI's (one JSON answer)
    bool img2img;       // which web UI route
    http_conn *c;       // valid until the response is over
    // Under ia->mu:
    int refs;           // the request's handler or stream, and the queue or worker
    job_state state;
    bool cancel;        // the client left
    bool interrupted;   // POST /sdapi/v1/interrupt
    struct ijob *next;  // in the queue
    sbuf ev;            // events not yet read (sse)
    size_t ev_off;
    iimage *img;        // (rq.n_images)
    int n_ready;
    sim_status status;  // of the generation; SIM_ERR_BUSY: refused at shutdown
    char msg[sizeof(((sim_err *)0)->msg)];
    uint64_t t0;        // time_ns at the start of the run
    char stamp[16];     // the wall clock then, "YYYYMMDDhhmmss" (the web UI's job_timestamp)
    bool no_preview;    // a preview failed: no more for this job (logged once)
    double seconds;     // of the whole run
} ijob;

// --- the cache ---------------------------------------------------------------------------------------

typedef struct centry {
    uint8_t key[SHA256_SIZE];
    uint8_t *png;
    size_t len;
    struct centry *prev, *next; // most recently used first
} centry;

typedef struct icache {
    char *dir; // NULL: memory
    pthread_mutex_t mu;
    centry *head, *tail;
    size_t bytes;
} icache;

struct iapi {
    iapi_config cfg;
    char *model_dir, *taesd, *cache_dir, *model_name, *lora_dir;
    char sha[SHA256_HEX_SIZE];
    sd_model *m;
    int size_step;   // width and height are multiples of this
    int clip_layers; // of the text encoder
    pool *pl;
    op_ctx oc;
    icache cache;
    pthread_t worker;
    bool worker_started;
    pthread_mutex_t mu;
    pthread_cond_t work_cv; // the worker waits for jobs
    pthread_cond_t job_cv;  // handlers and streams wait for their jobs
    ijob *head, *tail;      // waiting jobs
    int n_queued;
    ijob *running;
    bool stopping;
    // Progress of the running job (under mu).
    int p_image, p_step, p_steps;
    uint64_t p_t0;
    uint8_t *preview; // the latest preview PNG of the running job, or NULL
    size_t preview_len;
    bool want_preview; // a progress request asked for one: render at the next step
};

static void ia_log(iapi *ia, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static void ia_log(iapi *ia, const char *fmt, ...) {
    if (!ia->cfg.log) return;
    char msg[600];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    ia->cfg.log(ia->cfg.log_ud, msg);
}

static void cache_path(const icache *k, const uint8_t key[SHA256_SIZE], char *buf, size_t cap) {
    char hex[SHA256_HEX_SIZE];
    sha256_hex(key, hex);
    snprintf(buf, cap, "%s/%s.png", k->dir, hex);
}

// A copy of the cached file for key (mem_alloc'd), or NULL.
static uint8_t *cache_get(icache *k, const uint8_t key[SHA256_SIZE], size_t *len) {
    if (k->dir) {
        char path[4200];
        cache_path(k, key, path, sizeof path);
        char *data;
        sim_err err;
        if (file_read_all(path, (size_t)256 << 20, &data, len, &err) != SIM_OK) return NULL;
        if (*len < 8 || memcmp(data, "\x89PNG\r\n\x1a\n", 8) != 0) { // not a file this cache wrote
            mem_free(data);
            return NULL;
        }
        return (uint8_t *)data;
    }
    uint8_t *out = NULL;
    pthread_mutex_lock(&k->mu);
    for (centry *e = k->head; e; e = e->next) {
        if (memcmp(e->key, key, SHA256_SIZE) != 0) continue;
        if ((out = mem_alloc(e->len))) {
            memcpy(out, e->png, e->len);
            *len = e->len;
        }
        if (e != k->head) { // move to the front
            e->prev->next = e->next;
            if (e->next) e->next->prev = e->prev;
            else k->tail = e->prev;
            e->prev = NULL, e->next = k->head;
            k->head->prev = e;
            k->head = e;
        }
        break;
    }
    pthread_mutex_unlock(&k->mu);
    return out;
}

static void centry_unlink(icache *k, centry *e) {
    if (e->prev) e->prev->next = e->next;
    else k->head = e->next;
    if (e->next) e->next->prev = e->prev;
    else k->tail = e->prev;
    k->bytes -= e->len;
    mem_free(e->png);
    mem_free(e);
}

// Stores a copy; failures only cost a later regeneration (logged for files).
static void cache_put(iapi *ia, const uint8_t key[SHA256_SIZE], const uint8_t *png, size_t len) {
    icache *k = &ia->cache;
    if (k->dir) {
        char path[4200], tmp[4300];
        cache_path(k, key, path, sizeof path);
        snprintf(tmp, sizeof tmp, "%s.%ld.tmp", path, (long)getpid());
        sim_err err;
        if (file_write_all(tmp, png, len, &err) != SIM_OK) ia_log(ia, "image cache: %s", err.msg);
        else if (rename(tmp, path) != 0) {
            ia_log(ia, "image cache: cannot rename %s to %s: %s", tmp, path, strerror(errno));
            unlink(tmp);
        }
        return;
    }
    if (len > IAPI_MEM_CACHE_BYTES) return;
    centry *e = mem_calloc(1, sizeof *e);
    uint8_t *copy = mem_alloc(len);
    if (!e || !copy) {
        mem_free(e);
        mem_free(copy);
        return;
    }
    memcpy(e->key, key, SHA256_SIZE);
    memcpy(copy, png, len);
    e->png = copy, e->len = len;
    pthread_mutex_lock(&k->mu);
    for (centry *o = k->head; o; o = o->next)
        if (memcmp(o->key, key, SHA256_SIZE) == 0) {
            centry_unlink(k, o);
            break;
        }
    while (k->tail && k->bytes + len > IAPI_MEM_CACHE_BYTES) centry_unlink(k, k->tail);
    e->next = k->head;
    if (k->head) k->head->prev = e;
    else k->tail = e;
    k->head = e;
    k->bytes += len;
    pthread_mutex_unlock(&k->mu);
}

static void cache_free(icache *k) {
    while (k->head) centry_unlink(k, k->head);
    pthread_mutex_destroy(&k->mu);
}

// The key of image i: sha256 of every input that changes its bytes.
static bool cache_key(const iapi *ia, const ireq *r, int i, uint8_t key[SHA256_SIZE]) {
    sbuf b = {0};
    sb_printf(&b, "simularity image cache 1\nengine %s\nmodel %s %zu:%s\n", SIM_VERSION_STRING, ia->sha,
              strlen(ia->model_name), ia->model_name);
    sb_printf(&b, "prompt %zu:%s\nnegative %zu:%s\n", strlen(r->prompt), r->prompt, strlen(r->negative), r->negative);
    sb_printf(&b, "seed %llu\nsize %dx%d\nsteps %d\ncfg %a\nsampler %s\nkarras %d\nclip_skip %d\n",
              (unsigned long long)(r->seed + (uint64_t)i), r->width, r->height, r->steps, (double)r->cfg,
              dsamp_name(r->sampler->kind), r->karras, r->clip_skip);
    if (r->subseed_strength > 0)
        sb_printf(&b, "subseed %llu %a\n", (unsigned long long)(r->subseed + (uint64_t)i), (double)r->subseed_strength);
    if (r->loras) sb_printf(&b, "loras %zu:%s\n", strlen(r->loras), r->loras);
    if (r->init) sb_printf(&b, "init %s resize %d strength %a\n", r->init_sha, r->resize_mode, (double)r->strength);
    if (r->mask) sb_printf(&b, "mask %s blur %d invert %d\n", r->mask_sha, r->mask_blur, r->invert);
    char *text = sb_take(&b);
    if (!text) return false;
    sha256(text, strlen(text), key);
    mem_free(text);
    return true;
}

// --- answers -------------------------------------------------------------------------------------------

static char *base64_encode(const uint8_t *p, size_t n) {
    static const char A[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    char *out = mem_alloc((n + 2) / 3 * 4 + 1), *o = out;
    if (!out) return NULL;
    for (size_t i = 0; i < n; i += 3) {
        uint32_t v = (uint32_t)p[i] << 16 | (i + 1 < n ? (uint32_t)p[i + 1] << 8 : 0) | (i + 2 < n ? p[i + 2] : 0);
        *o++ = A[v >> 18 & 63];
        *o++ = A[v >> 12 & 63];
        *o++ = i + 1 < n ? A[v >> 6 & 63] : '=';
        *o++ = i + 2 < n ? A[v & 63] : '=';
    }
    *o = 0;
    return out;
}

// A JSON string of the base64 of p (null when memory runs out).
static json_t *json_base64(const uint8_t *p, size_t n) {
    char *s = base64_encode(p, n);
    json_t *j = s ? json_string(s) : json_null();
    mem_free(s);
    return j;
}

// The web UI's error shape, {"error": kind, "detail": msg}.
static void sd_fail(http_conn *c, int status, const char *kind, const char *fmt, ...) __attribute__((format(printf, 4, 5)));
static void sd_fail(http_conn *c, int status, const char *kind, const char *fmt, ...) {
    char msg[1024];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    if (status == 503) http_add_header(c, "Retry-After", "5");
    api_respond_json(c, status, json_pack("{s:s, s:s}", "error", kind, "detail", msg));
}

// A refusal in the shape of the route: the web UI's or the server's.
static void fail(http_conn *c, bool native, int status, const char *msg) {
    const char *kind = status == 400 ? "invalid_request_error" : status == 503 ? "unavailable" : "server_error";
    if (native) {
        if (status == 503) http_add_header(c, "Retry-After", "5");
        http_respond_error(c, status, kind, NULL, "%s", msg);
    } else
        sd_fail(c, status, kind, "%s", msg);
}

// The web UI's "infotext" of image i: the parameters line of its PNG.
static char *infotext(const iapi *ia, const ireq *r, int i) {
    sbuf b = {0};
    sb_str(&b, r->prompt);
    if (*r->negative) sb_printf(&b, "\nNegative prompt: %s", r->negative);
    sb_printf(&b, "\nSteps: %d, Sampler: %s, ", r->steps, r->sampler->name);
    if (r->karras) sb_str(&b, "Schedule type: Karras, ");
    sb_printf(&b, "CFG scale: %g, Seed: %llu, Size: %dx%d, Model hash: %.10s, Model: %s, ", (double)r->cfg,
              (unsigned long long)(r->seed + (uint64_t)i), r->width, r->height, ia->sha, ia->model_name);
    if (r->subseed_strength > 0)
        sb_printf(&b, "Variation seed: %llu, Variation seed strength: %g, ", (unsigned long long)(r->subseed + (uint64_t)i),
                  (double)r->subseed_strength);
    if (r->init) sb_printf(&b, "Denoising strength: %g, ", (double)r->strength);
    if (r->mask) sb_printf(&b, "Mask blur: %d, ", r->mask_blur);
    if (r->clip_skip) sb_printf(&b, "Clip skip: %d, ", r->clip_skip + 1);
    sb_str(&b, "Version: simularity " SIM_VERSION_STRING);
    return sb_take(&b);
}

// --- parsing ---------------------------------------------------------------------------------------------

typedef struct perr {
    char msg[512];
} perr;

static const char *json_type_name(const json_t *v) {
    switch (json_typeof(v)) {
    case JSON_OBJECT: return "an object";
    case JSON_ARRAY: return "an array";
    case JSON_STRING: return "a string";
    case JSON_INTEGER:
    case JSON_REAL: return "a number";
    case JSON_TRUE:
    case JSON_FALSE: return "a boolean";
    default: return "null";
    }
}

// An integer field in [lo, hi]; absent or null: dflt. Integral reals count.
static bool get_int(json_t *j, const char *key, long long lo, long long hi, long long dflt, long long *out, perr *e) {
    json_t *v = json_object_get(j, key);
    *out = dflt;
    if (!v || json_is_null(v)) return true;
    double d = json_number_value(v);
    if (!json_is_number(v) || (json_is_real(v) && (d != floor(d) || fabs(d) > 9e15))) {
        snprintf(e->msg, sizeof e->msg, "\"%s\" must be an integer, got %s", key,
                 json_is_number(v) ? "a fraction" : json_type_name(v));
        return false;
    }
    long long x = json_is_integer(v) ? json_integer_value(v) : (long long)d;
    if (x < lo || x > hi) {
        snprintf(e->msg, sizeof e->msg, "\"%s\" must be %lld..%lld, got %lld", key, lo, hi, x);
        return false;
    }
    *out = x;
    return true;
}

static bool get_num(json_t *j, const char *key, double lo, double hi, double dflt, double *out, perr *e) {
    json_t *v = json_object_get(j, key);
    *out = dflt;
    if (!v || json_is_null(v)) return true;
    if (!json_is_number(v)) {
        snprintf(e->msg, sizeof e->msg, "\"%s\" must be a number, got %s", key, json_type_name(v));
        return false;
    }
    double x = json_number_value(v);
    if (!(x >= lo && x <= hi)) {
        snprintf(e->msg, sizeof e->msg, "\"%s\" must be %g..%g, got %g", key, lo, hi, x);
        return false;
    }
    *out = x;
    return true;
}

static bool get_str(json_t *j, const char *key, const char *dflt, const char **out, perr *e) {
    json_t *v = json_object_get(j, key);
    *out = dflt;
    if (!v || json_is_null(v)) return true;
    if (!json_is_string(v)) {
        snprintf(e->msg, sizeof e->msg, "\"%s\" must be a string, got %s", key, json_type_name(v));
        return false;
    }
    if (strlen(json_string_value(v)) != json_string_length(v)) {
        snprintf(e->msg, sizeof e->msg, "\"%s\" must not contain NUL characters", key);
        return false;
    }
    *out = json_string_value(v);
    return true;
}

static bool get_bool(json_t *j, const char *key, bool dflt, bool *out, perr *e) {
    json_t *v = json_object_get(j, key);
    *out = dflt;
    if (!v || json_is_null(v)) return true;
    if (!json_is_boolean(v)) {
        snprintf(e->msg, sizeof e->msg, "\"%s\" must be true or false, got %s", key, json_type_name(v));
        return false;
    }
    *out = json_is_true(v);
    return true;
}

static const sampler_def *find_sampler(const char *name) {
    for (size_t i = 0; i < ARRAY_LEN(SAMPLERS); i++) {
        if (strcasecmp(name, SAMPLERS[i].name) == 0) return &SAMPLERS[i];
        for (int k = 0; k < 3 && SAMPLERS[i].aliases[k]; k++)
            if (strcasecmp(name, SAMPLERS[i].aliases[k]) == 0) return &SAMPLERS[i];
    }
    return NULL;
}

static uint64_t random_seed(void) {
    uint32_t v = 0;
    if (getrandom(&v, sizeof v, 0) != (ssize_t)sizeof v) v = (uint32_t)(time_ns() ^ (time_ns() >> 32));
    return v % 4294967295u; // the web UI draws from 0..2^32-2
}

// The prompt's <lora:NAME:W> tags checked against the LoRA folder; their
// files' identity (name, weight, size, modification time) into r->loras.
static bool parse_loras(const iapi *ia, const char *prompt, ireq *r, perr *e) {
    lora_tag tags[LORA_MAX];
    int n = 0;
    char *clean = NULL;
    sim_err err;
    sim_status st = lora_tags_parse(prompt, &clean, tags, LORA_MAX, &n, &err);
    mem_free(clean);
    if (st != SIM_OK) {
        snprintf(e->msg, sizeof e->msg, "\"prompt\": %.400s", err.msg);
        return false;
    }
    if (n && !ia->lora_dir) {
        snprintf(e->msg, sizeof e->msg, "\"prompt\" has <lora:%s> but this server has no LoRA folder (--image-lora-dir)",
                 tags[0].name);
        return false;
    }
    sbuf b = {0};
    for (int i = 0; i < n; i++) {
        char path[4200];
        struct stat sb;
        if (lora_path(ia->lora_dir, tags[i].name, path, sizeof path, &err) != SIM_OK || stat(path, &sb) != 0 ||
            !S_ISREG(sb.st_mode)) {
            snprintf(e->msg, sizeof e->msg, "\"prompt\": <lora:%.120s>: no file %.120s.safetensors in the LoRA folder", tags[i].name,
                     tags[i].name);
            sb_free(&b);
            return false;
        }
        sb_printf(&b, "%s %a %lld %lld.%09ld\n", tags[i].name, (double)tags[i].weight, (long long)sb.st_size,
                  (long long)sb.st_mtim.tv_sec, sb.st_mtim.tv_nsec);
    }
    if (n && !(r->loras = sb_take(&b))) {
        snprintf(e->msg, sizeof e->msg, "out of memory");
        return false;
    }
    return true;
}

// The fields of a txt2img request into r (owned strings copied); false with
// a message naming the first bad field.
static bool parse_txt2img(const iapi *ia, json_t *j, bool native, ireq *r, perr *e) {
    const char *prompt, *negative, *sname, *schedule;
    long long v;
    double cfg;
    bool flag;
    if (!get_str(j, "prompt", "", &prompt, e) || !get_str(j, "negative_prompt", "", &negative, e) ||
        !parse_loras(ia, prompt, r, e))
        return false;
    if (!get_str(j, "sampler_name", NULL, &sname, e)) return false;
    if (!sname && !get_str(j, "sampler_index", SAMPLERS[DEFAULT_SAMPLER].name, &sname, e)) return false;
    if (!(r->sampler = find_sampler(sname))) {
        sbuf b = {0};
        for (size_t i = 0; i < ARRAY_LEN(SAMPLERS); i++) sb_printf(&b, "%s\"%s\"", i ? ", " : "", SAMPLERS[i].name);
        snprintf(e->msg, sizeof e->msg, "\"sampler_name\": unknown sampler \"%.100s\" (known: %s)", sname, b.s ? b.s : "");
        sb_free(&b);
        return false;
    }
    if (r->sampler->base >= 0) r->sampler = &SAMPLERS[r->sampler->base], r->karras = true;
    if (!get_str(j, "scheduler", "Automatic", &schedule, e)) return false;
    if (strcasecmp(schedule, "karras") == 0) r->karras = true;
    else if (strcasecmp(schedule, "automatic") != 0) {
        snprintf(e->msg, sizeof e->msg, "\"scheduler\": unknown schedule \"%.100s\" (known: \"Automatic\", \"Karras\")", schedule);
        return false;
    }
    if (r->karras && r->sampler->kind != DSAMP_EULER && r->sampler->kind != DSAMP_EULER_A && r->sampler->kind != DSAMP_DPMPP_2M) {
        snprintf(e->msg, sizeof e->msg, "\"scheduler\": Karras works with Euler, Euler a and DPM++ 2M, not %s", r->sampler->name);
        return false;
    }
    if (!get_int(j, "seed", -1, INT64_MAX, -1, &r->seed_asked, e)) return false;
    r->seed = r->seed_asked == -1 ? random_seed() : (uint64_t)r->seed_asked;
    if (!get_int(j, "steps", 1, IAPI_MAX_STEPS, 50, &v, e)) return false;
    r->steps = (int)v;
    if (!get_num(j, "cfg_scale", 0, 100, 7.0, &cfg, e)) return false;
    r->cfg = (float)cfg;
    const char *side[2] = {"width", "height"};
    int *dst[2] = {&r->width, &r->height};
    for (int k = 0; k < 2; k++) {
        if (!get_int(j, side[k], 1, IAPI_MAX_SIDE, 512, &v, e)) return false;
        if (v % ia->size_step) {
            snprintf(e->msg, sizeof e->msg, "\"%s\" must be a multiple of %d for this model, got %lld", side[k],
                     ia->size_step, v);
            return false;
        }
        *dst[k] = (int)v;
    }
    if (!get_int(j, "batch_size", 1, IAPI_MAX_IMAGES, 1, &v, e)) return false;
    r->batch_size = (int)v;
    if (!get_int(j, "n_iter", 1, IAPI_MAX_IMAGES, 1, &v, e)) return false;
    r->n_iter = (int)v;
    if ((r->n_images = r->batch_size * r->n_iter) > IAPI_MAX_IMAGES) {
        snprintf(e->msg, sizeof e->msg, "\"batch_size\" × \"n_iter\" must be at most %d images, got %d", IAPI_MAX_IMAGES,
                 r->n_images);
        return false;
    }
    json_t *ov = json_object_get(j, "override_settings");
    if (ov && !json_is_null(ov) && !json_is_object(ov)) {
        snprintf(e->msg, sizeof e->msg, "\"override_settings\" must be an object, got %s", json_type_name(ov));
        return false;
    }
    // The web UI counts clip skip from 1 (the last layer).
    if (ov && !get_int(ov, "CLIP_stop_at_last_layers", 1, ia->clip_layers, 1, &v, e)) {
        memmove(e->msg + 18, e->msg, strlen(e->msg) + 1);
        memcpy(e->msg, "override_settings.", 18);
        return false;
    }
    r->clip_skip = ov ? (int)v - 1 : 0;
    if (!get_bool(j, "send_images", true, &r->send_images, e)) return false;
    static const char *const unsupported[][2] = {
        {"restore_faces", "face restoration"}, {"tiling", "tiling"}, {"enable_hr", "the high-resolution fix"}};
    for (size_t i = 0; i < ARRAY_LEN(unsupported); i++) {
        if (!get_bool(j, unsupported[i][0], false, &flag, e)) return false;
        if (flag) {
            snprintf(e->msg, sizeof e->msg, "\"%s\": %s is not supported by this server", unsupported[i][0], unsupported[i][1]);
            return false;
        }
    }
    double sub;
    if (!get_int(j, "subseed", -1, INT64_MAX, -1, &r->subseed_asked, e) || !get_num(j, "subseed_strength", 0, 1, 0, &sub, e))
        return false;
    r->subseed = r->subseed_asked == -1 ? random_seed() : (uint64_t)r->subseed_asked;
    r->subseed_strength = (float)sub;
    if (native && !get_int(j, "preview_every", 0, IAPI_MAX_STEPS, 0, &v, e)) return false;
    r->preview_every = native ? (int)v : 0;
    r->prompt = mem_strdup(prompt);
    r->negative = mem_strdup(negative);
    if (!r->prompt || !r->negative) {
        snprintf(e->msg, sizeof e->msg, "out of memory");
        return false;
    }
    return true;
}

// A picture sent as base64 (a data: URL prefix allowed) decoded; false
// with a message naming the field.
static bool get_picture(json_t *v, const char *field, png_image *img, char sha[SHA256_HEX_SIZE], perr *e) {
    if (!json_is_string(v)) {
        snprintf(e->msg, sizeof e->msg, "%s must be a base64 PNG string, got %s", field, json_type_name(v));
        return false;
    }
    const char *s = json_string_value(v), *comma = strchr(s, ',');
    size_t n = json_string_length(v);
    if (strncmp(s, "data:", 5) == 0 && comma && strstr(s, ";base64,") == comma - 7) n -= (size_t)(comma + 1 - s), s = comma + 1;
    uint8_t *bytes = NULL;
    size_t len;
    sim_err err;
    sim_status st = card_base64_decode(s, n, &bytes, &len, &err);
    if (st == SIM_OK) st = png_decode(img, bytes, len, &err);
    mem_free(bytes);
    if (st != SIM_OK) {
        snprintf(e->msg, sizeof e->msg, "%s: %s%.400s", field, st == SIM_ERR_NOMEM ? "" : "not a base64 PNG image: ", err.msg);
        return false;
    }
    sha256_ctx c;
    uint8_t d[SHA256_SIZE];
    uint32_t wh[2] = {(uint32_t)img->w, (uint32_t)img->h};
    sha256_init(&c);
    sha256_update(&c, wh, sizeof wh);
    sha256_update(&c, img->rgba, (size_t)img->w * img->h * 4);
    sha256_final(&c, d);
    sha256_hex(d, sha);
    return true;
}

// The img2img fields: the init picture (and mask) brought to the size asked.
static bool parse_img2img(json_t *j, ireq *r, perr *e) {
    json_t *inits = json_object_get(j, "init_images");
    if (!json_is_array(inits) || json_array_size(inits) != 1) {
        snprintf(e->msg, sizeof e->msg, "\"init_images\" must be an array of one base64 PNG image, got %s",
                 !inits ? "nothing" : json_is_array(inits) ? "another count" : json_type_name(inits));
        return false;
    }
    double strength;
    long long mode, blur, invert;
    if (!get_num(j, "denoising_strength", 0, 1, 0.75, &strength, e) || !get_int(j, "resize_mode", 0, 3, 0, &mode, e) ||
        !get_int(j, "mask_blur", 0, 64, 4, &blur, e) || !get_int(j, "inpainting_mask_invert", 0, 1, 0, &invert, e))
        return false;
    if (mode == 3) {
        snprintf(e->msg, sizeof e->msg, "\"resize_mode\": 3 (latent upscale) is not supported by this server (0 just resize, "
                                        "1 crop and resize, 2 resize and fill)");
        return false;
    }
    static const rsz_mode modes[3] = {RSZ_JUST, RSZ_CROP, RSZ_FILL}; // the web UI's numbering
    r->strength = (float)strength, r->resize_mode = (int)mode, r->mask_blur = (int)blur, r->invert = invert == 1;
    size_t n = (size_t)r->width * r->height;
    json_t *mv = json_object_get(j, "mask");
    png_image img = {0}, mask = {0};
    sim_err err;
    bool ok = get_picture(json_array_get(inits, 0), "\"init_images\"[0]", &img, r->init_sha, e) &&
              (!mv || json_is_null(mv) || get_picture(mv, "\"mask\"", &mask, r->mask_sha, e));
    if (ok && !((r->init = mem_alloc(3 * n * sizeof *r->init)) && (!mask.rgba || (r->mask = mem_alloc(n * sizeof *r->mask))))) {
        snprintf(e->msg, sizeof e->msg, "out of memory");
        ok = false;
    }
    if (ok && (rsz_rgba8(img.rgba, img.w, img.h, rsz_fit(img.w, img.h, r->width, r->height, modes[mode]), RSZ_LANCZOS3, r->init,
                         r->width, r->height, &err) != SIM_OK ||
               (r->mask && rsz_rgba8_luma(mask.rgba, mask.w, mask.h, rsz_fit(mask.w, mask.h, r->width, r->height, modes[mode]),
                                          RSZ_AREA, r->mask, r->width, r->height, &err) != SIM_OK))) {
        snprintf(e->msg, sizeof e->msg, "%s", err.msg);
        ok = false;
    }
    if (ok && r->mask && r->invert)
        for (size_t i = 0; i < n; i++) r->mask[i] = 1 - r->mask[i];
    png_image_free(&img);
    png_image_free(&mask);
    return ok;
}

// --- jobs --------------------------------------------------------------------------------------------------

// Appends "event: name\ndata: json\n\n" (consumes data); under ia->mu.
static void emit_locked(ijob *jb, const char *name, json_t *data) {
    char *text = data ? json_dumps(data, JSON_COMPACT) : NULL;
    json_decref(data);
    if (!jb->sse || !text) {
        free(text);
        return;
    }
    sb_printf(&jb->ev, "event: %s\ndata: %s\n\n", name, text);
    free(text);
    pthread_cond_broadcast(&jb->ia->job_cv);
}

static void job_unref_locked(ijob *jb) {
    if (--jb->refs > 0) return;
    for (int i = 0; jb->img && i < jb->rq.n_images; i++) mem_free(jb->img[i].png);
    mem_free(jb->img);
    ireq_free(&jb->rq);
    sb_free(&jb->ev);
    mem_free(jb);
}

static void job_unref(ijob *jb) {
    iapi *ia = jb->ia;
    pthread_mutex_lock(&ia->mu);
    job_unref_locked(jb);
    pthread_mutex_unlock(&ia->mu);
}

// Tells each waiting stream where it stands (1: next to start); under mu.
static void emit_positions_locked(iapi *ia) {
    int pos = 1;
    for (ijob *q = ia->head; q; q = q->next, pos++)
        emit_locked(q, "queued", json_pack("{s:i, s:b}", "position", pos, "running", ia->running != NULL));
}

static void queue_remove_locked(iapi *ia, ijob *jb) {
    for (ijob **p = &ia->head; *p; p = &(*p)->next)
        if (*p == jb) {
            *p = jb->next;
            if (ia->tail == jb) {
                ia->tail = NULL;
                for (ijob *q = ia->head; q; q = q->next) ia->tail = q;
            }
            ia->n_queued--;
            jb->next = NULL;
            return;
        }
}

// The job's end, under mu: the final event, waiters woken.
static void finish_locked(ijob *jb, sim_status st, const char *msg) {
    iapi *ia = jb->ia;
    jb->status = st;
    snprintf(jb->msg, sizeof jb->msg, "%s", msg ? msg : "");
    jb->state = JOB_FINISHED;
    if (st == SIM_OK || st == SIM_ERR_ABORTED) {
        int n_cached = 0;
        for (int i = 0; i < jb->rq.n_images; i++) n_cached += jb->img[i].ready && jb->img[i].cached;
        emit_locked(jb, "done", json_pack("{s:i, s:i, s:b, s:f}", "images", jb->n_ready, "cached", n_cached, "interrupted",
                                          st == SIM_ERR_ABORTED, "seconds", jb->seconds));
    } else
        emit_locked(jb, "error", json_pack("{s:s, s:s}", "message", jb->msg, "type",
                                           st == SIM_ERR_BUSY ? "unavailable" : "server_error"));
    pthread_cond_broadcast(&ia->job_cv);
}

// Image i is ready: counted, and streamed as an event.
static void image_ready(ijob *jb, int i) {
    iimage *im = &jb->img[i];
    json_t *ev = NULL;
    if (jb->sse) {
        char *info = infotext(jb->ia, &jb->rq, i);
        ev = json_pack("{s:i, s:I, s:o, s:s?, s:b}", "index", i, "seed", (json_int_t)im->seed, "png",
                       json_base64(im->png, im->len), "parameters", info, "cached", im->cached);
        mem_free(info);
    }
    pthread_mutex_lock(&jb->ia->mu);
    im->ready = true;
    jb->n_ready++;
    if (ev) emit_locked(jb, "image", ev);
    pthread_mutex_unlock(&jb->ia->mu);
}

// Fills image i from the cache when it is there.
static bool fetch_cached(iapi *ia, ijob *jb, int i) {
    iimage *im = &jb->img[i];
    if (!(im->png = cache_get(&ia->cache, im->key, &im->len))) return false;
    im->cached = true;
    return true;
}

// --- the worker --------------------------------------------------------------------------------------------

typedef struct step_ctx {
    iapi *ia;
    ijob *jb;
    int image;
    uint8_t *rgb; // (h, w, 3) preview pixels
} step_ctx;

static bool on_step(void *ud, int step, int steps, double seconds, const float *latent) {
    step_ctx *sc = ud;
    iapi *ia = sc->ia;
    ijob *jb = sc->jb;
    pthread_mutex_lock(&ia->mu);
    ia->p_step = step, ia->p_steps = steps;
    bool stop = jb->cancel || jb->interrupted || ia->stopping;
    bool in_event = jb->rq.preview_every && step % jb->rq.preview_every == 0;
    bool render = !stop && !jb->no_preview && (in_event || ia->want_preview);
    pthread_mutex_unlock(&ia->mu);
    uint8_t *png = NULL;
    size_t len = 0;
    if (render) {
        int f = sd_vae_factor(ia->m);
        sim_err err;
        if (sd_preview(ia->m, &ia->oc, latent, jb->rq.height / f, jb->rq.width / f, sc->rgb, &err) != SIM_OK ||
            png_encode(sc->rgb, jb->rq.width, jb->rq.height, 3, NULL, 0, &png, &len, &err) != SIM_OK) {
            ia_log(ia, "image preview: %s", err.msg);
            png = NULL;
            jb->no_preview = true; // only the worker reads it
        }
    }
    json_t *ev = jb->sse ? json_pack("{s:i, s:i, s:i, s:f}", "image", sc->image, "step", step, "steps", steps, "seconds", seconds)
                         : NULL;
    if (ev && in_event && png) json_object_set_new(ev, "preview", json_base64(png, len));
    pthread_mutex_lock(&ia->mu);
    if (png) {
        mem_free(ia->preview);
        ia->preview = png, ia->preview_len = len;
        ia->want_preview = false;
    }
    if (ev) emit_locked(jb, "step", ev);
    pthread_mutex_unlock(&ia->mu);
    return !stop;
}

// Generates image i of the job into its PNG.
static sim_status generate(iapi *ia, ijob *jb, int i, float *pix, uint8_t *rgb, sim_err *err) {
    const ireq *r = &jb->rq;
    iimage *im = &jb->img[i];
    step_ctx sc = {ia, jb, i, rgb};
    sd_params p = sd_defaults();
    p.prompt = r->prompt, p.negative = r->negative, p.width = r->width, p.height = r->height, p.steps = r->steps;
    p.cfg = r->cfg, p.sampler = r->sampler->kind, p.karras = r->karras, p.seed = im->seed, p.clip_skip = r->clip_skip;
    p.subseed = r->subseed + (uint64_t)i, p.subseed_strength = r->subseed_strength;
    p.init_image = r->init, p.strength = r->strength, p.mask = r->mask, p.mask_blur = (float)r->mask_blur;
    p.lora_dir = ia->lora_dir, p.on_step = on_step, p.ud = &sc;
    sim_status st = sd_generate(ia->m, &ia->oc, &p, pix, NULL, err);
    if (st != SIM_OK) return st;
    sd_image_bytes(pix, r->width, r->height, 3, rgb);
    char *info = infotext(ia, r, i);
    if (!info) return err_set(err, SIM_ERR_NOMEM, "out of memory");
    png_text t = {"parameters", info};
    st = png_encode(rgb, r->width, r->height, 3, &t, 1, &im->png, &im->len, err);
    mem_free(info);
    if (st == SIM_OK) cache_put(ia, im->key, im->png, im->len);
    return st;
}

static void run_job(iapi *ia, ijob *jb) {
    const ireq *r = &jb->rq;
    sim_err err = {0};
    sim_status st = SIM_OK;
    size_t n = (size_t)r->width * r->height;
    float *pix = NULL;
    uint8_t *rgb = NULL;
    for (int i = 0; i < r->n_images && st == SIM_OK; i++) {
        pthread_mutex_lock(&ia->mu);
        ia->p_image = i, ia->p_step = 0, ia->p_steps = r->steps;
        bool stop = jb->cancel || jb->interrupted || ia->stopping;
        pthread_mutex_unlock(&ia->mu);
        if (stop) {
            st = err_set(&err, SIM_ERR_ABORTED, "stopped before image %d of %d", i + 1, r->n_images);
            break;
        }
        if (jb->img[i].png || fetch_cached(ia, jb, i)) {
            image_ready(jb, i);
            continue;
        }
        if (!pix && (!(pix = mem_alloc(3 * n * sizeof *pix)) || !(rgb = mem_alloc(3 * n)))) {
            st = err_set(&err, SIM_ERR_NOMEM, "out of memory for a %d x %d image", r->width, r->height);
            break;
        }
        if ((st = generate(ia, jb, i, pix, rgb, &err)) == SIM_OK) image_ready(jb, i);
    }
    mem_free(pix);
    mem_free(rgb);
    pthread_mutex_lock(&ia->mu);
    jb->seconds = (double)(time_ns() - jb->t0) / 1e9;
    finish_locked(jb, st, err.msg);
    ia->running = NULL; // progress says idle as soon as the answer is out
    pthread_mutex_unlock(&ia->mu);
}

// The wall clock as "YYYYMMDDhhmmss" (UTC).
static void wall_stamp(char out[16]) {
    time_t now = time(NULL);
    struct tm tm;
    strftime(out, 16, "%Y%m%d%H%M%S", gmtime_r(&now, &tm));
}

static void *worker_main(void *ud) {
    iapi *ia = ud;
    pthread_mutex_lock(&ia->mu);
    for (;;) {
        while (!ia->head && !ia->stopping) pthread_cond_wait(&ia->work_cv, &ia->mu);
        if (ia->stopping) break;
        ijob *jb = ia->head;
        queue_remove_locked(ia, jb);
        ia->running = jb;
        jb->state = JOB_RUNNING;
        jb->t0 = ia->p_t0 = time_ns();
        wall_stamp(jb->stamp);
        ia->p_image = ia->p_step = 0, ia->p_steps = jb->rq.steps;
        mem_free(ia->preview);
        ia->preview = NULL, ia->preview_len = 0;
        emit_locked(jb, "start", json_pack("{s:i, s:i}", "images", jb->rq.n_images, "steps", jb->rq.steps));
        emit_positions_locked(ia);
        pthread_mutex_unlock(&ia->mu);
        run_job(ia, jb);
        pthread_mutex_lock(&ia->mu);
        job_unref_locked(jb);
    }
    pthread_mutex_unlock(&ia->mu);
    return NULL;
}

// Queues a job (the queue takes a reference); false when full or stopping.
static bool enqueue(iapi *ia, ijob *jb, char *msg, size_t cap) {
    pthread_mutex_lock(&ia->mu);
    bool ok = false;
    if (ia->stopping) snprintf(msg, cap, "the server is shutting down");
    else if (ia->n_queued >= ia->cfg.max_queue && (ia->running || ia->head))
        snprintf(msg, cap, "the image queue is full: %d request%s waiting (--image-queue %d); try again later",
                 ia->n_queued, ia->n_queued == 1 ? " is" : "s are", ia->cfg.max_queue);
    else {
        ok = true;
        jb->refs++;
        jb->state = JOB_QUEUED;
        if (ia->tail) ia->tail->next = jb;
        else ia->head = jb;
        ia->tail = jb;
        ia->n_queued++;
        emit_locked(jb, "queued", json_pack("{s:i, s:b}", "position", ia->n_queued, "running", ia->running != NULL));
        pthread_cond_signal(&ia->work_cv);
    }
    pthread_mutex_unlock(&ia->mu);
    return ok;
}

// The client of a job left: a waiting job leaves the queue, a running one stops at its next step.
static void cancel_locked(iapi *ia, ijob *jb) {
    jb->cancel = true;
    if (jb->state == JOB_QUEUED) {
        queue_remove_locked(ia, jb);
        finish_locked(jb, SIM_ERR_ABORTED, "the client left");
        emit_positions_locked(ia);
        job_unref_locked(jb); // the queue's reference
    }
}

// --- routes ---------------------------------------------------------------------------------------------

// The body as a JSON object, or NULL with a message.
static json_t *body_json(const http_req *rq, perr *e) {
    json_error_t je;
    json_t *j = json_loadb(rq->body, rq->body_len, JSON_REJECT_DUPLICATES, &je);
    if (!j) snprintf(e->msg, sizeof e->msg, "invalid JSON at line %d, column %d: %s", je.line, je.column, je.text);
    else if (!json_is_object(j)) {
        snprintf(e->msg, sizeof e->msg, "the request body must be a JSON object, got %s", json_type_name(j));
        json_decref(j);
        j = NULL;
    }
    return j;
}

// A new job from a request body, its seeds and cache keys set and what the
// cache holds loaded; NULL after answering 400 (or 500).
static ijob *new_job(iapi *ia, const http_req *rq, http_conn *c, bool native, bool img2img, json_t **body) {
    perr e = {{0}};
    json_t *j = body_json(rq, &e);
    ijob *jb = j ? mem_calloc(1, sizeof *jb) : NULL;
    if (j && !jb) snprintf(e.msg, sizeof e.msg, "out of memory");
    if (jb) {
        jb->ia = ia, jb->c = c, jb->sse = native, jb->img2img = img2img, jb->refs = 1;
        bool init = img2img || (native && json_object_get(j, "init_images"));
        jb->img2img = init;
        if (!parse_txt2img(ia, j, native, &jb->rq, &e) || (init && !parse_img2img(j, &jb->rq, &e))) {
            ireq_free(&jb->rq);
            mem_free(jb);
            jb = NULL;
        }
    }
    if (!jb) {
        json_decref(j);
        fail(c, native, strcmp(e.msg, "out of memory") == 0 ? 500 : 400, e.msg);
        return NULL;
    }
    bool ok = (jb->img = mem_calloc((size_t)jb->rq.n_images, sizeof *jb->img)) != NULL;
    for (int i = 0; ok && i < jb->rq.n_images; i++) {
        jb->img[i].seed = jb->rq.seed + (uint64_t)i;
        ok = cache_key(ia, &jb->rq, i, jb->img[i].key);
    }
    if (!ok) {
        json_decref(j);
        mem_free(jb->img);
        ireq_free(&jb->rq);
        mem_free(jb);
        fail(c, native, 500, "out of memory");
        return NULL;
    }
    *body = j;
    return jb;
}

// Whether every image came from the cache (then the job is finished here).
static bool all_cached(iapi *ia, ijob *jb) {
    int hits = 0;
    for (int i = 0; i < jb->rq.n_images; i++) hits += fetch_cached(ia, jb, i);
    if (hits < jb->rq.n_images) return false;
    jb->t0 = time_ns();
    for (int i = 0; i < jb->rq.n_images; i++) image_ready(jb, i);
    pthread_mutex_lock(&ia->mu);
    jb->seconds = (double)(time_ns() - jb->t0) / 1e9;
    finish_locked(jb, SIM_OK, NULL);
    pthread_mutex_unlock(&ia->mu);
    return true;
}

static const char *scheduler_label(const ireq *r) { return r->karras ? "Karras" : "Automatic"; }

// The web UI's answer: images, the parameters (the request with the
// defaults filled in) and info, a JSON text.
static void respond_images(iapi *ia, ijob *jb, json_t *body) {
    const ireq *r = &jb->rq;
    json_t *images = json_array(), *seeds = json_array(), *texts = json_array(), *cached = json_array();
    json_t *prompts = json_array(), *negs = json_array(), *subseeds = json_array();
    for (int i = 0; i < r->n_images; i++) {
        const iimage *im = &jb->img[i];
        if (!im->ready) continue;
        char *info = infotext(ia, r, i);
        if (r->send_images) json_array_append_new(images, json_base64(im->png, im->len));
        json_array_append_new(seeds, json_integer((json_int_t)im->seed));
        json_array_append_new(texts, info ? json_string(info) : json_null());
        json_array_append_new(cached, json_boolean(im->cached));
        json_array_append_new(prompts, json_string(r->prompt));
        json_array_append_new(negs, json_string(r->negative));
        json_array_append_new(subseeds, json_integer((json_int_t)(r->subseed + (uint64_t)i)));
        mem_free(info);
    }
    if (!jb->stamp[0]) wall_stamp(jb->stamp); // answered from the cache
    json_t *info = json_pack("{s:s, s:o, s:s, s:o, s:I, s:o, s:i, s:i, s:s, s:s, s:f, s:i, s:i, s:i, s:s, s:s, s:i, s:i, "
                             "s:o, s:s, s:s, s:o, s:b}",
                             "prompt", r->prompt, "all_prompts", prompts, "negative_prompt", r->negative,
                             "all_negative_prompts", negs, "seed", (json_int_t)r->seed, "all_seeds", seeds, "width",
                             r->width, "height", r->height, "sampler_name", r->sampler->name, "scheduler",
                             scheduler_label(r), "cfg_scale", (double)r->cfg, "steps", r->steps, "batch_size",
                             r->batch_size, "n_iter", r->n_iter, "sd_model_name", ia->model_name, "sd_model_hash",
                             ia->sha, "clip_skip", r->clip_skip + 1, "index_of_first_image", 0, "infotexts", texts,
                             "job_timestamp", jb->stamp, "version", "simularity " SIM_VERSION_STRING, "cached", cached,
                             "interrupted", jb->status == SIM_ERR_ABORTED);
    json_object_set_new(info, "subseed", json_integer((json_int_t)r->subseed));
    json_object_set_new(info, "all_subseeds", subseeds);
    json_object_set_new(info, "subseed_strength", json_real(r->subseed_strength));
    json_object_set_new(info, "denoising_strength", r->init ? json_real(r->strength) : json_null());
    char *info_text = info ? json_dumps(info, JSON_COMPACT) : NULL;
    json_decref(info);
    // The parameters: the request as given, with what was used where it said nothing.
    json_object_set_new(body, "prompt", json_string(r->prompt));
    json_object_set_new(body, "negative_prompt", json_string(r->negative));
    json_object_set_new(body, "seed", json_integer(r->seed_asked));
    json_object_set_new(body, "sampler_name", json_string(r->sampler->name));
    json_object_set_new(body, "scheduler", json_string(scheduler_label(r)));
    json_object_set_new(body, "steps", json_integer(r->steps));
    json_object_set_new(body, "cfg_scale", json_real(r->cfg));
    json_object_set_new(body, "width", json_integer(r->width));
    json_object_set_new(body, "height", json_integer(r->height));
    json_object_set_new(body, "batch_size", json_integer(r->batch_size));
    json_object_set_new(body, "n_iter", json_integer(r->n_iter));
    json_object_set_new(body, "subseed", json_integer(r->subseed_asked));
    json_object_set_new(body, "subseed_strength", json_real(r->subseed_strength));
    if (r->init) { // the pictures are not sent back (the web UI's default)
        json_object_set_new(body, "init_images", json_null());
        json_object_set_new(body, "mask", json_null());
        json_object_set_new(body, "denoising_strength", json_real(r->strength));
        json_object_set_new(body, "resize_mode", json_integer(r->resize_mode));
        json_object_set_new(body, "mask_blur", json_integer(r->mask_blur));
        json_object_set_new(body, "inpainting_mask_invert", json_integer(r->invert));
    }
    json_t *out = info_text ? json_pack("{s:o, s:O, s:s}", "images", images, "parameters", body, "info", info_text) : NULL;
    if (!out) json_decref(images);
    free(info_text);
    api_respond_json(jb->c, 200, out);
}

static void h_generate(iapi *ia, const http_req *rq, http_conn *c, bool img2img) {
    json_t *body = NULL;
    ijob *jb = new_job(ia, rq, c, false, img2img, &body);
    if (!jb) return;
    char msg[300];
    if (!all_cached(ia, jb) && !enqueue(ia, jb, msg, sizeof msg)) {
        fail(c, false, 503, msg);
        json_decref(body);
        job_unref(jb);
        return;
    }
    pthread_mutex_lock(&ia->mu);
    while (jb->state != JOB_FINISHED) {
        struct timespec ts;
        clock_gettime(CLOCK_REALTIME, &ts);
        ts.tv_nsec += 250 * 1000000L;
        if (ts.tv_nsec >= 1000000000L) ts.tv_sec++, ts.tv_nsec -= 1000000000L;
        pthread_cond_timedwait(&ia->job_cv, &ia->mu, &ts);
        if (jb->state != JOB_FINISHED && !jb->cancel) {
            pthread_mutex_unlock(&ia->mu);
            bool gone = http_client_gone(c);
            pthread_mutex_lock(&ia->mu);
            if (gone) cancel_locked(ia, jb);
        }
    }
    sim_status st = jb->status;
    bool cancelled = jb->cancel;
    pthread_mutex_unlock(&ia->mu);
    if (st == SIM_OK || (st == SIM_ERR_ABORTED && !cancelled)) respond_images(ia, jb, body);
    else fail(c, false, st == SIM_ERR_BUSY ? 503 : st == SIM_ERR_ABORTED ? 499 : 500, jb->msg);
    json_decref(body);
    job_unref(jb);
}

static void h_txt2img(void *ud, const http_req *rq, http_conn *c) { h_generate(ud, rq, c, false); }
static void h_img2img(void *ud, const http_req *rq, http_conn *c) { h_generate(ud, rq, c, true); }

// --- the native stream ---

static size_t job_read(void *ud, char *buf, size_t cap) {
    ijob *jb = ud;
    iapi *ia = jb->ia;
    pthread_mutex_lock(&ia->mu);
    while (jb->ev_off == jb->ev.n && jb->state != JOB_FINISHED) {
        struct timespec ts;
        clock_gettime(CLOCK_REALTIME, &ts);
        ts.tv_sec += 1;
        pthread_cond_timedwait(&ia->job_cv, &ia->mu, &ts);
        if (jb->ev_off == jb->ev.n && jb->state != JOB_FINISHED) {
            pthread_mutex_unlock(&ia->mu);
            bool gone = http_client_gone(jb->c);
            pthread_mutex_lock(&ia->mu);
            if (gone) {
                pthread_mutex_unlock(&ia->mu);
                return 0; // done(ud, true) follows
            }
        }
    }
    size_t k = MIN(jb->ev.n - jb->ev_off, cap);
    if (k) memcpy(buf, jb->ev.s + jb->ev_off, k);
    jb->ev_off += k;
    pthread_mutex_unlock(&ia->mu);
    return k;
}

static void job_done(void *ud, bool gone) {
    ijob *jb = ud;
    iapi *ia = jb->ia;
    pthread_mutex_lock(&ia->mu);
    if (jb->state != JOB_FINISHED) cancel_locked(ia, jb);
    job_unref_locked(jb);
    pthread_mutex_unlock(&ia->mu);
}

static void h_image(void *ud, const http_req *rq, http_conn *c) {
    iapi *ia = ud;
    json_t *body = NULL;
    ijob *jb = new_job(ia, rq, c, true, false, &body);
    if (!jb) return;
    json_decref(body);
    char msg[300];
    if (!all_cached(ia, jb) && !enqueue(ia, jb, msg, sizeof msg)) {
        fail(c, true, 503, msg);
        job_unref(jb);
        return;
    }
    http_add_header(c, "Cache-Control", "no-cache");
    http_respond_stream(c, 200, "text/event-stream", job_read, job_done, jb);
}

// --- the other web UI routes ---

// The web UI's title of a checkpoint: "file name [short hash]".
static void model_title(const iapi *ia, char *buf, size_t cap) {
    const char *slash = strrchr(ia->model_dir, '/');
    snprintf(buf, cap, "%s [%.10s]", slash ? slash + 1 : ia->model_dir, ia->sha);
}

static void h_models(void *ud, const http_req *rq, http_conn *c) {
    iapi *ia = ud;
    char title[600];
    model_title(ia, title, sizeof title);
    api_respond_json(c, 200, json_pack("[{s:s, s:s, s:s#, s:s, s:s, s:n}]", "title", title, "model_name", ia->model_name,
                                        "hash", ia->sha, (size_t)10, "sha256", ia->sha, "filename", ia->model_dir,
                                        "config"));
}

static void h_options(void *ud, const http_req *rq, http_conn *c) {
    iapi *ia = ud;
    char title[600];
    model_title(ia, title, sizeof title);
    api_respond_json(c, 200, json_pack("{s:s, s:s, s:b}", "sd_model_checkpoint", title, "sd_checkpoint_hash", ia->sha,
                                        "live_previews_enable", true));
}

static void h_samplers(void *ud, const http_req *rq, http_conn *c) {
    json_t *a = json_array();
    for (size_t i = 0; i < ARRAY_LEN(SAMPLERS); i++) {
        json_t *al = json_array();
        for (int k = 0; k < 3 && SAMPLERS[i].aliases[k]; k++) json_array_append_new(al, json_string(SAMPLERS[i].aliases[k]));
        json_t *opt = SAMPLERS[i].base >= 0 ? json_pack("{s:s}", "scheduler", "karras") : json_object();
        json_array_append_new(a, json_pack("{s:s, s:o, s:o}", "name", SAMPLERS[i].name, "aliases", al, "options", opt));
    }
    api_respond_json(c, 200, a);
}

static void h_schedulers(void *ud, const http_req *rq, http_conn *c) {
    api_respond_json(c, 200, json_pack("[{s:s, s:s, s:n, s:f, s:b}, {s:s, s:s, s:n, s:f, s:b}]", "name", "automatic", "label",
                                        "Automatic", "aliases", "default_rho", -1.0, "need_inner_model", false, "name",
                                        "karras", "label", "Karras", "aliases", "default_rho", 7.0, "need_inner_model", false));
}

// "name=value" in a query string (value "true" or "1").
static bool query_flag(const char *query, const char *name) {
    size_t n = strlen(name);
    for (const char *p = query; p && *p; p = strchr(p, '&') ? strchr(p, '&') + 1 : NULL)
        if (strncmp(p, name, n) == 0 && p[n] == '=')
            return strncmp(p + n + 1, "true", 4) == 0 || strncmp(p + n + 1, "1", 1) == 0;
    return false;
}

static void h_progress(void *ud, const http_req *rq, http_conn *c) {
    iapi *ia = ud;
    bool skip = query_flag(rq->query, "skip_current_image");
    pthread_mutex_lock(&ia->mu);
    ijob *jb = ia->running;
    double progress = 0, eta = 0;
    char text[100] = "";
    json_t *preview = json_null();
    if (jb) {
        progress = (ia->p_image + (ia->p_steps ? (double)ia->p_step / ia->p_steps : 0)) / jb->rq.n_images;
        double elapsed = (double)(time_ns() - ia->p_t0) / 1e9;
        eta = progress > 0 ? elapsed / progress - elapsed : 0;
        snprintf(text, sizeof text, "image %d of %d, step %d of %d", ia->p_image + 1, jb->rq.n_images, ia->p_step,
                 ia->p_steps);
        if (!skip) {
            ia->want_preview = true;
            if (ia->preview) {
                json_decref(preview);
                preview = json_base64(ia->preview, ia->preview_len);
            }
        }
    }
    json_t *state = json_pack("{s:b, s:b, s:b, s:s, s:i, s:s, s:i, s:i, s:i, s:i}", "skipped", false, "interrupted",
                              jb && jb->interrupted, "stopping_generation", false, "job",
                              jb ? (jb->img2img ? "img2img" : "txt2img") : "", "job_count", jb ? jb->rq.n_images : 0,
                              "job_timestamp", jb ? jb->stamp : "0", "job_no", jb ? ia->p_image : 0, "sampling_step",
                              jb ? ia->p_step : 0, "sampling_steps", jb ? ia->p_steps : 0, "queued", ia->n_queued);
    pthread_mutex_unlock(&ia->mu);
    api_respond_json(c, 200, json_pack("{s:f, s:f, s:o, s:o, s:s?}", "progress", progress, "eta_relative", eta, "state", state,
                                        "current_image", preview, "textinfo", jb ? text : NULL));
}

static void h_interrupt(void *ud, const http_req *rq, http_conn *c) {
    iapi *ia = ud;
    pthread_mutex_lock(&ia->mu);
    bool running = ia->running != NULL;
    if (running) ia->running->interrupted = true;
    pthread_mutex_unlock(&ia->mu);
    api_respond_json(c, 200, json_pack("{s:b}", "interrupted", running));
}

// --- lifetime ---------------------------------------------------------------------------------------------

iapi_config iapi_default_config(void) { return (iapi_config){.max_queue = 8}; }

// The sha256 of a whole file into d.
static sim_status hash_file(const char *path, uint8_t d[SHA256_SIZE], sim_err *err) {
    file_map fm;
    if (file_map_open(&fm, path, err) != SIM_OK) return err->code;
    sha256(fm.data, fm.size, d);
    file_map_close(&fm);
    return SIM_OK;
}

// ia->sha: a single-file model's sha256, or a folder's list of its files' (image_api.h).
static sim_status hash_model(iapi *ia, bool single, sim_err *err) {
    uint8_t d[SHA256_SIZE];
    if (single) {
        if (hash_file(ia->model_dir, d, err) != SIM_OK) return err->code;
        sha256_hex(d, ia->sha);
        return SIM_OK;
    }
    sha256_ctx all;
    sha256_init(&all);
    for (size_t i = 0; i < ARRAY_LEN(MODEL_FILES); i++) {
        char path[4200], hex[SHA256_HEX_SIZE], line[4300];
        snprintf(path, sizeof path, "%s/%s", ia->model_dir, MODEL_FILES[i]);
        struct stat sb;
        if (stat(path, &sb) != 0) continue;
        if (hash_file(path, d, err) != SIM_OK) return err->code;
        sha256_hex(d, hex);
        snprintf(line, sizeof line, "%s  %s\n", hex, MODEL_FILES[i]);
        sha256_update(&all, line, strlen(line));
    }
    sha256_final(&all, d);
    sha256_hex(d, ia->sha);
    return SIM_OK;
}

// The components' configurations (the U-Net's levels fix the size multiple).
static sim_status read_config(const char *path, bool single, dif_pipeline *p, sim_err *err) {
    if (!single) return dif_open(p, path, err);
    ckpt *c;
    if (ckpt_open(&c, path, NULL, err) != SIM_OK) return err->code;
    *p = c->cfg;
    ckpt_close(c);
    return SIM_OK;
}

sim_status iapi_new(iapi **out, const iapi_config *cfg, sim_err *err) {
    *out = NULL;
    if (!cfg->model_dir) return err_set(err, SIM_ERR_ARG, "no image model folder given");
    if (cfg->max_queue < 0 || cfg->max_queue > 1024)
        return err_set(err, SIM_ERR_ARG, "image queue of %d (0..1024)", cfg->max_queue);
    if (cfg->n_threads < 0 || cfg->n_threads > POOL_MAX_THREADS)
        return err_set(err, SIM_ERR_ARG, "%d image threads (0..%d)", cfg->n_threads, POOL_MAX_THREADS);
    iapi *ia = mem_calloc(1, sizeof *ia);
    if (!ia) return err_set(err, SIM_ERR_NOMEM, "out of memory");
    ia->cfg = *cfg;
    pthread_mutex_init(&ia->mu, NULL);
    pthread_mutex_init(&ia->cache.mu, NULL);
    pthread_cond_init(&ia->work_cv, NULL);
    pthread_cond_init(&ia->job_cv, NULL);
    size_t k = strlen(cfg->model_dir);
    while (k > 1 && cfg->model_dir[k - 1] == '/') k--; // "dir/" names the model "dir"
    ia->model_dir = mem_strndup(cfg->model_dir, k);
    ia->taesd = cfg->taesd ? mem_strdup(cfg->taesd) : NULL;
    ia->cache.dir = cfg->cache_dir ? mem_strdup(cfg->cache_dir) : NULL;
    ia->lora_dir = cfg->lora_dir ? mem_strdup(cfg->lora_dir) : NULL;
    sim_status st = ia->model_dir && (!cfg->taesd || ia->taesd) && (!cfg->cache_dir || ia->cache.dir) &&
                            (!cfg->lora_dir || ia->lora_dir)
                        ? SIM_OK
                        : err_set(err, SIM_ERR_NOMEM, "out of memory");
    // A file's name is its stem ("v1-5.safetensors": "v1-5"), a folder's its name.
    struct stat msb;
    bool single = stat(ia->model_dir, &msb) == 0 && S_ISREG(msb.st_mode);
    if (st == SIM_OK) {
        const char *base = strrchr(ia->model_dir, '/') ? strrchr(ia->model_dir, '/') + 1 : ia->model_dir;
        const char *dot = single ? strrchr(base, '.') : NULL;
        if (!(ia->model_name = mem_strndup(base, dot && dot > base ? (size_t)(dot - base) : strlen(base))))
            st = err_set(err, SIM_ERR_NOMEM, "out of memory");
    }
    if (st == SIM_OK) st = sd_load(&ia->m, ia->model_dir, err);
    if (st == SIM_OK && ia->taesd) st = sd_attach_taesd(ia->m, ia->taesd, err);
    dif_pipeline pipe;
    if (st == SIM_OK) st = read_config(ia->model_dir, single, &pipe, err);
    if (st == SIM_OK) {
        ia->size_step = sd_vae_factor(ia->m) << (pipe.unet.n_blocks - 1);
        ia->clip_layers = pipe.clip.n_layers;
        st = hash_model(ia, single, err);
    }
    if (st == SIM_OK && ia->cache.dir) {
        struct stat sb;
        if (mkdir(ia->cache.dir, 0777) != 0 && errno != EEXIST)
            st = err_set(err, SIM_ERR_IO, "image cache %s: cannot create it: %s", ia->cache.dir, strerror(errno));
        else if (stat(ia->cache.dir, &sb) != 0 || !S_ISDIR(sb.st_mode))
            st = err_set(err, SIM_ERR_IO, "image cache %s: not a folder", ia->cache.dir);
        else if (access(ia->cache.dir, W_OK | X_OK) != 0)
            st = err_set(err, SIM_ERR_IO, "image cache %s: not writable: %s", ia->cache.dir, strerror(errno));
    }
    int n_threads = cfg->n_threads ? cfg->n_threads : (int)sysconf(_SC_NPROCESSORS_ONLN);
    if (st == SIM_OK) st = pool_new(&ia->pl, MAX(1, n_threads), err);
    if (st == SIM_OK) {
        ia->oc = (op_ctx){.pool = ia->pl, .k = kern_get(KERN_BEST)};
        if (pthread_create(&ia->worker, NULL, worker_main, ia) != 0)
            st = err_set(err, SIM_ERR_NOMEM, "cannot start the image worker thread");
        else
            ia->worker_started = true;
    }
    if (st != SIM_OK) {
        iapi_free(ia);
        return st;
    }
    *out = ia;
    return SIM_OK;
}

const char *iapi_model_name(const iapi *ia) { return ia->model_name; }
const char *iapi_model_sha256(const iapi *ia) { return ia->sha; }
int iapi_n_threads(const iapi *ia) { return pool_size(ia->pl); }

void iapi_shutdown(iapi *ia) {
    if (!ia) return;
    pthread_mutex_lock(&ia->mu);
    ia->stopping = true;
    while (ia->head) {
        ijob *jb = ia->head;
        queue_remove_locked(ia, jb);
        finish_locked(jb, SIM_ERR_BUSY, "the server is shutting down");
        job_unref_locked(jb);
    }
    pthread_cond_broadcast(&ia->work_cv);
    pthread_mutex_unlock(&ia->mu);
}

void iapi_free(iapi *ia) {
    if (!ia) return;
    iapi_shutdown(ia);
    if (ia->worker_started) pthread_join(ia->worker, NULL);
    sd_free(ia->m);
    pool_free(ia->pl);
    cache_free(&ia->cache);
    mem_free(ia->preview);
    mem_free(ia->model_dir);
    mem_free(ia->model_name);
    mem_free(ia->taesd);
    mem_free(ia->cache.dir);
    mem_free(ia->lora_dir);
    pthread_mutex_destroy(&ia->mu);
    pthread_cond_destroy(&ia->work_cv);
    pthread_cond_destroy(&ia->job_cv);
    mem_free(ia);
}

int iapi_routes(iapi *ia, http_route *out) {
    const http_route r[] = {
        {"POST", "/sdapi/v1/txt2img", h_txt2img, ia, false, false},
        {"POST", "/sdapi/v1/img2img", h_img2img, ia, false, false},
        {"GET", "/sdapi/v1/sd-models", h_models, ia, false, false},
        {"GET", "/sdapi/v1/samplers", h_samplers, ia, false, false},
        {"GET", "/sdapi/v1/schedulers", h_schedulers, ia, false, false},
        {"GET", "/sdapi/v1/options", h_options, ia, false, false},
        {"GET", "/sdapi/v1/progress", h_progress, ia, false, false},
        {"POST", "/sdapi/v1/interrupt", h_interrupt, ia, false, false},
        {"POST", "/api/image", h_image, ia, false, false},
    };
    _Static_assert(ARRAY_LEN(r) == IAPI_N_ROUTES, "IAPI_N_ROUTES");
    memcpy(out, r, sizeof r);
    return IAPI_N_ROUTES;
}
