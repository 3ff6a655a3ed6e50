/* p2p.c — the peer transport: listener, dialling with backoff, the Hello
 * that authenticates a link, the table of validator links, and the
 * dispatch of frames (consensus, transaction gossip, status).
 *
 * Block sync (requests, serving, the sync driver) is in p2p_sync.c, one link
 * in p2p_conn.c, the wire codec in p2p_wire.c. The rules (who dials whom,
 * what full nodes may do) are described in p2p.h.
 */
#include <assert.h>
#include <stddef.h>
#include <stdlib.h>
#include <string.h>

#include "node/p2p.h"

/* ------------------------------------------------------------------ plumbing */
SSL_CTX *node__p2p_ssl_ctx(const node_p2p *p) { return p->tls; }
uv_loop_t *node__p2p_loop(const node_p2p *p) { return p->loop; }
const node_logger *node__p2p_log(const node_p2p *p) { return p->log; }
size_t node__p2p_queue_max(const node_p2p *p) { return p->queue_max; }
uint32_t node__p2p_handshake_ms(const node_p2p *p) { return p->handshake_ms; }
void node__p2p_count_drop(node_p2p *p) { p->st.dropped_frames++; }
void node__p2p_count_handshake_failure(node_p2p *p) { p->st.handshake_failures++; }
void node__p2p_count_overflow(node_p2p *p) { p->st.send_overflows++; }

void node__p2p_count_io(node_p2p *p, int out, size_t frames, size_t bytes) {
    if (out) {
        p->st.frames_out += frames;
        p->st.bytes_out += bytes;
    } else {
        p->st.frames_in += frames;
        p->st.bytes_in += bytes;
    }
}

static void maybe_done(node_p2p *p) {
    if (!p->stopping || p->open_handles > 0 || p->conns != NULL || p->n_resolving > 0) return;
    void (*done)(void *) = p->done;
    void *arg = p->done_arg;
    SSL_CTX_free(p->tls);
    node__p2p_seen_free(&p->seen);
    chain_key_destroy(p->own_key);
    free(p);
    if (done) done(arg);
}

static void handle_closed_p(node_p2p *p) {
    assert(p->open_handles > 0);
    p->open_handles--;
    maybe_done(p);
}

static void handle_closed(uv_handle_t *h) { handle_closed_p(h->data); }

static void slot_timer_closed(uv_handle_t *h) {
    node__p2p_slot *s = h->data;
    handle_closed_p(s->p);
}

void node__p2p_drop(node__p2p_conn *c, const char *why) {
    c->p->st.dropped_frames++;
    node_log(c->p->log, NODE_LOG_WARN, "p2p: link %s dropped: %s", c->addr, why);
    node__p2p_conn_close(c, why);
}

int node__p2p_send_frame(node__p2p_conn *c, const uint8_t *frame, size_t len) {
    if (c == NULL || c->state != NODE__P2P_CONN_UP) return NODE_EIO;
    return node__p2p_conn_send(c, frame, len);
}

/* ------------------------------------------------------------------ dialling */
int node__p2p_dials(const node_p2p *p, uint32_t j) {
    if (j >= p->g->n_validators || (int)j == p->self_index) return 0;
    if (p->self_index < 0) return 1;   /* full nodes dial every validator */
    return (int)j > p->self_index;     /* the lower index dials */
}

static void dial_schedule(node__p2p_slot *s, uint64_t delay_ms) {
    if (s->p->stopping) return;
    uv_timer_start(&s->timer, node__p2p_dial_cb, delay_ms, 0);
}

static void dial_failed(node__p2p_slot *s) {
    uint32_t delay = s->backoff_ms;
    s->backoff_ms = s->backoff_ms * 2 > NODE_P2P_BACKOFF_MAX_MS ? NODE_P2P_BACKOFF_MAX_MS
                                                                 : s->backoff_ms * 2;
    dial_schedule(s, delay);
}

static void connected_cb(uv_connect_t *req, int status) {
    node__p2p_conn *c = (node__p2p_conn *)((char *)req - offsetof(node__p2p_conn, connect));
    if (c->state == NODE__P2P_CONN_CLOSING) return;
    if (status < 0) {
        c->p->st.dial_failures++;
        node__p2p_conn_close(c, uv_strerror(status));
        return;
    }
    c->p->st.conns_out++;
    node__p2p_conn_begin(c);
}

