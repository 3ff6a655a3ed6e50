/* p2p.h — the peer transport between nodes (internal to the node module).
 *
 * Validators talk over TCP (libuv) wrapped in TLS 1.3 (OpenSSL with memory
 * BIOs: ciphertext moves between the socket and the SSL object by hand, so
 * everything stays on the one loop thread). Each transport makes a throwaway
 * self-signed certificate at start-up: TLS gives confidentiality only. Who is
 * at the other end is proven after the handshake by a Hello signed with the
 * node's chain key over the session's TLS exporter, so a Hello recorded on
 * one connection is worthless on any other. The receiver accepts a validator
 * Hello only for a genesis validator key.
 *
 * Topology: one link per pair of validators; the lower index dials the
 * higher, and a validator refuses an inbound validator link from a higher
 * index. A newer authenticated link from the same validator replaces the
 * older one (it restarted). A dropped link is redialled with exponential
 * backoff (100 ms doubling to 5 s); the backoff resets only once the peer
 * has sent a frame after the Hellos, i.e. it accepted us. (A link is "up"
 * on each side once that side accepts the other's Hello, so a node whose
 * own Hello is refused sees the link up for a moment before it drops.)
 *
 * Gossip: a transaction is sent once to every connected validator; a
 * receiver that has not seen its hash recently (NODE_P2P_SEEN_MAX, two
 * generations) hands it to on_tx and, if admitted and sent by a full node,
 * passes it on to the validators other than the sender. What a validator
 * sends is not passed on: it went to every validator already.
 *
 * Full nodes (no validator key) dial every validator with an ephemeral key
 * and role FULL_NODE. A validator accepts them only when configured to
 * (accept_full_nodes), and then only for status, block requests and
 * transaction relay: a consensus message or an unrequested block response
 * from a full node drops its link. Validators never send consensus or
 * gossip to full nodes.
 *
 * Frames: 4-byte big-endian length + an encoded P2pEnvelope
 * (proto/p2p.proto). A frame longer than the limit (NODE_P2P_HELLO_BYTES_MAX
 * before the Hello, NODE_P2P_FRAME_BYTES_MAX after), an undecodable or
 * unexpected one drops the link and counts in stats.dropped_frames.
 *
 * Everything runs on the loop thread. Callbacks may call back into the
 * transport (send, broadcast, close) but must not destroy it from inside a
 * callback other than by node_p2p_close, which defers the freeing.
 */
#ifndef CONSENT_NODE_P2P_H
#define CONSENT_NODE_P2P_H

#include <stddef.h>
#include <stdint.h>

#include <openssl/ssl.h>
#include <uv.h>

#include "chain/chain.h"
#include "consensus/cons.h"
#include "node/node.h"

/* ------------------------------------------------------------------ limits */
#define NODE_P2P_FRAME_BYTES_MAX (CONS_MSG_BYTES_MAX + 64)   /* one envelope */
#define NODE_P2P_HELLO_BYTES_MAX 512             /* any frame before the Hello */
#define NODE_P2P_SEND_QUEUE_BYTES_MAX (4u * NODE_P2P_FRAME_BYTES_MAX) /* default per link */
#define NODE_P2P_PENDING_CONNS_MAX 64            /* links not yet authenticated */
#define NODE_P2P_FULL_PEERS_MAX 64               /* full nodes served at once */
#define NODE_P2P_HANDSHAKE_TIMEOUT_MS 10000      /* TCP accept to Hello accepted */
#define NODE_P2P_BACKOFF_MIN_MS 100
#define NODE_P2P_BACKOFF_MAX_MS 5000
#define NODE_P2P_SEEN_MAX 16384                  /* tx hashes per dedup generation */
#define NODE_P2P_SYNC_BLOCKS_MAX 1024            /* blocks per request / response (and
                                                    at most one frame of bytes): a
                                                    node far behind writes small
                                                    blocks in batches this long */
