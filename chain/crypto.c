/* crypto.c — SHA-256 and BIP340 Schnorr signatures.
 *
 * Hashing is OpenSSL's SHA-256; keys and signatures are libsecp256k1's
 * schnorrsig module. A chain_key owns its own secp256k1 context (randomized
 * against side channels) so keys never share mutable state; verification
 * needs no key object and uses the library's static context, so any thread
 * may verify at any time.
 */
/* SHA256_Init and friends: see chain_sha256. */
#define OPENSSL_SUPPRESS_DEPRECATED
#include <assert.h>
#include <stdlib.h>
#include <string.h>

#include <openssl/crypto.h>
#include <openssl/rand.h>
#include <openssl/sha.h>
#include <secp256k1.h>
#include <secp256k1_extrakeys.h>
#include <secp256k1_schnorrsig.h>

#include "chain/chain.h"
#include "chain/chain_internal.h"

struct chain_key {
    secp256k1_context *ctx;
    secp256k1_keypair keypair;
    chain_pubkey pub;
    uint8_t sec[CHAIN_SECKEY_LEN];
};

/* SHA-256 through OpenSSL's one-context functions, not EVP: a state-tree
 * node or a transaction is hashed in ~0.1 us this way and ~0.26 us through
 * EVP_Digest even with the algorithm fetched once (context allocation and
 * provider dispatch per call), and a block hashes tens of thousands of such
 * short inputs. The functions are deprecated in OpenSSL 3 but present in
 * every 3.x; the same machine code (SHA-NI where the CPU has it) runs. */
void chain_sha256(chain_hash *out, const void *data, size_t len)
{
    assert(out != NULL);
    assert(data != NULL || len == 0);
    SHA256_CTX c;
    if (SHA256_Init(&c) != 1 || (len > 0 && SHA256_Update(&c, data, len) != 1) ||
        SHA256_Final(out->b, &c) != 1)
        abort();   /* cannot fail for SHA-256; a wrong digest is worse than a stop */
}

/* Fills buf with len bytes from OpenSSL's CSPRNG; 0 on success. */
static int random_bytes(uint8_t *buf, size_t len)
{
    return RAND_bytes(buf, (int)len) == 1 ? 0 : CHAIN_EIO;
}

static int key_init(chain_key *k, const uint8_t sec[CHAIN_SECKEY_LEN])
{
    uint8_t seed[32];
    secp256k1_xonly_pubkey xpk;
    k->ctx = secp256k1_context_create(SECP256K1_CONTEXT_NONE);
    if (k->ctx == NULL) return CHAIN_ENOMEM;
    if (random_bytes(seed, sizeof seed) != 0) return CHAIN_EIO;
    int ok = secp256k1_context_randomize(k->ctx, seed);
    OPENSSL_cleanse(seed, sizeof seed);
    if (!ok) return CHAIN_EIO;
    if (!secp256k1_keypair_create(k->ctx, &k->keypair, sec)) return CHAIN_EINVAL;
    if (!secp256k1_keypair_xonly_pub(k->ctx, &xpk, NULL, &k->keypair)) return CHAIN_EINVAL;
    if (!secp256k1_xonly_pubkey_serialize(k->ctx, k->pub.b, &xpk)) return CHAIN_EINVAL;
    memcpy(k->sec, sec, CHAIN_SECKEY_LEN);
    return CHAIN_OK;
}

chain_key *chain_key_create(const uint8_t *sec)
{
    uint8_t fresh[CHAIN_SECKEY_LEN];
    chain_key *k = calloc(1, sizeof *k);
    if (k == NULL) return NULL;
    int rc = CHAIN_OK;
    if (sec == NULL) {
        /* A random 32-byte string is a valid secret except with negligible
         * probability (zero or >= the group order); retry a bounded number
         * of times rather than loop forever on a broken RNG. */
        rc = CHAIN_EINVAL;
        for (int tries = 0; tries < 8 && rc == CHAIN_EINVAL; tries++) {
            if (random_bytes(fresh, sizeof fresh) != 0) { rc = CHAIN_EIO; break; }
            if (secp256k1_ec_seckey_verify(secp256k1_context_static, fresh)) rc = CHAIN_OK;
        }
        if (rc == CHAIN_OK) rc = key_init(k, fresh);
        OPENSSL_cleanse(fresh, sizeof fresh);
    } else {
        rc = key_init(k, sec);
    }
    if (rc != CHAIN_OK) {
        chain_key_destroy(k);
        return NULL;
    }
    return k;
}

