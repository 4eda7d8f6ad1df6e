/* alert.c - build alerts, derive their ids, encode them.
 *
 * The JSON encoder is hand-written (one pass into the caller's buffer, no
 * allocation): alerts go out at the rate rules fire, and a jansson tree per
 * alert would cost more than the rest of the alert path.
 */
#include "alert.h"

#include <stdlib.h>
#include <string.h>

#include <openssl/evp.h>

#include "cardwatch.pb-c.h"
#include "text.h"

#define ALERT_ID_PREFIX "cardwatch.alert.v1:"
#define NELEM(a) (sizeof(a) / sizeof((a)[0]))

static const char *const severity_names[] = {
    "none", "low", "medium", "high", "critical",
};

static const char *const mode_names[] = {
    "unspecified",
    "live",
    "replay",
};

const char *severity_name(enum severity s)
{
    return (unsigned)s < NELEM(severity_names) ? severity_names[s] : "?";
}

enum severity severity_parse(const char *s)
{
    if (s == NULL) {
        return SEVERITY_NONE;
    }
    for (size_t i = 1; i < NELEM(severity_names); i++) {
        if (strcmp(severity_names[i], s) == 0) {
            return (enum severity)i;
        }
    }
    return SEVERITY_NONE;
}

const char *alert_mode_name(enum alert_mode m)
{
    return (unsigned)m < NELEM(mode_names) ? mode_names[m] : "?";
}

void alert_id_for(const char *txn_id, char out[ALERT_ID_SIZE])
{
    static const char hex[] = "0123456789abcdef";
    unsigned char md[EVP_MAX_MD_SIZE];
    unsigned int mdlen = 0;
    EVP_MD_CTX *ctx = NULL;
    char small[sizeof(ALERT_ID_PREFIX) - 1 + TXN_ID_MAX];
    size_t plen = sizeof(ALERT_ID_PREFIX) - 1;
    size_t len = txn_id != NULL ? strlen(txn_id) : 0;
    int ok;

    out[0] = '\0';
    if (len <= sizeof(small) - plen) {
        memcpy(small, ALERT_ID_PREFIX, plen);
        if (len > 0) {
            memcpy(small + plen, txn_id, len);
        }
        ok = EVP_Digest(small, plen + len, md, &mdlen, EVP_sha256(), NULL);
    } else {
        ctx = EVP_MD_CTX_new();
        ok = ctx != NULL && EVP_DigestInit_ex(ctx, EVP_sha256(), NULL) &&
             EVP_DigestUpdate(ctx, ALERT_ID_PREFIX, plen) &&
             EVP_DigestUpdate(ctx, txn_id, len) &&
             EVP_DigestFinal_ex(ctx, md, &mdlen);
        EVP_MD_CTX_free(ctx);
    }
    if (!ok || mdlen < (ALERT_ID_SIZE - 1) / 2) {
        return;
    }
    for (size_t i = 0; i < (ALERT_ID_SIZE - 1) / 2; i++) {
        out[2 * i] = hex[md[i] >> 4];
        out[2 * i + 1] = hex[md[i] & 0x0f];
    }
    out[ALERT_ID_SIZE - 1] = '\0';
}

/* Copies the string src into dst[size], truncating; returns 0, or -1 when
 * it did not fit. */
static int copy_str(char *dst, size_t size, const char *src)
{
    size_t n = src != NULL ? strlen(src) : 0;
    int rc = 0;

    if (n >= size) {
        n = size - 1;
        rc = -1;
    }
    if (n > 0) {
        memcpy(dst, src, n);
    }
    dst[n] = '\0';
    return rc;
}

/* Copies a fixed-size field of another struct (may lack a NUL). */
static void copy_field(char *dst, size_t dsize, const char *src, size_t ssize)
{
    size_t n = strnlen(src, ssize);

    if (n >= dsize) {
        n = dsize - 1;
    }
    memcpy(dst, src, n);
    dst[n] = '\0';
}

