/* cli_replay.c - `cardwatch replay`: its options parsed and checked into
 * struct replay_opts; the work is app_replay.c's. */
#include <stdint.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "app_replay.h"
#include "breach.h"
#include "cli.h"
#include "config.h"
#include "log.h"
#include "reader.h"
#include "timeparse.h"

static const char replay_help[] = WITH_COMMON_HELP(
    "usage: cardwatch replay --from TIME [--to TIME] [--topic T] "
    "[OUTPUT] [OPTIONS]\n"
    "       cardwatch replay --input FILE [--format jsonl|protobuf]\n"
    "                        [OUTPUT] [OPTIONS]\n"
    "\n"
    "Runs the monitoring pipeline over "
    "stored transactions: the same decoding,\n"
    "exposed-card set, rules and alert ids as "
    "the live service, to find misuse that\n"
    "already happened. It never changes the "
    "live service: no consumer group is\n"
    "joined or committed, window state lives "
    "in a namespace of its own (removed at\n"
    "the end), and alerts go to replay "
    "topics unless --deliver says otherwise.\n"
    "\n"
    "input (one of):\n"
    "  --from TIME        "
    "replay the transactions topic from TIME (YYYY-MM-DD,\n"
    "                     RFC 3339 such as 2024-08-01T12:00:00Z, or epoch\n"
    "                     milliseconds), "
    "found per partition by message timestamp\n"
    "  --to TIME          "
    "... up to (excluding) TIME (default: the end of each\n"
    "                     partition)\n"
    "  --topic T          "
    "topic to replay (default [kafka] transactions_topic)\n"
    "  --input FILE       "
    "JSON lines or length-delimited protobuf (varint length +\n"
    "                     Transaction), gzip or plain; '-' reads stdin\n"
    "  --format F         "
    "jsonl|protobuf (default: decided from the first byte)\n"
    "\n"
    "output:\n"
    "  --output FILE      "
    "alerts as JSON lines, in input order ('-' = stdout);\n"
    "                     without it alerts go to\n"
    "                     <issuer topic>[replay] topic_suffix (.replay)\n"
    "  --deliver          "
    "send alerts to the live issuer topics; an alert the live\n"
    "                     service (or an earlier "
    "replay) delivered is not sent again\n"
    "  --dead-letter FILE "
    "invalid events with position and reason, as JSON lines\n"
    "                     (default for topic "
    "input: [replay] dead_letter_topic)\n"
    "  --report FILE      the summary as JSON\n"
    "  --report-html FILE "
    "the summary as one HTML page with charts (per breach and\n"
    "                     day: exposed-card "
    "transactions and alerts; alerts by rule,\n"
    "                     issuer and severity); opens offline, counts only\n"
    "\n"
    "options:\n"
    "  --breach ID        only cards of this breach can alert\n"
    "  --rules FILE       replay with this rule file (default [rules] path)\n"
    "  --progress / --no-progress\n"
    "                     progress bar on stderr "
    "(default: when stderr is a terminal)\n"
    "  --force-search     "
    "find --from/--to offsets by searching message timestamps\n"
    "                     even when the broker's time index answers\n"
    "  --max-dead-letters N\n"
    "                     stop with an error "
    "past N dead letters (default [replay]\n"
    "                     max_dead_letters, 10000; 0 = no cap)\n"
    "  --max-dead-letter-percent P\n"
    "                     ... or once more "
    "than P% of the events are dead letters,\n"
    "                     after the first 1,000 (default [replay]\n"
    "                     max_dead_letter_percent, 50; 100 = no cap)\n"
    "\n"
    "SIGINT/SIGTERM stop a replay at once: no "
    "output is kept, the summary is printed.\n"
    "Exit status: 0 when every event was "
    "processed and every output written; 1 on\n"
    "failure (a partial --output file is "
    "removed); 2 on a usage error; 130 / 143\n"
    "when stopped by SIGINT / SIGTERM.\n");

/* replay's options that stay strings until checked (NULL = not given). */
struct replay_args {
    const char *from, *to, *format;  /* --from, --to, --format */
    const char *max_dl, *max_dl_pct; /* the caps on dead letters */
};

/* Parses replay's options: the common ones into co, the rest into ro and
 * a. Returns OPTS_GO, or the exit status (0 after --help, 2 after a usage
 * error). */
static int replay_parse_opts(int argc, char **argv, struct common *co,
                             struct replay_opts *ro, struct replay_args *a)
{
    const struct optdef defs[] = {
        {"from", required_argument, &a->from, NULL, 0},
        {"to", required_argument, &a->to, NULL, 0},
        {"topic", required_argument, &ro->topic, NULL, 0},
        {"input", required_argument, &ro->input, NULL, 0},
        {"format", required_argument, &a->format, NULL, 0},
        {"output", required_argument, &ro->output, NULL, 0},
        {"deliver", no_argument, NULL, &ro->deliver, 1},
        {"dead-letter", required_argument, &ro->dead_letter, NULL, 0},
        {"report", required_argument, &ro->report, NULL, 0},
        {"report-html", required_argument, &ro->report_html, NULL, 0},
        {"breach", required_argument, &ro->breach, NULL, 0},
        {"rules", required_argument, &ro->rules, NULL, 0},
        {"progress", no_argument, NULL, &ro->progress, 1},
        {"no-progress", no_argument, NULL, &ro->progress, 0},
        {"force-search", no_argument, NULL, &ro->force_search, 1},
        {"max-dead-letters", required_argument, &a->max_dl, NULL, 0},
        {"max-dead-letter-percent", required_argument, &a->max_dl_pct, NULL,
         0},
    };
    int st = cli_parse_opts(argc, argv, 1, "replay", replay_help, co, defs,
                            N_ELEMS(defs));
    if (st != OPTS_GO) {
        return st;
    }
    return cli_no_operands("replay", argc, argv);
}

