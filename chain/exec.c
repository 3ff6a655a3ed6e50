/* exec.c — executing transactions and blocks against the store.
 *
 * A chain_exec is one block in progress: an overlay of state changes (a
 * chain__map of state keys, see state.c) on top of the committed store.
 * Reads look in the current tx's scratch map, then the block overlay, then
 * RocksDB. A tx writes only into its scratch; on success the scratch is
 * merged into the overlay and the tx joins the block, on failure the scratch
 * is dropped, so a failed tx changes nothing.
 *
 * Sealing (chain_exec_finish, or chain_exec_block) turns the overlay's
 * authenticated keys into state-tree leaf changes and applies them in one
 * chain__smt_update; the new tree pages collect in a map that the commit
 * hands to the store, which writes them at its next flush (store.c). A
 * stale exec (another block committed since begin) does not seal: pages of
 * a superseded root may never be written. Once sealed, an exec takes no
 * more txs. A block executed inside a run of synced blocks (on a base,
 * run.c) leaves its state root to the run, which computes it once.
 *
 * Rules (per tx type) are those of README "Data model"; error codes:
 * CHAIN_EPERM the signer may not do this, CHAIN_ENOTFOUND a named grant,
 * institution or guardian is missing, CHAIN_ESTATE the state forbids it
 * (revoked grant, full pair list), CHAIN_ETIME a time window, CHAIN_ENONCE a
 * replay. A grant's validity is the half-open interval [not_before,
 * not_after) in unix seconds; block time is time_ms / 1000.
 */
#include <assert.h>
#include <stdlib.h>
#include <string.h>

#include "chain/chain.h"
#include "chain/chain_internal.h"

/* Bounds: a tx touches at most 4 state keys (nonce, pair, grant index and
 * one more) plus one index entry per pruned grant. */
#define SCRATCH_MAX (8 + CHAIN_GRANTS_PER_PAIR_MAX)
#define OVERLAY_MAX ((size_t)CHAIN_BLOCK_TXS_MAX * SCRATCH_MAX)
#define NODES_MAX ((size_t)1 << 22)

struct chain_exec {
    chain_store *st;
    const chain__base *base;   /* NULL: the block builds on the store alone;
                                  else it is part of a run (no state root) */
    const chain_genesis *g;
    uint64_t height;
    uint64_t time_ms;
    uint64_t time_s;
    chain_hash prev_hash;
    chain_hash prev_root;
    chain__map *overlay;
    chain__map *scratch;
    chain__map *nodes;
    chain_block blk;       /* applied txs, in order (only the tx list is used) */
    chain_tx *tx;          /* the tx being applied: one buffer (6 KB) for all */
    int sealed;
    int committed;
    int broken;            /* out of memory mid-merge: the overlay is unusable */
    chain_header hdr;      /* valid once sealed */
};

static int key_eq(const chain_pubkey *a, const chain_pubkey *b)
{
    return memcmp(a->b, b->b, CHAIN_KEY_LEN) == 0;
}

/* ------------------------------------------------------------------ overlay reads */

/* A state value as this tx sees it: malloc'd copy, or CHAIN_ENOTFOUND. */
static int ex_get(chain_exec *ex, uint8_t **val, size_t *len, const uint8_t *key, size_t klen)
{
    chain__map_entry e;
    if (chain__map_get(ex->scratch, &e, key, klen) || chain__map_get(ex->overlay, &e, key, klen) ||
        (ex->base != NULL && chain__map_get(ex->base->state, &e, key, klen))) {
        if (e.val == NULL) return CHAIN_ENOTFOUND;
        uint8_t *copy = malloc(e.vlen ? e.vlen : 1);
        if (copy == NULL) return CHAIN_ENOMEM;
        memcpy(copy, e.val, e.vlen);
        *val = copy;
        *len = e.vlen;
        return CHAIN_OK;
    }
    return chain__store_get(ex->st, val, len, key, klen);
}

/* Reads a fixed-size value; a stored value of another size is corruption. */
static int ex_get_fixed(chain_exec *ex, uint8_t *out, size_t want, const uint8_t *key, size_t klen)
{
    uint8_t *v = NULL;
    size_t n = 0;
    int rc = ex_get(ex, &v, &n, key, klen);
    if (rc != CHAIN_OK) return rc;
    if (n == want) memcpy(out, v, want);
    else rc = CHAIN_EIO;
    free(v);
    return rc;
}