#define NODE_P2P_SYNC_TIMEOUT_MS 5000            /* an unanswered block request */
#define NODE_P2P_SYNC_RETRY_MS 1000              /* after a response that did not help */
#define NODE_P2P_SYNC_LAG_VALIDATOR 4            /* a validator syncs on status at
                                                    once only this far behind
                                                    (consensus commits the last
                                                    few itself) ... */
#define NODE_P2P_SYNC_STUCK_MS 500               /* ... or when any peer has been
                                                    ahead this long without our
                                                    height moving */
#define NODE_P2P_READ_CHUNK 16384                /* plaintext read at once */
#define NODE_P2P_EXPORTER_LEN 32
#define NODE_P2P_EXPORTER_LABEL "EXPORTER-consent-p2p"
#define NODE_P2P_HELLO_DOMAIN "consent/p2p/v1"

/* Peer ids: a validator's genesis index, or a full node's link id. */
#define NODE_P2P_FULL_ID_BASE 0x10000u
#define NODE_P2P_NO_PEER UINT32_MAX

typedef enum {
    NODE_P2P_ROLE_VALIDATOR = 1,
    NODE_P2P_ROLE_FULL_NODE = 2,
} node_p2p_role;

typedef struct node_p2p node_p2p;

/* What peers deliver. Every member may be NULL except as noted. */
typedef struct {
    /* A consensus message from validator `from` (authenticated link). */
    void (*on_consensus)(void *arg, uint32_t from, const uint8_t *msg, size_t len);
    /* A gossiped transaction not seen recently. Return 1 if it was new and
     * admitted: only then, and only if a full node sent it, is it passed on
     * to the other validators. */
    int (*on_tx)(void *arg, uint32_t from, const uint8_t *tx, size_t len);
    /* Serve block sync: *out gets a malloc'd encoded block (with its
     * certificate) at `height` and *len its size; the transport frees it.
     * Return 0, or non-zero when there is no such block. */
    int (*get_block)(void *arg, uint64_t height, uint8_t **out, size_t *len);
    /* Blocks answering our request: consecutive heights from from_height. */
    void (*on_blocks)(void *arg, uint32_t from, uint64_t from_height,
                      const uint8_t *const *blocks, const size_t *lens, size_t n);
    /* An authenticated link to `peer` came up (up = 1) or went down. */
    void (*on_peer)(void *arg, uint32_t peer, int up);
} node_p2p_callbacks;

typedef struct {
    uv_loop_t *loop;
    /* Validators and their "p2p" addresses (dialled as given, at dial
     * time); must outlive the transport. */
    const chain_genesis *genesis;
    /* This validator's key (not copied; must outlive the transport), or
     * NULL for a full node, which then uses an ephemeral key. A key that is
     * not a genesis validator still claims the validator role and is
     * refused by every peer. */
    const chain_key *key;
    /* "host:port" (numeric host) to listen on; NULL or "" = do not listen.
     * Port 0 picks a free port (node_p2p_listen_port). */
    const char *listen_addr;
    int accept_full_nodes;
    /* Per-link cap on bytes queued for the socket; 0 = the default. */
    size_t send_queue_bytes_max;
    /* Connect + TLS + Hello deadline; 0 = NODE_P2P_HANDSHAKE_TIMEOUT_MS. */
    uint32_t handshake_timeout_ms;
    const node_logger *log;   /* may be NULL: no logging */
    node_p2p_callbacks cb;
    void *arg;
} node_p2p_config;

