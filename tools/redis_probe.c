/*
 * redis_probe - sends one Redis command through redis_conn (the module
 * cardwatch uses for Redis) and prints the answer: a test tool for AUTH,
 * TLS, replicas, sentinels and reconnects against real servers.
 *
 *   redis_probe [options] COMMAND [ARG...]
 *
 * stdout: one line per reply element: bulk and status strings as they
 * are, integers in decimal, nil "(nil)", errors "(error) MSG", arrays
 * flattened one element per line (an empty array prints nothing).
 * stderr: log lines and, on failure, "redis_probe: <message>".
 * Exit: 0 every answer received (error replies included); 1 not
 * reachable or timed out; 2 authentication; 3 TLS; 4 a replica, not the
 * master; 5 usage or a bad option; 6 not a Redis (protocol).
 */
#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <event2/event.h>
#include <hiredis/hiredis.h>
#include <openssl/crypto.h>

#include "log.h"
#include "redis_conn.h"
#include "secret_file.h"

#define PROG "redis_probe"
#define PASSWORD_MAX 512

enum {
    EXIT_NET = 1,
    EXIT_AUTH = 2,
    EXIT_TLS = 3,
    EXIT_ROLE = 4,
    EXIT_USAGE = 5,
    EXIT_PROTOCOL = 6,
};

static void usage(FILE *out)
{
    fputs("usage: redis_probe [options] COMMAND [ARG...]\n"
          "  --address HOST:PORT     default 127.0.0.1:6379\n"
          "  --sentinels H:P,H:P --master NAME\n"
          "  --user NAME\n"
          "  --password-file FILE    mode 0600 or stricter\n"
          "  --tls --ca FILE [--cert FILE --key FILE] [--server-name NAME]\n"
          "  --timeout-ms N          connect/answer timeout (default 2000)\n"
          "  --wait-ms N             wait for each answer (default 10000)\n"
          "  --repeat N              send the command N times, one after "
          "the other\n"
          "  --interval-ms M         pause between repeats (default 0)\n"
          "  --log-level LEVEL       debug|info|warn|error (default info)\n"
          "Prints one line per reply element (arrays flattened, nil as\n"
          "(nil), errors as (error) MSG). Exit: 0 answered, 1 not "
          "reachable or\n"
          "timed out, 2 auth, 3 TLS, 4 replica, 5 usage, 6 not a Redis.\n",
          out);
}

/* Parses a whole decimal number in [min, max]. Returns 0 or -1. */
static int parse_int(const char *s, long min, long max, int *out)
{
    char *end = NULL;
    long v = strtol(s, &end, 10);
    if (end == s || *end != '\0' || v < min || v > max) {
        return -1;
    }
    *out = (int)v;
    return 0;
}

/* Splits "host:port" or "[v6]:port" into host (a buffer of hlen) and
 * port. Returns 0 or -1. */
static int parse_address(const char *s, char *host, size_t hlen, int *port)
{
    const char *colon = strrchr(s, ':');
    const char *h = s;
    size_t n;
    if (colon == NULL) {
        return -1;
    }
    n = (size_t)(colon - s);
    if (s[0] == '[') {
        if (n < 2 || s[n - 1] != ']') {
            return -1;
        }
        h = s + 1;
        n -= 2;
    }
    if (n == 0 || n >= hlen || parse_int(colon + 1, 1, 65535, port) != 0) {
        return -1;
    }
    memcpy(host, h, n);
    host[n] = '\0';
    return 0;
}

static void print_reply(const redisReply *r)
{
    switch (r->type) {
    case REDIS_REPLY_STRING:
    case REDIS_REPLY_STATUS:
        fwrite(r->str, 1, r->len, stdout);
        putchar('\n');
        break;
    case REDIS_REPLY_INTEGER:
        printf("%lld\n", r->integer);
        break;
    case REDIS_REPLY_NIL:
        puts("(nil)");
        break;
    case REDIS_REPLY_ERROR:
        fputs("(error) ", stdout);
        fwrite(r->str, 1, r->len, stdout);
        putchar('\n');
        break;
    case REDIS_REPLY_ARRAY:
        for (size_t i = 0; i < r->elements; i++) {
            print_reply(r->element[i]);
        }
        break;
    default:
        puts("(unknown reply type)");
        break;
    }
}

