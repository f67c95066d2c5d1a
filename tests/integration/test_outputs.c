/* test_outputs.c - where the real mltunerd writes a job's files, and what it
 * does when it cannot.
 *
 * "paths": output directories outside state_dir (/etc, an absolute path
 * elsewhere, ../.., a '..' inside, a newline), by --out and by output_dir,
 * are refused at submit with the key and value named; the daemon keeps
 * serving and writes nothing there. "links": a symbolic link planted as
 * progress.jsonl, as decisions.jsonl or as a directory on the way fails the
 * job naming the file, and the link's target is untouched. "log": a job
 * file whose path holds a newline (and whose job name holds one) leaves one
 * escaped line in the daemon's log, no forged one. "full": a daemon whose files may not grow past
 * 16 KiB (RLIMIT_FSIZE, SIGXFSZ ignored: writes fail with EFBIG, as on a full disk) runs a small
 * job: it ends failed with "cannot write .../progress.jsonl: File too
 * large", and progress.jsonl ends at a whole line. "full-conf": the same
 * with 1 KiB, less than the job's job.conf: the job fails at once, naming
 * job.conf. */
#include <check.h>
#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <unistd.h>

#include "tests/integration/harness.h"
#include "tests/integration/suite_main.h"

#define FSIZE_LIMIT 16384 /* "full": more than job.conf (~2 KiB), less than the job's progress */
#define FSIZE_SMALL 1024  /* "full-conf": less than job.conf */

static mlt_test_cluster_t cl;
static char job_path[600], mf_path[600];

static void setup(void)
{
    ck_assert_int_eq(mlt_test_start(&cl, 1, NULL), 0);
    const char *src = getenv("MLT_SOURCE_ROOT");
    snprintf(job_path, sizeof job_path, "%s/conf/jobs/fmnist-mlp.conf", src ? src : ".");
    snprintf(mf_path, sizeof mf_path, "%s/conf/jobs/mf-synth.conf", src ? src : ".");
}

static void teardown(void)
{
    ck_assert_int_eq(mlt_test_stop(&cl), 0);
}

/* mltunerctl submit JOB [a1 a2 [a3 a4]] --set workers=1 [--wait]; output in out. */
static int submit(char *out, size_t len, const char *job, const char *a1, const char *a2,
                  const char *a3, const char *a4, int wait)
{
    const char *argv[16] = {"daemon/mltunerctl", "-c", cl.control, "submit", job, "--set",
                            "workers=1"};
    int n = 7;
    const char *const more[] = {a1, a2, a3, a4};
    for (int i = 0; i < 4 && more[i]; i++)
        argv[n++] = more[i];
    if (wait)
        argv[n++] = "--wait";
    argv[n] = NULL;
    return mlt_test_run(argv, out, len);
}

static int ctl(char *out, size_t len, const char *a1, const char *a2)
{
    const char *argv[] = {"daemon/mltunerctl", "-c", cl.control, a1, a2, NULL};
    return mlt_test_run(argv, out, len);
}

/* The daemon serves and runs no job. */
static void assert_idle(void)
{
    char out[4096];
    ck_assert_int_eq(ctl(out, sizeof out, "status", "--json"), 0);
    ck_assert_msg(strstr(out, "\"phase\":\"idle\"") || strstr(out, "\"phase\":\"failed\"") ||
                      strstr(out, "\"phase\":\"stopped\""),
                  "a job runs: %s", out);
}

static void write_text(const char *path, const char *text)
{
    FILE *f = fopen(path, "w");
    ck_assert_ptr_nonnull(f);
    fputs(text, f);
    fclose(f);
}

static void assert_text(const char *path, const char *text)
{
    char buf[256] = "";
    FILE *f = fopen(path, "r");
    ck_assert_ptr_nonnull(f);
    size_t n = fread(buf, 1, sizeof buf - 1, f);
    buf[n] = '\0';
    fclose(f);
    ck_assert_msg(strcmp(buf, text) == 0, "%s changed: \"%s\"", path, buf);
}

