/* fuzz_txn_protobuf.c - libFuzzer target for txn_decode_protobuf.
 * Invariants: no crash or sanitizer report; on any status but TXN_OK the
 * pan field is all zero; on TXN_OK the struct is valid. */
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "txn.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    struct txn t;
    enum txn_status st;

    memset(&t, 0xa5, sizeof(t));
    st = txn_decode_protobuf(data, size, &t);
    if (st != TXN_OK) {
        for (size_t i = 0; i < sizeof(t.pan); i++) {
            if (t.pan[i] != 0) {
                abort();
            }
        }
        if (t.pan_len != 0) {
            abort();
        }
        return 0;
    }
    if (!card_luhn_ok(t.pan, t.pan_len) || txn_validate(&t) != TXN_OK ||
        strlen(t.pan_masked) != t.pan_len) {
        abort();
    }
    /* Re-encoding a valid transaction decodes to the same status. */
    {
        uint8_t *buf = NULL;
        size_t len = 0;
        struct txn u;
        if (txn_encode_protobuf(&t, &buf, &len) != 0) {
            abort();
        }
        if (txn_decode_protobuf(buf, len, &u) != TXN_OK ||
            memcmp(u.pan, t.pan, sizeof(t.pan)) != 0) {
            abort();
        }
        free(buf);
    }
    return 0;
}
