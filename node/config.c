/* config.c — the node's JSON configuration (see README, "config.json").
 *
 * Paths in the file are relative to the file's own folder, so a network
 * directory can be moved as a whole. Parsing is strict: a wrong type, a value
 * out of range or an unknown key is an error naming the key, because a typo
 * silently ignored in an operator's config is worse than a refusal to start.
 */
#include <errno.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <jansson.h>

#include "node/node.h"

void node_config_defaults(node_config *cfg) {
    memset(cfg, 0, sizeof(*cfg));
    snprintf(cfg->data_dir, sizeof(cfg->data_dir), "data");
    snprintf(cfg->api_listen, sizeof(cfg->api_listen), "127.0.0.1:7700");
    snprintf(cfg->p2p_listen, sizeof(cfg->p2p_listen), "127.0.0.1:7800");
    cfg->block_interval_ms = 100;
    cfg->block_txs_max = CHAIN_BLOCK_TXS_MAX;   /* 4096: bigger blocks amortise the commit round */
    cfg->mempool_max = 100000;
    cfg->view_timeout_ms = 2000;
    cfg->checkpoint_interval = 16;
    cfg->window = 64;
    cfg->log_level = NODE_LOG_INFO;
}

static void set_err(char *err, size_t errlen, const char *fmt, const char *a) {
    if (err && errlen) snprintf(err, errlen, fmt, a);
}

/* Joins base_dir and a relative path; absolute paths stay as they are. */
static int resolve_path(char *out, size_t cap, const char *base_dir, const char *p) {
    int n;
    if (p[0] == '/' || !base_dir || !base_dir[0]) n = snprintf(out, cap, "%s", p);
    else n = snprintf(out, cap, "%s/%s", base_dir, p);
    return (n < 0 || (size_t)n >= cap) ? NODE_ECONFIG : 0;
}

typedef struct {
    const char *key;
    enum { K_PATH, K_ADDR, K_U32, K_U64, K_LEVEL } kind;
    size_t off;
    uint64_t min, max;
} cfg_field;

#define F(k, kind, field, lo, hi) {k, kind, offsetof(node_config, field), lo, hi}
static const cfg_field fields[] = {
    F("genesis", K_PATH, genesis, 0, 0),
    F("data_dir", K_PATH, data_dir, 0, 0),
    F("key_file", K_PATH, key_file, 0, 0),
    F("passphrase_file", K_PATH, passphrase_file, 0, 0),
    F("api_listen", K_ADDR, api_listen, 0, 0),
    F("p2p_listen", K_ADDR, p2p_listen, 0, 0),
    F("block_interval_ms", K_U32, block_interval_ms, 1, 60000),
    F("block_txs_max", K_U32, block_txs_max, 1, CHAIN_BLOCK_TXS_MAX),
    F("mempool_max", K_U32, mempool_max, 1, NODE_MEMPOOL_MAX),
    F("view_timeout_ms", K_U64, view_timeout_ms, 10, 3600000),
    F("checkpoint_interval", K_U32, checkpoint_interval, 1, 100000),
    F("window", K_U32, window, 1, 100000),
    F("log_level", K_LEVEL, log_level, 0, 0),
};
#undef F

static int set_field(node_config *c, char *err, size_t errlen, const cfg_field *f, json_t *v,
                     const char *base_dir) {
    char *dst = (char *)c + f->off;
    if (f->kind == K_PATH || f->kind == K_ADDR || f->kind == K_LEVEL) {
        if (!json_is_string(v) || json_string_length(v) == 0) {
            set_err(err, errlen, "config: \"%s\" must be a non-empty string", f->key);
            return NODE_ECONFIG;
        }
        const char *s = json_string_value(v);
        if (strlen(s) != json_string_length(v)) {
            set_err(err, errlen, "config: \"%s\" holds a NUL byte", f->key);
            return NODE_ECONFIG;
        }
        if (f->kind == K_LEVEL) {
            if (node_log_level_parse((node_log_level *)dst, s) == 0) return 0;
            set_err(err, errlen, "config: \"%s\" must be debug, info, warn or error", f->key);
            return NODE_ECONFIG;
        }
        int rc = f->kind == K_PATH ? resolve_path(dst, NODE_PATH_MAX, base_dir, s)
                                   : (strlen(s) < NODE_ADDR_MAX ? (strcpy(dst, s), 0) : NODE_ECONFIG);
        if (rc) set_err(err, errlen, "config: \"%s\" is too long", f->key);
        return rc;
    }
    if (!json_is_integer(v) || json_integer_value(v) < 0 ||
        (uint64_t)json_integer_value(v) < f->min || (uint64_t)json_integer_value(v) > f->max) {
        if (err && errlen)
            snprintf(err, errlen, "config: \"%s\" must be an integer in %llu..%llu", f->key,
                     (unsigned long long)f->min, (unsigned long long)f->max);
        return NODE_ECONFIG;
    }
    uint64_t x = (uint64_t)json_integer_value(v);
    if (f->kind == K_U32) *(uint32_t *)(void *)dst = (uint32_t)x;
    else *(uint64_t *)(void *)dst = x;
    return 0;
}

