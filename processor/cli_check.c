/* cli_check.c - `cardwatch check`: the offline check of a configuration
 * and the files it names (Kafka settings, Redis connection settings,
 * fingerprint key, rule file, feed TLS), one section each. Nothing
 * connects. */
#include <stdio.h>

#include <event2/event.h>

#include "card.h"
#include "cli.h"
#include "config.h"
#include "feed_config.h"
#include "kconf.h"
#include "log.h"
#include "redis_cfg.h"
#include "rules.h"

static const char check_help[] = WITH_COMMON_HELP(
    "usage: cardwatch check [OPTIONS]\n"
    "\n"
    "Checks a configuration without connecting to Kafka or Redis: every "
    "key and the\ncross checks `run` makes at start, the fingerprint "
    "key file (present, private,\nwell formed), the Redis connection "
    "settings (password file, TLS files,\nsentinel list), the rule file "
    "([rules] path; its warnings are shown) and,\nwith [feed] tls_cert "
    "and tls_key, that they load and match. Prints what it\nfound.\n"
    "Exit status 0 when all of it is usable, 1 otherwise (each problem "
    "on stderr).\n");

static void print_rule_warning(void *arg, const char *msg)
{
    (void)arg;
    printf("             warning: %s\n", msg);
}

/* Each check_* below checks one part of the configuration offline,
 * prints a line or two about it on stdout and each problem on stderr, and
 * returns 1 when that part is not usable, else 0. */

/* The configuration's path and Kafka: the brokers (or their file), the
 * group and the transactions topic, then the client settings. */
static int check_kafka(const struct config *c)
{
    char err[1024];
    int bad = 0;
    char brokers[CONFIG_STR_MAX];
    if (config_brokers(c, brokers, sizeof(brokers), err, sizeof(err)) != 0) {
        log_report(LOG_ERROR, "check", "%s", err);
        bad = 1;
        brokers[0] = '\0';
    }
    printf("  config     %s\n", c->path);
    printf("  kafka      brokers %s%s%s, group %s, transactions %s\n",
           brokers[0] ? brokers : "(unreadable)",
           c->brokers_file[0] ? " from " : "", c->brokers_file, c->group,
           c->transactions_topic);
    /* every librdkafka property and the SASL password file, as the
     * clients will be built (offline: nothing connects) */
    const char *const scopes[] = {"consumer", "producer"};
    char proto[64] = "plaintext";
    for (size_t i = 0; i < 2; i++) {
        rd_kafka_conf_t *kc = kconf_build(c, brokers[0] ? brokers : "-",
                                          scopes[i], NULL, err, sizeof(err));
        if (kc == NULL) {
            log_report(LOG_ERROR, "check", "%s", err);
            printf("  kafka      %s settings: NOT USABLE\n", scopes[i]);
            bad = 1;
            continue;
        }
        size_t pl = sizeof(proto);
        rd_kafka_conf_get(kc, "security.protocol", proto, &pl);
        rd_kafka_conf_destroy(kc);
    }
    printf("  kafka      security.protocol %s%s\n", proto,
           c->kafka_sasl_password_file[0] ? ", SASL password from file" : "");
    return bad;
}

/* The Redis connection as the commands build it (password file, TLS
 * files, sentinel list); it is not run, so nothing connects. */
static int check_redis(const struct config *c)
{
    char err[1024];
    int bad = 0;
    char rdesc[CONFIG_STR_MAX + 300];
    redis_cfg_describe(c, rdesc, sizeof(rdesc));
    struct event_base *rbase = event_base_new();
    struct redis_cfg_use ru = {.name = "redis"};
    struct rconn *rconn =
        rbase ? redis_cfg_connect(rbase, c, &ru, err, sizeof(err)) : NULL;
    if (rconn == NULL) {
        log_report(LOG_ERROR, "check", "%s", rbase ? err : "out of memory");
        printf("  redis      %s: NOT USABLE\n", rdesc);
        bad = 1;
    } else {
        printf("  redis      %s, prefix %s%s%s%s\n", rdesc, c->redis_prefix,
               c->redis_password_file[0] ? ", AUTH as " : "",
               c->redis_password_file[0]
                   ? (c->redis_username[0] ? c->redis_username : "default")
                   : "",
               c->redis_password_file[0] ? " (password from file)" : "");
    }
    rconn_destroy(rconn);
    if (rbase != NULL) {
        event_base_free(rbase);
    }
    return bad;
}

