/* node_int.h — node-internal interfaces shared by the files of node/.
 *
 * Not part of the public interface (that is node.h): the mempool and the map
 * of recent rejections (mempool.c), the HTTP/1.1 server (http.c), the API
 * routes (api.c), metrics (metrics.c), the block producer (producer.c) and
 * the node context itself (node.c). Names carry the double prefix node__.
 */
#ifndef CONSENT_NODE_INT_H
#define CONSENT_NODE_INT_H

#include <stdint.h>

#include "consensus/cons.h"
#include "node/node.h"

/* ------------------------------------------------------------------ mempool */
/* A pending transaction. Entries form one FIFO (admission order, which is
 * also ascending nonce order per signer) and hang in a hash table by tx hash. */
typedef struct node__mp_entry {
    chain_hash hash;
    chain_pubkey signer;
    uint64_t nonce;
    int sig_checked;                 /* signature verified at admission */
    size_t len;
    uint8_t *tx;
    struct node__mp_entry *prev, *next;
    struct node__mp_entry *hnext;
} node__mp_entry;

typedef struct node__mempool node__mempool;

node__mempool *node__mempool_create(uint32_t max);
void node__mempool_destroy(node__mempool *mp);
/* Copies tx in. NODE_EDUP if the hash is pending, NODE_EFULL at capacity,
 * CHAIN_ENONCE if nonce is not above the signer's highest pending nonce. */
int node__mempool_add(node__mempool *mp, const chain_hash *hash, const chain_pubkey *signer,
                      uint64_t nonce, const uint8_t *tx, size_t len, int sig_checked);
const node__mp_entry *node__mempool_find(const node__mempool *mp, const chain_hash *hash);
/* Removes the entry with this hash; 1 if it was there, else 0. */
int node__mempool_remove(node__mempool *mp, const chain_hash *hash);
/* Highest pending nonce of signer, or 0 if it has nothing pending. */
uint64_t node__mempool_signer_nonce(const node__mempool *mp, const chain_pubkey *signer);
uint32_t node__mempool_size(const node__mempool *mp);
uint32_t node__mempool_max(const node__mempool *mp);
/* Oldest entry and the one after e (NULL at the end). */
const node__mp_entry *node__mempool_first(const node__mempool *mp);
const node__mp_entry *node__mempool_next(const node__mp_entry *e);

/* Recent rejections: a bounded ring (oldest forgotten first) with a hash
 * index, so GET /v1/txs/{hash} can say why a transaction was refused. */
#define NODE_REASON_MAX 96
typedef struct node__rejects node__rejects;
node__rejects *node__rejects_create(uint32_t max);
void node__rejects_destroy(node__rejects *rj);
void node__rejects_add(node__rejects *rj, const chain_hash *hash, const char *reason);
/* Copies the reason (NODE_REASON_MAX bytes) and returns 1 if hash was rejected. */
int node__rejects_find(const node__rejects *rj, char *reason, const chain_hash *hash);

/* ------------------------------------------------------------------ metrics */
#define NODE_HTTP_STATUS_MIN 100
#define NODE_HTTP_STATUS_MAX 599
typedef struct {
    uint64_t txs_admitted;
    uint64_t txs_committed;
    uint64_t txs_rejected;
    uint64_t blocks_committed;       /* every block applied: consensus + sync */
    uint64_t blocks_consensus;       /* committed by our replica (COMMIT) */
    uint64_t blocks_synced;          /* applied from block sync */
    uint64_t blocks_proposed;
    uint64_t http_status[NODE_HTTP_STATUS_MAX - NODE_HTTP_STATUS_MIN + 1];
    uint64_t http_conns_refused;
    uint64_t apply_count;            /* block apply latency, a histogram */
    double apply_sum_s;
    uint64_t apply_buckets[8];
    uint64_t persist_count;
} node__metrics;

void node__metrics_http(node__metrics *m, int status);
void node__metrics_apply(node__metrics *m, double seconds);
/* Renders Prometheus text into a malloc'd buffer; NULL on no memory. */
char *node__metrics_render(const node *n, const node__metrics *m, size_t *len_out);

