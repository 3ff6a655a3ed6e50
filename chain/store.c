/* store.c — the RocksDB store: blocks, tx index, state and meta.
 *
 * Column families (created when missing):
 *   blocks  : height (u64 BE)      -> encoded Block, certificate included
 *   txindex : tx hash              -> height (u64 BE) || index (u32 BE)
 *   state   : see state.c (grants, nonces, guardians, institutions)
 *   tree    : "Q" page hash      -> state-tree page (smt.c); apart from
 *             state so that a check's point read probes files sized by
 *             the grants alone, not by the far larger tree
 *   meta    : "c:tip"  -> height u64 BE | tip hash | state root | time_ms u64 BE
 *             "c:tree" -> the root whose pages are all written
 *             "c:dirty:" height u64 BE -> the state keys a commit changed
 *             "c:genesis" -> genesis hash
 *             "u:<key>" -> chain_store_put_meta values (consensus votes)
 * Internal meta keys and caller keys live in separate namespaces so a caller
 * can never overwrite the tip.
 *
 * Durability: a block, its tx index entries, all its state changes, the
 * keys it changed (or, at a flush, the tree pages: see "Tree pages") and
 * the new tip go in ONE WriteBatch written with sync=1, so a kill -9 leaves
 * either the whole block or none of it, and the WAL is fsynced once per
 * block rather than once per tx. A run of synced blocks
 * is written the same way, many blocks in one batch (run.c). The first
 * open writes the genesis state (its institutions) the same way.
 *
 * Reads: one LRU block cache shared by all column families (512 MiB by
 * default; the environment variable CONSENT_BLOCK_CACHE_MB sets it in MiB,
 * 8..1048576, and any other value makes chain_store_open fail with
 * CHAIN_EINVAL rather than run with a size nobody asked for) and whole-key
 * bloom filters make point reads cheap. The SMT nodes are keyed by hash, so
 * reads on a large state land on random blocks: with a 64 MiB cache and
 * monolithic per-file index and filter blocks (hundreds of KiB each at 1M
 * grants) most reads copied whole index/filter blocks back into the cache.
 * Hence partitioned (two-level) indexes and filters with the top level and
 * the L0 blocks pinned, index/filter blocks kept in the high-priority part
 * of the cache, and a hash index inside data blocks. A row cache (256 MiB,
 * CONSENT_ROW_CACHE_MB, 0..1048576) in front keeps the entries read
 * rather than their whole blocks (ROW_CACHE_MB_DEFAULT). (A 128 MiB write
 * buffer for state was tried and measured no faster at 1M grants, and it
 * lengthens WAL replay on open, so the default 64 MiB stays.) In front of
 * RocksDB, decoded tree pages go through a cache of their own (smt.c,
 * PAGE_CACHE_SLOTS_LOG2). RocksDB is safe for concurrent readers, and the
 * cached tip fields change only in chain__store_commit. Tree reads
 * (proofs) belong on the thread that commits, as in the node: a flush drops
 * the held pages of superseded roots, so a proof at such a root running on
 * another thread could fail with CHAIN_EIO.
 */
#include <assert.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>

#include <rocksdb/c.h>

#include "chain/chain.h"
#include "chain/chain_internal.h"

enum { CF_DEFAULT, CF_BLOCKS, CF_TXINDEX, CF_STATE, CF_TREE, CF_META, CF_COUNT };
static const char *const cf_names[CF_COUNT] = {"default", "blocks", "txindex", "state", "tree", "meta"};

#define META_TIP "c:tip"
#define META_TREE "c:tree"
#define META_DIRTY "c:dirty:"   /* + height u64 BE */
#define META_DIRTY_END "c:dirty;"
#define DIRTY_KEY_LEN (sizeof META_DIRTY - 1 + 8)
#define META_GENESIS "c:genesis"
#define META_USER_PREFIX "u:"
#define META_KEY_LEN_MAX 128
#define META_VAL_LEN_MAX (16u * 1024 * 1024)
#define TIP_BYTES (8 + 2 * CHAIN_HASH_LEN + 8)
#define BLOCK_CACHE_MB_DEFAULT 512u
#define BLOCK_CACHE_MB_MIN 8u
#define CACHE_MB_MAX (1024u * 1024)
#define BLOCK_CACHE_ENV "CONSENT_BLOCK_CACHE_MB"
/* A row cache in front of the tables: a point read that finds its entry
 * there skips the block cache's lookups for filter, index and data blocks
 * and the data block's search (it is still looked up once per level that
 * may hold the key). Tree pages missing from the page cache and state
 * values missing from the value cache are read this way. Measured on a
 * 10M-grant store, gateway checks of 20,000 patients of its first 1M
 * grants, alternated (before pair lists had the value cache): session
 * 60-78k/s against 41-50k/s without it, proof=1
 * 24.5-32.7k/s against 18.7-20.5k/s, node peak RSS 791 against 717 MB
 * (512 MiB measured the same as 256). CONSENT_ROW_CACHE_MB sets it; 0 turns
 * it off. */
#define ROW_CACHE_MB_DEFAULT 256u
#define ROW_CACHE_ENV "CONSENT_ROW_CACHE_MB"
/* Decoded tree pages by hash: 2^18 slots of ~2 KiB, at most ~530 MiB
 * (slots fill as pages are read). Every tree update reads the pages from
 * the root down; the upper four levels (~4,400 pages) are what every block
 * reads, most of them written by the block before, and from RocksDB each
 * would cost a memtable search, a block-cache lookup and rehashing the
 * page. A proof at 10M grants walks six levels, the fifth of 65,536 pages:
 * 2^18 slots keep most of it (proof=1 checks at 10M: 31.5k/s and 31.6 us
 * of node CPU each, against 28.1k/s and 35.3 us with 2^16, four paired
 * runs). */
#define PAGE_CACHE_SLOTS_LOG2 18u

/* Tree pages are written to RocksDB when the pages held back reach
 * TREE_FLUSH_BYTES or after TREE_DIRTY_MAX commits (see "Tree pages"). */
#define TREE_FLUSH_BYTES ((size_t)32 << 20)
#define TREE_DIRTY_MAX 256u
#define PENDING_MAX ((size_t)1 << 24)

/* Hot state values by key, present or absent: registry records and pair
 * lists. Every grant's execution and every gateway check reads the
 * grantee's record, and a few hundred institutions answer nearly all of
 * them; a check also reads its (patient, grantee) pair list, and a gateway
 * asks again and again about the patients it serves. From RocksDB each read
 * is a memtable search and, per level that may hold the key, a row-cache
 * lookup or a filter and index lookup, so the larger the state the more it
 * costs: at 10M grants two levels hold pair lists against one at 1M, and
 * the row cache's hash table lookups were 10% of a session check's CPU
 * (5.6% at 1M). One lookup here costs the same at any size. Direct-mapped
 * slots (the keys are curve points: any of their bytes spread well); the
 * registry has its own, so pairs never push institutions out. A commit
 * updates the slots that hold a key its block changed, after the write; a
 * reader fills a slot only if no commit touched the cache since it began
 * its read (val_gen), so a slot never holds a value older than the
 * committed state. A value larger than a slot is simply not kept. */
#define INST_CACHE_SLOTS 1024u
#define PAIR_CACHE_SLOTS (1u << 17)   /* ~1.1 KiB each, touched as filled: <= 137 MiB */
#define VAL_CACHE_MAX 1024u           /* a registry record or a list of up to five grants */
#define VAL_KEY_MAX (1 + 2 * CHAIN_KEY_LEN)
typedef struct {
    uint8_t key[VAL_KEY_MAX];
    uint8_t klen, used, present;
    uint16_t len;
    uint8_t val[VAL_CACHE_MAX];
} val_slot;

