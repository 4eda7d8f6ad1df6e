/* test_alert.c - alert ids, building, protobuf and JSON encoding.
 * Only synthetic test card numbers; no PAN is ever printed. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <jansson.h>

#include "alert.h"
#include "cardwatch.pb-c.h"

#define NELEM(a) (sizeof(a) / sizeof((a)[0]))

static const uint8_t test_key[16] = "0123456789abcdef";

static void test_alert_id(void **state)
{
    char id[ALERT_ID_SIZE];
    char id2[ALERT_ID_SIZE];
    char longid[101];
    (void)state;

    /* printf 'cardwatch.alert.v1:T1' | sha256sum */
    alert_id_for("T1", id);
    assert_string_equal(id, "8460d79430cc15a244ccc1c415eb4e84");
    alert_id_for("T1", id2);
    assert_string_equal(id, id2);
    alert_id_for("T2", id2);
    assert_string_equal(id2, "d6d8695fbd9ab122c55c8af18db035cf");
    alert_id_for("", id);
    assert_string_equal(id, "68f5e7e1bc65dc7821a27a0017548818");
    /* Longer than any txn_id: the streaming path gives the same digest. */
    memset(longid, 'x', 100);
    longid[100] = '\0';
    alert_id_for(longid, id);
    assert_string_equal(id, "e6cd3badf1da05daf4ab4b7a7efa4621");
}

static void make_txn(struct txn *t)
{
    memset(t, 0, sizeof(*t));
    strcpy(t->txn_id, "T1");
    strcpy(t->pan, "4111111111111111");
    t->pan_len = 16;
    strcpy(t->expiry, "2612");
    t->amount_minor = 4999;
    strcpy(t->currency, "EUR");
    t->mcc = 5732;
    strcpy(t->merchant_id, "shop-7");
    strcpy(t->merchant_country, "NL");
    t->channel = TXN_CHANNEL_ECOMMERCE;
    t->entry_mode = TXN_ENTRY_KEYED;
    t->cvv2_presented = true;
    t->response = TXN_RESPONSE_APPROVED;
    t->event_time_ms = 1722000000000;
    assert_int_equal(txn_validate(t), TXN_OK);
}

static const struct rule_hit hits3[] = {
    {"exposed_card", SEVERITY_MEDIUM},
    {"cnp_after_exposure", SEVERITY_HIGH},
    {"velocity", SEVERITY_LOW},
};

static const struct alert_breach br1[] = {
    {"shop-2024", INT64_C(1618272000000), INT64_C(1721952000000) + 86399999,
     BREACH_EL_PAN | BREACH_EL_EXPIRY},
};

/* Builds the reference alert; the fingerprint comes from a real key. */
static void make_alert(struct alert *a, struct txn *t)
{
    struct card_key *k = card_key_new("k1", test_key, sizeof(test_key));
    char fp[CARD_FP_SIZE];
    char text[ALERT_FP_SIZE];

    assert_non_null(k);
    make_txn(t);
    assert_int_equal(card_fingerprint(k, t->pan, t->pan_len, fp), 0);
    snprintf(text, sizeof(text), "%s:%s", card_key_id(k), fp);
    txn_forget_pan(t);
    assert_int_equal(alert_build(a, t, "bank-nl-01", text, hits3, NELEM(hits3),
                                 br1, NELEM(br1), ALERT_MODE_LIVE,
                                 1722000000123, "rules-2024.07.1"),
                     0);
    card_key_destroy(k);
}

static int contains(const void *hay, size_t n, const char *needle)
{
    size_t m = strlen(needle);
    const char *h = hay;
    for (size_t i = 0; i + m <= n; i++) {
        if (memcmp(h + i, needle, m) == 0) {
            return 1;
        }
    }
    return 0;
}

