// file.c — mmap-backed reads, whole-file reads and writes.
#include "base/file.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

sim_status file_map_open(file_map *m, const char *path, sim_err *err) {
    m->data = NULL;
    m->size = 0;
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0) return err_set(err, SIM_ERR_IO, "%s: cannot open: %s", path, strerror(errno));
    struct stat st;
    if (fstat(fd, &st) != 0) {
        int e = errno;
        close(fd);
        return err_set(err, SIM_ERR_IO, "%s: cannot stat: %s", path, strerror(e));
    }
    if (!S_ISREG(st.st_mode)) {
        close(fd);
        return err_set(err, SIM_ERR_IO, "%s: not a regular file", path);
    }
    if (st.st_size == 0) {
        close(fd);
        return SIM_OK;
    }
    void *p = mmap(NULL, (size_t)st.st_size, PROT_READ, MAP_SHARED, fd, 0);
    int e = errno;
    close(fd);
    if (p == MAP_FAILED) return err_set(err, SIM_ERR_IO, "%s: cannot map: %s", path, strerror(e));
    m->data = p;
    m->size = (size_t)st.st_size;
    return SIM_OK;
}

void file_map_close(file_map *m) {
    if (m->data) munmap((void *)m->data, m->size);
    m->data = NULL;
    m->size = 0;
}

void file_map_prefetch(const file_map *m) {
    if (m->data) madvise((void *)m->data, m->size, MADV_WILLNEED);
}

sim_status file_read_all(const char *path, size_t max_size, char **out, size_t *out_len,
                         sim_err *err) {
    *out = NULL;
    if (out_len) *out_len = 0;
    FILE *f = fopen(path, "rb");
    if (!f) return err_set(err, SIM_ERR_IO, "%s: cannot open: %s", path, strerror(errno));
    size_t cap = 4096, len = 0;
    char *buf = mem_alloc(cap);
    if (!buf) {
        fclose(f);
        return err_set(err, SIM_ERR_NOMEM, "%s: out of memory", path);
    }
    for (;;) {
        if (len + 1 >= cap) {
            if (cap > max_size) {
                mem_free(buf);
                fclose(f);
                return err_set(err, SIM_ERR_RANGE, "%s: larger than %zu bytes", path, max_size);
            }
            char *nb = mem_realloc(buf, cap * 2);
            if (!nb) {
                mem_free(buf);
                fclose(f);
                return err_set(err, SIM_ERR_NOMEM, "%s: out of memory", path);
            }
            buf = nb;
            cap *= 2;
        }
        size_t got = fread(buf + len, 1, cap - 1 - len, f);
        len += got;
        if (got == 0) break;
    }
    bool failed = ferror(f);
    fclose(f);
    if (failed) {
        mem_free(buf);
        return err_set(err, SIM_ERR_IO, "%s: read error", path);
    }
    if (len > max_size) {
        mem_free(buf);
        return err_set(err, SIM_ERR_RANGE, "%s: larger than %zu bytes", path, max_size);
    }
    buf[len] = 0;
    *out = buf;
    if (out_len) *out_len = len;
    return SIM_OK;
}

sim_status file_write_all(const char *path, const void *data, size_t len, sim_err *err) {
    FILE *f = fopen(path, "wb");
    if (!f) return err_set(err, SIM_ERR_IO, "%s: cannot create: %s", path, strerror(errno));
    bool ok = fwrite(data, 1, len, f) == len;
    ok = (fclose(f) == 0) && ok;
    if (!ok) return err_set(err, SIM_ERR_IO, "%s: write error", path);
    return SIM_OK;
}
