/* ledger.h - which alerts were delivered to the issuer topics, so that an
 * alert is sent once: a wrapper around a sink.
 *
 * After the inner sink reports an alert delivered, its id is recorded in
 * Redis (<p>:delivered:<alert_id> = issuer id, expiring after [redis]
 * delivered_ttl_days) and, the first time only, the alert is appended to
 * its issuer's feed (rmodel.h: stream, alert hash, counts, a PUBLISH) -
 * one Lua script, so record and feed never disagree; only then is the
 * delivery reported on. The alerts reported delivered on one loop turn
 * are recorded together, up to 128 per script call (counts added, feeds
 * trimmed and issuers published once per call). An alert whose id is
 * already recorded is not produced again and is reported delivered at once (counted as skipped): a replay with
 * --deliver does not resend what the live service delivered, and a
 * restarted service does not resend what it delivered before the crash.
 * An alert whose id is on its way (checked, produced or being recorded:
 * the input held its transaction twice, close together) is not produced
 * either: it is reported with the first copy - delivered (counted as
 * skipped) when that one is, failed when that one fails.
 * Dead letters pass straight through. Commands ride the Redis
 * connection (re-sent after reconnects; both are idempotent: EXISTS, SET).
 *
 * The record is written after the delivery: a crash between the two
 * sends the alert again later (at least once, never lost). A check that
 * Redis answers with an error sends the alert (a duplicate at worst); a
 * record it answers with an error (an ACL refusal, out of memory) is
 * logged and sent again every 200 ms until Redis accepts it, and only
 * then reported on (ledger_health() says why meanwhile): an alert is
 * never left out of its issuer's feed. A record call that fails is sent
 * again whole (the script skips what an earlier try recorded).
 */
#ifndef CARDWATCH_LEDGER_H
#define CARDWATCH_LEDGER_H

#include <stddef.h>
#include <stdint.h>

#include <event2/event.h>

#include "redis_conn.h"
#include "pipeline.h"

struct ledger;

struct ledger_opts {
    struct event_base *base; /* borrowed: runs the record calls */
    struct rconn *redis;     /* borrowed */
    const char *prefix;
    int ttl_days;
    int feed_max_alerts;     /* [feed] max_alerts per issuer stream */
    int feed_retention_days; /* [feed] retention_days */
    struct pipeline_sink_ops inner;
    /* where delivery reports go on (to the pipeline) */
    void (*delivered)(void *arg, void *opaque, int err);
    void *arg;
};

/* Returns NULL on allocation failure, no base or a bad prefix. */
struct ledger *ledger_new(const struct ledger_opts *o);

/* pipeline_sink_ops.produce (ctx = the ledger). */
int ledger_produce(void *ctx, const struct sink_msg *m, void *opaque);

/* The inner sink's delivery report for a message the ledger produced
 * (opaque as the inner sink got it). */
void ledger_inner_delivered(struct ledger *l, void *opaque, int err);

/* Alerts not sent because they had been delivered before, or were on
 * their way. */
uint64_t ledger_skipped(const struct ledger *l);

/* 1 when no record waits to be sent again after an error reply; else 0
 * with "Redis ADDR refused the record of delivered alerts: <answer>; N
 * waiting, retried every 200 ms" in why. */
int ledger_health(const struct ledger *l, char *why, size_t whylen);

/* Frees. Requests still waiting for Redis are answered by
 * rconn_destroy(); call this after it and before the pipeline is
 * destroyed: alerts queued for a record call and never sent are reported
 * failed here (unacknowledged, as at any shutdown). NULL is a no-op. */
void ledger_destroy(struct ledger *l);

#endif
