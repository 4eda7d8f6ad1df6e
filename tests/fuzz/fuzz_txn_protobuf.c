/* fuzz_txn_protobuf.c - libFuzzer target for txn_decode_protobuf.
 * Invariants: no crash or sanitizer report; on any status but TXN_OK the
 * pan field is all zero; on TXN_OK the struct is valid.
 * Differential: the hand-written decoder agrees with protobuf-c's unpack
 * plus the field mapping it replaced (same status; same fields on
 * success; same txn_id on failure), except where the new decoder is
 * stricter on purpose (see stricter_by_design()). */
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "cardwatch.pb-c.h"
#include "txn.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

/* ---- reference: protobuf-c + the old mapping ---- */

/* Independent UTF-8 check: decode each code point, reject overlong forms,
 * surrogates and values above U+10FFFF. */
static int ref_utf8_ok(const char *str)
{
    const unsigned char *s = (const unsigned char *)str;

    while (*s != 0) {
        unsigned c = *s++;
        unsigned need;
        unsigned long cp;
        unsigned long min;

        if (c < 0x80) {
            continue;
        } else if ((c & 0xe0) == 0xc0) {
            need = 1;
            cp = c & 0x1f;
            min = 0x80;
        } else if ((c & 0xf0) == 0xe0) {
            need = 2;
            cp = c & 0x0f;
            min = 0x800;
        } else if ((c & 0xf8) == 0xf0) {
            need = 3;
            cp = c & 0x07;
            min = 0x10000;
        } else {
            return 0;
        }
        while (need-- > 0) {
            if ((*s & 0xc0) != 0x80) {
                return 0;
            }
            cp = (cp << 6) | (*s++ & 0x3f);
        }
        if (cp < min || cp > 0x10ffff || (cp >= 0xd800 && cp <= 0xdfff)) {
            return 0;
        }
    }
    return 1;
}

static int ref_txn_id_ok(const char *id)
{
    size_t n = strlen(id);

    if (n < 1 || n > TXN_ID_MAX) {
        return 0;
    }
    for (size_t i = 0; i < n; i++) {
        if (id[i] < 0x20 || id[i] > 0x7e) {
            return 0;
        }
    }
    return 1;
}

/* A string that does not fit stays "": it then fails its own rule, which
 * is what the old decoder's "bad" bit reported. */
static void ref_copy(char *dst, size_t size, const char *s)
{
    size_t n = strlen(s);

    if (n < size) {
        memcpy(dst, s, n + 1);
    }
}

static enum txn_status ref_decode(const uint8_t *data, size_t size,
                                  struct txn *t)
{
    Cardwatch__V1__Transaction *m;
    enum txn_status st = TXN_ERR_UNDECODABLE;

    memset(t, 0, sizeof(*t));
    m = cardwatch__v1__transaction__unpack(NULL, size, data);
    if (m == NULL) {
        return st;
    }
    ref_copy(t->txn_id, sizeof(t->txn_id), m->txn_id);
    if (ref_utf8_ok(m->txn_id) && ref_utf8_ok(m->pan) &&
        ref_utf8_ok(m->expiry) && ref_utf8_ok(m->currency) &&
        ref_utf8_ok(m->merchant_id) && ref_utf8_ok(m->merchant_country)) {
        if (strlen(m->pan) <= CARD_PAN_MAX) {
            ref_copy(t->pan, sizeof(t->pan), m->pan);
            t->pan_len = (uint8_t)strlen(m->pan);
        }
        ref_copy(t->expiry, sizeof(t->expiry), m->expiry);
        t->amount_minor = m->amount_minor;
        ref_copy(t->currency, sizeof(t->currency), m->currency);
        t->mcc = m->mcc;
        ref_copy(t->merchant_id, sizeof(t->merchant_id), m->merchant_id);
        ref_copy(t->merchant_country, sizeof(t->merchant_country),
                 m->merchant_country);
        t->channel = (enum txn_channel)m->channel;
        t->entry_mode = (enum txn_entry_mode)m->entry_mode;
        t->cvv2_presented = m->cvv2_presented != 0;
        t->response = (enum txn_response)m->response;
        t->event_time_ms = m->event_time_ms;
        st = txn_validate(t);
    }
    cardwatch__v1__transaction__free_unpacked(m, NULL);
    if (st != TXN_OK && !ref_txn_id_ok(t->txn_id)) {
        memset(t->txn_id, 0, sizeof(t->txn_id));
    }
    return st;
}

/* 1 when data holds, before anything malformed, a construct that
 * txn_decode_protobuf() rejects on purpose and protobuf-c may let
 * through: field number 0, a tag or length beyond 32 bits, a varint
 * beyond 64 bits, or the bool field 11 with a wire type other than varint
 * (protobuf-c does not check it). Walks the message the way both decoders
 * do. */