static void test_build(void **state)
{
    struct alert a;
    struct txn t;
    struct rule_hit many[40];
    struct alert_breach mb[20];
    (void)state;

    make_alert(&a, &t);
    assert_string_equal(a.alert_id, "8460d79430cc15a244ccc1c415eb4e84");
    assert_string_equal(a.txn_id, "T1");
    assert_string_equal(a.issuer_id, "bank-nl-01");
    assert_int_equal(strlen(a.card_fingerprint), 3 + CARD_FP_HEX_LEN);
    assert_int_equal(strncmp(a.card_fingerprint, "k1:", 3), 0);
    assert_string_equal(a.pan_masked, "411111******1111");
    assert_int_equal(a.severity, SEVERITY_HIGH);
    assert_int_equal(a.n_hits, 3);
    assert_string_equal(a.hits[1].rule_id, "cnp_after_exposure");
    assert_int_equal(a.n_breaches, 1);
    assert_int_equal(a.breaches[0].elements, BREACH_EL_PAN | BREACH_EL_EXPIRY);
    assert_int_equal(a.mode, ALERT_MODE_LIVE);
    assert_int_equal(a.channel, TXN_CHANNEL_ECOMMERCE);
    assert_int_equal(a.amount_minor, 4999);
    assert_int_equal(a.mcc, 5732);
    assert_string_equal(a.ruleset_version, "rules-2024.07.1");

    /* Built from a txn that still holds its PAN: the alert never does. */
    make_txn(&t);
    assert_int_equal(alert_build(&a, &t, "b", "k1:00", hits3, 1, NULL, 0,
                                 ALERT_MODE_REPLAY, 1, "v"),
                     0);
    assert_false(contains(&a, sizeof(a), "4111111111111111"));
    assert_false(contains(&a, sizeof(a), "111111111"));
    assert_int_equal(a.severity, SEVERITY_MEDIUM);

    /* Max severity regardless of position. */
    for (size_t i = 0; i < NELEM(many); i++) {
        snprintf(many[i].rule_id, sizeof(many[i].rule_id), "r%zu", i);
        many[i].severity = SEVERITY_LOW;
    }
    many[0].severity = SEVERITY_CRITICAL;
    assert_int_equal(alert_build(&a, &t, "b", "k1:00", many, 3, NULL, 0,
                                 ALERT_MODE_LIVE, 1, "v"),
                     0);
    assert_int_equal(a.severity, SEVERITY_CRITICAL);
    many[0].severity = SEVERITY_LOW;
    many[2].severity = SEVERITY_MEDIUM;
    assert_int_equal(alert_build(&a, &t, "b", "k1:00", many, 3, NULL, 0,
                                 ALERT_MODE_LIVE, 1, "v"),
                     0);
    assert_int_equal(a.severity, SEVERITY_MEDIUM);

    /* Caps. */
    memset(mb, 0, sizeof(mb));
    for (size_t i = 0; i < NELEM(mb); i++) {
        snprintf(mb[i].breach_id, sizeof(mb[i].breach_id), "b%zu", i);
        mb[i].elements = BREACH_EL_PAN;
    }
    assert_int_equal(alert_build(&a, &t, "b", "k1:00", many, NELEM(many), mb,
                                 NELEM(mb), ALERT_MODE_LIVE, 1, "v"),
                     0);
    assert_int_equal(a.n_hits, ALERT_MAX_HITS);
    assert_int_equal(a.n_breaches, ALERT_MAX_BREACHES);
    assert_string_equal(a.hits[ALERT_MAX_HITS - 1].rule_id, "r31");

    /* No hits, no alert. */
    assert_int_equal(alert_build(&a, &t, "b", "k1:00", many, 0, NULL, 0,
                                 ALERT_MODE_LIVE, 1, "v"),
                     -1);

    /* Fixed-size fields that fill their array with no NUL (a rule id or
     * merchant id of the greatest length, written without room for the
     * terminator): copied whole but one character, never read past. */
    memset(many[0].rule_id, 'r', sizeof(many[0].rule_id));
    memset(t.merchant_id, 'm', sizeof(t.merchant_id));
    assert_int_equal(alert_build(&a, &t, "b", "k1:00", many, 1, NULL, 0,
                                 ALERT_MODE_LIVE, 1, "v"),
                     0);
    assert_int_equal(strlen(a.hits[0].rule_id), RULE_ID_MAX);
    assert_int_equal(a.hits[0].rule_id[0], 'r');
    assert_int_equal(strlen(a.merchant_id), TXN_MERCHANT_MAX);
}

