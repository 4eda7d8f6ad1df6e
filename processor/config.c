/* config.c - table-driven INI configuration (libinih) with validation.
 *
 * Every key is one row of keys[]: section, name, type, where it lives,
 * default, bounds and an optional validator. config_init() applies the
 * defaults through the same setter that the file and config_set() use, so
 * a default can never escape validation.
 *
 * Line numbers: inih v55 does not hand them to the handler, so the file is
 * fed through our own line reader (ini_parse_stream calls it once per
 * line, then calls the handler for that line before reading the next).
 * The reader also sees "[section]" lines, which inih does not report, so
 * empty and duplicate sections are caught too. inih returns the line of
 * its first error; we keep the line and message of ours, and whichever
 * came first is reported.
 *
 * Messages quote offending values but never a value of a key named like a
 * secret (password, secret, ...), nor a value with a run of 13 or more
 * digits (it could be a card number): those say <redacted>.
 */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE /* strcasestr */
#endif

#include "config.h"

#include <errno.h>
#include <ini.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/types.h>

#include "log.h"
#include "text.h"

#define TOPIC_MAX 249      /* Kafka's limit on a topic name */
#define KAFKA_NAME_MAX 127 /* sizeof(struct kafka_prop.name) - 1 */
#define QUOTE_MAX 64       /* characters of a value echoed in a message */
#define INI_SECTION_MAX 49 /* inih truncates longer section names */
#define WHY_MAX 256

enum key_type {
    KT_STRING,    /* text; the row's validator checks it */
    KT_PATH,      /* file name; checked for length only, not opened */
    KT_INT,       /* decimal integer in [min, max] */
    KT_BOOL,      /* yes/no, true/false, on/off, 1/0 */
    KT_HOSTPORT,  /* host:port, or [v6addr]:port */
    KT_HOSTPORTS, /* host:port[,host:port...] */
    KT_BINS,      /* BIN prefixes and ranges, added to the route table */
};

#define F_EMPTY_OK 1u /* "" is accepted and means unset / off */
#define F_SPLIT 2u    /* KT_HOSTPORT: host string at off, int port at off2 */

/* Returns 0, or -1 with the reason in why. */
typedef int (*validator)(const char *v, char *why, size_t whylen);

struct key {
    const char *section; /* "issuer" for the keys of [issuer ID] */
    const char *name;
    enum key_type type;
    size_t off;      /* in struct config, or struct issuer for "issuer" */
    size_t size;     /* bytes at off (strings) */
    size_t off2;     /* F_SPLIT: offset of the int port */
    const char *def; /* default, applied by config_init(); NULL = none */
    long min, max;   /* KT_INT bounds */
    validator check; /* KT_STRING: extra check; NULL = any printable */
    unsigned flags;
    const char *empty_why; /* why "" is refused; NULL = "must not be empty" */
};

#define CFG(f)                                                                 \
    .off = offsetof(struct config, f), .size = sizeof(((struct config *)0)->f)
#define ISS(f)                                                                 \
    .off = offsetof(struct issuer, f), .size = sizeof(((struct issuer *)0)->f)

/* One macro per kind of row keeps keys[] to one short row per key. */
#define K_STR(sec_, name_, field_, def_, check_, flags_)                       \
    {                                                                          \
        .section = sec_, .name = name_, .type = KT_STRING, CFG(field_),        \
        .def = def_, .check = check_, .flags = flags_                          \
    }
#define K_BOOL(sec_, name_, field_, def_)                                       \
    {                                                                          \
        .section = sec_, .name = name_, .type = KT_BOOL, CFG(field_),          \
        .def = def_                                                            \
    }
#define K_PATH(sec_, name_, field_)                                            \
    {                                                                          \
        .section = sec_, .name = name_, .type = KT_PATH, CFG(field_),          \
        .flags = F_EMPTY_OK                                                    \
    }
#define K_INT(sec_, name_, field_, def_, min_, max_)                           \
    {                                                                          \
        .section = sec_, .name = name_, .type = KT_INT, CFG(field_),           \
        .def = def_, .min = min_, .max = max_                                  \
    }
#define K_HOSTPORT(sec_, name_, field_, def_, flags_)                          \
    {                                                                          \
        .section = sec_, .name = name_, .type = KT_HOSTPORT, CFG(field_),      \
        .def = def_, .flags = flags_                                           \
    }
#define K_ADDRESS(sec_, name_, host_, port_, def_)                             \
    {                                                                          \
        .section = sec_, .name = name_, .type = KT_HOSTPORT, CFG(host_),       \
        .off2 = offsetof(struct config, port_), .def = def_, .flags = F_SPLIT  \
    }
#define K_HOSTPORTS(sec_, name_, field_)                                       \
    {                                                                          \
        .section = sec_, .name = name_, .type = KT_HOSTPORTS, CFG(field_),     \
        .flags = F_EMPTY_OK                                                    \
    }
#define K_ISSUER(name_, field_, check_, flags_)                                \
    {                                                                          \
        .section = "issuer", .name = name_, .type = KT_STRING, ISS(field_),    \
        .check = check_, .flags = flags_                                       \
    }

static int check_topic(const char *v, char *why, size_t whylen);
static int check_topic_prefix(const char *v, char *why, size_t whylen);
static int check_group(const char *v, char *why, size_t whylen);
static int check_topic_suffix(const char *v, char *why, size_t whylen);
static int check_redis_prefix(const char *v, char *why, size_t whylen);
static int check_redis_user(const char *v, char *why, size_t whylen);
static int check_country(const char *v, char *why, size_t whylen);
static int check_token_hashes(const char *v, char *why, size_t whylen);
static int check_log_format(const char *v, char *why, size_t whylen);
static int check_log_level(const char *v, char *why, size_t whylen);

