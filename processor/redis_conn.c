/* redis_conn.c - see redis_conn.h.
 *
 * One struct rconn owns at most one link at a time: a bufferevent (plain,
 * or libevent_openssl's TLS bufferevent) and a hiredis reply parser. The
 * link goes either to a sentinel, to learn where the master is, or to the
 * master itself; `state` says which, and how far the handshake got:
 *
 *   IDLE -> [SENTINEL -> SENTINEL ...] -> CONNECTING -> [AUTH] -> ROLE
 *        -> PING -> [SUBSCRIBE] -> UP
 *
 * Any failure closes the link, records why (rconn_error), puts every
 * written command back as unsent and arms the reconnect timer (back-off
 * 100 ms doubling to 2 s). A 100 ms tick enforces timeout_ms on the
 * connect + handshake and on the oldest written command.
 *
 * Commands form one FIFO. Redis answers in order and commands are written
 * in queue order, so the written ones are always a prefix of the queue:
 * `unsent` points at the first one not written to the current link, and
 * a reply always belongs to the head.
 */
#include "redis_conn.h"

#include <arpa/inet.h>
#include <assert.h>
#include <errno.h>
#include <netdb.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>

#include <event2/buffer.h>
#include <event2/bufferevent.h>
#include <event2/bufferevent_ssl.h>
#include <event2/event.h>
#include <hiredis/hiredis.h>
#include <openssl/crypto.h>
#include <openssl/err.h>
#include <openssl/ssl.h>
#include <openssl/x509v3.h>

#include "clock.h"
#include "log.h"
#include "metrics.h"
#include "text.h"

#define TICK_MS 100
#define BACKOFF_MIN_MS 100
#define BACKOFF_MAX_MS 2000
/* Subscriber mode: a link with nothing to read for this long is PINGed,
 * so a stopped or unplugged server is noticed within timeout_ms more. */
#define PING_IDLE_MS 1000
#define HOST_MAX 256
#define ADDR_MAX (HOST_MAX + 16) /* "[host]:65535" */
#define MSG_MAX 1024

enum rstate {
    ST_IDLE,       /* no link; the reconnect timer is armed */
    ST_SENTINEL,   /* link to a sentinel: connecting or asking */
    ST_CONNECTING, /* link to the master: TCP connect + TLS handshake */
    ST_AUTH,       /* AUTH written, waiting for +OK */
    ST_ROLE,       /* ROLE written */
    ST_PING,       /* PING written: does it serve commands (not LOADING)? */
    ST_SUBSCRIBE,  /* SUBSCRIBE written, waiting for the confirmation */
    ST_UP,         /* commands flow */
};

struct rreq {
    struct rreq *next;
    rconn_cb cb;
    void *arg;
    int sent;         /* written to the current link */
    uint64_t sent_ns; /* when, for the timeout and the RTT */
    uint64_t due_ns;  /* rconn_command_later: when it joins the queue */
    int argc;
    const char **argv; /* argv, argvlen and the bytes share this block */
    size_t *argvlen;
};

struct hostport {
    char host[HOST_MAX];
    int port;
};

struct rconn {
    struct event_base *base;
    char *name;

    /* configuration */
    struct hostport master; /* direct address, or the sentinels' answer */
    int master_known;       /* 0 with sentinels until one answered */
    struct hostport *sentinels;
    size_t n_sentinels;
    char *master_name;
    char *username; /* NULL = default user */
    char *password; /* NULL = no AUTH; wiped on destroy */
    SSL_CTX *ssl_ctx; /* NULL = plain text */
    char *server_name; /* NULL = verify the host connected to */
    int client_cert;   /* a client certificate is configured */
    int timeout_ms;
    const char *while_down;
    struct metrics *metrics;
    void (*on_state)(void *arg, int up);
    void *state_arg;
    char *subscribe;
    void (*on_message)(void *arg, const char *payload, size_t len);
    void *message_arg;

    /* the link */
    enum rstate state;
    uint64_t state_since_ns; /* start of this connect (of this sentinel) */
    struct bufferevent *bev;
    SSL *ssl; /* owned by bev */
    redisReader *reader;
    unsigned link_gen; /* bumped whenever a link is closed */
    int tls_done;      /* the TLS handshake of this link completed */
    int got_reply;     /* this link answered something */
    int tls_ok_here;   /* ... and of one to this master address before */
    char link_addr[ADDR_MAX]; /* the peer of this link */
    char addr[ADDR_MAX];      /* the master, for messages */
    uint64_t last_read_ns;
    int ping_out; /* subscriber mode: a PING is unanswered */
    uint64_t ping_ns;

    /* sentinels: one round asks each at most once */
    size_t sentinel_cur;   /* the one being asked */
    size_t sentinel_first; /* where this round started */
    size_t sentinel_tried; /* asked in this round */
    char sentinel_tls_msg[MSG_MAX]; /* a TLS failure in this round */
    char sentinel_why[MSG_MAX]; /* "addr: why; addr: why" of this round */
    int sentinel_answered; /* one answered something in this round */

    struct event *tick;
    struct event *reconnect;
    int backoff_ms;

    struct rreq *head, *tail;
    struct rreq *unsent; /* first request not written to this link */
    size_t n_pending;
    struct rreq *later; /* rconn_command_later, not yet due (unordered) */
    size_t n_later;

    int reported_up;
    int destroying;
    enum rconn_error err;
    char errmsg[MSG_MAX]; /* the whole sentence, for rconn_error() */
    char errwhy[MSG_MAX]; /* the short reason, for rconn_wait() */
    char logged[MSG_MAX]; /* last failure logged at WARN */
};

static void start_connect(struct rconn *c);
static void master_connect(struct rconn *c);
static void sentinel_ask(struct rconn *c);

/* ---- small helpers ---- */

static uint64_t ms_to_ns(int ms)
{
    return (uint64_t)ms * 1000000ull;
}

static void fmt_addr(char *buf, size_t len, const char *host, int port)
{
    if (strchr(host, ':') != NULL) {
        snprintf(buf, len, "[%s]:%d", host, port);
    } else {
        snprintf(buf, len, "%s:%d", host, port);
    }
}

static int is_ip_literal(const char *s)
{
    unsigned char tmp[sizeof(struct in6_addr)];
    return inet_pton(AF_INET, s, tmp) == 1 || inet_pton(AF_INET6, s, tmp) == 1;
}

/* 1 when text starts with the word w (followed by a space or the end). */
static int starts_word(const char *text, const char *w)
{
    size_t n = strlen(w);
    return strncmp(text, w, n) == 0 && (text[n] == ' ' || text[n] == '\0');
}

/* Error replies that mean "not the master / not ready / lost our login":
 * the command is not the caller's business, the connection is. */
static int is_reconnect_error(const char *text)
{
    static const char *const kinds[] = {"READONLY", "MASTERDOWN", "LOADING",
                                        "NOAUTH", "TRYAGAIN"};
    for (size_t i = 0; i < sizeof(kinds) / sizeof(kinds[0]); i++) {
        if (starts_word(text, kinds[i])) {
            return 1;
        }
    }
    return 0;
}

static const char *user_name(const struct rconn *c)
{
    return c->username != NULL ? c->username : "default";
}

/* Parses "host:port" or "[v6]:port" (len bytes at s) into hp. Returns 0
 * or -1. */
