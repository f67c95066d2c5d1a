/* check_jobfile.c - job files (common/jobfile.c): the shipped conf/jobs/
 * files, every key of the table from a written file and back through
 * mlt_job_format, the documented key list, the exact errors a user sees,
 * overrides with mlt_job_set, and parsing from a string (as workers do).
 *
 * The shipped files are found under $MLT_SOURCE_ROOT (default "."). Temporary
 * files are made with mkstemp under $TMPDIR (default /tmp) and removed. */
#include "tests/unit/testutil.h"
#include "common/jobfile.h"

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

static char *tmp_file(const char *text, size_t n)
{
    return tmp_file_tagged("check_jobfile", text, n);
}

static char *tmp_conf(const char *text)
{
    return tmp_file(text, strlen(text));
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

static void load_ok(const char *text, mlt_job_t *job)
{
    char err[512] = "";
    int rc = load_text(text, job, err, sizeof err, NULL);
    ck_assert_msg(rc == 0, "load failed: %s", err);
}

/* The file must be refused with -EINVAL and exactly "PATH:LINE: exact"
 * ("PATH: exact" for line 0); the job stays zeroed. */
static void expect_error(const char *text, int line, const char *exact)
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
static void assert_job_eq(const mlt_job_t *a, const mlt_job_t *b)
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
    ck_assert_double_eq(a->tuner.slope_agree, b->tuner.slope_agree);
    ck_assert_int_eq(a->tuner.top_k, b->tuner.top_k);
    ck_assert_double_eq(a->tuner.retune_time_factor, b->tuner.retune_time_factor);
    ck_assert_double_eq(a->test_interval, b->test_interval);
    ck_assert_double_eq(a->stop.target_accuracy, b->stop.target_accuracy);
    ck_assert_double_eq(a->stop.target_rmse, b->stop.target_rmse);
    ck_assert_double_eq(a->stop.max_epochs, b->stop.max_epochs);
    ck_assert_double_eq(a->stop.max_time_s, b->stop.max_time_s);
    ck_assert_int_eq(a->stop.plateau_tests, b->stop.plateau_tests);
    ck_assert_double_eq(a->checkpoint_interval_s, b->checkpoint_interval_s);
}