/* clang-format off */
static const struct key keys[] = {
    K_HOSTPORTS("kafka", "brokers", brokers),
    K_PATH("kafka", "brokers_file", brokers_file),
    K_STR("kafka", "group", group, "cardwatch", check_group, 0),
    K_STR("kafka", "transactions_topic", transactions_topic,
          "cardwatch.transactions", check_topic, 0),
    K_STR("kafka", "dead_letter_topic", dead_letter_topic,
          "cardwatch.deadletter", check_topic, 0),
    K_STR("kafka", "alert_topic_prefix", alert_topic_prefix,
          "cardwatch.alerts.", check_topic_prefix, F_EMPTY_OK),
    K_STR("kafka", "fallback_topic", fallback_topic,
          "cardwatch.alerts.unrouted", check_topic, 0),
    K_INT("kafka", "session_timeout_ms", session_timeout_ms,
          "45000", 1000, 300000),
    /* start-up: how long the brokers may take to answer before the
     * command gives up (an authentication or TLS failure fails at once) */
    K_INT("kafka", "connect_timeout_s", connect_timeout_s, "30", 1, 600),
    /* SASL password from a private file (mode 0600), so that the config
     * holds no secret; instead of [kafka.common] sasl.password */
    K_PATH("kafka", "sasl_password_file", kafka_sasl_password_file),

    K_ADDRESS("redis", "address", redis_host, redis_port, "127.0.0.1:6379"),
    K_STR("redis", "prefix", redis_prefix, "cw", check_redis_prefix, 0),
    K_INT("redis", "timeout_ms", redis_timeout_ms, "2000", 10, 60000),
    /* how long the record that an alert id was delivered is kept (so a
     * re-processed or replayed transaction is not sent again) */
    K_INT("redis", "delivered_ttl_days", delivered_ttl_days, "1100", 1,
          3650),
    /* ACL user and its password from a private file (mode 0600); AUTH on
     * every (re)connect before any other command */
    K_STR("redis", "username", redis_username, "", check_redis_user,
          F_EMPTY_OK),
    K_PATH("redis", "password_file", redis_password_file),
    /* TLS to Redis (and to the sentinels): the CA that signed the server's
     * certificate; a client certificate for mutual TLS; the name verified
     * in the server's certificate ("" = the host of address) */
    K_BOOL("redis", "tls", redis_tls, "off"),
    K_PATH("redis", "tls_ca_file", redis_tls_ca_file),
    K_PATH("redis", "tls_cert_file", redis_tls_cert_file),
    K_PATH("redis", "tls_key_file", redis_tls_key_file),
    K_STR("redis", "tls_server_name", redis_tls_server_name, "", NULL,
          F_EMPTY_OK),
    /* Redis Sentinel: ask these for the master of master_name (then
     * address is not used) */
    K_HOSTPORTS("redis", "sentinels", redis_sentinels),
    K_STR("redis", "master_name", redis_master_name, "", NULL, F_EMPTY_OK),

    K_PATH("card", "key_file", key_file), /* required: config_check() */

    K_PATH("rules", "path", rules_path),  /* "" = built-in rule set */
    /* how late (event time) an event may come and still find its window
     * state: state is kept for the longest window plus this */
    K_INT("rules", "allowed_lateness_ms", allowed_lateness_ms, "3600000", 0,
          604800000),
    /* an event dated further ahead of the wall clock is a dead letter
     * (reason event_time_future): one such event would otherwise move the
     * card's newest time and prune what its other events need */
    K_INT("rules", "max_future_skew_ms", max_future_skew_ms, "300000", 0,
          604800000),
    /* window entries an event saw stay this long (wall clock) after it
     * was first evaluated, so a re-evaluation after a crash or a
     * rebalance sees exactly the same window */
    K_INT("rules", "reprocess_grace_ms", reprocess_grace_ms, "3600000", 0,
          604800000),

    K_INT("pipeline", "batch_size", batch_size, "1000", 1, 100000),
    K_INT("pipeline", "max_in_flight", max_in_flight, "20000", 1, 1000000),

    /* replay output when not delivering to the live topics ("" would put
     * replay alerts on the live issuer topics) */
    {.section = "replay", .name = "topic_suffix", .type = KT_STRING,
     CFG(replay_topic_suffix), .def = ".replay", .check = check_topic_suffix,
     .empty_why = "must not be empty (--deliver is the way to send replay "
                  "alerts to the live topics)"},
    K_STR("replay", "dead_letter_topic", replay_dead_letter_topic,
          "cardwatch.deadletter.replay", check_topic, 0),
    K_INT("replay", "redis_wait_s", replay_redis_wait_s, "15", 1, 3600),
    /* a replay stops (fails) past this many dead letters (0 = no cap) or
     * once more than this share of its events are dead letters (after
     * the first 1,000 events; 100 = no cap): wrong input, not history */
    K_INT("replay", "max_dead_letters", replay_max_dead_letters, "10000", 0,
          2000000000),
    K_INT("replay", "max_dead_letter_percent",
          replay_max_dead_letter_percent, "50", 1, 100),

    K_HOSTPORT("http", "listen", http_listen, "127.0.0.1:9180", F_EMPTY_OK),

    /* the lines on stderr (log.h): plain text or one JSON object a line;
     * the lowest level written */
    K_STR("log", "format", log_format, "plain", check_log_format, 0),
    K_STR("log", "level", log_level, "info", check_log_level, 0),

    /* issuer alert feed (cardwatch feed, or inside run when listen is
     * set): each issuer's alerts in a Redis stream */
    K_HOSTPORT("feed", "listen", feed_listen, "", F_EMPTY_OK),
    K_INT("feed", "retention_days", feed_retention_days, "90", 1, 3650),
    K_INT("feed", "max_alerts", feed_max_alerts, "1000000", 100, 100000000),
    K_PATH("feed", "tls_cert", feed_tls_cert),
    K_PATH("feed", "tls_key", feed_tls_key),
    K_INT("feed", "max_body_bytes", feed_max_body, "16384", 256, 1048576),
    K_INT("feed", "rate_per_s", feed_rate_per_s, "50", 1, 100000),
    K_INT("feed", "burst", feed_burst, "100", 1, 100000),
    K_INT("feed", "max_wait_s", feed_max_wait_s, "60", 1, 3600),
    K_INT("feed", "max_clients", feed_max_clients, "10000", 1, 1000000),
    /* a client has this long to send a whole request (head and body),
     * from its first byte (from the connection's start for the first) */
    K_INT("feed", "request_timeout_s", feed_request_timeout_s, "10", 1, 3600),
    K_INT("feed", "keepalive_s", feed_keepalive_s, "15", 1, 3600),
    /* failed authentications a peer address may have; the allowance
     * refills at auth_failures per auth_failure_window_s; then 429 */
    K_INT("feed", "auth_failures", feed_auth_failures, "10", 1, 100000),
    K_INT("feed", "auth_failure_window_s", feed_auth_failure_window_s, "60", 1,
          86400),
    K_INT("feed", "auth_max_peers", feed_auth_max_peers, "10000", 100,
          1000000),

    /* [issuer ID]; name defaults to the id, home_country is required */
    K_ISSUER("name", name, NULL, 0),
    K_ISSUER("home_country", home_country, check_country, 0),
    {.section = "issuer", .name = "bins", .type = KT_BINS},
    /* "" = alert_topic_prefix + id, resolved by config_check() */
    K_ISSUER("topic", topic, check_topic, F_EMPTY_OK),
    /* feed tokens: SHA-256 hex of each valid bearer token, comma list
     * (two during a rotation); `cardwatch token` makes a pair */
    K_ISSUER("token_sha256", token_sha256, check_token_hashes, F_EMPTY_OK),
};
/* clang-format on */

#define N_KEYS (sizeof(keys) / sizeof(keys[0]))

/* Plain sections: their keys are rows of keys[]. */
static const char *const plain_sections[] = {
    "kafka", "redis", "card", "rules", "pipeline", "replay", "http", "feed",
    "log",
};

/* librdkafka properties that have their own key, or that cardwatch must
 * own (offsets are stored only after everything is acknowledged). */
static const struct {
    const char *name;
    const char *use;
} reserved_props[] = {
    {"bootstrap.servers", "[kafka] brokers or brokers_file"},
    {"metadata.broker.list", "[kafka] brokers or brokers_file"},
    {"group.id", "[kafka] group"},
    {"session.timeout.ms", "[kafka] session_timeout_ms"},
    {"enable.auto.offset.store", NULL},
};

/* Key names whose values never appear in a message. */
static const char *const secret_words[] = {
    "password", "secret", "token", ".pem", "sasl.oauthbearer.config",
};

