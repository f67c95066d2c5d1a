/* test_checkpoint.c - checkpoints and resume (#12), with the real processes:
 * mltunerd (shards + coordinator), 2 mltuner-worker processes, the job
 * submitted with mltunerctl, a small mf-synth job.
 *
 *  resume:   the daemon is killed (-9) mid-training and restarted on the same
 *            state directory and ports: before any worker is back, the
 *            restored training branch and good snapshot hold exactly the
 *            bytes pulled from the snapshot before the kill (the checkpoint
 *            was taken right after it), with the same tunables; the decision
 *            log says "resume" from the training loop; the workers rejoin on
 *            their own and the job reaches its target RMSE.
 *  kills:    50 kill -9s of the daemon while it checkpoints every round:
 *            every restart resumes from a complete checkpoint (or, before the
 *            first one, says there is none and starts again), the checkpoint
 *            numbers never go back, no complete checkpoint is ever refused,
 *            and the outputs are whole lines after all of it.
 *  corrupt:  2 shards; a flipped byte in shard 1's newest file and then a cut
 *            coordinator file: each newest checkpoint is skipped, naming the
 *            file, in favour of the one before.
 *  shard back: 2 shards; shard 1 (not the coordinator's daemon) is killed
 *            (-9) mid-training and restarted on the same state directory and
 *            port: daemon 0 says shard 1 was lost, that it answers again and
 *            then which checkpoint it resumed from (in that order); the
 *            outputs say "resume" (progress.jsonl naming the shard,
 *            decisions.jsonl "shard_lost" then the tuner's "resume"); the
 *            job reaches its target RMSE and is "done".
 *  shard gone: the same kill, shard 1 not restarted: the job fails within
 *            its worker_wait_s (4 s) and a generous bound, its end naming
 *            shard 1 and the wait; with shard 1 back, the same job again
 *            starts clean (the failed one's branches left on shard 0 go).
 *  shard early: shard 1 killed with no checkpoint (checkpoint_interval_s = 0):
 *            the job fails at once, naming shard 1 and why it cannot resume. */
#include <check.h>
#include <errno.h>
#include <signal.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "tests/integration/harness.h"
#include "tests/integration/suite_main.h"
#include "client/mltuner.h"

#define STR_(x)    #x
#define MLT_STR(x) STR_(x)
#define USERS      3000
#define ITEMS      1500
#define RANK       20

static mlt_test_cluster_t cl;
static char conf_path[600], out_dir[400], dlog_path[500], plog_path[500];

static void sleep_s(double s)
{
    struct timespec ts = {(time_t)s, (long)((s - (double)(time_t)s) * 1e9)};
    nanosleep(&ts, NULL);
}

static double now_s(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec * 1e-9;
}

static void daemon_log(int i, char *path, size_t cap)
{
    snprintf(path, cap, "%s/daemon%d.log", cl.dir, i);
}

/* Lines of path containing needle. */
static int count_lines(const char *path, const char *needle)
{
    FILE *f = fopen(path, "r");
    if (!f)
        return 0;
    char line[4096];
    int n = 0;
    while (fgets(line, sizeof line, f))
        n += strstr(line, needle) != NULL;
    fclose(f);
    return n;
}

/* Waits up to timeout_s until daemon 0's log has at least n lines with needle. */
static bool wait_log(const char *needle, int n, double timeout_s)
{
    char path[400];
    daemon_log(0, path, sizeof path);
    for (double end = now_s() + timeout_s; now_s() < end; sleep_s(0.01))
        if (count_lines(path, needle) >= n)
            return true;
    return false;
}

/* The last line of path containing both a and b (b may be NULL), or false. */
static bool last_line(const char *path, const char *a, const char *b, char *out, size_t cap)
{
    FILE *f = fopen(path, "r");
    if (!f)
        return false;
    char line[4096];
    bool found = false;
    while (fgets(line, sizeof line, f))
        if (strstr(line, a) && (!b || strstr(line, b))) {
            snprintf(out, cap, "%s", line);
            found = true;
        }
    fclose(f);
    return found;
}

static double jdbl(const char *line, const char *key)
{
    char pat[64];
    snprintf(pat, sizeof pat, "\"%s\":", key);
    const char *p = strstr(line, pat);
    return p ? strtod(p + strlen(pat), NULL) : -1;
}

static long jint(const char *line, const char *key)
{
    char pat[64];
    snprintf(pat, sizeof pat, "\"%s\":", key);
    const char *p = strstr(line, pat);
    return p ? strtol(p + strlen(pat), NULL, 10) : -1;
}

