/* feed_auth.h - the pure parts of the issuer alert feed (feed.c): bearer
 * tokens, request parameters, the per-token rate limiter, the per-peer
 * throttle of failed authentications, outcome bodies,
 * what an outcome needs from a stored alert, issuer statistics and the
 * page's Content-Security-Policy.
 *
 * Nothing here does I/O, reads a clock or logs: time is passed in, results
 * go into memory the caller owns (or a malloc'd string the caller frees, as
 * each function says). Tokens are never stored: the configuration holds
 * their SHA-256 (`[issuer ID] token_sha256`), and a presented token is
 * hashed and compared with every configured hash in constant time.
 */
#ifndef CARDWATCH_FEED_AUTH_H
#define CARDWATCH_FEED_AUTH_H

#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

#include <openssl/ssl.h>

#include "alert.h"
#include "breach.h"
#include "card.h"
#include "config.h"

#define FEED_TOKEN_MAX 512  /* longest token looked at, bytes */
#define FEED_TOKEN_BYTES 32 /* random bytes in a `cardwatch token` token */
#define FEED_HASH_HEX 64    /* SHA-256 as lower-case hex */
#define FEED_LIMIT_DEFAULT 100
#define FEED_LIMIT_MAX 1000
#define FEED_NOTE_MAX 500 /* characters (Unicode code points) */
#define FEED_NOTE_BYTES (FEED_NOTE_MAX * 4 + 1)
#define FEED_CURSOR_SIZE 48 /* "<ms>-<seq>" with NUL */

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

/* The [feed] cross checks, also run by config_check(): tls_cert and
 * tls_key both set or both empty; a feed listener needs at least one
 * issuer token and another address than [http] listen; a token hash may
 * belong to one issuer only. Returns 0, or -1 with a message. */
int feed_config_check(const struct config *c, char *errbuf, size_t errlen);

/* A TLS server context for [feed] tls_cert (PEM chain) and tls_key (PEM):
 * TLS 1.2 or newer, no renegotiation, the server's cipher order; the key
 * must match the certificate. The caller owns it (SSL_CTX_free). Returns
 * NULL with a message naming the setting and OpenSSL's reason in errbuf. */
SSL_CTX *feed_tls_context(const char *cert, const char *key, char *errbuf,
                          size_t errlen);

/* ---- cursors and query parameters ---- */

/* A position in an issuer's feed: a Redis stream id "<ms>-<seq>". The
 * zero cursor (0-0) is before every entry. */
struct feed_cursor {
    uint64_t ms, seq;
};

/* Parses "<ms>-<seq>" (decimal, no sign, no leading spaces, each fitting
 * 64 bits; the largest id of all is refused, nothing can follow it).
 * Returns 0, or -1 when s is not a cursor. */
int feed_cursor_parse(const char *s, size_t len, struct feed_cursor *out);

/* Writes "<ms>-<seq>" into buf (FEED_CURSOR_SIZE is enough). Returns the
 * length. */
int feed_cursor_format(const struct feed_cursor *c, char *buf, size_t len);

/* <0, 0, >0 as a is before, at, after b. */
int feed_cursor_cmp(const struct feed_cursor *a, const struct feed_cursor *b);

/* Parameters of GET /v1/alerts (and, with stream set, of
 * /v1/alerts/stream, which takes only after). */
struct feed_params {
    struct feed_cursor after; /* 0-0 when not given */
    int has_after;
    int limit;  /* 1 .. FEED_LIMIT_MAX, default FEED_LIMIT_DEFAULT */
    int wait_s; /* 0 .. max_wait_s; 0 = answer at once */
    int newest; /* order=newest: newest first (never with wait) */
    struct feed_cursor before; /* with newest: only entries before it */
    int has_before;
    int outcomes; /* include=outcome: each item carries its outcome */
};

/* Parses the raw query string q (NULL or "" = none; %XX and '+' decoded)
 * into p. Accepted keys: after, limit, wait, order (oldest | newest),
 * before (only with order=newest, which cannot wait) and include
 * (outcome); the stream takes after only; each key at most once. Returns 0, or -1 with a message for
 * the client in err (e.g. "limit must be 1 to 1000"). */
int feed_params_parse(const char *q, int max_wait_s, int stream,
                      struct feed_params *p, char *err, size_t errlen);

/* 1 when s[0..len) is an alert id: 32 lower-case hex digits. */
int feed_alert_id_valid(const char *s, size_t len);

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

/* ---- outcomes ---- */

enum feed_outcome {
    FEED_CONFIRMED_FRAUD = 0,
    FEED_LEGITIMATE,
    FEED_CARD_REISSUED,
    FEED_CARD_BLOCKED,
    FEED_OUTCOME_COUNT
};

