/* fuzz_alert_protobuf.c - libFuzzer target for alert_decode_protobuf.
 * Invariants: no crash or sanitizer report; a decoded alert re-encodes to
 * protobuf that decodes again, and its JSON form fits a bounded buffer. */
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "alert.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    static char json[64 * 1024];
    struct alert a;
    struct alert b;
    uint8_t *buf = NULL;
    size_t len = 0;

    if (alert_decode_protobuf(data, size, &a) != 0) {
        return 0;
    }
    if (alert_encode_protobuf(&a, &buf, &len) != 0) {
        abort();
    }
    if (alert_decode_protobuf(buf, len, &b) != 0 ||
        strcmp(a.merchant_id, b.merchant_id) != 0 || a.n_hits != b.n_hits ||
        a.n_breaches != b.n_breaches) {
        abort();
    }
    free(buf);
    if (alert_encode_json(&a, json, sizeof(json)) < 0) {
        abort();
    }
    return 0;
}
