/* p2p_tls.c — TLS 1.3 for peer links: the context and its throwaway
 * certificate, and sessions on memory BIOs.
 *
 * The certificate is self-signed with a fresh Ed25519 key on every start and
 * nobody verifies it: TLS here provides confidentiality and a per-session
 * exporter secret, and identity is proven by the signed Hello that binds
 * the validator key to that exporter (see p2p.h). Session tickets and the
 * session cache are off, so no session is ever resumed and every link gets
 * a fresh exporter.
 */
#include <assert.h>
#include <stdio.h>

#include <openssl/err.h>
#include <openssl/evp.h>
#include <openssl/rand.h>
#include <openssl/x509.h>

#include "node/p2p.h"

#define CERT_VALID_S (10L * 365 * 24 * 3600)

static X509 *make_cert(EVP_PKEY *pkey) {
    X509 *x = X509_new();
    if (x == NULL) return NULL;
    uint8_t serial[8];
    int ok = RAND_bytes(serial, sizeof serial) == 1;
    uint64_t s = 0;
    for (size_t i = 0; i < sizeof serial; i++) s = s << 8 | serial[i];
    s >>= 1;   /* a positive INTEGER */
    ok = ok && X509_set_version(x, 2) == 1;
    ok = ok && ASN1_INTEGER_set_uint64(X509_get_serialNumber(x), s) == 1;
    ok = ok && X509_gmtime_adj(X509_getm_notBefore(x), -3600) != NULL;
    ok = ok && X509_gmtime_adj(X509_getm_notAfter(x), CERT_VALID_S) != NULL;
    ok = ok && X509_set_pubkey(x, pkey) == 1;
    X509_NAME *name = X509_get_subject_name(x);
    ok = ok && name != NULL &&
         X509_NAME_add_entry_by_txt(name, "CN", MBSTRING_ASC,
                                    (const unsigned char *)"consent-p2p", -1, -1, 0) == 1;
    ok = ok && X509_set_issuer_name(x, name) == 1;
    ok = ok && X509_sign(x, pkey, NULL) > 0;   /* Ed25519 takes no digest */
    if (!ok) {
        X509_free(x);
        return NULL;
    }
    return x;
}

static int ctx_setup(SSL_CTX *ctx, X509 *cert, EVP_PKEY *pkey) {
    int ok = SSL_CTX_set_min_proto_version(ctx, TLS1_3_VERSION) == 1;
    ok = ok && SSL_CTX_set_max_proto_version(ctx, TLS1_3_VERSION) == 1;
    ok = ok && SSL_CTX_use_certificate(ctx, cert) == 1;
    ok = ok && SSL_CTX_use_PrivateKey(ctx, pkey) == 1;
    ok = ok && SSL_CTX_check_private_key(ctx) == 1;
    ok = ok && SSL_CTX_set_num_tickets(ctx, 0) == 1;
    if (!ok) return -1;
    SSL_CTX_set_session_cache_mode(ctx, SSL_SESS_CACHE_OFF);
    SSL_CTX_set_options(ctx, SSL_OP_NO_TICKET);
    SSL_CTX_set_verify(ctx, SSL_VERIFY_NONE, NULL);
    return 0;
}

SSL_CTX *node__p2p_tls_ctx(void) {
    EVP_PKEY *pkey = EVP_PKEY_Q_keygen(NULL, NULL, "ED25519");
    X509 *cert = pkey ? make_cert(pkey) : NULL;
    SSL_CTX *ctx = cert ? SSL_CTX_new(TLS_method()) : NULL;
    if (ctx != NULL && ctx_setup(ctx, cert, pkey) != 0) {
        SSL_CTX_free(ctx);
        ctx = NULL;
    }
    X509_free(cert);      /* the context holds its own references */
    EVP_PKEY_free(pkey);
    if (ctx == NULL) ERR_clear_error();
    return ctx;
}

SSL *node__p2p_tls_new(SSL_CTX *ctx, int client) {
    assert(ctx != NULL);
    SSL *ssl = SSL_new(ctx);
    BIO *rbio = BIO_new(BIO_s_mem());
    BIO *wbio = BIO_new(BIO_s_mem());
    if (ssl == NULL || rbio == NULL || wbio == NULL) {
        SSL_free(ssl);
        BIO_free(rbio);
        BIO_free(wbio);
        ERR_clear_error();
        return NULL;
    }
    /* An empty memory BIO means "no data yet" (retry), not end of file. */
    BIO_set_mem_eof_return(rbio, -1);
    BIO_set_mem_eof_return(wbio, -1);
    SSL_set_bio(ssl, rbio, wbio);   /* ssl owns both now */
    if (client)
        SSL_set_connect_state(ssl);
    else
        SSL_set_accept_state(ssl);
    return ssl;
}

void node__p2p_tls_error(char *buf, size_t len) {
    assert(len > 0);
    unsigned long e = ERR_peek_last_error();
    if (e == 0)
        snprintf(buf, len, "TLS failure");
    else
        ERR_error_string_n(e, buf, len);
    ERR_clear_error();
}
