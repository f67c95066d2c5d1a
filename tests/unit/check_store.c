/* check_store.c - Check suite for daemon/store.
 *
 * Tables are small (chunks of 4 floats, tables whose sizes are not multiples
 * of 4) so every chunk can be named in a test and the last chunk of a table is
 * short. Values are read back through mlt_store_chunk_get/mlt_chunk_release,
 * the path a pull reply takes. Update results are compared
 * against the formulas of kernels/optim.h evaluated here in double. The
 * averaging rules (schedule-free, update.average) are in check_store_avg.c. */
#include "daemon/store.h"
#include "tests/unit/check_store.h"

#include <check.h>
#include <errno.h>
#include <math.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "common/alloc.h"
#include "proto/limits.h"

/* One table of 10 floats: chunks of 4, 4 and 2 floats. */
const mlt_table_spec_t T10[1] = {{"w", 10}};

mlt_tunables_t cs_tun(float lr, float momentum)
{
    mlt_tunables_t t;
    memset(&t, 0, sizeof t);
    t.h = mlt_hyper_default();
    t.h.lr = lr;
    t.h.momentum = momentum;
    t.staleness = 0;
    return t;
}

mlt_store_t *cs_store_with(uint64_t limit, mlt_rule_t rule, const mlt_table_spec_t *tabs,
                           uint32_t n_tabs, uint32_t n_workers)
{
    mlt_store_t *st = mlt_store_new(CF, limit);
    ck_assert_ptr_nonnull(st);
    char err[256] = "";
    int rc = mlt_store_set_job(st, "job", n_workers, rule, tabs, n_tabs, 0, 1, err, sizeof err);
    ck_assert_msg(rc == 0, "set_job: %d %s", rc, err);
    return st;
}

void cs_create(mlt_store_t *st, uint32_t id, float lr, float momentum)
{
    mlt_tunables_t t = cs_tun(lr, momentum);
    char err[256] = "";
    int rc = mlt_store_create(st, id, MLT_BRANCH_TRAIN, &t, err, sizeof err);
    ck_assert_msg(rc == 0, "create %u: %d %s", id, rc, err);
}

void cs_fork(mlt_store_t *st, uint32_t child, uint32_t parent, float lr, float momentum)
{
    mlt_tunables_t t = cs_tun(lr, momentum);
    char err[256] = "";
    int rc = mlt_store_fork(st, child, parent, MLT_BRANCH_TRAIN, &t, err, sizeof err);
    ck_assert_msg(rc == 0, "fork %u<-%u: %d %s", child, parent, rc, err);
}

mlt_branch_t *cs_br(mlt_store_t *st, uint32_t id)
{
    mlt_branch_t *b = mlt_store_branch(st, id);
    ck_assert_msg(b != NULL, "branch %u missing", id);
    return b;
}

void cs_write(mlt_store_t *st, uint32_t id, uint32_t table, uint32_t k, const float *v)
{
    ck_assert_int_eq(mlt_store_write(st, cs_br(st, id), table, k, v), 0);
}

void cs_apply(mlt_store_t *st, uint32_t id, uint32_t table, uint32_t k, const float *g)
{
    ck_assert_int_eq(mlt_store_apply(st, cs_br(st, id), table, k, g), 0);
}

void cs_read_chunk(mlt_store_t *st, uint32_t id, uint32_t table, uint32_t k, float *out)
{
    const float *data = NULL;
    mlt_chunk_t *c = mlt_store_chunk_get(st, cs_br(st, id), table, k, &data);
    ck_assert_ptr_nonnull(c);
    ck_assert_ptr_nonnull(data);
    memcpy(out, data, mlt_store_chunk_len(st, table, k) * sizeof(float));
    mlt_chunk_release(NULL, c);
}

void cs_expect_chunk(mlt_store_t *st, uint32_t id, uint32_t table, uint32_t k,
                         const float *want, uint32_t n)
{
    float got[CF];
    ck_assert_uint_eq(mlt_store_chunk_len(st, table, k), n);
    cs_read_chunk(st, id, table, k, got);
    for (uint32_t i = 0; i < n; i++)
        ck_assert_msg(got[i] == want[i], "branch %u table %u chunk %u [%u]: got %g want %g", id,
                      table, k, i, (double)got[i], (double)want[i]);
}

void cs_expect_near(const float *got, const double *want, uint32_t n, const char *what)
{
    for (uint32_t i = 0; i < n; i++)
        ck_assert_msg(fabs((double)got[i] - want[i]) <= TOL * (1 + fabs(want[i])),
                      "%s[%u]: got %.9g want %.9g", what, i, (double)got[i], want[i]);
}

/* Bytes of one fully private branch of T10. */
static uint64_t t10_bytes(const mlt_store_t *st)
{
    return 2 * mlt_store_chunk_bytes(st, 4) + mlt_store_chunk_bytes(st, 2);
}

/* ======================================================================== job */

START_TEST(test_new_args)
{
    errno = 0;
    ck_assert_ptr_null(mlt_store_new(0, NO_LIMIT));
    ck_assert_int_eq(errno, EINVAL);
    errno = 0;
    ck_assert_ptr_null(mlt_store_new(MLT_MAX_CHUNK_BYTES / sizeof(float) + 1, NO_LIMIT));
    ck_assert_int_eq(errno, EINVAL);
    mlt_store_t *st = mlt_store_new(MLT_MAX_CHUNK_BYTES / sizeof(float), 1234);
    ck_assert_ptr_nonnull(st);
    ck_assert_uint_eq(mlt_store_chunk_floats(st), MLT_MAX_CHUNK_BYTES / sizeof(float));
    ck_assert_uint_eq(mlt_store_limit(st), 1234);
    ck_assert_ptr_null(mlt_store_job(st));
    ck_assert_uint_eq(mlt_store_n_branches(st), 0);
    ck_assert_uint_eq(mlt_store_allocated(st), 0);
    mlt_store_destroy(&st);
    ck_assert_ptr_null(st);
    mlt_store_destroy(&st); /* *sp NULL */
    mlt_store_destroy(NULL);
}
END_TEST

