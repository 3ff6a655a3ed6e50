/* keystore.c — the encrypted key file (chain_keystore_save / _load).
 *
 * A key file holds one 32-byte secp256k1 secret, encrypted at rest. scrypt
 * (N=2^15, r=8, p=1, random 16-byte salt) stretches the passphrase into 64
 * bytes: the first 32 are the ChaCha20-Poly1305 key, the last 32 feed a
 * passphrase check value. The check lets load tell a wrong passphrase
 * (CHAIN_EPERM) from a file whose sealed part was damaged (CHAIN_EDECODE);
 * it reveals nothing an attacker could not learn from the AEAD tag anyway.
 *
 * Format, version 1 (JSON, one object, no other members allowed):
 *
 *   {"version": 1, "pubkey": "<64 hex>",
 *    "kdf": {"name": "scrypt", "n": 32768, "r": 8, "p": 1, "salt": "<32 hex>"},
 *    "cipher": {"name": "chacha20-poly1305", "nonce": "<24 hex>"},
 *    "check": "<64 hex>", "ciphertext": "<64 hex>", "tag": "<32 hex>"}
 *
 * check = SHA-256("consent-keystore-check" || dk[32..64]). The AEAD's
 * associated data is "consent-keystore-v1" || pubkey, so the public key shown
 * without a passphrase cannot be swapped; after decryption the secret must
 * yield that same public key.
 *
 * The file is written to a temporary file in the same folder (mode 0600),
 * fsynced and renamed over the target, so a crash leaves the old or the new
 * file, never half of one. Load refuses files that are not regular, not mode
 * 0600 or owned by another user, and anything larger than a key file can be.
 */
#include <assert.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <jansson.h>
#include <openssl/crypto.h>
#include <openssl/evp.h>
#include <openssl/rand.h>

#include "chain/chain.h"

#define KS_VERSION 1
#define KS_SALT_LEN 16
#define KS_NONCE_LEN 12
#define KS_TAG_LEN 16
#define KS_DK_LEN 64
#define KS_N 32768u
#define KS_R 8u
#define KS_P 1u
/* Bounds on parameters read back from a file, so a doctored file cannot make
 * load burn gigabytes or minutes. */
#define KS_N_MIN 1024u
#define KS_N_MAX 1048576u
#define KS_R_MAX 32u
#define KS_P_MAX 16u
#define KS_MEM_MAX (512ull * 1024 * 1024)
#define KS_FILE_BYTES_MAX 4096
#define KS_AAD_TAG "consent-keystore-v1"
#define KS_CHECK_TAG "consent-keystore-check"

typedef struct {
    uint64_t n;
    uint32_t r, p;
    uint8_t salt[KS_SALT_LEN];
    uint8_t nonce[KS_NONCE_LEN];
    chain_pubkey pub;
    uint8_t check[CHAIN_HASH_LEN];
    uint8_t ct[CHAIN_SECKEY_LEN];
    uint8_t tag[KS_TAG_LEN];
} ks_file;

/* scrypt's working memory is 128 * r * (N + p + 2) bytes; OpenSSL refuses
 * more than maxmem, so allow what the parameters need plus slack. */
static int ks_derive(uint8_t dk[KS_DK_LEN], const char *pass, const ks_file *f)
{
    uint64_t mem = 128ull * f->r * (f->n + f->p + 2) + (1u << 20);
    assert(f->n >= KS_N_MIN && f->n <= KS_N_MAX);
    assert(mem <= KS_MEM_MAX + (1u << 20));
    if (EVP_PBE_scrypt(pass, strlen(pass), f->salt, sizeof f->salt, f->n, f->r, f->p, mem, dk,
                       KS_DK_LEN) != 1)
        return CHAIN_ENOMEM;
    return 0;
}

static void ks_check_value(uint8_t out[CHAIN_HASH_LEN], const uint8_t dk[KS_DK_LEN])
{
    uint8_t buf[sizeof KS_CHECK_TAG - 1 + 32];
    chain_hash h;
    memcpy(buf, KS_CHECK_TAG, sizeof KS_CHECK_TAG - 1);
    memcpy(buf + sizeof KS_CHECK_TAG - 1, dk + 32, 32);
    chain_sha256(&h, buf, sizeof buf);
    memcpy(out, h.b, CHAIN_HASH_LEN);
    OPENSSL_cleanse(buf, sizeof buf);
}

