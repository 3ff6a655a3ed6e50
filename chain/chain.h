/* chain.h — the public interface of the chain module.
 *
 * chain/ owns everything that decides what is true on the ledger: hashing and
 * signatures, the transaction codec and its checks, the grant state machine,
 * blocks and commit certificates, the authenticated state, and the RocksDB
 * store. It owns no sockets, timers, threads or clock: time always comes in
 * as an argument, so the same code runs in the node and in tests.
 *
 * Conventions (after libsecp256k1 and libuv):
 *   - context first, then outputs, then inputs; a length follows its buffer;
 *   - functions return 0 on success or a negative CHAIN_E* code, with
 *     chain_strerror() giving a one-line reason; outputs are untouched on
 *     failure unless stated;
 *   - keys and hashes are fixed-size value types, hex-encoded (lower case)
 *     wherever they meet text.
 */
#ifndef CONSENT_CHAIN_H
#define CONSENT_CHAIN_H

#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

#if defined(__GNUC__)
#define CHAIN_WUR __attribute__((warn_unused_result))
#else
#define CHAIN_WUR
#endif

/* ------------------------------------------------------------------ limits */
/* Every bound the node enforces lives here, so tests can probe limit + 1. */
#define CHAIN_HASH_LEN 32
#define CHAIN_KEY_LEN 32           /* BIP340 x-only public key */
#define CHAIN_SECKEY_LEN 32
#define CHAIN_SIG_LEN 64           /* BIP340 Schnorr signature */
#define CHAIN_ID_LEN_MAX 32        /* chain id: [a-z0-9-], 1..32 chars */
#define CHAIN_CODE_LEN_MAX 72      /* a scope or purpose code; "dataset:<64 hex>" is 72 */
#define CHAIN_SCOPES_MAX 16
#define CHAIN_PURPOSES_MAX 8
#define CHAIN_NAME_LEN_MAX 64      /* institution name */
#define CHAIN_VALIDATORS_MAX 64
#define CHAIN_INSTITUTIONS_MAX 1024
#define CHAIN_TX_BYTES_MAX 4096    /* an encoded transaction */
#define CHAIN_BLOCK_TXS_MAX 4096
#define CHAIN_RUN_TXS_MAX (3 * CHAIN_BLOCK_TXS_MAX)   /* txs of synced blocks applied, unwritten */
#define CHAIN_BLOCK_BYTES_MAX (CHAIN_BLOCK_TXS_MAX * (CHAIN_TX_BYTES_MAX + 8) + 65536)
#define CHAIN_GRANTS_PER_PAIR_MAX 64   /* grants kept per (patient, grantee) */
#define CHAIN_TX_CLOCK_SKEW_S 600      /* created_at vs block time */
#define CHAIN_GRANT_DURATION_MAX_S (100ull * 366 * 24 * 3600)

/* ------------------------------------------------------------------ errors */
enum {
    CHAIN_OK = 0,
    CHAIN_EINVAL = -1,      /* argument misuse */
    CHAIN_ENOMEM = -2,
    CHAIN_EDECODE = -3,     /* not a valid protobuf message of the schema */
    CHAIN_ENONCANON = -4,   /* unknown fields or non-canonical encoding */
    CHAIN_EBOUNDS = -5,     /* a field outside its bounds */
    CHAIN_ECODE = -6,       /* unknown scope / purpose / role code */
    CHAIN_ESIG = -7,        /* bad signature */
    CHAIN_ECHAINID = -8,    /* wrong chain id */
    CHAIN_ENONCE = -9,      /* nonce not above the signer's last one (replay) */
    CHAIN_EPERM = -10,      /* signer may not do this */
    CHAIN_ENOTFOUND = -11,
    CHAIN_EEXISTS = -12,
    CHAIN_ETIME = -13,      /* time outside the allowed window */
    CHAIN_ESTATE = -14,     /* not valid in the current state */
    CHAIN_ECERT = -15,      /* commit certificate does not verify */
    CHAIN_EBLOCK = -16,     /* block does not link / roots differ */
    CHAIN_EIO = -17,        /* storage failure */
    CHAIN_EPROOF = -18,     /* a proof does not verify */
};
const char *chain_strerror(int err);

/* ------------------------------------------------------------------ types */
typedef struct { uint8_t b[CHAIN_HASH_LEN]; } chain_hash;
typedef struct { uint8_t b[CHAIN_KEY_LEN]; } chain_pubkey;
typedef struct { uint8_t b[CHAIN_SIG_LEN]; } chain_sig;
typedef struct { char s[CHAIN_CODE_LEN_MAX + 1]; } chain_code;

/* Hex helpers: out must hold 2*len+1 bytes; parse requires exactly 2*len
 * hex digits and returns CHAIN_EDECODE otherwise. */
