/* cli_data.c - the data tools around Kafka: `cardwatch gen` (synthetic
 * cards and transactions to a file or a topic), `send` (JSON-lines
 * transactions to a topic as protobuf) and `tail` (alerts of a topic as
 * JSON lines). Blocking tools, never on the processor's event loop. */
#include <errno.h>
#include <inttypes.h>
#include <limits.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "alert.h"
#include "breach.h"
#include "card.h"
#include "cli.h"
#include "cli_kafka.h"
#include "clock.h"
#include "config.h"
#include "gen.h"
#include "kafka_check.h"
#include "listcsv.h"
#include "route.h"
#include "text.h"
#include "txn.h"
#include "varint.h"

struct card_list {
    struct gen_card *cards;
    size_t n, cap;
};

static int add_card(void *arg, const struct list_row *row)
{
    struct card_list *l = arg;
    if (l->n == l->cap) {
        size_t ncap = l->cap ? l->cap * 2 : 1024;
        struct gen_card *nc = realloc(l->cards, ncap * sizeof(*nc));
        if (nc == NULL) {
            fprintf(stderr, "cardwatch gen: out of memory\n");
            return -1;
        }
        l->cards = nc;
        l->cap = ncap;
    }
    struct gen_card *gc = &l->cards[l->n];
    memset(gc, 0, sizeof(*gc));
    memcpy(gc->pan, row->pan, row->len);
    snprintf(gc->expiry, sizeof(gc->expiry), "%s",
             row->expiry[0] != '\0' ? row->expiry : "2812");
    gc->index = (uint32_t)l->n;
    gc->exposed = 1;
    l->n++;
    return 0;
}

/* Reads the cards (and expiry) of a breach list as `cardwatch load` does
 * (listcsv.h; rejected rows are reported and skipped). */
static int read_cards(const char *path, struct gen_card **out, size_t *n)
{
    struct card_list l = {0};
    struct list_stats st;
    if (list_read(path, 0, add_card, &l, &st) != 0) {
        if (l.cards != NULL) {
            memset(l.cards, 0, l.n * sizeof(*l.cards));
        }
        free(l.cards);
        return -1;
    }
    *out = l.cards;
    *n = l.n;
    return 0;
}

static volatile sig_atomic_t interrupted;

static void on_sigint(int sig)
{
    (void)sig;
    interrupted = 1;
}

/* The configured BIN prefixes as strings: 0, -1 when there are none, -2
 * when out of memory (*out is then NULL). */
static int collect_prefixes(const struct config *c, char ***out, size_t *n)
{
    size_t total = route_count(c->routes);
    *out = NULL;
    *n = 0;
    if (total == 0) {
        return -1;
    }
    char **list = calloc(total, sizeof(*list));
    if (list == NULL) {
        return -2;
    }
    size_t k = route_prefixes(c->routes, list, total);
    if (k < total) {
        for (size_t i = 0; i < k; i++) {
            free(list[i]);
        }
        free(list);
        return -2;
    }
    *out = list;
    *n = k;
    return 0;
}

static void free_prefixes(char **list, size_t n)
{
    for (size_t i = 0; i < n; i++) {
        free(list[i]);
    }
    free(list);
}