typedef struct {
    uint64_t conns_in;            /* TCP connections accepted */
    uint64_t conns_out;           /* TCP connections established by dialling */
    uint64_t dial_failures;       /* connect or resolve failed */
    uint64_t conns_refused;       /* over NODE_P2P_PENDING_CONNS_MAX */
    uint64_t handshake_failures;  /* TLS failed, Hello refused or timed out */
    uint64_t dropped_frames;      /* oversized, malformed or not allowed */
    uint64_t send_overflows;      /* links dropped for a full send queue */
    uint64_t frames_in, frames_out;
    uint64_t bytes_in, bytes_out; /* ciphertext */
    uint64_t txs_in, tx_dups, txs_relayed;
    uint64_t block_requests_in, blocks_served;
    uint64_t block_requests_out, blocks_received, unsolicited_responses;
    uint32_t validators_up;       /* authenticated validator links now */
    uint32_t full_nodes_up;       /* authenticated full-node links now */
} node_p2p_stats;

/* Creates a transport (nothing is opened yet). Returns 0 and *out, or
 * NODE_EINVAL (bad config or listen address), NODE_ENOMEM, NODE_EIO (TLS
 * set-up failed). */
int node_p2p_create(node_p2p **out, const node_p2p_config *cfg) NODE_WUR;
/* Binds the listener (if any) and arms the first dial of every peer this
 * node dials (on the next loop iteration). NODE_EIO if binding fails. */
int node_p2p_start(node_p2p *p) NODE_WUR;
/* Closes the listener, every link and timer; once libuv has released every
 * handle, frees p and then calls done(arg) (done may be NULL). Safe to call
 * once; p must not be used after. */
void node_p2p_close(node_p2p *p, void (*done)(void *arg), void *arg);

/* The bound listening port, or -1 when not listening. */
int node_p2p_listen_port(const node_p2p *p);
/* Our genesis validator index, or -1 (full node or unknown key). */
int node_p2p_self_index(const node_p2p *p);

/* Consensus to validator `to`: 0, NODE_EIO if no link to it is up,
 * NODE_EINVAL for a bad index, oversized message or a full node. */
int node_p2p_send_consensus(node_p2p *p, uint32_t to, const uint8_t *msg, size_t len) NODE_WUR;
/* Consensus to every connected validator; returns how many got it. */
size_t node_p2p_broadcast_consensus(node_p2p *p, const uint8_t *msg, size_t len);
/* Gossips a transaction that entered our mempool to every connected
 * validator (remembered as seen, so it is not taken back). Returns how many
 * links got it (0 if seen before or too large). */
size_t node_p2p_gossip_tx(node_p2p *p, const uint8_t *tx, size_t len);
/* Hands one mempool transaction to validator `to` alone, when its link
 * comes up (it may have missed the gossip while the link was down; a full
 * node's pending txs may have reached no validator). 0; NODE_EIO if no
 * link to it is up; NODE_EFULL once the link's send queue is half full, so
 * a hand-over never costs the link (a full queue drops it); NODE_EINVAL
 * for a bad index or size. */
int node_p2p_send_tx(node_p2p *p, uint32_t to, const uint8_t *tx, size_t len) NODE_WUR;
/* Our committed height: told to every peer (a Status), and the base of
 * block sync. Call at start and after every commit. */
void node_p2p_set_height(node_p2p *p, uint64_t height);
/* We are behind: sync up to `height` from peers that have it. */
void node_p2p_fetch(node_p2p *p, uint64_t height);
/* Asks one connected validator whose status reaches from_height for count
 * (1..NODE_P2P_SYNC_BLOCKS_MAX) blocks; the answer arrives in on_blocks.
 * NODE_EIO if no such peer, NODE_EINVAL for a bad count, NODE_EFULL while
 * a request is outstanding. */
int node_p2p_request_blocks(node_p2p *p, uint64_t from_height, uint32_t count) NODE_WUR;

/* Connected validators (indices, ascending): writes up to max, returns how
 * many are up. */
size_t node_p2p_peers(const node_p2p *p, uint32_t *out, size_t max);
/* Last height a peer reported, 0 if unknown. */
uint64_t node_p2p_peer_height(const node_p2p *p, uint32_t peer);
void node_p2p_stats_get(const node_p2p *p, node_p2p_stats *out);

