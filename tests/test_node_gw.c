/* test_node_gw.c — the gateway features of the node over real sockets: who
 * may ask (signed requests, 401/403/200), the audit log, the access listing,
 * the event stream (replay, live revocation within one block, typed lines,
 * subscriber limit; with lowered limits: heartbeats, the refusal of a start
 * too far back, the cut of a subscriber that stops reading) and proof=1
 * answers verified with chain_check_verify.
 *
 * A single-validator node (20 ms blocks, RocksDB in a temp dir) runs its
 * libuv loop on a thread. Genesis registers a gateway institution (gateway +
 * grantee) and a lab (grantee only). Waiting for a commit polls the API
 * against a deadline; nothing sleeps in place of a condition. Keys are fresh
 * random keys.
 */
#include <arpa/inet.h>
#include <check.h>
#include <errno.h>
#include <jansson.h>
#include <netinet/in.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <signal.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/time.h>
#include <time.h>
#include <unistd.h>

#include "node/node.h"
#include "node/node_int.h"
#include "node_fixture.h"

#define CHAIN_ID "consent-gw"
#define PASS "gw test passphrase"

enum { K_VAL, K_GW, K_LAB, K_PATIENT, K_GUARDIAN, K_STRANGER, K_COUNT };

/* ------------------------------------------------------------------ fixture */
typedef struct {
    node_fx nf;                       /* directory, loop thread, node, port */
    chain_key *k[K_COUNT];
    chain_pubkey pk[K_COUNT];
    char hx[K_COUNT][65];
    uint64_t nonce[K_COUNT];
} fixture;

static fixture F;

static void inst(chain_institution *in, int k, const char *name, uint32_t roles) {
    in->key = F.pk[k];
    snprintf(in->name, sizeof(in->name), "%s", name);
    in->roles = roles;
}

static void make_network(void) {
    nfx_mkdir(&F.nf, "/tmp/consent-gw-test.XXXXXX");
    for (int i = 0; i < K_COUNT; i++) {
        F.k[i] = chain_key_create(NULL);
        ck_assert_ptr_nonnull(F.k[i]);
        chain_key_pubkey(F.k[i], &F.pk[i]);
        chain_hex(F.hx[i], F.pk[i].b, 32);
    }
    chain_genesis *g = calloc(1, sizeof(*g));
    ck_assert_ptr_nonnull(g);
    snprintf(g->chain_id, sizeof(g->chain_id), CHAIN_ID);
    g->time_ms = 1700000000000ull;
    g->n_validators = 1;
    g->n_institutions = 3;
    inst(&g->institutions[0], K_VAL, "hospital-0", CHAIN_ROLE_VALIDATOR);
    snprintf(g->institutions[0].p2p_addr, sizeof(g->institutions[0].p2p_addr), "127.0.0.1:1");
    snprintf(g->institutions[0].api_addr, sizeof(g->institutions[0].api_addr), "127.0.0.1:1");
    inst(&g->institutions[1], K_GW, "gateway-0", CHAIN_ROLE_GATEWAY | CHAIN_ROLE_GRANTEE);
    inst(&g->institutions[2], K_LAB, "lab-0", CHAIN_ROLE_GRANTEE);
    nfx_write_node(&F.nf, g, F.k[K_VAL], PASS, 20, "error");
    free(g);
}

static void setup(void) {
    memset(&F, 0, sizeof(F));
    make_network();
    nfx_start(&F.nf);
}

static void teardown(void) {
    nfx_stop(&F.nf);
    for (int i = 0; i < K_COUNT; i++) chain_key_destroy(F.k[i]);
    nfx_rm_dir(&F.nf);
}

/* ------------------------------------------------------------------ client */
typedef nfx_response response;

static int dial(void) { return nfx_dial(F.nf.port); }

static void send_all(int fd, const void *buf, size_t len) {
    ck_assert_int_eq(nfx_send_all(fd, buf, len), 0);
}

/* Reads the head of a response (up to the blank line). */
static void read_head(int fd, response *r) {
    size_t hl = 0;
    while (!strstr(r->head, "\r\n\r\n")) {
        ck_assert_uint_lt(hl, sizeof(r->head) - 1);
        ssize_t n = recv(fd, r->head + hl, 1, 0);
        ck_assert_int_gt(n, 0);
        hl += (size_t)n;
        r->head[hl] = 0;
    }
    ck_assert_int_eq(sscanf(r->head, "HTTP/1.1 %d", &r->status), 1);
}

static void read_response(int fd, response *r) {
    memset(r, 0, sizeof(*r));
    read_head(fd, r);
    const char *cl = strcasestr(r->head, "content-length:");
    ck_assert_ptr_nonnull(cl);
    size_t len = strtoul(cl + 15, NULL, 10);
    r->body = calloc(1, len + 1);
    while (r->body_len < len) {
        ssize_t n = recv(fd, r->body + r->body_len, len - r->body_len, 0);
        ck_assert_int_gt(n, 0);
        r->body_len += (size_t)n;
    }
}

/* How a request is signed: by key `signer` (-1: unsigned) at time now +
 * skew; tamper 1 signs another target, 2 sends only the key header. */
typedef struct {
    int signer;
    long skew;
    int tamper;
} auth;

static const auth NONE = {-1, 0, 0};

static auth by(int k) {
    auth a = {k, 0, 0};
    return a;
}

