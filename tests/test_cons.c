/* test_cons.c — unit tests of the PBFT replica (consensus/).
 *
 * A small in-process cluster (n replicas, a FIFO network, the node's side of
 * VALIDATE/COMMIT answered at once) drives each handler; single messages are
 * forged with the replicas' own signing helpers to probe every refusal:
 * garbage, oversized, bad signature, unknown sender, wrong view, outside the
 * watermarks, duplicates, equivocation. Every action list that sends a
 * signed message must start with CONS_ACT_PERSIST; the pump checks it.
 */
#include <check.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cons_fixture.h"
#include "consensus/cons_internal.h"

#define Q_MAX 8192
#define NMAX 7

typedef struct { uint32_t from, to; uint8_t *d; size_t len; } qmsg;
typedef struct { uint32_t node; uint64_t seq; chain_hash digest; int ok; int commit; } qwork;

typedef struct {
    fix_net net;
    uint32_t n, k, window;
    cons_replica *r[NMAX];
    qmsg q[Q_MAX];
    size_t qn;
    qwork w[Q_MAX];
    size_t wn;
    uint64_t now;
    uint64_t height[NMAX];
    chain_hash hashes[NMAX][64];
    chain_cert cert[NMAX][64];
    uint8_t *persist[NMAX];
    size_t plen[NMAX];
    uint64_t cut;                   /* bit i: node i's links are cut */
    uint32_t drop_type;             /* drop messages of this type (0: none) */
    int validate_ok;                /* answer VALIDATE with this */
    int hold_validate;              /* do not answer VALIDATE at all */
    uint32_t evidence[NMAX], fetch[NMAX], new_primary[NMAX], validates[NMAX];
    uint64_t fetch_seq[NMAX], timer_at[NMAX];
    int timer_armed[NMAX];
} clus;

static void clus_init(clus *c, uint32_t n, uint32_t k, uint32_t window)
{
    memset(c, 0, sizeof *c);
    ck_assert_int_eq(fix_net_init(&c->net, n), 0);
    c->n = n;
    c->k = k;
    c->window = window;
    c->validate_ok = 1;
    for (uint32_t i = 0; i < n; i++) {
        cons_config cfg = fix_config(&c->net, i, k, window, 1000);
        c->r[i] = cons_create(&cfg, NULL, 0, 0, NULL);
        ck_assert_ptr_nonnull(c->r[i]);
    }
}

static void clus_free(clus *c)
{
    for (size_t i = 0; i < c->qn; i++) free(c->q[i].d);
    for (uint32_t i = 0; i < c->n; i++) {
        cons_destroy(c->r[i]);
        free(c->persist[i]);
    }
    fix_net_free(&c->net);
}

static uint32_t msg_type(const uint8_t *d, size_t len)
{
    Consent__ConsEnvelope *e = consent__cons_envelope__unpack(NULL, len, d);
    uint32_t t = e ? (uint32_t)e->type : 0;
    if (e) consent__cons_envelope__free_unpacked(e, NULL);
    return t;
}

static void enqueue(clus *c, uint32_t from, uint32_t to, const uint8_t *d, size_t len)
{
    if (((c->cut >> from) | (c->cut >> to)) & 1) return;
    if (c->drop_type != 0 && msg_type(d, len) == c->drop_type) return;
    ck_assert_uint_lt(c->qn, Q_MAX);
    c->q[c->qn].from = from;
    c->q[c->qn].to = to;
    c->q[c->qn].d = malloc(len);
    memcpy(c->q[c->qn].d, d, len);
    c->q[c->qn].len = len;
    c->qn++;
}

/* Plays the node for replica i: checks persist-before-send, routes. */
static void acts(clus *c, uint32_t i, const cons_actions *a)
{
    int sends = 0;
    for (size_t k = 0; k < a->n; k++)
        sends |= a->items[k].type == CONS_ACT_SEND || a->items[k].type == CONS_ACT_BROADCAST;
    if (sends) ck_assert_int_eq(a->items[0].type, CONS_ACT_PERSIST);
    for (size_t k = 0; k < a->n; k++) {
        const cons_action *x = &a->items[k];
        switch (x->type) {
        case CONS_ACT_PERSIST:
            free(c->persist[i]);
            c->persist[i] = malloc(x->len);
            memcpy(c->persist[i], x->data, x->len);
            c->plen[i] = x->len;
            break;
        case CONS_ACT_SEND: enqueue(c, i, x->to, x->data, x->len); break;
        case CONS_ACT_BROADCAST:
            for (uint32_t j = 0; j < c->n; j++)
                if (j != i) enqueue(c, i, j, x->data, x->len);
            break;
        case CONS_ACT_SET_TIMER: c->timer_armed[i] = 1; c->timer_at[i] = x->at_ms; break;
        case CONS_ACT_CANCEL_TIMER: c->timer_armed[i] = 0; break;
        case CONS_ACT_VALIDATE:
            c->validates[i]++;
            if (!c->hold_validate) {
                qwork *w = &c->w[c->wn++];
                w->node = i;
                w->seq = x->seq;
                chain_sha256(&w->digest, x->data, x->len);
                w->ok = c->validate_ok;
                w->commit = 0;
            }
            break;
        case CONS_ACT_COMMIT: {
            qwork *w = &c->w[c->wn++];
            ck_assert_uint_eq(x->seq, c->height[i] + 1);
            ck_assert_ptr_nonnull(x->cert);
            w->node = i;
            w->seq = x->seq;
            w->digest = x->cert->block_hash;
            w->commit = 1;
            c->height[i] = x->seq;
            c->hashes[i][x->seq] = x->cert->block_hash;
            c->cert[i][x->seq] = *x->cert;
            break;
        }
        case CONS_ACT_EVIDENCE: c->evidence[x->to]++; break;
        case CONS_ACT_NEW_PRIMARY: c->new_primary[i]++; break;
        case CONS_ACT_FETCH: c->fetch[i]++; c->fetch_seq[i] = x->seq; break;
        }
    }
}

