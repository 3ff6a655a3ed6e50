/* metrics.c — Prometheus text exposition of the node's counters.
 *
 * Counters live in a plain struct owned by the node (node__metrics) and are
 * bumped on the loop thread; rendering reads them plus live values (height,
 * view, mempool size) when GET /metrics asks. Block apply latency is a
 * histogram with fixed buckets so scrapes can compute quantiles.
 *
 * Every series, by name (counters end in _total; all are unlabelled unless
 * said otherwise):
 *   consent_height                      gauge   height of the last committed block
 *   consent_view                        gauge   current consensus view (0 on a full node)
 *   consent_mempool_size                gauge   transactions waiting in the mempool
 *   consent_peers                       gauge   connected validator peers
 *   consent_http_connections            gauge   open API connections
 *   consent_event_streams               gauge   open /v1/events streams
 *   consent_txs_admitted_total          counter transactions admitted to the mempool
 *   consent_txs_committed_total         counter transactions in blocks applied here
 *   consent_txs_rejected_total          counter admitted transactions dropped because they no
 *                                               longer apply to state (block build or recheck)
 *   consent_blocks_committed_total      counter blocks applied here, by consensus or sync
 *                                               (= consent_commits_total + consent_blocks_synced_total)
 *   consent_commits_total               counter blocks committed by this node's replica
 *   consent_blocks_synced_total         counter blocks applied from block sync
 *   consent_blocks_proposed_total       counter blocks this node proposed as primary
 *   consent_view_changes_total          counter view changes seen by the replica
 *   consent_dropped_messages_total      counter consensus messages the replica refused
 *   consent_persists_total              counter replica state writes made before sending
 *   consent_store_compaction_pending_bytes
 *                                       gauge   RocksDB's estimate of bytes compactions
 *                                               still have to rewrite (all column families)
 *   consent_store_compactions_running   gauge   RocksDB compactions running now
 *   consent_store_flushes_running       gauge   RocksDB memtable flushes running now
 *   consent_store_sst_bytes             gauge   bytes in the store's live table files
 *   consent_p2p_validators_connected    gauge   authenticated validator links
 *   consent_p2p_full_nodes_connected    gauge   authenticated full-node links
 *   consent_p2p_connections_total{direction="in"|"out"}
 *                                       counter TCP connections accepted / dialled
 *   consent_p2p_dial_failures_total     counter dials whose resolve or connect failed
 *   consent_p2p_connections_refused_total
 *                                       counter inbound links refused at the pending limit
 *   consent_p2p_handshake_failures_total
 *                                       counter TLS failed, Hello refused or timed out
 *   consent_p2p_dropped_frames_total    counter frames oversized, malformed or not allowed
 *                                               (each drops its link)
 *   consent_p2p_send_queue_overflows_total
 *                                       counter links dropped for a full send queue
 *   consent_p2p_gossip_received_total   counter gossiped transactions received
 *   consent_p2p_gossip_duplicates_total counter gossiped transactions already seen
 *   consent_p2p_gossip_relayed_total    counter gossiped transactions passed on (per link)
 *   consent_p2p_blocks_served_total     counter blocks sent to syncing peers
 *   consent_p2p_blocks_received_total   counter blocks received by block sync
 *   consent_p2p_block_requests_total{direction="in"|"out"}
 *                                       counter block requests answered / sent
 *   consent_http_requests_total{status} counter HTTP requests answered, by status
 *   consent_http_connections_refused_total
 *                                       counter API connections refused at the limit
 *   consent_block_apply_seconds         histogram time to apply and persist a block
 * The p2p series are 0 when the transport is gone (the node is stopping).
 */
#include <assert.h>
#include <inttypes.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "node/node_int.h"
#include "node/p2p.h"

static const double apply_bounds_s[8] = {0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.5};

void node__metrics_http(node__metrics *m, int status) {
    if (status < NODE_HTTP_STATUS_MIN || status > NODE_HTTP_STATUS_MAX) return;
    m->http_status[status - NODE_HTTP_STATUS_MIN]++;
}

void node__metrics_apply(node__metrics *m, double seconds) {
    m->apply_count++;
    m->apply_sum_s += seconds;
    for (int i = 0; i < 8; i++)
        if (seconds <= apply_bounds_s[i]) m->apply_buckets[i]++;
}

