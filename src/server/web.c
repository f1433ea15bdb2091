// web.c — serving the web player's files (see web.h).
#include "server/web.h"

#include <stdio.h>
#include <string.h>

#include "base/file.h"
#include "story/pack.h"

const char *web_mime(const char *path) {
    static const char *const map[][2] = {
        {".svg", "image/svg+xml"}, {".png", "image/png"},  {".jpg", "image/jpeg"},     {".jpeg", "image/jpeg"},
        {".webp", "image/webp"},   {".gif", "image/gif"},  {".wav", "audio/wav"},      {".ogg", "audio/ogg"},
        {".mp3", "audio/mpeg"},    {".opus", "audio/ogg"}, {".flac", "audio/flac"},    {".json", "application/json"},
        {".txt", "text/plain; charset=utf-8"}, {".html", "text/html; charset=utf-8"}, {".css", "text/css; charset=utf-8"},
        {".js", "text/javascript; charset=utf-8"}, {".mjs", "text/javascript; charset=utf-8"}, {".ico", "image/x-icon"},
    };
    const char *dot = strrchr(path, '.');
    for (size_t i = 0; dot && i < ARRAY_LEN(map); i++)
        if (strcasecmp(dot, map[i][0]) == 0) return map[i][1];
    return "application/octet-stream";
}

static void serve_file(const char *dir, const char *rel, http_conn *c) {
    if (pack_path_problem(rel, &(const char *){NULL})) {
        http_respond_error(c, 404, "not_found_error", NULL, "no file '%.200s'", rel);
        return;
    }
    if (dir) {
        char path[4096], *data = NULL;
        size_t len;
        sim_err err;
        snprintf(path, sizeof path, "%s/%s", dir, rel);
        if (file_read_all(path, (size_t)64 << 20, &data, &len, &err) != SIM_OK) {
            http_respond_error(c, 404, "not_found_error", NULL, "no file '%.200s'", rel);
            return;
        }
        http_add_header(c, "Cache-Control", "no-cache");
        http_respond(c, 200, web_mime(rel), data, len);
        mem_free(data);
        return;
    }
    for (int i = 0; i < web_n_files; i++)
        if (strcmp(web_files[i].path, rel) == 0) {
            http_add_header(c, "Cache-Control", "no-cache");
            http_respond(c, 200, web_mime(rel), (const char *)web_files[i].data, web_files[i].len);
            return;
        }
    if (strcmp(rel, "index.html") == 0) {
        static const char page[] = "<!doctype html><title>Simularity</title><p>This build has no web player "
                                   "(the web/ folder was empty when it was built). The API is at /api/.</p>";
        http_respond(c, 200, "text/html; charset=utf-8", page, sizeof page - 1);
        return;
    }
    http_respond_error(c, 404, "not_found_error", NULL, "no file '%.200s'", rel);
}

static void h_index(void *ud, const http_req *rq, http_conn *c) { serve_file(ud, "index.html", c); }
static void h_web(void *ud, const http_req *rq, http_conn *c) { serve_file(ud, rq->path + strlen("/web/"), c); }


int web_routes(const char *dir, http_route *out) {
    const http_route r[] = {
        {"GET", "/", h_index, (void *)dir, true, false},
        {"GET", "/web/*", h_web, (void *)dir, true, false},
    };
    _Static_assert(ARRAY_LEN(r) == WEB_N_ROUTES, "WEB_N_ROUTES");
    memcpy(out, r, sizeof r);
    return WEB_N_ROUTES;
}
