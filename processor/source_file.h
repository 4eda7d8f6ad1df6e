/* source_file.h - a transactions file (JSON lines or length-delimited
 * protobuf, plain or gzip, or stdin) as a pipeline source, for replay.
 *
 * Reading runs on the libevent loop in slices: it takes what the pipeline
 * has room for (pipeline capacity), a few batches per loop turn, so Redis
 * replies and delivery reports keep flowing; the pipeline kicks it when it
 * has room again; a read that finds no record (blank lines, a line over
 * the limit, a gzip bomb) returns to the loop after 8 MiB of input, so
 * signals and timers are never kept waiting. Positions are line numbers
 * (JSON lines) or record numbers (protobuf) on partition 0. Records longer
 * than the reader's limit are handed on empty (they become dead letters;
 * the first ten are logged) and reading goes on; a framing error
 * (protobuf length prefix) or an I/O error stops the source with an error
 * naming the place.
 */
#ifndef CARDWATCH_SOURCE_FILE_H
#define CARDWATCH_SOURCE_FILE_H

#include <stddef.h>
#include <stdint.h>

#include "pipeline.h"
#include "reader.h"

struct event_base;
struct source_file;

struct source_file_opts {
    const char *path;          /* "-" = stdin */
    enum reader_format format; /* READER_AUTO decides from the data */
    int batch_size;
    /* Into the pipeline: how many records it takes now; take them. */
    size_t (*capacity)(void *arg);
    int (*intake)(void *arg, const struct pipeline_record *recs, size_t n);
    void *arg;
};

/* Opens the input (errors such as a missing file come back here, with
 * "path: reason" in errbuf) and schedules the first read. */
struct source_file *source_file_new(struct event_base *base,
                                    const struct source_file_opts *o,
                                    char *errbuf, size_t errlen);

/* pipeline_source_ops entries (ctx = the source). store() records how far
 * input is done (for progress). */
void source_file_store(void *ctx, int32_t partition, int64_t offset);
void source_file_set_paused(void *ctx, int paused);
void source_file_kick(void *ctx);

/* 1 once the whole input was handed to the pipeline (or reading failed). */
int source_file_at_end(const struct source_file *s);

/* The reading error that stopped the source, or NULL. */
const char *source_file_error(const struct source_file *s);

/* The format in use (known once the first data was read; READER_AUTO
 * before). */
enum reader_format source_file_format(const struct source_file *s);

/* Bytes of the file consumed and its size (0 when not known: stdin, a
 * pipe). */
void source_file_progress(const struct source_file *s, uint64_t *done,
                          uint64_t *total);

/* Display name of the input ("stdin" for "-"). */
const char *source_file_name(const struct source_file *s);

/* Stops reading (shutdown). */
void source_file_stop(struct source_file *s);

/* Closes the input and frees. NULL is a no-op. */
void source_file_destroy(struct source_file *s);

#endif
