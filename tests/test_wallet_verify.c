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
#include "chain_fixture.h"

#define CID "consent-proof"
#define K_GW 200
#define K_LAB 201
#define K_PAT 7

/* ------------------------------------------------------------------ fixture */

static const char *const fx_roles[2] = {"[\"gateway\",\"grantee\"]", "[\"gateway\",\"grantee\"]"};
static const fx_spec fx_proof = {CID, "/tmp/chain_proof_XXXXXX", 9, 4, 2, fx_roles};

static fx *fx_open(void)
{
    return fx_open_spec(&fx_proof);
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
    o = json_pack("{s:s, s:s, s:I, s:{s:I, s:o, s:o, s:o, s:o, s:o, s:o}}", "decision",
                  r.decision == CHAIN_PERMIT ? "permit" : "deny", "reason", r.reason, "height",
                  (json_int_t)r.height, "proof", "height", (json_int_t)p.height, "pair_list",
                  hex_j(p.pair_list, p.pair_list_len), "smt_proof", hex_j(p.smt_proof, p.smt_proof_len),
                  "inst", hex_j(p.inst, p.inst_len), "inst_proof", hex_j(p.inst_proof, p.inst_proof_len),
                  "header", hex_j(p.header, p.header_len), "cert", hex_j(p.cert, p.cert_len));
    ck_assert_ptr_nonnull(o);
    chain_check_proof_free(&p);
    return o;
}

static fx *with_grant(void)
{
    fx *f = fx_open();
    fx_grant(f, K_PAT, K_GW, "Observation", "TREAT", 30);
    fx_grant(f, K_PAT, K_LAB, "Condition", "HRESCH", 30);
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
    chain_check_query q = fx_query(f, K_PAT, K_GW, "Observation", "TREAT", now_s(f));
    chain_check_result r;
    char err[WALLET_ERR_LEN] = "";
    json_t *a = answer(f, K_GW, "Observation", "TREAT", now_s(f));
    ck_assert_msg(wallet_check_verify(&r, err, f->g, a, &q, 0) == 0, "%s", err);
    ck_assert_int_eq(r.decision, CHAIN_PERMIT);
    ck_assert_uint_eq(r.height, chain_store_height(f->st));
    json_decref(a);

    q = fx_query(f, K_PAT, K_GW, "ImagingStudy", "TREAT", now_s(f));
    a = answer(f, K_GW, "ImagingStudy", "TREAT", now_s(f));
    ck_assert_msg(wallet_check_verify(&r, err, f->g, a, &q, chain_store_height(f->st)) == 0, "%s", err);
    ck_assert_int_eq(r.decision, CHAIN_DENY);
    ck_assert_ptr_nonnull(strstr(r.reason, "scope"));
    json_decref(a);

    /* No grant at all for this pair: the absence proof verifies as a deny. */
    q = fx_query(f, K_PAT, 100, "Observation", "TREAT", now_s(f));
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
    chain_hash id = fx_grant(f, K_PAT, K_GW, "Observation", "TREAT", 30);
    chain_check_query q;
    chain_check_result r;
    char err[WALLET_ERR_LEN] = "";
    json_t *a;
    fx_revoke(f, K_PAT, &id);
    q = fx_query(f, K_PAT, K_GW, "Observation", "TREAT", now_s(f));
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
    chain_check_query q = fx_query(f, K_PAT, K_GW, "Observation", "TREAT", now_s(f));
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
    static const char *const parts[] = {"pair_list", "smt_proof", "inst", "inst_proof", "header", "cert"};
    fx *f = with_grant();
    chain_check_query q = fx_query(f, K_PAT, K_GW, "Observation", "TREAT", now_s(f));
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
    chain_check_query q = fx_query(f, K_PAT, K_GW, "Observation", "TREAT", now_s(f));
    chain_check_result r;
    char err[WALLET_ERR_LEN] = "";
    json_t *a = answer(f, K_GW, "Observation", "TREAT", now_s(f));
    ck_assert_int_eq(wallet_check_verify(&r, err, f->g, a, &q, h + 1), CHAIN_EBLOCK);
    ck_assert_ptr_nonnull(strstr(err, "verification failed: "));
    /* The proof of (patient, GW) does not answer a question about LAB. */
    q = fx_query(f, K_PAT, K_LAB, "Condition", "HRESCH", now_s(f));
    ck_assert_int_lt(wallet_check_verify(&r, err, f->g, a, &q, 0), 0);
    /* Another chain's genesis does not accept this chain's certificate. */
    q = fx_query(f, K_PAT, K_GW, "Observation", "TREAT", now_s(f));
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
    chain_check_query q = fx_query(f, K_PAT, K_GW, "Observation", "TREAT", now_s(f));
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
