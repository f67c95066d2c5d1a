/* check_safepath.c - Check suite for where and how the daemon writes a job's
 * files: common/safepath (paths inside state_dir, opened without following
 * links), common/outfile (a write error kept, not lost) and the log's
 * escaping of control bytes (common/log: mlt_log_escape).
 *
 * "rel": relative paths taken (normalised), absolute ones only inside the
 * base (spelt as given or through its real path), "..", control bytes,
 * absolute paths elsewhere and overlong ones refused with the key and value
 * in the message. "open": directories made component by component; a
 * symbolic link as a directory or as the file refused, the link's target
 * untouched; a FIFO, a directory and a file with a second hard link refused;
 * a plain file truncated. "outfile": a write past RLIMIT_FSIZE (EFBIG) is
 * kept as the file's error, reported by flush and close, the part of the
 * failed write that got through is taken back, and nothing is written after
 * it. "log": newlines and escape sequences escaped. */
#include "common/log.h"
#include "common/outfile.h"
#include "common/safepath.h"

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

static char dir[64];
static int dfd = -1;

static void setup(void)
{
    snprintf(dir, sizeof dir, "/tmp/check_safepath.XXXXXX");
    ck_assert_ptr_nonnull(mkdtemp(dir));
    dfd = open(dir, O_RDONLY | O_DIRECTORY);
    ck_assert_int_ge(dfd, 0);
}

static void teardown(void)
{
    char cmd[128];
    close(dfd);
    snprintf(cmd, sizeof cmd, "rm -rf %s", dir);
    ck_assert_int_eq(system(cmd), 0);
}

static void write_text(const char *name, const char *text)
{
    char path[256];
    snprintf(path, sizeof path, "%s/%s", dir, name);
    FILE *f = fopen(path, "w");
    ck_assert_ptr_nonnull(f);
    fputs(text, f);
    fclose(f);
}

static void assert_text(const char *name, const char *text)
{
    char path[256], buf[256] = "";
    snprintf(path, sizeof path, "%s/%s", dir, name);
    FILE *f = fopen(path, "r");
    ck_assert_ptr_nonnull(f);
    size_t n = fread(buf, 1, sizeof buf - 1, f);
    buf[n] = '\0';
    fclose(f);
    ck_assert_str_eq(buf, text);
}

static void rel_ok(const char *path, const char *base, const char *want)
{
    char rel[MLT_SAFEPATH_MAX + 1], why[512] = "";
    int rc = mlt_safepath_rel("output_dir", path, base, rel, sizeof rel, why, sizeof why);
    ck_assert_msg(rc == 0, "%s in %s: %s", path, base, why);
    ck_assert_str_eq(rel, want);
}

static void rel_bad(const char *path, const char *base, const char *word)
{
    char rel[MLT_SAFEPATH_MAX + 1], why[2048] = "";
    int rc = mlt_safepath_rel("--out", path, base, rel, sizeof rel, why, sizeof why);
    ck_assert_int_eq(rc, -EINVAL);
    ck_assert_msg(strstr(why, "--out") && strstr(why, word), "\"%s\": %s", path, why);
}

START_TEST(test_rel)
{
    rel_ok("out/fmnist-mlp", "/var/lib/mltuner", "out/fmnist-mlp");
    rel_ok("./a//b/", "/var/lib/mltuner", "a/b");
    rel_ok(".", "/var/lib/mltuner", "");
    rel_ok("/var/lib/mltuner/out/x", "/var/lib/mltuner", "out/x");
    rel_ok("/var/lib/mltuner", "/var/lib/mltuner/", "");
    rel_ok("//var/lib//mltuner/./x/", "/var/lib/mltuner", "x");
    rel_ok("/anything/x", "/", "anything/x");
    rel_ok("a..b/..c", "/s", "a..b/..c"); /* ".." only as a whole component */
    /* the base through a symbolic link: its real path counts too */
    char link[128], real[128];
    snprintf(link, sizeof link, "%s/state-link", dir);
    ck_assert_int_eq(symlink(dir, link), 0);
    snprintf(real, sizeof real, "%s/job1", dir);
    rel_ok(real, link, "job1");

    rel_bad("/etc", "/var/lib/mltuner", "\"/etc\" is an absolute path outside state_dir");
    rel_bad("/var/lib/mltuner-other/x", "/var/lib/mltuner", "outside state_dir");
    rel_bad("/var/lib", "/var/lib/mltuner", "outside state_dir");
    rel_bad("../..", "/var/lib/mltuner", "'..'");
    rel_bad("out/../../etc", "/var/lib/mltuner", "'..'");
    rel_bad("/var/lib/mltuner/../../etc", "/var/lib/mltuner", "'..'");
    rel_bad("out/..", "/var/lib/mltuner", "'..'");
    rel_bad("a\nb", "/s",
            "\"a\\u000ab\" must not contain control characters (byte 0x0a at "
            "offset 1)");
    rel_bad("a\x1b[2Jb", "/s", "byte 0x1b");
    rel_bad("a\x7f", "/s", "control characters");
    char longp[MLT_SAFEPATH_MAX + 10];
    memset(longp, 'a', sizeof longp - 1);
    longp[sizeof longp - 1] = '\0';
    rel_bad(longp, "/s", "longer than");
    char comp[300];
    memset(comp, 'c', sizeof comp - 1);
    comp[sizeof comp - 1] = '\0';
    rel_bad(comp, "/s", "component longer");
}
END_TEST