/* ------------------------------------------------------------------ http */
typedef struct {
    int method;                      /* enum http_method */
    const char *path;                /* NUL-terminated, without the query */
    const char *query;               /* NUL-terminated, "" if none */
    const char *content_type;        /* lower case, parameters cut; "" if none */
    const char *accept;              /* lower case; "" if none */
    const uint8_t *body;
    size_t body_len;
    const char *target;              /* path and query as sent (what callers sign) */
    /* Request authentication (chain_api_verify): the raw X-Consent-Key,
     * X-Consent-Time and X-Consent-Signature values, trimmed; "" if absent.
     * A session request (chain_api_mac_verify) has X-Consent-Session and
     * X-Consent-Mac with X-Consent-Time instead. */
    const char *auth_key;
    const char *auth_time;
    const char *auth_sig;
    const char *auth_session;
    const char *auth_mac;
} node__http_req;

typedef struct {
    int status;
    const char *content_type;        /* static string */
    char *body;                      /* malloc'd; the server frees it */
    size_t body_len;
    int stream;                      /* keep the connection as an event stream */
    uint64_t stream_from;            /* a stream's first block height */
} node__http_resp;

typedef struct {
    void *arg;
    /* Answers one complete request; must set resp->status and a body. */
    void (*handle)(void *arg, node__http_resp *resp, const node__http_req *req);
    /* Largest body accepted for this request line (before it is read). */
    size_t (*body_max)(void *arg, int method, const char *path);
    /* Event streams: the lines (each ending in '\n') for committed block
     * `height` into a malloc'd *out (*out NULL when *len is 0). Returns 0,
     * 1 when height is past the tip (the stream has caught up), or a
     * negative error (the stream is closed). */
    int (*stream_fill)(void *arg, char **out, size_t *len, uint64_t height);
    /* After the requests of one read are answered, before their answers
     * are written (NULL: nothing to do). */
    void (*flush)(void *arg);
} node__http_handler;

typedef struct node__http node__http;

int node__http_create(node__http **out, uv_loop_t *loop, const node_logger *lg,
                      node__metrics *metrics, const node__http_handler *h, const char *listen);
int node__http_port(const node__http *s);
/* Closes the listener and every connection; `done` runs when all are closed,
 * after which node__http_destroy frees the server. */
void node__http_close(node__http *s, void (*done)(void *arg), void *arg);
void node__http_destroy(node__http *s);
/* Event streams. Each stream has a cursor, the next block height it needs.
 * A stream that starts behind the tip replays from the store through
 * stream_fill, a bounded number of bytes in flight at a time; once caught up
 * it gets each committed block's lines from node__http_stream_block, called
 * on the commit path. A live stream whose unsent bytes pass
 * NODE_EVENT_STREAM_BYTES_MAX is cut (a slow subscriber must not hold the
 * node's memory; the stream's kernel send buffer is capped at
 * NODE_EVENT_SNDBUF_BYTES so the kernel does not hold megabytes for it
 * first); every stream gets a ": heartbeat" comment line every
 * NODE_EVENT_HEARTBEAT_MS. These limits are the defaults of
 * node__event_limits, which tests lower to reach them quickly. */
#define NODE_EVENT_STREAM_BYTES_MAX (1u << 20)
#define NODE_EVENT_SNDBUF_BYTES (64u << 10)
#define NODE_EVENT_REPLAY_BYTES (256u << 10)   /* replay pauses above this */
#define NODE_EVENT_REPLAY_BLOCKS 256           /* blocks read per replay step */
#define NODE_EVENT_HEARTBEAT_MS 15000
#define NODE_EVENT_REPLAY_MAX 10000            /* ?from= at most this far back */
typedef struct {
    uint64_t heartbeat_ms;       /* NODE_EVENT_HEARTBEAT_MS */
    uint64_t replay_max;         /* NODE_EVENT_REPLAY_MAX: ?from= at most this many blocks back */
    size_t stream_bytes_max;     /* NODE_EVENT_STREAM_BYTES_MAX */
    int sndbuf_bytes;            /* NODE_EVENT_SNDBUF_BYTES */
} node__event_limits;
/* Replaces the server's event limits; only before the loop runs (tests). */
void node__http_set_event_limits(node__http *s, const node__event_limits *l);
const node__event_limits *node__http_event_limits(const node__http *s);
void node__http_stream_block(node__http *s, uint64_t height, const char *lines, size_t len);
uint32_t node__http_streams(const node__http *s);
uint32_t node__http_conns(const node__http *s);

/* Builds a {"error": reason} response. */
void node__http_error(node__http_resp *resp, int status, const char *reason);

/* ------------------------------------------------------------------ api */
void node__api_handle(void *arg, node__http_resp *resp, const node__http_req *req);
/* The JSON of a check answer (answer.c) in a malloc'd buffer of *len
 * bytes, with the proof when p is not NULL; NULL on no memory. */