/* Checks the choice of input (--from or --input and what goes with each)
 * and fills ro's range and format. Returns OPTS_GO, or 2 after a usage
 * error. */
static int replay_check_input(struct replay_opts *ro,
                              const struct replay_args *a)
{
    char err[256];
    if ((ro->input == NULL) == (a->from == NULL)) {
        return cli_bad_usage("replay", "give one of --from TIME (the topic) "
                                       "or --input FILE");
    }
    if (ro->input != NULL &&
        (a->to != NULL || ro->topic != NULL || ro->force_search)) {
        return cli_bad_usage("replay", "--to, --topic and --force-search go "
                                       "with --from, not --input");
    }
    if (ro->input == NULL && a->format != NULL) {
        return cli_bad_usage("replay", "--format goes with --input");
    }
    ro->to_ms = INT64_MAX;
    if (a->from != NULL &&
        timeparse_ms(a->from, &ro->from_ms, err, sizeof(err)) != 0) {
        fprintf(stderr, "cardwatch replay: --from: %s\n", err);
        return 2;
    }
    if (a->to != NULL &&
        timeparse_ms(a->to, &ro->to_ms, err, sizeof(err)) != 0) {
        fprintf(stderr, "cardwatch replay: --to: %s\n", err);
        return 2;
    }
    if (ro->to_ms <= ro->from_ms) {
        return cli_bad_usage("replay", "--to must be later than --from");
    }
    ro->format = READER_AUTO;
    if (a->format != NULL) {
        if (strcmp(a->format, "jsonl") == 0 ||
            strcmp(a->format, "json") == 0) {
            ro->format = READER_JSONL;
        } else if (strcmp(a->format, "protobuf") == 0) {
            ro->format = READER_PROTOBUF;
        } else {
            return cli_bad_usage("replay", "--format is jsonl or protobuf");
        }
    }
    return OPTS_GO;
}

/* Checks the outputs, --breach and the caps on dead letters; *max_n and
 * *max_pct get the caps given (left as they are when not given). Returns
 * OPTS_GO, or 2 after a usage error. */
static int replay_check_outputs(const struct replay_opts *ro,
                                const struct replay_args *a,
                                long long *max_n, long long *max_pct)
{
    if (ro->deliver && ro->output != NULL) {
        return cli_bad_usage("replay", "--deliver sends to the live topics; "
                                       "it does not go with --output");
    }
    if (ro->breach != NULL && !breach_id_valid(ro->breach)) {
        return cli_bad_usage("replay", "--breach: not a breach id");
    }
    struct stat ost;
    if (ro->output != NULL && ro->dead_letter != NULL &&
        strcmp(ro->output, ro->dead_letter) == 0 &&
        !(stat(ro->output, &ost) == 0 && !S_ISREG(ost.st_mode))) {
        /* (the same device, such as /dev/null, is fine) */
        return cli_bad_usage("replay", "--output and --dead-letter must be "
                                       "different files");
    }
    if (a->max_dl != NULL &&
        cli_parse_whole(a->max_dl, 0, 2000000000, max_n) != 0) {
        return cli_bad_usage("replay", "--max-dead-letters needs a count "
                                       "from 0 (no cap) to 2000000000");
    }
    if (a->max_dl_pct != NULL &&
        cli_parse_whole(a->max_dl_pct, 1, 100, max_pct) != 0) {
        return cli_bad_usage("replay", "--max-dead-letter-percent needs a "
                                       "percentage from 1 to 100 (no cap)");
    }
    return OPTS_GO;
}

int cmd_replay(int argc, char **argv)
{
    struct common co = {0};
    struct replay_opts ro = {0};
    struct replay_args a = {0};
    long long max_n = -1, max_pct = -1;
    ro.progress = isatty(2);
    int st = replay_parse_opts(argc, argv, &co, &ro, &a);
    if (st == OPTS_GO) {
        st = replay_check_input(&ro, &a);
    }
    if (st == OPTS_GO) {
        st = replay_check_outputs(&ro, &a, &max_n, &max_pct);
    }
    if (st != OPTS_GO) {
        return st;
    }
    struct config c;
    if (cli_load_config(&c, &co, 1) != 0) {
        return 1;
    }
    /* no progress line between JSON log lines (known only now: [log]) */
    ro.progress = ro.progress && log_progress_allowed();
    ro.max_dead_letters = max_n >= 0 ? max_n : c.replay_max_dead_letters;
    ro.max_dead_letter_percent =
        max_pct >= 0 ? (int)max_pct : c.replay_max_dead_letter_percent;
    int rc = app_replay(&c, &ro);
    config_free(&c);
    return rc;
}
