/* conn.c — a keep-alive, pipelining HTTP/1.1 connection to a node.
 *
 * client.c opens one connection per request, which is right for a wallet but
 * would make a load generator measure TCP handshakes instead of the node.
 * A wallet_conn keeps one TCP connection open (TCP_NODELAY), lets the caller
 * queue several requests before reading their answers (HTTP/1.1 pipelining:
 * the node answers in order), and parses responses with http_parser, pausing
 * the parser at the end of each message so bytes of the next response stay in
 * the buffer. Every socket call is bounded by the client's timeout; bodies are
 * bounded by WALLET_HTTP_BODY_MAX and headers by WALLET_HTTP_HEADERS_MAX.
 */
#include <assert.h>
#include <errno.h>
#include <fcntl.h>
#include <netdb.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/socket.h>
#include <sys/time.h>
#include <time.h>
#include <unistd.h>

#include <http_parser.h>

#include "wallet/wallet.h"

#define CONN_BUF_BYTES 65536
#define CONN_FIELD_MAX 32

struct wallet_conn {
    wallet_client client;       /* address and timeout, copied at open */
    int fd;                     /* -1 while disconnected */
    unsigned in_flight;         /* requests sent and not yet answered */
    unsigned answered;          /* responses read on this TCP connection */
    http_parser p;
    http_parser_settings s;
    /* The response being parsed. */
    size_t header_bytes;
    char field[CONN_FIELD_MAX + 1];
    size_t field_len;
    int in_value, want_ct, done, err;
    char ct[64];
    size_t ct_len;
    char *body;
    size_t body_len, body_cap;
    /* Bytes read from the socket and not yet parsed. */
    uint8_t buf[CONN_BUF_BYTES];
    size_t buf_off, buf_len;
};

/* ------------------------------------------------------------------ parser callbacks */
static int count_header(wallet_conn *k, size_t len) {
    k->header_bytes += len;
    if (k->header_bytes <= WALLET_HTTP_HEADERS_MAX) return 0;
    k->err = WALLET_ETOOBIG;
    return 1;
}

static int on_field(http_parser *p, const char *at, size_t len) {
    wallet_conn *k = p->data;
    if (count_header(k, len)) return 1;
    if (k->in_value) {
        k->in_value = 0;
        k->field_len = 0;
    }
    /* A longer name is not one we keep: mark it so it matches nothing. */
    if (len > CONN_FIELD_MAX - k->field_len) {
        k->field_len = CONN_FIELD_MAX;
        memcpy(k->field, "-", 2);
        return 0;
    }
    memcpy(k->field + k->field_len, at, len);
    k->field_len += len;
    k->field[k->field_len] = 0;
    return 0;
}

static int on_value(http_parser *p, const char *at, size_t len) {
    wallet_conn *k = p->data;
    if (count_header(k, len)) return 1;
    if (!k->in_value) {
        k->in_value = 1;
        k->want_ct = strcasecmp(k->field, "Content-Type") == 0;
        if (k->want_ct) k->ct_len = 0;
    }
    if (k->want_ct) {
        size_t room = sizeof k->ct - 1 - k->ct_len;
        size_t n = len < room ? len : room;
        memcpy(k->ct + k->ct_len, at, n);
        k->ct_len += n;
        k->ct[k->ct_len] = 0;
    }
    return 0;
}

static int on_body(http_parser *p, const char *at, size_t len) {
    wallet_conn *k = p->data;
    if (len > WALLET_HTTP_BODY_MAX - k->body_len) {
        k->err = WALLET_ETOOBIG;
        return 1;
    }
    if (k->body_len + len + 1 > k->body_cap) {
        size_t cap = k->body_cap ? k->body_cap : 4096;
        while (cap < k->body_len + len + 1) cap *= 2;
        char *nb = realloc(k->body, cap);
        if (!nb) {
            k->err = CHAIN_ENOMEM;
            return 1;
        }
        k->body = nb;
        k->body_cap = cap;
    }
    memcpy(k->body + k->body_len, at, len);
    k->body_len += len;
    return 0;
}

/* Pausing here makes http_parser_execute stop right after this message, so
 * the next pipelined response stays unparsed in the buffer. */
static int on_complete(http_parser *p) {
    wallet_conn *k = p->data;
    k->done = 1;
    http_parser_pause(p, 1);
    return 0;
}

static void parser_reset(wallet_conn *k) {
    http_parser_init(&k->p, HTTP_RESPONSE);
    k->p.data = k;
    k->header_bytes = 0;
    k->field_len = 0;
    k->field[0] = 0;
    k->in_value = k->want_ct = k->done = k->err = 0;
    k->ct_len = 0;
    k->ct[0] = 0;
    k->body_len = 0;
}

