/* test_wallet_verify.c — Check suite for wallet_check_verify.
 *
 * The gateway's side of a verifiable check: a real store (RocksDB in a fresh
 * mkdtemp directory, 4 validators, certificates of 3), a proof built by
 * chain_check_prove and written into JSON exactly as the node's API writes
 * it, then verified by the wallet against genesis alone. A permit and a
 * deny verify; a node that misstates its decision or the proof's height is
 * caught; a missing, malformed, oversized or tampered proof, a stale one and
 * one for another question are refused with the right code. The fixture is
 * the chain proof suite's (keys from small integers, no randomness).
 */
#include <check.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "wallet/wallet.h"

#define CID "consent-proof"
#define GEN_MS 1795000000000ull
#define KEYS_MAX 256
#define K_GW 200
#define K_LAB 201
#define K_PAT 7

/* ------------------------------------------------------------------ fixture */

typedef struct {
    char dir[64];
    chain_genesis *g;
    chain_store *st;
    uint64_t time_ms;
    uint64_t nonce[KEYS_MAX];
    chain_key *keys[KEYS_MAX];
} fx;

static chain_key *key_n(fx *f, unsigned n)
{
    ck_assert_uint_lt(n, KEYS_MAX);
    if (f->keys[n] == NULL) {
        uint8_t sec[32] = {0};
        sec[29] = 9;
        sec[30] = (uint8_t)(n >> 8);
        sec[31] = (uint8_t)(n + 1);
        f->keys[n] = chain_key_create(sec);
        ck_assert_ptr_nonnull(f->keys[n]);
    }
    return f->keys[n];
}

static chain_pubkey pub_n(fx *f, unsigned n)
{
    chain_pubkey p;
    chain_key_pubkey(key_n(f, n), &p);
    return p;
}

static chain_genesis *genesis_make(fx *f, const char *chain_id, unsigned n_validators)
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
    for (unsigned i = 0; i < 2; i++) {
        chain_pubkey p = pub_n(f, 200 + i);
        chain_hex(hex, p.b, 32);
        off += (size_t)snprintf(js + off, sizeof js - off,
                                "%s{\"name\":\"inst-%u\",\"key\":\"%s\",\"roles\":[\"gateway\",\"grantee\"]}",
                                i ? "," : "", i, hex);
    }
    snprintf(js + off, sizeof js - off, "]}");
    chain_genesis *g = malloc(sizeof *g);
    ck_assert_ptr_nonnull(g);
    ck_assert_int_eq(chain_genesis_parse(g, js, strlen(js)), 0);
    return g;
}

static fx *fx_open(void)
{
    fx *f = calloc(1, sizeof *f);
    ck_assert_ptr_nonnull(f);
    strcpy(f->dir, "/tmp/chain_proof_XXXXXX");
    ck_assert_ptr_nonnull(mkdtemp(f->dir));
    f->g = genesis_make(f, CID, 4);
    ck_assert_int_eq(chain_store_open(&f->st, f->dir, f->g), 0);
    f->time_ms = GEN_MS;
    return f;
}

static void fx_close(fx *f)
{
    char cmd[128];
    chain_store_close(f->st);
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", f->dir);
    ck_assert_int_eq(system(cmd), 0);
    for (unsigned i = 0; i < KEYS_MAX; i++) chain_key_destroy(f->keys[i]);
    free(f->g);
    free(f);
}

/* Signs b's certificate with validators 100..100+n-1. */
static void sign_cert(fx *f, chain_block *b, unsigned n)
{
    chain_hash bh, msg;
    chain_header_hash(&b->hdr, &bh);
    b->cert.view = b->hdr.view;
    b->cert.height = b->hdr.height;
    b->cert.block_hash = bh;
    b->cert.n_sigs = n;
    chain_commit_sighash(&msg, CID, b->cert.view, b->cert.height, &bh);
    for (unsigned i = 0; i < n; i++) {
        b->cert.sigs[i].validator = pub_n(f, 100 + i);
        ck_assert_int_eq(chain_sign(key_n(f, 100 + i), &b->cert.sigs[i].sig, &msg), 0);
    }
}

/* Signs tx with signer's next nonce and commits it in a certified block. */
static chain_hash submit(fx *f, chain_tx *t, unsigned signer)
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

static uint64_t now_s(fx *f)
{
    return f->time_ms / 1000;
}

