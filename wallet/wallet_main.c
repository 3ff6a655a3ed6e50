/* wallet_main.c — consent-wallet, the patient's wallet.
 *
 * A thin shell over wallet/: parse the command line, check every argument
 * before asking for a passphrase, load the key, build and sign the tx, send
 * it, optionally wait for the commit. Exit 0 on success, 1 on failure
 * (including a rejected tx), 2 on a bad command line; errors are one line on
 * stderr. The secret key is never printed.
 */
#include <errno.h>
#include <inttypes.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include <openssl/crypto.h>

#include "wallet/wallet.h"

#define PROG "consent-wallet"
#define WAIT_S_DEFAULT 30
#define POLL_MS 100
#define DAYS_MAX 36600

static const wallet_opt_spec SPEC[] = {
    {"help", 0},    {"wallet", 1},  {"node", 1},  {"passphrase-file", 1}, {"force", 0},
    {"grantee", 1}, {"scope", 1},   {"purpose", 1}, {"from", 1},          {"until", 1},
    {"days", 1},    {"patient", 1}, {"wait", 0},  {"timeout", 1},        {"fhir", 0},
};
#define N_SPEC (sizeof SPEC / sizeof SPEC[0])

static const char USAGE[] =
    "usage: consent-wallet [--wallet FILE] [--node URL] [--passphrase-file F] COMMAND ...\n"
    "\n"
    "commands:\n"
    "  keygen [--force]                  create a key (refuses to overwrite without --force)\n"
    "  address                           print the wallet's public key\n"
    "  grant --grantee KEY --scope S[,S..] --purpose U[,U..] (--until T | --days N)\n"
    "        [--from T] [--patient KEY] [--wait]   grant access; prints the grant id\n"
    "  grant --fhir FILE [--patient KEY] [--wait]\n"
    "                                    grant what an HL7 FHIR R4 Consent says (FILE - : stdin)\n"
    "  revoke GRANT_ID [--wait]          revoke a grant (as the patient or their guardian)\n"
    "  list [--patient KEY] [--fhir]     the patient's grants (--fhir: a FHIR Bundle of Consents)\n"
    "  export GRANT_ID [--fhir]          one grant as a FHIR Consent (re-imports to the same grant)\n"
    "  audit [--patient KEY]             releases gateways recorded under the patient's grants\n"
    "  guardian set KEY [--wait]         name a guardian who may grant and revoke for you\n"
    "  guardian remove KEY [--wait]      remove that guardian\n"
    "  nonce                             the next nonce of this wallet's key\n"
    "\n"
    "options:\n"
    "  --wallet FILE      key file (default $CONSENT_WALLET or ~/.consent/wallet.key)\n"
    "  --node URL         node API (default $CONSENT_NODE or http://127.0.0.1:7700)\n"
    "  --passphrase-file F  read the passphrase from F (else $CONSENT_PASSPHRASE, else a prompt)\n"
    "  --wait             wait until the tx is committed; exit 1 if it is rejected\n"
    "  --timeout S        how long --wait waits (default 30 s)\n"
    "Times: unix seconds, YYYY-MM-DD (UTC midnight) or RFC 3339 UTC (2026-01-31T12:00:00Z).\n";

typedef struct {
    wallet_args a;
    char wallet_path[PATH_MAX];
    wallet_client client;
    char err[WALLET_ERR_LEN];
    int timeout_ms;
} ctx;

static const char *opt(const ctx *c, const char *name)
{
    return wallet_args_get(&c->a, SPEC, N_SPEC, name);
}

static int fail(const char *msg)
{
    fprintf(stderr, PROG ": %s\n", msg);
    return 1;
}

static int usage_error(const char *msg)
{
    fprintf(stderr, PROG ": %s (see --help)\n", msg);
    return 2;
}

