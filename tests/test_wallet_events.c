/* test_wallet_events.c — Check suite for the event stream reader.
 *
 * The event line parser (every field, optional fields, each refusal), the
 * readable format, and the streaming HTTP reader on canned bytes: lines
 * split across chunks and fed byte by byte, CRLF and blank keep-alive lines,
 * a last line without newline, a line over the bound, an error answer with
 * its reason, a truncated stream, a callback that stops the stream. Then
 * wallet_client_stream against a forked one-shot server. No sleeps: the
 * server writes everything and closes.
 */
#include <arpa/inet.h>
#include <check.h>
#include <netinet/in.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include "wallet/wallet.h"
#include "wallet_fixture.h"

#define K1 "1111111111111111111111111111111111111111111111111111111111111111"
#define K2 "2222222222222222222222222222222222222222222222222222222222222222"
#define H3 "3333333333333333333333333333333333333333333333333333333333333333"
#define H4 "4444444444444444444444444444444444444444444444444444444444444444"

static const char GRANT_LINE[] = "{\"height\": 7, \"tx\": \"" H3 "\", \"type\": \"grant\", "
                                 "\"patient\": \"" K1 "\", \"grantee\": \"" K2 "\", "
                                 "\"grant_id\": \"" H4 "\"}";

/* ------------------------------------------------------------ lines */

START_TEST(event_parses_all_fields)
{
    wallet_event e;
    char err[WALLET_ERR_LEN], out[WALLET_EVENT_LINE_MAX];
    ck_assert_int_eq(wallet_event_parse(&e, err, GRANT_LINE, strlen(GRANT_LINE)), 0);
    ck_assert_uint_eq(e.height, 7);
    ck_assert_str_eq(e.type, "grant");
    ck_assert_uint_eq(e.tx.b[0], 0x33);
    ck_assert_uint_eq(e.patient.b[31], 0x11);
    ck_assert_int_eq(e.has_grantee, 1);
    ck_assert_uint_eq(e.grantee.b[0], 0x22);
    ck_assert_int_eq(e.has_grant_id, 1);
    ck_assert_uint_eq(e.grant_id.b[0], 0x44);
    wallet_event_format(out, sizeof out, &e);
    ck_assert_str_eq(out, "height 7 grant  patient " K1 " grantee " K2 " grant " H4 " tx " H3);
}
END_TEST

START_TEST(event_optional_fields)
{
    static const char line[] = "{\"height\": 9, \"tx\": \"" H3 "\", \"type\": \"set_guardian\", "
                               "\"patient\": \"" K1 "\", \"grantee\": null, \"extra\": [1]}";
    wallet_event e;
    char err[WALLET_ERR_LEN], out[WALLET_EVENT_LINE_MAX];
    ck_assert_int_eq(wallet_event_parse(&e, err, line, strlen(line)), 0);
    ck_assert_int_eq(e.has_grantee, 0);
    ck_assert_int_eq(e.has_grant_id, 0);
    wallet_event_format(out, sizeof out, &e);
    ck_assert_str_eq(out, "height 9 set_guardian patient " K1 " tx " H3);
    /* Heartbeat comments are neither events nor errors. */
    memset(&e, 0x66, sizeof e);
    ck_assert_int_eq(wallet_event_parse(&e, err, ": keep-alive", 12), 1);
    ck_assert_int_eq(wallet_event_parse(&e, err, "#", 1), 1);
    ck_assert_uint_eq(e.height, 0x6666666666666666ull);
}
END_TEST

