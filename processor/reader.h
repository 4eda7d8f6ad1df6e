/* reader.h - fast record reader for replay input: JSON lines or
 * length-delimited protobuf, plain or gzip, from a file or stdin.
 *
 * Input. A path, or "-" for stdin. gzip is recognised by its magic bytes
 * (1f 8b), never by the file name; concatenated gzip members are read as
 * one stream (anything else after the last member is an error).
 * Everything else (formats, positions, offsets) is about the decompressed
 * stream.
 *
 * Formats.
 * - JSON lines: one record per '\n'-terminated line; a last line without
 *   '\n' is a record too; one trailing '\r' is stripped. Lines that are
 *   empty or hold only spaces, tabs and CRs are skipped, but counted.
 *   pos = the 1-based line number. A line longer than max_record bytes is
 *   not fatal: it comes back as a record with too_long = 1, data NULL and
 *   len 0, and reading goes on with the next line.
 * - Length-delimited protobuf (what `cardwatch gen txns --format
 *   protobuf` writes): each record is a base-128 varint length of at
 *   most 5 bytes, value <= max_record, then that many bytes; zero-length
 *   records are records. pos = the 1-based record number. A varint
 *   longer than 5 bytes, a length above max_record, or a truncated last
 *   record is fatal: the framing is lost.
 * - READER_AUTO looks at the first byte of the data that is not a space,
 *   tab, CR or LF: '{' followed, after any spaces and tabs, by '"' or '}'
 *   means JSON lines; anything else means protobuf. (The second look is
 *   there because a protobuf file whose first record is 123 bytes long
 *   starts with the length byte 0x7b, which is '{'; what follows it is a
 *   field tag, never '"' or '}' for a Transaction.) Empty or blank input
 *   counts as JSON lines with no records. The decision is made by
 *   reader_open() from at most the first buffer of data.
 *
 * Memory. One buffer of 4 MiB, or 2 * max_record + 64 bytes when that is
 * larger; records are handed out as pointers into it, never copied, and
 * the unread tail is moved to the front before each refill.
 *
 * Records may hold raw card numbers: nothing here logs, error messages
 * name the input and the place (record number, byte offset), never record
 * contents, and reader_close() wipes the buffer.
 *
 * Not thread-safe: one reader is used by one thread at a time. Reads
 * block (reader_open() too: it reads the first data to tell gzip and the
 * format); give it a file, or a pipe that keeps up.
 */
#ifndef CARDWATCH_READER_H
#define CARDWATCH_READER_H

#include <stddef.h>
#include <stdint.h>

enum reader_format {
    READER_AUTO = 0,
    READER_JSONL,
    READER_PROTOBUF,
};

/* max_record when 0 is passed, and the largest value reader_open()
 * accepts. */
#define READER_MAX_RECORD_DEFAULT ((size_t)1 << 20)
#define READER_MAX_RECORD_LIMIT ((size_t)1 << 30)

/* One record. data points into the reader's buffer (see
 * reader_next_batch() for how long it stays valid); it is not
 * NUL-terminated. */
struct reader_rec {
    const void *data;     /* NULL when too_long */
    size_t len;           /* 0 when too_long */
    int64_t pos;          /* line number (JSON lines) or record number */
    uint64_t byte_offset; /* in the decompressed stream: where the line
                             starts, or where the record's length prefix
                             starts (protobuf) */
    int too_long;         /* JSON lines only: longer than max_record */
};

struct reader;

/* Opens path ("-" = stdin, which is read but never closed) with format
 * fmt and a record limit of max_record bytes (0 = 1 MiB; at most
 * READER_MAX_RECORD_LIMIT), reads the first data to detect gzip and, for
 * READER_AUTO, the format. Returns the reader, which the caller owns and
 * frees with reader_close(). On failure returns NULL with a message in
 * err[errlen] (may be NULL / 0): "path: strerror" when the file cannot be
 * opened (or is a directory), "path: out of memory", a bad max_record or
 * fmt, or one of reader_next_batch()'s I/O and gzip messages when the
 * first data cannot be read. */