/* Options each command accepts besides the global ones. */
static int options_allowed(const ctx *c, const char *cmd, const char *allowed)
{
    static const char *const global[] = {"help", "wallet", "node", "passphrase-file"};
    size_t i, g;
    for (i = 0; i < N_SPEC; i++) {
        int ok = 0;
        char pat[40];
        if (!c->a.val[i])
            continue;
        for (g = 0; g < sizeof global / sizeof global[0]; g++)
            ok |= strcmp(global[g], SPEC[i].name) == 0;
        snprintf(pat, sizeof pat, " %s ", SPEC[i].name);
        if (!ok && !strstr(allowed, pat)) {
            char msg[128];
            snprintf(msg, sizeof msg, "option --%s does not apply to %s", SPEC[i].name, cmd);
            return usage_error(msg);
        }
    }
    return 0;
}

static int load_key(ctx *c, chain_key **key)
{
    char pass[WALLET_PASSPHRASE_MAX + 1];
    int rc = wallet_passphrase(pass, c->err, opt(c, "passphrase-file"), 0);
    if (!rc)
        rc = wallet_key_load(key, c->err, c->wallet_path, pass);
    OPENSSL_cleanse(pass, sizeof pass);
    return rc ? fail(c->err) : 0;
}

static void print_key(const chain_key *key)
{
    chain_pubkey pk;
    char hex[2 * CHAIN_KEY_LEN + 1];
    chain_key_pubkey(key, &pk);
    chain_hex(hex, pk.b, sizeof pk.b);
    printf("%s\n", hex);
}

/* The default wallet lives in ~/.consent, created private on first use. */
static int ensure_parent(const char *path)
{
    char dir[PATH_MAX];
    char *slash;
    snprintf(dir, sizeof dir, "%s", path);
    slash = strrchr(dir, '/');
    if (!slash || slash == dir)
        return 0;
    *slash = 0;
    if (mkdir(dir, 0700) != 0 && errno != EEXIST)
        return -1;
    return 0;
}

static int cmd_keygen(ctx *c)
{
    char pass[WALLET_PASSPHRASE_MAX + 1];
    struct stat st;
    chain_key *key;
    int rc;
    if (stat(c->wallet_path, &st) == 0 && !opt(c, "force")) {
        snprintf(c->err, sizeof c->err, "%.200s already exists (use --force to replace it)",
                 c->wallet_path);
        return fail(c->err);
    }
    if (ensure_parent(c->wallet_path) != 0)
        return fail("cannot create the wallet's folder");
    rc = wallet_passphrase(pass, c->err, opt(c, "passphrase-file"), 1);
    if (rc)
        return fail(c->err);
    key = chain_key_create(NULL);
    rc = key ? chain_keystore_save(c->wallet_path, key, pass) : CHAIN_ENOMEM;
    OPENSSL_cleanse(pass, sizeof pass);
    if (rc) {
        chain_key_destroy(key);
        snprintf(c->err, sizeof c->err, "cannot write %.200s: %s", c->wallet_path, chain_strerror(rc));
        return fail(c->err);
    }
    print_key(key);
    chain_key_destroy(key);
    return 0;
}

static int cmd_address(ctx *c)
{
    chain_key *key = NULL;
    int rc = load_key(c, &key);
    if (rc)
        return rc;
    print_key(key);
    chain_key_destroy(key);
    return 0;
}

/* Sends tx, prints its id, and with --wait waits for the commit. */
static int send_and_report(ctx *c, chain_tx *tx, const chain_key *key)
{
    chain_hash id;
    char hex[2 * CHAIN_HASH_LEN + 1];
    uint64_t height = 0;
    int rc = wallet_send(&c->client, &id, c->err, tx, key, (uint64_t)time(NULL));
    if (rc)
        return fail(c->err);
    chain_hex(hex, id.b, sizeof id.b);
    printf("%s\n", hex);
    fflush(stdout);
    if (!opt(c, "wait"))
        return 0;
    rc = wallet_client_wait_tx(&c->client, &height, c->err, &id, c->timeout_ms, POLL_MS);
    if (rc)
        return fail(c->err);
    fprintf(stderr, "committed at height %" PRIu64 "\n", height);
    return 0;
}

