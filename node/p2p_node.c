/* p2p_node.c — wiring between the transport and the node (node.h).
 *
 * Two small adapter tables, kept apart from the transport so that the
 * transport (and its tests) link without the rest of the node:
 *   - node_p2p_hooks_for: what the node wants sent (consensus, gossip,
 *     fetch, commit announcements) leaves through a node_p2p;
 *   - node_p2p_callbacks_for_node: what peers deliver enters the node
 *     through node_on_cons_message / node_on_tx / node_on_block, and block
 *     requests are served from the node's store.
 *
 * Typical start-up (main or node.c):
 *     node_p2p_config pc = {loop, node_genesis(n), node_key(n), cfg->p2p_listen, ...};
 *     node_p2p_callbacks_for_node(&pc.cb); pc.arg = n;
 *     node_p2p_create(&p2p, &pc); node_p2p_hooks_for(&hooks, p2p); node_set_p2p(n, &hooks);
 *     node_p2p_set_height(p2p, node_height(n)); node_p2p_start(p2p);
 */
#include "node/p2p.h"

static void hook_send(void *arg, uint32_t to, const uint8_t *msg, size_t len) {
    /* A link that is down is not an error for consensus: PBFT retransmits
     * through view changes and the peer catches up by block sync. */
    int rc = node_p2p_send_consensus(arg, to, msg, len);
    (void)rc;
}

static void hook_broadcast(void *arg, const uint8_t *msg, size_t len) {
    (void)node_p2p_broadcast_consensus(arg, msg, len);
}

static void hook_fetch(void *arg, uint64_t height) { node_p2p_fetch(arg, height); }

static void hook_gossip(void *arg, const uint8_t *tx, size_t len) { (void)node_p2p_gossip_tx(arg, tx, len); }

static void hook_committed(void *arg, uint64_t height, const chain_hash *hash) {
    (void)hash;
    node_p2p_set_height(arg, height);
}

static size_t hook_peers(void *arg, uint32_t *out, size_t max) { return node_p2p_peers(arg, out, max); }

static int hook_send_tx(void *arg, uint32_t to, const uint8_t *tx, size_t len) {
    return node_p2p_send_tx(arg, to, tx, len);
}

void node_p2p_hooks_for(node_p2p_hooks *out, node_p2p *p) {
    out->arg = p;
    out->send = hook_send;
    out->broadcast = hook_broadcast;
    out->fetch = hook_fetch;
    out->gossip_tx = hook_gossip;
    out->committed = hook_committed;
    out->peers = hook_peers;
    out->send_tx = hook_send_tx;
}

static void cb_consensus(void *arg, uint32_t from, const uint8_t *msg, size_t len) {
    int rc = node_on_cons_message(arg, from, msg, len);   /* the node logs refusals */
    (void)rc;
}

static int cb_tx(void *arg, uint32_t from, const uint8_t *tx, size_t len) {
    (void)from;
    return node_on_tx(arg, tx, len) == 0;   /* admitted: pass it on */
}

static int cb_get_block(void *arg, uint64_t height, uint8_t **out, size_t *len) {
    chain_store *st = node_store(arg);
    if (st == NULL || height == 0 || height > chain_store_height(st)) return -1;
    return chain_store_get_block_raw(st, height, out, len);
}

static void cb_blocks(void *arg, uint32_t from, uint64_t from_height, const uint8_t *const *blocks,
                      const size_t *lens, size_t n) {
    (void)from;
    (void)from_height;
    (void)node_on_blocks(arg, blocks, lens, n);   /* stops at the first that does not apply */
}

static void cb_peer(void *arg, uint32_t peer, int up) { (void)node_on_peer(arg, peer, up); }

void node_p2p_callbacks_for_node(node_p2p_callbacks *out) {
    out->on_consensus = cb_consensus;
    out->on_tx = cb_tx;
    out->get_block = cb_get_block;
    out->on_blocks = cb_blocks;
    out->on_peer = cb_peer;
}
