/* state.c — the shape of the ledger state: keys, records and the overlay map.
 *
 * Every state value lives in the store's "state" column family under a
 * one-letter prefix (tree pages in "tree"):
 *   "P" patient grantee   -> GrantList (the pair's grants, oldest first)
 *   "G" grant_id          -> patient grantee (64 bytes: where the grant lives)
 *   "N" signer            -> last committed nonce, u64 big-endian
 *   "U" patient           -> guardian key (32 bytes)
 *   "I" key               -> InstitutionRecord
 *   "A" patient grant txid-> AccessSummary (audit trail, not authenticated)
 *   "Q" page hash         -> state-tree page (chain/smt.c encoding), in the
 *                            store's "tree" column family
 * The authenticated part (P, N, U, I) is mirrored in the sparse Merkle tree:
 * leaf key = SHA-256(tag || key suffix) with tag "pair", "nonce", "guardian"
 * or "inst", leaf value = SHA-256(stored value bytes). So a client holding a
 * pair list and its tree proof can check a permit or a deny against the
 * state root in a committed header.
 *
 * Records are protobuf (proto/block.proto) through protobuf-c; decoding our
 * own stored bytes still checks every length, since a corrupt disk must give
 * CHAIN_EIO rather than an overflow.
 *
 * The overlay map (chain__map) is a small open-addressing hash table of
 * byte-string keys to byte-string values or deletion marks, used for a
 * block's pending state changes and for the state-tree nodes it writes.
 */
#include <assert.h>
#include <stdlib.h>
#include <string.h>

#include "chain/chain.h"
#include "chain/chain_internal.h"
#include "proto/block.pb-c.h"

/* ------------------------------------------------------------------ keys */

static size_t key_cat(uint8_t *out, char pfx, const void *a, size_t alen, const void *b,
                      size_t blen)
{
    out[0] = (uint8_t)pfx;
    memcpy(out + 1, a, alen);
    if (blen) memcpy(out + 1 + alen, b, blen);
    assert(1 + alen + blen <= CHAIN__KEY_MAX);
    return 1 + alen + blen;
}

size_t chain__key_pair(uint8_t *out, const chain_pubkey *patient, const chain_pubkey *grantee)
{
    return key_cat(out, CHAIN__PFX_PAIR, patient->b, CHAIN_KEY_LEN, grantee->b, CHAIN_KEY_LEN);
}

size_t chain__key_grant(uint8_t *out, const chain_hash *id)
{
    return key_cat(out, CHAIN__PFX_GRANT, id->b, CHAIN_HASH_LEN, NULL, 0);
}

size_t chain__key_nonce(uint8_t *out, const chain_pubkey *signer)
{
    return key_cat(out, CHAIN__PFX_NONCE, signer->b, CHAIN_KEY_LEN, NULL, 0);
}

size_t chain__key_guardian(uint8_t *out, const chain_pubkey *patient)
{
    return key_cat(out, CHAIN__PFX_GUARDIAN, patient->b, CHAIN_KEY_LEN, NULL, 0);
}

size_t chain__key_inst(uint8_t *out, const chain_pubkey *key)
{
    return key_cat(out, CHAIN__PFX_INST, key->b, CHAIN_KEY_LEN, NULL, 0);
}

size_t chain__key_access(uint8_t *out, const chain_pubkey *patient, const chain_hash *grant_id,
                         const chain_hash *txid)
{
    size_t n = key_cat(out, CHAIN__PFX_ACCESS, patient->b, CHAIN_KEY_LEN, grant_id->b, CHAIN_HASH_LEN);
    memcpy(out + n, txid->b, CHAIN_HASH_LEN);
    return n + CHAIN_HASH_LEN;
}

size_t chain__key_node(uint8_t *out, const chain_hash *h)
{
    return key_cat(out, CHAIN__PFX_NODE, h->b, CHAIN_HASH_LEN, NULL, 0);
}

/* Leaf keys hash a tag with the key suffix; the tags keep a nonce leaf from
 * ever colliding with a guardian leaf of the same 32-byte key. */
static void leaf_key(chain_hash *out, const char *tag, const uint8_t *suffix, size_t len)
{
    uint8_t buf[16 + 2 * CHAIN_KEY_LEN];
    size_t tlen = strlen(tag);
    assert(tlen <= 16 && len <= 2 * CHAIN_KEY_LEN);
    memcpy(buf, tag, tlen);
    memcpy(buf + tlen, suffix, len);
    chain_sha256(out, buf, tlen + len);
}

