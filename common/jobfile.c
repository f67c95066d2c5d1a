/* jobfile.c - job files (see jobfile.h): the key table, parsing, mlt_job_set.
 *
 * Everything about a key lives in one row of mlt_jobk_keys[], a table of the
 * key-table engine (common/keytable.h): its path ("model.rank"), type,
 * default, bounds, one-line description and the field it is stored in. Group
 * rows ("model") exist so that unknown keys are caught at every level; the
 * members of a tunable are rows too ("tunables.*.min", in_elem), stored into
 * an mlt_tunable_t instead of the job. Defaults, reading values, parsing,
 * mlt_job_set, the bounds half of validation, mlt_job_format and
 * mlt_job_write_keys are the engine's loops over the table: adding a key is
 * adding a field and a row. What is the job's own: the tunables group (read
 * here, by read_tunables), the cnn layer specs and the checks between keys
 * (jobfile_check.c), the job written as text (jobfile_write.c); what the three
 * share is in jobfile_int.h.
 *
 * Checks between keys are in mlt_jobk_validate(), which knows the line of
 * every key the file gave, so that its messages point at the file as well.
 * No global state; thread-safe on distinct jobs. */
#include "common/jobfile.h"

#include "common/jobfile_int.h"

#include <ctype.h>
#include <errno.h>
#include <float.h>
#include <limits.h>
#include <stdlib.h>
#include <string.h>

#include <libconfig.h>

#include "common/alloc.h"
#include "common/cfgtext.h"
#include "common/errtext.h"

_Static_assert(sizeof(mlt_backend_t) == sizeof(int), "enum fields are stored as int");

#define DEB_FMNIST "/usr/share/datasets/fashion-mnist/"

static const char *const backend_names[] = {"cpu", "cuda", "auto", NULL};
const char *const mlt_jobk_model_names[] = {"mlp", "cnn", "softmax", "mf", "external", NULL};
static const char *const metric_names[] = {"auto", "accuracy", "rmse", NULL};
const char *const mlt_jobk_format_names[] = {"idx", "ratings", "synthetic", NULL};
/* the order of mlt_rule_t in kernels/optim.h (the unit test checks) */
static const char *const rule_names[] = {"sgd",      "nesterov", "adam",     "rmsprop", "adagrad",
                                         "adadelta", "sf-sgd",   "sf-adamw", NULL};
static const char *const searcher_names[] = {"bayes", "tpe", "random", "grid", "marginal", NULL};
static const char *const logic_names[] = {"mltuner", "fixed", "train-to-completion", "hyperband",
                                          NULL};
static const char *const loss_names[] = {"continue", "fail", NULL}; /* = MLT_ON_LOSS_* */
static const char *const scale_names[] = {"log", "linear", NULL}; /* = MLT_TUNABLE_LOG, LINEAR */

/* The keys, in the order mlt_job_format writes them: a group's members follow
 * its row. (Kept out of clang-format, which would put each field on a line.) */