int alert_build(struct alert *a, const struct txn *t, const char *issuer_id,
                const char *fingerprint, const struct rule_hit *hits,
                size_t n_hits, const struct alert_breach *breaches,
                size_t n_breaches, enum alert_mode mode, int64_t detected_at_ms,
                const char *ruleset_version)
{
    enum severity max = SEVERITY_NONE;

    if (n_hits == 0 || hits == NULL || (n_breaches > 0 && breaches == NULL)) {
        return -1;
    }
    memset(a, 0, sizeof(*a));
    copy_field(a->txn_id, sizeof(a->txn_id), t->txn_id, sizeof(t->txn_id));
    alert_id_for(a->txn_id, a->alert_id);
    (void)copy_str(a->issuer_id, sizeof(a->issuer_id), issuer_id);
    (void)copy_str(a->card_fingerprint, sizeof(a->card_fingerprint),
                   fingerprint);
    copy_field(a->pan_masked, sizeof(a->pan_masked), t->pan_masked,
               sizeof(t->pan_masked));
    a->event_time_ms = t->event_time_ms;
    a->amount_minor = t->amount_minor;
    copy_field(a->currency, sizeof(a->currency), t->currency,
               sizeof(t->currency));
    a->mcc = t->mcc;
    copy_field(a->merchant_id, sizeof(a->merchant_id), t->merchant_id,
               sizeof(t->merchant_id));
    copy_field(a->merchant_country, sizeof(a->merchant_country),
               t->merchant_country, sizeof(t->merchant_country));
    a->channel = t->channel;
    for (size_t i = 0; i < n_hits; i++) {
        if (hits[i].severity > max) {
            max = hits[i].severity;
        }
        if (i < ALERT_MAX_HITS) {
            copy_field(a->hits[i].rule_id, sizeof(a->hits[i].rule_id),
                       hits[i].rule_id, sizeof(hits[i].rule_id));
            a->hits[i].severity = hits[i].severity;
        }
    }
    a->n_hits = n_hits < ALERT_MAX_HITS ? n_hits : ALERT_MAX_HITS;
    a->severity = max;
    a->n_breaches =
        n_breaches < ALERT_MAX_BREACHES ? n_breaches : ALERT_MAX_BREACHES;
    for (size_t i = 0; i < a->n_breaches; i++) {
        struct alert_breach *b = &a->breaches[i];
        copy_field(b->breach_id, sizeof(b->breach_id), breaches[i].breach_id,
                   sizeof(breaches[i].breach_id));
        b->window_start_ms = breaches[i].window_start_ms;
        b->window_end_ms = breaches[i].window_end_ms;
        b->elements = breaches[i].elements;
    }
    a->mode = mode;
    a->detected_at_ms = detected_at_ms;
    (void)copy_str(a->ruleset_version, sizeof(a->ruleset_version),
                   ruleset_version);
    return 0;
}

/* ---- protobuf ---- */

int alert_encode_protobuf(const struct alert *a, uint8_t **out, size_t *outlen)
{
    Cardwatch__V1__Alert m = CARDWATCH__V1__ALERT__INIT;
    Cardwatch__V1__RuleHit hits[ALERT_MAX_HITS];
    Cardwatch__V1__RuleHit *hitp[ALERT_MAX_HITS];
    Cardwatch__V1__BreachExposure br[ALERT_MAX_BREACHES];
    Cardwatch__V1__BreachExposure *brp[ALERT_MAX_BREACHES];
    char *elems[ALERT_MAX_BREACHES][BREACH_EL_COUNT];
    size_t n_hits = a->n_hits < ALERT_MAX_HITS ? a->n_hits : ALERT_MAX_HITS;
    size_t n_br =
        a->n_breaches < ALERT_MAX_BREACHES ? a->n_breaches : ALERT_MAX_BREACHES;
    uint8_t *buf;
    size_t size;

    m.alert_id = (char *)a->alert_id;
    m.issuer_id = (char *)a->issuer_id;
    m.txn_id = (char *)a->txn_id;
    m.card_fingerprint = (char *)a->card_fingerprint;
    m.pan_masked = (char *)a->pan_masked;
    m.event_time_ms = a->event_time_ms;
    m.amount_minor = a->amount_minor;
    m.currency = (char *)a->currency;
    m.mcc = a->mcc;
    m.merchant_id = (char *)a->merchant_id;
    m.merchant_country = (char *)a->merchant_country;
    m.channel = (Cardwatch__V1__Channel)a->channel;
    m.severity = (Cardwatch__V1__Severity)a->severity;
    for (size_t i = 0; i < n_hits; i++) {
        cardwatch__v1__rule_hit__init(&hits[i]);
        hits[i].rule_id = (char *)a->hits[i].rule_id;
        hits[i].severity = (Cardwatch__V1__Severity)a->hits[i].severity;
        hitp[i] = &hits[i];
    }
    m.n_hits = n_hits;
    m.hits = hitp;
    for (size_t i = 0; i < n_br; i++) {
        size_t ne = 0;
        cardwatch__v1__breach_exposure__init(&br[i]);
        br[i].breach_id = (char *)a->breaches[i].breach_id;
        br[i].window_start = a->breaches[i].window_start_ms;
        br[i].window_end = a->breaches[i].window_end_ms;
        for (int b = 0; b < BREACH_EL_COUNT; b++) {
            if (a->breaches[i].elements & (1u << b)) {
                elems[i][ne++] = (char *)breach_element_name(1u << b);
            }
        }
        br[i].n_elements = ne;
        br[i].elements = elems[i];
        brp[i] = &br[i];
    }
    m.n_breaches = n_br;
    m.breaches = brp;
    m.mode = (Cardwatch__V1__Mode)a->mode;
    m.detected_at_ms = a->detected_at_ms;
    m.ruleset_version = (char *)a->ruleset_version;

    size = cardwatch__v1__alert__get_packed_size(&m);
    buf = malloc(size > 0 ? size : 1);
    if (buf == NULL) {
        return -1;
    }
    *outlen = cardwatch__v1__alert__pack(&m, buf);
    *out = buf;
    return 0;
}

