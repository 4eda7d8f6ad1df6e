/* pipeline.h - the one place that knows the order of the stages:
 *
 *   record -> decode+validate -> fingerprint -> exposure lookup (batched)
 *          -> rules -> alert -> sink            (invalid -> dead letter)
 *
 * A source hands records in batches; the pipeline acknowledges each input
 * position back through the source ops only once everything it caused is
 * acknowledged by the sink (offsets.c decides what may be stored). The
 * pipeline never blocks: it tells the source how much it may take
 * (pipeline_capacity) and when to pause (Redis down).
 */
#ifndef CARDWATCH_PIPELINE_H
#define CARDWATCH_PIPELINE_H

#include <stddef.h>
#include <stdint.h>

#include "alert.h"
#include "card.h"
#include "config.h"
#include "exposure.h"
#include "metrics.h"
#include "rules.h"
#include "state.h"

struct snapshot;

/* The hit an alert gets when a card its issuer retired (reissued or
 * blocked) is used with the exposed expiry; severity critical. */
#define PIPELINE_RULE_RETIRED "retired-card-use"

/* A dead letter (JSON) carries no payload, only its keyed MAC:
 * "payload_mac": "<key id>:<hex HMAC-SHA256(dk, payload)>" where dk =
 * HMAC-SHA256(fingerprint key, this label) (card_key_derive), so that a
 * payload holding a bare card number cannot be found by trying a BIN's
 * numbers, and the MAC is never a card fingerprint. */
#define PIPELINE_DEAD_LETTER_KEY_LABEL "cardwatch dead-letter v1"

/* One input record; borrowed for the duration of pipeline_intake(). */
struct pipeline_record {
    int32_t partition;
    int64_t offset;
    const void *payload;
    size_t len;
    int too_long; /* the source dropped a record over its size limit:
                     a dead letter (reason too_long), payload empty */
};

enum pipeline_format {
    PIPELINE_PROTOBUF = 0,
    PIPELINE_JSON = 1,
};

/* What the pipeline needs from its source. */
struct pipeline_source_ops {
    /* Input up to and excluding offset is done on partition. */
    void (*store)(void *ctx, int32_t partition, int64_t offset);
    /* Pause (1) or resume (0) intake. */
    void (*set_paused)(void *ctx, int paused);
    /* The pipeline can take records again after being full. */
    void (*kick)(void *ctx);
    void *ctx;
    /* May be NULL. The event at offset on partition failed for good (an
     * allocation, OpenSSL, a refused produce; the reason is logged): it
     * stays unacknowledged, so the live service consumes it again after a
     * restart; a replay must not end as if complete. */
    void (*failed)(void *ctx, int32_t partition, int64_t offset);
};

struct sink_header {
    const char *name;
    const char *value;
};

enum sink_kind {
    SINK_ALERT = 0,
    SINK_DEAD_LETTER = 1,
};

/* One message for the sink; everything is borrowed for the produce call. */
struct sink_msg {
    enum sink_kind kind;
    const char *topic; /* issuer topic / fallback / dead-letter topic */
    const void *key;
    size_t keylen;
    const void *value; /* encoded alert (protobuf or JSON) / dead letter */
    size_t vallen;
    const struct sink_header *hdrs;
    size_t n_hdrs;
    const struct alert *alert; /* SINK_ALERT: the alert value encodes */
    const char *issuer;        /* SINK_ALERT: issuer id, "" unrouted */
    int32_t partition;         /* input position that caused it */
    int64_t offset;
};

/* What the pipeline needs from its sink. produce() queues one message and
 * later reports it through pipeline_delivered(opaque, err) - never from
 * inside produce(). Returns 0, or -1 when it could not be queued (the
 * event stays unacknowledged). */
struct pipeline_sink_ops {
    int (*produce)(void *ctx, const struct sink_msg *m, void *opaque);
    void *ctx;
};

struct pipeline_opts {
    const struct config *config; /* borrowed; issuers, topics, limits */
    struct card_key *key;        /* borrowed */
    const struct ruleset *rules; /* borrowed; see pipeline_set_rules */
    struct exposure *exposure;   /* borrowed */
    /* borrowed; when set, exposed cards are looked up in this in-memory
     * copy of the exposed set (replay) instead of one lookup per batch */
    struct snapshot *snapshot;
    struct state *state;         /* borrowed; NULL = no window state */
    struct metrics *metrics;     /* borrowed */
    struct pipeline_source_ops source;
    struct pipeline_sink_ops sink;
    const char *source_topic;    /* for dead-letter positions */
    /* Set for file input: dead letters name the file and the position
     * as "line" (JSON lines) or "record" (protobuf) instead of a topic. */
    const char *source_file;
    enum pipeline_format format;       /* of the input records */
    enum pipeline_format alert_format; /* of alerts handed to the sink */
    enum alert_mode mode;
    /* Optional: called once per transaction on an exposed card, when it is
     * evaluated, with the breaches listing it (m: in force or not yet by
     * event time; r: retired for the card). NULL = not called. */
    void (*on_exposed)(void *arg, const struct txn *t,
                       const struct rule_match *m, size_t nm,
                       const struct rule_match *r, size_t nr);
    void *on_exposed_arg;
};

struct pipeline;

/* Creates a pipeline. Returns NULL on allocation failure (or when the
 * dead-letter key cannot be derived from opts->key: OpenSSL). */
struct pipeline *pipeline_new(const struct pipeline_opts *opts);

/* Frees the pipeline; events still in flight are dropped unacknowledged
 * (they will be consumed again). NULL is a no-op. */
void pipeline_destroy(struct pipeline *p);

/* How many more records the pipeline takes now. 0 when full or while
 * Redis is down; the pipeline then calls the source's kick() once it has
 * room again. */
size_t pipeline_capacity(struct pipeline *p);

/* Takes n records of one batch (n <= pipeline_capacity()). Records are
 * decoded before it returns; the caller may free them afterwards.
 * Returns 0, or -1 on allocation failure (nothing was taken). */
int pipeline_intake(struct pipeline *p, const struct pipeline_record *recs,
                    size_t n);

/* The sink's delivery report for a message queued with opaque. err 0 =
 * delivered; non-zero = failed for good (the event stays unacknowledged
 * and the error is counted). */
void pipeline_delivered(struct pipeline *p, void *opaque, int err);

/* Redis came up (1) or went down (0): pauses or resumes the source. */
void pipeline_redis_state(struct pipeline *p, int up);

/* A partition was revoked: its unacknowledged positions are forgotten,
 * and the window state cache is dropped once written (state_forget). */
void pipeline_revoke(struct pipeline *p, int32_t partition);

/* Switches to another rule set (hot reload). rs is borrowed and must
 * outlive its use: events evaluate with the set current when their turn
 * comes, so the caller may free the old set right after this call. */
void pipeline_set_rules(struct pipeline *p, const struct ruleset *rs);

/* Sets the format of the input records from now on (a file source knows
 * it only once it read the first bytes). */
void pipeline_set_format(struct pipeline *p, enum pipeline_format format);

/* Forgets the source ops (before the source is destroyed at shutdown):
 * later completions acknowledge nothing. */
void pipeline_detach_source(struct pipeline *p);

/* Events taken and not yet acknowledged. */
size_t pipeline_in_flight(const struct pipeline *p);

#endif