struct chain_store {
    rocksdb_t *db;
    rocksdb_options_t *opts;
    rocksdb_options_t *tree_opts;   /* CF_TREE: opts without last-level filters */
    rocksdb_block_based_table_options_t *bbto;
    rocksdb_cache_t *cache;
    rocksdb_cache_t *row_cache;   /* NULL when off */
    rocksdb_column_family_handle_t *cf[CF_COUNT];
    rocksdb_readoptions_t *ropts;
    rocksdb_writeoptions_t *wsync;
    rocksdb_writeoptions_t *wlazy;   /* unsynced: block sync, see chain__store_commit */
    chain_genesis *genesis;   /* a copy: callers may free theirs */
    uint64_t height;
    chain_hash tip_hash;
    chain_hash state_root;
    uint64_t tip_time_ms;
    chain__smt_cache *pages;
    pthread_mutex_t val_lock;
    uint64_t val_gen;    /* commits that changed a cacheable value */
    val_slot *insts;     /* INST_CACHE_SLOTS */
    val_slot *pairs;     /* PAIR_CACHE_SLOTS */
    /* Tree pages of written blocks not yet in RocksDB (see "Tree pages"). */
    pthread_rwlock_t pending_lock;
    chain__map *pending;        /* page hash -> encoded page */
    size_t pending_bytes;
    chain_hash tree_root;       /* every page under it is in RocksDB */
    uint64_t dirty[TREE_DIRTY_MAX];   /* heights of the "c:dirty:" entries */
    unsigned n_dirty;
    size_t flush_bytes;         /* TREE_FLUSH_BYTES; tests lower it */
    unsigned flush_commits;     /* at most TREE_DIRTY_MAX */
};

static uint64_t get_u64be(const uint8_t *p)
{
    uint64_t v = 0;
    for (int i = 0; i < 8; i++) v = (v << 8) | p[i];
    return v;
}

static uint32_t get_u32be(const uint8_t *p)
{
    uint32_t v = 0;
    for (int i = 0; i < 4; i++) v = (v << 8) | p[i];
    return v;
}

/* RocksDB reports errors as malloc'd strings; we map them all to CHAIN_EIO
 * (the node logs the code; the detail is not actionable by a caller). */
static int rdb_err(char *err)
{
    if (err == NULL) return CHAIN_OK;
    rocksdb_free(err);
    return CHAIN_EIO;
}

/* ------------------------------------------------------------------ raw access */

static int cf_get(chain_store *st, int cf, uint8_t **val, size_t *len, const void *key, size_t klen)
{
    char *err = NULL;
    size_t n = 0;
    char *v = rocksdb_get_cf(st->db, st->ropts, st->cf[cf], key, klen, &n, &err);
    if (err != NULL) return rdb_err(err);
    if (v == NULL) return CHAIN_ENOTFOUND;
    /* Hand out a buffer the caller frees with free(), whatever allocator
     * RocksDB used. */
    uint8_t *copy = malloc(n ? n : 1);
    if (copy == NULL) {
        rocksdb_free(v);
        return CHAIN_ENOMEM;
    }
    memcpy(copy, v, n);
    rocksdb_free(v);
    *val = copy;
    *len = n;
    return CHAIN_OK;
}

/* ------------------------------------------------------------------ value cache */

static val_slot *val_slot_of(chain_store *st, const uint8_t *key, size_t klen)
{
    uint32_t x = 0, y = 0;
    if (klen == 1 + CHAIN_KEY_LEN && key[0] == CHAIN__PFX_INST) {
        memcpy(&x, key + 1, sizeof x);
        return &st->insts[x % INST_CACHE_SLOTS];
    }
    if (klen == 1 + 2 * CHAIN_KEY_LEN && key[0] == CHAIN__PFX_PAIR) {
        memcpy(&x, key + 1, sizeof x);                   /* patient */
        memcpy(&y, key + 1 + CHAIN_KEY_LEN, sizeof y);   /* grantee */
        return &st->pairs[(x ^ y) % PAIR_CACHE_SLOTS];
    }
    return NULL;
}

static int val_slot_holds(const val_slot *s, const uint8_t *key, size_t klen)
{
    return s->used && s->klen == klen && memcmp(s->key, key, klen) == 0;
}

/* Copies a cached value into buf (cap bytes) or a malloc'd *heap (when
 * heap != NULL). Returns 1 with *rc set on a hit, 0 on a miss (*gen gets
 * the generation to fill with). */
static int val_cache_get(chain_store *st, val_slot *s, const uint8_t *key, size_t klen, uint8_t *buf,
                         size_t cap, uint8_t **heap, size_t *len, int *rc, uint64_t *gen)
{
    pthread_mutex_lock(&st->val_lock);
    int hit = val_slot_holds(s, key, klen);
    *gen = st->val_gen;
    if (hit) {
        *len = s->len;
        *rc = CHAIN_OK;
        uint8_t *dst = buf;
        if (!s->present) *rc = CHAIN_ENOTFOUND;
        else if (heap != NULL && (dst = *heap = malloc(s->len ? s->len : 1)) == NULL) *rc = CHAIN_ENOMEM;
        else if (heap == NULL && s->len > cap) *rc = CHAIN_EBOUNDS;
        if (*rc == CHAIN_OK && dst != NULL) memcpy(dst, s->val, s->len);
    }
    pthread_mutex_unlock(&st->val_lock);
    return hit;
}

/* Sets a slot to key's value (val NULL: absent); under val_lock. */
static void val_slot_set(val_slot *s, const uint8_t *key, size_t klen, const uint8_t *val, size_t len)
{
    memcpy(s->key, key, klen);
    s->klen = (uint8_t)klen;
    s->present = val != NULL;
    s->len = (uint16_t)(val != NULL ? len : 0);
    s->used = len <= VAL_CACHE_MAX;   /* a bigger one is just not kept */
    if (s->used && val != NULL) memcpy(s->val, val, len);
}

/* A reader's fill (val NULL: absent), unless a commit changed a cacheable
 * value since generation gen. */
static void val_cache_fill(chain_store *st, val_slot *s, const uint8_t *key, size_t klen, const uint8_t *val,
                           size_t len, uint64_t gen)
{
    pthread_mutex_lock(&st->val_lock);
    if (gen == st->val_gen) val_slot_set(s, key, klen, val, len);
    pthread_mutex_unlock(&st->val_lock);
}

/* After a commit's write: the slots holding a value its block changed. */
static void val_cache_commit(chain_store *st, const chain__map *state)
{
    chain__map_entry e;
    size_t it = 0;
    pthread_mutex_lock(&st->val_lock);
    st->val_gen++;
    while (chain__map_next(state, &it, &e)) {
        val_slot *s = val_slot_of(st, e.key, e.klen);
        if (s != NULL && val_slot_holds(s, e.key, e.klen)) val_slot_set(s, e.key, e.klen, e.val, e.vlen);
    }
    pthread_mutex_unlock(&st->val_lock);
}

int chain__store_get(chain_store *st, uint8_t **val, size_t *len, const uint8_t *key, size_t klen)
{
    assert(st != NULL && key != NULL);
    val_slot *s = val_slot_of(st, key, klen);
    uint64_t gen = 0;
    int rc;
    if (s != NULL && val_cache_get(st, s, key, klen, NULL, 0, val, len, &rc, &gen)) return rc;
    rc = cf_get(st, CF_STATE, val, len, key, klen);
    if (s != NULL && (rc == CHAIN_OK || rc == CHAIN_ENOTFOUND))
        val_cache_fill(st, s, key, klen, rc == CHAIN_OK ? *val : NULL, rc == CHAIN_OK ? *len : 0, gen);
    return rc;
}

int chain__store_read(chain_store *st, uint8_t *buf, size_t cap, size_t *len, const uint8_t *key,
                      size_t klen)
{
    val_slot *s = val_slot_of(st, key, klen);
    uint64_t gen = 0;
    int hit_rc;
    if (s != NULL && val_cache_get(st, s, key, klen, buf, cap, NULL, len, &hit_rc, &gen)) return hit_rc;
    char *err = NULL;
    rocksdb_pinnableslice_t *p =
        rocksdb_get_pinned_cf(st->db, st->ropts, st->cf[CF_STATE], (const char *)key, klen, &err);
    if (err != NULL) return rdb_err(err);
    if (p == NULL) {
        if (s != NULL) val_cache_fill(st, s, key, klen, NULL, 0, gen);
        return CHAIN_ENOTFOUND;
    }
    size_t n = 0;
    const char *v = rocksdb_pinnableslice_value(p, &n);
    int rc = CHAIN_OK;
    if (v == NULL) rc = CHAIN_ENOTFOUND;
    else if (n > cap) rc = CHAIN_EBOUNDS;
    else memcpy(buf, v, n);
    *len = n;
    if (s != NULL && (rc == CHAIN_OK || rc == CHAIN_ENOTFOUND))
        val_cache_fill(st, s, key, klen, rc == CHAIN_OK ? (const uint8_t *)v : NULL, n, gen);
    rocksdb_pinnableslice_destroy(p);
    return rc;
}