static void auth_headers(char *out, size_t cap, auth a, const char *method, const char *target) {
    out[0] = 0;
    if (a.signer < 0) return;
    chain_sig sig;
    char s[129];
    uint64_t t = (uint64_t)((long)time(NULL) + a.skew);
    ck_assert_int_eq(chain_api_sign(F.k[a.signer], &sig, method, a.tamper == 1 ? "/v1/status" : target, t), 0);
    chain_hex(s, sig.b, 64);
    if (a.tamper == 2) {
        snprintf(out, cap, "X-Consent-Key: %s\r\n", F.hx[a.signer]);
        return;
    }
    snprintf(out, cap, "X-Consent-Key: %s\r\nX-Consent-Time: %llu\r\nX-Consent-Signature:  %s \r\n",
             F.hx[a.signer], (unsigned long long)t, s);
}

static void request(response *r, auth a, const char *method, const char *target, const char *ctype,
                    const void *body, size_t len) {
    int fd = dial();
    char head[2048], ah[512];
    auth_headers(ah, sizeof(ah), a, method, target);
    int n = snprintf(head, sizeof(head), "%s %s HTTP/1.1\r\nHost: t\r\n%s%s%s%sContent-Length: %zu\r\n\r\n",
                     method, target, ah, ctype ? "Content-Type: " : "", ctype ? ctype : "", ctype ? "\r\n" : "",
                     len);
    send_all(fd, head, (size_t)n);
    if (len) send_all(fd, body, len);
    read_response(fd, r);
    close(fd);
}

static json_t *get_json(int want, auth a, const char *fmt, ...) {
    char target[1024];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(target, sizeof(target), fmt, ap);
    va_end(ap);
    response r;
    request(&r, a, "GET", target, NULL, "", 0);
    ck_assert_msg(r.status == want, "GET %s: %d, want %d: %s", target, r.status, want, r.body);
    json_t *j = json_loadb(r.body, r.body_len, 0, NULL);
    ck_assert_msg(j != NULL, "GET %s: not JSON: %s", target, r.body);
    if (want >= 400) {
        const char *e = json_string_value(json_object_get(j, "error"));
        ck_assert_msg(e && *e, "no error reason: %s", r.body);
    }
    free(r.body);
    return j;
}

static void expect_status(int want, auth a, const char *fmt, ...) {
    char target[1024];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(target, sizeof(target), fmt, ap);
    va_end(ap);
    json_decref(get_json(want, a, "%s", target));
}

/* ------------------------------------------------------------------ txs */
static void tx_base(chain_tx *tx, int signer, chain_tx_type type) {
    memset(tx, 0, sizeof(*tx));
    snprintf(tx->chain_id, sizeof(tx->chain_id), CHAIN_ID);
    tx->type = type;
    tx->signer = F.pk[signer];
    tx->nonce = ++F.nonce[signer];
    tx->created_at = (uint64_t)time(NULL);
}

/* Signs tx with key k and submits it; returns the tx id. */
static chain_hash submit(chain_tx *tx, const chain_key *k) {
    uint8_t buf[CHAIN_TX_BYTES_MAX];
    size_t len = 0;
    ck_assert_int_eq(chain_tx_sign(tx, k), 0);
    ck_assert_int_eq(chain_tx_encode(buf, sizeof(buf), &len, tx), 0);
    chain_hash id;
    chain_tx_hash(&id, buf, len);
    response r;
    request(&r, NONE, "POST", "/v1/txs", "application/x-protobuf", buf, len);
    ck_assert_msg(r.status == 202, "submit: %d %s", r.status, r.body);
    free(r.body);
    return id;
}

static void wait_committed(const chain_hash *id) {
    char h[65];
    chain_hex(h, id->b, 32);
    for (int i = 0; i < 4000; i++) {
        json_t *j = get_json(200, NONE, "/v1/txs/%s", h);
        int done = strcmp(json_string_value(json_object_get(j, "status")), "committed") == 0;
        json_decref(j);
        if (done) return;
        struct timespec ts = {0, 5000000};
        nanosleep(&ts, NULL);   /* a poll interval, not a stand-in for a condition */
    }
    ck_abort_msg("tx %s not committed", h);
}

/* Signs, submits and waits until committed; returns the tx id. */
static chain_hash commit(chain_tx *tx, int signer) {
    chain_hash id = submit(tx, F.k[signer]);
    wait_committed(&id);
    return id;
}

static chain_hash grant(int grantee, const char *scope) {
    chain_tx tx;
    tx_base(&tx, K_PATIENT, CHAIN_TX_GRANT);
    tx.body.grant.patient = F.pk[K_PATIENT];
    tx.body.grant.grantee = F.pk[grantee];
    tx.body.grant.n_scopes = 1;
    snprintf(tx.body.grant.scopes[0].s, sizeof(chain_code), "%s", scope);
    tx.body.grant.n_purposes = 1;
    snprintf(tx.body.grant.purposes[0].s, sizeof(chain_code), "TREAT");
    tx.body.grant.not_before = tx.created_at - 60;
    tx.body.grant.not_after = tx.created_at + 3600;
    return commit(&tx, K_PATIENT);
}

static chain_hash revoke_grant(const chain_hash *id) {
    chain_tx tx;
    tx_base(&tx, K_PATIENT, CHAIN_TX_REVOKE);
    tx.body.revoke.grant_id = *id;
    return commit(&tx, K_PATIENT);
}

static uint64_t height(void) {
    json_t *j = get_json(200, NONE, "/v1/status");
    uint64_t h = (uint64_t)json_integer_value(json_object_get(j, "height"));
    json_decref(j);
    return h;
}