/* Delivers everything until the cluster is quiet. */
static void pump(clus *c)
{
    cons_actions a;
    for (int guard = 0; guard < 100000 && (c->qn > 0 || c->wn > 0); guard++) {
        if (c->wn > 0) {
            qwork w = c->w[0];
            memmove(c->w, c->w + 1, --c->wn * sizeof c->w[0]);
            int rc = w.commit ? cons_on_committed(c->r[w.node], &a, c->now, w.seq, &w.digest)
                              : cons_on_validated(c->r[w.node], &a, c->now, w.seq, &w.digest, w.ok);
            if (rc == CONS_OK) acts(c, w.node, &a);
            continue;
        }
        qmsg m = c->q[0];
        memmove(c->q, c->q + 1, --c->qn * sizeof c->q[0]);
        if (!((c->cut >> m.to) & 1) && cons_on_message(c->r[m.to], &a, c->now, m.from, m.d, m.len) == CONS_OK)
            acts(c, m.to, &a);
        free(m.d);
    }
}

static void propose(clus *c, uint32_t p, const char *text, chain_hash *d)
{
    cons_actions a;
    chain_sha256(d, text, strlen(text));
    ck_assert_int_eq(cons_propose(c->r[p], &a, c->now, (const uint8_t *)text, strlen(text), d), CONS_OK);
    acts(c, p, &a);
}

static void fire_timers(clus *c, uint64_t at)
{
    cons_actions a;
    c->now = at;
    for (uint32_t i = 0; i < c->n; i++)
        if (!((c->cut >> i) & 1) && c->timer_armed[i] && c->timer_at[i] <= at) {
            c->timer_armed[i] = 0;
            ck_assert_int_eq(cons_on_timer(c->r[i], &a, at), CONS_OK);
            acts(c, i, &a);
        }
}

/* A message of validator j, signed with its key by a scratch replica. */
static cons__buf forge_vote(clus *c, uint32_t j, uint32_t type, uint64_t view, uint64_t seq,
                            const chain_hash *d)
{
    cons_config cfg = fix_config(&c->net, j, c->k, c->window, 1000);
    cons_replica *s = cons_create(&cfg, NULL, 0, 0, NULL);
    cons__buf b = {0};
    ck_assert_int_eq(cons__msg_vote(s, &b, type, view, seq, d), CONS_OK);
    cons_destroy(s);
    return b;
}

/* A pre-prepare with its block sidecar. */
static cons__buf forge_pp(clus *c, uint32_t j, uint64_t view, uint64_t seq, const char *text)
{
    chain_hash d;
    chain_sha256(&d, text, strlen(text));
    cons__buf pp = forge_vote(c, j, CONSENT__CONS_MSG_TYPE__CONS_MSG_PRE_PREPARE, view, seq, &d), full = {0};
    Consent__ConsBlock cb = CONSENT__CONS_BLOCK__INIT, *cbs[1] = {&cb};
    cb.seq = seq;
    cb.digest.data = d.b;
    cb.digest.len = CHAIN_HASH_LEN;
    cb.data.data = (uint8_t *)text;
    cb.data.len = strlen(text);
    ck_assert_int_eq(cons__msg_add_blocks(&full, &pp, cbs, 1, CONS_MSG_BYTES_MAX), CONS_OK);
    cons__buf_free(&pp);
    return full;
}

static int deliver(clus *c, uint32_t to, uint32_t from, const cons__buf *b, cons_actions *a)
{
    return cons_on_message(c->r[to], a, c->now, from, b->p, b->len);
}

static int has_act(const cons_actions *a, cons_action_type t)
{
    for (size_t k = 0; k < a->n; k++)
        if (a->items[k].type == t) return 1;
    return 0;
}

#define PT_PREPARE CONSENT__CONS_MSG_TYPE__CONS_MSG_PREPARE
#define PT_COMMIT CONSENT__CONS_MSG_TYPE__CONS_MSG_COMMIT
#define PT_PP CONSENT__CONS_MSG_TYPE__CONS_MSG_PRE_PREPARE
#define PT_CKPT CONSENT__CONS_MSG_TYPE__CONS_MSG_CHECKPOINT
#define PT_VC CONSENT__CONS_MSG_TYPE__CONS_MSG_VIEW_CHANGE
#define PT_NV CONSENT__CONS_MSG_TYPE__CONS_MSG_NEW_VIEW