/* "confirmed_fraud", "legitimate", "card_reissued", "card_blocked". */
const char *feed_outcome_name(enum feed_outcome o);

/* Parses an outcome name. Returns 0, or -1 when unknown. */
int feed_outcome_parse(const char *s, size_t len, enum feed_outcome *o);

/* 1 when the outcome retires the card (reissued, blocked), else 0. */
int feed_outcome_retires(enum feed_outcome o);

/* 1 when s[0..len) is an acceptable note: valid UTF-8, at most
 * FEED_NOTE_MAX characters, none of them a control character (C0, DEL,
 * C1; so no newline or tab) or a line/paragraph separator. */
int feed_note_valid(const char *s, size_t len);

/* Parses the body of POST /v1/alerts/{id}/outcome: a JSON object with
 * "outcome" (required) and "note" (optional string or null); no other
 * members. The note is copied into note (FEED_NOTE_BYTES). Returns 0, or
 * -1 with a message for the client in err. */
int feed_outcome_body(const char *body, size_t len, enum feed_outcome *o,
                      char note[FEED_NOTE_BYTES], char *err, size_t errlen);

/* What RMODEL_LUA_OUTCOME needs from a stored alert. */
struct feed_alert_facts {
    char rules[ALERT_MAX_HITS * (RULE_ID_MAX + 1) + 1];          /* csv */
    char breaches[ALERT_MAX_BREACHES * (BREACH_ID_MAX + 1) + 1]; /* csv */
    char kid[CARD_KEY_ID_MAX + 1];
    char fp[CARD_FP_SIZE];
};

/* Reads an alert JSON (as the ledger stored it) for the rule ids of its
 * hits, the breach ids of its breaches and its card_fingerprint
 * "<kid>:<32 hex>". Ids with a comma or outside their limits are refused.
 * Returns 0, or -1 when the JSON is not such an alert. */
int feed_alert_facts_parse(const char *json, size_t len,
                           struct feed_alert_facts *out);

/* ---- issuer statistics (the <p>:feedstats:<issuer> hash) ---- */

struct feed_rule_stat {
    char rule[RULE_ID_MAX + 1];
    uint64_t alerts;
    uint64_t outcome[FEED_OUTCOME_COUNT];
};

struct feed_sev_stat {
    char name[16];
    uint64_t n;
};

struct feed_stats {
    uint64_t alerts;
    uint64_t outcome[FEED_OUTCOME_COUNT];
    struct feed_sev_stat sev[8];
    size_t n_sev;
    struct feed_rule_stat *rules; /* sorted by rule id after _finish */
    size_t n_rules, cap_rules;
};

/* Adds one field/value pair of the hash (HGETALL): alerts, severity:<s>,
 * rule:<id>, outcome:<o>, rule_outcome:<id>:<o>; other fields and values
 * that are not counts are ignored. Returns 0, or -1 on allocation
 * failure. Start from a zeroed struct. */
int feed_stats_add(struct feed_stats *s, const char *field, size_t flen,
                   const char *val, size_t vlen);

/* Sorts the rules by id (call after the last _add). */
void feed_stats_finish(struct feed_stats *s);

/* Frees what _add allocated and zeroes s. */
void feed_stats_free(struct feed_stats *s);

/* The precision of a rule: confirmed_fraud / (confirmed_fraud +
 * legitimate); -1 when neither was reported. */
double feed_rule_precision(const struct feed_rule_stat *r);

/* The body of GET /v1/stats as a malloc'd NUL-terminated JSON string:
 * {"issuer","alerts","by_severity":{..},"by_outcome":{all four},
 *  "by_rule":{"<rule>":{"alerts","confirmed_fraud","legitimate",
 *  "card_reissued","card_blocked","precision": number or null}}}.
 * Returns NULL on allocation failure. */
char *feed_stats_json(const struct feed_stats *s, const char *issuer);

/* Writes Prometheus samples (no HELP/TYPE lines) of one issuer to out:
 * cardwatch_rule_outcomes_total{issuer,rule,outcome} for every rule and
 * outcome, and cardwatch_rule_precision{issuer,rule} for rules with a
 * precision. which: 0 = outcomes, 1 = precision. */
void feed_stats_prom(FILE *out, const struct feed_stats *s, const char *issuer,
                     int which);

/* ---- the triage page ---- */

/* The Content-Security-Policy for a page: default-src 'self', inline
 * <script> and <style> elements allowed by their SHA-256 only, no
 * plugins, no framing, no base or form targets elsewhere. Returns a
 * malloc'd header value, or NULL on allocation failure. */
char *feed_csp(const char *page, size_t len);

#endif
