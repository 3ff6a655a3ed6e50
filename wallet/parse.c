/* parse.c — what users type: times, numbers, keys, code lists, options.
 *
 * Everything here is pure (no I/O, no clock) so the tests can feed it every
 * kind of bad input. Parsers are strict: a value is accepted only if the
 * whole string is that value, because a half-parsed "--until 2026-13-01"
 * silently becoming something else would sign a grant the patient did not
 * mean.
 */
#include <assert.h>
#include <ctype.h>
#include <stdio.h>
#include <string.h>
#include <time.h>

#include "wallet/wallet.h"

const char *wallet_strerror(int err)
{
    switch (err) {
    case WALLET_ENET: return "cannot reach the node";
    case WALLET_EHTTP: return "malformed HTTP response";
    case WALLET_ETOOBIG: return "HTTP response too large";
    case WALLET_ESTATUS: return "the node refused the request";
    case WALLET_EJSON: return "unexpected JSON from the node";
    case WALLET_ETIMEOUT: return "timed out";
    case WALLET_EREJECTED: return "transaction rejected";
    case WALLET_EUSAGE: return "bad command line";
    default: return chain_strerror(err);
    }
}

int wallet_parse_u64(uint64_t *out, const char *s)
{
    uint64_t v = 0;
    size_t i;
    if (!s || !s[0] || strlen(s) > 20)
        return CHAIN_EINVAL;
    for (i = 0; s[i]; i++) {
        unsigned d;
        if (s[i] < '0' || s[i] > '9')
            return CHAIN_EINVAL;
        d = (unsigned)(s[i] - '0');
        if (v > (UINT64_MAX - d) / 10)
            return CHAIN_EINVAL;
        v = v * 10 + d;
    }
    *out = v;
    return 0;
}

/* Reads exactly n digits at *p and advances it. */
static int digits(int *out, const char **p, int n)
{
    int v = 0, i;
    for (i = 0; i < n; i++) {
        if ((*p)[i] < '0' || (*p)[i] > '9')
            return CHAIN_EINVAL;
        v = v * 10 + ((*p)[i] - '0');
    }
    *p += n;
    *out = v;
    return 0;
}

/* "HH:MM:SS[.frac](Z|+00:00|-00:00)" after the 'T'. */
static int parse_clock(struct tm *tm, const char *p)
{
    if (digits(&tm->tm_hour, &p, 2) || *p++ != ':' || digits(&tm->tm_min, &p, 2) ||
        *p++ != ':' || digits(&tm->tm_sec, &p, 2))
        return CHAIN_EINVAL;
    if (*p == '.') {
        int n = 0;
        for (p++; *p >= '0' && *p <= '9' && n < 9; p++)
            n++;
        if (n == 0)
            return CHAIN_EINVAL;
    }
    if ((p[0] == 'Z' || p[0] == 'z') && p[1] == 0)
        return 0;
    if ((strcmp(p, "+00:00") == 0) || (strcmp(p, "-00:00") == 0))
        return 0;
    return CHAIN_EINVAL;
}

int wallet_parse_time(uint64_t *out, const char *s)
{
    struct tm tm, back;
    const char *p = s;
    time_t t;
    if (!s)
        return CHAIN_EINVAL;
    if (strchr(s, '-') == NULL)
        return wallet_parse_u64(out, s);
    memset(&tm, 0, sizeof tm);
    if (digits(&tm.tm_year, &p, 4) || *p++ != '-' || digits(&tm.tm_mon, &p, 2) || *p++ != '-' ||
        digits(&tm.tm_mday, &p, 2))
        return CHAIN_EINVAL;
    if (*p == 'T' || *p == 't') {
        if (parse_clock(&tm, p + 1))
            return CHAIN_EINVAL;
    } else if (*p != 0) {
        return CHAIN_EINVAL;
    }
    if (tm.tm_year < 1970 || tm.tm_mon < 1 || tm.tm_mon > 12 || tm.tm_mday < 1 ||
        tm.tm_hour > 23 || tm.tm_min > 59 || tm.tm_sec > 60)
        return CHAIN_EINVAL;
    tm.tm_year -= 1900;
    tm.tm_mon -= 1;
    back = tm;
    t = timegm(&tm);
    /* timegm normalises Feb 30 into March: a changed day means no such day. */
    if (t < 0 || tm.tm_mday != back.tm_mday || tm.tm_mon != back.tm_mon)
        return CHAIN_EINVAL;
    *out = (uint64_t)t;
    return 0;
}

static int parse_hex32(uint8_t out[32], const char *s)
{
    char low[65];
    size_t i;
    if (!s || strlen(s) != 64)
        return CHAIN_EINVAL;
    for (i = 0; i < 64; i++)
        low[i] = (char)tolower((unsigned char)s[i]);
    low[64] = 0;
    return chain_unhex(out, 32, low) ? CHAIN_EINVAL : 0;
}

int wallet_parse_pubkey(chain_pubkey *out, const char *s)
{
    return parse_hex32(out->b, s);
}

int wallet_parse_hash(chain_hash *out, const char *s)
{
    return parse_hex32(out->b, s);
}

