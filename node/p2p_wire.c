/* p2p_wire.c — the peer wire format: frames of P2pEnvelope, the Hello
 * signature message, and the bounded set of recently seen tx hashes.
 *
 * Pure code (no sockets, no TLS) so it can be tested on its own. Decoding
 * never trusts a peer: every size is checked against the limits in p2p.h,
 * and a decoded message only points into the unpacked protobuf-c message,
 * which node__p2p_msg_free releases.
 */
#include <assert.h>
#include <stdlib.h>
#include <string.h>

#include "node/p2p.h"
#include "proto/p2p.pb-c.h"

/* ------------------------------------------------------------------ decode */
static int decode_hello(node__p2p_msg *out, const Consent__P2pHello *h) {
    if (h == NULL || h->chain_id == NULL) return NODE_EINVAL;
    size_t idlen = strlen(h->chain_id);
    if (idlen == 0 || idlen > CHAIN_ID_LEN_MAX) return NODE_EINVAL;
    if (h->pubkey.len != CHAIN_KEY_LEN || h->signature.len != CHAIN_SIG_LEN) return NODE_EINVAL;
    if (h->role != CONSENT__P2P_ROLE__P2P_ROLE_VALIDATOR &&
        h->role != CONSENT__P2P_ROLE__P2P_ROLE_FULL_NODE)
        return NODE_EINVAL;
    memcpy(out->hello.chain_id, h->chain_id, idlen + 1);
    out->hello.role = h->role == CONSENT__P2P_ROLE__P2P_ROLE_VALIDATOR ? NODE_P2P_ROLE_VALIDATOR
                                                                      : NODE_P2P_ROLE_FULL_NODE;
    memcpy(out->hello.key.b, h->pubkey.data, CHAIN_KEY_LEN);
    memcpy(out->hello.sig.b, h->signature.data, CHAIN_SIG_LEN);
    return 0;
}

static int decode_response(node__p2p_msg *out, const Consent__P2pBlockResponse *r) {
    if (r == NULL || r->n_blocks > NODE_P2P_SYNC_BLOCKS_MAX) return NODE_EINVAL;
    out->height = r->from_height;
    out->n_blocks = r->n_blocks;
    if (r->n_blocks == 0) return 0;
    /* One allocation holds both arrays: pointers first, then lengths. */
    void *mem = calloc(r->n_blocks, sizeof(uint8_t *) + sizeof(size_t));
    if (mem == NULL) return NODE_ENOMEM;
    const uint8_t **ptrs = mem;
    size_t *lens = (size_t *)(ptrs + r->n_blocks);
    for (size_t i = 0; i < r->n_blocks; i++) {
        if (r->blocks[i].len == 0 || r->blocks[i].len > CHAIN_BLOCK_BYTES_MAX) {
            free(mem);
            return NODE_EINVAL;
        }
        ptrs[i] = r->blocks[i].data;
        lens[i] = r->blocks[i].len;
    }
    out->arrays = mem;
    out->blocks = ptrs;
    out->block_lens = lens;
    return 0;
}

static int decode_body(node__p2p_msg *out, const Consent__P2pEnvelope *e) {
    switch (e->msg_case) {
    case CONSENT__P2P_ENVELOPE__MSG_HELLO:
        out->type = NODE__P2P_MSG_HELLO;
        return decode_hello(out, e->hello);
    case CONSENT__P2P_ENVELOPE__MSG_CONSENSUS:
        out->type = NODE__P2P_MSG_CONSENSUS;
        out->data = e->consensus.data;
        out->len = e->consensus.len;
        return out->len == 0 || out->len > CONS_MSG_BYTES_MAX ? NODE_EINVAL : 0;
    case CONSENT__P2P_ENVELOPE__MSG_TX:
        out->type = NODE__P2P_MSG_TX;
        out->data = e->tx.data;
        out->len = e->tx.len;
        return out->len == 0 || out->len > CHAIN_TX_BYTES_MAX ? NODE_EINVAL : 0;
    case CONSENT__P2P_ENVELOPE__MSG_BLOCK_REQUEST:
        out->type = NODE__P2P_MSG_BLOCK_REQUEST;
        if (e->block_request == NULL) return NODE_EINVAL;
        out->height = e->block_request->from_height;
        out->count = e->block_request->count;
        return out->height == 0 || out->count == 0 || out->count > NODE_P2P_SYNC_BLOCKS_MAX
                   ? NODE_EINVAL : 0;
    case CONSENT__P2P_ENVELOPE__MSG_BLOCK_RESPONSE:
        out->type = NODE__P2P_MSG_BLOCK_RESPONSE;
        return decode_response(out, e->block_response);
    case CONSENT__P2P_ENVELOPE__MSG_STATUS:
        out->type = NODE__P2P_MSG_STATUS;
        if (e->status == NULL) return NODE_EINVAL;
        out->height = e->status->height;
        return 0;
    default:
        return NODE_EINVAL;
    }
}