static int ex_nonce(chain_exec *ex, uint64_t *out, const chain_pubkey *signer)
{
    uint8_t k[CHAIN__KEY_MAX], v[8];
    int rc = ex_get_fixed(ex, v, sizeof v, k, chain__key_nonce(k, signer));
    *out = 0;
    if (rc == CHAIN_ENOTFOUND) return CHAIN_OK;
    if (rc != CHAIN_OK) return rc;
    for (int i = 0; i < 8; i++) *out = (*out << 8) | v[i];
    return CHAIN_OK;
}

static int ex_guardian(chain_exec *ex, chain_pubkey *out, const chain_pubkey *patient)
{
    uint8_t k[CHAIN__KEY_MAX];
    return ex_get_fixed(ex, out->b, CHAIN_KEY_LEN, k, chain__key_guardian(k, patient));
}

static int ex_inst(chain_exec *ex, chain_institution *out, const chain_pubkey *key)
{
    uint8_t k[CHAIN__KEY_MAX], *v = NULL;
    size_t n = 0;
    int rc = ex_get(ex, &v, &n, k, chain__key_inst(k, key));
    if (rc != CHAIN_OK) return rc;
    rc = chain__inst_decode(out, v, n);
    free(v);
    return rc;
}

/* The pair list: a malloc'd array with room for one more record (an empty
 * list when the pair has none). */
static int ex_pair(chain_exec *ex, chain_grant_record **recs, uint32_t *n,
                   const chain_pubkey *patient, const chain_pubkey *grantee)
{
    uint8_t k[CHAIN__KEY_MAX], *v = NULL;
    size_t vl = 0;
    int rc = ex_get(ex, &v, &vl, k, chain__key_pair(k, patient, grantee));
    if (rc == CHAIN_ENOTFOUND) {
        *recs = malloc(sizeof **recs);
        *n = 0;
        return *recs == NULL ? CHAIN_ENOMEM : CHAIN_OK;
    }
    if (rc != CHAIN_OK) return rc;
    rc = chain__grants_decode(recs, n, v, vl);
    free(v);
    return rc;
}

/* Where grant `id` lives; CHAIN_ENOTFOUND if no such grant. */
static int ex_grant_loc(chain_exec *ex, chain_pubkey *patient, chain_pubkey *grantee,
                        const chain_hash *id)
{
    uint8_t k[CHAIN__KEY_MAX], v[2 * CHAIN_KEY_LEN];
    int rc = ex_get_fixed(ex, v, sizeof v, k, chain__key_grant(k, id));
    if (rc != CHAIN_OK) return rc;
    memcpy(patient->b, v, CHAIN_KEY_LEN);
    memcpy(grantee->b, v + CHAIN_KEY_LEN, CHAIN_KEY_LEN);
    return CHAIN_OK;
}

static int ex_put_pair(chain_exec *ex, const chain_pubkey *patient, const chain_pubkey *grantee,
                       const chain_grant_record *recs, uint32_t n)
{
    uint8_t k[CHAIN__KEY_MAX], *v = NULL;
    size_t vl = 0;
    assert(n >= 1 && n <= CHAIN_GRANTS_PER_PAIR_MAX);
    int rc = chain__grants_encode(&v, &vl, recs, n);
    if (rc != CHAIN_OK) return rc;
    rc = chain__map_put(ex->scratch, k, chain__key_pair(k, patient, grantee), v, vl);
    free(v);
    return rc;
}

/* The signer acts for the patient: it is the patient or their guardian. */
static int acts_for(chain_exec *ex, const chain_pubkey *signer, const chain_pubkey *patient)
{
    chain_pubkey guardian;
    if (key_eq(signer, patient)) return CHAIN_OK;
    int rc = ex_guardian(ex, &guardian, patient);
    if (rc == CHAIN_ENOTFOUND) return CHAIN_EPERM;
    if (rc != CHAIN_OK) return rc;
    return key_eq(&guardian, signer) ? CHAIN_OK : CHAIN_EPERM;
}

/* ------------------------------------------------------------------ grant / revoke */

static int is_live(const chain_grant_record *r, uint64_t t_s)
{
    return r->status == CHAIN_GRANT_ACTIVE && t_s < r->grant.not_after;
}

/* Drops revoked and expired records (and their grant index entries) from a
 * full pair list; returns the new count or a negative error. */
