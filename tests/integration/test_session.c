/* test_session.c - the worker session (#13) against a real mltunerd on
 * loopback: a worker program of its own (examples/logreg) tuned like a
 * built-in model, a job mixing it with mltuner-worker refused, and the
 * session's errors: a rank joined twice, a task whose branch is gone, calls
 * after leave, a coordinator that dies mid-task. */
#include <check.h>
#include <errno.h>
#include <math.h>
#include <signal.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "common/timeutil.h"
#include "client/mltuner.h"
#include "tests/integration/harness.h"
#include "tests/integration/suite_main.h"

#define CASE_BOUND_S 120.0 /* a job of this file ending later is wedged */

static mlt_test_cluster_t cl;
static char conf_path[512], out_dir[400];

static void sleep_s(double s)
{
    nanosleep(&(struct timespec){(time_t)s, (long)((s - (time_t)s) * 1e9)}, NULL);
}

static void start(void)
{
    static const char *const extra[] = {"worker_timeout_s=3", NULL};
    ck_assert_int_eq(mlt_test_start(&cl, 1, extra), 0);
    const char *src = getenv("MLT_SOURCE_ROOT");
    snprintf(conf_path, sizeof conf_path, "%s/examples/logreg/logreg.conf", src ? src : ".");
    snprintf(out_dir, sizeof out_dir, "%s/out", cl.dir);
}

static void stop(void)
{
    mlt_test_stop(&cl);
}

/* Submits the example's job with overrides (NULL-terminated). */
static void submit(const char *const *sets)
{
    char log[4096];
    int rc = mlt_test_submit(&cl, conf_path, out_dir, sets, NULL, log, sizeof log);
    ck_assert_msg(rc == 0, "submit exited %d:\n%s", rc, log);
}

static void wait_over(char *phase, char *msg, size_t mn)
{
    if (mlt_test_wait_job_over(&cl, CASE_BOUND_S, phase, 64, msg, mn) < 0)
        ck_abort_msg("the job did not end within %.0f s (phase %s); logs in %s", CASE_BOUND_S,
                     phase, cl.dir);
}

/* Lines of out_dir/name holding `what`. */
static int count_lines(const char *name, const char *what)
{
    char path[600], line[4096];
    snprintf(path, sizeof path, "%s/%s", out_dir, name);
    FILE *f = fopen(path, "r");
    int n = 0;
    while (f && fgets(line, sizeof line, f))
        n += strstr(line, what) != NULL;
    if (f)
        fclose(f);
    return n;
}

static bool daemon_logged(const char *what)
{
    return mlt_test_daemon_logged(&cl, 0, what);
}

/* ---- a worker program of its own ---- */

/* Two logreg-workers (a model and data of their own) through mltunerd: the
 * tuner runs trials, commits a setting, tests, and the job reaches 0.80 test
 * accuracy within 20 epochs (measured: the tuned job 5-7 epochs; the best
 * fixed lr 4-6; the default lr 0.001 0.79 after 10 epochs, 0.806 after 20). */
START_TEST(test_example_tuned)
{
    start();
    ck_assert_int_ge(mlt_test_start_worker_prog(&cl, "examples/logreg-worker", 0), 0);
    ck_assert_int_ge(mlt_test_start_worker_prog(&cl, "examples/logreg-worker", 1), 0);
    const char *sets[] = {"stop.target_accuracy=0.80", "stop.max_epochs=20", NULL};
    submit(sets);
    char phase[64], msg[512];
    wait_over(phase, msg, sizeof msg);
    ck_assert_msg(!strcmp(phase, "done"), "phase %s: %s (logs in %s)", phase, msg, cl.dir);
    ck_assert_msg(strstr(msg, "reached the target"), "%s", msg);
    ck_assert_int_gt(count_lines("decisions.jsonl", "\"trial\""), 0);
    ck_assert_int_gt(count_lines("decisions.jsonl", "\"commit\""), 0);
    ck_assert_int_gt(count_lines("progress.jsonl", "\"event\":\"test\""), 0);
    ck_assert(daemon_logged("worker 1 joined: logreg-worker, backends cpu, 1 thread"));
    ck_assert_int_eq(mlt_test_wait_workers(&cl, 30), 0);
    stop();
}
END_TEST