int node__p2p_decode(node__p2p_msg *out, const uint8_t *buf, size_t len) {
    assert(out != NULL);
    memset(out, 0, sizeof *out);
    if (buf == NULL || len == 0 || len > NODE_P2P_FRAME_BYTES_MAX) return NODE_EINVAL;
    Consent__P2pEnvelope *e = consent__p2p_envelope__unpack(NULL, len, buf);
    if (e == NULL) return NODE_EINVAL;
    out->pb = e;
    int rc = decode_body(out, e);
    if (rc != 0) node__p2p_msg_free(out);
    return rc;
}

void node__p2p_msg_free(node__p2p_msg *m) {
    if (m == NULL) return;
    if (m->pb != NULL) consent__p2p_envelope__free_unpacked(m->pb, NULL);
    free(m->arrays);
    memset(m, 0, sizeof *m);
}

/* ------------------------------------------------------------------ encode */
/* Packs e behind a 4-byte big-endian length. */
static int enc_frame(uint8_t **out, size_t *len, const Consent__P2pEnvelope *e) {
    size_t n = consent__p2p_envelope__get_packed_size(e);
    if (n == 0 || n > NODE_P2P_FRAME_BYTES_MAX) return NODE_EINVAL;
    uint8_t *buf = malloc(n + 4);
    if (buf == NULL) return NODE_ENOMEM;
    buf[0] = (uint8_t)(n >> 24);
    buf[1] = (uint8_t)(n >> 16);
    buf[2] = (uint8_t)(n >> 8);
    buf[3] = (uint8_t)n;
    size_t packed = consent__p2p_envelope__pack(e, buf + 4);
    assert(packed == n);
    *out = buf;
    *len = n + 4;
    return 0;
}

int node__p2p_enc_hello(uint8_t **out, size_t *len, const node_p2p_hello *h) {
    Consent__P2pHello m = CONSENT__P2P_HELLO__INIT;
    m.chain_id = (char *)h->chain_id;
    m.role = h->role == NODE_P2P_ROLE_VALIDATOR ? CONSENT__P2P_ROLE__P2P_ROLE_VALIDATOR
                                                : CONSENT__P2P_ROLE__P2P_ROLE_FULL_NODE;
    m.pubkey.data = (uint8_t *)h->key.b;
    m.pubkey.len = CHAIN_KEY_LEN;
    m.signature.data = (uint8_t *)h->sig.b;
    m.signature.len = CHAIN_SIG_LEN;
    Consent__P2pEnvelope e = CONSENT__P2P_ENVELOPE__INIT;
    e.msg_case = CONSENT__P2P_ENVELOPE__MSG_HELLO;
    e.hello = &m;
    return enc_frame(out, len, &e);
}

int node__p2p_enc_bytes(uint8_t **out, size_t *len, node__p2p_msg_type type,
                        const uint8_t *data, size_t n) {
    Consent__P2pEnvelope e = CONSENT__P2P_ENVELOPE__INIT;
    ProtobufCBinaryData b = {n, (uint8_t *)data};
    if (n == 0) return NODE_EINVAL;
    if (type == NODE__P2P_MSG_CONSENSUS) {
        if (n > CONS_MSG_BYTES_MAX) return NODE_EINVAL;
        e.msg_case = CONSENT__P2P_ENVELOPE__MSG_CONSENSUS;
        e.consensus = b;
    } else if (type == NODE__P2P_MSG_TX) {
        if (n > CHAIN_TX_BYTES_MAX) return NODE_EINVAL;
        e.msg_case = CONSENT__P2P_ENVELOPE__MSG_TX;
        e.tx = b;
    } else {
        return NODE_EINVAL;
    }
    return enc_frame(out, len, &e);
}

int node__p2p_enc_request(uint8_t **out, size_t *len, uint64_t from, uint32_t count) {
    Consent__P2pBlockRequest m = CONSENT__P2P_BLOCK_REQUEST__INIT;
    m.from_height = from;
    m.count = count;
    Consent__P2pEnvelope e = CONSENT__P2P_ENVELOPE__INIT;
    e.msg_case = CONSENT__P2P_ENVELOPE__MSG_BLOCK_REQUEST;
    e.block_request = &m;
    return enc_frame(out, len, &e);
}

int node__p2p_enc_response(uint8_t **out, size_t *len, uint64_t from,
                           const uint8_t *const *blocks, const size_t *lens, size_t n) {
    if (n > NODE_P2P_SYNC_BLOCKS_MAX) return NODE_EINVAL;
    ProtobufCBinaryData items[NODE_P2P_SYNC_BLOCKS_MAX];
    for (size_t i = 0; i < n; i++) {
        items[i].data = (uint8_t *)blocks[i];
        items[i].len = lens[i];
    }
    Consent__P2pBlockResponse m = CONSENT__P2P_BLOCK_RESPONSE__INIT;
    m.from_height = from;
    m.n_blocks = n;
    m.blocks = n ? items : NULL;
    Consent__P2pEnvelope e = CONSENT__P2P_ENVELOPE__INIT;
    e.msg_case = CONSENT__P2P_ENVELOPE__MSG_BLOCK_RESPONSE;
    e.block_response = &m;
    return enc_frame(out, len, &e);
}

