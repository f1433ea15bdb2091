// http.c — the HTTP server of http.h on libmicrohttpd (MHD), one thread per
// connection.
//
// One http_conn per request. MHD's URI-log callback creates it (it is the
// only place that sees the raw request target, query included) and MHD's
// completion callback lets go of it. The access callback runs three times or
// more per request: once with the headers (route, auth and Content-Length are
// checked here, and an error is answered before any body byte is read), once
// per body piece (appended to a buffer bounded by max_body), and a last time
// with nothing, where the handler runs and its response is queued.
//
// A streamed response holds a second reference to the http_conn: MHD frees
// the response (our free callback) and reports the request's end (completion
// callback with a termination code) in an order that depends on how the
// request ended and on the MHD version. done(ud, client_gone) is therefore
// called by whichever of the two comes last, when the termination code is
// known either way.
#include "server/http.h"

#include <arpa/inet.h>
#include <errno.h>
#include <microhttpd.h>
#include <netinet/in.h>
#include <poll.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/socket.h>
#include <unistd.h>

#include "base/utf8.h"

#define HTTP_STREAM_BLOCK 4096         // a stream response's block size (for chunked bodies MHD 0.9.75 hands
                                       // read() the free part of the connection's write buffer instead)
#define HTTP_CONN_MEMORY (64 * 1024)   // MHD's per-connection pool: request line + headers + write buffer
#define HTTP_MSG_MAX 1024              // longest error message (bytes, before JSON escaping)
#define HTTP_KEY_MAX 1024              // longest API key (bytes)

typedef struct http_hdr {
    char *name, *value;
} http_hdr;

struct http_server {
    struct MHD_Daemon *d;
    http_config cfg;      // its strings point into the copies below
    char *host, *cors;
    char **keys;          // (n_api_keys)
    http_route *routes;   // (n_routes), method and path copied
    int n_routes;
    int listen_fd;        // ours: MHD gets it with MHD_OPTION_LISTEN_SOCKET
    int port;
};

struct http_conn {
    http_server *s;
    struct MHD_Connection *mc;
    atomic_int refs;      // the request (until MHD's completion callback) + a queued stream response
    int fd;               // the connection's socket (for http_client_gone)
    char *target;         // the raw request target, split in place at '?'
    const char *query;    // into target, or ""
    const http_route *route;
    int key_index;
    bool started;         // the header call of the access callback has run
    bool queued;          // a response went to MHD
    bool too_big;         // the body passed max_body: being thrown away
    char *body;           // (body_cap) bytes, body_len used + NUL
    size_t body_len, body_cap, discarded;
    size_t body_hint;     // Content-Length (<= max_body), for a single allocation
    char client[INET6_ADDRSTRLEN];

    // The response, built by the http_respond* calls, queued after the handler.
    atomic_bool responded;
    int status;
    struct MHD_Response *resp;
    http_hdr *hdrs;       // (n_hdrs) headers the handler added
    int n_hdrs, cap_hdrs;

    // A streamed response.
    bool stream;          // resp is a stream: done() is owed
    bool stream_eof;      // read() returned 0
    atomic_bool completed_ok; // MHD reported a normal end of the request
    atomic_bool gone_seen;    // http_client_gone said true once
    http_read_fn read;
    http_done_fn done;
    void *ud;
};

// --- small helpers ------------------------------------------------------------------

