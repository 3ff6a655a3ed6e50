/* smt.c — the compact sparse Merkle tree behind the state root.
 *
 * Shape. Keys are 256-bit; bit d of a key (most significant bit of byte 0
 * first) chooses the left (0) or right (1) child at depth d. The tree is a
 * function of its set of (key, value) leaves only:
 *   - an empty subtree hashes to 32 zero bytes and is never stored;
 *   - a subtree holding exactly one leaf IS that leaf, wherever it sits, so
 *     a leaf's hash does not depend on its depth;
 *   - a subtree holding two or more leaves is an inner node, even when one
 *     of its children is empty (keys sharing a long prefix make a chain).
 * Hashes are domain-separated: leaf = SHA256(0x00 || key || value),
 * inner = SHA256(0x01 || left || right). A preimage of 32 zero bytes is not
 * known, so "empty" cannot be forged by a real node.
 *
 * Storage in pages. The hashes are binary, but storing every binary node
 * made each change write ~log2(n) RocksDB entries, and memtable inserts of
 * those entries were the largest cost of a block. So the tree is stored in
 * pages of four binary levels: the page of an inner node at depth 4k holds
 * its 16 descendants at depth 4k+4 ("slots"), each empty, a leaf (key and
 * value inline) or an inner node (by hash; its own page). The 15 binary
 * nodes between are not stored: they are recomputed from the slots with
 * the same compact rule (empty + leaf collapses to the leaf), which is why
 * a leaf can sit in the slot its key's four bits name even when it floats
 * higher. A page is stored under the hash of the node it describes, so each
 * change writes about log16(n) entries, and every read is checked by
 * recomputing that hash. The root is always read as a page, so a tree of a
 * single leaf stores a one-slot page under the leaf's hash.
 *
 * Page codec: present u16 | leaves u16 (a subset of present; bit s is slot
 * s) | per present slot in order: a leaf's key 32 and value 32, or an
 * inner node's hash 32. Exact length; a leaf must sit in the slot its key
 * names; a slot at depth 256 cannot be inner.
 *
 * Update. A batch is sorted by key and applied by one recursion over the
 * pages: at each page the sorted run of changes splits by the key's four
 * bits, each slot with changes is updated one page down, and only the
 * binary nodes above changed slots are rehashed. Decoded pages (with their
 * binary nodes) are kept in a cache by hash, so hot upper pages are neither
 * read nor rehashed; a read walks a cached page where it lies. The
 * recursion only reads pages that existed under the input root (new
 * pages are returned up, never re-read), so its writes may sit in an
 * unread batch.
 *
 * Proof codec (all integers big-endian):
 *   flags u8 (bit 0 = has_other, other bits zero) | n_siblings u16 (<= 256)
 *   | bitmap of ceil(n/8) bytes, bit i (MSB first) set when siblings[i] is
 *     not the empty hash; unused trailing bits zero
 *   | each non-empty sibling, 32 bytes, in order
 *   | if has_other: other_key 32 | other_val 32.
 * The encoding is canonical: decode refuses anything encode would not
 * produce, and any trailing byte.
 */
#include <assert.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>

#include "chain/chain.h"
#include "chain/smt.h"

enum { TAG_LEAF = 0x00, TAG_INNER = 0x01 };
#define NODE_BYTES (1 + 2 * CHAIN_HASH_LEN)
#define PAGE_BITS 4u
#define PAGE_SLOTS 16u
_Static_assert(PAGE_SLOTS == CHAIN__SMT_PAGE_SLOTS, "smt.h names the page width");
#define PAGE_BYTES_MAX (4 + PAGE_SLOTS * 2 * CHAIN_HASH_LEN)

typedef enum {
    NODE_EMPTY = 0,
    NODE_LEAF,
    NODE_INNER,
} node_kind;

/* A subtree as its parent sees it. Leaf: key and val are set. */
typedef struct {
    node_kind kind;
    chain_hash hash;
    chain_hash key;
    chain_hash val;
} smt_ref;

/* A decoded page. The binary nodes form a heap: 1 is the page's node,
 * i has children 2i and 2i+1, and 16 + s is slot s. */
typedef struct {
    uint8_t kind[2 * PAGE_SLOTS];
    chain_hash hash[2 * PAGE_SLOTS];
    chain_hash key[PAGE_SLOTS];   /* of leaf slots */
    chain_hash val[PAGE_SLOTS];
} smt_page;

