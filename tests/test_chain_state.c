/* test_chain_state.c — the store, execution and check of chain/.
 *
 * Every test runs against a real RocksDB in a fresh mkdtemp directory
 * (removed at the end) with a genesis of 4 validators (keys 100..103) and
 * three institutions: key 200 gateway+grantee, 201 grantee only, 202
 * gateway only. Patients are keys 1..9, a guardian key 10, a stranger 11.
 * Each submit() commits a block of one tx one second after the last block.
 * Randomness: none; keys are derived from small integers.
 */
#include <check.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include <rocksdb/c.h>

#include "chain/chain.h"
#include "chain/chain_internal.h"
#include "chain/smt.h"
#include "chain_fixture.h"

#define CID "consent-test"
#define K_GW 200
#define K_LAB 201
#define K_GWONLY 202
#define K_GUARD 10
#define K_STRANGER 11
#define K_NEW 50

/* ------------------------------------------------------------------ fixture */

static const char *const fx_roles[3] = {"[\"gateway\",\"grantee\"]", "[\"grantee\"]", "[\"gateway\"]"};
static const fx_spec fx_state = {CID, "/tmp/chain_state_XXXXXX", 7, 4, 3, fx_roles};

static fx *fx_open(void)
{
    return fx_open_spec(&fx_state);
}

/* A tx of `type` created at the next block's time. */
static void base(fx *f, chain_tx *t, chain_tx_type type)
{
    memset(t, 0, sizeof *t);
    strcpy(t->chain_id, CID);
    t->type = type;
    t->created_at = (f->time_ms + 1000) / 1000;
}

static void grant(fx *f, chain_tx *t, unsigned patient, unsigned grantee, const char *scope,
                  const char *purpose, uint64_t nb, uint64_t na)
{
    base(f, t, CHAIN_TX_GRANT);
    t->body.grant.patient = pub_n(f, patient);
    t->body.grant.grantee = pub_n(f, grantee);
    t->body.grant.n_scopes = 1;
    strcpy(t->body.grant.scopes[0].s, scope);
    t->body.grant.n_purposes = 1;
    strcpy(t->body.grant.purposes[0].s, purpose);
    t->body.grant.not_before = nb;
    t->body.grant.not_after = na;
}

/* A day-long grant valid from now, Observation/TREAT. */
static void grant_std(fx *f, chain_tx *t, unsigned patient, unsigned grantee)
{
    uint64_t now = (f->time_ms + 1000) / 1000;
    grant(f, t, patient, grantee, "Observation", "TREAT", now - 10, now + 86400);
}

static size_t sign_encode(fx *f, chain_tx *t, unsigned signer, uint8_t *buf)
{
    size_t n = 0;
    ck_assert_int_eq(chain_tx_sign(t, key_n(f, signer)), 0);
    ck_assert_int_eq(chain_tx_encode(buf, CHAIN_TX_BYTES_MAX, &n, t), 0);
    return n;
}

/* Commits a block holding one tx; returns the tx's result (no block on error). */
static int commit_tx(fx *f, const uint8_t *tx, size_t len)
{
    chain_exec *ex = NULL;
    chain_block b;
    chain_block_init(&b);
    ck_assert_int_eq(chain_exec_begin(&ex, f->st, f->time_ms + 1000), 0);
    int rc = chain_exec_tx(ex, tx, len, 0);
    if (rc == 0) {
        ck_assert_int_eq(chain_exec_finish(ex, &b), 0);
        ck_assert_int_eq(chain_exec_commit(ex, &b), 0);
        f->time_ms += 1000;
    }
    chain_exec_abort(ex);
    chain_block_free(&b);
    return rc;
}

/* Signs t with the signer's next nonce and commits it; *id gets the tx hash. */
static int submit_id(fx *f, chain_tx *t, unsigned signer, chain_hash *id)
{
    uint8_t buf[CHAIN_TX_BYTES_MAX];
    t->nonce = f->nonce[signer] + 1;
    size_t n = sign_encode(f, t, signer, buf);
    if (id != NULL) chain_tx_hash(id, buf, n);
    int rc = commit_tx(f, buf, n);
    if (rc == 0) f->nonce[signer] = t->nonce;
    return rc;
}

static int submit(fx *f, chain_tx *t, unsigned signer)
{
    return submit_id(f, t, signer, NULL);
}

static chain_check_result check(fx *f, unsigned patient, unsigned grantee, const char *scope,
                                const char *purpose, uint64_t at)
{
    chain_check_result r;
    chain_pubkey p = pub_n(f, patient), g = pub_n(f, grantee);
    ck_assert_int_eq(chain_check(f->st, &r, &p, &g, scope, purpose, at), 0);
    return r;
}

static void revoke_tx(fx *f, chain_tx *t, const chain_hash *id)
{
    base(f, t, CHAIN_TX_REVOKE);
    t->body.revoke.grant_id = *id;
}

static void set_guardian(fx *f, chain_tx *t, unsigned guardian, int remove)
{
    base(f, t, CHAIN_TX_SET_GUARDIAN);
    t->body.set_guardian.guardian = pub_n(f, guardian);
    t->body.set_guardian.remove = remove;
}

/* ------------------------------------------------------------------ grants and checks */

START_TEST(test_grant_then_check_permits)
{
    fx *f = fx_open();
    chain_tx t;
    chain_hash id, root0, root1;
    chain_store_state_root(f->st, &root0);
    grant_std(f, &t, 1, K_GW);
    ck_assert_int_eq(submit_id(f, &t, 1, &id), 0);
    ck_assert_uint_eq(chain_store_height(f->st), 1);
    chain_store_state_root(f->st, &root1);
    ck_assert_mem_ne(root0.b, root1.b, 32);

    chain_check_result r = check(f, 1, K_GW, "Observation", "TREAT", now_s(f));
    ck_assert_int_eq(r.decision, CHAIN_PERMIT);
    ck_assert_int_eq(r.has_grant, 1);
    ck_assert_mem_eq(r.grant.id.b, id.b, 32);
    ck_assert_uint_eq(r.height, 1);
    ck_assert_int_eq(r.grant.status, CHAIN_GRANT_ACTIVE);
    ck_assert_uint_eq(r.grant.granted_height, 1);

    chain_grant_record rec;
    ck_assert_int_eq(chain_store_get_grant(f->st, &id, &rec), 0);
    ck_assert_str_eq(rec.grant.scopes[0].s, "Observation");
    chain_pubkey p1 = pub_n(f, 1);
    ck_assert_mem_eq(rec.granted_by.b, p1.b, 32);
    uint64_t h = 0;
    uint32_t idx = 9;
    ck_assert_int_eq(chain_store_get_tx(f->st, &id, &h, &idx), 0);
    ck_assert_uint_eq(h, 1);
    ck_assert_uint_eq(idx, 0);
    ck_assert_uint_eq(chain_store_nonce(f->st, &p1), 1);
    chain_hash other = id;
    other.b[0] ^= 1;
    ck_assert_int_eq(chain_store_get_tx(f->st, &other, &h, &idx), CHAIN_ENOTFOUND);
    ck_assert_int_eq(chain_store_get_grant(f->st, &other, &rec), CHAIN_ENOTFOUND);

    /* The block is stored with its header. */
    chain_block b;
    chain_block_init(&b);
    ck_assert_int_eq(chain_store_get_block(f->st, 1, &b), 0);
    ck_assert_uint_eq(b.n_txs, 1);
    chain_hash bh, tip;
    chain_header_hash(&b.hdr, &bh);
    chain_store_tip_hash(f->st, &tip);
    ck_assert_mem_eq(bh.b, tip.b, 32);
    ck_assert_mem_eq(b.hdr.state_root.b, root1.b, 32);
    chain_block_free(&b);
    ck_assert_int_eq(chain_store_get_block(f->st, 2, &b), CHAIN_ENOTFOUND);
    ck_assert_int_eq(chain_store_get_block(f->st, 0, &b), CHAIN_ENOTFOUND);
    fx_close(f);
}
END_TEST

/* The pair list of (patient, grantee) as the store reads it proves against
 * the committed root: whatever the store's value cache answers with is the
 * committed value (or its absence). Returns 0 or CHAIN_ENOTFOUND. */
static int expect_committed_pair(fx *f, unsigned patient, unsigned grantee)
{
    chain_pubkey p = pub_n(f, patient), g = pub_n(f, grantee);
    uint8_t k[CHAIN__KEY_MAX], *v = NULL;
    size_t kl = chain__key_pair(k, &p, &g), vl = 0;
    int rc = chain__store_get(f->st, &v, &vl, k, kl);
    ck_assert(rc == CHAIN_OK || rc == CHAIN_ENOTFOUND);
    chain_hash leaf, val, root;
    ck_assert_int_eq(chain__state_leaf_key(&leaf, k, kl), 1);
    if (rc == CHAIN_OK) chain__state_leaf_val(&val, v, vl);
    free(v);
    chain_store_state_root(f->st, &root);
    chain__smt_backend be;
    chain__store_smt_backend(f->st, &be);
    chain__smt_proof *pr = malloc(sizeof *pr);
    ck_assert_ptr_nonnull(pr);
    ck_assert_int_eq(chain__smt_prove(&be, pr, &root, &leaf), 0);
    ck_assert_int_eq(chain__smt_verify(&root, &leaf, rc == CHAIN_OK ? &val : NULL, pr), 0);
    free(pr);
    return rc;
}

/* The pair list and its state-tree proof verify against the committed root:
 * the basis of a verifiable permit or deny. Absence of a pair with no
 * grant is provable too. */
START_TEST(test_pair_list_proves_against_root)
{
    fx *f = fx_open();
    chain_tx t;
    grant_std(f, &t, 1, K_GW);
    ck_assert_int_eq(submit(f, &t, 1), 0);
    ck_assert_int_eq(expect_committed_pair(f, 1, K_GW), 0);
    ck_assert_int_eq(expect_committed_pair(f, 1, K_LAB), CHAIN_ENOTFOUND);
    fx_close(f);
}
END_TEST

/* Checks read pair lists and registry records through the store's value
 * cache (store.c): every answer follows the commit before it, from an
 * absent pair to a grant, a revoke, and lists that grow past what a slot
 * keeps. */
START_TEST(test_checks_follow_commits)
{
    static const char *scopes[] = {"Condition", "Encounter", "Immunization", "Procedure", "Specimen", "Goal", "Media", "Patient"};
    fx *f = fx_open();
    chain_tx t;
    chain_hash id;
    chain_check_result r = check(f, 1, K_GW, "Observation", "TREAT", now_s(f));
    ck_assert_int_eq(r.decision, CHAIN_DENY);
    ck_assert_str_eq(r.reason, "no grant from this patient to this grantee");
    expect_committed_pair(f, 1, K_GW);
    grant_std(f, &t, 1, K_GW);
    ck_assert_int_eq(submit_id(f, &t, 1, &id), 0);
    r = check(f, 1, K_GW, "Observation", "TREAT", now_s(f));
    ck_assert_int_eq(r.decision, CHAIN_PERMIT);
    expect_committed_pair(f, 1, K_GW);
    revoke_tx(f, &t, &id);
    ck_assert_int_eq(submit(f, &t, 1), 0);
    r = check(f, 1, K_GW, "Observation", "TREAT", now_s(f));
    ck_assert_int_eq(r.decision, CHAIN_DENY);
    ck_assert_str_eq(r.reason, "grant revoked");
    expect_committed_pair(f, 1, K_GW);
    for (size_t i = 0; i < sizeof scopes / sizeof scopes[0]; i++) {
        r = check(f, 1, K_GW, scopes[i], "TREAT", now_s(f));   /* read (and kept) before the grant */
        ck_assert_int_eq(r.decision, CHAIN_DENY);
        uint64_t now = (f->time_ms + 1000) / 1000;
        grant(f, &t, 1, K_GW, scopes[i], "TREAT", now - 10, now + 86400);
        ck_assert_int_eq(submit(f, &t, 1), 0);
        for (size_t j = 0; j <= i; j++) {
            r = check(f, 1, K_GW, scopes[j], "TREAT", now_s(f));
            ck_assert_int_eq(r.decision, CHAIN_PERMIT);
        }
        r = check(f, 1, K_GW, "Observation", "TREAT", now_s(f));
        ck_assert_str_eq(r.reason, "grant revoked");
        expect_committed_pair(f, 1, K_GW);
    }
    fx_close(f);
}
END_TEST

