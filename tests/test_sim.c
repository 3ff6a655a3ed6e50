/* test_sim.c — the consensus simulator.
 *
 * n replicas (4, some runs 7) of the real consensus/ code in one process,
 * driven by a seeded PRNG: a simulated clock and network (delay, drop,
 * duplicate, reorder, partitions that heal), crashes at any point of an
 * action list with restart from the last persisted blob and the store's
 * committed height, and one Byzantine validator that is silent, proposes
 * invalid blocks, or runs as "twins" (two replicas with one key, each
 * talking to part of the network: they equivocate as primary and as voter).
 * A client proposes "blk:<seq>:<random>" blocks through whoever is primary
 * and tells every node it has work waiting.
 *
 * Checked after every step: honest replicas deliver in order, never two
 * digests at one height, every certificate verifies, no evidence names an
 * honest validator. After the faults stop, new blocks must commit within a
 * bounded simulated time.
 *
 * SIM_SEEDS=N runs N seeds per configuration; SIM_SEED=S replays one seed
 * (n=4, or n=SIM_N) printing one line of state per event. A failing seed
 * prints itself.
 */
#include <assert.h>
#include <check.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cons_fixture.h"

#define SIM_EVENTS_MAX 100000
#define SIM_HEIGHT_MAX 2048
#define SIM_STEPS_MAX 400000
#define SIM_TICK_MS 25
#define SIM_LIVE_MS 120000
#define SIM_CERT_CACHE 4096

enum { EV_DELIVER, EV_VALIDATED, EV_COMMITTED, EV_SYNC };
enum { BYZ_NONE, BYZ_SILENT, BYZ_TWINS, BYZ_BADBLOCK };
static const char *byz_names[] = {"none", "silent", "twins", "badblock"};

typedef struct {
    uint64_t at, order;
    int type;
    uint32_t node, twin, from, epoch;
    uint64_t seq;
    chain_hash digest;
    int ok;
    uint8_t *data;
    size_t len;
} sim_ev;

typedef struct {
    cons_replica *r[2];        /* r[1]: the second twin */
    int up;
    uint32_t epoch;
    uint8_t *persist;
    size_t persist_len;
    int timer_armed[2];
    uint64_t timer_at[2];
    uint64_t height[2];
    chain_hash *hash;          /* store: digest per height (honest nodes) */
    uint64_t restart_at;
    uint64_t twin_mask[2];     /* recipients of each twin */
} sim_node;

typedef struct {
    fix_rng rng;
    uint64_t seed;
    int verbose;
    fix_net net;
    uint32_t n, f, k, window;
    uint64_t timeout;
    sim_node nodes[CHAIN_VALIDATORS_MAX];
    sim_ev *evs;
    size_t n_evs;
    uint64_t order, now, steps;
    uint64_t fault_end, delay_max, part_until, part_mask, block_interval, next_block, pipeline;
    double p_drop, p_dup, p_crash, p_midcrash;
    int part_active;
    int byz;
    uint32_t byz_node;
    uint64_t top;              /* highest height delivered by an honest node */
    chain_hash *canon;
    uint64_t live_base;
    int faults_over;
    char fail[256];
    uint64_t evidence, crashes;
    chain_hash certs_ok[SIM_CERT_CACHE];
    size_t n_certs_ok;
} sim;

static int is_byz(const sim *S, uint32_t i) { return S->byz != BYZ_NONE && i == S->byz_node; }
static int twins(const sim *S, uint32_t i) { return S->byz == BYZ_TWINS && i == S->byz_node; }

static void failf(sim *S, const char *what, uint64_t a)
{
    if (S->fail[0] == 0)
        snprintf(S->fail, sizeof S->fail, "%s (%" PRIu64 ") at t=%" PRIu64, what, a, S->now);
}

static void push(sim *S, const sim_ev *e)
{
    if (S->n_evs >= SIM_EVENTS_MAX) {
        failf(S, "event queue full", S->n_evs);
        free(e->data);
        return;
    }
    S->evs[S->n_evs] = *e;
    S->evs[S->n_evs].order = S->order++;
    S->n_evs++;
}

static uint64_t net_delay(sim *S)
{
    return S->faults_over ? 1 + fix_below(&S->rng, 5) : 1 + fix_below(&S->rng, S->delay_max);
}

