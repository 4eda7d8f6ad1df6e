/* test_txn.c - decode/validate tables for protobuf and JSON, round trips.
 * Only synthetic test card numbers; no PAN is ever printed. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cardwatch.pb-c.h"
#include "txn.h"

#define NELEM(a) (sizeof(a) / sizeof((a)[0]))
#define S_LIT(s) (s), sizeof(s) - 1

enum fld {
    F_NONE,
    F_TXN_ID,
    F_PAN,
    F_EXPIRY,
    F_AMOUNT,
    F_CURRENCY,
    F_MCC,
    F_MERCHANT,
    F_COUNTRY,
    F_CHANNEL,
    F_ENTRY,
    F_RESPONSE,
    F_EVENT_TIME,
    F_COUNT
};

static const char *const json_names[F_COUNT] = {
    NULL,
    "txn_id",
    "pan",
    "expiry",
    "amount_minor",
    "currency",
    "mcc",
    "merchant_id",
    "merchant_country",
    "channel",
    "entry_mode",
    "response",
    "event_time_ms",
};

/* One mutation of the valid base transaction: string fields take s,
 * integer fields i, enum fields i (protobuf) and s (JSON name). */
struct vcase {
    enum fld f;
    const char *s;
    int64_t i;
    enum txn_status want;
};

static const char long65[] =
    "12345678901234567890123456789012345678901234567890123456789012345";
static const char long64[] =
    "1234567890123456789012345678901234567890123456789012345678901234";

static const struct vcase cases[] = {
    {F_NONE, NULL, 0, TXN_OK},
    {F_TXN_ID, long64, 0, TXN_OK},
    {F_TXN_ID, "tx 1/\"q\"", 0, TXN_OK},
    {F_PAN, "4222222222222", 0, TXN_OK},
    {F_PAN, "378282246310005", 0, TXN_OK},
    {F_PAN, "5555555555554444", 0, TXN_OK},
    {F_PAN, "4111111111111111110", 0, TXN_OK},
    {F_EXPIRY, "0001", 0, TXN_OK},
    {F_AMOUNT, NULL, 0, TXN_OK},
    {F_MCC, NULL, 9999, TXN_OK},
    {F_MCC, NULL, 0, TXN_OK},
    {F_MERCHANT, long64, 0, TXN_OK},
    {F_MERCHANT, "Caf\xc3\xa9 \"Q\" \\ 1", 0, TXN_OK},

    {F_TXN_ID, "", 0, TXN_ERR_TXN_ID},
    {F_TXN_ID, long65, 0, TXN_ERR_TXN_ID},
    {F_TXN_ID, "T\001", 0, TXN_ERR_TXN_ID},
    {F_TXN_ID, "T\n1", 0, TXN_ERR_TXN_ID},
    {F_TXN_ID, "T\xc3\xa9", 0, TXN_ERR_TXN_ID},
    {F_PAN, "", 0, TXN_ERR_PAN},
    {F_PAN, "411111111111", 0, TXN_ERR_PAN},
    {F_PAN, "41111111111111111110", 0, TXN_ERR_PAN},
    {F_PAN, "4111111111111111111111111111111111111111", 0, TXN_ERR_PAN},
    {F_PAN, "4111-1111-1111-1111", 0, TXN_ERR_PAN},
    {F_PAN, "4111 1111 1111 111", 0, TXN_ERR_PAN},
    {F_PAN, "4111111111111112", 0, TXN_ERR_LUHN},
    {F_PAN, "5555555555554445", 0, TXN_ERR_LUHN},
    {F_EXPIRY, "", 0, TXN_ERR_EXPIRY},
    {F_EXPIRY, "2613", 0, TXN_ERR_EXPIRY},
    {F_EXPIRY, "2600", 0, TXN_ERR_EXPIRY},
    {F_EXPIRY, "261", 0, TXN_ERR_EXPIRY},
    {F_EXPIRY, "26123", 0, TXN_ERR_EXPIRY},
    {F_EXPIRY, "26-1", 0, TXN_ERR_EXPIRY},
    {F_AMOUNT, NULL, -1, TXN_ERR_AMOUNT},
    {F_AMOUNT, NULL, INT64_MIN, TXN_ERR_AMOUNT},
    {F_CURRENCY, "", 0, TXN_ERR_CURRENCY},
    {F_CURRENCY, "eur", 0, TXN_ERR_CURRENCY},
    {F_CURRENCY, "EU", 0, TXN_ERR_CURRENCY},
    {F_CURRENCY, "EURO", 0, TXN_ERR_CURRENCY},
    {F_CURRENCY, "E1R", 0, TXN_ERR_CURRENCY},
    {F_MCC, NULL, 10000, TXN_ERR_MCC},
    {F_MCC, NULL, 4294967295, TXN_ERR_MCC},
    {F_MERCHANT, "", 0, TXN_ERR_MERCHANT},
    {F_MERCHANT, long65, 0, TXN_ERR_MERCHANT},
    {F_COUNTRY, "", 0, TXN_ERR_COUNTRY},
    {F_COUNTRY, "de", 0, TXN_ERR_COUNTRY},
    {F_COUNTRY, "DEU", 0, TXN_ERR_COUNTRY},
    {F_COUNTRY, "D", 0, TXN_ERR_COUNTRY},
    {F_CHANNEL, "unspecified", 0, TXN_ERR_CHANNEL},
    {F_CHANNEL, "teleport", 6, TXN_ERR_CHANNEL},
    {F_CHANNEL, "ECOMMERCE", 99, TXN_ERR_CHANNEL},
    {F_ENTRY, "unspecified", 0, TXN_ERR_ENTRY_MODE},
    {F_ENTRY, "telepathy", 6, TXN_ERR_ENTRY_MODE},
    {F_RESPONSE, "unspecified", 0, TXN_ERR_RESPONSE},
    {F_RESPONSE, "maybe", 3, TXN_ERR_RESPONSE},
    {F_EVENT_TIME, NULL, 0, TXN_ERR_EVENT_TIME},
    {F_EVENT_TIME, NULL, -1718000000000, TXN_ERR_EVENT_TIME},
};

/* ---- protobuf helpers ---- */

static void pb_base(Cardwatch__V1__Transaction *m)
{
    cardwatch__v1__transaction__init(m);
    m->txn_id = "T-0001";
    m->pan = "4111111111111111";
    m->expiry = "2612";
    m->amount_minor = 12345;
    m->currency = "EUR";
    m->mcc = 5411;
    m->merchant_id = "M-42";
    m->merchant_country = "DE";
    m->channel = CARDWATCH__V1__CHANNEL__CHANNEL_ECOMMERCE;
    m->entry_mode = CARDWATCH__V1__ENTRY_MODE__ENTRY_MODE_ON_FILE;
    m->cvv2_presented = 1;
    m->response = CARDWATCH__V1__RESPONSE__RESPONSE_APPROVED;
    m->event_time_ms = 1718000000000;
}