/* mlt_job_format, parsed again, gives the same job */
static void assert_format_roundtrip(const mlt_job_t *job)
{
    char err[512] = "";
    char *text = mlt_job_format(job);
    mlt_job_t again;
    int rc = mlt_job_parse_string(text, "formatted", &again, err, sizeof err);
    ck_assert_msg(rc == 0, "formatted job refused: %s\n%s", err, text);
    assert_job_eq(job, &again);
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
static char **documented_keys(size_t *np)
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

static void keys_free(char **keys, size_t n)
{
    for (size_t i = 0; i < n; i++)
        mlt_free(keys[i]);
    mlt_free(keys);
}

/* A minimal valid job: the error tests add to it. Two lines. */
#define BASE "name = \"t\";\nmodel = { type = \"mlp\"; layers = [256]; };\n"

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
    char **keys = documented_keys(&n);
    for (size_t i = 0; i < n; i++) {
        if (strncmp(keys[i], "tunables.", 9) == 0)
            continue;
        ck_assert_msg(config_lookup(&cfg, keys[i]) != NULL, "%s does not list key %s", path,
                      keys[i]);
    }
    keys_free(keys, n);
    config_destroy(&cfg);
    mlt_free(text);
    assert_format_roundtrip(job);
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

static void load_shipped(const char *rel, mlt_job_t *job)
{
    char *path = source_path(rel);
    char err[512] = "";
    int rc = mlt_job_load(path, job, err, sizeof err);
    ck_assert_msg(rc == 0, "%s: %s", path, err);
    mlt_free(path);
}

/* the four tunables of the fmnist workloads */
static void check_fmnist_tunables(const mlt_job_t *job)
{
    ck_assert_uint_eq(job->n_tunables, 4);
    const mlt_tunable_t *lr = mlt_job_tunable(job, "lr");
    ck_assert_ptr_nonnull(lr);
    ck_assert_int_eq(lr->kind, MLT_TUNABLE_LOG);
    ck_assert_double_eq(lr->def, 0.01);
    ck_assert(lr->tune);
    const mlt_tunable_t *m = mlt_job_tunable(job, "momentum");
    ck_assert_int_eq(m->kind, MLT_TUNABLE_LINEAR);
    ck_assert_double_eq(m->max, 0.99);
    const mlt_tunable_t *b = mlt_job_tunable(job, "batch_size");
    ck_assert_int_eq(b->kind, MLT_TUNABLE_DISCRETE);
    ck_assert_uint_eq(b->n_values, 5);
    ck_assert_double_eq(b->min, 32);
    ck_assert_double_eq(b->max, 512);
    ck_assert_double_eq(b->def, 128);
    const mlt_tunable_t *s = mlt_job_tunable(job, "staleness");
    ck_assert_uint_eq(s->n_values, 4);
    ck_assert_double_eq(s->def, 0);
    for (uint32_t i = 0; i < job->n_tunables; i++)
        ck_assert(job->tunables[i].tune);
}

START_TEST(test_shipped_fmnist_mlp)
{
    mlt_job_t job;
    load_shipped("conf/jobs/fmnist-mlp.conf", &job);
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
    check_fmnist_tunables(&job);
    mlt_job_free(&job);
}
END_TEST

START_TEST(test_shipped_fmnist_cnn)
{
    mlt_job_t job;
    load_shipped("conf/jobs/fmnist-cnn.conf", &job);
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
    check_fmnist_tunables(&job);
    mlt_job_free(&job);
}
END_TEST

START_TEST(test_shipped_mf_synth)
{
    mlt_job_t job;
    load_shipped("conf/jobs/mf-synth.conf", &job);
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

/* ---- keys ---- */

/* Every key set away from its default. Model cnn on idx data; the keys that
 * such a job must leave at zero (stop.target_rmse) are in all_keys_mf. */
static const char all_keys_text[] =
    "name = \"every-key\";\n"
    "seed = 5000000000L;\n"
    "workers = 7;\n"
    "backend = \"cuda\";\n"
    "output_dir = \"/srv/out\";\n"
    "model = {\n"
    "  type = \"cnn\";\n"
    "  layers = [100, 50, 3];\n"
    "  cnn = [\"conv3x3x8\", \"pool3\", \"conv1x1x1024\", \"fc65536\", \"fc1\"];\n"
    "  rank = 1024;\n"
    "  l2 = 0.25;\n"
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
    "update = { rule = \"adadelta\"; beta1 = 0.0; beta2 = 0.5; eps = 1e-6; };\n"
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
    "  slope_agree = 0.2;\n"
    "  top_k = 3;\n"
    "  retune_time_factor = 0;\n"
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
    "model", "model.type", "model.layers", "model.cnn", "model.rank", "model.l2",
    "data", "data.format", "data.train_images", "data.train_labels", "data.test_images",
    "data.test_labels", "data.ratings", "data.synthetic", "data.synthetic.users",
    "data.synthetic.items", "data.synthetic.rank", "data.synthetic.ratings",
    "data.synthetic.noise", "data.validation", "data.test_fraction", "data.subset",
    "update", "update.rule", "update.beta1", "update.beta2", "update.eps",
    "tunables", "tunables.*.default", "tunables.*.min", "tunables.*.max", "tunables.*.scale",
    "tunables.*.values", "tunables.*.tune",
    "tuner", "tuner.searcher", "tuner.logic", "tuner.min_trial_clocks", "tuner.max_overhead",
    "tuner.retune_tests", "tuner.converge_tests", "tuner.slope_agree", "tuner.top_k",
    "tuner.retune_time_factor",
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
    load_ok(all_keys_text, &job);
    ck_assert_str_eq(job.name, "every-key");
    ck_assert_int_eq(job.seed, 5000000000LL);
    ck_assert_int_eq(job.workers, 7);
    ck_assert_int_eq(job.backend, MLT_BACKEND_CUDA);
    ck_assert_str_eq(job.output_dir, "/srv/out");
    ck_assert(job.output_dir_given);
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
    ck_assert_int_eq(job.update.rule, MLT_RULE_ADADELTA);
    ck_assert_double_eq(job.update.beta1, 0.0);
    ck_assert_double_eq(job.update.beta2, 0.5);
    ck_assert_double_eq(job.update.eps, 1e-6);

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
    ck_assert_double_eq(job.tuner.slope_agree, 0.2);
    ck_assert_int_eq(job.tuner.top_k, 3);
    ck_assert_double_eq(job.tuner.retune_time_factor, 0.0);
    ck_assert_double_eq(job.test_interval, 0.5);
    ck_assert_double_eq(job.stop.target_accuracy, 0.99);
    ck_assert_double_eq(job.stop.max_epochs, 2.5);
    ck_assert_double_eq(job.stop.max_time_s, 3600.0);
    ck_assert_int_eq(job.stop.plateau_tests, 6);
    ck_assert_double_eq(job.checkpoint_interval_s, 600.0);
    ck_assert_str_eq(job.text, all_keys_text);
    assert_format_roundtrip(&job);
    mlt_job_free(&job);

    load_ok(all_keys_mf, &job);
    ck_assert_int_eq(job.model.type, MLT_MODEL_MF);
    ck_assert_int_eq(job.data.format, MLT_DATA_RATINGS);
    ck_assert_str_eq(job.data.ratings, "r.dat");
    ck_assert_double_eq(job.stop.target_rmse, 0.75);
    assert_format_roundtrip(&job);
    mlt_job_free(&job);
}
END_TEST

/* The documented key list and the keys this test sets are the same set. */
START_TEST(test_keys_documented)
{
    size_t n;
    char **doc = documented_keys(&n);
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
    keys_free(doc, n);
}
END_TEST

START_TEST(test_keys_defaults)
{
    mlt_job_t job;
    load_ok(BASE, &job);
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
    ck_assert_uint_eq(job.n_tunables, 0);
    ck_assert_ptr_null(job.tunables);
    ck_assert_int_eq(job.tuner.searcher, MLT_SEARCHER_BAYES);
    ck_assert_int_eq(job.tuner.logic, MLT_LOGIC_MLTUNER);
    ck_assert_int_eq(job.tuner.min_trial_clocks, 50);
    ck_assert_double_eq(job.tuner.max_overhead, 0.1);
    ck_assert_int_eq(job.tuner.retune_tests, 4);
    ck_assert_int_eq(job.tuner.converge_tests, 5);
    ck_assert_double_eq(job.tuner.slope_agree, 0.1);
    ck_assert_int_eq(job.tuner.top_k, 5);
    ck_assert_double_eq(job.tuner.retune_time_factor, 10.0);
    ck_assert_double_eq(job.test_interval, 1.0);
    ck_assert_double_eq(job.stop.target_accuracy, 0.0);
    ck_assert_double_eq(job.stop.target_rmse, 0.0);
    ck_assert_double_eq(job.stop.max_epochs, 10.0);
    ck_assert_double_eq(job.stop.max_time_s, 0.0);
    ck_assert_int_eq(job.stop.plateau_tests, 0);
    ck_assert_double_eq(job.checkpoint_interval_s, 0.0);
    /* no tunables: the caller's fallback */
    ck_assert_double_eq(mlt_job_default(&job, "lr", 0.03), 0.03);
    ck_assert_ptr_null(mlt_job_tunable(&job, "lr"));
    assert_format_roundtrip(&job);
    mlt_job_free(&job);
    mlt_job_free(&job); /* freed: safe again */
    ck_assert_ptr_null(job.name);
}
END_TEST

START_TEST(test_keys_lookup_and_enums)
{
    mlt_job_t job;
    load_ok(BASE "tunables = { lr = { default = 0.05; min = 0.001; max = 1.0; }; };\n", &job);
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
    load_ok(text, &job);
    ck_assert_int_eq(job.data.synthetic.ratings, 5000000000LL);
    mlt_job_free(&job);
    snprintf(text, sizeof text,
             "%sdata = { format = \"synthetic\"; synthetic = { ratings = \"2M\"; }; subset = "
             "\"10k\"; };\n",
             head);
    load_ok(text, &job);
    ck_assert_int_eq(job.data.synthetic.ratings, 2000000);
    ck_assert_int_eq(job.data.subset, 10000);
    mlt_job_free(&job);
    snprintf(text, sizeof text,
             "%sdata = { format = \"synthetic\";\n synthetic = { ratings = 5000000000; }; };\n",
             head);
    expect_error(text, 4,
                 "integer 5000000000 does not fit in 32 bits; write 5000000000L (or a count "
                 "string such as \"1M\")");
    snprintf(text, sizeof text,
             "%sdata = { format = \"synthetic\";\n synthetic = { ratings = \"2X\"; }; };\n", head);
    expect_error(text, 4,
                 "data.synthetic.ratings must be an integer or a count such as \"1M\" (got "
                 "\"2X\")");
    snprintf(text, sizeof text,
             "%sdata = { format = \"synthetic\";\n synthetic = { ratings = \"200G\"; }; };\n",
             head);
    expect_error(text, 4,
                 "data.synthetic.ratings must be between 1 and 100000000000 (got 200000000000)");
}
END_TEST

/* ---- errors ---- */

START_TEST(test_err_unknown_key)
{
    expect_error(BASE "foo = 1;\n", 3, "unknown key 'foo'");
    expect_error("name = \"t\";\nmodel = {\n  type = \"mlp\";\n  foo = 2;\n};\n", 4,
                 "unknown key 'model.foo'");
    expect_error(BASE "data = { synthetic = {\n bar = 1; }; };\n", 4,
                 "unknown key 'data.synthetic.bar'");
    expect_error(BASE "tunables = {\n lr = { default = 0.1; min = 0.01; max = 1.0;\n"
                      " step = 2; };\n};\n",
                 5, "unknown key 'tunables.lr.step'");
    expect_error(BASE "stop = { max_epoch = 3.0; };\n", 3, "unknown key 'stop.max_epoch'");
}
END_TEST

START_TEST(test_err_wrong_type)
{
    expect_error("name = \"t\";\nmodel = { type = \"mlp\";\n  layers = [\"256\"]; };\n", 3,
                 "model.layers must be a list of integers");
    expect_error("name = \"t\";\nmodel = { type = \"mlp\";\n  layers = 256; };\n", 3,
                 "model.layers must be a list of integers");
    expect_error(BASE "workers = 2.5;\n", 3, "workers must be an integer");
    expect_error(BASE "seed = 1.0;\n", 3, "seed must be an integer or a count such as \"1M\"");
    expect_error("name = 5;\nmodel = { type = \"mlp\"; layers = [256]; };\n", 1,
                 "name must be a string");
    expect_error(BASE "test_interval = \"1\";\n", 3, "test_interval must be a number");
    expect_error(BASE "stop = 5;\n", 3, "stop must be a group { ... }");
    expect_error(BASE "backend = 1;\n", 3, "backend must be one of \"cpu\", \"cuda\", \"auto\"");
    expect_error(BASE "tunables = { lr = { default = 0.1; min = 0.01; max = 1.0;\n tune = 1; }; "
                      "};\n",
                 4, "tunables.lr.tune must be true or false");
    expect_error(BASE "tunables = {\n lr = 0.1; };\n", 4,
                 "tunables.lr must be a group: { default = ...; min = ...; max = ...; scale = "
                 "...; } or { default = ...; values = [...]; }");
    expect_error(BASE "tunables = { b = { default = 1; values = (1, \"2\"); }; };\n", 3,
                 "tunables.b.values must be a list of numbers");
    expect_error("name = \"t\";\nmodel = { type = \"cnn\";\n cnn = (\"fc10\",\n 7); };\n", 4,
                 "model.cnn must be a list of strings such as \"conv5x5x32\", \"pool2\", "
                 "\"fc256\"");
}
END_TEST

START_TEST(test_err_bounds)
{
    expect_error(BASE "workers = 0;\n", 3, "workers must be between 1 and 1024 (got 0)");
    expect_error(BASE "workers = 1025;\n", 3, "workers must be between 1 and 1024 (got 1025)");
    expect_error(BASE "seed = -1;\n", 3, "seed must be between 0 and 9223372036854775807 (got -1)");
    expect_error(BASE "test_interval = 0.001;\n", 3,
                 "test_interval must be between 0.01 and 100 (got 0.001)");
    expect_error(BASE "update = { beta1 = 1.0; };\n", 3,
                 "update.beta1 must be at least 0 and less than 1 (got 1)");
    expect_error(BASE "stop = { target_accuracy = 1.5; };\n", 3,
                 "stop.target_accuracy must be between 0 and 1 (got 1.5)");
    expect_error(BASE "data = { validation = -1; };\n", 3,
                 "data.validation must be between 0 and 1000000000 (got -1)");
}
END_TEST

START_TEST(test_err_bounds_more)
{
    expect_error("name = \"t\";\nmodel = { type = \"mlp\"; layers = [256,\n 0]; };\n", 3,
                 "model.layers[1] must be between 1 and 65536 (got 0)");
    expect_error("name = \"t\";\nmodel = { type = \"mf\"; rank = 1025; };\n"
                 "data = { format = \"synthetic\"; };\n",
                 2, "model.rank must be between 1 and 1024 (got 1025)");
    expect_error(BASE "backend = \"tpu\";\n", 3,
                 "backend must be one of \"cpu\", \"cuda\", \"auto\" (got \"tpu\")");
    expect_error(BASE "tuner = { logic = \"manual\"; };\n", 3,
                 "tuner.logic must be one of \"mltuner\", \"fixed\", \"train-to-completion\", "
                 "\"hyperband\" (got \"manual\")");
    expect_error(BASE "tuner = { top_k = 101; };\n", 3,
                 "tuner.top_k must be between 1 and 100 (got 101)");
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
        expect_error(text, cases[i].line, cases[i].msg);
    }
}
END_TEST

