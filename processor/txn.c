/* txn.c - decode and validate one transaction.
 *
 * Both decoders fill a struct txn and then run one validation routine in
 * the order of enum txn_status. A string that does not fit its fixed-size
 * field (or, in JSON, a missing field) is remembered as a "bad" bit for
 * that field's status, so the reported status is always the first failing
 * rule in that order, no matter which field broke.
 *
 * PAN hygiene: the protobuf decoder reads the caller's buffer in place,
 * allocates nothing and copies the PAN only into the struct. The JSON
 * decoder wipes the PAN string inside the jansson tree before freeing it
 * (jansson's own scratch token buffer is outside our reach). On every
 * status but TXN_OK the struct's pan is wiped.
 */
#include "txn.h"

#include <stddef.h>
#include <stdlib.h>
#include <string.h>

#include <jansson.h>
#include <openssl/crypto.h>

#include "cardwatch.pb-c.h"
#include "text.h"
#include "varint.h"

#define BAD(s) (1u << (unsigned)(s))

static const char *const status_names[TXN_STATUS_COUNT] = {
    [TXN_OK] = "ok",
    [TXN_ERR_UNDECODABLE] = "undecodable",
    [TXN_ERR_TXN_ID] = "txn_id",
    [TXN_ERR_PAN] = "pan",
    [TXN_ERR_LUHN] = "luhn",
    [TXN_ERR_EXPIRY] = "expiry",
    [TXN_ERR_AMOUNT] = "amount",
    [TXN_ERR_CURRENCY] = "currency",
    [TXN_ERR_MCC] = "mcc",
    [TXN_ERR_MERCHANT] = "merchant",
    [TXN_ERR_COUNTRY] = "country",
    [TXN_ERR_CHANNEL] = "channel",
    [TXN_ERR_ENTRY_MODE] = "entry_mode",
    [TXN_ERR_RESPONSE] = "response",
    [TXN_ERR_EVENT_TIME] = "event_time",
    [TXN_ERR_TOO_LONG] = "too_long",
    [TXN_ERR_EVENT_TIME_FUTURE] = "event_time_future",
};

static const char *const channel_names[] = {
    "unspecified", "card_present", "ecommerce", "moto", "recurring", "atm",
};

static const char *const entry_names[] = {
    "unspecified", "chip", "contactless", "magstripe", "keyed", "on_file",
};

static const char *const response_names[] = {
    "unspecified",
    "approved",
    "declined",
};

#define NELEM(a) (sizeof(a) / sizeof((a)[0]))

const char *txn_status_name(enum txn_status s)
{
    if ((unsigned)s >= TXN_STATUS_COUNT) {
        return "?";
    }
    return status_names[s];
}

const char *txn_channel_name(enum txn_channel c)
{
    return (unsigned)c < NELEM(channel_names) ? channel_names[c] : "?";
}

const char *txn_entry_mode_name(enum txn_entry_mode m)
{
    return (unsigned)m < NELEM(entry_names) ? entry_names[m] : "?";
}

const char *txn_response_name(enum txn_response r)
{
    return (unsigned)r < NELEM(response_names) ? response_names[r] : "?";
}

static int name_index(const char *const names[], size_t n, const char *s)
{
    if (s == NULL) {
        return 0;
    }
    for (size_t i = 1; i < n; i++) {
        if (strcmp(names[i], s) == 0) {
            return (int)i;
        }
    }
    return 0;
}

enum txn_channel txn_channel_parse(const char *s)
{
    return (enum txn_channel)name_index(channel_names, NELEM(channel_names), s);
}

enum txn_entry_mode txn_entry_mode_parse(const char *s)
{
    return (enum txn_entry_mode)name_index(entry_names, NELEM(entry_names), s);
}

enum txn_response txn_response_parse(const char *s)
{
    return (enum txn_response)name_index(response_names, NELEM(response_names),
                                         s);
}

/* ---- validation ---- */

static int is_upper(char c)
{
    return c >= 'A' && c <= 'Z';
}

/* Length of a NUL-terminated field, or size when it is not terminated. */
static size_t field_len(const char *s, size_t size)
{
    return strnlen(s, size);
}

static int txn_id_ok(const char *id)
{
    size_t len = field_len(id, TXN_ID_MAX + 1);

    if (len < 1 || len > TXN_ID_MAX) {
        return 0;
    }
    for (size_t i = 0; i < len; i++) {
        if (id[i] < 0x20 || id[i] > 0x7e) {
            return 0;
        }
    }
    return 1;
}

static int pan_digits_ok(const struct txn *t)
{
    if (t->pan_len < CARD_PAN_MIN || t->pan_len > CARD_PAN_MAX ||
        field_len(t->pan, sizeof(t->pan)) != t->pan_len) {
        return 0;
    }
    for (size_t i = 0; i < t->pan_len; i++) {
        if (!text_is_digit(t->pan[i])) {
            return 0;
        }
    }
    return 1;
}

static int expiry_ok(const char *e)
{
    int mm;

    if (field_len(e, 5) != 4 || !text_is_digit(e[0]) || !text_is_digit(e[1]) ||
        !text_is_digit(e[2]) || !text_is_digit(e[3])) {
        return 0;
    }
    mm = (e[2] - '0') * 10 + (e[3] - '0');
    return mm >= 1 && mm <= 12;
}

