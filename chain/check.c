/* check.c — the gateway question, answered from committed state.
 *
 * chain_check reads one value, the (patient, grantee) pair list, with one
 * RocksDB point read into a stack buffer (heap only for a list larger than
 * the buffer) and decodes it with protobuf-c into a stack arena, so the
 * common case makes no allocation of ours. Every record is weighed against
 * the request; the answer is permit if one active record covers scope and
 * purpose at the time asked, else deny with the reason of the closest record.
 *
 * "Closest" ranks how much of the request a record covers: covering the
 * scope beats not, covering the purpose too beats that, and a record that
 * covers both but is revoked, not yet valid or expired is closest of all
 * (ties go to the newer record). Reasons name no patient data.
 *
 * A grant needs a registered grantee when it is made (exec.c) and when it
 * is used: once governance removes the institution its grants stay in
 * state (a re-registration revives them) but permit nothing, so the
 * grantee's registry record is read too (one more small point read). */
#include <assert.h>
#include <stdalign.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "chain/chain.h"
#include "chain/chain_internal.h"
#include "proto/block.pb-c.h"

#define CHECK_BUF_BYTES 8192
#define CHECK_ARENA_BYTES 16384
#define CHECK_READ_TRIES 3
#define CHECK_INST_BYTES 512   /* an encoded registry record is far smaller */

/* A bump allocator over a caller's buffer; falls back to malloc when full.
 * protobuf-c frees every piece it allocated, so free() tells the two apart
 * by address. */
typedef struct {
    uint8_t *buf;
    size_t cap;
    size_t used;
} arena;

static void *arena_alloc(void *data, size_t size)
{
    arena *a = data;
    size_t need = (size + 15) & ~(size_t)15;
    if (need >= size && a->cap - a->used >= need) {
        void *p = a->buf + a->used;
        a->used += need;
        return p;
    }
    return malloc(size);
}

static void arena_free(void *data, void *ptr)
{
    arena *a = data;
    uintptr_t p = (uintptr_t)ptr, lo = (uintptr_t)a->buf;
    if (p >= lo && p < lo + a->cap) return;
    free(ptr);
}

enum {
    RANK_SCOPE = 1,     /* scope not covered */
    RANK_PURPOSE,       /* purpose not covered */
    RANK_REVOKED,
    RANK_TIME,          /* not yet valid or expired */
    RANK_PERMIT,
};

static int has_str(char *const *v, size_t n, const char *s)
{
    for (size_t i = 0; i < n; i++) {
        if (strcmp(v[i], s) == 0) return 1;
    }
    return 0;
}

static int rank(const Consent__GrantRecord *g, const char *scope, const char *purpose,
                uint64_t at_s, const char **reason)
{
    if (!has_str(g->scopes, g->n_scopes, scope)) return *reason = "scope not covered", RANK_SCOPE;
    if (!has_str(g->purposes, g->n_purposes, purpose))
        return *reason = "purpose not covered", RANK_PURPOSE;
    if (g->status != CHAIN_GRANT_ACTIVE) return *reason = "grant revoked", RANK_REVOKED;
    if (at_s < g->not_before) return *reason = "grant not yet valid", RANK_TIME;
    if (at_s >= g->not_after) return *reason = "grant expired", RANK_TIME;
    return *reason = "active grant covers scope and purpose", RANK_PERMIT;
}

static int decide(chain_check_result *out, const Consent__GrantList *list, const char *scope,
                  const char *purpose, uint64_t at_s)
{
    const Consent__GrantRecord *best = NULL;
    const char *best_reason = "no grant from this patient to this grantee";
    int best_rank = 0;
    assert(list->n_grants <= CHAIN_GRANTS_PER_PAIR_MAX);
    for (size_t i = 0; i < list->n_grants && best_rank < RANK_PERMIT; i++) {
        const char *reason = NULL;
        int r = rank(list->grants[i], scope, purpose, at_s, &reason);
        if (r >= best_rank) {
            best = list->grants[i];
            best_rank = r;
            best_reason = reason;
        }
    }
    out->decision = best_rank == RANK_PERMIT ? CHAIN_PERMIT : CHAIN_DENY;
    snprintf(out->reason, sizeof out->reason, "%s", best_reason);
    if (best == NULL) return CHAIN_OK;
    int rc = chain__grant_from_pb(&out->grant, best);
    if (rc != CHAIN_OK) return rc;
    out->has_grant = 1;
    return CHAIN_OK;
}

/* Decodes an encoded GrantList into the arena `mem` and decides. A list
 * that does not decode or breaks the per-pair bound is CHAIN_EIO, and the
 * answer stays deny. */
