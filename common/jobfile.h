/* jobfile.h - a job file: one training run described in libconfig syntax
 * (the files in conf/jobs/): model, data, workers, update rule, the tunables with
 * their ranges and defaults, the tuner's constants, stop conditions.
 *
 * Every key has one row in a table in jobfile.c (type, default, bounds,
 * one-line description); mlt_job_write_keys() prints that table. Errors name
 * the file and line ("job.conf:7: model.cnn[2] = 'conv5x5' is not convKxKxC,
 * poolP or fcN"). A parsed job is self-contained: every string is owned, and
 * job->text holds the job as text so that the coordinator can send it to the
 * workers, which parse it with mlt_job_parse_string.
 *
 * Order of use: mlt_job_load or mlt_job_parse_string (which validate), then any
 * number of mlt_job_set, then mlt_job_validate once; free with mlt_job_free.
 * No global state; a job may be read from several threads, changed by one. */
#ifndef MLT_JOBFILE_H
#define MLT_JOBFILE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

/* Limits. The first three equal MLT_MAX_JOB_TEXT, MLT_MAX_NAME_LEN and
 * MLT_MAX_PATH_LEN of proto/limits.h (common/ sits below proto/; the unit test
 * checks they agree). With the others they keep the text of any valid job,
 * re-written by mlt_job_set, under MLT_JOB_MAX_TEXT. */
#define MLT_JOB_MAX_TEXT         49152u /* bytes of job text (a file, or the wire) */
#define MLT_JOB_MAX_NAME         128u   /* bytes of the job's name */
#define MLT_JOB_MAX_PATH         1024u  /* bytes of a path (output_dir, data files) */
#define MLT_JOB_MAX_LAYERS       64u    /* model.layers entries */
#define MLT_JOB_MAX_CNN          64u    /* model.cnn entries */
#define MLT_JOB_MAX_TUNABLES     32u    /* tunables in one job */
#define MLT_JOB_MAX_VALUES       32u    /* values of one discrete tunable */
#define MLT_JOB_MAX_TUNABLE_NAME 63u    /* bytes of a tunable's name */

typedef enum {
    MLT_BACKEND_CPU = 0,  /* OpenBLAS + C kernels */
    MLT_BACKEND_CUDA = 1, /* CUDA; a worker without a GPU refuses the job */
    MLT_BACKEND_AUTO = 2, /* CUDA where a GPU is found, else CPU */
} mlt_backend_t;

/* on_worker_loss: what a job does when a worker is lost */
enum { MLT_ON_LOSS_CONTINUE = 0, MLT_ON_LOSS_FAIL = 1 };

typedef enum {
    MLT_MODEL_MLP = 0,     /* fully connected, ReLU, sizes from model.layers */
    MLT_MODEL_CNN = 1,     /* conv/pool/fc stack from model.cnn */
    MLT_MODEL_SOFTMAX = 2, /* multinomial logistic regression */
    MLT_MODEL_MF = 3,      /* matrix factorisation of ratings */
    MLT_MODEL_EXTERNAL = 4, /* the worker program's own model and data (#13) */
} mlt_model_type_t;

/* model.metric: what tests measure and targets are stated in */
enum { MLT_METRIC_AUTO = 0, MLT_METRIC_ACCURACY = 1, MLT_METRIC_RMSE = 2 };

typedef enum {
    MLT_CNN_CONV = 0, /* k×k convolution to n channels, 'same' padding, stride 1, ReLU */
    MLT_CNN_POOL = 1, /* k×k max pool, stride k */
    MLT_CNN_FC = 2,   /* fully connected to n units, ReLU */
} mlt_cnn_op_t;

typedef struct mlt_cnn_layer {
    mlt_cnn_op_t op; /* what the layer does */
    uint32_t k;      /* conv: kernel size (odd, 1..11); pool: size and stride (2..8); fc: 0 */
    uint32_t n;      /* conv: output channels (1..1024); fc: units (1..65536); pool: 0 */
} mlt_cnn_layer_t;

typedef enum {
    MLT_DATA_IDX = 0,       /* IDX image/label files (MNIST format), gzipped or not */
    MLT_DATA_RATINGS = 1,   /* a ratings file (MovieLens formats) */
    MLT_DATA_SYNTHETIC = 2, /* seeded synthetic low-rank ratings */
} mlt_data_format_t;

