/* viewchange.c — view change and new view.
 *
 * A replica whose timer expires (or that saw its primary equivocate) moves to
 * view v+1 and broadcasts ViewChange: its stable checkpoint with 2f+1 signed
 * Checkpoints, and for each sequence above it the highest-view prepared
 * certificate it holds (the signed pre-prepare and 2f signed prepares). It
 * joins a view change when f+1 others are already in higher views. The
 * primary of the new view, holding 2f+1 ViewChanges (its own among them),
 * broadcasts NewView: those ViewChanges and re-issued pre-prepares for the
 * set O that every replica recomputes from them:
 *
 *   min_s = the highest stable checkpoint among the ViewChanges;
 *   for s = min_s+1, min_s+2, ...: the digest of the highest-view prepared
 *   certificate for s in any ViewChange; O stops at the first s with none.
 *
 * No null requests: a sequence is a block height and blocks chain by hash,
 * so there is no empty filler that fits. Instead O is cut at the first hole
 * and the new primary proposes fresh blocks from there. This loses nothing
 * committed: if any honest replica delivered seq s, then 2f+1 replicas
 * prepared s, f+1 of them honest, and at least one of those is among any
 * 2f+1 ViewChange senders, reporting s prepared or a stable checkpoint >= s;
 * so s is no hole, and every seq below s was delivered too (delivery is in
 * order), so none of them is a hole either. What is cut above a hole was
 * never delivered anywhere.
 */
#include <stdlib.h>
#include <string.h>

#include "consensus/cons_internal.h"

typedef struct {
    uint64_t seq, view;
    chain_hash digest;
} pc_entry;

/* The set O and where its checkpoint comes from. */
typedef struct {
    uint64_t min_s;
    chain_hash min_digest;
    size_t proof_vc;                 /* index of the ViewChange giving min_s */
    size_t n;                        /* O covers min_s+1 .. min_s+n */
    chain_hash digests[CONS__WINDOW_MAX];
} oset;

typedef struct {
    Consent__ConsEnvelope *env;
    Consent__ConsViewChange *vc;
} vc_dec;

static void vc_dec_free(vc_dec *d)
{
    if (d->vc != NULL) consent__cons_view_change__free_unpacked(d->vc, NULL);
    if (d->env != NULL) consent__cons_envelope__free_unpacked(d->env, NULL);
    d->vc = NULL;
    d->env = NULL;
}

/* Decodes the body of env into d->vc; d->env is left to the caller. */
static int vc_decode(vc_dec *d, const Consent__ConsEnvelope *env)
{
    d->vc = consent__cons_view_change__unpack(NULL, env->body.len, env->body.data);
    if (d->vc == NULL) return CONS_EDECODE;
    if (d->vc->base.n_unknown_fields != 0) {
        consent__cons_view_change__free_unpacked(d->vc, NULL);
        d->vc = NULL;
        return CONS_EDECODE;
    }
    return CONS_OK;
}

/* Checks one prepared certificate of a ViewChange for view w whose stable
 * checkpoint is stable; fills e. */
static int pcert_check(const cons_replica *r, const Consent__ConsPreparedCert *pc, uint64_t w,
                       uint64_t stable, pc_entry *e)
{
    cons__msg pp;
    uint8_t seen[CHAIN_VALIDATORS_MAX] = {0};
    if (pc->base.n_unknown_fields != 0) return CONS_EDECODE;
    if (pc->n_prepares < 2 * r->f || pc->n_prepares > r->n) return CONS_EDECODE;
    int rc = cons__msg_parse_type(r, &pp, pc->pre_prepare.data, pc->pre_prepare.len,
                                  CONSENT__CONS_MSG_TYPE__CONS_MSG_PRE_PREPARE);
    if (rc != CONS_OK) return rc;
    e->seq = pp.seq;
    e->view = pp.view;
    e->digest = pp.digest;
    int bad = pp.view >= w || pp.sender != cons__primary_of(r, pp.view) || pp.seq <= stable ||
              pp.seq - stable > r->cfg.window;
    seen[pp.sender] = 1;
    cons__msg_free(&pp);
    if (bad) return CONS_EDECODE;
    for (size_t i = 0; i < pc->n_prepares; i++) {
        cons__msg p;
        rc = cons__msg_parse_type(r, &p, pc->prepares[i].data, pc->prepares[i].len,
                                  CONSENT__CONS_MSG_TYPE__CONS_MSG_PREPARE);
        if (rc != CONS_OK) return rc;
        bad = p.view != e->view || p.seq != e->seq || seen[p.sender] ||
              memcmp(&p.digest, &e->digest, sizeof e->digest) != 0;
        seen[p.sender] = 1;
        cons__msg_free(&p);
        if (bad) return CONS_EDECODE;
    }
    return CONS_OK;
}