static void dial_connect(node__p2p_slot *s, const struct sockaddr *addr) {
    node_p2p *p = s->p;
    node__p2p_conn *c = node__p2p_conn_new(p, 1, s->index);
    if (c == NULL) {
        dial_failed(s);
        return;
    }
    node__p2p_link(p, c);
    s->dialing = c;
    int r = uv_tcp_connect(&c->connect, &c->tcp, addr, connected_cb);
    if (r != 0) {
        p->st.dial_failures++;
        node__p2p_conn_close(c, uv_strerror(r));   /* on_closing reschedules */
    }
}

static void resolved_cb(uv_getaddrinfo_t *req, int status, struct addrinfo *res) {
    node__p2p_slot *s = req->data;
    node_p2p *p = s->p;
    assert(p->n_resolving > 0);
    s->resolving = NULL;
    p->n_resolving--;
    free(req);
    if (p->stopping) {
        uv_freeaddrinfo(res);
        maybe_done(p);
        return;
    }
    if (status < 0 || res == NULL) {
        p->st.dial_failures++;
        node_log(p->log, NODE_LOG_DEBUG, "p2p: cannot resolve validator %u: %s", s->index,
                 uv_strerror(status));
        uv_freeaddrinfo(res);
        dial_failed(s);
        return;
    }
    /* Take the addresses in turn over successive attempts, so a name with
     * an unreachable first address (say ::1 before 127.0.0.1) still works. */
    size_t n = 0;
    for (const struct addrinfo *a = res; a != NULL && n < 64; a = a->ai_next) n++;
    const struct addrinfo *pick = res;
    for (size_t k = s->attempts++ % n; k > 0; k--) pick = pick->ai_next;
    dial_connect(s, pick->ai_addr);
    uv_freeaddrinfo(res);
}

/* Numeric addresses connect at once; names go through the thread pool. */
static void dial_resolve(node__p2p_slot *s, const char *host, int port) {
    node_p2p *p = s->p;
    struct sockaddr_storage ss;
    if (uv_ip4_addr(host, port, (struct sockaddr_in *)&ss) == 0 ||
        uv_ip6_addr(host, port, (struct sockaddr_in6 *)&ss) == 0) {
        dial_connect(s, (const struct sockaddr *)&ss);
        return;
    }
    uv_getaddrinfo_t *req = malloc(sizeof *req);
    char service[8];
    snprintf(service, sizeof service, "%d", port);
    struct addrinfo hints;
    memset(&hints, 0, sizeof hints);
    hints.ai_family = AF_UNSPEC;
    hints.ai_socktype = SOCK_STREAM;
    if (req == NULL) {
        dial_failed(s);
        return;
    }
    req->data = s;
    if (uv_getaddrinfo(p->loop, req, resolved_cb, host, service, &hints) != 0) {
        free(req);
        p->st.dial_failures++;
        dial_failed(s);
        return;
    }
    s->resolving = req;
    p->n_resolving++;
}

void node__p2p_dial_cb(uv_timer_t *t) {
    node__p2p_slot *s = t->data;
    node_p2p *p = s->p;
    if (p->stopping || s->link || s->dialing || s->resolving) return;
    const char *addr = p->g->institutions[s->index].p2p_addr;
    char host[NODE_ADDR_MAX];
    int port;
    if (node_addr_parse(host, sizeof host, &port, addr) != 0 || port == 0) {
        node_log(p->log, NODE_LOG_WARN, "p2p: validator %u has no usable p2p address \"%s\"",
                 s->index, addr);
        dial_failed(s);
        return;
    }
    dial_resolve(s, host, port);
}

/* ------------------------------------------------------------------ accepting */
static void on_connection(uv_stream_t *server, int status) {
    node_p2p *p = server->data;
    if (status < 0 || p->stopping) return;
    node__p2p_conn *c = node__p2p_conn_new(p, 0, NODE_P2P_NO_PEER);
    if (c == NULL) return;   /* libuv retries the accept on the next event */
    node__p2p_link(p, c);
    if (uv_accept(server, (uv_stream_t *)&c->tcp) != 0) {
        node__p2p_conn_close(c, "accept failed");
        return;
    }
    p->st.conns_in++;
    if (p->n_pending > NODE_P2P_PENDING_CONNS_MAX) {
        p->st.conns_refused++;
        node_log(p->log, NODE_LOG_WARN, "p2p: refusing a connection: %d links not yet authenticated",
                 NODE_P2P_PENDING_CONNS_MAX);
        node__p2p_conn_close(c, "too many pending links");
        return;
    }
    node__p2p_conn_begin(c);
}

