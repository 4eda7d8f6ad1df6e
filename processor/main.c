/* main.c - cardwatch's command line: one function per subcommand; the
 * work lives in the modules. */
#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <inttypes.h>
#include <limits.h>
#include <math.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <sys/stat.h>
#include <unistd.h>

#include <event2/event.h>

#include "alert.h"
#include "app_feed.h"
#include "app_replay.h"
#include "app_run.h"
#include "breach.h"
#include "card.h"
#include "cli_kafka.h"
#include "clock.h"
#include "config.h"
#include "feed_config.h"
#include "gen.h"
#include "harden.h"
#include "kafka_check.h"
#include "kconf.h"
#include "listcsv.h"
#include "loader.h"
#include "log.h"
#include "redis_cfg.h"
#include "rules.h"
#include "rules_tool.h"
#include "text.h"
#include "timeparse.h"
#include "txn.h"
#include "varint.h"

#define MOD "cardwatch"
#define VERSION "0.1.0"

static const char usage_main[] =
    "cardwatch " VERSION " - watch card transactions for misuse of cards "
    "exposed in a breach\n"
    "\n"
    "usage: cardwatch COMMAND [OPTIONS]\n"
    "\n"
    "commands:\n"
    "  run        consume transactions, look cards up, raise alerts "
    "(the service)\n"
    "  load       import a breach list (CSV) into Redis as keyed "
    "fingerprints\n"
    "  breaches   list the loaded breaches\n"
    "  unload     remove a loaded breach\n"
    "  replay     run the monitoring over stored history (a topic time "
    "range or a file)\n"
    "  gen        make synthetic cards or transactions (demo, tests, "
    "bench)\n"
    "  send       publish JSON-lines transactions to Kafka as protobuf\n"
    "  tail       print alerts from an alert topic as JSON lines\n"
    "  rules      check rule files, or try them offline on transactions\n"
    "  feed       serve the issuer alert feed (HTTP API, event stream, "
    "triage page)\n"
    "  token      make a feed bearer token and the hash to configure\n"
    "  check      check a configuration, key file, rule file and TLS files "
    "offline\n"
    "  version    print the version\n"
    "\n"
    "Every command takes --config FILE (default: $CARDWATCH_CONFIG or "
    "./cardwatch.ini)\n"
    "and --help. See deploy/cardwatch.ini for every setting.\n";

/* Options every command shares; flags override the file. */
struct common {
    const char *config_path;
    const char *brokers;
    const char *redis;
    const char *group;
    const char *log_level;
};

/* One command-specific option. With required_argument its argument is
 * stored through str (borrowed from argv); with no_argument val is
 * stored through flag. A row with neither is --help. */
struct optdef {
    const char *name;
    int has_arg; /* required_argument or no_argument */
    const char **str;
    int *flag;
    int val;
};

#define N_ELEMS(a) (sizeof(a) / sizeof((a)[0]))

/* What parse_opts returns when the command goes on. */
#define OPTS_GO (-1)

enum {
    N_COMMON_OPTS = 6, /* --config ... --help, ahead of a command's own */
    MAX_OWN_OPTS = 16,
    OPT_FIRST = 1000, /* getopt_long val of row 0; clear of characters */
};

#define COMMON_HELP                                                            \
    "  --config FILE      configuration (default $CARDWATCH_CONFIG or "        \
    "./cardwatch.ini)\n"                                                       \
    "  --brokers LIST     Kafka bootstrap servers, overrides [kafka] "         \
    "brokers\n"                                                                \
    "  --redis HOST:PORT  Redis, overrides [redis] address\n"                  \
    "  --group ID         consumer group, overrides [kafka] group\n"           \
    "  --log-level L      debug|info|warn|error (default info)\n"              \
    "  --help             this text\n"

/* A command's help text followed by the common options. */
#define WITH_COMMON_HELP(text) text "\ncommon options:\n" COMMON_HELP

/* Prints one line "cardwatch CMD: <fmt ...> (see cardwatch CMD --help)" to
 * stderr; returns 2, the exit status of a usage error. */
static int bad_usage(const char *cmd, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));

static int bad_usage(const char *cmd, const char *fmt, ...)
{
    va_list ap;
    fprintf(stderr, "cardwatch %s: ", cmd);
    va_start(ap, fmt);
    vfprintf(stderr, fmt, ap);
    va_end(ap);
    fprintf(stderr, " (see cardwatch %s --help)\n", cmd);
    return 2;
}

/* Parses a whole decimal number in [lo, hi] into *out. Returns 0 / -1. */
static int parse_whole(const char *s, long long lo, long long hi,
                       long long *out)
{
    char *end = NULL;
    errno = 0;
    long long v = strtoll(s, &end, 10);
    if (s[0] == '\0' || *end != '\0' || errno != 0 || v < lo || v > hi) {
        return -1;
    }
    *out = v;
    return 0;
}

/* Parses a finite decimal number in [lo, hi] into *out. Returns 0 / -1. */
static int parse_real(const char *s, double lo, double hi, double *out)
{
    char *end = NULL;
    errno = 0;
    double v = strtod(s, &end);
    if (s[0] == '\0' || *end != '\0' || errno != 0 || !isfinite(v) ||
        v < lo || v > hi) {
        return -1;
    }
    *out = v;
    return 0;
}

/* Reports the option getopt_long refused (opt is '?' or ':'; the option
 * is argv[optind - 1]) as one line naming it; returns 2. */
