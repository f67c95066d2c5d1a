/* check_store_update.c - clocks (the SSP minimum, errors, a fork's clocks),
 * updates (per-branch tunables, a write keeping the optimizer state, an Adam
 * step against a reference) and out-of-memory paths. Part of check_store (see
 * check_store.c). */
#include "tests/unit/check_store.h"

#include <errno.h>
#include <math.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "common/alloc.h"
#include "proto/limits.h"

START_TEST(test_clock_min)
{
    mlt_store_t *st = cs_store_with(NO_LIMIT, MLT_RULE_SGD, T10, 1, 3);
    cs_create(st, 1, 0.1f, 0);
    mlt_branch_t *b = cs_br(st, 1);
    int64_t mc = -1;
    ck_assert_int_eq(mlt_store_branch_min_clock(b), 0);
    ck_assert_int_eq(mlt_store_branch_clock(b, 0, 1, &mc), 0);
    ck_assert_int_eq(mc, 0);
    ck_assert_int_eq(mlt_store_branch_clock(b, 1, 2, &mc), 0);
    ck_assert_int_eq(mc, 0);
    ck_assert_uint_eq(mlt_store_branch_slowest(b), 2);
    ck_assert_int_eq(mlt_store_branch_clock(b, 2, 1, &mc), 0);
    ck_assert_int_eq(mc, 1); /* {1, 2, 1} */
    ck_assert_int_eq(mlt_store_branch_min_clock(b), 1);
    ck_assert_int_eq(mlt_store_branch_clock(b, 0, 3, &mc), 0);
    ck_assert_int_eq(mc, 1); /* {3, 2, 1} */
    ck_assert_uint_eq(mlt_store_branch_slowest(b), 2);
    ck_assert_int_eq(mlt_store_branch_clock(b, 2, 5, &mc), 0);
    ck_assert_int_eq(mc, 2); /* {3, 2, 5} */
    ck_assert_uint_eq(mlt_store_branch_slowest(b), 1);
    /* the same clock again is not backwards */
    ck_assert_int_eq(mlt_store_branch_clock(b, 0, 3, &mc), 0);
    ck_assert_int_eq(mc, 2);
    mlt_branch_info_t info;
    mlt_store_branch_info(st, b, &info);
    ck_assert_int_eq(info.min_clock, 2);
    mlt_store_destroy(&st);
}
END_TEST

START_TEST(test_clock_errors)
{
    mlt_store_t *st = cs_store_with(NO_LIMIT, MLT_RULE_SGD, T10, 1, 3);
    cs_create(st, 1, 0.1f, 0);
    mlt_branch_t *b = cs_br(st, 1);
    int64_t mc = -1;
    for (uint32_t w = 0; w < 3; w++)
        ck_assert_int_eq(mlt_store_branch_clock(b, w, 4, &mc), 0);
    ck_assert_int_eq(mc, 4);
    ck_assert_int_eq(mlt_store_branch_clock(b, 1, 3, &mc), -EINVAL);
    ck_assert_int_eq(mlt_store_branch_clock(b, 3, 9, &mc), -ERANGE);
    ck_assert_int_eq(mlt_store_branch_clock(b, UINT32_MAX, 9, &mc), -ERANGE);
    /* nothing moved */
    ck_assert_int_eq(mlt_store_branch_min_clock(b), 4);
    ck_assert_int_eq(mlt_store_branch_clock(b, 1, 5, &mc), 0);
    ck_assert_int_eq(mc, 4);
    ck_assert_uint_eq(mlt_store_branch_slowest(b), 0);
    mlt_store_destroy(&st);
}
END_TEST

