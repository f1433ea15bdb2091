// http.h — a small HTTP/1.1 server on libmicrohttpd: routing by method and
// path, bounded request bodies, Bearer API keys, CORS, and responses that are
// either whole bodies or streams pulled chunk by chunk (Server-Sent Events).
//
// Every connection has its own thread (libmicrohttpd's thread-per-connection
// mode), so a handler may block: wait for a scheduler, or pull stream chunks
// as they are produced. Handlers get the whole body (NUL-terminated) after it
// has arrived; a body over the limit is answered 413 without calling them.
//
//     static void hello(void *ud, const http_req *rq, http_conn *c) {
//         http_respond(c, 200, "text/plain", "hi\n", 3);
//     }
//     http_config cfg = http_default_config();
//     cfg.port = 8080;
//     http_server *s;
//     if (http_start(&s, &cfg, routes, n_routes, &err) != SIM_OK) ...  // e.g. port in use
//     ... http_stop(s);                                                   // waits for handlers
//
// Routes: exact method and path ("GET", "/v1/models"), or a path prefix
// ending in '*' ("/api/stories/*" matches "/api/stories/3/say"; exact routes
// win); the query string is split off into http_req.query. An unknown path is 404, a known path with
// another method 405 (with Allow), OPTIONS is answered for CORS preflight.
// All error responses of this module are JSON in OpenAI's shape:
//     {"error":{"message":"...","type":"invalid_request_error","param":null,"code":null}}
//
// Auth: when cfg.api_keys is set, every route not marked public needs
// `Authorization: Bearer <key>` matching one key (constant-time comparison
// of every key); otherwise 401 (with `WWW-Authenticate: Bearer`). Ownership:
// the server copies the config and routes; handlers' ud pointers are borrowed.
//
// Order of checks, all before any body byte is read: route (404/405,
// OPTIONS), auth (401), Content-Length against max_body (413). A chunked
// body that grows past max_body is dropped and answered 413 once it ends
// (libmicrohttpd takes no response in the middle of a body; at most another
// max(max_body, 1 MiB) bytes are read and thrown away, past that the
// connection is closed without an answer). Two Content-Length headers: 400.
// Malformed requests (bad request line, headers over the 64 KiB
// per-connection memory) are answered by libmicrohttpd itself (400, 414,
// 431, 505 with its own small HTML body, or a bare close for a request line
// of one word) and never reach a handler.
//
// Threads and lifetimes: a handler runs on its connection's thread and may
// block. The http_conn is valid until the handler returns — or, for a
// stream, until done() has been called; http_client_gone(c) may be called
// from any thread within that time. Responding functions may be called from
// another thread too, as long as the call finishes before the handler
// returns: the response is handed to libmicrohttpd when the handler returns
// (so headers may be added after http_respond as well). A handler that
// returns without responding gets a 500 JSON error.
//
// Exactly one response: a second http_respond / http_respond_error is
// ignored (and logged through cfg.log); a second http_respond_stream is
// ignored and calls its done(ud, true) at once, so the work behind it is
// still released. Never an abort: a handler bug must not take the server down.
#ifndef SIM_HTTP_H
#define SIM_HTTP_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

#include "base/base.h"

typedef struct http_server http_server;
typedef struct http_conn http_conn; // the response side of one request

typedef struct http_req {
    const char *method;    // "GET", "POST", ...
    const char *path;      // without the query string
    const char *query;     // after '?', or "" (not decoded)
    const char *body;      // NUL-terminated (empty when none)
    size_t body_len;
    const char *content_type; // the header, or NULL
    const char *client;       // the peer address as text ("127.0.0.1")
    int key_index;            // which API key matched (-1: none configured or public route)
} http_req;

typedef void (*http_handler)(void *ud, const http_req *rq, http_conn *c);

typedef struct http_route {
    const char *method;
    const char *path;
    http_handler fn;
    void *ud;
    bool public_route; // reachable without an API key (e.g. /health)
    bool key_in_query; // the key may also come as ?key=KEY (EventSource cannot send headers)
} http_route;

