/* node.h — the public interface of the node module (consentd).
 *
 * node/ is the I/O shell around the pure state machines of chain/ and
 * consensus/: a libuv loop that serves the HTTP API, keeps the mempool,
 * builds blocks when this validator is the primary, runs the replica's
 * actions in order (persist before send) and applies committed blocks.
 *
 * The peer transport (node/p2p.c) plugs in through node_p2p_hooks: what the
 * replica wants sent leaves through the hooks, and what peers deliver enters
 * through node_on_cons_message / node_on_tx / node_on_block. With a single
 * validator there are no peers and no hooks are needed.
 *
 * Conventions as in chain.h: context first, 0 or a negative NODE_E* code,
 * node_strerror() for a one-line reason.
 */
#ifndef CONSENT_NODE_H
#define CONSENT_NODE_H

#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <uv.h>

#include "chain/chain.h"

#ifdef __cplusplus
extern "C" {
#endif

#if defined(__GNUC__)
#define NODE_WUR __attribute__((warn_unused_result))
#define NODE_PRINTF(a, b) __attribute__((format(printf, a, b)))
#else
#define NODE_WUR
#define NODE_PRINTF(a, b)
#endif

/* ------------------------------------------------------------------ limits */
#define NODE_PATH_MAX 1024
#define NODE_ADDR_MAX 64                  /* "host:port" */
#define NODE_HTTP_CONNS_MAX 1024          /* open API connections */
#define NODE_HTTP_HEADER_BYTES_MAX 16384  /* request line + headers */
#define NODE_HTTP_URL_BYTES_MAX 4096
#define NODE_HTTP_BODY_BYTES_MAX 16384    /* any route but the batch */
#define NODE_HTTP_WRITE_QUEUE_MAX (8u << 20) /* stop reading a client above this */
#define NODE_HTTP_IDLE_MS 30000           /* keep-alive idle timeout */
#define NODE_BATCH_TXS_MAX 1000           /* POST /v1/txs/batch */
#define NODE_BATCH_BYTES_MAX (4u << 20)
#define NODE_MEMPOOL_MAX 1000000          /* cap on the configured mempool_max */
#define NODE_REJECTS_MAX 65536            /* recent rejections remembered */
#define NODE_PATIENT_GRANTS_MAX 4096      /* grants listed per request */
#define NODE_PENDING_COMMITS_MAX 256      /* commits waiting for an earlier one */
#define NODE_EVENT_SUBSCRIBERS_MAX 256    /* GET /v1/events streams */

/* ------------------------------------------------------------------ errors */
enum {
    NODE_OK = 0,
    NODE_EINVAL = -1,     /* argument misuse or a bad option value */
    NODE_ENOMEM = -2,
    NODE_ECONFIG = -3,    /* the config file is missing or wrong */
    NODE_EIO = -4,        /* socket or file failure */
    NODE_EFULL = -5,      /* a bounded queue is full (mempool, connections) */
    NODE_EDUP = -6,       /* already known */
    NODE_ECHAIN = -7,     /* a chain/ call failed; see the log */
    NODE_ECONS = -8,      /* a consensus/ call failed */
    NODE_ESTOPPED = -9,   /* the node is shutting down */
};
const char *node_strerror(int err);

/* ------------------------------------------------------------------ logging */
typedef enum {
    NODE_LOG_DEBUG = 0,
    NODE_LOG_INFO = 1,
    NODE_LOG_WARN = 2,
    NODE_LOG_ERROR = 3,
} node_log_level;

/* One line per event to `out` (stderr by default): UTC time, level, text.
 * Never log a patient key or grant content at INFO or above: log hashes and
 * heights. */
typedef struct {
    node_log_level level;
    void *out;           /* FILE *; NULL means stderr */
} node_logger;

void node_log(const node_logger *lg, node_log_level level, const char *fmt, ...) NODE_PRINTF(3, 4);
void node_vlog(const node_logger *lg, node_log_level level, const char *fmt, va_list ap);
/* Parses "debug", "info", "warn" or "error"; NODE_EINVAL otherwise. */
int node_log_level_parse(node_log_level *out, const char *s) NODE_WUR;

/* ------------------------------------------------------------------ config */
typedef struct {
    char genesis[NODE_PATH_MAX];
    char data_dir[NODE_PATH_MAX];
    char key_file[NODE_PATH_MAX];          /* empty: a full node (no validator key) */
    char passphrase_file[NODE_PATH_MAX];   /* empty: CONSENT_PASSPHRASE */
    char api_listen[NODE_ADDR_MAX];        /* port 0 picks a free port */
    char p2p_listen[NODE_ADDR_MAX];
    uint32_t block_interval_ms;
    uint32_t block_txs_max;
    uint32_t mempool_max;
    uint64_t view_timeout_ms;
    uint32_t checkpoint_interval;
    uint32_t window;
    node_log_level log_level;
} node_config;

void node_config_defaults(node_config *cfg);
/* Reads a JSON config (see README); relative paths are resolved against the
 * config file's folder. On error, err (errlen bytes) gets a one-line reason
 * and cfg is unchanged. */
int node_config_load(node_config *cfg, char *err, size_t errlen, const char *path) NODE_WUR;
/* Same, from a string; base_dir resolves relative paths. */
int node_config_parse(node_config *cfg, char *err, size_t errlen, const char *json, size_t len,
                      const char *base_dir) NODE_WUR;
/* Checks ranges (interval, sizes, addresses). */
int node_config_validate(const node_config *cfg, char *err, size_t errlen) NODE_WUR;
/* Splits "host:port" (IPv4 or [IPv6]); port 0..65535. */
int node_addr_parse(char *host, size_t hostlen, int *port, const char *addr) NODE_WUR;

/* ------------------------------------------------------------------ node */
typedef struct node node;

/* Where consensus traffic leaves the node and peer events reach it. Every
 * hook may be NULL (then the action is dropped, as with n = 1). Hooks run on
 * the loop thread and must not call back into the node synchronously. */
typedef struct {
    void *arg;
    /* Send a consensus message to validator index `to` / to every other one. */
    void (*send)(void *arg, uint32_t to, const uint8_t *msg, size_t len);
    void (*broadcast)(void *arg, const uint8_t *msg, size_t len);
    /* We are behind: fetch committed blocks up to `height` and hand each to
     * node_on_block. */
    void (*fetch)(void *arg, uint64_t height);
    /* A transaction entered our mempool from a client: gossip it. */
    void (*gossip_tx)(void *arg, const uint8_t *tx, size_t len);
    /* A block was committed here (announce the new tip). */
    void (*committed)(void *arg, uint64_t height, const chain_hash *hash);
    /* Connected validators: writes up to max indices, returns how many. */
    size_t (*peers)(void *arg, uint32_t *out, size_t max);
    /* Hand one mempool transaction to validator `to` (see node_on_peer);
     * non-zero when it takes no more now. */
    int (*send_tx)(void *arg, uint32_t to, const uint8_t *tx, size_t len);
} node_p2p_hooks;

/* Creates a node on `loop`: loads genesis and the validator key, opens the
 * store, creates the replica, binds the API. On error err gets a one-line
 * reason and nothing is left open. */
int node_create(node **out, char *err, size_t errlen, uv_loop_t *loop, const node_config *cfg) NODE_WUR;
/* Starts the replica, the producer and the API server. */
int node_start(node *n) NODE_WUR;
/* Begins a graceful stop: closes the listener, connections and timers; once
 * every handle is closed, the store is closed and `done` runs (may be NULL).
 * After `done`, call node_destroy. Safe to call twice. */
void node_stop(node *n, void (*done)(node *n, void *arg), void *arg);
/* Registers the callback run once the node has fully stopped, whether
 * node_stop was called or the node stopped itself on a fatal store error. */
void node_set_stopped_cb(node *n, void (*done)(node *n, void *arg), void *arg);
void node_destroy(node *n);

void node_set_p2p(node *n, const node_p2p_hooks *hooks);

/* Peer entry points (the p2p layer has authenticated the sender). */
int node_on_cons_message(node *n, uint32_t from, const uint8_t *msg, size_t len) NODE_WUR;
/* A gossiped transaction: admitted like a client's but not re-gossiped. */
int node_on_tx(node *n, const uint8_t *tx, size_t len) NODE_WUR;
/* A link to validator `peer` came up (up = 1) or went down. On up, the
 * node hands the peer its mempool, oldest first, until send_tx refuses:
 * validators do not relay each other's gossip, so a tx gossiped while the
 * link was down would otherwise reach that validator only in a block, and
 * a primary that missed it would be replaced by a view change. Returns how
 * many transactions were handed over. */
size_t node_on_peer(node *n, uint32_t peer, int up);
/* A committed block from block sync (encoded chain_block with its cert):
 * verified against genesis and applied if it is the next height. */
int node_on_block(node *n, const uint8_t *block, size_t len) NODE_WUR;
/* A run of consecutive blocks from block sync, applied in order until one
 * does not apply, with one sync of the store at the end rather than one
 * per block. The blocks are written every NODE_SYNC_WRITE_TXS txs, and a
 * write checks only the state root of its last block: a wrong one drops
 * every block since the last write (chain_blocks_check_write). Returns how
 * many were applied. */
size_t node_on_blocks(node *n, const uint8_t *const *blocks, const size_t *lens, size_t count);

/* Introspection, for the p2p layer, main and tests. */
uv_loop_t *node_loop(const node *n);
const node_config *node_get_config(const node *n);
const node_logger *node_get_logger(const node *n);
const chain_genesis *node_genesis(const node *n);
chain_store *node_store(const node *n);
const chain_key *node_key(const node *n);           /* NULL for a full node */
int node_validator_index(const node *n);            /* -1 for a full node */
int node_api_port(const node *n);                   /* the bound API port */
uint64_t node_height(const node *n);

#ifdef __cplusplus
}
#endif
#endif