static chain_hash grant(fx *f, unsigned patient, unsigned grantee, const char *scope,
                        const char *purpose, uint64_t days)
{
    chain_tx t;
    memset(&t, 0, sizeof t);
    strcpy(t.chain_id, CID);
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
    return submit(f, &t, patient);
}

static void revoke_grant(fx *f, unsigned patient, const chain_hash *id)
{
    chain_tx t;
    memset(&t, 0, sizeof t);
    strcpy(t.chain_id, CID);
    t.type = CHAIN_TX_REVOKE;
    t.created_at = now_s(f) + 1;
    t.body.revoke.grant_id = *id;
    submit(f, &t, patient);
}

static chain_check_query query(fx *f, unsigned patient, unsigned grantee, const char *scope,
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

/* ------------------------------------------------------------------ answers */

static json_t *hex_j(const uint8_t *b, size_t len)
{
    char *s = malloc(2 * len + 1);
    json_t *j;
    ck_assert_ptr_nonnull(s);
    chain_hex(s, b, len);
    j = json_string(s);
    free(s);
    return j;
}

/* The node's answer to check?...&proof=1 for (K_PAT, grantee) at the tip,
 * with the decision the node's own chain_check gives. */
static json_t *answer(fx *f, unsigned grantee, const char *scope, const char *purpose, uint64_t at)
{
    chain_check_proof p;
    chain_check_result r;
    chain_pubkey pa = pub_n(f, K_PAT), gr = pub_n(f, grantee);
    json_t *o;
    ck_assert_int_eq(chain_check(f->st, &r, &pa, &gr, scope, purpose, at), 0);
    ck_assert_int_eq(chain_check_prove(f->st, &p, &pa, &gr), 0);
    o = json_pack("{s:s, s:s, s:I, s:{s:I, s:o, s:o, s:o, s:o}}", "decision",
                  r.decision == CHAIN_PERMIT ? "permit" : "deny", "reason", r.reason, "height",
                  (json_int_t)r.height, "proof", "height", (json_int_t)p.height, "pair_list",
                  hex_j(p.pair_list, p.pair_list_len), "smt_proof", hex_j(p.smt_proof, p.smt_proof_len),
                  "header", hex_j(p.header, p.header_len), "cert", hex_j(p.cert, p.cert_len));
    ck_assert_ptr_nonnull(o);
    chain_check_proof_free(&p);
    return o;
}

static fx *with_grant(void)
{
    fx *f = fx_open();
    grant(f, K_PAT, K_GW, "Observation", "TREAT", 30);
    grant(f, K_PAT, K_LAB, "Condition", "HRESCH", 30);
    return f;
}

/* Replaces the last hex digit of proof[key] with another. */
static void flip(json_t *a, const char *key)
{
    json_t *p = json_object_get(a, "proof");
    const char *s = json_string_value(json_object_get(p, key));
    char *t;
    size_t n;
    ck_assert_ptr_nonnull(s);
    n = strlen(s);
    ck_assert_uint_gt(n, 0);
    t = strdup(s);
    t[n - 1] = t[n - 1] == '0' ? '1' : '0';
    json_object_set_new(p, key, json_string(t));
    free(t);
}

START_TEST(permit_and_deny_verify)
{
    fx *f = with_grant();
    chain_check_query q = query(f, K_PAT, K_GW, "Observation", "TREAT", now_s(f));
    chain_check_result r;
    char err[WALLET_ERR_LEN] = "";
    json_t *a = answer(f, K_GW, "Observation", "TREAT", now_s(f));
    ck_assert_msg(wallet_check_verify(&r, err, f->g, a, &q, 0) == 0, "%s", err);
    ck_assert_int_eq(r.decision, CHAIN_PERMIT);
    ck_assert_uint_eq(r.height, chain_store_height(f->st));
    json_decref(a);

    q = query(f, K_PAT, K_GW, "ImagingStudy", "TREAT", now_s(f));
    a = answer(f, K_GW, "ImagingStudy", "TREAT", now_s(f));
    ck_assert_msg(wallet_check_verify(&r, err, f->g, a, &q, chain_store_height(f->st)) == 0, "%s", err);
    ck_assert_int_eq(r.decision, CHAIN_DENY);
    ck_assert_ptr_nonnull(strstr(r.reason, "scope"));
    json_decref(a);

    /* No grant at all for this pair: the absence proof verifies as a deny. */
    q = query(f, K_PAT, 100, "Observation", "TREAT", now_s(f));
    a = answer(f, 100, "Observation", "TREAT", now_s(f));
    ck_assert_msg(wallet_check_verify(&r, err, f->g, a, &q, 0) == 0, "%s", err);
    ck_assert_int_eq(r.decision, CHAIN_DENY);
    json_decref(a);
    fx_close(f);
}
END_TEST

START_TEST(a_revocation_verifies_as_deny)
{
    fx *f = fx_open();
    chain_hash id = grant(f, K_PAT, K_GW, "Observation", "TREAT", 30);
    chain_check_query q;
    chain_check_result r;
    char err[WALLET_ERR_LEN] = "";
    json_t *a;
    revoke_grant(f, K_PAT, &id);
    q = query(f, K_PAT, K_GW, "Observation", "TREAT", now_s(f));
    a = answer(f, K_GW, "Observation", "TREAT", now_s(f));
    ck_assert_msg(wallet_check_verify(&r, err, f->g, a, &q, 0) == 0, "%s", err);
    ck_assert_int_eq(r.decision, CHAIN_DENY);
    ck_assert_ptr_nonnull(strstr(r.reason, "revoked"));
    json_decref(a);
    fx_close(f);
}
END_TEST

START_TEST(the_node_is_held_to_its_word)
{
    fx *f = with_grant();
    chain_check_query q = query(f, K_PAT, K_GW, "Observation", "TREAT", now_s(f));
    chain_check_result r, untouched;
    char err[WALLET_ERR_LEN] = "";
    json_t *a = answer(f, K_GW, "Observation", "TREAT", now_s(f));
    memset(&r, 0x3c, sizeof r);
    untouched = r;
    json_object_set_new(a, "decision", json_string("deny"));
    ck_assert_int_eq(wallet_check_verify(&r, err, f->g, a, &q, 0), CHAIN_EPROOF);
    ck_assert_ptr_nonnull(strstr(err, "the node answered \"deny\" but its proof gives permit"));
    ck_assert_mem_eq(&r, &untouched, sizeof r);
    json_object_del(a, "decision");
    ck_assert_int_eq(wallet_check_verify(&r, err, f->g, a, &q, 0), CHAIN_EPROOF);
    json_object_set_new(a, "decision", json_string("permit"));
    /* A proof.height other than the header's (the verifier or this file
     * catches it, either way it fails). */
    json_object_set_new(json_object_get(a, "proof"), "height", json_integer(1));
    ck_assert_int_lt(wallet_check_verify(&r, err, f->g, a, &q, 0), 0);
    ck_assert_ptr_nonnull(strstr(err, "verification failed: "));
    ck_assert_mem_eq(&r, &untouched, sizeof r);
    json_decref(a);
    fx_close(f);
}
END_TEST

START_TEST(tampered_parts_are_refused)
{
    static const char *const parts[] = {"pair_list", "smt_proof", "header", "cert"};
    fx *f = with_grant();
    chain_check_query q = query(f, K_PAT, K_GW, "Observation", "TREAT", now_s(f));
    size_t i;
    for (i = 0; i < sizeof parts / sizeof parts[0]; i++) {
        chain_check_result r;
        char err[WALLET_ERR_LEN] = "";
        json_t *a = answer(f, K_GW, "Observation", "TREAT", now_s(f));
        int rc;
        flip(a, parts[i]);
        rc = wallet_check_verify(&r, err, f->g, a, &q, 0);
        ck_assert_msg(rc < 0, "tampered %s verified", parts[i]);
        ck_assert_msg(strncmp(err, "verification failed: ", 21) == 0, "%s: %s", parts[i], err);
        json_decref(a);
    }
    fx_close(f);
}
END_TEST

START_TEST(stale_and_other_questions_are_refused)
{
    fx *f = with_grant();
    uint64_t h = chain_store_height(f->st);
    chain_check_query q = query(f, K_PAT, K_GW, "Observation", "TREAT", now_s(f));
    chain_check_result r;
    char err[WALLET_ERR_LEN] = "";
    json_t *a = answer(f, K_GW, "Observation", "TREAT", now_s(f));
    ck_assert_int_eq(wallet_check_verify(&r, err, f->g, a, &q, h + 1), CHAIN_EBLOCK);
    ck_assert_ptr_nonnull(strstr(err, "verification failed: "));
    /* The proof of (patient, GW) does not answer a question about LAB. */
    q = query(f, K_PAT, K_LAB, "Condition", "HRESCH", now_s(f));
    ck_assert_int_lt(wallet_check_verify(&r, err, f->g, a, &q, 0), 0);
    /* Another chain's genesis does not accept this chain's certificate. */
    q = query(f, K_PAT, K_GW, "Observation", "TREAT", now_s(f));
    {
        chain_genesis *other = genesis_make(f, "consent-other", 4);
        ck_assert_int_lt(wallet_check_verify(&r, err, other, a, &q, 0), 0);
        free(other);
    }
    json_decref(a);
    fx_close(f);
}
END_TEST

START_TEST(malformed_proofs_are_refused)
{
    static const char *const bad[][3] = {
        /* field, JSON value, expected message part */
        {"height", "\"3\"", "proof.height is not a block height"},
        {"height", "0", "proof.height is not a block height"},
        {"pair_list", "5", "proof.pair_list is not hex"},
        {"smt_proof", "\"abc\"", "proof.smt_proof is not hex"},
        {"header", "\"zz\"", "proof.header is not lower-case hex"},
        {"cert", "\"0g\"", "proof.cert is not lower-case hex"},
    };
    fx *f = with_grant();
    chain_check_query q = query(f, K_PAT, K_GW, "Observation", "TREAT", now_s(f));
    chain_check_result r;
    char err[WALLET_ERR_LEN] = "";
    size_t i;
    json_t *a, *arr;
    char *big;
    for (i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        a = answer(f, K_GW, "Observation", "TREAT", now_s(f));
        json_object_set_new(json_object_get(a, "proof"), bad[i][0], json_loads(bad[i][1], JSON_DECODE_ANY, NULL));
        ck_assert_int_eq(wallet_check_verify(&r, err, f->g, a, &q, 0), CHAIN_EDECODE);
        ck_assert_msg(strstr(err, bad[i][2]) != NULL, "%s: %s", bad[i][0], err);
        json_decref(a);
    }
    /* One byte over the field bound. */
    a = answer(f, K_GW, "Observation", "TREAT", now_s(f));
    big = malloc(2 * (WALLET_PROOF_FIELD_BYTES_MAX + 1) + 1);
    ck_assert_ptr_nonnull(big);
    memset(big, 'a', 2 * (WALLET_PROOF_FIELD_BYTES_MAX + 1));
    big[2 * (WALLET_PROOF_FIELD_BYTES_MAX + 1)] = 0;
    json_object_set_new(json_object_get(a, "proof"), "smt_proof", json_string(big));
    free(big);
    ck_assert_int_eq(wallet_check_verify(&r, err, f->g, a, &q, 0), CHAIN_EDECODE);
    ck_assert_ptr_nonnull(strstr(err, "at most"));
    /* No proof at all, and not an object at all. */
    json_object_del(a, "proof");
    ck_assert_int_eq(wallet_check_verify(&r, err, f->g, a, &q, 0), CHAIN_EPROOF);
    ck_assert_ptr_nonnull(strstr(err, "carries no proof"));
    json_decref(a);
    arr = json_array();
    ck_assert_int_eq(wallet_check_verify(&r, err, f->g, arr, &q, 0), CHAIN_EDECODE);
    json_decref(arr);
    fx_close(f);
}
END_TEST

static Suite *verify_suite(void)
{
    Suite *s = suite_create("wallet_verify");
    TCase *t = tcase_create("verify");
    tcase_set_timeout(t, 120);
    tcase_add_test(t, permit_and_deny_verify);
    tcase_add_test(t, a_revocation_verifies_as_deny);
    tcase_add_test(t, the_node_is_held_to_its_word);
    tcase_add_test(t, tampered_parts_are_refused);
    tcase_add_test(t, stale_and_other_questions_are_refused);
    tcase_add_test(t, malformed_proofs_are_refused);
    suite_add_tcase(s, t);
    return s;
}

int main(void)
{
    SRunner *sr = srunner_create(verify_suite());
    int failed;
    srunner_run_all(sr, CK_NORMAL);
    failed = srunner_ntests_failed(sr);
    srunner_free(sr);
    return failed ? EXIT_FAILURE : EXIT_SUCCESS;
}