/* The fingerprint key file: present, private, well formed. */
static int check_key(const struct config *c)
{
    char err[1024];
    int bad = 0;
    struct card_key *key = card_key_load(c->key_file, err, sizeof(err));
    if (key == NULL) {
        log_report(LOG_ERROR, "check", "%s", err);
        printf("  key        %s: NOT USABLE\n", c->key_file);
        bad = 1;
    } else {
        printf("  key        %s (key id %s)\n", c->key_file, card_key_id(key));
        card_key_destroy(key);
    }
    return bad;
}

/* The rule file ([rules] path; its warnings are shown) or the built-in
 * rules. */
static int check_rules(const struct config *c)
{
    char err[1024];
    int bad = 0;
    if (c->rules_path[0] == '\0') {
        struct ruleset *rs = rules_builtin();
        if (rs == NULL) {
            log_report(LOG_ERROR, "check", "out of memory");
            printf("  rules      built-in: NOT USABLE\n");
            bad = 1;
        } else {
            printf("  rules      built-in %s\n", rules_version(rs));
            rules_destroy(rs);
        }
    } else {
        struct ruleset *rs = rules_load(c->rules_path, err, sizeof(err));
        if (rs == NULL) {
            log_report(LOG_ERROR, "check", "%s", err);
            printf("  rules      %s: NOT USABLE\n", c->rules_path);
            bad = 1;
        } else {
            size_t n = rules_count(rs);
            printf("  rules      %s (%zu rule%s)\n", rules_version(rs), n,
                   n == 1 ? "" : "s");
            rules_warnings(rs, print_rule_warning, NULL);
            rules_destroy(rs);
        }
    }
    return bad;
}

/* The issuers (how many have feed tokens) and the feed's address; with
 * [feed] tls_cert and tls_key, that they load and match. */
static int check_issuers_feed(const struct config *c)
{
    char err[1024];
    int bad = 0;
    size_t with_tokens = 0;
    for (size_t i = 0; i < c->n_issuers; i++) {
        with_tokens += c->issuers[i].token_sha256[0] != '\0';
    }
    printf("  issuers    %zu (%zu with feed tokens)\n", c->n_issuers,
           with_tokens);
    if (c->feed_listen[0] == '\0') {
        printf("  feed       off\n");
    } else if (c->feed_tls_cert[0] == '\0') {
        printf("  feed       http://%s\n", c->feed_listen);
    } else {
        SSL_CTX *ctx = feed_tls_context(c->feed_tls_cert, c->feed_tls_key, err,
                                        sizeof(err));
        if (ctx == NULL) {
            log_report(LOG_ERROR, "check", "%s", err);
            printf("  feed       https://%s: TLS NOT USABLE\n", c->feed_listen);
            bad = 1;
        } else {
            printf("  feed       https://%s\n", c->feed_listen);
            SSL_CTX_free(ctx);
        }
    }
    return bad;
}

int cmd_check(int argc, char **argv)
{
    struct common co = {0};
    int st = cli_parse_opts(argc, argv, 1, "check", check_help, &co, NULL, 0);
    if (st != OPTS_GO) {
        return st;
    }
    st = cli_no_operands("check", argc, argv);
    if (st != OPTS_GO) {
        return st;
    }
    struct config c;
    if (cli_load_config(&c, &co, 1) != 0) {
        return 1;
    }
    int bad = check_kafka(&c);
    bad |= check_redis(&c);
    bad |= check_key(&c);
    bad |= check_rules(&c);
    bad |= check_issuers_feed(&c);
    printf("  http       %s\n", c.http_listen[0] ? c.http_listen : "off");
    printf("  log        %s lines, level %s\n",
           co.log_format ? co.log_format : c.log_format,
           co.log_level ? co.log_level : c.log_level);
    printf("%s\n", bad ? "NOT USABLE (see the errors above)" : "OK");
    config_free(&c);
    return bad;
}
