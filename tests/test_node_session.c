/* test_node_session.c — authenticated API sessions (README, "Sessions"):
 * the key agreement and MAC of chain/api_auth.c, the node's bounded session
 * table (node/session.c), and the node over real sockets: a session opened
 * with wallet_session_open and used for checks, every refusal (wrong MAC,
 * unknown session, a MAC outside the time window, mixed credentials), bad
 * bodies for POST /v1/sessions and callers it is not for, the per-caller
 * cap, and the same authorization and audit as signed requests.
 *
 * A single-validator node (20 ms blocks, RocksDB in a temp dir) runs its
 * loop on a thread (tests/node_fixture.h); waits poll against a deadline.
 */
#include <check.h>
#include <jansson.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "node/node.h"
#include "node/node_int.h"
#include "node_fixture.h"
#include "wallet/wallet.h"

#define CHAIN_ID "consent-session"
#define PASS "session test passphrase"

enum { K_VAL, K_GW, K_LAB, K_PATIENT, K_COUNT };

/* ------------------------------------------------------------------ units */
START_TEST(session_keys_agree_and_macs_verify) {
    uint8_t csec[32], cpub[33], nsec[32], npub[33], sid[16] = {1, 2, 3}, kc[32], kn[32];
    chain_key *ck = chain_key_create(NULL);
    chain_pubkey caller;
    chain_key_pubkey(ck, &caller);
    ck_assert_int_eq(chain_api_eph_keygen(csec, cpub), 0);
    ck_assert_int_eq(chain_api_eph_keygen(nsec, npub), 0);
    ck_assert(chain_api_eph_valid(cpub) && chain_api_eph_valid(npub));
    ck_assert_int_eq(chain_api_session_key(kc, csec, npub, cpub, npub, &caller, sid), 0);
    ck_assert_int_eq(chain_api_session_key(kn, nsec, cpub, cpub, npub, &caller, sid), 0);
    ck_assert_mem_eq(kc, kn, 32);
    /* Another session id, or another caller, gives another key. */
    sid[0] ^= 1;
    ck_assert_int_eq(chain_api_session_key(kn, nsec, cpub, cpub, npub, &caller, sid), 0);
    ck_assert(memcmp(kc, kn, 32) != 0);
    sid[0] ^= 1;
    caller.b[0] ^= 1;
    ck_assert_int_eq(chain_api_session_key(kn, nsec, cpub, cpub, npub, &caller, sid), 0);
    ck_assert(memcmp(kc, kn, 32) != 0);
    caller.b[0] ^= 1;
    /* Points off the curve or not compressed. */
    uint8_t bad[33] = {2};   /* x = 0 is not on secp256k1 */
    ck_assert(!chain_api_eph_valid(bad));
    ck_assert_int_eq(chain_api_session_key(kn, nsec, bad, bad, npub, &caller, sid), CHAIN_EINVAL);
    memcpy(bad, cpub, 33);
    bad[0] = 4;
    ck_assert(!chain_api_eph_valid(bad));
    /* MACs: right, wrong, stale, another target or method. */
    const char *t = "/v1/grants/check?patient=ab";
    uint8_t mac[32];
    uint64_t now = 1795000000;
    chain_api_mac_key *mk = NULL;
    ck_assert_int_eq(chain_api_mac_key_new(&mk, kc), 0);
    ck_assert_int_eq(chain_api_mac(mac, kc, "GET", t, now), 0);
    ck_assert_int_eq(chain_api_mac_verify(mk, mac, "GET", t, now, now + CHAIN_API_SKEW_S), 0);
    ck_assert_int_eq(chain_api_mac_verify(mk, mac, "GET", t, now, now + CHAIN_API_SKEW_S + 1), CHAIN_ETIME);
    ck_assert_int_eq(chain_api_mac_verify(mk, mac, "GET", t, now, now - CHAIN_API_SKEW_S - 1), CHAIN_ETIME);
    ck_assert_int_eq(chain_api_mac_verify(mk, mac, "GET", "/v1/grants/check?patient=cd", now, now), CHAIN_ESIG);
    ck_assert_int_eq(chain_api_mac_verify(mk, mac, "POST", t, now, now), CHAIN_ESIG);
    ck_assert_int_eq(chain_api_mac_verify(mk, mac, "GET", t, now + 1, now), CHAIN_ESIG);
    /* The keyed context restarts from the key after every MAC, right or wrong. */
    ck_assert_int_eq(chain_api_mac_verify(mk, mac, "GET", t, now, now), 0);
    mac[31] ^= 1;
    ck_assert_int_eq(chain_api_mac_verify(mk, mac, "GET", t, now, now), CHAIN_ESIG);
    ck_assert_int_eq(chain_api_mac_verify(mk, mac, "get", t, now, now), CHAIN_EINVAL);
    ck_assert_int_eq(chain_api_mac_verify(NULL, mac, "GET", t, now, now), CHAIN_EINVAL);
    ck_assert_int_eq(chain_api_mac_key_new(NULL, kn), CHAIN_EINVAL);
    chain_api_mac_key_free(mk);
    chain_api_mac_key_free(NULL);
    /* Another key refuses the MAC. */
    uint8_t other_key[32] = {1};
    ck_assert_int_eq(chain_api_mac_key_new(&mk, other_key), 0);
    mac[31] ^= 1;
    ck_assert_int_eq(chain_api_mac_verify(mk, mac, "GET", t, now, now), CHAIN_ESIG);
    chain_api_mac_key_free(mk);
    ck_assert_int_eq(chain_api_mac(mac, kc, "get", t, now), CHAIN_EINVAL);
    /* A signed body: another body fails; no body is the plain message. */
    chain_sig sig;
    chain_hash h1, h2;
    const uint8_t body[] = "{\"public_key\":\"02\"}";
    ck_assert_int_eq(chain_api_sign_body(ck, &sig, "POST", "/v1/sessions", now, body, sizeof body - 1), 0);
    ck_assert_int_eq(chain_api_verify_body(&caller, &sig, "POST", "/v1/sessions", now, now, body, sizeof body - 1), 0);
    ck_assert_int_eq(chain_api_verify_body(&caller, &sig, "POST", "/v1/sessions", now, now, body, sizeof body - 2),
                     CHAIN_ESIG);
    ck_assert_int_eq(chain_api_verify(&caller, &sig, "POST", "/v1/sessions", now, now), CHAIN_ESIG);
    ck_assert_int_eq(chain_api_sighash_body(&h1, "GET", t, now, NULL, 0), 0);
    ck_assert_int_eq(chain_api_sighash(&h2, "GET", t, now), 0);
    ck_assert_mem_eq(h1.b, h2.b, 32);
    chain_key_destroy(ck);
}
END_TEST