static void http_log(const http_server *s, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static void http_log(const http_server *s, const char *fmt, ...) {
    if (!s->cfg.log) return;
    char msg[512];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    s->cfg.log(s->cfg.log_ud, msg);
}

// MHD's error log, routed to cfg.log without the trailing newline.
static void mhd_logger(void *cls, const char *fmt, va_list ap) {
    const http_server *s = cls;
    if (!s->cfg.log) return;
    char msg[512];
    vsnprintf(msg, sizeof msg, fmt, ap);
    size_t n = strlen(msg);
    while (n > 0 && (msg[n - 1] == '\n' || msg[n - 1] == '\r')) msg[--n] = '\0';
    s->cfg.log(s->cfg.log_ud, msg);
}

// Appends s[0..n) to out[*len..cap) as the inside of a JSON string: quotes,
// backslashes and control characters escaped, invalid UTF-8 replaced by
// U+FFFD, so hostile bytes (a request path) still give valid JSON. Stops
// before a piece that would not fit (cap keeps room for the NUL).
static void json_escape(char *out, size_t cap, size_t *len, const char *s, size_t n) {
    size_t o = *len;
    for (size_t i = 0; i < n;) {
        char esc[8];
        const char *piece = esc;
        size_t plen, used = 1;
        unsigned char b = (unsigned char)s[i];
        if (b == '"' || b == '\\') {
            esc[0] = '\\', esc[1] = (char)b, plen = 2;
        } else if (b == '\n') {
            memcpy(esc, "\\n", 2), plen = 2;
        } else if (b < 0x20 || b == 0x7f) {
            plen = (size_t)snprintf(esc, sizeof esc, "\\u%04x", b);
        } else if (b < 0x80) {
            piece = s + i, plen = 1;
        } else {
            uint32_t cp;
            int k = utf8_decode(s + i, n - i, &cp);
            if (k > 0) {
                piece = s + i, plen = (size_t)k, used = (size_t)k;
            } else {
                memcpy(esc, "\\ufffd", 6), plen = 6;
            }
        }
        if (o + plen + 1 > cap) break;
        memcpy(out + o, piece, plen);
        o += plen;
        i += used;
    }
    out[o] = '\0';
    *len = o;
}

// A route path matches itself, and one ending in '*' matches every path
// that starts with what precedes the '*' and goes on past it.
static bool path_matches(const char *route, const char *path) {
    size_t n = strlen(route);
    if (n > 0 && route[n - 1] == '*') return strncmp(route, path, n - 1) == 0 && path[n - 1] != '\0';
    return strcmp(route, path) == 0;
}

// The methods routed at path, joined by ", " with OPTIONS last, into out.
// Returns false when no route has that path.
static bool allowed_methods(const http_server *s, const char *path, char *out, size_t cap) {
    size_t o = 0;
    bool any = false, options = false;
    out[0] = '\0';
    for (int i = 0; i < s->n_routes; i++) {
        const http_route *r = &s->routes[i];
        if (!path_matches(r->path, path)) continue;
        any = true;
        bool dup = false;
        for (int j = 0; j < i; j++)
            if (path_matches(s->routes[j].path, path) && strcmp(s->routes[j].method, r->method) == 0) dup = true;
        if (dup) continue;
        if (strcmp(r->method, "OPTIONS") == 0) options = true;
        int k = snprintf(out + o, cap - o, "%s%s", o ? ", " : "", r->method);
        if (k < 0 || (size_t)k >= cap - o) break;
        o += (size_t)k;
    }
    if (any && !options && o + 10 < cap) snprintf(out + o, cap - o, "%sOPTIONS", o ? ", " : "");
    return any;
}

static const http_route *find_route(const http_server *s, const char *method, const char *path) {
    if (strcmp(method, "HEAD") == 0) method = "GET"; // libmicrohttpd sends the headers only
    for (int pass = 0; pass < 2; pass++) // exact paths first, then prefixes
        for (int i = 0; i < s->n_routes; i++)
            if (strcmp(s->routes[i].method, method) == 0 &&
                (pass == 0 ? strcmp(s->routes[i].path, path) == 0 : path_matches(s->routes[i].path, path)))
                return &s->routes[i];
    return NULL;
}

const char *http_req_header(http_conn *c, const char *name) {
    return MHD_lookup_connection_value(c->mc, MHD_HEADER_KIND, name);
}

bool http_secret_eq(const char *a, const char *b) {
    // Walk b to its end; a's index stops at its NUL, so a shorter a differs
    // at b's next byte and a longer one is caught by the final check. The
    // loop count and its operations depend only on strlen(b).
    const volatile unsigned char *pa = (const unsigned char *)a;
    const unsigned char *pb = (const unsigned char *)b;
    unsigned diff = 0;
    size_t ia = 0;
    for (size_t i = 0; pb[i]; i++) {
        unsigned ca = pa[ia];
        diff |= ca ^ pb[i];
        ia += (size_t)(ca != 0);
    }
    diff |= pa[ia];
    return diff == 0;
}

// The key index the request's Authorization header matches, or -1. Every
// key is compared in full, whichever matches.
static int match_key(const http_server *s, struct MHD_Connection *mc, bool query) {
    const char *h = MHD_lookup_connection_value(mc, MHD_HEADER_KIND, MHD_HTTP_HEADER_AUTHORIZATION);
    if (!h && query) h = MHD_lookup_connection_value(mc, MHD_GET_ARGUMENT_KIND, "key"); // decoded by MHD
    else if (h) {
        while (*h == ' ' || *h == '\t') h++;
        if (strncasecmp(h, "Bearer", 6) != 0 || (h[6] != ' ' && h[6] != '\t')) return -1;
        h += 6;
    }
    if (!h) return -1;
    while (*h == ' ' || *h == '\t') h++;
    size_t n = strlen(h);
    while (n > 0 && (h[n - 1] == ' ' || h[n - 1] == '\t')) n--;
    char token[HTTP_KEY_MAX + 1];
    if (n == 0 || n >= sizeof token) return -1;
    memcpy(token, h, n);
    token[n] = '\0';
    int found = -1;
    for (int i = 0; i < s->cfg.n_api_keys; i++) {
        bool eq = http_secret_eq(token, s->keys[i]);
        int take = eq & (found < 0);
        found = take ? i : found;
    }
    memset(token, 0, sizeof token);
    return found;
}

// --- the http_conn ------------------------------------------------------------------

static void conn_unref(http_conn *c) {
    if (atomic_fetch_sub(&c->refs, 1) != 1) return;
    // Both MHD's completion report and the stream response's release have
    // happened (or there was no stream): the request is over.
    // A client that closed while the last chunk was being written can still
    // look like a normal end to MHD (the kernel took the bytes): what
    // http_client_gone saw counts too.
    if (c->stream) c->done(c->ud, !atomic_load(&c->completed_ok) || atomic_load(&c->gone_seen));
    for (int i = 0; i < c->n_hdrs; i++) {
        mem_free(c->hdrs[i].name);
        mem_free(c->hdrs[i].value);
    }
    mem_free(c->hdrs);
    mem_free(c->body);
    mem_free(c->target);
    mem_free(c);
}

// MHD_OPTION_URI_LOG_CALLBACK: called once per request with the raw target;
// what it returns is the request's *con_cls.
static void *on_uri(void *cls, const char *uri, struct MHD_Connection *mc) {
    http_conn *c = mem_calloc(1, sizeof *c);
    if (!c) return NULL;
    c->target = mem_strdup(uri ? uri : "");
    if (!c->target) {
        mem_free(c);
        return NULL;
    }
    char *q = strchr(c->target, '?');
    if (q) *q++ = '\0';
    c->query = q ? q : "";
    c->s = cls;
    c->mc = mc;
    c->fd = -1;
    c->key_index = -1;
    atomic_init(&c->refs, 1);
    atomic_init(&c->responded, false);
    atomic_init(&c->completed_ok, false);
    atomic_init(&c->gone_seen, false);
    return c;
}

// MHD_OPTION_NOTIFY_COMPLETED: the request is over (sent, failed, timed out
// or the daemon stops).
static void on_completed(void *cls, struct MHD_Connection *mc, void **con_cls, enum MHD_RequestTerminationCode toe) {
    http_conn *c = *con_cls;
    if (!c) return;
    *con_cls = NULL;
    struct MHD_Response *r = c->resp; // built but never queued (cannot happen today; frees a stream's ref)
    c->resp = NULL;
    if (r) MHD_destroy_response(r);
    atomic_store(&c->completed_ok, toe == MHD_REQUEST_TERMINATED_COMPLETED_OK);
    conn_unref(c);
}

// --- streams ------------------------------------------------------------------------

// Restarts the connection's idle timeout: time a handler or a stream's
// read() spends waiting is the server's, not an idle client's. (MHD 0.9.75
// would otherwise close a stream whose read() took longer than timeout_s,
// before sending what it returned. Setting the timeout restarts the clock
// only when it was 0, hence the two calls.)
static void keep_alive(http_conn *c) {
    unsigned t = (unsigned)c->s->cfg.timeout_s;
    if (t == 0) return;
    MHD_set_connection_option(c->mc, MHD_CONNECTION_OPTION_TIMEOUT, 0u);
    MHD_set_connection_option(c->mc, MHD_CONNECTION_OPTION_TIMEOUT, t);
}

static ssize_t stream_read(void *cls, uint64_t pos, char *buf, size_t max) {
    http_conn *c = cls;
    if (c->stream_eof) return MHD_CONTENT_READER_END_OF_STREAM;
    // Nothing is written until read() returns, so a client that left while it
    // waited would otherwise go unnoticed until the next chunk fails.
    if (http_client_gone(c)) return MHD_CONTENT_READER_END_WITH_ERROR;
    size_t n = c->read(c->ud, buf, max);
    keep_alive(c);
    if (n == 0) {
        // A read() that ended because its client left (it polled
        // http_client_gone) is not a normal end.
        if (atomic_load(&c->gone_seen)) return MHD_CONTENT_READER_END_WITH_ERROR;
        c->stream_eof = true;
        return MHD_CONTENT_READER_END_OF_STREAM;
    }
    ASSERT(n <= max); // read() wrote past cap: memory is already corrupt
    return (ssize_t)n;
}

// The stream response is freed: after the request's end (normal) or before
// it (an error closed the connection). conn_unref calls done when both are in.
static void stream_free(void *cls) {
    conn_unref(cls);
}

// --- responding ---------------------------------------------------------------------

// Claims the one response of c; false (and a log line) for a second one.
static bool claim_response(http_conn *c, const char *what) {
    if (!atomic_exchange(&c->responded, true)) return true;
    http_log(c->s, "http: %s %s: a second response (%s) ignored", c->route ? c->route->method : "-", c->target, what);
    return false;
}

void http_add_header(http_conn *c, const char *name, const char *value) {
    if (c->queued || !name || !value) return;
    if (c->n_hdrs == c->cap_hdrs) {
        int cap = c->cap_hdrs ? 2 * c->cap_hdrs : 8;
        http_hdr *h = mem_realloc(c->hdrs, (size_t)cap * sizeof *h);
        if (!h) return;
        c->hdrs = h;
        c->cap_hdrs = cap;
    }
    http_hdr *h = &c->hdrs[c->n_hdrs];
    h->name = mem_strdup(name);
    h->value = mem_strdup(value);
    if (!h->name || !h->value) {
        mem_free(h->name);
        mem_free(h->value);
        return;
    }
    c->n_hdrs++;
}

static void set_content_type(struct MHD_Response *r, const char *content_type) {
    if (content_type && *content_type) MHD_add_response_header(r, MHD_HTTP_HEADER_CONTENT_TYPE, content_type);
}

void http_respond(http_conn *c, int status, const char *content_type, const char *body, size_t len) {
    if (!claim_response(c, "body")) return;
    c->status = status;
    c->resp = MHD_create_response_from_buffer(len, (void *)(len ? body : ""), MHD_RESPMEM_MUST_COPY);
    if (c->resp) set_content_type(c->resp, content_type);
}

static void vrespond_error(http_conn *c, int status, const char *type, const char *param, const char *fmt,
                           va_list ap) {
    char msg[HTTP_MSG_MAX];
    vsnprintf(msg, sizeof msg, fmt, ap);
    type = type ? type : "server_error";
    // Each input byte escapes to at most 6 ("\u00xx", "\ufffd"); type and
    // param are cut at 128 bytes of escaped text each.
    char json[6 * HTTP_MSG_MAX + 512];
    size_t n = (size_t)snprintf(json, sizeof json, "{\"error\":{\"message\":\"");
    json_escape(json, sizeof json, &n, msg, strlen(msg));
    n += (size_t)snprintf(json + n, sizeof json - n, "\",\"type\":\"");
    json_escape(json, n + 128, &n, type, strlen(type));
    n += (size_t)snprintf(json + n, sizeof json - n, "\",\"param\":");
    if (param) {
        json[n++] = '"';
        json_escape(json, n + 128, &n, param, strlen(param));
        json[n++] = '"';
    } else {
        n += (size_t)snprintf(json + n, sizeof json - n, "null");
    }
    n += (size_t)snprintf(json + n, sizeof json - n, ",\"code\":null}}\n");
    http_respond(c, status, "application/json", json, n);
}

void http_respond_error(http_conn *c, int status, const char *type, const char *param, const char *fmt, ...) {
    if (atomic_load(&c->responded)) {
        claim_response(c, "error"); // logs
        return;
    }
    va_list ap;
    va_start(ap, fmt);
    vrespond_error(c, status, type, param, fmt, ap);
    va_end(ap);
}

// An error response from this module (not a handler's).
static void respond_error(http_conn *c, int status, const char *type, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));
static void respond_error(http_conn *c, int status, const char *type, const char *fmt, ...) {
    va_list ap;
    va_start(ap, fmt);
    vrespond_error(c, status, type, NULL, fmt, ap);
    va_end(ap);
}

