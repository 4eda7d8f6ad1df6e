/* feed_sub.c - the issuer feed's subscriber connection: SUBSCRIBEs to the
 * feed channel, on which the ledger names the issuer that has news, so
 * that waiting clients are answered at once. Private to the feed
 * (feed_int.h).
 */
#include <string.h>

#include "feed_int.h"
#include "log.h"
#include "redis_cfg.h"

/* ---- the subscriber connection ---- */

/* The subscriber's state: while it is down, the poll timer finds news. */
static void on_sub_state(void *arg, int up)
{
    struct feed *f = arg;
    if (up) {
        log_info(MOD, "subscribed to %s", f->channel);
        f->sub_up = 1;
        feed_check_all(f); /* what came while the subscription was down */
    } else {
        if (f->sub_up) {
            log_warn(MOD, "subscription to %s lost; polling every %d ms "
                     "meanwhile", f->channel, POLL_MS);
        }
        f->sub_up = 0;
    }
}

/* A PUBLISH names the issuer that has news. */
static void on_sub_message(void *arg, const char *payload, size_t len)
{
    struct feed *f = arg;
    for (size_t i = 0; i < f->c->n_issuers; i++) {
        const char *id = f->c->issuers[i].id;
        if (strlen(id) == len && memcmp(id, payload, len) == 0) {
            feed_issuer_check(f, i);
            return;
        }
    }
}


int feed_sub_open(struct feed *f, char *errbuf, size_t errlen)
{
    struct redis_cfg_use su = {
        .name = "feed subscriber",
        .while_down = "the feed polls",
        .on_state = on_sub_state,
        .state_arg = f,
        .subscribe = f->channel,
        .on_message = on_sub_message,
        .message_arg = f,
    };
    f->sub = redis_cfg_connect(f->base, f->c, &su, errbuf, errlen);
    return f->sub != NULL ? 0 : -1;
}
