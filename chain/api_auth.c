/* api_auth.c — the signature an API caller puts on a request.
 *
 * Reading a patient's grants, or asking whether a grantee may receive data,
 * is itself sensitive, so the node wants to know who asks. A caller signs
 * SHA-256("consent/api/v1\n" || METHOD || "\n" || TARGET || "\n" || TIME)
 * with BIP340 and sends key, time and signature as headers. The method and
 * the whole target (path and query) are covered, so a signature for one
 * patient's listing cannot be replayed against another's; the time bounds
 * replay to CHAIN_API_SKEW_S either side of the node's clock. The node
 * verifies and the wallet signs through this one file, so both build the
 * exact same bytes. A request with a body (POST /v1/sessions) also signs
 * "\n" || hex(SHA-256(body)) after TIME, so the body cannot be swapped.
 *
 * Sessions spare a gateway one BIP340 signature per request (about 80 us to
 * sign, 46 us to verify). One signed POST /v1/sessions carries an ephemeral
 * secp256k1 key of the caller; the node answers with its own and a session
 * id; both sides derive the session key with ECDH (libsecp256k1: SHA-256 of
 * the shared point) and HKDF-SHA256 (OpenSSL) over both ephemeral keys, the
 * caller's key and the session id, so the secret never crosses the wire.
 * Requests then carry HMAC-SHA256(session key, the same message as above)
 * instead of a signature: microseconds instead of a verification.
 */
#include <assert.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <openssl/core_names.h>
#include <openssl/crypto.h>
#include <openssl/evp.h>
#include <openssl/hmac.h>
#include <openssl/kdf.h>
#include <openssl/rand.h>
#include <secp256k1.h>
#include <secp256k1_ecdh.h>

#include "chain/chain.h"
#include "chain/chain_internal.h"

#define API_TAG "consent/api/v1\n"
#define SESSION_TAG "consent/session/v1"
#define API_TIME_DIGITS_MAX 20
#define API_MSG_MAX (sizeof(API_TAG) + CHAIN_API_METHOD_LEN_MAX + CHAIN_API_TARGET_LEN_MAX + \
                     API_TIME_DIGITS_MAX + 2 * CHAIN_HASH_LEN + 5)

static int method_ok(const char *m)
{
    size_t n = strnlen(m, CHAIN_API_METHOD_LEN_MAX + 1);
    if (n == 0 || n > CHAIN_API_METHOD_LEN_MAX) return 0;
    for (size_t i = 0; i < n; i++) {
        if (m[i] < 'A' || m[i] > 'Z') return 0;
    }
    return 1;
}

/* Printable ASCII only: a newline inside the target would let one request
 * pose as another in the signed message. */
static int target_ok(const char *t)
{
    size_t n = strnlen(t, CHAIN_API_TARGET_LEN_MAX + 1);
    if (n == 0 || n > CHAIN_API_TARGET_LEN_MAX || t[0] != '/') return 0;
    for (size_t i = 0; i < n; i++) {
        if (t[i] < 0x21 || t[i] > 0x7e) return 0;
    }
    return 1;
}

/* The signed (or MAC'd) message into buf; its length, or CHAIN_EINVAL. */
static int api_message(char buf[API_MSG_MAX], const char *method, const char *target, uint64_t time_s,
                       const uint8_t *body, size_t body_len)
{
    if (method == NULL || target == NULL || (body == NULL && body_len > 0)) return CHAIN_EINVAL;
    if (!method_ok(method) || !target_ok(target)) return CHAIN_EINVAL;
    int n = snprintf(buf, API_MSG_MAX, "%s%s\n%s\n%" PRIu64, API_TAG, method, target, time_s);
    assert(n > 0 && (size_t)n < API_MSG_MAX - 2 * CHAIN_HASH_LEN - 2);   /* bounded by the checks above */
    if (body_len > 0) {
        chain_hash h;
        chain_sha256(&h, body, body_len);
        buf[n++] = '\n';
        chain_hex(buf + n, h.b, CHAIN_HASH_LEN);
        n += 2 * CHAIN_HASH_LEN;
    }
    return n;
}