static void setup_n(int shards)
{
    static const char *const extra[] = {NULL};
    if (shards == 1)
        ck_assert_int_eq(mlt_test_start(&cl, 1, extra), 0);
    else
        ck_assert_int_eq(mlt_test_start_listed(&cl, shards, extra), 0);
    ck_assert_msg(cl.control[0], "the daemon wrote no control endpoint");
    const char *src = getenv("MLT_SOURCE_ROOT");
    snprintf(conf_path, sizeof conf_path, "%s/conf/jobs/mf-synth.conf", src ? src : ".");
    snprintf(out_dir, sizeof out_dir, "%s/out", cl.dir);
    snprintf(dlog_path, sizeof dlog_path, "%s/decisions.jsonl", out_dir);
    snprintf(plog_path, sizeof plog_path, "%s/progress.jsonl", out_dir);
}

static void setup1(void)
{
    setup_n(1);
}
static void setup2(void)
{
    setup_n(2);
}

static void teardown(void)
{
    for (int i = 0; i < cl.n_workers; i++) /* a SIGSTOPped worker must die too */
        kill(cl.workers[i], SIGCONT);
    ck_assert_int_eq(mlt_test_stop(&cl), 0);
}

/* Submits the small mf-synth job (no --wait); more: further "--set" values. */
static void submit(const char *const *more)
{
    const char *argv[64] = {"daemon/mltunerctl",
                            "-c",
                            cl.control,
                            "submit",
                            conf_path,
                            "--out",
                            out_dir,
                            "--set",
                            "data.synthetic.users=" MLT_STR(USERS),
                            "--set",
                            "data.synthetic.items=" MLT_STR(ITEMS),
                            "--set",
                            "data.synthetic.ratings=300k",
                            "--set",
                            "data.validation=3000",
                            "--set",
                            "tuner.warm_start=",
                            "--set",
                            "test_interval=0.25",
                            "--set",
                            "checkpoint_interval_s=0.001"};
    int a = 0;
    while (argv[a])
        a++;
    for (int k = 0; more && more[k] && a < 60; k++) {
        argv[a++] = "--set";
        argv[a++] = more[k];
    }
    argv[a] = NULL;
    char log[4096];
    int rc = mlt_test_run(argv, log, sizeof log);
    ck_assert_msg(rc == 0, "mltunerctl submit exited %d:\n%s", rc, log);
}

static void workers_signal(int sig)
{
    for (int i = 0; i < cl.n_workers; i++)
        kill(cl.workers[i], sig);
}

/* A client of the shards that pulls the job's tables. */
static const mlt_table_def_t mf_tables[] = {{"mf.user", (uint64_t)USERS *RANK},
                                            {"mf.item", (uint64_t)ITEMS *RANK}};
static const mlt_job_def_t mf_job = {"mf-synth", 2, "sgd", mf_tables, 2, false};

static mlt_client_t *shard_client(void)
{
    char err[256];
    mlt_client_t *c = mlt_client_new(cl.eps, (uint32_t)cl.n, 0, err, sizeof err);
    ck_assert_msg(c != NULL, "client: %s", err);
    mlt_client_set_timeout(c, 20);
    ck_assert_msg(mlt_client_register(c, &mf_job) == 0, "register: %s", mlt_client_error(c));
    return c;
}

static float **pull_branch(mlt_client_t *c, uint32_t branch)
{
    float **p = calloc(2, sizeof *p);
    for (int t = 0; t < 2; t++)
        p[t] = calloc(mf_tables[t].size, sizeof(float));
    int rc = mlt_pull(c, branch, 0, p);
    ck_assert_msg(rc == 0, "pull of branch %u: %s", branch, mlt_client_error(c));
    return p;
}

static void free_params(float **p)
{
    for (int t = 0; t < 2; t++)
        free(p[t]);
    free(p);
}

/* The tunables of branch id on shard 0. */
static mlt_tunables_def_t branch_tunables(mlt_client_t *c, uint32_t id)
{
    mlt_server_status_t st;
    ck_assert_msg(mlt_client_status(c, 0, &st) == 0, "%s", mlt_client_error(c));
    mlt_tunables_def_t t = mlt_tunables_unset();
    bool found = false;
    for (uint32_t i = 0; i < st.n_branches; i++)
        if (st.branches[i].id == id) {
            t = st.branches[i].tunables;
            found = true;
        }
    mlt_server_status_free(&st);
    ck_assert_msg(found, "branch %u is not on shard 0", id);
    return t;
}

/* The one live snapshot branch on shard 0 (0: none). */
static uint32_t snapshot_of(mlt_client_t *c)
{
    mlt_server_status_t st;
    ck_assert_msg(mlt_client_status(c, 0, &st) == 0, "%s", mlt_client_error(c));
    uint32_t id = 0;
    for (uint32_t i = 0; i < st.n_branches; i++)
        if (st.branches[i].kind == MLT_BRANCH_SNAPSHOT)
            id = st.branches[i].id;
    mlt_server_status_free(&st);
    return id;
}

