// pack.c — a scenario pack's files from a folder or a zip (see pack.h).
//
// A zip is checked entry by entry when it is opened, so a refused archive is
// refused whole and before anything in it is read; the entries kept are
// sorted by case-folded name, which finds duplicates (neighbours) and serves
// lookups (binary search, then an exact compare: names are case-sensitive).
#include "story/pack.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/stat.h>
#include <unistd.h>
#include <zip.h>

#include "base/utf8.h"

typedef struct pack_entry {
    char *name;          // normalised: UTF-8, no trailing '/'
    zip_uint64_t index;  // in the archive
    uint64_t size;       // declared uncompressed bytes
    bool dir;
} pack_entry;

struct pack {
    bool zip;
    char *path;        // as given
    char *root_real;   // folder: realpath of path
    zip_t *za;         // zip: the archive
    char *prefix;      // zip: "" or "top/"
    pack_entry *e;     // (n) zip: sorted by case-folded name
    int n;
};

struct pack_file {
    pack *p;
    int fd;            // folder: the open file, else -1
    zip_file_t *zf;    // zip: the open entry
    char *rel;         // for messages
    uint64_t declared; // bytes the file says it has
    uint64_t limit;    // the caller's limit
    uint64_t total;    // bytes read so far
};

static const char *HINT_PATH = "use a relative path with '/' between folders, inside the scenario folder";
static const char *HINT_ZIP = "rebuild the zip from the scenario folder (e.g. `cd DIR && zip -r ../pack.zip .`)";

// --- path rules -------------------------------------------------------------------------

const char *pack_path_problem(const char *p, const char **hint) {
    *hint = HINT_PATH;
    size_t n = strlen(p);
    if (n == 0) return "the path is empty";
    if (n > SCN_MAX_PATH) return "the path is too long";
    if (strchr(p, '\\')) return "the path contains a backslash";
    if (p[0] == '/') return "the path is absolute";
    if (n >= 2 && p[1] == ':') return "the path starts with a drive letter";
    const char *c = p;
    for (;;) {
        const char *e = strchr(c, '/');
        size_t len = e ? (size_t)(e - c) : strlen(c);
        if (len == 0) return "the path has an empty component ('//' or a trailing '/')";
        if (len == 2 && c[0] == '.' && c[1] == '.') return "the path leaves the folder with '..'";
        if (len == 1 && c[0] == '.') return "the path has a '.' component";
        if (!e) break;
        c = e + 1;
    }
    return NULL;
}

// An entry name made printable for a message: control bytes become '?'.
static void show(const char *s, char out[160]) {
    size_t i = 0;
    for (; s[i] && i < 159; i++) out[i] = ((unsigned char)s[i] < 0x20 || s[i] == 0x7f) ? '?' : s[i];
    out[i] = 0;
}

// --- opening ---------------------------------------------------------------------------------

static int entry_cmp(const void *a, const void *b) {
    return strcasecmp(((const pack_entry *)a)->name, ((const pack_entry *)b)->name);
}

// The entry named exactly `name` (case-sensitive), or NULL.
static pack_entry *find_entry(const pack *p, const char *name) {
    pack_entry key = {.name = (char *)name};
    pack_entry *e = bsearch(&key, p->e, (size_t)p->n, sizeof *p->e, entry_cmp);
    return e && strcmp(e->name, name) == 0 ? e : NULL;
}

