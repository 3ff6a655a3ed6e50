/* test_smt.c — Check suite for the sparse Merkle tree (chain/smt.c).
 *
 * The tree runs over an in-memory hash-map backend that counts reads and
 * writes and can inject failures or corrupt what it returns. Cases cover
 * the exact hashes of small trees, insert/update/delete and collapse,
 * order independence, proofs of presence and absence with tampering, the
 * proof codec's bounds, backend errors, and a seeded randomized comparison
 * against a plain map (SMT_SEED=<n> replays a run). A benchmark prints the
 * time to apply 1000 changes to a tree of 100,000 keys.
 */
#include <check.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "chain/chain.h"
#include "chain/smt.h"

/* ------------------------------------------------------------------ rng */
typedef struct { uint64_t s; } rng;

static uint64_t rng_next(rng *r)   /* splitmix64 */
{
    uint64_t z = (r->s += 0x9e3779b97f4a7c15ull);
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
    return z ^ (z >> 31);
}

static void rng_hash(rng *r, chain_hash *out)
{
    for (int i = 0; i < 4; i++) {
        uint64_t v = rng_next(r);
        memcpy(out->b + 8 * i, &v, 8);
    }
}

static uint64_t test_seed(void)
{
    const char *env = getenv("SMT_SEED");
    uint64_t seed = env != NULL ? strtoull(env, NULL, 0) : 0x5eed5eedull;
    printf("smt: seed %" PRIu64 " (replay with SMT_SEED=%" PRIu64 ")\n", seed, seed);
    fflush(stdout);
    return seed;
}

/* ------------------------------------------------------------------ backend */
typedef struct {
    chain_hash key;
    uint8_t *val;
    size_t len;
    int used;
} mem_slot;

typedef struct mem_store {
    mem_slot *slots;
    size_t cap, n;
    uint64_t gets, puts;
    long fail_get_after;   /* < 0: never; else fail once this many gets passed */
    long fail_put_after;
    struct mem_store *pending;   /* if set, puts go there, unseen by gets */
    int corrupt;           /* what get returns: 1 a byte flipped; 2 truncated;
                              3 a well-formed leaf of another hash; 4 an
                              unknown tag */
} mem_store;

static size_t slot_of(const mem_store *m, const chain_hash *key)
{
    uint64_t h;
    memcpy(&h, key->b, 8);
    size_t i = (size_t)(h & (m->cap - 1));
    while (m->slots[i].used && memcmp(m->slots[i].key.b, key->b, CHAIN_HASH_LEN) != 0)
        i = (i + 1) & (m->cap - 1);
    return i;
}

static void mem_init(mem_store *m)
{
    memset(m, 0, sizeof *m);
    m->cap = 1024;
    m->slots = calloc(m->cap, sizeof *m->slots);
    ck_assert_ptr_nonnull(m->slots);
    m->fail_get_after = m->fail_put_after = -1;
}

static void mem_free(mem_store *m)
{
    for (size_t i = 0; i < m->cap; i++) free(m->slots[i].val);
    free(m->slots);
}

static void mem_grow(mem_store *m)
{
    mem_store bigger = *m;
    bigger.cap = m->cap * 2;
    bigger.slots = calloc(bigger.cap, sizeof *bigger.slots);
    ck_assert_ptr_nonnull(bigger.slots);
    for (size_t i = 0; i < m->cap; i++)
        if (m->slots[i].used) bigger.slots[slot_of(&bigger, &m->slots[i].key)] = m->slots[i];
    free(m->slots);
    *m = bigger;
}

static int mem_get(void *arg, const chain_hash *key, uint8_t **val, size_t *val_len)
{
    mem_store *m = arg;
    if (m->fail_get_after >= 0 && m->gets >= (uint64_t)m->fail_get_after) return CHAIN_EIO;
    m->gets++;
    mem_slot *s = &m->slots[slot_of(m, key)];
    if (!s->used) return CHAIN_ENOTFOUND;
    *val = malloc(s->len);
    ck_assert_ptr_nonnull(*val);
    memcpy(*val, s->val, s->len);
    *val_len = s->len;
    if (m->corrupt == 1) (*val)[s->len - 1] ^= 1;
    if (m->corrupt == 2) *val_len = s->len - 1;
    if (m->corrupt == 3) memset(*val, 0, s->len);
    if (m->corrupt == 4) (*val)[0] = 2;
    return CHAIN_OK;
}

static int mem_put(void *arg, const chain_hash *key, const uint8_t *val, size_t val_len)
{
    mem_store *m = arg;
    if (m->pending != NULL) return mem_put(m->pending, key, val, val_len);
    if (m->fail_put_after >= 0 && m->puts >= (uint64_t)m->fail_put_after) return CHAIN_EIO;
    m->puts++;
    if (2 * (m->n + 1) > m->cap) mem_grow(m);
    mem_slot *s = &m->slots[slot_of(m, key)];
    if (s->used) return CHAIN_OK;   /* content-addressed: same key, same bytes */
    s->used = 1;
    s->key = *key;
    s->val = malloc(val_len);
    ck_assert_ptr_nonnull(s->val);
    memcpy(s->val, val, val_len);
    s->len = val_len;
    m->n++;
    return CHAIN_OK;
}

static chain__smt_backend backend_of(mem_store *m)
{
    return (chain__smt_backend){.arg = m, .get = mem_get, .put = mem_put, .cache = NULL};
}

/* ------------------------------------------------------------------ helpers */
static void hash_fill(chain_hash *h, uint8_t v)
{
    memset(h->b, v, CHAIN_HASH_LEN);
}

static void leaf_hash(chain_hash *out, const chain_hash *k, const chain_hash *v)
{
    uint8_t pre[65];
    pre[0] = 0;
    memcpy(pre + 1, k->b, 32);
    memcpy(pre + 33, v->b, 32);
    chain_sha256(out, pre, sizeof pre);
}

static void inner_hash(chain_hash *out, const chain_hash *l, const chain_hash *r)
{
    uint8_t pre[65];
    pre[0] = 1;
    memcpy(pre + 1, l->b, 32);
    memcpy(pre + 33, r->b, 32);
    chain_sha256(out, pre, sizeof pre);
}

