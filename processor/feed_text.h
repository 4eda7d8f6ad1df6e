/* feed_text.h - small helpers the issuer feed's pure modules share
 * (feed_token.c, feed_query.c, feed_outcome.c, feed_triage.c): a SHA-256
 * digest, a lower-case hex digit, a decimal number, and client text made
 * safe to echo in a message.
 *
 * Nothing here allocates, logs or does I/O.
 */
#ifndef CARDWATCH_FEED_TEXT_H
#define CARDWATCH_FEED_TEXT_H

#include <stddef.h>
#include <stdint.h>

#define FEED_SHA256_LEN 32 /* bytes of a SHA-256 digest */

/* Writes the SHA-256 of p[0..len) into out. Returns 0, or -1 when the
 * digest fails. */
int feed_text_sha256(const void *p, size_t len, uint8_t out[FEED_SHA256_LEN]);

/* The value (0-15) of a lower-case hex digit; -1 for any other char. */
int feed_text_hex_val(char c);

/* Parses s[0..len) as a decimal uint64 (digits only, 1 to 20 of them, no
 * sign or space). Returns 0 with *out set, or -1 when it is not such a
 * number or does not fit 64 bits. */
int feed_text_parse_u64(const char *s, size_t len, uint64_t *out);

/* Replaces every byte of the NUL-terminated s that is not printable ASCII
 * (or is a quote or backslash) with '?', so that it can be echoed in a
 * message. */
void feed_text_ascii_only(char *s);

#endif
