// pack.h — the files of a scenario pack: a folder, or a .zip of that folder.
//
// A pack is opened once and read by relative path ('/'-separated, no '..',
// '.', empty components, backslash, leading '/' or drive letter: the path
// rules of docs/scenario-format.md, checked by pack_path_problem). In a zip,
// manifest.json sits at the root or inside exactly one top-level folder
// (a "__MACOSX/" folder beside it is ignored); paths are relative to that.
//
//     pack *p;
//     sim_err err;
//     if (pack_open(&p, "lighthouse.zip", &err) != SIM_OK) { puts(err.msg); return; }
//     char *text; size_t len;
//     if (pack_read(p, "manifest.json", SCN_MAX_MANIFEST, &text, &len, NULL, &err) == SIM_OK) { ...; mem_free(text); }
//     pack_close(p);
//
// Every zip entry is hostile. pack_open walks the whole central directory
// and refuses the archive, naming the entry, for: a name that is absolute,
// has '..', '.' or empty components, a backslash, a drive letter, a control
// character or invalid UTF-8, or is longer than SCN_MAX_PATH; two names
// equal after normalisation (a trailing '/' dropped, ASCII case folded) or a
// file used as a folder; a symlink or other non-regular entry (Unix mode in
// the external attributes); an encrypted entry; a compression method libzip
// cannot read; more than PACK_MAX_ENTRIES entries; a declared size above
// SCN_MAX_ASSET_BYTES; declared sizes adding up to more than PACK_MAX_TOTAL;
// a compression ratio above PACK_MAX_RATIO (for entries above 1 MiB). When
// reading, the declared size is not trusted: a read stops with an error as
// soon as the bytes decompressed pass the declared size or the caller's limit.
//
// Folders keep the folder rules: after realpath the file must be inside the
// folder (a symlink out is refused), must be a regular file (checked before
// opening, so a FIFO never blocks; opened O_NOFOLLOW | O_NONBLOCK and checked
// again), and no larger than the limit, also while it is read.
//
// Ownership: pack_open returns one heap pack (pack_close, which takes NULL);
// a pack_file belongs to its caller (pack_file_close) and must be closed
// before its pack. Errors: sim_status plus a message naming the file or
// entry; the functions that read a file also give a fix hint (a static
// string) through `hint` when it is not NULL. SIM_ERR_IO for a file that
// is missing or cannot be read, SIM_ERR_FORMAT for a refused zip or entry,
// SIM_ERR_RANGE for a size over a limit, SIM_ERR_NOMEM.
#ifndef SIM_PACK_H
#define SIM_PACK_H

#include "base/base.h"
#include "story/scenario.h"

#define PACK_MAX_ENTRIES 20000
#define PACK_MAX_TOTAL ((uint64_t)2 << 30) // declared uncompressed bytes of all entries
#define PACK_MAX_RATIO 200                 // uncompressed / compressed, for entries above 1 MiB

typedef struct pack pack;
typedef struct pack_file pack_file;

// Opens a folder or a zip file (anything that is not a folder is read as a
// zip). On error *out is NULL and err names path (and the entry at fault).
sim_status pack_open(pack **out, const char *path, sim_err *err);
void pack_close(pack *p);

bool pack_is_zip(const pack *p);
// The zip's top-level folder ("" when manifest.json is at the root or p is a folder).
const char *pack_prefix(const pack *p);

// The zip's entries in name order (none for a folder): entry i's name from
// the zip root (a folder's without its '/'), and whether it is a folder.
int pack_n_entries(const pack *p);
const char *pack_entry_name(const pack *p, int i, bool *is_dir);

// NULL when rel follows the path rules; otherwise what is wrong, and *hint
// how to fix it.
const char *pack_path_problem(const char *rel, const char **hint);

// Opens the file rel for reading, refusing it when it is (or declares to
// be) more than max bytes; *size is its size (declared, for a zip entry).
sim_status pack_file_open(pack *p, const char *rel, uint64_t max, pack_file **out, uint64_t *size,
                          const char **hint, sim_err *err);
// Reads up to cap bytes into buf; *n = 0 at the end. Fails when the data
// runs past the declared size or the limit given to pack_file_open.
sim_status pack_file_read(pack_file *f, void *buf, size_t cap, size_t *n, const char **hint, sim_err *err);
void pack_file_close(pack_file *f);

// The size of rel (declared, for a zip entry) without reading it, with the
// checks of pack_file_open except the limit.
sim_status pack_stat(pack *p, const char *rel, uint64_t *size, const char **hint, sim_err *err);

// Whether rel names something in the pack (an entry; a folder entry of any
// kind, broken symlinks included), for telling "missing" from "refused".
bool pack_exists(pack *p, const char *rel);

// Reads the whole file rel (at most max bytes) into a new NUL-terminated
// buffer *out (mem_free) of *len bytes.
sim_status pack_read(pack *p, const char *rel, size_t max, char **out, size_t *len, const char **hint,
                     sim_err *err);

#endif
