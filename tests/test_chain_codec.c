/* test_chain_codec.c — Check suite for chain/'s codecs and crypto: hex,
 * SHA-256, BIP340 keys, code lists, genesis JSON, the transaction codec and
 * its stateless checks, block/header/cert codecs, the tx Merkle root and
 * commit-certificate verification.
 *
 * Each decoder is driven through every refusal: truncated input, garbage,
 * unknown fields, non-canonical bytes (explicit defaults, repeats, reorder,
 * long varints), oversize, bad lengths, bad codes, and limit / limit + 1 for
 * each bound. Malformed protobuf is produced by mutating messages through
 * protobuf-c where possible and by splicing raw wire bytes where the library
 * cannot emit them. Randomized cases print their seed (CODEC_SEED=... to
 * replay).
 */
#include <check.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "chain/chain.h"
#include "proto/block.pb-c.h"
#include "proto/tx.pb-c.h"

#define NOW 1795000000ull
#define CID "consent-test"

/* ------------------------------------------------------------ helpers */

static uint64_t rng_state;
static uint64_t rng(void)
{
    rng_state ^= rng_state << 13;
    rng_state ^= rng_state >> 7;
    rng_state ^= rng_state << 17;
    return rng_state;
}
static void rng_seed(const char *what)
{
    const char *env = getenv("CODEC_SEED");
    rng_state = env != NULL ? strtoull(env, NULL, 0) : 0xc0dec5eedull;
    if (rng_state == 0) rng_state = 1;
    printf("%s: CODEC_SEED=0x%llx\n", what, (unsigned long long)rng_state);
}

static chain_key *key_n(unsigned n)
{
    uint8_t sec[32] = {0};
    sec[29] = 1;   /* never all zero */
    sec[30] = (uint8_t)(n >> 8);
    sec[31] = (uint8_t)(n + 1);
    chain_key *k = chain_key_create(sec);
    ck_assert_ptr_nonnull(k);
    return k;
}
static chain_pubkey pub_n(unsigned n)
{
    chain_pubkey p;
    chain_key *k = key_n(n);
    chain_key_pubkey(k, &p);
    chain_key_destroy(k);
    return p;
}

static void base_tx(chain_tx *tx, chain_tx_type type)
{
    memset(tx, 0, sizeof *tx);
    strcpy(tx->chain_id, CID);
    tx->type = type;
    tx->nonce = 5;
    tx->created_at = NOW;
}

static void grant_tx(chain_tx *tx)
{
    base_tx(tx, CHAIN_TX_GRANT);
    tx->body.grant.patient = pub_n(1);
    tx->body.grant.grantee = pub_n(2);
    tx->body.grant.n_scopes = 2;
    strcpy(tx->body.grant.scopes[0].s, "Observation");
    strcpy(tx->body.grant.scopes[1].s, "laboratory");
    tx->body.grant.n_purposes = 2;
    strcpy(tx->body.grant.purposes[0].s, "HRESCH");
    strcpy(tx->body.grant.purposes[1].s, "DUO:0000042");
    tx->body.grant.not_before = NOW;
    tx->body.grant.not_after = NOW + 86400;
}

static void institution_tx(chain_tx *tx, chain_tx_type type, uint32_t n_end)
{
    base_tx(tx, type);
    chain_institution_tx *b = &tx->body.institution;
    b->key = pub_n(50);
    if (type == CHAIN_TX_REGISTER_INSTITUTION) {
        strcpy(b->name, "St. Example Hospital");
        b->roles = CHAIN_ROLE_GATEWAY | CHAIN_ROLE_GRANTEE;
    }
    b->n_endorsements = n_end;
    for (uint32_t i = 0; i < n_end && i < CHAIN_VALIDATORS_MAX; i++) {
        b->endorsements[i].signer.b[0] = (uint8_t)i;
        b->endorsements[i].signer.b[1] = (uint8_t)(i >> 8);
        b->endorsements[i].signer.b[2] = 1;
        memset(b->endorsements[i].sig.b, 0x5a, CHAIN_SIG_LEN);
    }
}

/* A tx of each type, signed by key 0. */
static void sample_tx(chain_tx *tx, int which)
{
    switch (which) {
    case 0: grant_tx(tx); break;
    case 1:
        base_tx(tx, CHAIN_TX_REVOKE);
        memset(tx->body.revoke.grant_id.b, 0x11, 32);
        break;
    case 2:
        base_tx(tx, CHAIN_TX_SET_GUARDIAN);
        tx->body.set_guardian.guardian = pub_n(3);
        tx->body.set_guardian.remove = 1;
        break;
    case 3:
        base_tx(tx, CHAIN_TX_ACCESS_RECORD);
        memset(tx->body.access_record.grant_id.b, 0x22, 32);
        strcpy(tx->body.access_record.scope.s, "dataset:00112233445566778899aabbccddeeff00112233445566778899aabbccddeeff");
        strcpy(tx->body.access_record.purpose.s, "CLINTRL");
        memset(tx->body.access_record.request_hash.b, 0x33, 32);
        break;
    case 4: institution_tx(tx, CHAIN_TX_REGISTER_INSTITUTION, 3); break;
    default: institution_tx(tx, CHAIN_TX_REMOVE_INSTITUTION, 3); break;
    }
    chain_key *k = key_n(0);
    ck_assert_int_eq(chain_tx_sign(tx, k), 0);
    chain_key_destroy(k);
}

static size_t encode_tx(uint8_t *buf, const chain_tx *tx)
{
    size_t n = 0;
    ck_assert_int_eq(chain_tx_encode(buf, CHAIN_TX_BYTES_MAX, &n, tx), 0);
    return n;
}

/* Decodes buf as a Tx with protobuf-c, lets fn change it, packs it back into
 * out and returns chain_tx_decode's verdict on the result. */
typedef void (*tx_mutator)(Consent__Tx *m);
static int decode_mutated(const uint8_t *buf, size_t len, tx_mutator fn)
{
    uint8_t out[3 * CHAIN_TX_BYTES_MAX];
    chain_tx tx;
    Consent__Tx *m = consent__tx__unpack(NULL, len, buf);
    ck_assert_ptr_nonnull(m);
    /* Keep the originals so free_unpacked frees what it allocated. */
    Consent__Tx saved = *m;
    fn(m);
    size_t n = consent__tx__get_packed_size(m);
    ck_assert_uint_le(n, sizeof out);
    consent__tx__pack(m, out);
    ProtobufCMessageUnknownField *uf = m->base.unknown_fields;
    (void)uf;
    *m = saved;
    consent__tx__free_unpacked(m, NULL);
    return chain_tx_decode(&tx, out, n);
}

static int mutate_sample(int which, tx_mutator fn)
{
    chain_tx tx;
    uint8_t buf[CHAIN_TX_BYTES_MAX];
    sample_tx(&tx, which);
    size_t n = encode_tx(buf, &tx);
    return decode_mutated(buf, n, fn);
}

/* Genesis JSON with n validators (keys 100..) and m institutions (keys 200..). */
static char *genesis_json(unsigned n, unsigned m, const char *extra_top)
{
    size_t cap = 256 + (size_t)(n + m) * 200 + (extra_top ? strlen(extra_top) : 0);
    char *s = malloc(cap);
    ck_assert_ptr_nonnull(s);
    size_t off = (size_t)snprintf(s, cap, "{\"chain_id\":\"%s\",\"time_ms\":1795000000000,%s\"validators\":[",
                                  CID, extra_top ? extra_top : "");
    for (unsigned i = 0; i < n; i++) {
        char hex[65];
        chain_pubkey p = pub_n(100 + i);
        chain_hex(hex, p.b, 32);
        off += (size_t)snprintf(s + off, cap - off,
                                "%s{\"name\":\"hospital-%u\",\"key\":\"%s\",\"p2p\":\"127.0.0.1:%u\",\"api\":\"127.0.0.1:%u\"}",
                                i ? "," : "", i, hex, 7800 + i, 7700 + i);
    }
    off += (size_t)snprintf(s + off, cap - off, "],\"institutions\":[");
    for (unsigned i = 0; i < m; i++) {
        char hex[65];
        chain_pubkey p = pub_n(200 + i);
        chain_hex(hex, p.b, 32);
        off += (size_t)snprintf(s + off, cap - off, "%s{\"name\":\"gateway-%u\",\"key\":\"%s\",\"roles\":[\"gateway\",\"grantee\"]}",
                                i ? "," : "", i, hex);
    }
    snprintf(s + off, cap - off, "]}");
    return s;
}

static chain_genesis *genesis_n(unsigned n)
{
    chain_genesis *g = malloc(sizeof *g);
    ck_assert_ptr_nonnull(g);
    char *js = genesis_json(n, 1, NULL);
    ck_assert_int_eq(chain_genesis_parse(g, js, strlen(js)), 0);
    free(js);
    return g;
}

static int parse_str(const char *js)
{
    chain_genesis *g = malloc(sizeof *g);
    ck_assert_ptr_nonnull(g);
    int rc = chain_genesis_parse(g, js, strlen(js));
    free(g);
    return rc;
}

/* Parses a genesis with one validator whose object is `val` and one
 * institution object `inst` (either may be NULL for the default). */
static int parse_members(const char *val, const char *inst)
{
    char hex0[65], hex1[65], buf[2048];
    chain_pubkey p0 = pub_n(100), p1 = pub_n(200);
    chain_hex(hex0, p0.b, 32);
    chain_hex(hex1, p1.b, 32);
    char dval[512], dinst[512];
    snprintf(dval, sizeof dval, "{\"name\":\"h0\",\"key\":\"%s\",\"p2p\":\"127.0.0.1:7800\",\"api\":\"127.0.0.1:7700\"}", hex0);
    snprintf(dinst, sizeof dinst, "{\"name\":\"g0\",\"key\":\"%s\",\"roles\":[\"gateway\"]}", hex1);
    snprintf(buf, sizeof buf, "{\"chain_id\":\"c\",\"time_ms\":1,\"validators\":[%s],\"institutions\":[%s]}",
             val ? val : dval, inst ? inst : dinst);
    return parse_str(buf);
}

/* ------------------------------------------------------------ errors, hex */

START_TEST(test_strerror_every_code)
{
    for (int e = 0; e >= CHAIN_EPROOF; e--) {
        const char *s = chain_strerror(e);
        ck_assert_ptr_nonnull(s);
        ck_assert_str_ne(s, "unknown error");
    }
    ck_assert_str_eq(chain_strerror(-999), "unknown error");
    ck_assert_str_eq(chain_strerror(5), "unknown error");
}
END_TEST

START_TEST(test_hex_round_trip_and_refusals)
{
    uint8_t in[4] = {0x00, 0xab, 0x7f, 0xff}, out[4];
    char hex[9];
    chain_hex(hex, in, 4);
    ck_assert_str_eq(hex, "00ab7fff");
    ck_assert_int_eq(chain_unhex(out, 4, hex), 0);
    ck_assert_mem_eq(in, out, 4);
    ck_assert_int_eq(chain_unhex(out, 4, "00AB7FFF"), 0);
    ck_assert_mem_eq(in, out, 4);
    memset(out, 0xee, 4);
    ck_assert_int_eq(chain_unhex(out, 4, "00ab7ff"), CHAIN_EDECODE);    /* short */
    ck_assert_int_eq(chain_unhex(out, 4, "00ab7fff0"), CHAIN_EDECODE);  /* long */
    ck_assert_int_eq(chain_unhex(out, 4, "00ab7ffg"), CHAIN_EDECODE);   /* bad digit */
    ck_assert_int_eq(chain_unhex(out, 4, " 0ab7fff"), CHAIN_EDECODE);
    ck_assert_int_eq(chain_unhex(out, 4, ""), CHAIN_EDECODE);
    ck_assert_int_eq(chain_unhex(out, 4, NULL), CHAIN_EINVAL);
    ck_assert_uint_eq(out[0], 0xee);   /* untouched on failure */
    chain_hex(hex, in, 0);
    ck_assert_str_eq(hex, "");
    /* Every byte value, against printf's digits, and back. */
    uint8_t all[256], back[256];
    char all_hex[513], want[3];
    for (int i = 0; i < 256; i++) all[i] = (uint8_t)i;
    chain_hex(all_hex, all, 256);
    ck_assert_uint_eq(strlen(all_hex), 512);
    for (int i = 0; i < 256; i++) {
        snprintf(want, sizeof want, "%02x", i);
        ck_assert_mem_eq(all_hex + 2 * i, want, 2);
    }
    ck_assert_int_eq(chain_unhex(back, 256, all_hex), 0);
    ck_assert_mem_eq(back, all, 256);
}
END_TEST

/* ------------------------------------------------------------ crypto */

START_TEST(test_sha256_vectors)
{
    chain_hash h;
    char hex[65];
    chain_sha256(&h, "abc", 3);
    chain_hex(hex, h.b, 32);
    ck_assert_str_eq(hex, "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad");
    chain_sha256(&h, NULL, 0);
    chain_hex(hex, h.b, 32);
    ck_assert_str_eq(hex, "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855");
}
END_TEST