/* ------------------------------------------------------------------ auth */
START_TEST(check_needs_grantee_or_operator) {
    grant(K_GW, "Observation");
    char q[512];
    snprintf(q, sizeof(q), "/v1/grants/check?patient=%s&grantee=%s&scope=Observation&purpose=TREAT",
             F.hx[K_PATIENT], F.hx[K_GW]);
    expect_status(401, NONE, "%s", q);                                 /* unsigned */
    expect_status(401, (auth){K_GW, 0, 1}, "%s", q);                   /* signed another target */
    expect_status(401, (auth){K_GW, 0, 2}, "%s", q);                   /* key header alone */
    expect_status(401, (auth){K_GW, CHAIN_API_SKEW_S + 30, 0}, "%s", q);   /* too far ahead */
    expect_status(401, (auth){K_GW, -CHAIN_API_SKEW_S - 30, 0}, "%s", q);  /* stale */
    expect_status(403, by(K_LAB), "%s", q);         /* an institution, not the grantee */
    expect_status(403, by(K_PATIENT), "%s", q);     /* not an institution */
    expect_status(403, by(K_STRANGER), "%s", q);
    json_t *j = get_json(200, by(K_GW), "%s", q);   /* the grantee itself */
    ck_assert_str_eq(json_string_value(json_object_get(j, "decision")), "permit");
    json_decref(j);
    j = get_json(200, by(K_VAL), "%s", q);          /* an operator */
    ck_assert_str_eq(json_string_value(json_object_get(j, "decision")), "permit");
    json_decref(j);
    /* The lab asking about itself is allowed (and denied: no grant). */
    j = get_json(200, by(K_LAB), "/v1/grants/check?patient=%s&grantee=%s&scope=Observation&purpose=TREAT",
                 F.hx[K_PATIENT], F.hx[K_LAB]);
    ck_assert_str_eq(json_string_value(json_object_get(j, "decision")), "deny");
    json_decref(j);
    /* Malformed authentication values. */
    int fd = dial();
    const char *bad = "GET /v1/status HTTP/1.1\r\n\r\n";
    send_all(fd, bad, strlen(bad));
    response r;
    read_response(fd, &r);
    ck_assert_int_eq(r.status, 200);   /* open routes stay open */
    free(r.body);
    close(fd);
    char req[1024];
    snprintf(req, sizeof(req),
             "GET %s HTTP/1.1\r\nX-Consent-Key: %s\r\nX-Consent-Time: soon\r\nX-Consent-Signature: %0128d\r\n\r\n", q,
             F.hx[K_GW], 0);
    fd = dial();
    send_all(fd, req, strlen(req));
    read_response(fd, &r);
    ck_assert_int_eq(r.status, 401);
    ck_assert_ptr_nonnull(strstr(r.body, "unix seconds"));
    free(r.body);
    close(fd);
    snprintf(req, sizeof(req),
             "GET %s HTTP/1.1\r\nX-Consent-Key: %s\r\nX-Consent-Time: %llu\r\nX-Consent-Signature: %0128d\r\n\r\n",
             q, F.hx[K_GW], (unsigned long long)time(NULL), 0);
    fd = dial();
    send_all(fd, req, strlen(req));
    read_response(fd, &r);
    ck_assert_int_eq(r.status, 401);
    ck_assert_ptr_nonnull(strstr(r.body, "bad request signature"));
    free(r.body);
    close(fd);
    /* Bad queries are still 400 first. */
    expect_status(400, NONE, "/v1/grants/check?patient=xyz&grantee=%s&scope=Observation&purpose=TREAT", F.hx[K_GW]);
}
END_TEST

START_TEST(listings_need_patient_guardian_or_operator) {
    chain_hash gid = grant(K_GW, "Observation");
    /* Before any guardian: the guardian-to-be is a stranger. */
    expect_status(403, by(K_GUARDIAN), "/v1/patients/%s/grants", F.hx[K_PATIENT]);
    chain_tx tx;
    tx_base(&tx, K_PATIENT, CHAIN_TX_SET_GUARDIAN);
    tx.body.set_guardian.guardian = F.pk[K_GUARDIAN];
    commit(&tx, K_PATIENT);
    const char *routes[2] = {"grants", "access"};
    for (int i = 0; i < 2; i++) {
        expect_status(401, NONE, "/v1/patients/%s/%s", F.hx[K_PATIENT], routes[i]);
        expect_status(403, by(K_STRANGER), "/v1/patients/%s/%s", F.hx[K_PATIENT], routes[i]);
        expect_status(403, by(K_GW), "/v1/patients/%s/%s", F.hx[K_PATIENT], routes[i]);
        expect_status(200, by(K_PATIENT), "/v1/patients/%s/%s", F.hx[K_PATIENT], routes[i]);
        expect_status(200, by(K_GUARDIAN), "/v1/patients/%s/%s", F.hx[K_PATIENT], routes[i]);
        expect_status(200, by(K_VAL), "/v1/patients/%s/%s", F.hx[K_PATIENT], routes[i]);
        expect_status(400, by(K_VAL), "/v1/patients/%s/%s", "00", routes[i]);
    }
    json_t *j = get_json(200, by(K_PATIENT), "/v1/patients/%s/grants", F.hx[K_PATIENT]);
    ck_assert_int_eq(json_array_size(json_object_get(j, "grants")), 1);
    json_decref(j);
    /* A release recorded by the gateway shows in the access listing. */
    j = get_json(200, by(K_PATIENT), "/v1/patients/%s/access", F.hx[K_PATIENT]);
    ck_assert_int_eq(json_array_size(json_object_get(j, "access")), 0);
    json_decref(j);
    tx_base(&tx, K_GW, CHAIN_TX_ACCESS_RECORD);
    tx.body.access_record.grant_id = gid;
    snprintf(tx.body.access_record.scope.s, sizeof(chain_code), "Observation");
    snprintf(tx.body.access_record.purpose.s, sizeof(chain_code), "TREAT");
    tx.body.access_record.request_hash.b[0] = 7;
    chain_hash rec = commit(&tx, K_GW);
    j = get_json(200, by(K_GUARDIAN), "/v1/patients/%s/access", F.hx[K_PATIENT]);
    json_t *a = json_array_get(json_object_get(j, "access"), 0);
    ck_assert_ptr_nonnull(a);
    char h[65];
    chain_hex(h, rec.b, 32);
    ck_assert_str_eq(json_string_value(json_object_get(a, "tx")), h);
    ck_assert_str_eq(json_string_value(json_object_get(a, "gateway")), F.hx[K_GW]);
    chain_hex(h, gid.b, 32);
    ck_assert_str_eq(json_string_value(json_object_get(a, "grant_id")), h);
    ck_assert_str_eq(json_string_value(json_object_get(a, "scope")), "Observation");
    ck_assert_str_eq(json_string_value(json_object_get(a, "purpose")), "TREAT");
    ck_assert_int_gt(json_integer_value(json_object_get(a, "time_ms")), 0);
    json_decref(j);
}
END_TEST