/* ------------------------------------------------------------------ sockets */
static int dial_one(const struct addrinfo *ai, int timeout_ms) {
    struct timeval tv = {timeout_ms / 1000, (timeout_ms % 1000) * 1000};
    int one = 1, soerr = 0;
    socklen_t elen = sizeof soerr;
    int fd = socket(ai->ai_family, ai->ai_socktype | SOCK_CLOEXEC, ai->ai_protocol);
    if (fd < 0) return -1;
    int flags = fcntl(fd, F_GETFL);
    fcntl(fd, F_SETFL, flags | O_NONBLOCK);
    if (connect(fd, ai->ai_addr, ai->ai_addrlen) != 0) {
        struct pollfd pfd = {.fd = fd, .events = POLLOUT};
        if (errno != EINPROGRESS || poll(&pfd, 1, timeout_ms) != 1 ||
            getsockopt(fd, SOL_SOCKET, SO_ERROR, &soerr, &elen) != 0 || soerr != 0) {
            close(fd);
            return -1;
        }
    }
    fcntl(fd, F_SETFL, flags);
    setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
    setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof tv);
    setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
    return fd;
}

static int conn_dial(wallet_conn *k, char *err) {
    struct addrinfo hints, *res = NULL;
    memset(&hints, 0, sizeof hints);
    hints.ai_family = AF_UNSPEC;
    hints.ai_socktype = SOCK_STREAM;
    int rc = getaddrinfo(k->client.host, k->client.port, &hints, &res);
    if (rc != 0) {
        snprintf(err, WALLET_ERR_LEN, "cannot resolve %.100s: %s", k->client.host, gai_strerror(rc));
        return WALLET_ENET;
    }
    int fd = -1;
    for (struct addrinfo *ai = res; ai && fd < 0; ai = ai->ai_next) fd = dial_one(ai, k->client.timeout_ms);
    freeaddrinfo(res);
    if (fd < 0) {
        snprintf(err, WALLET_ERR_LEN, "cannot connect to http://%.100s:%s", k->client.host, k->client.port);
        return WALLET_ENET;
    }
    k->fd = fd;
    k->in_flight = 0;
    k->answered = 0;
    k->buf_off = k->buf_len = 0;
    return 0;
}

static void conn_drop(wallet_conn *k) {
    if (k->fd >= 0) close(k->fd);
    k->fd = -1;
    k->in_flight = 0;
    k->buf_off = k->buf_len = 0;
}

static int send_all(int fd, const void *buf, size_t len) {
    const char *p = buf;
    while (len > 0) {
        ssize_t n = send(fd, p, len, MSG_NOSIGNAL);
        if (n < 0 && errno == EINTR) continue;
        if (n <= 0) return errno == EAGAIN || errno == EWOULDBLOCK ? WALLET_ETIMEOUT : WALLET_ENET;
        p += n;
        len -= (size_t)n;
    }
    return 0;
}

/* ------------------------------------------------------------------ public */
int wallet_conn_open(wallet_conn **out, char *err, const wallet_client *c) {
    wallet_conn *k = calloc(1, sizeof *k);
    if (!k) {
        snprintf(err, WALLET_ERR_LEN, "out of memory");
        return CHAIN_ENOMEM;
    }
    k->client = *c;
    if (k->client.timeout_ms <= 0) k->client.timeout_ms = WALLET_HTTP_TIMEOUT_MS;
    k->fd = -1;
    http_parser_settings_init(&k->s);
    k->s.on_header_field = on_field;
    k->s.on_header_value = on_value;
    k->s.on_body = on_body;
    k->s.on_message_complete = on_complete;
    int rc = conn_dial(k, err);
    if (rc) {
        free(k);
        return rc;
    }
    *out = k;
    return 0;
}

void wallet_conn_close(wallet_conn *k) {
    if (!k) return;
    conn_drop(k);
    free(k->body);
    free(k);
}

unsigned wallet_conn_in_flight(const wallet_conn *k) { return k->in_flight; }

/* The request head: extra headers as given, else signed with the client's
 * sign_key (over prefix + target, as the node sees it) when it has one. */
static int conn_head(wallet_conn *k, char *head, size_t cap, char *err, const char *method, const char *target,
                     const char *headers, const char *content_type, const uint8_t *body, size_t body_len) {
    int n = snprintf(head, cap,
                     "%s %s%s HTTP/1.1\r\nHost: %s:%s\r\nUser-Agent: consent-bench\r\n"
                     "Accept: application/json\r\n",
                     method, k->client.prefix, target, k->client.host, k->client.port);
    if (headers) {
        if (strlen(headers) >= cap - (size_t)n - 256) {
            snprintf(err, WALLET_ERR_LEN, "request headers too long");
            return CHAIN_EINVAL;
        }
        n += snprintf(head + n, cap - (size_t)n, "%s", headers);
    }
    return wallet_client_head_end(&k->client, head, cap, n, err, method, target, headers == NULL, content_type,
                                  body, body_len);
}