// Checks one entry's name, type, encryption, method and sizes; fills *e.
static sim_status zip_check_entry(pack *p, zip_uint64_t i, pack_entry *e, uint64_t *total, sim_err *err) {
    const char *raw = zip_get_name(p->za, i, 0);
    if (!raw) return err_set(err, SIM_ERR_FORMAT, "%s: entry %llu: %s", p->path, (unsigned long long)i, zip_strerror(p->za));
    char nm[160];
    show(zip_get_name(p->za, i, ZIP_FL_ENC_RAW), nm);
    size_t n = strlen(raw);
    if (n > SCN_MAX_PATH) return err_set(err, SIM_ERR_FORMAT, "%s: entry '%.100s...': the name is longer than %d bytes", p->path, nm, SCN_MAX_PATH);
    // Control bytes are looked for in the stored bytes: a name not flagged
    // UTF-8 comes back converted from CP437, where 0x07 is a bullet.
    const char *stored = zip_get_name(p->za, i, ZIP_FL_ENC_RAW);
    for (size_t k = 0; stored && stored[k]; k++)
        if ((unsigned char)stored[k] < 0x20 || stored[k] == 0x7f)
            return err_set(err, SIM_ERR_FORMAT, "%s: entry '%s': the name contains a control character", p->path, nm);
    if (!utf8_valid(raw, n)) return err_set(err, SIM_ERR_FORMAT, "%s: entry '%s': the name is not valid UTF-8", p->path, nm);
    bool dir = n > 0 && raw[n - 1] == '/';
    char *name = mem_strndup(raw, dir ? n - 1 : n);
    if (!name) return err_set(err, SIM_ERR_NOMEM, "%s: out of memory", p->path);
    e->name = name;
    const char *hint;
    const char *bad = pack_path_problem(name, &hint);
    if (bad) return err_set(err, SIM_ERR_FORMAT, "%s: entry '%s': %s", p->path, nm, bad);

    zip_uint8_t opsys;
    zip_uint32_t attr;
    if (zip_file_get_external_attributes(p->za, i, 0, &opsys, &attr) == 0 && opsys == ZIP_OPSYS_UNIX) {
        unsigned mode = (attr >> 16) & S_IFMT;
        if (mode == S_IFLNK) return err_set(err, SIM_ERR_FORMAT, "%s: entry '%s' is a symbolic link", p->path, nm);
        if (mode == S_IFDIR) dir = true;
        else if (mode != 0 && mode != S_IFREG)
            return err_set(err, SIM_ERR_FORMAT, "%s: entry '%s' is not a regular file or folder (mode 0%o)", p->path, nm, mode);
    }
    zip_stat_t st;
    zip_stat_init(&st);
    if (zip_stat_index(p->za, i, 0, &st) != 0)
        return err_set(err, SIM_ERR_FORMAT, "%s: entry '%s': %s", p->path, nm, zip_strerror(p->za));
    if ((st.valid & ZIP_STAT_ENCRYPTION_METHOD) && st.encryption_method != ZIP_EM_NONE)
        return err_set(err, SIM_ERR_UNSUPPORTED, "%s: entry '%s' is encrypted", p->path, nm);
    if (!(st.valid & ZIP_STAT_SIZE) || !(st.valid & ZIP_STAT_COMP_SIZE) || !(st.valid & ZIP_STAT_COMP_METHOD))
        return err_set(err, SIM_ERR_FORMAT, "%s: entry '%s' does not declare its sizes", p->path, nm);
    if (!dir && !zip_compression_method_supported(st.comp_method, 0))
        return err_set(err, SIM_ERR_UNSUPPORTED, "%s: entry '%s' uses compression method %d, which cannot be read (use deflate)",
                       p->path, nm, (int)st.comp_method);
    if (st.size > SCN_MAX_ASSET_BYTES)
        return err_set(err, SIM_ERR_RANGE, "%s: entry '%s' declares %llu bytes, more than the %llu-byte limit of one file", p->path,
                       nm, (unsigned long long)st.size, (unsigned long long)SCN_MAX_ASSET_BYTES);
    if (dir && st.size != 0) return err_set(err, SIM_ERR_FORMAT, "%s: entry '%s' is a folder with %llu bytes of data", p->path, nm, (unsigned long long)st.size);
    *total += st.size;
    if (*total > PACK_MAX_TOTAL)
        return err_set(err, SIM_ERR_RANGE, "%s: entry '%s' brings the unpacked size past the %llu-byte limit of a pack", p->path, nm,
                       (unsigned long long)PACK_MAX_TOTAL);
    if (st.size > ((uint64_t)1 << 20) && (st.comp_size == 0 || st.size / st.comp_size > PACK_MAX_RATIO))
        return err_set(err, SIM_ERR_RANGE, "%s: entry '%s' unpacks %llu bytes from %llu (a ratio above %d:1: a zip bomb?)", p->path,
                       nm, (unsigned long long)st.size, (unsigned long long)st.comp_size, PACK_MAX_RATIO);
    e->index = i;
    e->size = st.size;
    e->dir = dir;
    return SIM_OK;
}