static void ks_aad(uint8_t out[sizeof KS_AAD_TAG - 1 + CHAIN_KEY_LEN], const chain_pubkey *pub)
{
    memcpy(out, KS_AAD_TAG, sizeof KS_AAD_TAG - 1);
    memcpy(out + sizeof KS_AAD_TAG - 1, pub->b, CHAIN_KEY_LEN);
}

/* Seals or opens the secret with ChaCha20-Poly1305. enc=1 seals sec into
 * f->ct/f->tag; enc=0 opens f->ct into sec and fails on a bad tag. */
static int ks_aead(ks_file *f, uint8_t sec[CHAIN_SECKEY_LEN], const uint8_t key[32], int enc)
{
    uint8_t aad[sizeof KS_AAD_TAG - 1 + CHAIN_KEY_LEN];
    int len = 0, ok = 0;
    EVP_CIPHER_CTX *ctx = EVP_CIPHER_CTX_new();
    if (!ctx)
        return CHAIN_ENOMEM;
    ks_aad(aad, &f->pub);
    if (EVP_CipherInit_ex(ctx, EVP_chacha20_poly1305(), NULL, NULL, NULL, enc) != 1 ||
        EVP_CIPHER_CTX_ctrl(ctx, EVP_CTRL_AEAD_SET_IVLEN, KS_NONCE_LEN, NULL) != 1 ||
        EVP_CipherInit_ex(ctx, NULL, NULL, key, f->nonce, enc) != 1 ||
        EVP_CipherUpdate(ctx, NULL, &len, aad, (int)sizeof aad) != 1)
        goto out;
    if (enc) {
        ok = EVP_CipherUpdate(ctx, f->ct, &len, sec, CHAIN_SECKEY_LEN) == 1 &&
             len == CHAIN_SECKEY_LEN && EVP_CipherFinal_ex(ctx, f->ct + len, &len) == 1 &&
             EVP_CIPHER_CTX_ctrl(ctx, EVP_CTRL_AEAD_GET_TAG, KS_TAG_LEN, f->tag) == 1;
    } else {
        ok = EVP_CipherUpdate(ctx, sec, &len, f->ct, CHAIN_SECKEY_LEN) == 1 &&
             len == CHAIN_SECKEY_LEN &&
             EVP_CIPHER_CTX_ctrl(ctx, EVP_CTRL_AEAD_SET_TAG, KS_TAG_LEN, f->tag) == 1 &&
             EVP_CipherFinal_ex(ctx, sec + len, &len) == 1;
    }
out:
    EVP_CIPHER_CTX_free(ctx);
    if (!ok && !enc)
        OPENSSL_cleanse(sec, CHAIN_SECKEY_LEN);
    return ok ? 0 : (enc ? CHAIN_ENOMEM : CHAIN_EDECODE);
}

static char *ks_to_json(const ks_file *f)
{
    char pub[2 * CHAIN_KEY_LEN + 1], salt[2 * KS_SALT_LEN + 1], nonce[2 * KS_NONCE_LEN + 1];
    char check[2 * CHAIN_HASH_LEN + 1], ct[2 * CHAIN_SECKEY_LEN + 1], tag[2 * KS_TAG_LEN + 1];
    json_t *o;
    char *s;
    chain_hex(pub, f->pub.b, sizeof f->pub.b);
    chain_hex(salt, f->salt, sizeof f->salt);
    chain_hex(nonce, f->nonce, sizeof f->nonce);
    chain_hex(check, f->check, sizeof f->check);
    chain_hex(ct, f->ct, sizeof f->ct);
    chain_hex(tag, f->tag, sizeof f->tag);
    o = json_pack("{s:i, s:s, s:{s:s, s:I, s:i, s:i, s:s}, s:{s:s, s:s}, s:s, s:s, s:s}",
                  "version", KS_VERSION, "pubkey", pub, "kdf", "name", "scrypt", "n",
                  (json_int_t)f->n, "r", (int)f->r, "p", (int)f->p, "salt", salt, "cipher",
                  "name", "chacha20-poly1305", "nonce", nonce, "check", check, "ciphertext", ct,
                  "tag", tag);
    if (!o)
        return NULL;
    s = json_dumps(o, JSON_INDENT(2) | JSON_PRESERVE_ORDER);
    json_decref(o);
    return s;
}