/* --from/--until/--days into a validity window. */
static int grant_window(ctx *c, chain_grant *g)
{
    uint64_t now = (uint64_t)time(NULL), days = 0;
    g->not_before = now;
    if (opt(c, "from") && wallet_parse_time(&g->not_before, opt(c, "from")))
        return usage_error("--from: not a time (unix seconds, YYYY-MM-DD or RFC 3339 UTC)");
    if (!!opt(c, "until") == !!opt(c, "days"))
        return usage_error("give exactly one of --until and --days");
    if (opt(c, "until") && wallet_parse_time(&g->not_after, opt(c, "until")))
        return usage_error("--until: not a time (unix seconds, YYYY-MM-DD or RFC 3339 UTC)");
    if (opt(c, "days")) {
        if (wallet_parse_u64(&days, opt(c, "days")) || days < 1 || days > DAYS_MAX)
            return usage_error("--days must be a whole number 1..36600");
        g->not_after = g->not_before + days * 86400;
    }
    if (g->not_after <= now)
        return usage_error("the grant would end in the past");
    if (g->not_after <= g->not_before)
        return usage_error("the grant must end after it starts");
    if (g->not_after - g->not_before > CHAIN_GRANT_DURATION_MAX_S)
        return usage_error("the grant is longer than 100 years");
    return 0;
}

static int grant_args(ctx *c, chain_grant *g)
{
    int rc;
    memset(g, 0, sizeof *g);
    if (!opt(c, "grantee") || !opt(c, "scope") || !opt(c, "purpose"))
        return usage_error("grant needs --grantee, --scope and --purpose");
    if (wallet_parse_pubkey(&g->grantee, opt(c, "grantee")))
        return usage_error("--grantee: not a 64-hex-digit key");
    if (opt(c, "patient") && wallet_parse_pubkey(&g->patient, opt(c, "patient")))
        return usage_error("--patient: not a 64-hex-digit key");
    if (wallet_parse_codes(g->scopes, &g->n_scopes, CHAIN_SCOPES_MAX, opt(c, "scope"),
                           chain_scope_valid, c->err)) {
        char msg[WALLET_ERR_LEN + 16];
        snprintf(msg, sizeof msg, "--scope: %s", c->err);
        return usage_error(msg);
    }
    if (wallet_parse_codes(g->purposes, &g->n_purposes, CHAIN_PURPOSES_MAX, opt(c, "purpose"),
                           chain_purpose_valid, c->err)) {
        char msg[WALLET_ERR_LEN + 16];
        snprintf(msg, sizeof msg, "--purpose: %s", c->err);
        return usage_error(msg);
    }
    rc = grant_window(c, g);
    return rc;
}

/* Reads a FHIR document (path "-": stdin), bounded, and parses its JSON. */
static int read_fhir(ctx *c, json_t **out)
{
    const char *path = c->a.pos[1];
    FILE *f = strcmp(path, "-") == 0 ? stdin : fopen(path, "rb");
    char *buf;
    size_t n;
    json_error_t jerr;
    if (!f) {
        snprintf(c->err, sizeof c->err, "cannot open %.200s: %s", path, strerror(errno));
        return fail(c->err);
    }
    buf = malloc(WALLET_FHIR_BYTES_MAX + 1);
    n = buf ? fread(buf, 1, WALLET_FHIR_BYTES_MAX + 1, f) : 0;
    if (f != stdin)
        fclose(f);
    if (!buf)
        return fail("out of memory");
    *out = n > WALLET_FHIR_BYTES_MAX ? NULL : json_loadb(buf, n, JSON_REJECT_DUPLICATES, &jerr);
    free(buf);
    if (n > WALLET_FHIR_BYTES_MAX)
        snprintf(c->err, sizeof c->err, "%.200s: over %d bytes", path, WALLET_FHIR_BYTES_MAX);
    else if (!*out)
        snprintf(c->err, sizeof c->err, "%.120s: not JSON: %.100s (line %d)", path, jerr.text,
                 jerr.line);
    return *out ? 0 : fail(c->err);
}

/* The Consent mapped onto a grant for patient pk; usage-level checks that
 * need the clock (an end in the past) happen here, not in the mapping. */