/* ------------------------------------------------------------------ audit */
static size_t count_lines(const char *text, const char *needle) {
    size_t n = 0;
    for (const char *p = text; (p = strstr(p, needle)) != NULL; p++) n++;
    return n;
}

START_TEST(audit_log_records_every_check_and_listing) {
    grant(K_GW, "Observation");
    char q[512];
    snprintf(q, sizeof(q), "/v1/grants/check?patient=%s&grantee=%s&scope=Observation&purpose=TREAT",
             F.hx[K_PATIENT], F.hx[K_GW]);
    expect_status(200, by(K_GW), "%s", q);
    expect_status(200, by(K_GW), "/v1/grants/check?patient=%s&grantee=%s&scope=Condition&purpose=TREAT",
                  F.hx[K_PATIENT], F.hx[K_GW]);
    expect_status(403, by(K_LAB), "%s", q);
    expect_status(401, NONE, "%s", q);
    expect_status(200, by(K_PATIENT), "/v1/patients/%s/grants", F.hx[K_PATIENT]);
    expect_status(200, NONE, "/v1/status");   /* open routes are not audited */
    char path[512];
    snprintf(path, sizeof(path), "%s/node0/data/%s", F.nf.dir, NODE_AUDIT_FILE);
    struct stat st;
    ck_assert_int_eq(stat(path, &st), 0);
    ck_assert_int_eq(st.st_mode & 0777, 0600);
    FILE *f = fopen(path, "r");
    ck_assert_ptr_nonnull(f);
    char text[8192] = {0};
    size_t got = fread(text, 1, sizeof(text) - 1, f);
    fclose(f);
    ck_assert_uint_gt(got, 0);
    ck_assert_uint_eq(count_lines(text, "\n"), 5);
    /* Every line is JSON with the documented fields. */
    const char *decisions[5] = {"permit", "deny", "refused-403", "refused-401", "listed"};
    const char *routes[5] = {"check", "check", "check", "check", "patient_grants"};
    const int callers[5] = {K_GW, K_GW, K_LAB, -1, K_PATIENT};
    char *save = NULL, *line = strtok_r(text, "\n", &save);
    for (int i = 0; i < 5; i++, line = strtok_r(NULL, "\n", &save)) {
        ck_assert_ptr_nonnull(line);
        json_t *j = json_loads(line, JSON_REJECT_DUPLICATES, NULL);
        ck_assert_msg(j != NULL, "line %d: %s", i, line);
        ck_assert_str_eq(json_string_value(json_object_get(j, "decision")), decisions[i]);
        ck_assert_str_eq(json_string_value(json_object_get(j, "route")), routes[i]);
        ck_assert_str_eq(json_string_value(json_object_get(j, "patient")), F.hx[K_PATIENT]);
        if (callers[i] < 0) ck_assert(json_is_null(json_object_get(j, "caller")));
        else ck_assert_str_eq(json_string_value(json_object_get(j, "caller")), F.hx[callers[i]]);
        if (i < 4) ck_assert_str_eq(json_string_value(json_object_get(j, "grantee")), F.hx[K_GW]);
        else ck_assert(json_is_null(json_object_get(j, "grantee")));
        json_int_t t = json_integer_value(json_object_get(j, "time"));
        ck_assert_int_le(llabs((long long)t - (long long)time(NULL)), 60);
        json_decref(j);
    }
}
END_TEST

/* ------------------------------------------------------------------ proof */
static size_t unhex_field(uint8_t **out, json_t *o, const char *name) {
    const char *hx = json_string_value(json_object_get(o, name));
    ck_assert_ptr_nonnull(hx);
    size_t len = strlen(hx) / 2;
    *out = malloc(len + 1);
    ck_assert_ptr_nonnull(*out);
    ck_assert_int_eq(chain_unhex(*out, len, hx), 0);
    return len;
}