/* ------------------------------------------------------------ tests */

START_TEST(create_refuses_bad_config)
{
    fix_net net;
    ck_assert_int_eq(fix_net_init(&net, 4), 0);
    cons_config cfg = fix_config(&net, 0, 4, 8, 1000);
    ck_assert_ptr_null(cons_create(NULL, NULL, 0, 0, NULL));
    cfg.window = 3;   /* below K */
    ck_assert_ptr_null(cons_create(&cfg, NULL, 0, 0, NULL));
    cfg.window = CONS__WINDOW_MAX + 1;
    ck_assert_ptr_null(cons_create(&cfg, NULL, 0, 0, NULL));
    cfg = fix_config(&net, 0, 0, 8, 1000);
    ck_assert_ptr_null(cons_create(&cfg, NULL, 0, 0, NULL));
    cfg = fix_config(&net, 0, 4, 8, 0);
    ck_assert_ptr_null(cons_create(&cfg, NULL, 0, 0, NULL));
    chain_key *stranger = fix_key(99, 1);
    cfg = fix_config(&net, 0, 4, 8, 1000);
    cfg.key = stranger;   /* not a validator */
    ck_assert_ptr_null(cons_create(&cfg, NULL, 0, 0, NULL));
    cfg = fix_config(&net, 0, 4, 8, 1000);
    const uint8_t junk[] = {0xff, 0xff, 0xff, 0x01};
    ck_assert_ptr_null(cons_create(&cfg, junk, sizeof junk, 0, NULL));
    cons_replica *r = cons_create(&cfg, NULL, 0, 0, NULL);
    ck_assert_ptr_nonnull(r);
    ck_assert_uint_eq(cons_view(r), 0);
    ck_assert_int_eq(cons_is_primary(r), 1);
    ck_assert_uint_eq(cons_next_seq(r), 1);
    cons_destroy(r);
    chain_key_destroy(stranger);
    fix_net_free(&net);
}
END_TEST

START_TEST(strerror_covers_codes)
{
    for (int e = CONS_EBUSY; e <= CONS_OK; e++) ck_assert_str_ne(cons_strerror(e), "unknown error");
    ck_assert_str_eq(cons_strerror(-99), "unknown error");
}
END_TEST

START_TEST(normal_case_commits_with_valid_cert)
{
    clus *c = calloc(1, sizeof *c);
    clus_init(c, 4, 4, 8);
    /* The digest is a real header hash, so chain_cert_verify applies. */
    chain_header h;
    memset(&h, 0, sizeof h);
    snprintf(h.chain_id, sizeof h.chain_id, "%s", FIX_CHAIN_ID);
    h.height = 1;
    h.time_ms = 1795000000001ull;
    chain_hash d;
    chain_header_hash(&h, &d);
    const char *blk = "block one";
    cons_actions a;
    ck_assert_int_eq(cons_propose(c->r[0], &a, 0, (const uint8_t *)blk, strlen(blk), &d), CONS_OK);
    ck_assert_int_eq(a.items[0].type, CONS_ACT_PERSIST);
    ck_assert(has_act(&a, CONS_ACT_BROADCAST));
    acts(c, 0, &a);
    ck_assert_uint_eq(cons_next_seq(c->r[0]), 2);
    /* Backups validate first and send nothing before the verdict. */
    c->hold_validate = 1;
    pump(c);
    for (uint32_t i = 1; i < 4; i++) ck_assert_uint_eq(c->validates[i], 1);
    ck_assert_uint_eq(c->height[1], 0);
    c->hold_validate = 0;
    chain_hash bd;
    chain_sha256(&bd, blk, strlen(blk));
    /* A verdict on other bytes than the proposed digest is refused. */
    ck_assert_int_eq(cons_on_validated(c->r[1], &a, 0, 1, &bd, 1), CONS_ESTALE);
    ck_assert_int_eq(cons_on_validated(c->r[1], &a, 0, 2, &d, 1), CONS_ESTALE);
    /* The node validates the block whose header hash is d: answer with d. */
    for (uint32_t i = 1; i < 4; i++) {
        cons_replica *r = c->r[i];
        ck_assert_int_eq(cons_on_validated(r, &a, 0, 1, &d, 1), CONS_OK);
        ck_assert_int_eq(a.items[0].type, CONS_ACT_PERSIST);
        acts(c, i, &a);
    }
    pump(c);
    for (uint32_t i = 0; i < 4; i++) {
        ck_assert_uint_eq(c->height[i], 1);
        ck_assert_int_eq(chain_cert_verify(&c->cert[i][1], c->net.g, &h), CHAIN_OK);
        ck_assert_uint_eq(cons_committed(c->r[i]), 1);
    }
    clus_free(c);
    free(c);
}
END_TEST

