/* test_p2p.c — the peer transport (node/p2p*.c) on real sockets.
 *
 * Several transports share one libuv loop in this process and talk over
 * 127.0.0.1 with real TLS. Waiting is always "run the loop until a
 * condition holds or a deadline passes" (a 5 ms tick keeps the loop from
 * blocking); nothing sleeps. Each test ends by closing every transport and
 * the loop, so leaked handles fail the test (uv_loop_close != 0).
 */
#include <check.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "node/p2p.h"
#include "proto/p2p.pb-c.h"

#include <openssl/err.h>

#define NMAX 8
#define WAIT_MS 10000

typedef struct tnet tnet;

typedef struct {
    tnet *net;
    int slot;
    chain_key *key;          /* owned; NULL for a full node */
    node_p2p *p;
    int open;
    int ups, downs;
    uint32_t up_mask;        /* validator peers up now */
    int n_cons;
    uint32_t cons_from;
    uint8_t cons[256];
    size_t cons_len;
    int n_tx;
    int accept_tx;
    uint64_t serve_height;   /* get_block answers "block-<h>" up to this */
    int apply;               /* on_blocks advances our height (2: block by block) */
    int n_blocks;
    uint64_t got[256];
    int got_ok;              /* every block had the expected bytes */
    node_p2p_hello recorded; /* hello hook: recorded or replayed */
    int have_recorded;
    int replay;
} tnode;

struct tnet {
    uv_loop_t loop;
    uv_timer_t tick;
    chain_genesis *g;
    tnode n[NMAX];
    int closing;
    node_logger log;
    FILE *logf;
};

/* ------------------------------------------------------------------ callbacks */
static void on_consensus(void *arg, uint32_t from, const uint8_t *msg, size_t len) {
    tnode *t = arg;
    t->n_cons++;
    t->cons_from = from;
    t->cons_len = len < sizeof t->cons ? len : sizeof t->cons;
    memcpy(t->cons, msg, t->cons_len);
}

static int on_tx(void *arg, uint32_t from, const uint8_t *tx, size_t len) {
    tnode *t = arg;
    (void)from;
    (void)tx;
    (void)len;
    t->n_tx++;
    return t->accept_tx;
}

static int get_block(void *arg, uint64_t h, uint8_t **out, size_t *len) {
    tnode *t = arg;
    if (h == 0 || h > t->serve_height) return -1;
    char buf[32];
    int n = snprintf(buf, sizeof buf, "block-%llu", (unsigned long long)h);
    *out = malloc((size_t)n);
    memcpy(*out, buf, (size_t)n);
    *len = (size_t)n;
    return 0;
}

static void on_blocks(void *arg, uint32_t from, uint64_t from_height, const uint8_t *const *blocks,
                      const size_t *lens, size_t n) {
    tnode *t = arg;
    (void)from;
    for (size_t i = 0; i < n; i++) {
        char want[32];
        int wn = snprintf(want, sizeof want, "block-%llu", (unsigned long long)(from_height + i));
        if ((size_t)wn != lens[i] || memcmp(want, blocks[i], lens[i]) != 0) t->got_ok = 0;
        if (t->n_blocks < 256) t->got[t->n_blocks++] = from_height + i;
    }
    if (t->apply == 1) node_p2p_set_height(t->p, from_height + n - 1);
    /* apply == 2: like the node, announce each block's height as it lands. */
    for (size_t i = 0; t->apply == 2 && i < n; i++) node_p2p_set_height(t->p, from_height + i);
}

static void on_peer(void *arg, uint32_t peer, int up) {
    tnode *t = arg;
    if (up) t->ups++;
    else t->downs++;
    if (peer < 32) {
        if (up) t->up_mask |= 1u << peer;
        else t->up_mask &= ~(1u << peer);
    }
}

static void hello_hook(void *arg, node_p2p_hello *h) {
    tnode *t = arg;
    if (t->replay && t->have_recorded) {
        *h = t->recorded;
        return;
    }
    t->recorded = *h;
    t->have_recorded = 1;
}

/* ------------------------------------------------------------------ harness */
static void tick_cb(uv_timer_t *t) { (void)t; }

static tnet *net_new(uint32_t n_validators) {
    tnet *net = calloc(1, sizeof *net);
    ck_assert_ptr_nonnull(net);
    ck_assert_int_eq(uv_loop_init(&net->loop), 0);
    uv_timer_init(&net->loop, &net->tick);
    net->g = calloc(1, sizeof *net->g);
    ck_assert_ptr_nonnull(net->g);
    snprintf(net->g->chain_id, sizeof net->g->chain_id, "p2p-test");
    net->g->n_validators = n_validators;
    net->g->n_institutions = n_validators;
    for (uint32_t i = 0; i < n_validators; i++) {
        tnode *t = &net->n[i];
        t->key = chain_key_create(NULL);
        ck_assert_ptr_nonnull(t->key);
        chain_key_pubkey(t->key, &net->g->institutions[i].key);
        snprintf(net->g->institutions[i].name, sizeof net->g->institutions[i].name, "v%u", i);
        net->g->institutions[i].roles = CHAIN_ROLE_VALIDATOR;
    }
    net->logf = tmpfile();
    ck_assert_ptr_nonnull(net->logf);
    net->log.level = NODE_LOG_WARN;
    net->log.out = net->logf;
    return net;
}

static node_p2p_config node_cfg(tnet *net, tnode *t, const char *listen, int accept_full) {
    node_p2p_config c;
    memset(&c, 0, sizeof c);
    c.loop = &net->loop;
    c.genesis = net->g;
    c.key = t->key;
    c.listen_addr = listen;
    c.accept_full_nodes = accept_full;
    c.log = &net->log;
    c.cb.on_consensus = on_consensus;
    c.cb.on_tx = on_tx;
    c.cb.get_block = get_block;
    c.cb.on_blocks = on_blocks;
    c.cb.on_peer = on_peer;
    c.arg = t;
    return c;
}

/* Starts transport `slot`. A validator slot listens and publishes its
 * port in genesis (dials start on the next loop turn, after every node in
 * the test has been started). port 0 picks a free port. */
static void start_cfg(tnet *net, int slot, node_p2p_config *c, int port) {
    tnode *t = &net->n[slot];
    char listen[32];
    snprintf(listen, sizeof listen, "127.0.0.1:%d", port);
    if (slot < (int)net->g->n_validators) c->listen_addr = listen;
    t->net = net;
    t->slot = slot;
    t->accept_tx = 1;
    t->got_ok = 1;
    t->up_mask = 0;
    ck_assert_int_eq(node_p2p_create(&t->p, c), 0);
    ck_assert_int_eq(node_p2p_start(t->p), 0);
    t->open = 1;
    if (slot < (int)net->g->n_validators) {
        int got = node_p2p_listen_port(t->p);
        ck_assert_int_gt(got, 0);
        snprintf(net->g->institutions[slot].p2p_addr, sizeof net->g->institutions[slot].p2p_addr,
                 "127.0.0.1:%d", got);
    }
}

static void start(tnet *net, int slot, int accept_full) {
    node_p2p_config c = node_cfg(net, &net->n[slot], NULL, accept_full);
    start_cfg(net, slot, &c, 0);
}

typedef int (*pred_fn)(tnet *net, const void *arg);

static int run_until(tnet *net, pred_fn pred, const void *arg, uint64_t ms) {
    uv_update_time(&net->loop);
    uint64_t deadline = uv_now(&net->loop) + ms;
    uv_timer_start(&net->tick, tick_cb, 5, 5);
    int ok = pred(net, arg);
    while (!ok && uv_now(&net->loop) < deadline) {
        uv_run(&net->loop, UV_RUN_ONCE);
        ok = pred(net, arg);
    }
    uv_timer_stop(&net->tick);
    return ok;
}

static int never(tnet *net, const void *arg) {
    (void)net;
    (void)arg;
    return 0;
}

/* Runs the loop for ms regardless (to see that nothing more happens). */
static void run_for(tnet *net, uint64_t ms) { (void)run_until(net, never, NULL, ms); }

static void closed_cb(void *arg) { ((tnode *)arg)->open = 0; }

static int is_closed(tnet *net, const void *arg) {
    (void)net;
    return !((const tnode *)arg)->open;
}

static void stop_node(tnet *net, int slot) {
    tnode *t = &net->n[slot];
    ck_assert(t->open);
    node_p2p_close(t->p, closed_cb, t);
    ck_assert(run_until(net, is_closed, t, WAIT_MS));
    t->p = NULL;
}