static void pb_apply(Cardwatch__V1__Transaction *m, const struct vcase *c)
{
    char *s = (char *)c->s;

    switch (c->f) {
    case F_NONE:
    case F_COUNT:
        break;
    case F_TXN_ID:
        m->txn_id = s;
        break;
    case F_PAN:
        m->pan = s;
        break;
    case F_EXPIRY:
        m->expiry = s;
        break;
    case F_AMOUNT:
        m->amount_minor = c->i;
        break;
    case F_CURRENCY:
        m->currency = s;
        break;
    case F_MCC:
        m->mcc = (uint32_t)c->i;
        break;
    case F_MERCHANT:
        m->merchant_id = s;
        break;
    case F_COUNTRY:
        m->merchant_country = s;
        break;
    case F_CHANNEL:
        m->channel = (Cardwatch__V1__Channel)c->i;
        break;
    case F_ENTRY:
        m->entry_mode = (Cardwatch__V1__EntryMode)c->i;
        break;
    case F_RESPONSE:
        m->response = (Cardwatch__V1__Response)c->i;
        break;
    case F_EVENT_TIME:
        m->event_time_ms = c->i;
        break;
    }
}

static size_t pb_pack(const Cardwatch__V1__Transaction *m, uint8_t *buf,
                      size_t cap)
{
    size_t n = cardwatch__v1__transaction__get_packed_size(m);
    assert_true(n <= cap);
    return cardwatch__v1__transaction__pack(m, buf);
}

static int all_zero(const void *p, size_t n)
{
    const unsigned char *b = p;
    for (size_t i = 0; i < n; i++) {
        if (b[i] != 0) {
            return 0;
        }
    }
    return 1;
}

static void check_failed(const struct txn *t)
{
    assert_true(all_zero(t->pan, sizeof(t->pan)));
    assert_int_equal(t->pan_len, 0);
}

static void check_status(const char *fmt, size_t idx, enum txn_status got,
                         enum txn_status want)
{
    if (got != want) {
        fail_msg("%s case %zu: got %s, want %s", fmt, idx, txn_status_name(got),
                 txn_status_name(want));
    }
}

static void test_pb_table(void **state)
{
    uint8_t buf[512];
    struct txn t;
    (void)state;

    for (size_t i = 0; i < NELEM(cases); i++) {
        Cardwatch__V1__Transaction m;
        size_t n;
        enum txn_status st;

        pb_base(&m);
        pb_apply(&m, &cases[i]);
        n = pb_pack(&m, buf, sizeof(buf));
        memset(&t, 0x5a, sizeof(t));
        st = txn_decode_protobuf(buf, n, &t);
        check_status("protobuf", i, st, cases[i].want);
        if (st != TXN_OK) {
            check_failed(&t);
        } else {
            assert_int_equal(t.pan_len, strlen(m.pan));
            assert_memory_equal(t.pan, m.pan, t.pan_len);
        }
    }
}

static void test_pb_all_enums(void **state)
{
    uint8_t buf[512];
    struct txn t;
    (void)state;

    for (int c = 1; c <= 5; c++) {
        for (int e = 1; e <= 5; e++) {
            for (int r = 1; r <= 2; r++) {
                Cardwatch__V1__Transaction m;
                size_t n;
                pb_base(&m);
                m.channel = (Cardwatch__V1__Channel)c;
                m.entry_mode = (Cardwatch__V1__EntryMode)e;
                m.response = (Cardwatch__V1__Response)r;
                m.cvv2_presented = (c + e + r) % 2;
                n = pb_pack(&m, buf, sizeof(buf));
                assert_int_equal(txn_decode_protobuf(buf, n, &t), TXN_OK);
                assert_int_equal(t.channel, c);
                assert_int_equal(t.entry_mode, e);
                assert_int_equal(t.response, r);
                assert_int_equal(t.cvv2_presented, (c + e + r) % 2);
            }
        }
    }
}

static void test_pb_fields(void **state)
{
    uint8_t buf[512];
    struct txn t;
    Cardwatch__V1__Transaction m;
    size_t n;
    (void)state;

    pb_base(&m);
    n = pb_pack(&m, buf, sizeof(buf));
    assert_int_equal(txn_decode_protobuf(buf, n, &t), TXN_OK);
    assert_string_equal(t.txn_id, "T-0001");
    assert_int_equal(t.pan_len, 16);
    assert_string_equal(t.pan_masked, "411111******1111");
    assert_string_equal(t.bin, "41111111");
    assert_string_equal(t.expiry, "2612");
    assert_int_equal(t.amount_minor, 12345);
    assert_string_equal(t.currency, "EUR");
    assert_int_equal(t.mcc, 5411);
    assert_string_equal(t.merchant_id, "M-42");
    assert_string_equal(t.merchant_country, "DE");
    assert_int_equal(t.channel, TXN_CHANNEL_ECOMMERCE);
    assert_int_equal(t.entry_mode, TXN_ENTRY_ON_FILE);
    assert_true(t.cvv2_presented);
    assert_int_equal(t.response, TXN_RESPONSE_APPROVED);
    assert_int_equal(t.event_time_ms, 1718000000000);

    /* Several errors: the first in enum order wins. */
    m.currency = "eu";
    m.pan = "4111111111111112";
    m.event_time_ms = 0;
    n = pb_pack(&m, buf, sizeof(buf));
    assert_int_equal(txn_decode_protobuf(buf, n, &t), TXN_ERR_LUHN);
    check_failed(&t);
    assert_string_equal(t.txn_id, "T-0001"); /* kept for the dead letter */

    /* An empty message: every field missing. */
    assert_int_equal(txn_decode_protobuf(buf, 0, &t), TXN_ERR_TXN_ID);
    check_failed(&t);
}