int chain__store_node_get(chain_store *st, const chain_hash *h, uint8_t **val, size_t *len)
{
    chain__map_entry e;
    int rc = CHAIN_ENOTFOUND;
    pthread_rwlock_rdlock(&st->pending_lock);
    if (chain__map_get(st->pending, &e, h->b, CHAIN_HASH_LEN)) {
        *val = malloc(e.vlen ? e.vlen : 1);
        rc = *val == NULL ? CHAIN_ENOMEM : CHAIN_OK;
        if (rc == CHAIN_OK) memcpy(*val, e.val, e.vlen);
        *len = e.vlen;
    }
    pthread_rwlock_unlock(&st->pending_lock);
    if (rc != CHAIN_ENOTFOUND) return rc;
    uint8_t k[CHAIN__KEY_MAX];
    size_t kl = chain__key_node(k, h);
    return cf_get(st, CF_TREE, val, len, k, kl);
}

static int smt_get(void *arg, const chain_hash *key, uint8_t **val, size_t *val_len)
{
    return chain__store_node_get(arg, key, val, val_len);
}

static int smt_put_refused(void *arg, const chain_hash *key, const uint8_t *val, size_t val_len)
{
    return CHAIN_EINVAL;   /* committed nodes change only through a block */
}

void chain__store_smt_backend(chain_store *st, chain__smt_backend *out)
{
    out->arg = st;
    out->get = smt_get;
    out->put = smt_put_refused;
    out->cache = st->pages;
}

chain__smt_cache *chain__store_smt_cache(chain_store *st)
{
    return st->pages;
}

uint64_t chain__store_tip_time_ms(const chain_store *st)
{
    return st->tip_time_ms;
}

/* ------------------------------------------------------------------ tip */

static void tip_encode(uint8_t out[TIP_BYTES], uint64_t height, const chain_hash *tip,
                       const chain_hash *root, uint64_t time_ms)
{
    chain__put_u64be(out, height);
    memcpy(out + 8, tip->b, CHAIN_HASH_LEN);
    memcpy(out + 8 + CHAIN_HASH_LEN, root->b, CHAIN_HASH_LEN);
    chain__put_u64be(out + 8 + 2 * CHAIN_HASH_LEN, time_ms);
}

static int tip_load(chain_store *st)
{
    uint8_t *v = NULL;
    size_t n = 0;
    int rc = cf_get(st, CF_META, &v, &n, META_TIP, strlen(META_TIP));
    if (rc != CHAIN_OK) return rc == CHAIN_ENOTFOUND ? CHAIN_EIO : rc;
    if (n != TIP_BYTES) rc = CHAIN_EIO;
    if (rc == CHAIN_OK) {
        st->height = get_u64be(v);
        memcpy(st->tip_hash.b, v + 8, CHAIN_HASH_LEN);
        memcpy(st->state_root.b, v + 8 + CHAIN_HASH_LEN, CHAIN_HASH_LEN);
        st->tip_time_ms = get_u64be(v + 8 + 2 * CHAIN_HASH_LEN);
    }
    free(v);
    return rc;
}

/* ------------------------------------------------------------------ genesis state */

/* Tree backend for the genesis write: nodes go to a map, then to the batch. */
static int map_smt_get(void *arg, const chain_hash *key, uint8_t **val, size_t *val_len)
{
    chain__map_entry e;
    if (!chain__map_get(arg, &e, key->b, CHAIN_HASH_LEN)) return CHAIN_ENOTFOUND;
    uint8_t *copy = malloc(e.vlen ? e.vlen : 1);
    if (copy == NULL) return CHAIN_ENOMEM;
    memcpy(copy, e.val, e.vlen);
    *val = copy;
    *val_len = e.vlen;
    return CHAIN_OK;
}

static int map_smt_put(void *arg, const chain_hash *key, const uint8_t *val, size_t val_len)
{
    return chain__map_put(arg, key->b, CHAIN_HASH_LEN, val, val_len);
}

/* Puts the genesis institutions into `state` and computes the genesis root. */
static int genesis_state(chain__map *state, chain__map *nodes, chain_hash *root,
                         const chain_genesis *g)
{
    uint32_t n = g->n_institutions;
    chain_hash *keys = malloc((n ? n : 1) * sizeof *keys);
    chain_hash *vals = malloc((n ? n : 1) * sizeof *vals);
    const chain_hash **vp = malloc((n ? n : 1) * sizeof *vp);
    int rc = keys == NULL || vals == NULL || vp == NULL ? CHAIN_ENOMEM : CHAIN_OK;
    for (uint32_t i = 0; i < n && rc == CHAIN_OK; i++) {
        uint8_t k[CHAIN__KEY_MAX], *v = NULL;
        size_t kl = chain__key_inst(k, &g->institutions[i].key), vl = 0;
        rc = chain__inst_encode(&v, &vl, &g->institutions[i]);
        if (rc != CHAIN_OK) break;
        rc = chain__map_put(state, k, kl, v, vl);
        int leaf = chain__state_leaf_key(&keys[i], k, kl);
        assert(leaf == 1);
        chain__state_leaf_val(&vals[i], v, vl);
        vp[i] = &vals[i];
        free(v);
    }
    chain_hash empty;
    chain__smt_empty_root(&empty);
    chain__smt_backend be = {nodes, map_smt_get, map_smt_put, NULL};
    if (rc == CHAIN_OK) rc = chain__smt_update(&be, root, &empty, n, keys, vp);
    free(keys);
    free(vals);
    free(vp);
    return rc;
}

static int entry_cmp(const void *x, const void *y)
{
    const chain__map_entry *a = x, *b = y;
    int c = memcmp(a->key, b->key, a->klen < b->klen ? a->klen : b->klen);
    return c != 0 ? c : (a->klen > b->klen) - (a->klen < b->klen);
}

/* The entries of m in key order, or NULL (out of memory: the caller goes
 * in map order). A memtable insert starts from where the previous one
 * ended, so keys in order make each skiplist search short; in hash order
 * the memtable inserts of a block were its largest RocksDB cost. */
static chain__map_entry *entries_sorted(const chain__map *m, size_t *n)
{
    *n = m != NULL ? chain__map_count(m) : 0;
    chain__map_entry *v = malloc((*n ? *n : 1) * sizeof *v);
    if (v == NULL) return NULL;
    size_t it = 0, i = 0;
    while (i < *n && chain__map_next(m, &it, &v[i])) i++;
    assert(i == *n);
    qsort(v, *n, sizeof *v, entry_cmp);
    return v;
}

static void batch_add_entry(rocksdb_writebatch_t *wb, chain_store *st, const chain__map_entry *e,
                            int node)
{
    if (node) {
        uint8_t k[CHAIN__KEY_MAX];
        assert(e->klen == CHAIN_HASH_LEN && e->val != NULL);
        size_t kl = chain__key_node(k, (const chain_hash *)e->key);
        rocksdb_writebatch_put_cf(wb, st->cf[CF_TREE], (const char *)k, kl, (const char *)e->val,
                                  e->vlen);
    } else if (e->val == NULL) {
        rocksdb_writebatch_delete_cf(wb, st->cf[CF_STATE], (const char *)e->key, e->klen);
    } else {
        rocksdb_writebatch_put_cf(wb, st->cf[CF_STATE], (const char *)e->key, e->klen,
                                  (const char *)e->val, e->vlen);
    }
}

static void batch_add_map(rocksdb_writebatch_t *wb, chain_store *st, const chain__map *m, int node)
{
    size_t n = 0;
    chain__map_entry *v = entries_sorted(m, &n);
    if (v != NULL) {
        for (size_t i = 0; i < n; i++) batch_add_entry(wb, st, &v[i], node);
        free(v);
        return;
    }
    chain__map_entry e;
    size_t it = 0;
    while (m != NULL && chain__map_next(m, &it, &e)) batch_add_entry(wb, st, &e, node);
}