/* Waits for the job to end; returns its progress.jsonl end line in out. */
static void wait_end(char *out, size_t cap, double timeout_s)
{
    for (double end = now_s() + timeout_s; now_s() < end; sleep_s(0.05))
        if (last_line(plog_path, "\"event\":\"end\"", NULL, out, cap))
            return;
    ck_abort_msg("the job did not end within %.0f s (logs in %s)", timeout_s, cl.dir);
}

/* Every line of path is one whole JSON object line. */
static int check_lines(const char *path)
{
    FILE *f = fopen(path, "r");
    ck_assert_msg(f != NULL, "no %s", path);
    char line[8192];
    int n = 0;
    while (fgets(line, sizeof line, f)) {
        size_t len = strlen(line);
        ck_assert_msg(len > 2 && line[0] == '{' && line[len - 1] == '\n' && line[len - 2] == '}',
                      "%s: line %d is not whole: %s", path, n + 1, line);
        n++;
    }
    fclose(f);
    return n;
}

START_TEST(test_resume)
{
    ck_assert_int_eq(mlt_test_start_workers(&cl, 2), 0);
    const char *const more[] = {"tuner.retune_tests=0", "tuner.plateau_t=0", "stop.target_rmse=0.9",
                                "stop.max_epochs=400", NULL};
    submit(more);
    /* training has begun: a checkpoint after the first search's commit */
    ck_assert_msg(wait_log("checkpoint 1 written", 1, 30), "no checkpoint (logs in %s)", cl.dir);
    workers_signal(SIGSTOP); /* training halts at the next run; the coordinator checkpoints
                              * every round, so the newest one holds the live snapshot */
    sleep_s(0.5);
    char line[4096];
    ck_assert_msg(!last_line(plog_path, "\"event\":\"end\"", NULL, line, sizeof line),
                  "the job ended before the kill: %s", line);
    ck_assert(
        last_line(dlog_path, "\"event\":\"fork\"", "\"kind\":\"snapshot\"", line, sizeof line));
    uint32_t snap = (uint32_t)jint(line, "branch");
    ck_assert(last_line(dlog_path, "\"event\":\"commit\"", NULL, line, sizeof line));
    int trials = count_lines(dlog_path, "\"event\":\"trial_start\"");
    ck_assert_int_ge(trials, 1);
    mlt_client_t *c = shard_client();
    float **before = pull_branch(c, snap);
    mlt_tunables_def_t tu_before = branch_tunables(c, snap);
    mlt_client_destroy(&c);

    char dlog[400];
    daemon_log(0, dlog, sizeof dlog);
    ck_assert_int_eq(mlt_test_kill9(&cl, 0), 0);
    ck_assert_int_eq(mlt_test_restart(&cl, 0), 0);
    ck_assert_msg(wait_log("resuming from checkpoint", 1, 20), "no resume (log %s)", dlog);
    /* the log says so as the load ends; the outputs follow */
    for (double end = now_s() + 10;
         now_s() < end && !last_line(plog_path, "\"event\":\"resume\"", NULL, line, sizeof line);)
        sleep_s(0.01);
    ck_assert(last_line(plog_path, "\"event\":\"resume\"", NULL, line, sizeof line));
    uint32_t train = (uint32_t)jint(line, "branch");
    /* the workers are still stopped: nothing has touched the restored branches */
    c = shard_client();
    ck_assert_msg(snapshot_of(c) == snap, "resumed with snapshot %u, the live one was %u",
                  snapshot_of(c), snap);
    float **snap_after = pull_branch(c, snap), **train_after = pull_branch(c, train);
    for (int t = 0; t < 2; t++) {
        ck_assert_msg(memcmp(before[t], snap_after[t], mf_tables[t].size * sizeof(float)) == 0,
                      "snapshot %u's table %d differs after the restore", snap, t);
        ck_assert_msg(memcmp(before[t], train_after[t], mf_tables[t].size * sizeof(float)) == 0,
                      "training branch %u's table %d differs from the checkpoint", train, t);
    }
    mlt_tunables_def_t tu_after = branch_tunables(c, train);
    ck_assert_msg(tu_after.lr == tu_before.lr && tu_after.momentum == tu_before.momentum &&
                      tu_after.staleness == tu_before.staleness,
                  "tunables differ: lr %g -> %g", tu_before.lr, tu_after.lr);
    mlt_client_destroy(&c);
    free_params(before);
    free_params(snap_after);
    free_params(train_after);
    /* the same workers, let go: they rejoin on their own and the job ends */
    workers_signal(SIGCONT);
    wait_end(line, sizeof line, 60);
    ck_assert_msg(strstr(line, "\"phase\":\"done\"") && strstr(line, "reached the target"),
                  "the resumed job did not reach its target: %s", line);
    /* the tuner's accounts came back with it (no search ran after the resume) */
    ck_assert_msg(jint(line, "trials") == trials, "%d trials before the kill, the end says %s",
                  trials, line);
    ck_assert_int_eq(mlt_test_wait_workers(&cl, 30), 0);
    ck_assert_int_eq(count_lines(plog_path, "\"event\":\"resume\""), 1);
    ck_assert(last_line(dlog_path, "\"event\":\"resume\"", NULL, line, sizeof line));
    ck_assert_msg(jint(line, "branch") == (long)train && jint(line, "snapshot") == (long)snap,
                  "the tuner resumed elsewhere: %s", line);
    check_lines(dlog_path);
    check_lines(plog_path);
    /* a job that is over is not resumed */
    ck_assert_int_eq(mlt_test_kill9(&cl, 0), 0);
    ck_assert_int_eq(mlt_test_restart(&cl, 0), 0);
    sleep_s(0.3);
    ck_assert_int_eq(count_lines(dlog, "found in"), 1);
}
END_TEST

