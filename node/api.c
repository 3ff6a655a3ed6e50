/* api.c — the HTTP API routes (README, "HTTP API"), answered in JSON.
 *
 * Each route parses its inputs strictly (hex keys of exactly 64 digits,
 * decimal numbers without signs or spaces, known query parameters only),
 * then reads committed state from the store or the mempool. Nothing here
 * changes state except admission of transactions, which goes through
 * node__submit_tx. Every refusal is a 4xx with {"error": reason}.
 *
 * Who may ask: checks and patient listings reveal who is interested in
 * whom, so they need a signed request (chain_api_verify over method, target
 * and time; headers X-Consent-Key, X-Consent-Time, X-Consent-Signature) or
 * a session's MAC over the same (POST /v1/sessions, session.c;
 * X-Consent-Session, X-Consent-Time, X-Consent-Mac): a
 * check by the grantee institution itself or an operator (a validator key),
 * a listing by the patient, their guardian or an operator. Every such
 * request, answered or refused, goes to the audit log (audit.c). Status,
 * blocks, metrics, events and transaction submission stay open: blocks are
 * replicated to every validator anyway and transactions authenticate
 * themselves.
 */
#include <assert.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <http_parser.h>
#include <jansson.h>
#include <openssl/crypto.h>
#include <openssl/rand.h>

#include "node/node_int.h"

#define QUERY_PARAMS_MAX 8
#define QUERY_VALUE_MAX 256

/* ------------------------------------------------------------------ helpers */
static void reply(node__http_resp *resp, int status, json_t *o) {
    resp->status = status;
    resp->content_type = "application/json";
    resp->body = o ? json_dumps(o, JSON_COMPACT) : NULL;
    resp->body_len = resp->body ? strlen(resp->body) : 0;
    json_decref(o);
}

static json_t *hexj(const uint8_t *b, size_t len) {
    char s[2 * CHAIN_SIG_LEN + 1];
    assert(len <= CHAIN_SIG_LEN);
    chain_hex(s, b, len);
    return json_string(s);
}

static json_t *u64j(uint64_t v) { return json_integer((json_int_t)v); }

/* Digit value + 1 of lower-case hex digits, 0 for anything else (NUL too,
 * so a short string stops the scan at its end). */
static const uint8_t hex_lut[256] = {
    ['0'] = 1, ['1'] = 2, ['2'] = 3, ['3'] = 4, ['4'] = 5, ['5'] = 6, ['6'] = 7, ['7'] = 8,
    ['8'] = 9, ['9'] = 10, ['a'] = 11, ['b'] = 12, ['c'] = 13, ['d'] = 14, ['e'] = 15, ['f'] = 16,
};

/* Exactly 2*len lower-case hex digits, in one pass (every check parses
 * several keys; out may be partly written on failure). */
static int parse_hex(uint8_t *out, size_t len, const char *s) {
    for (size_t i = 0; i < len; i++) {
        uint8_t hi = hex_lut[(unsigned char)s[2 * i]], lo;
        if (!hi || !(lo = hex_lut[(unsigned char)s[2 * i + 1]])) return -1;
        out[i] = (uint8_t)((hi - 1) << 4 | (lo - 1));
    }
    return s[2 * len] == 0 ? 0 : -1;
}

/* A decimal u64: 1..20 digits, no sign, no overflow. */
static int parse_u64(uint64_t *out, const char *s) {
    size_t n = strlen(s);
    if (n == 0 || n > 20) return -1;
    uint64_t v = 0;
    for (const char *p = s; *p; p++) {
        if (*p < '0' || *p > '9') return -1;
        uint64_t d = (uint64_t)(*p - '0');
        if (v > (UINT64_MAX - d) / 10) return -1;
        v = v * 10 + d;
    }
    *out = v;
    return 0;
}

typedef struct {
    size_t n;
    char key[QUERY_PARAMS_MAX][32];
    char val[QUERY_PARAMS_MAX][QUERY_VALUE_MAX];
} query;

static int hexval(char c) {
    if (c >= '0' && c <= '9') return c - '0';
    if (c >= 'a' && c <= 'f') return c - 'a' + 10;
    if (c >= 'A' && c <= 'F') return c - 'A' + 10;
    return -1;
}

/* Percent-decodes [s, s+len) into out (cap bytes); refuses bad escapes and NUL. */
static int url_decode(char *out, size_t cap, const char *s, size_t len) {
    size_t j = 0;
    for (size_t i = 0; i < len; i++) {
        int c = (unsigned char)s[i];
        if (c == '%') {
            if (i + 2 >= len) return -1;
            int hi = hexval(s[i + 1]), lo = hexval(s[i + 2]);
            if (hi < 0 || lo < 0) return -1;
            c = hi * 16 + lo;
            i += 2;
        } else if (c == '+') {
            c = ' ';
        }
        if (c == 0 || j + 1 >= cap) return -1;
        out[j++] = (char)c;
    }
    out[j] = 0;
    return 0;
}

/* Parses the query; only names in `allowed` (NULL-terminated), each once. */
static int parse_query(query *q, char *err, size_t errlen, const char *s, const char *const *allowed) {
    q->n = 0;
    while (*s) {
        const char *amp = strchr(s, '&');
        size_t len = amp ? (size_t)(amp - s) : strlen(s);
        const char *eq = memchr(s, '=', len);
        if (len > 0) {
            if (q->n == QUERY_PARAMS_MAX) return snprintf(err, errlen, "too many query parameters"), -1;
            size_t klen = eq ? (size_t)(eq - s) : len;
            if (url_decode(q->key[q->n], sizeof(q->key[0]), s, klen) ||
                url_decode(q->val[q->n], sizeof(q->val[0]), eq ? eq + 1 : s + len,
                           eq ? len - klen - 1 : 0))
                return snprintf(err, errlen, "malformed query string"), -1;
            size_t a = 0;
            while (allowed[a] && strcmp(allowed[a], q->key[q->n]) != 0) a++;
            if (!allowed[a])
                return snprintf(err, errlen, "unknown query parameter \"%.31s\"", q->key[q->n]), -1;
            for (size_t i = 0; i < q->n; i++)
                if (strcmp(q->key[i], q->key[q->n]) == 0)
                    return snprintf(err, errlen, "query parameter \"%.31s\" given twice", q->key[i]), -1;
            q->n++;
        }
        s += len + (amp ? 1 : 0);
    }
    return 0;
}

