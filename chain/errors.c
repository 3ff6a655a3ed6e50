/* errors.c — one-line reasons for the chain module's error codes.
 *
 * Every public chain_ function returns 0 or a negative CHAIN_E* code; this
 * file maps those codes to text for logs, HTTP error bodies and CLI output.
 */
#include "chain/chain.h"

const char *chain_strerror(int err)
{
    switch (err) {
    case CHAIN_OK: return "ok";
    case CHAIN_EINVAL: return "invalid argument";
    case CHAIN_ENOMEM: return "out of memory";
    case CHAIN_EDECODE: return "malformed message";
    case CHAIN_ENONCANON: return "unknown fields or non-canonical encoding";
    case CHAIN_EBOUNDS: return "field outside its bounds";
    case CHAIN_ECODE: return "unknown or duplicate code";
    case CHAIN_ESIG: return "bad signature";
    case CHAIN_ECHAINID: return "wrong chain id";
    case CHAIN_ENONCE: return "nonce not above the signer's last nonce";
    case CHAIN_EPERM: return "signer not permitted";
    case CHAIN_ENOTFOUND: return "not found";
    case CHAIN_EEXISTS: return "already exists";
    case CHAIN_ETIME: return "time outside the allowed window";
    case CHAIN_ESTATE: return "not valid in the current state";
    case CHAIN_ECERT: return "commit certificate does not verify";
    case CHAIN_EBLOCK: return "block does not link or its roots differ";
    case CHAIN_EIO: return "storage failure";
    case CHAIN_EPROOF: return "proof does not verify";
    default: return "unknown error";
    }
}