START_TEST(test_kills)
{
    ck_assert_int_eq(mlt_test_start_workers(&cl, 2), 0);
    const char *const more[] = {"stop.target_rmse=0", "stop.max_epochs=100000", NULL};
    submit(more);
    char dlog[400];
    daemon_log(0, dlog, sizeof dlog);
    unsigned seed = 12345;
    int resumed = 0, fresh = 0;
    long last_seq = 0;
    /* the first checkpoint is waited for (a slow machine or a sanitizer build
     * takes longer than the kills' spacing to start the job): from then on
     * every restart must find a complete one */
    ck_assert_msg(wait_log("written at clock", 1, 60), "no first checkpoint (log %s)", dlog);
    double t0 = now_s();
    for (int k = 0; k < 50; k++) {
        seed = seed * 1103515245u + 12345u;
        sleep_s(0.05 + (double)((seed >> 8) % 400) / 1000.0);
        bool written = count_lines(dlog, "written at clock") > 0;
        ck_assert_int_eq(mlt_test_kill9(&cl, 0), 0);
        ck_assert_int_eq(mlt_test_restart(&cl, 0), 0);
        int want = resumed + fresh + 1;
        double end = now_s() + 20;
        while (now_s() < end && count_lines(dlog, "resuming from checkpoint") +
                                        count_lines(dlog, "no complete checkpoint") <
                                    want)
            sleep_s(0.01);
        char line[4096];
        int r = count_lines(dlog, "resuming from checkpoint");
        int f = count_lines(dlog, "no complete checkpoint");
        ck_assert_msg(r + f == want, "restart %d found no checkpoint and said nothing (log %s)",
                      k + 1, dlog);
        if (f > fresh) {
            ck_assert_msg(!written,
                          "restart %d: no complete checkpoint although one was "
                          "written (log %s)",
                          k + 1, dlog);
            fresh = f;
        } else {
            resumed = r;
            ck_assert(last_line(dlog, "resuming from checkpoint", NULL, line, sizeof line));
            long seq = strtol(strstr(line, "checkpoint ") + 11, NULL, 10);
            ck_assert_msg(seq >= last_seq, "restart %d resumed from %ld after %ld", k + 1, seq,
                          last_seq);
            last_seq = seq;
        }
        ck_assert_msg(count_lines(dlog, "cannot resume") == 0 &&
                          count_lines(dlog, "' failed: ") == 0,
                      "a resume failed (log %s)", dlog);
    }
    /* a checkpoint skipped is one cut short by the kill (no MANIFEST yet),
     * never one whose checksums were written and do not hold */
    ck_assert_int_eq(count_lines(dlog, "CRC32 mismatch"), 0);
    ck_assert_int_eq(count_lines(dlog, "differs from the manifest"), 0);
    ck_assert_msg(resumed == 50, "only %d of 50 restarts resumed from a checkpoint", resumed);
    fprintf(stderr, "50 kills in %.1f s: %d resumed (last checkpoint %ld), %d started again\n",
            now_s() - t0, resumed, last_seq, fresh);
    /* the job still runs (the workers are back: a new checkpoint) and stops
     * on request; its outputs are whole */
    ck_assert_msg(wait_log("written at clock", count_lines(dlog, "written at clock") + 1, 30),
                  "no checkpoint after the last restart (log %s)", dlog);
    const char *stop[] = {"daemon/mltunerctl", "-c", cl.control, "stop", NULL};
    char out[4096];
    ck_assert_msg(mlt_test_run(stop, out, sizeof out) == 0, "stop: %s", out);
    char line[4096];
    wait_end(line, sizeof line, 60);
    ck_assert_msg(strstr(line, "\"phase\":\"stopped\""), "%s", line);
    ck_assert_int_eq(mlt_test_wait_workers(&cl, 30), 0);
    check_lines(dlog_path);
    check_lines(plog_path);
}
END_TEST

