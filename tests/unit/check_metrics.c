/* check_metrics.c - Check suite for daemon/metrics.c: merging the shards'
 * branch tables, and the Prometheus text (values, NaN, shards that did not
 * answer, truncation at the buffer's end). */
#include "daemon/metrics.h"

#include <check.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "common/alloc.h"

static mlt_branch_status_t br(uint32_t id, int64_t parent, int kind, int64_t clock, uint64_t owned,
                              uint64_t shared, bool diverged)
{
    mlt_branch_status_t b;
    memset(&b, 0, sizeof b);
    b.id = id;
    b.parent = parent;
    b.kind = kind;
    b.min_clock = clock;
    b.owned_bytes = owned;
    b.shared_bytes = shared;
    b.diverged = diverged;
    b.tunables.lr = 0.5f;
    return b;
}

START_TEST(test_merge)
{
    mlt_branch_status_t a[] = {br(7, 1, MLT_BRANCH_TRAIN, 10, 100, 5, false),
                               br(1, -1, MLT_BRANCH_INIT, 0, 40, 0, false)};
    mlt_branch_status_t b[] = {br(1, -1, MLT_BRANCH_INIT, 0, 60, 0, false),
                               br(7, 1, MLT_BRANCH_TRAIN, 8, 1, 2, true),
                               br(9, 7, MLT_BRANCH_SNAPSHOT, 3, 0, 9, false)};
    mlt_branch_status_t c[] = {br(99, 1, MLT_BRANCH_TEST, 0, 1, 1, false)};
    mlt_server_status_t st[3];
    memset(st, 0, sizeof st);
    st[0].branches = a;
    st[0].n_branches = 2;
    st[1].branches = b;
    st[1].n_branches = 3;
    st[2].branches = c; /* this shard did not answer: ignored */
    st[2].n_branches = 1;
    bool up[3] = {true, true, false};
    mlt_branch_status_t *m = NULL;
    uint32_t n = 0;
    ck_assert_int_eq(mlt_branches_merge(st, up, 3, &m, &n), 0);
    ck_assert_uint_eq(n, 3);
    ck_assert_uint_eq(m[0].id, 1);
    ck_assert_uint_eq(m[0].owned_bytes, 100);
    ck_assert_int_eq(m[0].parent, -1);
    ck_assert_uint_eq(m[1].id, 7);
    ck_assert_uint_eq(m[1].owned_bytes, 101);
    ck_assert_uint_eq(m[1].shared_bytes, 7);
    ck_assert_int_eq(m[1].min_clock, 8);
    ck_assert(m[1].diverged);
    ck_assert_int_eq(m[1].kind, MLT_BRANCH_TRAIN);
    ck_assert_uint_eq(m[2].id, 9);
    ck_assert_int_eq(m[2].kind, MLT_BRANCH_SNAPSHOT);
    ck_assert_str_eq(mlt_branch_kind_name(m[2].kind), "snapshot");
    ck_assert_str_eq(mlt_branch_kind_name(77), "?");
    mlt_free(m);
    /* nothing up: an empty table */
    bool none[3] = {false, false, false};
    ck_assert_int_eq(mlt_branches_merge(st, none, 3, &m, &n), 0);
    ck_assert_uint_eq(n, 0);
    mlt_free(m);
}
END_TEST

static mlt_metrics_job_t a_job(void)
{
    mlt_metrics_job_t j;
    memset(&j, 0, sizeof j);
    j.name = "fmnist-mlp";
    j.phase = "training";
    j.epoch = 2.5;
    j.loss = 0.4;
    j.val_accuracy = 0.85;
    j.test_accuracy = 0.84;
    j.val_rmse = j.test_rmse = NAN;
    j.trials = 12;
    j.lr = 0.03;
    j.momentum = 0.9;
    j.staleness = -1;
    j.batch_size = 128;
    return j;
}

START_TEST(test_text)
{
    mlt_server_status_t st[2];
    memset(st, 0, sizeof st);
    st[0].memory_allocated = 1234;
    st[0].pushes = 77;
    st[0].bytes_out = 1ull << 40;
    bool up[2] = {true, false};
    mlt_metrics_job_t j = a_job();
    static char buf[1 << 16];
    size_t len = mlt_metrics_text(buf, sizeof buf, &j, st, up, 2, 0);
    ck_assert_uint_eq(len, strlen(buf));
    ck_assert_ptr_nonnull(strstr(buf, "mltuner_job_info{job=\"fmnist-mlp\",phase=\"training\"} 1\n"));
    ck_assert_ptr_nonnull(strstr(buf, "mltuner_job_epoch{job=\"fmnist-mlp\"} 2.5\n"));
    ck_assert_ptr_nonnull(strstr(buf, "mltuner_job_test_rmse{job=\"fmnist-mlp\"} NaN\n"));
    ck_assert_ptr_nonnull(strstr(buf, "mltuner_job_trials_total{job=\"fmnist-mlp\"} 12\n"));
    ck_assert_ptr_nonnull(strstr(buf, "# TYPE mltuner_job_trials_total counter\n"));
    ck_assert_ptr_nonnull(
        strstr(buf, "mltuner_job_tunable{job=\"fmnist-mlp\",name=\"staleness\"} NaN\n"));
    ck_assert_ptr_nonnull(strstr(buf, "mltuner_shard_up{shard=\"0\"} 1\n"));
    ck_assert_ptr_nonnull(strstr(buf, "mltuner_shard_up{shard=\"1\"} 0\n"));
    ck_assert_ptr_nonnull(strstr(buf, "mltuner_shard_pushes_total{shard=\"0\"} 77\n"));
    ck_assert_ptr_nonnull(strstr(buf, "mltuner_shard_sent_bytes_total{shard=\"0\"} 1099511627776\n"));
    ck_assert_ptr_null(strstr(buf, "mltuner_shard_pushes_total{shard=\"1\"}"));
    /* every line is a comment or "name{labels} value" */
    for (char *p = buf; *p;) {
        char *nl = strchr(p, '\n');
        ck_assert_ptr_nonnull(nl);
        ck_assert_msg(*p == '#' || (strncmp(p, "mltuner_", 8) == 0 && memchr(p, ' ', (size_t)(nl - p))),
                      "%.*s", (int)(nl - p), p);
        p = nl + 1;
    }
    /* no job, a shard-only daemon of rank 3 */
    len = mlt_metrics_text(buf, sizeof buf, NULL, st, up, 1, 3);
    ck_assert_ptr_null(strstr(buf, "mltuner_job_"));
    ck_assert_ptr_nonnull(strstr(buf, "mltuner_shard_up{shard=\"3\"} 1\n"));
    /* a small buffer: whole lines, then the truncation mark, inside cap */
    char small[300];
    len = mlt_metrics_text(small, sizeof small, &j, st, up, 2, 0);
    ck_assert_uint_lt(len, sizeof small);
    ck_assert_uint_eq(len, strlen(small));
    ck_assert_str_eq(small + len - strlen("# truncated\n"), "# truncated\n");
    ck_assert_uint_eq(mlt_metrics_text(small, 0, &j, st, up, 2, 0), 0);
}
END_TEST

int main(void)
{
    Suite *s = suite_create("metrics");
    TCase *tc = tcase_create("metrics");
    tcase_add_test(tc, test_merge);
    tcase_add_test(tc, test_text);
    suite_add_tcase(s, tc);
    SRunner *sr = srunner_create(s);
    srunner_run_all(sr, CK_NORMAL);
    int failed = srunner_ntests_failed(sr);
    srunner_free(sr);
    return failed ? EXIT_FAILURE : EXIT_SUCCESS;
}