static void net_free(tnet *net) {
    for (int i = 0; i < NMAX; i++)
        if (net->n[i].open) stop_node(net, i);
    uv_close((uv_handle_t *)&net->tick, NULL);
    uv_run(&net->loop, UV_RUN_DEFAULT);
    ck_assert_int_eq(uv_loop_close(&net->loop), 0);   /* nothing leaked */
    for (int i = 0; i < NMAX; i++) chain_key_destroy(net->n[i].key);
    fclose(net->logf);
    free(net->g);
    free(net);
}

static int log_has(tnet *net, const char *needle) {
    char line[1200];
    int found = 0;
    fflush(net->logf);
    rewind(net->logf);
    while (!found && fgets(line, sizeof line, net->logf)) found = strstr(line, needle) != NULL;
    fseek(net->logf, 0, SEEK_END);
    return found;
}

static node_p2p_stats stats(tnet *net, int slot) {
    node_p2p_stats s;
    node_p2p_stats_get(net->n[slot].p, &s);
    return s;
}

/* Predicates. */
static int all_connected(tnet *net, const void *arg) {
    int n = *(const int *)arg;
    for (int i = 0; i < n; i++) {
        uint32_t peers[NMAX];
        if (!net->n[i].open || node_p2p_peers(net->n[i].p, peers, NMAX) != (size_t)(n - 1)) return 0;
    }
    return 1;
}

static void connect_all(tnet *net, int n) {
    ck_assert_msg(run_until(net, all_connected, &n, WAIT_MS), "validators did not connect");
}

static int failures_at_least(tnet *net, const void *arg) {
    const int *a = arg;   /* slot, count */
    return net->n[a[0]].open && stats(net, a[0]).handshake_failures >= (uint64_t)a[1];
}

static int drops_at_least(tnet *net, const void *arg) {
    const int *a = arg;
    return stats(net, a[0]).dropped_frames >= (uint64_t)a[1];
}

/* n_cons of validators 0..3 equal the four ints. */
static int cons_counts(tnet *net, const void *arg) {
    const int *want = arg;
    for (int i = 0; i < 4; i++)
        if (net->n[i].n_cons != want[i]) return 0;
    return 1;
}

/* Validator a[0] serves a full node and full node a[1] sees it up. */
static int full_node_up(tnet *net, const void *arg) {
    const int *a = arg;
    return stats(net, a[0]).full_nodes_up == 1 && (net->n[a[1]].up_mask & (1u << a[0])) != 0;
}

/* A statistic of one transport reaching a value: WANT(slot, field, min). */
typedef struct {
    int slot;
    size_t off, size;   /* a uint64_t or uint32_t field */
    uint64_t min;
} stat_want;
#define WANT(slot, field, min)                                                                   \
    (&(stat_want){(slot), offsetof(node_p2p_stats, field), sizeof(((node_p2p_stats *)0)->field), \
                  (min)})

static int stat_at_least(tnet *net, const void *arg) {
    const stat_want *w = arg;
    if (!net->n[w->slot].open) return 0;
    node_p2p_stats s = stats(net, w->slot);
    uint64_t v;
    if (w->size == sizeof(uint32_t)) {
        uint32_t v32;
        memcpy(&v32, (const char *)&s + w->off, sizeof v32);
        v = v32;
    } else {
        ck_assert_uint_eq(w->size, sizeof v);
        memcpy(&v, (const char *)&s + w->off, sizeof v);
    }
    return v >= w->min;
}

static int blocks_at_least(tnet *net, const void *arg) {
    const int *a = arg;   /* slot, count */
    return net->n[a[0]].n_blocks >= a[1];
}

static int peer_down(tnet *net, const void *arg) {
    const int *a = arg;   /* slot, peer */
    return (net->n[a[0]].up_mask & (1u << a[1])) == 0;
}

/* ------------------------------------------------------------------ wire */
/* Packs a hand-made envelope and decodes it: 0 or the decoder's error. */
static int decode_env(const Consent__P2pEnvelope *e) {
    uint8_t buf[8192];
    size_t n = consent__p2p_envelope__get_packed_size(e);
    ck_assert_uint_le(n, sizeof buf);
    consent__p2p_envelope__pack(e, buf);
    node__p2p_msg m;
    int rc = node__p2p_decode(&m, buf, n);
    if (rc == 0) node__p2p_msg_free(&m);
    return rc;
}

START_TEST(test_wire_roundtrip) {
    node__p2p_msg m;
    uint8_t *f;
    size_t len;
    node_p2p_hello h;
    memset(&h, 0, sizeof h);
    strcpy(h.chain_id, "c1");
    h.role = NODE_P2P_ROLE_FULL_NODE;
    memset(h.key.b, 7, sizeof h.key.b);
    memset(h.sig.b, 9, sizeof h.sig.b);
    ck_assert_int_eq(node__p2p_enc_hello(&f, &len, &h), 0);
    ck_assert_uint_eq((size_t)f[0] << 24 | f[1] << 16 | f[2] << 8 | f[3], len - 4);
    ck_assert_int_eq(node__p2p_decode(&m, f + 4, len - 4), 0);
    ck_assert_int_eq(m.type, NODE__P2P_MSG_HELLO);
    ck_assert_str_eq(m.hello.chain_id, "c1");
    ck_assert_int_eq(m.hello.role, NODE_P2P_ROLE_FULL_NODE);
    ck_assert_mem_eq(m.hello.sig.b, h.sig.b, CHAIN_SIG_LEN);
    node__p2p_msg_free(&m);
    free(f);

    const uint8_t *blocks[2] = {(const uint8_t *)"aa", (const uint8_t *)"bbb"};
    size_t lens[2] = {2, 3};
    ck_assert_int_eq(node__p2p_enc_response(&f, &len, 5, blocks, lens, 2), 0);
    ck_assert_int_eq(node__p2p_decode(&m, f + 4, len - 4), 0);
    ck_assert_int_eq(m.type, NODE__P2P_MSG_BLOCK_RESPONSE);
    ck_assert_uint_eq(m.height, 5);
    ck_assert_uint_eq(m.n_blocks, 2);
    ck_assert_mem_eq(m.blocks[1], "bbb", 3);
    node__p2p_msg_free(&m);
    free(f);

    ck_assert_int_eq(node__p2p_enc_request(&f, &len, 3, 4), 0);
    ck_assert_int_eq(node__p2p_decode(&m, f + 4, len - 4), 0);
    ck_assert_int_eq(m.type, NODE__P2P_MSG_BLOCK_REQUEST);
    ck_assert_uint_eq(m.count, 4);
    node__p2p_msg_free(&m);
    free(f);

    ck_assert_int_eq(node__p2p_enc_status(&f, &len, 42), 0);
    ck_assert_int_eq(node__p2p_decode(&m, f + 4, len - 4), 0);
    ck_assert_uint_eq(m.height, 42);
    node__p2p_msg_free(&m);
    free(f);

    ck_assert_int_eq(node__p2p_enc_bytes(&f, &len, NODE__P2P_MSG_TX, (const uint8_t *)"tx", 2), 0);
    ck_assert_int_eq(node__p2p_decode(&m, f + 4, len - 4), 0);
    ck_assert_int_eq(m.type, NODE__P2P_MSG_TX);
    ck_assert_mem_eq(m.data, "tx", 2);
    node__p2p_msg_free(&m);
    free(f);
}
END_TEST