void chain_hex(char *out, const uint8_t *in, size_t len);
int chain_unhex(uint8_t *out, size_t len, const char *hex) CHAIN_WUR;

/* ------------------------------------------------------------------ crypto */
void chain_sha256(chain_hash *out, const void *data, size_t len);

/* A signing key: holds its own secp256k1 context and keypair. Verification
 * needs no key object (it uses libsecp256k1's static context). */
typedef struct chain_key chain_key;

/* Creates a key from 32 secret bytes, or a fresh random one when sec is NULL
 * (OpenSSL RAND_bytes). Returns NULL on an invalid secret or no memory. */
chain_key *chain_key_create(const uint8_t *sec);
void chain_key_destroy(chain_key *key);                 /* wipes the secret */
void chain_key_pubkey(const chain_key *key, chain_pubkey *out);
void chain_key_secret(const chain_key *key, uint8_t out[CHAIN_SECKEY_LEN]);
int chain_sign(const chain_key *key, chain_sig *out, const chain_hash *msg) CHAIN_WUR;
/* Returns 0 if sig is a valid BIP340 signature of msg by pk, else CHAIN_ESIG. */
int chain_verify(const chain_pubkey *pk, const chain_sig *sig, const chain_hash *msg) CHAIN_WUR;
/* The same answer, for keys that sign again and again (validators,
 * gateways, endorsers): the parsed key is kept in a small per-thread
 * cache. */
int chain_verify_cached(const chain_pubkey *pk, const chain_sig *sig, const chain_hash *msg) CHAIN_WUR;

/* Encrypted key store (scrypt N=2^15,r=8,p=1 + ChaCha20-Poly1305). The file
 * is written atomically with mode 0600. Load refuses a file that is not 0600
 * or owned by someone else, and a wrong passphrase (CHAIN_EPERM). */
int chain_keystore_save(const char *path, const chain_key *key, const char *passphrase) CHAIN_WUR;
int chain_keystore_load(chain_key **out, const char *path, const char *passphrase) CHAIN_WUR;

/* ------------------------------------------------------------------ codes */
typedef enum {
    CHAIN_ROLE_VALIDATOR = 1u << 0,
    CHAIN_ROLE_GATEWAY = 1u << 1,
    CHAIN_ROLE_GRANTEE = 1u << 2,
} chain_role;

/* Scopes: FHIR R4 resource types and categories from a fixed list; also
 * "dataset:<64 hex>" naming a data set by hash. Purposes: HL7 v3
 * PurposeOfUse codes (TREAT, ETREAT, HRESCH, CLINTRL, PUBHLTH, ...) and GA4GH
 * DUO terms ("DUO:0000042"). Return 1 if known, else 0. */
int chain_scope_valid(const char *scope);
int chain_purpose_valid(const char *purpose);

/* ------------------------------------------------------------------ txs */
typedef enum {
    CHAIN_TX_GRANT = 1,
    CHAIN_TX_REVOKE = 2,
    CHAIN_TX_SET_GUARDIAN = 3,
    CHAIN_TX_ACCESS_RECORD = 4,
    CHAIN_TX_REGISTER_INSTITUTION = 5,
    CHAIN_TX_REMOVE_INSTITUTION = 6,
} chain_tx_type;

typedef struct {
    chain_pubkey patient;
    chain_pubkey grantee;
    uint32_t n_scopes;
    chain_code scopes[CHAIN_SCOPES_MAX];
    uint32_t n_purposes;
    chain_code purposes[CHAIN_PURPOSES_MAX];
    uint64_t not_before;   /* unix seconds */
    uint64_t not_after;
} chain_grant;

typedef struct { chain_hash grant_id; } chain_revoke;
typedef struct { chain_pubkey guardian; int remove; } chain_set_guardian;
typedef struct {
    chain_hash grant_id;
    chain_code scope;
    chain_code purpose;
    chain_hash request_hash;
} chain_access_record;

typedef struct { chain_pubkey signer; chain_sig sig; } chain_endorsement;
typedef struct {
    chain_pubkey key;
    char name[CHAIN_NAME_LEN_MAX + 1];   /* empty for a removal */
    uint32_t roles;                      /* chain_role bits; 0 for a removal */
    uint32_t n_endorsements;
    chain_endorsement endorsements[CHAIN_VALIDATORS_MAX];
} chain_institution_tx;

typedef struct {
    char chain_id[CHAIN_ID_LEN_MAX + 1];
    chain_tx_type type;
    chain_pubkey signer;
    uint64_t nonce;
    uint64_t created_at;   /* unix seconds */
    union {
        chain_grant grant;
        chain_revoke revoke;
        chain_set_guardian set_guardian;
        chain_access_record access_record;
        chain_institution_tx institution;   /* register and remove */
    } body;
    chain_sig sig;
} chain_tx;