static int prune(chain_exec *ex, chain_grant_record *recs, uint32_t n)
{
    uint32_t kept = 0;
    for (uint32_t i = 0; i < n; i++) {
        if (is_live(&recs[i], ex->time_s)) {
            recs[kept++] = recs[i];
            continue;
        }
        uint8_t k[CHAIN__KEY_MAX];
        int rc = chain__map_put(ex->scratch, k, chain__key_grant(k, &recs[i].id), NULL, 0);
        if (rc != CHAIN_OK) return rc;
    }
    assert(kept <= n);
    return (int)kept;
}

static int apply_grant(chain_exec *ex, const chain_tx *t, const chain_hash *txid)
{
    const chain_grant *g = &t->body.grant;
    chain_institution inst;
    int rc = acts_for(ex, &t->signer, &g->patient);
    if (rc != CHAIN_OK) return rc;
    rc = ex_inst(ex, &inst, &g->grantee);
    if (rc != CHAIN_OK) return rc;
    if (!(inst.roles & CHAIN_ROLE_GRANTEE)) return CHAIN_EPERM;
    if (g->not_after <= ex->time_s) return CHAIN_ETIME;
    chain_pubkey p, q;
    rc = ex_grant_loc(ex, &p, &q, txid);
    if (rc == CHAIN_OK) return CHAIN_EEXISTS;
    if (rc != CHAIN_ENOTFOUND) return rc;
    chain_grant_record *recs = NULL;
    uint32_t n = 0;
    if ((rc = ex_pair(ex, &recs, &n, &g->patient, &g->grantee)) != CHAIN_OK) return rc;
    if (n >= CHAIN_GRANTS_PER_PAIR_MAX) {
        rc = prune(ex, recs, n);
        if (rc >= 0) n = (uint32_t)rc;
        rc = rc < 0 ? rc : n >= CHAIN_GRANTS_PER_PAIR_MAX ? CHAIN_ESTATE : CHAIN_OK;
    }
    if (rc == CHAIN_OK) {
        chain_grant_record *r = &recs[n++];   /* decode left a spare slot */
        memset(r, 0, sizeof *r);
        r->id = *txid;
        r->grant = *g;
        r->status = CHAIN_GRANT_ACTIVE;
        r->granted_height = ex->height;
        r->granted_by = t->signer;
        rc = ex_put_pair(ex, &g->patient, &g->grantee, recs, n);
    }
    if (rc == CHAIN_OK) {
        uint8_t k[CHAIN__KEY_MAX], v[2 * CHAIN_KEY_LEN];
        memcpy(v, g->patient.b, CHAIN_KEY_LEN);
        memcpy(v + CHAIN_KEY_LEN, g->grantee.b, CHAIN_KEY_LEN);
        rc = chain__map_put(ex->scratch, k, chain__key_grant(k, txid), v, sizeof v);
    }
    free(recs);
    return rc;
}

/* Loads the pair list holding grant `id`; *idx gets its position. */
static int load_grant(chain_exec *ex, chain_grant_record **recs, uint32_t *n, uint32_t *idx,
                      const chain_hash *id)
{
    chain_pubkey patient, grantee;
    int rc = ex_grant_loc(ex, &patient, &grantee, id);
    if (rc != CHAIN_OK) return rc;
    if ((rc = ex_pair(ex, recs, n, &patient, &grantee)) != CHAIN_OK) return rc;
    for (uint32_t i = 0; i < *n; i++) {
        if (memcmp((*recs)[i].id.b, id->b, CHAIN_HASH_LEN) == 0) {
            *idx = i;
            return CHAIN_OK;
        }
    }
    free(*recs);
    *recs = NULL;
    return CHAIN_EIO;   /* an index entry without its record */
}

static int apply_revoke(chain_exec *ex, const chain_tx *t)
{
    chain_grant_record *recs = NULL;
    uint32_t n = 0, i = 0;
    int rc = load_grant(ex, &recs, &n, &i, &t->body.revoke.grant_id);
    if (rc != CHAIN_OK) return rc;
    chain_grant_record *r = &recs[i];
    /* Permission before status: a stranger learns nothing about the grant. */
    rc = acts_for(ex, &t->signer, &r->grant.patient);
    if (rc == CHAIN_OK && r->status != CHAIN_GRANT_ACTIVE) rc = CHAIN_ESTATE;
    if (rc == CHAIN_OK) {
        r->status = CHAIN_GRANT_REVOKED;
        r->revoked_height = ex->height;
        rc = ex_put_pair(ex, &r->grant.patient, &r->grant.grantee, recs, n);
    }
    free(recs);
    return rc;
}

/* ------------------------------------------------------------------ guardian / access */

