/* rmodel.h - the Redis data model: key names, card records and the Lua
 * scripts that change them (pure; exposure.c and loader.c do the I/O).
 *
 *   <p>:cards:<kid>:<n>       hash    card buckets: field = the 16-byte
 *                                     binary fingerprint, value = its
 *                                     record "breach=exptag;breach=exptag"
 *                                     (sorted); n = the bucket number
 *   <p>:layout:<kid>          hash    version ("2"), level, split (linear
 *                                     hashing: see rmodel_bucket),
 *                                     entries (cards in the buckets),
 *                                     committed (entries at the last
 *                                     commit: the guard's lower bound)
 *   <p>:breach:<id>           hash    description, window_start_ms,
 *                                     window_end_ms, elements, key_id,
 *                                     loaded_at_ms, updated_at_ms,
 *                                     status (loading | committed |
 *                                     unloading), cards (count when
 *                                     committed), committed_at_ms,
 *                                     members (cards whose record names
 *                                     the breach, kept by the scripts),
 *                                     suspected ("1": `load --suspected`,
 *                                     a breach cpp estimated; "0" or
 *                                     absent: a known one)
 *   <p>:breaches              set     breach ids
 *   <p>:exposed               string  generation marker: a random id that
 *                                     `load`, `unload` and `breaches
 *                                     --confirm` set when they commit; its
 *                                     absence means the set is gone
 *   <p>:delivered:<alert_id>  string  issuer id: the alert was delivered
 *   <p>:alert:<alert_id>      hash    issuer, stream_id, alert (JSON),
 *                                     outcome, note, outcome_at_ms
 *   <p>:feed:<issuer>         stream  alert_id, alert (JSON), per alert
 *   <p>:feedstats:<issuer>    hash    alerts, severity:<s>, rule:<id>,
 *                                     outcome:<o>, rule_outcome:<id>:<o>
 *   channel <p>:feed                  PUBLISH <issuer> after each append
 *
 * Memory: a card costs one field and one value in a small hash that Redis
 * keeps in its compact listpack encoding (hash-max-listpack-entries >=
 * 128 and hash-max-listpack-value >= 64, Redis's defaults: the buckets
 * hold RMODEL_FILL cards on average), about 40 bytes; no per-card key and
 * no per-breach set.
 *
 * The first layout (version 1, before 2026-12) kept one string key per
 * card, <p>:card:<kid>:<fp> (fp in hex), and a set <p>:breach:<id>:cards
 * of "<kid>:<fp>"; `cardwatch migrate` moves it to this one, and nothing
 * reads it otherwise (the set guard refuses it: never misread).
 *
 * A card record entry "breach=exptag!" (trailing '!') is retired: the
 * issuer reissued or blocked the card (an outcome on its alert); the
 * breach no longer exposes it to the rules, only to retired-card-use.
 *
 * <p> is the configured prefix, <kid> the fingerprint key id, exptag the
 * expiry tag ("" when the list had no expiry). No PAN, expiry or CVV is
 * ever stored. The scripts build bucket key names from a prefix argument
 * (a single Redis, not Redis Cluster).
 */
#ifndef CARDWATCH_RMODEL_H
#define CARDWATCH_RMODEL_H

#include <stddef.h>
#include <stdint.h>

#include "breach.h"
#include "card.h"

/* Room for any key built below (prefix <= 16, ids <= 64). */
#define RMODEL_KEY_MAX 192

struct rmodel_entry {
    char breach_id[BREACH_ID_MAX + 1];
    char exptag[CARD_EXPTAG_SIZE]; /* "" when unknown */
    int retired; /* the entry ended in '!' */
};

/* Key builders: write the key with NUL into buf (RMODEL_KEY_MAX bytes)
 * and return its length, or -1 when it does not fit. */
int rmodel_layout_key(char *buf, const char *prefix, const char *kid);
/* "<p>:cards:<kid>:", to which the scripts append the bucket number. */
int rmodel_bucket_prefix(char *buf, const char *prefix, const char *kid);
int rmodel_bucket_key(char *buf, const char *prefix, const char *kid,
                      uint64_t n);
/* The first layout's keys (read by `cardwatch migrate` only). */
int rmodel_card_key(char *buf, const char *prefix, const char *kid,
                    const char *fp);
int rmodel_breach_key(char *buf, const char *prefix, const char *id);
/* The first layout's set of a breach's cards (what the guard and
 * `cardwatch migrate` look for). */
int rmodel_breach_cards_key(char *buf, const char *prefix, const char *id);
int rmodel_breaches_key(char *buf, const char *prefix);
int rmodel_exposed_key(char *buf, const char *prefix);

/* A breach's load, from the hash's status field (NULL when absent: data
 * written before loads were staged, taken as committed). */
enum rmodel_bstatus {
    RMODEL_B_COMMITTED = 0,
    RMODEL_B_LOADING,   /* staged: invisible to lookups until committed */
    RMODEL_B_UNLOADING, /* being removed: invisible already */
};
enum rmodel_bstatus rmodel_breach_status(const char *status);

/* The verdict on one committed breach: recorded is the hash's "cards"
 * field (NULL when absent), present the SCARD of its cards set. Returns 1
 * when the set holds at least the recorded count; 0 with "breach <id> has
 * <present> of <recorded> cards in Redis" in why. */
int rmodel_breach_intact(const char *id, const char *recorded,
                         long long present, char *why, size_t whylen);

int rmodel_delivered_key(char *buf, const char *prefix, const char *id);
int rmodel_alert_key(char *buf, const char *prefix, const char *id);
int rmodel_feed_key(char *buf, const char *prefix, const char *issuer);
int rmodel_feedstats_key(char *buf, const char *prefix, const char *issuer);
/* The pub/sub channel that tells feed servers an issuer has news. */
int rmodel_feed_channel(char *buf, const char *prefix);

