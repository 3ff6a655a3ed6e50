/* block.c — block headers, commit certificates, blocks and the tx root.
 *
 * Codecs use protobuf-c (proto/block.proto) with the same closed-schema
 * rules as transactions: bounded input, no unknown fields, canonical bytes
 * only (the decoded message must re-encode to the input), every hash and key
 * exactly 32 bytes, every signature 64. A header's hash is SHA-256 of its
 * canonical encoding, so the hash a validator signs is a function of the
 * header fields alone.
 *
 * Transaction root: a binary Merkle tree over the transactions in block
 * order. Leaf = SHA-256(0x00 || SHA-256(tx bytes)); inner node =
 * SHA-256(0x01 || left || right); at each level an odd last node is promoted
 * unchanged to the next level (no duplication, so no CVE-2012-2459-style
 * mutated blocks with the same root). The prefixes keep a leaf from being
 * read as an inner node. An empty block's root is 32 zero bytes.
 */
#include <assert.h>
#include <stdlib.h>
#include <string.h>

#include "chain/chain.h"
#include "chain/chain_internal.h"
#include "proto/block.pb-c.h"

#define HEADER_BYTES_MAX 512
#define CERT_BYTES_MAX (64 + CHAIN_VALIDATORS_MAX * (CHAIN_KEY_LEN + CHAIN_SIG_LEN + 8))

static ProtobufCBinaryData bin(const uint8_t *p, size_t n)
{
    ProtobufCBinaryData d = {n, (uint8_t *)p};
    return d;
}

static int copy_bytes(uint8_t *out, size_t want, ProtobufCBinaryData d)
{
    if (d.len != want) return CHAIN_EBOUNDS;
    memcpy(out, d.data, want);
    return CHAIN_OK;
}

/* ------------------------------------------------------------ header */

static int header_valid(const chain_header *h)
{
    if (strnlen(h->chain_id, sizeof h->chain_id) == sizeof h->chain_id) return CHAIN_EBOUNDS;
    return chain__id_valid(h->chain_id) ? CHAIN_OK : CHAIN_EBOUNDS;
}

static void header_to_pb(Consent__BlockHeader *m, const chain_header *h)
{
    consent__block_header__init(m);
    m->chain_id = (char *)h->chain_id;
    m->height = h->height;
    m->prev_hash = bin(h->prev_hash.b, CHAIN_HASH_LEN);
    m->time_ms = h->time_ms;
    m->proposer = bin(h->proposer.b, CHAIN_KEY_LEN);
    m->tx_root = bin(h->tx_root.b, CHAIN_HASH_LEN);
    m->state_root = bin(h->state_root.b, CHAIN_HASH_LEN);
    m->validator_set_hash = bin(h->valset_hash.b, CHAIN_HASH_LEN);
    m->view = h->view;
}

static int header_from_pb(chain_header *h, const Consent__BlockHeader *m)
{
    int rc;
    if (m->base.n_unknown_fields) return CHAIN_ENONCANON;
    size_t idlen = strnlen(m->chain_id, CHAIN_ID_LEN_MAX + 1);
    if (idlen > CHAIN_ID_LEN_MAX) return CHAIN_EBOUNDS;
    memcpy(h->chain_id, m->chain_id, idlen + 1);
    h->height = m->height;
    h->time_ms = m->time_ms;
    h->view = m->view;
    if ((rc = copy_bytes(h->prev_hash.b, CHAIN_HASH_LEN, m->prev_hash)) != 0) return rc;
    if ((rc = copy_bytes(h->proposer.b, CHAIN_KEY_LEN, m->proposer)) != 0) return rc;
    if ((rc = copy_bytes(h->tx_root.b, CHAIN_HASH_LEN, m->tx_root)) != 0) return rc;
    if ((rc = copy_bytes(h->state_root.b, CHAIN_HASH_LEN, m->state_root)) != 0) return rc;
    if ((rc = copy_bytes(h->valset_hash.b, CHAIN_HASH_LEN, m->validator_set_hash)) != 0) return rc;
    return header_valid(h);
}