// clang-format off
const mlt_kt_key_t mlt_jobk_keys[] = {
    {.path = "name", .type = MLT_KT_STRING, .required = true, .check = mlt_jobk_check_name,
     .off = OFF(name),
     .desc = "the job's name (1..128 of A-Z a-z 0-9 . _ -); names its output directory"},
    {.path = "seed", .type = MLT_KT_INT64, .def_i = 1, .min_i = 0, .max_i = INT64_MAX,
     .off = OFF(seed),
     .desc = "seed of all randomness: initial weights, data order, synthetic data, searchers"},
    {.path = "workers", .type = MLT_KT_INT, .def_i = 2, .min_i = 1, .max_i = 1024,
     .off = OFF(workers), .desc = "number of worker processes (one per GPU or CPU socket)"},
    {.path = "backend", .type = MLT_KT_ENUM, .def_i = MLT_BACKEND_AUTO, .names = backend_names,
     .off = OFF(backend),
     .desc = "compute backend of the workers; auto: cuda where a GPU is found, else cpu"},
    {.path = "output_dir", .type = MLT_KT_STRING, .def_s = "", .doc_def = "\"out/<name>\"",
     .check = mlt_jobk_check_path_opt, .off = OFF(output_dir),
     .desc = "directory for the decision log and progress, relative to the daemon's state_dir; \"\": out/<name>"},
    /* worker failure (issue #12) */
    {.path = "on_worker_loss", .type = MLT_KT_ENUM, .def_i = MLT_ON_LOSS_CONTINUE, .names = loss_names,
     .off = OFF(on_worker_loss),
     .desc = "a worker dead or silent for worker_timeout_s: continue with the others (its "
             "partition waits for its replacement), or fail the job"},
    {.path = "worker_wait_s", .type = MLT_KT_DOUBLE, .def_d = 600.0, .min_d = 0.1, .max_d = 86400.0,
     .off = OFF(worker_wait_s),
     .desc = "seconds the job waits for a worker that has not joined, or, with no worker left, "
             "for a replacement, before it fails"},

    {.path = "model", .type = MLT_KT_GROUP, .desc = "the model to train"},
    {.path = "model.type", .type = MLT_KT_ENUM, .required = true, .names = mlt_jobk_model_names,
     .off = OFF(model.type),
     .desc = "mlp (uses layers), cnn (uses cnn), softmax, mf (uses rank, l2), or external "
             "(the worker program's own model and data: a worker built on the session API)"},
    {.path = "model.layers", .type = MLT_KT_INTLIST, .min_i = 1, .max_i = 65536,
     .max_n = MLT_JOB_MAX_LAYERS, .off = OFF(model.layers), .off_n = OFF(model.n_layers),
     .desc = "mlp: hidden layer sizes, ReLU after each; input and output sizes come from "
             "the data"},
    {.path = "model.cnn", .type = MLT_KT_SPECLIST, .spec = &mlt_jobk_cnn, .max_n = MLT_JOB_MAX_CNN, .off = OFF(model.cnn),
     .off_n = OFF(model.n_cnn),
     .desc = "cnn: layers in order: convKxKxC (K odd 1..11, C 1..1024 channels, same "
             "padding, stride 1, ReLU), poolP (PxP max pool, stride P, P 2..8), fcN (N "
             "units, ReLU); the last fc to the classes is implied"},
    {.path = "model.rank", .type = MLT_KT_INT, .def_i = 20, .min_i = 1, .max_i = 1024,
     .off = OFF(model.rank), .desc = "mf: rank of the user and item factors"},
    {.path = "model.l2", .type = MLT_KT_DOUBLE, .def_d = 0.0, .min_d = 0.0, .max_d = 10.0,
     .off = OFF(model.l2), .desc = "mf: L2 regularisation of the factors"},
    {.path = "model.metric", .type = MLT_KT_ENUM, .def_i = MLT_METRIC_AUTO, .names = metric_names,
     .off = OFF(model.metric),
     .desc = "what tests measure: accuracy (a classifier; stop.target_accuracy) or rmse "
             "(a regression; stop.target_rmse); auto: rmse for mf, else accuracy"},

    {.path = "data", .type = MLT_KT_GROUP, .desc = "the training and test data"},
    {.path = "data.format", .type = MLT_KT_ENUM, .def_i = MLT_DATA_IDX, .names = mlt_jobk_format_names,
     .off = OFF(data.format),
     .desc = "idx (image and label files), ratings (a ratings file) or synthetic "
             "(generated ratings)"},
    {.path = "data.train_images", .type = MLT_KT_STRING,
     .def_s = DEB_FMNIST "train-images-idx3-ubyte.gz", .check = mlt_jobk_check_path,
     .off = OFF(data.train_images), .desc = "idx: training images (IDX, gzipped or not)"},
    {.path = "data.train_labels", .type = MLT_KT_STRING,
     .def_s = DEB_FMNIST "train-labels-idx1-ubyte.gz", .check = mlt_jobk_check_path,
     .off = OFF(data.train_labels), .desc = "idx: training labels"},
    {.path = "data.test_images", .type = MLT_KT_STRING,
     .def_s = DEB_FMNIST "t10k-images-idx3-ubyte.gz", .check = mlt_jobk_check_path,
     .off = OFF(data.test_images), .desc = "idx: test images"},
    {.path = "data.test_labels", .type = MLT_KT_STRING,
     .def_s = DEB_FMNIST "t10k-labels-idx1-ubyte.gz", .check = mlt_jobk_check_path,
     .off = OFF(data.test_labels), .desc = "idx: test labels"},
    {.path = "data.ratings", .type = MLT_KT_STRING, .def_s = "", .check = mlt_jobk_check_path_opt,
     .off = OFF(data.ratings), .desc = "ratings: the ratings file (MovieLens formats)"},
    {.path = "data.synthetic", .type = MLT_KT_GROUP,
     .desc = "synthetic: a seeded random low-rank rating matrix plus Gaussian noise"},
    {.path = "data.synthetic.users", .type = MLT_KT_INT, .def_i = 10000, .min_i = 1,
     .max_i = 100000000, .off = OFF(data.synthetic.users), .desc = "number of users (rows)"},
    {.path = "data.synthetic.items", .type = MLT_KT_INT, .def_i = 5000, .min_i = 1,
     .max_i = 100000000, .off = OFF(data.synthetic.items), .desc = "number of items (columns)"},
    {.path = "data.synthetic.rank", .type = MLT_KT_INT, .def_i = 20, .min_i = 1, .max_i = 1024,
     .off = OFF(data.synthetic.rank), .desc = "rank of the true factors"},
    {.path = "data.synthetic.ratings", .type = MLT_KT_INT64, .def_i = 1000000, .min_i = 1,
     .max_i = 100000000000LL, .off = OFF(data.synthetic.ratings),
     .desc = "number of observed ratings, at most users x items; an integer (with an L "
             "suffix past 2147483647) or a count such as \"1M\""},
    {.path = "data.synthetic.noise", .type = MLT_KT_DOUBLE, .def_d = 0.5, .min_d = 0.0,
     .max_d = 100.0, .off = OFF(data.synthetic.noise),
     .desc = "standard deviation of the noise on each rating: the best reachable test RMSE"},
    {.path = "data.validation", .type = MLT_KT_INT64, .def_i = 5000, .min_i = 0,
     .max_i = 1000000000LL, .off = OFF(data.validation),
     .desc = "idx: training samples held out (the last ones of the train file) to measure "
             "validation accuracy"},
    {.path = "data.test_fraction", .type = MLT_KT_DOUBLE, .def_d = 0.1, .min_d = 0.01,
     .max_d = 0.9, .off = OFF(data.test_fraction),
     .desc = "ratings, synthetic: fraction of the ratings held out as the test set"},
    {.path = "data.subset", .type = MLT_KT_INT64, .def_i = 0, .min_i = 0,
     .max_i = 1000000000000LL, .off = OFF(data.subset),
     .desc = "0: train on every sample; N: only on the first N (after the validation "
             "hold-out), for quick tests"},

    {.path = "update", .type = MLT_KT_GROUP, .desc = "the update rule the servers apply to each push"},
    {.path = "update.rule", .type = MLT_KT_ENUM, .def_i = 0, .names = rule_names,
     .off = OFF(update.rule),
     .desc = "sgd (with momentum), nesterov, adam, rmsprop, adagrad, adadelta, or the "
             "schedule-free sf-sgd (interpolation: momentum) and sf-adamw (interpolation: "
             "beta1), whose tests read the average"},
    {.path = "update.beta1", .type = MLT_KT_DOUBLE, .def_d = 0.9, .min_d = 0.0, .max_d = 1.0,
     .max_open = true, .off = OFF(update.beta1),
     .desc = "adam: first-moment decay; sf-adamw: the interpolation between z and x"},
    {.path = "update.beta2", .type = MLT_KT_DOUBLE, .def_d = 0.999, .min_d = 0.0, .max_d = 1.0,
     .max_open = true, .off = OFF(update.beta2),
     .desc = "adam, sf-adamw: second-moment decay; the rho of rmsprop and adadelta"},
    {.path = "update.eps", .type = MLT_KT_DOUBLE, .def_d = 1e-8, .min_d = 1e-20, .max_d = 1.0,
     .off = OFF(update.eps),
     .desc = "denominator guard of adam, rmsprop, adagrad, adadelta, sf-adamw"},
    {.path = "update.average", .type = MLT_KT_BOOL, .def_i = 0, .off = OFF(update.average),
     .desc = "sgd, nesterov: also keep the lr_max^2-weighted average of the weights, which "
             "tests read (the sf rules always do; other rules refuse it)"},

    {.path = "tunables", .type = MLT_KT_NAMED, .max_n = MLT_JOB_MAX_TUNABLES,
     .desc = "the training tunables, each a group named as the workers know it (lr, "
             "momentum, batch_size, staleness, weight_decay, warmup, or any other): "
             "continuous (min, max, scale) or discrete (values), with a default"},
    {.path = "tunables.*.default", .type = MLT_KT_DOUBLE, .in_elem = true,
     .doc_def = "(required)", .min_d = -DBL_MAX, .max_d = DBL_MAX, .off = TOFF(def),
     .desc = "the value before tuning, and always when tune = false; within [min, max] or "
             "one of values"},
    {.path = "tunables.*.min", .type = MLT_KT_DOUBLE, .in_elem = true, .doc_def = "(continuous)",
     .min_d = -DBL_MAX, .max_d = DBL_MAX, .off = TOFF(min),
     .desc = "continuous: the smallest value the tuner may try"},
    {.path = "tunables.*.max", .type = MLT_KT_DOUBLE, .in_elem = true, .doc_def = "(continuous)",
     .min_d = -DBL_MAX, .max_d = DBL_MAX, .off = TOFF(max),
     .desc = "continuous: the largest value the tuner may try; greater than min"},
    {.path = "tunables.*.scale", .type = MLT_KT_ENUM, .in_elem = true,
     .def_i = MLT_TUNABLE_LINEAR, .names = scale_names, .off = TOFF(kind),
     .desc = "continuous: log (searched on a log scale; min > 0) or linear"},
    {.path = "tunables.*.values", .type = MLT_KT_NUMLIST, .in_elem = true,
     .doc_def = "(discrete)", .min_n = 1, .max_n = MLT_JOB_MAX_VALUES, .off = TOFF(values),
     .off_n = TOFF(n_values),
     .desc = "discrete: the values the tuner may pick from, ascending, without repeats"},
    {.path = "tunables.*.tune", .type = MLT_KT_BOOL, .in_elem = true, .def_i = 1,
     .off = TOFF(tune), .desc = "false: fixed at default; the tuner leaves it alone"},

    {.path = "tuner", .type = MLT_KT_GROUP, .desc = "how the tunables are tuned (DESIGN.md section 6)"},
    {.path = "tuner.searcher", .type = MLT_KT_ENUM, .def_i = MLT_SEARCHER_BAYES,
     .names = searcher_names, .off = OFF(tuner.searcher),
     .desc = "proposes the next setting to try: bayes, tpe, random, grid or marginal"},
    {.path = "tuner.logic", .type = MLT_KT_ENUM, .def_i = MLT_LOGIC_MLTUNER, .names = logic_names,
     .off = OFF(tuner.logic),
     .desc = "mltuner (online trials on forked branches), fixed (no tuning: every tunable "
             "at its default), or the baselines train-to-completion and hyperband"},
    {.path = "tuner.min_trial_clocks", .type = MLT_KT_INT, .def_i = 50, .min_i = 1,
     .max_i = 1000000, .off = OFF(tuner.min_trial_clocks),
     .desc = "a search's first rung: every trial runs the seconds this many clocks take at "
             "the default setting; the survivors of each halving run twice as long"},
    {.path = "tuner.range_clocks", .type = MLT_KT_INT, .def_i = 64, .min_i = 0, .max_i = 1000000,
     .off = OFF(tuner.range_clocks),
     .desc = "clocks of the learning-rate range test that centres the first search "
             "(0: none; the design centres on the default setting)"},
    {.path = "tuner.first_trials", .type = MLT_KT_INT, .def_i = 4, .min_i = 1, .max_i = 64,
     .off = OFF(tuner.first_trials),
     .desc = "settings in the first search's design: the centre, then steps along the "
             "tunables (learning rate first)"},
    {.path = "tuner.max_trials", .type = MLT_KT_INT, .def_i = 8, .min_i = 1, .max_i = 256,
     .off = OFF(tuner.max_trials),
     .desc = "trials of one search at most: the design, then the searcher's proposals"},
    {.path = "tuner.gain_stop", .type = MLT_KT_DOUBLE, .def_d = 0.02, .min_d = 0.0, .max_d = 1.0,
     .off = OFF(tuner.gain_stop),
     .desc = "the searcher proposes more trials while it expects to lower the best score "
             "by more than this fraction of it"},
    {.path = "tuner.max_overhead", .type = MLT_KT_DOUBLE, .def_d = 0.1, .min_d = 0.001,
     .max_d = 1.0, .off = OFF(tuner.max_overhead),
     .desc = "time in trials that did not become training, the first search's included, at "
             "most this fraction of the training time (the first search: of the longest "
             "the job may train)"},
    {.path = "tuner.plateau_t", .type = MLT_KT_DOUBLE, .def_d = 2.0, .min_d = 0.0, .max_d = 100.0,
     .off = OFF(tuner.plateau_t),
     .desc = "re-tune when the training loss of the last test interval fell by less than "
             "this many standard errors of its trend (0: off)"},
    {.path = "tuner.retune_tests", .type = MLT_KT_INT, .def_i = 4, .min_i = 0, .max_i = 1000,
     .off = OFF(tuner.retune_tests),
     .desc = "re-tune after this many tests without improvement (0: never)"},
    {.path = "tuner.decay", .type = MLT_KT_DOUBLE, .def_d = 0.5, .min_d = 0.01, .max_d = 0.99,
     .off = OFF(tuner.decay),
     .desc = "a re-tune pairs the training branch with its learning rate times this, on "
             "the same data"},
    {.path = "tuner.converge_tests", .type = MLT_KT_INT, .def_i = 5, .min_i = 1, .max_i = 1000,
     .off = OFF(tuner.converge_tests),
     .desc = "converged (no more re-tuning) after this many re-tunes without a better "
             "setting"},
    {.path = "tuner.warm_start", .type = MLT_KT_STRING, .def_s = "auto",
     .check = mlt_jobk_check_path_opt, .off = OFF(tuner.warm_start),
     .desc = "start the first search from the winner of the last job of the same model: "
             "\"auto\" (the one the daemon keeps), a previous job's output directory, or "
             "\"\" (none: a range test from scratch)"},

    {.path = "test_interval", .type = MLT_KT_DOUBLE, .def_d = 1.0, .min_d = 0.01, .max_d = 100.0,
     .off = OFF(test_interval), .desc = "epochs of training between two tests"},

    {.path = "stop", .type = MLT_KT_GROUP, .desc = "when the job ends: the first condition met"},
    {.path = "stop.target_accuracy", .type = MLT_KT_DOUBLE, .def_d = 0.0, .min_d = 0.0,
     .max_d = 1.0, .off = OFF(stop.target_accuracy),
     .desc = "mlp, cnn, softmax: stop when test accuracy reaches this (0: no target)"},
    {.path = "stop.target_rmse", .type = MLT_KT_DOUBLE, .def_d = 0.0, .min_d = 0.0, .max_d = 1e6,
     .off = OFF(stop.target_rmse),
     .desc = "mf: stop when test RMSE falls to this (0: no target)"},
    {.path = "stop.max_epochs", .type = MLT_KT_DOUBLE, .def_d = 10.0, .min_d = 0.01, .max_d = 1e6,
     .off = OFF(stop.max_epochs), .desc = "stop after this many epochs of training"},
    {.path = "stop.max_time_s", .type = MLT_KT_DOUBLE, .def_d = 0.0, .min_d = 0.0, .max_d = 1e9,
     .off = OFF(stop.max_time_s), .desc = "stop after this many seconds (0: no limit)"},
    {.path = "stop.plateau_tests", .type = MLT_KT_INT, .def_i = 0, .min_i = 0, .max_i = 1000,
     .off = OFF(stop.plateau_tests),
     .desc = "stop after this many tests without improvement (0: off)"},

    {.path = "checkpoint_interval_s", .type = MLT_KT_DOUBLE, .def_d = 60.0, .min_d = 0.0,
     .max_d = 1e7, .off = OFF(checkpoint_interval_s),
     .desc = "seconds of job time between checkpoints, taken in training (0: none)"},
};