int chain__state_leaf_key(chain_hash *out, const uint8_t *key, size_t klen)
{
    assert(klen >= 1);
    switch (key[0]) {
    case CHAIN__PFX_PAIR:
        if (klen != 1 + 2 * CHAIN_KEY_LEN) return 0;
        leaf_key(out, "pair", key + 1, klen - 1);
        return 1;
    case CHAIN__PFX_NONCE:
        if (klen != 1 + CHAIN_KEY_LEN) return 0;
        leaf_key(out, "nonce", key + 1, klen - 1);
        return 1;
    case CHAIN__PFX_GUARDIAN:
        if (klen != 1 + CHAIN_KEY_LEN) return 0;
        leaf_key(out, "guardian", key + 1, klen - 1);
        return 1;
    case CHAIN__PFX_INST:
        if (klen != 1 + CHAIN_KEY_LEN) return 0;
        leaf_key(out, "inst", key + 1, klen - 1);
        return 1;
    default:
        return 0;
    }
}

void chain__state_leaf_val(chain_hash *out, const uint8_t *val, size_t len)
{
    chain_sha256(out, val, len);
}

/* ------------------------------------------------------------------ grants */

static ProtobufCBinaryData bin(const uint8_t *p, size_t n)
{
    ProtobufCBinaryData d = {n, (uint8_t *)p};
    return d;
}

static int copy_fixed(uint8_t *out, size_t want, ProtobufCBinaryData d)
{
    if (d.len != want) return CHAIN_EIO;
    memcpy(out, d.data, want);
    return CHAIN_OK;
}

static int copy_code(chain_code *out, const char *s)
{
    size_t n = strnlen(s, CHAIN_CODE_LEN_MAX + 1);
    if (n == 0 || n > CHAIN_CODE_LEN_MAX) return CHAIN_EIO;
    memcpy(out->s, s, n + 1);
    return CHAIN_OK;
}

int chain__grant_from_pb(chain_grant_record *r, const struct Consent__GrantRecord *m)
{
    int rc = CHAIN_OK;
    memset(r, 0, sizeof *r);
    if (m->n_scopes == 0 || m->n_scopes > CHAIN_SCOPES_MAX) return CHAIN_EIO;
    if (m->n_purposes == 0 || m->n_purposes > CHAIN_PURPOSES_MAX) return CHAIN_EIO;
    if (m->status != CHAIN_GRANT_ACTIVE && m->status != CHAIN_GRANT_REVOKED) return CHAIN_EIO;
    if (rc == CHAIN_OK) rc = copy_fixed(r->id.b, CHAIN_HASH_LEN, m->id);
    if (rc == CHAIN_OK) rc = copy_fixed(r->grant.patient.b, CHAIN_KEY_LEN, m->patient);
    if (rc == CHAIN_OK) rc = copy_fixed(r->grant.grantee.b, CHAIN_KEY_LEN, m->grantee);
    if (rc == CHAIN_OK) rc = copy_fixed(r->granted_by.b, CHAIN_KEY_LEN, m->granted_by);
    for (size_t i = 0; i < m->n_scopes && rc == CHAIN_OK; i++)
        rc = copy_code(&r->grant.scopes[i], m->scopes[i]);
    for (size_t i = 0; i < m->n_purposes && rc == CHAIN_OK; i++)
        rc = copy_code(&r->grant.purposes[i], m->purposes[i]);
    r->grant.n_scopes = (uint32_t)m->n_scopes;
    r->grant.n_purposes = (uint32_t)m->n_purposes;
    r->grant.not_before = m->not_before;
    r->grant.not_after = m->not_after;
    r->status = (chain_grant_status)m->status;
    r->granted_height = m->granted_height;
    r->revoked_height = m->revoked_height;
    return rc;
}

int chain__grants_decode(chain_grant_record **out, uint32_t *n_out, const uint8_t *buf, size_t len)
{
    Consent__GrantList *m = consent__grant_list__unpack(NULL, len, buf);
    if (m == NULL) return CHAIN_EIO;
    int rc = m->n_grants > CHAIN_GRANTS_PER_PAIR_MAX ? CHAIN_EIO : CHAIN_OK;
    /* One spare slot so a caller can append a grant in place. */
    chain_grant_record *recs = NULL;
    if (rc == CHAIN_OK) {
        recs = malloc((m->n_grants + 1) * sizeof *recs);
        if (recs == NULL) rc = CHAIN_ENOMEM;
    }
    for (size_t i = 0; rc == CHAIN_OK && i < m->n_grants; i++)
        rc = chain__grant_from_pb(&recs[i], m->grants[i]);
    if (rc == CHAIN_OK) {
        *out = recs;
        *n_out = (uint32_t)m->n_grants;
    } else {
        free(recs);
    }
    consent__grant_list__free_unpacked(m, NULL);
    return rc;
}

