/* smt_cache.c — a cache of state-tree nodes in front of the store, for
 * proofs.
 *
 * Every proof=1 answer walks the tree from the root: about log2(pairs)
 * node reads, each a RocksDB point read, and the top levels are the same
 * for every proof at a tip (and mostly the same from one tip to the next).
 * Nodes are content-addressed, so a cached node can never be stale: the
 * cache is a direct-mapped table keyed by node hash, filled on misses.
 * Lower levels, read once per proof, keep displacing one another, while a
 * top-level node is read far more often than it is displaced, so in
 * practice the upper levels stay resident; no bookkeeping beyond a compare.
 * One thread uses a cache (the node's loop thread).
 */
#include <stdlib.h>
#include <string.h>

#include "chain/chain.h"
#include "chain/chain_internal.h"

#define ENTRY_VAL_MAX 72             /* a node is 65 bytes (smt.c) */

typedef struct {
    chain_hash key;
    uint8_t len;                     /* 0: empty */
    uint8_t val[ENTRY_VAL_MAX];
} entry;

struct chain__smt_cache {
    uint32_t mask;
    chain__smt_backend below;
    uint64_t hits, misses;
    entry e[];
};

chain__smt_cache *chain__smt_cache_create(unsigned log2_entries)
{
    if (log2_entries == 0 || log2_entries > 24) return NULL;
    size_t n = (size_t)1 << log2_entries;
    chain__smt_cache *c = calloc(1, sizeof *c + n * sizeof(entry));
    if (c != NULL) c->mask = (uint32_t)(n - 1);
    return c;
}

void chain__smt_cache_destroy(chain__smt_cache *c)
{
    free(c);
}

static int cached_get(void *arg, const chain_hash *key, uint8_t **val, size_t *val_len)
{
    chain__smt_cache *c = arg;
    uint32_t i;
    memcpy(&i, key->b, sizeof i);   /* a hash: its bytes spread well */
    entry *e = &c->e[i & c->mask];
    if (e->len != 0 && memcmp(e->key.b, key->b, CHAIN_HASH_LEN) == 0) {
        uint8_t *v = malloc(e->len);
        if (v == NULL) return CHAIN_ENOMEM;
        memcpy(v, e->val, e->len);
        *val = v;
        *val_len = e->len;
        c->hits++;
        return CHAIN_OK;
    }
    c->misses++;
    int rc = c->below.get(c->below.arg, key, val, val_len);
    if (rc == CHAIN_OK && *val_len > 0 && *val_len <= ENTRY_VAL_MAX) {
        e->key = *key;
        e->len = (uint8_t)*val_len;
        memcpy(e->val, *val, *val_len);
    }
    return rc;
}

static int refuse_put(void *arg, const chain_hash *key, const uint8_t *val, size_t val_len)
{
    (void)arg, (void)key, (void)val, (void)val_len;
    return CHAIN_EINVAL;   /* read side only */
}

void chain__smt_cache_backend(chain__smt_cache *c, const chain__smt_backend *below, chain__smt_backend *out)
{
    c->below = *below;
    out->arg = c;
    out->get = cached_get;
    out->put = refuse_put;
}

void chain__smt_cache_stats(const chain__smt_cache *c, uint64_t *hits, uint64_t *misses)
{
    *hits = c->hits;
    *misses = c->misses;
}