static int fhir_grant(ctx *c, chain_grant *g, const json_t *consent, const chain_pubkey *pk)
{
    char msg[WALLET_ERR_LEN + 256];
    if (wallet_fhir_import(g, c->err, consent, pk)) {
        snprintf(msg, sizeof msg, "%.200s: %s", c->a.pos[1], c->err);
        return fail(msg);
    }
    if (g->not_after <= (uint64_t)time(NULL)) {
        snprintf(msg, sizeof msg, "%.200s: the grant would end in the past", c->a.pos[1]);
        return fail(msg);
    }
    return 0;
}

/* grant --fhir FILE: everything in the file is checked before the
 * passphrase is asked for, against the patient the Consent names (or
 * --patient); then once more against the wallet's own key. */
static int cmd_grant_fhir(ctx *c)
{
    static const char *const manual[] = {"grantee", "scope", "purpose", "from", "until", "days"};
    chain_tx tx;
    chain_pubkey pk;
    chain_key *key = NULL;
    json_t *consent = NULL;
    size_t i;
    int rc;
    for (i = 0; i < sizeof manual / sizeof manual[0]; i++)
        if (opt(c, manual[i]))
            return usage_error("--fhir takes the grant from the file: drop --grantee, --scope, "
                               "--purpose, --from, --until and --days");
    if (c->a.n_pos != 2)
        return usage_error("usage: grant --fhir FILE");
    if (opt(c, "patient") && wallet_parse_pubkey(&pk, opt(c, "patient")))
        return usage_error("--patient: not a 64-hex-digit key");
    memset(&tx, 0, sizeof tx);
    rc = read_fhir(c, &consent);
    if (rc)
        return rc;
    if (!opt(c, "patient")) {
        const char *named = json_string_value(json_object_get(
            json_object_get(json_object_get(consent, "patient"), "identifier"), "value"));
        memset(&pk, 0, sizeof pk);
        if (named && wallet_parse_pubkey(&pk, named))
            memset(&pk, 0, sizeof pk);
    }
    rc = fhir_grant(c, &tx.body.grant, consent, &pk);
    if (!rc && !opt(c, "patient"))
        rc = load_key(c, &key);
    if (!rc && key) {
        chain_key_pubkey(key, &pk);
        rc = fhir_grant(c, &tx.body.grant, consent, &pk);
    }
    json_decref(consent);
    if (!rc && !key)
        rc = load_key(c, &key);
    if (!rc) {
        tx.type = CHAIN_TX_GRANT;
        rc = send_and_report(c, &tx, key);
    }
    chain_key_destroy(key);
    return rc;
}

static int cmd_grant(ctx *c)
{
    chain_tx tx;
    chain_key *key = NULL;
    int rc;
    if (opt(c, "fhir"))
        return cmd_grant_fhir(c);
    if (c->a.n_pos != 1)
        return usage_error("unexpected argument (a FILE goes with --fhir)");
    memset(&tx, 0, sizeof tx);
    rc = grant_args(c, &tx.body.grant);
    if (rc)
        return rc;
    rc = load_key(c, &key);
    if (rc)
        return rc;
    if (!opt(c, "patient"))
        chain_key_pubkey(key, &tx.body.grant.patient);
    tx.type = CHAIN_TX_GRANT;
    rc = send_and_report(c, &tx, key);
    chain_key_destroy(key);
    return rc;
}

static int cmd_revoke(ctx *c)
{
    chain_tx tx;
    chain_key *key = NULL;
    int rc;
    memset(&tx, 0, sizeof tx);
    if (c->a.n_pos != 2)
        return usage_error("usage: revoke GRANT_ID [--wait]");
    if (wallet_parse_hash(&tx.body.revoke.grant_id, c->a.pos[1]))
        return usage_error("GRANT_ID: not a 64-hex-digit id");
    rc = load_key(c, &key);
    if (rc)
        return rc;
    tx.type = CHAIN_TX_REVOKE;
    rc = send_and_report(c, &tx, key);
    chain_key_destroy(key);
    return rc;
}

