// manifest.h — editing a scenario's manifest.json as a JSON tree: the tools
// that write into a scenario folder (import-card, sprite) load it, change
// what they own, write their asset files and then the manifest, atomically.
//
//     json_t *m = mf_load("pier/manifest.json", &err);        // NULL: err says why
//     json_t *ch = mf_find(json_object_get(m, "characters"), "mira");
//     json_t *a = mf_asset("sprites/mira/body.png", png, png_len); // {"path", "sha256"}
//     mf_write_file("pier", "sprites/mira/body.png", png, png_len, &err);
//     mf_write(m, "pier/manifest.json", &err);                 // tmp, fsync, rename
//     json_decref(m);
//
// mf_load checks only what an editor needs (an object with "locales" and
// "characters" arrays, "lore" an array when present) and keeps the rest as
// it is, key order included: validation is scn_load's job (story/scenario.h).
// Files are written through PATH.tmp, fsync and a rename (then the folder is
// synced), so a reader sees the old file or the new one, never a part; on
// any error the old file is untouched and the .tmp is removed.
//
// Ownership: the json_t values returned are new references (json_decref).
// Errors: sim_status + sim_err naming the file: SIM_ERR_IO, SIM_ERR_FORMAT
// (not JSON, not a manifest), SIM_ERR_RANGE (over SCN_MAX_MANIFEST),
// SIM_ERR_NOMEM. Never prints.
#ifndef SIM_MANIFEST_H
#define SIM_MANIFEST_H

#include <jansson.h>

#include "base/base.h"

// Loads the manifest at mpath (at most SCN_MAX_MANIFEST bytes); NULL with err set.
json_t *mf_load(const char *mpath, sim_err *err);

// Writes m (indented by 2, a final newline) to mpath atomically.
sim_status mf_write(json_t *m, const char *mpath, sim_err *err);

// Writes data to path atomically (path.tmp, fsync, rename, folder fsync).
sim_status mf_write_atomic(const char *path, const void *data, size_t n, sim_err *err);

// Writes dir/rel atomically, creating the folders of rel first.
sim_status mf_write_file(const char *dir, const char *rel, const void *data, size_t n, sim_err *err);

// The entry of arr (an array of objects) whose "id" is id, or NULL (borrowed).
json_t *mf_find(json_t *arr, const char *id);

// Whether s is an id: ^[a-z][a-z0-9_-]{0,63}$.
bool mf_id_ok(const char *s);

// A text with s in every locale of locales ({"en-US": s, ...}), s cut to
// SCN_MAX_STRING bytes at a UTF-8 boundary (*cut says whether it was; cut
// may be NULL). NULL when memory ran out.
json_t *mf_text(json_t *locales, const char *s, bool *cut);

// An asset {"path": path, "sha256": <the SHA-256 of data[0..n)>}; NULL on no memory.
json_t *mf_asset(const char *path, const void *data, size_t n);

// The same with a placement: {"path", "sha256", "x", "y", "scale"}.
json_t *mf_layer(const char *path, const void *data, size_t n, double x, double y, double scale);

// A readable colour (each channel in 0x40..0xbf) from a hash of name, 0xRRGGBB.
uint32_t mf_color(const char *name);

#endif