START_TEST(test_mkdirs)
{
    int fd = mlt_safepath_mkdirs(dfd, "a/b/c");
    ck_assert_int_ge(fd, 0);
    struct stat st;
    ck_assert_int_eq(fstat(fd, &st), 0);
    ck_assert(S_ISDIR(st.st_mode));
    close(fd);
    fd = mlt_safepath_mkdirs(dfd, "a/b"); /* existing */
    ck_assert_int_ge(fd, 0);
    close(fd);
    fd = mlt_safepath_mkdirs(dfd, ""); /* the base itself */
    ck_assert_int_ge(fd, 0);
    close(fd);
    /* a link as a component, to a directory outside: refused, nothing made there */
    char outside[128], path[256];
    snprintf(outside, sizeof outside, "%s/outside", dir);
    ck_assert_int_eq(mkdir(outside, 0755), 0);
    snprintf(path, sizeof path, "%s/a/ln", dir);
    ck_assert_int_eq(symlink(outside, path), 0);
    ck_assert_int_eq(mlt_safepath_mkdirs(dfd, "a/ln/x"), -ELOOP);
    ck_assert_int_eq(mlt_safepath_mkdirs(dfd, "a/ln"), -ELOOP);
    snprintf(path, sizeof path, "%s/x", outside);
    ck_assert_int_ne(access(path, F_OK), 0);
    write_text("a/file", "x");
    ck_assert_int_eq(mlt_safepath_mkdirs(dfd, "a/file/y"), -ENOTDIR);
    ck_assert_int_eq(mlt_safepath_mkdirs(dfd, "a/../b"), -EINVAL);
    ck_assert_str_eq(mlt_safepath_strerror(-ELOOP), "a symbolic link, refused");
}
END_TEST

START_TEST(test_create)
{
    int fd = mlt_safepath_create(dfd, "new.jsonl");
    ck_assert_int_ge(fd, 0);
    ck_assert_int_eq(write(fd, "hello\n", 6), 6);
    close(fd);
    assert_text("new.jsonl", "hello\n");
    fd = mlt_safepath_create(dfd, "new.jsonl"); /* a plain file: truncated */
    ck_assert_int_ge(fd, 0);
    close(fd);
    assert_text("new.jsonl", "");

    /* a link planted as the file: refused, its target keeps its text */
    char target[128], path[256];
    write_text("target", "precious\n");
    snprintf(target, sizeof target, "%s/target", dir);
    snprintf(path, sizeof path, "%s/progress.jsonl", dir);
    ck_assert_int_eq(symlink(target, path), 0);
    ck_assert_int_eq(mlt_safepath_create(dfd, "progress.jsonl"), -ELOOP);
    assert_text("target", "precious\n");
    /* a dangling link: not followed to create its target */
    snprintf(path, sizeof path, "%s/decisions.jsonl", dir);
    snprintf(target, sizeof target, "%s/made", dir);
    ck_assert_int_eq(symlink(target, path), 0);
    ck_assert_int_eq(mlt_safepath_create(dfd, "decisions.jsonl"), -ELOOP);
    ck_assert_int_ne(access(target, F_OK), 0);
    /* a second hard link: writing would change the other name's file */
    snprintf(target, sizeof target, "%s/target", dir);
    snprintf(path, sizeof path, "%s/job.conf", dir);
    ck_assert_int_eq(link(target, path), 0);
    ck_assert_int_eq(mlt_safepath_create(dfd, "job.conf"), -EMLINK);
    assert_text("target", "precious\n");
    /* a FIFO (no reader: must not block) and a directory */
    snprintf(path, sizeof path, "%s/fifo", dir);
    ck_assert_int_eq(mkfifo(path, 0644), 0);
    int rc = mlt_safepath_create(dfd, "fifo");
    ck_assert_msg(rc == -ENXIO || rc == -EINVAL, "%d", rc);
    snprintf(path, sizeof path, "%s/sub", dir);
    ck_assert_int_eq(mkdir(path, 0755), 0);
    rc = mlt_safepath_create(dfd, "sub");
    ck_assert_msg(rc == -EISDIR || rc == -EINVAL, "%d", rc);
    ck_assert_str_eq(mlt_safepath_strerror(rc), "not a plain file, refused");
    ck_assert_int_eq(mlt_safepath_create(dfd, "a/b"), -EINVAL);
    ck_assert_int_eq(mlt_safepath_create(dfd, ".."), -EINVAL);
}
END_TEST

