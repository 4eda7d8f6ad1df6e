/* sink_file.h - lines (alerts or dead letters as JSON) into one file, in
 * input order, whatever order the pipeline finishes events in.
 *
 * Input positions come in lanes: one lane for a file (positions are line
 * or record numbers), one lane per partition for a Kafka topic (positions
 * are offsets). A line is put with its lane and position; it is written
 * once the source says every position below it on that lane is final
 * (sink_file_release). Lanes are written one after the other (lane 0's
 * lines first), so the output is the same bytes run after run however
 * partitions interleaved while consuming.
 *
 * A regular file is written as "<path>.partial" and renamed onto path by
 * sink_file_finish(), so a replay that fails never leaves a file that
 * looks complete (a path that exists and is not a regular file, such as
 * /dev/null or a FIFO, is written in place). With more than one lane, lanes other than 0 are spooled
 * to unlinked temporary files and appended at the end. "-" is stdout.
 */
#ifndef CARDWATCH_SINK_FILE_H
#define CARDWATCH_SINK_FILE_H

#include <stddef.h>
#include <stdint.h>

struct sink_file;

/* Opens path ("-" = stdout) for n_lanes lanes (>= 1). Returns NULL with
 * "path: reason" in errbuf. */
struct sink_file *sink_file_new(const char *path, size_t n_lanes,
                                char *errbuf, size_t errlen);

/* Queues one line (len bytes, copied; a '\n' is added) for position pos
 * of lane. Returns 0, or -1 on allocation failure, a lane out of range or
 * after sink_file_flush(). */
int sink_file_put(struct sink_file *f, size_t lane, int64_t pos,
                  const void *line, size_t len);

/* Every position below upto on lane is final: writes the lane's queued
 * lines before it. Returns 0, or -1 on a write error (sink_file_error()
 * tells; the error is sticky). */
int sink_file_release(struct sink_file *f, size_t lane, int64_t upto);

/* Writes what is still queued, appends the lanes in order, flushes and
 * closes a regular file: every line is on disk, still under its partial
 * name (so that a caller writing several files can see all of them
 * written before any is renamed into place). Returns 0, or -1 with
 * "name: what: reason" in errbuf (also for an earlier write error).
 * Takes no more lines afterwards; a second call only reports. */
int sink_file_flush(struct sink_file *f, char *errbuf, size_t errlen);

/* sink_file_flush(), then (regular file) renames the partial file onto
 * path. Returns 0, or -1 with the reason in errbuf. The sink is unusable
 * afterwards. */
int sink_file_finish(struct sink_file *f, char *errbuf, size_t errlen);

/* Lines written or queued so far. */
uint64_t sink_file_lines(const struct sink_file *f);

/* Lines queued and not yet released (bounded by the pipeline's window). */
size_t sink_file_queued(const struct sink_file *f);

/* The first write error, or NULL. */
const char *sink_file_error(const struct sink_file *f);

/* Frees; without a successful finish the partial file is removed. NULL is
 * a no-op. */
void sink_file_destroy(struct sink_file *f);

#endif