/* ------------------------------------------------------------------ links */
void node__p2p_link(node_p2p *p, node__p2p_conn *c) {
    c->next = p->conns;
    c->prev = NULL;
    if (p->conns) p->conns->prev = c;
    p->conns = c;
    p->n_pending++;
}

void node__p2p_on_freed(node_p2p *p, node__p2p_conn *c) {
    if (c->prev) c->prev->next = c->next;
    else p->conns = c->next;
    if (c->next) c->next->prev = c->prev;
    maybe_done(p);
}

static void peer_event(node_p2p *p, uint32_t peer, int up) {
    if (!p->stopping && p->cb.on_peer) p->cb.on_peer(p->arg, peer, up);
}

void node__p2p_on_closing(node__p2p_conn *c) {
    node_p2p *p = c->p;
    if (c->role == 0) {   /* never authenticated */
        assert(p->n_pending > 0);
        p->n_pending--;
        if (c->dialer && c->expect < CHAIN_VALIDATORS_MAX && p->peers[c->expect].dialing == c) {
            p->peers[c->expect].dialing = NULL;
            dial_failed(&p->peers[c->expect]);
        }
        return;
    }
    if (c->role == NODE_P2P_ROLE_FULL_NODE) {
        assert(p->st.full_nodes_up > 0);
        p->st.full_nodes_up--;
        node_log(p->log, NODE_LOG_INFO, "p2p: full node %s down", c->addr);
        peer_event(p, c->peer, 0);
        return;
    }
    node__p2p_slot *s = &p->peers[c->peer];
    if (s->link != c) return;
    s->link = NULL;
    s->height = 0;
    assert(p->st.validators_up > 0);
    p->st.validators_up--;
    node_log(p->log, NODE_LOG_INFO, "p2p: validator %u down (%s)", c->peer, c->addr);
    node__p2p_sync_peer_down(p, c->peer);
    if (node__p2p_dials(p, c->peer)) dial_failed(s);
    peer_event(p, c->peer, 0);
}

/* ------------------------------------------------------------------ hello */
static int exporter(const node__p2p_conn *c, uint8_t out[NODE_P2P_EXPORTER_LEN]) {
    const char *label = NODE_P2P_EXPORTER_LABEL;
    return SSL_export_keying_material(c->ssl, out, NODE_P2P_EXPORTER_LEN, label, strlen(label),
                                      NULL, 0, 0) == 1 ? 0 : -1;
}

static void refuse(node__p2p_conn *c, const char *why) {
    c->p->st.handshake_failures++;
    node_log(c->p->log, NODE_LOG_WARN, "p2p: refused %s: %s", c->addr, why);
    node__p2p_conn_close(c, why);
}

void node__p2p_on_secure(node__p2p_conn *c) {
    node_p2p *p = c->p;
    uint8_t ex[NODE_P2P_EXPORTER_LEN];
    if (exporter(c, ex) != 0) {
        refuse(c, "no TLS exporter");
        return;
    }
    node_p2p_hello h;
    memset(&h, 0, sizeof h);
    memcpy(h.chain_id, p->g->chain_id, sizeof h.chain_id);
    h.role = p->role;
    h.key = p->self_pub;
    chain_hash m;
    node__p2p_hello_sighash(&m, p->g->chain_id, ex, c->dialer);
    if (chain_sign(p->key, &h.sig, &m) != 0) {
        refuse(c, "cannot sign Hello");
        return;
    }
    if (p->hello_hook) p->hello_hook(p->hello_hook_arg, &h);
    uint8_t *frame;
    size_t len;
    if (node__p2p_enc_hello(&frame, &len, &h) != 0) {
        node__p2p_conn_close(c, "cannot encode Hello");
        return;
    }
    (void)node__p2p_conn_send(c, frame, len);   /* failure closes the link */
    free(frame);
}

/* Why a Hello is refused, or NULL if it is acceptable; *idx gets the
 * validator index for a validator. */
