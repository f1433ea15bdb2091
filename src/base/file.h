// file.h — read-only file mappings and whole-file reads.
//
//     file_map m;
//     if (file_map_open(&m, path, &err) != SIM_OK) return err.code;
//     use(m.data, m.size);          // read-only; valid until file_map_close
//     file_map_close(&m);
//
// Model weights are used straight from the mapping (never copied), so a
// model costs page cache, not heap. Errors name the path and the reason.
#ifndef SIM_FILE_H
#define SIM_FILE_H

#include "base/base.h"

typedef struct file_map {
    const uint8_t *data; // NULL for an empty file
    size_t size;
} file_map;

sim_status file_map_open(file_map *m, const char *path, sim_err *err);
void file_map_close(file_map *m);

// Hints that the mapping will be read soon (and sequentially by tensors).
void file_map_prefetch(const file_map *m);

// Reads a whole file into a NUL-terminated heap buffer (free with mem_free).
// Files larger than max_size are refused.
sim_status file_read_all(const char *path, size_t max_size, char **out, size_t *out_len,
                         sim_err *err);

// Writes a buffer to a file (replacing it). On error the message names the path.
sim_status file_write_all(const char *path, const void *data, size_t len, sim_err *err);

#endif