/* Decodes an encoded Tx. Refuses (and leaves *out unspecified): malformed
 * protobuf (CHAIN_EDECODE), unknown fields or bytes that do not re-encode to
 * the input (CHAIN_ENONCANON), fields outside bounds (CHAIN_EBOUNDS), unknown
 * codes (CHAIN_ECODE), a body that does not match the type (CHAIN_EDECODE).
 * Does not check the signature or the chain id. */
int chain_tx_decode(chain_tx *out, const uint8_t *buf, size_t len) CHAIN_WUR;
/* Encodes tx into buf (cap bytes); *len_out gets the size. CHAIN_EBOUNDS if
 * it does not fit or tx breaks a bound. */
int chain_tx_encode(uint8_t *buf, size_t cap, size_t *len_out, const chain_tx *tx) CHAIN_WUR;
/* The message that is signed: SHA-256 of the encoding without the signature. */
int chain_tx_sighash(chain_hash *out, const chain_tx *tx) CHAIN_WUR;
/* The transaction id: SHA-256 of the full encoding. A grant's id is the id of
 * the Grant transaction that created it. */
void chain_tx_hash(chain_hash *out, const uint8_t *buf, size_t len);
int chain_tx_sign(chain_tx *tx, const chain_key *key) CHAIN_WUR;
/* Stateless checks a node makes before a tx enters its mempool: chain id,
 * signature, time window against now_s (±CHAIN_TX_CLOCK_SKEW_S), validity
 * window sanity. */
int chain_tx_check(const chain_tx *tx, const char *chain_id, uint64_t now_s) CHAIN_WUR;
const char *chain_tx_type_name(chain_tx_type t);

/* Signature checks of a batch on several cores. ok[i] gets 1 if txs[i]
 * (lens[i] bytes) decodes and its signature verifies, else 0: exactly the
 * signature part of chain_tx_check, so a 1 may be passed on as a
 * sig_checked flag (chain_exec_tx, chain_exec_block). Uses up to `threads`
 * threads, the caller's included (1..CHAIN_VERIFY_THREADS_MAX; small batches
 * stay on the caller's), and returns when all are checked. Returns CHAIN_OK,
 * CHAIN_EINVAL, or CHAIN_ENOMEM (some flags left 0, i.e. unchecked). Keeps
 * no state: safe to call from any thread. */
#define CHAIN_VERIFY_THREADS_MAX 16
int chain_txs_verify(uint8_t *ok, const uint8_t *const *txs, const size_t *lens, size_t n,
                     unsigned threads) CHAIN_WUR;
/* Online cores, at most CHAIN_VERIFY_THREADS_MAX: a default for `threads`. */
unsigned chain_verify_threads_default(void);

/* Governance: the message endorsers sign for a Register/RemoveInstitution. */
int chain_institution_sighash(chain_hash *out, const char *chain_id, chain_tx_type type,
                              const chain_institution_tx *body) CHAIN_WUR;

/* ------------------------------------------------------------------ genesis */
typedef struct {
    chain_pubkey key;
    char name[CHAIN_NAME_LEN_MAX + 1];
    uint32_t roles;
    char p2p_addr[64];   /* "host:port" for validators, else empty */
    char api_addr[64];   /* "host:port" of its HTTP API, else empty */
} chain_institution;

typedef struct {
    char chain_id[CHAIN_ID_LEN_MAX + 1];
    uint64_t time_ms;
    uint32_t n_validators;           /* validators are the first n_validators */
    uint32_t n_institutions;         /* institutions, validators included */
    chain_institution institutions[CHAIN_INSTITUTIONS_MAX];
    chain_hash hash;                 /* SHA-256 of the canonical JSON */
} chain_genesis;

/* Genesis is JSON (see README). Load validates every field. */
int chain_genesis_load(chain_genesis *out, const char *path) CHAIN_WUR;
int chain_genesis_parse(chain_genesis *out, const char *json, size_t len) CHAIN_WUR;
int chain_genesis_save(const chain_genesis *g, const char *path) CHAIN_WUR;
/* Hash of the validator set (ordered keys), as carried in block headers. */
void chain_genesis_valset_hash(const chain_genesis *g, chain_hash *out);
/* Index of key among validators, or -1. */
int chain_genesis_validator_index(const chain_genesis *g, const chain_pubkey *key);
/* f = (n - 1) / 3; quorum = 2f + 1. */
uint32_t chain_genesis_quorum(const chain_genesis *g);

/* ------------------------------------------------------------------ blocks */
typedef struct {
    char chain_id[CHAIN_ID_LEN_MAX + 1];
    uint64_t height;
    chain_hash prev_hash;
    uint64_t time_ms;
    chain_pubkey proposer;
    chain_hash tx_root;
    chain_hash state_root;
    chain_hash valset_hash;
    uint64_t view;
} chain_header;

