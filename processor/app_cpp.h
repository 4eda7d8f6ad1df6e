/* app_cpp.h - `cardwatch cpp`: common-point-of-purchase analysis over a
 * transaction history (the statistic is cpp.h's; this is the I/O).
 *
 * Reads the compromised cards - a CSV of card numbers or fingerprints
 * with their first-fraud times, and/or the alerts issuers marked
 * confirmed_fraud in the feed (Redis) - then streams the history files
 * (replay's reader: JSON lines or length-delimited protobuf, plain or
 * gzip) or a time range of a topic (replay's range reader: no group
 * joined, nothing committed), fingerprinting each card and forgetting its
 * number at once.
 * Prints the ranked merchants; writes a JSON report (with the top
 * suspect's uses per day), the same as an HTML page with charts
 * (report_html.h), and the suspected
 * breach's cards (fingerprints) on request: a second pass over the files
 * (or over the topic range) collects the cards that used the top
 * merchant inside its estimated window (whole UTC days).
 */
#ifndef CARDWATCH_APP_CPP_H
#define CARDWATCH_APP_CPP_H

#include <stddef.h>
#include <stdint.h>

#include "config.h"
#include "reader.h"

struct cpp_run_opts {
    const char *frauds;           /* CSV: pan|fingerprint, first_fraud;
                                     NULL = none */
    int from_feed;                /* + confirmed_fraud alerts in Redis */
    const char *topic;            /* history: a topic (NULL = files) */
    int64_t from_ms, to_ms;       /* its range by message timestamp */
    const char *const *inputs;    /* history files ("-" = stdin) */
    size_t n_inputs;
    enum reader_format format;
    int64_t as_of_ms;             /* 0 = no limit: frauds that started
                                     before it, history before it */
    int64_t lookback_ms;
    double alpha;
    uint32_t min_cases;
    size_t top;                   /* rows printed */
    const char *report_path;      /* JSON report; NULL = none */
    const char *report_html_path; /* the same as an HTML page; NULL =
                                     none */
    const char *emit_path;        /* suspected breach's fingerprints */
    int progress;                 /* a progress line on stderr */
};

/* Runs the analysis with configuration c ([card] key_file for the
 * fingerprints; [redis] for from_feed). Prints the table on stdout.
 * Returns the exit status: 0 done; 1 on an unreadable or bad input (the
 * message names the file and line or record), no compromised card, a
 * key or Redis failure, a report that cannot be written (the message
 * names the path), --emit-breach without a significant suspect, or
 * an input that cannot be read twice (stdin) for --emit-breach; 130 /
 * 143 when stopped by SIGINT / SIGTERM. */
int app_cpp(const struct config *c, const struct cpp_run_opts *o);

#endif
