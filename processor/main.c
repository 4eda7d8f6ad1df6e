/* main.c - cardwatch's command line: the table of subcommands, the
 * top-level usage and the version. Each command lives in the cli_*.c file
 * of its concern (cli.h); what they share is cli.c. */
#include <stdio.h>
#include <string.h>

#include "cli.h"
#include "harden.h"

#define VERSION "0.1.0"

static const char usage_main[] =
    "cardwatch " VERSION " - watch card transactions for misuse of cards\n"
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
    "  migrate    move exposed cards written by an older version to the\n"
    "             current layout\n"
    "  replay     run the monitoring over stored history (a topic time\n"
    "             range or a file)\n"
    "  cpp        find the merchant that leaked the defrauded cards "
    "(common point of\n"
    "             purchase) and when\n"
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
    "Every command takes --config FILE (default: $CARDWATCH_CONFIG or\n"
    "./cardwatch.ini) and --help. See deploy/cardwatch.ini for every "
    "setting.\n";

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
        {"migrate", cmd_migrate, 1},
        {"gen", cmd_gen, 1},         {"send", cmd_send, 1},
        {"tail", cmd_tail, 1},       {"rules", cmd_rules, 1},
        {"replay", cmd_replay, 1},   {"feed", cmd_feed, 1},
        {"token", cmd_token, 1},     {"check", cmd_check, 1},
        {"cpp", cmd_cpp, 1},
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