static int heq(const chain_hash *a, const chain_hash *b)
{
    return memcmp(a->b, b->b, CHAIN_HASH_LEN) == 0;
}

/* Applies one change; returns the rc and updates *root on success. */
static int put1(const chain__smt_backend *be, chain_hash *root, const chain_hash *k,
                const chain_hash *v)
{
    const chain_hash *vals[1] = {v};
    return chain__smt_update(be, root, root, 1, k, vals);
}

static void expect_value(const chain__smt_backend *be, const chain_hash *root,
                         const chain_hash *k, const chain_hash *v)
{
    chain_hash got;
    if (v == NULL) {
        ck_assert_int_eq(chain__smt_get(be, &got, root, k), CHAIN_ENOTFOUND);
        return;
    }
    ck_assert_int_eq(chain__smt_get(be, &got, root, k), CHAIN_OK);
    ck_assert(heq(&got, v));
}

/* Proves k under root, checks the proof verifies for v (NULL = absent), and
 * survives an encode/decode round trip. */
static void expect_proof(const chain__smt_backend *be, const chain_hash *root,
                         const chain_hash *k, const chain_hash *v)
{
    static chain__smt_proof p, q;   /* large; keep off the stack */
    static uint8_t buf[CHAIN_SMT_PROOF_BYTES_MAX];
    size_t len;
    ck_assert_int_eq(chain__smt_prove(be, &p, root, k), CHAIN_OK);
    ck_assert_int_eq(chain__smt_verify(root, k, v, &p), CHAIN_OK);
    ck_assert_int_eq(chain__smt_proof_encode(buf, sizeof buf, &len, &p), CHAIN_OK);
    ck_assert_int_eq(chain__smt_proof_decode(&q, buf, len), CHAIN_OK);
    ck_assert_int_eq(chain__smt_verify(root, k, v, &q), CHAIN_OK);
    ck_assert_int_eq(memcmp(&p, &q, sizeof p), 0);
}

/* ------------------------------------------------------------------ cases */
START_TEST(test_empty_root)
{
    mem_store m;
    mem_init(&m);
    chain__smt_backend be = backend_of(&m);
    chain_hash root, zero, k, out;
    hash_fill(&zero, 0);
    hash_fill(&k, 0x42);
    chain__smt_empty_root(&root);
    ck_assert(heq(&root, &zero));
    ck_assert_int_eq(chain__smt_get(&be, &out, &root, &k), CHAIN_ENOTFOUND);
    ck_assert_uint_eq(m.gets, 0);   /* the empty tree needs no read */
    expect_proof(&be, &root, &k, NULL);
    /* Deleting from the empty tree leaves it empty and writes nothing. */
    ck_assert_int_eq(put1(&be, &root, &k, NULL), CHAIN_OK);
    ck_assert(heq(&root, &zero));
    ck_assert_uint_eq(m.puts, 0);
    /* An empty batch returns the same root. */
    chain_hash r2;
    ck_assert_int_eq(chain__smt_update(&be, &r2, &root, 0, NULL, NULL), CHAIN_OK);
    ck_assert(heq(&r2, &root));
    mem_free(&m);
}
END_TEST

START_TEST(test_small_tree_hashes)
{
    mem_store m;
    mem_init(&m);
    chain__smt_backend be = backend_of(&m);
    chain_hash root, a, b, va, vb, la, lb, want;
    chain__smt_empty_root(&root);
    hash_fill(&a, 0x11);   /* bit 0 = 0 */
    hash_fill(&b, 0x91);   /* bit 0 = 1 */
    hash_fill(&va, 0xaa);
    hash_fill(&vb, 0xbb);
    /* One leaf: the root is the leaf itself. */
    ck_assert_int_eq(put1(&be, &root, &a, &va), CHAIN_OK);
    leaf_hash(&la, &a, &va);
    ck_assert(heq(&root, &la));
    /* Two leaves split at bit 0: one inner node over both. */
    ck_assert_int_eq(put1(&be, &root, &b, &vb), CHAIN_OK);
    leaf_hash(&lb, &b, &vb);
    inner_hash(&want, &la, &lb);
    ck_assert(heq(&root, &want));
    /* Keys sharing 3 bits: a chain of inner nodes with empty siblings. */
    chain_hash c = a, vc = va, lc, zero, t;
    c.b[0] = 0x01;   /* 0000 0001 vs a = 0001 0001: differ at bit 3 */
    hash_fill(&zero, 0);
    chain__smt_empty_root(&root);
    ck_assert_int_eq(put1(&be, &root, &a, &va), CHAIN_OK);
    ck_assert_int_eq(put1(&be, &root, &c, &vc), CHAIN_OK);
    leaf_hash(&lc, &c, &vc);
    inner_hash(&t, &lc, &la);   /* depth 3: c left, a right */
    inner_hash(&t, &t, &zero);  /* depth 2 */
    inner_hash(&t, &t, &zero);  /* depth 1 */
    inner_hash(&t, &t, &zero);  /* depth 0 */
    ck_assert(heq(&root, &t));
    mem_free(&m);
}
END_TEST

START_TEST(test_insert_update_delete)
{
    mem_store m;
    mem_init(&m);
    chain__smt_backend be = backend_of(&m);
    rng r = {7};
    enum { N = 64 };
    chain_hash keys[N], vals[N], root, empty, v2;
    chain__smt_empty_root(&root);
    empty = root;
    for (int i = 0; i < N; i++) {
        rng_hash(&r, &keys[i]);
        rng_hash(&r, &vals[i]);
        ck_assert_int_eq(put1(&be, &root, &keys[i], &vals[i]), CHAIN_OK);
    }
    for (int i = 0; i < N; i++) expect_value(&be, &root, &keys[i], &vals[i]);
    /* Update: new value visible, root changes, old root still readable. */
    chain_hash old = root;
    hash_fill(&v2, 0x77);
    ck_assert_int_eq(put1(&be, &root, &keys[5], &v2), CHAIN_OK);
    ck_assert(!heq(&root, &old));
    expect_value(&be, &root, &keys[5], &v2);
    expect_value(&be, &old, &keys[5], &vals[5]);
    /* Writing the same value again changes nothing. */
    chain_hash same = root;
    ck_assert_int_eq(put1(&be, &same, &keys[5], &v2), CHAIN_OK);
    ck_assert(heq(&same, &root));
    /* Deleting an absent key changes nothing. */
    chain_hash absent;
    rng_hash(&r, &absent);
    ck_assert_int_eq(put1(&be, &same, &absent, NULL), CHAIN_OK);
    ck_assert(heq(&same, &root));
    /* Delete down to one leaf: the root collapses to that leaf. */
    for (int i = 1; i < N; i++) ck_assert_int_eq(put1(&be, &root, &keys[i], NULL), CHAIN_OK);
    chain_hash l0;
    leaf_hash(&l0, &keys[0], &vals[0]);
    ck_assert(heq(&root, &l0));
    expect_value(&be, &root, &keys[1], NULL);
    ck_assert_int_eq(put1(&be, &root, &keys[0], NULL), CHAIN_OK);
    ck_assert(heq(&root, &empty));
    mem_free(&m);
}
END_TEST