START_TEST(proof_answers_verify_and_tampering_fails) {
    chain_hash gid = grant(K_GW, "Observation");
    revoke_grant(&gid);
    grant(K_GW, "Condition");
    uint64_t tip = height();
    const char *scopes[2] = {"Observation", "Condition"};
    const chain_decision want[2] = {CHAIN_DENY, CHAIN_PERMIT};
    for (int i = 0; i < 2; i++) {
        json_t *j = get_json(200, by(K_GW), "/v1/grants/check?patient=%s&grantee=%s&scope=%s&purpose=TREAT&proof=1",
                             F.hx[K_PATIENT], F.hx[K_GW], scopes[i]);
        json_t *pj = json_object_get(j, "proof");
        chain_check_proof p = {0};
        p.height = (uint64_t)json_integer_value(json_object_get(pj, "height"));
        ck_assert_uint_eq(p.height, tip);
        p.pair_list_len = unhex_field(&p.pair_list, pj, "pair_list");
        p.smt_proof_len = unhex_field(&p.smt_proof, pj, "smt_proof");
        p.header_len = unhex_field(&p.header, pj, "header");
        p.cert_len = unhex_field(&p.cert, pj, "cert");
        p.inst_len = unhex_field(&p.inst, pj, "inst");
        p.inst_proof_len = unhex_field(&p.inst_proof, pj, "inst_proof");
        chain_check_query q = {F.pk[K_PATIENT], F.pk[K_GW], scopes[i], "TREAT", (uint64_t)time(NULL)};
        chain_check_result r;
        char why[160];
        ck_assert_int_eq(chain_check_verify(node_genesis(F.nf.n), &r, why, sizeof(why), &q, &p, tip), 0);
        ck_assert_int_eq(r.decision, want[i]);
        ck_assert_str_eq(r.reason, json_string_value(json_object_get(j, "reason")));
        /* A stale answer, and a tampered list, are refused. */
        ck_assert_int_eq(chain_check_verify(node_genesis(F.nf.n), &r, why, sizeof(why), &q, &p, tip + 1), CHAIN_EBLOCK);
        p.pair_list[p.pair_list_len / 2] ^= 1;
        ck_assert_int_eq(chain_check_verify(node_genesis(F.nf.n), &r, why, sizeof(why), &q, &p, 0), CHAIN_EPROOF);
        chain_check_proof_free(&p);
        json_decref(j);
    }
}
END_TEST

/* ------------------------------------------------------------------ events */
typedef struct {
    int fd;
    char buf[65536];
    size_t len;
} stream;

static void stream_open(stream *s, const char *target) {
    memset(s, 0, sizeof(*s));
    s->fd = dial();
    char req[256];
    snprintf(req, sizeof(req), "GET %s HTTP/1.1\r\nHost: t\r\n\r\n", target);
    send_all(s->fd, req, strlen(req));
    response r;
    memset(&r, 0, sizeof(r));
    read_head(s->fd, &r);
    ck_assert_int_eq(r.status, 200);
    ck_assert_ptr_nonnull(strcasestr(r.head, "Transfer-Encoding: chunked"));
}

/* Reads (chunk-framed) until `needle` shows in the decoded text. */
static void stream_until(stream *s, const char *needle) {
    while (!strstr(s->buf, needle)) {
        ck_assert_msg(s->len < sizeof(s->buf) - 1, "stream overflow waiting for %s", needle);
        ssize_t n = recv(s->fd, s->buf + s->len, sizeof(s->buf) - 1 - s->len, 0);
        ck_assert_msg(n > 0, "stream ended waiting for %s", needle);
        s->len += (size_t)n;
        s->buf[s->len] = 0;
    }
}

static json_t *event_line(stream *s, const char *needle) {
    stream_until(s, needle);
    char *p = strstr(s->buf, needle);
    while (p > s->buf && p[-1] != '\n') p--;
    char *end = strchr(p, '\n');
    ck_assert_ptr_nonnull(end);
    json_t *j = json_loadb(p, (size_t)(end - p), JSON_REJECT_DUPLICATES, NULL);
    ck_assert_msg(j != NULL, "not JSON: %.*s", (int)(end - p), p);
    return j;
}

START_TEST(events_replay_then_live_revoke_within_one_block) {
    chain_hash gid = grant(K_GW, "Observation");
    char gh[65], th[65];
    chain_hex(gh, gid.b, 32);
    stream s;
    stream_open(&s, "/v1/events?from=1");
    /* Replay: the grant committed before we subscribed. */
    json_t *e = event_line(&s, gh);
    ck_assert_str_eq(json_string_value(json_object_get(e, "type")), "grant");
    ck_assert_str_eq(json_string_value(json_object_get(e, "tx")), gh);
    ck_assert_str_eq(json_string_value(json_object_get(e, "grant_id")), gh);
    ck_assert_str_eq(json_string_value(json_object_get(e, "patient")), F.hx[K_PATIENT]);
    ck_assert_str_eq(json_string_value(json_object_get(e, "grantee")), F.hx[K_GW]);
    ck_assert_int_eq(json_integer_value(json_object_get(e, "height")), 1);
    json_decref(e);
    /* Live: the revocation arrives with the block that commits it. */
    stream live;
    stream_open(&live, "/v1/events");
    chain_hash rid = revoke_grant(&gid);
    uint64_t h = height();
    chain_hex(th, rid.b, 32);
    json_t *lines[2] = {event_line(&s, th), event_line(&live, th)};
    for (int i = 0; i < 2; i++) {
        ck_assert_str_eq(json_string_value(json_object_get(lines[i], "type")), "revoke");
        ck_assert_str_eq(json_string_value(json_object_get(lines[i], "grant_id")), gh);
        ck_assert_str_eq(json_string_value(json_object_get(lines[i], "grantee")), F.hx[K_GW]);
        ck_assert_uint_le((uint64_t)json_integer_value(json_object_get(lines[i], "height")), h);
        json_decref(lines[i]);
    }
    /* The live stream never saw the earlier grant. */
    ck_assert_ptr_null(strstr(live.buf, "\"type\":\"grant\""));
    /* A guardian change is an event too. */
    chain_tx tx;
    tx_base(&tx, K_PATIENT, CHAIN_TX_SET_GUARDIAN);
    tx.body.set_guardian.guardian = F.pk[K_GUARDIAN];
    commit(&tx, K_PATIENT);
    e = event_line(&live, "set_guardian");
    ck_assert_str_eq(json_string_value(json_object_get(e, "guardian")), F.hx[K_GUARDIAN]);
    ck_assert_str_eq(json_string_value(json_object_get(e, "patient")), F.hx[K_PATIENT]);
    json_decref(e);
    close(s.fd);
    close(live.fd);
    /* A resumed stream starting past a block skips it. */
    stream_open(&s, "/v1/events?from=2");
    e = event_line(&s, "set_guardian");
    ck_assert_ptr_null(strstr(s.buf, "\"type\":\"grant\""));
    ck_assert_ptr_nonnull(strstr(s.buf, "\"type\":\"revoke\""));
    json_decref(e);
    close(s.fd);
}
END_TEST