typedef struct {
    char *buf;
    size_t len, cap;
    int failed;
} sbuf;

static void sb_printf(sbuf *b, const char *fmt, ...) NODE_PRINTF(2, 3);
static void sb_printf(sbuf *b, const char *fmt, ...) {
    if (b->failed) return;
    for (int attempt = 0; attempt < 2; attempt++) {
        va_list ap;
        va_start(ap, fmt);
        int n = vsnprintf(b->buf + b->len, b->cap - b->len, fmt, ap);
        va_end(ap);
        if (n < 0) break;
        if ((size_t)n < b->cap - b->len) {
            b->len += (size_t)n;
            return;
        }
        size_t cap = b->cap * 2 + (size_t)n + 1;
        char *nb = realloc(b->buf, cap);
        if (!nb) break;
        b->buf = nb;
        b->cap = cap;
    }
    b->failed = 1;
}

static void counter(sbuf *b, const char *name, const char *help, uint64_t v) {
    sb_printf(b, "# HELP %s %s\n# TYPE %s counter\n%s %" PRIu64 "\n", name, help, name, name, v);
}

static void gauge(sbuf *b, const char *name, const char *help, uint64_t v) {
    sb_printf(b, "# HELP %s %s\n# TYPE %s gauge\n%s %" PRIu64 "\n", name, help, name, name, v);
}

static void render_http(sbuf *b, const node__metrics *m) {
    sb_printf(b, "# HELP consent_http_requests_total HTTP requests answered, by status.\n"
                 "# TYPE consent_http_requests_total counter\n");
    for (int s = NODE_HTTP_STATUS_MIN; s <= NODE_HTTP_STATUS_MAX; s++) {
        uint64_t v = m->http_status[s - NODE_HTTP_STATUS_MIN];
        if (v) sb_printf(b, "consent_http_requests_total{status=\"%d\"} %" PRIu64 "\n", s, v);
    }
    counter(b, "consent_http_connections_refused_total",
            "API connections refused at the connection limit.", m->http_conns_refused);
}

static void labelled2(sbuf *b, const char *name, const char *help, const char *label,
                      const char *v1, uint64_t n1, const char *v2, uint64_t n2) {
    sb_printf(b, "# HELP %s %s\n# TYPE %s counter\n%s{%s=\"%s\"} %" PRIu64 "\n%s{%s=\"%s\"} %" PRIu64 "\n",
              name, help, name, name, label, v1, n1, name, label, v2, n2);
}

static void render_p2p(sbuf *b, const node *n) {
    node_p2p_stats s;
    memset(&s, 0, sizeof(s));
    const node_p2p *p = node__get_p2p(n);
    if (p) node_p2p_stats_get(p, &s);
    gauge(b, "consent_p2p_validators_connected", "Authenticated validator links.", s.validators_up);
    gauge(b, "consent_p2p_full_nodes_connected", "Authenticated full-node links.", s.full_nodes_up);
    labelled2(b, "consent_p2p_connections_total", "TCP connections accepted (in) or dialled (out).",
              "direction", "in", s.conns_in, "out", s.conns_out);
    counter(b, "consent_p2p_dial_failures_total", "Dials whose resolve or connect failed.",
            s.dial_failures);
    counter(b, "consent_p2p_connections_refused_total",
            "Inbound links refused at the limit of unauthenticated links.", s.conns_refused);
    counter(b, "consent_p2p_handshake_failures_total", "TLS failed, Hello refused or timed out.",
            s.handshake_failures);
    counter(b, "consent_p2p_dropped_frames_total",
            "Frames oversized, malformed or not allowed (each drops its link).", s.dropped_frames);
    counter(b, "consent_p2p_send_queue_overflows_total", "Links dropped for a full send queue.",
            s.send_overflows);
    counter(b, "consent_p2p_gossip_received_total", "Gossiped transactions received.", s.txs_in);
    counter(b, "consent_p2p_gossip_duplicates_total", "Gossiped transactions already seen.",
            s.tx_dups);
    counter(b, "consent_p2p_gossip_relayed_total", "Gossiped transactions passed on, per link.",
            s.txs_relayed);
    counter(b, "consent_p2p_blocks_served_total", "Blocks sent to syncing peers.", s.blocks_served);
    counter(b, "consent_p2p_blocks_received_total", "Blocks received by block sync.",
            s.blocks_received);
    labelled2(b, "consent_p2p_block_requests_total", "Block requests answered (in) or sent (out).",
              "direction", "in", s.block_requests_in, "out", s.block_requests_out);
}

