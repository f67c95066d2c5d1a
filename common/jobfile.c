/* jobfile.c - job files (see jobfile.h).
 *
 * Everything about a key lives in one row of keys[]: its path ("model.rank"),
 * type, default, bounds, one-line description and the field it is stored in.
 * Group rows ("model") exist so that unknown keys are caught at every level;
 * the members of a tunable are rows too ("tunables.*.min"), stored into an
 * mlt_tunable_t instead of the job. Defaults, parsing, mlt_job_set, the
 * bounds half of validation, mlt_job_format and mlt_job_write_keys are loops
 * over the table: adding a key is adding a field and a row.
 *
 * A value takes the same three steps whatever its source: read (a libconfig
 * setting or --set text becomes a jval_t; the type is checked here), check
 * (the key's own bounds, shared by every source) and store. Checks between
 * keys are in validate(), which knows the line of every key the file gave, so
 * that its messages point at the file as well.
 *
 * This file also carries a copy of daemon/config.c's scan for integer
 * literals that libconfig 1.5 wraps to 32 bits; the two could share one in
 * common/ later. No global state; thread-safe on distinct jobs. */
#include "common/jobfile.h"

#include "common/cfgtext.h"

#include <assert.h>
#include <ctype.h>
#include <errno.h>
#include <float.h>
#include <limits.h>
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include <libconfig.h>

#include "common/alloc.h"

_Static_assert(sizeof(mlt_backend_t) == sizeof(int), "enum fields are stored as int");

#define DEB_FMNIST "/usr/share/datasets/fashion-mnist/"

typedef enum {
    JK_GROUP,    /* a group of keys; no field */
    JK_TUNABLES, /* the tunables group: any name, each a group of tunables.* rows */
    JK_INT,      /* int field; a libconfig integer (a float is refused) */
    JK_INT64,    /* int64_t field; an integer (L suffix past 32 bits) or "1M"-style string */
    JK_DOUBLE,   /* double field; a float or an integer; finite */
    JK_STRING,   /* char * field, owned; never NULL after defaults (but name) */
    JK_BOOL,     /* bool field */
    JK_ENUM,     /* int-sized enum field; a string, one of names[] (index = value) */
    JK_INTLIST,  /* uint32_t * at off, uint32_t count at off_n; list of integers */
    JK_NUMLIST,  /* double * at off, uint32_t count at off_n; ascending, no repeats */
    JK_CNN,      /* mlt_cnn_layer_t * at off, uint32_t count at off_n; list of strings */
} jk_type_t;

typedef struct {
    const char *path; /* "model.rank"; "tunables.*.min" for a tunable's member */
    jk_type_t type;
    bool required;            /* no default: the file must give it */
    bool in_tunable;          /* off/off_n are offsets in mlt_tunable_t */
    long long def_i;          /* default of JK_INT, JK_INT64, JK_BOOL (0/1), JK_ENUM */
    double def_d;             /* default of JK_DOUBLE */
    const char *def_s;        /* default of JK_STRING */
    const char *doc_def;      /* default as the key list shows it, when not the plain value */
    long long min_i, max_i;   /* JK_INT, JK_INT64, JK_INTLIST entries: inclusive bounds */
    double min_d, max_d;      /* JK_DOUBLE: bounds */
    bool max_open;            /* JK_DOUBLE: max itself is refused */
    uint32_t max_n;           /* lists: at most this many entries */
    uint32_t min_n;           /* lists: at least this many entries */
    const char *const *names; /* JK_ENUM: the names, NULL-terminated */
    /* JK_STRING: 0, or -EINVAL with "SUBJ must ..." in why */
    int (*check)(const char *subj, const char *s, char *why, size_t whylen);
    size_t off, off_n; /* field offsets (in mlt_job_t, or mlt_tunable_t) */
    const char *desc;  /* one line */
} jkey_t;

/* One value on its way from a file or --set text into the job. */
typedef struct {
    long long i;   /* JK_INT, JK_INT64, JK_ENUM */
    double d;      /* JK_DOUBLE */
    bool b;        /* JK_BOOL */
    const char *s; /* JK_STRING (borrowed) */
    void *list;    /* lists (owned until stored) */
    uint32_t n;    /* entries in list */
} jval_t;

static const char *const backend_names[] = {"cpu", "cuda", "auto", NULL};
static const char *const model_names[] = {"mlp", "cnn", "softmax", "mf", NULL};
static const char *const format_names[] = {"idx", "ratings", "synthetic", NULL};
/* the order of mlt_rule_t in kernels/optim.h (the unit test checks) */
static const char *const rule_names[] = {"sgd",     "nesterov", "adam", "rmsprop",
                                         "adagrad", "adadelta", NULL};
static const char *const searcher_names[] = {"bayes", "tpe", "random", "grid", "marginal", NULL};
static const char *const logic_names[] = {"mltuner", "fixed", "train-to-completion", "hyperband",
                                          NULL};
static const char *const scale_names[] = {"log", "linear", NULL}; /* = MLT_TUNABLE_LOG, LINEAR */

static int check_name(const char *subj, const char *s, char *why, size_t whylen);
static int check_printable(const char *subj, const char *s, char *why, size_t whylen);
static int check_path(const char *subj, const char *s, char *why, size_t whylen);
static int check_path_opt(const char *subj, const char *s, char *why, size_t whylen);

#define OFF(f)  offsetof(mlt_job_t, f)
#define TOFF(f) offsetof(mlt_tunable_t, f)

/* The keys, in the order mlt_job_format writes them: a group's members follow
 * its row. (Kept out of clang-format, which would put each field on a line.) */