/* Checks a decoded ViewChange body for view w. */
static int vc_check(const cons_replica *r, const Consent__ConsViewChange *vc, uint64_t w)
{
    chain_hash d;
    pc_entry seen[CONS__WINDOW_MAX];
    if (vc->new_view != w) return CONS_EDECODE;
    if (vc->stable_seq > 0) {
        if (vc->stable_seq % r->cfg.checkpoint_interval != 0) return CONS_EDECODE;
        if (cons__digest_get(&d, vc->stable_digest) != CONS_OK) return CONS_EDECODE;
        int rc = cons__ckpt_proof_check(r, vc->stable_seq, &d, vc->checkpoint_proof, vc->n_checkpoint_proof);
        if (rc != CONS_OK) return rc;
    } else if (vc->n_checkpoint_proof != 0 || vc->stable_digest.len != 0) {
        return CONS_EDECODE;
    }
    if (vc->n_prepared > r->cfg.window) return CONS_EDECODE;
    for (size_t i = 0; i < vc->n_prepared; i++) {
        int rc = pcert_check(r, vc->prepared[i], w, vc->stable_seq, &seen[i]);
        if (rc != CONS_OK) return rc;
        for (size_t k = 0; k < i; k++)
            if (seen[k].seq == seen[i].seq) return CONS_EDECODE;
    }
    return CONS_OK;
}

/* Recomputes O from k verified ViewChanges (see the file comment). */
static int compute_o(const cons_replica *r, vc_dec *vcs, size_t k, oset *o)
{
    size_t n_pc = 0, cap = k * r->cfg.window;
    pc_entry *pcs = calloc(cap > 0 ? cap : 1, sizeof *pcs);
    if (pcs == NULL) return CONS_ENOMEM;
    memset(o, 0, sizeof *o);
    for (size_t i = 0; i < k; i++) {
        if (i == 0 || vcs[i].vc->stable_seq > o->min_s) {
            o->min_s = vcs[i].vc->stable_seq;
            o->proof_vc = i;
            if (o->min_s > 0) (void)cons__digest_get(&o->min_digest, vcs[i].vc->stable_digest);
        }
        /* Verified on receipt: decode once for seq, view and digest. */
        for (size_t j = 0; j < vcs[i].vc->n_prepared && n_pc < cap; j++) {
            const Consent__ConsPreparedCert *pc = vcs[i].vc->prepared[j];
            cons__msg pp;
            if (cons__msg_decode_type(r, &pp, pc->pre_prepare.data, pc->pre_prepare.len,
                                      CONSENT__CONS_MSG_TYPE__CONS_MSG_PRE_PREPARE) != CONS_OK) {
                free(pcs);
                return CONS_EDECODE;
            }
            pcs[n_pc].seq = pp.seq;
            pcs[n_pc].view = pp.view;
            pcs[n_pc].digest = pp.digest;
            n_pc++;
            cons__msg_free(&pp);
        }
    }
    for (uint64_t s = o->min_s + 1; s <= o->min_s + r->cfg.window; s++) {
        int found = 0;
        uint64_t best_view = 0;
        for (size_t i = 0; i < n_pc; i++)
            if (pcs[i].seq == s && (!found || pcs[i].view > best_view)) {
                found = 1;
                best_view = pcs[i].view;
                o->digests[o->n] = pcs[i].digest;
            }
        if (!found) break;
        o->n++;
    }
    free(pcs);
    return CONS_OK;
}

