/* cli_feed.c - the issuer feed's commands: `cardwatch feed` (serve it)
 * and `token` (make a bearer token); the work is app_feed.c's. */
#include <stdio.h>
#include <string.h>

#include "app_feed.h"
#include "cli.h"
#include "config.h"
#include "feed_config.h"

int cmd_feed(int argc, char **argv)
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
    int st = cli_parse_opts(argc, argv, 1, "feed", help, &co, defs,
                            N_ELEMS(defs));
    if (st != OPTS_GO) {
        return st;
    }
    st = cli_no_operands("feed", argc, argv);
    if (st != OPTS_GO) {
        return st;
    }
    struct config c;
    char err[1024];
    int rc = 1;
    if (cli_load_config(&c, &co, 0) != 0) {
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

int cmd_token(int argc, char **argv)
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
        return cli_bad_usage("token", "takes no arguments");
    }
    return app_token(stdout, stderr);
}
