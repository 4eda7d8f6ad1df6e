/* feed_outcome.c - outcomes, their bodies, the facts of a stored alert
 * and the issuer statistics; see feed_outcome.h. */
#include "feed_outcome.h"

#include <ctype.h>
#include <stdlib.h>
#include <string.h>

#include <jansson.h>

#include "feed_text.h"
#include "text.h"

/* ---- outcomes ---- */

static const char *const outcome_names[FEED_OUTCOME_COUNT] = {
    "confirmed_fraud",
    "legitimate",
    "card_reissued",
    "card_blocked",
};

const char *feed_outcome_name(enum feed_outcome o)
{
    return (unsigned)o < FEED_OUTCOME_COUNT ? outcome_names[o] : "?";
}

int feed_outcome_parse(const char *s, size_t len, enum feed_outcome *o)
{
    for (int i = 0; i < FEED_OUTCOME_COUNT; i++) {
        if (strlen(outcome_names[i]) == len &&
            memcmp(outcome_names[i], s, len) == 0) {
            *o = (enum feed_outcome)i;
            return 0;
        }
    }
    return -1;
}

int feed_outcome_retires(enum feed_outcome o)
{
    return o == FEED_CARD_REISSUED || o == FEED_CARD_BLOCKED;
}

/* The code point of the valid UTF-8 sequence s[0..n). */
static uint32_t utf8_cp(const unsigned char *s, size_t n)
{
    if (n == 1) {
        return s[0];
    }
    uint32_t cp = s[0] & (0x7f >> n);
    for (size_t i = 1; i < n; i++) {
        cp = cp << 6 | (s[i] & 0x3f);
    }
    return cp;
}

int feed_note_valid(const char *s, size_t len)
{
    const unsigned char *p = (const unsigned char *)s;
    size_t chars = 0;
    for (size_t i = 0; i < len;) {
        size_t n = text_utf8_seq(p + i, len - i);
        if (n == 0) {
            return 0;
        }
        uint32_t cp = utf8_cp(p + i, n);
        if (cp < 0x20 || (cp >= 0x7f && cp <= 0x9f) || cp == 0x2028 ||
            cp == 0x2029 || (cp >= 0x202a && cp <= 0x202e) ||
            (cp >= 0x2066 && cp <= 0x2069)) {
            return 0;
        }
        i += n;
        if (++chars > FEED_NOTE_MAX) {
            return 0;
        }
    }
    return 1;
}

int feed_outcome_body(const char *body, size_t len, enum feed_outcome *o,
                      char note[FEED_NOTE_BYTES], char *err, size_t errlen)
{
    json_error_t je;
    int rc = -1, have_outcome = 0;
    json_t *doc = json_loadb(body, len, JSON_REJECT_DUPLICATES, &je);
    note[0] = '\0';
    if (doc == NULL) {
        char why[sizeof(je.text)];
        snprintf(why, sizeof(why), "%s", je.text);
        feed_text_ascii_only(why);
        text_errf(err, errlen, "the body is not valid JSON (%s)", why);
        goto out;
    }
    if (!json_is_object(doc)) {
        text_errf(err, errlen,
                  "the body must be a JSON object: "
                  "{\"outcome\":\"confirmed_fraud|legitimate|card_reissued|"
                  "card_blocked\",\"note\":\"...\"}");
        goto out;
    }
    const char *key;
    json_t *v;
    json_object_foreach(doc, key, v)
    {
        if (strcmp(key, "outcome") == 0) {
            if (!json_is_string(v) ||
                feed_outcome_parse(json_string_value(v), json_string_length(v),
                                   o) != 0) {
                text_errf(err, errlen,
                          "outcome must be one of "
                          "confirmed_fraud, legitimate, card_reissued, "
                          "card_blocked");
                goto out;
            }
            have_outcome = 1;
        } else if (strcmp(key, "note") == 0) {
            if (json_is_null(v)) {
                continue;
            }
            size_t nl = json_is_string(v) ? json_string_length(v) : 0;
            if (!json_is_string(v) ||
                !feed_note_valid(json_string_value(v), nl) ||
                nl >= FEED_NOTE_BYTES) {
                text_errf(err, errlen,
                          "note must be a string of at most "
                          "%d printable characters (no control or line "
                          "breaks)",
                          FEED_NOTE_MAX);
                goto out;
            }
            memcpy(note, json_string_value(v), nl);
            note[nl] = '\0';
        } else {
            char k[41];
            snprintf(k, sizeof(k), "%s", key);
            feed_text_ascii_only(k);
            text_errf(err, errlen,
                      "unknown member '%s' (the body has "
                      "outcome and note)",
                      k);
            goto out;
        }
    }
    if (!have_outcome) {
        text_errf(err, errlen, "outcome is required");
        goto out;
    }
    rc = 0;
out:
    json_decref(doc);
    return rc;
}

