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
 * Storage. Nodes are content-addressed: backend key = node hash, backend
 * value = the 65-byte hash preimage itself (tag byte, then two 32-byte
 * fields), so the tag tells leaf from inner and every read is checked by
 * re-hashing it against the key it was read under.
 *
 * Update. A batch is sorted by key and applied by one recursion over the
 * tree: at each node the sorted run of changes splits at the first key with
 * bit d set, so each change costs O(depth) reads and writes and untouched
 * subtrees are never visited. Combining children re-establishes the compact
 * shape (empty + leaf collapses to the leaf), which is what makes deletion
 * restore exactly the tree the remaining set would have built. The
 * recursion only reads nodes that existed under the input root (new nodes
 * are returned up, never re-read), so its writes may sit in an unread batch.
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
#include <stdlib.h>
#include <string.h>

#include "chain/chain.h"
#include "chain/smt.h"

enum { TAG_LEAF = 0x00, TAG_INNER = 0x01 };
#define NODE_BYTES (1 + 2 * CHAIN_HASH_LEN)

typedef enum {
    NODE_EMPTY = 0,
    NODE_LEAF,
    NODE_INNER,
    NODE_UNKNOWN,   /* only the hash is known; not read yet */
} node_kind;

/* A decoded node. Leaf: a = key, b = value. Inner: a = left, b = right. */
typedef struct {
    node_kind kind;
    chain_hash hash;
    chain_hash a;
    chain_hash b;
} smt_node;

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

/* Writes the hash preimage (= stored encoding) of a node. */
static void node_preimage(uint8_t out[NODE_BYTES], uint8_t tag, const chain_hash *a,
                          const chain_hash *b)
{
    out[0] = tag;
    memcpy(out + 1, a->b, CHAIN_HASH_LEN);
    memcpy(out + 1 + CHAIN_HASH_LEN, b->b, CHAIN_HASH_LEN);
}

static void node_hash(chain_hash *out, uint8_t tag, const chain_hash *a, const chain_hash *b)
{
    uint8_t pre[NODE_BYTES];
    node_preimage(pre, tag, a, b);
    chain_sha256(out, pre, sizeof pre);
}

void chain__smt_empty_root(chain_hash *out)
{
    assert(out != NULL);
    *out = empty_hash;
}

/* ------------------------------------------------------------------ storage */

/* Decodes a stored node and checks it is the preimage of the hash it was
 * stored under; a mismatch means a corrupt or foreign store (CHAIN_EIO). */
static int node_decode(smt_node *out, const chain_hash *hash, const uint8_t *buf, size_t len)
{
    if (len != NODE_BYTES) return CHAIN_EIO;
    if (buf[0] != TAG_LEAF && buf[0] != TAG_INNER) return CHAIN_EIO;
    chain_hash check;
    chain_sha256(&check, buf, len);
    if (!hash_eq(&check, hash)) return CHAIN_EIO;
    out->kind = buf[0] == TAG_LEAF ? NODE_LEAF : NODE_INNER;
    out->hash = *hash;
    memcpy(out->a.b, buf + 1, CHAIN_HASH_LEN);
    memcpy(out->b.b, buf + 1 + CHAIN_HASH_LEN, CHAIN_HASH_LEN);
    return CHAIN_OK;
}

/* Reads the node with this hash. The empty hash needs no read. A node the
 * tree refers to but the store lacks is corruption (or an unknown root), so
 * it is CHAIN_EIO rather than CHAIN_ENOTFOUND, which means "key absent". */
static int node_load(const chain__smt_backend *be, smt_node *out, const chain_hash *hash)
{
    if (hash_is_empty(hash)) {
        memset(out, 0, sizeof *out);
        out->kind = NODE_EMPTY;
        return CHAIN_OK;
    }
    uint8_t *val = NULL;
    size_t len = 0;
    int rc = be->get(be->arg, hash, &val, &len);
    if (rc == CHAIN_ENOTFOUND) return CHAIN_EIO;
    if (rc != CHAIN_OK) return rc;
    rc = node_decode(out, hash, val, len);
    free(val);
    return rc;
}