static void net_send(sim *S, uint32_t from, uint32_t to, const uint8_t *data, size_t len)
{
    if (from == to) return;
    if (S->byz == BYZ_SILENT && from == S->byz_node) return;
    if (!S->faults_over) {
        if (fix_chance(&S->rng, S->p_drop)) return;
        if (S->part_active && (((S->part_mask >> from) ^ (S->part_mask >> to)) & 1)) return;
    }
    int copies = (!S->faults_over && fix_chance(&S->rng, S->p_dup)) ? 2 : 1;
    for (int c = 0; c < copies; c++) {
        sim_ev e = {0};
        e.type = EV_DELIVER;
        e.at = S->now + net_delay(S);
        e.node = to;
        e.from = from;
        e.data = malloc(len);
        if (e.data == NULL) { failf(S, "oom", len); return; }
        memcpy(e.data, data, len);
        e.len = len;
        push(S, &e);
    }
}

static void node_crash(sim *S, uint32_t i);

/* Replicas often build the same certificate: check each distinct one once. */
static int cert_check_cached(sim *S, const chain_cert *c, uint64_t seq, const chain_hash *d)
{
    chain_hash h;
    chain_sha256(&h, c, sizeof *c);
    for (size_t i = 0; i < S->n_certs_ok; i++)
        if (memcmp(&S->certs_ok[i], &h, sizeof h) == 0) return 0;
    if (fix_cert_check(S->net.g, c, seq, d) != 0) return -1;
    if (S->n_certs_ok < SIM_CERT_CACHE) S->certs_ok[S->n_certs_ok++] = h;
    return 0;
}

/* Executes the actions of one call into replica (i, twin t), in order, as
 * a node would: persist before send is the replica's job, the sim only
 * checks and records. May crash the node part-way through the list. */
static void run(sim *S, uint32_t i, uint32_t t, const cons_actions *a)
{
    sim_node *nd = &S->nodes[i];
    size_t crash_at = SIZE_MAX;
    if (!is_byz(S, i) && !S->faults_over && a->n > 0 && fix_chance(&S->rng, S->p_midcrash))
        crash_at = fix_below(&S->rng, a->n + 1);
    for (size_t k = 0; k < a->n && S->fail[0] == 0; k++) {
        if (k == crash_at) { node_crash(S, i); return; }
        const cons_action *x = &a->items[k];
        if (S->verbose > 1)
            printf("    n%u.%u act %d to=%u seq=%" PRIu64 " view=%" PRIu64 " at=%" PRIu64 " len=%zu\n", i, t,
                   (int)x->type, x->to, x->seq, x->view, x->at_ms, x->len);
        switch (x->type) {
        case CONS_ACT_PERSIST:
            if (twins(S, i)) break;
            free(nd->persist);
            nd->persist = malloc(x->len);
            memcpy(nd->persist, x->data, x->len);
            nd->persist_len = x->len;
            break;
        case CONS_ACT_SEND:
            if (!twins(S, i) || ((nd->twin_mask[t] >> x->to) & 1)) net_send(S, i, x->to, x->data, x->len);
            break;
        case CONS_ACT_BROADCAST:
            for (uint32_t j = 0; j < S->n; j++)
                if (!twins(S, i) || ((nd->twin_mask[t] >> j) & 1)) net_send(S, i, j, x->data, x->len);
            break;
        case CONS_ACT_SET_TIMER:
            nd->timer_armed[t] = 1;
            nd->timer_at[t] = x->at_ms;
            break;
        case CONS_ACT_CANCEL_TIMER:
            nd->timer_armed[t] = 0;
            break;
        case CONS_ACT_VALIDATE: {
            sim_ev e = {0};
            e.type = EV_VALIDATED;
            e.at = S->now + 1 + fix_below(&S->rng, 3);
            e.node = i;
            e.twin = t;
            e.epoch = nd->epoch;
            e.seq = x->seq;
            chain_sha256(&e.digest, x->data, x->len);
            e.ok = is_byz(S, i) || x->len < 4 || memcmp(x->data, "bad:", 4) != 0;
            push(S, &e);
            break;
        }
        case CONS_ACT_COMMIT: {
            chain_hash d;
            chain_sha256(&d, x->data, x->len);
            if (x->seq != nd->height[t] + 1) { failf(S, "commit out of order", x->seq); return; }
            if (x->cert == NULL || cert_check_cached(S, x->cert, x->seq, &d) != 0) {
                failf(S, "commit certificate does not verify", x->seq);
                return;
            }
            if (!is_byz(S, i)) {
                if (x->len >= 4 && memcmp(x->data, "bad:", 4) == 0) { failf(S, "invalid block committed", x->seq); return; }
                if (x->seq >= SIM_HEIGHT_MAX) { failf(S, "height limit", x->seq); return; }
                if (x->seq <= S->top && memcmp(&S->canon[x->seq], &d, sizeof d) != 0) {
                    failf(S, "SAFETY: two digests committed at one height", x->seq);
                    return;
                }
                if (x->seq > S->top) { S->top = x->seq; S->canon[x->seq] = d; }
                nd->hash[x->seq] = d;
            }
            nd->height[t] = x->seq;
            sim_ev e = {0};
            e.type = EV_COMMITTED;
            e.at = S->now + fix_below(&S->rng, 3);
            e.node = i;
            e.twin = t;
            e.epoch = nd->epoch;
            e.seq = x->seq;
            e.digest = d;
            push(S, &e);
            break;
        }
        case CONS_ACT_EVIDENCE:
            if (!is_byz(S, x->to)) { failf(S, "evidence against an honest validator", x->to); return; }
            S->evidence++;
            break;
        case CONS_ACT_NEW_PRIMARY:
            break;
        case CONS_ACT_FETCH: {
            sim_ev e = {0};
            e.type = EV_SYNC;
            e.at = S->now + 5 + fix_below(&S->rng, 20);
            e.node = i;
            e.twin = t;
            e.epoch = nd->epoch;
            e.seq = x->seq;
            push(S, &e);
            break;
        }
        default:
            failf(S, "unknown action", x->type);
            return;
        }
    }
}