START_TEST(test_job_same_spec)
{
    /* separate buffers: the comparison must be by content, not by pointer */
    char n1[] = "jobA", n2[] = "jobA", ta[] = "a", tb[] = "b", ta2[] = "a", tb2[] = "b";
    mlt_table_spec_t s1[] = {{ta, 10}, {tb, 7}};
    mlt_table_spec_t s2[] = {{ta2, 10}, {tb2, 7}};
    char err[256] = "";
    mlt_store_t *st = mlt_store_new(CF, NO_LIMIT);
    ck_assert_int_eq(mlt_store_set_job(st, n1, 3, MLT_RULE_SGD, s1, 2, 0, 1, err, sizeof err), 0);
    ck_assert_str_eq(mlt_store_job(st), "jobA");
    ck_assert_uint_eq(mlt_store_n_workers(st), 3);
    ck_assert_uint_eq(mlt_store_n_tables(st), 2);
    cs_create(st, 1, 0.1f, 0);
    uint64_t alloc = mlt_store_allocated(st);
    ck_assert_uint_gt(alloc, 0);

    ck_assert_int_eq(mlt_store_set_job(st, n2, 3, MLT_RULE_SGD, s2, 2, 0, 1, err, sizeof err), 0);
    /* the job and its branches are untouched */
    ck_assert_str_eq(mlt_store_job(st), "jobA");
    ck_assert_uint_eq(mlt_store_n_branches(st), 1);
    ck_assert_ptr_nonnull(mlt_store_branch(st, 1));
    ck_assert_uint_eq(mlt_store_allocated(st), alloc);
    mlt_store_destroy(&st);
}
END_TEST

START_TEST(test_job_busy)
{
    mlt_table_spec_t s1[] = {{"a", 10}, {"b", 7}};
    mlt_table_spec_t bigger[] = {{"a", 10}, {"b", 8}};
    mlt_table_spec_t renamed[] = {{"a", 10}, {"c", 7}};
    char err[256] = "";
    mlt_store_t *st = mlt_store_new(CF, NO_LIMIT);
    ck_assert_int_eq(mlt_store_set_job(st, "jobA", 3, MLT_RULE_SGD, s1, 2, 0, 1, err, sizeof err), 0);
    cs_create(st, 1, 0.1f, 0);

    err[0] = 0;
    ck_assert_int_eq(mlt_store_set_job(st, "jobB", 3, MLT_RULE_SGD, s1, 2, 0, 1, err, sizeof err),
                     -EBUSY);
    ck_assert_msg(strstr(err, "jobA") != NULL, "message does not name the job: '%s'", err);
    ck_assert_msg(strstr(err, "jobB") != NULL, "message does not name the new job: '%s'", err);
    /* same name, anything else different */
    ck_assert_int_eq(mlt_store_set_job(st, "jobA", 4, MLT_RULE_SGD, s1, 2, 0, 1, err, sizeof err),
                     -EBUSY);
    ck_assert_int_eq(mlt_store_set_job(st, "jobA", 3, MLT_RULE_ADAM, s1, 2, 0, 1, err, sizeof err),
                     -EBUSY);
    ck_assert_int_eq(
        mlt_store_set_job(st, "jobA", 3, MLT_RULE_SGD, bigger, 2, 0, 1, err, sizeof err), -EBUSY);
    ck_assert_int_eq(
        mlt_store_set_job(st, "jobA", 3, MLT_RULE_SGD, renamed, 2, 0, 1, err, sizeof err), -EBUSY);
    ck_assert_int_eq(mlt_store_set_job(st, "jobA", 3, MLT_RULE_SGD, s1, 1, 0, 1, err, sizeof err),
                     -EBUSY);
    /* nothing changed */
    ck_assert_str_eq(mlt_store_job(st), "jobA");
    ck_assert_uint_eq(mlt_store_n_workers(st), 3);
    ck_assert_uint_eq(mlt_store_n_tables(st), 2);
    ck_assert_uint_eq(mlt_store_n_branches(st), 1);
    mlt_store_destroy(&st);
}
END_TEST

START_TEST(test_job_end_then_new)
{
    mlt_table_spec_t s1[] = {{"a", 10}};
    mlt_table_spec_t s2[] = {{"x", 3}, {"y", 9}};
    char err[256] = "";
    mlt_store_t *st = mlt_store_new(CF, NO_LIMIT);
    ck_assert_int_eq(mlt_store_set_job(st, "jobA", 2, MLT_RULE_SGD, s1, 1, 0, 1, err, sizeof err), 0);
    cs_create(st, 1, 0.1f, 0);
    cs_fork(st, 2, 1, 0.1f, 0);
    ck_assert_uint_gt(mlt_store_allocated(st), 0);

    mlt_store_end_job(st);
    ck_assert_ptr_null(mlt_store_job(st));
    ck_assert_uint_eq(mlt_store_n_branches(st), 0);
    ck_assert_ptr_null(mlt_store_branch(st, 1));
    ck_assert_uint_eq(mlt_store_allocated(st), 0);
    ck_assert_uint_eq(mlt_store_potential(st), 0);
    ck_assert_uint_eq(mlt_store_n_tables(st), 0);

    ck_assert_int_eq(mlt_store_set_job(st, "jobB", 5, MLT_RULE_ADAM, s2, 2, 0, 1, err, sizeof err),
                     0);
    ck_assert_str_eq(mlt_store_job(st), "jobB");
    ck_assert_uint_eq(mlt_store_n_workers(st), 5);
    ck_assert_uint_eq(mlt_store_n_tables(st), 2);
    cs_create(st, 1, 0.1f, 0);
    /* chunks are sized by the new job: x = 3, y = 4+4+1, adam keeps 2 state arrays */
    uint64_t want = mlt_store_chunk_bytes(st, 3) + 2 * mlt_store_chunk_bytes(st, 4) +
                    mlt_store_chunk_bytes(st, 1);
    ck_assert_uint_eq(mlt_store_allocated(st), want);
    ck_assert_uint_eq(mlt_store_chunk_bytes(st, 4) - mlt_store_chunk_bytes(st, 0),
                      4 * sizeof(float) * 3);
    mlt_store_destroy(&st);
}
END_TEST

