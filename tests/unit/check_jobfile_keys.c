/* check_jobfile_keys.c - every key of the job file table: set from a written
 * file and back through mlt_job_format, the documented key list, the
 * defaults, lookups and enum names, and counts past 32 bits. Part of
 * check_jobfile (see check_jobfile.c). */
#include "tests/unit/check_jobfile.h"

#include <stdbool.h>
#include <stdio.h>
#include <string.h>

#include "kernels/optim.h" /* enum values only: update.rule's names follow mlt_rule_t */

/* ---- keys ---- */

/* Every key set away from its default. Model cnn on idx data; the keys that
 * such a job must leave at zero (stop.target_rmse) are in all_keys_mf. */
static const char all_keys_text[] =
    "name = \"every-key\";\n"
    "seed = 5000000000L;\n"
    "workers = 7;\n"
    "backend = \"cuda\";\n"
    "output_dir = \"/srv/out\";\n"
    "on_worker_loss = \"fail\";\n"
    "worker_wait_s = 12.5;\n"
    "model = {\n"
    "  type = \"cnn\";\n"
    "  layers = [100, 50, 3];\n"
    "  cnn = [\"conv3x3x8\", \"pool3\", \"conv1x1x1024\", \"fc65536\", \"fc1\"];\n"
    "  rank = 1024;\n"
    "  l2 = 0.25;\n"
    "  metric = \"accuracy\";\n"
    "};\n"
    "data = {\n"
    "  format = \"idx\";\n"
    "  train_images = \"/d/ti\";\n"
    "  train_labels = \"/d/tl\";\n"
    "  test_images = \"/d/xi\";\n"
    "  test_labels = \"/d/xl\";\n"
    "  ratings = \"/d/ratings.dat\";\n"
    "  synthetic = { users = 100000; items = 200000; rank = 3; ratings = \"3G\"; noise = 0.0; };\n"
    "  validation = 0;\n"
    "  test_fraction = 0.25;\n"
    "  subset = 123;\n"
    "};\n"
    "update = { rule = \"sf-adamw\"; beta1 = 0.0; beta2 = 0.5; eps = 1e-6;\n"
    "  average = true; };\n"
    "tunables = {\n"
    "  lr = { default = 0.1; min = 0.001; max = 0.5; scale = \"log\"; tune = false; };\n"
    "  dropout = { default = -1.5; min = -2; max = 3.5; };\n"
    "  batch_size = { default = 64; values = [16, 64, 65536]; tune = true; };\n"
    "  ratio = { default = 0.5; values = (0.25, 0.5, 1); };\n"
    "};\n"
    "tuner = {\n"
    "  searcher = \"marginal\";\n"
    "  logic = \"train-to-completion\";\n"
    "  min_trial_clocks = 7;\n"
    "  max_overhead = 0.5;\n"
    "  retune_tests = 0;\n"
    "  converge_tests = 9;\n"
    "  range_clocks = 0;\n"
    "  first_trials = 3;\n"
    "  max_trials = 12;\n"
    "  gain_stop = 0.05;\n"
    "  plateau_t = 0;\n"
    "  decay = 0.3;\n"
    "  warm_start = \"\";\n"
    "};\n"
    "test_interval = 0.5;\n"
    "stop = { target_accuracy = 0.99; target_rmse = 0.0; max_epochs = 2.5; max_time_s = 3600;\n"
    "         plateau_tests = 6; };\n"
    "checkpoint_interval_s = 600.0;\n";

static const char all_keys_mf[] = "name = \"mf\";\n"
                                  "model = { type = \"mf\"; };\n"
                                  "data = { format = \"ratings\"; ratings = \"r.dat\"; };\n"
                                  "stop = { target_rmse = 0.75; };\n";

/* The paths the two texts above set: each key of the table, with groups. */
// clang-format off
static const char *const all_keys[] = {
    "name", "seed", "workers", "backend", "output_dir",
    "on_worker_loss", "worker_wait_s",
    "model", "model.type", "model.layers", "model.cnn", "model.rank", "model.l2",
    "model.metric",
    "data", "data.format", "data.train_images", "data.train_labels", "data.test_images",
    "data.test_labels", "data.ratings", "data.synthetic", "data.synthetic.users",
    "data.synthetic.items", "data.synthetic.rank", "data.synthetic.ratings",
    "data.synthetic.noise", "data.validation", "data.test_fraction", "data.subset",
    "update", "update.rule", "update.beta1", "update.beta2", "update.eps", "update.average",
    "tunables", "tunables.*.default", "tunables.*.min", "tunables.*.max", "tunables.*.scale",
    "tunables.*.values", "tunables.*.tune",
    "tuner", "tuner.searcher", "tuner.logic", "tuner.min_trial_clocks", "tuner.max_overhead",
    "tuner.retune_tests", "tuner.converge_tests", "tuner.range_clocks", "tuner.first_trials",
    "tuner.max_trials", "tuner.gain_stop", "tuner.plateau_t", "tuner.decay", "tuner.warm_start",
    "test_interval",
    "stop", "stop.target_accuracy", "stop.target_rmse", "stop.max_epochs", "stop.max_time_s",
    "stop.plateau_tests",
    "checkpoint_interval_s",
};

