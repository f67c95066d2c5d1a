/* check_jobfile_errors.c - the exact errors a user sees for a bad job file:
 * unknown keys, wrong types, bounds, bad cnn layers, checks between keys,
 * tunables, required keys, the text itself and the file. Part of
 * check_jobfile (see check_jobfile.c). */
#include "tests/unit/check_jobfile.h"

#include <errno.h>
#include <limits.h>
#include <stdio.h>
#include <string.h>

#include "common/alloc.h"
#include "tests/unit/testutil.h"

/* ---- errors ---- */

START_TEST(test_err_unknown_key)
{
    jf_expect_error(JF_BASE "foo = 1;\n", 3, "unknown key 'foo'");
    jf_expect_error("name = \"t\";\nmodel = {\n  type = \"mlp\";\n  foo = 2;\n};\n", 4,
                    "unknown key 'model.foo'");
    jf_expect_error(JF_BASE "data = { synthetic = {\n bar = 1; }; };\n", 4,
                    "unknown key 'data.synthetic.bar'");
    jf_expect_error(JF_BASE "tunables = {\n lr = { default = 0.1; min = 0.01; max = 1.0;\n"
                            " step = 2; };\n};\n",
                    5, "unknown key 'tunables.lr.step'");
    jf_expect_error(JF_BASE "stop = { max_epoch = 3.0; };\n", 3, "unknown key 'stop.max_epoch'");
}
END_TEST

START_TEST(test_err_wrong_type)
{
    jf_expect_error("name = \"t\";\nmodel = { type = \"mlp\";\n  layers = [\"256\"]; };\n", 3,
                    "model.layers must be a list of integers");
    jf_expect_error("name = \"t\";\nmodel = { type = \"mlp\";\n  layers = 256; };\n", 3,
                    "model.layers must be a list of integers");
    jf_expect_error(JF_BASE "workers = 2.5;\n", 3, "workers must be an integer");
    jf_expect_error(JF_BASE "seed = 1.0;\n", 3,
                    "seed must be an integer or a count such as \"1M\"");
    jf_expect_error("name = 5;\nmodel = { type = \"mlp\"; layers = [256]; };\n", 1,
                    "name must be a string");
    jf_expect_error(JF_BASE "test_interval = \"1\";\n", 3, "test_interval must be a number");
    jf_expect_error(JF_BASE "stop = 5;\n", 3, "stop must be a group { ... }");
    jf_expect_error(JF_BASE "backend = 1;\n", 3,
                    "backend must be one of \"cpu\", \"cuda\", \"auto\"");
    jf_expect_error(JF_BASE
                    "tunables = { lr = { default = 0.1; min = 0.01; max = 1.0;\n tune = 1; }; "
                    "};\n",
                    4, "tunables.lr.tune must be true or false");
    jf_expect_error(JF_BASE "tunables = {\n lr = 0.1; };\n", 4,
                    "tunables.lr must be a group: { default = ...; min = ...; max = ...; scale = "
                    "...; } or { default = ...; values = [...]; }");
    jf_expect_error(JF_BASE "tunables = { b = { default = 1; values = (1, \"2\"); }; };\n", 3,
                    "tunables.b.values must be a list of numbers");
    jf_expect_error("name = \"t\";\nmodel = { type = \"cnn\";\n cnn = (\"fc10\",\n 7); };\n", 4,
                    "model.cnn must be a list of strings such as \"conv5x5x32\", \"pool2\", "
                    "\"fc256\"");
}
END_TEST

START_TEST(test_err_bounds)
{
    jf_expect_error(JF_BASE "workers = 0;\n", 3, "workers must be between 1 and 1024 (got 0)");
    jf_expect_error(JF_BASE "workers = 1025;\n", 3,
                    "workers must be between 1 and 1024 (got 1025)");
    jf_expect_error(JF_BASE "seed = -1;\n", 3,
                    "seed must be between 0 and 9223372036854775807 (got -1)");
    jf_expect_error(JF_BASE "test_interval = 0.001;\n", 3,
                    "test_interval must be between 0.01 and 100 (got 0.001)");
    jf_expect_error(JF_BASE "update = { beta1 = 1.0; };\n", 3,
                    "update.beta1 must be at least 0 and less than 1 (got 1)");
    jf_expect_error(JF_BASE "stop = { target_accuracy = 1.5; };\n", 3,
                    "stop.target_accuracy must be between 0 and 1 (got 1.5)");
    jf_expect_error(JF_BASE "data = { validation = -1; };\n", 3,
                    "data.validation must be between 0 and 1000000000 (got -1)");
}
END_TEST