static void render_apply(sbuf *b, const node__metrics *m) {
    sb_printf(b, "# HELP consent_block_apply_seconds Time to apply and persist a committed block.\n"
                 "# TYPE consent_block_apply_seconds histogram\n");
    for (int i = 0; i < 8; i++)
        sb_printf(b, "consent_block_apply_seconds_bucket{le=\"%g\"} %" PRIu64 "\n",
                  apply_bounds_s[i], m->apply_buckets[i]);
    sb_printf(b, "consent_block_apply_seconds_bucket{le=\"+Inf\"} %" PRIu64 "\n", m->apply_count);
    sb_printf(b, "consent_block_apply_seconds_sum %.6f\n", m->apply_sum_s);
    sb_printf(b, "consent_block_apply_seconds_count %" PRIu64 "\n", m->apply_count);
}

char *node__metrics_render(const node *n, const node__metrics *m, size_t *len_out) {
    sbuf b = {malloc(4096), 0, 4096, 0};
    if (!b.buf) return NULL;
    node__status st;
    node__get_status(n, &st);
    uint32_t peers[CHAIN_VALIDATORS_MAX];
    gauge(&b, "consent_height", "Height of the last committed block.", st.height);
    gauge(&b, "consent_view", "Current consensus view.", st.view);
    gauge(&b, "consent_mempool_size", "Transactions waiting in the mempool.",
          node__mempool_size(node__get_mempool(n)));
    gauge(&b, "consent_peers", "Connected validator peers.",
          node__peers(n, peers, CHAIN_VALIDATORS_MAX));
    gauge(&b, "consent_http_connections", "Open API connections.",
          node__http_conns(node__get_http(n)));
    gauge(&b, "consent_event_streams", "Open /v1/events streams.",
          node__http_streams(node__get_http(n)));
    counter(&b, "consent_txs_admitted_total", "Transactions admitted to the mempool.",
            m->txs_admitted);
    counter(&b, "consent_txs_committed_total", "Transactions committed in blocks.",
            m->txs_committed);
    counter(&b, "consent_txs_rejected_total", "Admitted transactions dropped because they no longer apply to state.",
            m->txs_rejected);
    counter(&b, "consent_blocks_committed_total", "Blocks applied here, by consensus or block sync.",
            m->blocks_committed);
    counter(&b, "consent_commits_total", "Blocks committed by this node's replica.",
            m->blocks_consensus);
    counter(&b, "consent_blocks_synced_total", "Blocks applied from block sync.", m->blocks_synced);
    counter(&b, "consent_blocks_proposed_total", "Blocks this node proposed as primary.",
            m->blocks_proposed);
    counter(&b, "consent_view_changes_total", "View changes seen by the replica.",
            st.view_changes);
    counter(&b, "consent_dropped_messages_total", "Consensus messages refused by the replica.",
            st.dropped);
    counter(&b, "consent_persists_total", "Replica state persisted before sending.",
            m->persist_count);
    chain_store_stats ss;
    if (chain_store_stats_get(node_store(n), &ss) != 0) memset(&ss, 0, sizeof(ss));
    gauge(&b, "consent_store_compaction_pending_bytes",
          "RocksDB's estimate of the bytes its compactions still have to rewrite.",
          ss.compaction_pending_bytes);
    gauge(&b, "consent_store_compactions_running", "RocksDB compactions running now.",
          ss.compactions_running);
    gauge(&b, "consent_store_flushes_running", "RocksDB memtable flushes running now.",
          ss.flushes_running);
    gauge(&b, "consent_store_sst_bytes", "Bytes in the store's live table files.", ss.sst_bytes);
    render_p2p(&b, n);
    render_http(&b, m);
    render_apply(&b, m);
    if (b.failed) {
        free(b.buf);
        return NULL;
    }
    assert(b.len < b.cap);
    *len_out = b.len;
    return b.buf;
}