START_TEST(test_mid_interval)
{
    /* a test interval of 100 epochs runs in pieces, a checkpoint between them:
     * killed inside it, the job goes on with the rest of the same interval,
     * whose test then comes 100 epochs after its start */
    ck_assert_int_eq(mlt_test_start_workers(&cl, 2), 0);
    const char *const more[] = {"test_interval=100",  "tuner.retune_tests=0",   "tuner.plateau_t=0",
                                "stop.target_rmse=0", "stop.max_epochs=100000", NULL};
    submit(more);
    char dlog[400], line[4096];
    daemon_log(0, dlog, sizeof dlog);
    ck_assert_msg(wait_log("written at clock", 3, 60), "no checkpoints (log %s)", dlog);
    ck_assert_int_eq(count_lines(dlog_path, "\"event\":\"test\""), 0); /* still inside */
    ck_assert_int_eq(mlt_test_kill9(&cl, 0), 0);
    ck_assert_int_eq(mlt_test_restart(&cl, 0), 0);
    ck_assert_msg(wait_log("resuming from checkpoint", 1, 20), "no resume (log %s)", dlog);
    double end = now_s() + 60;
    while (now_s() < end && !last_line(dlog_path, "\"event\":\"test\"", NULL, line, sizeof line))
        sleep_s(0.05);
    ck_assert_msg(now_s() < end, "no test after the resume (log %s)", dlog);
    double e_test = jdbl(line, "epoch");
    ck_assert(last_line(dlog_path, "\"event\":\"resume\"", NULL, line, sizeof line));
    double e_resume = jdbl(line, "epoch");
    ck_assert(last_line(dlog_path, "\"kind\":\"snapshot\"", "committed", line, sizeof line));
    double e_start = jdbl(line, "epoch");
    ck_assert_msg(e_resume > e_start + 0.1, "resumed at epoch %g, the interval began at %g",
                  e_resume, e_start);
    ck_assert_msg(e_test > e_start + 99.9 && e_test < e_start + 100.1,
                  "the interval from epoch %g (resumed at %g) was tested at %g", e_start, e_resume,
                  e_test);
    const char *stop[] = {"daemon/mltunerctl", "-c", cl.control, "stop", NULL};
    char out[4096];
    ck_assert_msg(mlt_test_run(stop, out, sizeof out) == 0, "stop: %s", out);
    wait_end(line, sizeof line, 60);
    ck_assert_int_eq(mlt_test_wait_workers(&cl, 30), 0);
}
END_TEST

START_TEST(test_refusals)
{
    /* the checkpoint requests, bounded: no job, a name that climbs out, a
     * file that is not there (named, with the shard) */
    char err[256];
    mlt_client_t *c = mlt_client_new(cl.eps, 1, 0, err, sizeof err);
    ck_assert_msg(c != NULL, "%s", err);
    uint64_t size;
    uint32_t crc;
    ck_assert_int_eq(mlt_client_ckpt_save(c, 0, "mf-synth", 1, 0, &size, &crc), -ENOENT);
    ck_assert_int_eq(mlt_client_ckpt_load(c, 0, "..", 1, 100, 5), -EINVAL);
    ck_assert_int_eq(mlt_client_ckpt_load(c, 0, "a/../../etc", 1, 100, 5), -EINVAL);
    ck_assert_int_eq(mlt_client_ckpt_load(c, 0, "mf-synth", 3, 100, 5), -EPROTO);
    ck_assert_msg(strstr(mlt_client_error(c), "shard 0") &&
                      strstr(mlt_client_error(c), "checkpoints/mf-synth/3/shard-0.ckpt"),
                  "%s", mlt_client_error(c));
    ck_assert_int_eq(mlt_client_ckpt_save(c, 5, "mf-synth", 1, 0, &size, &crc), -EINVAL);
    mlt_client_destroy(&c);
    /* and the daemon still serves */
    ck_assert(mlt_test_alive(&cl, 0));
    c = shard_client();
    mlt_client_destroy(&c);
}
END_TEST

/* Kills the daemon with the workers stopped once at least 2 complete
 * checkpoints exist; returns the newest one's number. */