START_TEST(test_paths)
{
    static const struct {
        const char *key, *value, *word;
    } bad[] = {
        {"--out", "/etc", "\"/etc\" is an absolute path outside state_dir"},
        {"--out", "/tmp/mlt-elsewhere", "outside state_dir"},
        {"--out", "../..", "must not contain '..'"},
        {"--out", "out/../../x", "must not contain '..'"},
        {"--out", "a\nFORGED", "must not contain control characters (byte 0x0a"},
        {"output_dir", "/etc", "output_dir \"/etc\" is an absolute path outside"},
        {"output_dir", "../../etc", "output_dir \"../../etc\" must not contain '..'"},
    };
    int had_etc = access("/etc/progress.jsonl", F_OK) == 0;
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        char out[4096], set[300];
        int rc;
        if (strcmp(bad[i].key, "--out") == 0) {
            rc = submit(out, sizeof out, job_path, "--out", bad[i].value, NULL, NULL, 0);
        } else {
            snprintf(set, sizeof set, "output_dir=%s", bad[i].value);
            rc = submit(out, sizeof out, job_path, "--set", set, NULL, NULL, 0);
        }
        ck_assert_msg(rc != 0, "%s %s was accepted: %s", bad[i].key, bad[i].value, out);
        ck_assert_msg(strstr(out, bad[i].key) && strstr(out, bad[i].word),
                      "%s %s: the error does not say '%s': %s", bad[i].key, bad[i].value,
                      bad[i].word, out);
        assert_idle();
    }
    if (!had_etc)
        ck_assert_int_ne(access("/etc/progress.jsonl", F_OK), 0);
    /* inside state_dir, relative or absolute: taken (stopped at once, no workers) */
    char out[4096], abs[400];
    snprintf(abs, sizeof abs, "%s/out-abs", cl.dir);
    ck_assert_int_eq(submit(out, sizeof out, job_path, "--out", abs, NULL, NULL, 0), 0);
    ck_assert_int_eq(ctl(out, sizeof out, "status", "--json"), 0);
    ck_assert_msg(strstr(out, "out-abs\""), "%s", out);
    ck_assert_int_eq(ctl(out, sizeof out, "stop", NULL), 0);
    ck_assert_int_eq(ctl(out, sizeof out, "wait", NULL), 1);
    char path[500];
    snprintf(path, sizeof path, "%s/out-abs/progress.jsonl", cl.dir);
    ck_assert_int_eq(access(path, F_OK), 0);
}
END_TEST

/* Submits (no workers: a job whose outputs open fails at once) and returns
 * the ended job's status text. */
static void submit_fails(const char *outdir, const char *word)
{
    char out[4096];
    int rc = submit(out, sizeof out, job_path, "--out", outdir, NULL, NULL, 1);
    ck_assert_msg(rc != 0, "the job with outputs in %s did not fail: %s", outdir, out);
    ck_assert_msg(strstr(out, "failed") && strstr(out, word), "%s: not '%s': %s", outdir, word,
                  out);
    assert_idle();
}

START_TEST(test_links)
{
    char dir[400], target[400], path[500], word[600];
    snprintf(target, sizeof target, "%s/precious", cl.dir);
    write_text(target, "precious\n");
    /* progress.jsonl a link */
    snprintf(dir, sizeof dir, "%s/out-link", cl.dir);
    ck_assert_int_eq(mkdir(dir, 0755), 0);
    snprintf(path, sizeof path, "%s/progress.jsonl", dir);
    ck_assert_int_eq(symlink(target, path), 0);
    snprintf(word, sizeof word, "cannot write %s: a symbolic link, refused", path);
    submit_fails("out-link", word);
    assert_text(target, "precious\n");
    /* decisions.jsonl a link; progress.jsonl a plain file */
    ck_assert_int_eq(unlink(path), 0);
    snprintf(path, sizeof path, "%s/decisions.jsonl", dir);
    ck_assert_int_eq(symlink(target, path), 0);
    snprintf(word, sizeof word, "cannot write %s: a symbolic link, refused", path);
    submit_fails("out-link", word);
    assert_text(target, "precious\n");
    /* a directory on the way a link to one outside state_dir */
    char outside[400];
    snprintf(outside, sizeof outside, "%s-outside", cl.dir);
    ck_assert_int_eq(mkdir(outside, 0755), 0);
    snprintf(path, sizeof path, "%s/out-dirlink", cl.dir);
    ck_assert_int_eq(symlink(outside, path), 0);
    submit_fails("out-dirlink/job", "cannot create output directory");
    snprintf(path, sizeof path, "%s/job", outside);
    ck_assert_msg(access(path, F_OK) != 0, "%s was made through the link", path);
    rmdir(outside);
}
END_TEST

START_TEST(test_log)
{
    /* a job name with a newline is refused without being echoed; a job file
     * whose name holds one reaches the log in the refusal's text */
    char out[4096], job[400], path[400], line[2048];
    snprintf(job, sizeof job, "%s/bad\nFORGED line.conf", cl.dir);
    write_text(job, "name = \"a\\nFORGED name\";\n");
    ck_assert_int_ne(submit(out, sizeof out, job, NULL, NULL, NULL, NULL, 0), 0);
    ck_assert_msg(strstr(out, "name has a control character (0x0a)"), "%s", out);
    snprintf(path, sizeof path, "%s/daemon0.log", cl.dir);
    int found = 0;
    for (int tries = 0; tries < 50 && !found; tries++) { /* the log is written as it happens */
        FILE *f = fopen(path, "r");
        ck_assert_ptr_nonnull(f);
        while (fgets(line, sizeof line, f)) {
            ck_assert_msg(strncmp(line, "FORGED", 6) != 0, "a forged log line: %s", line);
            if (strstr(line, "refused") && strstr(line, "/bad\\nFORGED line.conf:1: name"))
                found = 1;
        }
        fclose(f);
        if (!found)
            usleep(100000);
    }
    char all[8192] = "";
    FILE *f = fopen(path, "r");
    size_t n = f ? fread(all, 1, sizeof all - 1, f) : 0;
    all[n] = '\0';
    if (f)
        fclose(f);
    ck_assert_msg(found, "no escaped refusal in %s:\n%s", path, all);
}
END_TEST

