/* test_wallet_conn.c — the keep-alive, pipelining HTTP connection (wallet/conn.c).
 *
 * A scripted server thread on 127.0.0.1 accepts one connection per step,
 * reads a given number of request heads, answers with fixed bytes (split
 * wherever the test likes) and optionally closes. The tests check that
 * pipelined answers are split at message boundaries, that a closed
 * keep-alive connection is reopened once, that requests are signed with the
 * client's key, and every refusal: no server, malformed or oversized
 * answers, misuse (nothing in flight, target too long).
 */
#include <arpa/inet.h>
#include <check.h>
#include <netinet/in.h>
#include <pthread.h>
#include <sched.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "wallet/wallet.h"

typedef struct {
    int lfd;
    int port;
    /* One step per accepted connection. */
    int steps;
    int requests[4];          /* request heads to read before answering */
    const char *answer[4];    /* bytes to write */
    size_t answer_len[4];     /* 0: strlen(answer) */
    int close_after[4];
    atomic_int closed;        /* steps whose connection the server closed */
    char seen[8192];          /* what the last step received */
    size_t seen_len;
    pthread_t th;
} server;

static int count_heads(const char *buf, size_t len) {
    int n = 0;
    for (size_t i = 0; i + 3 < len; i++)
        if (memcmp(buf + i, "\r\n\r\n", 4) == 0) n++;
    return n;
}

static void *serve(void *arg) {
    server *s = arg;
    for (int st = 0; st < s->steps; st++) {
        int fd = accept(s->lfd, NULL, NULL);
        if (fd < 0) return NULL;
        s->seen_len = 0;
        while (count_heads(s->seen, s->seen_len) < s->requests[st] && s->seen_len < sizeof s->seen - 1) {
            ssize_t n = read(fd, s->seen + s->seen_len, sizeof s->seen - 1 - s->seen_len);
            if (n <= 0) break;
            s->seen_len += (size_t)n;
        }
        s->seen[s->seen_len] = 0;
        size_t len = s->answer_len[st] ? s->answer_len[st] : strlen(s->answer[st]);
        /* Written in small pieces so the client sees messages split anywhere. */
        for (size_t off = 0; off < len;) {
            size_t piece = len - off < 7 ? len - off : 7;
            if (send(fd, s->answer[st] + off, piece, MSG_NOSIGNAL) < 0) break;
            off += piece;
        }
        if (s->close_after[st]) {
            close(fd);
            atomic_fetch_add(&s->closed, 1);
        } else {
            /* Keep it open until the client hangs up. */
            char sink[256];
            while (read(fd, sink, sizeof sink) > 0) {
            }
            close(fd);
        }
    }
    return NULL;
}

static void server_start(server *s) {
    struct sockaddr_in a;
    socklen_t alen = sizeof a;
    memset(&a, 0, sizeof a);
    a.sin_family = AF_INET;
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    s->lfd = socket(AF_INET, SOCK_STREAM, 0);
    ck_assert_int_ge(s->lfd, 0);
    ck_assert_int_eq(bind(s->lfd, (struct sockaddr *)&a, sizeof a), 0);
    ck_assert_int_eq(listen(s->lfd, 4), 0);
    ck_assert_int_eq(getsockname(s->lfd, (struct sockaddr *)&a, &alen), 0);
    s->port = ntohs(a.sin_port);
    ck_assert_int_eq(pthread_create(&s->th, NULL, serve, s), 0);
}

static void server_join(server *s) {
    pthread_join(s->th, NULL);
    close(s->lfd);
}

static wallet_client client_for(const server *s) {
    wallet_client c;
    char url[64];
    snprintf(url, sizeof url, "http://127.0.0.1:%d", s->port);
    ck_assert_int_eq(wallet_client_init(&c, url), 0);
    c.timeout_ms = 5000;
    return c;
}

#define OK_A "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: 7\r\n\r\n{\"a\":1}"
#define OK_B "HTTP/1.1 404 Not Found\r\nContent-Length: 3\r\n\r\nnop"
#define CHUNKED "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabc\r\n2\r\nde\r\n0\r\n\r\n"