static long kill_with_two(int resumes_before)
{
    char dlog[400], line[4096];
    daemon_log(0, dlog, sizeof dlog);
    int base = count_lines(dlog, "written at clock");
    ck_assert_msg(wait_log("written at clock", base + 2, 30), "no checkpoints (log %s)", dlog);
    workers_signal(SIGSTOP);
    sleep_s(0.3);
    ck_assert(last_line(dlog, "written at clock", NULL, line, sizeof line));
    long seq = strtol(strstr(line, "checkpoint ") + 11, NULL, 10);
    ck_assert_int_eq(mlt_test_kill9(&cl, 0), 0);
    (void)resumes_before;
    return seq;
}

START_TEST(test_corrupt)
{
    ck_assert_int_eq(mlt_test_start_workers(&cl, 2), 0);
    const char *const more[] = {"stop.target_rmse=0", "stop.max_epochs=100000", NULL};
    submit(more);
    char dlog[400], path[600], line[4096];
    daemon_log(0, dlog, sizeof dlog);

    /* a flipped byte in the middle of shard 1's newest file */
    long seq = kill_with_two(0);
    snprintf(path, sizeof path, "%s/checkpoints/mf-synth/%ld/shard-1.ckpt", cl.dir, seq);
    FILE *f = fopen(path, "r+b");
    ck_assert_msg(f != NULL, "no %s", path);
    struct stat sb;
    ck_assert_int_eq(stat(path, &sb), 0);
    fseek(f, sb.st_size / 2, SEEK_SET);
    int ch = fgetc(f);
    fseek(f, sb.st_size / 2, SEEK_SET);
    fputc(ch ^ 0x10, f);
    fclose(f);
    ck_assert_int_eq(mlt_test_restart(&cl, 0), 0);
    ck_assert_msg(wait_log("resuming from checkpoint", 1, 20), "no resume (log %s)", dlog);
    ck_assert(last_line(dlog, "resuming from checkpoint", NULL, line, sizeof line));
    ck_assert_msg(strtol(strstr(line, "checkpoint ") + 11, NULL, 10) == seq - 1,
                  "resumed from %s, not from %ld", line, seq - 1);
    ck_assert_msg(last_line(dlog, "skipped", "shard-1.ckpt", line, sizeof line) &&
                      strstr(line, "shard 1") && strstr(line, "CRC32 mismatch"),
                  "the corrupt shard file is not named (log %s)", dlog);
    workers_signal(SIGCONT);

    /* the newest coordinator file cut short */
    seq = kill_with_two(1);
    snprintf(path, sizeof path, "%s/checkpoints/mf-synth/%ld/coord.ckpt", cl.dir, seq);
    ck_assert_int_eq(stat(path, &sb), 0);
    ck_assert_int_eq(truncate(path, sb.st_size - 7), 0);
    ck_assert_int_eq(mlt_test_restart(&cl, 0), 0);
    ck_assert_msg(wait_log("resuming from checkpoint", 2, 20), "no resume (log %s)", dlog);
    ck_assert(last_line(dlog, "resuming from checkpoint", NULL, line, sizeof line));
    ck_assert_msg(strtol(strstr(line, "checkpoint ") + 11, NULL, 10) == seq - 1,
                  "resumed from %s, not from %ld", line, seq - 1);
    ck_assert_msg(last_line(dlog, "skipped", "coord.ckpt", line, sizeof line),
                  "the cut coordinator file is not named (log %s)", dlog);
    workers_signal(SIGCONT);
    /* and the job goes on: a new checkpoint */
    int base = count_lines(dlog, "written at clock");
    ck_assert_msg(wait_log("written at clock", base + 1, 30), "no checkpoint after the resume");

    /* every shard-1 file damaged: nothing loads, and the job fails saying
     * which shard and file (it is not resumed again) */
    seq = kill_with_two(2);
    int damaged = 0;
    for (long k = seq; k > 0 && k > seq - 4; k--) {
        snprintf(path, sizeof path, "%s/checkpoints/mf-synth/%ld/shard-1.ckpt", cl.dir, k);
        if (stat(path, &sb) == 0 && truncate(path, sb.st_size / 2) == 0)
            damaged++;
    }
    ck_assert_int_ge(damaged, 2);
    ck_assert_int_eq(mlt_test_restart(&cl, 0), 0);
    ck_assert_msg(wait_log("' failed: cannot resume", 1, 20), "no failure (log %s)", dlog);
    ck_assert(last_line(dlog, "' failed: cannot resume", NULL, line, sizeof line));
    ck_assert_msg(strstr(line, "shard 1") && strstr(line, "shard-1.ckpt"), "%s", line);
    workers_signal(SIGCONT);
    wait_end(line, sizeof line, 30);
    ck_assert_msg(strstr(line, "\"phase\":\"failed\"") && strstr(line, "shard-1.ckpt"), "%s", line);
    snprintf(path, sizeof path, "%s/checkpoints/job.resume", cl.dir);
    for (double end = now_s() + 10; now_s() < end && access(path, F_OK) == 0;)
        sleep_s(0.02); /* the record goes once the job's end is written */
    ck_assert_msg(access(path, F_OK) != 0, "a failed job is still to be resumed");
    /* (the workers rejoin a daemon with no job; teardown ends them) */
}
END_TEST

