/* test_wallet.c — Check suite for the wallet module and the key store.
 *
 * Key store: round trip, wrong passphrase, wrong mode, damaged and truncated
 * files, atomic write. Transactions: what the wallet builds decodes back to
 * the same thing and its signature verifies. Parsing: times, numbers, keys,
 * code lists, options. HTTP: the response parser on canned bytes (lengths,
 * chunked, until-close, truncated, oversized, garbage, byte-at-a-time) and
 * one real request against a forked one-shot server. Testnet: the files are
 * all there, secret ones 0600, genesis loads, ports are unique, keys open
 * with their passphrases. Keys come from fixed secrets, so runs are
 * deterministic; temp folders are per test (Check forks each test).
 */
#include <arpa/inet.h>
#include <check.h>
#include <dirent.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include "wallet/wallet.h"
#include "wallet_fixture.h"

/* ------------------------------------------------------------ helpers */

static char tmpdir[64];

static void tmp_setup(void)
{
    snprintf(tmpdir, sizeof tmpdir, "/tmp/test_wallet.XXXXXX");
    ck_assert_ptr_nonnull(mkdtemp(tmpdir));
}

static void rm_rf(const char *path)
{
    char cmd[256];
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", path);
    ck_assert_int_eq(system(cmd), 0);
}

static void tmp_teardown(void)
{
    rm_rf(tmpdir);
}

static chain_key *fixed_key(uint8_t seed)
{
    uint8_t sec[CHAIN_SECKEY_LEN];
    chain_key *k;
    memset(sec, seed, sizeof sec);
    k = chain_key_create(sec);
    ck_assert_ptr_nonnull(k);
    return k;
}

static char *read_text(const char *path, size_t *len)
{
    FILE *f = fopen(path, "rb");
    char *buf = malloc(1 << 20);
    ck_assert_ptr_nonnull(f);
    ck_assert_ptr_nonnull(buf);
    *len = fread(buf, 1, (1 << 20) - 1, f);
    buf[*len] = 0;
    fclose(f);
    return buf;
}

static void write_text(const char *path, const char *text, size_t len, mode_t mode)
{
    int fd = open(path, O_WRONLY | O_CREAT | O_TRUNC, mode);
    ck_assert_int_ge(fd, 0);
    ck_assert_int_eq(write(fd, text, len), (ssize_t)len);
    ck_assert_int_eq(fchmod(fd, mode), 0);
    close(fd);
}

static mode_t file_mode(const char *path)
{
    struct stat st;
    ck_assert_int_eq(stat(path, &st), 0);
    return st.st_mode & 07777;
}

static int keys_equal(const chain_key *a, const chain_key *b)
{
    chain_pubkey pa, pb;
    chain_key_pubkey(a, &pa);
    chain_key_pubkey(b, &pb);
    return memcmp(pa.b, pb.b, sizeof pa.b) == 0;
}

/* Saves key 7 under "pw" at tmpdir/k.key and returns the path. */
static const char *saved_key(char *path, size_t cap)
{
    chain_key *k = fixed_key(7);
    snprintf(path, cap, "%s/k.key", tmpdir);
    ck_assert_int_eq(chain_keystore_save(path, k, "pw"), 0);
    chain_key_destroy(k);
    return path;
}

/* Rewrites the file with the first occurrence of `from` replaced by `to`. */
static void patch_file(const char *path, const char *from, const char *to)
{
    size_t len;
    char *text = read_text(path, &len), *out = malloc(len + strlen(to) + 1);
    char *at = strstr(text, from);
    ck_assert_ptr_nonnull(at);
    memcpy(out, text, (size_t)(at - text));
    strcpy(out + (at - text), to);
    strcat(out, at + strlen(from));
    write_text(path, out, strlen(out), 0600);
    free(text);
    free(out);
}

/* ------------------------------------------------------------ key store */

START_TEST(keystore_round_trip)
{
    char path[128];
    chain_key *k = fixed_key(7), *back = NULL;
    uint8_t s1[CHAIN_SECKEY_LEN], s2[CHAIN_SECKEY_LEN];
    chain_hash msg;
    chain_sig sig;
    chain_pubkey pk;
    saved_key(path, sizeof path);
    ck_assert_int_eq(file_mode(path), 0600);
    ck_assert_int_eq(chain_keystore_load(&back, path, "pw"), 0);
    ck_assert(keys_equal(k, back));
    chain_key_secret(k, s1);
    chain_key_secret(back, s2);
    ck_assert_mem_eq(s1, s2, sizeof s1);
    chain_sha256(&msg, "hello", 5);
    ck_assert_int_eq(chain_sign(back, &sig, &msg), 0);
    chain_key_pubkey(k, &pk);
    ck_assert_int_eq(chain_verify(&pk, &sig, &msg), 0);
    chain_key_destroy(k);
    chain_key_destroy(back);
}
END_TEST

START_TEST(keystore_never_holds_the_secret_in_clear)
{
    char path[128], hex[2 * CHAIN_SECKEY_LEN + 1];
    uint8_t sec[CHAIN_SECKEY_LEN];
    size_t len;
    char *text;
    chain_key *k = fixed_key(7);
    saved_key(path, sizeof path);
    chain_key_secret(k, sec);
    chain_hex(hex, sec, sizeof sec);
    text = read_text(path, &len);
    ck_assert_ptr_null(strstr(text, hex));
    ck_assert_ptr_nonnull(strstr(text, "\"scrypt\""));
    free(text);
    chain_key_destroy(k);
}
END_TEST

START_TEST(keystore_wrong_passphrase)
{
    char path[128];
    chain_key *back = NULL;
    saved_key(path, sizeof path);
    ck_assert_int_eq(chain_keystore_load(&back, path, "PW"), CHAIN_EPERM);
    ck_assert_int_eq(chain_keystore_load(&back, path, ""), CHAIN_EPERM);
    ck_assert_ptr_null(back);
}
END_TEST

START_TEST(keystore_wrong_mode_refused)
{
    static const mode_t modes[] = {0644, 0640, 0400, 0700, 0604};
    char path[128];
    chain_key *back = NULL;
    size_t i;
    saved_key(path, sizeof path);
    for (i = 0; i < sizeof modes / sizeof modes[0]; i++) {
        ck_assert_int_eq(chmod(path, modes[i]), 0);
        ck_assert_int_eq(chain_keystore_load(&back, path, "pw"), CHAIN_EPERM);
        ck_assert_ptr_null(back);
    }
    ck_assert_int_eq(chmod(path, 0600), 0);
    ck_assert_int_eq(chain_keystore_load(&back, path, "pw"), 0);
    chain_key_destroy(back);
}
END_TEST

START_TEST(keystore_missing_and_not_a_file)
{
    char path[128];
    chain_key *back = NULL;
    snprintf(path, sizeof path, "%s/none.key", tmpdir);
    ck_assert_int_eq(chain_keystore_load(&back, path, "pw"), CHAIN_ENOTFOUND);
    ck_assert_int_ne(chain_keystore_load(&back, tmpdir, "pw"), 0);
    ck_assert_ptr_null(back);
}
END_TEST