static const char *qget(const query *q, const char *key) {
    for (size_t i = 0; i < q->n; i++)
        if (strcmp(q->key[i], key) == 0) return q->val[i];
    return NULL;
}

/* "/prefix/<seg>" → seg copied into out (cap); -1 if the path does not match. */
static int path_arg(char *out, size_t cap, const char *path, const char *prefix, const char *suffix) {
    size_t pl = strlen(prefix), sl = strlen(suffix), n = strlen(path);
    if (n < pl + sl || strncmp(path, prefix, pl) != 0 || strcmp(path + n - sl, suffix) != 0) return -1;
    size_t al = n - pl - sl;
    if (al == 0 || al + 1 > cap || memchr(path + pl, '/', al)) return -1;
    memcpy(out, path + pl, al);
    out[al] = 0;
    return 0;
}

/* ------------------------------------------------------------------ json */
static json_t *strings_j(const chain_code *codes, uint32_t n) {
    json_t *a = json_array();
    for (uint32_t i = 0; i < n; i++) json_array_append_new(a, json_string(codes[i].s));
    return a;
}

static json_t *grant_j(const chain_grant_record *r) {
    return json_pack("{s:o,s:o,s:o,s:o,s:o,s:o,s:o,s:s,s:o,s:o,s:o}",
                     "id", hexj(r->id.b, CHAIN_HASH_LEN),
                     "patient", hexj(r->grant.patient.b, CHAIN_KEY_LEN),
                     "grantee", hexj(r->grant.grantee.b, CHAIN_KEY_LEN),
                     "scopes", strings_j(r->grant.scopes, r->grant.n_scopes),
                     "purposes", strings_j(r->grant.purposes, r->grant.n_purposes),
                     "not_before", u64j(r->grant.not_before),
                     "not_after", u64j(r->grant.not_after),
                     "status", r->status == CHAIN_GRANT_ACTIVE ? "active" : "revoked",
                     "granted_height", u64j(r->granted_height),
                     "revoked_height", u64j(r->revoked_height),
                     "granted_by", hexj(r->granted_by.b, CHAIN_KEY_LEN));
}

static json_t *cert_j(const chain_cert *c) {
    json_t *sigs = json_array();
    for (uint32_t i = 0; i < c->n_sigs && i < CHAIN_VALIDATORS_MAX; i++)
        json_array_append_new(sigs, json_pack("{s:o,s:o}",
                                              "validator", hexj(c->sigs[i].validator.b, CHAIN_KEY_LEN),
                                              "signature", hexj(c->sigs[i].sig.b, CHAIN_SIG_LEN)));
    return json_pack("{s:o,s:o,s:o,s:o}", "view", u64j(c->view), "height", u64j(c->height),
                     "block_hash", hexj(c->block_hash.b, CHAIN_HASH_LEN), "sigs", sigs);
}

static json_t *header_j(const chain_header *h) {
    chain_hash hash;
    chain_header_hash(h, &hash);
    return json_pack("{s:s,s:o,s:o,s:o,s:o,s:o,s:o,s:o,s:o,s:o}",
                     "chain_id", h->chain_id, "height", u64j(h->height),
                     "prev_hash", hexj(h->prev_hash.b, CHAIN_HASH_LEN), "time_ms", u64j(h->time_ms),
                     "proposer", hexj(h->proposer.b, CHAIN_KEY_LEN),
                     "tx_root", hexj(h->tx_root.b, CHAIN_HASH_LEN),
                     "state_root", hexj(h->state_root.b, CHAIN_HASH_LEN),
                     "valset_hash", hexj(h->valset_hash.b, CHAIN_HASH_LEN), "view", u64j(h->view),
                     "hash", hexj(hash.b, CHAIN_HASH_LEN));
}

static json_t *block_j(const chain_block *b) {
    json_t *o = header_j(&b->hdr);
    json_t *txs = json_array();
    for (uint32_t i = 0; i < b->n_txs; i++) {
        char *s = malloc(2 * b->tx_lens[i] + 1);
        if (!s) {
            json_decref(txs);
            json_decref(o);
            return NULL;
        }
        chain_hex(s, b->txs[i], b->tx_lens[i]);
        json_array_append_new(txs, json_string(s));
        free(s);
    }
    json_object_set_new(o, "txs", txs);
    json_object_set_new(o, "cert", cert_j(&b->cert));
    return o;
}

/* ------------------------------------------------------------------ auth */
typedef struct {
    int signed_by;                   /* 1: key holds a verified caller */
    chain_pubkey key;
    node__session *session;          /* the session it came through, or NULL */
} caller;

/* A session request: X-Consent-Session, X-Consent-Time, X-Consent-Mac.
 * NULL if it passes (who->key = the session's caller), else why not. */
static const char *session_auth(node *n, caller *who, const node__http_req *req) {
    uint8_t sid[CHAIN_API_SESSION_ID_LEN], mac[CHAIN_API_MAC_LEN];
    uint64_t t = 0;
    node__session *ses = NULL;
    if (req->auth_key[0] || req->auth_sig[0])
        return "X-Consent-Session does not go with X-Consent-Key or X-Consent-Signature";
    if (!req->auth_time[0] || !req->auth_mac[0]) return "X-Consent-Session, X-Consent-Time and X-Consent-Mac go together";
    if (parse_hex(sid, sizeof sid, req->auth_session)) return "X-Consent-Session must be 32 lower-case hex digits";
    if (parse_u64(&t, req->auth_time)) return "X-Consent-Time must be unix seconds";
    if (parse_hex(mac, sizeof mac, req->auth_mac)) return "X-Consent-Mac must be 64 lower-case hex digits";
    uint64_t now = node__now_s();
    int rc = node__session_find(node__get_sessions(n), sid, now, &ses);
    if (rc == CHAIN_ENOTFOUND) return "unknown session (open one with POST /v1/sessions)";
    if (rc) return "session expired (open a new one with POST /v1/sessions)";
    rc = chain_api_mac_verify(ses->mac, mac, http_method_str((enum http_method)req->method), req->target, t, now);
    if (rc == CHAIN_ETIME) return "X-Consent-Time is more than 300 s from the node's clock";
    if (rc) return "bad request MAC";
    who->key = ses->caller;
    who->session = ses;
    return NULL;
}

/* A signed request: X-Consent-Key, X-Consent-Time, X-Consent-Signature
 * over method, target, time (and the body, if any). NULL if it passes. */