/* Scaffolding for encoding one record: pointers into the record itself. */
typedef struct {
    Consent__GrantRecord m;
    char *scopes[CHAIN_SCOPES_MAX];
    char *purposes[CHAIN_PURPOSES_MAX];
} grant_pb;

static void grant_to_pb(grant_pb *p, const chain_grant_record *r)
{
    assert(r->grant.n_scopes <= CHAIN_SCOPES_MAX);
    assert(r->grant.n_purposes <= CHAIN_PURPOSES_MAX);
    consent__grant_record__init(&p->m);
    p->m.id = bin(r->id.b, CHAIN_HASH_LEN);
    p->m.patient = bin(r->grant.patient.b, CHAIN_KEY_LEN);
    p->m.grantee = bin(r->grant.grantee.b, CHAIN_KEY_LEN);
    for (uint32_t i = 0; i < r->grant.n_scopes; i++) p->scopes[i] = (char *)r->grant.scopes[i].s;
    for (uint32_t i = 0; i < r->grant.n_purposes; i++) p->purposes[i] = (char *)r->grant.purposes[i].s;
    p->m.n_scopes = r->grant.n_scopes;
    p->m.scopes = p->scopes;
    p->m.n_purposes = r->grant.n_purposes;
    p->m.purposes = p->purposes;
    p->m.not_before = r->grant.not_before;
    p->m.not_after = r->grant.not_after;
    p->m.status = (uint32_t)r->status;
    p->m.granted_height = r->granted_height;
    p->m.revoked_height = r->revoked_height;
    p->m.granted_by = bin(r->granted_by.b, CHAIN_KEY_LEN);
}

static int pack_alloc(uint8_t **out, size_t *len_out, const ProtobufCMessage *msg)
{
    size_t n = protobuf_c_message_get_packed_size(msg);
    uint8_t *buf = malloc(n ? n : 1);
    if (buf == NULL) return CHAIN_ENOMEM;
    size_t w = protobuf_c_message_pack(msg, buf);
    assert(w == n);
    *out = buf;
    *len_out = w;
    return CHAIN_OK;
}

int chain__grants_encode(uint8_t **out, size_t *len_out, const chain_grant_record *recs, uint32_t n)
{
    assert(n <= CHAIN_GRANTS_PER_PAIR_MAX);
    grant_pb *pbs = malloc((n ? n : 1) * sizeof *pbs);
    Consent__GrantRecord **ptrs = malloc((n ? n : 1) * sizeof *ptrs);
    int rc = pbs == NULL || ptrs == NULL ? CHAIN_ENOMEM : CHAIN_OK;
    if (rc == CHAIN_OK) {
        Consent__GrantList list;
        consent__grant_list__init(&list);
        for (uint32_t i = 0; i < n; i++) {
            grant_to_pb(&pbs[i], &recs[i]);
            ptrs[i] = &pbs[i].m;
        }
        list.n_grants = n;
        list.grants = ptrs;
        rc = pack_alloc(out, len_out, &list.base);
    }
    free(pbs);
    free(ptrs);
    return rc;
}

/* ------------------------------------------------------------------ institutions */

int chain__inst_encode(uint8_t **out, size_t *len_out, const chain_institution *in)
{
    Consent__InstitutionRecord m;
    consent__institution_record__init(&m);
    m.key = bin(in->key.b, CHAIN_KEY_LEN);
    m.name = (char *)in->name;
    m.roles = in->roles;
    m.p2p_addr = (char *)in->p2p_addr;
    m.api_addr = (char *)in->api_addr;
    return pack_alloc(out, len_out, &m.base);
}

static int copy_str(char *out, size_t cap, const char *s)
{
    size_t n = strnlen(s, cap);
    if (n >= cap) return CHAIN_EIO;
    memcpy(out, s, n + 1);
    return CHAIN_OK;
}

