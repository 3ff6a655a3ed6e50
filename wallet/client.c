/* client.c — a small blocking HTTP/1.1 client for the node API.
 *
 * One request per TCP connection ("Connection: close"): the wallet sends a
 * handful of requests per command, so keep-alive would buy nothing and cost
 * state. Every socket operation is bounded by the client's timeout, and the
 * response goes through the limited parser in http.c. On top sit the few
 * API calls the programs need (chain id, next nonce, submit, wait), which
 * check that the node's JSON has the shape README promises.
 */
#include <assert.h>
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <netdb.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/time.h>
#include <time.h>
#include <unistd.h>

#include "wallet/wallet.h"

#define READ_CHUNK 16384
#define WAIT_POLLS_MAX 100000

int wallet_client_init(wallet_client *c, const char *url)
{
    const char *p = url, *host_end, *port = NULL, *path;
    size_t host_len;
    memset(c, 0, sizeof *c);
    c->timeout_ms = WALLET_HTTP_TIMEOUT_MS;
    if (!url || strlen(url) > WALLET_URL_LEN_MAX)
        return CHAIN_EINVAL;
    if (strncmp(p, "http://", 7) == 0)
        p += 7;
    else if (strstr(p, "://"))
        return CHAIN_EINVAL;   /* https and others: not supported */
    path = strchr(p, '/');
    if (!path)
        path = p + strlen(p);
    if (*p == '[') {   /* [v6 address] */
        host_end = memchr(p, ']', (size_t)(path - p));
        if (!host_end)
            return CHAIN_EINVAL;
        p++;
        port = host_end[1] == ':' ? host_end + 2 : NULL;
        if (!port && host_end + 1 != path)
            return CHAIN_EINVAL;
    } else {
        host_end = memchr(p, ':', (size_t)(path - p));
        if (host_end)
            port = host_end + 1;
        else
            host_end = path;
    }
    host_len = (size_t)(host_end - p);
    if (host_len == 0 || host_len >= sizeof c->host)
        return CHAIN_EINVAL;
    memcpy(c->host, p, host_len);
    if (port) {
        size_t plen = (size_t)(path - port);
        uint64_t v;
        char tmp[8];
        if (plen == 0 || plen >= sizeof tmp)
            return CHAIN_EINVAL;
        memcpy(tmp, port, plen);
        tmp[plen] = 0;
        if (wallet_parse_u64(&v, tmp) || v == 0 || v > 65535)
            return CHAIN_EINVAL;
        snprintf(c->port, sizeof c->port, "%u", (unsigned)v);
    } else {
        snprintf(c->port, sizeof c->port, "80");
    }
    if (strlen(path) >= sizeof c->prefix)
        return CHAIN_EINVAL;
    snprintf(c->prefix, sizeof c->prefix, "%s", path);
    while (c->prefix[0] && c->prefix[strlen(c->prefix) - 1] == '/')
        c->prefix[strlen(c->prefix) - 1] = 0;
    return 0;
}

/* Non-blocking connect bounded by the timeout, then blocking I/O with
 * SO_RCVTIMEO/SO_SNDTIMEO. Returns the socket or -1. */
static int connect_one(const struct addrinfo *ai, int timeout_ms)
{
    struct pollfd pfd;
    struct timeval tv = {timeout_ms / 1000, (timeout_ms % 1000) * 1000};
    int err = 0, flags;
    socklen_t elen = sizeof err;
    int fd = socket(ai->ai_family, ai->ai_socktype | SOCK_CLOEXEC, ai->ai_protocol);
    if (fd < 0)
        return -1;
    flags = fcntl(fd, F_GETFL);
    fcntl(fd, F_SETFL, flags | O_NONBLOCK);
    if (connect(fd, ai->ai_addr, ai->ai_addrlen) != 0) {
        if (errno != EINPROGRESS)
            goto fail;
        pfd.fd = fd;
        pfd.events = POLLOUT;
        if (poll(&pfd, 1, timeout_ms) != 1 ||
            getsockopt(fd, SOL_SOCKET, SO_ERROR, &err, &elen) != 0 || err != 0)
            goto fail;
    }
    fcntl(fd, F_SETFL, flags);
    setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
    setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof tv);
    return fd;
fail:
    close(fd);
    return -1;
}

static int dial(const wallet_client *c, char *err)
{
    struct addrinfo hints, *res = NULL, *ai;
    int fd = -1, rc;
    memset(&hints, 0, sizeof hints);
    hints.ai_family = AF_UNSPEC;
    hints.ai_socktype = SOCK_STREAM;
    rc = getaddrinfo(c->host, c->port, &hints, &res);
    if (rc != 0) {
        snprintf(err, WALLET_ERR_LEN, "cannot resolve %.100s: %s", c->host, gai_strerror(rc));
        return WALLET_ENET;
    }
    for (ai = res; ai && fd < 0; ai = ai->ai_next)
        fd = connect_one(ai, c->timeout_ms);
    freeaddrinfo(res);
    if (fd < 0)
        snprintf(err, WALLET_ERR_LEN, "cannot connect to http://%.100s:%s", c->host, c->port);
    return fd < 0 ? WALLET_ENET : fd;
}

