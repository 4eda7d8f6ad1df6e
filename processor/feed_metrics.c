/* feed_metrics.c - the issuer feed's metrics: its counters, and the
 * issuers' outcome counts read from Redis every few seconds for them.
 */
#include <inttypes.h>

#include "clock.h"
#include "feed_int.h"

/* ---- statistics for the metrics ---- */

static void on_stats(void *arg, const redisReply *r)
{
    struct issuer_state *s = arg;
    s->stats_pending = 0;
    if (r == NULL || s->f->destroying || r->type != REDIS_REPLY_ARRAY) {
        return;
    }
    struct feed_stats st = {0};
    for (size_t i = 0; i + 1 < r->elements; i += 2) {
        const redisReply *k = r->element[i], *v = r->element[i + 1];
        if (k->type == REDIS_REPLY_STRING && v->type == REDIS_REPLY_STRING &&
            feed_stats_add(&st, k->str, k->len, v->str, v->len) != 0) {
            feed_stats_free(&st);
            return; /* keep the last good counts */
        }
    }
    feed_stats_finish(&st);
    feed_stats_free(&s->stats);
    s->stats = st;
}

void feed_stats_refresh(struct feed *f)
{
    if (!rconn_is_up(f->rc)) {
        return;
    }
    f->stats_asked = 1;
    for (size_t i = 0; i < f->c->n_issuers; i++) {
        struct issuer_state *s = &f->iss[i];
        if (s->stats_pending) {
            continue;
        }
        const char *argv[] = {"HGETALL", s->skey};
        size_t lens[] = {7, strlen(s->skey)};
        if (rconn_command(f->rc, 2, argv, lens, on_stats, s) == 0) {
            s->stats_pending = 1;
        }
    }
}

void feed_on_stats_timer(evutil_socket_t fd, short what, void *arg)
{
    (void)fd;
    (void)what;
    struct feed *f = arg;
    feed_throttle_sweep(f->throttle, clock_mono_ns());
    feed_stats_refresh(f);
}

void feed_metrics(const struct feed *f, FILE *out)
{
    if (f == NULL) {
        return;
    }
    fputs("# HELP cardwatch_feed_requests_total Issuer feed requests "
          "answered, by HTTP status.\n"
          "# TYPE cardwatch_feed_requests_total counter\n",
          out);
    for (int s = 0; s < MAX_STATUS; s++) {
        if (f->status_count[s] > 0) {
            fprintf(out,
                    "cardwatch_feed_requests_total{status=\"%d\"} %" PRIu64
                    "\n",
                    s, f->status_count[s]);
        }
    }
    fprintf(out,
            "# HELP cardwatch_feed_waiting_clients Long polls and event "
            "streams open.\n"
            "# TYPE cardwatch_feed_waiting_clients gauge\n"
            "cardwatch_feed_waiting_clients{kind=\"long_poll\"} %zu\n"
            "cardwatch_feed_waiting_clients{kind=\"stream\"} %zu\n"
            "# HELP cardwatch_feed_connections Client connections open "
            "(from accept to close).\n"
            "# TYPE cardwatch_feed_connections gauge\n"
            "cardwatch_feed_connections %zu\n"
            "# HELP cardwatch_feed_connections_limit Connections admitted at "
            "most: [feed] max_clients, or fewer for the open-file limit.\n"
            "# TYPE cardwatch_feed_connections_limit gauge\n"
            "cardwatch_feed_connections_limit %zu\n"
            "# HELP cardwatch_feed_redis_up 1 when the feed's Redis "
            "connection answers.\n"
            "# TYPE cardwatch_feed_redis_up gauge\n"
            "cardwatch_feed_redis_up %d\n"
            "# HELP cardwatch_feed_subscribed 1 when the feed is subscribed "
            "to new-alert notices.\n"
            "# TYPE cardwatch_feed_subscribed gauge\n"
            "cardwatch_feed_subscribed %d\n",
            f->n_polls, f->n_streams, f->n_conns, f->cap, rconn_is_up(f->rc),
            f->sub_up);
    fprintf(out,
            "# HELP cardwatch_feed_connections_shed_total Connections the "
            "feed closed to protect itself: full (503 at accept, nothing to "
            "reclaim), reclaimed (idle or still sending a head, closed for "
            "a new one), timeout (request not complete within "
            "request_timeout_s).\n"
            "# TYPE cardwatch_feed_connections_shed_total counter\n"
            "cardwatch_feed_connections_shed_total{reason=\"full\"} %" PRIu64
            "\n"
            "cardwatch_feed_connections_shed_total{reason=\"reclaimed\"} "
            "%" PRIu64 "\n"
            "cardwatch_feed_connections_shed_total{reason=\"timeout\"} "
            "%" PRIu64 "\n"
            "# HELP cardwatch_feed_accept_errors_total accept() failures on "
            "the feed's port (EMFILE...).\n"
            "# TYPE cardwatch_feed_accept_errors_total counter\n"
            "cardwatch_feed_accept_errors_total %" PRIu64 "\n"
            "# HELP cardwatch_feed_auth_failures_total Requests answered 401.\n"
            "# TYPE cardwatch_feed_auth_failures_total counter\n"
            "cardwatch_feed_auth_failures_total %" PRIu64 "\n"
            "# HELP cardwatch_feed_auth_throttled_total Requests answered 429 "
            "because their peer failed to authenticate too often (token not "
            "checked).\n"
            "# TYPE cardwatch_feed_auth_throttled_total counter\n"
            "cardwatch_feed_auth_throttled_total %" PRIu64 "\n"
            "# HELP cardwatch_feed_auth_peers Peer addresses with recent "
            "authentication failures in the throttle's table.\n"
            "# TYPE cardwatch_feed_auth_peers gauge\n"
            "cardwatch_feed_auth_peers %zu\n"
            "# HELP cardwatch_feed_auth_peers_evicted_total Peers forgotten "
            "early because the table was full ([feed] auth_max_peers).\n"
            "# TYPE cardwatch_feed_auth_peers_evicted_total counter\n"
            "cardwatch_feed_auth_peers_evicted_total %" PRIu64 "\n",
            f->shed_full, f->shed_reclaimed, f->shed_timeout, f->accept_errors,
            f->auth_failures, f->auth_throttled,
            feed_throttle_peers(f->throttle),
            feed_throttle_evicted(f->throttle));
    fputs("# HELP cardwatch_rule_outcomes_total Outcomes issuers reported "
          "on alerts, by issuer, rule and outcome.\n"
          "# TYPE cardwatch_rule_outcomes_total counter\n",
          out);
    for (size_t i = 0; i < f->c->n_issuers; i++) {
        feed_stats_prom(out, &f->iss[i].stats, f->c->issuers[i].id, 0);
    }
    fputs("# HELP cardwatch_rule_precision confirmed_fraud / "
          "(confirmed_fraud + legitimate) per issuer and rule.\n"
          "# TYPE cardwatch_rule_precision gauge\n",
          out);
    for (size_t i = 0; i < f->c->n_issuers; i++) {
        feed_stats_prom(out, &f->iss[i].stats, f->c->issuers[i].id, 1);
    }
}