START_TEST(test_job_invalid)
{
    char err[256] = "";
    mlt_store_t *st = mlt_store_new(CF, NO_LIMIT);
    ck_assert_int_eq(
        mlt_store_set_job(st, "j", 1, MLT_RULE_COUNT_, T10, 1, 0, 1, err, sizeof err), -EINVAL);
    ck_assert_int_eq(mlt_store_set_job(st, "j", 1, MLT_RULE_SGD, T10, 1, 1, 1, err, sizeof err),
                     -EINVAL);
    ck_assert_int_eq(mlt_store_set_job(st, "j", 1, MLT_RULE_SGD, T10, 1, 0, 0, err, sizeof err),
                     -EINVAL);
    ck_assert_ptr_null(mlt_store_job(st));
    /* and a valid one is still accepted */
    ck_assert_int_eq(mlt_store_set_job(st, "j", 1, MLT_RULE_SGD, T10, 1, 2, 3, err, sizeof err), 0);
    mlt_store_destroy(&st);
}
END_TEST

START_TEST(test_chunk_layout)
{
    mlt_table_spec_t s[] = {{"a", 10}, {"b", 8}, {"c", 3}};
    mlt_store_t *st = cs_store_with(NO_LIMIT, MLT_RULE_SGD, s, 3, 1);
    ck_assert_uint_eq(mlt_store_chunk_len(st, 0, 0), 4);
    ck_assert_uint_eq(mlt_store_chunk_len(st, 0, 1), 4);
    ck_assert_uint_eq(mlt_store_chunk_len(st, 0, 2), 2); /* short last chunk */
    ck_assert_uint_eq(mlt_store_chunk_len(st, 1, 0), 4);
    ck_assert_uint_eq(mlt_store_chunk_len(st, 1, 1), 4); /* exact multiple: full */
    ck_assert_uint_eq(mlt_store_chunk_len(st, 2, 0), 3); /* smaller than one chunk */

    char err[256] = "";
    ck_assert_int_eq(mlt_store_check_range(st, 0, 0, 3, err, sizeof err), 0);
    ck_assert_int_eq(mlt_store_check_range(st, 0, 2, 1, err, sizeof err), 0);
    ck_assert_int_eq(mlt_store_check_range(st, 1, 0, 2, err, sizeof err), 0);
    ck_assert_int_eq(mlt_store_check_range(st, 2, 0, 1, err, sizeof err), 0);
    ck_assert_int_eq(mlt_store_check_range(st, 0, 3, 1, err, sizeof err), -ERANGE);
    ck_assert_int_eq(mlt_store_check_range(st, 0, 0, 4, err, sizeof err), -ERANGE);
    ck_assert_int_eq(mlt_store_check_range(st, 0, 2, 2, err, sizeof err), -ERANGE);
    ck_assert_int_eq(mlt_store_check_range(st, 1, 2, 1, err, sizeof err), -ERANGE);
    err[0] = 0;
    ck_assert_int_eq(mlt_store_check_range(st, 0, 0, 0, err, sizeof err), -ERANGE);
    ck_assert_msg(strstr(err, "'a'") != NULL, "message does not name the table: '%s'", err);
    /* first + count overflowing 32 bits */
    ck_assert_int_eq(mlt_store_check_range(st, 0, UINT32_MAX, 2, err, sizeof err), -ERANGE);
    ck_assert_int_eq(mlt_store_check_range(st, 0, 1, UINT32_MAX, err, sizeof err), -ERANGE);
    err[0] = 0;
    ck_assert_int_eq(mlt_store_check_range(st, 3, 0, 1, err, sizeof err), -ENOENT);
    ck_assert_msg(strstr(err, "3") != NULL, "message does not name the table: '%s'", err);
    ck_assert_int_eq(mlt_store_check_range(st, UINT32_MAX, 0, 1, err, sizeof err), -ENOENT);

    /* a branch holds exactly the chunks above, each sized by its length */
    cs_create(st, 1, 0.1f, 0);
    uint64_t want = 4 * mlt_store_chunk_bytes(st, 4) + mlt_store_chunk_bytes(st, 2) +
                    mlt_store_chunk_bytes(st, 3);
    ck_assert_uint_eq(mlt_store_allocated(st), want);
    ck_assert_uint_eq(mlt_store_potential(st), want);
    /* parameters + one momentum array of n floats per chunk under sgd */
    ck_assert_uint_eq(mlt_store_chunk_bytes(st, 4) - mlt_store_chunk_bytes(st, 2),
                      2 * sizeof(float) * 2);
    float z[4] = {0, 0, 0, 0};
    cs_expect_chunk(st, 1, 0, 2, z, 2); /* zeroed */
    mlt_store_destroy(&st);
}
END_TEST

START_TEST(test_check_range_no_job)
{
    char err[256] = "";
    mlt_store_t *st = mlt_store_new(CF, NO_LIMIT);
    ck_assert_int_eq(mlt_store_check_range(st, 0, 0, 1, err, sizeof err), -ENOENT);
    ck_assert_msg(strstr(err, "job") != NULL, "message: '%s'", err);
    mlt_store_set_job(st, "j", 1, MLT_RULE_SGD, T10, 1, 0, 1, err, sizeof err);
    ck_assert_int_eq(mlt_store_check_range(st, 0, 0, 1, err, sizeof err), 0);
    mlt_store_end_job(st);
    ck_assert_int_eq(mlt_store_check_range(st, 0, 0, 1, err, sizeof err), -ENOENT);
    mlt_store_destroy(&st);
}
END_TEST

/* Tables of 10, 25, 7 and 3 floats: 3 + 7 + 2 + 1 = 13 global chunks, over
 * three shards [0,4) [4,8) [8,13). owner[t][k] is worked out by hand. */
