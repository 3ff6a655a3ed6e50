/* producer.c — the block producer of a primary validator.
 *
 * Every block_interval_ms, as soon as block_txs_max transactions wait, or
 * right after a commit when any wait, the producer checks that this validator is the primary with nothing in
 * flight, executes mempool transactions front to back on top of the
 * committed tip (chain_exec_begin / chain_exec_tx / chain_exec_finish) and
 * hands the block to the replica. Signatures were verified at admission, so
 * transactions run with sig_checked = 1. A transaction that fails against
 * state (a stranger's revoke, a spent nonce, an expired time window) is
 * dropped from the mempool and remembered with its reason; storage errors
 * abort the build and leave the mempool as it was. Empty blocks are never
 * built.
 */
#include <assert.h>
#include <inttypes.h>
#include <stdlib.h>
#include <string.h>

#include "node/node_int.h"

struct node__producer {
    node *n;
    uv_timer_t tick;
    uv_timer_t kick;             /* a build soon after a burst of admissions */
    uint32_t interval_ms, txs_max;
    int kick_armed;
    int open_handles;
    uint64_t checked_height;     /* tip the last recheck ran against */
    uint64_t checked_ms;         /* loop time of that recheck */
    void (*done)(void *arg);
    void *done_arg;
};

static void reject(node *n, const node__mp_entry *e, int rc) {
    char hx[2 * CHAIN_HASH_LEN + 1];
    chain_hex(hx, e->hash.b, CHAIN_HASH_LEN);
    node_log(node_get_logger(n), NODE_LOG_INFO, "tx %s rejected: %s", hx, chain_strerror(rc));
    node__rejects_add(node__get_rejects(n), &e->hash, chain_strerror(rc));
    node__get_metrics(n)->txs_rejected++;
}

/* Applies up to max mempool transactions to ex, front to back; returns how
 * many, or a negative code on a storage failure. */
static int fill(node__producer *p, chain_exec *ex, uint32_t max) {
    node__mempool *mp = node__get_mempool(p->n);
    int count = 0;
    uint32_t scanned = 0;
    const node__mp_entry *e = node__mempool_first(mp);
    while (e && (uint32_t)count < max && scanned < 2 * max) {
        const node__mp_entry *next = node__mempool_next(e);
        scanned++;
        int rc = chain_exec_tx(ex, e->tx, e->len, e->sig_checked);
        if (rc == CHAIN_EIO || rc == CHAIN_ENOMEM || rc == CHAIN_EINVAL) return rc;
        if (rc) {
            reject(p->n, e, rc);
            node__mempool_remove(mp, &e->hash);
        } else {
            count++;
        }
        e = next;
    }
    return count;
}

/* Not the primary: re-executes the oldest waiting transactions against the
 * new tip (without keeping the result) and drops those that can no longer
 * apply, so a transaction the primary refused does not wait here forever
 * and keep the view timer running. It runs at most every view_timeout_ms / 4
 * rather than after every commit: each commit restarts the view timer, so
 * a refused transaction only matters once commits stop, and then it is gone
 * well before the timer fires. Only the oldest are executed, up to
 * NODE_RECHECK_TXS that still apply: a refused transaction is never
 * committed, so it reaches the front of the FIFO as the others commit, and a
 * recheck of a whole backlog (thousands of transactions under load) would
 * cost a block's execution twice a second. */
static void recheck(node__producer *p) {
    node *n = p->n;
    uint64_t h = node_height(n), now = uv_now(node_loop(n));
    if (h == p->checked_height || node__mempool_size(node__get_mempool(n)) == 0) return;
    if (now - p->checked_ms < node_get_config(n)->view_timeout_ms / 4) return;
    chain_exec *ex = NULL;
    if (chain_exec_begin(&ex, node_store(n), node__block_time_ms(n)) != 0) return;
    if (fill(p, ex, NODE_RECHECK_TXS) >= 0) {
        p->checked_height = h;
        p->checked_ms = now;
    }
    chain_exec_abort(ex);
}

