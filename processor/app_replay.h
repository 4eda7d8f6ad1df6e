/* app_replay.h - `cardwatch replay`: the monitoring pipeline over stored
 * history (a Kafka time range or a file), with the live service's rules
 * and alert ids, without touching the live service.
 *
 * Wiring: source (source_range or source_file) -> pipeline (same code as
 * `run`, exposed set from a snapshot, window state in a namespace of its
 * own) -> outputs (a JSON-lines file in input order, the replay topics,
 * or with deliver the live issuer topics through the ledger so that an
 * alert delivered before is not sent again). Each alert id is written
 * once: a transaction the input holds twice (the same txn_id) has its
 * alert written, delivered and counted for its first copy, and is
 * counted as a repeat (summary, report "repeated_alerts"). At the end:
 * the replay's window state is deleted, a summary printed (and written
 * as JSON).
 */
#ifndef CARDWATCH_APP_REPLAY_H
#define CARDWATCH_APP_REPLAY_H

#include <stdint.h>

#include "config.h"
#include "reader.h"

struct replay_opts {
    /* input: a file (input != NULL) or the transactions topic */
    const char *input;         /* path, "-" = stdin */
    enum reader_format format; /* READER_AUTO = decide from the data */
    int64_t from_ms, to_ms;    /* topic range; to_ms INT64_MAX = the end */
    const char *topic;         /* NULL = [kafka] transactions_topic */
    int force_search;          /* do not ask the broker's time index */
    /* outputs */
    const char *output;        /* alerts as JSON lines; NULL = topics */
    const char *dead_letter;   /* dead letters as JSON lines; may be NULL */
    const char *report;        /* summary as JSON; may be NULL */
    const char *report_html;   /* summary as an HTML page with charts;
                                * may be NULL */
    int deliver;               /* to the live issuer topics, once */
    /* what to look for */
    const char *breach;        /* NULL = every loaded breach */
    const char *rules;         /* NULL = [rules] path or built-in */
    int progress;              /* 1 = progress bar on stderr */
    /* bad input: stop (exit 1, no output kept) past this many dead
     * letters (0 = no cap) or once more than this percentage of the
     * events are dead letters (after REPLAY_SHARE_MIN_EVENTS; 100 = no
     * cap); the command line fills them from [replay] */
    int64_t max_dead_letters;
    int max_dead_letter_percent;
};

/* Events a replay reads before the share of dead letters is checked. */
#define REPLAY_SHARE_MIN_EVENTS 1000

/* Runs one replay to the end of its input. Returns the exit status: 0
 * when every event was processed and every output written, 128 + the
 * signal when SIGINT or SIGTERM stopped it (within a second; the summary
 * is printed), 1 otherwise (the reason is logged). Partial output files
 * are removed whenever it does not return 0. */
int app_replay(const struct config *c, const struct replay_opts *o);

#endif