START_TEST(keystore_truncated_refused)
{
    char path[128];
    size_t len, cut;
    char *text;
    chain_key *back = NULL;
    saved_key(path, sizeof path);
    text = read_text(path, &len);
    for (cut = 0; cut < len; cut += len / 17 + 1) {
        write_text(path, text, cut, 0600);
        ck_assert_int_eq(chain_keystore_load(&back, path, "pw"), CHAIN_EDECODE);
        ck_assert_ptr_null(back);
    }
    free(text);
}
END_TEST

START_TEST(keystore_damaged_refused)
{
    /* Each edit keeps valid JSON but breaks the content. */
    static const char *const edits[][2] = {
        {"\"version\": 1", "\"version\": 2"},
        {"\"scrypt\"", "\"pbkdf2\""},
        {"\"n\": 32768", "\"n\": 1073741824"},   /* a doctored cost must not run */
        {"\"n\": 32768", "\"n\": 30000"},
        {"\"r\": 8", "\"r\": 0"},
        {"\"chacha20-poly1305\"", "\"aes-256-gcm\""},
        {"\"version\": 1", "\"version\": 1, \"extra\": 1"},
        {"\"ciphertext\": \"", "\"ciphertext\": \"zz"},
        {"\"tag\": \"", "\"tag\": \"00"},
    };
    char path[128];
    chain_key *back = NULL;
    size_t i;
    for (i = 0; i < sizeof edits / sizeof edits[0]; i++) {
        saved_key(path, sizeof path);
        patch_file(path, edits[i][0], edits[i][1]);
        ck_assert_msg(chain_keystore_load(&back, path, "pw") == CHAIN_EDECODE, "edit %zu", i);
        ck_assert_ptr_null(back);
    }
}
END_TEST

/* Flips the first hex digit of a member's value. */
static void flip_member(const char *path, const char *member)
{
    size_t len;
    char *text = read_text(path, &len), *at, pat[64];
    snprintf(pat, sizeof pat, "\"%s\": \"", member);
    at = strstr(text, pat);
    ck_assert_ptr_nonnull(at);
    at += strlen(pat);
    *at = *at == '0' ? '1' : '0';
    write_text(path, text, len, 0600);
    free(text);
}

START_TEST(keystore_sealed_part_damaged)
{
    static const char *const members[] = {"ciphertext", "tag", "nonce", "pubkey"};
    char path[128];
    chain_key *back = NULL;
    size_t i;
    for (i = 0; i < sizeof members / sizeof members[0]; i++) {
        saved_key(path, sizeof path);
        flip_member(path, members[i]);
        ck_assert_msg(chain_keystore_load(&back, path, "pw") == CHAIN_EDECODE, "%s", members[i]);
    }
    /* A changed salt derives another key: indistinguishable from a wrong
     * passphrase, and refused as such. */
    saved_key(path, sizeof path);
    flip_member(path, "salt");
    ck_assert_int_eq(chain_keystore_load(&back, path, "pw"), CHAIN_EPERM);
    ck_assert_ptr_null(back);
}
END_TEST

START_TEST(keystore_oversized_and_garbage_refused)
{
    char path[128], *big = malloc(8192);
    chain_key *back = NULL;
    snprintf(path, sizeof path, "%s/g.key", tmpdir);
    memset(big, ' ', 8192);
    big[0] = '{';
    write_text(path, big, 8192, 0600);
    ck_assert_int_eq(chain_keystore_load(&back, path, "pw"), CHAIN_EDECODE);
    write_text(path, "\x01\x02garbage", 9, 0600);
    ck_assert_int_eq(chain_keystore_load(&back, path, "pw"), CHAIN_EDECODE);
    write_text(path, "[]", 2, 0600);
    ck_assert_int_eq(chain_keystore_load(&back, path, "pw"), CHAIN_EDECODE);
    ck_assert_ptr_null(back);
    free(big);
}
END_TEST

START_TEST(keystore_save_is_atomic_and_replaces)
{
    char path[128];
    chain_key *k2 = fixed_key(9), *back = NULL;
    struct dirent *e;
    int entries = 0;
    DIR *d;
    saved_key(path, sizeof path);
    ck_assert_int_eq(chmod(path, 0644), 0);
    ck_assert_int_eq(chain_keystore_save(path, k2, "other"), 0);
    ck_assert_int_eq(file_mode(path), 0600);
    ck_assert_int_eq(chain_keystore_load(&back, path, "other"), 0);
    ck_assert(keys_equal(k2, back));
    d = opendir(tmpdir);
    while ((e = readdir(d)) != NULL)
        entries += e->d_name[0] != '.';
    closedir(d);
    ck_assert_int_eq(entries, 1);   /* no temporary file left behind */
    snprintf(path, sizeof path, "%s/no/such/dir/k.key", tmpdir);
    ck_assert_int_ne(chain_keystore_save(path, k2, "pw"), 0);
    chain_key_destroy(k2);
    chain_key_destroy(back);
}
END_TEST

START_TEST(key_load_messages)
{
    char path[128], err[WALLET_ERR_LEN];
    chain_key *back = NULL;
    saved_key(path, sizeof path);
    ck_assert_int_eq(wallet_key_load(&back, err, path, "bad"), CHAIN_EPERM);
    ck_assert_ptr_nonnull(strstr(err, "wrong passphrase"));
    ck_assert_int_eq(chmod(path, 0644), 0);
    ck_assert_int_eq(wallet_key_load(&back, err, path, "pw"), CHAIN_EPERM);
    ck_assert_ptr_nonnull(strstr(err, "0600"));
    ck_assert_int_eq(chmod(path, 0600), 0);
    patch_file(path, "\"version\": 1", "\"version\": 9");
    ck_assert_int_eq(wallet_key_load(&back, err, path, "pw"), CHAIN_EDECODE);
    ck_assert_ptr_nonnull(strstr(err, "damaged"));
    snprintf(path, sizeof path, "%s/none", tmpdir);
    ck_assert_int_eq(wallet_key_load(&back, err, path, "pw"), CHAIN_ENOTFOUND);
    ck_assert_ptr_null(back);
}
END_TEST

/* ------------------------------------------------------------ passphrase */

