/* check_jobfile.c - job files (common/jobfile.c): the shipped conf/jobs/
 * files, every key of the table from a written file and back through
 * mlt_job_format, the documented key list, the exact errors a user sees,
 * overrides with mlt_job_set, and parsing from a string (as workers do).
 *
 * The shipped files are found under $MLT_SOURCE_ROOT (default "."). Temporary
 * files are made with mkstemp under $TMPDIR (default /tmp) and removed.
 *
 * This file has the shared helpers (check_jobfile.h), the shipped files and
 * the suite; the other TCases are in check_jobfile_keys.c,
 * check_jobfile_errors.c and check_jobfile_set.c. */
#include "tests/unit/testutil.h"
#include "tests/unit/check_jobfile.h"

#include <check.h>
#include <dirent.h>
#include <errno.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <libconfig.h>

#include "common/alloc.h"
#include "kernels/optim.h" /* enum values only: update.rule's names follow mlt_rule_t */
#include "proto/limits.h"

_Static_assert(MLT_JOB_MAX_TEXT == MLT_MAX_JOB_TEXT, "job text limit differs from the wire's");
_Static_assert(MLT_JOB_MAX_NAME == MLT_MAX_NAME_LEN, "name limit differs from the wire's");
_Static_assert(MLT_JOB_MAX_PATH == MLT_MAX_PATH_LEN, "path limit differs from the wire's");

/* ---- helpers ---- */

char *jf_tmp_file(const char *text, size_t n)
{
    return tmp_file_tagged("check_jobfile", text, n);
}

static char *tmp_conf(const char *text)
{
    return jf_tmp_file(text, strlen(text));
}

/* Loads text from a temporary file. Returns load's code; the path in *pathp
 * when asked for (else dropped). */
static int load_text(const char *text, mlt_job_t *job, char *err, size_t errlen, char **pathp)
{
    char *path = tmp_conf(text);
    int rc = mlt_job_load(path, job, err, errlen);
    if (pathp)
        *pathp = path;
    else
        tmp_drop(path);
    return rc;
}

void jf_load_ok(const char *text, mlt_job_t *job)
{
    char err[512] = "";
    int rc = load_text(text, job, err, sizeof err, NULL);
    ck_assert_msg(rc == 0, "load failed: %s", err);
}

/* The file must be refused with -EINVAL and exactly "PATH:LINE: exact"
 * ("PATH: exact" for line 0); the job stays zeroed. */
void jf_expect_error(const char *text, int line, const char *exact)
{
    mlt_job_t job;
    char err[1024] = "", want[PATH_MAX + 700];
    char *path = NULL;
    memset(&job, 0x5a, sizeof job);
    int rc = load_text(text, &job, err, sizeof err, &path);
    ck_assert_msg(rc == -EINVAL, "rc %d for %s", rc, text);
    if (line)
        snprintf(want, sizeof want, "%s:%d: %s", path, line, exact);
    else
        snprintf(want, sizeof want, "%s: %s", path, exact);
    ck_assert_str_eq(err, want);
    ck_assert_ptr_null(job.name);
    ck_assert_ptr_null(job.text);
    ck_assert_ptr_null(job.tunables);
    tmp_drop(path);
}

static void assert_tunable_eq(const mlt_tunable_t *a, const mlt_tunable_t *b)
{
    ck_assert_str_eq(a->name, b->name);
    ck_assert_int_eq(a->kind, b->kind);
    ck_assert_double_eq(a->min, b->min);
    ck_assert_double_eq(a->max, b->max);
    ck_assert_double_eq(a->def, b->def);
    ck_assert_uint_eq(a->n_values, b->n_values);
    for (uint32_t i = 0; i < a->n_values; i++)
        ck_assert_double_eq(a->values[i], b->values[i]);
    ck_assert_int_eq(a->tune, b->tune);
}