static void batch_add_state(rocksdb_writebatch_t *wb, chain_store *st, const chain__map *state,
                            const chain__map *nodes)
{
    batch_add_map(wb, st, state, 0);
    batch_add_map(wb, st, nodes, 1);
}

static int write_genesis(chain_store *st)
{
    const chain_genesis *g = st->genesis;
    chain__map *state = chain__map_create(2 * CHAIN_INSTITUTIONS_MAX);
    chain__map *nodes = chain__map_create(8 * CHAIN_INSTITUTIONS_MAX);
    chain_hash root, zero;
    memset(zero.b, 0, sizeof zero.b);
    int rc = state == NULL || nodes == NULL ? CHAIN_ENOMEM : CHAIN_OK;
    if (rc == CHAIN_OK) rc = genesis_state(state, nodes, &root, g);
    if (rc == CHAIN_OK) {
        uint8_t tip[TIP_BYTES];
        tip_encode(tip, 0, &zero, &root, g->time_ms);
        rocksdb_writebatch_t *wb = rocksdb_writebatch_create();
        batch_add_state(wb, st, state, nodes);
        rocksdb_writebatch_put_cf(wb, st->cf[CF_META], META_TIP, strlen(META_TIP), (const char *)tip,
                                  sizeof tip);
        rocksdb_writebatch_put_cf(wb, st->cf[CF_META], META_GENESIS, strlen(META_GENESIS),
                                  (const char *)g->hash.b, CHAIN_HASH_LEN);
        char *err = NULL;
        rocksdb_write(st->db, st->wsync, wb, &err);
        rocksdb_writebatch_destroy(wb);
        rc = rdb_err(err);
    }
    chain__map_destroy(state);
    chain__map_destroy(nodes);
    return rc;
}

/* First open writes the genesis state; later opens must find the same
 * genesis hash, so a data dir can never be reused for another network. */
static int genesis_check(chain_store *st)
{
    uint8_t *v = NULL;
    size_t n = 0;
    int rc = cf_get(st, CF_META, &v, &n, META_GENESIS, strlen(META_GENESIS));
    if (rc == CHAIN_ENOTFOUND) rc = write_genesis(st);
    else if (rc == CHAIN_OK) {
        if (n != CHAIN_HASH_LEN || memcmp(v, st->genesis->hash.b, CHAIN_HASH_LEN) != 0) rc = CHAIN_ESTATE;
        free(v);
    }
    if (rc == CHAIN_OK) rc = tip_load(st);
    return rc;
}

/* ------------------------------------------------------------------ open/close */

/* A cache size in MiB from the environment variable `env`, or `def` when
 * unset; CHAIN_EINVAL unless it is a plain decimal in min..max. */
static int cache_mb(size_t *mb, const char *env, size_t def, size_t min, size_t max)
{
    const char *v = getenv(env);
    *mb = def;
    if (v == NULL) return CHAIN_OK;
    size_t n = 0, len = strlen(v);
    if (len == 0 || len > 7) return CHAIN_EINVAL;
    for (size_t i = 0; i < len; i++) {
        if (v[i] < '0' || v[i] > '9') return CHAIN_EINVAL;
        n = n * 10 + (size_t)(v[i] - '0');
    }
    if (n < min || n > max) return CHAIN_EINVAL;
    *mb = n;
    return CHAIN_OK;
}

static void table_setup(chain_store *st)
{
    st->bbto = rocksdb_block_based_options_create();
    rocksdb_block_based_options_set_block_cache(st->bbto, st->cache);
    /* Bloom filters: a miss (no grant for this pair) costs no data-block read. */
    rocksdb_block_based_options_set_filter_policy(st->bbto, rocksdb_filterpolicy_create_bloom_full(10));
    rocksdb_block_based_options_set_cache_index_and_filter_blocks(st->bbto, 1);
    rocksdb_block_based_options_set_cache_index_and_filter_blocks_with_high_priority(st->bbto, 1);
    rocksdb_block_based_options_set_pin_l0_filter_and_index_blocks_in_cache(st->bbto, 1);
    /* Two-level index and partitioned filters: a miss loads one 4 KiB
     * partition, not a file's whole index or filter; the small top levels
     * stay pinned. */
    rocksdb_block_based_options_set_index_type(st->bbto, rocksdb_block_based_table_index_type_two_level_index_search);
    rocksdb_block_based_options_set_partition_filters(st->bbto, 1);
    rocksdb_block_based_options_set_pin_top_level_index_and_filter(st->bbto, 1);
    rocksdb_block_based_options_set_metadata_block_size(st->bbto, 4096);
    /* A hash index inside each data block: point reads skip the binary search. */
    rocksdb_block_based_options_set_data_block_index_type(st->bbto,
                                                          rocksdb_block_based_table_data_block_index_type_binary_search_and_hash);
    rocksdb_block_based_options_set_data_block_hash_ratio(st->bbto, 0.75);
    /* 1 KiB data blocks: every read here is a point read by key (a grant
     * list is ~100-200 bytes, a tree page ~100-500), so a 4 KiB block put
     * three or more unrelated entries in the cache with each one wanted.
     * The same 10M-grant store rewritten both ways (full compaction),
     * alternated: session checks 62.5-65.3k/s against 58.0-62.3k, proof=1
     * 28.9-30.2k against 25.0-29.9k, node peak RSS 740 against 971 MB. */
    rocksdb_block_based_options_set_block_size(st->bbto, 1024);
}

static int options_setup(chain_store *st)
{
    size_t mb, row_mb;
    int rc = cache_mb(&mb, BLOCK_CACHE_ENV, BLOCK_CACHE_MB_DEFAULT, BLOCK_CACHE_MB_MIN, CACHE_MB_MAX);
    if (rc == CHAIN_OK) rc = cache_mb(&row_mb, ROW_CACHE_ENV, ROW_CACHE_MB_DEFAULT, 0, CACHE_MB_MAX);
    if (rc != CHAIN_OK) return rc;
    st->cache = rocksdb_cache_create_lru(mb * 1024 * 1024);
    table_setup(st);
    st->opts = rocksdb_options_create();
    if (row_mb > 0) {
        st->row_cache = rocksdb_cache_create_lru(row_mb * 1024 * 1024);
        rocksdb_options_set_row_cache(st->opts, st->row_cache);
    }
    rocksdb_options_set_create_if_missing(st->opts, 1);
    rocksdb_options_set_create_missing_column_families(st->opts, 1);
    rocksdb_options_set_max_open_files(st->opts, 512);
    rocksdb_options_set_block_based_table_factory(st->opts, st->bbto);
    /* A whole-key bloom filter per memtable: on a large state most reads
     * (tree pages below the page cache, grants and nonces not yet there)
     * are not in the memtable, and without it each searched the skiplist
     * first (11% of populate's profile at 3.5M grants). */
    rocksdb_options_set_memtable_prefix_bloom_size_ratio(st->opts, 0.05);
    rocksdb_options_set_memtable_whole_key_filtering(st->opts, 1);
    /* Every L0 file is one more filter probe for each point read: with the
     * default trigger (4) a store could sit at three L0 files, and session
     * checks at 10M grants measured 46k-49k/s at 20-24 us of node CPU
     * each against 58k/s at 17 us once they were compacted. The extra
     * compaction did not show in the network's CPU per tx. */
    rocksdb_options_set_level0_file_num_compaction_trigger(st->opts, 2);
    /* Levels sized from the last one up, so a store has as few levels as
     * its size needs: every level is one more filter probe per read. With
     * this and the tree pages apart, the state family at 10M grants holds
     * one L0 file and two levels (two and three before), and session
     * checks measured 56-57k/s at 17.5-17.9 us of node CPU against
     * 46-55k/s at 18-22 us. Four saturation runs alternated with the code
     * before: 88-103 against 90-99 us per tx, no difference beyond this
     * VM's drift. */
    rocksdb_options_set_level_compaction_dynamic_level_bytes(st->opts, 1);
    /* Tree pages are read only by hashes found in their parents, so a read
     * always finds its page: the last level, where most pages are, needs
     * no filter (less memory, one probe fewer per read). */
    st->tree_opts = rocksdb_options_create_copy(st->opts);
    rocksdb_options_set_optimize_filters_for_hits(st->tree_opts, 1);
    st->ropts = rocksdb_readoptions_create();
    st->wsync = rocksdb_writeoptions_create();
    rocksdb_writeoptions_set_sync(st->wsync, 1);
    st->wlazy = rocksdb_writeoptions_create();
    return CHAIN_OK;
}