void http_respond_stream(http_conn *c, int status, const char *content_type, http_read_fn read, http_done_fn done,
                         void *ud) {
    if (!claim_response(c, "stream")) {
        if (done) done(ud, true);
        return;
    }
    ASSERT(read && done);
    c->status = status;
    c->resp = MHD_create_response_from_callback(MHD_SIZE_UNKNOWN, HTTP_STREAM_BLOCK, stream_read, c, stream_free);
    if (!c->resp) {
        done(ud, true); // the module answers 500 instead
        return;
    }
    set_content_type(c->resp, content_type);
    c->read = read;
    c->done = done;
    c->ud = ud;
    c->stream = true;
    atomic_fetch_add(&c->refs, 1); // released by stream_free
}

// The socket check behind http_client_gone.
static bool socket_gone(int fd) {
    struct pollfd p = {.fd = fd, .events = POLLIN | POLLRDHUP};
    int r = poll(&p, 1, 0);
    if (r <= 0) return false; // nothing to read (or EINTR): still there
    if (p.revents & (POLLHUP | POLLERR | POLLNVAL | POLLRDHUP)) return true;
    if (p.revents & POLLIN) {
        // Bytes are waiting: the next pipelined request, or an end of file
        // that POLLRDHUP did not report.
        char b;
        ssize_t n = recv(fd, &b, 1, MSG_PEEK | MSG_DONTWAIT);
        if (n == 0) return true;
        if (n < 0 && errno != EAGAIN && errno != EWOULDBLOCK && errno != EINTR) return true;
    }
    return false;
}