START_TEST(event_guardian_and_access_fields)
{
    static const char g[] = "{\"height\": 4, \"tx\": \"" H3 "\", \"type\": \"set_guardian\", "
                            "\"patient\": \"" K1 "\", \"guardian\": \"" K2 "\", \"remove\": true}";
    static const char a[] = "{\"height\": 5, \"tx\": \"" H3 "\", \"type\": \"access_record\", "
                            "\"patient\": \"" K1 "\", \"grantee\": \"" K2 "\", \"grant_id\": \"" H4 "\", "
                            "\"gateway\": \"" K2 "\", \"scope\": \"Observation\", \"purpose\": \"TREAT\"}";
    wallet_event e;
    char err[WALLET_ERR_LEN], out[WALLET_EVENT_LINE_MAX], small[40];
    ck_assert_int_eq(wallet_event_parse(&e, err, g, strlen(g)), 0);
    ck_assert_int_eq(e.has_guardian, 1);
    ck_assert_int_eq(e.remove, 1);
    wallet_event_format(out, sizeof out, &e);
    ck_assert_str_eq(out, "height 4 set_guardian patient " K1 " guardian " K2 " removed tx " H3);
    ck_assert_int_eq(wallet_event_parse(&e, err, a, strlen(a)), 0);
    ck_assert_int_eq(e.has_gateway, 1);
    ck_assert_str_eq(e.scope.s, "Observation");
    wallet_event_format(out, sizeof out, &e);
    ck_assert_str_eq(out, "height 5 access_record patient " K1 " grantee " K2 " grant " H4 " gateway " K2
                          " scope Observation purpose TREAT tx " H3);
    /* A short buffer is cut, never overrun. */
    wallet_event_format(small, sizeof small, &e);
    ck_assert_uint_eq(strlen(small), sizeof small - 1);
}
END_TEST

START_TEST(event_refusals)
{
    static const char *const bad[][2] = {
        {"not json", "not a JSON object"},
        {"[1]", "not a JSON object"},
        {"{\"tx\": \"" H3 "\", \"type\": \"grant\", \"patient\": \"" K1 "\"}", "no valid height"},
        {"{\"height\": 0, \"tx\": \"" H3 "\", \"type\": \"grant\", \"patient\": \"" K1 "\"}", "no valid height"},
        {"{\"height\": \"1\", \"tx\": \"" H3 "\", \"type\": \"grant\", \"patient\": \"" K1 "\"}", "no valid height"},
        {"{\"height\": 1, \"tx\": \"33\", \"type\": \"grant\", \"patient\": \"" K1 "\"}", "no valid tx"},
        {"{\"height\": 1, \"tx\": \"" H3 "\", \"patient\": \"" K1 "\"}", "no valid type"},
        {"{\"height\": 1, \"tx\": \"" H3 "\", \"type\": \"a b\", \"patient\": \"" K1 "\"}", "no valid type"},
        {"{\"height\": 1, \"tx\": \"" H3 "\", \"type\": \"abcdefghijabcdefghijabcdefghijabc\", "
         "\"patient\": \"" K1 "\"}", "no valid type"},
        {"{\"height\": 1, \"tx\": \"" H3 "\", \"type\": \"grant\"}", "no valid patient"},
        {"{\"height\": 1, \"tx\": \"" H3 "\", \"type\": \"grant\", \"patient\": \"" K1 "\", "
         "\"grantee\": 5}", "grantee is not a key"},
        {"{\"height\": 1, \"tx\": \"" H3 "\", \"type\": \"grant\", \"patient\": \"" K1 "\", "
         "\"grant_id\": \"ZZ" H3 "\"}", "grant_id is not a hash"},
        {"{\"height\": 1, \"height\": 2, \"tx\": \"" H3 "\", \"type\": \"grant\", \"patient\": \"" K1 "\"}",
         "not a JSON object"},
        {"{\"height\": 1, \"tx\": \"" H3 "\", \"type\": \"set_guardian\", \"patient\": \"" K1 "\", "
         "\"guardian\": \"x\"}", "guardian is not a key"},
        {"{\"height\": 1, \"tx\": \"" H3 "\", \"type\": \"set_guardian\", \"patient\": \"" K1 "\", "
         "\"remove\": 1}", "remove is not true or false"},
        {"{\"height\": 1, \"tx\": \"" H3 "\", \"type\": \"access_record\", \"patient\": \"" K1 "\", "
         "\"gateway\": []}", "gateway is not a key"},
        {"{\"height\": 1, \"tx\": \"" H3 "\", \"type\": \"access_record\", \"patient\": \"" K1 "\", "
         "\"scope\": \"a b\"}", "scope or purpose is not a code"},
        {"{\"height\": 1, \"tx\": \"" H3 "\", \"type\": \"access_record\", \"patient\": \"" K1 "\", "
         "\"purpose\": 3}", "scope or purpose is not a code"},
    };
    size_t i;
    for (i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        wallet_event e;
        char err[WALLET_ERR_LEN] = "";
        memset(&e, 0x77, sizeof e);
        ck_assert_msg(wallet_event_parse(&e, err, bad[i][0], strlen(bad[i][0])) == WALLET_EJSON, "%zu", i);
        ck_assert_msg(strstr(err, bad[i][1]) != NULL, "%zu: %s", i, err);
        ck_assert_uint_eq(e.height, 0x7777777777777777ull);   /* untouched */
    }
    {
        char *big = malloc(WALLET_EVENT_LINE_MAX + 2);
        wallet_event e;
        char err[WALLET_ERR_LEN];
        ck_assert_ptr_nonnull(big);
        memset(big, ' ', WALLET_EVENT_LINE_MAX + 1);
        ck_assert_int_eq(wallet_event_parse(&e, err, big, WALLET_EVENT_LINE_MAX + 1), WALLET_EJSON);
        ck_assert_ptr_nonnull(strstr(err, "over"));
        free(big);
    }
}
END_TEST