static int apply_set_guardian(chain_exec *ex, const chain_tx *t)
{
    const chain_set_guardian *s = &t->body.set_guardian;
    uint8_t k[CHAIN__KEY_MAX];
    size_t kl = chain__key_guardian(k, &t->signer);
    if (key_eq(&s->guardian, &t->signer)) return CHAIN_EPERM;
    if (!s->remove) return chain__map_put(ex->scratch, k, kl, s->guardian.b, CHAIN_KEY_LEN);
    chain_pubkey cur;
    int rc = ex_guardian(ex, &cur, &t->signer);
    if (rc != CHAIN_OK) return rc;
    if (!key_eq(&cur, &s->guardian)) return CHAIN_ESTATE;
    return chain__map_put(ex->scratch, k, kl, NULL, 0);
}

static int has_code(const chain_code *codes, uint32_t n, const char *c)
{
    for (uint32_t i = 0; i < n; i++) {
        if (strcmp(codes[i].s, c) == 0) return 1;
    }
    return 0;
}

static int apply_access(chain_exec *ex, const chain_tx *t, const chain_hash *txid)
{
    const chain_access_record *a = &t->body.access_record;
    chain_institution inst;
    int rc = ex_inst(ex, &inst, &t->signer);
    if (rc == CHAIN_ENOTFOUND || (rc == CHAIN_OK && !(inst.roles & CHAIN_ROLE_GATEWAY))) return CHAIN_EPERM;
    if (rc != CHAIN_OK) return rc;
    chain_grant_record *recs = NULL;
    uint32_t n = 0, i = 0;
    if ((rc = load_grant(ex, &recs, &n, &i, &a->grant_id)) != CHAIN_OK) return rc;
    const chain_grant_record *r = &recs[i];
    if (r->status != CHAIN_GRANT_ACTIVE) rc = CHAIN_ESTATE;
    else if (ex->time_s < r->grant.not_before || ex->time_s >= r->grant.not_after) rc = CHAIN_ETIME;
    else if (!has_code(r->grant.scopes, r->grant.n_scopes, a->scope.s)) rc = CHAIN_EPERM;
    else if (!has_code(r->grant.purposes, r->grant.n_purposes, a->purpose.s)) rc = CHAIN_EPERM;
    if (rc == CHAIN_OK) {
        uint8_t k[CHAIN__KEY_MAX], *v = NULL;
        size_t kl = chain__key_access(k, &r->grant.patient, &a->grant_id, txid), vl = 0;
        rc = chain__access_encode(&v, &vl, txid, &t->signer, a, ex->height, ex->time_ms);
        if (rc == CHAIN_OK) rc = chain__map_put(ex->scratch, k, kl, v, vl);
        free(v);
    }
    free(recs);
    return rc;
}

/* ------------------------------------------------------------------ governance */

/* The signer is a genesis validator and >= quorum distinct genesis
 * validators endorsed exactly this body. An endorsement by anyone else, or a
 * bad signature, refuses the tx outright rather than being skipped: nothing
 * unverifiable goes on chain. */
static int endorsed(chain_exec *ex, const chain_tx *t)
{
    const chain_institution_tx *b = &t->body.institution;
    chain_hash msg;
    if (chain_genesis_validator_index(ex->g, &t->signer) < 0) return CHAIN_EPERM;
    int rc = chain_institution_sighash(&msg, ex->g->chain_id, t->type, b);
    if (rc != CHAIN_OK) return rc;
    uint64_t seen = 0;
    uint32_t count = 0;
    assert(ex->g->n_validators <= 64);
    for (uint32_t i = 0; i < b->n_endorsements; i++) {
        int idx = chain_genesis_validator_index(ex->g, &b->endorsements[i].signer);
        if (idx < 0) return CHAIN_EPERM;
        if (chain_verify_cached(&b->endorsements[i].signer, &b->endorsements[i].sig, &msg) != CHAIN_OK)
            return CHAIN_ESIG;
        if (seen & (1ull << idx)) continue;
        seen |= 1ull << idx;
        count++;
    }
    return count >= chain_genesis_quorum(ex->g) ? CHAIN_OK : CHAIN_EPERM;
}