START_TEST(test_outfile_ok)
{
    int rc = 1;
    mlt_outfile_t *o = mlt_outfile_open(dfd, "p.jsonl", &rc);
    ck_assert_ptr_nonnull(o);
    ck_assert_int_eq(rc, 0);
    ck_assert_str_eq(mlt_outfile_name(o), "p.jsonl");
    fprintf(mlt_outfile_stream(o), "{\"a\":%d}\n", 1);
    ck_assert_int_eq(mlt_outfile_flush(o), 0);
    ck_assert_int_eq(mlt_outfile_close(&o), 0);
    ck_assert_ptr_null(o);
    ck_assert_int_eq(mlt_outfile_close(&o), 0); /* NULL accepted */
    assert_text("p.jsonl", "{\"a\":1}\n");
    char path[256];
    snprintf(path, sizeof path, "%s/ln", dir);
    ck_assert_int_eq(symlink("/etc/passwd", path), 0);
    ck_assert_ptr_null(mlt_outfile_open(dfd, "ln", &rc));
    ck_assert_int_eq(rc, -ELOOP);
}
END_TEST

/* Check runs each test in its own process: the limit ends with it. */
START_TEST(test_outfile_efbig)
{
    signal(SIGXFSZ, SIG_IGN);
    struct rlimit rl = {.rlim_cur = 100, .rlim_max = RLIM_INFINITY};
    ck_assert_int_eq(setrlimit(RLIMIT_FSIZE, &rl), 0);
    int rc = 1;
    mlt_outfile_t *o = mlt_outfile_open(dfd, "big.jsonl", &rc);
    ck_assert_ptr_nonnull(o);
    char line[41];
    memset(line, 'x', 39);
    line[39] = '\n';
    line[40] = '\0';
    fputs(line, mlt_outfile_stream(o));
    ck_assert_int_eq(mlt_outfile_flush(o), 0);
    fputs(line, mlt_outfile_stream(o));
    fputs(line, mlt_outfile_stream(o)); /* 120 bytes: past the limit */
    ck_assert_int_eq(mlt_outfile_flush(o), -EFBIG);
    ck_assert_int_eq(mlt_outfile_error(o), -EFBIG);
    fputs("more\n", mlt_outfile_stream(o));
    ck_assert_int_eq(mlt_outfile_close(&o), -EFBIG);
    struct stat st;
    char path[256];
    snprintf(path, sizeof path, "%s/big.jsonl", dir);
    ck_assert_int_eq(stat(path, &st), 0);
    ck_assert_int_eq(st.st_size, 40); /* the cut write taken back: whole lines only */
}
END_TEST

START_TEST(test_log_escape)
{
    char b[64];
    mlt_log_escape(b, sizeof b, "job 'a\nFORGED line'");
    ck_assert_str_eq(b, "job 'a\\nFORGED line'");
    mlt_log_escape(b, sizeof b, "\x1b[2J\r\t\x7f ok é");
    ck_assert_str_eq(b, "\\x1b[2J\\r\\t\\x7f ok é");
    char s[8];
    mlt_log_escape(s, sizeof s, "\x01\x01\x01");
    ck_assert_str_eq(s, "\\x01"); /* cut short, never mid-escape */
}
END_TEST

static Suite *suite(void)
{
    Suite *s = suite_create("safepath");
    TCase *tc = tcase_create("rel");
    tcase_add_checked_fixture(tc, setup, teardown);
    tcase_add_test(tc, test_rel);
    suite_add_tcase(s, tc);
    tc = tcase_create("open");
    tcase_add_checked_fixture(tc, setup, teardown);
    tcase_add_test(tc, test_mkdirs);
    tcase_add_test(tc, test_create);
    suite_add_tcase(s, tc);
    tc = tcase_create("outfile");
    tcase_add_checked_fixture(tc, setup, teardown);
    tcase_add_test(tc, test_outfile_ok);
    tcase_add_test(tc, test_outfile_efbig);
    suite_add_tcase(s, tc);
    tc = tcase_create("log");
    tcase_add_test(tc, test_log_escape);
    suite_add_tcase(s, tc);
    return s;
}

int main(void)
{
    SRunner *sr = srunner_create(suite());
    srunner_run_all(sr, CK_NORMAL);
    int failed = srunner_ntests_failed(sr);
    srunner_free(sr);
    return failed ? EXIT_FAILURE : EXIT_SUCCESS;
}
