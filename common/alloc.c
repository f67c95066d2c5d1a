/* alloc.c - see alloc.h. */
#include "common/alloc.h"

#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static atomic_long fail_countdown = -1;

void mlt_alloc_fail_after(long n)
{
    atomic_store(&fail_countdown, n);
}

/* true when this try-allocation must fail (injection armed and reached) */
static int should_fail(void)
{
    long c = atomic_load(&fail_countdown);
    while (c >= 0) {
        if (atomic_compare_exchange_weak(&fail_countdown, &c, c - 1))
            return c == 0;
    }
    return 0;
}

static void oom(size_t n, const char *file, int line)
{
    fprintf(stderr, "out of memory allocating %zu bytes at %s:%d\n", n, file, line);
    abort();
}

void *mlt_malloc_(size_t n, const char *file, int line)
{
    void *p = malloc(n ? n : 1);
    if (!p)
        oom(n, file, line);
    return p;
}

void *mlt_calloc_(size_t nmemb, size_t size, const char *file, int line)
{
    void *p = calloc(nmemb ? nmemb : 1, size ? size : 1);
    if (!p)
        oom(nmemb * size, file, line);
    return p;
}

void *mlt_realloc_(void *p, size_t n, const char *file, int line)
{
    void *q = realloc(p, n ? n : 1);
    if (!q)
        oom(n, file, line);
    return q;
}

char *mlt_strdup_(const char *s, const char *file, int line)
{
    size_t n = strlen(s) + 1;
    char *d = mlt_malloc_(n, file, line);
    memcpy(d, s, n);
    return d;
}

void *mlt_try_malloc(size_t n)
{
    return should_fail() ? NULL : malloc(n ? n : 1);
}

void *mlt_try_calloc(size_t nmemb, size_t size)
{
    return should_fail() ? NULL : calloc(nmemb ? nmemb : 1, size ? size : 1);
}

void *mlt_try_realloc(void *p, size_t n)
{
    return should_fail() ? NULL : realloc(p, n ? n : 1);
}

void *mlt_try_aligned(size_t n)
{
    if (should_fail())
        return NULL;
    void *p = NULL;
    if (posix_memalign(&p, 64, n ? (n + 63) / 64 * 64 : 64) != 0)
        return NULL;
    return p;
}

void mlt_free(void *p)
{
    free(p);
}