// clang-format on

static int read_tunables(mlt_kt_ctx_t *p, void *base, const mlt_kt_key_t *k,
                         const config_setting_t *g, char *err, size_t errlen);

const mlt_kt_table_t mlt_jobk_table = {
    .keys = mlt_jobk_keys,
    .n_keys = sizeof mlt_jobk_keys / sizeof mlt_jobk_keys[0],
    .printable = true, /* strings end up in messages, logs and the re-written job text */
    .read_named = read_tunables,
    .named_noun = "a group of tunables, each a group { ... }",
};

/* ---- small helpers ---- */

/* after a change to a discrete tunable's values: its range follows them */
static void tunable_fix(mlt_tunable_t *t)
{
    if (t->kind == MLT_TUNABLE_DISCRETE && t->n_values > 0) {
        t->min = t->values[0];
        t->max = t->values[t->n_values - 1];
    }
}

/* output_dir follows name unless given */
static void finish(mlt_job_t *job)
{
    if (job->output_dir_given || !job->name)
        return;
    size_t n = strlen(job->name) + 5;
    char *d = mlt_malloc(n);
    snprintf(d, n, "out/%s", job->name);
    mlt_free(job->output_dir);
    job->output_dir = d;
}

/* true for the members of a continuous tunable only (min, max, scale) */
static bool for_continuous(const mlt_kt_key_t *k)
{
    return k->off == TOFF(min) || k->off == TOFF(max) || k->off == TOFF(kind);
}