/* Line number (1-based) in path of the first line with a and b (b may be
 * NULL) at or after line `from`, or 0. */
static int line_no(const char *path, const char *a, const char *b, int from)
{
    FILE *f = fopen(path, "r");
    if (!f)
        return 0;
    char line[4096];
    int n = 0, found = 0;
    while (!found && fgets(line, sizeof line, f))
        if (++n >= from && strstr(line, a) && (!b || strstr(line, b)))
            found = n;
    fclose(f);
    return found;
}

/* Submits the job and, once training has begun (a checkpoint after the
 * first search's commit), stops the workers (SIGSTOP) so that it cannot end
 * before the test kills shard 1. */
static void shard_job(const char *const *more)
{
    ck_assert_int_eq(mlt_test_start_workers(&cl, 2), 0);
    submit(more);
    char dlog[400], line[4096];
    daemon_log(0, dlog, sizeof dlog);
    ck_assert_msg(wait_log("checkpoint 1 written", 1, 30), "no checkpoint (log %s)", dlog);
    workers_signal(SIGSTOP);
    sleep_s(0.2);
    ck_assert_msg(!last_line(plog_path, "\"event\":\"end\"", NULL, line, sizeof line),
                  "the job ended before the kill: %s", line);
}

START_TEST(test_shard_back)
{
    const char *const more[] = {"tuner.retune_tests=0", "tuner.plateau_t=0", "stop.target_rmse=0.9",
                                "stop.max_epochs=400", "worker_wait_s=20", NULL};
    shard_job(more);
    char dlog[400], line[4096];
    daemon_log(0, dlog, sizeof dlog);
    double t0 = now_s();
    ck_assert_int_eq(mlt_test_kill9(&cl, 1), 0);
    sleep_s(0.3);
    ck_assert_int_eq(mlt_test_restart(&cl, 1), 0);
    workers_signal(SIGCONT); /* their clients find shard 1's connection closed */
    ck_assert_msg(wait_log("resuming from checkpoint", 1, 30), "no resume (log %s)", dlog);
    int lost = line_no(dlog, "shard 1 (", "lost", 1);
    ck_assert_msg(lost > 0, "daemon 0 did not say shard 1 was lost (log %s)", dlog);
    int back = line_no(dlog, "shard 1 (", "answers again", lost);
    ck_assert_msg(back > lost, "daemon 0 did not say shard 1 answers again (log %s)", dlog);
    int resumed = line_no(dlog, "resuming from checkpoint", NULL, back);
    ck_assert_msg(resumed > back, "no resume after shard 1 came back (log %s)", dlog);
    ck_assert(last_line(dlog, "resuming from checkpoint", NULL, line, sizeof line));
    long seq = strtol(strstr(line, "checkpoint ") + 11, NULL, 10);
    ck_assert_msg(seq >= 1, "resumed from checkpoint %ld: %s", seq, line);
    wait_end(line, sizeof line, 60);
    ck_assert_msg(strstr(line, "\"phase\":\"done\"") && strstr(line, "reached the target"),
                  "the job did not reach its target after shard 1 came back: %s (log %s)", line,
                  dlog);
    fprintf(stderr, "shard 1 killed and back: resumed from checkpoint %ld, done %.1f s later\n",
            seq, now_s() - t0);
    ck_assert_int_eq(mlt_test_wait_workers(&cl, 30), 0);
    double e_end = jdbl(line, "epoch");
    ck_assert(last_line(plog_path, "\"event\":\"resume\"", NULL, line, sizeof line));
    ck_assert_msg(jint(line, "shard") == 1 && jint(line, "checkpoint") == seq, "%s", line);
    ck_assert_msg(e_end > jdbl(line, "epoch"), "no training after the resume at %s (end epoch %g)",
                  line, e_end);
    int lost_at = line_no(dlog_path, "\"event\":\"shard_lost\"", NULL, 1);
    ck_assert_msg(lost_at > 0, "decisions.jsonl has no shard_lost line");
    ck_assert_msg(line_no(dlog_path, "\"event\":\"resume\"", NULL, lost_at) == lost_at + 1,
                  "the tuner's resume does not follow the shard_lost line");
    check_lines(dlog_path);
    check_lines(plog_path);
}
END_TEST

