/* check_summary.c - Check suite for tuner/summary: the progress summary of a
 * trial (DESIGN.md §6 step 3) on synthetic loss traces whose block means,
 * penalised slope and verdict are worked out by hand in the comments.
 *
 * "trend": a clean decrease, a noisy decrease (the block averaging absorbs
 * the noise), a plateau, a spike (unstable, and max_rise makes the slope worse).
 * "diverge": a loss above 10x the start (and exactly 10x, which is not), NaN
 * and Inf anywhere, a non-finite fork loss, no divergence reference.
 * "shape": fewer points than MLT_SUMMARY_POINTS, blocks of unequal size, the
 * fork loss as the first point, n = 0 and elapsed <= 0, verdict names. */
#include "tuner/summary.h"

#include <check.h>
#include <math.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "common/rng.h"

#define TOL 1e-12

/* losses[i] = a - b * (i + 1), i < n: a clean linear decrease from a fork loss a */
static void linear_trace(double *losses, size_t n, double a, double b)
{
    for (size_t i = 0; i < n; i++)
        losses[i] = a - b * (double)(i + 1);
}

/* ===================================================================== trend */

START_TEST(test_clean_decrease)
{
    /* 20 losses 1.95, 1.90, ..., 1.00 after a fork at 2.0, over 4 s: 10 blocks
     * of 2, y[b+1] = 2.0 - 0.05 (2b + 1.5), so y[1] = 1.925 and y[10] = 1.025;
     * no rise; slope = (1.025 - 2.0 + 0) / 4 = -0.24375 */
    double l[20];
    linear_trace(l, 20, 2.0, 0.05);
    mlt_summary_t s;
    mlt_summarize(l, 20, 2.0, 2.0, 4.0, &s);
    ck_assert_int_eq(s.verdict, MLT_VERDICT_CONVERGING);
    ck_assert_uint_eq(s.points, MLT_SUMMARY_POINTS + 1);
    ck_assert_double_eq_tol(s.y[0], 2.0, TOL);
    ck_assert_double_eq_tol(s.y[1], 1.925, TOL);
    ck_assert_double_eq_tol(s.y[10], 1.025, TOL);
    for (size_t b = 0; b < 10; b++)
        ck_assert_double_eq_tol(s.y[b + 1], 2.0 - 0.05 * (2.0 * (double)b + 1.5), TOL);
    ck_assert_double_eq_tol(s.first, 2.0, TOL);
    ck_assert_double_eq_tol(s.last, 1.025, TOL);
    ck_assert_double_eq_tol(s.max_rise, 0.0, TOL);
    ck_assert_double_eq_tol(s.range, 0.975, TOL);
    ck_assert_double_eq_tol(s.slope, -0.24375, TOL);
    ck_assert(s.slope < 0);
    /* the same trace over twice the time has half the slope */
    mlt_summary_t s2;
    mlt_summarize(l, 20, 2.0, 2.0, 8.0, &s2);
    ck_assert_double_eq_tol(s2.slope, s.slope / 2, TOL);
}
END_TEST

START_TEST(test_noisy_decrease)
{
    /* 100 losses falling 0.01 a clock with uniform noise of +-0.03: the raw
     * trace rises often, but each block mean averages 10 losses, so the block
     * means fall by ~0.1 with noise of ~0.006: converging, and the slope is
     * within a few percent of the clean one. */
    double clean[100], noisy[100];
    linear_trace(clean, 100, 2.0, 0.01);
    uint64_t rng = 42;
    int raw_rises = 0;
    for (size_t i = 0; i < 100; i++) {
        noisy[i] = clean[i] + 0.06 * (mlt_rng_uniform(&rng) - 0.5);
        if (i > 0 && noisy[i] > noisy[i - 1])
            raw_rises++;
    }
    ck_assert_msg(raw_rises >= 10, "the noise should make the raw trace rise (%d rises)",
                  raw_rises);
    mlt_summary_t sc, sn;
    mlt_summarize(clean, 100, 2.0, 2.0, 10.0, &sc);
    mlt_summarize(noisy, 100, 2.0, 2.0, 10.0, &sn);
    ck_assert_int_eq(sc.verdict, MLT_VERDICT_CONVERGING);
    ck_assert_int_eq(sn.verdict, MLT_VERDICT_CONVERGING);
    ck_assert_uint_eq(sn.points, MLT_SUMMARY_POINTS + 1);
    /* clean: y[10] = 2 - 0.01 * 95.5 = 1.045, slope = -0.955 / 10 */
    ck_assert_double_eq_tol(sc.slope, -0.0955, TOL);
    ck_assert_double_eq_tol(sn.max_rise, 0.0, TOL);
    ck_assert_msg(fabs(sn.slope - sc.slope) < 0.05 * fabs(sc.slope), "noisy slope %g vs clean %g",
                  sn.slope, sc.slope);
    /* each block mean is the mean of its 10 losses */
    for (size_t b = 0; b < 10; b++) {
        double m = 0;
        for (size_t i = 10 * b; i < 10 * b + 10; i++)
            m += noisy[i];
        ck_assert_double_eq_tol(sn.y[b + 1], m / 10, 1e-12);
    }
}
END_TEST

