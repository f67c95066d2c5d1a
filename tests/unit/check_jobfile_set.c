/* check_jobfile_set.c - overrides with mlt_job_set (good, refused, and checks
 * between keys left to mlt_job_validate), and parsing from a string as
 * workers do (mlt_job_parse_string). Part of check_jobfile (see
 * check_jobfile.c). */
#include "tests/unit/check_jobfile.h"

#include <errno.h>
#include <string.h>

#include "common/alloc.h"

/* ---- set ---- */

static void set_ok(mlt_job_t *job, const char *key, const char *value)
{
    char err[512] = "";
    int rc = mlt_job_set(job, key, value, err, sizeof err);
    ck_assert_msg(rc == 0, "set %s=%s: %s", key, value, err);
}

START_TEST(test_set_good)
{
    mlt_job_t job;
    char err[512] = "";
    jf_load_shipped("conf/jobs/fmnist-mlp.conf", &job);
    set_ok(&job, "tunables.lr.default", "0.1");
    ck_assert_double_eq(mlt_job_default(&job, "lr", 0), 0.1);
    set_ok(&job, "workers", "1");
    ck_assert_int_eq(job.workers, 1);
    set_ok(&job, "data.subset", "5000");
    ck_assert_int_eq(job.data.subset, 5000);
    set_ok(&job, "data.subset", "6K");
    ck_assert_int_eq(job.data.subset, 6000);
    set_ok(&job, "tuner.logic", "fixed");
    ck_assert_int_eq(job.tuner.logic, MLT_LOGIC_FIXED);
    set_ok(&job, "model.layers", "512, 128,64");
    ck_assert_uint_eq(job.model.n_layers, 3);
    ck_assert_uint_eq(job.model.layers[2], 64);
    set_ok(&job, "model.layers", "[300]");
    ck_assert_uint_eq(job.model.n_layers, 1);
    set_ok(&job, "model.cnn", "[conv3x3x16, \"pool2\", fc128]");
    ck_assert_uint_eq(job.model.n_cnn, 3);
    ck_assert_uint_eq(job.model.cnn[2].n, 128);
    set_ok(&job, "model.cnn", "");
    ck_assert_uint_eq(job.model.n_cnn, 0);
    ck_assert_ptr_null(job.model.cnn);
    set_ok(&job, "data.synthetic.ratings", "2M");
    ck_assert_int_eq(job.data.synthetic.ratings, 2000000);
    set_ok(&job, "seed", "123");
    ck_assert_int_eq(job.seed, 123);
    set_ok(&job, "backend", "cpu");
    ck_assert_int_eq(job.backend, MLT_BACKEND_CPU);
    set_ok(&job, "stop.max_epochs", "1e1");
    ck_assert_double_eq(job.stop.max_epochs, 10.0);
    set_ok(&job, "tunables.lr.tune", "off");
    ck_assert(!mlt_job_tunable(&job, "lr")->tune);
    set_ok(&job, "tunables.lr.scale", "linear");
    ck_assert_int_eq(mlt_job_tunable(&job, "lr")->kind, MLT_TUNABLE_LINEAR);
    set_ok(&job, "tunables.lr.min", "0.05");
    ck_assert_double_eq(mlt_job_tunable(&job, "lr")->min, 0.05);
    set_ok(&job, "tunables.batch_size.values", "16,32,128");
    const mlt_tunable_t *b = mlt_job_tunable(&job, "batch_size");
    ck_assert_uint_eq(b->n_values, 3);
    ck_assert_double_eq(b->min, 16);
    ck_assert_double_eq(b->max, 128);

    /* output_dir follows name until given; "" makes it follow again */
    set_ok(&job, "name", "quick");
    ck_assert_str_eq(job.output_dir, "out/quick");
    set_ok(&job, "output_dir", "/tmp/o");
    set_ok(&job, "name", "quicker");
    ck_assert_str_eq(job.output_dir, "/tmp/o");
    set_ok(&job, "output_dir", "");
    ck_assert_str_eq(job.output_dir, "out/quicker");

    ck_assert_int_eq(mlt_job_validate(&job, err, sizeof err), 0);
    /* the text follows the overrides: a worker parsing it sees them */
    mlt_job_t sent;
    ck_assert_int_eq(mlt_job_parse_string(job.text, "sent", &sent, err, sizeof err), 0);
    jf_assert_job_eq(&job, &sent);
    mlt_job_free(&sent);
    mlt_job_free(&job);
}
END_TEST

