/* tx.c — building and signing the transactions a wallet sends.
 *
 * The wallet fills a chain_tx and lets chain/ do all encoding and signing
 * (chain_tx_sign, chain_tx_encode), so there is one codec in the project.
 * Before anything leaves the wallet, wallet_tx_seal decodes its own output
 * and verifies the signature: a tx the node would refuse as non-canonical or
 * unsigned is caught here, with the user still at the keyboard.
 */
#include <assert.h>
#include <stdio.h>
#include <string.h>

#include "wallet/wallet.h"

int wallet_tx_init(chain_tx *tx, const char *chain_id, chain_tx_type type, const chain_key *key,
                   uint64_t nonce, uint64_t now_s)
{
    if (!chain_id || !chain_id[0] || strlen(chain_id) > CHAIN_ID_LEN_MAX || nonce == 0)
        return CHAIN_EINVAL;
    memset(tx, 0, sizeof *tx);
    memcpy(tx->chain_id, chain_id, strlen(chain_id) + 1);
    assert(type >= CHAIN_TX_GRANT && type <= CHAIN_TX_REMOVE_INSTITUTION);
    tx->type = type;
    chain_key_pubkey(key, &tx->signer);
    tx->nonce = nonce;
    tx->created_at = now_s;
    return 0;
}

int wallet_tx_grant(chain_tx *tx, const char *chain_id, const chain_key *key, uint64_t nonce,
                    uint64_t now_s, const chain_grant *grant)
{
    int rc;
    if (grant->n_scopes == 0 || grant->n_scopes > CHAIN_SCOPES_MAX || grant->n_purposes == 0 ||
        grant->n_purposes > CHAIN_PURPOSES_MAX || grant->not_after <= grant->not_before)
        return CHAIN_EBOUNDS;
    rc = wallet_tx_init(tx, chain_id, CHAIN_TX_GRANT, key, nonce, now_s);
    if (!rc)
        tx->body.grant = *grant;
    return rc;
}

int wallet_tx_revoke(chain_tx *tx, const char *chain_id, const chain_key *key, uint64_t nonce,
                     uint64_t now_s, const chain_hash *grant_id)
{
    int rc = wallet_tx_init(tx, chain_id, CHAIN_TX_REVOKE, key, nonce, now_s);
    if (!rc)
        tx->body.revoke.grant_id = *grant_id;
    return rc;
}

int wallet_tx_set_guardian(chain_tx *tx, const char *chain_id, const chain_key *key, uint64_t nonce,
                           uint64_t now_s, const chain_pubkey *guardian, int remove)
{
    int rc = wallet_tx_init(tx, chain_id, CHAIN_TX_SET_GUARDIAN, key, nonce, now_s);
    if (!rc) {
        tx->body.set_guardian.guardian = *guardian;
        tx->body.set_guardian.remove = remove ? 1 : 0;
    }
    return rc;
}

int wallet_tx_access_record(chain_tx *tx, const char *chain_id, const chain_key *key,
                            uint64_t nonce, uint64_t now_s, const chain_access_record *rec)
{
    int rc = wallet_tx_init(tx, chain_id, CHAIN_TX_ACCESS_RECORD, key, nonce, now_s);
    if (!rc)
        tx->body.access_record = *rec;
    return rc;
}

int wallet_tx_seal(uint8_t *buf, size_t cap, size_t *len_out, chain_hash *id_out, chain_tx *tx,
                   const chain_key *key)
{
    chain_tx back;
    chain_hash msg;
    size_t len = 0;
    int rc = chain_tx_sign(tx, key);
    if (!rc)
        rc = chain_tx_encode(buf, cap, &len, tx);
    if (rc)
        return rc;
    assert(len > 0 && len <= cap);
    /* Read our own bytes back the way a node will. */
    rc = chain_tx_decode(&back, buf, len);
    if (!rc)
        rc = chain_tx_sighash(&msg, &back);
    if (!rc)
        rc = chain_verify(&back.signer, &back.sig, &msg);
    if (rc)
        return rc;
    assert(back.type == tx->type);
    assert(back.nonce == tx->nonce);
    chain_tx_hash(id_out, buf, len);
    *len_out = len;
    return 0;
}

int wallet_send(wallet_client *c, chain_hash *id_out, char *err, chain_tx *tx, const chain_key *key,
                uint64_t now_s)
{
    char chain_id[CHAIN_ID_LEN_MAX + 1];
    uint8_t buf[CHAIN_TX_BYTES_MAX];
    chain_pubkey me;
    chain_tx filled;
    size_t len = 0;
    uint64_t nonce = 0;
    int rc = wallet_client_chain_id(c, chain_id, err);
    chain_key_pubkey(key, &me);
    if (!rc)
        rc = wallet_client_next_nonce(c, &nonce, err, &me);
    if (rc)
        return rc;
    rc = wallet_tx_init(&filled, chain_id, tx->type, key, nonce, now_s);
    if (!rc) {
        filled.body = tx->body;
        rc = wallet_tx_seal(buf, sizeof buf, &len, id_out, &filled, key);
    }
    if (rc) {
        snprintf(err, WALLET_ERR_LEN, "cannot build the transaction: %s", chain_strerror(rc));
        return rc;
    }
    *tx = filled;
    return wallet_client_submit(c, id_out, err, buf, len);
}
