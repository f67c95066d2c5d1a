/* check_setting.c - Check suite for tuner/setting: a job's settings (defaults,
 * get and set by name, JSON) and the search space the tuning logics share
 * (which tunables are tuned, the mapping to and from coordinates).
 *
 * "setting": defaults in job order, get with a fallback, set of a known and an
 * unknown name, the JSON line. "space": only tune = true tunables, none when
 * not tuning, coordinates to a setting and back, dim lookup by name. */
#include "tuner/setting.h"

#include <check.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static const char JOB[] =
    "name = \"t\";\n"
    "model = { type = \"mlp\"; layers = [8]; };\n"
    "data = { format = \"idx\"; train_images = \"a\"; train_labels = \"b\";\n"
    "         test_images = \"c\"; test_labels = \"d\"; };\n"
    "tunables = {\n"
    "  lr = { default = 0.01; min = 1e-5; max = 1.0; scale = \"log\"; tune = true; };\n"
    "  momentum = { default = 0.9; min = 0.0; max = 0.99; scale = \"linear\"; tune = false; };\n"
    "  batch_size = { default = 128; values = [32, 128, 512]; tune = true; };\n"
    "};\n";

static mlt_job_t job;

static void setup(void)
{
    char err[512];
    int rc = mlt_job_parse_string(JOB, "t.conf", &job, err, sizeof err);
    ck_assert_msg(rc == 0, "%s", err);
}

static void teardown(void)
{
    mlt_job_free(&job);
}

START_TEST(test_defaults_get_set)
{
    mlt_setting_t s;
    mlt_setting_defaults(&job, &s);
    ck_assert_uint_eq(job.n_tunables, 3);
    ck_assert_double_eq(mlt_setting_get(&job, &s, "lr", -1), 0.01);
    ck_assert_double_eq(mlt_setting_get(&job, &s, "momentum", -1), 0.9);
    ck_assert_double_eq(mlt_setting_get(&job, &s, "batch_size", -1), 128);
    ck_assert_double_eq(mlt_setting_get(&job, &s, "staleness", -7), -7);
    ck_assert(mlt_setting_set(&job, &s, "lr", 0.5));
    ck_assert_double_eq(mlt_setting_get(&job, &s, "lr", -1), 0.5);
    ck_assert(!mlt_setting_set(&job, &s, "nope", 1));
}
END_TEST

START_TEST(test_json)
{
    mlt_setting_t s;
    mlt_setting_defaults(&job, &s);
    mlt_json_t j;
    mlt_json_begin(&j);
    mlt_setting_json(&job, &s, &j, "tunables");
    ck_assert_str_eq(mlt_json_text(&j),
                     "{\"tunables\":{\"lr\":0.01,\"momentum\":0.9,\"batch_size\":128}}");
    mlt_json_free(&j);
}
END_TEST

START_TEST(test_space)
{
    mlt_space_t sp;
    mlt_space_init(&sp, &job, false);
    ck_assert_uint_eq(sp.d, 0);
    mlt_space_init(&sp, &job, true);
    ck_assert_uint_eq(sp.d, 2); /* momentum is not tuned */
    ck_assert_str_eq(sp.dims[0].name, "lr");
    ck_assert_str_eq(sp.dims[1].name, "batch_size");
    ck_assert_int_eq(mlt_space_dim(&sp, "batch_size"), 1);
    ck_assert_int_eq(mlt_space_dim(&sp, "momentum"), -1);
    mlt_setting_t base, s;
    mlt_setting_defaults(&job, &base);
    double x[2] = {0.3, 512};
    mlt_space_to_setting(&sp, &base, x, &s);
    ck_assert_double_eq(mlt_setting_get(&job, &s, "lr", -1), 0.3);
    ck_assert_double_eq(mlt_setting_get(&job, &s, "momentum", -1), 0.9);
    ck_assert_double_eq(mlt_setting_get(&job, &s, "batch_size", -1), 512);
    double back[2];
    mlt_space_from_setting(&sp, &s, back);
    ck_assert_double_eq(back[0], 0.3);
    ck_assert_double_eq(back[1], 512);
}
END_TEST

static Suite *suite(void)
{
    Suite *s = suite_create("setting");
    TCase *tc = tcase_create("setting");
    tcase_add_checked_fixture(tc, setup, teardown);
    tcase_add_test(tc, test_defaults_get_set);
    tcase_add_test(tc, test_json);
    suite_add_tcase(s, tc);
    tc = tcase_create("space");
    tcase_add_checked_fixture(tc, setup, teardown);
    tcase_add_test(tc, test_space);
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
