/* clock.h - the two clocks cardwatch reads.
 *
 * Monotonic time for durations, deadlines and rates; wall-clock time for
 * timestamps that leave the process (detected_at_ms, loaded_at_ms).
 */
#ifndef CARDWATCH_CLOCK_H
#define CARDWATCH_CLOCK_H

#include <stdint.h>

/* Nanoseconds on CLOCK_MONOTONIC: only differences mean anything. Cannot
 * fail. */
uint64_t clock_mono_ns(void);

/* Milliseconds since the Unix epoch (CLOCK_REALTIME, rounded down). It
 * may jump when the system clock is set. Cannot fail. */
int64_t clock_wall_ms(void);

#endif
