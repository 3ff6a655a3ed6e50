/* test_chain_proof.c — verifiable checks (chain_check_prove/verify) and the
 * API request signature (chain_api_*).
 *
 * A real RocksDB store in a fresh mkdtemp directory, a genesis of 4
 * validators (keys 100..103, quorum 3) and two grantee institutions (200,
 * 201). Every block carries one tx and a commit certificate of validators
 * 100..102, as a committed block would. Each test builds a proof at the tip,
 * verifies it against genesis, then tampers with one part and expects the
 * verifier to refuse with the right code. Randomness: none; keys derive
 * from small integers.
 */
#include <check.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "chain/chain.h"
#include "chain/chain_internal.h"
#include "chain_fixture.h"

#define CID "consent-proof"
#define K_GW 200
#define K_LAB 201

/* ------------------------------------------------------------------ fixture */

static const char *const fx_roles[2] = {"[\"gateway\",\"grantee\"]", "[\"gateway\",\"grantee\"]"};
static const fx_spec fx_proof = {CID, "/tmp/chain_proof_XXXXXX", 9, 4, 2, fx_roles};

static fx *fx_open(void)
{
    return fx_open_spec(&fx_proof);
}

static void prove(fx *f, chain_check_proof *p, unsigned patient, unsigned grantee)
{
    chain_pubkey pa = pub_n(f, patient), gr = pub_n(f, grantee);
    ck_assert_int_eq(chain_check_prove(f->st, p, &pa, &gr), 0);
    ck_assert_uint_eq(p->height, chain_store_height(f->st));
}

static int verify(fx *f, chain_check_result *r, char *why, const chain_check_query *q,
                  const chain_check_proof *p, uint64_t min_height)
{
    return chain_check_verify(f->g, r, why, 160, q, p, min_height);
}

/* Re-encodes a certificate after edit() changed it; the old bytes stay the
 * caller's. */
static void recode_cert(chain_check_proof *p, void (*edit)(chain_cert *c))
{
    chain_cert c;
    ck_assert_int_eq(chain_cert_decode(&c, p->cert, p->cert_len), 0);
    edit(&c);
    p->cert = NULL;
    ck_assert_int_eq(chain_cert_encode(&p->cert, &p->cert_len, &c), 0);
}

/* ------------------------------------------------------------------ permit and deny */

/* The registry record is proven too: a grant to an institution governance
 * removed denies, verifiably, and a node cannot hide the removal. */
START_TEST(test_deregistered_grantee_denies_verifiably)
{
    fx *f = fx_open();
    fx_grant(f, 1, K_GW, "Observation", "TREAT", 1);
    chain_check_proof p, lab, gone;
    prove(f, &p, 1, K_GW);
    prove(f, &lab, 1, K_LAB);
    ck_assert_uint_gt(p.inst_len, 0);
    chain_check_query q = fx_query(f, 1, K_GW, "Observation", "TREAT", now_s(f));
    chain_check_result r;
    char why[160];
    ck_assert_int_eq(verify(f, &r, why, &q, &p, 0), 0);
    ck_assert_int_eq(r.decision, CHAIN_PERMIT);
    /* Claiming the registered grantee absent, or handing another
     * institution's record and proof, or a bent proof, does not verify. */
    size_t len = p.inst_len;
    p.inst_len = 0;
    ck_assert_int_eq(verify(f, &r, why, &q, &p, 0), CHAIN_EPROOF);
    ck_assert_ptr_nonnull(strstr(why, "registry proof"));
    p.inst_len = len;
    chain_check_proof mix = p;
    mix.inst = lab.inst, mix.inst_len = lab.inst_len;
    mix.inst_proof = lab.inst_proof, mix.inst_proof_len = lab.inst_proof_len;
    ck_assert_int_eq(verify(f, &r, why, &q, &mix, 0), CHAIN_EPROOF);
    p.inst_proof[p.inst_proof_len - 1] ^= 0x01;
    ck_assert_int_eq(verify(f, &r, why, &q, &p, 0), CHAIN_EPROOF);
    p.inst_proof[p.inst_proof_len - 1] ^= 0x01;
    p.inst_proof_len = 0;
    ck_assert_int_eq(verify(f, &r, why, &q, &p, 0), CHAIN_EDECODE);
    p.inst_proof_len = mix.inst_proof_len;
    /* Governance removes the gateway: the grant stays, the answer is deny,
     * the same at the node and at the verifier. */
    fx_remove_institution(f, K_GW);
    prove(f, &gone, 1, K_GW);
    ck_assert_uint_eq(gone.inst_len, 0);
    ck_assert_uint_gt(gone.pair_list_len, 0);
    q.at_s = now_s(f);
    chain_check_result at_node;
    ck_assert_int_eq(chain_check(f->st, &at_node, &q.patient, &q.grantee, "Observation", "TREAT", q.at_s), 0);
    ck_assert_int_eq(verify(f, &r, why, &q, &gone, 2), 0);
    ck_assert_int_eq(r.decision, CHAIN_DENY);
    ck_assert_str_eq(r.reason, "grantee institution is not registered");
    ck_assert_int_eq(at_node.decision, CHAIN_DENY);
    ck_assert_str_eq(at_node.reason, r.reason);
    /* The old record with the new tip: its proof no longer leads to the root. */
    mix = gone;
    mix.inst = p.inst, mix.inst_len = p.inst_len;
    mix.inst_proof = p.inst_proof, mix.inst_proof_len = p.inst_proof_len;
    ck_assert_int_eq(verify(f, &r, why, &q, &mix, 0), CHAIN_EPROOF);
    chain_check_proof_free(&p);
    chain_check_proof_free(&lab);
    chain_check_proof_free(&gone);
    fx_close(f);
}
END_TEST