START_TEST(test_clock_fork_starts_at_zero)
{
    mlt_store_t *st = cs_store_with(NO_LIMIT, MLT_RULE_SGD, T10, 1, 2);
    cs_create(st, 1, 0.1f, 0);
    int64_t mc;
    ck_assert_int_eq(mlt_store_branch_clock(cs_br(st, 1), 0, 7, &mc), 0);
    ck_assert_int_eq(mlt_store_branch_clock(cs_br(st, 1), 1, 9, &mc), 0);
    ck_assert_int_eq(mc, 7);
    cs_fork(st, 2, 1, 0.1f, 0);
    ck_assert_int_eq(mlt_store_branch_min_clock(cs_br(st, 2)), 0);
    ck_assert_int_eq(mlt_store_branch_clock(cs_br(st, 2), 0, 0, &mc), 0); /* 0 is not backwards */
    ck_assert_int_eq(mlt_store_branch_clock(cs_br(st, 2), 1, 1, &mc), 0);
    ck_assert_int_eq(mc, 0);
    ck_assert_uint_eq(mlt_store_branch_slowest(cs_br(st, 2)), 0);
    /* clocks are per branch */
    ck_assert_int_eq(mlt_store_branch_min_clock(cs_br(st, 1)), 7);
    ck_assert_uint_eq(mlt_store_branch_slowest(cs_br(st, 1)), 0);
    mlt_store_destroy(&st);
}
END_TEST

/* ===================================================================== update */

START_TEST(test_update_branch_tunables)
{
    mlt_store_t *st = cs_store_with(NO_LIMIT, MLT_RULE_SGD, T10, 1, 1);
    const float w0[] = {1, 1, 1, 1}, g[] = {1, 2, 3, 4};
    cs_create(st, 1, 0.1f, 0);
    cs_write(st, 1, 0, 0, w0);
    cs_fork(st, 2, 1, 0.5f, 0);
    cs_apply(st, 1, 0, 0, g);
    cs_apply(st, 2, 0, 0, g);
    float p[CF], c[CF];
    double wp[CF], wc[CF];
    cs_read_chunk(st, 1, 0, 0, p);
    cs_read_chunk(st, 2, 0, 0, c);
    for (int i = 0; i < 4; i++) {
        wp[i] = 1.0 - (double)0.1f * g[i];
        wc[i] = 1.0 - 0.5 * g[i];
    }
    cs_expect_near(p, wp, 4, "lr 0.1");
    cs_expect_near(c, wc, 4, "lr 0.5");

    /* new tunables apply from the next update on */
    mlt_tunables_t t = cs_tun(0, 0);
    t.staleness = 7;
    mlt_store_branch_set_tunables(cs_br(st, 2), &t);
    ck_assert_float_eq(mlt_store_branch_tunables(cs_br(st, 2))->h.lr, 0);
    ck_assert_uint_eq(mlt_store_branch_tunables(cs_br(st, 2))->staleness, 7);
    ck_assert_float_eq(mlt_store_branch_tunables(cs_br(st, 1))->h.lr, 0.1f);
    cs_apply(st, 2, 0, 0, g);
    cs_expect_chunk(st, 2, 0, 0, c, 4);
    mlt_store_destroy(&st);
}
END_TEST

/* mlt_store_write replaces the parameters and keeps the momentum buffer. */
START_TEST(test_update_write_keeps_state)
{
    const float lr = 0.1f, m = 0.9f;
    mlt_store_t *st = cs_store_with(NO_LIMIT, MLT_RULE_SGD, T10, 1, 1);
    const float g1[] = {1, 2, 3, 4}, g2[] = {1, 0, -1, 2}, w[] = {5, 5, 5, 5};
    cs_create(st, 1, lr, m);
    cs_apply(st, 1, 0, 0, g1);
    cs_write(st, 1, 0, 0, w);
    cs_expect_chunk(st, 1, 0, 0, w, 4);
    cs_apply(st, 1, 0, 0, g2);
    float got[CF];
    double want[CF];
    cs_read_chunk(st, 1, 0, 0, got);
    for (int i = 0; i < 4; i++)
        want[i] = 5.0 - (double)lr * ((double)m * g1[i] + g2[i]);
    cs_expect_near(got, want, 4, "after write");
    mlt_store_destroy(&st);
}
END_TEST

/* One Adam step of the formula in optim.h, in double. */
static void adam_ref(const mlt_hyper_t *h, double *w, double *a, double *v, const float *g,
                     int n, int t)
{
    const double b1 = h->beta1, b2 = h->beta2;
    for (int i = 0; i < n; i++) {
        a[i] = b1 * a[i] + (1 - b1) * g[i];
        v[i] = b2 * v[i] + (1 - b2) * (double)g[i] * g[i];
        w[i] -= (double)h->lr * (a[i] / (1 - pow(b1, t))) /
                (sqrt(v[i] / (1 - pow(b2, t))) + (double)h->eps);
    }
}