START_TEST(test_err_bounds_more)
{
    jf_expect_error("name = \"t\";\nmodel = { type = \"mlp\"; layers = [256,\n 0]; };\n", 3,
                    "model.layers[1] must be between 1 and 65536 (got 0)");
    jf_expect_error("name = \"t\";\nmodel = { type = \"mf\"; rank = 1025; };\n"
                    "data = { format = \"synthetic\"; };\n",
                    2, "model.rank must be between 1 and 1024 (got 1025)");
    jf_expect_error(JF_BASE "backend = \"tpu\";\n", 3,
                    "backend must be one of \"cpu\", \"cuda\", \"auto\" (got \"tpu\")");
    jf_expect_error(JF_BASE "tuner = { logic = \"manual\"; };\n", 3,
                    "tuner.logic must be one of \"mltuner\", \"fixed\", \"train-to-completion\", "
                    "\"hyperband\" (got \"manual\")");
    jf_expect_error(JF_BASE "tuner = { first_trials = 65; };\n", 3,
                    "tuner.first_trials must be between 1 and 64 (got 65)");
    jf_expect_error(JF_BASE "tuner = { decay = 1.0; };\n", 3,
                    "tuner.decay must be between 0.01 and 0.99 (got 1)");
}
END_TEST

START_TEST(test_err_bad_cnn)
{
    const char *head = "name = \"t\";\nmodel = {\n  type = \"cnn\";\n  cnn = [\n";
    char text[512];
    static const struct {
        const char *list;
        int line;
        const char *msg;
    } cases[] = {
        {"\"conv5x5x32\",\n\"pool2\",\n\"conv5x5\"", 7,
         "model.cnn[2] = 'conv5x5' is not convKxKxC, poolP or fcN"},
        {"\"conv4x4x8\"", 5,
         "model.cnn[0] = 'conv4x4x8' has a kernel size that is not odd in 1..11"},
        {"\"conv13x13x8\"", 5,
         "model.cnn[0] = 'conv13x13x8' has a kernel size that is not odd in 1..11"},
        {"\"conv3x5x8\"", 5, "model.cnn[0] = 'conv3x5x8' has a kernel that is not square (KxK)"},
        {"\"conv3x3x0\"", 5, "model.cnn[0] = 'conv3x3x0' has channels outside 1..1024"},
        {"\"conv3x3x1025\"", 5, "model.cnn[0] = 'conv3x3x1025' has channels outside 1..1024"},
        {"\"fc10\", \"pool9\"", 5, "model.cnn[1] = 'pool9' has a pool size outside 2..8"},
        {"\"pool1\"", 5, "model.cnn[0] = 'pool1' has a pool size outside 2..8"},
        {"\"fc0\"", 5, "model.cnn[0] = 'fc0' has units outside 1..65536"},
        {"\"fc\"", 5, "model.cnn[0] = 'fc' is not convKxKxC, poolP or fcN"},
        {"\"fc-1\"", 5, "model.cnn[0] = 'fc-1' is not convKxKxC, poolP or fcN"},
        {"\"FC10\"", 5, "model.cnn[0] = 'FC10' is not convKxKxC, poolP or fcN"},
        {"\"conv3x3x8 \"", 5, "model.cnn[0] = 'conv3x3x8 ' is not convKxKxC, poolP or fcN"},
        {"\"conv3x3x8\",\n\"fc64\",\n\"pool2\"", 7,
         "model.cnn[2] = 'pool2' follows an fc layer; conv and pool layers must come before "
         "the first fc"},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        snprintf(text, sizeof text, "%s%s];\n};\n", head, cases[i].list);
        jf_expect_error(text, cases[i].line, cases[i].msg);
    }
}
END_TEST