void chain_header_hash(const chain_header *h, chain_hash *out)
{
    Consent__BlockHeader m;
    uint8_t buf[HEADER_BYTES_MAX];
    assert(h != NULL && out != NULL);
    assert(strnlen(h->chain_id, sizeof h->chain_id) < sizeof h->chain_id);
    header_to_pb(&m, h);
    size_t n = consent__block_header__get_packed_size(&m);
    assert(n <= sizeof buf);
    size_t w = consent__block_header__pack(&m, buf);
    assert(w == n);
    chain_sha256(out, buf, w);
}

/* Allocates a buffer of the packed size and packs msg into it. */
static int pack_alloc(uint8_t **out, size_t *len_out, const ProtobufCMessage *msg, size_t max)
{
    size_t n = protobuf_c_message_get_packed_size(msg);
    if (n > max) return CHAIN_EBOUNDS;
    uint8_t *buf = malloc(n ? n : 1);
    if (buf == NULL) return CHAIN_ENOMEM;
    size_t w = protobuf_c_message_pack(msg, buf);
    assert(w == n);
    *out = buf;
    *len_out = w;
    return CHAIN_OK;
}

/* The closed-schema rule: decoded bytes must re-encode to exactly the input. */
static int canonical(const ProtobufCMessage *msg, const uint8_t *buf, size_t len)
{
    uint8_t *again = NULL;
    size_t n = 0;
    if (protobuf_c_message_get_packed_size(msg) != len) return CHAIN_ENONCANON;
    int rc = pack_alloc(&again, &n, msg, len);
    if (rc != CHAIN_OK) return rc;
    rc = n == len && memcmp(again, buf, len) == 0 ? CHAIN_OK : CHAIN_ENONCANON;
    free(again);
    return rc;
}

int chain_header_encode(uint8_t **out, size_t *len_out, const chain_header *h)
{
    Consent__BlockHeader m;
    if (out == NULL || len_out == NULL || h == NULL) return CHAIN_EINVAL;
    int rc = header_valid(h);
    if (rc != CHAIN_OK) return rc;
    header_to_pb(&m, h);
    return pack_alloc(out, len_out, &m.base, HEADER_BYTES_MAX);
}

int chain_header_decode(chain_header *out, const uint8_t *buf, size_t len)
{
    static const uint8_t empty[1] = {0};
    chain_header h;
    if (out == NULL || (buf == NULL && len != 0)) return CHAIN_EINVAL;
    if (len > HEADER_BYTES_MAX) return CHAIN_EBOUNDS;
    Consent__BlockHeader *m = consent__block_header__unpack(NULL, len, len ? buf : empty);
    if (m == NULL) return CHAIN_EDECODE;
    int rc = header_from_pb(&h, m);
    if (rc == CHAIN_OK) rc = canonical(&m->base, buf, len);
    consent__block_header__free_unpacked(m, NULL);
    if (rc == CHAIN_OK) *out = h;
    return rc;
}

/* ------------------------------------------------------------ cert */

typedef struct {
    Consent__CommitCert cert;
    Consent__CommitSig sigs[CHAIN_VALIDATORS_MAX];
    Consent__CommitSig *sigp[CHAIN_VALIDATORS_MAX];
} cert_pb;

static void cert_to_pb(cert_pb *pb, const chain_cert *c)
{
    assert(c->n_sigs <= CHAIN_VALIDATORS_MAX);
    consent__commit_cert__init(&pb->cert);
    pb->cert.view = c->view;
    pb->cert.height = c->height;
    pb->cert.block_hash = bin(c->block_hash.b, CHAIN_HASH_LEN);
    for (uint32_t i = 0; i < c->n_sigs; i++) {
        consent__commit_sig__init(&pb->sigs[i]);
        pb->sigs[i].validator = bin(c->sigs[i].validator.b, CHAIN_KEY_LEN);
        pb->sigs[i].signature = bin(c->sigs[i].sig.b, CHAIN_SIG_LEN);
        pb->sigp[i] = &pb->sigs[i];
    }
    pb->cert.n_sigs = c->n_sigs;
    pb->cert.sigs = c->n_sigs ? pb->sigp : NULL;
}