START_TEST(test_key_from_secret_bip340_vector)
{
    /* BIP340 test vector 0: secret key 3. */
    uint8_t sec[32] = {0}, back[32];
    chain_pubkey pk;
    char hex[65];
    sec[31] = 3;
    chain_key *k = chain_key_create(sec);
    ck_assert_ptr_nonnull(k);
    chain_key_pubkey(k, &pk);
    chain_hex(hex, pk.b, 32);
    ck_assert_str_eq(hex, "f9308a019258c31049344f85f89d5229b531c845836f99b08601f113bce036f9");
    chain_key_secret(k, back);
    ck_assert_mem_eq(sec, back, 32);
    chain_key_destroy(k);
    chain_key_destroy(NULL);
}
END_TEST

START_TEST(test_key_invalid_secrets_refused)
{
    uint8_t zero[32] = {0}, order[32];
    ck_assert_ptr_null(chain_key_create(zero));
    ck_assert_int_eq(chain_unhex(order, 32, "fffffffffffffffffffffffffffffffebaaedce6af48a03bbfd25e8cd0364141"), 0);
    ck_assert_ptr_null(chain_key_create(order));
    memset(order, 0xff, 32);
    ck_assert_ptr_null(chain_key_create(order));
}
END_TEST

START_TEST(test_key_fresh_keys_differ)
{
    chain_pubkey a, b;
    chain_key *k1 = chain_key_create(NULL), *k2 = chain_key_create(NULL);
    ck_assert_ptr_nonnull(k1);
    ck_assert_ptr_nonnull(k2);
    chain_key_pubkey(k1, &a);
    chain_key_pubkey(k2, &b);
    ck_assert_mem_ne(a.b, b.b, 32);
    chain_key_destroy(k1);
    chain_key_destroy(k2);
}
END_TEST

START_TEST(test_sign_verify_and_forgeries)
{
    chain_hash msg, other;
    chain_sig sig, bad;
    chain_pubkey pk, pk2, junk;
    chain_key *k = key_n(0), *k2 = key_n(1);
    chain_key_pubkey(k, &pk);
    chain_key_pubkey(k2, &pk2);
    chain_sha256(&msg, "m", 1);
    chain_sha256(&other, "n", 1);
    ck_assert_int_eq(chain_sign(k, &sig, &msg), 0);
    ck_assert_int_eq(chain_verify(&pk, &sig, &msg), 0);
    ck_assert_int_eq(chain_verify(&pk, &sig, &other), CHAIN_ESIG);
    ck_assert_int_eq(chain_verify(&pk2, &sig, &msg), CHAIN_ESIG);
    for (int i = 0; i < CHAIN_SIG_LEN; i += 7) {
        bad = sig;
        bad.b[i] ^= 0x01;
        ck_assert_int_eq(chain_verify(&pk, &bad, &msg), CHAIN_ESIG);
    }
    memset(junk.b, 0xff, 32);   /* not an x coordinate on the curve */
    ck_assert_int_eq(chain_verify(&junk, &sig, &msg), CHAIN_ESIG);
    ck_assert_int_eq(chain_verify(NULL, &sig, &msg), CHAIN_EINVAL);
    ck_assert_int_eq(chain_sign(k, NULL, &msg), CHAIN_EINVAL);
    chain_key_destroy(k);
    chain_key_destroy(k2);
}
END_TEST

/* The cached verification answers as chain_verify does, on a hit, after a
 * refused key, and when two keys share a cache slot. */
START_TEST(test_verify_cached_same_answers)
{
    enum { N = 65 };   /* more keys than slots: two share one */
    chain_hash msg, other;
    chain_sha256(&msg, "m", 1);
    chain_sha256(&other, "n", 1);
    chain_pubkey pk[N], junk;
    chain_sig sig[N];
    memset(junk.b, 0xff, 32);
    int a = -1, b = -1;
    for (int i = 0; i < N; i++) {
        chain_key *k = key_n((unsigned)i);
        chain_key_pubkey(k, &pk[i]);
        ck_assert_int_eq(chain_sign(k, &sig[i], &msg), 0);
        chain_key_destroy(k);
        for (int j = 0; j < i && a < 0; j++)
            if (pk[j].b[0] % 64 == pk[i].b[0] % 64) a = j, b = i;
    }
    ck_assert_int_ge(a, 0);
    for (int round = 0; round < 2; round++) {   /* a miss, then a hit */
        for (int i = 0; i < N; i++) {
            ck_assert_int_eq(chain_verify_cached(&pk[i], &sig[i], &msg), 0);
            ck_assert_int_eq(chain_verify_cached(&pk[i], &sig[i], &other), CHAIN_ESIG);
            ck_assert_int_eq(chain_verify_cached(&pk[i], &sig[(i + 1) % N], &msg), CHAIN_ESIG);
        }
    }
    /* One slot, two keys in turn: each answer is its own key's. */
    for (int i = 0; i < 3; i++) {
        ck_assert_int_eq(chain_verify_cached(&pk[a], &sig[a], &msg), 0);
        ck_assert_int_eq(chain_verify_cached(&pk[b], &sig[a], &msg), CHAIN_ESIG);
        ck_assert_int_eq(chain_verify_cached(&pk[b], &sig[b], &msg), 0);
        ck_assert_int_eq(chain_verify_cached(&pk[a], &sig[b], &msg), CHAIN_ESIG);
    }
    /* A key that does not parse is refused and leaves the cache as it was. */
    junk.b[0] = pk[a].b[0];
    ck_assert_int_eq(chain_verify_cached(&pk[a], &sig[a], &msg), 0);
    ck_assert_int_eq(chain_verify_cached(&junk, &sig[a], &msg), CHAIN_ESIG);
    ck_assert_int_eq(chain_verify_cached(&pk[a], &sig[a], &msg), 0);
    ck_assert_int_eq(chain_verify_cached(NULL, &sig[a], &msg), CHAIN_EINVAL);
    ck_assert_int_eq(chain_verify_cached(&pk[a], NULL, &msg), CHAIN_EINVAL);
}
END_TEST

/* ------------------------------------------------------------ codes */

START_TEST(test_scope_codes)
{
    const char *good[] = {"Patient", "Observation", "MolecularSequence", "ResearchSubject", "laboratory",
                          "genomic", "mental-health",
                          "dataset:00112233445566778899aabbccddeeff00112233445566778899aabbccddeeff"};
    const char *bad[] = {"", "patient", "Observations", "all", "Consent", "Observation ",
                         "dataset:", "dataset:00112233445566778899aabbccddeeff00112233445566778899aabbccddeef",
                         "dataset:00112233445566778899aabbccddeeff00112233445566778899aabbccddeeff0",
                         "dataset:00112233445566778899AABBCCDDEEFF00112233445566778899aabbccddeeff",
                         "dataset:0011223344556677889gaabbccddeeff00112233445566778899aabbccddeeff"};
    for (size_t i = 0; i < sizeof good / sizeof good[0]; i++) ck_assert_msg(chain_scope_valid(good[i]), "%s", good[i]);
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) ck_assert_msg(!chain_scope_valid(bad[i]), "%s", bad[i]);
    ck_assert(!chain_scope_valid(NULL));
}
END_TEST

START_TEST(test_purpose_codes)
{
    const char *good[] = {"TREAT", "ETREAT", "HRESCH", "CLINTRL", "PUBHLTH", "HPAYMT", "HOPERAT",
                          "DUO:0000042", "DUO:0000006", "DUO:0000007", "DUO:0000011", "DUO:0000043",
                          "DUO:0000018", "DUO:0000019"};
    const char *bad[] = {"", "treat", "TREATMENT", "DUO:0000001", "DUO:42", "DUO:00000042", "HRESCH\n"};
    for (size_t i = 0; i < sizeof good / sizeof good[0]; i++) ck_assert_msg(chain_purpose_valid(good[i]), "%s", good[i]);
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) ck_assert_msg(!chain_purpose_valid(bad[i]), "%s", bad[i]);
    ck_assert(!chain_purpose_valid(NULL));
}
END_TEST

/* ------------------------------------------------------------ genesis */

START_TEST(test_genesis_parse_fields)
{
    chain_genesis *g = genesis_n(4);
    ck_assert_str_eq(g->chain_id, CID);
    ck_assert_uint_eq(g->time_ms, 1795000000000ull);
    ck_assert_uint_eq(g->n_validators, 4);
    ck_assert_uint_eq(g->n_institutions, 5);
    ck_assert_str_eq(g->institutions[0].name, "hospital-0");
    ck_assert_str_eq(g->institutions[0].p2p_addr, "127.0.0.1:7800");
    ck_assert_str_eq(g->institutions[3].api_addr, "127.0.0.1:7703");
    ck_assert_uint_eq(g->institutions[0].roles, CHAIN_ROLE_VALIDATOR);
    ck_assert_uint_eq(g->institutions[4].roles, CHAIN_ROLE_GATEWAY | CHAIN_ROLE_GRANTEE);
    ck_assert_str_eq(g->institutions[4].p2p_addr, "");
    chain_pubkey p = pub_n(102);
    ck_assert_int_eq(chain_genesis_validator_index(g, &p), 2);
    p = pub_n(200);   /* an institution, not a validator */
    ck_assert_int_eq(chain_genesis_validator_index(g, &p), -1);
    free(g);
}
END_TEST

START_TEST(test_genesis_quorum)
{
    const uint32_t want[] = {0, 1, 1, 1, 3, 3, 3, 5, 5, 5, 7};
    chain_genesis *g = genesis_n(1);
    for (uint32_t n = 1; n <= 10; n++) {
        g->n_validators = n;
        ck_assert_uint_eq(chain_genesis_quorum(g), want[n]);
    }
    g->n_validators = 64;
    ck_assert_uint_eq(chain_genesis_quorum(g), 43);
    free(g);
}
END_TEST

START_TEST(test_genesis_hash_is_canonical)
{
    chain_genesis *a = genesis_n(2), *b = malloc(sizeof *b);
    char hex0[65], hex1[65], hexg[65], js[2048];
    chain_pubkey p0 = pub_n(100), p1 = pub_n(101), pg = pub_n(200);
    chain_hex(hex0, p0.b, 32);
    chain_hex(hex1, p1.b, 32);
    chain_hex(hexg, pg.b, 32);
    /* Same content: other key order, whitespace, role order, upper-case hex. */
    for (char *c = hexg; *c; c++) if (*c >= 'a' && *c <= 'f') *c = (char)(*c - 32);
    snprintf(js, sizeof js,
             "{ \"institutions\" : [ {\"roles\":[\"grantee\",\"gateway\"],\"key\":\"%s\",\"name\":\"gateway-0\"} ],\n"
             "  \"validators\": [ {\"api\":\"127.0.0.1:7700\",\"p2p\":\"127.0.0.1:7800\",\"key\":\"%s\",\"name\":\"hospital-0\"},\n"
             "   {\"name\":\"hospital-1\",\"key\":\"%s\",\"p2p\":\"127.0.0.1:7801\",\"api\":\"127.0.0.1:7701\"} ],\n"
             "  \"time_ms\": 1795000000000, \"chain_id\": \"%s\" }",
             hexg, hex0, hex1, CID);
    ck_assert_int_eq(chain_genesis_parse(b, js, strlen(js)), 0);
    ck_assert_mem_eq(a->hash.b, b->hash.b, 32);
    chain_hash va, vb;
    chain_genesis_valset_hash(a, &va);
    chain_genesis_valset_hash(b, &vb);
    ck_assert_mem_eq(va.b, vb.b, 32);
    /* Validator order is part of both hashes. */
    chain_institution t = b->institutions[0];
    b->institutions[0] = b->institutions[1];
    b->institutions[1] = t;
    chain_genesis_valset_hash(b, &vb);
    ck_assert_mem_ne(va.b, vb.b, 32);
    free(a);
    free(b);
}
END_TEST

START_TEST(test_genesis_save_load_round_trip)
{
    char path[] = "/tmp/codec_genesis_XXXXXX";
    int fd = mkstemp(path);
    ck_assert_int_ge(fd, 0);
    close(fd);
    chain_genesis *a = genesis_n(4), *b = malloc(sizeof *b);
    ck_assert_int_eq(chain_genesis_save(a, path), 0);
    ck_assert_int_eq(chain_genesis_load(b, path), 0);
    ck_assert_mem_eq(a->hash.b, b->hash.b, 32);
    ck_assert_uint_eq(b->n_validators, 4);
    ck_assert_uint_eq(b->n_institutions, 5);
    ck_assert_str_eq(b->institutions[4].name, "gateway-0");
    unlink(path);
    ck_assert_int_eq(chain_genesis_load(b, path), CHAIN_ENOTFOUND);
    ck_assert_int_eq(chain_genesis_save(a, "/nonexistent-dir/x/genesis.json"), CHAIN_EIO);
    a->n_validators = 0;
    ck_assert_int_eq(chain_genesis_save(a, path), CHAIN_EBOUNDS);
    a->n_validators = 4;
    a->institutions[4].name[0] = '\0';   /* save refuses what load would refuse */
    ck_assert_int_eq(chain_genesis_save(a, path), CHAIN_EBOUNDS);
    ck_assert_int_eq(access(path, F_OK), -1);
    ck_assert_int_eq(chain_genesis_load(b, "/tmp"), CHAIN_EIO);   /* a directory */
    /* A file over the 1 MiB bound. */
    FILE *f = fopen(path, "wb");
    ck_assert_ptr_nonnull(f);
    for (int i = 0; i < (1 << 20) + 1; i++) fputc(' ', f);
    fclose(f);
    ck_assert_int_eq(chain_genesis_load(b, path), CHAIN_EBOUNDS);
    unlink(path);
    ck_assert_int_eq(chain_genesis_load(NULL, path), CHAIN_EINVAL);
    free(a);
    free(b);
}
END_TEST