START_TEST(test_err_cross)
{
    jf_expect_error("name = \"t\";\nmodel = {\n type = \"mlp\"; };\n", 3,
                    "model.type \"mlp\" needs model.layers, its hidden layer sizes such as [256, "
                    "256] (for none use model.type \"softmax\")");
    jf_expect_error("name = \"t\";\nmodel = {\n type = \"mlp\";\n layers = []; };\n", 4,
                    "model.type \"mlp\" needs model.layers, its hidden layer sizes such as [256, "
                    "256] (for none use model.type \"softmax\")");
    jf_expect_error("name = \"t\";\nmodel = {\n type = \"cnn\"; };\n", 3,
                    "model.type \"cnn\" needs model.cnn, its layers such as [\"conv5x5x32\", "
                    "\"pool2\", \"fc256\"]");
    jf_expect_error(
        "name = \"t\";\nmodel = {\n type = \"mf\"; };\n", 3,
        "model.type \"mf\" needs data.format \"ratings\" or \"synthetic\" (got \"idx\")");
    jf_expect_error(
        "name = \"t\";\nmodel = { type = \"mf\"; };\ndata = {\n format = \"idx\"; };\n", 4,
        "model.type \"mf\" needs data.format \"ratings\" or \"synthetic\" (got \"idx\")");
    jf_expect_error("name = \"t\";\nmodel = { type = \"softmax\"; };\n"
                    "data = {\n format = \"synthetic\"; };\n",
                    4, "model.type \"softmax\" needs data.format \"idx\" (got \"synthetic\")");
    jf_expect_error(
        "name = \"t\";\nmodel = { type = \"mf\"; };\ndata = {\n format = \"ratings\"; };\n", 4,
        "data.format \"ratings\" needs data.ratings, the ratings file");
    jf_expect_error("name = \"t\";\nmodel = { type = \"mf\"; };\n"
                    "data = { format = \"synthetic\";\n synthetic = { users = 10; items = 10;\n"
                    " ratings = 101; }; };\n",
                    5, "data.synthetic.ratings (101) must be at most users x items (100)");
    jf_expect_error(JF_BASE "stop = {\n target_rmse = 0.5; };\n", 4,
                    "stop.target_rmse is for model.type \"mf\" or model.metric \"rmse\"; "
                    "\"mlp\" stops at stop.target_accuracy");
    jf_expect_error(
        "name = \"t\";\nmodel = { type = \"mf\"; };\ndata = { format = \"synthetic\"; };\n"
        "stop = { target_accuracy = 0.9; };\n",
        4,
        "stop.target_accuracy is for classifiers; model.type \"mf\" (metric rmse) stops at "
        "stop.target_rmse");
    /* #13: an external model names its metric; mf is measured by rmse */
    jf_expect_error(
        "name = \"t\";\nmodel = { type = \"external\"; metric = \"rmse\"; };\n"
        "stop = { target_accuracy = 0.9; };\n",
        3,
        "stop.target_accuracy is for classifiers; model.type \"external\" (metric rmse) stops "
        "at stop.target_rmse");
    jf_expect_error("name = \"t\";\nmodel = { type = \"mf\";\n metric = \"accuracy\"; };\n"
                    "data = { format = \"synthetic\"; };\n",
                    3, "model.type \"mf\" is measured by rmse, not accuracy");
    /* update.average: sgd, nesterov and the schedule-free rules only */
    jf_expect_error(JF_BASE "update = { rule = \"adam\";\n average = true; };\n", 4,
                    "update.average keeps a weight average for update.rule \"sgd\" or "
                    "\"nesterov\" (the sf- rules always do); \"adam\" cannot keep one");
    jf_expect_error(JF_BASE "update = {\n average = true;\n rule = \"rmsprop\"; };\n", 4,
                    "update.average keeps a weight average for update.rule \"sgd\" or "
                    "\"nesterov\" (the sf- rules always do); \"rmsprop\" cannot keep one");
    /* a valid softmax job: no layers needed */
    mlt_job_t job;
    jf_load_ok("name = \"s\";\nmodel = { type = \"softmax\"; };\n", &job);
    ck_assert_int_eq(job.model.type, MLT_MODEL_SOFTMAX);
    mlt_job_free(&job);
}
END_TEST

