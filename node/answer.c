/* answer.c — the JSON of a check answer, printed straight into one buffer.
 *
 * Checks are the node's hot path (tens of thousands a second per core):
 * building the answer with jansson took about a fifth of the CPU of a
 * session-authenticated check (an object per field, then a dump), so this
 * one answer is printed directly, with the same fields, order and compact
 * spelling as api.c's jansson answers (README, "HTTP API"). One malloc,
 * sized from the content up front; strings are JSON-escaped.
 */
#include <assert.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "node/node_int.h"

typedef struct {
    char *p;
    size_t len, cap;
} out;

static void put(out *o, const char *s, size_t n) {
    assert(o->cap - o->len > n);   /* sized up front */
    memcpy(o->p + o->len, s, n);
    o->len += n;
}

static void puts_(out *o, const char *s) { put(o, s, strlen(s)); }

/* A JSON string: quotes, backslashes and control characters escaped
 * (at most 6 bytes per input byte). */
static void str(out *o, const char *s) {
    put(o, "\"", 1);
    for (; *s; s++) {
        unsigned char c = (unsigned char)*s;
        if (c == '"' || c == '\\') {
            char e[2] = {'\\', (char)c};
            put(o, e, 2);
        } else if (c < 0x20) {
            char e[8];
            snprintf(e, sizeof e, "\\u%04x", c);
            put(o, e, 6);
        } else {
            put(o, (const char *)&c, 1);
        }
    }
    put(o, "\"", 1);
}

static void hex(out *o, const uint8_t *b, size_t n) {
    assert(o->cap - o->len > 2 * n + 2);
    o->p[o->len++] = '"';
    chain_hex(o->p + o->len, b, n);
    o->len += 2 * n;
    o->p[o->len++] = '"';
}

static void u64(out *o, uint64_t v) {
    char b[24];
    int n = snprintf(b, sizeof b, "%" PRIu64, v);
    put(o, b, (size_t)n);
}

static void field(out *o, const char *name) {
    if (o->p[o->len - 1] != '{') put(o, ",", 1);
    put(o, "\"", 1);
    puts_(o, name);
    put(o, "\":", 2);
}

static void codes(out *o, const chain_code *c, uint32_t n) {
    put(o, "[", 1);
    for (uint32_t i = 0; i < n; i++) {
        if (i) put(o, ",", 1);
        str(o, c[i].s);
    }
    put(o, "]", 1);
}

static void grant(out *o, const chain_grant_record *r) {
    put(o, "{", 1);
    field(o, "id"), hex(o, r->id.b, CHAIN_HASH_LEN);
    field(o, "patient"), hex(o, r->grant.patient.b, CHAIN_KEY_LEN);
    field(o, "grantee"), hex(o, r->grant.grantee.b, CHAIN_KEY_LEN);
    field(o, "scopes"), codes(o, r->grant.scopes, r->grant.n_scopes);
    field(o, "purposes"), codes(o, r->grant.purposes, r->grant.n_purposes);
    field(o, "not_before"), u64(o, r->grant.not_before);
    field(o, "not_after"), u64(o, r->grant.not_after);
    field(o, "status"), str(o, r->status == CHAIN_GRANT_ACTIVE ? "active" : "revoked");
    field(o, "granted_height"), u64(o, r->granted_height);
    field(o, "revoked_height"), u64(o, r->revoked_height);
    field(o, "granted_by"), hex(o, r->granted_by.b, CHAIN_KEY_LEN);
    put(o, "}", 1);
}

static size_t codes_bound(const chain_code *c, uint32_t n) {
    size_t b = 2;
    for (uint32_t i = 0; i < n; i++) b += 6 * strlen(c[i].s) + 3;
    return b;
}

char *node__check_json(size_t *len, const chain_check_result *r, uint64_t at, const chain_check_proof *p) {
    size_t cap = 1024 + 6 * strlen(r->reason);
    if (r->has_grant)
        cap += codes_bound(r->grant.grant.scopes, r->grant.grant.n_scopes) +
               codes_bound(r->grant.grant.purposes, r->grant.grant.n_purposes);
    if (p) cap += 2 * (p->pair_list_len + p->smt_proof_len + p->inst_len + p->inst_proof_len + p->header_len + p->cert_len);
    out o = {malloc(cap), 0, cap};
    if (!o.p) return NULL;
    put(&o, "{", 1);
    field(&o, "decision"), str(&o, r->decision == CHAIN_PERMIT ? "permit" : "deny");
    field(&o, "reason"), str(&o, r->reason);
    field(&o, "height"), u64(&o, r->height);
    field(&o, "at"), u64(&o, at);
    if (r->has_grant) field(&o, "grant"), grant(&o, &r->grant);
    if (p) {
        field(&o, "proof"), put(&o, "{", 1);
        field(&o, "height"), u64(&o, p->height);
        field(&o, "pair_list"), hex(&o, p->pair_list, p->pair_list_len);
        field(&o, "smt_proof"), hex(&o, p->smt_proof, p->smt_proof_len);
        field(&o, "inst"), hex(&o, p->inst, p->inst_len);
        field(&o, "inst_proof"), hex(&o, p->inst_proof, p->inst_proof_len);
        field(&o, "header"), hex(&o, p->header, p->header_len);
        field(&o, "cert"), hex(&o, p->cert, p->cert_len);
        put(&o, "}", 1);
    }
    put(&o, "}", 1);
    *len = o.len;
    return o.p;
}