/* Builds and broadcasts our ViewChange for r->view; arms the timer. */
int cons__send_view_change(cons_replica *r, uint64_t now_ms)
{
    Consent__ConsViewChange vc = CONSENT__CONS_VIEW_CHANGE__INIT;
    ProtobufCBinaryData proof[CHAIN_VALIDATORS_MAX];
    Consent__ConsPreparedCert pcs[CONS__WINDOW_MAX], *pcp[CONS__WINDOW_MAX];
    /* ~256 KiB at the largest window: on the heap, not the stack. */
    ProtobufCBinaryData (*preps)[CHAIN_VALIDATORS_MAX] = calloc(CONS__WINDOW_MAX, sizeof *preps);
    Consent__ConsBlock blks[CONS__WINDOW_MAX], *blkp[CONS__WINDOW_MAX];
    size_t nb = 0;
    if (preps == NULL) return CONS_ENOMEM;
    vc.new_view = r->view;
    vc.stable_seq = r->stable_seq;
    if (r->stable_seq > 0) {
        vc.stable_digest.data = r->stable_digest.b;
        vc.stable_digest.len = CHAIN_HASH_LEN;
        for (uint32_t i = 0; i < r->n_stable_proof; i++) {
            proof[i].data = r->stable_proof[i].p;
            proof[i].len = r->stable_proof[i].len;
        }
        vc.n_checkpoint_proof = r->n_stable_proof;
        vc.checkpoint_proof = proof;
    }
    for (uint64_t s = r->stable_seq + 1; s <= r->stable_seq + r->cfg.window; s++) {
        cons__slot *sl = cons__slot_find(r, s);
        if (sl == NULL || !sl->has_pcert) continue;
        size_t k = vc.n_prepared++;
        consent__cons_prepared_cert__init(&pcs[k]);
        pcs[k].pre_prepare.data = sl->pcert_pp.p;
        pcs[k].pre_prepare.len = sl->pcert_pp.len;
        for (uint32_t i = 0; i < sl->pcert_n; i++) {
            preps[k][i].data = sl->pcert_prep[i].p;
            preps[k][i].len = sl->pcert_prep[i].len;
        }
        pcs[k].n_prepares = sl->pcert_n;
        pcs[k].prepares = preps[k];
        pcp[k] = &pcs[k];
        if (sl->block.p != NULL && sl->vstate != CONS__V_BAD &&
            memcmp(&sl->block_digest, &sl->pcert_digest, sizeof sl->block_digest) == 0) {
            consent__cons_block__init(&blks[nb]);
            blks[nb].seq = s;
            blks[nb].digest.data = sl->block_digest.b;
            blks[nb].digest.len = CHAIN_HASH_LEN;
            blks[nb].data.data = sl->block.p;
            blks[nb].data.len = sl->block.len;
            blkp[nb] = &blks[nb];
            nb++;
        }
    }
    vc.prepared = pcp;
    size_t len = consent__cons_view_change__get_packed_size(&vc);
    uint8_t *body = malloc(len > 0 ? len : 1);
    if (body == NULL) { free(preps); return CONS_ENOMEM; }
    consent__cons_view_change__pack(&vc, body);
    free(preps);
    cons__buf env = {0}, full = {0};
    int rc = cons__msg_make(r, &env, CONSENT__CONS_MSG_TYPE__CONS_MSG_VIEW_CHANGE, body, len);
    free(body);
    if (rc == CONS_OK && env.len > CONS_MSG_BYTES_MAX) rc = CONS_ENOMEM;
    if (rc == CONS_OK) rc = cons__msg_add_blocks(&full, &env, blkp, nb, CONS_MSG_BYTES_MAX);
    if (rc == CONS_OK) rc = cons__send(r, UINT32_MAX, &full);
    cons__buf_free(&full);
    if (rc != CONS_OK) { cons__buf_free(&env); return rc; }
    cons__buf_free(&r->vcs[r->self].env);
    r->vcs[r->self].env = env;
    r->vcs[r->self].has = 1;
    r->vcs[r->self].view = r->view;
    cons__timer_set(r, now_ms + cons__timeout_ms(r));
    return CONS_OK;
}

static int check_new_view(cons_replica *r, uint64_t now_ms);

uint32_t cons__vc_count(const cons_replica *r, uint64_t view)
{
    uint32_t c = 0;
    for (uint32_t i = 0; i < r->n; i++) c += r->vcs[i].has && r->vcs[i].view >= view;
    return c;
}