START_TEST(test_plateau)
{
    /* flat at the fork loss: no rise, no range, slope 0; 0 > 0.1 x 0 is false,
     * so the verdict is converging (a flat trace is not unstable) */
    double l[30];
    for (size_t i = 0; i < 30; i++)
        l[i] = 0.7;
    mlt_summary_t s;
    mlt_summarize(l, 30, 0.7, 2.3, 3.0, &s);
    ck_assert_int_eq(s.verdict, MLT_VERDICT_CONVERGING);
    ck_assert_double_eq_tol(s.slope, 0.0, TOL);
    ck_assert_double_eq_tol(s.max_rise, 0.0, TOL);
    ck_assert_double_eq_tol(s.range, 0.0, TOL);
    /* a decrease that flattens out: still converging, a smaller but negative
     * slope than the full decrease */
    double d[20];
    linear_trace(d, 20, 2.0, 0.05);
    for (size_t i = 10; i < 20; i++)
        d[i] = d[9];
    mlt_summary_t sd;
    mlt_summarize(d, 20, 2.0, 2.0, 4.0, &sd);
    ck_assert_int_eq(sd.verdict, MLT_VERDICT_CONVERGING);
    ck_assert_double_eq_tol(sd.slope, (1.5 - 2.0) / 4.0, TOL);
}
END_TEST

START_TEST(test_spike)
{
    /* the clean decrease with +1.0 on losses[9]: block 4 (losses 8 and 9)
     * has mean 2 - 0.05 x 9.5 + 0.5 = 2.025, a rise of 0.4 from y[4] = 1.625;
     * range = 2.025 - 1.025 = 1.0; 0.4 > 0.1 -> unstable;
     * slope = (1.025 - 2.0 + 0.4) / 4 = -0.14375, worse than -0.24375 */
    double l[20], c[20];
    linear_trace(l, 20, 2.0, 0.05);
    memcpy(c, l, sizeof c);
    l[9] += 1.0;
    mlt_summary_t s, sc;
    mlt_summarize(l, 20, 2.0, 2.0, 4.0, &s);
    mlt_summarize(c, 20, 2.0, 2.0, 4.0, &sc);
    ck_assert_int_eq(s.verdict, MLT_VERDICT_UNSTABLE);
    ck_assert_double_eq_tol(s.y[5], 2.025, TOL);
    ck_assert_double_eq_tol(s.max_rise, 0.4, TOL);
    ck_assert_double_eq_tol(s.range, 1.0, TOL);
    ck_assert_double_eq_tol(s.slope, -0.14375, TOL);
    ck_assert(s.slope > sc.slope);
    ck_assert_double_eq_tol(s.slope - sc.slope, 0.4 / 4.0, TOL);
    /* a small bump (rise 0.05 < 0.1 x range) is tolerated: converging, but
     * still penalised */
    linear_trace(l, 20, 2.0, 0.05);
    l[8] += 0.1;
    l[9] += 0.1; /* block 4 mean +0.1: rise 0.1 - 0.1 = 0.0 from y[4] */
    l[10] += 0.2;
    l[11] += 0.2; /* block 5 mean +0.2: rise 0.2 - 0.1 - 0.1 = 0.0 */
    l[12] += 0.35;
    l[13] += 0.35; /* block 6: +0.35, rise 0.05 */
    mlt_summarize(l, 20, 2.0, 2.0, 4.0, &s);
    ck_assert_double_eq_tol(s.max_rise, 0.05, TOL);
    ck_assert_double_eq_tol(s.range, 0.975, TOL);
    ck_assert_int_eq(s.verdict, MLT_VERDICT_CONVERGING);
    ck_assert_double_eq_tol(s.slope, (1.025 - 2.0 + 0.05) / 4.0, TOL);
    /* a steady rise is all rise: unstable, positive slope */
    linear_trace(l, 20, 2.0, -0.05);
    mlt_summarize(l, 20, 2.0, 2.0, 4.0, &s);
    ck_assert_int_eq(s.verdict, MLT_VERDICT_UNSTABLE);
    ck_assert(s.slope > 0);
}
END_TEST

