/* ctl_main.c — consentctl, the operator's and gateway's tool.
 *
 * testnet writes a local network's files; check asks a node the gateway
 * question (and with --verify checks the answer's proof against genesis,
 * trusting no node); watch streams committed grants and revocations; status,
 * tx and block show what a node knows; access-record lets a gateway record a
 * release on chain. Exit codes: 0 success (check: permit), 1 check: deny,
 * 2 any error, 3 check --verify: the answer does not verify. Errors are one
 * line on stderr; keys printed are public keys only.
 */
#include <inttypes.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <openssl/crypto.h>

#include "wallet/wallet.h"

#define PROG "consentctl"
#define EXIT_ERR 2
#define EXIT_UNVERIFIED 3
#define ANSWER_BYTES_MAX (8u * 1024 * 1024)
#define WAIT_S_DEFAULT 30
#define POLL_MS 100

static const wallet_opt_spec SPEC[] = {
    {"help", 0},        {"node", 1},         {"json", 0},         {"validators", 1},
    {"out", 1},         {"institutions", 1}, {"port-base", 1},    {"chain-id", 1},
    {"block-interval-ms", 1}, {"force", 0},  {"patient", 1},      {"grantee", 1},
    {"scope", 1},       {"purpose", 1},      {"at", 1},           {"key", 1},
    {"grant", 1},       {"request-hash", 1}, {"passphrase-file", 1}, {"wait", 0},
    {"timeout", 1},     {"from", 1},         {"verify", 0},       {"max-age-blocks", 1},
    {"min-height", 1},  {"genesis", 1},      {"response-file", 1}, {"data", 1},
    {"since", 1},
};
#define N_SPEC (sizeof SPEC / sizeof SPEC[0])

static const char USAGE[] =
    "usage: consentctl COMMAND [options]\n"
    "\n"
    "  testnet --validators N --out DIR [--institutions M] [--port-base P] [--chain-id ID]\n"
    "          [--block-interval-ms MS] [--force]\n"
    "      write genesis, keys and configs of a local network (api 127.0.0.1:P+i,\n"
    "      p2p 127.0.0.1:P+100+i; defaults: M=2, P=7700, consent-local, 100 ms)\n"
    "  check --patient KEY --grantee KEY --scope S --purpose U [--at T] [--key FILE] [--json]\n"
    "        [--verify [--genesis FILE] [--max-age-blocks N] [--min-height H]]\n"
    "      may the grantee receive scope S about the patient for purpose U at time T?\n"
    "      prints \"permit\" or \"deny: <reason>\"; exit 0 permit, 1 deny, 2 error\n"
    "      --verify: ask for the proof and check it against genesis (--genesis, default\n"
    "      $CONSENT_GENESIS) trusting no node: the commit certificate, the state proof, the\n"
    "      decision recomputed; refuse a proof older than N blocks behind the node's tip or\n"
    "      below height H. Prints \"permit (verified at height H)\"; exit 3 if it fails\n"
    "      (--json prints the node's answer, proof included, e.g. to keep it)\n"
    "  watch [--from H] [--key FILE] [--json]\n"
    "      stream committed grants and revocations, one line each, until interrupted\n"
    "      (--json: the node's JSON lines as they are)\n"
    "  status [--json]             height, view, primary, peers of a node\n"
    "  tx HASH                     a transaction's status (JSON)\n"
    "  block HEIGHT                a block with its commit certificate (JSON)\n"
    "  access-record --key FILE --grant ID --scope S --purpose U [--request-hash HEX]\n"
    "          [--passphrase-file F] [--wait]\n"
    "      a gateway records a release it made under a grant (key: institutions/NAME.key)\n"
    "  audit-export --data DIR [--since T]\n"
    "      the node's local audit log (who asked which check or listing, and the answer)\n"
    "      as JSON lines, from time T on; DIR is the node's data_dir\n"
    "  compact --data DIR --genesis FILE\n"
    "      rewrite a stopped node's store into one level per column family (after a bulk\n"
    "      load or at a maintenance window: a read then probes one level, not several)\n"
    "\n"
    "  --node URL   node API (default $CONSENT_NODE or http://127.0.0.1:7700)\n"
    "  --key FILE   sign requests with this institution key (check, watch), e.g.\n"
    "               DIR/institutions/gateway-0.key; passphrase from --passphrase-file F,\n"
    "               $CONSENT_PASSPHRASE or a prompt\n"
    "Times: unix seconds, YYYY-MM-DD (UTC midnight) or RFC 3339 UTC.\n";