START_TEST(passphrase_sources)
{
    char path[128], out[WALLET_PASSPHRASE_MAX + 1], err[WALLET_ERR_LEN];
    char *big = malloc(WALLET_PASSPHRASE_MAX + 2);
    snprintf(path, sizeof path, "%s/pass", tmpdir);
    write_text(path, "s3cret\r\n", 8, 0600);
    unsetenv("CONSENT_PASSPHRASE");
    ck_assert_int_eq(wallet_passphrase(out, err, path, 0), 0);
    ck_assert_str_eq(out, "s3cret");
    setenv("CONSENT_PASSPHRASE", "from-env", 1);
    ck_assert_int_eq(wallet_passphrase(out, err, path, 0), 0);   /* file wins */
    ck_assert_str_eq(out, "s3cret");
    ck_assert_int_eq(wallet_passphrase(out, err, NULL, 1), 0);
    ck_assert_str_eq(out, "from-env");
    setenv("CONSENT_PASSPHRASE", "", 1);
    ck_assert_int_eq(wallet_passphrase(out, err, NULL, 0), CHAIN_EINVAL);
    write_text(path, "\n", 1, 0600);
    ck_assert_int_eq(wallet_passphrase(out, err, path, 0), CHAIN_EINVAL);
    write_text(path, "", 0, 0600);
    ck_assert_int_eq(wallet_passphrase(out, err, path, 0), CHAIN_EINVAL);
    memset(big, 'x', WALLET_PASSPHRASE_MAX + 1);
    write_text(path, big, WALLET_PASSPHRASE_MAX + 1, 0600);
    ck_assert_int_eq(wallet_passphrase(out, err, path, 0), CHAIN_EBOUNDS);
    big[WALLET_PASSPHRASE_MAX + 1] = 0;
    setenv("CONSENT_PASSPHRASE", big, 1);
    ck_assert_int_eq(wallet_passphrase(out, err, NULL, 0), CHAIN_EBOUNDS);
    write_text(path, big, WALLET_PASSPHRASE_MAX, 0600);   /* exactly the limit */
    ck_assert_int_eq(wallet_passphrase(out, err, path, 0), 0);
    ck_assert_uint_eq(strlen(out), WALLET_PASSPHRASE_MAX);
    snprintf(path, sizeof path, "%s/none", tmpdir);
    ck_assert_int_eq(wallet_passphrase(out, err, path, 0), CHAIN_ENOTFOUND);
    free(big);
}
END_TEST

/* ------------------------------------------------------------ transactions */

static void fill_grant(chain_grant *g, const chain_key *patient)
{
    chain_key *gw = fixed_key(3);
    memset(g, 0, sizeof *g);
    chain_key_pubkey(patient, &g->patient);
    chain_key_pubkey(gw, &g->grantee);
    g->n_scopes = 2;
    strcpy(g->scopes[0].s, "Observation");
    strcpy(g->scopes[1].s, "Condition");
    g->n_purposes = 1;
    strcpy(g->purposes[0].s, "TREAT");
    g->not_before = 1795000000;
    g->not_after = 1795000000 + 86400;
    chain_key_destroy(gw);
}

/* Decodes buf and checks the envelope, the signature and the id. */
static void check_sealed(const uint8_t *buf, size_t len, const chain_hash *id, const chain_tx *want,
                         chain_tx *back)
{
    chain_hash msg, h;
    ck_assert_int_eq(chain_tx_decode(back, buf, len), 0);
    ck_assert_str_eq(back->chain_id, want->chain_id);
    ck_assert_int_eq(back->type, want->type);
    ck_assert_mem_eq(back->signer.b, want->signer.b, CHAIN_KEY_LEN);
    ck_assert_uint_eq(back->nonce, want->nonce);
    ck_assert_uint_eq(back->created_at, want->created_at);
    ck_assert_int_eq(chain_tx_sighash(&msg, back), 0);
    ck_assert_int_eq(chain_verify(&back->signer, &back->sig, &msg), 0);
    ck_assert_int_eq(chain_tx_check(back, want->chain_id, want->created_at), 0);
    chain_tx_hash(&h, buf, len);
    ck_assert_mem_eq(h.b, id->b, CHAIN_HASH_LEN);
}

START_TEST(tx_grant_round_trip)
{
    chain_key *k = fixed_key(1);
    chain_grant g;
    chain_tx tx, back;
    uint8_t buf[CHAIN_TX_BYTES_MAX];
    size_t len = 0;
    chain_hash id;
    uint32_t i;
    fill_grant(&g, k);
    ck_assert_int_eq(wallet_tx_grant(&tx, "consent-local", k, 5, 1795000100, &g), 0);
    ck_assert_int_eq(wallet_tx_seal(buf, sizeof buf, &len, &id, &tx, k), 0);
    check_sealed(buf, len, &id, &tx, &back);
    ck_assert_mem_eq(back.body.grant.patient.b, g.patient.b, CHAIN_KEY_LEN);
    ck_assert_mem_eq(back.body.grant.grantee.b, g.grantee.b, CHAIN_KEY_LEN);
    ck_assert_uint_eq(back.body.grant.n_scopes, 2);
    for (i = 0; i < g.n_scopes; i++)
        ck_assert_str_eq(back.body.grant.scopes[i].s, g.scopes[i].s);
    ck_assert_uint_eq(back.body.grant.n_purposes, 1);
    ck_assert_str_eq(back.body.grant.purposes[0].s, "TREAT");
    ck_assert_uint_eq(back.body.grant.not_before, g.not_before);
    ck_assert_uint_eq(back.body.grant.not_after, g.not_after);
    chain_key_destroy(k);
}
END_TEST

START_TEST(tx_revoke_guardian_access_round_trip)
{
    chain_key *k = fixed_key(1), *other = fixed_key(2);
    chain_tx tx, back;
    chain_hash gid, id;
    chain_pubkey gk;
    chain_access_record rec;
    uint8_t buf[CHAIN_TX_BYTES_MAX];
    size_t len = 0;
    chain_sha256(&gid, "grant", 5);
    ck_assert_int_eq(wallet_tx_revoke(&tx, "consent-local", k, 6, 1795000100, &gid), 0);
    ck_assert_int_eq(wallet_tx_seal(buf, sizeof buf, &len, &id, &tx, k), 0);
    check_sealed(buf, len, &id, &tx, &back);
    ck_assert_mem_eq(back.body.revoke.grant_id.b, gid.b, CHAIN_HASH_LEN);

    chain_key_pubkey(other, &gk);
    ck_assert_int_eq(wallet_tx_set_guardian(&tx, "consent-local", k, 7, 1795000100, &gk, 1), 0);
    ck_assert_int_eq(wallet_tx_seal(buf, sizeof buf, &len, &id, &tx, k), 0);
    check_sealed(buf, len, &id, &tx, &back);
    ck_assert_mem_eq(back.body.set_guardian.guardian.b, gk.b, CHAIN_KEY_LEN);
    ck_assert_int_eq(back.body.set_guardian.remove, 1);

    memset(&rec, 0, sizeof rec);
    rec.grant_id = gid;
    strcpy(rec.scope.s, "Observation");
    strcpy(rec.purpose.s, "TREAT");
    chain_sha256(&rec.request_hash, "req", 3);
    ck_assert_int_eq(wallet_tx_access_record(&tx, "consent-local", other, 1, 1795000100, &rec), 0);
    ck_assert_int_eq(wallet_tx_seal(buf, sizeof buf, &len, &id, &tx, other), 0);
    check_sealed(buf, len, &id, &tx, &back);
    ck_assert_str_eq(back.body.access_record.scope.s, "Observation");
    ck_assert_mem_eq(back.body.access_record.request_hash.b, rec.request_hash.b, CHAIN_HASH_LEN);
    chain_key_destroy(k);
    chain_key_destroy(other);
}
END_TEST

