/* txn.h - decode and validate one transaction (pure).
 *
 * A struct txn is plain data with fixed-size fields: decoding allocates
 * nothing that outlives the call. It is the only struct that ever holds a
 * raw PAN; txn_forget_pan() wipes it once the fingerprint is taken.
 */
#ifndef CARDWATCH_TXN_H
#define CARDWATCH_TXN_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "card.h"

#define TXN_ID_MAX 64
#define TXN_MERCHANT_MAX 64

/* Values equal the protobuf enum numbers. */
enum txn_channel {
    TXN_CHANNEL_UNSPECIFIED = 0,
    TXN_CHANNEL_CARD_PRESENT = 1,
    TXN_CHANNEL_ECOMMERCE = 2,
    TXN_CHANNEL_MOTO = 3,
    TXN_CHANNEL_RECURRING = 4,
    TXN_CHANNEL_ATM = 5,
};

enum txn_entry_mode {
    TXN_ENTRY_UNSPECIFIED = 0,
    TXN_ENTRY_CHIP = 1,
    TXN_ENTRY_CONTACTLESS = 2,
    TXN_ENTRY_MAGSTRIPE = 3,
    TXN_ENTRY_KEYED = 4,
    TXN_ENTRY_ON_FILE = 5,
};

enum txn_response {
    TXN_RESPONSE_UNSPECIFIED = 0,
    TXN_RESPONSE_APPROVED = 1,
    TXN_RESPONSE_DECLINED = 2,
};

/* Outcome of decoding; 0 is success. The names (txn_status_name) are the
 * dead-letter reasons and metric labels. */
enum txn_status {
    TXN_OK = 0,
    TXN_ERR_UNDECODABLE,     /* not protobuf / not JSON / wrong JSON types */
    TXN_ERR_TXN_ID,          /* missing, too long, or non-printable */
    TXN_ERR_PAN,             /* not 13-19 digits */
    TXN_ERR_LUHN,            /* digits but Luhn check fails */
    TXN_ERR_EXPIRY,          /* not YYMM with MM 01-12 */
    TXN_ERR_AMOUNT,          /* negative */
    TXN_ERR_CURRENCY,        /* not 3 upper-case letters */
    TXN_ERR_MCC,             /* > 9999 */
    TXN_ERR_MERCHANT,        /* merchant_id missing or too long */
    TXN_ERR_COUNTRY,         /* not 2 upper-case letters */
    TXN_ERR_CHANNEL,
    TXN_ERR_ENTRY_MODE,
    TXN_ERR_RESPONSE,
    TXN_ERR_EVENT_TIME,      /* missing or <= 0 */
    TXN_ERR_TOO_LONG,        /* longer than the input's record limit (set
                                by the source, never by the decoders) */
    TXN_ERR_EVENT_TIME_FUTURE, /* dated too far ahead of the wall clock
                                  (txn_check_time, never by the decoders) */
    TXN_STATUS_COUNT
};

struct txn {
    char txn_id[TXN_ID_MAX + 1];
    char pan[CARD_PAN_MAX + 1]; /* raw PAN; "" after txn_forget_pan() */
    uint8_t pan_len;
    char pan_masked[CARD_MASK_SIZE]; /* set by decode */
    char bin[9];                     /* first 8 digits (or fewer), for routing */
    char expiry[5];                  /* YYMM */
    int64_t amount_minor;
    char currency[4];
    uint32_t mcc;
    char merchant_id[TXN_MERCHANT_MAX + 1];
    char merchant_country[3];
    enum txn_channel channel;
    enum txn_entry_mode entry_mode;
    bool cvv2_presented;
    enum txn_response response;
    int64_t event_time_ms;
};

/* Decodes a protobuf cardwatch.v1.Transaction from buf[0..len) into *out
 * and validates it (txn_validate). On any status but TXN_OK, *out holds no
 * PAN (it is wiped) and must not be used except out->txn_id, which may be
 * set when it was decodable. Allocates nothing: a hand-written wire
 * decoder reads buf in place (unknown fields skipped, last occurrence
 * wins, strings must be UTF-8). */
enum txn_status txn_decode_protobuf(const uint8_t *buf, size_t len,
                                    struct txn *out);

/* Decodes one JSON object (one JSON line, no trailing data but whitespace)
 * with the field names of the protobuf message; enums are the lower-case
 * names (card_present|ecommerce|moto|recurring|atm, chip|contactless|
 * magstripe|keyed|on_file, approved|declined). Same contract as
 * txn_decode_protobuf. */
enum txn_status txn_decode_json(const char *buf, size_t len, struct txn *out);

/* txn_decode_json() decodes what producers write (flat objects, plain
 * strings and integers) with a hand-written scanner and everything else
 * with jansson; this is the jansson path alone, with the same contract,
 * so tests can check that both paths give the same result. */
enum txn_status txn_decode_json_general(const char *buf, size_t len,
                                        struct txn *out);

/* Parses one JSON transaction without validating the values (only the
 * JSON shape: an object, field types, enum names). For tools that publish
 * hand-written test data, invalid values included. Returns TXN_OK or
 * TXN_ERR_UNDECODABLE (then out holds no PAN). */
enum txn_status txn_parse_json(const char *buf, size_t len, struct txn *out);

/* Validates a filled struct (fields set, pan/pan_len set) and fills
 * pan_masked and bin. Returns TXN_OK or the first failing rule. */
enum txn_status txn_validate(struct txn *t);

/* Checks t's event time against the wall clock now_ms: an event dated
 * more than max_future_ms ahead is TXN_ERR_EVENT_TIME_FUTURE (a clock or
 * data error upstream; accepted, it would become the card's newest event
 * and prune the window state of every other). Pure; returns TXN_OK
 * otherwise. */
enum txn_status txn_check_time(const struct txn *t, int64_t now_ms,
                               int64_t max_future_ms);

/* Encodes t as a protobuf Transaction into a malloc'd buffer (*out, *outlen).
 * Used by the generator and by tests. Returns 0, or -1 on allocation
 * failure. The caller frees *out. */
int txn_encode_protobuf(const struct txn *t, uint8_t **out, size_t *outlen);

/* Writes t as one JSON object (no newline) into buf. Includes the raw PAN:
 * only the generator may call this. Returns the length written (excluding
 * NUL), or -1 if buf is too small. */
int txn_encode_json(const struct txn *t, char *buf, size_t buflen);

/* Wipes the raw PAN (pan, pan_len); pan_masked and bin stay. */
void txn_forget_pan(struct txn *t);

/* Stable lower-case names; "?" for out-of-range values. */
const char *txn_status_name(enum txn_status s);
const char *txn_channel_name(enum txn_channel c);
const char *txn_entry_mode_name(enum txn_entry_mode m);
const char *txn_response_name(enum txn_response r);

/* Parses a lower-case enum name; returns the value or the UNSPECIFIED (0)
 * value when the name is unknown. */
enum txn_channel txn_channel_parse(const char *s);
enum txn_entry_mode txn_entry_mode_parse(const char *s);
enum txn_response txn_response_parse(const char *s);

#endif
