/* main.c — consentd: runs one consent-ledger node.
 *
 * Reads the JSON config (--config), applies command-line overrides, creates
 * the node on the default libuv loop and runs it until SIGTERM or SIGINT,
 * then stops gracefully: the listener, connections and timers close, the
 * store is closed, and the process exits 0. Any start-up error is one line
 * on stderr and exit status 1; usage errors exit 2.
 */
#include <getopt.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "node/node.h"

static const char usage[] =
    "usage: consentd --config PATH [options]\n"
    "Runs a consent-ledger node (a validator if its config names a key file).\n"
    "\n"
    "  --config PATH             node config (JSON; paths relative to its folder)\n"
    "  --genesis PATH            override \"genesis\"\n"
    "  --data-dir DIR            override \"data_dir\"\n"
    "  --key-file PATH           override \"key_file\"\n"
    "  --passphrase-file PATH    override \"passphrase_file\" (else CONSENT_PASSPHRASE)\n"
    "  --api-listen HOST:PORT    override \"api_listen\"\n"
    "  --p2p-listen HOST:PORT    override \"p2p_listen\"\n"
    "  --block-interval-ms N     override \"block_interval_ms\"\n"
    "  --block-txs-max N         override \"block_txs_max\"\n"
    "  --mempool-max N           override \"mempool_max\"\n"
    "  --view-timeout-ms N       override \"view_timeout_ms\"\n"
    "  --log-level LEVEL         debug, info, warn or error\n"
    "  --help                    this text\n";

typedef struct {
    uv_signal_t sigterm, sigint;
    node *n;
    int stopping;
    int signalled;
} app;

static int parse_num(uint64_t *out, const char *s, uint64_t max) {
    char *end;
    if (!*s || *s == '-' || *s == '+') return -1;
    unsigned long long v = strtoull(s, &end, 10);
    if (*end || v > max) return -1;
    *out = v;
    return 0;
}

static int copy_opt(char *dst, size_t cap, const char *v) {
    if (!*v || strlen(v) >= cap) return -1;
    memcpy(dst, v, strlen(v) + 1);
    return 0;
}

/* Applies one override; returns -1 with a message on a bad value. */
static int apply_opt(node_config *c, int opt, const char *v) {
    uint64_t x = 0;
    switch (opt) {
    case 'g': return copy_opt(c->genesis, sizeof(c->genesis), v);
    case 'd': return copy_opt(c->data_dir, sizeof(c->data_dir), v);
    case 'k': return copy_opt(c->key_file, sizeof(c->key_file), v);
    case 'P': return copy_opt(c->passphrase_file, sizeof(c->passphrase_file), v);
    case 'a': return copy_opt(c->api_listen, sizeof(c->api_listen), v);
    case 'p': return copy_opt(c->p2p_listen, sizeof(c->p2p_listen), v);
    case 'l': return node_log_level_parse(&c->log_level, v) ? -1 : 0;
    case 'i': if (parse_num(&x, v, 60000)) return -1; c->block_interval_ms = (uint32_t)x; return 0;
    case 'b': if (parse_num(&x, v, CHAIN_BLOCK_TXS_MAX)) return -1; c->block_txs_max = (uint32_t)x; return 0;
    case 'm': if (parse_num(&x, v, NODE_MEMPOOL_MAX)) return -1; c->mempool_max = (uint32_t)x; return 0;
    case 'v': if (parse_num(&x, v, 3600000)) return -1; c->view_timeout_ms = x; return 0;
    }
    return -1;
}

static const struct option longopts[] = {
    {"config", required_argument, NULL, 'c'},      {"genesis", required_argument, NULL, 'g'},
    {"data-dir", required_argument, NULL, 'd'},    {"key-file", required_argument, NULL, 'k'},
    {"passphrase-file", required_argument, NULL, 'P'},
    {"api-listen", required_argument, NULL, 'a'},  {"p2p-listen", required_argument, NULL, 'p'},
    {"block-interval-ms", required_argument, NULL, 'i'},
    {"block-txs-max", required_argument, NULL, 'b'},
    {"mempool-max", required_argument, NULL, 'm'},
    {"view-timeout-ms", required_argument, NULL, 'v'},
    {"log-level", required_argument, NULL, 'l'},   {"help", no_argument, NULL, 'h'},
    {NULL, 0, NULL, 0},
};

/* Config first (so flags override it whatever their order), then flags. */
static int load_config(node_config *cfg, int argc, char **argv) {
    const char *path = NULL;
    int opt;
    opterr = 0;
    while ((opt = getopt_long(argc, argv, "", longopts, NULL)) != -1) {
        if (opt == 'h') {
            fputs(usage, stdout);
            exit(0);
        }
        if (opt == '?' || opt == ':') {
            fprintf(stderr, "consentd: unknown or incomplete option %s (see --help)\n", argv[optind - 1]);
            exit(2);
        }
        if (opt == 'c') path = optarg;
    }
    if (optind < argc) {
        fprintf(stderr, "consentd: unexpected argument %s (see --help)\n", argv[optind]);
        exit(2);
    }
    if (!path) {
        fprintf(stderr, "consentd: --config PATH is required (see --help)\n");
        exit(2);
    }
    char err[512];
    node_config_defaults(cfg);
    if (node_config_load(cfg, err, sizeof(err), path)) {
        fprintf(stderr, "consentd: %s\n", err);
        return -1;
    }
    optind = 1;
    while ((opt = getopt_long(argc, argv, "", longopts, NULL)) != -1) {
        if (opt != 'c' && apply_opt(cfg, opt, optarg)) {
            fprintf(stderr, "consentd: bad option value \"%s\" (see --help)\n", optarg);
            return -1;
        }
    }
    if (node_config_validate(cfg, err, sizeof(err))) {
        fprintf(stderr, "consentd: %s\n", err);
        return -1;
    }
    return 0;
}

static void stopped(node *n, void *arg) {
    app *a = arg;
    a->stopping = 1;
    uv_close((uv_handle_t *)&a->sigterm, NULL);
    uv_close((uv_handle_t *)&a->sigint, NULL);
}

static void on_signal(uv_signal_t *s, int signum) {
    app *a = s->data;
    a->signalled = 1;
    node_log(node_get_logger(a->n), NODE_LOG_INFO, "signal %d: shutting down", signum);
    node_stop(a->n, stopped, a);
}

int main(int argc, char **argv) {
    node_config cfg;
    if (load_config(&cfg, argc, argv)) return 1;
    signal(SIGPIPE, SIG_IGN);
    uv_loop_t *loop = uv_default_loop();
    app a = {0};
    char err[512];
    if (node_create(&a.n, err, sizeof(err), loop, &cfg)) {
        fprintf(stderr, "consentd: %s\n", err);
        return 1;
    }
    node_set_stopped_cb(a.n, stopped, &a);
    uv_signal_init(loop, &a.sigterm);
    uv_signal_init(loop, &a.sigint);
    a.sigterm.data = a.sigint.data = &a;
    uv_signal_start(&a.sigterm, on_signal, SIGTERM);
    uv_signal_start(&a.sigint, on_signal, SIGINT);
    if (node_start(a.n)) {
        fprintf(stderr, "consentd: the replica did not start\n");
        node_stop(a.n, stopped, &a);
    }
    uv_run(loop, UV_RUN_DEFAULT);
    node_destroy(a.n);
    uv_loop_close(loop);
    /* Stopping without a signal means a fatal error (see the log). */
    return a.signalled ? 0 : 1;
}