START_TEST(test_genesis_top_level_errors)
{
    char hex[65], js[1024];
    chain_pubkey p = pub_n(100);
    chain_hex(hex, p.b, 32);
    const char *v = "[{\"name\":\"h\",\"key\":\"%s\",\"p2p\":\"a:1\"}]";
    char vals[256];
    snprintf(vals, sizeof vals, v, hex);
    ck_assert_int_eq(parse_str("not json"), CHAIN_EDECODE);
    ck_assert_int_eq(parse_str("[]"), CHAIN_EDECODE);
    ck_assert_int_eq(parse_str("{}"), CHAIN_EDECODE);
    snprintf(js, sizeof js, "{\"chain_id\":\"c\",\"time_ms\":1,\"validators\":%s}", vals);
    ck_assert_int_eq(parse_str(js), 0);   /* institutions optional */
    snprintf(js, sizeof js, "{\"chain_id\":\"c\",\"time_ms\":1,\"validators\":%s,\"extra\":1}", vals);
    ck_assert_int_eq(parse_str(js), CHAIN_EDECODE);
    snprintf(js, sizeof js, "{\"chain_id\":\"c\",\"chain_id\":\"d\",\"time_ms\":1,\"validators\":%s}", vals);
    ck_assert_int_eq(parse_str(js), CHAIN_EDECODE);
    snprintf(js, sizeof js, "{\"time_ms\":1,\"validators\":%s}", vals);
    ck_assert_int_eq(parse_str(js), CHAIN_EDECODE);
    snprintf(js, sizeof js, "{\"chain_id\":\"Consent\",\"time_ms\":1,\"validators\":%s}", vals);
    ck_assert_int_eq(parse_str(js), CHAIN_ECHAINID);
    snprintf(js, sizeof js, "{\"chain_id\":\"\",\"time_ms\":1,\"validators\":%s}", vals);
    ck_assert_int_eq(parse_str(js), CHAIN_ECHAINID);
    snprintf(js, sizeof js, "{\"chain_id\":\"%s\",\"time_ms\":1,\"validators\":%s}",
             "abcdefghijklmnopqrstuvwxyz012345", vals);   /* 32: the limit */
    ck_assert_int_eq(parse_str(js), 0);
    snprintf(js, sizeof js, "{\"chain_id\":\"%s\",\"time_ms\":1,\"validators\":%s}",
             "abcdefghijklmnopqrstuvwxyz0123456", vals);  /* 33 */
    ck_assert_int_eq(parse_str(js), CHAIN_ECHAINID);
    snprintf(js, sizeof js, "{\"chain_id\":\"c\",\"time_ms\":-1,\"validators\":%s}", vals);
    ck_assert_int_eq(parse_str(js), CHAIN_EDECODE);
    snprintf(js, sizeof js, "{\"chain_id\":\"c\",\"time_ms\":\"1\",\"validators\":%s}", vals);
    ck_assert_int_eq(parse_str(js), CHAIN_EDECODE);
    snprintf(js, sizeof js, "{\"chain_id\":\"c\",\"validators\":%s}", vals);
    ck_assert_int_eq(parse_str(js), CHAIN_EDECODE);
    ck_assert_int_eq(parse_str("{\"chain_id\":\"c\",\"time_ms\":1,\"validators\":[]}"), CHAIN_EDECODE);
    ck_assert_int_eq(parse_str("{\"chain_id\":\"c\",\"time_ms\":1,\"validators\":{}}"), CHAIN_EDECODE);
    snprintf(js, sizeof js, "{\"chain_id\":\"c\",\"time_ms\":1,\"validators\":%s,\"institutions\":{}}", vals);
    ck_assert_int_eq(parse_str(js), CHAIN_EDECODE);
}
END_TEST

START_TEST(test_genesis_member_errors)
{
    char hex0[65], hex1[65], b[512];
    chain_pubkey p0 = pub_n(100), p1 = pub_n(200);
    chain_hex(hex0, p0.b, 32);
    chain_hex(hex1, p1.b, 32);
    ck_assert_int_eq(parse_members(NULL, NULL), 0);
#define V(fmt) (snprintf(b, sizeof b, fmt, hex0), parse_members(b, NULL))
#define I(fmt) (snprintf(b, sizeof b, fmt, hex1), parse_members(NULL, b))
    ck_assert_int_eq(V("{\"name\":\"h0\",\"key\":\"%s\",\"p2p\":\"h:1\"}"), 0);                     /* api optional */
    ck_assert_int_eq(V("{\"name\":\"h0\",\"key\":\"%s\",\"p2p\":\"h:1\",\"roles\":[\"grantee\"]}"), 0);
    ck_assert_int_eq(V("{\"name\":\"h0\",\"key\":\"%s\"}"), CHAIN_EDECODE);                           /* no p2p */
    ck_assert_int_eq(V("{\"name\":\"h0\",\"key\":\"%s\",\"p2p\":\"h\"}"), CHAIN_EBOUNDS);
    ck_assert_int_eq(V("{\"name\":\"h0\",\"key\":\"%s\",\"p2p\":\"h:0\"}"), CHAIN_EBOUNDS);
    ck_assert_int_eq(V("{\"name\":\"h0\",\"key\":\"%s\",\"p2p\":\"h:65536\"}"), CHAIN_EBOUNDS);
    ck_assert_int_eq(V("{\"name\":\"h0\",\"key\":\"%s\",\"p2p\":\":80\"}"), CHAIN_EBOUNDS);
    ck_assert_int_eq(V("{\"name\":\"h0\",\"key\":\"%s\",\"p2p\":\"h o:80\"}"), CHAIN_EBOUNDS);
    ck_assert_int_eq(V("{\"name\":\"h0\",\"key\":\"%s\",\"p2p\":\"[::1]:80\",\"api\":\"x:08\"}"), CHAIN_EBOUNDS);
    ck_assert_int_eq(V("{\"name\":\"h0\",\"key\":\"%s\",\"p2p\":\"[::1]:80\",\"api\":7}"), CHAIN_EDECODE);
    ck_assert_int_eq(V("{\"name\":\"h0\",\"key\":\"%s\",\"p2p\":\"h:1\",\"roles\":[\"validator\"]}"), CHAIN_ECODE);
    ck_assert_int_eq(V("{\"name\":\"h0\",\"key\":\"%s\",\"p2p\":\"h:1\",\"x\":1}"), CHAIN_EDECODE);
    ck_assert_int_eq(V("{\"name\":\"h0\",\"key\":\"%.63s\",\"p2p\":\"h:1\"}"), CHAIN_EDECODE);       /* short key */
    ck_assert_int_eq(V("{\"name\":\"h0\",\"key\":\"%sab\",\"p2p\":\"h:1\"}"), CHAIN_EDECODE);
    ck_assert_int_eq(V("{\"name\":\"\",\"key\":\"%s\",\"p2p\":\"h:1\"}"), CHAIN_EBOUNDS);
    ck_assert_int_eq(V("{\"name\":\"h\\u0001\",\"key\":\"%s\",\"p2p\":\"h:1\"}"), CHAIN_EBOUNDS);
    ck_assert_int_eq(V("{\"name\":\"h\\u0000x\",\"key\":\"%s\",\"p2p\":\"h:1\"}"), CHAIN_EDECODE);
    ck_assert_int_eq(V("{\"name\":\"0123456789012345678901234567890123456789012345678901234567890123\","
                       "\"key\":\"%s\",\"p2p\":\"h:1\"}"), 0);                                       /* 64 */
    ck_assert_int_eq(V("{\"name\":\"01234567890123456789012345678901234567890123456789012345678901234\","
                       "\"key\":\"%s\",\"p2p\":\"h:1\"}"), CHAIN_EBOUNDS);                           /* 65 */
    ck_assert_int_eq(parse_members("7", NULL), CHAIN_EDECODE);
    ck_assert_int_eq(I("{\"name\":\"g0\",\"key\":\"%s\",\"roles\":[]}"), CHAIN_EDECODE);
    ck_assert_int_eq(I("{\"name\":\"g0\",\"key\":\"%s\"}"), CHAIN_EDECODE);
    ck_assert_int_eq(I("{\"name\":\"g0\",\"key\":\"%s\",\"roles\":[\"doctor\"]}"), CHAIN_ECODE);
    ck_assert_int_eq(I("{\"name\":\"g0\",\"key\":\"%s\",\"roles\":[\"validator\"]}"), CHAIN_ECODE);
    ck_assert_int_eq(I("{\"name\":\"g0\",\"key\":\"%s\",\"roles\":[\"gateway\",\"gateway\"]}"), CHAIN_ECODE);
    ck_assert_int_eq(I("{\"name\":\"g0\",\"key\":\"%s\",\"roles\":[1]}"), CHAIN_EDECODE);
    ck_assert_int_eq(I("{\"name\":\"g0\",\"key\":\"%s\",\"roles\":[\"a\",\"b\",\"c\",\"d\"]}"), CHAIN_EBOUNDS);
    ck_assert_int_eq(I("{\"name\":\"g0\",\"key\":\"%s\",\"roles\":[\"gateway\"],\"p2p\":\"h:1\"}"), CHAIN_EDECODE);
    /* Duplicates across the two lists. */
    snprintf(b, sizeof b, "{\"name\":\"g0\",\"key\":\"%s\",\"roles\":[\"gateway\"]}", hex0);
    ck_assert_int_eq(parse_members(NULL, b), CHAIN_EEXISTS);
    ck_assert_int_eq(I("{\"name\":\"h0\",\"key\":\"%s\",\"roles\":[\"gateway\"]}"), CHAIN_EEXISTS);
#undef V
#undef I
}
END_TEST

START_TEST(test_genesis_limits)
{
    chain_genesis *g = malloc(sizeof *g);
    char *js = genesis_json(CHAIN_VALIDATORS_MAX, 0, NULL);
    ck_assert_int_eq(chain_genesis_parse(g, js, strlen(js)), 0);
    ck_assert_uint_eq(g->n_validators, CHAIN_VALIDATORS_MAX);
    free(js);
    js = genesis_json(CHAIN_VALIDATORS_MAX + 1, 0, NULL);
    ck_assert_int_eq(chain_genesis_parse(g, js, strlen(js)), CHAIN_EBOUNDS);
    free(js);
    /* Oversized input is refused before parsing. */
    size_t big = (1u << 20) + 1;
    char *huge = malloc(big);
    memset(huge, ' ', big);
    ck_assert_int_eq(chain_genesis_parse(g, huge, big), CHAIN_EBOUNDS);
    free(huge);
    ck_assert_int_eq(chain_genesis_parse(NULL, "{}", 2), CHAIN_EINVAL);
    free(g);
}
END_TEST

START_TEST(test_genesis_institution_limit)
{
    /* 1 validator + 1023 institutions = CHAIN_INSTITUTIONS_MAX; one more is refused. */
    chain_genesis *g = malloc(sizeof *g);
    char *js = genesis_json(1, CHAIN_INSTITUTIONS_MAX - 1, NULL);
    ck_assert_int_eq(chain_genesis_parse(g, js, strlen(js)), 0);
    ck_assert_uint_eq(g->n_institutions, CHAIN_INSTITUTIONS_MAX);
    free(js);
    js = genesis_json(1, CHAIN_INSTITUTIONS_MAX, NULL);
    ck_assert_int_eq(chain_genesis_parse(g, js, strlen(js)), CHAIN_EBOUNDS);
    free(js);
    free(g);
}
END_TEST

START_TEST(test_commit_sighash_binds_every_input)
{
    chain_hash bh, h0, h;
    memset(bh.b, 7, 32);
    chain_commit_sighash(&h0, "a", 1, 2, &bh);
    chain_commit_sighash(&h, "a", 1, 2, &bh);
    ck_assert_mem_eq(h0.b, h.b, 32);
    chain_commit_sighash(&h, "b", 1, 2, &bh);
    ck_assert_mem_ne(h0.b, h.b, 32);
    chain_commit_sighash(&h, "a", 2, 2, &bh);
    ck_assert_mem_ne(h0.b, h.b, 32);
    chain_commit_sighash(&h, "a", 1, 3, &bh);
    ck_assert_mem_ne(h0.b, h.b, 32);
    chain_commit_sighash(&h, "a", 2, 1, &bh);   /* swapped view/height */
    ck_assert_mem_ne(h0.b, h.b, 32);
    bh.b[31] ^= 1;
    chain_commit_sighash(&h, "a", 1, 2, &bh);
    ck_assert_mem_ne(h0.b, h.b, 32);
}
END_TEST