typedef struct {
    const chain_hash *key;
    const chain_hash *val;   /* NULL = delete */
} smt_change;

static const chain_hash empty_hash;   /* all zero: constant, not state */

static int hash_is_empty(const chain_hash *h)
{
    return memcmp(h->b, empty_hash.b, CHAIN_HASH_LEN) == 0;
}

static int hash_eq(const chain_hash *x, const chain_hash *y)
{
    return memcmp(x->b, y->b, CHAIN_HASH_LEN) == 0;
}

static unsigned key_bit(const chain_hash *key, unsigned depth)
{
    assert(depth < CHAIN_SMT_DEPTH);
    return (key->b[depth / 8] >> (7 - depth % 8)) & 1u;
}

/* The four bits of key at depth (a multiple of 4): its slot in a page. */
static unsigned key_slot(const chain_hash *key, unsigned depth)
{
    assert(depth % PAGE_BITS == 0 && depth < CHAIN_SMT_DEPTH);
    uint8_t byte = key->b[depth / 8];
    return depth % 8 ? byte & 0x0fu : byte >> 4;
}

static void node_hash(chain_hash *out, uint8_t tag, const chain_hash *a, const chain_hash *b)
{
    uint8_t pre[NODE_BYTES];
    pre[0] = tag;
    memcpy(pre + 1, a->b, CHAIN_HASH_LEN);
    memcpy(pre + 1 + CHAIN_HASH_LEN, b->b, CHAIN_HASH_LEN);
    chain_sha256(out, pre, sizeof pre);
}

void chain__smt_empty_root(chain_hash *out)
{
    assert(out != NULL);
    *out = empty_hash;
}

/* ------------------------------------------------------------------ pages */

static void page_clear(smt_page *pg)
{
    memset(pg->kind, NODE_EMPTY, sizeof pg->kind);
    memset(pg->hash, 0, sizeof pg->hash);
}

static void page_set(smt_page *pg, unsigned s, const smt_ref *r)
{
    pg->kind[PAGE_SLOTS + s] = (uint8_t)r->kind;
    pg->hash[PAGE_SLOTS + s] = r->hash;
    if (r->kind == NODE_LEAF) {
        pg->key[s] = r->key;
        pg->val[s] = r->val;
    }
}

/* Recomputes the binary nodes above the heap positions in `dirty` (a bit
 * per heap index) with the compact rule. */
static void page_rehash(smt_page *pg, uint32_t dirty)
{
    for (unsigned i = PAGE_SLOTS - 1; i >= 1; i--) {
        if (!(dirty & (3u << (2 * i)))) continue;
        dirty |= 1u << i;
        unsigned l = 2 * i, r = 2 * i + 1;
        if (pg->kind[l] == NODE_EMPTY && pg->kind[r] != NODE_INNER) {
            pg->kind[i] = pg->kind[r];
            pg->hash[i] = pg->hash[r];
        } else if (pg->kind[r] == NODE_EMPTY && pg->kind[l] != NODE_INNER) {
            pg->kind[i] = pg->kind[l];
            pg->hash[i] = pg->hash[l];
        } else {
            pg->kind[i] = NODE_INNER;
            node_hash(&pg->hash[i], TAG_INNER, &pg->hash[l], &pg->hash[r]);
        }
    }
}

/* The subtree at heap position i, as a ref. A leaf that floated up to i is
 * found in the one non-empty slot below it. */
static void page_ref(const smt_page *pg, unsigned i, smt_ref *out)
{
    out->kind = pg->kind[i];
    out->hash = pg->hash[i];
    if (out->kind != NODE_LEAF) return;
    while (i < PAGE_SLOTS) i = pg->kind[2 * i] != NODE_EMPTY ? 2 * i : 2 * i + 1;
    out->key = pg->key[i - PAGE_SLOTS];
    out->val = pg->val[i - PAGE_SLOTS];
}