/* =================================================================== diverge */

static void assert_diverged(const mlt_summary_t *s)
{
    ck_assert_int_eq(s->verdict, MLT_VERDICT_DIVERGED);
    ck_assert(isinf(s->slope) && s->slope > 0);
}

START_TEST(test_above_ten_times)
{
    /* start loss 2.0: a loss of 20.5 > 10 x 2.0 anywhere is divergence */
    double l[20];
    linear_trace(l, 20, 2.0, 0.05);
    l[12] = 20.5;
    mlt_summary_t s;
    mlt_summarize(l, 20, 2.0, 2.0, 4.0, &s);
    assert_diverged(&s);
    /* ... a loss growing steadily past it too */
    for (size_t i = 0; i < 20; i++)
        l[i] = 2.0 * pow(1.3, (double)(i + 1));
    ck_assert(l[19] > 20.0);
    mlt_summarize(l, 20, 2.0, 2.0, 4.0, &s);
    assert_diverged(&s);
    /* exactly 10x is not above it: the spike is unstable, not diverged */
    linear_trace(l, 20, 2.0, 0.05);
    l[12] = 20.0;
    mlt_summarize(l, 20, 2.0, 2.0, 4.0, &s);
    ck_assert_int_eq(s.verdict, MLT_VERDICT_UNSTABLE);
    ck_assert(isfinite(s.slope));
    /* the reference is the job's start loss, not the fork loss: a fork at 0.5
     * (a re-tune late in training) may see 6.0 without diverging */
    linear_trace(l, 20, 0.5, 0.01);
    l[3] = 6.0;
    mlt_summarize(l, 20, 0.5, 2.0, 4.0, &s);
    ck_assert_int_ne(s.verdict, MLT_VERDICT_DIVERGED);
    /* a negative start loss is taken by magnitude: |-2| x 10 = 20 */
    linear_trace(l, 20, 2.0, 0.05);
    l[5] = 21.0;
    mlt_summarize(l, 20, 2.0, -2.0, 4.0, &s);
    assert_diverged(&s);
}
END_TEST

START_TEST(test_nonfinite_anywhere)
{
    const double bad[] = {NAN, INFINITY, -INFINITY};
    const size_t where[] = {0, 1, 7, 10, 18, 19};
    double l[20];
    for (size_t b = 0; b < 3; b++)
        for (size_t w = 0; w < sizeof where / sizeof where[0]; w++) {
            linear_trace(l, 20, 2.0, 0.05);
            l[where[w]] = bad[b];
            mlt_summary_t s;
            mlt_summarize(l, 20, 2.0, 2.0, 4.0, &s);
            ck_assert_msg(s.verdict == MLT_VERDICT_DIVERGED, "%g at %zu: verdict %s", bad[b],
                          where[w], mlt_verdict_name(s.verdict));
            ck_assert(isinf(s.slope) && s.slope > 0);
        }
    /* a single loss, NaN */
    double one = NAN;
    mlt_summary_t s;
    mlt_summarize(&one, 1, 2.0, 2.0, 1.0, &s);
    assert_diverged(&s);
    /* a non-finite fork loss */
    linear_trace(l, 20, 2.0, 0.05);
    mlt_summarize(l, 20, NAN, 2.0, 4.0, &s);
    assert_diverged(&s);
    mlt_summarize(l, 20, INFINITY, 2.0, 4.0, &s);
    assert_diverged(&s);
}
END_TEST