typedef struct { chain_pubkey validator; chain_sig sig; } chain_commit_sig;
typedef struct {
    uint64_t view;
    uint64_t height;
    chain_hash block_hash;
    uint32_t n_sigs;
    chain_commit_sig sigs[CHAIN_VALIDATORS_MAX];
} chain_cert;

typedef struct {
    chain_header hdr;
    uint32_t n_txs;
    uint8_t **txs;        /* owned by the block; each an encoded Tx */
    size_t *tx_lens;
    chain_cert cert;      /* n_sigs == 0 while uncommitted */
} chain_block;

void chain_header_hash(const chain_header *h, chain_hash *out);
/* The message a validator signs to commit (view, height, block hash). */
void chain_commit_sighash(chain_hash *out, const char *chain_id, uint64_t view,
                          uint64_t height, const chain_hash *block_hash);
/* Checks: >= quorum distinct genesis validators signed (cert view, height,
 * block_hash) and those match hdr. CHAIN_ECERT otherwise. */
int chain_cert_verify(const chain_cert *cert, const chain_genesis *g, const chain_header *hdr) CHAIN_WUR;
/* Merkle root of the transaction hashes (empty block: all zeros). */
void chain_tx_root(chain_hash *out, const chain_block *b);

void chain_block_init(chain_block *b);
void chain_block_free(chain_block *b);               /* frees txs, not b */
int chain_block_add_tx(chain_block *b, const uint8_t *tx, size_t len) CHAIN_WUR;
int chain_block_encode(uint8_t **out, size_t *len_out, const chain_block *b) CHAIN_WUR; /* malloc'd */
int chain_block_decode(chain_block *out, const uint8_t *buf, size_t len) CHAIN_WUR;
int chain_header_encode(uint8_t **out, size_t *len_out, const chain_header *h) CHAIN_WUR;
int chain_header_decode(chain_header *out, const uint8_t *buf, size_t len) CHAIN_WUR;
int chain_cert_encode(uint8_t **out, size_t *len_out, const chain_cert *c) CHAIN_WUR;
int chain_cert_decode(chain_cert *out, const uint8_t *buf, size_t len) CHAIN_WUR;

/* ------------------------------------------------------------------ state */
typedef enum {
    CHAIN_GRANT_ACTIVE = 1,
    CHAIN_GRANT_REVOKED = 2,
} chain_grant_status;

typedef struct {
    chain_hash id;
    chain_grant grant;
    chain_grant_status status;
    uint64_t granted_height;
    uint64_t revoked_height;
    chain_pubkey granted_by;
} chain_grant_record;

/* ------------------------------------------------------------------ store */
/* RocksDB with column families: blocks (height -> block), txindex (tx hash ->
 * height), state (grants, per-pair index, nonces, guardians, institutions,
 * state tree nodes), meta (tip, genesis hash, consensus votes). A block and
 * every state change it makes are written in one WriteBatch with sync. */
typedef struct chain_store chain_store;

int chain_store_open(chain_store **out, const char *dir, const chain_genesis *g) CHAIN_WUR;
void chain_store_close(chain_store *st);
uint64_t chain_store_height(const chain_store *st);       /* 0 = only genesis */
void chain_store_tip_hash(const chain_store *st, chain_hash *out);
const chain_genesis *chain_store_genesis(const chain_store *st);
/* Latest committed state root (genesis state root at height 0). */
void chain_store_state_root(const chain_store *st, chain_hash *out);
/* Makes every earlier write durable (one sync of the write-ahead log): ends
 * a run of chain_apply_committed_unsynced. */
int chain_store_sync(chain_store *st) CHAIN_WUR;
/* RocksDB's background work and size, summed over the column families:
 * for operators (node /metrics) and for the benchmark, which waits for the
 * compactions of an offline fill to end before it measures reads. */
typedef struct {
    uint64_t compaction_pending_bytes;   /* RocksDB's estimate of bytes to rewrite */
    uint64_t compactions_running;
    uint64_t flushes_running;
    uint64_t sst_bytes;                  /* live table files */
} chain_store_stats;
int chain_store_stats_get(chain_store *st, chain_store_stats *out) CHAIN_WUR;
/* Rewrites every column family into its last level (a full RocksDB
 * compaction): a point read then probes one level instead of one per
 * level and L0 file. For operators after a bulk load or at a maintenance
 * window, with the node stopped (RocksDB's lock on the folder refuses a
 * second opener); minutes at 10M grants. */
int chain_store_compact(chain_store *st) CHAIN_WUR;