enum section_kind {
    SEC_UNKNOWN,
    SEC_PLAIN,
    SEC_KAFKA, /* [kafka.consumer|producer|common]: passthrough */
    SEC_ISSUER,
};

/* State of one config_load(). */
struct load {
    struct config *c;
    FILE *f;
    char *buf; /* getline() buffer */
    size_t cap;
    int lineno;   /* line last handed to inih */
    int have_key; /* inih has a previous key (continuation lines) */
    int read_errno;
    int err_line; /* first error of ours, 0 = none */
    char err[512];
    int seen_line[CONFIG_MAX_ISSUERS]; /* [issuer] header line, this file */
};

static void load_error(struct load *ld, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));

/* Records the first error of the file at the current line. */
static void load_error(struct load *ld, const char *fmt, ...)
{
    va_list ap;

    if (ld->err_line != 0) {
        return;
    }
    ld->err_line = ld->lineno;
    va_start(ap, fmt);
    vsnprintf(ld->err, sizeof(ld->err), fmt, ap);
    va_end(ap);
}

/* ---- character classes (ASCII, locale-free) ---- */

static int is_lower(char ch)
{
    return ch >= 'a' && ch <= 'z';
}

static int is_upper(char ch)
{
    return ch >= 'A' && ch <= 'Z';
}

static int is_alnum(char ch)
{
    return text_is_digit(ch) || is_lower(ch) || is_upper(ch);
}

static int is_space(char ch)
{
    return ch == ' ' || ch == '\t' || ch == '\r' || ch == '\n' || ch == '\f' ||
           ch == '\v';
}

static int has_control(const char *s)
{
    for (; *s != '\0'; s++) {
        if ((unsigned char)*s < 0x20 || *s == 0x7f) {
            return 1;
        }
    }
    return 0;
}

/* ---- quoting values in messages ---- */

static int is_secret_name(const char *name)
{
    for (size_t i = 0; i < sizeof(secret_words) / sizeof(secret_words[0]);
         i++) {
        if (strcasestr(name, secret_words[i]) != NULL) {
            return 1;
        }
    }
    return 0;
}

/* Length of the longest run of digits in s. */
static size_t digit_run(const char *s)
{
    size_t run = 0, best = 0;

    for (; *s != '\0'; s++) {
        run = text_is_digit(*s) ? run + 1 : 0;
        if (run > best) {
            best = run;
        }
    }
    return best;
}

/* Copies s for a message: at most max characters, control characters as
 * '?', "..." when cut; "<redacted>" when s holds a run of digits as long
 * as a card number (a key or section name can, as well as a value). */
static void clean_copy(char *out, size_t outsz, const char *s, size_t max)
{
    size_t n = 0;

    if (digit_run(s) >= CARD_PAN_MIN) {
        snprintf(out, outsz, "<redacted>");
        return;
    }

    for (; *s != '\0' && n < max && n + 4 < outsz; s++) {
        unsigned char ch = (unsigned char)*s;
        out[n++] = (ch < 0x20 || ch == 0x7f) ? '?' : (char)ch;
    }
    if (*s != '\0' && n + 4 <= outsz) {
        memcpy(out + n, "...", 3);
        n += 3;
    }
    out[n] = '\0';
}

/* The value of key name as it may appear in a message: 'value' (cut and
 * cleaned), or <redacted>. Returns buf or a literal. */
static const char *quote(char *buf, size_t bufsz, const char *name,
                         const char *value)
{
    char tmp[QUOTE_MAX + 4];

    if (is_secret_name(name) || digit_run(value) >= CARD_PAN_MIN) {
        return "<redacted>";
    }
    clean_copy(tmp, sizeof(tmp), value, QUOTE_MAX);
    snprintf(buf, bufsz, "'%s'", tmp);
    return buf;
}

/* ---- validators ---- */

static int check_topic_chars(const char *v, char *why, size_t whylen)
{
    for (const char *s = v; *s != '\0'; s++) {
        if (!is_alnum(*s) && *s != '.' && *s != '_' && *s != '-') {
            text_errf(why, whylen, "a topic name is made of A-Z a-z 0-9 . _ -");
            return -1;
        }
    }
    return 0;
}

static int check_topic(const char *v, char *why, size_t whylen)
{
    if (strlen(v) > TOPIC_MAX) {
        text_errf(why, whylen, "a topic name has at most %d characters",
                  TOPIC_MAX);
        return -1;
    }
    if (strcmp(v, ".") == 0 || strcmp(v, "..") == 0) {
        text_errf(why, whylen, "not a valid topic name");
        return -1;
    }
    return check_topic_chars(v, why, whylen);
}

static int check_topic_prefix(const char *v, char *why, size_t whylen)
{
    return check_topic_chars(v, why, whylen);
}

static int check_token_hashes(const char *v, char *why, size_t whylen)
{
    size_t run = 0;
    for (const char *s = v;; s++) {
        if (*s == ',' || *s == '\0') {
            if (run != 64) {
                text_errf(why, whylen, "each token hash is 64 hex digits "
                          "(SHA-256; `cardwatch token` prints one), comma "
                          "separated");
                return -1;
            }
            run = 0;
            if (*s == '\0') {
                return 0;
            }
        } else if (text_is_digit(*s) || (*s >= 'a' && *s <= 'f')) {
            run++;
        } else {
            text_errf(why, whylen, "token hashes are lower-case hex (a "
                      "hash, never the token itself)");
            return -1;
        }
    }
}

static int check_log_format(const char *v, char *why, size_t whylen)
{
    enum log_format f;
    if (log_format_parse(v, &f) != 0) {
        text_errf(why, whylen, "must be plain or json");
        return -1;
    }
    return 0;
}

static int check_log_level(const char *v, char *why, size_t whylen)
{
    enum log_level l;
    if (log_level_parse(v, &l) != 0) {
        text_errf(why, whylen, "must be debug, info, warn or error");
        return -1;
    }
    return 0;
}

/* (never called with "": the row's empty_why says why that is refused) */
static int check_topic_suffix(const char *v, char *why, size_t whylen)
{
    return check_topic_chars(v, why, whylen);
}

static int check_group(const char *v, char *why, size_t whylen)
{
    for (const char *s = v; *s != '\0'; s++) {
        if (is_space(*s)) {
            text_errf(why, whylen, "must not contain white space");
            return -1;
        }
    }
    return 0;
}

/* An ACL user name: printable, no spaces (Redis allows more; a name
 * that needs quoting is a mistake here). */
static int check_redis_user(const char *v, char *why, size_t whylen)
{
    for (const char *p = v; *p; p++) {
        if (*p <= ' ' || *p > '~') {
            text_errf(why, whylen, "a user name without spaces or control "
                      "characters");
            return -1;
        }
    }
    return 0;
}

static int check_redis_prefix(const char *v, char *why, size_t whylen)
{
    size_t n = strlen(v);

    for (const char *s = v; *s != '\0'; s++) {
        if (!is_lower(*s) && !text_is_digit(*s) && *s != '_') {
            n = 0;
            break;
        }
    }
    if (n < 1 || n > 16) {
        text_errf(why, whylen, "must be 1 to 16 of a-z 0-9 _");
        return -1;
    }
    return 0;
}

