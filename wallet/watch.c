/* watch.c — the event stream: a streaming HTTP reader and its lines.
 *
 * GET /v1/events never ends while the node runs, so its body cannot be
 * collected like other answers (http.c). This reader runs http_parser
 * incrementally and cuts the body into lines as bytes arrive; the caller
 * gets each line at once, which is what lets a gateway drop a cached permit
 * within a block of the revocation. Memory stays bounded: one line of at
 * most WALLET_EVENT_LINE_MAX bytes is buffered, a longer line ends the
 * stream with an error rather than being cut (a cut JSON line could parse
 * as something else). An answer other than 200 keeps at most one line of
 * its body, for the reason.
 */
#include <assert.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <http_parser.h>

#include "wallet/wallet.h"

struct wallet_stream {
    http_parser p;
    http_parser_settings s;
    wallet_line_fn fn;
    void *arg;
    char line[WALLET_EVENT_LINE_MAX + 1];
    size_t line_len;
    size_t header_bytes;
    int status;
    int reason_done;
    int done;
    int err;      /* sticky: once set, every feed returns it */
};

/* ------------------------------------------------------------------ events */

static int hex_field(uint8_t *out, size_t len, const json_t *o, const char *key)
{
    const char *s = json_string_value(json_object_get(o, key));
    if (!s || strlen(s) != 2 * len)
        return -1;
    return chain_unhex(out, len, s) ? -1 : 0;
}

/* An optional key field: absent or null is fine, anything else must parse. */
static int opt_hex(int *has, uint8_t *out, size_t len, const json_t *o, const char *key)
{
    const json_t *v = json_object_get(o, key);
    *has = 0;
    if (!v || json_is_null(v))
        return 0;
    *has = 1;
    return hex_field(out, len, o, key);
}

/* An optional code field: absent is fine, else a string of at most
 * CHAIN_CODE_LEN_MAX printable characters (shown, never interpreted). */
static int opt_code(chain_code *out, const json_t *o, const char *key)
{
    const json_t *v = json_object_get(o, key);
    const char *s = json_string_value(v);
    size_t i, n = s ? strlen(s) : 0;
    out->s[0] = 0;
    if (!v)
        return 0;
    if (!s || n == 0 || n > CHAIN_CODE_LEN_MAX)
        return -1;
    for (i = 0; i < n; i++)
        if (s[i] < 0x21 || s[i] > 0x7e)
            return -1;
    memcpy(out->s, s, n + 1);
    return 0;
}

/* The fields only some types carry. */
static const char *event_extras(wallet_event *e, const json_t *j)
{
    const json_t *rm = json_object_get(j, "remove");
    if (opt_hex(&e->has_guardian, e->guardian.b, sizeof e->guardian.b, j, "guardian"))
        return "guardian is not a key";
    if (rm && !json_is_boolean(rm))
        return "remove is not true or false";
    e->remove = json_is_true(rm);
    if (opt_hex(&e->has_gateway, e->gateway.b, sizeof e->gateway.b, j, "gateway"))
        return "gateway is not a key";
    if (opt_code(&e->scope, j, "scope") || opt_code(&e->purpose, j, "purpose"))
        return "scope or purpose is not a code";
    return NULL;
}

static int event_type(char *out, const char *s)
{
    size_t i, n = s ? strlen(s) : 0;
    if (n == 0 || n > WALLET_EVENT_TYPE_MAX)
        return -1;
    for (i = 0; i < n; i++)
        if (!((s[i] >= 'a' && s[i] <= 'z') || (s[i] >= 'A' && s[i] <= 'Z') || s[i] == '_' ||
              s[i] == '-'))
            return -1;
    memcpy(out, s, n + 1);
    return 0;
}