static int rule_id_ok(const char *s, size_t n)
{
    if (n == 0 || n > RULE_ID_MAX) {
        return 0;
    }
    for (size_t i = 0; i < n; i++) {
        char c = s[i];
        if (!(isalnum((unsigned char)c) || c == '-' || c == '_' || c == '.')) {
            return 0;
        }
    }
    return 1;
}

static int kid_ok(const char *s, size_t n)
{
    if (n == 0 || n > CARD_KEY_ID_MAX) {
        return 0;
    }
    for (size_t i = 0; i < n; i++) {
        char c = s[i];
        if (!(isalnum((unsigned char)c) || c == '-' || c == '_')) {
            return 0;
        }
    }
    return 1;
}

/* Appends s to the csv buf[cap] at *len. */
static int csv_add(char *buf, size_t cap, size_t *len, const char *s)
{
    size_t n = strlen(s);
    if (*len + (*len ? 1 : 0) + n + 1 > cap) {
        return -1;
    }
    if (*len) {
        buf[(*len)++] = ',';
    }
    memcpy(buf + *len, s, n + 1);
    *len += n;
    return 0;
}

int feed_alert_facts_parse(const char *json, size_t len,
                           struct feed_alert_facts *out)
{
    int rc = -1;
    json_t *doc = json_loadb(json, len, 0, NULL);
    size_t rl = 0, bl = 0;
    memset(out, 0, sizeof(*out));
    if (doc == NULL || !json_is_object(doc)) {
        goto out;
    }
    json_t *hits = json_object_get(doc, "hits");
    json_t *brs = json_object_get(doc, "breaches");
    json_t *fp = json_object_get(doc, "card_fingerprint");
    if (!json_is_array(hits) || !json_is_array(brs) || !json_is_string(fp)) {
        goto out;
    }
    size_t i;
    json_t *v;
    json_array_foreach(hits, i, v)
    {
        json_t *id = json_object_get(v, "rule_id");
        if (!json_is_string(id) ||
            !rule_id_ok(json_string_value(id), json_string_length(id)) ||
            csv_add(out->rules, sizeof(out->rules), &rl,
                    json_string_value(id)) != 0) {
            goto out;
        }
    }
    json_array_foreach(brs, i, v)
    {
        json_t *id = json_object_get(v, "breach_id");
        if (!json_is_string(id) ||
            strlen(json_string_value(id)) != json_string_length(id) ||
            !breach_id_valid(json_string_value(id)) ||
            csv_add(out->breaches, sizeof(out->breaches), &bl,
                    json_string_value(id)) != 0) {
            goto out;
        }
    }
    const char *f = json_string_value(fp);
    size_t fl = json_string_length(fp);
    const char *colon = memchr(f, ':', fl);
    if (colon == NULL || !kid_ok(f, (size_t)(colon - f)) ||
        fl - (size_t)(colon - f) - 1 != CARD_FP_HEX_LEN) {
        goto out;
    }
    for (const char *p = colon + 1; p < f + fl; p++) {
        if (feed_text_hex_val(*p) < 0) {
            goto out;
        }
    }
    memcpy(out->kid, f, (size_t)(colon - f));
    out->kid[colon - f] = '\0';
    memcpy(out->fp, colon + 1, CARD_FP_HEX_LEN);
    out->fp[CARD_FP_HEX_LEN] = '\0';
    rc = 0;
out:
    json_decref(doc);
    return rc;
}