START_TEST(test_err_cross)
{
    expect_error("name = \"t\";\nmodel = {\n type = \"mlp\"; };\n", 3,
                 "model.type \"mlp\" needs model.layers, its hidden layer sizes such as [256, "
                 "256] (for none use model.type \"softmax\")");
    expect_error("name = \"t\";\nmodel = {\n type = \"mlp\";\n layers = []; };\n", 4,
                 "model.type \"mlp\" needs model.layers, its hidden layer sizes such as [256, "
                 "256] (for none use model.type \"softmax\")");
    expect_error("name = \"t\";\nmodel = {\n type = \"cnn\"; };\n", 3,
                 "model.type \"cnn\" needs model.cnn, its layers such as [\"conv5x5x32\", "
                 "\"pool2\", \"fc256\"]");
    expect_error("name = \"t\";\nmodel = {\n type = \"mf\"; };\n", 3,
                 "model.type \"mf\" needs data.format \"ratings\" or \"synthetic\" (got \"idx\")");
    expect_error("name = \"t\";\nmodel = { type = \"mf\"; };\ndata = {\n format = \"idx\"; };\n", 4,
                 "model.type \"mf\" needs data.format \"ratings\" or \"synthetic\" (got \"idx\")");
    expect_error("name = \"t\";\nmodel = { type = \"softmax\"; };\n"
                 "data = {\n format = \"synthetic\"; };\n",
                 4, "model.type \"softmax\" needs data.format \"idx\" (got \"synthetic\")");
    expect_error(
        "name = \"t\";\nmodel = { type = \"mf\"; };\ndata = {\n format = \"ratings\"; };\n", 4,
        "data.format \"ratings\" needs data.ratings, the ratings file");
    expect_error("name = \"t\";\nmodel = { type = \"mf\"; };\n"
                 "data = { format = \"synthetic\";\n synthetic = { users = 10; items = 10;\n"
                 " ratings = 101; }; };\n",
                 5, "data.synthetic.ratings (101) must be at most users x items (100)");
    expect_error(BASE "stop = {\n target_rmse = 0.5; };\n", 4,
                 "stop.target_rmse is for model.type \"mf\"; \"mlp\" stops at "
                 "stop.target_accuracy");
    expect_error("name = \"t\";\nmodel = { type = \"mf\"; };\ndata = { format = \"synthetic\"; };\n"
                 "stop = { target_accuracy = 0.9; };\n",
                 4,
                 "stop.target_accuracy is for classifiers; model.type \"mf\" stops at "
                 "stop.target_rmse");
    /* a valid softmax job: no layers needed */
    mlt_job_t job;
    load_ok("name = \"s\";\nmodel = { type = \"softmax\"; };\n", &job);
    ck_assert_int_eq(job.model.type, MLT_MODEL_SOFTMAX);
    mlt_job_free(&job);
}
END_TEST