static void assert_same_alert(const struct alert *a, const struct alert *b)
{
    assert_string_equal(a->alert_id, b->alert_id);
    assert_string_equal(a->issuer_id, b->issuer_id);
    assert_string_equal(a->txn_id, b->txn_id);
    assert_string_equal(a->card_fingerprint, b->card_fingerprint);
    assert_string_equal(a->pan_masked, b->pan_masked);
    assert_int_equal(a->event_time_ms, b->event_time_ms);
    assert_int_equal(a->amount_minor, b->amount_minor);
    assert_string_equal(a->currency, b->currency);
    assert_int_equal(a->mcc, b->mcc);
    assert_string_equal(a->merchant_id, b->merchant_id);
    assert_string_equal(a->merchant_country, b->merchant_country);
    assert_int_equal(a->channel, b->channel);
    assert_int_equal(a->severity, b->severity);
    assert_int_equal(a->n_hits, b->n_hits);
    for (size_t i = 0; i < a->n_hits; i++) {
        assert_string_equal(a->hits[i].rule_id, b->hits[i].rule_id);
        assert_int_equal(a->hits[i].severity, b->hits[i].severity);
    }
    assert_int_equal(a->n_breaches, b->n_breaches);
    for (size_t i = 0; i < a->n_breaches; i++) {
        assert_string_equal(a->breaches[i].breach_id, b->breaches[i].breach_id);
        assert_int_equal(a->breaches[i].window_start_ms,
                         b->breaches[i].window_start_ms);
        assert_int_equal(a->breaches[i].window_end_ms,
                         b->breaches[i].window_end_ms);
        assert_int_equal(a->breaches[i].elements, b->breaches[i].elements);
    }
    assert_int_equal(a->mode, b->mode);
    assert_int_equal(a->detected_at_ms, b->detected_at_ms);
    assert_string_equal(a->ruleset_version, b->ruleset_version);
}

/* The argument checks of alert_build and alert_id_for: hits NULL (with
 * n_hits > 0) or breaches NULL (with n_breaches > 0) are refused; NULL
 * strings give empty fields; a NULL txn id has the id of "". */
static void test_build_arguments(void **state)
{
    struct alert a;
    struct txn t;
    char id1[ALERT_ID_SIZE], id2[ALERT_ID_SIZE];
    (void)state;

    make_txn(&t);
    assert_int_equal(alert_build(&a, &t, "b", "k1:00", NULL, 1, NULL, 0,
                                 ALERT_MODE_LIVE, 1, "v"),
                     -1);
    assert_int_equal(alert_build(&a, &t, "b", "k1:00", hits3, 1, NULL, 2,
                                 ALERT_MODE_LIVE, 1, "v"),
                     -1);
    assert_int_equal(alert_build(&a, &t, NULL, NULL, hits3, 1, NULL, 0,
                                 ALERT_MODE_LIVE, 1, NULL),
                     0);
    assert_string_equal(a.issuer_id, "");
    assert_string_equal(a.card_fingerprint, "");
    assert_string_equal(a.ruleset_version, "");
    assert_string_equal(a.txn_id, "T1");

    alert_id_for(NULL, id1);
    alert_id_for("", id2);
    assert_string_equal(id1, id2);
    assert_int_equal(strlen(id1), ALERT_ID_SIZE - 1);
}

static void test_protobuf_round_trip(void **state)
{
    struct alert a;
    struct alert b;
    struct txn t;
    uint8_t *buf = NULL;
    size_t len = 0;
    struct alert_breach mb[3];
    (void)state;

    make_alert(&a, &t);
    assert_int_equal(alert_encode_protobuf(&a, &buf, &len), 0);
    assert_int_equal(alert_decode_protobuf(buf, len, &b), 0);
    assert_same_alert(&a, &b);
    free(buf);

    /* Several breaches, all elements, replay mode, negative window. */
    memset(mb, 0, sizeof(mb));
    strcpy(mb[0].breach_id, "a");
    mb[0].elements = (1u << BREACH_EL_COUNT) - 1;
    strcpy(mb[1].breach_id, "b.c_d-e");
    mb[1].window_start_ms = -86400000;
    mb[1].window_end_ms = 5;
    mb[1].elements = BREACH_EL_CVV2 | BREACH_EL_EMAIL;
    strcpy(mb[2].breach_id, "z");
    assert_int_equal(alert_build(&a, &t, "i", "k:ff", hits3, NELEM(hits3), mb,
                                 NELEM(mb), ALERT_MODE_REPLAY, 7, ""),
                     0);
    assert_int_equal(alert_encode_protobuf(&a, &buf, &len), 0);
    assert_int_equal(alert_decode_protobuf(buf, len, &b), 0);
    assert_same_alert(&a, &b);
    free(buf);
}