// clang-format on

#define N_ALL_KEYS (sizeof all_keys / sizeof all_keys[0])

START_TEST(test_keys_every_key)
{
    mlt_job_t job;
    jf_load_ok(all_keys_text, &job);
    ck_assert_str_eq(job.name, "every-key");
    ck_assert_int_eq(job.seed, 5000000000LL);
    ck_assert_int_eq(job.workers, 7);
    ck_assert_int_eq(job.backend, MLT_BACKEND_CUDA);
    ck_assert_str_eq(job.output_dir, "/srv/out");
    ck_assert(job.output_dir_given);
    ck_assert_int_eq(job.on_worker_loss, MLT_ON_LOSS_FAIL);
    ck_assert_double_eq(job.worker_wait_s, 12.5);
    ck_assert_int_eq(job.model.type, MLT_MODEL_CNN);
    ck_assert_uint_eq(job.model.n_layers, 3);
    ck_assert_uint_eq(job.model.layers[0], 100);
    ck_assert_uint_eq(job.model.layers[2], 3);
    ck_assert_uint_eq(job.model.n_cnn, 5);
    ck_assert_int_eq(job.model.cnn[0].op, MLT_CNN_CONV);
    ck_assert_uint_eq(job.model.cnn[0].k, 3);
    ck_assert_uint_eq(job.model.cnn[0].n, 8);
    ck_assert_int_eq(job.model.cnn[1].op, MLT_CNN_POOL);
    ck_assert_uint_eq(job.model.cnn[1].k, 3);
    ck_assert_uint_eq(job.model.cnn[2].k, 1);
    ck_assert_uint_eq(job.model.cnn[2].n, 1024);
    ck_assert_int_eq(job.model.cnn[3].op, MLT_CNN_FC);
    ck_assert_uint_eq(job.model.cnn[3].n, 65536);
    ck_assert_uint_eq(job.model.cnn[4].n, 1);
    ck_assert_int_eq(job.model.rank, 1024);
    ck_assert_double_eq(job.model.l2, 0.25);
    ck_assert_int_eq(job.model.metric, MLT_METRIC_ACCURACY);
    ck_assert_int_eq(job.data.format, MLT_DATA_IDX);
    ck_assert_str_eq(job.data.train_images, "/d/ti");
    ck_assert_str_eq(job.data.train_labels, "/d/tl");
    ck_assert_str_eq(job.data.test_images, "/d/xi");
    ck_assert_str_eq(job.data.test_labels, "/d/xl");
    ck_assert_str_eq(job.data.ratings, "/d/ratings.dat");
    ck_assert_int_eq(job.data.synthetic.users, 100000);
    ck_assert_int_eq(job.data.synthetic.items, 200000);
    ck_assert_int_eq(job.data.synthetic.rank, 3);
    ck_assert_int_eq(job.data.synthetic.ratings, 3000000000LL);
    ck_assert_double_eq(job.data.synthetic.noise, 0.0);
    ck_assert_int_eq(job.data.validation, 0);
    ck_assert_double_eq(job.data.test_fraction, 0.25);
    ck_assert_int_eq(job.data.subset, 123);
    ck_assert_int_eq(job.update.rule, MLT_RULE_SF_ADAMW);
    ck_assert_double_eq(job.update.beta1, 0.0);
    ck_assert_double_eq(job.update.beta2, 0.5);
    ck_assert_double_eq(job.update.eps, 1e-6);
    ck_assert(job.update.average);

    ck_assert_uint_eq(job.n_tunables, 4);
    const mlt_tunable_t *t = &job.tunables[0];
    ck_assert_str_eq(t->name, "lr");
    ck_assert_int_eq(t->kind, MLT_TUNABLE_LOG);
    ck_assert_double_eq(t->def, 0.1);
    ck_assert_double_eq(t->min, 0.001);
    ck_assert_double_eq(t->max, 0.5);
    ck_assert(!t->tune);
    ck_assert_ptr_null(t->values);
    t = &job.tunables[1];
    ck_assert_str_eq(t->name, "dropout");
    ck_assert_int_eq(t->kind, MLT_TUNABLE_LINEAR); /* the default scale */
    ck_assert_double_eq(t->def, -1.5);
    ck_assert_double_eq(t->min, -2);
    ck_assert(t->tune); /* the default */
    t = &job.tunables[2];
    ck_assert_str_eq(t->name, "batch_size");
    ck_assert_int_eq(t->kind, MLT_TUNABLE_DISCRETE);
    ck_assert_uint_eq(t->n_values, 3);
    ck_assert_double_eq(t->values[1], 64);
    ck_assert_double_eq(t->min, 16);
    ck_assert_double_eq(t->max, 65536);
    t = &job.tunables[3];
    ck_assert_str_eq(t->name, "ratio");
    ck_assert_double_eq(t->values[0], 0.25);
    ck_assert_double_eq(t->values[2], 1.0);

    ck_assert_int_eq(job.tuner.searcher, MLT_SEARCHER_MARGINAL);
    ck_assert_int_eq(job.tuner.logic, MLT_LOGIC_TTC);
    ck_assert_int_eq(job.tuner.min_trial_clocks, 7);
    ck_assert_double_eq(job.tuner.max_overhead, 0.5);
    ck_assert_int_eq(job.tuner.retune_tests, 0);
    ck_assert_int_eq(job.tuner.converge_tests, 9);
    ck_assert_int_eq(job.tuner.range_clocks, 0);
    ck_assert_int_eq(job.tuner.first_trials, 3);
    ck_assert_int_eq(job.tuner.max_trials, 12);
    ck_assert_double_eq(job.tuner.gain_stop, 0.05);
    ck_assert_double_eq(job.tuner.plateau_t, 0.0);
    ck_assert_double_eq(job.tuner.decay, 0.3);
    ck_assert_str_eq(job.tuner.warm_start, "");
    ck_assert_double_eq(job.test_interval, 0.5);
    ck_assert_double_eq(job.stop.target_accuracy, 0.99);
    ck_assert_double_eq(job.stop.max_epochs, 2.5);
    ck_assert_double_eq(job.stop.max_time_s, 3600.0);
    ck_assert_int_eq(job.stop.plateau_tests, 6);
    ck_assert_double_eq(job.checkpoint_interval_s, 600.0);
    ck_assert_str_eq(job.text, all_keys_text);
    jf_assert_format_roundtrip(&job);
    mlt_job_free(&job);

    jf_load_ok(all_keys_mf, &job);
    ck_assert_int_eq(job.model.type, MLT_MODEL_MF);
    ck_assert_int_eq(job.data.format, MLT_DATA_RATINGS);
    ck_assert_str_eq(job.data.ratings, "r.dat");
    ck_assert_double_eq(job.stop.target_rmse, 0.75);
    jf_assert_format_roundtrip(&job);
    mlt_job_free(&job);
}
END_TEST