// clang-format off
static const jkey_t keys[] = {
    {.path = "name", .type = JK_STRING, .required = true, .check = check_name, .off = OFF(name),
     .desc = "the job's name (1..128 of A-Z a-z 0-9 . _ -); names its output directory"},
    {.path = "seed", .type = JK_INT64, .def_i = 1, .min_i = 0, .max_i = INT64_MAX,
     .off = OFF(seed),
     .desc = "seed of all randomness: initial weights, data order, synthetic data, searchers"},
    {.path = "workers", .type = JK_INT, .def_i = 2, .min_i = 1, .max_i = 1024,
     .off = OFF(workers), .desc = "number of worker processes (one per GPU or CPU socket)"},
    {.path = "backend", .type = JK_ENUM, .def_i = MLT_BACKEND_AUTO, .names = backend_names,
     .off = OFF(backend),
     .desc = "compute backend of the workers; auto: cuda where a GPU is found, else cpu"},
    {.path = "output_dir", .type = JK_STRING, .def_s = "", .doc_def = "\"out/<name>\"",
     .check = check_path_opt, .off = OFF(output_dir),
     .desc = "directory for the decision log, progress and checkpoints; \"\": out/<name>"},

    {.path = "model", .type = JK_GROUP, .desc = "the model to train"},
    {.path = "model.type", .type = JK_ENUM, .required = true, .names = model_names,
     .off = OFF(model.type),
     .desc = "mlp (uses layers), cnn (uses cnn), softmax, or mf (uses rank, l2)"},
    {.path = "model.layers", .type = JK_INTLIST, .min_i = 1, .max_i = 65536,
     .max_n = MLT_JOB_MAX_LAYERS, .off = OFF(model.layers), .off_n = OFF(model.n_layers),
     .desc = "mlp: hidden layer sizes, ReLU after each; input and output sizes come from "
             "the data"},
    {.path = "model.cnn", .type = JK_CNN, .max_n = MLT_JOB_MAX_CNN, .off = OFF(model.cnn),
     .off_n = OFF(model.n_cnn),
     .desc = "cnn: layers in order: convKxKxC (K odd 1..11, C 1..1024 channels, same "
             "padding, stride 1, ReLU), poolP (PxP max pool, stride P, P 2..8), fcN (N "
             "units, ReLU); the last fc to the classes is implied"},
    {.path = "model.rank", .type = JK_INT, .def_i = 20, .min_i = 1, .max_i = 1024,
     .off = OFF(model.rank), .desc = "mf: rank of the user and item factors"},
    {.path = "model.l2", .type = JK_DOUBLE, .def_d = 0.0, .min_d = 0.0, .max_d = 10.0,
     .off = OFF(model.l2), .desc = "mf: L2 regularisation of the factors"},

    {.path = "data", .type = JK_GROUP, .desc = "the training and test data"},
    {.path = "data.format", .type = JK_ENUM, .def_i = MLT_DATA_IDX, .names = format_names,
     .off = OFF(data.format),
     .desc = "idx (image and label files), ratings (a ratings file) or synthetic "
             "(generated ratings)"},
    {.path = "data.train_images", .type = JK_STRING,
     .def_s = DEB_FMNIST "train-images-idx3-ubyte.gz", .check = check_path,
     .off = OFF(data.train_images), .desc = "idx: training images (IDX, gzipped or not)"},
    {.path = "data.train_labels", .type = JK_STRING,
     .def_s = DEB_FMNIST "train-labels-idx1-ubyte.gz", .check = check_path,
     .off = OFF(data.train_labels), .desc = "idx: training labels"},
    {.path = "data.test_images", .type = JK_STRING,
     .def_s = DEB_FMNIST "t10k-images-idx3-ubyte.gz", .check = check_path,
     .off = OFF(data.test_images), .desc = "idx: test images"},
    {.path = "data.test_labels", .type = JK_STRING,
     .def_s = DEB_FMNIST "t10k-labels-idx1-ubyte.gz", .check = check_path,
     .off = OFF(data.test_labels), .desc = "idx: test labels"},
    {.path = "data.ratings", .type = JK_STRING, .def_s = "", .check = check_path_opt,
     .off = OFF(data.ratings), .desc = "ratings: the ratings file (MovieLens formats)"},
    {.path = "data.synthetic", .type = JK_GROUP,
     .desc = "synthetic: a seeded random low-rank rating matrix plus Gaussian noise"},
    {.path = "data.synthetic.users", .type = JK_INT, .def_i = 10000, .min_i = 1,
     .max_i = 100000000, .off = OFF(data.synthetic.users), .desc = "number of users (rows)"},
    {.path = "data.synthetic.items", .type = JK_INT, .def_i = 5000, .min_i = 1,
     .max_i = 100000000, .off = OFF(data.synthetic.items), .desc = "number of items (columns)"},
    {.path = "data.synthetic.rank", .type = JK_INT, .def_i = 20, .min_i = 1, .max_i = 1024,
     .off = OFF(data.synthetic.rank), .desc = "rank of the true factors"},
    {.path = "data.synthetic.ratings", .type = JK_INT64, .def_i = 1000000, .min_i = 1,
     .max_i = 100000000000LL, .off = OFF(data.synthetic.ratings),
     .desc = "number of observed ratings, at most users x items; an integer (with an L "
             "suffix past 2147483647) or a count such as \"1M\""},
    {.path = "data.synthetic.noise", .type = JK_DOUBLE, .def_d = 0.5, .min_d = 0.0,
     .max_d = 100.0, .off = OFF(data.synthetic.noise),
     .desc = "standard deviation of the noise on each rating: the best reachable test RMSE"},
    {.path = "data.validation", .type = JK_INT64, .def_i = 5000, .min_i = 0,
     .max_i = 1000000000LL, .off = OFF(data.validation),
     .desc = "idx: training samples held out (the last ones of the train file) to measure "
             "validation accuracy"},
    {.path = "data.test_fraction", .type = JK_DOUBLE, .def_d = 0.1, .min_d = 0.01,
     .max_d = 0.9, .off = OFF(data.test_fraction),
     .desc = "ratings, synthetic: fraction of the ratings held out as the test set"},
    {.path = "data.subset", .type = JK_INT64, .def_i = 0, .min_i = 0,
     .max_i = 1000000000000LL, .off = OFF(data.subset),
     .desc = "0: train on every sample; N: only on the first N (after the validation "
             "hold-out), for quick tests"},

    {.path = "update", .type = JK_GROUP, .desc = "the update rule the servers apply to each push"},
    {.path = "update.rule", .type = JK_ENUM, .def_i = 0, .names = rule_names,
     .off = OFF(update.rule),
     .desc = "sgd (with momentum), nesterov, adam, rmsprop, adagrad or adadelta"},
    {.path = "update.beta1", .type = JK_DOUBLE, .def_d = 0.9, .min_d = 0.0, .max_d = 1.0,
     .max_open = true, .off = OFF(update.beta1), .desc = "adam: first-moment decay"},
    {.path = "update.beta2", .type = JK_DOUBLE, .def_d = 0.999, .min_d = 0.0, .max_d = 1.0,
     .max_open = true, .off = OFF(update.beta2),
     .desc = "adam: second-moment decay; the rho of rmsprop and adadelta"},
    {.path = "update.eps", .type = JK_DOUBLE, .def_d = 1e-8, .min_d = 1e-20, .max_d = 1.0,
     .off = OFF(update.eps), .desc = "denominator guard of adam, rmsprop, adagrad, adadelta"},

    {.path = "tunables", .type = JK_TUNABLES, .max_n = MLT_JOB_MAX_TUNABLES,
     .desc = "the training tunables, each a group named as the workers know it (lr, "
             "momentum, batch_size, staleness, weight_decay, or any other): continuous "
             "(min, max, scale) or discrete (values), with a default"},
    {.path = "tunables.*.default", .type = JK_DOUBLE, .in_tunable = true,
     .doc_def = "(required)", .min_d = -DBL_MAX, .max_d = DBL_MAX, .off = TOFF(def),
     .desc = "the value before tuning, and always when tune = false; within [min, max] or "
             "one of values"},
    {.path = "tunables.*.min", .type = JK_DOUBLE, .in_tunable = true, .doc_def = "(continuous)",
     .min_d = -DBL_MAX, .max_d = DBL_MAX, .off = TOFF(min),
     .desc = "continuous: the smallest value the tuner may try"},
    {.path = "tunables.*.max", .type = JK_DOUBLE, .in_tunable = true, .doc_def = "(continuous)",
     .min_d = -DBL_MAX, .max_d = DBL_MAX, .off = TOFF(max),
     .desc = "continuous: the largest value the tuner may try; greater than min"},
    {.path = "tunables.*.scale", .type = JK_ENUM, .in_tunable = true,
     .def_i = MLT_TUNABLE_LINEAR, .names = scale_names, .off = TOFF(kind),
     .desc = "continuous: log (searched on a log scale; min > 0) or linear"},
    {.path = "tunables.*.values", .type = JK_NUMLIST, .in_tunable = true,
     .doc_def = "(discrete)", .min_n = 1, .max_n = MLT_JOB_MAX_VALUES, .off = TOFF(values),
     .off_n = TOFF(n_values),
     .desc = "discrete: the values the tuner may pick from, ascending, without repeats"},
    {.path = "tunables.*.tune", .type = JK_BOOL, .in_tunable = true, .def_i = 1,
     .off = TOFF(tune), .desc = "false: fixed at default; the tuner leaves it alone"},

    {.path = "tuner", .type = JK_GROUP, .desc = "how the tunables are tuned (DESIGN.md section 6)"},
    {.path = "tuner.searcher", .type = JK_ENUM, .def_i = MLT_SEARCHER_BAYES,
     .names = searcher_names, .off = OFF(tuner.searcher),
     .desc = "proposes the next setting to try: bayes, tpe, random, grid or marginal"},
    {.path = "tuner.logic", .type = JK_ENUM, .def_i = MLT_LOGIC_MLTUNER, .names = logic_names,
     .off = OFF(tuner.logic),
     .desc = "mltuner (online trials on forked branches), fixed (no tuning: every tunable "
             "at its default), or the baselines train-to-completion and hyperband"},
    {.path = "tuner.min_trial_clocks", .type = JK_INT, .def_i = 50, .min_i = 1,
     .max_i = 1000000, .off = OFF(tuner.min_trial_clocks),
     .desc = "clocks of the first, shortest trial; trial time doubles until a trial "
             "converges"},
    {.path = "tuner.max_overhead", .type = JK_DOUBLE, .def_d = 0.1, .min_d = 0.001,
     .max_d = 1.0, .off = OFF(tuner.max_overhead),
     .desc = "time spent in trials, at most this fraction of the training time"},
    {.path = "tuner.retune_tests", .type = JK_INT, .def_i = 4, .min_i = 0, .max_i = 1000,
     .off = OFF(tuner.retune_tests),
     .desc = "re-tune after this many tests without improvement (0: never)"},
    {.path = "tuner.converge_tests", .type = JK_INT, .def_i = 5, .min_i = 1, .max_i = 1000,
     .off = OFF(tuner.converge_tests),
     .desc = "the model counts as converged (no more re-tuning) after this many tests "
             "without improvement"},
    {.path = "tuner.slope_agree", .type = JK_DOUBLE, .def_d = 0.1, .min_d = 0.0, .max_d = 1.0,
     .off = OFF(tuner.slope_agree),
     .desc = "a search ends when its best top_k slopes are within this fraction of each "
             "other"},
    {.path = "tuner.top_k", .type = JK_INT, .def_i = 5, .min_i = 1, .max_i = 100,
     .off = OFF(tuner.top_k), .desc = "how many of the best trials slope_agree compares"},
    {.path = "tuner.retune_time_factor", .type = JK_DOUBLE, .def_d = 10.0, .min_d = 0.0,
     .max_d = 1000.0, .off = OFF(tuner.retune_time_factor),
     .desc = "re-tune after training for this many times the last search's duration "
             "(0: off)"},

    {.path = "test_interval", .type = JK_DOUBLE, .def_d = 1.0, .min_d = 0.01, .max_d = 100.0,
     .off = OFF(test_interval), .desc = "epochs of training between two tests"},

    {.path = "stop", .type = JK_GROUP, .desc = "when the job ends: the first condition met"},
    {.path = "stop.target_accuracy", .type = JK_DOUBLE, .def_d = 0.0, .min_d = 0.0,
     .max_d = 1.0, .off = OFF(stop.target_accuracy),
     .desc = "mlp, cnn, softmax: stop when test accuracy reaches this (0: no target)"},
    {.path = "stop.target_rmse", .type = JK_DOUBLE, .def_d = 0.0, .min_d = 0.0, .max_d = 1e6,
     .off = OFF(stop.target_rmse),
     .desc = "mf: stop when test RMSE falls to this (0: no target)"},
    {.path = "stop.max_epochs", .type = JK_DOUBLE, .def_d = 10.0, .min_d = 0.01, .max_d = 1e6,
     .off = OFF(stop.max_epochs), .desc = "stop after this many epochs of training"},
    {.path = "stop.max_time_s", .type = JK_DOUBLE, .def_d = 0.0, .min_d = 0.0, .max_d = 1e9,
     .off = OFF(stop.max_time_s), .desc = "stop after this many seconds (0: no limit)"},
    {.path = "stop.plateau_tests", .type = JK_INT, .def_i = 0, .min_i = 0, .max_i = 1000,
     .off = OFF(stop.plateau_tests),
     .desc = "stop after this many tests without improvement (0: off)"},

    {.path = "checkpoint_interval_s", .type = JK_DOUBLE, .def_d = 0.0, .min_d = 0.0,
     .max_d = 1e7, .off = OFF(checkpoint_interval_s),
     .desc = "seconds between checkpoints (0: none)"},
};

// clang-format on

#define N_KEYS (sizeof keys / sizeof keys[0])

/* Tunables the system itself reads, with the values that make sense for
 * them; any other name is the workers' business. */
static const struct {
    const char *name;
    double lo, hi;     /* allowed values */
    bool lo_open;      /* lo itself is refused */
    bool hi_open;      /* hi itself is refused */
    bool integer;      /* whole numbers only */
    const char *range; /* how the message says it */
    const char *what;
} known[] = {
    {"lr", 0.0, DBL_MAX, true, false, false, "> 0", "a learning rate"},
    {"momentum", 0.0, 1.0, false, true, false, ">= 0 and < 1", "a momentum"},
    {"batch_size", 1.0, 65536.0, false, false, true, "an integer in 1..65536",
     "a batch size per worker"},
    {"staleness", 0.0, 1000.0, false, false, true, "an integer in 0..1000",
     "a staleness bound in clocks"},
    {"weight_decay", 0.0, DBL_MAX, false, false, false, ">= 0", "a weight decay"},
};