START_TEST(test_permit_verifies)
{
    fx *f = fx_open();
    chain_hash id = fx_grant(f, 1, K_GW, "Observation", "TREAT", 1);
    chain_check_proof p;
    prove(f, &p, 1, K_GW);
    ck_assert_uint_gt(p.pair_list_len, 0);
    chain_check_query q = fx_query(f, 1, K_GW, "Observation", "TREAT", now_s(f));
    chain_check_result r;
    char why[160];
    ck_assert_int_eq(verify(f, &r, why, &q, &p, 1), 0);
    ck_assert_int_eq(r.decision, CHAIN_PERMIT);
    ck_assert_uint_eq(r.height, 1);
    ck_assert_int_eq(r.has_grant, 1);
    ck_assert_mem_eq(r.grant.id.b, id.b, 32);
    ck_assert_str_eq(why, r.reason);
    chain_check_proof_free(&p);
    ck_assert_ptr_null(p.header);
    fx_close(f);
}
END_TEST

/* Each answer the node gives is recomputed identically from the proof,
 * denies included, and absence proofs hold for pairs with no grant. */
START_TEST(test_deny_verifies_same_as_check)
{
    fx *f = fx_open();
    fx_grant(f, 1, K_GW, "Observation", "TREAT", 1);
    chain_hash id2 = fx_grant(f, 2, K_GW, "Observation", "TREAT", 1);
    fx_revoke(f, 2, &id2);
    uint64_t now = now_s(f);
    static const struct {
        unsigned patient, grantee;
        const char *scope, *purpose;
        uint64_t at_plus;
        chain_decision want;
        const char *reason;
    } cases[] = {
        {1, K_GW, "Observation", "TREAT", 0, CHAIN_PERMIT, "active grant covers scope and purpose"},
        {1, K_GW, "Observation", "HRESCH", 0, CHAIN_DENY, "purpose not covered"},
        {1, K_GW, "Condition", "TREAT", 0, CHAIN_DENY, "scope not covered"},
        {1, K_GW, "Observation", "TREAT", 2 * 86400, CHAIN_DENY, "grant expired"},
        {2, K_GW, "Observation", "TREAT", 0, CHAIN_DENY, "grant revoked"},
        {3, K_GW, "Observation", "TREAT", 0, CHAIN_DENY, "no grant from this patient to this grantee"},
        {1, K_LAB, "Observation", "TREAT", 0, CHAIN_DENY, "no grant from this patient to this grantee"},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        chain_check_query q = fx_query(f, cases[i].patient, cases[i].grantee, cases[i].scope,
                                    cases[i].purpose, now + cases[i].at_plus);
        chain_check_result want, got;
        ck_assert_int_eq(chain_check(f->st, &want, &q.patient, &q.grantee, q.scope, q.purpose, q.at_s), 0);
        chain_check_proof p;
        prove(f, &p, cases[i].patient, cases[i].grantee);
        char why[160];
        ck_assert_int_eq(verify(f, &got, why, &q, &p, 3), 0);
        ck_assert_int_eq(got.decision, cases[i].want);
        ck_assert_int_eq(got.decision, want.decision);
        ck_assert_str_eq(got.reason, cases[i].reason);
        ck_assert_str_eq(got.reason, want.reason);
        ck_assert_int_eq(got.has_grant, want.has_grant);
        ck_assert_uint_eq(got.height, 3);
        /* The node's shortcut: the same answer from the proof's bytes. */
        chain_check_result fast;
        ck_assert_int_eq(chain_check_decide(&fast, &p, &q), 0);
        ck_assert_int_eq(fast.decision, want.decision);
        ck_assert_str_eq(fast.reason, want.reason);
        ck_assert_int_eq(fast.has_grant, want.has_grant);
        ck_assert_uint_eq(fast.height, 3);
        if (cases[i].patient == 3 || cases[i].grantee == K_LAB) ck_assert_uint_eq(p.pair_list_len, 0);
        chain_check_proof_free(&p);
    }
    fx_close(f);
}
END_TEST

