/* testnet.c — writing the files of a local network (consentctl testnet).
 *
 * Layout (README "Files of a network"):
 *   DIR/genesis.json
 *   DIR/nodeI/config.json, validator.key (0600), passphrase (0600)
 *   DIR/institutions/NAME.key (0600), NAME.passphrase (0600)
 * Validators are named hospital-I, institutions gateway-I with the roles
 * gateway and grantee. Node I's API listens on 127.0.0.1:P+I and its p2p
 * port on 127.0.0.1:P+100+I. Each key gets its own random passphrase, kept
 * beside it: fine for a local test network, never for a real one.
 *
 * genesis.json is written last, so a failure half-way leaves a folder that
 * no node can start from rather than a network missing keys. An existing
 * nodeI/data (a chain of an older genesis) is never deleted or reused: the
 * write is refused.
 */
#include <assert.h>
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <openssl/crypto.h>
#include <openssl/rand.h>

#include "wallet/wallet.h"

#define PASS_BYTES 16

void wallet_testnet_defaults(wallet_testnet_opts *o)
{
    memset(o, 0, sizeof *o);
    o->validators = 4;
    o->institutions = 2;
    o->port_base = 7700;
    snprintf(o->chain_id, sizeof o->chain_id, "consent-local");
    o->block_interval_ms = 100;
}