START_TEST(test_wire_refuses_bad_input) {
    node__p2p_msg m;
    uint8_t *f;
    size_t len;
    static const uint8_t garbage[] = {0xff, 0xff, 0xff};
    ck_assert_int_eq(node__p2p_decode(&m, garbage, sizeof garbage), NODE_EINVAL);
    static const uint8_t empty_env[] = {0x08, 0x01};   /* field 1 as varint: wrong wire type */
    ck_assert_int_eq(node__p2p_decode(&m, empty_env, sizeof empty_env), NODE_EINVAL);
    ck_assert_int_eq(node__p2p_decode(&m, garbage, 0), NODE_EINVAL);
    /* Bounds: zero count, too many blocks, oversized tx, empty payloads. */
    ck_assert_int_eq(node__p2p_enc_request(&f, &len, 1, 0), 0);
    ck_assert_int_eq(node__p2p_decode(&m, f + 4, len - 4), NODE_EINVAL);
    free(f);
    ck_assert_int_eq(node__p2p_enc_request(&f, &len, 1, NODE_P2P_SYNC_BLOCKS_MAX + 1), 0);
    ck_assert_int_eq(node__p2p_decode(&m, f + 4, len - 4), NODE_EINVAL);
    free(f);
    ck_assert_int_eq(node__p2p_enc_request(&f, &len, 0, 1), 0);
    ck_assert_int_eq(node__p2p_decode(&m, f + 4, len - 4), NODE_EINVAL);
    free(f);
    static uint8_t big[CHAIN_TX_BYTES_MAX + 1];
    ck_assert_int_eq(node__p2p_enc_bytes(&f, &len, NODE__P2P_MSG_TX, big, sizeof big), NODE_EINVAL);
    ck_assert_int_eq(node__p2p_enc_bytes(&f, &len, NODE__P2P_MSG_CONSENSUS, big, 0), NODE_EINVAL);
    /* Messages valid for protobuf but outside our bounds. */
    Consent__P2pHello hello = CONSENT__P2P_HELLO__INIT;
    uint8_t key[CHAIN_KEY_LEN] = {0}, sig[CHAIN_SIG_LEN] = {0};
    hello.chain_id = "c1";
    hello.role = CONSENT__P2P_ROLE__P2P_ROLE_VALIDATOR;
    hello.pubkey = (ProtobufCBinaryData){CHAIN_KEY_LEN, key};
    hello.signature = (ProtobufCBinaryData){CHAIN_SIG_LEN, sig};
    Consent__P2pEnvelope env = CONSENT__P2P_ENVELOPE__INIT;
    env.msg_case = CONSENT__P2P_ENVELOPE__MSG_HELLO;
    env.hello = &hello;
    ck_assert_int_eq(decode_env(&env), 0);
    hello.pubkey.len = CHAIN_KEY_LEN - 1;
    ck_assert_int_eq(decode_env(&env), NODE_EINVAL);
    hello.pubkey.len = CHAIN_KEY_LEN;
    hello.role = CONSENT__P2P_ROLE__P2P_ROLE_UNSPECIFIED;
    ck_assert_int_eq(decode_env(&env), NODE_EINVAL);
    hello.role = CONSENT__P2P_ROLE__P2P_ROLE_FULL_NODE;
    hello.chain_id = "a-chain-id-that-is-longer-than-32-chars";
    ck_assert_int_eq(decode_env(&env), NODE_EINVAL);
    hello.chain_id = "";
    ck_assert_int_eq(decode_env(&env), NODE_EINVAL);
    hello.chain_id = "c1";
    hello.signature.len = 0;
    ck_assert_int_eq(decode_env(&env), NODE_EINVAL);

    ProtobufCBinaryData blocks[NODE_P2P_SYNC_BLOCKS_MAX + 1];
    for (size_t i = 0; i <= NODE_P2P_SYNC_BLOCKS_MAX; i++) blocks[i] = (ProtobufCBinaryData){1, key};
    Consent__P2pBlockResponse resp = CONSENT__P2P_BLOCK_RESPONSE__INIT;
    resp.from_height = 1;
    resp.blocks = blocks;
    resp.n_blocks = NODE_P2P_SYNC_BLOCKS_MAX;
    env.msg_case = CONSENT__P2P_ENVELOPE__MSG_BLOCK_RESPONSE;
    env.block_response = &resp;
    ck_assert_int_eq(decode_env(&env), 0);
    resp.n_blocks = NODE_P2P_SYNC_BLOCKS_MAX + 1;
    ck_assert_int_eq(decode_env(&env), NODE_EINVAL);
    resp.n_blocks = 1;
    blocks[0].len = 0;   /* an empty block */
    ck_assert_int_eq(decode_env(&env), NODE_EINVAL);

    env.msg_case = CONSENT__P2P_ENVELOPE__MSG_TX;
    env.tx = (ProtobufCBinaryData){0, NULL};
    ck_assert_int_eq(decode_env(&env), NODE_EINVAL);
    Consent__P2pEnvelope none = CONSENT__P2P_ENVELOPE__INIT;   /* no message set */
    ck_assert_int_eq(decode_env(&none), NODE_EINVAL);
}
END_TEST

START_TEST(test_seen_set_dedups_and_forgets) {
    node__p2p_seen s;
    ck_assert_int_eq(node__p2p_seen_init(&s), 0);
    chain_hash h;
    memset(&h, 0, sizeof h);
    ck_assert_int_eq(node__p2p_seen_add(&s, &h), 1);
    ck_assert_int_eq(node__p2p_seen_add(&s, &h), 0);
    ck_assert(node__p2p_seen_has(&s, &h));
    /* Two full generations later the first hash is forgotten. */
    for (uint32_t i = 1; i <= 2 * NODE_P2P_SEEN_MAX; i++) {
        chain_hash x;
        chain_sha256(&x, &i, sizeof i);
        ck_assert_int_eq(node__p2p_seen_add(&s, &x), 1);
    }
    ck_assert(!node__p2p_seen_has(&s, &h));
    uint32_t last = 2 * NODE_P2P_SEEN_MAX;
    chain_hash x;
    chain_sha256(&x, &last, sizeof last);
    ck_assert(node__p2p_seen_has(&s, &x));
    node__p2p_seen_free(&s);
}
END_TEST

START_TEST(test_hello_sighash_binds_session_and_side) {
    uint8_t e1[NODE_P2P_EXPORTER_LEN], e2[NODE_P2P_EXPORTER_LEN];
    memset(e1, 1, sizeof e1);
    memset(e2, 2, sizeof e2);
    chain_hash a, b, c, d;
    node__p2p_hello_sighash(&a, "chain", e1, 1);
    node__p2p_hello_sighash(&b, "chain", e2, 1);
    node__p2p_hello_sighash(&c, "chain", e1, 0);
    node__p2p_hello_sighash(&d, "chaim", e1, 1);
    ck_assert_mem_ne(a.b, b.b, CHAIN_HASH_LEN);
    ck_assert_mem_ne(a.b, c.b, CHAIN_HASH_LEN);
    ck_assert_mem_ne(a.b, d.b, CHAIN_HASH_LEN);
}
END_TEST

/* ------------------------------------------------------------------ links */
START_TEST(test_four_validators_all_to_all) {
    tnet *net = net_new(4);
    for (int i = 0; i < 4; i++) start(net, i, 0);
    connect_all(net, 4);
    for (int i = 0; i < 4; i++) {
        ck_assert_int_eq(net->n[i].ups, 3);
        ck_assert_uint_eq(net->n[i].up_mask, 0xfu & ~(1u << i));
        ck_assert_uint_eq(stats(net, i).handshake_failures, 0);
        ck_assert_uint_eq(stats(net, i).validators_up, 3);
    }
    /* Exactly one link per pair: 0 dialled 3 links, 3 accepted 3. */
    ck_assert_uint_eq(stats(net, 0).conns_out, 3);
    ck_assert_uint_eq(stats(net, 0).conns_in, 0);
    ck_assert_uint_eq(stats(net, 3).conns_in, 3);
    ck_assert_uint_eq(stats(net, 3).conns_out, 0);

    /* Point to point, both directions of a link. */
    ck_assert_int_eq(node_p2p_send_consensus(net->n[0].p, 2, (const uint8_t *)"prepare", 7), 0);
    ck_assert_int_eq(node_p2p_send_consensus(net->n[3].p, 1, (const uint8_t *)"commit", 6), 0);
    int want1[] = {0, 1, 1, 0};
    ck_assert(run_until(net, cons_counts, want1, WAIT_MS));
    ck_assert_uint_eq(net->n[2].cons_from, 0);
    ck_assert_mem_eq(net->n[2].cons, "prepare", 7);
    ck_assert_uint_eq(net->n[1].cons_from, 3);
    ck_assert_mem_eq(net->n[1].cons, "commit", 6);

    /* Broadcast reaches every other validator once, tagged with the sender. */
    ck_assert_uint_eq(node_p2p_broadcast_consensus(net->n[1].p, (const uint8_t *)"view", 4), 3);
    int want2[] = {1, 1, 2, 1};
    ck_assert(run_until(net, cons_counts, want2, WAIT_MS));
    ck_assert_uint_eq(net->n[3].cons_from, 1);
    ck_assert_mem_eq(net->n[3].cons, "view", 4);
    run_for(net, 100);
    for (int i = 0; i < 4; i++) ck_assert_int_eq(net->n[i].n_cons, want2[i]);   /* once only */
    net_free(net);
}
END_TEST

static int tx_counts(tnet *net, const void *arg) {
    const int *want = arg;
    for (int i = 0; i < 4; i++)
        if (net->n[i].n_tx != want[i]) return 0;
    return 1;
}

static int dups_at_least(tnet *net, const void *arg) {
    uint64_t dups = 0;
    for (int i = 0; i < 4; i++) dups += stats(net, i).tx_dups;
    return dups >= *(const uint64_t *)arg;
}