/* ---- small helpers ---- */

static void fmt(char *buf, size_t len, const char *f, ...) __attribute__((format(printf, 3, 4)));

/* snprintf into an optional message buffer (NULL or 0 length: dropped) */
static void fmt(char *buf, size_t len, const char *f, ...)
{
    if (!buf || len == 0)
        return;
    va_list ap;
    va_start(ap, f);
    vsnprintf(buf, len, f, ap);
    va_end(ap);
}

/* the row of a job key (not a tunable's member), or NULL */
static const jkey_t *key_find(const char *path)
{
    for (size_t i = 0; i < N_KEYS; i++)
        if (!keys[i].in_tunable && strcmp(keys[i].path, path) == 0)
            return &keys[i];
    return NULL;
}

/* the row of a tunable's member ("min"), or NULL */
static const jkey_t *tkey_find(const char *member)
{
    for (size_t i = 0; i < N_KEYS; i++) {
        const char *leaf = strrchr(keys[i].path, '.');
        if (keys[i].in_tunable && strcmp(leaf + 1, member) == 0)
            return &keys[i];
    }
    return NULL;
}

static const char *leaf_of(const jkey_t *k)
{
    const char *l = strrchr(k->path, '.');
    return l ? l + 1 : k->path;
}

static void *field(void *base, const jkey_t *k)
{
    return (char *)base + k->off;
}

static const void *cfield(const void *base, const jkey_t *k)
{
    return (const char *)base + k->off;
}

static bool is_integral(double v)
{
    return v >= -9.0e15 && v <= 9.0e15 && v == (double)(long long)v;
}

/* the shortest decimal that reads back as d, written so that libconfig reads a
 * float: "0.01", "60.0", "1e-08" */
static void fmt_double(char *buf, size_t len, double d)
{
    double a = d < 0 ? -d : d;
    if (a == 0.0 || (a >= 1e-4 && a < 1e15)) {
        for (int prec = 0; prec <= 17; prec++) {
            fmt(buf, len, "%.*f", prec, d);
            if (strtod(buf, NULL) == d)
                break;
        }
    } else {
        for (int prec = 1; prec <= 17; prec++) {
            fmt(buf, len, "%.*g", prec, d);
            if (strtod(buf, NULL) == d)
                break;
        }
    }
    if (!strpbrk(buf, ".eEni") && strlen(buf) + 3 <= len)
        strcat(buf, ".0");
}

/* "one of "a", "b", "c"" for an enum row */
static void fmt_names(char *buf, size_t len, const char *const *names)
{
    size_t used = 0;
    fmt(buf, len, "one of");
    used = strlen(buf);
    for (size_t i = 0; names[i] && used + 1 < len; i++) {
        fmt(buf + used, len - used, "%s \"%s\"", i ? "," : "", names[i]);
        used += strlen(buf + used);
    }
}

static const char *type_noun(const jkey_t *k, char *buf, size_t len)
{
    switch (k->type) {
    case JK_GROUP: return "a group { ... }";
    case JK_TUNABLES: return "a group of tunables, each a group { ... }";
    case JK_INT: return "an integer";
    case JK_INT64: return "an integer or a count such as \"1M\"";
    case JK_DOUBLE: return "a number";
    case JK_STRING: return "a string";
    case JK_BOOL: return "true or false";
    case JK_ENUM: fmt_names(buf, len, k->names); return buf;
    case JK_INTLIST: return "a list of integers";
    case JK_NUMLIST: return "a list of numbers";
    case JK_CNN: return "a list of strings such as \"conv5x5x32\", \"pool2\", \"fc256\"";
    }
    return "?";
}

static const char *type_word(const jkey_t *k)
{
    switch (k->type) {
    case JK_GROUP: return "group";
    case JK_TUNABLES: return "group";
    case JK_INT: return "int";
    case JK_INT64: return "int64";
    case JK_DOUBLE: return "number";
    case JK_STRING: return "string";
    case JK_BOOL: return "bool";
    case JK_ENUM: return "enum";
    case JK_INTLIST: return "[int]";
    case JK_NUMLIST: return "[number]";
    case JK_CNN: return "[string]";
    }
    return "?";
}

static int enum_parse(const char *const *names, const char *s)
{
    for (int i = 0; names[i]; i++)
        if (strcmp(names[i], s) == 0)
            return i;
    return -1;
}

static const char *enum_name(const char *const *names, long long v)
{
    for (long long i = 0; names[i]; i++)
        if (i == v)
            return names[i];
    return NULL;
}

/* ---- string checks ---- */

static int check_name(const char *subj, const char *s, char *why, size_t whylen)
{
    size_t n = strlen(s);
    bool ok = n >= 1 && n <= MLT_JOB_MAX_NAME && s[0] != '.';
    for (size_t i = 0; ok && i < n; i++)
        ok = isalnum((unsigned char)s[i]) || s[i] == '.' || s[i] == '_' || s[i] == '-';
    if (!ok) {
        fmt(why, whylen,
            "%s must be 1..%u characters of A-Z a-z 0-9 . _ -, not starting with '.' "
            "(got \"%.*s\")",
            subj, MLT_JOB_MAX_NAME, 160, s);
        return -EINVAL;
    }
    return 0;
}

static int check_path_opt(const char *subj, const char *s, char *why, size_t whylen)
{
    if (strlen(s) > MLT_JOB_MAX_PATH) {
        fmt(why, whylen, "%s must be at most %u bytes (got %zu)", subj, MLT_JOB_MAX_PATH,
            strlen(s));
        return -EINVAL;
    }
    return 0;
}

static int check_path(const char *subj, const char *s, char *why, size_t whylen)
{
    if (s[0] == '\0') {
        fmt(why, whylen, "%s must not be empty", subj);
        return -EINVAL;
    }
    return check_path_opt(subj, s, why, whylen);
}

/* ---- cnn layer specs ---- */

/* Digits only, the whole number at *pp (at most 9 digits). false when none. */
static bool scan_uint(const char **pp, uint32_t *out)
{
    const char *p = *pp;
    uint32_t v = 0;
    int n = 0;
    while (isdigit((unsigned char)*p) && n < 10) {
        v = v * 10 + (uint32_t)(*p - '0');
        p++;
        n++;
    }
    if (n == 0 || n > 9)
        return false;
    *pp = p;
    *out = v;
    return true;
}

/* "conv5x5x32", "pool2" or "fc256" -> *out. 0, or -EINVAL with
 * "SUBJ[I] = 'spec' ..." in why. */
static int cnn_parse(const char *subj, uint32_t i, const char *s, mlt_cnn_layer_t *out, char *why,
                     size_t whylen)
{
    const char *p = s;
    uint32_t a = 0, b = 0, c = 0;
    bool ok;
    mlt_cnn_layer_t l = {0};
    if (strncmp(p, "conv", 4) == 0) {
        p += 4;
        ok = scan_uint(&p, &a) && *p++ == 'x' && scan_uint(&p, &b) && *p++ == 'x' &&
             scan_uint(&p, &c) && *p == '\0';
        l = (mlt_cnn_layer_t){MLT_CNN_CONV, a, c};
    } else if (strncmp(p, "pool", 4) == 0) {
        p += 4;
        ok = scan_uint(&p, &a) && *p == '\0';
        l = (mlt_cnn_layer_t){MLT_CNN_POOL, a, 0};
    } else if (strncmp(p, "fc", 2) == 0) {
        p += 2;
        ok = scan_uint(&p, &a) && *p == '\0';
        l = (mlt_cnn_layer_t){MLT_CNN_FC, 0, a};
    } else {
        ok = false;
    }
    const char *bad = NULL;
    if (!ok)
        bad = "is not convKxKxC, poolP or fcN";
    else if (l.op == MLT_CNN_CONV && a != b)
        bad = "has a kernel that is not square (KxK)";
    else if (l.op == MLT_CNN_CONV && (a < 1 || a > 11 || a % 2 == 0))
        bad = "has a kernel size that is not odd in 1..11";
    else if (l.op == MLT_CNN_CONV && (c < 1 || c > 1024))
        bad = "has channels outside 1..1024";
    else if (l.op == MLT_CNN_POOL && (a < 2 || a > 8))
        bad = "has a pool size outside 2..8";
    else if (l.op == MLT_CNN_FC && (a < 1 || a > 65536))
        bad = "has units outside 1..65536";
    if (bad) {
        fmt(why, whylen, "%s[%u] = '%.64s' %s", subj, i, s, bad);
        return -EINVAL;
    }
    *out = l;
    return 0;
}

static void cnn_spec(const mlt_cnn_layer_t *l, char *buf, size_t len)
{
    switch (l->op) {
    case MLT_CNN_CONV: fmt(buf, len, "conv%ux%ux%u", l->k, l->k, l->n); break;
    case MLT_CNN_POOL: fmt(buf, len, "pool%u", l->k); break;
    case MLT_CNN_FC: fmt(buf, len, "fc%u", l->n); break;
    default: fmt(buf, len, "?"); break;
    }
}

/* ---- reading a value: libconfig setting or text -> jval_t ---- */

static void val_free(jval_t *v)
{
    mlt_free(v->list);
    v->list = NULL;
    v->n = 0;
}

/* Digits with an optional decimal count suffix K, M, G or T ("1M" is
 * 1000000), an optional leading '-'. 0, or -EINVAL with why. */
