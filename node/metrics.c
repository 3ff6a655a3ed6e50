/* metrics.c — Prometheus text exposition of the node's counters.
 *
 * Counters live in a plain struct owned by the node (node__metrics) and are
 * bumped on the loop thread; rendering reads them plus live values (height,
 * view, mempool size) when GET /metrics asks. Block apply latency is a
 * histogram with fixed buckets so scrapes can compute quantiles.
 */
#include <assert.h>
#include <inttypes.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "node/node_int.h"

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
    counter(&b, "consent_txs_rejected_total", "Transactions refused at admission or in a block.",
            m->txs_rejected);
    counter(&b, "consent_blocks_committed_total", "Blocks committed by this node.",
            m->blocks_committed);
    counter(&b, "consent_blocks_proposed_total", "Blocks this node proposed as primary.",
            m->blocks_proposed);
    counter(&b, "consent_commits_total", "Consensus commits applied.", m->blocks_committed);
    counter(&b, "consent_view_changes_total", "View changes seen by the replica.",
            st.view_changes);
    counter(&b, "consent_dropped_messages_total", "Consensus messages refused by the replica.",
            st.dropped);
    counter(&b, "consent_persists_total", "Replica state persisted before sending.",
            m->persist_count);
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
