// manifest.c — editing a manifest as a JSON tree, atomic writes (see manifest.h).
#include "story/manifest.h"

#include <errno.h>
#include <fcntl.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "base/file.h"
#include "base/sha256.h"
#include "story/scenario.h"

json_t *mf_load(const char *mpath, sim_err *err) {
    char *buf;
    size_t n;
    if (file_read_all(mpath, SCN_MAX_MANIFEST, &buf, &n, err) != SIM_OK) return NULL;
    json_error_t je;
    json_t *m = json_loadb(buf, n, JSON_REJECT_DUPLICATES, &je);
    mem_free(buf);
    if (!m) {
        err_set(err, SIM_ERR_FORMAT, "%s: line %d, column %d: %s (fix the manifest first: simularity check)", mpath, je.line, je.column, je.text);
        return NULL;
    }
    json_t *ch = json_object_get(m, "characters"), *loc = json_object_get(m, "locales");
    bool locs_ok = json_is_array(loc) && json_array_size(loc) > 0 && json_array_size(loc) <= SCN_MAX_LOCALES;
    size_t i;
    json_t *l;
    if (locs_ok) json_array_foreach(loc, i, l) locs_ok &= json_is_string(l);
    json_t *lore = json_object_get(m, "lore");
    if (!json_is_object(m) || !json_is_array(ch) || !locs_ok || (lore && !json_is_array(lore))) {
        json_decref(m);
        err_set(err, SIM_ERR_FORMAT, "%s: not a scenario manifest (it needs \"locales\" and \"characters\" arrays; run simularity check)", mpath);
        return NULL;
    }
    return m;
}

