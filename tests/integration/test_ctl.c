/* test_ctl.c - mltunerctl against the real thing: 2 mltunerd shards (rank 0
 * coordinating), 2 real mltuner-worker processes, a tuning job on a
 * Fashion-MNIST subset. While it runs: status, branches (merged over both
 * shards, the training branch marked), metrics (Prometheus text with the
 * job's and both shards' series), decisions; then watch until it ends, and
 * decisions --follow after. Also: stop, and the commands with no job and
 * with no daemon at all. */
#include <check.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>
#include <arpa/inet.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <sys/wait.h>

#include "tests/integration/harness.h"
#include "tests/integration/suite_main.h"

static mlt_test_cluster_t cl;
static char conf_path[600];

static void setup(void)
{
    ck_assert_int_eq(mlt_test_start_listed(&cl, 2, NULL), 0);
    const char *src = getenv("MLT_SOURCE_ROOT");
    snprintf(conf_path, sizeof conf_path, "%s/conf/jobs/fmnist-mlp.conf", src ? src : ".");
}

static void teardown(void)
{
    ck_assert_int_eq(mlt_test_stop(&cl), 0);
}

/* mltunerctl -c CONTROL args... ; its output in out. Returns its status. */
static int ctl(char *out, size_t len, const char *a1, const char *a2, const char *a3)
{
    const char *argv[] = {"daemon/mltunerctl", "-c", cl.control, a1, a2, a3, NULL};
    return mlt_test_run(argv, out, len);
}

/* The value of the first sample line starting with `series ` in metrics text. */
static double sample(const char *text, const char *series)
{
    size_t n = strlen(series);
    for (const char *p = text; p && *p; p = strchr(p, '\n') ? strchr(p, '\n') + 1 : NULL)
        if (strncmp(p, series, n) == 0 && p[n] == ' ')
            return strtod(p + n + 1, NULL);
    return -1;
}

static void nap_ms(long ms)
{
    struct timespec ts = {ms / 1000, (ms % 1000) * 1000000L};
    nanosleep(&ts, NULL);
}

/* Submits fmnist-mlp tuned from lr 1.0 over a subset, without waiting. The
 * batch size stays 64: a tuned 512 (8 clocks an epoch) can end the job before
 * the test has seen it train. */
static void submit(const char *out_name, const char *epochs)
{
    char out[400], log[4096], ep[64];
    snprintf(out, sizeof out, "%s/%s", cl.dir, out_name);
    snprintf(ep, sizeof ep, "stop.max_epochs=%s", epochs);
    const char *argv[] = {"daemon/mltunerctl", "-c", cl.control, "submit", conf_path,
                          "--out", out,
                          "--set", "workers=2",
                          "--set", "data.subset=8000",
                          "--set", "data.validation=1000",
                          "--set", ep,
                          "--set", "stop.target_accuracy=0",
                          "--set", "tunables.lr.default=1.0",
                          "--set", "tunables.batch_size.default=64",
                          "--set", "tunables.batch_size.tune=false",
                          NULL};
    int rc = mlt_test_run(argv, log, sizeof log);
    ck_assert_msg(rc == 0, "submit exited %d: %s", rc, log);
    ck_assert_ptr_nonnull(strstr(log, "submitted"));
}

/* Polls status --json until the training branch is set and a test has run
 * (so a commit and a snapshot exist), at most 120 s. */
static void wait_training(void)
{
    char out[4096];
    for (int i = 0; i < 1200; i++) {
        ck_assert_int_eq(ctl(out, sizeof out, "status", "--json", NULL), 0);
        ck_assert_msg(!strstr(out, "\"phase\":\"failed\""), "the job failed: %s", out);
        if (strstr(out, "\"phase\":\"training\"") && !strstr(out, "\"branch\":0,") &&
            strstr(out, "\"test_accuracy\":"))
            return;
        nap_ms(100);
    }
    ck_abort_msg("the job never reached training with a test: %s", out);
}

