/* cli_data.c - the data tools around Kafka: `cardwatch gen` (synthetic
 * cards and transactions to a file or a topic; a simulated history with
 * an injected breach and its truth), `send` (JSON-lines
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
#include "calendar.h"
#include "card.h"
#include "cli.h"
#include "cli_kafka.h"
#include "clock.h"
#include "config.h"
#include "gen.h"
#include "listcsv.h"
#include "route.h"
#include "sim.h"
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

/* Closes p (flushing it; the producer of command cmd). Returns 0, or -1
 * after printing how many messages were not delivered. */
static int close_producer(const char *cmd, struct cli_producer *p)
{
    long failed = cli_producer_close(p);
    if (failed != 0) {
        fprintf(stderr, "cardwatch %s: %ld message(s) not delivered\n", cmd,
                failed);
        return -1;
    }
    return 0;
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

/* gen's start: the configuration (co's overrides) into *c and its BIN
 * prefixes into *prefixes / *n (free_prefixes). Returns 0, or -1 after
 * printing why (*c may then be freed again: config_free is harmless). */
static int gen_config(const struct common *co, struct config *c,
                      char ***prefixes, size_t *n)
{
    if (cli_load_config(c, co, 0) != 0) {
        return -1;
    }
    int pr = collect_prefixes(c, prefixes, n);
    if (pr != 0) {
        fprintf(stderr, "cardwatch gen: %s\n",
                pr == -2 ? "out of memory"
                         : "the configuration has no issuer BIN prefixes");
        return -1;
    }
    return 0;
}

static void free_prefixes(char **list, size_t n)
{
    for (size_t i = 0; i < n; i++) {
        free(list[i]);
    }
    free(list);
}

static const char gen_help[] = WITH_COMMON_HELP(
    "usage: cardwatch gen cards --count N --out FILE.csv [--seed S]\n"
    "       cardwatch gen txns --count N [--exposed LIST.csv] "
    "[--exposed-share F]\n"
    "                 [--invalid-share F] [--start YYYY-MM-DD] "
    "[--days D] [--seed S]\n"
    "                 [--rate EVENTS_PER_S]\n"
    "                 (--output FILE [--format json|protobuf] | --topic T)\n"
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
    "protobuf to Kafka.\n"
    "\n"
    "       cardwatch gen history --count N --output FILE [--format "
    "json|protobuf]\n"
    "                 --frauds FRAUDS.csv [--truth TRUTH.json] "
    "[--start YYYY-MM-DD]\n"
    "                 [--days D] [--seed S] [--cards C] [--merchants M]\n"
    "                 [--breach-start YYYY-MM-DD] [--breach-days D] "
    "[--no-breach]\n"
    "                 [--fraud-share F] [--background-frauds N]\n"
    "\n"
    "'history' simulates N transactions in event-time order of --cards "
    "cards (20000)\nat --merchants merchants M000000.. (5000; five very "
    "popular ones take 25%)\nover --days days (365) from --start "
    "(2024-01-01), with a breach: one web\nshop's payment page skims "
    "every card used there card-not-present from\n--breach-start "
    "(--start + days/4) for --breach-days days (60). --fraud-share\n"
    "(0.5) of the skimmed cards are defrauded 14-60 days after their "
    "skim, and\n--background-frauds cards (1% of the cards) at random "
    "times, unlinked: 2-5\ncard-not-present transactions abroad at "
    "high-risk merchants F00000...\n--frauds gets the defrauded cards "
    "(pan,first_fraud in RFC 3339 UTC, by\nfirst_fraud; a fraud not "
    "started by the period's end is not listed),\n--truth the breached "
    "merchant, its window (first and last day, inclusive),\nthe counts "
    "and the popular merchants as one JSON object. --no-breach:\n"
    "background frauds only.\n");

/* gen's options: as given (NULL = not given), then checked. */
struct gen_args {
    struct common co;
    int cards_mode; /* 'cards', else 'txns' */
    const char *count_s, *seed_s, *share_s, *invalid_s, *days_s, *rate_s;
    const char *out_path, *exposed, *topic, *start, *format;
    long long count;
    uint64_t seed;
    double share, invalid, days, rate;
    int64_t start_ms;
    int proto; /* --format protobuf */
};

/* Parses gen's mode (argv[1]: cards or txns; history has its own
 * parser) and options into a. Returns
 * OPTS_GO, or the exit status (0 after --help; 2 after a usage error or
 * without a mode, with the help on stdout). */
static int gen_parse_opts(int argc, char **argv, struct gen_args *a)
{
    if (argc < 2 || strcmp(argv[1], "--help") == 0) {
        fputs(gen_help, stdout);
        return argc < 2 ? 2 : 0;
    }
    const char *what = argv[1];
    a->cards_mode = strcmp(what, "cards") == 0;
    if (!a->cards_mode && strcmp(what, "txns") != 0) {
        return cli_bad_usage("gen", "say 'cards', 'txns' or 'history'");
    }
    const struct optdef defs[] = {
        {"count", required_argument, &a->count_s, NULL, 0},
        {"out", required_argument, &a->out_path, NULL, 0},
        {"output", required_argument, &a->out_path, NULL, 0},
        {"seed", required_argument, &a->seed_s, NULL, 0},
        {"exposed", required_argument, &a->exposed, NULL, 0},
        {"exposed-share", required_argument, &a->share_s, NULL, 0},
        {"invalid-share", required_argument, &a->invalid_s, NULL, 0},
        {"start", required_argument, &a->start, NULL, 0},
        {"days", required_argument, &a->days_s, NULL, 0},
        {"rate", required_argument, &a->rate_s, NULL, 0},
        {"format", required_argument, &a->format, NULL, 0},
        {"topic", required_argument, &a->topic, NULL, 0},
    };
    return cli_parse_opts(argc, argv, 2, "gen", gen_help, &a->co, defs,
                          N_ELEMS(defs));
}

/* Checks the values of gen's options and fills in a's numbers. Returns
 * OPTS_GO, or 2 after a usage error. */
static int gen_check_opts(struct gen_args *a)
{
    if (a->count_s == NULL ||
        cli_parse_whole(a->count_s, 1, LLONG_MAX, &a->count) != 0) {
        return cli_bad_usage("gen", "--count N is required (a whole number "
                                    "> 0)");
    }
    if (a->seed_s != NULL) {
        char *end = NULL;
        errno = 0;
        a->seed = strtoull(a->seed_s, &end, 10);
        if (a->seed_s[0] < '0' || a->seed_s[0] > '9' || *end != '\0' ||
            errno != 0) {
            return cli_bad_usage("gen", "--seed needs a whole number >= 0");
        }
    }
    if (a->share_s != NULL &&
        cli_parse_real(a->share_s, 0, 1, &a->share) != 0) {
        return cli_bad_usage("gen", "--exposed-share is a number from 0 to 1");
    }
    if (a->invalid_s != NULL &&
        cli_parse_real(a->invalid_s, 0, 1, &a->invalid) != 0) {
        return cli_bad_usage("gen", "--invalid-share is a number from 0 to 1");
    }
    if (a->days_s != NULL && cli_parse_real(a->days_s, 0, 1e6, &a->days) != 0) {
        return cli_bad_usage("gen", "--days is a number of days >= 0");
    }
    if (a->rate_s != NULL && cli_parse_real(a->rate_s, 0, 1e9, &a->rate) != 0) {
        return cli_bad_usage("gen", "--rate is events per second >= 0 (0: no "
                                    "pacing)");
    }
    if (breach_date_parse(a->start, 0, &a->start_ms) != 0) {
        return cli_bad_usage("gen", "--start: give a date YYYY-MM-DD");
    }
    a->proto = strcmp(a->format, "protobuf") == 0;
    if (!a->proto && strcmp(a->format, "json") != 0) {
        return cli_bad_usage("gen", "--format is json or protobuf");
    }
    if (a->cards_mode && a->out_path == NULL) {
        return cli_bad_usage("gen", "--out FILE.csv is required");
    }
    if (!a->cards_mode && (a->out_path == NULL) == (a->topic == NULL)) {
        return cli_bad_usage("gen", "give one of --output FILE or --topic T");
    }
    return OPTS_GO;
}

/* gen cards: count distinct cards to out as CSV. Returns 0, or 1 after
 * printing the error. */
static int gen_write_cards(struct gen *g, long long count, FILE *out)
{
    /* Distinct cards only: no more than the prefixes hold. */
    uint64_t room = gen_cards_left(g);
    if ((uint64_t)count > room) {
        fprintf(stderr, "cardwatch gen: --count %lld is more than the "
                        "%" PRIu64 " distinct cards under the "
                        "configured BIN prefixes\n", count, room);
        return 1;
    }
    fprintf(out, "pan,expiry\n");
    for (long long i = 0; i < count; i++) {
        struct gen_card gc;
        if (gen_card(g, &gc) != 0) {
            return 1; /* cannot happen: counted above */
        }
        fprintf(out, "%s,%s\n", gc.pan, gc.expiry);
    }
    return 0;
}

/* Writes t to out as length-delimited protobuf (proto: varint length,
 * then the Transaction) or as a JSON line. Write errors show at fclose.
 * Returns 0, or -1 after printing the error (no memory). */
static int gen_write_txn(const struct txn *t, int proto, FILE *out)
{
    if (proto) {
        uint8_t *buf = NULL;
        size_t len = 0;
        if (txn_encode_protobuf(t, &buf, &len) != 0) {
            fprintf(stderr, "cardwatch gen: out of memory\n");
            return -1;
        }
        uint8_t vb[VARINT_MAX_BYTES];
        fwrite(vb, 1, varint_write(len, vb), out);
        fwrite(buf, 1, len, out);
        free(buf);
    } else {
        char line[1024];
        int n = txn_encode_json(t, line, sizeof(line));
        if (n > 0) {
            fwrite(line, 1, (size_t)n, out);
            fputc('\n', out);
        }
    }
    return 0;
}

/* Makes the next transaction of g and writes it: to topic through prod
 * when there is a producer, else to out as length-delimited protobuf
 * (proto) or a JSON line. Returns 0, or -1 after printing the error. */
static int gen_emit(struct gen *g, int proto, struct cli_producer *prod,
                    const char *topic, FILE *out)
{
    struct txn t;
    char key[16];
    int bad;
    int rc = 0;
    gen_next(g, &t, key, &bad);
    if (prod != NULL) {
        uint8_t *buf = NULL;
        size_t len = 0;
        if (txn_encode_protobuf(&t, &buf, &len) != 0) {
            fprintf(stderr, "cardwatch gen: out of memory\n");
            rc = -1;
        } else {
            rc = cli_produce(prod, topic, key, strlen(key), buf, len,
                             t.event_time_ms);
        }
        free(buf);
    } else {
        rc = gen_write_txn(&t, proto, out);
    }
    memset(&t, 0, sizeof(t));
    return rc;
}

/* Sleeps until the n-th event is due at rate events per second from t0
 * (clock_mono_ns). A tool, not the loop: pacing by sleeping is fine
 * here. */
static void gen_pace(uint64_t t0, long long n, double rate)
{
    double el = (double)(clock_mono_ns() - t0) / 1e9;
    double due = (double)n / rate;
    if (due > el) {
        struct timespec d = {(time_t)(due - el),
                             (long)((due - el - (double)(time_t)(due - el)) *
                                    1e9)};
        nanosleep(&d, NULL);
    }
}

/* gen txns: a->count transactions of g to a->topic (publishing protobuf)
 * or to out, paced at a->rate; SIGINT stops early. Prints how many were
 * written. Returns 0, or 1 after printing the error. */
static int gen_write_txns(const struct gen_args *a, const struct config *c,
                          struct gen *g, FILE *out)
{
    struct cli_producer *prod = NULL;
    char brokers[CONFIG_STR_MAX], err[512];
    if (a->topic != NULL) {
        if (cli_kafka_target(c, a->topic, "--topic", brokers, sizeof(brokers),
                             err, sizeof(err)) != 0 ||
            (prod = cli_producer_new(c, brokers, err, sizeof(err))) == NULL) {
            fprintf(stderr, "cardwatch gen: %s\n", err);
            return 1;
        }
    }
    signal(SIGINT, on_sigint);
    uint64_t t0 = clock_mono_ns();
    long long i;
    for (i = 0; i < a->count && !interrupted; i++) {
        if (gen_emit(g, a->proto, prod, a->topic, out) != 0) {
            if (prod != NULL) {
                cli_producer_close(prod);
            }
            return 1;
        }
        if (a->rate > 0) {
            gen_pace(t0, i + 1, a->rate);
        }
    }
    if (prod != NULL && close_producer("gen", prod) != 0) {
        return 1;
    }
    fprintf(stderr, "cardwatch gen: %lld transactions written\n", i);
    return 0;
}

static int gen_history(int argc, char **argv);

int cmd_gen(int argc, char **argv)
{
    if (argc >= 2 && strcmp(argv[1], "history") == 0) {
        return gen_history(argc, argv);
    }
    struct gen_args a = {.start = "2024-08-01",
                         .format = "json",
                         .count = -1,
                         .seed = 1,
                         .share = 0.01,
                         .days = 30};
    int st = gen_parse_opts(argc, argv, &a);
    if (st == OPTS_GO) {
        st = gen_check_opts(&a);
    }
    if (st != OPTS_GO) {
        return st;
    }
    struct config c;
    int rc = 1;
    char **prefixes = NULL;
    size_t n_prefixes = 0;
    struct gen_card *ex = NULL;
    size_t n_ex = 0;
    struct gen *g = NULL;
    FILE *out = NULL;
    if (gen_config(&a.co, &c, &prefixes, &n_prefixes) != 0) {
        goto out;
    }
    if (a.exposed != NULL && read_cards(a.exposed, &ex, &n_ex) != 0) {
        goto out;
    }
    struct gen_opts go = {
        .seed = a.seed,
        .prefixes = (const char *const *)prefixes,
        .n_prefixes = n_prefixes,
        .exposed = ex,
        .n_exposed = n_ex,
        .exposed_share = a.share,
        .invalid_share = a.invalid,
        .start_ms = a.start_ms,
        .step_ms = (int64_t)(a.days * 86400000.0 / (double)a.count),
        .clean_pool = a.cards_mode ? 1 : 0,
    };
    g = gen_new(&go);
    if (g == NULL) {
        fprintf(stderr, "cardwatch gen: bad BIN prefixes or out of memory\n");
        goto out;
    }
    if (a.out_path != NULL) {
        out = strcmp(a.out_path, "-") == 0 ? stdout : fopen(a.out_path, "w");
        if (out == NULL) {
            fprintf(stderr, "cardwatch gen: %s: %s\n", a.out_path,
                    strerror(errno));
            goto out;
        }
    }
    rc = a.cards_mode ? gen_write_cards(g, a.count, out)
                      : gen_write_txns(&a, &c, g, out);
out:
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

/* ---- gen history: a simulated history with a breach (sim.h) ---- */

/* history's options: as given (NULL = not given), then checked into o. */
struct hist_args {
    struct common co;
    const char *count_s, *out_path, *format, *frauds_path, *truth_path;
    const char *start, *days_s, *seed_s, *cards_s, *merchants_s;
    const char *bstart_s, *bdays_s, *share_s, *background_s;
    int no_breach;
    int proto;
    struct sim_opts o;
};

static int hist_parse_opts(int argc, char **argv, struct hist_args *a)
{
    const struct optdef defs[] = {
        {"count", required_argument, &a->count_s, NULL, 0},
        {"output", required_argument, &a->out_path, NULL, 0},
        {"format", required_argument, &a->format, NULL, 0},
        {"frauds", required_argument, &a->frauds_path, NULL, 0},
        {"truth", required_argument, &a->truth_path, NULL, 0},
        {"start", required_argument, &a->start, NULL, 0},
        {"days", required_argument, &a->days_s, NULL, 0},
        {"seed", required_argument, &a->seed_s, NULL, 0},
        {"cards", required_argument, &a->cards_s, NULL, 0},
        {"merchants", required_argument, &a->merchants_s, NULL, 0},
        {"breach-start", required_argument, &a->bstart_s, NULL, 0},
        {"breach-days", required_argument, &a->bdays_s, NULL, 0},
        {"no-breach", no_argument, NULL, &a->no_breach, 1},
        {"fraud-share", required_argument, &a->share_s, NULL, 0},
        {"background-frauds", required_argument, &a->background_s, NULL, 0},
    };
    int st = cli_parse_opts(argc, argv, 2, "gen", gen_help, &a->co, defs,
                            N_ELEMS(defs));
    return st == OPTS_GO ? cli_no_operands("gen", argc, argv) : st;
}

/* Parses the whole number s (when given) in [lo, hi] into *out. Returns
 * 0, or 2 after a usage error naming opt with what it needs. */
static int hist_whole(const char *s, const char *opt, long long lo,
                      long long hi, uint32_t *out)
{
    long long v;
    if (s == NULL) {
        return 0;
    }
    if (cli_parse_whole(s, lo, hi, &v) != 0) {
        return cli_bad_usage("gen", "%s needs a whole number from %lld to "
                                    "%lld", opt, lo, hi);
    }
    *out = (uint32_t)v;
    return 0;
}

/* The sizes and shares of history (after the defaults of a->o). Returns
 * OPTS_GO, or 2 after a usage error. */
static int hist_check_numbers(struct hist_args *a)
{
    long long count;
    if (a->count_s == NULL ||
        cli_parse_whole(a->count_s, 1, 999999999999LL, &count) != 0) {
        return cli_bad_usage("gen", "--count N is required (a whole number "
                                    "from 1 to 999999999999)");
    }
    a->o.count = (uint64_t)count;
    if (a->seed_s != NULL) {
        char *end = NULL;
        errno = 0;
        a->o.seed = strtoull(a->seed_s, &end, 10);
        if (a->seed_s[0] < '0' || a->seed_s[0] > '9' || *end != '\0' ||
            errno != 0) {
            return cli_bad_usage("gen", "--seed needs a whole number >= 0");
        }
    }
    if (hist_whole(a->days_s, "--days", 1, SIM_MAX_DAYS, &a->o.days) ||
        hist_whole(a->cards_s, "--cards", 1, SIM_MAX_CARDS, &a->o.cards) ||
        hist_whole(a->merchants_s, "--merchants", 2 * SIM_POPULAR,
                   SIM_MAX_MERCHANTS, &a->o.merchants) ||
        hist_whole(a->bdays_s, "--breach-days", 1, SIM_MAX_DAYS,
                   &a->o.breach_days)) {
        return 2;
    }
    a->o.background_frauds = a->o.cards / 100;
    if (hist_whole(a->background_s, "--background-frauds", 0, a->o.cards,
                   &a->o.background_frauds)) {
        return 2;
    }
    if (a->share_s != NULL &&
        cli_parse_real(a->share_s, 0, 1, &a->o.fraud_share) != 0) {
        return cli_bad_usage("gen", "--fraud-share is a number from 0 to 1");
    }
    return OPTS_GO;
}

/* Checks history's options into a->o (dates, sizes, the breach window
 * inside the period, the files). Returns OPTS_GO, or 2 after a usage
 * error. */
static int hist_check_opts(struct hist_args *a)
{
    int st = hist_check_numbers(a);
    if (st != OPTS_GO) {
        return st;
    }
    if (breach_date_parse(a->start, 0, &a->o.start_ms) != 0 ||
        a->o.start_ms <= 0) {
        return cli_bad_usage("gen", "--start: give a date YYYY-MM-DD after "
                                    "1970-01-01");
    }
    a->o.breach = !a->no_breach;
    if (a->no_breach && (a->bstart_s != NULL || a->bdays_s != NULL)) {
        return cli_bad_usage("gen", "--no-breach goes without --breach-start "
                                    "and --breach-days");
    }
    if (a->bstart_s != NULL &&
        breach_date_parse(a->bstart_s, 0, &a->o.breach_start_ms) != 0) {
        return cli_bad_usage("gen", "--breach-start: give a date YYYY-MM-DD");
    }
    int64_t bstart = a->bstart_s != NULL
                         ? a->o.breach_start_ms
                         : a->o.start_ms +
                               (int64_t)(a->o.days / 4) * CALENDAR_MS_PER_DAY;
    if (a->o.breach &&
        (bstart < a->o.start_ms ||
         bstart + (int64_t)a->o.breach_days * CALENDAR_MS_PER_DAY >
             a->o.start_ms + (int64_t)a->o.days * CALENDAR_MS_PER_DAY)) {
        return cli_bad_usage("gen", "the breach window (--breach-start, "
                                    "--breach-days) is not inside the "
                                    "period (--start, --days)");
    }
    a->proto = strcmp(a->format, "protobuf") == 0;
    if (!a->proto && strcmp(a->format, "json") != 0) {
        return cli_bad_usage("gen", "--format is json or protobuf");
    }
    if (a->out_path == NULL || a->frauds_path == NULL) {
        return cli_bad_usage("gen", "history needs --output FILE and "
                                    "--frauds FRAUDS.csv");
    }
    return OPTS_GO;
}

/* ms since the epoch (>= 0) as RFC 3339 UTC with milliseconds
 * ("2024-03-05T12:34:56.789Z") into buf. */
static void fmt_rfc3339_ms(int64_t ms, char buf[32])
{
    int64_t days = ms / CALENDAR_MS_PER_DAY, rem = ms % CALENDAR_MS_PER_DAY;
    int64_t y;
    unsigned m, d;
    calendar_civil_from_days(days, &y, &m, &d);
    snprintf(buf, 32, "%04" PRId64 "-%02u-%02uT%02u:%02u:%02u.%03uZ", y, m, d,
             (unsigned)(rem / 3600000), (unsigned)(rem / 60000 % 60),
             (unsigned)(rem / 1000 % 60), (unsigned)(rem % 1000));
}

/* FRAUDS.csv: "pan,first_fraud", one row per listed fraud in first-fraud
 * order (synthetic cards only). */
static void hist_write_frauds(const struct sim *s, FILE *f)
{
    const struct sim_fraud *fr;
    size_t n = sim_frauds(s, &fr);
    fputs("pan,first_fraud\n", f);
    for (size_t i = 0; i < n; i++) {
        char when[32];
        fmt_rfc3339_ms(fr[i].first_fraud_ms, when);
        fprintf(f, "%s,%s\n", sim_card(s, fr[i].card)->pan, when);
    }
}

/* TRUTH.json: what the history hides, as one JSON object and a newline
 * (ids and numbers only: nothing to escape). */
static void hist_write_truth(const struct sim *s, const struct hist_args *a,
                             FILE *f)
{
    struct sim_truth t;
    sim_truth(s, &t);
    if (t.breach) {
        char ws[16], we[16];
        breach_date_format(t.window_start_ms, ws, sizeof(ws));
        breach_date_format(t.window_end_ms, we, sizeof(we));
        fprintf(f, "{\"merchant\": \"%s\", \"window_start\": \"%s\", "
                   "\"window_end\": \"%s\", \"window_start_ms\": %" PRId64
                   ", \"window_end_ms\": %" PRId64 ", ",
                t.merchant, ws, we, t.window_start_ms, t.window_end_ms);
    } else {
        fputs("{\"merchant\": null, \"window_start\": null, \"window_end\": "
              "null, \"window_start_ms\": null, \"window_end_ms\": null, ",
              f);
    }
    fprintf(f, "\"skimmed\": %zu, \"defrauded\": %zu, "
               "\"background_frauds\": %zu, \"first_linked_fraud_ms\": ",
            t.skimmed, t.defrauded, t.background);
    if (t.first_linked_fraud_ms >= 0) {
        fprintf(f, "%" PRId64, t.first_linked_fraud_ms);
    } else {
        fputs("null", f);
    }
    fputs(", \"popular_merchants\": [", f);
    for (size_t r = 0; r < SIM_POPULAR; r++) {
        fprintf(f, "%s\"%s\"", r ? ", " : "", t.popular[r]);
    }
    fprintf(f, "], \"transactions\": %" PRIu64 ", \"seed\": %" PRIu64
               ", \"period_start_ms\": %" PRId64 ", \"period_end_ms\": %"
               PRId64 ", \"cards\": %u, \"merchants\": %u}\n",
            t.transactions, a->o.seed, a->o.start_ms,
            a->o.start_ms + (int64_t)a->o.days * CALENDAR_MS_PER_DAY - 1,
            a->o.cards, a->o.merchants);
}

/* Opens path for writing ("-" is stdout when dash_ok); NULL after
 * printing the error. */
static FILE *hist_open(const char *path, int dash_ok)
{
    if (dash_ok && strcmp(path, "-") == 0) {
        return stdout;
    }
    FILE *f = fopen(path, "w");
    if (f == NULL) {
        fprintf(stderr, "cardwatch gen: %s: %s\n", path, strerror(errno));
    }
    return f;
}

/* Closes f (unless stdout or NULL); returns 0, or -1 after printing the
 * write error. */
static int hist_close(FILE *f, const char *path)
{
    if (f == NULL || f == stdout) {
        return f == stdout && fflush(f) != 0 ? -1 : 0;
    }
    if (fclose(f) != 0) {
        fprintf(stderr, "cardwatch gen: %s: write failed: %s\n", path,
                strerror(errno));
        return -1;
    }
    return 0;
}

/* Makes the history of s into out, then the frauds and the truth, and
 * says what it made on stderr (no card data). Returns 0, or 1 after
 * printing the error. */
static int hist_run(struct sim *s, const struct hist_args *a, FILE *out,
                    FILE *frauds, FILE *truth)
{
    struct txn t;
    int rc = 0;
    while (rc == 0 && sim_next(s, &t, NULL) != SIM_DONE) {
        rc = gen_write_txn(&t, a->proto, out);
    }
    memset(&t, 0, sizeof(t));
    if (rc != 0) {
        return 1;
    }
    hist_write_frauds(s, frauds);
    if (truth != NULL) {
        hist_write_truth(s, a, truth);
    }
    struct sim_truth tr;
    sim_truth(s, &tr);
    if (tr.breach) {
        char ws[16], we[16];
        breach_date_format(tr.window_start_ms, ws, sizeof(ws));
        breach_date_format(tr.window_end_ms, we, sizeof(we));
        fprintf(stderr, "cardwatch gen: %" PRIu64 " transactions written; "
                        "breach at %s from %s to %s: %zu cards skimmed, "
                        "%zu defrauded; %zu background frauds\n",
                tr.transactions, tr.merchant, ws, we, tr.skimmed,
                tr.defrauded, tr.background);
    } else {
        fprintf(stderr, "cardwatch gen: %" PRIu64 " transactions written; "
                        "no breach; %zu background frauds\n",
                tr.transactions, tr.background);
    }
    return 0;
}

/* gen history (argv[1] == "history"): see gen_help. */
static int gen_history(int argc, char **argv)
{
    struct hist_args a = {.start = "2024-01-01", .format = "json"};
    sim_opts_init(&a.o);
    int st = hist_parse_opts(argc, argv, &a);
    if (st == OPTS_GO) {
        st = hist_check_opts(&a);
    }
    if (st != OPTS_GO) {
        return st;
    }
    struct config c;
    int rc = 1;
    char **prefixes = NULL;
    size_t n_prefixes = 0;
    struct sim *s = NULL;
    FILE *out = NULL, *frauds = NULL, *truth = NULL;
    char err[256];
    if (gen_config(&a.co, &c, &prefixes, &n_prefixes) != 0) {
        goto done;
    }
    a.o.prefixes = (const char *const *)prefixes;
    a.o.n_prefixes = n_prefixes;
    if ((s = sim_new(&a.o, err, sizeof(err))) == NULL) {
        fprintf(stderr, "cardwatch gen: %s\n", err);
        goto done;
    }
    /* every file opened before the work: a wrong path costs nothing */
    if ((out = hist_open(a.out_path, 1)) == NULL ||
        (frauds = hist_open(a.frauds_path, 0)) == NULL ||
        (a.truth_path != NULL &&
         (truth = hist_open(a.truth_path, 0)) == NULL)) {
        goto done;
    }
    rc = hist_run(s, &a, out, frauds, truth);
done:
    /* all three closed, whichever fails */
    if ((hist_close(out, a.out_path) | hist_close(frauds, a.frauds_path) |
         hist_close(truth, a.truth_path)) != 0) {
        rc = 1;
    }
    sim_destroy(s);
    free_prefixes(prefixes, n_prefixes);
    config_free(&c);
    return rc;
}

static const char send_help[] = WITH_COMMON_HELP(
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

/* What send publishes with. */
struct send_job {
    const char *input;          /* the input's name, for messages */
    const char *topic;
    struct card_key *ckey;      /* --key card; NULL: keyed by txn_id */
    struct cli_producer *prod;
};

/* Publishes t, read from line lineno of the input, as protobuf with the
 * event time as timestamp, keyed by its txn_id or, with j->ckey, by
 * "<key id>:<fingerprint>" of its card. Returns 0, or non-zero after the
 * error was printed or logged. */
static int send_txn(const struct send_job *j, const struct txn *t,
                    unsigned long lineno)
{
    uint8_t *buf = NULL;
    size_t blen = 0;
    /* the key: txn_id, or "<key id>:<fingerprint>" of the card */
    char kbuf[CARD_KEY_ID_MAX + 1 + CARD_FP_SIZE];
    const char *key = t->txn_id;
    int e = 0;
    if (j->ckey != NULL && t->pan_len > 0) {
        char fp[CARD_FP_SIZE];
        e = card_fingerprint(j->ckey, t->pan, t->pan_len, fp);
        if (e == 0) {
            snprintf(kbuf, sizeof(kbuf), "%s:%s", card_key_id(j->ckey), fp);
            key = kbuf;
        } else {
            fprintf(stderr, "cardwatch send: %s:%lu: fingerprint "
                            "failed (OpenSSL)\n", j->input, lineno);
        }
    }
    if (e == 0) {
        e = txn_encode_protobuf(t, &buf, &blen);
    }
    if (e == 0) {
        e = cli_produce(j->prod, j->topic, key, strlen(key), buf, blen,
                        t->event_time_ms > 0 ? t->event_time_ms : 0);
    }
    free(buf);
    return e;
}

int cmd_send(int argc, char **argv)
{
    struct common co = {0};
    const char *input = NULL, *topic = NULL, *key_by = "txn";
    const struct optdef defs[] = {
        {"input", required_argument, &input, NULL, 0},
        {"topic", required_argument, &topic, NULL, 0},
        {"key", required_argument, &key_by, NULL, 0},
    };
    int st = cli_parse_opts(argc, argv, 1, "send", send_help, &co, defs,
                            N_ELEMS(defs));
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
    struct send_job j = {.input = input};
    char *line = NULL;
    size_t cap = 0;
    if (cli_load_config(&c, &co, 0) != 0) {
        goto out;
    }
    j.topic = topic != NULL ? topic : c.transactions_topic;
    /* the input first: a wrong path is named before Kafka is waited for */
    f = strcmp(input, "-") == 0 ? stdin : fopen(input, "r");
    if (f == NULL) {
        fprintf(stderr, "cardwatch send: %s: %s\n", input, strerror(errno));
        goto out;
    }
    char brokers[CONFIG_STR_MAX], err[512];
    if (by_card &&
        (j.ckey = card_key_load(c.key_file, err, sizeof(err))) == NULL) {
        fprintf(stderr, "cardwatch send: --key card: %s\n", err);
        goto out;
    }
    if (cli_kafka_target(&c, j.topic, "--topic", brokers, sizeof(brokers),
                         err, sizeof(err)) != 0 ||
        (j.prod = cli_producer_new(&c, brokers, err, sizeof(err))) == NULL) {
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
        int e = send_txn(&j, &t, lineno);
        memset(&t, 0, sizeof(t)); /* the PAN goes no further */
        if (e != 0) {
            goto out;
        }
        sent++;
    }
    st = close_producer("send", j.prod);
    j.prod = NULL;
    if (st != 0) {
        goto out;
    }
    fprintf(stderr, "cardwatch send: %lu transactions sent to %s, %lu "
                    "skipped\n", sent, j.topic, skipped);
    rc = 0;
out:
    free(line);
    if (f != NULL && f != stdin) {
        fclose(f);
    }
    if (j.prod != NULL) {
        cli_producer_close(j.prod);
    }
    card_key_destroy(j.ckey);
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
    int st = cli_parse_opts(argc, argv, 1, "tail", help, &co, defs,
                            N_ELEMS(defs));
    if (st != OPTS_GO) {
        return st;
    }
    if (optind != argc - 1) {
        return cli_bad_usage("tail", "give exactly one topic");
    }
    struct config c;
    if (cli_load_config(&c, &co, 0) != 0) {
        return 1;
    }
    char brokers[CONFIG_STR_MAX], err[512];
    if (cli_kafka_target(&c, argv[optind], "the tailed topic", brokers,
                         sizeof(brokers), err, sizeof(err)) != 0) {
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
