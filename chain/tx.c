/* tx.c — the transaction codec, signing hashes and stateless checks.
 *
 * Encoding is protobuf (proto/tx.proto) through protobuf-c's generated code;
 * nothing here writes protobuf bytes by hand. The schema is closed: decode
 * refuses unknown fields in any message, bytes that do not re-encode to the
 * exact input (explicit defaults, repeated or out-of-order fields, non-minimal
 * varints), a body that does not match the type, and any field outside the
 * bounds of chain.h. Encode applies the same rules to a struct, so a node
 * never emits what it would refuse.
 *
 * Converting a chain_tx to protobuf-c structs points into the chain_tx's own
 * memory (no allocation); tx_pb holds that scaffolding on the stack.
 */
#include <assert.h>
#include <stdlib.h>
#include <string.h>

#include "chain/chain.h"
#include "chain/chain_internal.h"
#include "proto/tx.pb-c.h"

/* ------------------------------------------------------------ struct rules */

static int codes_valid(const chain_code *codes, uint32_t n, uint32_t max, int (*valid)(const char *))
{
    if (n == 0 || n > max) return CHAIN_EBOUNDS;
    for (uint32_t i = 0; i < n; i++) {
        if (!valid(codes[i].s)) return CHAIN_ECODE;
        for (uint32_t j = 0; j < i; j++) {
            if (strcmp(codes[i].s, codes[j].s) == 0) return CHAIN_ECODE;
        }
    }
    return CHAIN_OK;
}

static int endorsements_valid(const chain_institution_tx *b)
{
    if (b->n_endorsements > CHAIN_VALIDATORS_MAX) return CHAIN_EBOUNDS;
    for (uint32_t i = 0; i < b->n_endorsements; i++) {
        for (uint32_t j = 0; j < i; j++) {
            if (memcmp(b->endorsements[i].signer.b, b->endorsements[j].signer.b, CHAIN_KEY_LEN) == 0)
                return CHAIN_EBOUNDS;
        }
    }
    return CHAIN_OK;
}

/* The body of a Register/RemoveInstitution, endorsements aside. Registration
 * may grant only the gateway and grantee roles: the validator set is fixed
 * by genesis (certificates are checked against it). */
static int institution_valid(chain_tx_type type, const chain_institution_tx *b)
{
    const uint32_t registrable = CHAIN_ROLE_GATEWAY | CHAIN_ROLE_GRANTEE;
    if (type == CHAIN_TX_REGISTER_INSTITUTION) {
        if (strnlen(b->name, sizeof b->name) == sizeof b->name) return CHAIN_EBOUNDS;
        if (!chain__name_valid(b->name)) return CHAIN_EBOUNDS;
        if (b->roles == 0 || (b->roles & ~registrable) != 0) return CHAIN_ECODE;
    } else {
        if (b->name[0] != '\0' || b->roles != 0) return CHAIN_EBOUNDS;
    }
    return CHAIN_OK;
}

static int body_valid(const chain_tx *tx)
{
    switch (tx->type) {
    case CHAIN_TX_GRANT: {
        int rc = codes_valid(tx->body.grant.scopes, tx->body.grant.n_scopes, CHAIN_SCOPES_MAX,
                             chain_scope_valid);
        if (rc != 0) return rc;
        return codes_valid(tx->body.grant.purposes, tx->body.grant.n_purposes, CHAIN_PURPOSES_MAX,
                           chain_purpose_valid);
    }
    case CHAIN_TX_REVOKE:
        return CHAIN_OK;
    case CHAIN_TX_SET_GUARDIAN:
        return tx->body.set_guardian.remove == 0 || tx->body.set_guardian.remove == 1 ? CHAIN_OK
                                                                                       : CHAIN_EBOUNDS;
    case CHAIN_TX_ACCESS_RECORD:
        if (!chain_scope_valid(tx->body.access_record.scope.s)) return CHAIN_ECODE;
        return chain_purpose_valid(tx->body.access_record.purpose.s) ? CHAIN_OK : CHAIN_ECODE;
    case CHAIN_TX_REGISTER_INSTITUTION:
    case CHAIN_TX_REMOVE_INSTITUTION: {
        int rc = institution_valid(tx->type, &tx->body.institution);
        return rc != 0 ? rc : endorsements_valid(&tx->body.institution);
    }
    }
    return CHAIN_EDECODE;
}

