/* session.c — the node's table of authenticated API sessions.
 *
 * A session (README, "Sessions") maps a random 16-byte id to the caller key
 * that opened it with a signed POST /v1/sessions and the key both sides
 * derived (chain_api_session_key); requests then carry a MAC instead of a
 * BIP340 signature. The table is fixed: capacity slots allocated once, no
 * allocation afterwards. Slots fill in creation order as a ring, and every
 * session lives the same time, so the slot taken next always holds the
 * oldest session: a full table evicts it (its caller gets 401 and opens a
 * new one). Lookup goes through a chained hash index over the id, which is
 * random, so its first bytes spread well. Session keys are wiped when a
 * slot is reused or the table freed, and never logged.
 */
#include <assert.h>
#include <stdlib.h>
#include <string.h>

#include <openssl/crypto.h>

#include "node/node_int.h"

typedef struct {
    uint8_t id[CHAIN_API_SESSION_ID_LEN];
    node__session s;
    uint64_t expires_s;
    int32_t hnext;                   /* next slot in the same bucket, -1 */
    int used;
} slot;

struct node__sessions {
    uint32_t cap, next, nbuckets, ttl_s;
    slot *slots;
    int32_t *buckets;
};

static uint32_t bucket_of(const node__sessions *t, const uint8_t *id) {
    uint32_t h;
    memcpy(&h, id, sizeof h);
    return h & (t->nbuckets - 1);
}

int node__sessions_create(node__sessions **out, uint32_t cap, uint32_t ttl_s) {
    if (out == NULL || cap == 0 || cap > NODE_SESSIONS_MAX || ttl_s == 0) return NODE_EINVAL;
    node__sessions *t = calloc(1, sizeof *t);
    if (!t) return NODE_ENOMEM;
    t->cap = cap;
    t->ttl_s = ttl_s;
    for (t->nbuckets = 1; t->nbuckets < 2 * cap; t->nbuckets <<= 1) {}
    t->slots = calloc(cap, sizeof *t->slots);
    t->buckets = malloc(t->nbuckets * sizeof *t->buckets);
    if (!t->slots || !t->buckets) {
        node__sessions_destroy(t);
        return NODE_ENOMEM;
    }
    for (uint32_t i = 0; i < t->nbuckets; i++) t->buckets[i] = -1;
    *out = t;
    return NODE_OK;
}

void node__sessions_destroy(node__sessions *t) {
    if (!t) return;
    if (t->slots) OPENSSL_cleanse(t->slots, t->cap * sizeof *t->slots);
    free(t->slots);
    free(t->buckets);
    free(t);
}

static void unlink_slot(node__sessions *t, int32_t i) {
    int32_t *p = &t->buckets[bucket_of(t, t->slots[i].id)];
    while (*p != i) {
        assert(*p >= 0);
        p = &t->slots[*p].hnext;
    }
    *p = t->slots[i].hnext;
    OPENSSL_cleanse(&t->slots[i], sizeof t->slots[i]);
}

static int32_t find(const node__sessions *t, const uint8_t *id) {
    for (int32_t i = t->buckets[bucket_of(t, id)]; i >= 0; i = t->slots[i].hnext)
        if (memcmp(t->slots[i].id, id, CHAIN_API_SESSION_ID_LEN) == 0) return i;
    return -1;
}

int node__session_open(node__sessions *t, const uint8_t id[CHAIN_API_SESSION_ID_LEN], uint64_t *expires_s,
                       const chain_pubkey *caller, const uint8_t key[CHAIN_API_SESSION_KEY_LEN], uint64_t now_s) {
    if (find(t, id) >= 0) return NODE_EDUP;
    int32_t i = (int32_t)t->next;
    if (t->slots[i].used) unlink_slot(t, i);   /* the oldest session goes */
    slot *s = &t->slots[i];
    memcpy(s->id, id, CHAIN_API_SESSION_ID_LEN);
    memcpy(s->s.key, key, CHAIN_API_SESSION_KEY_LEN);
    s->s.caller = *caller;
    s->s.inst_at = 0;
    s->expires_s = now_s + t->ttl_s;
    s->used = 1;
    uint32_t b = bucket_of(t, id);
    s->hnext = t->buckets[b];
    t->buckets[b] = i;
    t->next = (t->next + 1) % t->cap;
    *expires_s = s->expires_s;
    return NODE_OK;
}

int node__session_find(node__sessions *t, const uint8_t id[CHAIN_API_SESSION_ID_LEN], uint64_t now_s,
                       node__session **out) {
    int32_t i = find(t, id);
    if (i < 0) return CHAIN_ENOTFOUND;
    if (now_s >= t->slots[i].expires_s) {
        unlink_slot(t, i);
        return CHAIN_ETIME;
    }
    *out = &t->slots[i].s;
    return NODE_OK;
}

uint32_t node__sessions_count(const node__sessions *t) {
    uint32_t n = 0;
    for (uint32_t i = 0; i < t->cap; i++) n += t->slots[i].used != 0;
    return n;
}