static int parse_hostport(const char *s, size_t len, struct hostport *hp)
{
    while (len > 0 && (*s == ' ' || *s == '\t')) {
        s++;
        len--;
    }
    while (len > 0 && (s[len - 1] == ' ' || s[len - 1] == '\t')) {
        len--;
    }
    const char *colon = NULL;
    const char *host = s;
    size_t hlen;
    if (len > 0 && s[0] == '[') {
        const char *close = memchr(s, ']', len);
        if (close == NULL || close + 1 >= s + len || close[1] != ':') {
            return -1;
        }
        host = s + 1;
        hlen = (size_t)(close - host);
        colon = close + 1;
    } else {
        for (size_t i = len; i > 0; i--) {
            if (s[i - 1] == ':') {
                colon = s + i - 1;
                break;
            }
        }
        if (colon == NULL) {
            return -1;
        }
        hlen = (size_t)(colon - s);
        if (memchr(s, ':', hlen) != NULL) {
            return -1; /* a bare v6 address needs brackets */
        }
    }
    size_t plen = (size_t)(s + len - colon - 1);
    if (hlen == 0 || hlen >= HOST_MAX || plen == 0 || plen > 5) {
        return -1;
    }
    int port = 0;
    for (size_t i = 0; i < plen; i++) {
        char d = colon[1 + i];
        if (d < '0' || d > '9') {
            return -1;
        }
        port = port * 10 + (d - '0');
    }
    if (port < 1 || port > 65535) {
        return -1;
    }
    memcpy(hp->host, host, hlen);
    hp->host[hlen] = '\0';
    hp->port = port;
    return 0;
}

/* Parses the "host:port,host:port" sentinel list into c. Returns 0, or -1
 * with a message in err. */
static int parse_sentinels(struct rconn *c, const char *list, char *err,
                           size_t errlen)
{
    size_t n = 1;
    for (const char *p = list; *p != '\0'; p++) {
        n += *p == ',';
    }
    c->sentinels = calloc(n, sizeof(*c->sentinels));
    if (c->sentinels == NULL) {
        text_errf(err, errlen, "%s: out of memory", c->name);
        return -1;
    }
    const char *p = list;
    for (;;) {
        const char *comma = strchr(p, ',');
        size_t len = comma != NULL ? (size_t)(comma - p) : strlen(p);
        if (parse_hostport(p, len, &c->sentinels[c->n_sentinels]) != 0) {
            text_errf(err, errlen,
                      "%s: bad sentinel list '%s': '%.*s' is not host:port",
                      c->name, list, (int)len, p);
            return -1;
        }
        c->n_sentinels++;
        if (comma == NULL) {
            break;
        }
        p = comma + 1;
    }
    assert(c->n_sentinels == n);
    return 0;
}

/* ---- TLS set-up ---- */

/* Refuses to prompt on the terminal for a key's passphrase. */
static int no_passphrase(char *buf, int size, int rwflag, void *u)
{
    (void)buf;
    (void)size;
    (void)rwflag;
    (void)u;
    return 0;
}

/* "No such file or directory" when path cannot be opened, else OpenSSL's
 * reason for the last failure; clears OpenSSL's error queue. */
static const char *file_problem(const char *path, char *buf, size_t len)
{
    FILE *f = fopen(path, "r");
    if (f == NULL) {
        snprintf(buf, len, "%s", strerror(errno));
    } else {
        fclose(f);
        unsigned long e = ERR_peek_last_error();
        const char *r = e != 0 ? ERR_reason_error_string(e) : NULL;
        snprintf(buf, len, "%s", r != NULL ? r : "not usable");
    }
    ERR_clear_error();
    return buf;
}

/* The one SSL_CTX of an rconn: TLS 1.2+, the server verified against the
 * CA file, an optional client certificate checked against its key.
 * Returns 0, or -1 with a message naming the file in err. */
static int tls_setup(struct rconn *c, const struct rconn_opts *o, char *err,
                     size_t errlen)
{
    char why[256];
    ERR_clear_error();
    c->ssl_ctx = SSL_CTX_new(TLS_client_method());
    if (c->ssl_ctx == NULL ||
        SSL_CTX_set_min_proto_version(c->ssl_ctx, TLS1_2_VERSION) != 1) {
        text_errf(err, errlen, "%s: cannot set up TLS", c->name);
        ERR_clear_error();
        return -1;
    }
    SSL_CTX_set_verify(c->ssl_ctx, SSL_VERIFY_PEER, NULL);
    SSL_CTX_set_default_passwd_cb(c->ssl_ctx, no_passphrase);
#ifdef SSL_OP_IGNORE_UNEXPECTED_EOF
    /* A server that closes without close_notify (Redis killed) is an EOF,
     * not a TLS error. */
    SSL_CTX_set_options(c->ssl_ctx, SSL_OP_IGNORE_UNEXPECTED_EOF);
#endif
    if (SSL_CTX_load_verify_locations(c->ssl_ctx, o->tls_ca_file, NULL) !=
        1) {
        text_errf(err, errlen, "%s: Redis TLS CA file %s: %s", c->name,
                  o->tls_ca_file,
                  file_problem(o->tls_ca_file, why, sizeof(why)));
        return -1;
    }
    int has_cert = o->tls_cert_file != NULL && o->tls_cert_file[0] != '\0';
    int has_key = o->tls_key_file != NULL && o->tls_key_file[0] != '\0';
    if (has_cert != has_key) {
        text_errf(err, errlen,
                  "%s: a Redis TLS client certificate needs its key and the "
                  "key its certificate (set both or neither)",
                  c->name);
        return -1;
    }
    if (!has_cert) {
        return 0;
    }
    c->client_cert = 1;
    if (SSL_CTX_use_certificate_chain_file(c->ssl_ctx, o->tls_cert_file) !=
        1) {
        text_errf(err, errlen, "%s: Redis TLS certificate file %s: %s",
                  c->name, o->tls_cert_file,
                  file_problem(o->tls_cert_file, why, sizeof(why)));
        return -1;
    }
    if (SSL_CTX_use_PrivateKey_file(c->ssl_ctx, o->tls_key_file,
                                    SSL_FILETYPE_PEM) != 1 &&
        ERR_GET_REASON(ERR_peek_last_error()) != X509_R_KEY_VALUES_MISMATCH) {
        text_errf(err, errlen,
                  "%s: Redis TLS key file %s: %s (it must be an unencrypted "
                  "PEM key)",
                  c->name, o->tls_key_file,
                  file_problem(o->tls_key_file, why, sizeof(why)));
        return -1;
    }
    if (SSL_CTX_check_private_key(c->ssl_ctx) != 1) {
        text_errf(err, errlen,
                  "%s: Redis TLS key file %s does not match the certificate "
                  "in %s",
                  c->name, o->tls_key_file, o->tls_cert_file);
        ERR_clear_error();
        return -1;
    }
    return 0;
}

/* ---- the link ---- */

static void on_read(struct bufferevent *bev, void *arg);
static void on_event(struct bufferevent *bev, short what, void *arg);

/* Closes the link, if any; callbacks of the old bufferevent never run
 * again (bufferevent_free clears them). NULL-safe on every field. */
static void link_close(struct rconn *c)
{
    if (c->bev != NULL) {
        bufferevent_free(c->bev); /* frees c->ssl and closes the socket */
        c->bev = NULL;
        c->ssl = NULL;
    }
    if (c->reader != NULL) {
        redisReaderFree(c->reader);
        c->reader = NULL;
    }
    c->link_gen++;
    c->tls_done = 0;
    c->got_reply = 0;
    c->ping_out = 0;
}

/* Opens a link to hp (TLS when configured: SNI and the certificate checked
 * against server_name, or hp's host), connect in progress. Returns 0, or
 * -1 with the reason in why (nothing left open). A numeric host is
 * converted without I/O; a name is resolved with a blocking getaddrinfo,
 * once per connect attempt: the one place this module blocks the loop
 * (config normally names an address, or localhost from /etc/hosts). */