START_TEST(tx_build_errors)
{
    chain_key *k = fixed_key(1);
    chain_grant g;
    chain_tx tx;
    chain_hash id;
    uint8_t buf[CHAIN_TX_BYTES_MAX];
    size_t len = 0;
    fill_grant(&g, k);
    g.not_after = g.not_before;
    ck_assert_int_eq(wallet_tx_grant(&tx, "consent-local", k, 1, 1, &g), CHAIN_EBOUNDS);
    fill_grant(&g, k);
    g.n_scopes = 0;
    ck_assert_int_eq(wallet_tx_grant(&tx, "consent-local", k, 1, 1, &g), CHAIN_EBOUNDS);
    fill_grant(&g, k);
    g.n_purposes = CHAIN_PURPOSES_MAX + 1;
    ck_assert_int_eq(wallet_tx_grant(&tx, "consent-local", k, 1, 1, &g), CHAIN_EBOUNDS);
    fill_grant(&g, k);
    ck_assert_int_eq(wallet_tx_grant(&tx, "", k, 1, 1, &g), CHAIN_EINVAL);
    ck_assert_int_eq(wallet_tx_grant(&tx, "consent-local", k, 0, 1, &g), CHAIN_EINVAL);
    ck_assert_int_eq(wallet_tx_grant(&tx, "a-chain-id-that-is-far-too-long-x", k, 1, 1, &g),
                     CHAIN_EINVAL);
    /* An unknown code never leaves the wallet. */
    strcpy(g.scopes[1].s, "NotAScope");
    ck_assert_int_eq(wallet_tx_grant(&tx, "consent-local", k, 1, 1, &g), 0);
    ck_assert_int_ne(wallet_tx_seal(buf, sizeof buf, &len, &id, &tx, k), 0);
    /* Nor does a tx that does not fit the buffer. */
    fill_grant(&g, k);
    ck_assert_int_eq(wallet_tx_grant(&tx, "consent-local", k, 1, 1, &g), 0);
    ck_assert_int_ne(wallet_tx_seal(buf, 16, &len, &id, &tx, k), 0);
    chain_key_destroy(k);
}
END_TEST

/* ------------------------------------------------------------ parsing */

START_TEST(parse_times)
{
    uint64_t t = 0;
    ck_assert_int_eq(wallet_parse_time(&t, "1795000000"), 0);
    ck_assert_uint_eq(t, 1795000000);
    ck_assert_int_eq(wallet_parse_time(&t, "0"), 0);
    ck_assert_uint_eq(t, 0);
    ck_assert_int_eq(wallet_parse_time(&t, "1970-01-02"), 0);
    ck_assert_uint_eq(t, 86400);
    ck_assert_int_eq(wallet_parse_time(&t, "2026-01-31"), 0);
    ck_assert_uint_eq(t, 1769817600);
    ck_assert_int_eq(wallet_parse_time(&t, "2026-01-31T12:00:00Z"), 0);
    ck_assert_uint_eq(t, 1769817600 + 12 * 3600);
    ck_assert_int_eq(wallet_parse_time(&t, "2026-01-31T12:00:01.250Z"), 0);
    ck_assert_uint_eq(t, 1769817600 + 12 * 3600 + 1);
    ck_assert_int_eq(wallet_parse_time(&t, "2026-01-31T12:00:00+00:00"), 0);
    ck_assert_uint_eq(t, 1769817600 + 12 * 3600);
    ck_assert_int_eq(wallet_parse_time(&t, "2024-02-29"), 0);   /* leap day */
}
END_TEST

START_TEST(parse_time_errors)
{
    static const char *const bad[] = {
        "", "abc", "12a", "-5", "99999999999999999999999", "2026-02-30", "2025-02-29",
        "2026-13-01", "2026-00-10", "2026-1-5", "2026-01-31T25:00:00Z", "2026-01-31T12:60:00Z",
        "2026-01-31T12:00:00", "2026-01-31T12:00:00+02:00", "2026-01-31T12:00Z",
        "2026-01-31T12:00:00.Z", "1969-12-31", "2026-01-31 ", "2026-01-31X", " 2026-01-31",
    };
    uint64_t t = 42;
    size_t i;
    for (i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        ck_assert_msg(wallet_parse_time(&t, bad[i]) == CHAIN_EINVAL, "accepted \"%s\"", bad[i]);
        ck_assert_uint_eq(t, 42);
    }
    ck_assert_int_eq(wallet_parse_time(&t, NULL), CHAIN_EINVAL);
}
END_TEST

START_TEST(parse_numbers_and_keys)
{
    uint64_t v = 0;
    chain_pubkey pk;
    chain_hash h;
    char hex[65];
    ck_assert_int_eq(wallet_parse_u64(&v, "18446744073709551615"), 0);
    ck_assert_uint_eq(v, UINT64_MAX);
    ck_assert_int_eq(wallet_parse_u64(&v, "18446744073709551616"), CHAIN_EINVAL);
    ck_assert_int_eq(wallet_parse_u64(&v, "+1"), CHAIN_EINVAL);
    ck_assert_int_eq(wallet_parse_u64(&v, " 1"), CHAIN_EINVAL);
    ck_assert_int_eq(wallet_parse_u64(&v, ""), CHAIN_EINVAL);
    memset(hex, 'a', 64);
    hex[64] = 0;
    ck_assert_int_eq(wallet_parse_pubkey(&pk, hex), 0);
    ck_assert_uint_eq(pk.b[0], 0xaa);
    memset(hex, 'A', 64);
    ck_assert_int_eq(wallet_parse_hash(&h, hex), 0);
    ck_assert_uint_eq(h.b[31], 0xaa);
    hex[10] = 'g';
    ck_assert_int_eq(wallet_parse_hash(&h, hex), CHAIN_EINVAL);
    hex[63] = 0;
    ck_assert_int_eq(wallet_parse_pubkey(&pk, hex), CHAIN_EINVAL);
    ck_assert_int_eq(wallet_parse_pubkey(&pk, NULL), CHAIN_EINVAL);
}
END_TEST