typedef struct {
    wallet_args a;
    wallet_client client;
    char err[WALLET_ERR_LEN];
} ctx;

static const char *opt(const ctx *c, const char *name)
{
    return wallet_args_get(&c->a, SPEC, N_SPEC, name);
}

static int fail(const char *msg)
{
    fprintf(stderr, PROG ": %s\n", msg);
    return EXIT_ERR;
}

static int usage_error(const char *msg)
{
    fprintf(stderr, PROG ": %s (see --help)\n", msg);
    return EXIT_ERR;
}

static int parse_u32(uint32_t *out, const char *s, uint32_t max)
{
    uint64_t v;
    if (wallet_parse_u64(&v, s) || v > max)
        return -1;
    *out = (uint32_t)v;
    return 0;
}

static int cmd_testnet(ctx *c)
{
    wallet_testnet_opts o;
    chain_genesis *g;
    struct timespec ts;
    uint32_t i;
    if (!opt(c, "validators") || !opt(c, "out"))
        return usage_error("testnet needs --validators N and --out DIR");
    wallet_testnet_defaults(&o);
    if (parse_u32(&o.validators, opt(c, "validators"), 1000))
        return usage_error("--validators: not a number");
    if (opt(c, "institutions") && parse_u32(&o.institutions, opt(c, "institutions"), 100000))
        return usage_error("--institutions: not a number");
    if (opt(c, "port-base") && parse_u32(&o.port_base, opt(c, "port-base"), 65535))
        return usage_error("--port-base: not a port");
    if (opt(c, "block-interval-ms") && parse_u32(&o.block_interval_ms, opt(c, "block-interval-ms"), 1u << 30))
        return usage_error("--block-interval-ms: not a number");
    if (opt(c, "chain-id") && strlen(opt(c, "chain-id")) > CHAIN_ID_LEN_MAX)
        return usage_error("--chain-id: longer than 32 characters");
    if (opt(c, "chain-id"))
        snprintf(o.chain_id, sizeof o.chain_id, "%s", opt(c, "chain-id"));
    o.force = opt(c, "force") != NULL;
    clock_gettime(CLOCK_REALTIME, &ts);
    o.time_ms = (uint64_t)ts.tv_sec * 1000 + (uint64_t)ts.tv_nsec / 1000000;
    g = malloc(sizeof *g);
    if (!g)
        return fail("out of memory");
    if (wallet_testnet_write(g, c->err, &o, opt(c, "out"))) {
        free(g);
        return fail(c->err);
    }
    printf("network %s: %u validators, %u institutions in %s\n", g->chain_id, g->n_validators,
           g->n_institutions - g->n_validators, opt(c, "out"));
    for (i = 0; i < g->n_institutions; i++) {
        char hex[2 * CHAIN_KEY_LEN + 1];
        const chain_institution *in = &g->institutions[i];
        chain_hex(hex, in->key.b, sizeof in->key.b);
        if (i < g->n_validators)
            printf("  node%-3u %-12s %s  api http://%s  p2p %s\n", i, in->name, hex, in->api_addr,
                   in->p2p_addr);
        else
            printf("  %-7s %-12s %s  key %s/institutions/%s.key\n", "inst", in->name, hex,
                   opt(c, "out"), in->name);
    }
    printf("start a node: consentd --config %s/node0/config.json\n", opt(c, "out"));
    free(g);
    return 0;
}

/* Loads --key (an institution key) if given; *key stays NULL otherwise. */
static int load_opt_key(ctx *c, chain_key **key)
{
    char pass[WALLET_PASSPHRASE_MAX + 1];
    int rc;
    *key = NULL;
    if (!opt(c, "key"))
        return 0;
    rc = wallet_passphrase(pass, c->err, opt(c, "passphrase-file"), 0);
    if (!rc)
        rc = wallet_key_load(key, c->err, opt(c, "key"), pass);
    OPENSSL_cleanse(pass, sizeof pass);
    return rc ? fail(c->err) : 0;
}

