/* persist.c — the blob behind CONS_ACT_PERSIST and cons_create(persisted).
 *
 * It holds what the replica must never contradict after a crash: its view
 * (and whether a view change runs), the next sequence it would assign as
 * primary, and for every slot the pre-prepare it accepted for (view, seq)
 * and whether it already sent Prepare and Commit for it. It also holds what
 * a later ViewChange must report: the stable checkpoint with its proof and
 * the highest prepared certificate of every slot, and the block bytes of
 * uncommitted slots (committed blocks are in the store): if every replica
 * that voted for a block lost its bytes in a crash, the certified digest
 * could never be delivered again.
 */
#include <stdlib.h>
#include <string.h>

#include "consensus/cons_internal.h"

static void bin(ProtobufCBinaryData *b, const cons__buf *src)
{
    b->data = src->p;
    b->len = src->len;
}

int cons__persist_encode(const cons_replica *r, uint8_t **out, size_t *len)
{
    Consent__ConsReplicaState st = CONSENT__CONS_REPLICA_STATE__INIT;
    ProtobufCBinaryData proof[CHAIN_VALIDATORS_MAX];
    size_t w = r->cfg.window;
    Consent__ConsSlotState *slots = calloc(w, sizeof *slots);
    Consent__ConsSlotState **slotp = calloc(w, sizeof *slotp);
    Consent__ConsPreparedCert *pcs = calloc(w, sizeof *pcs);
    ProtobufCBinaryData *preps = calloc(w * CHAIN_VALIDATORS_MAX, sizeof *preps);
    int rc = CONS_ENOMEM;
    if (slots == NULL || slotp == NULL || pcs == NULL || preps == NULL) goto done;
    st.view = r->view;
    st.in_view_change = r->in_vc;
    st.next_seq = r->next_seq;
    st.stable_seq = r->stable_seq;
    st.failed_views = r->failed_views;
    st.view_changes = r->view_changes;
    st.own_checkpoint_seq = r->own_ckpt_seq;
    if (r->own_ckpt_seq > 0) {
        st.own_checkpoint_digest.data = (uint8_t *)r->own_ckpt_digest.b;
        st.own_checkpoint_digest.len = CHAIN_HASH_LEN;
    }
    if (r->stable_seq > 0) {
        st.stable_digest.data = (uint8_t *)r->stable_digest.b;
        st.stable_digest.len = CHAIN_HASH_LEN;
        for (uint32_t i = 0; i < r->n_stable_proof; i++) bin(&proof[i], &r->stable_proof[i]);
        st.n_stable_proof = r->n_stable_proof;
        st.stable_proof = proof;
    }
    for (size_t i = 0; i < w; i++) {
        const cons__slot *s = &r->slots[i];
        if (!s->used || (!s->has_pp && !s->has_pcert)) continue;
        Consent__ConsSlotState *ss = &slots[st.n_slots];
        consent__cons_slot_state__init(ss);
        ss->seq = s->seq;
        ss->view = s->view;
        if (s->has_pp) {
            ss->digest.data = (uint8_t *)s->digest.b;
            ss->digest.len = CHAIN_HASH_LEN;
            bin(&ss->pre_prepare, &s->pp_env);
        }
        if (s->block.p != NULL && s->seq > r->committed && s->vstate != CONS__V_BAD) {
            bin(&ss->block, &s->block);
            ss->block_digest.data = (uint8_t *)s->block_digest.b;
            ss->block_digest.len = CHAIN_HASH_LEN;
            ss->block_valid = s->vstate == CONS__V_OK;
        }
        ss->sent_prepare = s->sent_prepare;
        ss->sent_commit = s->sent_commit;
        ss->certified = s->certified;
        if (s->has_pcert) {
            Consent__ConsPreparedCert *pc = &pcs[st.n_slots];
            consent__cons_prepared_cert__init(pc);
            bin(&pc->pre_prepare, &s->pcert_pp);
            for (uint32_t k = 0; k < s->pcert_n; k++)
                bin(&preps[i * CHAIN_VALIDATORS_MAX + k], &s->pcert_prep[k]);
            pc->n_prepares = s->pcert_n;
            pc->prepares = &preps[i * CHAIN_VALIDATORS_MAX];
            ss->pcert = pc;
        }
        slotp[st.n_slots++] = ss;
    }
    st.slots = slotp;
    *len = consent__cons_replica_state__get_packed_size(&st);
    *out = malloc(*len > 0 ? *len : 1);
    if (*out == NULL) goto done;
    size_t n = consent__cons_replica_state__pack(&st, *out);
    assert(n == *len);
    rc = CONS_OK;
done:
    free(slots);
    free(slotp);
    free(pcs);
    free(preps);
    return rc;
}

/* Restores one prepared certificate; it was verified when it formed, and is
 * checked again here so a damaged blob is refused rather than trusted. */