START_TEST(test_deep_pair_collapses)
{
    /* Keys equal but for bit 255: the deepest possible tree, 256 levels. */
    mem_store m;
    mem_init(&m);
    chain__smt_backend be = backend_of(&m);
    chain_hash a, b, v, root, la;
    hash_fill(&a, 0x3c);
    b = a;
    b.b[31] ^= 1;
    hash_fill(&v, 0x01);
    chain__smt_empty_root(&root);
    const chain_hash keys[2] = {a, b};
    const chain_hash *vals[2] = {&v, &v};
    ck_assert_int_eq(chain__smt_update(&be, &root, &root, 2, keys, vals), CHAIN_OK);
    expect_value(&be, &root, &a, &v);
    expect_value(&be, &root, &b, &v);
    static chain__smt_proof p;
    ck_assert_int_eq(chain__smt_prove(&be, &p, &root, &b), CHAIN_OK);
    ck_assert_uint_eq(p.n_siblings, 256);
    expect_proof(&be, &root, &a, &v);
    /* A third key on the same long path: absence ends at an empty subtree. */
    chain_hash c = a;
    c.b[31] ^= 2;
    expect_proof(&be, &root, &c, NULL);
    ck_assert_int_eq(put1(&be, &root, &b, NULL), CHAIN_OK);
    leaf_hash(&la, &a, &v);
    ck_assert(heq(&root, &la));
    mem_free(&m);
}
END_TEST

START_TEST(test_duplicate_keys_refused)
{
    mem_store m;
    mem_init(&m);
    chain__smt_backend be = backend_of(&m);
    chain_hash keys[3], v, root, out;
    hash_fill(&keys[0], 1);
    hash_fill(&keys[1], 2);
    hash_fill(&keys[2], 1);
    hash_fill(&v, 9);
    hash_fill(&out, 0xee);
    chain__smt_empty_root(&root);
    const chain_hash *vals[3] = {&v, &v, NULL};
    ck_assert_int_eq(chain__smt_update(&be, &out, &root, 3, keys, vals), CHAIN_EINVAL);
    chain_hash ee;
    hash_fill(&ee, 0xee);
    ck_assert(heq(&out, &ee));   /* untouched */
    ck_assert_uint_eq(m.puts, 0);
    mem_free(&m);
}
END_TEST

START_TEST(test_invalid_args)
{
    mem_store m;
    mem_init(&m);
    chain__smt_backend be = backend_of(&m), nobe = {0};
    chain_hash root, k, out;
    static chain__smt_proof p;
    uint8_t buf[8];
    size_t len;
    chain__smt_empty_root(&root);
    hash_fill(&k, 3);
    const chain_hash *vals[1] = {&k};
    ck_assert_int_eq(chain__smt_update(NULL, &out, &root, 1, &k, vals), CHAIN_EINVAL);
    ck_assert_int_eq(chain__smt_update(&nobe, &out, &root, 1, &k, vals), CHAIN_EINVAL);
    ck_assert_int_eq(chain__smt_update(&be, NULL, &root, 1, &k, vals), CHAIN_EINVAL);
    ck_assert_int_eq(chain__smt_update(&be, &out, NULL, 1, &k, vals), CHAIN_EINVAL);
    ck_assert_int_eq(chain__smt_update(&be, &out, &root, 1, NULL, vals), CHAIN_EINVAL);
    ck_assert_int_eq(chain__smt_update(&be, &out, &root, 1, &k, NULL), CHAIN_EINVAL);
    ck_assert_int_eq(chain__smt_get(NULL, &out, &root, &k), CHAIN_EINVAL);
    ck_assert_int_eq(chain__smt_get(&be, &out, &root, NULL), CHAIN_EINVAL);
    ck_assert_int_eq(chain__smt_prove(&be, NULL, &root, &k), CHAIN_EINVAL);
    ck_assert_int_eq(chain__smt_prove(&nobe, &p, &root, &k), CHAIN_EINVAL);
    ck_assert_int_eq(chain__smt_verify(NULL, &k, NULL, &p), CHAIN_EINVAL);
    ck_assert_int_eq(chain__smt_proof_encode(NULL, 8, &len, &p), CHAIN_EINVAL);
    ck_assert_int_eq(chain__smt_proof_decode(NULL, buf, 3), CHAIN_EINVAL);
    ck_assert_int_eq(chain__smt_proof_decode(&p, NULL, 3), CHAIN_EINVAL);
    mem_free(&m);
}
END_TEST

/* Inserts keys[perm[i]] in batches whose sizes come from r. */
static void build_in_batches(const chain__smt_backend *be, chain_hash *root, rng *r,
                             const chain_hash *keys, const chain_hash *vals, size_t n,
                             const size_t *perm)
{
    chain_hash *bk = malloc(n * sizeof *bk);
    const chain_hash **bv = malloc(n * sizeof *bv);
    ck_assert(bk != NULL && bv != NULL);
    chain__smt_empty_root(root);
    for (size_t i = 0; i < n;) {
        size_t len = 1 + (size_t)(rng_next(r) % 40);
        if (len > n - i) len = n - i;
        for (size_t j = 0; j < len; j++) {
            bk[j] = keys[perm[i + j]];
            bv[j] = &vals[perm[i + j]];
        }
        ck_assert_int_eq(chain__smt_update(be, root, root, len, bk, bv), CHAIN_OK);
        i += len;
    }
    free(bk);
    free(bv);
}

