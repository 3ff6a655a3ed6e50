/* proof.c — verifiable checks: proving a check at the node, verifying it
 * at the client ("libconsent").
 *
 * A check reads two state values, the (patient, grantee) pair list and the
 * grantee's registry record. The list's leaf in the state tree is
 * SHA-256("pair" || patient || grantee) holding SHA-256(list bytes), the
 * record's is SHA-256("inst" || grantee) holding SHA-256(record bytes), and
 * the tree's root is the state root of the tip header, which 2f+1 genesis
 * validators signed in the commit certificate. So six parts settle any
 * check: the list (empty when the pair has none) and its tree proof of
 * presence or absence, the record (empty when the grantee is not
 * registered) and its tree proof, the header and the certificate.
 *
 * The verifier trusts nothing but genesis: it checks the certificate over
 * the header, ties list and record to the header's state root through the
 * proofs for the leaves of the pair and grantee asked about, and then
 * recomputes the decision with chain__check_list and chain__check_grantee,
 * the very functions behind chain_check. A deny ("no grant", "revoked",
 * "expired", "not registered") is therefore as verifiable as a permit. Freshness is the caller's policy: min_height refuses an answer
 * read at an older tip.
 */
#include <assert.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "chain/chain.h"
#include "chain/chain_internal.h"

#define PROVE_TRIES 3   /* re-reads if a block commits while we read */

void chain_check_proof_free(chain_check_proof *p)
{
    if (p == NULL) return;
    free(p->pair_list);
    free(p->smt_proof);
    free(p->inst);
    free(p->inst_proof);
    free(p->header);
    free(p->cert);
    memset(p, 0, sizeof *p);
}

static void state_leaf(chain_hash *out, const uint8_t *k, size_t kl)
{
    int authenticated = chain__state_leaf_key(out, k, kl);
    assert(authenticated == 1);
    (void)authenticated;
}

static void pair_leaf(chain_hash *out, const chain_pubkey *patient, const chain_pubkey *grantee)
{
    uint8_t k[CHAIN__KEY_MAX];
    state_leaf(out, k, chain__key_pair(k, patient, grantee));
}

static void inst_leaf(chain_hash *out, const chain_pubkey *grantee)
{
    uint8_t k[CHAIN__KEY_MAX];
    state_leaf(out, k, chain__key_inst(k, grantee));
}

/* The tree proof for a leaf against root, encoded into a malloc'd *proof.
 * It is not verified here: every sibling in it comes from a page whose
 * slots were hashed back to the hash its parent names when it was read
 * (smt.c, page_decode), so it is right by construction, and the client
 * verifies it anyway. Verifying it again here was 14% of a proof=1 check's
 * node CPU at 10M grants (~50 SHA-256 for the two proofs). */
static int prove_leaf(chain_store *st, uint8_t **proof, size_t *proof_len, const chain_hash *root,
                      const chain_hash *leaf)
{
    chain__smt_backend be;
    chain__smt_proof *pf = malloc(sizeof *pf);
    if (pf == NULL) return CHAIN_ENOMEM;
    chain__store_smt_backend(st, &be);
    int rc = chain__smt_prove(&be, pf, root, leaf);
    if (rc == CHAIN_OK) {
        *proof = malloc(CHAIN_SMT_PROOF_BYTES_MAX);
        if (*proof == NULL) rc = CHAIN_ENOMEM;
    }
    if (rc == CHAIN_OK) rc = chain__smt_proof_encode(*proof, CHAIN_SMT_PROOF_BYTES_MAX, proof_len, pf);
    free(pf);
    return rc;
}

/* A state value (malloc'd), or 0 bytes and NULL when absent. */
static int read_value(chain_store *st, uint8_t **val, size_t *len, const uint8_t *k, size_t kl)
{
    int rc = chain__store_get(st, val, len, k, kl);
    if (rc != CHAIN_ENOTFOUND) return rc;
    *val = NULL;
    *len = 0;
    return CHAIN_OK;
}

void chain_check_tip_free(chain_check_tip *tip)
{
    if (tip == NULL) return;
    free(tip->header);
    free(tip->cert);
    memset(tip, 0, sizeof *tip);
}

/* The tip block's header and certificate, encoded; its state root must be
 * the one the store reports for the tip. */