/* ------------------------------------------------------------ tx codec */

START_TEST(test_tx_round_trip_every_type)
{
    for (int w = 0; w < 6; w++) {
        chain_tx tx, back;
        uint8_t a[CHAIN_TX_BYTES_MAX], b[CHAIN_TX_BYTES_MAX];
        sample_tx(&tx, w);
        size_t na = encode_tx(a, &tx);
        ck_assert_int_eq(chain_tx_decode(&back, a, na), 0);
        ck_assert_int_eq(back.type, tx.type);
        ck_assert_str_eq(back.chain_id, CID);
        ck_assert_uint_eq(back.nonce, 5);
        ck_assert_mem_eq(back.sig.b, tx.sig.b, 64);
        size_t nb = encode_tx(b, &back);
        ck_assert_uint_eq(na, nb);
        ck_assert_mem_eq(a, b, na);
        ck_assert_int_eq(chain_tx_check(&back, CID, NOW), 0);
        ck_assert_str_ne(chain_tx_type_name(tx.type), "unknown");
    }
    ck_assert_str_eq(chain_tx_type_name((chain_tx_type)0), "unknown");
}
END_TEST

START_TEST(test_tx_fields_survive)
{
    chain_tx tx, back;
    uint8_t buf[CHAIN_TX_BYTES_MAX];
    sample_tx(&tx, 0);
    ck_assert_int_eq(chain_tx_decode(&back, buf, encode_tx(buf, &tx)), 0);
    ck_assert_mem_eq(back.body.grant.patient.b, tx.body.grant.patient.b, 32);
    ck_assert_uint_eq(back.body.grant.n_scopes, 2);
    ck_assert_str_eq(back.body.grant.scopes[1].s, "laboratory");
    ck_assert_str_eq(back.body.grant.purposes[1].s, "DUO:0000042");
    ck_assert_uint_eq(back.body.grant.not_after, NOW + 86400);
    sample_tx(&tx, 2);
    ck_assert_int_eq(chain_tx_decode(&back, buf, encode_tx(buf, &tx)), 0);
    ck_assert_int_eq(back.body.set_guardian.remove, 1);
    sample_tx(&tx, 4);
    ck_assert_int_eq(chain_tx_decode(&back, buf, encode_tx(buf, &tx)), 0);
    ck_assert_str_eq(back.body.institution.name, "St. Example Hospital");
    ck_assert_uint_eq(back.body.institution.n_endorsements, 3);
    sample_tx(&tx, 5);
    ck_assert_int_eq(chain_tx_decode(&back, buf, encode_tx(buf, &tx)), 0);
    ck_assert_str_eq(back.body.institution.name, "");
    ck_assert_uint_eq(back.body.institution.roles, 0);
}
END_TEST

START_TEST(test_tx_hash_and_sighash)
{
    chain_tx tx;
    chain_hash h1, h2, s1, s2;
    uint8_t buf[CHAIN_TX_BYTES_MAX];
    sample_tx(&tx, 0);
    size_t n = encode_tx(buf, &tx);
    chain_tx_hash(&h1, buf, n);
    chain_sha256(&h2, buf, n);
    ck_assert_mem_eq(h1.b, h2.b, 32);
    ck_assert_int_eq(chain_tx_sighash(&s1, &tx), 0);
    tx.sig.b[0] ^= 1;   /* the signature is not part of what is signed */
    ck_assert_int_eq(chain_tx_sighash(&s2, &tx), 0);
    ck_assert_mem_eq(s1.b, s2.b, 32);
    tx.nonce++;
    ck_assert_int_eq(chain_tx_sighash(&s2, &tx), 0);
    ck_assert_mem_ne(s1.b, s2.b, 32);
    ck_assert_int_eq(chain_tx_sighash(NULL, &tx), CHAIN_EINVAL);
}
END_TEST

START_TEST(test_tx_truncated_prefixes_refused)
{
    for (int w = 0; w < 6; w++) {
        chain_tx tx, out;
        uint8_t buf[CHAIN_TX_BYTES_MAX];
        sample_tx(&tx, w);
        size_t n = encode_tx(buf, &tx);
        for (size_t cut = 0; cut < n; cut++) ck_assert_int_ne(chain_tx_decode(&out, buf, cut), 0);
    }
}
END_TEST

START_TEST(test_tx_garbage_refused)
{
    chain_tx tx;
    uint8_t buf[512];
    rng_seed("test_tx_garbage_refused");
    for (int i = 0; i < 2000; i++) {
        size_t n = (size_t)(rng() % sizeof buf);
        for (size_t j = 0; j < n; j++) buf[j] = (uint8_t)rng();
        ck_assert_int_ne(chain_tx_decode(&tx, buf, n), 0);
    }
    /* Single-byte corruptions of a valid tx: never a crash; a change that
     * still decodes must fail the signature check. */
    chain_tx good;
    uint8_t enc[CHAIN_TX_BYTES_MAX];
    sample_tx(&good, 0);
    size_t n = encode_tx(enc, &good);
    for (size_t j = 0; j < n; j++) {
        uint8_t save = enc[j];
        enc[j] ^= (uint8_t)(1 + rng() % 255);
        if (chain_tx_decode(&tx, enc, n) == 0) ck_assert_int_ne(chain_tx_check(&tx, CID, NOW), 0);
        enc[j] = save;
    }
}
END_TEST

START_TEST(test_tx_oversized_refused)
{
    chain_tx tx;
    static uint8_t buf[CHAIN_TX_BYTES_MAX + 1];
    ck_assert_int_eq(chain_tx_decode(&tx, buf, sizeof buf), CHAIN_EBOUNDS);
    ck_assert_int_eq(chain_tx_decode(&tx, NULL, 1), CHAIN_EINVAL);
    ck_assert_int_eq(chain_tx_decode(&tx, NULL, 0), CHAIN_EDECODE);   /* empty message: no type */
}
END_TEST

static void add_unknown_top(Consent__Tx *m)
{
    static uint8_t one = 1;
    static ProtobufCMessageUnknownField uf = {99, PROTOBUF_C_WIRE_TYPE_VARINT, 1, &one};
    m->base.n_unknown_fields = 1;
    m->base.unknown_fields = &uf;
}
static void add_unknown_grant(Consent__Tx *m)
{
    static uint8_t one = 1;
    static ProtobufCMessageUnknownField uf = {7, PROTOBUF_C_WIRE_TYPE_VARINT, 1, &one};
    static Consent__Grant g;
    g = *m->grant;
    g.base.n_unknown_fields = 1;
    g.base.unknown_fields = &uf;
    m->grant = &g;
}
static void add_unknown_endorsement(Consent__Tx *m)
{
    static uint8_t one = 1;
    static ProtobufCMessageUnknownField uf = {3, PROTOBUF_C_WIRE_TYPE_VARINT, 1, &one};
    static Consent__RegisterInstitution r;
    static Consent__Endorsement e;
    static Consent__Endorsement *ep[3];
    r = *m->register_institution;
    for (int i = 0; i < 3; i++) ep[i] = r.endorsements[i];
    e = *ep[1];
    e.base.n_unknown_fields = 1;
    e.base.unknown_fields = &uf;
    ep[1] = &e;
    r.endorsements = ep;
    m->register_institution = &r;
}
static void add_unknown_revoke(Consent__Tx *m)
{
    static uint8_t one = 1;
    static ProtobufCMessageUnknownField uf = {2, PROTOBUF_C_WIRE_TYPE_VARINT, 1, &one};
    static Consent__Revoke r;
    r = *m->revoke;
    r.base.n_unknown_fields = 1;
    r.base.unknown_fields = &uf;
    m->revoke = &r;
}

START_TEST(test_tx_unknown_fields_refused)
{
    ck_assert_int_eq(mutate_sample(0, add_unknown_top), CHAIN_ENONCANON);
    ck_assert_int_eq(mutate_sample(0, add_unknown_grant), CHAIN_ENONCANON);
    ck_assert_int_eq(mutate_sample(4, add_unknown_endorsement), CHAIN_ENONCANON);
    ck_assert_int_eq(mutate_sample(1, add_unknown_revoke), CHAIN_ENONCANON);
}
END_TEST

/* Offset of the first byte after the signer field of an encoded tx whose
 * chain id is CID and whose type is set (fields 1, 2, 3 in order). */
static size_t after_signer(void) { return 2 + strlen(CID) + 2 + 2 + 32; }

START_TEST(test_tx_non_canonical_refused)
{
    chain_tx tx, out;
    uint8_t buf[CHAIN_TX_BYTES_MAX], mod[CHAIN_TX_BYTES_MAX + 16];
    sample_tx(&tx, 1);
    size_t n = encode_tx(buf, &tx);
    size_t at = after_signer();
    ck_assert_uint_eq(buf[at], 0x20);   /* field 4 (nonce), varint */
    ck_assert_uint_eq(buf[at + 1], 5);

    /* A default value written out: created_at = 0 is omitted canonically. */
    chain_tx z = tx;
    z.created_at = 0;
    size_t zn = encode_tx(buf, &z);
    memcpy(mod, buf, at + 2);
    mod[at + 2] = 0x28;   /* field 5, varint 0 */
    mod[at + 3] = 0x00;
    memcpy(mod + at + 4, buf + at + 2, zn - at - 2);
    ck_assert_int_eq(chain_tx_decode(&out, buf, zn), 0);
    ck_assert_int_eq(chain_tx_decode(&out, mod, zn + 2), CHAIN_ENONCANON);

    /* A field repeated (same value, last one wins in protobuf). */
    n = encode_tx(buf, &tx);
    memcpy(mod, buf, n);
    mod[n] = 0x20;
    mod[n + 1] = 5;
    ck_assert_int_eq(chain_tx_decode(&out, mod, n + 2), CHAIN_ENONCANON);

    /* Fields out of order: the nonce moved to the front. */
    mod[0] = 0x20;
    mod[1] = 5;
    memcpy(mod + 2, buf, at);
    memcpy(mod + 2 + at, buf + at + 2, n - at - 2);
    ck_assert_int_eq(chain_tx_decode(&out, mod, n), CHAIN_ENONCANON);

    /* A non-minimal varint: nonce 5 as 0x85 0x00. */
    memcpy(mod, buf, at + 1);
    mod[at + 1] = 0x85;
    mod[at + 2] = 0x00;
    memcpy(mod + at + 3, buf + at + 2, n - at - 2);
    ck_assert_int_eq(chain_tx_decode(&out, mod, n + 1), CHAIN_ENONCANON);
}
END_TEST

static void type_mismatch(Consent__Tx *m) { m->type = CONSENT__TX_TYPE__TX_REVOKE; }
static void type_zero(Consent__Tx *m) { m->type = CONSENT__TX_TYPE__TX_UNSPECIFIED; }
static void type_seven(Consent__Tx *m) { m->type = (Consent__TxType)7; }
static void register_as_remove(Consent__Tx *m) { m->type = CONSENT__TX_TYPE__TX_REMOVE_INSTITUTION; }
static void no_body(Consent__Tx *m) { m->body_case = CONSENT__TX__BODY__NOT_SET; }

START_TEST(test_tx_type_body_mismatch_refused)
{
    ck_assert_int_eq(mutate_sample(0, type_mismatch), CHAIN_EDECODE);
    ck_assert_int_eq(mutate_sample(0, type_zero), CHAIN_EDECODE);
    ck_assert_int_eq(mutate_sample(0, type_seven), CHAIN_EDECODE);
    ck_assert_int_eq(mutate_sample(4, register_as_remove), CHAIN_EDECODE);
    ck_assert_int_eq(mutate_sample(1, no_body), CHAIN_EDECODE);
    /* A bool written as 2 decodes as true but re-encodes as 1 (protobuf-c
     * never writes 2, so splice the byte). */
    chain_tx tx, out;
    uint8_t buf[CHAIN_TX_BYTES_MAX];
    sample_tx(&tx, 2);
    size_t n = encode_tx(buf, &tx);
    size_t at = 0;
    for (size_t i = 0; i + 4 < n; i++) {
        if (buf[i] == 0x62 && buf[i + 1] == 0x24 && buf[i + 2] == 0x0a && buf[i + 3] == 0x20) at = i + 4 + 32;
    }
    ck_assert_uint_gt(at, 0);
    ck_assert_uint_eq(buf[at], 0x10);
    ck_assert_uint_eq(buf[at + 1], 0x01);
    ck_assert_int_eq(chain_tx_decode(&out, buf, n), 0);
    buf[at + 1] = 0x02;
    ck_assert_int_eq(chain_tx_decode(&out, buf, n), CHAIN_ENONCANON);
}
END_TEST