/* A distinct ephemeral public key per session id (the table only compares
 * them). */
/* 1 if the session's keyed context accepts a MAC made with key. */
static int mac_is_under(node__session *k, const uint8_t key[32]) {
    uint8_t mac[32];
    uint64_t now = 1795000000;
    ck_assert_int_eq(chain_api_mac(mac, key, "GET", "/v1/status", now), 0);
    return chain_api_mac_verify(k->mac, mac, "GET", "/v1/status", now, now) == 0;
}

static const uint8_t *eph_for(const uint8_t *id) {
    static uint8_t ring[8][33];
    static unsigned next;
    uint8_t *e = ring[next++ % 8];
    memset(e, 0, 33);
    e[0] = 2;
    memcpy(e + 1, id, 16);
    return e;
}

START_TEST(session_table_evicts_oldest_and_expires) {
    node__sessions *t = NULL;
    ck_assert_int_eq(node__sessions_create(&t, 0, 2, 10), NODE_EINVAL);
    ck_assert_int_eq(node__sessions_create(&t, NODE_SESSIONS_MAX + 1, 2, 10), NODE_EINVAL);
    ck_assert_int_eq(node__sessions_create(&t, 3, 0, 10), NODE_EINVAL);
    ck_assert_int_eq(node__sessions_create(&t, 3, 2, 0), NODE_EINVAL);
    ck_assert_int_eq(node__sessions_create(&t, 3, 2, 10), 0);
    uint8_t id[4][16], key[32] = {7};
    chain_pubkey who[4];
    node__session *k = NULL;
    uint64_t exp = 0;
    memset(id, 0, sizeof id);
    for (int i = 0; i < 4; i++) {
        id[i][0] = (uint8_t)i, id[i][15] = 0xaa;
        memset(who[i].b, i + 1, 32);
        ck_assert_int_eq(node__session_open(t, id[i], &exp, &who[i], eph_for(id[i]), key, 100 + (uint64_t)i), 0);
        ck_assert_uint_eq(exp, 110 + (uint64_t)i);
        ck_assert_int_eq(node__session_open(t, id[i], &exp, &who[i], eph_for(id[i]), key, 100), NODE_EDUP);
    }
    /* Full at 3: the fourth evicted the first. */
    ck_assert_uint_eq(node__sessions_count(t), 3);
    ck_assert_int_eq(node__session_find(t, id[0], 104, &k), CHAIN_ENOTFOUND);
    for (int i = 1; i < 4; i++) {
        ck_assert_int_eq(node__session_find(t, id[i], 104, &k), 0);
        ck_assert_mem_eq(k->caller.b, who[i].b, 32);
        ck_assert(mac_is_under(k, key));
        ck_assert_uint_eq(k->inst_at, 0);
    }
    /* Expiry: the second lived 100 + 1 .. 111. */
    ck_assert_int_eq(node__session_find(t, id[1], 110, &k), 0);
    ck_assert_int_eq(node__session_find(t, id[1], 111, &k), CHAIN_ETIME);
    ck_assert_int_eq(node__session_find(t, id[1], 111, &k), CHAIN_ENOTFOUND);   /* dropped */
    ck_assert_uint_eq(node__sessions_count(t), 2);
    /* The next opens reuse slots in order, still evicting the oldest. */
    uint8_t more[16] = {9};
    ck_assert_int_eq(node__session_open(t, more, &exp, &who[0], eph_for(more), key, 105), 0);
    ck_assert_int_eq(node__session_find(t, id[2], 105, &k), 0);
    ck_assert_int_eq(node__session_find(t, more, 105, &k), 0);
    node__sessions_destroy(t);
    node__sessions_destroy(NULL);
}
END_TEST

