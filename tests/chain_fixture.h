/* chain_fixture.h — the store fixture shared by test_chain_state.c,
 * test_chain_proof.c and test_wallet_verify.c.
 *
 * A real RocksDB store in a fresh mkdtemp directory (removed on close), a
 * genesis of validators (keys 100..) and institutions (keys 200..), and
 * keys derived from small integers and a per-suite salt, so every run is
 * the same. A suite describes its chain once in an fx_spec; the builders
 * fx_submit/fx_grant/fx_revoke commit each tx in its own block with a
 * commit certificate of validators 100..102, as a committed block would.
 * Randomness: none.
 */
#ifndef CONSENT_TESTS_CHAIN_FIXTURE_H
#define CONSENT_TESTS_CHAIN_FIXTURE_H

#include <check.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "chain/chain.h"
#include "chain/chain_internal.h"

#define GEN_MS 1795000000000ull
#define KEYS_MAX 256

typedef struct {
    const char *chain_id;
    const char *dir_template;       /* mkdtemp template, under 64 bytes */
    uint8_t key_salt;               /* which family of keys the suite uses */
    unsigned n_validators;
    unsigned n_institutions;
    const char *const *inst_roles;  /* JSON role arrays, one per institution */
} fx_spec;

typedef struct {
    const fx_spec *spec;
    char dir[64];
    chain_genesis *g;
    chain_store *st;
    uint64_t time_ms;               /* time of the last block */
    uint64_t nonce[KEYS_MAX];
    chain_key *keys[KEYS_MAX];
} fx;

static inline chain_key *key_n(fx *f, unsigned n)
{
    ck_assert_uint_lt(n, KEYS_MAX);
    if (f->keys[n] == NULL) {
        uint8_t sec[32] = {0};
        sec[29] = f->spec->key_salt;
        sec[30] = (uint8_t)(n >> 8);
        sec[31] = (uint8_t)(n + 1);
        f->keys[n] = chain_key_create(sec);
        ck_assert_ptr_nonnull(f->keys[n]);
    }
    return f->keys[n];
}

static inline chain_pubkey pub_n(fx *f, unsigned n)
{
    chain_pubkey p;
    chain_key_pubkey(key_n(f, n), &p);
    return p;
}

/* A genesis of n_validators validators and the spec's institutions. */
static inline chain_genesis *genesis_make(fx *f, const char *chain_id, unsigned n_validators)
{
    char js[4096], hex[65];
    size_t off = (size_t)snprintf(js, sizeof js, "{\"chain_id\":\"%s\",\"time_ms\":%llu,\"validators\":[",
                                  chain_id, (unsigned long long)GEN_MS);
    for (unsigned i = 0; i < n_validators; i++) {
        chain_pubkey p = pub_n(f, 100 + i);
        chain_hex(hex, p.b, 32);
        off += (size_t)snprintf(js + off, sizeof js - off,
                                "%s{\"name\":\"hospital-%u\",\"key\":\"%s\",\"p2p\":\"127.0.0.1:%u\"}",
                                i ? "," : "", i, hex, 7800 + i);
    }
    off += (size_t)snprintf(js + off, sizeof js - off, "],\"institutions\":[");
    for (unsigned i = 0; i < f->spec->n_institutions; i++) {
        chain_pubkey p = pub_n(f, 200 + i);
        chain_hex(hex, p.b, 32);
        off += (size_t)snprintf(js + off, sizeof js - off, "%s{\"name\":\"inst-%u\",\"key\":\"%s\",\"roles\":%s}",
                                i ? "," : "", i, hex, f->spec->inst_roles[i]);
    }
    snprintf(js + off, sizeof js - off, "]}");
    chain_genesis *g = malloc(sizeof *g);
    ck_assert_ptr_nonnull(g);
    ck_assert_int_eq(chain_genesis_parse(g, js, strlen(js)), 0);
    return g;
}

static inline fx *fx_open_spec(const fx_spec *spec)
{
    fx *f = calloc(1, sizeof *f);
    ck_assert_ptr_nonnull(f);
    f->spec = spec;
    ck_assert_uint_lt(strlen(spec->dir_template), sizeof f->dir);
    strcpy(f->dir, spec->dir_template);
    ck_assert_ptr_nonnull(mkdtemp(f->dir));
    f->g = genesis_make(f, spec->chain_id, spec->n_validators);
    ck_assert_int_eq(chain_store_open(&f->st, f->dir, f->g), 0);
    f->time_ms = GEN_MS;
    return f;
}

static inline void rm_rf(const char *dir)
{
    char cmd[128];
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", dir);
    ck_assert_int_eq(system(cmd), 0);
}

static inline void fx_close(fx *f)
{
    chain_store_close(f->st);
    rm_rf(f->dir);
    for (unsigned i = 0; i < KEYS_MAX; i++) chain_key_destroy(f->keys[i]);
    free(f->g);
    free(f);
}