static int parse_count(const jkey_t *k, const char *subj, const char *s, long long *out, char *why,
                       size_t whylen)
{
    const char *p = s;
    bool neg = *p == '-';
    p += neg;
    long long v = 0, mult = 1;
    bool overflow = false;
    const char *digits = p;
    for (; isdigit((unsigned char)*p); p++) {
        if (v > (LLONG_MAX - (*p - '0')) / 10)
            overflow = true;
        else
            v = v * 10 + (*p - '0');
    }
    bool any = p != digits;
    switch (*p) {
    case 'k':
    case 'K':
        mult = 1000LL;
        p++;
        break;
    case 'm':
    case 'M':
        mult = 1000000LL;
        p++;
        break;
    case 'g':
    case 'G':
        mult = 1000000000LL;
        p++;
        break;
    case 't':
    case 'T':
        mult = 1000000000000LL;
        p++;
        break;
    default: break;
    }
    if (!any || *p != '\0' || (mult > 1 && k->type != JK_INT64)) {
        fmt(why, whylen, "%s must be %s (got \"%.64s\")", subj,
            k->type == JK_INT64 ? "an integer or a count such as \"1M\"" : "an integer", s);
        return -EINVAL;
    }
    if (overflow || v > LLONG_MAX / mult) {
        fmt(why, whylen, "%s must be between %lld and %lld (got %.64s)", subj, k->min_i, k->max_i,
            s);
        return -EINVAL;
    }
    *out = neg ? -v * mult : v * mult;
    return 0;
}

static int parse_number(const char *subj, const char *s, double *out, char *why, size_t whylen)
{
    char *end;
    double d = strtod(s, &end);
    if (*s == '\0' || isspace((unsigned char)*s) || *end != '\0') {
        fmt(why, whylen, "%s must be a number (got \"%.64s\")", subj, s);
        return -EINVAL;
    }
    *out = d;
    return 0;
}

/* Splits "a, b,c" (optionally inside one pair of [ ] or ( )) into trimmed
 * entries; *np entries, each owned, in a new array (caller frees both). An
 * empty text is the empty list. */
static char **split_list(const char *s, uint32_t *np)
{
    while (isspace((unsigned char)*s))
        s++;
    size_t len = strlen(s);
    while (len > 0 && isspace((unsigned char)s[len - 1]))
        len--;
    if (len >= 2 && ((s[0] == '[' && s[len - 1] == ']') || (s[0] == '(' && s[len - 1] == ')'))) {
        s++;
        len -= 2;
    }
    bool blank = true;
    for (size_t i = 0; i < len; i++)
        blank &= isspace((unsigned char)s[i]) != 0;
    *np = 0;
    if (blank)
        return NULL;
    uint32_t n = 1;
    for (size_t i = 0; i < len; i++)
        n += s[i] == ',';
    char **l = mlt_calloc(n, sizeof *l);
    const char *p = s, *stop = s + len;
    for (uint32_t i = 0; i < n; i++) {
        const char *end = memchr(p, ',', (size_t)(stop - p));
        if (!end)
            end = stop;
        const char *b = p, *e = end;
        while (b < e && isspace((unsigned char)*b))
            b++;
        while (e > b && isspace((unsigned char)e[-1]))
            e--;
        if (e - b >= 2 && *b == '"' && e[-1] == '"') {
            b++;
            e--;
        }
        l[i] = mlt_malloc((size_t)(e - b) + 1);
        memcpy(l[i], b, (size_t)(e - b));
        l[i][e - b] = '\0';
        p = end < stop ? end + 1 : end;
    }
    *np = n;
    return l;
}

static void strs_free(char **l, uint32_t n)
{
    for (uint32_t i = 0; l && i < n; i++)
        mlt_free(l[i]);
    mlt_free(l);
}

/* Element i of a list value, as text, into v->list. 0, or -EINVAL with why. */
static int list_elem_from_text(const jkey_t *k, const char *subj, uint32_t i, const char *s,
                               jval_t *v, char *why, size_t whylen)
{
    char esubj[160];
    fmt(esubj, sizeof esubj, "%s[%u]", subj, i);
    switch (k->type) {
    case JK_INTLIST: {
        long long x;
        int rc = parse_count(k, esubj, s, &x, why, whylen);
        if (rc)
            return rc;
        ((uint32_t *)v->list)[i] = (uint32_t)(x < 0 ? 0 : x > UINT32_MAX ? UINT32_MAX : x);
        if (x < k->min_i || x > k->max_i) {
            fmt(why, whylen, "%s must be between %lld and %lld (got %lld)", esubj, k->min_i,
                k->max_i, x);
            return -EINVAL;
        }
        return 0;
    }
    case JK_NUMLIST: return parse_number(esubj, s, &((double *)v->list)[i], why, whylen);
    case JK_CNN: return cnn_parse(subj, i, s, &((mlt_cnn_layer_t *)v->list)[i], why, whylen);
    default: return -EINVAL;
    }
}

static size_t elem_size(const jkey_t *k)
{
    switch (k->type) {
    case JK_INTLIST: return sizeof(uint32_t);
    case JK_NUMLIST: return sizeof(double);
    case JK_CNN: return sizeof(mlt_cnn_layer_t);
    default: return 0;
    }
}

/* mlt_job_set text -> value of k's type. 0, or -EINVAL with why. */
static int value_from_text(const jkey_t *k, const char *subj, const char *s, jval_t *v, char *why,
                           size_t whylen)
{
    if (check_printable(subj, s, why, whylen))
        return -EINVAL;
    switch (k->type) {
    case JK_INT:
    case JK_INT64: return parse_count(k, subj, s, &v->i, why, whylen);
    case JK_DOUBLE: return parse_number(subj, s, &v->d, why, whylen);
    case JK_STRING: v->s = s; return 0;
    case JK_BOOL: {
        static const char *const yes[] = {"true", "yes", "on", "1"};
        static const char *const no[] = {"false", "no", "off", "0"};
        for (size_t i = 0; i < sizeof yes / sizeof yes[0]; i++) {
            if (strcmp(s, yes[i]) == 0 || strcmp(s, no[i]) == 0) {
                v->b = strcmp(s, yes[i]) == 0;
                return 0;
            }
        }
        fmt(why, whylen, "%s must be true or false (got \"%.64s\")", subj, s);
        return -EINVAL;
    }
    case JK_ENUM: {
        int e = enum_parse(k->names, s);
        if (e < 0) {
            char names[256];
            fmt_names(names, sizeof names, k->names);
            fmt(why, whylen, "%s must be %s (got \"%.64s\")", subj, names, s);
            return -EINVAL;
        }
        v->i = e;
        return 0;
    }
    case JK_INTLIST:
    case JK_NUMLIST:
    case JK_CNN: {
        uint32_t n;
        char **parts = split_list(s, &n);
        int rc = 0;
        if (n > k->max_n) {
            fmt(why, whylen, "%s must have at most %u entries (got %u)", subj, k->max_n, n);
            rc = -EINVAL;
        }
        v->n = n;
        v->list = n && !rc ? mlt_calloc(n, elem_size(k)) : NULL;
        for (uint32_t i = 0; !rc && i < n; i++)
            rc = list_elem_from_text(k, subj, i, parts[i], v, why, whylen);
        strs_free(parts, n);
        if (rc)
            val_free(v);
        return rc;
    }
    case JK_GROUP:
    case JK_TUNABLES: break;
    }
    fmt(why, whylen, "%s is a group; set one of its keys", subj);
    return -EINVAL;
}

/* Strings of a job end up in messages, logs and the re-written job text:
 * control characters (a newline, a NUL from \x00) are refused where a string
 * value is read, so no message spans two lines and re-writing never grows. */
static int check_printable(const char *subj, const char *s, char *why, size_t whylen)
{
    for (const unsigned char *p = (const unsigned char *)s; p && *p; p++) {
        if (*p < 0x20 || *p == 0x7f) {
            fmt(why, whylen, "%s has a control character (0x%02x) at byte %zu", subj, *p,
                (size_t)(p - (const unsigned char *)s));
            return -EINVAL;
        }
    }
    return 0;
}

/* A libconfig setting -> value of k's type. 0, or -EINVAL with why; *linep
 * becomes the line of the element at fault, if it is one. */
static int value_from_setting(const jkey_t *k, const char *subj, const config_setting_t *s,
                              jval_t *v, char *why, size_t whylen, unsigned *linep)
{
    int t = config_setting_type(s);
    bool is_int = t == CONFIG_TYPE_INT || t == CONFIG_TYPE_INT64;
    char nbuf[256];
    if (t == CONFIG_TYPE_STRING && check_printable(subj, config_setting_get_string(s), why, whylen))
        return -EINVAL;
    switch (k->type) {
    case JK_INT:
        if (!is_int)
            break;
        v->i = config_setting_get_int64(s);
        return 0;
    case JK_INT64:
        if (is_int) {
            v->i = config_setting_get_int64(s);
            return 0;
        }
        if (t != CONFIG_TYPE_STRING)
            break;
        return parse_count(k, subj, config_setting_get_string(s), &v->i, why, whylen);
    case JK_DOUBLE:
        if (is_int)
            v->d = (double)config_setting_get_int64(s);
        else if (t == CONFIG_TYPE_FLOAT)
            v->d = config_setting_get_float(s);
        else
            break;
        return 0;
    case JK_STRING:
        if (t != CONFIG_TYPE_STRING)
            break;
        v->s = config_setting_get_string(s);
        return 0;
    case JK_BOOL:
        if (t != CONFIG_TYPE_BOOL)
            break;
        v->b = config_setting_get_bool(s) != 0;
        return 0;
    case JK_ENUM:
        if (t != CONFIG_TYPE_STRING)
            break;
        return value_from_text(k, subj, config_setting_get_string(s), v, why, whylen);
    case JK_INTLIST:
    case JK_NUMLIST:
    case JK_CNN: {
        if (t != CONFIG_TYPE_LIST && t != CONFIG_TYPE_ARRAY)
            break;
        int n = config_setting_length(s);
        for (int i = 0; i < n; i++) {
            const config_setting_t *e = config_setting_get_elem(s, (unsigned)i);
            int et = config_setting_type(e);
            bool ok = k->type == JK_INTLIST   ? et == CONFIG_TYPE_INT || et == CONFIG_TYPE_INT64
                      : k->type == JK_NUMLIST ? config_setting_is_number(e)
                                              : et == CONFIG_TYPE_STRING;
            if (!ok) {
                *linep = config_setting_source_line(e);
                fmt(why, whylen, "%s must be %s", subj, type_noun(k, nbuf, sizeof nbuf));
                return -EINVAL;
            }
        }
        if ((unsigned)n > k->max_n) {
            fmt(why, whylen, "%s must have at most %u entries (got %d)", subj, k->max_n, n);
            return -EINVAL;
        }
        v->n = (uint32_t)n;
        v->list = n ? mlt_calloc((size_t)n, elem_size(k)) : NULL;
        for (int i = 0; i < n; i++) {
            const config_setting_t *e = config_setting_get_elem(s, (unsigned)i);
            int rc = 0;
            char esubj[160];
            fmt(esubj, sizeof esubj, "%s[%d]", subj, i);
            if (k->type == JK_INTLIST) {
                long long x = config_setting_get_int64(e);
                ((uint32_t *)v->list)[i] = (uint32_t)x;
                if (x < k->min_i || x > k->max_i) {
                    fmt(why, whylen, "%s must be between %lld and %lld (got %lld)", esubj, k->min_i,
                        k->max_i, x);
                    rc = -EINVAL;
                }
            } else if (k->type == JK_NUMLIST) {
                ((double *)v->list)[i] = config_setting_type(e) == CONFIG_TYPE_FLOAT
                                             ? config_setting_get_float(e)
                                             : (double)config_setting_get_int64(e);
            } else if (!(rc = check_printable(subj, config_setting_get_string(e), why, whylen))) {
                rc = cnn_parse(subj, (uint32_t)i, config_setting_get_string(e),
                               &((mlt_cnn_layer_t *)v->list)[i], why, whylen);
            }
            if (rc) {
                *linep = config_setting_source_line(e);
                val_free(v);
                return rc;
            }
        }
        return 0;
    }
    case JK_GROUP:
    case JK_TUNABLES: break;
    }
    fmt(why, whylen, "%s must be %s", subj, type_noun(k, nbuf, sizeof nbuf));
    return -EINVAL;
}