static const char *hello_check(node__p2p_conn *c, const node_p2p_hello *h, int *idx) {
    node_p2p *p = c->p;
    if (strcmp(h->chain_id, p->g->chain_id) != 0) return "wrong chain id";
    if (memcmp(h->key.b, p->self_pub.b, CHAIN_KEY_LEN) == 0) return "our own key";
    *idx = -1;
    if (h->role == NODE_P2P_ROLE_VALIDATOR) {
        *idx = chain_genesis_validator_index(p->g, &h->key);
        if (*idx < 0) return "key is not a genesis validator";
        if (c->dialer && (uint32_t)*idx != c->expect) return "not the validator we dialled";
        if (!c->dialer && (p->self_index < 0 || *idx >= p->self_index))
            return "validator must not dial us (the lower index dials)";
    } else {
        if (c->dialer) return "we dialled a validator, a full node answered";
        if (!p->accept_full) return "full nodes are not accepted";
        if (p->st.full_nodes_up >= NODE_P2P_FULL_PEERS_MAX) return "too many full nodes";
    }
    uint8_t ex[NODE_P2P_EXPORTER_LEN];
    if (exporter(c, ex) != 0) return "no TLS exporter";
    chain_hash m;
    node__p2p_hello_sighash(&m, p->g->chain_id, ex, !c->dialer);   /* the peer's side */
    if (chain_verify_cached(&h->key, &h->sig, &m) != 0) return "Hello signature does not match this session";
    return NULL;
}

static void link_up(node__p2p_conn *c, const node_p2p_hello *h, int idx) {
    node_p2p *p = c->p;
    uv_timer_stop(&c->timer);
    assert(p->n_pending > 0);
    p->n_pending--;
    c->role = h->role;
    c->state = NODE__P2P_CONN_UP;
    if (h->role == NODE_P2P_ROLE_FULL_NODE) {
        c->peer = NODE_P2P_FULL_ID_BASE + p->next_full_id;
        p->next_full_id = (p->next_full_id + 1) % (UINT32_MAX - NODE_P2P_FULL_ID_BASE);
        p->st.full_nodes_up++;
        node_log(p->log, NODE_LOG_INFO, "p2p: full node %s up as peer %u", c->addr, c->peer);
    } else {
        node__p2p_slot *s = &p->peers[idx];
        c->peer = (uint32_t)idx;
        /* A newer authenticated link replaces an older one (the peer
         * restarted before we noticed the old link die). */
        if (s->link) node__p2p_conn_close(s->link, "replaced by a newer link");
        if (s->dialing == c) s->dialing = NULL;
        s->link = c;
        p->st.validators_up++;
        node_log(p->log, NODE_LOG_INFO, "p2p: validator %d up (%s)", idx, c->addr);
    }
    peer_event(p, c->peer, 1);
    if (c->state == NODE__P2P_CONN_UP) node__p2p_send_status(c);
}

static void on_hello(node__p2p_conn *c, const node_p2p_hello *h) {
    int idx = -1;
    const char *why = hello_check(c, h, &idx);
    if (why) {
        refuse(c, why);
        return;
    }
    link_up(c, h, idx);
}

/* ------------------------------------------------------------------ dispatch */
static void relay_tx(node_p2p *p, const node__p2p_conn *from, const uint8_t *tx, size_t len,
                     size_t *sent) {
    uint8_t *frame;
    size_t flen;
    *sent = 0;
    if (node__p2p_enc_bytes(&frame, &flen, NODE__P2P_MSG_TX, tx, len) != 0) return;
    for (uint32_t j = 0; j < p->g->n_validators; j++) {
        node__p2p_conn *c = p->peers[j].link;
        if (c == NULL || c == from) continue;
        if (node__p2p_send_frame(c, frame, flen) == 0) (*sent)++;
    }
    free(frame);
}

static void on_tx(node__p2p_conn *c, const uint8_t *tx, size_t len) {
    node_p2p *p = c->p;
    chain_hash h;
    p->st.txs_in++;
    chain_tx_hash(&h, tx, len);
    if (!node__p2p_seen_add(&p->seen, &h)) {
        p->st.tx_dups++;
        return;
    }
    if (p->cb.on_tx == NULL || p->cb.on_tx(p->arg, c->peer, tx, len) != 1 || p->stopping) return;
    /* Validators are fully connected and each gossips what it admits to
     * every validator it has a link to, so relaying a validator's tx only
     * makes the others decode, decrypt and de-duplicate it twice more. A
     * backup that missed it (link down at that moment) executes it from the
     * block that carries it, and every validator hands its mempool to a
     * validator whose link comes up (node_on_peer), so a primary that
     * missed it gets it then. Full nodes get no tx gossip:
     * they follow blocks. A full node's tx is relayed, since it may not
     * have a link to every validator. */
    if (c->role == NODE_P2P_ROLE_VALIDATOR) return;
    size_t sent;
    relay_tx(p, c, tx, len, &sent);
    p->st.txs_relayed += sent;
}

