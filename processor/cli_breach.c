/* cli_breach.c - the breach list commands: `cardwatch load` (import a
 * list), `breaches` (list or confirm what is loaded) and `unload`; the
 * work is loader.c's. */
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "cli.h"
#include "config.h"
#include "loader.h"
#include "log.h"

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

int cmd_load(int argc, char **argv)
{
    static const char help[] = WITH_COMMON_HELP(
        "usage: cardwatch load --breach ID --window-start YYYY-MM-DD\n"
        "                      --window-end YYYY-MM-DD\n"
        "                      --elements pan,expiry,cvv2,name,address\n"
        "                      [--description TEXT] [--suspected] LIST.csv\n"
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
        "A fingerprint list (the breach `cardwatch cpp` finds) names a "
        "column\n'fingerprint' instead, \"<key_id>:<32 hex>\" as in "
        "alerts, and no 'expiry'; its\nkey id must be the configured "
        "[card] key's (another key's fingerprints never\nmatch: the load "
        "stops at the first one, before anything is written when it is\n"
        "the first card).\n"
        "\n"
        "  --suspected  the breach is suspected, not known (what cpp "
        "found): `breaches`\n"
        "               shows it; a load without it records a known "
        "breach\n"
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
        {"suspected", no_argument, NULL, &lo.suspected, 1},
    };
    int st = cli_parse_opts(argc, argv, 1, "load", help, &co, defs,
                            N_ELEMS(defs));
    if (st != OPTS_GO) {
        return st;
    }
    if (optind != argc - 1) {
        return cli_bad_usage("load", "give exactly one list file");
    }
    lo.list_path = argv[optind];
    struct config c;
    if (cli_load_config(&c, &co, 0) != 0) {
        return 1;
    }
    /* no progress line between JSON log lines (known only now: [log]) */
    lo.progress = lo.progress && log_progress_allowed();
    if (c.key_file[0] == '\0') {
        log_report(LOG_ERROR, "load", "[card] key_file is not set");
        config_free(&c);
        return 1;
    }
    /* A list that cannot be read stops the load before Redis is waited
     * for and before a staged breach is recorded there. */
    if (strcmp(lo.list_path, "-") != 0 && readable_file(lo.list_path) != 0) {
        log_report(LOG_ERROR, "load", "%s: %s", lo.list_path, strerror(errno));
        config_free(&c);
        return 1;
    }
    int rc = loader_load(&c, &lo);
    config_free(&c);
    return rc;
}

int cmd_breaches(int argc, char **argv)
{
    static const char help[] = WITH_COMMON_HELP(
        "usage: cardwatch breaches [--json] [--confirm]\n\nLists the "
        "loaded breaches with window, card count, status (committed,\n"
        "LOADING: an interrupted or running load, not monitored yet;\n"
        "INCOMPLETE: fewer cards than the load recorded), whether it is\n"
        "suspected (loaded as such) and exposed elements.\n\n"
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
    int st = cli_parse_opts(argc, argv, 1, "breaches", help, &co, defs,
                            N_ELEMS(defs));
    if (st != OPTS_GO) {
        return st;
    }
    st = cli_no_operands("breaches", argc, argv);
    if (st != OPTS_GO) {
        return st;
    }
    struct config c;
    if (cli_load_config(&c, &co, 0) != 0) {
        return 1;
    }
    int rc = confirm ? loader_confirm(&c) : loader_list(&c, json);
    config_free(&c);
    return rc;
}

int cmd_unload(int argc, char **argv)
{
    static const char help[] = WITH_COMMON_HELP(
        "usage: cardwatch unload BREACH_ID\n\nRemoves a breach and its card "
        "records. Cards also listed by another\nbreach stay exposed through "
        "it.\n");
    struct common co = {0};
    int st = cli_parse_opts(argc, argv, 1, "unload", help, &co, NULL, 0);
    if (st != OPTS_GO) {
        return st;
    }
    if (optind != argc - 1) {
        return cli_bad_usage("unload", "give exactly one breach id");
    }
    struct config c;
    if (cli_load_config(&c, &co, 0) != 0) {
        return 1;
    }
    int rc = loader_unload(&c, argv[optind],
                           isatty(2) && log_progress_allowed());
    config_free(&c);
    return rc;
}

int cmd_migrate(int argc, char **argv)
{
    static const char help[] = WITH_COMMON_HELP(
        "usage: cardwatch migrate\n\nMoves exposed cards that an older "
        "cardwatch (before 2026-12) wrote to\nRedis, one key per card, into "
        "the current compact layout (about 40 bytes\nper card). `cardwatch "
        "run` pauses intake while the old layout is there.\nSafe to run "
        "again: a second run finds nothing left.\n");
    struct common co = {0};
    int st = cli_parse_opts(argc, argv, 1, "migrate", help, &co, NULL, 0);
    if (st != OPTS_GO) {
        return st;
    }
    if (optind != argc) {
        return cli_bad_usage("migrate", "takes no arguments");
    }
    struct config c;
    if (cli_load_config(&c, &co, 0) != 0) {
        return 1;
    }
    int rc = loader_migrate(&c, isatty(2) && log_progress_allowed());
    config_free(&c);
    return rc;
}