static int send_all(int fd, const void *buf, size_t len)
{
    const char *p = buf;
    while (len > 0) {
        ssize_t n = send(fd, p, len, MSG_NOSIGNAL);
        if (n < 0 && errno == EINTR)
            continue;
        if (n <= 0)
            return errno == EAGAIN || errno == EWOULDBLOCK ? WALLET_ETIMEOUT : WALLET_ENET;
        p += n;
        len -= (size_t)n;
    }
    return 0;
}

static int recv_response(int fd, wallet_http_response *out)
{
    uint8_t buf[READ_CHUNK];
    int rc = 0;
    wallet_http_parser *hp = wallet_http_parser_create(WALLET_HTTP_BODY_MAX);
    if (!hp)
        return CHAIN_ENOMEM;
    /* Bounded: the parser refuses more than body + header limits, and each
     * recv waits at most the timeout. */
    while (rc == 0) {
        ssize_t n = recv(fd, buf, sizeof buf, 0);
        if (n < 0 && errno == EINTR)
            continue;
        if (n < 0) {
            rc = errno == EAGAIN || errno == EWOULDBLOCK ? WALLET_ETIMEOUT : WALLET_ENET;
            break;
        }
        rc = wallet_http_parser_feed(hp, buf, (size_t)n);
    }
    if (rc == 1)
        rc = wallet_http_parser_take(hp, out);
    wallet_http_parser_destroy(hp);
    return rc;
}

/* The signing headers over method, target, time and the body (if any). */
static int auth_headers(char *out, size_t cap, const chain_key *key, const char *method,
                        const char *target, uint64_t now_s, const uint8_t *body, size_t body_len)
{
    chain_pubkey pk;
    chain_sig sig;
    char khex[2 * CHAIN_KEY_LEN + 1], shex[2 * CHAIN_SIG_LEN + 1];
    int n, rc = chain_api_sign_body(key, &sig, method, target, now_s, body, body_len);
    if (rc)
        return rc;
    chain_key_pubkey(key, &pk);
    chain_hex(khex, pk.b, sizeof pk.b);
    chain_hex(shex, sig.b, sizeof sig.b);
    n = snprintf(out, cap, "X-Consent-Key: %s\r\nX-Consent-Time: %" PRIu64
                 "\r\nX-Consent-Signature: %s\r\n", khex, now_s, shex);
    return n > 0 && (size_t)n < cap ? n : CHAIN_EBOUNDS;
}

int wallet_auth_headers(char *out, size_t cap, const chain_key *key, const char *method,
                        const char *target, uint64_t now_s)
{
    return auth_headers(out, cap, key, method, target, now_s, NULL, 0);
}

int wallet_client_head_end(const wallet_client *c, char *head, size_t cap, int n, char *err,
                           const char *method, const char *target, int sign, const char *content_type,
                           const uint8_t *body, size_t body_len)
{
    assert(n > 0 && (size_t)n < cap);
    if (sign && c->sign_key) {
        /* The node verifies the target as it arrives: prefix included. */
        char full[sizeof c->prefix + WALLET_PATH_LEN_MAX + 1];
        int rc;
        snprintf(full, sizeof full, "%s%s", c->prefix, target);
        rc = auth_headers(head + n, cap - (size_t)n, c->sign_key, method, full, (uint64_t)time(NULL),
                          body, body ? body_len : 0);
        if (rc < 0) {
            snprintf(err, WALLET_ERR_LEN, "cannot sign the request: %s", chain_strerror(rc));
            return rc;
        }
        n += rc;
    }
    if (body)
        n += snprintf(head + n, cap - (size_t)n, "Content-Type: %s\r\nContent-Length: %zu\r\n",
                      content_type ? content_type : "application/octet-stream", body_len);
    n += snprintf(head + n, cap - (size_t)n, "\r\n");
    assert(n > 0 && (size_t)n < cap);
    return n;
}

/* The request line and headers, signed when the client has a key. Returns
 * the length, or a negative error with err set. */
static int request_head(wallet_client *c, char *head, size_t cap, char *err, const char *method,
                        const char *target, const char *content_type, const uint8_t *body,
                        size_t body_len)
{
    int n;
    if (strlen(target) > WALLET_PATH_LEN_MAX) {
        snprintf(err, WALLET_ERR_LEN, "request target too long");
        return CHAIN_EINVAL;
    }
    n = snprintf(head, cap,
                 "%s %s%s HTTP/1.1\r\nHost: %s:%s\r\nUser-Agent: consent-wallet\r\n"
                 "Accept: application/json\r\nConnection: close\r\n",
                 method, c->prefix, target, c->host, c->port);
    return wallet_client_head_end(c, head, cap, n, err, method, target, 1, content_type, body, body_len);
}