/* One caller holds at most per_caller sessions: its next replaces its own
 * oldest and leaves the other callers' sessions alone, even in a table with
 * free slots or a full one. */
START_TEST(session_table_caps_each_caller) {
    node__sessions *t = NULL;
    ck_assert_int_eq(node__sessions_create(&t, 4, 2, 100), 0);
    uint8_t key[32] = {3}, other[16] = {0xee}, id[6][16];
    chain_pubkey a, b;
    memset(a.b, 0xa0, 32);
    memset(b.b, 0xb0, 32);
    node__session *k = NULL;
    uint64_t exp = 0;
    memset(id, 0, sizeof id);
    ck_assert_int_eq(node__session_open(t, other, &exp, &b, eph_for(other), key, 10), 0);   /* b's, the oldest */
    for (int i = 0; i < 6; i++) {
        id[i][0] = (uint8_t)(i + 1);
        ck_assert_int_eq(node__session_open(t, id[i], &exp, &a, eph_for(id[i]), key, 11 + (uint64_t)i), 0);
        ck_assert_uint_eq(node__sessions_count(t), i == 0 ? 2 : 3);
        ck_assert_int_eq(node__session_find(t, other, 20, &k), 0);   /* never pushed out by a */
        ck_assert_mem_eq(k->caller.b, b.b, 32);
    }
    /* A replayed open (same caller, same ephemeral key) changes nothing. */
    uint8_t again[16] = {0x77};
    ck_assert_int_eq(node__session_open(t, again, &exp, &a, eph_for(id[5]), key, 30), NODE_EDUP);
    ck_assert_uint_eq(node__sessions_count(t), 3);
    /* a keeps its two newest. */
    for (int i = 0; i < 4; i++) ck_assert_int_eq(node__session_find(t, id[i], 20, &k), CHAIN_ENOTFOUND);
    ck_assert_int_eq(node__session_find(t, id[4], 20, &k), 0);
    ck_assert_int_eq(node__session_find(t, id[5], 20, &k), 0);
    node__sessions_destroy(t);
}
END_TEST