static int cert_from_pb(chain_cert *c, const Consent__CommitCert *m)
{
    int rc;
    if (m->base.n_unknown_fields) return CHAIN_ENONCANON;
    if (m->n_sigs > CHAIN_VALIDATORS_MAX) return CHAIN_EBOUNDS;
    c->view = m->view;
    c->height = m->height;
    if ((rc = copy_bytes(c->block_hash.b, CHAIN_HASH_LEN, m->block_hash)) != 0) return rc;
    c->n_sigs = (uint32_t)m->n_sigs;
    for (size_t i = 0; i < m->n_sigs; i++) {
        const Consent__CommitSig *s = m->sigs[i];
        if (s->base.n_unknown_fields) return CHAIN_ENONCANON;
        if ((rc = copy_bytes(c->sigs[i].validator.b, CHAIN_KEY_LEN, s->validator)) != 0) return rc;
        if ((rc = copy_bytes(c->sigs[i].sig.b, CHAIN_SIG_LEN, s->signature)) != 0) return rc;
    }
    return CHAIN_OK;
}

int chain_cert_encode(uint8_t **out, size_t *len_out, const chain_cert *c)
{
    if (out == NULL || len_out == NULL || c == NULL) return CHAIN_EINVAL;
    if (c->n_sigs > CHAIN_VALIDATORS_MAX) return CHAIN_EBOUNDS;
    cert_pb *pb = malloc(sizeof *pb);
    if (pb == NULL) return CHAIN_ENOMEM;
    cert_to_pb(pb, c);
    int rc = pack_alloc(out, len_out, &pb->cert.base, CERT_BYTES_MAX);
    free(pb);
    return rc;
}

int chain_cert_decode(chain_cert *out, const uint8_t *buf, size_t len)
{
    static const uint8_t empty[1] = {0};
    if (out == NULL || (buf == NULL && len != 0)) return CHAIN_EINVAL;
    if (len > CERT_BYTES_MAX) return CHAIN_EBOUNDS;
    Consent__CommitCert *m = consent__commit_cert__unpack(NULL, len, len ? buf : empty);
    if (m == NULL) return CHAIN_EDECODE;
    chain_cert *c = calloc(1, sizeof *c);
    int rc = c == NULL ? CHAIN_ENOMEM : cert_from_pb(c, m);
    if (rc == CHAIN_OK) rc = canonical(&m->base, buf, len);
    consent__commit_cert__free_unpacked(m, NULL);
    if (rc == CHAIN_OK) *out = *c;
    free(c);
    return rc;
}

int chain_cert_verify(const chain_cert *cert, const chain_genesis *g, const chain_header *hdr)
{
    chain_hash hh, msg;
    if (cert == NULL || g == NULL || hdr == NULL) return CHAIN_EINVAL;
    if (cert->n_sigs > CHAIN_VALIDATORS_MAX) return CHAIN_ECERT;
    if (strncmp(hdr->chain_id, g->chain_id, sizeof hdr->chain_id) != 0) return CHAIN_ECERT;
    if (cert->height != hdr->height) return CHAIN_ECERT;
    chain_header_hash(hdr, &hh);
    if (memcmp(hh.b, cert->block_hash.b, CHAIN_HASH_LEN) != 0) return CHAIN_ECERT;
    chain_commit_sighash(&msg, g->chain_id, cert->view, cert->height, &cert->block_hash);
    /* Count each genesis validator once; unknown signers, repeats and bad
     * signatures add nothing (they do not void the rest of the cert). */
    assert(g->n_validators <= 64);
    uint64_t seen = 0;
    uint32_t count = 0, quorum = chain_genesis_quorum(g);
    for (uint32_t i = 0; i < cert->n_sigs && count < quorum; i++) {
        int idx = chain_genesis_validator_index(g, &cert->sigs[i].validator);
        if (idx < 0 || (seen & (1ull << idx))) continue;
        if (chain_verify_cached(&cert->sigs[i].validator, &cert->sigs[i].sig, &msg) != CHAIN_OK) continue;
        seen |= 1ull << idx;
        count++;
    }
    assert(count <= g->n_validators);
    return count >= quorum ? CHAIN_OK : CHAIN_ECERT;
}

