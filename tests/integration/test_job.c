/* test_job.c - a whole job with fixed tunables, end to end on loopback: the
 * real mltunerd (shard + coordinator), 2 real mltuner-worker processes, the
 * job submitted with the real mltunerctl. fmnist-mlp on a subset of
 * Fashion-MNIST, at staleness 0 and 3, and under schedule-free SGD (whose
 * tests read the averaged weights), must reach a stated test accuracy;
 * the progress log must show per-clock losses and one test per epoch; every
 * process must exit 0. Also: a bad job file is refused with file:line, and the
 * job's backend is honoured or refused clearly. (An unreachable coordinator is
 * test_ctl's, for every command.) */
#include <check.h>
#include <stdbool.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "tests/integration/harness.h"
#include "tests/integration/suite_main.h"

#define SUBSET "16000"
/* Stated accuracies after 4 epochs over 16000 samples at lr 0.03, momentum 0.5.
 * Measured: 0.78-0.80 at staleness 0; 0.57-0.77 at staleness 3, where the
 * result depends on timing (which stale copy each worker computes on, so on
 * the machine's load; 0.41 once with six other builds and test runs on the two
 * cores): the bound proves learning (chance is 0.10). Stale
 * gradients cost accuracy, and with momentum 0.9 staleness 3 diverges at this
 * rate: exactly what the tuner has to find out. */
#define MIN_ACCURACY_BSP 0.76
#define MIN_ACCURACY_SSP3 0.30

static mlt_test_cluster_t cl;
static char conf_path[600];

static void setup(void)
{
    ck_assert_int_eq(mlt_test_start(&cl, 1, NULL), 0);
    ck_assert_msg(cl.control[0], "the daemon wrote no control endpoint");
    const char *src = getenv("MLT_SOURCE_ROOT");
    snprintf(conf_path, sizeof conf_path, "%s/conf/jobs/fmnist-mlp.conf", src ? src : ".");
}

static void teardown(void)
{
    ck_assert_int_eq(mlt_test_stop(&cl), 0);
}

/* Value of "key": in a JSON line, as a double; NAN if absent. */
static double jget(const char *line, const char *key)
{
    char pat[64];
    snprintf(pat, sizeof pat, "\"%s\":", key);
    const char *p = strstr(line, pat);
    return p ? strtod(p + strlen(pat), NULL) : __builtin_nan("");
}

/* One fixed-tunables run of fmnist-mlp on 2 workers, batch 128. */
typedef struct job_case {
    const char *name; /* for messages and the output directory */
    const char *rule; /* update.rule */
    const char *lr, *momentum;
    int staleness;
    int epochs;
    int subset;          /* data.subset */
    double min_accuracy; /* the stated bound on the last test */
} job_case_t;