int node_config_parse(node_config *cfg, char *err, size_t errlen, const char *json, size_t len,
                      const char *base_dir) {
    json_error_t je;
    json_t *root = json_loadb(json, len, JSON_REJECT_DUPLICATES, &je);
    if (!root) {
        if (err && errlen) snprintf(err, errlen, "config: line %d: %s", je.line, je.text);
        return NODE_ECONFIG;
    }
    int rc = 0;
    node_config c = *cfg;
    if (!json_is_object(root)) {
        set_err(err, errlen, "config: %s", "top level must be an object");
        rc = NODE_ECONFIG;
    }
    const char *key;
    json_t *v;
    json_object_foreach(root, key, v) {
        if (rc) break;
        size_t i = 0;
        while (i < sizeof(fields) / sizeof(fields[0]) && strcmp(fields[i].key, key) != 0) i++;
        if (i == sizeof(fields) / sizeof(fields[0])) {
            set_err(err, errlen, "config: unknown key \"%.64s\"", key);
            rc = NODE_ECONFIG;
            break;
        }
        rc = set_field(&c, err, errlen, &fields[i], v, base_dir);
    }
    json_decref(root);
    if (rc == 0) rc = node_config_validate(&c, err, errlen);
    if (rc == 0) *cfg = c;
    return rc;
}

int node_config_load(node_config *cfg, char *err, size_t errlen, const char *path) {
    FILE *f = fopen(path, "rb");
    if (!f) {
        if (err && errlen) snprintf(err, errlen, "config %s: %s", path, strerror(errno));
        return NODE_ECONFIG;
    }
    char *buf = malloc(1u << 20);
    size_t n = buf ? fread(buf, 1, 1u << 20, f) : 0;
    int too_big = buf && n == (1u << 20);
    fclose(f);
    if (!buf) return NODE_ENOMEM;
    if (too_big) {
        free(buf);
        set_err(err, errlen, "config %s: larger than 1 MiB", path);
        return NODE_ECONFIG;
    }
    char dir[NODE_PATH_MAX];
    snprintf(dir, sizeof(dir), "%s", path);
    char *slash = strrchr(dir, '/');
    if (slash) *(slash == dir ? slash + 1 : slash) = 0;
    else snprintf(dir, sizeof(dir), ".");
    int rc = node_config_parse(cfg, err, errlen, buf, n, dir);
    free(buf);
    return rc;
}

int node_addr_parse(char *host, size_t hostlen, int *port, const char *addr) {
    const char *colon = strrchr(addr, ':');
    if (!colon || colon == addr) return NODE_EINVAL;
    const char *h = addr;
    size_t hl = (size_t)(colon - addr);
    if (h[0] == '[') {
        if (hl < 3 || h[hl - 1] != ']') return NODE_EINVAL;
        h++;
        hl -= 2;
    }
    if (hl + 1 > hostlen) return NODE_EINVAL;
    const char *p = colon + 1;
    if (!*p || strlen(p) > 5) return NODE_EINVAL;
    long v = 0;
    for (; *p; p++) {
        if (*p < '0' || *p > '9') return NODE_EINVAL;
        v = v * 10 + (*p - '0');
    }
    if (v > 65535) return NODE_EINVAL;
    memcpy(host, h, hl);
    host[hl] = 0;
    *port = (int)v;
    return 0;
}

int node_config_validate(const node_config *cfg, char *err, size_t errlen) {
    char host[NODE_ADDR_MAX];
    int port;
    if (!cfg->genesis[0]) {
        set_err(err, errlen, "config: %s", "\"genesis\" is required");
        return NODE_ECONFIG;
    }
    if (!cfg->data_dir[0]) {
        set_err(err, errlen, "config: %s", "\"data_dir\" is required");
        return NODE_ECONFIG;
    }
    if (node_addr_parse(host, sizeof(host), &port, cfg->api_listen)) {
        set_err(err, errlen, "config: api_listen \"%s\" is not host:port", cfg->api_listen);
        return NODE_ECONFIG;
    }
    if (cfg->p2p_listen[0] && node_addr_parse(host, sizeof(host), &port, cfg->p2p_listen)) {
        set_err(err, errlen, "config: p2p_listen \"%s\" is not host:port", cfg->p2p_listen);
        return NODE_ECONFIG;
    }
    if (cfg->block_interval_ms < 1 || cfg->block_txs_max < 1 ||
        cfg->block_txs_max > CHAIN_BLOCK_TXS_MAX || cfg->mempool_max < 1 ||
        cfg->mempool_max > NODE_MEMPOOL_MAX || cfg->view_timeout_ms < 10 ||
        cfg->checkpoint_interval < 1 || cfg->window < 1) {
        set_err(err, errlen, "config: %s", "a numeric setting is out of range");
        return NODE_ECONFIG;
    }
    return 0;
}
