/* test_faults.c - worker failure with the real processes on loopback: the
 * real mltunerd, real mltuner-worker processes and mltunerctl, a small
 * synthetic mf job (mf-synth at a few thousand ratings, so each case takes
 * seconds). A worker killed with SIGKILL mid-training or mid-trial (the job
 * goes on, or fails naming the worker under on_worker_loss = "fail", or, with
 * no worker left and none coming back, after worker_wait_s); its
 * replacement rejoins and gets work; a worker that died idle before the
 * submit; a stray JOIN for a rank in use; a worker stopped (SIGSTOP) for
 * longer than a clock, under a worker_timeout_s longer and shorter than the
 * stop; mltunerctl stop with a stopped worker. Every case must end within a
 * generous bound (a wedge fails it); the table of what happened and how long
 * it took is printed to stderr. */
#include <check.h>
#include <signal.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>
#include <zmq.h>

#include "common/timeutil.h"
#include "proto/wire.h"
#include "tests/integration/harness.h"
#include "tests/integration/suite_main.h"

#define CASE_BOUND_S 90.0 /* "does not hang": far above what each case takes */

static mlt_test_cluster_t cl;
static char conf_path[600];
static char out_dir[400];
static double t_case;

static void start(const char *const *extra)
{
    ck_assert_int_eq(mlt_test_start(&cl, 1, extra), 0);
    ck_assert_msg(cl.control[0], "the daemon wrote no control endpoint");
    const char *src = getenv("MLT_SOURCE_ROOT");
    snprintf(conf_path, sizeof conf_path, "%s/conf/jobs/mf-synth.conf", src ? src : ".");
    t_case = mlt_time_mono();
}

static void teardown(void)
{
    ck_assert_int_eq(mlt_test_stop(&cl), 0);
}

static void sleep_s(double s)
{
    struct timespec ts = {(time_t)s, (long)((s - (double)(time_t)s) * 1e9)};
    nanosleep(&ts, NULL);
}

static void note(const char *fault, const char *outcome)
{
    fprintf(stderr, "FAULT | %-44s | %-40s | %5.1f s | %s\n", fault, outcome,
            mlt_time_mono() - t_case, cl.dir);
}

/* Submits the small job (workers, logic, epochs, then further --set values,
 * NULL-terminated) without waiting. */
static void submit(int workers, const char *logic, const char *const *more)
{
    char w[32], lg[64], log[4096];
    snprintf(w, sizeof w, "workers=%d", workers);
    snprintf(lg, sizeof lg, "tuner.logic=%s", logic);
    snprintf(out_dir, sizeof out_dir, "%s/out", cl.dir);
    const char *const sets[] = {w,
                                lg,
                                "data.synthetic.users=2000",
                                "data.synthetic.items=1000",
                                "data.synthetic.rank=4",
                                "model.rank=4",
                                "data.synthetic.ratings=120000",
                                "stop.target_rmse=0",
                                "tunables.batch_size.default=128",
                                "tunables.lr.default=0.05",
                                "tunables.momentum.default=0.5",
                                NULL};
    int rc = mlt_test_submit(&cl, conf_path, out_dir, sets, more, log, sizeof log);
    ck_assert_msg(rc == 0, "submit exited %d:\n%s", rc, log);
}

/* Waits (bounded) until the job is over; its phase and message. */
static void wait_over(double bound_s, char *phase, char *msg, size_t mn)
{
    if (mlt_test_wait_job_over(&cl, bound_s, phase, 64, msg, mn) < 0)
        ck_abort_msg("the job did not end within %.0f s (phase %s): wedged? logs in %s", bound_s,
                     phase, cl.dir);
}

/* Lines of progress.jsonl holding `what`. */
static int count_events(const char *what)
{
    char path[500], line[2048];
    snprintf(path, sizeof path, "%s/progress.jsonl", out_dir);
    FILE *f = fopen(path, "r");
    if (!f)
        return 0;
    int n = 0;
    while (fgets(line, sizeof line, f))
        n += strstr(line, what) != NULL;
    fclose(f);
    return n;
}