int wallet_parse_codes(chain_code *out, uint32_t *n_out, uint32_t max, const char *csv,
                       int (*valid)(const char *), char *err)
{
    uint32_t n = 0, i;
    const char *p = csv;
    assert(max > 0);
    if (!csv || !csv[0]) {
        snprintf(err, WALLET_ERR_LEN, "empty list");
        return CHAIN_EINVAL;
    }
    for (;;) {
        const char *end = strchr(p, ',');
        size_t len = end ? (size_t)(end - p) : strlen(p);
        chain_code c;
        if (len == 0 || len > CHAIN_CODE_LEN_MAX) {
            snprintf(err, WALLET_ERR_LEN, "%s item in \"%.64s\"", len ? "over-long" : "empty", csv);
            return CHAIN_EINVAL;
        }
        memcpy(c.s, p, len);
        c.s[len] = 0;
        if (!valid(c.s)) {
            snprintf(err, WALLET_ERR_LEN, "unknown code \"%s\"", c.s);
            return CHAIN_ECODE;
        }
        for (i = 0; i < n; i++) {
            if (strcmp(out[i].s, c.s) == 0) {
                snprintf(err, WALLET_ERR_LEN, "\"%s\" listed twice", c.s);
                return CHAIN_EINVAL;
            }
        }
        if (n == max) {
            snprintf(err, WALLET_ERR_LEN, "more than %u items", max);
            return CHAIN_EBOUNDS;
        }
        out[n++] = c;
        if (!end)
            break;
        p = end + 1;
    }
    *n_out = n;
    return 0;
}

static int spec_find(const wallet_opt_spec *spec, size_t n_spec, const char *name, size_t len)
{
    size_t i;
    for (i = 0; i < n_spec; i++)
        if (strlen(spec[i].name) == len && strncmp(spec[i].name, name, len) == 0)
            return (int)i;
    return -1;
}

/* One "--name[=value]" word at argv[*i]; may consume the next word. */
static int args_option(wallet_args *out, char *err, const wallet_opt_spec *spec, size_t n_spec,
                       int argc, char *const *argv, int *i)
{
    const char *word = strcmp(argv[*i], "-h") == 0 ? "--help" : argv[*i];
    const char *name = word + 2, *eq = strchr(name, '=');
    size_t len = eq ? (size_t)(eq - name) : strlen(name);
    int k = spec_find(spec, n_spec, name, len);
    if (k < 0) {
        snprintf(err, WALLET_ERR_LEN, "unknown option %.64s", word);
        return WALLET_EUSAGE;
    }
    if (out->val[k]) {
        snprintf(err, WALLET_ERR_LEN, "option --%s given twice", spec[k].name);
        return WALLET_EUSAGE;
    }
    if (!spec[k].has_arg) {
        if (eq) {
            snprintf(err, WALLET_ERR_LEN, "option --%s takes no value", spec[k].name);
            return WALLET_EUSAGE;
        }
        out->val[k] = "";
    } else if (eq) {
        out->val[k] = eq + 1;
    } else if (*i + 1 < argc) {
        out->val[k] = argv[++*i];
    } else {
        snprintf(err, WALLET_ERR_LEN, "option --%s needs a value", spec[k].name);
        return WALLET_EUSAGE;
    }
    return 0;
}

int wallet_args_parse(wallet_args *out, char *err, const wallet_opt_spec *spec, size_t n_spec,
                      int argc, char *const *argv)
{
    int i, only_pos = 0, rc;
    assert(n_spec <= WALLET_ARGS_OPTS_MAX);
    memset(out, 0, sizeof *out);
    for (i = 0; i < argc; i++) {
        const char *w = argv[i];
        int is_opt = !only_pos && ((w[0] == '-' && w[1] == '-' && w[2]) || strcmp(w, "-h") == 0);
        if (!only_pos && strcmp(w, "--") == 0) {
            only_pos = 1;
            continue;
        }
        if (is_opt) {
            rc = args_option(out, err, spec, n_spec, argc, argv, &i);
            if (rc)
                return rc;
            continue;
        }
        if (!only_pos && w[0] == '-' && w[1] != 0 && !isdigit((unsigned char)w[1])) {
            snprintf(err, WALLET_ERR_LEN, "unknown option %.64s", w);
            return WALLET_EUSAGE;
        }
        if (out->n_pos == WALLET_ARGS_POS_MAX) {
            snprintf(err, WALLET_ERR_LEN, "too many arguments");
            return WALLET_EUSAGE;
        }
        out->pos[out->n_pos++] = w;
    }
    return 0;
}

const char *wallet_args_get(const wallet_args *a, const wallet_opt_spec *spec, size_t n_spec,
                            const char *name)
{
    int k = spec_find(spec, n_spec, name, strlen(name));
    return k < 0 ? NULL : a->val[k];
}

int wallet_args_command(wallet_args *out, char *err, const wallet_opt_spec *spec, size_t n_spec,
                        int argc, char *const *argv, const char *usage)
{
    int rc = wallet_args_parse(out, err, spec, n_spec, argc, argv);
    if (rc)
        return rc;
    if (wallet_args_get(out, spec, n_spec, "help")) {
        fputs(usage, stdout);
        return 1;
    }
    if (out->n_pos == 0) {
        snprintf(err, WALLET_ERR_LEN, "no command");
        return WALLET_EUSAGE;
    }
    return 0;
}