START_TEST(test_err_tunables)
{
    expect_error(BASE "tunables = {\n lr = { min = 0.001; max = 1.0; scale = \"log\";\n"
                      " default = 5.0; };\n};\n",
                 5, "tunables.lr.default must be between min (0.001) and max (1) (got 5)");
    expect_error(BASE "tunables = {\n lr = { default = 0.1; scale = \"log\";\n min = 0.0;\n"
                      " max = 1.0; };\n};\n",
                 5, "tunables.lr.min must be > 0 for scale \"log\" (got 0)");
    expect_error(BASE "tunables = {\n x = { default = 0.5;\n min = 1.0;\n max = 0.0; };\n};\n", 5,
                 "tunables.x.min (1) must be less than tunables.x.max (0)");
    expect_error(BASE "tunables = {\n x = { default = 1.0; min = 1.0; max = 1.0; };\n};\n", 4,
                 "tunables.x.min (1) must be less than tunables.x.max (1)");
    expect_error(BASE "tunables = {\n batch_size = { default = 64;\n values = [32,\n 128,\n"
                      " 64]; };\n};\n",
                 7,
                 "tunables.batch_size.values must be ascending without repeats ([2] = 64 "
                 "follows [1] = 128)");
    expect_error(BASE "tunables = {\n s = { default = 1;\n values = [0, 1, 1]; };\n};\n", 5,
                 "tunables.s.values must be ascending without repeats ([2] = 1 follows [1] = 1)");
    expect_error(BASE "tunables = {\n s = { default = 1;\n values = []; };\n};\n", 5,
                 "tunables.s.values must not be empty");
    expect_error(BASE "tunables = {\n batch_size = {\n default = 100;\n values = [64, 128]; "
                      "};\n};\n",
                 5,
                 "tunables.batch_size.default must be one of tunables.batch_size.values (got "
                 "100)");
    expect_error(BASE "tunables = {\n x = { default = 1; values = [1, 2];\n min = 0; };\n};\n", 4,
                 "tunables.x gives both values and min; a tunable is either discrete (values) or "
                 "continuous (min, max, scale)");
    expect_error(BASE "tunables = {\n x = { default = 1; min = 0; };\n};\n", 4,
                 "tunables.x needs min and max (continuous) or values (discrete)");
    expect_error(BASE "tunables = {\n x = { min = 0; max = 2; };\n};\n", 4,
                 "tunables.x.default is required");
    expect_error(BASE "tunables = {\n x = { default = 1; min = 0; max = 2;\n scale = \"exp\"; "
                      "};\n};\n",
                 5, "tunables.x.scale must be one of \"log\", \"linear\" (got \"exp\")");
    /* what the system itself reads from the known names */
    expect_error(BASE "tunables = {\n lr = { default = 0.1;\n min = 0.0; max = 1.0; };\n};\n", 5,
                 "tunables.lr.min must be > 0, as a learning rate (got 0)");
    expect_error(BASE "tunables = {\n momentum = { default = 0.5; min = 0.0;\n max = 1.0; };\n};\n",
                 5, "tunables.momentum.max must be >= 0 and < 1, as a momentum (got 1)");
    expect_error(
        BASE "tunables = {\n batch_size = { default = 32;\n values = [0.5, 32.0]; };\n};\n", 5,
        "tunables.batch_size.values[0] must be an integer in 1..65536, as a batch size "
        "per worker (got 0.5)");
    expect_error(BASE "tunables = {\n staleness = { default = 0;\n values = [0, 1001]; };\n};\n", 5,
                 "tunables.staleness.values[1] must be an integer in 0..1000, as a staleness "
                 "bound in clocks (got 1001)");
    expect_error(BASE "tunables = {\n weight_decay = { default = 0.0;\n min = -1.0; max = 1.0; "
                      "};\n};\n",
                 5, "tunables.weight_decay.min must be >= 0, as a weight decay (got -1)");
    expect_error(BASE "tunables = {\n a*b = { default = 1; values = [1]; };\n};\n", 4,
                 "tunable name 'a*b' must be 1..63 of A-Z a-z 0-9 _ -");
}
END_TEST

