/* bench_filter - the exposure filter (processor/xfilter.c) at given set
 * sizes: build time, bytes per key, queries per second for keys in the
 * set and for keys not in it, and the measured false-positive rate.
 * Prints one JSON line per size. Not a test, but it exits 1 if a key of
 * the set is not found.
 *
 *   bench_filter N [N...]        e.g. bench_filter 1000000 10000000
 *
 * Keys are uniform 64-bit values (splitmix64), like the keys of card
 * fingerprints (HMACs). Every key of the set is queried once, in the
 * array's order after the build (sorted, so the filter slots they touch
 * are random); 10,000,000 other keys are queried for the absent rate (a
 * key of the set among them has probability N * 10^7 / 2^64: none). The
 * peak RSS is the process's so far (sizes run in the order given).
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>

#include "clock.h"
#include "xfilter.h"

#define ABSENT 10000000

static uint64_t splitmix(uint64_t *s)
{
    uint64_t z = (*s += UINT64_C(0x9e3779b97f4a7c15));
    z = (z ^ (z >> 30)) * UINT64_C(0xbf58476d1ce4e5b9);
    z = (z ^ (z >> 27)) * UINT64_C(0x94d049bb133111eb);
    return z ^ (z >> 31);
}

static double seconds(uint64_t t0, uint64_t t1)
{
    return (double)(t1 - t0) / 1e9;
}

/* CPU time of the process (user + system), s: a build's cost apart from
 * what other processes on the machine take from it. */
static double cpu_s(void)
{
    struct rusage ru;
    getrusage(RUSAGE_SELF, &ru);
    return (double)(ru.ru_utime.tv_sec + ru.ru_stime.tv_sec) +
           (double)(ru.ru_utime.tv_usec + ru.ru_stime.tv_usec) / 1e6;
}

static long peak_rss_mb(void)
{
    struct rusage ru;
    getrusage(RUSAGE_SELF, &ru);
    return ru.ru_maxrss / 1024;
}

static int bench(size_t n, const uint64_t *absent)
{
    uint64_t *keys = malloc((n ? n : 1) * sizeof(*keys));
    if (keys == NULL) {
        fprintf(stderr, "bench_filter: out of memory for %zu keys\n", n);
        return -1;
    }
    uint64_t s = n;
    for (size_t i = 0; i < n; i++) {
        keys[i] = splitmix(&s);
    }
    char err[256];
    double c0 = cpu_s();
    uint64_t t0 = clock_mono_ns();
    struct xfilter *f = xfilter_build(keys, n, err, sizeof(err));
    uint64_t t1 = clock_mono_ns();
    double c1 = cpu_s();
    if (f == NULL) {
        fprintf(stderr, "bench_filter: %s\n", err);
        free(keys);
        return -1;
    }
    size_t distinct = xfilter_keys(f);
    size_t found = 0;
    for (size_t i = 0; i < distinct; i++) {
        found += (size_t)xfilter_contains(f, keys[i]);
    }
    uint64_t t2 = clock_mono_ns();
    double c2 = cpu_s();
    size_t yes = 0;
    for (size_t i = 0; i < ABSENT; i++) {
        yes += (size_t)xfilter_contains(f, absent[i]);
    }
    uint64_t t3 = clock_mono_ns();
    double c3 = cpu_s();
    printf("{\"keys\":%zu,\"distinct\":%zu,\"build_s\":%.3f,"
           "\"build_cpu_s\":%.3f,"
           "\"bytes\":%zu,\"bytes_per_key\":%.4f,"
           "\"present_queries_per_s\":%.0f,\"absent_queries_per_s\":%.0f,"
           "\"present_queries_per_cpu_s\":%.0f,"
           "\"absent_queries_per_cpu_s\":%.0f,"
           "\"false_positive_rate\":%.5f,\"peak_rss_mb\":%ld}\n",
           n, distinct, seconds(t0, t1), c1 - c0, xfilter_bytes(f),
           distinct ? (double)xfilter_bytes(f) / (double)distinct : 0.0,
           distinct ? (double)distinct / seconds(t1, t2) : 0.0,
           (double)ABSENT / seconds(t2, t3),
           distinct ? (double)distinct / (c2 - c1) : 0.0,
           (double)ABSENT / (c3 - c2), (double)yes / ABSENT, peak_rss_mb());
    fflush(stdout);
    xfilter_free(f);
    free(keys);
    if (found != distinct) {
        fprintf(stderr, "bench_filter: %zu of %zu keys of the set not found\n",
                distinct - found, distinct);
        return -1;
    }
    return 0;
}

int main(int argc, char **argv)
{
    if (argc < 2) {
        fprintf(stderr, "usage: bench_filter N [N...]\n");
        return 2;
    }
    uint64_t *absent = malloc(ABSENT * sizeof(*absent));
    if (absent == NULL) {
        return 1;
    }
    uint64_t s = UINT64_C(0xabad1dea);
    for (size_t i = 0; i < ABSENT; i++) {
        absent[i] = splitmix(&s);
    }
    int rc = 0;
    for (int i = 1; i < argc && rc == 0; i++) {
        char *end;
        unsigned long long n = strtoull(argv[i], &end, 10);
        if (*argv[i] == '\0' || *end != '\0') {
            fprintf(stderr, "bench_filter: not a count: %s\n", argv[i]);
            rc = 2;
            break;
        }
        rc = bench((size_t)n, absent) == 0 ? 0 : 1;
    }
    free(absent);
    return rc;
}
