/* cons_internal.h — the replica's state and the helpers shared by the files
 * of consensus/ (names carry the double prefix cons__).
 *
 * Layout of the module:
 *   msg.c        envelopes: sighash, sign, verify, decode of small bodies
 *   log.c        the message log (a ring of slots between the watermarks),
 *                the action list and the per-call arena
 *   replica.c    create/destroy, normal case (pre-prepare, prepare, commit),
 *                validation, delivery, timer, introspection
 *   checkpoint.c checkpoints, stable checkpoint, garbage collection, fetch
 *   viewchange.c view change and new view
 *   persist.c    the persisted blob: encode and restore
 */
#ifndef CONSENT_CONS_INTERNAL_H
#define CONSENT_CONS_INTERNAL_H

#include <assert.h>
#include <stdint.h>

#include "consensus/cons.h"
#include "proto/consensus.pb-c.h"

#define CONS__WINDOW_MAX 256u        /* largest accepted cfg.window */
#define CONS__CKPT_PER_SENDER 4u     /* checkpoint votes kept per validator */
#define CONS__TIMEOUT_SHIFT_MAX 6u   /* view timeout doubles at most this often (64x base) */
#define CONS__ARENA_MAX (2u * CONS_ACTIONS_MAX)
#define CONS__TAG "consent/cons/v1"

typedef struct {
    uint8_t *p;
    size_t len;
} cons__buf;

/* Validation state of the block bytes held by a slot. */
enum { CONS__V_NONE = 0, CONS__V_PENDING, CONS__V_OK, CONS__V_BAD };

typedef struct {
    int has;
    chain_hash digest;
    cons__buf env;     /* the signed envelope (evidence, prepared certificate) */
    chain_sig sig;
} cons__vote;

/* One sequence number between the watermarks. The "round" fields belong to
 * view `view`; they are reset lazily when a message of a later view arrives.
 * The prepared certificate survives view changes until a newer one replaces
 * it: a ViewChange must report it. */
typedef struct {
    int used;
    uint64_t seq;
    /* round state */
    uint64_t view;
    int has_pp;
    chain_hash digest;
    cons__buf pp_env;
    int certified;        /* re-issued by a NewView from a prepared certificate */
    int sent_prepare;
    int sent_commit;
    int prepared;
    int committed_local;
    int commit_emitted;   /* CONS_ACT_COMMIT or FETCH emitted for it */
    cons__vote prep[CHAIN_VALIDATORS_MAX];
    cons__vote com[CHAIN_VALIDATORS_MAX];
    chain_cert cert;
    /* block bytes, if any, and what the node said about them */
    cons__buf block;
    chain_hash block_digest;
    int vstate;
    /* highest prepared certificate, any view */
    int has_pcert;
    uint64_t pcert_view;
    chain_hash pcert_digest;
    cons__buf pcert_pp;
    uint32_t pcert_n;
    cons__buf pcert_prep[CHAIN_VALIDATORS_MAX];
} cons__slot;

typedef struct {
    int has;
    uint64_t seq;
    chain_hash digest;
    cons__buf env;
} cons__ckpt;

typedef struct {
    int has;
    uint64_t view;
    cons__buf env;     /* verified ViewChange envelope, sidecar stripped */
} cons__vc;

struct cons_replica {
    cons_config cfg;
    const chain_genesis *g;
    uint32_t n, f, quorum, self;
    /* view */
    uint64_t view;
    int in_vc;
    uint32_t failed_views;
    uint64_t view_changes;
    uint64_t dropped;
    /* sequence numbers */
    uint64_t next_seq;          /* primary: next sequence to assign */
    uint64_t committed;         /* store tip height */
    chain_hash committed_hash;
    uint64_t fetch_target;      /* highest seq a FETCH asked for */
    uint64_t stable_seq;        /* low watermark */
    chain_hash stable_digest;
    uint32_t n_stable_proof;
    cons__buf stable_proof[CHAIN_VALIDATORS_MAX];
    cons__slot *slots;          /* cfg.window slots, index seq % window */
    cons__ckpt ckpts[CHAIN_VALIDATORS_MAX][CONS__CKPT_PER_SENDER];
    uint64_t own_ckpt_seq;      /* our last checkpoint (persisted) */
    chain_hash own_ckpt_digest;
    cons__vc vcs[CHAIN_VALIDATORS_MAX];
    /* timer */
    int timer_armed;
    uint64_t timer_at;
    int request_pending;
    /* output of the current call */
    cons_action *acts;
    size_t n_acts;
    int need_persist;
    uint8_t *arena[CONS__ARENA_MAX];
    size_t n_arena;
};