static int check_country(const char *v, char *why, size_t whylen)
{
    if (strlen(v) != 2 || !is_upper(v[0]) || !is_upper(v[1])) {
        text_errf(why, whylen, "must be 2 upper-case letters (ISO 3166-1)");
        return -1;
    }
    return 0;
}

/* Returns 1 when id is 1..ISSUER_ID_MAX of [a-z0-9_-]. */
static int issuer_id_ok(const char *id)
{
    size_t n = strlen(id);

    if (n < 1 || n > ISSUER_ID_MAX) {
        return 0;
    }
    for (; *id != '\0'; id++) {
        if (!is_lower(*id) && !text_is_digit(*id) && *id != '_' && *id != '-') {
            return 0;
        }
    }
    return 1;
}

/* ---- value parsers ---- */

/* Parses s[0..n) as "host:port" or "[v6]:port". host (hostsz bytes) gets
 * the host without brackets. Returns 0, or -1 with why. */
static int parse_hostport(const char *s, size_t n, char *host, size_t hostsz,
                          int *port, char *why, size_t whylen)
{
    const char *h = s;
    const char *colon = NULL;
    size_t hl;
    long p = 0;

    if (n > 0 && s[0] == '[') {
        const char *rb = memchr(s, ']', n);
        if (rb == NULL || rb + 1 >= s + n || rb[1] != ':') {
            goto bad;
        }
        h = s + 1;
        hl = (size_t)(rb - h);
        colon = rb + 1;
        if (hl < 2 || memchr(h, ':', hl) == NULL) {
            text_errf(why, whylen, "bad IPv6 address in brackets");
            return -1;
        }
        for (size_t i = 0; i < hl; i++) {
            char ch = h[i];
            if (!text_is_digit(ch) && !(ch >= 'a' && ch <= 'f') &&
                !(ch >= 'A' && ch <= 'F') && ch != ':' && ch != '.') {
                text_errf(why, whylen, "bad IPv6 address in brackets");
                return -1;
            }
        }
    } else {
        for (size_t i = 0; i < n; i++) {
            if (s[i] == ':') {
                colon = s + i;
            }
        }
        if (colon == NULL) {
            goto bad;
        }
        hl = (size_t)(colon - s);
        if (hl == 0) {
            goto bad;
        }
        for (size_t i = 0; i < hl; i++) {
            if (h[i] == ':') {
                text_errf(why, whylen,
                          "write an IPv6 address in brackets: [addr]:port");
                return -1;
            }
            if (!is_alnum(h[i]) && h[i] != '.' && h[i] != '-' && h[i] != '_') {
                text_errf(why, whylen, "bad host name");
                return -1;
            }
        }
    }
    for (const char *d = colon + 1; d < s + n; d++) {
        if (!text_is_digit(*d) || d - colon > 5) {
            goto bad_port;
        }
        p = p * 10 + (*d - '0');
    }
    if (colon + 1 == s + n || p < 1 || p > 65535) {
        goto bad_port;
    }
    if (hl >= hostsz) {
        text_errf(why, whylen, "host name too long");
        return -1;
    }
    if (host != NULL) {
        memcpy(host, h, hl);
        host[hl] = '\0';
    }
    if (port != NULL) {
        *port = (int)p;
    }
    return 0;

bad:
    text_errf(why, whylen, "must be host:port");
    return -1;
bad_port:
    text_errf(why, whylen, "port must be 1 to 65535");
    return -1;
}

/* Calls fn for each entry of a comma list, blanks trimmed. An empty entry
 * is an error. Returns 0, or -1 with why (from fn or about the list). */
static int each_entry(const char *v,
                      int (*fn)(void *arg, const char *s, size_t n,
                                char *why, size_t whylen),
                      void *arg, char *why, size_t whylen)
{
    for (const char *s = v;;) {
        const char *e = strchr(s, ',');
        const char *end = e != NULL ? e : s + strlen(s);

        while (s < end && is_space(*s)) {
            s++;
        }
        while (end > s && is_space(end[-1])) {
            end--;
        }
        if (end == s) {
            text_errf(why, whylen, "empty entry in the list");
            return -1;
        }
        if (fn(arg, s, (size_t)(end - s), why, whylen) != 0) {
            return -1;
        }
        if (e == NULL) {
            return 0;
        }
        s = e + 1;
    }
}

struct hostports {
    char *out;
    size_t outsz;
    size_t used;
};

static int add_hostport(void *arg, const char *s, size_t n, char *why,
                        size_t whylen)
{
    struct hostports *h = arg;
    char host[256];

    if (parse_hostport(s, n, host, sizeof(host), NULL, why, whylen) != 0) {
        return -1;
    }
    if (h->used + (h->used > 0) + n >= h->outsz) {
        text_errf(why, whylen, "too long (max %zu characters)", h->outsz - 1);
        return -1;
    }
    if (h->used > 0) {
        h->out[h->used++] = ',';
    }
    memcpy(h->out + h->used, s, n);
    h->used += n;
    h->out[h->used] = '\0';
    return 0;
}

/* Checks a comma list of host:port and writes it to out without blanks.
 * Returns 0, or -1 with why. */
static int parse_hostports(const char *v, char *out, size_t outsz, char *why,
                           size_t whylen)
{
    struct hostports h = {out, outsz, 0};
    return each_entry(v, add_hostport, &h, why, whylen);
}

static int parse_int(const char *v, long min, long max, int *out, char *why,
                     size_t whylen)
{
    char *end = NULL;
    long n;

    errno = 0;
    n = strtol(v, &end, 10);
    if (!(text_is_digit(v[0]) || (v[0] == '-' && text_is_digit(v[1]))) || *end != '\0') {
        text_errf(why, whylen, "not an integer");
        return -1;
    }
    if (errno == ERANGE || n < min || n > max) {
        text_errf(why, whylen, "must be %ld to %ld", min, max);
        return -1;
    }
    *out = (int)n;
    return 0;
}

static int parse_bool(const char *v, int *out, char *why, size_t whylen)
{
    static const char *const yes[] = {"yes", "true", "on", "1"};
    static const char *const no[] = {"no", "false", "off", "0"};

    for (size_t i = 0; i < sizeof(yes) / sizeof(yes[0]); i++) {
        if (strcasecmp(v, yes[i]) == 0) {
            *out = 1;
            return 0;
        }
        if (strcasecmp(v, no[i]) == 0) {
            *out = 0;
            return 0;
        }
    }
    text_errf(why, whylen, "must be yes or no");
    return -1;
}

struct bins {
    struct route_table *rt;
    int idx;
};

static int add_bin(void *arg, const char *s, size_t n, char *why,
                   size_t whylen)
{
    struct bins *b = arg;
    char one[40];

    if (n >= sizeof(one)) {
        text_errf(why, whylen, "entry of %zu characters is too long", n);
        return -1;
    }
    memcpy(one, s, n);
    one[n] = '\0';
    return route_add(b->rt, one, b->idx, why, whylen);
}

/* Adds every entry of a comma list of BIN prefixes and ranges to the
 * route table for issuer idx. Returns 0, or -1 with why. */
static int add_bins(struct route_table *rt, const char *v, int idx, char *why,
                    size_t whylen)
{
    struct bins b = {rt, idx};
    return each_entry(v, add_bin, &b, why, whylen);
}

/* ---- the table ---- */