START_TEST(test_shard_gone)
{
    const char *const more[] = {"stop.target_rmse=0", "stop.max_epochs=100000", "worker_wait_s=4",
                                NULL};
    shard_job(more);
    char dlog[400], line[4096];
    daemon_log(0, dlog, sizeof dlog);
    double t0 = now_s();
    ck_assert_int_eq(mlt_test_kill9(&cl, 1), 0);
    workers_signal(SIGCONT);
    wait_end(line, sizeof line, 30); /* does not hang: 4 s of worker_wait_s, and the rest */
    double took = now_s() - t0;
    ck_assert_msg(strstr(line, "\"phase\":\"failed\"") && strstr(line, "shard 1") &&
                      strstr(line, "worker_wait_s = 4"),
                  "%s (log %s)", line, dlog);
    ck_assert_msg(took >= 4.0, "failed after %.1f s, before worker_wait_s", took);
    ck_assert_msg(last_line(dlog, "' failed: shard 1", NULL, line, sizeof line), "log %s", dlog);
    fprintf(stderr, "shard 1 killed, not back: the job failed %.1f s later\n", took);
    check_lines(plog_path);
    /* the job's branches stayed on shard 0; shard 1 back, the same job again
     * starts clean and trains (no "branch 1 exists", no EBUSY) */
    ck_assert_int_eq(mlt_test_wait_workers(&cl, 30), 0);
    ck_assert_int_eq(mlt_test_restart(&cl, 1), 0);
    int base = count_lines(dlog, "checkpoint 1 written");
    ck_assert_int_eq(mlt_test_start_workers(&cl, 2), 0);
    submit(more);
    ck_assert_msg(wait_log("checkpoint 1 written", base + 1, 30), "the next job did not train (log %s)",
                  dlog);
    const char *stop[] = {"daemon/mltunerctl", "-c", cl.control, "stop", NULL};
    char out[4096];
    ck_assert_msg(mlt_test_run(stop, out, sizeof out) == 0, "stop: %s", out);
    for (double end = now_s() + 30; now_s() < end; sleep_s(0.05))
        if (last_line(plog_path, "\"event\":\"end\"", NULL, line, sizeof line) &&
            !strstr(line, "\"phase\":\"failed\""))
            break;
    ck_assert_msg(strstr(line, "\"phase\":\"stopped\""), "%s", line);
}
END_TEST

START_TEST(test_shard_early)
{
    /* no checkpoint (checkpoint_interval_s = 0): nothing to resume from */
    const char *const more[] = {"stop.target_rmse=0", "stop.max_epochs=100000",
                                "checkpoint_interval_s=0", NULL};
    ck_assert_int_eq(mlt_test_start_workers(&cl, 2), 0);
    submit(more);
    char line[4096];
    for (double end = now_s() + 30;
         now_s() < end && !last_line(plog_path, "\"event\":\"clock\"", NULL, line, sizeof line);)
        sleep_s(0.01);
    ck_assert_msg(last_line(plog_path, "\"event\":\"clock\"", NULL, line, sizeof line),
                  "the job did not start training");
    ck_assert_int_eq(mlt_test_kill9(&cl, 1), 0);
    wait_end(line, sizeof line, 30);
    ck_assert_msg(strstr(line, "\"phase\":\"failed\"") && strstr(line, "shard 1") &&
                      strstr(line, "before the job's first checkpoint"),
                  "%s", line);
}
END_TEST

int main(void)
{
    Suite *s = suite_create("checkpoint");
    TCase *tc = tcase_create("one-shard");
    tcase_add_checked_fixture(tc, setup1, teardown);
    tcase_set_timeout(tc, 180);
    tcase_add_test(tc, test_resume);
    tcase_add_test(tc, test_kills);
    tcase_add_test(tc, test_mid_interval);
    tcase_add_test(tc, test_refusals);
    suite_add_tcase(s, tc);
    tc = tcase_create("two-shards");
    tcase_add_checked_fixture(tc, setup2, teardown);
    tcase_set_timeout(tc, 180);
    tcase_add_test(tc, test_corrupt);
    suite_add_tcase(s, tc);
    tc = tcase_create("shard-loss");
    tcase_add_checked_fixture(tc, setup2, teardown);
    tcase_set_timeout(tc, 120);
    tcase_add_test(tc, test_shard_back);
    tcase_add_test(tc, test_shard_gone);
    tcase_add_test(tc, test_shard_early);
    suite_add_tcase(s, tc);
    return mlt_test_run_suite(s);
}