int wallet_client_request(wallet_client *c, wallet_http_response *out, char *err,
                          const char *method, const char *target, const char *content_type,
                          const uint8_t *body, size_t body_len)
{
    char head[WALLET_PATH_LEN_MAX + 2048];
    int fd, rc, n;
    n = request_head(c, head, sizeof head, err, method, target, content_type, body, body_len);
    if (n < 0)
        return n;
    fd = dial(c, err);
    if (fd < 0)
        return fd;
    rc = send_all(fd, head, (size_t)n);
    if (!rc && body && body_len)
        rc = send_all(fd, body, body_len);
    if (!rc)
        rc = recv_response(fd, out);
    close(fd);
    if (rc)
        snprintf(err, WALLET_ERR_LEN, "%s %.64s on http://%.100s:%s: %s", method, target, c->host,
                 c->port, wallet_strerror(rc));
    return rc;
}

/* Pumps the socket into the stream reader. A receive timeout only means the
 * stream is idle, so it is not an error here; the loop ends when the node
 * ends the response or closes, or the reader refuses. */
static int pump_stream(int fd, wallet_stream *s, char *err)
{
    uint8_t buf[READ_CHUNK];
    int rc = 0;
    while (rc == 0) {
        ssize_t n = recv(fd, buf, sizeof buf, 0);
        if (n < 0 && (errno == EINTR || errno == EAGAIN || errno == EWOULDBLOCK))
            continue;
        if (n < 0) {
            snprintf(err, WALLET_ERR_LEN, "lost the connection to the node: %s", strerror(errno));
            return WALLET_ENET;
        }
        rc = wallet_stream_feed(s, err, buf, (size_t)n);
    }
    return rc == 1 ? 0 : rc;
}

int wallet_client_stream(wallet_client *c, char *err, const char *target, wallet_line_fn fn,
                         void *arg)
{
    char head[WALLET_PATH_LEN_MAX + 2048];
    wallet_stream *s;
    int fd, rc, n = request_head(c, head, sizeof head, err, "GET", target, NULL, NULL, 0);
    if (n < 0)
        return n;
    s = wallet_stream_create(fn, arg);
    if (!s) {
        snprintf(err, WALLET_ERR_LEN, "out of memory");
        return CHAIN_ENOMEM;
    }
    fd = dial(c, err);
    rc = fd < 0 ? fd : send_all(fd, head, (size_t)n);
    if (fd >= 0 && rc)
        snprintf(err, WALLET_ERR_LEN, "GET %.64s: %s", target, wallet_strerror(rc));
    if (fd >= 0 && !rc)
        rc = pump_stream(fd, s, err);
    if (fd >= 0)
        close(fd);
    wallet_stream_destroy(s);
    return rc;
}

/* Parses a JSON response; a 4xx/5xx becomes WALLET_ESTATUS with its reason. */
int wallet_response_json(json_t **out, char *err, const wallet_http_response *r, const char *what)
{
    json_error_t jerr;
    json_t *j = json_loadb(r->body, r->body_len, 0, &jerr);
    if (r->status < 200 || r->status > 299) {
        const char *reason = j ? json_string_value(json_object_get(j, "error")) : NULL;
        /* Name the route without its query (long hex keys) so the reason
         * and the status always fit the line. */
        int path_len = (int)strcspn(what, "?");
        snprintf(err, WALLET_ERR_LEN, "%.*s: %.150s (HTTP %d)", path_len < 80 ? path_len : 80, what,
                 reason ? reason : "request failed", r->status);
        json_decref(j);
        return WALLET_ESTATUS;
    }
    if (!j || !json_is_object(j)) {
        snprintf(err, WALLET_ERR_LEN, "%s: the node's answer is not a JSON object", what);
        json_decref(j);
        return WALLET_EJSON;
    }
    *out = j;
    return 0;
}

int wallet_client_get_json(wallet_client *c, json_t **out, char *err, const char *target)
{
    wallet_http_response r;
    int rc = wallet_client_request(c, &r, err, "GET", target, NULL, NULL, 0);
    if (rc)
        return rc;
    rc = wallet_response_json(out, err, &r, target);
    wallet_http_response_free(&r);
    return rc;
}