/* Percent-encodes a query value (codes are plain, but be safe). */
static void qenc(char *out, size_t cap, const char *s)
{
    size_t n = 0;
    for (; *s && n + 4 < cap; s++) {
        unsigned char ch = (unsigned char)*s;
        if ((ch >= 'a' && ch <= 'z') || (ch >= 'A' && ch <= 'Z') || (ch >= '0' && ch <= '9') ||
            ch == '-' || ch == '_' || ch == '.')
            out[n++] = (char)ch;
        else
            n += (size_t)snprintf(out + n, cap - n, "%%%02X", ch);
    }
    out[n] = 0;
}

/* Parses the check question into q (at_s: --at, else now) and builds the
 * request target; with --verify the time and proof=1 are always sent, so the
 * node answers exactly the question that is then verified. */
static int check_target(ctx *c, chain_check_query *q, char *target, size_t cap)
{
    char scope[3 * CHAIN_CODE_LEN_MAX + 1], purpose[3 * CHAIN_CODE_LEN_MAX + 1];
    char phex[2 * CHAIN_KEY_LEN + 1], ghex[2 * CHAIN_KEY_LEN + 1];
    int n;
    memset(q, 0, sizeof *q);
    if (!opt(c, "patient") || !opt(c, "grantee") || !opt(c, "scope") || !opt(c, "purpose"))
        return usage_error("check needs --patient, --grantee, --scope and --purpose");
    if (wallet_parse_pubkey(&q->patient, opt(c, "patient")) ||
        wallet_parse_pubkey(&q->grantee, opt(c, "grantee")))
        return usage_error("--patient/--grantee: not a 64-hex-digit key");
    if (!chain_scope_valid(opt(c, "scope")))
        return usage_error("--scope: unknown scope code");
    if (!chain_purpose_valid(opt(c, "purpose")))
        return usage_error("--purpose: unknown purpose code");
    if (opt(c, "at") && wallet_parse_time(&q->at_s, opt(c, "at")))
        return usage_error("--at: not a time (unix seconds, YYYY-MM-DD or RFC 3339 UTC)");
    if (!opt(c, "at"))
        q->at_s = (uint64_t)time(NULL);
    q->scope = opt(c, "scope");
    q->purpose = opt(c, "purpose");
    qenc(scope, sizeof scope, q->scope);
    qenc(purpose, sizeof purpose, q->purpose);
    /* The node wants lower-case hex; the user may have typed upper case. */
    chain_hex(phex, q->patient.b, sizeof q->patient.b);
    chain_hex(ghex, q->grantee.b, sizeof q->grantee.b);
    n = snprintf(target, cap, "/v1/grants/check?patient=%s&grantee=%s&scope=%s&purpose=%s", phex,
                 ghex, scope, purpose);
    if (opt(c, "at") || opt(c, "verify"))
        n += snprintf(target + n, cap - (size_t)n, "&at=%" PRIu64, q->at_s);
    if (opt(c, "verify"))
        snprintf(target + n, cap - (size_t)n, "&proof=1");
    return 0;
}

/* Options that only make sense with --verify, and their combinations. */
static int verify_options(ctx *c, uint64_t *min_height)
{
    static const char *const need[] = {"max-age-blocks", "min-height", "genesis", "response-file"};
    uint64_t v;
    size_t i;
    for (i = 0; i < sizeof need / sizeof need[0]; i++) {
        if (opt(c, need[i]) && !opt(c, "verify")) {
            char msg[96];
            snprintf(msg, sizeof msg, "--%s goes with --verify", need[i]);
            return usage_error(msg);
        }
    }
    if (opt(c, "response-file") && (opt(c, "max-age-blocks") || opt(c, "key")))
        return usage_error("--response-file verifies a saved answer: no node, so no --max-age-blocks "
                           "or --key (use --min-height)");
    if (opt(c, "max-age-blocks") && wallet_parse_u64(&v, opt(c, "max-age-blocks")))
        return usage_error("--max-age-blocks: not a number of blocks");
    *min_height = 0;
    if (opt(c, "min-height") && wallet_parse_u64(min_height, opt(c, "min-height")))
        return usage_error("--min-height: not a block height");
    return 0;
}

/* Reads a saved answer (hidden option --response-file, for gateways that
 * verify answers they stored, and for tests that tamper with one). */