/* mltuner-worker and logreg-worker in one job: refused, naming both. */
START_TEST(test_mixed_refused)
{
    start();
    ck_assert_int_ge(mlt_test_start_worker_prog(&cl, "worker/mltuner-worker", 0), 0);
    ck_assert_int_ge(mlt_test_start_worker_prog(&cl, "examples/logreg-worker", 1), 0);
    sleep_s(0.5); /* both joined */
    submit(NULL);
    char phase[64], msg[512];
    wait_over(phase, msg, sizeof msg);
    ck_assert_str_eq(phase, "failed");
    ck_assert_msg(strstr(msg, "runs mltuner-worker, but worker") &&
                      strstr(msg, "runs logreg-worker: the workers of a job run one program"),
                  "%s", msg);
    stop();
}
END_TEST

/* mltuner-worker alone on an external model: its JOB task fails, saying why. */
START_TEST(test_builtin_refuses_external)
{
    start();
    ck_assert_int_ge(mlt_test_start_worker_prog(&cl, "worker/mltuner-worker", 0), 0);
    const char *sets[] = {"workers=1", NULL};
    submit(sets);
    char phase[64], msg[512];
    wait_over(phase, msg, sizeof msg);
    ck_assert_str_eq(phase, "failed");
    ck_assert_msg(strstr(msg, "mltuner-worker builds mlp, cnn, softmax and mf models"), "%s", msg);
    stop();
}
END_TEST

/* ---- the session's errors ---- */

static mlt_session_t *join(uint32_t rank, double timeout_s, char *err, size_t len)
{
    mlt_session_opts_t o = {.coordinator = cl.control,
                            .rank = rank,
                            .program = "session-test",
                            .timeout_s = timeout_s};
    return mlt_session_join(&o, err, len);
}

/* The next task within bound_s, which must be of kind k. */
static void next_kind(mlt_session_t *s, mlt_task_t *t, mlt_task_kind_t k)
{
    double t0 = mlt_time_mono();
    int n;
    while ((n = mlt_session_next(s, 0.5, t)) == 0)
        ck_assert_msg(mlt_time_mono() - t0 < 60, "no task within 60 s");
    ck_assert_msg(n == 1, "next: %d %s", n, mlt_session_error(s));
    ck_assert_int_eq(t->kind, k);
}

static const mlt_table_def_t tables[] = {{"w", 256}, {"b", 8}};

/* A session through JOB (tables loaded) to its INIT task, open in *t. */
static mlt_session_t *joined_and_loaded(mlt_task_t *t, double timeout_s)
{
    char err[512];
    mlt_session_t *s = join(0, timeout_s, err, sizeof err);
    ck_assert_msg(s, "%s", err);
    const char *sets[] = {"workers=1", "tuner.logic=fixed", "stop.max_epochs=1000", NULL};
    submit(sets);
    next_kind(s, t, MLT_TASK_JOB);
    ck_assert_str_eq(t->model, "external");
    ck_assert_str_eq(t->job_name, "example-logreg");
    ck_assert_uint_eq(t->n_workers, 1);
    ck_assert_uint_eq(t->share_count, 1);
    ck_assert_int_eq(mlt_session_load(s, tables, 2, 1000, 1000), 0);
    ck_assert_ptr_nonnull(mlt_session_client(s));
    next_kind(s, t, MLT_TASK_INIT);
    return s;
}

/* The INIT task done: zeros written to t's branch. */
static void init_zeros(mlt_session_t *s, const mlt_task_t *t)
{
    float w[256] = {0}, b[8] = {0};
    ck_assert_int_eq(mlt_write(mlt_session_client(s), t->branch, 0, w), 0);
    ck_assert_int_eq(mlt_write(mlt_session_client(s), t->branch, 1, b), 0);
    ck_assert_int_eq(mlt_session_done(s, -1), 0);
}

/* A second session with a rank a live one holds: -EADDRINUSE, saying so;
 * the first keeps its rank and gets the job. */