/* true when the clock events of each branch in progress.jsonl go up. */
static bool clocks_ordered(void)
{
    char path[500], line[2048];
    snprintf(path, sizeof path, "%s/progress.jsonl", out_dir);
    FILE *f = fopen(path, "r");
    if (!f)
        return false;
    long last_branch = -1, last = -1;
    bool ok = true;
    while (ok && fgets(line, sizeof line, f)) {
        const char *b = strstr(line, "\"event\":\"clock\",\"branch\":");
        if (!b)
            continue;
        long branch = strtol(b + 25, NULL, 10);
        const char *k = strstr(line, "\"clock\":");
        long clock = k ? strtol(k + 8, NULL, 10) : -1;
        ok = branch != last_branch || clock > last;
        last_branch = branch;
        last = clock;
    }
    fclose(f);
    return ok;
}

/* Waits (bounded) for n clock events: the job is training. */
static void wait_clocks(int n)
{
    double t0 = mlt_time_mono();
    while (count_events("\"event\":\"clock\"") < n) {
        ck_assert_msg(mlt_time_mono() - t0 < 60, "no %d clocks within 60 s (logs in %s)", n,
                      cl.dir);
        sleep_s(0.05);
    }
}

/* true when the daemon's log has `what`. */
static bool daemon_logged(const char *what)
{
    return mlt_test_daemon_logged(&cl, 0, what);
}

/* Waits (bounded) until the daemon's log has `what`. */
static void wait_logged(const char *what)
{
    double t0 = mlt_time_mono();
    while (!daemon_logged(what)) {
        ck_assert_msg(mlt_time_mono() - t0 < 30, "the daemon did not log '%s' within 30 s", what);
        sleep_s(0.1);
    }
}

/* The first line of worker log `index` (DIR/worker<index>.log) holding
 * `what`, into line; false when there is none. */
static bool worker_logged(int index, const char *what, char *line, size_t n)
{
    char path[400], buf[4096];
    snprintf(path, sizeof path, "%s/worker%d.log", cl.dir, index);
    FILE *f = fopen(path, "r");
    bool found = false;
    while (f && !found && fgets(buf, sizeof buf, f))
        if ((found = strstr(buf, what) != NULL) && line)
            snprintf(line, n, "%s", buf);
    if (f)
        fclose(f);
    return found;
}

/* The number after `key` in line (-1 when absent). */
static long number_after(const char *line, const char *key)
{
    const char *p = strstr(line, key);
    return p ? strtol(p + strlen(key), NULL, 10) : -1;
}

/* The test events of progress.jsonl: how many, and the smallest and largest
 * val_count + test_count (samples evaluated by the workers together). */
static int test_counts(long *lo, long *hi)
{
    char path[500], line[2048];
    snprintf(path, sizeof path, "%s/progress.jsonl", out_dir);
    FILE *f = fopen(path, "r");
    int n = 0;
    *lo = *hi = -1;
    while (f && fgets(line, sizeof line, f)) {
        if (!strstr(line, "\"event\":\"test\""))
            continue;
        long v = number_after(line, "\"val_count\":"), t = number_after(line, "\"test_count\":");
        long sum = v < 0 || t < 0 ? -1 : v + t;
        *lo = n == 0 || sum < *lo ? sum : *lo;
        *hi = n == 0 || sum > *hi ? sum : *hi;
        n++;
    }
    if (f)
        fclose(f);
    return n;
}

/* The survivor took the whole training set: "data share 0 of 1: N training
 * samples" in its log, N the sum of both partitions (each about half). */
static void check_whole_share(void)
{
    char line[4096], load[4096];
    ck_assert_msg(worker_logged(0, "data share 0 of 1: ", line, sizeof line),
                  "worker 0 never took share 0 of 1 (logs in %s)", cl.dir);
    ck_assert(worker_logged(0, "training samples in this partition", load, sizeof load));
    long all = number_after(line, "data share 0 of 1: ");
    long part = number_after(load, " s: "); /* "loaded in T s: P training samples" */
    ck_assert_msg(part > 0 && (all == 2 * part || all == 2 * part - 1),
                  "share 0 of 1 has %ld samples, the partition of 2 had %ld", all, part);
}

