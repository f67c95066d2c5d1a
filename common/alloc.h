/* alloc.h - the one door to memory (jemalloc underneath).
 *
 * Two families:
 *  - mlt_malloc/mlt_calloc/mlt_realloc/mlt_strdup: for control structures; they
 *    abort with file and line on out-of-memory, so callers need not check.
 *  - mlt_try_malloc/mlt_try_calloc/mlt_try_realloc: for request-sized buffers; they
 *    return NULL on failure, and the caller fails only that request.
 *
 * Tests make the Nth try-allocation fail with mlt_alloc_fail_after(n). Both
 * families are thread-safe. mlt_free(NULL) is a no-op. */
#ifndef MLT_ALLOC_H
#define MLT_ALLOC_H

#include <stddef.h>

void *mlt_malloc_(size_t n, const char *file, int line);
void *mlt_calloc_(size_t nmemb, size_t size, const char *file, int line);
void *mlt_realloc_(void *p, size_t n, const char *file, int line);
char *mlt_strdup_(const char *s, const char *file, int line);

#define mlt_malloc(n) mlt_malloc_((n), __FILE__, __LINE__)
#define mlt_calloc(a, b) mlt_calloc_((a), (b), __FILE__, __LINE__)
#define mlt_realloc(p, n) mlt_realloc_((p), (n), __FILE__, __LINE__)
#define mlt_strdup(s) mlt_strdup_((s), __FILE__, __LINE__)

void *mlt_try_malloc(size_t n);
void *mlt_try_calloc(size_t nmemb, size_t size);
void *mlt_try_realloc(void *p, size_t n);
/* 64-byte aligned, for float arrays the kernels vectorise over; NULL on failure. */
void *mlt_try_aligned(size_t n);
void mlt_free(void *p);

/* Test hook: the try-allocation after the next n succeeds fails (n = 0: the very
 * next one); -1 turns injection off. */
void mlt_alloc_fail_after(long n);

#endif