START_TEST(test_sharding)
{
    static const mlt_table_spec_t s[] = {{"a", 10}, {"b", 25}, {"c", 7}, {"d", 3}};
    static const uint32_t n_chunks[] = {3, 7, 2, 1};
    static const uint32_t lens[4][7] = {
        {4, 4, 2}, {4, 4, 4, 4, 4, 4, 1}, {4, 3}, {3}};
    static const int owner[4][7] = {
        {0, 0, 0}, {0, 1, 1, 1, 1, 2, 2}, {2, 2}, {2}};
    mlt_store_t *st[3];
    char err[256];
    for (uint32_t r = 0; r < 3; r++) {
        st[r] = mlt_store_new(CF, NO_LIMIT);
        ck_assert_int_eq(
            mlt_store_set_job(st[r], "shard", 2, MLT_RULE_SGD, s, 4, r, 3, err, sizeof err), 0);
        cs_create(st[r], 7, 0.1f, 0);
    }
    uint64_t total = 0;
    for (uint32_t t = 0; t < 4; t++) {
        for (uint32_t k = 0; k < n_chunks[t]; k++) {
            int holders = 0, holder = -1;
            for (int r = 0; r < 3; r++) {
                ck_assert_uint_eq(mlt_store_chunk_len(st[r], t, k), lens[t][k]);
                err[0] = 0;
                int rc = mlt_store_check_range(st[r], t, k, 1, err, sizeof err);
                if (rc == 0) {
                    holders++;
                    holder = r;
                } else {
                    ck_assert_int_eq(rc, -ERANGE);
                    ck_assert_msg(strstr(err, "not on this shard") != NULL, "message: '%s'",
                                  err);
                }
            }
            ck_assert_msg(holders == 1, "table %u chunk %u is on %d shards", t, k, holders);
            ck_assert_msg(holder == owner[t][k], "table %u chunk %u on shard %d, want %d", t, k,
                          holder, owner[t][k]);
            total += mlt_store_chunk_bytes(st[0], lens[t][k]);
            /* beyond the table on every shard */
            for (int r = 0; r < 3; r++)
                ck_assert_int_eq(mlt_store_check_range(st[r], t, n_chunks[t], 1, err, sizeof err),
                                 -ERANGE);
        }
    }
    /* whole-shard ranges succeed; a range straddling two shards fails on both */
    ck_assert_int_eq(mlt_store_check_range(st[1], 1, 1, 4, err, sizeof err), 0);
    ck_assert_int_eq(mlt_store_check_range(st[0], 1, 0, 2, err, sizeof err), -ERANGE);
    ck_assert_int_eq(mlt_store_check_range(st[1], 1, 0, 2, err, sizeof err), -ERANGE);
    ck_assert_int_eq(mlt_store_check_range(st[1], 1, 4, 2, err, sizeof err), -ERANGE);
    ck_assert_int_eq(mlt_store_check_range(st[2], 1, 4, 2, err, sizeof err), -ERANGE);

    /* the three shards together hold every chunk once */
    uint64_t sum = 0;
    for (int r = 0; r < 3; r++) {
        sum += mlt_store_allocated(st[r]);
        ck_assert_uint_eq(mlt_store_potential(st[r]), mlt_store_allocated(st[r]));
    }
    ck_assert_uint_eq(sum, total);

    /* each owned chunk has its own slot: write a distinct value to all, read all back */
    for (int pass = 0; pass < 2; pass++) {
        for (uint32_t t = 0; t < 4; t++) {
            for (uint32_t k = 0; k < n_chunks[t]; k++) {
                mlt_store_t *o = st[owner[t][k]];
                float v[CF];
                for (uint32_t i = 0; i < CF; i++)
                    v[i] = (float)(100 * t + 10 * k + i);
                if (pass == 0)
                    cs_write(o, 7, t, k, v);
                else
                    cs_expect_chunk(o, 7, t, k, v, lens[t][k]);
            }
        }
    }
    for (int r = 0; r < 3; r++)
        mlt_store_destroy(&st[r]);
}
END_TEST

/* ======================================================================= fork */

START_TEST(test_fork_isolation)
{
    mlt_table_spec_t s[] = {{"w", 8}};
    mlt_store_t *st = cs_store_with(NO_LIMIT, MLT_RULE_SGD, s, 1, 1);
    const float a0[] = {1, 2, 3, 4}, a1[] = {5, 6, 7, 8};
    const float c0[] = {10, 20, 30, 40}, p1[] = {50, 60, 70, 80};
    cs_create(st, 1, 0.1f, 0);
    cs_write(st, 1, 0, 0, a0);
    cs_write(st, 1, 0, 1, a1);
    mlt_tunables_t t = cs_tun(0.25f, 0.5f);
    t.staleness = 3;
    char err[256] = "";
    ck_assert_int_eq(mlt_store_fork(st, 2, 1, MLT_BRANCH_EVAL, &t, err, sizeof err), 0);
    cs_expect_chunk(st, 2, 0, 0, a0, 4); /* inherited */
    cs_expect_chunk(st, 2, 0, 1, a1, 4);

    cs_write(st, 2, 0, 0, c0); /* child write: parent unchanged */
    cs_expect_chunk(st, 2, 0, 0, c0, 4);
    cs_expect_chunk(st, 1, 0, 0, a0, 4);

    cs_write(st, 1, 0, 1, p1); /* parent write: child unchanged */
    cs_expect_chunk(st, 1, 0, 1, p1, 4);
    cs_expect_chunk(st, 2, 0, 1, a1, 4);
    cs_expect_chunk(st, 1, 0, 0, a0, 4);
    cs_expect_chunk(st, 2, 0, 0, c0, 4);

    mlt_branch_info_t info;
    mlt_store_branch_info(st, cs_br(st, 2), &info);
    ck_assert_uint_eq(info.id, 2);
    ck_assert_int_eq(info.parent, 1);
    ck_assert_int_eq(info.kind, MLT_BRANCH_EVAL);
    ck_assert_uint_eq(info.tunables.staleness, 3);
    ck_assert_float_eq(info.tunables.h.lr, 0.25f);
    ck_assert_float_eq(mlt_store_branch_tunables(cs_br(st, 2))->h.momentum, 0.5f);
    mlt_store_branch_info(st, cs_br(st, 1), &info);
    ck_assert_int_eq(info.parent, -1);
    ck_assert_int_eq(info.kind, MLT_BRANCH_TRAIN);
    mlt_store_destroy(&st);
}
END_TEST

