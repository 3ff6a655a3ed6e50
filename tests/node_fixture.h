/* node_fixture.h — the single-node harness shared by test_node.c and
 * test_node_gw.c.
 *
 * A node directory in a fresh mkdtemp folder (genesis.json beside node0/
 * holding the encrypted validator key, its passphrase and config.json), a
 * node whose libuv loop runs on a thread, a clean stop through a uv_async
 * (the only thread-safe way into the loop), and a blocking client socket to
 * the node's API on 127.0.0.1. The suites keep their own genesis, client
 * reading and tx builders, which differ on purpose.
 */
#ifndef CONSENT_TESTS_NODE_FIXTURE_H
#define CONSENT_TESTS_NODE_FIXTURE_H

#include <arpa/inet.h>
#include <check.h>
#include <netinet/in.h>
#include <pthread.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/time.h>

#include "node/node.h"

typedef struct {
    char dir[256];
    uv_loop_t loop;
    uv_async_t stop;
    node *n;
    pthread_t thread;
    int port;
} node_fx;

/* One HTTP response as the client tests read it. */
typedef struct {
    int status;
    char head[4096];
    char *body;
    size_t body_len;
} nfx_response;

static inline void nfx_write_file(const char *path, const char *text)
{
    FILE *f = fopen(path, "w");
    ck_assert_ptr_nonnull(f);
    fputs(text, f);
    fclose(f);
}

/* Makes nf->dir from a mkdtemp template. */
static inline void nfx_mkdir(node_fx *nf, const char *tmpl)
{
    snprintf(nf->dir, sizeof(nf->dir), "%s", tmpl);
    ck_assert_ptr_nonnull(mkdtemp(nf->dir));
}

/* Writes genesis g and node0/ (key of validator val, sealed with pass, and a
 * config with the given block interval and log level). */
static inline void nfx_write_node(const node_fx *nf, const chain_genesis *g, const chain_key *val,
                                  const char *pass, uint32_t interval_ms, const char *log_level)
{
    char path[512], cfg[1024], pass_line[256];
    snprintf(path, sizeof(path), "%s/genesis.json", nf->dir);
    ck_assert_int_eq(chain_genesis_save(g, path), 0);
    snprintf(path, sizeof(path), "%s/node0", nf->dir);
    ck_assert_int_eq(mkdir(path, 0700), 0);
    snprintf(path, sizeof(path), "%s/node0/validator.key", nf->dir);
    ck_assert_int_eq(chain_keystore_save(path, val, pass), 0);
    snprintf(path, sizeof(path), "%s/node0/passphrase", nf->dir);
    snprintf(pass_line, sizeof(pass_line), "%s\n", pass);
    nfx_write_file(path, pass_line);
    snprintf(cfg, sizeof(cfg),
             "{\"genesis\": \"../genesis.json\", \"data_dir\": \"data\", \"key_file\": \"validator.key\","
             " \"passphrase_file\": \"passphrase\", \"api_listen\": \"127.0.0.1:0\","
             " \"p2p_listen\": \"127.0.0.1:0\", \"block_interval_ms\": %u, \"block_txs_max\": 100,"
             " \"mempool_max\": 1000, \"view_timeout_ms\": 1000, \"log_level\": \"%s\"}",
             interval_ms, log_level);
    snprintf(path, sizeof(path), "%s/node0/config.json", nf->dir);
    nfx_write_file(path, cfg);
}

static inline void nfx_on_stopped(node *n, void *arg)
{
    node_fx *nf = arg;
    uv_close((uv_handle_t *)&nf->stop, NULL);
}

static inline void nfx_on_stop(uv_async_t *a)
{
    node_fx *nf = a->data;
    node_stop(nf->n, nfx_on_stopped, nf);
}

static inline void *nfx_loop_main(void *arg)
{
    node_fx *nf = arg;
    uv_run(&nf->loop, UV_RUN_DEFAULT);
    return NULL;
}

/* Loads node0/config.json into cfg. */
static inline void nfx_config(const node_fx *nf, node_config *cfg)
{
    char path[512], err[256];
    node_config_defaults(cfg);
    snprintf(path, sizeof(path), "%s/node0/config.json", nf->dir);
    ck_assert_int_eq(node_config_load(cfg, err, sizeof(err), path), 0);
}

/* Creates the node from cfg (not yet running). */
static inline void nfx_create_with(node_fx *nf, const node_config *cfg)
{
    char err[256];
    ck_assert_int_eq(uv_loop_init(&nf->loop), 0);
    int rc = node_create(&nf->n, err, sizeof(err), &nf->loop, cfg);
    ck_assert_msg(rc == 0, "node_create: %s", err);
    nf->port = node_api_port(nf->n);
    nf->stop.data = nf;
}

/* Loads node0/config.json and creates the node (not yet running). */
static inline void nfx_create(node_fx *nf)
{
    node_config cfg;
    nfx_config(nf, &cfg);
    nfx_create_with(nf, &cfg);
}

/* Starts a created node on a loop thread. */
static inline void nfx_run(node_fx *nf)
{
    ck_assert_int_eq(uv_async_init(&nf->loop, &nf->stop, nfx_on_stop), 0);
    ck_assert_int_eq(node_start(nf->n), 0);
    ck_assert_int_eq(pthread_create(&nf->thread, NULL, nfx_loop_main, nf), 0);
}

/* Loads node0/config.json, creates and starts the node on a loop thread. */
static inline void nfx_start(node_fx *nf)
{
    nfx_create(nf);
    nfx_run(nf);
}

static inline void nfx_stop(node_fx *nf)
{
    uv_async_send(&nf->stop);
    pthread_join(nf->thread, NULL);
    node_destroy(nf->n);
    ck_assert_int_eq(uv_loop_close(&nf->loop), 0);
    nf->n = NULL;
}

static inline void nfx_rm_dir(const node_fx *nf)
{
    char cmd[300];
    snprintf(cmd, sizeof(cmd), "rm -rf '%s'", nf->dir);
    ck_assert_int_eq(system(cmd), 0);
}

/* A blocking connection to the API with 10 s send/receive timeouts. */
static inline int nfx_dial(int port)
{
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    ck_assert_int_ge(fd, 0);
    struct timeval tv = {10, 0};
    setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv));
    setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof(tv));
    struct sockaddr_in sa = {0};
    sa.sin_family = AF_INET;
    sa.sin_port = htons((uint16_t)port);
    sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    ck_assert_int_eq(connect(fd, (struct sockaddr *)&sa, sizeof(sa)), 0);
    return fd;
}

/* Sends all of buf; -1 if the peer closed or the send failed first. */
static inline int nfx_send_all(int fd, const void *buf, size_t len)
{
    const char *p = buf;
    while (len) {
        ssize_t n = send(fd, p, len, MSG_NOSIGNAL);
        if (n <= 0) return -1;
        p += n;
        len -= (size_t)n;
    }
    return 0;
}

#endif
