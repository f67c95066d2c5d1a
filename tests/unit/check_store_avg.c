/* check_store_avg.c - the store under a rule that keeps a weight average
 * (sf-sgd here; sgd with update.average): what each branch kind reads, the
 * state and scalars under copy-on-write, write's restart, and the job spec.
 * Part of check_store (see check_store.c). Expected values come from the
 * formulas of kernels/optim.h evaluated here in double. */
#include "daemon/store.h"
#include "tests/unit/check_store.h"

#include <check.h>
#include <errno.h>
#include <math.h>
#include <string.h>

/* One table of 6 floats: chunks of 4 and 2 floats. */
static const mlt_table_spec_t T6[] = {{"w", 6}};

static mlt_store_t *store_spec(mlt_rule_t rule, bool average)
{
    mlt_store_t *st = mlt_store_new(CF, NO_LIMIT);
    ck_assert_ptr_nonnull(st);
    const mlt_store_job_t job = {"avg", 1, rule, average, T6, 1, 0, 1};
    char err[256] = "";
    int rc = mlt_store_set_job_spec(st, &job, err, sizeof err);
    ck_assert_msg(rc == 0, "set_job_spec: %d %s", rc, err);
    return st;
}

static void fork_kind(mlt_store_t *st, uint32_t child, uint32_t parent, mlt_branch_kind_t kind,
                      float lr)
{
    mlt_tunables_t t = cs_tun(lr, 0.9f);
    char err[256] = "";
    int rc = mlt_store_fork(st, child, parent, kind, &t, err, sizeof err);
    ck_assert_msg(rc == 0, "fork %u<-%u: %d %s", child, parent, rc, err);
}

/* The sf-sgd sequences of one chunk (n <= CF elements) and its scalars, in
 * double, following optim.h. */
typedef struct sf_ref {
    double y[CF], z[CF], x[CF];
    uint64_t k;
    double lr_max, w_sum;
} sf_ref_t;

static void sf_start(sf_ref_t *r, const float *v, uint32_t n)
{
    memset(r, 0, sizeof *r);
    for (uint32_t i = 0; i < n; i++)
        r->y[i] = r->z[i] = r->x[i] = v[i];
}

static void sf_step(sf_ref_t *r, double lr, double beta, const float *g, uint32_t n)
{
    r->lr_max = fmax(r->lr_max, lr);
    r->w_sum += r->lr_max * r->lr_max;
    const double c = r->lr_max * r->lr_max / r->w_sum;
    for (uint32_t i = 0; i < n; i++) {
        r->z[i] -= lr * g[i];
        r->x[i] = (1 - c) * r->x[i] + c * r->z[i];
        r->y[i] = (1 - beta) * r->z[i] + beta * r->x[i];
    }
    r->k++;
}

static const float V0[CF] = {1.0f, -2.0f, 0.5f, 3.0f};
static const float G[3][CF] = {
    {0.5f, -1.0f, 0.25f, 2.0f}, {-0.5f, 0.5f, 1.0f, -1.5f}, {1.0f, 0.0f, -0.75f, 0.5f}};

/* y of chunk k of branch id must be r->y (want_x false) or r->x */
static void expect_read(mlt_store_t *st, uint32_t id, uint32_t k, const sf_ref_t *r, bool want_x,
                        const char *what)
{
    float got[CF];
    const uint32_t n = mlt_store_chunk_len(st, 0, k);
    cs_read_chunk(st, id, 0, k, got);
    cs_expect_near(got, want_x ? r->x : r->y, n, what);
}