static int link_open(struct rconn *c, const struct hostport *hp, char *why,
                     size_t whylen)
{
    struct addrinfo hints, *ai = NULL;
    char port[8];
    SSL *ssl = NULL;
    int rc = -1;

    assert(c->bev == NULL && c->reader == NULL);
    memset(&hints, 0, sizeof(hints));
    hints.ai_family = AF_UNSPEC;
    hints.ai_socktype = SOCK_STREAM;
    hints.ai_flags = AI_NUMERICHOST | AI_NUMERICSERV;
    snprintf(port, sizeof(port), "%d", hp->port);
    int gai = getaddrinfo(hp->host, port, &hints, &ai);
    if (gai == EAI_NONAME) {
        hints.ai_flags = AI_NUMERICSERV | AI_ADDRCONFIG;
        gai = getaddrinfo(hp->host, port, &hints, &ai);
    }
    if (gai != 0 || ai == NULL) {
        snprintf(why, whylen, "cannot resolve '%s': %s", hp->host,
                 gai != 0 ? gai_strerror(gai) : "no address");
        goto done;
    }
    int opts = BEV_OPT_CLOSE_ON_FREE | BEV_OPT_DEFER_CALLBACKS;
    if (c->ssl_ctx != NULL) {
        const char *name =
            c->server_name != NULL ? c->server_name : hp->host;
        ssl = SSL_new(c->ssl_ctx);
        if (ssl == NULL) {
            snprintf(why, whylen, "out of memory");
            goto done;
        }
        int ok;
        if (is_ip_literal(name)) {
            ok = X509_VERIFY_PARAM_set1_ip_asc(SSL_get0_param(ssl), name);
        } else {
            ok = SSL_set_tlsext_host_name(ssl, name) == 1 &&
                 SSL_set1_host(ssl, name) == 1;
        }
        if (!ok) {
            snprintf(why, whylen, "cannot verify TLS name '%s'", name);
            goto done;
        }
        c->bev = bufferevent_openssl_socket_new(
            c->base, -1, ssl, BUFFEREVENT_SSL_CONNECTING, opts);
        if (c->bev != NULL) {
            c->ssl = ssl;
            ssl = NULL; /* the bufferevent owns it now */
            bufferevent_openssl_set_allow_dirty_shutdown(c->bev, 1);
        }
    } else {
        c->bev = bufferevent_socket_new(c->base, -1, opts);
    }
    c->reader = redisReaderCreate();
    if (c->bev == NULL || c->reader == NULL) {
        snprintf(why, whylen, "out of memory");
        goto done;
    }
    bufferevent_setcb(c->bev, on_read, NULL, on_event, c);
    if (bufferevent_enable(c->bev, EV_READ | EV_WRITE) != 0 ||
        bufferevent_socket_connect(c->bev, ai->ai_addr,
                                   (int)ai->ai_addrlen) != 0) {
        snprintf(why, whylen, "%s",
                 evutil_socket_error_to_string(EVUTIL_SOCKET_ERROR()));
        goto done;
    }
    /* Small commands answered one by one (a card's window script waits
     * for the previous one): no Nagle delay, as hiredis does. */
    int one = 1;
    evutil_socket_t fd = bufferevent_getfd(c->bev);
    if (fd >= 0) {
        (void)setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
    }
    c->last_read_ns = clock_mono_ns();
    rc = 0;
done:
    if (ssl != NULL) {
        SSL_free(ssl);
    }
    if (ai != NULL) {
        freeaddrinfo(ai);
    }
    if (rc != 0) {
        link_close(c);
        ERR_clear_error();
    }
    return rc;
}

/* Frees a written secret command, wiping it first. */
static void cleanse_free(const void *data, size_t len, void *extra)
{
    (void)extra;
    OPENSSL_cleanse((void *)data, len);
    free((void *)data);
}

/* Appends one command to the link's output. secret: the buffer holds a
 * password, so it is handed over by reference and wiped once written.
 * Returns 0, or -1 on allocation failure. */
static int write_cmd(struct rconn *c, int argc, const char **argv,
                     const size_t *argvlen, int secret)
{
    char *cmd = NULL;
    int len = redisFormatCommandArgv(&cmd, argc, argv, argvlen);
    if (len < 0) {
        return -1;
    }
    struct evbuffer *out = bufferevent_get_output(c->bev);
    if (secret) {
        if (evbuffer_add_reference(out, cmd, (size_t)len, cleanse_free,
                                   NULL) != 0) {
            cleanse_free(cmd, (size_t)len, NULL);
            return -1;
        }
        return 0;
    }
    int rc = evbuffer_add(out, cmd, (size_t)len);
    redisFreeCommand(cmd);
    return rc == 0 ? 0 : -1;
}

/* Writes the commands not yet written to this link, in order. A command
 * that cannot be formatted (out of memory) stays first unsent; the tick
 * tries again. */
static void flush(struct rconn *c)
{
    uint64_t now = clock_mono_ns();
    while (c->unsent != NULL && c->state == ST_UP) {
        struct rreq *r = c->unsent;
        assert(!r->sent);
        if (write_cmd(c, r->argc, r->argv, r->argvlen, 0) != 0) {
            log_error(c->name, "out of memory writing a command; retrying");
            break;
        }
        r->sent = 1;
        r->sent_ns = now;
        c->unsent = r->next;
    }
}

/* ---- state changes ---- */

static void schedule_reconnect(struct rconn *c)
{
    /* fail() runs from the loop; rconn_destroy() runs no callback of the
     * link and must not be called from one (redis_conn.h). */
    assert(!c->destroying);
    struct timeval tv = {c->backoff_ms / 1000, (c->backoff_ms % 1000) * 1000};
    evtimer_add(c->reconnect, &tv);
    c->backoff_ms *= 2;
    if (c->backoff_ms > BACKOFF_MAX_MS) {
        c->backoff_ms = BACKOFF_MAX_MS;
    }
}

/* Every request becomes unsent: written again on the next link. */
static void requeue_all(struct rconn *c)
{
    size_t n = 0;
    for (struct rreq *r = c->head; r != NULL; r = r->next) {
        r->sent = 0;
        n++;
    }
    assert(n == c->n_pending);
    (void)n;
    c->unsent = c->head;
}

/* The link to the master failed, or the master was refused: closes the
 * link, records why (kind; why is short, "closed"; msg the sentence for
 * rconn_error(), NULL = "Redis ADDR: why"), logs it (a lost connection
 * and a new failure at WARN, a repeat at DEBUG), puts every command back
 * as unsent, reports the state change and arms the reconnect timer. */
static void fail(struct rconn *c, enum rconn_error kind, const char *why,
                 const char *msg)
{
    int was_up = c->state == ST_UP;

    c->err = kind;
    snprintf(c->errwhy, sizeof(c->errwhy), "%s", why);
    if (msg != NULL) {
        snprintf(c->errmsg, sizeof(c->errmsg), "%s", msg);
    } else {
        snprintf(c->errmsg, sizeof(c->errmsg), "Redis %s: %s", c->addr, why);
    }
    if (was_up) {
        log_warn(c->name,
                 "Redis %s lost (%s); %s, commands will be re-sent after "
                 "the reconnect",
                 c->addr, c->errwhy, c->while_down);
        snprintf(c->logged, sizeof(c->logged), "%s", c->errmsg);
    } else if (strcmp(c->logged, c->errmsg) != 0) {
        log_warn(c->name, "%s", c->errmsg);
        snprintf(c->logged, sizeof(c->logged), "%s", c->errmsg);
    } else {
        log_debug(c->name, "%s", c->errmsg);
    }
    link_close(c);
    requeue_all(c);
    c->state = ST_IDLE;
    c->state_since_ns = clock_mono_ns();
    if (c->metrics != NULL) {
        metrics_gauge(c->metrics, METRICS_G_REDIS_UP, 0);
    }
    schedule_reconnect(c);
    if (c->reported_up) {
        c->reported_up = 0;
        if (c->on_state != NULL) {
            c->on_state(c->state_arg, 0);
        }
    }
}

/* The handshake is done: commands flow. */
static void go_up(struct rconn *c)
{
    c->state = ST_UP;
    c->state_since_ns = clock_mono_ns();
    c->backoff_ms = BACKOFF_MIN_MS;
    c->err = RCONN_OK;
    c->errmsg[0] = '\0';
    c->errwhy[0] = '\0';
    c->logged[0] = '\0';
    log_info(c->name, "Redis %s connected%s", c->addr,
             c->ssl != NULL ? " (TLS)" : "");
    if (c->metrics != NULL) {
        metrics_redis_reconnect(c->metrics);
        metrics_gauge(c->metrics, METRICS_G_REDIS_UP, 1);
    }
    if (!c->reported_up) {
        c->reported_up = 1;
        if (c->on_state != NULL) {
            c->on_state(c->state_arg, 1);
        }
    }
    flush(c);
}