/* ---- reading the tunables group ---- */

/* Is name 1..MLT_JOB_MAX_TUNABLE_NAME of A-Z a-z 0-9 _ -? */
static bool tunable_name_ok(const char *name)
{
    size_t nl = strlen(name);
    bool ok = nl >= 1 && nl <= MLT_JOB_MAX_TUNABLE_NAME;
    for (size_t c = 0; ok && c < nl; c++)
        ok = isalnum((unsigned char)name[c]) || name[c] == '_' || name[c] == '-';
    return ok;
}

/* NAME = { default = ...; min = ...; ... } into t */
static int read_tunable(mlt_kt_ctx_t *p, mlt_tunable_t *t, const char *tpath,
                        const config_setting_t *s, char *err, size_t errlen)
{
    unsigned line = config_setting_source_line(s);
    bool has_def = false, has_min = false, has_max = false, has_scale = false, has_val = false;
    int m = config_setting_length(s);
    for (int j = 0; j < m; j++) {
        const config_setting_t *e = config_setting_get_elem(s, (unsigned)j);
        const char *member = config_setting_name(e);
        char path[192];
        snprintf(path, sizeof path, "%s.%s", tpath, member);
        const mlt_kt_key_t *k = mlt_kt_find_member(&mlt_jobk_table, member);
        if (!k)
            return mlt_errf(-EINVAL, err, errlen, "%s:%u: unknown key '%s'", p->file,
                            config_setting_source_line(e), path);
        int rc = mlt_kt_read_key(p, t, k, path, e, err, errlen);
        if (rc)
            return rc;
        mlt_kt_ctx_add(p, path, config_setting_source_line(e));
        has_def |= k->off == TOFF(def);
        has_min |= k->off == TOFF(min);
        has_max |= k->off == TOFF(max);
        has_scale |= k->off == TOFF(kind);
        has_val |= k->type == MLT_KT_NUMLIST;
    }
    if (has_val && (has_min || has_max || has_scale))
        return mlt_errf(-EINVAL, err, errlen,
                        "%s:%u: %s gives both values and %s; a tunable is either discrete "
                        "(values) or continuous (min, max, scale)",
                        p->file, line, tpath,
                        has_min   ? "min"
                        : has_max ? "max"
                                  : "scale");
    if (!has_val && !(has_min && has_max))
        return mlt_errf(-EINVAL, err, errlen,
                        "%s:%u: %s needs min and max (continuous) or values (discrete)", p->file,
                        line, tpath);
    if (!has_def)
        return mlt_errf(-EINVAL, err, errlen, "%s:%u: %s.default is required", p->file, line,
                        tpath);
    if (has_val)
        t->kind = MLT_TUNABLE_DISCRETE;
    tunable_fix(t);
    return 0;
}