/* SGD with momentum: h = m*h + g; w -= lr*h. The parent takes g1, is forked,
 * then both take g2: each must have used h = m*g1 + g2. */
START_TEST(test_fork_optimizer_state)
{
    const float lr = 0.1f, m = 0.9f;
    mlt_store_t *st = cs_store_with(NO_LIMIT, MLT_RULE_SGD, T10, 1, 1);
    const float w0[] = {1, 1, 1, 1};
    const float g1[] = {1, 2, 3, 4};
    const float g2[] = {0.5f, -1, 2, 0};
    cs_create(st, 1, lr, m);
    cs_write(st, 1, 0, 0, w0);
    cs_apply(st, 1, 0, 0, g1);
    cs_fork(st, 2, 1, lr, m);
    cs_apply(st, 1, 0, 0, g2);
    cs_apply(st, 2, 0, 0, g2);

    float wp[CF], wc[CF];
    cs_read_chunk(st, 1, 0, 0, wp);
    cs_read_chunk(st, 2, 0, 0, wc);
    ck_assert_msg(memcmp(wp, wc, sizeof wp) == 0, "parent and child differ");
    double want[CF], no_momentum[CF];
    for (int i = 0; i < 4; i++) {
        double w1 = (double)w0[i] - (double)lr * g1[i];
        double h2 = (double)m * g1[i] + g2[i];
        want[i] = w1 - (double)lr * h2;
        no_momentum[i] = w1 - (double)lr * g2[i];
    }
    cs_expect_near(wc, want, 4, "child");
    cs_expect_near(wp, want, 4, "parent");
    /* the check above tells the two apart: a lost momentum buffer is far off */
    for (int i = 0; i < 4; i++)
        ck_assert(fabs(want[i] - no_momentum[i]) > 0.05);
    mlt_store_destroy(&st);
}
END_TEST

START_TEST(test_fork_errors)
{
    char err[256] = "";
    mlt_tunables_t t = cs_tun(0.1f, 0);
    mlt_store_t *st = mlt_store_new(CF, NO_LIMIT);
    /* no job */
    ck_assert_int_eq(mlt_store_create(st, 1, MLT_BRANCH_INIT, &t, err, sizeof err), -ENOENT);
    ck_assert_int_eq(mlt_store_fork(st, 2, 1, MLT_BRANCH_TRAIN, &t, err, sizeof err), -ENOENT);
    ck_assert_int_eq(mlt_store_set_job(st, "j", 1, MLT_RULE_SGD, T10, 1, 0, 1, err, sizeof err),
                     0);
    cs_create(st, 1, 0.1f, 0);
    uint64_t alloc = mlt_store_allocated(st), pot = mlt_store_potential(st);

    err[0] = 0;
    ck_assert_int_eq(mlt_store_fork(st, 5, 99, MLT_BRANCH_TRAIN, &t, err, sizeof err), -ENOENT);
    ck_assert_msg(strstr(err, "99") != NULL, "message does not name the parent: '%s'", err);
    err[0] = 0;
    ck_assert_int_eq(mlt_store_fork(st, 1, 1, MLT_BRANCH_TRAIN, &t, err, sizeof err), -EEXIST);
    ck_assert_msg(strstr(err, "1") != NULL, "message: '%s'", err);
    ck_assert_int_eq(mlt_store_create(st, 1, MLT_BRANCH_TRAIN, &t, err, sizeof err), -EEXIST);
    cs_fork(st, 2, 1, 0.1f, 0);
    ck_assert_int_eq(mlt_store_fork(st, 2, 1, MLT_BRANCH_TRAIN, &t, err, sizeof err), -EEXIST);
    ck_assert_uint_eq(mlt_store_n_branches(st), 2);
    ck_assert_uint_eq(mlt_store_allocated(st), alloc);
    ck_assert_uint_eq(mlt_store_potential(st), 2 * pot);
    ck_assert_int_eq(mlt_store_free(st, 99), -ENOENT);
    ck_assert_int_eq(mlt_store_free(st, 2), 0);
    ck_assert_int_eq(mlt_store_free(st, 2), -ENOENT);
    ck_assert_ptr_null(mlt_store_branch(st, 2));
    /* a freed id may be used again */
    cs_fork(st, 2, 1, 0.1f, 0);
    mlt_store_destroy(&st);
}
END_TEST

START_TEST(test_fork_no_copy)
{
    mlt_store_t *st = cs_store_with(NO_LIMIT, MLT_RULE_SGD, T10, 1, 1);
    cs_create(st, 1, 0.1f, 0.9f);
    uint64_t a0 = mlt_store_allocated(st);
    ck_assert_uint_eq(a0, t10_bytes(st));
    cs_fork(st, 2, 1, 0.1f, 0.9f);
    cs_fork(st, 3, 2, 0.1f, 0.9f); /* fork of a fork */
    ck_assert_uint_eq(mlt_store_allocated(st), a0);
    ck_assert_uint_eq(mlt_store_potential(st), 3 * a0);

    const float v[] = {1, 2, 3, 4}, g[] = {1, 1, 1, 1};
    cs_write(st, 2, 0, 2, v); /* short chunk: 2 floats */
    ck_assert_uint_eq(mlt_store_allocated(st), a0 + mlt_store_chunk_bytes(st, 2));
    cs_write(st, 2, 0, 2, v);
    cs_apply(st, 2, 0, 2, g);
    ck_assert_uint_eq(mlt_store_allocated(st), a0 + mlt_store_chunk_bytes(st, 2));
    cs_apply(st, 3, 0, 0, g); /* apply copies too */
    ck_assert_uint_eq(mlt_store_allocated(st),
                      a0 + mlt_store_chunk_bytes(st, 2) + mlt_store_chunk_bytes(st, 4));
    cs_apply(st, 3, 0, 0, g);
    ck_assert_uint_eq(mlt_store_allocated(st),
                      a0 + mlt_store_chunk_bytes(st, 2) + mlt_store_chunk_bytes(st, 4));
    ck_assert_uint_eq(mlt_store_potential(st), 3 * a0);
    mlt_store_destroy(&st);
}
END_TEST