int chain__inst_decode(chain_institution *out, const uint8_t *buf, size_t len)
{
    Consent__InstitutionRecord *m = consent__institution_record__unpack(NULL, len, buf);
    if (m == NULL) return CHAIN_EIO;
    chain_institution r;
    memset(&r, 0, sizeof r);
    int rc = copy_fixed(r.key.b, CHAIN_KEY_LEN, m->key);
    if (rc == CHAIN_OK) rc = copy_str(r.name, sizeof r.name, m->name);
    if (rc == CHAIN_OK) rc = copy_str(r.p2p_addr, sizeof r.p2p_addr, m->p2p_addr);
    if (rc == CHAIN_OK) rc = copy_str(r.api_addr, sizeof r.api_addr, m->api_addr);
    r.roles = m->roles;
    consent__institution_record__free_unpacked(m, NULL);
    if (rc == CHAIN_OK) *out = r;
    return rc;
}

/* ------------------------------------------------------------------ access */

int chain__access_encode(uint8_t **out, size_t *len_out, const chain_hash *txid,
                         const chain_pubkey *gateway, const chain_access_record *a,
                         uint64_t height, uint64_t time_ms)
{
    Consent__AccessSummary m;
    consent__access_summary__init(&m);
    m.tx_id = bin(txid->b, CHAIN_HASH_LEN);
    m.gateway = bin(gateway->b, CHAIN_KEY_LEN);
    m.grant_id = bin(a->grant_id.b, CHAIN_HASH_LEN);
    m.scope = (char *)a->scope.s;
    m.purpose = (char *)a->purpose.s;
    m.request_hash = bin(a->request_hash.b, CHAIN_HASH_LEN);
    m.height = height;
    m.time_ms = time_ms;
    return pack_alloc(out, len_out, &m.base);
}

int chain__access_decode(chain_access_summary *out, const uint8_t *buf, size_t len)
{
    Consent__AccessSummary *m = consent__access_summary__unpack(NULL, len, buf);
    if (m == NULL) return CHAIN_EIO;
    chain_access_summary a;
    memset(&a, 0, sizeof a);
    int rc = copy_fixed(a.tx_id.b, CHAIN_HASH_LEN, m->tx_id);
    if (rc == CHAIN_OK) rc = copy_fixed(a.gateway.b, CHAIN_KEY_LEN, m->gateway);
    if (rc == CHAIN_OK) rc = copy_fixed(a.grant_id.b, CHAIN_HASH_LEN, m->grant_id);
    if (rc == CHAIN_OK) rc = copy_fixed(a.request_hash.b, CHAIN_HASH_LEN, m->request_hash);
    if (rc == CHAIN_OK) rc = copy_code(&a.scope, m->scope);
    if (rc == CHAIN_OK) rc = copy_code(&a.purpose, m->purpose);
    a.height = m->height;
    a.time_ms = m->time_ms;
    consent__access_summary__free_unpacked(m, NULL);
    if (rc == CHAIN_OK) *out = a;
    return rc;
}

/* ------------------------------------------------------------------ map */

typedef struct {
    uint64_t h;        /* 0 = empty slot (real hashes are forced non-zero) */
    uint8_t *blob;     /* key || value in one allocation */
    uint32_t klen;
    uint32_t vlen;
    int deleted;
} map_slot;

struct chain__map {
    map_slot *slots;
    size_t cap;        /* power of two */
    size_t count;
    size_t max_entries;
};

/* FNV-1a: keys are mostly hashes and public keys, so a simple mix spreads
 * them well; the prefix byte alone never decides the slot. */
static uint64_t map_hash(const uint8_t *key, size_t klen)
{
    uint64_t h = 1469598103934665603ull;
    for (size_t i = 0; i < klen; i++) {
        h ^= key[i];
        h *= 1099511628211ull;
    }
    return h ? h : 1;
}

chain__map *chain__map_create(size_t max_entries)
{
    chain__map *m = calloc(1, sizeof *m);
    if (m == NULL) return NULL;
    m->cap = 64;
    m->max_entries = max_entries;
    m->slots = calloc(m->cap, sizeof *m->slots);
    if (m->slots == NULL) {
        free(m);
        return NULL;
    }
    return m;
}

void chain__map_clear(chain__map *m)
{
    if (m == NULL) return;
    for (size_t i = 0; i < m->cap; i++) free(m->slots[i].blob);
    memset(m->slots, 0, m->cap * sizeof *m->slots);
    m->count = 0;
}

void chain__map_destroy(chain__map *m)
{
    if (m == NULL) return;
    chain__map_clear(m);
    free(m->slots);
    free(m);
}

