/* secret_file.c - see secret_file.h. */
#include "secret_file.h"

#include <errno.h>
#include <fcntl.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <openssl/crypto.h>

#include "text.h"

int secret_file_read(const char *path, const char *what, char *buf,
                     size_t max, size_t *len, char *errbuf, size_t errlen)
{
    struct stat st;
    size_t n = 0;
    int rc = -1;
    if (path == NULL || path[0] == '\0') {
        text_errf(errbuf, errlen, "%s: no path", what);
        return -1;
    }
    /* O_NONBLOCK: opening a FIFO must not hang; it is refused below. */
    int fd = open(path, O_RDONLY | O_NONBLOCK | O_CLOEXEC | O_NOCTTY);
    if (fd < 0) {
        text_errf(errbuf, errlen, "%s %s: %s", what, path, strerror(errno));
        return -1;
    }
    if (fstat(fd, &st) != 0) {
        text_errf(errbuf, errlen, "%s %s: %s", what, path, strerror(errno));
        goto out;
    }
    if (!S_ISREG(st.st_mode)) {
        text_errf(errbuf, errlen, "%s %s: not a regular file", what, path);
        goto out;
    }
    if (st.st_mode & (S_IRGRP | S_IWGRP | S_IROTH | S_IWOTH)) {
        text_errf(errbuf, errlen,
                  "%s %s: mode %04o is readable or writable by group or "
                  "others; chmod 600 it",
                  what, path, (unsigned)(st.st_mode & 07777));
        goto out;
    }
    for (;;) {
        ssize_t r = read(fd, buf + n, max + 1 - n);
        if (r < 0 && errno == EINTR) {
            continue;
        }
        if (r < 0) {
            text_errf(errbuf, errlen, "%s %s: %s", what, path,
                      strerror(errno));
            goto out;
        }
        if (r == 0) {
            break;
        }
        n += (size_t)r;
        if (n > max) {
            text_errf(errbuf, errlen, "%s %s: larger than %zu bytes", what,
                      path, max);
            goto out;
        }
    }
    buf[n] = '\0';
    if (memchr(buf, '\0', n) != NULL) {
        text_errf(errbuf, errlen, "%s %s: contains NUL bytes", what, path);
        goto out;
    }
    *len = n;
    rc = 0;
out:
    if (rc != 0) {
        OPENSSL_cleanse(buf, n < max + 1 ? n : max + 1);
    }
    close(fd);
    return rc;
}