int chain_store_get_block(chain_store *st, uint64_t height, chain_block *out) CHAIN_WUR;
int chain_store_get_block_raw(chain_store *st, uint64_t height, uint8_t **out, size_t *len_out) CHAIN_WUR;
/* Committed tx: *height_out and *index_out; CHAIN_ENOTFOUND if not committed. */
int chain_store_get_tx(chain_store *st, const chain_hash *txid, uint64_t *height_out,
                       uint32_t *index_out) CHAIN_WUR;
int chain_store_get_grant(chain_store *st, const chain_hash *id, chain_grant_record *out) CHAIN_WUR;
/* Last committed nonce of a signer (0 if none). */
uint64_t chain_store_nonce(chain_store *st, const chain_pubkey *signer);
/* Guardian of a patient; CHAIN_ENOTFOUND if none. */
int chain_store_guardian(chain_store *st, const chain_pubkey *patient, chain_pubkey *out) CHAIN_WUR;
/* Registered institution; CHAIN_ENOTFOUND if none. */
int chain_store_institution(chain_store *st, const chain_pubkey *key, chain_institution *out) CHAIN_WUR;

/* Calls fn for each grant of a patient (grouped by grantee in key order,
 * oldest first within a grantee) until fn returns
 * non-zero; returns that value or 0. */
typedef int (*chain_grant_fn)(void *arg, const chain_grant_record *rec);
int chain_store_patient_grants(chain_store *st, const chain_pubkey *patient,
                               chain_grant_fn fn, void *arg);

/* The releases gateways recorded (AccessRecord txs) under a patient's
 * grants, in key order (by grant id, then tx id); fn as above. */
typedef struct {
    chain_hash tx_id;              /* the AccessRecord tx */
    chain_pubkey gateway;          /* its signer */
    chain_hash grant_id;
    chain_code scope;
    chain_code purpose;
    chain_hash request_hash;
    uint64_t height;
    uint64_t time_ms;              /* block time */
} chain_access_summary;
typedef int (*chain_access_fn)(void *arg, const chain_access_summary *a);
int chain_store_patient_access(chain_store *st, const chain_pubkey *patient, chain_access_fn fn,
                               void *arg);

/* Persisted consensus votes: an opaque blob written with sync before the
 * node sends what it signed. */
int chain_store_put_meta(chain_store *st, const char *key, const uint8_t *val, size_t len) CHAIN_WUR;
int chain_store_get_meta(chain_store *st, const char *key, uint8_t **out, size_t *len_out) CHAIN_WUR;

/* ------------------------------------------------------------------ check */
/* The gateway question: may grantee receive scope about patient for purpose
 * at time at_s? On permit, rec gets the covering grant. reason always gets a
 * one-line explanation (e.g. "no active grant for this grantee", "grant
 * expired", "purpose not covered"). The grantee must also be a registered
 * institution with the grantee role at the state asked ("grantee
 * institution is not registered" once governance removed it). */
typedef enum { CHAIN_DENY = 0, CHAIN_PERMIT = 1 } chain_decision;
typedef struct {
    chain_decision decision;
    char reason[96];
    int has_grant;
    chain_grant_record grant;   /* the covering grant, or the closest match */
    uint64_t height;            /* state height answered from */
} chain_check_result;

int chain_check(chain_store *st, chain_check_result *out, const chain_pubkey *patient,
                const chain_pubkey *grantee, const char *scope, const char *purpose,
                uint64_t at_s) CHAIN_WUR;

/* ------------------------------------------------------------------ proofs */
/* Verifiable checks ("libconsent"): a node hands out the (patient, grantee)
 * pair list and the grantee's registry record, their state-tree proofs
 * against the tip's state root, the tip
 * header and its commit certificate; a client holding only genesis checks
 * all four and recomputes the decision with the same code chain_check uses,
 * so a deny is as verifiable as a permit. All parts are opaque bytes
 * (hex-encoded in the HTTP API). */
#define CHAIN_PROOF_PART_BYTES_MAX (256u * 1024)   /* any one part */

typedef struct {
    uint64_t height;              /* the tip the proof was read at */
    uint8_t *pair_list;           /* encoded GrantList; 0 bytes: the pair has none */
    size_t pair_list_len;
    uint8_t *smt_proof;           /* presence (non-empty list) or absence */
    size_t smt_proof_len;
    uint8_t *inst;                /* the grantee's registry record; 0 bytes: not registered */
    size_t inst_len;
    uint8_t *inst_proof;          /* its presence or absence */
    size_t inst_proof_len;
    uint8_t *header;              /* encoded header of block `height` */
    size_t header_len;
    uint8_t *cert;                /* its commit certificate */
    size_t cert_len;
} chain_check_proof;

typedef struct {
    chain_pubkey patient;
    chain_pubkey grantee;
    const char *scope;
    const char *purpose;
    uint64_t at_s;
} chain_check_query;