/* `branches [json]` into out, asked again (at most 10 s) while it shows no
 * training branch: while a rollback re-tunes from a snapshot there is none */
static void branches_with_training(char *out, size_t len, const char *json)
{
    for (int i = 0; i < 100; i++) {
        ck_assert_int_eq(ctl(out, len, "branches", json, NULL), 0);
        if (strstr(out, json ? "\"training\":true" : "training"))
            return;
        nap_ms(100);
    }
}

/* Epochs of the live job: its first search may take most of 3 (27 trials
 * ended at epoch 2.71 once, leaving 0.3 s of training that the status polls
 * missed), so it runs 6. */
#define LIVE_EPOCHS "6"

START_TEST(test_live_job)
{
    ck_assert_int_eq(mlt_test_start_workers(&cl, 2), 0);
    submit("out-live", LIVE_EPOCHS);
    wait_training();
    static char out[1 << 16];

    /* status: the branch and the tuning/training split */
    ck_assert_int_eq(ctl(out, sizeof out, "status", NULL, NULL), 0);
    ck_assert_msg(strstr(out, "branch:") && strstr(out, "(training)") && strstr(out, "tuning (") &&
                      strstr(out, "of " LIVE_EPOCHS " (clock"),
                  "%s", out);

    /* branches: merged over the two shards, the training one marked */
    branches_with_training(out, sizeof out, NULL);
    ck_assert_msg(strstr(out, "training") && strstr(out, "snapshot") &&
                      strstr(out, "over 2 shards"),
                  "%s", out);
    branches_with_training(out, sizeof out, "--json");
    ck_assert_msg(out[0] == '{' && strstr(out, "\"shards\":2"), "%s", out);
    const char *tr = strstr(out, "\"training\":true");
    ck_assert_msg(tr != NULL, "no training branch: %s", out);
    /* the training branch's chunks: its own, or shared with the snapshot
     * forked from it (right after a fork it owns none until it writes) */
    const char *ob = strstr(tr, "\"owned_bytes\":"), *sb = strstr(tr, "\"shared_bytes\":");
    ck_assert_msg(ob && sb && strtoull(ob + 14, NULL, 10) + strtoull(sb + 15, NULL, 10) > 0, "%s",
                  out);
    ck_assert_msg(!strstr(out, "\"diverged\":true,\"training\":true"), "%s", out);

    /* metrics: the job's series and both shards' */
    ck_assert_int_eq(ctl(out, sizeof out, "metrics", NULL, NULL), 0);
    ck_assert_msg(strstr(out, "# TYPE mltuner_job_epoch gauge") &&
                      strstr(out, "mltuner_job_info{job=\"fmnist-mlp\",phase=\""),
                  "%s", out);
    ck_assert_double_eq(sample(out, "mltuner_up"), 1);
    ck_assert_double_eq(sample(out, "mltuner_shard_up{shard=\"0\"}"), 1);
    ck_assert_double_eq(sample(out, "mltuner_shard_up{shard=\"1\"}"), 1);
    for (int s = 0; s < 2; s++) {
        char name[96];
        snprintf(name, sizeof name, "mltuner_shard_pushes_total{shard=\"%d\"}", s);
        ck_assert_msg(sample(out, name) > 0, "%s: %g\n%s", name, sample(out, name), out);
        snprintf(name, sizeof name, "mltuner_shard_sent_bytes_total{shard=\"%d\"}", s);
        ck_assert_msg(sample(out, name) > 0, "%s", name);
        snprintf(name, sizeof name, "mltuner_shard_memory_bytes{shard=\"%d\",kind=\"allocated\"}",
                 s);
        ck_assert_msg(sample(out, name) > 0, "%s", name);
    }
    ck_assert_msg(sample(out, "mltuner_job_trials_total{job=\"fmnist-mlp\"}") >= 3, "%s", out);
    ck_assert_msg(sample(out, "mltuner_job_tuning_seconds_total{job=\"fmnist-mlp\"}") > 0, "%s",
                  out);
    /* the same over HTTP from rank 0 */
    ck_assert_int_eq(mlt_test_http(cl.metrics_port[0], "GET", "/metrics", out, sizeof out), 200);
    ck_assert_msg(strstr(out, "mltuner_job_info{job=\"fmnist-mlp\",phase=\"") &&
                      sample(out, "mltuner_shard_up{shard=\"1\"}") == 1,
                  "%s", out);

    /* decisions: the log so far, one readable line per decision */
    ck_assert_int_eq(ctl(out, sizeof out, "decisions", NULL, NULL), 0);
    ck_assert_msg(strstr(out, " range_test ") && strstr(out, " commit ") && strstr(out, " test "),
                  "%s", out);
    ck_assert_int_eq(ctl(out, sizeof out, "decisions", "--json", NULL), 0);
    ck_assert_msg(strncmp(out, "{\"t\":", 5) == 0, "%s", out);

    /* watch (not a terminal: a line per change) until the job ends */
    ck_assert_int_eq(ctl(out, sizeof out, "watch", NULL, NULL), 0);
    ck_assert_msg(strstr(out, "fmnist-mlp  done") && strstr(out, "of " LIVE_EPOCHS " epochs"),
                  "%s", out);
    ck_assert_int_eq(mlt_test_wait_workers(&cl, 30), 0);

    /* decisions --follow on a finished job: everything, then it returns */
    ck_assert_int_eq(ctl(out, sizeof out, "decisions", "--follow", NULL), 0);
    ck_assert_msg(strstr(out, " commit ") && strstr(out, "the job is over"), "%s", out);
}
END_TEST

