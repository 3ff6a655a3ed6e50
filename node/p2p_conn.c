/* p2p_conn.c — one peer link: a libuv TCP handle, a TLS session on memory
 * BIOs, frame reassembly and a bounded send queue.
 *
 * Ciphertext read from the socket is written into the session's read BIO;
 * whatever the session wants to send (handshake records, encrypted frames)
 * is drained from its write BIO into uv_write requests. So OpenSSL never
 * touches the socket and everything happens on the loop thread.
 *
 * A link knows nothing about peers or validators: once TLS is up it calls
 * node__p2p_on_secure, hands each complete frame to node__p2p_on_frame and
 * reports its end through node__p2p_on_closing / node__p2p_on_freed.
 */
#include <assert.h>
#include <stdlib.h>
#include <string.h>

#include <openssl/err.h>

#include "node/p2p.h"

typedef struct {
    uv_write_t req;
    node__p2p_conn *c;
    size_t len;
    uint8_t data[];
} wreq;

static void handle_closed(uv_handle_t *h) {
    node__p2p_conn *c = h->data;
    assert(c->handles_open > 0);
    if (--c->handles_open > 0) return;
    SSL_free(c->ssl);
    free(c->body);
    free(c->out);
    node_p2p *p = c->p;
    node__p2p_on_freed(p, c);
    free(c);
}

static void deadline_cb(uv_timer_t *t) {
    node__p2p_conn *c = t->data;
    if (c->state == NODE__P2P_CONN_UP || c->state == NODE__P2P_CONN_CLOSING) return;
    node__p2p_count_handshake_failure(c->p);
    node_log(node__p2p_log(c->p), NODE_LOG_WARN, "p2p: refused %s: no authenticated Hello within %u ms",
             c->addr[0] ? c->addr : "peer", node__p2p_handshake_ms(c->p));
    node__p2p_conn_close(c, "handshake timeout");
}

node__p2p_conn *node__p2p_conn_new(node_p2p *p, int dialer, uint32_t expect) {
    node__p2p_conn *c = calloc(1, sizeof *c);
    if (c == NULL) return NULL;
    c->ssl = node__p2p_tls_new(node__p2p_ssl_ctx(p), dialer);
    if (c->ssl == NULL || uv_tcp_init(node__p2p_loop(p), &c->tcp) != 0) {
        SSL_free(c->ssl);
        free(c);
        return NULL;
    }
    uv_timer_init(node__p2p_loop(p), &c->timer);   /* cannot fail */
    c->tcp.data = c;
    c->timer.data = c;
    c->handles_open = 2;
    c->p = p;
    c->dialer = dialer;
    c->expect = expect;
    c->peer = NODE_P2P_NO_PEER;
    c->state = NODE__P2P_CONN_CONNECTING;
    /* One deadline covers connect, TLS and Hello: a peer that stalls
     * anywhere before it is authenticated holds a pending slot no longer. */
    uv_timer_start(&c->timer, deadline_cb, node__p2p_handshake_ms(p), 0);
    return c;
}

void node__p2p_conn_close(node__p2p_conn *c, const char *why) {
    if (c->state == NODE__P2P_CONN_CLOSING) return;
    node_log(node__p2p_log(c->p), NODE_LOG_DEBUG, "p2p: link %s closed: %s",
             c->addr[0] ? c->addr : "(connecting)", why);
    /* CLOSING first: the transport's callbacks below may try to send on or
     * close this link again, and must find it gone. Closing the TCP handle
     * cancels a pending connect and pending writes; their callbacks run
     * before handle_closed, while c is still alive. */
    c->state = NODE__P2P_CONN_CLOSING;
    uv_close((uv_handle_t *)&c->tcp, handle_closed);
    uv_close((uv_handle_t *)&c->timer, handle_closed);
    node__p2p_on_closing(c);
}

static void write_cb(uv_write_t *req, int status) {
    wreq *w = (wreq *)req;
    node__p2p_conn *c = w->c;
    assert(c->wq_bytes >= w->len);
    c->wq_bytes -= w->len;
    free(w);
    if (status < 0 && status != UV_ECANCELED) node__p2p_conn_close(c, uv_strerror(status));
}

/* Moves all pending ciphertext from the session to the socket. */
static int flush(node__p2p_conn *c) {
    BIO *wbio = SSL_get_wbio(c->ssl);
    for (int rounds = 0; rounds < 1024 && c->state != NODE__P2P_CONN_CLOSING; rounds++) {
        size_t n = BIO_ctrl_pending(wbio);
        if (n == 0) return 0;
        wreq *w = malloc(sizeof *w + n);
        if (w == NULL) break;
        int got = BIO_read(wbio, w->data, (int)n);
        assert(got == (int)n);
        w->c = c;
        w->len = n;
        uv_buf_t b = uv_buf_init((char *)w->data, (unsigned)n);
        if (uv_write(&w->req, (uv_stream_t *)&c->tcp, &b, 1, write_cb) != 0) {
            free(w);
            break;
        }
        c->wq_bytes += n;
        node__p2p_count_io(c->p, 1, 0, n);
        if (c->wq_bytes > node__p2p_queue_max(c->p)) {
            node__p2p_count_overflow(c->p);
            node_log(node__p2p_log(c->p), NODE_LOG_WARN,
                     "p2p: link %s dropped: send queue over %zu bytes", c->addr,
                     node__p2p_queue_max(c->p));
            node__p2p_conn_close(c, "send queue full");
            return NODE_EIO;
        }
    }
    if (c->state != NODE__P2P_CONN_CLOSING) node__p2p_conn_close(c, "write failed");
    return NODE_EIO;
}

