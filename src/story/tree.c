// tree.c — the story tree in SQLite (see tree.h for the model and the schema).
//
// Every public function takes the mutex, checks its arguments, then runs
// prepared statements with bound parameters (no value is ever formatted
// into SQL). Writes of more than one row run inside BEGIN IMMEDIATE ...
// COMMIT and roll back on any error.
#include "story/tree.h"

#include <jansson.h>
#include <pthread.h>
#include <sqlite3.h>
#include <stdio.h>
#include <string.h>
#include <strings.h>
#include <sys/stat.h>
#include <time.h>

#include "base/utf8.h"

// Public functions accept err == NULL; internally err is always valid.
#define ERR_LOCAL(err)                                                                 \
    sim_err err_local_;                                                                \
    if (!(err)) (err) = &err_local_

struct tree_db {
    sqlite3 *sql;
    pthread_mutex_t mu;
};

// --- helpers -------------------------------------------------------------------------

static int64_t now_ms(void) {
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

static sim_status status_of(int rc) {
    switch (rc & 0xff) {
    case SQLITE_BUSY:
    case SQLITE_LOCKED: return SIM_ERR_BUSY;
    case SQLITE_NOMEM: return SIM_ERR_NOMEM;
    case SQLITE_CORRUPT:
    case SQLITE_NOTADB: return SIM_ERR_FORMAT;
    case SQLITE_CONSTRAINT:
    case SQLITE_MISMATCH:
    case SQLITE_TOOBIG: return SIM_ERR_ARG;
    default: return SIM_ERR_IO;
    }
}

static sim_status sql_fail(sqlite3 *sql, sim_err *err, const char *what) {
    int rc = sqlite3_extended_errcode(sql);
    return err_set(err, status_of(rc), "%s: %s", what, sqlite3_errmsg(sql));
}

static sqlite3_stmt *prep(tree_db *db, const char *q, sim_err *err) {
    sqlite3_stmt *st = NULL;
    if (sqlite3_prepare_v2(db->sql, q, -1, &st, NULL) != SQLITE_OK) {
        sql_fail(db->sql, err, "sqlite prepare");
        sqlite3_finalize(st);
        return NULL;
    }
    return st;
}

// Steps a statement that returns no row (or whose row is not wanted).
static sim_status step_done(tree_db *db, sqlite3_stmt *st, sim_err *err) {
    int rc = sqlite3_step(st);
    if (rc == SQLITE_DONE || rc == SQLITE_ROW) return SIM_OK;
    return sql_fail(db->sql, err, "sqlite");
}

static sim_status exec(tree_db *db, const char *q, sim_err *err) {
    char *msg = NULL;
    if (sqlite3_exec(db->sql, q, NULL, NULL, &msg) != SQLITE_OK) {
        sim_status s = err_set(err, status_of(sqlite3_extended_errcode(db->sql)), "sqlite: %s",
                               msg ? msg : sqlite3_errmsg(db->sql));
        sqlite3_free(msg);
        return s;
    }
    return SIM_OK;
}

static void bind_id(sqlite3_stmt *st, int i, int64_t id) { // 0 -> NULL
    if (id) sqlite3_bind_int64(st, i, id);
    else sqlite3_bind_null(st, i);
}

static void bind_str(sqlite3_stmt *st, int i, const char *s) { // NULL -> NULL
    if (s) sqlite3_bind_text(st, i, s, -1, SQLITE_STATIC);
    else sqlite3_bind_null(st, i);
}

// A copy of a text column (NULL stays NULL). False when memory ran out.
static bool col_str(sqlite3_stmt *st, int i, char **out) {
    *out = NULL;
    if (sqlite3_column_type(st, i) == SQLITE_NULL) return true;
    const unsigned char *t = sqlite3_column_text(st, i);
    int n = sqlite3_column_bytes(st, i);
    if (!t) return false; // a non-NULL column without text: out of memory
    *out = mem_strndup((const char *)t, (size_t)n);
    return *out != NULL;
}

static sim_status nomem(sim_err *err) { return err_set(err, SIM_ERR_NOMEM, "out of memory"); }

// Grows *a (of elem bytes each) to hold n+1; false when memory ran out.
static bool grow(void **a, int n, int *cap, size_t elem) {
    if (n < *cap) return true;
    int nc = *cap ? *cap * 2 : 8;
    size_t bytes;
    if (!size_mul((size_t)nc, elem, &bytes)) return false;
    void *p = mem_realloc(*a, bytes);
    if (!p) return false;
    *a = p;
    *cap = nc;
    return true;
}

// --- statements ----------------------------------------------------------------------
//
// A statement is its SQL and its parameters ?1, ?2 ... in order, written as
//
//     run(db, "UPDATE upd SET thumbs = ?1 WHERE id = ?2", ARGS(ARG_INT(thumbs), ARG_INT(id)), NULL, err);
//
// run() steps a statement whose rows are not wanted, run_row() reads its
// first row, run_list() reads every row into a new array. Each prepares,
// binds, steps and finalizes, and reports SQLite failures as sql_fail does.

typedef struct sql_arg {
    enum { SQL_INT, SQL_ID, SQL_STR, SQL_REAL, SQL_BLOB } kind;
    int64_t i;     // SQL_INT, SQL_ID (0 binds NULL)
    double d;      // SQL_REAL
    const void *p; // SQL_STR (NUL-terminated), SQL_BLOB (n bytes); NULL binds NULL
    size_t n;
} sql_arg;

#define ARG_INT(v) {.kind = SQL_INT, .i = (v)}
#define ARG_ID(v) {.kind = SQL_ID, .i = (v)}
#define ARG_STR(v) {.kind = SQL_STR, .p = (v)}
#define ARG_REAL(v) {.kind = SQL_REAL, .d = (v)}
#define ARG_BLOB(v, len) {.kind = SQL_BLOB, .p = (v), .n = (len)}
// The (array, count) pair the run functions take.
#define ARGS(...) (const sql_arg[]){__VA_ARGS__}, (int)ARRAY_LEN(((const sql_arg[]){__VA_ARGS__}))

// Reads the current row into out; false when memory ran out (out is then
// left with nothing to free).
typedef bool (*row_read_fn)(sqlite3_stmt *st, void *out);

// How run_list reads rows into array elements.
typedef struct row_kind {
    size_t size;          // bytes of one element
    row_read_fn read;
    void (*free)(void *); // frees what read allocated in an element (not the element); NULL: nothing
    const char *what;     // names a failed step in the message; NULL: "sqlite"
} row_kind;

// Prepares q and binds args[0..nargs); NULL (err set) on failure.
static sqlite3_stmt *prep_args(tree_db *db, const char *q, const sql_arg *args, int nargs, sim_err *err) {
    sqlite3_stmt *st = prep(db, q, err);
    for (int i = 0; st && i < nargs; i++) {
        const sql_arg *a = &args[i];
        switch (a->kind) {
        case SQL_INT: sqlite3_bind_int64(st, i + 1, a->i); break;
        case SQL_ID: bind_id(st, i + 1, a->i); break;
        case SQL_STR: bind_str(st, i + 1, a->p); break;
        case SQL_REAL: sqlite3_bind_double(st, i + 1, a->d); break;
        case SQL_BLOB:
            if (a->p) sqlite3_bind_blob64(st, i + 1, a->p, a->n, SQLITE_STATIC);
            else sqlite3_bind_null(st, i + 1);
            break;
        }
    }
    return st;
}

// Runs a statement whose rows (if any) are not wanted; *rowid (unless NULL)
// gets the id of the row it inserted.
static sim_status run(tree_db *db, const char *q, const sql_arg *args, int nargs, int64_t *rowid, sim_err *err) {
    sqlite3_stmt *st = prep_args(db, q, args, nargs, err);
    if (!st) return err->code;
    sim_status s = step_done(db, st, err);
    if (s == SIM_OK && rowid) *rowid = sqlite3_last_insert_rowid(db->sql);
    sqlite3_finalize(st);
    return s;
}

// Runs q and reads its first row with read into out. *found: there was a
// row (when false, out is untouched).
static sim_status run_row(tree_db *db, const char *q, const sql_arg *args, int nargs, row_read_fn read, void *out,
                          bool *found, sim_err *err) {
    *found = false;
    sqlite3_stmt *st = prep_args(db, q, args, nargs, err);
    if (!st) return err->code;
    int rc = sqlite3_step(st);
    sim_status s = SIM_OK;
    if (rc == SQLITE_ROW) {
        *found = true;
        if (!read(st, out)) s = nomem(err);
    } else if (rc != SQLITE_DONE) s = sql_fail(db->sql, err, "sqlite");
    sqlite3_finalize(st);
    return s;
}

// run_row of q with ?1 = id, which must find a row: otherwise SIM_ERR_ARG
// "<what> <id> not found".
static sim_status run_get(tree_db *db, const char *q, int64_t id, row_read_fn read, void *out, const char *what,
                          sim_err *err) {
    bool found;
    sim_status s = run_row(db, q, ARGS(ARG_INT(id)), read, out, &found, err);
    if (s == SIM_OK && !found) return err_set(err, SIM_ERR_ARG, "%s %lld not found", what, (long long)id);
    return s;
}

// Runs q and reads every row into a new array of kind->size elements (q
// carries its own LIMIT). On success *out (NULL when there are none) and
// *n are the caller's; on error *out is NULL, *n 0 and nothing is kept.
// Frees n elements of kind (what read allocated in each) and the array.
static void rows_free(void *a, int n, const row_kind *kind) {
    if (!a) return;
    for (int i = 0; kind->free && i < n; i++) kind->free((char *)a + (size_t)i * kind->size);
    mem_free(a);
}

static sim_status run_list(tree_db *db, const char *q, const sql_arg *args, int nargs, const row_kind *kind,
                           void **out, int *n, sim_err *err) {
    *out = NULL;
    *n = 0;
    sqlite3_stmt *st = prep_args(db, q, args, nargs, err);
    if (!st) return err->code;
    void *a = NULL;
    int cnt = 0, cap = 0, rc;
    sim_status s = SIM_OK;
    while ((rc = sqlite3_step(st)) == SQLITE_ROW) {
        if (!grow(&a, cnt, &cap, kind->size) || !kind->read(st, (char *)a + (size_t)cnt * kind->size)) {
            s = nomem(err);
            break;
        }
        cnt++;
    }
    if (s == SIM_OK && rc != SQLITE_DONE) s = sql_fail(db->sql, err, kind->what ? kind->what : "sqlite");
    sqlite3_finalize(st);
    if (s != SIM_OK) {
        rows_free(a, cnt, kind);
        return s;
    }
    *out = a;
    *n = cnt;
    return SIM_OK;
}

static bool read_id(sqlite3_stmt *st, void *out) {
    *(int64_t *)out = sqlite3_column_int64(st, 0);
    return true;
}

static const row_kind ID_ROWS = {.size = sizeof(int64_t), .read = read_id};

// Checks a string argument: present (unless optional), at most max bytes, UTF-8.
static sim_status check_str(const char *s, size_t max, bool optional, bool nonempty, const char *what,
                            sim_err *err) {
    if (!s) return optional ? SIM_OK : err_set(err, SIM_ERR_ARG, "%s is missing", what);
    size_t n = strnlen(s, max + 1);
    if (n > max) return err_set(err, SIM_ERR_RANGE, "%s is longer than %zu bytes", what, max);
    if (nonempty && n == 0) return err_set(err, SIM_ERR_ARG, "%s is empty", what);
    if (!utf8_valid(s, n)) return err_set(err, SIM_ERR_FORMAT, "%s is not valid UTF-8", what);
    return SIM_OK;
}

// Checks optional JSON text; want_array: it must be an array.
static sim_status check_json(const char *s, bool want_array, const char *what, sim_err *err) {
    sim_status st = check_str(s, TREE_MAX_JSON, true, false, what, err);
    if (st != SIM_OK || !s) return st;
    json_error_t je;
    json_t *j = json_loads(s, JSON_DECODE_ANY, &je);
    if (!j) return err_set(err, SIM_ERR_FORMAT, "%s: invalid JSON: %s (line %d, column %d)", what, je.text,
                           je.line, je.column);
    bool ok = !want_array || json_is_array(j);
    json_decref(j);
    if (!ok) return err_set(err, SIM_ERR_FORMAT, "%s: expected a JSON array", what);
    return SIM_OK;
}

static sim_status check_user(const char *user, sim_err *err) {
    return check_str(user, TREE_MAX_NAME, true, true, "user", err);
}

static void lock(tree_db *db) { ASSERT(pthread_mutex_lock(&db->mu) == 0); }
static void unlock(tree_db *db) { ASSERT(pthread_mutex_unlock(&db->mu) == 0); }

static sim_status begin(tree_db *db, sim_err *err) { return exec(db, "BEGIN IMMEDIATE", err); }

// Commits when st is SIM_OK, else rolls back; returns the final status.
static sim_status finish(tree_db *db, sim_status st, sim_err *err) {
    if (st == SIM_OK) {
        st = exec(db, "COMMIT", err);
        if (st == SIM_OK) return SIM_OK;
    }
    if (!sqlite3_get_autocommit(db->sql)) sqlite3_exec(db->sql, "ROLLBACK", NULL, NULL, NULL);
    return st;
}

// What the access checks read: a row's story and parent (0 when the query
// has none) and its story's owner (NULL: none).
typedef struct owner_row {
    int64_t story, parent;
    char *owner;
} owner_row;

static bool read_owner_row(sqlite3_stmt *st, void *out) {
    owner_row *r = out;
    r->story = sqlite3_column_int64(st, 0);
    r->parent = sqlite3_column_int64(st, 1); // NULL reads as 0
    return col_str(st, 2, &r->owner);
}

// Reads the owner_row of q (?1 = id). SIM_OK when the row exists and its
// owner lets user in, SIM_ERR_ARG when not (the caller says "not found");
// SIM_ERR_NOMEM when the owner could not be read (never taken for "no owner").
static sim_status access_row(tree_db *db, const char *q, int64_t id, const char *user, owner_row *r, sim_err *err) {
    bool found;
    sim_status s = run_row(db, q, ARGS(ARG_INT(id)), read_owner_row, r, &found, err);
    if (s == SIM_OK && !found) s = SIM_ERR_ARG;
    if (s == SIM_OK && r->owner && !(user && strcmp(r->owner, user) == 0)) s = SIM_ERR_ARG;
    mem_free(r->owner);
    r->owner = NULL;
    return s;
}

// The story exists and user may see it.
static sim_status story_access(tree_db *db, const char *user, int64_t story, sim_err *err) {
    if (story <= 0) return err_set(err, SIM_ERR_ARG, "story %lld not found", (long long)story);
    owner_row r = {0};
    sim_status s = access_row(db, "SELECT id, NULL, owner FROM story WHERE id = ?1", story, user, &r, err);
    if (s == SIM_ERR_ARG) return err_set(err, s, "story %lld not found", (long long)story);
    return s;
}

// The update exists and user may see its story; its story and parent out.
static sim_status update_access(tree_db *db, const char *user, int64_t id, int64_t *story, int64_t *parent,
                                sim_err *err) {
    if (id <= 0) return err_set(err, SIM_ERR_ARG, "update %lld not found", (long long)id);
    owner_row r = {0};
    sim_status s = access_row(
        db, "SELECT u.story, u.parent, s.owner FROM upd u JOIN story s ON s.id = u.story WHERE u.id = ?1", id, user,
        &r, err);
    if (s == SIM_ERR_ARG) return err_set(err, s, "update %lld not found", (long long)id);
    if (story) *story = r.story;
    if (parent) *parent = r.parent;
    return s;
}

// update (non-zero) belongs to story (which the caller already checked).
static sim_status update_in_story(tree_db *db, int64_t story, int64_t update, sim_err *err) {
    int64_t one;
    bool found;
    sim_status s = run_row(db, "SELECT 1 FROM upd WHERE id = ?1 AND story = ?2",
                           ARGS(ARG_INT(update), ARG_INT(story)), read_id, &one, &found, err);
    if (s == SIM_OK && !found)
        return err_set(err, SIM_ERR_ARG, "update %lld not found in story %lld", (long long)update, (long long)story);
    return s;
}

// Checks user, then under the lock: when user may see story, reads the
// rows of q (NULL: none) as run_list does.
static sim_status story_rows(tree_db *db, const char *user, int64_t story, const char *q, const sql_arg *args,
                             int nargs, const row_kind *kind, void **out, int *n, sim_err *err) {
    *out = NULL;
    *n = 0;
    sim_status s = check_user(user, err);
    if (s) return s;
    lock(db);
    s = story_access(db, user, story, err);
    if (s == SIM_OK && q) s = run_list(db, q, args, nargs, kind, out, n, err);
    unlock(db);
    return s;
}

// Under the lock: when user may see story and update (0: none) is one of
// its updates, runs the insert q; *id (unless NULL) gets the new row's id.
static sim_status story_insert(tree_db *db, const char *user, int64_t story, int64_t update, const char *q,
                               const sql_arg *args, int nargs, int64_t *id, sim_err *err) {
    lock(db);
    sim_status s = story_access(db, user, story, err);
    if (s == SIM_OK && update) s = update_in_story(db, story, update, err);
    if (s == SIM_OK) s = run(db, q, args, nargs, id, err);
    unlock(db);
    return s;
}

// --- opening -------------------------------------------------------------------------

static const char *const SCHEMA =
    "CREATE TABLE story("
    "  id INTEGER PRIMARY KEY,"
    "  scenario TEXT NOT NULL, scenario_version TEXT NOT NULL, episode TEXT NOT NULL,"
    "  owner TEXT, title TEXT NOT NULL,"
    "  head INTEGER, first_chosen INTEGER,"
    "  created INTEGER NOT NULL, updated INTEGER NOT NULL);"
    "CREATE INDEX story_owner ON story(owner, scenario, created);"
    "CREATE TABLE upd("
    "  id INTEGER PRIMARY KEY,"
    "  story INTEGER NOT NULL REFERENCES story(id),"
    "  parent INTEGER REFERENCES upd(id),"
    "  speaker TEXT NOT NULL, commands TEXT, text TEXT NOT NULL,"
    "  minutes INTEGER NOT NULL, stage TEXT,"
    "  source TEXT NOT NULL CHECK(source IN ('model', 'player', 'script')),"
    "  edit_of INTEGER REFERENCES upd(id),"
    "  chosen INTEGER,"
    "  thumbs INTEGER NOT NULL DEFAULT 0 CHECK(thumbs BETWEEN -1 AND 1),"
    "  created INTEGER NOT NULL);"
    "CREATE INDEX upd_children ON upd(story, parent, id);"
    "CREATE INDEX upd_parent ON upd(parent);"
    "CREATE INDEX upd_edit_of ON upd(edit_of);"
    "CREATE VIRTUAL TABLE upd_fts USING fts5(text, content='upd', content_rowid='id',"
    "  tokenize='unicode61 remove_diacritics 2');"
    "CREATE TRIGGER upd_fts_ai AFTER INSERT ON upd BEGIN"
    "  INSERT INTO upd_fts(rowid, text) VALUES (new.id, new.text); END;"
    "CREATE TRIGGER upd_fts_ad AFTER DELETE ON upd BEGIN"
    "  INSERT INTO upd_fts(upd_fts, rowid, text) VALUES ('delete', old.id, old.text); END;"
    "CREATE TRIGGER upd_fts_au AFTER UPDATE OF text ON upd BEGIN"
    "  INSERT INTO upd_fts(upd_fts, rowid, text) VALUES ('delete', old.id, old.text);"
    "  INSERT INTO upd_fts(rowid, text) VALUES (new.id, new.text); END;"
    "CREATE TABLE checkpoint("
    "  id INTEGER PRIMARY KEY,"
    "  story INTEGER NOT NULL REFERENCES story(id),"
    "  upd INTEGER NOT NULL REFERENCES upd(id),"
    "  summary TEXT NOT NULL, stage TEXT, state_path TEXT, created INTEGER NOT NULL);"
    "CREATE INDEX checkpoint_upd ON checkpoint(story, upd);"
    "CREATE TABLE save("
    "  id INTEGER PRIMARY KEY,"
    "  story INTEGER NOT NULL REFERENCES story(id),"
    "  upd INTEGER REFERENCES upd(id),"
    "  name TEXT NOT NULL, thumbnail BLOB, state_path TEXT, created INTEGER NOT NULL);"
    "CREATE INDEX save_story ON save(story);"
    "CREATE TABLE completion("
    "  id INTEGER PRIMARY KEY,"
    "  story INTEGER NOT NULL REFERENCES story(id),"
    "  upd INTEGER REFERENCES upd(id),"
    "  prompt_hash TEXT NOT NULL, options TEXT,"
    "  n_prompt_tokens INTEGER NOT NULL, n_reused INTEGER NOT NULL,"
    "  n_decoded INTEGER NOT NULL, n_generated INTEGER NOT NULL,"
    "  ms_prompt REAL NOT NULL, ms_generate REAL NOT NULL, created INTEGER NOT NULL);"
    "CREATE INDEX completion_story ON completion(story);"
    "CREATE TABLE achievement("
    "  story INTEGER NOT NULL REFERENCES story(id),"
    "  achievement TEXT NOT NULL,"
    "  upd INTEGER REFERENCES upd(id),"
    "  created INTEGER NOT NULL,"
    "  PRIMARY KEY(story, achievement));";

// Reads one integer pragma (or query) on a connection.
static int query_int(sqlite3 *sql, const char *q, int64_t *out) {
    sqlite3_stmt *st = NULL;
    int rc = sqlite3_prepare_v2(sql, q, -1, &st, NULL);
    if (rc == SQLITE_OK) {
        rc = sqlite3_step(st);
        if (rc == SQLITE_ROW) {
            *out = sqlite3_column_int64(st, 0);
            rc = SQLITE_OK;
        }
    }
    sqlite3_finalize(st);
    return rc;
}

// Checks an existing file through a read-only connection (so a refusal
// writes nothing). *fresh: an empty SQLite database, to be given the schema.
static sim_status check_existing(const char *path, bool *fresh, sim_err *err) {
    *fresh = false;
    FILE *f = fopen(path, "rb");
    if (!f) return err_set(err, SIM_ERR_IO, "%s: cannot open", path);
    unsigned char hdr[100];
    size_t got = fread(hdr, 1, sizeof hdr, f);
    fclose(f);
    if (got == 0) {
        *fresh = true;
        return SIM_OK;
    }
    if (got < sizeof hdr || memcmp(hdr, "SQLite format 3", 16) != 0)
        return err_set(err, SIM_ERR_FORMAT, "%s: not an SQLite database", path);

    sqlite3 *sql = NULL;
    int rc = sqlite3_open_v2(path, &sql, SQLITE_OPEN_READONLY, NULL);
    sim_status s = SIM_OK;
    int64_t app = 0, ver = 0, n_objects = 0;
    if (rc != SQLITE_OK) {
        s = err_set(err, status_of(rc), "%s: %s", path, sql ? sqlite3_errmsg(sql) : sqlite3_errstr(rc));
        goto done;
    }
    sqlite3_busy_timeout(sql, 5000);
    if ((rc = query_int(sql, "PRAGMA application_id", &app)) != SQLITE_OK ||
        (rc = query_int(sql, "PRAGMA user_version", &ver)) != SQLITE_OK ||
        (rc = query_int(sql, "SELECT count(*) FROM sqlite_schema", &n_objects)) != SQLITE_OK) {
        if ((rc & 0xff) == SQLITE_NOTADB) s = err_set(err, SIM_ERR_FORMAT, "%s: not an SQLite database", path);
        else if ((rc & 0xff) == SQLITE_CORRUPT)
            s = err_set(err, SIM_ERR_FORMAT, "%s: corrupt database (%s)", path, sqlite3_errmsg(sql));
        else s = err_set(err, status_of(rc), "%s: %s", path, sqlite3_errmsg(sql));
        goto done;
    }
    if (app != TREE_APP_ID) {
        if (app == 0 && ver == 0 && n_objects == 0) {
            *fresh = true;
            goto done;
        }
        s = err_set(err, SIM_ERR_FORMAT, "%s: a database of another application (application_id 0x%08llx, want 0x%08x)",
                    path, (unsigned long long)(uint32_t)app, TREE_APP_ID);
        goto done;
    }
    if (ver > TREE_SCHEMA_VERSION) {
        s = err_set(err, SIM_ERR_UNSUPPORTED, "%s: schema version %lld is newer than this program's (%d)", path,
                    (long long)ver, TREE_SCHEMA_VERSION);
        goto done;
    }
    if (ver < 1) {
        s = err_set(err, SIM_ERR_FORMAT, "%s: schema version %lld is not a story database version", path, (long long)ver);
        goto done;
    }
    // quick_check returns one row "ok", or rows describing the damage.
    sqlite3_stmt *st = NULL;
    rc = sqlite3_prepare_v2(sql, "PRAGMA quick_check(1)", -1, &st, NULL);
    if (rc == SQLITE_OK) rc = sqlite3_step(st);
    if (rc == SQLITE_ROW) {
        const char *r = (const char *)sqlite3_column_text(st, 0);
        if (!r || strcmp(r, "ok") != 0)
            s = err_set(err, SIM_ERR_FORMAT, "%s: corrupt database (quick_check: %s)", path, r ? r : "?");
    } else {
        s = err_set(err, SIM_ERR_FORMAT, "%s: corrupt database (quick_check: %s)", path, sqlite3_errmsg(sql));
    }
    sqlite3_finalize(st);
done:
    sqlite3_close(sql);
    return s;
}

sim_status tree_open(tree_db **out, const char *path, sim_err *err) {
    ERR_LOCAL(err);
    *out = NULL;
    if (!path || !*path) return err_set(err, SIM_ERR_ARG, "tree_open: no path");
    bool memory = strcmp(path, ":memory:") == 0;
    bool fresh = true;
    struct stat sb;
    if (!memory && stat(path, &sb) == 0) {
        if (!S_ISREG(sb.st_mode)) return err_set(err, SIM_ERR_IO, "%s: not a regular file", path);
        sim_status s = check_existing(path, &fresh, err);
        if (s != SIM_OK) return s;
    }
    tree_db *db = mem_calloc(1, sizeof *db);
    if (!db) return nomem(err);
    if (pthread_mutex_init(&db->mu, NULL) != 0) {
        mem_free(db);
        return err_set(err, SIM_ERR_IO, "tree_open: cannot create a mutex");
    }
    int rc = sqlite3_open_v2(path, &db->sql, SQLITE_OPEN_READWRITE | SQLITE_OPEN_CREATE | SQLITE_OPEN_NOMUTEX, NULL);
    sim_status s = SIM_OK;
    if (rc != SQLITE_OK) {
        s = err_set(err, status_of(rc), "%s: %s", path, db->sql ? sqlite3_errmsg(db->sql) : sqlite3_errstr(rc));
        goto fail;
    }
    sqlite3_extended_result_codes(db->sql, 1);
    sqlite3_busy_timeout(db->sql, 5000);
    if ((s = exec(db, "PRAGMA foreign_keys = ON", err)) != SIM_OK) goto fail;
    if (!memory && (s = exec(db, "PRAGMA journal_mode = WAL", err)) != SIM_OK) goto fail;
    if ((s = exec(db, "PRAGMA synchronous = NORMAL", err)) != SIM_OK) goto fail;
    if ((s = begin(db, err)) != SIM_OK) goto fail;
    // Another process may have created the schema since the check.
    int64_t ver = 0, app = 0;
    if (query_int(db->sql, "PRAGMA user_version", &ver) != SQLITE_OK ||
        query_int(db->sql, "PRAGMA application_id", &app) != SQLITE_OK) {
        s = finish(db, sql_fail(db->sql, err, path), err);
        goto fail;
    }
    if (ver == 0 && app == 0 && fresh) {
        s = exec(db, SCHEMA, err);
        if (s == SIM_OK) s = exec(db, "PRAGMA application_id = 1397312852", err); // TREE_APP_ID
        if (s == SIM_OK) s = exec(db, "PRAGMA user_version = 1", err);           // TREE_SCHEMA_VERSION
    } else if (app != TREE_APP_ID || ver != TREE_SCHEMA_VERSION) {
        s = err_set(err, SIM_ERR_FORMAT, "%s: not a story database (changed while opening)", path);
    }
    s = finish(db, s, err);
    if (s != SIM_OK) goto fail;
    *out = db;
    return SIM_OK;
fail:
    sqlite3_close(db->sql);
    pthread_mutex_destroy(&db->mu);
    mem_free(db);
    return s;
}

_Static_assert(TREE_APP_ID == 1397312852, "the PRAGMA application_id literal in tree_open");
_Static_assert(TREE_SCHEMA_VERSION == 1, "the PRAGMA user_version literal in tree_open");

void tree_close(tree_db *db) {
    if (!db) return;
    sqlite3_close(db->sql);
    pthread_mutex_destroy(&db->mu);
    mem_free(db);
}

// --- stories -------------------------------------------------------------------------

void tree_story_free(tree_story *s) {
    if (!s) return;
    mem_free(s->scenario);
    mem_free(s->scenario_version);
    mem_free(s->episode);
    mem_free(s->owner);
    mem_free(s->title);
    memset(s, 0, sizeof *s);
}

#define STORY_COLS "id, scenario, scenario_version, episode, owner, title, head, first_chosen, created, updated"

static bool read_story(sqlite3_stmt *st, void *out) {
    tree_story *s = out;
    memset(s, 0, sizeof *s);
    s->id = sqlite3_column_int64(st, 0);
    s->head = sqlite3_column_int64(st, 6);
    s->first_chosen = sqlite3_column_int64(st, 7);
    s->created = sqlite3_column_int64(st, 8);
    s->updated = sqlite3_column_int64(st, 9);
    if (col_str(st, 1, &s->scenario) && col_str(st, 2, &s->scenario_version) && col_str(st, 3, &s->episode) &&
        col_str(st, 4, &s->owner) && col_str(st, 5, &s->title))
        return true;
    tree_story_free(s);
    return false;
}

static void story_free_v(void *s) { tree_story_free(s); }

static const row_kind STORY_ROWS = {.size = sizeof(tree_story), .read = read_story, .free = story_free_v};

void tree_stories_free(tree_story *a, int n) { rows_free(a, n, &STORY_ROWS); }

sim_status tree_story_create(tree_db *db, const char *user, const char *scenario, const char *scenario_version,
                             const char *episode, const char *title, int64_t *id, sim_err *err) {
    ERR_LOCAL(err);
    sim_status s;
    if ((s = check_user(user, err)) || (s = check_str(scenario, TREE_MAX_NAME, false, true, "scenario", err)) ||
        (s = check_str(scenario_version, TREE_MAX_NAME, false, false, "scenario version", err)) ||
        (s = check_str(episode, TREE_MAX_NAME, false, true, "episode", err)) ||
        (s = check_str(title, TREE_MAX_NAME, false, false, "title", err)))
        return s;
    lock(db);
    s = run(db,
            "INSERT INTO story(scenario, scenario_version, episode, owner, title, created, updated)"
            " VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?6)",
            ARGS(ARG_STR(scenario), ARG_STR(scenario_version), ARG_STR(episode), ARG_STR(user), ARG_STR(title),
                 ARG_INT(now_ms())),
            id, err);
    unlock(db);
    return s;
}

static sim_status story_get_locked(tree_db *db, int64_t id, tree_story *out, sim_err *err) {
    return run_get(db, "SELECT " STORY_COLS " FROM story WHERE id = ?1", id, read_story, out, "story", err);
}

sim_status tree_story_get(tree_db *db, const char *user, int64_t id, tree_story *out, sim_err *err) {
    ERR_LOCAL(err);
    memset(out, 0, sizeof *out);
    sim_status s = check_user(user, err);
    if (s) return s;
    lock(db);
    s = story_access(db, user, id, err);
    if (s == SIM_OK) s = story_get_locked(db, id, out, err);
    unlock(db);
    return s;
}

sim_status tree_story_list(tree_db *db, const char *user, const char *scenario, tree_story **out, int *n,
                           sim_err *err) {
    ERR_LOCAL(err);
    *out = NULL;
    *n = 0;
    sim_status s;
    if ((s = check_user(user, err)) || (s = check_str(scenario, TREE_MAX_NAME, true, false, "scenario", err)))
        return s;
    void *a = NULL;
    lock(db);
    s = run_list(db,
                 "SELECT " STORY_COLS " FROM story WHERE owner IS ?1 AND (?2 IS NULL OR scenario = ?2)"
                 " ORDER BY created DESC, id DESC LIMIT ?3",
                 ARGS(ARG_STR(user), ARG_STR(scenario), ARG_INT(TREE_MAX_LIST)), &STORY_ROWS, &a, n, err);
    unlock(db);
    *out = a;
    return s;
}

sim_status tree_story_rename(tree_db *db, const char *user, int64_t id, const char *title, sim_err *err) {
    ERR_LOCAL(err);
    sim_status s;
    if ((s = check_user(user, err)) || (s = check_str(title, TREE_MAX_NAME, false, false, "title", err))) return s;
    lock(db);
    s = story_access(db, user, id, err);
    if (s == SIM_OK)
        s = run(db, "UPDATE story SET title = ?1, updated = ?2 WHERE id = ?3",
                ARGS(ARG_STR(title), ARG_INT(now_ms()), ARG_INT(id)), NULL, err);
    unlock(db);
    return s;
}

sim_status tree_story_delete(tree_db *db, const char *user, int64_t id, sim_err *err) {
    ERR_LOCAL(err);
    sim_status s = check_user(user, err);
    if (s) return s;
    lock(db);
    s = begin(db, err);
    if (s == SIM_OK) {
        static const char *const qs[] = {
            "DELETE FROM achievement WHERE story = ?1", "DELETE FROM completion WHERE story = ?1",
            "DELETE FROM save WHERE story = ?1",        "DELETE FROM checkpoint WHERE story = ?1",
            "DELETE FROM upd WHERE story = ?1",         "DELETE FROM story WHERE id = ?1",
        };
        s = story_access(db, user, id, err);
        for (size_t i = 0; s == SIM_OK && i < ARRAY_LEN(qs); i++) s = run(db, qs[i], ARGS(ARG_INT(id)), NULL, err);
        s = finish(db, s, err);
    }
    unlock(db);
    return s;
}

// --- updates -------------------------------------------------------------------------

static const char *const SOURCE_NAMES[] = {"model", "player", "script"};

const char *tree_source_name(tree_source s) {
    return (unsigned)s < ARRAY_LEN(SOURCE_NAMES) ? SOURCE_NAMES[s] : "?";
}

void tree_update_free(tree_update *u) {
    if (!u) return;
    mem_free(u->speaker);
    mem_free(u->commands);
    mem_free(u->text);
    mem_free(u->stage);
    memset(u, 0, sizeof *u);
}

void tree_ids_free(int64_t *ids) { mem_free(ids); }

#define UPD_COLS "id, story, parent, speaker, commands, text, minutes, stage, source, edit_of, chosen, thumbs, created"
#define UPD_COLS_U "u.id, u.story, u.parent, u.speaker, u.commands, u.text, u.minutes, u.stage, u.source, u.edit_of, u.chosen, u.thumbs, u.created"

static bool read_update(sqlite3_stmt *st, void *out) {
    const int c = 0; // the first column
    tree_update *u = out;
    memset(u, 0, sizeof *u);
    u->id = sqlite3_column_int64(st, c + 0);
    u->story = sqlite3_column_int64(st, c + 1);
    u->parent = sqlite3_column_int64(st, c + 2);
    u->minutes = sqlite3_column_int(st, c + 6);
    const char *src = (const char *)sqlite3_column_text(st, c + 8);
    u->source = TREE_SOURCE_MODEL;
    for (size_t i = 0; src && i < ARRAY_LEN(SOURCE_NAMES); i++)
        if (strcmp(src, SOURCE_NAMES[i]) == 0) u->source = (tree_source)i;
    u->edit_of = sqlite3_column_int64(st, c + 9);
    u->chosen = sqlite3_column_int64(st, c + 10);
    u->thumbs = sqlite3_column_int(st, c + 11);
    u->created = sqlite3_column_int64(st, c + 12);
    if (col_str(st, c + 3, &u->speaker) && col_str(st, c + 4, &u->commands) && col_str(st, c + 5, &u->text) &&
        col_str(st, c + 7, &u->stage))
        return true;
    tree_update_free(u);
    return false;
}

static void update_free_v(void *u) { tree_update_free(u); }

static const row_kind UPDATE_ROWS = {.size = sizeof(tree_update), .read = read_update, .free = update_free_v};

void tree_updates_free(tree_update *a, int n) { rows_free(a, n, &UPDATE_ROWS); }

static sim_status check_update_in(const tree_update_in *in, sim_err *err) {
    if (!in) return err_set(err, SIM_ERR_ARG, "update: no fields");
    sim_status s;
    if ((s = check_str(in->speaker, TREE_MAX_NAME, false, true, "speaker", err)) ||
        (s = check_str(in->text, TREE_MAX_TEXT, false, false, "text", err)) ||
        (s = check_json(in->commands, true, "commands", err)) || (s = check_json(in->stage, false, "stage", err)))
        return s;
    if (in->minutes < 0 || in->minutes > TREE_MAX_MINUTES)
        return err_set(err, SIM_ERR_RANGE, "minutes %d outside 0..%d", in->minutes, TREE_MAX_MINUTES);
    if ((unsigned)in->source >= ARRAY_LEN(SOURCE_NAMES))
        return err_set(err, SIM_ERR_ARG, "unknown source %d", (int)in->source);
    return SIM_OK;
}

static sim_status insert_update(tree_db *db, int64_t story, int64_t parent, const tree_update_in *in, int64_t edit_of,
                                int64_t created, int64_t *id, sim_err *err) {
    return run(db,
               "INSERT INTO upd(story, parent, speaker, commands, text, minutes, stage, source, edit_of,"
               " created) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10)",
               ARGS(ARG_INT(story), ARG_ID(parent), ARG_STR(in->speaker), ARG_STR(in->commands), ARG_STR(in->text),
                    ARG_INT(in->minutes), ARG_STR(in->stage), ARG_STR(SOURCE_NAMES[in->source]), ARG_ID(edit_of),
                    ARG_INT(created)),
               id, err);
}

static sim_status set_head(tree_db *db, int64_t story, int64_t head, sim_err *err) {
    return run(db, "UPDATE story SET head = ?1, updated = ?2 WHERE id = ?3",
               ARGS(ARG_ID(head), ARG_INT(now_ms()), ARG_INT(story)), NULL, err);
}

// Every ancestor of id chooses the child on the way to id; the story's
// first_chosen becomes id's root.
static sim_status choose_path_to(tree_db *db, int64_t story, int64_t id, sim_err *err) {
    sim_status s = run(db,
                       "WITH RECURSIVE a(id, parent) AS ("
                       "  SELECT id, parent FROM upd WHERE id = ?1"
                       "  UNION ALL SELECT u.id, u.parent FROM upd u JOIN a ON u.id = a.parent)"
                       " UPDATE upd SET chosen = (SELECT a.id FROM a WHERE a.parent = upd.id)"
                       " WHERE id IN (SELECT parent FROM a WHERE parent IS NOT NULL)",
                       ARGS(ARG_INT(id)), NULL, err);
    if (s) return s;
    return run(db,
               "WITH RECURSIVE a(id, parent) AS ("
               "  SELECT id, parent FROM upd WHERE id = ?1"
               "  UNION ALL SELECT u.id, u.parent FROM upd u JOIN a ON u.id = a.parent)"
               " UPDATE story SET first_chosen = (SELECT id FROM a WHERE parent IS NULL) WHERE id = ?2",
               ARGS(ARG_INT(id), ARG_INT(story)), NULL, err);
}

sim_status tree_update_add(tree_db *db, const char *user, int64_t story, int64_t parent, const tree_update_in *in,
                           int64_t *id, sim_err *err) {
    ERR_LOCAL(err);
    sim_status s;
    if ((s = check_user(user, err)) || (s = check_update_in(in, err))) return s;
    if (parent < 0) return err_set(err, SIM_ERR_ARG, "update %lld not found", (long long)parent);
    lock(db);
    s = begin(db, err);
    if (s == SIM_OK) {
        int64_t nid = 0;
        s = story_access(db, user, story, err);
        if (s == SIM_OK && parent) s = update_in_story(db, story, parent, err);
        if (s == SIM_OK) s = insert_update(db, story, parent, in, 0, now_ms(), &nid, err);
        if (s == SIM_OK) s = choose_path_to(db, story, nid, err);
        if (s == SIM_OK) s = set_head(db, story, nid, err);
        s = finish(db, s, err);
        if (s == SIM_OK) *id = nid;
    }
    unlock(db);
    return s;
}

static sim_status update_get_locked(tree_db *db, int64_t id, tree_update *out, sim_err *err) {
    return run_get(db, "SELECT " UPD_COLS " FROM upd WHERE id = ?1", id, read_update, out, "update", err);
}

sim_status tree_update_get(tree_db *db, const char *user, int64_t id, tree_update *out, sim_err *err) {
    ERR_LOCAL(err);
    memset(out, 0, sizeof *out);
    sim_status s = check_user(user, err);
    if (s) return s;
    lock(db);
    s = update_access(db, user, id, NULL, NULL, err);
    if (s == SIM_OK) s = update_get_locked(db, id, out, err);
    unlock(db);
    return s;
}

sim_status tree_update_children(tree_db *db, const char *user, int64_t story, int64_t id, int64_t **ids, int *n,
                                int *chosen, sim_err *err) {
    ERR_LOCAL(err);
    *ids = NULL;
    *n = 0;
    *chosen = -1;
    sim_status s = check_user(user, err);
    if (s) return s;
    lock(db);
    int64_t want = 0; // the chosen child's id
    bool found;
    if (id) {
        s = update_access(db, user, id, &story, NULL, err);
        if (s == SIM_OK)
            s = run_row(db, "SELECT chosen FROM upd WHERE id = ?1", ARGS(ARG_INT(id)), read_id, &want, &found, err);
    } else {
        s = story_access(db, user, story, err);
        if (s == SIM_OK)
            s = run_row(db, "SELECT first_chosen FROM story WHERE id = ?1", ARGS(ARG_INT(story)), read_id, &want,
                        &found, err);
    }
    void *a = NULL;
    if (s == SIM_OK)
        s = run_list(db, "SELECT id FROM upd WHERE story = ?1 AND parent IS ?2 ORDER BY id LIMIT ?3",
                     ARGS(ARG_INT(story), ARG_ID(id), ARG_INT(TREE_MAX_LIST)), &ID_ROWS, &a, n, err);
    unlock(db);
    *ids = a;
    for (int i = 0; i < *n; i++)
        if ((*ids)[i] == want) *chosen = i;
    return s;
}

// The end of the chosen chain that starts at id.
static sim_status chain_end(tree_db *db, int64_t id, int64_t *end, sim_err *err) {
    bool found;
    sim_status s = run_row(db,
                           "WITH RECURSIVE c(id, chosen, depth) AS ("
                           "  SELECT id, chosen, 0 FROM upd WHERE id = ?1"
                           "  UNION ALL SELECT u.id, u.chosen, c.depth + 1 FROM upd u JOIN c ON u.id = c.chosen)"
                           " SELECT id FROM c ORDER BY depth DESC LIMIT 1",
                           ARGS(ARG_INT(id)), read_id, end, &found, err);
    if (s == SIM_OK && !found) s = sql_fail(db->sql, err, "sqlite"); // id was checked: never
    return s;
}

sim_status tree_update_choose(tree_db *db, const char *user, int64_t id, sim_err *err) {
    ERR_LOCAL(err);
    sim_status s = check_user(user, err);
    if (s) return s;
    lock(db);
    s = begin(db, err);
    if (s == SIM_OK) {
        int64_t story = 0, end = 0;
        s = update_access(db, user, id, &story, NULL, err);
        if (s == SIM_OK) s = choose_path_to(db, story, id, err);
        if (s == SIM_OK) s = chain_end(db, id, &end, err);
        if (s == SIM_OK) s = set_head(db, story, end, err);
        s = finish(db, s, err);
    }
    unlock(db);
    return s;
}

sim_status tree_update_edit(tree_db *db, const char *user, int64_t id, const char *text, const char *commands,
                            int64_t *new_id, sim_err *err) {
    ERR_LOCAL(err);
    sim_status s;
    if ((s = check_user(user, err)) || (s = check_str(text, TREE_MAX_TEXT, false, false, "text", err)) ||
        (s = check_json(commands, true, "commands", err)))
        return s;
    lock(db);
    s = begin(db, err);
    if (s == SIM_OK) {
        int64_t story = 0, parent = 0, nid = 0;
        tree_update orig = {0};
        s = update_access(db, user, id, &story, &parent, err);
        if (s == SIM_OK) s = update_get_locked(db, id, &orig, err);
        if (s == SIM_OK) {
            tree_update_in in = {.speaker = orig.speaker, .commands = commands ? commands : orig.commands,
                                 .text = text, .minutes = orig.minutes, .stage = orig.stage, .source = orig.source};
            s = insert_update(db, story, parent, &in, id, now_ms(), &nid, err);
        }
        if (s == SIM_OK) s = choose_path_to(db, story, nid, err);
        if (s == SIM_OK) s = set_head(db, story, nid, err);
        tree_update_free(&orig);
        s = finish(db, s, err);
        if (s == SIM_OK) *new_id = nid;
    }
    unlock(db);
    return s;
}

sim_status tree_rewind(tree_db *db, const char *user, int64_t story, int64_t update, sim_err *err) {
    ERR_LOCAL(err);
    sim_status s = check_user(user, err);
    if (s) return s;
    if (update < 0) return err_set(err, SIM_ERR_ARG, "update %lld not found", (long long)update);
    lock(db);
    s = begin(db, err);
    if (s == SIM_OK) {
        s = story_access(db, user, story, err);
        if (s == SIM_OK && update) s = update_in_story(db, story, update, err);
        if (s == SIM_OK) s = set_head(db, story, update, err);
        s = finish(db, s, err);
    }
    unlock(db);
    return s;
}

sim_status tree_update_thumbs(tree_db *db, const char *user, int64_t id, int thumbs, sim_err *err) {
    ERR_LOCAL(err);
    sim_status s = check_user(user, err);
    if (s) return s;
    if (thumbs < -1 || thumbs > 1) return err_set(err, SIM_ERR_RANGE, "thumbs %d outside -1..1", thumbs);
    lock(db);
    s = update_access(db, user, id, NULL, NULL, err);
    if (s == SIM_OK)
        s = run(db, "UPDATE upd SET thumbs = ?1 WHERE id = ?2", ARGS(ARG_INT(thumbs), ARG_INT(id)), NULL, err);
    unlock(db);
    return s;
}

// The path root..head (head in story, already checked), in one query.
static sim_status path_locked(tree_db *db, int64_t story, int64_t head, tree_update **out, int *n, sim_err *err) {
    *out = NULL;
    *n = 0;
    if (!head) return SIM_OK;
    void *a = NULL;
    sim_status s = run_list(db,
                            "WITH RECURSIVE p(id, parent, depth) AS ("
                            "  SELECT id, parent, 0 FROM upd WHERE id = ?1 AND story = ?2"
                            "  UNION ALL SELECT u.id, u.parent, p.depth + 1 FROM upd u JOIN p ON u.id = p.parent)"
                            " SELECT " UPD_COLS_U " FROM p JOIN upd u ON u.id = p.id ORDER BY p.depth DESC",
                            ARGS(ARG_INT(head), ARG_INT(story)), &UPDATE_ROWS, &a, n, err);
    *out = a;
    return s;
}

sim_status tree_path_from(tree_db *db, const char *user, int64_t story, int64_t head, tree_update **out, int *n,
                          sim_err *err) {
    ERR_LOCAL(err);
    *out = NULL;
    *n = 0;
    sim_status s = check_user(user, err);
    if (s) return s;
    if (head < 0) return err_set(err, SIM_ERR_ARG, "update %lld not found", (long long)head);
    lock(db);
    s = story_access(db, user, story, err);
    if (s == SIM_OK && head) s = update_in_story(db, story, head, err);
    if (s == SIM_OK) s = path_locked(db, story, head, out, n, err);
    unlock(db);
    return s;
}

sim_status tree_path(tree_db *db, const char *user, int64_t story, tree_update **out, int *n, sim_err *err) {
    ERR_LOCAL(err);
    *out = NULL;
    *n = 0;
    sim_status s = check_user(user, err);
    if (s) return s;
    lock(db);
    tree_story st = {0};
    s = story_access(db, user, story, err);
    if (s == SIM_OK) s = story_get_locked(db, story, &st, err);
    if (s == SIM_OK) s = path_locked(db, story, st.head, out, n, err);
    tree_story_free(&st);
    unlock(db);
    return s;
}

// --- story fork ----------------------------------------------------------------------

sim_status tree_story_fork(tree_db *db, const char *user, int64_t story, int64_t update, const char *title,
                           int64_t *new_id, sim_err *err) {
    ERR_LOCAL(err);
    sim_status s;
    if ((s = check_user(user, err)) || (s = check_str(title, TREE_MAX_NAME, true, false, "title", err))) return s;
    if (update < 0) return err_set(err, SIM_ERR_ARG, "update %lld not found", (long long)update);
    lock(db);
    s = begin(db, err);
    if (s == SIM_OK) {
        tree_story src = {0};
        tree_update *path = NULL;
        int n = 0;
        int64_t nid = 0, prev = 0;
        s = story_access(db, user, story, err);
        if (s == SIM_OK && update) s = update_in_story(db, story, update, err);
        if (s == SIM_OK) s = story_get_locked(db, story, &src, err);
        if (s == SIM_OK) s = path_locked(db, story, update, &path, &n, err);
        if (s == SIM_OK)
            s = run(db,
                    "INSERT INTO story(scenario, scenario_version, episode, owner, title, created,"
                    " updated) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?6)",
                    ARGS(ARG_STR(src.scenario), ARG_STR(src.scenario_version), ARG_STR(src.episode), ARG_STR(user),
                         ARG_STR(title ? title : src.title), ARG_INT(now_ms())),
                    &nid, err);
        for (int i = 0; s == SIM_OK && i < n; i++) {
            tree_update_in in = {.speaker = path[i].speaker, .commands = path[i].commands, .text = path[i].text,
                                 .minutes = path[i].minutes, .stage = path[i].stage, .source = path[i].source};
            int64_t id = 0;
            s = insert_update(db, nid, prev, &in, 0, path[i].created, &id, err);
            prev = id;
        }
        if (s == SIM_OK && prev) s = choose_path_to(db, nid, prev, err);
        if (s == SIM_OK) s = set_head(db, nid, prev, err);
        tree_updates_free(path, n);
        tree_story_free(&src);
        s = finish(db, s, err);
        if (s == SIM_OK) *new_id = nid;
    }
    unlock(db);
    return s;
}

// --- checkpoints ---------------------------------------------------------------------

void tree_checkpoint_free(tree_checkpoint *c) {
    if (!c) return;
    mem_free(c->summary);
    mem_free(c->stage);
    mem_free(c->state_path);
    memset(c, 0, sizeof *c);
}

sim_status tree_checkpoint_add(tree_db *db, const char *user, int64_t story, int64_t update, const char *summary,
                               const char *stage, const char *state_path, int64_t *id, sim_err *err) {
    ERR_LOCAL(err);
    sim_status s;
    if ((s = check_user(user, err)) || (s = check_str(summary, TREE_MAX_TEXT, false, false, "summary", err)) ||
        (s = check_json(stage, false, "stage", err)) ||
        (s = check_str(state_path, TREE_MAX_PATH, true, true, "state path", err)))
        return s;
    if (update <= 0) return err_set(err, SIM_ERR_ARG, "update %lld not found", (long long)update);
    return story_insert(db, user, story, update,
                        "INSERT INTO checkpoint(story, upd, summary, stage, state_path, created)"
                        " VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
                        ARGS(ARG_INT(story), ARG_INT(update), ARG_STR(summary), ARG_STR(stage), ARG_STR(state_path),
                             ARG_INT(now_ms())),
                        id, err);
}

static bool read_checkpoint(sqlite3_stmt *st, void *out) {
    tree_checkpoint *c = out;
    c->id = sqlite3_column_int64(st, 0);
    c->story = sqlite3_column_int64(st, 1);
    c->update = sqlite3_column_int64(st, 2);
    c->created = sqlite3_column_int64(st, 6);
    if (col_str(st, 3, &c->summary) && col_str(st, 4, &c->stage) && col_str(st, 5, &c->state_path)) return true;
    tree_checkpoint_free(c);
    return false;
}

sim_status tree_checkpoint_latest_on_path(tree_db *db, const char *user, int64_t story, int64_t head,
                                          tree_checkpoint *out, sim_err *err) {
    ERR_LOCAL(err);
    memset(out, 0, sizeof *out);
    sim_status s = check_user(user, err);
    if (s) return s;
    if (head < 0) return err_set(err, SIM_ERR_ARG, "update %lld not found", (long long)head);
    lock(db);
    s = story_access(db, user, story, err);
    if (s == SIM_OK && head) s = update_in_story(db, story, head, err);
    if (s == SIM_OK && head) {
        bool found;
        s = run_row(db,
                    "WITH RECURSIVE p(id, parent, depth) AS ("
                    "  SELECT id, parent, 0 FROM upd WHERE id = ?1"
                    "  UNION ALL SELECT u.id, u.parent, p.depth + 1 FROM upd u JOIN p ON u.id = p.parent)"
                    " SELECT c.id, c.story, c.upd, c.summary, c.stage, c.state_path, c.created"
                    " FROM p JOIN checkpoint c ON c.upd = p.id AND c.story = ?2"
                    " ORDER BY p.depth ASC, c.id DESC LIMIT 1",
                    ARGS(ARG_INT(head), ARG_INT(story)), read_checkpoint, out, &found, err);
    }
    unlock(db);
    return s;
}

// --- saves ---------------------------------------------------------------------------

void tree_save_free(tree_save *s) {
    if (!s) return;
    mem_free(s->name);
    mem_free(s->thumb);
    mem_free(s->state_path);
    memset(s, 0, sizeof *s);
}

sim_status tree_save_add(tree_db *db, const char *user, int64_t story, int64_t update, const char *name,
                         const uint8_t *thumb, size_t n_thumb, const char *state_path, int64_t *id, sim_err *err) {
    ERR_LOCAL(err);
    sim_status s;
    if ((s = check_user(user, err)) || (s = check_str(name, TREE_MAX_NAME, false, false, "save name", err)) ||
        (s = check_str(state_path, TREE_MAX_PATH, true, true, "state path", err)))
        return s;
    if (n_thumb > TREE_MAX_THUMB) return err_set(err, SIM_ERR_RANGE, "thumbnail is larger than %zu bytes", TREE_MAX_THUMB);
    if (n_thumb && !thumb) return err_set(err, SIM_ERR_ARG, "thumbnail: no bytes");
    if (update < 0) return err_set(err, SIM_ERR_ARG, "update %lld not found", (long long)update);
    return story_insert(db, user, story, update,
                        "INSERT INTO save(story, upd, name, thumbnail, state_path, created)"
                        " VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
                        ARGS(ARG_INT(story), ARG_ID(update), ARG_STR(name), ARG_BLOB(thumb, n_thumb),
                             ARG_STR(state_path), ARG_INT(now_ms())),
                        id, err);
}

// Columns: id, story, upd, name, state_path, created [, thumbnail].
static bool read_save(sqlite3_stmt *st, bool with_thumb, tree_save *v) {
    memset(v, 0, sizeof *v);
    v->id = sqlite3_column_int64(st, 0);
    v->story = sqlite3_column_int64(st, 1);
    v->update = sqlite3_column_int64(st, 2);
    v->created = sqlite3_column_int64(st, 5);
    if (!col_str(st, 3, &v->name) || !col_str(st, 4, &v->state_path)) goto fail;
    if (with_thumb && sqlite3_column_type(st, 6) != SQLITE_NULL) {
        int nb = sqlite3_column_bytes(st, 6);
        const void *b = sqlite3_column_blob(st, 6);
        v->thumb = mem_alloc(nb > 0 ? (size_t)nb : 1);
        if (!v->thumb || (nb > 0 && !b)) goto fail;
        if (nb > 0) memcpy(v->thumb, b, (size_t)nb);
        v->n_thumb = (size_t)nb;
    }
    return true;
fail:
    tree_save_free(v);
    return false;
}

static bool read_save_listed(sqlite3_stmt *st, void *out) { return read_save(st, false, out); }
static bool read_save_whole(sqlite3_stmt *st, void *out) { return read_save(st, true, out); }
static void save_free_v(void *v) { tree_save_free(v); }

static const row_kind SAVE_ROWS = {.size = sizeof(tree_save), .read = read_save_listed, .free = save_free_v};

void tree_saves_free(tree_save *a, int n) { rows_free(a, n, &SAVE_ROWS); }

sim_status tree_save_list(tree_db *db, const char *user, int64_t story, tree_save **out, int *n, sim_err *err) {
    ERR_LOCAL(err);
    void *a;
    sim_status s = story_rows(db, user, story,
                              "SELECT id, story, upd, name, state_path, created FROM save WHERE story = ?1"
                              " ORDER BY created DESC, id DESC LIMIT ?2",
                              ARGS(ARG_INT(story), ARG_INT(TREE_MAX_LIST)), &SAVE_ROWS, &a, n, err);
    *out = a;
    return s;
}

// The save exists and user may see its story.
static sim_status save_access(tree_db *db, const char *user, int64_t id, sim_err *err) {
    int64_t story = 0;
    bool found;
    sim_status s = run_row(db, "SELECT story FROM save WHERE id = ?1", ARGS(ARG_INT(id)), read_id, &story, &found, err);
    if (s) return s;
    s = story ? story_access(db, user, story, err) : SIM_ERR_ARG;
    if (s == SIM_ERR_ARG) return err_set(err, SIM_ERR_ARG, "save %lld not found", (long long)id);
    return s;
}

sim_status tree_save_get(tree_db *db, const char *user, int64_t id, tree_save *out, sim_err *err) {
    ERR_LOCAL(err);
    memset(out, 0, sizeof *out);
    sim_status s = check_user(user, err);
    if (s) return s;
    lock(db);
    s = save_access(db, user, id, err);
    if (s == SIM_OK) {
        bool found;
        s = run_row(db, "SELECT id, story, upd, name, state_path, created, thumbnail FROM save WHERE id = ?1",
                    ARGS(ARG_INT(id)), read_save_whole, out, &found, err);
        if (s == SIM_OK && !found) s = sql_fail(db->sql, err, "sqlite"); // save_access found it: never
    }
    unlock(db);
    return s;
}

sim_status tree_save_delete(tree_db *db, const char *user, int64_t id, sim_err *err) {
    ERR_LOCAL(err);
    sim_status s = check_user(user, err);
    if (s) return s;
    lock(db);
    s = save_access(db, user, id, err);
    if (s == SIM_OK) s = run(db, "DELETE FROM save WHERE id = ?1", ARGS(ARG_INT(id)), NULL, err);
    unlock(db);
    return s;
}

// --- completion log ------------------------------------------------------------------

static void completion_free_v(void *p) {
    tree_completion *c = p;
    mem_free(c->prompt_hash);
    mem_free(c->options);
    c->prompt_hash = c->options = NULL;
}

sim_status tree_completion_add(tree_db *db, const char *user, int64_t story, const tree_completion *c, int64_t *id,
                               sim_err *err) {
    ERR_LOCAL(err);
    sim_status s;
    if (!c) return err_set(err, SIM_ERR_ARG, "completion: no record");
    if ((s = check_user(user, err)) || (s = check_str(c->prompt_hash, TREE_MAX_HASH, false, true, "prompt hash", err)) ||
        (s = check_json(c->options, false, "options", err)))
        return s;
    for (const char *p = c->prompt_hash; *p; p++)
        if (!((*p >= '0' && *p <= '9') || (*p >= 'a' && *p <= 'f') || (*p >= 'A' && *p <= 'F')))
            return err_set(err, SIM_ERR_FORMAT, "prompt hash: not hex digits");
    if (c->n_prompt_tokens < 0 || c->n_reused < 0 || c->n_decoded < 0 || c->n_generated < 0 ||
        c->n_reused > c->n_prompt_tokens || !(c->ms_prompt >= 0) || !(c->ms_generate >= 0))
        return err_set(err, SIM_ERR_RANGE, "completion: negative or inconsistent counts");
    if (c->update < 0) return err_set(err, SIM_ERR_ARG, "update %lld not found", (long long)c->update);
    return story_insert(db, user, story, c->update,
                        "INSERT INTO completion(story, upd, prompt_hash, options, n_prompt_tokens, n_reused,"
                        " n_decoded, n_generated, ms_prompt, ms_generate, created)"
                        " VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11)",
                        ARGS(ARG_INT(story), ARG_ID(c->update), ARG_STR(c->prompt_hash), ARG_STR(c->options),
                             ARG_INT(c->n_prompt_tokens), ARG_INT(c->n_reused), ARG_INT(c->n_decoded),
                             ARG_INT(c->n_generated), ARG_REAL(c->ms_prompt), ARG_REAL(c->ms_generate),
                             ARG_INT(now_ms())),
                        id, err);
}

static bool read_completion(sqlite3_stmt *st, void *out) {
    tree_completion *c = out;
    memset(c, 0, sizeof *c);
    c->id = sqlite3_column_int64(st, 0);
    c->story = sqlite3_column_int64(st, 1);
    c->update = sqlite3_column_int64(st, 2);
    c->n_prompt_tokens = sqlite3_column_int(st, 5);
    c->n_reused = sqlite3_column_int(st, 6);
    c->n_decoded = sqlite3_column_int(st, 7);
    c->n_generated = sqlite3_column_int(st, 8);
    c->ms_prompt = sqlite3_column_double(st, 9);
    c->ms_generate = sqlite3_column_double(st, 10);
    c->created = sqlite3_column_int64(st, 11);
    if (col_str(st, 3, &c->prompt_hash) && col_str(st, 4, &c->options)) return true;
    completion_free_v(c);
    return false;
}

static const row_kind COMPLETION_ROWS = {
    .size = sizeof(tree_completion), .read = read_completion, .free = completion_free_v};

void tree_completions_free(tree_completion *a, int n) { rows_free(a, n, &COMPLETION_ROWS); }

sim_status tree_completion_list(tree_db *db, const char *user, int64_t story, int limit, tree_completion **out,
                                int *n, sim_err *err) {
    ERR_LOCAL(err);
    *out = NULL;
    *n = 0;
    sim_status s = check_user(user, err);
    if (s) return s;
    if (limit < 0) return err_set(err, SIM_ERR_ARG, "limit %d is negative", limit);
    if (limit > TREE_MAX_LIST) limit = TREE_MAX_LIST;
    void *a;
    s = story_rows(db, user, story,
                   "SELECT id, story, upd, prompt_hash, options, n_prompt_tokens, n_reused, n_decoded,"
                   " n_generated, ms_prompt, ms_generate, created FROM completion WHERE story = ?1"
                   " ORDER BY created DESC, id DESC LIMIT ?2",
                   ARGS(ARG_INT(story), ARG_INT(limit)), &COMPLETION_ROWS, &a, n, err);
    *out = a;
    return s;
}

// --- achievements --------------------------------------------------------------------

static bool read_achievement(sqlite3_stmt *st, void *out) {
    tree_achievement *a = out;
    a->update = sqlite3_column_int64(st, 1);
    a->created = sqlite3_column_int64(st, 2);
    return col_str(st, 0, &a->achievement);
}

static void achievement_free_v(void *a) { mem_free(((tree_achievement *)a)->achievement); }

static const row_kind ACHIEVEMENT_ROWS = {
    .size = sizeof(tree_achievement), .read = read_achievement, .free = achievement_free_v};

void tree_achievements_free(tree_achievement *a, int n) { rows_free(a, n, &ACHIEVEMENT_ROWS); }

sim_status tree_achievement_unlock(tree_db *db, const char *user, int64_t story, const char *achievement,
                                   int64_t update, sim_err *err) {
    ERR_LOCAL(err);
    sim_status s;
    if ((s = check_user(user, err)) || (s = check_str(achievement, TREE_MAX_NAME, false, true, "achievement", err)))
        return s;
    if (update < 0) return err_set(err, SIM_ERR_ARG, "update %lld not found", (long long)update);
    return story_insert(db, user, story, update,
                        "INSERT OR IGNORE INTO achievement(story, achievement, upd, created)"
                        " VALUES (?1, ?2, ?3, ?4)",
                        ARGS(ARG_INT(story), ARG_STR(achievement), ARG_ID(update), ARG_INT(now_ms())), NULL, err);
}

sim_status tree_achievement_list(tree_db *db, const char *user, int64_t story, tree_achievement **out, int *n,
                                 sim_err *err) {
    ERR_LOCAL(err);
    void *a;
    sim_status s = story_rows(db, user, story,
                              "SELECT achievement, upd, created FROM achievement WHERE story = ?1"
                              " ORDER BY created, rowid LIMIT ?2",
                              ARGS(ARG_INT(story), ARG_INT(TREE_MAX_LIST)), &ACHIEVEMENT_ROWS, &a, n, err);
    *out = a;
    return s;
}

// --- long-term memory ----------------------------------------------------------------

static bool read_hit(sqlite3_stmt *st, void *out) {
    tree_hit *h = out;
    h->id = sqlite3_column_int64(st, 0);
    h->score = -sqlite3_column_double(st, 1);
    return col_str(st, 2, &h->text);
}

static void hit_free_v(void *h) { mem_free(((tree_hit *)h)->text); }

static const row_kind HIT_ROWS = {
    .size = sizeof(tree_hit), .read = read_hit, .free = hit_free_v, .what = "memory search"};

void tree_hits_free(tree_hit *a, int n) { rows_free(a, n, &HIT_ROWS); }

static bool is_word_byte(unsigned char c) {
    return (c >= '0' && c <= '9') || (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z');
}

// Non-ASCII code points that are punctuation, symbols or marks of no word
// (the unicode61 tokenizer separates at them too): a rough table of blocks.
static bool is_word_cp(uint32_t cp) {
    static const uint32_t seps[][2] = {
        {0x0080, 0x00A9}, {0x00AB, 0x00B4}, {0x00B6, 0x00B9}, {0x00BB, 0x00BF}, {0x00D7, 0x00D7},
        {0x00F7, 0x00F7}, {0x2000, 0x206F}, {0x20A0, 0x20CF}, {0x2190, 0x2BFF}, {0x2E00, 0x2E7F},
        {0x3000, 0x303F}, {0xE000, 0xF8FF}, {0xFE00, 0xFE0F}, {0xFE30, 0xFE4F}, {0xFF00, 0xFF0F},
        {0xFF1A, 0xFF20}, {0xFF3B, 0xFF40}, {0xFF5B, 0xFF65}, {0xFFF0, 0xFFFF}, {0x1F000, 0x1FAFF},
        {0xE0000, 0x10FFFF},
    };
    for (size_t i = 0; i < ARRAY_LEN(seps); i++)
        if (cp >= seps[i][0] && cp <= seps[i][1]) return false;
    return true;
}

// The length of the word character at q[0..n) (ASCII letter/digit or a
// valid non-separator UTF-8 sequence), or 0 when it is a separator.
static int word_char_len(const char *q, size_t n) {
    unsigned char c = (unsigned char)q[0];
    if (c < 0x80) return is_word_byte(c) ? 1 : 0;
    uint32_t cp;
    int k = utf8_decode(q, n, &cp);
    return k > 0 && is_word_cp(cp) ? k : 0;
}

int tree_memory_query(const char *query, char *buf, size_t cap) {
    if (cap == 0) return -1;
    buf[0] = 0;
    if (!query) return 0;
    size_t n = strlen(query), len = 0;
    // Word spans already emitted, for dropping repeats.
    size_t wstart[TREE_MAX_QUERY_WORDS], wlen[TREE_MAX_QUERY_WORDS];
    int nw = 0;
    size_t i = 0;
    while (i < n && nw < TREE_MAX_QUERY_WORDS) {
        // Skip separators (punctuation, symbols, invalid UTF-8), one byte at a time.
        while (i < n && word_char_len(query + i, n - i) == 0) i++;
        size_t start = i;
        for (int k; i < n && (k = word_char_len(query + i, n - i)) > 0;) i += (size_t)k;
        size_t wl = i - start;
        if (wl < 3) continue;
        bool dup = false;
        for (int w = 0; w < nw && !dup; w++)
            dup = wlen[w] == wl && strncasecmp(query + wstart[w], query + start, wl) == 0;
        if (dup) continue;
        // ' OR ' + '"' + word (quotes doubled) + '"' + NUL
        size_t need = (nw ? 4 : 0) + 2 + 1;
        for (size_t k = start; k < start + wl; k++) need += query[k] == '"' ? 2 : 1;
        if (len + need > cap) return -1;
        if (nw) {
            memcpy(buf + len, " OR ", 4);
            len += 4;
        }
        buf[len++] = '"';
        for (size_t k = start; k < start + wl; k++) {
            if (query[k] == '"') buf[len++] = '"';
            buf[len++] = query[k];
        }
        buf[len++] = '"';
        buf[len] = 0;
        wstart[nw] = start;
        wlen[nw] = wl;
        nw++;
    }
    return (int)len;
}

sim_status tree_memory_search(tree_db *db, const char *user, int64_t story, const char *query,
                              const int64_t *allowed, int n_allowed, int limit, tree_hit **out, int *n,
                              sim_err *err) {
    ERR_LOCAL(err);
    *out = NULL;
    *n = 0;
    sim_status s;
    // The query is not validated as UTF-8: it is free text, and
    // tree_memory_query treats invalid bytes as separators.
    if ((s = check_user(user, err))) return s;
    if (!query) return err_set(err, SIM_ERR_ARG, "query is missing");
    if (strnlen(query, TREE_MAX_TEXT + 1) > TREE_MAX_TEXT)
        return err_set(err, SIM_ERR_RANGE, "query is longer than %zu bytes", TREE_MAX_TEXT);
    if (n_allowed < 0 || (n_allowed && !allowed)) return err_set(err, SIM_ERR_ARG, "memory search: bad allowed ids");
    if (n_allowed > TREE_MAX_LIST) return err_set(err, SIM_ERR_RANGE, "memory search: over %d allowed ids", TREE_MAX_LIST);
    if (limit < 0) return err_set(err, SIM_ERR_ARG, "limit %d is negative", limit);
    // Each word grows by at most its doubled quotes (none: words hold no
    // quote) plus 6 bytes; the whole text bounds the words.
    size_t qcap = strlen(query) + (size_t)TREE_MAX_QUERY_WORDS * 8 + 1;
    char *fq = mem_alloc(qcap);
    // The allowed ids as a JSON array for json_each (a bound parameter).
    size_t icap = (size_t)n_allowed * 21 + 3;
    char *ids = mem_alloc(icap);
    if (!fq || !ids) {
        mem_free(fq);
        mem_free(ids);
        return nomem(err);
    }
    int qlen = tree_memory_query(query, fq, qcap);
    ASSERT(qlen >= 0);
    size_t il = 0;
    ids[il++] = '[';
    for (int i = 0; i < n_allowed; i++)
        il += (size_t)snprintf(ids + il, icap - il, "%s%lld", i ? "," : "", (long long)allowed[i]);
    ids[il++] = ']';
    ids[il] = 0;

    static const char *const q =
        "SELECT upd_fts.rowid, bm25(upd_fts) AS r, u.text FROM upd_fts JOIN upd u ON u.id = upd_fts.rowid"
        " WHERE upd_fts MATCH ?1 AND u.story = ?2"
        "   AND upd_fts.rowid IN (SELECT value FROM json_each(?3))"
        " ORDER BY r, upd_fts.rowid LIMIT ?4";
    bool search = qlen > 0 && n_allowed > 0 && limit > 0; // else only the access check
    void *a;
    s = story_rows(db, user, story, search ? q : NULL,
                   ARGS(ARG_STR(fq), ARG_INT(story), ARG_STR(ids), ARG_INT(limit)), &HIT_ROWS, &a, n, err);
    mem_free(fq);
    mem_free(ids);
    *out = a;
    return s;
}