/* TRAIN, INIT and SNAPSHOT branches read y; TEST and EVAL read x. */
START_TEST(test_avg_kind_reads)
{
    mlt_store_t *st = store_spec(MLT_RULE_SF_SGD, false);
    cs_create(st, 1, 0.5f, 0.9f);
    cs_write(st, 1, 0, 0, V0);
    sf_ref_t r;
    sf_start(&r, V0, 4);
    for (int s = 0; s < 3; s++) {
        cs_apply(st, 1, 0, 0, G[s]);
        sf_step(&r, 0.5, 0.9, G[s], 4);
    }
    double d = 0;
    for (int i = 0; i < 4; i++)
        d = fmax(d, fabs(r.y[i] - r.x[i]));
    ck_assert_msg(d > 100 * TOL * 4, "y and x too close (%g) to tell apart", d);
    fork_kind(st, 2, 1, MLT_BRANCH_TEST, 0.5f);
    fork_kind(st, 3, 1, MLT_BRANCH_EVAL, 0.0f);
    fork_kind(st, 4, 1, MLT_BRANCH_SNAPSHOT, 0.5f);
    fork_kind(st, 5, 1, MLT_BRANCH_INIT, 0.5f);
    expect_read(st, 1, 0, &r, false, "train reads y");
    expect_read(st, 2, 0, &r, true, "test reads x");
    expect_read(st, 3, 0, &r, true, "eval reads x");
    expect_read(st, 4, 0, &r, false, "snapshot reads y");
    expect_read(st, 5, 0, &r, false, "init reads y");
    /* the eval branch at lr 0 (the tuner's starting loss): nothing moves */
    cs_apply(st, 3, 0, 0, G[0]);
    expect_read(st, 3, 0, &r, true, "eval after an lr-0 push");
    /* chunk 1 was never written or updated: zeros, whatever the kind */
    const double zero[CF] = {0};
    float got[CF];
    cs_read_chunk(st, 2, 0, 1, got);
    cs_expect_near(got, zero, 2, "untouched chunk");
    mlt_store_destroy(&st);
}
END_TEST

/* A push to a fork copies the chunk with its state and scalars: the parent's
 * y, x (through a test fork), and z and scalars (through its next update,
 * which must follow its own history) are untouched. */
START_TEST(test_avg_cow)
{
    mlt_store_t *st = store_spec(MLT_RULE_SF_SGD, false);
    cs_create(st, 1, 0.5f, 0.9f);
    cs_write(st, 1, 0, 0, V0);
    sf_ref_t parent;
    sf_start(&parent, V0, 4);
    for (int s = 0; s < 2; s++) {
        cs_apply(st, 1, 0, 0, G[s]);
        sf_step(&parent, 0.5, 0.9, G[s], 4);
    }
    /* the child at a different rate, three updates */
    fork_kind(st, 2, 1, MLT_BRANCH_TRAIN, 0.25f);
    sf_ref_t child = parent;
    for (int s = 0; s < 3; s++) {
        cs_apply(st, 2, 0, 0, G[s]);
        sf_step(&child, 0.25, 0.9, G[s], 4);
    }
    expect_read(st, 2, 0, &child, false, "child y");
    fork_kind(st, 3, 2, MLT_BRANCH_TEST, 0.25f);
    expect_read(st, 3, 0, &child, true, "child x");
    /* the parent: y and x as they were */
    expect_read(st, 1, 0, &parent, false, "parent y after the child's pushes");
    fork_kind(st, 4, 1, MLT_BRANCH_TEST, 0.5f);
    expect_read(st, 4, 0, &parent, true, "parent x after the child's pushes");
    /* its z, k, lr_max and weight_sum: the next update follows its history
     * (the child's k 5 or weight_sum would give another c, its z another y) */
    cs_apply(st, 1, 0, 0, G[2]);
    sf_step(&parent, 0.5, 0.9, G[2], 4);
    expect_read(st, 1, 0, &parent, false, "parent y after its own third update");
    fork_kind(st, 5, 1, MLT_BRANCH_TEST, 0.5f);
    expect_read(st, 5, 0, &parent, true, "parent x after its own third update");
    /* and the earlier test fork still shares the parent's old chunk */
    sf_ref_t before;
    sf_start(&before, V0, 4);
    for (int s = 0; s < 2; s++)
        sf_step(&before, 0.5, 0.9, G[s], 4);
    expect_read(st, 4, 0, &before, true, "old test fork");
    mlt_store_destroy(&st);
}
END_TEST

/* A write restarts the sequences and the scalars at the written values: a
 * test fork reads them, and the updates after follow a fresh start (with the
 * old weight_sum the first c would not be 1). */
START_TEST(test_avg_write_restarts)
{
    mlt_store_t *st = store_spec(MLT_RULE_SF_SGD, false);
    cs_create(st, 1, 0.5f, 0.9f);
    cs_write(st, 1, 0, 0, V0);
    for (int s = 0; s < 3; s++)
        cs_apply(st, 1, 0, 0, G[s]);
    const float v[CF] = {4.0f, 0.0f, -1.0f, 2.5f};
    cs_write(st, 1, 0, 0, v);
    sf_ref_t r;
    sf_start(&r, v, 4);
    expect_read(st, 1, 0, &r, false, "y after write");
    fork_kind(st, 2, 1, MLT_BRANCH_TEST, 0.5f);
    expect_read(st, 2, 0, &r, true, "x after write");
    for (int s = 0; s < 2; s++) {
        cs_apply(st, 1, 0, 0, G[s]);
        sf_step(&r, 0.5, 0.9, G[s], 4);
    }
    expect_read(st, 1, 0, &r, false, "y, two updates after write");
    fork_kind(st, 3, 1, MLT_BRANCH_TEST, 0.5f);
    expect_read(st, 3, 0, &r, true, "x, two updates after write");
    mlt_store_destroy(&st);
}
END_TEST

