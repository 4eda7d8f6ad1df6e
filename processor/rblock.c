/* rblock.c - see rblock.h. */
#include "rblock.h"

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <event2/event.h>

#include "log.h"
#include "redis_cfg.h"

#define WAIT_MS 30000 /* for an answer, reconnects included */

int rblock_open(struct rblock *L, const struct config *c, const char *mod)
{
    L->mod = mod;
    char err[512];
    L->rc = NULL;
    L->base = event_base_new();
    if (L->base == NULL) {
        log_error(L->mod, "out of memory");
        return -1;
    }
    struct redis_cfg_use use = {.name = "redis", .while_down = "the "
                                "command waits"};
    L->rc = redis_cfg_connect(L->base, c, &use, err, sizeof(err));
    if (L->rc == NULL) {
        log_error(L->mod, "%s", err);
        event_base_free(L->base);
        L->base = NULL;
        return -1;
    }
    return 0;
}

void rblock_close(struct rblock *L)
{
    rconn_destroy(L->rc);
    if (L->base != NULL) {
        event_base_free(L->base);
    }
    L->rc = NULL;
    L->base = NULL;
}

/* Waits until every command sent was answered. */
int rblock_wait(struct rblock *L)
{
    char err[512];
    if (rconn_wait(L->rc, WAIT_MS, err, sizeof(err)) != 0) {
        log_error(L->mod, "%s", err);
        return -1;
    }
    return 0;
}

/* Splits a RESP request ("*N\r\n$len\r\nbytes\r\n"...) as hiredis's
 * formatter writes it into argv pointing into buf. Returns argc, -1 when
 * it is not one (it always is). */
static int resp_split(const char *buf, size_t len, const char **argv,
                      size_t *lens, int max)
{
    const char *p = buf, *end = buf + len;
    if (p >= end || *p != '*') {
        return -1;
    }
    long n = strtol(p + 1, (char **)&p, 10);
    if (n <= 0 || n > max || end - p < 2) {
        return -1;
    }
    p += 2;
    for (long i = 0; i < n; i++) {
        if (p >= end || *p != '$') {
            return -1;
        }
        long l = strtol(p + 1, (char **)&p, 10);
        if (l < 0 || end - p < l + 4) {
            return -1;
        }
        argv[i] = p + 2;
        lens[i] = (size_t)l;
        p += 2 + l + 2;
    }
    return (int)n;
}


/* Queues one command (format as for redisCommand). cb gets the reply
 * (borrowed; NULL when the connection is destroyed first). */
int rblock_sendv(struct rblock *L, rblock_cb cb, void *arg, const char *fmt,
                 va_list ap)
{
    if (L->rc == NULL) {
        return -1; /* closed after a failure */
    }
    char *buf = NULL;
    int len = redisvFormatCommand(&buf, fmt, ap);
    if (len < 0) {
        log_error(L->mod, "out of memory");
        return -1;
    }
    const char *argv[16];
    size_t lens[16];
    int argc = resp_split(buf, (size_t)len, argv, lens, 16);
    int rc = argc > 0 ? rconn_command(L->rc, argc, argv, lens, cb, arg) : -1;
    free(buf);
    if (rc != 0) {
        log_error(L->mod, "out of memory");
    }
    return rc;
}

int rblock_send(struct rblock *L, rblock_cb cb, void *arg, const char *fmt,
                 ...)
{
    va_list ap;
    va_start(ap, fmt);
    int rc = rblock_sendv(L, cb, arg, fmt, ap);
    va_end(ap);
    return rc;
}

int rblock_sendargv(struct rblock *L, rblock_cb cb, void *arg, int argc,
                    const char *const *argv, const size_t *lens)
{
    if (L->rc == NULL) {
        return -1; /* closed after a failure */
    }
    if (rconn_command(L->rc, argc, argv, lens, cb, arg) != 0) {
        log_error(L->mod, "out of memory");
        return -1;
    }
    return 0;
}

/* A deep copy of a reply, freed with rblock_free(). */
static redisReply *reply_copy(const redisReply *r)
{
    redisReply *c = calloc(1, sizeof(*c));
    if (c == NULL) {
        return NULL;
    }
    c->type = r->type;
    c->integer = r->integer;
    if (r->str != NULL) {
        c->str = malloc(r->len + 1);
        if (c->str == NULL) {
            free(c);
            return NULL;
        }
        memcpy(c->str, r->str, r->len);
        c->str[r->len] = '\0';
        c->len = r->len;
    }
    if (r->elements > 0) {
        c->element = calloc(r->elements, sizeof(*c->element));
        if (c->element == NULL) {
            free(c->str);
            free(c);
            return NULL;
        }
        c->elements = r->elements;
        for (size_t i = 0; i < r->elements; i++) {
            c->element[i] = reply_copy(r->element[i]);
            if (c->element[i] == NULL) {
                c->type = REDIS_REPLY_NIL; /* a failed copy: not a reply */
            }
        }
    }
    return c;
}

void rblock_free(redisReply *r)
{
    if (r == NULL) {
        return;
    }
    for (size_t i = 0; i < r->elements; i++) {
        rblock_free(r->element[i]);
    }
    free(r->element);
    free(r->str);
    free(r);
}

struct lanswer {
    redisReply *r;
    int done;
};

static void on_answer(void *arg, const redisReply *r)
{
    struct lanswer *a = arg;
    a->done = 1;
    a->r = r != NULL ? reply_copy(r) : NULL;
}

/* Runs one command to its answer; returns the reply (caller frees with
 * reply_free) or NULL after logging the failure. */
redisReply *rblock_cmd(struct rblock *L, const char *what, const char *fmt,
                       ...)
{
    struct lanswer *a = calloc(1, sizeof(*a));
    if (a == NULL) {
        log_error(L->mod, "out of memory");
        return NULL;
    }
    va_list ap;
    va_start(ap, fmt);
    int rc = rblock_sendv(L, on_answer, a, fmt, ap);
    va_end(ap);
    if (rc != 0) {
        free(a);
        return NULL;
    }
    if (rblock_wait(L) != 0) {
        /* still queued: its late answer must find a live context */
        rblock_close(L);
        rblock_free(a->r);
        free(a);
        return NULL;
    }
    redisReply *r = a->r;
    free(a);
    if (r == NULL) {
        log_error(L->mod, "Redis %s failed: out of memory", what);
        return NULL;
    }
    if (r->type == REDIS_REPLY_ERROR) {
        log_error(L->mod, "Redis %s refused %s: %s", rconn_address(L->rc), what,
                  r->str);
        rblock_free(r);
        return NULL;
    }
    return r;
}

int rblock_script(struct rblock *L, const char *src, char sha[41])
{
    redisReply *r = rblock_cmd(L, "SCRIPT LOAD", "SCRIPT LOAD %s", src);
    if (r == NULL || r->type != REDIS_REPLY_STRING || r->len != 40) {
        rblock_free(r);
        return -1;
    }
    memcpy(sha, r->str, 41);
    rblock_free(r);
    return 0;
}

