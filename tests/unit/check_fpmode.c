/* check_fpmode.c - Check suite for common/fpmode: after the call a product
 * that would be denormal is 0, and a denormal input reads as 0; before it
 * (where SSE sets the mode) both are denormal. The operands are volatile so
 * the compiler cannot fold the arithmetic at build time. */
#include "common/fpmode.h"

#include <cblas.h>
#include <check.h>
#include <float.h>
#include <math.h>
#include <stdlib.h>

static volatile float tiny = FLT_MIN; /* the smallest normal float */
static volatile float quarter = 0.25f;
static volatile float denormal_in; /* FLT_MIN / 4, made at run time before the call */

START_TEST(test_flush)
{
    /* the default mode keeps denormals (IEEE): the test shows a change */
    float before = tiny * quarter;
    denormal_in = before;
#if defined(__SSE__)
    ck_assert_msg(before > 0.0f && before < FLT_MIN, "FLT_MIN/4 is %g before the call",
                  (double)before);
    ck_assert_int_eq(fpclassify(before), FP_SUBNORMAL);
#endif
    mlt_fpmode_flush_denormals();
    float after = tiny * quarter;
    float read = denormal_in * 1.0f;
#if defined(__SSE__)
    ck_assert_msg(after == 0.0f, "FLT_MIN/4 is %g after the call, not 0 (FTZ)", (double)after);
    ck_assert_msg(read == 0.0f, "a denormal input times 1 is %g, not 0 (DAZ)", (double)read);
#else
    (void)after, (void)read; /* documented no-op */
#endif
    /* normal values are untouched */
    volatile float half = 0.5f;
    ck_assert_float_eq(tiny * 2.0f * half, FLT_MIN);
    mlt_fpmode_flush_denormals(); /* idempotent */
    ck_assert_float_eq(tiny * quarter, 0.0f);
}
END_TEST

/* #15: OpenBLAS starts its threads before main(); after the call they run
 * in the mode too (each one's share of a product of denormal inputs is 0).
 * Without the pool's restart the second thread's half came out denormal. */
START_TEST(test_blas_threads)
{
    mlt_fpmode_flush_denormals();
    openblas_set_num_threads(2);
    enum { N = 512 };
    float *a = malloc(sizeof(float) * N * N), *b = malloc(sizeof(float) * N * N);
    float *c = calloc((size_t)N * N, sizeof(float));
    ck_assert(a && b && c);
    for (int i = 0; i < N * N; i++) {
        a[i] = FLT_MIN / 4; /* a denormal, stored as it is */
        b[i] = 1.0f;
    }
    cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, N, N, N, 1.0f, a, N, b, N, 0.0f, c, N);
    int nonzero = 0;
    for (int i = 0; i < N * N; i++)
        nonzero += c[i] != 0.0f;
#if defined(__SSE__)
    ck_assert_msg(nonzero == 0,
                  "%d of %d outputs of a %d-thread sgemm on denormal inputs are "
                  "not 0: a BLAS thread runs without DAZ",
                  nonzero, N * N, openblas_get_num_threads());
#endif
    free(a);
    free(b);
    free(c);
}
END_TEST

int main(void)
{
    Suite *s = suite_create("fpmode");
    TCase *tc = tcase_create("flush");
    tcase_add_test(tc, test_flush);
    tcase_add_test(tc, test_blas_threads);
    suite_add_tcase(s, tc);
    SRunner *sr = srunner_create(s);
    /* no fork: the mode is per thread, and the test must see its own */
    srunner_set_fork_status(sr, CK_NOFORK);
    srunner_run_all(sr, CK_ENV);
    int failed = srunner_ntests_failed(sr);
    srunner_free(sr);
    return failed != 0 ? EXIT_FAILURE : EXIT_SUCCESS;
}