/* Waits (bounded) until worker log `index` has `what`. */
static void wait_worker_logged(int index, const char *what)
{
    double t0 = mlt_time_mono();
    while (!worker_logged(index, what, NULL, 0)) {
        ck_assert_msg(mlt_time_mono() - t0 < 30, "worker %d did not log '%s' within 30 s", index,
                      what);
        sleep_s(0.1);
    }
}

static const char *const quick[] = {"worker_timeout_s=2", "pull_timeout_s=40", NULL};

/* kill -9 of one of 2 workers mid-training, no replacement: the job goes on
 * with the other and finishes. */
START_TEST(test_kill_mid_training)
{
    start(quick);
    ck_assert_int_eq(mlt_test_start_workers(&cl, 2), 0);
    const char *more[] = {"stop.max_epochs=4", NULL};
    submit(2, "fixed", more);
    wait_clocks(20);
    while (count_events("\"event\":\"test\"") < 1) { /* one test with both workers */
        ck_assert_msg(mlt_time_mono() - t_case < 60, "no test within 60 s (logs in %s)", cl.dir);
        sleep_s(0.05);
    }
    ck_assert_int_eq(mlt_test_signal_worker(&cl, 1, SIGKILL), 0);
    int before = count_events("\"event\":\"clock\"");
    char phase[64], msg[512];
    wait_over(CASE_BOUND_S, phase, msg, sizeof msg);
    ck_assert_msg(strcmp(phase, "done") == 0, "phase %s: %s", phase, msg);
    ck_assert_int_ge(count_events("\"event\":\"worker_lost\",\"worker\":1"), 1);
    ck_assert(daemon_logged("the shards were told worker 1 is gone"));
    ck_assert_int_gt(count_events("\"event\":\"clock\""), before + 100);
    /* the survivor took the whole data set: its runs share 0 of 1, and every
     * test after the loss covers the whole validation and test sets again */
    check_whole_share();
    ck_assert(daemon_logged("the data is shared out 1 way(s) from this step (1 of 2 workers"));
    long lo, hi;
    ck_assert_int_ge(test_counts(&lo, &hi), 3);
    ck_assert_msg(lo > 0 && lo == hi, "tests covered %ld..%ld samples (logs in %s)", lo, hi,
                  cl.dir);
    ck_assert_int_eq(mlt_test_wait_workers(&cl, 30), 0);
    note("kill -9 of 1 of 2 workers mid-training", "done; survivor took all data");
}
END_TEST

/* A 1-worker job whose worker is killed and restarted at once (systemd's
 * Restart=always): the replacement takes the rank's slot, loads the job and
 * the run it owed is handed to it; the job finishes. */
START_TEST(test_kill_restart_single)
{
    start(quick);
    ck_assert_int_eq(mlt_test_start_workers(&cl, 1), 0);
    const char *more[] = {"stop.max_epochs=3", NULL};
    submit(1, "fixed", more);
    wait_clocks(20);
    int before = count_events("\"event\":\"clock\"");
    ck_assert_int_eq(mlt_test_signal_worker(&cl, 0, SIGKILL), 0);
    ck_assert_int_ge(mlt_test_start_worker_rank(&cl, 0), 0);
    char phase[64], msg[512];
    wait_over(CASE_BOUND_S, phase, msg, sizeof msg);
    ck_assert_msg(strcmp(phase, "done") == 0, "phase %s: %s", phase, msg);
    ck_assert(daemon_logged("worker 0 (re)joined"));
    ck_assert(daemon_logged("the shards were told worker 0 is back"));
    ck_assert_int_gt(count_events("\"event\":\"clock\""), before + 100);
    ck_assert_int_eq(mlt_test_wait_workers(&cl, 30), 0); /* the replacement exits 0 */
    note("kill -9 + restart of the only worker", "done; replacement took over");
}
END_TEST

/* kill -9 of worker 0 mid-trial (the mltuner logic, trials first) and a
 * replacement: the job finishes. */