sim_status mf_write_atomic(const char *path, const void *data, size_t n, sim_err *err) {
    char tmp[4096 + 8];
    if (snprintf(tmp, sizeof tmp, "%s.tmp", path) >= (int)sizeof tmp) return err_set(err, SIM_ERR_ARG, "%s: path too long", path);
    sim_status rc = SIM_OK;
    int fd = open(tmp, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
    if (fd < 0) rc = err_set(err, SIM_ERR_IO, "cannot create %s: %s", tmp, strerror(errno));
    for (size_t off = 0; rc == SIM_OK && off < n;) {
        ssize_t w = write(fd, (const char *)data + off, n - off);
        if (w < 0 && errno == EINTR) continue;
        if (w <= 0) rc = err_set(err, SIM_ERR_IO, "cannot write %s: %s", tmp, strerror(errno));
        else off += (size_t)w;
    }
    if (rc == SIM_OK && fsync(fd) != 0) rc = err_set(err, SIM_ERR_IO, "cannot sync %s: %s", tmp, strerror(errno));
    if (fd >= 0 && close(fd) != 0 && rc == SIM_OK) rc = err_set(err, SIM_ERR_IO, "cannot write %s: %s", tmp, strerror(errno));
    if (rc == SIM_OK && rename(tmp, path) != 0) rc = err_set(err, SIM_ERR_IO, "cannot rename %s to %s: %s", tmp, path, strerror(errno));
    if (rc != SIM_OK) {
        if (fd >= 0) unlink(tmp);
        return rc;
    }
    // The rename is durable once the folder is synced.
    char d[4096];
    snprintf(d, sizeof d, "%s", path);
    char *sl = strrchr(d, '/');
    if (sl) *sl = 0;
    int dfd = open(sl ? d : ".", O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (dfd >= 0) {
        fsync(dfd);
        close(dfd);
    }
    return SIM_OK;
}

sim_status mf_write(json_t *m, const char *mpath, sim_err *err) {
    char *s = json_dumps(m, JSON_INDENT(2));
    if (!s) return err_set(err, SIM_ERR_NOMEM, "%s: out of memory", mpath);
    size_t n = strlen(s);
    sim_status rc;
    char *t = n + 1 <= SCN_MAX_MANIFEST ? realloc(s, n + 2) : NULL;
    if (n + 1 > SCN_MAX_MANIFEST)
        rc = err_set(err, SIM_ERR_RANGE, "%s: the manifest would be %zu bytes, more than the %zu-byte limit", mpath, n + 1, SCN_MAX_MANIFEST);
    else if (!t) rc = err_set(err, SIM_ERR_NOMEM, "%s: out of memory", mpath);
    else {
        s = t;
        s[n] = '\n';
        rc = mf_write_atomic(mpath, s, n + 1, err);
    }
    free(s);
    return rc;
}

sim_status mf_write_file(const char *dir, const char *rel, const void *data, size_t n, sim_err *err) {
    char path[4096];
    if (snprintf(path, sizeof path, "%s/%s", dir, rel) >= (int)sizeof path - 8) return err_set(err, SIM_ERR_ARG, "%s: path too long", dir);
    for (char *s = path + strlen(dir) + 1; *s; s++)
        if (*s == '/') {
            *s = 0;
            if (mkdir(path, 0755) != 0 && errno != EEXIST) {
                int e = errno;
                *s = '/';
                return err_set(err, SIM_ERR_IO, "cannot create the folder for %s: %s", path, strerror(e));
            }
            *s = '/';
        }
    return mf_write_atomic(path, data, n, err);
}

json_t *mf_find(json_t *arr, const char *id) {
    size_t i;
    json_t *e;
    json_array_foreach(arr, i, e) {
        const char *x = json_string_value(json_object_get(e, "id"));
        if (x && strcmp(x, id) == 0) return e;
    }
    return NULL;
}

bool mf_id_ok(const char *s) {
    size_t n = strlen(s);
    if (n < 1 || n > 64 || !(s[0] >= 'a' && s[0] <= 'z')) return false;
    for (size_t i = 1; i < n; i++)
        if (!((s[i] >= 'a' && s[i] <= 'z') || (s[i] >= '0' && s[i] <= '9') || s[i] == '_' || s[i] == '-')) return false;
    return true;
}

json_t *mf_text(json_t *locales, const char *s, bool *cut) {
    size_t n = strlen(s);
    if (cut) *cut = n > SCN_MAX_STRING;
    if (n > SCN_MAX_STRING) {
        n = SCN_MAX_STRING;
        while (n > 0 && ((unsigned char)s[n] & 0xC0) == 0x80) n--;
    }
    json_t *t = json_object();
    size_t i;
    json_t *l;
    json_array_foreach(locales, i, l) {
        json_t *v = json_stringn(s, n);
        if (!t || !v || json_object_set_new(t, json_string_value(l), v) != 0) {
            json_decref(t);
            return NULL;
        }
    }
    return t;
}

json_t *mf_asset(const char *path, const void *data, size_t n) {
    uint8_t d[SHA256_SIZE];
    char hex[SHA256_HEX_SIZE];
    sha256(data, n, d);
    sha256_hex(d, hex);
    return json_pack("{s:s, s:s}", "path", path, "sha256", hex);
}

// An integral value as a JSON integer ("x": 0, not 0.0), else a real.
static json_t *number(double v) { return v == floor(v) && fabs(v) < 1e15 ? json_integer((json_int_t)v) : json_real(v); }

json_t *mf_layer(const char *path, const void *data, size_t n, double x, double y, double scale) {
    json_t *a = mf_asset(path, data, n);
    if (!a || json_object_set_new(a, "x", number(x)) || json_object_set_new(a, "y", number(y)) ||
        json_object_set_new(a, "scale", number(scale))) {
        json_decref(a);
        return NULL;
    }
    return a;
}

uint32_t mf_color(const char *name) {
    uint64_t h = hash64(name, strlen(name), 0x5eed);
    uint32_t r = 0x40 + (uint32_t)(h & 0x7f), g = 0x40 + (uint32_t)((h >> 8) & 0x7f), b = 0x40 + (uint32_t)((h >> 16) & 0x7f);
    return r << 16 | g << 8 | b;
}