static int bad_option(const char *cmd, int opt, char **argv,
                      const struct option *lo)
{
    const char *arg = argv[optind - 1];
    int len = (int)strcspn(arg, "=");
    if (opt == ':') {
        return bad_usage(cmd, "option '%s' needs a value", arg);
    }
    if (optopt >= OPT_FIRST) { /* a known option given "=value" */
        return bad_usage(cmd, "option '%.*s' takes no value", len, arg);
    }
    if (optopt > 0) { /* a short option: optind may not have moved */
        return bad_usage(cmd, "unknown option '-%c'", optopt);
    }
    /* an abbreviation of options that store to different places */
    int first_val = -1, ambiguous = 0;
    for (size_t i = 0; strncmp(arg, "--", 2) == 0 && lo[i].name != NULL;
         i++) {
        if (strncmp(lo[i].name, arg + 2, (size_t)len - 2) == 0) {
            ambiguous |= first_val >= 0 && lo[i].val != first_val;
            first_val = first_val >= 0 ? first_val : lo[i].val;
        }
    }
    return bad_usage(cmd, "%s option '%.*s'",
                     ambiguous ? "ambiguous" : "unknown", len, arg);
}

/* Checks the common options' values before anything else happens: the
 * log level (and sets it), and the overrides of the file on a scratch
 * configuration. Returns OPTS_GO, or 2 after a usage error. */
static int check_common(const char *cmd, const struct common *co)
{
    if (co->log_level != NULL) {
        enum log_level lvl;
        if (log_level_parse(co->log_level, &lvl) != 0) {
            return bad_usage(cmd, "--log-level: use debug, info, warn or "
                                  "error");
        }
        log_set_level(lvl);
    }
    const struct {
        const char *flag, *sec, *name, *val;
    } ov[] = {{"--brokers", "kafka", "brokers", co->brokers},
              {"--redis", "redis", "address", co->redis},
              {"--group", "kafka", "group", co->group}};
    struct config c;
    char err[512];
    int st = OPTS_GO;
    if (config_init(&c) != 0) {
        fprintf(stderr, "cardwatch: out of memory\n");
        st = 1;
    }
    for (size_t i = 0; st == OPTS_GO && i < N_ELEMS(ov); i++) {
        if (ov[i].val != NULL && config_set(&c, ov[i].sec, ov[i].name,
                                            ov[i].val, err, sizeof(err)) != 0) {
            st = bad_usage(cmd, "%s: %s", ov[i].flag, err);
        }
    }
    config_free(&c);
    return st;
}

/* Parses the options of command cmd in argv[first..argc) with
 * getopt_long: the common options into co, the command's own through
 * defs[n_defs] (at most MAX_OWN_OPTS). Rows that store into the same
 * place share one getopt value, so an abbreviation of their names is not
 * ambiguous. --help prints help to stdout. An unknown or ambiguous
 * option, a missing or unwanted value, a bad --log-level or override of
 * the file is one line on stderr naming the option (bad_option,
 * check_common). Returns OPTS_GO when the command goes on, its operands
 * starting at argv[optind]; otherwise the exit status to return at once:
 * 0 after --help, 2 after a usage error. */
static int parse_opts(int argc, char **argv, int first, const char *cmd,
                      const char *help, struct common *co,
                      const struct optdef *defs, size_t n_defs)
{
    struct optdef all[N_COMMON_OPTS + MAX_OWN_OPTS] = {
        {"config", required_argument, &co->config_path, NULL, 0},
        {"brokers", required_argument, &co->brokers, NULL, 0},
        {"redis", required_argument, &co->redis, NULL, 0},
        {"group", required_argument, &co->group, NULL, 0},
        {"log-level", required_argument, &co->log_level, NULL, 0},
        {"help", no_argument, NULL, NULL, 0},
    };
    struct option lo[N_COMMON_OPTS + MAX_OWN_OPTS + 1];
    if (n_defs > MAX_OWN_OPTS) {
        fprintf(stderr, "cardwatch %s: too many options\n", cmd);
        return 1;
    }
    if (n_defs > 0) { /* unload has no options of its own: defs is NULL */
        memcpy(all + N_COMMON_OPTS, defs, n_defs * sizeof(*defs));
    }
    size_t n = N_COMMON_OPTS + n_defs;
    for (size_t i = 0; i < n; i++) {
        size_t same = 0;
        while (all[same].str != all[i].str || all[same].flag != all[i].flag ||
               all[same].val != all[i].val ||
               all[same].has_arg != all[i].has_arg) {
            same++;
        }
        lo[i] = (struct option){all[i].name, all[i].has_arg, NULL,
                                OPT_FIRST + (int)same};
    }
    lo[n] = (struct option){NULL, 0, NULL, 0};
    optind = first;
    opterr = 0; /* one line of our own instead of getopt's */
    int opt;
    while ((opt = getopt_long(argc, argv, ":", lo, NULL)) != -1) {
        if (opt < OPT_FIRST || (size_t)(opt - OPT_FIRST) >= n) {
            return bad_option(cmd, opt, argv, lo);
        }
        const struct optdef *d = &all[opt - OPT_FIRST];
        if (d->str != NULL) {
            *d->str = optarg;
        } else if (d->flag != NULL) {
            *d->flag = d->val;
        } else {
            fputs(help, stdout);
            return 0;
        }
    }
    return check_common(cmd, co);
}

/* Loads the configuration with the flag overrides; prints the error and
 * returns -1 on any problem. need_check: run config_check. */
