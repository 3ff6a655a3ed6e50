/* checkpoint.c — checkpoints, the stable checkpoint and catching up.
 *
 * After the node durably applies the block at a multiple of K, the replica
 * broadcasts Checkpoint(seq, block digest). 2f+1 matching Checkpoints make
 * seq the stable checkpoint: the low watermark moves there, the log below is
 * dropped, and the 2f+1 signed messages are kept as the proof a ViewChange
 * carries. A replica that sees a stable checkpoint above its own committed
 * height, or f+1 matching Checkpoints (at least one honest) beyond its
 * committed height + window, cannot catch up from its log and asks the node
 * for block sync (CONS_ACT_FETCH).
 */
#include <stdlib.h>
#include <string.h>

#include "consensus/cons_internal.h"

void cons__fetch(cons_replica *r, uint64_t seq)
{
    if (seq <= r->fetch_target || seq <= r->committed) return;
    r->fetch_target = seq;
    cons_action *a = cons__act(r, CONS_ACT_FETCH);
    a->seq = seq;
}

int cons__ckpt_proof_check(const cons_replica *r, uint64_t seq, const chain_hash *digest,
                           const ProtobufCBinaryData *proof, size_t n_proof)
{
    uint8_t seen[CHAIN_VALIDATORS_MAX] = {0};
    if (n_proof < r->quorum || n_proof > r->n) return CONS_EDECODE;
    for (size_t i = 0; i < n_proof; i++) {
        cons__msg m;
        int rc = cons__msg_parse_type(r, &m, proof[i].data, proof[i].len,
                                      CONSENT__CONS_MSG_TYPE__CONS_MSG_CHECKPOINT);
        if (rc != CONS_OK) return rc;
        int bad = m.seq != seq || memcmp(&m.digest, digest, sizeof *digest) != 0 || seen[m.sender];
        seen[m.sender] = 1;
        cons__msg_free(&m);
        if (bad) return CONS_EDECODE;
    }
    return CONS_OK;
}

static void ckpts_gc(cons_replica *r)
{
    for (uint32_t i = 0; i < r->n; i++)
        for (uint32_t k = 0; k < CONS__CKPT_PER_SENDER; k++) {
            cons__ckpt *c = &r->ckpts[i][k];
            if (c->has && c->seq <= r->stable_seq) {
                cons__buf_free(&c->env);
                c->has = 0;
            }
        }
}

int cons__stable_adopt(cons_replica *r, uint64_t seq, const chain_hash *digest,
                       const ProtobufCBinaryData *proof, size_t n_proof)
{
    assert(seq > r->stable_seq);
    assert(n_proof >= r->quorum && n_proof <= r->n);
    cons__buf copy[CHAIN_VALIDATORS_MAX];
    memset(copy, 0, sizeof copy);
    for (size_t i = 0; i < n_proof; i++) {
        if (cons__buf_set(&copy[i], proof[i].data, proof[i].len) != CONS_OK) {
            for (size_t k = 0; k < i; k++) cons__buf_free(&copy[k]);
            return CONS_ENOMEM;
        }
    }
    for (uint32_t i = 0; i < r->n_stable_proof; i++) cons__buf_free(&r->stable_proof[i]);
    memcpy(r->stable_proof, copy, n_proof * sizeof copy[0]);
    r->n_stable_proof = (uint32_t)n_proof;
    r->stable_seq = seq;
    r->stable_digest = *digest;
    cons__log_gc(r, seq);
    ckpts_gc(r);
    if (r->next_seq <= seq) r->next_seq = seq + 1;
    if (r->committed < seq) cons__fetch(r, seq);
    return CONS_OK;
}

/* Counts validators whose Checkpoint matches (seq, digest); fills proof. */
static uint32_t ckpt_matches(const cons_replica *r, uint64_t seq, const chain_hash *digest,
                             ProtobufCBinaryData *proof)
{
    uint32_t c = 0;
    for (uint32_t i = 0; i < r->n; i++)
        for (uint32_t k = 0; k < CONS__CKPT_PER_SENDER; k++) {
            const cons__ckpt *ck = &r->ckpts[i][k];
            if (!ck->has || ck->seq != seq || memcmp(&ck->digest, digest, sizeof *digest) != 0) continue;
            proof[c].data = ck->env.p;
            proof[c].len = ck->env.len;
            c++;
            break;
        }
    return c;
}