static void signer_31(Consent__Tx *m) { m->signer.len = 31; }
static void signer_33(Consent__Tx *m) { static uint8_t b[33]; m->signer.len = 33; m->signer.data = b; }
static void sig_63(Consent__Tx *m) { m->signature.len = 63; }
static void sig_none(Consent__Tx *m) { m->signature.len = 0; }
static void patient_31(Consent__Tx *m) { static Consent__Grant g; g = *m->grant; g.patient.len = 31; m->grant = &g; }
static void grantee_0(Consent__Tx *m) { static Consent__Grant g; g = *m->grant; g.grantee.len = 0; m->grant = &g; }
static void revoke_id_31(Consent__Tx *m) { static Consent__Revoke r; r = *m->revoke; r.grant_id.len = 31; m->revoke = &r; }
static void guardian_31(Consent__Tx *m)
{
    static Consent__SetGuardian s;
    s = *m->set_guardian;
    s.guardian.len = 31;
    m->set_guardian = &s;
}
static void access_hash_31(Consent__Tx *m)
{
    static Consent__AccessRecord a;
    a = *m->access_record;
    a.request_hash.len = 31;
    m->access_record = &a;
}
static void access_grant_31(Consent__Tx *m)
{
    static Consent__AccessRecord a;
    a = *m->access_record;
    a.grant_id.len = 31;
    m->access_record = &a;
}
static void access_bad_scope(Consent__Tx *m)
{
    static Consent__AccessRecord a;
    a = *m->access_record;
    a.scope = (char *)"Spaceship";
    m->access_record = &a;
}
static void access_bad_purpose(Consent__Tx *m)
{
    static Consent__AccessRecord a;
    a = *m->access_record;
    a.purpose = (char *)"FUN";
    m->access_record = &a;
}
static void access_long_scope(Consent__Tx *m)
{
    static Consent__AccessRecord a;
    static char s[CHAIN_CODE_LEN_MAX + 2];
    memset(s, 'a', sizeof s - 1);
    s[sizeof s - 1] = '\0';
    a = *m->access_record;
    a.scope = s;
    m->access_record = &a;
}
static void inst_key_31(Consent__Tx *m)
{
    static Consent__RegisterInstitution r;
    r = *m->register_institution;
    r.key.len = 31;
    m->register_institution = &r;
}
static void remove_key_33(Consent__Tx *m)
{
    static Consent__RemoveInstitution r;
    static uint8_t b[33];
    r = *m->remove_institution;
    r.key.len = 33;
    r.key.data = b;
    m->remove_institution = &r;
}
static void endorsement_sig_63(Consent__Tx *m)
{
    static Consent__RegisterInstitution r;
    static Consent__Endorsement e;
    static Consent__Endorsement *ep[3];
    r = *m->register_institution;
    for (int i = 0; i < 3; i++) ep[i] = r.endorsements[i];
    e = *ep[2];
    e.signature.len = 63;
    ep[2] = &e;
    r.endorsements = ep;
    m->register_institution = &r;
}
static void endorsement_signer_31(Consent__Tx *m)
{
    static Consent__RemoveInstitution r;
    static Consent__Endorsement e;
    static Consent__Endorsement *ep[3];
    r = *m->remove_institution;
    for (int i = 0; i < 3; i++) ep[i] = r.endorsements[i];
    e = *ep[0];
    e.signer.len = 31;
    ep[0] = &e;
    r.endorsements = ep;
    m->remove_institution = &r;
}
static void endorsement_dup(Consent__Tx *m)
{
    static Consent__RegisterInstitution r;
    static Consent__Endorsement *ep[3];
    r = *m->register_institution;
    ep[0] = r.endorsements[0];
    ep[1] = r.endorsements[1];
    ep[2] = r.endorsements[0];
    r.endorsements = ep;
    m->register_institution = &r;
}
static void inst_name_65(Consent__Tx *m)
{
    static Consent__RegisterInstitution r;
    r = *m->register_institution;
    r.name = (char *)"01234567890123456789012345678901234567890123456789012345678901234";
    m->register_institution = &r;
}
static void inst_name_ctrl(Consent__Tx *m)
{
    static Consent__RegisterInstitution r;
    r = *m->register_institution;
    r.name = (char *)"line\nbreak";
    m->register_institution = &r;
}
static void inst_roles_validator(Consent__Tx *m)
{
    static Consent__RegisterInstitution r;
    r = *m->register_institution;
    r.roles = CHAIN_ROLE_VALIDATOR | CHAIN_ROLE_GATEWAY;
    m->register_institution = &r;
}
static void grant_scope_long(Consent__Tx *m)
{
    static Consent__Grant g;
    static char longer[CHAIN_CODE_LEN_MAX + 2];
    static char *s[2];
    memset(longer, 'a', sizeof longer - 1);
    longer[sizeof longer - 1] = '\0';
    s[0] = (char *)"Observation";
    s[1] = longer;
    g = *m->grant;
    g.scopes = s;
    m->grant = &g;
}
static void chain_id_33(Consent__Tx *m) { m->chain_id = (char *)"abcdefghijklmnopqrstuvwxyz0123456"; }
static void chain_id_upper(Consent__Tx *m) { m->chain_id = (char *)"Consent"; }
static void chain_id_empty(Consent__Tx *m) { m->chain_id = (char *)""; }

START_TEST(test_tx_field_lengths_refused)
{
    ck_assert_int_eq(mutate_sample(0, signer_31), CHAIN_EBOUNDS);
    ck_assert_int_eq(mutate_sample(0, signer_33), CHAIN_EBOUNDS);
    ck_assert_int_eq(mutate_sample(0, sig_63), CHAIN_EBOUNDS);
    ck_assert_int_eq(mutate_sample(0, sig_none), CHAIN_EBOUNDS);
    ck_assert_int_eq(mutate_sample(0, patient_31), CHAIN_EBOUNDS);
    ck_assert_int_eq(mutate_sample(0, grantee_0), CHAIN_EBOUNDS);
    ck_assert_int_eq(mutate_sample(1, revoke_id_31), CHAIN_EBOUNDS);
    ck_assert_int_eq(mutate_sample(2, guardian_31), CHAIN_EBOUNDS);
    ck_assert_int_eq(mutate_sample(3, access_hash_31), CHAIN_EBOUNDS);
    ck_assert_int_eq(mutate_sample(3, access_grant_31), CHAIN_EBOUNDS);
    ck_assert_int_eq(mutate_sample(3, access_bad_scope), CHAIN_ECODE);
    ck_assert_int_eq(mutate_sample(3, access_bad_purpose), CHAIN_ECODE);
    ck_assert_int_eq(mutate_sample(3, access_long_scope), CHAIN_ECODE);
    ck_assert_int_eq(mutate_sample(4, inst_key_31), CHAIN_EBOUNDS);
    ck_assert_int_eq(mutate_sample(5, remove_key_33), CHAIN_EBOUNDS);
    ck_assert_int_eq(mutate_sample(4, endorsement_sig_63), CHAIN_EBOUNDS);
    ck_assert_int_eq(mutate_sample(5, endorsement_signer_31), CHAIN_EBOUNDS);
    ck_assert_int_eq(mutate_sample(4, endorsement_dup), CHAIN_EBOUNDS);
    ck_assert_int_eq(mutate_sample(4, inst_name_65), CHAIN_EBOUNDS);
    ck_assert_int_eq(mutate_sample(4, inst_name_ctrl), CHAIN_EBOUNDS);
    ck_assert_int_eq(mutate_sample(4, inst_roles_validator), CHAIN_ECODE);
    ck_assert_int_eq(mutate_sample(0, grant_scope_long), CHAIN_ECODE);
    ck_assert_int_eq(mutate_sample(0, chain_id_33), CHAIN_EBOUNDS);
    ck_assert_int_eq(mutate_sample(0, chain_id_upper), CHAIN_EBOUNDS);
    ck_assert_int_eq(mutate_sample(0, chain_id_empty), CHAIN_EBOUNDS);
}
END_TEST

static const char *const many_scopes[] = {
    "AllergyIntolerance", "CarePlan", "CareTeam", "Condition", "DiagnosticReport", "DocumentReference",
    "Encounter", "FamilyMemberHistory", "ImagingStudy", "Immunization", "MedicationRequest",
    "MedicationStatement", "Observation", "Patient", "Procedure", "Specimen", "laboratory"};
static const char *const many_purposes[] = {"TREAT", "ETREAT", "HPAYMT", "HOPERAT", "HRESCH",
                                            "CLINTRL", "PUBHLTH", "DUO:0000042", "DUO:0000006"};

/* Encodes a grant with the first n scopes / m purposes from the lists and
 * returns the encoder's verdict; on success, also the decoder's. */
static int grant_with(uint32_t ns, uint32_t np)
{
    chain_tx tx, out;
    uint8_t buf[CHAIN_TX_BYTES_MAX];
    size_t n;
    grant_tx(&tx);
    tx.body.grant.n_scopes = ns;
    for (uint32_t i = 0; i < ns && i < CHAIN_SCOPES_MAX; i++) strcpy(tx.body.grant.scopes[i].s, many_scopes[i]);
    tx.body.grant.n_purposes = np;
    for (uint32_t i = 0; i < np && i < CHAIN_PURPOSES_MAX; i++) strcpy(tx.body.grant.purposes[i].s, many_purposes[i]);
    int rc = chain_tx_encode(buf, sizeof buf, &n, &tx);
    return rc != 0 ? rc : chain_tx_decode(&out, buf, n);
}

static void scopes_17(Consent__Tx *m)
{
    static Consent__Grant g;
    g = *m->grant;
    g.n_scopes = 17;
    g.scopes = (char **)many_scopes;
    m->grant = &g;
}
static void purposes_9(Consent__Tx *m)
{
    static Consent__Grant g;
    g = *m->grant;
    g.n_purposes = 9;
    g.purposes = (char **)many_purposes;
    m->grant = &g;
}
static void scope_unknown(Consent__Tx *m)
{
    static Consent__Grant g;
    static char *s[] = {(char *)"Observation", (char *)"Gossip"};
    g = *m->grant;
    g.scopes = s;
    m->grant = &g;
}
static void scope_dup(Consent__Tx *m)
{
    static Consent__Grant g;
    static char *s[] = {(char *)"Observation", (char *)"Observation"};
    g = *m->grant;
    g.scopes = s;
    m->grant = &g;
}
static void purpose_dup(Consent__Tx *m)
{
    static Consent__Grant g;
    static char *s[] = {(char *)"HRESCH", (char *)"HRESCH"};
    g = *m->grant;
    g.purposes = s;
    m->grant = &g;
}
static void purpose_unknown(Consent__Tx *m)
{
    static Consent__Grant g;
    static char *s[] = {(char *)"HRESCH", (char *)"DUO:9999999"};
    g = *m->grant;
    g.purposes = s;
    m->grant = &g;
}

START_TEST(test_tx_code_lists_and_limits)
{
    ck_assert_int_eq(grant_with(1, 1), 0);
    ck_assert_int_eq(grant_with(CHAIN_SCOPES_MAX, CHAIN_PURPOSES_MAX), 0);
    ck_assert_int_eq(grant_with(CHAIN_SCOPES_MAX + 1, 1), CHAIN_EBOUNDS);
    ck_assert_int_eq(grant_with(1, CHAIN_PURPOSES_MAX + 1), CHAIN_EBOUNDS);
    ck_assert_int_eq(grant_with(0, 1), CHAIN_EBOUNDS);
    ck_assert_int_eq(grant_with(1, 0), CHAIN_EBOUNDS);
    /* The same limits on the decode side. */
    ck_assert_int_eq(mutate_sample(0, scopes_17), CHAIN_EBOUNDS);
    ck_assert_int_eq(mutate_sample(0, purposes_9), CHAIN_EBOUNDS);
    ck_assert_int_eq(mutate_sample(0, scope_unknown), CHAIN_ECODE);
    ck_assert_int_eq(mutate_sample(0, scope_dup), CHAIN_ECODE);
    ck_assert_int_eq(mutate_sample(0, purpose_dup), CHAIN_ECODE);
    ck_assert_int_eq(mutate_sample(0, purpose_unknown), CHAIN_ECODE);
}
END_TEST

START_TEST(test_tx_encode_refusals)
{
    chain_tx tx;
    uint8_t buf[CHAIN_TX_BYTES_MAX];
    size_t n = 0;
    grant_tx(&tx);
    ck_assert_int_eq(chain_tx_encode(buf, 10, &n, &tx), CHAIN_EBOUNDS);   /* does not fit */
    ck_assert_int_eq(chain_tx_encode(NULL, 10, &n, &tx), CHAIN_EINVAL);
    strcpy(tx.body.grant.scopes[0].s, "Nonsense");
    ck_assert_int_eq(chain_tx_encode(buf, sizeof buf, &n, &tx), CHAIN_ECODE);
    grant_tx(&tx);
    strcpy(tx.chain_id, "Bad Id");
    ck_assert_int_eq(chain_tx_encode(buf, sizeof buf, &n, &tx), CHAIN_EBOUNDS);
    memset(tx.chain_id, 'a', sizeof tx.chain_id);   /* not terminated */
    ck_assert_int_eq(chain_tx_encode(buf, sizeof buf, &n, &tx), CHAIN_EBOUNDS);
    grant_tx(&tx);
    tx.type = (chain_tx_type)9;
    ck_assert_int_eq(chain_tx_encode(buf, sizeof buf, &n, &tx), CHAIN_EDECODE);
    base_tx(&tx, CHAIN_TX_SET_GUARDIAN);
    tx.body.set_guardian.remove = 2;
    ck_assert_int_eq(chain_tx_encode(buf, sizeof buf, &n, &tx), CHAIN_EBOUNDS);
}
END_TEST

