/* cli_run.c - `cardwatch run`: the service's command line (options into
 * struct run_opts; the work is app_run.c's). */
#include <limits.h>
#include <stdio.h>
#include <unistd.h>

#include "app_run.h"
#include "cli.h"
#include "config.h"
#include "log.h"

int cmd_run(int argc, char **argv)
{
    static const char help[] = WITH_COMMON_HELP(
        "usage: cardwatch run [OPTIONS]\n"
        "\n"
        "Consumes the transactions topic as a member of the consumer group, "
        "looks every\ncard up in the exposed-card set in Redis, evaluates "
        "the rules and produces one\nalert per hit transaction to the "
        "issuer's topic. Offsets are committed only\nafter everything an "
        "event caused is acknowledged. SIGINT/SIGTERM drain and\nexit 0.\n"
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
        "shutdown\n"
        "                     (default 30)\n"
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
    int st = cli_parse_opts(argc, argv, 1, "run", help, &co, defs,
                            N_ELEMS(defs));
    if (st != OPTS_GO) {
        return st;
    }
    long long secs;
    if (drain != NULL) {
        if (cli_parse_whole(drain, 1, INT_MAX, &secs) != 0) {
            return cli_bad_usage("run", "--drain-timeout needs whole seconds "
                                        "> 0");
        }
        ro.drain_timeout_s = (int)secs;
    }
    st = cli_no_operands("run", argc, argv);
    if (st != OPTS_GO) {
        return st;
    }
    struct config c;
    if (cli_load_config(&c, &co, 1) != 0) {
        return 1;
    }
    /* no progress line between JSON log lines (known only now: [log]) */
    ro.progress = ro.progress && log_progress_allowed();
    int rc = app_run(&c, &ro);
    config_free(&c);
    return rc;
}