START_TEST(events_bad_requests_and_subscriber_limit) {
    expect_status(400, NONE, "/v1/events?from=abc");
    expect_status(400, NONE, "/v1/events?from=-1");
    expect_status(400, NONE, "/v1/events?since=3");
    expect_status(400, NONE, "/v1/events?from=1&from=2");
    /* Streams up to the limit are accepted; one more is refused 503. */
    int fds[NODE_EVENT_SUBSCRIBERS_MAX];
    for (int i = 0; i < NODE_EVENT_SUBSCRIBERS_MAX; i++) {
        stream s;
        stream_open(&s, "/v1/events?from=0");
        fds[i] = s.fd;
    }
    expect_status(503, NONE, "/v1/events");
    close(fds[0]);
    /* Once the node sees the close, there is room again. */
    int ok = 0;
    for (int i = 0; i < 2000 && !ok; i++) {
        response r;
        int fd = dial();
        const char *req = "GET /v1/events HTTP/1.1\r\n\r\n";
        send_all(fd, req, strlen(req));
        memset(&r, 0, sizeof(r));
        read_head(fd, &r);
        ok = r.status == 200;
        close(fd);
        if (!ok) {
            struct timespec ts = {0, 5000000};
            nanosleep(&ts, NULL);   /* a poll interval, not a stand-in for a condition */
        }
    }
    ck_assert(ok);
    for (int i = 1; i < NODE_EVENT_SUBSCRIBERS_MAX; i++) close(fds[i]);
}
END_TEST

/* ------------------------------------------------------------------ event limits */
/* The same node with its event limits lowered so each is reached in a few
 * blocks: heartbeat every 50 ms, replay at most 3 blocks back, a live
 * stream cut past 4 KiB unsent, with a 4 KiB kernel send buffer. */
static const node__event_limits test_limits = {50, 3, 4096, 4096};

static void setup_limits(void) {
    memset(&F, 0, sizeof(F));
    make_network();
    nfx_create(&F.nf);
    node__http_set_event_limits(node__get_http(F.nf.n), &test_limits);
    nfx_run(&F.nf);
}

static uint64_t open_streams(void) {
    response r;
    request(&r, NONE, "GET", "/metrics", NULL, "", 0);
    ck_assert_int_eq(r.status, 200);
    const char *g = strstr(r.body, "\nconsent_event_streams ");
    ck_assert_ptr_nonnull(g);
    uint64_t v = strtoull(g + strlen("\nconsent_event_streams "), NULL, 10);
    free(r.body);
    return v;
}

START_TEST(events_heartbeat_when_idle) {
    stream s;
    stream_open(&s, "/v1/events");
    /* No block commits: only heartbeats arrive, again and again. */
    stream_until(&s, ": heartbeat\n");
    const char *first = strstr(s.buf, ": heartbeat\n");
    size_t after = (size_t)(first - s.buf) + 1;
    while (!strstr(s.buf + after, ": heartbeat\n")) {
        ck_assert_uint_lt(s.len, sizeof(s.buf) - 1);
        ssize_t n = recv(s.fd, s.buf + s.len, sizeof(s.buf) - 1 - s.len, 0);
        ck_assert_msg(n > 0, "stream ended waiting for a second heartbeat");
        s.len += (size_t)n;
        s.buf[s.len] = 0;
    }
    ck_assert_ptr_null(strstr(s.buf, "\"type\""));
    /* A replaying stream gets them too once it has caught up. */
    grant(K_GW, "Observation");
    stream r;
    stream_open(&r, "/v1/events?from=1");
    stream_until(&r, "\"type\":\"grant\"");
    stream_until(&r, ": heartbeat\n");
    close(s.fd);
    close(r.fd);
}
END_TEST

START_TEST(events_refuse_start_too_far_back) {
    while (height() < 5) grant(K_GW, "Observation");
    uint64_t tip = height();   /* empty blocks are never built: the tip stays */
    /* from = tip + 1 - 3 replays three blocks: allowed. */
    stream s;
    char target[64];
    snprintf(target, sizeof(target), "/v1/events?from=%llu", (unsigned long long)(tip - 2));
    stream_open(&s, target);
    stream_until(&s, "\"type\":\"grant\"");
    close(s.fd);
    /* One block further back, and the first block, are refused. */
    json_t *j = get_json(400, NONE, "/v1/events?from=%llu", (unsigned long long)(tip - 3));
    ck_assert_ptr_nonnull(strstr(json_string_value(json_object_get(j, "error")), "more than 3 blocks back"));
    json_decref(j);
    expect_status(400, NONE, "/v1/events?from=1");
    ck_assert_uint_eq(open_streams(), 0);
    /* A start in the future waits for that block. */
    snprintf(target, sizeof(target), "/v1/events?from=%llu", (unsigned long long)(tip + 5));
    stream_open(&s, target);
    close(s.fd);
}
END_TEST