START_TEST(test_tx_institution_rules)
{
    chain_tx tx, out;
    uint8_t buf[CHAIN_TX_BYTES_MAX];
    size_t n;
    institution_tx(&tx, CHAIN_TX_REGISTER_INSTITUTION, 0);
    ck_assert_int_eq(chain_tx_encode(buf, sizeof buf, &n, &tx), 0);
    memset(tx.body.institution.name, 'x', CHAIN_NAME_LEN_MAX);   /* 64: the limit */
    tx.body.institution.name[CHAIN_NAME_LEN_MAX] = '\0';
    ck_assert_int_eq(chain_tx_encode(buf, sizeof buf, &n, &tx), 0);
    ck_assert_int_eq(chain_tx_decode(&out, buf, n), 0);
    memset(tx.body.institution.name, 'x', sizeof tx.body.institution.name);   /* 65, unterminated */
    ck_assert_int_eq(chain_tx_encode(buf, sizeof buf, &n, &tx), CHAIN_EBOUNDS);
    strcpy(tx.body.institution.name, "");
    ck_assert_int_eq(chain_tx_encode(buf, sizeof buf, &n, &tx), CHAIN_EBOUNDS);
    strcpy(tx.body.institution.name, "tab\there");
    ck_assert_int_eq(chain_tx_encode(buf, sizeof buf, &n, &tx), CHAIN_EBOUNDS);
    strcpy(tx.body.institution.name, "caf\xc3\xa9");
    ck_assert_int_eq(chain_tx_encode(buf, sizeof buf, &n, &tx), CHAIN_EBOUNDS);
    strcpy(tx.body.institution.name, "ok");
    tx.body.institution.roles = 0;
    ck_assert_int_eq(chain_tx_encode(buf, sizeof buf, &n, &tx), CHAIN_ECODE);
    tx.body.institution.roles = CHAIN_ROLE_VALIDATOR;
    ck_assert_int_eq(chain_tx_encode(buf, sizeof buf, &n, &tx), CHAIN_ECODE);
    tx.body.institution.roles = 8;
    ck_assert_int_eq(chain_tx_encode(buf, sizeof buf, &n, &tx), CHAIN_ECODE);
    institution_tx(&tx, CHAIN_TX_REMOVE_INSTITUTION, 0);
    strcpy(tx.body.institution.name, "x");
    ck_assert_int_eq(chain_tx_encode(buf, sizeof buf, &n, &tx), CHAIN_EBOUNDS);
    /* Endorsement count: the array limit, and what fits in a tx. */
    institution_tx(&tx, CHAIN_TX_REMOVE_INSTITUTION, CHAIN_VALIDATORS_MAX + 1);
    ck_assert_int_eq(chain_tx_encode(buf, sizeof buf, &n, &tx), CHAIN_EBOUNDS);
    institution_tx(&tx, CHAIN_TX_REMOVE_INSTITUTION, CHAIN_VALIDATORS_MAX);
    ck_assert_int_eq(chain_tx_encode(buf, sizeof buf, &n, &tx), CHAIN_EBOUNDS);   /* > 4096 bytes */
    institution_tx(&tx, CHAIN_TX_REMOVE_INSTITUTION, 30);
    ck_assert_int_eq(chain_tx_encode(buf, sizeof buf, &n, &tx), 0);
    ck_assert_int_eq(chain_tx_decode(&out, buf, n), 0);
    ck_assert_uint_eq(out.body.institution.n_endorsements, 30);
    tx.body.institution.endorsements[7].signer = tx.body.institution.endorsements[3].signer;
    ck_assert_int_eq(chain_tx_encode(buf, sizeof buf, &n, &tx), CHAIN_EBOUNDS);
}
END_TEST

START_TEST(test_tx_size_limit)
{
    /* Grow a Register tx one endorsement at a time: the largest that fits
     * CHAIN_TX_BYTES_MAX encodes and decodes, the next is refused. */
    chain_tx tx, out;
    uint8_t buf[CHAIN_TX_BYTES_MAX];
    size_t n = 0, last = 0;
    uint32_t k = 0;
    for (k = 1; k <= CHAIN_VALIDATORS_MAX; k++) {
        institution_tx(&tx, CHAIN_TX_REGISTER_INSTITUTION, k);
        memset(tx.sig.b, 1, 64);
        memset(tx.signer.b, 1, 32);
        if (chain_tx_encode(buf, sizeof buf, &n, &tx) != 0) break;
        last = n;
    }
    ck_assert_uint_le(k, CHAIN_VALIDATORS_MAX);
    ck_assert_uint_gt(last, CHAIN_TX_BYTES_MAX - 150);
    institution_tx(&tx, CHAIN_TX_REGISTER_INSTITUTION, k - 1);
    memset(tx.sig.b, 1, 64);
    memset(tx.signer.b, 1, 32);
    ck_assert_int_eq(chain_tx_encode(buf, sizeof buf, &n, &tx), 0);
    ck_assert_int_eq(chain_tx_decode(&out, buf, n), 0);
}
END_TEST

START_TEST(test_tx_check_rules)
{
    chain_tx tx;
    chain_key *k = key_n(0);
    grant_tx(&tx);
    ck_assert_int_eq(chain_tx_sign(&tx, k), 0);
    chain_pubkey pk;
    chain_key_pubkey(k, &pk);
    ck_assert_mem_eq(tx.signer.b, pk.b, 32);   /* sign sets the signer */
    ck_assert_int_eq(chain_tx_check(&tx, CID, NOW), 0);
    ck_assert_int_eq(chain_tx_check(&tx, "other-chain", NOW), CHAIN_ECHAINID);
    ck_assert_int_eq(chain_tx_check(&tx, CID, NOW + CHAIN_TX_CLOCK_SKEW_S), 0);
    ck_assert_int_eq(chain_tx_check(&tx, CID, NOW - CHAIN_TX_CLOCK_SKEW_S), 0);
    ck_assert_int_eq(chain_tx_check(&tx, CID, NOW + CHAIN_TX_CLOCK_SKEW_S + 1), CHAIN_ETIME);
    ck_assert_int_eq(chain_tx_check(&tx, CID, NOW - CHAIN_TX_CLOCK_SKEW_S - 1), CHAIN_ETIME);
    ck_assert_int_eq(chain_tx_check(NULL, CID, NOW), CHAIN_EINVAL);
    /* Tampering after signing. */
    chain_tx t2 = tx;
    t2.body.grant.not_after++;
    ck_assert_int_eq(chain_tx_check(&t2, CID, NOW), CHAIN_ESIG);
    t2 = tx;
    t2.sig.b[10] ^= 4;
    ck_assert_int_eq(chain_tx_check(&t2, CID, NOW), CHAIN_ESIG);
    t2 = tx;
    t2.signer = pub_n(9);
    ck_assert_int_eq(chain_tx_check(&t2, CID, NOW), CHAIN_ESIG);
    /* Grant window. */
    tx.body.grant.not_after = tx.body.grant.not_before;
    ck_assert_int_eq(chain_tx_sign(&tx, k), 0);
    ck_assert_int_eq(chain_tx_check(&tx, CID, NOW), CHAIN_ETIME);
    tx.body.grant.not_after = tx.body.grant.not_before - 1;
    ck_assert_int_eq(chain_tx_sign(&tx, k), 0);
    ck_assert_int_eq(chain_tx_check(&tx, CID, NOW), CHAIN_ETIME);
    tx.body.grant.not_after = tx.body.grant.not_before + CHAIN_GRANT_DURATION_MAX_S;
    ck_assert_int_eq(chain_tx_sign(&tx, k), 0);
    ck_assert_int_eq(chain_tx_check(&tx, CID, NOW), 0);
    tx.body.grant.not_after++;
    ck_assert_int_eq(chain_tx_sign(&tx, k), 0);
    ck_assert_int_eq(chain_tx_check(&tx, CID, NOW), CHAIN_ETIME);
    /* A malformed struct is refused rather than signed. */
    strcpy(tx.body.grant.scopes[0].s, "Nonsense");
    ck_assert_int_eq(chain_tx_sign(&tx, k), CHAIN_ECODE);
    ck_assert_int_eq(chain_tx_check(&tx, CID, NOW), CHAIN_ETIME);
    chain_key_destroy(k);
}
END_TEST

START_TEST(test_institution_sighash)
{
    chain_tx tx;
    chain_hash a, b;
    institution_tx(&tx, CHAIN_TX_REGISTER_INSTITUTION, 3);
    ck_assert_int_eq(chain_institution_sighash(&a, CID, CHAIN_TX_REGISTER_INSTITUTION, &tx.body.institution), 0);
    tx.body.institution.n_endorsements = 0;   /* endorsements are not signed */
    ck_assert_int_eq(chain_institution_sighash(&b, CID, CHAIN_TX_REGISTER_INSTITUTION, &tx.body.institution), 0);
    ck_assert_mem_eq(a.b, b.b, 32);
    ck_assert_int_eq(chain_institution_sighash(&b, "other", CHAIN_TX_REGISTER_INSTITUTION, &tx.body.institution), 0);
    ck_assert_mem_ne(a.b, b.b, 32);
    tx.body.institution.roles = CHAIN_ROLE_GRANTEE;
    ck_assert_int_eq(chain_institution_sighash(&b, CID, CHAIN_TX_REGISTER_INSTITUTION, &tx.body.institution), 0);
    ck_assert_mem_ne(a.b, b.b, 32);
    institution_tx(&tx, CHAIN_TX_REMOVE_INSTITUTION, 0);
    ck_assert_int_eq(chain_institution_sighash(&b, CID, CHAIN_TX_REMOVE_INSTITUTION, &tx.body.institution), 0);
    ck_assert_mem_ne(a.b, b.b, 32);
    ck_assert_int_eq(chain_institution_sighash(&b, CID, CHAIN_TX_GRANT, &tx.body.institution), CHAIN_EINVAL);
    ck_assert_int_eq(chain_institution_sighash(&b, "Bad", CHAIN_TX_REMOVE_INSTITUTION, &tx.body.institution),
                     CHAIN_EBOUNDS);
    ck_assert_int_eq(chain_institution_sighash(&b, CID, CHAIN_TX_REGISTER_INSTITUTION, &tx.body.institution),
                     CHAIN_EBOUNDS);   /* a register needs a name */
}
END_TEST

/* ------------------------------------------------------------ blocks */

static void sample_header(chain_header *h)
{
    memset(h, 0, sizeof *h);
    strcpy(h->chain_id, CID);
    h->height = 7;
    memset(h->prev_hash.b, 1, 32);
    h->time_ms = NOW * 1000;
    h->proposer = pub_n(100);
    memset(h->tx_root.b, 2, 32);
    memset(h->state_root.b, 3, 32);
    memset(h->valset_hash.b, 4, 32);
    h->view = 2;
}

START_TEST(test_header_round_trip_and_hash)
{
    chain_header h, back;
    chain_hash a, b;
    uint8_t *buf = NULL;
    size_t n = 0;
    sample_header(&h);
    ck_assert_int_eq(chain_header_encode(&buf, &n, &h), 0);
    ck_assert_int_eq(chain_header_decode(&back, buf, n), 0);
    ck_assert_str_eq(back.chain_id, h.chain_id);
    ck_assert_uint_eq(back.height, h.height);
    ck_assert_uint_eq(back.time_ms, h.time_ms);
    ck_assert_uint_eq(back.view, h.view);
    ck_assert_mem_eq(back.state_root.b, h.state_root.b, 32);
    ck_assert_mem_eq(back.proposer.b, h.proposer.b, 32);
    chain_header_hash(&h, &a);
    chain_sha256(&b, buf, n);
    ck_assert_mem_eq(a.b, b.b, 32);
    chain_header_hash(&back, &b);
    ck_assert_mem_eq(a.b, b.b, 32);
    h.view++;
    chain_header_hash(&h, &b);
    ck_assert_mem_ne(a.b, b.b, 32);
    /* A cut before the last field can decode (that field then reads as its
     * default), but never to the same header. */
    chain_header_hash(&h, &a);
    for (size_t cut = 0; cut < n; cut++) {
        if (chain_header_decode(&back, buf, cut) == 0) {
            chain_header_hash(&back, &b);
            ck_assert_mem_ne(a.b, b.b, 32);
        }
    }
    free(buf);
}
END_TEST