bool http_client_gone(http_conn *c) {
    if (atomic_load(&c->gone_seen)) return true;
    if (c->fd < 0 || !socket_gone(c->fd)) return false;
    atomic_store(&c->gone_seen, true);
    return true;
}

// Hands c's response (or a 500 when the handler gave none) to MHD.
static enum MHD_Result queue(http_conn *c) {
    http_server *s = c->s;
    if (!atomic_load(&c->responded)) {
        respond_error(c, 500, "server_error", "the handler for %s %s produced no response",
                      c->route ? c->route->method : "?", c->target);
        http_log(s, "http: %s %s: the handler produced no response", c->route ? c->route->method : "?", c->target);
    }
    if (!c->resp) {
        // Out of memory making the response: a fixed one without copies.
        static const char oom[] = "{\"error\":{\"message\":\"out of memory\",\"type\":\"server_error\","
                                  "\"param\":null,\"code\":null}}\n";
        c->status = 500;
        c->resp = MHD_create_response_from_buffer(sizeof oom - 1, (void *)oom, MHD_RESPMEM_PERSISTENT);
        if (!c->resp) return MHD_NO;
        set_content_type(c->resp, "application/json");
    }
    for (int i = 0; i < c->n_hdrs; i++)
        if (MHD_add_response_header(c->resp, c->hdrs[i].name, c->hdrs[i].value) != MHD_YES)
            http_log(s, "http: %s: header '%s' refused", c->target, c->hdrs[i].name);
    if (s->cors) MHD_add_response_header(c->resp, "Access-Control-Allow-Origin", s->cors);
    int status = c->status >= 100 && c->status <= 999 ? c->status : 500;
    enum MHD_Result ret = MHD_queue_response(c->mc, (unsigned)status, c->resp);
    if (ret != MHD_YES) http_log(s, "http: %s: MHD refused the response", c->target);
    c->queued = true;
    struct MHD_Response *r = c->resp;
    c->resp = NULL;
    MHD_destroy_response(r); // MHD holds its own reference when queued; a stream's free runs when both let go
    return ret;
}