typedef enum {
    MLT_SEARCHER_BAYES = 0,    /* Gaussian process, expected improvement */
    MLT_SEARCHER_TPE = 1,      /* tree-structured Parzen estimator */
    MLT_SEARCHER_RANDOM = 2,   /* uniform (log-uniform on log scale) */
    MLT_SEARCHER_GRID = 3,     /* grid over the tuned tunables */
    MLT_SEARCHER_MARGINAL = 4, /* one tunable at a time around the current setting */
} mlt_searcher_t;

typedef enum {
    MLT_LOGIC_MLTUNER = 0,   /* the MLtuner algorithm (DESIGN.md §6) */
    MLT_LOGIC_FIXED = 1,     /* no tuning: every tunable at its default */
    MLT_LOGIC_TTC = 2,       /* train-to-completion search (Spearmint-style) */
    MLT_LOGIC_HYPERBAND = 3, /* Hyperband */
} mlt_logic_t;

typedef enum {
    MLT_TUNABLE_LOG = 0,      /* continuous in [min, max], searched on a log scale */
    MLT_TUNABLE_LINEAR = 1,   /* continuous in [min, max], searched on a linear scale */
    MLT_TUNABLE_DISCRETE = 2, /* one of values[] */
} mlt_tunable_kind_t;

typedef struct mlt_tunable {
    char *name;        /* as in the file: "lr", "batch_size", ... (owned) */
    int kind;          /* mlt_tunable_kind_t */
    double min, max;   /* the range; for DISCRETE, values[0] and values[n_values - 1] */
    double def;        /* the default: inside [min, max], or one of values[] */
    double *values;    /* DISCRETE: ascending, no repeats (owned); else NULL */
    uint32_t n_values; /* entries in values (0 unless DISCRETE) */
    bool tune;         /* false: fixed at def, the tuner leaves it alone */
} mlt_tunable_t;

typedef struct mlt_job {
    char *name;            /* the job's name, 1..128 of A-Z a-z 0-9 . _ - */
    int64_t seed;          /* seed of all randomness (init, data order, searchers) */
    int workers;           /* number of worker processes, 1..1024 */
    mlt_backend_t backend; /* compute backend of the workers */
    char *output_dir;      /* where results go; "out/<name>" unless given */
    bool output_dir_given; /* false: output_dir follows name */
    int on_worker_loss;    /* MLT_ON_LOSS_CONTINUE or MLT_ON_LOSS_FAIL */
    double worker_wait_s;  /* wait for a missing worker or a replacement, then fail */

    struct {
        mlt_model_type_t type; /* which model */
        uint32_t *layers;      /* mlp hidden sizes (owned; NULL when n_layers is 0) */
        uint32_t n_layers;
        mlt_cnn_layer_t *cnn; /* cnn stack; the last fc to the classes is implied (owned) */
        uint32_t n_cnn;
        int rank;  /* mf: factor rank */
        double l2; /* mf: L2 regularisation */
        int metric; /* MLT_METRIC_*: auto is rmse for mf, accuracy otherwise */
    } model;

    struct {
        mlt_data_format_t format;
        char *train_images; /* idx: paths (owned) */
        char *train_labels;
        char *test_images;
        char *test_labels;
        char *ratings; /* ratings: path ("" when unused) */
        struct {
            int users, items; /* synthetic: matrix shape */
            int rank;         /* synthetic: true rank */
            int64_t ratings;  /* synthetic: number of observed ratings */
            double noise;     /* synthetic: Gaussian noise sigma (the RMSE floor) */
        } synthetic;
        int64_t validation;   /* idx: training samples held out (the last ones) */
        double test_fraction; /* ratings/synthetic: fraction held out as test set */
        int64_t subset;       /* 0: all; else train on the first N samples only */
    } data;

    struct {
        int rule;            /* mlt_rule_t of kernels/optim.h (same order) */
        double beta1, beta2; /* Adam moments; beta2 is rho of RMSProp/AdaDelta */
        double eps;          /* denominator guard */
        bool average;        /* sgd/nesterov: keep the weight average x; tests read it */
    } update;

    mlt_tunable_t *tunables; /* in file order (owned) */
    uint32_t n_tunables;

    struct {
        mlt_searcher_t searcher;
        mlt_logic_t logic;
        int min_trial_clocks;      /* rung-0 trial time: these clocks at the default setting */
        int range_clocks;          /* clocks of the learning-rate range test (0: none) */
        int first_trials;          /* the first search's design: this many settings */
        int max_trials;            /* a search's trials, design and proposals, at most */
        double gain_stop;          /* propose while the expected gain > this x best score */
        double max_overhead;       /* time in trials / training time, at most */
        double plateau_t;          /* re-tune when the loss trend's t > -this (0: off) */
        int retune_tests;          /* re-tune after this many tests without gain (0: never) */
        double decay;              /* a re-tune tries the learning rate times this */
        int converge_tests;        /* converged after this many re-tunes without gain */
        char *warm_start;          /* "auto", "" (none) or a path: where a warm start is (owned) */
    } tuner;

    double test_interval; /* epochs between tests */

    struct {
        double target_accuracy; /* stop at this test accuracy (0: none) */
        double target_rmse;     /* mf: stop at this test RMSE (0: none) */
        double max_epochs;      /* stop after this many epochs */
        double max_time_s;      /* stop after this many seconds (0: none) */
        int plateau_tests;      /* stop after this many tests without gain (0: off) */
    } stop;

    double checkpoint_interval_s; /* seconds of job time between checkpoints (0: none) */

    char *text; /* the job as libconfig text: the file or string parsed, or after
                   mlt_job_set the job re-written with every key; parses back
                   to this job (owned) */
} mlt_job_t;

