/* node.c — the node context: wiring of store, replica, mempool, API and
 * producer, and execution of the replica's actions.
 *
 * The replica answers every event with a list of actions, valid until the
 * next call into it. They run here strictly in order: PERSIST is written with
 * sync (chain_store_put_meta) before any SEND or BROADCAST after it, and if
 * it fails nothing after it is sent and the node stops. Actions that need a
 * reply from the node (VALIDATE, COMMIT) queue a follow-up call that is made
 * only after the whole list ran, so no action list is invalidated while it is
 * being executed. Committed blocks are applied strictly in height order; a
 * COMMIT that arrives ahead of its predecessor waits in a bounded buffer.
 */
#include <assert.h>
#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>

#include "node/node_int.h"
#include "node/p2p.h"

#define EXEC_CACHE 4             /* executed blocks kept for their COMMIT */
#define FOLLOWUPS_MAX 1024       /* replies to the replica queued by one list */
#define DEFERRED_MAX 8           /* VALIDATEs ahead of the tip */
#define DRIVE_STEPS_MAX 100000   /* replica calls made for one outside event */
#define META_CONS "cons/state"

typedef struct {
    enum { FU_VALIDATED = 1, FU_COMMITTED } kind;
    uint64_t seq;
    chain_hash digest;
    int ok;
} followup;

typedef struct {
    int used;
    uint64_t seq;
    chain_hash digest;
    uint8_t *block;
    size_t len;
    chain_cert cert;             /* COMMIT only */
} held_block;

typedef struct {
    uint64_t seq;
    chain_hash digest;
    chain_exec *ex;
} exec_entry;

struct node {
    uv_loop_t *loop;
    node_config cfg;
    node_logger lg;
    chain_genesis *genesis;
    chain_store *store;
    chain_key *key;
    chain_pubkey pubkey;
    int vindex;
    cons_replica *rep;
    node__mempool *mp;
    node__rejects *rj;
    node__metrics metrics;
    node__http *http;
    node__audit *audit;
    node__sessions *sessions;
    chain_check_tip proof_tip;       /* proof=1 answers' header and cert */
    node__producer *prod;
    node_p2p *p2p;
    uv_timer_t cons_timer;
    node_p2p_hooks hooks;
    uint64_t tip_time_ms;
    exec_entry execs[EXEC_CACHE];
    followup fq[FOLLOWUPS_MAX];
    size_t fq_head, fq_n;
    held_block commits[NODE_PENDING_COMMITS_MAX];
    held_block deferred[DEFERRED_MAX];
    int started, stopping, halted;
    int in_drive;                /* inside drive(): the replica may not be called */
    int pending_signalled;       /* cons_request_pending since the last commit */
    int closing_handles;
    void (*done)(node *n, void *arg);
    void *done_arg;
};

static void drive(node *n, int rc, const cons_actions *acts);

/* ------------------------------------------------------------------ time */
uint64_t node__now_ms(void) {
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    return (uint64_t)ts.tv_sec * 1000u + (uint64_t)ts.tv_nsec / 1000000u;
}

uint64_t node__now_s(void) { return node__now_ms() / 1000u; }

uint64_t node__block_time_ms(const node *n) {
    uint64_t now = node__now_ms();
    return now > n->tip_time_ms ? now : n->tip_time_ms;
}

/* ------------------------------------------------------------------ accessors */
uv_loop_t *node_loop(const node *n) { return n->loop; }
const node_config *node_get_config(const node *n) { return &n->cfg; }
const node_logger *node_get_logger(const node *n) { return &n->lg; }
const chain_genesis *node_genesis(const node *n) { return n->genesis; }
chain_store *node_store(const node *n) { return n->store; }
const chain_key *node_key(const node *n) { return n->key; }
int node_validator_index(const node *n) { return n->vindex; }
int node_api_port(const node *n) { return n->http ? node__http_port(n->http) : -1; }
uint64_t node_height(const node *n) { return chain_store_height(n->store); }
node__mempool *node__get_mempool(const node *n) { return n->mp; }
node__rejects *node__get_rejects(const node *n) { return n->rj; }
node__metrics *node__get_metrics(node *n) { return &n->metrics; }
node__http *node__get_http(const node *n) { return n->http; }
node__audit *node__get_audit(const node *n) { return n->audit; }
node__sessions *node__get_sessions(const node *n) { return n->sessions; }
chain_check_tip *node__get_proof_tip(node *n) { return &n->proof_tip; }
struct node_p2p *node__get_p2p(const node *n) { return n->p2p; }

void node_set_p2p(node *n, const node_p2p_hooks *hooks) { n->hooks = *hooks; }

size_t node__peers(const node *n, uint32_t *out, size_t max) {
    return n->hooks.peers ? n->hooks.peers(n->hooks.arg, out, max) : 0;
}

void node__get_status(const node *n, node__status *out) {
    memset(out, 0, sizeof(*out));
    out->height = chain_store_height(n->store);
    chain_store_tip_hash(n->store, &out->tip);
    out->is_validator = n->rep != NULL;
    if (n->rep) {
        out->view = cons_view(n->rep);
        out->primary = cons_primary(n->rep);
        out->view_changes = cons_view_changes(n->rep);
        out->dropped = cons_dropped(n->rep);
    }
}

int node__is_primary_idle(const node *n) {
    if (!n->rep || n->stopping || n->halted || !cons_is_primary(n->rep)) return 0;
    /* One block of ours in flight at a time: the next one is executed on top
     * of the committed tip, so it can only be built once that tip moved. */
    return cons_next_seq(n->rep) == chain_store_height(n->store) + 1;
}

/* ------------------------------------------------------------------ exec cache */
static void exec_drop_upto(node *n, uint64_t height) {
    for (int i = 0; i < EXEC_CACHE; i++) {
        if (n->execs[i].ex && n->execs[i].seq <= height) {
            chain_exec_abort(n->execs[i].ex);
            n->execs[i].ex = NULL;
        }
    }
}