START_TEST(test_every_deny_reason)
{
    fx *f = fx_open();
    chain_tx t;
    chain_hash id;
    uint64_t now = (f->time_ms + 1000) / 1000;
    /* Patient 1: a grant from now+100 to now+200. */
    grant(f, &t, 1, K_GW, "Observation", "TREAT", now + 100, now + 200);
    ck_assert_int_eq(submit(f, &t, 1), 0);
    chain_check_result r = check(f, 1, K_GW, "Observation", "TREAT", now + 50);
    ck_assert_int_eq(r.decision, CHAIN_DENY);
    ck_assert_str_eq(r.reason, "grant not yet valid");
    ck_assert_int_eq(r.has_grant, 1);
    r = check(f, 1, K_GW, "Observation", "TREAT", now + 200);
    ck_assert_str_eq(r.reason, "grant expired");
    r = check(f, 1, K_GW, "Observation", "TREAT", now + 100);
    ck_assert_int_eq(r.decision, CHAIN_PERMIT);
    r = check(f, 1, K_GW, "Condition", "TREAT", now + 150);
    ck_assert_int_eq(r.decision, CHAIN_DENY);
    ck_assert_str_eq(r.reason, "scope not covered");
    r = check(f, 1, K_GW, "Observation", "HRESCH", now + 150);
    ck_assert_int_eq(r.decision, CHAIN_DENY);
    ck_assert_str_eq(r.reason, "purpose not covered");
    r = check(f, 2, K_GW, "Observation", "TREAT", now + 150);
    ck_assert_int_eq(r.decision, CHAIN_DENY);
    ck_assert_int_eq(r.has_grant, 0);
    ck_assert_str_eq(r.reason, "no grant from this patient to this grantee");
    r = check(f, 1, K_LAB, "Observation", "TREAT", now + 150);
    ck_assert_str_eq(r.reason, "no grant from this patient to this grantee");
    /* Revoked. */
    grant_std(f, &t, 3, K_GW);
    ck_assert_int_eq(submit_id(f, &t, 3, &id), 0);
    revoke_tx(f, &t, &id);
    ck_assert_int_eq(submit(f, &t, 3), 0);
    r = check(f, 3, K_GW, "Observation", "TREAT", now_s(f));
    ck_assert_int_eq(r.decision, CHAIN_DENY);
    ck_assert_str_eq(r.reason, "grant revoked");
    /* A second, covering grant wins over the revoked one. */
    grant_std(f, &t, 3, K_GW);
    ck_assert_int_eq(submit(f, &t, 3), 0);
    r = check(f, 3, K_GW, "Observation", "TREAT", now_s(f));
    ck_assert_int_eq(r.decision, CHAIN_PERMIT);
    /* Bad codes are an error, not a deny. */
    chain_pubkey p = pub_n(f, 1), g = pub_n(f, K_GW);
    ck_assert_int_eq(chain_check(f->st, &r, &p, &g, "NotAScope", "TREAT", now), CHAIN_ECODE);
    ck_assert_int_eq(chain_check(f->st, &r, &p, &g, "Observation", "NOPE", now), CHAIN_ECODE);
    fx_close(f);
}
END_TEST

START_TEST(test_revoke_rules)
{
    fx *f = fx_open();
    chain_tx t;
    chain_hash id1, id2, missing;
    grant_std(f, &t, 1, K_GW);
    ck_assert_int_eq(submit_id(f, &t, 1, &id1), 0);
    /* A stranger may not revoke. */
    revoke_tx(f, &t, &id1);
    ck_assert_int_eq(submit(f, &t, K_STRANGER), CHAIN_EPERM);
    /* Nor may the grantee. */
    revoke_tx(f, &t, &id1);
    ck_assert_int_eq(submit(f, &t, K_GW), CHAIN_EPERM);
    /* The patient may, once. */
    revoke_tx(f, &t, &id1);
    ck_assert_int_eq(submit(f, &t, 1), 0);
    chain_grant_record rec;
    ck_assert_int_eq(chain_store_get_grant(f->st, &id1, &rec), 0);
    ck_assert_int_eq(rec.status, CHAIN_GRANT_REVOKED);
    ck_assert_uint_eq(rec.revoked_height, chain_store_height(f->st));
    revoke_tx(f, &t, &id1);
    ck_assert_int_eq(submit(f, &t, 1), CHAIN_ESTATE);
    /* Unknown grant. */
    memset(missing.b, 0x42, 32);
    revoke_tx(f, &t, &missing);
    ck_assert_int_eq(submit(f, &t, 1), CHAIN_ENOTFOUND);
    /* The guardian may revoke for the patient. */
    set_guardian(f, &t, K_GUARD, 0);
    ck_assert_int_eq(submit(f, &t, 2), 0);
    grant_std(f, &t, 2, K_GW);
    ck_assert_int_eq(submit_id(f, &t, 2, &id2), 0);
    revoke_tx(f, &t, &id2);
    ck_assert_int_eq(submit(f, &t, K_GUARD), 0);
    ck_assert_int_eq(chain_store_get_grant(f->st, &id2, &rec), 0);
    ck_assert_int_eq(rec.status, CHAIN_GRANT_REVOKED);
    fx_close(f);
}
END_TEST

START_TEST(test_guardian_set_and_remove)
{
    fx *f = fx_open();
    chain_tx t;
    chain_pubkey p = pub_n(f, 1), gk = pub_n(f, K_GUARD), out;
    /* The guardian cannot grant before being named. */
    grant_std(f, &t, 1, K_GW);
    ck_assert_int_eq(submit(f, &t, K_GUARD), CHAIN_EPERM);
    ck_assert_int_eq(chain_store_guardian(f->st, &p, &out), CHAIN_ENOTFOUND);
    /* Removing a guardian that is not there. */
    set_guardian(f, &t, K_GUARD, 1);
    ck_assert_int_eq(submit(f, &t, 1), CHAIN_ENOTFOUND);
    /* One's own guardian: refused. */
    set_guardian(f, &t, 1, 0);
    ck_assert_int_eq(submit(f, &t, 1), CHAIN_EPERM);
    set_guardian(f, &t, K_GUARD, 0);
    ck_assert_int_eq(submit(f, &t, 1), 0);
    ck_assert_int_eq(chain_store_guardian(f->st, &p, &out), 0);
    ck_assert_mem_eq(out.b, gk.b, 32);
    /* Now the guardian grants for the patient. */
    chain_hash id;
    grant_std(f, &t, 1, K_GW);
    ck_assert_int_eq(submit_id(f, &t, K_GUARD, &id), 0);
    chain_grant_record rec;
    ck_assert_int_eq(chain_store_get_grant(f->st, &id, &rec), 0);
    ck_assert_mem_eq(rec.granted_by.b, gk.b, 32);
    ck_assert_mem_eq(rec.grant.patient.b, p.b, 32);
    /* But not for another patient. */
    grant_std(f, &t, 2, K_GW);
    ck_assert_int_eq(submit(f, &t, K_GUARD), CHAIN_EPERM);
    /* Removal must name the current guardian. */
    set_guardian(f, &t, K_STRANGER, 1);
    ck_assert_int_eq(submit(f, &t, 1), CHAIN_ESTATE);
    set_guardian(f, &t, K_GUARD, 1);
    ck_assert_int_eq(submit(f, &t, 1), 0);
    ck_assert_int_eq(chain_store_guardian(f->st, &p, &out), CHAIN_ENOTFOUND);
    grant_std(f, &t, 1, K_GW);
    ck_assert_int_eq(submit(f, &t, K_GUARD), CHAIN_EPERM);
    fx_close(f);
}
END_TEST

START_TEST(test_replayed_nonce_refused)
{
    fx *f = fx_open();
    chain_tx t;
    uint8_t buf[CHAIN_TX_BYTES_MAX];
    grant_std(f, &t, 1, K_GW);
    t.nonce = 5;
    size_t n = sign_encode(f, &t, 1, buf);
    ck_assert_int_eq(commit_tx(f, buf, n), 0);
    /* The same bytes again, and a lower nonce. */
    ck_assert_int_eq(commit_tx(f, buf, n), CHAIN_ENONCE);
    grant_std(f, &t, 1, K_GW);
    t.nonce = 4;
    n = sign_encode(f, &t, 1, buf);
    ck_assert_int_eq(commit_tx(f, buf, n), CHAIN_ENONCE);
    /* Within one block: the second copy is refused. */
    grant_std(f, &t, 1, K_GW);
    t.nonce = 6;
    n = sign_encode(f, &t, 1, buf);
    chain_exec *ex = NULL;
    ck_assert_int_eq(chain_exec_begin(&ex, f->st, f->time_ms + 1000), 0);
    ck_assert_int_eq(chain_exec_tx(ex, buf, n, 0), 0);
    ck_assert_int_eq(chain_exec_tx(ex, buf, n, 0), CHAIN_ENONCE);
    chain_exec_abort(ex);
    chain_pubkey p = pub_n(f, 1);
    ck_assert_uint_eq(chain_store_nonce(f->st, &p), 5);
    fx_close(f);
}
END_TEST

START_TEST(test_grant_rules)
{
    fx *f = fx_open();
    chain_tx t;
    uint8_t buf[CHAIN_TX_BYTES_MAX];
    /* Unknown grantee; grantee without the grantee role. */
    grant_std(f, &t, 1, K_STRANGER);
    ck_assert_int_eq(submit(f, &t, 1), CHAIN_ENOTFOUND);
    grant_std(f, &t, 1, K_GWONLY);
    ck_assert_int_eq(submit(f, &t, 1), CHAIN_EPERM);
    /* A stranger grants for patient 1. */
    grant_std(f, &t, 1, K_GW);
    ck_assert_int_eq(submit(f, &t, K_STRANGER), CHAIN_EPERM);
    /* Already over at block time. */
    uint64_t now = (f->time_ms + 1000) / 1000;
    grant(f, &t, 1, K_GW, "Observation", "TREAT", now - 100, now);
    ck_assert_int_eq(submit(f, &t, 1), CHAIN_ETIME);
    /* Created too far from the block time. */
    grant_std(f, &t, 1, K_GW);
    t.created_at = now - CHAIN_TX_CLOCK_SKEW_S - 1;
    ck_assert_int_eq(submit(f, &t, 1), CHAIN_ETIME);
    grant_std(f, &t, 1, K_GW);
    t.created_at = now + CHAIN_TX_CLOCK_SKEW_S;
    ck_assert_int_eq(submit(f, &t, 1), 0);
    /* Wrong chain id. */
    grant_std(f, &t, 1, K_GW);
    strcpy(t.chain_id, "other-chain");
    ck_assert_int_eq(submit(f, &t, 1), CHAIN_ECHAINID);
    /* Bad signature: refused unless the caller vouches it checked it. */
    grant_std(f, &t, 1, K_GW);
    t.nonce = 100;
    ck_assert_int_eq(chain_tx_sign(&t, key_n(f, 1)), 0);
    t.sig.b[5] ^= 1;
    size_t n = 0;
    ck_assert_int_eq(chain_tx_encode(buf, sizeof buf, &n, &t), 0);
    ck_assert_int_eq(commit_tx(f, buf, n), CHAIN_ESIG);
    chain_exec *ex = NULL;
    ck_assert_int_eq(chain_exec_begin(&ex, f->st, f->time_ms + 1000), 0);
    ck_assert_int_eq(chain_exec_tx(ex, buf, n, 1), 0);
    chain_exec_abort(ex);
    /* Garbage and oversize input. */
    ck_assert_int_eq(chain_exec_begin(&ex, f->st, f->time_ms + 1000), 0);
    memset(buf, 0xff, 64);
    ck_assert_int_lt(chain_exec_tx(ex, buf, 64, 0), 0);
    ck_assert_int_eq(chain_exec_tx(ex, buf, 0, 0), CHAIN_EBOUNDS);
    ck_assert_int_eq(chain_exec_tx(ex, buf, CHAIN_TX_BYTES_MAX + 1, 0), CHAIN_EBOUNDS);
    chain_exec_abort(ex);
    fx_close(f);
}
END_TEST