/* The documented key list and the keys this test sets are the same set. */
START_TEST(test_keys_documented)
{
    size_t n;
    char **doc = jf_documented_keys(&n);
    for (size_t i = 0; i < N_ALL_KEYS; i++) {
        bool found = false;
        for (size_t j = 0; j < n; j++)
            found |= strcmp(doc[j], all_keys[i]) == 0;
        ck_assert_msg(found, "key %s is not in the documented key list", all_keys[i]);
    }
    for (size_t j = 0; j < n; j++) {
        bool found = false;
        for (size_t i = 0; i < N_ALL_KEYS; i++)
            found |= strcmp(doc[j], all_keys[i]) == 0;
        ck_assert_msg(found, "documented key %s is not tested (add it to all_keys)", doc[j]);
    }
    ck_assert_uint_eq(n, N_ALL_KEYS);
    jf_keys_free(doc, n);
}
END_TEST

START_TEST(test_keys_defaults)
{
    mlt_job_t job;
    jf_load_ok(JF_BASE, &job);
    ck_assert_int_eq(job.seed, 1);
    ck_assert_int_eq(job.workers, 2);
    ck_assert_int_eq(job.backend, MLT_BACKEND_AUTO);
    ck_assert_str_eq(job.output_dir, "out/t");
    ck_assert(!job.output_dir_given);
    ck_assert_uint_eq(job.model.n_cnn, 0);
    ck_assert_ptr_null(job.model.cnn);
    ck_assert_int_eq(job.model.rank, 20);
    ck_assert_double_eq(job.model.l2, 0.0);
    ck_assert_int_eq(job.data.format, MLT_DATA_IDX);
    ck_assert_str_eq(job.data.train_images,
                     "/usr/share/datasets/fashion-mnist/train-images-idx3-ubyte.gz");
    ck_assert_str_eq(job.data.train_labels,
                     "/usr/share/datasets/fashion-mnist/train-labels-idx1-ubyte.gz");
    ck_assert_str_eq(job.data.test_images,
                     "/usr/share/datasets/fashion-mnist/t10k-images-idx3-ubyte.gz");
    ck_assert_str_eq(job.data.test_labels,
                     "/usr/share/datasets/fashion-mnist/t10k-labels-idx1-ubyte.gz");
    ck_assert_str_eq(job.data.ratings, "");
    ck_assert_int_eq(job.data.synthetic.users, 10000);
    ck_assert_int_eq(job.data.synthetic.items, 5000);
    ck_assert_int_eq(job.data.synthetic.rank, 20);
    ck_assert_int_eq(job.data.synthetic.ratings, 1000000);
    ck_assert_double_eq(job.data.synthetic.noise, 0.5);
    ck_assert_int_eq(job.data.validation, 5000);
    ck_assert_double_eq(job.data.test_fraction, 0.1);
    ck_assert_int_eq(job.data.subset, 0);
    ck_assert_int_eq(job.update.rule, MLT_RULE_SGD);
    ck_assert_double_eq(job.update.beta1, 0.9);
    ck_assert_double_eq(job.update.beta2, 0.999);
    ck_assert_double_eq(job.update.eps, 1e-8);
    ck_assert(!job.update.average);
    ck_assert_uint_eq(job.n_tunables, 0);
    ck_assert_ptr_null(job.tunables);
    ck_assert_int_eq(job.tuner.searcher, MLT_SEARCHER_BAYES);
    ck_assert_int_eq(job.tuner.logic, MLT_LOGIC_MLTUNER);
    ck_assert_int_eq(job.tuner.min_trial_clocks, 50);
    ck_assert_double_eq(job.tuner.max_overhead, 0.1);
    ck_assert_int_eq(job.tuner.retune_tests, 4);
    ck_assert_int_eq(job.tuner.converge_tests, 5);
    ck_assert_int_eq(job.tuner.range_clocks, 64);
    ck_assert_int_eq(job.tuner.first_trials, 4);
    ck_assert_int_eq(job.tuner.max_trials, 8);
    ck_assert_double_eq(job.tuner.gain_stop, 0.02);
    ck_assert_double_eq(job.tuner.plateau_t, 2.0);
    ck_assert_double_eq(job.tuner.decay, 0.5);
    ck_assert_str_eq(job.tuner.warm_start, "auto");
    ck_assert_double_eq(job.test_interval, 1.0);
    ck_assert_double_eq(job.stop.target_accuracy, 0.0);
    ck_assert_double_eq(job.stop.target_rmse, 0.0);
    ck_assert_double_eq(job.stop.max_epochs, 10.0);
    ck_assert_double_eq(job.stop.max_time_s, 0.0);
    ck_assert_int_eq(job.stop.plateau_tests, 0);
    ck_assert_double_eq(job.checkpoint_interval_s, 60.0);
    /* no tunables: the caller's fallback */
    ck_assert_double_eq(mlt_job_default(&job, "lr", 0.03), 0.03);
    ck_assert_ptr_null(mlt_job_tunable(&job, "lr"));
    jf_assert_format_roundtrip(&job);
    mlt_job_free(&job);
    mlt_job_free(&job); /* freed: safe again */
    ck_assert_ptr_null(job.name);
}
END_TEST