START_TEST(test_fork_diverged_and_iteration)
{
    mlt_store_t *st = cs_store_with(NO_LIMIT, MLT_RULE_SGD, T10, 1, 1);
    cs_create(st, 1, 0.1f, 0);
    ck_assert(!mlt_store_branch_diverged(cs_br(st, 1)));
    cs_fork(st, 2, 1, 0.1f, 0);
    mlt_store_branch_set_diverged(cs_br(st, 1));
    ck_assert(mlt_store_branch_diverged(cs_br(st, 1)));
    ck_assert(!mlt_store_branch_diverged(cs_br(st, 2)));
    cs_fork(st, 3, 1, 0.1f, 0); /* inherits the parent's verdict */
    mlt_branch_info_t info;
    mlt_store_branch_info(st, cs_br(st, 3), &info);
    ck_assert(info.diverged);
    ck_assert_uint_eq(mlt_store_branch_id(cs_br(st, 3)), 3);

    ck_assert_int_eq(mlt_store_free(st, 1), 0);
    unsigned seen = 0, n = 0;
    for (uint32_t i = 0; mlt_store_branch_at(st, i); i++, n++)
        seen |= 1u << mlt_store_branch_id(mlt_store_branch_at(st, i));
    ck_assert_uint_eq(n, 2);
    ck_assert_uint_eq(seen, (1u << 2) | (1u << 3));
    ck_assert_ptr_null(mlt_store_branch_at(st, 2));
    mlt_store_destroy(&st);
}
END_TEST

/* =================================================================== refcount */

START_TEST(test_refcount_info)
{
    mlt_store_t *st = cs_store_with(NO_LIMIT, MLT_RULE_SGD, T10, 1, 1);
    const uint64_t total = t10_bytes(st), c4 = mlt_store_chunk_bytes(st, 4);
    mlt_branch_info_t i1, i2;
    cs_create(st, 1, 0.1f, 0);
    mlt_store_branch_info(st, cs_br(st, 1), &i1);
    ck_assert_uint_eq(i1.owned_bytes, total);
    ck_assert_uint_eq(i1.shared_bytes, 0);

    cs_fork(st, 2, 1, 0.1f, 0);
    mlt_store_branch_info(st, cs_br(st, 1), &i1);
    mlt_store_branch_info(st, cs_br(st, 2), &i2);
    ck_assert_uint_eq(i1.owned_bytes, 0);
    ck_assert_uint_eq(i1.shared_bytes, total);
    ck_assert_uint_eq(i2.owned_bytes, 0);
    ck_assert_uint_eq(i2.shared_bytes, total);

    const float v[] = {1, 2, 3, 4};
    cs_write(st, 2, 0, 1, v);
    mlt_store_branch_info(st, cs_br(st, 1), &i1);
    mlt_store_branch_info(st, cs_br(st, 2), &i2);
    ck_assert_uint_eq(i2.owned_bytes, c4);
    ck_assert_uint_eq(i2.shared_bytes, total - c4);
    ck_assert_uint_eq(i1.owned_bytes, c4); /* the original is the parent's alone now */
    ck_assert_uint_eq(i1.shared_bytes, total - c4);

    /* an in-flight reference is not a branch: still owned */
    const float *data;
    mlt_chunk_t *held = mlt_store_chunk_get(st, cs_br(st, 2), 0, 1, &data);
    mlt_store_branch_info(st, cs_br(st, 2), &i2);
    ck_assert_uint_eq(i2.owned_bytes, c4);
    mlt_chunk_release(NULL, held);

    ck_assert_int_eq(mlt_store_free(st, 1), 0);
    mlt_store_branch_info(st, cs_br(st, 2), &i2);
    ck_assert_uint_eq(i2.owned_bytes, total);
    ck_assert_uint_eq(i2.shared_bytes, 0);
    ck_assert_uint_eq(mlt_store_allocated(st), total);
    ck_assert_uint_eq(mlt_store_potential(st), total);
    mlt_store_destroy(&st);
}
END_TEST

START_TEST(test_refcount_free_releases)
{
    mlt_store_t *st = cs_store_with(NO_LIMIT, MLT_RULE_SGD, T10, 1, 1);
    cs_create(st, 1, 0.1f, 0);
    const uint64_t a1 = mlt_store_allocated(st), p1 = mlt_store_potential(st);
    cs_fork(st, 2, 1, 0.1f, 0);
    const float v[] = {1, 2, 3, 4};
    cs_write(st, 2, 0, 0, v);
    cs_write(st, 2, 0, 2, v);
    ck_assert_uint_gt(mlt_store_allocated(st), a1);
    ck_assert_int_eq(mlt_store_free(st, 2), 0);
    ck_assert_uint_eq(mlt_store_allocated(st), a1);
    ck_assert_uint_eq(mlt_store_potential(st), p1);
    ck_assert_uint_eq(mlt_store_n_branches(st), 1);
    ck_assert_int_eq(mlt_store_free(st, 1), 0);
    ck_assert_uint_eq(mlt_store_allocated(st), 0);
    ck_assert_uint_eq(mlt_store_potential(st), 0);
    ck_assert_uint_eq(mlt_store_n_branches(st), 0);
    mlt_store_destroy(&st);
}
END_TEST

START_TEST(test_refcount_get_survives_free)
{
    mlt_store_t *st = cs_store_with(NO_LIMIT, MLT_RULE_SGD, T10, 1, 1);
    const float v[] = {1, 2, 3, 4};
    cs_create(st, 1, 0.1f, 0);
    cs_write(st, 1, 0, 0, v);
    cs_fork(st, 2, 1, 0.1f, 0);
    const float *data;
    mlt_chunk_t *c = mlt_store_chunk_get(st, cs_br(st, 1), 0, 0, &data);
    ck_assert_int_eq(mlt_store_free(st, 1), 0);
    ck_assert_int_eq(mlt_store_free(st, 2), 0);
    ck_assert_uint_eq(mlt_store_allocated(st), mlt_store_chunk_bytes(st, 4));
    ck_assert_uint_eq(mlt_store_potential(st), 0);
    ck_assert(memcmp(data, v, sizeof v) == 0);
    mlt_chunk_release(NULL, c);
    ck_assert_uint_eq(mlt_store_allocated(st), 0);
    mlt_store_destroy(&st);
}
END_TEST