/* Every rule a well-formed transaction obeys, whether decoded or built. */
static int tx_valid(const chain_tx *tx)
{
    if (strnlen(tx->chain_id, sizeof tx->chain_id) == sizeof tx->chain_id) return CHAIN_EBOUNDS;
    if (!chain__id_valid(tx->chain_id)) return CHAIN_EBOUNDS;
    if (tx->type < CHAIN_TX_GRANT || tx->type > CHAIN_TX_REMOVE_INSTITUTION) return CHAIN_EDECODE;
    return body_valid(tx);
}

/* ------------------------------------------------------------ struct -> pb */

typedef struct {
    Consent__Tx tx;
    Consent__Grant grant;
    Consent__Revoke revoke;
    Consent__SetGuardian set_guardian;
    Consent__AccessRecord access_record;
    Consent__RegisterInstitution reg;
    Consent__RemoveInstitution rem;
    char *scopes[CHAIN_SCOPES_MAX];
    char *purposes[CHAIN_PURPOSES_MAX];
    Consent__Endorsement ends[CHAIN_VALIDATORS_MAX];
    Consent__Endorsement *endp[CHAIN_VALIDATORS_MAX];
} tx_pb;

static ProtobufCBinaryData bin(const uint8_t *p, size_t n)
{
    ProtobufCBinaryData d = {n, (uint8_t *)p};
    return d;
}

static void grant_to_pb(tx_pb *pb, const chain_grant *g)
{
    consent__grant__init(&pb->grant);
    pb->grant.patient = bin(g->patient.b, CHAIN_KEY_LEN);
    pb->grant.grantee = bin(g->grantee.b, CHAIN_KEY_LEN);
    for (uint32_t i = 0; i < g->n_scopes; i++) pb->scopes[i] = (char *)g->scopes[i].s;
    for (uint32_t i = 0; i < g->n_purposes; i++) pb->purposes[i] = (char *)g->purposes[i].s;
    pb->grant.n_scopes = g->n_scopes;
    pb->grant.scopes = pb->scopes;
    pb->grant.n_purposes = g->n_purposes;
    pb->grant.purposes = pb->purposes;
    pb->grant.not_before = g->not_before;
    pb->grant.not_after = g->not_after;
    pb->tx.body_case = CONSENT__TX__BODY_GRANT;
    pb->tx.grant = &pb->grant;
}

static void endorsements_to_pb(tx_pb *pb, const chain_institution_tx *b, int with_endorsements)
{
    uint32_t n = with_endorsements ? b->n_endorsements : 0;
    assert(n <= CHAIN_VALIDATORS_MAX);
    for (uint32_t i = 0; i < n; i++) {
        consent__endorsement__init(&pb->ends[i]);
        pb->ends[i].signer = bin(b->endorsements[i].signer.b, CHAIN_KEY_LEN);
        pb->ends[i].signature = bin(b->endorsements[i].sig.b, CHAIN_SIG_LEN);
        pb->endp[i] = &pb->ends[i];
    }
    pb->reg.n_endorsements = pb->rem.n_endorsements = n;
    pb->reg.endorsements = pb->rem.endorsements = n ? pb->endp : NULL;
}

static void institution_to_pb(tx_pb *pb, chain_tx_type type, const chain_institution_tx *b,
                              int with_endorsements)
{
    consent__register_institution__init(&pb->reg);
    consent__remove_institution__init(&pb->rem);
    endorsements_to_pb(pb, b, with_endorsements);
    if (type == CHAIN_TX_REGISTER_INSTITUTION) {
        pb->reg.key = bin(b->key.b, CHAIN_KEY_LEN);
        pb->reg.name = (char *)b->name;
        pb->reg.roles = b->roles;
        pb->tx.body_case = CONSENT__TX__BODY_REGISTER_INSTITUTION;
        pb->tx.register_institution = &pb->reg;
    } else {
        pb->rem.key = bin(b->key.b, CHAIN_KEY_LEN);
        pb->tx.body_case = CONSENT__TX__BODY_REMOVE_INSTITUTION;
        pb->tx.remove_institution = &pb->rem;
    }
}

