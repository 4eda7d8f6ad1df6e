/* redis_cfg.h - the [redis] section turned into a Redis connection: the one
 * place that reads the password file and maps address, sentinels, TLS and
 * timeouts onto rconn_opts, so every Redis user connects the same way.
 */
#ifndef CARDWATCH_REDIS_CFG_H
#define CARDWATCH_REDIS_CFG_H

#include <stddef.h>

#include "config.h"
#include "redis_conn.h"

/* What differs between the users of a connection. */
struct redis_cfg_use {
    const char *name;       /* for log lines: "exposure", "feed subscriber" */
    const char *while_down; /* e.g. "intake pauses"; NULL = default */
    struct metrics *metrics;        /* may be NULL */
    void (*on_state)(void *arg, int up);
    void *state_arg;
    const char *subscribe; /* subscriber mode: the channel; else NULL */
    void (*on_message)(void *arg, const char *payload, size_t len);
    void *message_arg;
    /* 1: wait (up to timeout_ms, running base) for the first answer and
     * fail when Redis refused the configuration - credentials, TLS, a
     * replica, not a Redis - so that a command does not start on those.
     * A Redis that is merely unreachable is not a failure (the service
     * starts with intake paused and keeps trying). Before anything else
     * is on base: the wait runs its loop. */
    int startup_check;
};

/* Opens a connection as [redis] says (address or sentinels, AUTH with
 * username and the password read from password_file, TLS, timeout_ms),
 * and with use->startup_check waits for it as described there.
 * The password is read with secret_file_read (a group- or world-readable
 * file is refused), handed to rconn_new and wiped here. Returns the
 * connection (owned by the caller: rconn_destroy), or NULL with a message
 * in err (password file, TLS files, a bad option). */
struct rconn *redis_cfg_connect(struct event_base *base,
                                const struct config *c,
                                const struct redis_cfg_use *use, char *err,
                                size_t errlen);

/* "127.0.0.1:6379", or "master 'cw' via sentinels a:1,b:2", for messages. */
void redis_cfg_describe(const struct config *c, char *buf, size_t len);

#endif