START_TEST(parse_code_lists)
{
    chain_code codes[CHAIN_SCOPES_MAX + 1];
    char err[WALLET_ERR_LEN], many[1024] = "";
    uint32_t n = 0, i;
    ck_assert_int_eq(wallet_parse_codes(codes, &n, CHAIN_SCOPES_MAX, "Observation,Condition",
                                        chain_scope_valid, err), 0);
    ck_assert_uint_eq(n, 2);
    ck_assert_str_eq(codes[1].s, "Condition");
    ck_assert_int_eq(wallet_parse_codes(codes, &n, 8, "TREAT,DUO:0000042", chain_purpose_valid, err), 0);
    ck_assert_uint_eq(n, 2);
    n = 99;
    ck_assert_int_eq(wallet_parse_codes(codes, &n, 8, "", chain_scope_valid, err), CHAIN_EINVAL);
    ck_assert_int_eq(wallet_parse_codes(codes, &n, 8, "Observation,,Condition", chain_scope_valid, err),
                     CHAIN_EINVAL);
    ck_assert_int_eq(wallet_parse_codes(codes, &n, 8, "Observation,", chain_scope_valid, err),
                     CHAIN_EINVAL);
    ck_assert_int_eq(wallet_parse_codes(codes, &n, 8, "Observation,Nope", chain_scope_valid, err),
                     CHAIN_ECODE);
    ck_assert_ptr_nonnull(strstr(err, "Nope"));
    ck_assert_int_eq(wallet_parse_codes(codes, &n, 8, "TREAT,TREAT", chain_purpose_valid, err),
                     CHAIN_EINVAL);
    ck_assert_int_eq(wallet_parse_codes(codes, &n, 8, "treat", chain_purpose_valid, err), CHAIN_ECODE);
    for (i = 0; i < 17; i++) {
        static const char *const s[] = {"AllergyIntolerance", "CarePlan", "CareTeam",
            "ClinicalImpression", "Condition", "DetectedIssue", "DiagnosticReport",
            "DocumentReference", "Encounter", "EpisodeOfCare", "FamilyMemberHistory", "Goal",
            "ImagingStudy", "Immunization", "Media", "Observation", "Patient"};
        strcat(many, i ? "," : "");
        strcat(many, s[i]);
    }
    ck_assert_int_eq(wallet_parse_codes(codes, &n, CHAIN_SCOPES_MAX, many, chain_scope_valid, err),
                     CHAIN_EBOUNDS);
    ck_assert_uint_eq(n, 99);   /* untouched on failure */
}
END_TEST

static const wallet_opt_spec SPEC[] = {{"help", 0}, {"wait", 0}, {"node", 1}, {"days", 1}};

START_TEST(args_accepts)
{
    wallet_args a;
    char err[WALLET_ERR_LEN];
    char *argv[] = {"revoke", "--node", "http://x:1", "abc", "--wait", "--days=3", "--", "--x"};
    ck_assert_int_eq(wallet_args_parse(&a, err, SPEC, 4, 8, argv), 0);
    ck_assert_int_eq(a.n_pos, 3);
    ck_assert_str_eq(a.pos[0], "revoke");
    ck_assert_str_eq(a.pos[1], "abc");
    ck_assert_str_eq(a.pos[2], "--x");
    ck_assert_str_eq(wallet_args_get(&a, SPEC, 4, "node"), "http://x:1");
    ck_assert_str_eq(wallet_args_get(&a, SPEC, 4, "days"), "3");
    ck_assert_str_eq(wallet_args_get(&a, SPEC, 4, "wait"), "");
    ck_assert_ptr_null(wallet_args_get(&a, SPEC, 4, "help"));
    ck_assert_ptr_null(wallet_args_get(&a, SPEC, 4, "nosuch"));
    {
        char *h[] = {"-h"};
        ck_assert_int_eq(wallet_args_parse(&a, err, SPEC, 4, 1, h), 0);
        ck_assert_ptr_nonnull(wallet_args_get(&a, SPEC, 4, "help"));
    }
}
END_TEST

START_TEST(args_errors)
{
    wallet_args a;
    char err[WALLET_ERR_LEN];
    char *unknown[] = {"list", "--bogus"};
    char *missing[] = {"list", "--node"};
    char *twice[] = {"--wait", "--wait"};
    char *flagval[] = {"--wait=yes"};
    char *shortopt[] = {"-x"};
    char *many[WALLET_ARGS_POS_MAX + 1];
    int i;
    ck_assert_int_eq(wallet_args_parse(&a, err, SPEC, 4, 2, unknown), WALLET_EUSAGE);
    ck_assert_ptr_nonnull(strstr(err, "--bogus"));
    ck_assert_int_eq(wallet_args_parse(&a, err, SPEC, 4, 2, missing), WALLET_EUSAGE);
    ck_assert_ptr_nonnull(strstr(err, "needs a value"));
    ck_assert_int_eq(wallet_args_parse(&a, err, SPEC, 4, 2, twice), WALLET_EUSAGE);
    ck_assert_int_eq(wallet_args_parse(&a, err, SPEC, 4, 1, flagval), WALLET_EUSAGE);
    ck_assert_int_eq(wallet_args_parse(&a, err, SPEC, 4, 1, shortopt), WALLET_EUSAGE);
    for (i = 0; i <= WALLET_ARGS_POS_MAX; i++)
        many[i] = "x";
    ck_assert_int_eq(wallet_args_parse(&a, err, SPEC, 4, WALLET_ARGS_POS_MAX, many), 0);
    ck_assert_int_eq(wallet_args_parse(&a, err, SPEC, 4, WALLET_ARGS_POS_MAX + 1, many),
                     WALLET_EUSAGE);
}
END_TEST

/* wallet_args_command: a command runs (0), --help answers 1, and a bad
 * option or no command at all is WALLET_EUSAGE with a reason. */
START_TEST(args_command)
{
    wallet_args a;
    char err[WALLET_ERR_LEN];
    char *run[] = {"list", "--wait"};
    char *help[] = {"--help"};
    char *none[] = {"--wait"};
    char *bad[] = {"list", "--bogus"};
    ck_assert_int_eq(wallet_args_command(&a, err, SPEC, 4, 2, run, "usage: test\n"), 0);
    ck_assert_str_eq(a.pos[0], "list");
    ck_assert_int_eq(wallet_args_command(&a, err, SPEC, 4, 1, help, "usage: test\n"), 1);
    ck_assert_int_eq(wallet_args_command(&a, err, SPEC, 4, 1, none, "usage: test\n"), WALLET_EUSAGE);
    ck_assert_str_eq(err, "no command");
    ck_assert_int_eq(wallet_args_command(&a, err, SPEC, 4, 0, none, "usage: test\n"), WALLET_EUSAGE);
    ck_assert_int_eq(wallet_args_command(&a, err, SPEC, 4, 2, bad, "usage: test\n"), WALLET_EUSAGE);
    ck_assert_ptr_nonnull(strstr(err, "--bogus"));
}
END_TEST