static size_t page_encode(uint8_t out[PAGE_BYTES_MAX], const smt_page *pg)
{
    unsigned present = 0, leaves = 0;
    size_t off = 4;
    for (unsigned s = 0; s < PAGE_SLOTS; s++) {
        unsigned k = pg->kind[PAGE_SLOTS + s];
        if (k == NODE_EMPTY) continue;
        present |= 1u << s;
        if (k == NODE_LEAF) {
            leaves |= 1u << s;
            memcpy(out + off, pg->key[s].b, CHAIN_HASH_LEN);
            memcpy(out + off + CHAIN_HASH_LEN, pg->val[s].b, CHAIN_HASH_LEN);
            off += 2 * CHAIN_HASH_LEN;
        } else {
            memcpy(out + off, pg->hash[PAGE_SLOTS + s].b, CHAIN_HASH_LEN);
            off += CHAIN_HASH_LEN;
        }
    }
    out[0] = (uint8_t)(present >> 8);
    out[1] = (uint8_t)present;
    out[2] = (uint8_t)(leaves >> 8);
    out[3] = (uint8_t)leaves;
    return off;
}

/* Decodes the page at depth stored under `hash` and checks that its
 * slots hash to it; anything else is a corrupt or foreign store. */
static int page_decode(smt_page *pg, const chain_hash *hash, unsigned depth, const uint8_t *buf,
                       size_t len)
{
    if (len < 4 || len > PAGE_BYTES_MAX) return CHAIN_EIO;
    unsigned present = (unsigned)buf[0] << 8 | buf[1], leaves = (unsigned)buf[2] << 8 | buf[3];
    if ((leaves & ~present) != 0) return CHAIN_EIO;
    page_clear(pg);
    size_t off = 4;
    for (unsigned s = 0; s < PAGE_SLOTS; s++) {
        if (!(present & (1u << s))) continue;
        unsigned i = PAGE_SLOTS + s;
        if (leaves & (1u << s)) {
            if (len - off < 2 * CHAIN_HASH_LEN) return CHAIN_EIO;
            memcpy(pg->key[s].b, buf + off, CHAIN_HASH_LEN);
            memcpy(pg->val[s].b, buf + off + CHAIN_HASH_LEN, CHAIN_HASH_LEN);
            off += 2 * CHAIN_HASH_LEN;
            if (key_slot(&pg->key[s], depth) != s) return CHAIN_EIO;
            pg->kind[i] = NODE_LEAF;
            node_hash(&pg->hash[i], TAG_LEAF, &pg->key[s], &pg->val[s]);
        } else {
            /* Two keys differ before bit 256: no inner node that deep. */
            if (depth + PAGE_BITS >= CHAIN_SMT_DEPTH) return CHAIN_EIO;
            if (len - off < CHAIN_HASH_LEN) return CHAIN_EIO;
            memcpy(pg->hash[i].b, buf + off, CHAIN_HASH_LEN);
            off += CHAIN_HASH_LEN;
            if (hash_is_empty(&pg->hash[i])) return CHAIN_EIO;
            pg->kind[i] = NODE_INNER;
        }
    }
    if (off != len) return CHAIN_EIO;
    page_rehash(pg, 0xffff0000u);
    if (pg->kind[1] == NODE_EMPTY || !hash_eq(&pg->hash[1], hash)) return CHAIN_EIO;
    return CHAIN_OK;
}

/* The inner children of an encoded page, by hash, in slot order. Only the
 * layout is checked (the page's own hash is not recomputed): the store
 * uses it to walk the pages it wrote itself. */
int chain__smt_page_children(const uint8_t *buf, size_t len, chain_hash out[CHAIN__SMT_PAGE_SLOTS],
                             unsigned *n)
{
    if (len < 4 || len > PAGE_BYTES_MAX) return CHAIN_EIO;
    unsigned present = (unsigned)buf[0] << 8 | buf[1], leaves = (unsigned)buf[2] << 8 | buf[3];
    if ((leaves & ~present) != 0) return CHAIN_EIO;
    size_t off = 4;
    *n = 0;
    for (unsigned s = 0; s < PAGE_SLOTS; s++) {
        if (!(present & (1u << s))) continue;
        size_t w = leaves & (1u << s) ? 2 * CHAIN_HASH_LEN : CHAIN_HASH_LEN;
        if (len - off < w) return CHAIN_EIO;
        if (w == CHAIN_HASH_LEN) memcpy(out[(*n)++].b, buf + off, CHAIN_HASH_LEN);
        off += w;
    }
    return off == len ? CHAIN_OK : CHAIN_EIO;
}