static int cmd_guardian(ctx *c)
{
    chain_tx tx;
    chain_key *key = NULL;
    int rc, remove;
    if (c->a.n_pos != 3 || (strcmp(c->a.pos[1], "set") != 0 && strcmp(c->a.pos[1], "remove") != 0))
        return usage_error("usage: guardian set KEY | guardian remove KEY [--wait]");
    remove = strcmp(c->a.pos[1], "remove") == 0;
    memset(&tx, 0, sizeof tx);
    if (wallet_parse_pubkey(&tx.body.set_guardian.guardian, c->a.pos[2]))
        return usage_error("KEY: not a 64-hex-digit key");
    rc = load_key(c, &key);
    if (rc)
        return rc;
    tx.type = CHAIN_TX_SET_GUARDIAN;
    tx.body.set_guardian.remove = remove;
    rc = send_and_report(c, &tx, key);
    chain_key_destroy(key);
    return rc;
}

static void fmt_time(char *out, size_t cap, json_t *v)
{
    time_t t = (time_t)json_integer_value(v);
    struct tm tm;
    if (!json_is_integer(v) || !gmtime_r(&t, &tm) || strftime(out, cap, "%Y-%m-%dT%H:%M:%SZ", &tm) == 0)
        snprintf(out, cap, "?");
}

/* Joins a JSON array of strings with commas into out. */
static void fmt_list(char *out, size_t cap, json_t *arr)
{
    size_t i, n = 0;
    json_t *v;
    out[0] = 0;
    json_array_foreach(arr, i, v) {
        const char *s = json_string_value(v);
        if (s && n < cap)
            n += (size_t)snprintf(out + n, cap - n, "%s%s", i ? "," : "", s);
    }
}

static void print_json(const json_t *j)
{
    char *s = json_dumps(j, JSON_INDENT(2));
    printf("%s\n", s ? s : "null");
    free(s);
}

static void print_grant(json_t *g)
{
    char from[32], until[32], scopes[1200], purposes[600];
    const char *id = json_string_value(json_object_get(g, "id"));
    const char *st = json_string_value(json_object_get(g, "status"));
    const char *grantee = json_string_value(json_object_get(g, "grantee"));
    fmt_time(from, sizeof from, json_object_get(g, "not_before"));
    fmt_time(until, sizeof until, json_object_get(g, "not_after"));
    fmt_list(scopes, sizeof scopes, json_object_get(g, "scopes"));
    fmt_list(purposes, sizeof purposes, json_object_get(g, "purposes"));
    printf("%-64s  %-7s  %-64s  %s..%s  %s  %s\n", id ? id : "?", st ? st : "?",
           grantee ? grantee : "?", from, until, scopes, purposes);
}

/* GET /v1/patients/{key}/WHAT, signed with the wallet's key (the patient's,
 * or with --patient KEY the guardian's): the node shows a patient's
 * records only to the patient, a guardian or an authorised institution. */
static int get_patient(ctx *c, json_t **out, const char *what)
{
    chain_pubkey pk;
    chain_key *key = NULL;
    char hex[2 * CHAIN_KEY_LEN + 1], target[160];
    int rc;
    if (opt(c, "patient") && wallet_parse_pubkey(&pk, opt(c, "patient")))
        return usage_error("--patient: not a 64-hex-digit key");
    rc = load_key(c, &key);
    if (rc)
        return rc;
    if (!opt(c, "patient"))
        chain_key_pubkey(key, &pk);
    chain_hex(hex, pk.b, sizeof pk.b);
    snprintf(target, sizeof target, "/v1/patients/%s/%s", hex, what);
    c->client.sign_key = key;
    rc = wallet_client_get_json(&c->client, out, c->err, target);
    c->client.sign_key = NULL;
    chain_key_destroy(key);
    return rc ? fail(c->err) : 0;
}

/* One grant of the node's JSON as a FHIR Consent (new reference). */
static json_t *grant_fhir(ctx *c, const json_t *gj)
{
    chain_grant g;
    chain_hash id;
    int active;
    json_t *f;
    if (wallet_grant_from_json(&g, &id, &active, c->err, gj))
        return NULL;
    f = wallet_fhir_export(&g, &id, active);
    if (!f)
        snprintf(c->err, sizeof c->err, "cannot write the grant as FHIR");
    return f;
}