/* tunables = { NAME = { ... }; ... }: the table's read_named */
static int read_tunables(mlt_kt_ctx_t *p, void *base, const mlt_kt_key_t *k,
                         const config_setting_t *g, char *err, size_t errlen)
{
    mlt_job_t *job = base;
    (void)k;
    int n = config_setting_length(g);
    if ((unsigned)n > MLT_JOB_MAX_TUNABLES)
        return mlt_errf(-EINVAL, err, errlen,
                        "%s:%u: tunables must have at most %u entries (got %d)", p->file,
                        config_setting_source_line(g), MLT_JOB_MAX_TUNABLES, n);
    job->tunables = n ? mlt_calloc((size_t)n, sizeof *job->tunables) : NULL;
    for (int i = 0; i < n; i++) {
        const config_setting_t *s = config_setting_get_elem(g, (unsigned)i);
        const char *name = config_setting_name(s);
        unsigned line = config_setting_source_line(s);
        if (!tunable_name_ok(name))
            return mlt_errf(-EINVAL, err, errlen,
                            "%s:%u: tunable name '%.80s' must be 1..%u of A-Z a-z 0-9 _ -", p->file,
                            line, name, MLT_JOB_MAX_TUNABLE_NAME);
        char tpath[96];
        snprintf(tpath, sizeof tpath, "tunables.%s", name);
        if (!config_setting_is_group(s))
            return mlt_errf(-EINVAL, err, errlen,
                            "%s:%u: %s must be a group: { default = ...; min = ...; max = ...; "
                            "scale = ...; } or { default = ...; values = [...]; }",
                            p->file, line, tpath);
        mlt_kt_ctx_add(p, tpath, line);
        mlt_tunable_t *t = &job->tunables[job->n_tunables++];
        t->name = mlt_strdup(name);
        mlt_kt_defaults(&mlt_jobk_table, t, true);
        int rc = read_tunable(p, t, tpath, s, err, errlen);
        if (rc)
            return rc;
    }
    return 0;
}