int cons__start_view_change(cons_replica *r, uint64_t now_ms, uint64_t view)
{
    assert(view > r->view);
    r->view = view;
    r->in_vc = 1;
    if (r->failed_views < UINT32_MAX) r->failed_views++;
    r->view_changes++;
    r->fetch_target = r->committed;   /* a lost fetch may be asked again */
    int rc = cons__send_view_change(r, now_ms);
    if (rc == CONS_OK) rc = cons__ckpt_resend(r);
    if (rc != CONS_OK) return rc;
    return check_new_view(r, now_ms);
}

/* Stores block bytes a ViewChange carries for one of its certificates. */
static void harvest_blocks(cons_replica *r, const Consent__ConsEnvelope *env, const Consent__ConsViewChange *vc)
{
    for (size_t i = 0; i < env->n_blocks; i++) {
        const Consent__ConsBlock *b = env->blocks[i];
        chain_hash d;
        if (cons__digest_get(&d, b->digest) != CONS_OK || b->data.len == 0) continue;
        int certified = 0;
        for (size_t j = 0; j < vc->n_prepared && !certified; j++) {
            cons__msg pp;
            const Consent__ConsPreparedCert *pc = vc->prepared[j];
            if (cons__msg_decode_type(r, &pp, pc->pre_prepare.data, pc->pre_prepare.len,
                                      CONSENT__CONS_MSG_TYPE__CONS_MSG_PRE_PREPARE) != CONS_OK)
                continue;
            certified = pp.seq == b->seq && memcmp(&pp.digest, &d, sizeof d) == 0;
            cons__msg_free(&pp);
        }
        cons__slot *s = certified && b->seq > r->committed ? cons__slot_get(r, b->seq) : NULL;
        if (s == NULL || s->block.p != NULL) continue;
        if (cons__buf_set(&s->block, b->data.data, b->data.len) != CONS_OK) continue;
        s->block_digest = d;
        s->vstate = CONS__V_NONE;
    }
}

/* PBFT's liveness rule: f+1 validators in views above ours, so at least one
 * honest replica gave up on our view; join the smallest of those views. */
static int maybe_join(cons_replica *r, uint64_t now_ms)
{
    uint32_t c = 0;
    uint64_t min_view = UINT64_MAX;
    for (uint32_t i = 0; i < r->n; i++) {
        if (i == r->self || !r->vcs[i].has || r->vcs[i].view <= r->view) continue;
        c++;
        if (r->vcs[i].view < min_view) min_view = r->vcs[i].view;
    }
    if (c < r->f + 1) return CONS_OK;
    return cons__start_view_change(r, now_ms, min_view);
}

int cons__on_view_change(cons_replica *r, uint64_t now_ms, cons__msg *m)
{
    vc_dec d = {NULL, NULL};
    int rc = vc_decode(&d, m->env);
    if (rc != CONS_OK) return rc;
    uint64_t w = d.vc->new_view;
    if (w < r->view || (w == r->view && !r->in_vc) ||
        (r->vcs[m->sender].has && r->vcs[m->sender].view >= w)) {
        vc_dec_free(&d);
        return CONS_ESTALE;
    }
    rc = vc_check(r, d.vc, w);
    cons__buf env = {0};
    if (rc == CONS_OK) rc = cons__msg_strip(&env, m->env);
    if (rc == CONS_OK) {
        cons__buf_free(&r->vcs[m->sender].env);
        r->vcs[m->sender].env = env;
        r->vcs[m->sender].has = 1;
        r->vcs[m->sender].view = w;
        harvest_blocks(r, m->env, d.vc);
    }
    vc_dec_free(&d);
    if (rc != CONS_OK) return rc;
    rc = maybe_join(r, now_ms);
    if (rc != CONS_OK) return rc;
    return check_new_view(r, now_ms);
}

/* Makes the local state that of view w with O installed. pps are the signed
 * re-issued pre-prepares (index i for seq min_s+1+i); side holds sidecar
 * blocks (may be NULL). */