static int tree_recover(chain_store *st);   /* see "Tree pages" */

int chain_store_open(chain_store **out, const char *dir, const chain_genesis *g)
{
    if (out == NULL || dir == NULL || g == NULL) return CHAIN_EINVAL;
    if (g->n_validators == 0 || g->n_validators > g->n_institutions ||
        g->n_institutions > CHAIN_INSTITUTIONS_MAX)
        return CHAIN_EINVAL;
    chain_store *st = calloc(1, sizeof *st);
    if (st == NULL) return CHAIN_ENOMEM;
    st->genesis = malloc(sizeof *st->genesis);
    if (st->genesis == NULL) {
        free(st);
        return CHAIN_ENOMEM;
    }
    *st->genesis = *g;
    st->pages = chain__smt_cache_create(PAGE_CACHE_SLOTS_LOG2);
    st->insts = calloc(INST_CACHE_SLOTS, sizeof *st->insts);
    st->pairs = calloc(PAIR_CACHE_SLOTS, sizeof *st->pairs);   /* untouched slots cost no RSS */
    if (st->pages == NULL || st->insts == NULL || st->pairs == NULL) {
        chain__smt_cache_destroy(st->pages);
        free(st->insts);
        free(st->pairs);
        free(st->genesis);
        free(st);
        return CHAIN_ENOMEM;
    }
    pthread_mutex_init(&st->val_lock, NULL);
    pthread_rwlock_init(&st->pending_lock, NULL);
    st->flush_bytes = TREE_FLUSH_BYTES;
    st->flush_commits = TREE_DIRTY_MAX;
    st->pending = chain__map_create(PENDING_MAX);
    int rc = st->pending == NULL ? CHAIN_ENOMEM : options_setup(st);
    if (rc != CHAIN_OK) {
        chain_store_close(st);
        return rc;
    }
    const rocksdb_options_t *cf_opts[CF_COUNT];
    for (int i = 0; i < CF_COUNT; i++) cf_opts[i] = i == CF_TREE ? st->tree_opts : st->opts;
    char *err = NULL;
    st->db = rocksdb_open_column_families(st->opts, dir, CF_COUNT, cf_names, cf_opts, st->cf, &err);
    rc = rdb_err(err);
    if (rc == CHAIN_OK) rc = genesis_check(st);
    if (rc == CHAIN_OK) rc = tree_recover(st);
    if (rc != CHAIN_OK) {
        chain_store_close(st);
        return rc;
    }
    *out = st;
    return CHAIN_OK;
}

void chain_store_close(chain_store *st)
{
    if (st == NULL) return;
    if (st->db != NULL) {
        for (int i = 0; i < CF_COUNT; i++) {
            if (st->cf[i] != NULL) rocksdb_column_family_handle_destroy(st->cf[i]);
        }
        rocksdb_close(st->db);
    }
    if (st->ropts != NULL) rocksdb_readoptions_destroy(st->ropts);
    if (st->wsync != NULL) rocksdb_writeoptions_destroy(st->wsync);
    if (st->wlazy != NULL) rocksdb_writeoptions_destroy(st->wlazy);
    if (st->opts != NULL) rocksdb_options_destroy(st->opts);
    if (st->tree_opts != NULL) rocksdb_options_destroy(st->tree_opts);
    if (st->bbto != NULL) rocksdb_block_based_options_destroy(st->bbto);
    if (st->cache != NULL) rocksdb_cache_destroy(st->cache);
    if (st->row_cache != NULL) rocksdb_cache_destroy(st->row_cache);
    chain__smt_cache_destroy(st->pages);
    pthread_mutex_destroy(&st->val_lock);
    pthread_rwlock_destroy(&st->pending_lock);
    chain__map_destroy(st->pending);
    free(st->insts);
    free(st->pairs);
    free(st->genesis);
    free(st);
}

uint64_t chain_store_height(const chain_store *st)
{
    assert(st != NULL);
    return st->height;
}

void chain_store_tip_hash(const chain_store *st, chain_hash *out)
{
    assert(st != NULL && out != NULL);
    *out = st->tip_hash;
}

const chain_genesis *chain_store_genesis(const chain_store *st)
{
    assert(st != NULL);
    return st->genesis;
}

void chain_store_state_root(const chain_store *st, chain_hash *out)
{
    assert(st != NULL && out != NULL);
    *out = st->state_root;
}

void chain__store_tip(const chain_store *st, chain__tip *out)
{
    out->height = st->height;
    out->time_ms = st->tip_time_ms;
    out->hash = st->tip_hash;
    out->state_root = st->state_root;
}

/* ------------------------------------------------------------------ commit */

/* An unsynced commit (sync = 0) is still one atomic WriteBatch appended to
 * the write-ahead log, and RocksDB recovers the log up to its first missing
 * or torn record. So a crash can only lose a suffix of the unsynced blocks,
 * each whole: the store reopens at an earlier tip whose state is exactly
 * that of the blocks below it, never a state that disagrees with them. Any
 * later synced write (the next durable block, a consensus vote) or
 * chain_store_sync makes every earlier write durable too, since the log is
 * synced as a whole. */
typedef struct {
    chain_hash txid;
    uint64_t height;
    uint32_t pos;
} txindex_entry;

static int txindex_cmp(const void *x, const void *y)
{
    const txindex_entry *a = x, *b = y;
    return memcmp(a->txid.b, b->txid.b, CHAIN_HASH_LEN);
}

static void txindex_put(rocksdb_writebatch_t *wb, chain_store *st, const txindex_entry *e)
{
    uint8_t loc[12];
    chain__put_u64be(loc, e->height);
    chain__put_u32be(loc + 8, e->pos);
    rocksdb_writebatch_put_cf(wb, st->cf[CF_TXINDEX], (const char *)e->txid.b, CHAIN_HASH_LEN,
                              (const char *)loc, sizeof loc);
}

/* txid -> (height, position) for every tx of the blocks, in txid order
 * when memory allows (see entries_sorted). */
static void batch_add_txindex(rocksdb_writebatch_t *wb, chain_store *st, const chain_block *const *blocks,
                              size_t n_blocks)
{
    size_t n = 0, k = 0;
    for (size_t j = 0; j < n_blocks; j++) n += blocks[j]->n_txs;
    txindex_entry *v = n > 1 ? malloc(n * sizeof *v) : NULL;
    for (size_t j = 0; j < n_blocks; j++) {
        const chain_block *b = blocks[j];
        for (uint32_t i = 0; i < b->n_txs; i++) {
            txindex_entry one, *e = v != NULL ? &v[k++] : &one;
            chain_tx_hash(&e->txid, b->txs[i], b->tx_lens[i]);
            e->height = b->hdr.height;
            e->pos = i;
            if (v == NULL) txindex_put(wb, st, e);
        }
    }
    if (v == NULL) return;
    qsort(v, n, sizeof *v, txindex_cmp);
    for (size_t i = 0; i < n; i++) txindex_put(wb, st, &v[i]);
    free(v);
}

static int batch_add_blocks(rocksdb_writebatch_t *wb, chain_store *st, const chain_block *const *blocks,
                            size_t n)
{
    for (size_t j = 0; j < n; j++) {
        const chain_block *b = blocks[j];
        uint8_t *enc = NULL, hkey[8];
        size_t enc_len = 0;
        int rc = chain_block_encode(&enc, &enc_len, b);
        if (rc != CHAIN_OK) return rc;
        chain__put_u64be(hkey, b->hdr.height);
        rocksdb_writebatch_put_cf(wb, st->cf[CF_BLOCKS], (const char *)hkey, sizeof hkey,
                                  (const char *)enc, enc_len);
        free(enc);
    }
    return CHAIN_OK;
}

/* ------------------------------------------------------------------ tree pages */

