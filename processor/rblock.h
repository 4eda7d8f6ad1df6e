/* rblock.h - a blocking face on a Redis connection, for the command-line
 * tools (`cardwatch load | breaches | unload | migrate`): each call runs
 * the connection's event loop until Redis answered, so AUTH, TLS,
 * Sentinel and reconnects (redis_conn.h) work here as in the service.
 * Commands are written with hiredis's format strings (binary safe: %s,
 * %b, %lld) or as an argv. Failures are logged under the caller's module
 * name.
 */
#ifndef CARDWATCH_RBLOCK_H
#define CARDWATCH_RBLOCK_H

#include <stdarg.h>
#include <stddef.h>

#include <hiredis/hiredis.h>

#include "config.h"
#include "redis_conn.h"

struct rblock {
    struct event_base *base;
    struct rconn *rc;  /* NULL once closed */
    const char *mod;   /* module name for log lines (a literal) */
};

/* Gets the answer of a queued command: r is borrowed for the call, NULL
 * when the connection was destroyed first. */
typedef void (*rblock_cb)(void *arg, const redisReply *r);

/* Connects to the Redis of config c (not waiting for the link: the first
 * command does). Returns 0, or -1 after logging why. */
int rblock_open(struct rblock *L, const struct config *c, const char *mod);

/* Destroys the connection (queued commands get NULL). Idempotent. */
void rblock_close(struct rblock *L);

/* Waits until every queued command was answered (30 s, reconnects
 * included). Returns 0, or -1 after logging why. */
int rblock_wait(struct rblock *L);

/* Queue one command, formatted as for redisCommand (at most 16
 * arguments), or given as an argv (copied). cb runs when it is answered
 * (during rblock_wait). Return 0, or -1 after logging (closed, out of
 * memory). */
int rblock_sendv(struct rblock *L, rblock_cb cb, void *arg, const char *fmt,
                 va_list ap);
int rblock_send(struct rblock *L, rblock_cb cb, void *arg, const char *fmt,
                ...);
int rblock_sendargv(struct rblock *L, rblock_cb cb, void *arg, int argc,
                    const char *const *argv, const size_t *lens);

/* Runs one command to its answer. Returns the reply (the caller frees it
 * with rblock_free), or NULL after logging: "Redis ADDR refused <what>:
 * <error>" for an error reply, or why no answer came (the connection is
 * then closed). */
redisReply *rblock_cmd(struct rblock *L, const char *what, const char *fmt,
                       ...);

/* Frees a reply of rblock_cmd. NULL is a no-op. */
void rblock_free(redisReply *r);

/* SCRIPT LOAD of src: its SHA1 (40 hex + NUL) into sha. Returns 0, or -1
 * after logging. */
int rblock_script(struct rblock *L, const char *src, char sha[41]);

#endif
