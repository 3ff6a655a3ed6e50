/* http.c — a small HTTP/1.1 server on libuv TCP, parsed by http_parser.
 *
 * Every request is answered synchronously on the loop thread as soon as its
 * message is complete, so pipelined requests are answered in order without
 * any per-request queue. The answers to all requests parsed from one read
 * are gathered in the connection's output buffer and leave in one write
 * (one syscall for a pipelined batch instead of one per answer), after the
 * handler's flush hook has run (the audit lines of the batch reach the
 * kernel before any of its answers). When a client's unsent responses pass
 * NODE_HTTP_WRITE_QUEUE_MAX the server stops reading from it until they
 * drain. Limits: connections (NODE_HTTP_CONNS_MAX), request line + headers
 * (NODE_HTTP_HEADER_BYTES_MAX, answered 431), body (per route, answered 413
 * before the body is read when Content-Length says so). Unparseable input is
 * answered 400 and the connection closes; after any error response the write
 * side is shut down and what the client still sends is read and dropped for
 * a bounded time, so the client sees the answer rather than a reset.
 *
 * A response may turn its connection into an event stream (chunked
 * transfer encoding). A stream keeps a cursor, the next block height it
 * needs: it replays committed blocks through the handler's stream_fill while
 * behind the tip (pausing while NODE_EVENT_REPLAY_BYTES are unsent, and
 * after NODE_EVENT_REPLAY_BLOCKS blocks per step so one client cannot hold
 * the loop), then takes each new block from node__http_stream_block. The
 * connection's timer paces replay steps and sends a heartbeat comment line
 * (NODE_EVENT_HEARTBEAT_MS by default, see node__event_limits).
 */
#include <assert.h>
#include <ctype.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include <http_parser.h>
#include <jansson.h>

#include "node/node_int.h"

#define READ_BUF_BYTES 65536
#define DRAIN_BYTES_MAX (16u << 20)
#define DRAIN_MS 2000
#define STREAM_QUEUE_MAX (1u << 20)
#define HVAL_MAX 256
#define OUT_BUF_BYTES 16384          /* first size of a batch's output buffer */

typedef struct conn {
    uv_tcp_t tcp;
    uv_timer_t timer;
    uv_shutdown_t shutdown_req;
    node__http *srv;
    http_parser parser;
    struct conn *prev, *next;
    int handles_open;
    int closing, draining, streaming, reading, failed, shut;
    size_t drained;
    /* The request being parsed. */
    size_t head_bytes;
    char url[NODE_HTTP_URL_BYTES_MAX + 1];
    size_t url_len;
    char hfield[32];
    size_t hfield_len;
    char hval[HVAL_MAX];
    size_t hval_len;
    int in_value;
    char content_type[HVAL_MAX];
    char accept[HVAL_MAX];
    char auth_key[HVAL_MAX];
    char auth_time[HVAL_MAX];
    char auth_sig[HVAL_MAX];
    char auth_session[HVAL_MAX];
    char auth_mac[HVAL_MAX];
    uint64_t cursor;                 /* a stream's next block height */
    int live;                        /* the stream has caught up with the tip */
    int expect_continue;
    size_t body_max;
    uint8_t *body;
    size_t body_len, body_cap;
    char *out;                       /* answers of this read, not yet written */
    size_t out_len, out_cap;
} conn;

struct node__http {
    uv_loop_t *loop;
    uv_tcp_t listener;
    int listener_open;
    const node_logger *lg;
    node__metrics *metrics;
    node__http_handler h;
    node__event_limits ev;
    http_parser_settings settings;
    conn *conns;
    uint32_t nconns, nstreams;
    int port;
    int closing;
    void (*done)(void *arg);
    void *done_arg;
    char rbuf[READ_BUF_BYTES];
};

typedef struct {
    uv_write_t req;
    char *head;
    char *body;
} write_req;