static int check_list(chain_check_result *out, uint8_t *mem, size_t mem_len, const uint8_t *val,
                      size_t len, const char *scope, const char *purpose, uint64_t at_s)
{
    arena a = {mem, mem_len, 0};
    ProtobufCAllocator alloc = {arena_alloc, arena_free, &a};
    Consent__GrantList *list = consent__grant_list__unpack(&alloc, len, val);
    int rc;
    if (list == NULL || list->n_grants > CHAIN_GRANTS_PER_PAIR_MAX) rc = CHAIN_EIO;
    else rc = decide(out, list, scope, purpose, at_s);
    if (list != NULL) consent__grant_list__free_unpacked(list, &alloc);
    if (rc != CHAIN_OK) out->decision = CHAIN_DENY;
    return rc;
}

/* Reads the pair list into buf, or into a malloc'd *heap when larger. The
 * size can change between tries if a block commits meanwhile; bounded. */
static int read_pair(chain_store *st, uint8_t *buf, size_t cap, uint8_t **heap, const uint8_t **val,
                     size_t *len, const uint8_t *key, size_t klen)
{
    int rc = chain__store_read(st, buf, cap, len, key, klen);
    *val = buf;
    for (int i = 0; rc == CHAIN_EBOUNDS && i < CHECK_READ_TRIES; i++) {
        free(*heap);
        size_t want = *len;
        *heap = malloc(want);
        if (*heap == NULL) return CHAIN_ENOMEM;
        rc = chain__store_read(st, *heap, want, len, key, klen);
        *val = *heap;
    }
    return rc == CHAIN_EBOUNDS ? CHAIN_EIO : rc;
}

int chain_check(chain_store *st, chain_check_result *out, const chain_pubkey *patient,
                const chain_pubkey *grantee, const char *scope, const char *purpose,
                uint64_t at_s)
{
    if (st == NULL || out == NULL || patient == NULL || grantee == NULL || scope == NULL ||
        purpose == NULL)
        return CHAIN_EINVAL;
    if (!chain_scope_valid(scope) || !chain_purpose_valid(purpose)) return CHAIN_ECODE;
    alignas(max_align_t) uint8_t buf[CHECK_BUF_BYTES];
    alignas(max_align_t) uint8_t mem[CHECK_ARENA_BYTES];
    uint8_t key[CHAIN__KEY_MAX], *heap = NULL;
    const uint8_t *val = NULL;
    size_t len = 0, klen;
    uint8_t inst[CHECK_INST_BYTES];
    size_t inst_len = 0;
    uint64_t height = chain_store_height(st);
    out->decision = CHAIN_DENY;
    out->has_grant = 0;
    out->height = height;
    klen = chain__key_inst(key, grantee);
    int rc = chain__store_read(st, inst, sizeof inst, &inst_len, key, klen);
    if (rc == CHAIN_ENOTFOUND) inst_len = 0, rc = CHAIN_OK;
    else if (rc == CHAIN_EBOUNDS) rc = CHAIN_EIO;
    if (rc != CHAIN_OK) return rc;
    klen = chain__key_pair(key, patient, grantee);
    rc = read_pair(st, buf, sizeof buf, &heap, &val, &len, key, klen);
    if (rc == CHAIN_ENOTFOUND) {
        snprintf(out->reason, sizeof out->reason, "no grant from this patient to this grantee");
        rc = CHAIN_OK;
    } else if (rc == CHAIN_OK) {
        rc = check_list(out, mem, sizeof mem, val, len, scope, purpose, at_s);
    }
    free(heap);
    if (rc == CHAIN_OK) rc = chain__check_grantee(out, grantee, inst, inst_len);
    return rc;
}

int chain__check_grantee(chain_check_result *out, const chain_pubkey *grantee, const uint8_t *inst,
                         size_t len)
{
    chain_institution in;
    const char *why = NULL;
    if (len == 0) {
        why = "grantee institution is not registered";
    } else if (chain__inst_decode(&in, inst, len) != CHAIN_OK ||
               memcmp(in.key.b, grantee->b, CHAIN_KEY_LEN) != 0) {
        out->decision = CHAIN_DENY;
        return CHAIN_EIO;
    } else if (!(in.roles & CHAIN_ROLE_GRANTEE)) {
        why = "grantee institution does not hold the grantee role";
    }
    if (why != NULL) {
        out->decision = CHAIN_DENY;
        snprintf(out->reason, sizeof out->reason, "%s", why);
    }
    return CHAIN_OK;
}

/* Shared with chain_check_verify (proof.c), so a client recomputes a
 * decision with exactly the code the node answered with. */
int chain__check_list(chain_check_result *out, const uint8_t *list, size_t len, const char *scope,
                      const char *purpose, uint64_t at_s)
{
    alignas(max_align_t) uint8_t mem[CHECK_ARENA_BYTES];
    static const uint8_t empty[1] = {0};
    assert(out != NULL && scope != NULL && purpose != NULL);
    assert(list != NULL || len == 0);
    out->decision = CHAIN_DENY;
    out->has_grant = 0;
    return check_list(out, mem, sizeof mem, len ? list : empty, len, scope, purpose, at_s);
}