static void expect_set_error(mlt_job_t *job, const char *key, const char *value, const char *exact)
{
    char err[512] = "";
    char *before = mlt_strdup(job->text);
    char *text_ptr = job->text;
    ck_assert_int_eq(mlt_job_set(job, key, value, err, sizeof err), -EINVAL);
    ck_assert_str_eq(err, exact);
    ck_assert_ptr_eq(job->text, text_ptr); /* a refused override changes nothing */
    ck_assert_str_eq(job->text, before);
    mlt_free(before);
}

START_TEST(test_set_bad)
{
    mlt_job_t job, orig;
    jf_load_shipped("conf/jobs/fmnist-mlp.conf", &job);
    jf_load_shipped("conf/jobs/fmnist-mlp.conf", &orig);
    expect_set_error(&job, "nope", "1", "--set unknown key 'nope'");
    expect_set_error(&job, "model.foo", "1", "--set unknown key 'model.foo'");
    expect_set_error(&job, "model", "1", "--set model is a group; set one of its keys");
    expect_set_error(&job, "tunables", "1", "--set tunables is a group; set one of its keys");
    expect_set_error(&job, "workers", "0", "--set workers must be between 1 and 1024 (got 0)");
    expect_set_error(&job, "workers", "two", "--set workers must be an integer (got \"two\")");
    expect_set_error(&job, "workers", "1.5", "--set workers must be an integer (got \"1.5\")");
    expect_set_error(&job, "workers", "1K", "--set workers must be an integer (got \"1K\")");
    expect_set_error(&job, "workers", "", "--set workers must be an integer (got \"\")");
    expect_set_error(&job, "data.subset", "-1",
                     "--set data.subset must be between 0 and 1000000000000 (got -1)");
    expect_set_error(&job, "test_interval", "fast",
                     "--set test_interval must be a number (got \"fast\")");
    expect_set_error(&job, "test_interval", "nan",
                     "--set test_interval must be between 0.01 and 100 (got nan)");
    expect_set_error(&job, "tuner.logic", "manual",
                     "--set tuner.logic must be one of \"mltuner\", \"fixed\", "
                     "\"train-to-completion\", \"hyperband\" (got \"manual\")");
    expect_set_error(&job, "model.layers", "256,0",
                     "--set model.layers[1] must be between 1 and 65536 (got 0)");
    expect_set_error(&job, "model.layers", "256,x",
                     "--set model.layers[1] must be an integer (got \"x\")");
    expect_set_error(&job, "model.cnn", "conv5x5x32,pool2,conv5x5",
                     "--set model.cnn[2] = 'conv5x5' is not convKxKxC, poolP or fcN");
    expect_set_error(&job, "model.cnn", "fc10,conv3x3x1",
                     "--set model.cnn[1] = 'conv3x3x1' follows an fc layer; conv and pool layers "
                     "must come before the first fc");
    expect_set_error(&job, "name", "a b",
                     "--set name must be 1..128 characters of A-Z a-z 0-9 . _ -, not starting "
                     "with '.' (got \"a b\")");
    expect_set_error(&job, "tunables.lr.tune", "maybe",
                     "--set tunables.lr.tune must be true or false (got \"maybe\")");
    expect_set_error(&job, "tunables.nosuch.default", "1",
                     "--set tunables.nosuch.default: the job has no tunable 'nosuch'");
    expect_set_error(&job, "tunables.lr.step", "1", "--set unknown key 'tunables.lr.step'");
    expect_set_error(&job, "tunables.lr", "1", "--set unknown key 'tunables.lr'");
    expect_set_error(&job, "tunables.lr.values", "1,2",
                     "--set tunables.lr.values: tunable 'lr' is continuous (min, max); values "
                     "applies to discrete tunables only");
    expect_set_error(&job, "tunables.batch_size.min", "1",
                     "--set tunables.batch_size.min: tunable 'batch_size' is discrete (values); "
                     "min applies to continuous tunables only");
    expect_set_error(&job, "tunables.batch_size.values", "64,32",
                     "--set tunables.batch_size.values must be ascending without repeats ([1] = "
                     "32 follows [0] = 64)");
    expect_set_error(&job, "tunables.batch_size.values", "",
                     "--set tunables.batch_size.values must not be empty");
    expect_set_error(&job, "tunables.lr.default", "inf",
                     "--set tunables.lr.default must be a finite number (got inf)");
    jf_assert_job_eq(&job, &orig);
    mlt_job_free(&orig);
    mlt_job_free(&job);
}
END_TEST

/* Checks between keys wait for mlt_job_validate, so that a job can move
 * between valid states one key at a time. */