static const char *reason_phrase(int status) {
    switch (status) {
    case 100: return "Continue";
    case 200: return "OK";
    case 201: return "Created";
    case 202: return "Accepted";
    case 400: return "Bad Request";
    case 401: return "Unauthorized";
    case 403: return "Forbidden";
    case 404: return "Not Found";
    case 405: return "Method Not Allowed";
    case 409: return "Conflict";
    case 413: return "Payload Too Large";
    case 414: return "URI Too Long";
    case 415: return "Unsupported Media Type";
    case 431: return "Request Header Fields Too Large";
    case 500: return "Internal Server Error";
    case 503: return "Service Unavailable";
    default: return "Status";
    }
}

void node__http_error(node__http_resp *resp, int status, const char *reason) {
    json_t *o = json_pack("{s:s}", "error", reason);
    resp->status = status;
    resp->content_type = "application/json";
    resp->body = o ? json_dumps(o, JSON_COMPACT) : NULL;
    resp->body_len = resp->body ? strlen(resp->body) : 0;
    json_decref(o);
}

static void conn_resume(conn *c);
static void stream_pump(conn *c);

static size_t queued(conn *c) { return uv_stream_get_write_queue_size((uv_stream_t *)&c->tcp); }

/* ------------------------------------------------------------------ closing */
static void maybe_done(node__http *s) {
    if (s->closing && !s->listener_open && s->nconns == 0 && s->done) {
        void (*done)(void *) = s->done;
        s->done = NULL;
        done(s->done_arg);
    }
}

static void conn_handle_closed(uv_handle_t *h) {
    conn *c = h->data;
    if (--c->handles_open > 0) return;
    node__http *s = c->srv;
    if (c->prev) c->prev->next = c->next;
    else s->conns = c->next;
    if (c->next) c->next->prev = c->prev;
    assert(s->nconns > 0);
    s->nconns--;
    if (c->streaming) s->nstreams--;
    free(c->body);
    free(c->out);
    free(c);
    maybe_done(s);
}

static void conn_close(conn *c) {
    if (c->closing) return;
    c->closing = 1;
    uv_close((uv_handle_t *)&c->tcp, conn_handle_closed);
    uv_close((uv_handle_t *)&c->timer, conn_handle_closed);
}

static void on_timer(uv_timer_t *t) { conn_close(t->data); }

static void arm_timer(conn *c, uint64_t ms) {
    if (!c->closing) uv_timer_start(&c->timer, on_timer, ms, 0);
}

/* ------------------------------------------------------------------ writing */
static void on_write(uv_write_t *req, int status) {
    write_req *w = (write_req *)req;
    conn *c = req->handle->data;
    free(w->head);
    free(w->body);
    free(w);
    if (status < 0) {
        conn_close(c);
        return;
    }
    /* A replaying stream continues once its queue has drained. */
    if (c->streaming && !c->closing && queued(c) < NODE_EVENT_REPLAY_BYTES / 2 && !uv_is_active((uv_handle_t *)&c->timer))
        stream_pump(c);
    /* Reading was paused for back-pressure: resume once half has drained. */
    if (!c->reading && !c->closing && !c->shut &&
        uv_stream_get_write_queue_size((uv_stream_t *)&c->tcp) < NODE_HTTP_WRITE_QUEUE_MAX / 2) {
        conn_resume(c);
    }
}

static int conn_write_now(conn *c, char *head, size_t head_len, char *body, size_t body_len);

/* The handler's flush hook (the audit lines of what was answered) runs
 * before any answer reaches the socket, whichever path writes it. */
static void run_flush_hook(conn *c) {
    if (c->srv->h.flush) c->srv->h.flush(c->srv->h.arg);
}

/* Writes the gathered answers, if any, as one buffer. */
static void conn_flush(conn *c) {
    if (c->out_len == 0) return;
    run_flush_hook(c);
    char *buf = c->out;
    size_t len = c->out_len;
    c->out = NULL;
    c->out_len = c->out_cap = 0;
    conn_write_now(c, buf, len, NULL, 0);
}

