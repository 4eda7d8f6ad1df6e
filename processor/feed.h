/* feed.h - the issuer alert feed: an HTTP(S) JSON API on evhttp, on the
 * one event loop, over the Redis feed model of rmodel.h.
 *
 * Every /v1 request carries "Authorization: Bearer <token>"; the token
 * alone says which issuer is asking ([issuer ID] token_sha256 holds the
 * SHA-256 of each valid token). An issuer sees its own alerts only:
 *
 *   GET  /v1/alerts?after=C&limit=N&wait=S  alerts after cursor C, oldest
 *                                           first; with wait, a long poll
 *   GET  /v1/alerts?order=newest&before=C   newest first, paging back
 *                                           (include=outcome: with each
 *                                           alert's outcome, both orders)
 *   GET  /v1/alerts/stream                  Server-Sent Events (resumes
 *                                           after Last-Event-ID or ?after=)
 *   GET  /v1/alerts/{id}                    one alert and its outcome
 *   POST /v1/alerts/{id}/outcome            report what the alert was
 *   GET  /v1/stats                          the issuer's counts
 *   GET  /                                  the triage page (no token)
 *
 * Redis: commands ride a redis_conn connection of the feed's own (re-sent
 * after reconnects, so only idempotent ones), on which the exposure
 * module's set guard also runs: the feed is not ready while the
 * exposed-card set is gone. A second connection, in subscriber mode,
 * SUBSCRIBEs to the feed channel so that waiting clients are answered as
 * soon as the ledger appends an alert, and a 1 s poll covers the times
 * that connection is down. Every request ends in exactly one
 * reply (or, for a stream, one end); a request whose Redis answer does not
 * come in time gets 503. Per-token rate limit (token bucket), an access
 * log line per request (module "access"; no token, no query string).
 *
 * Against hostile clients (see "connections" in feed.c): connections are
 * counted from accept against [feed] max_clients and the open-file limit
 * (the oldest idle or slow one is closed for a new one, else 503 at
 * accept); a request must arrive whole within request_timeout_s (408);
 * accept() failures pause accepting instead of spinning; every request
 * head passes feed_http.h's strict parser before evhttp sees a byte of
 * it (ambiguous framing: 4xx and the connection closed); a peer address
 * that fails to authenticate auth_failures times gets 429 without its
 * token being checked.
 */
#ifndef CARDWATCH_FEED_H
#define CARDWATCH_FEED_H

#include <stddef.h>
#include <stdio.h>

#include "config.h"

struct event_base;
struct feed;

/* Starts the feed on base: listens on c->feed_listen (HTTPS when
 * feed_tls_cert and feed_tls_key are set), connects to Redis
 * (c->redis_*). c is borrowed and must outlive the feed. May raise the
 * process's soft open-file limit towards its hard limit for
 * feed_max_clients (logged). Returns NULL with a message in errbuf when
 * the address cannot be bound, the certificate or key cannot be loaded,
 * or no issuer has a token; a Redis that is not reachable yet is not an
 * error (the feed answers 503 meanwhile). */
struct feed *feed_new(struct event_base *base, const struct config *c,
                      char *errbuf, size_t errlen);

/* 1 when Redis answers and the feed is not stopping; else 0 with the
 * reason in why. */
int feed_ready(const struct feed *f, char *why, size_t whylen);

/* Stops accepting connections; answers every waiting long poll with what
 * it has (an empty list and its cursor) and ends every event stream;
 * later requests on connections still open get 503. Idempotent. */
void feed_stop(struct feed *f);

/* Requests in progress (waiting for Redis, or replies not yet written
 * out): after feed_stop, the loop may end when this is 0. */
size_t feed_busy(const struct feed *f);

/* Of feed_busy(), the requests not answered yet (waiting for Redis, long
 * polls, streams); the rest are answers not yet written out. 0 for NULL. */
size_t feed_requests(const struct feed *f);

/* Gives up on the requests still in progress after feed_stop (those
 * waiting for Redis): each is answered 503 {"error":"shutting down"} now,
 * while the loop still runs, so that the answers are written; run the
 * loop until feed_busy() is 0 (or a short while, for clients that do not
 * read) before feed_destroy. Implies feed_stop. NULL is a no-op. */
void feed_cancel(struct feed *f);

/* Writes the feed's metrics (Prometheus text with HELP/TYPE) to out:
 * requests by status, waiting clients, open connections and their limit,
 * connections shed (by reason), accept() errors, failed and throttled
 * authentications, Redis state, and per issuer and rule the outcome
 * counts and precision (read from Redis every few seconds, not per
 * scrape). */
void feed_metrics(const struct feed *f, FILE *out);

/* Closes everything. Requests still open are answered 503 first, but
 * those answers go with their connections unsent (the loop no longer
 * runs): feed_cancel, and the loop until feed_busy() is 0, delivers them.
 * NULL is a no-op. Call from outside the feed's callbacks (after the
 * loop), and before event_base_free(base). */
void feed_destroy(struct feed *f);

#endif
