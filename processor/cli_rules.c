/* cli_rules.c - `cardwatch rules check|test`: the rule tools' command
 * line; the work is rules_tool.c's. */
#include <stdio.h>
#include <string.h>

#include "cli.h"
#include "config.h"
#include "rules_tool.h"

int cmd_rules(int argc, char **argv)
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
        if (argc >= 3 && (strcmp(argv[2], "--help") == 0 ||
                          strcmp(argv[2], "-h") == 0)) {
            fputs(help, stdout); /* not a rule file named --help */
            return 0;
        }
        if (argc < 3) {
            return cli_bad_usage("rules", "give at least one rule file");
        }
        return rules_tool_check(argc - 2, argv + 2, stdout);
    }
    if (strcmp(argv[1], "test") != 0) {
        return cli_bad_usage("rules", "say 'check' or 'test'");
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
    int st = cli_parse_opts(argc, argv, 2, "rules", help, &co, defs,
                            N_ELEMS(defs));
    if (st != OPTS_GO) {
        return st;
    }
    if (optind != argc - 1 || o.input == NULL) {
        return cli_bad_usage("rules", "give one rule file and --input");
    }
    o.rules_path = argv[optind];
    struct config c;
    int have_config = co.config_path != NULL;
    if (have_config && cli_load_config(&c, &co, 0) != 0) {
        return 1;
    }
    o.config = have_config ? &c : NULL;
    int rc = rules_tool_test(&o, stdout);
    if (have_config) {
        config_free(&c);
    }
    return rc;
}