static int tls_send(node__p2p_conn *c, const uint8_t *plain, size_t len) {
    int r = SSL_write(c->ssl, plain, (int)len);
    if (r != (int)len) {
        ERR_clear_error();
        node__p2p_conn_close(c, "TLS write failed");
        return NODE_EIO;
    }
    return flush(c);
}

/* The link's timer (free once the link is up) runs this on the next loop
 * turn after the first frame queued: everything queued meanwhile becomes
 * one SSL_write and one uv_write. */
static void out_cb(uv_timer_t *t) {
    node__p2p_conn *c = t->data;
    if (c->state != NODE__P2P_CONN_UP || c->out_len == 0) return;
    size_t len = c->out_len;
    c->out_len = 0;
    (void)tls_send(c, c->out, len);   /* failure closes the link */
}

static int out_append(node__p2p_conn *c, const uint8_t *frame, size_t len) {
    if (c->out_len + len > c->out_cap) {
        size_t cap = c->out_cap ? c->out_cap : 16384;
        while (cap < c->out_len + len) cap *= 2;
        uint8_t *b = realloc(c->out, cap);
        if (b == NULL) {
            node__p2p_conn_close(c, "out of memory");
            return NODE_EIO;
        }
        c->out = b;
        c->out_cap = cap;
    }
    if (c->out_len == 0) uv_timer_start(&c->timer, out_cb, 0, 0);
    memcpy(c->out + c->out_len, frame, len);
    c->out_len += len;
    return 0;
}

size_t node__p2p_conn_queued(const node__p2p_conn *c) { return c->wq_bytes + c->out_len; }

int node__p2p_conn_send(node__p2p_conn *c, const uint8_t *frame, size_t len) {
    assert(len > 0 && len <= NODE_P2P_FRAME_BYTES_MAX + 4);
    if (c->state != NODE__P2P_CONN_HELLO && c->state != NODE__P2P_CONN_UP) return NODE_EIO;
    node__p2p_count_io(c->p, 1, 1, 0);
    /* The Hello goes out at once: the handshake deadline owns the timer. */
    if (c->state == NODE__P2P_CONN_HELLO) return tls_send(c, frame, len);
    if (node__p2p_conn_queued(c) + len > node__p2p_queue_max(c->p)) {
        node__p2p_count_overflow(c->p);
        node_log(node__p2p_log(c->p), NODE_LOG_WARN, "p2p: link %s dropped: send queue over %zu bytes",
                 c->addr, node__p2p_queue_max(c->p));
        node__p2p_conn_close(c, "send queue full");
        return NODE_EIO;
    }
    return out_append(c, frame, len);
}

static void drop(node__p2p_conn *c, const char *why) {
    node__p2p_count_drop(c->p);
    node_log(node__p2p_log(c->p), NODE_LOG_WARN, "p2p: link %s dropped: %s", c->addr, why);
    node__p2p_conn_close(c, why);
}

/* Reads a 4-byte length and sizes the body buffer; the limit is small until
 * the peer is authenticated, so a stranger cannot make us allocate much. */
static int start_body(node__p2p_conn *c) {
    size_t len = (size_t)c->hdr[0] << 24 | (size_t)c->hdr[1] << 16 | (size_t)c->hdr[2] << 8 |
                 (size_t)c->hdr[3];
    size_t max = c->state == NODE__P2P_CONN_UP ? NODE_P2P_FRAME_BYTES_MAX : NODE_P2P_HELLO_BYTES_MAX;
    if (len == 0 || len > max) {
        drop(c, len == 0 ? "empty frame" : "oversized frame");
        return -1;
    }
    c->body = malloc(len);
    if (c->body == NULL) {
        node__p2p_conn_close(c, "out of memory");
        return -1;
    }
    c->body_len = len;
    c->body_got = 0;
    return 0;
}

/* Splits plaintext into frames; each complete frame goes to the transport,
 * which may close the link, so the state is checked after every frame. */
