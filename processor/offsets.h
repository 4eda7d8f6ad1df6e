/* offsets.h - per-partition in-flight tracking: which input offset may be
 * stored (pure).
 *
 * Every consumed message is registered in consumption order; it is acked
 * once everything it caused (alerts, dead letters, state updates) is
 * acknowledged. The next offset to commit for a partition is one past the
 * longest acked prefix. Revoking a partition forgets it, so late acks of a
 * previous owner's generation are ignored.
 */
#ifndef CARDWATCH_OFFSETS_H
#define CARDWATCH_OFFSETS_H

#include <stddef.h>
#include <stdint.h>

struct offsets;

/* A handle for one registered message; pass it back to offsets_ack(). */
struct offsets_ticket {
    int32_t partition;
    uint32_t generation;
    int64_t offset;
};

/* Returns a tracker for one topic, or NULL on allocation failure. */
struct offsets *offsets_new(void);

/* Frees the tracker. NULL is a no-op. */
void offsets_destroy(struct offsets *o);

/* Registers message (partition, offset), in consumption order per
 * partition. Fills *ticket. Returns 0, or -1 on allocation failure or an
 * offset not greater than the last registered one of the partition. */
int offsets_register(struct offsets *o, int32_t partition, int64_t offset,
                     struct offsets_ticket *ticket);

/* Marks the ticket's message done. Returns the offset that may now be
 * stored for its partition (one past the longest done prefix) when it
 * advanced, or -1 when nothing new may be stored (earlier messages still
 * in flight, or the partition was revoked since). */
int64_t offsets_ack(struct offsets *o, const struct offsets_ticket *ticket);

/* Forgets a partition (revoked). Its outstanding tickets become stale. */
void offsets_revoke(struct offsets *o, int32_t partition);

/* Messages registered and not yet acked, over all partitions. */
size_t offsets_in_flight(const struct offsets *o);

/* Messages in flight on one partition. */
size_t offsets_partition_in_flight(const struct offsets *o, int32_t partition);

#endif