START_TEST(test_order_independence)
{
    mem_store m;
    mem_init(&m);
    chain__smt_backend be = backend_of(&m);
    rng r = {test_seed()};
    enum { N = 500 };
    static chain_hash keys[N], vals[N];
    static size_t perm[N];
    for (size_t i = 0; i < N; i++) {
        rng_hash(&r, &keys[i]);
        rng_hash(&r, &vals[i]);
        perm[i] = i;
    }
    chain_hash ref, root;
    const chain_hash **pv = malloc(N * sizeof *pv);
    ck_assert_ptr_nonnull(pv);
    for (size_t i = 0; i < N; i++) pv[i] = &vals[i];
    chain__smt_empty_root(&ref);
    ck_assert_int_eq(chain__smt_update(&be, &ref, &ref, N, keys, pv), CHAIN_OK);
    for (int round = 0; round < 5; round++) {
        for (size_t i = N - 1; i > 0; i--) {   /* Fisher-Yates */
            size_t j = (size_t)(rng_next(&r) % (i + 1)), t = perm[i];
            perm[i] = perm[j];
            perm[j] = t;
        }
        build_in_batches(&be, &root, &r, keys, vals, N, perm);
        ck_assert(heq(&root, &ref));
    }
    /* Adding 100 extra keys and deleting them again restores the root. */
    static chain_hash extra[100];
    const chain_hash *ev[100];
    for (int i = 0; i < 100; i++) { rng_hash(&r, &extra[i]); ev[i] = &vals[i]; }
    ck_assert_int_eq(chain__smt_update(&be, &root, &root, 100, extra, ev), CHAIN_OK);
    ck_assert(!heq(&root, &ref));
    for (int i = 0; i < 100; i++) ev[i] = NULL;
    ck_assert_int_eq(chain__smt_update(&be, &root, &root, 100, extra, ev), CHAIN_OK);
    ck_assert(heq(&root, &ref));
    free(pv);
    mem_free(&m);
}
END_TEST

/* A tree of 200 keys for the proof cases. */
typedef struct {
    mem_store m;
    chain__smt_backend be;
    chain_hash root;
    chain_hash keys[200], vals[200];
} fixture;

static void fixture_init(fixture *f, uint64_t seed)
{
    mem_init(&f->m);
    f->be = backend_of(&f->m);
    rng r = {seed};
    const chain_hash *pv[200];
    for (int i = 0; i < 200; i++) {
        rng_hash(&r, &f->keys[i]);
        rng_hash(&r, &f->vals[i]);
        pv[i] = &f->vals[i];
    }
    chain__smt_empty_root(&f->root);
    ck_assert_int_eq(chain__smt_update(&f->be, &f->root, &f->root, 200, f->keys, pv), CHAIN_OK);
}

/* Finds a key absent from the fixture whose path ends at a leaf
 * (want_other = 1) or at an empty subtree (want_other = 0). */
static void find_absent(fixture *f, chain_hash *k, int want_other)
{
    static chain__smt_proof p;
    rng r = {99};
    for (int tries = 0; tries < 10000; tries++) {
        rng_hash(&r, k);
        ck_assert_int_eq(chain__smt_prove(&f->be, &p, &f->root, k), CHAIN_OK);
        if (p.has_other == want_other) return;
    }
    ck_abort_msg("no absent key of the wanted kind");
}

START_TEST(test_proofs_verify)
{
    static fixture f;
    fixture_init(&f, 1);
    for (int i = 0; i < 200; i++) expect_proof(&f.be, &f.root, &f.keys[i], &f.vals[i]);
    chain_hash k;
    for (int want = 0; want < 2; want++) {
        find_absent(&f, &k, want);
        expect_proof(&f.be, &f.root, &k, NULL);
    }
    /* A single-leaf tree: absence proofs with no siblings at all. */
    chain_hash one = f.keys[0];
    mem_store m;
    mem_init(&m);
    chain__smt_backend be = backend_of(&m);
    chain_hash root;
    chain__smt_empty_root(&root);
    ck_assert_int_eq(put1(&be, &root, &one, &f.vals[0]), CHAIN_OK);
    expect_proof(&be, &root, &one, &f.vals[0]);
    expect_proof(&be, &root, &f.keys[1], NULL);
    mem_free(&m);
    mem_free(&f.m);
}
END_TEST

