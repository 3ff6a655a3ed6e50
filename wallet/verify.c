/* verify.c — checking a node's check answer against genesis alone.
 *
 * With proof=1 a node sends, beside its decision, the (patient, grantee)
 * grant list, a state proof of that list under the tip's state root, the
 * tip header and its commit certificate. A gateway holding only genesis
 * hands these to chain_check_verify, which checks 2f+1 validator
 * signatures, the header, the state proof, and recomputes the decision with
 * the same code the node used. This file decodes the answer's JSON (hex,
 * bounded), runs that, and also holds the node to what it claimed: an
 * answer whose decision or height differs from what its own proof shows is
 * a lie and fails, even though the recomputed decision could be used.
 */
#include <assert.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "wallet/wallet.h"

/* Decodes answer.proof[key] (lower-case hex, at most max bytes) into a
 * malloc'd buffer; an empty string is a valid 0-byte field. */
static int hex_field(uint8_t **out, size_t *len, char *err, const json_t *proof, const char *key,
                     size_t max)
{
    const char *s = json_string_value(json_object_get(proof, key));
    size_t n = s ? strlen(s) : 0;
    *out = NULL;
    *len = 0;
    if (!s || n % 2 != 0 || n / 2 > max) {
        snprintf(err, WALLET_ERR_LEN, "verification failed: proof.%s is not hex of at most %zu bytes",
                 key, max);
        return CHAIN_EDECODE;
    }
    *out = malloc(n / 2 + 1);
    if (!*out) {
        snprintf(err, WALLET_ERR_LEN, "out of memory");
        return CHAIN_ENOMEM;
    }
    if (n > 0 && chain_unhex(*out, n / 2, s)) {
        free(*out);
        *out = NULL;
        snprintf(err, WALLET_ERR_LEN, "verification failed: proof.%s is not lower-case hex", key);
        return CHAIN_EDECODE;
    }
    *len = n / 2;
    return 0;
}

static int decode_proof(chain_check_proof *p, char *err, const json_t *proof)
{
    const json_t *h = json_object_get(proof, "height");
    int rc;
    memset(p, 0, sizeof *p);
    if (!json_is_object(proof)) {
        snprintf(err, WALLET_ERR_LEN, "verification failed: the answer carries no proof");
        return CHAIN_EPROOF;
    }
    if (!json_is_integer(h) || json_integer_value(h) < 1) {
        snprintf(err, WALLET_ERR_LEN, "verification failed: proof.height is not a block height");
        return CHAIN_EDECODE;
    }
    p->height = (uint64_t)json_integer_value(h);
    rc = hex_field(&p->pair_list, &p->pair_list_len, err, proof, "pair_list",
                   WALLET_PROOF_FIELD_BYTES_MAX);
    if (!rc)
        rc = hex_field(&p->smt_proof, &p->smt_proof_len, err, proof, "smt_proof",
                       WALLET_PROOF_FIELD_BYTES_MAX);
    if (!rc)
        rc = hex_field(&p->inst, &p->inst_len, err, proof, "inst", WALLET_PROOF_FIELD_BYTES_MAX);
    if (!rc)
        rc = hex_field(&p->inst_proof, &p->inst_proof_len, err, proof, "inst_proof",
                       WALLET_PROOF_FIELD_BYTES_MAX);
    if (!rc)
        rc = hex_field(&p->header, &p->header_len, err, proof, "header", WALLET_PROOF_FIELD_BYTES_MAX);
    if (!rc)
        rc = hex_field(&p->cert, &p->cert_len, err, proof, "cert", WALLET_PROOF_FIELD_BYTES_MAX);
    return rc;
}

/* The node's claims must match what its proof shows. */
static int held_to_its_word(char *err, const json_t *answer, const chain_check_result *r,
                            uint64_t proof_height)
{
    const char *d = json_string_value(json_object_get(answer, "decision"));
    const char *mine = r->decision == CHAIN_PERMIT ? "permit" : "deny";
    if (proof_height != r->height) {
        snprintf(err, WALLET_ERR_LEN, "verification failed: proof.height %" PRIu64
                 " but the certified header is at %" PRIu64, proof_height, r->height);
        return CHAIN_EPROOF;
    }
    if (!d || strcmp(d, mine) != 0) {
        snprintf(err, WALLET_ERR_LEN, "verification failed: the node answered \"%.10s\" but its "
                 "proof gives %s (%s)", d ? d : "", mine, r->reason);
        return CHAIN_EPROOF;
    }
    return 0;
}

int wallet_check_verify(chain_check_result *out, char *err, const chain_genesis *g,
                        const json_t *answer, const chain_check_query *q, uint64_t min_height)
{
    chain_check_proof p;
    chain_check_result r;
    char why[160] = "";
    int rc;
    if (!json_is_object(answer)) {
        snprintf(err, WALLET_ERR_LEN, "verification failed: the answer is not a JSON object");
        return CHAIN_EDECODE;
    }
    rc = decode_proof(&p, err, json_object_get(answer, "proof"));
    if (!rc) {
        memset(&r, 0, sizeof r);
        rc = chain_check_verify(g, &r, why, sizeof why, q, &p, min_height);
        if (rc)
            snprintf(err, WALLET_ERR_LEN, "verification failed: %s", why[0] ? why : chain_strerror(rc));
    }
    if (!rc)
        rc = held_to_its_word(err, answer, &r, p.height);
    chain_check_proof_free(&p);
    if (rc)
        return rc;
    assert(r.height >= min_height);
    *out = r;
    return 0;
}