/* every field but text */
void jf_assert_job_eq(const mlt_job_t *a, const mlt_job_t *b)
{
    ck_assert_str_eq(a->name, b->name);
    ck_assert_int_eq(a->seed, b->seed);
    ck_assert_int_eq(a->workers, b->workers);
    ck_assert_int_eq(a->backend, b->backend);
    ck_assert_str_eq(a->output_dir, b->output_dir);
    ck_assert_int_eq(a->output_dir_given, b->output_dir_given);
    ck_assert_int_eq(a->model.type, b->model.type);
    ck_assert_uint_eq(a->model.n_layers, b->model.n_layers);
    for (uint32_t i = 0; i < a->model.n_layers; i++)
        ck_assert_uint_eq(a->model.layers[i], b->model.layers[i]);
    ck_assert_uint_eq(a->model.n_cnn, b->model.n_cnn);
    for (uint32_t i = 0; i < a->model.n_cnn; i++) {
        ck_assert_int_eq(a->model.cnn[i].op, b->model.cnn[i].op);
        ck_assert_uint_eq(a->model.cnn[i].k, b->model.cnn[i].k);
        ck_assert_uint_eq(a->model.cnn[i].n, b->model.cnn[i].n);
    }
    ck_assert_int_eq(a->model.rank, b->model.rank);
    ck_assert_double_eq(a->model.l2, b->model.l2);
    ck_assert_int_eq(a->data.format, b->data.format);
    ck_assert_str_eq(a->data.train_images, b->data.train_images);
    ck_assert_str_eq(a->data.train_labels, b->data.train_labels);
    ck_assert_str_eq(a->data.test_images, b->data.test_images);
    ck_assert_str_eq(a->data.test_labels, b->data.test_labels);
    ck_assert_str_eq(a->data.ratings, b->data.ratings);
    ck_assert_int_eq(a->data.synthetic.users, b->data.synthetic.users);
    ck_assert_int_eq(a->data.synthetic.items, b->data.synthetic.items);
    ck_assert_int_eq(a->data.synthetic.rank, b->data.synthetic.rank);
    ck_assert_int_eq(a->data.synthetic.ratings, b->data.synthetic.ratings);
    ck_assert_double_eq(a->data.synthetic.noise, b->data.synthetic.noise);
    ck_assert_int_eq(a->data.validation, b->data.validation);
    ck_assert_double_eq(a->data.test_fraction, b->data.test_fraction);
    ck_assert_int_eq(a->data.subset, b->data.subset);
    ck_assert_int_eq(a->update.rule, b->update.rule);
    ck_assert_double_eq(a->update.beta1, b->update.beta1);
    ck_assert_double_eq(a->update.beta2, b->update.beta2);
    ck_assert_double_eq(a->update.eps, b->update.eps);
    ck_assert_uint_eq(a->n_tunables, b->n_tunables);
    for (uint32_t i = 0; i < a->n_tunables; i++)
        assert_tunable_eq(&a->tunables[i], &b->tunables[i]);
    ck_assert_int_eq(a->tuner.searcher, b->tuner.searcher);
    ck_assert_int_eq(a->tuner.logic, b->tuner.logic);
    ck_assert_int_eq(a->tuner.min_trial_clocks, b->tuner.min_trial_clocks);
    ck_assert_double_eq(a->tuner.max_overhead, b->tuner.max_overhead);
    ck_assert_int_eq(a->tuner.retune_tests, b->tuner.retune_tests);
    ck_assert_int_eq(a->tuner.converge_tests, b->tuner.converge_tests);
    ck_assert_int_eq(a->tuner.range_clocks, b->tuner.range_clocks);
    ck_assert_int_eq(a->tuner.first_trials, b->tuner.first_trials);
    ck_assert_int_eq(a->tuner.max_trials, b->tuner.max_trials);
    ck_assert_double_eq(a->tuner.gain_stop, b->tuner.gain_stop);
    ck_assert_double_eq(a->tuner.plateau_t, b->tuner.plateau_t);
    ck_assert_double_eq(a->tuner.decay, b->tuner.decay);
    ck_assert_str_eq(a->tuner.warm_start, b->tuner.warm_start);
    ck_assert_double_eq(a->test_interval, b->test_interval);
    ck_assert_double_eq(a->stop.target_accuracy, b->stop.target_accuracy);
    ck_assert_double_eq(a->stop.target_rmse, b->stop.target_rmse);
    ck_assert_double_eq(a->stop.max_epochs, b->stop.max_epochs);
    ck_assert_double_eq(a->stop.max_time_s, b->stop.max_time_s);
    ck_assert_int_eq(a->stop.plateau_tests, b->stop.plateau_tests);
    ck_assert_double_eq(a->checkpoint_interval_s, b->checkpoint_interval_s);
}