static void build(node__producer *p) {
    node *n = p->n;
    if (!node__is_primary_idle(n)) {
        recheck(p);
        return;
    }
    if (node__mempool_size(node__get_mempool(n)) == 0) return;
    chain_exec *ex = NULL;
    int rc = chain_exec_begin(&ex, node_store(n), node__block_time_ms(n));
    if (rc) {
        node_log(node_get_logger(n), NODE_LOG_ERROR, "block build: %s", chain_strerror(rc));
        return;
    }
    int count = fill(p, ex, p->txs_max);
    chain_block b;
    chain_block_init(&b);
    rc = count < 0 ? count : (count == 0 ? 1 : chain_exec_finish(ex, &b));
    uint8_t *buf = NULL;
    size_t len = 0;
    if (rc == 0) {
        chain_key_pubkey(node_key(n), &b.hdr.proposer);
        node__status st;
        node__get_status(n, &st);
        b.hdr.view = st.view;
        rc = chain_block_encode(&buf, &len, &b);
    }
    if (rc != 0) {
        if (rc < 0) node_log(node_get_logger(n), NODE_LOG_ERROR, "block build: %s", chain_strerror(rc));
        chain_exec_abort(ex);
        chain_block_free(&b);
        return;
    }
    chain_hash digest;
    chain_header_hash(&b.hdr, &digest);
    node_log(node_get_logger(n), NODE_LOG_DEBUG, "proposing height %" PRIu64 " with %u txs",
             b.hdr.height, b.n_txs);
    node__exec_keep(n, b.hdr.height, &digest, ex);
    (void)node__propose(n, buf, len, &digest);
    free(buf);
    chain_block_free(&b);
}

static void on_tick(uv_timer_t *t) {
    node__producer *p = t->data;
    build(p);
}

static void on_kick(uv_timer_t *t) {
    node__producer *p = t->data;
    p->kick_armed = 0;
    build(p);
}

int node__producer_create(node__producer **out, node *n, uv_loop_t *loop, uint32_t interval_ms,
                          uint32_t txs_max) {
    assert(interval_ms >= 1 && txs_max >= 1 && txs_max <= CHAIN_BLOCK_TXS_MAX);
    node__producer *p = calloc(1, sizeof(*p));
    if (!p) return NODE_ENOMEM;
    p->n = n;
    p->interval_ms = interval_ms;
    p->txs_max = txs_max;
    uv_timer_init(loop, &p->tick);
    uv_timer_init(loop, &p->kick);
    p->tick.data = p->kick.data = p;
    p->open_handles = 2;
    *out = p;
    return 0;
}

void node__producer_start(node__producer *p) {
    uv_timer_start(&p->tick, on_tick, p->interval_ms, p->interval_ms);
}

static void kick(node__producer *p) {
    p->kick_armed = 1;
    uv_timer_start(&p->kick, on_kick, 0, 0);
}

void node__producer_poke(node__producer *p) {
    if (p->kick_armed || p->open_handles < 2 || !node_key(p->n)) return;
    /* A full block waits: build on the next loop turn rather than inside the
     * caller (an HTTP handler or a commit), which must not re-enter the
     * replica. Fewer transactions wait for the tick. */
    if (node__mempool_size(node__get_mempool(p->n)) < p->txs_max) return;
    kick(p);
}

void node__producer_committed(node__producer *p) {
    if (p->kick_armed || p->open_handles < 2 || !node_key(p->n)) return;
    /* Our block (or another's) just committed: whatever waited meanwhile
     * goes into the next block now, not at the next tick, so the primary
     * never idles between blocks while transactions wait. */
    if (node__mempool_size(node__get_mempool(p->n)) == 0) return;
    kick(p);
}

static void closed(uv_handle_t *h) {
    node__producer *p = h->data;
    if (--p->open_handles == 0 && p->done) p->done(p->done_arg);
}

void node__producer_close(node__producer *p, void (*done)(void *arg), void *arg) {
    p->done = done;
    p->done_arg = arg;
    uv_close((uv_handle_t *)&p->tick, closed);
    uv_close((uv_handle_t *)&p->kick, closed);
}

void node__producer_destroy(node__producer *p) {
    if (!p) return;
    assert(p->open_handles == 0);
    free(p);
}