static sim_status zip_load(pack *p, int fd, sim_err *err) {
    zip_error_t ze;
    zip_error_init(&ze);
    FILE *fp = fdopen(fd, "rb");
    zip_source_t *src = fp ? zip_source_filep_create(fp, 0, -1, &ze) : NULL;
    if (!src) {
        if (fp) fclose(fp);
        else close(fd);
        zip_error_fini(&ze);
        return err_set(err, SIM_ERR_NOMEM, "%s: out of memory", p->path);
    }
    p->za = zip_open_from_source(src, ZIP_CHECKCONS | ZIP_RDONLY, &ze);
    // libzip refuses duplicate names without naming them: open again without
    // the consistency checks, and the walk below names the duplicate.
    if (!p->za && zip_error_code_zip(&ze) == ZIP_ER_EXISTS) {
        zip_error_fini(&ze);
        zip_error_init(&ze);
        p->za = zip_open_from_source(src, ZIP_RDONLY, &ze);
    }
    if (!p->za) {
        zip_source_free(src); // closes fp
        sim_status rc = err_set(err, zip_error_code_zip(&ze) == ZIP_ER_MEMORY ? SIM_ERR_NOMEM : SIM_ERR_FORMAT,
                                "%s is not a folder or a readable zip file: %s", p->path, zip_error_strerror(&ze));
        zip_error_fini(&ze);
        return rc;
    }
    zip_error_fini(&ze);
    zip_int64_t n = zip_get_num_entries(p->za, 0);
    if (n < 0 || n > PACK_MAX_ENTRIES)
        return err_set(err, SIM_ERR_RANGE, "%s: %lld entries, more than the limit of %d", p->path, (long long)n, PACK_MAX_ENTRIES);
    p->e = mem_calloc(n ? (size_t)n : 1, sizeof *p->e);
    if (!p->e) return err_set(err, SIM_ERR_NOMEM, "%s: out of memory", p->path);
    uint64_t total = 0;
    for (zip_int64_t i = 0; i < n; i++) {
        sim_status rc = zip_check_entry(p, (zip_uint64_t)i, &p->e[p->n], &total, err);
        if (p->e[p->n].name) p->n++;
        if (rc != SIM_OK) return rc;
    }
    qsort(p->e, (size_t)p->n, sizeof *p->e, entry_cmp);
    char a[160], b[160];
    for (int i = 1; i < p->n; i++)
        if (strcasecmp(p->e[i - 1].name, p->e[i].name) == 0) {
            show(p->e[i - 1].name, a);
            show(p->e[i].name, b);
            return err_set(err, SIM_ERR_FORMAT, "%s: entry '%s' is a duplicate of '%s'%s", p->path, b, a,
                           strcmp(a, b) ? " (names may not differ only in case)" : "");
        }
    // A file may not also be a folder of other entries ("a" and "a/b").
    for (int i = 0; i < p->n; i++) {
        const char *s = p->e[i].name;
        char dirname[SCN_MAX_PATH + 1];
        for (const char *q = strchr(s, '/'); q; q = strchr(q + 1, '/')) {
            memcpy(dirname, s, (size_t)(q - s));
            dirname[q - s] = 0;
            pack_entry key = {.name = dirname};
            pack_entry *f = bsearch(&key, p->e, (size_t)p->n, sizeof *p->e, entry_cmp);
            if (f && !f->dir) {
                show(s, a);
                show(f->name, b);
                return err_set(err, SIM_ERR_FORMAT, "%s: entry '%s' is inside '%s', which is a file", p->path, a, b);
            }
        }
    }
    // manifest.json at the root, or one top-level folder (a __MACOSX folder aside).
    const char *top = NULL;
    size_t top_len = 0;
    bool root_file = false, single = true;
    for (int i = 0; i < p->n; i++) {
        const char *s = p->e[i].name, *sl = strchr(s, '/');
        size_t len = sl ? (size_t)(sl - s) : strlen(s);
        if (len == 8 && strncmp(s, "__MACOSX", 8) == 0) continue;
        if (!sl && !p->e[i].dir) root_file = true;
        if (!top) top = s, top_len = len;
        else if (len != top_len || strncmp(s, top, len) != 0) single = false;
    }
    const char *pre = "";
    if (!find_entry(p, "manifest.json") && !root_file && single && top) pre = top;
    else top_len = 0;
    p->prefix = mem_alloc(top_len + 2);
    if (!p->prefix) return err_set(err, SIM_ERR_NOMEM, "%s: out of memory", p->path);
    memcpy(p->prefix, pre, top_len);
    if (top_len) p->prefix[top_len++] = '/';
    p->prefix[top_len] = 0;
    return SIM_OK;
}

