/* test_harness.c - the harness's processes die with the test that started
 * them (harness.c, "process lifetime").
 *
 * A test that fails ends without reaching mlt_test_stop. Here inner Check
 * tests each start a real mltunerd and a real mltuner-worker through the
 * harness, write their pids to a file and then end badly, each in its own
 * runner process (a child of this program):
 *   fork-assertion    Check's fork mode, a failed assertion
 *   fork-timeout      fork mode, the test killed by Check's 2 s timeout
 *   nofork-assertion  CK_FORK=no mode (as under a debugger or valgrind): the
 *                     failure longjmps past the test, the runner exits
 *   nofork-abort      no fork, abort(): the runner dies by SIGABRT, no
 *                     atexit handler runs
 * and this program checks that each ended as meant and that none of the
 * processes it started is still running 10 s later (by pid, with the
 * process's start time against pid reuse). In fork mode Check kills the
 * test's process group itself; the two no-fork cases leaked before the
 * harness's fix (atexit kill + PR_SET_PDEATHSIG). This program is a
 * subreaper, so orphans come back to it and are reaped here, not left to
 * PID 1. Not a Check suite itself: the inner failures are the expected
 * outcome, so main() judges them. Exits 0 when every check held, 1 otherwise
 * (then it kills what leaked). */
#include <check.h>
#include <errno.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "tests/integration/harness.h"

static char pid_dir[64];

/* Field 22 of /proc/PID/stat (start time in clock ticks) and the state
 * letter; 0 when the process is gone. */
static unsigned long long proc_start(pid_t pid, char *state)
{
    char path[64], buf[1024];
    snprintf(path, sizeof path, "/proc/%d/stat", (int)pid);
    FILE *f = fopen(path, "r");
    if (!f)
        return 0;
    size_t n = fread(buf, 1, sizeof buf - 1, f);
    fclose(f);
    buf[n] = '\0';
    const char *p = strrchr(buf, ')'); /* the command may hold spaces */
    if (!p)
        return 0;
    unsigned long long start = 0;
    char st = '?';
    /* after ") ": state(3) then fields 4..21, then starttime(22) */
    if (sscanf(p + 2,
               "%c %*s %*s %*s %*s %*s %*s %*s %*s %*s %*s %*s %*s %*s %*s %*s %*s %*s %*s %llu",
               &st, &start) != 2)
        return 0;
    if (state)
        *state = st;
    return start;
}

/* Starts a daemon and a worker through the harness and records
 * "pid starttime" of each in pid_dir/<name>. */
static void start_and_record(const char *name)
{
    mlt_test_cluster_t c;
    ck_assert_int_eq(mlt_test_start(&c, 1, NULL), 0);
    ck_assert_int_eq(mlt_test_start_workers(&c, 1), 0);
    char path[128];
    snprintf(path, sizeof path, "%s/%s", pid_dir, name);
    FILE *f = fopen(path, "w");
    ck_assert_ptr_nonnull(f);
    fprintf(f, "%s\n", c.dir);
    fprintf(f, "%d %llu\n", (int)c.pids[0], proc_start(c.pids[0], NULL));
    fprintf(f, "%d %llu\n", (int)c.workers[0], proc_start(c.workers[0], NULL));
    fclose(f);
}

START_TEST(inner_assertion)
{
    start_and_record(getenv("MLT_HARNESS_CASE"));
    ck_assert_msg(0, "deliberate failure: the harness must not leave its processes behind");
}
END_TEST

START_TEST(inner_abort)
{
    start_and_record(getenv("MLT_HARNESS_CASE"));
    abort(); /* no atexit handler: only PR_SET_PDEATHSIG can help */
}
END_TEST

START_TEST(inner_timeout)
{
    start_and_record(getenv("MLT_HARNESS_CASE"));
    sleep(60); /* Check kills the test after the case's 2 s timeout */
}
END_TEST

static int failures;

static void bad(const char *fmt, ...) __attribute__((format(printf, 1, 2)));

static void bad(const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    fprintf(stderr, "FAIL: ");
    vfprintf(stderr, fmt, ap);
    fprintf(stderr, "\n");
    va_end(ap);
    failures++;
}

static void rm_rf(const char *dir)
{
    if (dir[0] != '/' || strncmp(dir, "/tmp/mlt-test-", 14) != 0)
        return;
    char cmd[300];
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", dir);
    if (system(cmd) != 0)
        fprintf(stderr, "could not remove %s\n", dir);
}