void node__exec_keep(node *n, uint64_t seq, const chain_hash *digest, chain_exec *ex) {
    int slot = 0;
    for (int i = 0; i < EXEC_CACHE; i++) {
        if (!n->execs[i].ex) {
            slot = i;
            break;
        }
        if (n->execs[i].seq < n->execs[slot].seq) slot = i;
    }
    if (n->execs[slot].ex) chain_exec_abort(n->execs[slot].ex);
    n->execs[slot] = (exec_entry){seq, *digest, ex};
}

static chain_exec *exec_take(node *n, uint64_t seq, const chain_hash *digest) {
    for (int i = 0; i < EXEC_CACHE; i++) {
        exec_entry *e = &n->execs[i];
        if (e->ex && e->seq == seq && memcmp(e->digest.b, digest->b, CHAIN_HASH_LEN) == 0) {
            chain_exec *ex = e->ex;
            e->ex = NULL;
            return ex;
        }
    }
    return NULL;
}

/* ------------------------------------------------------------------ followups */
static void followup_push(node *n, int kind, uint64_t seq, const chain_hash *digest, int ok) {
    if (n->fq_n == FOLLOWUPS_MAX) {
        /* The replica re-asks on its timer; losing a reply costs liveness only. */
        node_log(&n->lg, NODE_LOG_WARN, "follow-up queue full: reply for seq %" PRIu64 " dropped", seq);
        return;
    }
    followup *f = &n->fq[(n->fq_head + n->fq_n) % FOLLOWUPS_MAX];
    f->kind = kind;
    f->seq = seq;
    f->digest = *digest;
    f->ok = ok;
    n->fq_n++;
}

/* ------------------------------------------------------------------ blocks */
static int held_put(held_block *arr, size_t cap, uint64_t seq, const chain_hash *digest,
                    const uint8_t *data, size_t len, const chain_cert *cert) {
    held_block *slot = NULL;
    for (size_t i = 0; i < cap; i++) {
        if (arr[i].used && arr[i].seq == seq) return 0;   /* already held */
        if (!arr[i].used && !slot) slot = &arr[i];
    }
    if (!slot) return NODE_EFULL;
    slot->block = malloc(len ? len : 1);
    if (!slot->block) return NODE_ENOMEM;
    memcpy(slot->block, data, len);
    slot->len = len;
    slot->seq = seq;
    slot->digest = *digest;
    if (cert) slot->cert = *cert;
    slot->used = 1;
    return 0;
}

static held_block *held_find(held_block *arr, size_t cap, uint64_t seq) {
    for (size_t i = 0; i < cap; i++)
        if (arr[i].used && arr[i].seq == seq) return &arr[i];
    return NULL;
}

static void held_free(held_block *h) {
    free(h->block);
    memset(h, 0, sizeof(*h));
}

static void halt(node *n, const char *what, int err) {
    node_log(&n->lg, NODE_LOG_ERROR, "%s: %s; stopping", what, chain_strerror(err));
    n->halted = 1;
    node_stop(n, NULL, NULL);
}

/* Bookkeeping once block b is durably committed at the tip. */
static void after_commit(node *n, const chain_block *b, double apply_s) {
    chain_hash hash;
    chain_header_hash(&b->hdr, &hash);
    for (uint32_t i = 0; i < b->n_txs; i++) {
        chain_hash th;
        chain_tx_hash(&th, b->txs[i], b->tx_lens[i]);
        node__mempool_remove(n->mp, &th);
    }
    n->tip_time_ms = b->hdr.time_ms;
    n->pending_signalled = 0;
    n->metrics.blocks_committed++;
    n->metrics.txs_committed += b->n_txs;
    node__metrics_apply(&n->metrics, apply_s);
    exec_drop_upto(n, b->hdr.height);
    char hx[2 * CHAIN_HASH_LEN + 1];
    chain_hex(hx, hash.b, CHAIN_HASH_LEN);
    node_log(&n->lg, NODE_LOG_INFO, "committed height=%" PRIu64 " txs=%u hash=%s view=%" PRIu64,
             b->hdr.height, b->n_txs, hx, b->hdr.view);
    node__api_events(n, b);
    if (n->hooks.committed) n->hooks.committed(n->hooks.arg, b->hdr.height, &hash);
    if (n->prod) node__producer_committed(n->prod);
}