static int count_grant(void *arg, const chain_grant_record *rec);

/* A full pair list refuses a new grant until something is revoked or
 * expired; then the inactive records are pruned. */
START_TEST(test_pair_list_full_then_pruned)
{
    fx *f = fx_open();
    chain_tx t;
    uint8_t buf[CHAIN_TX_BYTES_MAX];
    chain_hash ids[CHAIN_GRANTS_PER_PAIR_MAX];
    chain_exec *ex = NULL;
    chain_block b;
    chain_block_init(&b);
    ck_assert_int_eq(chain_exec_begin(&ex, f->st, f->time_ms + 1000), 0);
    uint64_t now = (f->time_ms + 1000) / 1000;
    for (unsigned i = 0; i < CHAIN_GRANTS_PER_PAIR_MAX; i++) {
        grant_std(f, &t, 1, K_GW);
        if (i == 5) t.body.grant.not_after = now + 2;   /* expires two blocks on */
        t.nonce = ++f->nonce[1];
        size_t n = sign_encode(f, &t, 1, buf);
        chain_tx_hash(&ids[i], buf, n);
        ck_assert_int_eq(chain_exec_tx(ex, buf, n, 0), 0);
    }
    ck_assert_int_eq(chain_exec_finish(ex, &b), 0);
    ck_assert_int_eq(chain_exec_commit(ex, &b), 0);
    chain_exec_abort(ex);
    chain_block_free(&b);
    f->time_ms += 1000;
    chain_hash root0, root1;
    chain_store_state_root(f->st, &root0);
    grant_std(f, &t, 1, K_GW);
    ck_assert_int_eq(submit(f, &t, 1), CHAIN_ESTATE);
    chain_store_state_root(f->st, &root1);
    ck_assert_mem_eq(root0.b, root1.b, 32);
    revoke_tx(f, &t, &ids[3]);
    ck_assert_int_eq(submit(f, &t, 1), 0);
    chain_hash nid;
    grant_std(f, &t, 1, K_GW);
    ck_assert_int_eq(submit_id(f, &t, 1, &nid), 0);
    chain_grant_record rec;
    ck_assert_int_eq(chain_store_get_grant(f->st, &ids[3], &rec), CHAIN_ENOTFOUND);
    ck_assert_int_eq(chain_store_get_grant(f->st, &ids[5], &rec), CHAIN_ENOTFOUND);
    int count = 0;
    chain_pubkey p1 = pub_n(f, 1);
    ck_assert_int_eq(chain_store_patient_grants(f->st, &p1, count_grant, &count), 0);
    ck_assert_int_eq(count, CHAIN_GRANTS_PER_PAIR_MAX - 1);
    ck_assert_int_eq(chain_store_get_grant(f->st, &ids[4], &rec), 0);
    ck_assert_int_eq(chain_store_get_grant(f->st, &nid, &rec), 0);
    fx_close(f);
}
END_TEST

/* ------------------------------------------------------------------ access records */

static void access_tx(fx *f, chain_tx *t, const chain_hash *id, const char *scope, const char *purpose)
{
    base(f, t, CHAIN_TX_ACCESS_RECORD);
    t->body.access_record.grant_id = *id;
    strcpy(t->body.access_record.scope.s, scope);
    strcpy(t->body.access_record.purpose.s, purpose);
    memset(t->body.access_record.request_hash.b, 0x33, 32);
}

START_TEST(test_access_record_rules)
{
    fx *f = fx_open();
    chain_tx t;
    chain_hash id, aid, missing, later;
    /* The grant is to the grantee-only lab; gateway 200 releases under it. */
    grant_std(f, &t, 1, K_LAB);
    ck_assert_int_eq(submit_id(f, &t, 1, &id), 0);
    access_tx(f, &t, &id, "Observation", "TREAT");
    ck_assert_int_eq(submit_id(f, &t, K_GW, &aid), 0);
    uint8_t k[CHAIN__KEY_MAX], *v = NULL;
    size_t vl = 0;
    chain_pubkey p = pub_n(f, 1);
    size_t kl = chain__key_access(k, &p, &id, &aid);
    ck_assert_int_eq(chain__store_get(f->st, &v, &vl, k, kl), 0);
    ck_assert_uint_gt(vl, 0);
    free(v);
    /* Not a gateway: the patient, the lab, a stranger. */
    access_tx(f, &t, &id, "Observation", "TREAT");
    ck_assert_int_eq(submit(f, &t, 1), CHAIN_EPERM);
    access_tx(f, &t, &id, "Observation", "TREAT");
    ck_assert_int_eq(submit(f, &t, K_LAB), CHAIN_EPERM);
    access_tx(f, &t, &id, "Observation", "TREAT");
    ck_assert_int_eq(submit(f, &t, K_STRANGER), CHAIN_EPERM);
    /* Not covered. */
    access_tx(f, &t, &id, "Condition", "TREAT");
    ck_assert_int_eq(submit(f, &t, K_GWONLY), CHAIN_EPERM);
    access_tx(f, &t, &id, "Observation", "HRESCH");
    ck_assert_int_eq(submit(f, &t, K_GWONLY), CHAIN_EPERM);
    memset(missing.b, 0x24, 32);
    access_tx(f, &t, &missing, "Observation", "TREAT");
    ck_assert_int_eq(submit(f, &t, K_GWONLY), CHAIN_ENOTFOUND);
    /* Not yet valid. */
    uint64_t now = (f->time_ms + 1000) / 1000;
    grant(f, &t, 2, K_LAB, "Observation", "TREAT", now + 1000, now + 2000);
    ck_assert_int_eq(submit_id(f, &t, 2, &later), 0);
    access_tx(f, &t, &later, "Observation", "TREAT");
    ck_assert_int_eq(submit(f, &t, K_GW), CHAIN_ETIME);
    /* Revoked. */
    revoke_tx(f, &t, &id);
    ck_assert_int_eq(submit(f, &t, 1), 0);
    access_tx(f, &t, &id, "Observation", "TREAT");
    ck_assert_int_eq(submit(f, &t, K_GW), CHAIN_ESTATE);
    fx_close(f);
}
END_TEST

/* ------------------------------------------------------------------ governance */

static void institution(fx *f, chain_tx *t, chain_tx_type type, unsigned key, unsigned n_end,
                        unsigned first_endorser)
{
    base(f, t, type);
    chain_institution_tx *b = &t->body.institution;
    b->key = pub_n(f, key);
    if (type == CHAIN_TX_REGISTER_INSTITUTION) {
        strcpy(b->name, "new-lab");
        b->roles = CHAIN_ROLE_GRANTEE;
    }
    chain_hash h;
    ck_assert_int_eq(chain_institution_sighash(&h, CID, type, b), 0);
    b->n_endorsements = n_end;
    for (unsigned i = 0; i < n_end; i++) {
        unsigned k = first_endorser + i;
        b->endorsements[i].signer = pub_n(f, k);
        ck_assert_int_eq(chain_sign(key_n(f, k), &b->endorsements[i].sig, &h), 0);
    }
}

START_TEST(test_governance)
{
    fx *f = fx_open();
    chain_tx t;
    chain_institution inst;
    chain_pubkey nk = pub_n(f, K_NEW);
    /* Quorum of 4 validators is 3: two endorsements are not enough. */
    institution(f, &t, CHAIN_TX_REGISTER_INSTITUTION, K_NEW, 2, 100);
    ck_assert_int_eq(submit(f, &t, 100), CHAIN_EPERM);
    /* Signed by a non-validator. */
    institution(f, &t, CHAIN_TX_REGISTER_INSTITUTION, K_NEW, 3, 100);
    ck_assert_int_eq(submit(f, &t, K_GW), CHAIN_EPERM);
    /* An endorsement by a non-validator. */
    institution(f, &t, CHAIN_TX_REGISTER_INSTITUTION, K_NEW, 3, 100);
    t.body.institution.endorsements[2].signer = pub_n(f, K_GW);
    ck_assert_int_eq(submit(f, &t, 100), CHAIN_EPERM);
    /* A bad endorsement signature. */
    institution(f, &t, CHAIN_TX_REGISTER_INSTITUTION, K_NEW, 3, 100);
    t.body.institution.endorsements[1].sig.b[0] ^= 1;
    ck_assert_int_eq(submit(f, &t, 100), CHAIN_ESIG);
    ck_assert_int_eq(chain_store_institution(f->st, &nk, &inst), CHAIN_ENOTFOUND);
    /* Quorum: accepted. */
    institution(f, &t, CHAIN_TX_REGISTER_INSTITUTION, K_NEW, 3, 101);
    ck_assert_int_eq(submit(f, &t, 100), 0);
    ck_assert_int_eq(chain_store_institution(f->st, &nk, &inst), 0);
    ck_assert_str_eq(inst.name, "new-lab");
    ck_assert_uint_eq(inst.roles, CHAIN_ROLE_GRANTEE);
    /* Once: a second registration is refused. */
    institution(f, &t, CHAIN_TX_REGISTER_INSTITUTION, K_NEW, 4, 100);
    ck_assert_int_eq(submit(f, &t, 101), CHAIN_EEXISTS);
    /* The new institution can receive grants. */
    grant_std(f, &t, 1, K_NEW);
    ck_assert_int_eq(submit(f, &t, 1), 0);
    chain_check_result r = check(f, 1, K_NEW, "Observation", "TREAT", now_s(f));
    ck_assert_int_eq(r.decision, CHAIN_PERMIT);
    /* Removal: not a validator, not an unknown key. */
    institution(f, &t, CHAIN_TX_REMOVE_INSTITUTION, 102, 3, 100);
    ck_assert_int_eq(submit(f, &t, 100), CHAIN_EPERM);
    institution(f, &t, CHAIN_TX_REMOVE_INSTITUTION, K_STRANGER, 3, 100);
    ck_assert_int_eq(submit(f, &t, 100), CHAIN_ENOTFOUND);
    institution(f, &t, CHAIN_TX_REMOVE_INSTITUTION, K_NEW, 2, 100);
    ck_assert_int_eq(submit(f, &t, 100), CHAIN_EPERM);
    institution(f, &t, CHAIN_TX_REMOVE_INSTITUTION, K_NEW, 3, 100);
    ck_assert_int_eq(submit(f, &t, 100), 0);
    ck_assert_int_eq(chain_store_institution(f->st, &nk, &inst), CHAIN_ENOTFOUND);
    grant_std(f, &t, 2, K_NEW);
    ck_assert_int_eq(submit(f, &t, 2), CHAIN_ENOTFOUND);
    /* Its grant stays in state but permits nothing once it is deregistered. */
    r = check(f, 1, K_NEW, "Observation", "TREAT", now_s(f));
    ck_assert_int_eq(r.decision, CHAIN_DENY);
    ck_assert_str_eq(r.reason, "grantee institution is not registered");
    ck_assert_int_eq(r.has_grant, 1);
    /* A registered institution without the grantee role, and a key never
     * registered, are denied for the same cause. */
    r = check(f, 1, K_GWONLY, "Observation", "TREAT", now_s(f));
    ck_assert_str_eq(r.reason, "grantee institution does not hold the grantee role");
    r = check(f, 1, K_STRANGER, "Observation", "TREAT", now_s(f));
    ck_assert_int_eq(r.decision, CHAIN_DENY);
    ck_assert_str_eq(r.reason, "grantee institution is not registered");
    /* Registered again (by governance, with the grantee role), the grant counts again. */
    institution(f, &t, CHAIN_TX_REGISTER_INSTITUTION, K_NEW, 3, 100);
    ck_assert_int_eq(submit(f, &t, 100), 0);
    r = check(f, 1, K_NEW, "Observation", "TREAT", now_s(f));
    ck_assert_int_eq(r.decision, CHAIN_PERMIT);
    /* Genesis institutions are there from the start. */
    chain_pubkey v0 = pub_n(f, 100);
    ck_assert_int_eq(chain_store_institution(f->st, &v0, &inst), 0);
    ck_assert_uint_ne(inst.roles & CHAIN_ROLE_VALIDATOR, 0);
    ck_assert_str_eq(inst.p2p_addr, "127.0.0.1:7800");
    fx_close(f);
}
END_TEST