int chain_api_sighash_body(chain_hash *out, const char *method, const char *target, uint64_t time_s,
                           const uint8_t *body, size_t body_len)
{
    char buf[API_MSG_MAX];
    if (out == NULL) return CHAIN_EINVAL;
    int n = api_message(buf, method, target, time_s, body, body_len);
    if (n < 0) return n;
    chain_sha256(out, buf, (size_t)n);
    return CHAIN_OK;
}

int chain_api_sighash(chain_hash *out, const char *method, const char *target, uint64_t time_s)
{
    return chain_api_sighash_body(out, method, target, time_s, NULL, 0);
}

static int time_ok(uint64_t time_s, uint64_t now_s)
{
    uint64_t skew = time_s > now_s ? time_s - now_s : now_s - time_s;
    return skew <= CHAIN_API_SKEW_S;
}

int chain_api_sign_body(const chain_key *key, chain_sig *out, const char *method, const char *target,
                        uint64_t time_s, const uint8_t *body, size_t body_len)
{
    chain_hash h;
    if (key == NULL || out == NULL) return CHAIN_EINVAL;
    int rc = chain_api_sighash_body(&h, method, target, time_s, body, body_len);
    if (rc != CHAIN_OK) return rc;
    return chain_sign(key, out, &h);
}

int chain_api_sign(const chain_key *key, chain_sig *out, const char *method, const char *target,
                   uint64_t time_s)
{
    return chain_api_sign_body(key, out, method, target, time_s, NULL, 0);
}

int chain_api_verify_body(const chain_pubkey *pk, const chain_sig *sig, const char *method,
                          const char *target, uint64_t time_s, uint64_t now_s, const uint8_t *body,
                          size_t body_len)
{
    chain_hash h;
    if (pk == NULL || sig == NULL) return CHAIN_EINVAL;
    int rc = chain_api_sighash_body(&h, method, target, time_s, body, body_len);
    if (rc != CHAIN_OK) return rc;
    if (!time_ok(time_s, now_s)) return CHAIN_ETIME;
    return chain_verify_cached(pk, sig, &h) == CHAIN_OK ? CHAIN_OK : CHAIN_ESIG;
}

int chain_api_verify(const chain_pubkey *pk, const chain_sig *sig, const char *method,
                     const char *target, uint64_t time_s, uint64_t now_s)
{
    return chain_api_verify_body(pk, sig, method, target, time_s, now_s, NULL, 0);
}

/* ------------------------------------------------------------------ sessions */
int chain_api_eph_keygen(uint8_t sec[CHAIN_API_EPH_SEC_LEN], uint8_t pub[CHAIN_API_EPH_PUB_LEN])
{
    if (sec == NULL || pub == NULL) return CHAIN_EINVAL;
    /* A context of our own: key generation must not use the static one. */
    secp256k1_context *ctx = secp256k1_context_create(SECP256K1_CONTEXT_NONE);
    if (ctx == NULL) return CHAIN_ENOMEM;
    int rc = CHAIN_EIO;
    uint8_t seed[32];
    secp256k1_pubkey pk;
    size_t len = CHAIN_API_EPH_PUB_LEN;
    if (RAND_bytes(seed, sizeof seed) == 1 && secp256k1_context_randomize(ctx, seed)) {
        for (int tries = 0; tries < 8 && rc != CHAIN_OK; tries++) {
            if (RAND_bytes(sec, CHAIN_API_EPH_SEC_LEN) != 1) break;
            if (secp256k1_ec_pubkey_create(ctx, &pk, sec) &&
                secp256k1_ec_pubkey_serialize(ctx, pub, &len, &pk, SECP256K1_EC_COMPRESSED))
                rc = CHAIN_OK;
        }
    }
    OPENSSL_cleanse(seed, sizeof seed);
    if (rc != CHAIN_OK) OPENSSL_cleanse(sec, CHAIN_API_EPH_SEC_LEN);
    secp256k1_context_destroy(ctx);
    return rc;
}