static const char *signature_auth(caller *who, const node__http_req *req) {
    chain_sig sig;
    uint64_t t = 0;
    if (req->auth_mac[0]) return "X-Consent-Mac goes with X-Consent-Session";
    if (!req->auth_key[0] || !req->auth_time[0] || !req->auth_sig[0])
        return "X-Consent-Key, X-Consent-Time and X-Consent-Signature go together";
    if (parse_hex(who->key.b, CHAIN_KEY_LEN, req->auth_key)) return "X-Consent-Key must be 64 lower-case hex digits";
    if (parse_u64(&t, req->auth_time)) return "X-Consent-Time must be unix seconds";
    if (parse_hex(sig.b, CHAIN_SIG_LEN, req->auth_sig)) return "X-Consent-Signature must be 128 lower-case hex digits";
    int rc = chain_api_verify_body(&who->key, &sig, http_method_str((enum http_method)req->method), req->target, t,
                                   node__now_s(), req->body, req->body_len);
    if (rc == CHAIN_ETIME) return "X-Consent-Time is more than 300 s from the node's clock";
    if (rc) return "bad request signature";
    return NULL;
}

/* Authenticates the request if it carries credentials (a session MAC or a
 * signature). -1 with a 401 answer for incomplete, malformed, stale or
 * wrong ones; 0 otherwise (who says whether anyone authenticated). */
static int authenticate(node *n, caller *who, node__http_resp *resp, const node__http_req *req) {
    who->signed_by = 0;
    who->session = NULL;
    int have = req->auth_key[0] || req->auth_time[0] || req->auth_sig[0] || req->auth_session[0] || req->auth_mac[0];
    if (!have) return 0;
    const char *why = req->auth_session[0] ? session_auth(n, who, req) : signature_auth(who, req);
    if (why) {
        node__http_error(resp, 401, why);
        return -1;
    }
    who->signed_by = 1;
    return 0;
}

static int key_eq(const chain_pubkey *a, const chain_pubkey *b) {
    return memcmp(a->b, b->b, CHAIN_KEY_LEN) == 0;
}

/* Operators: the validators of genesis. */
static int is_operator(node *n, const chain_pubkey *k) {
    return chain_genesis_validator_index(node_genesis(n), k) >= 0;
}

static void audit(node *n, const caller *who, const char *route, const chain_pubkey *patient,
                  const chain_pubkey *grantee, const char *decision) {
    if (node__audit_log(node__get_audit(n), node__now_ms(), who->signed_by ? &who->key : NULL, route,
                        patient, grantee, decision) != 0)
        node_log(node_get_logger(n), NODE_LOG_ERROR, "audit log: cannot append (%s)", route);
}

void node__api_flush(void *arg) {
    node *n = arg;
    if (node__audit_flush(node__get_audit(n), node__now_ms()) != 0)
        node_log(node_get_logger(n), NODE_LOG_ERROR, "audit log: cannot append");
}

/* 401 for no signature, 403 for a caller the rule leaves out; both audited. */
static void refuse_caller(node *n, node__http_resp *resp, const caller *who, const char *route,
                          const chain_pubkey *patient, const chain_pubkey *grantee, const char *rule) {
    if (!who->signed_by) {
        node__http_error(resp, 401, "this route needs a signed request (X-Consent-Key, X-Consent-Time, "
                                    "X-Consent-Signature) or a session (X-Consent-Session, X-Consent-Mac)");
        audit(n, who, route, patient, grantee, "refused-401");
        return;
    }
    node__http_error(resp, 403, rule);
    audit(n, who, route, patient, grantee, "refused-403");
}

/* ------------------------------------------------------------------ txs */
/* The transaction bytes of POST /v1/txs: raw protobuf or {"tx": "<hex>"}. */
static int tx_body(uint8_t *out, size_t *len, node__http_resp *resp, const node__http_req *req) {
    if (strcmp(req->content_type, "application/json") != 0) {
        if (req->content_type[0] && strcmp(req->content_type, "application/x-protobuf") != 0 &&
            strcmp(req->content_type, "application/octet-stream") != 0) {
            node__http_error(resp, 415, "content type must be application/x-protobuf or application/json");
            return -1;
        }
        if (req->body_len == 0 || req->body_len > CHAIN_TX_BYTES_MAX) {
            node__http_error(resp, req->body_len ? 413 : 400,
                             req->body_len ? "transaction too large" : "empty body");
            return -1;
        }
        memcpy(out, req->body, req->body_len);
        *len = req->body_len;
        return 0;
    }
    json_error_t je;
    json_t *o = json_loadb((const char *)req->body, req->body_len, JSON_REJECT_DUPLICATES, &je);
    json_t *tx = o && json_is_object(o) && json_object_size(o) == 1 ? json_object_get(o, "tx") : NULL;
    const char *hex = json_is_string(tx) ? json_string_value(tx) : NULL;
    size_t hl = hex ? json_string_length(tx) : 0;
    int rc = -1;
    if (!o) node__http_error(resp, 400, "malformed JSON body");
    else if (!hex) node__http_error(resp, 400, "body must be {\"tx\": \"<hex>\"}");
    else if (hl == 0 || hl % 2 || hl > 2 * CHAIN_TX_BYTES_MAX || chain_unhex(out, hl / 2, hex) != 0)
        node__http_error(resp, 400, "\"tx\" is not hex of an encoded transaction");
    else {
        *len = hl / 2;
        rc = 0;
    }
    json_decref(o);
    return rc;
}

static void route_submit(node *n, node__http_resp *resp, const node__http_req *req) {
    uint8_t buf[CHAIN_TX_BYTES_MAX];
    size_t len = 0;
    if (tx_body(buf, &len, resp, req)) return;
    chain_hash h;
    char reason[NODE_REASON_MAX];
    int status = 400;
    if (node__submit_tx(n, &h, reason, &status, buf, len, 0) != 0) {
        node__http_error(resp, status, reason);
        return;
    }
    reply(resp, 202, json_pack("{s:o}", "hash", hexj(h.b, CHAIN_HASH_LEN)));
}

static uint32_t be32(const uint8_t *p) {
    return (uint32_t)p[0] << 24 | (uint32_t)p[1] << 16 | (uint32_t)p[2] << 8 | p[3];
}

