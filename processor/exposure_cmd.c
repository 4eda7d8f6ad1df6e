/* exposure_cmd.c - the exposure module's commands on the Redis
 * connection (each answered exactly once, possibly after the module is
 * gone) and what it tells its owner about its state; the bottom of
 * exposure.c, exposure_guard.c and exposure_filter.c (see exposure.h). */
#include <stdlib.h>

#include <hiredis/hiredis.h>

#include "exposure_int.h"
#include "redis_conn.h"

static void on_ctx_reply(void *arg, const redisReply *r)
{
    struct xctx *c = arg;
    struct exposure *x = c->x;
    if (x != NULL) {
        if (c->prev != NULL) {
            c->prev->next = c->next;
        } else {
            x->ctxs = c->next;
        }
        if (c->next != NULL) {
            c->next->prev = c->prev;
        }
        c->fn(x, r, c->arg); /* r NULL: the connection is going away */
    }
    free(c);
}

/* Sends one command; fn(x, reply, arg) runs when it is answered (reply
 * NULL: the connection was destroyed first). Returns 0, or -1 on
 * allocation failure (fn is then not called). */
int xp_cmd(struct exposure *x, int argc, const char *const *argv,
           const size_t *lens,
           void (*fn)(struct exposure *, const redisReply *, void *),
           void *arg)
{
    struct xctx *c = calloc(1, sizeof(*c));
    if (c == NULL) {
        return -1;
    }
    c->x = x;
    c->fn = fn;
    c->arg = arg;
    if (rconn_command(x->rc, argc, argv, lens, on_ctx_reply, c) != 0) {
        free(c);
        return -1;
    }
    c->next = x->ctxs;
    if (x->ctxs != NULL) {
        x->ctxs->prev = c;
    }
    x->ctxs = c;
    return 0;
}

/* Tells the user when lookups can (1) or cannot (0) be answered: the link
 * is up and the exposed-card set passed its check. */
void xp_report_state(struct exposure *x)
{
    int up = x->link_up && x->guard == G_OK;
    if (up != x->reported_up) {
        x->reported_up = up;
        if (x->on_state != NULL) {
            x->on_state(x->state_arg, up);
        }
    }
}
