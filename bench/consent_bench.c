/* consent_bench.c — consent-ledger's benchmark tool (driven by bench/run).
 *
 * Each subcommand prints one JSON object on stdout, so bench/run can collect
 * and compare figures across runs:
 *
 *   micro     the machine's own limits: BIP340 verifications per second on
 *             one core (every validator verifies every transaction once, so
 *             this bounds the network), SHA-256 of an encoded grant, executing
 *             and committing a block of 1,000 grants into a real RocksDB
 *             store, and gateway checks straight from the store;
 *   load      drives a running network: pre-signed grants (and revocations of
 *             some of them once committed) from many patient keys, posted as
 *             framed batches (POST /v1/txs/batch) over keep-alive connections
 *             round-robin to the nodes, at a fixed offered rate or at
 *             saturation (a bounded number outstanding); commit latency is
 *             the time from submit to the first time the tx is seen in a
 *             committed block fetched from the first node;
 *   populate  writes blocks of signed grants straight into a stopped node's
 *             data dir through chain_exec_*, with commit certificates signed
 *             by the testnet's validator keys, so a gateway benchmark can
 *             start on millions of grants, or a validator can be left
 *             thousands of blocks behind;
 *   checks    gateway checks against one node over one keep-alive pipelined
 *             connection (one client core), optionally with proof=1,
 *             authenticated by a session MAC (--auth session, the default:
 *             one signed POST /v1/sessions first) or a BIP340 signature per
 *             request (--auth signed);
 *   sync      waits for a node to reach a height and reports blocks/s.
 *
 * Patient keys are derived from a seed (SHA-256 of the seed and an index),
 * so `checks` can ask about the same patients `populate` wrote without a
 * file of millions of keys. Every run is bounded: durations, transaction
 * counts and waits have limits, and only the URLs given are contacted.
 */
#include <assert.h>
#include <errno.h>
#include <inttypes.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include <jansson.h>

#include "chain/chain.h"
#include "wallet/wallet.h"

#define BENCH_BLOCK_TXS 1000
#define BENCH_THREADS_MAX 16
#define BENCH_NODES_MAX 16
#define BENCH_LOAD_TXS_MAX 5000000u      /* pre-signed transactions per load run */
#define BENCH_DURATION_S_MAX 3600
#define BENCH_POPULATE_GRANTS_MAX 20000000ull
#define BENCH_POPULATE_BLOCKS_MAX 1000000ull
#define BENCH_CHECK_SAMPLE_MAX 1000000u
#define BENCH_PER_PATIENT_MAX 16
#define BENCH_BATCH_TXS 1000             /* NODE_BATCH_TXS_MAX */
#define BENCH_BATCH_BYTES (4u << 20)     /* NODE_BATCH_BYTES_MAX */

/* Scopes given by a patient's successive grants; checks ask for the first. */
static const char *const bench_scopes[BENCH_PER_PATIENT_MAX] = {
    "Observation", "Condition", "MedicationRequest", "Procedure", "DiagnosticReport", "Immunization",
    "AllergyIntolerance", "CarePlan", "Encounter", "ImagingStudy", "MedicationStatement",
    "CareTeam", "ClinicalImpression", "NutritionOrder", "MolecularSequence", "Condition"};