START_TEST(test_proofs_tampered)
{
    static fixture f;
    static chain__smt_proof p, t;
    fixture_init(&f, 2);
    const chain_hash *k = &f.keys[17], *v = &f.vals[17];
    ck_assert_int_eq(chain__smt_prove(&f.be, &p, &f.root, k), CHAIN_OK);
    ck_assert_uint_gt(p.n_siblings, 0);
    ck_assert_int_eq(chain__smt_verify(&f.root, k, v, &p), CHAIN_OK);
    /* Each sibling flipped by one bit. */
    for (uint32_t i = 0; i < p.n_siblings; i++) {
        t = p;
        t.siblings[i].b[i % 32] ^= 0x10;
        ck_assert_int_eq(chain__smt_verify(&f.root, k, v, &t), CHAIN_EPROOF);
    }
    chain_hash bad = *v;
    bad.b[0] ^= 1;
    ck_assert_int_eq(chain__smt_verify(&f.root, k, &bad, &p), CHAIN_EPROOF);   /* value */
    ck_assert_int_eq(chain__smt_verify(&f.root, &f.keys[18], v, &p), CHAIN_EPROOF);   /* key */
    bad = f.root;
    bad.b[31] ^= 1;
    ck_assert_int_eq(chain__smt_verify(&bad, k, v, &p), CHAIN_EPROOF);   /* root */
    ck_assert_int_eq(chain__smt_verify(&f.root, k, NULL, &p), CHAIN_EPROOF);   /* claim absent */
    t = p;
    t.n_siblings--;   /* one level short */
    ck_assert_int_eq(chain__smt_verify(&f.root, k, v, &t), CHAIN_EPROOF);
    t = p;
    t.n_siblings = CHAIN_SMT_DEPTH + 1;
    ck_assert_int_eq(chain__smt_verify(&f.root, k, v, &t), CHAIN_EPROOF);
    t = p;
    t.has_other = 1;   /* presence with an "other" leaf is contradictory */
    ck_assert_int_eq(chain__smt_verify(&f.root, k, v, &t), CHAIN_EPROOF);

    /* Absence ending at a leaf with another key. */
    chain_hash a;
    find_absent(&f, &a, 1);
    ck_assert_int_eq(chain__smt_prove(&f.be, &p, &f.root, &a), CHAIN_OK);
    ck_assert_int_eq(chain__smt_verify(&f.root, &a, NULL, &p), CHAIN_OK);
    ck_assert_int_eq(chain__smt_verify(&f.root, &p.other_key, &p.other_val, &p), CHAIN_EPROOF);
    t = p;
    t.other_val.b[3] ^= 4;
    ck_assert_int_eq(chain__smt_verify(&f.root, &a, NULL, &t), CHAIN_EPROOF);
    t = p;
    t.has_other = 0;   /* pretend the path ends empty */
    ck_assert_int_eq(chain__smt_verify(&f.root, &a, NULL, &t), CHAIN_EPROOF);
    /* The other leaf's own key cannot be "proven absent" with its leaf. */
    ck_assert_int_eq(chain__smt_verify(&f.root, &p.other_key, NULL, &p), CHAIN_EPROOF);
    /* A present key cannot borrow this absence proof. */
    ck_assert_int_eq(chain__smt_verify(&f.root, k, NULL, &p), CHAIN_EPROOF);
    /* The other leaf must share the proven path. */
    chain_hash off = a;
    off.b[0] ^= 0x80;
    ck_assert_int_eq(chain__smt_verify(&f.root, &off, NULL, &p), CHAIN_EPROOF);

    /* A leaf that is not on the key's path is refused even when the hashes
     * chain up (a shape the tree never builds: the leaf sits under bit 0 =
     * 0 but its key starts with bit 1). */
    chain_hash lk, lv, ll, sib, fake;
    hash_fill(&lk, 0xf0);
    hash_fill(&lv, 0x01);
    hash_fill(&sib, 0x22);
    leaf_hash(&ll, &lk, &lv);
    inner_hash(&fake, &ll, &sib);
    memset(&t, 0, sizeof t);
    t.n_siblings = 1;
    t.siblings[0] = sib;
    t.has_other = 1;
    t.other_key = lk;
    t.other_val = lv;
    hash_fill(&off, 0x0f);   /* bit 0 = 0: left, where the leaf hangs */
    ck_assert_int_eq(chain__smt_verify(&fake, &off, NULL, &t), CHAIN_EPROOF);

    /* Absence ending at an empty subtree. */
    find_absent(&f, &a, 0);
    ck_assert_int_eq(chain__smt_prove(&f.be, &p, &f.root, &a), CHAIN_OK);
    ck_assert_int_eq(chain__smt_verify(&f.root, &a, NULL, &p), CHAIN_OK);
    for (uint32_t i = 0; i < p.n_siblings; i++) {
        t = p;
        t.siblings[i].b[0] ^= 1;
        ck_assert_int_eq(chain__smt_verify(&f.root, &a, NULL, &t), CHAIN_EPROOF);
    }
    bad = f.root;
    bad.b[0] ^= 1;
    ck_assert_int_eq(chain__smt_verify(&bad, &a, NULL, &p), CHAIN_EPROOF);
    ck_assert_int_eq(chain__smt_verify(&f.root, &a, v, &p), CHAIN_EPROOF);
    /* An absence proof from an older root does not hold for a key added since. */
    chain_hash old = f.root;
    ck_assert_int_eq(put1(&f.be, &f.root, &a, v), CHAIN_OK);
    ck_assert_int_eq(chain__smt_verify(&old, &a, NULL, &p), CHAIN_OK);
    ck_assert_int_eq(chain__smt_verify(&f.root, &a, NULL, &p), CHAIN_EPROOF);
    mem_free(&f.m);
}
END_TEST