static void test_pb_undecodable(void **state)
{
    static const struct {
        const char *bytes;
        size_t len;
    } bad[] = {
        {"\xff\xff\xff\xff", 4},
        {"\x0a\x10T1", 4}, /* length beyond the end */
        {"\x0a", 1},       /* truncated */
        {"\x20\xff\xff\xff\xff\xff\xff\xff\xff\xff\xff\x01", 12}, /* varint */
        {"\x0d\x01\x02", 3},         /* fixed32 cut short */
        {"\x0f", 1},                 /* wire type 7 */
        {"{\"txn_id\":\"T1\"}", 15}, /* JSON is not protobuf */
    };
    uint8_t buf[512];
    struct txn t;
    Cardwatch__V1__Transaction m;
    size_t n;
    (void)state;

    for (size_t i = 0; i < NELEM(bad); i++) {
        memset(&t, 0x5a, sizeof(t));
        check_status(
            "protobuf-bad", i,
            txn_decode_protobuf((const uint8_t *)bad[i].bytes, bad[i].len, &t),
            TXN_ERR_UNDECODABLE);
        check_failed(&t);
    }

    /* A string field that is not UTF-8 is not a proto3 Transaction. */
    pb_base(&m);
    m.merchant_id = "M\xff\xfe";
    n = pb_pack(&m, buf, sizeof(buf));
    memset(&t, 0x5a, sizeof(t));
    assert_int_equal(txn_decode_protobuf(buf, n, &t), TXN_ERR_UNDECODABLE);
    check_failed(&t);
    assert_string_equal(t.txn_id, "T-0001");

    /* Truncating a valid message anywhere never yields a PAN. */
    pb_base(&m);
    n = pb_pack(&m, buf, sizeof(buf));
    for (size_t cut = 0; cut < n; cut++) {
        enum txn_status st = txn_decode_protobuf(buf, cut, &t);
        assert_int_not_equal(st, TXN_OK);
        check_failed(&t);
    }
    assert_int_equal(txn_decode_protobuf(NULL, 5, &t), TXN_ERR_UNDECODABLE);
}

/* ---- protobuf wire format, by hand ---- */

/* A message built byte by byte: the packed base message with hand-made
 * fields before or after it. */
struct msg {
    uint8_t b[512];
    size_t n;
};

static void msg_add(struct msg *m, const void *p, size_t n)
{
    assert_true(n <= sizeof(m->b) - m->n);
    memcpy(m->b + m->n, p, n);
    m->n += n;
}

static void msg_base(struct msg *m)
{
    Cardwatch__V1__Transaction pm;

    pb_base(&pm);
    m->n += pb_pack(&pm, m->b + m->n, sizeof(m->b) - m->n);
}

static void msg_raw_varint(struct msg *m, uint64_t v)
{
    uint8_t b[10];
    size_t n = 0;

    do {
        b[n++] = (uint8_t)((v & 0x7f) | (v > 0x7f ? 0x80 : 0));
        v >>= 7;
    } while (v != 0);
    msg_add(m, b, n);
}

static void msg_varint(struct msg *m, uint32_t field, uint64_t v)
{
    msg_raw_varint(m, (uint64_t)field << 3);
    msg_raw_varint(m, v);
}

static void msg_str(struct msg *m, uint32_t field, const char *s, size_t n)
{
    msg_raw_varint(m, ((uint64_t)field << 3) | 2);
    msg_raw_varint(m, n);
    msg_add(m, s, n);
}

static enum txn_status msg_decode(const struct msg *m, struct txn *t)
{
    enum txn_status st;

    memset(t, 0x5a, sizeof(*t));
    st = txn_decode_protobuf(m->b, m->n, t);
    if (st != TXN_OK) {
        check_failed(t);
    }
    return st;
}

/* Hand-made fields around the valid base message. */
struct wcase {
    const char *pre;
    size_t pre_len;
    const char *post;
    size_t post_len;
    enum txn_status want;
};

#define WIRE(pre, post, want)                                                  \
    {                                                                          \
        pre, sizeof(pre) - 1, post, sizeof(post) - 1, want                     \
    }

static const struct wcase wire_cases[] = {
    /* Unknown fields of every valid wire type are skipped. */
    WIRE("", "\x70\x01", TXN_OK),     /* 14: varint */
    WIRE("\x70\x96\x01", "", TXN_OK), /* 14: varint, before */
    WIRE("", "\x70\xff\xff\xff\xff\xff\xff\xff\xff\xff\x01",
         TXN_OK), /* 14: 10-byte varint */
    WIRE("", "\x79\x01\x02\x03\x04\x05\x06\x07\x08", TXN_OK), /* 15: i64 */
    WIRE("\x79\x01\x02\x03\x04\x05\x06\x07\x08", "", TXN_OK),
    WIRE("", "\x82\x01\x03\x61\x62\x63", TXN_OK), /* 16: length */
    WIRE("", "\x82\x01\x00", TXN_OK),             /* 16: empty */
    WIRE("", "\x82\x01\x02\xff\xfe", TXN_OK),     /* 16: not UTF-8 */
    WIRE("\x82\x01\x03\x0a\x01\x41", "", TXN_OK), /* 16: holds field-1 bytes */
    WIRE("", "\x8d\x01\x01\x02\x03\x04", TXN_OK), /* 17: i32 */
    WIRE("", "\xf8\xff\xff\xff\x0f\x00", TXN_OK), /* 2^29-1: varint */
    WIRE("",
         "\x70\x01\x79\x00\x00\x00\x00\x00\x00\x00\x00\x82\x01\x00"
         "\x8d\x01\x00\x00\x00\x00",
         TXN_OK), /* all four */

    /* A known field with another wire type. */
    WIRE("", "\x08\x01", TXN_ERR_UNDECODABLE),             /* txn_id varint */
    WIRE("\x15\x01\x02\x03\x04", "", TXN_ERR_UNDECODABLE), /* pan i32 */
    WIRE("", "\x22\x01\x00", TXN_ERR_UNDECODABLE),         /* amount length */
    WIRE("", "\x31\x00\x00\x00\x00\x00\x00\x00\x00",
         TXN_ERR_UNDECODABLE),                             /* mcc i64 */
    WIRE("", "\x4d\x02\x00\x00\x00", TXN_ERR_UNDECODABLE), /* channel i32 */
    WIRE("", "\x5a\x01\x01", TXN_ERR_UNDECODABLE),         /* cvv2 length */
    WIRE("", "\x59\x01\x00\x00\x00\x00\x00\x00\x00",
         TXN_ERR_UNDECODABLE), /* cvv2 i64 */
    WIRE("", "\x69\x00\x10\x5e\x5f\x90\x01\x00\x00",
         TXN_ERR_UNDECODABLE), /* event_time i64 */

    /* Cut short. */
    WIRE("", "\x20\x80", TXN_ERR_UNDECODABLE),     /* varint */
    WIRE("", "\x70\xff\xff", TXN_ERR_UNDECODABLE), /* unknown varint */
    WIRE("", "\x20", TXN_ERR_UNDECODABLE),         /* no value */
    WIRE("", "\x80", TXN_ERR_UNDECODABLE),         /* tag */
    WIRE("", "\xf8\xff\xff\xff", TXN_ERR_UNDECODABLE),
    WIRE("", "\x0a\x80", TXN_ERR_UNDECODABLE), /* length */
    WIRE("", "\x0a", TXN_ERR_UNDECODABLE),     /* no length */
    WIRE("", "\x79\x01\x02\x03\x04\x05\x06\x07", TXN_ERR_UNDECODABLE),
    WIRE("", "\x8d\x01\x01\x02\x03", TXN_ERR_UNDECODABLE),

    /* Over-long or too large varints, tags and lengths. */
    WIRE("", "\x20\x80\x80\x80\x80\x80\x80\x80\x80\x80\x80\x00",
         TXN_ERR_UNDECODABLE), /* 11 bytes */
    WIRE("", "\x20\xff\xff\xff\xff\xff\xff\xff\xff\xff\x02",
         TXN_ERR_UNDECODABLE), /* 65 bits */
    WIRE("", "\x70\xff\xff\xff\xff\xff\xff\xff\xff\xff\x7f",
         TXN_ERR_UNDECODABLE), /* 70 bits, unknown field */
    WIRE("", "\x88\x80\x80\x80\x80\x00\x01",
         TXN_ERR_UNDECODABLE), /* 6-byte tag */
    WIRE("", "\xf8\xff\xff\xff\x1f\x00",
         TXN_ERR_UNDECODABLE), /* tag beyond 32 bits */
    WIRE("", "\x0a\x82\x80\x80\x80\x80\x00\x54\x31",
         TXN_ERR_UNDECODABLE), /* 6-byte length */
    WIRE("", "\x0a\x82\x80\x80\x80\x10\x54\x31",
         TXN_ERR_UNDECODABLE), /* length beyond 32 bits */

    /* A length that runs past the end. */
    WIRE("", "\x0a\x03\x54\x31", TXN_ERR_UNDECODABLE),
    WIRE("", "\x82\x01\x05\x61\x62", TXN_ERR_UNDECODABLE),
    WIRE("", "\x0a\xff\xff\xff\xff\x0f\x54", TXN_ERR_UNDECODABLE),
    WIRE("\x0a\x7f", "", TXN_ERR_UNDECODABLE), /* swallows the base */

    /* Groups and the undefined wire types. */
    WIRE("", "\x0b", TXN_ERR_UNDECODABLE),             /* 1: start */
    WIRE("", "\x0c", TXN_ERR_UNDECODABLE),             /* 1: end */
    WIRE("", "\x9b\x06\x9c\x06", TXN_ERR_UNDECODABLE), /* 99: empty */
    WIRE("\x9b\x06\x70\x01\x9c\x06", "", TXN_ERR_UNDECODABLE),
    WIRE("", "\x9c\x06", TXN_ERR_UNDECODABLE),
    WIRE("", "\x76\x00", TXN_ERR_UNDECODABLE), /* 14: type 6 */
    WIRE("", "\x77\x00", TXN_ERR_UNDECODABLE), /* 14: type 7 */

    /* Field number 0. */
    WIRE("", "\x00\x00", TXN_ERR_UNDECODABLE),
    WIRE("\x02\x00", "", TXN_ERR_UNDECODABLE),
    WIRE("", "\x80\x00\x00", TXN_ERR_UNDECODABLE),
};

