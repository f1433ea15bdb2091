// story_api.h — the native story API (docs/story-api.md) on the HTTP layer
// (the player's own files are served by server/web.h).
//
//   GET  /api/scenarios, /api/scenarios/{id}, /api/scenarios/{id}/assets/{path}
//   POST /api/stories          GET /api/stories          GET|DELETE /api/stories/{id}
//   GET  /api/stories/{id}/tree, /events (SSE), /saves/{save}/thumbnail
//   POST /api/stories/{id}/advance|say|regenerate|choose|edit|rewind|thumbs|save|load|fork
//
//     sapi *sa;
//     if (sapi_new(&sa, m, &cfg, &err) != SIM_OK) ...   // loads every pack in cfg.scenarios, opens cfg.db
//     http_route routes[SAPI_N_ROUTES];
//     int n = sapi_routes(sa, routes);
//     ... http_start(...); ...; sapi_shutdown(sa); http_stop(srv); sapi_free(sa);
//
// The model writes stories on a context of its own (cfg.n_ctx cells, one
// story loaded at a time on sequence 0): operations on stories run one at a
// time across the server (a second operation on the same story gets 409; on
// another story it waits). Switching stories saves the loaded one's KV state
// (an "autosave" with a state file), so coming back is instant.
//
// Ownership: borrows the model; owns the scenarios, the database, the
// context and the engine. Users: with API keys, stories belong to the key
// (an id derived from its SHA-256, so it survives reordering the keys).
#ifndef SIM_STORY_API_H
#define SIM_STORY_API_H

#include "model/model.h"
#include "server/http.h"

#define SAPI_N_ROUTES 7
#define SAPI_MAX_SCENARIOS 256

typedef struct sapi sapi;

typedef struct sapi_config {
    const char *scenarios;       // a folder of scenario packs (subfolders with manifest.json, or .zip files)
    const char *db;              // the story database (created if missing)
    const char *state_dir;       // KV state files (NULL: DB + ".states")
    int n_ctx;                   // the story context's cells (0: the largest recommendedContextSize, or 8192)
    int n_threads;               // 0: all CPUs
    const char *const *api_keys; // the server's keys (for story owners); n_api_keys of them
    int n_api_keys;
    void (*log)(void *ud, const char *msg); // scenarios that failed to load, switch-saves that failed
    void *log_ud;
} sapi_config;

sim_status sapi_new(sapi **out, const model *m, const sapi_config *cfg, sim_err *err);
// Ends every event stream (their clients get the end of the stream).
void sapi_shutdown(sapi *sa);
void sapi_free(sapi *sa);
int sapi_routes(sapi *sa, http_route *out);
int sapi_n_scenarios(const sapi *sa);

#endif
