/* cli.c - what every command of the command line shares: usage errors,
 * number parsing, the option parser (common options + a command's own
 * table) and loading the configuration with the flags' overrides.
 * Contracts in cli.h. */
#include <errno.h>
#include <getopt.h>
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "cli.h"
#include "config.h"
#include "feed_config.h"
#include "log.h"

enum {
    N_COMMON_OPTS = 7, /* --config ... --help, ahead of a command's own */
    MAX_OWN_OPTS = 24,
    OPT_FIRST = 1000, /* getopt_long val of row 0; clear of characters */
};

int cli_bad_usage(const char *cmd, const char *fmt, ...)
{
    char msg[1024];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof(msg), fmt, ap);
    va_end(ap);
    log_report(LOG_ERROR, cmd, "%s (see cardwatch %s --help)", msg, cmd);
    return 2;
}

int cli_parse_whole(const char *s, long long lo, long long hi,
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

int cli_parse_real(const char *s, double lo, double hi, double *out)
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
        return cli_bad_usage(cmd, "option '%s' needs a value", arg);
    }
    if (optopt >= OPT_FIRST) { /* a known option given "=value" */
        return cli_bad_usage(cmd, "option '%.*s' takes no value", len, arg);
    }
    if (optopt > 0) { /* a short option: optind may not have moved */
        return cli_bad_usage(cmd, "unknown option '-%c'", optopt);
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
    return cli_bad_usage(cmd, "%s option '%.*s'",
                         ambiguous ? "ambiguous" : "unknown", len, arg);
}

/* Sets the overrides of the file that co holds (--brokers, --redis,
 * --group) on c, in that order. Returns NULL, or the flag whose value
 * config_set refused (its message in err). */
static const char *set_overrides(struct config *c, const struct common *co,
                                 char *err, size_t errlen)
{
    const struct {
        const char *flag, *sec, *name, *val;
    } ov[] = {{"--brokers", "kafka", "brokers", co->brokers},
              {"--redis", "redis", "address", co->redis},
              {"--group", "kafka", "group", co->group}};
    for (size_t i = 0; i < N_ELEMS(ov); i++) {
        if (ov[i].val != NULL && config_set(c, ov[i].sec, ov[i].name,
                                            ov[i].val, err, errlen) != 0) {
            return ov[i].flag;
        }
    }
    return NULL;
}

/* Checks the common options' values before anything else happens: the
 * log format and level (and sets them), and the overrides of the file on
 * a scratch configuration. Returns OPTS_GO, or 2 after a usage error. */
static int check_common(const char *cmd, const struct common *co)
{
    if (co->log_format != NULL) {
        enum log_format fmt;
        if (log_format_parse(co->log_format, &fmt) != 0) {
            return cli_bad_usage(cmd, "--log-format: use plain or json");
        }
        log_set_format(fmt);
    }
    if (co->log_level != NULL) {
        enum log_level lvl;
        if (log_level_parse(co->log_level, &lvl) != 0) {
            return cli_bad_usage(cmd, "--log-level: use debug, info, warn "
                                      "or error");
        }
        log_set_level(lvl);
    }
    struct config c;
    char err[512];
    const char *flag;
    int st = OPTS_GO;
    if (config_init(&c) != 0) {
        log_report(LOG_ERROR, NULL, "out of memory");
        st = 1;
    } else if ((flag = set_overrides(&c, co, err, sizeof(err))) != NULL) {
        st = cli_bad_usage(cmd, "%s: %s", flag, err);
    }
    config_free(&c);
    return st;
}

int cli_parse_opts(int argc, char **argv, int first, const char *cmd,
                   const char *help, struct common *co,
                   const struct optdef *defs, size_t n_defs)
{
    struct optdef all[N_COMMON_OPTS + MAX_OWN_OPTS] = {
        {"config", required_argument, &co->config_path, NULL, 0},
        {"brokers", required_argument, &co->brokers, NULL, 0},
        {"redis", required_argument, &co->redis, NULL, 0},
        {"group", required_argument, &co->group, NULL, 0},
        {"log-level", required_argument, &co->log_level, NULL, 0},
        {"log-format", required_argument, &co->log_format, NULL, 0},
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

int cli_no_operands(const char *cmd, int argc, char **argv)
{
    if (optind < argc) {
        return cli_bad_usage(cmd, "unexpected argument '%s'", argv[optind]);
    }
    return OPTS_GO;
}

/* Sets the log format and level of the file's [log] section, where no
 * flag set them (the flags were applied by cli_parse_opts). The values
 * were checked when they were loaded. */
static void apply_log(const struct config *c, const struct common *co)
{
    enum log_format fmt;
    enum log_level lvl;
    if (co->log_format == NULL && log_format_parse(c->log_format, &fmt) == 0) {
        log_set_format(fmt);
    }
    if (co->log_level == NULL && log_level_parse(c->log_level, &lvl) == 0) {
        log_set_level(lvl);
    }
}

/* cli_load_config without the freeing: prints the error and returns -1 on
 * any problem. */
static int load_config(struct config *c, const struct common *co,
                       int need_check)
{
    char err[1024];
    /* (--log-level and the overrides' values: checked by cli_parse_opts) */
    if (config_init(c) != 0) {
        log_report(LOG_ERROR, NULL, "out of memory");
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
        log_report(LOG_ERROR, NULL, "no configuration: give --config FILE "
                                    "(a commented sample is "
                                    "deploy/cardwatch.ini)");
        return -1;
    }
    /* [log] is applied even when a later line is bad: a [log] format
     * line read before the error sets how the error is written */
    int loaded = config_load(c, path, err, sizeof(err));
    apply_log(c, co);
    if (loaded != 0) {
        log_report(LOG_ERROR, NULL, "%s", err);
        return -1;
    }
    if (set_overrides(c, co, err, sizeof(err)) != NULL) {
        log_report(LOG_ERROR, NULL, "%s", err);
        return -1;
    }
    if (co->brokers != NULL) {
        /* An explicit --brokers wins over a brokers_file. */
        c->brokers_file[0] = '\0';
    }
    /* config_check() knows nothing of the feed, which checks its own
     * section (feed_config.h) */
    if (need_check && (config_check(c, err, sizeof(err)) != 0 ||
                       feed_config_check(c, err, sizeof(err)) != 0)) {
        log_report(LOG_ERROR, NULL, "%s: %s", path, err);
        return -1;
    }
    return 0;
}

int cli_load_config(struct config *c, const struct common *co,
                    int need_check)
{
    if (load_config(c, co, need_check) != 0) {
        config_free(c);
        return -1;
    }
    return 0;
}