char *node__check_json(size_t *len, const chain_check_result *r, uint64_t at, const chain_check_proof *p);
/* node__http_handler.flush: the audit lines of the answered batch. */
void node__api_flush(void *arg);
size_t node__api_body_max(void *arg, int method, const char *path);
/* Pushes the grants, revocations, guardian changes and access records of a
 * committed block to event streams. */
void node__api_events(node *n, const chain_block *b);
/* node__http_handler.stream_fill for the node (arg is the node). */
int node__api_stream_fill(void *arg, char **out, size_t *len, uint64_t height);

/* ------------------------------------------------------------------ audit */
/* The local audit log: who asked about whom. One JSON line per check or
 * listing in DATA_DIR/audit.log (mode 0600, gathered in memory and appended
 * with one write(2) per batch by node__audit_flush, which the HTTP server
 * runs before it writes the batch's answers; fsync'd in batches: at most
 * every NODE_AUDIT_SYNC_MS, sooner after NODE_AUDIT_SYNC_LINES lines, and
 * at close). A line:
 *   {"time", "caller", "route", "patient", "grantee", "decision"}
 * time in unix seconds; caller is the authenticated key or null; route is
 * "check", "patient_grants" or "patient_access"; grantee is null for
 * listings; decision is "permit", "deny", "listed", "refused-401" or
 * "refused-403". Exported by `consentctl audit-export`. */
#define NODE_AUDIT_FILE "audit.log"
#define NODE_AUDIT_SYNC_LINES 4096   /* under load: bounds the unsynced tail */
#define NODE_AUDIT_SYNC_MS 1000
typedef struct node__audit node__audit;
/* fsyncs run on loop's thread pool (NULL: inline). */
int node__audit_open(node__audit **out, const char *data_dir, uv_loop_t *loop);
/* Writes and fsyncs what is left and closes (after a sync in flight
 * completes, if any); NULL is fine. */
void node__audit_close(node__audit *a);
/* Adds one line to the batch (writing the batch first if the buffer is
 * full). caller and grantee may be NULL. A write failure is counted
 * (node__audit_failures), returned as NODE_EIO and logged by the caller,
 * never fatal to the request. */
int node__audit_log(node__audit *a, uint64_t now_ms, const chain_pubkey *caller, const char *route,
                    const chain_pubkey *patient, const chain_pubkey *grantee, const char *decision);
/* Writes the gathered lines with one write(2); NODE_EIO if that failed
 * (the lines are counted as failures). NULL is fine. */
int node__audit_flush(node__audit *a, uint64_t now_ms);
uint64_t node__audit_failures(const node__audit *a);

/* ------------------------------------------------------------------ sessions */
/* Authenticated API sessions (session.c, README "Sessions"): a fixed table
 * of capacity sessions, each living ttl_s from its creation, at most
 * per_caller of them one caller's (one more replaces its own oldest); a
 * table full of distinct callers' sessions evicts the oldest. */
#define NODE_SESSIONS_MAX 65536
#define NODE_SESSIONS_DEFAULT 4096
#define NODE_SESSIONS_PER_CALLER 8
#define NODE_SESSION_TTL_S 3600
typedef struct node__sessions node__sessions;
typedef struct {
    chain_pubkey caller;
    chain_api_mac_key *mac;          /* the session key, keyed for HMAC */
    /* api.c's memo: tip height + 1 at which caller was found to be a
     * registered institution (state changes only with a block); 0: none. */
    uint64_t inst_at;
} node__session;
int node__sessions_create(node__sessions **out, uint32_t cap, uint32_t per_caller, uint32_t ttl_s);
void node__sessions_destroy(node__sessions *t);   /* wipes the keys; NULL is fine */
/* A new session id (random, drawn by the caller) for caller, opened with
 * its ephemeral key client_pub, with this session key; its expiry into
 * *expires_s. NODE_EDUP if the id is taken or the caller has a live
 * session from the same client_pub (a replayed open); NODE_ENOMEM if the
 * key's HMAC context cannot be made (nothing changes). */
int node__session_open(node__sessions *t, const uint8_t id[CHAIN_API_SESSION_ID_LEN], uint64_t *expires_s,
                       const chain_pubkey *caller, const uint8_t client_pub[CHAIN_API_EPH_PUB_LEN],
                       const uint8_t key[CHAIN_API_SESSION_KEY_LEN], uint64_t now_s);
