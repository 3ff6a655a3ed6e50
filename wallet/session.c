/* session.c — the client side of authenticated API sessions.
 *
 * wallet_session_open sends the one signed POST /v1/sessions with a fresh
 * ephemeral key and derives the session key from the node's answer
 * (chain_api_session_key, the same computation the node makes);
 * wallet_session_headers then MACs each request (chain_api_mac). The
 * ephemeral secret never leaves this file and is wiped before returning.
 */
#include <inttypes.h>
#include <stdio.h>
#include <string.h>

#include <openssl/crypto.h>

#include "wallet/wallet.h"

#define SESSION_ROUTE "/v1/sessions"

/* Session id, node point and expiry from the node's 201 answer. */
static int session_answer(wallet_session *out, uint8_t npub[CHAIN_API_EPH_PUB_LEN], char *err, const json_t *j)
{
    const char *sid = json_string_value(json_object_get(j, "session"));
    const char *pk = json_string_value(json_object_get(j, "public_key"));
    json_t *exp = json_object_get(j, "expires");
    if (!sid || strlen(sid) != 2 * CHAIN_API_SESSION_ID_LEN ||
        chain_unhex(out->id, CHAIN_API_SESSION_ID_LEN, sid) != 0 || !pk ||
        strlen(pk) != 2 * CHAIN_API_EPH_PUB_LEN || chain_unhex(npub, CHAIN_API_EPH_PUB_LEN, pk) != 0 ||
        !chain_api_eph_valid(npub) || !json_is_integer(exp) || json_integer_value(exp) <= 0) {
        snprintf(err, WALLET_ERR_LEN, "%s: the node's answer is not {session, public_key, expires}", SESSION_ROUTE);
        return WALLET_EJSON;
    }
    out->expires_s = (uint64_t)json_integer_value(exp);
    return 0;
}

int wallet_session_open(wallet_session *out, char *err, wallet_client *c, const chain_key *key)
{
    uint8_t csec[CHAIN_API_EPH_SEC_LEN], cpub[CHAIN_API_EPH_PUB_LEN], npub[CHAIN_API_EPH_PUB_LEN];
    char hex[2 * CHAIN_API_EPH_PUB_LEN + 1], body[128];
    chain_pubkey caller;
    wallet_http_response r;
    json_t *j = NULL;
    memset(out, 0, sizeof *out);
    int rc = chain_api_eph_keygen(csec, cpub);
    if (rc) {
        snprintf(err, WALLET_ERR_LEN, "cannot make an ephemeral key: %s", chain_strerror(rc));
        return rc;
    }
    chain_hex(hex, cpub, sizeof cpub);
    int n = snprintf(body, sizeof body, "{\"public_key\":\"%s\"}", hex);
    const chain_key *was = c->sign_key;
    c->sign_key = key;   /* the body is signed with the request */
    rc = wallet_client_request(c, &r, err, "POST", SESSION_ROUTE, "application/json", (const uint8_t *)body,
                               (size_t)n);
    c->sign_key = was;
    if (!rc) {
        rc = wallet_response_json(&j, err, &r, SESSION_ROUTE);
        wallet_http_response_free(&r);
    }
    if (!rc) rc = session_answer(out, npub, err, j);
    json_decref(j);
    chain_key_pubkey(key, &caller);
    if (!rc) {
        rc = chain_api_session_key(out->key, csec, npub, cpub, npub, &caller, out->id);
        if (rc) snprintf(err, WALLET_ERR_LEN, "cannot derive the session key: %s", chain_strerror(rc));
    }
    OPENSSL_cleanse(csec, sizeof csec);
    if (rc) wallet_session_clear(out);
    return rc;
}

int wallet_session_headers(char *out, size_t cap, const wallet_session *s, const char *method,
                           const char *target, uint64_t now_s)
{
    uint8_t mac[CHAIN_API_MAC_LEN];
    char sid[2 * CHAIN_API_SESSION_ID_LEN + 1], mhex[2 * CHAIN_API_MAC_LEN + 1];
    int rc = chain_api_mac(mac, s->key, method, target, now_s);
    if (rc) return rc;
    chain_hex(sid, s->id, sizeof s->id);
    chain_hex(mhex, mac, sizeof mac);
    int n = snprintf(out, cap, "X-Consent-Session: %s\r\nX-Consent-Time: %" PRIu64 "\r\nX-Consent-Mac: %s\r\n",
                     sid, now_s, mhex);
    return n > 0 && (size_t)n < cap ? n : CHAIN_EBOUNDS;
}

void wallet_session_clear(wallet_session *s)
{
    OPENSSL_cleanse(s, sizeof *s);
}