START_TEST(pipeline_validates_in_order)
{
    clus *c = calloc(1, sizeof *c);
    clus_init(c, 4, 4, 8);
    chain_hash d1, d2, d3;
    c->hold_validate = 1;
    propose(c, 0, "b1", &d1);
    propose(c, 0, "b2", &d2);
    propose(c, 0, "b3", &d3);
    pump(c);
    /* Only seq 1 is validated before anything is committed. */
    for (uint32_t i = 1; i < 4; i++) ck_assert_uint_eq(c->validates[i], 1);
    c->hold_validate = 0;
    cons_actions a;
    for (uint32_t i = 1; i < 4; i++) {
        ck_assert_int_eq(cons_on_validated(c->r[i], &a, 0, 1, &d1, 1), CONS_OK);
        acts(c, i, &a);
    }
    pump(c);
    for (uint32_t i = 0; i < 4; i++) {
        ck_assert_uint_eq(c->height[i], 3);
        ck_assert_mem_eq(c->hashes[i][2].b, d2.b, 32);
        ck_assert_mem_eq(c->hashes[i][3].b, d3.b, 32);
    }
    clus_free(c);
    free(c);
}
END_TEST

START_TEST(propose_refusals)
{
    clus *c = calloc(1, sizeof *c);
    clus_init(c, 4, 2, 2);
    cons_actions a;
    chain_hash d;
    chain_sha256(&d, "x", 1);
    ck_assert_int_eq(cons_propose(c->r[1], &a, 0, (const uint8_t *)"x", 1, &d), CONS_EBUSY);
    ck_assert_uint_eq(a.n, 0);
    ck_assert_int_eq(cons_propose(c->r[0], &a, 0, NULL, 1, &d), CONS_EINVAL);
    ck_assert_int_eq(cons_propose(c->r[0], &a, 0, (const uint8_t *)"x", 0, &d), CONS_EINVAL);
    ck_assert_int_eq(cons_propose(c->r[0], &a, 0, (const uint8_t *)"x", CHAIN_BLOCK_BYTES_MAX + 1, &d),
                     CONS_EINVAL);
    ck_assert_int_eq(cons_propose(c->r[0], &a, 0, (const uint8_t *)"x", 1, &d), CONS_OK);
    ck_assert_int_eq(cons_propose(c->r[0], &a, 0, (const uint8_t *)"x", 1, &d), CONS_OK);
    /* Window of 2 above the low watermark 0 is full. */
    ck_assert_int_eq(cons_propose(c->r[0], &a, 0, (const uint8_t *)"x", 1, &d), CONS_EBUSY);
    ck_assert_int_eq(cons_on_message(NULL, &a, 0, 0, (const uint8_t *)"x", 1), CONS_EINVAL);
    ck_assert_int_eq(cons_on_committed(c->r[0], &a, 0, 1, NULL), CONS_EINVAL);
    clus_free(c);
    free(c);
}
END_TEST

