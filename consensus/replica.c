/* replica.c — the PBFT replica: life cycle, the normal case (pre-prepare,
 * prepare, commit), validation of proposed blocks, in-order delivery, the
 * view timer and introspection.
 *
 * Choices worth knowing (see also cons.h):
 *  - A backup asks the node to validate the block at seq (CONS_ACT_VALIDATE)
 *    only once seq-1 is committed, so the node always validates against its
 *    tip; it prepares only after cons_on_validated(ok). Pre-prepares,
 *    prepares and commits of later sequences inside the window are still
 *    accepted and logged meanwhile.
 *  - Blocks are delivered (CONS_ACT_COMMIT) strictly in order, one at a time:
 *    seq k only after cons_on_committed(k-1). If the replica holds no valid
 *    bytes for a committed digest it asks for block sync (CONS_ACT_FETCH).
 */
#include <stdlib.h>
#include <string.h>

#include "consensus/cons_internal.h"

const char *cons_strerror(int err)
{
    switch (err) {
    case CONS_OK: return "ok";
    case CONS_EINVAL: return "invalid argument";
    case CONS_ENOMEM: return "out of memory";
    case CONS_EDECODE: return "malformed consensus message";
    case CONS_ESIG: return "bad signature or unknown sender";
    case CONS_ESTALE: return "stale or duplicate message";
    case CONS_EWINDOW: return "sequence outside the watermarks";
    case CONS_ECONFLICT: return "conflicting messages (evidence kept)";
    case CONS_EBUSY: return "cannot propose now";
    default: return "unknown error";
    }
}

static int config_ok(const cons_config *cfg)
{
    if (cfg == NULL || cfg->genesis == NULL || cfg->key == NULL) return 0;
    uint32_t n = cfg->genesis->n_validators;
    if (n == 0 || n > CHAIN_VALIDATORS_MAX || n > cfg->genesis->n_institutions) return 0;
    if (cfg->checkpoint_interval == 0 || cfg->window < cfg->checkpoint_interval) return 0;
    if (cfg->window > CONS__WINDOW_MAX || cfg->view_timeout_ms == 0) return 0;
    return cfg->view_timeout_ms <= (UINT64_MAX >> (CONS__TIMEOUT_SHIFT_MAX + 1));
}

cons_replica *cons_create(const cons_config *cfg, const uint8_t *persisted, size_t persisted_len,
                          uint64_t committed_height, const chain_hash *committed_hash)
{
    if (!config_ok(cfg)) return NULL;
    chain_pubkey pub;
    chain_key_pubkey(cfg->key, &pub);
    int self = chain_genesis_validator_index(cfg->genesis, &pub);
    if (self < 0) return NULL;
    cons_replica *r = calloc(1, sizeof *r);
    if (r == NULL) return NULL;
    r->cfg = *cfg;
    r->g = cfg->genesis;
    r->n = r->g->n_validators;
    r->f = (r->n - 1) / 3;
    r->quorum = 2 * r->f + 1;
    r->self = (uint32_t)self;
    r->committed = committed_height;
    if (committed_hash != NULL) r->committed_hash = *committed_hash;
    r->slots = calloc(cfg->window, sizeof *r->slots);
    r->acts = calloc(CONS_ACTIONS_MAX, sizeof *r->acts);
    if (r->slots == NULL || r->acts == NULL) goto fail;
    if (persisted != NULL && persisted_len > 0 &&
        cons__persist_restore(r, persisted, persisted_len) != CONS_OK)
        goto fail;
    if (r->next_seq <= r->committed) r->next_seq = r->committed + 1;
    if (r->next_seq <= r->stable_seq) r->next_seq = r->stable_seq + 1;
    r->fetch_target = r->committed;
    assert(r->quorum <= r->n);
    return r;
fail:
    cons_destroy(r);
    return NULL;
}

void cons_destroy(cons_replica *r)
{
    if (r == NULL) return;
    cons__begin(r, NULL);   /* frees the arena */
    if (r->slots != NULL)
        for (uint32_t i = 0; i < r->cfg.window; i++) cons__slot_clear(&r->slots[i]);
    for (uint32_t i = 0; i < CHAIN_VALIDATORS_MAX; i++) {
        cons__buf_free(&r->stable_proof[i]);
        cons__buf_free(&r->vcs[i].env);
        for (uint32_t k = 0; k < CONS__CKPT_PER_SENDER; k++) cons__buf_free(&r->ckpts[i][k].env);
    }
    free(r->slots);
    free(r->acts);
    free(r);
}