static uint32_t n_twins(const sim *S, uint32_t i) { return twins(S, i) ? 2 : 1; }

static cons_replica *make_replica(sim *S, uint32_t i, const uint8_t *blob, size_t len, uint64_t h,
                                  const chain_hash *hh)
{
    cons_config c = fix_config(&S->net, i, S->k, S->window, S->timeout);
    return cons_create(&c, blob, len, h, hh);
}

static void node_crash(sim *S, uint32_t i)
{
    sim_node *nd = &S->nodes[i];
    assert(!is_byz(S, i));
    if (!nd->up) return;
    cons_destroy(nd->r[0]);
    nd->r[0] = NULL;
    nd->up = 0;
    nd->epoch++;
    nd->timer_armed[0] = 0;
    nd->restart_at = S->now + 50 + fix_below(&S->rng, 450);
    S->crashes++;
}

static void node_restart(sim *S, uint32_t i)
{
    sim_node *nd = &S->nodes[i];
    cons_actions a;
    nd->r[0] = make_replica(S, i, nd->persist, nd->persist_len, nd->height[0], &nd->hash[nd->height[0]]);
    if (nd->r[0] == NULL) { failf(S, "restart from persisted state failed", i); return; }
    nd->up = 1;
    if (cons_start(nd->r[0], &a, S->now) == CONS_OK) run(S, i, 0, &a);
}

/* Block sync from the honest majority's chain, as the node's sync would. */
static void node_sync(sim *S, uint32_t i, uint32_t t)
{
    sim_node *nd = &S->nodes[i];
    cons_actions a;
    while (nd->up && nd->height[t] < S->top && S->fail[0] == 0) {
        uint64_t h = nd->height[t] + 1;
        nd->height[t] = h;
        if (!is_byz(S, i)) nd->hash[h] = S->canon[h];
        int rc = cons_on_committed(nd->r[t], &a, S->now, h, &S->canon[h]);
        if (rc == CONS_OK) run(S, i, t, &a);
    }
}

