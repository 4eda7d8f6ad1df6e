/* card.h - card-number helpers and keyed fingerprints (pure, no I/O but
 * card_key_load).
 *
 * The PAN rules of cardwatch live here: a PAN is only ever turned into a
 * masked form (first 6 + last 4) or a keyed fingerprint
 * HMAC-SHA256(key, PAN digits). Nothing in this module logs.
 */
#ifndef CARDWATCH_CARD_H
#define CARDWATCH_CARD_H

#include <stddef.h>
#include <stdint.h>

#define CARD_PAN_MIN 13
#define CARD_PAN_MAX 19
/* Masked PAN: up to 19 chars + NUL. */
#define CARD_MASK_SIZE 20
/* Fingerprint text: 32 hex chars (first 128 bits of the HMAC) + NUL. */
#define CARD_FP_HEX_LEN 32
#define CARD_FP_SIZE (CARD_FP_HEX_LEN + 1)
/* Expiry tag: 16 hex chars (first 64 bits of an HMAC) + NUL. */
#define CARD_EXPTAG_HEX_LEN 16
#define CARD_EXPTAG_SIZE (CARD_EXPTAG_HEX_LEN + 1)
/* Key ids are [A-Za-z0-9_-]{1,32}. */
#define CARD_KEY_ID_MAX 32

struct card_key;

/* Returns 1 when pan[0..len) is all digits, CARD_PAN_MIN..CARD_PAN_MAX long
 * and passes the Luhn check, else 0. */
int card_luhn_ok(const char *pan, size_t len);

/* Computes the Luhn check digit ('0'..'9') that completes digits[0..len).
 * len must be >= 1 and digits all '0'..'9'. */
char card_luhn_digit(const char *digits, size_t len);

/* Writes the masked PAN (first 6, '*' for the middle, last 4) plus NUL to
 * out. pan must be CARD_PAN_MIN..CARD_PAN_MAX digits; otherwise out gets
 * "invalid" so that a caller can never leak a raw value through it. */
void card_mask(const char *pan, size_t len, char out[CARD_MASK_SIZE]);

/* Loads a fingerprint key from path. The file holds one line
 * "<key_id> <hex key>" (hex key: 32..128 hex digits = 16..64 bytes);
 * '#' lines and blank lines are ignored.
 * Refuses a file that is missing, not a regular file, readable or writable
 * by group or others, or malformed. Returns a new key, or NULL with a
 * message in errbuf (the message never contains key material). The caller
 * owns the key and frees it with card_key_destroy(). */
struct card_key *card_key_load(const char *path, char *errbuf, size_t errlen);

/* Builds a key from raw bytes (tests and tools). Returns NULL on a bad id
 * or length (16..64 bytes) or an OpenSSL failure. */
struct card_key *card_key_new(const char *key_id, const uint8_t *key,
                              size_t keylen);

/* Frees a key and wipes its material. NULL is a no-op. */
void card_key_destroy(struct card_key *key);

/* Returns 1 when id[0..len) is a valid key id ([A-Za-z0-9_-], 1 to
 * CARD_KEY_ID_MAX characters), else 0. What a key file's id and the key
 * id of a fingerprint in text ("<key_id>:<32 hex>") must be. */
int card_key_id_valid(const char *id, size_t len);

/* The key id given in the key file. Borrowed; lives as long as the key. */
const char *card_key_id(const struct card_key *key);

/* Fingerprint of a PAN: lowercase hex of the first 128 bits of
 * HMAC-SHA256(key, PAN digits), written with NUL to out.
 * Returns 0, or -1 on an OpenSSL failure (out is then ""). The key is only
 * read, so one key may serve several threads. */
int card_fingerprint(struct card_key *key, const char *pan, size_t len,
                     char out[CARD_FP_SIZE]);

/* Expiry tag: lowercase hex of the first 64 bits of
 * HMAC-SHA256(key, "exp:" fingerprint ":" YYMM), fingerprint being the
 * card's 32-hex card_fingerprint(). Lets Redis answer "is this the
 * exposed expiry?" without holding the expiry in clear, and needs no PAN,
 * so the pipeline computes it only for exposed cards. Returns 0 / -1. */
int card_expiry_tag(struct card_key *key, const char *fingerprint,
                    const char expiry[4], char out[CARD_EXPTAG_SIZE]);

/* Keyed MAC text: lowercase hex of the full HMAC-SHA256 (64 chars) + NUL. */
#define CARD_MAC_HEX_LEN 64
#define CARD_MAC_SIZE (CARD_MAC_HEX_LEN + 1)

/* A key for another purpose, derived from key so that its MACs can never
 * be taken for (or equal) a fingerprint: the new key is the 32 bytes of
 * HMAC-SHA256(key, label), under the same key id. Returns a new key the
 * caller frees with card_key_destroy(), or NULL on allocation or OpenSSL
 * failure (or a NULL argument). */
struct card_key *card_key_derive(struct card_key *key, const char *label);

/* MAC of any data (such as a dead letter's payload, which may hold a PAN:
 * a plain hash of a bare card number is found by trying a BIN's numbers):
 * lowercase hex of HMAC-SHA256(key, data[0..len)), written with NUL to
 * out. Returns 0, or -1 on an OpenSSL failure (out is then ""). */
int card_mac_hex(struct card_key *key, const void *data, size_t len,
                 char out[CARD_MAC_SIZE]);

/* Plain HMAC-SHA256 for the published test vectors: out gets 32 bytes.
 * Returns 0 / -1. */
int card_hmac_sha256(const uint8_t *key, size_t keylen, const uint8_t *data,
                     size_t datalen, uint8_t out[32]);

#endif