int cons_start(cons_replica *r, cons_actions *out, uint64_t now_ms)
{
    if (r == NULL || out == NULL) return CONS_EINVAL;
    cons__begin(r, out);
    int rc = cons__ckpt_restart(r);
    if (rc == CONS_OK && r->in_vc) {
        /* Restarted during a view change: say again where we stand. */
        rc = cons__send_view_change(r, now_ms);
    } else if (rc == CONS_OK) {
        cons__timer_update(r, now_ms, 1);
        if (r->stable_seq > r->committed) cons__fetch(r, r->stable_seq);
        cons__maybe_validate(r);
    }
    return cons__end(r, out, rc);
}

int cons_on_message(cons_replica *r, cons_actions *out, uint64_t now_ms, uint32_t from,
                    const uint8_t *msg, size_t len)
{
    if (r == NULL || out == NULL) return CONS_EINVAL;
    cons__begin(r, out);
    cons__msg m;
    int rc = cons__msg_parse(r, &m, msg, len);
    if (rc != CONS_OK) return cons__end(r, out, rc);
    if (m.sender != from || from == r->self) {
        cons__msg_free(&m);
        return cons__end(r, out, CONS_ESIG);
    }
    switch (m.type) {
    case CONSENT__CONS_MSG_TYPE__CONS_MSG_PRE_PREPARE: rc = cons__on_pre_prepare(r, now_ms, &m); break;
    case CONSENT__CONS_MSG_TYPE__CONS_MSG_PREPARE: rc = cons__on_prepare(r, now_ms, &m); break;
    case CONSENT__CONS_MSG_TYPE__CONS_MSG_COMMIT: rc = cons__on_commit(r, now_ms, &m); break;
    case CONSENT__CONS_MSG_TYPE__CONS_MSG_CHECKPOINT: rc = cons__on_checkpoint(r, now_ms, &m); break;
    case CONSENT__CONS_MSG_TYPE__CONS_MSG_VIEW_CHANGE: rc = cons__on_view_change(r, now_ms, &m); break;
    case CONSENT__CONS_MSG_TYPE__CONS_MSG_NEW_VIEW: rc = cons__on_new_view(r, now_ms, &m); break;
    default: rc = CONS_EDECODE; break;   /* parse refuses other types */
    }
    cons__msg_free(&m);
    return cons__end(r, out, rc);
}

/* ------------------------------------------------------------ normal case */

/* Common gate of the three normal-case messages: current view, not in a view
 * change, sequence inside the watermarks. Returns the slot, round reset to
 * the current view, or NULL with *rc set. */
static cons__slot *round_slot(cons_replica *r, const cons__msg *m, int *rc)
{
    if (r->in_vc || m->view != r->view) { *rc = CONS_ESTALE; return NULL; }
    if (m->seq <= r->stable_seq) { *rc = CONS_ESTALE; return NULL; }
    cons__slot *s = cons__slot_get(r, m->seq);
    if (s == NULL) { *rc = CONS_EWINDOW; return NULL; }
    if (s->view < r->view) cons__slot_new_round(s, r->view);
    *rc = CONS_OK;
    return s;
}

static void slot_set_block(cons__slot *s, const Consent__ConsBlock *b)
{
    chain_hash d;
    if (b == NULL || cons__digest_get(&d, b->digest) != CONS_OK) return;
    if (s->block.p != NULL && memcmp(&s->block_digest, &d, sizeof d) == 0) return;
    if (cons__buf_set(&s->block, b->data.data, b->data.len) != CONS_OK) return;
    s->block_digest = d;
    s->vstate = CONS__V_NONE;
}

int cons__evidence(cons_replica *r, uint32_t who, const cons__buf *a, const uint8_t *b, size_t blen)
{
    Consent__ConsEvidence ev = CONSENT__CONS_EVIDENCE__INIT;
    ev.first.data = a->p;
    ev.first.len = a->len;
    ev.second.data = (uint8_t *)b;
    ev.second.len = blen;
    size_t n = consent__cons_evidence__get_packed_size(&ev);
    uint8_t *p = malloc(n);
    if (p == NULL) return CONS_ENOMEM;
    consent__cons_evidence__pack(&ev, p);
    cons_action *act = cons__act(r, CONS_ACT_EVIDENCE);
    act->to = who;
    act->data = cons__arena_keep(r, p);
    act->len = n;
    return CONS_OK;
}