START_TEST(bad_input_dropped)
{
    clus *c = calloc(1, sizeof *c);
    clus_init(c, 4, 4, 8);
    cons_actions a;
    fix_rng rng = {12345};
    printf("bad_input_dropped seed=%llu\n", (unsigned long long)rng.s);
    uint8_t junk[512];
    for (int t = 0; t < 200; t++) {
        size_t len = 1 + fix_below(&rng, sizeof junk);
        for (size_t k = 0; k < len; k++) junk[k] = (uint8_t)fix_next(&rng);
        int rc = cons_on_message(c->r[1], &a, 0, 0, junk, len);
        ck_assert_int_lt(rc, 0);
        ck_assert_uint_eq(a.n, 0);
    }
    ck_assert_uint_ge(cons_dropped(c->r[1]), 200);
    /* Oversized. */
    uint8_t *big = calloc(1, CONS_MSG_BYTES_MAX + 1);
    ck_assert_int_eq(cons_on_message(c->r[1], &a, 0, 0, big, CONS_MSG_BYTES_MAX + 1), CONS_EDECODE);
    free(big);
    ck_assert_int_eq(cons_on_message(c->r[1], &a, 0, 0, junk, 0), CONS_EDECODE);
    chain_hash d;
    chain_sha256(&d, "b", 1);
    /* Bad signature: flip one byte of the signature (last bytes). */
    cons__buf p = forge_vote(c, 2, PT_PREPARE, 0, 1, &d);
    p.p[p.len - 1] ^= 1;
    ck_assert_int_eq(deliver(c, 1, 2, &p, &a), CONS_ESIG);
    p.p[p.len - 1] ^= 1;
    /* Unknown sender: the link says someone else, or no such validator. */
    ck_assert_int_eq(deliver(c, 1, 3, &p, &a), CONS_ESIG);
    Consent__ConsEnvelope *e = consent__cons_envelope__unpack(NULL, p.len, p.p);
    e->sender = 9;
    cons__buf q = {malloc(consent__cons_envelope__get_packed_size(e)), 0};
    q.len = consent__cons_envelope__pack(e, q.p);
    consent__cons_envelope__free_unpacked(e, NULL);
    ck_assert_int_eq(cons_on_message(c->r[1], &a, 0, 9, q.p, q.len), CONS_ESIG);
    cons__buf_free(&q);
    /* From ourselves. */
    cons__buf own = forge_vote(c, 1, PT_PREPARE, 0, 1, &d);
    ck_assert_int_eq(deliver(c, 1, 1, &own, &a), CONS_ESIG);
    cons__buf_free(&own);
    /* Valid, then duplicate. */
    ck_assert_int_eq(deliver(c, 1, 2, &p, &a), CONS_OK);
    ck_assert_int_eq(deliver(c, 1, 2, &p, &a), CONS_ESTALE);
    cons__buf_free(&p);
    /* Wrong view (future and, after a view change, past). */
    p = forge_vote(c, 2, PT_PREPARE, 1, 1, &d);
    ck_assert_int_eq(deliver(c, 1, 2, &p, &a), CONS_ESTALE);
    cons__buf_free(&p);
    /* Outside the watermarks: above low + window, and seq 0. */
    p = forge_vote(c, 2, PT_COMMIT, 0, 9, &d);
    ck_assert_int_eq(deliver(c, 1, 2, &p, &a), CONS_EWINDOW);
    cons__buf_free(&p);
    p = forge_vote(c, 2, PT_COMMIT, 0, 0, &d);
    ck_assert_int_eq(deliver(c, 1, 2, &p, &a), CONS_EDECODE);
    cons__buf_free(&p);
    /* The primary does not prepare; a backup does not pre-prepare. */
    p = forge_vote(c, 0, PT_PREPARE, 0, 1, &d);
    ck_assert_int_eq(deliver(c, 1, 0, &p, &a), CONS_ESIG);
    cons__buf_free(&p);
    p = forge_pp(c, 2, 0, 1, "b");
    ck_assert_int_eq(deliver(c, 1, 2, &p, &a), CONS_ESIG);
    cons__buf_free(&p);
    /* A pre-prepare without its block. */
    p = forge_vote(c, 0, PT_PP, 0, 1, &d);
    ck_assert_int_eq(deliver(c, 1, 0, &p, &a), CONS_EDECODE);
    cons__buf_free(&p);
    /* A checkpoint off the K grid. */
    cons_replica *s2 = NULL;
    {
        cons_config cfg = fix_config(&c->net, 2, 4, 8, 1000);
        s2 = cons_create(&cfg, NULL, 0, 0, NULL);
        ck_assert_int_eq(cons__msg_checkpoint(s2, &p, 3, &d), CONS_OK);
        cons_destroy(s2);
    }
    ck_assert_int_eq(deliver(c, 1, 2, &p, &a), CONS_EDECODE);
    cons__buf_free(&p);
    /* Nothing above changed the replica's state. */
    ck_assert_uint_eq(cons_view(c->r[1]), 0);
    ck_assert_uint_eq(cons_low_watermark(c->r[1]), 0);
    ck_assert_uint_eq(c->evidence[0] + c->evidence[2], 0);
    clus_free(c);
    free(c);
}
END_TEST

START_TEST(equivocating_primary_gives_evidence_and_view_change)
{
    clus *c = calloc(1, sizeof *c);
    clus_init(c, 4, 4, 8);
    cons_actions a;
    cons__buf p1 = forge_pp(c, 0, 0, 1, "left"), p2 = forge_pp(c, 0, 0, 1, "right");
    ck_assert_int_eq(deliver(c, 1, 0, &p1, &a), CONS_OK);
    ck_assert_int_eq(deliver(c, 1, 0, &p1, &a), CONS_ESTALE);   /* duplicate */
    ck_assert_int_eq(deliver(c, 1, 0, &p2, &a), CONS_ECONFLICT);
    ck_assert(has_act(&a, CONS_ACT_EVIDENCE));
    ck_assert_int_eq(a.items[0].type, CONS_ACT_PERSIST);
    acts(c, 1, &a);
    ck_assert_uint_eq(c->evidence[0], 1);
    ck_assert_uint_eq(cons_view(c->r[1]), 1);
    ck_assert_int_eq(cons_in_view_change(c->r[1]), 1);
    ck_assert_uint_eq(cons_view_changes(c->r[1]), 1);
    /* The evidence holds both signed pre-prepares. */
    cons__buf_free(&p1);
    cons__buf_free(&p2);
    clus_free(c);
    free(c);
}
END_TEST

