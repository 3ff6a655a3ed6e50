/* msg.c — consensus envelopes: what is signed, how it is checked, and the
 * decoding of the small message bodies.
 *
 * Every message except Commit is signed over a domain-separated hash
 *   SHA-256(CONS__TAG || 0 || len(chain_id) || chain_id || type || sender ||
 *           SHA-256(body))
 * so a signature can never be replayed as another kind of message, on
 * another chain, or as coming from another validator. A Commit is signed over
 * chain_commit_sighash(view, seq, digest) exactly, so that the Commit
 * signatures of 2f+1 validators are a block's commit certificate as they are.
 * Sidecar block bytes are outside the signature (see consensus.proto).
 */
#include <stdlib.h>
#include <string.h>

#include "consensus/cons_internal.h"

int cons__digest_get(chain_hash *out, ProtobufCBinaryData b)
{
    if (b.len != CHAIN_HASH_LEN || b.data == NULL) return CONS_EDECODE;
    memcpy(out->b, b.data, CHAIN_HASH_LEN);
    return CONS_OK;
}

static void sighash(const cons_replica *r, chain_hash *out, uint32_t type, uint32_t sender,
                    const uint8_t *body, size_t body_len)
{
    uint8_t buf[sizeof CONS__TAG + 1 + CHAIN_ID_LEN_MAX + 8 + CHAIN_HASH_LEN];
    size_t tag_len = strlen(CONS__TAG), id_len = strlen(r->g->chain_id), o = 0;
    chain_hash body_hash;
    assert(id_len <= CHAIN_ID_LEN_MAX);
    chain_sha256(&body_hash, body, body_len);
    memcpy(buf, CONS__TAG, tag_len);
    o = tag_len;
    buf[o++] = 0;
    buf[o++] = (uint8_t)id_len;
    memcpy(buf + o, r->g->chain_id, id_len);
    o += id_len;
    for (int i = 3; i >= 0; i--) buf[o++] = (uint8_t)(type >> (8 * i));
    for (int i = 3; i >= 0; i--) buf[o++] = (uint8_t)(sender >> (8 * i));
    memcpy(buf + o, body_hash.b, CHAIN_HASH_LEN);
    o += CHAIN_HASH_LEN;
    assert(o <= sizeof buf);
    chain_sha256(out, buf, o);
}

/* The three vote messages share one field layout; decode with the right
 * descriptor so unknown fields are caught per type. */
static int parse_vote(cons__msg *m, const ProtobufCBinaryData *body)
{
    ProtobufCMessage *msg = NULL;
    uint64_t view = 0, seq = 0;
    ProtobufCBinaryData dg = {0, NULL};
    if (m->type == CONSENT__CONS_MSG_TYPE__CONS_MSG_PRE_PREPARE) {
        Consent__ConsPrePrepare *p = consent__cons_pre_prepare__unpack(NULL, body->len, body->data);
        if (p) { view = p->view; seq = p->seq; dg = p->digest; msg = &p->base; }
    } else if (m->type == CONSENT__CONS_MSG_TYPE__CONS_MSG_PREPARE) {
        Consent__ConsPrepare *p = consent__cons_prepare__unpack(NULL, body->len, body->data);
        if (p) { view = p->view; seq = p->seq; dg = p->digest; msg = &p->base; }
    } else {
        Consent__ConsCommit *p = consent__cons_commit__unpack(NULL, body->len, body->data);
        if (p) { view = p->view; seq = p->seq; dg = p->digest; msg = &p->base; }
    }
    if (msg == NULL) return CONS_EDECODE;
    int rc = (msg->n_unknown_fields == 0 && seq > 0) ? cons__digest_get(&m->digest, dg) : CONS_EDECODE;
    m->view = view;
    m->seq = seq;
    protobuf_c_message_free_unpacked(msg, NULL);
    return rc;
}

static int parse_checkpoint(cons__msg *m, const ProtobufCBinaryData *body)
{
    Consent__ConsCheckpoint *p = consent__cons_checkpoint__unpack(NULL, body->len, body->data);
    if (p == NULL) return CONS_EDECODE;
    int rc = (p->base.n_unknown_fields == 0 && p->seq > 0) ? cons__digest_get(&m->digest, p->digest)
                                                           : CONS_EDECODE;
    m->seq = p->seq;
    consent__cons_checkpoint__free_unpacked(p, NULL);
    return rc;
}