START_TEST(test_update_adam_step)
{
    mlt_store_t *st = cs_store_with(NO_LIMIT, MLT_RULE_ADAM, T10, 1, 1);
    cs_create(st, 1, 0.1f, 0);
    const mlt_hyper_t *h = &mlt_store_branch_tunables(cs_br(st, 1))->h;
    const float w0[] = {1, -2, 0.5f, 3};
    const float g1[] = {0.1f, -0.2f, 0.3f, 1};
    const float g2[] = {-0.3f, 0.1f, 0.3f, -2};
    cs_write(st, 1, 0, 0, w0);
    cs_write(st, 1, 0, 1, w0);
    double w[CF], a[CF] = {0}, v[CF] = {0};
    for (int i = 0; i < 4; i++)
        w[i] = w0[i];
    float got[CF];

    cs_apply(st, 1, 0, 0, g1);
    adam_ref(h, w, a, v, g1, 4, 1);
    cs_read_chunk(st, 1, 0, 0, got);
    cs_expect_near(got, w, 4, "adam t=1");

    cs_apply(st, 1, 0, 0, g2);
    adam_ref(h, w, a, v, g2, 4, 2);
    cs_read_chunk(st, 1, 0, 0, got);
    cs_expect_near(got, w, 4, "adam t=2");
    /* had the step stayed at 1, the result would be visibly different */
    {
        double w1[CF], a1[CF] = {0}, v1[CF] = {0}, wx[CF], ax[CF], vx[CF];
        for (int i = 0; i < 4; i++)
            w1[i] = w0[i];
        adam_ref(h, w1, a1, v1, g1, 4, 1);
        memcpy(wx, w1, sizeof wx);
        memcpy(ax, a1, sizeof ax);
        memcpy(vx, v1, sizeof vx);
        adam_ref(h, wx, ax, vx, g2, 4, 1);
        double d = 0;
        for (int i = 0; i < 4; i++)
            d = fmax(d, fabs(wx[i] - w[i]));
        ck_assert(d > 1e-3);
    }

    /* the counter is per chunk: chunk 1's first update is t=1 */
    double w_1[CF], a_1[CF] = {0}, v_1[CF] = {0};
    for (int i = 0; i < 4; i++)
        w_1[i] = w0[i];
    cs_apply(st, 1, 0, 1, g2);
    adam_ref(h, w_1, a_1, v_1, g2, 4, 1);
    cs_read_chunk(st, 1, 0, 1, got);
    cs_expect_near(got, w_1, 4, "adam chunk 1 t=1");

    /* and travels with a fork and its copy: the child's next update is t=3 */
    cs_fork(st, 2, 1, 0.1f, 0);
    cs_apply(st, 2, 0, 0, g1);
    double wc[CF], ac[CF], vc[CF];
    memcpy(wc, w, sizeof wc);
    memcpy(ac, a, sizeof ac);
    memcpy(vc, v, sizeof vc);
    adam_ref(h, wc, ac, vc, g1, 4, 3);
    cs_read_chunk(st, 2, 0, 0, got);
    cs_expect_near(got, wc, 4, "adam child t=3");
    cs_read_chunk(st, 1, 0, 0, got);
    cs_expect_near(got, w, 4, "adam parent after child update");
    mlt_store_destroy(&st);
}
END_TEST

/* ======================================================================== oom */