void chain_key_destroy(chain_key *key)
{
    if (key == NULL) return;
    if (key->ctx != NULL) secp256k1_context_destroy(key->ctx);
    OPENSSL_cleanse(key, sizeof *key);
    free(key);
}

void chain_key_pubkey(const chain_key *key, chain_pubkey *out)
{
    assert(key != NULL && out != NULL);
    *out = key->pub;
}

void chain_key_secret(const chain_key *key, uint8_t out[CHAIN_SECKEY_LEN])
{
    assert(key != NULL && out != NULL);
    memcpy(out, key->sec, CHAIN_SECKEY_LEN);
}

int chain_sign(const chain_key *key, chain_sig *out, const chain_hash *msg)
{
    uint8_t aux[32];
    if (key == NULL || out == NULL || msg == NULL) return CHAIN_EINVAL;
    /* Auxiliary randomness hardens against fault and side-channel attacks;
     * BIP340 signatures stay valid and unique to verify either way. */
    if (random_bytes(aux, sizeof aux) != 0) return CHAIN_EIO;
    int ok = secp256k1_schnorrsig_sign32(key->ctx, out->b, msg->b, &key->keypair, aux);
    OPENSSL_cleanse(aux, sizeof aux);
    return ok ? CHAIN_OK : CHAIN_ESIG;
}

static int verify_parsed(const secp256k1_xonly_pubkey *xpk, const chain_sig *sig, const chain_hash *msg)
{
    return secp256k1_schnorrsig_verify(secp256k1_context_static, sig->b, msg->b, CHAIN_HASH_LEN, xpk)
               ? CHAIN_OK
               : CHAIN_ESIG;
}

int chain_verify(const chain_pubkey *pk, const chain_sig *sig, const chain_hash *msg)
{
    secp256k1_xonly_pubkey xpk;
    if (pk == NULL || sig == NULL || msg == NULL) return CHAIN_EINVAL;
    if (!secp256k1_xonly_pubkey_parse(secp256k1_context_static, &xpk, pk->b)) return CHAIN_ESIG;
    return verify_parsed(&xpk, sig, msg);
}

/* Parsing a key (a square root) is about a seventh of a verification, and
 * institution keys sign over and over: every certificate, consensus vote
 * and signed API request. Each thread keeps the last parsed key per slot
 * (direct-mapped by the key's first byte, uniform for x coordinates); no
 * lock, and a miss costs one parse as before. Only valid keys are kept. */
#define PARSED_SLOTS 64u
typedef struct {
    chain_pubkey key;
    int used;
    secp256k1_xonly_pubkey xpk;
} parsed_slot;
static _Thread_local parsed_slot parsed[PARSED_SLOTS];

int chain_verify_cached(const chain_pubkey *pk, const chain_sig *sig, const chain_hash *msg)
{
    if (pk == NULL || sig == NULL || msg == NULL) return CHAIN_EINVAL;
    parsed_slot *s = &parsed[pk->b[0] % PARSED_SLOTS];
    if (!s->used || memcmp(s->key.b, pk->b, CHAIN_KEY_LEN) != 0) {
        secp256k1_xonly_pubkey xpk;
        if (!secp256k1_xonly_pubkey_parse(secp256k1_context_static, &xpk, pk->b)) return CHAIN_ESIG;
        s->key = *pk;
        s->xpk = xpk;
        s->used = 1;
    }
    return verify_parsed(&s->xpk, sig, msg);
}

void chain__sha256_tagged(chain_hash *out, const char *tag, const void *data, size_t len)
{
    assert(out != NULL && tag != NULL);
    assert(data != NULL || len == 0);
    SHA256_CTX c;
    if (SHA256_Init(&c) != 1 || SHA256_Update(&c, tag, strlen(tag)) != 1 ||
        (len > 0 && SHA256_Update(&c, data, len) != 1) || SHA256_Final(out->b, &c) != 1)
        abort();
}
