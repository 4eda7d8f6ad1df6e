/* rmodel.h - the Redis data model: key names, card records and the Lua
 * scripts that change them (pure; exposure.c and loader.c do the I/O).
 *
 *   <p>:card:<kid>:<fp>       string  "breach=exptag;breach=exptag" sorted
 *   <p>:breach:<id>           hash    description, window_start_ms,
 *                                     window_end_ms, elements, key_id,
 *                                     loaded_at_ms, updated_at_ms,
 *                                     status (loading | committed |
 *                                     unloading), cards (count when
 *                                     committed), committed_at_ms
 *   <p>:breach:<id>:cards     set     "<kid>:<fp>" of the breach's cards
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
 * A card record entry "breach=exptag!" (trailing '!') is retired: the
 * issuer reissued or blocked the card (an outcome on its alert); the
 * breach no longer exposes it to the rules, only to retired-card-use.
 *
 * <p> is the configured prefix, <kid> the fingerprint key id, <fp> the
 * 32-hex fingerprint, exptag the expiry tag ("" when the list had no
 * expiry). No PAN, expiry or CVV is ever stored.
 */
#ifndef CARDWATCH_RMODEL_H
#define CARDWATCH_RMODEL_H

#include <stddef.h>

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
int rmodel_card_key(char *buf, const char *prefix, const char *kid,
                    const char *fp);
int rmodel_breach_key(char *buf, const char *prefix, const char *id);
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

/* Lua: add/replace one breach entry in a card record and add the card to
 * the breach's set. KEYS: card key, breach cards key. ARGV: breach id,
 * exptag, set member. Returns 1 when the card was new to the breach. */
extern const char RMODEL_LUA_ADD[];

/* Lua: record that an alert was delivered and append it to its issuer's
 * feed, once. KEYS: delivered key, alert key, feed key, feedstats key.
 * ARGV: issuer ("" = unrouted: only the delivered record), alert id, alert
 * JSON, TTL seconds (delivered and alert keys), feed max length
 * (approximate), oldest stream id to keep (ms), severity name, rule ids
 * (comma list), channel. Returns 1 when recorded now, 0 when the id was
 * recorded before (nothing changes). */
extern const char RMODEL_LUA_RECORD_DELIVERY[];

/* Lua: the first outcome of an alert is final. KEYS: alert key,
 * feedstats key, card key. ARGV: issuer (of the caller), outcome, note,
 * now ms, rule ids (comma list), breach ids (comma list), "1" to retire
 * the card for those breaches (card_reissued, card_blocked) else "0".
 * Returns {404, ""} when the alert is unknown or another issuer's (the
 * same answer), {200, outcome} when this outcome was recorded before,
 * {409, earlier outcome} when another one was, {201, outcome} when
 * recorded now (and counted, and the card retired when asked). */
extern const char RMODEL_LUA_OUTCOME[];

/* Lua: the outcomes of alerts. KEYS: alert keys. Returns one string per
 * key: its outcome, or "" when it has none (or the key is gone). */
extern const char RMODEL_LUA_OUTCOMES[];

/* Lua: commit a staged load. KEYS: breach key, breach cards key,
 * breaches key, exposed key. ARGV: breach id, generation marker, now ms.
 * Marks the breach committed with its card count, lists it and sets the
 * marker, in one step. Returns the card count. */
extern const char RMODEL_LUA_COMMIT[];

/* Lua: remove one breach entry from a card record (DEL when empty).
 * KEYS: card key. ARGV: breach id. Returns 1 when an entry was removed. */
extern const char RMODEL_LUA_REMOVE[];

#endif