/* ---- parsing ---- */

/* Parses text (at most MLT_JOB_MAX_TEXT bytes, checked by the caller) into a
 * zeroed *out. */
static int parse(const char *text, const char *file, mlt_job_t *out, char *err, size_t errlen)
{
    mlt_kt_ctx_t p = {.table = &mlt_jobk_table, .file = file};
    mlt_kt_defaults(&mlt_jobk_table, out, false);
    int rc = mlt_kt_read_text(&p, out, text, false, "a count string such as \"1M\"", err, errlen);
    if (rc)
        goto fail_job;
    out->output_dir_given = mlt_kt_ctx_line(&p, "output_dir") && out->output_dir[0] != '\0';
    finish(out);
    rc = mlt_jobk_validate(out, &p, err, errlen);
    if (rc)
        goto fail_job;
    out->text = mlt_strdup(text);
    mlt_kt_ctx_free(&p);
    return 0;

fail_job:
    mlt_job_free(out);
    mlt_kt_ctx_free(&p);
    return rc;
}

/* ---- the API ---- */

int mlt_job_parse_string(const char *text, const char *name_for_errors, mlt_job_t *out, char *err,
                         size_t errlen)
{
    const char *file = name_for_errors ? name_for_errors : "(job)";
    memset(out, 0, sizeof *out);
    if (!text)
        return mlt_errf(-EINVAL, err, errlen, "%s: no job text", file);
    size_t len = strnlen(text, MLT_JOB_MAX_TEXT + 1);
    if (len > MLT_JOB_MAX_TEXT)
        return mlt_errf(-EMSGSIZE, err, errlen, "%s: job text is over %u bytes", file,
                        MLT_JOB_MAX_TEXT);
    return parse(text, file, out, err, errlen);
}