static int upper_code_ok(const char *s, size_t want, size_t size)
{
    if (field_len(s, size) != want) {
        return 0;
    }
    for (size_t i = 0; i < want; i++) {
        if (!is_upper(s[i])) {
            return 0;
        }
    }
    return 1;
}

/* The one validation routine: the first failing rule in enum order.
 * bad holds BAD(status) bits for fields the decoder found missing or too
 * long. */
static enum txn_status validate(struct txn *t, unsigned bad)
{
    enum txn_status st = TXN_OK;
    size_t mlen;

    if ((bad & BAD(TXN_ERR_TXN_ID)) || !txn_id_ok(t->txn_id)) {
        st = TXN_ERR_TXN_ID;
    } else if ((bad & BAD(TXN_ERR_PAN)) || !pan_digits_ok(t)) {
        st = TXN_ERR_PAN;
    } else if (!card_luhn_ok(t->pan, t->pan_len)) {
        st = TXN_ERR_LUHN;
    } else if ((bad & BAD(TXN_ERR_EXPIRY)) || !expiry_ok(t->expiry)) {
        st = TXN_ERR_EXPIRY;
    } else if ((bad & BAD(TXN_ERR_AMOUNT)) || t->amount_minor < 0) {
        st = TXN_ERR_AMOUNT;
    } else if ((bad & BAD(TXN_ERR_CURRENCY)) ||
               !upper_code_ok(t->currency, 3, sizeof(t->currency))) {
        st = TXN_ERR_CURRENCY;
    } else if ((bad & BAD(TXN_ERR_MCC)) || t->mcc > 9999) {
        st = TXN_ERR_MCC;
    } else if ((bad & BAD(TXN_ERR_MERCHANT)) ||
               (mlen = field_len(t->merchant_id, sizeof(t->merchant_id))) ==
                   0 ||
               mlen > TXN_MERCHANT_MAX) {
        st = TXN_ERR_MERCHANT;
    } else if ((bad & BAD(TXN_ERR_COUNTRY)) ||
               !upper_code_ok(t->merchant_country, 2,
                              sizeof(t->merchant_country))) {
        st = TXN_ERR_COUNTRY;
    } else if ((bad & BAD(TXN_ERR_CHANNEL)) ||
               (unsigned)t->channel - 1u >= 5u) {
        st = TXN_ERR_CHANNEL;
    } else if ((bad & BAD(TXN_ERR_ENTRY_MODE)) ||
               (unsigned)t->entry_mode - 1u >= 5u) {
        st = TXN_ERR_ENTRY_MODE;
    } else if ((bad & BAD(TXN_ERR_RESPONSE)) ||
               (unsigned)t->response - 1u >= 2u) {
        st = TXN_ERR_RESPONSE;
    } else if ((bad & BAD(TXN_ERR_EVENT_TIME)) || t->event_time_ms <= 0) {
        st = TXN_ERR_EVENT_TIME;
    }

    if (st != TXN_OK) {
        t->pan_masked[0] = '\0';
        t->bin[0] = '\0';
        return st;
    }
    card_mask(t->pan, t->pan_len, t->pan_masked);
    {
        size_t n = t->pan_len < 8 ? t->pan_len : 8;
        memcpy(t->bin, t->pan, n);
        t->bin[n] = '\0';
    }
    return TXN_OK;
}

enum txn_status txn_validate(struct txn *t)
{
    return validate(t, 0);
}

enum txn_status txn_check_time(const struct txn *t, int64_t now_ms,
                               int64_t max_future_ms)
{
    int64_t limit;

    if (__builtin_add_overflow(now_ms, max_future_ms, &limit)) {
        limit = INT64_MAX;
    }
    return t->event_time_ms > limit ? TXN_ERR_EVENT_TIME_FUTURE : TXN_OK;
}

void txn_forget_pan(struct txn *t)
{
    OPENSSL_cleanse(t->pan, sizeof(t->pan));
    t->pan_len = 0;
}

/* Common end of both decoders: wipe the PAN unless OK, and keep txn_id
 * only when it is a valid one. */
static enum txn_status finish(struct txn *out, enum txn_status st)
{
    if (st != TXN_OK) {
        txn_forget_pan(out);
        if (!txn_id_ok(out->txn_id)) {
            memset(out->txn_id, 0, sizeof(out->txn_id));
        }
    }
    return st;
}

/* Copies src[0..len) into a fixed field, or marks the field bad when it
 * does not fit. */
static void copy_field(char *dst, size_t size, const char *src, size_t len,
                       unsigned *bad, enum txn_status st)
{
    if (len >= size) {
        dst[0] = '\0';
        *bad |= BAD(st);
        return;
    }
    memcpy(dst, src, len);
    dst[len] = '\0';
}

static void copy_pan(struct txn *out, const char *src, size_t len,
                     unsigned *bad)
{
    if (len > CARD_PAN_MAX) {
        *bad |= BAD(TXN_ERR_PAN);
        return;
    }
    memcpy(out->pan, src, len);
    out->pan[len] = '\0';
    out->pan_len = (uint8_t)len;
}

/* ---- protobuf ---- */