static void dispatch(node__p2p_conn *c, const node__p2p_msg *m) {
    node_p2p *p = c->p;
    if (!c->confirmed) {
        /* The peer talks to us after the Hellos, so it accepted ours: only
         * now is the backoff reset. A peer that accepts the TLS session and
         * then refuses our Hello is retried ever more slowly. */
        c->confirmed = 1;
        if (c->role == NODE_P2P_ROLE_VALIDATOR) p->peers[c->peer].backoff_ms = NODE_P2P_BACKOFF_MIN_MS;
    }
    switch (m->type) {
    case NODE__P2P_MSG_HELLO:
        node__p2p_drop(c, "a second Hello");
        return;
    case NODE__P2P_MSG_CONSENSUS:
        if (c->role != NODE_P2P_ROLE_VALIDATOR || p->self_index < 0) {
            node__p2p_drop(c, "consensus message from or to a non-validator");
            return;
        }
        if (p->cb.on_consensus) p->cb.on_consensus(p->arg, c->peer, m->data, m->len);
        return;
    case NODE__P2P_MSG_TX:
        on_tx(c, m->data, m->len);
        return;
    case NODE__P2P_MSG_BLOCK_REQUEST:
        node__p2p_serve_blocks(c, m->height, m->count);
        return;
    case NODE__P2P_MSG_BLOCK_RESPONSE:
        node__p2p_on_blocks(c, m);
        return;
    case NODE__P2P_MSG_STATUS:
        node__p2p_on_status(c, m->height);
        return;
    }
    node__p2p_drop(c, "unknown message");
}

void node__p2p_on_frame(node__p2p_conn *c, const uint8_t *buf, size_t len) {
    if (c->p->stopping || c->state == NODE__P2P_CONN_CLOSING) return;
    node__p2p_msg m;
    if (node__p2p_decode(&m, buf, len) != 0) {
        node__p2p_drop(c, "malformed frame");
        return;
    }
    if (c->state == NODE__P2P_CONN_HELLO) {
        if (m.type == NODE__P2P_MSG_HELLO)
            on_hello(c, &m.hello);
        else
            refuse(c, "first message is not a Hello");
    } else {
        dispatch(c, &m);
    }
    node__p2p_msg_free(&m);
}

/* ------------------------------------------------------------------ life cycle */
static int config_check(const node_p2p_config *cfg) {
    if (cfg == NULL || cfg->loop == NULL || cfg->genesis == NULL) return NODE_EINVAL;
    const chain_genesis *g = cfg->genesis;
    if (g->n_validators < 1 || g->n_validators > CHAIN_VALIDATORS_MAX) return NODE_EINVAL;
    if (cfg->listen_addr && strlen(cfg->listen_addr) >= NODE_ADDR_MAX) return NODE_EINVAL;
    if (cfg->listen_addr && cfg->listen_addr[0]) {
        char host[NODE_ADDR_MAX];
        int port;
        if (node_addr_parse(host, sizeof host, &port, cfg->listen_addr) != 0) return NODE_EINVAL;
    }
    return 0;
}

static void init_handles(node_p2p *p) {
    uv_timer_init(p->loop, &p->sync_timer);
    p->sync_timer.data = p;
    p->open_handles = 1;
    for (uint32_t j = 0; j < p->g->n_validators; j++) {
        node__p2p_slot *s = &p->peers[j];
        s->p = p;
        s->index = j;
        s->backoff_ms = NODE_P2P_BACKOFF_MIN_MS;
        uv_timer_init(p->loop, &s->timer);
        s->timer.data = s;
        p->open_handles++;
    }
}