/* Appends n bytes to the output buffer; -1 (connection closed) on no memory. */
static int out_append(conn *c, const void *p, size_t n) {
    if (c->out_cap - c->out_len < n) {
        size_t cap = c->out_cap ? c->out_cap : OUT_BUF_BYTES;
        while (cap - c->out_len < n) cap *= 2;
        char *nb = realloc(c->out, cap);
        if (!nb) {
            conn_close(c);
            return -1;
        }
        c->out = nb;
        c->out_cap = cap;
    }
    memcpy(c->out + c->out_len, p, n);
    c->out_len += n;
    return 0;
}

/* Queues head (and body, if any) on the socket after what was gathered;
 * takes ownership of both. */
static int conn_write(conn *c, char *head, size_t head_len, char *body, size_t body_len) {
    run_flush_hook(c);
    conn_flush(c);
    return conn_write_now(c, head, head_len, body, body_len);
}

static int conn_write_now(conn *c, char *head, size_t head_len, char *body, size_t body_len) {
    if (c->closing || c->shut) {
        free(head);
        free(body);
        return -1;
    }
    write_req *w = malloc(sizeof(*w));
    if (!w) {
        free(head);
        free(body);
        conn_close(c);
        return -1;
    }
    w->head = head;
    w->body = body;
    uv_buf_t bufs[2] = {uv_buf_init(head, (unsigned)head_len), uv_buf_init(body, (unsigned)body_len)};
    int rc = uv_write(&w->req, (uv_stream_t *)&c->tcp, bufs, body_len ? 2 : 1, on_write);
    if (rc < 0) {
        free(head);
        free(body);
        free(w);
        conn_close(c);
        return -1;
    }
    return 0;
}

/* Gathers the answer in the output buffer (written at the end of the read,
 * conn_flush); a large body goes out by itself rather than be copied. */
static void send_response(conn *c, node__http_resp *r, int keep_alive) {
    node__metrics_http(c->srv->metrics, r->status);
    char head[256];
    int n = snprintf(head, sizeof head,
                     "HTTP/1.1 %d %s\r\nContent-Type: %s\r\nContent-Length: %zu\r\n%s\r\n",
                     r->status, reason_phrase(r->status),
                     r->content_type ? r->content_type : "application/json", r->body_len,
                     keep_alive ? "" : "Connection: close\r\n");
    assert(n > 0 && (size_t)n < sizeof head);
    if (c->closing || c->shut) {
        free(r->body);
    } else if (r->body_len > OUT_BUF_BYTES) {
        char *h = malloc((size_t)n);
        if (h) memcpy(h, head, (size_t)n);
        if (h) conn_write(c, h, (size_t)n, r->body, r->body_len);
        else free(r->body), conn_close(c);
    } else {
        if (out_append(c, head, (size_t)n) == 0) out_append(c, r->body, r->body_len);
        free(r->body);
    }
    r->body = NULL;
}

static void on_shutdown(uv_shutdown_t *req, int status) {
    conn *c = req->handle->data;
    if (status < 0 || !c->draining) conn_close(c);
}

/* Answers nothing more on this connection: shut the write side once the
 * queued responses are out, then drain what the client still sends. */
static void conn_finish(conn *c, int drain) {
    if (c->closing || c->shut) return;
    conn_flush(c);
    c->shut = 1;
    c->draining = drain;
    if (uv_shutdown(&c->shutdown_req, (uv_stream_t *)&c->tcp, on_shutdown) < 0) {
        conn_close(c);
        return;
    }
    arm_timer(c, DRAIN_MS);
}

static void conn_fail(conn *c, int status, const char *reason) {
    if (c->failed) return;
    c->failed = 1;
    node__http_resp r = {0};
    node__http_error(&r, status, reason);
    send_response(c, &r, 0);
    conn_finish(c, 1);
}

