/* pool.h - a fork-join pool of threads for one data-parallel loop at a time.
 *
 * mlt_pool_run(p, fn, ctx) calls fn(ctx, i, n) once for every i in [0, n),
 * where n is the pool's size: i = 0 on the calling thread, the others on the
 * pool's n - 1 threads, and returns when all have returned. One run at a
 * time, from one thread. Helpers spin briefly for the next run (steps of a
 * millisecond follow each other closely) and then sleep. */
#ifndef MLT_WORKER_POOL_H
#define MLT_WORKER_POOL_H

#include <stdint.h>

typedef struct mlt_pool mlt_pool_t;
typedef void (*mlt_pool_fn)(void *ctx, uint32_t i, uint32_t n);

/* A pool of n participants (n - 1 threads; n = 1 runs everything on the
 * caller). NULL with errno set when a thread cannot be started. */
mlt_pool_t *mlt_pool_new(uint32_t n);
uint32_t mlt_pool_size(const mlt_pool_t *p);
void mlt_pool_run(mlt_pool_t *p, mlt_pool_fn fn, void *ctx);
/* Stops and joins the threads; *p = NULL. */
void mlt_pool_destroy(mlt_pool_t **p);

#endif