START_TEST(client_urls)
{
    wallet_client c;
    ck_assert_int_eq(wallet_client_init(&c, "http://127.0.0.1:7700"), 0);
    ck_assert_str_eq(c.host, "127.0.0.1");
    ck_assert_str_eq(c.port, "7700");
    ck_assert_str_eq(c.prefix, "");
    ck_assert_int_eq(wallet_client_init(&c, "node.example/api/"), 0);
    ck_assert_str_eq(c.host, "node.example");
    ck_assert_str_eq(c.port, "80");
    ck_assert_str_eq(c.prefix, "/api");
    ck_assert_int_eq(wallet_client_init(&c, "http://[::1]:8080"), 0);
    ck_assert_str_eq(c.host, "::1");
    ck_assert_str_eq(c.port, "8080");
    ck_assert_int_eq(wallet_client_init(&c, "https://x:1"), CHAIN_EINVAL);
    ck_assert_int_eq(wallet_client_init(&c, "http://x:0"), CHAIN_EINVAL);
    ck_assert_int_eq(wallet_client_init(&c, "http://x:65536"), CHAIN_EINVAL);
    ck_assert_int_eq(wallet_client_init(&c, "http://x:"), CHAIN_EINVAL);
    ck_assert_int_eq(wallet_client_init(&c, "http://:80"), CHAIN_EINVAL);
    ck_assert_int_eq(wallet_client_init(&c, "http://[::1"), CHAIN_EINVAL);
    ck_assert_int_eq(wallet_client_init(&c, "http://x:12ab"), CHAIN_EINVAL);
}
END_TEST

/* ------------------------------------------------------------ HTTP parser */

/* Feeds text in pieces of `step` bytes (0: all at once), then EOF if eof. */
static int parse_canned(wallet_http_response *r, const char *text, size_t len, size_t step, int eof,
                        size_t body_max)
{
    wallet_http_parser *p = wallet_http_parser_create(body_max);
    size_t off = 0;
    int rc = 0;
    ck_assert_ptr_nonnull(p);
    while (rc == 0 && off < len) {
        size_t n = step && len - off > step ? step : len - off;
        rc = wallet_http_parser_feed(p, (const uint8_t *)text + off, n);
        off += n;
    }
    if (rc == 0 && eof)
        rc = wallet_http_parser_feed(p, NULL, 0);
    if (rc == 1)
        ck_assert_int_eq(wallet_http_parser_take(p, r), 0);
    else
        ck_assert_int_ne(wallet_http_parser_take(p, r), 0);
    wallet_http_parser_destroy(p);
    return rc;
}

static const char RESP_LEN[] = "HTTP/1.1 202 Accepted\r\nContent-Type: application/json\r\n"
                               "Content-Length: 13\r\n\r\n{\"hash\":\"ab\"}";
static const char RESP_CHUNKED[] = "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n"
                                   "content-type: text/plain\r\n\r\n"
                                   "5\r\nhello\r\n7\r\n, world\r\n0\r\n\r\n";
static const char RESP_CLOSE[] = "HTTP/1.0 404 Not Found\r\n\r\n{\"error\":\"no\"}";

START_TEST(http_content_length)
{
    wallet_http_response r;
    size_t step;
    for (step = 0; step < 8; step++) {
        ck_assert_int_eq(parse_canned(&r, RESP_LEN, strlen(RESP_LEN), step, 0, 1024), 1);
        ck_assert_int_eq(r.status, 202);
        ck_assert_str_eq(r.content_type, "application/json");
        ck_assert_uint_eq(r.body_len, 13);
        ck_assert_str_eq(r.body, "{\"hash\":\"ab\"}");
        wallet_http_response_free(&r);
    }
}
END_TEST

START_TEST(http_chunked)
{
    wallet_http_response r;
    size_t step;
    for (step = 0; step < 5; step++) {
        ck_assert_int_eq(parse_canned(&r, RESP_CHUNKED, strlen(RESP_CHUNKED), step, 0, 1024), 1);
        ck_assert_int_eq(r.status, 200);
        ck_assert_str_eq(r.content_type, "text/plain");
        ck_assert_str_eq(r.body, "hello, world");
        wallet_http_response_free(&r);
    }
}
END_TEST

START_TEST(http_until_close_and_empty)
{
    wallet_http_response r;
    static const char nobody[] = "HTTP/1.1 204 No Content\r\n\r\n";
    ck_assert_int_eq(parse_canned(&r, RESP_CLOSE, strlen(RESP_CLOSE), 0, 0, 1024), 0);
    ck_assert_int_eq(parse_canned(&r, RESP_CLOSE, strlen(RESP_CLOSE), 3, 1, 1024), 1);
    ck_assert_int_eq(r.status, 404);
    ck_assert_str_eq(r.body, "{\"error\":\"no\"}");
    wallet_http_response_free(&r);
    ck_assert_int_eq(parse_canned(&r, nobody, strlen(nobody), 0, 0, 1024), 1);
    ck_assert_int_eq(r.status, 204);
    ck_assert_uint_eq(r.body_len, 0);
    ck_assert_str_eq(r.body, "");
    wallet_http_response_free(&r);
}
END_TEST

START_TEST(http_truncated)
{
    wallet_http_response r;
    size_t cut;
    /* Every proper prefix: needs more bytes, and at EOF is an error. */
    for (cut = 0; cut < strlen(RESP_LEN); cut++) {
        ck_assert_int_eq(parse_canned(&r, RESP_LEN, cut, 0, 0, 1024), 0);
        ck_assert_int_eq(parse_canned(&r, RESP_LEN, cut, 0, 1, 1024), WALLET_EHTTP);
    }
    for (cut = 0; cut < strlen(RESP_CHUNKED); cut++)
        ck_assert_int_eq(parse_canned(&r, RESP_CHUNKED, cut, 0, 1, 1024), WALLET_EHTTP);
}
END_TEST

START_TEST(http_oversized)
{
    wallet_http_response r;
    char *big;
    size_t n = 0, i;
    ck_assert_int_eq(parse_canned(&r, RESP_LEN, strlen(RESP_LEN), 0, 0, 12), WALLET_ETOOBIG);
    ck_assert_int_eq(parse_canned(&r, RESP_LEN, strlen(RESP_LEN), 0, 0, 13), 1);
    wallet_http_response_free(&r);
    ck_assert_int_eq(parse_canned(&r, RESP_CHUNKED, strlen(RESP_CHUNKED), 1, 0, 11), WALLET_ETOOBIG);
    ck_assert_int_eq(parse_canned(&r, RESP_CLOSE, strlen(RESP_CLOSE), 0, 1, 5), WALLET_ETOOBIG);
    /* Headers beyond the limit. */
    big = malloc(2 * WALLET_HTTP_HEADERS_MAX);
    n += (size_t)snprintf(big, 64, "HTTP/1.1 200 OK\r\n");
    for (i = 0; n < WALLET_HTTP_HEADERS_MAX + WALLET_HTTP_HEADERS_MAX / 6; i++)
        n += (size_t)snprintf(big + n, 64, "X-Filler-%zu: %s\r\n", i, "abcdefghijklmnopqrstuvwxyz");
    n += (size_t)snprintf(big + n, 64, "Content-Length: 0\r\n\r\n");
    ck_assert_int_eq(parse_canned(&r, big, n, 1000, 0, 1024), WALLET_ETOOBIG);
    free(big);
}
END_TEST

