/* rmodel.h - the Redis data model: key names, card records and the Lua
 * scripts that change them (pure; exposure.c and loader.c do the I/O).
 *
 *   <p>:card:<kid>:<fp>       string  "breach=exptag;breach=exptag" sorted
 *   <p>:breach:<id>           hash    description, window_start_ms,
 *                                     window_end_ms, elements, key_id,
 *                                     loaded_at_ms, updated_at_ms
 *   <p>:breach:<id>:cards     set     "<kid>:<fp>" of the breach's cards
 *   <p>:breaches              set     breach ids
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
};

/* Key builders: write the key with NUL into buf (RMODEL_KEY_MAX bytes)
 * and return its length, or -1 when it does not fit. */
int rmodel_card_key(char *buf, const char *prefix, const char *kid,
                    const char *fp);
int rmodel_breach_key(char *buf, const char *prefix, const char *id);
int rmodel_breach_cards_key(char *buf, const char *prefix, const char *id);
int rmodel_breaches_key(char *buf, const char *prefix);

/* Parses a card record s[0..len) into out (at most cap entries; more are
 * ignored). Returns the number of entries, or -1 for a malformed record. */
int rmodel_record_parse(const char *s, size_t len, struct rmodel_entry *out,
                        size_t cap);

/* Lua: add/replace one breach entry in a card record and add the card to
 * the breach's set. KEYS: card key, breach cards key. ARGV: breach id,
 * exptag, set member. Returns 1 when the card was new to the breach. */
extern const char RMODEL_LUA_ADD[];

/* Lua: remove one breach entry from a card record (DEL when empty).
 * KEYS: card key. ARGV: breach id. Returns 1 when an entry was removed. */
extern const char RMODEL_LUA_REMOVE[];

#endif