/* Tree pages. A block's update rewrites the pages on the paths from its
 * changed leaves to the root, and the upper pages again in every block:
 * written block by block, pages were most of a block's RocksDB entries,
 * and inserting them into the memtable was the largest cost of a small
 * block. So a commit hands its new pages to st->pending instead, and they
 * reach RocksDB only at a flush (tree_flush), when the held pages reach
 * flush_bytes or the commits since the last flush reach flush_commits:
 * then only the pages reachable from the new root are written, and the
 * others (superseded within the window) never are.
 *
 * Crash safety. A commit that does not flush writes, in its batch, the
 * keys its blocks changed ("c:dirty:<height>") and "c:tree", the root
 * whose pages are all in RocksDB. A flush writes its pages, deletes the
 * dirty entries and moves "c:tree" in the batch of the commit that
 * triggers it. On open (tree_recover), the changed keys' current values
 * are applied to the tree at "c:tree"; the tree is a function of its
 * leaves, so that yields the tip's root, and anything else is CHAIN_EIO.
 * A store without "c:tree" has every page written. */

static void dirty_key(uint8_t out[DIRTY_KEY_LEN], uint64_t height)
{
    memcpy(out, META_DIRTY, sizeof META_DIRTY - 1);
    chain__put_u64be(out + sizeof META_DIRTY - 1, height);
}

/* The changed keys of a commit: u8 length | key, each. */
static int dirty_put(rocksdb_writebatch_t *wb, chain_store *st, uint64_t height,
                     const chain__map *state)
{
    size_t n = 0, it = 0;
    chain__map_entry e;
    while (chain__map_next(state, &it, &e)) n += 1 + e.klen;
    uint8_t *v = malloc(n ? n : 1), k[DIRTY_KEY_LEN];
    if (v == NULL) return CHAIN_ENOMEM;
    size_t off = 0;
    it = 0;
    while (chain__map_next(state, &it, &e)) {
        assert(e.klen <= CHAIN__KEY_MAX);
        v[off++] = (uint8_t)e.klen;
        memcpy(v + off, e.key, e.klen);
        off += e.klen;
    }
    dirty_key(k, height);
    rocksdb_writebatch_put_cf(wb, st->cf[CF_META], (const char *)k, sizeof k, (const char *)v, off);
    free(v);
    return CHAIN_OK;
}

typedef struct {
    chain__map_entry *v;
    size_t n, cap;
} page_list;

/* Collects the held pages reachable from h; a page not held is in
 * RocksDB already, and so is everything under it. */
static int reachable(chain_store *st, page_list *out, const chain_hash *h, unsigned depth)
{
    chain__map_entry e;
    if (!chain__map_get(st->pending, &e, h->b, CHAIN_HASH_LEN)) return CHAIN_OK;
    if (depth > CHAIN_SMT_DEPTH / 4) return CHAIN_EIO;   /* four levels a page */
    if (out->n == out->cap) {
        size_t cap = out->cap ? 2 * out->cap : 1024;
        chain__map_entry *v = realloc(out->v, cap * sizeof *v);
        if (v == NULL) return CHAIN_ENOMEM;
        out->v = v;
        out->cap = cap;
    }
    out->v[out->n++] = e;
    chain_hash kids[CHAIN__SMT_PAGE_SLOTS];
    unsigned nk = 0;
    int rc = chain__smt_page_children(e.val, e.vlen, kids, &nk);
    for (unsigned i = 0; i < nk && rc == CHAIN_OK; i++) rc = reachable(st, out, &kids[i], depth + 1);
    return rc;
}

/* Puts the held pages under root into the batch (in key order, see
 * entries_sorted), deletes the dirty entries and moves "c:tree". */
static int tree_flush(rocksdb_writebatch_t *wb, chain_store *st, const chain_hash *root)
{
    page_list l = {NULL, 0, 0};
    int rc = reachable(st, &l, root, 0);
    if (rc == CHAIN_OK) {
        if (l.n > 1) qsort(l.v, l.n, sizeof *l.v, entry_cmp);
        for (size_t i = 0; i < l.n; i++) batch_add_entry(wb, st, &l.v[i], 1);
        for (unsigned i = 0; i < st->n_dirty; i++) {
            uint8_t k[DIRTY_KEY_LEN];
            dirty_key(k, st->dirty[i]);
            rocksdb_writebatch_delete_cf(wb, st->cf[CF_META], (const char *)k, sizeof k);
        }
        rocksdb_writebatch_put_cf(wb, st->cf[CF_META], META_TREE, strlen(META_TREE),
                                  (const char *)root->b, CHAIN_HASH_LEN);
    }
    free(l.v);
    return rc;
}

/* Hands a commit's new pages to st->pending (moved out of nodes). Pages
 * of a block that then fails to be written stay until the next flush,
 * which skips them: they are unreachable. */
static int pending_take(chain_store *st, chain__map *nodes)
{
    size_t bytes = 0, it = 0;
    chain__map_entry e;
    while (nodes != NULL && chain__map_next(nodes, &it, &e)) bytes += e.vlen;
    if (nodes == NULL || chain__map_count(nodes) == 0) return CHAIN_OK;
    pthread_rwlock_wrlock(&st->pending_lock);
    int rc = chain__map_merge(st->pending, nodes);
    pthread_rwlock_unlock(&st->pending_lock);
    st->pending_bytes += bytes;   /* a failed merge may have moved some */
    return rc;
}

static void pending_clear(chain_store *st)
{
    pthread_rwlock_wrlock(&st->pending_lock);
    chain__map_clear(st->pending);
    pthread_rwlock_unlock(&st->pending_lock);
    st->pending_bytes = 0;
    st->n_dirty = 0;
}

/* Adds the tree's part of a commit of blocks up to (height, root). */
static int batch_add_tree(rocksdb_writebatch_t *wb, chain_store *st, uint64_t height,
                          const chain_hash *root, const chain__map *state, int *flushed)
{
    *flushed = st->pending_bytes >= st->flush_bytes || st->n_dirty + 1 >= st->flush_commits;
    if (*flushed) return tree_flush(wb, st, root);
    rocksdb_writebatch_put_cf(wb, st->cf[CF_META], META_TREE, strlen(META_TREE),
                              (const char *)st->tree_root.b, CHAIN_HASH_LEN);
    return dirty_put(wb, st, height, state);
}

/* Applies the keys of the dirty entries, at their current values, to the
 * tree at "c:tree"; the root must come out as the tip's. */
static int tree_recover(chain_store *st)
{
    uint8_t *v = NULL;
    size_t n = 0;
    int rc = cf_get(st, CF_META, &v, &n, META_TREE, strlen(META_TREE));
    if (rc == CHAIN_ENOTFOUND) {
        st->tree_root = st->state_root;
        return CHAIN_OK;
    }
    if (rc != CHAIN_OK) return rc;
    if (n != CHAIN_HASH_LEN) rc = CHAIN_EIO;
    else memcpy(st->tree_root.b, v, CHAIN_HASH_LEN);
    free(v);
    chain__map *changes = chain__map_create(PENDING_MAX), *nodes = chain__map_create(PENDING_MAX);
    if (rc == CHAIN_OK && (changes == NULL || nodes == NULL)) rc = CHAIN_ENOMEM;
    rocksdb_readoptions_t *ro = rocksdb_readoptions_create();
    rocksdb_readoptions_set_iterate_upper_bound(ro, META_DIRTY_END, strlen(META_DIRTY_END));
    rocksdb_iterator_t *it = rocksdb_create_iterator_cf(st->db, ro, st->cf[CF_META]);
    rocksdb_iter_seek(it, META_DIRTY, strlen(META_DIRTY));
    for (; rc == CHAIN_OK && rocksdb_iter_valid(it); rocksdb_iter_next(it)) {
        size_t kl = 0, vl = 0;
        const uint8_t *k = (const uint8_t *)rocksdb_iter_key(it, &kl);
        const uint8_t *d = (const uint8_t *)rocksdb_iter_value(it, &vl);
        if (kl != DIRTY_KEY_LEN || st->n_dirty == TREE_DIRTY_MAX) { rc = CHAIN_EIO; break; }
        st->dirty[st->n_dirty++] = get_u64be(k + sizeof META_DIRTY - 1);
        for (size_t off = 0; rc == CHAIN_OK && off < vl;) {
            size_t l = d[off++];
            if (l == 0 || l > CHAIN__KEY_MAX || vl - off < l) { rc = CHAIN_EIO; break; }
            uint8_t *val = NULL;
            size_t len = 0;
            rc = chain__store_get(st, &val, &len, d + off, l);
            if (rc == CHAIN_OK || rc == CHAIN_ENOTFOUND)
                rc = chain__map_put(changes, d + off, l, val, len);
            free(val);
            off += l;
        }
    }
    char *err = NULL;
    if (rc == CHAIN_OK) rocksdb_iter_get_error(it, &err);
    if (err != NULL) rc = rdb_err(err);
    rocksdb_iter_destroy(it);
    rocksdb_readoptions_destroy(ro);
    chain_hash root;
    if (rc == CHAIN_OK) rc = chain__state_update(st, changes, &st->tree_root, nodes, &root);
    if (rc == CHAIN_OK && memcmp(root.b, st->state_root.b, CHAIN_HASH_LEN) != 0) rc = CHAIN_EIO;
    if (rc == CHAIN_OK) rc = pending_take(st, nodes);
    chain__map_destroy(changes);
    chain__map_destroy(nodes);
    return rc;
}