static void test_protobuf_bad(void **state)
{
    Cardwatch__V1__Alert m = CARDWATCH__V1__ALERT__INIT;
    Cardwatch__V1__RuleHit h = CARDWATCH__V1__RULE_HIT__INIT;
    Cardwatch__V1__RuleHit *hp[ALERT_MAX_HITS + 1];
    Cardwatch__V1__BreachExposure be = CARDWATCH__V1__BREACH_EXPOSURE__INIT;
    Cardwatch__V1__BreachExposure *bp[1] = {&be};
    char *elems[] = {"pan", "ssn"};
    uint8_t buf[4096];
    size_t n;
    struct alert a;
    char longs[80];
    (void)state;

    assert_int_equal(alert_decode_protobuf((const uint8_t *)"\xff\xff", 2, &a),
                     -1);
    assert_int_equal(alert_decode_protobuf((const uint8_t *)"\x0a\x05x", 3, &a),
                     -1);

    /* The empty message is a (useless) alert. */
    n = cardwatch__v1__alert__pack(&m, buf);
    assert_int_equal(alert_decode_protobuf(buf, n, &a), 0);

    /* Too many hits. */
    h.rule_id = "r";
    h.severity = CARDWATCH__V1__SEVERITY__SEVERITY_LOW;
    for (size_t i = 0; i < NELEM(hp); i++) {
        hp[i] = &h;
    }
    m.hits = hp;
    m.n_hits = ALERT_MAX_HITS + 1;
    n = cardwatch__v1__alert__pack(&m, buf);
    assert_int_equal(alert_decode_protobuf(buf, n, &a), -1);
    m.n_hits = ALERT_MAX_HITS;
    n = cardwatch__v1__alert__pack(&m, buf);
    assert_int_equal(alert_decode_protobuf(buf, n, &a), 0);
    assert_int_equal(a.n_hits, ALERT_MAX_HITS);
    m.n_hits = 0;

    /* A string that does not fit. */
    memset(longs, 'i', sizeof(longs) - 1);
    longs[sizeof(longs) - 1] = '\0';
    m.issuer_id = longs;
    n = cardwatch__v1__alert__pack(&m, buf);
    assert_int_equal(alert_decode_protobuf(buf, n, &a), -1);
    m.issuer_id = "bank";

    /* An unknown element name. */
    be.breach_id = "b";
    be.elements = elems;
    be.n_elements = 2;
    m.breaches = bp;
    m.n_breaches = 1;
    n = cardwatch__v1__alert__pack(&m, buf);
    assert_int_equal(alert_decode_protobuf(buf, n, &a), -1);
    be.n_elements = 1;
    n = cardwatch__v1__alert__pack(&m, buf);
    assert_int_equal(alert_decode_protobuf(buf, n, &a), 0);
    assert_int_equal(a.breaches[0].elements, BREACH_EL_PAN);

    /* An out-of-range enum. */
    m.severity = (Cardwatch__V1__Severity)9;
    n = cardwatch__v1__alert__pack(&m, buf);
    assert_int_equal(alert_decode_protobuf(buf, n, &a), -1);
}

static const char *jstr(json_t *o, const char *k)
{
    json_t *v = json_object_get(o, k);
    assert_non_null(v);
    assert_true(json_is_string(v));
    return json_string_value(v);
}

static json_int_t jint(json_t *o, const char *k)
{
    json_t *v = json_object_get(o, k);
    assert_non_null(v);
    assert_true(json_is_integer(v));
    return json_integer_value(v);
}