START_TEST(test_header_decode_refusals)
{
    chain_header h, back;
    uint8_t *buf = NULL, mod[1024];
    size_t n = 0;
    sample_header(&h);
    ck_assert_int_eq(chain_header_encode(&buf, &n, &h), 0);
    /* unknown field */
    memcpy(mod, buf, n);
    mod[n] = 0x50;   /* field 10, varint */
    mod[n + 1] = 1;
    ck_assert_int_eq(chain_header_decode(&back, mod, n + 2), CHAIN_ENONCANON);
    /* repeated field */
    mod[n] = 0x48;   /* field 9 (view) again */
    mod[n + 1] = 2;
    ck_assert_int_eq(chain_header_decode(&back, mod, n + 2), CHAIN_ENONCANON);
    free(buf);
    /* explicit default: view 0 written out at the end, where field 9 goes */
    h.view = 0;
    ck_assert_int_eq(chain_header_encode(&buf, &n, &h), 0);
    memcpy(mod, buf, n);
    mod[n] = 0x48;
    mod[n + 1] = 0;
    ck_assert_int_eq(chain_header_decode(&back, buf, n), 0);
    ck_assert_int_eq(chain_header_decode(&back, mod, n + 2), CHAIN_ENONCANON);
    free(buf);
    /* field lengths and chain id via protobuf-c */
    Consent__BlockHeader m = CONSENT__BLOCK_HEADER__INIT;
    uint8_t k31[31] = {0}, k32[32] = {0};
    m.chain_id = (char *)CID;
    m.prev_hash.data = m.proposer.data = m.tx_root.data = m.state_root.data = m.validator_set_hash.data = k32;
    m.prev_hash.len = m.proposer.len = m.tx_root.len = m.state_root.len = m.validator_set_hash.len = 32;
    n = consent__block_header__pack(&m, mod);
    ck_assert_int_eq(chain_header_decode(&back, mod, n), 0);
    m.state_root.data = k31;
    m.state_root.len = 31;
    n = consent__block_header__pack(&m, mod);
    ck_assert_int_eq(chain_header_decode(&back, mod, n), CHAIN_EBOUNDS);
    m.state_root.data = k32;
    m.state_root.len = 32;
    m.chain_id = (char *)"UPPER";
    n = consent__block_header__pack(&m, mod);
    ck_assert_int_eq(chain_header_decode(&back, mod, n), CHAIN_EBOUNDS);
    /* garbage and oversize */
    memset(mod, 0xff, sizeof mod);
    ck_assert_int_eq(chain_header_decode(&back, mod, 40), CHAIN_EDECODE);
    ck_assert_int_eq(chain_header_decode(&back, mod, 513), CHAIN_EBOUNDS);
    strcpy(h.chain_id, "Bad");
    ck_assert_int_eq(chain_header_encode(&buf, &n, &h), CHAIN_EBOUNDS);
}
END_TEST

static void sample_cert(chain_cert *c, uint32_t n)
{
    memset(c, 0, sizeof *c);
    c->view = 3;
    c->height = 7;
    memset(c->block_hash.b, 9, 32);
    c->n_sigs = n;
    for (uint32_t i = 0; i < n && i < CHAIN_VALIDATORS_MAX; i++) {
        c->sigs[i].validator.b[0] = (uint8_t)i;
        memset(c->sigs[i].sig.b, (int)i, 64);
    }
}

START_TEST(test_cert_codec)
{
    chain_cert c, back;
    uint8_t *buf = NULL;
    size_t n = 0;
    sample_cert(&c, CHAIN_VALIDATORS_MAX);
    ck_assert_int_eq(chain_cert_encode(&buf, &n, &c), 0);
    ck_assert_int_eq(chain_cert_decode(&back, buf, n), 0);
    ck_assert_uint_eq(back.n_sigs, CHAIN_VALIDATORS_MAX);
    ck_assert_mem_eq(back.sigs, c.sigs, sizeof c.sigs);
    ck_assert_mem_eq(back.block_hash.b, c.block_hash.b, 32);
    ck_assert_uint_eq(back.view, c.view);
    /* A prefix ending between two sigs is a valid cert with fewer sigs (it
     * cannot reach a quorum the full cert did not); any other cut fails. */
    for (size_t cut = 0; cut < n; cut++) {
        int rc = chain_cert_decode(&back, buf, cut);
        if (rc == 0) ck_assert_uint_lt(back.n_sigs, CHAIN_VALIDATORS_MAX);
    }
    free(buf);
    sample_cert(&c, CHAIN_VALIDATORS_MAX + 1);
    ck_assert_int_eq(chain_cert_encode(&buf, &n, &c), CHAIN_EBOUNDS);
    /* 65 sigs on the wire (built with protobuf-c). */
    Consent__CommitCert m = CONSENT__COMMIT_CERT__INIT;
    Consent__CommitSig s[CHAIN_VALIDATORS_MAX + 1], *sp[CHAIN_VALIDATORS_MAX + 1];
    uint8_t k32[32] = {1}, s64[64] = {1}, s63[63] = {1};
    for (int i = 0; i <= CHAIN_VALIDATORS_MAX; i++) {
        consent__commit_sig__init(&s[i]);
        s[i].validator.data = k32;
        s[i].validator.len = 32;
        s[i].signature.data = s64;
        s[i].signature.len = 64;
        sp[i] = &s[i];
    }
    static uint8_t wire[16384];
    m.block_hash.data = k32;
    m.block_hash.len = 32;
    m.sigs = sp;
    m.n_sigs = CHAIN_VALIDATORS_MAX + 1;
    n = consent__commit_cert__pack(&m, wire);
    ck_assert_int_eq(chain_cert_decode(&back, wire, n), CHAIN_EBOUNDS);
    m.n_sigs = 2;
    s[1].signature.data = s63;
    s[1].signature.len = 63;
    n = consent__commit_cert__pack(&m, wire);
    ck_assert_int_eq(chain_cert_decode(&back, wire, n), CHAIN_EBOUNDS);
    s[1].signature.data = s64;
    s[1].signature.len = 64;
    m.block_hash.len = 31;
    n = consent__commit_cert__pack(&m, wire);
    ck_assert_int_eq(chain_cert_decode(&back, wire, n), CHAIN_EBOUNDS);
    m.block_hash.len = 32;
    n = consent__commit_cert__pack(&m, wire);
    ck_assert_int_eq(chain_cert_decode(&back, wire, n), 0);
    wire[n] = 0x28;   /* field 5: unknown */
    wire[n + 1] = 0;
    ck_assert_int_eq(chain_cert_decode(&back, wire, n + 2), CHAIN_ENONCANON);
    static uint8_t big[20000];
    ck_assert_int_eq(chain_cert_decode(&back, big, sizeof big), CHAIN_EBOUNDS);
}
END_TEST

static void fill_block(chain_block *b, uint32_t n_txs, int with_cert)
{
    chain_block_init(b);
    sample_header(&b->hdr);
    for (uint32_t i = 0; i < n_txs; i++) {
        uint8_t tx[40];
        memset(tx, (int)i, sizeof tx);
        ck_assert_int_eq(chain_block_add_tx(b, tx, 1 + i % sizeof tx), 0);
    }
    if (with_cert) sample_cert(&b->cert, 3);
}

START_TEST(test_block_round_trip)
{
    for (int with_cert = 0; with_cert < 2; with_cert++) {
        chain_block b, back;
        uint8_t *buf = NULL, *again = NULL;
        size_t n = 0, n2 = 0;
        fill_block(&b, 37, with_cert);
        ck_assert_int_eq(chain_block_encode(&buf, &n, &b), 0);
        ck_assert_int_eq(chain_block_decode(&back, buf, n), 0);
        ck_assert_uint_eq(back.n_txs, 37);
        ck_assert_uint_eq(back.tx_lens[5], 6);
        ck_assert_mem_eq(back.txs[36], b.txs[36], b.tx_lens[36]);
        ck_assert_uint_eq(back.cert.n_sigs, with_cert ? 3 : 0);
        ck_assert_mem_eq(&back.hdr, &b.hdr, sizeof b.hdr);
        ck_assert_int_eq(chain_block_encode(&again, &n2, &back), 0);
        ck_assert_uint_eq(n, n2);
        ck_assert_mem_eq(buf, again, n);
        /* A cut between two txs leaves a well-formed block with fewer txs
         * (its tx root will not match the header); any other cut fails. */
        for (size_t cut = 0; cut < n; cut++) {
            chain_block x;
            if (chain_block_decode(&x, buf, cut) == 0) {
                ck_assert(x.n_txs < 37 || x.cert.n_sigs < back.cert.n_sigs);
                chain_block_free(&x);
            }
        }
        free(buf);
        free(again);
        chain_block_free(&b);
        chain_block_free(&back);
    }
    chain_block e;
    uint8_t *buf = NULL;
    size_t n = 0;
    fill_block(&e, 0, 0);
    ck_assert_int_eq(chain_block_encode(&buf, &n, &e), 0);
    chain_block back;
    ck_assert_int_eq(chain_block_decode(&back, buf, n), 0);
    ck_assert_uint_eq(back.n_txs, 0);
    chain_block_free(&back);
    free(buf);
    chain_block_free(&e);
}
END_TEST

START_TEST(test_block_add_tx_limits)
{
    chain_block b;
    uint8_t tx[CHAIN_TX_BYTES_MAX + 1] = {1};
    chain_block_init(&b);
    sample_header(&b.hdr);
    ck_assert_int_eq(chain_block_add_tx(&b, tx, 0), CHAIN_EBOUNDS);
    ck_assert_int_eq(chain_block_add_tx(&b, tx, CHAIN_TX_BYTES_MAX + 1), CHAIN_EBOUNDS);
    ck_assert_int_eq(chain_block_add_tx(&b, tx, CHAIN_TX_BYTES_MAX), 0);
    for (uint32_t i = 1; i < CHAIN_BLOCK_TXS_MAX; i++) ck_assert_int_eq(chain_block_add_tx(&b, tx, 1), 0);
    ck_assert_uint_eq(b.n_txs, CHAIN_BLOCK_TXS_MAX);
    ck_assert_int_eq(chain_block_add_tx(&b, tx, 1), CHAIN_EBOUNDS);
    ck_assert_uint_eq(b.n_txs, CHAIN_BLOCK_TXS_MAX);
    uint8_t *buf = NULL;
    size_t n = 0;
    ck_assert_int_eq(chain_block_encode(&buf, &n, &b), 0);
    chain_block back;
    ck_assert_int_eq(chain_block_decode(&back, buf, n), 0);
    ck_assert_uint_eq(back.n_txs, CHAIN_BLOCK_TXS_MAX);
    chain_block_free(&back);
    free(buf);
    chain_block_free(&b);
    ck_assert_ptr_null(b.txs);
    ck_assert_uint_eq(b.n_txs, 0);
    ck_assert_int_eq(chain_block_add_tx(&b, NULL, 1), CHAIN_EINVAL);
}
END_TEST

START_TEST(test_block_encode_refusals)
{
    chain_block b;
    uint8_t *buf = NULL;
    size_t n = 0;
    fill_block(&b, 3, 1);
    b.cert.n_sigs = CHAIN_VALIDATORS_MAX + 1;
    ck_assert_int_eq(chain_block_encode(&buf, &n, &b), CHAIN_EBOUNDS);
    b.cert.n_sigs = 3;
    b.tx_lens[1] = 0;
    ck_assert_int_eq(chain_block_encode(&buf, &n, &b), CHAIN_EBOUNDS);
    b.tx_lens[1] = CHAIN_TX_BYTES_MAX + 1;
    ck_assert_int_eq(chain_block_encode(&buf, &n, &b), CHAIN_EBOUNDS);
    b.tx_lens[1] = 2;
    uint32_t real = b.n_txs;
    b.n_txs = CHAIN_BLOCK_TXS_MAX + 1;
    ck_assert_int_eq(chain_block_encode(&buf, &n, &b), CHAIN_EBOUNDS);
    b.n_txs = real;
    strcpy(b.hdr.chain_id, "no spaces");
    ck_assert_int_eq(chain_block_encode(&buf, &n, &b), CHAIN_EBOUNDS);
    ck_assert_int_eq(chain_block_encode(NULL, &n, &b), CHAIN_EINVAL);
    ck_assert_ptr_null(buf);
    chain_block_free(&b);
}
END_TEST