/* Frames are checked as a whole first, so a malformed batch admits nothing. */
static int batch_frames(const node__http_req *req, char *err, size_t errlen) {
    size_t off = 0;
    int count = 0;
    while (off < req->body_len) {
        if (req->body_len - off < 4) return snprintf(err, errlen, "truncated frame header"), -1;
        uint32_t len = be32(req->body + off);
        if (len == 0 || len > CHAIN_TX_BYTES_MAX)
            return snprintf(err, errlen, "frame %d: length %u out of 1..%d", count, len, CHAIN_TX_BYTES_MAX), -1;
        if (req->body_len - off - 4 < len) return snprintf(err, errlen, "frame %d truncated", count), -1;
        off += 4 + len;
        if (++count > NODE_BATCH_TXS_MAX)
            return snprintf(err, errlen, "more than %d transactions", NODE_BATCH_TXS_MAX), -1;
    }
    if (count == 0) return snprintf(err, errlen, "empty batch"), -1;
    return count;
}

static void route_batch(node *n, node__http_resp *resp, const node__http_req *req) {
    char err[128];
    if (batch_frames(req, err, sizeof(err)) < 0) {
        node__http_error(resp, 400, err);
        return;
    }
    json_t *results = json_array();
    int accepted = 0, rejected = 0;
    for (size_t off = 0; off < req->body_len;) {
        uint32_t len = be32(req->body + off);
        const uint8_t *tx = req->body + off + 4;
        off += 4 + len;
        chain_hash h;
        chain_tx_hash(&h, tx, len);
        char reason[NODE_REASON_MAX];
        int status = 400;
        int rc = node__submit_tx(n, &h, reason, &status, tx, len, 0);
        json_t *r = json_pack("{s:o,s:i}", "hash", hexj(h.b, CHAIN_HASH_LEN), "status", rc ? status : 202);
        if (rc) json_object_set_new(r, "error", json_string(reason));
        json_array_append_new(results, r);
        rc ? rejected++ : accepted++;
    }
    reply(resp, 200, json_pack("{s:i,s:i,s:o}", "accepted", accepted, "rejected", rejected,
                               "results", results));
}

static void route_tx_status(node *n, node__http_resp *resp, const char *arg) {
    chain_hash h;
    if (parse_hex(h.b, CHAIN_HASH_LEN, arg)) {
        node__http_error(resp, 400, "tx hash must be 64 lower-case hex digits");
        return;
    }
    json_t *o = json_pack("{s:o}", "hash", hexj(h.b, CHAIN_HASH_LEN));
    uint64_t height;
    uint32_t index;
    char reason[NODE_REASON_MAX];
    int rc = chain_store_get_tx(node_store(n), &h, &height, &index);
    if (rc == 0) {
        json_object_set_new(o, "status", json_string("committed"));
        json_object_set_new(o, "height", u64j(height));
        json_object_set_new(o, "index", u64j(index));
    } else if (rc != CHAIN_ENOTFOUND) {
        json_decref(o);
        node__http_error(resp, 500, chain_strerror(rc));
        return;
    } else if (node__mempool_find(node__get_mempool(n), &h)) {
        json_object_set_new(o, "status", json_string("pending"));
    } else if (node__rejects_find(node__get_rejects(n), reason, &h)) {
        json_object_set_new(o, "status", json_string("rejected"));
        json_object_set_new(o, "reason", json_string(reason));
    } else {
        json_object_set_new(o, "status", json_string("unknown"));
    }
    reply(resp, 200, o);
}

static void route_account(node *n, node__http_resp *resp, const char *arg) {
    chain_pubkey k;
    if (parse_hex(k.b, CHAIN_KEY_LEN, arg)) {
        node__http_error(resp, 400, "key must be 64 lower-case hex digits");
        return;
    }
    uint64_t nonce = chain_store_nonce(node_store(n), &k);
    uint64_t pending = node__mempool_signer_nonce(node__get_mempool(n), &k);
    uint64_t next = (pending > nonce ? pending : nonce) + 1;
    reply(resp, 200, json_pack("{s:o,s:o,s:o}", "key", hexj(k.b, CHAIN_KEY_LEN), "nonce", u64j(nonce),
                               "next_nonce", u64j(next)));
}

/* ------------------------------------------------------------------ grants */
typedef struct {
    chain_pubkey patient, grantee;
    char scope[QUERY_VALUE_MAX], purpose[QUERY_VALUE_MAX];
    uint64_t at;
    int proof;
} check_args;

static int check_parse(check_args *a, char *err, size_t errlen, const char *qs) {
    static const char *const allowed[] = {"patient", "grantee", "scope", "purpose", "at", "proof", NULL};
    query q;
    if (parse_query(&q, err, errlen, qs, allowed)) return -1;
    const char *p = qget(&q, "patient"), *g = qget(&q, "grantee"), *s = qget(&q, "scope");
    const char *u = qget(&q, "purpose"), *at = qget(&q, "at"), *pr = qget(&q, "proof");
    if (!p || !g || !s || !u) return snprintf(err, errlen, "patient, grantee, scope and purpose are required"), -1;
    if (parse_hex(a->patient.b, CHAIN_KEY_LEN, p)) return snprintf(err, errlen, "patient must be 64 lower-case hex digits"), -1;
    if (parse_hex(a->grantee.b, CHAIN_KEY_LEN, g)) return snprintf(err, errlen, "grantee must be 64 lower-case hex digits"), -1;
    if (!chain_scope_valid(s)) return snprintf(err, errlen, "unknown scope code"), -1;
    if (!chain_purpose_valid(u)) return snprintf(err, errlen, "unknown purpose code"), -1;
    a->at = node__now_s();
    if (at && parse_u64(&a->at, at)) return snprintf(err, errlen, "at must be unix seconds"), -1;
    if (pr && strcmp(pr, "0") != 0 && strcmp(pr, "1") != 0) return snprintf(err, errlen, "proof must be 0 or 1"), -1;
    a->proof = pr && strcmp(pr, "1") == 0;
    snprintf(a->scope, sizeof(a->scope), "%s", s);
    snprintf(a->purpose, sizeof(a->purpose), "%s", u);
    return 0;
}

/* A registered institution now; a session remembers a yes for the current
 * tip, which spares a store read per check. */
static int is_institution(node *n, const caller *who) {
    uint64_t at = node_height(n) + 1;
    if (who->session && who->session->inst_at == at) return 1;
    chain_institution inst;
    if (chain_store_institution(node_store(n), &who->key, &inst) != 0) return 0;
    if (who->session) who->session->inst_at = at;
    return 1;
}