/* Resolves a child known only by hash into a decoded node. */
static int node_resolve(const chain__smt_backend *be, smt_node *n)
{
    if (n->kind != NODE_UNKNOWN) return CHAIN_OK;
    chain_hash h = n->hash;
    return node_load(be, n, &h);
}

static int node_store(const chain__smt_backend *be, smt_node *out, uint8_t tag,
                      const chain_hash *a, const chain_hash *b)
{
    uint8_t pre[NODE_BYTES];
    node_preimage(pre, tag, a, b);
    out->kind = tag == TAG_LEAF ? NODE_LEAF : NODE_INNER;
    chain_sha256(&out->hash, pre, sizeof pre);
    out->a = *a;
    out->b = *b;
    assert(!hash_is_empty(&out->hash));
    return be->put(be->arg, &out->hash, pre, sizeof pre);
}

/* ------------------------------------------------------------------ update */

/* Joins two updated children into the compact form of their parent. An
 * untouched child is only known by hash; it is read only when its sibling
 * became empty and the parent may collapse into it. */
static int node_combine(const chain__smt_backend *be, smt_node *out, smt_node *l, smt_node *r)
{
    assert(l->kind != NODE_UNKNOWN || r->kind != NODE_UNKNOWN);
    if (l->kind == NODE_EMPTY) {
        int rc = node_resolve(be, r);
        if (rc != CHAIN_OK) return rc;
        if (r->kind != NODE_INNER) { *out = *r; return CHAIN_OK; }
    } else if (r->kind == NODE_EMPTY) {
        int rc = node_resolve(be, l);
        if (rc != CHAIN_OK) return rc;
        if (l->kind != NODE_INNER) { *out = *l; return CHAIN_OK; }
    }
    return node_store(be, out, TAG_INNER, &l->hash, &r->hash);
}

/* Sets a subtree that holds at most the one changed key. */
static int update_single(const chain__smt_backend *be, smt_node *out, const smt_change *c)
{
    if (c->val == NULL) {
        memset(out, 0, sizeof *out);
        out->kind = NODE_EMPTY;
        return CHAIN_OK;
    }
    return node_store(be, out, TAG_LEAF, c->key, c->val);
}

/* Splits node n (at depth) into its two children, as nodes. */
static void node_children(const smt_node *n, unsigned depth, smt_node *l, smt_node *r)
{
    memset(l, 0, sizeof *l);
    memset(r, 0, sizeof *r);
    if (n->kind == NODE_INNER) {
        l->hash = n->a;
        r->hash = n->b;
        l->kind = hash_is_empty(&l->hash) ? NODE_EMPTY : NODE_UNKNOWN;
        r->kind = hash_is_empty(&r->hash) ? NODE_EMPTY : NODE_UNKNOWN;
    } else if (n->kind == NODE_LEAF) {
        /* A leaf at the top of a subtree moves one level down, to its side. */
        *(key_bit(&n->a, depth) ? r : l) = *n;
    }
}

/* Applies sorted, distinct changes c[0..cnt), all under the path of node n
 * at depth, and writes the new subtree to *out. */
static int update_rec(const chain__smt_backend *be, smt_node *out, smt_node *n, unsigned depth,
                      const smt_change *c, size_t cnt)
{
    if (cnt == 0) { *out = *n; return CHAIN_OK; }
    int rc = node_resolve(be, n);
    if (rc != CHAIN_OK) return rc;
    if (cnt == 1 && (n->kind == NODE_EMPTY ||
                     (n->kind == NODE_LEAF && hash_eq(&n->a, c[0].key))))
        return update_single(be, out, &c[0]);
    /* Two distinct keys differ before bit 256; only a corrupt store (an
     * inner node 256 levels deep) can get here. */
    if (depth >= CHAIN_SMT_DEPTH) return CHAIN_EIO;
    size_t split = 0;
    while (split < cnt && key_bit(c[split].key, depth) == 0) split++;
    smt_node l, r, nl, nr;
    node_children(n, depth, &l, &r);
    rc = update_rec(be, &nl, &l, depth + 1, c, split);
    if (rc != CHAIN_OK) return rc;
    rc = update_rec(be, &nr, &r, depth + 1, c + split, cnt - split);
    if (rc != CHAIN_OK) return rc;
    return node_combine(be, out, &nl, &nr);
}