int cmd_gen(int argc, char **argv)
{
    static const char help[] = WITH_COMMON_HELP(
        "usage: cardwatch gen cards --count N --out FILE.csv [--seed S]\n"
        "       cardwatch gen txns --count N [--exposed LIST.csv] "
        "[--exposed-share F]\n"
        "                 [--invalid-share F] [--start YYYY-MM-DD] "
        "[--days D] [--seed S]\n"
        "                 [--rate EVENTS_PER_S] (--output FILE [--format "
        "json|protobuf] | --topic T)\n"
        "\n"
        "Synthetic data only: cards are Luhn-valid numbers under the "
        "configured issuers'\nBIN prefixes. 'cards' makes distinct cards, "
        "at most as many as the prefixes\nhold (10^9 16-digit cards under "
        "a 6-digit prefix, 10^7 under an 8-digit one,\n10x fewer for a "
        "34/37 prefix: 15 digits); the same --seed makes the same\n"
        "cards, and the clean cards of 'txns' are never those of 'cards' "
        "with its seed.\n'txns' puts --exposed-share "
        "(default 0.01) of the traffic on the\nexposed cards, with injected "
        "misuse (card testing, card-not-present bursts,\nhigh-risk merchant "
        "categories). --format protobuf writes length-delimited\n"
        "messages (varint length + Transaction). --topic publishes "
        "protobuf to Kafka.\n");
    if (argc < 2 || strcmp(argv[1], "--help") == 0) {
        fputs(help, stdout);
        return argc < 2 ? 2 : 0;
    }
    const char *what = argv[1];
    int cards_mode = strcmp(what, "cards") == 0;
    if (!cards_mode && strcmp(what, "txns") != 0) {
        return cli_bad_usage("gen", "say 'cards' or 'txns'");
    }
    struct common co = {0};
    const char *count_s = NULL, *seed_s = NULL, *share_s = NULL;
    const char *invalid_s = NULL, *days_s = NULL, *rate_s = NULL;
    const char *out_path = NULL, *exposed = NULL, *topic = NULL;
    const char *start = "2024-08-01", *format = "json";
    const struct optdef defs[] = {
        {"count", required_argument, &count_s, NULL, 0},
        {"out", required_argument, &out_path, NULL, 0},
        {"output", required_argument, &out_path, NULL, 0},
        {"seed", required_argument, &seed_s, NULL, 0},
        {"exposed", required_argument, &exposed, NULL, 0},
        {"exposed-share", required_argument, &share_s, NULL, 0},
        {"invalid-share", required_argument, &invalid_s, NULL, 0},
        {"start", required_argument, &start, NULL, 0},
        {"days", required_argument, &days_s, NULL, 0},
        {"rate", required_argument, &rate_s, NULL, 0},
        {"format", required_argument, &format, NULL, 0},
        {"topic", required_argument, &topic, NULL, 0},
    };
    int st = cli_parse_opts(argc, argv, 2, "gen", help, &co, defs, N_ELEMS(defs));
    if (st != OPTS_GO) {
        return st;
    }
    long long count = -1;
    uint64_t seed = 1;
    double share = 0.01, invalid = 0, days = 30, rate = 0;
    if (count_s == NULL || cli_parse_whole(count_s, 1, LLONG_MAX, &count) != 0) {
        return cli_bad_usage("gen", "--count N is required (a whole number > 0)");
    }
    if (seed_s != NULL) {
        char *end = NULL;
        errno = 0;
        seed = strtoull(seed_s, &end, 10);
        if (seed_s[0] < '0' || seed_s[0] > '9' || *end != '\0' || errno != 0) {
            return cli_bad_usage("gen", "--seed needs a whole number >= 0");
        }
    }
    if (share_s != NULL && cli_parse_real(share_s, 0, 1, &share) != 0) {
        return cli_bad_usage("gen", "--exposed-share is a number from 0 to 1");
    }
    if (invalid_s != NULL && cli_parse_real(invalid_s, 0, 1, &invalid) != 0) {
        return cli_bad_usage("gen", "--invalid-share is a number from 0 to 1");
    }
    if (days_s != NULL && cli_parse_real(days_s, 0, 1e6, &days) != 0) {
        return cli_bad_usage("gen", "--days is a number of days >= 0");
    }
    if (rate_s != NULL && cli_parse_real(rate_s, 0, 1e9, &rate) != 0) {
        return cli_bad_usage("gen", "--rate is events per second >= 0 (0: no "
                                "pacing)");
    }
    int64_t start_ms;
    if (breach_date_parse(start, 0, &start_ms) != 0) {
        return cli_bad_usage("gen", "--start: give a date YYYY-MM-DD");
    }
    int proto = strcmp(format, "protobuf") == 0;
    if (!proto && strcmp(format, "json") != 0) {
        return cli_bad_usage("gen", "--format is json or protobuf");
    }
    if (cards_mode && out_path == NULL) {
        return cli_bad_usage("gen", "--out FILE.csv is required");
    }
    if (!cards_mode && (out_path == NULL) == (topic == NULL)) {
        return cli_bad_usage("gen", "give one of --output FILE or --topic T");
    }
    struct config c;
    int rc = 1;
    char **prefixes = NULL;
    size_t n_prefixes = 0;
    struct gen_card *ex = NULL;
    size_t n_ex = 0;
    struct gen *g = NULL;
    FILE *out = NULL;
    struct cli_producer *prod = NULL;
    if (cli_load_config(&c, &co, 0) != 0) {
        goto out;
    }
    int pr = collect_prefixes(&c, &prefixes, &n_prefixes);
    if (pr != 0) {
        fprintf(stderr, "cardwatch gen: %s\n",
                pr == -2 ? "out of memory"
                         : "the configuration has no issuer BIN prefixes");
        goto out;
    }
    if (exposed != NULL && read_cards(exposed, &ex, &n_ex) != 0) {
        goto out;
    }
    struct gen_opts go = {
        .seed = seed,
        .prefixes = (const char *const *)prefixes,
        .n_prefixes = n_prefixes,
        .exposed = ex,
        .n_exposed = n_ex,
        .exposed_share = share,
        .invalid_share = invalid,
        .start_ms = start_ms,
        .step_ms = (int64_t)(days * 86400000.0 / (double)count),
        .clean_pool = cards_mode ? 1 : 0,
    };
    g = gen_new(&go);
    if (g == NULL) {
        fprintf(stderr, "cardwatch gen: bad BIN prefixes or out of memory\n");
        goto out;
    }
    if (out_path != NULL) {
        out = strcmp(out_path, "-") == 0 ? stdout : fopen(out_path, "w");
        if (out == NULL) {
            fprintf(stderr, "cardwatch gen: %s: %s\n", out_path,
                    strerror(errno));
            goto out;
        }
    }
    if (cards_mode) {
        /* Distinct cards only: no more than the prefixes hold. */
        uint64_t room = gen_cards_left(g);
        if ((uint64_t)count > room) {
            fprintf(stderr, "cardwatch gen: --count %lld is more than the "
                            "%" PRIu64 " distinct cards under the "
                            "configured BIN prefixes\n", count, room);
            goto out;
        }
        fprintf(out, "pan,expiry\n");
        for (long long i = 0; i < count; i++) {
            struct gen_card gc;
            if (gen_card(g, &gc) != 0) {
                goto out; /* cannot happen: counted above */
            }
            fprintf(out, "%s,%s\n", gc.pan, gc.expiry);
        }
        rc = 0;
        goto out;
    }
    char brokers[CONFIG_STR_MAX], err[512];
    if (topic != NULL) {
        if (config_brokers(&c, brokers, sizeof(brokers), err, sizeof(err)) !=
                0 ||
            kafka_check_config(&c, brokers, 0, "", topic, "--topic", err,
                               sizeof(err)) != KCHECK_OK ||
            (prod = cli_producer_new(&c, brokers, err, sizeof(err))) == NULL) {
            fprintf(stderr, "cardwatch gen: %s\n", err);
            goto out;
        }
    }
    signal(SIGINT, on_sigint);
    uint64_t t0 = clock_mono_ns();
    long long i;
    for (i = 0; i < count && !interrupted; i++) {
        struct txn t;
        char key[16];
        int bad;
        gen_next(g, &t, key, &bad);
        if (proto || prod != NULL) {
            uint8_t *buf = NULL;
            size_t len = 0;
            if (txn_encode_protobuf(&t, &buf, &len) != 0) {
                fprintf(stderr, "cardwatch gen: out of memory\n");
                goto out;
            }
            if (prod != NULL) {
                if (cli_produce(prod, topic, key, strlen(key), buf, len,
                                t.event_time_ms) != 0) {
                    free(buf);
                    goto out;
                }
            } else {
                /* Length-delimited: varint length, then the message. */
                uint8_t vb[VARINT_MAX_BYTES];
                fwrite(vb, 1, varint_write(len, vb), out);
                fwrite(buf, 1, len, out);
            }
            free(buf);
        } else {
            char line[1024];
            int n = txn_encode_json(&t, line, sizeof(line));
            if (n > 0) {
                fwrite(line, 1, (size_t)n, out);
                fputc('\n', out);
            }
        }
        memset(&t, 0, sizeof(t));
        if (rate > 0) {
            /* A tool, not the loop: pacing by sleeping is fine here. */
            double el = (double)(clock_mono_ns() - t0) / 1e9;
            double due = (double)(i + 1) / rate;
            if (due > el) {
                struct timespec d = {(time_t)(due - el),
                                     (long)((due - el - (double)(time_t)(due -
                                                                   el)) *
                                            1e9)};
                nanosleep(&d, NULL);
            }
        }
    }
    if (prod != NULL) {
        long failed = cli_producer_close(prod);
        prod = NULL;
        if (failed != 0) {
            fprintf(stderr, "cardwatch gen: %ld message(s) not delivered\n",
                    failed);
            goto out;
        }
    }
    fprintf(stderr, "cardwatch gen: %lld transactions written\n", i);
    rc = 0;
out:
    if (prod != NULL) {
        cli_producer_close(prod);
    }
    if (out != NULL && out != stdout) {
        if (fclose(out) != 0) {
            fprintf(stderr, "cardwatch gen: write failed: %s\n",
                    strerror(errno));
            rc = 1;
        }
    }
    gen_destroy(g);
    if (ex != NULL) {
        memset(ex, 0, n_ex * sizeof(*ex));
        free(ex);
    }
    free_prefixes(prefixes, n_prefixes);
    config_free(&c);
    return rc;
}