/* ------------------------------------------------------------ stream */

typedef struct {
    int n;
    char lines[8][WALLET_EVENT_LINE_MAX + 1];
    int stop_after;   /* return 42 after this many lines (0: never) */
} collected;

static int collect(void *arg, const char *line, size_t len)
{
    collected *c = arg;
    ck_assert_uint_eq(strlen(line), len);   /* NUL-terminated, no embedded newline */
    ck_assert_int_lt(c->n, 8);
    memcpy(c->lines[c->n++], line, len + 1);
    return c->stop_after && c->n == c->stop_after ? 42 : 0;
}

/* Feeds text in pieces of `step` bytes (0: all at once), then EOF if eof. */
static int feed(collected *c, char *err, const char *text, size_t step, int eof)
{
    wallet_stream *s = wallet_stream_create(collect, c);
    size_t len = strlen(text), off = 0;
    int rc = 0;
    ck_assert_ptr_nonnull(s);
    while (rc == 0 && off < len) {
        size_t n = step && step < len - off ? step : len - off;
        rc = wallet_stream_feed(s, err, (const uint8_t *)text + off, n);
        off += n;
    }
    if (rc == 0 && eof)
        rc = wallet_stream_feed(s, err, NULL, 0);
    ck_assert_int_eq(wallet_stream_feed(s, err, (const uint8_t *)"x", 1), rc);   /* sticky */
    wallet_stream_destroy(s);
    return rc;
}

static const char CHUNKED[] =
    "HTTP/1.1 200 OK\r\nContent-Type: application/x-ndjson\r\nTransfer-Encoding: chunked\r\n\r\n"
    "6\r\n{\"a\":1\r\n"
    "6\r\n}\n{\"b\"\r\n"
    "6\r\n:2}\r\n\n\r\n"     /* a CRLF line end, then a blank keep-alive line */
    "4\r\nlast\r\n"   /* a last line without newline */
    "0\r\n\r\n";

START_TEST(stream_lines_across_chunks)
{
    size_t step;
    for (step = 0; step <= 7; step++) {
        collected c;
        char err[WALLET_ERR_LEN];
        memset(&c, 0, sizeof c);
        ck_assert_int_eq(feed(&c, err, CHUNKED, step, 0), 1);
        ck_assert_int_eq(c.n, 3);
        ck_assert_str_eq(c.lines[0], "{\"a\":1}");
        ck_assert_str_eq(c.lines[1], "{\"b\":2}");
        ck_assert_str_eq(c.lines[2], "last");
    }
}
END_TEST

START_TEST(stream_until_close)
{
    collected c;
    char err[WALLET_ERR_LEN];
    memset(&c, 0, sizeof c);
    ck_assert_int_eq(feed(&c, err, "HTTP/1.1 200 OK\r\n\r\none\ntwo\n", 3, 1), 1);
    ck_assert_int_eq(c.n, 2);
    ck_assert_str_eq(c.lines[1], "two");
}
END_TEST