static int evaluate(cons_replica *r, uint64_t seq, const chain_hash *digest)
{
    ProtobufCBinaryData proof[CHAIN_VALIDATORS_MAX];
    if (seq <= r->stable_seq) return CONS_OK;
    uint32_t c = ckpt_matches(r, seq, digest, proof);
    if (c >= r->quorum) return cons__stable_adopt(r, seq, digest, proof, r->quorum);
    if (c >= r->f + 1 && seq > r->committed + r->cfg.window) cons__fetch(r, seq);
    return CONS_OK;
}

/* Keeps validator i's checkpoint: a free place, else the lowest seq if
 * lower than this one. */
static int ckpt_store(cons_replica *r, uint32_t i, uint64_t seq, const chain_hash *digest,
                      const Consent__ConsEnvelope *env, const cons__buf *own)
{
    cons__ckpt *slot = NULL;
    for (uint32_t k = 0; k < CONS__CKPT_PER_SENDER; k++) {
        cons__ckpt *c = &r->ckpts[i][k];
        if (c->has && c->seq == seq) {
            if (memcmp(&c->digest, digest, sizeof *digest) == 0) return CONS_ESTALE;
            /* Two checkpoints of one validator for one seq. */
            cons__buf second = {0};
            int rc = cons__msg_strip(&second, env);
            if (rc == CONS_OK) rc = cons__evidence(r, i, &c->env, second.p, second.len);
            cons__buf_free(&second);
            return rc == CONS_OK ? CONS_ECONFLICT : rc;
        }
        if (!c->has) { if (slot == NULL || slot->has) slot = c; }
        else if (slot == NULL || (slot->has && c->seq < slot->seq)) slot = c;
    }
    assert(slot != NULL);
    if (slot->has && slot->seq > seq) return CONS_ESTALE;
    cons__buf env_buf = {0};
    int rc = own != NULL ? cons__buf_set(&env_buf, own->p, own->len) : cons__msg_strip(&env_buf, env);
    if (rc != CONS_OK) return rc;
    cons__buf_free(&slot->env);
    slot->env = env_buf;
    slot->has = 1;
    slot->seq = seq;
    slot->digest = *digest;
    return CONS_OK;
}

int cons__on_checkpoint(cons_replica *r, uint64_t now_ms, cons__msg *m)
{
    (void)now_ms;
    if (m->seq % r->cfg.checkpoint_interval != 0) return CONS_EDECODE;
    if (m->seq <= r->stable_seq) return CONS_ESTALE;
    int rc = ckpt_store(r, m->sender, m->seq, &m->digest, m->env, NULL);
    if (rc != CONS_OK) return rc;
    return evaluate(r, m->seq, &m->digest);
}

int cons__checkpoint_after_commit(cons_replica *r, uint64_t seq, const chain_hash *digest)
{
    if (seq % r->cfg.checkpoint_interval != 0 || seq <= r->stable_seq) return CONS_OK;
    cons__buf msg = {0};
    int rc = cons__msg_checkpoint(r, &msg, seq, digest);
    if (rc != CONS_OK) return rc;
    r->own_ckpt_seq = seq;
    r->own_ckpt_digest = *digest;
    rc = cons__send(r, UINT32_MAX, &msg);
    if (rc == CONS_OK) rc = ckpt_store(r, r->self, seq, digest, NULL, &msg);
    cons__buf_free(&msg);
    if (rc != CONS_OK) return rc;
    return evaluate(r, seq, digest);
}

int cons__ckpt_resend(cons_replica *r)
{
    /* Checkpoints are sent once; a lost one could keep the low watermark
     * (and so the window) stuck forever. A view change is the sign that
     * something was lost, so say them again there. */
    for (uint32_t k = 0; k < CONS__CKPT_PER_SENDER; k++) {
        const cons__ckpt *c = &r->ckpts[r->self][k];
        if (!c->has || c->seq <= r->stable_seq) continue;
        int rc = cons__send(r, UINT32_MAX, &c->env);
        if (rc != CONS_OK) return rc;
    }
    return CONS_OK;
}

int cons__ckpt_restart(cons_replica *r)
{
    /* Our checkpoint messages die with the process; without them the others
     * may never see 2f+1 and the window stays full. */
    if (r->committed % r->cfg.checkpoint_interval == 0 && r->committed > r->own_ckpt_seq)
        return cons__checkpoint_after_commit(r, r->committed, &r->committed_hash);
    if (r->own_ckpt_seq <= r->stable_seq) return CONS_OK;
    uint64_t seq = r->own_ckpt_seq;
    r->own_ckpt_seq = 0;
    return cons__checkpoint_after_commit(r, seq, &r->own_ckpt_digest);
}