/* ------------------------------------------------------------------ cache */

/* A read's walk toward key, one page at a time (see walk). */
typedef struct {
    const chain_hash *key;
    chain_hash *sib;     /* siblings met, by depth; NULL: not wanted */
    unsigned depth;      /* of the binary node the walk stands on */
    int done;            /* the path ended: end is set */
    smt_ref end;
    chain_hash next;     /* else: the inner slot whose page comes next */
} walk_state;

#define CACHE_LOCKS 64u

typedef struct {
    chain_hash key;
    int used;
    smt_page page;
} cache_slot;

/* Direct-mapped by hash: a slot keeps the last page whose hash maps to it.
 * Pages are immutable (content-addressed), so a hit is always right, even
 * for a page of a block that was never committed. */
struct chain__smt_cache {
    size_t mask;
    cache_slot *slots;
    pthread_mutex_t locks[CACHE_LOCKS];
};

chain__smt_cache *chain__smt_cache_create(unsigned slots_log2)
{
    if (slots_log2 == 0 || slots_log2 > 24) return NULL;
    chain__smt_cache *c = calloc(1, sizeof *c);
    if (c == NULL) return NULL;
    c->mask = ((size_t)1 << slots_log2) - 1;
    c->slots = calloc(c->mask + 1, sizeof *c->slots);   /* untouched slots cost no RSS */
    if (c->slots == NULL) { free(c); return NULL; }
    for (unsigned i = 0; i < CACHE_LOCKS; i++) pthread_mutex_init(&c->locks[i], NULL);
    return c;
}

void chain__smt_cache_destroy(chain__smt_cache *c)
{
    if (c == NULL) return;
    for (unsigned i = 0; i < CACHE_LOCKS; i++) pthread_mutex_destroy(&c->locks[i]);
    free(c->slots);
    free(c);
}

static size_t cache_index(const chain__smt_cache *c, const chain_hash *h)
{
    size_t x = 0;
    memcpy(&x, h->b, sizeof x);   /* the hash is uniform: any bytes do */
    return x & c->mask;
}

/* The slot holding h, with its lock taken (*mu, which the caller
 * releases), or NULL on a miss (lock released). */
static const cache_slot *cache_find(chain__smt_cache *c, const chain_hash *h, pthread_mutex_t **mu)
{
    size_t i = cache_index(c, h);
    *mu = &c->locks[i % CACHE_LOCKS];
    pthread_mutex_lock(*mu);
    const cache_slot *s = &c->slots[i];
    if (s->used && hash_eq(&s->key, h)) return s;
    pthread_mutex_unlock(*mu);
    return NULL;
}

static int cache_get(chain__smt_cache *c, const chain_hash *h, smt_page *out)
{
    pthread_mutex_t *mu;
    const cache_slot *s = c != NULL ? cache_find(c, h, &mu) : NULL;
    if (s == NULL) return 0;
    *out = s->page;
    pthread_mutex_unlock(mu);
    return 1;
}

static int page_walk(const smt_page *pg, walk_state *w);

/* A read walks a cached page where it lies, under the slot's lock, rather
 * than copying it out: a walk touches a few of the page's ~2 KiB (one
 * binary level each: a kind, a hash and a sibling). */
static int cache_walk(chain__smt_cache *c, const chain_hash *h, walk_state *w, int *rc)
{
    pthread_mutex_t *mu;
    const cache_slot *s = c != NULL ? cache_find(c, h, &mu) : NULL;
    if (s == NULL) return 0;
    *rc = page_walk(&s->page, w);
    pthread_mutex_unlock(mu);
    return 1;
}

static void cache_put(chain__smt_cache *c, const chain_hash *h, const smt_page *pg)
{
    if (c == NULL) return;
    size_t i = cache_index(c, h);
    pthread_mutex_t *mu = &c->locks[i % CACHE_LOCKS];
    pthread_mutex_lock(mu);
    cache_slot *s = &c->slots[i];
    s->key = *h;
    s->page = *pg;
    s->used = 1;
    pthread_mutex_unlock(mu);
}

/* ------------------------------------------------------------------ storage */

/* Reads the page of the node with this hash at depth from the store, and
 * caches it. A page the tree refers to but the store lacks is corruption
 * (or an unknown root), so it is CHAIN_EIO rather than CHAIN_ENOTFOUND,
 * which means "key absent". */