sim_status pack_open(pack **out, const char *path, sim_err *err) {
    *out = NULL;
    pack *p = mem_calloc(1, sizeof *p);
    if (!p || !(p->path = mem_strdup(path))) {
        mem_free(p);
        return err_set(err, SIM_ERR_NOMEM, "%s: out of memory", path);
    }
    struct stat st;
    sim_status rc = SIM_OK;
    if (stat(path, &st) != 0) {
        rc = err_set(err, SIM_ERR_IO, "%s is not a folder or a zip file: %s", path, strerror(errno));
    } else if (S_ISDIR(st.st_mode)) {
        if (!(p->root_real = realpath(path, NULL)))
            rc = err_set(err, errno == ENOMEM ? SIM_ERR_NOMEM : SIM_ERR_IO, "%s: %s", path, strerror(errno));
    } else if (!S_ISREG(st.st_mode)) {
        rc = err_set(err, SIM_ERR_IO, "%s is not a folder or a zip file", path);
    } else {
        p->zip = true;
        int fd = open(path, O_RDONLY | O_CLOEXEC | O_NONBLOCK);
        if (fd < 0 || fstat(fd, &st) != 0 || !S_ISREG(st.st_mode)) {
            rc = err_set(err, SIM_ERR_IO, "cannot open %s: %s", path, fd < 0 ? strerror(errno) : "not a regular file");
            if (fd >= 0) close(fd);
        } else {
            rc = zip_load(p, fd, err);
        }
    }
    if (rc != SIM_OK) {
        pack_close(p);
        return rc;
    }
    *out = p;
    return SIM_OK;
}

void pack_close(pack *p) {
    if (!p) return;
    if (p->za) zip_discard(p->za);
    for (int i = 0; i < p->n; i++) mem_free(p->e[i].name);
    mem_free(p->e);
    mem_free(p->prefix);
    free(p->root_real);
    mem_free(p->path);
    mem_free(p);
}

bool pack_is_zip(const pack *p) { return p->zip; }
const char *pack_prefix(const pack *p) { return p->zip ? p->prefix : ""; }
int pack_n_entries(const pack *p) { return p->n; }

const char *pack_entry_name(const pack *p, int i, bool *is_dir) {
    ASSERT(i >= 0 && i < p->n);
    if (is_dir) *is_dir = p->e[i].dir;
    return p->e[i].name;
}

// --- files ---------------------------------------------------------------------------------------

// The zip entry of rel (path rules already checked), or NULL with the error.
static pack_entry *zip_lookup(pack *p, const char *rel, const char **hint, sim_err *err) {
    size_t pl = strlen(p->prefix), rl = strlen(rel);
    char *full = mem_alloc(pl + rl + 1);
    if (!full) {
        err_set(err, SIM_ERR_NOMEM, "out of memory");
        return NULL;
    }
    memcpy(full, p->prefix, pl);
    memcpy(full + pl, rel, rl + 1);
    pack_entry *e = find_entry(p, full);
    if (!e) {
        *hint = "add the file to the zip, or correct the path (paths are case-sensitive)";
        err_set(err, SIM_ERR_IO, "the file '%.150s' does not exist (the zip has no entry '%.150s')", rel, full);
    } else if (e->dir) {
        *hint = "point to a file, not a folder or device";
        err_set(err, SIM_ERR_FORMAT, "'%.150s' is not a regular file (zip entry '%.150s' is a folder)", rel, full);
        e = NULL;
    }
    mem_free(full);
    return e;
}

// Folder: the checks up to (not including) opening. *real is the resolved path (free()).
static sim_status dir_resolve(pack *p, const char *rel, char **real, uint64_t *size, const char **hint, sim_err *err) {
    *real = NULL;
    size_t dl = strlen(p->path), rl = strlen(rel);
    char *full = mem_alloc(dl + rl + 2);
    if (!full) return err_set(err, SIM_ERR_NOMEM, "out of memory");
    snprintf(full, dl + rl + 2, "%s/%s", p->path, rel);
    char *r = realpath(full, NULL);
    int e = errno;
    mem_free(full);
    if (!r) {
        if (e == ENOENT || e == ENOTDIR) {
            *hint = "add the file, or correct the path (paths are case-sensitive)";
            return err_set(err, SIM_ERR_IO, "the file '%.150s' does not exist", rel);
        }
        *hint = "check the file's permissions";
        return err_set(err, e == ENOMEM ? SIM_ERR_NOMEM : SIM_ERR_IO, "cannot resolve '%.150s': %s", rel, strerror(e));
    }
    size_t ql = strlen(p->root_real);
    if (strncmp(r, p->root_real, ql) != 0 || r[ql] != '/') {
        free(r);
        *hint = "copy the file into the folder instead of linking to it";
        return err_set(err, SIM_ERR_FORMAT, "'%.150s' resolves outside the scenario folder (through a symlink)", rel);
    }
    // stat before open: opening a FIFO would block.
    struct stat st;
    if (stat(r, &st) == 0 && !S_ISREG(st.st_mode)) {
        free(r);
        *hint = "point to a file, not a folder or device";
        return err_set(err, SIM_ERR_FORMAT, "'%.150s' is not a regular file", rel);
    }
    *size = (uint64_t)st.st_size;
    *real = r;
    return SIM_OK;
}