START_TEST(stream_line_over_the_bound)
{
    size_t head_len = strlen("HTTP/1.1 200 OK\r\n\r\n");
    char *text = malloc(head_len + WALLET_EVENT_LINE_MAX + 8);
    collected c;
    char err[WALLET_ERR_LEN] = "";
    ck_assert_ptr_nonnull(text);
    memcpy(text, "HTTP/1.1 200 OK\r\n\r\n", head_len);
    /* Exactly at the bound passes; one byte more ends the stream. */
    memset(text + head_len, 'a', WALLET_EVENT_LINE_MAX);
    strcpy(text + head_len + WALLET_EVENT_LINE_MAX, "\n");
    memset(&c, 0, sizeof c);
    ck_assert_int_eq(feed(&c, err, text, 1000, 1), 1);
    ck_assert_int_eq(c.n, 1);
    ck_assert_uint_eq(strlen(c.lines[0]), WALLET_EVENT_LINE_MAX);
    memset(text + head_len, 'a', WALLET_EVENT_LINE_MAX + 1);
    strcpy(text + head_len + WALLET_EVENT_LINE_MAX + 1, "\n");
    memset(&c, 0, sizeof c);
    ck_assert_int_eq(feed(&c, err, text, 1000, 1), WALLET_ETOOBIG);
    ck_assert_int_eq(c.n, 0);
    ck_assert_ptr_nonnull(strstr(err, "over the limit"));
    free(text);
}
END_TEST

START_TEST(stream_error_answer_gives_reason)
{
    collected c;
    char err[WALLET_ERR_LEN] = "";
    memset(&c, 0, sizeof c);
    ck_assert_int_eq(feed(&c, err, "HTTP/1.1 401 Unauthorized\r\nContent-Length: 43\r\n\r\n"
                                   "{\"error\": \"unknown institution key\"}\nsecond",
                          0, 0), WALLET_ESTATUS);
    ck_assert_int_eq(c.n, 0);
    ck_assert_str_eq(err, "unknown institution key (HTTP 401)");
    memset(&c, 0, sizeof c);
    ck_assert_int_eq(feed(&c, err, "HTTP/1.1 503 Busy\r\nContent-Length: 9\r\n\r\ntoo many!", 2, 0),
                     WALLET_ESTATUS);
    ck_assert_str_eq(err, "too many! (HTTP 503)");
    memset(&c, 0, sizeof c);
    ck_assert_int_eq(feed(&c, err, "HTTP/1.1 404 Not Found\r\nContent-Length: 0\r\n\r\n", 0, 0),
                     WALLET_ESTATUS);
    ck_assert_str_eq(err, "request failed (HTTP 404)");
}
END_TEST

START_TEST(stream_truncated_and_garbage)
{
    collected c;
    char err[WALLET_ERR_LEN] = "";
    memset(&c, 0, sizeof c);
    ck_assert_int_eq(feed(&c, err, "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nab\ncd\r\n7\r\nxy", 0, 1),
                     WALLET_EHTTP);
    ck_assert_int_eq(c.n, 1);   /* what arrived whole was delivered */
    ck_assert_ptr_nonnull(strstr(err, "closed the stream"));
    memset(&c, 0, sizeof c);
    ck_assert_int_eq(feed(&c, err, "SMTP ready\r\n", 0, 0), WALLET_EHTTP);
    ck_assert_ptr_nonnull(strstr(err, "malformed"));
    memset(&c, 0, sizeof c);
    ck_assert_int_eq(feed(&c, err, "", 0, 1), WALLET_EHTTP);
}
END_TEST

START_TEST(stream_callback_stops_it)
{
    collected c;
    char err[WALLET_ERR_LEN];
    memset(&c, 0, sizeof c);
    c.stop_after = 1;
    ck_assert_int_eq(feed(&c, err, CHUNKED, 0, 0), 42);
    ck_assert_int_eq(c.n, 1);
}
END_TEST

/* ------------------------------------------------------------ client */

/* If the request carries X-Consent-* headers, they must verify for its
 * request line's method and target. */
static int signature_ok(const char *req, const char *line)
{
    char method[16], target[256], khex[65], shex[129];
    const char *kp = strstr(req, "X-Consent-Key: "), *tp = strstr(req, "X-Consent-Time: ");
    const char *sp = strstr(req, "X-Consent-Signature: ");
    unsigned long long t;
    chain_pubkey pk;
    chain_sig sig;
    if (!kp && !tp && !sp)
        return 1;
    if (!kp || !tp || !sp || sscanf(line, "%15s %255s", method, target) != 2 ||
        sscanf(kp, "X-Consent-Key: %64s", khex) != 1 || sscanf(tp, "X-Consent-Time: %llu", &t) != 1 ||
        sscanf(sp, "X-Consent-Signature: %128s", shex) != 1 ||
        chain_unhex(pk.b, sizeof pk.b, khex) || chain_unhex(sig.b, sizeof sig.b, shex))
        return 0;
    return chain_api_verify(&pk, &sig, method, target, t, t) == 0;
}

