/* pass.c — getting a passphrase and opening a key file with it.
 *
 * A passphrase comes from a file, the CONSENT_PASSPHRASE environment variable
 * or the terminal (echo off), in that order of preference. Key loading wraps
 * chain_keystore_load with messages a user can act on: chain/ returns
 * CHAIN_EPERM for both a wrong passphrase and a wrong file mode, so the mode
 * is looked at first to say which.
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <termios.h>
#include <unistd.h>

#include <openssl/crypto.h>

#include "wallet/wallet.h"

static void strip_eol(char *s)
{
    size_t n = strlen(s);
    while (n > 0 && (s[n - 1] == '\n' || s[n - 1] == '\r'))
        s[--n] = 0;
}

/* Reads one line (at most WALLET_PASSPHRASE_MAX bytes) from f. */
static int read_line(char *out, char *err, FILE *f, const char *what)
{
    char buf[WALLET_PASSPHRASE_MAX + 2];
    if (!fgets(buf, sizeof buf, f)) {
        snprintf(err, WALLET_ERR_LEN, "no passphrase in %s", what);
        return CHAIN_EINVAL;
    }
    if (strlen(buf) > WALLET_PASSPHRASE_MAX && buf[strlen(buf) - 1] != '\n') {
        OPENSSL_cleanse(buf, sizeof buf);
        snprintf(err, WALLET_ERR_LEN, "passphrase in %s longer than %d bytes", what,
                 WALLET_PASSPHRASE_MAX);
        return CHAIN_EBOUNDS;
    }
    strip_eol(buf);
    memcpy(out, buf, strlen(buf) + 1);
    OPENSSL_cleanse(buf, sizeof buf);
    return 0;
}

static int from_file(char *out, char *err, const char *path)
{
    int rc;
    FILE *f = fopen(path, "r");
    if (!f) {
        snprintf(err, WALLET_ERR_LEN, "passphrase file %.200s: %s", path, strerror(errno));
        return errno == ENOENT ? CHAIN_ENOTFOUND : CHAIN_EIO;
    }
    rc = read_line(out, err, f, "passphrase file");
    fclose(f);
    return rc;
}

/* Prompts on /dev/tty with echo off; restores the terminal whatever happens. */
static int from_tty(char *out, char *err, const char *prompt)
{
    struct termios old, quiet;
    int rc, fd;
    FILE *tty = fopen("/dev/tty", "r+");
    if (!tty) {
        snprintf(err, WALLET_ERR_LEN,
                 "no passphrase: use --passphrase-file, CONSENT_PASSPHRASE or a terminal");
        return CHAIN_EINVAL;
    }
    fd = fileno(tty);
    if (tcgetattr(fd, &old) != 0) {
        fclose(tty);
        snprintf(err, WALLET_ERR_LEN, "cannot switch terminal echo off");
        return CHAIN_EIO;
    }
    quiet = old;
    quiet.c_lflag &= ~(tcflag_t)ECHO;
    fputs(prompt, tty);
    fflush(tty);
    tcsetattr(fd, TCSAFLUSH, &quiet);
    rc = read_line(out, err, tty, "terminal input");
    tcsetattr(fd, TCSAFLUSH, &old);
    fputs("\n", tty);
    fclose(tty);
    return rc;
}

static int prompt(char *out, char *err, int confirm)
{
    char again[WALLET_PASSPHRASE_MAX + 1];
    int rc = from_tty(out, err, "Passphrase: ");
    if (rc || !confirm)
        return rc;
    rc = from_tty(again, err, "Passphrase again: ");
    if (!rc && strcmp(out, again) != 0) {
        snprintf(err, WALLET_ERR_LEN, "the passphrases differ");
        rc = CHAIN_EINVAL;
    }
    OPENSSL_cleanse(again, sizeof again);
    return rc;
}

int wallet_passphrase(char *out, char *err, const char *file, int confirm)
{
    const char *env = getenv("CONSENT_PASSPHRASE");
    int rc;
    if (file) {
        rc = from_file(out, err, file);
    } else if (env) {
        if (strlen(env) > WALLET_PASSPHRASE_MAX) {
            snprintf(err, WALLET_ERR_LEN, "CONSENT_PASSPHRASE longer than %d bytes",
                     WALLET_PASSPHRASE_MAX);
            return CHAIN_EBOUNDS;
        }
        memcpy(out, env, strlen(env) + 1);
        rc = 0;
    } else {
        rc = prompt(out, err, confirm);
    }
    if (!rc && out[0] == 0) {
        snprintf(err, WALLET_ERR_LEN, "empty passphrase");
        rc = CHAIN_EINVAL;
    }
    return rc;
}

int wallet_key_load(chain_key **out, char *err, const char *path, const char *passphrase)
{
    struct stat st;
    int rc;
    if (stat(path, &st) != 0) {
        snprintf(err, WALLET_ERR_LEN, "key file %.200s: %s", path, strerror(errno));
        return errno == ENOENT ? CHAIN_ENOTFOUND : CHAIN_EIO;
    }
    if ((st.st_mode & 07777) != 0600) {
        snprintf(err, WALLET_ERR_LEN, "key file %.200s has mode %03o; it must be 0600 (chmod 600)",
                 path, (unsigned)(st.st_mode & 07777));
        return CHAIN_EPERM;
    }
    rc = chain_keystore_load(out, path, passphrase);
    if (rc == CHAIN_EPERM)
        snprintf(err, WALLET_ERR_LEN, "wrong passphrase for %.200s (or not your file)", path);
    else if (rc == CHAIN_EDECODE)
        snprintf(err, WALLET_ERR_LEN, "key file %.200s is damaged or not a key file", path);
    else if (rc)
        snprintf(err, WALLET_ERR_LEN, "key file %.200s: %s", path, chain_strerror(rc));
    return rc;
}