static void body_to_pb(tx_pb *pb, const chain_tx *tx)
{
    switch (tx->type) {
    case CHAIN_TX_GRANT:
        grant_to_pb(pb, &tx->body.grant);
        break;
    case CHAIN_TX_REVOKE:
        consent__revoke__init(&pb->revoke);
        pb->revoke.grant_id = bin(tx->body.revoke.grant_id.b, CHAIN_HASH_LEN);
        pb->tx.body_case = CONSENT__TX__BODY_REVOKE;
        pb->tx.revoke = &pb->revoke;
        break;
    case CHAIN_TX_SET_GUARDIAN:
        consent__set_guardian__init(&pb->set_guardian);
        pb->set_guardian.guardian = bin(tx->body.set_guardian.guardian.b, CHAIN_KEY_LEN);
        pb->set_guardian.remove = tx->body.set_guardian.remove ? 1 : 0;
        pb->tx.body_case = CONSENT__TX__BODY_SET_GUARDIAN;
        pb->tx.set_guardian = &pb->set_guardian;
        break;
    case CHAIN_TX_ACCESS_RECORD:
        consent__access_record__init(&pb->access_record);
        pb->access_record.grant_id = bin(tx->body.access_record.grant_id.b, CHAIN_HASH_LEN);
        pb->access_record.scope = (char *)tx->body.access_record.scope.s;
        pb->access_record.purpose = (char *)tx->body.access_record.purpose.s;
        pb->access_record.request_hash = bin(tx->body.access_record.request_hash.b, CHAIN_HASH_LEN);
        pb->tx.body_case = CONSENT__TX__BODY_ACCESS_RECORD;
        pb->tx.access_record = &pb->access_record;
        break;
    case CHAIN_TX_REGISTER_INSTITUTION:
    case CHAIN_TX_REMOVE_INSTITUTION:
        institution_to_pb(pb, tx->type, &tx->body.institution, 1);
        break;
    }
}

/* Fills pb from a valid tx; with_sig = 0 leaves the signature empty (the
 * form that is signed). */
static void tx_to_pb(tx_pb *pb, const chain_tx *tx, int with_sig)
{
    consent__tx__init(&pb->tx);
    pb->tx.chain_id = (char *)tx->chain_id;
    pb->tx.type = (Consent__TxType)tx->type;
    pb->tx.signer = bin(tx->signer.b, CHAIN_KEY_LEN);
    pb->tx.nonce = tx->nonce;
    pb->tx.created_at = tx->created_at;
    pb->tx.signature = with_sig ? bin(tx->sig.b, CHAIN_SIG_LEN) : bin(NULL, 0);
    body_to_pb(pb, tx);
}

/* ------------------------------------------------------------ pb -> struct */

static int copy_bytes(uint8_t *out, size_t want, ProtobufCBinaryData d)
{
    if (d.len != want) return CHAIN_EBOUNDS;
    memcpy(out, d.data, want);
    return CHAIN_OK;
}

static int copy_code(chain_code *out, const char *s)
{
    size_t n = strnlen(s, CHAIN_CODE_LEN_MAX + 1);
    if (n > CHAIN_CODE_LEN_MAX) return CHAIN_ECODE;
    memcpy(out->s, s, n + 1);
    return CHAIN_OK;
}

static int grant_from_pb(chain_grant *g, const Consent__Grant *m)
{
    int rc;
    if (m->base.n_unknown_fields) return CHAIN_ENONCANON;
    if ((rc = copy_bytes(g->patient.b, CHAIN_KEY_LEN, m->patient)) != 0) return rc;
    if ((rc = copy_bytes(g->grantee.b, CHAIN_KEY_LEN, m->grantee)) != 0) return rc;
    if (m->n_scopes > CHAIN_SCOPES_MAX || m->n_purposes > CHAIN_PURPOSES_MAX) return CHAIN_EBOUNDS;
    g->n_scopes = (uint32_t)m->n_scopes;
    g->n_purposes = (uint32_t)m->n_purposes;
    for (size_t i = 0; i < m->n_scopes; i++) {
        if ((rc = copy_code(&g->scopes[i], m->scopes[i])) != 0) return rc;
    }
    for (size_t i = 0; i < m->n_purposes; i++) {
        if ((rc = copy_code(&g->purposes[i], m->purposes[i])) != 0) return rc;
    }
    g->not_before = m->not_before;
    g->not_after = m->not_after;
    return CHAIN_OK;
}