/* Wiring into node.h (p2p_node.c): hooks that send the node's traffic
 * through p, and callbacks (arg = the node *) that deliver peer traffic
 * into node_on_cons_message / node_on_tx / node_on_block and serve blocks
 * from node_store(). */
void node_p2p_hooks_for(node_p2p_hooks *out, node_p2p *p);
void node_p2p_callbacks_for_node(node_p2p_callbacks *out);

/* ------------------------------------------------------------------ testing */
/* A Hello as it is about to be sent; a test hook may record or replace it
 * (replay and impersonation tests). */
typedef struct {
    char chain_id[CHAIN_ID_LEN_MAX + 1];
    node_p2p_role role;
    chain_pubkey key;
    chain_sig sig;
} node_p2p_hello;

void node_p2p_test_hello_hook(node_p2p *p, void (*fn)(void *arg, node_p2p_hello *h), void *arg);
/* Writes raw bytes into the TLS stream of the link to `peer`, unframed (to
 * send oversized or malformed frames). NODE_EIO if the link is not up. */
int node_p2p_test_send_raw(node_p2p *p, uint32_t peer, const uint8_t *bytes, size_t len) NODE_WUR;

/* ================================================================== internal
 * Shared by node/p2p*.c only: the wire codec (p2p_wire.c), TLS (p2p_tls.c)
 * and one link (p2p_conn.c). */

/* --- wire: decoded envelope, views into the protobuf-c message. */
typedef enum {
    NODE__P2P_MSG_HELLO = 1,
    NODE__P2P_MSG_CONSENSUS,
    NODE__P2P_MSG_TX,
    NODE__P2P_MSG_BLOCK_REQUEST,
    NODE__P2P_MSG_BLOCK_RESPONSE,
    NODE__P2P_MSG_STATUS,
} node__p2p_msg_type;

typedef struct {
    node__p2p_msg_type type;
    node_p2p_hello hello;
    const uint8_t *data;      /* consensus or tx bytes */
    size_t len;
    uint64_t height;          /* status, request and response from_height */
    uint32_t count;           /* request */
    size_t n_blocks;          /* response */
    const uint8_t **blocks;
    const size_t *block_lens;
    void *pb;                 /* the unpacked message, freed by _msg_free */
    void *arrays;
} node__p2p_msg;

/* Decodes one frame body. NODE_EINVAL when it is not a valid envelope or
 * breaks a bound (sizes of keys, counts). */
int node__p2p_decode(node__p2p_msg *out, const uint8_t *buf, size_t len);
void node__p2p_msg_free(node__p2p_msg *m);
/* Encoders: *out gets a malloc'd frame (4-byte length + envelope), *len its
 * size. NODE_EINVAL if it would exceed NODE_P2P_FRAME_BYTES_MAX. */
int node__p2p_enc_hello(uint8_t **out, size_t *len, const node_p2p_hello *h);
int node__p2p_enc_bytes(uint8_t **out, size_t *len, node__p2p_msg_type type,
                        const uint8_t *data, size_t n);
int node__p2p_enc_request(uint8_t **out, size_t *len, uint64_t from, uint32_t count);
int node__p2p_enc_response(uint8_t **out, size_t *len, uint64_t from,
                           const uint8_t *const *blocks, const size_t *lens, size_t n);
int node__p2p_enc_status(uint8_t **out, size_t *len, uint64_t height);
/* The message a Hello signs; dialer = 1 for the side that dialled. */
void node__p2p_hello_sighash(chain_hash *out, const char *chain_id,
                             const uint8_t exporter[NODE_P2P_EXPORTER_LEN], int dialer);

/* --- a bounded set of recently seen hashes: two generations; when the
 * current one holds NODE_P2P_SEEN_MAX, it becomes the old one. */
typedef struct {
    chain_hash *slots[2];
    uint8_t *used[2];
    uint32_t count[2];
    int cur;
} node__p2p_seen;