// --- the access callback ------------------------------------------------------------

static enum MHD_Result count_content_length(void *cls, enum MHD_ValueKind kind, const char *key, const char *value) {
    if (key && strcasecmp(key, MHD_HTTP_HEADER_CONTENT_LENGTH) == 0) ++*(int *)cls;
    return MHD_YES;
}

// The first call for a request: everything that can be decided from the
// request line and headers, before any body byte is read.
static enum MHD_Result begin(http_server *s, http_conn *c, const char *method) {
    const union MHD_ConnectionInfo *ci = MHD_get_connection_info(c->mc, MHD_CONNECTION_INFO_CONNECTION_FD);
    if (ci) c->fd = ci->connect_fd;
    ci = MHD_get_connection_info(c->mc, MHD_CONNECTION_INFO_CLIENT_ADDRESS);
    if (ci && ci->client_addr) {
        const struct sockaddr *sa = ci->client_addr;
        if (sa->sa_family == AF_INET)
            inet_ntop(AF_INET, &((const struct sockaddr_in *)(const void *)sa)->sin_addr, c->client, sizeof c->client);
        else if (sa->sa_family == AF_INET6) {
            const struct in6_addr *a6 = &((const struct sockaddr_in6 *)(const void *)sa)->sin6_addr;
            if (IN6_IS_ADDR_V4MAPPED(a6)) // an IPv4 client of a dual-stack socket
                inet_ntop(AF_INET, &a6->s6_addr[12], c->client, sizeof c->client);
            else
                inet_ntop(AF_INET6, a6, c->client, sizeof c->client);
        }
    }

    const char *path = c->target;
    char allow[256];
    c->route = find_route(s, method, path);
    if (!c->route) {
        if (!allowed_methods(s, path, allow, sizeof allow)) {
            respond_error(c, 404, "not_found_error", "no route for %s %.200s", method, path);
            return queue(c);
        }
        http_add_header(c, "Allow", allow);
        if (strcmp(method, "OPTIONS") == 0) {
            // CORS preflight (or a plain OPTIONS): no auth, browsers send none.
            if (s->cors) {
                http_add_header(c, "Access-Control-Allow-Methods", allow);
                http_add_header(c, "Access-Control-Allow-Headers", "Authorization, Content-Type");
                http_add_header(c, "Access-Control-Max-Age", "86400");
            }
            http_respond(c, 204, NULL, "", 0);
            return queue(c);
        }
        respond_error(c, 405, "invalid_request_error", "method %s not allowed for %.200s (allowed: %s)", method, path,
                      allow);
        return queue(c);
    }