static double mono_s(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

/* Executes block b at the tip + 1, checking each tx signature once: a tx
 * this node admitted to its mempool was verified then (the tx id hashes the
 * whole encoding, signature included, so the same id means the same
 * verified bytes); the others (txs the primary got first) are verified here
 * in parallel, and any that fail are left to execution to refuse. */
static int exec_proposed(node *n, chain_exec **ex, const chain_block *b) {
    size_t cnt = b->n_txs ? b->n_txs : 1, todo = 0;
    uint8_t *checked = malloc(cnt), *ok = malloc(cnt);
    const uint8_t **txs = malloc(cnt * sizeof(*txs));
    size_t *lens = malloc(cnt * sizeof(*lens)), *idx = malloc(cnt * sizeof(*idx));
    int rc = checked && ok && txs && lens && idx ? 0 : CHAIN_ENOMEM;
    for (uint32_t i = 0; rc == 0 && i < b->n_txs; i++) {
        chain_hash th;
        chain_tx_hash(&th, b->txs[i], b->tx_lens[i]);
        const node__mp_entry *e = node__mempool_find(n->mp, &th);
        checked[i] = e && e->sig_checked;
        if (checked[i]) continue;
        txs[todo] = b->txs[i];
        lens[todo] = b->tx_lens[i];
        idx[todo++] = i;
    }
    if (rc == 0 && todo > 0 && chain_txs_verify(ok, txs, lens, todo, chain_verify_threads_default()) == 0) {
        for (size_t j = 0; j < todo; j++) checked[idx[j]] = ok[j];
    }
    if (rc == 0) rc = chain_exec_block(ex, n->store, b, checked);
    free(checked);
    free(ok);
    free(txs);
    free(lens);
    free(idx);
    return rc;
}

/* Applies the held COMMIT for the next height; 1 if one was applied. */
static int apply_next_commit(node *n) {
    uint64_t next = chain_store_height(n->store) + 1;
    held_block *h = held_find(n->commits, NODE_PENDING_COMMITS_MAX, next);
    if (!h) return 0;
    double t0 = mono_s();
    chain_block b;
    chain_block_init(&b);
    int rc = chain_block_decode(&b, h->block, h->len);
    chain_hash digest;
    if (rc == 0) {
        b.cert = h->cert;
        chain_header_hash(&b.hdr, &digest);
        if (b.hdr.height != next || memcmp(digest.b, h->digest.b, CHAIN_HASH_LEN) != 0) rc = CHAIN_EBLOCK;
    }
    chain_exec *ex = rc == 0 ? exec_take(n, next, &digest) : NULL;
    if (rc == 0 && !ex) rc = exec_proposed(n, &ex, &b);
    if (rc == 0) {
        rc = chain_exec_commit(ex, &b);
        chain_exec_abort(ex);
    }
    held_free(h);
    if (rc) {
        chain_block_free(&b);
        /* A block 2f+1 validators committed does not apply here: our store is
         * broken or we are on a different genesis. Never guess. */
        halt(n, "applying a committed block failed", rc);
        return 0;
    }
    n->metrics.blocks_consensus++;
    after_commit(n, &b, mono_s() - t0);
    followup_push(n, FU_COMMITTED, next, &digest, 1);
    chain_block_free(&b);
    return 1;
}

/* Validates a proposed block at the tip + 1; keeps the overlay for COMMIT. */
static int validate_block(node *n, uint64_t seq, const chain_hash *digest, const uint8_t *data,
                          size_t len) {
    chain_block b;
    chain_block_init(&b);
    int rc = chain_block_decode(&b, data, len);
    chain_hash d;
    if (rc == 0) {
        chain_header_hash(&b.hdr, &d);
        if (b.hdr.height != seq || memcmp(d.b, digest->b, CHAIN_HASH_LEN) != 0) rc = CHAIN_EBLOCK;
    }
    chain_exec *ex = NULL;
    if (rc == 0) rc = exec_proposed(n, &ex, &b);
    if (rc == 0) node__exec_keep(n, seq, digest, ex);
    else node_log(&n->lg, NODE_LOG_WARN, "proposed block seq=%" PRIu64 " invalid: %s", seq, chain_strerror(rc));
    chain_block_free(&b);
    return rc == 0;
}

static void run_deferred(node *n) {
    uint64_t next = chain_store_height(n->store) + 1;
    for (size_t i = 0; i < DEFERRED_MAX; i++) {
        held_block *h = &n->deferred[i];
        if (!h->used || h->seq > next) continue;
        int ok = h->seq == next ? validate_block(n, h->seq, &h->digest, h->block, h->len) : 0;
        followup_push(n, FU_VALIDATED, h->seq, &h->digest, ok);
        held_free(h);
    }
}

static void do_validate(node *n, const cons_action *a) {
    chain_hash digest;
    uint64_t height = chain_store_height(n->store);
    chain_block b;
    chain_block_init(&b);
    int ok = chain_block_decode(&b, a->data, a->len) == 0;
    if (ok) chain_header_hash(&b.hdr, &digest);
    chain_block_free(&b);
    if (!ok) {
        memset(&digest, 0, sizeof(digest));
        followup_push(n, FU_VALIDATED, a->seq, &digest, 0);
        return;
    }
    if (a->seq == height + 1) {
        followup_push(n, FU_VALIDATED, a->seq, &digest, validate_block(n, a->seq, &digest, a->data, a->len));
    } else if (a->seq <= height) {
        chain_block have;
        chain_block_init(&have);
        chain_hash hd;
        int same = chain_store_get_block(n->store, a->seq, &have) == 0;
        if (same) chain_header_hash(&have.hdr, &hd);
        same = same && memcmp(hd.b, digest.b, CHAIN_HASH_LEN) == 0;
        chain_block_free(&have);
        followup_push(n, FU_VALIDATED, a->seq, &digest, same);
    } else if (held_put(n->deferred, DEFERRED_MAX, a->seq, &digest, a->data, a->len, NULL) != 0) {
        node_log(&n->lg, NODE_LOG_WARN, "validation of seq %" PRIu64 " deferred queue full", a->seq);
    }
}

static void do_commit(node *n, const cons_action *a) {
    uint64_t height = chain_store_height(n->store);
    chain_hash digest = a->cert ? a->cert->block_hash : (chain_hash){{0}};
    if (a->seq <= height) {
        /* Already applied (block sync got there first): only tell the
         * replica, with the hash of the block we have at that height. */
        chain_block have;
        chain_block_init(&have);
        if (chain_store_get_block(n->store, a->seq, &have) == 0) {
            chain_header_hash(&have.hdr, &digest);
            followup_push(n, FU_COMMITTED, a->seq, &digest, 1);
        }
        chain_block_free(&have);
        return;
    }
    if (!a->cert || a->seq > height + NODE_PENDING_COMMITS_MAX ||
        held_put(n->commits, NODE_PENDING_COMMITS_MAX, a->seq, &digest, a->data, a->len, a->cert) != 0) {
        node_log(&n->lg, NODE_LOG_WARN, "commit of seq %" PRIu64 " not held; fetching", a->seq);
        if (n->hooks.fetch) n->hooks.fetch(n->hooks.arg, a->seq);
        return;
    }
    while (apply_next_commit(n)) {
    }
    run_deferred(n);
}

/* ------------------------------------------------------------------ actions */
static void on_cons_timer(uv_timer_t *t) {
    node *n = t->data;
    if (n->stopping || !n->rep) return;
    cons_actions acts = {0};
    int rc = cons_on_timer(n->rep, &acts, uv_now(n->loop));
    drive(n, rc, &acts);
}

static void do_evidence(node *n, const cons_action *a) {
    chain_hash h;
    chain_sha256(&h, a->data, a->len);
    char key[16 + 2 * CHAIN_HASH_LEN + 1];
    memcpy(key, "cons/evidence/", 15);
    chain_hex(key + 14, h.b, CHAIN_HASH_LEN);
    int rc = chain_store_put_meta(n->store, key, a->data, a->len);
    node_log(&n->lg, NODE_LOG_WARN, "evidence of double-signing by validator %u kept (%s)", a->to,
             rc ? chain_strerror(rc) : key);
}

/* Runs one action; returns -1 if the rest of the list must not run. */
static int do_action(node *n, const cons_action *a) {
    switch (a->type) {
    case CONS_ACT_PERSIST: {
        int rc = chain_store_put_meta(n->store, META_CONS, a->data, a->len);
        if (rc) {
            halt(n, "persisting the replica state failed", rc);
            return -1;
        }
        n->metrics.persist_count++;
        return 0;
    }
    case CONS_ACT_SEND:
        if (n->hooks.send) n->hooks.send(n->hooks.arg, a->to, a->data, a->len);
        return 0;
    case CONS_ACT_BROADCAST:
        if (n->hooks.broadcast) n->hooks.broadcast(n->hooks.arg, a->data, a->len);
        return 0;
    case CONS_ACT_SET_TIMER: {
        uint64_t now = uv_now(n->loop);
        uv_timer_start(&n->cons_timer, on_cons_timer, a->at_ms > now ? a->at_ms - now : 0, 0);
        return 0;
    }
    case CONS_ACT_CANCEL_TIMER:
        uv_timer_stop(&n->cons_timer);
        return 0;
    case CONS_ACT_VALIDATE:
        do_validate(n, a);
        return 0;
    case CONS_ACT_COMMIT:
        do_commit(n, a);
        return 0;
    case CONS_ACT_EVIDENCE:
        do_evidence(n, a);
        return 0;
    case CONS_ACT_NEW_PRIMARY:
        node_log(&n->lg, NODE_LOG_INFO, "view %" PRIu64 ": primary is validator %u", a->view, a->to);
        if (n->prod) node__producer_poke(n->prod);
        return 0;
    case CONS_ACT_FETCH:
        if (n->hooks.fetch) n->hooks.fetch(n->hooks.arg, a->seq);
        return 0;
    }
    node_log(&n->lg, NODE_LOG_WARN, "unknown replica action %d ignored", (int)a->type);
    return 0;
}

static void run_list(node *n, int rc, const cons_actions *acts) {
    if (rc < 0 && rc != CONS_ESTALE)
        node_log(&n->lg, NODE_LOG_DEBUG, "replica: %s", cons_strerror(rc));
    for (size_t i = 0; acts && i < acts->n && !n->halted; i++)
        if (do_action(n, &acts->items[i]) < 0) break;
}

/* Tells the replica that transactions wait, so its view timer runs and a
 * silent primary is replaced; once per committed block is enough. */
static void signal_pending(node *n) {
    if (!n->rep || n->in_drive || n->pending_signalled || n->stopping || n->halted ||
        node__mempool_size(n->mp) == 0)
        return;
    n->pending_signalled = 1;
    cons_actions acts = {0};
    int rc = cons_request_pending(n->rep, &acts, uv_now(n->loop));
    drive(n, rc, &acts);
}

/* Runs a list, then the replies it queued, each of which yields a new list. */
static void drive(node *n, int rc, const cons_actions *acts) {
    assert(!n->in_drive);
    n->in_drive = 1;
    run_list(n, rc, acts);
    for (int steps = 0; n->fq_n > 0 && !n->halted && n->rep; steps++) {
        assert(steps < DRIVE_STEPS_MAX);
        followup f = n->fq[n->fq_head];
        n->fq_head = (n->fq_head + 1) % FOLLOWUPS_MAX;
        n->fq_n--;
        cons_actions next = {0};
        uint64_t now = uv_now(n->loop);
        int r = f.kind == FU_VALIDATED ? cons_on_validated(n->rep, &next, now, f.seq, &f.digest, f.ok)
                                       : cons_on_committed(n->rep, &next, now, f.seq, &f.digest);
        run_list(n, r, &next);
    }
    n->fq_n = n->rep ? n->fq_n : 0;
    n->in_drive = 0;
    signal_pending(n);
}

int node__propose(node *n, const uint8_t *block, size_t len, const chain_hash *digest) {
    if (!n->rep || n->halted) return NODE_ECONS;
    cons_actions acts = {0};
    int rc = cons_propose(n->rep, &acts, uv_now(n->loop), block, len, digest);
    if (rc == 0) n->metrics.blocks_proposed++;
    drive(n, rc, &acts);
    return rc == 0 ? 0 : NODE_ECONS;
}

/* ------------------------------------------------------------------ peers */
int node_on_cons_message(node *n, uint32_t from, const uint8_t *msg, size_t len) {
    if (n->stopping || n->halted) return NODE_ESTOPPED;
    if (!n->rep) return NODE_EINVAL;
    cons_actions acts = {0};
    int rc = cons_on_message(n->rep, &acts, uv_now(n->loop), from, msg, len);
    drive(n, rc, &acts);
    return rc == 0 ? 0 : NODE_ECONS;
}

int node_on_tx(node *n, const uint8_t *tx, size_t len) {
    chain_hash h;
    char reason[NODE_REASON_MAX];
    int status;
    return node__submit_tx(n, &h, reason, &status, tx, len, 1);
}

size_t node_on_peer(node *n, uint32_t peer, int up) {
    if (!up || n->stopping || n->hooks.send_tx == NULL) return 0;
    if (peer >= n->genesis->n_validators || (int)peer == n->vindex) return 0;
    size_t sent = 0;
    for (const node__mp_entry *e = node__mempool_first(n->mp); e != NULL; e = node__mempool_next(e)) {
        if (n->hooks.send_tx(n->hooks.arg, peer, e->tx, e->len) != 0) break;
        sent++;
    }
    if (sent > 0)
        node_log(&n->lg, NODE_LOG_INFO, "handed %zu pending txs to validator %" PRIu32 " (link up)", sent, peer);
    return sent;
}

/* The node's part of a synced block the store now holds. */
static void after_synced(node *n, const chain_block *b, double apply_s) {
    held_block *h = held_find(n->commits, NODE_PENDING_COMMITS_MAX, b->hdr.height);
    if (h) held_free(h);
    n->metrics.blocks_synced++;
    after_commit(n, b, apply_s);
}

/* Held consensus commits and validations may follow the new tip. */
static void after_tip_moved(node *n) {
    while (apply_next_commit(n)) {
    }
    run_deferred(n);
    drive(n, 0, NULL);
}

/* Applies a decoded synced block, durably, if it is the next height. */
static int on_decoded(node *n, const chain_block *b) {
    if (n->stopping || n->halted) return NODE_ESTOPPED;
    uint64_t height = chain_store_height(n->store);
    if (b->hdr.height != height + 1) return b->hdr.height <= height ? NODE_EDUP : NODE_EINVAL;
    double t0 = mono_s();
    int rc = chain_apply_committed(n->store, b);
    if (rc != 0) {
        node_log(&n->lg, NODE_LOG_WARN, "synced block %" PRIu64 " refused: %s", b->hdr.height,
                 chain_strerror(rc));
        return NODE_ECHAIN;
    }
    after_synced(n, b, mono_s() - t0);
    if (n->rep) {
        chain_hash digest;
        chain_header_hash(&b->hdr, &digest);
        followup_push(n, FU_COMMITTED, b->hdr.height, &digest, 1);
    }
    after_tip_moved(n);
    return 0;
}

/* Writes the synced blocks bs[*written..upto) that ck applied, then does
 * the node's part of each (apply_s: the time since the last write, shared
 * out). */
static int write_synced(node *n, chain_blocks_check *ck, const chain_block *bs, size_t *written,
                        size_t upto, double t0) {
    if (upto == *written) return 0;
    int rc = chain_blocks_check_write(n->store, ck);
    if (rc != 0) {
        node_log(&n->lg, NODE_LOG_WARN, "synced blocks %" PRIu64 "..%" PRIu64 " not written: %s",
                 bs[*written].hdr.height, bs[upto - 1].hdr.height, chain_strerror(rc));
        return NODE_ECHAIN;
    }
    double per = (mono_s() - t0) / (double)(upto - *written);
    for (size_t i = *written; i < upto; i++) after_synced(n, &bs[i], per);
    *written = upto;
    after_tip_moved(n);
    return 0;
}

static int decode_synced(chain_block *b, const uint8_t *data, size_t len) {
    chain_block_init(b);
    if (len == 0 || len > CHAIN_BLOCK_BYTES_MAX) return NODE_EINVAL;
    return chain_block_decode(b, data, len) == 0 ? 0 : NODE_ECHAIN;
}

int node_on_block(node *n, const uint8_t *data, size_t len) {
    if (n->stopping || n->halted) return NODE_ESTOPPED;
    chain_block b;
    int rc = decode_synced(&b, data, len);
    if (rc == 0) rc = on_decoded(n, &b);
    chain_block_free(&b);
    return rc;
}

/* Synced blocks are certified, so the network has them whatever happens
 * here: one log sync per run instead of per block costs at most a re-fetch
 * after a crash (chain_apply_committed_unsynced says why the store stays
 * consistent). Consensus commits applied in between stay synced, and a
 * synced write makes the earlier ones durable too. The blocks are executed
 * one on top of the other in memory and written together every
 * NODE_SYNC_WRITE_TXS txs (chain_blocks_check_write says what that
 * saves). */
size_t node_on_blocks(node *n, const uint8_t *const *blocks, const size_t *lens, size_t count) {
    if (n->stopping || n->halted || count == 0) return 0;
    chain_block *bs = calloc(count, sizeof *bs);
    if (bs == NULL) return 0;
    size_t decoded = 0, applied = 0;
    while (decoded < count && decode_synced(&bs[decoded], blocks[decoded], lens[decoded]) == 0) decoded++;
    /* Only the run that continues the tip can apply (the loop below stops
     * at the first block that does not): a stale or overtaken response
     * costs no signature checks. */
    uint64_t next = chain_store_height(n->store) + 1;
    size_t run = 0;
    while (run < decoded && bs[run].hdr.height == next + run) run++;
    /* Certificates and signatures are checked on other cores while this
     * thread executes: it waits only for the block it applies next. */
    chain_blocks_check *ck = NULL;
    int rc = run ? chain_blocks_check_start(&ck, chain_store_genesis(n->store), bs, run,
                                            chain_verify_threads_default())
                 : 0;
    if (rc != 0) {
        node_log(&n->lg, NODE_LOG_WARN, "synced blocks not applied: %s", chain_strerror(rc));
        run = 0;
    }
    double t0 = mono_s();
    int write_failed = 0;
    for (size_t i = 0; i < run && !n->stopping && !n->halted; i++) {
        /* A write lets held consensus commits apply: they may overtake. */
        if (bs[i].hdr.height <= chain_store_height(n->store)) break;
        rc = chain_apply_checked(n->store, ck, i);
        if (rc != 0) {
            node_log(&n->lg, NODE_LOG_WARN, "synced block %" PRIu64 " refused: %s", bs[i].hdr.height,
                     chain_strerror(rc));
            break;
        }
        size_t txs, held = chain_blocks_check_unwritten(ck, &txs);
        if (txs < NODE_SYNC_WRITE_TXS && held < NODE_SYNC_WRITE_BLOCKS && i + 1 < run) continue;
        write_failed = write_synced(n, ck, bs, &applied, i + 1, t0) != 0;
        if (write_failed) break;
        t0 = mono_s();
    }
    /* A refused block still leaves the ones before it to write; a refused
     * write (a wrong state root) leaves nothing worth trying again. */
    size_t unwritten = chain_blocks_check_unwritten(ck, NULL);
    if (!write_failed && !n->stopping && !n->halted)
        (void)write_synced(n, ck, bs, &applied, applied + unwritten, t0);
    chain_blocks_check_end(ck);
    chain_hash last;
    if (applied > 0) chain_header_hash(&bs[applied - 1].hdr, &last);
    uint64_t last_height = applied > 0 ? bs[applied - 1].hdr.height : 0;
    for (size_t i = 0; i < count; i++) chain_block_free(&bs[i]);
    free(bs);
    if (applied == 0 || n->halted) return applied;
    rc = chain_store_sync(n->store);
    if (rc != 0) {
        halt(n, "syncing synced blocks failed", rc);
        return applied;
    }
    /* The replica hears of the run once, now that it is durable, as one
     * commit of its last block: a replica far behind then signs (and
     * persists, one more sync) at most one checkpoint per response instead
     * of one per checkpoint interval, for heights the others have long
     * made stable. */
    if (n->rep) {
        followup_push(n, FU_COMMITTED, last_height, &last, 1);
        drive(n, 0, NULL);
    }
    return applied;
}

/* ------------------------------------------------------------------ admission */
static int refuse(char *reason, int *status, int st, const char *fmt, const char *arg) {
    snprintf(reason, NODE_REASON_MAX, fmt, arg);
    *status = st;
    return st == 503 ? NODE_EFULL : NODE_EINVAL;
}

static const char *tx_error(int rc) {
    switch (rc) {
    case CHAIN_ESIG: return "bad signature";
    case CHAIN_ECHAINID: return "wrong chain id";
    case CHAIN_ETIME: return "created_at too far from the node's clock";
    default: return chain_strerror(rc);
    }
}

int node__submit_tx(node *n, chain_hash *hash, char *reason, int *status, const uint8_t *tx,
                    size_t len, int from_peer) {
    if (n->stopping || n->halted) return refuse(reason, status, 503, "%s", "node is stopping");
    if (len == 0) return refuse(reason, status, 400, "%s", "empty transaction");
    if (len > CHAIN_TX_BYTES_MAX) return refuse(reason, status, 413, "%s", "transaction too large");
    chain_tx_hash(hash, tx, len);
    chain_tx t;
    int rc = chain_tx_decode(&t, tx, len);
    if (rc) return refuse(reason, status, 400, "malformed transaction: %s", chain_strerror(rc));
    rc = chain_tx_check(&t, n->genesis->chain_id, node__now_s());
    if (rc) return refuse(reason, status, 400, "%s", tx_error(rc));
    if (node__mempool_find(n->mp, hash)) return 0;   /* resubmission: idempotent */
    uint64_t last = chain_store_nonce(n->store, &t.signer);
    if (t.nonce <= last) return refuse(reason, status, 400, "%s", "nonce already used (replay)");
    rc = node__mempool_add(n->mp, hash, &t.signer, t.nonce, tx, len, 1);
    if (rc == NODE_EFULL) return refuse(reason, status, 503, "%s", "mempool full");
    if (rc == CHAIN_ENONCE) return refuse(reason, status, 400, "%s", "nonce not above the signer's pending nonce");
    if (rc) return refuse(reason, status, 503, "%s", node_strerror(rc));
    n->metrics.txs_admitted++;
    if (n->lg.level <= NODE_LOG_DEBUG) {
        char hx[2 * CHAIN_HASH_LEN + 1];
        chain_hex(hx, hash->b, CHAIN_HASH_LEN);
        node_log(&n->lg, NODE_LOG_DEBUG, "admitted tx %s (%s)", hx, chain_tx_type_name(t.type));
    }
    if (!from_peer && n->hooks.gossip_tx) n->hooks.gossip_tx(n->hooks.arg, tx, len);
    if (n->prod) node__producer_poke(n->prod);
    signal_pending(n);
    return 0;
}

/* ------------------------------------------------------------------ lifecycle */
static int fail(char *err, size_t errlen, int rc, const char *fmt, const char *a, const char *b) {
    if (err && errlen) snprintf(err, errlen, fmt, a, b);
    return rc;
}

/* mkdir -p: RocksDB creates only the last level. */
static int make_dirs(const char *path) {
    char buf[NODE_PATH_MAX];
    snprintf(buf, sizeof(buf), "%s", path);
    for (char *p = buf + 1; *p; p++) {
        if (*p != '/') continue;
        *p = 0;
        if (mkdir(buf, 0700) != 0 && errno != EEXIST) return -1;
        *p = '/';
    }
    return mkdir(buf, 0700) != 0 && errno != EEXIST ? -1 : 0;
}

/* The passphrase: passphrase_file (first line) or CONSENT_PASSPHRASE. */
static int read_passphrase(char *out, size_t cap, const node_config *cfg) {
    if (!cfg->passphrase_file[0]) {
        const char *env = getenv("CONSENT_PASSPHRASE");
        if (!env || strlen(env) >= cap) return -1;
        snprintf(out, cap, "%s", env);
        return 0;
    }
    FILE *f = fopen(cfg->passphrase_file, "r");
    if (!f) return -1;
    int ok = fgets(out, (int)cap, f) != NULL;
    fclose(f);
    if (!ok) return -1;
    out[strcspn(out, "\r\n")] = 0;
    return 0;
}

static int load_key(node *n, char *err, size_t errlen) {
    char pass[1024];
    if (read_passphrase(pass, sizeof(pass), &n->cfg))
        return fail(err, errlen, NODE_ECONFIG, "validator key %s: no passphrase (%s)", n->cfg.key_file,
                    n->cfg.passphrase_file[0] ? "cannot read passphrase_file" : "set CONSENT_PASSPHRASE");
    int rc = chain_keystore_load(&n->key, n->cfg.key_file, pass);
    memset(pass, 0, sizeof(pass));
    if (rc) return fail(err, errlen, NODE_ECONFIG, "validator key %s: %s", n->cfg.key_file, chain_strerror(rc));
    chain_key_pubkey(n->key, &n->pubkey);
    n->vindex = chain_genesis_validator_index(n->genesis, &n->pubkey);
    if (n->vindex < 0)
        return fail(err, errlen, NODE_ECONFIG, "validator key %s: %s", n->cfg.key_file,
                    "not a validator of this genesis");
    return 0;
}

static int open_store(node *n, char *err, size_t errlen) {
    if (make_dirs(n->cfg.data_dir))
        return fail(err, errlen, NODE_EIO, "data_dir %s: %s", n->cfg.data_dir, strerror(errno));
    int rc = chain_store_open(&n->store, n->cfg.data_dir, n->genesis);
    if (rc) return fail(err, errlen, NODE_ECHAIN, "store %s: %s", n->cfg.data_dir, chain_strerror(rc));
    n->tip_time_ms = n->genesis->time_ms;
    uint64_t h = chain_store_height(n->store);
    if (h > 0) {
        chain_block b;
        chain_block_init(&b);
        rc = chain_store_get_block(n->store, h, &b);
        if (rc == 0) n->tip_time_ms = b.hdr.time_ms;
        chain_block_free(&b);
        if (rc) return fail(err, errlen, NODE_ECHAIN, "store %s: tip block: %s", n->cfg.data_dir, chain_strerror(rc));
    }
    return 0;
}

static int create_replica(node *n, char *err, size_t errlen) {
    uint8_t *blob = NULL;
    size_t blob_len = 0;
    int rc = chain_store_get_meta(n->store, META_CONS, &blob, &blob_len);
    if (rc && rc != CHAIN_ENOTFOUND)
        return fail(err, errlen, NODE_ECHAIN, "replica state: %s%s", chain_strerror(rc), "");
    cons_config cc = {n->genesis, n->key, n->cfg.checkpoint_interval, n->cfg.window, n->cfg.view_timeout_ms};
    chain_hash tip;
    chain_store_tip_hash(n->store, &tip);
    n->rep = cons_create(&cc, rc ? NULL : blob, rc ? 0 : blob_len, chain_store_height(n->store), &tip);
    free(blob);
    if (!n->rep) return fail(err, errlen, NODE_ECONS, "replica: %s%s", "cannot restore its state or bad config", "");
    return 0;
}

static int create_parts(node *n, char *err, size_t errlen) {
    int rc = chain_genesis_load(n->genesis, n->cfg.genesis);
    if (rc) return fail(err, errlen, NODE_ECONFIG, "genesis %s: %s", n->cfg.genesis, chain_strerror(rc));
    if (n->cfg.key_file[0] && (rc = load_key(n, err, errlen))) return rc;
    if ((rc = open_store(n, err, errlen))) return rc;
    if (node__audit_open(&n->audit, n->cfg.data_dir, n->loop))
        return fail(err, errlen, NODE_EIO, "audit log in %s: %s", n->cfg.data_dir, strerror(errno));
    if ((rc = node__sessions_create(&n->sessions, NODE_SESSIONS_DEFAULT, NODE_SESSIONS_PER_CALLER,
                                    NODE_SESSION_TTL_S)))
        return fail(err, errlen, rc, "%s%s", "sessions: out of memory", "");
    n->mp = node__mempool_create(n->cfg.mempool_max);
    n->rj = node__rejects_create(NODE_REJECTS_MAX);
    if (!n->mp || !n->rj) return fail(err, errlen, NODE_ENOMEM, "%s%s", "out of memory", "");
    if (n->key && (rc = create_replica(n, err, errlen))) return rc;
    node__http_handler h = {n, node__api_handle, node__api_body_max, node__api_stream_fill, node__api_flush};
    rc = node__http_create(&n->http, n->loop, &n->lg, &n->metrics, &h, n->cfg.api_listen);
    if (rc) return fail(err, errlen, rc, "api_listen %s: %s", n->cfg.api_listen, rc == NODE_EIO ? "cannot listen" : "bad address");
    rc = node__producer_create(&n->prod, n, n->loop, n->cfg.block_interval_ms, n->cfg.block_txs_max);
    if (rc) return fail(err, errlen, rc, "%s%s", "producer: out of memory", "");
    uv_timer_init(n->loop, &n->cons_timer);
    n->cons_timer.data = n;
    return 0;
}

/* The peer transport: validators link to each other, full nodes sync. */
static int create_p2p(node *n, char *err, size_t errlen) {
    node_p2p_config pc;
    memset(&pc, 0, sizeof(pc));
    pc.loop = n->loop;
    pc.genesis = n->genesis;
    pc.key = n->key;
    /* A full node only dials: validators never dial it and full nodes do
     * not link to each other, so a listener would serve nobody (and the
     * default address could clash with a validator on the same host). */
    pc.listen_addr = n->key && n->cfg.p2p_listen[0] ? n->cfg.p2p_listen : NULL;
    pc.accept_full_nodes = 1;
    pc.log = &n->lg;
    node_p2p_callbacks_for_node(&pc.cb);
    pc.arg = n;
    int rc = node_p2p_create(&n->p2p, &pc);
    if (rc) return fail(err, errlen, rc, "p2p: %s%s", node_strerror(rc), "");
    node_p2p_hooks hooks;
    node_p2p_hooks_for(&hooks, n->p2p);
    node_set_p2p(n, &hooks);
    return 0;
}

static void free_parts(node *n) {
    exec_drop_upto(n, UINT64_MAX);
    for (size_t i = 0; i < NODE_PENDING_COMMITS_MAX; i++) held_free(&n->commits[i]);
    for (size_t i = 0; i < DEFERRED_MAX; i++) held_free(&n->deferred[i]);
    if (n->rep) cons_destroy(n->rep);
    n->rep = NULL;
    if (n->store) chain_store_close(n->store);
    n->store = NULL;
    node__audit_close(n->audit);
    n->audit = NULL;
    node__sessions_destroy(n->sessions);
    n->sessions = NULL;
    chain_check_tip_free(&n->proof_tip);
    node__mempool_destroy(n->mp);
    node__rejects_destroy(n->rj);
    chain_key_destroy(n->key);
    n->mp = NULL;
    n->rj = NULL;
    n->key = NULL;
    free(n->genesis);
    n->genesis = NULL;
}

static void set_flag(void *arg) { *(int *)arg = 1; }
static void flag_handle(uv_handle_t *h) { *(int *)h->data = 1; }

int node_create(node **out, char *err, size_t errlen, uv_loop_t *loop, const node_config *cfg) {
    int rc = node_config_validate(cfg, err, errlen);
    if (rc) return rc;
    node *n = calloc(1, sizeof(*n));
    if (!n) return fail(err, errlen, NODE_ENOMEM, "%s%s", "out of memory", "");
    n->loop = loop;
    n->cfg = *cfg;
    n->lg.level = cfg->log_level;
    n->vindex = -1;
    n->genesis = calloc(1, sizeof(*n->genesis));
    rc = n->genesis ? create_parts(n, err, errlen) : NODE_ENOMEM;
    if (rc == 0) rc = create_p2p(n, err, errlen);
    if (rc) {
        int prod_closed = 0;
        if (n->prod) node__producer_close(n->prod, set_flag, &prod_closed);
        /* Close what has handles open and let the loop release them. */
        if (n->http) {
            int closed = 0;
            node__http_close(n->http, set_flag, &closed);
            while (!closed) uv_run(loop, UV_RUN_ONCE);
            node__http_destroy(n->http);
        }
        if (n->prod) {
            /* The view timer was made with the producer; closing it last
             * means the flag below also covers it. */
            int timer_closed_flag = 0;
            n->cons_timer.data = &timer_closed_flag;
            uv_close((uv_handle_t *)&n->cons_timer, flag_handle);
            while (!prod_closed || !timer_closed_flag) uv_run(loop, UV_RUN_ONCE);
            node__producer_destroy(n->prod);
        }
        free_parts(n);
        free(n);
        return rc;
    }
    node_log(&n->lg, NODE_LOG_INFO, "node up: chain %s height %" PRIu64 ", %s, api on port %d",
             n->genesis->chain_id, chain_store_height(n->store),
             n->rep ? "validator" : "full node", node_api_port(n));
    if (n->rep) node_log(&n->lg, NODE_LOG_INFO, "validator index %d of %u", n->vindex, n->genesis->n_validators);
    *out = n;
    return 0;
}

int node_start(node *n) {
    if (n->started || n->stopping) return NODE_EINVAL;
    n->started = 1;
    node__producer_start(n->prod);
    if (n->p2p) {
        node_p2p_set_height(n->p2p, chain_store_height(n->store));
        if (node_p2p_start(n->p2p) != 0) {
            node_log(&n->lg, NODE_LOG_ERROR, "p2p: cannot listen on %s", n->cfg.p2p_listen);
            return NODE_EIO;
        }
    }
    if (!n->rep) return 0;
    cons_actions acts = {0};
    int rc = cons_start(n->rep, &acts, uv_now(n->loop));
    drive(n, rc, &acts);
    if (rc < 0) {
        node_log(&n->lg, NODE_LOG_ERROR, "replica start: %s", cons_strerror(rc));
        return NODE_ECONS;
    }
    return 0;
}

static void part_closed(node *n) {
    assert(n->closing_handles > 0);
    if (--n->closing_handles > 0) return;
    /* Every handle is closed: nothing can call into the store any more. */
    if (n->store) chain_store_close(n->store);
    n->store = NULL;
    node__audit_close(n->audit);   /* fsyncs the last batch */
    n->audit = NULL;
    node__sessions_destroy(n->sessions);
    n->sessions = NULL;
    chain_check_tip_free(&n->proof_tip);
    node_log(&n->lg, NODE_LOG_INFO, "node stopped");
    if (n->done) n->done(n, n->done_arg);
}

static void http_closed(void *arg) { part_closed(arg); }
static void producer_closed(void *arg) { part_closed(arg); }
static void timer_closed(uv_handle_t *h) { part_closed(h->data); }
static void p2p_closed(void *arg) { part_closed(arg); }

void node_set_stopped_cb(node *n, void (*done)(node *n, void *arg), void *arg) {
    n->done = done;
    n->done_arg = arg;
}

void node_stop(node *n, void (*done)(node *n, void *arg), void *arg) {
    if (done) node_set_stopped_cb(n, done, arg);
    if (n->stopping) return;
    n->stopping = 1;
    node_log(&n->lg, NODE_LOG_INFO, "stopping");
    n->closing_handles = 3 + (n->p2p != NULL);
    memset(&n->hooks, 0, sizeof(n->hooks));   /* nothing leaves any more */
    if (n->p2p) node_p2p_close(n->p2p, p2p_closed, n);
    n->p2p = NULL;
    node__http_close(n->http, http_closed, n);
    node__producer_close(n->prod, producer_closed, n);
    uv_close((uv_handle_t *)&n->cons_timer, timer_closed);
}

void node_destroy(node *n) {
    if (!n) return;
    assert(n->stopping && n->closing_handles == 0);
    node__http_destroy(n->http);
    node__producer_destroy(n->prod);
    free_parts(n);
    free(n);
}