static void test_pb_wire_table(void **state)
{
    struct msg m;
    struct txn t;
    (void)state;

    for (size_t i = 0; i < NELEM(wire_cases); i++) {
        const struct wcase *c = &wire_cases[i];
        enum txn_status st;

        m.n = 0;
        msg_add(&m, c->pre, c->pre_len);
        msg_base(&m);
        msg_add(&m, c->post, c->post_len);
        st = msg_decode(&m, &t);
        check_status("protobuf-wire", i, st, c->want);
        if (st == TXN_OK) {
            assert_string_equal(t.txn_id, "T-0001");
            assert_int_equal(t.pan_len, 16);
            assert_memory_equal(t.pan, "4111111111111111", 17);
            assert_int_equal(t.amount_minor, 12345);
            assert_int_equal(t.mcc, 5411);
            assert_string_equal(t.merchant_country, "DE");
            assert_int_equal(t.event_time_ms, 1718000000000);
        }
    }
}

/* A field given more than once: the last one wins, strings too. */
static void test_pb_last_wins(void **state)
{
    struct msg m;
    struct txn t;
    (void)state;

    m.n = 0;
    msg_base(&m);
    msg_str(&m, 2, S_LIT("5555555555554444"));
    msg_str(&m, 1, S_LIT("T-0002"));
    msg_varint(&m, 4, 1);
    msg_varint(&m, 9, TXN_CHANNEL_ATM);
    msg_varint(&m, 11, 0);
    assert_int_equal(msg_decode(&m, &t), TXN_OK);
    assert_int_equal(t.pan_len, 16);
    assert_memory_equal(t.pan, "5555555555554444", 17);
    assert_string_equal(t.bin, "55555555");
    assert_string_equal(t.txn_id, "T-0002");
    assert_int_equal(t.amount_minor, 1);
    assert_int_equal(t.channel, TXN_CHANNEL_ATM);
    assert_false(t.cvv2_presented);

    /* A bad value, then a good one: only the last counts. */
    m.n = 0;
    msg_str(&m, 1, S_LIT("T\xff"));
    msg_str(&m, 2, S_LIT("4111"));
    msg_base(&m);
    msg_varint(&m, 6, 10000);
    msg_str(&m, 7, S_LIT(long65));
    msg_varint(&m, 6, 42);
    msg_str(&m, 7, S_LIT("M-7"));
    assert_int_equal(msg_decode(&m, &t), TXN_OK);
    assert_string_equal(t.txn_id, "T-0001");
    assert_int_equal(t.mcc, 42);
    assert_string_equal(t.merchant_id, "M-7");

    /* A good value, then a bad one. */
    m.n = 0;
    msg_base(&m);
    msg_str(&m, 2, S_LIT(""));
    assert_int_equal(msg_decode(&m, &t), TXN_ERR_PAN);
    assert_string_equal(t.txn_id, "T-0001");
    m.n = 0;
    msg_base(&m);
    msg_str(&m, 7, S_LIT(long65));
    assert_int_equal(msg_decode(&m, &t), TXN_ERR_MERCHANT);
    m.n = 0;
    msg_base(&m);
    msg_varint(&m, 9, 0);
    assert_int_equal(msg_decode(&m, &t), TXN_ERR_CHANNEL);
    m.n = 0;
    msg_base(&m);
    msg_str(&m, 8, S_LIT("D\xc3"));
    assert_int_equal(msg_decode(&m, &t), TXN_ERR_UNDECODABLE);
    assert_string_equal(t.txn_id, "T-0001");
}

/* Integer widths: int64 is two's complement over 10 bytes, uint32 and
 * enums keep the low 32 bits (as protobuf-c did), bool is any non-zero
 * varint. */