/* ---- sentinels ---- */

/* The sentinel being asked failed (why); asks the next one, or ends the
 * round: with TLS failures only, as a TLS error, else "no sentinel knows
 * master 'NAME' (tried ADDR: why; ADDR: why)" - what each one said, so
 * that a list naming a data node or a dead port shows it. */
static void sentinel_next(struct rconn *c, enum rconn_error kind,
                          const char *why)
{
    log_debug(c->name, "sentinel %s: %s", c->link_addr, why);
    size_t wl = strlen(c->sentinel_why);
    if (wl < sizeof(c->sentinel_why)) {
        snprintf(c->sentinel_why + wl, sizeof(c->sentinel_why) - wl,
                 "%s%s: %s", wl > 0 ? "; " : "", c->link_addr, why);
    }
    if (kind == RCONN_E_TLS) {
        snprintf(c->sentinel_tls_msg, sizeof(c->sentinel_tls_msg),
                 "TLS to sentinel %s failed: %s", c->link_addr, why);
    } else if (kind != RCONN_E_NET || strncmp(why, "does not", 8) == 0) {
        c->sentinel_answered = 1;
    }
    link_close(c);
    c->sentinel_tried++;
    if (c->sentinel_tried < c->n_sentinels) {
        c->sentinel_cur = (c->sentinel_cur + 1) % c->n_sentinels;
        sentinel_ask(c);
        return;
    }
    if (c->sentinel_tls_msg[0] != '\0' && !c->sentinel_answered) {
        char msg[MSG_MAX];
        snprintf(msg, sizeof(msg), "%s", c->sentinel_tls_msg);
        fail(c, RCONN_E_TLS, msg, msg);
        return;
    }
    char msg[MSG_MAX];
    text_errf(msg, sizeof(msg), "no sentinel knows master '%s' (tried %s)",
              c->master_name, c->sentinel_why); /* cut to fit */
    fail(c, RCONN_E_NET, msg, msg);
}

/* Opens a link to the sentinel sentinel_cur; link_connected() asks it. */
static void sentinel_ask(struct rconn *c)
{
    const struct hostport *s = &c->sentinels[c->sentinel_cur];
    char why[MSG_MAX];

    fmt_addr(c->link_addr, sizeof(c->link_addr), s->host, s->port);
    c->state = ST_SENTINEL;
    c->state_since_ns = clock_mono_ns();
    if (link_open(c, s, why, sizeof(why)) != 0) {
        sentinel_next(c, RCONN_E_NET, why);
    }
}

/* A sentinel named the master: connect to it. */
static void sentinel_found(struct rconn *c, const char *host, size_t hlen,
                           int port)
{
    int changed = !c->master_known || c->master.port != port ||
                  strlen(c->master.host) != hlen ||
                  memcmp(c->master.host, host, hlen) != 0;
    c->sentinel_first = c->sentinel_cur; /* next round starts here */
    link_close(c);
    if (changed) {
        memcpy(c->master.host, host, hlen);
        c->master.host[hlen] = '\0';
        c->master.port = port;
        c->master_known = 1;
        c->tls_ok_here = 0;
        fmt_addr(c->addr, sizeof(c->addr), c->master.host, port);
        log_info(c->name, "Redis master for '%s' is now %s", c->master_name,
                 c->addr);
    }
    master_connect(c);
}

static void on_sentinel_reply(struct rconn *c, const redisReply *r)
{
    char why[MSG_MAX];
    if (r->type == REDIS_REPLY_NIL ||
        (r->type == REDIS_REPLY_ARRAY && r->elements == 0)) {
        snprintf(why, sizeof(why), "does not know master '%s'",
                 c->master_name);
        sentinel_next(c, RCONN_E_NET, why);
        return;
    }
    if (r->type == REDIS_REPLY_ERROR) {
        snprintf(why, sizeof(why), "answered '%s'", r->str);
        sentinel_next(c, RCONN_E_PROTOCOL, why);
        return;
    }
    if (r->type == REDIS_REPLY_ARRAY && r->elements == 2 &&
        r->element[0]->type == REDIS_REPLY_STRING &&
        r->element[1]->type == REDIS_REPLY_STRING &&
        r->element[0]->len > 0 && r->element[0]->len < HOST_MAX &&
        memchr(r->element[0]->str, '\0', r->element[0]->len) == NULL) {
        char *end = NULL;
        long port = strtol(r->element[1]->str, &end, 10);
        if (end != r->element[1]->str && *end == '\0' && port > 0 &&
            port <= 65535) {
            sentinel_found(c, r->element[0]->str, r->element[0]->len,
                           (int)port);
            return;
        }
    }
    sentinel_next(c, RCONN_E_PROTOCOL, "unexpected answer; is it a sentinel?");
}

/* ---- the master handshake ---- */

/* Opens a link to the master address (direct, or the sentinels'
 * answer); the handshake follows in link_connected(). */
static void master_connect(struct rconn *c)
{
    char why[MSG_MAX];
    fmt_addr(c->addr, sizeof(c->addr), c->master.host, c->master.port);
    snprintf(c->link_addr, sizeof(c->link_addr), "%s", c->addr);
    c->state = ST_CONNECTING;
    c->state_since_ns = clock_mono_ns();
    if (link_open(c, &c->master, why, sizeof(why)) != 0) {
        fail(c, RCONN_E_NET, why, NULL);
    }
}

/* Writes a handshake command and moves to state st; a failure to format
 * (out of memory) drops the link. */
static void handshake_write(struct rconn *c, enum rstate st, int argc,
                            const char **argv, const size_t *argvlen,
                            int secret)
{
    if (write_cmd(c, argc, argv, argvlen, secret) != 0) {
        fail(c, RCONN_E_NET, "out of memory", NULL);
        return;
    }
    c->state = st;
}

static void send_role(struct rconn *c)
{
    const char *argv[] = {"ROLE"};
    const size_t lens[] = {4};
    handshake_write(c, ST_ROLE, 1, argv, lens, 0);
}

static void send_auth(struct rconn *c)
{
    if (c->username != NULL) {
        const char *argv[] = {"AUTH", c->username, c->password};
        const size_t lens[] = {4, strlen(c->username), strlen(c->password)};
        handshake_write(c, ST_AUTH, 3, argv, lens, 1);
    } else {
        const char *argv[] = {"AUTH", c->password};
        const size_t lens[] = {4, strlen(c->password)};
        handshake_write(c, ST_AUTH, 2, argv, lens, 1);
    }
}

/* ROLE is answered while Redis loads its data set; PING is not (LOADING),
 * nor while a script runs too long (BUSY): a server that cannot serve
 * commands yet fails the handshake (and is tried again with back-off)
 * instead of coming up only to drop every command. */
static void send_ping(struct rconn *c)
{
    const char *argv[] = {"PING"};
    const size_t lens[] = {4};
    handshake_write(c, ST_PING, 1, argv, lens, 0);
}

static void send_subscribe(struct rconn *c)
{
    const char *argv[] = {"SUBSCRIBE", c->subscribe};
    const size_t lens[] = {9, strlen(c->subscribe)};
    handshake_write(c, ST_SUBSCRIBE, 2, argv, lens, 0);
}

/* TCP (and TLS) is up on the current link: start its conversation. */
static void link_connected(struct rconn *c)
{
    c->tls_done = c->ssl != NULL;
    c->last_read_ns = clock_mono_ns();
    if (c->state == ST_SENTINEL) {
        const char *argv[] = {"SENTINEL", "get-master-addr-by-name",
                              c->master_name};
        const size_t lens[] = {8, 23, strlen(c->master_name)};
        if (write_cmd(c, 3, argv, lens, 0) != 0) {
            sentinel_next(c, RCONN_E_NET, "out of memory");
        }
        return;
    }
    assert(c->state == ST_CONNECTING);
    c->tls_ok_here = c->ssl != NULL;
    if (c->password != NULL) {
        send_auth(c);
    } else {
        send_role(c);
    }
}