static const struct key *find_key(const char *section, const char *name)
{
    for (size_t i = 0; i < N_KEYS; i++) {
        if (strcmp(keys[i].section, section) == 0 &&
            strcmp(keys[i].name, name) == 0) {
            return &keys[i];
        }
    }
    return NULL;
}

/* Stores value into the field of k at base (struct config or struct
 * issuer). idx is the issuer index for KT_BINS. Returns 0, or -1 with the
 * reason in why; the field is unchanged on error, except that the entries
 * of a bins list before the bad one stay added. */
static int set_value(struct config *c, const struct key *k, char *base, int idx,
                     const char *value, char *why, size_t whylen)
{
    size_t len = strlen(value);
    char tmp[CONFIG_STR_MAX];
    int n = 0;

    if (len == 0 && !(k->flags & F_EMPTY_OK)) {
        text_errf(why, whylen, "%s",
                  k->empty_why != NULL ? k->empty_why : "must not be empty");
        return -1;
    }
    if (has_control(value)) {
        text_errf(why, whylen, "contains a control character");
        return -1;
    }
    switch (k->type) {
    case KT_STRING:
    case KT_PATH:
        if (len > 0 && k->check != NULL && k->check(value, why, whylen) != 0) {
            return -1;
        }
        if (len >= k->size) {
            text_errf(why, whylen, "too long (max %zu characters)",
                      k->size - 1);
            return -1;
        }
        memcpy(base + k->off, value, len + 1);
        return 0;
    case KT_INT:
        if (parse_int(value, k->min, k->max, &n, why, whylen) != 0) {
            return -1;
        }
        memcpy(base + k->off, &n, sizeof(n));
        return 0;
    case KT_BOOL:
        if (parse_bool(value, &n, why, whylen) != 0) {
            return -1;
        }
        memcpy(base + k->off, &n, sizeof(n));
        return 0;
    case KT_HOSTPORT:
        if (len == 0) {
            tmp[0] = '\0';
        } else if (k->flags & F_SPLIT) {
            if (parse_hostport(value, len, tmp, k->size, &n, why, whylen) !=
                0) {
                return -1;
            }
        } else {
            if (len >= k->size) {
                text_errf(why, whylen, "too long (max %zu characters)",
                          k->size - 1);
                return -1;
            }
            if (parse_hostport(value, len, NULL, k->size, NULL, why, whylen) !=
                0) {
                return -1;
            }
            memcpy(tmp, value, len + 1);
        }
        memcpy(base + k->off, tmp, strlen(tmp) + 1);
        if (k->flags & F_SPLIT) {
            memcpy(base + k->off2, &n, sizeof(n));
        }
        return 0;
    case KT_HOSTPORTS:
        tmp[0] = '\0';
        if (len > 0 && parse_hostports(value, tmp, k->size, why, whylen) != 0) {
            return -1;
        }
        memcpy(base + k->off, tmp, strlen(tmp) + 1);
        return 0;
    case KT_BINS:
        return add_bins(c->routes, value, idx, why, whylen);
    }
    text_errf(why, whylen, "unsupported key type");
    return -1;
}

/* ---- sections ---- */

/* Classifies a section name. For SEC_ISSUER, *id points at the id (it may
 * be invalid); for SEC_KAFKA, *id points at the scope. */
static enum section_kind section_kind(const char *section, const char **id)
{
    for (size_t i = 0; i < sizeof(plain_sections) / sizeof(plain_sections[0]);
         i++) {
        if (strcmp(section, plain_sections[i]) == 0) {
            return SEC_PLAIN;
        }
    }
    if (strcmp(section, "kafka.consumer") == 0 ||
        strcmp(section, "kafka.producer") == 0 ||
        strcmp(section, "kafka.common") == 0) {
        *id = section + strlen("kafka.");
        return SEC_KAFKA;
    }
    if (strncmp(section, "issuer", 6) == 0 &&
        (section[6] == '\0' || section[6] == ' ' || section[6] == '\t')) {
        const char *s = section + 6;
        while (*s == ' ' || *s == '\t') {
            s++;
        }
        *id = s;
        return SEC_ISSUER;
    }
    return SEC_UNKNOWN;
}

static int issuer_find(const struct config *c, const char *id)
{
    for (size_t i = 0; i < c->n_issuers; i++) {
        if (strcmp(c->issuers[i].id, id) == 0) {
            return (int)i;
        }
    }
    return -1;
}

/* Appends issuer id (valid) with its defaults. Returns its index, or -1
 * with why. The array grows in powers of two. */
static int issuer_create(struct config *c, const char *id, char *why,
                         size_t whylen)
{
    size_t n = c->n_issuers;
    struct issuer *is;

    if (n >= CONFIG_MAX_ISSUERS) {
        text_errf(why, whylen, "too many issuers (max %d)", CONFIG_MAX_ISSUERS);
        return -1;
    }
    if (n == 0 || (n >= 4 && (n & (n - 1)) == 0)) {
        size_t cap = n == 0 ? 4 : 2 * n;
        struct issuer *v = realloc(c->issuers, cap * sizeof(*v));
        if (v == NULL) {
            text_errf(why, whylen, "out of memory");
            return -1;
        }
        c->issuers = v;
    }
    is = &c->issuers[n];
    memset(is, 0, sizeof(*is));
    snprintf(is->id, sizeof(is->id), "%s", id);
    snprintf(is->name, sizeof(is->name), "%s", id);
    c->n_issuers = n + 1;
    return (int)n;
}

/* Adds or replaces a librdkafka property. Returns 0, or -1 with why and
 * *is_value set when the value is at fault. */
static int kafka_prop_set(struct config *c, const char *scope, const char *name,
                          const char *value, int line, char *why, size_t whylen,
                          int *is_value)
{
    size_t n = strlen(name);
    struct kafka_prop *p = NULL;

    for (const char *s = name; *s != '\0'; s++) {
        if (!is_alnum(*s) && *s != '.' && *s != '_' && *s != '-') {
            n = 0;
            break;
        }
    }
    if (n == 0 || n > KAFKA_NAME_MAX) {
        char nm[QUOTE_MAX + 4];
        clean_copy(nm, sizeof(nm), name, QUOTE_MAX);
        text_errf(why, whylen, "bad property name '%s' in [kafka.%s]", nm,
                  scope);
        return -1;
    }
    for (size_t i = 0; i < sizeof(reserved_props) / sizeof(reserved_props[0]);
         i++) {
        if (strcmp(name, reserved_props[i].name) != 0) {
            continue;
        }
        if (reserved_props[i].use != NULL) {
            text_errf(why, whylen, "property '%s' is set by %s", name,
                      reserved_props[i].use);
        } else {
            text_errf(why, whylen, "property '%s' is managed by cardwatch",
                      name);
        }
        return -1;
    }
    *is_value = 1;
    if (strlen(value) >= sizeof(p->value)) {
        text_errf(why, whylen, "too long (max %zu characters)",
                  sizeof(p->value) - 1);
        return -1;
    }
    if (has_control(value)) {
        text_errf(why, whylen, "contains a control character");
        return -1;
    }
    *is_value = 0;
    for (size_t i = 0; i < c->n_kafka_props; i++) {
        if (strcmp(c->kafka_props[i].scope, scope) == 0 &&
            strcmp(c->kafka_props[i].name, name) == 0) {
            p = &c->kafka_props[i]; /* a later setting wins */
            break;
        }
    }
    if (p == NULL) {
        if (c->n_kafka_props >= CONFIG_MAX_KAFKA_PROPS) {
            text_errf(why, whylen, "too many kafka properties (max %d)",
                      CONFIG_MAX_KAFKA_PROPS);
            return -1;
        }
        p = &c->kafka_props[c->n_kafka_props++];
    }
    snprintf(p->scope, sizeof(p->scope), "%s", scope);
    snprintf(p->name, sizeof(p->name), "%s", name);
    snprintf(p->value, sizeof(p->value), "%s", value);
    p->line = line;
    return 0;
}