static int endorsements_from_pb(chain_institution_tx *b, size_t n, Consent__Endorsement *const *e)
{
    int rc;
    if (n > CHAIN_VALIDATORS_MAX) return CHAIN_EBOUNDS;
    b->n_endorsements = (uint32_t)n;
    for (size_t i = 0; i < n; i++) {
        if (e[i]->base.n_unknown_fields) return CHAIN_ENONCANON;
        if ((rc = copy_bytes(b->endorsements[i].signer.b, CHAIN_KEY_LEN, e[i]->signer)) != 0) return rc;
        if ((rc = copy_bytes(b->endorsements[i].sig.b, CHAIN_SIG_LEN, e[i]->signature)) != 0) return rc;
    }
    return CHAIN_OK;
}

static int register_from_pb(chain_institution_tx *b, const Consent__RegisterInstitution *m)
{
    int rc;
    if (m->base.n_unknown_fields) return CHAIN_ENONCANON;
    if ((rc = copy_bytes(b->key.b, CHAIN_KEY_LEN, m->key)) != 0) return rc;
    size_t n = strnlen(m->name, CHAIN_NAME_LEN_MAX + 1);
    if (n > CHAIN_NAME_LEN_MAX) return CHAIN_EBOUNDS;
    memcpy(b->name, m->name, n + 1);
    b->roles = m->roles;
    return endorsements_from_pb(b, m->n_endorsements, m->endorsements);
}

static int remove_from_pb(chain_institution_tx *b, const Consent__RemoveInstitution *m)
{
    int rc;
    if (m->base.n_unknown_fields) return CHAIN_ENONCANON;
    if ((rc = copy_bytes(b->key.b, CHAIN_KEY_LEN, m->key)) != 0) return rc;
    b->name[0] = '\0';
    b->roles = 0;
    return endorsements_from_pb(b, m->n_endorsements, m->endorsements);
}

/* The oneof case each type requires. */
static Consent__Tx__BodyCase body_case_of(chain_tx_type t)
{
    switch (t) {
    case CHAIN_TX_GRANT: return CONSENT__TX__BODY_GRANT;
    case CHAIN_TX_REVOKE: return CONSENT__TX__BODY_REVOKE;
    case CHAIN_TX_SET_GUARDIAN: return CONSENT__TX__BODY_SET_GUARDIAN;
    case CHAIN_TX_ACCESS_RECORD: return CONSENT__TX__BODY_ACCESS_RECORD;
    case CHAIN_TX_REGISTER_INSTITUTION: return CONSENT__TX__BODY_REGISTER_INSTITUTION;
    case CHAIN_TX_REMOVE_INSTITUTION: return CONSENT__TX__BODY_REMOVE_INSTITUTION;
    }
    return CONSENT__TX__BODY__NOT_SET;
}

static int body_from_pb(chain_tx *tx, const Consent__Tx *m)
{
    int rc;
    switch (m->body_case) {
    case CONSENT__TX__BODY_GRANT:
        return grant_from_pb(&tx->body.grant, m->grant);
    case CONSENT__TX__BODY_REVOKE:
        if (m->revoke->base.n_unknown_fields) return CHAIN_ENONCANON;
        return copy_bytes(tx->body.revoke.grant_id.b, CHAIN_HASH_LEN, m->revoke->grant_id);
    case CONSENT__TX__BODY_SET_GUARDIAN:
        if (m->set_guardian->base.n_unknown_fields) return CHAIN_ENONCANON;
        tx->body.set_guardian.remove = m->set_guardian->remove ? 1 : 0;
        return copy_bytes(tx->body.set_guardian.guardian.b, CHAIN_KEY_LEN, m->set_guardian->guardian);
    case CONSENT__TX__BODY_ACCESS_RECORD: {
        const Consent__AccessRecord *a = m->access_record;
        if (a->base.n_unknown_fields) return CHAIN_ENONCANON;
        if ((rc = copy_bytes(tx->body.access_record.grant_id.b, CHAIN_HASH_LEN, a->grant_id)) != 0) return rc;
        if ((rc = copy_bytes(tx->body.access_record.request_hash.b, CHAIN_HASH_LEN, a->request_hash)) != 0)
            return rc;
        if ((rc = copy_code(&tx->body.access_record.scope, a->scope)) != 0) return rc;
        return copy_code(&tx->body.access_record.purpose, a->purpose);
    }
    case CONSENT__TX__BODY_REGISTER_INSTITUTION:
        return register_from_pb(&tx->body.institution, m->register_institution);
    case CONSENT__TX__BODY_REMOVE_INSTITUTION:
        return remove_from_pb(&tx->body.institution, m->remove_institution);
    default:
        return CHAIN_EDECODE;
    }
}