START_TEST(test_no_reference)
{
    /* with no usable start loss (NaN, 0) only non-finite values diverge */
    double l[20];
    linear_trace(l, 20, 2.0, 0.05);
    l[4] = 1e6;
    mlt_summary_t s;
    mlt_summarize(l, 20, 2.0, NAN, 4.0, &s);
    ck_assert_int_ne(s.verdict, MLT_VERDICT_DIVERGED);
    ck_assert(isfinite(s.slope));
    mlt_summarize(l, 20, 2.0, 0.0, 4.0, &s);
    ck_assert_int_ne(s.verdict, MLT_VERDICT_DIVERGED);
    l[5] = NAN;
    mlt_summarize(l, 20, 2.0, 0.0, 4.0, &s);
    assert_diverged(&s);
}
END_TEST

/* ===================================================================== shape */

START_TEST(test_few_points)
{
    /* 3 losses: one block each, so 4 points: the fork loss and the losses */
    const double l[3] = {1.8, 1.7, 1.75};
    mlt_summary_t s;
    mlt_summarize(l, 3, 2.0, 2.0, 0.5, &s);
    ck_assert_uint_eq(s.points, 4);
    ck_assert_double_eq_tol(s.y[0], 2.0, TOL);
    ck_assert_double_eq_tol(s.y[1], 1.8, TOL);
    ck_assert_double_eq_tol(s.y[2], 1.7, TOL);
    ck_assert_double_eq_tol(s.y[3], 1.75, TOL);
    ck_assert_double_eq_tol(s.max_rise, 0.05, TOL);
    ck_assert_double_eq_tol(s.range, 0.3, TOL);
    /* 0.05 > 0.03: unstable; slope = (1.75 - 2.0 + 0.05) / 0.5 = -0.4 */
    ck_assert_int_eq(s.verdict, MLT_VERDICT_UNSTABLE);
    ck_assert_double_eq_tol(s.slope, -0.4, TOL);
    /* exactly MLT_SUMMARY_POINTS losses: one each */
    double m[MLT_SUMMARY_POINTS];
    linear_trace(m, MLT_SUMMARY_POINTS, 2.0, 0.1);
    mlt_summarize(m, MLT_SUMMARY_POINTS, 2.0, 2.0, 1.0, &s);
    ck_assert_uint_eq(s.points, MLT_SUMMARY_POINTS + 1);
    for (size_t i = 0; i < MLT_SUMMARY_POINTS; i++)
        ck_assert_double_eq_tol(s.y[i + 1], m[i], TOL);
    ck_assert_double_eq_tol(s.slope, (m[MLT_SUMMARY_POINTS - 1] - 2.0) / 1.0, TOL);
    /* one loss: two points */
    const double one = 1.5;
    mlt_summarize(&one, 1, 2.0, 2.0, 2.0, &s);
    ck_assert_uint_eq(s.points, 2);
    ck_assert_int_eq(s.verdict, MLT_VERDICT_CONVERGING);
    ck_assert_double_eq_tol(s.slope, -0.25, TOL);
}
END_TEST

START_TEST(test_unequal_blocks)
{
    /* 25 losses in 10 blocks: [0,2) [2,5) [5,7) [7,10) ... (b n / 10) */
    double l[25];
    for (size_t i = 0; i < 25; i++)
        l[i] = (double)i;
    mlt_summary_t s;
    mlt_summarize(l, 25, 100.0, 100.0, 1.0, &s);
    ck_assert_uint_eq(s.points, 11);
    ck_assert_double_eq_tol(s.y[1], 0.5, TOL);
    ck_assert_double_eq_tol(s.y[2], 3.0, TOL);
    ck_assert_double_eq_tol(s.y[3], 5.5, TOL);
    ck_assert_double_eq_tol(s.y[10], 23.0, TOL);
    /* the mean of the block means weighted by size is the mean of the losses */
    size_t sizes[10];
    double total = 0;
    for (size_t b = 0; b < 10; b++) {
        sizes[b] = (b + 1) * 25 / 10 - b * 25 / 10;
        total += s.y[b + 1] * (double)sizes[b];
    }
    ck_assert_double_eq_tol(total / 25, 12.0, 1e-9);
}
END_TEST