/* ------------------------------------------------------------------ atomicity */

START_TEST(test_failed_tx_changes_nothing)
{
    fx *f = fx_open();
    chain_tx t;
    uint8_t a[CHAIN_TX_BYTES_MAX], bad[CHAIN_TX_BYTES_MAX], c[CHAIN_TX_BYTES_MAX];
    chain_hash root0, id;
    chain_store_state_root(f->st, &root0);
    /* Alone, a failing tx leaves an empty block with the same root. */
    chain_exec *ex = NULL;
    chain_block b;
    chain_block_init(&b);
    revoke_tx(f, &t, &root0);
    t.nonce = 1;
    size_t nbad = sign_encode(f, &t, 1, bad);
    ck_assert_int_eq(chain_exec_begin(&ex, f->st, f->time_ms + 1000), 0);
    ck_assert_int_eq(chain_exec_tx(ex, bad, nbad, 0), CHAIN_ENOTFOUND);
    ck_assert_int_eq(chain_exec_finish(ex, &b), 0);
    ck_assert_uint_eq(b.n_txs, 0);
    ck_assert_mem_eq(b.hdr.state_root.b, root0.b, 32);
    chain_exec_abort(ex);
    chain_block_free(&b);

    /* Between two good txs, a failing one (its nonce would have been new)
     * leaves exactly the state of the two good ones. */
    grant_std(f, &t, 1, K_GW);
    t.nonce = 1;
    size_t na = sign_encode(f, &t, 1, a);
    chain_tx_hash(&id, a, na);
    grant_std(f, &t, 2, K_STRANGER);   /* unknown grantee */
    t.nonce = 1;
    nbad = sign_encode(f, &t, 2, bad);
    revoke_tx(f, &t, &id);
    t.nonce = 2;
    size_t nc = sign_encode(f, &t, 1, c);

    fx *g = fx_open();   /* a second store from the same genesis */
    chain_block bb;
    chain_block_init(&bb);
    ck_assert_int_eq(chain_exec_begin(&ex, f->st, f->time_ms + 1000), 0);
    ck_assert_int_eq(chain_exec_tx(ex, a, na, 0), 0);
    ck_assert_int_eq(chain_exec_tx(ex, bad, nbad, 0), CHAIN_ENOTFOUND);
    ck_assert_int_eq(chain_exec_tx(ex, c, nc, 0), 0);
    ck_assert_int_eq(chain_exec_finish(ex, &b), 0);
    chain_exec_abort(ex);
    ck_assert_int_eq(chain_exec_begin(&ex, g->st, g->time_ms + 1000), 0);
    ck_assert_int_eq(chain_exec_tx(ex, a, na, 0), 0);
    ck_assert_int_eq(chain_exec_tx(ex, c, nc, 0), 0);
    ck_assert_int_eq(chain_exec_finish(ex, &bb), 0);
    chain_exec_abort(ex);
    ck_assert_uint_eq(b.n_txs, 2);
    ck_assert_mem_eq(b.hdr.state_root.b, bb.hdr.state_root.b, 32);
    ck_assert_mem_eq(b.hdr.tx_root.b, bb.hdr.tx_root.b, 32);
    chain_block_free(&b);
    chain_block_free(&bb);
    fx_close(g);
    fx_close(f);
}
END_TEST

START_TEST(test_exec_misuse)
{
    fx *f = fx_open();
    chain_tx t;
    uint8_t buf[CHAIN_TX_BYTES_MAX];
    chain_exec *ex = NULL, *ex2 = NULL;
    chain_block b, b2;
    chain_block_init(&b);
    chain_block_init(&b2);
    ck_assert_int_eq(chain_exec_begin(&ex, f->st, GEN_MS - 1), CHAIN_ETIME);
    ck_assert_int_eq(chain_exec_begin(&ex, f->st, f->time_ms + 1000), 0);
    ck_assert_int_eq(chain_exec_begin(&ex2, f->st, f->time_ms + 1000), 0);
    grant_std(f, &t, 1, K_GW);
    t.nonce = 1;
    size_t n = sign_encode(f, &t, 1, buf);
    ck_assert_int_eq(chain_exec_tx(ex, buf, n, 0), 0);
    ck_assert_int_eq(chain_exec_finish(ex, &b), 0);
    ck_assert_int_eq(chain_exec_tx(ex, buf, n, 0), CHAIN_ESTATE);   /* sealed */
    /* A block that is not what was executed. */
    b.hdr.time_ms++;
    ck_assert_int_eq(chain_exec_commit(ex, &b), CHAIN_EBLOCK);
    b.hdr.time_ms--;
    /* The right header with other txs: one byte changed, one tx more. */
    b.txs[0][n - 1] ^= 1;
    ck_assert_int_eq(chain_exec_commit(ex, &b), CHAIN_EBLOCK);
    b.txs[0][n - 1] ^= 1;
    ck_assert_int_eq(chain_block_add_tx(&b, buf, n), 0);
    ck_assert_int_eq(chain_exec_commit(ex, &b), CHAIN_EBLOCK);
    b.n_txs--;
    free(b.txs[1]);
    ck_assert_int_eq(chain_exec_commit(ex, &b), 0);
    ck_assert_int_eq(chain_exec_commit(ex, &b), CHAIN_ESTATE);     /* twice */
    /* ex2 began on the old tip: stale now, before and after sealing. */
    ck_assert_int_eq(chain_exec_finish(ex2, &b2), CHAIN_ESTATE);
    ck_assert_int_eq(chain_exec_commit(ex2, &b2), CHAIN_ESTATE);
    chain_exec_abort(ex);
    chain_exec_abort(ex2);
    chain_block_free(&b);
    chain_block_free(&b2);
    ck_assert_uint_eq(chain_store_height(f->st), 1);
    fx_close(f);
}
END_TEST

/* ------------------------------------------------------------------ persistence */

static int count_grant(void *arg, const chain_grant_record *rec)
{
    (void)rec;
    (*(int *)arg)++;
    return 0;
}

static int stop_at_first(void *arg, const chain_grant_record *rec)
{
    (void)rec;
    (*(int *)arg)++;
    return 7;
}

START_TEST(test_commit_then_reopen)
{
    fx *f = fx_open();
    chain_tx t;
    chain_hash id;
    grant_std(f, &t, 1, K_GW);
    ck_assert_int_eq(submit_id(f, &t, 1, &id), 0);
    grant_std(f, &t, 1, K_LAB);
    ck_assert_int_eq(submit(f, &t, 1), 0);
    set_guardian(f, &t, K_GUARD, 0);
    ck_assert_int_eq(submit(f, &t, 2), 0);
    uint8_t vote[3] = {1, 2, 3};
    ck_assert_int_eq(chain_store_put_meta(f->st, "cons/state", vote, sizeof vote), 0);
    uint64_t h = chain_store_height(f->st);
    chain_hash tip, root;
    chain_store_tip_hash(f->st, &tip);
    chain_store_state_root(f->st, &root);
    chain_store_stats ss;
    ck_assert_int_eq(chain_store_stats_get(NULL, &ss), CHAIN_EINVAL);
    ck_assert_int_eq(chain_store_stats_get(f->st, NULL), CHAIN_EINVAL);
    ck_assert_int_eq(chain_store_stats_get(f->st, &ss), 0);
    uint64_t sst_before = ss.sst_bytes;
    chain_store_close(f->st);

    ck_assert_int_eq(chain_store_open(&f->st, f->dir, f->g), 0);
    ck_assert_uint_eq(chain_store_height(f->st), h);
    /* Opening replays the write-ahead log into table files: they grew. */
    ck_assert_int_eq(chain_store_stats_get(f->st, &ss), 0);
    ck_assert_uint_gt(ss.sst_bytes, sst_before);
    /* A full compaction leaves nothing pending and every answer as it was. */
    ck_assert_int_eq(chain_store_compact(NULL), CHAIN_EINVAL);
    ck_assert_int_eq(chain_store_compact(f->st), 0);
    ck_assert_int_eq(chain_store_stats_get(f->st, &ss), 0);
    ck_assert_uint_eq(ss.compaction_pending_bytes, 0);
    ck_assert_uint_gt(ss.sst_bytes, 0);
    chain_hash tip2, root2;
    chain_store_tip_hash(f->st, &tip2);
    chain_store_state_root(f->st, &root2);
    ck_assert_mem_eq(tip.b, tip2.b, 32);
    ck_assert_mem_eq(root.b, root2.b, 32);
    chain_check_result r = check(f, 1, K_GW, "Observation", "TREAT", now_s(f));
    ck_assert_int_eq(r.decision, CHAIN_PERMIT);
    ck_assert_mem_eq(r.grant.id.b, id.b, 32);
    int count = 0;
    chain_pubkey p1 = pub_n(f, 1), p2 = pub_n(f, 2), gk = pub_n(f, K_GUARD), out;
    ck_assert_int_eq(chain_store_patient_grants(f->st, &p1, count_grant, &count), 0);
    ck_assert_int_eq(count, 2);
    count = 0;
    ck_assert_int_eq(chain_store_patient_grants(f->st, &p1, stop_at_first, &count), 7);
    ck_assert_int_eq(count, 1);
    count = 0;
    ck_assert_int_eq(chain_store_patient_grants(f->st, &p2, count_grant, &count), 0);
    ck_assert_int_eq(count, 0);
    ck_assert_int_eq(chain_store_guardian(f->st, &p2, &out), 0);
    ck_assert_mem_eq(out.b, gk.b, 32);
    ck_assert_uint_eq(chain_store_nonce(f->st, &p1), 2);
    uint8_t *mv = NULL;
    size_t ml = 0;
    ck_assert_int_eq(chain_store_get_meta(f->st, "cons/state", &mv, &ml), 0);
    ck_assert_uint_eq(ml, 3);
    ck_assert_mem_eq(mv, vote, 3);
    free(mv);
    ck_assert_int_eq(chain_store_get_meta(f->st, "nothing", &mv, &ml), CHAIN_ENOTFOUND);
    ck_assert_int_eq(chain_store_put_meta(f->st, "", vote, 1), CHAIN_EBOUNDS);
    /* The chain goes on after reopening. */
    grant_std(f, &t, 3, K_GW);
    ck_assert_int_eq(submit(f, &t, 3), 0);
    ck_assert_uint_eq(chain_store_height(f->st), h + 1);
    fx_close(f);
}
END_TEST

START_TEST(test_other_genesis_refused)
{
    fx *f = fx_open();
    chain_store_close(f->st);
    f->st = NULL;
    chain_genesis *other = genesis_make(f, "other-chain", 4);
    chain_store *st = NULL;
    ck_assert_int_eq(chain_store_open(&st, f->dir, other), CHAIN_ESTATE);
    ck_assert_ptr_null(st);
    free(other);
    /* The right genesis still opens it. */
    ck_assert_int_eq(chain_store_open(&f->st, f->dir, f->g), 0);
    fx_close(f);
}
END_TEST

/* ------------------------------------------------------------------ blocks from elsewhere */

/* Builds on f a block with a guardian change and a grant, without
 * committing it; returns it in *b. */
static void build_block(fx *f, chain_block *b)
{
    chain_tx t;
    uint8_t buf[CHAIN_TX_BYTES_MAX];
    chain_exec *ex = NULL;
    ck_assert_int_eq(chain_exec_begin(&ex, f->st, f->time_ms + 1000), 0);
    set_guardian(f, &t, K_GUARD, 0);
    t.nonce = ++f->nonce[1];
    size_t n = sign_encode(f, &t, 1, buf);
    ck_assert_int_eq(chain_exec_tx(ex, buf, n, 0), 0);
    grant_std(f, &t, 1, K_GW);
    t.nonce = ++f->nonce[K_GUARD];
    n = sign_encode(f, &t, K_GUARD, buf);
    ck_assert_int_eq(chain_exec_tx(ex, buf, n, 0), 0);
    ck_assert_int_eq(chain_exec_finish(ex, b), 0);
    b->hdr.proposer = pub_n(f, 100);
    b->hdr.view = 0;
    chain_exec_abort(ex);
}

