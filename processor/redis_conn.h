/* redis_conn.h - one asynchronous connection to Redis on the libevent
 * loop: the only place in cardwatch that opens a socket to Redis.
 *
 * Built from a libevent bufferevent (with libevent_openssl's filter when
 * TLS is on), hiredis's RESP formatter (redisFormatCommandArgv) and its
 * reply parser (redisReader). hiredis 0.14's own async context has no TLS,
 * no timeouts and no hook for a handshake; this module adds them:
 *
 *   connect -> [TLS handshake, CA + server name verified]
 *           -> [AUTH [username] password]
 *           -> ROLE (must be "master": a replica is refused)
 *           -> PING (answered: Redis is not still loading its data or
 *              busy with a script; else tried again with back-off)
 *           -> [SUBSCRIBE channel, subscriber mode]
 *           -> up: queued commands are written, in order
 *
 * With sentinels configured, each (re)connect first asks the sentinels in
 * turn (SENTINEL get-master-addr-by-name) where the master is.
 *
 * Every command is kept until Redis answered it: after a lost connection,
 * a timeout (no answer within timeout_ms) or a reply that means "not the
 * master / not ready" (READONLY, MASTERDOWN, LOADING, NOAUTH), the
 * connection is dropped, re-made with back-off (100 ms doubling to 2 s)
 * and every unanswered command is sent again. Commands must therefore be
 * idempotent. Other error replies are passed to the caller.
 */
#ifndef CARDWATCH_REDIS_CONN_H
#define CARDWATCH_REDIS_CONN_H

#include <stddef.h>

struct event_base;
struct metrics;
struct redisReply;
struct rconn;

/* Why the connection is not up, by kind: callers stop start-up on the
 * kinds that are configuration errors (auth, TLS, role). */
enum rconn_error {
    RCONN_OK = 0,     /* up, or never tried yet */
    RCONN_E_NET,      /* not reachable, closed, timed out, sentinels */
    RCONN_E_AUTH,     /* the server refused the credentials / wants some */
    RCONN_E_TLS,      /* TLS handshake or certificate verification */
    RCONN_E_ROLE,     /* the server is a replica, not the master */
    RCONN_E_PROTOCOL, /* not a Redis (unparsable reply) */
};

struct rconn_opts {
    const char *name;     /* who uses it, for log lines: "exposure" */
    const char *host;     /* direct address (ignored with sentinels) */
    int port;
    const char *sentinels;   /* "host:port,host:port" or NULL/"" */
    const char *master_name; /* required with sentinels */
    const char *username;    /* ACL user; NULL/"" = default user */
    const char *password;    /* NULL = no AUTH; copied, wiped on destroy */
    int tls;                 /* 1 = TLS to Redis and to the sentinels */
    const char *tls_ca_file; /* required with tls */
    const char *tls_cert_file; /* client certificate (mutual TLS) or NULL */
    const char *tls_key_file;
    const char *tls_server_name; /* name to verify; NULL = the host */
    int timeout_ms; /* connect+handshake, and per-command answer */
    /* What a lost connection means to the user, for the log line (e.g.
     * "intake pauses"); NULL = "commands wait". Not copied: a literal. */
    const char *while_down;
    /* redis_up gauge, reconnect counter, RTT histogram; may be NULL. */
    struct metrics *metrics;
    /* Called when the connection comes up (up = 1) or goes down (0). */
    void (*on_state)(void *arg, int up);
    void *state_arg;
    /* Subscriber mode: after the handshake SUBSCRIBE to this channel;
     * every message is passed to on_message (payload borrowed for the
     * call). rconn_command() is refused in this mode. */
    const char *subscribe;
    void (*on_message)(void *arg, const char *payload, size_t len);
    void *message_arg;
};

/* Creates the connection; it starts connecting when base runs (no network
 * I/O happens here, so a connection can be built just to validate the
 * settings). Strings in opts are copied. Returns NULL with a message in err on a bad option (e.g. tls
 * without a CA file, an unreadable CA/cert/key, a bad sentinel list) or
 * allocation failure; a Redis that is not reachable yet is not an error
 * (the module keeps trying). */
struct rconn *rconn_new(struct event_base *base, const struct rconn_opts *o,
                        char *err, size_t errlen);

/* Called exactly once per rconn_command(): with the reply (borrowed for
 * the call; an error reply other than the reconnect kinds above is passed
 * through), or with NULL when the connection is destroyed first. */
typedef void (*rconn_cb)(void *arg, const struct redisReply *reply);

/* Queues one command (argv copied), written at once when up, in order with
 * every other command; re-sent after every reconnect until answered.
 * Returns 0, or -1 on allocation failure or in subscriber mode (cb is then
 * not called). */
int rconn_command(struct rconn *c, int argc, const char *const *argv,
                  const size_t *argvlen, rconn_cb cb, void *arg);

/* Like rconn_command(), but the command joins the queue (at its end)
 * only after delay_ms, checked every 100 ms: for a caller that retries
 * after an error reply (an ACL refusal, OOM) without spinning. Counted by
 * rconn_pending(); answered with NULL by rconn_destroy() if still
 * waiting. Returns 0, or -1 as rconn_command() (cb then not called). */
int rconn_command_later(struct rconn *c, int delay_ms, int argc,
                        const char *const *argv, const size_t *argvlen,
                        rconn_cb cb, void *arg);

/* 1 when the handshake is done and commands flow. */
int rconn_is_up(const struct rconn *c);

/* Commands queued and not yet answered. */
size_t rconn_pending(const struct rconn *c);

/* Why the connection is down (RCONN_OK when up or not tried yet) and the
 * last message, e.g. "Redis 127.0.0.1:6390 refused user 'cw': WRONGPASS
 * invalid username-password pair or user is disabled." Never contains the
 * password. The string lives until the next state change. */
enum rconn_error rconn_error(const struct rconn *c, const char **msg);

/* "host:port" of the server now connected to (or last tried). */
const char *rconn_address(const struct rconn *c);

/* Runs base until no command is pending, the connection fails with a
 * configuration error (auth, TLS, role) or timeout_ms passed. For the
 * command-line tools (load, breaches) that want a blocking call. Returns
 * 0, or -1 with the reason in err. */
int rconn_wait(struct rconn *c, int timeout_ms, char *err, size_t errlen);

/* Closes the connection; unanswered commands get a NULL reply. NULL is a
 * no-op. Must not be called from inside an rconn callback. */
void rconn_destroy(struct rconn *c);

#endif