/* The grantee institution itself, or an operator. */
static int check_allowed(node *n, const caller *who, const check_args *a) {
    if (!who->signed_by) return 0;
    if (is_operator(n, &who->key)) return 1;
    return key_eq(&who->key, &a->grantee) && is_institution(n, who);
}

/* The answer, proof included, read at one tip (the loop thread is the only
 * writer, so nothing commits in between), printed into resp's body
 * (answer.c). Returns 1 permit, 0 deny, -1 with resp set to the error. */
static int check_answer(node *n, node__http_resp *resp, const check_args *a) {
    chain_check_proof p;
    memset(&p, 0, sizeof(p));
    chain_check_result r;
    int rc;
    if (a->proof) {
        /* The decision comes from the very bytes the proof covers. */
        chain_check_query q = {a->patient, a->grantee, a->scope, a->purpose, a->at};
        rc = chain_check_prove_cached(node_store(n), node__get_proof_tip(n), &p, &a->patient, &a->grantee);
        if (rc == 0) rc = chain_check_decide(&r, &p, &q);
        if (rc == CHAIN_EDECODE) rc = CHAIN_EIO;   /* a stored list that does not decode */
    } else {
        rc = chain_check(node_store(n), &r, &a->patient, &a->grantee, a->scope, a->purpose, a->at);
    }
    if (rc == 0) {
        resp->body = node__check_json(&resp->body_len, &r, a->at, a->proof ? &p : NULL);
        if (!resp->body) rc = CHAIN_ENOMEM;
    }
    chain_check_proof_free(&p);
    if (rc) {
        node__http_error(resp, rc == CHAIN_ESTATE ? 409 : rc == CHAIN_EIO || rc == CHAIN_ENOMEM ? 500 : 400,
                         rc == CHAIN_ESTATE ? "no committed block yet: nothing to prove against" : chain_strerror(rc));
        return -1;
    }
    resp->status = 200;
    resp->content_type = "application/json";
    return r.decision == CHAIN_PERMIT;
}

static void route_check(node *n, node__http_resp *resp, const node__http_req *req) {
    check_args a;
    caller who;
    char err[128];
    if (check_parse(&a, err, sizeof(err), req->query)) {
        node__http_error(resp, 400, err);
        return;
    }
    if (authenticate(n, &who, resp, req)) {
        audit(n, &who, "check", &a.patient, &a.grantee, "refused-401");
        return;
    }
    if (!check_allowed(n, &who, &a)) {
        refuse_caller(n, resp, &who, "check", &a.patient, &a.grantee,
                      "only the grantee institution or an operator may ask this check");
        return;
    }
    int permit = check_answer(n, resp, &a);
    if (permit < 0) return;
    audit(n, &who, "check", &a.patient, &a.grantee, permit ? "permit" : "deny");
}

static void route_grant(node *n, node__http_resp *resp, const char *arg) {
    chain_hash id;
    if (parse_hex(id.b, CHAIN_HASH_LEN, arg)) {
        node__http_error(resp, 400, "grant id must be 64 lower-case hex digits");
        return;
    }
    chain_grant_record r;
    int rc = chain_store_get_grant(node_store(n), &id, &r);
    if (rc == CHAIN_ENOTFOUND) node__http_error(resp, 404, "grant not found");
    else if (rc) node__http_error(resp, 500, chain_strerror(rc));
    else reply(resp, 200, grant_j(&r));
}

typedef struct {
    json_t *arr;
    size_t n;
} grant_list;

static int collect_grant(void *arg, const chain_grant_record *rec) {
    grant_list *l = arg;
    if (l->n == NODE_PATIENT_GRANTS_MAX) return 1;
    json_array_append_new(l->arr, grant_j(rec));
    l->n++;
    return 0;
}

/* The patient, their guardian, or an operator. */
static int patient_allowed(node *n, const caller *who, const chain_pubkey *patient) {
    if (!who->signed_by) return 0;
    if (key_eq(&who->key, patient) || is_operator(n, &who->key)) return 1;
    chain_pubkey guardian;
    return chain_store_guardian(node_store(n), patient, &guardian) == 0 && key_eq(&guardian, &who->key);
}

/* Parses {key}, authenticates and applies the listing rule; 0 to go on,
 * -1 with resp set. */
static int patient_gate(node *n, node__http_resp *resp, chain_pubkey *p, caller *who,
                        const node__http_req *req, const char *arg, const char *route) {
    if (parse_hex(p->b, CHAIN_KEY_LEN, arg)) {
        node__http_error(resp, 400, "patient key must be 64 lower-case hex digits");
        return -1;
    }
    if (authenticate(n, who, resp, req)) {
        audit(n, who, route, p, NULL, "refused-401");
        return -1;
    }
    if (patient_allowed(n, who, p)) return 0;
    refuse_caller(n, resp, who, route, p, NULL, "only the patient, their guardian or an operator may list this");
    return -1;
}

static void route_patient_grants(node *n, node__http_resp *resp, const node__http_req *req, const char *arg) {
    chain_pubkey p;
    caller who;
    if (patient_gate(n, resp, &p, &who, req, arg, "patient_grants")) return;
    grant_list l = {json_array(), 0};
    int rc = chain_store_patient_grants(node_store(n), &p, collect_grant, &l);
    if (rc < 0) {
        json_decref(l.arr);
        node__http_error(resp, 500, chain_strerror(rc));
        return;
    }
    audit(n, &who, "patient_grants", &p, NULL, "listed");
    reply(resp, 200, json_pack("{s:o,s:o,s:b}", "patient", hexj(p.b, CHAIN_KEY_LEN), "grants", l.arr,
                               "truncated", rc == 1));
}

static json_t *access_j(const chain_access_summary *a) {
    return json_pack("{s:o,s:o,s:o,s:s,s:s,s:o,s:o,s:o}", "tx", hexj(a->tx_id.b, CHAIN_HASH_LEN),
                     "gateway", hexj(a->gateway.b, CHAIN_KEY_LEN),
                     "grant_id", hexj(a->grant_id.b, CHAIN_HASH_LEN), "scope", a->scope.s,
                     "purpose", a->purpose.s, "request_hash", hexj(a->request_hash.b, CHAIN_HASH_LEN),
                     "height", u64j(a->height), "time_ms", u64j(a->time_ms));
}