/* ---- checking and storing ---- */

/* The key's own bounds. 0, or -EINVAL with why; *idxp becomes the index of
 * the list entry at fault (else it is left alone). */
static int check_value(const jkey_t *k, const char *subj, const jval_t *v, char *why, size_t whylen,
                       int *idxp)
{
    switch (k->type) {
    case JK_INT:
    case JK_INT64:
        if (v->i < k->min_i || v->i > k->max_i) {
            fmt(why, whylen, "%s must be between %lld and %lld (got %lld)", subj, k->min_i,
                k->max_i, v->i);
            return -EINVAL;
        }
        return 0;
    case JK_DOUBLE:
        if (!(v->d >= k->min_d && v->d <= k->max_d) || (k->max_open && v->d >= k->max_d)) {
            if (k->min_d == -DBL_MAX)
                fmt(why, whylen, "%s must be a finite number (got %g)", subj, v->d);
            else if (k->max_open)
                fmt(why, whylen, "%s must be at least %g and less than %g (got %g)", subj, k->min_d,
                    k->max_d, v->d);
            else
                fmt(why, whylen, "%s must be between %g and %g (got %g)", subj, k->min_d, k->max_d,
                    v->d);
            return -EINVAL;
        }
        return 0;
    case JK_STRING:
        if (!v->s) {
            fmt(why, whylen, "%s is required", subj);
            return -EINVAL;
        }
        return k->check ? k->check(subj, v->s, why, whylen) : 0;
    case JK_ENUM:
        if (!enum_name(k->names, v->i)) {
            char names[256];
            fmt_names(names, sizeof names, k->names);
            fmt(why, whylen, "%s must be %s (got %lld)", subj, names, v->i);
            return -EINVAL;
        }
        return 0;
    case JK_INTLIST:
    case JK_NUMLIST:
    case JK_CNN:
        if (v->n > k->max_n || v->n < k->min_n) {
            if (v->n == 0)
                fmt(why, whylen, "%s must not be empty", subj);
            else
                fmt(why, whylen, "%s must have at most %u entries (got %u)", subj, k->max_n, v->n);
            return -EINVAL;
        }
        for (uint32_t i = 0; i < v->n; i++) {
            if (k->type == JK_INTLIST) {
                uint32_t x = ((const uint32_t *)v->list)[i];
                if ((long long)x < k->min_i || (long long)x > k->max_i) {
                    fmt(why, whylen, "%s[%u] must be between %lld and %lld (got %u)", subj, i,
                        k->min_i, k->max_i, x);
                    *idxp = (int)i;
                    return -EINVAL;
                }
            } else if (k->type == JK_NUMLIST) {
                const double *d = v->list;
                if (!(d[i] >= -DBL_MAX && d[i] <= DBL_MAX)) {
                    fmt(why, whylen, "%s[%u] must be a finite number (got %g)", subj, i, d[i]);
                    *idxp = (int)i;
                    return -EINVAL;
                }
                if (i > 0 && !(d[i] > d[i - 1])) {
                    fmt(why, whylen,
                        "%s must be ascending without repeats ([%u] = %g follows [%u] = %g)", subj,
                        i, d[i], i - 1, d[i - 1]);
                    *idxp = (int)i;
                    return -EINVAL;
                }
            } else {
                const mlt_cnn_layer_t *l = v->list;
                char spec[48];
                cnn_spec(&l[i], spec, sizeof spec);
                mlt_cnn_layer_t again;
                if (cnn_parse(subj, i, spec, &again, why, whylen)) { /* from a struct */
                    *idxp = (int)i;
                    return -EINVAL;
                }
                if (i > 0 && l[i].op != MLT_CNN_FC && l[i - 1].op == MLT_CNN_FC) {
                    fmt(why, whylen,
                        "%s[%u] = '%s' follows an fc layer; conv and pool layers must come "
                        "before the first fc",
                        subj, i, spec);
                    *idxp = (int)i;
                    return -EINVAL;
                }
            }
        }
        return 0;
    case JK_BOOL:
    case JK_GROUP:
    case JK_TUNABLES: return 0;
    }
    return -EINVAL;
}

/* Stores a checked value into base (a job, or a tunable for in_tunable rows);
 * takes v->list. */
static void store(void *base, const jkey_t *k, jval_t *v)
{
    void *f = field(base, k);
    switch (k->type) {
    case JK_INT: *(int *)f = (int)v->i; break;
    case JK_INT64: *(int64_t *)f = v->i; break;
    case JK_DOUBLE: *(double *)f = v->d; break;
    case JK_BOOL: *(bool *)f = v->b; break;
    case JK_ENUM: *(int *)f = (int)v->i; break;
    case JK_STRING: {
        char **p = f;
        char *s = v->s ? mlt_strdup(v->s) : NULL;
        mlt_free(*p);
        *p = s;
        break;
    }
    case JK_INTLIST:
    case JK_NUMLIST:
    case JK_CNN: {
        void **p = f;
        mlt_free(*p);
        *p = v->list;
        *(uint32_t *)((char *)base + k->off_n) = v->n;
        v->list = NULL;
        v->n = 0;
        break;
    }
    case JK_GROUP:
    case JK_TUNABLES: break;
    }
}

/* The value stored in base, borrowed (lists and strings point into base). */
static jval_t load_value(const void *base, const jkey_t *k)
{
    jval_t v = {0};
    const void *f = cfield(base, k);
    switch (k->type) {
    case JK_INT: v.i = *(const int *)f; break;
    case JK_INT64: v.i = *(const int64_t *)f; break;
    case JK_DOUBLE: v.d = *(const double *)f; break;
    case JK_BOOL: v.b = *(const bool *)f; break;
    case JK_ENUM: v.i = *(const int *)f; break;
    case JK_STRING: v.s = *(char *const *)f; break;
    case JK_INTLIST:
    case JK_NUMLIST:
    case JK_CNN:
        v.list = *(void *const *)f;
        v.n = *(const uint32_t *)((const char *)base + k->off_n);
        break;
    case JK_GROUP:
    case JK_TUNABLES: break;
    }
    return v;
}

/* the defaults of every row with in_tunable == tun into base */
static void apply_defaults(void *base, bool tun)
{
    for (size_t i = 0; i < N_KEYS; i++) {
        const jkey_t *k = &keys[i];
        if (k->in_tunable != tun || k->type == JK_GROUP || k->type == JK_TUNABLES)
            continue;
        jval_t v = {.i = k->def_i, .d = k->def_d, .b = k->def_i != 0, .s = k->def_s};
        store(base, k, &v);
    }
}

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

/* ---- parse context: the file's name and the line of every key it gave ---- */

typedef struct {
    char *path; /* "tunables.lr.min" */
    unsigned line;
} kline_t;

typedef struct {
    const char *file; /* name for messages; NULL: no file (messages have no prefix) */
    kline_t *lines;   /* every key seen, in file order */
    size_t n, cap;
} pctx_t;

static void ctx_add(pctx_t *p, const char *path, unsigned line)
{
    if (p->n == p->cap) {
        p->cap = p->cap ? 2 * p->cap : 64;
        p->lines = mlt_realloc(p->lines, p->cap * sizeof *p->lines);
    }
    p->lines[p->n++] = (kline_t){mlt_strdup(path), line};
}

static void ctx_free(pctx_t *p)
{
    for (size_t i = 0; i < p->n; i++)
        mlt_free(p->lines[i].path);
    mlt_free(p->lines);
}

/* the line of path in the file, or 0 when the file did not give it */
static unsigned ctx_line(const pctx_t *p, const char *path)
{
    for (size_t i = 0; p && path && i < p->n; i++)
        if (strcmp(p->lines[i].path, path) == 0)
            return p->lines[i].line;
    return 0;
}

/* Writes "FILE:LINE: what" (line of the first of the paths the file gave;
 * "FILE: what" when none; "what" without a file) and returns -EINVAL. The
 * list of paths ends with NULL. */
static int report(const pctx_t *p, char *err, size_t errlen, const char *what, const char *path,
                  ...)
{
    unsigned line = 0;
    va_list ap;
    va_start(ap, path);
    for (const char *q = path; q && line == 0; q = va_arg(ap, const char *))
        line = ctx_line(p, q);
    va_end(ap);
    if (!p || !p->file)
        fmt(err, errlen, "%s", what);
    else if (line)
        fmt(err, errlen, "%s:%u: %s", p->file, line, what);
    else
        fmt(err, errlen, "%s: %s", p->file, what);
    return -EINVAL;
}

