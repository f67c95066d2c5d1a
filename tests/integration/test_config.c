/* test_config.c - the real mltunerd started with a bad config file (-c FILE)
 * exits non-zero at once, with one message naming the file, the line and the
 * key: a syntax error, an unknown key, a wrong type, a value out of range, a
 * bad enum or size, a duplicate key, a missing file. A good file, started the
 * same way, serves (it writes its endpoint file), so the refusals are the
 * file's doing. "At once" is the generous bound "exits within 10 s"; a daemon
 * still running then is killed and fails the test. */
#include <check.h>
#include <fcntl.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "tests/integration/suite_main.h"

static char dir[64];

static void setup(void)
{
    snprintf(dir, sizeof dir, "/tmp/mlt-config-XXXXXX");
    ck_assert_ptr_nonnull(mkdtemp(dir));
}

static void teardown(void)
{
    char cmd[128];
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", dir);
    ck_assert_int_eq(system(cmd), 0);
}

static void write_conf(const char *name, const char *text, char *path, size_t pathlen)
{
    snprintf(path, pathlen, "%s/%s", dir, name);
    FILE *f = fopen(path, "w");
    ck_assert_ptr_nonnull(f);
    ck_assert_int_eq(fputs(text, f) >= 0, 1);
    ck_assert_int_eq(fclose(f), 0);
}

/* Starts mltunerd -c conf on loopback port 0 with its state in dir. Waits up
 * to 10 s for it to exit (*exited 1, *status its wait status) or, when
 * endpoint_file is not NULL, to write that file (it serves: SIGTERM, wait).
 * stderr goes to out. */
static void run_daemon(const char *conf, const char *endpoint_file, int *exited, int *status,
                       char *out, size_t outlen)
{
    const char *root = getenv("MLT_BUILD_ROOT");
    char bin[512], log[128], sdir[128], epf[160], ctlf[160];
    snprintf(bin, sizeof bin, "%s/daemon/mltunerd", root ? root : "build");
    snprintf(log, sizeof log, "%s/stderr.log", dir);
    snprintf(sdir, sizeof sdir, "state_dir=%s", dir);
    snprintf(epf, sizeof epf, "%s", endpoint_file ? endpoint_file : "");
    snprintf(ctlf, sizeof ctlf, "control_endpoint_file=%s/control", dir);
    pid_t parent = getpid();
    pid_t pid = fork();
    ck_assert_int_ge(pid, 0);
    if (pid == 0) {
        if (prctl(PR_SET_PDEATHSIG, SIGKILL) != 0 || getppid() != parent)
            _exit(127);
        int fd = open(log, O_WRONLY | O_CREAT | O_TRUNC, 0644);
        if (fd >= 0) {
            dup2(fd, 2);
            dup2(fd, 1);
            close(fd);
        }
        const char *argv[] = {bin,
                              "-c",
                              conf,
                              "--bind",
                              "tcp://127.0.0.1:0",
                              "--set",
                              "control_bind=tcp://127.0.0.1:0",
                              "--set",
                              ctlf,
                              "--set",
                              sdir,
                              endpoint_file ? "--endpoint-file" : NULL,
                              epf,
                              NULL};
        execv(bin, (char *const *)argv);
        _exit(127);
    }
    *exited = 0;
    int served = 0;
    for (int t = 0; t < 1000 && !*exited && !served; t++) {
        if (waitpid(pid, status, WNOHANG) == pid)
            *exited = 1;
        else if (endpoint_file && access(endpoint_file, R_OK) == 0)
            served = 1;
        else
            nanosleep(&(struct timespec){0, 10 * 1000000L}, NULL);
    }
    if (!*exited) {
        kill(pid, served ? SIGTERM : SIGKILL);
        waitpid(pid, status, 0);
    }
    FILE *f = fopen(log, "r");
    size_t n = f ? fread(out, 1, outlen - 1, f) : 0;
    out[n] = '\0';
    if (f)
        fclose(f);
}

/* conf text must be refused: exit status 2 within 10 s, with one line that
 * names the file, then each of the given fragments (line, key, value). */
