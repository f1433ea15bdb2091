// web.h — the web player's files (web/ at build time), compiled into the
// binary by tools/embed.py so `simularity serve` needs nothing beside it,
// and their routes: GET / (index.html) and GET /web/{path}, public (no API
// key: the page asks for the key itself). A path outside the rules of
// pack_path_problem is 404.
#ifndef SIM_WEB_H
#define SIM_WEB_H

#include <stddef.h>

#include "server/http.h"

#define WEB_N_ROUTES 2

typedef struct web_file {
    const char *path;          // relative to web/, '/'-separated ("index.html", "js/app.js")
    const unsigned char *data;
    size_t len;
} web_file;

extern const web_file web_files[];
extern const int web_n_files;

// The Content-Type for a file name's extension (application/octet-stream when unknown).
const char *web_mime(const char *path);

// Writes the routes (WEB_N_ROUTES); dir: serve from this folder instead of
// the embedded copy (NULL), borrowed for the server's life.
int web_routes(const char *dir, http_route *out);

#endif
