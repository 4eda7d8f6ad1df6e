/* failalloc.c - see failalloc.h. The __wrap_X functions replace X for
 * the objects linked with --wrap=X; __real_X is the allocator itself
 * (libc's, or ASan's interceptor in the sanitizer builds). */
#include "failalloc.h"

#include <errno.h>
#include <stddef.h>

void *__real_malloc(size_t size);
void *__real_calloc(size_t nmemb, size_t size);
void *__real_realloc(void *ptr, size_t size);
char *__real_strdup(const char *s);
char *__real_strndup(const char *s, size_t n);

void *__wrap_malloc(size_t size);
void *__wrap_calloc(size_t nmemb, size_t size);
void *__wrap_realloc(void *ptr, size_t size);
char *__wrap_strdup(const char *s);
char *__wrap_strndup(const char *s, size_t n);

static long count; /* allocations since failalloc_at() */
static long fail_at; /* <= 0: none armed */
static int fired;

/* By call site (failalloc_site, failalloc_record): a site is the return
 * address of the wrapped call, as an offset from failalloc_at, so that it
 * names the same instruction in every run of one binary (PIE moves the
 * whole image). Open addressing in a fixed table: no allocation here. */
#define SITES 4096
static struct {
    long off; /* 0: free slot */
    long calls;
} sites[SITES];
static int recording;
static long site_armed; /* 0: none */
static long site_nth;
static void (*on_fire)(long off);

void failalloc_at(long n)
{
    __atomic_store_n(&fail_at, 0, __ATOMIC_SEQ_CST);
    __atomic_store_n(&count, 0, __ATOMIC_SEQ_CST);
    __atomic_store_n(&fired, 0, __ATOMIC_SEQ_CST);
    __atomic_store_n(&fail_at, n > 0 ? n : 0, __ATOMIC_SEQ_CST);
}

long failalloc_count(void)
{
    return __atomic_load_n(&count, __ATOMIC_SEQ_CST);
}

int failalloc_failed(void)
{
    return __atomic_load_n(&fired, __ATOMIC_SEQ_CST);
}

void failalloc_site(long off, long nth, void (*fire_cb)(long off))
{
    site_nth = nth > 0 ? nth : 1;
    on_fire = fire_cb;
    __atomic_store_n(&fired, 0, __ATOMIC_SEQ_CST);
    __atomic_store_n(&site_armed, off, __ATOMIC_SEQ_CST);
}

void failalloc_record(void)
{
    __atomic_store_n(&recording, 1, __ATOMIC_SEQ_CST);
}

/* The slot of site off, claimed when new; NULL when the table is full. */
static long *site_calls(long off)
{
    unsigned long h = ((unsigned long)off * 2654435761UL) % SITES;

    for (int i = 0; i < SITES; i++, h = (h + 1) % SITES) {
        long cur = __atomic_load_n(&sites[h].off, __ATOMIC_SEQ_CST);
        if (cur == 0) {
            long zero = 0;
            if (__atomic_compare_exchange_n(&sites[h].off, &zero, off, 0,
                                            __ATOMIC_SEQ_CST,
                                            __ATOMIC_SEQ_CST)) {
                return &sites[h].calls;
            }
            cur = zero; /* another thread claimed it: for which site? */
        }
        if (cur == off) {
            return &sites[h].calls;
        }
    }
    return NULL;
}

long failalloc_sites(long *off, long *calls, long max)
{
    long n = 0;

    for (int i = 0; i < SITES && n < max; i++) {
        long o = __atomic_load_n(&sites[i].off, __ATOMIC_SEQ_CST);
        if (o != 0) {
            off[n] = o;
            calls[n] = __atomic_load_n(&sites[i].calls, __ATOMIC_SEQ_CST);
            n++;
        }
    }
    return n;
}

/* Counts one allocation from return address ra; 1 when it is the one to
 * fail (errno is then ENOMEM, as the real allocator leaves it). */
static int fail_this(void *ra)
{
    long n = __atomic_add_fetch(&count, 1, __ATOMIC_SEQ_CST);
    long armed = __atomic_load_n(&site_armed, __ATOMIC_SEQ_CST);

    if (armed != 0 || __atomic_load_n(&recording, __ATOMIC_SEQ_CST)) {
        long off = (long)((char *)ra - (char *)(void *)failalloc_at);
        long *calls = site_calls(off);
        long c = calls != NULL
                     ? __atomic_add_fetch(calls, 1, __ATOMIC_SEQ_CST) : 0;
        if (armed == off && c == site_nth) {
            __atomic_store_n(&fired, 1, __ATOMIC_SEQ_CST);
            if (on_fire != NULL) {
                on_fire(off);
            }
            errno = ENOMEM;
            return 1;
        }
        return 0;
    }
    if (n != __atomic_load_n(&fail_at, __ATOMIC_SEQ_CST)) {
        return 0;
    }
    __atomic_store_n(&fired, 1, __ATOMIC_SEQ_CST);
    errno = ENOMEM;
    return 1;
}

void *__wrap_malloc(size_t size)
{
    return fail_this(__builtin_return_address(0)) ? NULL
           : __real_malloc(size);
}

void *__wrap_calloc(size_t nmemb, size_t size)
{
    return fail_this(__builtin_return_address(0)) ? NULL
           : __real_calloc(nmemb, size);
}

/* A failed realloc leaves ptr allocated and unchanged. */
void *__wrap_realloc(void *ptr, size_t size)
{
    return fail_this(__builtin_return_address(0)) ? NULL
           : __real_realloc(ptr, size);
}

char *__wrap_strdup(const char *s)
{
    return fail_this(__builtin_return_address(0)) ? NULL
           : __real_strdup(s);
}

char *__wrap_strndup(const char *s, size_t n)
{
    return fail_this(__builtin_return_address(0)) ? NULL
           : __real_strndup(s, n);
}