static int apply_register(chain_exec *ex, const chain_tx *t)
{
    const chain_institution_tx *b = &t->body.institution;
    chain_institution inst;
    int rc = endorsed(ex, t);
    if (rc != CHAIN_OK) return rc;
    rc = ex_inst(ex, &inst, &b->key);
    if (rc == CHAIN_OK) return CHAIN_EEXISTS;
    if (rc != CHAIN_ENOTFOUND) return rc;
    memset(&inst, 0, sizeof inst);
    inst.key = b->key;
    memcpy(inst.name, b->name, sizeof inst.name);
    inst.roles = b->roles;
    uint8_t k[CHAIN__KEY_MAX], *v = NULL;
    size_t vl = 0;
    rc = chain__inst_encode(&v, &vl, &inst);
    if (rc == CHAIN_OK) rc = chain__map_put(ex->scratch, k, chain__key_inst(k, &b->key), v, vl);
    free(v);
    return rc;
}

static int apply_remove(chain_exec *ex, const chain_tx *t)
{
    const chain_institution_tx *b = &t->body.institution;
    chain_institution inst;
    int rc = endorsed(ex, t);
    if (rc != CHAIN_OK) return rc;
    /* The validator set is fixed by genesis: certificates are checked
     * against it, so a validator cannot be removed by a transaction. */
    if (chain_genesis_validator_index(ex->g, &b->key) >= 0) return CHAIN_EPERM;
    rc = ex_inst(ex, &inst, &b->key);
    if (rc != CHAIN_OK) return rc;
    uint8_t k[CHAIN__KEY_MAX];
    return chain__map_put(ex->scratch, k, chain__key_inst(k, &b->key), NULL, 0);
}

/* ------------------------------------------------------------------ one tx */

/* Checks that need no state: chain id, created_at near block time, grant
 * window, and the signature unless the caller verified it already. */
static int tx_stateless(const chain_exec *ex, const chain_tx *t, int sig_checked)
{
    if (strncmp(t->chain_id, ex->g->chain_id, sizeof t->chain_id) != 0) return CHAIN_ECHAINID;
    uint64_t skew = t->created_at > ex->time_s ? t->created_at - ex->time_s : ex->time_s - t->created_at;
    if (skew > CHAIN_TX_CLOCK_SKEW_S) return CHAIN_ETIME;
    if (t->type == CHAIN_TX_GRANT) {
        const chain_grant *g = &t->body.grant;
        if (g->not_before >= g->not_after) return CHAIN_ETIME;
        if (g->not_after - g->not_before > CHAIN_GRANT_DURATION_MAX_S) return CHAIN_ETIME;
    }
    if (sig_checked) return CHAIN_OK;
    chain_hash h;
    int rc = chain_tx_sighash(&h, t);
    if (rc != CHAIN_OK) return rc;
    return chain_verify(&t->signer, &t->sig, &h);
}

static int apply_body(chain_exec *ex, const chain_tx *t, const chain_hash *txid)
{
    switch (t->type) {
    case CHAIN_TX_GRANT: return apply_grant(ex, t, txid);
    case CHAIN_TX_REVOKE: return apply_revoke(ex, t);
    case CHAIN_TX_SET_GUARDIAN: return apply_set_guardian(ex, t);
    case CHAIN_TX_ACCESS_RECORD: return apply_access(ex, t, txid);
    case CHAIN_TX_REGISTER_INSTITUTION: return apply_register(ex, t);
    case CHAIN_TX_REMOVE_INSTITUTION: return apply_remove(ex, t);
    }
    return CHAIN_EDECODE;
}

/* Validates and applies tx into the scratch map (and the nonce). */
static int tx_apply(chain_exec *ex, const chain_tx *t, const chain_hash *txid, int sig_checked)
{
    int rc = tx_stateless(ex, t, sig_checked);
    if (rc != CHAIN_OK) return rc;
    uint64_t last = 0;
    if ((rc = ex_nonce(ex, &last, &t->signer)) != CHAIN_OK) return rc;
    if (t->nonce <= last) return CHAIN_ENONCE;
    if ((rc = apply_body(ex, t, txid)) != CHAIN_OK) return rc;
    uint8_t k[CHAIN__KEY_MAX], v[8];
    chain__put_u64be(v, t->nonce);
    return chain__map_put(ex->scratch, k, chain__key_nonce(k, &t->signer), v, sizeof v);
}