static int page_read(const chain__smt_backend *be, smt_page *pg, const chain_hash *hash,
                     unsigned depth)
{
    assert(!hash_is_empty(hash));
    uint8_t *val = NULL;
    size_t len = 0;
    int rc = be->get(be->arg, hash, &val, &len);
    if (rc == CHAIN_ENOTFOUND) return CHAIN_EIO;
    if (rc != CHAIN_OK) return rc;
    rc = page_decode(pg, hash, depth, val, len);
    free(val);
    if (rc == CHAIN_OK) cache_put(be->cache, hash, pg);
    return rc;
}

/* The page, from the cache or the store. */
static int page_load(const chain__smt_backend *be, smt_page *pg, const chain_hash *hash,
                     unsigned depth)
{
    if (cache_get(be->cache, hash, pg)) return CHAIN_OK;
    return page_read(be, pg, hash, depth);
}

/* Writes a page whose binary nodes are up to date, under its node's hash. */
static int page_store(const chain__smt_backend *be, const smt_page *pg)
{
    uint8_t buf[PAGE_BYTES_MAX];
    size_t len = page_encode(buf, pg);
    int rc = be->put(be->arg, &pg->hash[1], buf, len);
    if (rc == CHAIN_OK) cache_put(be->cache, &pg->hash[1], pg);
    return rc;
}

/* ------------------------------------------------------------------ update */

static void ref_leaf(smt_ref *out, const chain_hash *key, const chain_hash *val)
{
    out->kind = NODE_LEAF;
    out->key = *key;
    out->val = *val;
    node_hash(&out->hash, TAG_LEAF, key, val);
}

/* Applies sorted, distinct changes c[0..cnt), all under the path of the
 * subtree n whose top is at depth (a multiple of 4), and writes the new
 * subtree to *out. */
static int update_rec(const chain__smt_backend *be, smt_ref *out, const smt_ref *n, unsigned depth,
                      const smt_change *c, size_t cnt)
{
    if (cnt == 0) { *out = *n; return CHAIN_OK; }
    if (cnt == 1 && (n->kind == NODE_EMPTY ||
                     (n->kind == NODE_LEAF && hash_eq(&n->key, c[0].key)))) {
        if (c[0].val != NULL) ref_leaf(out, c[0].key, c[0].val);
        else memset(out, 0, sizeof *out);
        return CHAIN_OK;
    }
    /* Two distinct keys differ before bit 256; only a corrupt store (an
     * inner node 256 levels deep) can get here. */
    if (depth >= CHAIN_SMT_DEPTH) return CHAIN_EIO;
    smt_page *pg = malloc(sizeof *pg);   /* ~2 KiB a level: keep it off the stack */
    if (pg == NULL) return CHAIN_ENOMEM;
    int rc = CHAIN_OK;
    uint32_t dirty = 0;   /* heap positions to rehash from */
    if (n->kind == NODE_INNER) {
        rc = page_load(be, pg, &n->hash, depth);
        /* Only the root's page may describe a single leaf (see
         * store_leaf_root); the caller knows the root by hash alone. */
        if (rc == CHAIN_OK && pg->kind[1] != NODE_INNER && !(depth == 0 && pg->kind[1] == NODE_LEAF))
            rc = CHAIN_EIO;
    } else {
        /* A leaf at the top of a subtree moves down into its slot. */
        page_clear(pg);
        if (n->kind == NODE_LEAF) {
            unsigned s = key_slot(&n->key, depth);
            page_set(pg, s, n);
            dirty |= 1u << (PAGE_SLOTS + s);
        }
    }
    for (size_t lo = 0; lo < cnt && rc == CHAIN_OK;) {
        unsigned s = key_slot(c[lo].key, depth);
        size_t hi = lo + 1;
        while (hi < cnt && key_slot(c[hi].key, depth) == s) hi++;
        smt_ref child, next;
        page_ref(pg, PAGE_SLOTS + s, &child);
        rc = update_rec(be, &next, &child, depth + PAGE_BITS, c + lo, hi - lo);
        if (rc == CHAIN_OK) {
            page_set(pg, s, &next);
            dirty |= 1u << (PAGE_SLOTS + s);
        }
        lo = hi;
    }
    if (rc == CHAIN_OK) {
        page_rehash(pg, dirty);
        page_ref(pg, 1, out);
        if (out->kind == NODE_INNER && !(n->kind == NODE_INNER && hash_eq(&n->hash, &out->hash)))
            rc = page_store(be, pg);
    }
    free(pg);
    return rc;
}

