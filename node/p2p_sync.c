/* p2p_sync.c — status and block sync over peer links.
 *
 * Every node tells its peers its committed height (a Status) when a link
 * comes up and after every commit. A node that learns it is behind asks one
 * validator at a time for up to NODE_P2P_SYNC_BLOCKS_MAX consecutive blocks,
 * hands what comes back to the node (which verifies each certificate
 * against genesis and applies it) and asks again once its height moved.
 *
 * A validator syncs on status at once only when it is
 * NODE_P2P_SYNC_LAG_VALIDATOR or more behind (or when consensus asked,
 * node_p2p_fetch): a peer that committed the block we are about to commit
 * ourselves is the normal case and not a reason to download it. A smaller
 * lag is closed too once it has lasted NODE_P2P_SYNC_STUCK_MS without our
 * height moving: then consensus is not bringing those blocks (we missed
 * their messages and no new traffic makes the replica ask), and waiting
 * for a view timeout would leave the node behind for seconds, or forever
 * when nothing else happens. Syncing a block consensus would also have
 * committed costs only bandwidth: its certificate is verified either way,
 * and the replica is told it is committed.
 *
 * One request is in flight at a time, and the next one is sent only once
 * the whole response has been handed to the node. An unanswered request
 * times out and the next peer is tried; a response that did not move our
 * height and does not hold blocks we already have (none, or blocks that do
 * not apply) holds automatic requests for NODE_P2P_SYNC_RETRY_MS, so a
 * peer serving useless blocks cannot make us spin.
 */
#include <assert.h>
#include <inttypes.h>
#include <stdlib.h>
#include <string.h>

#include "node/p2p.h"

static void sync_check(node_p2p *p);

static void sync_timer_cb(uv_timer_t *t) {
    node_p2p *p = t->data;
    if (p->stopping) return;
    if (p->sync_peer != NODE_P2P_NO_PEER) {
        node_log(p->log, NODE_LOG_DEBUG, "p2p: block request to validator %u timed out", p->sync_peer);
        p->sync_rr = (p->sync_peer + 1) % p->g->n_validators;
        p->sync_peer = NODE_P2P_NO_PEER;
    }
    sync_check(p);
}

static int request(node_p2p *p, uint32_t j, uint64_t from, uint32_t count) {
    assert(j < p->g->n_validators);
    assert(count >= 1 && count <= NODE_P2P_SYNC_BLOCKS_MAX);
    uint8_t *frame;
    size_t len;
    int rc = node__p2p_enc_request(&frame, &len, from, count);
    if (rc != 0) return rc;
    rc = node__p2p_send_frame(p->peers[j].link, frame, len);
    free(frame);
    if (rc != 0) return rc;
    p->sync_peer = j;
    p->sync_from = from;
    p->sync_count = count;
    p->st.block_requests_out++;
    uv_timer_start(&p->sync_timer, sync_timer_cb, NODE_P2P_SYNC_TIMEOUT_MS, 0);
    return 0;
}

/* The next connected validator (round robin) whose height reaches `from`;
 * NODE_P2P_NO_PEER if none. */
static uint32_t pick(const node_p2p *p, uint64_t from, uint64_t lag) {
    uint32_t n = p->g->n_validators;
    for (uint32_t k = 0; k < n; k++) {
        uint32_t j = (p->sync_rr + k) % n;
        const node__p2p_slot *s = &p->peers[j];
        if (s->link == NULL || s->height < from) continue;
        if (s->height - (from - 1) < lag && p->target < from) continue;
        return j;
    }
    return NODE_P2P_NO_PEER;
}

/* The lag at which a validator asks now: NODE_P2P_SYNC_LAG_VALIDATOR, or 1
 * once a peer has been ahead for NODE_P2P_SYNC_STUCK_MS while our height
 * stood still (then it also aims at that peer's height, so the catch-up
 * does not wait again after every response). Until then the sync timer is
 * armed for the moment the lag becomes stuck. Called only when no request
 * is in flight and no hold is on, so the timer is free. */