/* An error reply during the handshake (to cmd): its kind and message. */
static void handshake_error(struct rconn *c, const char *cmd,
                            const char *text)
{
    char msg[MSG_MAX];
    if (starts_word(text, "NOAUTH") && c->password == NULL) {
        snprintf(msg, sizeof(msg),
                 "Redis at %s requires a password: set [redis] "
                 "password_file",
                 c->addr);
        fail(c, RCONN_E_AUTH, "requires a password", msg);
    } else if (starts_word(text, "NOAUTH") || starts_word(text, "NOPERM") ||
               starts_word(text, "WRONGPASS")) {
        snprintf(msg, sizeof(msg), "Redis %s refused %s for user '%s': %s",
                 c->addr, cmd, user_name(c), text);
        fail(c, RCONN_E_AUTH, text, msg);
    } else if (is_reconnect_error(text) || starts_word(text, "BUSY") ||
               strncmp(text, "ERR max number of clients", 25) == 0) {
        fail(c, RCONN_E_NET, text, NULL); /* not ready yet: try again */
    } else {
        snprintf(msg, sizeof(msg), "Redis %s answered %s with '%s'", c->addr,
                 cmd, text);
        fail(c, RCONN_E_PROTOCOL, text, msg);
    }
}

static void on_auth_reply(struct rconn *c, const redisReply *r)
{
    char msg[MSG_MAX];
    if (r->type == REDIS_REPLY_STATUS) {
        send_role(c);
    } else if (r->type == REDIS_REPLY_ERROR) {
        /* The server's text never echoes the password. */
        snprintf(msg, sizeof(msg), "Redis %s refused user '%s': %s", c->addr,
                 user_name(c), r->str);
        fail(c, RCONN_E_AUTH, r->str, msg);
    } else {
        snprintf(msg, sizeof(msg),
                 "Redis %s answered AUTH unexpectedly; is it a Redis?",
                 c->addr);
        fail(c, RCONN_E_PROTOCOL, "unexpected answer to AUTH", msg);
    }
}

static void on_role_reply(struct rconn *c, const redisReply *r)
{
    char msg[MSG_MAX];
    if (r->type == REDIS_REPLY_ERROR) {
        handshake_error(c, "ROLE", r->str);
        return;
    }
    const char *role = NULL;
    if (r->type == REDIS_REPLY_ARRAY && r->elements >= 1 &&
        (r->element[0]->type == REDIS_REPLY_STRING ||
         r->element[0]->type == REDIS_REPLY_STATUS)) {
        role = r->element[0]->str;
    }
    if (role == NULL) {
        snprintf(msg, sizeof(msg),
                 "Redis %s answered ROLE unexpectedly; is it a Redis?",
                 c->addr);
        fail(c, RCONN_E_PROTOCOL, "unexpected answer to ROLE", msg);
    } else if (strcmp(role, "master") == 0) {
        send_ping(c);
    } else if (strcmp(role, "slave") == 0 || strcmp(role, "replica") == 0) {
        snprintf(msg, sizeof(msg), "Redis %s is a replica (read-only); %s",
                 c->addr,
                 c->n_sentinels > 0
                     ? "asking the sentinels again"
                     : "point [redis] at the master, or use sentinels");
        fail(c, RCONN_E_ROLE, "a replica", msg);
    } else {
        snprintf(msg, sizeof(msg), "Redis %s is a %s, not the master",
                 c->addr, role);
        fail(c, RCONN_E_ROLE, role, msg);
    }
}

static void on_ping_reply(struct rconn *c, const redisReply *r)
{
    char msg[MSG_MAX];
    if (r->type == REDIS_REPLY_ERROR) {
        handshake_error(c, "PING", r->str);
    } else if (r->type == REDIS_REPLY_STATUS && strcmp(r->str, "PONG") == 0) {
        if (c->subscribe != NULL) {
            send_subscribe(c);
        } else {
            go_up(c);
        }
    } else {
        snprintf(msg, sizeof(msg),
                 "Redis %s answered PING unexpectedly; is it a Redis?",
                 c->addr);
        fail(c, RCONN_E_PROTOCOL, "unexpected answer to PING", msg);
    }
}

static void on_subscribe_reply(struct rconn *c, const redisReply *r)
{
    char msg[MSG_MAX];
    if (r->type == REDIS_REPLY_ERROR) {
        handshake_error(c, "SUBSCRIBE", r->str);
    } else if (r->type == REDIS_REPLY_ARRAY && r->elements == 3 &&
               r->element[0]->type == REDIS_REPLY_STRING &&
               strcmp(r->element[0]->str, "subscribe") == 0) {
        go_up(c);
    } else {
        snprintf(msg, sizeof(msg),
                 "Redis %s answered SUBSCRIBE unexpectedly; is it a Redis?",
                 c->addr);
        fail(c, RCONN_E_PROTOCOL, "unexpected answer to SUBSCRIBE", msg);
    }
}

/* ---- replies once up ---- */

/* Subscriber mode: pushed messages and PING answers. */
static void on_push(struct rconn *c, const redisReply *r)
{
    if (r->type != REDIS_REPLY_ARRAY || r->elements < 1 ||
        r->element[0]->type != REDIS_REPLY_STRING) {
        log_debug(c->name, "Redis %s: ignored an unexpected push", c->addr);
        return;
    }
    const char *kind = r->element[0]->str;
    if (strcmp(kind, "message") == 0 && r->elements == 3 &&
        r->element[2]->type == REDIS_REPLY_STRING) {
        c->on_message(c->message_arg, r->element[2]->str,
                      r->element[2]->len);
    } else if (strcmp(kind, "pong") == 0) {
        c->ping_out = 0;
    }
}

/* The answer to the head request. The request leaves the queue before its
 * callback runs, so the callback may queue more. */
static void on_command_reply(struct rconn *c, const redisReply *r)
{
    char msg[MSG_MAX];
    struct rreq *q = c->head;
    if (q == NULL || !q->sent) {
        snprintf(msg, sizeof(msg),
                 "Redis %s sent a reply no command asked for", c->addr);
        fail(c, RCONN_E_PROTOCOL, "unasked reply", msg);
        return;
    }
    if (r->type == REDIS_REPLY_ERROR && is_reconnect_error(r->str)) {
        /* fail() logs it at WARN as the reason of the lost connection. */
        snprintf(msg, sizeof(msg), "%s", r->str);
        fail(c, RCONN_E_NET, msg, NULL);
        return;
    }
    assert(c->unsent != q);
    c->head = q->next;
    if (c->head == NULL) {
        c->tail = NULL;
    }
    assert(c->n_pending > 0);
    c->n_pending--;
    if (c->metrics != NULL) {
        metrics_redis_rtt(c->metrics,
                          (double)(clock_mono_ns() - q->sent_ns) / 1e9);
    }
    q->cb(q->arg, r);
    free(q);
}

/* One complete reply on the current link, by state. The reply stays the
 * caller's (freed after). */
static void dispatch(struct rconn *c, const redisReply *r)
{
    char msg[MSG_MAX];
    switch (c->state) {
    case ST_SENTINEL:
        on_sentinel_reply(c, r);
        break;
    case ST_AUTH:
        on_auth_reply(c, r);
        break;
    case ST_ROLE:
        on_role_reply(c, r);
        break;
    case ST_PING:
        on_ping_reply(c, r);
        break;
    case ST_SUBSCRIBE:
        on_subscribe_reply(c, r);
        break;
    case ST_UP:
        if (c->subscribe != NULL) {
            on_push(c, r);
        } else {
            on_command_reply(c, r);
        }
        break;
    case ST_CONNECTING:
    case ST_IDLE:
        snprintf(msg, sizeof(msg),
                 "Redis %s spoke before it was asked; is it a Redis?",
                 c->addr);
        fail(c, RCONN_E_PROTOCOL, "spoke first", msg);
        break;
    }
}

