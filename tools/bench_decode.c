/* bench_decode - the baseline for replay from files: read a transactions
 * file with the replay's reader and decode + validate every record, with
 * nothing else (no fingerprint, lookup, rules or output). Prints one JSON
 * line. Used by `make bench` beside `cardwatch replay` on the same file;
 * not a test.
 *
 *   bench_decode FILE
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "clock.h"
#include "reader.h"
#include "txn.h"

#define BATCH 1000

int main(int argc, char **argv)
{
    if (argc != 2) {
        fprintf(stderr, "usage: bench_decode FILE\n");
        return 2;
    }
    char err[512];
    struct reader *r = reader_open(argv[1], READER_AUTO, 0, err, sizeof(err));
    if (r == NULL) {
        fprintf(stderr, "bench_decode: %s\n", err);
        return 1;
    }
    static struct reader_rec recs[BATCH];
    struct txn t;
    unsigned long long n = 0, ok = 0;
    uint64_t t0 = clock_mono_ns();
    size_t got;
    int rc;
    while ((rc = reader_next_batch(r, recs, BATCH, &got)) == 1) {
        int json = reader_format_of(r) == READER_JSONL;
        for (size_t i = 0; i < got; i++) {
            enum txn_status st =
                json ? txn_decode_json(recs[i].data, recs[i].len, &t)
                     : txn_decode_protobuf(recs[i].data, recs[i].len, &t);
            ok += st == TXN_OK;
            txn_forget_pan(&t);
        }
        n += got;
    }
    double secs = (double)(clock_mono_ns() - t0) / 1e9;
    if (rc < 0) {
        fprintf(stderr, "bench_decode: %s\n", reader_error(r));
        reader_close(r);
        return 1;
    }
    printf("{\"records\":%llu,\"valid\":%llu,\"seconds\":%.3f,\"rate\":%.0f}\n",
           n, ok, secs, secs > 0 ? (double)n / secs : 0.0);
    reader_close(r);
    return 0;
}