/* ---- checks between keys ---- */

static const char *model_name(const mlt_job_t *job)
{
    const char *s = enum_name(model_names, job->model.type);
    return s ? s : "?";
}

/* A tunable's own consistency, then the values a known name allows. */
static int validate_tunable(const mlt_tunable_t *t, const pctx_t *p, char *err, size_t errlen)
{
    char why[512], pdef[96], pmin[96], pmax[96], pval[96];
    snprintf(pdef, sizeof pdef, "tunables.%s.default", t->name);
    snprintf(pmin, sizeof pmin, "tunables.%s.min", t->name);
    snprintf(pmax, sizeof pmax, "tunables.%s.max", t->name);
    snprintf(pval, sizeof pval, "tunables.%s.values", t->name);
    if (t->kind == MLT_TUNABLE_DISCRETE) {
        bool found = false;
        for (uint32_t i = 0; i < t->n_values; i++)
            found |= t->values[i] == t->def;
        if (!found) {
            fmt(why, sizeof why, "%s must be one of %s (got %g)", pdef, pval, t->def);
            return report(p, err, errlen, why, pdef, NULL);
        }
    } else {
        if (!(t->min < t->max)) {
            fmt(why, sizeof why, "%s (%g) must be less than %s (%g)", pmin, t->min, pmax, t->max);
            return report(p, err, errlen, why, pmin, pmax, NULL);
        }
        if (t->kind == MLT_TUNABLE_LOG && !(t->min > 0)) {
            fmt(why, sizeof why, "%s must be > 0 for scale \"log\" (got %g)", pmin, t->min);
            return report(p, err, errlen, why, pmin, NULL);
        }
        if (!(t->def >= t->min && t->def <= t->max)) {
            fmt(why, sizeof why, "%s must be between min (%g) and max (%g) (got %g)", pdef, t->min,
                t->max, t->def);
            return report(p, err, errlen, why, pdef, NULL);
        }
    }
    for (size_t j = 0; j < sizeof known / sizeof known[0]; j++) {
        if (strcmp(known[j].name, t->name) != 0)
            continue;
        /* continuous: the ends of the range; discrete: each value */
        uint32_t n = t->kind == MLT_TUNABLE_DISCRETE ? t->n_values : 2;
        for (uint32_t i = 0; i < n; i++) {
            double x = t->kind == MLT_TUNABLE_DISCRETE ? t->values[i] : i ? t->max : t->min;
            bool ok = (known[j].lo_open ? x > known[j].lo : x >= known[j].lo) &&
                      (known[j].hi_open ? x < known[j].hi : x <= known[j].hi) &&
                      (!known[j].integer || is_integral(x));
            if (ok)
                continue;
            char subj[128];
            if (t->kind == MLT_TUNABLE_DISCRETE)
                fmt(subj, sizeof subj, "%s[%u]", pval, i);
            else
                fmt(subj, sizeof subj, "%s", i ? pmax : pmin);
            fmt(why, sizeof why, "%s must be %s, as %s (got %g)", subj, known[j].range,
                known[j].what, x);
            return report(p, err, errlen, why, t->kind == MLT_TUNABLE_DISCRETE ? pval : subj, NULL);
        }
    }
    return 0;
}

/* Everything between keys, and every key's bounds again (a job changed with
 * mlt_job_set, or built by hand). Messages point at the file when p has one. */
static int validate(const mlt_job_t *job, const pctx_t *p, char *err, size_t errlen)
{
    char why[512];
    int idx = -1;
    for (size_t i = 0; i < N_KEYS; i++) {
        const jkey_t *k = &keys[i];
        if (k->in_tunable || k->type == JK_GROUP || k->type == JK_TUNABLES)
            continue;
        jval_t v = load_value(job, k);
        if (check_value(k, k->path, &v, why, sizeof why, &idx))
            return report(p, err, errlen, why, k->path, NULL);
    }
    if (job->n_tunables > MLT_JOB_MAX_TUNABLES || (job->n_tunables && !job->tunables)) {
        fmt(why, sizeof why, "tunables must have at most %u entries (got %u)", MLT_JOB_MAX_TUNABLES,
            job->n_tunables);
        return report(p, err, errlen, why, "tunables", NULL);
    }
    for (uint32_t t = 0; t < job->n_tunables; t++) {
        const mlt_tunable_t *tu = &job->tunables[t];
        for (size_t i = 0; i < N_KEYS; i++) {
            const jkey_t *k = &keys[i];
            if (!k->in_tunable)
                continue;
            if (tu->kind == MLT_TUNABLE_DISCRETE ? k->off == TOFF(min) || k->off == TOFF(max)
                                                 : k->type == JK_NUMLIST)
                continue;
            char subj[128];
            fmt(subj, sizeof subj, "tunables.%s.%s", tu->name, leaf_of(k));
            jval_t v = load_value(tu, k);
            if (k->type == JK_ENUM && tu->kind == MLT_TUNABLE_DISCRETE)
                continue;
            if (check_value(k, subj, &v, why, sizeof why, &idx))
                return report(p, err, errlen, why, subj, NULL);
        }
        for (uint32_t u = 0; u < t; u++) {
            if (strcmp(job->tunables[u].name, tu->name) == 0) {
                fmt(why, sizeof why, "tunables.%s is given twice", tu->name);
                return report(p, err, errlen, why, "tunables", NULL);
            }
        }
        int rc = validate_tunable(tu, p, err, errlen);
        if (rc)
            return rc;
    }

    const char *mt = model_name(job);
    const char *df = enum_name(format_names, job->data.format);
    switch (job->model.type) {
    case MLT_MODEL_MLP:
        if (job->model.n_layers == 0) {
            fmt(why, sizeof why,
                "model.type \"mlp\" needs model.layers, its hidden layer sizes such as "
                "[256, 256] (for none use model.type \"softmax\")");
            return report(p, err, errlen, why, "model.layers", "model.type", NULL);
        }
        break;
    case MLT_MODEL_CNN:
        if (job->model.n_cnn == 0) {
            fmt(why, sizeof why,
                "model.type \"cnn\" needs model.cnn, its layers such as [\"conv5x5x32\", "
                "\"pool2\", \"fc256\"]");
            return report(p, err, errlen, why, "model.cnn", "model.type", NULL);
        }
        break;
    default: break;
    }
    if (job->model.type == MLT_MODEL_MF && job->data.format == MLT_DATA_IDX) {
        fmt(why, sizeof why,
            "model.type \"mf\" needs data.format \"ratings\" or \"synthetic\" (got \"%s\")", df);
        return report(p, err, errlen, why, "data.format", "model.type", NULL);
    }
    if (job->model.type != MLT_MODEL_MF && job->data.format != MLT_DATA_IDX) {
        fmt(why, sizeof why, "model.type \"%s\" needs data.format \"idx\" (got \"%s\")", mt, df);
        return report(p, err, errlen, why, "data.format", "model.type", NULL);
    }
    if (job->data.format == MLT_DATA_RATINGS && job->data.ratings[0] == '\0') {
        fmt(why, sizeof why, "data.format \"ratings\" needs data.ratings, the ratings file");
        return report(p, err, errlen, why, "data.ratings", "data.format", NULL);
    }
    if (job->data.format == MLT_DATA_SYNTHETIC) {
        long long cells = (long long)job->data.synthetic.users * job->data.synthetic.items;
        if (job->data.synthetic.ratings > cells) {
            fmt(why, sizeof why,
                "data.synthetic.ratings (%lld) must be at most users x items (%lld)",
                (long long)job->data.synthetic.ratings, cells);
            return report(p, err, errlen, why, "data.synthetic.ratings", "data.synthetic", NULL);
        }
    }
    if (job->model.type == MLT_MODEL_MF && job->stop.target_accuracy > 0) {
        fmt(why, sizeof why,
            "stop.target_accuracy is for classifiers; model.type \"mf\" stops at "
            "stop.target_rmse");
        return report(p, err, errlen, why, "stop.target_accuracy", NULL);
    }
    if (job->model.type != MLT_MODEL_MF && job->stop.target_rmse > 0) {
        fmt(why, sizeof why,
            "stop.target_rmse is for model.type \"mf\"; \"%s\" stops at stop.target_accuracy", mt);
        return report(p, err, errlen, why, "stop.target_rmse", NULL);
    }
    return 0;
}

/* ---- reading a file's settings into a job ---- */

static int read_key(pctx_t *p, void *base, const jkey_t *k, const char *path,
                    const config_setting_t *s, char *err, size_t errlen)
{
    char why[512];
    unsigned line = config_setting_source_line(s);
    unsigned eline = 0;
    int idx = -1;
    jval_t v = {0};
    int rc = value_from_setting(k, path, s, &v, why, sizeof why, &eline);
    if (!rc) {
        rc = check_value(k, path, &v, why, sizeof why, &idx);
        if (rc && idx >= 0) {
            const config_setting_t *e = config_setting_get_elem(s, (unsigned)idx);
            eline = e ? config_setting_source_line(e) : 0;
        }
    }
    if (rc) {
        val_free(&v);
        fmt(err, errlen, "%s:%u: %s", p->file, eline ? eline : line, why);
        return rc;
    }
    store(base, k, &v);
    return 0;
}