START_TEST(test_err_tunables)
{
    jf_expect_error(JF_BASE "tunables = {\n lr = { min = 0.001; max = 1.0; scale = \"log\";\n"
                            " default = 5.0; };\n};\n",
                    5, "tunables.lr.default must be between min (0.001) and max (1) (got 5)");
    jf_expect_error(JF_BASE "tunables = {\n lr = { default = 0.1; scale = \"log\";\n min = 0.0;\n"
                            " max = 1.0; };\n};\n",
                    5, "tunables.lr.min must be > 0 for scale \"log\" (got 0)");
    jf_expect_error(JF_BASE
                    "tunables = {\n x = { default = 0.5;\n min = 1.0;\n max = 0.0; };\n};\n",
                    5, "tunables.x.min (1) must be less than tunables.x.max (0)");
    jf_expect_error(JF_BASE "tunables = {\n x = { default = 1.0; min = 1.0; max = 1.0; };\n};\n", 4,
                    "tunables.x.min (1) must be less than tunables.x.max (1)");
    jf_expect_error(JF_BASE "tunables = {\n batch_size = { default = 64;\n values = [32,\n 128,\n"
                            " 64]; };\n};\n",
                    7,
                    "tunables.batch_size.values must be ascending without repeats ([2] = 64 "
                    "follows [1] = 128)");
    jf_expect_error(
        JF_BASE "tunables = {\n s = { default = 1;\n values = [0, 1, 1]; };\n};\n", 5,
        "tunables.s.values must be ascending without repeats ([2] = 1 follows [1] = 1)");
    jf_expect_error(JF_BASE "tunables = {\n s = { default = 1;\n values = []; };\n};\n", 5,
                    "tunables.s.values must not be empty");
    jf_expect_error(JF_BASE "tunables = {\n batch_size = {\n default = 100;\n values = [64, 128]; "
                            "};\n};\n",
                    5,
                    "tunables.batch_size.default must be one of tunables.batch_size.values (got "
                    "100)");
    jf_expect_error(
        JF_BASE "tunables = {\n x = { default = 1; values = [1, 2];\n min = 0; };\n};\n", 4,
        "tunables.x gives both values and min; a tunable is either discrete (values) or "
        "continuous (min, max, scale)");
    jf_expect_error(JF_BASE "tunables = {\n x = { default = 1; min = 0; };\n};\n", 4,
                    "tunables.x needs min and max (continuous) or values (discrete)");
    jf_expect_error(JF_BASE "tunables = {\n x = { min = 0; max = 2; };\n};\n", 4,
                    "tunables.x.default is required");
    jf_expect_error(JF_BASE
                    "tunables = {\n x = { default = 1; min = 0; max = 2;\n scale = \"exp\"; "
                    "};\n};\n",
                    5, "tunables.x.scale must be one of \"log\", \"linear\" (got \"exp\")");
    /* what the system itself reads from the known names */
    jf_expect_error(JF_BASE "tunables = {\n lr = { default = 0.1;\n min = 0.0; max = 1.0; };\n};\n",
                    5, "tunables.lr.min must be > 0, as a learning rate (got 0)");
    jf_expect_error(JF_BASE
                    "tunables = {\n momentum = { default = 0.5; min = 0.0;\n max = 1.0; };\n};\n",
                    5, "tunables.momentum.max must be >= 0 and < 1, as a momentum (got 1)");
    jf_expect_error(
        JF_BASE "tunables = {\n batch_size = { default = 32;\n values = [0.5, 32.0]; };\n};\n", 5,
        "tunables.batch_size.values[0] must be an integer in 1..65536, as a batch size "
        "per worker (got 0.5)");
    jf_expect_error(
        JF_BASE "tunables = {\n staleness = { default = 0;\n values = [0, 1001]; };\n};\n", 5,
        "tunables.staleness.values[1] must be an integer in 0..1000, as a staleness "
        "bound in clocks (got 1001)");
    jf_expect_error(JF_BASE
                    "tunables = {\n weight_decay = { default = 0.0;\n min = -1.0; max = 1.0; "
                    "};\n};\n",
                    5, "tunables.weight_decay.min must be >= 0, as a weight decay (got -1)");
    jf_expect_error(JF_BASE "tunables = {\n beta1 = { default = 0.9;\n min = 0.5; max = 1.0; };\n};\n",
                    5, "tunables.beta1.max must be >= 0 and < 1, as adam's first-moment decay or "
                       "sf-adamw's interpolation (update.beta1 as a tunable) (got 1)");
    jf_expect_error(
        JF_BASE "tunables = {\n warmup = { default = 10.0;\n values = [2.5, 10.0]; };\n};\n", 5,
        "tunables.warmup.values[0] must be an integer in 0..10000000, as a warm-up length in "
        "updates (got 2.5)");
    jf_expect_error(
        JF_BASE "tunables = {\n warmup = { default = 0; min = -1;\n max = 100; };\n};\n", 4,
        "tunables.warmup.min must be an integer in 0..10000000, as a warm-up length in updates "
        "(got -1)");
    jf_expect_error(JF_BASE "tunables = {\n a*b = { default = 1; values = [1]; };\n};\n", 4,
                    "tunable name 'a*b' must be 1..63 of A-Z a-z 0-9 _ -");
}
END_TEST