START_TEST(pipelined_answers_split_at_boundaries) {
    static server s;
    memset(&s, 0, sizeof s);
    s.steps = 1;
    s.requests[0] = 3;
    s.answer[0] = OK_A OK_B CHUNKED;
    server_start(&s);
    wallet_client c = client_for(&s);
    wallet_conn *k = NULL;
    char err[WALLET_ERR_LEN];
    ck_assert_int_eq(wallet_conn_open(&k, err, &c), 0);
    ck_assert_int_eq(wallet_conn_send(k, err, "GET", "/a", NULL, NULL, 0), 0);
    ck_assert_int_eq(wallet_conn_send(k, err, "GET", "/b", NULL, NULL, 0), 0);
    ck_assert_int_eq(wallet_conn_send(k, err, "POST", "/c", "text/plain", (const uint8_t *)"xy", 2), 0);
    ck_assert_uint_eq(wallet_conn_in_flight(k), 3);
    wallet_http_response r;
    ck_assert_int_eq(wallet_conn_recv(k, &r, err), 0);
    ck_assert_int_eq(r.status, 200);
    ck_assert_str_eq(r.body, "{\"a\":1}");
    ck_assert_str_eq(r.content_type, "application/json");
    wallet_http_response_free(&r);
    ck_assert_int_eq(wallet_conn_recv(k, &r, err), 0);
    ck_assert_int_eq(r.status, 404);
    ck_assert_str_eq(r.body, "nop");
    wallet_http_response_free(&r);
    ck_assert_int_eq(wallet_conn_recv(k, &r, err), 0);
    ck_assert_int_eq(r.status, 200);
    ck_assert_str_eq(r.body, "abcde");
    ck_assert_uint_eq(r.body_len, 5);
    wallet_http_response_free(&r);
    ck_assert_uint_eq(wallet_conn_in_flight(k), 0);
    /* Nothing in flight: a misuse, refused. */
    ck_assert_int_eq(wallet_conn_recv(k, &r, err), CHAIN_EINVAL);
    wallet_conn_close(k);
    server_join(&s);
    ck_assert_ptr_nonnull(strstr(s.seen, "POST /c HTTP/1.1\r\n"));
    ck_assert_ptr_nonnull(strstr(s.seen, "Content-Length: 2\r\n"));
    ck_assert_ptr_null(strstr(s.seen, "Connection: close"));
}
END_TEST

START_TEST(closed_keepalive_is_reopened_once) {
    static server s;
    memset(&s, 0, sizeof s);
    s.steps = 2;
    s.requests[0] = 1;
    s.answer[0] = OK_A;
    s.close_after[0] = 1;   /* the server drops the idle connection */
    s.requests[1] = 1;
    s.answer[1] = OK_B;
    s.close_after[1] = 1;
    server_start(&s);
    wallet_client c = client_for(&s);
    wallet_conn *k = NULL;
    char err[WALLET_ERR_LEN];
    wallet_http_response r;
    ck_assert_int_eq(wallet_conn_open(&k, err, &c), 0);
    ck_assert_int_eq(wallet_conn_request(k, &r, err, "GET", "/a", NULL, NULL, 0), 0);
    ck_assert_int_eq(r.status, 200);
    wallet_http_response_free(&r);
    /* Wait (with a deadline) until the server has really closed the idle
     * connection, so the next request meets a dead keep-alive socket. */
    for (int i = 0; i < 5000 && atomic_load(&s.closed) < 1; i++) sched_yield();
    ck_assert_int_eq(atomic_load(&s.closed), 1);
    ck_assert_int_eq(wallet_conn_request(k, &r, err, "GET", "/b", NULL, NULL, 0), 0);
    ck_assert_int_eq(r.status, 404);
    wallet_http_response_free(&r);
    wallet_conn_close(k);
    server_join(&s);
}
END_TEST

START_TEST(connection_close_answer_drops_connection) {
    static server s;
    memset(&s, 0, sizeof s);
    s.steps = 1;
    s.requests[0] = 1;
    s.answer[0] = "HTTP/1.1 200 OK\r\nConnection: close\r\nContent-Length: 2\r\n\r\nok";
    s.close_after[0] = 1;
    server_start(&s);
    wallet_client c = client_for(&s);
    wallet_conn *k = NULL;
    char err[WALLET_ERR_LEN];
    wallet_http_response r;
    ck_assert_int_eq(wallet_conn_open(&k, err, &c), 0);
    ck_assert_int_eq(wallet_conn_request(k, &r, err, "GET", "/a", NULL, NULL, 0), 0);
    ck_assert_str_eq(r.body, "ok");
    wallet_http_response_free(&r);
    server_join(&s);
    /* The server is gone: a new request cannot connect. */
    ck_assert_int_eq(wallet_conn_request(k, &r, err, "GET", "/a", NULL, NULL, 0), WALLET_ENET);
    wallet_conn_close(k);
}
END_TEST

