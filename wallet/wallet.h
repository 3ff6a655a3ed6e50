/* wallet.h — the public interface of the wallet module.
 *
 * wallet/ is the client side of consent-ledger: it builds and signs
 * transactions with chain/ (codec, keys, key store), talks to a node over a
 * small blocking HTTP/1.1 client, parses what users type (times, code lists,
 * keys, options), and writes the files of a local test network. It never
 * links node/. The programs consent-wallet and consentctl are thin shells
 * over these functions.
 *
 * Conventions as in chain/chain.h: context first, then outputs, then inputs;
 * 0 or a negative error code (CHAIN_E* or WALLET_E*); wallet_strerror()
 * knows both. Functions that can fail for a reason worth showing the user
 * take an `err` buffer (WALLET_ERR_LEN bytes) and write one line into it.
 */
#ifndef CONSENT_WALLET_H
#define CONSENT_WALLET_H

#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

#include <jansson.h>

#include "chain/chain.h"

#ifdef __cplusplus
extern "C" {
#endif

/* ------------------------------------------------------------------ limits */
#define WALLET_ERR_LEN 256
#define WALLET_PASSPHRASE_MAX 1024          /* bytes, without the terminator */
#define WALLET_HTTP_HEADERS_MAX (64 * 1024) /* status line + headers */
#define WALLET_HTTP_BODY_MAX (64u * 1024 * 1024) /* a block with hex txs fits */
#define WALLET_HTTP_TIMEOUT_MS 10000        /* connect, and each read/write */
#define WALLET_URL_LEN_MAX 512
#define WALLET_PATH_LEN_MAX 2048             /* request target */
#define WALLET_ARGS_POS_MAX 8                /* positional arguments */
#define WALLET_ARGS_OPTS_MAX 32              /* options in one spec */
#define WALLET_TESTNET_VALIDATORS_MAX CHAIN_VALIDATORS_MAX
#define WALLET_TESTNET_INSTITUTIONS_MAX 64

/* ------------------------------------------------------------------ errors */
enum {
    WALLET_ENET = -100,      /* cannot reach the node */
    WALLET_EHTTP = -101,     /* malformed or truncated HTTP response */
    WALLET_ETOOBIG = -102,   /* response over WALLET_HTTP_BODY_MAX / headers max */
    WALLET_ESTATUS = -103,   /* the node answered 4xx/5xx (err has its reason) */
    WALLET_EJSON = -104,     /* the node's JSON is not what the API promises */
    WALLET_ETIMEOUT = -105,
    WALLET_EREJECTED = -106, /* the transaction was rejected (err has why) */
    WALLET_EUSAGE = -107,    /* bad command line */
};
const char *wallet_strerror(int err);

/* ------------------------------------------------------------------ parsing */
/* Times: unix seconds ("1795000000"), a date ("2026-01-31", midnight UTC) or
 * RFC 3339 in UTC ("2026-01-31T12:00:00Z", optional fraction, "+00:00"
 * accepted). Anything else, an impossible date or a time before 1970 is
 * CHAIN_EINVAL. */
int wallet_parse_time(uint64_t *out, const char *s) CHAIN_WUR;
/* A decimal uint64 with no sign, spaces or overflow; CHAIN_EINVAL else. */
int wallet_parse_u64(uint64_t *out, const char *s) CHAIN_WUR;
/* A 64-hex-digit key or hash (upper case accepted). CHAIN_EINVAL else. */
int wallet_parse_pubkey(chain_pubkey *out, const char *s) CHAIN_WUR;
int wallet_parse_hash(chain_hash *out, const char *s) CHAIN_WUR;
/* A comma-separated list of codes, each accepted by valid() (e.g.
 * chain_scope_valid), no empties or duplicates, at most max. On error err
 * names the bad item. */
int wallet_parse_codes(chain_code *out, uint32_t *n_out, uint32_t max, const char *csv,
                       int (*valid)(const char *), char *err) CHAIN_WUR;

/* A tiny long-option parser: "--name value", "--name=value", "--flag",
 * "-h" as "--help", "--" ends options; other words are positionals. Unknown
 * options, a missing value, a value given to a flag and repeated options are
 * WALLET_EUSAGE with a reason in err. */
typedef struct {
    const char *name;   /* without the dashes */
    int has_arg;
} wallet_opt_spec;

typedef struct {
    const char *val[WALLET_ARGS_OPTS_MAX];   /* value, or "" for a flag; NULL if absent */
    const char *pos[WALLET_ARGS_POS_MAX];
    int n_pos;
} wallet_args;

int wallet_args_parse(wallet_args *out, char *err, const wallet_opt_spec *spec, size_t n_spec,
                      int argc, char *const *argv) CHAIN_WUR;
/* The value of option `name`, or NULL if absent (or not in spec). */
const char *wallet_args_get(const wallet_args *a, const wallet_opt_spec *spec, size_t n_spec,
                            const char *name);
/* A program's command line: wallet_args_parse, then --help prints usage to
 * stdout and returns 1; no command is WALLET_EUSAGE with a reason in err.
 * 0 when a command is there to run. */
int wallet_args_command(wallet_args *out, char *err, const wallet_opt_spec *spec, size_t n_spec,
                        int argc, char *const *argv, const char *usage) CHAIN_WUR;

/* ------------------------------------------------------------------ passphrase */
/* Gets a passphrase: from file when given (its first line, trailing CR/LF
 * stripped), else the CONSENT_PASSPHRASE environment variable, else a prompt on the terminal
 * without echo (asked twice and compared when confirm). Empty passphrases
 * and ones over WALLET_PASSPHRASE_MAX are refused. out holds
 * WALLET_PASSPHRASE_MAX + 1 bytes; wipe it after use. */
int wallet_passphrase(char *out, char *err, const char *file, int confirm) CHAIN_WUR;
/* Loads a key file, with a message telling wrong passphrase, wrong mode,
 * missing file and damaged file apart. */
int wallet_key_load(chain_key **out, char *err, const char *path, const char *passphrase) CHAIN_WUR;

/* ------------------------------------------------------------------ HTTP */
typedef struct {
    int status;
    char content_type[64];
    char *body;          /* malloc'd, NUL-terminated (the NUL is not counted) */
    size_t body_len;
} wallet_http_response;
void wallet_http_response_free(wallet_http_response *r);

/* Incremental response parser over http_parser: feed bytes as they arrive,
 * then feed len 0 at EOF. Handles Content-Length, chunked, and
 * read-until-close bodies. */
typedef struct wallet_http_parser wallet_http_parser;
wallet_http_parser *wallet_http_parser_create(size_t body_max);
void wallet_http_parser_destroy(wallet_http_parser *p);
/* Returns 1 when the response is complete, 0 when more bytes are needed,
 * WALLET_EHTTP when malformed (or truncated at EOF), WALLET_ETOOBIG when over
 * a limit. After 1, take the response (ownership moves to out). */
int wallet_http_parser_feed(wallet_http_parser *p, const uint8_t *buf, size_t len) CHAIN_WUR;
int wallet_http_parser_take(wallet_http_parser *p, wallet_http_response *out) CHAIN_WUR;

/* A node's base URL: "http://host:port" (port default 80), optional path
 * prefix. Only plain http; no state besides the address and timeout. */
typedef struct {
    char host[256];
    char port[8];
    char prefix[256];
    int timeout_ms;
    const chain_key *sign_key;   /* not owned; NULL: requests go unsigned */
} wallet_client;

int wallet_client_init(wallet_client *c, const char *url) CHAIN_WUR;
/* The request-signing headers (chain_api_sign over method, target, now_s):
 * "X-Consent-Key: ..\r\nX-Consent-Time: ..\r\nX-Consent-Signature: ..\r\n"
 * into out. Returns their length, or a negative error (CHAIN_EBOUNDS if cap
 * is short, CHAIN_EINVAL for a method or target chain_api_sighash refuses).
 * wallet_client_request and _stream add them when sign_key is set. */
int wallet_auth_headers(char *out, size_t cap, const chain_key *key, const char *method,
                        const char *target, uint64_t now_s) CHAIN_WUR;
/* Ends a request head of n bytes in head (cap bytes): the signing headers
 * over prefix + target (and the body, chain_api_sign_body) when sign is set
 * and c has a sign_key, Content-Type
 * and Content-Length when there is a body, and the blank line. Returns the
 * new length, or a negative error with err set (the signature failed). */
int wallet_client_head_end(const wallet_client *c, char *head, size_t cap, int n, char *err,
                           const char *method, const char *target, int sign, const char *content_type,
                           const uint8_t *body, size_t body_len) CHAIN_WUR;
/* An authenticated API session (README, "Sessions"): opened with one
 * signed POST /v1/sessions, then each request carries a MAC instead of a
 * signature. The key is secret: wipe it with wallet_session_clear. */
typedef struct {
    uint8_t id[CHAIN_API_SESSION_ID_LEN];
    uint8_t key[CHAIN_API_SESSION_KEY_LEN];
    uint64_t expires_s;              /* node's clock, unix seconds */
} wallet_session;
/* Opens a session for key on c's node (an ephemeral ECDH exchange). A 4xx
 * is WALLET_ESTATUS with the node's reason in err; a malformed answer
 * WALLET_EJSON. */
int wallet_session_open(wallet_session *out, char *err, wallet_client *c, const chain_key *key) CHAIN_WUR;
/* "X-Consent-Session: ..\r\nX-Consent-Time: ..\r\nX-Consent-Mac: ..\r\n"
 * for method and target (path and query as sent) at now_s into out.
 * Returns the length or a negative error like wallet_auth_headers. */
int wallet_session_headers(char *out, size_t cap, const wallet_session *s, const char *method,
                           const char *target, uint64_t now_s) CHAIN_WUR;
void wallet_session_clear(wallet_session *s);

/* One request on a fresh connection ("Connection: close"). Any status is
 * returned in out; only transport and parse failures are errors. */
int wallet_client_request(wallet_client *c, wallet_http_response *out, char *err,
                          const char *method, const char *target, const char *content_type,
                          const uint8_t *body, size_t body_len) CHAIN_WUR;
/* r's body as a JSON object (a new reference in *out); a non-2xx status is
 * WALLET_ESTATUS with the node's "error" in err (what names the route). */
int wallet_response_json(json_t **out, char *err, const wallet_http_response *r, const char *what) CHAIN_WUR;
/* GET target and parse JSON. 4xx/5xx are WALLET_ESTATUS with the body's
 * "error" in err. *out is a new reference. */
int wallet_client_get_json(wallet_client *c, json_t **out, char *err, const char *target) CHAIN_WUR;
/* POST /v1/txs (protobuf); on 202 *hash_out gets the node's hash, which
 * must equal chain_tx_hash of tx (WALLET_EJSON otherwise). */
int wallet_client_submit(wallet_client *c, chain_hash *hash_out, char *err, const uint8_t *tx,
                         size_t len) CHAIN_WUR;
int wallet_client_chain_id(wallet_client *c, char out[CHAIN_ID_LEN_MAX + 1], char *err) CHAIN_WUR;
int wallet_client_next_nonce(wallet_client *c, uint64_t *out, char *err,
                             const chain_pubkey *key) CHAIN_WUR;
/* Polls GET /v1/txs/{hash} (every poll_ms) until committed (0, *height_out),
 * rejected (WALLET_EREJECTED, reason in err) or the deadline
 * (WALLET_ETIMEOUT). */
int wallet_client_wait_tx(wallet_client *c, uint64_t *height_out, char *err, const chain_hash *hash,
                          int timeout_ms, int poll_ms) CHAIN_WUR;

/* Sends a tx whose type and body are set: fills chain id (from the node's
 * status), signer, next nonce (from the node) and created_at = now_s, signs,
 * submits. *id_out gets the tx id (for a Grant, the grant id). */
int wallet_send(wallet_client *c, chain_hash *id_out, char *err, chain_tx *tx, const chain_key *key,
                uint64_t now_s) CHAIN_WUR;

/* ------------------------------------------------------------------ txs */
/* Fills a tx envelope (chain id, type, signer from key, nonce, created_at)
 * with a zero body; the caller sets the body, then wallet_tx_seal. */
int wallet_tx_init(chain_tx *tx, const char *chain_id, chain_tx_type type, const chain_key *key,
                   uint64_t nonce, uint64_t now_s) CHAIN_WUR;
int wallet_tx_grant(chain_tx *tx, const char *chain_id, const chain_key *key, uint64_t nonce,
                    uint64_t now_s, const chain_grant *grant) CHAIN_WUR;
int wallet_tx_revoke(chain_tx *tx, const char *chain_id, const chain_key *key, uint64_t nonce,
                     uint64_t now_s, const chain_hash *grant_id) CHAIN_WUR;
int wallet_tx_set_guardian(chain_tx *tx, const char *chain_id, const chain_key *key, uint64_t nonce,
                           uint64_t now_s, const chain_pubkey *guardian, int remove) CHAIN_WUR;
int wallet_tx_access_record(chain_tx *tx, const char *chain_id, const chain_key *key,
                            uint64_t nonce, uint64_t now_s, const chain_access_record *rec) CHAIN_WUR;
/* Signs tx with key, encodes it into buf (cap >= CHAIN_TX_BYTES_MAX is
 * enough) and computes its id. Checks the result decodes back to the same
 * signed tx before anything leaves the wallet. */
int wallet_tx_seal(uint8_t *buf, size_t cap, size_t *len_out, chain_hash *id_out, chain_tx *tx,
                   const chain_key *key) CHAIN_WUR;

/* ------------------------------------------------------------------ testnet */
typedef struct {
    uint32_t validators;        /* 1..WALLET_TESTNET_VALIDATORS_MAX */
    uint32_t institutions;      /* 0..WALLET_TESTNET_INSTITUTIONS_MAX */
    uint32_t port_base;         /* api P+i, p2p P+100+i */
    char chain_id[CHAIN_ID_LEN_MAX + 1];
    uint32_t block_interval_ms;
    uint64_t time_ms;           /* genesis time */
    int force;                  /* write into a non-empty DIR */
} wallet_testnet_opts;

/* Defaults: 4 validators, 2 institutions, port 7700, "consent-local",
 * 100 ms, time 0 (the caller sets the genesis time). */
void wallet_testnet_defaults(wallet_testnet_opts *o);
/* Writes README's "Files of a network" into dir: genesis.json,
 * nodeI/{config.json, validator.key, passphrase}, institutions/NAME.{key,
 * passphrase}. Secrets are 0600, folders holding them 0700. Refuses a
 * non-empty dir unless force. g_out (may be NULL) gets the genesis. */
int wallet_testnet_write(chain_genesis *g_out, char *err, const wallet_testnet_opts *o,
                         const char *dir) CHAIN_WUR;

/* ------------------------------------------------------------------ keep-alive */
/* One keep-alive HTTP/1.1 connection with pipelining, for load generators
 * (bench/) that must measure the node rather than TCP handshakes. Requests
 * go out in order and answers come back in order; at most
 * WALLET_CONN_PIPELINE_MAX may be unanswered. A transport or parse error
 * drops the TCP connection (the next send reconnects) and forgets what was
 * in flight. Responses are bounded like wallet_client_request's. */
#define WALLET_CONN_PIPELINE_MAX 1024
typedef struct wallet_conn wallet_conn;

int wallet_conn_open(wallet_conn **out, char *err, const wallet_client *c) CHAIN_WUR;
void wallet_conn_close(wallet_conn *k);
int wallet_conn_send(wallet_conn *k, char *err, const char *method, const char *target,
                     const char *content_type, const uint8_t *body, size_t body_len) CHAIN_WUR;
/* Same, with extra header lines ("Name: value\r\n"...) instead of signing
 * with the client's sign_key (which wallet_conn_send does when it is set). */
int wallet_conn_send_h(wallet_conn *k, char *err, const char *method, const char *target, const char *headers,
                       const char *content_type, const uint8_t *body, size_t body_len) CHAIN_WUR;
/* The answer to the oldest unanswered request; any status is returned. */
int wallet_conn_recv(wallet_conn *k, wallet_http_response *out, char *err) CHAIN_WUR;
/* send + recv with nothing else in flight; on a connection that has answered
 * before, a failed exchange is retried once on a fresh connection (the node
 * may have closed it as idle). */
int wallet_conn_request(wallet_conn *k, wallet_http_response *out, char *err, const char *method,
                        const char *target, const char *content_type, const uint8_t *body,
                        size_t body_len) CHAIN_WUR;
unsigned wallet_conn_in_flight(const wallet_conn *k);

/* ------------------------------------------------------------------ FHIR */
/* HL7 FHIR R4 Consent <-> grant (wallet/fhir.c has the full mapping table).
 * Identities are identifiers {system WALLET_FHIR_KEY_SYSTEM, value: 64 hex}.
 * Import refuses, naming the construct, anything it cannot express exactly:
 * deny provisions, nested provisions, dataPeriod, data, code, extensions,
 * unknown systems or codes, an open-ended period, several recipients. */
#define WALLET_FHIR_BYTES_MAX (256 * 1024)
#define WALLET_FHIR_KEY_SYSTEM "urn:consent-ledger:key"
#define WALLET_FHIR_SCOPE_SYSTEM "urn:consent-ledger:scope"

/* Maps a Consent onto *out (patient = *patient; a Consent.patient must name
 * that same key, else CHAIN_EPERM). CHAIN_EINVAL / CHAIN_ECODE / CHAIN_ETIME /
 * CHAIN_EBOUNDS with the reason in err; *out untouched on error. */
int wallet_fhir_import(chain_grant *out, char *err, const json_t *consent,
                       const chain_pubkey *patient) CHAIN_WUR;
/* Same from JSON text (at most WALLET_FHIR_BYTES_MAX, duplicate keys refused). */
int wallet_fhir_import_text(chain_grant *out, char *err, const char *text, size_t len,
                            const chain_pubkey *patient) CHAIN_WUR;
/* The grant as a Consent (new reference) that imports back to the same grant;
 * id (may be NULL) becomes Consent.id; status "active" or "inactive" (a
 * revoked grant). NULL if g breaks a chain bound or on no memory. */
json_t *wallet_fhir_export(const chain_grant *g, const chain_hash *id, int active);
/* A grant as the node's API writes it (README "A grant in JSON"). */
int wallet_grant_from_json(chain_grant *out, chain_hash *id_out, int *active_out, char *err,
                           const json_t *grant) CHAIN_WUR;

/* ------------------------------------------------------------------ verify */
/* Verifies a node's answer to GET /v1/grants/check?...&proof=1 for query q
 * against genesis g alone (chain_check_verify: certificate, header, state
 * proof, decision recomputed), refusing a header below min_height. The node
 * is also held to its word: an answer whose "decision" or proof.height
 * differs from what its proof shows fails (CHAIN_EPROOF). On success *out
 * holds the recomputed decision, reason and height. Errors: the chain
 * codes of chain_check_verify, CHAIN_EDECODE for a missing or malformed
 * proof (each hex field at most WALLET_PROOF_FIELD_BYTES_MAX bytes); err
 * starts "verification failed: ". */
#define WALLET_PROOF_FIELD_BYTES_MAX (1024 * 1024)
int wallet_check_verify(chain_check_result *out, char *err, const chain_genesis *g,
                        const json_t *answer, const chain_check_query *q,
                        uint64_t min_height) CHAIN_WUR;

/* ------------------------------------------------------------------ events */
/* GET /v1/events?from=H answers one JSON object per line, as blocks commit:
 * {"height", "tx", "type", "patient", "grantee"?, "grant_id"?}, set_guardian
 * events also "guardian" and "remove", access_record events also "gateway",
 * "scope" and "purpose". The stream reader hands each line to a callback;
 * lines are bounded. */
#define WALLET_EVENT_LINE_MAX 4096
#define WALLET_EVENT_TYPE_MAX 31

typedef struct {
    uint64_t height;
    chain_hash tx;
    char type[WALLET_EVENT_TYPE_MAX + 1];   /* e.g. "grant", "revoke" */
    chain_pubkey patient;
    int has_grantee;
    chain_pubkey grantee;
    int has_grant_id;
    chain_hash grant_id;
    int has_guardian;                       /* set_guardian */
    chain_pubkey guardian;
    int remove;
    int has_gateway;                        /* access_record */
    chain_pubkey gateway;
    chain_code scope;                       /* "" when absent */
    chain_code purpose;
} wallet_event;

/* Parses one line (without its newline): 0 and *out set, 1 for a comment
 * line (starting ':' or '#', the node's heartbeat; *out untouched), or
 * WALLET_EJSON with the reason in err. */
int wallet_event_parse(wallet_event *out, char *err, const char *line, size_t len) CHAIN_WUR;
/* One readable line (no newline): "height H TYPE patient P [grantee G]
 * [grant ID] [guardian K [removed]] [gateway K scope S purpose U] tx T".
 * cap >= WALLET_EVENT_LINE_MAX is always enough. */
void wallet_event_format(char *out, size_t cap, const wallet_event *e);

/* Called for each non-empty line; a non-zero return ends the stream with it. */
typedef int (*wallet_line_fn)(void *arg, const char *line, size_t len);
typedef struct wallet_stream wallet_stream;
wallet_stream *wallet_stream_create(wallet_line_fn fn, void *arg);
void wallet_stream_destroy(wallet_stream *s);
/* Feeds raw HTTP response bytes (len 0 at EOF). Returns 0 when more may
 * come, 1 when the response ended, WALLET_ESTATUS for an answer other than
 * 200 (err has the node's reason), WALLET_EHTTP for malformed or truncated
 * HTTP, WALLET_ETOOBIG for a line over WALLET_EVENT_LINE_MAX, or the
 * callback's value. */
int wallet_stream_feed(wallet_stream *s, char *err, const uint8_t *buf, size_t len) CHAIN_WUR;
/* GET target and stream its body lines to fn until the node ends the
 * response (0), fn returns non-zero (that value) or the connection fails.
 * Waits indefinitely for the next line (an idle stream is normal). */
int wallet_client_stream(wallet_client *c, char *err, const char *target, wallet_line_fn fn,
                         void *arg) CHAIN_WUR;

/* ------------------------------------------------------------------ audit */
/* consentctl audit-export: copies the node's local audit log
 * (DATA_DIR/audit.log, one JSON object per check or listing: "time",
 * "caller", "route", "patient", "grantee", "decision") to out, lines with
 * time >= since_s only. Lines that are not audit objects (a torn last line)
 * are skipped and counted in *skipped. CHAIN_EIO if the file cannot be read
 * or out written. */
int wallet_audit_export(FILE *out, char *err, const char *data_dir, uint64_t since_s,
                        uint64_t *exported, uint64_t *skipped) CHAIN_WUR;

#ifdef __cplusplus
}
#endif
#endif