int node_p2p_create(node_p2p **out, const node_p2p_config *cfg) {
    int rc = config_check(cfg);
    if (rc != 0) return rc;
    node_p2p *p = calloc(1, sizeof *p);
    if (p == NULL) return NODE_ENOMEM;
    p->loop = cfg->loop;
    p->g = cfg->genesis;
    p->log = cfg->log;
    p->cb = cfg->cb;
    p->arg = cfg->arg;
    p->accept_full = cfg->accept_full_nodes;
    p->queue_max = cfg->send_queue_bytes_max ? cfg->send_queue_bytes_max : NODE_P2P_SEND_QUEUE_BYTES_MAX;
    p->handshake_ms = cfg->handshake_timeout_ms ? cfg->handshake_timeout_ms : NODE_P2P_HANDSHAKE_TIMEOUT_MS;
    p->sync_peer = NODE_P2P_NO_PEER;
    if (cfg->listen_addr) snprintf(p->listen_addr, sizeof p->listen_addr, "%s", cfg->listen_addr);
    p->key = cfg->key;
    p->role = cfg->key ? NODE_P2P_ROLE_VALIDATOR : NODE_P2P_ROLE_FULL_NODE;
    if (p->key == NULL) p->key = p->own_key = chain_key_create(NULL);
    p->tls = p->key ? node__p2p_tls_ctx() : NULL;
    if (p->key == NULL || p->tls == NULL || node__p2p_seen_init(&p->seen) != 0) {
        rc = p->key == NULL || p->tls != NULL ? NODE_ENOMEM : NODE_EIO;
        SSL_CTX_free(p->tls);
        chain_key_destroy(p->own_key);
        free(p);
        return rc;
    }
    chain_key_pubkey(p->key, &p->self_pub);
    p->self_index = cfg->key ? chain_genesis_validator_index(p->g, &p->self_pub) : -1;
    if (cfg->key && p->self_index < 0)
        node_log(p->log, NODE_LOG_WARN, "p2p: our key is not a genesis validator; peers will refuse us");
    init_handles(p);
    *out = p;
    return 0;
}

static int listen_start(node_p2p *p) {
    char host[NODE_ADDR_MAX];
    int port;
    struct sockaddr_storage ss;
    if (node_addr_parse(host, sizeof host, &port, p->listen_addr) != 0) return NODE_EINVAL;
    if (uv_ip4_addr(host, port, (struct sockaddr_in *)&ss) != 0 &&
        uv_ip6_addr(host, port, (struct sockaddr_in6 *)&ss) != 0)
        return NODE_EINVAL;
    if (uv_tcp_init(p->loop, &p->listener) != 0) return NODE_EIO;
    p->listener.data = p;
    p->open_handles++;
    p->listener_open = 1;
    int r = uv_tcp_bind(&p->listener, (const struct sockaddr *)&ss, 0);
    if (r == 0) r = uv_listen((uv_stream_t *)&p->listener, 128, on_connection);
    if (r != 0) {
        node_log(p->log, NODE_LOG_ERROR, "p2p: cannot listen on %s: %s", p->listen_addr, uv_strerror(r));
        return NODE_EIO;
    }
    int len = sizeof ss;
    if (uv_tcp_getsockname(&p->listener, (struct sockaddr *)&ss, &len) == 0)
        p->port = ntohs(ss.ss_family == AF_INET6 ? ((struct sockaddr_in6 *)&ss)->sin6_port
                                                 : ((struct sockaddr_in *)&ss)->sin_port);
    node_log(p->log, NODE_LOG_INFO, "p2p: listening on %s (port %d)", p->listen_addr, p->port);
    return 0;
}

int node_p2p_start(node_p2p *p) {
    if (p->started || p->stopping) return NODE_EINVAL;
    p->started = 1;
    if (p->listen_addr[0]) {
        int rc = listen_start(p);
        if (rc != 0) return rc;
    }
    for (uint32_t j = 0; j < p->g->n_validators; j++)
        if (node__p2p_dials(p, j)) dial_schedule(&p->peers[j], 0);
    return 0;
}

void node_p2p_close(node_p2p *p, void (*done)(void *arg), void *arg) {
    assert(!p->stopping);
    p->stopping = 1;
    p->done = done;
    p->done_arg = arg;
    if (p->listener_open) uv_close((uv_handle_t *)&p->listener, handle_closed);
    uv_close((uv_handle_t *)&p->sync_timer, handle_closed);
    for (uint32_t j = 0; j < p->g->n_validators; j++) {
        node__p2p_slot *s = &p->peers[j];
        uv_close((uv_handle_t *)&s->timer, slot_timer_closed);
        /* If the lookup already runs, cancelling fails and its callback
         * comes later; maybe_done waits for it either way. */
        if (s->resolving) uv_cancel((uv_req_t *)s->resolving);
    }
    for (node__p2p_conn *c = p->conns, *next; c != NULL; c = next) {
        next = c->next;
        node__p2p_conn_close(c, "shutting down");
    }
}