START_TEST(test_oom_cow)
{
    const float lr = 0.1f, m = 0.9f;
    mlt_store_t *st = cs_store_with(NO_LIMIT, MLT_RULE_SGD, T10, 1, 1);
    const float v[] = {1, 2, 3, 4}, g[] = {1, 1, 2, 2}, w[] = {7, 7, 7, 7};
    cs_create(st, 1, lr, m);
    cs_write(st, 1, 0, 0, v);
    cs_fork(st, 2, 1, lr, m);
    const uint64_t a = mlt_store_allocated(st);

    mlt_alloc_fail_after(0);
    int rc = mlt_store_apply(st, cs_br(st, 2), 0, 0, g);
    mlt_alloc_fail_after(-1);
    ck_assert_int_eq(rc, -ENOMEM);
    cs_expect_chunk(st, 1, 0, 0, v, 4);
    cs_expect_chunk(st, 2, 0, 0, v, 4);
    ck_assert_uint_eq(mlt_store_allocated(st), a);
    mlt_branch_info_t info;
    mlt_store_branch_info(st, cs_br(st, 2), &info);
    ck_assert_uint_eq(info.owned_bytes, 0);

    mlt_alloc_fail_after(0);
    rc = mlt_store_write(st, cs_br(st, 1), 0, 0, w);
    mlt_alloc_fail_after(-1);
    ck_assert_int_eq(rc, -ENOMEM);
    cs_expect_chunk(st, 1, 0, 0, v, 4);
    cs_expect_chunk(st, 2, 0, 0, v, 4);
    ck_assert_uint_eq(mlt_store_allocated(st), a);

    /* the failed apply left the momentum buffer alone: h = g, not m*g + g */
    cs_apply(st, 2, 0, 0, g);
    float got[CF];
    double want[CF];
    cs_read_chunk(st, 2, 0, 0, got);
    for (int i = 0; i < 4; i++)
        want[i] = (double)v[i] - (double)lr * g[i];
    cs_expect_near(got, want, 4, "after failed apply");
    cs_expect_chunk(st, 1, 0, 0, v, 4);
    mlt_store_destroy(&st);
}
END_TEST

START_TEST(test_oom_create)
{
    mlt_store_t *st = cs_store_with(NO_LIMIT, MLT_RULE_SGD, T10, 1, 1);
    mlt_tunables_t t = cs_tun(0.1f, 0);
    char err[256];
    cs_create(st, 1, 0.1f, 0);
    const uint64_t a = mlt_store_allocated(st), p = mlt_store_potential(st);
    /* fail the reference table, then each of the three chunks in turn */
    for (long n = 0; n <= 3; n++) {
        err[0] = 0;
        mlt_alloc_fail_after(n);
        int rc = mlt_store_create(st, 2, MLT_BRANCH_TRAIN, &t, err, sizeof err);
        mlt_alloc_fail_after(-1);
        ck_assert_msg(rc == -ENOMEM, "fail_after(%ld): rc %d", n, rc);
        ck_assert_msg(strstr(err, "memory") != NULL, "message: '%s'", err);
        ck_assert_uint_eq(mlt_store_allocated(st), a);
        ck_assert_uint_eq(mlt_store_potential(st), p);
        ck_assert_uint_eq(mlt_store_n_branches(st), 1);
        ck_assert_ptr_null(mlt_store_branch(st, 2));
    }
    /* fork's reference table */
    mlt_alloc_fail_after(0);
    int rc = mlt_store_fork(st, 3, 1, MLT_BRANCH_TRAIN, &t, err, sizeof err);
    mlt_alloc_fail_after(-1);
    ck_assert_int_eq(rc, -ENOMEM);
    ck_assert_uint_eq(mlt_store_potential(st), p);
    ck_assert_ptr_null(mlt_store_branch(st, 3));
    /* with injection off, both succeed */
    cs_create(st, 2, 0.1f, 0);
    cs_fork(st, 3, 1, 0.1f, 0);
    ck_assert_uint_eq(mlt_store_allocated(st), 2 * a);
    mlt_store_destroy(&st);
}
END_TEST

void cs_update_tcases(Suite *s)
{
    TCase *tc = tcase_create("clock");
    tcase_add_test(tc, test_clock_min);
    tcase_add_test(tc, test_clock_errors);
    tcase_add_test(tc, test_clock_fork_starts_at_zero);
    suite_add_tcase(s, tc);

    tc = tcase_create("update");
    tcase_add_test(tc, test_update_branch_tunables);
    tcase_add_test(tc, test_update_write_keeps_state);
    tcase_add_test(tc, test_update_adam_step);
    suite_add_tcase(s, tc);

    tc = tcase_create("oom");
    tcase_add_test(tc, test_oom_cow);
    tcase_add_test(tc, test_oom_create);
    suite_add_tcase(s, tc);
}