/* A decoder for the wire format of cardwatch.v1.Transaction that reads
 * the caller's buffer in place and writes straight into struct txn: it
 * allocates nothing, and the PAN is copied once, into out->pan.
 * - Varints are at most 10 bytes and must fit in 64 bits; tags and
 *   lengths at most 5 bytes and must fit in 32 bits. Field number 0, the
 *   group wire types (3, 4), wire types 6 and 7, and anything cut short
 *   are undecodable.
 * - Unknown fields of wire type 0, 1, 2 and 5 are skipped; a known field
 *   with another wire type than its own is undecodable.
 * - A field given more than once: the last one wins, strings too.
 * - int64 takes the varint as two's complement; uint32 and enums take its
 *   low 32 bits (as protobuf-c did); bool is true for any non-zero varint.
 * - A string ends at its first NUL (protobuf-c handed out C strings), and
 *   what comes before must be UTF-8. Strings are checked and copied once
 *   the whole message has been scanned: only the last occurrence counts.
 */

enum pb_wire {
    PB_WIRE_VARINT = 0,
    PB_WIRE_I64 = 1,
    PB_WIRE_LEN = 2,
    PB_WIRE_I32 = 5,
};

/* Field numbers of cardwatch.v1.Transaction. */
enum pb_field {
    PB_F_TXN_ID = 1,
    PB_F_PAN = 2,
    PB_F_EXPIRY = 3,
    PB_F_AMOUNT = 4,
    PB_F_CURRENCY = 5,
    PB_F_MCC = 6,
    PB_F_MERCHANT = 7,
    PB_F_COUNTRY = 8,
    PB_F_CHANNEL = 9,
    PB_F_ENTRY_MODE = 10,
    PB_F_CVV2 = 11,
    PB_F_RESPONSE = 12,
    PB_F_EVENT_TIME = 13,
    PB_F_MAX = PB_F_EVENT_TIME
};

/* The wire type of each known field. */
static const uint8_t pb_wire_of[PB_F_MAX + 1] = {
    [PB_F_TXN_ID] = PB_WIRE_LEN,        [PB_F_PAN] = PB_WIRE_LEN,
    [PB_F_EXPIRY] = PB_WIRE_LEN,        [PB_F_AMOUNT] = PB_WIRE_VARINT,
    [PB_F_CURRENCY] = PB_WIRE_LEN,      [PB_F_MCC] = PB_WIRE_VARINT,
    [PB_F_MERCHANT] = PB_WIRE_LEN,      [PB_F_COUNTRY] = PB_WIRE_LEN,
    [PB_F_CHANNEL] = PB_WIRE_VARINT,    [PB_F_ENTRY_MODE] = PB_WIRE_VARINT,
    [PB_F_CVV2] = PB_WIRE_VARINT,       [PB_F_RESPONSE] = PB_WIRE_VARINT,
    [PB_F_EVENT_TIME] = PB_WIRE_VARINT,
};

/* A payload in the input buffer. */
struct pb_span {
    const uint8_t *p;
    size_t n;
};

/* What a scan found, by field number: the last value of each varint field
 * and the last payload of each string field. */
struct pb_msg {
    uint64_t num[PB_F_MAX + 1];
    struct pb_span str[PB_F_MAX + 1];
};

/* Reads a varint of at most 10 bytes that fits in 64 bits from *pp (up to
 * end) into *v and advances *pp. Returns 0, or -1 when it is cut short,
 * too long or too large. */
static inline int pb_varint64(const uint8_t **pp, const uint8_t *end,
                              uint64_t *v)
{
    size_t n;
    if (varint_read(*pp, (size_t)(end - *pp), VARINT_MAX_BYTES, v, &n) !=
        VARINT_OK) {
        return -1;
    }
    *pp += n;
    return 0;
}

/* Reads a tag or a length: a varint of at most 5 bytes that fits in 32
 * bits. Returns 0 or -1 as pb_varint64(). */
static inline int pb_varint32(const uint8_t **pp, const uint8_t *end,
                              uint32_t *v)
{
    uint64_t x;
    size_t n;
    if (varint_read(*pp, (size_t)(end - *pp), 5, &x, &n) != VARINT_OK ||
        x > UINT32_MAX) {
        return -1;
    }
    *pp += n;
    *v = (uint32_t)x;
    return 0;
}

/* Reads the payload of a length-delimited field into *span. Returns 0 or
 * -1 as pb_varint64(), also when the length runs past the end. */
static inline int pb_bytes(const uint8_t **pp, const uint8_t *end,
                           struct pb_span *span)
{
    uint32_t n;

    if (pb_varint32(pp, end, &n) != 0 || n > (size_t)(end - *pp)) {
        return -1;
    }
    span->p = *pp;
    span->n = n;
    *pp += n;
    return 0;
}

/* Skips the value of an unknown field. Returns 0, or -1 for field number
 * 0, a group or an undefined wire type, or a value cut short. */
static int pb_skip(const uint8_t **pp, const uint8_t *end, uint32_t tag)
{
    struct pb_span span;
    uint64_t v;

    if (tag >> 3 == 0) {
        return -1;
    }
    switch (tag & 7) {
    case PB_WIRE_VARINT:
        return pb_varint64(pp, end, &v);
    case PB_WIRE_I64:
        if (end - *pp < 8) {
            return -1;
        }
        *pp += 8;
        return 0;
    case PB_WIRE_LEN:
        return pb_bytes(pp, end, &span);
    case PB_WIRE_I32:
        if (end - *pp < 4) {
            return -1;
        }
        *pp += 4;
        return 0;
    default: /* groups (3, 4) and the undefined 6, 7 */
        return -1;
    }
}

