/* kafka_seek.h - turn a time range into per-partition offsets of a topic,
 * for replay.
 *
 * For each partition, start is the first offset whose message timestamp
 * is >= from_ms and end the first offset whose timestamp is >= to_ms
 * (Kafka's offsetsForTimes semantics); replaying [start, end) gives the
 * messages of [from_ms, to_ms).
 *
 * How: the broker's time index is asked first (rd_kafka_offsets_for_times).
 * Its answer -1 ("no message that late") cannot be trusted blindly -
 * librdkafka's mock cluster answers -1 for everything - so a -1 for a
 * partition that has messages is checked against the timestamp of the
 * last message and, when that is >= the time asked, the offset is found
 * by a binary search over message timestamps instead. The search fetches
 * one message per probe (assign the partition at the middle offset, poll
 * the first message at or after it), all partitions in parallel rounds,
 * so a partition of n messages costs about 2 * log2(n) probes.
 *
 * The search assumes timestamps never decrease within a partition:
 * LogAppendTime, or CreateTime from producers that stamp messages in the
 * order they send them. When they do decrease, a search still ends where
 * its condition flips (a message stamped < T followed by one stamped
 * >= T), but not necessarily at the first such place, and end is at
 * least start: messages of the range can lie outside [start, end) and
 * messages outside it inside. Nothing detects this. Kafka's own time
 * index has the same blind spot (it indexes the largest timestamp so
 * far, and its answer may differ from the search's).
 *
 * The result is a snapshot: messages appended after the watermarks were
 * read are beyond every end, and messages deleted by retention meanwhile
 * are simply not there to replay.
 */
#ifndef CARDWATCH_KAFKA_SEEK_H
#define CARDWATCH_KAFKA_SEEK_H

#include <stddef.h>
#include <stdint.h>

#include <librdkafka/rdkafka.h>

/* One partition of the result. low/high are the watermarks when the call
 * read them (high: the offset the next message will get). low <= start <=
 * end <= high; start == end when the partition has nothing in the range,
 * which includes an empty partition (low == high). start and end are
 * offsets of messages stamped >= from_ms / >= to_ms, or high when there
 * is none - except that the broker's time index also counts transaction
 * markers (stamped with the commit's wall-clock time): where it answers,
 * start or end may be a marker's offset instead of the next message's or
 * high. No message lies between the two, so the same messages are in
 * range (measured on Kafka 4.4: a --from after a partition's last message
 * gave the commit marker's offset). */
struct kseek_part {
    int32_t partition;
    int64_t low, high;  /* watermarks */
    int64_t start, end; /* replay [start, end) */
};

/* What a call cost. A "lookup" is the start or the end of one partition;
 * lookups that need no broker and no probe (an empty partition, end with
 * to_ms == INT64_MAX) are counted in neither field. */
struct kseek_stats {
    int probes;          /* messages fetched (or end-of-partition events) */
    int rounds;          /* assign + poll rounds */
    int broker_answered; /* lookups the broker's time index answered: an
                          * offset, or -1 confirmed by the last message */
    int searched;        /* lookups resolved by the binary search */
};

/* Properties for kconf_build() (name/value pairs, NULL-terminated) that
 * make a consumer handle suitable for kafka_seek_range():
 *   group.id=cardwatch-seek      librdkafka's rd_kafka_assign needs one;
 *                                the group is never joined nor committed
 *   enable.auto.commit=false     required (checked): never commit
 *   enable.auto.offset.store=false
 *   enable.partition.eof=true    required (checked): a probe past the last
 *                                message (transaction markers, compacted
 *                                or aborted records) ends with EOF
 *   auto.offset.reset=earliest   a probe below the log start (retention
 *                                deleted it meanwhile) answers with the
 *                                first message still there
 *   max.partition.fetch.bytes=65536
 *                                a probe needs one message: fetch little
 *   fetch.wait.max.ms=10         matters most. After a probe librdkafka
 *                                goes on fetching; once that reaches the
 *                                end of a partition the broker holds the
 *                                fetch up to fetch.wait.max.ms, and the
 *                                next round cannot fetch before it
 *                                returns. With the default 500, a search
 *                                whose probes land near partition ends
 *                                (small partitions; the last message)
 *                                costs up to 0.5 s per round: ~5.7 s per
 *                                call on the mock's 1000-message
 *                                partitions, ~0.12 s with 10, ~15 ms with 1.
 * queued.min.messages is left alone: at 1, librdkafka 2.0.2 stops
 * fetching for every partition of the handle while one message waits
 * (the limit is on the shared queue) and looks again only after up to
 * 1 s (measured: rounds of 1 s). Extra messages are discarded. */