static int collect_access(void *arg, const chain_access_summary *a) {
    grant_list *l = arg;
    if (l->n == NODE_PATIENT_GRANTS_MAX) return 1;
    json_array_append_new(l->arr, access_j(a));
    l->n++;
    return 0;
}

/* GET /v1/patients/{key}/access: releases recorded under the patient's
 * grants (consent-wallet audit). */
static void route_patient_access(node *n, node__http_resp *resp, const node__http_req *req, const char *arg) {
    chain_pubkey p;
    caller who;
    if (patient_gate(n, resp, &p, &who, req, arg, "patient_access")) return;
    grant_list l = {json_array(), 0};
    int rc = chain_store_patient_access(node_store(n), &p, collect_access, &l);
    if (rc < 0) {
        json_decref(l.arr);
        node__http_error(resp, 500, chain_strerror(rc));
        return;
    }
    audit(n, &who, "patient_access", &p, NULL, "listed");
    reply(resp, 200, json_pack("{s:o,s:o,s:b}", "patient", hexj(p.b, CHAIN_KEY_LEN), "access", l.arr,
                               "truncated", rc == 1));
}

/* ------------------------------------------------------------------ sessions */
/* The caller's ephemeral key from {"public_key": "<66 hex>"}; -1 with resp set. */
static int session_body(uint8_t pub[CHAIN_API_EPH_PUB_LEN], node__http_resp *resp, const node__http_req *req) {
    if (strcmp(req->content_type, "application/json") != 0) {
        node__http_error(resp, 415, "content type must be application/json");
        return -1;
    }
    json_error_t je;
    json_t *o = json_loadb((const char *)req->body, req->body_len, JSON_REJECT_DUPLICATES, &je);
    json_t *pk = o && json_is_object(o) && json_object_size(o) == 1 ? json_object_get(o, "public_key") : NULL;
    const char *hex = json_is_string(pk) ? json_string_value(pk) : NULL;
    int rc = -1;
    if (!o) node__http_error(resp, 400, "malformed JSON body");
    else if (!hex) node__http_error(resp, 400, "body must be {\"public_key\": \"<66 hex>\"}");
    else if (parse_hex(pub, CHAIN_API_EPH_PUB_LEN, hex))
        node__http_error(resp, 400, "public_key must be 66 lower-case hex digits (a compressed secp256k1 point)");
    else if (!chain_api_eph_valid(pub)) node__http_error(resp, 400, "public_key is not a valid secp256k1 point");
    else rc = 0;
    json_decref(o);
    return rc;
}

/* POST /v1/sessions: a signed request (the body is part of what is signed,
 * so nobody can swap the key) of an institution or operator opens a
 * session for its signer. The node's
 * ephemeral secret lives only for this call. */
static void route_session(node *n, node__http_resp *resp, const node__http_req *req) {
    caller who;
    uint8_t cpub[CHAIN_API_EPH_PUB_LEN], npub[CHAIN_API_EPH_PUB_LEN], nsec[CHAIN_API_EPH_SEC_LEN];
    uint8_t key[CHAIN_API_SESSION_KEY_LEN], sid[CHAIN_API_SESSION_ID_LEN];
    uint64_t expires = 0;
    if (req->auth_session[0]) {
        node__http_error(resp, 401, "a session is opened with a signed request, not another session");
        return;
    }
    if (authenticate(n, &who, resp, req)) return;
    if (!who.signed_by) {
        node__http_error(resp, 401, "this route needs a signed request (X-Consent-Key, X-Consent-Time, "
                                    "X-Consent-Signature)");
        return;
    }
    /* Sessions serve callers that ask many questions: institutions and
     * operators, whose keys genesis or governance vouch for. Anyone else
     * (a patient, any fresh key) signs each request, so a flood of fresh
     * keys cannot fill the table. */
    if (!is_operator(n, &who.key) && !is_institution(n, &who)) {
        node__http_error(resp, 403, "sessions are for registered institutions and operators; "
                                    "other callers sign each request");
        return;
    }
    if (session_body(cpub, resp, req)) return;
    int rc = chain_api_eph_keygen(nsec, npub);
    /* 128 random bits: the id is unguessable, and bound into the key. */
    if (rc == 0) rc = RAND_bytes(sid, sizeof sid) == 1 ? 0 : -1;
    if (rc == 0) rc = chain_api_session_key(key, nsec, cpub, cpub, npub, &who.key, sid);
    if (rc == 0) rc = node__session_open(node__get_sessions(n), sid, &expires, &who.key, cpub, key, node__now_s());
    OPENSSL_cleanse(nsec, sizeof nsec);
    OPENSSL_cleanse(key, sizeof key);
    if (rc == NODE_EDUP) {
        node__http_error(resp, 409, "a session from this ephemeral key is open already (draw a new key)");
        return;
    }
    if (rc) {
        node__http_error(resp, 500, "cannot open a session");
        return;
    }
    reply(resp, 201, json_pack("{s:o,s:o,s:o}", "session", hexj(sid, sizeof sid), "public_key",
                               hexj(npub, sizeof npub), "expires", u64j(expires)));
}

/* ------------------------------------------------------------------ blocks */
static void route_block(node *n, node__http_resp *resp, const node__http_req *req, const char *arg) {
    static const char *const allowed[] = {"format", NULL};
    query q;
    char err[128];
    uint64_t h;
    if (parse_query(&q, err, sizeof(err), req->query, allowed)) {
        node__http_error(resp, 400, err);
        return;
    }
    const char *fmt = qget(&q, "format");
    if (fmt && strcmp(fmt, "raw") != 0 && strcmp(fmt, "json") != 0) {
        node__http_error(resp, 400, "format must be raw or json");
        return;
    }
    int raw = (fmt && strcmp(fmt, "raw") == 0) ||
              (!fmt && strstr(req->accept, "application/x-protobuf") != NULL);
    if (parse_u64(&h, arg)) {
        node__http_error(resp, 400, "height must be a decimal number");
        return;
    }
    if (h == 0 || h > node_height(n)) {
        node__http_error(resp, 404, "no block at this height");
        return;
    }
    if (raw) {
        uint8_t *buf = NULL;
        size_t len = 0;
        int rc = chain_store_get_block_raw(node_store(n), h, &buf, &len);
        if (rc) {
            node__http_error(resp, rc == CHAIN_ENOTFOUND ? 404 : 500, chain_strerror(rc));
            return;
        }
        resp->status = 200;
        resp->content_type = "application/x-protobuf";
        resp->body = (char *)buf;
        resp->body_len = len;
        return;
    }
    chain_block b;
    chain_block_init(&b);
    int rc = chain_store_get_block(node_store(n), h, &b);
    if (rc) node__http_error(resp, rc == CHAIN_ENOTFOUND ? 404 : 500, chain_strerror(rc));
    else reply(resp, 200, block_j(&b));
    chain_block_free(&b);
}