static int stricter_by_design(const uint8_t *d, size_t n)
{
    size_t i = 0;

    while (i < n) {
        uint64_t tag = 0;
        uint64_t v = 0;
        size_t k;

        for (k = 0; k < 5 && i + k < n; k++) {
            tag |= (uint64_t)(d[i + k] & 0x7f) << (7 * k);
            if ((d[i + k] & 0x80) == 0) {
                break;
            }
        }
        if (k == 5 || i + k == n) {
            return 0; /* unterminated: both reject */
        }
        i += k + 1;
        if (tag > UINT32_MAX || tag >> 3 == 0 ||
            (tag >> 3 == 11 && (tag & 7) != 0)) {
            return 1;
        }
        switch (tag & 7) {
        case 0:
            for (k = 0; k < 10 && i + k < n; k++) {
                if ((d[i + k] & 0x80) == 0) {
                    break;
                }
            }
            if (k == 10 || i + k == n) {
                return 0;
            }
            if (k == 9 && d[i + k] > 1) {
                return 1;
            }
            i += k + 1;
            break;
        case 1:
            if (n - i < 8) {
                return 0;
            }
            i += 8;
            break;
        case 2:
            for (k = 0; k < 5 && i + k < n; k++) {
                v |= (uint64_t)(d[i + k] & 0x7f) << (7 * k);
                if ((d[i + k] & 0x80) == 0) {
                    break;
                }
            }
            if (k == 5 || i + k == n) {
                return 0;
            }
            if (v > UINT32_MAX) {
                return 1;
            }
            i += k + 1;
            if (v > n - i) {
                return 0;
            }
            i += (size_t)v;
            break;
        case 5:
            if (n - i < 4) {
                return 0;
            }
            i += 4;
            break;
        default:
            return 0;
        }
    }
    return 0;
}

static int same_txn(const struct txn *a, const struct txn *b)
{
    return memcmp(a->txn_id, b->txn_id, sizeof(a->txn_id)) == 0 &&
           memcmp(a->pan, b->pan, sizeof(a->pan)) == 0 &&
           a->pan_len == b->pan_len &&
           strcmp(a->pan_masked, b->pan_masked) == 0 &&
           strcmp(a->bin, b->bin) == 0 &&
           memcmp(a->expiry, b->expiry, sizeof(a->expiry)) == 0 &&
           a->amount_minor == b->amount_minor &&
           memcmp(a->currency, b->currency, sizeof(a->currency)) == 0 &&
           a->mcc == b->mcc &&
           memcmp(a->merchant_id, b->merchant_id, sizeof(a->merchant_id)) ==
               0 &&
           memcmp(a->merchant_country, b->merchant_country,
                  sizeof(a->merchant_country)) == 0 &&
           a->channel == b->channel && a->entry_mode == b->entry_mode &&
           a->cvv2_presented == b->cvv2_presented &&
           a->response == b->response && a->event_time_ms == b->event_time_ms;
}

static void check_differential(const uint8_t *data, size_t size,
                               const struct txn *t, enum txn_status st)
{
    struct txn r;
    enum txn_status rst;

    if (stricter_by_design(data, size)) {
        if (st != TXN_ERR_UNDECODABLE) {
            abort();
        }
        return;
    }
    rst = ref_decode(data, size, &r);
    if (rst != st) {
        abort();
    }
    if (st == TXN_OK ? !same_txn(t, &r)
                     : memcmp(t->txn_id, r.txn_id, sizeof(r.txn_id)) != 0) {
        abort();
    }
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    struct txn t;
    enum txn_status st;

    memset(&t, 0xa5, sizeof(t));
    st = txn_decode_protobuf(data, size, &t);
    check_differential(data, size, &t, st);
    if (st != TXN_OK) {
        for (size_t i = 0; i < sizeof(t.pan); i++) {
            if (t.pan[i] != 0) {
                abort();
            }
        }
        if (t.pan_len != 0) {
            abort();
        }
        return 0;
    }
    if (!card_luhn_ok(t.pan, t.pan_len) || txn_validate(&t) != TXN_OK ||
        strlen(t.pan_masked) != t.pan_len) {
        abort();
    }
    /* Re-encoding a valid transaction decodes to the same status. */
    {
        uint8_t *buf = NULL;
        size_t len = 0;
        struct txn u;
        if (txn_encode_protobuf(&t, &buf, &len) != 0) {
            abort();
        }
        if (txn_decode_protobuf(buf, len, &u) != TXN_OK ||
            memcmp(u.pan, t.pan, sizeof(t.pan)) != 0) {
            abort();
        }
        free(buf);
    }
    return 0;
}