/* ------------------------------------------------------------------ helpers */
static double now_s(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static uint64_t now_ns(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000000000ull + (uint64_t)ts.tv_nsec;
}

static uint64_t wall_ms(void) {
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    return (uint64_t)ts.tv_sec * 1000ull + (uint64_t)ts.tv_nsec / 1000000ull;
}

static void sleep_ms(unsigned ms) {
    struct timespec ts = {ms / 1000, (long)(ms % 1000) * 1000000L};
    while (nanosleep(&ts, &ts) != 0 && errno == EINTR) {
    }
}

static void die(const char *what, int err) {
    fprintf(stderr, "consent_bench: %s: %s\n", what, err <= WALLET_ENET ? wallet_strerror(err) : chain_strerror(err));
    exit(2);
}

static void die_msg(const char *what, const char *msg) {
    fprintf(stderr, "consent_bench: %s: %s\n", what, msg);
    exit(2);
}

static void *xcalloc(size_t n, size_t size) {
    void *p = calloc(n ? n : 1, size);
    if (!p) die("allocation", CHAIN_ENOMEM);
    return p;
}

static int cmp_u64(const void *a, const void *b) {
    uint64_t x = *(const uint64_t *)a, y = *(const uint64_t *)b;
    return x < y ? -1 : x > y;
}

/* Percentile of a sorted array (nearest rank). */
static uint64_t pct(const uint64_t *sorted, size_t n, double p) {
    if (n == 0) return 0;
    size_t i = (size_t)(p * (double)n);
    return sorted[i >= n ? n - 1 : i];
}

static long cores(void) {
    long c = sysconf(_SC_NPROCESSORS_ONLN);
    return c < 1 ? 1 : c > BENCH_THREADS_MAX ? BENCH_THREADS_MAX : c;
}

/* A patient key derived from (seed, index): SHA-256 is a valid secp256k1
 * secret with overwhelming probability; chain_key_create refuses otherwise. */
static chain_key *derived_key(const char *domain, uint64_t seed, uint64_t index) {
    char s[128];
    int n = snprintf(s, sizeof s, "consent-bench/%s/%" PRIu64 "/%" PRIu64, domain, seed, index);
    chain_hash h;
    chain_sha256(&h, s, (size_t)n);
    chain_key *k = chain_key_create(h.b);
    if (!k) die("derive key", CHAIN_EINVAL);
    return k;
}

/* A signed grant of patient `key` to `grantee`, encoded into buf. */
static size_t sign_grant(uint8_t *buf, size_t cap, const char *chain_id, const chain_key *key,
                         uint64_t nonce, uint64_t now, const chain_pubkey *grantee, const char *scope) {
    chain_tx tx;
    memset(&tx, 0, sizeof tx);
    snprintf(tx.chain_id, sizeof tx.chain_id, "%s", chain_id);
    tx.type = CHAIN_TX_GRANT;
    chain_key_pubkey(key, &tx.signer);
    tx.nonce = nonce;
    tx.created_at = now;
    tx.body.grant.patient = tx.signer;
    tx.body.grant.grantee = *grantee;
    tx.body.grant.n_scopes = 1;
    snprintf(tx.body.grant.scopes[0].s, sizeof(chain_code), "%s", scope);
    tx.body.grant.n_purposes = 2;
    snprintf(tx.body.grant.purposes[0].s, sizeof(chain_code), "TREAT");
    snprintf(tx.body.grant.purposes[1].s, sizeof(chain_code), "HRESCH");
    tx.body.grant.not_before = now - 3600;
    tx.body.grant.not_after = now + 86400ull * 365 * 5;
    int err = chain_tx_sign(&tx, key);
    if (err) die("sign grant", err);
    size_t len = 0;
    err = chain_tx_encode(buf, cap, &len, &tx);
    if (err) die("encode grant", err);
    return len;
}

static size_t sign_revoke(uint8_t *buf, size_t cap, const char *chain_id, const chain_key *key,
                          uint64_t nonce, uint64_t now, const chain_hash *grant_id) {
    chain_tx tx;
    memset(&tx, 0, sizeof tx);
    snprintf(tx.chain_id, sizeof tx.chain_id, "%s", chain_id);
    tx.type = CHAIN_TX_REVOKE;
    chain_key_pubkey(key, &tx.signer);
    tx.nonce = nonce;
    tx.created_at = now;
    tx.body.revoke.grant_id = *grant_id;
    int err = chain_tx_sign(&tx, key);
    if (err) die("sign revoke", err);
    size_t len = 0;
    err = chain_tx_encode(buf, cap, &len, &tx);
    if (err) die("encode revoke", err);
    return len;
}

/* The first genesis institution that may receive grants and is not a
 * validator: the gateway the load grants to. */
static const chain_institution *pick_grantee(const chain_genesis *g) {
    for (uint32_t i = g->n_validators; i < g->n_institutions; i++)
        if (g->institutions[i].roles & CHAIN_ROLE_GRANTEE) return &g->institutions[i];
    die_msg("genesis", "no institution with the grantee role");
    return NULL;
}

/* Options: a thin layer over wallet_args so every subcommand refuses
 * unknown or repeated options the same way. */
typedef struct {
    const wallet_opt_spec *spec;
    size_t n;
    wallet_args a;
} opts;

static void opts_parse(opts *o, const wallet_opt_spec *spec, size_t n, int argc, char **argv) {
    char err[WALLET_ERR_LEN];
    o->spec = spec;
    o->n = n;
    if (wallet_args_parse(&o->a, err, spec, n, argc, argv)) die_msg("usage", err);
    if (o->a.n_pos) die_msg("usage", "unexpected positional argument");
}

static const char *opt_str(const opts *o, const char *name, const char *def) {
    const char *v = wallet_args_get(&o->a, o->spec, o->n, name);
    if (!v && !def) {
        fprintf(stderr, "consent_bench: usage: --%s is required\n", name);
        exit(2);
    }
    return v ? v : def;
}

static uint64_t opt_u64(const opts *o, const char *name, uint64_t def, uint64_t max) {
    const char *v = wallet_args_get(&o->a, o->spec, o->n, name);
    uint64_t x = def;
    if (v && (wallet_parse_u64(&x, v) || x > max)) {
        fprintf(stderr, "consent_bench: usage: --%s must be a number up to %" PRIu64 "\n", name, max);
        exit(2);
    }
    return x;
}

static int opt_flag(const opts *o, const char *name) {
    return wallet_args_get(&o->a, o->spec, o->n, name) != NULL;
}

static void load_genesis(chain_genesis **out, const char *path) {
    chain_genesis *g = xcalloc(1, sizeof *g);
    int err = chain_genesis_load(g, path);
    if (err) die(path, err);
    *out = g;
}

/* ================================================================== micro */
/* A genesis with one validator and one grantee institution, in memory. */
static void bench_genesis(chain_genesis *g, const chain_key *val, const chain_key *inst) {
    memset(g, 0, sizeof(*g));
    snprintf(g->chain_id, sizeof(g->chain_id), "consent-bench");
    g->time_ms = 1700000000000ull;
    g->n_validators = 1;
    g->n_institutions = 2;
    chain_key_pubkey(val, &g->institutions[0].key);
    snprintf(g->institutions[0].name, sizeof(g->institutions[0].name), "validator-0");
    g->institutions[0].roles = CHAIN_ROLE_VALIDATOR;
    chain_key_pubkey(inst, &g->institutions[1].key);
    snprintf(g->institutions[1].name, sizeof(g->institutions[1].name), "gateway-0");
    g->institutions[1].roles = CHAIN_ROLE_GATEWAY | CHAIN_ROLE_GRANTEE;
}

static double bench_verify(void) {
    enum { N = 256 };
    chain_key *k = chain_key_create(NULL);
    if (!k) die("key", CHAIN_ENOMEM);
    chain_pubkey pk;
    chain_key_pubkey(k, &pk);
    chain_hash *msgs = xcalloc(N, sizeof *msgs);
    chain_sig *sigs = xcalloc(N, sizeof *sigs);
    for (int i = 0; i < N; i++) {
        chain_sha256(&msgs[i], &i, sizeof(i));
        if (chain_sign(k, &sigs[i], &msgs[i])) die("sign", CHAIN_ESIG);
    }
    chain_key_destroy(k);
    uint64_t n = 0;
    double t0 = now_s(), t;
    do {
        for (int i = 0; i < N; i++)
            if (chain_verify(&pk, &sigs[i], &msgs[i])) die("verify", CHAIN_ESIG);
        n += N;
        t = now_s();
    } while (t - t0 < 1.5);
    free(msgs);
    free(sigs);
    return (double)n / (t - t0);
}

/* Signing a grant with a fresh patient key: what a wallet (and populate) pays. */
static double bench_sign(const chain_pubkey *grantee) {
    uint8_t buf[CHAIN_TX_BYTES_MAX];
    uint64_t n = 0, now = (uint64_t)time(NULL);
    double t0 = now_s(), t;
    do {
        chain_key *k = derived_key("micro", 1, n);
        sign_grant(buf, sizeof buf, "consent-bench", k, 1, now, grantee, "Observation");
        chain_key_destroy(k);
        n++;
        t = now_s();
    } while (t - t0 < 0.5);
    return (double)n / (t - t0);
}

static double bench_sha256(const uint8_t *tx, size_t len) {
    uint64_t n = 0;
    chain_hash h;
    double t0 = now_s(), t;
    do {
        for (int i = 0; i < 4096; i++) chain_tx_hash(&h, tx, len);
        n += 4096;
        t = now_s();
    } while (t - t0 < 0.5);
    return (double)n / (t - t0);
}

typedef struct {
    double exec_ms;     /* execute 1,000 txs and compute roots */
    double commit_ms;   /* one synced WriteBatch */
} block_times;

static block_times bench_block(chain_store *st, uint8_t **txs, const size_t *lens, int sig_checked,
                               uint64_t time_ms) {
    block_times bt;
    chain_exec *ex = NULL;
    double t0 = now_s();
    int err = chain_exec_begin(&ex, st, time_ms);
    if (err) die("exec_begin", err);
    for (int i = 0; i < BENCH_BLOCK_TXS; i++) {
        err = chain_exec_tx(ex, txs[i], lens[i], sig_checked);
        if (err) die("exec_tx", err);
    }
    chain_block b;
    chain_block_init(&b);
    err = chain_exec_finish(ex, &b);
    if (err) die("exec_finish", err);
    double t1 = now_s();
    err = chain_exec_commit(ex, &b);
    if (err) die("exec_commit", err);
    double t2 = now_s();
    chain_exec_abort(ex);
    chain_block_free(&b);
    bt.exec_ms = (t1 - t0) * 1e3;
    bt.commit_ms = (t2 - t1) * 1e3;
    return bt;
}

static double bench_store_checks(chain_store *st, const uint8_t *tx0, size_t len0,
                                 const chain_pubkey *grantee, uint64_t now) {
    chain_tx tx;
    int err = chain_tx_decode(&tx, tx0, len0);
    if (err) die("decode", err);
    chain_check_result res;
    uint64_t n = 0;
    double t0 = now_s(), t;
    do {
        for (int i = 0; i < 1024; i++) {
            err = chain_check(st, &res, &tx.body.grant.patient, grantee, "Observation", "TREAT", now);
            if (err || res.decision != CHAIN_PERMIT) die("check", err ? err : CHAIN_ESTATE);
        }
        n += 1024;
        t = now_s();
    } while (t - t0 < 1.0);
    return (double)n / (t - t0);
}

static int cmd_micro(int argc, char **argv) {
    static const wallet_opt_spec spec[] = {{"help", 0}};
    opts o;
    opts_parse(&o, spec, 1, argc, argv);
    chain_key *val = chain_key_create(NULL), *inst = chain_key_create(NULL);
    chain_genesis *g = xcalloc(1, sizeof(*g));
    if (!val || !inst) die("setup", CHAIN_ENOMEM);
    bench_genesis(g, val, inst);
    chain_pubkey grantee;
    chain_key_pubkey(inst, &grantee);

    char dir[] = "/tmp/consent-bench.XXXXXX";
    if (!mkdtemp(dir)) die("mkdtemp", CHAIN_EIO);
    chain_store *st = NULL;
    int err = chain_store_open(&st, dir, g);
    if (err) die("store_open", err);

    uint64_t now = (uint64_t)time(NULL);
    enum { BLOCKS = 2 };
    uint8_t *txs[BLOCKS][BENCH_BLOCK_TXS];
    size_t lens[BLOCKS][BENCH_BLOCK_TXS];
    for (int b = 0; b < BLOCKS; b++)
        for (int i = 0; i < BENCH_BLOCK_TXS; i++) {
            txs[b][i] = xcalloc(1, CHAIN_TX_BYTES_MAX);
            chain_key *k = derived_key("micro-block", (uint64_t)now, (uint64_t)(b * BENCH_BLOCK_TXS + i));
            lens[b][i] = sign_grant(txs[b][i], CHAIN_TX_BYTES_MAX, g->chain_id, k, 1, now, &grantee,
                                    "Observation");
            chain_key_destroy(k);
        }

    double verify_per_s = bench_verify();
    double sign_per_s = bench_sign(&grantee);
    double sha_per_s = bench_sha256(txs[0][0], lens[0][0]);
    block_times with_sig = bench_block(st, txs[0], lens[0], 0, now * 1000);
    block_times pre_verified = bench_block(st, txs[1], lens[1], 1, now * 1000 + 1);
    double checks_per_s = bench_store_checks(st, txs[0][0], lens[0][0], &grantee, now);

    long nc = cores();
    printf("{\"cores\": %ld, \"verify_per_s_core\": %.0f, \"sign_grant_per_s_core\": %.0f, "
           "\"sha256_tx_per_s\": %.0f, \"tx_bytes\": %zu, \"block_txs\": %d, "
           "\"block_exec_ms\": %.1f, \"block_commit_ms\": %.1f, "
           "\"block_exec_preverified_ms\": %.1f, \"block_commit_preverified_ms\": %.1f, "
           "\"store_checks_per_s\": %.0f, \"ceiling_4_validators_tx_s\": %.0f}\n",
           nc, verify_per_s, sign_per_s, sha_per_s, lens[0][0], BENCH_BLOCK_TXS, with_sig.exec_ms,
           with_sig.commit_ms, pre_verified.exec_ms, pre_verified.commit_ms, checks_per_s,
           (double)nc * verify_per_s / 4.0);

    for (int b = 0; b < BLOCKS; b++)
        for (int i = 0; i < BENCH_BLOCK_TXS; i++) free(txs[b][i]);
    chain_store_close(st);
    char cmd[128];
    snprintf(cmd, sizeof(cmd), "rm -rf %s", dir);
    if (system(cmd) != 0) fprintf(stderr, "consent_bench: could not remove %s\n", dir);
    chain_key_destroy(val);
    chain_key_destroy(inst);
    free(g);
    return 0;
}

/* ================================================================== load */
/* One pre-signed transaction of a load run. submit_ns and commit_ns are
 * written by one thread and read by the other, hence atomic. */
typedef struct {
    chain_hash hash;
    uint8_t *tx;
    uint32_t len;
    int32_t revoke;                 /* index of the revoke of this grant, or -1 */
    _Atomic uint64_t submit_ns;     /* first submission; 0 = never sent */
    _Atomic uint64_t commit_ns;     /* first seen in a committed block; 0 = not yet */
} load_tx;

/* A bounded FIFO of transaction indices. */
typedef struct {
    uint32_t *v;
    size_t cap, head, n;
} idx_ring;

static void ring_init(idx_ring *r, size_t cap) {
    r->v = xcalloc(cap, sizeof *r->v);
    r->cap = cap;
    r->head = r->n = 0;
}

static int ring_push(idx_ring *r, uint32_t x) {
    if (r->n == r->cap) return -1;
    r->v[(r->head + r->n++) % r->cap] = x;
    return 0;
}

static int ring_pop(idx_ring *r, uint32_t *x) {
    if (r->n == 0) return -1;
    *x = r->v[r->head];
    r->head = (r->head + 1) % r->cap;
    r->n--;
    return 0;
}

typedef struct {
    /* Configuration. */
    wallet_client nodes[BENCH_NODES_MAX];
    size_t n_nodes;
    char chain_id[CHAIN_ID_LEN_MAX + 1];
    chain_pubkey grantee;
    uint64_t rate;            /* offered tx/s; 0 = saturation */
    uint64_t window;          /* saturation: most txs outstanding */
    double duration_s, drain_s;
    uint64_t seed;
    /* Transactions: grants first, then their revokes. */
    load_tx *txs;
    uint32_t n_grants, n_txs;
    uint32_t *table;          /* open addressing: hash -> index + 1 */
    size_t table_mask;
    /* Shared between the submitter and the observer. */
    pthread_mutex_t mu;
    idx_ring revoke_ready;    /* revokes whose grant has committed (under mu) */
    atomic_uint_fast64_t committed;
    atomic_int stop;
    /* Observer's figures. */
    uint64_t blocks_seen, block_txs_seen, foreign_txs, start_height, end_height;
    int observer_err;
    char observer_msg[WALLET_ERR_LEN];
} load_ctx;

static uint64_t hash_slot(const chain_hash *h) {
    uint64_t x;
    memcpy(&x, h->b, sizeof x);
    return x;
}

static void table_build(load_ctx *c) {
    size_t cap = 1;
    while (cap < 2 * (size_t)c->n_txs) cap <<= 1;
    c->table = xcalloc(cap, sizeof *c->table);
    c->table_mask = cap - 1;
    for (uint32_t i = 0; i < c->n_txs; i++) {
        size_t s = hash_slot(&c->txs[i].hash) & c->table_mask;
        while (c->table[s]) s = (s + 1) & c->table_mask;
        c->table[s] = i + 1;
    }
}

static int64_t table_find(const load_ctx *c, const chain_hash *h) {
    size_t s = hash_slot(h) & c->table_mask;
    for (size_t probes = 0; probes <= c->table_mask && c->table[s]; probes++) {
        uint32_t i = c->table[s] - 1;
        if (memcmp(c->txs[i].hash.b, h->b, CHAIN_HASH_LEN) == 0) return i;
        s = (s + 1) & c->table_mask;
    }
    return -1;
}

/* Pre-signing runs on every core: keys and signatures are the slow part. */
typedef struct {
    load_ctx *c;
    uint32_t worker, workers;
    uint64_t now;
} sign_job;

static void *sign_worker(void *arg) {
    sign_job *j = arg;
    load_ctx *c = j->c;
    uint8_t buf[CHAIN_TX_BYTES_MAX];
    for (uint32_t i = j->worker; i < c->n_grants; i += j->workers) {
        chain_key *k = derived_key("load", c->seed, i);
        load_tx *t = &c->txs[i];
        t->len = (uint32_t)sign_grant(buf, sizeof buf, c->chain_id, k, 1, j->now, &c->grantee, "Observation");
        t->tx = xcalloc(1, t->len);
        memcpy(t->tx, buf, t->len);
        chain_tx_hash(&t->hash, t->tx, t->len);
        if (t->revoke >= 0) {
            load_tx *r = &c->txs[t->revoke];
            r->len = (uint32_t)sign_revoke(buf, sizeof buf, c->chain_id, k, 2, j->now, &t->hash);
            r->tx = xcalloc(1, r->len);
            memcpy(r->tx, buf, r->len);
            chain_tx_hash(&r->hash, r->tx, r->len);
        }
        chain_key_destroy(k);
    }
    return NULL;
}

static void load_presign(load_ctx *c, uint32_t grants, uint32_t revoke_pct) {
    uint32_t revokes = (uint32_t)((uint64_t)grants * revoke_pct / 100);
    c->n_grants = grants;
    c->n_txs = grants + revokes;
    c->txs = xcalloc(c->n_txs, sizeof *c->txs);
    /* Spread the revoked grants evenly over the run. */
    for (uint32_t i = 0; i < grants; i++) c->txs[i].revoke = -1;
    for (uint32_t r = 0; r < revokes; r++) {
        uint32_t gi = (uint32_t)((uint64_t)r * grants / revokes);
        c->txs[gi].revoke = (int32_t)(grants + r);
        c->txs[grants + r].revoke = -1;
    }
    pthread_t th[BENCH_THREADS_MAX];
    sign_job jobs[BENCH_THREADS_MAX];
    uint32_t w = (uint32_t)cores();
    for (uint32_t i = 0; i < w; i++) {
        jobs[i] = (sign_job){c, i, w, (uint64_t)time(NULL)};
        if (pthread_create(&th[i], NULL, sign_worker, &jobs[i])) die("thread", CHAIN_ENOMEM);
    }
    for (uint32_t i = 0; i < w; i++) pthread_join(th[i], NULL);
    table_build(c);
}

/* GET a JSON document over a keep-alive connection; 200 only. */
static int get_json(wallet_conn *k, json_t **out, char *err, const char *target) {
    wallet_http_response r;
    int rc = wallet_conn_request(k, &r, err, "GET", target, NULL, NULL, 0);
    if (rc) return rc;
    if (r.status != 200) {
        snprintf(err, WALLET_ERR_LEN, "GET %s: status %d: %.120s", target, r.status, r.body);
        wallet_http_response_free(&r);
        return WALLET_ESTATUS;
    }
    json_error_t je;
    *out = json_loadb(r.body, r.body_len, 0, &je);
    wallet_http_response_free(&r);
    if (!*out) {
        snprintf(err, WALLET_ERR_LEN, "GET %s: not JSON", target);
        return WALLET_EJSON;
    }
    return 0;
}

static int status_height(wallet_conn *k, uint64_t *height, char *err) {
    json_t *o = NULL;
    int rc = get_json(k, &o, err, "/v1/status");
    if (rc) return rc;
    json_t *h = json_object_get(o, "height");
    rc = json_is_integer(h) && json_integer_value(h) >= 0 ? 0 : WALLET_EJSON;
    if (!rc) *height = (uint64_t)json_integer_value(h);
    else snprintf(err, WALLET_ERR_LEN, "/v1/status has no height");
    json_decref(o);
    return rc;
}

/* Marks the transactions of committed block `height` seen. */
static int observe_block(load_ctx *c, wallet_conn *k, uint64_t height, char *err) {
    char target[64];
    snprintf(target, sizeof target, "/v1/blocks/%" PRIu64 "?format=raw", height);
    wallet_http_response r;
    int rc = wallet_conn_request(k, &r, err, "GET", target, NULL, NULL, 0);
    if (rc) return rc;
    if (r.status != 200) {
        snprintf(err, WALLET_ERR_LEN, "GET %s: status %d", target, r.status);
        wallet_http_response_free(&r);
        return WALLET_ESTATUS;
    }
    uint64_t seen = now_ns();
    chain_block b;
    chain_block_init(&b);
    rc = chain_block_decode(&b, (const uint8_t *)r.body, r.body_len);
    wallet_http_response_free(&r);
    if (rc) {
        snprintf(err, WALLET_ERR_LEN, "block %" PRIu64 ": %s", height, chain_strerror(rc));
        return rc;
    }
    c->blocks_seen++;
    c->block_txs_seen += b.n_txs;
    for (uint32_t i = 0; i < b.n_txs; i++) {
        chain_hash h;
        chain_tx_hash(&h, b.txs[i], b.tx_lens[i]);
        int64_t ix = table_find(c, &h);
        if (ix < 0) {
            c->foreign_txs++;
            continue;
        }
        load_tx *t = &c->txs[ix];
        uint64_t zero = 0;
        if (!atomic_compare_exchange_strong(&t->commit_ns, &zero, seen)) continue;
        atomic_fetch_add(&c->committed, 1);
        if (t->revoke >= 0) {
            pthread_mutex_lock(&c->mu);
            int full = ring_push(&c->revoke_ready, (uint32_t)t->revoke);
            pthread_mutex_unlock(&c->mu);
            assert(!full);   /* the ring holds every revoke */
        }
    }
    chain_block_free(&b);
    return 0;
}

/* The observer thread: follows the first node's committed blocks. */
static void *observer(void *arg) {
    load_ctx *c = arg;
    wallet_conn *k = NULL;
    char *err = c->observer_msg;
    uint64_t seen = c->start_height, height = 0;
    int rc = wallet_conn_open(&k, err, &c->nodes[0]);
    while (!rc && !atomic_load(&c->stop)) {
        rc = status_height(k, &height, err);
        if (rc) break;
        if (height == seen) {
            sleep_ms(5);
            continue;
        }
        for (; !rc && seen < height; seen++) rc = observe_block(c, k, seen + 1, err);
    }
    c->end_height = seen;
    c->observer_err = rc;
    wallet_conn_close(k);
    return NULL;
}

/* Batches in flight per node connection: the node answers one batch while
 * the next is already on the wire, so its loop never waits for us. */
#define BENCH_PIPELINE 2

typedef struct {
    uint64_t submitted, accepted, rejected, retried;
    char first_reject[WALLET_ERR_LEN];
    /* Slot node * BENCH_PIPELINE + k: the k-th batch in flight to node. */
    uint32_t *batch_ix[BENCH_NODES_MAX * BENCH_PIPELINE];
    size_t batch_n[BENCH_NODES_MAX * BENCH_PIPELINE];
    uint8_t *body[BENCH_NODES_MAX * BENCH_PIPELINE];
    idx_ring retry;
    uint32_t next_grant;
} submitter;

/* Next transaction to send: retries first, then revokes whose grant has
 * committed, then fresh grants. Returns -1 when nothing is ready. */
static int64_t next_tx(load_ctx *c, submitter *s) {
    uint32_t x;
    if (ring_pop(&s->retry, &x) == 0) return x;
    pthread_mutex_lock(&c->mu);
    int got = ring_pop(&c->revoke_ready, &x) == 0;
    pthread_mutex_unlock(&c->mu);
    if (got) return x;
    if (s->next_grant < c->n_grants) return s->next_grant++;
    return -1;
}

/* Reads a batch answer: a 503 ("mempool full") is retried later, any other
 * refusal counted, the first reason kept. */
static int batch_result(submitter *s, size_t slot, const wallet_http_response *r, char *err) {
    if (r->status != 200) {
        snprintf(err, WALLET_ERR_LEN, "batch: status %d: %.160s", r->status, r->body);
        return WALLET_ESTATUS;
    }
    json_error_t je;
    json_t *o = json_loadb(r->body, r->body_len, 0, &je);
    json_t *res = o ? json_object_get(o, "results") : NULL;
    if (!json_is_array(res) || json_array_size(res) != s->batch_n[slot]) {
        json_decref(o);
        snprintf(err, WALLET_ERR_LEN, "batch: answer does not list every transaction");
        return WALLET_EJSON;
    }
    for (size_t i = 0; i < s->batch_n[slot]; i++) {
        json_t *e = json_array_get(res, i);
        json_int_t st = json_integer_value(json_object_get(e, "status"));
        uint32_t ix = s->batch_ix[slot][i];
        if (st == 202) {
            s->accepted++;
        } else if (st == 503 && ring_push(&s->retry, ix) == 0) {
            s->retried++;
        } else {
            s->rejected++;
            const char *why = json_string_value(json_object_get(e, "error"));
            if (!s->first_reject[0]) snprintf(s->first_reject, sizeof s->first_reject, "%s", why ? why : "?");
        }
    }
    json_decref(o);
    return 0;
}

/* Frames up to `want` ready transactions into batch slot `slot`. */
static size_t frame_batch(load_ctx *c, submitter *s, size_t slot, uint64_t want) {
    size_t off = 0, n = 0;
    uint64_t t = now_ns();
    while (n < want && n < BENCH_BATCH_TXS) {
        int64_t ix = next_tx(c, s);
        if (ix < 0) break;
        load_tx *x = &c->txs[ix];
        if (off + 4 + x->len > BENCH_BATCH_BYTES) {
            ring_push(&s->retry, (uint32_t)ix);
            break;
        }
        uint8_t *p = s->body[slot] + off;
        p[0] = (uint8_t)(x->len >> 24), p[1] = (uint8_t)(x->len >> 16);
        p[2] = (uint8_t)(x->len >> 8), p[3] = (uint8_t)x->len;
        memcpy(p + 4, x->tx, x->len);
        off += 4 + x->len;
        uint64_t zero = 0;
        atomic_compare_exchange_strong(&x->submit_ns, &zero, t);
        s->batch_ix[slot][n++] = (uint32_t)ix;
    }
    s->batch_n[slot] = n;
    return off;
}

/* One round: up to BENCH_PIPELINE batches to every node, all sent before
 * any answer is read (each connection answers in order). */
static uint64_t submit_round(load_ctx *c, submitter *s, wallet_conn **conns, uint64_t allowed) {
    size_t slots = c->n_nodes * BENCH_PIPELINE;
    uint64_t per = (allowed + slots - 1) / slots, sent = 0;
    char err[WALLET_ERR_LEN];
    int used[BENCH_NODES_MAX * BENCH_PIPELINE] = {0};
    for (size_t k = 0; k < BENCH_PIPELINE && sent < allowed; k++)
        for (size_t i = 0; i < c->n_nodes && sent < allowed; i++) {
            size_t slot = i * BENCH_PIPELINE + k;
            uint64_t want = allowed - sent < per ? allowed - sent : per;
            size_t bytes = frame_batch(c, s, slot, want);
            if (s->batch_n[slot] == 0) break;
            int rc = wallet_conn_send(conns[i], err, "POST", "/v1/txs/batch", "application/octet-stream",
                                      s->body[slot], bytes);
            if (rc) die_msg("submit", err);
            used[slot] = 1;
            sent += s->batch_n[slot];
            s->submitted += s->batch_n[slot];
        }
    for (size_t k = 0; k < BENCH_PIPELINE; k++)
        for (size_t i = 0; i < c->n_nodes; i++) {
            size_t slot = i * BENCH_PIPELINE + k;
            if (!used[slot]) continue;
            wallet_http_response r;
            int rc = wallet_conn_recv(conns[i], &r, err);
            if (rc) die_msg("submit", err);
            rc = batch_result(s, slot, &r, err);
            wallet_http_response_free(&r);
            if (rc) die_msg("submit", err);
        }
    return sent;
}

/* How many may go out now: the offered rate so far, or (saturation) what
 * keeps the outstanding count under the window. */
static uint64_t allowed_now(load_ctx *c, submitter *s, double t0) {
    if (c->rate) {
        double target = (double)c->rate * (now_s() - t0);
        uint64_t sent_first = s->submitted - s->retried;   /* retries were counted twice */
        return target > (double)sent_first ? (uint64_t)(target - (double)sent_first) + 1 : 0;
    }
    uint64_t committed = atomic_load(&c->committed);
    uint64_t outstanding = s->accepted > committed ? s->accepted - committed : 0;
    return outstanding < c->window ? c->window - outstanding : 0;
}

static void load_run(load_ctx *c, submitter *s, double *t_end) {
    wallet_conn *conns[BENCH_NODES_MAX];
    char err[WALLET_ERR_LEN];
    for (size_t i = 0; i < c->n_nodes; i++) {
        if (wallet_conn_open(&conns[i], err, &c->nodes[i])) die_msg("connect", err);
    }
    for (size_t i = 0; i < c->n_nodes * BENCH_PIPELINE; i++) {
        s->batch_ix[i] = xcalloc(BENCH_BATCH_TXS, sizeof(uint32_t));
        s->body[i] = xcalloc(1, BENCH_BATCH_BYTES);
    }
    ring_init(&s->retry, c->n_txs);
    double t0 = now_s();
    while (now_s() - t0 < c->duration_s && !atomic_load(&c->stop)) {
        uint64_t allowed = allowed_now(c, s, t0);
        if (allowed == 0 || submit_round(c, s, conns, allowed) == 0) sleep_ms(2);
        if (c->observer_err) break;
    }
    *t_end = now_s();
    /* Drain: wait (bounded) for what was accepted to commit. */
    while (now_s() - *t_end < c->drain_s && !c->observer_err) {
        if (atomic_load(&c->committed) >= s->accepted) break;
        sleep_ms(20);
    }
    for (size_t i = 0; i < c->n_nodes; i++) wallet_conn_close(conns[i]);
    for (size_t i = 0; i < c->n_nodes * BENCH_PIPELINE; i++) {
        free(s->batch_ix[i]);
        free(s->body[i]);
    }
    free(s->retry.v);
}

static void load_report(load_ctx *c, const submitter *s, double t0, double t_end) {
    uint64_t *lat = xcalloc(c->n_txs, sizeof *lat);
    size_t n = 0;
    /* Throughput counts commits after a warm-up (the first blocks carry no
     * load yet) up to the end of submission. */
    double warm_s = c->duration_s / 5 < 2 ? c->duration_s / 5 : 2;
    uint64_t in_window = 0, t0_ns = (uint64_t)(t0 * 1e9), tend_ns = (uint64_t)(t_end * 1e9);
    uint64_t twarm_ns = (uint64_t)((t0 + warm_s) * 1e9);
    uint64_t last_commit = 0;
    for (uint32_t i = 0; i < c->n_txs; i++) {
        uint64_t sub = atomic_load(&c->txs[i].submit_ns), com = atomic_load(&c->txs[i].commit_ns);
        if (!sub || !com) continue;
        lat[n++] = com > sub ? com - sub : 0;
        if (com >= twarm_ns && com <= tend_ns) in_window++;
        if (com > last_commit) last_commit = com;
    }
    qsort(lat, n, sizeof *lat, cmp_u64);
    double window_s = t_end - t0, steady_s = t_end - t0 - warm_s;
    double all_s = last_commit > t0_ns ? (double)(last_commit - t0_ns) / 1e9 : window_s;
    printf("{\"mode\": \"%s\", \"nodes\": %zu, \"offered_tx_s\": %" PRIu64 ", \"window\": %" PRIu64 ", "
           "\"duration_s\": %.2f, \"presigned\": %u, \"submitted\": %" PRIu64 ", \"accepted\": %" PRIu64 ", "
           "\"rejected\": %" PRIu64 ", \"retried_503\": %" PRIu64 ", \"committed\": %zu, "
           "\"uncommitted\": %" PRIu64 ", \"committed_tx_s\": %.1f, \"committed_tx_s_incl_drain\": %.1f, "
           "\"latency_ms\": {\"p50\": %.1f, \"p99\": %.1f, \"max\": %.1f}, "
           "\"blocks\": %" PRIu64 ", \"txs_per_block\": %.1f, \"foreign_txs\": %" PRIu64 ", "
           "\"first_reject\": ",
           c->rate ? "rate" : "saturation", c->n_nodes, c->rate, c->rate ? 0 : c->window, window_s, c->n_txs,
           s->submitted - s->retried, s->accepted, s->rejected, s->retried, n,
           s->accepted > n ? s->accepted - n : 0, (double)in_window / steady_s, (double)n / all_s,
           (double)pct(lat, n, 0.50) / 1e6, (double)pct(lat, n, 0.99) / 1e6,
           n ? (double)lat[n - 1] / 1e6 : 0.0, c->blocks_seen,
           c->blocks_seen ? (double)c->block_txs_seen / (double)c->blocks_seen : 0.0, c->foreign_txs);
    json_t *why = json_string(s->first_reject);
    char *w = json_dumps(why, JSON_ENCODE_ANY);
    printf("%s, \"observer_error\": ", w ? w : "\"\"");
    free(w);
    json_decref(why);
    why = json_string(c->observer_err ? c->observer_msg : "");
    w = json_dumps(why, JSON_ENCODE_ANY);
    printf("%s}\n", w ? w : "\"\"");
    free(w);
    json_decref(why);
    free(lat);
}

static void parse_nodes(load_ctx *c, const char *csv) {
    char buf[BENCH_NODES_MAX * (WALLET_URL_LEN_MAX + 1)];
    if (strlen(csv) >= sizeof buf) die_msg("usage", "--nodes too long");
    snprintf(buf, sizeof buf, "%s", csv);
    for (char *save = NULL, *u = strtok_r(buf, ",", &save); u; u = strtok_r(NULL, ",", &save)) {
        if (c->n_nodes == BENCH_NODES_MAX) die_msg("usage", "too many --nodes");
        if (wallet_client_init(&c->nodes[c->n_nodes], u)) die_msg("usage", "--nodes: not an http://host:port URL");
        c->n_nodes++;
    }
    if (c->n_nodes == 0) die_msg("usage", "--nodes is empty");
}

static int cmd_load(int argc, char **argv) {
    static const wallet_opt_spec spec[] = {{"nodes", 1}, {"genesis", 1}, {"rate", 1}, {"window", 1},
                                           {"duration", 1}, {"drain", 1}, {"txs", 1}, {"revoke-pct", 1},
                                           {"seed", 1}};
    opts o;
    opts_parse(&o, spec, sizeof spec / sizeof spec[0], argc, argv);
    load_ctx *c = xcalloc(1, sizeof *c);
    parse_nodes(c, opt_str(&o, "nodes", NULL));
    chain_genesis *g;
    load_genesis(&g, opt_str(&o, "genesis", NULL));
    snprintf(c->chain_id, sizeof c->chain_id, "%s", g->chain_id);
    c->grantee = pick_grantee(g)->key;
    c->rate = opt_u64(&o, "rate", 1000, 1000000);
    c->window = opt_u64(&o, "window", 20000, 1000000);
    c->duration_s = (double)opt_u64(&o, "duration", 10, BENCH_DURATION_S_MAX);
    c->drain_s = (double)opt_u64(&o, "drain", 20, BENCH_DURATION_S_MAX);
    c->seed = opt_u64(&o, "seed", (uint64_t)time(NULL), UINT64_MAX);
    uint64_t revoke_pct = opt_u64(&o, "revoke-pct", 10, 100);
    uint64_t grants = opt_u64(&o, "txs", c->rate ? c->rate * (uint64_t)c->duration_s : 100000, BENCH_LOAD_TXS_MAX);
    if (grants == 0) die_msg("usage", "--txs must be at least 1");
    fprintf(stderr, "consent_bench load: seed %" PRIu64 ", pre-signing %" PRIu64 " grants...\n", c->seed, grants);
    double ts = now_s();
    load_presign(c, (uint32_t)grants, (uint32_t)revoke_pct);
    fprintf(stderr, "consent_bench load: signed %u txs in %.1f s\n", c->n_txs, now_s() - ts);
    pthread_mutex_init(&c->mu, NULL);
    ring_init(&c->revoke_ready, c->n_txs - c->n_grants + 1);

    wallet_conn *k;
    char err[WALLET_ERR_LEN];
    if (wallet_conn_open(&k, err, &c->nodes[0]) || status_height(k, &c->start_height, err)) die_msg("status", err);
    wallet_conn_close(k);

    pthread_t th;
    if (pthread_create(&th, NULL, observer, c)) die("thread", CHAIN_ENOMEM);
    submitter s;
    memset(&s, 0, sizeof s);
    double t0 = now_s(), t_end;
    load_run(c, &s, &t_end);
    atomic_store(&c->stop, 1);
    pthread_join(th, NULL);
    load_report(c, &s, t0, t_end);

    for (uint32_t i = 0; i < c->n_txs; i++) free(c->txs[i].tx);
    free(c->txs);
    free(c->table);
    free(c->revoke_ready.v);
    pthread_mutex_destroy(&c->mu);
    free(g);
    free(c);
    return 0;
}

/* ================================================================== populate */
/* Blocks are signed by worker threads into a small ring of slots while the
 * main thread executes and commits them in height order. */
typedef struct {
    uint8_t **txs;
    size_t *lens;
    uint32_t n;
    uint64_t seq;       /* which block of the run this slot holds */
    int ready;
} pop_slot;

typedef struct {
    const chain_genesis *g;
    chain_pubkey grantee;
    uint64_t seed, grants, per_patient, block_txs, blocks;
    double time_limit_s;   /* 0 = none; else stop after the block that passes it */
    uint64_t committed_grants, committed_blocks;
    int stop;              /* under mu: workers leave */
    pop_slot *slots;
    uint32_t n_slots, workers;
    pthread_mutex_t mu;
    pthread_cond_t cv;
} pop_ctx;

typedef struct {
    pop_ctx *p;
    uint32_t worker;
} pop_job;

/* Transaction t of the run: patient t / per_patient, its (t % per_patient)+1th grant. */
static void pop_fill(pop_ctx *p, pop_slot *sl, uint64_t seq) {
    uint64_t first = seq * p->block_txs;
    uint64_t n = first >= p->grants ? 0 : p->grants - first < p->block_txs ? p->grants - first : p->block_txs;
    chain_key *k = NULL;
    uint64_t k_patient = UINT64_MAX;
    uint8_t buf[CHAIN_TX_BYTES_MAX];
    /* Signed moments before its block commits: a run longer than the clock
     * skew (10 minutes) must not sign its last blocks with its start time. */
    uint64_t created_at = wall_ms() / 1000;
    for (uint64_t i = 0; i < n; i++) {
        uint64_t t = first + i, patient = t / p->per_patient, nth = t % p->per_patient;
        if (patient != k_patient) {
            chain_key_destroy(k);
            k = derived_key("patient", p->seed, patient);
            k_patient = patient;
        }
        size_t len = sign_grant(buf, sizeof buf, p->g->chain_id, k, nth + 1, created_at, &p->grantee,
                                bench_scopes[nth]);
        sl->txs[i] = realloc(sl->txs[i], len);
        if (!sl->txs[i]) die("allocation", CHAIN_ENOMEM);
        memcpy(sl->txs[i], buf, len);
        sl->lens[i] = len;
    }
    chain_key_destroy(k);
    sl->n = (uint32_t)n;
}

static void *pop_worker(void *arg) {
    pop_job *j = arg;
    pop_ctx *p = j->p;
    for (uint64_t seq = j->worker; seq < p->blocks; seq += p->workers) {
        pop_slot *sl = &p->slots[seq % p->n_slots];
        pthread_mutex_lock(&p->mu);
        while (!p->stop && (sl->ready || sl->seq != seq)) pthread_cond_wait(&p->cv, &p->mu);
        int stop = p->stop;
        pthread_mutex_unlock(&p->mu);
        if (stop) break;
        pop_fill(p, sl, seq);
        pthread_mutex_lock(&p->mu);
        sl->ready = 1;
        pthread_cond_broadcast(&p->cv);
        pthread_mutex_unlock(&p->mu);
    }
    return NULL;
}

/* Executes, certifies and commits one block, like a node that received it
 * with its certificate: proposer is the view-0 primary, and `signers`
 * validator keys (a quorum) sign the commit. */
typedef struct {
    double wait_s, exec_s, cert_s, commit_s;   /* where the main thread's time went */
} pop_times;

static void pop_commit(chain_store *st, const pop_slot *sl, chain_key *const *signers, uint32_t n_signers,
                       uint64_t *time_ms, pop_times *tm) {
    const chain_genesis *g = chain_store_genesis(st);
    chain_exec *ex = NULL;
    uint64_t t = wall_ms();
    *time_ms = t > *time_ms ? t : *time_ms + 1;
    double t0 = now_s();
    int err = chain_exec_begin(&ex, st, *time_ms);
    if (err) die("exec_begin", err);
    /* The signatures were made by this process a moment ago: execution
     * skips re-verifying them, as a node does for mempool-checked txs. */
    for (uint32_t i = 0; i < sl->n; i++)
        if ((err = chain_exec_tx(ex, sl->txs[i], sl->lens[i], 1))) die("exec_tx", err);
    chain_block b;
    chain_block_init(&b);
    if ((err = chain_exec_finish(ex, &b))) die("exec_finish", err);
    double t1 = now_s();
    b.hdr.proposer = g->institutions[0].key;
    b.hdr.view = 0;
    chain_hash bh;
    chain_header_hash(&b.hdr, &bh);
    b.cert.view = 0;
    b.cert.height = b.hdr.height;
    b.cert.block_hash = bh;
    b.cert.n_sigs = n_signers;
    chain_hash msg;
    chain_commit_sighash(&msg, g->chain_id, 0, b.hdr.height, &bh);
    for (uint32_t i = 0; i < n_signers; i++) {
        chain_key_pubkey(signers[i], &b.cert.sigs[i].validator);
        if ((err = chain_sign(signers[i], &b.cert.sigs[i].sig, &msg))) die("sign cert", err);
    }
    if ((err = chain_cert_verify(&b.cert, g, &b.hdr))) die("cert", err);
    double t2 = now_s();
    if ((err = chain_exec_commit(ex, &b))) die("exec_commit", err);
    chain_exec_abort(ex);
    chain_block_free(&b);
    double t3 = now_s();
    tm->exec_s += t1 - t0;
    tm->cert_s += t2 - t1;
    tm->commit_s += t3 - t2;
}

static void pop_load_signers(chain_key **keys, uint32_t n, const char *testnet, const chain_genesis *g) {
    for (uint32_t i = 0; i < n; i++) {
        char kp[WALLET_URL_LEN_MAX + 64], pp[WALLET_URL_LEN_MAX + 64], pass[WALLET_PASSPHRASE_MAX + 1];
        char err[WALLET_ERR_LEN];
        snprintf(kp, sizeof kp, "%s/node%u/validator.key", testnet, i);
        snprintf(pp, sizeof pp, "%s/node%u/passphrase", testnet, i);
        if (wallet_passphrase(pass, err, pp, 0)) die_msg(pp, err);
        if (wallet_key_load(&keys[i], err, kp, pass)) die_msg(kp, err);
        memset(pass, 0, sizeof pass);
        chain_pubkey pk;
        chain_key_pubkey(keys[i], &pk);
        if (chain_genesis_validator_index(g, &pk) != (int)i) die_msg(kp, "not the genesis validator of its node");
    }
}

static void pop_run(pop_ctx *p, chain_store *st, chain_key *const *signers, uint32_t n_signers, pop_times *tm) {
    pthread_t th[BENCH_THREADS_MAX];
    pop_job jobs[BENCH_THREADS_MAX];
    for (uint32_t i = 0; i < p->workers; i++) {
        jobs[i] = (pop_job){p, i};
        if (pthread_create(&th[i], NULL, pop_worker, &jobs[i])) die("thread", CHAIN_ENOMEM);
    }
    uint64_t time_ms = 0;
    double t0 = now_s(), last = t0;
    for (uint64_t seq = 0; seq < p->blocks; seq++) {
        pop_slot *sl = &p->slots[seq % p->n_slots];
        double tw = now_s();
        pthread_mutex_lock(&p->mu);
        while (!sl->ready || sl->seq != seq) pthread_cond_wait(&p->cv, &p->mu);
        pthread_mutex_unlock(&p->mu);
        tm->wait_s += now_s() - tw;
        pop_commit(st, sl, signers, n_signers, &time_ms, tm);
        p->committed_grants += sl->n;
        p->committed_blocks++;
        int over = p->time_limit_s > 0 && now_s() - t0 >= p->time_limit_s;
        pthread_mutex_lock(&p->mu);
        sl->ready = 0;
        sl->seq = seq + p->n_slots;
        p->stop = over;
        pthread_cond_broadcast(&p->cv);
        pthread_mutex_unlock(&p->mu);
        if (over) break;
        if (now_s() - last >= 10) {
            last = now_s();
            fprintf(stderr, "consent_bench populate: %" PRIu64 "/%" PRIu64 " blocks, %.0f s\n", seq + 1, p->blocks,
                    last - t0);
        }
    }
    for (uint32_t i = 0; i < p->workers; i++) pthread_join(th[i], NULL);
}

static int cmd_populate(int argc, char **argv) {
    static const wallet_opt_spec spec[] = {{"testnet", 1}, {"data", 1},        {"signers", 1},
                                           {"grants", 1},  {"block-txs", 1},   {"blocks", 1},
                                           {"seed", 1},    {"per-patient", 1}, {"threads", 1},
                                           {"time-limit", 1}};
    opts o;
    opts_parse(&o, spec, sizeof spec / sizeof spec[0], argc, argv);
    const char *testnet = opt_str(&o, "testnet", NULL);
    char gpath[WALLET_URL_LEN_MAX + 32];
    snprintf(gpath, sizeof gpath, "%s/genesis.json", testnet);
    chain_genesis *g;
    load_genesis(&g, gpath);
    pop_ctx *p = xcalloc(1, sizeof *p);
    p->g = g;
    p->grantee = pick_grantee(g)->key;
    p->seed = opt_u64(&o, "seed", 1, UINT64_MAX);
    p->grants = opt_u64(&o, "grants", 1000000, BENCH_POPULATE_GRANTS_MAX);
    p->block_txs = opt_u64(&o, "block-txs", BENCH_BLOCK_TXS, CHAIN_BLOCK_TXS_MAX);
    p->per_patient = opt_u64(&o, "per-patient", 4, BENCH_PER_PATIENT_MAX);
    if (p->block_txs == 0 || p->per_patient == 0) die_msg("usage", "--block-txs and --per-patient must be >= 1");
    uint64_t need = (p->grants + p->block_txs - 1) / p->block_txs;
    p->blocks = opt_u64(&o, "blocks", need, BENCH_POPULATE_BLOCKS_MAX);
    if (p->blocks < need) die_msg("usage", "--blocks too few for --grants at --block-txs");
    uint32_t quorum = chain_genesis_quorum(g);
    uint32_t n_signers = (uint32_t)opt_u64(&o, "signers", quorum, g->n_validators);
    if (n_signers < quorum) die_msg("usage", "--signers below the quorum");
    p->workers = (uint32_t)opt_u64(&o, "threads", (uint64_t)cores(), BENCH_THREADS_MAX);
    if (p->workers == 0) die_msg("usage", "--threads must be >= 1");
    p->time_limit_s = (double)opt_u64(&o, "time-limit", 0, 24 * 3600);

    chain_key *signers[CHAIN_VALIDATORS_MAX];
    pop_load_signers(signers, n_signers, testnet, g);
    chain_store *st = NULL;
    int err = chain_store_open(&st, opt_str(&o, "data", NULL), g);
    if (err) die("store_open", err);
    uint64_t h0 = chain_store_height(st);

    p->n_slots = 2 * p->workers;
    p->slots = xcalloc(p->n_slots, sizeof *p->slots);
    for (uint32_t i = 0; i < p->n_slots; i++) {
        p->slots[i].txs = xcalloc(p->block_txs, sizeof(uint8_t *));
        p->slots[i].lens = xcalloc(p->block_txs, sizeof(size_t));
        p->slots[i].seq = i;
    }
    pthread_mutex_init(&p->mu, NULL);
    pthread_cond_init(&p->cv, NULL);
    fprintf(stderr, "consent_bench populate: %" PRIu64 " grants in %" PRIu64 " blocks, %u signers, %u threads\n",
            p->grants, p->blocks, n_signers, p->workers);
    double t0 = now_s();
    pop_times tm = {0, 0, 0, 0};
    pop_run(p, st, signers, n_signers, &tm);
    double dt = now_s() - t0;
    printf("{\"grants\": %" PRIu64 ", \"blocks\": %" PRIu64 ", \"from_height\": %" PRIu64 ", "
           "\"height\": %" PRIu64 ", \"seconds\": %.1f, \"grants_per_s\": %.0f, \"blocks_per_s\": %.1f, "
           "\"per_patient\": %" PRIu64 ", \"seed\": %" PRIu64 ", \"main_thread_s\": {\"wait_for_signers\": %.1f, "
           "\"exec\": %.1f, \"cert\": %.1f, \"commit\": %.1f}}\n",
           p->committed_grants, p->committed_blocks, h0, chain_store_height(st), dt,
           (double)p->committed_grants / dt, (double)p->committed_blocks / dt,
           p->per_patient, p->seed, tm.wait_s, tm.exec_s, tm.cert_s, tm.commit_s);
    chain_store_close(st);
    for (uint32_t i = 0; i < p->n_slots; i++) {
        for (uint64_t j = 0; j < p->block_txs; j++) free(p->slots[i].txs[j]);
        free(p->slots[i].txs);
        free(p->slots[i].lens);
    }
    for (uint32_t i = 0; i < n_signers; i++) chain_key_destroy(signers[i]);
    pthread_mutex_destroy(&p->mu);
    pthread_cond_destroy(&p->cv);
    free(p->slots);
    free(p);
    free(g);
    return 0;
}

/* ================================================================== checks */
/* Request targets for a random sample of the populated patients, each with
 * its X-Consent-* headers from the grantee institution (the node only
 * answers a check to the grantee or an operator): a session MAC when sess
 * is set, else a BIP340 signature. Keys and headers are made before the
 * clock starts: the client must not be the bottleneck, and either stays
 * valid for CHAIN_API_SKEW_S. */
static char **checks_targets(char ***heads_out, uint32_t n, const chain_genesis *g, const chain_key *signer,
                             const wallet_session *sess, uint64_t seed, uint64_t patients, uint64_t rng,
                             int proof) {
    char **v = xcalloc(n, sizeof *v), **heads = xcalloc(n, sizeof *heads);
    uint64_t now = wall_ms() / 1000;
    char gk[2 * CHAIN_KEY_LEN + 1], pk[2 * CHAIN_KEY_LEN + 1];
    chain_hex(gk, pick_grantee(g)->key.b, CHAIN_KEY_LEN);
    for (uint32_t i = 0; i < n; i++) {
        rng ^= rng << 13, rng ^= rng >> 7, rng ^= rng << 17;   /* xorshift64 */
        chain_key *k = derived_key("patient", seed, rng % patients);
        chain_pubkey p;
        chain_key_pubkey(k, &p);
        chain_key_destroy(k);
        chain_hex(pk, p.b, CHAIN_KEY_LEN);
        v[i] = xcalloc(1, 256);
        snprintf(v[i], 256, "/v1/grants/check?patient=%s&grantee=%s&scope=Observation&purpose=TREAT%s", pk, gk,
                 proof ? "&proof=1" : "");
        heads[i] = xcalloc(1, 512);
        int rc = sess ? wallet_session_headers(heads[i], 512, sess, "GET", v[i], now)
                      : wallet_auth_headers(heads[i], 512, signer, "GET", v[i], now);
        if (rc < 0) die("sign request", rc);
    }
    *heads_out = heads;
    return v;
}

typedef struct {
    uint64_t done, permit, deny, errors, proofs, state_proofs;
    char first_error[256];
    uint64_t *lat;
    size_t lat_n, lat_cap;
} checks_stats;

static void checks_answer(checks_stats *s, const wallet_http_response *r, uint64_t lat_ns, int proof) {
    s->done++;
    if (r->status != 200) {
        if (s->errors++ == 0) snprintf(s->first_error, sizeof s->first_error, "%d %.200s", r->status, r->body);
    } else if (strstr(r->body, "\"decision\": \"permit\"") || strstr(r->body, "\"decision\":\"permit\"")) s->permit++;
    else s->deny++;
    if (proof && r->status == 200 && strstr(r->body, "\"cert\"")) s->proofs++;
    if (proof && r->status == 200 && strstr(r->body, "\"proof\"")) s->state_proofs++;
    if (s->lat_n < s->lat_cap) s->lat[s->lat_n++] = lat_ns;
}

static int cmd_checks(int argc, char **argv) {
    static const wallet_opt_spec spec[] = {{"node", 1},     {"genesis", 1}, {"seed", 1},   {"patients", 1},
                                           {"duration", 1}, {"depth", 1},   {"sample", 1}, {"proof", 0},
                                           {"key", 1},      {"passphrase-file", 1}, {"auth", 1}};
    opts o;
    opts_parse(&o, spec, sizeof spec / sizeof spec[0], argc, argv);
    wallet_client cl;
    if (wallet_client_init(&cl, opt_str(&o, "node", NULL))) die_msg("usage", "--node: not an http://host:port URL");
    chain_genesis *g;
    load_genesis(&g, opt_str(&o, "genesis", NULL));
    uint64_t seed = opt_u64(&o, "seed", 1, UINT64_MAX);
    uint64_t patients = opt_u64(&o, "patients", 0, BENCH_POPULATE_GRANTS_MAX);
    if (patients == 0) die_msg("usage", "--patients must be >= 1");
    double duration = (double)opt_u64(&o, "duration", 10, BENCH_DURATION_S_MAX);
    uint32_t depth = (uint32_t)opt_u64(&o, "depth", 16, WALLET_CONN_PIPELINE_MAX);
    uint32_t sample = (uint32_t)opt_u64(&o, "sample", 20000, BENCH_CHECK_SAMPLE_MAX);
    int proof = opt_flag(&o, "proof");
    const char *auth = opt_str(&o, "auth", "session");
    if (strcmp(auth, "session") != 0 && strcmp(auth, "signed") != 0) die_msg("usage", "--auth is session or signed");
    int use_session = strcmp(auth, "session") == 0;
    if (depth == 0 || sample == 0) die_msg("usage", "--depth and --sample must be >= 1");
    uint64_t rng = seed * 0x9e3779b97f4a7c15ull + 1;
    fprintf(stderr, "consent_bench checks: deriving %u patient keys (seed %" PRIu64 ")\n", sample, seed);
    char pass[WALLET_PASSPHRASE_MAX + 1], err[WALLET_ERR_LEN];
    chain_key *signer = NULL;
    if (wallet_passphrase(pass, err, opt_str(&o, "passphrase-file", NULL), 0)) die_msg("passphrase", err);
    if (wallet_key_load(&signer, err, opt_str(&o, "key", NULL), pass)) die_msg("key", err);
    memset(pass, 0, sizeof pass);
    chain_pubkey spk;
    chain_key_pubkey(signer, &spk);
    if (memcmp(spk.b, pick_grantee(g)->key.b, CHAIN_KEY_LEN) != 0)
        die_msg("key", "not the key of the grantee institution populate grants to");
    wallet_session sess;
    if (use_session && wallet_session_open(&sess, err, &cl, signer)) die_msg("session", err);
    char **heads = NULL;
    char **targets = checks_targets(&heads, sample, g, signer, use_session ? &sess : NULL, seed, patients, rng, proof);
    if (use_session) wallet_session_clear(&sess);
    chain_key_destroy(signer);

    wallet_conn *k;
    if (wallet_conn_open(&k, err, &cl)) die_msg("connect", err);
    checks_stats s;
    memset(&s, 0, sizeof s);
    s.lat_cap = 20000000;
    s.lat = xcalloc(s.lat_cap, sizeof *s.lat);
    uint64_t *sent_at = xcalloc(depth, sizeof *sent_at);
    uint64_t next = 0;
    double t0 = now_s(), t;
    /* A sliding window: `depth` requests in flight; each answer releases one. */
    for (uint32_t i = 0; i < depth; i++, next++) {
        sent_at[next % depth] = now_ns();
        uint32_t ti = (uint32_t)(next % sample);
        if (wallet_conn_send_h(k, err, "GET", targets[ti], heads[ti], NULL, NULL, 0)) die_msg("send", err);
    }
    uint64_t answered = 0;
    while ((t = now_s()) - t0 < duration) {
        wallet_http_response r;
        if (wallet_conn_recv(k, &r, err)) die_msg("recv", err);
        checks_answer(&s, &r, now_ns() - sent_at[answered % depth], proof);
        wallet_http_response_free(&r);
        answered++;
        sent_at[next % depth] = now_ns();
        uint32_t ti = (uint32_t)(next % sample);
        if (wallet_conn_send_h(k, err, "GET", targets[ti], heads[ti], NULL, NULL, 0)) die_msg("send", err);
        next++;
    }
    double dt = t - t0;
    while (wallet_conn_in_flight(k)) {   /* bounded: depth answers */
        wallet_http_response r;
        if (wallet_conn_recv(k, &r, err)) die_msg("recv", err);
        wallet_http_response_free(&r);
    }
    wallet_conn_close(k);
    qsort(s.lat, s.lat_n, sizeof *s.lat, cmp_u64);
    printf("{\"auth\": \"%s\", \"proof\": %s, \"depth\": %u, \"duration_s\": %.2f, \"checks\": %" PRIu64 ", \"checks_per_s\": %.0f, "
           "\"permit\": %" PRIu64 ", \"deny\": %" PRIu64 ", \"errors\": %" PRIu64 ", \"with_cert\": %" PRIu64 ", \"with_state_proof\": %" PRIu64 ", "
           "\"latency_ms\": {\"p50\": %.3f, \"p99\": %.3f, \"max\": %.3f}, \"patients\": %" PRIu64,
           auth, proof ? "true" : "false", depth, dt, s.done, (double)s.done / dt, s.permit, s.deny, s.errors, s.proofs, s.state_proofs,
           (double)pct(s.lat, s.lat_n, 0.5) / 1e6, (double)pct(s.lat, s.lat_n, 0.99) / 1e6,
           s.lat_n ? (double)s.lat[s.lat_n - 1] / 1e6 : 0.0, patients);
    json_t *fe = json_string(s.first_error);
    char *fes = json_dumps(fe, JSON_ENCODE_ANY);
    printf(", \"first_error\": %s}\n", fes ? fes : "\"\"");
    free(fes);
    json_decref(fe);
    for (uint32_t i = 0; i < sample; i++) free(targets[i]), free(heads[i]);
    free(targets);
    free(heads);
    free(sent_at);
    free(s.lat);
    free(g);
    return 0;
}

/* ================================================================== sync */
/* Polls a node until it reaches --height (bounded by --timeout) and reports
 * how fast it got there, in blocks and transactions per second. */
static int cmd_sync(int argc, char **argv) {
    static const wallet_opt_spec spec[] = {{"node", 1}, {"height", 1}, {"timeout", 1}, {"txs", 1}};
    opts o;
    opts_parse(&o, spec, sizeof spec / sizeof spec[0], argc, argv);
    wallet_client cl;
    if (wallet_client_init(&cl, opt_str(&o, "node", NULL))) die_msg("usage", "--node: not an http://host:port URL");
    uint64_t target = opt_u64(&o, "height", 0, UINT64_MAX);
    double timeout = (double)opt_u64(&o, "timeout", 600, BENCH_DURATION_S_MAX);
    uint64_t txs = opt_u64(&o, "txs", 0, UINT64_MAX);
    char err[WALLET_ERR_LEN];
    wallet_conn *k = NULL;
    double t0 = now_s(), t_first = 0, t = t0;
    uint64_t h = 0, h_first = 0;
    int connected = 0;
    /* The node may still be starting: connection errors are retried. */
    while ((t = now_s()) - t0 < timeout) {
        if (!k && wallet_conn_open(&k, err, &cl)) {
            sleep_ms(50);
            continue;
        }
        if (status_height(k, &h, err)) {
            wallet_conn_close(k);
            k = NULL;
            sleep_ms(50);
            continue;
        }
        if (!connected) connected = 1, t_first = t, h_first = h;
        if (h >= target) break;
        sleep_ms(20);
    }
    wallet_conn_close(k);
    double dt = t - t_first;
    int done = connected && h >= target;
    double blocks = (double)(h - h_first);
    printf("{\"reached\": %s, \"target\": %" PRIu64 ", \"start_height\": %" PRIu64 ", \"height\": %" PRIu64 ", "
           "\"seconds\": %.2f, \"blocks_per_s\": %.1f, \"tx_per_s\": %.1f}\n",
           done ? "true" : "false", target, h_first, h, dt, dt > 0 ? blocks / dt : 0.0,
           dt > 0 && target ? blocks / dt * (double)txs / (double)target : 0.0);
    return done ? 0 : 1;
}

/* ================================================================== main */
static void usage(FILE *f) {
    fprintf(f,
            "usage: consent_bench COMMAND [options]   (each prints one JSON object)\n"
            "  micro      machine limits: signature checks/s, signing, SHA-256/s, block apply, store checks/s\n"
            "  load       --nodes URL,... --genesis PATH [--rate TX_S | --rate 0 --window N] [--duration S]\n"
            "             [--drain S] [--txs N] [--revoke-pct P] [--seed X]\n"
            "  populate   --testnet DIR --data DIR [--grants N] [--block-txs N] [--blocks N] [--signers N]\n"
            "             [--per-patient K] [--seed X] [--threads T] [--time-limit S]\n"
            "             (the node must be stopped)\n"
            "  checks     --node URL --genesis PATH --key GRANTEE.key --passphrase-file FILE --patients N\n"
            "             [--seed X] [--duration S] [--depth D] [--sample N] [--proof] [--auth session|signed]\n"
            "  sync       --node URL --height H [--timeout S] [--txs N]\n");
}

int main(int argc, char **argv) {
    if (argc < 2 || !strcmp(argv[1], "--help") || !strcmp(argv[1], "-h")) {
        usage(argc < 2 ? stderr : stdout);
        return argc < 2 ? 2 : 0;
    }
    if (!strcmp(argv[1], "micro")) return cmd_micro(argc - 2, argv + 2);
    if (!strcmp(argv[1], "load")) return cmd_load(argc - 2, argv + 2);
    if (!strcmp(argv[1], "populate")) return cmd_populate(argc - 2, argv + 2);
    if (!strcmp(argv[1], "checks")) return cmd_checks(argc - 2, argv + 2);
    if (!strcmp(argv[1], "sync")) return cmd_sync(argc - 2, argv + 2);
    fprintf(stderr, "consent_bench: unknown command '%s'\n", argv[1]);
    usage(stderr);
    return 2;
}