static void test_json(void **state)
{
    struct alert a;
    struct txn t;
    char buf[4096];
    int n;
    json_t *root;
    json_t *arr;
    json_t *b;
    json_error_t err;
    (void)state;

    make_alert(&a, &t);
    n = alert_encode_json(&a, buf, sizeof(buf));
    assert_true(n > 0);
    assert_int_equal((size_t)n, strlen(buf));
    assert_null(strchr(buf, '\n'));
    root = json_loadb(buf, (size_t)n, JSON_REJECT_DUPLICATES, &err);
    assert_non_null(root);
    assert_int_equal(json_object_size(root), 18);
    assert_string_equal(jstr(root, "alert_id"),
                        "8460d79430cc15a244ccc1c415eb4e84");
    assert_string_equal(jstr(root, "issuer_id"), "bank-nl-01");
    assert_string_equal(jstr(root, "txn_id"), "T1");
    assert_string_equal(jstr(root, "card_fingerprint"), a.card_fingerprint);
    assert_string_equal(jstr(root, "pan_masked"), "411111******1111");
    assert_int_equal(jint(root, "event_time_ms"), 1722000000000);
    assert_int_equal(jint(root, "amount_minor"), 4999);
    assert_string_equal(jstr(root, "currency"), "EUR");
    assert_int_equal(jint(root, "mcc"), 5732);
    assert_string_equal(jstr(root, "merchant_id"), "shop-7");
    assert_string_equal(jstr(root, "merchant_country"), "NL");
    assert_string_equal(jstr(root, "channel"), "ecommerce");
    assert_string_equal(jstr(root, "severity"), "high");
    assert_string_equal(jstr(root, "mode"), "live");
    assert_int_equal(jint(root, "detected_at_ms"), 1722000000123);
    assert_string_equal(jstr(root, "ruleset_version"), "rules-2024.07.1");

    arr = json_object_get(root, "hits");
    assert_true(json_is_array(arr));
    assert_int_equal(json_array_size(arr), 3);
    assert_string_equal(jstr(json_array_get(arr, 0), "rule_id"),
                        "exposed_card");
    assert_string_equal(jstr(json_array_get(arr, 0), "severity"), "medium");
    assert_string_equal(jstr(json_array_get(arr, 2), "severity"), "low");

    arr = json_object_get(root, "breaches");
    assert_true(json_is_array(arr));
    assert_int_equal(json_array_size(arr), 1);
    b = json_array_get(arr, 0);
    assert_string_equal(jstr(b, "breach_id"), "shop-2024");
    assert_string_equal(jstr(b, "window_start"), "2021-04-13");
    assert_string_equal(jstr(b, "window_end"), "2024-07-26");
    assert_int_equal(jint(b, "window_start_ms"), 1618272000000);
    assert_int_equal(jint(b, "window_end_ms"), 1722038399999);
    arr = json_object_get(b, "elements");
    assert_int_equal(json_array_size(arr), 2);
    assert_string_equal(json_string_value(json_array_get(arr, 0)), "pan");
    assert_string_equal(json_string_value(json_array_get(arr, 1)), "expiry");
    json_decref(root);

    /* Empty hits/breaches arrays are still arrays. */
    a.n_hits = 0;
    a.n_breaches = 0;
    n = alert_encode_json(&a, buf, sizeof(buf));
    root = json_loadb(buf, (size_t)n, 0, &err);
    assert_non_null(root);
    assert_int_equal(json_array_size(json_object_get(root, "hits")), 0);
    assert_int_equal(json_array_size(json_object_get(root, "breaches")), 0);
    json_decref(root);
}