/* Checks the processes the inner case recorded are gone within 10 s. */
static void check_case(const char *name)
{
    char path[128], dir[300] = "";
    snprintf(path, sizeof path, "%s/%s", pid_dir, name);
    FILE *f = fopen(path, "r");
    if (!f) {
        bad("case %s recorded no pids (it failed before starting its processes?)", name);
        return;
    }
    if (fgets(dir, sizeof dir, f))
        dir[strcspn(dir, "\n")] = '\0';
    int pid;
    unsigned long long start;
    for (int k = 0; k < 2 && fscanf(f, "%d %llu", &pid, &start) == 2; k++) {
        const char *what = k == 0 ? "mltunerd" : "mltuner-worker";
        if (start == 0) {
            bad("case %s: the %s was not running when recorded", name, what);
            continue;
        }
        int gone = 0;
        for (int t = 0; t < 1000 && !gone; t++) {
            while (waitpid(-1, NULL, WNOHANG) > 0) /* reap the orphans we adopted */
                ;
            char st = '?';
            unsigned long long now = proc_start(pid, &st);
            gone = now != start || st == 'Z';
            if (!gone) {
                struct timespec ts = {0, 10 * 1000000L};
                nanosleep(&ts, NULL);
            }
        }
        if (!gone) {
            bad("case %s: %s pid %d still runs 10 s after its test ended", name, what, pid);
            kill(pid, SIGKILL); /* leave nothing behind ourselves */
        } else {
            printf("case %s: %s pid %d is gone\n", name, what, pid);
        }
    }
    fclose(f);
    unlink(path);
    rm_rf(dir);
}

typedef struct inner_case {
    const char *name;
    enum fork_status mode;
    const TTest *test;
    int timeout_s;   /* the tcase's timeout, 0: Check's default */
    int want_signal; /* the runner must die of this signal; 0: exit non-zero */
} inner_case_t;

/* In a runner process: runs one inner test, exits 1 if it failed. */
static void run_inner(const inner_case_t *ic)
{
    Suite *s = suite_create("harness-lifetime");
    TCase *tc = tcase_create(ic->name);
    if (ic->timeout_s)
        tcase_set_timeout(tc, ic->timeout_s);
    tcase_add_test(tc, ic->test);
    suite_add_tcase(s, tc);
    SRunner *sr = srunner_create(s);
    srunner_set_fork_status(sr, ic->mode);
    srunner_run_all(sr, CK_NORMAL);
    int failed = srunner_ntests_failed(sr);
    srunner_free(sr);
    exit(failed ? 1 : 0);
}

int main(void)
{
    signal(SIGPIPE, SIG_IGN);
    /* orphans of the runners and forked tests are re-parented here */
    if (prctl(PR_SET_CHILD_SUBREAPER, 1) != 0)
        perror("PR_SET_CHILD_SUBREAPER");
    snprintf(pid_dir, sizeof pid_dir, "/tmp/mlt-harness-XXXXXX");
    if (!mkdtemp(pid_dir)) {
        perror("mkdtemp");
        return 1;
    }
    const inner_case_t cases[] = {
        {"fork-assertion", CK_FORK, inner_assertion, 0, 0},
        {"fork-timeout", CK_FORK, inner_timeout, 2, 0},
        {"nofork-assertion", CK_NOFORK, inner_assertion, 0, 0},
        {"nofork-abort", CK_NOFORK, inner_abort, 0, SIGABRT},
    };
    printf("inner tests that end badly on purpose (their Check lines follow):\n");
    fflush(stdout);
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        const inner_case_t *ic = &cases[i];
        setenv("MLT_HARNESS_CASE", ic->name, 1);
        fflush(stdout); /* or the runner prints our buffer again */
        fflush(stderr);
        pid_t pid = fork();
        if (pid < 0) {
            perror("fork");
            return 1;
        }
        if (pid == 0)
            run_inner(ic);
        int st = 0;
        while (waitpid(pid, &st, 0) < 0 && errno == EINTR)
            ;
        /* the inner test failed: exit 1 (or, in a sanitizer build, whatever a
         * leak report at exit makes of it), never a clean 0 */
        if (ic->want_signal ? !(WIFSIGNALED(st) && WTERMSIG(st) == ic->want_signal)
                            : WIFEXITED(st) && WEXITSTATUS(st) == 0)
            bad("case %s: the runner ended with status 0x%x, not as meant", ic->name, st);
        check_case(ic->name);
    }
    rmdir(pid_dir);
    while (waitpid(-1, NULL, WNOHANG) > 0)
        ;
    printf("%s\n", failures ? "FAILED: the harness left processes behind"
                            : "every process the harness started died with its test");
    return failures ? 1 : 0;
}