typedef struct http_config {
    const char *host;          // address to bind ("127.0.0.1" default; "0.0.0.0" for all)
    int port;                  // 0: any free port (see http_port)
    const char *const *api_keys; // NULL: no auth; each key 1..1024 bytes
    int n_api_keys;
    const char *cors_origin;   // Access-Control-Allow-Origin value, NULL: no CORS headers
    size_t max_body;           // bytes; larger bodies get 413 (default 8 MiB)
    int max_connections;       // simultaneous connections (default 256)
    int timeout_s;             // idle connection timeout (default 600; 0: none): a client that sends or
                               // takes nothing for that long is dropped; time spent in a handler or a
                               // stream's read() does not count
    // Where the module's own warnings and libmicrohttpd's error messages go
    // (one line each, no newline; called from connection threads). NULL:
    // dropped. The module never writes to stdout or stderr itself.
    void (*log)(void *log_ud, const char *msg);
    void *log_ud;
} http_config;

// host "127.0.0.1", port 8080, no keys, no CORS, max_body 8 MiB,
// max_connections 256, timeout_s 600, no log.
http_config http_default_config(void);

// Starts listening and serving in background threads. host is an IPv4 or
// IPv6 literal ("::1", "[::1]"; "::" takes IPv4 too) or "localhost". Errors:
// the address cannot be parsed or bound (SIM_ERR_IO, names it and the
// reason), bad config (SIM_ERR_ARG: a route without method/path/handler, an
// empty API key, a port outside 0..65535).
sim_status http_start(http_server **out, const http_config *cfg, const http_route *routes, int n_routes, sim_err *err);
// The port actually bound (useful with port 0).
int http_port(const http_server *s);
// Stops accepting, waits for running handlers and streams to end, frees.
// Open connections are shut down (so http_client_gone turns true for them),
// but a handler or stream read() blocked on something else keeps http_stop
// waiting: the caller first makes them return (the server's scheduler
// cancels its tasks on shutdown). NULL is a no-op.
void http_stop(http_server *s);

// --- responding (exactly one response per request) ---------------------------------

// A request header (case-insensitive name), or NULL; valid while the handler runs.
const char *http_req_header(http_conn *c, const char *name);

// Adds a header to the response (any time before the handler returns; the
// module adds Content-Type itself, and the CORS origin when configured).
void http_add_header(http_conn *c, const char *name, const char *value);
// A whole response; body is copied.
void http_respond(http_conn *c, int status, const char *content_type, const char *body, size_t len);
// {"error":{"message":msg,"type":type,"param":param or null,"code":null}} with status.
void http_respond_error(http_conn *c, int status, const char *type, const char *param, const char *fmt, ...)
    __attribute__((format(printf, 5, 6)));

// A streamed response: after the handler returns, the connection's thread
// calls read(ud, buf, cap) for each chunk; it may block until data is ready,
// returns the bytes written to buf (1..cap), or 0 at the end of the stream.
// cap is whatever room the connection's write buffer has (tens of KiB, but
// any value >= 1 must work): return what is ready rather than wait to fill it.
// Each chunk is sent as soon as read returns it (HTTP/1.1 chunked encoding;
// an HTTP/1.0 client gets the bytes and then a close). Before each read the
// connection is checked with http_client_gone, so a stream whose client left
// ends at the next chunk even when nothing is written. A read() that waits
// long should poll http_client_gone(c) itself (keep c in ud; it is valid
// until done) and return 0 when it says true.
// done(ud, client_gone) is called exactly once when the response is over
// (client_gone: the client disconnected, or a write failed, before the end,
// or http_client_gone(c) said true at some point), on the connection's
// thread, and is the place to cancel the work behind the stream. If the
// stream cannot be set up (out of memory) or is a second response,
// done(ud, true) is called before http_respond_stream returns.
typedef size_t (*http_read_fn)(void *ud, char *buf, size_t cap);
typedef void (*http_done_fn)(void *ud, bool client_gone);
void http_respond_stream(http_conn *c, int status, const char *content_type, http_read_fn read, http_done_fn done,
                         void *ud);

// Whether the client has closed its side (a handler blocked on long work
// polls this to cancel it). Cheap: poll() with no wait and, when bytes are
// waiting, one non-blocking MSG_PEEK. A client that has sent the next
// request's bytes (keep-alive, pipelining) is not gone; one that has shut
// down its sending side (even half-closed) or reset the connection is.
bool http_client_gone(http_conn *c);

// Constant-time comparison of two strings of any lengths (the time depends
// only on the length of b, the secret).
bool http_secret_eq(const char *a, const char *b);

#endif