/* ------------------------------------------------------------------ parsing */
static conn *of(http_parser *p) { return p->data; }

static int head_grow(conn *c, size_t n) {
    c->head_bytes += n;
    if (c->head_bytes > NODE_HTTP_HEADER_BYTES_MAX) {
        conn_fail(c, 431, "request line and headers are too large");
        return -1;
    }
    return 0;
}

static int on_message_begin(http_parser *p) {
    conn *c = of(p);
    c->head_bytes = c->url_len = c->hfield_len = c->hval_len = 0;
    c->in_value = c->expect_continue = 0;
    c->content_type[0] = c->accept[0] = 0;
    c->auth_key[0] = c->auth_time[0] = c->auth_sig[0] = c->auth_session[0] = c->auth_mac[0] = 0;
    c->body_len = 0;
    return 0;
}

static int on_url(http_parser *p, const char *at, size_t len) {
    conn *c = of(p);
    if (head_grow(c, len)) return -1;
    if (c->url_len + len > NODE_HTTP_URL_BYTES_MAX) {
        conn_fail(c, 414, "url too long");
        return -1;
    }
    memcpy(c->url + c->url_len, at, len);
    c->url_len += len;
    c->url[c->url_len] = 0;
    return 0;
}

static void lower_value(char *dst, const char *src, size_t len, int cut_params) {
    size_t i = 0, j = 0;
    while (i < len && (src[i] == ' ' || src[i] == '\t')) i++;
    for (; i < len && j < HVAL_MAX - 1; i++) {
        if (cut_params && src[i] == ';') break;
        dst[j++] = (char)tolower((unsigned char)src[i]);
    }
    while (j > 0 && (dst[j - 1] == ' ' || dst[j - 1] == '\t')) j--;
    dst[j] = 0;
}

/* Authentication values are kept as sent (case matters to nobody but the
 * verifier, which wants lower-case hex); only surrounding blanks go. */
static void trim_value(char *dst, const char *src, size_t len) {
    while (len > 0 && (src[0] == ' ' || src[0] == '\t')) src++, len--;
    while (len > 0 && (src[len - 1] == ' ' || src[len - 1] == '\t')) len--;
    if (len > HVAL_MAX - 1) len = HVAL_MAX - 1;
    memcpy(dst, src, len);
    dst[len] = 0;
}

/* A header is complete: keep the few the server cares about. */
static void header_done(conn *c) {
    if (!c->in_value) return;
    c->hfield[c->hfield_len < sizeof(c->hfield) ? c->hfield_len : sizeof(c->hfield) - 1] = 0;
    if (strcasecmp(c->hfield, "content-type") == 0) lower_value(c->content_type, c->hval, c->hval_len, 1);
    else if (strcasecmp(c->hfield, "accept") == 0) lower_value(c->accept, c->hval, c->hval_len, 0);
    else if (strcasecmp(c->hfield, "x-consent-key") == 0) trim_value(c->auth_key, c->hval, c->hval_len);
    else if (strcasecmp(c->hfield, "x-consent-time") == 0) trim_value(c->auth_time, c->hval, c->hval_len);
    else if (strcasecmp(c->hfield, "x-consent-signature") == 0) trim_value(c->auth_sig, c->hval, c->hval_len);
    else if (strcasecmp(c->hfield, "x-consent-session") == 0) trim_value(c->auth_session, c->hval, c->hval_len);
    else if (strcasecmp(c->hfield, "x-consent-mac") == 0) trim_value(c->auth_mac, c->hval, c->hval_len);
    else if (strcasecmp(c->hfield, "expect") == 0) {
        char v[HVAL_MAX];
        lower_value(v, c->hval, c->hval_len, 0);
        c->expect_continue = strcmp(v, "100-continue") == 0;
    }
    c->hfield_len = c->hval_len = 0;
    c->in_value = 0;
}