START_TEST(events_cut_slow_subscriber) {
    /* The slow one: a tiny receive buffer, and it never reads past the head. */
    int slow = socket(AF_INET, SOCK_STREAM, 0);
    ck_assert_int_ge(slow, 0);
    int rcvbuf = 1024;
    ck_assert_int_eq(setsockopt(slow, SOL_SOCKET, SO_RCVBUF, &rcvbuf, sizeof(rcvbuf)), 0);
    struct timeval tv = {10, 0};
    setsockopt(slow, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv));
    struct sockaddr_in sa = {0};
    sa.sin_family = AF_INET;
    sa.sin_port = htons((uint16_t)F.nf.port);
    sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    ck_assert_int_eq(connect(slow, (struct sockaddr *)&sa, sizeof(sa)), 0);
    const char *req = "GET /v1/events HTTP/1.1\r\n\r\n";
    send_all(slow, req, strlen(req));
    response head;
    memset(&head, 0, sizeof(head));
    read_head(slow, &head);
    ck_assert_int_eq(head.status, 200);
    stream live;
    stream_open(&live, "/v1/events");
    ck_assert_uint_eq(open_streams(), 2);
    /* Blocks of 25 grants (about 8 KiB of events each) from fresh patients
     * until the node has cut the slow stream; the reader keeps up. */
    int rounds = 0;
    for (; rounds < 60 && open_streams() == 2; rounds++) {
        chain_hash last;
        for (int i = 0; i < 25; i++) {
            chain_key *p = chain_key_create(NULL);
            ck_assert_ptr_nonnull(p);
            chain_tx tx;
            tx_base(&tx, K_PATIENT, CHAIN_TX_GRANT);
            F.nonce[K_PATIENT]--;
            chain_key_pubkey(p, &tx.signer);
            tx.nonce = 1;
            tx.body.grant.patient = tx.signer;
            tx.body.grant.grantee = F.pk[K_LAB];
            tx.body.grant.n_scopes = 1;
            snprintf(tx.body.grant.scopes[0].s, sizeof(chain_code), "Observation");
            tx.body.grant.n_purposes = 1;
            snprintf(tx.body.grant.purposes[0].s, sizeof(chain_code), "TREAT");
            tx.body.grant.not_before = tx.created_at - 60;
            tx.body.grant.not_after = tx.created_at + 3600;
            last = submit(&tx, p);
            chain_key_destroy(p);
        }
        wait_committed(&last);
        char lh[65];
        chain_hex(lh, last.b, 32);
        stream_until(&live, lh);
        live.len = 0;
        live.buf[0] = 0;
    }
    ck_assert_msg(open_streams() == 1, "slow stream still open after %d blocks", rounds);
    /* The other subscriber is still served. */
    chain_hash id = grant(K_GW, "Observation");
    char gh[65];
    chain_hex(gh, id.b, 32);
    json_decref(event_line(&live, gh));
    /* What the slow client reads ends: the node closed it. */
    char buf[4096];
    ssize_t n;
    while ((n = recv(slow, buf, sizeof(buf), 0)) > 0) {
    }
    ck_assert_msg(n == 0 || errno == ECONNRESET, "slow stream: recv %zd errno %d", n, errno);
    close(slow);
    close(live.fd);
}
END_TEST

/* ------------------------------------------------------------------ audit unit */
START_TEST(audit_file_rules) {
    char dir[64], path[128];
    strcpy(dir, "/tmp/consent-audit.XXXXXX");
    ck_assert_ptr_nonnull(mkdtemp(dir));
    node__audit *a = NULL;
    ck_assert_int_eq(node__audit_open(&a, "/nonexistent/consent-audit", NULL), NODE_EIO);
    ck_assert_ptr_null(a);
    ck_assert_int_eq(node__audit_open(NULL, dir, NULL), NODE_EINVAL);
    /* A log someone widened is made private again. */
    snprintf(path, sizeof(path), "%s/%s", dir, NODE_AUDIT_FILE);
    nfx_write_file(path, "");
    ck_assert_int_eq(chmod(path, 0644), 0);
    ck_assert_int_eq(node__audit_open(&a, dir, NULL), 0);
    struct stat st;
    ck_assert_int_eq(stat(path, &st), 0);
    ck_assert_int_eq(st.st_mode & 0777, 0600);
    chain_pubkey p, g;
    memset(p.b, 0xab, 32);
    memset(g.b, 0xcd, 32);
    /* Refused arguments write nothing. */
    ck_assert_int_eq(node__audit_log(a, 1000, NULL, "check", NULL, &g, "deny"), NODE_EINVAL);
    ck_assert_int_eq(node__audit_log(a, 1000, NULL, "a\"b", &p, &g, "deny"), NODE_EINVAL);
    ck_assert_int_eq(node__audit_log(a, 1000, NULL, "check", &p, &g, ""), NODE_EINVAL);
    ck_assert_int_eq(node__audit_log(a, 1000, NULL, "check", &p, &g, "a-decision-name-of-more-than-32-chars"),
                     NODE_EINVAL);
    ck_assert_int_eq(node__audit_log(a, 1000, &g, "check", &p, &g, "permit"), 0);
    ck_assert_int_eq(node__audit_log(a, 2000, NULL, "patient_grants", &p, NULL, "listed"), 0);
    ck_assert_uint_eq(node__audit_failures(a), 0);
    node__audit_close(a);
    node__audit_close(NULL);
    FILE *f = fopen(path, "r");
    ck_assert_ptr_nonnull(f);
    char text[1024] = {0};
    ck_assert_uint_gt(fread(text, 1, sizeof(text) - 1, f), 0);
    fclose(f);
    char want[1024], ph[65], gh[65];
    chain_hex(ph, p.b, 32);
    chain_hex(gh, g.b, 32);
    snprintf(want, sizeof(want),
             "{\"time\":1,\"caller\":\"%s\",\"route\":\"check\",\"patient\":\"%s\",\"grantee\":\"%s\","
             "\"decision\":\"permit\"}\n"
             "{\"time\":2,\"caller\":null,\"route\":\"patient_grants\",\"patient\":\"%s\",\"grantee\":null,"
             "\"decision\":\"listed\"}\n",
             gh, ph, gh, ph);
    ck_assert_str_eq(text, want);
    char cmd[128];
    snprintf(cmd, sizeof(cmd), "rm -rf '%s'", dir);
    ck_assert_int_eq(system(cmd), 0);
}
END_TEST