static int read_answer(ctx *c, json_t **out)
{
    json_error_t jerr;
    FILE *f = fopen(opt(c, "response-file"), "rb");
    char *buf = malloc(ANSWER_BYTES_MAX + 1);
    size_t n = f && buf ? fread(buf, 1, ANSWER_BYTES_MAX + 1, f) : 0;
    if (f)
        fclose(f);
    *out = f && buf && n <= ANSWER_BYTES_MAX ? json_loadb(buf, n, 0, &jerr) : NULL;
    free(buf);
    if (*out && json_is_object(*out))
        return 0;
    json_decref(*out);
    snprintf(c->err, sizeof c->err, "%.200s: %s", opt(c, "response-file"),
             !f ? "cannot open" : n > ANSWER_BYTES_MAX ? "too large" : "not a JSON object");
    return fail(c->err);
}

/* --max-age-blocks N: the proof may be at most N blocks behind the tip the
 * node reports. A node can only make itself look older than it is, never
 * make an old proof pass a tip it admits to; --min-height takes a height
 * learnt elsewhere (e.g. from watch) for gateways that trust no tip. */
static int max_age_floor(ctx *c, uint64_t *min_height)
{
    json_t *j = NULL, *h;
    uint64_t n = 0, tip;
    if (!opt(c, "max-age-blocks"))
        return 0;
    if (wallet_parse_u64(&n, opt(c, "max-age-blocks")) ||
        wallet_client_get_json(&c->client, &j, c->err, "/v1/status"))
        return fail(c->err);
    h = json_object_get(j, "height");
    tip = json_is_integer(h) && json_integer_value(h) > 0 ? (uint64_t)json_integer_value(h) : 0;
    json_decref(j);
    if (tip > n && tip - n > *min_height)
        *min_height = tip - n;
    return 0;
}

static int load_genesis(ctx *c, chain_genesis **out)
{
    const char *path = opt(c, "genesis") ? opt(c, "genesis") : getenv("CONSENT_GENESIS");
    int rc;
    if (!path || !path[0])
        return usage_error("--verify needs the genesis to trust: --genesis FILE or $CONSENT_GENESIS");
    *out = malloc(sizeof **out);
    if (!*out)
        return fail("out of memory");
    rc = chain_genesis_load(*out, path);
    if (rc) {
        free(*out);
        *out = NULL;
        snprintf(c->err, sizeof c->err, "%.200s: %s", path, chain_strerror(rc));
        return fail(c->err);
    }
    return 0;
}

/* Gets the answer: from a saved file, or from the node (signed with --key). */
static int fetch_answer(ctx *c, json_t **out, const char *target)
{
    chain_key *key = NULL;
    int rc;
    if (opt(c, "response-file"))
        return read_answer(c, out);
    rc = load_opt_key(c, &key);
    if (rc)
        return rc;
    c->client.sign_key = key;
    rc = wallet_client_get_json(&c->client, out, c->err, target);
    c->client.sign_key = NULL;
    chain_key_destroy(key);
    return rc ? fail(c->err) : 0;
}

static int verify_and_print(ctx *c, json_t *j, const chain_check_query *q, uint64_t min_height)
{
    chain_genesis *g = NULL;
    chain_check_result r;
    int rc = load_genesis(c, &g);
    if (!rc)
        rc = max_age_floor(c, &min_height);
    if (!rc && wallet_check_verify(&r, c->err, g, j, q, min_height)) {
        fprintf(stderr, PROG ": %s\n", c->err);
        rc = EXIT_UNVERIFIED;
    }
    free(g);
    if (rc)
        return rc;
    if (opt(c, "json")) {
        char *s = json_dumps(j, JSON_INDENT(2));
        printf("%s\n", s ? s : "{}");
        free(s);
    } else if (r.decision == CHAIN_PERMIT) {
        printf("permit (verified at height %" PRIu64 ")\n", r.height);
    } else {
        printf("deny: %s (verified at height %" PRIu64 ")\n", r.reason, r.height);
    }
    return r.decision == CHAIN_PERMIT ? 0 : 1;
}