/* Parses a card record s[0..len) into out (at most cap entries; more are
 * ignored). Returns the number of entries, or -1 for a malformed record. */
int rmodel_record_parse(const char *s, size_t len, struct rmodel_entry *out,
                        size_t cap);

/* The layout version this code reads and writes. */
#define RMODEL_LAYOUT_VERSION "2"
/* Average cards per bucket the loader keeps (it splits a bucket when the
 * average is above). */
#define RMODEL_FILL 40

/* Fingerprint forms: 32 hex digits <-> 16 bytes. fp_bin returns 0, or -1
 * when hex is not 32 hex digits (out is then undefined). */
#define RMODEL_FP_BIN 16
int rmodel_fp_bin(const char *hex, uint8_t out[RMODEL_FP_BIN]);
void rmodel_fp_hex(const uint8_t bin[RMODEL_FP_BIN], char out[33]);

/* Linear hashing: the bucket of a fingerprint when the layout has level L
 * and split s (buckets 0 .. 2^L + s - 1): h = the first 4 bytes
 * (big-endian), n = h mod 2^L, and h mod 2^(L+1) when n < s. The scripts
 * compute the same in Lua. L <= 31, s < 2^L. */
uint64_t rmodel_bucket(const uint8_t fp[RMODEL_FP_BIN], int level,
                       uint64_t split);

/* Lua: look up cards, atomically with the marker. KEYS: marker, layout.
 * ARGV: bucket prefix, then the 16-byte fingerprints. Returns {marker or
 * nil, record or nil per fingerprint}. Read-only (flags=no-writes): it
 * runs on a replica and while writes are paused, as MGET would. */
extern const char RMODEL_LUA_LOOKUP[];

/* Lua: add/replace the breach entry in the records of a batch of cards.
 * KEYS: layout, breach key. ARGV: bucket prefix, breach id, then per card
 * the 16-byte fingerprint and its exptag. Keeps a retired mark; counts
 * the breach's members and the layout's entries. Returns {cards new to
 * the breach, cards new to Redis}. */
extern const char RMODEL_LUA_ADD[];

/* Lua: split buckets while the layout holds more than ARGV fill cards per
 * bucket on average, at most ARGV max splits. KEYS: layout. ARGV: bucket
 * prefix, fill, max. Returns the number of splits done. */
extern const char RMODEL_LUA_SPLIT[];

/* Lua: an empty layout (no entries) starts at ARGV level (when above its
 * own), so a large first load does not move its cards from bucket to
 * bucket as the layout grows. KEYS: layout. ARGV: level. Returns the
 * layout's level. */
extern const char RMODEL_LUA_PRESIZE[];

/* Lua: remove a breach's entries from the records of buckets [first,
 * first + count) (a record left empty is deleted). KEYS: layout, breach
 * key. ARGV: bucket prefix, breach id, first, count. Returns {entries
 * removed, buckets in the layout}. */
extern const char RMODEL_LUA_UNLOAD[];

/* Lua: read buckets [first, first + count). KEYS: layout, and optionally
 * the marker. ARGV: bucket prefix, first, count, mode ("count": Returns
 * {buckets in the layout, cards in the range, marker}; "breach" with
 * ARGV breach id: the same and the cards whose record names the breach;
 * "keys": {buckets, {fingerprints}, marker}; "all": {buckets,
 * {fingerprint, record, ...}, marker}; marker nil when not asked or
 * absent). Read-only (runs while writes are paused, as the lookup). */
extern const char RMODEL_LUA_SCAN[];

/* Lua: record that alerts were delivered and append each to its issuer's
 * feed, once; any number of alerts in one call. KEYS: per alert its
 * delivered key, alert key, feed key, feedstats key. ARGV: TTL seconds
 * (delivered and alert keys), feed max length (approximate), oldest
 * stream id to keep (ms), channel; then per alert its issuer ("" =
 * unrouted: only the delivered record), alert id, alert JSON, severity
 * name, rule ids (comma list). Counts are added once per feedstats key,
 * each feed trimmed once and each issuer published once per call.
 * Returns one integer per alert: 1 when recorded now, 0 when its id was
 * recorded before (nothing changes for it). An alert whose delivered key
 * is there but whose alert hash is not (an earlier call that failed after
 * the SET: a command of it refused by an ACL) is appended now, so that a
 * failed call sent again never leaves an alert out of its feed. */
extern const char RMODEL_LUA_RECORD_DELIVERY[];

/* Lua: the first outcome of an alert is final. KEYS: alert key,
 * feedstats key, layout. ARGV: issuer (of the caller), outcome, note,
 * now ms, rule ids (comma list), breach ids (comma list), "1" to retire
 * the card for those breaches (card_reissued, card_blocked) else "0",
 * bucket prefix, the card's fingerprint (32 hex).
 * Returns {404, ""} when the alert is unknown or another issuer's (the
 * same answer), {200, outcome} when this outcome was recorded before,
 * {409, earlier outcome} when another one was, {201, outcome} when
 * recorded now (and counted, and the card retired when asked). */
extern const char RMODEL_LUA_OUTCOME[];

/* Lua: the outcomes of alerts. KEYS: alert keys. Returns one string per
 * key: its outcome, or "" when it has none (or the key is gone). */
extern const char RMODEL_LUA_OUTCOMES[];

/* Lua: commit a staged load. KEYS: breach key, layout, breaches key,
 * exposed key. ARGV: breach id, generation marker, now ms. Marks the
 * breach committed with its card count (members), lists it, records the
 * layout's entries as committed and sets the marker, in one step. Returns
 * the card count. */
extern const char RMODEL_LUA_COMMIT[];

#endif