static void test_pb_varint_values(void **state)
{
    struct msg m;
    struct txn t;
    (void)state;

    m.n = 0;
    msg_base(&m);
    msg_varint(&m, 6, (UINT64_C(1) << 32) + 5411);
    msg_varint(&m, 9, (UINT64_C(7) << 32) + TXN_CHANNEL_MOTO);
    msg_varint(&m, 11, UINT64_C(1) << 63);
    msg_varint(&m, 4, INT64_MAX);
    assert_int_equal(msg_decode(&m, &t), TXN_OK);
    assert_int_equal(t.mcc, 5411);
    assert_int_equal(t.channel, TXN_CHANNEL_MOTO);
    assert_true(t.cvv2_presented);
    assert_int_equal(t.amount_minor, INT64_MAX);

    m.n = 0;
    msg_base(&m);
    msg_varint(&m, 11, 2);
    assert_int_equal(msg_decode(&m, &t), TXN_OK);
    assert_true(t.cvv2_presented);

    m.n = 0;
    msg_base(&m);
    msg_varint(&m, 6, UINT32_MAX);
    assert_int_equal(msg_decode(&m, &t), TXN_ERR_MCC);

    m.n = 0;
    msg_base(&m);
    msg_varint(&m, 13, (uint64_t)INT64_C(-1718000000000));
    assert_int_equal(msg_decode(&m, &t), TXN_ERR_EVENT_TIME);

    m.n = 0;
    msg_base(&m);
    msg_varint(&m, 12, (UINT64_C(1) << 32) + TXN_RESPONSE_APPROVED + 2);
    assert_int_equal(msg_decode(&m, &t), TXN_ERR_RESPONSE);

    /* A string ends at its first NUL, as protobuf-c's C strings did. */
    m.n = 0;
    msg_base(&m);
    msg_str(&m, 7, S_LIT("M-42\0xyz"));
    assert_int_equal(msg_decode(&m, &t), TXN_OK);
    assert_string_equal(t.merchant_id, "M-42");
    assert_true(all_zero(t.merchant_id + 4, sizeof(t.merchant_id) - 4));
}

/* ---- JSON helpers ---- */

static void json_escape(char *out, size_t cap, const char *s)
{
    size_t n = 0;
    out[n++] = '"';
    for (; *s != '\0'; s++) {
        unsigned char c = (unsigned char)*s;
        if (c == '"' || c == '\\') {
            n += (size_t)snprintf(out + n, cap - n, "\\%c", c);
        } else if (c < 0x20) {
            n += (size_t)snprintf(out + n, cap - n, "\\u%04x", c);
        } else {
            out[n++] = (char)c;
        }
    }
    out[n++] = '"';
    out[n] = '\0';
}

/* Base values as JSON text, by field. */
static void json_base(char vals[F_COUNT][160])
{
    strcpy(vals[F_TXN_ID], "\"T-0001\"");
    strcpy(vals[F_PAN], "\"4111111111111111\"");
    strcpy(vals[F_EXPIRY], "\"2612\"");
    strcpy(vals[F_AMOUNT], "12345");
    strcpy(vals[F_CURRENCY], "\"EUR\"");
    strcpy(vals[F_MCC], "5411");
    strcpy(vals[F_MERCHANT], "\"M-42\"");
    strcpy(vals[F_COUNTRY], "\"DE\"");
    strcpy(vals[F_CHANNEL], "\"ecommerce\"");
    strcpy(vals[F_ENTRY], "\"on_file\"");
    strcpy(vals[F_RESPONSE], "\"approved\"");
    strcpy(vals[F_EVENT_TIME], "1718000000000");
}

/* Builds the object; an empty value drops the member. extra is appended
 * raw after the members (may be ""). */
static size_t json_build(char *out, size_t cap, char vals[F_COUNT][160],
                         const char *extra)
{
    size_t n = 0;
    int first = 1;

    n += (size_t)snprintf(out + n, cap - n, "{");
    for (int f = F_TXN_ID; f < F_COUNT; f++) {
        if (vals[f][0] == '\0') {
            continue;
        }
        n += (size_t)snprintf(out + n, cap - n, "%s\"%s\":%s", first ? "" : ",",
                              json_names[f], vals[f]);
        first = 0;
    }
    n += (size_t)snprintf(out + n, cap - n, "%s%s}", first ? "" : "", extra);
    assert_true(n < cap);
    return n;
}

static void json_apply(char vals[F_COUNT][160], const struct vcase *c)
{
    switch (c->f) {
    case F_NONE:
    case F_COUNT:
        break;
    case F_AMOUNT:
    case F_MCC:
    case F_EVENT_TIME:
        snprintf(vals[c->f], 160, "%lld", (long long)c->i);
        break;
    default:
        json_escape(vals[c->f], 160, c->s);
        break;
    }
}

static void test_json_table(void **state)
{
    char vals[F_COUNT][160];
    char buf[1024];
    struct txn t;
    (void)state;

    for (size_t i = 0; i < NELEM(cases); i++) {
        size_t n;
        enum txn_status st;

        json_base(vals);
        json_apply(vals, &cases[i]);
        n = json_build(buf, sizeof(buf), vals, ",\"cvv2_presented\":true");
        memset(&t, 0x5a, sizeof(t));
        st = txn_decode_json(buf, n, &t);
        check_status("json", i, st, cases[i].want);
        if (st != TXN_OK) {
            check_failed(&t);
        } else {
            assert_true(t.cvv2_presented);
            assert_int_equal(t.pan_len, strlen(t.pan));
        }
    }
}

static void test_json_all_enums(void **state)
{
    static const char *ch[] = {"card_present", "ecommerce", "moto", "recurring",
                               "atm"};
    static const char *en[] = {"chip", "contactless", "magstripe", "keyed",
                               "on_file"};
    static const char *re[] = {"approved", "declined"};
    char vals[F_COUNT][160];
    char buf[1024];
    struct txn t;
    (void)state;

    for (int c = 0; c < 5; c++) {
        for (int e = 0; e < 5; e++) {
            for (int r = 0; r < 2; r++) {
                size_t n;
                json_base(vals);
                snprintf(vals[F_CHANNEL], 160, "\"%s\"", ch[c]);
                snprintf(vals[F_ENTRY], 160, "\"%s\"", en[e]);
                snprintf(vals[F_RESPONSE], 160, "\"%s\"", re[r]);
                n = json_build(buf, sizeof(buf), vals,
                               r ? ",\"cvv2_presented\":false" : "");
                assert_int_equal(txn_decode_json(buf, n, &t), TXN_OK);
                assert_int_equal(t.channel, c + 1);
                assert_int_equal(t.entry_mode, e + 1);
                assert_int_equal(t.response, r + 1);
                assert_false(t.cvv2_presented);
                assert_string_equal(txn_channel_name(t.channel), ch[c]);
                assert_string_equal(txn_entry_mode_name(t.entry_mode), en[e]);
                assert_string_equal(txn_response_name(t.response), re[r]);
            }
        }
    }
}