START_TEST(test_set_then_validate)
{
    mlt_job_t job;
    char err[512] = "";
    jf_load_shipped("conf/jobs/fmnist-mlp.conf", &job);
    set_ok(&job, "tunables.lr.default", "5");
    ck_assert_int_eq(mlt_job_validate(&job, err, sizeof err), -EINVAL);
    ck_assert_str_eq(err, "tunables.lr.default must be between min (1e-05) and max (1) (got 5)");
    set_ok(&job, "tunables.lr.max", "10");
    ck_assert_int_eq(mlt_job_validate(&job, err, sizeof err), 0);

    set_ok(&job, "model.type", "mf");
    ck_assert_int_eq(mlt_job_validate(&job, err, sizeof err), -EINVAL);
    ck_assert_str_eq(
        err, "model.type \"mf\" needs data.format \"ratings\" or \"synthetic\" (got \"idx\")");
    set_ok(&job, "data.format", "synthetic");
    ck_assert_int_eq(mlt_job_validate(&job, err, sizeof err), -EINVAL);
    ck_assert_str_eq(err, "stop.target_accuracy is for classifiers; model.type \"mf\" (metric "
                          "rmse) stops at stop.target_rmse");
    set_ok(&job, "stop.target_accuracy", "0");
    set_ok(&job, "stop.target_rmse", "0.51");
    ck_assert_int_eq(mlt_job_validate(&job, err, sizeof err), 0);

    set_ok(&job, "tunables.batch_size.default", "100");
    ck_assert_int_eq(mlt_job_validate(&job, err, sizeof err), -EINVAL);
    ck_assert_str_eq(err, "tunables.batch_size.default must be one of tunables.batch_size.values "
                          "(got 100)");
    mlt_job_free(&job);
}
END_TEST

/* ---- string ---- */

START_TEST(test_string_parse)
{
    mlt_job_t job, from_file;
    char err[512] = "";
    const char *text = JF_BASE "workers = 3;\n";
    ck_assert_int_eq(mlt_job_parse_string(text, "coordinator", &job, err, sizeof err), 0);
    ck_assert_str_eq(job.name, "t");
    ck_assert_int_eq(job.workers, 3);
    ck_assert_str_eq(job.text, text);
    ck_assert_ptr_ne(job.text, text); /* a copy */
    jf_load_ok(text, &from_file);
    jf_assert_job_eq(&job, &from_file);
    mlt_job_free(&from_file);
    mlt_job_free(&job);

    /* what the coordinator sends a worker: the loaded file's text */
    jf_load_shipped("conf/jobs/fmnist-cnn.conf", &from_file);
    ck_assert_int_eq(mlt_job_parse_string(from_file.text, "job", &job, err, sizeof err), 0);
    jf_assert_job_eq(&job, &from_file);
    mlt_job_free(&from_file);
    mlt_job_free(&job);
}
END_TEST

START_TEST(test_string_errors)
{
    mlt_job_t job;
    char err[512] = "";
    ck_assert_int_eq(
        mlt_job_parse_string(JF_BASE "\nworkers = 0;\n", "from-coordinator", &job, err, sizeof err),
        -EINVAL);
    ck_assert_str_eq(err, "from-coordinator:4: workers must be between 1 and 1024 (got 0)");
    ck_assert_ptr_null(job.name);
    ck_assert_int_eq(mlt_job_parse_string(JF_BASE "x = 1;\n", NULL, &job, err, sizeof err),
                     -EINVAL);
    ck_assert_str_eq(err, "(job):3: unknown key 'x'");
    ck_assert_int_eq(mlt_job_parse_string(NULL, "j", &job, err, sizeof err), -EINVAL);
    ck_assert_str_eq(err, "j: no job text");

    size_t n = MLT_JOB_MAX_TEXT + 1;
    char *big = mlt_malloc(n + 1);
    memset(big, '#', n);
    big[n] = '\0';
    ck_assert_int_eq(mlt_job_parse_string(big, "j", &job, err, sizeof err), -EMSGSIZE);
    ck_assert_str_eq(err, "j: job text is over 49152 bytes");
    mlt_free(big);

    /* a NULL or short error buffer is fine */
    ck_assert_int_eq(mlt_job_parse_string("x = 1;", "j", &job, NULL, 0), -EINVAL);
    char tiny[8];
    ck_assert_int_eq(mlt_job_parse_string("x = 1;", "j", &job, tiny, sizeof tiny), -EINVAL);
    ck_assert_str_eq(tiny, "j:1: un");
}
END_TEST

void jf_set_tcases(Suite *s)
{
    TCase *tc = tcase_create("set");
    tcase_add_test(tc, test_set_good);
    tcase_add_test(tc, test_set_bad);
    tcase_add_test(tc, test_set_then_validate);
    suite_add_tcase(s, tc);

    tc = tcase_create("string");
    tcase_add_test(tc, test_string_parse);
    tcase_add_test(tc, test_string_errors);
    suite_add_tcase(s, tc);
}