int node__p2p_enc_status(uint8_t **out, size_t *len, uint64_t height) {
    Consent__P2pStatus m = CONSENT__P2P_STATUS__INIT;
    m.height = height;
    Consent__P2pEnvelope e = CONSENT__P2P_ENVELOPE__INIT;
    e.msg_case = CONSENT__P2P_ENVELOPE__MSG_STATUS;
    e.status = &m;
    return enc_frame(out, len, &e);
}

/* The chain id is the only variable-length part and the exporter that
 * follows it has a fixed length, so the concatenation is unambiguous. */
void node__p2p_hello_sighash(chain_hash *out, const char *chain_id,
                             const uint8_t exporter[NODE_P2P_EXPORTER_LEN], int dialer) {
    assert(strlen(chain_id) <= CHAIN_ID_LEN_MAX);
    uint8_t buf[sizeof(NODE_P2P_HELLO_DOMAIN) + CHAIN_ID_LEN_MAX + NODE_P2P_EXPORTER_LEN + 1];
    size_t n = 0;
    memcpy(buf, NODE_P2P_HELLO_DOMAIN, sizeof(NODE_P2P_HELLO_DOMAIN) - 1);
    n += sizeof(NODE_P2P_HELLO_DOMAIN) - 1;
    size_t idlen = strlen(chain_id);
    memcpy(buf + n, chain_id, idlen);
    n += idlen;
    memcpy(buf + n, exporter, NODE_P2P_EXPORTER_LEN);
    n += NODE_P2P_EXPORTER_LEN;
    buf[n++] = dialer ? 'C' : 'S';
    assert(n <= sizeof buf);
    chain_sha256(out, buf, n);
}

/* ------------------------------------------------------------------ seen set */
/* Open addressing at load <= 1/2. Hashes come from peers, so a peer could
 * grind colliding prefixes; probing is still bounded by the table size. */
#define SEEN_SLOTS (2u * NODE_P2P_SEEN_MAX)

static uint32_t seen_index(const chain_hash *h) {
    return ((uint32_t)h->b[0] | (uint32_t)h->b[1] << 8 | (uint32_t)h->b[2] << 16 |
            (uint32_t)h->b[3] << 24) % SEEN_SLOTS;
}

static int gen_has(const node__p2p_seen *s, int g, const chain_hash *h) {
    uint32_t i = seen_index(h);
    for (uint32_t probes = 0; probes < SEEN_SLOTS && s->used[g][i]; probes++) {
        if (memcmp(s->slots[g][i].b, h->b, CHAIN_HASH_LEN) == 0) return 1;
        i = (i + 1) % SEEN_SLOTS;
    }
    return 0;
}

int node__p2p_seen_init(node__p2p_seen *s) {
    memset(s, 0, sizeof *s);
    for (int g = 0; g < 2; g++) {
        s->slots[g] = calloc(SEEN_SLOTS, sizeof(chain_hash));
        s->used[g] = calloc(SEEN_SLOTS, 1);
        if (s->slots[g] == NULL || s->used[g] == NULL) {
            node__p2p_seen_free(s);
            return NODE_ENOMEM;
        }
    }
    return 0;
}

void node__p2p_seen_free(node__p2p_seen *s) {
    for (int g = 0; g < 2; g++) {
        free(s->slots[g]);
        free(s->used[g]);
        s->slots[g] = NULL;
        s->used[g] = NULL;
    }
}

int node__p2p_seen_has(const node__p2p_seen *s, const chain_hash *h) {
    return gen_has(s, 0, h) || gen_has(s, 1, h);
}

int node__p2p_seen_add(node__p2p_seen *s, const chain_hash *h) {
    if (node__p2p_seen_has(s, h)) return 0;
    if (s->count[s->cur] >= NODE_P2P_SEEN_MAX) {
        /* Forget the older generation wholesale: O(1) amortised eviction. */
        s->cur ^= 1;
        memset(s->used[s->cur], 0, SEEN_SLOTS);
        s->count[s->cur] = 0;
    }
    int g = s->cur;
    uint32_t i = seen_index(h);
    while (s->used[g][i]) i = (i + 1) % SEEN_SLOTS;   /* load <= 1/2: a free slot exists */
    s->used[g][i] = 1;
    s->slots[g][i] = *h;
    s->count[g]++;
    assert(s->count[g] <= NODE_P2P_SEEN_MAX);
    return 1;
}