START_TEST(test_err_required)
{
    expect_error("model = { type = \"mlp\"; layers = [256]; };\n", 0,
                 "name is required (the job's name (1..128 of A-Z a-z 0-9 . _ -); names its "
                 "output directory)");
    expect_error("name = \"t\";\nmodel = { layers = [256]; };\n", 0,
                 "model.type is required (one of \"mlp\", \"cnn\", \"softmax\", \"mf\")");
    expect_error("", 0,
                 "name is required (the job's name (1..128 of A-Z a-z 0-9 . _ -); names "
                 "its output directory)");
    expect_error("name = \"\";\nmodel = { type = \"mlp\"; layers = [256]; };\n", 1,
                 "name must be 1..128 characters of A-Z a-z 0-9 . _ -, not starting with '.' "
                 "(got \"\")");
    expect_error("name = \"..\";\nmodel = { type = \"mlp\"; layers = [256]; };\n", 1,
                 "name must be 1..128 characters of A-Z a-z 0-9 . _ -, not starting with '.' "
                 "(got \"..\")");
    expect_error("name = \"a/b\";\nmodel = { type = \"mlp\"; layers = [256]; };\n", 1,
                 "name must be 1..128 characters of A-Z a-z 0-9 . _ -, not starting with '.' "
                 "(got \"a/b\")");
    expect_error(BASE "data = { train_images = \"\"; };\n", 3,
                 "data.train_images must not be empty");
}
END_TEST