struct answer {
    int got;  /* the callback ran */
    int null; /* ... without a reply (destroyed first) */
};

static void on_reply(void *arg, const struct redisReply *reply)
{
    struct answer *a = arg;
    a->got = 1;
    if (reply == NULL) {
        a->null = 1;
        return;
    }
    print_reply(reply);
}

static void on_pause(evutil_socket_t fd, short what, void *arg)
{
    (void)fd;
    (void)what;
    *(int *)arg = 1;
}

/* Runs the loop for ms milliseconds (the connection keeps working).
 * Returns 0, or -1 when the loop fails. */
static int pause_ms(struct event_base *base, int ms)
{
    int done = 0;
    struct event *t = evtimer_new(base, on_pause, &done);
    if (t == NULL) {
        return -1;
    }
    struct timeval tv = {ms / 1000, (ms % 1000) * 1000};
    evtimer_add(t, &tv);
    int rc = 0;
    while (!done) {
        if (event_base_loop(base, EVLOOP_ONCE) < 0) {
            rc = -1;
            break;
        }
    }
    event_free(t);
    return rc;
}

static int exit_code(enum rconn_error e)
{
    switch (e) {
    case RCONN_E_AUTH:
        return EXIT_AUTH;
    case RCONN_E_TLS:
        return EXIT_TLS;
    case RCONN_E_ROLE:
        return EXIT_ROLE;
    case RCONN_E_PROTOCOL:
        return EXIT_PROTOCOL;
    case RCONN_OK:
    case RCONN_E_NET:
        break;
    }
    return EXIT_NET;
}

