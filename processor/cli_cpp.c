/* cli_cpp.c - `cardwatch cpp`: its options parsed and checked into
 * struct cpp_run_opts; the work is app_cpp.c's. */
#include <stdint.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

#include "app_cpp.h"
#include "cli.h"
#include "config.h"
#include "log.h"
#include "reader.h"
#include "timeparse.h"

static const char cpp_help[] = WITH_COMMON_HELP(
    "usage: cardwatch cpp (--frauds FRAUDS.csv | --from-feed) [OPTIONS] "
    "HISTORY...\n"
    "       cardwatch cpp (--frauds FRAUDS.csv | --from-feed) [OPTIONS] "
    "--from TIME\n"
    "                     [--to TIME] [--topic T]\n"
    "\n"
    "Common-point-of-purchase analysis: finds the merchant that the cards "
    "later\ndefrauded used far more often than its popularity explains - "
    "where a breach\nleaked them - and when. HISTORY: transaction files as "
    "replay reads them (JSON\nlines or length-delimited protobuf, plain or "
    "gzip; '-' = stdin), or a\ntime range of the transactions topic "
    "(--from, --to, --topic: read as replay\nreads it, no consumer group). "
    "Cards are\nfingerprinted as they are read; no card "
    "number is kept.\n"
    "\n"
    "compromised cards (one or both):\n"
    "  --frauds FILE      CSV with a header naming 'pan' or 'fingerprint'\n"
    "                     (<key id>:<32 hex>, as alerts show it) and "
    "'first_fraud'\n"
    "                     (YYYY-MM-DD, RFC 3339 or epoch ms)\n"
    "  --from-feed        the alerts issuers marked confirmed_fraud in the "
    "feed\n"
    "                     (Redis); first fraud = the alert's event time\n"
    "  --as-of TIME       only frauds that started before TIME (what was "
    "known then)\n"
    "\n"
    "analysis:\n"
    "  --lookback DAYS    how far back from a card's first fraud its uses "
    "count\n"
    "                     (default 180)\n"
    "  --alpha A          significance level after the Bonferroni "
    "correction over\n"
    "                     all merchants (default 0.001)\n"
    "  --min-cases N      rank merchants used by at least N compromised "
    "cards\n"
    "                     (default 3)\n"
    "  --top N            rows to print and report (default 10)\n"
    "  --format F         jsonl|protobuf (default: decided from the first "
    "byte)\n"
    "  --from TIME        read the topic from TIME (YYYY-MM-DD, RFC 3339 or "
    "epoch ms)\n"
    "  --to TIME          ... up to (excluding) TIME (default: its end)\n"
    "  --topic T          the topic (default [kafka] transactions_topic)\n"
    "\n"
    "output:\n"
    "  --report FILE      the ranking as JSON\n"
    "  --report-html FILE the same as one HTML page with charts (opens "
    "offline)\n"
    "  --emit-breach FILE the cards that used the top merchant inside its "
    "estimated\n"
    "                     window (whole days), as a fingerprint list that\n"
    "                     `cardwatch load` takes as a suspected breach (it "
    "prints\n"
    "                     the command; reads the history twice; only when "
    "the top\n"
    "                     merchant is significant)\n"
    "  --progress         a progress line on stderr (default: when it is a "
    "terminal)\n"
    "\n"
    "Statistic: for a merchant used by n of the N cards of the period, each "
    "of the K\ncompromised cards would have used it with chance n/N if "
    "compromise had nothing\nto do with it; p = P(Binomial(K, n/N) >= "
    "cases), times the number of merchants.\nUses on or after a card's "
    "first fraud never count. Exit status: 0 done, 1 an\nerror, 2 a usage "
    "error.\n");

struct cpp_args {
    const char *frauds, *as_of, *lookback, *alpha, *min_cases, *top;
    const char *report, *report_html, *emit, *format, *from, *to, *topic;
    int from_feed, progress;
};

