/* check_curve.c - common/curve: key files made by mlt_curve_keygen load back;
 * a secret key readable by group or others, a file with two keys, a line that
 * is not a key, an over-long line, a bad name, a file over the size bound and
 * a missing file are refused with the file (and line) named; the allow-list
 * finds its keys by binary value; an existing key is never overwritten. */
#include <check.h>
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>
#include <zmq.h>

#include "common/curve.h"

static char dir[64];
static char err[512];

static void setup(void)
{
    snprintf(dir, sizeof dir, "/tmp/mlt-curve-XXXXXX");
    ck_assert_ptr_nonnull(mkdtemp(dir));
}

static void teardown(void)
{
    char cmd[128];
    snprintf(cmd, sizeof cmd, "rm -rf %s", dir);
    ck_assert_int_eq(system(cmd), 0);
}

static const char *path(const char *name)
{
    static char p[4][128];
    static int i;
    i = (i + 1) % 4;
    snprintf(p[i], sizeof p[i], "%s/%s", dir, name);
    return p[i];
}

static void write_file(const char *name, const char *text, mode_t mode)
{
    FILE *f = fopen(path(name), "w");
    ck_assert_ptr_nonnull(f);
    fputs(text, f);
    fclose(f);
    ck_assert_int_eq(chmod(path(name), mode), 0);
}

START_TEST(test_keygen_roundtrip)
{
    if (!mlt_curve_available())
        return; /* libzmq without CURVE: keygen says so (ENOTSUP) */
    ck_assert_int_eq(mlt_curve_keygen(dir, "server", err, sizeof err), 0);
    struct stat st;
    ck_assert_int_eq(stat(path("server.key"), &st), 0);
    ck_assert_int_eq(st.st_mode & 0777, 0600);
    mlt_curve_pair_t p;
    ck_assert_int_eq(mlt_curve_load_secret(path("server.key"), &p, err, sizeof err), 0);
    char pub[MLT_CURVE_Z85 + 1];
    ck_assert_int_eq(mlt_curve_load_public(path("server.pub"), pub, err, sizeof err), 0);
    ck_assert_str_eq(pub, p.pub); /* the public key derived from the secret one */
    /* never overwritten */
    ck_assert_int_eq(mlt_curve_keygen(dir, "server", err, sizeof err), -EEXIST);
    ck_assert_ptr_nonnull(strstr(err, "server.key"));
    /* a name that could leave the directory */
    ck_assert_int_eq(mlt_curve_keygen(dir, "../x", err, sizeof err), -EINVAL);
    ck_assert_int_eq(mlt_curve_keygen(dir, ".hidden", err, sizeof err), -EINVAL);
    /* the allow-list: comments, names, binary lookup */
    unsigned char bin[32];
    ck_assert_ptr_nonnull(zmq_z85_decode(bin, pub));
    char text[256];
    snprintf(text, sizeof text, "# workers\n\n  %s   worker-0@host1  \n", pub);
    write_file("allow", text, 0644);
    mlt_curve_allow_t *a = NULL;
    ck_assert_int_eq(mlt_curve_allow_load(path("allow"), &a, err, sizeof err), 0);
    ck_assert_uint_eq(mlt_curve_allow_count(a), 1);
    ck_assert_str_eq(mlt_curve_allow_find(a, bin), "worker-0@host1");
    bin[0] ^= 1;
    ck_assert_ptr_null(mlt_curve_allow_find(a, bin));
    mlt_curve_allow_destroy(&a);
    ck_assert_ptr_null(a);
}
END_TEST