static int change_cmp(const void *x, const void *y)
{
    const smt_change *a = x, *b = y;
    return memcmp(a->key->b, b->key->b, CHAIN_HASH_LEN);
}

/* The root is always read as a page; a single-leaf root gets a page of
 * its own under the leaf's hash. */
static int store_leaf_root(const chain__smt_backend *be, const smt_ref *leaf)
{
    smt_page pg;
    page_clear(&pg);
    page_set(&pg, key_slot(&leaf->key, 0), leaf);
    page_rehash(&pg, 0xffff0000u);
    assert(pg.kind[1] == NODE_LEAF && hash_eq(&pg.hash[1], &leaf->hash));
    return page_store(be, &pg);
}

int chain__smt_update(const chain__smt_backend *be, chain_hash *root_out, const chain_hash *root,
                      size_t n, const chain_hash *keys, const chain_hash *const *vals)
{
    if (be == NULL || be->get == NULL || be->put == NULL || root_out == NULL || root == NULL)
        return CHAIN_EINVAL;
    if (n > 0 && (keys == NULL || vals == NULL)) return CHAIN_EINVAL;
    if (n == 0) { *root_out = *root; return CHAIN_OK; }
    if (n > SIZE_MAX / sizeof(smt_change)) return CHAIN_EINVAL;
    smt_change *c = malloc(n * sizeof *c);
    if (c == NULL) return CHAIN_ENOMEM;
    for (size_t i = 0; i < n; i++) c[i] = (smt_change){&keys[i], vals[i]};
    qsort(c, n, sizeof *c, change_cmp);
    int rc = CHAIN_OK;
    for (size_t i = 1; i < n && rc == CHAIN_OK; i++)
        if (change_cmp(&c[i - 1], &c[i]) == 0) rc = CHAIN_EINVAL;
    /* A non-empty root is read as a page, whether it is an inner node or
     * a single leaf, once, by update_rec. */
    smt_ref top = {.kind = hash_is_empty(root) ? NODE_EMPTY : NODE_INNER, .hash = *root}, res;
    if (rc == CHAIN_OK) rc = update_rec(be, &res, &top, 0, c, n);
    if (rc == CHAIN_OK && res.kind == NODE_LEAF && !hash_eq(&res.hash, root))
        rc = store_leaf_root(be, &res);
    free(c);
    if (rc != CHAIN_OK) return rc;
    *root_out = res.hash;
    return CHAIN_OK;
}

/* ------------------------------------------------------------------ reads */

/* Steps through one page from its node while the path stays on inner
 * nodes inside it. Every page below the root describes an inner node. */
static int page_walk(const smt_page *pg, walk_state *w)
{
    if (w->depth > 0 && pg->kind[1] != NODE_INNER) return CHAIN_EIO;
    unsigned i = 1;
    while (i < PAGE_SLOTS && pg->kind[i] == NODE_INNER) {
        unsigned bit = key_bit(w->key, w->depth);
        if (w->sib != NULL) w->sib[w->depth] = pg->hash[2 * i + !bit];
        i = 2 * i + bit;
        w->depth++;
    }
    if (pg->kind[i] == NODE_INNER) {   /* an inner slot: continue in its page */
        w->next = pg->hash[i];
        return CHAIN_OK;
    }
    page_ref(pg, i, &w->end);
    w->done = 1;
    return CHAIN_OK;
}

/* Walks from root toward key until the path ends in an empty subtree or a
 * leaf, one binary level at a time through the pages. Siblings met on the
 * way are written by depth to sib (if not NULL); *depth_out gets the depth
 * where the walk ended. Cached pages are walked in place; a page read from
 * the store is decoded into a buffer allocated on the first miss. */