/* Builds the proof for (patient, grantee) at the committed tip; the buffers
 * are malloc'd (free with chain_check_proof_free). CHAIN_ESTATE while no
 * block is committed (height 0 has no certificate). */
int chain_check_prove(chain_store *st, chain_check_proof *out, const chain_pubkey *patient,
                      const chain_pubkey *grantee) CHAIN_WUR;
void chain_check_proof_free(chain_check_proof *p);   /* frees the buffers, not p */

/* What every proof at one tip shares: the encoded header and certificate of
 * the tip block. A node keeps one (zeroed to start) so a proof does not
 * read and decode the whole tip block each time (tree nodes come through
 * the store's node cache). */
typedef struct {
    uint64_t height;              /* 0: empty */
    chain_hash state_root;
    uint8_t *header;
    size_t header_len;
    uint8_t *cert;
    size_t cert_len;
} chain_check_tip;
/* Loads the committed tip into tip (freeing what it held); CHAIN_ESTATE
 * at height 0. */
int chain_check_tip_load(chain_store *st, chain_check_tip *tip) CHAIN_WUR;
void chain_check_tip_free(chain_check_tip *tip);   /* frees the buffers, not tip */
/* chain_check_prove taking header and certificate from tip, which it
 * reloads when the store's tip has moved. */
int chain_check_prove_cached(chain_store *st, chain_check_tip *tip, chain_check_proof *out,
                             const chain_pubkey *patient, const chain_pubkey *grantee) CHAIN_WUR;

/* The decision for q from p's pair list and registry record as they stand,
 * verifying nothing: what chain_check answers at p's tip (out->height =
 * p->height). A node that has just read p answers from it instead of
 * reading the state again. CHAIN_ECODE for unknown codes; a list that does
 * not decode is CHAIN_EDECODE, a record that does not or that names another
 * key CHAIN_EIO (the answer stays deny). */
int chain_check_decide(chain_check_result *out, const chain_check_proof *p,
                       const chain_check_query *q) CHAIN_WUR;

/* Verifies p for query q against genesis g and recomputes the decision into
 * *out (out->height = the header's height). Refuses, with a one-line reason
 * in why (why_len bytes): a certificate that is not 2f+1 distinct genesis
 * validators over this header (CHAIN_ECERT); a header of another chain or
 * validator set, or below min_height (stale) (CHAIN_EBLOCK); a state proof
 * that does not lead to the header's state root for this pair, or a list
 * that is not the proven leaf (CHAIN_EPROOF); undecodable parts
 * (CHAIN_EDECODE). Scope and purpose must be known codes (CHAIN_ECODE).
 * Pure: no store, no clock. */
int chain_check_verify(const chain_genesis *g, chain_check_result *out, char *why, size_t why_len,
                       const chain_check_query *q, const chain_check_proof *p,
                       uint64_t min_height) CHAIN_WUR;

/* ------------------------------------------------------------------ api auth */
/* Who may ask: an API request carries X-Consent-Key (hex key),
 * X-Consent-Time (unix seconds) and X-Consent-Signature (hex BIP340) over
 * SHA-256("consent/api/v1\n" || METHOD || "\n" || TARGET || "\n" || TIME),
 * TARGET being path and query as sent, TIME the decimal header value.
 * Shared by the node (verify) and the wallet (sign). */
#define CHAIN_API_METHOD_LEN_MAX 16
#define CHAIN_API_TARGET_LEN_MAX 4096
#define CHAIN_API_SKEW_S 300           /* |TIME - now| allowed */

/* CHAIN_EINVAL unless method is 1..16 upper-case letters and target starts
 * with '/' and is 1..4096 printable ASCII characters. */
int chain_api_sighash(chain_hash *out, const char *method, const char *target,
                      uint64_t time_s) CHAIN_WUR;
int chain_api_sign(const chain_key *key, chain_sig *out, const char *method, const char *target,
                   uint64_t time_s) CHAIN_WUR;
/* 0 if sig is pk's signature of the request and time_s is within
 * CHAIN_API_SKEW_S of now_s; CHAIN_ETIME or CHAIN_ESIG (CHAIN_EINVAL for a
 * malformed method or target). */
int chain_api_verify(const chain_pubkey *pk, const chain_sig *sig, const char *method,
                     const char *target, uint64_t time_s, uint64_t now_s) CHAIN_WUR;
/* The same for a request with a body: the message gains "\n" ||
 * hex(SHA-256(body)) after TIME (body_len 0: exactly the message above). */
int chain_api_sighash_body(chain_hash *out, const char *method, const char *target, uint64_t time_s,
                           const uint8_t *body, size_t body_len) CHAIN_WUR;