/* ---- issuer statistics ---- */

static struct feed_rule_stat *rule_get(struct feed_stats *s, const char *id,
                                       size_t n)
{
    if (!rule_id_ok(id, n)) {
        return NULL;
    }
    for (size_t i = 0; i < s->n_rules; i++) {
        if (strlen(s->rules[i].rule) == n &&
            memcmp(s->rules[i].rule, id, n) == 0) {
            return &s->rules[i];
        }
    }
    if (s->n_rules == s->cap_rules) {
        size_t cap = s->cap_rules ? s->cap_rules * 2 : 8;
        struct feed_rule_stat *nr = realloc(s->rules, cap * sizeof(*nr));
        if (nr == NULL) {
            return (struct feed_rule_stat *)-1;
        }
        s->rules = nr;
        s->cap_rules = cap;
    }
    struct feed_rule_stat *r = &s->rules[s->n_rules++];
    memset(r, 0, sizeof(*r));
    memcpy(r->rule, id, n);
    r->rule[n] = '\0';
    return r;
}

static int prefixed(const char *f, size_t flen, const char *pre)
{
    size_t n = strlen(pre);
    return flen > n && memcmp(f, pre, n) == 0;
}

int feed_stats_add(struct feed_stats *s, const char *field, size_t flen,
                   const char *val, size_t vlen)
{
    uint64_t v;
    enum feed_outcome o;
    if (feed_text_parse_u64(val, vlen, &v) != 0) {
        return 0;
    }
    if (flen == 6 && memcmp(field, "alerts", 6) == 0) {
        s->alerts = v;
    } else if (prefixed(field, flen, "severity:")) {
        size_t n = flen - 9;
        if (n >= sizeof(s->sev[0].name)) {
            return 0;
        }
        for (size_t i = 0; i < s->n_sev; i++) {
            if (strlen(s->sev[i].name) == n &&
                memcmp(s->sev[i].name, field + 9, n) == 0) {
                s->sev[i].n = v;
                return 0;
            }
        }
        if (s->n_sev < sizeof(s->sev) / sizeof(s->sev[0])) {
            memcpy(s->sev[s->n_sev].name, field + 9, n);
            s->sev[s->n_sev].name[n] = '\0';
            s->sev[s->n_sev++].n = v;
        }
    } else if (prefixed(field, flen, "outcome:")) {
        if (feed_outcome_parse(field + 8, flen - 8, &o) == 0) {
            s->outcome[o] = v;
        }
    } else if (prefixed(field, flen, "rule:")) {
        struct feed_rule_stat *r = rule_get(s, field + 5, flen - 5);
        if (r == (struct feed_rule_stat *)-1) {
            return -1;
        }
        if (r != NULL) {
            r->alerts = v;
        }
    } else if (prefixed(field, flen, "rule_outcome:")) {
        const char *id = field + 13;
        const char *end = field + flen;
        const char *colon = end;
        while (colon > id && colon[-1] != ':') {
            colon--;
        }
        if (colon == id ||
            feed_outcome_parse(colon, (size_t)(end - colon), &o) != 0) {
            return 0;
        }
        struct feed_rule_stat *r = rule_get(s, id, (size_t)(colon - 1 - id));
        if (r == (struct feed_rule_stat *)-1) {
            return -1;
        }
        if (r != NULL) {
            r->outcome[o] = v;
        }
    }
    return 0;
}

static int cmp_rule(const void *a, const void *b)
{
    return strcmp(((const struct feed_rule_stat *)a)->rule,
                  ((const struct feed_rule_stat *)b)->rule);
}

void feed_stats_finish(struct feed_stats *s)
{
    if (s->n_rules > 1) {
        qsort(s->rules, s->n_rules, sizeof(s->rules[0]), cmp_rule);
    }
}