static int cmd_check(ctx *c)
{
    char target[WALLET_PATH_LEN_MAX];
    chain_check_query q;
    uint64_t min_height = 0;
    json_t *j = NULL, *h;
    const char *decision, *reason, *gid;
    int rc = check_target(c, &q, target, sizeof target);
    if (!rc)
        rc = verify_options(c, &min_height);
    if (!rc)
        rc = fetch_answer(c, &j, target);
    if (rc)
        return rc;
    if (opt(c, "verify")) {
        rc = verify_and_print(c, j, &q, min_height);
        json_decref(j);
        return rc;
    }
    decision = json_string_value(json_object_get(j, "decision"));
    reason = json_string_value(json_object_get(j, "reason"));
    gid = json_string_value(json_object_get(json_object_get(j, "grant"), "id"));
    h = json_object_get(j, "height");
    if (!decision || (strcmp(decision, "permit") != 0 && strcmp(decision, "deny") != 0)) {
        json_decref(j);
        return fail("the node's answer has no decision");
    }
    rc = strcmp(decision, "permit") == 0 ? 0 : 1;
    if (opt(c, "json")) {
        char *s = json_dumps(j, JSON_INDENT(2) | JSON_PRESERVE_ORDER);
        printf("%s\n", s ? s : "{}");
        free(s);
    } else if (rc == 0) {
        printf("permit (height %" JSON_INTEGER_FORMAT "%s%s)\n", json_integer_value(h),
               gid ? ", grant " : "", gid ? gid : "");
    } else {
        printf("deny: %s (height %" JSON_INTEGER_FORMAT ")\n", reason ? reason : "no reason given",
               json_integer_value(h));
    }
    json_decref(j);
    return rc;
}

static void print_pretty(json_t *j)
{
    char *s = json_dumps(j, JSON_INDENT(2) | JSON_PRESERVE_ORDER);
    printf("%s\n", s ? s : "null");
    free(s);
}

static int cmd_status(ctx *c)
{
    json_t *j = NULL, *v;
    const char *k;
    if (wallet_client_get_json(&c->client, &j, c->err, "/v1/status"))
        return fail(c->err);
    if (opt(c, "json")) {
        print_pretty(j);
        json_decref(j);
        return 0;
    }
    json_object_foreach(j, k, v) {
        char *s = json_is_string(v) ? NULL : json_dumps(v, JSON_COMPACT | JSON_ENCODE_ANY);
        printf("%-10s %s\n", k, json_is_string(v) ? json_string_value(v) : (s ? s : "?"));
        free(s);
    }
    json_decref(j);
    return 0;
}

static int cmd_tx(ctx *c)
{
    chain_hash h;
    char hex[2 * CHAIN_HASH_LEN + 1], target[128];
    json_t *j = NULL;
    if (c->a.n_pos != 2 || wallet_parse_hash(&h, c->a.pos[1]))
        return usage_error("usage: tx HASH (64 hex digits)");
    chain_hex(hex, h.b, sizeof h.b);
    snprintf(target, sizeof target, "/v1/txs/%s", hex);
    if (wallet_client_get_json(&c->client, &j, c->err, target))
        return fail(c->err);
    print_pretty(j);
    json_decref(j);
    return 0;
}

static int cmd_block(ctx *c)
{
    uint64_t height;
    char target[64];
    json_t *j = NULL;
    if (c->a.n_pos != 2 || wallet_parse_u64(&height, c->a.pos[1]))
        return usage_error("usage: block HEIGHT");
    snprintf(target, sizeof target, "/v1/blocks/%" PRIu64, height);
    if (wallet_client_get_json(&c->client, &j, c->err, target))
        return fail(c->err);
    print_pretty(j);
    json_decref(j);
    return 0;
}

static int access_args(ctx *c, chain_access_record *rec)
{
    memset(rec, 0, sizeof *rec);
    if (!opt(c, "key") || !opt(c, "grant") || !opt(c, "scope") || !opt(c, "purpose"))
        return usage_error("access-record needs --key, --grant, --scope and --purpose");
    if (wallet_parse_hash(&rec->grant_id, opt(c, "grant")))
        return usage_error("--grant: not a 64-hex-digit grant id");
    if (!chain_scope_valid(opt(c, "scope")) || strlen(opt(c, "scope")) > CHAIN_CODE_LEN_MAX)
        return usage_error("--scope: unknown scope code");
    if (!chain_purpose_valid(opt(c, "purpose")) || strlen(opt(c, "purpose")) > CHAIN_CODE_LEN_MAX)
        return usage_error("--purpose: unknown purpose code");
    snprintf(rec->scope.s, sizeof rec->scope.s, "%s", opt(c, "scope"));
    snprintf(rec->purpose.s, sizeof rec->purpose.s, "%s", opt(c, "purpose"));
    if (opt(c, "request-hash")) {
        if (wallet_parse_hash(&rec->request_hash, opt(c, "request-hash")))
            return usage_error("--request-hash: not 64 hex digits");
    } else {
        /* No request record given: name this release by what it was and when. */
        char buf[256];
        int n = snprintf(buf, sizeof buf, "access:%s:%s:%s:%" PRIu64, opt(c, "grant"),
                         rec->scope.s, rec->purpose.s, (uint64_t)time(NULL));
        chain_sha256(&rec->request_hash, buf, (size_t)n < sizeof buf ? (size_t)n : sizeof buf - 1);
    }
    return 0;
}