START_TEST(malformed_answer_is_ehttp) {
    static server s;
    memset(&s, 0, sizeof s);
    s.steps = 1;
    s.requests[0] = 1;
    s.answer[0] = "HTTP/1.1 2x0 What\r\n\r\n";
    s.close_after[0] = 1;
    server_start(&s);
    wallet_client c = client_for(&s);
    wallet_conn *k = NULL;
    char err[WALLET_ERR_LEN];
    wallet_http_response r;
    ck_assert_int_eq(wallet_conn_open(&k, err, &c), 0);
    ck_assert_int_eq(wallet_conn_send(k, err, "GET", "/a", NULL, NULL, 0), 0);
    ck_assert_int_eq(wallet_conn_recv(k, &r, err), WALLET_EHTTP);
    ck_assert_uint_eq(wallet_conn_in_flight(k), 0);   /* dropped with the connection */
    wallet_conn_close(k);
    server_join(&s);
}
END_TEST

START_TEST(truncated_answer_is_ehttp) {
    static server s;
    memset(&s, 0, sizeof s);
    s.steps = 1;
    s.requests[0] = 1;
    s.answer[0] = "HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\nabc";
    s.close_after[0] = 1;
    server_start(&s);
    wallet_client c = client_for(&s);
    wallet_conn *k = NULL;
    char err[WALLET_ERR_LEN];
    wallet_http_response r;
    ck_assert_int_eq(wallet_conn_open(&k, err, &c), 0);
    ck_assert_int_eq(wallet_conn_send(k, err, "GET", "/a", NULL, NULL, 0), 0);
    ck_assert_int_eq(wallet_conn_recv(k, &r, err), WALLET_EHTTP);
    wallet_conn_close(k);
    server_join(&s);
}
END_TEST

START_TEST(oversized_headers_are_etoobig) {
    static server s;
    static char big[WALLET_HTTP_HEADERS_MAX + 256];
    memset(&s, 0, sizeof s);
    int n = snprintf(big, sizeof big, "HTTP/1.1 200 OK\r\nX-Pad: ");
    memset(big + n, 'a', WALLET_HTTP_HEADERS_MAX + 8);
    memcpy(big + n + WALLET_HTTP_HEADERS_MAX + 8, "\r\n\r\n", 4);
    s.steps = 1;
    s.requests[0] = 1;
    s.answer[0] = big;
    s.answer_len[0] = (size_t)n + WALLET_HTTP_HEADERS_MAX + 12;
    s.close_after[0] = 1;
    server_start(&s);
    wallet_client c = client_for(&s);
    wallet_conn *k = NULL;
    char err[WALLET_ERR_LEN];
    wallet_http_response r;
    ck_assert_int_eq(wallet_conn_open(&k, err, &c), 0);
    ck_assert_int_eq(wallet_conn_send(k, err, "GET", "/a", NULL, NULL, 0), 0);
    ck_assert_int_eq(wallet_conn_recv(k, &r, err), WALLET_ETOOBIG);
    wallet_conn_close(k);
    server_join(&s);
}
END_TEST