START_TEST(equivocating_backup_gives_evidence)
{
    clus *c = calloc(1, sizeof *c);
    clus_init(c, 4, 4, 8);
    cons_actions a;
    chain_hash d1, d2;
    chain_sha256(&d1, "1", 1);
    chain_sha256(&d2, "2", 1);
    cons__buf p1 = forge_vote(c, 3, PT_COMMIT, 0, 1, &d1), p2 = forge_vote(c, 3, PT_COMMIT, 0, 1, &d2);
    ck_assert_int_eq(deliver(c, 1, 3, &p1, &a), CONS_OK);
    ck_assert_int_eq(deliver(c, 1, 3, &p2, &a), CONS_ECONFLICT);
    ck_assert_uint_eq(a.n, 1);
    ck_assert_int_eq(a.items[0].type, CONS_ACT_EVIDENCE);
    ck_assert_uint_eq(a.items[0].to, 3);
    Consent__ConsEvidence *ev = consent__cons_evidence__unpack(NULL, a.items[0].len, a.items[0].data);
    ck_assert_ptr_nonnull(ev);
    ck_assert_uint_eq(ev->first.len, p1.len);
    ck_assert_mem_eq(ev->first.data, p1.p, p1.len);
    ck_assert_mem_eq(ev->second.data, p2.p, p2.len);
    consent__cons_evidence__free_unpacked(ev, NULL);
    ck_assert_uint_eq(cons_view(c->r[1]), 0);   /* a backup's fault needs no view change */
    cons__buf_free(&p1);
    cons__buf_free(&p2);
    clus_free(c);
    free(c);
}
END_TEST

START_TEST(invalid_block_never_voted_or_committed)
{
    clus *c = calloc(1, sizeof *c);
    clus_init(c, 4, 4, 8);
    chain_hash d;
    c->validate_ok = 0;
    propose(c, 0, "bad block", &d);
    pump(c);
    for (uint32_t i = 0; i < 4; i++) ck_assert_uint_eq(c->height[i], 0);
    for (uint32_t i = 1; i < 4; i++) ck_assert(cons__slot_find(c->r[i], 1)->sent_prepare == 0);
    clus_free(c);
    free(c);
}
END_TEST

START_TEST(persisted_vote_survives_restart)
{
    clus *c = calloc(1, sizeof *c);
    clus_init(c, 4, 4, 8);
    cons_actions a;
    /* Backup 1 prepares "left" at (0, 1), then crashes. */
    cons__buf p1 = forge_pp(c, 0, 0, 1, "left"), p2 = forge_pp(c, 0, 0, 1, "right");
    ck_assert_int_eq(deliver(c, 1, 0, &p1, &a), CONS_OK);
    acts(c, 1, &a);
    c->cut = 1u << 1;   /* keep its messages to itself */
    pump(c);
    ck_assert_ptr_nonnull(c->persist[1]);
    ck_assert(cons__slot_find(c->r[1], 1)->sent_prepare);
    cons_destroy(c->r[1]);
    cons_config cfg = fix_config(&c->net, 1, 4, 8, 1000);
    c->r[1] = cons_create(&cfg, c->persist[1], c->plen[1], 0, NULL);
    ck_assert_ptr_nonnull(c->r[1]);
    ck_assert_int_eq(cons_start(c->r[1], &a, 0), CONS_OK);
    acts(c, 1, &a);
    /* After the restart it never signs "right" for the same slot. */
    c->validates[1] = 0;
    ck_assert_int_eq(deliver(c, 1, 0, &p2, &a), CONS_ECONFLICT);
    ck_assert(has_act(&a, CONS_ACT_EVIDENCE));
    for (size_t k = 0; k < a.n; k++)
        if (a.items[k].type == CONS_ACT_BROADCAST) ck_assert_uint_ne(msg_type(a.items[k].data, a.items[k].len), PT_PREPARE);
    ck_assert_uint_eq(c->validates[1], 0);
    cons__buf_free(&p1);
    cons__buf_free(&p2);
    /* The primary's next sequence survives too: no second block at seq 1. */
    chain_hash d;
    propose(c, 0, "one", &d);
    cons_destroy(c->r[0]);
    cfg = fix_config(&c->net, 0, 4, 8, 1000);
    c->r[0] = cons_create(&cfg, c->persist[0], c->plen[0], 0, NULL);
    ck_assert_ptr_nonnull(c->r[0]);
    ck_assert_uint_eq(cons_next_seq(c->r[0]), 2);
    clus_free(c);
    free(c);
}
END_TEST

START_TEST(timer_view_change_new_view)
{
    clus *c = calloc(1, sizeof *c);
    clus_init(c, 4, 4, 8);
    cons_actions a;
    for (uint32_t i = 0; i < 4; i++) {
        ck_assert_int_eq(cons_request_pending(c->r[i], &a, 0), CONS_OK);
        ck_assert(has_act(&a, CONS_ACT_SET_TIMER));
        acts(c, i, &a);
    }
    /* An early or spurious call does nothing. */
    ck_assert_int_eq(cons_on_timer(c->r[1], &a, 10), CONS_OK);
    ck_assert_uint_eq(a.n, 0);
    c->cut = 1u << 0;   /* the primary is silent */
    fire_timers(c, 1000);
    pump(c);
    for (uint32_t i = 1; i < 4; i++) {
        ck_assert_uint_eq(cons_view(c->r[i]), 1);
        ck_assert_int_eq(cons_in_view_change(c->r[i]), 0);
        ck_assert_uint_eq(c->new_primary[i], 1);
        ck_assert_uint_eq(cons_primary(c->r[i]), 1);
    }
    ck_assert_int_eq(cons_is_primary(c->r[1]), 1);
    chain_hash d;
    propose(c, 1, "in view one", &d);
    pump(c);
    for (uint32_t i = 1; i < 4; i++) {
        ck_assert_uint_eq(c->height[i], 1);
        ck_assert_uint_eq(c->cert[i][1].view, 1);
    }
    clus_free(c);
    free(c);
}
END_TEST