START_TEST(test_join_twice)
{
    start();
    char err[512];
    mlt_session_t *a = join(0, 0, err, sizeof err);
    ck_assert_msg(a, "%s", err);
    mlt_task_t t;
    ck_assert_int_eq(mlt_session_next(a, 1.0, &t), 0); /* joined, nothing to do yet */
    mlt_session_t *b = join(0, 0, err, sizeof err);
    ck_assert_msg(b, "%s", err);
    double t0 = mlt_time_mono();
    int n;
    while ((n = mlt_session_next(b, 0.5, &t)) == 0) {
        mlt_session_next(a, 0.01, &t); /* a keeps heartbeating (its own thread) */
        ck_assert_msg(mlt_time_mono() - t0 < 30, "the second join was not refused in 30 s");
    }
    ck_assert_int_eq(n, -EADDRINUSE);
    ck_assert_msg(strstr(mlt_session_error(b), "worker 0 is taken by a live connection"), "%s",
                  mlt_session_error(b));
    ck_assert_int_eq(mlt_session_next(b, 0, &t), -EADDRINUSE); /* it stays out */
    mlt_session_destroy(&b);
    const char *sets[] = {"workers=1", "tuner.logic=fixed", NULL};
    submit(sets);
    next_kind(a, &t, MLT_TASK_JOB); /* a holds the rank */
    mlt_session_destroy(&a);
    stop();
}
END_TEST

/* A task whose branch is gone by the time the worker gets to it: the write
 * fails naming the branch, the task is failed with that text, and the job
 * fails with it; the daemon goes on serving. */
START_TEST(test_unknown_branch)
{
    start();
    mlt_task_t t;
    mlt_session_t *s = joined_and_loaded(&t, 10);
    /* the branch disappears under the task (a coordinator that freed it) */
    char err[512];
    const char *eps[] = {cl.endpoints[0]};
    mlt_client_t *c = mlt_client_new(eps, 1, 7, err, sizeof err);
    ck_assert_msg(c, "%s", err);
    ck_assert_int_eq(mlt_branch_free(c, t.branch), 0);
    float w[256] = {0};
    int rc = mlt_write(mlt_session_client(s), t.branch, 0, w);
    ck_assert_int_eq(rc, -ENOENT);
    char why[600];
    snprintf(why, sizeof why, "%s", mlt_client_error(mlt_session_client(s)));
    ck_assert_msg(strstr(why, "unknown branch"), "%s", why);
    ck_assert_int_eq(mlt_session_fail(s, why), 0);
    /* a second final word for the task is refused */
    ck_assert_int_eq(mlt_session_done(s, -1), -EINVAL);
    ck_assert_msg(strstr(mlt_session_error(s), "no task is open"), "%s", mlt_session_error(s));
    char phase[64], msg[512];
    wait_over(phase, msg, sizeof msg);
    ck_assert_str_eq(phase, "failed");
    ck_assert_msg(strstr(msg, "worker 0:") && strstr(msg, "unknown branch"), "%s", msg);
    mlt_server_status_t st;
    ck_assert_int_eq(mlt_client_status(c, 0, &st), 0); /* still serving */
    mlt_server_status_free(&st);
    mlt_client_destroy(&c);
    mlt_session_destroy(&s);
    stop();
}
END_TEST

/* Reports must fit the open task; after leave every call is -ENOTCONN, and
 * the coordinator drops the worker at once (not after worker_timeout_s). */
START_TEST(test_report_after_leave)
{
    start();
    mlt_task_t t;
    mlt_session_t *s = joined_and_loaded(&t, 10);
    ck_assert_int_eq(mlt_session_report_clock(s, 1, 0.5, 1, 2, 0), -EINVAL); /* not a RUN */
    ck_assert_msg(strstr(mlt_session_error(s), "the open task is INIT, not RUN"), "%s",
                  mlt_session_error(s));
    init_zeros(s, &t);
    /* leave between tasks: the job loses the worker, not a task */
    ck_assert_int_eq(mlt_session_leave(s), 0);
    ck_assert_int_eq(mlt_session_report_clock(s, 1, 0.5, 1, 2, 0), -ENOTCONN);
    ck_assert_msg(strstr(mlt_session_error(s), "left the job"), "%s", mlt_session_error(s));
    ck_assert_int_eq(mlt_session_done(s, -1), -ENOTCONN);
    ck_assert_int_eq(mlt_session_next(s, 0, &t), -ENOTCONN);
    ck_assert_ptr_null(mlt_session_client(s));
    double t0 = mlt_time_mono();
    while (!daemon_logged("worker 0 lost: it left"))
        ck_assert_msg(mlt_time_mono() - t0 < 2.5, "the leave was not seen before the timeout");
    mlt_session_destroy(&s);
    stop();
}
END_TEST