static int on_header_field(http_parser *p, const char *at, size_t len) {
    conn *c = of(p);
    if (head_grow(c, len)) return -1;
    header_done(c);
    size_t room = sizeof(c->hfield) - 1 - (c->hfield_len < sizeof(c->hfield) - 1 ? c->hfield_len : sizeof(c->hfield) - 1);
    size_t n = len < room ? len : room;
    memcpy(c->hfield + c->hfield_len, at, n);
    c->hfield_len += len;   /* may pass the buffer: then it matches no name */
    return 0;
}

static int on_header_value(http_parser *p, const char *at, size_t len) {
    conn *c = of(p);
    if (head_grow(c, len)) return -1;
    c->in_value = 1;
    size_t n = len < HVAL_MAX - c->hval_len ? len : HVAL_MAX - c->hval_len;
    memcpy(c->hval + c->hval_len, at, n);
    c->hval_len += n;
    return 0;
}

static int on_headers_complete(http_parser *p) {
    conn *c = of(p);
    header_done(c);
    char *q = strchr(c->url, '?');
    size_t path_len = q ? (size_t)(q - c->url) : c->url_len;
    char path[NODE_HTTP_URL_BYTES_MAX + 1];
    memcpy(path, c->url, path_len);
    path[path_len] = 0;
    c->body_max = c->srv->h.body_max(c->srv->h.arg, (int)p->method, path);
    if ((p->flags & F_CONTENTLENGTH) && p->content_length > c->body_max) {
        conn_fail(c, 413, "request body too large");
        return -1;
    }
    if (c->expect_continue) {
        char *msg = strdup("HTTP/1.1 100 Continue\r\n\r\n");
        if (msg) conn_write(c, msg, strlen(msg), NULL, 0);
    }
    return 0;
}

static int on_body(http_parser *p, const char *at, size_t len) {
    conn *c = of(p);
    if (len > c->body_max - c->body_len) {
        conn_fail(c, 413, "request body too large");
        return -1;
    }
    if (c->body_len + len > c->body_cap) {
        size_t cap = c->body_cap ? c->body_cap : 4096;
        while (cap < c->body_len + len) cap *= 2;
        if (cap > c->body_max) cap = c->body_max;
        uint8_t *nb = realloc(c->body, cap);
        if (!nb) {
            conn_fail(c, 503, "out of memory");
            return -1;
        }
        c->body = nb;
        c->body_cap = cap;
    }
    memcpy(c->body + c->body_len, at, len);
    c->body_len += len;
    return 0;
}

static void stream_heartbeat(conn *c);

static void on_stream_timer(uv_timer_t *t) {
    conn *c = t->data;
    if (c->live) stream_heartbeat(c);
    stream_pump(c);
}

/* Queues one chunk holding text (len > 0 bytes); takes ownership of text. */
static void stream_write(conn *c, char *text, size_t len) {
    char *head = malloc(24);
    if (!head) {
        free(text);
        conn_close(c);
        return;
    }
    int n = snprintf(head, 24, "%zx\r\n", len);
    assert(n > 0 && n < 24);
    /* The chunk's closing CRLF rides in front of the next one's size line,
     * so text and framing stay two buffers without a copy. */
    char *tail = realloc(text, len + 2);
    if (!tail) {
        free(text);
        free(head);
        conn_close(c);
        return;
    }
    memcpy(tail + len, "\r\n", 2);
    conn_write(c, head, (size_t)n, tail, len + 2);
}

/* Replays blocks from the cursor while the stream is behind the tip and the
 * client keeps up; then arms the timer for the next step or the heartbeat. */