static int parse_body(cons__msg *m)
{
    const Consent__ConsEnvelope *e = m->env;
    int sidecar_ok = 0, rc = CONS_OK;
    switch (m->type) {
    case CONSENT__CONS_MSG_TYPE__CONS_MSG_PRE_PREPARE:
        sidecar_ok = 1;
        /* fall through */
    case CONSENT__CONS_MSG_TYPE__CONS_MSG_PREPARE:
    case CONSENT__CONS_MSG_TYPE__CONS_MSG_COMMIT:
        rc = parse_vote(m, &e->body);
        break;
    case CONSENT__CONS_MSG_TYPE__CONS_MSG_CHECKPOINT:
        rc = parse_checkpoint(m, &e->body);
        break;
    case CONSENT__CONS_MSG_TYPE__CONS_MSG_VIEW_CHANGE:
    case CONSENT__CONS_MSG_TYPE__CONS_MSG_NEW_VIEW:
        sidecar_ok = 1;
        break;
    default:
        return CONS_EDECODE;
    }
    if (rc != CONS_OK) return rc;
    if (e->n_blocks > 0 && !sidecar_ok) return CONS_EDECODE;
    if (e->n_blocks > CONS__WINDOW_MAX + 1) return CONS_EDECODE;
    for (size_t i = 0; i < e->n_blocks; i++) {
        chain_hash d;
        if (e->blocks[i]->base.n_unknown_fields != 0) return CONS_EDECODE;
        if (cons__digest_get(&d, e->blocks[i]->digest) != CONS_OK) return CONS_EDECODE;
    }
    return CONS_OK;
}

static int verify(const cons_replica *r, const cons__msg *m)
{
    chain_hash h;
    chain_sig sig;
    const Consent__ConsEnvelope *e = m->env;
    if (e->signature.len != CHAIN_SIG_LEN) return CONS_ESIG;
    memcpy(sig.b, e->signature.data, CHAIN_SIG_LEN);
    if (m->type == CONSENT__CONS_MSG_TYPE__CONS_MSG_COMMIT)
        chain_commit_sighash(&h, r->g->chain_id, m->view, m->seq, &m->digest);
    else
        sighash(r, &h, m->type, m->sender, e->body.data, e->body.len);
    return chain_verify_cached(&r->g->institutions[m->sender].key, &sig, &h) == CHAIN_OK ? CONS_OK : CONS_ESIG;
}

static int parse(const cons_replica *r, cons__msg *m, const uint8_t *buf, size_t len, int check_sig)
{
    memset(m, 0, sizeof *m);
    if (buf == NULL || len == 0 || len > CONS_MSG_BYTES_MAX) return CONS_EDECODE;
    m->env = consent__cons_envelope__unpack(NULL, len, buf);
    if (m->env == NULL) return CONS_EDECODE;
    m->type = (uint32_t)m->env->type;
    m->sender = m->env->sender;
    int rc = CONS_EDECODE;
    if (m->env->base.n_unknown_fields != 0) goto fail;
    rc = CONS_ESIG;
    if (m->sender >= r->n) goto fail;   /* unknown sender */
    rc = parse_body(m);
    if (rc != CONS_OK) goto fail;
    rc = check_sig ? verify(r, m) : CONS_OK;
    if (rc != CONS_OK) goto fail;
    return CONS_OK;
fail:
    cons__msg_free(m);
    return rc;
}

int cons__msg_parse(const cons_replica *r, cons__msg *m, const uint8_t *buf, size_t len)
{
    return parse(r, m, buf, len, 1);
}

int cons__msg_decode_type(const cons_replica *r, cons__msg *m, const uint8_t *buf, size_t len,
                          uint32_t type)
{
    int rc = parse(r, m, buf, len, 0);
    if (rc != CONS_OK) return rc;
    if (m->type != type) {
        cons__msg_free(m);
        return CONS_EDECODE;
    }
    return CONS_OK;
}

int cons__msg_parse_type(const cons_replica *r, cons__msg *m, const uint8_t *buf, size_t len,
                         uint32_t type)
{
    int rc = cons__msg_parse(r, m, buf, len);
    if (rc != CONS_OK) return rc;
    if (m->type != type || m->env->n_blocks != 0) {
        cons__msg_free(m);
        return CONS_EDECODE;
    }
    return CONS_OK;
}

void cons__msg_free(cons__msg *m)
{
    if (m->env != NULL) consent__cons_envelope__free_unpacked(m->env, NULL);
    m->env = NULL;
}

static int pack_envelope(cons__buf *out, const Consent__ConsEnvelope *e)
{
    size_t n = consent__cons_envelope__get_packed_size(e);
    out->p = malloc(n > 0 ? n : 1);
    if (out->p == NULL) return CONS_ENOMEM;
    out->len = consent__cons_envelope__pack(e, out->p);
    assert(out->len == n);
    return CONS_OK;
}