/* The coordinator dies mid-RUN: the worker's pulls fail at once (the shard's
 * connection closed), and next() gives up after timeout_s with a message. */
START_TEST(test_coordinator_gone)
{
    start();
    mlt_task_t t;
    mlt_session_t *s = joined_and_loaded(&t, 3);
    init_zeros(s, &t);
    next_kind(s, &t, MLT_TASK_RUN);
    mlt_client_t *c = mlt_session_client(s);
    float w[256], b[8];
    float *p[] = {w, b};
    ck_assert_int_eq(mlt_pull(c, t.branch, t.clock_start, p), 0);
    ck_assert_int_eq(mlt_test_kill9(&cl, 0), 0);
    double t0 = mlt_time_mono();
    int rc = 0;
    for (int64_t k = t.clock_start; k < t.clock_start + t.clocks && rc == 0; k++)
        if ((rc = mlt_pull(c, t.branch, k, p)) == 0)
            rc = mlt_clock(c, t.branch, k + 1);
    ck_assert_int_lt(rc, 0);
    ck_assert_msg(mlt_time_mono() - t0 < 15, "the pull took %.1f s to fail", mlt_time_mono() - t0);
    ck_assert_int_eq(mlt_session_fail(s, mlt_client_error(c)), 0);
    int n;
    while ((n = mlt_session_next(s, 0.5, &t)) == 0)
        ck_assert_msg(mlt_time_mono() - t0 < 30, "next() did not give up within 30 s");
    ck_assert_int_eq(n, -ETIMEDOUT);
    ck_assert_msg(strstr(mlt_session_error(s), "is unreachable"), "%s", mlt_session_error(s));
    mlt_session_destroy(&s);
    stop();
}
END_TEST

/* Bad options are refused before anything connects. */
START_TEST(test_bad_options)
{
    char err[512];
    mlt_session_opts_t o = {.coordinator = "tcp://127.0.0.1:1", .program = "no spaces"};
    ck_assert_ptr_null(mlt_session_join(&o, err, sizeof err));
    ck_assert_msg(strstr(err, "program 'no spaces' must be"), "%s", err);
    o.program = NULL;
    o.backends = "tpu";
    ck_assert_ptr_null(mlt_session_join(&o, err, sizeof err));
    ck_assert_msg(strstr(err, "backends 'tpu'"), "%s", err);
    o.backends = NULL;
    o.rank = 5000;
    ck_assert_ptr_null(mlt_session_join(&o, err, sizeof err));
    ck_assert_msg(strstr(err, "rank 5000"), "%s", err);
    /* no coordinator there: next() gives up after timeout_s */
    o.rank = 0;
    o.timeout_s = 1;
    mlt_session_t *s = mlt_session_join(&o, err, sizeof err);
    ck_assert_msg(s, "%s", err);
    mlt_task_t t;
    double t0 = mlt_time_mono();
    int n;
    while ((n = mlt_session_next(s, 0.5, &t)) == 0)
        ck_assert(mlt_time_mono() - t0 < 10);
    ck_assert_int_eq(n, -ETIMEDOUT);
    mlt_session_destroy(&s);
}
END_TEST

int main(void)
{
    Suite *s = suite_create("session");
    TCase *tc = tcase_create("session");
    tcase_set_timeout(tc, 240);
    tcase_add_test(tc, test_bad_options);
    tcase_add_test(tc, test_join_twice);
    tcase_add_test(tc, test_report_after_leave);
    tcase_add_test(tc, test_unknown_branch);
    tcase_add_test(tc, test_coordinator_gone);
    tcase_add_test(tc, test_builtin_refuses_external);
    tcase_add_test(tc, test_mixed_refused);
    tcase_add_test(tc, test_example_tuned);
    suite_add_tcase(s, tc);
    return mlt_test_run_suite(s);
}