/* Sets section/name to value. Returns 0, or -1 with a message in why;
 * *is_value is set when the message is only the reason a value is bad
 * (the caller then names the key and quotes the value). Issuers are
 * created on first use. */
static int apply(struct config *c, const char *section, const char *name,
                 const char *value, int line, char *why, size_t whylen,
                 int *is_value)
{
    const char *id = NULL;
    const struct key *k;
    char *base = (char *)c;
    char sec[QUOTE_MAX + 4];
    char nm[QUOTE_MAX + 4];
    int idx = -1;

    *is_value = 0;
    clean_copy(sec, sizeof(sec), section, QUOTE_MAX);
    clean_copy(nm, sizeof(nm), name, QUOTE_MAX);
    if (section[0] == '\0') {
        text_errf(why, whylen, "key '%s' is outside any [section]", nm);
        return -1;
    }
    switch (section_kind(section, &id)) {
    case SEC_UNKNOWN:
        text_errf(why, whylen, "unknown section [%s]", sec);
        return -1;
    case SEC_KAFKA:
        return kafka_prop_set(c, id, name, value, line, why, whylen, is_value);
    case SEC_ISSUER:
        if (!issuer_id_ok(id)) {
            text_errf(why, whylen,
                      "bad issuer id in [%s]: must be 1 to %d of a-z 0-9 _ -",
                      sec, ISSUER_ID_MAX);
            return -1;
        }
        idx = issuer_find(c, id);
        if (idx < 0) {
            idx = issuer_create(c, id, why, whylen);
            if (idx < 0) {
                return -1;
            }
        }
        base = (char *)&c->issuers[idx];
        section = "issuer";
        break;
    case SEC_PLAIN:
        break;
    }
    k = find_key(section, name);
    if (k == NULL) {
        text_errf(why, whylen, "unknown key '%s' in [%s]", nm, sec);
        return -1;
    }
    if (set_value(c, k, base, idx, value, why, whylen) != 0) {
        *is_value = 1;
        return -1;
    }
    return 0;
}

/* ---- loading a file ---- */

/* Sees a "[section]" line: checks the name and registers an issuer, so
 * that empty, unknown and duplicate sections are errors too. */
static void section_begin(struct load *ld, const char *name)
{
    const char *id = NULL;
    char sec[QUOTE_MAX + 4];
    char why[WHY_MAX];
    int idx;

    clean_copy(sec, sizeof(sec), name, QUOTE_MAX);
    if (strlen(name) > INI_SECTION_MAX) {
        load_error(ld, "section name [%s] too long (max %d characters)", sec,
                   INI_SECTION_MAX);
        return;
    }
    switch (section_kind(name, &id)) {
    case SEC_UNKNOWN:
        load_error(ld, "unknown section [%s]", sec);
        return;
    case SEC_PLAIN:
    case SEC_KAFKA:
        return;
    case SEC_ISSUER:
        break;
    }
    if (!issuer_id_ok(id)) {
        load_error(ld, "bad issuer id in [%s]: must be 1 to %d of a-z 0-9 _ -",
                   sec, ISSUER_ID_MAX);
        return;
    }
    idx = issuer_find(ld->c, id);
    if (idx >= 0 && ld->seen_line[idx] != 0) {
        load_error(ld, "duplicate section [%s] (first at line %d)", sec,
                   ld->seen_line[idx]);
        return;
    }
    if (idx < 0) {
        idx = issuer_create(ld->c, id, why, sizeof(why));
        if (idx < 0) {
            load_error(ld, "%s", why);
            return;
        }
    }
    ld->seen_line[idx] = ld->lineno;
}

/* Follows inih's reading of one line (v55: BOM, comments, continuation,
 * sections) for what inih does not tell the handler. */
static void scan_line(struct load *ld, char *line)
{
    char *s = line;
    char *p;

    if (ld->lineno == 1 && (unsigned char)s[0] == 0xEF &&
        (unsigned char)s[1] == 0xBB && (unsigned char)s[2] == 0xBF) {
        s += 3;
    }
    while (is_space(*s)) {
        s++;
    }
    if (*s == '\0' || *s == ';' || *s == '#') {
        return;
    }
    if (s > line && ld->have_key) {
        /* inih would append this to the previous key's value */
        load_error(ld, "indented line continues the previous value; "
                       "continuation lines are not supported");
        return;
    }
    if (*s == '[') {
        /* like inih: ']' ends the name, so does a ';' after a blank */
        for (p = s + 1; *p != '\0' && *p != ']'; p++) {
            if (*p == ';' && is_space(p[-1])) {
                return; /* inih: syntax error */
            }
        }
        if (*p == ']') {
            *p = '\0';
            section_begin(ld, s + 1);
            *p = ']';
            ld->have_key = 0;
        }
        return;
    }
    if (strpbrk(s, "=:") != NULL) {
        ld->have_key = 1;
    }
}

/* ini_reader: hands inih one line (without its end of line) and counts it.
 * Stops the parse (returns NULL) after our first error. */
static char *read_line(char *str, int num, void *stream)
{
    struct load *ld = stream;
    ssize_t n;
    size_t len;

    if (ld->err_line != 0) {
        return NULL;
    }
    errno = 0;
    n = getline(&ld->buf, &ld->cap, ld->f);
    if (n < 0) {
        /* getline() out of memory sets ENOMEM but not the stream's error
         * flag: it is no end of file */
        if (ferror(ld->f) || errno == ENOMEM) {
            ld->read_errno = errno != 0 ? errno : EIO;
        }
        return NULL;
    }
    ld->lineno++;
    len = (size_t)n;
    while (len > 0 && (ld->buf[len - 1] == '\n' || ld->buf[len - 1] == '\r')) {
        len--;
    }
    if (memchr(ld->buf, '\0', len) != NULL) {
        load_error(ld, "line contains a NUL byte");
        return NULL;
    }
    if (num < 1 || len > (size_t)num - 1) {
        load_error(ld, "line too long (max %d characters)", num - 1);
        return NULL;
    }
    memcpy(str, ld->buf, len);
    str[len] = '\0';
    scan_line(ld, str);
    return str;
}

/* ini_handler: one "name = value" line. */
static int on_pair(void *user, const char *section, const char *name,
                   const char *value)
{
    struct load *ld = user;
    char why[WHY_MAX];
    char q[QUOTE_MAX + 8];
    char nm[QUOTE_MAX + 4];
    char sec[QUOTE_MAX + 4];
    int is_value = 0;

    if (ld->err_line != 0) {
        return 0;
    }
    if (apply(ld->c, section, name, value, ld->lineno, why, sizeof(why),
              &is_value) == 0) {
        return 1;
    }
    if (is_value) {
        clean_copy(nm, sizeof(nm), name, QUOTE_MAX);
        clean_copy(sec, sizeof(sec), section, QUOTE_MAX);
        load_error(ld, "bad value %s for '%s' in [%s]: %s",
                   quote(q, sizeof(q), name, value), nm, sec, why);
    } else {
        load_error(ld, "%s", why);
    }
    return 0;
}

