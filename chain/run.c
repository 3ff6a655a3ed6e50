/* run.c — a run of synced blocks, executed in memory and written at once.
 *
 * A node catching up applies blocks the network committed long ago, many
 * per second. Applied one by one, each block updated the state tree on the
 * paths of its changes, from the root down, and wrote those pages: at 5
 * grants a block that is some 60 pages, nearly all replaced again a block
 * or two later (the top levels by every block): that tree work and the
 * memtable inserts of its pages were a large share of what catching up
 * cost. So a run executes each block on top of the ones before it (their
 * merged state changes are the base of the next, chain__exec_block_on)
 * and checks every header but its state root as it goes; the write then
 * updates the tree once with the run's merged changes and checks the root
 * against the last block's header before writing the blocks, their tx
 * index and the state in one WriteBatch (the new pages go to the store,
 * which writes them at its next flush).
 *
 * One update gives the same root as one per block: the tree is a function
 * of its set of leaves (smt.c), and the merged changes are that set's
 * difference. So a run whose last root checks has the state its last
 * block claims, and a wrong last root leaves it unwritten. What is not
 * recomputed is an inner block's root, which its certificate (2f+1
 * validators) vouches for: nothing reads the state at a root other than
 * the tip's, and the tip's is always checked.
 *
 * What a crash or an error can lose is unchanged: a batch is atomic, and
 * the blocks are the network's, fetched again.
 */
#include <assert.h>
#include <stdlib.h>
#include <string.h>

#include "chain/chain.h"
#include "chain/chain_internal.h"

/* As exec.c's bound per tx, for the most txs a run holds (its caller
 * writes it before it would hold more; a merge beyond fails). */
#define STATE_MAX ((size_t)CHAIN_RUN_TXS_MAX * (8 + CHAIN_GRANTS_PER_PAIR_MAX))
#define NODES_MAX ((size_t)1 << 23)

struct chain__run {
    chain__base base;      /* tip after the unwritten blocks; state below */
    chain__tip start;      /* the store's tip they build on */
    chain__map *state;
    const chain_block **blocks;
    size_t n_blocks, cap, n_txs;
    int broken;            /* 0, or why only dropping is safe: CHAIN_ENOMEM (a merge
                              failed) or CHAIN_EBLOCK (the last root did not check) */
};

chain__run *chain__run_create(void)
{
    chain__run *r = calloc(1, sizeof *r);
    if (r == NULL) return NULL;
    r->state = chain__map_create(STATE_MAX);
    if (r->state == NULL) {
        chain__run_destroy(r);
        return NULL;
    }
    r->base.state = r->state;
    return r;
}

static void run_clear(chain__run *r)
{
    chain__map_clear(r->state);
    r->n_blocks = r->n_txs = 0;
    r->broken = 0;
}

void chain__run_destroy(chain__run *r)
{
    if (r == NULL) return;
    chain__map_destroy(r->state);
    free(r->blocks);
    free(r);
}

size_t chain__run_unwritten(const chain__run *r, size_t *txs)
{
    if (txs != NULL) *txs = r->n_txs;
    return r->n_blocks;
}

static int store_moved(const chain__run *r, chain_store *st)
{
    chain__tip now;
    chain__store_tip(st, &now);
    return now.height != r->start.height || memcmp(now.hash.b, r->start.hash.b, CHAIN_HASH_LEN) != 0;
}

int chain__run_apply(chain__run *r, chain_store *st, const chain_block *b, const uint8_t *sig_checked)
{
    if (r->broken) return r->broken;
    if (r->n_blocks == 0) {
        chain__store_tip(st, &r->start);
        r->base.tip = r->start;
    } else if (store_moved(r, st)) {
        return CHAIN_ESTATE;
    }
    if (r->n_blocks == r->cap) {
        size_t cap = r->cap ? 2 * r->cap : 64;
        const chain_block **v = realloc(r->blocks, cap * sizeof *v);
        if (v == NULL) return CHAIN_ENOMEM;
        r->blocks = v;
        r->cap = cap;
    }
    chain_exec *ex = NULL;
    int rc = chain__exec_block_on(&ex, st, &r->base, b, sig_checked);
    if (rc != CHAIN_OK) return rc;
    rc = chain__exec_take(ex, r->state);
    chain_exec_abort(ex);
    if (rc != CHAIN_OK) {
        r->broken = CHAIN_ENOMEM;
        return rc;
    }
    r->blocks[r->n_blocks++] = b;
    r->n_txs += b->n_txs;
    r->base.tip.height = b->hdr.height;
    r->base.tip.time_ms = b->hdr.time_ms;
    r->base.tip.state_root = b->hdr.state_root;
    chain_header_hash(&b->hdr, &r->base.tip.hash);
    return CHAIN_OK;
}

int chain__run_write(chain__run *r, chain_store *st)
{
    if (r->broken) return r->broken;
    if (r->n_blocks == 0) return CHAIN_OK;
    if (store_moved(r, st)) return CHAIN_ESTATE;
    chain__map *nodes = chain__map_create(NODES_MAX);
    if (nodes == NULL) return CHAIN_ENOMEM;
    chain_hash root;
    int rc = chain__state_update(st, r->state, &r->start.state_root, nodes, &root);
    if (rc == CHAIN_OK && memcmp(root.b, r->base.tip.state_root.b, CHAIN_HASH_LEN) != 0)
        rc = r->broken = CHAIN_EBLOCK;
    if (rc == CHAIN_OK)
        rc = chain__store_commit(st, r->blocks, r->n_blocks, &r->base.tip.hash, r->state, nodes, 0);
    chain__map_destroy(nodes);
    if (rc == CHAIN_OK) run_clear(r);
    return rc;
}