int chain_exec_tx(chain_exec *ex, const uint8_t *tx, size_t len, int sig_checked)
{
    if (ex == NULL || tx == NULL) return CHAIN_EINVAL;
    if (ex->broken) return CHAIN_ENOMEM;
    if (ex->sealed) return CHAIN_ESTATE;
    if (len == 0 || len > CHAIN_TX_BYTES_MAX || ex->blk.n_txs >= CHAIN_BLOCK_TXS_MAX)
        return CHAIN_EBOUNDS;
    assert(chain__map_count(ex->scratch) == 0);
    chain_hash txid;
    int rc = chain_tx_decode(ex->tx, tx, len);
    if (rc == CHAIN_OK) {
        chain_tx_hash(&txid, tx, len);
        rc = tx_apply(ex, ex->tx, &txid, sig_checked);
    }
    if (rc == CHAIN_OK) rc = chain_block_add_tx(&ex->blk, tx, len);
    if (rc != CHAIN_OK) {
        chain__map_clear(ex->scratch);
        return rc;
    }
    rc = chain__map_merge(ex->overlay, ex->scratch);
    if (rc != CHAIN_OK) {
        /* The tx is in the block but maybe not all its changes: poison the
         * exec; the caller must abort it. */
        ex->broken = 1;
        chain__map_clear(ex->scratch);
    }
    return rc;
}

/* ------------------------------------------------------------------ lifecycle */

/* The tip a block builds on: base's, or the store's. */
static void tip_of(chain_store *st, const chain__base *base, chain__tip *out)
{
    if (base != NULL) *out = base->tip;
    else chain__store_tip(st, out);
}

static int exec_begin(chain_exec **out, chain_store *st, const chain__base *base, uint64_t time_ms)
{
    chain__tip tip;
    tip_of(st, base, &tip);
    if (time_ms < tip.time_ms) return CHAIN_ETIME;
    chain_exec *ex = calloc(1, sizeof *ex);
    if (ex == NULL) return CHAIN_ENOMEM;
    ex->st = st;
    ex->base = base;
    ex->g = chain_store_genesis(st);
    ex->height = tip.height + 1;
    ex->time_ms = time_ms;
    ex->time_s = time_ms / 1000;
    ex->prev_hash = tip.hash;
    ex->prev_root = tip.state_root;
    chain_block_init(&ex->blk);
    ex->overlay = chain__map_create(OVERLAY_MAX);
    ex->scratch = chain__map_create(SCRATCH_MAX);
    ex->nodes = base ? NULL : chain__map_create(NODES_MAX);   /* a run's tree is the run's */
    ex->tx = malloc(sizeof *ex->tx);
    int no_nodes = base == NULL && ex->nodes == NULL;
    if (ex->overlay == NULL || ex->scratch == NULL || no_nodes || ex->tx == NULL) {
        chain_exec_abort(ex);
        return CHAIN_ENOMEM;
    }
    *out = ex;
    return CHAIN_OK;
}

int chain_exec_begin(chain_exec **out, chain_store *st, uint64_t time_ms)
{
    if (out == NULL || st == NULL) return CHAIN_EINVAL;
    return exec_begin(out, st, NULL, time_ms);
}

void chain_exec_abort(chain_exec *ex)
{
    if (ex == NULL) return;
    chain__map_destroy(ex->overlay);
    chain__map_destroy(ex->scratch);
    chain__map_destroy(ex->nodes);
    chain_block_free(&ex->blk);
    free(ex->tx);
    free(ex);
}

/* State-tree backend of an update: reads committed pages (an update reads
 * only pages under its input root, never one it wrote), puts new ones in a
 * map. */
typedef struct {
    chain_store *st;
    chain__map *nodes;
} tree_io;

static int nodes_get(void *arg, const chain_hash *key, uint8_t **val, size_t *val_len)
{
    return chain__store_node_get(((tree_io *)arg)->st, key, val, val_len);
}

static int nodes_put(void *arg, const chain_hash *key, const uint8_t *val, size_t val_len)
{
    return chain__map_put(((tree_io *)arg)->nodes, key->b, CHAIN_HASH_LEN, val, val_len);
}

int chain__state_update(chain_store *st, const chain__map *changes, const chain_hash *prev_root,
                        chain__map *nodes, chain_hash *root)
{
    size_t n = chain__map_count(changes), m = 0, it = 0;
    chain_hash *keys = malloc((n ? n : 1) * sizeof *keys);
    chain_hash *vals = malloc((n ? n : 1) * sizeof *vals);
    const chain_hash **vp = malloc((n ? n : 1) * sizeof *vp);
    int rc = keys == NULL || vals == NULL || vp == NULL ? CHAIN_ENOMEM : CHAIN_OK;
    chain__map_entry e;
    while (rc == CHAIN_OK && chain__map_next(changes, &it, &e)) {
        if (!chain__state_leaf_key(&keys[m], e.key, e.klen)) continue;
        vp[m] = NULL;
        if (e.val != NULL) {
            chain__state_leaf_val(&vals[m], e.val, e.vlen);
            vp[m] = &vals[m];
        }
        m++;
    }
    assert(m <= n);
    tree_io io = {st, nodes};
    chain__smt_backend be = {&io, nodes_get, nodes_put, chain__store_smt_cache(st)};
    if (rc == CHAIN_OK) rc = chain__smt_update(&be, root, prev_root, m, keys, vp);
    free(keys);
    free(vals);
    free(vp);
    return rc;
}