static int tx_from_pb(chain_tx *tx, const Consent__Tx *m)
{
    int rc;
    if (m->base.n_unknown_fields) return CHAIN_ENONCANON;
    if (m->type <= CONSENT__TX_TYPE__TX_UNSPECIFIED || m->type > CONSENT__TX_TYPE__TX_REMOVE_INSTITUTION)
        return CHAIN_EDECODE;
    tx->type = (chain_tx_type)m->type;
    if (m->body_case != body_case_of(tx->type)) return CHAIN_EDECODE;
    size_t idlen = strnlen(m->chain_id, CHAIN_ID_LEN_MAX + 1);
    if (idlen > CHAIN_ID_LEN_MAX) return CHAIN_EBOUNDS;
    memcpy(tx->chain_id, m->chain_id, idlen + 1);
    if ((rc = copy_bytes(tx->signer.b, CHAIN_KEY_LEN, m->signer)) != 0) return rc;
    if ((rc = copy_bytes(tx->sig.b, CHAIN_SIG_LEN, m->signature)) != 0) return rc;
    tx->nonce = m->nonce;
    tx->created_at = m->created_at;
    return body_from_pb(tx, m);
}

/* ------------------------------------------------------------ public */

int chain_tx_decode(chain_tx *out, const uint8_t *buf, size_t len)
{
    static const uint8_t empty[1] = {0};
    uint8_t again[CHAIN_TX_BYTES_MAX];
    if (out == NULL || (buf == NULL && len != 0)) return CHAIN_EINVAL;
    if (len > CHAIN_TX_BYTES_MAX) return CHAIN_EBOUNDS;
    Consent__Tx *m = consent__tx__unpack(NULL, len, len ? buf : empty);
    if (m == NULL) return CHAIN_EDECODE;
    /* Unknown fields are re-emitted by protobuf-c, so the canonical check
     * below would not see them: tx_from_pb refuses them in every message. */
    chain_tx *tx = calloc(1, sizeof *tx);
    int rc = tx == NULL ? CHAIN_ENOMEM : tx_from_pb(tx, m);
    if (rc == CHAIN_OK) {
        size_t n = consent__tx__get_packed_size(m);
        if (n != len || consent__tx__pack(m, again) != len || memcmp(again, buf, len) != 0)
            rc = CHAIN_ENONCANON;
    }
    consent__tx__free_unpacked(m, NULL);
    if (rc == CHAIN_OK) rc = tx_valid(tx);
    if (rc == CHAIN_OK) *out = *tx;
    free(tx);
    return rc;
}

/* Packs a valid tx (with or without its signature) into buf. */
static int tx_pack(uint8_t *buf, size_t cap, size_t *len_out, const chain_tx *tx, int with_sig)
{
    tx_pb *pb = malloc(sizeof *pb);
    if (pb == NULL) return CHAIN_ENOMEM;
    tx_to_pb(pb, tx, with_sig);
    size_t n = consent__tx__get_packed_size(&pb->tx);
    int rc = CHAIN_OK;
    if (n > cap || n > CHAIN_TX_BYTES_MAX) {
        rc = CHAIN_EBOUNDS;
    } else {
        size_t w = consent__tx__pack(&pb->tx, buf);
        assert(w == n);
        *len_out = w;
    }
    free(pb);
    return rc;
}

int chain_tx_encode(uint8_t *buf, size_t cap, size_t *len_out, const chain_tx *tx)
{
    if (buf == NULL || len_out == NULL || tx == NULL) return CHAIN_EINVAL;
    int rc = tx_valid(tx);
    if (rc != 0) return rc;
    return tx_pack(buf, cap, len_out, tx, 1);
}

int chain_tx_sighash(chain_hash *out, const chain_tx *tx)
{
    uint8_t buf[CHAIN_TX_BYTES_MAX];
    size_t n = 0;
    if (out == NULL || tx == NULL) return CHAIN_EINVAL;
    int rc = tx_valid(tx);
    if (rc == CHAIN_OK) rc = tx_pack(buf, sizeof buf, &n, tx, 0);
    if (rc != CHAIN_OK) return rc;
    chain__sha256_tagged(out, CHAIN__TAG_TX, buf, n);
    return CHAIN_OK;
}