static void feed(node__p2p_conn *c, const uint8_t *data, size_t n) {
    while (n > 0 && c->state != NODE__P2P_CONN_CLOSING) {
        if (c->body == NULL) {
            size_t k = 4 - c->hdr_got < n ? 4 - c->hdr_got : n;
            memcpy(c->hdr + c->hdr_got, data, k);
            c->hdr_got += k;
            data += k;
            n -= k;
            if (c->hdr_got == 4 && start_body(c) != 0) return;
            continue;
        }
        size_t k = c->body_len - c->body_got < n ? c->body_len - c->body_got : n;
        memcpy(c->body + c->body_got, data, k);
        c->body_got += k;
        data += k;
        n -= k;
        if (c->body_got < c->body_len) continue;
        uint8_t *frame = c->body;
        size_t len = c->body_len;
        c->body = NULL;
        c->hdr_got = 0;
        node__p2p_count_io(c->p, 0, 1, 0);
        node__p2p_on_frame(c, frame, len);
        free(frame);
    }
}

static void tls_failed(node__p2p_conn *c, const char *what) {
    char err[160];
    node__p2p_tls_error(err, sizeof err);
    if (c->state == NODE__P2P_CONN_TLS) {
        node__p2p_count_handshake_failure(c->p);
        node_log(node__p2p_log(c->p), NODE_LOG_WARN, "p2p: refused %s: TLS handshake failed: %s",
                 c->addr, err);
    }
    node__p2p_conn_close(c, what);
}

static void read_plain(node__p2p_conn *c) {
    uint8_t buf[NODE_P2P_READ_CHUNK];
    /* Bounded by the ciphertext buffered in the read BIO. */
    while (c->state != NODE__P2P_CONN_CLOSING) {
        int n = SSL_read(c->ssl, buf, sizeof buf);
        if (n > 0) {
            feed(c, buf, (size_t)n);
            continue;
        }
        int e = SSL_get_error(c->ssl, n);
        if (e == SSL_ERROR_WANT_READ) break;
        if (e == SSL_ERROR_ZERO_RETURN) {
            node__p2p_conn_close(c, "peer closed TLS");
            return;
        }
        tls_failed(c, "TLS read failed");
        return;
    }
    if (c->state != NODE__P2P_CONN_CLOSING) flush(c);
}

static void drive(node__p2p_conn *c) {
    if (c->state == NODE__P2P_CONN_TLS) {
        int r = SSL_do_handshake(c->ssl);
        if (flush(c) != 0) return;
        if (r != 1) {
            int e = SSL_get_error(c->ssl, r);
            if (e != SSL_ERROR_WANT_READ && e != SSL_ERROR_WANT_WRITE) tls_failed(c, "TLS handshake failed");
            return;
        }
        c->state = NODE__P2P_CONN_HELLO;
        node__p2p_on_secure(c);
        if (c->state == NODE__P2P_CONN_CLOSING) return;
    }
    read_plain(c);
}

static void alloc_cb(uv_handle_t *h, size_t suggested, uv_buf_t *buf) {
    (void)h;
    size_t n = suggested < 65536 ? suggested : 65536;
    buf->base = malloc(n);
    buf->len = buf->base ? n : 0;
}

static void read_cb(uv_stream_t *s, ssize_t nread, const uv_buf_t *buf) {
    node__p2p_conn *c = s->data;
    if (nread <= 0 || c->state == NODE__P2P_CONN_CLOSING) {
        free(buf->base);
        if (nread < 0 && c->state != NODE__P2P_CONN_CLOSING)
            node__p2p_conn_close(c, nread == UV_EOF ? "closed by peer" : uv_strerror((int)nread));
        return;
    }
    node__p2p_count_io(c->p, 0, 0, (size_t)nread);
    int w = BIO_write(SSL_get_rbio(c->ssl), buf->base, (int)nread);
    free(buf->base);
    if (w != (int)nread) {
        ERR_clear_error();
        node__p2p_conn_close(c, "out of memory");
        return;
    }
    drive(c);
}

static void format_peer(node__p2p_conn *c) {
    struct sockaddr_storage ss;
    int len = sizeof ss;
    char host[48] = "?";
    int port = 0;
    if (uv_tcp_getpeername(&c->tcp, (struct sockaddr *)&ss, &len) == 0) {
        if (ss.ss_family == AF_INET6) {
            uv_ip6_name((struct sockaddr_in6 *)&ss, host, sizeof host);
            port = ntohs(((struct sockaddr_in6 *)&ss)->sin6_port);
        } else {
            uv_ip4_name((struct sockaddr_in *)&ss, host, sizeof host);
            port = ntohs(((struct sockaddr_in *)&ss)->sin_port);
        }
    }
    snprintf(c->addr, sizeof c->addr, "%s:%d", host, port);
}

void node__p2p_conn_begin(node__p2p_conn *c) {
    assert(c->state == NODE__P2P_CONN_CONNECTING);
    c->state = NODE__P2P_CONN_TLS;
    format_peer(c);
    uv_tcp_nodelay(&c->tcp, 1);
    uv_tcp_keepalive(&c->tcp, 1, 30);
    if (uv_read_start((uv_stream_t *)&c->tcp, alloc_cb, read_cb) != 0) {
        node__p2p_conn_close(c, "read start failed");
        return;
    }
    if (c->dialer) drive(c);   /* the client speaks first */
}