static void route_status(node *n, node__http_resp *resp) {
    node__status st;
    node__get_status(n, &st);
    const chain_genesis *g = node_genesis(n);
    uint32_t peers[CHAIN_VALIDATORS_MAX];
    size_t np = node__peers(n, peers, CHAIN_VALIDATORS_MAX);
    json_t *pa = json_array(), *va = json_array();
    for (size_t i = 0; i < np; i++) json_array_append_new(pa, json_integer(peers[i]));
    for (uint32_t i = 0; i < g->n_validators; i++)
        json_array_append_new(va, json_pack("{s:s,s:o}", "name", g->institutions[i].name, "key",
                                            hexj(g->institutions[i].key.b, CHAIN_KEY_LEN)));
    int vi = node_validator_index(n);
    json_t *o = json_pack("{s:s,s:o,s:o,s:o,s:i,s:o,s:o,s:o,s:i,s:o}", "chain_id", g->chain_id,
                          "height", u64j(st.height), "tip_hash", hexj(st.tip.b, CHAIN_HASH_LEN),
                          "view", u64j(st.view), "primary", (int)st.primary,
                          "validator", vi >= 0 ? json_integer(vi) : json_null(), "peers", pa,
                          "validators", va, "mempool", (int)node__mempool_size(node__get_mempool(n)),
                          "genesis_hash", hexj(g->hash.b, CHAIN_HASH_LEN));
    reply(resp, 200, o);
}

static void route_metrics(node *n, node__http_resp *resp) {
    size_t len = 0;
    char *text = node__metrics_render(n, node__get_metrics(n), &len);
    if (!text) {
        node__http_error(resp, 500, "out of memory");
        return;
    }
    resp->status = 200;
    resp->content_type = "text/plain; version=0.0.4";
    resp->body = text;
    resp->body_len = len;
}

/* ------------------------------------------------------------------ events */
/* Where grant `id` lives: from the grant record, or (once a full pair list
 * pruned it) from the Grant transaction itself, which blocks keep forever. */
static int grant_pair(node *n, chain_pubkey *patient, chain_pubkey *grantee, const chain_hash *id) {
    chain_grant_record r;
    if (chain_store_get_grant(node_store(n), id, &r) == 0) {
        *patient = r.grant.patient;
        *grantee = r.grant.grantee;
        return 0;
    }
    uint64_t h;
    uint32_t i;
    if (chain_store_get_tx(node_store(n), id, &h, &i) != 0) return -1;
    chain_block b;
    chain_block_init(&b);
    chain_tx tx;
    int rc = chain_store_get_block(node_store(n), h, &b);
    if (rc == 0) rc = i < b.n_txs ? chain_tx_decode(&tx, b.txs[i], b.tx_lens[i]) : -1;
    chain_block_free(&b);
    if (rc != 0 || tx.type != CHAIN_TX_GRANT) return -1;
    *patient = tx.body.grant.patient;
    *grantee = tx.body.grant.grantee;
    return 0;
}

static const char *event_type(chain_tx_type t) {
    switch (t) {
    case CHAIN_TX_GRANT: return "grant";
    case CHAIN_TX_REVOKE: return "revoke";
    case CHAIN_TX_SET_GUARDIAN: return "set_guardian";
    case CHAIN_TX_ACCESS_RECORD: return "access_record";
    default: return NULL;
    }
}

/* One event line for tx i of block b:
 *   {"height", "tx", "type", "patient", "grantee"?, "grant_id"?, ...}
 * types grant, revoke, set_guardian (with "guardian", "remove") and
 * access_record (with "gateway", "scope", "purpose"); NULL for other txs. */
static json_t *event_j(node *n, const chain_block *b, uint32_t i) {
    chain_tx tx;
    if (chain_tx_decode(&tx, b->txs[i], b->tx_lens[i]) != 0 || !event_type(tx.type)) return NULL;
    chain_hash txid, gid;
    chain_pubkey patient = tx.signer, grantee;
    chain_tx_hash(&txid, b->txs[i], b->tx_lens[i]);
    if (tx.type == CHAIN_TX_GRANT) {
        patient = tx.body.grant.patient, grantee = tx.body.grant.grantee, gid = txid;
    } else if (tx.type != CHAIN_TX_SET_GUARDIAN) {
        gid = tx.type == CHAIN_TX_REVOKE ? tx.body.revoke.grant_id : tx.body.access_record.grant_id;
        if (grant_pair(n, &patient, &grantee, &gid)) return NULL;
    }
    json_t *o = json_pack("{s:o,s:o,s:s,s:o}", "height", u64j(b->hdr.height), "tx", hexj(txid.b, CHAIN_HASH_LEN),
                          "type", event_type(tx.type), "patient", hexj(patient.b, CHAIN_KEY_LEN));
    if (tx.type == CHAIN_TX_SET_GUARDIAN) {
        json_object_set_new(o, "guardian", hexj(tx.body.set_guardian.guardian.b, CHAIN_KEY_LEN));
        json_object_set_new(o, "remove", json_boolean(tx.body.set_guardian.remove));
        return o;
    }
    json_object_set_new(o, "grantee", hexj(grantee.b, CHAIN_KEY_LEN));
    json_object_set_new(o, "grant_id", hexj(gid.b, CHAIN_HASH_LEN));
    if (tx.type == CHAIN_TX_ACCESS_RECORD) {
        json_object_set_new(o, "gateway", hexj(tx.signer.b, CHAIN_KEY_LEN));
        json_object_set_new(o, "scope", json_string(tx.body.access_record.scope.s));
        json_object_set_new(o, "purpose", json_string(tx.body.access_record.purpose.s));
    }
    return o;
}

/* The event lines of block b, each ending in '\n', in one malloc'd buffer
 * (*out NULL when there are none). */