int mlt_job_load(const char *path, mlt_job_t *out, char *err, size_t errlen)
{
    char *text = NULL;
    size_t len = 0;
    memset(out, 0, sizeof *out);
    int rc = mlt_cfgtext_read(path, MLT_JOB_MAX_TEXT, &text, &len, err, errlen);
    if (rc == -EFBIG)
        mlt_errf(rc, err, errlen, "%s: is over %u bytes, the most a job file may have", path,
                 MLT_JOB_MAX_TEXT);
    if (rc)
        return rc;
    if (strlen(text) != len) {
        mlt_free(text);
        return mlt_errf(-EINVAL, err, errlen, "%s: has a NUL byte; a job file is text", path);
    }
    rc = parse(text, path, out, err, errlen);
    mlt_free(text);
    return rc;
}

/* The tunable and member row of "tunables.NAME.MEMBER". 0, or -EINVAL with
 * the --set message. */
static int find_tunable_key(mlt_job_t *job, const char *kp, mlt_tunable_t **tp,
                            const mlt_kt_key_t **kp_out, char *err, size_t errlen)
{
    const char *name = kp + 9, *dot = strrchr(name, '.');
    mlt_tunable_t *t = NULL;
    for (uint32_t i = 0; dot && i < job->n_tunables; i++) {
        const char *tn = job->tunables[i].name;
        if (strlen(tn) == (size_t)(dot - name) && strncmp(tn, name, (size_t)(dot - name)) == 0)
            t = &job->tunables[i];
    }
    const mlt_kt_key_t *k = dot ? mlt_kt_find_member(&mlt_jobk_table, dot + 1) : NULL;
    if (!k)
        return mlt_errf(-EINVAL, err, errlen, "--set unknown key '%s'", kp);
    if (!t)
        return mlt_errf(-EINVAL, err, errlen, "--set %s: the job has no tunable '%.*s'", kp,
                        (int)(dot - name), name);
    bool discrete = t->kind == MLT_TUNABLE_DISCRETE;
    if ((discrete && for_continuous(k)) || (!discrete && k->type == MLT_KT_NUMLIST))
        return mlt_errf(-EINVAL, err, errlen,
                        "--set %s: tunable '%s' is %s; %s applies to %s tunables only", kp, t->name,
                        discrete ? "discrete (values)" : "continuous (min, max)", mlt_kt_leaf(k),
                        discrete ? "continuous" : "discrete");
    *tp = t;
    *kp_out = k;
    return 0;
}