/* Scans the message in p[0..end) into *m. Returns 0, or -1 when the
 * input is not a well-formed Transaction. */
static int pb_scan(const uint8_t *p, const uint8_t *end, struct pb_msg *m)
{
    while (p != end) {
        uint32_t tag;
        uint32_t field;
        int rc;

        if (pb_varint32(&p, end, &tag) != 0) {
            return -1;
        }
        field = tag >> 3;
        if (field - 1u >= PB_F_MAX) {
            rc = pb_skip(&p, end, tag);
        } else if ((tag & 7) != pb_wire_of[field]) {
            return -1;
        } else if ((tag & 7) == PB_WIRE_LEN) {
            rc = pb_bytes(&p, end, &m->str[field]);
        } else {
            rc = pb_varint64(&p, end, &m->num[field]);
        }
        if (rc != 0) {
            return -1;
        }
    }
    return 0;
}

/* 1 when none of the 8 bytes of w is NUL or >= 0x80: a byte >= 0x80 sets
 * its own high bit, a NUL byte sets the high bit of (w - ones) & ~w. */
static inline int pb_ascii_word(uint64_t w)
{
    const uint64_t ones = 0x0101010101010101u;
    const uint64_t highs = 0x8080808080808080u;

    return ((w | ((w - ones) & ~w)) & highs) == 0;
}

static inline uint64_t pb_load64(const uint8_t *s)
{
    uint64_t w;

    memcpy(&w, s, sizeof(w));
    return w;
}

static inline uint64_t pb_load32(const uint8_t *s)
{
    uint32_t w;

    memcpy(&w, s, sizeof(w));
    return w | 0x0101010100000000u; /* the upper half passes the test */
}

/* Copies s[0..n) (n >= 1) to dst when it is all ASCII without a NUL, in
 * words that overlap at the end rather than byte by byte. Returns 1 if
 * it did; 0 when it found other bytes (dst may be partly written). */
static inline int pb_copy_ascii(char *dst, const uint8_t *s, size_t n)
{
    uint64_t w;
    uint64_t z;

    if (n >= 8) {
        for (size_t i = 0; n - i > 8; i += 8) {
            w = pb_load64(s + i);
            if (!pb_ascii_word(w)) {
                return 0;
            }
            memcpy(dst + i, &w, 8);
        }
        w = pb_load64(s + n - 8);
        if (!pb_ascii_word(w)) {
            return 0;
        }
        memcpy(dst + n - 8, &w, 8);
        return 1;
    }
    if (n >= 4) {
        w = pb_load32(s);
        z = pb_load32(s + n - 4);
        if (!pb_ascii_word(w) || !pb_ascii_word(z)) {
            return 0;
        }
        memcpy(dst, &w, 4);
        memcpy(dst + n - 4, &z, 4);
        return 1;
    }
    /* 1-3 bytes: s[0], s[n / 2] and s[n - 1] cover them all. */
    if ((unsigned)s[0] - 1u >= 0x7fu || (unsigned)s[n / 2] - 1u >= 0x7fu ||
        (unsigned)s[n - 1] - 1u >= 0x7fu) {
        return 0;
    }
    dst[0] = (char)s[0];
    dst[n / 2] = (char)s[n / 2];
    dst[n - 1] = (char)s[n - 1];
    return 1;
}

/* Length of the string s[0..n) up to its first NUL, or SIZE_MAX when that
 * part is not valid UTF-8. */
static size_t pb_str_len(const uint8_t *s, size_t n)
{
    size_t i = 0;

    while (i < n) {
        unsigned c = s[i];
        size_t k;

        if (c - 1u < 0x7fu) {
            i++;
            continue;
        }
        if (c == 0) {
            return i;
        }
        k = text_utf8_seq(s + i, n - i);
        if (k == 0) {
            return SIZE_MAX;
        }
        i += k;
    }
    return i;
}

/* Zeroes *t like memset() would. In 64-byte steps, because gcc turns one
 * memset() of the whole struct into a rep stos, whose start-up alone costs
 * more than the rest of a decode's stores. */
static void txn_zero(struct txn *t)
{
    unsigned char *p = (unsigned char *)t;
    size_t i;

    for (i = 0; i + 64 <= sizeof(*t); i += 64) {
        memset(p + i, 0, 64);
    }
    memset(p + i, 0, sizeof(*t) - i);
}

/* Checks a string field's payload and copies it into dst[size], which
 * is all zero, as a C string. A string that does not fit leaves dst ""
 * and marks the field bad (as copy_field). Returns the length copied, or
 * SIZE_MAX when the string is not UTF-8. */
static size_t pb_copy_str(char *dst, size_t size, const struct pb_span *s,
                          unsigned *bad, enum txn_status st)
{
    size_t n;

    /* The common case: short enough and plain ASCII. */
    if (s->n > 0 && s->n < size && pb_copy_ascii(dst, s->p, s->n)) {
        return s->n;
    }
    memset(dst, 0, size);
    n = pb_str_len(s->p, s->n);
    if (n == SIZE_MAX) {
        return SIZE_MAX;
    }
    if (n >= size) {
        *bad |= BAD(st);
        return 0;
    }
    memcpy(dst, s->p, n);
    return n;
}