extern const char *const kafka_seek_props[];

/* Resolves [from_ms, to_ms) on every partition of topic. to_ms ==
 * INT64_MAX means "to the end": end = high. from_ms == to_ms gives empty
 * ranges (start == end); to_ms < from_ms is an error.
 *
 * rk is the caller's consumer handle: created with the required
 * properties above (see kafka_seek_props) and without a subscription.
 * The call replaces its assignment and leaves it empty (assign NULL)
 * before returning, on success and on error (unless it refuses the handle
 * itself); it polls rk's consumer queue and discards what it does not
 * need, and it never commits.
 *
 * force_search != 0 skips the broker's time index (for tests, and for
 * brokers whose index is not to be trusted) and binary-searches every
 * lookup.
 *
 * timeout_ms (> 0) bounds the whole call. stats may be NULL; when given,
 * it is filled on success and on error.
 *
 * On success returns 0 and sets *out to a new array of *n_out partitions
 * sorted by partition id (free it with kafka_seek_free()). On error
 * returns -1, sets *out NULL and *n_out 0, and writes the reason into
 * err[errlen]: "topic X does not exist", a bad handle configuration, a
 * broker error, a message without timestamp, or a timeout that names the
 * partition it was waiting for. */
int kafka_seek_range(rd_kafka_t *rk, const char *topic, int64_t from_ms,
                     int64_t to_ms, int timeout_ms, int force_search,
                     struct kseek_part **out, size_t *n_out,
                     struct kseek_stats *stats, char *err, size_t errlen);

/* Frees an array from kafka_seek_range(). NULL is a no-op. */
void kafka_seek_free(struct kseek_part *p);

/* The search of one lookup, pure (no I/O), exposed so that it can be
 * tested on made-up logs, gaps included.
 *
 * It looks for the first message stamped >= ts among offsets [low,
 * high). Offsets may have gaps (compaction, transaction markers, aborted
 * records), so a probe at offset mid is answered with the first message
 * at or after mid (its offset and timestamp) or with "none" (the
 * partition ends before it). The answer is kept as a position in [lo, hi]
 * and narrowed by each probe at lo <= mid < hi:
 *   none, or a message at or after hi:  hi = mid (nothing in [mid, hi))
 *   a message off stamped <  ts:        lo = off + 1
 *   a message off stamped >= ts:        hi = mid, hi_msg = off (mid..off
 *                                       hold no other message)
 * hi_msg is the first message at or after hi (high at first), so the
 * result is a real message offset - what the broker's time index gives -
 * or high when no message is stamped >= ts. Probing the middle takes at
 * most ceil(log2(high - low + 1)) probes; checking the last offset first
 * adds one, or about 2 * log2(g) when the last g offsets hold no
 * message. */
struct kseek_search {
    int64_t ts;     /* the first message stamped >= ts */
    int64_t lo, hi; /* the answer is a position in [lo, hi] */
    int64_t hi_msg; /* the first message at or after hi, or high */
    int pending;    /* lo < hi: probe kseek_search_next() */
    int check_last; /* probe the last message first (see _init) */
};

/* Starts a search over [low, high) (pending unless the range is empty).
 * check_last != 0 probes the last message first - high - 1, and while
 * the answer is "none" (transaction markers, aborted or compacted records
 * at the end) high - 2, high - 4, ... - so that one probe usually settles
 * the case "nothing is that late" (the broker answered -1); the search
 * then goes on by halving. */
void kseek_search_init(struct kseek_search *b, int64_t ts, int64_t low,
                       int64_t high, int check_last);

/* The offset to probe next; only meaningful while b->pending. */
int64_t kseek_search_next(const struct kseek_search *b);

/* Applies the answer of a probe at mid: found != 0 with the first message
 * at or after mid (off, stamped ts), or found 0 when there is none. A
 * probe outside [lo, hi), an answer before mid, or a finished search
 * changes nothing, so one probe can be applied to several searches of a
 * partition. */
void kseek_search_apply(struct kseek_search *b, int64_t mid, int found,
                        int64_t off, int64_t ts);

/* The answer of a finished search (!b->pending): the offset of the first
 * message stamped >= ts, or high when there is none. */
int64_t kseek_search_result(const struct kseek_search *b);

#endif