static void propose(sim *S, uint32_t i, uint32_t t)
{
    sim_node *nd = &S->nodes[i];
    cons_replica *r = nd->r[t];
    if (!cons_is_primary(r)) return;
    uint64_t seq = cons_next_seq(r);
    if (seq - 1 >= nd->height[t] + S->pipeline) return;
    if (seq >= SIM_HEIGHT_MAX - 8) return;
    char blk[64];
    const char *kind = (S->byz == BYZ_BADBLOCK && i == S->byz_node) ? "bad" : "blk";
    int len = snprintf(blk, sizeof blk, "%s:%" PRIu64 ":%016" PRIx64, kind, seq, fix_next(&S->rng));
    chain_hash d;
    chain_sha256(&d, blk, (size_t)len);
    cons_actions a;
    if (cons_propose(r, &a, S->now, (const uint8_t *)blk, (size_t)len, &d) == CONS_OK) run(S, i, t, &a);
}

static void tick_faults(sim *S)
{
    if (S->now >= S->fault_end) {
        if (!S->faults_over) {
            S->faults_over = 1;
            S->part_active = 0;
            S->live_base = S->top;
        }
        for (uint32_t i = 0; i < S->n; i++)
            if (!S->nodes[i].up) node_restart(S, i);
        return;
    }
    if (S->part_active && S->now >= S->part_until) S->part_active = 0;
    if (!S->part_active && fix_chance(&S->rng, 0.02)) {
        S->part_active = 1;
        S->part_mask = fix_next(&S->rng);
        S->part_until = S->now + 100 + fix_below(&S->rng, 800);
    }
    if (fix_chance(&S->rng, S->p_crash)) {
        uint32_t i = (uint32_t)fix_below(&S->rng, S->n);
        if (!is_byz(S, i)) node_crash(S, i);
    }
    for (uint32_t i = 0; i < S->n; i++)
        if (!S->nodes[i].up && S->now >= S->nodes[i].restart_at) node_restart(S, i);
}

static void tick(sim *S)
{
    tick_faults(S);
    if (S->now < S->next_block) return;
    S->next_block = S->now + S->block_interval;
    for (uint32_t i = 0; i < S->n && S->fail[0] == 0; i++) {
        sim_node *nd = &S->nodes[i];
        if (!nd->up) continue;
        for (uint32_t t = 0; t < n_twins(S, i); t++) {
            cons_actions a;
            if (cons_request_pending(nd->r[t], &a, S->now) == CONS_OK) run(S, i, t, &a);
            if (nd->up) propose(S, i, t);
        }
    }
}

static void handle_event(sim *S, sim_ev *e)
{
    sim_node *nd = &S->nodes[e->node];
    cons_actions a;
    if (!nd->up || (e->type != EV_DELIVER && e->epoch != nd->epoch)) return;
    if (e->type == EV_DELIVER) {
        for (uint32_t t = 0; t < n_twins(S, e->node) && nd->up; t++) {
            int rc = cons_on_message(nd->r[t], &a, S->now, e->from, e->data, e->len);
            (void)rc;
            run(S, e->node, t, &a);
        }
    } else if (e->type == EV_VALIDATED) {
        if (cons_on_validated(nd->r[e->twin], &a, S->now, e->seq, &e->digest, e->ok) == CONS_OK)
            run(S, e->node, e->twin, &a);
    } else if (e->type == EV_COMMITTED) {
        if (cons_on_committed(nd->r[e->twin], &a, S->now, e->seq, &e->digest) == CONS_OK)
            run(S, e->node, e->twin, &a);
    } else {
        node_sync(S, e->node, e->twin);
    }
}

static void print_state(const sim *S, const char *what, uint32_t node)
{
    printf("t=%6" PRIu64 " %-9s n%-2u |", S->now, what, node);
    for (uint32_t i = 0; i < S->n; i++) {
        const sim_node *nd = &S->nodes[i];
        if (!nd->up) { printf(" [down h=%" PRIu64 "]", nd->height[0]); continue; }
        const cons_replica *r = nd->r[0];
        printf(" [v%" PRIu64 "%s h%" PRIu64 " lw%" PRIu64 "]", cons_view(r), cons_in_view_change(r) ? "*" : "",
               nd->height[0], cons_low_watermark(r));
    }
    printf(" top=%" PRIu64 "\n", S->top);
}