int cmd_send(int argc, char **argv)
{
    static const char help[] = WITH_COMMON_HELP(
        "usage: cardwatch send --input TXNS.jsonl [--topic T] "
        "[--key txn|card]\n\nPublishes "
        "JSON-lines transactions (the field names of "
        "cardwatch.v1.Transaction)\nto Kafka as protobuf, with the event "
        "time as message timestamp.\nLines are not "
        "validated, so invalid test data reaches the processor as it is;\n"
        "a line that is not a JSON object is reported by line number and "
        "skipped.\nThe topic defaults to [kafka] transactions_topic.\n\n"
        "  --key txn    message key = txn_id (default): transactions spread "
        "over\n               the partitions\n"
        "  --key card   message key = the card's keyed fingerprint "
        "\"<key id>:<fp>\"\n               ([card] key_file; never the "
        "card number): all of a card's\n               transactions go to "
        "one partition, in input order; a line\n               without a "
        "card number is keyed by its txn_id\n");
    struct common co = {0};
    const char *input = NULL, *topic = NULL, *key_by = "txn";
    const struct optdef defs[] = {
        {"input", required_argument, &input, NULL, 0},
        {"topic", required_argument, &topic, NULL, 0},
        {"key", required_argument, &key_by, NULL, 0},
    };
    int st = cli_parse_opts(argc, argv, 1, "send", help, &co, defs, N_ELEMS(defs));
    if (st != OPTS_GO) {
        return st;
    }
    if (input == NULL) {
        return cli_bad_usage("send", "--input FILE is required");
    }
    int by_card = strcmp(key_by, "card") == 0;
    if (!by_card && strcmp(key_by, "txn") != 0) {
        return cli_bad_usage("send", "--key: use txn or card");
    }
    struct config c;
    int rc = 1;
    FILE *f = NULL;
    struct cli_producer *prod = NULL;
    struct card_key *ckey = NULL;
    char *line = NULL;
    size_t cap = 0;
    if (cli_load_config(&c, &co, 0) != 0) {
        goto out;
    }
    if (topic == NULL) {
        topic = c.transactions_topic;
    }
    /* the input first: a wrong path is named before Kafka is waited for */
    f = strcmp(input, "-") == 0 ? stdin : fopen(input, "r");
    if (f == NULL) {
        fprintf(stderr, "cardwatch send: %s: %s\n", input, strerror(errno));
        goto out;
    }
    char brokers[CONFIG_STR_MAX], err[512];
    if (by_card &&
        (ckey = card_key_load(c.key_file, err, sizeof(err))) == NULL) {
        fprintf(stderr, "cardwatch send: --key card: %s\n", err);
        goto out;
    }
    if (config_brokers(&c, brokers, sizeof(brokers), err, sizeof(err)) != 0 ||
        kafka_check_config(&c, brokers, 0, "", topic, "--topic", err,
                           sizeof(err)) != KCHECK_OK ||
        (prod = cli_producer_new(&c, brokers, err, sizeof(err))) == NULL) {
        fprintf(stderr, "cardwatch send: %s\n", err);
        goto out;
    }
    unsigned long lineno = 0, sent = 0, skipped = 0;
    ssize_t len;
    while ((len = text_next_line(f, &line, &cap, &lineno)) >= 0) {
        struct txn t;
        if (txn_parse_json(line, (size_t)len, &t) != TXN_OK) {
            fprintf(stderr, "%s:%lu: not a transaction JSON object; "
                            "skipped\n", input, lineno);
            skipped++;
            continue;
        }
        uint8_t *buf = NULL;
        size_t blen = 0;
        /* the key: txn_id, or "<key id>:<fingerprint>" of the card */
        char kbuf[CARD_KEY_ID_MAX + 1 + CARD_FP_SIZE];
        const char *key = t.txn_id;
        int e = 0;
        if (by_card && t.pan_len > 0) {
            char fp[CARD_FP_SIZE];
            e = card_fingerprint(ckey, t.pan, t.pan_len, fp);
            if (e == 0) {
                snprintf(kbuf, sizeof(kbuf), "%s:%s", card_key_id(ckey), fp);
                key = kbuf;
            } else {
                fprintf(stderr, "cardwatch send: %s:%lu: fingerprint "
                                "failed (OpenSSL)\n", input, lineno);
            }
        }
        if (e == 0) {
            e = txn_encode_protobuf(&t, &buf, &blen);
        }
        if (e == 0) {
            e = cli_produce(prod, topic, key, strlen(key), buf, blen,
                            t.event_time_ms > 0 ? t.event_time_ms : 0);
        }
        memset(&t, 0, sizeof(t)); /* the PAN goes no further */
        free(buf);
        if (e != 0) {
            goto out;
        }
        sent++;
    }
    long failed = cli_producer_close(prod);
    prod = NULL;
    if (failed != 0) {
        fprintf(stderr, "cardwatch send: %ld message(s) not delivered\n",
                failed);
        goto out;
    }
    fprintf(stderr, "cardwatch send: %lu transactions sent to %s, %lu "
                    "skipped\n", sent, topic, skipped);
    rc = 0;
out:
    free(line);
    if (f != NULL && f != stdin) {
        fclose(f);
    }
    if (prod != NULL) {
        cli_producer_close(prod);
    }
    card_key_destroy(ckey);
    config_free(&c);
    return rc;
}

