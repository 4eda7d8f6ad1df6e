/* feed_token.h - who may ask the issuer feed (pure parts of feed.c's
 * authentication): bearer tokens and their table of hashes, the per-token
 * rate limiter, and the per-peer throttle of failed authentications.
 *
 * Nothing here does I/O, reads a clock or logs: time is passed in, results
 * go into memory the caller owns. Tokens are never stored: the
 * configuration holds their SHA-256 (`[issuer ID] token_sha256`), and a
 * presented token is hashed and compared with every configured hash in
 * constant time.
 */
#ifndef CARDWATCH_FEED_TOKEN_H
#define CARDWATCH_FEED_TOKEN_H

#include <stddef.h>
#include <stdint.h>

#include "config.h"

#define FEED_TOKEN_MAX 512  /* longest token looked at, bytes */
#define FEED_TOKEN_BYTES 32 /* random bytes in a `cardwatch token` token */
#define FEED_HASH_HEX 64    /* SHA-256 as lower-case hex */

/* ---- tokens ---- */

/* Writes the lower-case hex SHA-256 of tok[0..len) and a NUL into out.
 * Returns 0, or -1 when the digest fails (out is then ""). */
int feed_token_hash_hex(const void *tok, size_t len,
                        char out[FEED_HASH_HEX + 1]);

/* Makes a new token: the n random bytes in rnd (n <= 64) as base64url
 * without padding, into out (at least 4 * n / 3 + 2 bytes). Returns its
 * length, or -1 when out is too small. */
int feed_token_encode(const uint8_t *rnd, size_t n, char *out, size_t outlen);

/* The table of valid token hashes, each with its issuer. */
struct feed_tokens;

/* Builds the table from every [issuer ID] token_sha256 of c. Returns NULL
 * with a message in errbuf on allocation failure, a malformed hash (the
 * config parser normally refuses those first) or a hash given twice. An
 * empty table (no issuer has a token) is valid here. */
struct feed_tokens *feed_tokens_new(const struct config *c, char *errbuf,
                                    size_t errlen);

/* Number of hashes in the table. */
size_t feed_tokens_count(const struct feed_tokens *t);

/* Hashes tok[0..len) and compares it with every hash of the table with
 * CRYPTO_memcmp, without stopping at a match, so the time taken does not
 * depend on which hash (if any) matched. Returns the index of the matching
 * entry (0 .. count-1), or -1 when none matches or len is 0 or over
 * FEED_TOKEN_MAX. */
long feed_tokens_match(const struct feed_tokens *t, const char *tok,
                       size_t len);

/* The issuer index (into config.issuers) of entry i. */
size_t feed_tokens_issuer(const struct feed_tokens *t, size_t i);

/* Frees. NULL is a no-op. */
void feed_tokens_destroy(struct feed_tokens *t);

/* Finds the token of an Authorization header value: scheme "Bearer" (any
 * case), one or more spaces, then the token: everything to the end of the
 * value, taken as it is (a stray byte makes it another token). Returns 0
 * with *tok and *len set, or -1 when hdr is NULL, another scheme or has no
 * token. */
int feed_bearer(const char *hdr, const char **tok, size_t *len);

/* ---- rate limit: one token bucket per bearer token ---- */

struct feed_bucket {
    double tokens;
    uint64_t last_ns;
    int started;
};

/* Takes one request from b at time now_ns: the bucket holds at most burst
 * requests and refills at rate per second (it starts full). Returns 0 when
 * the request may go on, else the whole seconds (>= 1) until one would be
 * allowed (for Retry-After). */
int feed_bucket_take(struct feed_bucket *b, uint64_t now_ns, double rate,
                     double burst);

/* ---- failed authentications: one token bucket per peer address ---- */

#define FEED_PEER_KEY 16 /* bytes of a peer's throttle key */

/* The throttle key of a peer address given as text (as evhttp gives it):
 * an IPv4 address as the IPv4-mapped IPv6 address ::ffff:a.b.c.d, an IPv6
 * address cut to its /64 (a host is usually given a whole /64, so its
 * addresses count as one peer). Returns 0, or -1 when addr is not an IP
 * address. */
int feed_peer_key(const char *addr, uint8_t key[FEED_PEER_KEY]);

/* The peers that failed to authenticate lately, each with an allowance of
 * burst failures that refills at burst per window_s seconds. At most
 * max_peers peers are kept (a few dozen bytes each): a new one then
 * replaces the one whose last failure is oldest. */
struct feed_throttle;

/* A table for max_peers (>= 1) peers, burst (>= 1) failures per window_s
 * (>= 1) seconds. seed keys the table's hash: pass random bits, so that
 * nobody can pick addresses that fall into one chain. Returns NULL when
 * out of memory. */
struct feed_throttle *feed_throttle_new(size_t max_peers, int burst,
                                        int window_s, uint64_t seed);

/* 0 when the peer of key may try to authenticate at now_ns, else the whole
 * seconds (>= 1) until it may (for Retry-After). Takes nothing from the
 * allowance. */
int feed_throttle_wait(struct feed_throttle *t,
                       const uint8_t key[FEED_PEER_KEY], uint64_t now_ns);

/* Counts a failed authentication of the peer of key at now_ns: one failure
 * less in its allowance (a new peer starts with burst). Returns 0, or -1
 * when out of memory (nothing counted). */
int feed_throttle_fail(struct feed_throttle *t,
                       const uint8_t key[FEED_PEER_KEY], uint64_t now_ns);

/* Forgets the peers whose allowance is whole again at now_ns (no failure
 * for window_s). The table stays bounded without it; this keeps it small
 * and feed_throttle_peers() meaningful. */
void feed_throttle_sweep(struct feed_throttle *t, uint64_t now_ns);

/* Peers in the table. */
size_t feed_throttle_peers(const struct feed_throttle *t);

/* Peers forgotten so far because the table was full. */
uint64_t feed_throttle_evicted(const struct feed_throttle *t);

/* Frees. NULL is a no-op. */
void feed_throttle_destroy(struct feed_throttle *t);

#endif
