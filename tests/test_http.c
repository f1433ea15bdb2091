// test_http.c — the HTTP layer over real loopback sockets: routing, bodies and
// their limit, auth, CORS, streams (promptness, disconnects), client-gone
// detection, hostile input, concurrency. The client is a few plain blocking
// sockets written here, independent of the server code.
#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
#include <string.h>
#include <strings.h>
#include <sys/socket.h>
#include <sys/time.h>
#include <time.h>
#include <unistd.h>

#include "server/http.h"
#include "test.h"

static void sleep_ms(int ms) {
    struct timespec ts = {ms / 1000, (long)(ms % 1000) * 1000000L};
    nanosleep(&ts, NULL);
}

static double now_ms(void) {
    return (double)time_ns() / 1e6;
}

// Waits up to ms for *flag to become nonzero.
static bool wait_flag(atomic_int *flag, int ms) {
    double t0 = now_ms();
    while (!atomic_load(flag)) {
        if (now_ms() - t0 > ms) return false;
        sleep_ms(2);
    }
    return true;
}

// --- a tiny blocking HTTP client ---------------------------------------------------

typedef struct cli {
    int fd;
    char *buf; // (cap) bytes read and not yet consumed: [0, len)
    size_t len, cap;
} cli;

typedef struct resp {
    int status;       // 0: no (complete) response
    char head[16384]; // status line and headers
    char *body;       // (len) bytes + NUL, decoded from chunks
    size_t len;
    int n_chunks;     // chunks of a chunked body (0 otherwise)
} resp;