/* list --fhir: a FHIR Bundle (type collection) of Consents. */
static int print_bundle(ctx *c, json_t *arr)
{
    json_t *b = json_pack("{s:s, s:s, s:[]}", "resourceType", "Bundle", "type", "collection",
                          "entry"), *g;
    size_t i;
    if (!b)
        return fail("out of memory");
    json_array_foreach(arr, i, g) {
        json_t *f = grant_fhir(c, g);
        if (!f) {
            json_decref(b);
            return fail(c->err);
        }
        json_array_append_new(json_object_get(b, "entry"), json_pack("{s:o}", "resource", f));
    }
    print_json(b);
    json_decref(b);
    return 0;
}

static int cmd_list(ctx *c)
{
    json_t *j = NULL, *arr, *g;
    size_t i;
    int rc = get_patient(c, &j, "grants");
    if (rc)
        return rc;
    arr = json_object_get(j, "grants");
    if (!json_is_array(arr)) {
        json_decref(j);
        return fail("the node's answer has no grants list");
    }
    if (opt(c, "fhir")) {
        rc = print_bundle(c, arr);
        json_decref(j);
        return rc;
    }
    printf("%-64s  %-7s  %-64s  %s  %s  %s\n", "GRANT", "STATUS", "GRANTEE", "VALID (UTC)",
           "SCOPES", "PURPOSES");
    json_array_foreach(arr, i, g)
        print_grant(g);
    if (json_array_size(arr) == 0)
        printf("(no grants)\n");
    if (json_is_true(json_object_get(j, "truncated")))
        printf("(the node listed only the first %zu)\n", json_array_size(arr));
    json_decref(j);
    return 0;
}

static int cmd_export(ctx *c)
{
    chain_hash id;
    chain_key *key = NULL;
    char hex[2 * CHAIN_HASH_LEN + 1], target[128];
    json_t *j = NULL, *f;
    const char *got;
    int rc;
    if (c->a.n_pos != 2 || wallet_parse_hash(&id, c->a.pos[1]))
        return usage_error("usage: export GRANT_ID [--fhir]");
    rc = load_key(c, &key);
    if (rc)
        return rc;
    chain_hex(hex, id.b, sizeof id.b);
    snprintf(target, sizeof target, "/v1/grants/%s", hex);
    c->client.sign_key = key;
    rc = wallet_client_get_json(&c->client, &j, c->err, target);
    c->client.sign_key = NULL;
    chain_key_destroy(key);
    if (rc)
        return fail(c->err);
    got = json_string_value(json_object_get(j, "id"));
    f = got && strcmp(got, hex) == 0 ? grant_fhir(c, j) : NULL;
    if (!got || strcmp(got, hex) != 0)
        snprintf(c->err, sizeof c->err, "the node answered another grant");
    json_decref(j);
    if (!f)
        return fail(c->err);
    print_json(f);
    json_decref(f);
    return 0;
}

/* One release: when, which gateway, under which grant, what and why. */
static void print_access(json_t *a)
{
    char when[32];
    json_t *ms = json_object_get(a, "time_ms");
    json_t *secs = json_integer(json_is_integer(ms) ? json_integer_value(ms) / 1000 : -1);
    const char *gw = json_string_value(json_object_get(a, "gateway"));
    const char *gid = json_string_value(json_object_get(a, "grant_id"));
    const char *scope = json_string_value(json_object_get(a, "scope"));
    const char *purpose = json_string_value(json_object_get(a, "purpose"));
    fmt_time(when, sizeof when, secs);
    json_decref(secs);
    printf("%-20s  %-8" JSON_INTEGER_FORMAT "  %-64s  %-64s  %s  %s\n", when,
           json_integer_value(json_object_get(a, "height")), gw ? gw : "?", gid ? gid : "?",
           scope ? scope : "?", purpose ? purpose : "?");
}

