/* consent_bench.c — measures the machine's own limits for consent-ledger.
 *
 * `consent_bench micro` prints, as one JSON object on stdout:
 *   - BIP340 signature verifications per second on one core (the work every
 *     validator does once per transaction, so it bounds the network);
 *   - SHA-256 of a typical encoded grant transaction, per second;
 *   - executing and committing a block of 1,000 grant transactions into a
 *     real RocksDB store (one synced WriteBatch), with signatures checked and
 *     with signatures already verified by the mempool;
 *   - gateway checks per second answered straight from the store.
 * The network-level benchmark (bench/run) combines these with figures from a
 * running 4-validator network.
 */
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "chain/chain.h"

#define BENCH_BLOCK_TXS 1000

static double now_s(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static void die(const char *what, int err) {
    fprintf(stderr, "consent_bench: %s: %s\n", what, chain_strerror(err));
    exit(2);
}

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

/* Builds a signed grant from a fresh patient key: the shape the load uses. */
static size_t bench_grant(uint8_t *buf, size_t cap, const chain_pubkey *grantee, uint64_t now) {
    chain_key *patient = chain_key_create(NULL);
    if (!patient) die("key", CHAIN_ENOMEM);
    chain_tx tx;
    memset(&tx, 0, sizeof(tx));
    snprintf(tx.chain_id, sizeof(tx.chain_id), "consent-bench");
    tx.type = CHAIN_TX_GRANT;
    chain_key_pubkey(patient, &tx.signer);
    tx.nonce = 1;
    tx.created_at = now;
    tx.body.grant.patient = tx.signer;
    tx.body.grant.grantee = *grantee;
    tx.body.grant.n_scopes = 2;
    snprintf(tx.body.grant.scopes[0].s, sizeof(chain_code), "Observation");
    snprintf(tx.body.grant.scopes[1].s, sizeof(chain_code), "Condition");
    tx.body.grant.n_purposes = 1;
    snprintf(tx.body.grant.purposes[0].s, sizeof(chain_code), "TREAT");
    tx.body.grant.not_before = now - 60;
    tx.body.grant.not_after = now + 86400 * 365;
    int err = chain_tx_sign(&tx, patient);
    if (err) die("sign", err);
    size_t len = 0;
    err = chain_tx_encode(buf, cap, &len, &tx);
    if (err) die("encode", err);
    chain_key_destroy(patient);
    return len;
}

static double bench_verify(void) {
    enum { N = 256 };
    chain_key *k = chain_key_create(NULL);
    chain_pubkey pk;
    chain_key_pubkey(k, &pk);
    static chain_hash msgs[N];
    static chain_sig sigs[N];
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

static int micro(void) {
    chain_key *val = chain_key_create(NULL), *inst = chain_key_create(NULL);
    chain_genesis *g = calloc(1, sizeof(*g));
    if (!val || !inst || !g) die("setup", CHAIN_ENOMEM);
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
            txs[b][i] = malloc(CHAIN_TX_BYTES_MAX);
            lens[b][i] = bench_grant(txs[b][i], CHAIN_TX_BYTES_MAX, &grantee, now);
        }

    double verify_per_s = bench_verify();
    double sha_per_s = bench_sha256(txs[0][0], lens[0][0]);
    block_times with_sig = bench_block(st, txs[0], lens[0], 0, now * 1000);
    block_times pre_verified = bench_block(st, txs[1], lens[1], 1, now * 1000 + 1);

    /* Gateway checks straight from the store: the floor under the HTTP API. */
    chain_tx tx;
    err = chain_tx_decode(&tx, txs[0][0], lens[0][0]);
    if (err) die("decode", err);
    chain_check_result res;
    uint64_t n = 0;
    double t0 = now_s(), t;
    do {
        for (int i = 0; i < 1024; i++) {
            err = chain_check(st, &res, &tx.body.grant.patient, &grantee, "Observation", "TREAT", now);
            if (err || res.decision != CHAIN_PERMIT) die("check", err ? err : CHAIN_ESTATE);
        }
        n += 1024;
        t = now_s();
    } while (t - t0 < 1.0);
    double checks_per_s = (double)n / (t - t0);

    long cores = sysconf(_SC_NPROCESSORS_ONLN);
    printf("{\"cores\": %ld, \"verify_per_s_core\": %.0f, \"sha256_tx_per_s\": %.0f, "
           "\"tx_bytes\": %zu, \"block_txs\": %d, "
           "\"block_exec_ms\": %.1f, \"block_commit_ms\": %.1f, "
           "\"block_exec_preverified_ms\": %.1f, \"block_commit_preverified_ms\": %.1f, "
           "\"store_checks_per_s\": %.0f, \"ceiling_4_validators_tx_s\": %.0f}\n",
           cores, verify_per_s, sha_per_s, lens[0][0], BENCH_BLOCK_TXS, with_sig.exec_ms,
           with_sig.commit_ms, pre_verified.exec_ms, pre_verified.commit_ms, checks_per_s,
           (double)cores * verify_per_s / 4.0);

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

static void usage(FILE *f) {
    fprintf(f, "usage: consent_bench micro\n"
               "  micro   machine limits: signature checks/s, SHA-256/s, block apply, store checks/s\n");
}

int main(int argc, char **argv) {
    if (argc < 2 || !strcmp(argv[1], "--help") || !strcmp(argv[1], "-h")) {
        usage(argc < 2 ? stderr : stdout);
        return argc < 2 ? 2 : 0;
    }
    if (!strcmp(argv[1], "micro")) return micro();
    fprintf(stderr, "consent_bench: unknown command '%s'\n", argv[1]);
    return 2;
}
