/* log.c — the replica's message log and its output.
 *
 * The log is a ring of cfg.window slots: sequence s lives in slot s % window
 * while low < s <= low + window (low = the stable checkpoint), so the log
 * needs no allocation after start-up and old entries vanish when the low
 * watermark moves. The output of one call is an action list plus an arena of
 * buffers the actions point into; both live until the next call, as cons.h
 * promises. cons__end puts CONS_ACT_PERSIST first whenever the list holds a
 * signed message, so the node, executing in order, persists before it sends.
 */
#include <stdlib.h>
#include <string.h>

#include "consensus/cons_internal.h"

void cons__buf_free(cons__buf *b)
{
    free(b->p);
    b->p = NULL;
    b->len = 0;
}

int cons__buf_set(cons__buf *b, const uint8_t *p, size_t len)
{
    uint8_t *c = malloc(len > 0 ? len : 1);
    if (c == NULL) return CONS_ENOMEM;
    if (len > 0) memcpy(c, p, len);
    free(b->p);
    b->p = c;
    b->len = len;
    return CONS_OK;
}

static void votes_clear(cons__vote *v, uint32_t n)
{
    for (uint32_t i = 0; i < n; i++) {
        cons__buf_free(&v[i].env);
        v[i].has = 0;
    }
}

void cons__slot_new_round(cons__slot *s, uint64_t view)
{
    assert(s->used);
    assert(view >= s->view);
    s->view = view;
    s->has_pp = 0;
    memset(&s->digest, 0, sizeof s->digest);
    cons__buf_free(&s->pp_env);
    s->certified = 0;
    s->sent_prepare = 0;
    s->sent_commit = 0;
    s->prepared = 0;
    s->committed_local = 0;
    s->commit_emitted = 0;
    votes_clear(s->prep, CHAIN_VALIDATORS_MAX);
    votes_clear(s->com, CHAIN_VALIDATORS_MAX);
    memset(&s->cert, 0, sizeof s->cert);
}

void cons__slot_clear(cons__slot *s)
{
    if (!s->used) return;
    cons__slot_new_round(s, s->view);
    cons__buf_free(&s->block);
    cons__buf_free(&s->pcert_pp);
    for (uint32_t i = 0; i < s->pcert_n; i++) cons__buf_free(&s->pcert_prep[i]);
    memset(s, 0, sizeof *s);
}

cons__slot *cons__slot_get(cons_replica *r, uint64_t seq)
{
    if (seq <= r->stable_seq || seq - r->stable_seq > r->cfg.window) return NULL;
    cons__slot *s = &r->slots[seq % r->cfg.window];
    if (s->used && s->seq != seq) {
        /* Only a slot at or below the low watermark can be in the way, and
         * cons__log_gc clears those when the watermark moves. */
        assert(s->seq <= r->stable_seq);
        cons__slot_clear(s);
    }
    if (!s->used) {
        s->used = 1;
        s->seq = seq;
        s->view = r->view;
    }
    return s;
}

cons__slot *cons__slot_find(cons_replica *r, uint64_t seq)
{
    if (seq <= r->stable_seq || seq - r->stable_seq > r->cfg.window) return NULL;
    cons__slot *s = &r->slots[seq % r->cfg.window];
    return (s->used && s->seq == seq) ? s : NULL;
}

void cons__log_gc(cons_replica *r, uint64_t seq)
{
    for (uint32_t i = 0; i < r->cfg.window; i++) {
        cons__slot *s = &r->slots[i];
        if (s->used && s->seq <= seq) cons__slot_clear(s);
    }
}

static void arena_free(cons_replica *r)
{
    for (size_t i = 0; i < r->n_arena; i++) free(r->arena[i]);
    r->n_arena = 0;
}

void cons__begin(cons_replica *r, cons_actions *out)
{
    arena_free(r);
    r->n_acts = 0;
    r->need_persist = 0;
    if (out != NULL) {
        out->n = 0;
        out->items = r->acts;
    }
}

int cons__end(cons_replica *r, cons_actions *out, int rc)
{
    if (r->need_persist) {
        uint8_t *blob = NULL;
        size_t len = 0;
        int prc = cons__persist_encode(r, &blob, &len);
        if (prc != CONS_OK) {
            /* Nothing may leave unpersisted: drop every action of this call
             * (the state change stays; the timer will retry). */
            r->n_acts = 0;
            rc = prc;
        } else {
            assert(r->n_acts < CONS_ACTIONS_MAX);
            memmove(r->acts + 1, r->acts, r->n_acts * sizeof r->acts[0]);
            r->n_acts++;
            memset(&r->acts[0], 0, sizeof r->acts[0]);
            r->acts[0].type = CONS_ACT_PERSIST;
            r->acts[0].view = r->view;
            r->acts[0].data = cons__arena_keep(r, blob);
            r->acts[0].len = len;
        }
    }
    r->need_persist = 0;
    if (out != NULL) {
        out->n = r->n_acts;
        out->items = r->acts;
    }
    if (rc != CONS_OK && rc != CONS_ENOMEM) r->dropped++;
    return rc;
}

cons_action *cons__act(cons_replica *r, cons_action_type type)
{
    /* One slot stays free for the PERSIST that cons__end may prepend. The
     * bound holds by construction: one call emits O(window + n) actions. */
    assert(r->n_acts + 1 < CONS_ACTIONS_MAX);
    cons_action *a = &r->acts[r->n_acts++];
    memset(a, 0, sizeof *a);
    a->type = type;
    a->view = r->view;
    return a;
}

const uint8_t *cons__arena_keep(cons_replica *r, uint8_t *p)
{
    assert(r->n_arena < CONS__ARENA_MAX);
    r->arena[r->n_arena++] = p;
    return p;
}

int cons__send(cons_replica *r, uint32_t to, const cons__buf *msg)
{
    uint8_t *copy = malloc(msg->len);
    if (copy == NULL) return CONS_ENOMEM;
    memcpy(copy, msg->p, msg->len);
    cons_action *a = cons__act(r, to == UINT32_MAX ? CONS_ACT_BROADCAST : CONS_ACT_SEND);
    a->to = to == UINT32_MAX ? 0 : to;
    a->data = cons__arena_keep(r, copy);
    a->len = msg->len;
    r->need_persist = 1;
    return CONS_OK;
}

void cons__timer_set(cons_replica *r, uint64_t at_ms)
{
    r->timer_armed = 1;
    r->timer_at = at_ms;
    cons_action *a = cons__act(r, CONS_ACT_SET_TIMER);
    a->at_ms = at_ms;
}

void cons__timer_cancel(cons_replica *r)
{
    if (!r->timer_armed) return;
    r->timer_armed = 0;
    (void)cons__act(r, CONS_ACT_CANCEL_TIMER);
}

uint64_t cons__timeout_ms(const cons_replica *r)
{
    uint32_t k = r->failed_views < CONS__TIMEOUT_SHIFT_MAX ? r->failed_views : CONS__TIMEOUT_SHIFT_MAX;
    return r->cfg.view_timeout_ms << k;
}

uint32_t cons__primary_of(const cons_replica *r, uint64_t view)
{
    return (uint32_t)(view % r->n);
}