int chain_api_sign_body(const chain_key *key, chain_sig *out, const char *method, const char *target,
                        uint64_t time_s, const uint8_t *body, size_t body_len) CHAIN_WUR;
int chain_api_verify_body(const chain_pubkey *pk, const chain_sig *sig, const char *method,
                          const char *target, uint64_t time_s, uint64_t now_s, const uint8_t *body,
                          size_t body_len) CHAIN_WUR;

/* Sessions (README, "Sessions"): a signed POST /v1/sessions exchanges
 * ephemeral secp256k1 keys (33-byte compressed points); both sides derive
 * the session key = HKDF-SHA256(ikm = ECDH(my secret, peer point),
 * salt = "consent/session/v1", info = "consent/session/v1" || client point
 * || node point || caller key || session id). Requests then carry
 * X-Consent-Session, X-Consent-Time and X-Consent-Mac = HMAC-SHA256(session
 * key, the bodyless message of chain_api_sighash). */
#define CHAIN_API_EPH_SEC_LEN 32
#define CHAIN_API_EPH_PUB_LEN 33
#define CHAIN_API_SESSION_ID_LEN 16
#define CHAIN_API_SESSION_KEY_LEN 32
#define CHAIN_API_MAC_LEN 32
/* A fresh ephemeral key pair (OpenSSL's CSPRNG). */
int chain_api_eph_keygen(uint8_t sec[CHAIN_API_EPH_SEC_LEN], uint8_t pub[CHAIN_API_EPH_PUB_LEN]) CHAIN_WUR;
/* 1 if pub is a compressed point on the curve. */
int chain_api_eph_valid(const uint8_t pub[CHAIN_API_EPH_PUB_LEN]);
/* CHAIN_EINVAL for a peer point off the curve (or an invalid secret). */
int chain_api_session_key(uint8_t key[CHAIN_API_SESSION_KEY_LEN], const uint8_t my_sec[CHAIN_API_EPH_SEC_LEN],
                          const uint8_t peer_pub[CHAIN_API_EPH_PUB_LEN],
                          const uint8_t client_pub[CHAIN_API_EPH_PUB_LEN],
                          const uint8_t node_pub[CHAIN_API_EPH_PUB_LEN], const chain_pubkey *caller,
                          const uint8_t sid[CHAIN_API_SESSION_ID_LEN]) CHAIN_WUR;
int chain_api_mac(uint8_t mac[CHAIN_API_MAC_LEN], const uint8_t key[CHAIN_API_SESSION_KEY_LEN],
                  const char *method, const char *target, uint64_t time_s) CHAIN_WUR;
/* A session key made ready once for checking many MACs (the node's side:
 * keying HMAC costs more than a request's MAC). One user at a time. */
typedef struct chain_api_mac_key chain_api_mac_key;
int chain_api_mac_key_new(chain_api_mac_key **out, const uint8_t key[CHAIN_API_SESSION_KEY_LEN]) CHAIN_WUR;
void chain_api_mac_key_free(chain_api_mac_key *k);   /* NULL is fine */
/* 0 if mac is chain_api_mac's under k's key (constant-time compare) and
 * time_s within CHAIN_API_SKEW_S of now_s; CHAIN_ETIME, CHAIN_ESIG or
 * CHAIN_EINVAL. */
int chain_api_mac_verify(chain_api_mac_key *k, const uint8_t mac[CHAIN_API_MAC_LEN], const char *method,
                         const char *target, uint64_t time_s, uint64_t now_s) CHAIN_WUR;

/* ------------------------------------------------------------------ execution */
/* A block under construction or validation: an overlay of state changes on
 * top of the committed store. Nothing reaches RocksDB until commit. */
typedef struct chain_exec chain_exec;

/* Starts executing block `height` (= store height + 1) at block time time_ms. */
int chain_exec_begin(chain_exec **out, chain_store *st, uint64_t time_ms) CHAIN_WUR;
/* Applies one encoded tx against the overlay (decode, chain id, signature
 * unless sig_checked, nonce, permissions, state rules). On error nothing
 * changes and the code says why. */
int chain_exec_tx(chain_exec *ex, const uint8_t *tx, size_t len, int sig_checked) CHAIN_WUR;
/* Fills hdr fields that follow from execution: height, prev_hash, time_ms,
 * tx_root, state_root, valset_hash, chain_id (proposer and view are the
 * caller's). The block holds the applied txs, in order. CHAIN_ESTATE if
 * another block was committed since chain_exec_begin and before the first
 * finish (a later finish returns the sealed header again). */
int chain_exec_finish(chain_exec *ex, chain_block *out) CHAIN_WUR;
/* Writes the block (with its cert) and the overlay in one synced WriteBatch. */
int chain_exec_commit(chain_exec *ex, const chain_block *b) CHAIN_WUR;
void chain_exec_abort(chain_exec *ex);                /* frees ex */