/* Same (view, seq) seen twice from one validator: duplicate or equivocation. */
static int conflict(cons_replica *r, uint32_t who, const cons__buf *have, const chain_hash *have_d,
                    const cons__msg *m)
{
    if (memcmp(have_d, &m->digest, sizeof *have_d) == 0) return CONS_ESTALE;
    cons__buf second = {0};
    int rc = cons__msg_strip(&second, m->env);
    if (rc == CONS_OK) rc = cons__evidence(r, who, have, second.p, second.len);
    cons__buf_free(&second);
    return rc == CONS_OK ? CONS_ECONFLICT : rc;
}

int cons__on_pre_prepare(cons_replica *r, uint64_t now_ms, cons__msg *m)
{
    int rc;
    if (m->sender != cons__primary_of(r, m->view)) return CONS_ESIG;
    if (m->env->n_blocks != 1) return CONS_EDECODE;
    const Consent__ConsBlock *b = m->env->blocks[0];
    chain_hash bd;
    if (b->seq != m->seq || cons__digest_get(&bd, b->digest) != CONS_OK ||
        memcmp(&bd, &m->digest, sizeof bd) != 0 || b->data.len == 0)
        return CONS_EDECODE;
    cons__slot *s = round_slot(r, m, &rc);
    if (s == NULL) return rc;
    if (m->seq <= r->committed && !s->has_pp) return CONS_ESTALE;
    if (s->has_pp) {
        rc = conflict(r, m->sender, &s->pp_env, &s->digest, m);
        if (rc == CONS_ESTALE && s->block.p == NULL) slot_set_block(s, b);
        if (rc == CONS_ECONFLICT) {
            /* An equivocating primary: evidence is out; replace it. */
            int vrc = cons__start_view_change(r, now_ms, r->view + 1);
            if (vrc != CONS_OK) return vrc;
        }
        return rc;
    }
    rc = cons__msg_strip(&s->pp_env, m->env);
    if (rc != CONS_OK) return rc;
    s->has_pp = 1;
    s->digest = m->digest;
    slot_set_block(s, b);
    cons__timer_update(r, now_ms, 0);
    cons__maybe_validate(r);
    return cons__progress(r, now_ms, s);
}

static int store_vote(cons_replica *r, uint64_t now_ms, cons__msg *m, int commit)
{
    int rc;
    cons__slot *s = round_slot(r, m, &rc);
    if (s == NULL) return rc;
    /* round_slot may have reset the round: index the votes afterwards. */
    cons__vote *v = (commit ? s->com : s->prep) + m->sender;
    if (v->has) return conflict(r, m->sender, &v->env, &v->digest, m);
    rc = cons__msg_strip(&v->env, m->env);
    if (rc != CONS_OK) return rc;
    v->has = 1;
    v->digest = m->digest;
    memcpy(v->sig.b, m->env->signature.data, CHAIN_SIG_LEN);
    return cons__progress(r, now_ms, s);
}

int cons__on_prepare(cons_replica *r, uint64_t now_ms, cons__msg *m)
{
    /* The primary's pre-prepare stands for its prepare. */
    if (m->sender == cons__primary_of(r, m->view)) return CONS_ESIG;
    return store_vote(r, now_ms, m, 0);
}

int cons__on_commit(cons_replica *r, uint64_t now_ms, cons__msg *m)
{
    return store_vote(r, now_ms, m, 1);
}

static uint32_t count_votes(const cons__vote *v, uint32_t n, const chain_hash *d, uint32_t skip)
{
    uint32_t c = 0;
    for (uint32_t i = 0; i < n; i++)
        if (i != skip && v[i].has && memcmp(&v[i].digest, d, sizeof *d) == 0) c++;
    return c;
}