START_TEST(test_gossip_reaches_all_once) {
    tnet *net = net_new(4);
    for (int i = 0; i < 4; i++) start(net, i, 0);
    connect_all(net, 4);
    uint8_t tx[100];
    for (size_t i = 0; i < sizeof tx; i++) tx[i] = (uint8_t)i;
    ck_assert_uint_eq(node_p2p_gossip_tx(net->n[1].p, tx, sizeof tx), 3);
    ck_assert_uint_eq(node_p2p_gossip_tx(net->n[1].p, tx, sizeof tx), 0);   /* seen */
    int want[] = {1, 0, 1, 1};
    ck_assert(run_until(net, tx_counts, want, WAIT_MS));
    run_for(net, 200);
    ck_assert(tx_counts(net, want));   /* nothing delivered twice */
    /* 0, 2 and 3 admitted it from a validator, which sent it to every
     * validator already: none passes it on, so no copy arrives twice. */
    uint64_t relayed = 0, in = 0;
    for (int i = 0; i < 4; i++) {
        relayed += stats(net, i).txs_relayed;
        in += stats(net, i).txs_in;
    }
    ck_assert_uint_eq(relayed, 0);
    ck_assert_uint_eq(in, 3);
    ck_assert(!dups_at_least(net, &(uint64_t){1}));

    /* A refused transaction is not passed on either. */
    for (int i = 0; i < 4; i++) net->n[i].accept_tx = 0;
    tx[0] ^= 1;
    ck_assert_uint_eq(node_p2p_gossip_tx(net->n[2].p, tx, sizeof tx), 3);
    int want2[] = {2, 1, 1, 2};
    ck_assert(run_until(net, tx_counts, want2, WAIT_MS));
    run_for(net, 100);
    ck_assert(tx_counts(net, want2));
    relayed = 0;
    for (int i = 0; i < 4; i++) relayed += stats(net, i).txs_relayed;
    ck_assert_uint_eq(relayed, 0);
    /* Oversized or empty transactions are not gossiped. */
    static uint8_t big[CHAIN_TX_BYTES_MAX + 1];
    ck_assert_uint_eq(node_p2p_gossip_tx(net->n[0].p, big, sizeof big), 0);
    ck_assert_uint_eq(node_p2p_gossip_tx(net->n[0].p, tx, 0), 0);
    net_free(net);
}
END_TEST

START_TEST(test_non_validator_key_refused) {
    tnet *net = net_new(2);
    start(net, 0, 1);
    start(net, 1, 1);
    /* Slot 4 holds a key that is not in genesis but claims the validator
     * role: it dials both validators and both refuse it. */
    net->n[4].key = chain_key_create(NULL);
    node_p2p_config c = node_cfg(net, &net->n[4], NULL, 0);
    start_cfg(net, 4, &c, 0);
    ck_assert_int_eq(node_p2p_self_index(net->n[4].p), -1);
    connect_all(net, 2);
    int a0[] = {0, 1}, a1[] = {1, 1};
    ck_assert(run_until(net, failures_at_least, a0, WAIT_MS));
    ck_assert(run_until(net, failures_at_least, a1, WAIT_MS));
    /* (The refused node itself may see a validator up for a moment: it
     * accepted their Hellos before they refused its own.) */
    ck_assert_int_eq(net->n[0].ups, 1);   /* only validator 1 */
    ck_assert_int_eq(net->n[1].ups, 1);
    ck_assert_uint_eq(stats(net, 0).full_nodes_up, 0);
    ck_assert(log_has(net, "key is not a genesis validator"));
    /* The refused node keeps trying, with backoff, and is refused again. */
    int a0b[] = {0, 2};
    ck_assert(run_until(net, failures_at_least, a0b, WAIT_MS));
    ck_assert_int_eq(net->n[0].ups, 1);
    ck_assert_int_eq(net->n[1].ups, 1);
    net_free(net);
}
END_TEST

START_TEST(test_full_node_refused_unless_accepted) {
    tnet *net = net_new(2);
    start(net, 0, 0);   /* refuses full nodes */
    start(net, 1, 1);   /* accepts them */
    node_p2p_config c = node_cfg(net, &net->n[5], NULL, 0);   /* key NULL: full node */
    start_cfg(net, 5, &c, 0);
    connect_all(net, 2);
    int a0[] = {0, 1};
    ck_assert(run_until(net, failures_at_least, a0, WAIT_MS));
    ck_assert(log_has(net, "full nodes are not accepted"));
    int f1[] = {1, 5};
    ck_assert(run_until(net, full_node_up, f1, WAIT_MS));
    ck_assert_uint_eq(stats(net, 0).full_nodes_up, 0);
    /* A full node takes no part in consensus: it cannot send any, and a
     * consensus frame it forges anyway drops its link. */
    ck_assert_int_eq(node_p2p_send_consensus(net->n[5].p, 1, (const uint8_t *)"x", 1), NODE_EINVAL);
    ck_assert_uint_eq(node_p2p_broadcast_consensus(net->n[5].p, (const uint8_t *)"x", 1), 0);
    uint8_t *f;
    size_t len;
    ck_assert_int_eq(node__p2p_enc_bytes(&f, &len, NODE__P2P_MSG_CONSENSUS, (const uint8_t *)"x", 1), 0);
    ck_assert_int_eq(node_p2p_test_send_raw(net->n[5].p, 1, f, len), 0);
    free(f);
    int d1[] = {1, 1};
    ck_assert(run_until(net, drops_at_least, d1, WAIT_MS));
    ck_assert_int_eq(net->n[1].n_cons, 0);
    ck_assert(log_has(net, "consensus message from or to a non-validator"));
    net_free(net);
}
END_TEST

START_TEST(test_replayed_hello_refused) {
    tnet *net = net_new(2);
    start(net, 0, 0);
    node_p2p_test_hello_hook(net->n[0].p, hello_hook, &net->n[0]);   /* records */
    start(net, 1, 0);
    connect_all(net, 2);
    ck_assert(net->n[0].have_recorded);
    stop_node(net, 0);
    int a[] = {1, 0};
    ck_assert(run_until(net, peer_down, a, WAIT_MS));

    /* Validator 0 comes back with its real key but sends the Hello signed
     * in the earlier session: the signature covers that session's exporter,
     * so validator 1 refuses it. */
    net->n[0].replay = 1;
    start(net, 0, 0);
    node_p2p_test_hello_hook(net->n[0].p, hello_hook, &net->n[0]);
    ck_assert(run_until(net, stat_at_least, WANT(1, handshake_failures, 1), WAIT_MS));
    ck_assert_int_eq(net->n[1].ups, 1);   /* only the first session */
    ck_assert(log_has(net, "Hello signature does not match this session"));

    /* Signing afresh, it gets in on its next attempt. */
    net->n[0].replay = 0;
    net->n[0].have_recorded = 0;
    connect_all(net, 2);
    ck_assert_int_eq(net->n[1].ups, 2);
    net_free(net);
}
END_TEST

START_TEST(test_bad_frames_drop_the_link) {
    tnet *net = net_new(2);
    start(net, 0, 0);
    start(net, 1, 0);
    connect_all(net, 2);

    static const uint8_t malformed[] = {0, 0, 0, 3, 0xff, 0xff, 0xff};
    ck_assert_int_eq(node_p2p_test_send_raw(net->n[0].p, 1, malformed, sizeof malformed), 0);
    ck_assert(run_until(net, stat_at_least, WANT(1, dropped_frames, 1), WAIT_MS));
    ck_assert(log_has(net, "malformed frame"));
    ck_assert_int_eq(net->n[1].n_cons, 0);
    connect_all(net, 2);   /* validator 0 redials */

    uint32_t over = NODE_P2P_FRAME_BYTES_MAX + 1;
    uint8_t hdr[4] = {(uint8_t)(over >> 24), (uint8_t)(over >> 16), (uint8_t)(over >> 8), (uint8_t)over};
    ck_assert_int_eq(node_p2p_test_send_raw(net->n[0].p, 1, hdr, sizeof hdr), 0);
    ck_assert(run_until(net, stat_at_least, WANT(1, dropped_frames, 2), WAIT_MS));
    ck_assert(log_has(net, "oversized frame"));
    connect_all(net, 2);

    static const uint8_t empty[] = {0, 0, 0, 0};
    ck_assert_int_eq(node_p2p_test_send_raw(net->n[1].p, 0, empty, sizeof empty), 0);   /* other way */
    ck_assert(run_until(net, stat_at_least, WANT(0, dropped_frames, 1), WAIT_MS));
    ck_assert(log_has(net, "empty frame"));
    connect_all(net, 2);

    /* A second Hello on an authenticated link. */
    node_p2p_hello h;
    memset(&h, 0, sizeof h);
    strcpy(h.chain_id, "p2p-test");
    h.role = NODE_P2P_ROLE_VALIDATOR;
    uint8_t *f;
    size_t len;
    ck_assert_int_eq(node__p2p_enc_hello(&f, &len, &h), 0);
    ck_assert_int_eq(node_p2p_test_send_raw(net->n[0].p, 1, f, len), 0);
    free(f);
    ck_assert(run_until(net, stat_at_least, WANT(1, dropped_frames, 3), WAIT_MS));
    ck_assert(log_has(net, "a second Hello"));
    connect_all(net, 2);

    /* A block response nobody asked for is ignored, not fatal (it may be
     * a late answer after a timeout). */
    int ups = net->n[1].ups;
    ck_assert_int_eq(node__p2p_enc_response(&f, &len, 1, NULL, NULL, 0), 0);
    ck_assert_int_eq(node_p2p_test_send_raw(net->n[0].p, 1, f, len), 0);
    free(f);
    ck_assert(run_until(net, stat_at_least, WANT(1, unsolicited_responses, 1), WAIT_MS));
    ck_assert_uint_eq(stats(net, 1).dropped_frames, 3);
    ck_assert_int_eq(net->n[1].ups, ups);
    ck_assert_uint_eq(net->n[1].up_mask, 1u);
    net_free(net);
}
END_TEST