static int walk(const chain__smt_backend *be, smt_ref *end, unsigned *depth_out, chain_hash *sib,
                const chain_hash *root, const chain_hash *key)
{
    memset(end, 0, sizeof *end);
    *depth_out = 0;
    if (hash_is_empty(root)) return CHAIN_OK;
    walk_state w = {.key = key, .sib = sib, .next = *root};
    smt_page *pg = NULL;
    int rc = CHAIN_OK;
    while (rc == CHAIN_OK && !w.done) {
        chain_hash cur = w.next;
        if (cache_walk(be->cache, &cur, &w, &rc)) continue;
        if (pg == NULL && (pg = malloc(sizeof *pg)) == NULL) rc = CHAIN_ENOMEM;
        if (rc == CHAIN_OK) rc = page_read(be, pg, &cur, w.depth);
        if (rc == CHAIN_OK) rc = page_walk(pg, &w);
    }
    if (rc == CHAIN_OK) {
        *end = w.end;
        *depth_out = w.depth;
    }
    free(pg);
    return rc;
}

int chain__smt_get(const chain__smt_backend *be, chain_hash *val_out, const chain_hash *root,
                   const chain_hash *key)
{
    if (be == NULL || be->get == NULL || val_out == NULL || root == NULL || key == NULL)
        return CHAIN_EINVAL;
    smt_ref end;
    unsigned depth;
    int rc = walk(be, &end, &depth, NULL, root, key);
    if (rc != CHAIN_OK) return rc;
    if (end.kind != NODE_LEAF || !hash_eq(&end.key, key)) return CHAIN_ENOTFOUND;
    *val_out = end.val;
    return CHAIN_OK;
}

int chain__smt_prove(const chain__smt_backend *be, chain__smt_proof *out, const chain_hash *root,
                     const chain_hash *key)
{
    if (be == NULL || be->get == NULL || out == NULL || root == NULL || key == NULL)
        return CHAIN_EINVAL;
    chain_hash *sib = malloc(CHAIN_SMT_DEPTH * sizeof *sib);
    if (sib == NULL) return CHAIN_ENOMEM;
    smt_ref end;
    unsigned depth = 0;
    int rc = walk(be, &end, &depth, sib, root, key);
    if (rc == CHAIN_OK) {
        assert(depth <= CHAIN_SMT_DEPTH);
        memset(out, 0, sizeof *out);
        out->n_siblings = depth;
        for (unsigned i = 0; i < depth; i++) out->siblings[i] = sib[depth - 1 - i];
        if (end.kind == NODE_LEAF && !hash_eq(&end.key, key)) {
            out->has_other = 1;
            out->other_key = end.key;
            out->other_val = end.val;
        }
    }
    free(sib);
    return rc;
}

/* 1 if x and y agree on their first nbits bits. */
static int prefix_eq(const chain_hash *x, const chain_hash *y, unsigned nbits)
{
    for (unsigned d = 0; d < nbits; d++)
        if (key_bit(x, d) != key_bit(y, d)) return 0;
    return 1;
}

int chain__smt_verify(const chain_hash *root, const chain_hash *key, const chain_hash *val,
                      const chain__smt_proof *proof)
{
    if (root == NULL || key == NULL || proof == NULL) return CHAIN_EINVAL;
    uint32_t n = proof->n_siblings;
    if (n > CHAIN_SMT_DEPTH) return CHAIN_EPROOF;
    chain_hash cur;
    if (val != NULL) {
        if (proof->has_other) return CHAIN_EPROOF;
        node_hash(&cur, TAG_LEAF, key, val);
    } else if (proof->has_other) {
        /* The leaf found in key's place must really sit on key's path. */
        if (hash_eq(&proof->other_key, key)) return CHAIN_EPROOF;
        if (!prefix_eq(&proof->other_key, key, n)) return CHAIN_EPROOF;
        node_hash(&cur, TAG_LEAF, &proof->other_key, &proof->other_val);
    } else {
        cur = empty_hash;
    }
    for (uint32_t i = 0; i < n; i++) {
        unsigned depth = n - 1 - i;
        const chain_hash *s = &proof->siblings[i];
        chain_hash next;
        if (key_bit(key, depth)) node_hash(&next, TAG_INNER, s, &cur);
        else node_hash(&next, TAG_INNER, &cur, s);
        cur = next;
    }
    return hash_eq(&cur, root) ? CHAIN_OK : CHAIN_EPROOF;
}

/* ------------------------------------------------------------------ codec */