static void run_job(const job_case_t *jc)
{
    if (access("/usr/share/datasets/fashion-mnist/train-images-idx3-ubyte.gz", R_OK) != 0) {
        fprintf(stderr, "Fashion-MNIST is not installed (apt-get install dataset-fashion-mnist)\n");
        ck_abort_msg("no Fashion-MNIST");
    }
    ck_assert_int_eq(mlt_test_start_workers(&cl, 2), 0);
    char out[400], st[64], rule[64], lr[64], mom[64], sub[64], ep[64], log[8192];
    snprintf(out, sizeof out, "%s/out-%s", cl.dir, jc->name);
    snprintf(st, sizeof st, "tunables.staleness.default=%d", jc->staleness);
    snprintf(rule, sizeof rule, "update.rule=%s", jc->rule);
    snprintf(lr, sizeof lr, "tunables.lr.default=%s", jc->lr);
    snprintf(mom, sizeof mom, "tunables.momentum.default=%s", jc->momentum);
    snprintf(sub, sizeof sub, "data.subset=%d", jc->subset);
    snprintf(ep, sizeof ep, "stop.max_epochs=%d", jc->epochs);
    const char *argv[] = {"daemon/mltunerctl",
                          "-c",
                          cl.control,
                          "submit",
                          conf_path,
                          "--out",
                          out,
                          "--set",
                          "tuner.logic=fixed",
                          "--set",
                          "workers=2",
                          "--set",
                          sub,
                          "--set",
                          "data.validation=2000",
                          "--set",
                          ep,
                          "--set",
                          "stop.target_accuracy=0",
                          "--set",
                          rule,
                          "--set",
                          lr,
                          "--set",
                          mom,
                          "--set",
                          "tunables.batch_size.default=128",
                          "--set",
                          st,
                          "--wait",
                          NULL};
    int rc = mlt_test_run(argv, log, sizeof log);
    ck_assert_msg(rc == 0, "mltunerctl submit --wait exited %d:\n%s", rc, log);
    ck_assert_int_eq(mlt_test_wait_workers(&cl, 30), 0);

    char path[500];
    snprintf(path, sizeof path, "%s/progress.jsonl", out);
    FILE *f = fopen(path, "r");
    ck_assert_msg(f != NULL, "no %s", path);
    char line[2048];
    int clocks = 0, tests = 0, ended = 0;
    /* the loss of one clock is one minibatch's: the means of the first and
     * the last few clocks are compared */
    enum { K_MEAN = 5 };
    double last_acc = 0, first_sum = 0, last_ring[K_MEAN] = {0}, last_clock = -1;
    while (fgets(line, sizeof line, f)) {
        ck_assert_msg(line[0] == '{' && strstr(line, "\"t\":"), "not a JSON line: %s", line);
        if (strstr(line, "\"event\":\"clock\"")) {
            double c = jget(line, "clock");
            ck_assert_msg(c > last_clock, "clocks out of order: %s", line);
            last_clock = c;
            double loss = jget(line, "loss");
            if (clocks < K_MEAN)
                first_sum += loss;
            last_ring[clocks % K_MEAN] = loss;
            clocks++;
        } else if (strstr(line, "\"event\":\"test\"")) {
            tests++;
            last_acc = jget(line, "test_accuracy");
        } else if (strstr(line, "\"event\":\"end\"")) {
            ended = 1;
            ck_assert_ptr_nonnull(strstr(line, "\"phase\":\"done\""));
        }
    }
    fclose(f);
    /* 2 workers share the subset; an epoch is a worker's part in batches of 128 */
    const int clocks_per_epoch = (jc->subset / 2 + 127) / 128;
    ck_assert_int_eq(clocks, jc->epochs * clocks_per_epoch);
    ck_assert_int_eq(tests, jc->epochs);
    ck_assert(ended);
    ck_assert_int_ge(clocks, 2 * K_MEAN);
    double last_sum = 0;
    for (int k = 0; k < K_MEAN; k++)
        last_sum += last_ring[k];
    ck_assert_msg(last_sum < first_sum, "loss did not fall: mean of the first %d clocks %g, of "
                  "the last %d %g", K_MEAN, first_sum / K_MEAN, K_MEAN, last_sum / K_MEAN);
    ck_assert_msg(last_acc >= jc->min_accuracy, "%s: test accuracy %.4f < %.2f", jc->name, last_acc,
                  jc->min_accuracy);
    fprintf(stderr, "%s: test accuracy %.4f after %d epochs\n", jc->name, last_acc, jc->epochs);
}

START_TEST(test_bsp)
{
    run_job(&(job_case_t){"s0", "sgd", "0.03", "0.5", 0, 4, 16000, MIN_ACCURACY_BSP});
}
END_TEST

START_TEST(test_ssp3)
{
    run_job(&(job_case_t){"s3", "sgd", "0.03", "0.5", 3, 4, 16000, MIN_ACCURACY_SSP3});
}
END_TEST

/* Schedule-free SGD at the reference implementation's defaults (lr 1.0,
 * interpolation 0.9: a rate at which plain SGD with momentum diverges), 3
 * epochs over 10000 samples; the tests read the averaged weights x.
 * Measured 0.816-0.835 over eight runs on this 2-core machine (2026-12). */
#define SF_MIN_ACCURACY 0.78

START_TEST(test_sf_sgd)
{
    run_job(&(job_case_t){"sf-sgd", "sf-sgd", "1.0", "0.9", 0, 3, 10000, SF_MIN_ACCURACY});
}
END_TEST

/* Tuning from a bad default: lr 1.0 diverges; learning rate, momentum, batch
 * size and staleness are all tuned. The decision log must show the starting
 * loss, trials with summaries, a commit away from the diverging rate, and the
 * tests; the job must reach a stated accuracy. */
/* 10 epochs over 16000 samples, the search's winner included; measured
 * 0.74-0.86 over six runs (`scripts/run-local` with these settings). The
 * trials here are short (an epoch at batch 128 is ~55 clocks), the search's
 * winner varies with timing, and a slow starter (lr 0.001, momentum 0.99)
 * can win: with 6 epochs one run in five ended at 0.59. */
#define TUNE_MIN_ACCURACY 0.60