START_TEST(test_killed_peer_reconnects) {
    tnet *net = net_new(4);
    for (int i = 0; i < 4; i++) start(net, i, 0);
    connect_all(net, 4);
    int port3 = node_p2p_listen_port(net->n[3].p);
    stop_node(net, 3);
    for (int i = 0; i < 3; i++) {
        int a[] = {i, 3};
        ck_assert(run_until(net, peer_down, a, WAIT_MS));
        ck_assert_uint_eq(stats(net, i).validators_up, 2);
    }
    /* While it is away the dialers keep failing (and back off). */
    ck_assert(run_until(net, stat_at_least, WANT(0, dial_failures, 2), WAIT_MS));
    node_p2p_config c = node_cfg(net, &net->n[3], NULL, 0);
    start_cfg(net, 3, &c, port3);
    /* Published by name this time: the dialers resolve it. */
    snprintf(net->g->institutions[3].p2p_addr, sizeof net->g->institutions[3].p2p_addr,
             "localhost:%d", port3);
    connect_all(net, 4);
    for (int i = 0; i < 3; i++) ck_assert_int_eq(net->n[i].ups, 4);

    /* The lowest validator dials everyone: restart it too. */
    stop_node(net, 0);
    for (int i = 1; i < 4; i++) {
        int a[] = {i, 0};
        ck_assert(run_until(net, peer_down, a, WAIT_MS));
    }
    start(net, 0, 0);
    connect_all(net, 4);
    ck_assert_int_eq(node_p2p_send_consensus(net->n[3].p, 0, (const uint8_t *)"again", 5), 0);
    int want[] = {1, 0, 0, 0};
    ck_assert(run_until(net, cons_counts, want, WAIT_MS));
    ck_assert_uint_eq(net->n[0].cons_from, 3);
    net_free(net);
}
END_TEST

static int peer_height_is(tnet *net, const void *arg) {
    const int *a = arg;   /* slot, peer, height */
    return node_p2p_peer_height(net->n[a[0]].p, (uint32_t)a[1]) == (uint64_t)a[2];
}

START_TEST(test_block_request_response) {
    tnet *net = net_new(2);
    start(net, 0, 0);
    start(net, 1, 0);
    net->n[0].serve_height = 3;
    connect_all(net, 2);
    ck_assert_int_eq(node_p2p_request_blocks(net->n[1].p, 1, 1), NODE_EIO);   /* nobody has it yet */
    node_p2p_set_height(net->n[0].p, 3);
    int h[] = {1, 0, 3};
    ck_assert(run_until(net, peer_height_is, h, WAIT_MS));

    ck_assert_int_eq(node_p2p_request_blocks(net->n[1].p, 1, 3), 0);
    ck_assert_int_eq(node_p2p_request_blocks(net->n[1].p, 1, 3), NODE_EFULL);   /* one at a time */
    int b3[] = {1, 3};
    ck_assert(run_until(net, blocks_at_least, b3, WAIT_MS));
    for (int i = 0; i < 3; i++) ck_assert_uint_eq(net->n[1].got[i], (uint64_t)i + 1);
    ck_assert(net->n[1].got_ok);

    /* Fewer than asked when the peer has no more. */
    ck_assert_int_eq(node_p2p_request_blocks(net->n[1].p, 2, 5), 0);
    int b5[] = {1, 5};
    ck_assert(run_until(net, blocks_at_least, b5, WAIT_MS));
    ck_assert_uint_eq(net->n[1].got[3], 2);
    ck_assert_uint_eq(net->n[1].got[4], 3);
    ck_assert(net->n[1].got_ok);

    ck_assert_int_eq(node_p2p_request_blocks(net->n[1].p, 4, 1), NODE_EIO);
    ck_assert_int_eq(node_p2p_request_blocks(net->n[1].p, 1, 0), NODE_EINVAL);
    ck_assert_int_eq(node_p2p_request_blocks(net->n[1].p, 0, 1), NODE_EINVAL);
    ck_assert_int_eq(node_p2p_request_blocks(net->n[1].p, 1, NODE_P2P_SYNC_BLOCKS_MAX + 1), NODE_EINVAL);
    ck_assert_uint_eq(stats(net, 0).block_requests_in, 2);
    ck_assert_uint_eq(stats(net, 0).blocks_served, 5);
    ck_assert_uint_eq(stats(net, 1).blocks_received, 5);
    ck_assert_uint_eq(stats(net, 1).dropped_frames, 0);
    net_free(net);
}
END_TEST

START_TEST(test_full_node_follows_by_status) {
    tnet *net = net_new(4);
    for (int i = 0; i < 4; i++) start(net, i, 1);
    net->n[0].serve_height = 10;
    net->n[2].serve_height = 10;
    node_p2p_config c = node_cfg(net, &net->n[5], NULL, 0);
    start_cfg(net, 5, &c, 0);
    net->n[5].apply = 1;
    connect_all(net, 4);
    node_p2p_set_height(net->n[0].p, 10);
    node_p2p_set_height(net->n[2].p, 10);
    int b10[] = {5, 10};
    ck_assert(run_until(net, blocks_at_least, b10, WAIT_MS));
    ck_assert(net->n[5].got_ok);
    for (int i = 0; i < 10; i++) ck_assert_uint_eq(net->n[5].got[i], (uint64_t)i + 1);
    run_for(net, 100);
    ck_assert_int_eq(net->n[5].n_blocks, 10);   /* caught up: asks no more */
    /* A validator 10 behind (more than the lag) also syncs on status. */
    int v1[] = {1, 10};
    ck_assert(run_until(net, blocks_at_least, v1, WAIT_MS));
    ck_assert(net->n[1].got_ok);
    /* Validators never send consensus or gossip to the full node. */
    ck_assert_uint_eq(node_p2p_broadcast_consensus(net->n[0].p, (const uint8_t *)"pp", 2), 3);
    ck_assert_uint_eq(node_p2p_gossip_tx(net->n[0].p, (const uint8_t *)"tx", 2), 3);
    run_for(net, 100);
    ck_assert_int_eq(net->n[5].n_cons, 0);
    ck_assert_int_eq(net->n[5].n_tx, 0);
    /* But it may relay a transaction to the validators, and each passes
     * what a full node sent on to the three others (the full node may not
     * reach them all); the copies stop there. */
    ck_assert_uint_eq(node_p2p_gossip_tx(net->n[5].p, (const uint8_t *)"tx2", 3), 4);
    int want[] = {1, 2, 2, 2};
    ck_assert(run_until(net, tx_counts, want, WAIT_MS));
    uint64_t twelve = 12;
    ck_assert(run_until(net, dups_at_least, &twelve, WAIT_MS));
    run_for(net, 100);
    ck_assert(tx_counts(net, want));
    for (int i = 0; i < 4; i++) ck_assert_uint_eq(stats(net, i).txs_relayed, 3);
    ck_assert(!dups_at_least(net, &(uint64_t){13}));
    /* A full node hands a pending tx to one validator, which passes it on
     * as it does the full node's gossip. */
    ck_assert_int_eq(node_p2p_send_tx(net->n[5].p, 0, (const uint8_t *)"tx3", 3), 0);
    int want3[] = {2, 3, 3, 3};
    ck_assert(run_until(net, tx_counts, want3, WAIT_MS));
    ck_assert_int_eq(node_p2p_send_tx(net->n[5].p, 4, (const uint8_t *)"tx3", 3), NODE_EINVAL);
    net_free(net);
}
END_TEST