static void stream_pump(conn *c) {
    if (c->closing || !c->streaming) return;
    node__http *s = c->srv;
    int rc = 0;
    for (int i = 0; i < NODE_EVENT_REPLAY_BLOCKS && queued(c) < NODE_EVENT_REPLAY_BYTES; i++) {
        char *text = NULL;
        size_t len = 0;
        rc = s->h.stream_fill(s->h.arg, &text, &len, c->cursor);
        if (rc != 0) break;
        c->cursor++;
        if (len) stream_write(c, text, len);
        else free(text);
        if (c->closing) return;
    }
    if (rc < 0) {
        node_log(s->lg, NODE_LOG_WARN, "event stream: cannot read block %" PRIu64 ": closed", c->cursor);
        conn_close(c);
        return;
    }
    c->live = rc == 1;
    if (rc == 1) {
        /* Caught up: idle until the next block or heartbeat. */
        uv_timer_start(&c->timer, on_stream_timer, s->ev.heartbeat_ms, 0);
        return;
    }
    /* Still behind: on_write resumes once the queue drains, else the timer
     * runs the next step on a later loop iteration. */
    if (queued(c) < NODE_EVENT_REPLAY_BYTES) uv_timer_start(&c->timer, on_stream_timer, 0, 0);
}

/* The stream's timer fired while caught up: a comment line keeps proxies
 * and clients from taking silence for a dead node. */
static void stream_heartbeat(conn *c) {
    char *hb = strdup(": heartbeat\n");
    if (hb) stream_write(c, hb, strlen(hb));
}

static void start_stream(conn *c, node__http_resp *r) {
    node__metrics_http(c->srv->metrics, r->status);
    free(r->body);
    char *head = malloc(160);
    if (!head) {
        conn_close(c);
        return;
    }
    int n = snprintf(head, 160, "HTTP/1.1 %d %s\r\nContent-Type: %s\r\nTransfer-Encoding: chunked\r\n\r\n",
                     r->status, reason_phrase(r->status), r->content_type);
    assert(n > 0 && n < 160);
    /* Loopback and LAN autotuning lets the kernel buffer megabytes for a
     * client that stopped reading, hiding it from the unsent-bytes cut. */
    int sndbuf = c->srv->ev.sndbuf_bytes;
    if (uv_send_buffer_size((uv_handle_t *)&c->tcp, &sndbuf) != 0)
        node_log(c->srv->lg, NODE_LOG_WARN, "event stream: cannot cap the send buffer");
    if (conn_write(c, head, (size_t)n, NULL, 0) == 0) {
        c->streaming = 1;
        c->srv->nstreams++;
        c->cursor = r->stream_from;
        uv_timer_stop(&c->timer);
        stream_pump(c);
    }
}

static int on_message_complete(http_parser *p) {
    conn *c = of(p);
    char target[NODE_HTTP_URL_BYTES_MAX + 1];
    memcpy(target, c->url, c->url_len + 1);
    char *q = strchr(c->url, '?');
    if (q) *q = 0;
    node__http_req req = {(int)p->method, c->url, q ? q + 1 : "", c->content_type, c->accept,
                          c->body, c->body_len, target, c->auth_key, c->auth_time, c->auth_sig,
                          c->auth_session, c->auth_mac};
    node__http_resp resp = {0};
    c->srv->h.handle(c->srv->h.arg, &resp, &req);
    if (!resp.body && !resp.stream) node__http_error(&resp, 500, "out of memory");
    if (resp.stream && resp.status == 200 && c->srv->nstreams < NODE_EVENT_SUBSCRIBERS_MAX) {
        start_stream(c, &resp);
        return -1;   /* nothing more is parsed on a stream */
    }
    if (resp.stream) {
        free(resp.body);
        node__http_error(&resp, 503, "too many event streams");
    }
    int keep = http_should_keep_alive(p) && !p->upgrade;
    send_response(c, &resp, keep);
    if (!keep) {
        conn_finish(c, 0);
        return -1;
    }
    /* A big body buffer is not kept for the next request. */
    if (c->body_cap > NODE_HTTP_BODY_BYTES_MAX) {
        free(c->body);
        c->body = NULL;
        c->body_cap = 0;
    }
    return 0;
}

