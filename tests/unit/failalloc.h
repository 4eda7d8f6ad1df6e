/* failalloc.h - allocation-failure injection for the unit tests.
 *
 * Every unit test program is linked with
 *   -Wl,--wrap=malloc,--wrap=calloc,--wrap=realloc,--wrap=strdup,
 *   --wrap=strndup
 * (the Makefile; the cardwatch binary, the tools and the fuzz targets are
 * not), so the calls to those five functions from the objects linked into
 * the program - the processor's, the generated protobuf code and the test
 * itself - go to failalloc.c, which counts them and passes them on to the
 * real allocator (under ASan: to its interceptor). Allocations made inside
 * shared libraries (libc's getline and fopen, OpenSSL, jansson, protobuf-c,
 * inih, cmocka) are neither counted nor failed.
 *
 * Default: pass-through, nothing fails. A test arms one failure, runs the
 * call under test and asks whether the failure fired, in the way of
 * SQLite's malloc tests:
 *
 *   for (long n = 1;; n++) {
 *       failalloc_at(n);
 *       rc = call();
 *       fired = failalloc_failed();
 *       failalloc_at(0);
 *       if (!fired) break;        (the call completed: every allocation
 *                                  point has failed once)
 *       assert rc reports the failure ...
 *   }
 *
 * A failed allocation returns NULL with errno ENOMEM, like the real one.
 * The counter is atomic; the arming is meant for one thread at a time.
 */
#ifndef CARDWATCH_TESTS_FAILALLOC_H
#define CARDWATCH_TESTS_FAILALLOC_H

/* Resets the counter and the fired flag, then arms: the n-th allocation
 * from now (1 = the next one) fails, every later one succeeds. n <= 0
 * disarms (pass-through). */
void failalloc_at(long n);

/* Allocations (the failed one included) since the last failalloc_at(). */
long failalloc_count(void);

/* 1 when the failure armed by the last failalloc_at() or failalloc_site()
 * has fired. */
int failalloc_failed(void);

/* By call site, for a whole program (tests/unit/failalloc_env.c, the
 * cardwatch-failalloc binary of the end-to-end OOM sweep). A site is the
 * return address of the wrapped call as a byte offset from failalloc_at,
 * the same in every run of one binary; addr2line turns it into a line.
 *
 * failalloc_record() starts counting the calls of every site;
 * failalloc_sites() copies up to max (site, calls) pairs out and returns
 * how many it copied. The table holds 4,096 sites; calls from further
 * sites are neither counted nor failed.
 *
 * failalloc_site(off, nth, fire_cb) arms: the nth call (1 = the first)
 * from site off fails, once; fire_cb (may be NULL) is called from the
 * failing allocation, so it must not allocate. While a site is armed the
 * count mode of failalloc_at() is off. */
void failalloc_record(void);
long failalloc_sites(long *off, long *calls, long max);
void failalloc_site(long off, long nth, void (*fire_cb)(long off));

#endif