/* The printed check answer is JSON that jansson reads back to the same
 * fields, strings escaped. */
START_TEST(check_answer_json_round_trips) {
    chain_check_result r;
    memset(&r, 0, sizeof r);
    r.decision = CHAIN_PERMIT;
    snprintf(r.reason, sizeof r.reason, "a \"quoted\" \\ reason\n");
    r.height = 42;
    r.has_grant = 1;
    memset(r.grant.id.b, 0xab, 32);
    r.grant.grant.n_scopes = 2;
    snprintf(r.grant.grant.scopes[0].s, sizeof r.grant.grant.scopes[0].s, "Observation");
    snprintf(r.grant.grant.scopes[1].s, sizeof r.grant.grant.scopes[1].s, "HIV");
    r.grant.grant.n_purposes = 1;
    snprintf(r.grant.grant.purposes[0].s, sizeof r.grant.grant.purposes[0].s, "TREAT");
    r.grant.grant.not_after = UINT64_MAX / 4;
    r.grant.status = CHAIN_GRANT_REVOKED;
    uint8_t hdr[3] = {1, 2, 0xff};
    chain_check_proof p = {7, NULL, 0, hdr, 3, hdr, 2, hdr, 3, hdr, 3, hdr, 1};
    for (int with_proof = 0; with_proof < 2; with_proof++) {
        size_t len = 0;
        char *text = node__check_json(&len, &r, 1795000000, with_proof ? &p : NULL);
        ck_assert_ptr_nonnull(text);
        json_error_t je;
        json_t *j = json_loadb(text, len, JSON_REJECT_DUPLICATES, &je);
        ck_assert_msg(j != NULL, "%s: %s", je.text, text);
        ck_assert_str_eq(json_string_value(json_object_get(j, "decision")), "permit");
        ck_assert_str_eq(json_string_value(json_object_get(j, "reason")), r.reason);
        ck_assert_int_eq(json_integer_value(json_object_get(j, "height")), 42);
        ck_assert_int_eq(json_integer_value(json_object_get(j, "at")), 1795000000);
        json_t *g = json_object_get(j, "grant");
        ck_assert_int_eq(json_object_size(g), 11);
        ck_assert_str_eq(json_string_value(json_array_get(json_object_get(g, "scopes"), 1)), "HIV");
        ck_assert_str_eq(json_string_value(json_object_get(g, "status")), "revoked");
        ck_assert_int_eq(json_integer_value(json_object_get(g, "not_after")), (json_int_t)(UINT64_MAX / 4));
        json_t *pj = json_object_get(j, "proof");
        ck_assert_int_eq(pj != NULL, with_proof);
        if (with_proof) {
            ck_assert_str_eq(json_string_value(json_object_get(pj, "pair_list")), "");
            ck_assert_str_eq(json_string_value(json_object_get(pj, "inst")), "0102");
            ck_assert_str_eq(json_string_value(json_object_get(pj, "header")), "0102ff");
            ck_assert_str_eq(json_string_value(json_object_get(pj, "cert")), "01");
        }
        json_decref(j);
        free(text);
    }
    r.has_grant = 0;
    r.decision = CHAIN_DENY;
    size_t len = 0;
    char *text = node__check_json(&len, &r, 1, NULL), copy[512];
    ck_assert_uint_lt(len, sizeof copy);
    memcpy(copy, text, len);   /* the answer is len bytes, not a C string */
    copy[len] = 0;
    ck_assert_ptr_nonnull(strstr(copy, "\"decision\":\"deny\""));
    ck_assert_msg(strstr(copy, "\"grant\"") == NULL, "%s", copy);
    free(text);
}
END_TEST