/* ------------------------------------------------------------------ tampering */

/* A fixture with grants of patients 1 and 2 to the gateway and a proof for
 * patient 1 at the tip (height 2). */
typedef struct {
    fx *f;
    chain_check_proof p;
    chain_check_query q;
    chain_check_result r;
    char why[160];
} tfx;

static void t_open(tfx *t)
{
    t->f = fx_open();
    fx_grant(t->f, 1, K_GW, "Observation", "TREAT", 1);
    fx_grant(t->f, 2, K_GW, "Observation", "TREAT", 1);
    prove(t->f, &t->p, 1, K_GW);
    t->q = fx_query(t->f, 1, K_GW, "Observation", "TREAT", now_s(t->f));
    ck_assert_int_eq(verify(t->f, &t->r, t->why, &t->q, &t->p, 0), 0);
    ck_assert_int_eq(t->r.decision, CHAIN_PERMIT);
    memset(&t->r, 0xA5, sizeof t->r);
}

static void t_close(tfx *t)
{
    chain_check_proof_free(&t->p);
    fx_close(t->f);
}

static int t_verify(tfx *t, uint64_t min_height)
{
    chain_check_result before = t->r;
    int rc = verify(t->f, &t->r, t->why, &t->q, &t->p, min_height);
    if (rc != 0) ck_assert_mem_eq(&before, &t->r, sizeof before);   /* out untouched */
    return rc;
}

START_TEST(test_tampered_list_refused)
{
    tfx t;
    t_open(&t);
    /* One flipped byte anywhere in the list. */
    for (size_t i = 0; i < t.p.pair_list_len; i += 7) {
        t.p.pair_list[i] ^= 0x01;
        ck_assert_int_eq(t_verify(&t, 0), CHAIN_EPROOF);
        t.p.pair_list[i] ^= 0x01;
    }
    /* Hiding the grant: an empty list against a presence proof. */
    size_t len = t.p.pair_list_len;
    t.p.pair_list_len = 0;
    ck_assert_int_eq(t_verify(&t, 0), CHAIN_EPROOF);
    t.p.pair_list_len = len;
    /* Patient 2's (genuine) list under patient 1's proof. */
    chain_check_proof other;
    prove(t.f, &other, 2, K_GW);
    uint8_t *mine = t.p.pair_list;
    t.p.pair_list = other.pair_list;
    t.p.pair_list_len = other.pair_list_len;
    ck_assert_int_eq(t_verify(&t, 0), CHAIN_EPROOF);
    ck_assert_str_eq(t.why, "state proof does not lead from this patient/grantee list to the header's state root");
    t.p.pair_list = mine;
    t.p.pair_list_len = len;
    chain_check_proof_free(&other);
    ck_assert_int_eq(t_verify(&t, 0), 0);
    t_close(&t);
}
END_TEST

