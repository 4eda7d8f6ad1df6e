/* feed_config.h - the issuer feed's own checks of its [feed] section and
 * of the tokens of [issuer ID] sections, and the TLS server context that
 * tls_cert and tls_key name.
 *
 * config_check() (config.c) knows nothing of the feed: the commands that
 * run or check the feed call feed_config_check() after it (main.c), and
 * feed_new() checks again.
 */
#ifndef CARDWATCH_FEED_CONFIG_H
#define CARDWATCH_FEED_CONFIG_H

#include <stddef.h>

#include <openssl/ssl.h>

#include "config.h"

/* The [feed] cross checks, run after config_check() by the commands that
 * start or check the feed: tls_cert and tls_key both set or both empty; a
 * feed listener needs at least one issuer token; each token hash is
 * well-formed and belongs to one issuer only. Returns 0, or -1 with a
 * message. */
int feed_config_check(const struct config *c, char *errbuf, size_t errlen);

/* A TLS server context for [feed] tls_cert (PEM chain) and tls_key (PEM):
 * TLS 1.2 or newer, no renegotiation, the server's cipher order; the key
 * must match the certificate. The caller owns it (SSL_CTX_free). Returns
 * NULL with a message naming the setting and OpenSSL's reason in errbuf. */
SSL_CTX *feed_tls_context(const char *cert, const char *key, char *errbuf,
                          size_t errlen);

#endif
