/* cli.h - the command line's shared parts, private to processor/main.c
 * and processor/cli*.c: the subcommands' entry points (each defined in
 * the cli_*.c file of its concern) and the option parsing, usage errors
 * and configuration loading every command shares (cli.c).
 *
 * Exit statuses: 0 success, 1 failure (the message is on stderr), 2 a
 * usage error (one line on stderr naming the option or argument).
 */
#ifndef CARDWATCH_CLI_H
#define CARDWATCH_CLI_H

#include <getopt.h>
#include <stddef.h>

#include "config.h"

/* ---- the subcommands ----
 * Each takes argv starting at the command's name (argv[0] = "run" ...)
 * and returns the process's exit status (0, 1 or 2 as above; replay also
 * 130 / 143 when stopped by a signal). --help prints the command's help
 * to stdout and returns 0 (gen and rules without arguments print it and
 * return 2). Each reads the configuration itself; the caller has done
 * nothing but harden the process. */
int cmd_run(int argc, char **argv);      /* cli_run.c */
int cmd_replay(int argc, char **argv);   /* cli_replay.c */
int cmd_load(int argc, char **argv);     /* cli_breach.c */
int cmd_breaches(int argc, char **argv); /* cli_breach.c */
int cmd_unload(int argc, char **argv);   /* cli_breach.c */
int cmd_migrate(int argc, char **argv);  /* cli_breach.c */
int cmd_check(int argc, char **argv);    /* cli_check.c */
int cmd_gen(int argc, char **argv);      /* cli_data.c */
int cmd_send(int argc, char **argv);     /* cli_data.c */
int cmd_tail(int argc, char **argv);     /* cli_data.c */
int cmd_rules(int argc, char **argv);    /* cli_rules.c */
int cmd_feed(int argc, char **argv);     /* cli_feed.c */
int cmd_token(int argc, char **argv);    /* cli_feed.c */
int cmd_cpp(int argc, char **argv);      /* cli_cpp.c */

/* ---- what the commands share (cli.c) ---- */

/* Options every command shares; flags override the file. The strings
 * are borrowed from argv. */
struct common {
    const char *config_path;
    const char *brokers;
    const char *redis;
    const char *group;
    const char *log_level;
    const char *log_format;
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

/* What cli_parse_opts (and cli_no_operands) return when the command goes
 * on. */
#define OPTS_GO (-1)

#define COMMON_HELP                                                            \
    "  --config FILE      configuration (default $CARDWATCH_CONFIG or\n"       \
    "                     ./cardwatch.ini)\n"                                  \
    "  --brokers LIST     Kafka bootstrap servers, overrides [kafka] "         \
    "brokers\n"                                                                \
    "  --redis HOST:PORT  Redis, overrides [redis] address\n"                  \
    "  --group ID         consumer group, overrides [kafka] group\n"           \
    "  --log-level L      debug|info|warn|error, overrides [log] level "       \
    "(default info)\n"                                                         \
    "  --log-format F     plain|json lines on stderr, overrides [log] "        \
    "format\n"                                                                 \
    "                     (default plain)\n"                                   \
    "  --help             this text\n"

/* A command's help text followed by the common options. */
#define WITH_COMMON_HELP(text) text "\ncommon options:\n" COMMON_HELP

/* Prints one line "cardwatch CMD: <fmt ...> (see cardwatch CMD --help)" to
 * stderr; returns 2, the exit status of a usage error. */
int cli_bad_usage(const char *cmd, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));

/* Parses a whole decimal number in [lo, hi] into *out. Returns 0 / -1. */
int cli_parse_whole(const char *s, long long lo, long long hi,
                    long long *out);

/* Parses a finite decimal number in [lo, hi] into *out. Returns 0 / -1. */
int cli_parse_real(const char *s, double lo, double hi, double *out);

/* Parses the options of command cmd in argv[first..argc) with
 * getopt_long: the common options into co, the command's own through
 * defs[n_defs] (at most 16; defs may be NULL when n_defs is 0). Rows that
 * store into the same place share one getopt value, so an abbreviation
 * of their names is not ambiguous. --help prints help to stdout. An
 * unknown or ambiguous option, a missing or unwanted value, a bad
 * --log-level, --log-format or override of the file is one line on
 * stderr naming the option; the log level and format take effect at
 * once (before the configuration's [log], which they win over).
 * Returns OPTS_GO when the command goes on, its operands starting at
 * argv[optind]; otherwise the exit status to return at once: 0 after
 * --help, 2 after a usage error. */
int cli_parse_opts(int argc, char **argv, int first, const char *cmd,
                   const char *help, struct common *co,
                   const struct optdef *defs, size_t n_defs);

/* For a command that takes no operands, after cli_parse_opts: OPTS_GO
 * when argv[optind..argc) is empty, else 2 after a usage error naming
 * the first one. */
int cli_no_operands(const char *cmd, int argc, char **argv);

/* Loads the configuration into *c with the flag overrides of co (their
 * values were checked by cli_parse_opts), then sets the log level and
 * format of its [log] section where no flag set them (also when the file
 * fails to load further on, so that its error is in the file's format).
 * need_check: run config_check. Errors are log_report lines.
 * Returns 0; or -1 after printing the error, with *c freed (config_free
 * on it again is harmless). */
int cli_load_config(struct config *c, const struct common *co,
                    int need_check);

#endif