static int block_events(node *n, char **out, size_t *len, const chain_block *b) {
    char *buf = NULL;
    size_t used = 0, cap = 0;
    *out = NULL;
    *len = 0;
    for (uint32_t i = 0; i < b->n_txs; i++) {
        json_t *o = event_j(n, b, i);
        char *line = o ? json_dumps(o, JSON_COMPACT) : NULL;
        json_decref(o);
        if (!line) continue;
        size_t ll = strlen(line);
        if (used + ll + 1 > cap) {
            size_t ncap = cap ? cap * 2 : 1024;
            while (ncap < used + ll + 1) ncap *= 2;
            char *nb = realloc(buf, ncap);
            if (!nb) {
                free(line);
                free(buf);
                return NODE_ENOMEM;
            }
            buf = nb;
            cap = ncap;
        }
        memcpy(buf + used, line, ll);
        buf[used + ll] = '\n';
        used += ll + 1;
        free(line);
    }
    *out = buf;
    *len = used;
    return 0;
}

int node__api_stream_fill(void *arg, char **out, size_t *len, uint64_t height) {
    node *n = arg;
    *out = NULL;
    *len = 0;
    if (height > node_height(n)) return 1;
    if (height == 0) return 0;   /* genesis: no transactions */
    chain_block b;
    chain_block_init(&b);
    int rc = chain_store_get_block(node_store(n), height, &b);
    if (rc == 0) rc = block_events(n, out, len, &b);
    chain_block_free(&b);
    return rc ? NODE_ECHAIN : 0;
}

void node__api_events(node *n, const chain_block *b) {
    node__http *http = node__get_http(n);
    if (!http || node__http_streams(http) == 0) return;
    char *text = NULL;
    size_t len = 0;
    if (block_events(n, &text, &len, b) != 0) {
        /* Streams at this height cannot skip it silently: they are cut. */
        node_log(node_get_logger(n), NODE_LOG_ERROR, "events of block %" PRIu64 ": out of memory", b->hdr.height);
        node__http_stream_block(http, b->hdr.height, NULL, 0);
        return;
    }
    node__http_stream_block(http, b->hdr.height, text ? text : "", len);
    free(text);
}

/* GET /v1/events[?from=H]: live from the next block, or replaying from H
 * (at most NODE_EVENT_REPLAY_MAX blocks back by default). */
static void route_events(node *n, node__http_resp *resp, const node__http_req *req) {
    static const char *const allowed[] = {"from", NULL};
    query q;
    char err[128];
    uint64_t tip = node_height(n), from = tip + 1;
    if (parse_query(&q, err, sizeof(err), req->query, allowed)) {
        node__http_error(resp, 400, err);
        return;
    }
    const char *f = qget(&q, "from");
    if (f && parse_u64(&from, f)) {
        node__http_error(resp, 400, "from must be a block height");
        return;
    }
    uint64_t back_max = node__http_event_limits(node__get_http(n))->replay_max;
    if (from < tip + 1 && tip + 1 - from > back_max) {
        snprintf(err, sizeof(err), "from is more than %" PRIu64 " blocks back (tip %" PRIu64 ")", back_max, tip);
        node__http_error(resp, 400, err);
        return;
    }
    resp->status = 200;
    resp->content_type = "application/x-ndjson";
    resp->stream = 1;
    resp->stream_from = from;
}

/* ------------------------------------------------------------------ dispatch */
size_t node__api_body_max(void *arg, int method, const char *path) {
    if (method == HTTP_POST && strcmp(path, "/v1/txs/batch") == 0) return NODE_BATCH_BYTES_MAX;
    return NODE_HTTP_BODY_BYTES_MAX;
}

static int want(node__http_resp *resp, const node__http_req *req, int method) {
    if (req->method == method) return 1;
    node__http_error(resp, 405, method == HTTP_GET ? "method not allowed (use GET)"
                                                   : "method not allowed (use POST)");
    return 0;
}

static int get_routes(node *n, node__http_resp *resp, const node__http_req *req) {
    char arg[NODE_HTTP_URL_BYTES_MAX];
    const char *p = req->path;
    if (strcmp(p, "/v1/status") == 0) {
        if (want(resp, req, HTTP_GET)) route_status(n, resp);
    } else if (strcmp(p, "/metrics") == 0) {
        if (want(resp, req, HTTP_GET)) route_metrics(n, resp);
    } else if (strcmp(p, "/v1/events") == 0) {
        if (want(resp, req, HTTP_GET)) route_events(n, resp, req);
    } else if (strcmp(p, "/v1/grants/check") == 0) {
        if (want(resp, req, HTTP_GET)) route_check(n, resp, req);
    } else if (path_arg(arg, sizeof(arg), p, "/v1/txs/", "") == 0) {
        if (want(resp, req, HTTP_GET)) route_tx_status(n, resp, arg);
    } else if (path_arg(arg, sizeof(arg), p, "/v1/accounts/", "") == 0) {
        if (want(resp, req, HTTP_GET)) route_account(n, resp, arg);
    } else if (path_arg(arg, sizeof(arg), p, "/v1/grants/", "") == 0) {
        if (want(resp, req, HTTP_GET)) route_grant(n, resp, arg);
    } else if (path_arg(arg, sizeof(arg), p, "/v1/patients/", "/grants") == 0) {
        if (want(resp, req, HTTP_GET)) route_patient_grants(n, resp, req, arg);
    } else if (path_arg(arg, sizeof(arg), p, "/v1/patients/", "/access") == 0) {
        if (want(resp, req, HTTP_GET)) route_patient_access(n, resp, req, arg);
    } else if (path_arg(arg, sizeof(arg), p, "/v1/blocks/", "") == 0) {
        if (want(resp, req, HTTP_GET)) route_block(n, resp, req, arg);
    } else {
        return 0;
    }
    return 1;
}

void node__api_handle(void *arg, node__http_resp *resp, const node__http_req *req) {
    node *n = arg;
    const char *p = req->path;
    if (strcmp(p, "/v1/txs") == 0) {
        if (want(resp, req, HTTP_POST)) route_submit(n, resp, req);
    } else if (strcmp(p, "/v1/txs/batch") == 0) {
        if (want(resp, req, HTTP_POST)) route_batch(n, resp, req);
    } else if (strcmp(p, "/v1/sessions") == 0) {
        if (want(resp, req, HTTP_POST)) route_session(n, resp, req);
    } else if (!get_routes(n, resp, req)) {
        node__http_error(resp, 404, "no such route");
    }
}