/* ------------------------------------------------------------------ node */
static node_fx NF;
static chain_key *K[K_COUNT];
static chain_pubkey PK[K_COUNT];
static char HX[K_COUNT][65];
static wallet_client CL;

static void setup(void) {
    memset(&NF, 0, sizeof NF);
    nfx_mkdir(&NF, "/tmp/consent-session-test.XXXXXX");
    for (int i = 0; i < K_COUNT; i++) {
        K[i] = chain_key_create(NULL);
        ck_assert_ptr_nonnull(K[i]);
        chain_key_pubkey(K[i], &PK[i]);
        chain_hex(HX[i], PK[i].b, 32);
    }
    chain_genesis *g = calloc(1, sizeof *g);
    ck_assert_ptr_nonnull(g);
    snprintf(g->chain_id, sizeof g->chain_id, CHAIN_ID);
    g->time_ms = 1700000000000ull;
    g->n_validators = 1;
    g->n_institutions = 3;
    const char *names[3] = {"hospital-0", "gateway-0", "lab-0"};
    uint32_t roles[3] = {CHAIN_ROLE_VALIDATOR, CHAIN_ROLE_GATEWAY | CHAIN_ROLE_GRANTEE, CHAIN_ROLE_GRANTEE};
    for (int i = 0; i < 3; i++) {
        g->institutions[i].key = PK[i];
        snprintf(g->institutions[i].name, sizeof g->institutions[i].name, "%s", names[i]);
        g->institutions[i].roles = roles[i];
    }
    snprintf(g->institutions[0].p2p_addr, sizeof g->institutions[0].p2p_addr, "127.0.0.1:1");
    snprintf(g->institutions[0].api_addr, sizeof g->institutions[0].api_addr, "127.0.0.1:1");
    nfx_write_node(&NF, g, K[K_VAL], PASS, 20, "error");
    free(g);
    nfx_start(&NF);
    char url[64];
    snprintf(url, sizeof url, "http://127.0.0.1:%d", NF.port);
    ck_assert_int_eq(wallet_client_init(&CL, url), 0);
}

static void teardown(void) {
    nfx_stop(&NF);
    for (int i = 0; i < K_COUNT; i++) chain_key_destroy(K[i]);
    nfx_rm_dir(&NF);
}

/* One request on a fresh connection with extra header lines. */
static int request(char *body_out, size_t cap, const char *method, const char *target, const char *headers,
                   const char *ctype, const char *body) {
    int fd = nfx_dial(NF.port);
    char head[4096];
    size_t blen = body ? strlen(body) : 0;
    int n = snprintf(head, sizeof head, "%s %s HTTP/1.1\r\nHost: t\r\nConnection: close\r\n%s%s%s%sContent-Length: %zu\r\n\r\n%s",
                     method, target, headers, ctype ? "Content-Type: " : "", ctype ? ctype : "", ctype ? "\r\n" : "",
                     blen, body ? body : "");
    ck_assert_int_eq(nfx_send_all(fd, head, (size_t)n), 0);
    char buf[8192];
    size_t got = 0;
    ssize_t r;
    while (got < sizeof buf - 1 && (r = recv(fd, buf + got, sizeof buf - 1 - got, 0)) > 0) got += (size_t)r;
    buf[got] = 0;
    close(fd);
    int status = 0;
    ck_assert_int_eq(sscanf(buf, "HTTP/1.1 %d", &status), 1);
    const char *b = strstr(buf, "\r\n\r\n");
    snprintf(body_out, cap, "%s", b ? b + 4 : "");
    return status;
}

static void check_target(char *out, size_t cap, int grantee) {
    snprintf(out, cap, "/v1/grants/check?patient=%s&grantee=%s&scope=Observation&purpose=TREAT", HX[K_PATIENT],
             HX[grantee]);
}