static int exec_block_flags_rc(fx *f, const chain_block *b, const uint8_t *sig_checked)
{
    chain_exec *ex = NULL;
    int rc = chain_exec_block(&ex, f->st, b, sig_checked);
    if (rc == 0) chain_exec_abort(ex);
    else ck_assert_ptr_null(ex);
    return rc;
}

static int exec_block_rc(fx *f, const chain_block *b)
{
    return exec_block_flags_rc(f, b, NULL);
}

START_TEST(test_exec_block_from_another_store)
{
    fx *a = fx_open(), *b = fx_open();
    chain_block blk;
    chain_block_init(&blk);
    build_block(a, &blk);
    /* Tampered copies are refused. */
    chain_block bad = blk;
    bad.hdr.state_root.b[0] ^= 1;
    ck_assert_int_eq(exec_block_rc(b, &bad), CHAIN_EBLOCK);
    bad = blk;
    bad.hdr.prev_hash.b[0] ^= 1;
    ck_assert_int_eq(exec_block_rc(b, &bad), CHAIN_EBLOCK);
    bad = blk;
    bad.hdr.height = 2;
    ck_assert_int_eq(exec_block_rc(b, &bad), CHAIN_EBLOCK);
    bad = blk;
    bad.hdr.time_ms = GEN_MS - 1;
    ck_assert_int_eq(exec_block_rc(b, &bad), CHAIN_EBLOCK);
    bad = blk;
    bad.hdr.tx_root.b[0] ^= 1;
    ck_assert_int_eq(exec_block_rc(b, &bad), CHAIN_EBLOCK);
    /* A bad tx: flip a signature byte (the last bytes of the encoding). */
    chain_block badtx;
    chain_block_init(&badtx);
    badtx.hdr = blk.hdr;
    ck_assert_int_eq(chain_block_add_tx(&badtx, blk.txs[0], blk.tx_lens[0]), 0);
    ck_assert_int_eq(chain_block_add_tx(&badtx, blk.txs[1], blk.tx_lens[1]), 0);
    badtx.txs[1][badtx.tx_lens[1] - 1] ^= 1;
    chain_tx_root(&badtx.hdr.tx_root, &badtx);
    ck_assert_int_eq(exec_block_rc(b, &badtx), CHAIN_ESIG);
    /* Flags for pre-verified txs skip only those: the bad one, not marked,
     * is still checked and refused. */
    const uint8_t first_checked[2] = {1, 0}, none_checked[2] = {0, 0};
    ck_assert_int_eq(exec_block_flags_rc(b, &badtx, first_checked), CHAIN_ESIG);
    ck_assert_int_eq(exec_block_flags_rc(b, &badtx, none_checked), CHAIN_ESIG);
    /* The txs in another order: the grant comes before the guardian exists. */
    uint8_t *tmp = badtx.txs[0];
    size_t tl = badtx.tx_lens[0];
    badtx.txs[1][badtx.tx_lens[1] - 1] ^= 1;
    badtx.txs[0] = badtx.txs[1];
    badtx.tx_lens[0] = badtx.tx_lens[1];
    badtx.txs[1] = tmp;
    badtx.tx_lens[1] = tl;
    chain_tx_root(&badtx.hdr.tx_root, &badtx);
    ck_assert_int_eq(exec_block_rc(b, &badtx), CHAIN_EPERM);
    chain_block_free(&badtx);
    ck_assert_uint_eq(chain_store_height(b->st), 0);

    /* The genuine block is accepted and commits to the same state. */
    chain_exec *ex = NULL;
    ck_assert_int_eq(chain_exec_block(&ex, b->st, &blk, NULL), 0);
    ck_assert_int_eq(chain_exec_commit(ex, &blk), 0);
    chain_exec_abort(ex);
    chain_hash rb;
    chain_store_state_root(b->st, &rb);
    ck_assert_mem_eq(rb.b, blk.hdr.state_root.b, 32);
    chain_check_result r = check(b, 1, K_GW, "Observation", "TREAT", blk.hdr.time_ms / 1000);
    ck_assert_int_eq(r.decision, CHAIN_PERMIT);
    /* And the store that built it commits it too, to the same tip. */
    const uint8_t all_checked[2] = {1, 1};
    ck_assert_int_eq(chain_exec_block(&ex, a->st, &blk, all_checked), 0);
    ck_assert_int_eq(chain_exec_commit(ex, &blk), 0);
    chain_exec_abort(ex);
    chain_hash ta, tb;
    chain_store_tip_hash(a->st, &ta);
    chain_store_tip_hash(b->st, &tb);
    ck_assert_mem_eq(ta.b, tb.b, 32);
    chain_block_free(&blk);
    fx_close(a);
    fx_close(b);
}
END_TEST

START_TEST(test_apply_committed_needs_cert)
{
    fx *a = fx_open(), *b = fx_open();
    chain_block blk;
    chain_block_init(&blk);
    build_block(a, &blk);
    ck_assert_int_eq(chain_apply_committed(b->st, &blk), CHAIN_ECERT);   /* no cert */
    sign_cert(a, &blk, 2);
    ck_assert_int_eq(chain_apply_committed(b->st, &blk), CHAIN_ECERT);   /* below quorum */
    sign_cert(a, &blk, 3);
    blk.cert.sigs[2].sig.b[1] ^= 1;
    ck_assert_int_eq(chain_apply_committed(b->st, &blk), CHAIN_ECERT);   /* one bad sig */
    ck_assert_uint_eq(chain_store_height(b->st), 0);
    sign_cert(a, &blk, 3);
    ck_assert_int_eq(chain_apply_committed(b->st, &blk), 0);
    ck_assert_uint_eq(chain_store_height(b->st), 1);
    /* The stored block carries the certificate. */
    chain_block got;
    chain_block_init(&got);
    ck_assert_int_eq(chain_store_get_block(b->st, 1, &got), 0);
    ck_assert_uint_eq(got.cert.n_sigs, 3);
    ck_assert_int_eq(chain_cert_verify(&got.cert, b->g, &got.hdr), 0);
    chain_block_free(&got);
    /* Applying it again: it no longer links to the tip. */
    ck_assert_int_eq(chain_apply_committed(b->st, &blk), CHAIN_EBLOCK);
    chain_block_free(&blk);
    fx_close(a);
    fx_close(b);
}
END_TEST

/* Block sync's unsynced apply checks exactly what the synced one does, and
 * after chain_store_sync the block is there when the store reopens. */
START_TEST(test_apply_committed_unsynced_then_sync)
{
    fx *a = fx_open(), *b = fx_open();
    chain_block blk;
    chain_block_init(&blk);
    build_block(a, &blk);
    ck_assert_int_eq(chain_apply_committed_unsynced(b->st, &blk, NULL), CHAIN_ECERT);   /* no cert */
    sign_cert(a, &blk, 3);
    blk.cert.sigs[0].sig.b[0] ^= 1;
    ck_assert_int_eq(chain_apply_committed_unsynced(b->st, &blk, NULL), CHAIN_ECERT);
    ck_assert_uint_eq(chain_store_height(b->st), 0);
    sign_cert(a, &blk, 3);
    ck_assert_int_eq(chain_apply_committed_unsynced(b->st, &blk, NULL), 0);
    ck_assert_uint_eq(chain_store_height(b->st), 1);
    ck_assert_int_eq(chain_apply_committed_unsynced(b->st, &blk, NULL), CHAIN_EBLOCK);
    ck_assert_int_eq(chain_store_sync(b->st), 0);
    ck_assert_int_eq(chain_store_sync(NULL), CHAIN_EINVAL);
    chain_hash tip, root, tip2, root2;
    chain_store_tip_hash(b->st, &tip);
    chain_store_state_root(b->st, &root);
    chain_store_close(b->st);
    ck_assert_int_eq(chain_store_open(&b->st, b->dir, b->g), 0);
    ck_assert_uint_eq(chain_store_height(b->st), 1);
    chain_store_tip_hash(b->st, &tip2);
    chain_store_state_root(b->st, &root2);
    ck_assert_mem_eq(tip.b, tip2.b, 32);
    ck_assert_mem_eq(root.b, root2.b, 32);
    chain_block_free(&blk);
    fx_close(a);
    fx_close(b);
}
END_TEST

/* A block holds at most CHAIN_BLOCK_TXS_MAX txs. */
START_TEST(test_block_tx_limit)
{
    fx *f = fx_open();
    chain_tx t;
    uint8_t buf[CHAIN_TX_BYTES_MAX];
    chain_exec *ex = NULL;
    ck_assert_int_eq(chain_exec_begin(&ex, f->st, f->time_ms + 1000), 0);
    for (unsigned i = 0; i <= CHAIN_BLOCK_TXS_MAX; i++) {
        set_guardian(f, &t, K_GUARD + (i & 1), 0);
        t.nonce = i + 1;
        size_t n = sign_encode(f, &t, 1, buf);
        int rc = chain_exec_tx(ex, buf, n, 1);
        ck_assert_int_eq(rc, i < CHAIN_BLOCK_TXS_MAX ? 0 : CHAIN_EBOUNDS);
    }
    chain_block b;
    chain_block_init(&b);
    ck_assert_int_eq(chain_exec_finish(ex, &b), 0);
    ck_assert_uint_eq(b.n_txs, CHAIN_BLOCK_TXS_MAX);
    ck_assert_int_eq(chain_exec_commit(ex, &b), 0);
    chain_exec_abort(ex);
    chain_block_free(&b);
    chain_pubkey p1 = pub_n(f, 1);
    ck_assert_uint_eq(chain_store_nonce(f->st, &p1), CHAIN_BLOCK_TXS_MAX);
    fx_close(f);
}
END_TEST

/* Parallel signature checks flag exactly the txs whose signature verifies,
 * on one thread or several, and refuse misuse. */
START_TEST(test_txs_verify_parallel)
{
    enum { N = 200 };
    fx *f = fx_open();
    chain_tx t;
    chain_block b;   /* only as an owner of the encodings */
    chain_block_init(&b);
    uint8_t buf[CHAIN_TX_BYTES_MAX];
    for (unsigned i = 0; i < N; i++) {
        grant_std(f, &t, 1 + i % 3, K_GW);
        t.nonce = i + 1;
        size_t n = sign_encode(f, &t, 1 + i % 3, buf);
        if (i % 7 == 3) buf[n - 1] ^= 1;       /* a bad signature */
        if (i % 11 == 5) n = 3;                /* does not decode */
        ck_assert_int_eq(chain_block_add_tx(&b, buf, n), 0);
    }
    const uint8_t *const *txs = (const uint8_t *const *)b.txs;
    uint8_t one[N], many[N];
    ck_assert_int_eq(chain_txs_verify(one, txs, b.tx_lens, N, 1), 0);
    ck_assert_int_eq(chain_txs_verify(many, txs, b.tx_lens, N, 4), 0);
    for (unsigned i = 0; i < N; i++) {
        ck_assert_uint_eq(one[i], i % 7 != 3 && i % 11 != 5);
        ck_assert_uint_eq(many[i], one[i]);
    }
    /* The flags agree with execution: a flagged tx applies without a check. */
    chain_exec *ex = NULL;
    ck_assert_int_eq(chain_exec_begin(&ex, f->st, f->time_ms + 1000), 0);
    ck_assert_int_eq(chain_exec_tx(ex, b.txs[0], b.tx_lens[0], one[0]), 0);
    ck_assert_int_eq(chain_exec_tx(ex, b.txs[3], b.tx_lens[3], one[3]), CHAIN_ESIG);
    chain_exec_abort(ex);
    ck_assert_int_eq(chain_txs_verify(one, txs, b.tx_lens, 0, 2), 0);
    ck_assert_int_eq(chain_txs_verify(NULL, NULL, NULL, 0, 1), 0);
    ck_assert_int_eq(chain_txs_verify(one, txs, b.tx_lens, N, 0), CHAIN_EINVAL);
    ck_assert_int_eq(chain_txs_verify(one, txs, b.tx_lens, N, CHAIN_VERIFY_THREADS_MAX + 1), CHAIN_EINVAL);
    ck_assert_int_eq(chain_txs_verify(NULL, txs, b.tx_lens, N, 2), CHAIN_EINVAL);
    unsigned d = chain_verify_threads_default();
    ck_assert(d >= 1 && d <= CHAIN_VERIFY_THREADS_MAX);
    chain_block_free(&b);
    fx_close(f);
}
END_TEST