/* The one-shot server's verdict: the request line is `want_line` and the
 * request carries a valid signature. */
static int line_and_signature_ok(const char *head, const void *want_line)
{
    if (strncmp(head, want_line, strlen(want_line)) != 0)
        return 3;
    return signature_ok(head, want_line) ? 0 : 4;
}

static int count_events(void *arg, const char *line, size_t len)
{
    wallet_event e;
    char err[WALLET_ERR_LEN];
    int rc = wallet_event_parse(&e, err, line, len);
    if (rc == 1)
        return 0;
    if (rc)
        return rc;
    (*(int *)arg)++;
    return 0;
}

START_TEST(client_streams_from_a_server)
{
    char resp[2048], url[64], err[WALLET_ERR_LEN] = "";
    wallet_client c;
    pid_t pid;
    int st = 0, n = 0, port;
    snprintf(resp, sizeof resp, "HTTP/1.1 200 OK\r\nContent-Type: application/x-ndjson\r\n"
                                "Connection: close\r\n\r\n%s\n: heartbeat\n%s\n", GRANT_LINE, GRANT_LINE);
    port = wfx_serve_once(&pid, resp, line_and_signature_ok, "GET /v1/events?from=3 HTTP/1.1\r\n");
    snprintf(url, sizeof url, "http://127.0.0.1:%d", port);
    ck_assert_int_eq(wallet_client_init(&c, url), 0);
    ck_assert_msg(wallet_client_stream(&c, err, "/v1/events?from=3", count_events, &n) == 0, "%s", err);
    ck_assert_int_eq(n, 2);
    ck_assert_int_eq(waitpid(pid, &st, 0), pid);
    ck_assert(WIFEXITED(st) && WEXITSTATUS(st) == 0);

    /* A bad line stops the stream with the parser's error. */
    snprintf(resp, sizeof resp, "HTTP/1.1 200 OK\r\n\r\n%s\n{\"height\": 0}\n%s\n", GRANT_LINE,
             GRANT_LINE);
    port = wfx_serve_once(&pid, resp, line_and_signature_ok, "GET /v1/events HTTP/1.1\r\n");
    snprintf(url, sizeof url, "http://127.0.0.1:%d", port);
    ck_assert_int_eq(wallet_client_init(&c, url), 0);
    n = 0;
    ck_assert_int_eq(wallet_client_stream(&c, err, "/v1/events", count_events, &n), WALLET_EJSON);
    ck_assert_int_eq(n, 1);
    waitpid(pid, &st, 0);

    /* Nothing listens any more. */
    ck_assert_int_eq(wallet_client_stream(&c, err, "/v1/events", count_events, &n), WALLET_ENET);
}
END_TEST

/* ------------------------------------------------------------ signing */