/* ------------------------------------------------------------ tx root */

static void merkle_leaf(chain_hash *out, const uint8_t *tx, size_t len)
{
    uint8_t buf[1 + CHAIN_HASH_LEN];
    chain_hash h;
    chain_tx_hash(&h, tx, len);
    buf[0] = 0x00;
    memcpy(buf + 1, h.b, CHAIN_HASH_LEN);
    chain_sha256(out, buf, sizeof buf);
}

static void merkle_inner(chain_hash *out, const chain_hash *l, const chain_hash *r)
{
    uint8_t buf[1 + 2 * CHAIN_HASH_LEN];
    buf[0] = 0x01;
    memcpy(buf + 1, l->b, CHAIN_HASH_LEN);
    memcpy(buf + 1 + CHAIN_HASH_LEN, r->b, CHAIN_HASH_LEN);
    chain_sha256(out, buf, sizeof buf);
}

/* Streams the leaves through a stack of perfect subtrees (one per bit of
 * the count, so at most 64 entries and no allocation), then folds the stack
 * from the right. Folding right-to-left is the same as promoting the odd
 * last node level by level. */
void chain_tx_root(chain_hash *out, const chain_block *b)
{
    chain_hash stack[64];
    unsigned level[64];
    size_t top = 0;
    assert(out != NULL && b != NULL);
    if (b->n_txs == 0) {
        memset(out->b, 0, CHAIN_HASH_LEN);
        return;
    }
    for (uint32_t i = 0; i < b->n_txs; i++) {
        assert(top < 64);
        merkle_leaf(&stack[top], b->txs[i], b->tx_lens[i]);
        level[top++] = 0;
        while (top >= 2 && level[top - 1] == level[top - 2]) {
            merkle_inner(&stack[top - 2], &stack[top - 2], &stack[top - 1]);
            level[top - 2]++;
            top--;
        }
    }
    chain_hash acc = stack[top - 1];
    for (size_t i = top - 1; i-- > 0;) merkle_inner(&acc, &stack[i], &acc);
    *out = acc;
}

/* ------------------------------------------------------------ block */

void chain_block_init(chain_block *b)
{
    assert(b != NULL);
    memset(b, 0, sizeof *b);
}

void chain_block_free(chain_block *b)
{
    if (b == NULL) return;
    for (uint32_t i = 0; i < b->n_txs; i++) free(b->txs[i]);
    free(b->txs);
    free(b->tx_lens);
    b->txs = NULL;
    b->tx_lens = NULL;
    b->n_txs = 0;
}

/* Arrays grow to the next power of two, so the capacity follows from n_txs
 * and the block needs no capacity field. */
static int block_reserve(chain_block *b)
{
    uint32_t n = b->n_txs;
    int full = b->txs == NULL || (n >= 8 && (n & (n - 1)) == 0);
    if (!full) return CHAIN_OK;
    size_t cap = n < 8 ? 8 : (size_t)n * 2;
    uint8_t **txs = realloc(b->txs, cap * sizeof *txs);
    if (txs == NULL) return CHAIN_ENOMEM;
    b->txs = txs;
    size_t *lens = realloc(b->tx_lens, cap * sizeof *lens);
    if (lens == NULL) return CHAIN_ENOMEM;
    b->tx_lens = lens;
    return CHAIN_OK;
}