static int install_view(cons_replica *r, uint64_t now_ms, uint64_t w, const oset *o,
                        const Consent__ConsViewChange *proof_vc, const cons__buf *pps,
                        const Consent__ConsEnvelope *side)
{
    int rc = CONS_OK;
    r->view = w;
    r->in_vc = 0;
    if (o->min_s > r->stable_seq) {
        rc = cons__stable_adopt(r, o->min_s, &o->min_digest, proof_vc->checkpoint_proof,
                                proof_vc->n_checkpoint_proof);
        if (rc != CONS_OK) return rc;
    }
    for (uint64_t s = r->stable_seq + 1; s <= r->stable_seq + r->cfg.window; s++) {
        int in_o = s > o->min_s && s - o->min_s <= o->n;
        cons__slot *sl = in_o ? cons__slot_get(r, s) : cons__slot_find(r, s);
        if (sl == NULL) continue;
        cons__slot_new_round(sl, w);
        if (!in_o) continue;
        const chain_hash *dg = &o->digests[s - o->min_s - 1];
        if (sl->block.p != NULL && memcmp(&sl->block_digest, dg, sizeof *dg) != 0) {
            cons__buf_free(&sl->block);
            sl->vstate = CONS__V_NONE;
        }
        for (size_t i = 0; side != NULL && sl->block.p == NULL && i < side->n_blocks; i++) {
            chain_hash bd;
            const Consent__ConsBlock *b = side->blocks[i];
            if (b->seq != s || cons__digest_get(&bd, b->digest) != CONS_OK ||
                memcmp(&bd, dg, sizeof bd) != 0 || b->data.len == 0)
                continue;
            if (cons__buf_set(&sl->block, b->data.data, b->data.len) != CONS_OK) continue;
            sl->block_digest = bd;
            sl->vstate = CONS__V_NONE;
        }
        rc = cons__buf_set(&sl->pp_env, pps[s - o->min_s - 1].p, pps[s - o->min_s - 1].len);
        if (rc != CONS_OK) return rc;
        sl->has_pp = 1;
        sl->digest = *dg;
        sl->certified = 1;
        if (s <= r->committed) sl->commit_emitted = 1;   /* delivered already */
    }
    uint64_t top = o->min_s + o->n;
    if (top < r->committed) top = r->committed;
    if (top < r->stable_seq) top = r->stable_seq;
    r->next_seq = top + 1;
    for (uint32_t i = 0; i < r->n; i++)
        if (r->vcs[i].has && r->vcs[i].view <= w) {
            cons__buf_free(&r->vcs[i].env);
            r->vcs[i].has = 0;
        }
    cons_action *a = cons__act(r, CONS_ACT_NEW_PRIMARY);
    a->to = cons__primary_of(r, w);
    a->view = w;
    if (r->stable_seq > r->committed) cons__fetch(r, r->stable_seq);
    for (uint64_t s = o->min_s + 1; rc == CONS_OK && s <= o->min_s + o->n; s++) {
        cons__slot *sl = cons__slot_find(r, s);
        if (sl != NULL) rc = cons__progress(r, now_ms, sl);
    }
    cons__maybe_validate(r);
    cons__timer_update(r, now_ms, 1);
    return rc;
}

/* New primary: with 2f+1 ViewChanges for our view (ours included), send
 * NewView and install it. */