static int session_check(char *body, size_t cap, const wallet_session *s, int grantee, long skew) {
    char t[512], h[512];
    check_target(t, sizeof t, grantee);
    ck_assert_int_gt(wallet_session_headers(h, sizeof h, s, "GET", t, (uint64_t)(time(NULL) + skew)), 0);
    return request(body, cap, "GET", t, h, NULL, NULL);
}

static void grant_to_gateway(void) {
    chain_tx tx;
    chain_grant gr;
    chain_hash id;
    char err[WALLET_ERR_LEN];
    uint64_t now = (uint64_t)time(NULL), h = 0;
    memset(&gr, 0, sizeof gr);
    gr.patient = PK[K_PATIENT];
    gr.grantee = PK[K_GW];
    gr.n_scopes = gr.n_purposes = 1;
    snprintf(gr.scopes[0].s, sizeof gr.scopes[0].s, "Observation");
    snprintf(gr.purposes[0].s, sizeof gr.purposes[0].s, "TREAT");
    gr.not_before = now - 60;
    gr.not_after = now + 3600;
    memset(&tx, 0, sizeof tx);
    tx.type = CHAIN_TX_GRANT;
    tx.body.grant = gr;
    ck_assert_msg(wallet_send(&CL, &id, err, &tx, K[K_PATIENT], now) == 0, "%s", err);
    ck_assert_msg(wallet_client_wait_tx(&CL, &h, err, &id, 20000, 5) == 0, "%s", err);
}