START_TEST(prepared_block_survives_view_change)
{
    clus *c = calloc(1, sizeof *c);
    clus_init(c, 4, 4, 8);
    chain_hash d;
    c->drop_type = PT_COMMIT;   /* prepared everywhere, committed nowhere */
    propose(c, 0, "keep me", &d);
    pump(c);
    for (uint32_t i = 0; i < 4; i++) ck_assert_uint_eq(c->height[i], 0);
    c->drop_type = 0;
    c->cut = 1u << 0;
    fire_timers(c, 1000);
    pump(c);
    /* The new primary re-issued seq 1 with the same digest: it commits. */
    for (uint32_t i = 1; i < 4; i++) {
        ck_assert_uint_eq(c->height[i], 1);
        ck_assert_mem_eq(c->hashes[i][1].b, d.b, 32);
        ck_assert_uint_eq(c->cert[i][1].view, 1);
        ck_assert_uint_eq(cons_next_seq(c->r[i]), 2);
    }
    clus_free(c);
    free(c);
}
END_TEST

START_TEST(join_view_change_on_f_plus_one)
{
    clus *c = calloc(1, sizeof *c);
    clus_init(c, 4, 4, 8);
    cons_actions a;
    for (uint32_t i = 0; i < 2; i++) {
        ck_assert_int_eq(cons_request_pending(c->r[i], &a, 0), CONS_OK);
        acts(c, i, &a);
    }
    c->cut = 1u << 2;   /* replica 2 stays out */
    fire_timers(c, 1000);   /* 0 and 1 time out; 3 has no timer armed */
    pump(c);
    /* 3 saw f+1 = 2 view changes above its view and joined: with 0, 1 it is
     * a quorum, and the new primary 1 installed view 1. */
    ck_assert_uint_eq(cons_view(c->r[3]), 1);
    ck_assert_int_eq(cons_in_view_change(c->r[3]), 0);
    ck_assert_uint_eq(cons_view(c->r[2]), 0);
    clus_free(c);
    free(c);
}
END_TEST

START_TEST(view_change_messages_checked)
{
    clus *c = calloc(1, sizeof *c);
    clus_init(c, 4, 4, 8);
    cons_actions a;
    ck_assert_int_eq(cons_request_pending(c->r[2], &a, 0), CONS_OK);
    ck_assert_int_eq(cons_on_timer(c->r[2], &a, 5000), CONS_OK);
    /* Take 2's ViewChange for view 1. */
    const cons_action *vc = NULL;
    for (size_t k = 0; k < a.n; k++)
        if (a.items[k].type == CONS_ACT_BROADCAST && msg_type(a.items[k].data, a.items[k].len) == PT_VC) vc = &a.items[k];
    ck_assert_ptr_nonnull(vc);
    cons__buf v = {malloc(vc->len), vc->len};
    memcpy(v.p, vc->data, vc->len);
    ck_assert_int_eq(deliver(c, 1, 2, &v, &a), CONS_OK);
    ck_assert_int_eq(deliver(c, 1, 2, &v, &a), CONS_ESTALE);   /* duplicate */
    /* A NewView from a replica that is not the new primary. */
    Consent__ConsNewView nv = CONSENT__CONS_NEW_VIEW__INIT;
    nv.view = 1;
    uint8_t body[64];
    size_t blen = consent__cons_new_view__pack(&nv, body);
    cons__buf bad = {0};
    ck_assert_int_eq(cons__msg_make(c->r[2], &bad, PT_NV, body, blen), CONS_OK);
    ck_assert_int_eq(deliver(c, 3, 2, &bad, &a), CONS_ESIG);
    cons__buf_free(&bad);
    /* From the right primary but without 2f+1 view changes. */
    ck_assert_int_eq(cons__msg_make(c->r[1], &bad, PT_NV, body, blen), CONS_OK);
    ck_assert_int_eq(deliver(c, 3, 1, &bad, &a), CONS_EDECODE);
    ck_assert_uint_eq(cons_view(c->r[3]), 0);
    cons__buf_free(&bad);
    /* A ViewChange claiming a prepared certificate without prepares. */
    Consent__ConsViewChange b = CONSENT__CONS_VIEW_CHANGE__INIT;
    Consent__ConsPreparedCert pc = CONSENT__CONS_PREPARED_CERT__INIT, *pcs[1] = {&pc};
    cons__buf pp = forge_pp(c, 0, 0, 1, "x");
    pc.pre_prepare.data = pp.p;
    pc.pre_prepare.len = pp.len;
    b.new_view = 1;
    b.n_prepared = 1;
    b.prepared = pcs;
    uint8_t vbody[1024];
    size_t vlen = consent__cons_view_change__pack(&b, vbody);
    ck_assert_int_eq(cons__msg_make(c->r[3], &bad, PT_VC, vbody, vlen), CONS_OK);
    ck_assert_int_eq(deliver(c, 1, 3, &bad, &a), CONS_EDECODE);
    cons__buf_free(&bad);
    cons__buf_free(&pp);
    cons__buf_free(&v);
    clus_free(c);
    free(c);
}
END_TEST

