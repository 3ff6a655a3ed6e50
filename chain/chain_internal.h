/* chain_internal.h — helpers shared inside chain/, not part of the public API.
 *
 * Names carry the double prefix chain__. Keep additions small; each helper
 * says which file defines it.
 */
#ifndef CONSENT_CHAIN_INTERNAL_H
#define CONSENT_CHAIN_INTERNAL_H

#include "chain/chain.h"

/* codes.c: 1 if s is a chain id: [a-z0-9-], 1..CHAIN_ID_LEN_MAX chars. */
int chain__id_valid(const char *s);
/* codes.c: 1 if s is an institution name: printable ASCII (0x20..0x7e),
 * 1..CHAIN_NAME_LEN_MAX chars. */
int chain__name_valid(const char *s);
/* codes.c: role name <-> bit ("validator", "gateway", "grantee"); 0 / NULL
 * if unknown. */
uint32_t chain__role_from_name(const char *name);
const char *chain__role_name(uint32_t role_bit);

/* Domain-separation tags: every signed or hashed message starts with one, so
 * a signature over one kind of message can never pass as another. */
#define CHAIN__TAG_TX "consent/tx/v1"
#define CHAIN__TAG_COMMIT "consent/commit/v1"
#define CHAIN__TAG_INSTITUTION "consent/institution/v1"
#define CHAIN__TAG_VALSET "consent/valset/v1"

/* crypto.c: SHA-256 of tag || data (the tag without its NUL). */
void chain__sha256_tagged(chain_hash *out, const char *tag, const void *data, size_t len);

/* Big-endian fixed-width integer writers for hashed messages. */
static inline void chain__put_u64be(uint8_t *p, uint64_t v)
{
    for (int i = 7; i >= 0; i--) { p[i] = (uint8_t)(v & 0xff); v >>= 8; }
}
static inline void chain__put_u32be(uint8_t *p, uint32_t v)
{
    for (int i = 3; i >= 0; i--) { p[i] = (uint8_t)(v & 0xff); v >>= 8; }
}

/* ------------------------------------------------------------------ state
 * Keys, records and the overlay map (state.c), the store's internals
 * (store.c). See state.c for the key layout. */
#include "chain/smt.h"

struct Consent__GrantRecord;

#define CHAIN__PFX_PAIR 'P'
#define CHAIN__PFX_GRANT 'G'
#define CHAIN__PFX_NONCE 'N'
#define CHAIN__PFX_GUARDIAN 'U'
#define CHAIN__PFX_INST 'I'
#define CHAIN__PFX_ACCESS 'A'
/* Tree pages (smt.c). Binary nodes, as stores before pages held them, were
 * under 'T'; a new letter makes such a store fail loudly (CHAIN_EIO on the
 * first read) instead of being misread. */
#define CHAIN__PFX_NODE 'Q'
#define CHAIN__KEY_MAX (1 + 3 * CHAIN_HASH_LEN)   /* "A" patient grant txid */

/* state.c: key builders; out holds CHAIN__KEY_MAX bytes; return the length. */
size_t chain__key_pair(uint8_t *out, const chain_pubkey *patient, const chain_pubkey *grantee);
size_t chain__key_grant(uint8_t *out, const chain_hash *id);
size_t chain__key_nonce(uint8_t *out, const chain_pubkey *signer);
size_t chain__key_guardian(uint8_t *out, const chain_pubkey *patient);
size_t chain__key_inst(uint8_t *out, const chain_pubkey *key);
size_t chain__key_access(uint8_t *out, const chain_pubkey *patient, const chain_hash *grant_id,
                         const chain_hash *txid);
size_t chain__key_node(uint8_t *out, const chain_hash *h);
/* state.c: the state-tree leaf of a state key. Returns 1 and the leaf key
 * for authenticated keys (P, N, U, I), 0 for the rest. The leaf value of a
 * stored value is SHA-256 of its bytes (chain__state_leaf_val). */
int chain__state_leaf_key(chain_hash *out, const uint8_t *key, size_t klen);
void chain__state_leaf_val(chain_hash *out, const uint8_t *val, size_t len);

/* state.c: record codecs. grants_decode returns a malloc'd array with room
 * for one more record; stored bytes that break a bound give CHAIN_EIO. */
int chain__grant_from_pb(chain_grant_record *r, const struct Consent__GrantRecord *m);
int chain__grants_decode(chain_grant_record **out, uint32_t *n_out, const uint8_t *buf, size_t len);
int chain__grants_encode(uint8_t **out, size_t *len_out, const chain_grant_record *recs, uint32_t n);
int chain__inst_encode(uint8_t **out, size_t *len_out, const chain_institution *in);
int chain__inst_decode(chain_institution *out, const uint8_t *buf, size_t len);
/* state.c: decodes an AccessSummary; stored bytes that break a bound give
 * CHAIN_EIO. */
int chain__access_decode(chain_access_summary *out, const uint8_t *buf, size_t len);
int chain__access_encode(uint8_t **out, size_t *len_out, const chain_hash *txid,
                         const chain_pubkey *gateway, const chain_access_record *a,
                         uint64_t height, uint64_t time_ms);

/* state.c: a bounded hash map of byte keys to byte values; a NULL value
 * marks a deletion. Keys and values are copied in. */