void chain_tx_hash(chain_hash *out, const uint8_t *buf, size_t len)
{
    assert(out != NULL);
    chain_sha256(out, buf, len);
}

int chain_tx_sign(chain_tx *tx, const chain_key *key)
{
    chain_hash h;
    if (tx == NULL || key == NULL) return CHAIN_EINVAL;
    /* The signer is the key's public key by definition; setting it here
     * means a caller cannot build a tx whose signature names someone else. */
    chain_key_pubkey(key, &tx->signer);
    int rc = chain_tx_sighash(&h, tx);
    if (rc != CHAIN_OK) return rc;
    return chain_sign(key, &tx->sig, &h);
}

static int grant_window_valid(const chain_grant *g)
{
    if (g->not_before >= g->not_after) return CHAIN_ETIME;
    if (g->not_after - g->not_before > CHAIN_GRANT_DURATION_MAX_S) return CHAIN_ETIME;
    return CHAIN_OK;
}

int chain_tx_check(const chain_tx *tx, const char *chain_id, uint64_t now_s)
{
    chain_hash h;
    if (tx == NULL || chain_id == NULL) return CHAIN_EINVAL;
    if (strncmp(tx->chain_id, chain_id, sizeof tx->chain_id) != 0) return CHAIN_ECHAINID;
    uint64_t skew = tx->created_at > now_s ? tx->created_at - now_s : now_s - tx->created_at;
    if (skew > CHAIN_TX_CLOCK_SKEW_S) return CHAIN_ETIME;
    if (tx->type == CHAIN_TX_GRANT) {
        int rc = grant_window_valid(&tx->body.grant);
        if (rc != 0) return rc;
    }
    int rc = chain_tx_sighash(&h, tx);
    if (rc != CHAIN_OK) return rc;
    return chain_verify(&tx->signer, &tx->sig, &h);
}

const char *chain_tx_type_name(chain_tx_type t)
{
    switch (t) {
    case CHAIN_TX_GRANT: return "grant";
    case CHAIN_TX_REVOKE: return "revoke";
    case CHAIN_TX_SET_GUARDIAN: return "set_guardian";
    case CHAIN_TX_ACCESS_RECORD: return "access_record";
    case CHAIN_TX_REGISTER_INSTITUTION: return "register_institution";
    case CHAIN_TX_REMOVE_INSTITUTION: return "remove_institution";
    }
    return "unknown";
}

int chain_institution_sighash(chain_hash *out, const char *chain_id, chain_tx_type type,
                              const chain_institution_tx *body)
{
    uint8_t buf[2 + CHAIN_ID_LEN_MAX + CHAIN_TX_BYTES_MAX];
    if (out == NULL || chain_id == NULL || body == NULL) return CHAIN_EINVAL;
    if (!chain__id_valid(chain_id)) return CHAIN_EBOUNDS;
    if (type != CHAIN_TX_REGISTER_INSTITUTION && type != CHAIN_TX_REMOVE_INSTITUTION) return CHAIN_EINVAL;
    int rc = institution_valid(type, body);
    if (rc != 0) return rc;
    tx_pb *pb = malloc(sizeof *pb);
    if (pb == NULL) return CHAIN_ENOMEM;
    consent__tx__init(&pb->tx);
    institution_to_pb(pb, type, body, 0);
    /* Endorsers sign (chain id, type, body without endorsements): the id
     * and type keep a registration from being replayed on another chain or
     * read as a removal. */
    size_t n = 0, idlen = strlen(chain_id);
    buf[n++] = (uint8_t)idlen;
    memcpy(buf + n, chain_id, idlen);
    n += idlen;
    buf[n++] = (uint8_t)type;
    if (type == CHAIN_TX_REGISTER_INSTITUTION) {
        assert(consent__register_institution__get_packed_size(&pb->reg) <= CHAIN_TX_BYTES_MAX);
        n += consent__register_institution__pack(&pb->reg, buf + n);
    } else {
        assert(consent__remove_institution__get_packed_size(&pb->rem) <= CHAIN_TX_BYTES_MAX);
        n += consent__remove_institution__pack(&pb->rem, buf + n);
    }
    free(pb);
    chain__sha256_tagged(out, CHAIN__TAG_INSTITUTION, buf, n);
    return CHAIN_OK;
}