START_TEST(test_proof_codec_bounds)
{
    static fixture f;
    static chain__smt_proof p, q, sentinel;
    static uint8_t buf[CHAIN_SMT_PROOF_BYTES_MAX + 2];
    size_t len;
    fixture_init(&f, 3);
    chain_hash a;
    find_absent(&f, &a, 1);   /* has_other: exercises every section */
    ck_assert_int_eq(chain__smt_prove(&f.be, &p, &f.root, &a), CHAIN_OK);
    ck_assert_int_eq(chain__smt_proof_encode(buf, sizeof buf, &len, &p), CHAIN_OK);
    memset(&sentinel, 0xa5, sizeof sentinel);
    /* Every truncation fails and leaves the output untouched. */
    for (size_t cut = 0; cut < len; cut++) {
        q = sentinel;
        ck_assert_int_ne(chain__smt_proof_decode(&q, buf, cut), CHAIN_OK);
        ck_assert_int_eq(memcmp(&q, &sentinel, sizeof q), 0);
    }
    /* A trailing byte is refused. */
    buf[len] = 0;
    ck_assert_int_eq(chain__smt_proof_decode(&q, buf, len + 1), CHAIN_EDECODE);
    /* Encoding into too small a buffer is refused. */
    size_t l2 = 0;
    ck_assert_int_eq(chain__smt_proof_encode(buf, len - 1, &l2, &p), CHAIN_EBOUNDS);
    ck_assert_uint_eq(l2, 0);
    ck_assert_int_eq(chain__smt_proof_encode(buf, sizeof buf, &len, &p), CHAIN_OK);
    /* Unknown flag bits. */
    buf[0] |= 2;
    ck_assert_int_eq(chain__smt_proof_decode(&q, buf, len), CHAIN_ENONCANON);
    buf[0] &= 1;
    ck_assert_int_eq(chain__smt_proof_decode(&q, buf, len), CHAIN_OK);
    /* n_siblings > 256, in the struct and on the wire. */
    q = p;
    q.n_siblings = CHAIN_SMT_DEPTH + 1;
    ck_assert_int_eq(chain__smt_proof_encode(buf, sizeof buf, &len, &q), CHAIN_EBOUNDS);
    uint8_t over[3 + 33] = {0, 0x01, 0x01};   /* n = 257, empty bitmap */
    ck_assert_int_eq(chain__smt_proof_decode(&q, over, sizeof over), CHAIN_EBOUNDS);
    /* Oversized input is refused before it is read. */
    ck_assert_int_eq(chain__smt_proof_decode(&q, buf, CHAIN_SMT_PROOF_BYTES_MAX + 1),
                     CHAIN_EDECODE);
    /* Bits past n in the bitmap, and an explicit empty sibling. */
    uint8_t pad[3 + 1] = {0, 0, 3, 0x10};   /* n = 3, bit 3 set */
    ck_assert_int_eq(chain__smt_proof_decode(&q, pad, sizeof pad), CHAIN_ENONCANON);
    uint8_t zero_sib[3 + 1 + 32] = {0, 0, 1, 0x80};   /* sibling 0 sent as zeros */
    ck_assert_int_eq(chain__smt_proof_decode(&q, zero_sib, sizeof zero_sib), CHAIN_ENONCANON);
    /* The largest proof: 256 non-empty siblings and another leaf. */
    memset(&q, 0, sizeof q);
    q.n_siblings = CHAIN_SMT_DEPTH;
    for (int i = 0; i < CHAIN_SMT_DEPTH; i++) hash_fill(&q.siblings[i], (uint8_t)(i | 1));
    q.has_other = 1;
    ck_assert_int_eq(chain__smt_proof_encode(buf, sizeof buf, &len, &q), CHAIN_OK);
    ck_assert_uint_eq(len, CHAIN_SMT_PROOF_BYTES_MAX);
    ck_assert_int_eq(chain__smt_proof_decode(&p, buf, len), CHAIN_OK);
    ck_assert_int_eq(memcmp(&p, &q, sizeof p), 0);
    /* The smallest: the empty tree's absence proof is 3 bytes. */
    memset(&q, 0, sizeof q);
    ck_assert_int_eq(chain__smt_proof_encode(buf, sizeof buf, &len, &q), CHAIN_OK);
    ck_assert_uint_eq(len, 3);
    mem_free(&f.m);
}
END_TEST

START_TEST(test_backend_errors)
{
    static fixture f;
    static chain__smt_proof p;
    fixture_init(&f, 4);
    chain_hash out, v, sentinel, k = f.keys[9];
    hash_fill(&v, 0x5a);
    hash_fill(&sentinel, 0xcd);
    /* A failing read at every position of an update propagates, and the
     * root output stays untouched. */
    const chain_hash *vals[1] = {&v};
    uint64_t base = f.m.gets;
    ck_assert_int_eq(chain__smt_update(&f.be, &out, &f.root, 1, &k, vals), CHAIN_OK);
    uint64_t reads = f.m.gets - base;
    ck_assert_uint_gt(reads, 0);
    for (uint64_t i = 0; i < reads; i++) {
        f.m.fail_get_after = (long)(f.m.gets + i);
        out = sentinel;
        ck_assert_int_eq(chain__smt_update(&f.be, &out, &f.root, 1, &k, vals), CHAIN_EIO);
        ck_assert(heq(&out, &sentinel));
    }
    f.m.fail_get_after = (long)f.m.gets;
    ck_assert_int_eq(chain__smt_get(&f.be, &out, &f.root, &k), CHAIN_EIO);
    ck_assert_int_eq(chain__smt_prove(&f.be, &p, &f.root, &k), CHAIN_EIO);
    f.m.fail_get_after = -1;
    /* A failing write propagates. */
    f.m.fail_put_after = (long)f.m.puts;
    out = sentinel;
    ck_assert_int_eq(chain__smt_update(&f.be, &out, &f.root, 1, &k, vals), CHAIN_EIO);
    ck_assert(heq(&out, &sentinel));
    f.m.fail_put_after = -1;
    /* Corrupt bytes and wrong lengths are storage failures, not answers. */
    for (int mode = 1; mode <= 4; mode++) {
        f.m.corrupt = mode;
        ck_assert_int_eq(chain__smt_get(&f.be, &out, &f.root, &k), CHAIN_EIO);
        ck_assert_int_eq(chain__smt_prove(&f.be, &p, &f.root, &k), CHAIN_EIO);
        ck_assert_int_eq(chain__smt_update(&f.be, &out, &f.root, 1, &k, vals), CHAIN_EIO);
    }
    f.m.corrupt = 0;
    /* A root the store has never seen. */
    chain_hash unknown;
    hash_fill(&unknown, 0x66);
    ck_assert_int_eq(chain__smt_get(&f.be, &out, &unknown, &k), CHAIN_EIO);
    ck_assert_int_eq(chain__smt_update(&f.be, &out, &unknown, 1, &k, vals), CHAIN_EIO);
    /* Everything still reads after the failures. */
    expect_value(&f.be, &f.root, &k, &f.vals[9]);
    mem_free(&f.m);
}
END_TEST

START_TEST(test_page_leaf_slot_checked)
{
    /* A single-leaf root page hashes to the leaf wherever the leaf sits,
     * so the slot its key names is checked on its own. */
    mem_store m;
    mem_init(&m);
    chain__smt_backend be = backend_of(&m);
    chain_hash k, v, root, out;
    hash_fill(&k, 0x3c);   /* slot 3 at depth 0 */
    hash_fill(&v, 0x07);
    leaf_hash(&root, &k, &v);
    uint8_t page[4 + 64] = {0};
    for (unsigned slot = 0; slot < 16; slot++) {
        m.n = 0;
        memset(m.slots, 0, m.cap * sizeof *m.slots);
        page[0] = (uint8_t)((1u << slot) >> 8);
        page[1] = (uint8_t)(1u << slot);
        page[2] = page[0];
        page[3] = page[1];
        memcpy(page + 4, k.b, 32);
        memcpy(page + 36, v.b, 32);
        ck_assert_int_eq(mem_put(&m, &root, page, sizeof page), CHAIN_OK);
        int rc = chain__smt_get(&be, &out, &root, &k);
        ck_assert_int_eq(rc, slot == 3 ? CHAIN_OK : CHAIN_EIO);
        free(m.slots[slot_of(&m, &root)].val);
        m.slots[slot_of(&m, &root)].val = NULL;
    }
    /* A leaf bit outside the present bits, and a missing value. */
    page[0] = 0; page[1] = 0x08; page[2] = 0; page[3] = 0x18;
    m.n = 0;
    memset(m.slots, 0, m.cap * sizeof *m.slots);
    ck_assert_int_eq(mem_put(&m, &root, page, sizeof page), CHAIN_OK);
    ck_assert_int_eq(chain__smt_get(&be, &out, &root, &k), CHAIN_EIO);
    mem_free(&m);
}
END_TEST