/* Strict parse: every member present with the right type, no others, hex of
 * the exact length, parameters within bounds. CHAIN_EDECODE otherwise. */
static int ks_from_json(ks_file *f, const char *text, size_t len)
{
    json_error_t jerr;
    json_int_t version = 0, n = 0;
    int r = 0, p = 0;
    const char *kdf = NULL, *cipher = NULL, *pub = NULL, *salt = NULL, *nonce = NULL;
    const char *check = NULL, *ct = NULL, *tag = NULL;
    int rc = CHAIN_EDECODE;
    json_t *o = json_loadb(text, len, JSON_REJECT_DUPLICATES, &jerr);
    if (!o)
        return CHAIN_EDECODE;
    if (json_unpack_ex(o, &jerr, JSON_STRICT,
                       "{s:I, s:s, s:{s:s, s:I, s:i, s:i, s:s}, s:{s:s, s:s}, s:s, s:s, s:s}",
                       "version", &version, "pubkey", &pub, "kdf", "name", &kdf, "n", &n, "r", &r,
                       "p", &p, "salt", &salt, "cipher", "name", &cipher, "nonce", &nonce,
                       "check", &check, "ciphertext", &ct, "tag", &tag) != 0)
        goto out;
    if (version != KS_VERSION || strcmp(kdf, "scrypt") != 0 ||
        strcmp(cipher, "chacha20-poly1305") != 0)
        goto out;
    if (n < KS_N_MIN || n > KS_N_MAX || (n & (n - 1)) != 0 || r < 1 || (unsigned)r > KS_R_MAX ||
        p < 1 || (unsigned)p > KS_P_MAX || 128ull * (unsigned)r * ((uint64_t)n + (unsigned)p + 2) > KS_MEM_MAX)
        goto out;
    f->n = (uint64_t)n;
    f->r = (uint32_t)r;
    f->p = (uint32_t)p;
    if (chain_unhex(f->pub.b, sizeof f->pub.b, pub) || chain_unhex(f->salt, sizeof f->salt, salt) ||
        chain_unhex(f->nonce, sizeof f->nonce, nonce) ||
        chain_unhex(f->check, sizeof f->check, check) || chain_unhex(f->ct, sizeof f->ct, ct) ||
        chain_unhex(f->tag, sizeof f->tag, tag))
        goto out;
    rc = 0;
out:
    json_decref(o);
    return rc;
}

static int ks_write_all(int fd, const char *s, size_t len)
{
    size_t off = 0;
    while (off < len) {
        ssize_t w = write(fd, s + off, len - off);
        if (w < 0 && errno == EINTR)
            continue;
        if (w <= 0)
            return CHAIN_EIO;
        off += (size_t)w;
    }
    return 0;
}

/* fsync the folder so the rename itself survives a crash. */
static int ks_sync_dir(const char *path)
{
    char dir[PATH_MAX];
    const char *slash = strrchr(path, '/');
    int fd, rc;
    if (!slash)
        snprintf(dir, sizeof dir, ".");
    else if (slash == path)
        snprintf(dir, sizeof dir, "/");
    else
        snprintf(dir, sizeof dir, "%.*s", (int)(slash - path), path);
    fd = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (fd < 0)
        return CHAIN_EIO;
    rc = fsync(fd) == 0 ? 0 : CHAIN_EIO;
    close(fd);
    return rc;
}

static int ks_write_atomic(const char *path, const char *text)
{
    char tmp[PATH_MAX];
    int fd, rc;
    if (snprintf(tmp, sizeof tmp, "%s.tmp-XXXXXX", path) >= (int)sizeof tmp)
        return CHAIN_EINVAL;
    fd = mkostemp(tmp, O_CLOEXEC);   /* created 0600 */
    if (fd < 0)
        return errno == ENOENT ? CHAIN_ENOTFOUND : CHAIN_EIO;
    rc = fchmod(fd, 0600) == 0 ? 0 : CHAIN_EIO;
    if (!rc)
        rc = ks_write_all(fd, text, strlen(text));
    if (!rc)
        rc = ks_write_all(fd, "\n", 1);
    if (!rc && fsync(fd) != 0)
        rc = CHAIN_EIO;
    if (close(fd) != 0 && !rc)
        rc = CHAIN_EIO;
    if (!rc && rename(tmp, path) != 0)
        rc = CHAIN_EIO;
    if (rc) {
        unlink(tmp);
        return rc;
    }
    return ks_sync_dir(path);
}