/* A daemon whose files may not grow past FSIZE_LIMIT bytes: the limit and
 * the ignored SIGXFSZ are inherited across fork and exec; the test process
 * takes its own back before it starts anything else. */
static rlim_t fsize_limit = FSIZE_LIMIT;

static void setup_full(void)
{
    struct rlimit old, rl;
    ck_assert_int_eq(getrlimit(RLIMIT_FSIZE, &old), 0);
    rl = old;
    rl.rlim_cur = fsize_limit;
    void (*prev)(int) = signal(SIGXFSZ, SIG_IGN);
    setenv("MLT_SHM", "0", 1); /* no shared-memory segments to size in that daemon */
    ck_assert_int_eq(setrlimit(RLIMIT_FSIZE, &rl), 0);
    int rc = mlt_test_start(&cl, 1, NULL);
    ck_assert_int_eq(setrlimit(RLIMIT_FSIZE, &old), 0);
    signal(SIGXFSZ, prev);
    ck_assert_int_eq(rc, 0);
    const char *src = getenv("MLT_SOURCE_ROOT");
    snprintf(job_path, sizeof job_path, "%s/conf/jobs/fmnist-mlp.conf", src ? src : ".");
    snprintf(mf_path, sizeof mf_path, "%s/conf/jobs/mf-synth.conf", src ? src : ".");
}

START_TEST(test_full)
{
    ck_assert_int_eq(mlt_test_start_workers(&cl, 1), 0);
    char out[4096];
    const char *argv[] = {"daemon/mltunerctl",
                          "-c",
                          cl.control,
                          "submit",
                          mf_path,
                          "--out",
                          "out-full",
                          "--set",
                          "workers=1",
                          "--set",
                          "tuner.logic=fixed",
                          "--set",
                          "data.synthetic.users=200",
                          "--set",
                          "data.synthetic.items=100",
                          "--set",
                          "data.synthetic.ratings=20000",
                          "--set",
                          "data.validation=500",
                          "--set",
                          "tunables.batch_size.default=128",
                          "--set",
                          "tunables.lr.default=1",
                          "--set",
                          "stop.max_epochs=40",
                          "--wait",
                          NULL};
    int rc = mlt_test_run(argv, out, sizeof out);
    char path[400];
    snprintf(path, sizeof path, "%s/out-full/progress.jsonl", cl.dir);
    ck_assert_msg(rc != 0, "the job with a full disk did not fail: %s", out);
    ck_assert_msg(strstr(out, "failed") && strstr(out, "cannot write") &&
                      strstr(out, "out-full/progress.jsonl: File too large"),
                  "not a write error naming progress.jsonl: %s", out);
    ck_assert_int_eq(mlt_test_wait_workers(&cl, 30), 0);
    struct stat st;
    ck_assert_int_eq(stat(path, &st), 0);
    ck_assert_int_le(st.st_size, FSIZE_LIMIT);
    ck_assert_int_gt(st.st_size, FSIZE_LIMIT / 2); /* it failed writing, not before */
    int fd = open(path, O_RDONLY);
    char last = 0;
    ck_assert_int_eq(pread(fd, &last, 1, st.st_size - 1), 1);
    close(fd);
    ck_assert_msg(last == '\n', "progress.jsonl ends in half a line");
    fprintf(stderr, "full: progress.jsonl %lld bytes; mltunerctl: %s", (long long)st.st_size, out);
    assert_idle();
}
END_TEST

/* The job.conf copy does not fit: the job fails at once, naming it. */
START_TEST(test_full_conf)
{
    char out[4096];
    int rc = submit(out, sizeof out, job_path, "--out", "out-conf", NULL, NULL, 1);
    ck_assert_msg(rc != 0, "the job with a full disk did not fail: %s", out);
    ck_assert_msg(strstr(out, "failed") && strstr(out, "out-conf/job.conf: File too large"),
                  "not a write error naming job.conf: %s", out);
    assert_idle();
}
END_TEST

static void setup_full_small(void)
{
    fsize_limit = FSIZE_SMALL;
    setup_full();
    fsize_limit = FSIZE_LIMIT;
}

static Suite *suite(void)
{
    Suite *s = suite_create("outputs");
    TCase *tc = tcase_create("paths");
    tcase_add_checked_fixture(tc, setup, teardown);
    tcase_add_test(tc, test_paths);
    tcase_add_test(tc, test_links);
    tcase_add_test(tc, test_log);
    tcase_set_timeout(tc, 60);
    suite_add_tcase(s, tc);
    tc = tcase_create("full");
    tcase_add_checked_fixture(tc, setup_full, teardown);
    tcase_add_test(tc, test_full);
    tcase_set_timeout(tc, 120);
    suite_add_tcase(s, tc);
    tc = tcase_create("full-conf");
    tcase_add_checked_fixture(tc, setup_full_small, teardown);
    tcase_add_test(tc, test_full_conf);
    tcase_set_timeout(tc, 30);
    tcase_set_timeout(tc, 120);
    suite_add_tcase(s, tc);
    return s;
}

int main(void)
{
    return mlt_test_run_suite(suite());
}