/* SIGTERM to the coordinator's daemon mid-job: it exits 0, and the job's
 * progress log ends as stopped, saying why (not as failed) */
START_TEST(test_sigterm)
{
    ck_assert_int_eq(mlt_test_start_workers(&cl, 2), 0);
    submit("out-term", "100");
    wait_training();
    pid_t coord = cl.pids[0];
    ck_assert_int_eq(kill(coord, SIGTERM), 0);
    int st = 0;
    ck_assert_int_eq(waitpid(coord, &st, 0), coord);
    cl.pids[0] = 0; /* the teardown stops the other shard */
    ck_assert_msg(WIFEXITED(st) && WEXITSTATUS(st) == 0, "mltunerd ended with status %d", st);
    char path[600], line[4096], last[4096] = "";
    snprintf(path, sizeof path, "%s/out-term/progress.jsonl", cl.dir);
    FILE *f = fopen(path, "r");
    ck_assert_msg(f != NULL, "no %s", path);
    while (fgets(line, sizeof line, f))
        snprintf(last, sizeof last, "%s", line);
    fclose(f);
    ck_assert_msg(strstr(last, "\"event\":\"end\"") && strstr(last, "\"phase\":\"stopped\"") &&
                      strstr(last, "the daemon is shutting down"),
                  "%s", last);
}
END_TEST

START_TEST(test_stop)
{
    ck_assert_int_eq(mlt_test_start_workers(&cl, 2), 0);
    submit("out-stop", "100");
    wait_training();
    char out[4096];
    ck_assert_int_eq(ctl(out, sizeof out, "stop", NULL, NULL), 0);
    ck_assert_ptr_nonnull(strstr(out, "stop requested"));
    ck_assert_int_eq(ctl(out, sizeof out, "wait", NULL, NULL), 1);
    ck_assert_int_eq(ctl(out, sizeof out, "status", "--json", NULL), 0);
    ck_assert_msg(strstr(out, "\"phase\":\"stopped\""), "%s", out);
    ck_assert_int_eq(mlt_test_wait_workers(&cl, 30), 0);
    /* the job's branches are gone from the shards */
    ck_assert_int_eq(ctl(out, sizeof out, "branches", NULL, NULL), 0);
    ck_assert_msg(strstr(out, "no live branches"), "%s", out);
    /* and stop with nothing running says so */
    ck_assert_int_eq(ctl(out, sizeof out, "stop", NULL, NULL), 1);
    ck_assert_msg(strstr(out, "no job is running"), "%s", out);
}
END_TEST