static int check_new_view(cons_replica *r, uint64_t now_ms)
{
    if (!r->in_vc || cons__primary_of(r, r->view) != r->self) return CONS_OK;
    if (!r->vcs[r->self].has || r->vcs[r->self].view != r->view) return CONS_OK;
    vc_dec d[CHAIN_VALIDATORS_MAX];
    ProtobufCBinaryData vcb[CHAIN_VALIDATORS_MAX], ppb[CONS__WINDOW_MAX];
    size_t k = 0;
    memset(d, 0, sizeof d);
    for (uint32_t j = 0; j < r->n && k < r->quorum; j++) {
        uint32_t i = (r->self + j) % r->n;   /* ours first */
        if (r->vcs[i].has && r->vcs[i].view == r->view) {
            vcb[k].data = r->vcs[i].env.p;
            vcb[k].len = r->vcs[i].env.len;
            k++;
        }
    }
    if (k < r->quorum) return CONS_OK;
    int rc = CONS_OK;
    for (size_t i = 0; i < k && rc == CONS_OK; i++) {
        d[i].env = consent__cons_envelope__unpack(NULL, vcb[i].len, vcb[i].data);
        rc = d[i].env == NULL ? CONS_EDECODE : vc_decode(&d[i], d[i].env);
    }
    oset *o = calloc(1, sizeof *o);
    cons__buf *pps = calloc(CONS__WINDOW_MAX, sizeof *pps);
    Consent__ConsBlock *blks = calloc(CONS__WINDOW_MAX, sizeof *blks);
    Consent__ConsBlock **blkp = calloc(CONS__WINDOW_MAX, sizeof *blkp);
    if (o == NULL || pps == NULL || blks == NULL || blkp == NULL) rc = CONS_ENOMEM;
    if (rc == CONS_OK) rc = compute_o(r, d, k, o);
    size_t nb = 0;
    for (size_t i = 0; rc == CONS_OK && i < o->n; i++) {
        uint64_t s = o->min_s + 1 + i;
        rc = cons__msg_vote(r, &pps[i], CONSENT__CONS_MSG_TYPE__CONS_MSG_PRE_PREPARE, r->view, s,
                            &o->digests[i]);
        ppb[i].data = pps[i].p;
        ppb[i].len = pps[i].len;
        cons__slot *sl = cons__slot_find(r, s);
        if (sl != NULL && sl->block.p != NULL && sl->vstate != CONS__V_BAD &&
            memcmp(&sl->block_digest, &o->digests[i], sizeof sl->block_digest) == 0) {
            consent__cons_block__init(&blks[nb]);
            blks[nb].seq = s;
            blks[nb].digest.data = sl->block_digest.b;
            blks[nb].digest.len = CHAIN_HASH_LEN;
            blks[nb].data.data = sl->block.p;
            blks[nb].data.len = sl->block.len;
            blkp[nb] = &blks[nb];
            nb++;
        }
    }
    cons__buf env = {0}, full = {0};
    if (rc == CONS_OK) {
        Consent__ConsNewView nv = CONSENT__CONS_NEW_VIEW__INIT;
        nv.view = r->view;
        nv.n_view_changes = k;
        nv.view_changes = vcb;
        nv.n_pre_prepares = o->n;
        nv.pre_prepares = ppb;
        size_t len = consent__cons_new_view__get_packed_size(&nv);
        uint8_t *body = malloc(len > 0 ? len : 1);
        if (body == NULL) rc = CONS_ENOMEM;
        if (rc == CONS_OK) {
            consent__cons_new_view__pack(&nv, body);
            rc = cons__msg_make(r, &env, CONSENT__CONS_MSG_TYPE__CONS_MSG_NEW_VIEW, body, len);
        }
        free(body);
    }
    if (rc == CONS_OK && env.len > CONS_MSG_BYTES_MAX) rc = CONS_ENOMEM;
    if (rc == CONS_OK) rc = cons__msg_add_blocks(&full, &env, blkp, nb, CONS_MSG_BYTES_MAX);
    if (rc == CONS_OK) rc = cons__send(r, UINT32_MAX, &full);
    if (rc == CONS_OK) rc = install_view(r, now_ms, r->view, o, d[o->proof_vc].vc, pps, NULL);
    cons__buf_free(&env);
    cons__buf_free(&full);
    for (size_t i = 0; pps != NULL && i < CONS__WINDOW_MAX; i++) cons__buf_free(&pps[i]);
    for (size_t i = 0; i < k; i++) vc_dec_free(&d[i]);
    free(o);
    free(pps);
    free(blks);
    free(blkp);
    return rc;
}

/* Checks the re-issued pre-prepares of a NewView against O. */
static int nv_pps_check(const cons_replica *r, const Consent__ConsNewView *nv, const oset *o,
                        cons__buf *pps)
{
    if (nv->n_pre_prepares != o->n) return CONS_EDECODE;
    for (size_t i = 0; i < o->n; i++) {
        cons__msg pp;
        int rc = cons__msg_parse_type(r, &pp, nv->pre_prepares[i].data, nv->pre_prepares[i].len,
                                      CONSENT__CONS_MSG_TYPE__CONS_MSG_PRE_PREPARE);
        if (rc != CONS_OK) return rc;
        int bad = pp.view != nv->view || pp.sender != cons__primary_of(r, nv->view) ||
                  pp.seq != o->min_s + 1 + i || memcmp(&pp.digest, &o->digests[i], sizeof pp.digest) != 0;
        cons__msg_free(&pp);
        if (bad) return CONS_EDECODE;
        pps[i].p = nv->pre_prepares[i].data;
        pps[i].len = nv->pre_prepares[i].len;
    }
    return CONS_OK;
}