int wallet_event_parse(wallet_event *out, char *err, const char *line, size_t len)
{
    wallet_event e;
    json_error_t jerr;
    json_t *j, *h;
    const char *why = NULL;
    if (len > WALLET_EVENT_LINE_MAX) {
        snprintf(err, WALLET_ERR_LEN, "event line over %d bytes", WALLET_EVENT_LINE_MAX);
        return WALLET_EJSON;
    }
    if (len > 0 && (line[0] == ':' || line[0] == '#'))
        return 1;   /* a heartbeat comment keeping an idle stream open */
    j = json_loadb(line, len, JSON_REJECT_DUPLICATES, &jerr);
    if (!j || !json_is_object(j)) {
        snprintf(err, WALLET_ERR_LEN, "event: not a JSON object");
        json_decref(j);
        return WALLET_EJSON;
    }
    memset(&e, 0, sizeof e);
    h = json_object_get(j, "height");
    if (!json_is_integer(h) || json_integer_value(h) < 1)
        why = "no valid height";
    else if (hex_field(e.tx.b, sizeof e.tx.b, j, "tx"))
        why = "no valid tx hash";
    else if (event_type(e.type, json_string_value(json_object_get(j, "type"))))
        why = "no valid type";
    else if (hex_field(e.patient.b, sizeof e.patient.b, j, "patient"))
        why = "no valid patient key";
    else if (opt_hex(&e.has_grantee, e.grantee.b, sizeof e.grantee.b, j, "grantee"))
        why = "grantee is not a key";
    else if (opt_hex(&e.has_grant_id, e.grant_id.b, sizeof e.grant_id.b, j, "grant_id"))
        why = "grant_id is not a hash";
    else
        why = event_extras(&e, j);
    if (!why)
        e.height = (uint64_t)json_integer_value(h);
    json_decref(j);
    if (why) {
        snprintf(err, WALLET_ERR_LEN, "event: %s", why);
        return WALLET_EJSON;
    }
    *out = e;
    return 0;
}

void wallet_event_format(char *out, size_t cap, const wallet_event *e)
{
    char pat[2 * CHAIN_KEY_LEN + 1], k[2 * CHAIN_KEY_LEN + 1], h[2 * CHAIN_HASH_LEN + 1];
    size_t n;
    assert(cap > 0);
    chain_hex(pat, e->patient.b, sizeof e->patient.b);
    snprintf(out, cap, "height %" PRIu64 " %-6s patient %s", e->height, e->type, pat);
    n = strlen(out);
    if (e->has_grantee && n < cap) {
        chain_hex(k, e->grantee.b, sizeof e->grantee.b);
        n += (size_t)snprintf(out + n, cap - n, " grantee %s", k);
    }
    if (e->has_grant_id && n < cap) {
        chain_hex(h, e->grant_id.b, sizeof e->grant_id.b);
        n += (size_t)snprintf(out + n, cap - n, " grant %s", h);
    }
    if (e->has_guardian && n < cap) {
        chain_hex(k, e->guardian.b, sizeof e->guardian.b);
        n += (size_t)snprintf(out + n, cap - n, " guardian %s%s", k, e->remove ? " removed" : "");
    }
    if (e->has_gateway && n < cap) {
        chain_hex(k, e->gateway.b, sizeof e->gateway.b);
        n += (size_t)snprintf(out + n, cap - n, " gateway %s", k);
    }
    if (e->scope.s[0] && n < cap)
        n += (size_t)snprintf(out + n, cap - n, " scope %s", e->scope.s);
    if (e->purpose.s[0] && n < cap)
        n += (size_t)snprintf(out + n, cap - n, " purpose %s", e->purpose.s);
    if (n < cap) {
        chain_hex(h, e->tx.b, sizeof e->tx.b);
        snprintf(out + n, cap - n, " tx %s", h);
    }
}

/* ------------------------------------------------------------------ stream */

static int on_header(http_parser *p, const char *at, size_t len)
{
    wallet_stream *s = p->data;
    (void)at;
    s->header_bytes += len;
    if (s->header_bytes > WALLET_HTTP_HEADERS_MAX) {
        s->err = WALLET_ETOOBIG;
        return 1;
    }
    return 0;
}

static int on_headers_complete(http_parser *p)
{
    wallet_stream *s = p->data;
    s->status = (int)p->status_code;
    return 0;
}