typedef struct chain__map chain__map;
typedef struct {
    const uint8_t *key;
    size_t klen;
    const uint8_t *val;   /* NULL: deleted */
    size_t vlen;
} chain__map_entry;
chain__map *chain__map_create(size_t max_entries);
void chain__map_destroy(chain__map *m);
void chain__map_clear(chain__map *m);
size_t chain__map_count(const chain__map *m);
/* CHAIN_ENOMEM when full (the map is unchanged) or out of memory. */
int chain__map_put(chain__map *m, const uint8_t *key, size_t klen, const uint8_t *val, size_t vlen);
/* 1 and *out (valid until the next change) if present, else 0. */
int chain__map_get(const chain__map *m, chain__map_entry *out, const uint8_t *key, size_t klen);
/* Iteration: *iter starts at 0; returns 0 at the end. */
int chain__map_next(const chain__map *m, size_t *iter, chain__map_entry *out);
/* Moves every entry of src into dst, replacing equal keys; src ends empty. */
int chain__map_merge(chain__map *dst, chain__map *src);

/* check.c: the decision for an encoded pair list (len 0: no grants), as
 * chain_check makes it; CHAIN_EIO (and deny) if the list does not decode. */
int chain__check_list(chain_check_result *out, const uint8_t *list, size_t len, const char *scope,
                      const char *purpose, uint64_t at_s);
/* check.c: the registry rule on top of a decision: deny unless inst (the
 * grantee's encoded registry record, len 0: none) registers grantee with
 * the grantee role. CHAIN_EIO (and deny) if the record does not decode or
 * names another key. */
int chain__check_grantee(chain_check_result *out, const chain_pubkey *grantee, const uint8_t *inst,
                         size_t len);

/* store.c: a committed state value (malloc'd), CHAIN_ENOTFOUND or CHAIN_EIO. */
int chain__store_get(chain_store *st, uint8_t **val, size_t *len, const uint8_t *key, size_t klen);
/* store.c: copies a committed state value into buf when it fits; else
 * CHAIN_EBOUNDS with *len = its size. No allocation of ours on this path. */
int chain__store_read(chain_store *st, uint8_t *buf, size_t cap, size_t *len, const uint8_t *key,
                      size_t klen);
/* store.c: a committed tree page by hash (malloc'd, still encoded);
 * CHAIN_ENOTFOUND or CHAIN_EIO as chain__store_get. */
int chain__store_node_get(chain_store *st, const chain_hash *h, uint8_t **val, size_t *len);
/* store.c: a state-tree backend over the committed nodes (read-only; put
 * fails). For proofs against chain_store_state_root. */
void chain__store_smt_backend(chain_store *st, chain__smt_backend *out);
/* The store's cache of decoded tree pages (for backends over the store). */
chain__smt_cache *chain__store_smt_cache(chain_store *st);
uint64_t chain__store_tip_time_ms(const chain_store *st);
/* store.c: writes blocks[0..n) (consecutive, the first at the tip + 1;
 * last_hash is the last one's hash, its state root the new one) with every
 * change in `state` in one WriteBatch, synced unless sync is 0 (block
 * sync: see the comment in store.c), then moves the tip. The tree pages
 * in `nodes` move to the store (nodes ends empty, unless memory runs out),
 * which writes them in a later batch (see "Tree pages" in store.c). */
int chain__store_commit(chain_store *st, const chain_block *const *blocks, size_t n,
                        const chain_hash *last_hash, const chain__map *state, chain__map *nodes,
                        int sync);
/* store.c, for tests: when held tree pages are written (default 32 MiB or
 * 256 commits; commits 1..256), and how many are held. */
void chain__store_set_tree_flush(chain_store *st, size_t bytes, unsigned commits);
size_t chain__store_pending_pages(chain_store *st);

/* The tip a block builds on. */
typedef struct {
    uint64_t height;
    uint64_t time_ms;
    chain_hash hash;
    chain_hash state_root;
} chain__tip;
/* store.c: the committed tip. */
void chain__store_tip(const chain_store *st, chain__tip *out);

/* What the blocks of a run executed so far leave for the next one (run.c):
 * their merged state changes (NULL value: deleted) and the tip they lead
 * to (its state root unchecked until the run is written). */
typedef struct {
    chain__tip tip;
    const chain__map *state;
} chain__base;
/* exec.c: chain_exec_block on top of base (NULL: the store alone). With a
 * base, the state root is neither computed nor checked: the run checks the
 * last one. Such an exec cannot be committed; chain__exec_take moves its
 * state changes out. */
int chain__exec_block_on(chain_exec **out, chain_store *st, const chain__base *base,
                         const chain_block *b, const uint8_t *sig_checked);
/* exec.c: moves the state changes of a sealed exec made on a base into
 * state (replacing equal keys). On error state may hold part of them. */
int chain__exec_take(chain_exec *ex, chain__map *state);
/* exec.c: applies the authenticated keys among changes (a map of state
 * keys, NULL value: deleted) to the committed tree at prev_root: *root is
 * the new root, its new pages go into nodes. */
int chain__state_update(chain_store *st, const chain__map *changes, const chain_hash *prev_root,
                        chain__map *nodes, chain_hash *root);

/* run.c: a run of synced blocks executed one on top of the other in memory
 * and written in one batch (see run.c for why). Blocks passed to
 * chain__run_apply must stay unchanged until the run is written or
 * destroyed. */
typedef struct chain__run chain__run;
chain__run *chain__run_create(void);
void chain__run_destroy(chain__run *r);   /* drops unwritten blocks */
/* Executes b (certificate already verified) on top of the store and the
 * run's unwritten blocks, checking its header but the state root;
 * CHAIN_ESTATE if the store moved under them. */
int chain__run_apply(chain__run *r, chain_store *st, const chain_block *b, const uint8_t *sig_checked);
/* Unwritten blocks; *txs (if not NULL) their txs. */
size_t chain__run_unwritten(const chain__run *r, size_t *txs);
/* Checks the last unwritten block's state root against the tree updated
 * with the run's changes (CHAIN_EBLOCK if it differs: nothing is written
 * and the run takes nothing more), then writes the blocks unsynced, as
 * chain__store_commit. */
int chain__run_write(chain__run *r, chain_store *st);

#endif
