/* alert.h - build and encode alerts, deterministic ids (pure).
 *
 * An alert never holds a raw PAN: only the masked PAN and the keyed
 * fingerprint. The alert id depends on the transaction id alone, so a
 * re-processed or replayed transaction yields the same id.
 */
#ifndef CARDWATCH_ALERT_H
#define CARDWATCH_ALERT_H

#include <stddef.h>
#include <stdint.h>

#include "breach.h"
#include "card.h"
#include "txn.h"

#define ALERT_ID_SIZE 33 /* 32 hex + NUL */
#define ALERT_MAX_HITS 32
#define ALERT_MAX_BREACHES 16
#define RULE_ID_MAX 63
#define ISSUER_ID_MAX 32
#define RULESET_VERSION_MAX 64
/* "<key_id>:<32 hex>" */
#define ALERT_FP_SIZE (CARD_KEY_ID_MAX + 1 + CARD_FP_SIZE)

/* Values equal the protobuf enum numbers; order is the severity order. */
enum severity {
    SEVERITY_NONE = 0,
    SEVERITY_LOW = 1,
    SEVERITY_MEDIUM = 2,
    SEVERITY_HIGH = 3,
    SEVERITY_CRITICAL = 4,
};

enum alert_mode {
    ALERT_MODE_UNSPECIFIED = 0,
    ALERT_MODE_LIVE = 1,
    ALERT_MODE_REPLAY = 2,
};

struct rule_hit {
    char rule_id[RULE_ID_MAX + 1];
    enum severity severity;
};

struct alert_breach {
    char breach_id[BREACH_ID_MAX + 1];
    int64_t window_start_ms;
    int64_t window_end_ms;
    uint32_t elements; /* enum breach_element bits */
};

struct alert {
    char alert_id[ALERT_ID_SIZE];
    char issuer_id[ISSUER_ID_MAX + 1];
    char txn_id[TXN_ID_MAX + 1];
    char card_fingerprint[ALERT_FP_SIZE];
    char pan_masked[CARD_MASK_SIZE];
    int64_t event_time_ms;
    int64_t amount_minor;
    char currency[4];
    uint32_t mcc;
    char merchant_id[TXN_MERCHANT_MAX + 1];
    char merchant_country[3];
    enum txn_channel channel;
    enum severity severity; /* highest of hits */
    struct rule_hit hits[ALERT_MAX_HITS];
    size_t n_hits;
    struct alert_breach breaches[ALERT_MAX_BREACHES];
    size_t n_breaches;
    enum alert_mode mode;
    int64_t detected_at_ms;
    char ruleset_version[RULESET_VERSION_MAX + 1];
};

/* Derives the alert id from a transaction id: lowercase hex of the first
 * 128 bits of SHA-256("cardwatch.alert.v1:" txn_id). Same input, same id. */
void alert_id_for(const char *txn_id, char out[ALERT_ID_SIZE]);

/* Fills *a from the transaction facts (t must already have pan_masked;
 * its raw PAN is never read), the issuer, the fingerprint text
 * ("<key_id>:<hex>"), the hits (n_hits >= 1) and the exposing breaches.
 * Sets alert_id and severity (highest hit). Extra hits or breaches beyond
 * the caps are dropped. Returns 0, or -1 when n_hits is 0. */
int alert_build(struct alert *a, const struct txn *t, const char *issuer_id,
                const char *fingerprint, const struct rule_hit *hits,
                size_t n_hits, const struct alert_breach *breaches,
                size_t n_breaches, enum alert_mode mode,
                int64_t detected_at_ms, const char *ruleset_version);

/* Encodes a as a protobuf cardwatch.v1.Alert into a malloc'd buffer.
 * Returns 0 with *out and *outlen set (caller frees), or -1 on allocation
 * failure. */
int alert_encode_protobuf(const struct alert *a, uint8_t **out,
                          size_t *outlen);

/* Decodes a protobuf Alert into *a. Returns 0, or -1 when the bytes are
 * not an Alert or a field does not fit. */
int alert_decode_protobuf(const uint8_t *buf, size_t len, struct alert *a);

/* Writes a as one JSON object without newline into buf: the proto field
 * names, enums as lower-case names (severity "high", mode "live", channel
 * "ecommerce"), breach windows as "YYYY-MM-DD" plus *_ms, elements as an
 * array of names. Returns the length, or -1 when buf is too small. */
int alert_encode_json(const struct alert *a, char *buf, size_t buflen);

/* "low", "medium", "high", "critical"; "none" for SEVERITY_NONE. */
const char *severity_name(enum severity s);
/* Parses a severity name; returns SEVERITY_NONE for an unknown one. */
enum severity severity_parse(const char *s);
const char *alert_mode_name(enum alert_mode m);

#endif
