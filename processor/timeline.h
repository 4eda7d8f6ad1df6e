/* timeline.h - what a replay found, day by day: per breach, the
 * transactions on its exposed cards and the alerts, per UTC day of event
 * time from the breach's window start on (pure).
 *
 * A transaction dated before its breach's window start is not counted for
 * that breach (the card was not exposed yet). Breach ids are copied;
 * memory grows with breaches x days that have a count (24 bytes a day).
 * The caller counts each alert once (tally_alert() answered 1).
 */
#ifndef CARDWATCH_TIMELINE_H
#define CARDWATCH_TIMELINE_H

#include <stddef.h>
#include <stdint.h>

struct timeline;

/* One UTC day: day_ms is its 00:00:00.000 in ms since the epoch. */
struct timeline_day {
    int64_t day_ms;
    uint64_t exposed; /* transactions on the breach's exposed cards */
    uint64_t alerts;
};

/* Returns NULL on allocation failure. */
struct timeline *timeline_new(void);

/* Counts one transaction on a card exposed by breach id (window
 * [start_ms, end_ms]) at event_time_ms; alert: 1 to count an alert on it
 * instead. Returns 0 (also when the event is before start_ms: nothing is
 * counted), or -1 on allocation failure (nothing counted). */
int timeline_count(struct timeline *t, const char *breach_id,
                   int64_t start_ms, int64_t end_ms, int64_t event_time_ms,
                   int alert);

/* Calls fn for every breach (in the order first counted) with its window
 * and its days in time order (n >= 1; borrowed for the call). */
void timeline_each(const struct timeline *t,
                   void (*fn)(void *arg, const char *breach_id,
                              int64_t start_ms, int64_t end_ms,
                              const struct timeline_day *days, size_t n),
                   void *arg);

/* NULL is a no-op. */
void timeline_destroy(struct timeline *t);

#endif