/* Verifies the ViewChanges of a NewView; fills d[0..k). */
static int nv_vcs_check(const cons_replica *r, const Consent__ConsNewView *nv, vc_dec *d)
{
    uint8_t seen[CHAIN_VALIDATORS_MAX] = {0};
    if (nv->n_view_changes < r->quorum || nv->n_view_changes > r->n) return CONS_EDECODE;
    for (size_t i = 0; i < nv->n_view_changes; i++) {
        cons__msg m;
        const ProtobufCBinaryData *b = &nv->view_changes[i];
        int rc = cons__msg_decode_type(r, &m, b->data, b->len, CONSENT__CONS_MSG_TYPE__CONS_MSG_VIEW_CHANGE);
        if (rc != CONS_OK) return rc;
        if (seen[m.sender] || m.env->n_blocks != 0) { cons__msg_free(&m); return CONS_EDECODE; }
        seen[m.sender] = 1;
        /* The very bytes we verified when they reached us need no second
         * round of signature checks; anything else is checked in full. */
        const cons__vc *have = &r->vcs[m.sender];
        int known = have->has && have->view == nv->view && have->env.len == b->len &&
                    memcmp(have->env.p, b->data, b->len) == 0;
        cons__msg_free(&m);
        rc = known ? cons__msg_decode_type(r, &m, b->data, b->len, CONSENT__CONS_MSG_TYPE__CONS_MSG_VIEW_CHANGE)
                   : cons__msg_parse_type(r, &m, b->data, b->len, CONSENT__CONS_MSG_TYPE__CONS_MSG_VIEW_CHANGE);
        if (rc != CONS_OK) return rc;
        rc = vc_decode(&d[i], m.env);
        if (rc == CONS_OK && !known) rc = vc_check(r, d[i].vc, nv->view);
        if (rc == CONS_OK && known && d[i].vc->new_view != nv->view) rc = CONS_EDECODE;
        d[i].env = m.env;   /* d owns the envelope now */
        if (rc != CONS_OK) return rc;
    }
    return CONS_OK;
}

/* A NewView must not re-order a sequence we already delivered. Beyond f
 * faults this is the only line left; refuse such a NewView. */
static int nv_consistent(cons_replica *r, const oset *o)
{
    for (size_t i = 0; i < o->n; i++) {
        uint64_t s = o->min_s + 1 + i;
        cons__slot *sl = cons__slot_find(r, s);
        if (s > r->committed || sl == NULL || !sl->committed_local) continue;
        if (memcmp(&sl->digest, &o->digests[i], sizeof sl->digest) != 0) return CONS_ECONFLICT;
    }
    return CONS_OK;
}

int cons__on_new_view(cons_replica *r, uint64_t now_ms, cons__msg *m)
{
    Consent__ConsNewView *nv = consent__cons_new_view__unpack(NULL, m->env->body.len, m->env->body.data);
    if (nv == NULL) return CONS_EDECODE;
    int rc = CONS_OK;
    vc_dec d[CHAIN_VALIDATORS_MAX];
    memset(d, 0, sizeof d);
    oset *o = calloc(1, sizeof *o);
    cons__buf *pps = calloc(CONS__WINDOW_MAX, sizeof *pps);
    if (o == NULL || pps == NULL) rc = CONS_ENOMEM;
    else if (nv->base.n_unknown_fields != 0) rc = CONS_EDECODE;
    else if (m->sender != cons__primary_of(r, nv->view)) rc = CONS_ESIG;
    else if (nv->view < r->view || (nv->view == r->view && !r->in_vc)) rc = CONS_ESTALE;
    if (rc == CONS_OK) rc = nv_vcs_check(r, nv, d);
    if (rc == CONS_OK) rc = compute_o(r, d, nv->n_view_changes, o);
    if (rc == CONS_OK) rc = nv_pps_check(r, nv, o, pps);
    if (rc == CONS_OK) rc = nv_consistent(r, o);
    if (rc == CONS_OK) rc = install_view(r, now_ms, nv->view, o, d[o->proof_vc].vc, pps, m->env);
    for (size_t i = 0; i < CHAIN_VALIDATORS_MAX; i++) vc_dec_free(&d[i]);
    consent__cons_new_view__free_unpacked(nv, NULL);
    free(o);
    free(pps);
    return rc;
}