START_TEST(test_kill_mid_trial)
{
    start(quick);
    ck_assert_int_eq(mlt_test_start_workers(&cl, 2), 0);
    const char *more[] = {"stop.max_epochs=10", "tuner.min_trial_clocks=50",
                          "tuner.first_trials=2", "tuner.max_trials=2", NULL};
    submit(2, "mltuner", more);
    wait_clocks(5);
    ck_assert_int_eq(mlt_test_signal_worker(&cl, 0, SIGKILL), 0);
    ck_assert_int_ge(mlt_test_start_worker_rank(&cl, 0), 0);
    char phase[64], msg[512];
    wait_over(CASE_BOUND_S, phase, msg, sizeof msg);
    ck_assert_msg(strcmp(phase, "done") == 0, "phase %s: %s", phase, msg);
    ck_assert(daemon_logged("worker 0 (re)joined"));
    ck_assert(daemon_logged("the shards were told worker 0 is back"));
    ck_assert_int_eq(mlt_test_wait_workers(&cl, 30), 0);
    note("kill -9 mid-trial + restart (mltuner logic)", "done");
}
END_TEST

/* on_worker_loss = "fail": the job fails at once, naming the worker. */
START_TEST(test_kill_fail_policy)
{
    start(quick);
    ck_assert_int_eq(mlt_test_start_workers(&cl, 2), 0);
    const char *more[] = {"stop.max_epochs=20", "on_worker_loss=fail", NULL};
    submit(2, "fixed", more);
    wait_clocks(20);
    ck_assert_int_eq(mlt_test_signal_worker(&cl, 1, SIGKILL), 0);
    char phase[64], msg[512];
    wait_over(CASE_BOUND_S, phase, msg, sizeof msg);
    ck_assert_msg(strcmp(phase, "failed") == 0, "phase %s: %s", phase, msg);
    ck_assert_msg(strstr(msg, "worker 1 lost") && strstr(msg, "on_worker_loss"),
                  "message does not name the worker and the key: %s", msg);
    ck_assert_int_eq(mlt_test_wait_workers(&cl, 30), 0); /* the other is told to stop */
    note("kill -9, on_worker_loss = \"fail\"", "failed: names worker 1");
}
END_TEST

/* The only worker killed and no replacement under "continue": the job waits
 * worker_wait_s for one, then fails saying so. */
START_TEST(test_kill_no_replacement)
{
    start(quick);
    ck_assert_int_eq(mlt_test_start_workers(&cl, 1), 0);
    const char *more[] = {"stop.max_epochs=20", "worker_wait_s=2", NULL};
    submit(1, "fixed", more);
    wait_clocks(20);
    ck_assert_int_eq(mlt_test_signal_worker(&cl, 0, SIGKILL), 0);
    char phase[64], msg[512];
    wait_over(CASE_BOUND_S, phase, msg, sizeof msg);
    ck_assert_msg(strcmp(phase, "failed") == 0, "phase %s: %s", phase, msg);
    ck_assert_msg(strstr(msg, "no worker left") && strstr(msg, "worker 0 lost") &&
                      strstr(msg, "worker_wait_s = 2"),
                  "message: %s", msg);
    note("kill -9 of the only worker, no replacement", "failed after worker_wait_s");
}
END_TEST

/* A worker that dies while idle, then a submit, then its replacement. */
START_TEST(test_idle_death_then_submit)
{
    const char *const slow[] = {"worker_timeout_s=30", NULL}; /* the dead slot is still held */
    start(slow);
    ck_assert_int_eq(mlt_test_start_workers(&cl, 1), 0);
    wait_logged("worker 0 joined");
    ck_assert_int_eq(mlt_test_signal_worker(&cl, 0, SIGKILL), 0);
    const char *more[] = {"stop.max_epochs=1", NULL};
    submit(1, "fixed", more);
    sleep_s(0.5);
    ck_assert_int_ge(mlt_test_start_worker_rank(&cl, 0), 0);
    char phase[64], msg[512];
    wait_over(CASE_BOUND_S, phase, msg, sizeof msg);
    ck_assert_msg(strcmp(phase, "done") == 0, "phase %s: %s", phase, msg);
    ck_assert_int_eq(mlt_test_wait_workers(&cl, 30), 0);
    note("worker dies idle, submit, replacement", "done");
}
END_TEST

/* One JOIN for rank 0 from a process that is not a worker, mid-training:
 * the rank is held by a live connection, so the stray JOIN is refused
 * (EADDRINUSE, #13) and the job finishes undisturbed. */