START_TEST(test_tune)
{
    ck_assert_int_eq(mlt_test_start_workers(&cl, 2), 0);
    char out[400], log[8192];
    snprintf(out, sizeof out, "%s/out-tune", cl.dir);
    const char *argv[] = {"daemon/mltunerctl", "-c", cl.control, "submit", conf_path,
                          "--out", out,
                          "--set", "tuner.logic=mltuner",
                          "--set", "workers=2",
                          "--set", "data.subset=" SUBSET,
                          "--set", "data.validation=2000",
                          "--set", "stop.max_epochs=10",
                          "--set", "stop.target_accuracy=0",
                          "--set", "tunables.lr.default=1.0",
                          "--wait", NULL};
    int rc = mlt_test_run(argv, log, sizeof log);
    ck_assert_msg(rc == 0, "mltunerctl submit --wait exited %d:\n%s", rc, log);
    ck_assert_int_eq(mlt_test_wait_workers(&cl, 30), 0);
    char path[500], line[4096];
    snprintf(path, sizeof path, "%s/decisions.jsonl", out);
    FILE *f = fopen(path, "r");
    ck_assert_msg(f != NULL, "no %s", path);
    int starts = 0, summaries = 0, trials = 0, commits = 0, tests = 0, frees = 0, rollbacks = 0;
    double lr = -1, acc = 0;
    char tail[8][400]; /* the last decisions, for a failure's message */
    unsigned nl = 0;
    while (fgets(line, sizeof line, f)) {
        snprintf(tail[nl++ % 8], sizeof tail[0], "%.398s", line);
        ck_assert_msg(strstr(line, "{\"t\":") == line && strstr(line, "\"event\":") &&
                          strstr(line, "\"branch\":"),
                      "a decision line without t/event/branch: %s", line);
        if (strstr(line, "\"event\":\"range_test\"") || strstr(line, "\"event\":\"start\""))
            starts++;
        else if (strstr(line, "\"event\":\"trial_start\""))
            trials++;
        else if (strstr(line, "\"event\":\"summary\"")) {
            summaries++;
            ck_assert_msg(strstr(line, "\"slope\":") && strstr(line, "\"verdict\":"), "%s", line);
        } else if (strstr(line, "\"event\":\"commit\"")) {
            commits++;
            lr = jget(line, "lr");
        } else if (strstr(line, "\"event\":\"test\"")) {
            tests++;
            acc = jget(line, "test_accuracy");
        } else if (strstr(line, "\"event\":\"free\"")) {
            frees++;
        } else if (strstr(line, "\"event\":\"diverged\"")) {
            rollbacks++;
        }
    }
    fclose(f);
    char last[sizeof tail] = "";
    for (unsigned i = nl > 8 ? nl - 8 : 0; i < nl; i++)
        strncat(last, tail[i % 8], sizeof last - strlen(last) - 1);
    ck_assert_int_eq(starts, 1);
    ck_assert_int_ge(summaries, 3);
    ck_assert_int_ge(commits, 1);
    ck_assert_int_ge(trials, 3);
    ck_assert_int_ge(frees, trials - 1); /* the losing trials were freed */
    ck_assert_int_ge(tests, 1);
    ck_assert_msg(lr > 0 && lr < 0.3, "committed lr %g is in the diverging region", lr);
    ck_assert_msg(acc >= TUNE_MIN_ACCURACY, "tuned test accuracy %.4f < %.2f; the last "
                  "decisions:\n%s", acc, TUNE_MIN_ACCURACY, last);
    fprintf(stderr, "tuned from lr 1.0: committed lr %g, test accuracy %.4f, %d trials, %d "
            "rollbacks\n", lr, acc, trials, rollbacks);

    /* warm start: the job left its first search's winner with its outputs
     * (and with the daemon); the next job of the model starts from it, with
     * no range test, and says so first in its decision log */
    snprintf(path, sizeof path, "%s/warm-start.conf", out);
    ck_assert_msg(access(path, R_OK) == 0, "no %s", path);
    ck_assert_int_eq(mlt_test_start_workers(&cl, 2), 0);
    snprintf(out, sizeof out, "%s/out-warm", cl.dir);
    const char *again[] = {"daemon/mltunerctl", "-c", cl.control, "submit", conf_path,
                           "--out", out,
                           "--set", "workers=2",
                           "--set", "data.subset=" SUBSET,
                           "--set", "data.validation=2000",
                           "--set", "stop.max_epochs=2",
                           "--set", "stop.target_accuracy=0",
                           "--set", "tunables.lr.default=1.0",
                           "--wait", NULL};
    rc = mlt_test_run(again, log, sizeof log);
    ck_assert_msg(rc == 0, "mltunerctl submit --wait exited %d:\n%s", rc, log);
    ck_assert_int_eq(mlt_test_wait_workers(&cl, 30), 0);
    snprintf(path, sizeof path, "%s/decisions.jsonl", out);
    f = fopen(path, "r");
    ck_assert_msg(f != NULL, "no %s", path);
    ck_assert(fgets(line, sizeof line, f) != NULL);
    ck_assert_msg(strstr(line, "\"event\":\"warm_start\"") && strstr(line, "\"used\":true"),
                  "the second job did not start warm: %s", line);
    bool range = false, centre = false;
    while (fgets(line, sizeof line, f)) {
        range |= strstr(line, "\"event\":\"range_test\"") != NULL;
        centre |= strstr(line, "\"event\":\"centre\"") && strstr(line, "\"warm\":true");
    }
    fclose(f);
    ck_assert_msg(!range && centre, "warm job: range test %d, warm centre %d", range, centre);
}
END_TEST