START_TEST(auth_headers_verify)
{
    uint8_t sec[CHAIN_SECKEY_LEN];
    chain_key *k;
    chain_pubkey pk, got_pk;
    chain_sig sig;
    char out[512], khex[65], shex[129];
    unsigned long long t = 0;
    int n;
    memset(sec, 9, sizeof sec);
    k = chain_key_create(sec);
    ck_assert_ptr_nonnull(k);
    chain_key_pubkey(k, &pk);
    n = wallet_auth_headers(out, sizeof out, k, "GET", "/v1/patients/ab/grants", 1795000000);
    ck_assert_int_gt(n, 0);
    ck_assert_uint_eq(strlen(out), (size_t)n);
    ck_assert_int_eq(sscanf(out, "X-Consent-Key: %64s\r\nX-Consent-Time: %llu\r\nX-Consent-Signature: %128s",
                            khex, &t, shex), 3);
    ck_assert_uint_eq(t, 1795000000);
    ck_assert_int_eq(chain_unhex(got_pk.b, sizeof got_pk.b, khex), 0);
    ck_assert_mem_eq(got_pk.b, pk.b, sizeof pk.b);
    ck_assert_int_eq(chain_unhex(sig.b, sizeof sig.b, shex), 0);
    ck_assert_int_eq(chain_api_verify(&pk, &sig, "GET", "/v1/patients/ab/grants", t, t + 10), 0);
    /* Bound to its method and target. */
    ck_assert_int_eq(chain_api_verify(&pk, &sig, "GET", "/v1/patients/cd/grants", t, t), CHAIN_ESIG);
    ck_assert_int_eq(chain_api_verify(&pk, &sig, "POST", "/v1/patients/ab/grants", t, t), CHAIN_ESIG);
    /* Refusals: a short buffer, a method or target the node would refuse. */
    ck_assert_int_eq(wallet_auth_headers(out, 100, k, "GET", "/v1/x", 1), CHAIN_EBOUNDS);
    ck_assert_int_eq(wallet_auth_headers(out, sizeof out, k, "get", "/v1/x", 1), CHAIN_EINVAL);
    ck_assert_int_eq(wallet_auth_headers(out, sizeof out, k, "GET", "v1/x", 1), CHAIN_EINVAL);
    ck_assert_int_eq(wallet_auth_headers(out, sizeof out, k, "GET", "/v1/a b", 1), CHAIN_EINVAL);
    chain_key_destroy(k);
}
END_TEST

/* The client puts verifying headers on what it sends, prefix included. */
START_TEST(client_signs_requests)
{
    uint8_t sec[CHAIN_SECKEY_LEN];
    chain_key *k;
    wallet_client c;
    wallet_http_response r;
    char url[64], err[WALLET_ERR_LEN];
    pid_t pid;
    int st = 0, port;
    memset(sec, 9, sizeof sec);
    k = chain_key_create(sec);
    ck_assert_ptr_nonnull(k);
    port = wfx_serve_once(&pid, "HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\n{}", line_and_signature_ok, "GET /api/v1/status HTTP/1.1\r\n");
    snprintf(url, sizeof url, "http://127.0.0.1:%d/api", port);
    ck_assert_int_eq(wallet_client_init(&c, url), 0);
    c.sign_key = k;
    ck_assert_int_eq(wallet_client_request(&c, &r, err, "GET", "/v1/status", NULL, NULL, 0), 0);
    wallet_http_response_free(&r);
    ck_assert_int_eq(waitpid(pid, &st, 0), pid);
    ck_assert_msg(WIFEXITED(st) && WEXITSTATUS(st) == 0, "server saw exit %d", WEXITSTATUS(st));
    /* A target the signature cannot cover is refused before anything is sent. */
    ck_assert_int_eq(wallet_client_request(&c, &r, err, "GET", "/v1/a b", NULL, NULL, 0), CHAIN_EINVAL);
    ck_assert_ptr_nonnull(strstr(err, "cannot sign"));
    chain_key_destroy(k);
}
END_TEST

static Suite *events_suite(void)
{
    Suite *s = suite_create("wallet_events");
    TCase *lines = tcase_create("lines");
    TCase *stream = tcase_create("stream");
    tcase_add_test(lines, event_parses_all_fields);
    tcase_add_test(lines, event_optional_fields);
    tcase_add_test(lines, event_guardian_and_access_fields);
    tcase_add_test(lines, event_refusals);
    tcase_add_test(stream, stream_lines_across_chunks);
    tcase_add_test(stream, stream_until_close);
    tcase_add_test(stream, stream_line_over_the_bound);
    tcase_add_test(stream, stream_error_answer_gives_reason);
    tcase_add_test(stream, stream_truncated_and_garbage);
    tcase_add_test(stream, stream_callback_stops_it);
    tcase_add_test(stream, client_streams_from_a_server);
    TCase *auth = tcase_create("auth");
    tcase_add_test(auth, auth_headers_verify);
    tcase_add_test(auth, client_signs_requests);
    suite_add_tcase(s, auth);
    suite_add_tcase(s, lines);
    suite_add_tcase(s, stream);
    return s;
}

int main(void)
{
    SRunner *sr = srunner_create(events_suite());
    int failed;
    srunner_run_all(sr, CK_NORMAL);
    failed = srunner_ntests_failed(sr);
    srunner_free(sr);
    return failed ? EXIT_FAILURE : EXIT_SUCCESS;
}
