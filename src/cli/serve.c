// serve.c — `simularity serve`: the HTTP server (OpenAI-compatible and
// native API) on one model, with continuous batching over --slots slots;
// with --image-model, image generation too (server/image_api.h) on its own
// queue and threads.
//
// Startup prints one line "simularity: listening on http://HOST:PORT ..."
// to stderr (with --port 0 the port is the one the system chose). SIGINT or
// SIGTERM stops gracefully: no new requests, running ones end (streams get
// their final event), then the process exits 0.
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "base/file.h"
#include "cli/cli.h"
#include "server/api.h"
#include "server/http.h"
#include "server/image_api.h"
#include "server/loom_api.h"
#include "server/sched.h"
#include "server/story_api.h"
#include "server/web.h"

#define MAX_KEYS 1024

// Reads API keys, one per line (blank lines and # comments skipped).
static void serve_log(void *ud, const char *msg) { fprintf(stderr, "simularity: %s\n", msg); }

static int read_keys(const char *path, char **buf, const char **keys, int *n) {
    size_t len;
    sim_err err;
    if (file_read_all(path, 1 << 20, buf, &len, &err) != SIM_OK) return cli_fail("serve: --api-keys: %s", err.msg);
    for (char *line = *buf, *next; line && *line; line = next) {
        next = strchr(line, '\n');
        if (next) *next++ = 0;
        size_t k = strlen(line);
        while (k && (line[k - 1] == '\r' || line[k - 1] == ' ' || line[k - 1] == '\t')) line[--k] = 0;
        while (*line == ' ' || *line == '\t') line++;
        if (!*line || *line == '#') continue;
        if (*n == MAX_KEYS) return cli_fail("serve: --api-keys: more than %d keys", MAX_KEYS);
        keys[(*n)++] = line;
    }
    if (*n == 0) return cli_fail("serve: --api-keys: %s holds no key", path);
    return 0;
}

