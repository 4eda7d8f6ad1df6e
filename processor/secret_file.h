/* secret_file.h - reading a small private file whole: the fingerprint key,
 * the Kafka SASL password (and whatever secret comes next).
 *
 * The rules are the same for every secret: a regular file (a FIFO or a
 * device is refused, and opening one never blocks), not readable or
 * writable by group or others (mode 0600 or stricter), and small. It is
 * read with read(2), not stdio, so no unwiped stdio buffer holds it. The
 * content never appears in a message.
 */
#ifndef CARDWATCH_SECRET_FILE_H
#define CARDWATCH_SECRET_FILE_H

#include <stddef.h>

/* Reads path into buf (room for max bytes plus a NUL) and sets *len.
 * Returns 0; or -1 with "<what> <path>: <problem>" in errbuf (missing,
 * not a regular file, "mode 0644 is readable or writable by group or
 * others; chmod 600 it", larger than max bytes, contains NUL bytes). On
 * failure buf holds nothing of the file (wiped). The caller wipes buf
 * (OPENSSL_cleanse) when done with the secret. */
int secret_file_read(const char *path, const char *what, char *buf,
                     size_t max, size_t *len, char *errbuf, size_t errlen);

#endif