enum txn_status txn_decode_protobuf(const uint8_t *buf, size_t len,
                                    struct txn *out)
{
    static const uint8_t empty[1];
    static const uint8_t str_fields[] = {PB_F_TXN_ID,   PB_F_PAN,
                                         PB_F_EXPIRY,   PB_F_CURRENCY,
                                         PB_F_MERCHANT, PB_F_COUNTRY};
    static const uint8_t num_fields[] = {
        PB_F_AMOUNT, PB_F_MCC,      PB_F_CHANNEL,   PB_F_ENTRY_MODE,
        PB_F_CVV2,   PB_F_RESPONSE, PB_F_EVENT_TIME};
    struct pb_msg m;
    enum txn_status st = TXN_ERR_UNDECODABLE;
    unsigned bad = 0;
    size_t pan_len;

    txn_zero(out);
    for (size_t i = 0; i < NELEM(num_fields); i++) {
        m.num[num_fields[i]] = 0;
    }
    for (size_t i = 0; i < NELEM(str_fields); i++) {
        m.str[str_fields[i]] = (struct pb_span){empty, 0};
    }
    if (len > 0 && (buf == NULL || pb_scan(buf, buf + len, &m) != 0)) {
        goto out;
    }
    /* proto3 strings are UTF-8; other bytes are not a Transaction. txn_id
     * goes first: it names the dead letter even when another string is
     * not UTF-8. */
    if (pb_copy_str(out->txn_id, sizeof(out->txn_id), &m.str[PB_F_TXN_ID], &bad,
                    TXN_ERR_TXN_ID) == SIZE_MAX) {
        goto out;
    }
    pan_len = pb_copy_str(out->pan, sizeof(out->pan), &m.str[PB_F_PAN], &bad,
                          TXN_ERR_PAN);
    if (pan_len == SIZE_MAX ||
        pb_copy_str(out->expiry, sizeof(out->expiry), &m.str[PB_F_EXPIRY], &bad,
                    TXN_ERR_EXPIRY) == SIZE_MAX ||
        pb_copy_str(out->currency, sizeof(out->currency), &m.str[PB_F_CURRENCY],
                    &bad, TXN_ERR_CURRENCY) == SIZE_MAX ||
        pb_copy_str(out->merchant_id, sizeof(out->merchant_id),
                    &m.str[PB_F_MERCHANT], &bad,
                    TXN_ERR_MERCHANT) == SIZE_MAX ||
        pb_copy_str(out->merchant_country, sizeof(out->merchant_country),
                    &m.str[PB_F_COUNTRY], &bad, TXN_ERR_COUNTRY) == SIZE_MAX) {
        goto out;
    }
    out->pan_len = (uint8_t)pan_len;
    out->amount_minor = (int64_t)m.num[PB_F_AMOUNT];
    out->mcc = (uint32_t)m.num[PB_F_MCC];
    out->channel = (enum txn_channel)(uint32_t)m.num[PB_F_CHANNEL];
    out->entry_mode = (enum txn_entry_mode)(uint32_t)m.num[PB_F_ENTRY_MODE];
    out->cvv2_presented = m.num[PB_F_CVV2] != 0;
    out->response = (enum txn_response)(uint32_t)m.num[PB_F_RESPONSE];
    out->event_time_ms = (int64_t)m.num[PB_F_EVENT_TIME];
    st = validate(out, bad);

out:
    return finish(out, st);
}

/* ---- JSON ---- */

/* JSON members of a Transaction, as the decoders below see them. */
enum jfield {
    JF_TXN_ID,
    JF_PAN,
    JF_EXPIRY,
    JF_AMOUNT,
    JF_CURRENCY,
    JF_MCC,
    JF_MERCHANT_ID,
    JF_MERCHANT_COUNTRY,
    JF_CHANNEL,
    JF_ENTRY_MODE,
    JF_RESPONSE,
    JF_EVENT_TIME,
    JF_CVV2,
    JF_COUNT
};

static const char *const jf_names[JF_COUNT] = {
    "txn_id", "pan", "expiry", "amount_minor", "currency", "mcc",
    "merchant_id", "merchant_country", "channel", "entry_mode", "response",
    "event_time_ms", "cvv2_presented",
};

enum jkind { JK_MISSING = 0, JK_STRING, JK_INT, JK_TRUE, JK_FALSE, JK_OTHER };

/* What each member holds: the kind, a string's bytes (borrowed from the
 * input or the jansson tree) or an integer's value. */
struct jval {
    enum jkind kind;
    const char *s;
    size_t len;
    int64_t i;
};

static enum jkind jf_kind(enum jfield f)
{
    switch (f) {
    case JF_AMOUNT:
    case JF_MCC:
    case JF_EVENT_TIME:
        return JK_INT;
    case JF_CVV2:
        return JK_TRUE; /* a boolean: JK_TRUE or JK_FALSE */
    default:
        return JK_STRING;
    }
}

static int is_jws(char c)
{
    return c == ' ' || c == '\t' || c == '\n' || c == '\r';
}

/* The helpers of json_fast_scan() below: each reads one piece of the
 * input at p (end is one past its last byte) and returns where the next
 * piece starts, or NULL for anything the fast path does not know. They
 * are inline: this is the decode hot path. */