/* Signs a vote, records it as our own and broadcasts it. */
static int cast(cons_replica *r, cons__slot *s, uint32_t type, cons__vote *own)
{
    cons__buf msg = {0};
    int rc = cons__msg_vote(r, &msg, type, s->view, s->seq, &s->digest);
    if (rc != CONS_OK) return rc;
    rc = cons__send(r, UINT32_MAX, &msg);
    if (rc != CONS_OK) { cons__buf_free(&msg); return rc; }
    cons__buf_free(&own->env);
    own->env = msg;
    own->has = 1;
    own->digest = s->digest;
    /* The signature sits at the end of our own encoding; keep it for the cert. */
    Consent__ConsEnvelope *e = consent__cons_envelope__unpack(NULL, msg.len, msg.p);
    if (e == NULL) return CONS_ENOMEM;
    memcpy(own->sig.b, e->signature.data, CHAIN_SIG_LEN);
    consent__cons_envelope__free_unpacked(e, NULL);
    return CONS_OK;
}

static int record_pcert(cons__slot *s, uint32_t primary, uint32_t need)
{
    for (uint32_t i = 0; i < s->pcert_n; i++) cons__buf_free(&s->pcert_prep[i]);
    s->pcert_n = 0;
    int rc = cons__buf_set(&s->pcert_pp, s->pp_env.p, s->pp_env.len);
    for (uint32_t i = 0; rc == CONS_OK && i < CHAIN_VALIDATORS_MAX && s->pcert_n < need; i++) {
        if (i == primary || !s->prep[i].has) continue;
        if (memcmp(&s->prep[i].digest, &s->digest, sizeof s->digest) != 0) continue;
        rc = cons__buf_set(&s->pcert_prep[s->pcert_n], s->prep[i].env.p, s->prep[i].env.len);
        if (rc == CONS_OK) s->pcert_n++;
    }
    if (rc != CONS_OK) return rc;
    assert(s->pcert_n == need);
    s->has_pcert = 1;
    s->pcert_view = s->view;
    s->pcert_digest = s->digest;
    return CONS_OK;
}

static void build_cert(cons_replica *r, cons__slot *s)
{
    chain_cert *c = &s->cert;
    memset(c, 0, sizeof *c);
    c->view = s->view;
    c->height = s->seq;
    c->block_hash = s->digest;
    for (uint32_t i = 0; i < r->n && c->n_sigs < r->quorum; i++) {
        const cons__vote *v = &s->com[i];
        if (!v->has || memcmp(&v->digest, &s->digest, sizeof s->digest) != 0) continue;
        c->sigs[c->n_sigs].validator = r->g->institutions[i].key;
        c->sigs[c->n_sigs].sig = v->sig;
        c->n_sigs++;
    }
    assert(c->n_sigs == r->quorum);
}

int cons__progress(cons_replica *r, uint64_t now_ms, cons__slot *s)
{
    int rc = CONS_OK;
    if (!s->has_pp || r->in_vc || s->view != r->view) return CONS_OK;
    uint32_t p = cons__primary_of(r, s->view);
    /* Even for a digest certified by a NewView, vote only holding valid
     * bytes (or having delivered the block already: it is in our store):
     * then every commit certificate implies f+1 honest replicas that can
     * deliver the block and serve it to the others by sync. */
    int valid = (s->vstate == CONS__V_OK && memcmp(&s->block_digest, &s->digest, sizeof s->digest) == 0) ||
                (s->certified && s->seq <= r->committed);
    if (r->self != p && !s->sent_prepare && valid) {
        rc = cast(r, s, CONSENT__CONS_MSG_TYPE__CONS_MSG_PREPARE, &s->prep[r->self]);
        if (rc != CONS_OK) return rc;
        s->sent_prepare = 1;
    }
    if (!s->prepared && count_votes(s->prep, r->n, &s->digest, p) >= 2 * r->f) {
        rc = record_pcert(s, p, 2 * r->f);
        if (rc != CONS_OK) return rc;
        s->prepared = 1;
    }
    if (s->prepared && !s->sent_commit && (r->self == p || s->sent_prepare)) {
        rc = cast(r, s, CONSENT__CONS_MSG_TYPE__CONS_MSG_COMMIT, &s->com[r->self]);
        if (rc != CONS_OK) return rc;
        s->sent_commit = 1;
    }
    if (!s->committed_local && count_votes(s->com, r->n, &s->digest, UINT32_MAX) >= r->quorum) {
        build_cert(r, s);
        s->committed_local = 1;
    }
    (void)now_ms;
    return cons__try_deliver(r);
}