int chain_block_add_tx(chain_block *b, const uint8_t *tx, size_t len)
{
    if (b == NULL || (tx == NULL && len != 0)) return CHAIN_EINVAL;
    if (len == 0 || len > CHAIN_TX_BYTES_MAX) return CHAIN_EBOUNDS;
    if (b->n_txs >= CHAIN_BLOCK_TXS_MAX) return CHAIN_EBOUNDS;
    int rc = block_reserve(b);
    if (rc != CHAIN_OK) return rc;
    uint8_t *copy = malloc(len);
    if (copy == NULL) return CHAIN_ENOMEM;
    memcpy(copy, tx, len);
    b->txs[b->n_txs] = copy;
    b->tx_lens[b->n_txs] = len;
    b->n_txs++;
    return CHAIN_OK;
}

int chain_block_encode(uint8_t **out, size_t *len_out, const chain_block *b)
{
    Consent__Block m;
    Consent__BlockHeader hm;
    if (out == NULL || len_out == NULL || b == NULL) return CHAIN_EINVAL;
    if (b->n_txs > CHAIN_BLOCK_TXS_MAX || b->cert.n_sigs > CHAIN_VALIDATORS_MAX) return CHAIN_EBOUNDS;
    int rc = header_valid(&b->hdr);
    if (rc != CHAIN_OK) return rc;
    for (uint32_t i = 0; i < b->n_txs; i++) {
        if (b->tx_lens[i] == 0 || b->tx_lens[i] > CHAIN_TX_BYTES_MAX) return CHAIN_EBOUNDS;
    }
    ProtobufCBinaryData *txs = calloc(b->n_txs ? b->n_txs : 1, sizeof *txs);
    cert_pb *cpb = malloc(sizeof *cpb);
    rc = txs == NULL || cpb == NULL ? CHAIN_ENOMEM : CHAIN_OK;
    if (rc == CHAIN_OK) {
        consent__block__init(&m);
        header_to_pb(&hm, &b->hdr);
        m.header = &hm;
        for (uint32_t i = 0; i < b->n_txs; i++) txs[i] = bin(b->txs[i], b->tx_lens[i]);
        m.n_txs = b->n_txs;
        m.txs = b->n_txs ? txs : NULL;
        /* An uncommitted block carries no cert at all (not an empty one). */
        cert_to_pb(cpb, &b->cert);
        m.cert = b->cert.n_sigs ? &cpb->cert : NULL;
        rc = pack_alloc(out, len_out, &m.base, CHAIN_BLOCK_BYTES_MAX);
    }
    free(txs);
    free(cpb);
    return rc;
}

static int block_from_pb(chain_block *b, const Consent__Block *m)
{
    int rc;
    if (m->base.n_unknown_fields) return CHAIN_ENONCANON;
    if (m->header == NULL) return CHAIN_EDECODE;
    if ((rc = header_from_pb(&b->hdr, m->header)) != 0) return rc;
    if (m->n_txs > CHAIN_BLOCK_TXS_MAX) return CHAIN_EBOUNDS;
    if (m->cert != NULL) {
        if ((rc = cert_from_pb(&b->cert, m->cert)) != 0) return rc;
        if (b->cert.n_sigs == 0) return CHAIN_ENONCANON;   /* empty cert: omit it */
    }
    for (size_t i = 0; i < m->n_txs; i++) {
        if ((rc = chain_block_add_tx(b, m->txs[i].data, m->txs[i].len)) != 0) return rc;
    }
    return CHAIN_OK;
}

int chain_block_decode(chain_block *out, const uint8_t *buf, size_t len)
{
    static const uint8_t empty[1] = {0};
    chain_block b;
    if (out == NULL || (buf == NULL && len != 0)) return CHAIN_EINVAL;
    if (len > CHAIN_BLOCK_BYTES_MAX) return CHAIN_EBOUNDS;
    Consent__Block *m = consent__block__unpack(NULL, len, len ? buf : empty);
    if (m == NULL) return CHAIN_EDECODE;
    chain_block_init(&b);
    int rc = block_from_pb(&b, m);
    if (rc == CHAIN_OK) rc = canonical(&m->base, buf, len);
    consent__block__free_unpacked(m, NULL);
    if (rc != CHAIN_OK) {
        chain_block_free(&b);
        return rc;
    }
    *out = b;
    return CHAIN_OK;
}
