/* cons.h — the public interface of the PBFT replica state machine.
 *
 * A replica is a pure state machine: it owns no sockets, timers, threads or
 * clock. The node feeds it events (a message arrived, a timer fired, a block
 * was validated or committed) with the current time as a number, and the
 * replica answers with a list of actions that the node executes in order:
 * persist before send, always. The same code runs unchanged under the
 * seeded simulator in tests/.
 *
 * Protocol: PBFT (Castro & Liskov) among n = 3f+1 genesis validators;
 * pre-prepare / prepare / commit per sequence number (= block height), one
 * block per sequence, several sequences in flight between the low and high
 * watermarks; checkpoints every K sequences, stable at 2f+1 matching
 * signatures, garbage-collect older messages; view change and new view when
 * the primary is silent, slow or equivocating. Every message is signed with
 * the validator's secp256k1 key (chain_sign). Safety never depends on time.
 *
 * Blocks are opaque to the replica: the node builds them (chain_exec) and
 * validates them, and the replica orders their digests (chain_header_hash).
 *
 * Contract with the node (the reasons are in the files of consensus/):
 *  - Execute each action list in order. PERSIST comes first whenever the
 *    list holds a signed message: write it durably (fsync) before sending.
 *    Give its bytes back to cons_create after a restart, with the store's
 *    tip height and hash. The blob holds the view, the votes, the prepared
 *    certificates, the stable checkpoint and the bytes of uncommitted blocks
 *    the replica voted for.
 *  - VALIDATE is emitted only for seq = committed height + 1, so validate
 *    against the tip: check that the bytes are a block whose header hash is
 *    the digest and that it applies; answer cons_on_validated(seq, digest,
 *    ok). A backup prepares only after ok.
 *  - COMMIT comes strictly in order, one at a time: apply and persist the
 *    block with the certificate, then cons_on_committed(seq, digest). A
 *    COMMIT for a height the store already has (synced meanwhile): just call
 *    cons_on_committed.
 *  - FETCH(seq): the replica cannot deliver from its log (it holds no valid
 *    bytes, or the others' stable checkpoint is above its height); sync
 *    blocks from peers up to at least seq (verifying certificates) and call
 *    cons_on_committed for each applied block, in order.
 *  - Propose only as primary (cons_is_primary), for height cons_next_seq,
 *    built on a store whose height is cons_next_seq - 1. The replica allows
 *    several sequences in flight inside the window; the node as built uses
 *    one.
 *  - Call cons_request_pending while the mempool holds work, so a silent
 *    primary is replaced; call cons_on_timer when the single timer fires
 *    (early or stale calls are ignored).
 *  - View change: no empty filler blocks. The new view re-issues every
 *    sequence prepared in 2f+1 ViewChanges up to the first hole and the new
 *    primary proposes fresh blocks from there (viewchange.c explains why no
 *    committed block is lost or changed).
 */
#ifndef CONSENT_CONS_H
#define CONSENT_CONS_H

#include <stddef.h>
#include <stdint.h>

#include "chain/chain.h"