sim_status pack_stat(pack *p, const char *rel, uint64_t *size, const char **hint, sim_err *err) {
    const char *h;
    if (!hint) hint = &h;
    *size = 0;
    const char *bad = pack_path_problem(rel, hint);
    if (bad) return err_set(err, SIM_ERR_FORMAT, "%s: '%.200s'", bad, rel);
    if (p->zip) {
        pack_entry *e = zip_lookup(p, rel, hint, err);
        if (!e) return err->code;
        *size = e->size;
        return SIM_OK;
    }
    char *real;
    sim_status rc = dir_resolve(p, rel, &real, size, hint, err);
    free(real);
    return rc;
}

static sim_status too_big(const char *rel, uint64_t size, uint64_t max, const char **hint, sim_err *err) {
    *hint = "compress or shrink the file";
    return err_set(err, SIM_ERR_RANGE, "'%.150s' is %llu bytes, more than the %llu-byte limit", rel, (unsigned long long)size,
                   (unsigned long long)max);
}

sim_status pack_file_open(pack *p, const char *rel, uint64_t max, pack_file **out, uint64_t *size, const char **hint,
                          sim_err *err) {
    const char *h;
    if (!hint) hint = &h;
    *out = NULL;
    *size = 0;
    const char *bad = pack_path_problem(rel, hint);
    if (bad) return err_set(err, SIM_ERR_FORMAT, "%s: '%.200s'", bad, rel);
    pack_file *f = mem_calloc(1, sizeof *f);
    if (!f || !(f->rel = mem_strdup(rel))) {
        mem_free(f);
        return err_set(err, SIM_ERR_NOMEM, "out of memory");
    }
    f->p = p;
    f->fd = -1;
    f->limit = max;
    sim_status rc = SIM_OK;
    if (p->zip) {
        pack_entry *e = zip_lookup(p, rel, hint, err);
        if (!e) rc = err->code;
        else if (e->size > max) rc = too_big(rel, e->size, max, hint, err);
        else if (!(f->zf = zip_fopen_index(p->za, e->index, 0))) {
            *hint = HINT_ZIP;
            rc = err_set(err, SIM_ERR_FORMAT, "cannot read zip entry '%s%.150s': %s", p->prefix, rel, zip_strerror(p->za));
        } else f->declared = e->size;
    } else {
        char *real;
        uint64_t sz;
        rc = dir_resolve(p, rel, &real, &sz, hint, err);
        if (rc == SIM_OK) {
            // O_NOFOLLOW and O_NONBLOCK guard against the file being swapped in between.
            struct stat st;
            f->fd = open(real, O_RDONLY | O_CLOEXEC | O_NOFOLLOW | O_NONBLOCK);
            if (f->fd < 0 || fstat(f->fd, &st) != 0) {
                *hint = "check the file's permissions";
                rc = err_set(err, SIM_ERR_IO, "cannot open '%.150s': %s", rel, strerror(errno));
            } else if (!S_ISREG(st.st_mode)) {
                *hint = "point to a file, not a folder or device";
                rc = err_set(err, SIM_ERR_FORMAT, "'%.150s' is not a regular file", rel);
            } else if ((uint64_t)st.st_size > max) {
                rc = too_big(rel, (uint64_t)st.st_size, max, hint, err);
            } else f->declared = (uint64_t)st.st_size;
            free(real);
        }
    }
    if (rc != SIM_OK) {
        pack_file_close(f);
        return rc;
    }
    *size = f->declared;
    *out = f;
    return SIM_OK;
}