START_TEST(test_refusals)
{
    if (!mlt_curve_available())
        return;
    ck_assert_int_eq(mlt_curve_keygen(dir, "k", err, sizeof err), 0);
    mlt_curve_pair_t p;
    /* readable by others */
    ck_assert_int_eq(chmod(path("k.key"), 0640), 0);
    ck_assert_int_eq(mlt_curve_load_secret(path("k.key"), &p, err, sizeof err), -EPERM);
    ck_assert_ptr_nonnull(strstr(err, path("k.key")));
    ck_assert_ptr_nonnull(strstr(err, "chmod 600"));
    ck_assert_int_eq(chmod(path("k.key"), 0400), 0);
    ck_assert_int_eq(mlt_curve_load_secret(path("k.key"), &p, err, sizeof err), 0);
    /* missing */
    ck_assert_int_eq(mlt_curve_load_secret(path("none.key"), &p, err, sizeof err), -ENOENT);
    ck_assert_ptr_nonnull(strstr(err, "none.key: cannot open"));
    /* two keys in one key file; not a key; empty */
    char pub[MLT_CURVE_Z85 + 1], text[512];
    ck_assert_int_eq(mlt_curve_load_public(path("k.pub"), pub, err, sizeof err), 0);
    snprintf(text, sizeof text, "%s\n%s\n", pub, pub);
    write_file("two.pub", text, 0644);
    ck_assert_int_eq(mlt_curve_load_public(path("two.pub"), pub, err, sizeof err), -EINVAL);
    ck_assert_ptr_nonnull(strstr(err, "two.pub:2:"));
    write_file("bad.pub", "# c\nhello\n", 0644);
    ck_assert_int_eq(mlt_curve_load_public(path("bad.pub"), pub, err, sizeof err), -EINVAL);
    ck_assert_ptr_nonnull(strstr(err, "bad.pub:2: not a CurveZMQ key"));
    write_file("empty.pub", "# nothing\n", 0644);
    ck_assert_int_eq(mlt_curve_load_public(path("empty.pub"), pub, err, sizeof err), -EINVAL);
    ck_assert_ptr_nonnull(strstr(err, "holds no key"));
    /* allow-list: a bad name, an over-long line, a file over the bound */
    mlt_curve_allow_t *a = NULL;
    snprintf(text, sizeof text, "%s ok\n%s bad/name\n", pub, pub);
    write_file("allow", text, 0644);
    ck_assert_int_eq(mlt_curve_allow_load(path("allow"), &a, err, sizeof err), -EINVAL);
    ck_assert_ptr_nonnull(strstr(err, "allow:2: the name"));
    ck_assert_ptr_null(a);
    char *long_line = malloc(MLT_CURVE_MAX_LINE + 16);
    memset(long_line, 'a', MLT_CURVE_MAX_LINE + 10);
    long_line[MLT_CURVE_MAX_LINE + 10] = 0;
    write_file("long", long_line, 0644);
    free(long_line);
    ck_assert_int_eq(mlt_curve_allow_load(path("long"), &a, err, sizeof err), -EINVAL);
    ck_assert_ptr_nonnull(strstr(err, "long:1: line longer than"));
    int fd = open(path("big"), O_WRONLY | O_CREAT, 0644);
    ck_assert_int_eq(ftruncate(fd, MLT_CURVE_MAX_FILE + 1), 0);
    close(fd);
    ck_assert_int_eq(mlt_curve_allow_load(path("big"), &a, err, sizeof err), -EFBIG);
    ck_assert_ptr_nonnull(strstr(err, "big: larger than"));
    /* a directory is not a key file */
    ck_assert_int_eq(mlt_curve_load_public(dir, pub, err, sizeof err), -EINVAL);
    ck_assert_ptr_nonnull(strstr(err, "not a regular file"));
}
END_TEST

int main(void)
{
    Suite *s = suite_create("curve");
    TCase *tc = tcase_create("curve");
    tcase_add_checked_fixture(tc, setup, teardown);
    tcase_add_test(tc, test_keygen_roundtrip);
    tcase_add_test(tc, test_refusals);
    suite_add_tcase(s, tc);
    SRunner *sr = srunner_create(s);
    srunner_run_all(sr, CK_NORMAL);
    int failed = srunner_ntests_failed(sr);
    srunner_free(sr);
    return failed ? 1 : 0;
}