static int load_config(struct config *c, const struct common *co,
                       int need_check)
{
    char err[1024];
    /* (--log-level and the overrides' values: checked by parse_opts) */
    if (config_init(c) != 0) {
        fprintf(stderr, "cardwatch: out of memory\n");
        return -1;
    }
    const char *path = co->config_path;
    if (path == NULL) {
        path = getenv("CARDWATCH_CONFIG");
    }
    if (path == NULL && access("cardwatch.ini", R_OK) == 0) {
        path = "cardwatch.ini";
    }
    if (path == NULL) {
        fprintf(stderr, "cardwatch: no configuration: give --config FILE "
                        "(a commented sample is deploy/cardwatch.ini)\n");
        return -1;
    }
    if (config_load(c, path, err, sizeof(err)) != 0) {
        fprintf(stderr, "cardwatch: %s\n", err);
        return -1;
    }
    struct {
        const char *sec, *name, *val;
    } ov[] = {{"kafka", "brokers", co->brokers},
              {"redis", "address", co->redis},
              {"kafka", "group", co->group}};
    for (size_t i = 0; i < sizeof(ov) / sizeof(ov[0]); i++) {
        if (ov[i].val != NULL &&
            config_set(c, ov[i].sec, ov[i].name, ov[i].val, err,
                       sizeof(err)) != 0) {
            fprintf(stderr, "cardwatch: %s\n", err);
            return -1;
        }
    }
    if (co->brokers != NULL) {
        /* An explicit --brokers wins over a brokers_file. */
        c->brokers_file[0] = '\0';
    }
    /* config_check() knows nothing of the feed, which checks its own
     * section (feed_config.h) */
    if (need_check && (config_check(c, err, sizeof(err)) != 0 ||
                       feed_config_check(c, err, sizeof(err)) != 0)) {
        fprintf(stderr, "cardwatch: %s: %s\n", path, err);
        return -1;
    }
    return 0;
}

/* ---- run ---- */

static int cmd_run(int argc, char **argv)
{
    static const char help[] = WITH_COMMON_HELP(
        "usage: cardwatch run [OPTIONS]\n"
        "\n"
        "Consumes the transactions topic as a member of the consumer group, "
        "looks every\ncard up in the exposed-card set in Redis, evaluates "
        "the rules and produces one\nalert per hit transaction to the "
        "issuer's topic. Offsets are committed only\nafter everything an "
        "event caused is acknowledged. SIGINT/SIGTERM drain and exit 0.\n"
        "\n"
        "options:\n"
        "  --exit-at-end      stop once every assigned partition is "
        "consumed (batch jobs,\n"
        "                     benchmarks)\n"
        "  --progress / --no-progress\n"
        "                     live progress line on stderr (default: when "
        "stderr is a\n"
        "                     terminal)\n"
        "  --drain-timeout S  seconds to wait for in-flight events at "
        "shutdown (default 30)\n"
        "  --summary-json F   write the end-of-run counts and rates to F as "
        "JSON\n"
        "\n"
        "HTTP (when [http] listen is set): /healthz, /readyz (503 while "
        "Redis is down),\n/metrics (Prometheus text).\n");
    struct common co = {0};
    struct run_opts ro = {0, isatty(2), 30, NULL};
    const char *drain = NULL;
    const struct optdef defs[] = {
        {"exit-at-end", no_argument, NULL, &ro.exit_at_end, 1},
        {"progress", no_argument, NULL, &ro.progress, 1},
        {"no-progress", no_argument, NULL, &ro.progress, 0},
        {"drain-timeout", required_argument, &drain, NULL, 0},
        {"summary-json", required_argument, &ro.summary_json, NULL, 0},
    };
    int st = parse_opts(argc, argv, 1, "run", help, &co, defs, N_ELEMS(defs));
    if (st != OPTS_GO) {
        return st;
    }
    long long secs;
    if (drain != NULL) {
        if (parse_whole(drain, 1, INT_MAX, &secs) != 0) {
            return bad_usage("run", "--drain-timeout needs whole seconds > 0");
        }
        ro.drain_timeout_s = (int)secs;
    }
    if (optind < argc) {
        return bad_usage("run", "unexpected argument '%s'", argv[optind]);
    }
    struct config c;
    if (load_config(&c, &co, 1) != 0) {
        config_free(&c);
        return 1;
    }
    int rc = app_run(&c, &ro);
    config_free(&c);
    return rc;
}

/* ---- replay ---- */