static int hash_eq(const chain_hash *a, const chain_hash *b)
{
    return memcmp(a->b, b->b, CHAIN_HASH_LEN) == 0;
}

/* Another block was committed since begin: the exec is stale. */
static int store_moved(chain_exec *ex)
{
    chain_hash tip;
    chain_store_tip_hash(ex->st, &tip);
    return chain_store_height(ex->st) + 1 != ex->height || !hash_eq(&tip, &ex->prev_hash);
}

static int seal(chain_exec *ex)
{
    if (ex->broken) return CHAIN_ENOMEM;
    if (ex->sealed) return CHAIN_OK;
    /* The pages of a superseded root may never be written (store.c). */
    if (ex->base == NULL && store_moved(ex)) return CHAIN_ESTATE;
    chain_header *h = &ex->hdr;
    memset(h, 0, sizeof *h);
    /* In a run the state root is the run's to check (run.c). */
    if (ex->base == NULL) {
        int rc = chain__state_update(ex->st, ex->overlay, &ex->prev_root, ex->nodes, &h->state_root);
        if (rc != CHAIN_OK) return rc;
    }
    memcpy(h->chain_id, ex->g->chain_id, sizeof h->chain_id);
    h->height = ex->height;
    h->prev_hash = ex->prev_hash;
    h->time_ms = ex->time_ms;
    chain_tx_root(&h->tx_root, &ex->blk);
    chain_genesis_valset_hash(ex->g, &h->valset_hash);
    ex->sealed = 1;
    return CHAIN_OK;
}

int chain_exec_finish(chain_exec *ex, chain_block *out)
{
    if (ex == NULL || out == NULL) return CHAIN_EINVAL;
    int rc = seal(ex);
    if (rc != CHAIN_OK) return rc;
    chain_block_free(out);
    for (uint32_t i = 0; i < ex->blk.n_txs && rc == CHAIN_OK; i++)
        rc = chain_block_add_tx(out, ex->blk.txs[i], ex->blk.tx_lens[i]);
    if (rc != CHAIN_OK) {
        chain_block_free(out);
        return rc;
    }
    chain_header *h = &out->hdr;
    memcpy(h->chain_id, ex->hdr.chain_id, sizeof h->chain_id);
    h->height = ex->hdr.height;
    h->prev_hash = ex->hdr.prev_hash;
    h->time_ms = ex->hdr.time_ms;
    h->tx_root = ex->hdr.tx_root;
    h->state_root = ex->hdr.state_root;
    h->valset_hash = ex->hdr.valset_hash;
    return CHAIN_OK;
}

/* b carries exactly the txs ex applied, so its tx root is the sealed one:
 * comparing bytes costs far less than hashing every tx again. */
static int same_txs(const chain_exec *ex, const chain_block *b)
{
    if (b->n_txs != ex->blk.n_txs) return 0;
    for (uint32_t i = 0; i < b->n_txs; i++)
        if (b->tx_lens[i] != ex->blk.tx_lens[i] || memcmp(b->txs[i], ex->blk.txs[i], b->tx_lens[i]) != 0)
            return 0;
    return 1;
}

/* b's header agrees with what execution produced (proposer, view and cert
 * are not execution's business; the state root only when with_root). */
static int header_matches(const chain_header *h, const chain_header *want, int with_root)
{
    return strncmp(h->chain_id, want->chain_id, sizeof h->chain_id) == 0 &&
           h->height == want->height && hash_eq(&h->prev_hash, &want->prev_hash) &&
           h->time_ms == want->time_ms && hash_eq(&h->tx_root, &want->tx_root) &&
           (!with_root || hash_eq(&h->state_root, &want->state_root)) &&
           hash_eq(&h->valset_hash, &want->valset_hash);
}