START_TEST(test_tampered_proof_and_root_refused)
{
    tfx t;
    t_open(&t);
    /* Flipped proof bytes: undecodable or leading elsewhere. */
    for (size_t i = 0; i < t.p.smt_proof_len; i++) {
        t.p.smt_proof[i] ^= 0x80;
        int rc = t_verify(&t, 0);
        ck_assert_int_eq(rc, CHAIN_EPROOF);
        t.p.smt_proof[i] ^= 0x80;
    }
    /* A truncated proof. */
    t.p.smt_proof_len--;
    ck_assert_int_eq(t_verify(&t, 0), CHAIN_EPROOF);
    t.p.smt_proof_len++;
    /* A genuine header and cert of an older block (another state root). */
    chain_block b1;
    chain_block_init(&b1);
    ck_assert_int_eq(chain_store_get_block(t.f->st, 1, &b1), 0);
    uint8_t *h1 = NULL, *c1 = NULL;
    size_t h1_len = 0, c1_len = 0;
    ck_assert_int_eq(chain_header_encode(&h1, &h1_len, &b1.hdr), 0);
    ck_assert_int_eq(chain_cert_encode(&c1, &c1_len, &b1.cert), 0);
    chain_block_free(&b1);
    uint8_t *h = t.p.header, *c = t.p.cert;
    size_t hl = t.p.header_len, cl = t.p.cert_len;
    t.p.header = h1, t.p.header_len = h1_len, t.p.cert = c1, t.p.cert_len = c1_len;
    t.p.height = 1;
    ck_assert_int_eq(t_verify(&t, 0), CHAIN_EPROOF);   /* root differs */
    t.p.header = h, t.p.header_len = hl, t.p.cert = c, t.p.cert_len = cl;
    ck_assert_int_eq(t_verify(&t, 0), CHAIN_EBLOCK);   /* height claim differs from header */
    t.p.height = 2;
    ck_assert_int_eq(t_verify(&t, 0), 0);
    free(h1);
    free(c1);
    t_close(&t);
}
END_TEST

START_TEST(test_tampered_header_refused)
{
    tfx t;
    t_open(&t);
    /* Any changed header byte: undecodable or no longer what was signed. */
    for (size_t i = 0; i < t.p.header_len; i++) {
        t.p.header[i] ^= 0x01;
        int rc = t_verify(&t, 0);
        ck_assert_msg(rc == CHAIN_EDECODE || rc == CHAIN_ECERT || rc == CHAIN_EBLOCK,
                      "byte %zu: rc %d", i, rc);
        t.p.header[i] ^= 0x01;
    }
    /* A header with a forged state root re-encoded cleanly. */
    chain_header h;
    ck_assert_int_eq(chain_header_decode(&h, t.p.header, t.p.header_len), 0);
    h.state_root.b[0] ^= 1;
    uint8_t *enc = NULL;
    size_t len = 0;
    ck_assert_int_eq(chain_header_encode(&enc, &len, &h), 0);
    uint8_t *orig = t.p.header;
    size_t orig_len = t.p.header_len;
    t.p.header = enc, t.p.header_len = len;
    ck_assert_int_eq(t_verify(&t, 0), CHAIN_ECERT);
    free(enc);
    t.p.header = orig, t.p.header_len = orig_len;
    ck_assert_int_eq(t_verify(&t, 0), 0);
    t_close(&t);
}
END_TEST

static void cert_short(chain_cert *c)
{
    c->n_sigs = 2;
}

static void cert_forged(chain_cert *c)
{
    c->sigs[1].sig.b[5] ^= 1;
}

static void cert_dup(chain_cert *c)
{
    c->sigs[2] = c->sigs[0];
}

/* The third signature by a key outside genesis, validly signed. */
static void cert_stranger(chain_cert *c)
{
    uint8_t sec[32] = {0};
    sec[31] = 77;
    chain_key *k = chain_key_create(sec);
    ck_assert_ptr_nonnull(k);
    chain_hash msg;
    chain_commit_sighash(&msg, CID, c->view, c->height, &c->block_hash);
    chain_key_pubkey(k, &c->sigs[2].validator);
    ck_assert_int_eq(chain_sign(k, &c->sigs[2].sig, &msg), 0);
    chain_key_destroy(k);
}

static void cert_height(chain_cert *c)
{
    c->height++;
}