static int cmd_replay(int argc, char **argv)
{
    static const char help[] = WITH_COMMON_HELP(
        "usage: cardwatch replay --from TIME [--to TIME] [--topic T] "
        "[OUTPUT] [OPTIONS]\n"
        "       cardwatch replay --input FILE [--format jsonl|protobuf] "
        "[OUTPUT] [OPTIONS]\n"
        "\n"
        "Runs the monitoring pipeline over stored transactions: the same "
        "decoding, exposed-\ncard set, rules and alert ids as the live "
        "service, to find misuse that already\nhappened. It never changes "
        "the live service: no consumer group is joined or\ncommitted, "
        "window state lives in a namespace of its own (removed at the "
        "end), and\nalerts go to replay topics unless --deliver says "
        "otherwise.\n"
        "\n"
        "input (one of):\n"
        "  --from TIME        replay the transactions topic from TIME "
        "(YYYY-MM-DD, RFC 3339\n"
        "                     such as 2024-08-01T12:00:00Z, or epoch "
        "milliseconds), found per\n"
        "                     partition by message timestamp\n"
        "  --to TIME          ... up to (excluding) TIME (default: the "
        "end of each partition)\n"
        "  --topic T          topic to replay (default [kafka] "
        "transactions_topic)\n"
        "  --input FILE       JSON lines or length-delimited protobuf "
        "(varint length +\n"
        "                     Transaction), gzip or plain; '-' reads "
        "stdin\n"
        "  --format F         jsonl|protobuf (default: decided from the "
        "first byte)\n"
        "\n"
        "output:\n"
        "  --output FILE      alerts as JSON lines, in input order ('-' = "
        "stdout); without\n"
        "                     it alerts go to <issuer topic>[replay] "
        "topic_suffix (.replay)\n"
        "  --deliver          send alerts to the live issuer topics; an "
        "alert the live\n"
        "                     service (or an earlier replay) delivered is "
        "not sent again\n"
        "  --dead-letter FILE invalid events with position and reason, as "
        "JSON lines\n"
        "                     (default for topic input: [replay] "
        "dead_letter_topic)\n"
        "  --report FILE      the summary as JSON\n"
        "\n"
        "options:\n"
        "  --breach ID        only cards of this breach can alert\n"
        "  --rules FILE       replay with this rule file (default [rules] "
        "path)\n"
        "  --progress / --no-progress\n"
        "                     progress bar on stderr (default: when stderr "
        "is a terminal)\n"
        "  --force-search     find --from/--to offsets by searching "
        "message timestamps even\n"
        "                     when the broker's time index answers\n"
        "  --max-dead-letters N\n"
        "                     stop with an error past N dead letters "
        "(default [replay]\n"
        "                     max_dead_letters, 10000; 0 = no cap)\n"
        "  --max-dead-letter-percent P\n"
        "                     ... or once more than P% of the events are "
        "dead letters, after\n"
        "                     the first 1,000 (default [replay] "
        "max_dead_letter_percent, 50;\n"
        "                     100 = no cap)\n"
        "\n"
        "SIGINT/SIGTERM stop a replay at once: no output is kept, the "
        "summary is printed.\n"
        "Exit status: 0 when every event was processed and every output "
        "written; 1 on\nfailure (a partial --output file is removed); 2 "
        "on a usage error; 130 / 143\nwhen stopped by SIGINT / "
        "SIGTERM.\n");
    struct common co = {0};
    struct replay_opts ro = {0};
    const char *from = NULL, *to = NULL, *format = NULL;
    const char *max_dl = NULL, *max_dl_pct = NULL;
    ro.progress = isatty(2);
    const struct optdef defs[] = {
        {"from", required_argument, &from, NULL, 0},
        {"to", required_argument, &to, NULL, 0},
        {"topic", required_argument, &ro.topic, NULL, 0},
        {"input", required_argument, &ro.input, NULL, 0},
        {"format", required_argument, &format, NULL, 0},
        {"output", required_argument, &ro.output, NULL, 0},
        {"deliver", no_argument, NULL, &ro.deliver, 1},
        {"dead-letter", required_argument, &ro.dead_letter, NULL, 0},
        {"report", required_argument, &ro.report, NULL, 0},
        {"breach", required_argument, &ro.breach, NULL, 0},
        {"rules", required_argument, &ro.rules, NULL, 0},
        {"progress", no_argument, NULL, &ro.progress, 1},
        {"no-progress", no_argument, NULL, &ro.progress, 0},
        {"force-search", no_argument, NULL, &ro.force_search, 1},
        {"max-dead-letters", required_argument, &max_dl, NULL, 0},
        {"max-dead-letter-percent", required_argument, &max_dl_pct, NULL, 0},
    };
    int st =
        parse_opts(argc, argv, 1, "replay", help, &co, defs, N_ELEMS(defs));
    if (st != OPTS_GO) {
        return st;
    }
    if (optind < argc) {
        return bad_usage("replay", "unexpected argument '%s'", argv[optind]);
    }
    char err[256];
    if ((ro.input == NULL) == (from == NULL)) {
        return bad_usage("replay", "give one of --from TIME (the topic) or "
                                   "--input FILE");
    }
    if (ro.input != NULL && (to != NULL || ro.topic != NULL ||
                             ro.force_search)) {
        return bad_usage("replay", "--to, --topic and --force-search go "
                                   "with --from, not --input");
    }
    if (ro.input == NULL && format != NULL) {
        return bad_usage("replay", "--format goes with --input");
    }
    ro.to_ms = INT64_MAX;
    if (from != NULL && timeparse_ms(from, &ro.from_ms, err,
                                     sizeof(err)) != 0) {
        fprintf(stderr, "cardwatch replay: --from: %s\n", err);
        return 2;
    }
    if (to != NULL && timeparse_ms(to, &ro.to_ms, err, sizeof(err)) != 0) {
        fprintf(stderr, "cardwatch replay: --to: %s\n", err);
        return 2;
    }
    if (ro.to_ms <= ro.from_ms) {
        return bad_usage("replay", "--to must be later than --from");
    }
    ro.format = READER_AUTO;
    if (format != NULL) {
        if (strcmp(format, "jsonl") == 0 || strcmp(format, "json") == 0) {
            ro.format = READER_JSONL;
        } else if (strcmp(format, "protobuf") == 0) {
            ro.format = READER_PROTOBUF;
        } else {
            return bad_usage("replay", "--format is jsonl or protobuf");
        }
    }
    if (ro.deliver && ro.output != NULL) {
        return bad_usage("replay", "--deliver sends to the live topics; "
                                   "it does not go with --output");
    }
    if (ro.breach != NULL && !breach_id_valid(ro.breach)) {
        return bad_usage("replay", "--breach: not a breach id");
    }
    struct stat ost;
    if (ro.output != NULL && ro.dead_letter != NULL &&
        strcmp(ro.output, ro.dead_letter) == 0 &&
        !(stat(ro.output, &ost) == 0 && !S_ISREG(ost.st_mode))) {
        /* (the same device, such as /dev/null, is fine) */
        return bad_usage("replay", "--output and --dead-letter must be "
                                   "different files");
    }
    long long max_n = -1, max_pct = -1;
    if (max_dl != NULL && parse_whole(max_dl, 0, 2000000000, &max_n) != 0) {
        return bad_usage("replay", "--max-dead-letters needs a count from 0 "
                                   "(no cap) to 2000000000");
    }
    if (max_dl_pct != NULL &&
        parse_whole(max_dl_pct, 1, 100, &max_pct) != 0) {
        return bad_usage("replay", "--max-dead-letter-percent needs a "
                                   "percentage from 1 to 100 (no cap)");
    }
    struct config c;
    if (load_config(&c, &co, 1) != 0) {
        config_free(&c);
        return 1;
    }
    ro.max_dead_letters = max_n >= 0 ? max_n : c.replay_max_dead_letters;
    ro.max_dead_letter_percent =
        max_pct >= 0 ? (int)max_pct : c.replay_max_dead_letter_percent;
    int rc = app_replay(&c, &ro);
    config_free(&c);
    return rc;
}