int main(int argc, char **argv)
{
    static const struct option longopts[] = {
        {"address", required_argument, NULL, 'a'},
        {"sentinels", required_argument, NULL, 's'},
        {"master", required_argument, NULL, 'm'},
        {"user", required_argument, NULL, 'u'},
        {"password-file", required_argument, NULL, 'p'},
        {"tls", no_argument, NULL, 'T'},
        {"ca", required_argument, NULL, 'C'},
        {"cert", required_argument, NULL, 'c'},
        {"key", required_argument, NULL, 'k'},
        {"server-name", required_argument, NULL, 'n'},
        {"timeout-ms", required_argument, NULL, 't'},
        {"wait-ms", required_argument, NULL, 'w'},
        {"repeat", required_argument, NULL, 'r'},
        {"interval-ms", required_argument, NULL, 'i'},
        {"log-level", required_argument, NULL, 'l'},
        {"help", no_argument, NULL, 'h'},
        {NULL, 0, NULL, 0},
    };
    char host[256] = "127.0.0.1";
    char password[PASSWORD_MAX + 1];
    char err[1024];
    const char *password_file = NULL;
    int port = 6379, repeat = 1, interval_ms = 0, wait_ms = 10000;
    struct rconn_opts o;
    struct event_base *base = NULL;
    struct rconn *c = NULL;
    size_t *lens = NULL;
    int rc = EXIT_USAGE, opt;
    /* Outlives the loop: rconn_destroy() calls back for an unanswered
     * command. */
    struct answer a = {0, 0};

    memset(&o, 0, sizeof(o));
    memset(password, 0, sizeof(password));
    o.name = PROG;
    o.timeout_ms = 2000;
    /* '+': options end at COMMAND, so "INCRBY k -1" stays the command. */
    while ((opt = getopt_long(argc, argv, "+h", longopts, NULL)) != -1) {
        switch (opt) {
        case 'a':
            if (parse_address(optarg, host, sizeof(host), &port) != 0) {
                fprintf(stderr, PROG ": --address wants HOST:PORT, not '%s'\n",
                        optarg);
                goto out;
            }
            break;
        case 's':
            o.sentinels = optarg;
            break;
        case 'm':
            o.master_name = optarg;
            break;
        case 'u':
            o.username = optarg;
            break;
        case 'p':
            password_file = optarg;
            break;
        case 'T':
            o.tls = 1;
            break;
        case 'C':
            o.tls_ca_file = optarg;
            break;
        case 'c':
            o.tls_cert_file = optarg;
            break;
        case 'k':
            o.tls_key_file = optarg;
            break;
        case 'n':
            o.tls_server_name = optarg;
            break;
        case 't':
        case 'w':
        case 'r':
        case 'i': {
            int v;
            if (parse_int(optarg, opt == 'i' ? 0 : 1, 86400000, &v) != 0) {
                fprintf(stderr, PROG ": bad number '%s'\n", optarg);
                goto out;
            }
            if (opt == 't') {
                o.timeout_ms = v;
            } else if (opt == 'w') {
                wait_ms = v;
            } else if (opt == 'r') {
                repeat = v;
            } else {
                interval_ms = v;
            }
            break;
        }
        case 'l': {
            enum log_level lvl;
            if (log_level_parse(optarg, &lvl) != 0) {
                fprintf(stderr, PROG ": bad log level '%s'\n", optarg);
                goto out;
            }
            log_set_level(lvl);
            break;
        }
        case 'h':
            usage(stdout);
            rc = 0;
            goto out;
        default:
            usage(stderr);
            goto out;
        }
    }
    if (optind >= argc) {
        usage(stderr);
        goto out;
    }
    if (!o.tls && (o.tls_ca_file || o.tls_cert_file || o.tls_key_file ||
                   o.tls_server_name)) {
        fprintf(stderr, PROG ": --ca, --cert, --key and --server-name need "
                        "--tls\n");
        goto out;
    }
    if (password_file != NULL) {
        size_t len = 0;
        if (secret_file_read(password_file, "Redis password file", password,
                             PASSWORD_MAX, &len, err, sizeof(err)) != 0) {
            fprintf(stderr, PROG ": %s\n", err);
            goto out;
        }
        password[strcspn(password, "\r\n")] = '\0';
        if (password[0] == '\0') {
            fprintf(stderr, PROG ": Redis password file %s: empty\n",
                    password_file);
            goto out;
        }
        o.password = password;
    }
    o.host = host;
    o.port = port;

    int nargs = argc - optind;
    const char *const *args = (const char *const *)(argv + optind);
    lens = calloc((size_t)nargs, sizeof(*lens));
    base = event_base_new();
    if (lens == NULL || base == NULL) {
        fprintf(stderr, PROG ": out of memory\n");
        rc = EXIT_NET;
        goto out;
    }
    for (int i = 0; i < nargs; i++) {
        lens[i] = strlen(args[i]);
    }
    c = rconn_new(base, &o, err, sizeof(err));
    OPENSSL_cleanse(password, sizeof(password)); /* rconn has its copy */
    if (c == NULL) {
        fprintf(stderr, "%s\n", err); /* starts with o.name: PROG ": " */
        goto out;
    }
    setvbuf(stdout, NULL, _IOLBF, 0);
    for (int i = 0; i < repeat; i++) {
        a.got = 0;
        a.null = 0;
        if (i > 0 && interval_ms > 0 && pause_ms(base, interval_ms) != 0) {
            fprintf(stderr, PROG ": event loop failed\n");
            rc = EXIT_NET;
            goto out;
        }
        if (rconn_command(c, nargs, args, lens, on_reply, &a) != 0) {
            fprintf(stderr, PROG ": out of memory\n");
            rc = EXIT_NET;
            goto out;
        }
        if (rconn_wait(c, wait_ms, err, sizeof(err)) != 0) {
            fprintf(stderr, PROG ": %s\n", err);
            rc = exit_code(rconn_error(c, NULL));
            goto out;
        }
    }
    rc = 0;
out:
    rconn_destroy(c);
    if (base != NULL) {
        event_base_free(base);
    }
    free(lens);
    OPENSSL_cleanse(password, sizeof(password));
    return rc;
}