START_TEST(test_err_text)
{
    expect_error(BASE "workers = ;\n", 3, "syntax error");
    expect_error(BASE "workers = 1;\nworkers = 2;\n", 4, "duplicate setting name");
    expect_error(BASE "# a comment\n@include \"other.conf\"\n", 4,
                 "@include is not allowed in a job file (its text is sent to the workers whole)");
    expect_error(BASE "seed = 4294967297;\n", 3,
                 "integer 4294967297 does not fit in 32 bits; write 4294967297L (or a count "
                 "string such as \"1M\")");
    /* numbers inside strings and comments are not literals */
    mlt_job_t job;
    load_ok(BASE "# 99999999999\noutput_dir = \"/x/99999999999\";\n", &job);
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
    memcpy(big, BASE, strlen(BASE));
    big[n - 1] = '\n';
    big[n] = '\0';
    char *path = tmp_file(big, n);
    ck_assert_int_eq(mlt_job_load(path, &job, err, sizeof err), -EFBIG);
    char want[PATH_MAX + 100];
    snprintf(want, sizeof want, "%s: is over 49152 bytes, the most a job file may have", path);
    ck_assert_str_eq(err, want);
    tmp_drop(path);
    big[n - 2] = '\n';
    path = tmp_file(big, n - 1);
    ck_assert_int_eq(mlt_job_load(path, &job, err, sizeof err), 0);
    mlt_job_free(&job);
    tmp_drop(path);

    /* a NUL byte would hide the rest of the file from libconfig */
    static const char nul[] = BASE "\0workers = 0;\n";
    path = tmp_file(nul, sizeof nul - 1);
    ck_assert_int_eq(mlt_job_load(path, &job, err, sizeof err), -EINVAL);
    snprintf(want, sizeof want, "%s: has a NUL byte; a job file is text", path);
    ck_assert_str_eq(err, want);
    tmp_drop(path);
    mlt_free(big);
}
END_TEST

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
    load_shipped("conf/jobs/fmnist-mlp.conf", &job);
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
    assert_job_eq(&job, &sent);
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
    load_shipped("conf/jobs/fmnist-mlp.conf", &job);
    load_shipped("conf/jobs/fmnist-mlp.conf", &orig);
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
    assert_job_eq(&job, &orig);
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
    load_shipped("conf/jobs/fmnist-mlp.conf", &job);
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
    ck_assert_str_eq(err, "stop.target_accuracy is for classifiers; model.type \"mf\" stops at "
                          "stop.target_rmse");
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
    const char *text = BASE "workers = 3;\n";
    ck_assert_int_eq(mlt_job_parse_string(text, "coordinator", &job, err, sizeof err), 0);
    ck_assert_str_eq(job.name, "t");
    ck_assert_int_eq(job.workers, 3);
    ck_assert_str_eq(job.text, text);
    ck_assert_ptr_ne(job.text, text); /* a copy */
    load_ok(text, &from_file);
    assert_job_eq(&job, &from_file);
    mlt_job_free(&from_file);
    mlt_job_free(&job);

    /* what the coordinator sends a worker: the loaded file's text */
    load_shipped("conf/jobs/fmnist-cnn.conf", &from_file);
    ck_assert_int_eq(mlt_job_parse_string(from_file.text, "job", &job, err, sizeof err), 0);
    assert_job_eq(&job, &from_file);
    mlt_job_free(&from_file);
    mlt_job_free(&job);
}
END_TEST

