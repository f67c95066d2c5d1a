/* check_pool.c - Check suite for worker/pool: every part of every run runs
 * once, on its own index, and a run returns only after all have (a sum over
 * the parts' results, written just before each part returns, must be whole);
 * runs follow each other back to back and after the helpers have gone to
 * sleep; a pool of one runs on the caller; destroy joins sleeping helpers. */
#define _POSIX_C_SOURCE 200809L
#include "worker/pool.h"

#include <check.h>
#include <pthread.h>
#include <stdint.h>
#include <stdlib.h>
#include <time.h>

#define N_DATA 1000u
#define MAX_PARTS 8u

typedef struct job {
    long data[N_DATA];
    long part_sum[MAX_PARTS];
    uint32_t calls[MAX_PARTS];
    pthread_t who[MAX_PARTS];
} job_t;

/* adds k to element k of the part's range */
static void add_index(void *ctx, uint32_t i, uint32_t n)
{
    job_t *j = ctx;
    for (uint32_t k = N_DATA * i / n; k < N_DATA * (i + 1) / n; k++)
        j->data[k] += k;
    j->calls[i]++;
    j->who[i] = pthread_self();
}

static void sum_part(void *ctx, uint32_t i, uint32_t n)
{
    job_t *j = ctx;
    long s = 0;
    for (uint32_t k = N_DATA * i / n; k < N_DATA * (i + 1) / n; k++)
        s += j->data[k];
    j->part_sum[i] = s;
}

static void nap(long ms)
{
    struct timespec ts = {0, ms * 1000000L};
    nanosleep(&ts, NULL);
}

START_TEST(test_runs)
{
    const uint32_t n = (uint32_t)_i;
    mlt_pool_t *p = mlt_pool_new(n);
    ck_assert_ptr_nonnull(p);
    ck_assert_uint_eq(mlt_pool_size(p), n);
    job_t *j = calloc(1, sizeof *j);
    const int runs = 600;
    for (int r = 1; r <= runs; r++) {
        mlt_pool_run(p, add_index, j);
        mlt_pool_run(p, sum_part, j);
        long s = 0;
        for (uint32_t i = 0; i < n; i++)
            s += j->part_sum[i];
        ck_assert_msg(s == (long)r * (N_DATA - 1) * N_DATA / 2, "run %d: sum %ld", r, s);
        if (r % 200 == 0)
            nap(5); /* past the helpers' spin: they sleep, and must wake */
    }
    for (uint32_t i = 0; i < n; i++)
        ck_assert_uint_eq(j->calls[i], (uint32_t)runs);
    /* part 0 on the caller, the others each on a thread of its own */
    ck_assert(pthread_equal(j->who[0], pthread_self()));
    for (uint32_t i = 1; i < n; i++) {
        ck_assert(!pthread_equal(j->who[i], pthread_self()));
        for (uint32_t k = 1; k < i; k++)
            ck_assert(!pthread_equal(j->who[i], j->who[k]));
    }
    nap(5);
    mlt_pool_destroy(&p); /* joins helpers asleep */
    ck_assert_ptr_null(p);
    mlt_pool_destroy(&p); /* NULL: nothing */
    free(j);
}
END_TEST

START_TEST(test_zero)
{
    ck_assert_ptr_null(mlt_pool_new(0));
}
END_TEST

static Suite *pool_suite(void)
{
    Suite *s = suite_create("pool");
    TCase *tc = tcase_create("pool");
    tcase_add_loop_test(tc, test_runs, 1, 5); /* 1..4 parts */
    tcase_add_test(tc, test_zero);
    suite_add_tcase(s, tc);
    return s;
}

int main(void)
{
    SRunner *sr = srunner_create(pool_suite());
    srunner_run_all(sr, CK_ENV);
    int failed = srunner_ntests_failed(sr);
    srunner_free(sr);
    return failed ? EXIT_FAILURE : EXIT_SUCCESS;
}