START_TEST(test_bad_cert_refused)
{
    tfx t;
    t_open(&t);
    void (*edits[])(chain_cert *) = {cert_short, cert_forged, cert_dup, cert_stranger, cert_height};
    for (size_t i = 0; i < sizeof edits / sizeof edits[0]; i++) {
        uint8_t *orig = t.p.cert;
        size_t orig_len = t.p.cert_len;
        recode_cert(&t.p, edits[i]);
        ck_assert_int_eq(t_verify(&t, 0), CHAIN_ECERT);
        ck_assert_ptr_nonnull(strstr(t.why, "3 distinct genesis validators"));
        free(t.p.cert);
        t.p.cert = orig;
        t.p.cert_len = orig_len;
    }
    /* Garbage cert bytes. */
    uint8_t junk[3] = {0xff, 0xff, 0xff};
    uint8_t *orig = t.p.cert;
    size_t orig_len = t.p.cert_len;
    t.p.cert = junk, t.p.cert_len = sizeof junk;
    ck_assert_int_eq(t_verify(&t, 0), CHAIN_EDECODE);
    t.p.cert = orig, t.p.cert_len = orig_len;
    ck_assert_int_eq(t_verify(&t, 0), 0);
    t_close(&t);
}
END_TEST

START_TEST(test_stale_and_other_query_refused)
{
    tfx t;
    t_open(&t);
    ck_assert_int_eq(t_verify(&t, 2), 0);
    ck_assert_int_eq(t_verify(&t, 3), CHAIN_EBLOCK);
    ck_assert_str_eq(t.why, "stale: height 2 is below the required 3");
    /* The proof of (1, GW) asked about (2, GW) and (1, LAB). */
    t.q.patient = pub_n(t.f, 2);
    ck_assert_int_eq(t_verify(&t, 0), CHAIN_EPROOF);
    t.q.patient = pub_n(t.f, 1);
    t.q.grantee = pub_n(t.f, K_LAB);
    ck_assert_int_eq(t_verify(&t, 0), CHAIN_EPROOF);
    t.q.grantee = pub_n(t.f, K_GW);
    /* An absence proof for (3, GW) cannot deny (1, GW). */
    chain_check_proof none;
    prove(t.f, &none, 3, K_GW);
    ck_assert_int_eq(verify(t.f, &t.r, t.why, &t.q, &none, 0), CHAIN_EPROOF);
    chain_check_proof_free(&none);
    /* Unknown codes and missing parts. */
    t.q.scope = "NoSuchScope";
    ck_assert_int_eq(t_verify(&t, 0), CHAIN_ECODE);
    t.q.scope = "Observation";
    size_t hl = t.p.header_len;
    t.p.header_len = 0;
    ck_assert_int_eq(t_verify(&t, 0), CHAIN_EDECODE);
    t.p.header_len = CHAIN_PROOF_PART_BYTES_MAX + 1;
    ck_assert_int_eq(t_verify(&t, 0), CHAIN_EDECODE);
    t.p.header_len = hl;
    ck_assert_int_eq(chain_check_verify(t.f->g, &t.r, NULL, 0, &t.q, NULL, 0), CHAIN_EINVAL);
    ck_assert_int_eq(t_verify(&t, 0), 0);
    t_close(&t);
}
END_TEST

/* A proof from another chain (same keys, other chain id) or validator set. */
START_TEST(test_other_genesis_refused)
{
    tfx t;
    t_open(&t);
    chain_genesis *other = genesis_make(t.f, "consent-other", 4);
    ck_assert_int_eq(chain_check_verify(other, &t.r, t.why, 160, &t.q, &t.p, 0), CHAIN_EBLOCK);
    ck_assert_str_eq(t.why, "header is of another chain");
    free(other);
    other = genesis_make(t.f, CID, 7);
    ck_assert_int_eq(chain_check_verify(other, &t.r, t.why, 160, &t.q, &t.p, 0), CHAIN_EBLOCK);
    ck_assert_str_eq(t.why, "header names another validator set");
    free(other);
    t_close(&t);
}
END_TEST

/* A node's kept tip (header and certificate) gives the very bytes a fresh
 * proof gives, and follows the tip as blocks commit. */
static void same_proof(const chain_check_proof *a, const chain_check_proof *b)
{
    ck_assert_uint_eq(a->height, b->height);
    ck_assert_uint_eq(a->pair_list_len, b->pair_list_len);
    ck_assert_uint_eq(a->smt_proof_len, b->smt_proof_len);
    ck_assert_uint_eq(a->header_len, b->header_len);
    ck_assert_uint_eq(a->cert_len, b->cert_len);
    if (a->pair_list_len) ck_assert_mem_eq(a->pair_list, b->pair_list, a->pair_list_len);
    ck_assert_mem_eq(a->smt_proof, b->smt_proof, a->smt_proof_len);
    ck_assert_mem_eq(a->header, b->header, a->header_len);
    ck_assert_mem_eq(a->cert, b->cert, a->cert_len);
}

