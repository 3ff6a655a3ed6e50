/* chain_internal.h — helpers shared inside chain/, not part of the public API.
 *
 * Names carry the double prefix chain__. Keep additions small; each helper
 * says which file defines it.
 */
#ifndef CONSENT_CHAIN_INTERNAL_H
#define CONSENT_CHAIN_INTERNAL_H

#include "chain/chain.h"

/* codes.c: 1 if s is a chain id: [a-z0-9-], 1..CHAIN_ID_LEN_MAX chars. */
int chain__id_valid(const char *s);
/* codes.c: 1 if s is an institution name: printable ASCII (0x20..0x7e),
 * 1..CHAIN_NAME_LEN_MAX chars. */
int chain__name_valid(const char *s);
/* codes.c: role name <-> bit ("validator", "gateway", "grantee"); 0 / NULL
 * if unknown. */
uint32_t chain__role_from_name(const char *name);
const char *chain__role_name(uint32_t role_bit);

/* Domain-separation tags: every signed or hashed message starts with one, so
 * a signature over one kind of message can never pass as another. */
#define CHAIN__TAG_TX "consent/tx/v1"
#define CHAIN__TAG_COMMIT "consent/commit/v1"
#define CHAIN__TAG_INSTITUTION "consent/institution/v1"
#define CHAIN__TAG_VALSET "consent/valset/v1"

/* crypto.c: SHA-256 of tag || data (the tag without its NUL). */
void chain__sha256_tagged(chain_hash *out, const char *tag, const void *data, size_t len);

/* Big-endian fixed-width integer writers for hashed messages. */
static inline void chain__put_u64be(uint8_t *p, uint64_t v)
{
    for (int i = 7; i >= 0; i--) { p[i] = (uint8_t)(v & 0xff); v >>= 8; }
}
static inline void chain__put_u32be(uint8_t *p, uint32_t v)
{
    for (int i = 3; i >= 0; i--) { p[i] = (uint8_t)(v & 0xff); v >>= 8; }
}

#endif