int node__p2p_seen_init(node__p2p_seen *s);
void node__p2p_seen_free(node__p2p_seen *s);
/* 1 if h was added (not seen recently), 0 if already there. */
int node__p2p_seen_add(node__p2p_seen *s, const chain_hash *h);
int node__p2p_seen_has(const node__p2p_seen *s, const chain_hash *h);

/* --- TLS: context with a fresh self-signed certificate, TLS 1.3 only. */
SSL_CTX *node__p2p_tls_ctx(void);
/* A session on two memory BIOs; NULL on failure. */
SSL *node__p2p_tls_new(SSL_CTX *ctx, int client);
/* One line describing the last OpenSSL error (and clears the queue). */
void node__p2p_tls_error(char *buf, size_t len);

/* --- one link: TCP + TLS + framing + bounded send queue. */
typedef enum {
    NODE__P2P_CONN_CONNECTING = 0,   /* TCP connect in progress */
    NODE__P2P_CONN_TLS,              /* TLS handshake */
    NODE__P2P_CONN_HELLO,            /* waiting for the peer's Hello */
    NODE__P2P_CONN_UP,               /* authenticated */
    NODE__P2P_CONN_CLOSING,
} node__p2p_conn_state;

typedef struct node__p2p_conn {
    node_p2p *p;
    uv_tcp_t tcp;
    uv_timer_t timer;             /* handshake deadline */
    uv_connect_t connect;
    int handles_open;             /* closed on the way out; freed at 0 */
    SSL *ssl;
    node__p2p_conn_state state;
    int dialer;                   /* we dialled */
    uint32_t expect;              /* validator we dialled, else NODE_P2P_NO_PEER */
    uint32_t peer;                /* peer id once UP */
    node_p2p_role role;           /* peer's role once UP */
    uint64_t peer_height;
    int confirmed;                /* a frame after the Hellos arrived: the
                                     peer accepted us too */
    char addr[64];                /* peer address for logs */
    uint8_t hdr[4];
    size_t hdr_got;
    uint8_t *body;
    size_t body_len, body_got;
    size_t wq_bytes;              /* ciphertext handed to libuv, not yet written */
    uint8_t *out;                 /* frames queued this loop turn, not yet encrypted */
    size_t out_len, out_cap;
    struct node__p2p_conn *prev, *next;
} node__p2p_conn;

/* Allocates a link of p (linked into p's list); NULL on failure. */
node__p2p_conn *node__p2p_conn_new(node_p2p *p, int dialer, uint32_t expect);
/* TCP is connected (or accepted): start reading and the TLS handshake. */
void node__p2p_conn_begin(node__p2p_conn *c);
/* Queues one frame (takes no ownership). Once the link is up, frames are
 * gathered and encrypted together on the next loop turn (one TLS record and
 * one write for many small frames); before that they go out at once.
 * NODE_EIO if the link is closing or the send queue overflowed (the link is
 * then closed). */
int node__p2p_conn_send(node__p2p_conn *c, const uint8_t *frame, size_t len);
/* Closes the link once; `why` is logged at debug for clean closes. */
void node__p2p_conn_close(node__p2p_conn *c, const char *why);

/* --- the transport (p2p.c, p2p_sync.c). */
typedef struct node__p2p_slot {
    node_p2p *p;
    uint32_t index;               /* validator index */
    uv_timer_t timer;             /* next dial */
    uv_getaddrinfo_t *resolving;  /* name lookup in flight */
    node__p2p_conn *dialing;      /* our attempt, not yet authenticated */
    node__p2p_conn *link;         /* the authenticated link */
    uint32_t backoff_ms;          /* delay before the next attempt after a failure */
    uint32_t attempts;            /* picks among the addresses of a name */
    uint64_t height;              /* last status */
} node__p2p_slot;

