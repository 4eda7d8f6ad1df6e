/* loader_int.h - private to loader.c and loader_admin.c: what `load` and
 * the other list commands (breaches, unload, migrate) share. */
#ifndef CARDWATCH_LOADER_INT_H
#define CARDWATCH_LOADER_INT_H

#include <signal.h>
#include <stddef.h>

#include <hiredis/hiredis.h>

#include "rblock.h"

/* The signal that interrupted a load, unload or migrate (0 = none), set
 * once loader_catch_signals() ran. */
extern volatile sig_atomic_t loader_signal;

/* SIGTERM and SIGINT set loader_signal instead of killing the process, so
 * a command stops between two chunks and says what state it left. */
void loader_catch_signals(void);

/* A fresh generation marker value (32 hex from the CSPRNG). Returns 0, or
 * -1 after logging. */
int loader_new_generation(char out[33]);

/* 1 when reply r is an answer to count; 0 for none (NULL: the connection
 * was closed, the wait says why) or an error reply, the first of which is
 * kept in refused[len]. */
int loader_answered(const redisReply *r, char *refused, size_t len);

/* The breach's members count (hash bkey), 0 when it has none, -1 when
 * Redis failed (logged). */
long long loader_members(struct rblock *L, const char *bkey);

/* Splits buckets of the layout lay (bucket prefix bpre) until it holds
 * RMODEL_FILL cards per bucket on average; sha: RMODEL_LUA_SPLIT loaded.
 * Returns 0, or -1 (logged). */
int loader_split(struct rblock *L, const char *sha, const char *lay,
                 const char *bpre);

#endif