sim_status pack_file_read(pack_file *f, void *buf, size_t cap, size_t *n, const char **hint, sim_err *err) {
    const char *h;
    if (!hint) hint = &h;
    *n = 0;
    if (f->zf) {
        // Ask for one byte more than may remain, so data past the declared size shows.
        uint64_t room = MIN(f->declared, f->limit) - f->total;
        size_t want = (size_t)MIN((uint64_t)cap, room + 1);
        zip_int64_t r = want ? zip_fread(f->zf, buf, want) : 0;
        *hint = HINT_ZIP;
        if (r < 0)
            return err_set(err, SIM_ERR_FORMAT, "cannot read zip entry '%s%.150s': %s", f->p->prefix, f->rel, zip_file_strerror(f->zf));
        if ((uint64_t)r > room)
            return err_set(err, SIM_ERR_FORMAT, "zip entry '%s%.150s' holds more data than the %llu bytes it declares", f->p->prefix,
                           f->rel, (unsigned long long)f->declared);
        if (r == 0 && f->total != f->declared)
            return err_set(err, SIM_ERR_FORMAT, "zip entry '%s%.150s' holds %llu bytes, not the %llu it declares", f->p->prefix, f->rel,
                           (unsigned long long)f->total, (unsigned long long)f->declared);
        f->total += (uint64_t)r;
        *n = (size_t)r;
        return SIM_OK;
    }
    for (;;) {
        ssize_t r = read(f->fd, buf, cap);
        if (r < 0 && errno == EINTR) continue;
        if (r < 0) {
            *hint = "check the file";
            return err_set(err, SIM_ERR_IO, "cannot read '%.150s': %s", f->rel, strerror(errno));
        }
        f->total += (uint64_t)r;
        if (f->total > f->limit) {
            *hint = "check the file";
            return err_set(err, SIM_ERR_RANGE, "'%.150s' grew past the size limit while being read", f->rel);
        }
        *n = (size_t)r;
        return SIM_OK;
    }
}

void pack_file_close(pack_file *f) {
    if (!f) return;
    if (f->fd >= 0) close(f->fd);
    if (f->zf) zip_fclose(f->zf);
    mem_free(f->rel);
    mem_free(f);
}

sim_status pack_read(pack *p, const char *rel, size_t max, char **out, size_t *len, const char **hint, sim_err *err) {
    const char *h;
    if (!hint) hint = &h;
    *out = NULL;
    *len = 0;
    pack_file *f;
    uint64_t size;
    sim_status rc = pack_file_open(p, rel, max, &f, &size, hint, err);
    if (rc != SIM_OK) return rc;
    // The buffer grows with the data: a folder file may grow while it is read.
    size_t cap = (size_t)MIN(size, (uint64_t)max) + 1, n = 0, got;
    char *buf = mem_alloc(cap);
    if (!buf) goto nomem;
    for (;;) {
        if (n + 1 == cap) {
            if (n == max) { // full: one more byte tells whether the file is too big
                char extra;
                if ((rc = pack_file_read(f, &extra, 1, &got, hint, err)) != SIM_OK) goto fail;
                if (got) {
                    rc = too_big(rel, (uint64_t)n + 1, max, hint, err);
                    goto fail;
                }
                break;
            }
            size_t nc = cap > max / 2 ? max + 1 : cap * 2;
            char *nb = mem_realloc(buf, nc);
            if (!nb) goto nomem;
            buf = nb;
            cap = nc;
        }
        if ((rc = pack_file_read(f, buf + n, cap - 1 - n, &got, hint, err)) != SIM_OK) goto fail;
        if (got == 0) break;
        n += got;
    }
    pack_file_close(f);
    buf[n] = 0;
    *out = buf;
    *len = n;
    return SIM_OK;
nomem:
    rc = err_set(err, SIM_ERR_NOMEM, "out of memory");
fail:
    pack_file_close(f);
    mem_free(buf);
    return rc;
}

bool pack_exists(pack *p, const char *rel) {
    const char *hint;
    if (pack_path_problem(rel, &hint)) return false;
    char full[2 * SCN_MAX_PATH + 4096]; // no allocation: a failure here would go unreported
    if (snprintf(full, sizeof full, "%s%s%s", p->zip ? p->prefix : p->path, p->zip ? "" : "/", rel) >= (int)sizeof full)
        return true; // let the read report it
    if (p->zip) return find_entry(p, full) != NULL;
    struct stat st;
    return lstat(full, &st) == 0;
}