struct node_p2p {
    uv_loop_t *loop;
    const chain_genesis *g;
    const node_logger *log;
    node_p2p_callbacks cb;
    void *arg;
    const chain_key *key;         /* signs our Hello */
    chain_key *own_key;           /* a full node's ephemeral key (owned) */
    chain_pubkey self_pub;
    int self_index;               /* -1: full node or unknown key */
    node_p2p_role role;
    char listen_addr[NODE_ADDR_MAX];
    int accept_full;
    size_t queue_max;
    uint32_t handshake_ms;
    SSL_CTX *tls;
    uv_tcp_t listener;
    int listener_open;
    int port;
    node__p2p_slot peers[CHAIN_VALIDATORS_MAX];
    node__p2p_conn *conns;        /* every link, any state */
    uint32_t n_pending;           /* links not authenticated (yet) */
    uint32_t next_full_id;
    uint32_t n_resolving;
    node__p2p_seen seen;
    /* block sync: at most one request in flight */
    uv_timer_t sync_timer;        /* request deadline, or the end of a hold */
    uint64_t height;              /* ours */
    uint64_t target;              /* node_p2p_fetch */
    uint32_t sync_peer;           /* NODE_P2P_NO_PEER when idle */
    uint64_t sync_from;
    uint32_t sync_count;
    uint32_t sync_rr;             /* round-robin start among peers */
    uint64_t sync_hold_until;     /* loop time; no automatic request before */
    int delivering;               /* inside cb.on_blocks: no new request yet */
    int stuck;                    /* a peer is ahead of stuck_height (validator) */
    uint64_t stuck_height;        /* our height when that was first seen */
    uint64_t stuck_since;         /* loop time it was first seen */
    int started, stopping;
    uint32_t open_handles;        /* listener and timers not yet closed */
    void (*done)(void *arg);
    void *done_arg;
    void (*hello_hook)(void *arg, node_p2p_hello *h);
    void *hello_hook_arg;
    node_p2p_stats st;
};

void node__p2p_link(node_p2p *p, node__p2p_conn *c);
node__p2p_conn *node__p2p_find(const node_p2p *p, uint32_t peer);
int node__p2p_dials(const node_p2p *p, uint32_t j);
void node__p2p_dial_cb(uv_timer_t *t);
/* Sends on an authenticated link; NODE_EIO if it is not up. */
int node__p2p_send_frame(node__p2p_conn *c, const uint8_t *frame, size_t len);
/* Counts a dropped frame, logs why, closes the link. */
void node__p2p_drop(node__p2p_conn *c, const char *why);
void node__p2p_send_status(node__p2p_conn *c);
void node__p2p_on_status(node__p2p_conn *c, uint64_t height);
void node__p2p_serve_blocks(node__p2p_conn *c, uint64_t from, uint32_t count);
void node__p2p_on_blocks(node__p2p_conn *c, const node__p2p_msg *m);
void node__p2p_sync_peer_down(node_p2p *p, uint32_t peer);

/* Called by p2p_conn.c into the transport (p2p.c). */
void node__p2p_on_secure(node__p2p_conn *c);                 /* TLS done: send Hello */
void node__p2p_on_frame(node__p2p_conn *c, const uint8_t *buf, size_t len);
void node__p2p_on_closing(node__p2p_conn *c);                /* unlink, redial */
void node__p2p_on_freed(node_p2p *p, node__p2p_conn *c);     /* memory released */
void node__p2p_count_drop(node_p2p *p);
void node__p2p_count_handshake_failure(node_p2p *p);
void node__p2p_count_io(node_p2p *p, int out, size_t frames, size_t bytes);
void node__p2p_count_overflow(node_p2p *p);
SSL_CTX *node__p2p_ssl_ctx(const node_p2p *p);
uv_loop_t *node__p2p_loop(const node_p2p *p);
const node_logger *node__p2p_log(const node_p2p *p);
size_t node__p2p_queue_max(const node_p2p *p);
/* Bytes waiting to leave on c: sealed but unwritten, and not yet sealed. */
size_t node__p2p_conn_queued(const node__p2p_conn *c);
uint32_t node__p2p_handshake_ms(const node_p2p *p);

#endif