/* tunables = { NAME = { ... }; ... } */
static int read_tunables(pctx_t *p, mlt_job_t *job, const config_setting_t *g, char *err,
                         size_t errlen)
{
    int n = config_setting_length(g);
    if ((unsigned)n > MLT_JOB_MAX_TUNABLES) {
        fmt(err, errlen, "%s:%u: tunables must have at most %u entries (got %d)", p->file,
            config_setting_source_line(g), MLT_JOB_MAX_TUNABLES, n);
        return -EINVAL;
    }
    job->tunables = n ? mlt_calloc((size_t)n, sizeof *job->tunables) : NULL;
    for (int i = 0; i < n; i++) {
        const config_setting_t *s = config_setting_get_elem(g, (unsigned)i);
        const char *name = config_setting_name(s);
        unsigned line = config_setting_source_line(s);
        size_t nl = strlen(name);
        bool ok = nl >= 1 && nl <= MLT_JOB_MAX_TUNABLE_NAME;
        for (size_t c = 0; ok && c < nl; c++)
            ok = isalnum((unsigned char)name[c]) || name[c] == '_' || name[c] == '-';
        if (!ok) {
            fmt(err, errlen, "%s:%u: tunable name '%.80s' must be 1..%u of A-Z a-z 0-9 _ -",
                p->file, line, name, MLT_JOB_MAX_TUNABLE_NAME);
            return -EINVAL;
        }
        char tpath[96];
        fmt(tpath, sizeof tpath, "tunables.%s", name);
        if (!config_setting_is_group(s)) {
            fmt(err, errlen,
                "%s:%u: %s must be a group: { default = ...; min = ...; max = ...; "
                "scale = ...; } or { default = ...; values = [...]; }",
                p->file, line, tpath);
            return -EINVAL;
        }
        ctx_add(p, tpath, line);
        mlt_tunable_t *t = &job->tunables[job->n_tunables++];
        t->name = mlt_strdup(name);
        apply_defaults(t, true);
        bool has_def = false, has_min = false, has_max = false, has_scale = false, has_val = false;
        int m = config_setting_length(s);
        for (int j = 0; j < m; j++) {
            const config_setting_t *e = config_setting_get_elem(s, (unsigned)j);
            const char *member = config_setting_name(e);
            char path[192];
            fmt(path, sizeof path, "%s.%s", tpath, member);
            const jkey_t *k = tkey_find(member);
            if (!k) {
                fmt(err, errlen, "%s:%u: unknown key '%s'", p->file, config_setting_source_line(e),
                    path);
                return -EINVAL;
            }
            int rc = read_key(p, t, k, path, e, err, errlen);
            if (rc)
                return rc;
            ctx_add(p, path, config_setting_source_line(e));
            has_def |= k->off == TOFF(def);
            has_min |= k->off == TOFF(min);
            has_max |= k->off == TOFF(max);
            has_scale |= k->off == TOFF(kind);
            has_val |= k->type == JK_NUMLIST;
        }
        if (has_val && (has_min || has_max || has_scale)) {
            fmt(err, errlen,
                "%s:%u: %s gives both values and %s; a tunable is either discrete (values) "
                "or continuous (min, max, scale)",
                p->file, line, tpath,
                has_min   ? "min"
                : has_max ? "max"
                          : "scale");
            return -EINVAL;
        }
        if (!has_val && !(has_min && has_max)) {
            fmt(err, errlen, "%s:%u: %s needs min and max (continuous) or values (discrete)",
                p->file, line, tpath);
            return -EINVAL;
        }
        if (!has_def) {
            fmt(err, errlen, "%s:%u: %s.default is required", p->file, line, tpath);
            return -EINVAL;
        }
        if (has_val)
            t->kind = MLT_TUNABLE_DISCRETE;
        tunable_fix(t);
    }
    return 0;
}

/* every setting of group g (whose path is prefix, "" for the root) */
static int read_group(pctx_t *p, mlt_job_t *job, const config_setting_t *g, const char *prefix,
                      char *err, size_t errlen)
{
    int n = config_setting_length(g);
    for (int i = 0; i < n; i++) {
        const config_setting_t *s = config_setting_get_elem(g, (unsigned)i);
        const char *name = config_setting_name(s);
        unsigned line = config_setting_source_line(s);
        char path[160];
        fmt(path, sizeof path, "%s%s%s", prefix, *prefix ? "." : "", name ? name : "?");
        const jkey_t *k = key_find(path);
        if (!k) {
            fmt(err, errlen, "%s:%u: unknown key '%s'", p->file, line, path);
            return -EINVAL;
        }
        int rc;
        if (k->type == JK_GROUP || k->type == JK_TUNABLES) {
            if (!config_setting_is_group(s)) {
                char nbuf[64];
                fmt(err, errlen, "%s:%u: %s must be %s", p->file, line, path,
                    type_noun(k, nbuf, sizeof nbuf));
                return -EINVAL;
            }
            ctx_add(p, path, line);
            rc = k->type == JK_GROUP ? read_group(p, job, s, path, err, errlen)
                                     : read_tunables(p, job, s, err, errlen);
        } else {
            rc = read_key(p, job, k, path, s, err, errlen);
            ctx_add(p, path, line);
            if (!rc && k->off == OFF(output_dir))
                job->output_dir_given = job->output_dir[0] != '\0';
        }
        if (rc)
            return rc;
    }
    return 0;
}

/* ---- the text before libconfig sees it ---- */

/* Parses text (at most MLT_JOB_MAX_TEXT bytes, checked by the caller) into a
 * zeroed *out. */
static int parse(const char *text, const char *file, mlt_job_t *out, char *err, size_t errlen)
{
    pctx_t p = {.file = file};
    config_t cfg;
    int rc = mlt_cfgtext_check(text, file, false, "a count string such as \"1M\"", err, errlen);
    if (rc)
        return rc;
    config_init(&cfg);
    if (!config_read_string(&cfg, text)) {
        const char *why = config_error_text(&cfg);
        fmt(err, errlen, "%s:%d: %s", file, config_error_line(&cfg), why ? why : "parse error");
        rc = -EINVAL;
        goto fail_cfg;
    }
    apply_defaults(out, false);
    rc = read_group(&p, out, config_root_setting(&cfg), "", err, errlen);
    if (rc)
        goto fail_job;
    for (size_t i = 0; i < N_KEYS; i++) {
        const jkey_t *k = &keys[i];
        if (k->required && !k->in_tunable && !ctx_line(&p, k->path)) {
            char nbuf[256];
            fmt(err, errlen, "%s: %s is required (%s)", file, k->path,
                k->type == JK_ENUM ? type_noun(k, nbuf, sizeof nbuf) : k->desc);
            rc = -EINVAL;
            goto fail_job;
        }
    }
    finish(out);
    rc = validate(out, &p, err, errlen);
    if (rc)
        goto fail_job;
    out->text = mlt_strdup(text);
    ctx_free(&p);
    config_destroy(&cfg);
    return 0;

fail_job:
    mlt_job_free(out);
fail_cfg:
    ctx_free(&p);
    config_destroy(&cfg);
    return rc;
}

/* ---- the API ---- */

int mlt_job_parse_string(const char *text, const char *name_for_errors, mlt_job_t *out, char *err,
                         size_t errlen)
{
    const char *file = name_for_errors ? name_for_errors : "(job)";
    memset(out, 0, sizeof *out);
    if (!text) {
        fmt(err, errlen, "%s: no job text", file);
        return -EINVAL;
    }
    size_t len = strnlen(text, MLT_JOB_MAX_TEXT + 1);
    if (len > MLT_JOB_MAX_TEXT) {
        fmt(err, errlen, "%s: job text is over %u bytes", file, MLT_JOB_MAX_TEXT);
        return -EMSGSIZE;
    }
    return parse(text, file, out, err, errlen);
}

int mlt_job_load(const char *path, mlt_job_t *out, char *err, size_t errlen)
{
    int rc;
    char *text = NULL;
    memset(out, 0, sizeof *out);
    FILE *fp = fopen(path, "r");
    if (!fp) {
        rc = -errno;
        goto fail_open;
    }
    struct stat st;
    if (fstat(fileno(fp), &st) != 0) {
        rc = -errno;
        goto fail_read;
    }
    if (S_ISDIR(st.st_mode)) { /* fopen takes a directory; it would read as empty */
        rc = -EISDIR;
        goto fail_read;
    }
    text = mlt_malloc(MLT_JOB_MAX_TEXT + 2);
    size_t len = fread(text, 1, MLT_JOB_MAX_TEXT + 1, fp);
    if (ferror(fp)) {
        rc = -EIO;
        goto fail_text;
    }
    if (len > MLT_JOB_MAX_TEXT) {
        mlt_free(text);
        fclose(fp);
        fmt(err, errlen, "%s: is over %u bytes, the most a job file may have", path,
            MLT_JOB_MAX_TEXT);
        return -EFBIG;
    }
    fclose(fp);
    text[len] = '\0';
    if (strlen(text) != len) {
        mlt_free(text);
        fmt(err, errlen, "%s: has a NUL byte; a job file is text", path);
        return -EINVAL;
    }
    rc = parse(text, path, out, err, errlen);
    mlt_free(text);
    return rc;

fail_text:
    mlt_free(text);
fail_read:
    fclose(fp);
fail_open:
    fmt(err, errlen, "%s: cannot open: %s", path, strerror(-rc));
    return rc;
}