/* sgd with update.average: x is the running average of the iterates (plain
 * SGD, constant lr: their mean); without it a test reads the parameters. */
START_TEST(test_avg_sgd_average)
{
    mlt_store_t *st = store_spec(MLT_RULE_SGD, true);
    ck_assert_uint_eq(mlt_store_chunk_bytes(st, 4), 64 + 4 * sizeof(float) * 3); /* w, h, x */
    cs_create(st, 1, 0.1f, 0.0f);
    cs_write(st, 1, 0, 0, V0);
    double w[CF], sum[CF] = {0};
    for (int i = 0; i < 4; i++)
        w[i] = V0[i];
    for (int s = 0; s < 3; s++) {
        cs_apply(st, 1, 0, 0, G[s]);
        for (int i = 0; i < 4; i++) {
            w[i] -= 0.1 * G[s][i];
            sum[i] += w[i];
        }
    }
    double mean[CF];
    for (int i = 0; i < 4; i++)
        mean[i] = sum[i] / 3;
    float got[CF];
    cs_read_chunk(st, 1, 0, 0, got);
    cs_expect_near(got, w, 4, "sgd train reads w");
    fork_kind(st, 2, 1, MLT_BRANCH_TEST, 0.1f);
    cs_read_chunk(st, 2, 0, 0, got);
    cs_expect_near(got, mean, 4, "sgd test reads the mean");
    mlt_store_destroy(&st);

    st = store_spec(MLT_RULE_SGD, false); /* no average: a test reads w */
    ck_assert_uint_eq(mlt_store_chunk_bytes(st, 4), 64 + 4 * sizeof(float) * 2);
    cs_create(st, 1, 0.1f, 0.0f);
    cs_write(st, 1, 0, 0, V0);
    cs_apply(st, 1, 0, 0, G[0]);
    fork_kind(st, 2, 1, MLT_BRANCH_TEST, 0.1f);
    cs_read_chunk(st, 2, 0, 0, got);
    for (int i = 0; i < 4; i++)
        w[i] = V0[i] - 0.1 * G[0][i];
    cs_expect_near(got, w, 4, "sgd without average: test reads w");
    mlt_store_destroy(&st);
}
END_TEST

/* The job spec: average where the rule cannot keep one is refused with a
 * reason; average is part of "the same job"; the chunk sizes follow. */
START_TEST(test_avg_job_spec)
{
    mlt_store_t *st = mlt_store_new(CF, NO_LIMIT);
    char err[256] = "";
    mlt_store_job_t job = {"j", 1, MLT_RULE_ADAM, true, T6, 1, 0, 1};
    ck_assert_int_eq(mlt_store_set_job_spec(st, &job, err, sizeof err), -EINVAL);
    ck_assert_str_eq(err, "update rule adam cannot keep a weight average (update.average: sgd "
                          "and nesterov only; the schedule-free rules always do)");
    ck_assert_ptr_null(mlt_store_job(st));
    job.rule = MLT_RULE_SF_ADAMW;
    ck_assert_int_eq(mlt_store_set_job_spec(st, &job, err, sizeof err), 0);
    ck_assert_uint_eq(mlt_store_chunk_bytes(st, 4), 64 + 4 * sizeof(float) * 4); /* y, z, x, v */
    ck_assert_int_eq(mlt_store_set_job_spec(st, &job, err, sizeof err), 0);      /* same job */
    job.average = false;
    ck_assert_int_eq(mlt_store_set_job_spec(st, &job, err, sizeof err), -EBUSY);
    mlt_store_destroy(&st);
}
END_TEST

void cs_avg_tcases(Suite *s)
{
    TCase *tc = tcase_create("average");
    tcase_add_test(tc, test_avg_kind_reads);
    tcase_add_test(tc, test_avg_cow);
    tcase_add_test(tc, test_avg_write_restarts);
    tcase_add_test(tc, test_avg_sgd_average);
    tcase_add_test(tc, test_avg_job_spec);
    suite_add_tcase(s, tc);
}