START_TEST(test_refcount_write_while_held)
{
    mlt_store_t *st = cs_store_with(NO_LIMIT, MLT_RULE_SGD, T10, 1, 1);
    const float v[] = {1, 2, 3, 4}, w[] = {9, 8, 7, 6}, g[] = {1, 1, 1, 1};
    cs_create(st, 1, 0.5f, 0);
    cs_write(st, 1, 0, 0, v);
    const uint64_t a = mlt_store_allocated(st);
    const float *held;
    mlt_chunk_t *c = mlt_store_chunk_get(st, cs_br(st, 1), 0, 0, &held);

    cs_write(st, 1, 0, 0, w); /* copied: the reply in flight keeps v */
    ck_assert_uint_eq(mlt_store_allocated(st), a + mlt_store_chunk_bytes(st, 4));
    ck_assert(memcmp(held, v, sizeof v) == 0);
    cs_expect_chunk(st, 1, 0, 0, w, 4);
    mlt_branch_info_t info;
    mlt_store_branch_info(st, cs_br(st, 1), &info);
    ck_assert_uint_eq(info.owned_bytes, t10_bytes(st));

    mlt_chunk_release(NULL, c);
    ck_assert_uint_eq(mlt_store_allocated(st), a);

    /* apply copies as well */
    c = mlt_store_chunk_get(st, cs_br(st, 1), 0, 0, &held);
    cs_apply(st, 1, 0, 0, g);
    ck_assert(memcmp(held, w, sizeof w) == 0);
    const float after[] = {8.5f, 7.5f, 6.5f, 5.5f};
    cs_expect_chunk(st, 1, 0, 0, after, 4);
    ck_assert_uint_eq(mlt_store_allocated(st), a + mlt_store_chunk_bytes(st, 4));
    mlt_chunk_release(NULL, c);
    ck_assert_uint_eq(mlt_store_allocated(st), a);
    mlt_store_destroy(&st);
}
END_TEST

/* store.h: "chunks still held by in-flight messages are freed when those are
 * released" after mlt_store_destroy. Under AddressSanitizer this shows whether
 * the release touches the destroyed store. */
START_TEST(test_refcount_held_past_destroy)
{
    mlt_store_t *st = cs_store_with(NO_LIMIT, MLT_RULE_SGD, T10, 1, 1);
    const float v[] = {1, 2, 3, 4};
    cs_create(st, 1, 0.1f, 0);
    cs_write(st, 1, 0, 0, v);
    const float *data;
    mlt_chunk_t *c = mlt_store_chunk_get(st, cs_br(st, 1), 0, 0, &data);
    mlt_store_destroy(&st);
    ck_assert_ptr_null(st);
    ck_assert(memcmp(data, v, sizeof v) == 0);
    mlt_chunk_release(NULL, c);
}
END_TEST

/* ====================================================================== bound */

START_TEST(test_bound_refuse)
{
    mlt_store_t *probe = cs_store_with(NO_LIMIT, MLT_RULE_SGD, T10, 1, 1);
    const uint64_t B = t10_bytes(probe);
    mlt_store_destroy(&probe);

    /* room for exactly two branches: the limit itself is allowed */
    mlt_store_t *st = cs_store_with(2 * B, MLT_RULE_SGD, T10, 1, 1);
    mlt_tunables_t t = cs_tun(0.1f, 0);
    char err[256] = "";
    cs_create(st, 1, 0.1f, 0);
    cs_fork(st, 2, 1, 0.1f, 0);
    ck_assert_uint_eq(mlt_store_potential(st), 2 * B);
    const uint64_t alloc = mlt_store_allocated(st);

    ck_assert_int_eq(mlt_store_fork(st, 3, 1, MLT_BRANCH_TRAIN, &t, err, sizeof err), -ENOMEM);
    ck_assert_msg(strstr(err, "memory_limit") != NULL, "message: '%s'", err);
    err[0] = 0;
    ck_assert_int_eq(mlt_store_create(st, 4, MLT_BRANCH_TRAIN, &t, err, sizeof err), -ENOMEM);
    ck_assert_msg(strstr(err, "memory_limit") != NULL, "message: '%s'", err);
    ck_assert_uint_eq(mlt_store_allocated(st), alloc);
    ck_assert_uint_eq(mlt_store_potential(st), 2 * B);
    ck_assert_uint_eq(mlt_store_n_branches(st), 2);
    ck_assert_ptr_null(mlt_store_branch(st, 3));
    ck_assert_ptr_null(mlt_store_branch(st, 4));

    /* copy-on-write never needs the limit: both branches can become private */
    const float v[] = {1, 2, 3, 4};
    for (uint32_t k = 0; k < 3; k++)
        cs_write(st, 2, 0, k, v);
    ck_assert_uint_eq(mlt_store_allocated(st), 2 * B);

    ck_assert_int_eq(mlt_store_free(st, 2), 0);
    cs_fork(st, 3, 1, 0.1f, 0);
    ck_assert_uint_eq(mlt_store_potential(st), 2 * B);
    mlt_store_destroy(&st);

    /* one byte less: the second branch is refused */
    st = cs_store_with(2 * B - 1, MLT_RULE_SGD, T10, 1, 1);
    cs_create(st, 1, 0.1f, 0);
    ck_assert_int_eq(mlt_store_fork(st, 2, 1, MLT_BRANCH_TRAIN, &t, err, sizeof err), -ENOMEM);
    ck_assert_uint_eq(mlt_store_potential(st), B);
    mlt_store_destroy(&st);

    /* below one branch: the job itself is refused, naming the sizes, nothing allocated */
    st = mlt_store_new(CF, B - 1);
    err[0] = 0;
    ck_assert_int_eq(mlt_store_set_job(st, "job", 1, MLT_RULE_SGD, T10, 1, 0, 1, err, sizeof err),
                     -ENOMEM);
    ck_assert_msg(strstr(err, "memory_limit") && strstr(err, "not one branch"), "'%s'", err);
    ck_assert_ptr_null(mlt_store_job(st));
    ck_assert_int_eq(mlt_store_create(st, 1, MLT_BRANCH_TRAIN, &t, err, sizeof err), -ENOENT);
    ck_assert_uint_eq(mlt_store_allocated(st), 0);
    ck_assert_uint_eq(mlt_store_potential(st), 0);
    mlt_store_destroy(&st);
}
END_TEST

