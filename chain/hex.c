/* hex.c — lower-case hex encoding of keys, hashes and signatures.
 *
 * Text formats (genesis, HTTP API, CLI) carry binary values as hex. Parsing
 * is strict: exactly 2*len digits and nothing else, so one value has exactly
 * one accepted spelling apart from letter case.
 */
#include <assert.h>
#include <string.h>

#include "chain/chain.h"

/* The two digits of every byte, "000102...ff": one two-byte copy per byte
 * instead of two lookups and two stores (half the time; a proof answer
 * hexes a few KiB). */
#define HEX_ROW(h) h "0" h "1" h "2" h "3" h "4" h "5" h "6" h "7" h "8" h "9" h "a" h "b" h "c" h "d" h "e" h "f"
static const char hex_pairs[] = HEX_ROW("0") HEX_ROW("1") HEX_ROW("2") HEX_ROW("3") HEX_ROW("4") HEX_ROW("5")
    HEX_ROW("6") HEX_ROW("7") HEX_ROW("8") HEX_ROW("9") HEX_ROW("a") HEX_ROW("b") HEX_ROW("c") HEX_ROW("d")
    HEX_ROW("e") HEX_ROW("f");
_Static_assert(sizeof hex_pairs == 2 * 256 + 1, "two digits for each byte value");

void chain_hex(char *out, const uint8_t *in, size_t len)
{
    assert(out != NULL);
    assert(in != NULL || len == 0);
    for (size_t i = 0; i < len; i++) memcpy(out + 2 * i, hex_pairs + 2 * in[i], 2);
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