static uint64_t validator_lag(node_p2p *p) {
    uint64_t now = uv_now(p->loop);
    uint32_t j = pick(p, p->height + 1, 1);
    if (j == NODE_P2P_NO_PEER) {
        p->stuck = 0;
        return NODE_P2P_SYNC_LAG_VALIDATOR;
    }
    if (!p->stuck || p->stuck_height != p->height) {
        p->stuck = 1;
        p->stuck_height = p->height;
        p->stuck_since = now;
    }
    assert(now >= p->stuck_since);
    if (now - p->stuck_since >= NODE_P2P_SYNC_STUCK_MS) {
        if (p->peers[j].height > p->target) {
            node_log(p->log, NODE_LOG_INFO, "p2p: behind at height %" PRIu64 ", validator %u at %" PRIu64
                     "; syncing", p->height, j, p->peers[j].height);
            p->target = p->peers[j].height;
        }
        return 1;
    }
    uv_timer_start(&p->sync_timer, sync_timer_cb, p->stuck_since + NODE_P2P_SYNC_STUCK_MS - now, 0);
    return NODE_P2P_SYNC_LAG_VALIDATOR;
}

static void sync_check(node_p2p *p) {
    if (p->stopping || p->delivering || p->sync_peer != NODE_P2P_NO_PEER) return;
    if (uv_now(p->loop) < p->sync_hold_until || p->height == UINT64_MAX) return;
    uint64_t lag = p->self_index >= 0 ? validator_lag(p) : 1;
    uint64_t from = p->height + 1;
    uint32_t j = pick(p, from, lag);
    if (j == NODE_P2P_NO_PEER) return;
    uint64_t ahead = p->peers[j].height - p->height;
    uint32_t count = ahead < NODE_P2P_SYNC_BLOCKS_MAX ? (uint32_t)ahead : NODE_P2P_SYNC_BLOCKS_MAX;
    if (request(p, j, from, count) != 0) p->sync_rr = (j + 1) % p->g->n_validators;
}

void node__p2p_sync_peer_down(node_p2p *p, uint32_t peer) {
    if (p->sync_peer != peer) return;
    p->sync_peer = NODE_P2P_NO_PEER;
    p->sync_rr = (peer + 1) % p->g->n_validators;
    if (!p->stopping) uv_timer_stop(&p->sync_timer);
    sync_check(p);
}

/* ------------------------------------------------------------------ status */
void node__p2p_send_status(node__p2p_conn *c) {
    uint8_t *frame;
    size_t len;
    if (node__p2p_enc_status(&frame, &len, c->p->height) != 0) return;
    (void)node__p2p_send_frame(c, frame, len);   /* failure closes the link */
    free(frame);
}

void node__p2p_on_status(node__p2p_conn *c, uint64_t height) {
    node_p2p *p = c->p;
    c->peer_height = height;
    if (c->role != NODE_P2P_ROLE_VALIDATOR) return;   /* we never sync from full nodes */
    p->peers[c->peer].height = height;
    sync_check(p);
}

void node_p2p_set_height(node_p2p *p, uint64_t height) {
    if (p->stopping) return;
    p->height = height;
    uint8_t *frame;
    size_t len;
    if (node__p2p_enc_status(&frame, &len, height) == 0) {
        /* Closing a link never unlinks it at once, so the walk is safe. */
        for (node__p2p_conn *c = p->conns; c != NULL; c = c->next)
            if (c->state == NODE__P2P_CONN_UP) (void)node__p2p_send_frame(c, frame, len);
        free(frame);
    }
    sync_check(p);
}

void node_p2p_fetch(node_p2p *p, uint64_t height) {
    if (height > p->target) p->target = height;
    sync_check(p);
}

int node_p2p_request_blocks(node_p2p *p, uint64_t from_height, uint32_t count) {
    if (from_height == 0 || count == 0 || count > NODE_P2P_SYNC_BLOCKS_MAX) return NODE_EINVAL;
    if (p->stopping) return NODE_ESTOPPED;
    if (p->sync_peer != NODE_P2P_NO_PEER) return NODE_EFULL;
    uint32_t j = pick(p, from_height, 1);
    if (j == NODE_P2P_NO_PEER) return NODE_EIO;
    return request(p, j, from_height, count);
}