START_TEST(test_bad_job)
{
    char path[400], log[4096];
    snprintf(path, sizeof path, "%s/bad.conf", cl.dir);
    FILE *f = fopen(path, "w");
    ck_assert_ptr_nonnull(f);
    fputs("name = \"bad\";\nmodel = { type = \"mlp\"; layers = [64]; };\nworkrs = 2;\n", f);
    fclose(f);
    const char *argv[] = {"daemon/mltunerctl", "-c", cl.control, "submit", path, NULL};
    int rc = mlt_test_run(argv, log, sizeof log);
    ck_assert_int_eq(rc, 1);
    char want[420];
    snprintf(want, sizeof want, "%s:3:", path);
    ck_assert_msg(strstr(log, want) && strstr(log, "workrs"), "message lacks file:line: %s", log);
    /* the coordinator is still idle and serving */
    const char *st[] = {"daemon/mltunerctl", "-c", cl.control, "status", "--json", NULL};
    ck_assert_int_eq(mlt_test_run(st, log, sizeof log), 0);
    ck_assert_ptr_nonnull(strstr(log, "\"phase\":\"idle\""));
}
END_TEST

/* The job's backend: "cuda" where there is no usable GPU is a clear error
 * (standalone, and a submitted job fails with the worker's reason while the
 * daemon keeps serving); "auto" says which backend it took, in one line. On a
 * machine with a GPU both run on it. */
static int standalone(const char *backend, char *log, size_t loglen)
{
    char set[64];
    snprintf(set, sizeof set, "backend=%s", backend);
    const char *argv[] = {"worker/mltuner-worker", "--standalone", conf_path, "--set", set,
                          "--set", "data.subset=1000", "--set", "stop.max_epochs=1", NULL};
    return mlt_test_run(argv, log, loglen);
}

START_TEST(test_backend)
{
    char log[8192];
    int rc = standalone("cuda", log, sizeof log);
    if (rc != 0) {
        ck_assert_int_eq(rc, 1);
        ck_assert_msg(strstr(log, "backend = \"cuda\", but there is no GPU: "), "%s", log);
        ck_assert_msg(strchr(log, '\n') == log + strlen(log) - 1, "more than one line: %s", log);
    } else {
        ck_assert_msg(strstr(log, "backend cuda: "), "%s", log);
    }
    bool gpu = rc == 0;
    ck_assert_int_eq(standalone("auto", log, sizeof log), 0);
    ck_assert_msg(strstr(log, gpu ? "backend cuda: " : "backend cpu (backend auto: "), "%s", log);
    if (gpu)
        return;
    /* a submitted job: the workers refuse it, the job fails with why */
    ck_assert_int_eq(mlt_test_start_workers(&cl, 2), 0);
    const char *argv[] = {"daemon/mltunerctl", "-c", cl.control, "submit", conf_path, "--set",
                          "backend=cuda", "--wait", NULL};
    rc = mlt_test_run(argv, log, sizeof log);
    ck_assert_msg(rc != 0, "a cuda job without a GPU was not refused: %s", log);
    ck_assert_msg(strstr(log, "no GPU"), "the failure does not say why: %s", log);
    const char *st[] = {"daemon/mltunerctl", "-c", cl.control, "status", "--json", NULL};
    ck_assert_int_eq(mlt_test_run(st, log, sizeof log), 0);
    ck_assert_msg(strstr(log, "\"phase\":\"failed\""), "%s", log);
}
END_TEST

int main(void)
{
    Suite *s = suite_create("job");
    TCase *tc = tcase_create("fixed");
    tcase_add_checked_fixture(tc, setup, teardown);
    tcase_set_timeout(tc, 240);
    tcase_add_test(tc, test_bsp);
    tcase_add_test(tc, test_ssp3);
    tcase_add_test(tc, test_tune);
    tcase_add_test(tc, test_bad_job);
    tcase_add_test(tc, test_backend);
    suite_add_tcase(s, tc);
    tc = tcase_create("schedule-free");
    tcase_add_checked_fixture(tc, setup, teardown);
    tcase_set_timeout(tc, 240);
    tcase_add_test(tc, test_sf_sgd);
    suite_add_tcase(s, tc);
    return mlt_test_run_suite(s);
}