static void print_alert(void *arg, int32_t partition, int64_t offset,
                        const void *key, size_t keylen, const void *val,
                        size_t vallen)
{
    (void)key;
    (void)keylen;
    const char *topic = arg;
    struct alert a;
    char buf[8192];
    if (alert_decode_protobuf(val, vallen, &a) != 0 ||
        alert_encode_json(&a, buf, sizeof(buf)) < 0) {
        fprintf(stderr, "%s/%d/%" PRId64 ": not an alert; skipped\n", topic,
                partition, offset);
        return;
    }
    fputs(buf, stdout);
    fputc('\n', stdout);
    fflush(stdout); /* a pipe or file sees each alert as it comes */
}

int cmd_tail(int argc, char **argv)
{
    static const char help[] = WITH_COMMON_HELP(
        "usage: cardwatch tail TOPIC [--exit-at-end] [--from-end]\n\nPrints "
        "the alerts of an alert topic as JSON lines, from the beginning\n(or "
        "only new ones with --from-end). Reads every partition; commits "
        "nothing.\n");
    struct common co = {0};
    int exit_at_end = 0, from_end = 0;
    const struct optdef defs[] = {
        {"exit-at-end", no_argument, NULL, &exit_at_end, 1},
        {"from-end", no_argument, NULL, &from_end, 1},
    };
    int st = cli_parse_opts(argc, argv, 1, "tail", help, &co, defs, N_ELEMS(defs));
    if (st != OPTS_GO) {
        return st;
    }
    if (optind != argc - 1) {
        return cli_bad_usage("tail", "give exactly one topic");
    }
    struct config c;
    if (cli_load_config(&c, &co, 0) != 0) {
        config_free(&c);
        return 1;
    }
    char brokers[CONFIG_STR_MAX], err[512];
    if (config_brokers(&c, brokers, sizeof(brokers), err, sizeof(err)) != 0 ||
        kafka_check_config(&c, brokers, 0, "", argv[optind],
                           "the tailed topic", err, sizeof(err)) != KCHECK_OK) {
        fprintf(stderr, "cardwatch tail: %s\n", err);
        config_free(&c);
        return 1;
    }
    signal(SIGINT, on_sigint);
    signal(SIGTERM, on_sigint);
    int rc = cli_consume(&c, brokers, argv[optind], from_end, exit_at_end,
                         (volatile int *)&interrupted, print_alert,
                         argv[optind]);
    fflush(stdout);
    config_free(&c);
    return rc == 0 ? 0 : 1;
}