/* Ends the buffered line of a 200 answer: hands it on unless empty. */
static int end_line(wallet_stream *s)
{
    int rc = 0;
    while (s->line_len > 0 && s->line[s->line_len - 1] == '\r')
        s->line_len--;
    s->line[s->line_len] = 0;
    if (s->line_len > 0)
        rc = s->fn(s->arg, s->line, s->line_len);
    s->line_len = 0;
    return rc;
}

/* The first line of an answer other than 200 is kept as its reason. */
static void keep_reason(wallet_stream *s, const char *at, size_t len)
{
    size_t i;
    for (i = 0; i < len && !s->reason_done; i++) {
        if (at[i] == '\n' || s->line_len == WALLET_EVENT_LINE_MAX)
            s->reason_done = 1;
        else
            s->line[s->line_len++] = at[i];
    }
}

static int on_body(http_parser *p, const char *at, size_t len)
{
    wallet_stream *s = p->data;
    size_t i;
    if (s->status != 200) {
        keep_reason(s, at, len);
        return 0;
    }
    for (i = 0; i < len; i++) {
        if (at[i] == '\n') {
            int rc = end_line(s);
            if (rc) {
                s->err = rc;
                return 1;
            }
            continue;
        }
        if (s->line_len == WALLET_EVENT_LINE_MAX) {
            s->err = WALLET_ETOOBIG;
            return 1;
        }
        s->line[s->line_len++] = at[i];
    }
    assert(s->line_len <= WALLET_EVENT_LINE_MAX);
    return 0;
}

static int on_complete(http_parser *p)
{
    wallet_stream *s = p->data;
    int rc = s->status == 200 ? end_line(s) : 0;   /* a last line without newline */
    if (rc)
        s->err = rc;
    s->done = 1;
    http_parser_pause(p, 1);
    return rc ? 1 : 0;
}

wallet_stream *wallet_stream_create(wallet_line_fn fn, void *arg)
{
    wallet_stream *s = calloc(1, sizeof *s);
    if (!s)
        return NULL;
    http_parser_init(&s->p, HTTP_RESPONSE);
    s->p.data = s;
    http_parser_settings_init(&s->s);
    s->s.on_header_field = on_header;
    s->s.on_header_value = on_header;
    s->s.on_headers_complete = on_headers_complete;
    s->s.on_body = on_body;
    s->s.on_message_complete = on_complete;
    s->fn = fn;
    s->arg = arg;
    return s;
}

void wallet_stream_destroy(wallet_stream *s)
{
    free(s);
}

/* The reason of an answer other than 200: its JSON "error", else its text. */
static int status_error(wallet_stream *s, char *err)
{
    json_t *j;
    const char *why;
    s->line[s->line_len] = 0;
    j = json_loads(s->line, 0, NULL);
    why = json_string_value(json_object_get(j, "error"));
    snprintf(err, WALLET_ERR_LEN, "%.200s (HTTP %d)", why ? why : s->line_len ? s->line : "request failed",
             s->status);
    json_decref(j);
    s->err = WALLET_ESTATUS;
    return s->err;
}

int wallet_stream_feed(wallet_stream *s, char *err, const uint8_t *buf, size_t len)
{
    size_t used;
    enum http_errno e;
    if (s->err)
        return s->err;
    if (s->done)
        return s->status == 200 ? 1 : status_error(s, err);
    used = http_parser_execute(&s->p, &s->s, len ? (const char *)buf : "", len);
    e = HTTP_PARSER_ERRNO(&s->p);
    if (s->err == WALLET_ETOOBIG)
        snprintf(err, WALLET_ERR_LEN, "the node sent a line or headers over the limit");
    if (s->err)
        return s->err;
    if (s->done)
        return s->status == 200 ? 1 : status_error(s, err);
    if (e != HPE_OK || used != len || len == 0) {
        snprintf(err, WALLET_ERR_LEN, "%s", len == 0 ? "the node closed the stream mid-response"
                                                      : "malformed HTTP from the node");
        s->err = e == HPE_HEADER_OVERFLOW ? WALLET_ETOOBIG : WALLET_EHTTP;
        return s->err;
    }
    return 0;
}