START_TEST(test_fetch_syncs_a_validator_below_the_lag) {
    tnet *net = net_new(2);
    start(net, 0, 0);
    start(net, 1, 0);
    net->n[0].serve_height = 2;
    net->n[1].apply = 1;
    connect_all(net, 2);
    node_p2p_set_height(net->n[0].p, 2);
    int h[] = {1, 0, 2};
    ck_assert(run_until(net, peer_height_is, h, WAIT_MS));
    run_for(net, 50);
    ck_assert_int_eq(net->n[1].n_blocks, 0);   /* 2 behind: consensus will commit them */
    node_p2p_fetch(net->n[1].p, 2);            /* consensus says we are behind */
    int b2[] = {1, 2};
    ck_assert(run_until(net, blocks_at_least, b2, WAIT_MS));
    ck_assert(net->n[1].got_ok);
    net_free(net);
}
END_TEST

/* A validator 1..3 behind with no traffic (it missed the blocks' consensus
 * messages, say while restarting) is not left to a view timeout: once its
 * height has stood still for NODE_P2P_SYNC_STUCK_MS with a peer ahead, it
 * syncs by itself, up to that peer's height. */
START_TEST(test_stuck_validator_below_the_lag_syncs) {
    tnet *net = net_new(4);
    for (int i = 0; i < 4; i++) start(net, i, 0);
    for (int i = 0; i < 3; i++) net->n[i].serve_height = 3;
    net->n[3].apply = 1;
    connect_all(net, 4);
    for (int i = 0; i < 3; i++) node_p2p_set_height(net->n[i].p, 3);
    int h[] = {3, 0, 3};
    ck_assert(run_until(net, peer_height_is, h, WAIT_MS));
    run_for(net, 50);
    ck_assert_int_eq(net->n[3].n_blocks, 0);   /* at first consensus gets its chance */
    uv_update_time(&net->loop);
    uint64_t t0 = uv_now(&net->loop);
    int b3[] = {3, 3};
    /* Well under any view timeout. */
    ck_assert(run_until(net, blocks_at_least, b3, 4 * NODE_P2P_SYNC_STUCK_MS));
    ck_assert_uint_ge(uv_now(&net->loop) - t0, NODE_P2P_SYNC_STUCK_MS / 2);
    for (int i = 0; i < 3; i++) ck_assert_uint_eq(net->n[3].got[i], (uint64_t)i + 1);
    ck_assert(net->n[3].got_ok);
    ck_assert_uint_eq(stats(net, 3).block_requests_out, 1);   /* all three in one request */
    /* Caught up: nothing more is asked, even after another stuck period. */
    run_for(net, 2 * NODE_P2P_SYNC_STUCK_MS);
    ck_assert_int_eq(net->n[3].n_blocks, 3);
    ck_assert_uint_eq(stats(net, 3).block_requests_out, 1);
    /* One more block on the peers: one behind again, closed the same way. */
    for (int i = 0; i < 3; i++) {
        net->n[i].serve_height = 4;
        node_p2p_set_height(net->n[i].p, 4);
    }
    int b4[] = {3, 4};
    ck_assert(run_until(net, blocks_at_least, b4, 4 * NODE_P2P_SYNC_STUCK_MS));
    ck_assert_uint_eq(net->n[3].got[3], 4);
    ck_assert(net->n[3].got_ok);
    net_free(net);
}
END_TEST

/* A validator whose own height keeps moving is not stuck, however long a
 * peer stays one ahead: consensus is bringing the blocks. */
START_TEST(test_moving_validator_does_not_sync) {
    tnet *net = net_new(2);
    start(net, 0, 0);
    start(net, 1, 0);
    net->n[0].serve_height = 1000;
    connect_all(net, 2);
    for (uint64_t k = 1; k <= 8; k++) {
        node_p2p_set_height(net->n[0].p, k + 1);
        int h[] = {1, 0, (int)k + 1};
        ck_assert(run_until(net, peer_height_is, h, WAIT_MS));
        run_for(net, NODE_P2P_SYNC_STUCK_MS / 4);
        node_p2p_set_height(net->n[1].p, k);   /* "consensus committed k" */
    }
    ck_assert_int_eq(net->n[1].n_blocks, 0);
    ck_assert_uint_eq(stats(net, 1).block_requests_out, 0);
    net_free(net);
}
END_TEST

/* A node announces each block of a response as it applies it; that must not
 * make the transport ask for the rest of the same response again (the
 * second, stale answer used to hold sync back for a second). */
START_TEST(test_one_request_per_response) {
    tnet *net = net_new(4);
    for (int i = 0; i < 4; i++) start(net, i, 1);
    node_p2p_config c = node_cfg(net, &net->n[5], NULL, 0);
    start_cfg(net, 5, &c, 0);
    net->n[5].apply = 2;
    connect_all(net, 4);
    int up[] = {0, 5};
    ck_assert(run_until(net, full_node_up, up, WAIT_MS));
    for (int i = 0; i < 4; i++) {
        net->n[i].serve_height = 3;
        node_p2p_set_height(net->n[i].p, 3);
    }
    int b3[] = {5, 3};
    ck_assert(run_until(net, blocks_at_least, b3, WAIT_MS));
    run_for(net, 100);
    ck_assert_int_eq(net->n[5].n_blocks, 3);
    ck_assert_uint_eq(stats(net, 5).block_requests_out, 1);
    ck_assert_uint_eq(stats(net, 5).unsolicited_responses, 0);
    /* The next block comes by the next request, with no hold in between. */
    for (int i = 0; i < 4; i++) {
        net->n[i].serve_height = 4;
        node_p2p_set_height(net->n[i].p, 4);
    }
    int b4[] = {5, 4};
    ck_assert(run_until(net, blocks_at_least, b4, WAIT_MS));
    ck_assert_uint_eq(stats(net, 5).block_requests_out, 2);
    for (int i = 0; i < 4; i++) ck_assert_uint_eq(net->n[5].got[i], (uint64_t)i + 1);
    ck_assert(net->n[5].got_ok);
    net_free(net);
}
END_TEST

static int slot_dups_at_least(tnet *net, const void *arg) {
    const int *a = arg;   /* slot, count */
    return stats(net, a[0]).tx_dups >= (uint64_t)a[1];
}

/* Validators 0 and 1 of n linked, 0 with a 256 KiB send queue; the loop
 * does not run between sends, so nothing drains until the test says. */
static tnet *small_queue_pair(uint32_t n) {
    tnet *net = net_new(n);
    node_p2p_config c = node_cfg(net, &net->n[0], NULL, 0);
    c.send_queue_bytes_max = 256 * 1024;
    start_cfg(net, 0, &c, 0);
    start(net, 1, 0);
    connect_all(net, 2);
    return net;
}

/* A hand-over goes to one validator only, is not remembered as seen by
 * the sender, and stops at half the send queue instead of costing the
 * link. */
START_TEST(test_send_tx_hands_over_to_one_peer) {
    tnet *net = small_queue_pair(3);
    uint8_t tx[100];
    for (size_t i = 0; i < sizeof tx; i++) tx[i] = (uint8_t)(i * 7);
    ck_assert_int_eq(node_p2p_send_tx(net->n[0].p, 2, tx, sizeof tx), NODE_EIO);   /* 2 not up */
    ck_assert_int_eq(node_p2p_send_tx(net->n[0].p, 1, tx, sizeof tx), 0);
    int want[] = {0, 1, 0, 0};
    ck_assert(run_until(net, tx_counts, want, WAIT_MS));
    /* Not marked seen here: gossip of the same tx still goes out. */
    ck_assert_uint_eq(node_p2p_gossip_tx(net->n[0].p, tx, sizeof tx), 1);
    int dup_at_1[] = {1, 1};
    ck_assert(run_until(net, slot_dups_at_least, dup_at_1, WAIT_MS));
    ck_assert_int_eq(net->n[1].n_tx, 1);   /* the copy is a duplicate at 1 */
    /* Refused: self, no such validator, empty, oversized. */
    static uint8_t big[CHAIN_TX_BYTES_MAX + 1];
    ck_assert_int_eq(node_p2p_send_tx(net->n[0].p, 0, tx, sizeof tx), NODE_EINVAL);
    ck_assert_int_eq(node_p2p_send_tx(net->n[0].p, 3, tx, sizeof tx), NODE_EINVAL);
    ck_assert_int_eq(node_p2p_send_tx(net->n[0].p, 1, tx, 0), NODE_EINVAL);
    ck_assert_int_eq(node_p2p_send_tx(net->n[0].p, 1, NULL, sizeof tx), NODE_EINVAL);
    ck_assert_int_eq(node_p2p_send_tx(net->n[0].p, 1, big, sizeof big), NODE_EINVAL);
    /* Nothing drains while the loop does not run: the queue fills to half
     * its 256 KiB, then the hand-over stops and the link stays. */
    static uint8_t large[CHAIN_TX_BYTES_MAX];
    int rc = 0, sent = 0;
    while (rc == 0 && sent < 1000) {
        large[0] = (uint8_t)sent;
        rc = node_p2p_send_tx(net->n[0].p, 1, large, sizeof large);
        if (rc == 0) sent++;
    }
    ck_assert_int_eq(rc, NODE_EFULL);
    ck_assert_uint_le((size_t)sent * sizeof large, 128 * 1024);
    ck_assert_uint_ge((size_t)(sent + 1) * (sizeof large + 64), 128 * 1024);
    ck_assert_uint_eq(stats(net, 0).send_overflows, 0);
    int want2[] = {0, 1 + sent, 0, 0};
    ck_assert(run_until(net, tx_counts, want2, WAIT_MS));
    net_free(net);
}
END_TEST