static inline uint64_t now_s(fx *f)
{
    return f->time_ms / 1000;
}

/* Signs b's certificate with validators 100..100+n-1. */
static inline void sign_cert(fx *f, chain_block *b, unsigned n)
{
    chain_hash bh, msg;
    chain_header_hash(&b->hdr, &bh);
    b->cert.view = b->hdr.view;
    b->cert.height = b->hdr.height;
    b->cert.block_hash = bh;
    b->cert.n_sigs = n;
    chain_commit_sighash(&msg, f->spec->chain_id, b->cert.view, b->cert.height, &bh);
    for (unsigned i = 0; i < n; i++) {
        b->cert.sigs[i].validator = pub_n(f, 100 + i);
        ck_assert_int_eq(chain_sign(key_n(f, 100 + i), &b->cert.sigs[i].sig, &msg), 0);
    }
}

/* Signs tx with signer's next nonce and commits it in a certified block. */
static inline chain_hash fx_submit(fx *f, chain_tx *t, unsigned signer)
{
    uint8_t buf[CHAIN_TX_BYTES_MAX];
    size_t n = 0;
    chain_hash id;
    t->nonce = ++f->nonce[signer];
    ck_assert_int_eq(chain_tx_sign(t, key_n(f, signer)), 0);
    ck_assert_int_eq(chain_tx_encode(buf, sizeof buf, &n, t), 0);
    chain_tx_hash(&id, buf, n);
    chain_exec *ex = NULL;
    chain_block b;
    chain_block_init(&b);
    ck_assert_int_eq(chain_exec_begin(&ex, f->st, f->time_ms + 1000), 0);
    ck_assert_int_eq(chain_exec_tx(ex, buf, n, 0), 0);
    ck_assert_int_eq(chain_exec_finish(ex, &b), 0);
    sign_cert(f, &b, 3);
    ck_assert_int_eq(chain_exec_commit(ex, &b), 0);
    chain_exec_abort(ex);
    chain_block_free(&b);
    f->time_ms += 1000;
    return id;
}

/* Commits a grant from patient to grantee valid for `days`; returns its id. */
static inline chain_hash fx_grant(fx *f, unsigned patient, unsigned grantee, const char *scope,
                                  const char *purpose, uint64_t days)
{
    chain_tx t;
    memset(&t, 0, sizeof t);
    strcpy(t.chain_id, f->spec->chain_id);
    t.type = CHAIN_TX_GRANT;
    t.created_at = now_s(f) + 1;
    t.body.grant.patient = pub_n(f, patient);
    t.body.grant.grantee = pub_n(f, grantee);
    t.body.grant.n_scopes = 1;
    strcpy(t.body.grant.scopes[0].s, scope);
    t.body.grant.n_purposes = 1;
    strcpy(t.body.grant.purposes[0].s, purpose);
    t.body.grant.not_before = now_s(f) - 10;
    t.body.grant.not_after = now_s(f) + days * 86400;
    return fx_submit(f, &t, patient);
}

static inline void fx_revoke(fx *f, unsigned patient, const chain_hash *id)
{
    chain_tx t;
    memset(&t, 0, sizeof t);
    strcpy(t.chain_id, f->spec->chain_id);
    t.type = CHAIN_TX_REVOKE;
    t.created_at = now_s(f) + 1;
    t.body.revoke.grant_id = *id;
    fx_submit(f, &t, patient);
}

/* Governance removes institution `key` from the registry: endorsed by
 * validators 100..102 (a quorum of 4), sent by 100. */
static inline void fx_remove_institution(fx *f, unsigned key)
{
    chain_tx t;
    memset(&t, 0, sizeof t);
    strcpy(t.chain_id, f->spec->chain_id);
    t.type = CHAIN_TX_REMOVE_INSTITUTION;
    t.created_at = now_s(f) + 1;
    chain_institution_tx *b = &t.body.institution;
    b->key = pub_n(f, key);
    chain_hash h;
    ck_assert_int_eq(chain_institution_sighash(&h, f->spec->chain_id, t.type, b), 0);
    b->n_endorsements = 3;
    for (unsigned i = 0; i < 3; i++) {
        b->endorsements[i].signer = pub_n(f, 100 + i);
        ck_assert_int_eq(chain_sign(key_n(f, 100 + i), &b->endorsements[i].sig, &h), 0);
    }
    fx_submit(f, &t, 100);
}

static inline chain_check_query fx_query(fx *f, unsigned patient, unsigned grantee, const char *scope,
                                         const char *purpose, uint64_t at)
{
    chain_check_query q;
    q.patient = pub_n(f, patient);
    q.grantee = pub_n(f, grantee);
    q.scope = scope;
    q.purpose = purpose;
    q.at_s = at;
    return q;
}

#endif