int cons__try_deliver(cons_replica *r)
{
    cons__slot *s = cons__slot_find(r, r->committed + 1);
    if (s == NULL || !s->committed_local || s->commit_emitted) return CONS_OK;
    int have = s->block.p != NULL && memcmp(&s->block_digest, &s->digest, sizeof s->digest) == 0;
    if (have && (s->vstate == CONS__V_NONE || s->vstate == CONS__V_PENDING)) {
        cons__maybe_validate(r);   /* wait for the node's verdict on the bytes */
        return CONS_OK;
    }
    s->commit_emitted = 1;
    if (!have || s->vstate != CONS__V_OK) {
        cons__fetch(r, s->seq);
        return CONS_OK;
    }
    uint8_t *blk = malloc(s->block.len);
    chain_cert *cert = malloc(sizeof *cert);
    if (blk == NULL || cert == NULL) {
        free(blk);
        free(cert);
        s->commit_emitted = 0;
        return CONS_ENOMEM;
    }
    memcpy(blk, s->block.p, s->block.len);
    *cert = s->cert;
    cons_action *a = cons__act(r, CONS_ACT_COMMIT);
    a->seq = s->seq;
    a->view = s->view;
    a->data = cons__arena_keep(r, blk);
    a->len = s->block.len;
    a->cert = (const chain_cert *)cons__arena_keep(r, (uint8_t *)cert);
    return CONS_OK;
}

void cons__maybe_validate(cons_replica *r)
{
    if (r->in_vc) return;
    cons__slot *s = cons__slot_find(r, r->committed + 1);
    if (s == NULL || !s->has_pp || s->view != r->view || s->vstate != CONS__V_NONE) return;
    if (s->block.p == NULL || memcmp(&s->block_digest, &s->digest, sizeof s->digest) != 0) return;
    uint8_t *copy = malloc(s->block.len);
    if (copy == NULL) return;   /* retried at the next event */
    memcpy(copy, s->block.p, s->block.len);
    cons_action *a = cons__act(r, CONS_ACT_VALIDATE);
    a->seq = s->seq;
    a->data = cons__arena_keep(r, copy);
    a->len = s->block.len;
    s->vstate = CONS__V_PENDING;
}

int cons_on_validated(cons_replica *r, cons_actions *out, uint64_t now_ms, uint64_t seq,
                      const chain_hash *digest, int ok)
{
    if (r == NULL || out == NULL || digest == NULL) return CONS_EINVAL;
    cons__begin(r, out);
    cons__slot *s = cons__slot_find(r, seq);
    if (s == NULL || s->vstate != CONS__V_PENDING || s->block.p == NULL ||
        memcmp(&s->block_digest, digest, sizeof *digest) != 0)
        return cons__end(r, out, CONS_ESTALE);
    if (ok) {
        s->vstate = CONS__V_OK;
    } else {
        /* Bad bytes: never vote for them and never hand them to COMMIT. */
        cons__buf_free(&s->block);
        s->vstate = CONS__V_BAD;
    }
    int rc = cons__progress(r, now_ms, s);
    if (rc == CONS_OK) rc = cons__try_deliver(r);
    return cons__end(r, out, rc);
}

int cons_on_committed(cons_replica *r, cons_actions *out, uint64_t now_ms, uint64_t seq,
                      const chain_hash *digest)
{
    if (r == NULL || out == NULL || digest == NULL) return CONS_EINVAL;
    cons__begin(r, out);
    if (seq <= r->committed) return cons__end(r, out, CONS_ESTALE);
    r->committed = seq;
    r->committed_hash = *digest;
    if (r->next_seq <= seq) r->next_seq = seq + 1;
    if (!r->in_vc) r->failed_views = 0;   /* progress: the view works */
    r->request_pending = 0;
    int rc = cons__checkpoint_after_commit(r, seq, digest);
    if (rc == CONS_OK) {
        cons__maybe_validate(r);
        rc = cons__try_deliver(r);
    }
    cons__timer_update(r, now_ms, 1);
    return cons__end(r, out, rc);
}