#ifdef __cplusplus
extern "C" {
#endif

#define CONS_MSG_BYTES_MAX (CHAIN_BLOCK_BYTES_MAX + 65536)
#define CONS_ACTIONS_MAX 4096   /* actions returned by one event, at most */

enum {
    CONS_OK = 0,
    CONS_EINVAL = -1,
    CONS_ENOMEM = -2,
    CONS_EDECODE = -3,    /* malformed message */
    CONS_ESIG = -4,       /* bad signature or unknown sender */
    CONS_ESTALE = -5,     /* old view / below low watermark: ignored */
    CONS_EWINDOW = -6,    /* outside the watermarks */
    CONS_ECONFLICT = -7,  /* equivocation seen (evidence emitted) */
    CONS_EBUSY = -8,      /* cannot propose now (not primary, window full) */
};
const char *cons_strerror(int err);

typedef struct {
    const chain_genesis *genesis;   /* validators and chain id; outlives the replica */
    const chain_key *key;           /* this validator's key */
    uint32_t checkpoint_interval;   /* K, sequences between checkpoints */
    uint32_t window;                /* high watermark = low watermark + window */
    uint64_t view_timeout_ms;       /* base; doubles with each failed view */
} cons_config;

typedef enum {
    CONS_ACT_PERSIST = 1,   /* write `data` (replica state) durably, then go on */
    CONS_ACT_SEND,          /* send `data` to validator `to` */
    CONS_ACT_BROADCAST,     /* send `data` to every other validator */
    CONS_ACT_SET_TIMER,     /* (re)arm the single view timer: fire at `at_ms` */
    CONS_ACT_CANCEL_TIMER,
    CONS_ACT_VALIDATE,      /* validate the block in `data` for `seq`, then call
                               cons_on_validated with the result */
    CONS_ACT_COMMIT,        /* block `data` at `seq` is committed with `cert`:
                               apply and persist it, then cons_on_committed */
    CONS_ACT_EVIDENCE,      /* `data` holds two conflicting signed messages of
                               validator `to`: keep it */
    CONS_ACT_NEW_PRIMARY,   /* view changed to `view`; primary is `to` */
    CONS_ACT_FETCH,         /* we are behind: fetch blocks up to `seq` from peers */
    /* EVIDENCE `data` is an encoded consent.ConsEvidence (proto/consensus.proto). */
} cons_action_type;

typedef struct {
    cons_action_type type;
    uint32_t to;            /* validator index (SEND, EVIDENCE, NEW_PRIMARY) */
    uint64_t seq;
    uint64_t view;
    uint64_t at_ms;
    const uint8_t *data;    /* valid until the next call into the replica */
    size_t len;
    const chain_cert *cert; /* COMMIT only */
} cons_action;

typedef struct {
    size_t n;
    cons_action *items;     /* owned by the replica */
} cons_actions;

typedef struct cons_replica cons_replica;

/* Creates a replica. `persisted` is what the last CONS_ACT_PERSIST wrote (or
 * NULL on first start); committed_height and committed_hash describe the
 * store's tip. Returns NULL on bad config or no memory. */
cons_replica *cons_create(const cons_config *cfg, const uint8_t *persisted, size_t persisted_len,
                          uint64_t committed_height, const chain_hash *committed_hash);
void cons_destroy(cons_replica *r);

/* Start: arms timers. */
int cons_start(cons_replica *r, cons_actions *out, uint64_t now_ms);
/* A message from validator `from` (the peer layer has authenticated it). */
int cons_on_message(cons_replica *r, cons_actions *out, uint64_t now_ms, uint32_t from,
                    const uint8_t *msg, size_t len);
int cons_on_timer(cons_replica *r, cons_actions *out, uint64_t now_ms);
/* Primary only: propose a block (encoded chain_block without cert) whose
 * header hash is `digest` at the next free sequence. CONS_EBUSY if this
 * replica is not the primary or the window is full. */
int cons_propose(cons_replica *r, cons_actions *out, uint64_t now_ms, const uint8_t *block,
                 size_t len, const chain_hash *digest);
/* The node has work waiting (transactions in its mempool): arms the view
 * timer if it is not armed, so a silent primary is replaced even when no
 * pre-prepare ever arrives. Cleared by the next committed block; call again
 * while work remains. */
int cons_request_pending(cons_replica *r, cons_actions *out, uint64_t now_ms);
/* Result of CONS_ACT_VALIDATE. */
int cons_on_validated(cons_replica *r, cons_actions *out, uint64_t now_ms, uint64_t seq,
                      const chain_hash *digest, int ok);
/* The block at seq is durably applied (CONS_ACT_COMMIT done, or block sync). */
int cons_on_committed(cons_replica *r, cons_actions *out, uint64_t now_ms, uint64_t seq,
                      const chain_hash *digest);

/* Introspection for status and metrics. */
uint64_t cons_view(const cons_replica *r);
uint32_t cons_primary(const cons_replica *r);
int cons_is_primary(const cons_replica *r);
uint64_t cons_next_seq(const cons_replica *r);      /* next sequence the primary would use */
uint64_t cons_low_watermark(const cons_replica *r);
uint64_t cons_view_changes(const cons_replica *r);
uint64_t cons_dropped(const cons_replica *r);       /* messages refused */
uint64_t cons_committed(const cons_replica *r);     /* last seq passed to cons_on_committed */
int cons_in_view_change(const cons_replica *r);

#ifdef __cplusplus
}
#endif
#endif