int chain_api_eph_valid(const uint8_t pub[CHAIN_API_EPH_PUB_LEN])
{
    secp256k1_pubkey pk;
    return pub != NULL && (pub[0] == 2 || pub[0] == 3) &&
           secp256k1_ec_pubkey_parse(secp256k1_context_static, &pk, pub, CHAIN_API_EPH_PUB_LEN);
}

int chain_api_session_key(uint8_t key[CHAIN_API_SESSION_KEY_LEN], const uint8_t my_sec[CHAIN_API_EPH_SEC_LEN],
                          const uint8_t peer_pub[CHAIN_API_EPH_PUB_LEN],
                          const uint8_t client_pub[CHAIN_API_EPH_PUB_LEN],
                          const uint8_t node_pub[CHAIN_API_EPH_PUB_LEN], const chain_pubkey *caller,
                          const uint8_t sid[CHAIN_API_SESSION_ID_LEN])
{
    if (key == NULL || my_sec == NULL || peer_pub == NULL || client_pub == NULL || node_pub == NULL ||
        caller == NULL || sid == NULL)
        return CHAIN_EINVAL;
    secp256k1_pubkey peer;
    uint8_t shared[32];
    if (!chain_api_eph_valid(peer_pub) ||
        !secp256k1_ec_pubkey_parse(secp256k1_context_static, &peer, peer_pub, CHAIN_API_EPH_PUB_LEN))
        return CHAIN_EINVAL;
    /* ecmult_const only: the static context is enough. */
    if (!secp256k1_ecdh(secp256k1_context_static, shared, &peer, my_sec, NULL, NULL)) return CHAIN_EINVAL;
    /* info binds the whole exchange: both ephemeral keys, who, which session. */
    uint8_t info[sizeof(SESSION_TAG) - 1 + 2 * CHAIN_API_EPH_PUB_LEN + CHAIN_KEY_LEN + CHAIN_API_SESSION_ID_LEN];
    size_t o = 0;
    memcpy(info + o, SESSION_TAG, sizeof(SESSION_TAG) - 1), o += sizeof(SESSION_TAG) - 1;
    memcpy(info + o, client_pub, CHAIN_API_EPH_PUB_LEN), o += CHAIN_API_EPH_PUB_LEN;
    memcpy(info + o, node_pub, CHAIN_API_EPH_PUB_LEN), o += CHAIN_API_EPH_PUB_LEN;
    memcpy(info + o, caller->b, CHAIN_KEY_LEN), o += CHAIN_KEY_LEN;
    memcpy(info + o, sid, CHAIN_API_SESSION_ID_LEN), o += CHAIN_API_SESSION_ID_LEN;
    assert(o == sizeof info);
    int rc = CHAIN_EIO;
    EVP_KDF *kdf = EVP_KDF_fetch(NULL, "HKDF", NULL);
    EVP_KDF_CTX *kc = kdf ? EVP_KDF_CTX_new(kdf) : NULL;
    if (kc != NULL) {
        OSSL_PARAM params[] = {
            OSSL_PARAM_construct_utf8_string(OSSL_KDF_PARAM_DIGEST, (char *)"SHA256", 0),
            OSSL_PARAM_construct_octet_string(OSSL_KDF_PARAM_KEY, shared, sizeof shared),
            OSSL_PARAM_construct_octet_string(OSSL_KDF_PARAM_SALT, (char *)SESSION_TAG, sizeof(SESSION_TAG) - 1),
            OSSL_PARAM_construct_octet_string(OSSL_KDF_PARAM_INFO, info, sizeof info),
            OSSL_PARAM_construct_end(),
        };
        if (EVP_KDF_derive(kc, key, CHAIN_API_SESSION_KEY_LEN, params) == 1) rc = CHAIN_OK;
    }
    EVP_KDF_CTX_free(kc);
    EVP_KDF_free(kdf);
    OPENSSL_cleanse(shared, sizeof shared);
    return rc;
}