/* ---- load / breaches / unload ---- */

/* Whether path opens for reading and is no directory (a FIFO does not
 * block the open). Returns 0, or -1 with errno set. */
static int readable_file(const char *path)
{
    struct stat st;
    int fd = open(path, O_RDONLY | O_NONBLOCK | O_CLOEXEC);
    if (fd < 0) {
        return -1;
    }
    int is_dir = fstat(fd, &st) == 0 && S_ISDIR(st.st_mode);
    close(fd);
    errno = is_dir ? EISDIR : 0;
    return is_dir ? -1 : 0;
}

static int cmd_load(int argc, char **argv)
{
    static const char help[] = WITH_COMMON_HELP(
        "usage: cardwatch load --breach ID --window-start YYYY-MM-DD "
        "--window-end YYYY-MM-DD\n"
        "                      --elements pan,expiry,cvv2,name,address "
        "[--description TEXT] LIST.csv\n"
        "\n"
        "Imports a breach list into Redis. LIST.csv (RFC 4180: CRLF, LF "
        "or CR row ends,\nquoted fields, an optional UTF-8 BOM) has a "
        "header naming a column 'pan' and\noptionally 'expiry' (YYMM), "
        "each once; '-' reads stdin. Only keyed fingerprints\n(HMAC-SHA256 "
        "under [card] key_file) and expiry tags are stored; never a PAN,\n"
        "expiry or CVV. Rows with an invalid PAN are reported by the line "
        "where they\nstart, with the PAN masked; the rest load. The summary "
        "gives the rows read, the\ncards loaded and the rows rejected. "
        "Loading the same list again changes nothing.\n"
        "\n"
        "elements: pan, expiry, cvv2, name, address, phone, email\n");
    struct common co = {0};
    struct load_opts lo = {0};
    lo.progress = isatty(2);
    const struct optdef defs[] = {
        {"breach", required_argument, &lo.breach_id, NULL, 0},
        {"window-start", required_argument, &lo.window_start, NULL, 0},
        {"window-end", required_argument, &lo.window_end, NULL, 0},
        {"elements", required_argument, &lo.elements, NULL, 0},
        {"description", required_argument, &lo.description, NULL, 0},
    };
    int st = parse_opts(argc, argv, 1, "load", help, &co, defs, N_ELEMS(defs));
    if (st != OPTS_GO) {
        return st;
    }
    if (optind != argc - 1) {
        return bad_usage("load", "give exactly one list file");
    }
    lo.list_path = argv[optind];
    struct config c;
    if (load_config(&c, &co, 0) != 0) {
        config_free(&c);
        return 1;
    }
    if (c.key_file[0] == '\0') {
        fprintf(stderr, "cardwatch load: [card] key_file is not set\n");
        config_free(&c);
        return 1;
    }
    /* A list that cannot be read stops the load before Redis is waited
     * for and before a staged breach is recorded there. */
    if (strcmp(lo.list_path, "-") != 0 && readable_file(lo.list_path) != 0) {
        fprintf(stderr, "cardwatch load: %s: %s\n", lo.list_path,
                strerror(errno));
        config_free(&c);
        return 1;
    }
    int rc = loader_load(&c, &lo);
    config_free(&c);
    return rc;
}

static int cmd_breaches(int argc, char **argv)
{
    static const char help[] = WITH_COMMON_HELP(
        "usage: cardwatch breaches [--json] [--confirm]\n\nLists the "
        "loaded breaches with window, card count, status (committed,\n"
        "LOADING: an interrupted or running load, not monitored yet;\n"
        "INCOMPLETE: fewer cards than the load recorded) and exposed "
        "elements.\n\n"
        "  --json     one JSON object per breach\n"
        "  --confirm  record what Redis holds now as the exposed-card set "
        "(new\n"
        "             marker, counts as they are): after a deliberate FLUSH, "
        "or\n"
        "             to run with no breach loaded. `cardwatch run` pauses "
        "intake\n"
        "             while the set is missing or incomplete.\n");
    struct common co = {0};
    int json = 0, confirm = 0;
    const struct optdef defs[] = {
        {"json", no_argument, NULL, &json, 1},
        {"confirm", no_argument, NULL, &confirm, 1},
    };
    int st =
        parse_opts(argc, argv, 1, "breaches", help, &co, defs, N_ELEMS(defs));
    if (st != OPTS_GO) {
        return st;
    }
    if (optind < argc) {
        return bad_usage("breaches", "unexpected argument '%s'", argv[optind]);
    }
    struct config c;
    if (load_config(&c, &co, 0) != 0) {
        config_free(&c);
        return 1;
    }
    int rc = confirm ? loader_confirm(&c) : loader_list(&c, json);
    config_free(&c);
    return rc;
}

/* ---- check ---- */

static void print_rule_warning(void *arg, const char *msg)
{
    (void)arg;
    printf("             warning: %s\n", msg);
}