/* Feeds what arrived to the parser and handles every complete reply. Each
 * handler may close the link (link_gen changes): then stop. */
static void on_read(struct bufferevent *bev, void *arg)
{
    struct rconn *c = arg;
    struct evbuffer *in = bufferevent_get_input(bev);
    unsigned gen = c->link_gen;
    size_t n;

    assert(bev == c->bev);
    c->last_read_ns = clock_mono_ns();
    while ((n = evbuffer_get_contiguous_space(in)) > 0) {
        const char *p = (const char *)evbuffer_pullup(in, (ev_ssize_t)n);
        if (redisReaderFeed(c->reader, p, n) != REDIS_OK) {
            break; /* out of memory: GetReply reports it */
        }
        evbuffer_drain(in, n);
    }
    for (;;) {
        void *reply = NULL;
        if (redisReaderGetReply(c->reader, &reply) != REDIS_OK) {
            char why[256], msg[MSG_MAX];
            snprintf(why, sizeof(why), "%s", c->reader->errstr);
            if (c->state == ST_SENTINEL) {
                sentinel_next(c, RCONN_E_PROTOCOL, why);
                return;
            }
            snprintf(msg, sizeof(msg),
                     "Redis %s sent something that is not RESP (%s); is it "
                     "a Redis?",
                     c->addr, why);
            fail(c, RCONN_E_PROTOCOL, why, msg);
            return;
        }
        if (reply == NULL) {
            return;
        }
        c->got_reply = 1;
        dispatch(c, reply);
        freeReplyObject(reply);
        if (c->link_gen != gen) {
            return;
        }
    }
}

/* 1 for OpenSSL reasons that mean the peer does not speak TLS. */
static int not_tls_reason(int reason)
{
    return reason == SSL_R_WRONG_VERSION_NUMBER ||
           reason == SSL_R_PACKET_LENGTH_TOO_LONG ||
           reason == SSL_R_HTTP_REQUEST;
}

/* OpenSSL's reason for the failure of the link, "" when there is none;
 * a verification failure says why (SSL_get_verify_result). libevent
 * records up to three codes, popped newest first; next to OpenSSL's own
 * it records the SSL_get_error() value (library 0), used only when there
 * is nothing better: SSL_ERROR_SYSCALL means the socket error serr.
 * Returns 1 when the reason is that socket error, 0 otherwise. */
static int tls_reason(struct rconn *c, int serr, char *buf, size_t len)
{
    unsigned long e, first = 0, verify = 0, pseudo = 0;
    buf[0] = '\0';
    while ((e = bufferevent_get_openssl_error(c->bev)) != 0) {
        if (ERR_GET_LIB(e) == 0) {
            pseudo = e;
        } else {
            first = e;
        }
        if (ERR_GET_REASON(e) == SSL_R_CERTIFICATE_VERIFY_FAILED &&
            ERR_GET_LIB(e) != 0) {
            verify = e;
        }
    }
    ERR_clear_error();
    e = verify != 0 ? verify : first;
    if (e == 0) {
        if (pseudo == SSL_ERROR_SYSCALL && serr != 0) {
            snprintf(buf, len, "%s", evutil_socket_error_to_string(serr));
            return 1;
        }
        if (pseudo != 0) {
            snprintf(buf, len, "TLS protocol error (SSL_get_error %lu)",
                     pseudo);
        }
        return 0;
    }
    const char *r = ERR_reason_error_string(e);
    char code[64];
    if (r == NULL) {
        ERR_error_string_n(e, code, sizeof(code));
        r = code;
    }
    long vr = SSL_get_verify_result(c->ssl);
    if (verify != 0 && vr != X509_V_OK) {
        snprintf(buf, len, "%s (%s)", r, X509_verify_cert_error_string(vr));
    } else if (!c->tls_done && not_tls_reason(ERR_GET_REASON(e))) {
        snprintf(buf, len, "%s; is it a TLS port?", r);
    } else {
        snprintf(buf, len, "%s", r);
    }
    return 0;
}

/* 1 for the socket errors of a TCP connect that never got through: the
 * server is down or unreachable, whatever TLS would have said. */
static int connect_error(int serr)
{
    return serr == ECONNREFUSED || serr == ENETUNREACH ||
           serr == EHOSTUNREACH || serr == ETIMEDOUT ||
           serr == EADDRNOTAVAIL;
}

/* The link was closed or failed: says why and moves on. */
static void on_event(struct bufferevent *bev, short what, void *arg)
{
    struct rconn *c = arg;
    int serr = EVUTIL_SOCKET_ERROR();
    char why[MSG_MAX], msg[MSG_MAX + ADDR_MAX + 32];
    enum rconn_error kind = RCONN_E_NET;

    assert(bev == c->bev);
    (void)bev;
    if (what & BEV_EVENT_CONNECTED) {
        link_connected(c);
        return;
    }
    if (!(what & (BEV_EVENT_EOF | BEV_EVENT_ERROR))) {
        return;
    }
    why[0] = '\0';
    if (c->ssl != NULL) {
        int from_socket = tls_reason(c, serr, why, sizeof(why));
        /* A server that closes while our hello is still unread in its
         * receive buffer makes the kernel answer with a reset, not an
         * end of file: the same close, seen one way or the other. */
        int reset = from_socket && !c->tls_done &&
                    (serr == ECONNRESET || serr == EPIPE);
        if (why[0] != '\0' && !reset) {
            kind = from_socket && connect_error(serr) ? RCONN_E_NET
                                                      : RCONN_E_TLS;
        } else if (((what & BEV_EVENT_EOF) || reset) && !c->tls_done) {
            /* Closed without a word of TLS: what Redis does at maxclients
             * (or shutting down), so tried again like an outage; a
             * plain-text port answers or waits instead (tls_reason(),
             * handshake_timeout()). */
            snprintf(why, sizeof(why),
                     "closed during the TLS handshake (at maxclients? is "
                     "it a TLS port?)");
        }
    }
    if (why[0] == '\0') {
        if (what & BEV_EVENT_EOF) {
            snprintf(why, sizeof(why), "closed");
        } else {
            snprintf(why, sizeof(why), "%s",
                     serr != 0 ? evutil_socket_error_to_string(serr)
                               : "connection error");
        }
    }
    if (c->state == ST_SENTINEL) {
        sentinel_next(c, kind, why);
        return;
    }
    /* Gone before the first answer: the usual reasons, as hints. */
    size_t wl = strlen(why);
    if (c->state != ST_CONNECTING && !c->got_reply && wl < sizeof(why)) {
        if (kind == RCONN_E_TLS && !c->client_cert &&
            strstr(why, "certificate") == NULL) {
            snprintf(why + wl, sizeof(why) - wl,
                     "; does the server want a client certificate?");
        } else if (kind == RCONN_E_NET && c->ssl == NULL) {
            snprintf(why + wl, sizeof(why) - wl,
                     " before the first answer; is it a TLS port?");
        }
    }
    if (kind == RCONN_E_TLS) {
        snprintf(msg, sizeof(msg), "TLS to Redis %s failed: %s", c->addr,
                 why);
        fail(c, kind, why, msg);
    } else {
        fail(c, kind, why, NULL);
    }
}

/* 1 when the current link's TCP connection is established. */
static int tcp_connected(const struct rconn *c)
{
    struct sockaddr_storage ss;
    socklen_t sl = sizeof(ss);
    evutil_socket_t fd = bufferevent_getfd(c->bev);
    return fd >= 0 && getpeername(fd, (struct sockaddr *)&ss, &sl) == 0;
}

/* ---- timers ---- */

static void on_reconnect(evutil_socket_t fd, short what, void *arg)
{
    (void)fd;
    (void)what;
    start_connect(arg);
}

/* The connect + handshake of the master link took longer than timeout_ms.
 * A TLS handshake that got no answer from a server that took the TCP
 * connection is most likely a plain-text port (Redis waits for a line),
 * unless TLS worked at this address before (then: a stopped server). */