int cmd_serve(int argc, char **argv) {
    const char *model_path = NULL, *host = "127.0.0.1", *keys_file = NULL, *cors = NULL, *alias = NULL;
    const char *template_file = NULL, *kv_type = "f16";
    const char *scenarios = NULL, *db_path = "stories.db", *web_dir = NULL;
    int story_ctx = 0, loom_ctx = 0;
    iapi_config icfg = iapi_default_config();
    cli_list mix_models = {0};
    int port = 8080, n_ctx = 0, n_slots = 4, n_threads = 0, n_batch = 512, queue = 64, max_body_kb = 8192;
    cli_list keys_arg = {0};
    api_config acfg = api_default_config();
    cli_opt opts[] = {
        {"-m|--model", OPT_STR, &model_path, "model file (GGUF)"},
        {"--host", OPT_STR, &host, "address to listen on [127.0.0.1]; 0.0.0.0 for every interface"},
        {"--port", OPT_INT, &port, "port [8080]; 0: any free port"},
        {"-c|--ctx-size", OPT_INT, &n_ctx, "KV cache cells shared by the slots (0: the model's context, at most 4096)"},
        {"--slots", OPT_INT, &n_slots, "requests decoded together [4]; each gets ctx-size / slots cells"},
        {"-t|--threads", OPT_INT, &n_threads, "threads (0: all CPUs)"},
        {"-b|--batch-size", OPT_INT, &n_batch, "most tokens per decode step [512]"},
        {"--kv-type", OPT_STR, &kv_type, "KV cache type: f16 or f32 [f16]"},
        {"--queue", OPT_INT, &queue, "requests that may wait for a slot before 503 [64]"},
        {"--api-key", OPT_LIST, &keys_arg, "require this Bearer key (repeatable)"},
        {"--api-keys", OPT_STR, &keys_file, "require one of the keys in FILE (one per line)"},
        {"--cors", OPT_STR, &cors, "allow browsers from this origin (Access-Control-Allow-Origin)"},
        {"--alias", OPT_STR, &alias, "the model's name in the API [the file name]"},
        {"--chat-template-file", OPT_STR, &template_file, "Jinja chat template to use instead of the model's"},
        {"--max-tokens", OPT_INT, &acfg.max_tokens, "most tokens a request may generate [4096]"},
        {"--timeout", OPT_INT, &acfg.timeout_s, "most seconds a request may run [600]; 0: no limit"},
        {"--max-body-kb", OPT_INT, &max_body_kb, "largest request body, KiB [8192]"},
        {"--scenarios", OPT_STR, &scenarios, "serve the web player and the story API for the scenario packs in DIR"},
        {"--db", OPT_STR, &db_path, "the story database (with --scenarios) [stories.db]"},
        {"--story-ctx", OPT_INT, &story_ctx, "context of the story engine (0: the scenarios' largest recommended size, or 8192)"},
        {"--web-dir", OPT_STR, &web_dir, "serve the player's files from DIR instead of the built-in copy"},
        {"--mix-model", OPT_LIST, &mix_models, "another model for the LLooM's mixing (repeatable, up to 3)"},
        {"--loom-ctx", OPT_INT, &loom_ctx, "context of each LLooM model [4096]"},
        {"--image-model", OPT_STR, &icfg.model_dir,
         "serve image generation (/sdapi/v1, /api/image) with this SD model (diffusers folder or .safetensors)"},
        {"--image-taesd", OPT_STR, &icfg.taesd, "a tiny autoencoder (file or folder) for the image previews"},
        {"--image-lora-dir", OPT_STR, &icfg.lora_dir, "the folder of the image prompts' <lora:NAME:W> files (NAME.safetensors)"},
        {"--image-cache", OPT_STR, &icfg.cache_dir, "keep generated images in DIR (default: 64 MiB in memory)"},
        {"--image-queue", OPT_INT, &icfg.max_queue, "image requests that may wait behind the running one before 503 [8]"},
        {"--image-threads", OPT_INT, &icfg.n_threads, "threads of the image generator (0: all CPUs)"},
    };
    int n_pos, rc;
    if ((rc = cli_parse("serve -m MODEL [options]", argc, argv, opts, ARRAY_LEN(opts), NULL, 0, &n_pos))) return rc;
    if (!model_path) return cli_fail("serve: give a model with -m");
    if (port < 0 || port > 65535) return cli_fail("serve: --port must be 0..65535");
    if (n_ctx < 0 || n_threads < 0 || n_batch < 1 || queue < 0 || max_body_kb < 1 || acfg.timeout_s < 0 ||
        icfg.max_queue < 0 || icfg.n_threads < 0)
        return cli_fail("serve: sizes, counts and limits must be positive");
    if (n_slots < 1 || n_slots > KV_MAX_SEQ) return cli_fail("serve: --slots must be 1..%d", KV_MAX_SEQ);
    tt_type kvt;
    if (!cli_kv_type(kv_type, &kvt)) return cli_fail("serve: --kv-type must be f16 or f32");
    const char *keys[MAX_KEYS];
    int n_keys = 0;
    char *keys_buf = NULL, *tmpl = NULL;
    for (int i = 0; i < keys_arg.n; i++) {
        if (!*keys_arg.items[i]) return cli_fail("serve: --api-key must not be empty");
        keys[n_keys++] = keys_arg.items[i];
    }
    if (keys_file && (rc = read_keys(keys_file, &keys_buf, keys, &n_keys))) {
        mem_free(keys_buf);
        return rc;
    }
    sim_err err;
    size_t tlen;
    if (template_file && file_read_all(template_file, 1 << 20, &tmpl, &tlen, &err) != SIM_OK) {
        mem_free(keys_buf);
        return cli_fail("serve: --chat-template-file: %s", err.msg);
    }

    // Signals are handled by this thread alone (sigwait): block them before
    // any thread starts so every thread inherits the mask.
    sigset_t sigs;
    sigemptyset(&sigs);
    sigaddset(&sigs, SIGINT);
    sigaddset(&sigs, SIGTERM);
    pthread_sigmask(SIG_BLOCK, &sigs, NULL);
    signal(SIGPIPE, SIG_IGN);

    rc = 1;
    model *m = cli_load_model(model_path, NULL);
    fwd_ctx *c = NULL;
    sched *sch = NULL;
    api *a = NULL;
    sapi *sa = NULL;
    lapi *la = NULL;
    iapi *ia = NULL;
    model *extra[3] = {0};
    http_server *srv = NULL;
    if (!m) goto done;
    fwd_params fp = fwd_default_params();
    fp.n_ctx = n_ctx;
    fp.n_batch = n_batch;
    fp.n_outputs = n_slots;
    fp.n_threads = n_threads;
    fp.kv_type = kvt;
    sched_config scfg = {.n_slots = n_slots, .max_queue = queue};
    acfg.model_name = alias ? alias : cli_basename(model_path);
    acfg.chat_template = tmpl;
    if (fwd_new(&c, m, &fp, &err) != SIM_OK || sched_new(&sch, c, &scfg, &err) != SIM_OK ||
        api_new(&a, m, sch, &acfg, &err) != SIM_OK) {
        cli_fail("serve: %s", err.msg);
        goto done;
    }
    if (mix_models.n > 3) {
        cli_fail("serve: at most 3 --mix-model");
        goto done;
    }
    const model *lm[4] = {m};
    const char *ln[4] = {acfg.model_name};
    for (int i = 0; i < mix_models.n; i++) {
        if (!(extra[i] = cli_load_model(mix_models.items[i], NULL))) goto done;
        lm[i + 1] = extra[i];
        ln[i + 1] = cli_basename(mix_models.items[i]);
    }
    lapi_config lcfg = {.n_ctx = loom_ctx, .n_threads = n_threads};
    if (lapi_new(&la, lm, ln, 1 + mix_models.n, &lcfg, &err) != SIM_OK) {
        cli_fail("serve: %s", err.msg);
        goto done;
    }
    http_route routes[API_N_ROUTES + SAPI_N_ROUTES + LAPI_N_ROUTES + WEB_N_ROUTES + IAPI_N_ROUTES];
    int n_routes = api_routes(a, routes);
    n_routes += web_routes(web_dir, routes + n_routes);
    n_routes += lapi_routes(la, routes + n_routes);
    if (scenarios) {
        sapi_config scfg2 = {.scenarios = scenarios, .db = db_path, .n_ctx = story_ctx,
                             .n_threads = n_threads, .api_keys = n_keys ? keys : NULL, .n_api_keys = n_keys,
                             .log = serve_log};
        if (sapi_new(&sa, m, &scfg2, &err) != SIM_OK) {
            cli_fail("serve: %s", err.msg);
            goto done;
        }
        n_routes += sapi_routes(sa, routes + n_routes);
    }
    if (icfg.model_dir) {
        icfg.log = serve_log;
        if (iapi_new(&ia, &icfg, &err) != SIM_OK) {
            cli_fail("serve: --image-model: %s", err.msg);
            goto done;
        }
        n_routes += iapi_routes(ia, routes + n_routes);
    }
    http_config hcfg = http_default_config();
    hcfg.host = host;
    hcfg.port = port;
    hcfg.api_keys = n_keys ? keys : NULL;
    hcfg.n_api_keys = n_keys;
    hcfg.cors_origin = cors;
    hcfg.max_body = (size_t)max_body_kb * 1024;
    if (http_start(&srv, &hcfg, routes, n_routes, &err) != SIM_OK) {
        cli_fail("serve: %s", err.msg);
        goto done;
    }
    fprintf(stderr, "simularity: listening on http://%s:%d (%s; %d slots of %d tokens, %d threads, %s kernels%s)\n",
            strchr(host, ':') ? "[::]" : host, http_port(srv), acfg.model_name, n_slots, sched_slot_ctx(sch),
            fwd_n_threads(c), fwd_kernels(c)->name, n_keys ? ", API keys required" : "");
    if (sa)
        fprintf(stderr, "simularity: the web player is at http://%s:%d/ (%d scenarios from %s, stories in %s)\n",
                strchr(host, ':') ? "[::]" : host, http_port(srv), sapi_n_scenarios(sa), scenarios, db_path);
    if (ia)
        fprintf(stderr, "simularity: images from %s (sha256 %.10s, %d threads, %d may wait, cache %s)\n", iapi_model_name(ia),
                iapi_model_sha256(ia), iapi_n_threads(ia), icfg.max_queue, icfg.cache_dir ? icfg.cache_dir : "in memory");
    int sig = 0;
    sigwait(&sigs, &sig);
    fprintf(stderr, "simularity: %s: stopping\n", sig == SIGINT ? "interrupted" : "terminated");
    rc = 0;
done:
    if (sch) sched_shutdown(sch); // running requests end: their handlers answer, streams send their last events
    if (a) api_drain(a, 5000);
    sapi_shutdown(sa); // event streams end
    iapi_shutdown(ia); // image requests are answered
    if (srv) http_stop(srv);
    sapi_free(sa);
    lapi_free(la);
    iapi_free(ia);
    for (int i = 0; i < 3; i++) model_free(extra[i]);
    api_free(a);
    sched_free(sch);
    fwd_free(c);
    model_free(m);
    mem_free(keys_buf);
    mem_free(tmpl);
    return rc;
}
