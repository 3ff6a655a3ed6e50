/* mempool.c — pending transactions and recent rejections.
 *
 * The mempool holds admitted transactions in one FIFO (admission order) and
 * indexes them by tx hash (de-duplication, status queries) and by signer
 * (highest pending nonce). Admission requires a nonce above the signer's
 * highest pending one, so FIFO order is ascending nonce order for every
 * signer and the producer can take transactions front to back. Everything
 * is bounded by `max`, fixed at creation; bucket arrays are allocated once.
 *
 * The rejection map remembers why recent transactions were refused, in a
 * ring of fixed size with a hash index; the oldest reason is forgotten first.
 */
#include <assert.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "node/node_int.h"

typedef struct signer_rec {
    chain_pubkey key;
    uint64_t nonce_max;
    uint32_t count;
    struct signer_rec *hnext;
} signer_rec;

struct node__mempool {
    uint32_t max, size;
    uint32_t nbuckets;                 /* power of two */
    node__mp_entry **buckets;
    signer_rec **sbuckets;
    node__mp_entry *head, *tail;
};

static uint32_t bucket_of(const uint8_t *b, uint32_t nbuckets) {
    /* Hashes and keys are uniformly distributed already. */
    uint32_t x;
    memcpy(&x, b, sizeof(x));
    return x & (nbuckets - 1);
}

node__mempool *node__mempool_create(uint32_t max) {
    assert(max >= 1 && max <= NODE_MEMPOOL_MAX);
    node__mempool *mp = calloc(1, sizeof(*mp));
    if (!mp) return NULL;
    mp->max = max;
    mp->nbuckets = 16;
    while (mp->nbuckets < 2 * max) mp->nbuckets <<= 1;
    mp->buckets = calloc(mp->nbuckets, sizeof(*mp->buckets));
    mp->sbuckets = calloc(mp->nbuckets, sizeof(*mp->sbuckets));
    if (!mp->buckets || !mp->sbuckets) {
        node__mempool_destroy(mp);
        return NULL;
    }
    return mp;
}

void node__mempool_destroy(node__mempool *mp) {
    if (!mp) return;
    for (node__mp_entry *e = mp->head, *next; e; e = next) {
        next = e->next;
        free(e->tx);
        free(e);
    }
    if (mp->sbuckets) {
        for (uint32_t i = 0; i < mp->nbuckets; i++) {
            for (signer_rec *s = mp->sbuckets[i], *next; s; s = next) {
                next = s->hnext;
                free(s);
            }
        }
    }
    free(mp->buckets);
    free(mp->sbuckets);
    free(mp);
}

static signer_rec **signer_slot(const node__mempool *mp, const chain_pubkey *key) {
    signer_rec **pp = &mp->sbuckets[bucket_of(key->b, mp->nbuckets)];
    while (*pp && memcmp((*pp)->key.b, key->b, CHAIN_KEY_LEN) != 0) pp = &(*pp)->hnext;
    return pp;
}

static node__mp_entry **entry_slot(const node__mempool *mp, const chain_hash *hash) {
    node__mp_entry **pp = &mp->buckets[bucket_of(hash->b, mp->nbuckets)];
    while (*pp && memcmp((*pp)->hash.b, hash->b, CHAIN_HASH_LEN) != 0) pp = &(*pp)->hnext;
    return pp;
}

uint64_t node__mempool_signer_nonce(const node__mempool *mp, const chain_pubkey *signer) {
    signer_rec *s = *signer_slot(mp, signer);
    return s ? s->nonce_max : 0;
}

int node__mempool_add(node__mempool *mp, const chain_hash *hash, const chain_pubkey *signer,
                      uint64_t nonce, const uint8_t *tx, size_t len, int sig_checked) {
    assert(len > 0 && len <= CHAIN_TX_BYTES_MAX);
    node__mp_entry **slot = entry_slot(mp, hash);
    if (*slot) return NODE_EDUP;
    if (mp->size >= mp->max) return NODE_EFULL;
    signer_rec **sslot = signer_slot(mp, signer);
    if (*sslot && nonce <= (*sslot)->nonce_max) return CHAIN_ENONCE;
    node__mp_entry *e = calloc(1, sizeof(*e));
    uint8_t *copy = malloc(len);
    signer_rec *s = *sslot ? *sslot : calloc(1, sizeof(*s));
    if (!e || !copy || !s) {
        free(e);
        free(copy);
        if (s && !*sslot) free(s);
        return NODE_ENOMEM;
    }
    if (!*sslot) {
        s->key = *signer;
        *sslot = s;
    }
    s->nonce_max = nonce;
    s->count++;
    memcpy(copy, tx, len);
    e->hash = *hash;
    e->signer = *signer;
    e->nonce = nonce;
    e->sig_checked = sig_checked;
    e->len = len;
    e->tx = copy;
    e->prev = mp->tail;
    if (mp->tail) mp->tail->next = e;
    else mp->head = e;
    mp->tail = e;
    *slot = e;
    mp->size++;
    assert(mp->size <= mp->max);
    return 0;
}