static void handshake_timeout(struct rconn *c)
{
    static const char *const cmd[] = {
        [ST_AUTH] = "AUTH", [ST_ROLE] = "ROLE", [ST_PING] = "PING",
        [ST_SUBSCRIBE] = "SUBSCRIBE"};
    char why[128], msg[MSG_MAX];
    if (c->state != ST_CONNECTING) {
        snprintf(why, sizeof(why), "no answer to %s within %d ms",
                 cmd[c->state], c->timeout_ms);
        fail(c, RCONN_E_NET, why, NULL);
    } else if (c->ssl != NULL && !c->tls_ok_here && tcp_connected(c)) {
        snprintf(why, sizeof(why), "no TLS handshake within %d ms",
                 c->timeout_ms);
        snprintf(msg, sizeof(msg),
                 "TLS to Redis %s failed: %s; is it a TLS port?", c->addr,
                 why);
        fail(c, RCONN_E_TLS, why, msg);
    } else {
        snprintf(why, sizeof(why), "connect timed out (%d ms)",
                 c->timeout_ms);
        fail(c, RCONN_E_NET, why, NULL);
    }
}

static void enqueue(struct rconn *c, struct rreq *r);

/* Moves the delayed commands that are due to the end of the queue. */
static void promote_due(struct rconn *c, uint64_t now)
{
    struct rreq **pp = &c->later;
    while (*pp != NULL) {
        struct rreq *r = *pp;
        if (r->due_ns > now) {
            pp = &r->next;
            continue;
        }
        *pp = r->next;
        r->next = NULL;
        c->n_later--;
        enqueue(c, r);
    }
}

/* Every TICK_MS: delayed commands that are due join the queue; timeouts
 * of the connect, the handshake, the oldest written command and
 * (subscriber mode) the keep-alive PING. */
static void on_tick(evutil_socket_t fd, short what, void *arg)
{
    struct rconn *c = arg;
    uint64_t now = clock_mono_ns();
    uint64_t limit = ms_to_ns(c->timeout_ms);
    char why[128];

    (void)fd;
    (void)what;
    promote_due(c, now);
    switch (c->state) {
    case ST_IDLE:
        return;
    case ST_SENTINEL:
        if (now - c->state_since_ns > limit) {
            snprintf(why, sizeof(why), "no answer within %d ms",
                     c->timeout_ms);
            sentinel_next(c, RCONN_E_NET, why);
        }
        return;
    case ST_CONNECTING:
    case ST_AUTH:
    case ST_ROLE:
    case ST_PING:
    case ST_SUBSCRIBE:
        if (now - c->state_since_ns > limit) {
            handshake_timeout(c);
        }
        return;
    case ST_UP:
        break;
    }
    flush(c); /* what an allocation failure left unsent */
    snprintf(why, sizeof(why), "no answer within %d ms", c->timeout_ms);
    /* (written by the flush above or by promote_due(): later than now) */
    if (c->head != NULL && c->head->sent && now > c->head->sent_ns + limit) {
        fail(c, RCONN_E_NET, why, NULL);
        return;
    }
    if (c->subscribe == NULL) {
        return;
    }
    if (c->ping_out && now - c->ping_ns > limit) {
        fail(c, RCONN_E_NET, why, NULL);
    } else if (!c->ping_out && now - c->last_read_ns > ms_to_ns(PING_IDLE_MS)) {
        const char *argv[] = {"PING"};
        const size_t lens[] = {4};
        if (write_cmd(c, 1, argv, lens, 0) == 0) {
            c->ping_out = 1;
            c->ping_ns = now;
        }
    }
}

/* ---- the public API ---- */

/* One connect attempt: a round of sentinels, or the master directly.
 * Failures end in fail(), which arms the next attempt. */
static void start_connect(struct rconn *c)
{
    /* Only the reconnect timer calls this: armed by rconn_new() and by
     * fail(), which closed the link; rconn_destroy() frees the timer. */
    assert(!c->destroying && c->bev == NULL);
    if (c->n_sentinels > 0) {
        c->sentinel_tried = 0;
        c->sentinel_answered = 0;
        c->sentinel_tls_msg[0] = '\0';
        c->sentinel_why[0] = '\0';
        c->sentinel_cur = c->sentinel_first;
        sentinel_ask(c);
    } else {
        master_connect(c);
    }
}

/* strdup of an optional string: NULL and "" give NULL; sets *oom when
 * the copy fails. */
static char *dup_opt(const char *s, int *oom)
{
    if (s == NULL || s[0] == '\0') {
        return NULL;
    }
    char *d = strdup(s);
    if (d == NULL) {
        *oom = 1;
    }
    return d;
}

/* Checks the options of rconn_new() (name: o->name or its default;
 * sentinels: o->sentinels is set). Returns 0, or -1 with the reason in
 * err. */
static int opts_check(const struct rconn_opts *o, const char *name,
                      int sentinels, char *err, size_t errlen)
{
    if (!sentinels && (o->host == NULL || o->host[0] == '\0' ||
                       strlen(o->host) >= HOST_MAX || o->port <= 0 ||
                       o->port > 65535)) {
        text_errf(err, errlen, "%s: Redis needs a host and a port (1-65535)",
                  name);
        return -1;
    }
    if (sentinels && (o->master_name == NULL || o->master_name[0] == '\0')) {
        text_errf(err, errlen, "%s: Redis sentinels need a master name",
                  name);
        return -1;
    }
    if (o->timeout_ms <= 0) {
        text_errf(err, errlen, "%s: the Redis timeout must be positive",
                  name);
        return -1;
    }
    if (o->tls && (o->tls_ca_file == NULL || o->tls_ca_file[0] == '\0')) {
        text_errf(err, errlen, "%s: Redis TLS needs a CA file", name);
        return -1;
    }
    /* SNI carries at most 255 bytes: a longer name could never be sent,
     * and every connect attempt would fail the same way. */
    if (o->tls && o->tls_server_name != NULL &&
        strlen(o->tls_server_name) > TLSEXT_MAXLEN_host_name) {
        text_errf(err, errlen,
                  "%s: the Redis TLS server name is longer than %d "
                  "characters",
                  name, TLSEXT_MAXLEN_host_name);
        return -1;
    }
    if (o->subscribe != NULL && o->on_message == NULL) {
        text_errf(err, errlen, "%s: a Redis subscription needs on_message",
                  name);
        return -1;
    }
    if (o->username != NULL && o->username[0] != '\0' &&
        o->password == NULL) {
        text_errf(err, errlen, "%s: Redis user '%s' has no password", name,
                  o->username);
        return -1;
    }
    return 0;
}

