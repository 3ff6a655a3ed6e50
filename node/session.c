/* session.c — the node's table of authenticated API sessions.
 *
 * A session (README, "Sessions") maps a random 16-byte id to the caller key
 * that opened it with a signed POST /v1/sessions and the key both sides
 * derived (chain_api_session_key); requests then carry a MAC instead of a
 * BIP340 signature. The table is fixed: capacity slots allocated once;
 * opening a session allocates only its keyed HMAC context
 * (chain_api_mac_key), so checking a request's MAC allocates nothing. Every session lives the same time, so the oldest
 * is the one that expires first. A caller holds at most per_caller
 * sessions: one more replaces its own oldest, so one caller cannot push
 * the others out; only when the table is full of distinct callers' sessions
 * does a new one evict the oldest of all (its caller gets 401 and opens a
 * new one). A caller's live session with the same ephemeral key refuses
 * the open: a replayed signed open (valid for the API's time window)
 * cannot churn the caller's own sessions out. Opening scans the table (rare, next to the BIP340 verification
 * it follows); lookup goes through a chained hash index over the id, which
 * is random, so its first bytes spread well. Session keys are wiped (their
 * contexts freed) when a slot is reused or the table freed, and never
 * logged.
 */
#include <assert.h>
#include <stdlib.h>
#include <string.h>

#include <openssl/crypto.h>

#include "node/node_int.h"

typedef struct {
    uint8_t id[CHAIN_API_SESSION_ID_LEN];
    uint8_t client_pub[CHAIN_API_EPH_PUB_LEN];   /* the caller's ephemeral key */
    node__session s;
    uint64_t expires_s;
    int32_t hnext;                   /* next slot in the same bucket, -1 */
    int used;
} slot;

struct node__sessions {
    uint32_t cap, per_caller, nbuckets, ttl_s;
    slot *slots;
    int32_t *buckets;
};

static uint32_t bucket_of(const node__sessions *t, const uint8_t *id) {
    uint32_t h;
    memcpy(&h, id, sizeof h);
    return h & (t->nbuckets - 1);
}

int node__sessions_create(node__sessions **out, uint32_t cap, uint32_t per_caller, uint32_t ttl_s) {
    if (out == NULL || cap == 0 || cap > NODE_SESSIONS_MAX || per_caller == 0 || ttl_s == 0)
        return NODE_EINVAL;
    node__sessions *t = calloc(1, sizeof *t);
    if (!t) return NODE_ENOMEM;
    t->cap = cap;
    t->per_caller = per_caller;
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
    for (uint32_t i = 0; t->slots && i < t->cap; i++) chain_api_mac_key_free(t->slots[i].s.mac);
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
    chain_api_mac_key_free(t->slots[i].s.mac);
    OPENSSL_cleanse(&t->slots[i], sizeof t->slots[i]);
}

static int32_t find(const node__sessions *t, const uint8_t *id) {
    for (int32_t i = t->buckets[bucket_of(t, id)]; i >= 0; i = t->slots[i].hnext)
        if (memcmp(t->slots[i].id, id, CHAIN_API_SESSION_ID_LEN) == 0) return i;
    return -1;
}

/* The slot a new session of caller takes: the caller's oldest if it is at
 * its limit, else a free slot, else the oldest of all. */
static int32_t pick_slot(const node__sessions *t, const chain_pubkey *caller,
                         const uint8_t client_pub[CHAIN_API_EPH_PUB_LEN]) {
    int32_t own = -1, free_slot = -1, oldest = -1;
    uint32_t held = 0;
    for (uint32_t j = 0; j < t->cap; j++) {
        const slot *s = &t->slots[j];
        if (!s->used) {
            if (free_slot < 0) free_slot = (int32_t)j;
            continue;
        }
        if (oldest < 0 || s->expires_s < t->slots[oldest].expires_s) oldest = (int32_t)j;
        if (memcmp(s->s.caller.b, caller->b, CHAIN_KEY_LEN) == 0) {
            if (memcmp(s->client_pub, client_pub, CHAIN_API_EPH_PUB_LEN) == 0) return -1;   /* replayed */
            held++;
            if (own < 0 || s->expires_s < t->slots[own].expires_s) own = (int32_t)j;
        }
    }
    if (held >= t->per_caller) return own;
    return free_slot >= 0 ? free_slot : oldest;
}

int node__session_open(node__sessions *t, const uint8_t id[CHAIN_API_SESSION_ID_LEN], uint64_t *expires_s,
                       const chain_pubkey *caller, const uint8_t client_pub[CHAIN_API_EPH_PUB_LEN],
                       const uint8_t key[CHAIN_API_SESSION_KEY_LEN], uint64_t now_s) {
    if (find(t, id) >= 0) return NODE_EDUP;
    int32_t i = pick_slot(t, caller, client_pub);
    if (i < 0) return NODE_EDUP;
    chain_api_mac_key *mac = NULL;
    if (chain_api_mac_key_new(&mac, key) != CHAIN_OK) return NODE_ENOMEM;
    if (t->slots[i].used) unlink_slot(t, i);
    slot *s = &t->slots[i];
    memcpy(s->id, id, CHAIN_API_SESSION_ID_LEN);
    memcpy(s->client_pub, client_pub, CHAIN_API_EPH_PUB_LEN);
    s->s.mac = mac;
    s->s.caller = *caller;
    s->s.inst_at = 0;
    s->expires_s = now_s + t->ttl_s;
    s->used = 1;
    uint32_t b = bucket_of(t, id);
    s->hnext = t->buckets[b];
    t->buckets[b] = i;
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
