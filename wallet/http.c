/* http.c — an incremental HTTP/1.1 response parser over http_parser.
 *
 * The client feeds it bytes as they arrive from the socket and a zero-length
 * feed at EOF. http_parser does the protocol work (status line, headers,
 * Content-Length, chunked encoding, read-until-close bodies); this file
 * collects the status, the Content-Type and the body, and enforces limits:
 * a response whose headers or body outgrow them is refused rather than
 * buffered, so a broken or hostile node cannot exhaust the wallet's memory.
 */
#include <assert.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include <http_parser.h>

#include "wallet/wallet.h"

#define FIELD_MAX 32

struct wallet_http_parser {
    http_parser p;
    http_parser_settings s;
    size_t body_max;
    size_t header_bytes;
    char field[FIELD_MAX + 1];
    size_t field_len;
    int field_overflow;
    int in_value;
    char ct[64];
    size_t ct_len;
    char *body;
    size_t body_len, body_cap;
    int done;
    int err;
};

static int count_header(wallet_http_parser *hp, size_t len)
{
    hp->header_bytes += len;
    if (hp->header_bytes > WALLET_HTTP_HEADERS_MAX) {
        hp->err = WALLET_ETOOBIG;
        return 1;
    }
    return 0;
}

/* Field names may arrive in pieces; a value ends the previous field. */
static int on_field(http_parser *p, const char *at, size_t len)
{
    wallet_http_parser *hp = p->data;
    if (count_header(hp, len))
        return 1;
    if (hp->in_value) {
        hp->in_value = 0;
        hp->field_len = 0;
        hp->field_overflow = 0;
    }
    if (hp->field_len + len > FIELD_MAX) {
        hp->field_overflow = 1;   /* not a field we care about */
        return 0;
    }
    memcpy(hp->field + hp->field_len, at, len);
    hp->field_len += len;
    hp->field[hp->field_len] = 0;
    return 0;
}

static int on_value(http_parser *p, const char *at, size_t len)
{
    wallet_http_parser *hp = p->data;
    size_t room;
    if (count_header(hp, len))
        return 1;
    hp->in_value = 1;
    if (hp->field_overflow || strcasecmp(hp->field, "content-type") != 0)
        return 0;
    room = sizeof hp->ct - 1 - hp->ct_len;
    if (len > room)
        len = room;   /* a Content-Type longer than 63 bytes is cut, not refused */
    memcpy(hp->ct + hp->ct_len, at, len);
    hp->ct_len += len;
    hp->ct[hp->ct_len] = 0;
    return 0;
}

static int on_body(http_parser *p, const char *at, size_t len)
{
    wallet_http_parser *hp = p->data;
    if (len > hp->body_max - hp->body_len) {
        hp->err = WALLET_ETOOBIG;
        return 1;
    }
    if (hp->body_len + len + 1 > hp->body_cap) {
        size_t cap = hp->body_cap ? hp->body_cap : 4096;
        char *nb;
        while (cap < hp->body_len + len + 1)
            cap *= 2;
        if (cap > hp->body_max + 1)
            cap = hp->body_max + 1;
        nb = realloc(hp->body, cap);
        if (!nb) {
            hp->err = CHAIN_ENOMEM;
            return 1;
        }
        hp->body = nb;
        hp->body_cap = cap;
    }
    memcpy(hp->body + hp->body_len, at, len);
    hp->body_len += len;
    assert(hp->body_len <= hp->body_max);
    assert(hp->body_len < hp->body_cap);   /* room for the terminator */
    return 0;
}

static int on_complete(http_parser *p)
{
    wallet_http_parser *hp = p->data;
    hp->done = 1;
    http_parser_pause(p, 1);   /* ignore anything after the one response */
    return 0;
}

wallet_http_parser *wallet_http_parser_create(size_t body_max)
{
    wallet_http_parser *hp = calloc(1, sizeof *hp);
    if (!hp)
        return NULL;
    http_parser_init(&hp->p, HTTP_RESPONSE);
    hp->p.data = hp;
    http_parser_settings_init(&hp->s);
    hp->s.on_header_field = on_field;
    hp->s.on_header_value = on_value;
    hp->s.on_body = on_body;
    hp->s.on_message_complete = on_complete;
    hp->body_max = body_max;
    return hp;
}

void wallet_http_parser_destroy(wallet_http_parser *hp)
{
    if (!hp)
        return;
    free(hp->body);
    free(hp);
}

int wallet_http_parser_feed(wallet_http_parser *hp, const uint8_t *buf, size_t len)
{
    size_t used;
    enum http_errno e;
    if (hp->err)
        return hp->err;
    if (hp->done)
        return 1;
    used = http_parser_execute(&hp->p, &hp->s, len ? (const char *)buf : "", len);
    e = HTTP_PARSER_ERRNO(&hp->p);
    if (hp->err)
        return hp->err;
    if (hp->done)
        return 1;
    if (e == HPE_HEADER_OVERFLOW) {
        hp->err = WALLET_ETOOBIG;
        return hp->err;
    }
    if (e != HPE_OK || used != len || len == 0) {
        hp->err = WALLET_EHTTP;   /* malformed, or the peer closed mid-response */
        return hp->err;
    }
    return 0;
}

int wallet_http_parser_take(wallet_http_parser *hp, wallet_http_response *out)
{
    if (!hp->done || hp->err)
        return CHAIN_EINVAL;
    memset(out, 0, sizeof *out);
    if (!hp->body) {
        hp->body = malloc(1);
        if (!hp->body)
            return CHAIN_ENOMEM;
    }
    hp->body[hp->body_len] = 0;
    out->status = (int)hp->p.status_code;
    memcpy(out->content_type, hp->ct, hp->ct_len + 1);
    out->body = hp->body;
    out->body_len = hp->body_len;
    hp->body = NULL;
    hp->body_len = hp->body_cap = 0;
    assert(out->body[out->body_len] == 0);
    return 0;
}

void wallet_http_response_free(wallet_http_response *r)
{
    if (!r)
        return;
    free(r->body);
    r->body = NULL;
    r->body_len = 0;
}
