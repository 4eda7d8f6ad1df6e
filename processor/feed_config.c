/* feed_config.c - the issuer feed's checks of its configuration and its
 * TLS server context; see feed_config.h. */
#include "feed_config.h"

#include <stdio.h>

#include <openssl/err.h>

#include "feed_token.h"
#include "text.h"

int feed_config_check(const struct config *c, char *errbuf, size_t errlen)
{
    if ((c->feed_tls_cert[0] == '\0') != (c->feed_tls_key[0] == '\0')) {
        text_errf(errbuf, errlen,
                  "[feed] tls_cert and tls_key go together: "
                  "set both (HTTPS) or neither (plain HTTP)");
        return -1;
    }
    struct feed_tokens *t = feed_tokens_new(c, errbuf, errlen);
    if (t == NULL) {
        return -1;
    }
    size_t n = feed_tokens_count(t);
    feed_tokens_destroy(t);
    if (c->feed_listen[0] != '\0' && n == 0) {
        text_errf(errbuf, errlen,
                  "[feed] listen is set but no [issuer ID] "
                  "has a token_sha256: the feed would refuse everyone "
                  "(`cardwatch token` makes a token and its hash)");
        return -1;
    }
    return 0;
}

SSL_CTX *feed_tls_context(const char *cert, const char *key, char *errbuf,
                          size_t errlen)
{
    const char *what = "";
    SSL_CTX *ctx = SSL_CTX_new(TLS_server_method());
    if (ctx == NULL) {
        what = "cannot create a TLS context";
        goto err;
    }
    SSL_CTX_set_min_proto_version(ctx, TLS1_2_VERSION);
    SSL_CTX_set_options(ctx, SSL_OP_NO_RENEGOTIATION |
                                 SSL_OP_CIPHER_SERVER_PREFERENCE);
    if (SSL_CTX_use_certificate_chain_file(ctx, cert) != 1) {
        what = "cannot load [feed] tls_cert";
        goto err;
    }
    if (SSL_CTX_use_PrivateKey_file(ctx, key, SSL_FILETYPE_PEM) != 1) {
        what = "cannot load [feed] tls_key";
        goto err;
    }
    if (SSL_CTX_check_private_key(ctx) != 1) {
        what = "[feed] tls_key does not match tls_cert";
        goto err;
    }
    return ctx;
err : {
    char e[256];
    ERR_error_string_n(ERR_get_error(), e, sizeof(e));
    snprintf(errbuf, errlen, "feed: %s (%s)", what, e);
    ERR_clear_error();
    SSL_CTX_free(ctx);
    return NULL;
}
}