int chain_check_tip_load(chain_store *st, chain_check_tip *tip)
{
    if (st == NULL || tip == NULL) return CHAIN_EINVAL;
    chain_check_tip_free(tip);
    uint64_t height = chain_store_height(st);
    if (height == 0) return CHAIN_ESTATE;
    chain_hash root;
    chain_store_state_root(st, &root);
    chain_block b;
    chain_block_init(&b);
    int rc = chain_store_get_block(st, height, &b);
    if (rc == CHAIN_OK && memcmp(b.hdr.state_root.b, root.b, CHAIN_HASH_LEN) != 0) rc = CHAIN_EIO;
    if (rc == CHAIN_OK && b.cert.n_sigs == 0) rc = CHAIN_EIO;   /* committed: has a cert */
    if (rc == CHAIN_OK) rc = chain_header_encode(&tip->header, &tip->header_len, &b.hdr);
    if (rc == CHAIN_OK) rc = chain_cert_encode(&tip->cert, &tip->cert_len, &b.cert);
    chain_block_free(&b);
    if (rc != CHAIN_OK) {
        chain_check_tip_free(tip);
        return rc;
    }
    tip->height = height;
    tip->state_root = root;
    return CHAIN_OK;
}

static uint8_t *dup_bytes(const uint8_t *b, size_t n)
{
    uint8_t *d = malloc(n ? n : 1);
    if (d != NULL) memcpy(d, b, n);
    return d;
}

static int prove_once(chain_store *st, chain_check_tip *tip, chain_check_proof *out,
                      const chain_pubkey *patient, const chain_pubkey *grantee)
{
    uint8_t k[CHAIN__KEY_MAX];
    size_t kl = chain__key_pair(k, patient, grantee);
    chain_hash root, leaf;
    out->height = chain_store_height(st);
    chain_store_state_root(st, &root);
    int rc = CHAIN_OK;
    if (tip->height != out->height || memcmp(tip->state_root.b, root.b, CHAIN_HASH_LEN) != 0)
        rc = chain_check_tip_load(st, tip);
    if (rc == CHAIN_OK && (tip->height != out->height || memcmp(tip->state_root.b, root.b, CHAIN_HASH_LEN) != 0))
        rc = CHAIN_EIO;   /* a commit in between: the caller reads again */
    if (rc == CHAIN_OK) rc = read_value(st, &out->pair_list, &out->pair_list_len, k, kl);
    pair_leaf(&leaf, patient, grantee);
    if (rc == CHAIN_OK)
        rc = prove_leaf(st, &out->smt_proof, &out->smt_proof_len, &root, &leaf);
    kl = chain__key_inst(k, grantee);
    if (rc == CHAIN_OK) rc = read_value(st, &out->inst, &out->inst_len, k, kl);
    inst_leaf(&leaf, grantee);
    if (rc == CHAIN_OK)
        rc = prove_leaf(st, &out->inst_proof, &out->inst_proof_len, &root, &leaf);
    if (rc == CHAIN_OK) {
        out->header = dup_bytes(tip->header, tip->header_len);
        out->cert = dup_bytes(tip->cert, tip->cert_len);
        out->header_len = tip->header_len;
        out->cert_len = tip->cert_len;
        if (out->header == NULL || out->cert == NULL) rc = CHAIN_ENOMEM;
    }
    return rc;
}

int chain_check_prove_cached(chain_store *st, chain_check_tip *tip, chain_check_proof *out,
                             const chain_pubkey *patient, const chain_pubkey *grantee)
{
    if (st == NULL || tip == NULL || out == NULL || patient == NULL || grantee == NULL) return CHAIN_EINVAL;
    memset(out, 0, sizeof *out);
    if (chain_store_height(st) == 0) return CHAIN_ESTATE;
    int rc = CHAIN_EIO;
    for (int i = 0; i < PROVE_TRIES; i++) {
        uint64_t before = chain_store_height(st);
        rc = prove_once(st, tip, out, patient, grantee);
        /* Every part must come from one tip; a commit in between (another
         * thread) spoils the set, so read it again. */
        if (rc == CHAIN_OK && chain_store_height(st) == before && out->height == before) break;
        chain_check_proof_free(out);
        if (rc == CHAIN_OK) rc = CHAIN_EIO;
    }
    if (rc != CHAIN_OK) chain_check_proof_free(out);
    assert(rc != CHAIN_OK || out->header != NULL);
    return rc;
}