/* Validates a proposed block by re-executing it: every tx must apply, and
 * the header must match (links to tip, roots, time not before the tip's).
 * sig_checked is NULL (verify every signature) or b->n_txs flags: a nonzero
 * flag says the caller already verified the signature of exactly these tx
 * bytes (e.g. the tx id is in its mempool), so it is not checked again.
 * On success *out holds the overlay, ready for chain_exec_commit. */
int chain_exec_block(chain_exec **out, chain_store *st, const chain_block *b,
                     const uint8_t *sig_checked) CHAIN_WUR;
/* Applies a block received by sync: verifies its certificate first. */
int chain_apply_committed(chain_store *st, const chain_block *b) CHAIN_WUR;
/* The same without syncing the write, for a run of synced blocks: a crash
 * may lose this block and later unsynced ones (never an earlier block, never
 * part of one), so the store reopens at a consistent lower tip and the
 * blocks are fetched again. Call chain_store_sync after the run.
 * sig_checked (NULL: none) flags, per tx, signatures the caller verified
 * already (chain_txs_verify), as for chain_exec_block. */
int chain_apply_committed_unsynced(chain_store *st, const chain_block *b,
                                   const uint8_t *sig_checked) CHAIN_WUR;

/* Checks a run of synced blocks in the background: each block's commit
 * certificate against g and its txs' signatures, in block order, on up to
 * threads - 1 helper threads (1..CHAIN_VERIFY_THREADS_MAX; a short run
 * starts none), while the caller applies the blocks one by one with
 * chain_apply_checked and writes them with chain_blocks_check_write.
 * blocks[0..n) must stay unchanged until chain_blocks_check_end. Returns
 * CHAIN_OK (*out set), CHAIN_EINVAL, CHAIN_EBOUNDS (a block over
 * CHAIN_BLOCK_TXS_MAX txs) or CHAIN_ENOMEM. */
typedef struct chain_blocks_check chain_blocks_check;
int chain_blocks_check_start(chain_blocks_check **out, const chain_genesis *g, const chain_block *blocks,
                             size_t n, unsigned threads) CHAIN_WUR;
/* Waits until block i is checked, checking unclaimed items meanwhile
 * rather than sleep. Returns its certificate's verdict (CHAIN_OK or
 * CHAIN_ECERT) and sets *sig_ok to its per-tx flags (as chain_txs_verify's,
 * valid until chain_blocks_check_end). */
int chain_blocks_check_wait(chain_blocks_check *c, size_t i, const uint8_t **sig_ok) CHAIN_WUR;
/* Executes block i of c, with the checks c made, on top of the store and
 * the blocks of c applied before it and not yet written, and checks its
 * header as chain_exec_block does, but for the state root, which
 * chain_blocks_check_write checks (the last one's: see chain/run.c). The
 * store does not move: the block waits, in memory, for the write.
 * Unwritten blocks have room for the state changes of CHAIN_RUN_TXS_MAX
 * txs: write them before they hold more, or a block may fail with
 * CHAIN_ENOMEM. After that, or after a write failed with CHAIN_EBLOCK,
 * they take no more (the same code again).
 * CHAIN_ECERT if its certificate does not verify, CHAIN_ESTATE if the
 * store moved since the unwritten blocks were applied, CHAIN_EINVAL
 * unless c was started with g = chain_store_genesis(st); on any error the
 * unwritten blocks stay as they were. */
int chain_apply_checked(chain_store *st, chain_blocks_check *c, size_t i) CHAIN_WUR;
/* Blocks applied and not yet written (0 for NULL); *txs (if not NULL)
 * their txs, so a caller can bound what waits in memory. */
size_t chain_blocks_check_unwritten(const chain_blocks_check *c, size_t *txs);
/* Updates the state tree once with every change of the unwritten blocks
 * and checks the root against the last one's header, then writes them,
 * unsynced as chain_apply_committed_unsynced, in one WriteBatch: the
 * blocks, their tx index and the state as the last one left it (and the
 * new tree pages go to the store: only the last block's state root can be
 * proved against).
 * Then the store's tip is the last of them. CHAIN_EBLOCK if the root
 * differs (nothing is written, and the unwritten blocks take no more),
 * CHAIN_ESTATE if the store moved since they were applied (they are kept);
 * chain_blocks_check_end drops them. */
int chain_blocks_check_write(chain_store *st, chain_blocks_check *c) CHAIN_WUR;
/* Stops the helpers (waiting for items in progress) and frees c, dropping
 * blocks applied and not written; NULL ok. */
void chain_blocks_check_end(chain_blocks_check *c);

#ifdef __cplusplus
}
#endif
#endif
