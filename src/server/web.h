// web.h — the web player's files (web/ at build time), compiled into the
// binary by tools/embed.py so `simularity serve` needs nothing beside it.
#ifndef SIM_WEB_H
#define SIM_WEB_H

#include <stddef.h>

typedef struct web_file {
    const char *path;          // relative to web/, '/'-separated ("index.html", "js/app.js")
    const unsigned char *data;
    size_t len;
} web_file;

extern const web_file web_files[];
extern const int web_n_files;

#endif
