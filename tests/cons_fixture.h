/* cons_fixture.h — helpers shared by the consensus tests (test_cons.c,
 * test_sim.c): an in-memory genesis with n validators and their keys, a
 * seeded PRNG, and a direct check of commit certificates.
 */
#ifndef CONSENT_TESTS_CONS_FIXTURE_H
#define CONSENT_TESTS_CONS_FIXTURE_H

#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "chain/chain.h"
#include "consensus/cons.h"

#define FIX_CHAIN_ID "cons-test"

typedef struct {
    chain_genesis *g;
    chain_key *keys[CHAIN_VALIDATORS_MAX];
    uint32_t n;
} fix_net;

/* Validator i's key is derived from (i, salt), so runs are reproducible. */
static inline chain_key *fix_key(uint32_t i, uint32_t salt)
{
    uint8_t seed[16];
    chain_hash sec;
    memcpy(seed, "cons-key", 8);
    memcpy(seed + 8, &i, 4);
    memcpy(seed + 12, &salt, 4);
    chain_sha256(&sec, seed, sizeof seed);
    return chain_key_create(sec.b);
}

static inline int fix_net_init(fix_net *net, uint32_t n)
{
    memset(net, 0, sizeof *net);
    net->g = calloc(1, sizeof *net->g);
    if (net->g == NULL) return -1;
    net->n = n;
    snprintf(net->g->chain_id, sizeof net->g->chain_id, "%s", FIX_CHAIN_ID);
    net->g->time_ms = 1795000000000ull;
    net->g->n_validators = n;
    net->g->n_institutions = n;
    for (uint32_t i = 0; i < n; i++) {
        net->keys[i] = fix_key(i, 0);
        if (net->keys[i] == NULL) return -1;
        chain_key_pubkey(net->keys[i], &net->g->institutions[i].key);
        snprintf(net->g->institutions[i].name, sizeof net->g->institutions[i].name, "val-%u", i);
        net->g->institutions[i].roles = CHAIN_ROLE_VALIDATOR;
    }
    return 0;
}

static inline void fix_net_free(fix_net *net)
{
    for (uint32_t i = 0; i < net->n; i++) chain_key_destroy(net->keys[i]);
    free(net->g);
    memset(net, 0, sizeof *net);
}

static inline cons_config fix_config(const fix_net *net, uint32_t i, uint32_t k, uint32_t window,
                                     uint64_t timeout_ms)
{
    cons_config c;
    memset(&c, 0, sizeof c);
    c.genesis = net->g;
    c.key = net->keys[i];
    c.checkpoint_interval = k;
    c.window = window;
    c.view_timeout_ms = timeout_ms;
    return c;
}

/* splitmix64: small, seedable, good enough to drive a schedule. */
typedef struct { uint64_t s; } fix_rng;
static inline uint64_t fix_next(fix_rng *r)
{
    uint64_t z = (r->s += 0x9e3779b97f4a7c15ull);
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
    return z ^ (z >> 31);
}
static inline uint64_t fix_below(fix_rng *r, uint64_t n) { return n == 0 ? 0 : fix_next(r) % n; }
static inline int fix_chance(fix_rng *r, double p) { return (double)(fix_next(r) >> 11) / 9007199254740992.0 < p; }

/* A commit certificate checked the way chain_cert_verify checks it, minus
 * the header: >= quorum distinct genesis validators signed
 * chain_commit_sighash(view, height, block_hash). Returns 0 if it holds. */
static inline int fix_cert_check(const chain_genesis *g, const chain_cert *c, uint64_t height,
                                 const chain_hash *digest)
{
    chain_hash msg;
    uint64_t seen = 0;
    uint32_t ok = 0, quorum = 2 * ((g->n_validators - 1) / 3) + 1;
    if (c->height != height || memcmp(&c->block_hash, digest, sizeof *digest) != 0) return -1;
    if (c->n_sigs > CHAIN_VALIDATORS_MAX) return -1;
    chain_commit_sighash(&msg, g->chain_id, c->view, c->height, &c->block_hash);
    for (uint32_t i = 0; i < c->n_sigs; i++) {
        int idx = chain_genesis_validator_index(g, &c->sigs[i].validator);
        if (idx < 0 || (seen & (1ull << idx))) return -1;
        if (chain_verify(&c->sigs[i].validator, &c->sigs[i].sig, &msg) != CHAIN_OK) return -1;
        seen |= 1ull << idx;
        ok++;
    }
    return ok >= quorum ? 0 : -1;
}

#endif