START_TEST(test_stray_join)
{
    start(quick);
    ck_assert_int_eq(mlt_test_start_workers(&cl, 2), 0);
    const char *more[] = {"stop.max_epochs=5", NULL};
    submit(2, "fixed", more);
    wait_clocks(20);
    void *ctx = zmq_ctx_new();
    void *s = zmq_socket(ctx, ZMQ_DEALER);
    int zero = 0;
    zmq_setsockopt(s, ZMQ_LINGER, &zero, sizeof zero);
    ck_assert_int_eq(zmq_connect(s, cl.control), 0);
    mlt_header_t h;
    mlt_wire_init(&h, MLT__MSG_TYPE__MSG_JOIN);
    h.has_worker = 1;
    h.worker = 0;
    ck_assert_int_ge(mlt_wire_send(s, &h, 0), 0);
    /* the refusal comes back to the stray connection */
    zmq_pollitem_t it = {.socket = s, .events = ZMQ_POLLIN};
    ck_assert_int_eq(zmq_poll(&it, 1, 10000), 1);
    zmq_msg_t m;
    zmq_msg_init(&m);
    ck_assert_int_ge(zmq_msg_recv(&m, s, 0), 0);
    mlt_header_t *r = NULL;
    char err[256];
    ck_assert_int_eq(mlt_wire_decode(zmq_msg_data(&m), zmq_msg_size(&m), &r, err, sizeof err), 0);
    zmq_msg_close(&m);
    ck_assert_int_eq(r->type, MLT__MSG_TYPE__MSG_ERROR);
    ck_assert_int_eq(r->error_code, EADDRINUSE);
    ck_assert_msg(strstr(r->error, "worker 0 is taken by a live connection"), "%s", r->error);
    mlt_wire_free(&r);
    char phase[64], msg[512];
    wait_over(CASE_BOUND_S, phase, msg, sizeof msg);
    zmq_close(s);
    zmq_ctx_term(ctx);
    ck_assert_msg(strcmp(phase, "done") == 0, "phase %s: %s", phase, msg);
    ck_assert(daemon_logged("a JOIN as worker 0 refused: a live connection holds it"));
    ck_assert(!daemon_logged("worker 0 lost"));
    ck_assert_int_eq(mlt_test_wait_workers(&cl, 30), 0);
    note("stray JOIN for rank 0 mid-training", "refused (EADDRINUSE); job undisturbed");
}
END_TEST

/* A straggler: worker 1 stopped 3 s (many clocks) under worker_timeout_s 20:
 * the job waits for it, loses nobody and finishes. */
START_TEST(test_sigstop_straggler)
{
    const char *const slow[] = {"worker_timeout_s=20", "pull_timeout_s=40", NULL};
    start(slow);
    ck_assert_int_eq(mlt_test_start_workers(&cl, 2), 0);
    const char *more[] = {"stop.max_epochs=5", NULL};
    submit(2, "fixed", more);
    wait_clocks(20);
    ck_assert_int_eq(mlt_test_signal_worker(&cl, 1, SIGSTOP), 0);
    sleep_s(3);
    ck_assert_int_eq(mlt_test_signal_worker(&cl, 1, SIGCONT), 0);
    char phase[64], msg[512];
    wait_over(CASE_BOUND_S, phase, msg, sizeof msg);
    ck_assert_msg(strcmp(phase, "done") == 0, "phase %s: %s", phase, msg);
    ck_assert_int_eq(count_events("\"event\":\"worker_lost\""), 0);
    ck_assert_int_eq(mlt_test_wait_workers(&cl, 30), 0);
    note("SIGSTOP 3 s < worker_timeout_s 20", "done; nobody dropped");
}
END_TEST

/* A stop of 2 s under worker_timeout_s 1: worker 1 is dropped, the other
 * goes on; after SIGCONT worker 1 is told it is stale, joins again and
 * finishes the job with the other. */