/* ------------------------------------------------------------------ sending */
int node_p2p_listen_port(const node_p2p *p) { return p->listener_open && p->port ? p->port : -1; }
int node_p2p_self_index(const node_p2p *p) { return p->self_index; }

int node_p2p_send_consensus(node_p2p *p, uint32_t to, const uint8_t *msg, size_t len) {
    if (p->self_index < 0 || to >= p->g->n_validators || (int)to == p->self_index) return NODE_EINVAL;
    if (msg == NULL || len == 0 || len > CONS_MSG_BYTES_MAX) return NODE_EINVAL;
    if (p->stopping) return NODE_ESTOPPED;
    if (p->peers[to].link == NULL) return NODE_EIO;
    uint8_t *frame;
    size_t flen;
    int rc = node__p2p_enc_bytes(&frame, &flen, NODE__P2P_MSG_CONSENSUS, msg, len);
    if (rc != 0) return rc;
    rc = node__p2p_send_frame(p->peers[to].link, frame, flen);
    free(frame);
    return rc;
}

size_t node_p2p_broadcast_consensus(node_p2p *p, const uint8_t *msg, size_t len) {
    if (p->self_index < 0 || p->stopping || msg == NULL) return 0;
    uint8_t *frame;
    size_t flen, sent = 0;
    if (node__p2p_enc_bytes(&frame, &flen, NODE__P2P_MSG_CONSENSUS, msg, len) != 0) return 0;
    for (uint32_t j = 0; j < p->g->n_validators; j++)
        if (p->peers[j].link && node__p2p_send_frame(p->peers[j].link, frame, flen) == 0) sent++;
    free(frame);
    return sent;
}

size_t node_p2p_gossip_tx(node_p2p *p, const uint8_t *tx, size_t len) {
    if (p->stopping || tx == NULL || len == 0 || len > CHAIN_TX_BYTES_MAX) return 0;
    chain_hash h;
    chain_tx_hash(&h, tx, len);
    if (!node__p2p_seen_add(&p->seen, &h)) return 0;
    size_t sent;
    relay_tx(p, NULL, tx, len, &sent);
    return sent;
}

int node_p2p_send_tx(node_p2p *p, uint32_t to, const uint8_t *tx, size_t len) {
    if (to >= p->g->n_validators || (int)to == p->self_index) return NODE_EINVAL;
    if (tx == NULL || len == 0 || len > CHAIN_TX_BYTES_MAX) return NODE_EINVAL;
    if (p->stopping) return NODE_ESTOPPED;
    node__p2p_conn *c = p->peers[to].link;
    if (c == NULL) return NODE_EIO;
    if (node__p2p_conn_queued(c) + len > p->queue_max / 2) return NODE_EFULL;
    uint8_t *frame;
    size_t flen;
    int rc = node__p2p_enc_bytes(&frame, &flen, NODE__P2P_MSG_TX, tx, len);
    if (rc != 0) return rc;
    rc = node__p2p_send_frame(c, frame, flen);
    free(frame);
    return rc;
}

size_t node_p2p_peers(const node_p2p *p, uint32_t *out, size_t max) {
    size_t n = 0;
    for (uint32_t j = 0; j < p->g->n_validators; j++) {
        if (p->peers[j].link == NULL) continue;
        if (n < max) out[n] = j;
        n++;
    }
    return n;
}

void node_p2p_stats_get(const node_p2p *p, node_p2p_stats *out) { *out = p->st; }

void node_p2p_test_hello_hook(node_p2p *p, void (*fn)(void *arg, node_p2p_hello *h), void *arg) {
    p->hello_hook = fn;
    p->hello_hook_arg = arg;
}

node__p2p_conn *node__p2p_find(const node_p2p *p, uint32_t peer) {
    if (peer < p->g->n_validators) return p->peers[peer].link;
    for (node__p2p_conn *c = p->conns; c != NULL; c = c->next)
        if (c->state == NODE__P2P_CONN_UP && c->peer == peer) return c;
    return NULL;
}

int node_p2p_test_send_raw(node_p2p *p, uint32_t peer, const uint8_t *bytes, size_t len) {
    node__p2p_conn *c = node__p2p_find(p, peer);
    if (c == NULL || len == 0) return NODE_EIO;
    return node__p2p_conn_send(c, bytes, len);
}