int wallet_conn_send_h(wallet_conn *k, char *err, const char *method, const char *target, const char *headers,
                       const char *content_type, const uint8_t *body, size_t body_len) {
    char head[WALLET_PATH_LEN_MAX + 2048];
    if (strlen(target) > WALLET_PATH_LEN_MAX || strlen(method) > 16) {
        snprintf(err, WALLET_ERR_LEN, "request target too long");
        return CHAIN_EINVAL;
    }
    if (k->in_flight >= WALLET_CONN_PIPELINE_MAX) {
        snprintf(err, WALLET_ERR_LEN, "more than %d requests in flight", WALLET_CONN_PIPELINE_MAX);
        return CHAIN_EINVAL;
    }
    int n = conn_head(k, head, sizeof head, err, method, target, headers, content_type, body, body_len);
    if (n < 0) return n;
    if (k->fd < 0) {
        int rc = conn_dial(k, err);
        if (rc) return rc;
    }
    int rc = send_all(k->fd, head, (size_t)n);
    if (!rc && body && body_len) rc = send_all(k->fd, body, body_len);
    if (rc) {
        snprintf(err, WALLET_ERR_LEN, "sending to http://%.100s:%s failed", k->client.host, k->client.port);
        conn_drop(k);
        return rc;
    }
    k->in_flight++;
    return 0;
}

int wallet_conn_send(wallet_conn *k, char *err, const char *method, const char *target,
                     const char *content_type, const uint8_t *body, size_t body_len) {
    return wallet_conn_send_h(k, err, method, target, NULL, content_type, body, body_len);
}

/* Parses buffered bytes; returns 1 when a response is complete, 0 when more
 * bytes are needed, or an error. eof feeds the end of the stream. */
static int parse_buffered(wallet_conn *k, int eof) {
    size_t len = eof ? 0 : k->buf_len - k->buf_off;
    const char *at = (const char *)k->buf + k->buf_off;
    size_t used = http_parser_execute(&k->p, &k->s, at, len);
    if (k->err) return k->err;
    if (k->done) {
        k->buf_off += used;
        return 1;
    }
    if (HTTP_PARSER_ERRNO(&k->p) != HPE_OK || used != len) return WALLET_EHTTP;
    k->buf_off = k->buf_len = 0;
    return eof ? WALLET_EHTTP : 0;
}

static int read_more(wallet_conn *k) {
    if (k->buf_off == k->buf_len) k->buf_off = k->buf_len = 0;
    for (;;) {
        ssize_t n = recv(k->fd, k->buf + k->buf_len, sizeof k->buf - k->buf_len, 0);
        if (n < 0 && errno == EINTR) continue;
        if (n < 0) return errno == EAGAIN || errno == EWOULDBLOCK ? WALLET_ETIMEOUT : WALLET_ENET;
        k->buf_len += (size_t)n;
        return n == 0 ? 1 : 0;   /* 1: end of stream */
    }
}

static int take(wallet_conn *k, wallet_http_response *out) {
    memset(out, 0, sizeof *out);
    out->status = (int)k->p.status_code;
    snprintf(out->content_type, sizeof out->content_type, "%s", k->ct);
    out->body = malloc(k->body_len + 1);
    if (!out->body) return CHAIN_ENOMEM;
    if (k->body_len) memcpy(out->body, k->body, k->body_len);
    out->body[k->body_len] = 0;
    out->body_len = k->body_len;
    return 0;
}

int wallet_conn_recv(wallet_conn *k, wallet_http_response *out, char *err) {
    if (k->fd < 0 || k->in_flight == 0) {
        snprintf(err, WALLET_ERR_LEN, "no request in flight");
        return CHAIN_EINVAL;
    }
    parser_reset(k);
    int rc = k->buf_off < k->buf_len ? parse_buffered(k, 0) : 0;
    /* Bounded: every recv waits at most the timeout, and the parser refuses
     * more than the header and body limits. */
    while (rc == 0) {
        int eof = read_more(k);
        if (eof < 0) {
            rc = eof;
            break;
        }
        rc = parse_buffered(k, eof);
        if (rc == 0 && eof) rc = WALLET_EHTTP;
    }
    if (rc == 1) rc = take(k, out);
    if (rc) {
        snprintf(err, WALLET_ERR_LEN, "reading from http://%.100s:%s: %s", k->client.host, k->client.port,
                 wallet_strerror(rc));
        conn_drop(k);
        return rc;
    }
    k->in_flight--;
    k->answered++;
    if (!http_should_keep_alive(&k->p)) conn_drop(k);
    return 0;
}

int wallet_conn_request(wallet_conn *k, wallet_http_response *out, char *err, const char *method,
                        const char *target, const char *content_type, const uint8_t *body,
                        size_t body_len) {
    if (k->in_flight) {
        snprintf(err, WALLET_ERR_LEN, "requests still in flight");
        return CHAIN_EINVAL;
    }
    /* A node may close a connection that sat idle; on a connection that
     * already answered before, one failed exchange is retried on a fresh one. */
    int reused = k->fd >= 0 && k->answered > 0;
    int rc = wallet_conn_send(k, err, method, target, content_type, body, body_len);
    if (!rc) rc = wallet_conn_recv(k, out, err);
    if (rc && reused && (rc == WALLET_ENET || rc == WALLET_EHTTP)) {
        conn_drop(k);
        rc = wallet_conn_send(k, err, method, target, content_type, body, body_len);
        if (!rc) rc = wallet_conn_recv(k, out, err);
    }
    return rc;
}