START_TEST(test_send_queue_overflow_drops_link) {
    tnet *net = small_queue_pair(2);
    static uint8_t msg[64 * 1024];
    int rc = 0, i;
    /* Nothing drains while the loop does not run, so the queue grows. */
    for (i = 0; i < 16 && rc == 0; i++) rc = node_p2p_send_consensus(net->n[0].p, 1, msg, sizeof msg);
    ck_assert_int_eq(rc, NODE_EIO);
    ck_assert_int_le(i, 5);
    ck_assert_uint_eq(stats(net, 0).send_overflows, 1);
    ck_assert(log_has(net, "send queue over"));
    ck_assert_int_eq(node_p2p_send_consensus(net->n[0].p, 1, msg, 10), NODE_EIO);   /* link gone */
    connect_all(net, 2);   /* and back */
    int before = net->n[1].n_cons;
    ck_assert_int_eq(node_p2p_send_consensus(net->n[0].p, 1, (const uint8_t *)"small", 5), 0);
    int want[] = {0, before + 1, 0, 0};
    ck_assert(run_until(net, cons_counts, want, WAIT_MS));
    ck_assert_mem_eq(net->n[1].cons, "small", 5);
    net_free(net);
}
END_TEST

/* Frames queued in one loop turn leave together, in order: one TLS record
 * instead of one per frame (a record costs 22 bytes of overhead). */
START_TEST(test_frames_of_one_turn_coalesce) {
    tnet *net = net_new(2);
    start(net, 0, 0);
    start(net, 1, 0);
    connect_all(net, 2);
    run_for(net, 50);   /* the Hellos' status frames are out */
    uint64_t out0 = stats(net, 0).bytes_out;
    int before = net->n[1].n_cons;
    char m[8];
    for (int i = 0; i < 200; i++) {
        snprintf(m, sizeof m, "m%03d", i);
        ck_assert_int_eq(node_p2p_send_consensus(net->n[0].p, 1, (const uint8_t *)m, 4), 0);
    }
    int want[] = {0, before + 200, 0, 0};
    ck_assert(run_until(net, cons_counts, want, WAIT_MS));
    ck_assert_mem_eq(net->n[1].cons, "m199", 4);
    ck_assert_uint_lt(stats(net, 0).bytes_out - out0, 200 * 22);
    net_free(net);
}
END_TEST

typedef struct {
    uv_tcp_t tcp;
    uv_connect_t req;
    uv_write_t wr;
    int closed;
} raw_client;

static void raw_closed(uv_handle_t *h) { ((raw_client *)h->data)->closed = 1; }

static void raw_connected(uv_connect_t *req, int status) {
    raw_client *rc = req->data;
    ck_assert_int_eq(status, 0);
    static char junk[] = "GET / HTTP/1.0\r\n\r\n";
    uv_buf_t b = uv_buf_init(junk, sizeof junk - 1);
    ck_assert_int_eq(uv_write(&rc->wr, (uv_stream_t *)&rc->tcp, &b, 1, NULL), 0);
}

static int raw_is_closed(tnet *net, const void *arg) {
    (void)net;
    return ((const raw_client *)arg)->closed;
}

START_TEST(test_plain_tcp_garbage_refused) {
    tnet *net = net_new(1);
    start(net, 0, 1);
    raw_client rc;
    memset(&rc, 0, sizeof rc);
    uv_tcp_init(&net->loop, &rc.tcp);
    rc.tcp.data = &rc;
    rc.req.data = &rc;
    struct sockaddr_in sa;
    uv_ip4_addr("127.0.0.1", node_p2p_listen_port(net->n[0].p), &sa);
    ck_assert_int_eq(uv_tcp_connect(&rc.req, &rc.tcp, (const struct sockaddr *)&sa, raw_connected), 0);
    ck_assert(run_until(net, stat_at_least, WANT(0, handshake_failures, 1), WAIT_MS));
    ck_assert(log_has(net, "TLS handshake failed"));
    ck_assert_uint_eq(stats(net, 0).conns_in, 1);
    ck_assert_int_eq(net->n[0].ups, 0);
    uv_close((uv_handle_t *)&rc.tcp, raw_closed);
    ck_assert(run_until(net, raw_is_closed, &rc, WAIT_MS));
    net_free(net);
}
END_TEST

static void raw_connected_silent(uv_connect_t *req, int status) {
    (void)req;
    (void)status;   /* refused ones may see a reset; either way they stay silent */
}

static int raws_closed(tnet *net, const void *arg) {
    (void)net;
    const raw_client *rc = arg;
    for (int i = 0; i < 70; i++)
        if (!rc[i].closed) return 0;
    return 1;
}

START_TEST(test_stalled_links_time_out_and_are_bounded) {
    tnet *net = net_new(1);
    node_p2p_config c = node_cfg(net, &net->n[0], NULL, 1);
    c.handshake_timeout_ms = 300;
    start_cfg(net, 0, &c, 0);
    static raw_client rc[70];
    memset(rc, 0, sizeof rc);
    struct sockaddr_in sa;
    uv_ip4_addr("127.0.0.1", node_p2p_listen_port(net->n[0].p), &sa);
    for (int i = 0; i < 70; i++) {
        uv_tcp_init(&net->loop, &rc[i].tcp);
        rc[i].tcp.data = &rc[i];
        ck_assert_int_eq(uv_tcp_connect(&rc[i].req, &rc[i].tcp, (const struct sockaddr *)&sa,
                                        raw_connected_silent), 0);
    }
    /* Beyond NODE_P2P_PENDING_CONNS_MAX unauthenticated links, new ones are
     * closed at once; the others are closed at the deadline. */
    ck_assert(run_until(net, stat_at_least, WANT(0, conns_in, 70), WAIT_MS));
    ck_assert_uint_eq(stats(net, 0).conns_refused, 70 - NODE_P2P_PENDING_CONNS_MAX);
    ck_assert_uint_eq(stats(net, 0).handshake_failures, 0);
    ck_assert(run_until(net, stat_at_least, WANT(0, handshake_failures, NODE_P2P_PENDING_CONNS_MAX), WAIT_MS));
    ck_assert(log_has(net, "no authenticated Hello within 300 ms"));
    /* With the slots free again a real peer still gets in. */
    node_p2p_config f = node_cfg(net, &net->n[5], NULL, 0);
    start_cfg(net, 5, &f, 0);
    ck_assert(run_until(net, stat_at_least, WANT(0, full_nodes_up, 1), WAIT_MS));
    for (int i = 0; i < 70; i++) uv_close((uv_handle_t *)&rc[i].tcp, raw_closed);
    ck_assert(run_until(net, raws_closed, rc, WAIT_MS));
    net_free(net);
}
END_TEST

/* A bare TLS client driven by the loop: it only shakes hands. */
typedef struct {
    uv_tcp_t tcp;
    uv_connect_t req;
    SSL *ssl;
    int done, ok, version, closed;
} tls_client;

static void free_write(uv_write_t *w, int status) {
    (void)status;
    free(w);
}

static void tls_client_step(tls_client *t) {
    int r = SSL_do_handshake(t->ssl);
    BIO *w = SSL_get_wbio(t->ssl);
    size_t n;
    while ((n = BIO_ctrl_pending(w)) > 0) {
        uv_write_t *wr = malloc(sizeof *wr + n);
        char *d = (char *)(wr + 1);
        ck_assert_int_eq(BIO_read(w, d, (int)n), (int)n);
        uv_buf_t b = uv_buf_init(d, (unsigned)n);
        ck_assert_int_eq(uv_write(wr, (uv_stream_t *)&t->tcp, &b, 1, free_write), 0);
    }
    if (r == 1) {
        t->done = t->ok = 1;
        t->version = SSL_version(t->ssl);
    } else if (SSL_get_error(t->ssl, r) != SSL_ERROR_WANT_READ) {
        t->done = 1;
        ERR_clear_error();
    }
}