int chain_api_mac(uint8_t mac[CHAIN_API_MAC_LEN], const uint8_t key[CHAIN_API_SESSION_KEY_LEN],
                  const char *method, const char *target, uint64_t time_s)
{
    char buf[API_MSG_MAX];
    unsigned int len = CHAIN_API_MAC_LEN;
    if (mac == NULL || key == NULL) return CHAIN_EINVAL;
    int n = api_message(buf, method, target, time_s, NULL, 0);
    if (n < 0) return n;
    if (HMAC(EVP_sha256(), key, CHAIN_API_SESSION_KEY_LEN, (const uint8_t *)buf, (size_t)n, mac, &len) == NULL)
        return CHAIN_EIO;
    return CHAIN_OK;
}

/* The node checks every request of a session under the same key. OpenSSL's
 * one-shot HMAC() fetches SHA-256 and runs the key schedule (two
 * compressions) on every call; a context keyed once and re-initialised
 * with a NULL key restarts from the saved inner and outer states: about
 * 0.5 us a MAC against 1.7-2.8 us, and no allocation per request. */
struct chain_api_mac_key {
    EVP_MAC_CTX *ctx;
};

int chain_api_mac_key_new(chain_api_mac_key **out, const uint8_t key[CHAIN_API_SESSION_KEY_LEN])
{
    if (out == NULL || key == NULL) return CHAIN_EINVAL;
    chain_api_mac_key *k = calloc(1, sizeof *k);
    if (k == NULL) return CHAIN_ENOMEM;
    EVP_MAC *alg = EVP_MAC_fetch(NULL, "HMAC", NULL);
    k->ctx = alg ? EVP_MAC_CTX_new(alg) : NULL;   /* holds its own reference to alg */
    EVP_MAC_free(alg);
    OSSL_PARAM params[] = {
        OSSL_PARAM_construct_utf8_string(OSSL_MAC_PARAM_DIGEST, (char *)"SHA256", 0),
        OSSL_PARAM_construct_end(),
    };
    if (k->ctx == NULL || EVP_MAC_init(k->ctx, key, CHAIN_API_SESSION_KEY_LEN, params) != 1) {
        chain_api_mac_key_free(k);
        return CHAIN_EIO;
    }
    *out = k;
    return CHAIN_OK;
}

void chain_api_mac_key_free(chain_api_mac_key *k)
{
    if (k == NULL) return;
    EVP_MAC_CTX_free(k->ctx);   /* the HMAC provider wipes its key states */
    free(k);
}

int chain_api_mac_verify(chain_api_mac_key *k, const uint8_t mac[CHAIN_API_MAC_LEN], const char *method,
                         const char *target, uint64_t time_s, uint64_t now_s)
{
    char buf[API_MSG_MAX];
    uint8_t want[CHAIN_API_MAC_LEN];
    size_t len = 0;
    if (k == NULL || mac == NULL) return CHAIN_EINVAL;
    int n = api_message(buf, method, target, time_s, NULL, 0);
    if (n < 0) return n;
    if (EVP_MAC_init(k->ctx, NULL, 0, NULL) != 1 || EVP_MAC_update(k->ctx, (const uint8_t *)buf, (size_t)n) != 1 ||
        EVP_MAC_final(k->ctx, want, &len, sizeof want) != 1 || len != sizeof want)
        return CHAIN_EIO;
    if (!time_ok(time_s, now_s)) return CHAIN_ETIME;
    return CRYPTO_memcmp(want, mac, CHAIN_API_MAC_LEN) == 0 ? CHAIN_OK : CHAIN_ESIG;
}