int cons_propose(cons_replica *r, cons_actions *out, uint64_t now_ms, const uint8_t *block,
                 size_t len, const chain_hash *digest)
{
    if (r == NULL || out == NULL || block == NULL || digest == NULL || len == 0 ||
        len > CHAIN_BLOCK_BYTES_MAX)
        return CONS_EINVAL;
    cons__begin(r, out);
    if (r->in_vc || cons__primary_of(r, r->view) != r->self) return cons__end(r, out, CONS_EBUSY);
    cons__slot *s = cons__slot_get(r, r->next_seq);
    if (s == NULL) return cons__end(r, out, CONS_EBUSY);
    if (s->view < r->view) cons__slot_new_round(s, r->view);
    if (s->has_pp) return cons__end(r, out, CONS_EBUSY);
    cons__buf pp = {0}, full = {0};
    int rc = cons__msg_vote(r, &pp, CONSENT__CONS_MSG_TYPE__CONS_MSG_PRE_PREPARE, r->view, s->seq, digest);
    if (rc != CONS_OK) return cons__end(r, out, rc);
    Consent__ConsBlock cb = CONSENT__CONS_BLOCK__INIT;
    Consent__ConsBlock *cbs[1] = {&cb};
    cb.seq = s->seq;
    cb.digest.data = (uint8_t *)digest->b;
    cb.digest.len = CHAIN_HASH_LEN;
    cb.data.data = (uint8_t *)block;
    cb.data.len = len;
    rc = cons__msg_add_blocks(&full, &pp, cbs, 1, CONS_MSG_BYTES_MAX);
    if (rc == CONS_OK) rc = cons__buf_set(&s->block, block, len);
    if (rc == CONS_OK) rc = cons__send(r, UINT32_MAX, &full);
    cons__buf_free(&full);
    if (rc != CONS_OK) {
        cons__buf_free(&pp);
        return cons__end(r, out, rc);
    }
    s->pp_env = pp;
    s->has_pp = 1;
    s->digest = *digest;
    s->block_digest = *digest;
    s->vstate = CONS__V_OK;   /* the node built it */
    r->next_seq = s->seq + 1;
    cons__timer_update(r, now_ms, 0);
    return cons__end(r, out, cons__progress(r, now_ms, s));
}

int cons_request_pending(cons_replica *r, cons_actions *out, uint64_t now_ms)
{
    if (r == NULL || out == NULL) return CONS_EINVAL;
    cons__begin(r, out);
    r->request_pending = 1;
    cons__timer_update(r, now_ms, 0);
    return cons__end(r, out, CONS_OK);
}

int cons_on_timer(cons_replica *r, cons_actions *out, uint64_t now_ms)
{
    if (r == NULL || out == NULL) return CONS_EINVAL;
    cons__begin(r, out);
    /* A late or early call for a timer we re-armed or cancelled is harmless. */
    if (!r->timer_armed || now_ms < r->timer_at) return cons__end(r, out, CONS_OK);
    r->timer_armed = 0;
    if (r->in_vc && cons__vc_count(r, r->view) < r->quorum) {
        /* PBFT: a view change only escalates once 2f+1 replicas are in it
         * (or beyond); alone ahead, a replica would run away from the others
         * forever.
         * Say it again instead (it may have been lost) and wait. */
        int rc = cons__send_view_change(r, now_ms);
        if (rc == CONS_OK) rc = cons__ckpt_resend(r);
        return cons__end(r, out, rc);
    }
    return cons__end(r, out, cons__start_view_change(r, now_ms, r->view + 1));
}

static int work_pending(cons_replica *r)
{
    if (r->request_pending) return 1;
    for (uint32_t i = 0; i < r->cfg.window; i++) {
        const cons__slot *s = &r->slots[i];
        if (s->used && s->has_pp && s->view == r->view && s->seq > r->committed) return 1;
    }
    return 0;
}

void cons__timer_update(cons_replica *r, uint64_t now_ms, int restart)
{
    if (r->in_vc) return;   /* the view-change timer runs on its own */
    if (!work_pending(r)) {
        cons__timer_cancel(r);
        return;
    }
    if (!r->timer_armed || restart) cons__timer_set(r, now_ms + cons__timeout_ms(r));
}

uint64_t cons_view(const cons_replica *r) { return r->view; }
uint32_t cons_primary(const cons_replica *r) { return cons__primary_of(r, r->view); }
int cons_is_primary(const cons_replica *r) { return !r->in_vc && cons_primary(r) == r->self; }
uint64_t cons_next_seq(const cons_replica *r) { return r->next_seq; }
uint64_t cons_low_watermark(const cons_replica *r) { return r->stable_seq; }
uint64_t cons_view_changes(const cons_replica *r) { return r->view_changes; }
uint64_t cons_dropped(const cons_replica *r) { return r->dropped; }
uint64_t cons_committed(const cons_replica *r) { return r->committed; }
int cons_in_view_change(const cons_replica *r) { return r->in_vc; }