/* A job at the wire's limits (4096 tables of 2^34 floats) is sized in closed
 * form: refused against memory_limit at once, never walked chunk by chunk
 * (which took seconds and stalled every client of the shard). */
START_TEST(test_bound_register_limits)
{
    static mlt_table_spec_t big[MLT_MAX_TABLES];
    for (uint32_t i = 0; i < MLT_MAX_TABLES; i++)
        big[i] = (mlt_table_spec_t){"t", MLT_MAX_TABLE_FLOATS};
    mlt_store_t *st = mlt_store_new(CF, 1ull << 40);
    char err[256] = "";
    ck_assert_int_eq(
        mlt_store_set_job(st, "huge", 1, MLT_RULE_SGD, big, MLT_MAX_TABLES, 3, 8, err, sizeof err),
        -ENOMEM);
    ck_assert_msg(strstr(err, "memory_limit") && strstr(err, "shard 3"), "'%s'", err);
    ck_assert_ptr_null(mlt_store_job(st));
    mlt_store_destroy(&st);
    /* the closed form agrees with the chunks: a job that fits exactly is taken */
    mlt_table_spec_t odd[] = {{"a", 3 * CF + 1}, {"b", 1}, {"c", 2 * CF}};
    mlt_store_t *probe = cs_store_with(NO_LIMIT, MLT_RULE_ADAM, odd, 3, 1);
    cs_create(probe, 1, 0.1f, 0);
    const uint64_t per_branch = mlt_store_potential(probe);
    ck_assert_uint_eq(mlt_store_allocated(probe), per_branch);
    mlt_store_destroy(&probe);
    st = cs_store_with(per_branch, MLT_RULE_ADAM, odd, 3, 1);
    cs_create(st, 1, 0.1f, 0);
    mlt_store_destroy(&st);
    st = mlt_store_new(CF, per_branch - 1);
    ck_assert_int_eq(mlt_store_set_job(st, "job", 1, MLT_RULE_ADAM, odd, 3, 0, 1, err, sizeof err),
                     -ENOMEM);
    mlt_store_destroy(&st);
}
END_TEST

START_TEST(test_bound_branch_count)
{
    mlt_table_spec_t s[] = {{"w", 1}};
    mlt_store_t *st = cs_store_with(NO_LIMIT, MLT_RULE_SGD, s, 1, 1);
    mlt_tunables_t t = cs_tun(0.1f, 0);
    char err[256] = "";
    cs_create(st, 0, 0.1f, 0);
    for (uint32_t id = 1; id < MLT_MAX_BRANCHES; id++)
        ck_assert_int_eq(mlt_store_fork(st, id, 0, MLT_BRANCH_TRAIN, &t, err, sizeof err), 0);
    ck_assert_uint_eq(mlt_store_n_branches(st), MLT_MAX_BRANCHES);
    ck_assert_int_eq(mlt_store_fork(st, MLT_MAX_BRANCHES, 0, MLT_BRANCH_TRAIN, &t, err, sizeof err),
                     -ENOSPC);
    ck_assert_int_eq(mlt_store_create(st, MLT_MAX_BRANCHES, MLT_BRANCH_TRAIN, &t, err, sizeof err),
                     -ENOSPC);
    ck_assert_int_eq(mlt_store_free(st, 17), 0);
    ck_assert_int_eq(mlt_store_fork(st, MLT_MAX_BRANCHES, 0, MLT_BRANCH_TRAIN, &t, err, sizeof err),
                     0);
    mlt_store_destroy(&st);
}
END_TEST

/* ====================================================================== clock */

static Suite *store_suite(void)
{
    Suite *s = suite_create("store");

    TCase *tc = tcase_create("job");
    tcase_add_test(tc, test_new_args);
    tcase_add_test(tc, test_job_same_spec);
    tcase_add_test(tc, test_job_busy);
    tcase_add_test(tc, test_job_end_then_new);
    tcase_add_test(tc, test_job_invalid);
    tcase_add_test(tc, test_chunk_layout);
    tcase_add_test(tc, test_check_range_no_job);
    tcase_add_test(tc, test_sharding);
    suite_add_tcase(s, tc);

    tc = tcase_create("fork");
    tcase_add_test(tc, test_fork_isolation);
    tcase_add_test(tc, test_fork_optimizer_state);
    tcase_add_test(tc, test_fork_errors);
    tcase_add_test(tc, test_fork_no_copy);
    tcase_add_test(tc, test_fork_diverged_and_iteration);
    suite_add_tcase(s, tc);

    tc = tcase_create("refcount");
    tcase_add_test(tc, test_refcount_info);
    tcase_add_test(tc, test_refcount_free_releases);
    tcase_add_test(tc, test_refcount_get_survives_free);
    tcase_add_test(tc, test_refcount_write_while_held);
    tcase_add_test(tc, test_refcount_held_past_destroy);
    suite_add_tcase(s, tc);

    tc = tcase_create("bound");
    tcase_add_test(tc, test_bound_refuse);
    tcase_add_test(tc, test_bound_register_limits);
    tcase_add_test(tc, test_bound_branch_count);
    suite_add_tcase(s, tc);

    cs_update_tcases(s);
    cs_avg_tcases(s);

    return s;
}

int main(void)
{
    SRunner *sr = srunner_create(store_suite());
    srunner_run_all(sr, CK_ENV);
    int failed = srunner_ntests_failed(sr);
    srunner_free(sr);
    return failed != 0 ? EXIT_FAILURE : EXIT_SUCCESS;
}