static int cmd_check(int argc, char **argv)
{
    static const char help[] = WITH_COMMON_HELP(
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
    struct common co = {0};
    int st = parse_opts(argc, argv, 1, "check", help, &co, NULL, 0);
    if (st != OPTS_GO) {
        return st;
    }
    if (optind < argc) {
        return bad_usage("check", "unexpected argument '%s'", argv[optind]);
    }
    struct config c;
    char err[1024];
    if (load_config(&c, &co, 1) != 0) {
        config_free(&c);
        return 1;
    }
    int bad = 0;
    char brokers[CONFIG_STR_MAX];
    if (config_brokers(&c, brokers, sizeof(brokers), err, sizeof(err)) != 0) {
        fprintf(stderr, "cardwatch check: %s\n", err);
        bad = 1;
        brokers[0] = '\0';
    }
    printf("  config     %s\n", c.path);
    printf("  kafka      brokers %s%s%s, group %s, transactions %s\n",
           brokers[0] ? brokers : "(unreadable)",
           c.brokers_file[0] ? " from " : "", c.brokers_file, c.group,
           c.transactions_topic);
    /* every librdkafka property and the SASL password file, as the
     * clients will be built (offline: nothing connects) */
    const char *const scopes[] = {"consumer", "producer"};
    char proto[64] = "plaintext";
    for (size_t i = 0; i < 2; i++) {
        rd_kafka_conf_t *kc = kconf_build(&c, brokers[0] ? brokers : "-",
                                          scopes[i], NULL, err, sizeof(err));
        if (kc == NULL) {
            fprintf(stderr, "cardwatch check: %s\n", err);
            printf("  kafka      %s settings: NOT USABLE\n", scopes[i]);
            bad = 1;
            continue;
        }
        size_t pl = sizeof(proto);
        rd_kafka_conf_get(kc, "security.protocol", proto, &pl);
        rd_kafka_conf_destroy(kc);
    }
    printf("  kafka      security.protocol %s%s\n", proto,
           c.kafka_sasl_password_file[0] ? ", SASL password from file" : "");
    /* the Redis connection as the commands build it (password file, TLS
     * files, sentinel list); it is not run, so nothing connects */
    char rdesc[CONFIG_STR_MAX + 300];
    redis_cfg_describe(&c, rdesc, sizeof(rdesc));
    struct event_base *rbase = event_base_new();
    struct redis_cfg_use ru = {.name = "redis"};
    struct rconn *rconn =
        rbase ? redis_cfg_connect(rbase, &c, &ru, err, sizeof(err)) : NULL;
    if (rconn == NULL) {
        fprintf(stderr, "cardwatch check: %s\n",
                rbase ? err : "out of memory");
        printf("  redis      %s: NOT USABLE\n", rdesc);
        bad = 1;
    } else {
        printf("  redis      %s, prefix %s%s%s%s\n", rdesc, c.redis_prefix,
               c.redis_password_file[0] ? ", AUTH as " : "",
               c.redis_password_file[0]
                   ? (c.redis_username[0] ? c.redis_username : "default")
                   : "",
               c.redis_password_file[0] ? " (password from file)" : "");
    }
    rconn_destroy(rconn);
    if (rbase != NULL) {
        event_base_free(rbase);
    }
    struct card_key *key = card_key_load(c.key_file, err, sizeof(err));
    if (key == NULL) {
        fprintf(stderr, "cardwatch check: %s\n", err);
        printf("  key        %s: NOT USABLE\n", c.key_file);
        bad = 1;
    } else {
        printf("  key        %s (key id %s)\n", c.key_file, card_key_id(key));
        card_key_destroy(key);
    }
    if (c.rules_path[0] == '\0') {
        struct ruleset *rs = rules_builtin();
        if (rs == NULL) {
            fprintf(stderr, "cardwatch check: out of memory\n");
            printf("  rules      built-in: NOT USABLE\n");
            bad = 1;
        } else {
            printf("  rules      built-in %s\n", rules_version(rs));
            rules_destroy(rs);
        }
    } else {
        struct ruleset *rs = rules_load(c.rules_path, err, sizeof(err));
        if (rs == NULL) {
            fprintf(stderr, "cardwatch check: %s\n", err);
            printf("  rules      %s: NOT USABLE\n", c.rules_path);
            bad = 1;
        } else {
            size_t n = rules_count(rs);
            printf("  rules      %s (%zu rule%s)\n", rules_version(rs), n,
                   n == 1 ? "" : "s");
            rules_warnings(rs, print_rule_warning, NULL);
            rules_destroy(rs);
        }
    }
    size_t with_tokens = 0;
    for (size_t i = 0; i < c.n_issuers; i++) {
        with_tokens += c.issuers[i].token_sha256[0] != '\0';
    }
    printf("  issuers    %zu (%zu with feed tokens)\n", c.n_issuers,
           with_tokens);
    if (c.feed_listen[0] == '\0') {
        printf("  feed       off\n");
    } else if (c.feed_tls_cert[0] == '\0') {
        printf("  feed       http://%s\n", c.feed_listen);
    } else {
        SSL_CTX *ctx = feed_tls_context(c.feed_tls_cert, c.feed_tls_key, err,
                                        sizeof(err));
        if (ctx == NULL) {
            fprintf(stderr, "cardwatch check: %s\n", err);
            printf("  feed       https://%s: TLS NOT USABLE\n", c.feed_listen);
            bad = 1;
        } else {
            printf("  feed       https://%s\n", c.feed_listen);
            SSL_CTX_free(ctx);
        }
    }
    printf("  http       %s\n", c.http_listen[0] ? c.http_listen : "off");
    printf("%s\n", bad ? "NOT USABLE (see the errors above)" : "OK");
    config_free(&c);
    return bad;
}

static int cmd_unload(int argc, char **argv)
{
    static const char help[] = WITH_COMMON_HELP(
        "usage: cardwatch unload BREACH_ID\n\nRemoves a breach and its card "
        "records. Cards also listed by another\nbreach stay exposed through "
        "it.\n");
    struct common co = {0};
    int st = parse_opts(argc, argv, 1, "unload", help, &co, NULL, 0);
    if (st != OPTS_GO) {
        return st;
    }
    if (optind != argc - 1) {
        return bad_usage("unload", "give exactly one breach id");
    }
    struct config c;
    if (load_config(&c, &co, 0) != 0) {
        config_free(&c);
        return 1;
    }
    int rc = loader_unload(&c, argv[optind], isatty(2));
    config_free(&c);
    return rc;
}

/* ---- gen ---- */

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

static int cmd_gen(int argc, char **argv)
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
        return bad_usage("gen", "say 'cards' or 'txns'");
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
    int st = parse_opts(argc, argv, 2, "gen", help, &co, defs, N_ELEMS(defs));
    if (st != OPTS_GO) {
        return st;
    }
    long long count = -1;
    uint64_t seed = 1;
    double share = 0.01, invalid = 0, days = 30, rate = 0;
    if (count_s == NULL || parse_whole(count_s, 1, LLONG_MAX, &count) != 0) {
        return bad_usage("gen", "--count N is required (a whole number > 0)");
    }
    if (seed_s != NULL) {
        char *end = NULL;
        errno = 0;
        seed = strtoull(seed_s, &end, 10);
        if (seed_s[0] < '0' || seed_s[0] > '9' || *end != '\0' || errno != 0) {
            return bad_usage("gen", "--seed needs a whole number >= 0");
        }
    }
    if (share_s != NULL && parse_real(share_s, 0, 1, &share) != 0) {
        return bad_usage("gen", "--exposed-share is a number from 0 to 1");
    }
    if (invalid_s != NULL && parse_real(invalid_s, 0, 1, &invalid) != 0) {
        return bad_usage("gen", "--invalid-share is a number from 0 to 1");
    }
    if (days_s != NULL && parse_real(days_s, 0, 1e6, &days) != 0) {
        return bad_usage("gen", "--days is a number of days >= 0");
    }
    if (rate_s != NULL && parse_real(rate_s, 0, 1e9, &rate) != 0) {
        return bad_usage("gen", "--rate is events per second >= 0 (0: no "
                                "pacing)");
    }
    int64_t start_ms;
    if (breach_date_parse(start, 0, &start_ms) != 0) {
        return bad_usage("gen", "--start: give a date YYYY-MM-DD");
    }
    int proto = strcmp(format, "protobuf") == 0;
    if (!proto && strcmp(format, "json") != 0) {
        return bad_usage("gen", "--format is json or protobuf");
    }
    if (cards_mode && out_path == NULL) {
        return bad_usage("gen", "--out FILE.csv is required");
    }
    if (!cards_mode && (out_path == NULL) == (topic == NULL)) {
        return bad_usage("gen", "give one of --output FILE or --topic T");
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
    if (load_config(&c, &co, 0) != 0) {
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

/* ---- send ---- */

static int cmd_send(int argc, char **argv)
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
    int st = parse_opts(argc, argv, 1, "send", help, &co, defs, N_ELEMS(defs));
    if (st != OPTS_GO) {
        return st;
    }
    if (input == NULL) {
        return bad_usage("send", "--input FILE is required");
    }
    int by_card = strcmp(key_by, "card") == 0;
    if (!by_card && strcmp(key_by, "txn") != 0) {
        return bad_usage("send", "--key: use txn or card");
    }
    struct config c;
    int rc = 1;
    FILE *f = NULL;
    struct cli_producer *prod = NULL;
    struct card_key *ckey = NULL;
    char *line = NULL;
    size_t cap = 0;
    if (load_config(&c, &co, 0) != 0) {
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

/* ---- rules ---- */

static int cmd_rules(int argc, char **argv)
{
    static const char help[] =
        "usage: cardwatch rules check FILE...\n"
        "       cardwatch rules test FILE --input TXNS.jsonl [--exposed "
        "LIST.csv]\n"
        "            [--breach ID] [--window-start YYYY-MM-DD] "
        "[--window-end YYYY-MM-DD]\n"
        "            [--elements pan,expiry,...] [--config cw.ini] "
        "[--all]\n"
        "\n"
        "check: validates rule files; errors as file:line:col: message "
        "(exit 1),\nwarnings for rules that can never fire.\n"
        "test: offline, no Redis or Kafka: evaluates the rules on the "
        "transactions\n(JSON lines, in order) with the cards of LIST.csv "
        "exposed by one breach\n(window and elements as given; default: "
        "all time, pan,expiry), window state\nkept in memory; prints per "
        "transaction which rules fire and why. --config\nsupplies the "
        "issuers (issuer_id, issuer_country). --all also prints\n"
        "transactions with no hit. The rule language: docs/rules.md.\n";
    if (argc < 2 || strcmp(argv[1], "--help") == 0) {
        fputs(help, argc < 2 ? stderr : stdout);
        return argc < 2 ? 2 : 0;
    }
    if (strcmp(argv[1], "check") == 0) {
        if (argc < 3) {
            return bad_usage("rules", "give at least one rule file");
        }
        return rules_tool_check(argc - 2, argv + 2, stdout);
    }
    if (strcmp(argv[1], "test") != 0) {
        return bad_usage("rules", "say 'check' or 'test'");
    }
    struct common co = {0};
    struct rules_test_opts o = {0};
    const struct optdef defs[] = {
        {"input", required_argument, &o.input, NULL, 0},
        {"exposed", required_argument, &o.exposed_csv, NULL, 0},
        {"breach", required_argument, &o.breach_id, NULL, 0},
        {"window-start", required_argument, &o.window_start, NULL, 0},
        {"window-end", required_argument, &o.window_end, NULL, 0},
        {"elements", required_argument, &o.elements, NULL, 0},
        {"all", no_argument, NULL, &o.all, 1},
    };
    int st = parse_opts(argc, argv, 2, "rules", help, &co, defs, N_ELEMS(defs));
    if (st != OPTS_GO) {
        return st;
    }
    if (optind != argc - 1 || o.input == NULL) {
        return bad_usage("rules", "give one rule file and --input");
    }
    o.rules_path = argv[optind];
    struct config c;
    int have_config = co.config_path != NULL;
    if (have_config && load_config(&c, &co, 0) != 0) {
        config_free(&c);
        return 1;
    }
    o.config = have_config ? &c : NULL;
    int rc = rules_tool_test(&o, stdout);
    if (have_config) {
        config_free(&c);
    }
    return rc;
}

/* ---- tail ---- */

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

static int cmd_tail(int argc, char **argv)
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
    int st = parse_opts(argc, argv, 1, "tail", help, &co, defs, N_ELEMS(defs));
    if (st != OPTS_GO) {
        return st;
    }
    if (optind != argc - 1) {
        return bad_usage("tail", "give exactly one topic");
    }
    struct config c;
    if (load_config(&c, &co, 0) != 0) {
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

/* ---- feed / token ---- */

static int cmd_feed(int argc, char **argv)
{
    static const char help[] = WITH_COMMON_HELP(
        "usage: cardwatch feed [--listen HOST:PORT] [OPTIONS]\n"
        "\n"
        "Serves the issuer alert feed from Redis (the alerts `cardwatch run` "
        "delivered)\non [feed] listen: an HTTP(S) JSON API under /v1 "
        "(Authorization: Bearer TOKEN;\nthe token decides the issuer), a "
        "Server-Sent Events stream and the triage\npage at /. HTTPS when "
        "[feed] tls_cert and tls_key are set. [http] listen serves\n"
        "/healthz, /readyz and /metrics (outcomes and precision per issuer "
        "and rule).\n`cardwatch run` serves the same feed itself when "
        "[feed] listen is set.\nSIGINT/SIGTERM: stop accepting, answer "
        "waiting long polls, exit 0.\n"
        "\n"
        "options:\n"
        "  --listen HOST:PORT  overrides [feed] listen\n");
    struct common co = {0};
    const char *listen = NULL;
    const struct optdef defs[] = {
        {"listen", required_argument, &listen, NULL, 0},
    };
    int st = parse_opts(argc, argv, 1, "feed", help, &co, defs, N_ELEMS(defs));
    if (st != OPTS_GO) {
        return st;
    }
    if (optind < argc) {
        return bad_usage("feed", "unexpected argument '%s'", argv[optind]);
    }
    struct config c;
    char err[1024];
    int rc = 1;
    if (load_config(&c, &co, 0) != 0) {
        goto out;
    }
    if (listen != NULL &&
        config_set(&c, "feed", "listen", listen, err, sizeof(err)) != 0) {
        fprintf(stderr, "cardwatch feed: --listen: %s\n", err);
        goto out;
    }
    if (c.feed_listen[0] == '\0') {
        fprintf(stderr, "cardwatch feed: no address: set [feed] listen or "
                        "give --listen HOST:PORT\n");
        goto out;
    }
    if (feed_config_check(&c, err, sizeof(err)) != 0) {
        fprintf(stderr, "cardwatch feed: %s\n", err);
        goto out;
    }
    rc = app_feed(&c);
out:
    config_free(&c);
    return rc;
}

static int cmd_token(int argc, char **argv)
{
    static const char help[] =
        "usage: cardwatch token\n"
        "\n"
        "Makes a bearer token for the issuer feed: 32 random bytes from the "
        "OS as\nbase64url (43 characters) on the first line of stdout, and "
        "on the second the\nline for the issuer's [issuer ID] section:\n"
        "  token_sha256 = <SHA-256 of the token, 64 hex digits>\n"
        "Only the hash is configured; the token is shown once, here.\n";
    if (argc > 1 && strcmp(argv[1], "--help") == 0) {
        fputs(help, stdout);
        return 0;
    }
    if (argc > 1) {
        return bad_usage("token", "takes no arguments");
    }
    return app_token(stdout, stderr);
}

int main(int argc, char **argv)
{
    if (argc < 2) {
        fputs(usage_main, stderr);
        return 2;
    }
    const char *cmd = argv[1];
    static const struct {
        const char *name;
        int (*fn)(int, char **);
        int keep_name; /* pass argv starting at the command name */
    } cmds[] = {
        {"run", cmd_run, 1},         {"load", cmd_load, 1},
        {"breaches", cmd_breaches, 1}, {"unload", cmd_unload, 1},
        {"gen", cmd_gen, 1},         {"send", cmd_send, 1},
        {"tail", cmd_tail, 1},       {"rules", cmd_rules, 1},
        {"replay", cmd_replay, 1},   {"feed", cmd_feed, 1},
        {"token", cmd_token, 1},     {"check", cmd_check, 1},
    };
    if (strcmp(cmd, "--help") == 0 || strcmp(cmd, "-h") == 0 ||
        strcmp(cmd, "help") == 0) {
        fputs(usage_main, stdout);
        return 0;
    }
    if (strcmp(cmd, "version") == 0 || strcmp(cmd, "--version") == 0) {
        printf("cardwatch %s\n", VERSION);
        return 0;
    }
    for (size_t i = 0; i < sizeof(cmds) / sizeof(cmds[0]); i++) {
        if (strcmp(cmd, cmds[i].name) == 0) {
            /* every command may hold card numbers: no core dumps */
            char err[160];
            if (harden_no_core_dumps(NULL, err, sizeof(err)) != 0) {
                fprintf(stderr, "cardwatch: %s\n", err);
                return 1;
            }
            return cmds[i].fn(argc - 1, argv + 1);
        }
    }
    fprintf(stderr, "cardwatch: unknown command '%s'\n\n%s", cmd, usage_main);
    return 2;
}
