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

/* Counts one allocation; 1 when it is the one to fail (errno is then
 * ENOMEM, as the real allocator leaves it). */
static int fail_this(void)
{
    long n = __atomic_add_fetch(&count, 1, __ATOMIC_SEQ_CST);

    if (n != __atomic_load_n(&fail_at, __ATOMIC_SEQ_CST)) {
        return 0;
    }
    __atomic_store_n(&fired, 1, __ATOMIC_SEQ_CST);
    errno = ENOMEM;
    return 1;
}

void *__wrap_malloc(size_t size)
{
    return fail_this() ? NULL : __real_malloc(size);
}

void *__wrap_calloc(size_t nmemb, size_t size)
{
    return fail_this() ? NULL : __real_calloc(nmemb, size);
}

/* A failed realloc leaves ptr allocated and unchanged. */
void *__wrap_realloc(void *ptr, size_t size)
{
    return fail_this() ? NULL : __real_realloc(ptr, size);
}

char *__wrap_strdup(const char *s)
{
    return fail_this() ? NULL : __real_strdup(s);
}

char *__wrap_strndup(const char *s, size_t n)
{
    return fail_this() ? NULL : __real_strndup(s, n);
}
