/* run.c — a run of synced blocks, executed in memory and written at once.
 *
 * A node catching up applies blocks the network committed long ago, many
 * per second. Written one by one, each block rewrote the tree pages on the
 * paths of its changes, from the root down: at 5 grants a block that is
 * some 60 pages, and inserting them into the memtable was the largest cost
 * of catching up. Most of those pages are replaced again a block or two
 * later (the top levels by every block). So a run executes each block on
 * top of the ones before it (their merged state changes and pages are the
 * base of the next, chain__exec_block_on), checks every header, state root
 * included, as it goes, and writes the blocks, their tx index, the state as
 * the last one left it and only the pages its root still reaches in one
 * WriteBatch.
 *
 * What a crash or an error can lose is unchanged: a batch is atomic, and
 * the blocks are the network's, fetched again. Only the state roots of the
 * run's inner blocks are not stored whole (their superseded pages are
 * missing), and nothing reads the state at a root other than the tip's.
 */
#include <assert.h>
#include <stdlib.h>
#include <string.h>

#include "chain/chain.h"
#include "chain/chain_internal.h"

/* As exec.c's bounds for one block, twice: a run is written once it holds
 * CHAIN_BLOCK_TXS_MAX txs, so it holds fewer than two blocks' worth. */
#define STATE_MAX ((size_t)2 * CHAIN_BLOCK_TXS_MAX * (8 + CHAIN_GRANTS_PER_PAIR_MAX))
#define NODES_MAX ((size_t)1 << 23)

struct chain__run {
    chain__base base;      /* tip after the unwritten blocks; maps below */
    chain__tip start;      /* the store's tip they build on */
    chain__map *state;
    chain__map *nodes;
    const chain_block **blocks;
    size_t n_blocks, cap, n_txs;
    int broken;            /* a merge ran out of memory: only dropping is safe */
};

chain__run *chain__run_create(void)
{
    chain__run *r = calloc(1, sizeof *r);
    if (r == NULL) return NULL;
    r->state = chain__map_create(STATE_MAX);
    r->nodes = chain__map_create(NODES_MAX);
    if (r->state == NULL || r->nodes == NULL) {
        chain__run_destroy(r);
        return NULL;
    }
    r->base.state = r->state;
    r->base.nodes = r->nodes;
    return r;
}

static void run_clear(chain__run *r)
{
    chain__map_clear(r->state);
    chain__map_clear(r->nodes);
    r->n_blocks = r->n_txs = 0;
    r->broken = 0;
}

void chain__run_destroy(chain__run *r)
{
    if (r == NULL) return;
    chain__map_destroy(r->state);
    chain__map_destroy(r->nodes);
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
    if (r->broken) return CHAIN_ENOMEM;
    if (r->n_blocks == 0) chain__store_tip(st, &r->start);
    else if (store_moved(r, st)) return CHAIN_ESTATE;
    if (r->n_blocks == r->cap) {
        size_t cap = r->cap ? 2 * r->cap : 64;
        const chain_block **v = realloc(r->blocks, cap * sizeof *v);
        if (v == NULL) return CHAIN_ENOMEM;
        r->blocks = v;
        r->cap = cap;
    }
    chain_exec *ex = NULL;
    int rc = chain__exec_block_on(&ex, st, r->n_blocks ? &r->base : NULL, b, sig_checked);
    if (rc != CHAIN_OK) return rc;
    rc = chain__exec_take(ex, r->state, r->nodes);
    chain_exec_abort(ex);
    if (rc != CHAIN_OK) {
        r->broken = 1;
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

static int fresh_get(void *arg, const chain_hash *key, uint8_t **val, size_t *len)
{
    chain__map_entry e;
    if (!chain__map_get(arg, &e, key->b, CHAIN_HASH_LEN)) return CHAIN_ENOTFOUND;
    *val = malloc(e.vlen ? e.vlen : 1);
    if (*val == NULL) return CHAIN_ENOMEM;
    memcpy(*val, e.val, e.vlen);
    *len = e.vlen;
    return CHAIN_OK;
}

static int keep_put(void *arg, const chain_hash *key, const uint8_t *val, size_t len)
{
    return chain__map_put(arg, key->b, CHAIN_HASH_LEN, val, len);
}

int chain__run_write(chain__run *r, chain_store *st)
{
    if (r->broken) return CHAIN_ENOMEM;
    if (r->n_blocks == 0) return CHAIN_OK;
    if (store_moved(r, st)) return CHAIN_ESTATE;
    chain__map *keep = chain__map_create(NODES_MAX);
    if (keep == NULL) return CHAIN_ENOMEM;
    chain__smt_backend fresh = {r->nodes, fresh_get, NULL, NULL}, out = {keep, NULL, keep_put, NULL};
    int rc = chain__smt_reachable(&fresh, &r->base.tip.state_root, &out);
    if (rc == CHAIN_OK)
        rc = chain__store_commit(st, r->blocks, r->n_blocks, &r->base.tip.hash, r->state, keep, 0);
    chain__map_destroy(keep);
    if (rc == CHAIN_OK) run_clear(r);
    return rc;
}