START_TEST(test_sigstop_dropped_rejoins)
{
    const char *const fast[] = {"worker_timeout_s=1", "pull_timeout_s=40", NULL};
    start(fast);
    ck_assert_int_eq(mlt_test_start_workers(&cl, 2), 0);
    const char *more[] = {"stop.max_epochs=60", NULL};
    submit(2, "fixed", more);
    wait_clocks(20);
    ck_assert_int_eq(mlt_test_signal_worker(&cl, 1, SIGSTOP), 0);
    sleep_s(2);
    ck_assert_int_eq(mlt_test_signal_worker(&cl, 1, SIGCONT), 0);
    char phase[64], msg[512];
    wait_over(CASE_BOUND_S, phase, msg, sizeof msg);
    ck_assert_msg(strcmp(phase, "done") == 0, "phase %s: %s", phase, msg);
    ck_assert_int_ge(count_events("\"event\":\"worker_lost\",\"worker\":1"), 1);
    ck_assert(daemon_logged("the shards were told worker 1 is back")); /* it rejoined */
    ck_assert_msg(clocks_ordered(), "progress.jsonl: clocks out of order (logs in %s)", cl.dir);
    ck_assert_int_eq(mlt_test_wait_workers(&cl, 30), 0);
    note("SIGSTOP 2 s > worker_timeout_s 1", "done; dropped, rejoined");
}
END_TEST

/* mltunerctl stop while a worker is stopped (SIGSTOP) mid-run: the job is
 * stopped within a bound, whatever that worker does. */
START_TEST(test_stop_with_stopped_worker)
{
    const char *const slow[] = {"worker_timeout_s=60", "pull_timeout_s=60", NULL};
    start(slow);
    ck_assert_int_eq(mlt_test_start_workers(&cl, 2), 0);
    const char *more[] = {"stop.max_epochs=50", NULL};
    submit(2, "fixed", more);
    wait_clocks(20);
    ck_assert_int_eq(mlt_test_signal_worker(&cl, 0, SIGSTOP), 0);
    double t0 = mlt_time_mono();
    char out[2048];
    const char *argv[] = {"daemon/mltunerctl", "-c", cl.control, "stop", NULL};
    ck_assert_int_eq(mlt_test_run(argv, out, sizeof out), 0);
    char phase[64], msg[512];
    wait_over(30, phase, msg, sizeof msg);
    double took = mlt_time_mono() - t0;
    ck_assert_msg(strcmp(phase, "stopped") == 0, "phase %s: %s", phase, msg);
    mlt_test_signal_worker(&cl, 0, SIGCONT);
    ck_assert_int_eq(mlt_test_wait_workers(&cl, 30), 0); /* both get TASK_STOP */
    char o[80];
    snprintf(o, sizeof o, "stopped in %.1f s", took);
    note("mltunerctl stop, a worker SIGSTOPped", o);
}
END_TEST

/* kill -9 of one of 2 workers, then its replacement: the survivor takes the
 * whole data set while it is alone, and its own half again once the
 * replacement takes tasks; every test covers the whole sets. */
START_TEST(test_share_back_after_rejoin)
{
    start(quick);
    ck_assert_int_eq(mlt_test_start_workers(&cl, 2), 0);
    const char *more[] = {"stop.max_epochs=5", NULL};
    submit(2, "fixed", more);
    while (count_events("\"event\":\"test\"") < 1) {
        ck_assert_msg(mlt_time_mono() - t_case < 60, "no test within 60 s (logs in %s)", cl.dir);
        sleep_s(0.05);
    }
    ck_assert_int_eq(mlt_test_signal_worker(&cl, 1, SIGKILL), 0);
    wait_worker_logged(0, "data share 0 of 1: ");
    ck_assert_int_ge(mlt_test_start_worker_rank(&cl, 1), 0);
    char phase[64], msg[512];
    wait_over(CASE_BOUND_S, phase, msg, sizeof msg);
    ck_assert_msg(strcmp(phase, "done") == 0, "phase %s: %s", phase, msg);
    check_whole_share();
    ck_assert(daemon_logged("the shards were told worker 1 is back"));
    ck_assert(daemon_logged("the data is shared out 2 way(s) from this step (2 of 2 workers"));
    ck_assert_msg(worker_logged(0, "data share 0 of 2: ", NULL, 0),
                  "worker 0 never went back to share 0 of 2 (logs in %s)", cl.dir);
    long lo, hi;
    ck_assert_int_ge(test_counts(&lo, &hi), 3);
    ck_assert_msg(lo > 0 && lo == hi, "tests covered %ld..%ld samples (logs in %s)", lo, hi,
                  cl.dir);
    ck_assert_int_eq(mlt_test_wait_workers(&cl, 30), 0);
    note("kill -9 of 1 of 2, replacement later", "share 0 of 1, then 0 of 2 again");
}
END_TEST