START_TEST(test_keys_lookup_and_enums)
{
    mlt_job_t job;
    jf_load_ok(JF_BASE "tunables = { lr = { default = 0.05; min = 0.001; max = 1.0; }; };\n", &job);
    ck_assert_double_eq(mlt_job_default(&job, "lr", 7.0), 0.05);
    ck_assert_double_eq(mlt_job_default(&job, "momentum", 7.0), 7.0);
    ck_assert_ptr_eq(mlt_job_tunable(&job, "lr"), &job.tunables[0]);
    ck_assert_ptr_null(mlt_job_tunable(&job, "LR"));
    ck_assert_ptr_null(mlt_job_tunable(&job, NULL));
    mlt_job_free(&job);

    /* update.rule follows mlt_rule_t of kernels/optim.h */
    ck_assert_str_eq(mlt_job_enum_name("update.rule", MLT_RULE_SGD), "sgd");
    ck_assert_str_eq(mlt_job_enum_name("update.rule", MLT_RULE_NESTEROV), "nesterov");
    ck_assert_str_eq(mlt_job_enum_name("update.rule", MLT_RULE_ADAM), "adam");
    ck_assert_str_eq(mlt_job_enum_name("update.rule", MLT_RULE_RMSPROP), "rmsprop");
    ck_assert_str_eq(mlt_job_enum_name("update.rule", MLT_RULE_ADAGRAD), "adagrad");
    ck_assert_str_eq(mlt_job_enum_name("update.rule", MLT_RULE_ADADELTA), "adadelta");
    ck_assert_str_eq(mlt_job_enum_name("update.rule", MLT_RULE_SF_SGD), "sf-sgd");
    ck_assert_str_eq(mlt_job_enum_name("update.rule", MLT_RULE_SF_ADAMW), "sf-adamw");
    ck_assert_ptr_null(mlt_job_enum_name("update.rule", MLT_RULE_COUNT_));
    ck_assert_str_eq(mlt_job_enum_name("backend", MLT_BACKEND_CUDA), "cuda");
    ck_assert_str_eq(mlt_job_enum_name("model.type", MLT_MODEL_SOFTMAX), "softmax");
    ck_assert_str_eq(mlt_job_enum_name("data.format", MLT_DATA_SYNTHETIC), "synthetic");
    ck_assert_str_eq(mlt_job_enum_name("tuner.searcher", MLT_SEARCHER_TPE), "tpe");
    ck_assert_str_eq(mlt_job_enum_name("tuner.logic", MLT_LOGIC_HYPERBAND), "hyperband");
    ck_assert_str_eq(mlt_job_enum_name("tuner.logic", MLT_LOGIC_FIXED), "fixed");
    ck_assert_str_eq(mlt_job_enum_name("tunables.*.scale", MLT_TUNABLE_LOG), "log");
    ck_assert_ptr_null(mlt_job_enum_name("tunables.*.scale", MLT_TUNABLE_DISCRETE));
    ck_assert_ptr_null(mlt_job_enum_name("workers", 0));
    ck_assert_ptr_null(mlt_job_enum_name("nope", 0));
    ck_assert_ptr_null(mlt_job_enum_name("backend", -1));
}
END_TEST