    if (s->cfg.n_api_keys > 0 && !c->route->public_route) {
        c->key_index = match_key(s, c->mc, c->route->key_in_query);
        if (c->key_index < 0) {
            http_add_header(c, MHD_HTTP_HEADER_WWW_AUTHENTICATE, "Bearer");
            bool given = MHD_lookup_connection_value(c->mc, MHD_HEADER_KIND, MHD_HTTP_HEADER_AUTHORIZATION) != NULL;
            respond_error(c, 401, "authentication_error",
                          given ? "invalid API key" : "an API key is required (Authorization: Bearer KEY)");
            return queue(c);
        }
    }

    // MHD takes the first of several Content-Length headers; a request
    // that disagrees with itself about its length is refused instead.
    int n_cl = 0;
    MHD_get_connection_values(c->mc, MHD_HEADER_KIND, count_content_length, &n_cl);
    if (n_cl > 1) {
        respond_error(c, 400, "invalid_request_error", "more than one Content-Length header");
        return queue(c);
    }
    const char *cl = MHD_lookup_connection_value(c->mc, MHD_HEADER_KIND, MHD_HTTP_HEADER_CONTENT_LENGTH);
    if (cl) {
        char *end;
        errno = 0;
        unsigned long long n = strtoull(cl, &end, 10);
        if (errno == 0 && end != cl && n > s->cfg.max_body) {
            respond_error(c, 413, "invalid_request_error",
                          "the request body (%llu bytes) is over the limit of %zu bytes", n, s->cfg.max_body);
            return queue(c);
        }
        if (errno == 0 && end != cl) c->body_hint = (size_t)n;
    }
    return MHD_YES;
}

// How much of an oversized chunked body is read and thrown away: max_body
// again, at least 1 MiB.
static size_t discard_max(const http_server *s) {
    return MAX(s->cfg.max_body, (size_t)1 << 20);
}

// A piece of the body: appended, or thrown away once over the limit.
static enum MHD_Result take_body(http_server *s, http_conn *c, const char *data, size_t n) {
    if (c->too_big) {
        // MHD (0.9.75) takes no response in the middle of a body: keep
        // reading, so the 413 can be sent when the body ends, up to
        // discard_max more bytes; past that the connection is closed.
        c->discarded += n;
        return c->discarded > discard_max(s) ? MHD_NO : MHD_YES;
    }
    if (n > s->cfg.max_body - c->body_len) {
        c->too_big = true;
        c->discarded = c->body_len + n - s->cfg.max_body;
        mem_free(c->body);
        c->body = NULL;
        c->body_len = c->body_cap = 0;
        return MHD_YES;
    }
    size_t need = c->body_len + n + 1;
    if (need > c->body_cap) {
        size_t cap = c->body_cap ? c->body_cap : MAX(c->body_hint + 1, (size_t)4096);
        while (cap < need) cap = cap > SIZE_MAX / 2 ? need : 2 * cap;
        if (cap > s->cfg.max_body + 1) cap = s->cfg.max_body + 1;
        char *b = mem_realloc(c->body, cap);
        if (!b) {
            http_log(s, "http: %s: out of memory for a %zu-byte body", c->target, need);
            return MHD_NO;
        }
        c->body = b;
        c->body_cap = cap;
    }
    memcpy(c->body + c->body_len, data, n);
    c->body_len += n;
    c->body[c->body_len] = '\0';
    return MHD_YES;
}

static enum MHD_Result on_access(void *cls, struct MHD_Connection *mc, const char *url, const char *method,
                                 const char *version, const char *upload_data, size_t *upload_data_size,
                                 void **con_cls) {
    http_server *s = cls;
    http_conn *c = *con_cls;
    if (!c) return MHD_NO; // on_uri ran out of memory: close
    if (!c->started) {
        c->started = true;
        c->mc = mc;
        return begin(s, c, method);
    }
    if (c->queued) {
        *upload_data_size = 0; // answered early: the rest is not ours to read
        return MHD_YES;
    }
    if (*upload_data_size > 0) {
        size_t n = *upload_data_size;
        *upload_data_size = 0;
        return take_body(s, c, upload_data, n);
    }
    if (c->too_big) {
        respond_error(c, 413, "invalid_request_error", "the request body is over the limit of %zu bytes",
                      s->cfg.max_body);
        return queue(c);
    }

    const char *ct = MHD_lookup_connection_value(mc, MHD_HEADER_KIND, MHD_HTTP_HEADER_CONTENT_TYPE);
    http_req rq = {
        .method = method,
        .path = c->target,
        .query = c->query,
        .body = c->body ? c->body : "",
        .body_len = c->body_len,
        .content_type = ct,
        .client = c->client,
        .key_index = c->key_index,
    };
    c->route->fn(c->route->ud, &rq, c);
    keep_alive(c);
    return queue(c);
}