typedef struct {
    int raw;                 /* --json: print the node's lines as they are */
    uint64_t last_height;
    char err[WALLET_ERR_LEN];
} watch_state;

static int on_event(void *arg, const char *line, size_t len)
{
    watch_state *w = arg;
    wallet_event e;
    char out[WALLET_EVENT_LINE_MAX];
    int rc = wallet_event_parse(&e, w->err, line, len);
    if (rc == 1)
        return 0;   /* heartbeat */
    if (rc)
        return rc;
    if (w->raw) {
        fwrite(line, 1, len, stdout);
        fputc('\n', stdout);
    } else {
        wallet_event_format(out, sizeof out, &e);
        printf("%s\n", out);
    }
    /* A gateway pipes this into its cache: every event must leave now. */
    fflush(stdout);
    w->last_height = e.height;
    return 0;
}

static int cmd_watch(ctx *c)
{
    char target[64];
    watch_state w;
    chain_key *key = NULL;
    uint64_t from = 0;
    int rc;
    memset(&w, 0, sizeof w);
    w.raw = opt(c, "json") != NULL;
    if (opt(c, "from") && wallet_parse_u64(&from, opt(c, "from")))
        return usage_error("--from: not a block height");
    snprintf(target, sizeof target, "/v1/events");
    if (opt(c, "from"))
        snprintf(target, sizeof target, "/v1/events?from=%" PRIu64, from);
    rc = load_opt_key(c, &key);
    if (rc)
        return rc;
    c->client.sign_key = key;
    rc = wallet_client_stream(&c->client, c->err, target, on_event, &w);
    chain_key_destroy(key);
    if (rc == WALLET_EJSON)
        return fail(w.err);
    if (rc)
        return fail(c->err);
    /* Resume at the last height seen, not after it: the stream may have
     * ended between two events of one block, and a repeated event is
     * harmless to a cache where a lost one is not. */
    snprintf(c->err, sizeof c->err, "the node ended the stream (last event at height %" PRIu64
             "; resume with --from %" PRIu64 ")", w.last_height, w.last_height ? w.last_height : from);
    return fail(c->err);
}

static int cmd_access_record(ctx *c)
{
    char pass[WALLET_PASSPHRASE_MAX + 1], hex[2 * CHAIN_HASH_LEN + 1];
    chain_key *key = NULL;
    chain_tx tx;
    chain_hash id;
    uint64_t secs = WAIT_S_DEFAULT, height = 0;
    int rc;
    memset(&tx, 0, sizeof tx);
    rc = access_args(c, &tx.body.access_record);
    if (rc)
        return rc;
    if (opt(c, "timeout") && (wallet_parse_u64(&secs, opt(c, "timeout")) || secs < 1 || secs > 3600))
        return usage_error("--timeout must be 1..3600 seconds");
    rc = wallet_passphrase(pass, c->err, opt(c, "passphrase-file"), 0);
    if (!rc)
        rc = wallet_key_load(&key, c->err, opt(c, "key"), pass);
    OPENSSL_cleanse(pass, sizeof pass);
    if (rc)
        return fail(c->err);
    tx.type = CHAIN_TX_ACCESS_RECORD;
    rc = wallet_send(&c->client, &id, c->err, &tx, key, (uint64_t)time(NULL));
    chain_key_destroy(key);
    if (rc)
        return fail(c->err);
    chain_hex(hex, id.b, sizeof id.b);
    printf("%s\n", hex);
    fflush(stdout);
    if (opt(c, "wait") &&
        wallet_client_wait_tx(&c->client, &height, c->err, &id, (int)secs * 1000, POLL_MS))
        return fail(c->err);
    return 0;
}