static void test_json_missing(void **state)
{
    static const enum txn_status want[F_COUNT] = {
        [F_TXN_ID] = TXN_ERR_TXN_ID,     [F_PAN] = TXN_ERR_PAN,
        [F_EXPIRY] = TXN_ERR_EXPIRY,     [F_AMOUNT] = TXN_ERR_AMOUNT,
        [F_CURRENCY] = TXN_ERR_CURRENCY, [F_MCC] = TXN_ERR_MCC,
        [F_MERCHANT] = TXN_ERR_MERCHANT, [F_COUNTRY] = TXN_ERR_COUNTRY,
        [F_CHANNEL] = TXN_ERR_CHANNEL,   [F_ENTRY] = TXN_ERR_ENTRY_MODE,
        [F_RESPONSE] = TXN_ERR_RESPONSE, [F_EVENT_TIME] = TXN_ERR_EVENT_TIME,
    };
    char vals[F_COUNT][160];
    char buf[1024];
    struct txn t;
    (void)state;

    for (int f = F_TXN_ID; f < F_COUNT; f++) {
        size_t n;
        json_base(vals);
        vals[f][0] = '\0';
        n = json_build(buf, sizeof(buf), vals, "");
        check_status("json-missing", (size_t)f, txn_decode_json(buf, n, &t),
                     want[f]);
        check_failed(&t);
    }
    assert_int_equal(txn_decode_json("{}", 2, &t), TXN_ERR_TXN_ID);
    assert_int_equal(txn_decode_json(S_LIT("{\"txn_id\":\"T1\"}"), &t),
                     TXN_ERR_PAN);
}

static void test_json_wrong_types(void **state)
{
    static const struct {
        enum fld f;
        const char *raw;
    } wrong[] = {
        {F_TXN_ID, "5"},
        {F_TXN_ID, "null"},
        {F_PAN, "4111111111111111"},
        {F_PAN, "[\"4111111111111111\"]"},
        {F_EXPIRY, "2612"},
        {F_AMOUNT, "\"12345\""},
        {F_AMOUNT, "123.45"},
        {F_AMOUNT, "true"},
        {F_CURRENCY, "978"},
        {F_MCC, "\"5411\""},
        {F_MCC, "5411.0"},
        {F_MERCHANT, "{}"},
        {F_COUNTRY, "false"},
        {F_CHANNEL, "2"},
        {F_ENTRY, "null"},
        {F_RESPONSE, "1"},
        {F_EVENT_TIME, "\"1718000000000\""},
        {F_EVENT_TIME, "1.718e12"},
    };
    char vals[F_COUNT][160];
    char buf[1024];
    struct txn t;
    size_t n;
    (void)state;

    for (size_t i = 0; i < NELEM(wrong); i++) {
        json_base(vals);
        strcpy(vals[wrong[i].f], wrong[i].raw);
        n = json_build(buf, sizeof(buf), vals, "");
        memset(&t, 0x5a, sizeof(t));
        check_status("json-type", i, txn_decode_json(buf, n, &t),
                     TXN_ERR_UNDECODABLE);
        check_failed(&t);
    }
    json_base(vals);
    n = json_build(buf, sizeof(buf), vals, ",\"cvv2_presented\":\"yes\"");
    assert_int_equal(txn_decode_json(buf, n, &t), TXN_ERR_UNDECODABLE);
    check_failed(&t);
    n = json_build(buf, sizeof(buf), vals, ",\"cvv2_presented\":1");
    assert_int_equal(txn_decode_json(buf, n, &t), TXN_ERR_UNDECODABLE);
    /* Unknown members are ignored (forward compatible). */
    n = json_build(buf, sizeof(buf), vals, ",\"new_field\":[1,2]");
    assert_int_equal(txn_decode_json(buf, n, &t), TXN_OK);
    /* Negative or huge mcc is an integer, so a value error. */
    json_base(vals);
    strcpy(vals[F_MCC], "-1");
    n = json_build(buf, sizeof(buf), vals, "");
    assert_int_equal(txn_decode_json(buf, n, &t), TXN_ERR_MCC);
    strcpy(vals[F_MCC], "99999999999");
    n = json_build(buf, sizeof(buf), vals, "");
    assert_int_equal(txn_decode_json(buf, n, &t), TXN_ERR_MCC);
}

static void test_json_undecodable(void **state)
{
    char vals[F_COUNT][160];
    char buf[1024];
    char buf2[2100];
    struct txn t;
    size_t n;
    static const char *bad[] = {
        "",
        "   ",
        "[]",
        "\"T1\"",
        "42",
        "null",
        "{",
        "{\"txn_id\":\"T1\",}",
        "{\"txn_id\":'T1'}",
        "\xef\xbb\xbf{}",
        "{\"txn_id\":\"T\xff\"}",
    };
    (void)state;

    for (size_t i = 0; i < NELEM(bad); i++) {
        memset(&t, 0x5a, sizeof(t));
        check_status("json-bad", i, txn_decode_json(bad[i], strlen(bad[i]), &t),
                     TXN_ERR_UNDECODABLE);
        check_failed(&t);
    }

    json_base(vals);
    n = json_build(buf, sizeof(buf), vals, "");
    /* Trailing whitespace is fine, trailing data is not. */
    snprintf(buf2, sizeof(buf2), "%s \r\n\t", buf);
    assert_int_equal(txn_decode_json(buf2, strlen(buf2), &t), TXN_OK);
    snprintf(buf2, sizeof(buf2), "%s x", buf);
    assert_int_equal(txn_decode_json(buf2, strlen(buf2), &t),
                     TXN_ERR_UNDECODABLE);
    check_failed(&t);
    snprintf(buf2, sizeof(buf2), "%s\n%s", buf, buf);
    assert_int_equal(txn_decode_json(buf2, strlen(buf2), &t),
                     TXN_ERR_UNDECODABLE);
    check_failed(&t);
    /* Duplicate members are rejected. */
    n = json_build(buf, sizeof(buf), vals, ",\"pan\":\"5555555555554444\"");
    assert_int_equal(txn_decode_json(buf, n, &t), TXN_ERR_UNDECODABLE);
    check_failed(&t);
    /* The length bounds the input: a prefix is not the whole object. */
    n = json_build(buf, sizeof(buf), vals, "");
    assert_int_equal(txn_decode_json(buf, n - 1, &t), TXN_ERR_UNDECODABLE);
    check_failed(&t);
    /* Embedded NUL. */
    buf[n - 1] = '\0';
    assert_int_equal(txn_decode_json(buf, n, &t), TXN_ERR_UNDECODABLE);
    check_failed(&t);
    assert_int_equal(txn_decode_json(NULL, 3, &t), TXN_ERR_UNDECODABLE);
}