/* Lines of the daemon's log holding `what`. */
static int daemon_count(const char *what)
{
    char path[400], line[4096];
    snprintf(path, sizeof path, "%s/daemon0.log", cl.dir);
    FILE *f = fopen(path, "r");
    int n = 0;
    while (f && fgets(line, sizeof line, f))
        n += strstr(line, what) != NULL;
    if (f)
        fclose(f);
    return n;
}

/* A checkpoint taken while the survivor had the whole data set, the daemon
 * killed and restarted, a replacement for the lost worker: the job resumes
 * with both workers on their own shares and finishes; every test, before,
 * during and after, covers the whole sets. */
START_TEST(test_resume_after_loss)
{
    start(quick);
    ck_assert_int_eq(mlt_test_start_workers(&cl, 2), 0);
    const char *more[] = {"stop.max_epochs=5", "checkpoint_interval_s=0.001", NULL};
    submit(2, "fixed", more);
    while (count_events("\"event\":\"test\"") < 1) {
        ck_assert_msg(mlt_time_mono() - t_case < 60, "no test within 60 s (logs in %s)", cl.dir);
        sleep_s(0.05);
    }
    ck_assert_int_eq(mlt_test_signal_worker(&cl, 1, SIGKILL), 0);
    wait_worker_logged(0, "data share 0 of 1: ");
    int ckpts = daemon_count("written at clock");
    while (daemon_count("written at clock") < ckpts + 1) {
        ck_assert_msg(mlt_time_mono() - t_case < 60, "no checkpoint after the loss (logs in %s)",
                      cl.dir);
        sleep_s(0.05);
    }
    ck_assert_int_eq(mlt_test_kill9(&cl, 0), 0);
    ck_assert_int_eq(mlt_test_restart(&cl, 0), 0);
    ck_assert_int_ge(mlt_test_start_worker_rank(&cl, 1), 0);
    char phase[64], msg[512];
    wait_over(CASE_BOUND_S, phase, msg, sizeof msg);
    ck_assert_msg(strcmp(phase, "done") == 0, "phase %s: %s", phase, msg);
    ck_assert_msg(count_events("\"event\":\"resume\"") == 1, "no resume (logs in %s)", cl.dir);
    long lo, hi;
    ck_assert_int_ge(test_counts(&lo, &hi), 3);
    ck_assert_msg(lo > 0 && lo == hi, "tests covered %ld..%ld samples (logs in %s)", lo, hi,
                  cl.dir);
    ck_assert_int_eq(mlt_test_wait_workers(&cl, 30), 0);
    note("loss, checkpoint, daemon kill -9, replacement", "resumed on 2 shares; done");
}
END_TEST

static Suite *suite(void)
{
    Suite *s = suite_create("faults");
    TCase *tc = tcase_create("faults");
    tcase_add_checked_fixture(tc, NULL, teardown);
    tcase_set_timeout(tc, 240);
    tcase_add_test(tc, test_kill_mid_training);
    tcase_add_test(tc, test_share_back_after_rejoin);
    tcase_add_test(tc, test_resume_after_loss);
    tcase_add_test(tc, test_kill_restart_single);
    tcase_add_test(tc, test_kill_mid_trial);
    tcase_add_test(tc, test_kill_fail_policy);
    tcase_add_test(tc, test_kill_no_replacement);
    tcase_add_test(tc, test_idle_death_then_submit);
    tcase_add_test(tc, test_stray_join);
    tcase_add_test(tc, test_sigstop_straggler);
    tcase_add_test(tc, test_sigstop_dropped_rejoins);
    tcase_add_test(tc, test_stop_with_stopped_worker);
    suite_add_tcase(s, tc);
    return s;
}

int main(void)
{
    return mlt_test_run_suite(suite());
}