/* Skips JSON whitespace; returns the first other byte, or end. */
static inline const char *json_fast_ws(const char *p, const char *end)
{
    while (p < end && is_jws(*p)) {
        p++;
    }
    return p;
}

/* The bytes of a key or a string after its opening quote: printable
 * ASCII without escapes. Returns its closing quote. */
static inline const char *json_fast_chars(const char *p, const char *end)
{
    while (p < end && *p != '"') {
        if ((unsigned char)*p < 0x20 || (unsigned char)*p > 0x7e ||
            *p == '\\') {
            return NULL;
        }
        p++;
    }
    if (p == end) {
        return NULL;
    }
    return p;
}

/* The member a key of klen bytes names, or -1 for an unknown key. */
static inline int json_fast_key(const char *k, size_t klen)
{
    for (int i = 0; i < JF_COUNT; i++) {
        if (strlen(jf_names[i]) == klen && memcmp(jf_names[i], k, klen) == 0) {
            return i;
        }
    }
    return -1;
}

/* A plain integer of at most 18 digits ('-' or a digit at p) into jv. */
static inline const char *json_fast_int(const char *p, const char *end,
                                        struct jval *jv)
{
    int neg = *p == '-';
    if (neg) {
        p++;
    }
    const char *d0 = p;
    int64_t val = 0;
    while (p < end && *p >= '0' && *p <= '9') {
        if (p - d0 == 18) {
            return NULL; /* may not fit: jansson decides */
        }
        val = val * 10 + (*p - '0');
        p++;
    }
    size_t nd = (size_t)(p - d0);
    if (nd == 0 || (d0[0] == '0' && (nd > 1 || neg)) ||
        (p < end && (*p == '.' || *p == 'e' || *p == 'E'))) {
        return NULL;
    }
    jv->kind = JK_INT;
    jv->i = neg ? -val : val;
    return p;
}

/* One value (p < end) into jv: a string, an integer, true or false. */
static inline const char *json_fast_value(const char *p, const char *end,
                                          struct jval *jv)
{
    if (*p == '"') {
        const char *s0 = ++p;
        p = json_fast_chars(p, end);
        if (p == NULL) {
            return NULL;
        }
        jv->kind = JK_STRING;
        jv->s = s0;
        jv->len = (size_t)(p - s0);
        p++;
    } else if (*p == '-' || (*p >= '0' && *p <= '9')) {
        p = json_fast_int(p, end, jv);
    } else if (end - p >= 4 && memcmp(p, "true", 4) == 0) {
        jv->kind = JK_TRUE;
        p += 4;
    } else if (end - p >= 5 && memcmp(p, "false", 5) == 0) {
        jv->kind = JK_FALSE;
        p += 5;
    } else {
        return NULL;
    }
    return p;
}

/* One member, "key": value, into v: a known key seen for the first time
 * with a value of its type. */
static inline const char *json_fast_member(const char *p, const char *end,
                                           struct jval v[JF_COUNT])
{
    if (p == end || *p++ != '"') {
        return NULL;
    }
    const char *k = p;
    p = json_fast_chars(p, end);
    if (p == NULL) {
        return NULL;
    }
    size_t klen = (size_t)(p - k);
    p++;
    int f = json_fast_key(k, klen);
    if (f < 0 || v[f].kind != JK_MISSING) {
        return NULL; /* unknown member, or a duplicate */
    }
    p = json_fast_ws(p, end);
    if (p == end || *p++ != ':') {
        return NULL;
    }
    p = json_fast_ws(p, end);
    if (p == end) {
        return NULL;
    }
    struct jval *jv = &v[f];
    p = json_fast_value(p, end, jv);
    if (p == NULL) {
        return NULL;
    }
    enum jkind want = jf_kind((enum jfield)f);
    if (want == JK_TRUE ? (jv->kind != JK_TRUE && jv->kind != JK_FALSE)
                        : jv->kind != want) {
        return NULL;
    }
    return p;
}

/* The fast path: a flat object whose keys are known members, whose
 * strings are printable ASCII without escapes and whose numbers are plain
 * integers of at most 18 digits, each member at most once and of the
 * right type - what producers write. Fills v and returns 0; returns -1
 * for anything else, which jansson then decides on (same results, just
 * slower): the fast path never judges input it does not fully know. */
static int json_fast_scan(const char *buf, size_t len, struct jval v[JF_COUNT])
{
    const char *p = buf, *end = buf + len;
    p = json_fast_ws(p, end);
    if (p == end || *p++ != '{') {
        return -1;
    }
    p = json_fast_ws(p, end);
    if (p < end && *p == '}') {
        p++;
        goto tail;
    }
    for (;;) {
        p = json_fast_member(p, end, v);
        if (p == NULL) {
            return -1;
        }
        p = json_fast_ws(p, end);
        if (p == end) {
            return -1;
        }
        if (*p == ',') {
            p++;
            p = json_fast_ws(p, end);
            continue;
        }
        if (*p++ != '}') {
            return -1;
        }
        break;
    }
tail:
    p = json_fast_ws(p, end);
    return p == end ? 0 : -1;
}

/* The general path: jansson's parse, read into the same form. Returns the
 * tree (the caller frees it after use; strings point into it), or NULL
 * when the input is not a JSON object. */