static bool cli_open_family(cli *k, int port, int family) {
    memset(k, 0, sizeof *k);
    k->fd = socket(family, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (k->fd < 0) return false;
    struct timeval tv = {5, 0}; // nothing in this test should take that long
    setsockopt(k->fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
    setsockopt(k->fd, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof tv);
    int one = 1;
    setsockopt(k->fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
    int rc;
    if (family == AF_INET6) {
        struct sockaddr_in6 a = {.sin6_family = AF_INET6, .sin6_port = htons((uint16_t)port)};
        inet_pton(AF_INET6, "::1", &a.sin6_addr);
        rc = connect(k->fd, (struct sockaddr *)&a, sizeof a);
    } else {
        struct sockaddr_in a = {.sin_family = AF_INET, .sin_port = htons((uint16_t)port)};
        inet_pton(AF_INET, "127.0.0.1", &a.sin_addr);
        rc = connect(k->fd, (struct sockaddr *)&a, sizeof a);
    }
    if (rc != 0) {
        close(k->fd);
        k->fd = -1;
        return false;
    }
    return true;
}

static bool cli_open(cli *k, int port) {
    return cli_open_family(k, port, AF_INET);
}

static void cli_close(cli *k) {
    if (k->fd >= 0) close(k->fd);
    k->fd = -1;
    free(k->buf);
    k->buf = NULL;
    k->len = k->cap = 0;
}

static bool cli_send(cli *k, const void *p, size_t n) {
    const char *s = p;
    while (n > 0) {
        ssize_t w = send(k->fd, s, n, MSG_NOSIGNAL);
        if (w <= 0) return false;
        s += w;
        n -= (size_t)w;
    }
    return true;
}

static bool cli_sends(cli *k, const char *s) {
    return cli_send(k, s, strlen(s));
}

// Reads more bytes into the buffer; false on end of file, error or timeout.
static bool cli_fill(cli *k) {
    if (k->cap - k->len < 4096) {
        k->cap = k->cap ? 2 * k->cap : 65536;
        k->buf = realloc(k->buf, k->cap);
    }
    ssize_t r = recv(k->fd, k->buf + k->len, k->cap - k->len - 1, 0);
    if (r <= 0) return false;
    k->len += (size_t)r;
    return true;
}

static void cli_consume(cli *k, size_t n) {
    memmove(k->buf, k->buf + n, k->len - n);
    k->len -= n;
}

// Takes the next line (without CRLF) into out.
static bool cli_line(cli *k, char *out, size_t cap) {
    char *e;
    while (!k->buf || !(e = memmem(k->buf, k->len, "\r\n", 2)))
        if (!cli_fill(k)) return false;
    size_t n = (size_t)(e - k->buf);
    snprintf(out, cap, "%.*s", (int)n, k->buf);
    cli_consume(k, n + 2);
    return true;
}

static bool cli_bytes(cli *k, char *out, size_t n) {
    while (k->len < n)
        if (!cli_fill(k)) return false;
    memcpy(out, k->buf, n);
    cli_consume(k, n);
    return true;
}

// A header's value (first match, case-insensitive name) into out.
static bool hdr(const resp *r, const char *name, char *out, size_t cap) {
    size_t nl = strlen(name);
    for (const char *p = strstr(r->head, "\r\n"); p; p = strstr(p + 2, "\r\n")) {
        const char *h = p + 2;
        if (strncasecmp(h, name, nl) == 0 && h[nl] == ':') {
            h += nl + 1;
            while (*h == ' ') h++;
            const char *e = strstr(h, "\r\n");
            size_t n = e ? (size_t)(e - h) : strlen(h);
            snprintf(out, cap, "%.*s", (int)n, h);
            return true;
        }
    }
    return false;
}

static bool hdr_is(const resp *r, const char *name, const char *want) {
    char v[1024];
    return hdr(r, name, v, sizeof v) && strcmp(v, want) == 0;
}

// Reads the status line and headers of the next response.
static bool cli_head(cli *k, resp *r) {
    memset(r, 0, sizeof *r);
    char *e;
    while (!k->buf || !(e = memmem(k->buf, k->len, "\r\n\r\n", 4)))
        if (!cli_fill(k)) return false;
    size_t n = (size_t)(e - k->buf) + 4;
    snprintf(r->head, sizeof r->head, "%.*s", (int)(n - 2), k->buf); // keeps one CRLF after the last header
    cli_consume(k, n);
    int st = 0;
    if (sscanf(r->head, "HTTP/1.%*d %d", &st) != 1) return false;
    r->status = st;
    return true;
}

// The next chunk of a chunked body into *out (malloc'd, NUL-terminated);
// returns its size, 0 at the last chunk, -1 on error.
static long cli_chunk(cli *k, char **out) {
    char line[256];
    *out = NULL;
    if (!cli_line(k, line, sizeof line)) return -1;
    long n = strtol(line, NULL, 16);
    if (n < 0) return -1;
    if (n == 0) {
        while (cli_line(k, line, sizeof line) && line[0]) {} // trailers up to the empty line
        return 0;
    }
    *out = malloc((size_t)n + 1);
    if (!cli_bytes(k, *out, (size_t)n) || !cli_line(k, line, sizeof line) || line[0]) {
        free(*out);
        *out = NULL;
        return -1;
    }
    (*out)[n] = '\0';
    return n;
}

static void body_append(resp *r, const char *p, size_t n) {
    r->body = realloc(r->body, r->len + n + 1);
    memcpy(r->body + r->len, p, n);
    r->len += n;
    r->body[r->len] = '\0';
}

// The body after cli_head: chunked, by Content-Length, or up to end of file.
static bool cli_body(cli *k, resp *r, bool head_request) {
    char v[64];
    body_append(r, "", 0);
    if (head_request || r->status == 204 || r->status == 304 || r->status < 200) return true;
    if (hdr(r, "Transfer-Encoding", v, sizeof v) && strcasecmp(v, "chunked") == 0) {
        for (;;) {
            char *p;
            long n = cli_chunk(k, &p);
            if (n < 0) return false;
            if (n == 0) return true;
            body_append(r, p, (size_t)n);
            r->n_chunks++;
            free(p);
        }
    }
    if (hdr(r, "Content-Length", v, sizeof v)) {
        size_t n = strtoull(v, NULL, 10);
        char *p = malloc(n + 1);
        bool ok = cli_bytes(k, p, n);
        if (ok) body_append(r, p, n);
        free(p);
        return ok;
    }
    while (cli_fill(k)) {}
    body_append(r, k->buf ? k->buf : "", k->len);
    k->len = 0;
    return true;
}

static bool cli_response(cli *k, resp *r) {
    if (!cli_head(k, r)) return false;
    if (!cli_body(k, r, false)) {
        r->status = 0;
        return false;
    }
    return true;
}

static void resp_free(resp *r) {
    free(r->body);
    r->body = NULL;
}

// One request on a fresh connection; status 0 when no response came.
static resp exchange(int port, const char *raw, size_t n) {
    resp r;
    memset(&r, 0, sizeof r);
    cli k;
    if (!cli_open(&k, port)) return r;
    if (cli_send(&k, raw, n)) cli_response(&k, &r);
    cli_close(&k);
    if (!r.body) body_append(&r, "", 0);
    return r;
}

// The same, but the client shuts down its sending side after the request (so
// a server waiting for more bytes sees the end rather than a slow client).
static resp exchange_eof(int port, const char *raw, size_t n) {
    resp r;
    memset(&r, 0, sizeof r);
    cli k;
    if (!cli_open(&k, port)) return r;
    if (cli_send(&k, raw, n)) {
        shutdown(k.fd, SHUT_WR);
        cli_response(&k, &r);
    }
    cli_close(&k);
    if (!r.body) body_append(&r, "", 0);
    return r;
}

static resp get(int port, const char *path, const char *extra_headers) {
    char req[4096];
    int n = snprintf(req, sizeof req, "GET %s HTTP/1.1\r\nHost: t\r\n%sConnection: close\r\n\r\n", path,
                     extra_headers ? extra_headers : "");
    return exchange(port, req, (size_t)n);
}

static resp post(int port, const char *path, const char *extra_headers, const void *body, size_t len) {
    size_t cap = len + 4096;
    char *req = malloc(cap);
    int n = snprintf(req, cap, "POST %s HTTP/1.1\r\nHost: t\r\n%sContent-Length: %zu\r\nConnection: close\r\n\r\n",
                     path, extra_headers ? extra_headers : "", len);
    memcpy(req + n, body, len);
    resp r = exchange(port, req, (size_t)n + len);
    free(req);
    return r;
}

// --- handlers -------------------------------------------------------------------------

static void h_hello(void *ud, const http_req *rq, http_conn *c) {
    http_respond(c, 200, "text/plain", "hello\n", 6);
}

// Echoes the body (checking it is NUL-terminated) with its content type.
static void h_echo(void *ud, const http_req *rq, http_conn *c) {
    if (rq->body[rq->body_len] != '\0') {
        http_respond_error(c, 500, "server_error", NULL, "body not NUL-terminated");
        return;
    }
    char n[32];
    snprintf(n, sizeof n, "%zu", rq->body_len);
    http_add_header(c, "X-Body-Len", n);
    http_respond(c, 200, rq->content_type ? rq->content_type : "application/octet-stream", rq->body, rq->body_len);
}

static void h_info(void *ud, const http_req *rq, http_conn *c) {
    char out[2048];
    int n = snprintf(out, sizeof out, "method=%s path=%s query=%s key=%d client=%s", rq->method, rq->path, rq->query,
                     rq->key_index, rq->client);
    http_respond(c, 200, "text/plain", out, (size_t)n);
}

static void h_silent(void *ud, const http_req *rq, http_conn *c) {}

static void h_slow_echo(void *ud, const http_req *rq, http_conn *c) {
    sleep_ms(50);
    h_echo(ud, rq, c);
}

// --- routes and servers -----------------------------------------------------------------

static atomic_int g_log_lines;
static char g_last_log[512];

static pthread_mutex_t g_log_mu = PTHREAD_MUTEX_INITIALIZER;

static void test_log(void *ud, const char *msg) {
    pthread_mutex_lock(&g_log_mu);
    snprintf(g_last_log, sizeof g_last_log, "%s", msg);
    pthread_mutex_unlock(&g_log_mu);
    atomic_fetch_add(&g_log_lines, 1);
}

static http_server *start(http_config cfg, const http_route *routes, int n) {
    http_server *s = NULL;
    sim_err err;
    cfg.host = cfg.host ? cfg.host : "127.0.0.1";
    cfg.port = 0;
    cfg.log = test_log;
    sim_status st = http_start(&s, &cfg, routes, n, &err);
    CHECK_MSG(st == SIM_OK, "%s", err.msg);
    if (st == SIM_OK) CHECK(http_port(s) > 0);
    return st == SIM_OK ? s : NULL;
}

static const http_route basic_routes[] = {
    {"GET", "/hello", h_hello, NULL, false, false},
    {"POST", "/echo", h_echo, NULL, false, false},
    {"PUT", "/echo", h_echo, NULL, false, false},
    {"GET", "/info", h_info, NULL, false, false},
    {"POST", "/info", h_info, NULL, false, false},
    {"GET", "/health", h_info, NULL, true, false},
    {"GET", "/silent", h_silent, NULL, false, false},
    {"POST", "/slow", h_slow_echo, NULL, false, false},
};

// --- tests ------------------------------------------------------------------------------

static void test_routes(void) {
    http_server *s = start(http_default_config(), basic_routes, (int)ARRAY_LEN(basic_routes));
    if (!s) return;
    int port = http_port(s);
    resp r = get(port, "/hello", NULL);
    CHECK_EQ_INT(r.status, 200);
    CHECK_STR(r.body, "hello\n");
    CHECK(hdr_is(&r, "Content-Type", "text/plain"));
    CHECK(!strstr(r.head, "Access-Control")); // no CORS unless configured
    resp_free(&r);

    r = get(port, "/nope", NULL);
    CHECK_EQ_INT(r.status, 404);
    CHECK(hdr_is(&r, "Content-Type", "application/json"));
    CHECK(strstr(r.body, "{\"error\":{\"message\":\"") == r.body);
    CHECK(strstr(r.body, "\"type\":\"not_found_error\",\"param\":null,\"code\":null}}") != NULL);
    CHECK(strstr(r.body, "/nope") != NULL);
    resp_free(&r);

    // Only exact paths: a prefix, a trailing slash or another case is not the route.
    const char *near[] = {"/hell", "/hello/", "/Hello", "/hello/x", "//hello", ""};
    for (size_t i = 0; i < ARRAY_LEN(near); i++) {
        char req[256];
        int n = snprintf(req, sizeof req, "GET %s HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n", near[i]);
        r = exchange(port, req, (size_t)n);
        CHECK_MSG(r.status == 404 || (near[i][0] == '\0' && r.status == 400), "%s: %d", near[i], r.status);
        resp_free(&r);
    }

    r = get(port, "/echo", NULL);
    CHECK_EQ_INT(r.status, 405);
    CHECK(hdr_is(&r, "Allow", "POST, PUT, OPTIONS"));
    CHECK(strstr(r.body, "\"type\":\"invalid_request_error\"") != NULL);
    resp_free(&r);
    r = post(port, "/hello", NULL, "x", 1);
    CHECK_EQ_INT(r.status, 405);
    CHECK(hdr_is(&r, "Allow", "GET, OPTIONS"));
    resp_free(&r);

    // A handler that returns without responding: 500, not a hung connection.
    atomic_store(&g_log_lines, 0);
    r = get(port, "/silent", NULL);
    CHECK_EQ_INT(r.status, 500);
    CHECK(strstr(r.body, "\"type\":\"server_error\"") != NULL);
    CHECK(atomic_load(&g_log_lines) >= 1);
    resp_free(&r);

    // Hostile bytes in the path still give valid JSON (escaped, U+FFFD).
    const char bad[] = "GET /\"\\\x01\xff HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n";
    r = exchange(port, bad, sizeof bad - 1);
    if (r.status == 404) CHECK(strstr(r.body, "/\\\"\\\\\\u0001\\ufffd") != NULL);
    else CHECK_EQ_INT(r.status, 400);
    resp_free(&r);
    http_stop(s);
}

static void test_query_and_request_fields(void) {
    http_server *s = start(http_default_config(), basic_routes, (int)ARRAY_LEN(basic_routes));
    if (!s) return;
    int port = http_port(s);
    resp r = get(port, "/info?a=1&b=%20x&c", NULL);
    CHECK_EQ_INT(r.status, 200);
    CHECK_STR(r.body, "method=GET path=/info query=a=1&b=%20x&c key=-1 client=127.0.0.1");
    resp_free(&r);
    r = get(port, "/info?", NULL);
    CHECK_STR(r.body, "method=GET path=/info query= key=-1 client=127.0.0.1");
    resp_free(&r);
    r = get(port, "/info", NULL);
    CHECK_STR(r.body, "method=GET path=/info query= key=-1 client=127.0.0.1");
    resp_free(&r);
    r = post(port, "/info?x=y", NULL, "", 0);
    CHECK_STR(r.body, "method=POST path=/info query=x=y key=-1 client=127.0.0.1");
    resp_free(&r);
    r = get(port, "/nope?a=b", NULL);
    CHECK_EQ_INT(r.status, 404);
    resp_free(&r);

    // Two requests on one keep-alive connection, then two pipelined in one write.
    cli k;
    CHECK(cli_open(&k, port));
    CHECK(cli_sends(&k, "GET /info?n=1 HTTP/1.1\r\nHost: t\r\n\r\n"));
    CHECK(cli_response(&k, &r));
    CHECK_STR(r.body, "method=GET path=/info query=n=1 key=-1 client=127.0.0.1");
    resp_free(&r);
    CHECK(cli_sends(&k, "GET /info?n=2 HTTP/1.1\r\nHost: t\r\n\r\n"));
    CHECK(cli_response(&k, &r));
    CHECK_STR(r.body, "method=GET path=/info query=n=2 key=-1 client=127.0.0.1");
    resp_free(&r);
    CHECK(cli_sends(&k, "POST /echo HTTP/1.1\r\nHost: t\r\nContent-Length: 3\r\n\r\nabc"
                        "GET /info?n=3 HTTP/1.1\r\nHost: t\r\n\r\n"));
    CHECK(cli_response(&k, &r));
    CHECK_STR(r.body, "abc");
    resp_free(&r);
    CHECK(cli_response(&k, &r));
    CHECK_STR(r.body, "method=GET path=/info query=n=3 key=-1 client=127.0.0.1");
    resp_free(&r);
    cli_close(&k);
    http_stop(s);
}

static void test_body_echo(void) {
    http_server *s = start(http_default_config(), basic_routes, (int)ARRAY_LEN(basic_routes));
    if (!s) return;
    int port = http_port(s);
    resp r = post(port, "/echo", "Content-Type: text/x-test\r\n", "hi there", 8);
    CHECK_EQ_INT(r.status, 200);
    CHECK_STR(r.body, "hi there");
    CHECK(hdr_is(&r, "Content-Type", "text/x-test"));
    CHECK(hdr_is(&r, "X-Body-Len", "8"));
    resp_free(&r);

    r = post(port, "/echo", NULL, "", 0);
    CHECK_EQ_INT(r.status, 200);
    CHECK_EQ_INT(r.len, 0);
    CHECK(hdr_is(&r, "X-Body-Len", "0"));
    resp_free(&r);

    // Every byte value, NULs included.
    char bin[512];
    for (int i = 0; i < 512; i++) bin[i] = (char)(i * 7 + (i >> 8));
    r = post(port, "/echo", NULL, bin, sizeof bin);
    CHECK_EQ_INT(r.status, 200);
    CHECK(r.len == sizeof bin && memcmp(r.body, bin, sizeof bin) == 0);
    resp_free(&r);

    // 1 MiB, arriving in many pieces.
    size_t big = (size_t)1 << 20;
    char *b = malloc(big);
    uint32_t x = 12345;
    for (size_t i = 0; i < big; i++) {
        x = x * 1664525u + 1013904223u;
        b[i] = (char)(x >> 24);
    }
    r = post(port, "/echo", NULL, b, big);
    CHECK_EQ_INT(r.status, 200);
    CHECK(r.len == big && memcmp(r.body, b, big) == 0);
    resp_free(&r);

    // Chunked upload under the limit: assembled.
    cli k;
    CHECK(cli_open(&k, port));
    CHECK(cli_sends(&k, "PUT /echo HTTP/1.1\r\nHost: t\r\nTransfer-Encoding: chunked\r\nConnection: close\r\n\r\n"
                        "5\r\nhello\r\n1\r\n \r\n6\r\nworld!\r\n0\r\n\r\n"));
    CHECK(cli_response(&k, &r));
    CHECK_EQ_INT(r.status, 200);
    CHECK_STR(r.body, "hello world!");
    resp_free(&r);
    cli_close(&k);
    free(b);
    http_stop(s);
}

static void test_body_limit(void) {
    http_config cfg = http_default_config();
    cfg.max_body = 1000;
    http_server *s = start(cfg, basic_routes, (int)ARRAY_LEN(basic_routes));
    if (!s) return;
    int port = http_port(s);
    char body[1001];
    memset(body, 'a', sizeof body);
    resp r = post(port, "/echo", NULL, body, 1000); // exactly the limit: fine
    CHECK_EQ_INT(r.status, 200);
    CHECK_EQ_INT(r.len, 1000);
    resp_free(&r);
    r = post(port, "/echo", NULL, body, 1001);
    CHECK_EQ_INT(r.status, 413);
    CHECK(strstr(r.body, "\"type\":\"invalid_request_error\"") != NULL);
    resp_free(&r);

    // A huge Content-Length is answered at once, before any body byte is sent.
    cli k;
    CHECK(cli_open(&k, port));
    double t0 = now_ms();
    CHECK(cli_sends(&k, "POST /echo HTTP/1.1\r\nHost: t\r\nContent-Length: 10000000000\r\n\r\n"));
    CHECK(cli_response(&k, &r));
    CHECK_EQ_INT(r.status, 413);
    CHECK(now_ms() - t0 < 1000);
    resp_free(&r);
    cli_close(&k);

    // The same with Expect: 100-continue: no 100, straight 413.
    CHECK(cli_open(&k, port));
    CHECK(cli_sends(&k, "POST /echo HTTP/1.1\r\nHost: t\r\nContent-Length: 5000\r\nExpect: 100-continue\r\n\r\n"));
    CHECK(cli_response(&k, &r));
    CHECK_EQ_INT(r.status, 413);
    resp_free(&r);
    cli_close(&k);

    // Chunked, growing past the limit mid-way: dropped, 413 at its end.
    CHECK(cli_open(&k, port));
    CHECK(cli_sends(&k, "POST /echo HTTP/1.1\r\nHost: t\r\nTransfer-Encoding: chunked\r\n\r\n"));
    char chunk[700];
    memset(chunk, 'b', sizeof chunk);
    for (int i = 0; i < 3; i++) {
        CHECK(cli_sends(&k, "2bc\r\n"));
        CHECK(cli_send(&k, chunk, sizeof chunk));
        CHECK(cli_sends(&k, "\r\n"));
    }
    CHECK(cli_sends(&k, "0\r\n\r\n"));
    CHECK(cli_response(&k, &r));
    CHECK_EQ_INT(r.status, 413);
    resp_free(&r);
    cli_close(&k);

    // A chunked body that never ends: the connection is closed after another
    // MiB or so rather than read forever.
    CHECK(cli_open(&k, port));
    CHECK(cli_sends(&k, "POST /echo HTTP/1.1\r\nHost: t\r\nTransfer-Encoding: chunked\r\n\r\n"));
    char *big = malloc(16384 + 16);
    memcpy(big, "4000\r\n", 6);
    memset(big + 6, 'c', 16384);
    memcpy(big + 6 + 16384, "\r\n", 2);
    size_t sent = 0;
    // (What the kernel buffers on both sides is sent before the cut shows.)
    while (sent < ((size_t)64 << 20) && cli_send(&k, big, 16384 + 8)) sent += 16384;
    CHECK_MSG(sent < ((size_t)64 << 20), "%zu bytes sent", sent);
    free(big);
    cli_close(&k);

    // And the server is fine afterwards.
    r = get(port, "/hello", NULL);
    CHECK_EQ_INT(r.status, 200);
    resp_free(&r);
    http_stop(s);
}

static void test_auth(void) {
    const char *keys[] = {"key-one", "secret-two", "k3"};
    http_config cfg = http_default_config();
    cfg.api_keys = keys;
    cfg.n_api_keys = 3;
    http_server *s = start(cfg, basic_routes, (int)ARRAY_LEN(basic_routes));
    if (!s) return;
    int port = http_port(s);

    resp r = get(port, "/info", NULL);
    CHECK_EQ_INT(r.status, 401);
    CHECK(hdr_is(&r, "WWW-Authenticate", "Bearer"));
    CHECK(strstr(r.body, "\"type\":\"authentication_error\"") != NULL);
    resp_free(&r);

    const char *wrong[] = {"Authorization: Bearer nope\r\n",        "Authorization: Bearer secret-tw\r\n",
                           "Authorization: Bearer secret-two2\r\n", "Authorization: Basic secret-two\r\n",
                           "Authorization: Bearersecret-two\r\n",   "Authorization: Bearer \r\n",
                           "Authorization: secret-two\r\n",         "Authorization: Bearer k\r\n"};
    for (size_t i = 0; i < ARRAY_LEN(wrong); i++) {
        r = get(port, "/info", wrong[i]);
        CHECK_MSG(r.status == 401, "%s-> %d", wrong[i], r.status);
        CHECK(hdr_is(&r, "WWW-Authenticate", "Bearer"));
        resp_free(&r);
    }
    // A body is not read for an unauthenticated request either.
    r = post(port, "/echo", NULL, "x", 1);
    CHECK_EQ_INT(r.status, 401);
    resp_free(&r);

    r = get(port, "/info", "Authorization: Bearer secret-two\r\n");
    CHECK_EQ_INT(r.status, 200);
    CHECK(strstr(r.body, " key=1 ") != NULL);
    resp_free(&r);
    r = get(port, "/info", "Authorization: bearer   k3  \r\n");
    CHECK_EQ_INT(r.status, 200);
    CHECK(strstr(r.body, " key=2 ") != NULL);
    resp_free(&r);
    r = get(port, "/info", "Authorization: Bearer key-one\r\n");
    CHECK(strstr(r.body, " key=0 ") != NULL);
    resp_free(&r);
    r = post(port, "/echo", "Authorization: Bearer key-one\r\n", "abc", 3);
    CHECK_EQ_INT(r.status, 200);
    CHECK_STR(r.body, "abc");
    resp_free(&r);

    // A public route needs no key, and reports none.
    r = get(port, "/health", NULL);
    CHECK_EQ_INT(r.status, 200);
    CHECK(strstr(r.body, " key=-1 ") != NULL);
    resp_free(&r);
    // Unknown paths stay 404 (not 401).
    r = get(port, "/nope", NULL);
    CHECK_EQ_INT(r.status, 404);
    resp_free(&r);
    http_stop(s);

    // An empty key is a config error.
    const char *empty[] = {"ok", ""};
    cfg.api_keys = empty;
    cfg.n_api_keys = 2;
    cfg.port = 0;
    sim_err err;
    CHECK(http_start(&s, &cfg, basic_routes, (int)ARRAY_LEN(basic_routes), &err) == SIM_ERR_ARG);
    CHECK(s == NULL);
}

static void test_cors(void) {
    const char *keys[] = {"k"};
    http_config cfg = http_default_config();
    cfg.cors_origin = "https://play.example";
    cfg.api_keys = keys;
    cfg.n_api_keys = 1;
    http_server *s = start(cfg, basic_routes, (int)ARRAY_LEN(basic_routes));
    if (!s) return;
    int port = http_port(s);
    resp r = get(port, "/hello", "Authorization: Bearer k\r\n");
    CHECK_EQ_INT(r.status, 200);
    CHECK(hdr_is(&r, "Access-Control-Allow-Origin", "https://play.example"));
    resp_free(&r);
    // Errors carry it too (a browser could not read them otherwise).
    const char *paths[] = {"/nope", "/echo", "/hello"};
    int want[] = {404, 405, 401};
    for (int i = 0; i < 3; i++) {
        r = get(port, paths[i], NULL);
        CHECK_EQ_INT(r.status, want[i]);
        CHECK(hdr_is(&r, "Access-Control-Allow-Origin", "https://play.example"));
        resp_free(&r);
    }
    // Preflight: no key needed.
    const char pre[] = "OPTIONS /echo HTTP/1.1\r\nHost: t\r\nOrigin: https://play.example\r\n"
                       "Access-Control-Request-Method: POST\r\nConnection: close\r\n\r\n";
    r = exchange(port, pre, sizeof pre - 1);
    CHECK_EQ_INT(r.status, 204);
    CHECK_EQ_INT(r.len, 0);
    CHECK(hdr_is(&r, "Access-Control-Allow-Origin", "https://play.example"));
    CHECK(hdr_is(&r, "Access-Control-Allow-Methods", "POST, PUT, OPTIONS"));
    CHECK(hdr_is(&r, "Access-Control-Allow-Headers", "Authorization, Content-Type"));
    CHECK(hdr_is(&r, "Access-Control-Max-Age", "86400"));
    CHECK(hdr_is(&r, "Allow", "POST, PUT, OPTIONS"));
    resp_free(&r);
    const char pre404[] = "OPTIONS /nope HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n";
    r = exchange(port, pre404, sizeof pre404 - 1);
    CHECK_EQ_INT(r.status, 404);
    resp_free(&r);
    http_stop(s);

    // Without cors_origin: OPTIONS still answers with Allow, but no CORS headers.
    s = start(http_default_config(), basic_routes, (int)ARRAY_LEN(basic_routes));
    if (!s) return;
    r = exchange(http_port(s), pre, sizeof pre - 1);
    CHECK_EQ_INT(r.status, 204);
    CHECK(hdr_is(&r, "Allow", "POST, PUT, OPTIONS"));
    CHECK(!strstr(r.head, "Access-Control"));
    resp_free(&r);
    http_stop(s);
}

// --- streams ----------------------------------------------------------------------------

typedef struct stream_st {
    int mode;               // 0: two events 200 ms apart; 1: an event every 5 ms for up to 3 s
    int step;
    double t_second_made;   // ms: when the second event was produced (mode 0)
    atomic_int done_calls;
    atomic_int client_gone; // the last done's argument
    atomic_int reads_after; // reads after done (must stay 0)
} stream_st;

static size_t st_read(void *ud, char *buf, size_t cap) {
    stream_st *st = ud;
    if (atomic_load(&st->done_calls)) atomic_fetch_add(&st->reads_after, 1);
    int i = st->step++;
    if (st->mode == 0) {
        if (i == 0) return (size_t)snprintf(buf, cap, "data: 1\n\n");
        if (i == 1) {
            sleep_ms(200);
            st->t_second_made = now_ms();
            return (size_t)snprintf(buf, cap, "data: 2\n\n");
        }
        return 0;
    }
    if (i >= 600) return 0;
    if (i > 0) sleep_ms(5);
    return (size_t)snprintf(buf, cap, "data: %d\n\n", i);
}

static void st_done(void *ud, bool client_gone) {
    stream_st *st = ud;
    atomic_store(&st->client_gone, client_gone);
    atomic_fetch_add(&st->done_calls, 1);
}

static void h_stream(void *ud, const http_req *rq, http_conn *c) {
    http_add_header(c, "Cache-Control", "no-cache");
    http_respond_stream(c, 200, "text/event-stream", st_read, st_done, ud);
}

static void test_stream_prompt(void) {
    stream_st st = {.mode = 0};
    http_route routes[] = {{"GET", "/events", h_stream, &st, false, false}, {"GET", "/hello", h_hello, NULL, false, false}};
    http_server *s = start(http_default_config(), routes, 2);
    if (!s) return;
    cli k;
    CHECK(cli_open(&k, http_port(s)));
    CHECK(cli_sends(&k, "GET /events HTTP/1.1\r\nHost: t\r\n\r\n"));
    resp r;
    CHECK(cli_head(&k, &r));
    CHECK_EQ_INT(r.status, 200);
    CHECK(hdr_is(&r, "Content-Type", "text/event-stream"));
    CHECK(hdr_is(&r, "Cache-Control", "no-cache"));
    CHECK(hdr_is(&r, "Transfer-Encoding", "chunked"));
    char *p;
    long n = cli_chunk(&k, &p);
    double t1 = now_ms();
    CHECK(n == 9 && p && strcmp(p, "data: 1\n\n") == 0);
    free(p);
    n = cli_chunk(&k, &p);
    CHECK(n == 9 && p && strcmp(p, "data: 2\n\n") == 0);
    free(p);
    // The first event arrived before the second was even produced.
    CHECK_MSG(t1 < st.t_second_made, "first event at %.1f ms, second made at %.1f ms", t1, st.t_second_made);
    CHECK(st.t_second_made - t1 > 150);
    CHECK_EQ_INT(cli_chunk(&k, &p), 0);
    CHECK(wait_flag(&st.done_calls, 1000));
    CHECK_EQ_INT(atomic_load(&st.client_gone), 0);
    // The connection stays usable after a stream ended normally.
    CHECK(cli_sends(&k, "GET /hello HTTP/1.1\r\nHost: t\r\n\r\n"));
    CHECK(cli_response(&k, &r));
    CHECK_EQ_INT(r.status, 200);
    resp_free(&r);
    cli_close(&k);
    http_stop(s);
    CHECK_EQ_INT(atomic_load(&st.done_calls), 1);
    CHECK_EQ_INT(atomic_load(&st.reads_after), 0);

    // HTTP/1.0: no chunks, the bytes then a close.
    stream_st st2 = {.mode = 0};
    routes[0].ud = &st2;
    s = start(http_default_config(), routes, 2);
    if (!s) return;
    const char req10[] = "GET /events HTTP/1.0\r\n\r\n";
    r = exchange(http_port(s), req10, sizeof req10 - 1);
    CHECK_EQ_INT(r.status, 200);
    CHECK_STR(r.body, "data: 1\n\ndata: 2\n\n");
    resp_free(&r);
    CHECK(wait_flag(&st2.done_calls, 1000));
    CHECK_EQ_INT(atomic_load(&st2.client_gone), 0);
    http_stop(s);
    CHECK_EQ_INT(atomic_load(&st2.done_calls), 1);
}

static void test_stream_disconnect(void) {
    stream_st st = {.mode = 1};
    http_route routes[] = {{"GET", "/events", h_stream, &st, false, false}};
    http_server *s = start(http_default_config(), routes, 1);
    if (!s) return;
    cli k;
    CHECK(cli_open(&k, http_port(s)));
    CHECK(cli_sends(&k, "GET /events HTTP/1.1\r\nHost: t\r\n\r\n"));
    resp r;
    CHECK(cli_head(&k, &r));
    char *p;
    for (int i = 0; i < 3; i++) {
        char want[32];
        snprintf(want, sizeof want, "data: %d\n\n", i);
        CHECK(cli_chunk(&k, &p) > 0 && p && strcmp(p, want) == 0);
        free(p);
    }
    CHECK_EQ_INT(atomic_load(&st.done_calls), 0);
    double t0 = now_ms();
    cli_close(&k);
    CHECK(wait_flag(&st.done_calls, 1000));
    CHECK_MSG(now_ms() - t0 < 500, "done after %.0f ms", now_ms() - t0);
    CHECK_EQ_INT(atomic_load(&st.client_gone), 1);
    CHECK(st.step < 600);
    sleep_ms(20);
    CHECK_EQ_INT(atomic_load(&st.done_calls), 1);
    CHECK_EQ_INT(atomic_load(&st.reads_after), 0);

    // A reset (SO_LINGER 0) instead of a close.
    stream_st st2 = {.mode = 1};
    routes[0].ud = &st2;
    http_stop(s);
    s = start(http_default_config(), routes, 1);
    if (!s) return;
    CHECK(cli_open(&k, http_port(s)));
    CHECK(cli_sends(&k, "GET /events HTTP/1.1\r\nHost: t\r\n\r\n"));
    CHECK(cli_head(&k, &r));
    CHECK(cli_chunk(&k, &p) > 0);
    free(p);
    struct linger lg = {1, 0};
    setsockopt(k.fd, SOL_SOCKET, SO_LINGER, &lg, sizeof lg);
    cli_close(&k);
    CHECK(wait_flag(&st2.done_calls, 1000));
    CHECK_EQ_INT(atomic_load(&st2.client_gone), 1);
    http_stop(s);
    CHECK_EQ_INT(atomic_load(&st2.done_calls), 1);
}

// A stream whose read() waits for work that does not come polls
// http_client_gone itself (as the server's streams do) and returns 0 when
// the client left: still done(ud, true).
typedef struct wait_st {
    http_conn *c;
    int step;
    atomic_int done_calls, client_gone;
} wait_st;

static size_t ws_read(void *ud, char *buf, size_t cap) {
    wait_st *w = ud;
    if (w->step++ == 0) return (size_t)snprintf(buf, cap, "data: first\n\n");
    for (int i = 0; i < 1500; i++) {
        if (http_client_gone(w->c)) return 0;
        sleep_ms(2);
    }
    return 0;
}

static void ws_done(void *ud, bool client_gone) {
    wait_st *w = ud;
    atomic_store(&w->client_gone, client_gone);
    atomic_fetch_add(&w->done_calls, 1);
}

static void h_wait_stream(void *ud, const http_req *rq, http_conn *c) {
    wait_st *w = ud;
    w->c = c;
    http_respond_stream(c, 200, "text/event-stream", ws_read, ws_done, w);
}

static void test_stream_blocked_reader(void) {
    wait_st w = {0};
    http_route routes[] = {{"GET", "/events", h_wait_stream, &w, false, false}};
    http_server *s = start(http_default_config(), routes, 1);
    if (!s) return;
    cli k;
    CHECK(cli_open(&k, http_port(s)));
    CHECK(cli_sends(&k, "GET /events HTTP/1.1\r\nHost: t\r\n\r\n"));
    resp r;
    CHECK(cli_head(&k, &r));
    char *p;
    CHECK(cli_chunk(&k, &p) > 0 && p && strcmp(p, "data: first\n\n") == 0);
    free(p);
    sleep_ms(30);
    CHECK_EQ_INT(atomic_load(&w.done_calls), 0);
    double t0 = now_ms();
    cli_close(&k);
    CHECK(wait_flag(&w.done_calls, 1000));
    CHECK_MSG(now_ms() - t0 < 300, "done after %.0f ms", now_ms() - t0);
    CHECK_EQ_INT(atomic_load(&w.client_gone), 1);
    http_stop(s);
    CHECK_EQ_INT(atomic_load(&w.done_calls), 1);
}

// A second response is ignored; a second stream gets its done(ud, true) at once.
static stream_st g_twice_stream;
static void h_twice(void *ud, const http_req *rq, http_conn *c) {
    http_respond(c, 201, "text/plain", "first", 5);
    http_respond(c, 202, "text/plain", "second", 6);
    http_respond_error(c, 500, "server_error", NULL, "third");
    http_respond_stream(c, 200, "text/plain", st_read, st_done, &g_twice_stream);
    http_add_header(c, "X-After", "yes"); // still before the handler returns: applied
}

static void test_one_response(void) {
    http_route routes[] = {{"GET", "/twice", h_twice, NULL, false, false}};
    http_server *s = start(http_default_config(), routes, 1);
    if (!s) return;
    atomic_store(&g_log_lines, 0);
    resp r = get(http_port(s), "/twice", NULL);
    CHECK_EQ_INT(r.status, 201);
    CHECK_STR(r.body, "first");
    CHECK(hdr_is(&r, "X-After", "yes"));
    CHECK_EQ_INT(atomic_load(&g_twice_stream.done_calls), 1);
    CHECK_EQ_INT(atomic_load(&g_twice_stream.client_gone), 1);
    CHECK_EQ_INT(g_twice_stream.step, 0);
    CHECK_EQ_INT(atomic_load(&g_log_lines), 3);
    pthread_mutex_lock(&g_log_mu);
    CHECK(strstr(g_last_log, "second response") != NULL);
    pthread_mutex_unlock(&g_log_mu);
    resp_free(&r);
    http_stop(s);
}

// --- client-gone detection --------------------------------------------------------------

typedef struct gone_st {
    atomic_int started;
    atomic_int polls_before; // polls that said "still there"
    atomic_int gone;         // http_client_gone became true
    double t_gone;
    int wait_ms;             // how long the handler polls at most
} gone_st;

static void h_gone(void *ud, const http_req *rq, http_conn *c) {
    gone_st *g = ud;
    atomic_store(&g->started, 1);
    double t0 = now_ms();
    while (now_ms() - t0 < g->wait_ms) {
        if (http_client_gone(c)) {
            g->t_gone = now_ms();
            atomic_store(&g->gone, 1);
            break;
        }
        atomic_fetch_add(&g->polls_before, 1);
        sleep_ms(2);
    }
    http_respond(c, 200, "text/plain", atomic_load(&g->gone) ? "gone" : "here", 4);
}

static void test_client_gone(void) {
    gone_st g = {.wait_ms = 3000};
    http_route routes[] = {{"POST", "/work", h_gone, &g, false, false}, {"GET", "/info", h_info, NULL, false, false}};
    http_server *s = start(http_default_config(), routes, 2);
    if (!s) return;
    int port = http_port(s);
    cli k;
    CHECK(cli_open(&k, port));
    CHECK(cli_sends(&k, "POST /work HTTP/1.1\r\nHost: t\r\nContent-Length: 2\r\n\r\nhi"));
    CHECK(wait_flag(&g.started, 1000));
    sleep_ms(50);
    CHECK(!atomic_load(&g.gone));
    CHECK(atomic_load(&g.polls_before) > 5);
    double t0 = now_ms();
    cli_close(&k);
    CHECK(wait_flag(&g.gone, 1000));
    CHECK_MSG(g.t_gone - t0 < 200, "gone seen after %.0f ms", g.t_gone - t0);

    // Keep-alive: the next request's bytes waiting on the socket are not a
    // departure; both get answered.
    gone_st g2 = {.wait_ms = 150};
    routes[0].ud = &g2;
    http_stop(s);
    s = start(http_default_config(), routes, 2);
    if (!s) return;
    CHECK(cli_open(&k, http_port(s)));
    CHECK(cli_sends(&k, "POST /work HTTP/1.1\r\nHost: t\r\nContent-Length: 2\r\n\r\nhi"
                        "GET /info?second HTTP/1.1\r\nHost: t\r\n\r\n"));
    resp r;
    CHECK(cli_response(&k, &r));
    CHECK_EQ_INT(r.status, 200);
    CHECK_STR(r.body, "here");
    resp_free(&r);
    CHECK(cli_response(&k, &r));
    CHECK(strstr(r.body, "query=second") != NULL);
    resp_free(&r);
    // A client that shuts down its sending side is gone as well.
    gone_st g3 = {.wait_ms = 2000};
    routes[0].ud = &g3;
    http_stop(s);
    cli_close(&k);
    s = start(http_default_config(), routes, 2);
    if (!s) return;
    CHECK(cli_open(&k, http_port(s)));
    CHECK(cli_sends(&k, "POST /work HTTP/1.1\r\nHost: t\r\nContent-Length: 2\r\n\r\nhi"));
    CHECK(wait_flag(&g3.started, 1000));
    shutdown(k.fd, SHUT_WR);
    CHECK(wait_flag(&g3.gone, 1000));
    cli_close(&k);
    http_stop(s);
}

// http_stop with a handler waiting on http_client_gone: the connections are
// shut down, the handler sees it and returns, stop completes.
static void test_stop_while_busy(void) {
    gone_st g = {.wait_ms = 4000};
    http_route routes[] = {{"POST", "/work", h_gone, &g, false, false}};
    http_server *s = start(http_default_config(), routes, 1);
    if (!s) return;
    cli k;
    CHECK(cli_open(&k, http_port(s)));
    CHECK(cli_sends(&k, "POST /work HTTP/1.1\r\nHost: t\r\nContent-Length: 2\r\n\r\nhi"));
    CHECK(wait_flag(&g.started, 1000));
    double t0 = now_ms();
    http_stop(s);
    CHECK_MSG(now_ms() - t0 < 1000, "http_stop took %.0f ms", now_ms() - t0);
    CHECK(atomic_load(&g.gone));
    cli_close(&k);
}

// --- hostile input ------------------------------------------------------------------------

static void test_garbage(void) {
    http_config cfg = http_default_config();
    http_server *s = start(cfg, basic_routes, (int)ARRAY_LEN(basic_routes));
    if (!s) return;
    int port = http_port(s);
#define RAW(s) {s, sizeof s - 1}
    static const struct {
        const char *s;
        size_t n;
    } bad[] = {
        RAW("GARBAGE GARBAGE\r\n\r\n"),
        RAW("GARBAGE\r\n\r\n"), // one word: MHD closes without an answer
        RAW("GET\r\n\r\n"),
        RAW("GET /hello HTTP/9.9\r\nHost: t\r\n\r\n"),
        RAW("\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03 tls hello\r\n\r\n"),
        RAW("\0\0\0\0"),
        RAW("POST /echo HTTP/1.1\r\nHost: t\r\nContent-Length: abc\r\n\r\n"),
        RAW("POST /echo HTTP/1.1\r\nHost: t\r\nContent-Length: -5\r\n\r\n"),
        RAW("POST /echo HTTP/1.1\r\nHost: t\r\nContent-Length: 5\r\nContent-Length: 9\r\n\r\nhello"),
        RAW("POST /echo HTTP/1.1\r\nHost: t\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\nxx\r\n0\r\n\r\n"),
        RAW("POST /echo HTTP/1.1\r\nHost: t\r\nTransfer-Encoding: chunked\r\n\r\nffffffffffffffffff\r\nxx\r\n"),
        RAW("GET /hello HTTP/1.1\r\nHost: t\r\nbroken header line\r\n\r\n"),
        RAW("POST /echo HTTP/1.1\r\nHost: t\r\nContent-Length: 10\r\n\r\nshort"), // then EOF
    };
#undef RAW
    for (size_t i = 0; i < ARRAY_LEN(bad); i++) {
        resp r = exchange_eof(port, bad[i].s, bad[i].n);
        // MHD answers these itself (400, 505, ...) or just closes; never 2xx, never a crash.
        CHECK_MSG(r.status == 0 || r.status >= 400, "case %zu: %d", i, r.status);
        if (i == 0) CHECK_EQ_INT(r.status, 400);
        if (i == 0) CHECK(strstr(r.body, "Request malformed") != NULL); // MHD's own page, not a handler's
        resp_free(&r);
        r = get(port, "/hello", NULL);
        CHECK_MSG(r.status == 200, "after case %zu: %d", i, r.status);
        resp_free(&r);
    }

    // Headers far over the per-connection memory: 431 (or 413), not a crash.
    size_t big = 200000;
    char *req = malloc(big + 256);
    int n = snprintf(req, 256, "GET /hello HTTP/1.1\r\nHost: t\r\nX-Big: ");
    memset(req + n, 'x', big);
    memcpy(req + n + big, "\r\n\r\n", 5);
    resp r = exchange(port, req, (size_t)n + big + 4);
    CHECK_MSG(r.status == 431 || r.status == 413 || r.status == 0, "%d", r.status);
    resp_free(&r);
    // A huge request line.
    memcpy(req, "GET /", 5);
    memset(req + 5, 'a', big);
    memcpy(req + 5 + big, " HTTP/1.1\r\nHost: t\r\n\r\n", 23);
    r = exchange(port, req, 5 + big + 23);
    CHECK_MSG(r.status == 414 || r.status == 431 || r.status == 413 || r.status == 0, "%d", r.status);
    resp_free(&r);
    // Thousands of small headers.
    size_t o = (size_t)snprintf(req, 256, "GET /hello HTTP/1.1\r\nHost: t\r\n");
    while (o < big) o += (size_t)snprintf(req + o, 64, "X-%zu: y\r\n", o);
    memcpy(req + o, "\r\n", 3);
    r = exchange(port, req, o + 2);
    CHECK_MSG(r.status == 431 || r.status == 413 || r.status == 0, "%d", r.status);
    resp_free(&r);
    free(req);

    // Random bytes.
    uint32_t x = 99;
    char junk[4096];
    for (int round = 0; round < 20; round++) {
        for (size_t i = 0; i < sizeof junk; i++) {
            x = x * 1664525u + 1013904223u;
            junk[i] = (char)(x >> 24);
        }
        r = exchange_eof(port, junk, (size_t)(x % sizeof junk) + 1);
        CHECK(r.status == 0 || r.status >= 400);
        resp_free(&r);
    }
    r = get(port, "/hello", NULL);
    CHECK_EQ_INT(r.status, 200);
    resp_free(&r);
    http_stop(s);
}

// With timeout_s = 1: a client that connects and then says nothing is
// dropped after about a second, while a handler or a stream read() that
// waits longer than that (the server's time, not the client's) is not.
static size_t late_read(void *ud, char *buf, size_t cap) {
    int *step = ud;
    if ((*step)++ > 0) return 0;
    sleep_ms(1300);
    return (size_t)snprintf(buf, cap, "data: late\n\n");
}

static void late_done(void *ud, bool client_gone) {}

static void h_late_stream(void *ud, const http_req *rq, http_conn *c) {
    http_respond_stream(c, 200, "text/event-stream", late_read, late_done, ud);
}

static void h_late(void *ud, const http_req *rq, http_conn *c) {
    sleep_ms(1300);
    http_respond(c, 200, "text/plain", "late", 4);
}

typedef struct late_job {
    int port;
    const char *path;
    resp r;
} late_job;

static void *late_thread(void *arg) {
    late_job *j = arg;
    j->r = get(j->port, j->path, NULL);
    return NULL;
}

static void test_timeout(void) {
    int step = 0;
    http_route routes[] = {{"GET", "/late-stream", h_late_stream, &step, false, false}, {"GET", "/late", h_late, NULL, false, false}};
    http_config cfg = http_default_config();
    cfg.timeout_s = 1;
    http_server *s = start(cfg, routes, 2);
    if (!s) return;
    late_job jobs[2] = {{http_port(s), "/late-stream", {0}}, {http_port(s), "/late", {0}}};
    pthread_t th[2];
    for (int i = 0; i < 2; i++) pthread_create(&th[i], NULL, late_thread, &jobs[i]);
    cli k;
    CHECK(cli_open(&k, http_port(s)));
    CHECK(cli_sends(&k, "GET /late HTTP/1.1\r\nHost"));
    double t0 = now_ms();
    char b[64];
    ssize_t got = recv(k.fd, b, sizeof b, 0);
    double dt = now_ms() - t0;
    CHECK(got <= 0);
    CHECK_MSG(dt > 500 && dt < 3000, "closed after %.0f ms", dt);
    cli_close(&k);
    for (int i = 0; i < 2; i++) pthread_join(th[i], NULL);
    CHECK_EQ_INT(jobs[0].r.status, 200);
    CHECK_STR(jobs[0].r.body, "data: late\n\n");
    CHECK_EQ_INT(jobs[1].r.status, 200);
    CHECK_STR(jobs[1].r.body, "late");
    for (int i = 0; i < 2; i++) resp_free(&jobs[i].r);
    http_stop(s);
}

// --- concurrency ------------------------------------------------------------------------

typedef struct client_job {
    int port, id;
    bool ok;
} client_job;

static void *client_thread(void *arg) {
    client_job *j = arg;
    char body[256];
    int n = snprintf(body, sizeof body, "client %d says %d", j->id, j->id * 31337);
    resp r = post(j->port, j->id % 2 ? "/slow" : "/echo", NULL, body, (size_t)n);
    j->ok = r.status == 200 && r.len == (size_t)n && memcmp(r.body, body, (size_t)n) == 0;
    resp_free(&r);
    return NULL;
}

static void test_concurrent(void) {
    http_server *s = start(http_default_config(), basic_routes, (int)ARRAY_LEN(basic_routes));
    if (!s) return;
    enum { N = 64 };
    client_job jobs[N];
    pthread_t th[N];
    double t0 = now_ms();
    for (int i = 0; i < N; i++) {
        jobs[i] = (client_job){.port = http_port(s), .id = i};
        CHECK(pthread_create(&th[i], NULL, client_thread, &jobs[i]) == 0);
    }
    int ok = 0;
    for (int i = 0; i < N; i++) {
        pthread_join(th[i], NULL);
        ok += jobs[i].ok;
    }
    CHECK_EQ_INT(ok, N);
    // The 50 ms handlers ran side by side, not one after another.
    CHECK_MSG(now_ms() - t0 < 1000, "%.0f ms", now_ms() - t0);
    http_stop(s);
}

// More connections than max_connections: the extra ones are refused or
// dropped, the server stays up and serves again once they are gone.
static void test_connection_limit(void) {
    http_config cfg = http_default_config();
    cfg.max_connections = 4;
    http_server *s = start(cfg, basic_routes, (int)ARRAY_LEN(basic_routes));
    if (!s) return;
    int port = http_port(s);
    cli idle[8];
    for (int i = 0; i < 8; i++) cli_open(&idle[i], port);
    sleep_ms(50);
    resp r = get(port, "/hello", NULL);
    CHECK(r.status == 0 || r.status == 503);
    resp_free(&r);
    for (int i = 0; i < 8; i++) cli_close(&idle[i]);
    double t0 = now_ms();
    do {
        sleep_ms(10);
        r = get(port, "/hello", NULL);
        if (r.status == 200) break;
        resp_free(&r);
    } while (now_ms() - t0 < 2000);
    CHECK_EQ_INT(r.status, 200);
    resp_free(&r);
    http_stop(s);
}

// --- start errors, addresses --------------------------------------------------------------

static void test_start(void) {
    http_server *a = start(http_default_config(), basic_routes, (int)ARRAY_LEN(basic_routes));
    if (!a) return;
    http_config cfg = http_default_config();
    cfg.port = http_port(a);
    http_server *b = NULL;
    sim_err err;
    CHECK(http_start(&b, &cfg, basic_routes, (int)ARRAY_LEN(basic_routes), &err) == SIM_ERR_IO);
    CHECK(b == NULL);
    CHECK_MSG(strstr(err.msg, "in use") != NULL, "%s", err.msg);
    http_stop(a);

    cfg.port = 0;
    cfg.host = "no.such.host.example";
    CHECK(http_start(&b, &cfg, basic_routes, (int)ARRAY_LEN(basic_routes), &err) == SIM_ERR_IO);
    CHECK(strstr(err.msg, "no.such.host.example") != NULL);
    cfg.host = "127.0.0.1";
    cfg.port = 70000;
    CHECK(http_start(&b, &cfg, basic_routes, (int)ARRAY_LEN(basic_routes), &err) == SIM_ERR_ARG);
    cfg.port = 0;
    http_route bad = {"GET", "no-slash", h_hello, NULL, false, false};
    CHECK(http_start(&b, &cfg, &bad, 1, &err) == SIM_ERR_ARG);

    // "localhost" and IPv6 literals.
    http_config lc = http_default_config();
    lc.host = "localhost";
    a = start(lc, basic_routes, (int)ARRAY_LEN(basic_routes));
    if (a) {
        resp r = get(http_port(a), "/hello", NULL);
        CHECK_EQ_INT(r.status, 200);
        resp_free(&r);
        http_stop(a);
    }
    const char *v6[] = {"::1", "[::1]"};
    for (int i = 0; i < 2; i++) {
        cfg.host = v6[i];
        cfg.port = 0;
        if (http_start(&a, &cfg, basic_routes, (int)ARRAY_LEN(basic_routes), &err) != SIM_OK) {
            if (i == 0) test_skip("no IPv6 loopback here");
            continue;
        }
        cli k;
        resp r = {0};
        CHECK(cli_open_family(&k, http_port(a), AF_INET6));
        CHECK(cli_sends(&k, "GET /info HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n"));
        CHECK(cli_response(&k, &r));
        CHECK_EQ_INT(r.status, 200);
        CHECK(r.body && strstr(r.body, "client=::1") != NULL);
        resp_free(&r);
        cli_close(&k);
        http_stop(a);
    }
    // "::" takes IPv4 clients too, reported as plain IPv4 addresses.
    cfg.host = "::";
    cfg.port = 0;
    if (http_start(&a, &cfg, basic_routes, (int)ARRAY_LEN(basic_routes), &err) == SIM_OK) {
        resp r = get(http_port(a), "/info", NULL);
        CHECK_EQ_INT(r.status, 200);
        CHECK(strstr(r.body, "client=127.0.0.1") != NULL);
        resp_free(&r);
        http_stop(a);
    }
    http_stop(NULL);
}

// Every allocation of http_start failing in turn: SIM_ERR_NOMEM, nothing
// leaked (the sanitizer build checks), then a server that works.
static void test_start_oom(void) {
    const char *keys[] = {"a", "b"};
    http_config cfg = http_default_config();
    cfg.port = 0;
    cfg.api_keys = keys;
    cfg.n_api_keys = 2;
    cfg.cors_origin = "*";
    http_server *s = NULL;
    sim_err err;
    int n;
    for (n = 0; n < 100; n++) {
        mem_fail_after(n);
        sim_status st = http_start(&s, &cfg, basic_routes, (int)ARRAY_LEN(basic_routes), &err);
        bool failed = mem_fail_triggered();
        mem_fail_after(-1);
        if (st == SIM_OK) {
            CHECK(!failed);
            break;
        }
        CHECK_MSG(st == SIM_ERR_NOMEM && failed, "allocation %d: %d %s", n, st, err.msg);
        CHECK(s == NULL);
    }
    CHECK(n > 5 && n < 100);
    if (!s) return;
    resp r = get(http_port(s), "/hello", "Authorization: Bearer b\r\n");
    CHECK_EQ_INT(r.status, 200);
    resp_free(&r);
    http_stop(s);
}

static void test_secret_eq(void) {
    CHECK(http_secret_eq("abc", "abc"));
    CHECK(http_secret_eq("", ""));
    CHECK(!http_secret_eq("abc", "abd"));
    CHECK(!http_secret_eq("ab", "abc"));
    CHECK(!http_secret_eq("abcd", "abc"));
    CHECK(!http_secret_eq("", "abc"));
    CHECK(!http_secret_eq("abc", ""));
    CHECK(!http_secret_eq("bbc", "abc"));
    CHECK(!http_secret_eq("Abc", "abc"));
    CHECK(http_secret_eq("\xff\x80", "\xff\x80"));
    CHECK(!http_secret_eq("\xff\x81", "\xff\x80"));
    char long_a[300], long_b[300];
    memset(long_a, 'k', 299);
    long_a[299] = '\0';
    memcpy(long_b, long_a, 300);
    CHECK(http_secret_eq(long_a, long_b));
    long_b[298] = 'j';
    CHECK(!http_secret_eq(long_a, long_b));
    long_b[298] = '\0'; // b a prefix of a
    CHECK(!http_secret_eq(long_a, long_b));
}

static void h_err(void *ud, const http_req *rq, http_conn *c) {
    http_respond_error(c, 422, "invalid_request_error", "messages", "bad \"%s\"\n%d", "quote\\", 7);
}

static void test_respond_error(void) {
    http_route routes[] = {{"GET", "/err", h_err, NULL, false, false}};
    http_server *s = start(http_default_config(), routes, 1);
    if (!s) return;
    resp r = get(http_port(s), "/err", NULL);
    CHECK_EQ_INT(r.status, 422);
    CHECK(hdr_is(&r, "Content-Type", "application/json"));
    CHECK_STR(r.body, "{\"error\":{\"message\":\"bad \\\"quote\\\\\\\"\\n7\",\"type\":\"invalid_request_error\","
                      "\"param\":\"messages\",\"code\":null}}\n");
    resp_free(&r);
    http_stop(s);
}

int main(int argc, char **argv) {
    signal(SIGPIPE, SIG_IGN);
    test_init(argc, argv);
    TEST_RUN(test_secret_eq);
    TEST_RUN(test_start);
    TEST_RUN(test_start_oom);
    TEST_RUN(test_routes);
    TEST_RUN(test_query_and_request_fields);
    TEST_RUN(test_body_echo);
    TEST_RUN(test_body_limit);
    TEST_RUN(test_auth);
    TEST_RUN(test_cors);
    TEST_RUN(test_respond_error);
    TEST_RUN(test_one_response);
    TEST_RUN(test_stream_prompt);
    TEST_RUN(test_stream_disconnect);
    TEST_RUN(test_stream_blocked_reader);
    TEST_RUN(test_client_gone);
    TEST_RUN(test_stop_while_busy);
    TEST_RUN(test_garbage);
    TEST_RUN(test_concurrent);
    TEST_RUN(test_connection_limit);
    TEST_RUN(test_timeout);
    return test_finish();
}