static void fill_valid(struct txn *t)
{
    memset(t, 0, sizeof(*t));
    strcpy(t->txn_id, "gen-000042");
    strcpy(t->pan, "5555555555554444");
    t->pan_len = 16;
    strcpy(t->expiry, "2709");
    t->amount_minor = 999999999999;
    strcpy(t->currency, "USD");
    t->mcc = 6011;
    strcpy(t->merchant_id, "Caf\xc3\xa9 \"Q\" \\ \t/1");
    strcpy(t->merchant_country, "US");
    t->channel = TXN_CHANNEL_ATM;
    t->entry_mode = TXN_ENTRY_MAGSTRIPE;
    t->cvv2_presented = false;
    t->response = TXN_RESPONSE_DECLINED;
    t->event_time_ms = 1721952000000;
}

static void assert_same_txn(const struct txn *a, const struct txn *b)
{
    assert_string_equal(a->txn_id, b->txn_id);
    assert_int_equal(a->pan_len, b->pan_len);
    assert_memory_equal(a->pan, b->pan, sizeof(a->pan));
    assert_string_equal(a->pan_masked, b->pan_masked);
    assert_string_equal(a->bin, b->bin);
    assert_string_equal(a->expiry, b->expiry);
    assert_int_equal(a->amount_minor, b->amount_minor);
    assert_string_equal(a->currency, b->currency);
    assert_int_equal(a->mcc, b->mcc);
    assert_string_equal(a->merchant_id, b->merchant_id);
    assert_string_equal(a->merchant_country, b->merchant_country);
    assert_int_equal(a->channel, b->channel);
    assert_int_equal(a->entry_mode, b->entry_mode);
    assert_int_equal(a->cvv2_presented, b->cvv2_presented);
    assert_int_equal(a->response, b->response);
    assert_int_equal(a->event_time_ms, b->event_time_ms);
}

static void test_validate(void **state)
{
    struct txn t;
    (void)state;

    fill_valid(&t);
    assert_int_equal(txn_validate(&t), TXN_OK);
    assert_string_equal(t.pan_masked, "555555******4444");
    assert_string_equal(t.bin, "55555555");
    strcpy(t.pan, "4222222222222");
    t.pan_len = 13;
    assert_int_equal(txn_validate(&t), TXN_OK);
    assert_string_equal(t.pan_masked, "422222***2222");
    assert_string_equal(t.bin, "42222222");
    /* pan_len must match the string. */
    t.pan_len = 14;
    assert_int_equal(txn_validate(&t), TXN_ERR_PAN);
    fill_valid(&t);
    t.channel = (enum txn_channel) - 1;
    assert_int_equal(txn_validate(&t), TXN_ERR_CHANNEL);
    fill_valid(&t);
    memset(t.currency, 'E', sizeof(t.currency)); /* no NUL */
    assert_int_equal(txn_validate(&t), TXN_ERR_CURRENCY);
}

/* txn_validate on a struct filled by hand (not by a decoder): a txn_id
 * field with no NUL, a pan_len above CARD_PAN_MAX and an empty merchant
 * id are each refused with their status. */
static void test_validate_hand_filled(void **state)
{
    struct txn t;
    (void)state;

    fill_valid(&t);
    memset(t.txn_id, 'T', sizeof(t.txn_id)); /* no NUL */
    assert_int_equal(txn_validate(&t), TXN_ERR_TXN_ID);
    assert_string_equal(t.pan_masked, "");
    fill_valid(&t);
    t.pan_len = CARD_PAN_MAX + 1;
    assert_int_equal(txn_validate(&t), TXN_ERR_PAN);
    fill_valid(&t);
    t.merchant_id[0] = '\0';
    assert_int_equal(txn_validate(&t), TXN_ERR_MERCHANT);
    fill_valid(&t);
    memset(t.merchant_id, 'M', sizeof(t.merchant_id)); /* no NUL */
    assert_int_equal(txn_validate(&t), TXN_ERR_MERCHANT);
    fill_valid(&t);
    assert_int_equal(txn_validate(&t), TXN_OK);
}

/* txn_parse_json (no validation) keeps an mcc that fits the field even
 * when it is invalid (10000), and leaves 0 for one that does not fit
 * (negative, or over 2^32 - 1). */
static void test_parse_json_mcc(void **state)
{
    struct txn t;
    char buf[512];
    (void)state;
    const struct {
        const char *mcc;
        uint32_t want;
    } mccs[] = {
        {"10000", 10000}, {"4294967295", 4294967295u},
        {"-1", 0},        {"4294967296", 0},
        {"5999", 5999},
    };
    for (size_t i = 0; i < NELEM(mccs); i++) {
        int n = snprintf(buf, sizeof(buf),
                         "{\"txn_id\":\"t1\",\"pan\":\"4111111111111111\","
                         "\"expiry\":\"2709\",\"amount_minor\":100,"
                         "\"currency\":\"EUR\",\"mcc\":%s,"
                         "\"merchant_id\":\"m1\",\"merchant_country\":\"DE\","
                         "\"channel\":\"ecommerce\",\"entry_mode\":\"keyed\","
                         "\"response\":\"approved\","
                         "\"event_time_ms\":1721952000000}",
                         mccs[i].mcc);
        assert_int_equal(txn_parse_json(buf, (size_t)n, &t), TXN_OK);
        if (t.mcc != mccs[i].want) {
            fail_msg("mcc %s: got %u", mccs[i].mcc, t.mcc);
        }
        assert_string_equal(t.merchant_id, "m1");
    }
}

/* An all-default transaction encodes to an empty protobuf message (every
 * proto3 field at its default is left out), which decodes back to the
 * same empty fields (and fails validation on the txn id). */
static void test_encode_empty(void **state)
{
    struct txn t, back;
    uint8_t *buf = NULL;
    size_t len = 99;
    (void)state;

    memset(&t, 0, sizeof(t));
    assert_int_equal(txn_encode_protobuf(&t, &buf, &len), 0);
    assert_non_null(buf);
    assert_int_equal(len, 0);
    assert_int_equal(txn_decode_protobuf(buf, len, &back), TXN_ERR_TXN_ID);
    assert_string_equal(back.txn_id, "");
    free(buf);
}