const node__mp_entry *node__mempool_find(const node__mempool *mp, const chain_hash *hash) {
    return *entry_slot(mp, hash);
}

int node__mempool_remove(node__mempool *mp, const chain_hash *hash) {
    node__mp_entry **slot = entry_slot(mp, hash);
    node__mp_entry *e = *slot;
    if (!e) return 0;
    *slot = e->hnext;
    if (e->prev) e->prev->next = e->next;
    else mp->head = e->next;
    if (e->next) e->next->prev = e->prev;
    else mp->tail = e->prev;
    signer_rec **sslot = signer_slot(mp, &e->signer);
    signer_rec *s = *sslot;
    assert(s && s->count > 0);
    /* The signer's highest pending nonce stays as it is while others of its
     * transactions wait: the highest one is the last to leave in FIFO order,
     * and keeping it also refuses a reuse of a nonce still in flight. */
    if (--s->count == 0) {
        *sslot = s->hnext;
        free(s);
    }
    assert(mp->size > 0);
    mp->size--;
    free(e->tx);
    free(e);
    return 1;
}

uint32_t node__mempool_size(const node__mempool *mp) { return mp->size; }
uint32_t node__mempool_max(const node__mempool *mp) { return mp->max; }
const node__mp_entry *node__mempool_first(const node__mempool *mp) { return mp->head; }
const node__mp_entry *node__mempool_next(const node__mp_entry *e) { return e->next; }

/* ------------------------------------------------------------------ rejects */
typedef struct {
    chain_hash hash;
    char reason[NODE_REASON_MAX];
    int32_t hnext;                     /* next slot in the same bucket, or -1 */
    int used;
} reject_slot;

struct node__rejects {
    uint32_t max, next;                /* ring of max slots; next is overwritten next */
    uint32_t nbuckets;
    int32_t *buckets;
    reject_slot *slots;
};

node__rejects *node__rejects_create(uint32_t max) {
    assert(max >= 1 && max <= NODE_REJECTS_MAX);
    node__rejects *rj = calloc(1, sizeof(*rj));
    if (!rj) return NULL;
    rj->max = max;
    rj->nbuckets = 16;
    while (rj->nbuckets < max) rj->nbuckets <<= 1;
    rj->buckets = malloc(rj->nbuckets * sizeof(*rj->buckets));
    rj->slots = calloc(max, sizeof(*rj->slots));
    if (!rj->buckets || !rj->slots) {
        node__rejects_destroy(rj);
        return NULL;
    }
    for (uint32_t i = 0; i < rj->nbuckets; i++) rj->buckets[i] = -1;
    return rj;
}

void node__rejects_destroy(node__rejects *rj) {
    if (!rj) return;
    free(rj->buckets);
    free(rj->slots);
    free(rj);
}

static void rejects_unlink(node__rejects *rj, int32_t idx) {
    int32_t *pp = &rj->buckets[bucket_of(rj->slots[idx].hash.b, rj->nbuckets)];
    uint32_t steps = 0;
    while (*pp != idx) {
        assert(*pp >= 0 && steps++ < rj->max);
        pp = &rj->slots[*pp].hnext;
    }
    *pp = rj->slots[idx].hnext;
}

void node__rejects_add(node__rejects *rj, const chain_hash *hash, const char *reason) {
    int32_t idx = (int32_t)rj->next;
    reject_slot *s = &rj->slots[idx];
    if (s->used) rejects_unlink(rj, idx);
    s->hash = *hash;
    snprintf(s->reason, sizeof(s->reason), "%s", reason);
    s->used = 1;
    int32_t *bucket = &rj->buckets[bucket_of(hash->b, rj->nbuckets)];
    s->hnext = *bucket;
    *bucket = idx;
    rj->next = (rj->next + 1) % rj->max;
}

int node__rejects_find(const node__rejects *rj, char *reason, const chain_hash *hash) {
    int32_t i = rj->buckets[bucket_of(hash->b, rj->nbuckets)];
    for (uint32_t steps = 0; i >= 0 && steps <= rj->max; steps++) {
        const reject_slot *s = &rj->slots[i];
        if (memcmp(s->hash.b, hash->b, CHAIN_HASH_LEN) == 0) {
            memcpy(reason, s->reason, NODE_REASON_MAX);
            return 1;
        }
        i = s->hnext;
    }
    return 0;
}