uint64_t node_p2p_peer_height(const node_p2p *p, uint32_t peer) {
    const node__p2p_conn *c = node__p2p_find(p, peer);
    return c ? c->peer_height : 0;
}

/* ------------------------------------------------------------------ serving */
/* Blocks go out in one frame; stop before the frame would overflow (a few
 * bytes per block for the field header). */
#define RESPONSE_BUDGET (NODE_P2P_FRAME_BYTES_MAX - 64)
#define BLOCK_OVERHEAD 16

void node__p2p_serve_blocks(node__p2p_conn *c, uint64_t from, uint32_t count) {
    node_p2p *p = c->p;
    assert(count >= 1 && count <= NODE_P2P_SYNC_BLOCKS_MAX);
    p->st.block_requests_in++;
    uint8_t *blocks[NODE_P2P_SYNC_BLOCKS_MAX];
    size_t lens[NODE_P2P_SYNC_BLOCKS_MAX];
    size_t n = 0, total = 0;
    if (from > UINT64_MAX - count) count = 0;   /* heights would wrap: none */
    for (uint32_t i = 0; i < count && p->cb.get_block; i++) {
        uint8_t *b = NULL;
        size_t len = 0;
        if (p->cb.get_block(p->arg, from + i, &b, &len) != 0) break;
        if (b == NULL || len == 0 || len > CHAIN_BLOCK_BYTES_MAX ||
            total + len + BLOCK_OVERHEAD > RESPONSE_BUDGET) {
            free(b);
            break;
        }
        blocks[n] = b;
        lens[n++] = len;
        total += len + BLOCK_OVERHEAD;
    }
    uint8_t *frame;
    size_t flen;
    if (node__p2p_enc_response(&frame, &flen, from, (const uint8_t *const *)blocks, lens, n) == 0) {
        if (node__p2p_send_frame(c, frame, flen) == 0) p->st.blocks_served += n;
        free(frame);
    }
    for (size_t i = 0; i < n; i++) free(blocks[i]);
}

void node__p2p_on_blocks(node__p2p_conn *c, const node__p2p_msg *m) {
    node_p2p *p = c->p;
    if (c->role != NODE_P2P_ROLE_VALIDATOR) {
        node__p2p_drop(c, "block response from a full node");
        return;
    }
    if (p->sync_peer != c->peer || m->height != p->sync_from) {
        p->st.unsolicited_responses++;   /* late, after a timeout: harmless */
        return;
    }
    if (m->n_blocks > p->sync_count) {
        node__p2p_drop(c, "more blocks than asked for");
        return;
    }
    p->sync_peer = NODE_P2P_NO_PEER;
    uv_timer_stop(&p->sync_timer);
    p->st.blocks_received += m->n_blocks;
    uint64_t before = p->height;
    /* The node applies the blocks one by one and announces each new height
     * (node_p2p_set_height) from inside the callback; asking for the rest
     * of this very response there would fetch it twice, and the second,
     * stale answer would then look useless and hold sync back. So the next
     * request waits until the whole response is delivered. */
    if (m->n_blocks > 0 && p->cb.on_blocks) {
        p->delivering = 1;
        p->cb.on_blocks(p->arg, c->peer, m->height, m->blocks, m->block_lens, m->n_blocks);
        p->delivering = 0;
    }
    if (p->stopping) return;
    /* Moved, or overtaken while in flight (we hold all its blocks already):
     * fine. Only an answer that left us short of what it claimed holds. */
    int stale = m->n_blocks > 0 && p->height >= m->height + m->n_blocks - 1;
    if (p->height > before || stale || p->sync_peer != NODE_P2P_NO_PEER) {
        sync_check(p);
        return;
    }
    p->sync_rr = (c->peer + 1) % p->g->n_validators;
    p->sync_hold_until = uv_now(p->loop) + NODE_P2P_SYNC_RETRY_MS;
    uv_timer_start(&p->sync_timer, sync_timer_cb, NODE_P2P_SYNC_RETRY_MS, 0);
}