/* A run of synced blocks checked behind the caller: each block's verdict
 * and flags match what the plain checks say, on one thread or several;
 * blocks apply in order until a bad certificate, which changes nothing. */
static void blocks_check_run(fx *a, chain_block *blk, size_t k, unsigned threads)
{
    fx *b = fx_open();
    chain_blocks_check *ck = NULL;
    ck_assert_int_eq(chain_blocks_check_start(&ck, chain_store_genesis(b->st), blk, k, threads), 0);
    const uint8_t *ok = NULL;
    ck_assert_int_eq(chain_blocks_check_wait(ck, k - 1, &ok), 0);   /* out of order: fine */
    ck_assert_uint_eq(ok[0], 1);
    ck_assert_uint_eq(ok[1], 0);                                     /* the tampered tx */
    ck_assert_int_eq(chain_blocks_check_wait(ck, k, &ok), CHAIN_EINVAL);
    ck_assert_int_eq(chain_apply_checked(a->st, ck, 0), CHAIN_EINVAL);   /* another genesis */
    for (size_t i = 0; i + 2 < k; i++) ck_assert_int_eq(chain_apply_checked(b->st, ck, i), 0);
    ck_assert_int_eq(chain_blocks_check_wait(ck, k - 2, &ok), CHAIN_ECERT);
    ck_assert_int_eq(chain_apply_checked(b->st, ck, k - 2), CHAIN_ECERT);
    ck_assert_uint_eq(chain_blocks_check_unwritten(ck, NULL), k - 2);
    ck_assert_int_eq(chain_blocks_check_write(b->st, ck), 0);
    ck_assert_uint_eq(chain_store_height(b->st), k - 2);
    chain_blocks_check_end(ck);
    chain_hash want, tip;
    chain_header_hash(&blk[k - 3].hdr, &want);
    chain_store_tip_hash(b->st, &tip);
    ck_assert_mem_eq(want.b, tip.b, 32);
    fx_close(b);
}

START_TEST(test_blocks_check_background)
{
    enum { K = 24 };
    fx *a = fx_open();
    chain_block blk[K];
    for (size_t i = 0; i < K; i++) {
        chain_block_init(&blk[i]);
        build_block(a, &blk[i]);
        sign_cert(a, &blk[i], 3);
        ck_assert_int_eq(chain_apply_committed(a->st, &blk[i]), 0);
    }
    blk[K - 2].cert.sigs[1].sig.b[5] ^= 1;                    /* below quorum */
    blk[K - 1].txs[1][blk[K - 1].tx_lens[1] - 1] ^= 1;        /* a bad tx signature */
    blocks_check_run(a, blk, K, 1);
    blocks_check_run(a, blk, K, 4);
    chain_blocks_check *ck = NULL;
    const chain_genesis *g = chain_store_genesis(a->st);
    ck_assert_int_eq(chain_blocks_check_start(&ck, g, blk, K, 0), CHAIN_EINVAL);
    ck_assert_int_eq(chain_blocks_check_start(&ck, g, blk, K, CHAIN_VERIFY_THREADS_MAX + 1), CHAIN_EINVAL);
    ck_assert_int_eq(chain_blocks_check_start(&ck, NULL, blk, K, 2), CHAIN_EINVAL);
    ck_assert_int_eq(chain_blocks_check_start(&ck, g, NULL, K, 2), CHAIN_EINVAL);
    /* Ended before anything was applied: the helpers stop. */
    ck_assert_int_eq(chain_blocks_check_start(&ck, g, blk, K, 4), 0);
    chain_blocks_check_end(ck);
    chain_blocks_check_end(NULL);
    for (size_t i = 0; i < K; i++) chain_block_free(&blk[i]);
    fx_close(a);
}
END_TEST

/* Builds on f (without committing) a block of `per` day-long grants to
 * K_GW, from patients first..first + per - 1. */
static void build_grants_block(fx *f, chain_block *b, unsigned first, unsigned per)
{
    chain_tx t;
    uint8_t buf[CHAIN_TX_BYTES_MAX];
    chain_exec *ex = NULL;
    ck_assert_int_eq(chain_exec_begin(&ex, f->st, f->time_ms + 1000), 0);
    for (unsigned p = first; p < first + per; p++) {
        grant_std(f, &t, p, K_GW);
        t.nonce = ++f->nonce[p];
        size_t n = sign_encode(f, &t, p, buf);
        ck_assert_int_eq(chain_exec_tx(ex, buf, n, 0), 0);
    }
    ck_assert_int_eq(chain_exec_finish(ex, b), 0);
    b->hdr.proposer = pub_n(f, 100);
    chain_exec_abort(ex);
    sign_cert(f, b, 3);
}

static void tip_is(chain_store *st, const chain_block *b)
{
    chain_hash want, tip, root;
    chain_header_hash(&b->hdr, &want);
    chain_store_tip_hash(st, &tip);
    chain_store_state_root(st, &root);
    ck_assert_uint_eq(chain_store_height(st), b->hdr.height);
    ck_assert_mem_eq(want.b, tip.b, 32);
    ck_assert_mem_eq(root.b, b->hdr.state_root.b, 32);
}

static int has_page(chain_store *st, const chain_hash *h)
{
    uint8_t *v = NULL;
    size_t n = 0;
    int rc = chain__store_node_get(st, h, &v, &n);
    free(v);
    ck_assert(rc == 0 || rc == CHAIN_ENOTFOUND);
    return rc == 0;
}

/* Applies blk[0..n) to st as one run and writes it: the tip is the last. */
static void write_as_run(chain_store *st, const chain_block *blk, size_t n, unsigned threads)
{
    chain_blocks_check *ck = NULL;
    ck_assert_int_eq(chain_blocks_check_start(&ck, chain_store_genesis(st), blk, n, threads), 0);
    for (size_t i = 0; i < n; i++) ck_assert_int_eq(chain_apply_checked(st, ck, i), 0);
    ck_assert_int_eq(chain_blocks_check_write(st, ck), 0);
    tip_is(st, &blk[n - 1]);
    chain_blocks_check_end(ck);
}

/* Applied synced blocks wait in memory, each executed on top of the one
 * before, until a write updates the tree once, checks the last state root
 * and stores them in one batch: the tip, the state and every proof are
 * those of the blocks committed one by one (after reopening too), a store
 * that moved under unwritten blocks takes none of them, nor does one whose
 * last block's root is wrong. */
START_TEST(test_blocks_written_as_one_run)
{
    enum { K = 12, PER = 3, FIRST = 20 };
    fx *a = fx_open(), *b = fx_open(), *c = fx_open();
    chain_block blk[K];
    for (unsigned i = 0; i < K; i++) {
        chain_block_init(&blk[i]);
        build_grants_block(a, &blk[i], FIRST + PER * i, PER);
        ck_assert_int_eq(chain_apply_committed(a->st, &blk[i]), 0);
        a->time_ms += 1000;
    }
    chain_blocks_check *ck = NULL;
    ck_assert_int_eq(chain_blocks_check_start(&ck, chain_store_genesis(b->st), blk, K, 2), 0);
    ck_assert_uint_eq(chain_blocks_check_unwritten(ck, NULL), 0);
    for (size_t i = 0; i < 5; i++) ck_assert_int_eq(chain_apply_checked(b->st, ck, i), 0);
    ck_assert_uint_eq(chain_store_height(b->st), 0);   /* nothing written yet */
    size_t txs = 0;
    ck_assert_uint_eq(chain_blocks_check_unwritten(ck, &txs), 5);
    ck_assert_uint_eq(txs, 5 * PER);
    ck_assert_int_eq(chain_apply_checked(b->st, ck, 6), CHAIN_EBLOCK);   /* not the next one */
    ck_assert_int_eq(chain_blocks_check_write(a->st, ck), CHAIN_EINVAL);  /* another genesis */
    ck_assert_int_eq(chain_blocks_check_write(NULL, ck), CHAIN_EINVAL);
    ck_assert_int_eq(chain_blocks_check_write(b->st, NULL), CHAIN_EINVAL);
    ck_assert_int_eq(chain_blocks_check_write(b->st, ck), 0);
    tip_is(b->st, &blk[4]);
    ck_assert_uint_eq(chain_blocks_check_unwritten(ck, NULL), 0);
    ck_assert_int_eq(chain_blocks_check_write(b->st, ck), 0);   /* nothing to write */
    tip_is(b->st, &blk[4]);
    for (size_t i = 5; i < K; i++) ck_assert_int_eq(chain_apply_checked(b->st, ck, i), 0);
    ck_assert_int_eq(chain_blocks_check_write(b->st, ck), 0);
    chain_blocks_check_end(ck);
    tip_is(b->st, &blk[K - 1]);
    /* The state root of a block inside the batch was replaced before the
     * write: its page is not stored (one by one, it is). */
    ck_assert(has_page(a->st, &blk[K - 2].hdr.state_root));
    ck_assert(!has_page(b->st, &blk[K - 2].hdr.state_root));
    ck_assert(has_page(b->st, &blk[K - 1].hdr.state_root));
    /* Reopened (no cached pages), every grant still proves. */
    chain_store_close(b->st);
    ck_assert_int_eq(chain_store_open(&b->st, b->dir, b->g), 0);
    tip_is(b->st, &blk[K - 1]);
    chain_pubkey gw = pub_n(b, K_GW);
    for (unsigned p = FIRST; p < FIRST + K * PER; p++) {
        chain_check_result r = check(b, p, K_GW, "Observation", "TREAT", now_s(a));
        ck_assert_int_eq(r.decision, CHAIN_PERMIT);
        chain_check_proof pr;
        chain_pubkey pa = pub_n(b, p);
        ck_assert_int_eq(chain_check_prove(b->st, &pr, &pa, &gw), 0);
        ck_assert_uint_eq(pr.height, K);
        chain_check_proof_free(&pr);
        ck_assert_uint_eq(chain_store_nonce(b->st, &pa), 1);
    }
    uint64_t h = 0;
    uint32_t pos = 0;
    chain_hash txid;
    chain_tx_hash(&txid, blk[7].txs[2], blk[7].tx_lens[2]);
    ck_assert_int_eq(chain_store_get_tx(b->st, &txid, &h, &pos), 0);
    ck_assert_uint_eq(h, 8);
    ck_assert_uint_eq(pos, 2);
    /* The store moves under an unwritten block: neither the next block nor
     * the write goes on, and ending drops it. */
    ck_assert_int_eq(chain_blocks_check_start(&ck, chain_store_genesis(c->st), blk, K, 1), 0);
    ck_assert_int_eq(chain_apply_checked(c->st, ck, 0), 0);
    ck_assert_int_eq(chain_apply_committed(c->st, &blk[0]), 0);
    ck_assert_int_eq(chain_apply_checked(c->st, ck, 1), CHAIN_ESTATE);
    ck_assert_int_eq(chain_blocks_check_write(c->st, ck), CHAIN_ESTATE);
    chain_blocks_check_end(ck);
    tip_is(c->st, &blk[0]);
    /* The last block's state root is checked once, at the write, against
     * the run's changes: a certified block with a wrong one applies, and
     * then nothing of the run is written and it takes no more blocks. */
    fx *d = fx_open();
    chain_block bad[4];
    memcpy(bad, blk, sizeof bad);   /* shares the txs of blk: not freed */
    bad[3].hdr.state_root.b[0] ^= 1;
    sign_cert(a, &bad[3], 3);
    ck_assert_int_eq(chain_blocks_check_start(&ck, chain_store_genesis(d->st), bad, 4, 2), 0);
    for (size_t i = 0; i < 4; i++) ck_assert_int_eq(chain_apply_checked(d->st, ck, i), 0);
    ck_assert_int_eq(chain_blocks_check_write(d->st, ck), CHAIN_EBLOCK);
    ck_assert_uint_eq(chain_store_height(d->st), 0);
    ck_assert_int_eq(chain_apply_checked(d->st, ck, 3), CHAIN_EBLOCK);
    ck_assert_int_eq(chain_blocks_check_write(d->st, ck), CHAIN_EBLOCK);
    chain_blocks_check_end(ck);
    write_as_run(d->st, bad, 3, 1);   /* the good ones */
    for (size_t i = 0; i < K; i++) chain_block_free(&blk[i]);
    fx_close(a);
    fx_close(b);
    fx_close(c);
    fx_close(d);
}
END_TEST

