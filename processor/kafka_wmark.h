/* kafka_wmark.h - the high watermarks of a consumer's paused partitions,
 * asked from the brokers off the loop thread.
 *
 * Why: librdkafka learns a partition's high watermark from fetch
 * responses only (rd_kafka_get_watermark_offsets and the statistics'
 * hi_offset read that cache), and a paused partition is not fetched: its
 * watermark - and the consumer lag made from it - stays where it was when
 * intake paused (librdkafka issue 4996), however much arrives meanwhile.
 * The call that asks the broker, rd_kafka_query_watermark_offsets, blocks
 * for a round trip per partition, and nothing may block the event loop;
 * librdkafka 2.0 has no asynchronous form of it. So a worker thread of
 * this module makes that call for the partitions it is given, one round
 * every KAFKA_WMARK_INTERVAL_MS, and the loop reads the last answers. The
 * loop thread never waits on the broker: the mutex is held only to copy
 * a few numbers.
 */
#ifndef CARDWATCH_KAFKA_WMARK_H
#define CARDWATCH_KAFKA_WMARK_H

#include <stddef.h>
#include <stdint.h>

#include <librdkafka/rdkafka.h>

/* Pause between two rounds of queries (ms). */
#define KAFKA_WMARK_INTERVAL_MS 1000
/* Longest wait for one partition's answer (ms); destroy may wait this
 * long for a query under way. */
#define KAFKA_WMARK_TIMEOUT_MS 2000

struct kafka_wmark;

/* Starts the worker for topic (copied) on rk (borrowed: it must outlive
 * the tracker; the tracker must be destroyed before rk is closed). The
 * worker sleeps until partitions are watched. Returns NULL with a message
 * in errbuf when memory runs out or the thread cannot start. */
struct kafka_wmark *kafka_wmark_new(rd_kafka_t *rk, const char *topic,
                                    char *errbuf, size_t errlen);

/* Sets the partitions to watch (copied), replacing the earlier set; the
 * answers for partitions still watched are kept, n = 0 stops the queries.
 * A new set is queried at once. Loop thread; does not wait for the
 * worker's queries. Returns 0, or -1 when out of memory (the earlier set
 * stays). */
int kafka_wmark_watch(struct kafka_wmark *w, const int32_t *parts,
                      size_t n);

/* The last high watermark the broker gave for a watched partition, or -1
 * when it is not watched or has no answer yet. */
int64_t kafka_wmark_high(struct kafka_wmark *w, int32_t partition);

/* Stops the worker (waiting for a query under way, at most
 * KAFKA_WMARK_TIMEOUT_MS) and frees. NULL is a no-op. */
void kafka_wmark_destroy(struct kafka_wmark *w);

#endif