static int cmd_audit_export(ctx *c)
{
    uint64_t since = 0, exported = 0, skipped = 0;
    if (!opt(c, "data"))
        return usage_error("audit-export needs --data DIR (the node's data_dir)");
    if (opt(c, "since") && wallet_parse_time(&since, opt(c, "since")))
        return usage_error("--since: not a time");
    if (wallet_audit_export(stdout, c->err, opt(c, "data"), since, &exported, &skipped))
        return fail(c->err);
    if (fflush(stdout) != 0)
        return fail("cannot write the export");
    if (skipped)
        fprintf(stderr, PROG ": skipped %" PRIu64 " malformed line(s)\n", skipped);
    return 0;
}

/* A full compaction of a stopped node's store (chain_store_compact). */
static int cmd_compact(ctx *c)
{
    chain_genesis *g = NULL;
    chain_store *st = NULL;
    chain_store_stats before, after;
    int rc;
    if (!opt(c, "data") || !opt(c, "genesis"))
        return usage_error("compact needs --data DIR (the node's data_dir) and --genesis FILE");
    if (load_genesis(c, &g))
        return EXIT_ERR;
    rc = chain_store_open(&st, opt(c, "data"), g);
    if (rc == 0)
        rc = chain_store_stats_get(st, &before);
    if (rc == 0)
        rc = chain_store_compact(st);
    if (rc == 0)
        rc = chain_store_stats_get(st, &after);
    chain_store_close(st);
    free(g);
    if (rc) {
        /* RocksDB's lock on a running node's folder comes back as an I/O error. */
        snprintf(c->err, sizeof c->err, "%.200s: %s%s", opt(c, "data"), chain_strerror(rc),
                 rc == CHAIN_EIO ? " (is the node still running?)" : "");
        return fail(c->err);
    }
    printf("compacted: %.1f MB of table files, was %.1f MB\n", (double)after.sst_bytes / 1e6,
           (double)before.sst_bytes / 1e6);
    return 0;
}

typedef struct {
    const char *name;
    const char *options;   /* accepted options besides help and node */
    int n_pos;             /* positionals including the command */
    int (*run)(ctx *c);
} command;

static const command COMMANDS[] = {
    {"testnet", " validators out institutions port-base chain-id block-interval-ms force ", 1,
     cmd_testnet},
    {"check", " patient grantee scope purpose at json key passphrase-file verify max-age-blocks "
              "min-height genesis response-file ", 1, cmd_check},
    {"watch", " from key passphrase-file json ", 1, cmd_watch},
    {"status", " json ", 1, cmd_status},
    {"tx", " ", 2, cmd_tx},
    {"block", " ", 2, cmd_block},
    {"access-record", " key grant scope purpose request-hash passphrase-file wait timeout ", 1,
     cmd_access_record},
    {"audit-export", " data since ", 1, cmd_audit_export},
    {"compact", " data genesis ", 1, cmd_compact},
};

static int options_allowed(const ctx *c, const command *cmd)
{
    size_t i;
    for (i = 0; i < N_SPEC; i++) {
        char pat[40], msg[128];
        if (!c->a.val[i] || strcmp(SPEC[i].name, "help") == 0 || strcmp(SPEC[i].name, "node") == 0)
            continue;
        snprintf(pat, sizeof pat, " %s ", SPEC[i].name);
        if (!strstr(cmd->options, pat)) {
            snprintf(msg, sizeof msg, "option --%s does not apply to %s", SPEC[i].name, cmd->name);
            return usage_error(msg);
        }
    }
    if (c->a.n_pos > cmd->n_pos)
        return usage_error("unexpected argument");
    return 0;
}

int main(int argc, char **argv)
{
    ctx c;
    const char *node;
    size_t i;
    int rc;
    memset(&c, 0, sizeof c);
    rc = wallet_args_command(&c.a, c.err, SPEC, N_SPEC, argc - 1, argv + 1, USAGE);
    if (rc)
        return rc > 0 ? 0 : usage_error(c.err);
    node = opt(&c, "node") ? opt(&c, "node") : getenv("CONSENT_NODE");
    if (wallet_client_init(&c.client, node && node[0] ? node : "http://127.0.0.1:7700"))
        return usage_error("--node: not an http://host:port URL");
    for (i = 0; i < sizeof COMMANDS / sizeof COMMANDS[0]; i++) {
        if (strcmp(COMMANDS[i].name, c.a.pos[0]) != 0)
            continue;
        rc = options_allowed(&c, &COMMANDS[i]);
        return rc ? rc : COMMANDS[i].run(&c);
    }
    return usage_error("unknown command");
}