struct reader *reader_open(const char *path, enum reader_format fmt,
                           size_t max_record, char *err, size_t errlen);

/* Reads up to max (>= 1) records into recs[0..max). Returns 1 with
 * *n >= 1 records, 0 at the end of the input (*n = 0), 2 (only with a
 * step limit, see reader_set_step_limit()) when the limit was reached
 * before a record was found (*n = 0; call again to go on), or -1 on a
 * fatal error (*n = 0), with the message in reader_error():
 *   "path: read failed at byte B: strerror"
 *   "path: gzip data corrupt at compressed byte B: zlib's message"
 *   "path: gzip data ends early at compressed byte B (truncated file?)"
 *   "path: data after the end of the gzip stream at compressed byte B"
 *   "path: record N at byte B: length prefix L exceeds the M-byte limit"
 *   "path: record N at byte B: bad length prefix (varint longer than 5
 *    bytes)"
 *   "path: record N at byte B: truncated record (needs L bytes, K left)"
 *   "path: record N at byte B: truncated length prefix (...)"
 * where B is a file offset for I/O and gzip, else a stream offset. These
 * are sticky: every later call returns -1 too. Records before the place
 * of an error are returned first. max == 0 also returns -1, but changes
 * nothing.
 * The records' data point into the reader's buffer: they stay valid until
 * the next reader_next_batch() / reader_next() or reader_close() on r;
 * the caller copies what it keeps longer. A batch may hold fewer than max
 * records even before the end: it never waits for more input once it has
 * one record. */
int reader_next_batch(struct reader *r, struct reader_rec *recs, size_t max,
                      size_t *n);

/* Bounds the work of one reader_next_batch() call: once it has read about
 * bytes of input (file bytes, compressed for gzip) plus data made from it
 * without finding a record - blank lines, a too-long line being skipped,
 * empty gzip members, a gzip bomb that is one endless line - it returns 2
 * instead of going on (one refill more at most: about 4 MiB). For a
 * caller on an event loop, which must get back to it (signals, timers).
 * 0, the default, means no bound: the call returns only with a record,
 * at the end, or on an error. Cannot fail. */
void reader_set_step_limit(struct reader *r, size_t bytes);

/* reader_next_batch() for a single record: 1 with *rec set, 0 at the end,
 * -1 on error (or 2 with a step limit: no record yet). Same lifetime of
 * rec->data. */
int reader_next(struct reader *r, struct reader_rec *rec);

/* The format in use: READER_JSONL or READER_PROTOBUF (never READER_AUTO
 * once reader_open() succeeded). */
enum reader_format reader_format_of(const struct reader *r);

/* 1 when the input is gzip, else 0. */
int reader_is_gzip(const struct reader *r);

/* "auto", "jsonl" or "protobuf" ("?" for other values). */
const char *reader_format_name(enum reader_format f);

/* Display name of the input: the path as given, "stdin" for "-". Owned by
 * r; valid until reader_close(). */
const char *reader_path(const struct reader *r);

/* The message of the last failed call, naming the input and the place
 * ("txns.pb: record 12 at byte 3456: ..."); "" when the last call did
 * not fail. Owned by r; valid until the next call on r. */
const char *reader_error(const struct reader *r);

/* Progress for a progress bar / ETA: *done = how far into the
 * underlying file the records handed out so far reach (compressed bytes
 * for gzip, where it is the input fed to zlib), *total = the file's size,
 * or 0 when it is not known (a pipe, a terminal). At the end of a regular
 * file *done == *total. Either pointer may be NULL. Cannot fail. */
void reader_progress(const struct reader *r, uint64_t *done, uint64_t *total);

/* Frees the reader and closes the file (not stdin). Records handed out
 * become invalid. NULL is a no-op. */
void reader_close(struct reader *r);

#endif
