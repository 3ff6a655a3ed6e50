/* hex.c — lower-case hex encoding of keys, hashes and signatures.
 *
 * Text formats (genesis, HTTP API, CLI) carry binary values as hex. Parsing
 * is strict: exactly 2*len digits and nothing else, so one value has exactly
 * one accepted spelling apart from letter case.
 */
#include <assert.h>
#include <string.h>

#include "chain/chain.h"

void chain_hex(char *out, const uint8_t *in, size_t len)
{
    static const char digits[] = "0123456789abcdef";
    assert(out != NULL);
    assert(in != NULL || len == 0);
    for (size_t i = 0; i < len; i++) {
        out[2 * i] = digits[in[i] >> 4];
        out[2 * i + 1] = digits[in[i] & 0x0f];
    }
    out[2 * len] = '\0';
}

static int hex_digit(char c)
{
    if (c >= '0' && c <= '9') return c - '0';
    if (c >= 'a' && c <= 'f') return c - 'a' + 10;
    if (c >= 'A' && c <= 'F') return c - 'A' + 10;
    return -1;
}

int chain_unhex(uint8_t *out, size_t len, const char *hex)
{
    if (out == NULL || hex == NULL) return CHAIN_EINVAL;
    /* strnlen bounds the scan: a huge string without the right length is
     * refused without reading past 2*len+1 bytes. */
    if (strnlen(hex, 2 * len + 1) != 2 * len) return CHAIN_EDECODE;
    for (size_t i = 0; i < 2 * len; i++) {
        if (hex_digit(hex[i]) < 0) return CHAIN_EDECODE;
    }
    for (size_t i = 0; i < len; i++) {
        out[i] = (uint8_t)((hex_digit(hex[2 * i]) << 4) | hex_digit(hex[2 * i + 1]));
    }
    return CHAIN_OK;
}