START_TEST(http_garbage)
{
    static const char *const bad[] = {
        "BLAH\r\n\r\n", "HTTP/1.1 abc OK\r\n\r\n", "HTTP/1.1 200 OK\r\nContent-Length: x\r\n\r\n",
        "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n",
        "\x00\x01\x02\x03",
    };
    wallet_http_response r;
    size_t i;
    for (i = 0; i < sizeof bad / sizeof bad[0]; i++)
        ck_assert_msg(parse_canned(&r, bad[i], strlen(bad[i]) ? strlen(bad[i]) : 4, 0, 1, 1024) ==
                          WALLET_EHTTP, "accepted %zu", i);
}
END_TEST

START_TEST(http_ignores_bytes_after_response)
{
    wallet_http_response r;
    char text[512];
    snprintf(text, sizeof text, "%s%s", RESP_LEN, "HTTP/1.1 500 Oops\r\n\r\n");
    ck_assert_int_eq(parse_canned(&r, text, strlen(text), 0, 0, 1024), 1);
    ck_assert_int_eq(r.status, 202);
    wallet_http_response_free(&r);
}
END_TEST

/* The one-shot server's verdict: the client asked for the status route. */
static int is_status_request(const char *head, const void *arg)
{
    (void)arg;
    return strncmp(head, "GET /v1/status HTTP/1.1\r\n", 25) == 0 ? 0 : 3;
}

START_TEST(client_against_one_shot_server)
{
    wallet_client c;
    char url[64], err[WALLET_ERR_LEN], id[CHAIN_ID_LEN_MAX + 1];
    pid_t pid;
    int st = 0;
    int port = wfx_serve_once(&pid, "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\n"
                                "Transfer-Encoding: chunked\r\n\r\n"
                                "e\r\n{\"chain_id\": \"\r\n11\r\nconsent-local\", \"\r\n"
                                "b\r\nheight\": 3}\r\n0\r\n\r\n", is_status_request, NULL);
    snprintf(url, sizeof url, "http://127.0.0.1:%d", port);
    ck_assert_int_eq(wallet_client_init(&c, url), 0);
    ck_assert_int_eq(wallet_client_chain_id(&c, id, err), 0);
    ck_assert_str_eq(id, "consent-local");
    ck_assert_int_eq(waitpid(pid, &st, 0), pid);
    ck_assert(WIFEXITED(st) && WEXITSTATUS(st) == 0);

    port = wfx_serve_once(&pid, "HTTP/1.1 400 Bad Request\r\nContent-Length: 25\r\n\r\n"
                            "{\"error\": \"bad nonce x1\"}", is_status_request, NULL);
    snprintf(url, sizeof url, "http://127.0.0.1:%d", port);
    ck_assert_int_eq(wallet_client_init(&c, url), 0);
    ck_assert_int_eq(wallet_client_chain_id(&c, id, err), WALLET_ESTATUS);
    ck_assert_ptr_nonnull(strstr(err, "bad nonce x1"));
    waitpid(pid, &st, 0);

    /* The server is gone: nothing listens on that port now. */
    ck_assert_int_eq(wallet_client_chain_id(&c, id, err), WALLET_ENET);
}
END_TEST

/* ------------------------------------------------------------ testnet */

static void testnet_opts(wallet_testnet_opts *o)
{
    wallet_testnet_defaults(o);
    o->validators = 2;
    o->institutions = 1;
    o->port_base = 21000;
    o->time_ms = 1795000000000ull;
}

START_TEST(testnet_writes_a_loadable_network)
{
    wallet_testnet_opts o;
    chain_genesis *g = malloc(sizeof *g), *g2 = malloc(sizeof *g2);
    char err[WALLET_ERR_LEN], path[256], pass[WALLET_PASSPHRASE_MAX + 1];
    chain_key *k = NULL;
    chain_pubkey pk;
    json_error_t jerr;
    json_t *cfg;
    uint32_t i, j;
    testnet_opts(&o);
    ck_assert_msg(wallet_testnet_write(g, err, &o, tmpdir) == 0, "%s", err);
    snprintf(path, sizeof path, "%s/genesis.json", tmpdir);
    ck_assert_int_eq(chain_genesis_load(g2, path), 0);
    ck_assert_mem_eq(g->hash.b, g2->hash.b, CHAIN_HASH_LEN);
    ck_assert_uint_eq(g2->n_validators, 2);
    ck_assert_uint_eq(g2->n_institutions, 3);
    ck_assert_str_eq(g2->chain_id, "consent-local");
    ck_assert_str_eq(g2->institutions[2].name, "gateway-0");
    ck_assert_uint_eq(g2->institutions[2].roles, CHAIN_ROLE_GATEWAY | CHAIN_ROLE_GRANTEE);
    for (i = 0; i < 2; i++) {
        /* Each validator's key opens with its passphrase and matches genesis. */
        snprintf(path, sizeof path, "%s/node%u/passphrase", tmpdir, i);
        ck_assert_int_eq(file_mode(path), 0600);
        ck_assert_int_eq(wallet_passphrase(pass, err, path, 0), 0);
        snprintf(path, sizeof path, "%s/node%u/validator.key", tmpdir, i);
        ck_assert_int_eq(file_mode(path), 0600);
        ck_assert_int_eq(chain_keystore_load(&k, path, pass), 0);
        chain_key_pubkey(k, &pk);
        ck_assert_int_eq(chain_genesis_validator_index(g2, &pk), (int)i);
        chain_key_destroy(k);
        snprintf(path, sizeof path, "%s/node%u/config.json", tmpdir, i);
        cfg = json_load_file(path, 0, &jerr);
        ck_assert_ptr_nonnull(cfg);
        ck_assert_str_eq(json_string_value(json_object_get(cfg, "genesis")), "../genesis.json");
        ck_assert_str_eq(json_string_value(json_object_get(cfg, "api_listen")), g2->institutions[i].api_addr);
        ck_assert_str_eq(json_string_value(json_object_get(cfg, "p2p_listen")), g2->institutions[i].p2p_addr);
        json_decref(cfg);
        for (j = 0; j < i; j++) {
            ck_assert_str_ne(g2->institutions[i].api_addr, g2->institutions[j].api_addr);
            ck_assert_str_ne(g2->institutions[i].p2p_addr, g2->institutions[j].p2p_addr);
        }
        ck_assert_str_ne(g2->institutions[i].api_addr, g2->institutions[i].p2p_addr);
    }
    ck_assert_str_eq(g2->institutions[1].api_addr, "127.0.0.1:21001");
    ck_assert_str_eq(g2->institutions[1].p2p_addr, "127.0.0.1:21101");
    snprintf(path, sizeof path, "%s/institutions/gateway-0.passphrase", tmpdir);
    ck_assert_int_eq(file_mode(path), 0600);
    ck_assert_int_eq(wallet_passphrase(pass, err, path, 0), 0);
    snprintf(path, sizeof path, "%s/institutions/gateway-0.key", tmpdir);
    ck_assert_int_eq(chain_keystore_load(&k, path, pass), 0);
    chain_key_pubkey(k, &pk);
    ck_assert_mem_eq(pk.b, g2->institutions[2].key.b, CHAIN_KEY_LEN);
    chain_key_destroy(k);
    snprintf(path, sizeof path, "%s/node0", tmpdir);
    ck_assert_int_eq(file_mode(path), 0700);
    free(g);
    free(g2);
}
END_TEST

