/* smt.h — chain-internal: the sparse Merkle tree behind the state root.
 *
 * A binary Merkle tree over 256-bit keys whose leaves hold 32-byte value
 * hashes. Empty subtrees hash to fixed defaults, and a subtree holding a
 * single leaf is stored as that leaf ("compact" SMT), so depth is about
 * log2(n). It is stored in pages of four binary levels (see smt.c), so an
 * update costs O(changes x log16 n) page reads and writes. Pages are
 * content-addressed (key = hash of the node they describe), so a page
 * written for an aborted block is simply never used. (The store writes
 * only the pages under the roots it flushes: see store.c.)
 *
 * Storage is reached through a small backend so tests can use a hash map and
 * the store can use RocksDB (reads from the state column family, writes into
 * the block's WriteBatch).
 */
#ifndef CONSENT_CHAIN_SMT_H
#define CONSENT_CHAIN_SMT_H

#include "chain.h"

/* Decoded pages by hash, shared by every reader and writer of one store
 * (thread-safe). NULL in a backend means no cache. */
typedef struct chain__smt_cache chain__smt_cache;
chain__smt_cache *chain__smt_cache_create(unsigned slots_log2);
void chain__smt_cache_destroy(chain__smt_cache *c);

typedef struct {
    void *arg;
    /* Reads node `key`; returns 0 and a malloc'd value, CHAIN_ENOTFOUND, or
     * another CHAIN_E* error. */
    int (*get)(void *arg, const chain_hash *key, uint8_t **val, size_t *val_len);
    /* Stores node `key`. */
    int (*put)(void *arg, const chain_hash *key, const uint8_t *val, size_t val_len);
    chain__smt_cache *cache;
} chain__smt_backend;
/* One chain__smt_update call only reads nodes reachable from its input root
 * and never one it wrote itself, so puts may go to an unread WriteBatch. A
 * later call starting from that (uncommitted) new root needs a backend whose
 * get sees the earlier puts. A node missing from the store or failing its
 * hash check is CHAIN_EIO in every function below. */

/* The root of the empty tree. */
void chain__smt_empty_root(chain_hash *out);

/* Applies n changes to the tree with root `root` and writes the new root to
 * *root_out. vals[i] == NULL deletes keys[i] (deleting an absent key is a
 * no-op). Keys must be distinct (else CHAIN_EINVAL). On error *root_out is
 * untouched; nodes already written are harmless (content-addressed). */
int chain__smt_update(const chain__smt_backend *be, chain_hash *root_out, const chain_hash *root,
                      size_t n, const chain_hash *keys, const chain_hash *const *vals);

/* Reads the value hash of key; CHAIN_ENOTFOUND if absent. */
int chain__smt_get(const chain__smt_backend *be, chain_hash *val_out, const chain_hash *root,
                   const chain_hash *key);

/* The inner children of an encoded page (a value the backend's put was
 * given): their hashes in out, their count in *n. CHAIN_EIO if buf is not
 * a page's layout. */
#define CHAIN__SMT_PAGE_SLOTS 16u
int chain__smt_page_children(const uint8_t *buf, size_t len, chain_hash out[CHAIN__SMT_PAGE_SLOTS],
                             unsigned *n);

/* A proof of presence (value) or absence of one key. */
#define CHAIN_SMT_DEPTH 256
typedef struct {
    uint32_t n_siblings;                 /* from the leaf level up */
    chain_hash siblings[CHAIN_SMT_DEPTH];
    /* For absence: the leaf found in the key's place, if any (another key
     * sharing the prefix), else has_other = 0 and the path ends empty. */
    int has_other;
    chain_hash other_key;
    chain_hash other_val;
} chain__smt_proof;

int chain__smt_prove(const chain__smt_backend *be, chain__smt_proof *out, const chain_hash *root,
                     const chain_hash *key);
/* val == NULL proves absence. Returns 0 or CHAIN_EPROOF. Pure: no backend. */
int chain__smt_verify(const chain_hash *root, const chain_hash *key, const chain_hash *val,
                      const chain__smt_proof *proof);
/* Proof codec (for the API and the client library); bounded decode. */
/* Largest encoding: header 3, bitmap 32, 256 siblings, other leaf 64. */
#define CHAIN_SMT_PROOF_BYTES_MAX (3 + CHAIN_SMT_DEPTH / 8 + CHAIN_SMT_DEPTH * CHAIN_HASH_LEN + \
                                   2 * CHAIN_HASH_LEN)
int chain__smt_proof_encode(uint8_t *buf, size_t cap, size_t *len_out, const chain__smt_proof *p);
int chain__smt_proof_decode(chain__smt_proof *out, const uint8_t *buf, size_t len);

#endif