static void test_round_trip(void **state)
{
    struct txn in;
    struct txn out;
    uint8_t *pb = NULL;
    size_t pblen = 0;
    char js[1024];
    int n;
    (void)state;

    fill_valid(&in);
    assert_int_equal(txn_validate(&in), TXN_OK);

    assert_int_equal(txn_encode_protobuf(&in, &pb, &pblen), 0);
    assert_non_null(pb);
    assert_int_equal(txn_decode_protobuf(pb, pblen, &out), TXN_OK);
    assert_same_txn(&in, &out);
    free(pb);

    n = txn_encode_json(&in, js, sizeof(js));
    assert_true(n > 0);
    assert_int_equal((size_t)n, strlen(js));
    assert_int_equal(txn_decode_json(js, (size_t)n, &out), TXN_OK);
    assert_same_txn(&in, &out);

    /* Every channel/entry/response and both cvv2 values. */
    for (int c = 1; c <= 5; c++) {
        for (int e = 1; e <= 5; e++) {
            for (int r = 1; r <= 2; r++) {
                in.channel = (enum txn_channel)c;
                in.entry_mode = (enum txn_entry_mode)e;
                in.response = (enum txn_response)r;
                in.cvv2_presented = r == 1;
                n = txn_encode_json(&in, js, sizeof(js));
                assert_true(n > 0);
                assert_int_equal(txn_decode_json(js, (size_t)n, &out), TXN_OK);
                assert_same_txn(&in, &out);
                assert_int_equal(txn_encode_protobuf(&in, &pb, &pblen), 0);
                assert_int_equal(txn_decode_protobuf(pb, pblen, &out), TXN_OK);
                assert_same_txn(&in, &out);
                free(pb);
            }
        }
    }

    /* Too small a buffer: -1, and nothing of the PAN left in it. */
    n = txn_encode_json(&in, js, sizeof(js));
    for (size_t cap = 0; cap <= (size_t)n; cap++) {
        memset(js, 0, sizeof(js));
        assert_int_equal(txn_encode_json(&in, js, cap), -1);
        assert_null(strstr(js, "5555"));
    }
    assert_int_equal(txn_encode_json(&in, js, (size_t)n + 1), n);
}

static void test_forget_pan(void **state)
{
    struct txn t;
    char masked[CARD_MASK_SIZE];
    char bin[9];
    (void)state;

    fill_valid(&t);
    assert_int_equal(txn_validate(&t), TXN_OK);
    strcpy(masked, t.pan_masked);
    strcpy(bin, t.bin);
    txn_forget_pan(&t);
    assert_true(all_zero(t.pan, sizeof(t.pan)));
    assert_int_equal(t.pan_len, 0);
    assert_string_equal(t.pan_masked, masked);
    assert_string_equal(t.bin, bin);
}

static void test_check_time(void **state)
{
    struct txn t;
    const int64_t now = 1733300000000LL;
    (void)state;

    fill_valid(&t);
    t.event_time_ms = now + 300000;
    assert_int_equal(txn_check_time(&t, now, 300000), TXN_OK);
    t.event_time_ms = now + 300001;
    assert_int_equal(txn_check_time(&t, now, 300000),
                     TXN_ERR_EVENT_TIME_FUTURE);
    t.event_time_ms = 1; /* the past is never refused here */
    assert_int_equal(txn_check_time(&t, now, 0), TXN_OK);
    t.event_time_ms = INT64_MAX;
    assert_int_equal(txn_check_time(&t, now, 300000),
                     TXN_ERR_EVENT_TIME_FUTURE);
    /* a bound past INT64_MAX saturates instead of wrapping */
    assert_int_equal(txn_check_time(&t, INT64_MAX - 10, 300000), TXN_OK);
    assert_string_equal(txn_status_name(TXN_ERR_EVENT_TIME_FUTURE),
                        "event_time_future");
}

static void test_names(void **state)
{
    (void)state;
    assert_string_equal(txn_status_name(TXN_OK), "ok");
    assert_string_equal(txn_status_name(TXN_ERR_UNDECODABLE), "undecodable");
    assert_string_equal(txn_status_name(TXN_ERR_LUHN), "luhn");
    assert_string_equal(txn_status_name(TXN_ERR_EVENT_TIME), "event_time");
    assert_string_equal(txn_status_name(TXN_STATUS_COUNT), "?");
    assert_string_equal(txn_status_name((enum txn_status) - 1), "?");
    for (int s = 0; s < TXN_STATUS_COUNT; s++) {
        assert_string_not_equal(txn_status_name((enum txn_status)s), "?");
    }
    assert_string_equal(txn_channel_name(TXN_CHANNEL_CARD_PRESENT),
                        "card_present");
    assert_string_equal(txn_channel_name((enum txn_channel)6), "?");
    assert_string_equal(txn_entry_mode_name(TXN_ENTRY_ON_FILE), "on_file");
    assert_string_equal(txn_entry_mode_name((enum txn_entry_mode)9), "?");
    assert_string_equal(txn_response_name(TXN_RESPONSE_DECLINED), "declined");
    assert_string_equal(txn_response_name((enum txn_response)3), "?");
    assert_int_equal(txn_channel_parse("moto"), TXN_CHANNEL_MOTO);
    assert_int_equal(txn_channel_parse("MOTO"), TXN_CHANNEL_UNSPECIFIED);
    assert_int_equal(txn_channel_parse(NULL), TXN_CHANNEL_UNSPECIFIED);
    assert_int_equal(txn_entry_mode_parse("keyed"), TXN_ENTRY_KEYED);
    assert_int_equal(txn_entry_mode_parse("?"), TXN_ENTRY_UNSPECIFIED);
    assert_int_equal(txn_response_parse("approved"), TXN_RESPONSE_APPROVED);
    assert_int_equal(txn_response_parse(""), TXN_RESPONSE_UNSPECIFIED);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_pb_table),
        cmocka_unit_test(test_pb_all_enums),
        cmocka_unit_test(test_pb_fields),
        cmocka_unit_test(test_pb_undecodable),
        cmocka_unit_test(test_pb_wire_table),
        cmocka_unit_test(test_pb_last_wins),
        cmocka_unit_test(test_pb_varint_values),
        cmocka_unit_test(test_json_table),
        cmocka_unit_test(test_json_all_enums),
        cmocka_unit_test(test_json_missing),
        cmocka_unit_test(test_json_wrong_types),
        cmocka_unit_test(test_json_undecodable),
        cmocka_unit_test(test_validate),
        cmocka_unit_test(test_validate_hand_filled),
        cmocka_unit_test(test_parse_json_mcc),
        cmocka_unit_test(test_encode_empty),
        cmocka_unit_test(test_round_trip),
        cmocka_unit_test(test_forget_pan),
        cmocka_unit_test(test_check_time),
        cmocka_unit_test(test_names),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