static int cmd_audit(ctx *c)
{
    json_t *j = NULL, *arr, *a;
    size_t i;
    int rc = get_patient(c, &j, "access");
    if (rc)
        return rc;
    arr = json_object_get(j, "access");
    if (!json_is_array(arr)) {
        json_decref(j);
        return fail("the node's answer has no access list");
    }
    printf("%-20s  %-8s  %-64s  %-64s  %s  %s\n", "TIME (UTC)", "HEIGHT", "GATEWAY", "GRANT",
           "SCOPE", "PURPOSE");
    json_array_foreach(arr, i, a)
        print_access(a);
    if (json_array_size(arr) == 0)
        printf("(no releases recorded)\n");
    if (json_is_true(json_object_get(j, "truncated")))
        printf("(the node listed only the first %zu)\n", json_array_size(arr));
    json_decref(j);
    return 0;
}

static int cmd_nonce(ctx *c)
{
    chain_key *key = NULL;
    chain_pubkey pk;
    uint64_t next = 0;
    int rc = load_key(c, &key);
    if (rc)
        return rc;
    chain_key_pubkey(key, &pk);
    chain_key_destroy(key);
    if (wallet_client_next_nonce(&c->client, &next, c->err, &pk))
        return fail(c->err);
    printf("%" PRIu64 "\n", next);
    return 0;
}

typedef struct {
    const char *name;
    const char *options;   /* " a b " list of accepted non-global options */
    int n_pos;             /* positionals at most, the command included */
    int (*run)(ctx *c);
} command;

static const command COMMANDS[] = {
    {"keygen", " force ", 1, cmd_keygen},
    {"address", " ", 1, cmd_address},
    {"grant", " grantee scope purpose from until days patient wait timeout fhir ", 2, cmd_grant},
    {"revoke", " wait timeout ", 2, cmd_revoke},
    {"list", " patient fhir ", 1, cmd_list},
    {"export", " fhir ", 2, cmd_export},
    {"audit", " patient ", 1, cmd_audit},
    {"guardian", " wait timeout ", 3, cmd_guardian},
    {"nonce", " ", 1, cmd_nonce},
};

static int setup(ctx *c)
{
    const char *w = opt(c, "wallet") ? opt(c, "wallet") : getenv("CONSENT_WALLET");
    const char *node = opt(c, "node") ? opt(c, "node") : getenv("CONSENT_NODE");
    uint64_t secs = WAIT_S_DEFAULT;
    if (w && w[0])
        snprintf(c->wallet_path, sizeof c->wallet_path, "%s", w);
    else if (getenv("HOME"))
        snprintf(c->wallet_path, sizeof c->wallet_path, "%s/.consent/wallet.key", getenv("HOME"));
    else
        return usage_error("no --wallet given and HOME is not set");
    if (wallet_client_init(&c->client, node && node[0] ? node : "http://127.0.0.1:7700"))
        return usage_error("--node: not an http://host:port URL");
    if (opt(c, "timeout") && (wallet_parse_u64(&secs, opt(c, "timeout")) || secs < 1 || secs > 3600))
        return usage_error("--timeout must be 1..3600 seconds");
    c->timeout_ms = (int)secs * 1000;
    return 0;
}

int main(int argc, char **argv)
{
    ctx c;
    size_t i;
    int rc;
    memset(&c, 0, sizeof c);
    rc = wallet_args_command(&c.a, c.err, SPEC, N_SPEC, argc - 1, argv + 1, USAGE);
    if (rc)
        return rc > 0 ? 0 : usage_error(c.err);
    for (i = 0; i < sizeof COMMANDS / sizeof COMMANDS[0]; i++) {
        if (strcmp(COMMANDS[i].name, c.a.pos[0]) != 0)
            continue;
        rc = options_allowed(&c, COMMANDS[i].name, COMMANDS[i].options);
        if (!rc)
            rc = setup(&c);
        if (!rc && c.a.n_pos > COMMANDS[i].n_pos)
            rc = usage_error("unexpected argument");
        return rc ? rc : COMMANDS[i].run(&c);
    }
    return usage_error("unknown command");
}