void feed_stats_free(struct feed_stats *s)
{
    free(s->rules);
    memset(s, 0, sizeof(*s));
}

double feed_rule_precision(const struct feed_rule_stat *r)
{
    uint64_t a = r->outcome[FEED_CONFIRMED_FRAUD];
    uint64_t b = r->outcome[FEED_LEGITIMATE];
    if (a + b == 0) {
        return -1;
    }
    return (double)a / (double)(a + b);
}

static json_t *jcount(uint64_t v)
{
    return json_integer((json_int_t)(v > (uint64_t)INT64_MAX ? INT64_MAX : v));
}

char *feed_stats_json(const struct feed_stats *s, const char *issuer)
{
    char *out = NULL;
    json_t *doc = json_object();
    json_t *sev = json_object();
    json_t *oc = json_object();
    json_t *rules = json_object();
    if (doc == NULL || sev == NULL || oc == NULL || rules == NULL) {
        json_decref(sev);
        json_decref(oc);
        json_decref(rules);
        goto out;
    }
    json_object_set_new(doc, "issuer", json_string(issuer));
    json_object_set_new(doc, "alerts", jcount(s->alerts));
    for (size_t i = 0; i < s->n_sev; i++) {
        json_object_set_new(sev, s->sev[i].name, jcount(s->sev[i].n));
    }
    for (int i = 0; i < FEED_OUTCOME_COUNT; i++) {
        json_object_set_new(oc, outcome_names[i], jcount(s->outcome[i]));
    }
    for (size_t i = 0; i < s->n_rules; i++) {
        const struct feed_rule_stat *r = &s->rules[i];
        json_t *o = json_object();
        if (o == NULL) {
            json_decref(sev);
            json_decref(oc);
            json_decref(rules);
            goto out;
        }
        json_object_set_new(o, "alerts", jcount(r->alerts));
        for (int k = 0; k < FEED_OUTCOME_COUNT; k++) {
            json_object_set_new(o, outcome_names[k], jcount(r->outcome[k]));
        }
        double p = feed_rule_precision(r);
        json_object_set_new(
            o, "precision",
            p < 0 ? json_null()
                  : json_real((double)(long long)(p * 1e6 + 0.5) / 1e6));
        json_object_set_new(rules, r->rule, o);
    }
    json_object_set_new(doc, "by_severity", sev);
    json_object_set_new(doc, "by_outcome", oc);
    json_object_set_new(doc, "by_rule", rules);
    out = json_dumps(doc, JSON_COMPACT | JSON_REAL_PRECISION(10));
out:
    json_decref(doc);
    return out;
}

/* A Prometheus label value: backslash, quote and newline escaped. */
static void prom_label(FILE *out, const char *s)
{
    for (; *s != '\0'; s++) {
        if (*s == '\\' || *s == '"') {
            fputc('\\', out);
            fputc(*s, out);
        } else if (*s == '\n') {
            fputs("\\n", out);
        } else {
            fputc(*s, out);
        }
    }
}

void feed_stats_prom(FILE *out, const struct feed_stats *s, const char *issuer,
                     int which)
{
    for (size_t i = 0; i < s->n_rules; i++) {
        const struct feed_rule_stat *r = &s->rules[i];
        if (which == 0) {
            for (int k = 0; k < FEED_OUTCOME_COUNT; k++) {
                fputs("cardwatch_rule_outcomes_total{issuer=\"", out);
                prom_label(out, issuer);
                fputs("\",rule=\"", out);
                prom_label(out, r->rule);
                fprintf(out, "\",outcome=\"%s\"} %llu\n", outcome_names[k],
                        (unsigned long long)r->outcome[k]);
            }
        } else {
            double p = feed_rule_precision(r);
            if (p < 0) {
                continue;
            }
            fputs("cardwatch_rule_precision{issuer=\"", out);
            prom_label(out, issuer);
            fputs("\",rule=\"", out);
            prom_label(out, r->rule);
            fprintf(out, "\"} %.6g\n", p);
        }
    }
}