/* ---------------------------------------------------------------- msg.c */
/* A decoded envelope with the common fields of the small bodies. */
typedef struct {
    Consent__ConsEnvelope *env;
    uint32_t type;
    uint32_t sender;
    uint64_t view;     /* PP/Prepare/Commit; new_view of a ViewChange/NewView */
    uint64_t seq;      /* PP/Prepare/Commit/Checkpoint */
    chain_hash digest; /* PP/Prepare/Commit/Checkpoint */
} cons__msg;

/* Decodes and (if verify) checks the signature of an envelope. Small bodies
 * (PP, Prepare, Commit, Checkpoint) are decoded into m; ViewChange and
 * NewView bodies are left to their handlers. Returns CONS_EDECODE or
 * CONS_ESIG; on success the caller frees with cons__msg_free. */
int cons__msg_parse(const cons_replica *r, cons__msg *m, const uint8_t *buf, size_t len);
void cons__msg_free(cons__msg *m);
/* Parses buf and requires type `type`. */
int cons__msg_parse_type(const cons_replica *r, cons__msg *m, const uint8_t *buf, size_t len,
                         uint32_t type);
/* Like cons__msg_parse_type without the signature check: only for bytes
 * verified before (a certificate inside a checked ViewChange). */
int cons__msg_decode_type(const cons_replica *r, cons__msg *m, const uint8_t *buf, size_t len,
                          uint32_t type);
/* Builds a signed envelope (no sidecar). *out is malloc'd. */
int cons__msg_make(cons_replica *r, cons__buf *out, uint32_t type, const uint8_t *body,
                   size_t body_len);
/* Builds and signs the small messages. */
int cons__msg_vote(cons_replica *r, cons__buf *out, uint32_t type, uint64_t view, uint64_t seq,
                   const chain_hash *digest);
int cons__msg_checkpoint(cons_replica *r, cons__buf *out, uint64_t seq, const chain_hash *digest);
/* Appends sidecar blocks to an encoded envelope (protobuf concatenation
 * merges repeated fields); stops before the total exceeds max_len. *out is
 * malloc'd. */
int cons__msg_add_blocks(cons__buf *out, const cons__buf *env, Consent__ConsBlock **blocks,
                         size_t n_blocks, size_t max_len);
/* Re-encodes an envelope without its sidecar blocks. */
int cons__msg_strip(cons__buf *out, const Consent__ConsEnvelope *env);
int cons__digest_get(chain_hash *out, ProtobufCBinaryData b);

/* ---------------------------------------------------------------- log.c */
void cons__buf_free(cons__buf *b);
int cons__buf_set(cons__buf *b, const uint8_t *p, size_t len);
/* The slot of seq if seq lies in (stable_seq, stable_seq + window], else NULL.
 * The slot is claimed (used) for seq. */
cons__slot *cons__slot_get(cons_replica *r, uint64_t seq);
/* The slot of seq only if it is already used. */
cons__slot *cons__slot_find(cons_replica *r, uint64_t seq);
void cons__slot_clear(cons__slot *s);
/* Resets the round state of s for a later view; keeps block and pcert. */
void cons__slot_new_round(cons__slot *s, uint64_t view);
/* Drops every slot at or below seq. */
void cons__log_gc(cons_replica *r, uint64_t seq);

void cons__begin(cons_replica *r, cons_actions *out);
/* Finishes a call: prepends CONS_ACT_PERSIST if a signed message is in the
 * list, and hands the list to out. */