size_t chain__map_count(const chain__map *m)
{
    return m->count;
}

static size_t map_find(const chain__map *m, uint64_t h, const uint8_t *key, size_t klen)
{
    size_t mask = m->cap - 1;
    /* The table is never more than half full, so the probe ends. */
    for (size_t i = h & mask, n = 0; n < m->cap; i = (i + 1) & mask, n++) {
        const map_slot *s = &m->slots[i];
        if (s->h == 0) return i;
        if (s->h == h && s->klen == klen && memcmp(s->blob, key, klen) == 0) return i;
    }
    assert(0 && "map full");
    return 0;
}

static int map_grow(chain__map *m)
{
    size_t cap = m->cap * 2;
    map_slot *old = m->slots, *slots = calloc(cap, sizeof *slots);
    if (slots == NULL) return CHAIN_ENOMEM;
    size_t old_cap = m->cap;
    m->slots = slots;
    m->cap = cap;
    for (size_t i = 0; i < old_cap; i++) {
        if (old[i].h == 0) continue;
        size_t j = map_find(m, old[i].h, old[i].blob, old[i].klen);
        m->slots[j] = old[i];
    }
    free(old);
    return CHAIN_OK;
}

/* Stores a ready blob under its key, taking ownership of it. */
static int map_put_blob(chain__map *m, uint8_t *blob, size_t klen, size_t vlen, int deleted)
{
    uint64_t h = map_hash(blob, klen);
    size_t i = map_find(m, h, blob, klen);
    map_slot *s = &m->slots[i];
    if (s->h != 0) {
        free(s->blob);
    } else {
        if (m->count >= m->max_entries) return CHAIN_ENOMEM;
        m->count++;
    }
    *s = (map_slot){h, blob, (uint32_t)klen, (uint32_t)vlen, deleted};
    if (m->count * 2 > m->cap) return map_grow(m);
    return CHAIN_OK;
}

int chain__map_put(chain__map *m, const uint8_t *key, size_t klen, const uint8_t *val, size_t vlen)
{
    assert(klen > 0 && klen <= UINT32_MAX);
    assert(vlen <= UINT32_MAX);
    if (val == NULL) vlen = 0;
    uint8_t *blob = malloc(klen + vlen);
    if (blob == NULL) return CHAIN_ENOMEM;
    memcpy(blob, key, klen);
    if (vlen) memcpy(blob + klen, val, vlen);
    /* Reserve before inserting so a failed put leaves the map unchanged. */
    int rc = CHAIN_OK;
    uint64_t h = map_hash(key, klen);
    if (m->slots[map_find(m, h, key, klen)].h == 0 && m->count >= m->max_entries) rc = CHAIN_ENOMEM;
    if (rc == CHAIN_OK) rc = map_put_blob(m, blob, klen, vlen, val == NULL);
    else free(blob);
    return rc;
}

int chain__map_get(const chain__map *m, chain__map_entry *out, const uint8_t *key, size_t klen)
{
    const map_slot *s = &m->slots[map_find(m, map_hash(key, klen), key, klen)];
    if (s->h == 0) return 0;
    out->key = s->blob;
    out->klen = s->klen;
    out->val = s->deleted ? NULL : s->blob + s->klen;
    out->vlen = s->vlen;
    return 1;
}

int chain__map_next(const chain__map *m, size_t *iter, chain__map_entry *out)
{
    for (size_t i = *iter; i < m->cap; i++) {
        const map_slot *s = &m->slots[i];
        if (s->h == 0) continue;
        out->key = s->blob;
        out->klen = s->klen;
        out->val = s->deleted ? NULL : s->blob + s->klen;
        out->vlen = s->vlen;
        *iter = i + 1;
        return 1;
    }
    *iter = m->cap;
    return 0;
}

int chain__map_merge(chain__map *dst, chain__map *src)
{
    if (dst->count + src->count > dst->max_entries) return CHAIN_ENOMEM;
    int rc = CHAIN_OK;
    for (size_t i = 0; i < src->cap; i++) {
        map_slot *s = &src->slots[i];
        if (s->h == 0) continue;
        /* Once moved, the blob belongs to dst even if growing dst failed. */
        int r = map_put_blob(dst, s->blob, s->klen, s->vlen, s->deleted);
        if (r != CHAIN_OK && rc == CHAIN_OK) rc = r;
        *s = (map_slot){0, NULL, 0, 0, 0};
    }
    src->count = 0;
    return rc;
}