START_TEST(session_opened_and_used_for_checks) {
    grant_to_gateway();
    char err[WALLET_ERR_LEN], body[8192];
    wallet_session gw, lab, op;
    ck_assert_msg(wallet_session_open(&gw, err, &CL, K[K_GW]) == 0, "%s", err);
    ck_assert_uint_gt(gw.expires_s, (uint64_t)time(NULL));
    ck_assert_int_eq(session_check(body, sizeof body, &gw, K_GW, 0), 200);
    ck_assert_ptr_nonnull(strstr(body, "\"decision\":\"permit\""));
    /* The same authorization rule as signed requests: the lab may not ask
     * about the gateway's grants, an operator may. */
    ck_assert_int_eq(wallet_session_open(&lab, err, &CL, K[K_LAB]), 0);
    ck_assert_int_eq(session_check(body, sizeof body, &lab, K_GW, 0), 403);
    ck_assert_int_eq(session_check(body, sizeof body, &lab, K_LAB, 0), 200);
    ck_assert_ptr_nonnull(strstr(body, "\"decision\":\"deny\""));
    ck_assert_int_eq(wallet_session_open(&op, err, &CL, K[K_VAL]), 0);
    ck_assert_int_eq(session_check(body, sizeof body, &op, K_GW, 0), 200);
    /* Audit lines name the session's caller, never the session or its key. */
    char path[512], line[1024], sid[33], last_gw[1024] = "";
    snprintf(path, sizeof path, "%s/node0/data/audit.log", NF.dir);
    FILE *f = fopen(path, "r");
    ck_assert_ptr_nonnull(f);
    int refused_lab = 0;
    chain_hex(sid, gw.id, 16);
    while (fgets(line, sizeof line, f)) {
        ck_assert_ptr_null(strstr(line, sid));
        if (strstr(line, HX[K_GW]) && strstr(line, "\"caller\":\"") == strstr(line, HX[K_GW]) - 10)
            snprintf(last_gw, sizeof last_gw, "%s", line);
        if (strstr(line, "refused-403") && strstr(line, HX[K_LAB])) refused_lab++;
    }
    fclose(f);
    ck_assert_ptr_nonnull(strstr(last_gw, "\"decision\":\"permit\""));
    ck_assert_int_eq(refused_lab, 1);
    /* A session's MAC is no signature, nor the other way round. */
    char t[512], h[1024], mac_hex[65];
    check_target(t, sizeof t, K_GW);
    ck_assert_int_gt(wallet_session_headers(h, sizeof h, &gw, "GET", t, (uint64_t)time(NULL)), 0);
    char *m = strstr(h, "X-Consent-Mac: ") + 15;
    memcpy(mac_hex, m, 64);
    mac_hex[64] = 0;
    m[0] = m[0] == '0' ? '1' : '0';   /* wrong MAC */
    ck_assert_int_eq(request(body, sizeof body, "GET", t, h, NULL, NULL), 401);
    ck_assert_ptr_nonnull(strstr(body, "bad request MAC"));
    /* A MAC for another target. */
    char other[512];
    check_target(other, sizeof other, K_LAB);
    ck_assert_int_gt(wallet_session_headers(h, sizeof h, &gw, "GET", other, (uint64_t)time(NULL)), 0);
    ck_assert_int_eq(request(body, sizeof body, "GET", t, h, NULL, NULL), 401);
    /* Replay outside the time window, either side. */
    ck_assert_int_eq(session_check(body, sizeof body, &gw, K_GW, -CHAIN_API_SKEW_S - 30), 401);
    ck_assert_ptr_nonnull(strstr(body, "300 s"));
    ck_assert_int_eq(session_check(body, sizeof body, &gw, K_GW, CHAIN_API_SKEW_S + 30), 401);
    /* Unknown session. */
    wallet_session fake = gw;
    fake.id[0] ^= 1;
    ck_assert_int_eq(session_check(body, sizeof body, &fake, K_GW, 0), 401);
    ck_assert_ptr_nonnull(strstr(body, "unknown session"));
    /* Malformed and mixed credentials. */
    snprintf(h, sizeof h, "X-Consent-Session: xyz\r\nX-Consent-Time: 1\r\nX-Consent-Mac: %s\r\n", mac_hex);
    ck_assert_int_eq(request(body, sizeof body, "GET", t, h, NULL, NULL), 401);
    ck_assert_ptr_nonnull(strstr(body, "32 lower-case hex"));
    ck_assert_int_gt(wallet_session_headers(h, sizeof h, &gw, "GET", t, (uint64_t)time(NULL)), 0);
    strcat(h, "X-Consent-Key: ");
    strcat(h, HX[K_GW]);
    strcat(h, "\r\n");
    ck_assert_int_eq(request(body, sizeof body, "GET", t, h, NULL, NULL), 401);
    snprintf(h, sizeof h, "X-Consent-Mac: %s\r\n", mac_hex);
    ck_assert_int_eq(request(body, sizeof body, "GET", t, h, NULL, NULL), 401);
    ck_assert_ptr_nonnull(strstr(body, "goes with X-Consent-Session"));
    /* The good session still works after all that. */
    ck_assert_int_eq(session_check(body, sizeof body, &gw, K_GW, 0), 200);
    wallet_session_clear(&gw);
    wallet_session_clear(&lab);
    wallet_session_clear(&op);
}
END_TEST

/* POST /v1/sessions signed over this body by key k (-1: unsigned). */
static int open_raw(char *out, size_t cap, int k, const char *ctype, const char *body, const char *signed_body) {
    char h[1024] = "";
    if (k >= 0) {
        chain_sig sig;
        char s[129];
        uint64_t now = (uint64_t)time(NULL);
        ck_assert_int_eq(chain_api_sign_body(K[k], &sig, "POST", "/v1/sessions", now, (const uint8_t *)signed_body,
                                             strlen(signed_body)), 0);
        chain_hex(s, sig.b, 64);
        snprintf(h, sizeof h, "X-Consent-Key: %s\r\nX-Consent-Time: %llu\r\nX-Consent-Signature: %s\r\n", HX[k],
                 (unsigned long long)now, s);
    }
    return request(out, cap, "POST", "/v1/sessions", h, ctype, body);
}