static int change_cmp(const void *x, const void *y)
{
    const smt_change *a = x, *b = y;
    return memcmp(a->key->b, b->key->b, CHAIN_HASH_LEN);
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
    smt_node top = {.kind = NODE_UNKNOWN, .hash = *root}, res;
    if (hash_is_empty(root)) top.kind = NODE_EMPTY;
    if (rc == CHAIN_OK) rc = update_rec(be, &res, &top, 0, c, n);
    free(c);
    if (rc != CHAIN_OK) return rc;
    assert(res.kind != NODE_UNKNOWN);
    *root_out = res.hash;
    return CHAIN_OK;
}

/* ------------------------------------------------------------------ reads */

/* Walks from root toward key until the path ends in an empty subtree or a
 * leaf. Siblings met on the way are written root-first to sib (if not NULL);
 * *depth_out gets the depth where the walk ended. */
static int walk(const chain__smt_backend *be, smt_node *end, unsigned *depth_out,
                chain_hash *sib, const chain_hash *root, const chain_hash *key)
{
    smt_node n;
    int rc = node_load(be, &n, root);
    unsigned depth = 0;
    while (rc == CHAIN_OK && n.kind == NODE_INNER) {
        if (depth >= CHAIN_SMT_DEPTH) return CHAIN_EIO;   /* corrupt store */
        unsigned bit = key_bit(key, depth);
        if (sib != NULL) sib[depth] = bit ? n.a : n.b;
        chain_hash next = bit ? n.b : n.a;
        rc = node_load(be, &n, &next);
        depth++;
    }
    if (rc != CHAIN_OK) return rc;
    *end = n;
    *depth_out = depth;
    return CHAIN_OK;
}

int chain__smt_get(const chain__smt_backend *be, chain_hash *val_out, const chain_hash *root,
                   const chain_hash *key)
{
    if (be == NULL || be->get == NULL || val_out == NULL || root == NULL || key == NULL)
        return CHAIN_EINVAL;
    smt_node end;
    unsigned depth;
    int rc = walk(be, &end, &depth, NULL, root, key);
    if (rc != CHAIN_OK) return rc;
    if (end.kind != NODE_LEAF || !hash_eq(&end.a, key)) return CHAIN_ENOTFOUND;
    *val_out = end.b;
    return CHAIN_OK;
}

int chain__smt_prove(const chain__smt_backend *be, chain__smt_proof *out, const chain_hash *root,
                     const chain_hash *key)
{
    if (be == NULL || be->get == NULL || out == NULL || root == NULL || key == NULL)
        return CHAIN_EINVAL;
    chain_hash *sib = malloc(CHAIN_SMT_DEPTH * sizeof *sib);
    if (sib == NULL) return CHAIN_ENOMEM;
    smt_node end;
    unsigned depth = 0;
    int rc = walk(be, &end, &depth, sib, root, key);
    if (rc == CHAIN_OK) {
        assert(depth <= CHAIN_SMT_DEPTH);
        memset(out, 0, sizeof *out);
        out->n_siblings = depth;
        for (unsigned i = 0; i < depth; i++) out->siblings[i] = sib[depth - 1 - i];
        if (end.kind == NODE_LEAF && !hash_eq(&end.a, key)) {
            out->has_other = 1;
            out->other_key = end.a;
            out->other_val = end.b;
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