/* 0 with *out pointing at the session (valid until the next open);
 * CHAIN_ENOTFOUND for an unknown id, CHAIN_ETIME for an expired one (which
 * is dropped). */
int node__session_find(node__sessions *t, const uint8_t id[CHAIN_API_SESSION_ID_LEN], uint64_t now_s,
                       node__session **out);
uint32_t node__sessions_count(const node__sessions *t);

/* ------------------------------------------------------------------ node */
/* Admission of one encoded transaction (client or gossip). On success
 * *hash gets its id. On refusal, returns the error and reason (NODE_REASON_MAX
 * bytes) says why; *status gets the HTTP status that fits. */
int node__submit_tx(node *n, chain_hash *hash, char *reason, int *status, const uint8_t *tx,
                    size_t len, int from_peer);

typedef struct {
    uint64_t height;
    chain_hash tip;
    uint64_t view;
    uint32_t primary;
    int is_validator;
    uint64_t view_changes;
    uint64_t dropped;
} node__status;
void node__get_status(const node *n, node__status *out);
node__mempool *node__get_mempool(const node *n);
node__rejects *node__get_rejects(const node *n);
node__metrics *node__get_metrics(node *n);
node__http *node__get_http(const node *n);
node__audit *node__get_audit(const node *n);
node__sessions *node__get_sessions(const node *n);
/* The tip's encoded header and certificate, shared by proof=1 answers. */
chain_check_tip *node__get_proof_tip(node *n);
/* The peer transport (node/p2p.h), NULL once the node is stopping. */
struct node_p2p *node__get_p2p(const node *n);
size_t node__peers(const node *n, uint32_t *out, size_t max);
uint64_t node__now_s(void);
uint64_t node__now_ms(void);

/* Synced blocks are executed in memory and written together once they
 * hold this many txs (node_on_blocks), so a run holds fewer than this plus
 * one block; its one tree update rewrites the upper pages once
 * (chain/run.c). With that update, against 4,096 txs and an update per
 * block: 1,978 and 2,004 against 1,673 and 1,740 blocks/s, 77-78 against
 * 95-101 CPU-s, in 100,000-block catch-ups run back to back. */
#define NODE_SYNC_WRITE_TXS 8192u
/* ... or once they are half a response of blocks: a write in the middle
 * of a response lets the helper thread check the rest of it while the
 * loop thread writes, where a write at its end leaves the helper nothing
 * to do. 100,000 blocks of 5 grants, runs alternated: 2,129 and 2,031
 * blocks/s against 1,971 and 1,973 with one write per response. (A write
 * every 2,048 txs instead made full blocks write one by one: 16.9k
 * against 19.9k tx/s.) */
#define NODE_SYNC_WRITE_BLOCKS 512u   /* NODE_P2P_SYNC_BLOCKS_MAX / 2 */
_Static_assert(NODE_SYNC_WRITE_TXS - 1 + CHAIN_BLOCK_TXS_MAX <= CHAIN_RUN_TXS_MAX, "a run must fit");

/* ------------------------------------------------------------------ producer */
/* The block producer: when this validator is the primary and nothing of ours
 * is in flight, builds a block from the mempool and proposes it. */
typedef struct node__producer node__producer;
/* A backup re-executes at most this many of the oldest waiting transactions
 * that still apply after a new tip (producer.c, recheck). */
#define NODE_RECHECK_TXS 256u
int node__producer_create(node__producer **out, node *n, uv_loop_t *loop, uint32_t interval_ms,
                          uint32_t txs_max);
void node__producer_start(node__producer *p);
/* Builds now if enough transactions wait (called after admissions). */
void node__producer_poke(node__producer *p);
/* Builds now if any transactions wait (called after each commit). */
void node__producer_committed(node__producer *p);
void node__producer_close(node__producer *p, void (*done)(void *arg), void *arg);
void node__producer_destroy(node__producer *p);

/* Executed block cache: producer and validation keep the overlay so a COMMIT
 * does not re-execute the block. Takes ownership of ex. */
void node__exec_keep(node *n, uint64_t seq, const chain_hash *digest, chain_exec *ex);
/* Runs the replica's propose and its actions. */
int node__propose(node *n, const uint8_t *block, size_t len, const chain_hash *digest);
/* Block time for the next block: wall clock, never before the tip's. */
uint64_t node__block_time_ms(const node *n);
int node__is_primary_idle(const node *n);   /* primary with nothing in flight */

#endif