static int exec_commit(chain_exec *ex, const chain_block *b, int sync)
{
    if (ex->committed || ex->base != NULL) return CHAIN_ESTATE;
    int rc = seal(ex);
    if (rc != CHAIN_OK) return rc;
    if (store_moved(ex)) return CHAIN_ESTATE;
    if (!header_matches(&b->hdr, &ex->hdr, 1) || !same_txs(ex, b)) return CHAIN_EBLOCK;
    chain_hash bh;
    chain_header_hash(&b->hdr, &bh);
    rc = chain__store_commit(ex->st, &b, 1, &bh, ex->overlay, ex->nodes, sync);
    if (rc == CHAIN_OK) ex->committed = 1;
    return rc;
}

int chain_exec_commit(chain_exec *ex, const chain_block *b)
{
    if (ex == NULL || b == NULL) return CHAIN_EINVAL;
    return exec_commit(ex, b, 1);
}

/* ------------------------------------------------------------------ blocks */

/* The header links to the tip: chain id, height, previous hash, time not
 * before the tip's, validator set. */
static int header_links(chain_store *st, const chain__base *base, const chain_header *h)
{
    const chain_genesis *g = chain_store_genesis(st);
    chain__tip tip;
    chain_hash vs;
    tip_of(st, base, &tip);
    chain_genesis_valset_hash(g, &vs);
    if (strncmp(h->chain_id, g->chain_id, sizeof h->chain_id) != 0) return CHAIN_EBLOCK;
    if (h->height != tip.height + 1) return CHAIN_EBLOCK;
    if (!hash_eq(&h->prev_hash, &tip.hash)) return CHAIN_EBLOCK;
    if (h->time_ms < tip.time_ms) return CHAIN_EBLOCK;
    if (!hash_eq(&h->valset_hash, &vs)) return CHAIN_EBLOCK;
    return CHAIN_OK;
}

int chain__exec_block_on(chain_exec **out, chain_store *st, const chain__base *base,
                         const chain_block *b, const uint8_t *sig_checked)
{
    if (out == NULL || st == NULL || b == NULL) return CHAIN_EINVAL;
    if (b->n_txs > CHAIN_BLOCK_TXS_MAX) return CHAIN_EBOUNDS;
    int rc = header_links(st, base, &b->hdr);
    if (rc != CHAIN_OK) return rc;
    chain_exec *ex = NULL;
    if ((rc = exec_begin(&ex, st, base, b->hdr.time_ms)) != CHAIN_OK) return rc;
    for (uint32_t i = 0; i < b->n_txs && rc == CHAIN_OK; i++)
        rc = chain_exec_tx(ex, b->txs[i], b->tx_lens[i], sig_checked ? sig_checked[i] : 0);
    if (rc == CHAIN_OK) rc = seal(ex);
    if (rc == CHAIN_OK && !header_matches(&b->hdr, &ex->hdr, base == NULL)) rc = CHAIN_EBLOCK;
    if (rc != CHAIN_OK) {
        chain_exec_abort(ex);
        return rc;
    }
    *out = ex;
    return CHAIN_OK;
}

int chain_exec_block(chain_exec **out, chain_store *st, const chain_block *b,
                     const uint8_t *sig_checked)
{
    return chain__exec_block_on(out, st, NULL, b, sig_checked);
}

int chain__exec_take(chain_exec *ex, chain__map *state)
{
    if (!ex->sealed || ex->broken || ex->committed || ex->base == NULL) return CHAIN_ESTATE;
    int rc = chain__map_merge(state, ex->overlay);
    if (rc != CHAIN_OK) ex->broken = 1;
    else ex->committed = 1;
    return rc;
}

static int apply_committed(chain_store *st, const chain_block *b, const uint8_t *sig_checked, int sync)
{
    if (st == NULL || b == NULL) return CHAIN_EINVAL;
    int rc = chain_cert_verify(&b->cert, chain_store_genesis(st), &b->hdr);
    if (rc != CHAIN_OK) return rc;
    chain_exec *ex = NULL;
    if ((rc = chain_exec_block(&ex, st, b, sig_checked)) != CHAIN_OK) return rc;
    rc = exec_commit(ex, b, sync);
    chain_exec_abort(ex);
    return rc;
}

int chain_apply_committed(chain_store *st, const chain_block *b)
{
    return apply_committed(st, b, NULL, 1);
}

int chain_apply_committed_unsynced(chain_store *st, const chain_block *b, const uint8_t *sig_checked)
{
    return apply_committed(st, b, sig_checked, 0);
}