/* Checks the values of a into o. Returns OPTS_GO or 2 (usage error). */
static int check_args(const struct cpp_args *a, struct cpp_run_opts *o)
{
    long long v;
    if (a->frauds == NULL && !a->from_feed) {
        return cli_bad_usage("cpp", "give --frauds FILE or --from-feed");
    }
    if (a->lookback != NULL) {
        if (cli_parse_whole(a->lookback, 1, 3660, &v) != 0) {
            return cli_bad_usage("cpp", "--lookback is whole days, 1-3660");
        }
        o->lookback_ms = v * 86400000LL;
    }
    if (a->alpha != NULL &&
        (cli_parse_real(a->alpha, 1e-300, 0.5, &o->alpha) != 0)) {
        return cli_bad_usage("cpp", "--alpha is a number above 0, at most "
                                    "0.5");
    }
    if (a->min_cases != NULL) {
        if (cli_parse_whole(a->min_cases, 1, 1000000, &v) != 0) {
            return cli_bad_usage("cpp", "--min-cases is a whole number >= 1");
        }
        o->min_cases = (uint32_t)v;
    }
    if (a->top != NULL) {
        if (cli_parse_whole(a->top, 1, 100000, &v) != 0) {
            return cli_bad_usage("cpp", "--top is a whole number, 1-100000");
        }
        o->top = (size_t)v;
    }
    char err[160];
    if (a->as_of != NULL && timeparse_ms(a->as_of, &o->as_of_ms, err,
                                         sizeof(err)) != 0) {
        return cli_bad_usage("cpp", "--as-of: %s", err);
    }
    if (a->from != NULL && timeparse_ms(a->from, &o->from_ms, err,
                                        sizeof(err)) != 0) {
        return cli_bad_usage("cpp", "--from: %s", err);
    }
    o->to_ms = INT64_MAX;
    if (a->to != NULL && timeparse_ms(a->to, &o->to_ms, err, sizeof(err))) {
        return cli_bad_usage("cpp", "--to: %s", err);
    }
    if (a->from == NULL && (a->to != NULL || a->topic != NULL)) {
        return cli_bad_usage("cpp", "--to and --topic read a topic: give "
                                    "--from TIME too");
    }
    if (a->from != NULL && o->to_ms <= o->from_ms) {
        return cli_bad_usage("cpp", "--to must be after --from");
    }
    if (a->format != NULL) {
        if (strcmp(a->format, "jsonl") == 0) {
            o->format = READER_JSONL;
        } else if (strcmp(a->format, "protobuf") == 0) {
            o->format = READER_PROTOBUF;
        } else {
            return cli_bad_usage("cpp", "--format is jsonl or protobuf");
        }
    }
    return OPTS_GO;
}

int cmd_cpp(int argc, char **argv)
{
    struct cpp_args a = {0};
    struct common co = {0};
    const struct optdef defs[] = {
        {"frauds", required_argument, &a.frauds, NULL, 0},
        {"from-feed", no_argument, NULL, &a.from_feed, 1},
        {"as-of", required_argument, &a.as_of, NULL, 0},
        {"lookback", required_argument, &a.lookback, NULL, 0},
        {"alpha", required_argument, &a.alpha, NULL, 0},
        {"min-cases", required_argument, &a.min_cases, NULL, 0},
        {"top", required_argument, &a.top, NULL, 0},
        {"format", required_argument, &a.format, NULL, 0},
        {"report", required_argument, &a.report, NULL, 0},
        {"report-html", required_argument, &a.report_html, NULL, 0},
        {"emit-breach", required_argument, &a.emit, NULL, 0},
        {"progress", no_argument, NULL, &a.progress, 1},
        {"from", required_argument, &a.from, NULL, 0},
        {"to", required_argument, &a.to, NULL, 0},
        {"topic", required_argument, &a.topic, NULL, 0},
    };
    int st = cli_parse_opts(argc, argv, 1, "cpp", cpp_help, &co, defs,
                            N_ELEMS(defs));
    if (st != OPTS_GO) {
        return st;
    }
    struct cpp_run_opts o = {
        .lookback_ms = 180 * 86400000LL,
        .alpha = 0.001,
        .min_cases = 3,
        .top = 10,
    };
    st = check_args(&a, &o);
    if (st != OPTS_GO) {
        return st;
    }
    if (optind >= argc && a.from == NULL) {
        return cli_bad_usage("cpp", "give the history: transaction files, "
                                    "or --from TIME for the topic");
    }
    if (optind < argc && a.from != NULL) {
        return cli_bad_usage("cpp", "give files or --from (a topic), not "
                                    "both");
    }
    o.inputs = (const char *const *)&argv[optind];
    o.n_inputs = (size_t)(argc - optind);
    for (size_t i = 0; a.emit != NULL && i < o.n_inputs; i++) {
        if (strcmp(o.inputs[i], "-") == 0) {
            return cli_bad_usage("cpp", "--emit-breach reads the history "
                                        "twice: give files, not stdin");
        }
    }
    o.frauds = a.frauds;
    o.from_feed = a.from_feed;
    o.report_path = a.report;
    o.report_html_path = a.report_html;
    o.emit_path = a.emit;
    struct config c;
    if (cli_load_config(&c, &co, 0) != 0) {
        return 1;
    }
    o.progress = (a.progress || isatty(2)) && log_progress_allowed();
    if (c.key_file[0] == '\0') {
        log_report(LOG_ERROR, "cpp", "[card] key_file is not set");
        config_free(&c);
        return 1;
    }
    if (a.from != NULL) {
        o.topic = a.topic != NULL ? a.topic : c.transactions_topic;
    }
    int rc = app_cpp(&c, &o);
    config_free(&c);
    return rc;
}