int wallet_client_submit(wallet_client *c, chain_hash *hash_out, char *err, const uint8_t *tx,
                         size_t len)
{
    wallet_http_response r;
    json_t *j = NULL;
    chain_hash mine, theirs;
    int rc = wallet_client_request(c, &r, err, "POST", "/v1/txs", "application/x-protobuf", tx, len);
    if (rc)
        return rc;
    rc = wallet_response_json(&j, err, &r, "submit");
    wallet_http_response_free(&r);
    if (rc)
        return rc;
    chain_tx_hash(&mine, tx, len);
    if (wallet_parse_hash(&theirs, json_string_value(json_object_get(j, "hash"))) ||
        memcmp(mine.b, theirs.b, sizeof mine.b) != 0) {
        snprintf(err, WALLET_ERR_LEN, "submit: the node answered another transaction hash");
        rc = WALLET_EJSON;
    }
    json_decref(j);
    if (!rc)
        *hash_out = mine;
    return rc;
}

int wallet_client_chain_id(wallet_client *c, char out[CHAIN_ID_LEN_MAX + 1], char *err)
{
    json_t *j = NULL;
    const char *id;
    int rc = wallet_client_get_json(c, &j, err, "/v1/status");
    if (rc)
        return rc;
    id = json_string_value(json_object_get(j, "chain_id"));
    if (!id || !id[0] || strlen(id) > CHAIN_ID_LEN_MAX) {
        snprintf(err, WALLET_ERR_LEN, "status: no valid chain_id");
        rc = WALLET_EJSON;
    } else {
        memcpy(out, id, strlen(id) + 1);
    }
    json_decref(j);
    return rc;
}

int wallet_client_next_nonce(wallet_client *c, uint64_t *out, char *err, const chain_pubkey *key)
{
    char hex[2 * CHAIN_KEY_LEN + 1], target[128];
    json_t *j = NULL, *v;
    int rc;
    chain_hex(hex, key->b, sizeof key->b);
    snprintf(target, sizeof target, "/v1/accounts/%s", hex);
    rc = wallet_client_get_json(c, &j, err, target);
    if (rc)
        return rc;
    v = json_object_get(j, "next_nonce");
    if (!json_is_integer(v) || json_integer_value(v) < 1) {
        snprintf(err, WALLET_ERR_LEN, "account: no valid next_nonce");
        rc = WALLET_EJSON;
    } else {
        *out = (uint64_t)json_integer_value(v);
    }
    json_decref(j);
    return rc;
}

static uint64_t now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000 + (uint64_t)ts.tv_nsec / 1000000;
}

/* One look at a tx: 1 still pending, 0 committed, or an error. */
static int tx_status(wallet_client *c, uint64_t *height_out, char *err, const char *target)
{
    json_t *j = NULL;
    const char *st;
    int rc = wallet_client_get_json(c, &j, err, target);
    if (rc)
        return rc;
    st = json_string_value(json_object_get(j, "status"));
    if (st && strcmp(st, "committed") == 0) {
        json_t *h = json_object_get(j, "height");
        rc = json_is_integer(h) && json_integer_value(h) > 0 ? 0 : WALLET_EJSON;
        if (!rc)
            *height_out = (uint64_t)json_integer_value(h);
        else
            snprintf(err, WALLET_ERR_LEN, "tx status: committed without a height");
    } else if (st && strcmp(st, "rejected") == 0) {
        const char *why = json_string_value(json_object_get(j, "reason"));
        snprintf(err, WALLET_ERR_LEN, "rejected: %s", why ? why : "no reason given");
        rc = WALLET_EREJECTED;
    } else if (st && (strcmp(st, "pending") == 0 || strcmp(st, "unknown") == 0)) {
        rc = 1;
    } else {
        snprintf(err, WALLET_ERR_LEN, "tx status: unexpected answer");
        rc = WALLET_EJSON;
    }
    json_decref(j);
    return rc;
}

int wallet_client_wait_tx(wallet_client *c, uint64_t *height_out, char *err, const chain_hash *hash,
                          int timeout_ms, int poll_ms)
{
    char hex[2 * CHAIN_HASH_LEN + 1], target[128];
    uint64_t deadline = now_ms() + (uint64_t)(timeout_ms > 0 ? timeout_ms : 0);
    struct timespec nap = {poll_ms / 1000, (long)(poll_ms % 1000) * 1000000};
    int i;
    assert(poll_ms > 0);
    chain_hex(hex, hash->b, sizeof hash->b);
    snprintf(target, sizeof target, "/v1/txs/%s", hex);
    for (i = 0; i < WAIT_POLLS_MAX; i++) {
        int rc = tx_status(c, height_out, err, target);
        if (rc <= 0)
            return rc;
        if (now_ms() >= deadline)
            break;
        nanosleep(&nap, NULL);
    }
    snprintf(err, WALLET_ERR_LEN, "transaction %s not committed within %d ms", hex, timeout_ms);
    return WALLET_ETIMEOUT;
}