int mlt_job_set(mlt_job_t *job, const char *key_path, const char *value, char *err, size_t errlen)
{
    char why[512];
    const char *kp = key_path ? key_path : "";
    const char *s = value ? value : "";
    void *base = job;
    mlt_tunable_t *t = NULL;
    const jkey_t *k = NULL;
    if (strncmp(kp, "tunables.", 9) == 0) {
        const char *name = kp + 9, *dot = strrchr(name, '.');
        for (uint32_t i = 0; dot && i < job->n_tunables; i++) {
            const char *tn = job->tunables[i].name;
            if (strlen(tn) == (size_t)(dot - name) && strncmp(tn, name, (size_t)(dot - name)) == 0)
                t = &job->tunables[i];
        }
        k = dot ? tkey_find(dot + 1) : NULL;
        if (!k) {
            fmt(err, errlen, "--set unknown key '%s'", kp);
            return -EINVAL;
        }
        if (!t) {
            fmt(err, errlen, "--set %s: the job has no tunable '%.*s'", kp, (int)(dot - name),
                name);
            return -EINVAL;
        }
        bool discrete = t->kind == MLT_TUNABLE_DISCRETE;
        bool for_discrete = k->type == JK_NUMLIST;
        bool for_cont = k->off == TOFF(min) || k->off == TOFF(max) || k->off == TOFF(kind);
        if ((discrete && for_cont) || (!discrete && for_discrete)) {
            fmt(err, errlen, "--set %s: tunable '%s' is %s; %s applies to %s tunables only", kp,
                t->name, discrete ? "discrete (values)" : "continuous (min, max)", leaf_of(k),
                discrete ? "continuous" : "discrete");
            return -EINVAL;
        }
        base = t;
    } else {
        k = key_find(kp);
        if (!k) {
            fmt(err, errlen, "--set unknown key '%s'", kp);
            return -EINVAL;
        }
    }
    jval_t v = {0};
    int idx = -1;
    int rc = value_from_text(k, kp, s, &v, why, sizeof why);
    if (!rc)
        rc = check_value(k, kp, &v, why, sizeof why, &idx);
    if (rc) {
        val_free(&v);
        fmt(err, errlen, "--set %s", why);
        return rc;
    }
    store(base, k, &v);
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

int mlt_job_validate(const mlt_job_t *job, char *err, size_t errlen)
{
    return validate(job, NULL, err, errlen);
}

const mlt_tunable_t *mlt_job_tunable(const mlt_job_t *job, const char *name)
{
    for (uint32_t i = 0; job && name && i < job->n_tunables; i++)
        if (strcmp(job->tunables[i].name, name) == 0)
            return &job->tunables[i];
    return NULL;
}

double mlt_job_default(const mlt_job_t *job, const char *name, double fallback)
{
    const mlt_tunable_t *t = mlt_job_tunable(job, name);
    return t ? t->def : fallback;
}

const char *mlt_job_enum_name(const char *key_path, int value)
{
    const jkey_t *k = NULL;
    if (key_path && strncmp(key_path, "tunables.*.", 11) == 0)
        k = tkey_find(key_path + 11);
    else if (key_path)
        k = key_find(key_path);
    return k && k->type == JK_ENUM ? enum_name(k->names, value) : NULL;
}

/* ---- writing ---- */

/* a libconfig string literal */
static void write_string(FILE *f, const char *s)
{
    fputc('"', f);
    for (; *s; s++) {
        unsigned char c = (unsigned char)*s;
        if (c == '"' || c == '\\')
            fprintf(f, "\\%c", c);
        else if (c < 0x20 || c == 0x7f)
            fprintf(f, "\\x%02x", c);
        else
            fputc(c, f);
    }
    fputc('"', f);
}

static void write_value(FILE *f, const jkey_t *k, const jval_t *v)
{
    char buf[64];
    switch (k->type) {
    case JK_INT: fprintf(f, "%lld", v->i); break;
    case JK_INT64:
        fprintf(f, "%lld%s", v->i, v->i > INT32_MAX || v->i < INT32_MIN ? "L" : "");
        break;
    case JK_DOUBLE:
        fmt_double(buf, sizeof buf, v->d);
        fputs(buf, f);
        break;
    case JK_STRING: write_string(f, v->s ? v->s : ""); break;
    case JK_BOOL: fputs(v->b ? "true" : "false", f); break;
    case JK_ENUM: {
        const char *nm = enum_name(k->names, v->i);
        write_string(f, nm ? nm : "?");
        break;
    }
    case JK_INTLIST:
    case JK_NUMLIST:
    case JK_CNN: {
        bool ints = true; /* a numlist of whole numbers is written as integers */
        for (uint32_t i = 0; k->type == JK_NUMLIST && i < v->n; i++)
            ints &= is_integral(((const double *)v->list)[i]) &&
                    ((const double *)v->list)[i] >= INT32_MIN &&
                    ((const double *)v->list)[i] <= INT32_MAX;
        fputc('[', f);
        for (uint32_t i = 0; i < v->n; i++) {
            fputs(i ? ", " : "", f);
            if (k->type == JK_INTLIST) {
                fprintf(f, "%u", ((const uint32_t *)v->list)[i]);
            } else if (k->type == JK_NUMLIST) {
                double d = ((const double *)v->list)[i];
                if (ints)
                    fprintf(f, "%lld", (long long)d);
                else {
                    fmt_double(buf, sizeof buf, d);
                    fputs(buf, f);
                }
            } else {
                cnn_spec(&((const mlt_cnn_layer_t *)v->list)[i], buf, sizeof buf);
                write_string(f, buf);
            }
        }
        fputc(']', f);
        break;
    }
    case JK_GROUP:
    case JK_TUNABLES: break;
    }
}

static void write_tunables(FILE *f, const mlt_job_t *job, int depth)
{
    for (uint32_t i = 0; i < job->n_tunables; i++) {
        const mlt_tunable_t *t = &job->tunables[i];
        bool discrete = t->kind == MLT_TUNABLE_DISCRETE;
        fprintf(f, "%*s%s = {", depth * 2, "", t->name);
        for (size_t j = 0; j < N_KEYS; j++) {
            const jkey_t *k = &keys[j];
            if (!k->in_tunable)
                continue;
            bool for_cont = k->off == TOFF(min) || k->off == TOFF(max) || k->off == TOFF(kind);
            if ((discrete && for_cont) || (!discrete && k->type == JK_NUMLIST))
                continue;
            jval_t v = load_value(t, k);
            fprintf(f, " %s = ", leaf_of(k));
            if (discrete && k->off == TOFF(def) && is_integral(t->def) && t->def >= INT32_MIN &&
                t->def <= INT32_MAX)
                fprintf(f, "%lld", (long long)t->def); /* as the values are written */
            else
                write_value(f, k, &v);
            fputc(';', f);
        }
        fputs(" };\n", f);
    }
}

char *mlt_job_format(const mlt_job_t *job)
{
    char *buf = NULL;
    size_t len = 0;
    FILE *f = open_memstream(&buf, &len);
    if (!f) {
        fprintf(stderr, "out of memory formatting a job at %s:%d\n", __FILE__, __LINE__);
        abort();
    }
    fprintf(f, "# job \"%s\", every key (written by common/jobfile.c)\n",
            job->name ? job->name : "");
    const char *open[8];
    int depth = 0;
    for (size_t i = 0; i < N_KEYS; i++) {
        const jkey_t *k = &keys[i];
        if (k->in_tunable)
            continue;
        /* close the groups this key is not in */
        while (depth > 0 && !(strncmp(k->path, open[depth - 1], strlen(open[depth - 1])) == 0 &&
                              k->path[strlen(open[depth - 1])] == '.')) {
            depth--;
            fprintf(f, "%*s};\n", depth * 2, "");
        }
        if (k->type == JK_GROUP) {
            fprintf(f, "%*s%s = {\n", depth * 2, "", leaf_of(k));
            assert(depth < 8);
            open[depth++] = k->path;
            continue;
        }
        if (k->type == JK_TUNABLES) {
            fprintf(f, "%*s%s = {\n", depth * 2, "", leaf_of(k));
            write_tunables(f, job, depth + 1);
            fprintf(f, "%*s};\n", depth * 2, "");
            continue;
        }
        if (k->off == OFF(output_dir) && !job->output_dir_given)
            continue; /* follows name */
        jval_t v = load_value(job, k);
        fprintf(f, "%*s%s = ", depth * 2, "", leaf_of(k));
        write_value(f, k, &v);
        fputs(";\n", f);
    }
    while (depth > 0) {
        depth--;
        fprintf(f, "%*s};\n", depth * 2, "");
    }
    if (fclose(f) != 0 || !buf) {
        fprintf(stderr, "out of memory formatting a job at %s:%d\n", __FILE__, __LINE__);
        abort();
    }
    /* hand the caller memory from the one door */
    char *out = mlt_strdup(buf);
    free(buf);
    return out;
}

void mlt_job_write_keys(FILE *f)
{
    for (size_t i = 0; i < N_KEYS; i++) {
        const jkey_t *k = &keys[i];
        char def[160], bounds[96] = "";
        jval_t v = {.i = k->def_i, .d = k->def_d, .b = k->def_i != 0, .s = k->def_s};
        if (k->required)
            fmt(def, sizeof def, "(required)");
        else if (k->doc_def)
            fmt(def, sizeof def, "%s", k->doc_def);
        else if (k->type == JK_GROUP || k->type == JK_TUNABLES)
            fmt(def, sizeof def, "{ }");
        else {
            FILE *m = fmemopen(def, sizeof def, "w");
            if (m) {
                write_value(m, k, &v);
                fclose(m);
            }
            def[sizeof def - 1] = '\0';
        }
        switch (k->type) {
        case JK_INT:
        case JK_INT64: fmt(bounds, sizeof bounds, " [%lld..%lld]", k->min_i, k->max_i); break;
        case JK_DOUBLE:
            if (k->min_d != -DBL_MAX)
                fmt(bounds, sizeof bounds, " [%g..%g%s", k->min_d, k->max_d,
                    k->max_open ? ")" : "]");
            break;
        case JK_INTLIST:
            fmt(bounds, sizeof bounds, " [entries %lld..%lld, at most %u]", k->min_i, k->max_i,
                k->max_n);
            break;
        case JK_NUMLIST:
        case JK_CNN:
        case JK_TUNABLES: fmt(bounds, sizeof bounds, " [at most %u]", k->max_n); break;
        case JK_ENUM: {
            size_t u = 0;
            for (size_t j = 0; k->names[j] && u + 1 < sizeof bounds; j++) {
                fmt(bounds + u, sizeof bounds - u, "%s%s", j ? "|" : " [", k->names[j]);
                u += strlen(bounds + u);
            }
            if (u + 2 < sizeof bounds)
                strcat(bounds, "]");
            break;
        }
        case JK_STRING:
        case JK_BOOL:
        case JK_GROUP: break;
        }
        fprintf(f, "%-28s %-8s %-24s %s%s\n", k->path, type_word(k), def, k->desc, bounds);
    }
}

void mlt_job_free(mlt_job_t *job)
{
    if (!job)
        return;
    for (size_t i = 0; i < N_KEYS; i++) {
        const jkey_t *k = &keys[i];
        if (k->in_tunable)
            continue;
        if (k->type == JK_STRING || k->type == JK_INTLIST || k->type == JK_CNN)
            mlt_free(*(void **)field(job, k));
    }
    for (uint32_t i = 0; job->tunables && i < job->n_tunables; i++) {
        mlt_free(job->tunables[i].name);
        mlt_free(job->tunables[i].values);
    }
    mlt_free(job->tunables);
    mlt_free(job->text);
    memset(job, 0, sizeof *job);
}