static void tls_alloc(uv_handle_t *h, size_t size, uv_buf_t *buf) {
    (void)h;
    buf->base = malloc(size);
    buf->len = size;
}

static void tls_read(uv_stream_t *s, ssize_t nread, const uv_buf_t *buf) {
    tls_client *t = s->data;
    if (nread < 0) t->done = 1;
    if (nread > 0 && !t->done) {
        BIO_write(SSL_get_rbio(t->ssl), buf->base, (int)nread);
        tls_client_step(t);
    }
    free(buf->base);
}

static void tls_connected(uv_connect_t *req, int status) {
    tls_client *t = req->data;
    ck_assert_int_eq(status, 0);
    ck_assert_int_eq(uv_read_start((uv_stream_t *)&t->tcp, tls_alloc, tls_read), 0);
    tls_client_step(t);
}

static void tls_closed(uv_handle_t *h) { ((tls_client *)h->data)->closed = 1; }

static int tls_done(tnet *net, const void *arg) {
    (void)net;
    return ((const tls_client *)arg)->done;
}

static int tls_is_closed(tnet *net, const void *arg) {
    (void)net;
    return ((const tls_client *)arg)->closed;
}

/* Shakes hands with slot 0 using a client limited to max_version. */
static tls_client *tls_try(tnet *net, int max_version) {
    SSL_CTX *ctx = SSL_CTX_new(TLS_client_method());
    ck_assert_ptr_nonnull(ctx);
    ck_assert_int_eq(SSL_CTX_set_max_proto_version(ctx, max_version), 1);
    tls_client *t = calloc(1, sizeof *t);
    t->ssl = node__p2p_tls_new(ctx, 1);
    SSL_CTX_free(ctx);   /* the session keeps what it needs */
    ck_assert_ptr_nonnull(t->ssl);
    uv_tcp_init(&net->loop, &t->tcp);
    t->tcp.data = t;
    t->req.data = t;
    struct sockaddr_in sa;
    uv_ip4_addr("127.0.0.1", node_p2p_listen_port(net->n[0].p), &sa);
    ck_assert_int_eq(uv_tcp_connect(&t->req, &t->tcp, (const struct sockaddr *)&sa, tls_connected), 0);
    ck_assert(run_until(net, tls_done, t, WAIT_MS));
    return t;
}

static void tls_free(tnet *net, tls_client *t) {
    uv_close((uv_handle_t *)&t->tcp, tls_closed);
    ck_assert(run_until(net, tls_is_closed, t, WAIT_MS));
    SSL_free(t->ssl);
    free(t);
}

START_TEST(test_tls_1_3_only) {
    tnet *net = net_new(1);
    node_p2p_config c = node_cfg(net, &net->n[0], NULL, 1);
    c.handshake_timeout_ms = 300;
    start_cfg(net, 0, &c, 0);
    tls_client *old = tls_try(net, TLS1_2_VERSION);
    ck_assert(!old->ok);
    ck_assert(run_until(net, stat_at_least, WANT(0, handshake_failures, 1), WAIT_MS));
    ck_assert(log_has(net, "TLS handshake failed"));
    tls_free(net, old);
    /* TLS 1.3 completes, but without a Hello the link dies at the deadline. */
    tls_client *t = tls_try(net, TLS1_3_VERSION);
    ck_assert(t->ok);
    ck_assert_int_eq(t->version, TLS1_3_VERSION);
    ck_assert(run_until(net, stat_at_least, WANT(0, handshake_failures, 2), WAIT_MS));
    ck_assert(log_has(net, "no authenticated Hello"));
    ck_assert_int_eq(net->n[0].ups, 0);
    tls_free(net, t);
    net_free(net);
}
END_TEST

START_TEST(test_api_errors) {
    tnet *net = net_new(2);
    node_p2p *bad;
    node_p2p_config c = node_cfg(net, &net->n[0], "no-port-here", 0);
    ck_assert_int_eq(node_p2p_create(&bad, &c), NODE_EINVAL);
    c = node_cfg(net, &net->n[0], NULL, 0);
    c.genesis = NULL;
    ck_assert_int_eq(node_p2p_create(&bad, &c), NODE_EINVAL);
    ck_assert_int_eq(node_p2p_create(&bad, NULL), NODE_EINVAL);

    start(net, 0, 0);
    start(net, 1, 0);
    node_p2p *p0 = net->n[0].p;
    ck_assert_int_eq(node_p2p_start(p0), NODE_EINVAL);   /* twice */
    ck_assert_int_eq(node_p2p_self_index(p0), 0);
    ck_assert_int_eq(node_p2p_send_consensus(p0, 1, (const uint8_t *)"x", 1), NODE_EIO);   /* not up yet */
    connect_all(net, 2);
    ck_assert_int_eq(node_p2p_send_consensus(p0, 0, (const uint8_t *)"x", 1), NODE_EINVAL);   /* self */
    ck_assert_int_eq(node_p2p_send_consensus(p0, 2, (const uint8_t *)"x", 1), NODE_EINVAL);   /* no such */
    ck_assert_int_eq(node_p2p_send_consensus(p0, 1, (const uint8_t *)"x", 0), NODE_EINVAL);
    ck_assert_int_eq(node_p2p_test_send_raw(p0, 7, (const uint8_t *)"x", 1), NODE_EIO);
    uint32_t peers[1];
    ck_assert_uint_eq(node_p2p_peers(p0, peers, 1), 1);
    ck_assert_uint_eq(peers[0], 1);
    ck_assert_uint_eq(node_p2p_peers(p0, peers, 0), 1);   /* counts beyond max */

    /* A second transport on a port in use fails to start, cleanly. */
    char addr[32];
    snprintf(addr, sizeof addr, "127.0.0.1:%d", node_p2p_listen_port(p0));
    c = node_cfg(net, &net->n[6], addr, 0);
    ck_assert_int_eq(node_p2p_create(&net->n[6].p, &c), 0);
    ck_assert_int_eq(node_p2p_start(net->n[6].p), NODE_EIO);
    ck_assert_int_eq(node_p2p_listen_port(net->n[6].p), -1);
    net->n[6].open = 1;
    stop_node(net, 6);
    ck_assert(log_has(net, "cannot listen"));
    net_free(net);
}
END_TEST

int main(void) {
    Suite *s = suite_create("p2p");
    TCase *wire = tcase_create("wire");
    tcase_add_test(wire, test_wire_roundtrip);
    tcase_add_test(wire, test_wire_refuses_bad_input);
    tcase_add_test(wire, test_seen_set_dedups_and_forgets);
    tcase_add_test(wire, test_hello_sighash_binds_session_and_side);
    suite_add_tcase(s, wire);
    TCase *links = tcase_create("links");
    tcase_set_timeout(links, 120);
    tcase_add_test(links, test_four_validators_all_to_all);
    tcase_add_test(links, test_gossip_reaches_all_once);
    tcase_add_test(links, test_non_validator_key_refused);
    tcase_add_test(links, test_full_node_refused_unless_accepted);
    tcase_add_test(links, test_replayed_hello_refused);
    tcase_add_test(links, test_bad_frames_drop_the_link);
    tcase_add_test(links, test_killed_peer_reconnects);
    tcase_add_test(links, test_send_tx_hands_over_to_one_peer);
    tcase_add_test(links, test_send_queue_overflow_drops_link);
    tcase_add_test(links, test_frames_of_one_turn_coalesce);
    tcase_add_test(links, test_plain_tcp_garbage_refused);
    tcase_add_test(links, test_stalled_links_time_out_and_are_bounded);
    tcase_add_test(links, test_tls_1_3_only);
    tcase_add_test(links, test_api_errors);
    suite_add_tcase(s, links);
    TCase *sync = tcase_create("sync");
    tcase_set_timeout(sync, 120);
    tcase_add_test(sync, test_block_request_response);
    tcase_add_test(sync, test_full_node_follows_by_status);
    tcase_add_test(sync, test_fetch_syncs_a_validator_below_the_lag);
    tcase_add_test(sync, test_stuck_validator_below_the_lag_syncs);
    tcase_add_test(sync, test_moving_validator_does_not_sync);
    tcase_add_test(sync, test_one_request_per_response);
    suite_add_tcase(s, sync);
    SRunner *sr = srunner_create(s);
    srunner_run_all(sr, CK_NORMAL);
    int failed = srunner_ntests_failed(sr);
    srunner_free(sr);
    return failed ? EXIT_FAILURE : EXIT_SUCCESS;
}