int cons__end(cons_replica *r, cons_actions *out, int rc);
cons_action *cons__act(cons_replica *r, cons_action_type type);
/* Takes ownership of p until the next call into the replica. */
const uint8_t *cons__arena_keep(cons_replica *r, uint8_t *p);
/* Queues a copy of a signed message for validator `to` (or broadcast when
 * to == UINT32_MAX); sets need_persist. */
int cons__send(cons_replica *r, uint32_t to, const cons__buf *msg);
void cons__timer_set(cons_replica *r, uint64_t at_ms);
void cons__timer_cancel(cons_replica *r);
uint64_t cons__timeout_ms(const cons_replica *r);
uint32_t cons__primary_of(const cons_replica *r, uint64_t view);

/* ---------------------------------------------------------------- replica.c */
/* Normal-case handlers (message already verified, sender == from). */
int cons__on_pre_prepare(cons_replica *r, uint64_t now_ms, cons__msg *m);
int cons__on_prepare(cons_replica *r, uint64_t now_ms, cons__msg *m);
int cons__on_commit(cons_replica *r, uint64_t now_ms, cons__msg *m);
/* Sends Prepare/Commit as due and delivers what can be delivered. */
int cons__progress(cons_replica *r, uint64_t now_ms, cons__slot *s);
int cons__try_deliver(cons_replica *r);
/* Arms the view timer if work is pending (restart: from now even if armed),
 * cancels it if none is. */
void cons__timer_update(cons_replica *r, uint64_t now_ms, int restart);
/* Emits CONS_ACT_VALIDATE for the slot of committed+1 when due. */
void cons__maybe_validate(cons_replica *r);
/* Emits CONS_ACT_EVIDENCE for two envelopes of validator `who`. */
int cons__evidence(cons_replica *r, uint32_t who, const cons__buf *a, const uint8_t *b, size_t blen);

/* ---------------------------------------------------------------- checkpoint.c */
int cons__on_checkpoint(cons_replica *r, uint64_t now_ms, cons__msg *m);
/* After the block at seq is applied: own checkpoint when seq % K == 0. */
int cons__checkpoint_after_commit(cons_replica *r, uint64_t seq, const chain_hash *digest);
/* Verifies a checkpoint proof (2f+1 distinct signed Checkpoints for seq,
 * digest). */
int cons__ckpt_proof_check(const cons_replica *r, uint64_t seq, const chain_hash *digest,
                           const ProtobufCBinaryData *proof, size_t n_proof);
/* Adopts a stable checkpoint whose proof is verified; GC and FETCH. */
int cons__stable_adopt(cons_replica *r, uint64_t seq, const chain_hash *digest,
                       const ProtobufCBinaryData *proof, size_t n_proof);
void cons__fetch(cons_replica *r, uint64_t seq);
/* Broadcasts again our own checkpoints above the low watermark. */
int cons__ckpt_resend(cons_replica *r);
/* After a restart: our last checkpoint (or one for the store's tip) again. */
int cons__ckpt_restart(cons_replica *r);

/* ---------------------------------------------------------------- viewchange.c */
int cons__start_view_change(cons_replica *r, uint64_t now_ms, uint64_t view);
/* Validators (us included) whose latest ViewChange is for `view` or later:
 * they have all given up on the views below. */
uint32_t cons__vc_count(const cons_replica *r, uint64_t view);
/* (Re)broadcasts our ViewChange for r->view and arms the timer. */
int cons__send_view_change(cons_replica *r, uint64_t now_ms);
int cons__on_view_change(cons_replica *r, uint64_t now_ms, cons__msg *m);
int cons__on_new_view(cons_replica *r, uint64_t now_ms, cons__msg *m);

/* ---------------------------------------------------------------- persist.c */
int cons__persist_encode(const cons_replica *r, uint8_t **out, size_t *len);
int cons__persist_restore(cons_replica *r, const uint8_t *buf, size_t len);

#endif