/* Element name to bit, or 0 when unknown. */
static uint32_t element_bit(const char *name)
{
    for (int b = 0; b < BREACH_EL_COUNT; b++) {
        if (strcmp(breach_element_name(1u << b), name) == 0) {
            return 1u << b;
        }
    }
    return 0;
}

static int copy_pb(char *dst, size_t size, const char *src)
{
    return copy_str(dst, size, src != NULL ? src : "");
}

int alert_decode_protobuf(const uint8_t *buf, size_t len, struct alert *a)
{
    Cardwatch__V1__Alert *m = NULL;
    int rc = -1;
    int bad = 0;

    memset(a, 0, sizeof(*a));
    if (buf == NULL && len > 0) {
        return -1;
    }
    m = cardwatch__v1__alert__unpack(NULL, len, buf);
    if (m == NULL) {
        goto out;
    }
    if (m->n_hits > ALERT_MAX_HITS || m->n_breaches > ALERT_MAX_BREACHES ||
        (unsigned)m->channel > TXN_CHANNEL_ATM ||
        (unsigned)m->severity > SEVERITY_CRITICAL ||
        (unsigned)m->mode > ALERT_MODE_REPLAY) {
        goto out;
    }
    bad |= copy_pb(a->alert_id, sizeof(a->alert_id), m->alert_id);
    bad |= copy_pb(a->issuer_id, sizeof(a->issuer_id), m->issuer_id);
    bad |= copy_pb(a->txn_id, sizeof(a->txn_id), m->txn_id);
    bad |= copy_pb(a->card_fingerprint, sizeof(a->card_fingerprint),
                   m->card_fingerprint);
    bad |= copy_pb(a->pan_masked, sizeof(a->pan_masked), m->pan_masked);
    a->event_time_ms = m->event_time_ms;
    a->amount_minor = m->amount_minor;
    bad |= copy_pb(a->currency, sizeof(a->currency), m->currency);
    a->mcc = m->mcc;
    bad |= copy_pb(a->merchant_id, sizeof(a->merchant_id), m->merchant_id);
    bad |= copy_pb(a->merchant_country, sizeof(a->merchant_country),
                   m->merchant_country);
    a->channel = (enum txn_channel)m->channel;
    a->severity = (enum severity)m->severity;
    for (size_t i = 0; i < m->n_hits; i++) {
        const Cardwatch__V1__RuleHit *h = m->hits[i];
        if ((unsigned)h->severity > SEVERITY_CRITICAL) {
            goto out;
        }
        bad |=
            copy_pb(a->hits[i].rule_id, sizeof(a->hits[i].rule_id), h->rule_id);
        a->hits[i].severity = (enum severity)h->severity;
    }
    a->n_hits = m->n_hits;
    for (size_t i = 0; i < m->n_breaches; i++) {
        const Cardwatch__V1__BreachExposure *b = m->breaches[i];
        struct alert_breach *ab = &a->breaches[i];
        bad |= copy_pb(ab->breach_id, sizeof(ab->breach_id), b->breach_id);
        ab->window_start_ms = b->window_start;
        ab->window_end_ms = b->window_end;
        for (size_t e = 0; e < b->n_elements; e++) {
            uint32_t bit =
                element_bit(b->elements[e] != NULL ? b->elements[e] : "");
            if (bit == 0) {
                goto out;
            }
            ab->elements |= bit;
        }
    }
    a->n_breaches = m->n_breaches;
    a->mode = (enum alert_mode)m->mode;
    a->detected_at_ms = m->detected_at_ms;
    bad |= copy_pb(a->ruleset_version, sizeof(a->ruleset_version),
                   m->ruleset_version);
    if (bad == 0) {
        rc = 0;
    }

out:
    if (m != NULL) {
        cardwatch__v1__alert__free_unpacked(m, NULL);
    }
    if (rc != 0) {
        memset(a, 0, sizeof(*a));
    }
    return rc;
}

/* ---- JSON ---- */