START_TEST(session_bad_requests_change_nothing) {
    char body[4096], pub[67], good[128];
    uint8_t sec[32], p[33];
    ck_assert_int_eq(chain_api_eph_keygen(sec, p), 0);
    chain_hex(pub, p, 33);
    snprintf(good, sizeof good, "{\"public_key\":\"%s\"}", pub);
    node__sessions *t = node__get_sessions(NF.n);
    const char *json = "application/json";
    ck_assert_int_eq(open_raw(body, sizeof body, -1, json, good, good), 401);   /* unsigned */
    ck_assert_int_eq(open_raw(body, sizeof body, K_GW, json, "not json", "not json"), 400);
    ck_assert_ptr_nonnull(strstr(body, "malformed JSON"));
    ck_assert_int_eq(open_raw(body, sizeof body, K_GW, json, "{\"public_key\":\"02ab\"}", "{\"public_key\":\"02ab\"}"), 400);
    ck_assert_ptr_nonnull(strstr(body, "66 lower-case hex"));
    char bad[128];
    snprintf(bad, sizeof bad, "{\"public_key\":\"02%064d\"}", 0);   /* x = 0: off the curve */
    ck_assert_int_eq(open_raw(body, sizeof body, K_GW, json, bad, bad), 400);
    ck_assert_ptr_nonnull(strstr(body, "not a valid secp256k1 point"));
    snprintf(bad, sizeof bad, "{\"public_key\":\"%s\",\"x\":1}", pub);
    ck_assert_int_eq(open_raw(body, sizeof body, K_GW, json, bad, bad), 400);
    ck_assert_int_eq(open_raw(body, sizeof body, K_GW, "text/plain", good, good), 415);
    /* The body is signed: another key in the body than the one signed. */
    snprintf(bad, sizeof bad, "{\"public_key\":\"%s\"}", pub);
    bad[16] = bad[16] == '0' ? '1' : '0';
    ck_assert_int_eq(open_raw(body, sizeof body, K_GW, json, good, bad), 401);
    ck_assert_ptr_nonnull(strstr(body, "bad request signature"));
    /* A patient (no institution, no operator) signs each request instead. */
    ck_assert_int_eq(open_raw(body, sizeof body, K_PATIENT, json, good, good), 403);
    ck_assert_ptr_nonnull(strstr(body, "registered institutions and operators"));
    ck_assert_int_eq(request(body, sizeof body, "GET", "/v1/sessions", "", NULL, NULL), 405);
    ck_assert_uint_eq(node__sessions_count(t), 0);   /* nothing was opened */
    ck_assert_int_eq(open_raw(body, sizeof body, K_GW, json, good, good), 201);
    ck_assert_ptr_nonnull(strstr(body, "\"session\""));
    ck_assert_uint_eq(node__sessions_count(t), 1);
    /* The same open again (a replay within the time window) opens nothing. */
    ck_assert_int_eq(open_raw(body, sizeof body, K_GW, json, good, good), 409);
    ck_assert_ptr_nonnull(strstr(body, "ephemeral key is open already"));
    ck_assert_uint_eq(node__sessions_count(t), 1);
}
END_TEST

int main(void) {
    Suite *s = suite_create("node_session");
    TCase *units = tcase_create("units");
    tcase_add_test(units, session_keys_agree_and_macs_verify);
    tcase_add_test(units, session_table_evicts_oldest_and_expires);
    tcase_add_test(units, session_table_caps_each_caller);
    tcase_add_test(units, check_answer_json_round_trips);
    suite_add_tcase(s, units);
    TCase *tc = tcase_create("node");
    tcase_set_timeout(tc, 120);
    tcase_add_checked_fixture(tc, setup, teardown);
    tcase_add_test(tc, session_opened_and_used_for_checks);
    tcase_add_test(tc, session_bad_requests_change_nothing);
    suite_add_tcase(s, tc);
    SRunner *sr = srunner_create(s);
    srunner_run_all(sr, CK_NORMAL);
    int failed = srunner_ntests_failed(sr);
    srunner_free(sr);
    return failed ? 1 : 0;
}