static void refused(const char *name, const char *text, const char *const *want)
{
    char conf[128], out[2048];
    if (text)
        write_conf(name, text, conf, sizeof conf);
    else
        snprintf(conf, sizeof conf, "%s/%s", dir, name); /* never written */
    int exited, st;
    run_daemon(conf, NULL, &exited, &st, out, sizeof out);
    ck_assert_msg(exited, "%s: mltunerd still running 10 s after start with a bad config:\n%s",
                  name, out);
    ck_assert_msg(WIFEXITED(st) && WEXITSTATUS(st) == 2, "%s: mltunerd ended with status 0x%x:\n%s",
                  name, st, out);
    char head[256];
    snprintf(head, sizeof head, "mltunerd: %s", conf);
    ck_assert_msg(strncmp(out, head, strlen(head)) == 0, "%s: message does not name the file:\n%s",
                  name, out);
    ck_assert_msg(strchr(out, '\n') == out + strlen(out) - 1, "%s: not one line:\n%s", name, out);
    for (int i = 0; want[i]; i++)
        ck_assert_msg(strstr(out, want[i]) != NULL, "%s: message lacks '%s':\n%s", name, want[i],
                      out);
}

START_TEST(test_good_file_serves)
{
    char conf[128], epf[128], out[2048];
    write_conf("good.conf", "rank = 0;\nn_servers = 1;\nlog_level = \"info\";\n", conf,
               sizeof conf);
    snprintf(epf, sizeof epf, "%s/endpoint", dir);
    int exited, st;
    run_daemon(conf, epf, &exited, &st, out, sizeof out);
    ck_assert_msg(!exited, "mltunerd exited (status 0x%x) with a good config:\n%s", st, out);
    ck_assert_msg(WIFEXITED(st) && WEXITSTATUS(st) == 0, "SIGTERM: status 0x%x\n%s", st, out);
}
END_TEST

START_TEST(test_syntax_error)
{
    refused("syntax.conf", "rank = 0;\nstate_dir = \"/tmp\"\nlog_level = ;\n",
            (const char *const[]){":3:", "syntax error", NULL});
}
END_TEST

START_TEST(test_unknown_key)
{
    refused("unknown.conf", "rank = 0;\n\n# a comment\nshard_count = 2;\n",
            (const char *const[]){":4:", "unknown key", "shard_count", NULL});
}
END_TEST

START_TEST(test_unknown_group)
{
    refused("group.conf", "rank = 0;\nmetrics = { port = 1; };\n",
            (const char *const[]){":2:", "metrics", NULL});
}
END_TEST

START_TEST(test_wrong_type)
{
    refused("type.conf", "rank = 0;\n\nn_servers = \"two\";\n",
            (const char *const[]){":3:", "n_servers", "integer", NULL});
}
END_TEST

START_TEST(test_out_of_range)
{
    refused("range.conf", "rank = 0;\nn_servers = 100000;\n",
            (const char *const[]){":2:", "n_servers", "100000", NULL});
}
END_TEST

START_TEST(test_bad_enum)
{
    refused("enum.conf", "log_level = \"loud\";\n",
            (const char *const[]){":1:", "log_level", "loud", NULL});
}
END_TEST

START_TEST(test_duplicate_key)
{
    refused("dup.conf", "rank = 0;\nrank = 0;\n", (const char *const[]){":2:", "duplicate", NULL});
}
END_TEST

START_TEST(test_bad_size)
{
    refused("size.conf", "memory_limit = \"12Q\";\n",
            (const char *const[]){":1:", "memory_limit", "12Q", NULL});
}
END_TEST

START_TEST(test_missing_file)
{
    refused("missing.conf", NULL, (const char *const[]){"No such file", NULL});
}
END_TEST

static Suite *suite(void)
{
    Suite *s = suite_create("config-file");
    TCase *tc = tcase_create("refused");
    tcase_add_checked_fixture(tc, setup, teardown);
    tcase_set_timeout(tc, 60);
    tcase_add_test(tc, test_good_file_serves);
    tcase_add_test(tc, test_syntax_error);
    tcase_add_test(tc, test_unknown_key);
    tcase_add_test(tc, test_unknown_group);
    tcase_add_test(tc, test_wrong_type);
    tcase_add_test(tc, test_out_of_range);
    tcase_add_test(tc, test_bad_enum);
    tcase_add_test(tc, test_duplicate_key);
    tcase_add_test(tc, test_bad_size);
    tcase_add_test(tc, test_missing_file);
    suite_add_tcase(s, tc);
    return s;
}

int main(void)
{
    return mlt_test_run_suite(suite());
}