START_TEST(checkpoints_move_watermark_and_gc)
{
    clus *c = calloc(1, sizeof *c);
    clus_init(c, 4, 2, 4);
    chain_hash d;
    char text[32];
    for (int s = 1; s <= 5; s++) {
        snprintf(text, sizeof text, "blk:%d", s);
        propose(c, 0, text, &d);
        pump(c);
    }
    for (uint32_t i = 0; i < 4; i++) {
        ck_assert_uint_eq(c->height[i], 5);
        ck_assert_uint_eq(cons_low_watermark(c->r[i]), 4);
        ck_assert_ptr_null(cons__slot_find(c->r[i], 4));   /* collected */
        ck_assert_ptr_nonnull(cons__slot_find(c->r[i], 5));
    }
    /* Below the low watermark: stale. */
    cons_actions a;
    cons__buf p = forge_vote(c, 2, PT_PREPARE, 0, 3, &d);
    ck_assert_int_eq(deliver(c, 1, 2, &p, &a), CONS_ESTALE);
    cons__buf_free(&p);
    clus_free(c);
    free(c);
}
END_TEST

START_TEST(lagging_replica_fetches)
{
    clus *c = calloc(1, sizeof *c);
    clus_init(c, 4, 2, 2);
    chain_hash d;
    char text[32];
    c->cut = 1u << 3;
    for (int s = 1; s <= 6; s++) {
        snprintf(text, sizeof text, "blk:%d", s);
        propose(c, 0, text, &d);
        pump(c);
    }
    ck_assert_uint_eq(c->height[0], 6);
    ck_assert_uint_eq(c->height[3], 0);
    /* Now 3 hears the next checkpoint: 2f+1 matching above its height. */
    c->cut = 0;
    propose(c, 0, "blk:7", &d);
    pump(c);
    propose(c, 0, "blk:8", &d);
    pump(c);
    ck_assert_uint_ge(c->fetch[3], 1);
    ck_assert_uint_eq(c->fetch_seq[3], 8);
    ck_assert_uint_eq(cons_low_watermark(c->r[3]), 8);
    /* The node syncs blocks 1..8 and reports them; the replica follows. */
    cons_actions a;
    for (uint64_t h = 1; h <= 8; h++) {
        ck_assert_int_eq(cons_on_committed(c->r[3], &a, 0, h, &c->hashes[0][h]), CONS_OK);
        c->height[3] = h;
        c->hashes[3][h] = c->hashes[0][h];
        acts(c, 3, &a);
    }
    ck_assert_int_eq(cons_on_committed(c->r[3], &a, 0, 8, &c->hashes[0][8]), CONS_ESTALE);
    ck_assert_uint_eq(cons_committed(c->r[3]), 8);
    pump(c);
    propose(c, 0, "blk:9", &d);
    pump(c);
    for (uint32_t i = 0; i < 4; i++) ck_assert_uint_eq(c->height[i], 9);
    ck_assert_mem_eq(c->hashes[3][9].b, d.b, 32);
    clus_free(c);
    free(c);
}
END_TEST

int main(void)
{
    Suite *s = suite_create("cons");
    TCase *tc = tcase_create("replica");
    tcase_set_timeout(tc, 120);
    tcase_add_test(tc, create_refuses_bad_config);
    tcase_add_test(tc, strerror_covers_codes);
    tcase_add_test(tc, normal_case_commits_with_valid_cert);
    tcase_add_test(tc, pipeline_validates_in_order);
    tcase_add_test(tc, propose_refusals);
    tcase_add_test(tc, bad_input_dropped);
    tcase_add_test(tc, equivocating_primary_gives_evidence_and_view_change);
    tcase_add_test(tc, equivocating_backup_gives_evidence);
    tcase_add_test(tc, invalid_block_never_voted_or_committed);
    tcase_add_test(tc, persisted_vote_survives_restart);
    tcase_add_test(tc, timer_view_change_new_view);
    tcase_add_test(tc, prepared_block_survives_view_change);
    tcase_add_test(tc, join_view_change_on_f_plus_one);
    tcase_add_test(tc, view_change_messages_checked);
    tcase_add_test(tc, checkpoints_move_watermark_and_gc);
    tcase_add_test(tc, lagging_replica_fetches);
    suite_add_tcase(s, tc);
    SRunner *sr = srunner_create(s);
    srunner_run_all(sr, CK_NORMAL);
    int failed = srunner_ntests_failed(sr);
    srunner_free(sr);
    return failed == 0 ? 0 : 1;
}