START_TEST(test_err_required)
{
    jf_expect_error("model = { type = \"mlp\"; layers = [256]; };\n", 0,
                    "name is required (the job's name (1..128 of A-Z a-z 0-9 . _ -); names its "
                    "output directory)");
    jf_expect_error("name = \"t\";\nmodel = { layers = [256]; };\n", 0,
                    "model.type is required (one of \"mlp\", \"cnn\", \"softmax\", \"mf\", "
                    "\"external\")");
    jf_expect_error("", 0,
                    "name is required (the job's name (1..128 of A-Z a-z 0-9 . _ -); names "
                    "its output directory)");
    jf_expect_error("name = \"\";\nmodel = { type = \"mlp\"; layers = [256]; };\n", 1,
                    "name must be 1..128 characters of A-Z a-z 0-9 . _ -, not starting with '.' "
                    "(got \"\")");
    jf_expect_error("name = \"..\";\nmodel = { type = \"mlp\"; layers = [256]; };\n", 1,
                    "name must be 1..128 characters of A-Z a-z 0-9 . _ -, not starting with '.' "
                    "(got \"..\")");
    jf_expect_error("name = \"a/b\";\nmodel = { type = \"mlp\"; layers = [256]; };\n", 1,
                    "name must be 1..128 characters of A-Z a-z 0-9 . _ -, not starting with '.' "
                    "(got \"a/b\")");
    jf_expect_error(JF_BASE "data = { train_images = \"\"; };\n", 3,
                    "data.train_images must not be empty");
}
END_TEST

START_TEST(test_err_text)
{
    jf_expect_error(JF_BASE "workers = ;\n", 3, "syntax error");
    jf_expect_error(JF_BASE "workers = 1;\nworkers = 2;\n", 4, "duplicate setting name");
    jf_expect_error(
        JF_BASE "# a comment\n@include \"other.conf\"\n", 4,
        "@include is not allowed in a job file (its text is sent to the workers whole)");
    jf_expect_error(JF_BASE "seed = 4294967297;\n", 3,
                    "integer 4294967297 does not fit in 32 bits; write 4294967297L (or a count "
                    "string such as \"1M\")");
    /* numbers inside strings and comments are not literals */
    mlt_job_t job;
    jf_load_ok(JF_BASE "# 99999999999\noutput_dir = \"/x/99999999999\";\n", &job);
    ck_assert_str_eq(job.output_dir, "/x/99999999999");
    mlt_job_free(&job);
}
END_TEST

START_TEST(test_err_files)
{
    mlt_job_t job;
    char err[512] = "";
    memset(&job, 0x5a, sizeof job);
    ck_assert_int_eq(mlt_job_load("/nonexistent/job.conf", &job, err, sizeof err), -ENOENT);
    ck_assert_str_eq(err, "/nonexistent/job.conf: cannot open: No such file or directory");
    ck_assert_ptr_null(job.name);
    ck_assert_int_eq(mlt_job_load("/", &job, err, sizeof err), -EISDIR);
    ck_assert_str_eq(err, "/: cannot open: Is a directory");

    /* over the wire's limit, then exactly at it (padding is a comment) */
    size_t n = MLT_JOB_MAX_TEXT + 1;
    char *big = mlt_malloc(n + 1);
    memset(big, '#', n);
    memcpy(big, JF_BASE, strlen(JF_BASE));
    big[n - 1] = '\n';
    big[n] = '\0';
    char *path = jf_tmp_file(big, n);
    ck_assert_int_eq(mlt_job_load(path, &job, err, sizeof err), -EFBIG);
    char want[PATH_MAX + 100];
    snprintf(want, sizeof want, "%s: is over 49152 bytes, the most a job file may have", path);
    ck_assert_str_eq(err, want);
    tmp_drop(path);
    big[n - 2] = '\n';
    path = jf_tmp_file(big, n - 1);
    ck_assert_int_eq(mlt_job_load(path, &job, err, sizeof err), 0);
    mlt_job_free(&job);
    tmp_drop(path);

    /* a NUL byte would hide the rest of the file from libconfig */
    static const char nul[] = JF_BASE "\0workers = 0;\n";
    path = jf_tmp_file(nul, sizeof nul - 1);
    ck_assert_int_eq(mlt_job_load(path, &job, err, sizeof err), -EINVAL);
    snprintf(want, sizeof want, "%s: has a NUL byte; a job file is text", path);
    ck_assert_str_eq(err, want);
    tmp_drop(path);
    mlt_free(big);
}
END_TEST

void jf_errors_tcases(Suite *s)
{
    TCase *tc = tcase_create("errors");
    tcase_add_test(tc, test_err_unknown_key);
    tcase_add_test(tc, test_err_wrong_type);
    tcase_add_test(tc, test_err_bounds);
    tcase_add_test(tc, test_err_bounds_more);
    tcase_add_test(tc, test_err_bad_cnn);
    tcase_add_test(tc, test_err_cross);
    tcase_add_test(tc, test_err_tunables);
    tcase_add_test(tc, test_err_required);
    tcase_add_test(tc, test_err_text);
    tcase_add_test(tc, test_err_files);
    suite_add_tcase(s, tc);
}
