/* check_warm.c - Check suite for tuner/warm: the warm-start file a tuned job
 * leaves for the next job of the same model.
 *
 * "file": write then read back (a file and its directory), values clamped
 * into the job's ranges and snapped to discrete values, tunables missing from
 * the file at their defaults, no temporary left behind, a symbolic link
 * planted as the file or its temporary replaced, its target untouched. "errors": no file
 * (-ENOENT), another model (-ESTALE, for a changed layer, data file or rule),
 * text that does not parse or a value that is not a number (-EINVAL, with the
 * file and line). */
#include "tuner/warm.h"

#include <check.h>
#include <fcntl.h>
#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

static const char JOB[] =
    "name = \"w\";\n"
    "model = { type = \"mlp\"; layers = [64, 32]; };\n"
    "data = { format = \"idx\"; train_images = \"a\"; train_labels = \"b\";\n"
    "         test_images = \"c\"; test_labels = \"d\"; };\n"
    "tunables = {\n"
    "  lr = { default = 0.01; min = 1e-4; max = 1.0; scale = \"log\"; };\n"
    "  momentum = { default = 0.9; min = 0.0; max = 0.99; };\n"
    "  batch_size = { default = 128; values = [64, 128, 256]; };\n"
    "};\n";

static mlt_job_t job;
static char dir[64];

static void make_job(mlt_job_t *j, const char *k, const char *v)
{
    char err[512];
    ck_assert_msg(mlt_job_parse_string(JOB, "w.conf", j, err, sizeof err) == 0, "%s", err);
    if (k)
        ck_assert_msg(mlt_job_set(j, k, v, err, sizeof err) == 0, "%s", err);
}

static void setup(void)
{
    make_job(&job, NULL, NULL);
    snprintf(dir, sizeof dir, "/tmp/check_warm.XXXXXX");
    ck_assert_ptr_nonnull(mkdtemp(dir));
}

static void teardown(void)
{
    char cmd[128];
    snprintf(cmd, sizeof cmd, "rm -rf %s", dir);
    ck_assert_int_eq(system(cmd), 0);
    mlt_job_free(&job);
}

static void write_text(const char *path, const char *text)
{
    FILE *f = fopen(path, "w");
    ck_assert_ptr_nonnull(f);
    fputs(text, f);
    fclose(f);
}

START_TEST(test_round_trip)
{
    mlt_warm_t w = {.have = true, .lr_star = 0.0316};
    mlt_setting_defaults(&job, &w.setting);
    w.setting.v[0] = 0.05;
    w.setting.v[1] = 0.8;
    w.setting.v[2] = 256;
    char path[128], err[512] = "";
    snprintf(path, sizeof path, "%s/%s", dir, MLT_WARM_FILE);
    int dfd = open(dir, O_RDONLY | O_DIRECTORY);
    ck_assert_int_ge(dfd, 0);
    ck_assert_msg(mlt_warm_write(dfd, MLT_WARM_FILE, &job, &w, err, sizeof err) == 0, "%s", err);
    close(dfd);
    char tmp[160];
    snprintf(tmp, sizeof tmp, "%s.tmp", path);
    ck_assert_int_ne(access(tmp, F_OK), 0);
    for (int by_dir = 0; by_dir < 2; by_dir++) {
        mlt_warm_t r;
        ck_assert_msg(mlt_warm_read(by_dir ? dir : path, &job, &r, err, sizeof err) == 0, "%s",
                      err);
        ck_assert(r.have);
        ck_assert_double_eq_tol(r.setting.v[0], 0.05, 1e-12);
        ck_assert_double_eq_tol(r.setting.v[1], 0.8, 1e-12);
        ck_assert_double_eq(r.setting.v[2], 256);
        ck_assert_double_eq_tol(r.lr_star, 0.0316, 1e-12);
    }
}
END_TEST

START_TEST(test_clamped_and_defaults)
{
    char key[MLT_WARM_KEY_MAX], text[2048], path[128], err[512] = "";
    mlt_warm_key(&job, key, sizeof key);
    /* lr above its max, batch between two values, momentum missing */
    snprintf(text, sizeof text, "key = \"%s\";\nlr_star = 0.02;\n"
             "tunables = { lr = 7.0; batch_size = 200; other = 1; };\n", key);
    snprintf(path, sizeof path, "%s/x.conf", dir);
    write_text(path, text);
    mlt_warm_t r;
    ck_assert_msg(mlt_warm_read(path, &job, &r, err, sizeof err) == 0, "%s", err);
    ck_assert_double_eq(r.setting.v[0], 1.0);
    ck_assert_double_eq(r.setting.v[1], 0.9);
    ck_assert_double_eq(r.setting.v[2], 256);
}
END_TEST