START_TEST(test_cached_tip_proves_the_same)
{
    fx *f = fx_open();
    chain_check_tip tip;
    memset(&tip, 0, sizeof tip);
    chain_check_proof a, b;
    chain_pubkey gr = pub_n(f, K_GW);
    for (unsigned round = 0; round < 3; round++) {
        fx_grant(f, 1 + round, K_GW, "Observation", "TREAT", 1);
        for (unsigned pat = 1; pat <= 4; pat++) {   /* present and absent pairs */
            chain_pubkey pa = pub_n(f, pat);
            for (int twice = 0; twice < 2; twice++) {   /* loads the tip, then reuses it */
                ck_assert_int_eq(chain_check_prove_cached(f->st, &tip, &a, &pa, &gr), 0);
                prove(f, &b, pat, K_GW);
                same_proof(&a, &b);
                ck_assert_uint_eq(tip.height, chain_store_height(f->st));
                chain_check_query q = fx_query(f, pat, K_GW, "Observation", "TREAT", now_s(f));
                chain_check_result r;
                char why[160];
                ck_assert_int_eq(verify(f, &r, why, &q, &a, 1), 0);
                chain_check_proof_free(&a);
                chain_check_proof_free(&b);
            }
        }
    }
    ck_assert_int_eq(chain_check_prove_cached(NULL, &tip, &a, &gr, &gr), CHAIN_EINVAL);
    ck_assert_int_eq(chain_check_prove_cached(f->st, NULL, &a, &gr, &gr), CHAIN_EINVAL);
    chain_check_tip_free(&tip);
    ck_assert_ptr_null(tip.header);
    chain_check_tip_free(NULL);
    fx_close(f);
}
END_TEST

START_TEST(test_prove_errors)
{
    fx *f = fx_open();
    chain_check_proof p;
    chain_pubkey a = pub_n(f, 1), b = pub_n(f, K_GW);
    ck_assert_int_eq(chain_check_prove(f->st, &p, &a, &b), CHAIN_ESTATE);   /* genesis only */
    ck_assert_ptr_null(p.header);
    ck_assert_int_eq(chain_check_prove(NULL, &p, &a, &b), CHAIN_EINVAL);
    ck_assert_int_eq(chain_check_prove(f->st, &p, NULL, &b), CHAIN_EINVAL);
    chain_check_proof_free(NULL);
    /* Deciding from parts: bad codes, bad parts and missing arguments. */
    chain_check_result r;
    chain_check_query q = {a, b, "Observation", "TREAT", 0};
    memset(&p, 0, sizeof p);
    ck_assert_int_eq(chain_check_decide(&r, &p, &q), 0);   /* nothing held: deny */
    ck_assert_int_eq(r.decision, CHAIN_DENY);
    ck_assert_str_eq(r.reason, "grantee institution is not registered");
    q.purpose = "NOSUCH";
    ck_assert_int_eq(chain_check_decide(&r, &p, &q), CHAIN_ECODE);
    q.purpose = "TREAT";
    uint8_t junk[3] = {0xff, 0xff, 0xff};
    p.pair_list = junk;
    p.pair_list_len = sizeof junk;
    ck_assert_int_eq(chain_check_decide(&r, &p, &q), CHAIN_EDECODE);
    p.pair_list_len = 0;
    p.inst = junk;
    p.inst_len = sizeof junk;
    ck_assert_int_eq(chain_check_decide(&r, &p, &q), CHAIN_EIO);
    p.inst_len = 1;
    p.inst = NULL;
    ck_assert_int_eq(chain_check_decide(&r, &p, &q), CHAIN_EINVAL);
    ck_assert_int_eq(chain_check_decide(NULL, &p, &q), CHAIN_EINVAL);
    ck_assert_int_eq(chain_check_decide(&r, &p, NULL), CHAIN_EINVAL);
    fx_close(f);
}
END_TEST

/* ------------------------------------------------------------------ access listing */
static int count_access(void *arg, const chain_access_summary *a)
{
    chain_access_summary *last = arg;
    *last = *a;
    last->height += 1000;   /* marks a visit */
    return 0;
}