int chain_keystore_save(const char *path, const chain_key *key, const char *passphrase)
{
    ks_file f;
    uint8_t dk[KS_DK_LEN], sec[CHAIN_SECKEY_LEN];
    char *text = NULL;
    int rc;
    if (!path || !key || !passphrase)
        return CHAIN_EINVAL;
    memset(&f, 0, sizeof f);
    f.n = KS_N;
    f.r = KS_R;
    f.p = KS_P;
    chain_key_pubkey(key, &f.pub);
    if (RAND_bytes(f.salt, sizeof f.salt) != 1 || RAND_bytes(f.nonce, sizeof f.nonce) != 1)
        return CHAIN_ENOMEM;
    rc = ks_derive(dk, passphrase, &f);
    if (!rc) {
        ks_check_value(f.check, dk);
        chain_key_secret(key, sec);
        rc = ks_aead(&f, sec, dk, 1);
        OPENSSL_cleanse(sec, sizeof sec);
    }
    OPENSSL_cleanse(dk, sizeof dk);
    if (!rc) {
        text = ks_to_json(&f);
        rc = text ? ks_write_atomic(path, text) : CHAIN_ENOMEM;
    }
    free(text);
    return rc;
}

/* Opens path and checks it is a regular 0600 file of ours before reading a
 * byte of it; reads at most KS_FILE_BYTES_MAX. */
static int ks_read(const char *path, char *buf, size_t cap, size_t *len_out)
{
    struct stat st;
    size_t len = 0;
    int rc = 0;
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0)
        return errno == ENOENT ? CHAIN_ENOTFOUND : (errno == EACCES ? CHAIN_EPERM : CHAIN_EIO);
    if (fstat(fd, &st) != 0)
        rc = CHAIN_EIO;
    else if (!S_ISREG(st.st_mode))
        rc = CHAIN_EDECODE;
    else if ((st.st_mode & 07777) != 0600 || st.st_uid != geteuid())
        rc = CHAIN_EPERM;
    while (!rc && len < cap) {
        ssize_t n = read(fd, buf + len, cap - len);
        if (n < 0 && errno == EINTR)
            continue;
        if (n < 0)
            rc = CHAIN_EIO;
        if (n <= 0)
            break;
        len += (size_t)n;
    }
    close(fd);
    if (!rc && len == cap)
        rc = CHAIN_EDECODE;   /* larger than any key file */
    *len_out = len;
    return rc;
}

int chain_keystore_load(chain_key **out, const char *path, const char *passphrase)
{
    char text[KS_FILE_BYTES_MAX];
    uint8_t dk[KS_DK_LEN], check[CHAIN_HASH_LEN], sec[CHAIN_SECKEY_LEN];
    ks_file f;
    size_t len = 0;
    chain_key *key = NULL;
    chain_pubkey pub;
    int rc;
    if (!out || !path || !passphrase)
        return CHAIN_EINVAL;
    rc = ks_read(path, text, sizeof text, &len);
    if (!rc)
        rc = ks_from_json(&f, text, len);
    if (rc)
        return rc;
    rc = ks_derive(dk, passphrase, &f);
    if (rc)
        return rc;
    ks_check_value(check, dk);
    if (CRYPTO_memcmp(check, f.check, sizeof check) != 0)
        rc = CHAIN_EPERM;
    if (!rc)
        rc = ks_aead(&f, sec, dk, 0);
    OPENSSL_cleanse(dk, sizeof dk);
    if (!rc) {
        key = chain_key_create(sec);
        OPENSSL_cleanse(sec, sizeof sec);
        if (!key)
            return CHAIN_EDECODE;
        chain_key_pubkey(key, &pub);
        if (memcmp(pub.b, f.pub.b, sizeof pub.b) != 0) {
            chain_key_destroy(key);
            return CHAIN_EDECODE;
        }
        *out = key;
    }
    return rc;
}