START_TEST(test_update_never_reads_own_writes)
{
    /* The store writes nodes into a block's WriteBatch and reads from the
     * committed column family, so one update must never need a node it
     * wrote itself. Puts go to a pending store that gets cannot see. */
    static fixture f;
    fixture_init(&f, 5);
    mem_store pending;
    mem_init(&pending);
    f.m.pending = &pending;
    rng r = {6};
    enum { N = 300 };
    static chain_hash bk[N], bval[N];
    const chain_hash *bv[N];
    for (int i = 0; i < N; i++) {
        if (i < 150) bk[i] = f.keys[i];   /* updates and deletes */
        else rng_hash(&r, &bk[i]);        /* inserts */
        rng_hash(&r, &bval[i]);
        bv[i] = i % 2 ? NULL : &bval[i];
    }
    chain_hash root;
    ck_assert_int_eq(chain__smt_update(&f.be, &root, &f.root, N, bk, bv), CHAIN_OK);
    ck_assert_uint_gt(pending.n, 0);
    /* Commit: merge the pending nodes, then everything reads back. */
    f.m.pending = NULL;
    for (size_t i = 0; i < pending.cap; i++)
        if (pending.slots[i].used)
            ck_assert_int_eq(mem_put(&f.m, &pending.slots[i].key, pending.slots[i].val,
                                     pending.slots[i].len), CHAIN_OK);
    for (int i = 0; i < N; i++) expect_value(&f.be, &root, &bk[i], bv[i]);
    for (int i = 150; i < 200; i++) expect_value(&f.be, &root, &f.keys[i], &f.vals[i]);
    mem_free(&pending);
    mem_free(&f.m);
}
END_TEST

/* Reference model: a fixed pool of keys, each present or not. */
enum { POOL = 2000, OPS = 12000 };
typedef struct {
    chain_hash keys[POOL], vals[POOL];
    int present[POOL];
} model;

/* Checks the tree against the model: every pool key's value, proofs for a
 * sample, and the root equals a from-scratch build of the model's set. */
static void check_model(const chain__smt_backend *be, const chain_hash *root, const model *md,
                        rng *r)
{
    for (int i = 0; i < POOL; i++) expect_value(be, root, &md->keys[i], md->present[i] ? &md->vals[i] : NULL);
    for (int s = 0; s < 20; s++) {
        size_t i = (size_t)(rng_next(r) % POOL);
        expect_proof(be, root, &md->keys[i], md->present[i] ? &md->vals[i] : NULL);
    }
    static chain_hash bk[POOL];
    static const chain_hash *bv[POOL];
    size_t n = 0;
    for (int i = 0; i < POOL; i++)
        if (md->present[i]) { bk[n] = md->keys[i]; bv[n] = &md->vals[i]; n++; }
    mem_store fresh;
    mem_init(&fresh);
    chain__smt_backend fb = backend_of(&fresh);
    chain_hash want;
    chain__smt_empty_root(&want);
    ck_assert_int_eq(chain__smt_update(&fb, &want, &want, n, bk, bv), CHAIN_OK);
    ck_assert(heq(&want, root));
    mem_free(&fresh);
}

/* Random batches against the model. Half the pool are near twins of the
 * other half (one random bit flipped), so paths of every depth, chains and
 * their collapse on delete all occur. cache_log2 > 0 reads through a page
 * cache that small, so slots collide and evict all the time. */
static void run_random(unsigned cache_log2)
{
    static model md;
    mem_store m;
    mem_init(&m);
    chain__smt_backend be = backend_of(&m);
    if (cache_log2 > 0) {
        be.cache = chain__smt_cache_create(cache_log2);
        ck_assert_ptr_nonnull(be.cache);
    }
    rng r = {test_seed() ^ 0xabcdef ^ cache_log2};
    for (int i = 0; i < POOL; i++) {
        if (i % 2 == 0) {
            rng_hash(&r, &md.keys[i]);
            continue;
        }
        unsigned bit = (unsigned)(rng_next(&r) % 256);
        md.keys[i] = md.keys[i - 1];
        md.keys[i].b[bit / 8] ^= (uint8_t)(0x80u >> (bit % 8));
    }
    memset(md.present, 0, sizeof md.present);
    chain_hash root;
    chain__smt_empty_root(&root);
    static chain_hash bk[64], bval[64];
    const chain_hash *bv[64];
    static int used[POOL];
    int ops = 0, batches = 0;
    while (ops < OPS) {
        size_t len = 1 + (size_t)(rng_next(&r) % 64), n = 0;
        memset(used, 0, sizeof used);
        for (size_t j = 0; j < len; j++) {
            size_t i = (size_t)(rng_next(&r) % POOL);
            if (used[i]) continue;   /* keys in a batch are distinct */
            used[i] = 1;
            bk[n] = md.keys[i];
            /* Bias toward inserts early so the tree grows, then mix. */
            int del = (int)(rng_next(&r) % 100) < (ops < OPS / 3 ? 15 : 45);
            if (del) {
                bv[n] = NULL;
                md.present[i] = 0;
            } else {
                rng_hash(&r, &bval[n]);
                bv[n] = &bval[n];
                md.vals[i] = bval[n];
                md.present[i] = 1;
            }
            n++;
        }
        ck_assert_int_eq(chain__smt_update(&be, &root, &root, n, bk, bv), CHAIN_OK);
        ops += (int)n;
        if (++batches % 40 == 0) check_model(&be, &root, &md, &r);
    }
    check_model(&be, &root, &md, &r);
    printf("smt: %d random operations in %d batches match the map (page cache: %s)\n", ops,
           batches, cache_log2 ? "16 slots" : "none");
    chain__smt_cache_destroy(be.cache);
    mem_free(&m);
}

