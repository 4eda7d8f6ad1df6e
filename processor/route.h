/* route.h - BIN routing: longest matching prefix (6 to 8 digits) to an
 * issuer index (pure).
 */
#ifndef CARDWATCH_ROUTE_H
#define CARDWATCH_ROUTE_H

#include <stddef.h>

struct route_table;

/* Returns an empty table, or NULL on allocation failure. */
struct route_table *route_new(void);

/* Frees the table. NULL is a no-op. */
void route_destroy(struct route_table *rt);

/* Adds a prefix "411111" or an inclusive range "41111100-41111199" (both
 * ends of equal length, 6..8 digits, lo <= hi, at most 100000 prefixes)
 * routed to issuer index idx (>= 0). A prefix already routed to another
 * issuer is an error; to the same one it is ignored.
 * Returns 0, or -1 with a message in errbuf. */
int route_add(struct route_table *rt, const char *spec, int idx, char *errbuf,
              size_t errlen);

/* Returns the issuer index of the longest prefix (8, then 7, then 6 digits)
 * of digits[0..len) that is routed, or -1 when none is. */
int route_lookup(const struct route_table *rt, const char *digits, size_t len);

/* Number of prefixes held. */
size_t route_count(const struct route_table *rt);

/* Counts the prefixes per issuer in one pass: counts[i] gets how many are
 * routed to index i, for i < n (higher indexes are not counted). Lets
 * config_check() find an issuer without bins. */
void route_count_by_idx(const struct route_table *rt, size_t *counts, size_t n);

/* Writes up to cap prefixes as malloc'd digit strings into out (caller
 * frees each) in ascending length and value order. Returns how many were
 * written (fewer on allocation failure). Used by the data generator. */
size_t route_prefixes(const struct route_table *rt, char **out, size_t cap);

#endif