static int id_valid(const char *id)
{
    size_t i, n = strlen(id);
    if (n == 0 || n > CHAIN_ID_LEN_MAX)
        return 0;
    for (i = 0; i < n; i++) {
        char c = id[i];
        if (!((c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '-'))
            return 0;
    }
    return 1;
}

static int opts_check(char *err, const wallet_testnet_opts *o)
{
    if (o->validators < 1 || o->validators > WALLET_TESTNET_VALIDATORS_MAX) {
        snprintf(err, WALLET_ERR_LEN, "--validators must be 1..%d", WALLET_TESTNET_VALIDATORS_MAX);
        return CHAIN_EINVAL;
    }
    if (o->institutions > WALLET_TESTNET_INSTITUTIONS_MAX) {
        snprintf(err, WALLET_ERR_LEN, "--institutions must be 0..%d", WALLET_TESTNET_INSTITUTIONS_MAX);
        return CHAIN_EINVAL;
    }
    if (o->port_base < 1 || o->port_base + 100 + o->validators - 1 > 65535) {
        snprintf(err, WALLET_ERR_LEN, "--port-base leaves no room for %u nodes (P+100+i <= 65535)",
                 o->validators);
        return CHAIN_EINVAL;
    }
    if (!id_valid(o->chain_id)) {
        snprintf(err, WALLET_ERR_LEN, "--chain-id must be 1..%d of [a-z0-9-]", CHAIN_ID_LEN_MAX);
        return CHAIN_EINVAL;
    }
    if (o->block_interval_ms < 1 || o->block_interval_ms > 60000) {
        snprintf(err, WALLET_ERR_LEN, "--block-interval-ms must be 1..60000");
        return CHAIN_EINVAL;
    }
    if (o->time_ms == 0) {
        snprintf(err, WALLET_ERR_LEN, "genesis time not set");
        return CHAIN_EINVAL;
    }
    return 0;
}

/* 0 if dir is missing or empty (creating it), else CHAIN_EEXISTS. */
static int dir_prepare(char *err, const char *dir, int force)
{
    struct dirent *e;
    int entries = 0;
    DIR *d;
    if (mkdir(dir, 0755) == 0)
        return 0;
    if (errno != EEXIST) {
        snprintf(err, WALLET_ERR_LEN, "cannot create %.200s: %s", dir, strerror(errno));
        return CHAIN_EIO;
    }
    d = opendir(dir);
    if (!d) {
        snprintf(err, WALLET_ERR_LEN, "%.200s: %s", dir, strerror(errno));
        return CHAIN_EIO;
    }
    while ((e = readdir(d)) != NULL && entries == 0)
        entries = strcmp(e->d_name, ".") != 0 && strcmp(e->d_name, "..") != 0;
    closedir(d);
    if (entries && !force) {
        snprintf(err, WALLET_ERR_LEN, "%.200s is not empty (use --force to write over it)", dir);
        return CHAIN_EEXISTS;
    }
    return 0;
}

static int subdir(char *err, const char *path)
{
    if (mkdir(path, 0700) != 0 && errno != EEXIST) {
        snprintf(err, WALLET_ERR_LEN, "cannot create %.200s: %s", path, strerror(errno));
        return CHAIN_EIO;
    }
    if (chmod(path, 0700) != 0) {
        snprintf(err, WALLET_ERR_LEN, "cannot chmod %.200s: %s", path, strerror(errno));
        return CHAIN_EIO;
    }
    return 0;
}

static int write_file(char *err, const char *path, const char *text, mode_t mode)
{
    size_t off = 0, len = strlen(text);
    int rc = 0;
    int fd = open(path, O_WRONLY | O_CREAT | O_TRUNC | O_NOFOLLOW | O_CLOEXEC, mode);
    if (fd < 0 || fchmod(fd, mode) != 0)
        rc = CHAIN_EIO;
    while (!rc && off < len) {
        ssize_t n = write(fd, text + off, len - off);
        if (n < 0 && errno == EINTR)
            continue;
        if (n <= 0)
            rc = CHAIN_EIO;
        else
            off += (size_t)n;
    }
    if (fd >= 0 && close(fd) != 0)
        rc = CHAIN_EIO;
    if (rc)
        snprintf(err, WALLET_ERR_LEN, "cannot write %.200s: %s", path, strerror(errno));
    return rc;
}

/* A fresh key saved at key_path under a random passphrase written (0600)
 * at pass_path; the public key goes to inst. */
static int make_key(char *err, chain_institution *inst, const char *key_path, const char *pass_path)
{
    uint8_t raw[PASS_BYTES];
    char pass[2 * PASS_BYTES + 1];
    chain_key *key = chain_key_create(NULL);
    int rc;
    if (!key || RAND_bytes(raw, sizeof raw) != 1) {
        chain_key_destroy(key);
        snprintf(err, WALLET_ERR_LEN, "cannot create a key");
        return CHAIN_ENOMEM;
    }
    chain_hex(pass, raw, sizeof raw);
    chain_key_pubkey(key, &inst->key);
    rc = write_file(err, pass_path, pass, 0600);
    if (!rc) {
        rc = chain_keystore_save(key_path, key, pass);
        if (rc)
            snprintf(err, WALLET_ERR_LEN, "cannot write %.200s: %s", key_path, chain_strerror(rc));
    }
    OPENSSL_cleanse(raw, sizeof raw);
    OPENSSL_cleanse(pass, sizeof pass);
    chain_key_destroy(key);
    return rc;
}

static int write_config(char *err, const char *path, const wallet_testnet_opts *o, uint32_t i)
{
    char api[32], p2p[32];
    char *text;
    int rc;
    json_t *c;
    snprintf(api, sizeof api, "127.0.0.1:%u", o->port_base + i);
    snprintf(p2p, sizeof p2p, "127.0.0.1:%u", o->port_base + 100 + i);
    c = json_pack("{s:s, s:s, s:s, s:s, s:s, s:s, s:i, s:i, s:i, s:i, s:s}", "genesis",
                  "../genesis.json", "data_dir", "data", "key_file", "validator.key",
                  "passphrase_file", "passphrase", "api_listen", api, "p2p_listen", p2p,
                  "block_interval_ms", (int)o->block_interval_ms, "block_txs_max", CHAIN_BLOCK_TXS_MAX,
                  "mempool_max", 100000, "view_timeout_ms", 2000, "log_level", "info");
    text = c ? json_dumps(c, JSON_INDENT(2) | JSON_PRESERVE_ORDER) : NULL;
    json_decref(c);
    if (!text) {
        snprintf(err, WALLET_ERR_LEN, "out of memory");
        return CHAIN_ENOMEM;
    }
    rc = write_file(err, path, text, 0644);
    free(text);
    return rc;
}

static int write_validator(char *err, chain_genesis *g, const wallet_testnet_opts *o,
                           const char *dir, uint32_t i)
{
    char nd[PATH_MAX], a[PATH_MAX + 32], b[PATH_MAX + 32];
    chain_institution *inst = &g->institutions[i];
    struct stat st;
    int rc;
    snprintf(nd, sizeof nd, "%s/node%u", dir, i);
    snprintf(a, sizeof a, "%s/data", nd);
    if (stat(a, &st) == 0) {
        snprintf(err, WALLET_ERR_LEN, "%.200s holds an older chain; remove it first", a);
        return CHAIN_EEXISTS;
    }
    rc = subdir(err, nd);
    if (rc)
        return rc;
    snprintf(a, sizeof a, "%s/validator.key", nd);
    snprintf(b, sizeof b, "%s/passphrase", nd);
    rc = make_key(err, inst, a, b);
    if (rc)
        return rc;
    snprintf(inst->name, sizeof inst->name, "hospital-%u", i);
    inst->roles = CHAIN_ROLE_VALIDATOR;
    snprintf(inst->api_addr, sizeof inst->api_addr, "127.0.0.1:%u", o->port_base + i);
    snprintf(inst->p2p_addr, sizeof inst->p2p_addr, "127.0.0.1:%u", o->port_base + 100 + i);
    snprintf(a, sizeof a, "%s/config.json", nd);
    return write_config(err, a, o, i);
}

static int write_institution(char *err, chain_institution *inst, const char *dir, uint32_t i)
{
    char a[PATH_MAX + 64], b[PATH_MAX + 64];
    snprintf(inst->name, sizeof inst->name, "gateway-%u", i);
    inst->roles = CHAIN_ROLE_GATEWAY | CHAIN_ROLE_GRANTEE;
    snprintf(a, sizeof a, "%s/institutions/%s.key", dir, inst->name);
    snprintf(b, sizeof b, "%s/institutions/%s.passphrase", dir, inst->name);
    return make_key(err, inst, a, b);
}

static int write_all(char *err, chain_genesis *g, const wallet_testnet_opts *o, const char *dir)
{
    char path[PATH_MAX + 32];
    uint32_t i;
    int rc = 0;
    memcpy(g->chain_id, o->chain_id, sizeof g->chain_id);
    g->time_ms = o->time_ms;
    for (i = 0; !rc && i < o->validators; i++)
        rc = write_validator(err, g, o, dir, i);
    g->n_validators = o->validators;
    if (!rc && o->institutions) {
        snprintf(path, sizeof path, "%s/institutions", dir);
        rc = subdir(err, path);
    }
    for (i = 0; !rc && i < o->institutions; i++)
        rc = write_institution(err, &g->institutions[o->validators + i], dir, i);
    g->n_institutions = o->validators + o->institutions;
    if (rc)
        return rc;
    snprintf(path, sizeof path, "%s/genesis.json", dir);
    rc = chain_genesis_save(g, path);
    if (!rc)
        rc = chain_genesis_load(g, path);   /* read back: fills the hash, proves it loads */
    if (rc)
        snprintf(err, WALLET_ERR_LEN, "genesis %.200s: %s", path, chain_strerror(rc));
    return rc;
}

int wallet_testnet_write(chain_genesis *g_out, char *err, const wallet_testnet_opts *o,
                         const char *dir)
{
    chain_genesis *g;
    int rc = opts_check(err, o);
    if (rc)
        return rc;
    if (strlen(dir) > PATH_MAX - 64) {
        snprintf(err, WALLET_ERR_LEN, "path too long");
        return CHAIN_EINVAL;
    }
    rc = dir_prepare(err, dir, o->force);
    if (rc)
        return rc;
    g = calloc(1, sizeof *g);
    if (!g) {
        snprintf(err, WALLET_ERR_LEN, "out of memory");
        return CHAIN_ENOMEM;
    }
    rc = write_all(err, g, o, dir);
    if (!rc && g_out)
        memcpy(g_out, g, sizeof *g);
    assert(rc || g->n_validators == o->validators);
    free(g);
    return rc;
}