START_TEST(audit_short_write_leaves_no_half_line) {
    /* A file size limit makes write(2) stop in the middle of a batch: the
     * batch is cut back out whole, and later lines start on a line. */
    char dir[64];
    strcpy(dir, "/tmp/consent-audit.XXXXXX");
    ck_assert_ptr_nonnull(mkdtemp(dir));
    node__audit *a = NULL;
    ck_assert_int_eq(node__audit_open(&a, dir, NULL), 0);
    chain_pubkey p, g;
    memset(p.b, 0x11, sizeof p.b);
    memset(g.b, 0x22, sizeof g.b);
    ck_assert_int_eq(node__audit_log(a, 1, &g, "check", &p, &g, "permit"), 0);
    ck_assert_int_eq(node__audit_flush(a, 1), 0);
    char path[128];
    snprintf(path, sizeof(path), "%s/audit.log", dir);
    struct stat st;
    ck_assert_int_eq(stat(path, &st), 0);
    off_t one = st.st_size;
    signal(SIGXFSZ, SIG_IGN);
    struct rlimit old, lim;
    ck_assert_int_eq(getrlimit(RLIMIT_FSIZE, &old), 0);
    lim = old;
    lim.rlim_cur = (rlim_t)one + 100;   /* the next batch stops mid-line */
    /* No assertion while the limit holds: Check's own messages go
     * through a file too. */
    int set = setrlimit(RLIMIT_FSIZE, &lim), logged = 0;
    for (int i = 0; i < 3; i++) logged += node__audit_log(a, 2, &g, "check", &p, &g, "deny") == 0;
    int flushed = node__audit_flush(a, 2);
    int restored = setrlimit(RLIMIT_FSIZE, &old);
    ck_assert_int_eq(set, 0);
    ck_assert_int_eq(restored, 0);
    ck_assert_int_eq(logged, 3);
    ck_assert_int_eq(flushed, NODE_EIO);
    ck_assert_uint_eq(node__audit_failures(a), 3);
    ck_assert_int_eq(stat(path, &st), 0);
    ck_assert_int_eq(st.st_size, one);
    ck_assert_int_eq(node__audit_log(a, 3, NULL, "patient_grants", &p, NULL, "listed"), 0);
    ck_assert_int_eq(node__audit_flush(a, 3), 0);
    node__audit_close(a);
    FILE *f = fopen(path, "r");
    ck_assert_ptr_nonnull(f);
    char line[1024];
    int lines = 0;
    while (fgets(line, sizeof(line), f)) {
        ck_assert_int_eq(line[0], '{');
        ck_assert_int_eq(line[strlen(line) - 1], '\n');
        lines++;
    }
    fclose(f);
    ck_assert_int_eq(lines, 2);
    char cmd[128];
    snprintf(cmd, sizeof(cmd), "rm -rf '%s'", dir);
    ck_assert_int_eq(system(cmd), 0);
}
END_TEST

static Suite *gw_suite(void) {
    Suite *s = suite_create("node_gw");
    TCase *tc = tcase_create("gateway");
    tcase_set_timeout(tc, 120);
    tcase_add_checked_fixture(tc, setup, teardown);
    tcase_add_test(tc, check_needs_grantee_or_operator);
    tcase_add_test(tc, listings_need_patient_guardian_or_operator);
    tcase_add_test(tc, audit_log_records_every_check_and_listing);
    tcase_add_test(tc, proof_answers_verify_and_tampering_fails);
    tcase_add_test(tc, events_replay_then_live_revoke_within_one_block);
    tcase_add_test(tc, events_bad_requests_and_subscriber_limit);
    suite_add_tcase(s, tc);
    TCase *lim = tcase_create("event_limits");
    tcase_set_timeout(lim, 120);
    tcase_add_checked_fixture(lim, setup_limits, teardown);
    tcase_add_test(lim, events_heartbeat_when_idle);
    tcase_add_test(lim, events_refuse_start_too_far_back);
    tcase_add_test(lim, events_cut_slow_subscriber);
    suite_add_tcase(s, lim);
    TCase *units = tcase_create("units");
    tcase_add_test(units, audit_file_rules);
    tcase_add_test(units, audit_short_write_leaves_no_half_line);
    suite_add_tcase(s, units);
    return s;
}

int main(void) {
    SRunner *sr = srunner_create(gw_suite());
    srunner_run_all(sr, CK_NORMAL);
    int failed = srunner_ntests_failed(sr);
    srunner_free(sr);
    return failed == 0 ? EXIT_SUCCESS : EXIT_FAILURE;
}