int mlt_job_set(mlt_job_t *job, const char *key_path, const char *value, char *err, size_t errlen)
{
    char why[512];
    const char *kp = key_path ? key_path : "";
    void *base = job;
    mlt_tunable_t *t = NULL;
    const mlt_kt_key_t *k = NULL;
    if (strncmp(kp, "tunables.", 9) == 0) {
        int rc = find_tunable_key(job, kp, &t, &k, err, errlen);
        if (rc)
            return rc;
        base = t;
    } else {
        k = mlt_kt_find(&mlt_jobk_table, kp);
        if (!k)
            return mlt_errf(-EINVAL, err, errlen, "--set unknown key '%s'", kp);
    }
    int rc = mlt_kt_set_text(&mlt_jobk_table, base, k, kp, value ? value : "", why, sizeof why);
    if (rc)
        return mlt_errf(rc, err, errlen, "--set %s", why);
    if (t)
        tunable_fix(t);
    if (base == job && k->off == OFF(output_dir))
        job->output_dir_given = job->output_dir[0] != '\0';
    if (base == job && (k->off == OFF(output_dir) || k->off == OFF(name)))
        finish(job);
    char *text = mlt_job_format(job);
    mlt_free(job->text);
    job->text = text;
    return 0;
}

const mlt_tunable_t *mlt_job_tunable(const mlt_job_t *job, const char *name)
{
    for (uint32_t i = 0; job && name && i < job->n_tunables; i++)
        if (strcmp(job->tunables[i].name, name) == 0)
            return &job->tunables[i];
    return NULL;
}

bool mlt_job_rmse(const mlt_job_t *job)
{
    return job->model.metric == MLT_METRIC_RMSE ||
           (job->model.metric == MLT_METRIC_AUTO && job->model.type == MLT_MODEL_MF);
}

double mlt_job_default(const mlt_job_t *job, const char *name, double fallback)
{
    const mlt_tunable_t *t = mlt_job_tunable(job, name);
    return t ? t->def : fallback;
}

const char *mlt_job_enum_name(const char *key_path, int value)
{
    const mlt_kt_key_t *k = NULL;
    if (key_path && strncmp(key_path, "tunables.*.", 11) == 0)
        k = mlt_kt_find_member(&mlt_jobk_table, key_path + 11);
    else if (key_path)
        k = mlt_kt_find(&mlt_jobk_table, key_path);
    return k && k->type == MLT_KT_ENUM ? mlt_kt_enum_name(k->names, value) : NULL;
}

void mlt_job_write_keys(FILE *f)
{
    mlt_kt_write_keylist(f, &mlt_jobk_table);
}

void mlt_job_free(mlt_job_t *job)
{
    if (!job)
        return;
    mlt_kt_free_fields(&mlt_jobk_table, job, false);
    for (uint32_t i = 0; job->tunables && i < job->n_tunables; i++) {
        mlt_free(job->tunables[i].name);
        mlt_kt_free_fields(&mlt_jobk_table, &job->tunables[i], true);
    }
    mlt_free(job->tunables);
    mlt_free(job->text);
    memset(job, 0, sizeof *job);
}