/* Builds on f (without committing) a certified block in which patient 1
 * sets K_GUARD as guardian, or removes it. */
static void build_guardian_block(fx *f, chain_block *b, int remove)
{
    chain_tx t;
    uint8_t buf[CHAIN_TX_BYTES_MAX];
    chain_exec *ex = NULL;
    ck_assert_int_eq(chain_exec_begin(&ex, f->st, f->time_ms + 1000), 0);
    set_guardian(f, &t, K_GUARD, remove);
    t.nonce = ++f->nonce[1];
    size_t n = sign_encode(f, &t, 1, buf);
    ck_assert_int_eq(chain_exec_tx(ex, buf, n, 0), 0);
    ck_assert_int_eq(chain_exec_finish(ex, b), 0);
    b->hdr.proposer = pub_n(f, 100);
    chain_exec_abort(ex);
    sign_cert(f, b, 3);
}

/* A run's one tree update deletes as blocks one by one do: a guardian
 * removed in the run, and one set and removed within it (a delete of a
 * leaf the committed tree never had), leave the root every header
 * claims. */
START_TEST(test_run_deletes_as_blocks_do)
{
    enum { K = 5 };
    fx *a = fx_open(), *b = fx_open();
    chain_block blk[K];
    for (unsigned i = 0; i < K; i++) {
        chain_block_init(&blk[i]);
        if (i == 1) build_grants_block(a, &blk[i], 20, 2);
        else build_guardian_block(a, &blk[i], i % 2);   /* set, -, set, remove, set */
        ck_assert_int_eq(chain_apply_committed(a->st, &blk[i]), 0);
        a->time_ms += 1000;
    }
    write_as_run(b->st, blk, 1, 1);       /* the guardian is committed */
    write_as_run(b->st, blk + 1, 3, 2);   /* ... and removed in this run */
    write_as_run(b->st, blk + 4, 1, 1);
    /* Set and removed within one run: the removal is of a leaf the
     * committed tree does not hold. */
    fx *c = fx_open();
    write_as_run(c->st, blk, 4, 1);
    for (size_t i = 0; i < K; i++) chain_block_free(&blk[i]);
    fx_close(a);
    fx_close(b);
    fx_close(c);
}
END_TEST

/* A closed store opened with RocksDB directly, to look at or damage what
 * it wrote. Column families in store.c's order. */
enum { RAW_STATE = 3, RAW_TREE = 4, RAW_META = 5, RAW_CFS = 6 };
typedef struct {
    rocksdb_options_t *o;
    rocksdb_t *db;
    rocksdb_column_family_handle_t *cf[RAW_CFS];
} raw_store;

static void raw_open(raw_store *r, const char *dir)
{
    const char *names[RAW_CFS] = {"default", "blocks", "txindex", "state", "tree", "meta"};
    const rocksdb_options_t *cfo[RAW_CFS];
    char *err = NULL;
    r->o = rocksdb_options_create();
    for (int i = 0; i < RAW_CFS; i++) cfo[i] = r->o;
    r->db = rocksdb_open_column_families(r->o, dir, RAW_CFS, names, cfo, r->cf, &err);
    ck_assert_ptr_null(err);
}

static void raw_close(raw_store *r)
{
    for (int i = 0; i < RAW_CFS; i++) rocksdb_column_family_handle_destroy(r->cf[i]);
    rocksdb_close(r->db);
    rocksdb_options_destroy(r->o);
}

/* Keys of column family cf, and how many of them start with `first`. */
static size_t raw_count(raw_store *r, int cf, char first, size_t *with_first)
{
    rocksdb_readoptions_t *ro = rocksdb_readoptions_create();
    rocksdb_iterator_t *it = rocksdb_create_iterator_cf(r->db, ro, r->cf[cf]);
    size_t n = 0;
    *with_first = 0;
    for (rocksdb_iter_seek_to_first(it); rocksdb_iter_valid(it); rocksdb_iter_next(it)) {
        size_t kl = 0;
        const char *k = rocksdb_iter_key(it, &kl);
        n++;
        *with_first += kl > 0 && k[0] == first;
    }
    rocksdb_iter_destroy(it);
    rocksdb_readoptions_destroy(ro);
    return n;
}

/* Deletes the newest "c:dirty:" entry of a closed store, as a lost write
 * would: the keys it names then never reach the tree on reopening. */
static void drop_newest_dirty(const char *dir)
{
    raw_store r;
    raw_open(&r, dir);
    rocksdb_readoptions_t *ro = rocksdb_readoptions_create();
    rocksdb_iterator_t *it = rocksdb_create_iterator_cf(r.db, ro, r.cf[RAW_META]);
    rocksdb_iter_seek_for_prev(it, "c:dirty;", 8);
    ck_assert(rocksdb_iter_valid(it));
    size_t kl = 0;
    char *err = NULL;
    const char *k = rocksdb_iter_key(it, &kl);
    ck_assert(kl == 16 && memcmp(k, "c:dirty:", 8) == 0);
    rocksdb_writeoptions_t *wo = rocksdb_writeoptions_create();
    rocksdb_delete_cf(r.db, wo, r.cf[RAW_META], k, kl, &err);
    ck_assert_ptr_null(err);
    rocksdb_iter_destroy(it);
    rocksdb_writeoptions_destroy(wo);
    rocksdb_readoptions_destroy(ro);
    raw_close(&r);
}

/* Tree pages wait in the store and are written at a flush, only those
 * under the flushed root, and only to the tree column family; reopened
 * between flushes, a store rebuilds the tip's tree from the keys its
 * commits changed, and its proofs and the next blocks are those of a store
 * that wrote every page at once. Losing a commit's list of keys is found
 * on reopening (CHAIN_EIO). */
START_TEST(test_tree_pages_held_then_written)
{
    enum { K = 10, PER = 12, FIRST = 20 };   /* ~250 leaves: three page levels */
    fx *a = fx_open(), *b = fx_open();
    chain__store_set_tree_flush(a->st, SIZE_MAX, 4);
    chain__store_set_tree_flush(b->st, 0, 1);   /* every commit writes its pages */
    chain_block blk[K];
    for (unsigned i = 0; i < K; i++) {
        chain_block_init(&blk[i]);
        build_grants_block(a, &blk[i], FIRST + PER * i, PER);
        ck_assert_int_eq(chain_apply_committed(a->st, &blk[i]), 0);
        ck_assert_int_eq(chain_apply_committed(b->st, &blk[i]), 0);
        a->time_ms += 1000;
        ck_assert_uint_eq(chain__store_pending_pages(b->st), 0);
        /* The fourth commit (and the eighth) flushes. */
        ck_assert_uint_eq(chain__store_pending_pages(a->st) == 0, i % 4 == 3);
        if (i == 1) ck_assert(has_page(a->st, &blk[1].hdr.state_root));   /* held */
        if (i == 3) {
            ck_assert(has_page(a->st, &blk[3].hdr.state_root));
            ck_assert(!has_page(a->st, &blk[2].hdr.state_root));   /* superseded: never written */
            ck_assert(has_page(b->st, &blk[2].hdr.state_root));
        }
        if (i == 5) {
            /* Reopened between flushes: the held pages are rebuilt. */
            chain_store_close(a->st);
            ck_assert_int_eq(chain_store_open(&a->st, a->dir, a->g), 0);
            chain__store_set_tree_flush(a->st, SIZE_MAX, 4);
            tip_is(a->st, &blk[i]);
            ck_assert_uint_gt(chain__store_pending_pages(a->st), 0);
        }
    }
    tip_is(b->st, &blk[K - 1]);
    /* Reopened with a cold page cache: every grant proves. */
    chain_store_close(a->st);
    ck_assert_int_eq(chain_store_open(&a->st, a->dir, a->g), 0);
    tip_is(a->st, &blk[K - 1]);
    chain_pubkey gw = pub_n(a, K_GW);
    for (unsigned p = FIRST; p < FIRST + K * PER; p++) {
        chain_check_proof pr;
        chain_pubkey pa = pub_n(a, p);
        ck_assert_int_eq(chain_check_prove(a->st, &pr, &pa, &gw), 0);
        ck_assert_uint_eq(pr.height, K);
        chain_check_proof_free(&pr);
    }
    /* Pages went to the tree column family, and only pages did. */
    chain_store_close(a->st);
    raw_store r;
    size_t pages, in_state;
    raw_open(&r, a->dir);
    size_t tree_keys = raw_count(&r, RAW_TREE, CHAIN__PFX_NODE, &pages);
    ck_assert_uint_gt(pages, 0);
    ck_assert_uint_eq(tree_keys, pages);
    ck_assert_uint_gt(raw_count(&r, RAW_STATE, CHAIN__PFX_NODE, &in_state), 0);
    ck_assert_uint_eq(in_state, 0);
    raw_close(&r);
    /* Two commits since the last flush; the newest's keys are lost. */
    drop_newest_dirty(a->dir);
    a->st = NULL;
    ck_assert_int_eq(chain_store_open(&a->st, a->dir, a->g), CHAIN_EIO);
    ck_assert_ptr_null(a->st);
    for (size_t i = 0; i < K; i++) chain_block_free(&blk[i]);
    fx_close(a);
    fx_close(b);
}
END_TEST

/* A data folder from before the tree column family (its pages in
 * "state") is refused rather than misread: here every page moves back to
 * "state", and the reopened store cannot read its tip's tree. */
START_TEST(test_pages_outside_tree_family_refused)
{
    fx *f = fx_open();
    chain__store_set_tree_flush(f->st, 0, 1);   /* every commit writes its pages */
    chain_block blk;
    chain_block_init(&blk);
    build_grants_block(f, &blk, 20, 6);
    ck_assert_int_eq(chain_apply_committed(f->st, &blk), 0);
    chain_store_close(f->st);
    f->st = NULL;
    raw_store r;
    raw_open(&r, f->dir);
    rocksdb_readoptions_t *ro = rocksdb_readoptions_create();
    rocksdb_writeoptions_t *wo = rocksdb_writeoptions_create();
    rocksdb_writebatch_t *wb = rocksdb_writebatch_create();
    rocksdb_iterator_t *it = rocksdb_create_iterator_cf(r.db, ro, r.cf[RAW_TREE]);
    size_t moved = 0;
    for (rocksdb_iter_seek_to_first(it); rocksdb_iter_valid(it); rocksdb_iter_next(it), moved++) {
        size_t kl = 0, vl = 0;
        const char *k = rocksdb_iter_key(it, &kl), *v = rocksdb_iter_value(it, &vl);
        rocksdb_writebatch_put_cf(wb, r.cf[RAW_STATE], k, kl, v, vl);
        rocksdb_writebatch_delete_cf(wb, r.cf[RAW_TREE], k, kl);
    }
    char *err = NULL;
    rocksdb_write(r.db, wo, wb, &err);
    ck_assert_ptr_null(err);
    ck_assert_uint_gt(moved, 0);
    rocksdb_iter_destroy(it);
    rocksdb_writebatch_destroy(wb);
    rocksdb_writeoptions_destroy(wo);
    rocksdb_readoptions_destroy(ro);
    raw_close(&r);
    ck_assert_int_eq(chain_store_open(&f->st, f->dir, f->g), 0);
    chain_pubkey pa = pub_n(f, 20), gw = pub_n(f, K_GW);
    chain_check_proof pr;
    ck_assert_int_eq(chain_check_prove(f->st, &pr, &pa, &gw), CHAIN_EIO);
    chain_block_free(&blk);
    fx_close(f);
}
END_TEST