static void json_breach(struct jsonw *w, const struct alert_breach *b)
{
    char date[24];
    int first = 1;

    JSONW_LIT(w, "{\"breach_id\":");
    jsonw_field(w, b->breach_id, sizeof(b->breach_id));
    JSONW_LIT(w, ",\"window_start\":\"");
    breach_date_format(b->window_start_ms, date, sizeof(date));
    jsonw_cstr(w, date);
    JSONW_LIT(w, "\",\"window_end\":\"");
    breach_date_format(b->window_end_ms, date, sizeof(date));
    jsonw_cstr(w, date);
    JSONW_LIT(w, "\",\"window_start_ms\":");
    jsonw_i64(w, b->window_start_ms);
    JSONW_LIT(w, ",\"window_end_ms\":");
    jsonw_i64(w, b->window_end_ms);
    JSONW_LIT(w, ",\"elements\":[");
    for (int i = 0; i < BREACH_EL_COUNT; i++) {
        if (!(b->elements & (1u << i))) {
            continue;
        }
        if (!first) {
            JSONW_LIT(w, ",");
        }
        first = 0;
        JSONW_LIT(w, "\"");
        jsonw_cstr(w, breach_element_name(1u << i));
        JSONW_LIT(w, "\"");
    }
    JSONW_LIT(w, "]}");
}

int alert_encode_json(const struct alert *a, char *buf, size_t buflen)
{
    struct jsonw w;
    size_t n_hits = a->n_hits < ALERT_MAX_HITS ? a->n_hits : ALERT_MAX_HITS;
    size_t n_br =
        a->n_breaches < ALERT_MAX_BREACHES ? a->n_breaches : ALERT_MAX_BREACHES;

    jsonw_init(&w, buf, buflen);
    JSONW_LIT(&w, "{\"alert_id\":");
    jsonw_field(&w, a->alert_id, sizeof(a->alert_id));
    JSONW_LIT(&w, ",\"issuer_id\":");
    jsonw_field(&w, a->issuer_id, sizeof(a->issuer_id));
    JSONW_LIT(&w, ",\"txn_id\":");
    jsonw_field(&w, a->txn_id, sizeof(a->txn_id));
    JSONW_LIT(&w, ",\"card_fingerprint\":");
    jsonw_field(&w, a->card_fingerprint, sizeof(a->card_fingerprint));
    JSONW_LIT(&w, ",\"pan_masked\":");
    jsonw_field(&w, a->pan_masked, sizeof(a->pan_masked));
    JSONW_LIT(&w, ",\"event_time_ms\":");
    jsonw_i64(&w, a->event_time_ms);
    JSONW_LIT(&w, ",\"amount_minor\":");
    jsonw_i64(&w, a->amount_minor);
    JSONW_LIT(&w, ",\"currency\":");
    jsonw_field(&w, a->currency, sizeof(a->currency));
    JSONW_LIT(&w, ",\"mcc\":");
    jsonw_i64(&w, a->mcc);
    JSONW_LIT(&w, ",\"merchant_id\":");
    jsonw_field(&w, a->merchant_id, sizeof(a->merchant_id));
    JSONW_LIT(&w, ",\"merchant_country\":");
    jsonw_field(&w, a->merchant_country, sizeof(a->merchant_country));
    JSONW_LIT(&w, ",\"channel\":\"");
    jsonw_cstr(&w, txn_channel_name(a->channel));
    JSONW_LIT(&w, "\",\"severity\":\"");
    jsonw_cstr(&w, severity_name(a->severity));
    JSONW_LIT(&w, "\",\"hits\":[");
    for (size_t i = 0; i < n_hits; i++) {
        if (i > 0) {
            JSONW_LIT(&w, ",");
        }
        JSONW_LIT(&w, "{\"rule_id\":");
        jsonw_field(&w, a->hits[i].rule_id, sizeof(a->hits[i].rule_id));
        JSONW_LIT(&w, ",\"severity\":\"");
        jsonw_cstr(&w, severity_name(a->hits[i].severity));
        JSONW_LIT(&w, "\"}");
    }
    JSONW_LIT(&w, "],\"breaches\":[");
    for (size_t i = 0; i < n_br; i++) {
        if (i > 0) {
            JSONW_LIT(&w, ",");
        }
        json_breach(&w, &a->breaches[i]);
    }
    JSONW_LIT(&w, "],\"mode\":\"");
    jsonw_cstr(&w, alert_mode_name(a->mode));
    JSONW_LIT(&w, "\",\"detected_at_ms\":");
    jsonw_i64(&w, a->detected_at_ms);
    JSONW_LIT(&w, ",\"ruleset_version\":");
    jsonw_field(&w, a->ruleset_version, sizeof(a->ruleset_version));
    JSONW_LIT(&w, "}");
    return jsonw_end(&w);
}