/* ------------------------------------------------------------------ reading */
static void on_alloc(uv_handle_t *h, size_t suggested, uv_buf_t *buf) {
    conn *c = h->data;
    /* One buffer serves every connection: read_cb consumes it completely
     * before the loop reads again. */
    *buf = uv_buf_init(c->srv->rbuf, sizeof(c->srv->rbuf));
}

static void on_read(uv_stream_t *st, ssize_t nread, const uv_buf_t *buf) {
    conn *c = st->data;
    if (nread < 0) {
        conn_close(c);
        return;
    }
    if (nread == 0 || c->closing) return;
    if (c->draining || c->streaming || c->failed || c->shut) {
        c->drained += (size_t)nread;
        if (c->drained > DRAIN_BYTES_MAX) conn_close(c);
        return;
    }
    arm_timer(c, NODE_HTTP_IDLE_MS);
    size_t done = http_parser_execute(&c->parser, &c->srv->settings, buf->base, (size_t)nread);
    conn_flush(c);
    if (c->closing || c->failed || c->shut || c->streaming) return;
    if (HTTP_PARSER_ERRNO(&c->parser) != HPE_OK || done != (size_t)nread) {
        char reason[128];
        snprintf(reason, sizeof(reason), "malformed HTTP request: %s",
                 http_errno_description(HTTP_PARSER_ERRNO(&c->parser)));
        conn_fail(c, 400, reason);
        return;
    }
    if (uv_stream_get_write_queue_size(st) > NODE_HTTP_WRITE_QUEUE_MAX) {
        uv_read_stop(st);
        c->reading = 0;
    }
}

static void conn_resume(conn *c) {
    if (uv_read_start((uv_stream_t *)&c->tcp, on_alloc, on_read) == 0) c->reading = 1;
    else conn_close(c);
}

static void refuse_closed(uv_handle_t *h) { free(h); }

static void on_connection(uv_stream_t *server, int status) {
    node__http *s = server->data;
    if (status < 0 || s->closing) return;
    if (s->nconns >= NODE_HTTP_CONNS_MAX) {
        uv_tcp_t *t = malloc(sizeof(*t));
        if (!t) return;
        uv_tcp_init(s->loop, t);
        if (uv_accept(server, (uv_stream_t *)t) == 0) s->metrics->http_conns_refused++;
        uv_close((uv_handle_t *)t, refuse_closed);
        return;
    }
    conn *c = calloc(1, sizeof(*c));
    if (!c) return;
    c->srv = s;
    uv_tcp_init(s->loop, &c->tcp);
    uv_timer_init(s->loop, &c->timer);
    c->tcp.data = c->timer.data = c->shutdown_req.data = c;
    c->handles_open = 2;
    http_parser_init(&c->parser, HTTP_REQUEST);
    c->parser.data = c;
    c->next = s->conns;
    if (s->conns) s->conns->prev = c;
    s->conns = c;
    s->nconns++;
    if (uv_accept(server, (uv_stream_t *)&c->tcp) != 0) {
        conn_close(c);
        return;
    }
    uv_tcp_nodelay(&c->tcp, 1);
    arm_timer(c, NODE_HTTP_IDLE_MS);
    conn_resume(c);
}

/* ------------------------------------------------------------------ server */
static int bind_listen(node__http *s, const char *listen) {
    char host[NODE_ADDR_MAX];
    int port;
    if (node_addr_parse(host, sizeof(host), &port, listen)) return NODE_EINVAL;
    struct sockaddr_storage ss;
    if (uv_ip4_addr(host, port, (struct sockaddr_in *)&ss) != 0 &&
        uv_ip6_addr(host, port, (struct sockaddr_in6 *)&ss) != 0)
        return NODE_EINVAL;
    if (uv_tcp_bind(&s->listener, (struct sockaddr *)&ss, 0) != 0) return NODE_EIO;
    if (uv_listen((uv_stream_t *)&s->listener, 511, on_connection) != 0) return NODE_EIO;
    int len = sizeof(ss);
    if (uv_tcp_getsockname(&s->listener, (struct sockaddr *)&ss, &len) != 0) return NODE_EIO;
    s->port = ss.ss_family == AF_INET ? ntohs(((struct sockaddr_in *)&ss)->sin_port)
                                      : ntohs(((struct sockaddr_in6 *)&ss)->sin6_port);
    return 0;
}