START_TEST(test_no_job)
{
    char out[1 << 14];
    ck_assert_int_eq(ctl(out, sizeof out, "branches", NULL, NULL), 0);
    ck_assert_msg(strstr(out, "no live branches (no job)"), "%s", out);
    ck_assert_int_eq(ctl(out, sizeof out, "metrics", NULL, NULL), 0);
    ck_assert_double_eq(sample(out, "mltuner_shard_up{shard=\"1\"}"), 1);
    ck_assert_msg(!strstr(out, "mltuner_job_info"), "%s", out);
    ck_assert_int_eq(ctl(out, sizeof out, "decisions", NULL, NULL), 1);
    ck_assert_msg(strstr(out, "no job has been submitted"), "%s", out);
    /* HTTP: rank 0 has every shard; rank 1 only itself; other paths and methods are refused */
    ck_assert_int_eq(mlt_test_http(cl.metrics_port[0], "GET", "/metrics", out, sizeof out), 200);
    ck_assert_double_eq(sample(out, "mltuner_shard_up{shard=\"0\"}"), 1);
    ck_assert_double_eq(sample(out, "mltuner_shard_up{shard=\"1\"}"), 1);
    ck_assert_int_eq(mlt_test_http(cl.metrics_port[1], "GET", "/metrics", out, sizeof out), 200);
    ck_assert_double_eq(sample(out, "mltuner_shard_up{shard=\"1\"}"), 1);
    ck_assert_msg(sample(out, "mltuner_shard_requests_total{shard=\"1\"}") >= 1, "%s", out);
    ck_assert_msg(!strstr(out, "shard=\"0\""), "%s", out);
    ck_assert_int_eq(mlt_test_http(cl.metrics_port[1], "GET", "/nothing", out, sizeof out), 404);
    ck_assert_int_eq(mlt_test_http(cl.metrics_port[0], "POST", "/metrics", out, sizeof out), 405);
    ck_assert_int_eq(ctl(out, sizeof out, "frobnicate", NULL, NULL), 2);
    ck_assert_msg(strstr(out, "unknown command 'frobnicate'"), "%s", out);
}
END_TEST

/* Every command, with nothing listening: exit 2 and one line naming where. */
START_TEST(test_unreachable)
{
    static const char *const cmds[] = {"status", "branches", "metrics", "decisions", "watch",
                                       "stop", "wait"};
    for (size_t i = 0; i < sizeof cmds / sizeof cmds[0]; i++) {
        char log[1024];
        const char *argv[] = {"daemon/mltunerctl", "-c", "tcp://127.0.0.1:9", "--timeout", "1",
                              cmds[i], NULL};
        int rc = mlt_test_run(argv, log, sizeof log);
        ck_assert_msg(rc == 2, "%s exited %d: %s", cmds[i], rc, log);
        ck_assert_msg(strstr(log, "tcp://127.0.0.1:9") && strstr(log, "no answer"), "%s: %s",
                      cmds[i], log);
        ck_assert_msg(strchr(log, '\n') == log + strlen(log) - 1, "%s: more than one line: %s",
                      cmds[i], log);
    }
}
END_TEST

int main(void)
{
    Suite *s = suite_create("ctl");
    TCase *tc = tcase_create("ctl");
    tcase_add_checked_fixture(tc, setup, teardown);
    tcase_set_timeout(tc, 240);
    tcase_add_test(tc, test_live_job);
    tcase_add_test(tc, test_stop);
    tcase_add_test(tc, test_sigterm);
    tcase_add_test(tc, test_no_job);
    tcase_add_test(tc, test_unreachable);
    suite_add_tcase(s, tc);
    return mlt_test_run_suite(s);
}