START_TEST(test_fork_loss_first)
{
    /* the fork loss is the first point: a trial whose losses sit flat above
     * its fork loss rose by 0.5 at its first point */
    double l[20];
    for (size_t i = 0; i < 20; i++)
        l[i] = 1.5;
    mlt_summary_t s;
    mlt_summarize(l, 20, 1.0, 2.0, 2.0, &s);
    ck_assert_double_eq_tol(s.y[0], 1.0, TOL);
    ck_assert_double_eq_tol(s.first, 1.0, TOL);
    ck_assert_double_eq_tol(s.max_rise, 0.5, TOL);
    ck_assert_double_eq_tol(s.range, 0.5, TOL);
    ck_assert_int_eq(s.verdict, MLT_VERDICT_UNSTABLE);
    ck_assert_double_eq_tol(s.slope, (1.5 - 1.0 + 0.5) / 2.0, TOL);
    /* the same losses after a fork at 2.0: a decrease of 0.5 at once */
    mlt_summarize(l, 20, 2.0, 2.0, 2.0, &s);
    ck_assert_double_eq_tol(s.first, 2.0, TOL);
    ck_assert_int_eq(s.verdict, MLT_VERDICT_CONVERGING);
    ck_assert_double_eq_tol(s.slope, -0.25, TOL);
}
END_TEST

START_TEST(test_empty_or_no_time)
{
    /* no losses, or no (or negative, or NaN) elapsed time: nothing to judge,
     * and summary.c reports it as diverged with slope +inf and no points */
    double l[20];
    linear_trace(l, 20, 2.0, 0.05);
    mlt_summary_t s;
    memset(&s, 0x5a, sizeof s);
    mlt_summarize(l, 0, 2.0, 2.0, 4.0, &s);
    assert_diverged(&s);
    ck_assert_uint_eq(s.points, 0);
    mlt_summarize(NULL, 0, 2.0, 2.0, 4.0, &s);
    assert_diverged(&s);
    ck_assert_uint_eq(s.points, 0);
    const double el[] = {0.0, -1.0, NAN};
    for (size_t i = 0; i < 3; i++) {
        memset(&s, 0x5a, sizeof s);
        mlt_summarize(l, 20, 2.0, 2.0, el[i], &s);
        assert_diverged(&s);
        ck_assert_uint_eq(s.points, 0);
    }
    /* infinite elapsed time: a finite trace over forever, slope 0 */
    mlt_summarize(l, 20, 2.0, 2.0, INFINITY, &s);
    ck_assert_int_eq(s.verdict, MLT_VERDICT_CONVERGING);
    ck_assert_double_eq_tol(s.slope, 0.0, TOL);
}
END_TEST

START_TEST(test_verdict_names)
{
    ck_assert_str_eq(mlt_verdict_name(MLT_VERDICT_CONVERGING), "converging");
    ck_assert_str_eq(mlt_verdict_name(MLT_VERDICT_UNSTABLE), "unstable");
    ck_assert_str_eq(mlt_verdict_name(MLT_VERDICT_DIVERGED), "diverged");
    ck_assert_str_eq(mlt_verdict_name((mlt_verdict_t)3), "?");
    ck_assert_str_eq(mlt_verdict_name((mlt_verdict_t)-1), "?");
}
END_TEST

static Suite *summary_suite(void)
{
    Suite *s = suite_create("summary");
    TCase *tc = tcase_create("trend");
    tcase_add_test(tc, test_clean_decrease);
    tcase_add_test(tc, test_noisy_decrease);
    tcase_add_test(tc, test_plateau);
    tcase_add_test(tc, test_spike);
    suite_add_tcase(s, tc);
    tc = tcase_create("diverge");
    tcase_add_test(tc, test_above_ten_times);
    tcase_add_test(tc, test_nonfinite_anywhere);
    tcase_add_test(tc, test_no_reference);
    suite_add_tcase(s, tc);
    tc = tcase_create("shape");
    tcase_add_test(tc, test_few_points);
    tcase_add_test(tc, test_unequal_blocks);
    tcase_add_test(tc, test_fork_loss_first);
    tcase_add_test(tc, test_empty_or_no_time);
    tcase_add_test(tc, test_verdict_names);
    suite_add_tcase(s, tc);
    return s;
}

int main(void)
{
    SRunner *sr = srunner_create(summary_suite());
    srunner_run_all(sr, CK_ENV);
    int failed = srunner_ntests_failed(sr);
    srunner_free(sr);
    return failed != 0 ? EXIT_FAILURE : EXIT_SUCCESS;
}