/* Counts past 32 bits: an L suffix or a "1M"-style string; a bare literal
 * that libconfig 1.5 would wrap is refused. */
START_TEST(test_keys_int64)
{
    mlt_job_t job;
    const char *head = "name = \"m\";\nmodel = { type = \"mf\"; };\n";
    char text[512];
    snprintf(text, sizeof text,
             "%sdata = { format = \"synthetic\"; synthetic = { users = 100000; items = 100000; "
             "ratings = 5000000000L; }; };\n",
             head);
    jf_load_ok(text, &job);
    ck_assert_int_eq(job.data.synthetic.ratings, 5000000000LL);
    mlt_job_free(&job);
    snprintf(text, sizeof text,
             "%sdata = { format = \"synthetic\"; synthetic = { ratings = \"2M\"; }; subset = "
             "\"10k\"; };\n",
             head);
    jf_load_ok(text, &job);
    ck_assert_int_eq(job.data.synthetic.ratings, 2000000);
    ck_assert_int_eq(job.data.subset, 10000);
    mlt_job_free(&job);
    snprintf(text, sizeof text,
             "%sdata = { format = \"synthetic\";\n synthetic = { ratings = 5000000000; }; };\n",
             head);
    jf_expect_error(text, 4,
                    "integer 5000000000 does not fit in 32 bits; write 5000000000L (or a count "
                    "string such as \"1M\")");
    snprintf(text, sizeof text,
             "%sdata = { format = \"synthetic\";\n synthetic = { ratings = \"2X\"; }; };\n", head);
    jf_expect_error(text, 4,
                    "data.synthetic.ratings must be an integer or a count such as \"1M\" (got "
                    "\"2X\")");
    snprintf(text, sizeof text,
             "%sdata = { format = \"synthetic\";\n synthetic = { ratings = \"200G\"; }; };\n",
             head);
    jf_expect_error(text, 4,
                    "data.synthetic.ratings must be between 1 and 100000000000 (got 200000000000)");
}
END_TEST

void jf_keys_tcases(Suite *s)
{
    TCase *tc = tcase_create("keys");
    tcase_add_test(tc, test_keys_every_key);
    tcase_add_test(tc, test_keys_documented);
    tcase_add_test(tc, test_keys_defaults);
    tcase_add_test(tc, test_keys_lookup_and_enums);
    tcase_add_test(tc, test_keys_int64);
    suite_add_tcase(s, tc);
}
