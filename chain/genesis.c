/* genesis.c — the genesis file: chain id, start time, validators and
 * institutions, and the hashes and quorum derived from it.
 *
 * genesis.json (README) is parsed with jansson and validated field by field;
 * unknown keys, duplicate keys, duplicate names and bad values are refused so
 * every node reads one file one way. The genesis hash is SHA-256 of a
 * canonical JSON rendering of the parsed result (sorted keys, compact, roles
 * in fixed order), so whitespace or key order in the file never changes it.
 * Validators come first in institutions[] and carry CHAIN_ROLE_VALIDATOR.
 */
#include <assert.h>
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <jansson.h>

#include "chain/chain.h"
#include "chain/chain_internal.h"

#define GENESIS_BYTES_MAX (1u << 20)
#define ADDR_LEN_MAX 63

/* ------------------------------------------------------------ validation */

/* "host:port": host of [A-Za-z0-9.-_] or a bracketed IPv6 literal, port
 * 1..65535 without leading zeros. */
static int addr_valid(const char *s)
{
    size_t n = strnlen(s, ADDR_LEN_MAX + 1);
    if (n == 0 || n > ADDR_LEN_MAX) return 0;
    const char *colon = strrchr(s, ':');
    if (colon == NULL || colon == s) return 0;
    const char *port = colon + 1;
    size_t plen = strlen(port);
    if (plen == 0 || plen > 5 || port[0] == '0') return 0;
    unsigned long v = 0;
    for (size_t i = 0; i < plen; i++) {
        if (port[i] < '0' || port[i] > '9') return 0;
        v = v * 10 + (unsigned long)(port[i] - '0');
    }
    if (v > 65535) return 0;
    size_t hlen = (size_t)(colon - s);
    if (s[0] == '[') return hlen >= 3 && s[hlen - 1] == ']';
    for (size_t i = 0; i < hlen; i++) {
        char c = s[i];
        int ok = (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
                 c == '.' || c == '-' || c == '_';
        if (!ok) return 0;
    }
    return 1;
}

/* Refuses any key of obj not in allowed (NULL-terminated). */
static int only_keys(json_t *obj, const char *const *allowed)
{
    const char *k;
    json_t *v;
    json_object_foreach(obj, k, v) {
        int found = 0;
        for (size_t i = 0; allowed[i] != NULL; i++) {
            if (strcmp(k, allowed[i]) == 0) found = 1;
        }
        if (!found) return CHAIN_EDECODE;
    }
    return CHAIN_OK;
}

static int get_string(json_t *obj, const char *key, const char **out)
{
    json_t *v = json_object_get(obj, key);
    if (!json_is_string(v)) return CHAIN_EDECODE;
    if (strlen(json_string_value(v)) != json_string_length(v)) return CHAIN_EDECODE; /* NUL inside */
    *out = json_string_value(v);
    return CHAIN_OK;
}

/* roles: a non-empty array of distinct role names; "validator" only where
 * allow_validator. */
static int parse_roles(json_t *arr, uint32_t *out, int allow_validator)
{
    uint32_t bits = 0;
    size_t i;
    json_t *v;
    if (!json_is_array(arr) || json_array_size(arr) == 0) return CHAIN_EDECODE;
    if (json_array_size(arr) > 3) return CHAIN_EBOUNDS;
    json_array_foreach(arr, i, v) {
        if (!json_is_string(v)) return CHAIN_EDECODE;
        uint32_t bit = chain__role_from_name(json_string_value(v));
        if (bit == 0) return CHAIN_ECODE;
        if (bit == CHAIN_ROLE_VALIDATOR && !allow_validator) return CHAIN_ECODE;
        if (bits & bit) return CHAIN_ECODE;
        bits |= bit;
    }
    *out = bits;
    return CHAIN_OK;
}

static int parse_member(chain_institution *out, json_t *obj, int validator)
{
    static const char *const vkeys[] = {"name", "key", "p2p", "api", "roles", NULL};
    static const char *const ikeys[] = {"name", "key", "roles", NULL};
    const char *name, *key, *p2p = "", *api = "";
    int rc;
    if (!json_is_object(obj)) return CHAIN_EDECODE;
    if ((rc = only_keys(obj, validator ? vkeys : ikeys)) != 0) return rc;
    if ((rc = get_string(obj, "name", &name)) != 0) return rc;
    if ((rc = get_string(obj, "key", &key)) != 0) return rc;
    if (!chain__name_valid(name)) return CHAIN_EBOUNDS;
    if (chain_unhex(out->key.b, CHAIN_KEY_LEN, key) != 0) return CHAIN_EDECODE;
    strcpy(out->name, name);
    out->roles = 0;
    if (validator) {
        if ((rc = get_string(obj, "p2p", &p2p)) != 0) return rc;
        if (!addr_valid(p2p)) return CHAIN_EBOUNDS;
        /* api is optional: a validator may serve no public API. */
        if (json_object_get(obj, "api") != NULL) {
            if ((rc = get_string(obj, "api", &api)) != 0) return rc;
            if (!addr_valid(api)) return CHAIN_EBOUNDS;
        }
        /* Extra roles are optional for validators (a hospital may also be a
         * grantee); the validator role is implicit. */
        if (json_object_get(obj, "roles") != NULL &&
            (rc = parse_roles(json_object_get(obj, "roles"), &out->roles, 0)) != 0)
            return rc;
        out->roles |= CHAIN_ROLE_VALIDATOR;
    } else {
        if ((rc = parse_roles(json_object_get(obj, "roles"), &out->roles, 0)) != 0) return rc;
    }
    strcpy(out->p2p_addr, p2p);
    strcpy(out->api_addr, api);
    return CHAIN_OK;
}

/* Every key and every name appears once across validators and institutions. */
static int check_unique(const chain_genesis *g)
{
    for (uint32_t i = 0; i < g->n_institutions; i++) {
        for (uint32_t j = 0; j < i; j++) {
            if (memcmp(g->institutions[i].key.b, g->institutions[j].key.b, CHAIN_KEY_LEN) == 0)
                return CHAIN_EEXISTS;
            if (strcmp(g->institutions[i].name, g->institutions[j].name) == 0) return CHAIN_EEXISTS;
        }
    }
    return CHAIN_OK;
}

static int parse_members(chain_genesis *g, json_t *arr, int validator, size_t max)
{
    size_t i;
    json_t *v;
    if (!json_is_array(arr)) return CHAIN_EDECODE;
    if (json_array_size(arr) > max) return CHAIN_EBOUNDS;
    json_array_foreach(arr, i, v) {
        if (g->n_institutions >= CHAIN_INSTITUTIONS_MAX) return CHAIN_EBOUNDS;
        int rc = parse_member(&g->institutions[g->n_institutions], v, validator);
        if (rc != 0) return rc;
        g->n_institutions++;
    }
    return CHAIN_OK;
}

static int parse_root(chain_genesis *g, json_t *root)
{
    static const char *const keys[] = {"chain_id", "time_ms", "validators", "institutions", NULL};
    const char *id;
    int rc;
    if (!json_is_object(root)) return CHAIN_EDECODE;
    if ((rc = only_keys(root, keys)) != 0) return rc;
    if ((rc = get_string(root, "chain_id", &id)) != 0) return rc;
    if (!chain__id_valid(id)) return CHAIN_ECHAINID;
    strcpy(g->chain_id, id);
    json_t *t = json_object_get(root, "time_ms");
    if (!json_is_integer(t) || json_integer_value(t) <= 0) return CHAIN_EDECODE;
    g->time_ms = (uint64_t)json_integer_value(t);
    json_t *vals = json_object_get(root, "validators");
    if (!json_is_array(vals) || json_array_size(vals) == 0) return CHAIN_EDECODE;
    if ((rc = parse_members(g, vals, 1, CHAIN_VALIDATORS_MAX)) != 0) return rc;
    g->n_validators = g->n_institutions;
    /* institutions is optional: a network may start with validators only. */
    json_t *insts = json_object_get(root, "institutions");
    if (insts != NULL && (rc = parse_members(g, insts, 0, CHAIN_INSTITUTIONS_MAX)) != 0) return rc;
    return check_unique(g);
}

/* ------------------------------------------------------------ rendering */

static json_t *roles_json(uint32_t roles)
{
    json_t *arr = json_array();
    static const uint32_t order[] = {CHAIN_ROLE_GATEWAY, CHAIN_ROLE_GRANTEE};
    for (size_t i = 0; arr != NULL && i < sizeof order / sizeof order[0]; i++) {
        if ((roles & order[i]) && json_array_append_new(arr, json_string(chain__role_name(order[i]))) != 0) {
            json_decref(arr);
            return NULL;
        }
    }
    return arr;
}

static json_t *member_json(const chain_institution *in, int validator)
{
    char hex[2 * CHAIN_KEY_LEN + 1];
    chain_hex(hex, in->key.b, CHAIN_KEY_LEN);
    json_t *o = json_object();
    if (o == NULL) return NULL;
    int bad = json_object_set_new(o, "name", json_string(in->name)) != 0;
    bad |= json_object_set_new(o, "key", json_string(hex)) != 0;
    uint32_t extra = in->roles & ~(uint32_t)CHAIN_ROLE_VALIDATOR;
    if (validator) {
        bad |= json_object_set_new(o, "p2p", json_string(in->p2p_addr)) != 0;
        if (in->api_addr[0] != '\0') bad |= json_object_set_new(o, "api", json_string(in->api_addr)) != 0;
    }
    if (!validator || extra != 0) bad |= json_object_set_new(o, "roles", roles_json(extra)) != 0;
    if (bad) {
        json_decref(o);
        return NULL;
    }
    return o;
}

/* The genesis as a JSON value, in the README's layout. */
static json_t *genesis_json(const chain_genesis *g)
{
    json_t *o = json_object(), *vals = json_array(), *insts = json_array();
    int bad = o == NULL || vals == NULL || insts == NULL;
    for (uint32_t i = 0; !bad && i < g->n_institutions; i++) {
        int v = i < g->n_validators;
        bad |= json_array_append_new(v ? vals : insts, member_json(&g->institutions[i], v)) != 0;
    }
    if (!bad) {
        bad |= json_object_set_new(o, "chain_id", json_string(g->chain_id)) != 0;
        bad |= json_object_set_new(o, "time_ms", json_integer((json_int_t)g->time_ms)) != 0;
        bad |= json_object_set(o, "validators", vals) != 0;
        bad |= json_object_set(o, "institutions", insts) != 0;
    }
    json_decref(vals);
    json_decref(insts);
    if (bad) {
        json_decref(o);
        return NULL;
    }
    return o;
}

static int genesis_hash(const chain_genesis *g, chain_hash *out)
{
    json_t *o = genesis_json(g);
    if (o == NULL) return CHAIN_ENOMEM;
    char *s = json_dumps(o, JSON_SORT_KEYS | JSON_COMPACT | JSON_ENSURE_ASCII);
    json_decref(o);
    if (s == NULL) return CHAIN_ENOMEM;
    chain_sha256(out, s, strlen(s));
    free(s);
    return CHAIN_OK;
}

/* ------------------------------------------------------------ public */

int chain_genesis_parse(chain_genesis *out, const char *json, size_t len)
{
    json_error_t err;
    if (out == NULL || json == NULL) return CHAIN_EINVAL;
    if (len > GENESIS_BYTES_MAX) return CHAIN_EBOUNDS;
    /* The struct is large (about 200 KiB): parse into a heap copy so *out
     * stays untouched on failure. */
    chain_genesis *g = calloc(1, sizeof *g);
    if (g == NULL) return CHAIN_ENOMEM;
    json_t *root = json_loadb(json, len, JSON_REJECT_DUPLICATES, &err);
    int rc = root == NULL ? CHAIN_EDECODE : parse_root(g, root);
    json_decref(root);
    if (rc == CHAIN_OK) rc = genesis_hash(g, &g->hash);
    if (rc == CHAIN_OK) memcpy(out, g, sizeof *g);
    free(g);
    return rc;
}

int chain_genesis_load(chain_genesis *out, const char *path)
{
    if (out == NULL || path == NULL) return CHAIN_EINVAL;
    FILE *f = fopen(path, "rb");
    if (f == NULL) return errno == ENOENT ? CHAIN_ENOTFOUND : CHAIN_EIO;
    char *buf = malloc(GENESIS_BYTES_MAX + 1);
    if (buf == NULL) {
        fclose(f);
        return CHAIN_ENOMEM;
    }
    size_t n = fread(buf, 1, GENESIS_BYTES_MAX + 1, f);
    int rc = ferror(f) ? CHAIN_EIO : CHAIN_OK;
    fclose(f);
    if (rc == CHAIN_OK && n > GENESIS_BYTES_MAX) rc = CHAIN_EBOUNDS;
    if (rc == CHAIN_OK) rc = chain_genesis_parse(out, buf, n);
    free(buf);
    return rc;
}

/* Writes data to path atomically: a temporary file, fsync, rename. */
static int write_atomic(const char *path, const char *data, size_t len)
{
    size_t plen = strlen(path);
    char *tmp = malloc(plen + 5);
    if (tmp == NULL) return CHAIN_ENOMEM;
    memcpy(tmp, path, plen);
    memcpy(tmp + plen, ".tmp", 5);
    int fd = open(tmp, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
    int rc = fd < 0 ? CHAIN_EIO : CHAIN_OK;
    for (size_t off = 0; rc == CHAIN_OK && off < len;) {
        ssize_t w = write(fd, data + off, len - off);
        if (w < 0 && errno == EINTR) continue;
        if (w <= 0) rc = CHAIN_EIO;
        else off += (size_t)w;
    }
    if (rc == CHAIN_OK && fsync(fd) != 0) rc = CHAIN_EIO;
    if (fd >= 0 && close(fd) != 0) rc = CHAIN_EIO;
    if (rc == CHAIN_OK && rename(tmp, path) != 0) rc = CHAIN_EIO;
    if (rc != CHAIN_OK && fd >= 0) unlink(tmp);
    free(tmp);
    return rc;
}

int chain_genesis_save(const chain_genesis *g, const char *path)
{
    if (g == NULL || path == NULL) return CHAIN_EINVAL;
    if (g->n_validators == 0 || g->n_validators > CHAIN_VALIDATORS_MAX ||
        g->n_institutions < g->n_validators || g->n_institutions > CHAIN_INSTITUTIONS_MAX)
        return CHAIN_EBOUNDS;
    json_t *o = genesis_json(g);
    if (o == NULL) return CHAIN_ENOMEM;
    char *s = json_dumps(o, JSON_INDENT(2) | JSON_PRESERVE_ORDER | JSON_ENSURE_ASCII);
    json_decref(o);
    if (s == NULL) return CHAIN_ENOMEM;
    /* Refuse to write what we would refuse to read. */
    chain_genesis *check = malloc(sizeof *check);
    int rc = check == NULL ? CHAIN_ENOMEM : chain_genesis_parse(check, s, strlen(s));
    free(check);
    if (rc == CHAIN_OK) {
        size_t n = strlen(s);
        char *text = malloc(n + 1);
        if (text == NULL) {
            rc = CHAIN_ENOMEM;
        } else {
            memcpy(text, s, n);
            text[n] = '\n';
            rc = write_atomic(path, text, n + 1);
            free(text);
        }
    }
    free(s);
    return rc;
}

void chain_genesis_valset_hash(const chain_genesis *g, chain_hash *out)
{
    uint8_t buf[4 + CHAIN_VALIDATORS_MAX * CHAIN_KEY_LEN];
    assert(g != NULL && out != NULL);
    assert(g->n_validators <= CHAIN_VALIDATORS_MAX);
    chain__put_u32be(buf, g->n_validators);
    for (uint32_t i = 0; i < g->n_validators; i++)
        memcpy(buf + 4 + (size_t)i * CHAIN_KEY_LEN, g->institutions[i].key.b, CHAIN_KEY_LEN);
    chain__sha256_tagged(out, CHAIN__TAG_VALSET, buf, 4 + (size_t)g->n_validators * CHAIN_KEY_LEN);
}

int chain_genesis_validator_index(const chain_genesis *g, const chain_pubkey *key)
{
    assert(g != NULL && key != NULL);
    for (uint32_t i = 0; i < g->n_validators && i < CHAIN_VALIDATORS_MAX; i++) {
        if (memcmp(g->institutions[i].key.b, key->b, CHAIN_KEY_LEN) == 0) return (int)i;
    }
    return -1;
}

uint32_t chain_genesis_quorum(const chain_genesis *g)
{
    assert(g != NULL);
    assert(g->n_validators >= 1);
    uint32_t f = (g->n_validators - 1) / 3;
    uint32_t q = 2 * f + 1;
    assert(q <= g->n_validators);
    return q;
}

void chain_commit_sighash(chain_hash *out, const char *chain_id, uint64_t view, uint64_t height,
                          const chain_hash *block_hash)
{
    uint8_t buf[1 + CHAIN_ID_LEN_MAX + 8 + 8 + CHAIN_HASH_LEN];
    assert(out != NULL && chain_id != NULL && block_hash != NULL);
    size_t idlen = strnlen(chain_id, CHAIN_ID_LEN_MAX + 1);
    assert(idlen <= CHAIN_ID_LEN_MAX);
    /* The chain id is length-prefixed so (id, view) pairs cannot collide. */
    size_t n = 0;
    buf[n++] = (uint8_t)idlen;
    memcpy(buf + n, chain_id, idlen);
    n += idlen;
    chain__put_u64be(buf + n, view);
    n += 8;
    chain__put_u64be(buf + n, height);
    n += 8;
    memcpy(buf + n, block_hash->b, CHAIN_HASH_LEN);
    n += CHAIN_HASH_LEN;
    chain__sha256_tagged(out, CHAIN__TAG_COMMIT, buf, n);
}