struct rconn *rconn_new(struct event_base *base, const struct rconn_opts *o,
                        char *err, size_t errlen)
{
    const char *name = o->name != NULL && o->name[0] != '\0' ? o->name
                                                             : "redis";
    int sentinels = o->sentinels != NULL && o->sentinels[0] != '\0';
    int oom = 0;
    struct rconn *c = NULL;

    if (opts_check(o, name, sentinels, err, errlen) != 0) {
        return NULL;
    }
    c = calloc(1, sizeof(*c));
    if (c == NULL) {
        text_errf(err, errlen, "%s: out of memory", name);
        return NULL;
    }
    c->base = base;
    c->name = strdup(name);
    if (c->name == NULL) {
        oom = 1;
        goto err;
    }
    if (!sentinels) {
        snprintf(c->master.host, sizeof(c->master.host), "%s", o->host);
        c->master.port = o->port;
        c->master_known = 1;
        fmt_addr(c->addr, sizeof(c->addr), o->host, o->port);
    } else if (parse_sentinels(c, o->sentinels, err, errlen) != 0) {
        goto err;
    }
    c->master_name = dup_opt(o->master_name, &oom);
    c->username = dup_opt(o->username, &oom);
    c->server_name = dup_opt(o->tls_server_name, &oom);
    c->subscribe = o->subscribe != NULL ? strdup(o->subscribe) : NULL;
    if (o->subscribe != NULL && c->subscribe == NULL) {
        oom = 1;
    }
    if (o->password != NULL) {
        c->password = strdup(o->password);
        if (c->password == NULL) {
            oom = 1;
        }
    }
    if (oom) {
        goto err;
    }
    if (o->tls && tls_setup(c, o, err, errlen) != 0) {
        goto err;
    }
    c->timeout_ms = o->timeout_ms;
    c->while_down = o->while_down != NULL ? o->while_down : "commands wait";
    c->metrics = o->metrics;
    c->on_state = o->on_state;
    c->state_arg = o->state_arg;
    c->on_message = o->on_message;
    c->message_arg = o->message_arg;
    c->backoff_ms = BACKOFF_MIN_MS;
    c->state = ST_IDLE;
    c->tick = event_new(base, -1, EV_PERSIST, on_tick, c);
    c->reconnect = evtimer_new(base, on_reconnect, c);
    struct timeval tv = {0, TICK_MS * 1000};
    if (c->tick == NULL || c->reconnect == NULL ||
        event_add(c->tick, &tv) != 0) {
        oom = 1;
        goto err;
    }
    if (c->metrics != NULL) {
        metrics_gauge(c->metrics, METRICS_G_REDIS_UP, 0);
    }
    /* The first connect runs from the loop: creating a connection does no
     * network I/O (`cardwatch check` builds one to validate the settings). */
    struct timeval now = {0, 0};
    if (evtimer_add(c->reconnect, &now) != 0) {
        oom = 1;
        goto err;
    }
    return c;
err:
    if (oom) {
        text_errf(err, errlen, "%s: out of memory", name);
    }
    rconn_destroy(c);
    return NULL;
}

/* A request holding a copy of argv, or NULL (bad argument, subscriber
 * mode, out of memory). */
static struct rreq *new_req(struct rconn *c, int argc,
                            const char *const *argv, const size_t *argvlen,
                            rconn_cb cb, void *arg)
{
    if (c->subscribe != NULL || c->destroying || argc <= 0 || argv == NULL ||
        argvlen == NULL || cb == NULL) {
        return NULL;
    }
    /* One block: the request, argv[], argvlen[], then each argument
     * NUL-terminated. */
    size_t n = (size_t)argc;
    size_t total = sizeof(struct rreq) + n * (sizeof(char *) + sizeof(size_t));
    for (size_t i = 0; i < n; i++) {
        if (argvlen[i] > SIZE_MAX - total - 1) {
            return NULL;
        }
        total += argvlen[i] + 1;
    }
    struct rreq *r = malloc(total);
    if (r == NULL) {
        return NULL;
    }
    memset(r, 0, sizeof(*r));
    r->cb = cb;
    r->arg = arg;
    r->argc = argc;
    r->argv = (const char **)(r + 1);
    r->argvlen = (size_t *)(r->argv + n);
    char *p = (char *)(r->argvlen + n);
    for (size_t i = 0; i < n; i++) {
        memcpy(p, argv[i], argvlen[i]);
        p[argvlen[i]] = '\0';
        r->argv[i] = p;
        r->argvlen[i] = argvlen[i];
        p += argvlen[i] + 1;
    }
    return r;
}

/* Appends r to the queue; written at once when up. */
static void enqueue(struct rconn *c, struct rreq *r)
{
    if (c->tail != NULL) {
        c->tail->next = r;
    } else {
        c->head = r;
    }
    c->tail = r;
    c->n_pending++;
    if (c->unsent == NULL) {
        c->unsent = r;
    }
    if (c->state == ST_UP) {
        flush(c);
    }
}

int rconn_command(struct rconn *c, int argc, const char *const *argv,
                  const size_t *argvlen, rconn_cb cb, void *arg)
{
    struct rreq *r = new_req(c, argc, argv, argvlen, cb, arg);
    if (r == NULL) {
        return -1;
    }
    enqueue(c, r);
    return 0;
}

int rconn_command_later(struct rconn *c, int delay_ms, int argc,
                        const char *const *argv, const size_t *argvlen,
                        rconn_cb cb, void *arg)
{
    struct rreq *r = new_req(c, argc, argv, argvlen, cb, arg);
    if (r == NULL) {
        return -1;
    }
    r->due_ns = clock_mono_ns() + ms_to_ns(delay_ms > 0 ? delay_ms : 0);
    r->next = c->later;
    c->later = r;
    c->n_later++;
    return 0;
}

int rconn_is_up(const struct rconn *c)
{
    return c->state == ST_UP;
}

size_t rconn_pending(const struct rconn *c)
{
    return c->n_pending + c->n_later;
}

enum rconn_error rconn_error(const struct rconn *c, const char **msg)
{
    if (msg != NULL) {
        *msg = c->errmsg;
    }
    return c->err;
}

const char *rconn_address(const struct rconn *c)
{
    return c->master_known ? c->addr : c->link_addr;
}

/* Errors that waiting longer does not cure. A replica reached through
 * sentinels is not one: during a failover the sentinels may still name
 * the old master for a moment. */
static int wait_gives_up(const struct rconn *c)
{
    switch (c->err) {
    case RCONN_E_AUTH:
    case RCONN_E_TLS:
    case RCONN_E_PROTOCOL:
        return 1;
    case RCONN_E_ROLE:
        return c->n_sentinels == 0;
    case RCONN_OK:
    case RCONN_E_NET:
        break;
    }
    return 0;
}

static void on_wait_timer(evutil_socket_t fd, short what, void *arg)
{
    (void)fd;
    (void)what;
    *(int *)arg = 1;
}

int rconn_wait(struct rconn *c, int timeout_ms, char *err, size_t errlen)
{
    int expired = 0, rc = -1;
    struct event *t = evtimer_new(c->base, on_wait_timer, &expired);
    if (t == NULL) {
        text_errf(err, errlen, "%s: out of memory", c->name);
        return -1;
    }
    struct timeval tv = {timeout_ms / 1000, (timeout_ms % 1000) * 1000};
    evtimer_add(t, &tv);
    for (;;) {
        if (rconn_pending(c) == 0) {
            rc = 0;
            break;
        }
        if (wait_gives_up(c)) {
            text_errf(err, errlen, "%s", c->errmsg);
            break;
        }
        if (expired) {
            const char *why = c->errwhy[0] != '\0' ? c->errwhy : NULL;
            if (c->n_sentinels > 0 && !c->master_known) {
                text_errf(err, errlen,
                          "Redis master '%s' did not answer within %d ms%s%s",
                          c->master_name, timeout_ms, why ? ": " : "",
                          why ? why : "");
            } else {
                text_errf(err, errlen,
                          "Redis %s did not answer within %d ms%s%s",
                          c->addr, timeout_ms, why ? ": " : "",
                          why ? why : "");
            }
            break;
        }
        if (event_base_loop(c->base, EVLOOP_ONCE) < 0) {
            text_errf(err, errlen, "%s: event loop failed", c->name);
            break;
        }
    }
    event_free(t);
    return rc;
}

void rconn_destroy(struct rconn *c)
{
    if (c == NULL) {
        return;
    }
    c->destroying = 1;
    link_close(c);
    if (c->tick != NULL) {
        event_free(c->tick);
    }
    if (c->reconnect != NULL) {
        event_free(c->reconnect);
    }
    while (c->head != NULL) {
        struct rreq *r = c->head;
        c->head = r->next;
        c->n_pending--;
        r->cb(r->arg, NULL);
        free(r);
    }
    assert(c->n_pending == 0);
    while (c->later != NULL) {
        struct rreq *r = c->later;
        c->later = r->next;
        c->n_later--;
        r->cb(r->arg, NULL);
        free(r);
    }
    if (c->ssl_ctx != NULL) {
        SSL_CTX_free(c->ssl_ctx);
    }
    if (c->password != NULL) {
        OPENSSL_cleanse(c->password, strlen(c->password));
        free(c->password);
    }
    free(c->sentinels);
    free(c->master_name);
    free(c->username);
    free(c->server_name);
    free(c->subscribe);
    free(c->name);
    free(c);
}