static void listener_closed(uv_handle_t *h) {
    node__http *s = h->data;
    s->listener_open = 0;
    maybe_done(s);
}

int node__http_create(node__http **out, uv_loop_t *loop, const node_logger *lg,
                      node__metrics *metrics, const node__http_handler *h, const char *listen) {
    node__http *s = calloc(1, sizeof(*s));
    if (!s) return NODE_ENOMEM;
    s->loop = loop;
    s->lg = lg;
    s->metrics = metrics;
    s->h = *h;
    s->ev = (node__event_limits){NODE_EVENT_HEARTBEAT_MS, NODE_EVENT_REPLAY_MAX, NODE_EVENT_STREAM_BYTES_MAX,
                                NODE_EVENT_SNDBUF_BYTES};
    s->settings.on_message_begin = on_message_begin;
    s->settings.on_url = on_url;
    s->settings.on_header_field = on_header_field;
    s->settings.on_header_value = on_header_value;
    s->settings.on_headers_complete = on_headers_complete;
    s->settings.on_body = on_body;
    s->settings.on_message_complete = on_message_complete;
    uv_tcp_init(loop, &s->listener);
    s->listener.data = s;
    s->listener_open = 1;
    int rc = bind_listen(s, listen);
    if (rc) {
        /* The listener handle must close before s is freed: run the loop
         * once for its close callback (nothing else of ours is open). */
        s->closing = 1;
        uv_close((uv_handle_t *)&s->listener, listener_closed);
        while (s->listener_open) uv_run(loop, UV_RUN_ONCE);
        free(s);
        return rc;
    }
    *out = s;
    return 0;
}

int node__http_port(const node__http *s) { return s->port; }
uint32_t node__http_streams(const node__http *s) { return s ? s->nstreams : 0; }
uint32_t node__http_conns(const node__http *s) { return s ? s->nconns : 0; }
void node__http_set_event_limits(node__http *s, const node__event_limits *l) { s->ev = *l; }
const node__event_limits *node__http_event_limits(const node__http *s) { return &s->ev; }

void node__http_close(node__http *s, void (*done)(void *arg), void *arg) {
    if (s->closing) return;
    s->closing = 1;
    s->done = done;
    s->done_arg = arg;
    uv_close((uv_handle_t *)&s->listener, listener_closed);
    for (conn *c = s->conns; c; c = c->next) conn_close(c);
}

void node__http_destroy(node__http *s) {
    if (!s) return;
    assert(s->nconns == 0 && !s->listener_open);
    free(s);
}

void node__http_stream_block(node__http *s, uint64_t height, const char *lines, size_t len) {
    for (conn *c = s->conns; c; c = c->next) {
        /* A stream still replaying reaches this block through the store. */
        if (!c->streaming || c->closing || c->cursor != height) continue;
        if (lines == NULL) {   /* the block's events are lost to us: never skip them */
            conn_close(c);
            continue;
        }
        if (queued(c) > s->ev.stream_bytes_max) {
            node_log(s->lg, NODE_LOG_WARN, "event stream too slow: closed");
            conn_close(c);
            continue;
        }
        c->cursor = height + 1;
        if (len == 0) continue;
        char *text = malloc(len);
        if (!text) {
            conn_close(c);
            continue;
        }
        memcpy(text, lines, len);
        stream_write(c, text, len);
    }
}
