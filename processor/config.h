/* config.h - table-driven INI configuration (libinih) with validation.
 *
 * One row per key (section, name, type, default, bounds); every bad value
 * stops start-up with "file:line: message". Command-line flags override
 * the file through config_set(). Issuers are sections "[issuer ID]".
 */
#ifndef CARDWATCH_CONFIG_H
#define CARDWATCH_CONFIG_H

#include <stddef.h>

#include "alert.h"
#include "route.h"

#define CONFIG_STR_MAX 512
#define CONFIG_MAX_ISSUERS 1024
#define CONFIG_MAX_KAFKA_PROPS 64

struct issuer {
    char id[ISSUER_ID_MAX + 1];        /* [a-z0-9_-]{1,32} */
    char name[128];                    /* display name; defaults to id */
    char home_country[3];              /* ISO 3166-1 alpha-2 */
    char topic[CONFIG_STR_MAX];        /* alert topic; default prefix + id */
    char token_sha256[CONFIG_STR_MAX]; /* feed: hex SHA-256 of each valid
                                          bearer token, comma list; "" =
                                          no feed access */
};

/* A librdkafka property passed through from [kafka.consumer] or
 * [kafka.producer] (or [kafka.common], which goes to both). */
struct kafka_prop {
    char scope[16]; /* "consumer", "producer" or "common" */
    char name[128];
    char value[CONFIG_STR_MAX];
    int line;       /* for error messages */
};

struct config {
    char path[CONFIG_STR_MAX]; /* file it was loaded from, "" if none */

    /* [kafka] */
    char brokers[CONFIG_STR_MAX];      /* host:port,... */
    char brokers_file[CONFIG_STR_MAX]; /* read brokers from this file */
    char group[256];
    char transactions_topic[256];
    char dead_letter_topic[256];
    char alert_topic_prefix[200];
    char fallback_topic[256];          /* alerts of unknown BINs */
    int session_timeout_ms;
    int connect_timeout_s; /* start-up wait for the brokers */
    char kafka_sasl_password_file[CONFIG_STR_MAX]; /* -> sasl.password */

    /* [redis] */
    char redis_host[256];
    int redis_port;
    char redis_prefix[32]; /* key namespace, default "cw" */
    int redis_timeout_ms;  /* connect and command timeout */
    int delivered_ttl_days; /* delivered-alert records kept this long */
    char redis_username[128];                 /* ACL user; "" = default */
    char redis_password_file[CONFIG_STR_MAX]; /* "" = no AUTH */
    int redis_tls;                            /* 1 = TLS */
    char redis_tls_ca_file[CONFIG_STR_MAX];
    char redis_tls_cert_file[CONFIG_STR_MAX]; /* mutual TLS, with key */
    char redis_tls_key_file[CONFIG_STR_MAX];
    char redis_tls_server_name[256]; /* "" = host of address */
    char redis_sentinels[CONFIG_STR_MAX]; /* host:port,...; "" = none */
    char redis_master_name[128];

    /* [card] */
    char key_file[CONFIG_STR_MAX];

    /* [rules] */
    char rules_path[CONFIG_STR_MAX]; /* "" = built-in exposure rule */
    int allowed_lateness_ms;         /* window state kept beyond the
                                        longest window; default 1 h */
    int max_future_skew_ms;          /* events dated further ahead of the
                                        wall clock are dead letters;
                                        <= allowed_lateness_ms; 5 min */
    int reprocess_grace_ms;          /* window entries kept (wall clock)
                                        for a re-evaluation; 1 h */

    /* [pipeline] */
    int batch_size;     /* events taken from Kafka per batch */
    int max_in_flight;  /* events consumed but not yet acknowledged */

    /* [replay] */
    char replay_topic_suffix[32];        /* issuer topic + this */
    char replay_dead_letter_topic[256];
    int replay_redis_wait_s; /* how long Redis may fail a replay, at any time */
    int replay_max_dead_letters;        /* stop past this many; 0 = no cap */
    int replay_max_dead_letter_percent; /* ... or this share; 100 = none */
    /* [feed] */
    char feed_listen[CONFIG_STR_MAX]; /* host:port; "" = no feed */
    int feed_retention_days;          /* stream entries older are trimmed */
    int feed_max_alerts;              /* per issuer stream, approximately */
    char feed_tls_cert[CONFIG_STR_MAX]; /* both set = HTTPS */
    char feed_tls_key[CONFIG_STR_MAX];
    int feed_max_body;     /* request body limit, bytes */
    int feed_rate_per_s;   /* requests per token, sustained */
    int feed_burst;        /* ... and in a burst */
    int feed_max_wait_s;   /* longest long poll */
    int feed_max_clients;  /* open connections, counted from accept */
    int feed_request_timeout_s; /* to send a whole request (slowloris) */
    int feed_keepalive_s;       /* comment line on an idle event stream */
    int feed_auth_failures;     /* failed authentications per peer ... */
    int feed_auth_failure_window_s; /* ... regained in this many seconds */
    int feed_auth_max_peers;    /* peers the throttle remembers */
    /* [http] */
    char http_listen[CONFIG_STR_MAX]; /* host:port; "" = off */
    /* [log]; --log-format and --log-level win over these */
    char log_format[8]; /* "plain" or "json" (log.h) */
    char log_level[8];  /* "debug", "info", "warn" or "error" */

    struct issuer *issuers;
    size_t n_issuers;
    struct route_table *routes; /* prefix -> index into issuers */

    struct kafka_prop kafka_props[CONFIG_MAX_KAFKA_PROPS];
    size_t n_kafka_props;
};

/* Fills every field with its default; routes gets an empty table.
 * Returns 0, or -1 on allocation failure. */
int config_init(struct config *c);

/* Loads path on top of the current values. Returns 0, or -1 with
 * "path:line: message" in errbuf (the first error in the file). */
int config_load(struct config *c, const char *path, char *errbuf,
                size_t errlen);

/* Sets one key as if it stood in the file, e.g. ("redis", "address",
 * "127.0.0.1:6379"). Used for command-line overrides. Returns 0, or -1
 * with "section.name: message" in errbuf. */
int config_set(struct config *c, const char *section, const char *name,
               const char *value, char *errbuf, size_t errlen);

/* Cross-field checks after all overrides (brokers given, topics distinct,
 * ...). Also fills the topic of every issuer that sets none with
 * alert_topic_prefix + id (so call it after the last override, before
 * using issuer topics). The [feed] section's cross checks are the feed's
 * own (its module runs them). Returns 0, or -1 with a message. */
int config_check(const struct config *c, char *errbuf, size_t errlen);

/* The brokers to use: brokers_file's first line when brokers_file is set,
 * else brokers. Writes into buf. Returns 0, or -1 with a message. */
int config_brokers(const struct config *c, char *buf, size_t buflen,
                   char *errbuf, size_t errlen);

/* The issuer routed for a PAN prefix (digits), or NULL when unknown. */
const struct issuer *config_route(const struct config *c, const char *digits,
                                  size_t len);

/* Frees what config_init/config_load allocated. Safe on a zeroed struct. */
void config_free(struct config *c);

#endif