START_TEST(test_store_open_errors)
{
    fx *f = fx_open();
    chain_store *st = NULL;
    /* Already open (RocksDB's lock), a path that is a file, bad arguments. */
    ck_assert_int_eq(chain_store_open(&st, f->dir, f->g), CHAIN_EIO);
    char file[128];
    snprintf(file, sizeof file, "%s/CURRENT", f->dir);
    ck_assert_int_eq(chain_store_open(&st, file, f->g), CHAIN_EIO);
    ck_assert_ptr_null(st);
    ck_assert_int_eq(chain_store_open(&st, NULL, f->g), CHAIN_EINVAL);
    chain_genesis *g = malloc(sizeof *g);
    ck_assert_ptr_nonnull(g);
    *g = *f->g;
    g->n_validators = 0;
    ck_assert_int_eq(chain_store_open(&st, "/tmp/never-made", g), CHAIN_EINVAL);
    free(g);
    char longkey[200];
    memset(longkey, 'k', sizeof longkey - 1);
    longkey[sizeof longkey - 1] = 0;
    uint8_t *v = NULL;
    size_t n = 0;
    ck_assert_int_eq(chain_store_put_meta(f->st, longkey, (const uint8_t *)"x", 1), CHAIN_EBOUNDS);
    ck_assert_int_eq(chain_store_get_meta(f->st, longkey, &v, &n), CHAIN_EBOUNDS);
    /* Caller keys never reach the store's own meta records. */
    ck_assert_int_eq(chain_store_put_meta(f->st, "c:tip", (const uint8_t *)"x", 1), 0);
    chain_store_close(f->st);
    ck_assert_int_eq(chain_store_open(&f->st, f->dir, f->g), 0);
    ck_assert_uint_eq(chain_store_height(f->st), 0);
    fx_close(f);
}
END_TEST

/* CONSENT_BLOCK_CACHE_MB and CONSENT_ROW_CACHE_MB: a valid size opens the
 * store (and reopens it with another size); malformed or out-of-range
 * values fail with CHAIN_EINVAL and leave the store untouched. */
static void refuse_cache_env(fx *f, const char *name, const char *const *bad, size_t n)
{
    chain_store *st = NULL;
    for (size_t i = 0; i < n; i++) {
        ck_assert_int_eq(setenv(name, bad[i], 1), 0);
        ck_assert_msg(chain_store_open(&st, f->dir, f->g) == CHAIN_EINVAL, "%s accepted \"%s\"", name, bad[i]);
        ck_assert_ptr_null(st);
    }
    ck_assert_int_eq(unsetenv(name), 0);
}

START_TEST(test_store_block_cache_env)
{
    fx *f = fx_open();
    chain_store_close(f->st);
    f->st = NULL;
    static const char *const bad[] = {"", "abc", "12x", "-64", " 64", "7", "0", "1048577", "99999999"};
    refuse_cache_env(f, "CONSENT_BLOCK_CACHE_MB", bad, sizeof bad / sizeof bad[0]);
    ck_assert_int_eq(setenv("CONSENT_BLOCK_CACHE_MB", "8", 1), 0);
    ck_assert_int_eq(chain_store_open(&f->st, f->dir, f->g), 0);
    ck_assert_uint_eq(chain_store_height(f->st), 0);
    chain_store_close(f->st);
    ck_assert_int_eq(setenv("CONSENT_BLOCK_CACHE_MB", "1024", 1), 0);
    ck_assert_int_eq(chain_store_open(&f->st, f->dir, f->g), 0);
    ck_assert_int_eq(unsetenv("CONSENT_BLOCK_CACHE_MB"), 0);
    ck_assert_uint_eq(chain_store_height(f->st), 0);
    chain_store_close(f->st);
    f->st = NULL;
    /* The row cache may be off (0) but not malformed or beyond the bound. */
    static const char *const bad_row[] = {"", "x", "-1", "1048577", "12345678"};
    refuse_cache_env(f, "CONSENT_ROW_CACHE_MB", bad_row, sizeof bad_row / sizeof bad_row[0]);
    ck_assert_int_eq(setenv("CONSENT_ROW_CACHE_MB", "0", 1), 0);
    ck_assert_int_eq(chain_store_open(&f->st, f->dir, f->g), 0);
    ck_assert_int_eq(unsetenv("CONSENT_ROW_CACHE_MB"), 0);
    ck_assert_uint_eq(chain_store_height(f->st), 0);
    fx_close(f);
}
END_TEST

/* The overlay map: replace, deletion marks, the entry bound, merge. */
START_TEST(test_overlay_map)
{
    chain__map *a = chain__map_create(3), *b = chain__map_create(300);
    ck_assert_ptr_nonnull(a);
    ck_assert_ptr_nonnull(b);
    chain__map_entry e;
    ck_assert_int_eq(chain__map_put(a, (const uint8_t *)"k1", 2, (const uint8_t *)"v1", 2), 0);
    ck_assert_int_eq(chain__map_put(a, (const uint8_t *)"k1", 2, (const uint8_t *)"v11", 3), 0);
    ck_assert_int_eq(chain__map_put(a, (const uint8_t *)"k2", 2, NULL, 0), 0);
    ck_assert_int_eq(chain__map_put(a, (const uint8_t *)"k3", 2, (const uint8_t *)"v3", 2), 0);
    ck_assert_int_eq(chain__map_put(a, (const uint8_t *)"k4", 2, (const uint8_t *)"v4", 2), CHAIN_ENOMEM);
    ck_assert_uint_eq(chain__map_count(a), 3);
    ck_assert_int_eq(chain__map_get(a, &e, (const uint8_t *)"k4", 2), 0);
    ck_assert_int_eq(chain__map_get(a, &e, (const uint8_t *)"k1", 2), 1);
    ck_assert_uint_eq(e.vlen, 3);
    ck_assert_mem_eq(e.val, "v11", 3);
    ck_assert_int_eq(chain__map_get(a, &e, (const uint8_t *)"k2", 2), 1);
    ck_assert_ptr_null(e.val);
    for (unsigned i = 0; i < 200; i++) {
        uint8_t k[4] = {'x', (uint8_t)i, 0, 1};
        ck_assert_int_eq(chain__map_put(b, k, sizeof k, k, sizeof k), 0);
    }
    ck_assert_int_eq(chain__map_put(b, (const uint8_t *)"k1", 2, (const uint8_t *)"old", 3), 0);
    ck_assert_int_eq(chain__map_merge(b, a), 0);
    ck_assert_uint_eq(chain__map_count(a), 0);
    ck_assert_uint_eq(chain__map_count(b), 203);
    ck_assert_int_eq(chain__map_get(b, &e, (const uint8_t *)"k1", 2), 1);
    ck_assert_mem_eq(e.val, "v11", 3);
    size_t it = 0, seen = 0;
    while (chain__map_next(b, &it, &e)) seen++;
    ck_assert_uint_eq(seen, 203);
    /* A merge that would overflow the bound moves nothing. */
    chain__map *c = chain__map_create(1);
    ck_assert_int_eq(chain__map_merge(c, b), CHAIN_ENOMEM);
    ck_assert_uint_eq(chain__map_count(b), 203);
    chain__map_destroy(a);
    chain__map_destroy(b);
    chain__map_destroy(c);
}
END_TEST

/* ------------------------------------------------------------------ measurement */

static double mono_s(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

/* Prints (never asserts) how long a block of 1000 grants from distinct
 * patients takes to execute (signatures verified) and to commit. */
START_TEST(test_measure_block_of_1000_grants)
{
    enum { N = 1000 };
    fx *f = fx_open();
    uint8_t **txs = calloc(N, sizeof *txs);
    size_t *lens = calloc(N, sizeof *lens);
    ck_assert_ptr_nonnull(txs);
    ck_assert_ptr_nonnull(lens);
    chain_tx t;
    for (unsigned i = 0; i < N; i++) {
        uint8_t sec[32] = {0};
        sec[0] = 0x11;
        sec[30] = (uint8_t)(i >> 8);
        sec[31] = (uint8_t)i;
        chain_key *k = chain_key_create(sec);
        ck_assert_ptr_nonnull(k);
        grant_std(f, &t, 1, K_GW);
        chain_key_pubkey(k, &t.body.grant.patient);
        t.nonce = 1;
        ck_assert_int_eq(chain_tx_sign(&t, k), 0);
        txs[i] = malloc(CHAIN_TX_BYTES_MAX);
        ck_assert_int_eq(chain_tx_encode(txs[i], CHAIN_TX_BYTES_MAX, &lens[i], &t), 0);
        chain_key_destroy(k);
    }
    chain_exec *ex = NULL;
    chain_block b;
    chain_block_init(&b);
    double t0 = mono_s();
    ck_assert_int_eq(chain_exec_begin(&ex, f->st, f->time_ms + 1000), 0);
    for (unsigned i = 0; i < N; i++) ck_assert_int_eq(chain_exec_tx(ex, txs[i], lens[i], 0), 0);
    ck_assert_int_eq(chain_exec_finish(ex, &b), 0);
    double t1 = mono_s();
    ck_assert_int_eq(chain_exec_commit(ex, &b), 0);
    double t2 = mono_s();
    chain_exec_abort(ex);
    ck_assert_uint_eq(b.n_txs, N);
    chain_block_free(&b);
    f->time_ms += 1000;
    /* And checks from committed state. */
    chain_tx d;
    ck_assert_int_eq(chain_tx_decode(&d, txs[N / 2], lens[N / 2]), 0);
    chain_pubkey gw = pub_n(f, K_GW);
    chain_check_result r;
    enum { CHECKS = 20000 };
    double t3 = mono_s();
    for (unsigned i = 0; i < CHECKS; i++)
        ck_assert_int_eq(chain_check(f->st, &r, &d.body.grant.patient, &gw, "Observation", "TREAT", now_s(f)), 0);
    double t4 = mono_s();
    ck_assert_int_eq(r.decision, CHAIN_PERMIT);
    printf("measure: block of %d grants: execute %.1f ms, commit %.1f ms; %.0f checks/s\n", N,
           (t1 - t0) * 1e3, (t2 - t1) * 1e3, CHECKS / (t4 - t3));
    for (unsigned i = 0; i < N; i++) free(txs[i]);
    free(txs);
    free(lens);
    fx_close(f);
}
END_TEST

static Suite *state_suite(void)
{
    Suite *s = suite_create("chain_state");
    TCase *tc = tcase_create("state");
    tcase_set_timeout(tc, 120);
    tcase_add_test(tc, test_grant_then_check_permits);
    tcase_add_test(tc, test_pair_list_proves_against_root);
    tcase_add_test(tc, test_every_deny_reason);
    tcase_add_test(tc, test_revoke_rules);
    tcase_add_test(tc, test_checks_follow_commits);
    tcase_add_test(tc, test_guardian_set_and_remove);
    tcase_add_test(tc, test_replayed_nonce_refused);
    tcase_add_test(tc, test_grant_rules);
    tcase_add_test(tc, test_pair_list_full_then_pruned);
    tcase_add_test(tc, test_access_record_rules);
    tcase_add_test(tc, test_governance);
    tcase_add_test(tc, test_failed_tx_changes_nothing);
    tcase_add_test(tc, test_exec_misuse);
    tcase_add_test(tc, test_commit_then_reopen);
    tcase_add_test(tc, test_other_genesis_refused);
    tcase_add_test(tc, test_exec_block_from_another_store);
    tcase_add_test(tc, test_apply_committed_needs_cert);
    tcase_add_test(tc, test_apply_committed_unsynced_then_sync);
    tcase_add_test(tc, test_block_tx_limit);
    tcase_add_test(tc, test_txs_verify_parallel);
    tcase_add_test(tc, test_blocks_check_background);
    tcase_add_test(tc, test_blocks_written_as_one_run);
    tcase_add_test(tc, test_run_deletes_as_blocks_do);
    tcase_add_test(tc, test_tree_pages_held_then_written);
    tcase_add_test(tc, test_pages_outside_tree_family_refused);
    tcase_add_test(tc, test_store_open_errors);
    tcase_add_test(tc, test_store_block_cache_env);
    tcase_add_test(tc, test_overlay_map);
    tcase_add_test(tc, test_measure_block_of_1000_grants);
    suite_add_tcase(s, tc);
    return s;
}

int main(void)
{
    SRunner *sr = srunner_create(state_suite());
    srunner_run_all(sr, CK_NORMAL);
    int failed = srunner_ntests_failed(sr);
    srunner_free(sr);
    return failed == 0 ? EXIT_SUCCESS : EXIT_FAILURE;
}