static json_t *json_slow_scan(const char *buf, size_t len,
                              struct jval v[JF_COUNT])
{
    json_error_t jerr;
    json_t *root = json_loadb(buf, len, JSON_REJECT_DUPLICATES, &jerr);
    if (root == NULL || !json_is_object(root)) {
        json_decref(root);
        return NULL;
    }
    for (int f = 0; f < JF_COUNT; f++) {
        json_t *m = json_object_get(root, jf_names[f]);
        struct jval *jv = &v[f];
        if (m == NULL) {
            jv->kind = JK_MISSING;
        } else if (json_is_string(m)) {
            jv->kind = JK_STRING;
            jv->s = json_string_value(m);
            jv->len = json_string_length(m);
        } else if (json_is_integer(m)) {
            jv->kind = JK_INT;
            jv->i = (int64_t)json_integer_value(m);
        } else if (json_is_true(m)) {
            jv->kind = JK_TRUE;
        } else if (json_is_false(m)) {
            jv->kind = JK_FALSE;
        } else {
            jv->kind = JK_OTHER;
        }
    }
    return root;
}

/* An optional string member into dst; a missing one marks the field bad.
 * Returns -1 on a wrong type. */
static int jv_str(const struct jval *jv, char *dst, size_t size,
                  unsigned *bad, enum txn_status st)
{
    if (jv->kind == JK_MISSING) {
        *bad |= BAD(st);
        return 0;
    }
    if (jv->kind != JK_STRING) {
        return -1;
    }
    copy_field(dst, size, jv->s, jv->len, bad, st);
    return 0;
}

static int jv_int(const struct jval *jv, int64_t *dst, unsigned *bad,
                  enum txn_status st)
{
    if (jv->kind == JK_MISSING) {
        *bad |= BAD(st);
        return 0;
    }
    if (jv->kind != JK_INT) {
        return -1;
    }
    *dst = jv->i;
    return 0;
}

/* An enum member by name; missing or unknown gives 0 (UNSPECIFIED), which
 * validation rejects. */
static int jv_enum(const struct jval *jv, const char *const names[], size_t n,
                   int *dst)
{
    char name[32];
    *dst = 0;
    if (jv->kind == JK_MISSING) {
        return 0;
    }
    if (jv->kind != JK_STRING) {
        return -1;
    }
    size_t l = strnlen(jv->s, jv->len); /* as strcmp would see it */
    if (l < sizeof(name)) {
        memcpy(name, jv->s, l);
        name[l] = '\0';
        *dst = name_index(names, n, name);
    }
    return 0;
}

/* Parses a JSON transaction into out. validate_it = 0 only checks the
 * JSON shape (types, enum names) and leaves field values unchecked. */
static enum txn_status parse_json(const char *buf, size_t len, struct txn *out,
                                  int validate_it, int general_only)
{
    json_t *root = NULL;
    enum txn_status st = TXN_ERR_UNDECODABLE;
    struct jval v[JF_COUNT];
    unsigned bad = 0;
    int64_t amount = 0, mcc = 0, event_time = 0;
    int channel = 0, entry = 0, response = 0;
    int rc = 0;

    memset(out, 0, sizeof(*out));
    memset(v, 0, sizeof(v));
    if (buf == NULL) {
        goto out;
    }
    if (general_only || json_fast_scan(buf, len, v) != 0) {
        memset(v, 0, sizeof(v));
        root = json_slow_scan(buf, len, v);
        if (root == NULL) {
            goto out;
        }
    }
    rc |= jv_str(&v[JF_TXN_ID], out->txn_id, sizeof(out->txn_id), &bad,
                 TXN_ERR_TXN_ID);
    if (v[JF_PAN].kind == JK_MISSING) {
        bad |= BAD(TXN_ERR_PAN);
    } else if (v[JF_PAN].kind != JK_STRING) {
        rc = -1;
    } else {
        copy_pan(out, v[JF_PAN].s, v[JF_PAN].len, &bad);
    }
    rc |= jv_str(&v[JF_EXPIRY], out->expiry, sizeof(out->expiry), &bad,
                 TXN_ERR_EXPIRY);
    rc |= jv_int(&v[JF_AMOUNT], &amount, &bad, TXN_ERR_AMOUNT);
    rc |= jv_str(&v[JF_CURRENCY], out->currency, sizeof(out->currency), &bad,
                 TXN_ERR_CURRENCY);
    rc |= jv_int(&v[JF_MCC], &mcc, &bad, TXN_ERR_MCC);
    rc |= jv_str(&v[JF_MERCHANT_ID], out->merchant_id,
                 sizeof(out->merchant_id), &bad, TXN_ERR_MERCHANT);
    rc |= jv_str(&v[JF_MERCHANT_COUNTRY], out->merchant_country,
                 sizeof(out->merchant_country), &bad, TXN_ERR_COUNTRY);
    rc |= jv_enum(&v[JF_CHANNEL], channel_names, NELEM(channel_names),
                  &channel);
    rc |= jv_enum(&v[JF_ENTRY_MODE], entry_names, NELEM(entry_names), &entry);
    rc |= jv_enum(&v[JF_RESPONSE], response_names, NELEM(response_names),
                  &response);
    rc |= jv_int(&v[JF_EVENT_TIME], &event_time, &bad, TXN_ERR_EVENT_TIME);
    if (v[JF_CVV2].kind != JK_MISSING && v[JF_CVV2].kind != JK_TRUE &&
        v[JF_CVV2].kind != JK_FALSE) {
        rc = -1;
    }
    if (rc != 0) {
        goto out;
    }
    out->amount_minor = amount;
    if (mcc < 0 || mcc > 9999) {
        bad |= BAD(TXN_ERR_MCC);
        /* Unvalidated parsing keeps what fits the field, so that invalid
         * test data is published as it was written. */
        if (!validate_it && mcc >= 0 && mcc <= (int64_t)UINT32_MAX) {
            out->mcc = (uint32_t)mcc;
        }
    } else {
        out->mcc = (uint32_t)mcc;
    }
    out->channel = (enum txn_channel)channel;
    out->entry_mode = (enum txn_entry_mode)entry;
    out->response = (enum txn_response)response;
    out->cvv2_presented = v[JF_CVV2].kind == JK_TRUE;
    out->event_time_ms = event_time;
    st = validate_it ? validate(out, bad) : TXN_OK;

out:
    if (root != NULL && v[JF_PAN].kind == JK_STRING) {
        /* The tree is ours and about to be freed: wipe its copy of the
         * PAN. (The fast path made no copy: it read the caller's buffer.) */
        OPENSSL_cleanse((char *)v[JF_PAN].s, v[JF_PAN].len);
    }
    json_decref(root);
    return finish(out, st);
}