/* ---- public ---- */

int config_init(struct config *c)
{
    char why[WHY_MAX];

    if (c == NULL) {
        return -1;
    }
    memset(c, 0, sizeof(*c));
    for (size_t i = 0; i < N_KEYS; i++) {
        if (keys[i].def != NULL &&
            set_value(c, &keys[i], (char *)c, -1, keys[i].def, why,
                      sizeof(why)) != 0) {
            return -1; /* a bad default: a bug in keys[] */
        }
    }
    c->routes = route_new();
    return c->routes != NULL ? 0 : -1;
}

int config_load(struct config *c, const char *path, char *errbuf, size_t errlen)
{
    struct load *ld = NULL;
    int rc = -1;
    int ret;

    if (c == NULL || path == NULL || c->routes == NULL) {
        text_errf(errbuf, errlen, "config_load: not initialised");
        goto out;
    }
    if (strlen(path) >= sizeof(c->path)) {
        text_errf(errbuf, errlen, "config path too long");
        goto out;
    }
    ld = calloc(1, sizeof(*ld));
    if (ld == NULL) {
        text_errf(errbuf, errlen, "%s: out of memory", path);
        goto out;
    }
    ld->c = c;
    ld->f = fopen(path, "r");
    if (ld->f == NULL) {
        text_errf(errbuf, errlen, "%s: cannot open: %s", path, strerror(errno));
        goto out;
    }
    snprintf(c->path, sizeof(c->path), "%s", path);

    ret = ini_parse_stream(read_line, ld, on_pair, ld);
    if (ret > 0 && (ld->err_line == 0 || ret < ld->err_line)) {
        text_errf(errbuf, errlen,
                  "%s:%d: syntax error: expected [section] or name = value",
                  path, ret);
    } else if (ld->err_line != 0) {
        text_errf(errbuf, errlen, "%s:%d: %s", path, ld->err_line, ld->err);
    } else if (ld->read_errno == ENOMEM) {
        text_errf(errbuf, errlen, "%s:%d: out of memory", path,
                  ld->lineno + 1);
    } else if (ld->read_errno != 0) {
        text_errf(errbuf, errlen, "%s: read error: %s", path,
                  strerror(ld->read_errno));
    } else if (ret < 0) {
        text_errf(errbuf, errlen, "%s: out of memory", path);
    } else {
        rc = 0;
    }
out:
    if (ld != NULL) {
        if (ld->f != NULL) {
            fclose(ld->f);
        }
        free(ld->buf);
        free(ld);
    }
    return rc;
}

int config_set(struct config *c, const char *section, const char *name,
               const char *value, char *errbuf, size_t errlen)
{
    char why[WHY_MAX];
    char q[QUOTE_MAX + 8];
    char sec[QUOTE_MAX + 4];
    char nm[QUOTE_MAX + 4];
    int is_value = 0;

    if (c == NULL || section == NULL || name == NULL || value == NULL ||
        c->routes == NULL) {
        text_errf(errbuf, errlen, "config_set: invalid argument");
        return -1;
    }
    if (apply(c, section, name, value, 0, why, sizeof(why), &is_value) == 0) {
        return 0;
    }
    clean_copy(sec, sizeof(sec), section, QUOTE_MAX);
    clean_copy(nm, sizeof(nm), name, QUOTE_MAX);
    if (is_value) {
        text_errf(errbuf, errlen, "%s.%s: bad value %s: %s", sec, nm,
                  quote(q, sizeof(q), name, value), why);
    } else {
        text_errf(errbuf, errlen, "%s.%s: %s", sec, nm, why);
    }
    return -1;
}

/* The default topic of an issuer, alert_topic_prefix + id, is always a
 * valid topic name: the prefix field holds at most 199 characters, an id
 * 32, a topic name 249. */
_Static_assert(sizeof(((struct config *)0)->alert_topic_prefix) - 1 +
                       ISSUER_ID_MAX <=
                   TOPIC_MAX &&
               TOPIC_MAX < sizeof(((struct issuer *)0)->topic),
               "alert_topic_prefix + issuer id can be longer than a topic "
               "name");

/* One topic name and where it is configured, for the distinctness check. */
struct topic_use {
    const char *topic;
    const char *what; /* "[kafka] fallback_topic" or an issuer id */
};

/* The checks of config_check() below: each returns 0, or -1 with the
 * reason in errbuf. */

/* Kafka brokers, the card key file, one SASL password. */
static int check_kafka_and_key(const struct config *c, char *errbuf,
                               size_t errlen)
{
    if (c->brokers[0] == '\0' && c->brokers_file[0] == '\0') {
        text_errf(errbuf, errlen,
                  "no Kafka brokers: set [kafka] brokers or brokers_file");
        return -1;
    }
    if (c->key_file[0] == '\0') {
        text_errf(errbuf, errlen, "[card] key_file is required");
        return -1;
    }
    for (size_t i = 0; i < c->n_kafka_props; i++) {
        if (c->kafka_sasl_password_file[0] != '\0' &&
            strcmp(c->kafka_props[i].name, "sasl.password") == 0) {
            text_errf(errbuf, errlen,
                      "%s:%d: [kafka.%s] sasl.password and [kafka] "
                      "sasl_password_file are both set: keep one",
                      c->path[0] ? c->path : "(flags)",
                      c->kafka_props[i].line, c->kafka_props[i].scope);
            return -1;
        }
    }
    return 0;
}

/* [redis]: TLS, sentinels and user settings that go together. */
static int check_redis_pairs(const struct config *c, char *errbuf,
                             size_t errlen)
{
    if (c->redis_tls && c->redis_tls_ca_file[0] == '\0') {
        text_errf(errbuf, errlen, "[redis] tls = on needs tls_ca_file (the "
                  "CA that signed the server's certificate)");
        return -1;
    }
    if (!c->redis_tls &&
        (c->redis_tls_ca_file[0] || c->redis_tls_cert_file[0] ||
         c->redis_tls_key_file[0] || c->redis_tls_server_name[0])) {
        text_errf(errbuf, errlen, "[redis] tls_* settings are given but tls "
                  "is off: set tls = on (or remove them)");
        return -1;
    }
    if ((c->redis_tls_cert_file[0] == '\0') !=
        (c->redis_tls_key_file[0] == '\0')) {
        text_errf(errbuf, errlen, "[redis] tls_cert_file and tls_key_file "
                  "go together (mutual TLS)");
        return -1;
    }
    if ((c->redis_sentinels[0] == '\0') != (c->redis_master_name[0] == '\0')) {
        text_errf(errbuf, errlen, "[redis] sentinels and master_name go "
                  "together");
        return -1;
    }
    if (c->redis_username[0] != '\0' && c->redis_password_file[0] == '\0') {
        text_errf(errbuf, errlen, "[redis] username needs password_file");
        return -1;
    }
    return 0;
}