static int stop_access(void *arg, const chain_access_summary *a)
{
    (void)a;
    (*(int *)arg)++;
    return 7;
}

START_TEST(test_patient_access_listing)
{
    fx *f = fx_open();
    chain_hash gid = fx_grant(f, 1, K_GW, "Observation", "TREAT", 1);
    chain_pubkey p1 = pub_n(f, 1), p2 = pub_n(f, 2);
    chain_access_summary got;
    memset(&got, 0, sizeof got);
    ck_assert_int_eq(chain_store_patient_access(f->st, &p1, count_access, &got), 0);
    ck_assert_uint_eq(got.height, 0);   /* nothing recorded yet */
    chain_tx t;
    memset(&t, 0, sizeof t);
    strcpy(t.chain_id, CID);
    t.type = CHAIN_TX_ACCESS_RECORD;
    t.created_at = now_s(f) + 1;
    t.body.access_record.grant_id = gid;
    strcpy(t.body.access_record.scope.s, "Observation");
    strcpy(t.body.access_record.purpose.s, "TREAT");
    t.body.access_record.request_hash.b[3] = 9;
    chain_hash rec = fx_submit(f, &t, K_GW);
    ck_assert_int_eq(chain_store_patient_access(f->st, &p1, count_access, &got), 0);
    ck_assert_uint_eq(got.height, 1000 + 2);
    ck_assert_mem_eq(got.tx_id.b, rec.b, 32);
    ck_assert_mem_eq(got.grant_id.b, gid.b, 32);
    chain_pubkey gw = pub_n(f, K_GW);
    ck_assert_mem_eq(got.gateway.b, gw.b, 32);
    ck_assert_str_eq(got.scope.s, "Observation");
    ck_assert_str_eq(got.purpose.s, "TREAT");
    ck_assert_uint_eq(got.request_hash.b[3], 9);
    ck_assert_uint_eq(got.time_ms, f->time_ms);
    /* Another patient has none; a callback's value stops the walk. */
    memset(&got, 0, sizeof got);
    ck_assert_int_eq(chain_store_patient_access(f->st, &p2, count_access, &got), 0);
    ck_assert_uint_eq(got.height, 0);
    int calls = 0;
    ck_assert_int_eq(chain_store_patient_access(f->st, &p1, stop_access, &calls), 7);
    ck_assert_int_eq(calls, 1);
    ck_assert_int_eq(chain_store_patient_access(NULL, &p1, stop_access, &calls), CHAIN_EINVAL);
    ck_assert_int_eq(chain_store_patient_access(f->st, &p1, NULL, &calls), CHAIN_EINVAL);
    /* Stored bytes that are not an AccessSummary are a storage failure. */
    uint8_t junk[4] = {0x0a, 0x05, 0x01, 0x02};
    ck_assert_int_eq(chain__access_decode(&got, junk, sizeof junk), CHAIN_EIO);
    uint8_t short_id[4] = {0x0a, 0x02, 0x01, 0x02};   /* tx_id of 2 bytes */
    ck_assert_int_eq(chain__access_decode(&got, short_id, sizeof short_id), CHAIN_EIO);
    fx_close(f);
}
END_TEST

/* ------------------------------------------------------------------ api auth */