/* mlt_job_format, parsed again, gives the same job */
void jf_assert_format_roundtrip(const mlt_job_t *job)
{
    char err[512] = "";
    char *text = mlt_job_format(job);
    mlt_job_t again;
    int rc = mlt_job_parse_string(text, "formatted", &again, err, sizeof err);
    ck_assert_msg(rc == 0, "formatted job refused: %s\n%s", err, text);
    jf_assert_job_eq(job, &again);
    ck_assert_str_eq(again.text, text);
    mlt_job_free(&again);
    mlt_free(text);
}

static char *slurp_path(const char *path)
{
    FILE *f = fopen(path, "r");
    ck_assert_msg(f != NULL, "%s: %s", path, strerror(errno));
    size_t cap = 4096, len = 0, n;
    char *buf = mlt_malloc(cap);
    while ((n = fread(buf + len, 1, cap - len - 1, f)) > 0) {
        len += n;
        if (len + 1 == cap)
            buf = mlt_realloc(buf, cap *= 2);
    }
    fclose(f);
    buf[len] = '\0';
    return buf;
}

/* The documented key list: the first word of each line of
 * mlt_job_write_keys(), as a NULL-terminated array (caller frees). */
char **jf_documented_keys(size_t *np)
{
    char *buf = NULL;
    size_t len = 0;
    FILE *f = open_memstream(&buf, &len);
    ck_assert_ptr_nonnull(f);
    mlt_job_write_keys(f);
    fclose(f);
    size_t n = 0, cap = 128;
    char **keys = mlt_calloc(cap, sizeof *keys);
    for (char *line = strtok(buf, "\n"); line; line = strtok(NULL, "\n")) {
        size_t w = strcspn(line, " ");
        ck_assert_msg(w > 0 && line[w] == ' ', "key list line '%s' has no key", line);
        ck_assert_msg(strlen(line) > w + 30, "key list line '%s' has no description", line);
        ck_assert(n + 1 < cap);
        keys[n] = mlt_malloc(w + 1);
        memcpy(keys[n], line, w);
        keys[n++][w] = '\0';
    }
    free(buf);
    *np = n;
    return keys;
}

void jf_keys_free(char **keys, size_t n)
{
    for (size_t i = 0; i < n; i++)
        mlt_free(keys[i]);
    mlt_free(keys);
}

void jf_load_shipped(const char *rel, mlt_job_t *job)
{
    char *path = source_path(rel);
    char err[512] = "";
    int rc = mlt_job_load(path, job, err, sizeof err);
    ck_assert_msg(rc == 0, "%s: %s", path, err);
    mlt_free(path);
}

/* ---- shipped ---- */

/* Checks one shipped file: parses, keeps its text, sets every documented key
 * (tunables' members aside) and formats back to the same job. */
static void check_shipped_file(const char *path, mlt_job_t *job)
{
    char err[512] = "";
    int rc = mlt_job_load(path, job, err, sizeof err);
    ck_assert_msg(rc == 0, "%s: %s", path, err);
    char *text = slurp_path(path);
    ck_assert_str_eq(job->text, text);
    ck_assert_int_eq(mlt_job_validate(job, err, sizeof err), 0);

    config_t cfg;
    config_init(&cfg);
    ck_assert(config_read_string(&cfg, text));
    size_t n;
    char **keys = jf_documented_keys(&n);
    for (size_t i = 0; i < n; i++) {
        if (strncmp(keys[i], "tunables.", 9) == 0)
            continue;
        ck_assert_msg(config_lookup(&cfg, keys[i]) != NULL, "%s does not list key %s", path,
                      keys[i]);
    }
    jf_keys_free(keys, n);
    config_destroy(&cfg);
    mlt_free(text);
    jf_assert_format_roundtrip(job);
}