enum txn_status txn_decode_json(const char *buf, size_t len, struct txn *out)
{
    return parse_json(buf, len, out, 1, 0);
}

enum txn_status txn_decode_json_general(const char *buf, size_t len,
                                        struct txn *out)
{
    return parse_json(buf, len, out, 1, 1);
}

enum txn_status txn_parse_json(const char *buf, size_t len, struct txn *out)
{
    return parse_json(buf, len, out, 0, 0);
}

/* ---- encoding ---- */

int txn_encode_protobuf(const struct txn *t, uint8_t **out, size_t *outlen)
{
    Cardwatch__V1__Transaction m = CARDWATCH__V1__TRANSACTION__INIT;
    uint8_t *buf;
    size_t size;

    m.txn_id = (char *)t->txn_id;
    m.pan = (char *)t->pan;
    m.expiry = (char *)t->expiry;
    m.amount_minor = t->amount_minor;
    m.currency = (char *)t->currency;
    m.mcc = t->mcc;
    m.merchant_id = (char *)t->merchant_id;
    m.merchant_country = (char *)t->merchant_country;
    m.channel = (Cardwatch__V1__Channel)t->channel;
    m.entry_mode = (Cardwatch__V1__EntryMode)t->entry_mode;
    m.cvv2_presented = t->cvv2_presented;
    m.response = (Cardwatch__V1__Response)t->response;
    m.event_time_ms = t->event_time_ms;

    size = cardwatch__v1__transaction__get_packed_size(&m);
    buf = malloc(size > 0 ? size : 1);
    if (buf == NULL) {
        return -1;
    }
    *outlen = cardwatch__v1__transaction__pack(&m, buf);
    *out = buf;
    return 0;
}

/* Writes the member key (raw JSON, from its leading ',' or '{' to its
 * ':') and the fixed-size string field s[size] as its value. */
static void json_member(struct jsonw *w, const char *key, const char *s,
                        size_t size)
{
    jsonw_cstr(w, key);
    jsonw_field(w, s, size);
}

int txn_encode_json(const struct txn *t, char *buf, size_t buflen)
{
    struct jsonw w;
    int n;

    jsonw_init(&w, buf, buflen);
    json_member(&w, "{\"txn_id\":", t->txn_id, sizeof(t->txn_id));
    json_member(&w, ",\"pan\":", t->pan, sizeof(t->pan));
    json_member(&w, ",\"expiry\":", t->expiry, sizeof(t->expiry));
    JSONW_LIT(&w, ",\"amount_minor\":");
    jsonw_i64(&w, t->amount_minor);
    json_member(&w, ",\"currency\":", t->currency, sizeof(t->currency));
    JSONW_LIT(&w, ",\"mcc\":");
    jsonw_i64(&w, t->mcc);
    json_member(&w, ",\"merchant_id\":", t->merchant_id,
                sizeof(t->merchant_id));
    json_member(&w, ",\"merchant_country\":", t->merchant_country,
                sizeof(t->merchant_country));
    JSONW_LIT(&w, ",\"channel\":\"");
    jsonw_cstr(&w, txn_channel_name(t->channel));
    JSONW_LIT(&w, "\",\"entry_mode\":\"");
    jsonw_cstr(&w, txn_entry_mode_name(t->entry_mode));
    JSONW_LIT(&w, "\",\"cvv2_presented\":");
    jsonw_cstr(&w, t->cvv2_presented ? "true" : "false");
    JSONW_LIT(&w, ",\"response\":\"");
    jsonw_cstr(&w, txn_response_name(t->response));
    JSONW_LIT(&w, "\",\"event_time_ms\":");
    jsonw_i64(&w, t->event_time_ms);
    JSONW_LIT(&w, "}");
    n = jsonw_end(&w);
    if (n < 0) {
        /* What was written may hold part of the PAN. */
        OPENSSL_cleanse(buf, w.len);
    }
    return n;
}