START_TEST(test_errors)
{
    char path[128], err[512] = "";
    mlt_warm_t r;
    snprintf(path, sizeof path, "%s/none.conf", dir);
    ck_assert_int_eq(mlt_warm_read(path, &job, &r, err, sizeof err), -ENOENT);
    ck_assert(!r.have);
    ck_assert_int_eq(mlt_warm_read(dir, &job, &r, err, sizeof err), -ENOENT);
    /* another model: each part of the key matters */
    mlt_warm_t w = {.have = true, .lr_star = NAN};
    mlt_setting_defaults(&job, &w.setting);
    static const char *const other[][2] = {
        {"model.layers", "64,64"}, {"data.train_images", "z"}, {"update.rule", "adam"}};
    for (size_t i = 0; i < 3; i++) {
        mlt_job_t o;
        make_job(&o, other[i][0], other[i][1]);
        snprintf(path, sizeof path, "%s/o%zu.conf", dir, i);
        int dfd = open(dir, O_RDONLY | O_DIRECTORY);
        ck_assert_int_ge(dfd, 0);
        ck_assert_int_eq(mlt_warm_write(dfd, path + strlen(dir) + 1, &o, &w, err, sizeof err), 0);
        close(dfd);
        ck_assert_int_eq(mlt_warm_read(path, &job, &r, err, sizeof err), -ESTALE);
        ck_assert_msg(strstr(err, "another model"), "%s", err);
        mlt_job_free(&o);
    }
    /* corrupt: does not parse; a value that is a string */
    snprintf(path, sizeof path, "%s/bad.conf", dir);
    write_text(path, "key = \"x\"\ntunables = {\n");
    ck_assert_int_eq(mlt_warm_read(path, &job, &r, err, sizeof err), -EINVAL);
    ck_assert_msg(strstr(err, "bad.conf:"), "%s", err);
    char key[MLT_WARM_KEY_MAX], text[2048];
    mlt_warm_key(&job, key, sizeof key);
    snprintf(text, sizeof text, "key = \"%s\";\ntunables = {\n  lr = \"fast\";\n};\n", key);
    write_text(path, text);
    ck_assert_int_eq(mlt_warm_read(path, &job, &r, err, sizeof err), -EINVAL);
    ck_assert_msg(strstr(err, "bad.conf:3: tunables.lr"), "%s", err);
    ck_assert(!r.have);
}
END_TEST

/* A symbolic link planted as the file or as its temporary is replaced, never
 * followed: the link's target keeps its text. */
START_TEST(test_symlink_not_followed)
{
    mlt_warm_t w = {.have = true, .lr_star = 0.01};
    mlt_setting_defaults(&job, &w.setting);
    char target[128], link[128], tlink[160], err[512] = "", buf[16] = "";
    snprintf(target, sizeof target, "%s/target", dir);
    write_text(target, "precious\n");
    snprintf(link, sizeof link, "%s/%s", dir, MLT_WARM_FILE);
    snprintf(tlink, sizeof tlink, "%s.tmp", link);
    ck_assert_int_eq(symlink(target, link), 0);
    ck_assert_int_eq(symlink(target, tlink), 0);
    int dfd = open(dir, O_RDONLY | O_DIRECTORY);
    ck_assert_int_ge(dfd, 0);
    ck_assert_msg(mlt_warm_write(dfd, MLT_WARM_FILE, &job, &w, err, sizeof err) == 0, "%s", err);
    close(dfd);
    FILE *f = fopen(target, "r");
    ck_assert_ptr_nonnull(f);
    ck_assert_ptr_nonnull(fgets(buf, sizeof buf, f));
    fclose(f);
    ck_assert_str_eq(buf, "precious\n");
    mlt_warm_t r;
    ck_assert_msg(mlt_warm_read(link, &job, &r, err, sizeof err) == 0, "%s", err);
    ck_assert(r.have);
}
END_TEST

static Suite *suite(void)
{
    Suite *s = suite_create("warm");
    TCase *tc = tcase_create("file");
    tcase_add_checked_fixture(tc, setup, teardown);
    tcase_add_test(tc, test_round_trip);
    tcase_add_test(tc, test_clamped_and_defaults);
    tcase_add_test(tc, test_symlink_not_followed);
    suite_add_tcase(s, tc);
    tc = tcase_create("errors");
    tcase_add_checked_fixture(tc, setup, teardown);
    tcase_add_test(tc, test_errors);
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