START_TEST(test_random_vs_map)
{
    run_random(0);
}
END_TEST

START_TEST(test_random_vs_map_cached)
{
    run_random(4);
}
END_TEST

START_TEST(test_cache_serves_hot_pages)
{
    /* Pages a write puts in the cache are read back without the backend,
     * and a cache never changes an answer. */
    static fixture f;
    fixture_init(&f, 7);
    chain__smt_backend cached = f.be;
    cached.cache = chain__smt_cache_create(12);
    ck_assert_ptr_nonnull(cached.cache);
    ck_assert_ptr_null(chain__smt_cache_create(0));
    ck_assert_ptr_null(chain__smt_cache_create(25));
    chain_hash root, v;
    hash_fill(&v, 0x42);
    const chain_hash *vals[1] = {&v};
    ck_assert_int_eq(chain__smt_update(&cached, &root, &f.root, 1, &f.keys[3], vals), CHAIN_OK);
    uint64_t g0 = f.m.gets;
    expect_value(&cached, &root, &f.keys[3], &v);
    expect_proof(&cached, &root, &f.keys[3], &v);
    ck_assert_uint_eq(f.m.gets, g0);
    /* Without the cache the same answers come from the backend. */
    expect_value(&f.be, &root, &f.keys[3], &v);
    ck_assert_uint_gt(f.m.gets, g0);
    for (int i = 0; i < 200; i += 7) {
        expect_value(&cached, &root, &f.keys[i], i == 3 ? &v : &f.vals[i]);
        expect_value(&cached, &f.root, &f.keys[i], &f.vals[i]);
    }
    chain__smt_cache_destroy(cached.cache);
    mem_free(&f.m);
}
END_TEST

static double now_s(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

START_TEST(test_bench_batch)
{
    enum { BIG = 100000, BATCH = 1000 };
    mem_store m;
    mem_init(&m);
    chain__smt_backend be = backend_of(&m);
    rng r = {42};
    chain_hash *keys = malloc(BIG * sizeof *keys), *vals = malloc(BIG * sizeof *vals);
    const chain_hash **pv = malloc(BIG * sizeof *pv);
    ck_assert(keys != NULL && vals != NULL && pv != NULL);
    for (size_t i = 0; i < BIG; i++) {
        rng_hash(&r, &keys[i]);
        rng_hash(&r, &vals[i]);
        pv[i] = &vals[i];
    }
    chain_hash root;
    chain__smt_empty_root(&root);
    double t0 = now_s();
    ck_assert_int_eq(chain__smt_update(&be, &root, &root, BIG, keys, pv), CHAIN_OK);
    double t1 = now_s();
    /* 1000 changes: a third updates, a third deletes, a third new keys. */
    chain_hash bk[BATCH], bval[BATCH];
    const chain_hash *bv[BATCH];
    for (size_t i = 0; i < BATCH; i++) {
        size_t kind = i % 3;
        if (kind == 2) rng_hash(&r, &bk[i]);
        else bk[i] = keys[i * 97];
        rng_hash(&r, &bval[i]);
        bv[i] = kind == 1 ? NULL : &bval[i];
    }
    uint64_t g0 = m.gets, p0 = m.puts;
    double t2 = now_s();
    ck_assert_int_eq(chain__smt_update(&be, &root, &root, BATCH, bk, bv), CHAIN_OK);
    double t3 = now_s();
    uint64_t reads = m.gets - g0, writes = m.puts - p0;
    printf("smt bench: build %d keys in %.3f s; batch of %d changes in %.3f ms "
           "(%" PRIu64 " reads, %" PRIu64 " writes)\n",
           BIG, t1 - t0, BATCH, (t3 - t2) * 1e3, reads, writes);
    /* O(changes x log16 n): the binary depth is about log2(100000) ~ 17,
     * about 5 pages, and the top two page levels are shared by the batch,
     * so a change costs a few pages (storing binary nodes cost ~17). */
    ck_assert_uint_lt(reads, (uint64_t)BATCH * 4);
    ck_assert_uint_lt(writes, (uint64_t)BATCH * 4);
    for (size_t i = 0; i < BATCH; i += 50) expect_value(&be, &root, &bk[i], bv[i]);
    free(keys);
    free(vals);
    free(pv);
    mem_free(&m);
}
END_TEST

static Suite *smt_suite(void)
{
    Suite *s = suite_create("smt");
    TCase *tc = tcase_create("core");
    tcase_set_timeout(tc, 120);
    tcase_add_test(tc, test_empty_root);
    tcase_add_test(tc, test_small_tree_hashes);
    tcase_add_test(tc, test_insert_update_delete);
    tcase_add_test(tc, test_deep_pair_collapses);
    tcase_add_test(tc, test_duplicate_keys_refused);
    tcase_add_test(tc, test_invalid_args);
    tcase_add_test(tc, test_order_independence);
    tcase_add_test(tc, test_proofs_verify);
    tcase_add_test(tc, test_proofs_tampered);
    tcase_add_test(tc, test_proof_codec_bounds);
    tcase_add_test(tc, test_backend_errors);
    tcase_add_test(tc, test_update_never_reads_own_writes);
    tcase_add_test(tc, test_page_leaf_slot_checked);
    tcase_add_test(tc, test_random_vs_map);
    tcase_add_test(tc, test_random_vs_map_cached);
    tcase_add_test(tc, test_cache_serves_hot_pages);
    tcase_add_test(tc, test_bench_batch);
    suite_add_tcase(s, tc);
    return s;
}

int main(void)
{
    SRunner *sr = srunner_create(smt_suite());
    srunner_run_all(sr, CK_NORMAL);
    int failed = srunner_ntests_failed(sr);
    srunner_free(sr);
    return failed == 0 ? EXIT_SUCCESS : EXIT_FAILURE;
}