static void test_json_escaping(void **state)
{
    struct alert a;
    struct txn t;
    char buf[4096];
    int n;
    json_t *root;
    json_error_t err;
    const char *m = "Q\"uo\\te/\n\r\t\b\f\x01\x1f\x7f Caf\xc3\xa9 \xe2\x82\xac "
                    "\xf0\x9f\x92\xb3";
    (void)state;

    make_alert(&a, &t);
    strcpy(a.merchant_id, m);
    strcpy(a.ruleset_version, "v\"1\"");
    strcpy(a.hits[0].rule_id, "r\\x");
    n = alert_encode_json(&a, buf, sizeof(buf));
    assert_true(n > 0);
    assert_null(strchr(buf, '\n'));
    assert_null(strchr(buf, '\x01'));
    root = json_loadb(buf, (size_t)n, JSON_REJECT_DUPLICATES, &err);
    assert_non_null(root);
    assert_string_equal(jstr(root, "merchant_id"), m);
    assert_string_equal(jstr(root, "ruleset_version"), "v\"1\"");
    assert_string_equal(
        jstr(json_array_get(json_object_get(root, "hits"), 0), "rule_id"),
        "r\\x");
    json_decref(root);

    /* Invalid UTF-8 never makes invalid JSON: it becomes U+FFFD. */
    strcpy(a.merchant_id, "A\xff"
                          "B\xc3"
                          "C\xed\xa0\x80"
                          "D\xe2\x82");
    n = alert_encode_json(&a, buf, sizeof(buf));
    assert_true(n > 0);
    root = json_loadb(buf, (size_t)n, 0, &err);
    assert_non_null(root);
    assert_string_equal(jstr(root, "merchant_id"), "A\xef\xbf\xbd"
                                                   "B\xef\xbf\xbd"
                                                   "C\xef\xbf\xbd\xef"
                                                   "\xbf\xbd\xef\xbf\xbd"
                                                   "D\xef\xbf\xbd\xef\xbf\xbd");
    json_decref(root);

    /* A field without NUL is bounded by its size. */
    memset(a.merchant_id, 'm', sizeof(a.merchant_id));
    n = alert_encode_json(&a, buf, sizeof(buf));
    root = json_loadb(buf, (size_t)n, 0, &err);
    assert_non_null(root);
    assert_int_equal(strlen(jstr(root, "merchant_id")), sizeof(a.merchant_id));
    json_decref(root);
}

static void test_json_small_buffer(void **state)
{
    struct alert a;
    struct txn t;
    char buf[4096];
    char small[4096];
    int n;
    (void)state;

    make_alert(&a, &t);
    strcpy(a.merchant_id, "esc\"aped\x01");
    n = alert_encode_json(&a, buf, sizeof(buf));
    assert_true(n > 0);
    for (size_t cap = 0; cap <= (size_t)n; cap++) {
        assert_int_equal(alert_encode_json(&a, small, cap), -1);
    }
    assert_int_equal(alert_encode_json(&a, small, (size_t)n + 1), n);
    assert_string_equal(small, buf);
}

static void test_names(void **state)
{
    (void)state;
    assert_string_equal(severity_name(SEVERITY_NONE), "none");
    assert_string_equal(severity_name(SEVERITY_LOW), "low");
    assert_string_equal(severity_name(SEVERITY_MEDIUM), "medium");
    assert_string_equal(severity_name(SEVERITY_HIGH), "high");
    assert_string_equal(severity_name(SEVERITY_CRITICAL), "critical");
    assert_string_equal(severity_name((enum severity)5), "?");
    for (int s = SEVERITY_LOW; s <= SEVERITY_CRITICAL; s++) {
        assert_int_equal(severity_parse(severity_name((enum severity)s)), s);
    }
    assert_int_equal(severity_parse("none"), SEVERITY_NONE);
    assert_int_equal(severity_parse("HIGH"), SEVERITY_NONE);
    assert_int_equal(severity_parse(NULL), SEVERITY_NONE);
    assert_string_equal(alert_mode_name(ALERT_MODE_LIVE), "live");
    assert_string_equal(alert_mode_name(ALERT_MODE_REPLAY), "replay");
    assert_string_equal(alert_mode_name(ALERT_MODE_UNSPECIFIED), "unspecified");
    assert_string_equal(alert_mode_name((enum alert_mode)3), "?");
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_alert_id),
        cmocka_unit_test(test_build),
        cmocka_unit_test(test_build_arguments),
        cmocka_unit_test(test_protobuf_round_trip),
        cmocka_unit_test(test_protobuf_bad),
        cmocka_unit_test(test_json),
        cmocka_unit_test(test_json_escaping),
        cmocka_unit_test(test_json_small_buffer),
        cmocka_unit_test(test_names),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
