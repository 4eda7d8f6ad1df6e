/* fuzz_txn_json.c - libFuzzer target for txn_decode_json.
 * Invariants: no crash or sanitizer report; on any status but TXN_OK the
 * pan field is all zero; a valid transaction survives a JSON round trip;
 * the fast path and the general (jansson) path agree on status and on
 * every byte of the result. */
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
    st = txn_decode_json((const char *)data, size, &t);
    {
        struct txn g;
        memset(&g, 0xa5, sizeof(g));
        if (txn_decode_json_general((const char *)data, size, &g) != st ||
            memcmp(&g, &t, sizeof(t)) != 0) {
            abort();
        }
    }
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
    if (!card_luhn_ok(t.pan, t.pan_len) || txn_validate(&t) != TXN_OK) {
        abort();
    }
    {
        char buf[1024];
        struct txn u;
        int n = txn_encode_json(&t, buf, sizeof(buf));
        if (n < 0 || txn_decode_json(buf, (size_t)n, &u) != TXN_OK ||
            memcmp(u.pan, t.pan, sizeof(t.pan)) != 0 ||
            strcmp(u.merchant_id, t.merchant_id) != 0 ||
            strcmp(u.txn_id, t.txn_id) != 0) {
            abort();
        }
    }
    return 0;
}