START_TEST(test_api_signature)
{
    fx *f = fx_open();
    chain_key *k = key_n(f, 1);
    chain_pubkey pk = pub_n(f, 1), other = pub_n(f, 2);
    const char *target = "/v1/patients/ab/grants?x=1";
    uint64_t t = 1795000000;
    chain_sig sig;
    ck_assert_int_eq(chain_api_sign(k, &sig, "GET", target, t), 0);
    ck_assert_int_eq(chain_api_verify(&pk, &sig, "GET", target, t, t), 0);
    ck_assert_int_eq(chain_api_verify(&pk, &sig, "GET", target, t, t + CHAIN_API_SKEW_S), 0);
    ck_assert_int_eq(chain_api_verify(&pk, &sig, "GET", target, t, t - CHAIN_API_SKEW_S), 0);
    ck_assert_int_eq(chain_api_verify(&pk, &sig, "GET", target, t, t + CHAIN_API_SKEW_S + 1), CHAIN_ETIME);
    ck_assert_int_eq(chain_api_verify(&pk, &sig, "GET", target, t, t - CHAIN_API_SKEW_S - 1), CHAIN_ETIME);
    /* Every covered field matters. */
    ck_assert_int_eq(chain_api_verify(&pk, &sig, "POST", target, t, t), CHAIN_ESIG);
    ck_assert_int_eq(chain_api_verify(&pk, &sig, "GET", "/v1/patients/ab/grants?x=2", t, t), CHAIN_ESIG);
    ck_assert_int_eq(chain_api_verify(&pk, &sig, "GET", target, t + 1, t), CHAIN_ESIG);
    ck_assert_int_eq(chain_api_verify(&other, &sig, "GET", target, t, t), CHAIN_ESIG);
    /* The hash is the documented message. */
    chain_hash h, want;
    const char *msg = "consent/api/v1\nGET\n/v1/patients/ab/grants?x=1\n1795000000";
    chain_sha256(&want, msg, strlen(msg));
    ck_assert_int_eq(chain_api_sighash(&h, "GET", target, t), 0);
    ck_assert_mem_eq(h.b, want.b, 32);
    /* Malformed method or target. */
    ck_assert_int_eq(chain_api_sighash(&h, "get", target, t), CHAIN_EINVAL);
    ck_assert_int_eq(chain_api_sighash(&h, "", target, t), CHAIN_EINVAL);
    ck_assert_int_eq(chain_api_sighash(&h, "GETGETGETGETGETGE", target, t), CHAIN_EINVAL);
    ck_assert_int_eq(chain_api_sighash(&h, "GET", "v1/status", t), CHAIN_EINVAL);
    ck_assert_int_eq(chain_api_sighash(&h, "GET", "/v1/a\nGET", t), CHAIN_EINVAL);
    ck_assert_int_eq(chain_api_sighash(&h, "GET", "/v1/a b", t), CHAIN_EINVAL);
    ck_assert_int_eq(chain_api_sighash(NULL, "GET", target, t), CHAIN_EINVAL);
    ck_assert_int_eq(chain_api_verify(&pk, &sig, "GET", "", t, t), CHAIN_EINVAL);
    ck_assert_int_eq(chain_api_sign(NULL, &sig, "GET", target, t), CHAIN_EINVAL);
    char *longt = malloc(CHAIN_API_TARGET_LEN_MAX + 2);
    ck_assert_ptr_nonnull(longt);
    memset(longt, 'a', CHAIN_API_TARGET_LEN_MAX + 1);
    longt[0] = '/';
    longt[CHAIN_API_TARGET_LEN_MAX] = '\0';
    ck_assert_int_eq(chain_api_sighash(&h, "GET", longt, t), 0);   /* at the limit */
    longt[CHAIN_API_TARGET_LEN_MAX] = 'a';
    longt[CHAIN_API_TARGET_LEN_MAX + 1] = '\0';
    ck_assert_int_eq(chain_api_sighash(&h, "GET", longt, t), CHAIN_EINVAL);   /* limit + 1 */
    free(longt);
    fx_close(f);
}
END_TEST

static Suite *proof_suite(void)
{
    Suite *s = suite_create("chain_proof");
    TCase *tc = tcase_create("proof");
    tcase_set_timeout(tc, 120);
    tcase_add_test(tc, test_permit_verifies);
    tcase_add_test(tc, test_deregistered_grantee_denies_verifiably);
    tcase_add_test(tc, test_deny_verifies_same_as_check);
    tcase_add_test(tc, test_tampered_list_refused);
    tcase_add_test(tc, test_tampered_proof_and_root_refused);
    tcase_add_test(tc, test_tampered_header_refused);
    tcase_add_test(tc, test_bad_cert_refused);
    tcase_add_test(tc, test_stale_and_other_query_refused);
    tcase_add_test(tc, test_other_genesis_refused);
    tcase_add_test(tc, test_prove_errors);
    tcase_add_test(tc, test_cached_tip_proves_the_same);
    tcase_add_test(tc, test_api_signature);
    tcase_add_test(tc, test_patient_access_listing);
    suite_add_tcase(s, tc);
    return s;
}

int main(void)
{
    SRunner *sr = srunner_create(proof_suite());
    srunner_run_all(sr, CK_NORMAL);
    int failed = srunner_ntests_failed(sr);
    srunner_free(sr);
    return failed == 0 ? EXIT_SUCCESS : EXIT_FAILURE;
}