// --- starting and stopping ----------------------------------------------------------

http_config http_default_config(void) {
    return (http_config){
        .host = "127.0.0.1",
        .port = 8080,
        .max_body = (size_t)8 << 20,
        .max_connections = 256,
        .timeout_s = 600,
    };
}

static void server_free(http_server *s) {
    if (!s) return;
    for (int i = 0; i < s->n_routes; i++) {
        mem_free((char *)s->routes[i].method);
        mem_free((char *)s->routes[i].path);
    }
    mem_free(s->routes);
    if (s->keys)
        for (int i = 0; i < s->cfg.n_api_keys; i++) mem_free(s->keys[i]);
    mem_free(s->keys);
    mem_free(s->host);
    mem_free(s->cors);
    if (s->listen_fd >= 0) close(s->listen_fd);
    mem_free(s);
}

// Binds and listens on host:port; returns the socket or -1 with *err set.
static int open_listener(const char *host, int port, sim_err *err) {
    char lit[64];
    const char *h = host && *host ? host : "127.0.0.1";
    size_t hl = strlen(h);
    if (hl >= 2 && h[0] == '[' && h[hl - 1] == ']' && hl - 2 < sizeof lit) {
        memcpy(lit, h + 1, hl - 2);
        lit[hl - 2] = '\0';
        h = lit;
    }
    if (strcmp(h, "localhost") == 0) h = "127.0.0.1";
    struct sockaddr_storage ss;
    memset(&ss, 0, sizeof ss);
    socklen_t sl;
    int family;
    bool any6 = false;
    struct sockaddr_in *s4 = (struct sockaddr_in *)&ss;
    struct sockaddr_in6 *s6 = (struct sockaddr_in6 *)&ss;
    if (inet_pton(AF_INET, h, &s4->sin_addr) == 1) {
        s4->sin_family = AF_INET;
        s4->sin_port = htons((uint16_t)port);
        sl = sizeof *s4;
        family = AF_INET;
    } else if (inet_pton(AF_INET6, h, &s6->sin6_addr) == 1) {
        s6->sin6_family = AF_INET6;
        s6->sin6_port = htons((uint16_t)port);
        sl = sizeof *s6;
        family = AF_INET6;
        any6 = IN6_IS_ADDR_UNSPECIFIED(&s6->sin6_addr);
    } else {
        err_set(err, SIM_ERR_IO, "cannot listen on '%s': not an IPv4 or IPv6 address (or localhost)", host);
        return -1;
    }
    int fd = socket(family, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
    if (fd < 0) {
        err_set(err, SIM_ERR_IO, "cannot listen on %s port %d: socket: %s", host, port, strerror(errno));
        return -1;
    }
    int one = 1, v6only = any6 ? 0 : 1;
    setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
    if (family == AF_INET6) setsockopt(fd, IPPROTO_IPV6, IPV6_V6ONLY, &v6only, sizeof v6only);
    if (bind(fd, (struct sockaddr *)&ss, sl) != 0 || listen(fd, SOMAXCONN) != 0) {
        int e = errno;
        close(fd);
        err_set(err, SIM_ERR_IO, "cannot listen on %s port %d: %s", host, port, strerror(e));
        return -1;
    }
    return fd;
}

sim_status http_start(http_server **out, const http_config *cfg, const http_route *routes, int n_routes,
                      sim_err *err) {
    *out = NULL;
    if (!cfg || n_routes < 0 || (n_routes > 0 && !routes))
        return err_set(err, SIM_ERR_ARG, "http: no config or routes");
    if (cfg->port < 0 || cfg->port > 65535) return err_set(err, SIM_ERR_ARG, "http: port %d out of range", cfg->port);
    if (cfg->n_api_keys < 0 || (cfg->n_api_keys > 0 && !cfg->api_keys))
        return err_set(err, SIM_ERR_ARG, "http: %d API keys but no array", cfg->n_api_keys);
    for (int i = 0; i < cfg->n_api_keys; i++)
        if (!cfg->api_keys[i] || !cfg->api_keys[i][0] || strlen(cfg->api_keys[i]) > HTTP_KEY_MAX)
            return err_set(err, SIM_ERR_ARG, "http: API key %d is empty or over %d bytes", i, HTTP_KEY_MAX);
    for (int i = 0; i < n_routes; i++)
        if (!routes[i].method || !routes[i].path || !routes[i].fn || !routes[i].method[0] || routes[i].path[0] != '/')
            return err_set(err, SIM_ERR_ARG, "http: route %d lacks a method, a path starting with '/' or a handler", i);

    http_server *s = mem_calloc(1, sizeof *s);
    if (!s) return err_set(err, SIM_ERR_NOMEM, "http: out of memory");
    s->listen_fd = -1;
    s->cfg = *cfg;
    s->cfg.api_keys = NULL;
    if (s->cfg.max_body == 0) s->cfg.max_body = (size_t)8 << 20;
    if (s->cfg.max_body > SIZE_MAX / 4) s->cfg.max_body = SIZE_MAX / 4;
    if (s->cfg.max_connections <= 0) s->cfg.max_connections = 256;
    if (s->cfg.timeout_s < 0) s->cfg.timeout_s = 0;
    bool ok = true;
    s->host = mem_strdup(cfg->host ? cfg->host : "127.0.0.1");
    ok &= s->host != NULL;
    if (cfg->cors_origin) ok &= (s->cors = mem_strdup(cfg->cors_origin)) != NULL;
    s->cfg.host = s->host;
    s->cfg.cors_origin = s->cors;
    if (cfg->n_api_keys > 0 && ok) {
        s->keys = mem_calloc((size_t)cfg->n_api_keys, sizeof *s->keys);
        ok &= s->keys != NULL;
        for (int i = 0; ok && i < cfg->n_api_keys; i++) ok &= (s->keys[i] = mem_strdup(cfg->api_keys[i])) != NULL;
        if (!s->keys) s->cfg.n_api_keys = 0;
    }
    if (n_routes > 0 && ok) {
        s->routes = mem_calloc((size_t)n_routes, sizeof *s->routes);
        ok &= s->routes != NULL;
        for (int i = 0; ok && i < n_routes; i++) {
            s->routes[i] = routes[i];
            s->routes[i].method = mem_strdup(routes[i].method);
            s->routes[i].path = mem_strdup(routes[i].path);
            s->n_routes = i + 1;
            ok &= s->routes[i].method && s->routes[i].path;
        }
    }
    if (!ok) {
        server_free(s);
        return err_set(err, SIM_ERR_NOMEM, "http: out of memory");
    }

    s->listen_fd = open_listener(s->host, cfg->port, err);
    if (s->listen_fd < 0) {
        sim_status st = err ? err->code : SIM_ERR_IO;
        server_free(s);
        return st;
    }
    unsigned flags = MHD_USE_THREAD_PER_CONNECTION | MHD_USE_INTERNAL_POLLING_THREAD | MHD_USE_POLL | MHD_USE_ITC |
                     MHD_USE_ERROR_LOG;
    s->d = MHD_start_daemon(flags, 0, NULL, NULL, on_access, s,
                            MHD_OPTION_EXTERNAL_LOGGER, mhd_logger, s,
                            MHD_OPTION_LISTEN_SOCKET, (MHD_socket)s->listen_fd,
                            MHD_OPTION_CONNECTION_LIMIT, (unsigned)s->cfg.max_connections,
                            MHD_OPTION_CONNECTION_TIMEOUT, (unsigned)s->cfg.timeout_s,
                            MHD_OPTION_CONNECTION_MEMORY_LIMIT, (size_t)HTTP_CONN_MEMORY,
                            MHD_OPTION_URI_LOG_CALLBACK, on_uri, s,
                            MHD_OPTION_NOTIFY_COMPLETED, on_completed, s,
                            MHD_OPTION_END);
    if (!s->d) {
        server_free(s);
        return err_set(err, SIM_ERR_IO, "cannot serve on %s port %d: libmicrohttpd did not start", cfg->host,
                       cfg->port);
    }
    const union MHD_DaemonInfo *di = MHD_get_daemon_info(s->d, MHD_DAEMON_INFO_BIND_PORT);
    s->port = di ? di->port : 0;
    if (s->port == 0) {
        struct sockaddr_storage ss;
        socklen_t sl = sizeof ss;
        if (getsockname(s->listen_fd, (struct sockaddr *)&ss, &sl) == 0)
            s->port = ss.ss_family == AF_INET6 ? ntohs(((struct sockaddr_in6 *)&ss)->sin6_port)
                                               : ntohs(((struct sockaddr_in *)&ss)->sin_port);
    }
    *out = s;
    return SIM_OK;
}

int http_port(const http_server *s) {
    return s->port;
}

void http_stop(http_server *s) {
    if (!s) return;
    // Quiesced first, so the listening socket comes back to us and is closed
    // exactly once (by server_free), whatever MHD_stop_daemon does with it.
    if (MHD_quiesce_daemon(s->d) == MHD_INVALID_SOCKET) s->listen_fd = -1; // MHD still owns it
    MHD_stop_daemon(s->d);
    server_free(s);
}