/* One step: the earliest of (event, timer, tick). Returns 0 when done. */
static int step(sim *S, uint64_t *next_tick)
{
    uint64_t best = *next_tick;
    int kind = 0;
    size_t bi = SIZE_MAX;
    uint32_t bn = 0, bt = 0;
    for (size_t k = 0; k < S->n_evs; k++) {
        const sim_ev *e = &S->evs[k];
        if (bi == SIZE_MAX || e->at < S->evs[bi].at || (e->at == S->evs[bi].at && e->order < S->evs[bi].order))
            bi = k;
    }
    if (bi != SIZE_MAX && S->evs[bi].at <= best) {
        best = S->evs[bi].at;
        kind = 1;
    }
    for (uint32_t i = 0; i < S->n; i++)
        for (uint32_t t = 0; t < 2; t++)
            if (S->nodes[i].up && S->nodes[i].timer_armed[t] && S->nodes[i].timer_at[t] < best) {
                best = S->nodes[i].timer_at[t];
                kind = 2;
                bn = i;
                bt = t;
            }
    if (best > S->now) S->now = best;
    if (kind == 0) {
        *next_tick = S->now + SIM_TICK_MS;
        tick(S);
        if (S->verbose) print_state(S, "tick", 0);
    } else if (kind == 1) {
        sim_ev e = S->evs[bi];
        S->evs[bi] = S->evs[--S->n_evs];
        handle_event(S, &e);
        if (S->verbose) {
            static const char *names[] = {"deliver", "validated", "committed", "sync"};
            print_state(S, names[e.type], e.node);
        }
        free(e.data);
    } else {
        cons_actions a;
        S->nodes[bn].timer_armed[bt] = 0;
        if (cons_on_timer(S->nodes[bn].r[bt], &a, S->now) == CONS_OK) run(S, bn, bt, &a);
        if (S->verbose) print_state(S, "timer", bn);
    }
    return ++S->steps < SIM_STEPS_MAX;
}

static int sim_live(const sim *S)
{
    if (!S->faults_over) return 0;
    for (uint32_t i = 0; i < S->n; i++)
        if (!is_byz(S, i) && S->nodes[i].height[0] < S->live_base + 2) return 0;
    return 1;
}

static void sim_setup(sim *S, uint32_t n, uint64_t seed)
{
    fix_rng *g = &S->rng;
    S->seed = seed;
    g->s = seed * 0x2545f4914f6cdd1dull + n;
    S->n = n;
    S->f = (n - 1) / 3;
    S->k = 2 + (uint32_t)fix_below(g, 3);
    S->window = S->k * (1 + (uint32_t)fix_below(g, 2));
    S->timeout = 150 + fix_below(g, 200);
    S->fault_end = 200 + fix_below(g, 1000);
    static const double drops[] = {0, 0.01, 0.05, 0.2};
    S->p_drop = drops[fix_below(g, 4)];
    S->p_dup = 0.05;
    S->p_crash = fix_chance(g, 0.5) ? 0.03 : 0;
    S->p_midcrash = S->p_crash > 0 ? 0.003 : 0;
    S->delay_max = 2 + fix_below(g, 40);
    S->block_interval = 40 + fix_below(g, 80);
    S->pipeline = 1 + fix_below(g, 2);
    S->byz = (int)fix_below(g, 4);
    S->byz_node = fix_chance(g, 0.5) ? 0 : (uint32_t)fix_below(g, n);
    S->evs = calloc(SIM_EVENTS_MAX, sizeof *S->evs);
    S->canon = calloc(SIM_HEIGHT_MAX + 1, sizeof *S->canon);
    ck_assert_ptr_nonnull(S->evs);
    ck_assert_ptr_nonnull(S->canon);
    ck_assert_int_eq(fix_net_init(&S->net, n), 0);
    for (uint32_t i = 0; i < n; i++) {
        sim_node *nd = &S->nodes[i];
        nd->hash = calloc(SIM_HEIGHT_MAX + 1, sizeof *nd->hash);
        ck_assert_ptr_nonnull(nd->hash);
        for (uint32_t t = 0; t < n_twins(S, i); t++) {
            nd->r[t] = make_replica(S, i, NULL, 0, 0, NULL);
            ck_assert_ptr_nonnull(nd->r[t]);
        }
        nd->up = 1;
        if (twins(S, i)) {
            /* Each other node hears one twin; sometimes one hears both. */
            for (uint32_t j = 0; j < n; j++) nd->twin_mask[fix_below(g, 2)] |= 1ull << j;
            uint32_t both = (uint32_t)fix_below(g, n);
            if (fix_chance(g, 0.5)) { nd->twin_mask[0] |= 1ull << both; nd->twin_mask[1] |= 1ull << both; }
        }
    }
}

