// loom_api.h — the LLooM and model mixing over HTTP, for the player's LLooM
// page and other clients (docs/story-api.md, "The LLooM").
//
//   POST /api/loom          {"text", "depth"?, "max"?, "cutoff"?, "multiplier"?, "split"?, "autostop"?, "logprob"?}
//                           -> Server-Sent Events as the tree grows: node, depth, then done (or error)
//   POST /api/mix           {"text", "mode"?, "turn"?, "n"?} -> events: token ..., done (or error)
//   GET  /api/loom/models   the models loaded for mixing (model 0 is the served one)
//
// Each model gets its own context of cfg.n_ctx cells on first use; one tree or
// mix runs at a time (a second request waits). A client that leaves stops
// its tree at the next node.
//
// Ownership: borrows the models.
#ifndef SIM_LOOM_API_H
#define SIM_LOOM_API_H

#include "model/model.h"
#include "server/http.h"

#define LAPI_N_ROUTES 3

typedef struct lapi lapi;

typedef struct lapi_config {
    int n_ctx;     // cells per model's context (0: 4096)
    int n_threads; // 0: all CPUs
} lapi_config;

sim_status lapi_new(lapi **out, const model *const *models, const char *const *names, int n, const lapi_config *cfg,
                    sim_err *err);
void lapi_free(lapi *la);
int lapi_routes(lapi *la, http_route *out);

#endif