int chain_check_prove(chain_store *st, chain_check_proof *out, const chain_pubkey *patient,
                      const chain_pubkey *grantee)
{
    chain_check_tip tip;
    memset(&tip, 0, sizeof tip);
    int rc = chain_check_prove_cached(st, &tip, out, patient, grantee);
    chain_check_tip_free(&tip);
    return rc;
}

/* ------------------------------------------------------------------ verify */

static int fail(char *why, size_t why_len, int rc, const char *fmt, ...)
{
    if (why != NULL && why_len > 0) {
        va_list ap;
        va_start(ap, fmt);
        vsnprintf(why, why_len, fmt, ap);
        va_end(ap);
    }
    return rc;
}

static int part_ok(const uint8_t *buf, size_t len, int may_be_empty)
{
    if (len > CHAIN_PROOF_PART_BYTES_MAX) return 0;
    if (len == 0) return may_be_empty;
    return buf != NULL;
}

/* The header and certificate: decoded, of this chain and validator set,
 * signed by a quorum, not older than min_height. */
static int verify_tip(const chain_genesis *g, chain_header *hdr, char *why, size_t why_len,
                      const chain_check_proof *p, uint64_t min_height)
{
    chain_cert cert;
    chain_hash vh;
    if (chain_header_decode(hdr, p->header, p->header_len) != CHAIN_OK)
        return fail(why, why_len, CHAIN_EDECODE, "header does not decode");
    if (chain_cert_decode(&cert, p->cert, p->cert_len) != CHAIN_OK)
        return fail(why, why_len, CHAIN_EDECODE, "certificate does not decode");
    if (strncmp(hdr->chain_id, g->chain_id, sizeof hdr->chain_id) != 0)
        return fail(why, why_len, CHAIN_EBLOCK, "header is of another chain");
    chain_genesis_valset_hash(g, &vh);
    if (memcmp(vh.b, hdr->valset_hash.b, CHAIN_HASH_LEN) != 0)
        return fail(why, why_len, CHAIN_EBLOCK, "header names another validator set");
    if (chain_cert_verify(&cert, g, hdr) != CHAIN_OK)
        return fail(why, why_len, CHAIN_ECERT,
                    "certificate is not %u distinct genesis validators signing this header",
                    chain_genesis_quorum(g));
    if (hdr->height != p->height)
        return fail(why, why_len, CHAIN_EBLOCK, "proof height %llu but header height %llu",
                    (unsigned long long)p->height, (unsigned long long)hdr->height);
    if (hdr->height < min_height)
        return fail(why, why_len, CHAIN_EBLOCK, "stale: height %llu is below the required %llu",
                    (unsigned long long)hdr->height, (unsigned long long)min_height);
    return CHAIN_OK;
}

/* Every record of the list must be a grant of the pair asked about. */
static int list_of_pair(const chain_check_query *q, const chain_check_proof *p)
{
    chain_grant_record *recs = NULL;
    uint32_t n = 0;
    if (chain__grants_decode(&recs, &n, p->pair_list, p->pair_list_len) != CHAIN_OK) return 0;
    int ok = n > 0;
    for (uint32_t i = 0; i < n && ok; i++) {
        ok = memcmp(recs[i].grant.patient.b, q->patient.b, CHAIN_KEY_LEN) == 0 &&
             memcmp(recs[i].grant.grantee.b, q->grantee.b, CHAIN_KEY_LEN) == 0;
    }
    free(recs);
    return ok;
}

/* val (len 0: absent) is the value of leaf under the header's state root. */
static int verify_leaf(const chain_header *hdr, const chain_hash *leaf, const uint8_t *val, size_t len,
                       const uint8_t *proof, size_t proof_len)
{
    chain__smt_proof *pf = malloc(sizeof *pf);
    if (pf == NULL) return CHAIN_ENOMEM;
    chain_hash vh;
    int rc = chain__smt_proof_decode(pf, proof, proof_len) == CHAIN_OK ? CHAIN_OK : CHAIN_EDECODE;
    if (len > 0) chain__state_leaf_val(&vh, val, len);
    if (rc == CHAIN_OK && chain__smt_verify(&hdr->state_root, leaf, len ? &vh : NULL, pf) != CHAIN_OK)
        rc = CHAIN_EPROOF;
    free(pf);
    return rc;
}

/* The list is the leaf of this pair, and the record the leaf of this
 * grantee, under the header's state root. */