START_TEST(test_shipped_all_parse)
{
    char *dir = source_path("conf/jobs");
    DIR *d = opendir(dir);
    ck_assert_msg(d != NULL, "%s: %s (set MLT_SOURCE_ROOT)", dir, strerror(errno));
    int n = 0;
    struct dirent *e;
    while ((e = readdir(d)) != NULL) {
        size_t len = strlen(e->d_name);
        if (len < 6 || strcmp(e->d_name + len - 5, ".conf") != 0)
            continue;
        char path[PATH_MAX];
        snprintf(path, sizeof path, "%s/%s", dir, e->d_name);
        mlt_job_t job;
        check_shipped_file(path, &job);
        /* each file's name is its job's name */
        ck_assert_int_eq(strncmp(e->d_name, job.name, len - 5), 0);
        ck_assert_uint_eq(strlen(job.name), len - 5);
        mlt_job_free(&job);
        n++;
    }
    closedir(d);
    mlt_free(dir);
    ck_assert_int_ge(n, 3);
}
END_TEST

/* the tunables the fmnist workloads share: the learning rate (log scale,
 * default lr_def), the batch size and the staleness, all tuned, and sgd's
 * momentum */
static void check_fmnist_tunables(const mlt_job_t *job, double lr_def)
{
    const mlt_tunable_t *lr = mlt_job_tunable(job, "lr");
    ck_assert_ptr_nonnull(lr);
    ck_assert_int_eq(lr->kind, MLT_TUNABLE_LOG);
    ck_assert_double_eq(lr->def, lr_def);
    ck_assert(lr->tune);
    const mlt_tunable_t *m = mlt_job_tunable(job, "momentum");
    ck_assert_ptr_nonnull(m);
    ck_assert_int_eq(m->kind, MLT_TUNABLE_LINEAR);
    ck_assert_double_eq(m->max, 0.99);
    const mlt_tunable_t *b = mlt_job_tunable(job, "batch_size");
    ck_assert_int_eq(b->kind, MLT_TUNABLE_DISCRETE);
    ck_assert_uint_eq(b->n_values, 5);
    ck_assert_double_eq(b->min, 32);
    ck_assert_double_eq(b->max, 512);
    ck_assert_double_eq(b->def, 128);
    ck_assert(b->tune);
    const mlt_tunable_t *s = mlt_job_tunable(job, "staleness");
    ck_assert_uint_eq(s->n_values, 4);
    ck_assert_double_eq(s->def, 0);
    ck_assert(s->tune);
}

START_TEST(test_shipped_fmnist_mlp)
{
    mlt_job_t job;
    jf_load_shipped("conf/jobs/fmnist-mlp.conf", &job);
    ck_assert_str_eq(job.name, "fmnist-mlp");
    ck_assert_int_eq(job.model.type, MLT_MODEL_MLP);
    ck_assert_uint_eq(job.model.n_layers, 2);
    ck_assert_uint_eq(job.model.layers[0], 256);
    ck_assert_uint_eq(job.model.layers[1], 256);
    ck_assert_int_eq(job.data.format, MLT_DATA_IDX);
    ck_assert_int_eq(job.workers, 2);
    ck_assert_int_eq(job.seed, 1);
    ck_assert_double_eq(job.test_interval, 1.0);
    ck_assert_double_eq(job.stop.target_accuracy, 0.88);
    ck_assert_double_eq(job.stop.max_epochs, 30.0);
    ck_assert_str_eq(job.output_dir, "out/fmnist-mlp");
    /* schedule-free AdamW: its interpolation beta1 tuned, momentum unused */
    ck_assert_str_eq(mlt_job_enum_name("update.rule", job.update.rule), "sf-adamw");
    check_fmnist_tunables(&job, 0.0025);
    ck_assert_uint_eq(job.n_tunables, 5);
    const mlt_tunable_t *b1 = mlt_job_tunable(&job, "beta1");
    ck_assert_ptr_nonnull(b1);
    ck_assert(b1->tune);
    ck_assert_double_eq(b1->def, 0.9);
    ck_assert(!mlt_job_tunable(&job, "momentum")->tune);
    mlt_job_free(&job);
}
END_TEST