START_TEST(testnet_refuses_non_empty_dir)
{
    wallet_testnet_opts o;
    char err[WALLET_ERR_LEN], path[256];
    testnet_opts(&o);
    o.validators = 1;
    o.institutions = 0;
    snprintf(path, sizeof path, "%s/stray", tmpdir);
    write_text(path, "x", 1, 0644);
    ck_assert_int_eq(wallet_testnet_write(NULL, err, &o, tmpdir), CHAIN_EEXISTS);
    snprintf(path, sizeof path, "%s/genesis.json", tmpdir);
    ck_assert_int_ne(access(path, F_OK), 0);   /* nothing written */
    o.force = 1;
    ck_assert_int_eq(wallet_testnet_write(NULL, err, &o, tmpdir), 0);
    ck_assert_int_eq(access(path, F_OK), 0);
    /* An old chain's data is never written over, even with force. */
    snprintf(path, sizeof path, "%s/node0/data", tmpdir);
    ck_assert_int_eq(mkdir(path, 0700), 0);
    ck_assert_int_eq(wallet_testnet_write(NULL, err, &o, tmpdir), CHAIN_EEXISTS);
    ck_assert_ptr_nonnull(strstr(err, "older chain"));
}
END_TEST

START_TEST(testnet_option_errors)
{
    wallet_testnet_opts o;
    char err[WALLET_ERR_LEN];
    testnet_opts(&o);
    o.validators = 0;
    ck_assert_int_eq(wallet_testnet_write(NULL, err, &o, tmpdir), CHAIN_EINVAL);
    testnet_opts(&o);
    o.validators = WALLET_TESTNET_VALIDATORS_MAX + 1;
    ck_assert_int_eq(wallet_testnet_write(NULL, err, &o, tmpdir), CHAIN_EINVAL);
    testnet_opts(&o);
    o.institutions = WALLET_TESTNET_INSTITUTIONS_MAX + 1;
    ck_assert_int_eq(wallet_testnet_write(NULL, err, &o, tmpdir), CHAIN_EINVAL);
    testnet_opts(&o);
    o.port_base = 65535 - 100;   /* p2p of node 1 would be 65536 */
    ck_assert_int_eq(wallet_testnet_write(NULL, err, &o, tmpdir), CHAIN_EINVAL);
    testnet_opts(&o);
    o.port_base = 0;
    ck_assert_int_eq(wallet_testnet_write(NULL, err, &o, tmpdir), CHAIN_EINVAL);
    testnet_opts(&o);
    strcpy(o.chain_id, "Bad_ID");
    ck_assert_int_eq(wallet_testnet_write(NULL, err, &o, tmpdir), CHAIN_EINVAL);
    testnet_opts(&o);
    o.block_interval_ms = 0;
    ck_assert_int_eq(wallet_testnet_write(NULL, err, &o, tmpdir), CHAIN_EINVAL);
    testnet_opts(&o);
    o.time_ms = 0;
    ck_assert_int_eq(wallet_testnet_write(NULL, err, &o, tmpdir), CHAIN_EINVAL);
    testnet_opts(&o);
    ck_assert_int_ne(wallet_testnet_write(NULL, err, &o, "/proc/no-such/dir"), 0);
}
END_TEST

static Suite *wallet_suite(void)
{
    Suite *s = suite_create("wallet");
    TCase *ks = tcase_create("keystore"), *tx = tcase_create("tx"), *pa = tcase_create("parse");
    TCase *ht = tcase_create("http"), *tn = tcase_create("testnet");
    tcase_add_checked_fixture(ks, tmp_setup, tmp_teardown);
    tcase_add_checked_fixture(tn, tmp_setup, tmp_teardown);
    tcase_add_checked_fixture(pa, tmp_setup, tmp_teardown);
    tcase_add_test(ks, keystore_round_trip);
    tcase_add_test(ks, keystore_never_holds_the_secret_in_clear);
    tcase_add_test(ks, keystore_wrong_passphrase);
    tcase_add_test(ks, keystore_wrong_mode_refused);
    tcase_add_test(ks, keystore_missing_and_not_a_file);
    tcase_add_test(ks, keystore_truncated_refused);
    tcase_add_test(ks, keystore_damaged_refused);
    tcase_add_test(ks, keystore_sealed_part_damaged);
    tcase_add_test(ks, keystore_oversized_and_garbage_refused);
    tcase_add_test(ks, keystore_save_is_atomic_and_replaces);
    tcase_add_test(ks, key_load_messages);
    tcase_add_test(pa, passphrase_sources);
    tcase_add_test(tx, tx_grant_round_trip);
    tcase_add_test(tx, tx_revoke_guardian_access_round_trip);
    tcase_add_test(tx, tx_build_errors);
    tcase_add_test(pa, parse_times);
    tcase_add_test(pa, parse_time_errors);
    tcase_add_test(pa, parse_numbers_and_keys);
    tcase_add_test(pa, parse_code_lists);
    tcase_add_test(pa, args_accepts);
    tcase_add_test(pa, args_errors);
    tcase_add_test(pa, args_command);
    tcase_add_test(pa, client_urls);
    tcase_add_test(ht, http_content_length);
    tcase_add_test(ht, http_chunked);
    tcase_add_test(ht, http_until_close_and_empty);
    tcase_add_test(ht, http_truncated);
    tcase_add_test(ht, http_oversized);
    tcase_add_test(ht, http_garbage);
    tcase_add_test(ht, http_ignores_bytes_after_response);
    tcase_add_test(ht, client_against_one_shot_server);
    tcase_add_test(tn, testnet_writes_a_loadable_network);
    tcase_add_test(tn, testnet_refuses_non_empty_dir);
    tcase_add_test(tn, testnet_option_errors);
    suite_add_tcase(s, ks);
    suite_add_tcase(s, pa);
    suite_add_tcase(s, tx);
    suite_add_tcase(s, ht);
    suite_add_tcase(s, tn);
    return s;
}

int main(void)
{
    SRunner *sr = srunner_create(wallet_suite());
    int failed;
    signal(SIGPIPE, SIG_IGN);
    srunner_run_all(sr, CK_NORMAL);
    failed = srunner_ntests_failed(sr);
    srunner_free(sr);
    return failed ? EXIT_FAILURE : EXIT_SUCCESS;
}