static int restore_pcert(cons_replica *r, cons__slot *s, const Consent__ConsPreparedCert *pc)
{
    cons__msg pp;
    if (pc->n_prepares > r->n) return CONS_EDECODE;
    int rc = cons__msg_parse_type(r, &pp, pc->pre_prepare.data, pc->pre_prepare.len,
                                  CONSENT__CONS_MSG_TYPE__CONS_MSG_PRE_PREPARE);
    if (rc != CONS_OK) return rc;
    int bad = pp.seq != s->seq;
    s->pcert_view = pp.view;
    s->pcert_digest = pp.digest;
    cons__msg_free(&pp);
    if (bad) return CONS_EDECODE;
    rc = cons__buf_set(&s->pcert_pp, pc->pre_prepare.data, pc->pre_prepare.len);
    for (size_t k = 0; rc == CONS_OK && k < pc->n_prepares; k++) {
        rc = cons__buf_set(&s->pcert_prep[k], pc->prepares[k].data, pc->prepares[k].len);
        if (rc == CONS_OK) s->pcert_n++;
    }
    if (rc == CONS_OK) s->has_pcert = 1;
    return rc;
}

static int restore_slot(cons_replica *r, const Consent__ConsSlotState *ss)
{
    cons__slot *s = cons__slot_get(r, ss->seq);
    if (s == NULL || s->has_pp || s->has_pcert || ss->view > r->view) return CONS_EDECODE;
    s->view = ss->view;
    if (ss->pre_prepare.len > 0) {
        cons__msg pp;
        int rc = cons__msg_parse_type(r, &pp, ss->pre_prepare.data, ss->pre_prepare.len,
                                      CONSENT__CONS_MSG_TYPE__CONS_MSG_PRE_PREPARE);
        if (rc != CONS_OK) return rc;
        int bad = pp.seq != ss->seq || pp.view != ss->view;
        s->digest = pp.digest;
        cons__msg_free(&pp);
        if (bad) return CONS_EDECODE;
        rc = cons__buf_set(&s->pp_env, ss->pre_prepare.data, ss->pre_prepare.len);
        if (rc != CONS_OK) return rc;
        s->has_pp = 1;
    }
    s->sent_prepare = ss->sent_prepare;
    s->sent_commit = ss->sent_commit;
    s->certified = ss->certified;
    if (ss->block.len > 0) {
        if (cons__digest_get(&s->block_digest, ss->block_digest) != CONS_OK) return CONS_EDECODE;
        if (cons__buf_set(&s->block, ss->block.data, ss->block.len) != CONS_OK) return CONS_ENOMEM;
        s->vstate = ss->block_valid ? CONS__V_OK : CONS__V_NONE;
    }
    /* Delivered before the crash: never hand it out again. */
    if (s->seq <= r->committed) s->commit_emitted = 1;
    return ss->pcert != NULL ? restore_pcert(r, s, ss->pcert) : CONS_OK;
}

int cons__persist_restore(cons_replica *r, const uint8_t *buf, size_t len)
{
    Consent__ConsReplicaState *st = consent__cons_replica_state__unpack(NULL, len, buf);
    if (st == NULL) return CONS_EDECODE;
    int rc = CONS_EDECODE;
    if (st->base.n_unknown_fields != 0 || st->n_slots > r->cfg.window) goto done;
    r->view = st->view;
    r->in_vc = st->in_view_change;
    r->next_seq = st->next_seq;
    r->failed_views = st->failed_views;
    r->view_changes = st->view_changes;
    if (st->own_checkpoint_seq > 0) {
        if (st->own_checkpoint_seq % r->cfg.checkpoint_interval != 0) goto done;
        if (cons__digest_get(&r->own_ckpt_digest, st->own_checkpoint_digest) != CONS_OK) goto done;
        r->own_ckpt_seq = st->own_checkpoint_seq;
    }
    if (st->stable_seq > 0) {
        if (cons__digest_get(&r->stable_digest, st->stable_digest) != CONS_OK) goto done;
        if (cons__ckpt_proof_check(r, st->stable_seq, &r->stable_digest, st->stable_proof,
                                   st->n_stable_proof) != CONS_OK)
            goto done;
        for (size_t i = 0; i < st->n_stable_proof; i++)
            if (cons__buf_set(&r->stable_proof[i], st->stable_proof[i].data, st->stable_proof[i].len) != CONS_OK)
                goto done;
        r->n_stable_proof = (uint32_t)st->n_stable_proof;
        r->stable_seq = st->stable_seq;
    }
    for (size_t i = 0; i < st->n_slots; i++)
        if (restore_slot(r, st->slots[i]) != CONS_OK) goto done;
    rc = CONS_OK;
done:
    consent__cons_replica_state__free_unpacked(st, NULL);
    return rc;
}