/* Limits that depend on each other: future skew and lateness, in-flight
 * and batch size. */
static int check_limits(const struct config *c, char *errbuf, size_t errlen)
{
    if (c->max_future_skew_ms > c->allowed_lateness_ms) {
        text_errf(errbuf, errlen,
                  "[rules] max_future_skew_ms (%d) must not exceed "
                  "allowed_lateness_ms (%d): an event accepted that far "
                  "ahead would prune window state the card's other events "
                  "still need",
                  c->max_future_skew_ms, c->allowed_lateness_ms);
        return -1;
    }
    if (c->max_in_flight < c->batch_size) {
        text_errf(errbuf, errlen,
                  "[pipeline] max_in_flight (%d) must be >= batch_size (%d)",
                  c->max_in_flight, c->batch_size);
        return -1;
    }
    return 0;
}

/* Each issuer has a home country and bins (counts: bins per issuer
 * index); fills in a default topic and appends each topic to uses. */
static int check_issuers(const struct config *c, const size_t *counts,
                         struct topic_use *uses, size_t *n_uses, char *errbuf,
                         size_t errlen)
{
    for (size_t i = 0; i < c->n_issuers; i++) {
        /* issuers is not const behind a const config: the default topic
         * is filled in here, after every override of the prefix */
        struct issuer *is = &c->issuers[i];

        if (is->home_country[0] == '\0') {
            text_errf(errbuf, errlen, "[issuer %s] home_country is required",
                      is->id);
            return -1;
        }
        if (counts[i] == 0) {
            text_errf(errbuf, errlen, "[issuer %s] has no bins", is->id);
            return -1;
        }
        if (is->topic[0] == '\0') {
            /* fits a topic name: the _Static_assert above */
            snprintf(is->topic, sizeof(is->topic), "%s%s",
                     c->alert_topic_prefix, is->id);
        }
        uses[(*n_uses)++] = (struct topic_use){is->topic, is->id};
    }
    return 0;
}

/* No topic is used twice (the first 3 uses are [kafka] settings, the
 * others issuers). */
static int check_topics_distinct(const struct topic_use *uses, size_t n_uses,
                                 char *errbuf, size_t errlen)
{
    for (size_t i = 0; i < n_uses; i++) {
        for (size_t j = i + 1; j < n_uses; j++) {
            if (strcmp(uses[i].topic, uses[j].topic) != 0) {
                continue;
            }
            text_errf(errbuf, errlen,
                      "topic '%s' is used twice: %s%s%s and %s%s%s",
                      uses[i].topic, i < 3 ? "" : "[issuer ", uses[i].what,
                      i < 3 ? "" : "] topic", j < 3 ? "" : "[issuer ",
                      uses[j].what, j < 3 ? "" : "] topic");
            return -1;
        }
    }
    return 0;
}

int config_check(const struct config *c, char *errbuf, size_t errlen)
{
    size_t *counts = NULL;
    struct topic_use *uses = NULL;
    size_t n_uses = 0;
    int rc = -1;

    if (c == NULL) {
        text_errf(errbuf, errlen, "config_check: invalid argument");
        goto out;
    }
    if (check_kafka_and_key(c, errbuf, errlen) != 0 ||
        check_redis_pairs(c, errbuf, errlen) != 0 ||
        check_limits(c, errbuf, errlen) != 0) {
        goto out;
    }
    counts = calloc(c->n_issuers + 1, sizeof(*counts));
    uses = calloc(c->n_issuers + 3, sizeof(*uses));
    if (counts == NULL || uses == NULL) {
        text_errf(errbuf, errlen, "out of memory");
        goto out;
    }
    route_count_by_idx(c->routes, counts, c->n_issuers);
    uses[n_uses++] =
        (struct topic_use){c->transactions_topic, "[kafka] transactions_topic"};
    uses[n_uses++] =
        (struct topic_use){c->dead_letter_topic, "[kafka] dead_letter_topic"};
    uses[n_uses++] =
        (struct topic_use){c->fallback_topic, "[kafka] fallback_topic"};
    if (check_issuers(c, counts, uses, &n_uses, errbuf, errlen) != 0 ||
        check_topics_distinct(uses, n_uses, errbuf, errlen) != 0) {
        goto out;
    }
    /* ([feed] and the issuers' tokens: feed_config_check(), feed_config.h) */
    rc = 0;
out:
    free(counts);
    free(uses);
    return rc;
}

int config_brokers(const struct config *c, char *buf, size_t buflen,
                   char *errbuf, size_t errlen)
{
    FILE *f = NULL;
    char *line = NULL;
    size_t cap = 0;
    char why[WHY_MAX];
    char q[QUOTE_MAX + 8];
    char list[CONFIG_STR_MAX];
    const char *src = NULL;
    int rc = -1;

    if (c == NULL || buf == NULL || buflen == 0) {
        text_errf(errbuf, errlen, "config_brokers: invalid argument");
        goto out;
    }
    if (c->brokers_file[0] != '\0') {
        ssize_t n;

        f = fopen(c->brokers_file, "r");
        if (f == NULL) {
            text_errf(errbuf, errlen, "%s: cannot open: %s", c->brokers_file,
                      strerror(errno));
            goto out;
        }
        while ((n = getline(&line, &cap, f)) >= 0) {
            char *s = line;
            char *e = line + n;
            while (s < e && is_space(*s)) {
                s++;
            }
            while (e > s && is_space(e[-1])) {
                e--;
            }
            *e = '\0';
            if (*s != '\0' && *s != '#') {
                src = s;
                break;
            }
        }
        if (src == NULL) {
            if (ferror(f)) {
                text_errf(errbuf, errlen, "%s: read error", c->brokers_file);
            } else {
                text_errf(errbuf, errlen, "%s: no brokers in the file",
                          c->brokers_file);
            }
            goto out;
        }
        if (parse_hostports(src, list, sizeof(list), why, sizeof(why)) != 0) {
            text_errf(errbuf, errlen, "%s: bad brokers %s: %s", c->brokers_file,
                      quote(q, sizeof(q), "brokers", src), why);
            goto out;
        }
        src = list;
    } else if (c->brokers[0] != '\0') {
        src = c->brokers;
    } else {
        text_errf(errbuf, errlen,
                  "no Kafka brokers: set [kafka] brokers or brokers_file");
        goto out;
    }
    if (strlen(src) >= buflen) {
        text_errf(errbuf, errlen, "broker list too long (%zu characters)",
                  strlen(src));
        goto out;
    }
    memcpy(buf, src, strlen(src) + 1);
    rc = 0;
out:
    if (f != NULL) {
        fclose(f);
    }
    free(line);
    return rc;
}

const struct issuer *config_route(const struct config *c, const char *digits,
                                  size_t len)
{
    int idx;

    if (c == NULL) {
        return NULL;
    }
    idx = route_lookup(c->routes, digits, len);
    if (idx < 0 || (size_t)idx >= c->n_issuers) {
        return NULL;
    }
    return &c->issuers[idx];
}

void config_free(struct config *c)
{
    if (c == NULL) {
        return;
    }
    route_destroy(c->routes);
    c->routes = NULL;
    free(c->issuers);
    c->issuers = NULL;
    c->n_issuers = 0;
}
