/* kafka_loop.h - serve a librdkafka queue on the libevent loop.
 *
 * librdkafka signals a queue that has become non-empty by writing to a
 * file descriptor (rd_kafka_queue_io_event_enable). A watch owns that
 * wiring: a non-blocking pipe whose write end the queue signals, and a
 * libevent read event on the read end that drains the pipe and calls the
 * owner's function on the loop thread. The owner serves the queue in that
 * function; a watch never polls the queue itself.
 */
#ifndef CARDWATCH_KAFKA_LOOP_H
#define CARDWATCH_KAFKA_LOOP_H

#include <stddef.h>

#include <librdkafka/rdkafka.h>

struct event_base;
struct kafka_loop_watch;

/* Creates the pipe, points q's io event at it and adds a persistent read
 * event on base that calls fn(arg) each time the queue signals. q, base
 * and arg are borrowed and must outlive the watch. Returns the watch, or
 * NULL with a message in errbuf ("pipe: out of descriptors", "out of
 * memory"); on failure nothing stays set up. */
struct kafka_loop_watch *kafka_loop_watch(struct event_base *base,
                                          rd_kafka_queue_t *q,
                                          void (*fn)(void *arg), void *arg,
                                          char *errbuf, size_t errlen);

/* Disables q's io event (so librdkafka writes to the pipe no more), frees
 * the read event and closes the pipe; fn is not called after this. Call it
 * before the queue is destroyed. NULL is a no-op. */
void kafka_loop_unwatch(struct kafka_loop_watch *w);

#endif