int chain__store_commit(chain_store *st, const chain_block *const *blocks, size_t n,
                        const chain_hash *last_hash, const chain__map *state, chain__map *nodes,
                        int sync)
{
    assert(n > 0 && blocks[0]->hdr.height == st->height + 1);
    assert(memcmp(blocks[0]->hdr.prev_hash.b, st->tip_hash.b, CHAIN_HASH_LEN) == 0);
    const chain_block *b = blocks[n - 1];
    assert(b->hdr.height == st->height + n);
    int rc = pending_take(st, nodes);
    if (rc != CHAIN_OK) return rc;
    uint8_t tip[TIP_BYTES];
    int flushed = 0;
    rocksdb_writebatch_t *wb = rocksdb_writebatch_create();
    rc = batch_add_blocks(wb, st, blocks, n);
    if (rc == CHAIN_OK) {
        batch_add_txindex(wb, st, blocks, n);
        batch_add_map(wb, st, state, 0);
        rc = batch_add_tree(wb, st, b->hdr.height, &b->hdr.state_root, state, &flushed);
    }
    if (rc != CHAIN_OK) {
        rocksdb_writebatch_destroy(wb);
        return rc;
    }
    tip_encode(tip, b->hdr.height, last_hash, &b->hdr.state_root, b->hdr.time_ms);
    rocksdb_writebatch_put_cf(wb, st->cf[CF_META], META_TIP, strlen(META_TIP), (const char *)tip,
                              sizeof tip);
    char *err = NULL;
    rocksdb_write(st->db, sync ? st->wsync : st->wlazy, wb, &err);
    rocksdb_writebatch_destroy(wb);
    rc = rdb_err(err);
    if (rc != CHAIN_OK) return rc;
    val_cache_commit(st, state);
    if (flushed) {
        pending_clear(st);
        st->tree_root = b->hdr.state_root;
    } else {
        st->dirty[st->n_dirty++] = b->hdr.height;
    }
    /* Only a written block moves the cached tip. */
    st->height = b->hdr.height;
    st->tip_hash = *last_hash;
    st->state_root = b->hdr.state_root;
    st->tip_time_ms = b->hdr.time_ms;
    return CHAIN_OK;
}

void chain__store_set_tree_flush(chain_store *st, size_t bytes, unsigned commits)
{
    assert(commits >= 1 && commits <= TREE_DIRTY_MAX);
    st->flush_bytes = bytes;
    st->flush_commits = commits;
}

size_t chain__store_pending_pages(chain_store *st)
{
    return chain__map_count(st->pending);
}

int chain_store_sync(chain_store *st)
{
    if (st == NULL) return CHAIN_EINVAL;
    char *err = NULL;
    rocksdb_flush_wal(st->db, 1, &err);
    return rdb_err(err);
}

/* A RocksDB integer property (0 when RocksDB does not know it). */
static uint64_t prop(chain_store *st, int cf, const char *name)
{
    uint64_t v = 0;
    int rc = cf < 0 ? rocksdb_property_int(st->db, name, &v) : rocksdb_property_int_cf(st->db, st->cf[cf], name, &v);
    return rc == 0 ? v : 0;
}

int chain_store_stats_get(chain_store *st, chain_store_stats *out)
{
    if (st == NULL || out == NULL) return CHAIN_EINVAL;
    memset(out, 0, sizeof *out);
    for (int i = 0; i < CF_COUNT; i++) {
        out->compaction_pending_bytes += prop(st, i, "rocksdb.estimate-pending-compaction-bytes");
        out->sst_bytes += prop(st, i, "rocksdb.live-sst-files-size");
    }
    out->compactions_running = prop(st, -1, "rocksdb.num-running-compactions");
    out->flushes_running = prop(st, -1, "rocksdb.num-running-flushes");
    return CHAIN_OK;
}

int chain_store_compact(chain_store *st)
{
    if (st == NULL) return CHAIN_EINVAL;
    rocksdb_compactoptions_t *co = rocksdb_compactoptions_create();
    if (co == NULL) return CHAIN_ENOMEM;
    /* RocksDB skips files already in the last level unless forced: those
     * are most of a store, and a rewrite is what puts them in one run. */
    rocksdb_compactoptions_set_bottommost_level_compaction(co, 2 /* kForce */);
    /* RocksDB's C API reports no error from a manual compaction; one that
     * fails leaves the files as they were, which reads still serve. */
    for (int i = 0; i < CF_COUNT; i++) rocksdb_compact_range_cf_opt(st->db, st->cf[i], co, NULL, 0, NULL, 0);
    rocksdb_compactoptions_destroy(co);
    return CHAIN_OK;
}

/* ------------------------------------------------------------------ reads */

int chain_store_get_block_raw(chain_store *st, uint64_t height, uint8_t **out, size_t *len_out)
{
    if (st == NULL || out == NULL || len_out == NULL) return CHAIN_EINVAL;
    if (height == 0 || height > st->height) return CHAIN_ENOTFOUND;
    uint8_t k[8];
    chain__put_u64be(k, height);
    int rc = cf_get(st, CF_BLOCKS, out, len_out, k, sizeof k);
    return rc == CHAIN_ENOTFOUND ? CHAIN_EIO : rc;   /* below the tip: must exist */
}

int chain_store_get_block(chain_store *st, uint64_t height, chain_block *out)
{
    uint8_t *raw = NULL;
    size_t n = 0;
    if (out == NULL) return CHAIN_EINVAL;
    int rc = chain_store_get_block_raw(st, height, &raw, &n);
    if (rc != CHAIN_OK) return rc;
    chain_block b;
    chain_block_init(&b);
    rc = chain_block_decode(&b, raw, n);
    free(raw);
    /* What we wrote under `height` must decode to block `height`. */
    if (rc == CHAIN_OK && b.hdr.height != height) {
        chain_block_free(&b);
        rc = CHAIN_EIO;
    }
    if (rc != CHAIN_OK) return CHAIN_EIO;
    *out = b;
    return CHAIN_OK;
}

int chain_store_get_tx(chain_store *st, const chain_hash *txid, uint64_t *height_out,
                       uint32_t *index_out)
{
    uint8_t *v = NULL;
    size_t n = 0;
    if (st == NULL || txid == NULL || height_out == NULL || index_out == NULL) return CHAIN_EINVAL;
    int rc = cf_get(st, CF_TXINDEX, &v, &n, txid->b, CHAIN_HASH_LEN);
    if (rc != CHAIN_OK) return rc;
    if (n != 12) rc = CHAIN_EIO;
    if (rc == CHAIN_OK) {
        *height_out = get_u64be(v);
        *index_out = get_u32be(v + 8);
    }
    free(v);
    return rc;
}