static void sim_free(sim *S)
{
    for (size_t k = 0; k < S->n_evs; k++) free(S->evs[k].data);
    for (uint32_t i = 0; i < S->n; i++) {
        cons_destroy(S->nodes[i].r[0]);
        cons_destroy(S->nodes[i].r[1]);
        free(S->nodes[i].persist);
        free(S->nodes[i].hash);
    }
    free(S->evs);
    free(S->canon);
    fix_net_free(&S->net);
}

/* Runs one seed; returns 0 or prints the failure and returns -1. */
static int sim_run(uint32_t n, uint64_t seed, int verbose)
{
    sim *S = calloc(1, sizeof *S);
    ck_assert_ptr_nonnull(S);
    sim_setup(S, n, seed);
    S->verbose = verbose;
    uint64_t next_tick = 0;
    cons_actions a;
    for (uint32_t i = 0; i < n; i++)
        for (uint32_t t = 0; t < n_twins(S, i); t++)
            if (cons_start(S->nodes[i].r[t], &a, 0) == CONS_OK) run(S, i, t, &a);
    while (S->fail[0] == 0) {
        if (!step(S, &next_tick)) { failf(S, "step limit", S->steps); break; }
        if (sim_live(S)) break;
        if (S->faults_over && S->now > S->fault_end + SIM_LIVE_MS) {
            failf(S, "LIVENESS: no progress after the network stabilised", S->top);
            break;
        }
    }
    int rc = S->fail[0] == 0 ? 0 : -1;
    if (rc != 0 || verbose)
        printf("%s seed=%" PRIu64 " n=%u K=%u window=%u byz=%s@%u drop=%.2f crash=%.2f: %s "
               "(top=%" PRIu64 " steps=%" PRIu64 " crashes=%" PRIu64 " evidence=%" PRIu64 ")\n",
               rc ? "FAIL" : "ok", seed, n, S->k, S->window, byz_names[S->byz], S->byz_node, S->p_drop,
               S->p_crash, rc ? S->fail : "safe and live", S->top, S->steps, S->crashes, S->evidence);
    sim_free(S);
    free(S);
    return rc;
}

static uint64_t env_u64(const char *name, uint64_t dflt)
{
    const char *v = getenv(name);
    return v != NULL && *v ? strtoull(v, NULL, 10) : dflt;
}

static void run_seeds(uint32_t n, uint64_t count, uint64_t base)
{
    uint64_t failed = 0;
    for (uint64_t s = base; s < base + count; s++)
        if (sim_run(n, s, 0) != 0) failed++;
    printf("sim n=%u: %" PRIu64 " seeds from %" PRIu64 ", %" PRIu64 " failed\n", n, count, base, failed);
    ck_assert_uint_eq(failed, 0);
}

START_TEST(sim_n4)
{
    if (getenv("SIM_SEED") != NULL) return;
    run_seeds(4, env_u64("SIM_SEEDS", 900), 1);
}
END_TEST

START_TEST(sim_n7)
{
    if (getenv("SIM_SEED") != NULL) return;
    run_seeds(7, env_u64("SIM_SEEDS", 100) , 100001);
}
END_TEST

START_TEST(sim_replay)
{
    if (getenv("SIM_SEED") == NULL) return;
    uint64_t seed = env_u64("SIM_SEED", 1);
    ck_assert_int_eq(sim_run((uint32_t)env_u64("SIM_N", 4), seed, (int)env_u64("SIM_VERBOSE", 1)), 0);
}
END_TEST

int main(void)
{
    Suite *s = suite_create("sim");
    TCase *tc = tcase_create("sim");
    tcase_set_timeout(tc, 3600);
    tcase_add_test(tc, sim_replay);
    tcase_add_test(tc, sim_n4);
    tcase_add_test(tc, sim_n7);
    suite_add_tcase(s, tc);
    SRunner *sr = srunner_create(s);
    srunner_set_fork_status(sr, CK_NOFORK);
    srunner_run_all(sr, CK_NORMAL);
    int failed = srunner_ntests_failed(sr);
    srunner_free(sr);
    return failed == 0 ? 0 : 1;
}