START_TEST(requests_signed_with_sign_key_or_given_headers) {
    static server s;
    memset(&s, 0, sizeof s);
    s.steps = 1;
    s.requests[0] = 2;
    s.answer[0] = OK_A OK_A;
    server_start(&s);
    wallet_client c = client_for(&s);
    uint8_t sec[32];
    memset(sec, 7, sizeof sec);
    chain_key *key = chain_key_create(sec);
    ck_assert_ptr_nonnull(key);
    c.sign_key = key;
    wallet_conn *k = NULL;
    char err[WALLET_ERR_LEN];
    wallet_http_response r;
    ck_assert_int_eq(wallet_conn_open(&k, err, &c), 0);
    ck_assert_int_eq(wallet_conn_send(k, err, "GET", "/v1/grants/check?x=1", NULL, NULL, 0), 0);
    ck_assert_int_eq(wallet_conn_send_h(k, err, "GET", "/b", "X-Test: yes\r\n", NULL, NULL, 0), 0);
    for (int i = 0; i < 2; i++) {
        ck_assert_int_eq(wallet_conn_recv(k, &r, err), 0);
        wallet_http_response_free(&r);
    }
    wallet_conn_close(k);
    server_join(&s);
    chain_pubkey pk;
    char hex[2 * CHAIN_KEY_LEN + 1], want[128];
    chain_key_pubkey(key, &pk);
    chain_hex(hex, pk.b, CHAIN_KEY_LEN);
    snprintf(want, sizeof want, "X-Consent-Key: %s\r\n", hex);
    /* Signed once (the first request); the second carries only its own header. */
    const char *first = strstr(s.seen, want);
    ck_assert_ptr_nonnull(first);
    ck_assert_ptr_null(strstr(first + 1, want));
    ck_assert_ptr_nonnull(strstr(s.seen, "X-Consent-Signature: "));
    ck_assert_ptr_nonnull(strstr(s.seen, "X-Test: yes\r\n"));
    chain_key_destroy(key);
}
END_TEST

START_TEST(refusals_without_a_server_or_with_bad_arguments) {
    /* A port nobody listens on: bind one, close it, connect there. */
    server s;
    memset(&s, 0, sizeof s);
    struct sockaddr_in a;
    socklen_t alen = sizeof a;
    memset(&a, 0, sizeof a);
    a.sin_family = AF_INET;
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    ck_assert_int_eq(bind(fd, (struct sockaddr *)&a, sizeof a), 0);
    ck_assert_int_eq(getsockname(fd, (struct sockaddr *)&a, &alen), 0);
    s.port = ntohs(a.sin_port);
    close(fd);
    wallet_client c = client_for(&s);
    wallet_conn *k = NULL;
    char err[WALLET_ERR_LEN];
    ck_assert_int_eq(wallet_conn_open(&k, err, &c), WALLET_ENET);
    ck_assert_ptr_null(k);
    ck_assert_ptr_nonnull(strstr(err, "cannot connect"));

    /* A target over WALLET_PATH_LEN_MAX is refused before anything is sent. */
    static server s2;
    memset(&s2, 0, sizeof s2);
    s2.steps = 1;
    s2.requests[0] = 1;
    s2.answer[0] = OK_A;
    server_start(&s2);
    c = client_for(&s2);
    ck_assert_int_eq(wallet_conn_open(&k, err, &c), 0);
    static char target[WALLET_PATH_LEN_MAX + 2];
    memset(target, 'a', sizeof target - 1);
    target[0] = '/';
    ck_assert_int_eq(wallet_conn_send(k, err, "GET", target, NULL, NULL, 0), CHAIN_EINVAL);
    ck_assert_uint_eq(wallet_conn_in_flight(k), 0);
    /* The connection still works afterwards. */
    wallet_http_response r;
    ck_assert_int_eq(wallet_conn_request(k, &r, err, "GET", "/ok", NULL, NULL, 0), 0);
    ck_assert_int_eq(r.status, 200);
    wallet_http_response_free(&r);
    wallet_conn_close(k);
    server_join(&s2);
}
END_TEST

int main(void) {
    Suite *su = suite_create("wallet_conn");
    TCase *tc = tcase_create("conn");
    tcase_add_test(tc, pipelined_answers_split_at_boundaries);
    tcase_add_test(tc, closed_keepalive_is_reopened_once);
    tcase_add_test(tc, connection_close_answer_drops_connection);
    tcase_add_test(tc, malformed_answer_is_ehttp);
    tcase_add_test(tc, truncated_answer_is_ehttp);
    tcase_add_test(tc, oversized_headers_are_etoobig);
    tcase_add_test(tc, requests_signed_with_sign_key_or_given_headers);
    tcase_add_test(tc, refusals_without_a_server_or_with_bad_arguments);
    suite_add_tcase(su, tc);
    SRunner *sr = srunner_create(su);
    srunner_run_all(sr, CK_NORMAL);
    int failed = srunner_ntests_failed(sr);
    srunner_free(sr);
    return failed ? 1 : 0;
}