int chain_store_get_grant(chain_store *st, const chain_hash *id, chain_grant_record *out)
{
    uint8_t k[CHAIN__KEY_MAX], *v = NULL;
    size_t kl, n = 0;
    if (st == NULL || id == NULL || out == NULL) return CHAIN_EINVAL;
    kl = chain__key_grant(k, id);
    int rc = chain__store_get(st, &v, &n, k, kl);
    if (rc != CHAIN_OK) return rc;
    if (n != 2 * CHAIN_KEY_LEN) {
        free(v);
        return CHAIN_EIO;
    }
    chain_pubkey patient, grantee;
    memcpy(patient.b, v, CHAIN_KEY_LEN);
    memcpy(grantee.b, v + CHAIN_KEY_LEN, CHAIN_KEY_LEN);
    free(v);
    kl = chain__key_pair(k, &patient, &grantee);
    rc = chain__store_get(st, &v, &n, k, kl);
    if (rc != CHAIN_OK) return rc == CHAIN_ENOTFOUND ? CHAIN_EIO : rc;   /* index without list */
    chain_grant_record *recs = NULL;
    uint32_t nr = 0;
    rc = chain__grants_decode(&recs, &nr, v, n);
    free(v);
    if (rc != CHAIN_OK) return rc;
    rc = CHAIN_EIO;
    for (uint32_t i = 0; i < nr; i++) {
        if (memcmp(recs[i].id.b, id->b, CHAIN_HASH_LEN) == 0) {
            *out = recs[i];
            rc = CHAIN_OK;
            break;
        }
    }
    free(recs);
    return rc;
}

uint64_t chain_store_nonce(chain_store *st, const chain_pubkey *signer)
{
    uint8_t k[CHAIN__KEY_MAX], v[8];
    size_t n = 0;
    assert(st != NULL && signer != NULL);
    size_t kl = chain__key_nonce(k, signer);
    if (chain__store_read(st, v, sizeof v, &n, k, kl) != CHAIN_OK || n != 8) return 0;
    return get_u64be(v);
}

int chain_store_guardian(chain_store *st, const chain_pubkey *patient, chain_pubkey *out)
{
    uint8_t k[CHAIN__KEY_MAX];
    size_t n = 0;
    chain_pubkey g;
    if (st == NULL || patient == NULL || out == NULL) return CHAIN_EINVAL;
    size_t kl = chain__key_guardian(k, patient);
    int rc = chain__store_read(st, g.b, sizeof g.b, &n, k, kl);
    if (rc == CHAIN_EBOUNDS || (rc == CHAIN_OK && n != CHAIN_KEY_LEN)) return CHAIN_EIO;
    if (rc == CHAIN_OK) *out = g;
    return rc;
}

int chain_store_institution(chain_store *st, const chain_pubkey *key, chain_institution *out)
{
    uint8_t k[CHAIN__KEY_MAX], *v = NULL;
    size_t n = 0;
    if (st == NULL || key == NULL || out == NULL) return CHAIN_EINVAL;
    size_t kl = chain__key_inst(k, key);
    int rc = chain__store_get(st, &v, &n, k, kl);
    if (rc != CHAIN_OK) return rc;
    rc = chain__inst_decode(out, v, n);
    free(v);
    return rc;
}

/* Calls each(v, n, ctx) for every state value under key prefix pfx ||
 * patient (whose keys must be key_len bytes long) in key order, until it
 * returns non-zero; returns that value, or an error. */
typedef int (*scan_fn)(const char *v, size_t n, void *ctx);

static int scan_patient(chain_store *st, uint8_t pfx, const chain_pubkey *patient, size_t key_len,
                        scan_fn each, void *ctx)
{
    uint8_t lo[1 + CHAIN_KEY_LEN], hi[1 + CHAIN_KEY_LEN];
    lo[0] = pfx;
    memcpy(lo + 1, patient->b, CHAIN_KEY_LEN);
    /* Upper bound: the prefix with its last byte incremented (carrying). */
    memcpy(hi, lo, sizeof hi);
    int i = (int)sizeof hi - 1;
    while (i >= 0 && hi[i] == 0xff) hi[i--] = 0;
    assert(i >= 0);   /* the prefix letter never overflows */
    hi[i]++;
    rocksdb_readoptions_t *ro = rocksdb_readoptions_create();
    rocksdb_readoptions_set_iterate_upper_bound(ro, (const char *)hi, sizeof hi);
    rocksdb_iterator_t *it = rocksdb_create_iterator_cf(st->db, ro, st->cf[CF_STATE]);
    int rc = 0;
    for (rocksdb_iter_seek(it, (const char *)lo, sizeof lo); rc == 0 && rocksdb_iter_valid(it);
         rocksdb_iter_next(it)) {
        size_t kl = 0, vl = 0;
        const char *key = rocksdb_iter_key(it, &kl);
        const char *v = rocksdb_iter_value(it, &vl);
        if (kl != key_len || memcmp(key, lo, sizeof lo) != 0) {
            rc = CHAIN_EIO;
            break;
        }
        rc = each(v, vl, ctx);
    }
    char *err = NULL;
    if (rc == 0) rocksdb_iter_get_error(it, &err);
    if (err != NULL) rc = rdb_err(err);
    rocksdb_iter_destroy(it);
    rocksdb_readoptions_destroy(ro);
    return rc;
}

typedef struct {
    chain_grant_fn fn;
    void *arg;
} grants_ctx;

/* One pair list: calls fn per record; returns fn's non-zero value or an error. */
static int pair_each(const char *v, size_t n, void *ctx)
{
    grants_ctx *g = ctx;
    chain_grant_record *recs = NULL;
    uint32_t nr = 0;
    int rc = chain__grants_decode(&recs, &nr, (const uint8_t *)v, n);
    for (uint32_t i = 0; rc == CHAIN_OK && i < nr; i++) rc = g->fn(g->arg, &recs[i]);
    free(recs);
    return rc;
}

int chain_store_patient_grants(chain_store *st, const chain_pubkey *patient, chain_grant_fn fn,
                               void *arg)
{
    if (st == NULL || patient == NULL || fn == NULL) return CHAIN_EINVAL;
    grants_ctx g = {fn, arg};
    return scan_patient(st, CHAIN__PFX_PAIR, patient, 1 + 2 * CHAIN_KEY_LEN, pair_each, &g);
}

typedef struct {
    chain_access_fn fn;
    void *arg;
} access_ctx;

static int access_each(const char *v, size_t n, void *ctx)
{
    access_ctx *a = ctx;
    chain_access_summary sum;
    int rc = chain__access_decode(&sum, (const uint8_t *)v, n);
    return rc != CHAIN_OK ? rc : a->fn(a->arg, &sum);
}

int chain_store_patient_access(chain_store *st, const chain_pubkey *patient, chain_access_fn fn,
                               void *arg)
{
    if (st == NULL || patient == NULL || fn == NULL) return CHAIN_EINVAL;
    access_ctx a = {fn, arg};
    return scan_patient(st, CHAIN__PFX_ACCESS, patient, 1 + CHAIN_KEY_LEN + 2 * CHAIN_HASH_LEN,
                        access_each, &a);
}

/* ------------------------------------------------------------------ meta */

static int meta_key(char *out, const char *key)
{
    size_t n = strnlen(key, META_KEY_LEN_MAX + 1);
    if (n == 0 || n > META_KEY_LEN_MAX) return -1;
    memcpy(out, META_USER_PREFIX, 2);
    memcpy(out + 2, key, n);
    return (int)(n + 2);
}

int chain_store_put_meta(chain_store *st, const char *key, const uint8_t *val, size_t len)
{
    char k[2 + META_KEY_LEN_MAX];
    if (st == NULL || key == NULL || (val == NULL && len != 0)) return CHAIN_EINVAL;
    int kl = meta_key(k, key);
    if (kl < 0 || len > META_VAL_LEN_MAX) return CHAIN_EBOUNDS;
    char *err = NULL;
    rocksdb_put_cf(st->db, st->wsync, st->cf[CF_META], k, (size_t)kl, len ? (const char *)val : "",
                   len, &err);
    return rdb_err(err);
}

int chain_store_get_meta(chain_store *st, const char *key, uint8_t **out, size_t *len_out)
{
    char k[2 + META_KEY_LEN_MAX];
    if (st == NULL || key == NULL || out == NULL || len_out == NULL) return CHAIN_EINVAL;
    int kl = meta_key(k, key);
    if (kl < 0) return CHAIN_EBOUNDS;
    return cf_get(st, CF_META, out, len_out, k, (size_t)kl);
}