int cons__msg_make(cons_replica *r, cons__buf *out, uint32_t type, const uint8_t *body,
                   size_t body_len)
{
    Consent__ConsEnvelope e = CONSENT__CONS_ENVELOPE__INIT;
    chain_hash h;
    chain_sig sig;
    assert(type != CONSENT__CONS_MSG_TYPE__CONS_MSG_COMMIT);
    sighash(r, &h, type, r->self, body, body_len);
    if (chain_sign(r->cfg.key, &sig, &h) != CHAIN_OK) return CONS_ESIG;
    e.type = (Consent__ConsMsgType)type;
    e.sender = r->self;
    e.body.data = (uint8_t *)body;
    e.body.len = body_len;
    e.signature.data = sig.b;
    e.signature.len = CHAIN_SIG_LEN;
    return pack_envelope(out, &e);
}

int cons__msg_vote(cons_replica *r, cons__buf *out, uint32_t type, uint64_t view, uint64_t seq,
                   const chain_hash *digest)
{
    /* PrePrepare, Prepare and Commit share one layout: pack as PrePrepare. */
    Consent__ConsPrePrepare b = CONSENT__CONS_PRE_PREPARE__INIT;
    uint8_t body[64];
    b.view = view;
    b.seq = seq;
    b.digest.data = (uint8_t *)digest->b;
    b.digest.len = CHAIN_HASH_LEN;
    assert(consent__cons_pre_prepare__get_packed_size(&b) <= sizeof body);
    size_t body_len = consent__cons_pre_prepare__pack(&b, body);
    if (type != CONSENT__CONS_MSG_TYPE__CONS_MSG_COMMIT) return cons__msg_make(r, out, type, body, body_len);

    Consent__ConsEnvelope e = CONSENT__CONS_ENVELOPE__INIT;
    chain_hash h;
    chain_sig sig;
    chain_commit_sighash(&h, r->g->chain_id, view, seq, digest);
    if (chain_sign(r->cfg.key, &sig, &h) != CHAIN_OK) return CONS_ESIG;
    e.type = CONSENT__CONS_MSG_TYPE__CONS_MSG_COMMIT;
    e.sender = r->self;
    e.body.data = body;
    e.body.len = body_len;
    e.signature.data = sig.b;
    e.signature.len = CHAIN_SIG_LEN;
    return pack_envelope(out, &e);
}

int cons__msg_checkpoint(cons_replica *r, cons__buf *out, uint64_t seq, const chain_hash *digest)
{
    Consent__ConsCheckpoint b = CONSENT__CONS_CHECKPOINT__INIT;
    uint8_t body[64];
    b.seq = seq;
    b.digest.data = (uint8_t *)digest->b;
    b.digest.len = CHAIN_HASH_LEN;
    assert(consent__cons_checkpoint__get_packed_size(&b) <= sizeof body);
    size_t body_len = consent__cons_checkpoint__pack(&b, body);
    return cons__msg_make(r, out, CONSENT__CONS_MSG_TYPE__CONS_MSG_CHECKPOINT, body, body_len);
}

int cons__msg_add_blocks(cons__buf *out, const cons__buf *env, Consent__ConsBlock **blocks,
                         size_t n_blocks, size_t max_len)
{
    Consent__ConsEnvelope side = CONSENT__CONS_ENVELOPE__INIT;
    size_t total = env->len, n = 0;
    assert(env->len <= max_len);
    /* Keep blocks while the whole message stays under max_len; a block left
     * out is fetched by block sync instead. */
    for (size_t i = 0; i < n_blocks; i++) {
        size_t one = consent__cons_block__get_packed_size(blocks[i]) + 6;
        if (total + one > max_len) break;
        total += one;
        n++;
    }
    side.n_blocks = n;
    side.blocks = blocks;
    size_t extra = consent__cons_envelope__get_packed_size(&side);
    out->p = malloc(env->len + extra + 1);
    if (out->p == NULL) return CONS_ENOMEM;
    memcpy(out->p, env->p, env->len);
    out->len = env->len + consent__cons_envelope__pack(&side, out->p + env->len);
    assert(out->len <= max_len);
    return CONS_OK;
}

int cons__msg_strip(cons__buf *out, const Consent__ConsEnvelope *env)
{
    Consent__ConsEnvelope e = *env;
    e.n_blocks = 0;
    e.blocks = NULL;
    return pack_envelope(out, &e);
}