START_TEST(test_block_decode_refusals)
{
    Consent__Block m = CONSENT__BLOCK__INIT;
    Consent__BlockHeader hm = CONSENT__BLOCK_HEADER__INIT;
    Consent__CommitCert cm = CONSENT__COMMIT_CERT__INIT;
    uint8_t k32[32] = {0};
    static uint8_t wire[CHAIN_BLOCK_TXS_MAX * 4 + 4096];
    static ProtobufCBinaryData txs[CHAIN_BLOCK_TXS_MAX + 1];
    static uint8_t one = 7;
    static uint8_t fat[CHAIN_TX_BYTES_MAX + 1];
    chain_block b;
    size_t n;
    hm.chain_id = (char *)CID;
    hm.prev_hash.data = hm.proposer.data = hm.tx_root.data = hm.state_root.data = hm.validator_set_hash.data = k32;
    hm.prev_hash.len = hm.proposer.len = hm.tx_root.len = hm.state_root.len = hm.validator_set_hash.len = 32;
    for (int i = 0; i <= CHAIN_BLOCK_TXS_MAX; i++) {
        txs[i].data = &one;
        txs[i].len = 1;
    }
    m.header = &hm;
    m.txs = txs;
    m.n_txs = 2;
    n = consent__block__pack(&m, wire);
    ck_assert_int_eq(chain_block_decode(&b, wire, n), 0);
    chain_block_free(&b);
    /* no header */
    m.header = NULL;
    n = consent__block__pack(&m, wire);
    ck_assert_int_eq(chain_block_decode(&b, wire, n), CHAIN_EDECODE);
    m.header = &hm;
    /* too many txs */
    m.n_txs = CHAIN_BLOCK_TXS_MAX + 1;
    n = consent__block__pack(&m, wire);
    ck_assert_int_eq(chain_block_decode(&b, wire, n), CHAIN_EBOUNDS);
    /* an empty tx, and an oversized one */
    m.n_txs = 2;
    txs[1].len = 0;
    n = consent__block__pack(&m, wire);
    ck_assert_int_eq(chain_block_decode(&b, wire, n), CHAIN_EBOUNDS);
    txs[1].data = fat;
    txs[1].len = sizeof fat;
    n = consent__block__pack(&m, wire);
    ck_assert_int_eq(chain_block_decode(&b, wire, n), CHAIN_EBOUNDS);
    txs[1].data = &one;
    txs[1].len = 1;
    /* a cert with no signatures must be left out, not sent empty */
    cm.block_hash.data = k32;
    cm.block_hash.len = 32;
    m.cert = &cm;
    n = consent__block__pack(&m, wire);
    ck_assert_int_eq(chain_block_decode(&b, wire, n), CHAIN_ENONCANON);
    m.cert = NULL;
    /* a bad header inside the block */
    hm.tx_root.len = 31;
    n = consent__block__pack(&m, wire);
    ck_assert_int_eq(chain_block_decode(&b, wire, n), CHAIN_EBOUNDS);
    hm.tx_root.len = 32;
    /* unknown field at the top */
    n = consent__block__pack(&m, wire);
    wire[n] = 0x20;   /* field 4 */
    wire[n + 1] = 1;
    ck_assert_int_eq(chain_block_decode(&b, wire, n + 2), CHAIN_ENONCANON);
    /* out of order: txs before the header */
    Consent__Block only_txs = CONSENT__BLOCK__INIT;
    only_txs.txs = txs;
    only_txs.n_txs = 2;
    size_t nt = consent__block__pack(&only_txs, wire);
    Consent__Block only_hdr = CONSENT__BLOCK__INIT;
    only_hdr.header = &hm;
    size_t nh = consent__block__pack(&only_hdr, wire + nt);
    ck_assert_int_eq(chain_block_decode(&b, wire, nt + nh), CHAIN_ENONCANON);
    /* garbage, oversize */
    memset(wire, 0xff, 64);
    ck_assert_int_eq(chain_block_decode(&b, wire, 64), CHAIN_EDECODE);
    ck_assert_int_eq(chain_block_decode(&b, wire, (size_t)CHAIN_BLOCK_BYTES_MAX + 1), CHAIN_EBOUNDS);
    ck_assert_int_eq(chain_block_decode(NULL, wire, 1), CHAIN_EINVAL);
}
END_TEST

/* Reference Merkle root, level by level with the odd node promoted. */
static void ref_root(chain_hash *out, const chain_block *b)
{
    chain_hash lvl[64];
    uint32_t n = b->n_txs;
    for (uint32_t i = 0; i < n; i++) {
        uint8_t buf[33];
        chain_hash h;
        chain_sha256(&h, b->txs[i], b->tx_lens[i]);
        buf[0] = 0;
        memcpy(buf + 1, h.b, 32);
        chain_sha256(&lvl[i], buf, 33);
    }
    while (n > 1) {
        uint32_t m = 0;
        for (uint32_t i = 0; i + 1 < n; i += 2) {
            uint8_t buf[65];
            buf[0] = 1;
            memcpy(buf + 1, lvl[i].b, 32);
            memcpy(buf + 33, lvl[i + 1].b, 32);
            chain_sha256(&lvl[m++], buf, 65);
        }
        if (n % 2) lvl[m++] = lvl[n - 1];
        n = m;
    }
    *out = lvl[0];
}

START_TEST(test_tx_root)
{
    chain_block b;
    chain_hash r, want;
    fill_block(&b, 0, 0);
    chain_tx_root(&r, &b);
    uint8_t zero[32] = {0};
    ck_assert_mem_eq(r.b, zero, 32);
    for (uint32_t n = 1; n <= 64; n++) {
        ck_assert_int_eq(chain_block_add_tx(&b, (const uint8_t *)&n, sizeof n), 0);
        chain_tx_root(&r, &b);
        ref_root(&want, &b);
        ck_assert_msg(memcmp(r.b, want.b, 32) == 0, "root differs at n=%u", n);
    }
    /* Order matters. */
    uint8_t *t = b.txs[0];
    size_t l = b.tx_lens[0];
    b.txs[0] = b.txs[1];
    b.tx_lens[0] = b.tx_lens[1];
    b.txs[1] = t;
    b.tx_lens[1] = l;
    chain_hash swapped;
    chain_tx_root(&swapped, &b);
    ck_assert_mem_ne(r.b, swapped.b, 32);
    chain_block_free(&b);
}
END_TEST

/* A 4-validator genesis (quorum 3) and a header it certifies. */
static void cert_for(chain_cert *c, const chain_header *h, const unsigned *signers, uint32_t n, uint64_t view)
{
    memset(c, 0, sizeof *c);
    c->view = view;
    c->height = h->height;
    chain_header_hash(h, &c->block_hash);
    chain_hash msg;
    chain_commit_sighash(&msg, h->chain_id, view, h->height, &c->block_hash);
    for (uint32_t i = 0; i < n; i++) {
        chain_key *k = key_n(signers[i]);
        chain_key_pubkey(k, &c->sigs[i].validator);
        ck_assert_int_eq(chain_sign(k, &c->sigs[i].sig, &msg), 0);
        chain_key_destroy(k);
    }
    c->n_sigs = n;
}

START_TEST(test_cert_verify)
{
    chain_genesis *g = genesis_n(4);
    chain_header h;
    chain_cert c;
    sample_header(&h);
    ck_assert_uint_eq(chain_genesis_quorum(g), 3);
    const unsigned three[] = {100, 101, 102}, four[] = {100, 101, 102, 103};
    const unsigned two[] = {100, 101}, dup[] = {100, 101, 101}, outsider[] = {100, 101, 200};
    cert_for(&c, &h, three, 3, 2);
    ck_assert_int_eq(chain_cert_verify(&c, g, &h), 0);
    cert_for(&c, &h, four, 4, 5);   /* a later view than the header's */
    ck_assert_int_eq(chain_cert_verify(&c, g, &h), 0);
    cert_for(&c, &h, two, 2, 2);
    ck_assert_int_eq(chain_cert_verify(&c, g, &h), CHAIN_ECERT);
    cert_for(&c, &h, dup, 3, 2);
    ck_assert_int_eq(chain_cert_verify(&c, g, &h), CHAIN_ECERT);
    cert_for(&c, &h, outsider, 3, 2);   /* a valid sig from a non-validator */
    ck_assert_int_eq(chain_cert_verify(&c, g, &h), CHAIN_ECERT);
    /* One forged signature among three. */
    cert_for(&c, &h, three, 3, 2);
    c.sigs[2].sig.b[5] ^= 1;
    ck_assert_int_eq(chain_cert_verify(&c, g, &h), CHAIN_ECERT);
    /* Four with one forged still makes quorum. */
    cert_for(&c, &h, four, 4, 2);
    c.sigs[0].sig.b[5] ^= 1;
    ck_assert_int_eq(chain_cert_verify(&c, g, &h), 0);
    /* A validator's slot claimed with another key's signature. */
    cert_for(&c, &h, three, 3, 2);
    c.sigs[2].validator = pub_n(103);
    ck_assert_int_eq(chain_cert_verify(&c, g, &h), CHAIN_ECERT);
    /* Signatures over another view than the cert claims. */
    cert_for(&c, &h, three, 3, 2);
    c.view = 3;
    ck_assert_int_eq(chain_cert_verify(&c, g, &h), CHAIN_ECERT);
    /* Mismatch with the header. */
    cert_for(&c, &h, three, 3, 2);
    c.height++;
    ck_assert_int_eq(chain_cert_verify(&c, g, &h), CHAIN_ECERT);
    cert_for(&c, &h, three, 3, 2);
    chain_header h2 = h;
    h2.time_ms++;
    ck_assert_int_eq(chain_cert_verify(&c, g, &h2), CHAIN_ECERT);
    h2 = h;
    strcpy(h2.chain_id, "other");
    cert_for(&c, &h2, three, 3, 2);
    ck_assert_int_eq(chain_cert_verify(&c, g, &h2), CHAIN_ECERT);
    cert_for(&c, &h, three, 3, 2);
    c.n_sigs = CHAIN_VALIDATORS_MAX + 1;
    ck_assert_int_eq(chain_cert_verify(&c, g, &h), CHAIN_ECERT);
    ck_assert_int_eq(chain_cert_verify(NULL, g, &h), CHAIN_EINVAL);
    free(g);
}
END_TEST

/* ------------------------------------------------------------ suite */

static Suite *codec_suite(void)
{
    Suite *s = suite_create("chain_codec");
    TCase *t = tcase_create("basics");
    tcase_add_test(t, test_strerror_every_code);
    tcase_add_test(t, test_hex_round_trip_and_refusals);
    tcase_add_test(t, test_sha256_vectors);
    tcase_add_test(t, test_key_from_secret_bip340_vector);
    tcase_add_test(t, test_key_invalid_secrets_refused);
    tcase_add_test(t, test_key_fresh_keys_differ);
    tcase_add_test(t, test_sign_verify_and_forgeries);
    tcase_add_test(t, test_verify_cached_same_answers);
    tcase_add_test(t, test_scope_codes);
    tcase_add_test(t, test_purpose_codes);
    suite_add_tcase(s, t);

    t = tcase_create("genesis");
    tcase_set_timeout(t, 60);
    tcase_add_test(t, test_genesis_parse_fields);
    tcase_add_test(t, test_genesis_quorum);
    tcase_add_test(t, test_genesis_hash_is_canonical);
    tcase_add_test(t, test_genesis_save_load_round_trip);
    tcase_add_test(t, test_genesis_top_level_errors);
    tcase_add_test(t, test_genesis_member_errors);
    tcase_add_test(t, test_genesis_limits);
    tcase_add_test(t, test_genesis_institution_limit);
    tcase_add_test(t, test_commit_sighash_binds_every_input);
    suite_add_tcase(s, t);

    t = tcase_create("tx");
    tcase_set_timeout(t, 60);
    tcase_add_test(t, test_tx_round_trip_every_type);
    tcase_add_test(t, test_tx_fields_survive);
    tcase_add_test(t, test_tx_hash_and_sighash);
    tcase_add_test(t, test_tx_truncated_prefixes_refused);
    tcase_add_test(t, test_tx_garbage_refused);
    tcase_add_test(t, test_tx_oversized_refused);
    tcase_add_test(t, test_tx_unknown_fields_refused);
    tcase_add_test(t, test_tx_non_canonical_refused);
    tcase_add_test(t, test_tx_type_body_mismatch_refused);
    tcase_add_test(t, test_tx_field_lengths_refused);
    tcase_add_test(t, test_tx_code_lists_and_limits);
    tcase_add_test(t, test_tx_encode_refusals);
    tcase_add_test(t, test_tx_institution_rules);
    tcase_add_test(t, test_tx_size_limit);
    tcase_add_test(t, test_tx_check_rules);
    tcase_add_test(t, test_institution_sighash);
    suite_add_tcase(s, t);

    t = tcase_create("blocks");
    tcase_set_timeout(t, 60);
    tcase_add_test(t, test_header_round_trip_and_hash);
    tcase_add_test(t, test_header_decode_refusals);
    tcase_add_test(t, test_cert_codec);
    tcase_add_test(t, test_block_round_trip);
    tcase_add_test(t, test_block_add_tx_limits);
    tcase_add_test(t, test_block_encode_refusals);
    tcase_add_test(t, test_block_decode_refusals);
    tcase_add_test(t, test_tx_root);
    tcase_add_test(t, test_cert_verify);
    suite_add_tcase(s, t);
    return s;
}

int main(void)
{
    SRunner *sr = srunner_create(codec_suite());
    srunner_run_all(sr, CK_NORMAL);
    int failed = srunner_ntests_failed(sr);
    srunner_free(sr);
    return failed == 0 ? EXIT_SUCCESS : EXIT_FAILURE;
}