/* Parses job text. name_for_errors prefixes messages ("job.conf:7: ...").
 * Fills *out (uninitialised or freed) and keeps a copy of text in out->text;
 * on failure *out is zeroed and needs no free. Returns 0; -EINVAL with
 * "NAME:LINE: what is wrong" in err; -EMSGSIZE for text over
 * MLT_JOB_MAX_TEXT bytes. Validates (mlt_job_validate) before returning. */
int mlt_job_parse_string(const char *text, const char *name_for_errors, mlt_job_t *out, char *err,
                         size_t errlen);

/* Reads and parses the file at path, as mlt_job_parse_string with the path as
 * the name; out->text is the file's text. Also -errno ("path: cannot open:
 * why") when it cannot be read, -EFBIG when it is over MLT_JOB_MAX_TEXT. */
int mlt_job_load(const char *path, mlt_job_t *out, char *err, size_t errlen);

/* Sets one key from text, as a command-line override: ("workers", "1"),
 * ("tunables.lr.default", "0.1"), ("model.layers", "512,512"),
 * ("model.cnn", "conv3x3x16,pool2,fc128"), ("data.synthetic.ratings", "2M").
 * The key's own bounds are checked; checks between keys (a tunable's default
 * inside its range, model against data format) are mlt_job_validate's, so
 * that several sets can move a job from one valid state to another. A
 * tunable must exist to be set. Re-writes job->text. Returns 0 or -EINVAL
 * with "--set what is wrong"; on failure *job is unchanged. */
int mlt_job_set(mlt_job_t *job, const char *key_path, const char *value, char *err, size_t errlen);

/* Checks everything between keys (see jobfile.c, validate()) and, again, every
 * key's bounds. Returns 0 or -EINVAL with a message (no file line). */
int mlt_job_validate(const mlt_job_t *job, char *err, size_t errlen);

/* The tunable called name, or NULL. Borrowed from job. */
const mlt_tunable_t *mlt_job_tunable(const mlt_job_t *job, const char *name);

/* The default of the tunable called name, or fallback when the job has none. */
double mlt_job_default(const mlt_job_t *job, const char *name, double fallback);
/* Whether tests measure RMSE (model.metric rmse, or auto on an mf model)
 * rather than accuracy. */
bool mlt_job_rmse(const mlt_job_t *job);

/* Name of an enum value as the job file writes it ("cuda", "cnn", "idx",
 * "adam", "bayes", "train-to-completion", "log"), or NULL. key_path is the
 * key ("backend", "model.type", "data.format", "update.rule", "tuner.searcher",
 * "tuner.logic", "tunables.*.scale"). */
const char *mlt_job_enum_name(const char *key_path, int value);

/* The job as libconfig text with every key (caller frees with mlt_free);
 * mlt_job_parse_string of it gives the same job. */
char *mlt_job_format(const mlt_job_t *job);

/* Prints the documented key list: one line per key (groups too), the key's
 * path first, then its type, default, description and bounds. Tunables'
 * members are listed as "tunables.*.min" and so on. */
void mlt_job_write_keys(FILE *f);

/* Frees every owned member and zeroes *job. Safe on a zeroed job. */
void mlt_job_free(mlt_job_t *job);

#endif