int chain__smt_proof_encode(uint8_t *buf, size_t cap, size_t *len_out, const chain__smt_proof *p)
{
    if (buf == NULL || len_out == NULL || p == NULL) return CHAIN_EINVAL;
    if (p->n_siblings > CHAIN_SMT_DEPTH) return CHAIN_EBOUNDS;
    uint32_t n = p->n_siblings;
    size_t nmap = (n + 7) / 8, len = 3 + nmap;
    for (uint32_t i = 0; i < n; i++)
        if (!hash_is_empty(&p->siblings[i])) len += CHAIN_HASH_LEN;
    if (p->has_other) len += 2 * CHAIN_HASH_LEN;
    assert(len <= CHAIN_SMT_PROOF_BYTES_MAX);
    if (len > cap) return CHAIN_EBOUNDS;
    buf[0] = p->has_other ? 1 : 0;
    buf[1] = (uint8_t)(n >> 8);
    buf[2] = (uint8_t)n;
    memset(buf + 3, 0, nmap);
    size_t off = 3 + nmap;
    for (uint32_t i = 0; i < n; i++) {
        if (hash_is_empty(&p->siblings[i])) continue;
        buf[3 + i / 8] |= (uint8_t)(0x80u >> (i % 8));
        memcpy(buf + off, p->siblings[i].b, CHAIN_HASH_LEN);
        off += CHAIN_HASH_LEN;
    }
    if (p->has_other) {
        memcpy(buf + off, p->other_key.b, CHAIN_HASH_LEN);
        memcpy(buf + off + CHAIN_HASH_LEN, p->other_val.b, CHAIN_HASH_LEN);
        off += 2 * CHAIN_HASH_LEN;
    }
    assert(off == len);
    *len_out = len;
    return CHAIN_OK;
}

/* Reads the siblings named by the bitmap at buf + 3; *off advances. */
static int decode_siblings(chain__smt_proof *out, const uint8_t *buf, size_t len, size_t *off)
{
    uint32_t n = out->n_siblings;
    const uint8_t *map = buf + 3;
    for (uint32_t i = 0; i < n; i++) {
        if (!(map[i / 8] & (0x80u >> (i % 8)))) continue;
        if (len - *off < CHAIN_HASH_LEN) return CHAIN_EDECODE;
        memcpy(out->siblings[i].b, buf + *off, CHAIN_HASH_LEN);
        /* An empty sibling must be left to the bitmap. */
        if (hash_is_empty(&out->siblings[i])) return CHAIN_ENONCANON;
        *off += CHAIN_HASH_LEN;
    }
    /* Bits past n in the last bitmap byte must be zero. */
    if (n % 8 != 0 && (map[n / 8] & (0xffu >> (n % 8)))) return CHAIN_ENONCANON;
    return CHAIN_OK;
}

int chain__smt_proof_decode(chain__smt_proof *out, const uint8_t *buf, size_t len)
{
    if (out == NULL || (buf == NULL && len > 0)) return CHAIN_EINVAL;
    if (len < 3 || len > CHAIN_SMT_PROOF_BYTES_MAX) return CHAIN_EDECODE;
    if (buf[0] & ~1u) return CHAIN_ENONCANON;
    uint32_t n = (uint32_t)buf[1] << 8 | buf[2];
    if (n > CHAIN_SMT_DEPTH) return CHAIN_EBOUNDS;
    size_t off = 3 + (n + 7) / 8;
    if (len < off) return CHAIN_EDECODE;
    chain__smt_proof *p = calloc(1, sizeof *p);
    if (p == NULL) return CHAIN_ENOMEM;
    p->n_siblings = n;
    p->has_other = buf[0] & 1;
    int rc = decode_siblings(p, buf, len, &off);
    if (rc == CHAIN_OK && p->has_other) {
        if (len - off < 2 * CHAIN_HASH_LEN) rc = CHAIN_EDECODE;
        else {
            memcpy(p->other_key.b, buf + off, CHAIN_HASH_LEN);
            memcpy(p->other_val.b, buf + off + CHAIN_HASH_LEN, CHAIN_HASH_LEN);
            off += 2 * CHAIN_HASH_LEN;
        }
    }
    if (rc == CHAIN_OK && off != len) rc = CHAIN_EDECODE;   /* trailing bytes */
    if (rc == CHAIN_OK) *out = *p;
    free(p);
    return rc;
}