static int verify_state(const chain_header *hdr, char *why, size_t why_len,
                        const chain_check_query *q, const chain_check_proof *p)
{
    chain_hash leaf;
    pair_leaf(&leaf, &q->patient, &q->grantee);
    int rc = verify_leaf(hdr, &leaf, p->pair_list, p->pair_list_len, p->smt_proof, p->smt_proof_len);
    if (rc == CHAIN_EDECODE) return fail(why, why_len, CHAIN_EPROOF, "state proof does not decode");
    if (rc == CHAIN_EPROOF)
        return fail(why, why_len, CHAIN_EPROOF,
                    "state proof does not lead from this patient/grantee list to the header's "
                    "state root");
    if (rc != CHAIN_OK) return rc;
    if (p->pair_list_len > 0 && !list_of_pair(q, p))
        return fail(why, why_len, CHAIN_EPROOF, "pair list holds grants of another patient/grantee");
    inst_leaf(&leaf, &q->grantee);
    rc = verify_leaf(hdr, &leaf, p->inst, p->inst_len, p->inst_proof, p->inst_proof_len);
    if (rc == CHAIN_EDECODE) return fail(why, why_len, CHAIN_EPROOF, "registry proof does not decode");
    if (rc == CHAIN_EPROOF)
        return fail(why, why_len, CHAIN_EPROOF,
                    "registry proof does not lead from this grantee's record to the header's state "
                    "root");
    return rc;
}

int chain_check_decide(chain_check_result *out, const chain_check_proof *p,
                       const chain_check_query *q)
{
    if (out == NULL || p == NULL || q == NULL || q->scope == NULL || q->purpose == NULL)
        return CHAIN_EINVAL;
    if (!chain_scope_valid(q->scope) || !chain_purpose_valid(q->purpose)) return CHAIN_ECODE;
    if (!part_ok(p->pair_list, p->pair_list_len, 1) || !part_ok(p->inst, p->inst_len, 1))
        return CHAIN_EINVAL;
    chain_check_result r;
    memset(&r, 0, sizeof r);
    if (chain__check_list(&r, p->pair_list, p->pair_list_len, q->scope, q->purpose, q->at_s) != CHAIN_OK)
        return CHAIN_EDECODE;
    if (chain__check_grantee(&r, &q->grantee, p->inst, p->inst_len) != CHAIN_OK) return CHAIN_EIO;
    r.height = p->height;
    *out = r;
    return CHAIN_OK;
}

int chain_check_verify(const chain_genesis *g, chain_check_result *out, char *why, size_t why_len,
                       const chain_check_query *q, const chain_check_proof *p,
                       uint64_t min_height)
{
    if (g == NULL || out == NULL || q == NULL || p == NULL || q->scope == NULL ||
        q->purpose == NULL)
        return fail(why, why_len, CHAIN_EINVAL, "missing argument");
    if (!chain_scope_valid(q->scope) || !chain_purpose_valid(q->purpose))
        return fail(why, why_len, CHAIN_ECODE, "unknown scope or purpose code");
    if (!part_ok(p->header, p->header_len, 0) || !part_ok(p->cert, p->cert_len, 0) ||
        !part_ok(p->smt_proof, p->smt_proof_len, 0) || !part_ok(p->pair_list, p->pair_list_len, 1) ||
        !part_ok(p->inst_proof, p->inst_proof_len, 0) || !part_ok(p->inst, p->inst_len, 1))
        return fail(why, why_len, CHAIN_EDECODE, "a proof part is missing or over %u bytes",
                    CHAIN_PROOF_PART_BYTES_MAX);
    chain_header hdr;
    int rc = verify_tip(g, &hdr, why, why_len, p, min_height);
    if (rc == CHAIN_OK) rc = verify_state(&hdr, why, why_len, q, p);
    if (rc != CHAIN_OK) return rc;
    chain_check_result r;
    rc = chain_check_decide(&r, p, q);
    if (rc == CHAIN_EDECODE) return fail(why, why_len, CHAIN_EPROOF, "pair list does not decode");
    if (rc != CHAIN_OK)
        return fail(why, why_len, CHAIN_EPROOF, "registry record does not decode or names another key");
    r.height = hdr.height;
    *out = r;
    if (why != NULL && why_len > 0) snprintf(why, why_len, "%s", r.reason);
    return CHAIN_OK;
}