START_TEST(test_string_errors)
{
    mlt_job_t job;
    char err[512] = "";
    ck_assert_int_eq(
        mlt_job_parse_string(BASE "\nworkers = 0;\n", "from-coordinator", &job, err, sizeof err),
        -EINVAL);
    ck_assert_str_eq(err, "from-coordinator:4: workers must be between 1 and 1024 (got 0)");
    ck_assert_ptr_null(job.name);
    ck_assert_int_eq(mlt_job_parse_string(BASE "x = 1;\n", NULL, &job, err, sizeof err), -EINVAL);
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

static Suite *jobfile_suite(void)
{
    Suite *s = suite_create("jobfile");
    TCase *tc = tcase_create("shipped");
    tcase_add_test(tc, test_shipped_all_parse);
    tcase_add_test(tc, test_shipped_fmnist_mlp);
    tcase_add_test(tc, test_shipped_fmnist_cnn);
    tcase_add_test(tc, test_shipped_mf_synth);
    suite_add_tcase(s, tc);

    tc = tcase_create("keys");
    tcase_add_test(tc, test_keys_every_key);
    tcase_add_test(tc, test_keys_documented);
    tcase_add_test(tc, test_keys_defaults);
    tcase_add_test(tc, test_keys_lookup_and_enums);
    tcase_add_test(tc, test_keys_int64);
    suite_add_tcase(s, tc);

    tc = tcase_create("errors");
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

    tc = tcase_create("set");
    tcase_add_test(tc, test_set_good);
    tcase_add_test(tc, test_set_bad);
    tcase_add_test(tc, test_set_then_validate);
    suite_add_tcase(s, tc);

    tc = tcase_create("string");
    tcase_add_test(tc, test_string_parse);
    tcase_add_test(tc, test_string_errors);
    suite_add_tcase(s, tc);
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