START_TEST(test_shipped_fmnist_cnn)
{
    mlt_job_t job;
    jf_load_shipped("conf/jobs/fmnist-cnn.conf", &job);
    ck_assert_int_eq(job.model.type, MLT_MODEL_CNN);
    /* conv5x5x32-pool2-conv5x5x64-pool2-fc256 (-fc10 implied) */
    static const mlt_cnn_layer_t want[] = {{MLT_CNN_CONV, 5, 32},
                                           {MLT_CNN_POOL, 2, 0},
                                           {MLT_CNN_CONV, 5, 64},
                                           {MLT_CNN_POOL, 2, 0},
                                           {MLT_CNN_FC, 0, 256}};
    ck_assert_uint_eq(job.model.n_cnn, 5);
    for (int i = 0; i < 5; i++) {
        ck_assert_int_eq(job.model.cnn[i].op, want[i].op);
        ck_assert_uint_eq(job.model.cnn[i].k, want[i].k);
        ck_assert_uint_eq(job.model.cnn[i].n, want[i].n);
    }
    ck_assert_double_eq(job.stop.target_accuracy, 0.905);
    ck_assert_double_eq(job.stop.max_epochs, 6.0);
    check_fmnist_tunables(&job, 0.01);
    ck_assert_uint_eq(job.n_tunables, 4);
    ck_assert(mlt_job_tunable(&job, "momentum")->tune);
    mlt_job_free(&job);
}
END_TEST

START_TEST(test_shipped_mf_synth)
{
    mlt_job_t job;
    jf_load_shipped("conf/jobs/mf-synth.conf", &job);
    ck_assert_int_eq(job.model.type, MLT_MODEL_MF);
    ck_assert_int_eq(job.model.rank, 20);
    ck_assert_int_eq(job.data.format, MLT_DATA_SYNTHETIC);
    ck_assert_int_eq(job.data.synthetic.users, 10000);
    ck_assert_int_eq(job.data.synthetic.items, 5000);
    ck_assert_int_eq(job.data.synthetic.ratings, 1000000);
    ck_assert_double_eq(job.data.synthetic.noise, 0.5);
    ck_assert_double_eq(job.stop.target_rmse, 0.51);
    ck_assert_double_eq(job.stop.target_accuracy, 0.0);
    ck_assert_int_eq(job.update.rule, MLT_RULE_SGD);
    ck_assert_uint_eq(job.n_tunables, 3);
    ck_assert_ptr_nonnull(mlt_job_tunable(&job, "lr"));
    ck_assert_ptr_nonnull(mlt_job_tunable(&job, "momentum"));
    ck_assert_ptr_nonnull(mlt_job_tunable(&job, "batch_size"));
    ck_assert_ptr_null(mlt_job_tunable(&job, "staleness"));
    mlt_job_free(&job);
}
END_TEST

static Suite *jobfile_suite(void)
{
    Suite *s = suite_create("jobfile");
    TCase *tc = tcase_create("shipped");
    tcase_add_test(tc, test_shipped_all_parse);
    tcase_add_test(tc, test_shipped_fmnist_mlp);
    tcase_add_test(tc, test_shipped_fmnist_cnn);
    tcase_add_test(tc, test_shipped_mf_synth);
    suite_add_tcase(s, tc);

    jf_keys_tcases(s);
    jf_errors_tcases(s);
    jf_set_tcases(s);
    return s;
}

int main(void)
{
    SRunner *sr = srunner_create(jobfile_suite());
    srunner_run_all(sr, CK_NORMAL);
    int failed = srunner_ntests_failed(sr);
    srunner_free(sr);
    return failed == 0 ? EXIT_SUCCESS : EXIT_FAILURE;
}
