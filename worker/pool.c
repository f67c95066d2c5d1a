/* pool.c - see pool.h.
 *
 * A run is published by bumping `gen` under the mutex; a helper that saw the
 * last generation spins on it for up to SPIN_S, then waits on `go`. Each
 * helper decrements `left` when its part returns; the caller, having done
 * part 0, waits for `left` to reach 0 the same way (spin, then `done`). */
#include "worker/pool.h"

#include <errno.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>

#include "common/alloc.h"
#include "common/timeutil.h"

#define SPIN_S 50e-6 /* longer than the gap between two runs of a step */

typedef struct helper {
    mlt_pool_t *p;
    uint32_t i;
    pthread_t tid;
} helper_t;

struct mlt_pool {
    uint32_t n;
    helper_t *h; /* n - 1 */
    pthread_mutex_t mu;
    pthread_cond_t go, done;
    atomic_uint_fast64_t gen;
    atomic_uint left;
    bool quit; /* under mu */
    mlt_pool_fn fn;
    void *ctx;
};

static inline void cpu_relax(void)
{
#if defined(__x86_64__) || defined(__i386__)
    __builtin_ia32_pause();
#endif
}

/* Spins up to SPIN_S for a new run (gen != seen) or, with for_done, for the
 * end of the current one (left == 0); true if it came. */
static bool spin(mlt_pool_t *p, uint64_t seen, bool for_done)
{
    double t0 = mlt_time_mono();
    for (uint32_t k = 0;; k++) {
        if (for_done ? atomic_load(&p->left) == 0 : atomic_load(&p->gen) != seen)
            return true;
        cpu_relax();
        if ((k & 255) == 255 && mlt_time_mono() - t0 > SPIN_S)
            return false;
    }
}

static void *helper_main(void *arg)
{
    helper_t *h = arg;
    mlt_pool_t *p = h->p;
    uint64_t seen = 0;
    for (;;) {
        if (!spin(p, seen, false)) {
            pthread_mutex_lock(&p->mu);
            while (atomic_load(&p->gen) == seen && !p->quit)
                pthread_cond_wait(&p->go, &p->mu);
            pthread_mutex_unlock(&p->mu);
        }
        pthread_mutex_lock(&p->mu);
        bool quit = p->quit;
        pthread_mutex_unlock(&p->mu);
        if (quit)
            return NULL;
        seen = atomic_load(&p->gen);
        p->fn(p->ctx, h->i, p->n);
        if (atomic_fetch_sub(&p->left, 1) == 1) {
            pthread_mutex_lock(&p->mu);
            pthread_cond_signal(&p->done);
            pthread_mutex_unlock(&p->mu);
        }
    }
}

mlt_pool_t *mlt_pool_new(uint32_t n)
{
    if (n == 0) {
        errno = EINVAL;
        return NULL;
    }
    mlt_pool_t *p = mlt_calloc(1, sizeof *p);
    p->n = n;
    pthread_mutex_init(&p->mu, NULL);
    pthread_cond_init(&p->go, NULL);
    pthread_cond_init(&p->done, NULL);
    atomic_init(&p->gen, 0);
    atomic_init(&p->left, 0);
    p->h = mlt_calloc(n, sizeof *p->h);
    for (uint32_t i = 1; i < n; i++) {
        p->h[i - 1] = (helper_t){.p = p, .i = i};
        int rc = pthread_create(&p->h[i - 1].tid, NULL, helper_main, &p->h[i - 1]);
        if (rc != 0) {
            p->n = i; /* join the ones started */
            mlt_pool_destroy(&p);
            errno = rc;
            return NULL;
        }
    }
    return p;
}

uint32_t mlt_pool_size(const mlt_pool_t *p)
{
    return p->n;
}

void mlt_pool_run(mlt_pool_t *p, mlt_pool_fn fn, void *ctx)
{
    if (p->n == 1) {
        fn(ctx, 0, 1);
        return;
    }
    p->fn = fn;
    p->ctx = ctx;
    atomic_store(&p->left, p->n - 1);
    pthread_mutex_lock(&p->mu);
    atomic_fetch_add(&p->gen, 1);
    pthread_cond_broadcast(&p->go);
    pthread_mutex_unlock(&p->mu);
    fn(ctx, 0, p->n);
    if (!spin(p, 0, true)) {
        pthread_mutex_lock(&p->mu);
        while (atomic_load(&p->left) != 0)
            pthread_cond_wait(&p->done, &p->mu);
        pthread_mutex_unlock(&p->mu);
    }
}

void mlt_pool_destroy(mlt_pool_t **pp)
{
    if (pp == NULL || *pp == NULL)
        return;
    mlt_pool_t *p = *pp;
    pthread_mutex_lock(&p->mu);
    p->quit = true;
    atomic_fetch_add(&p->gen, 1);
    pthread_cond_broadcast(&p->go);
    pthread_mutex_unlock(&p->mu);
    for (uint32_t i = 1; i < p->n; i++)
        pthread_join(p->h[i - 1].tid, NULL);
    pthread_cond_destroy(&p->go);
    pthread_cond_destroy(&p->done);
    pthread_mutex_destroy(&p->mu);
    mlt_free(p->h);
    mlt_free(p);
    *pp = NULL;
}
