/* warm.h - warm start: what a tuned job leaves for the next job of the same
 * model. The first search's winner (before any re-tune moved it) and the
 * range test's rate, keyed by the model (its type and shape, the data, the
 * update rule), written with the job's outputs as a small libconfig file
 * (warm-start.conf). A job that finds one of the same model skips the range
 * test and centres its first design there.
 *
 *   key = "mlp [256,256] idx /usr/share/.../train-images-idx3-ubyte.gz sgd";
 *   job = "fmnist-mlp";
 *   lr_star = 0.0316;
 *   tunables = { lr = 0.0316; momentum = 0.9; batch_size = 128; staleness = 0; };
 *
 * Pure file I/O and parsing; no logging; thread-safe. */
#ifndef MLT_WARM_H
#define MLT_WARM_H

#include <stdbool.h>
#include <stddef.h>

#include "common/jobfile.h"
#include "tuner/setting.h"

#define MLT_WARM_FILE "warm-start.conf"
#define MLT_WARM_KEY_MAX 1024

typedef struct mlt_warm {
    bool have;             /* the rest is valid */
    mlt_setting_t setting; /* the first search's winner, in the job's tunables order */
    double lr_star;        /* the range test's rate (NaN: none ran) */
} mlt_warm_t;

/* The model key of job: what a warm start must match. */
void mlt_warm_key(const mlt_job_t *job, char *key, size_t cap);

/* Writes w for job to name in the directory dirfd: to name.tmp (created
 * without following a symbolic link, every write checked, fsync'd), then
 * renamed over name (a symbolic link there is replaced, never followed) and
 * the directory fsync'd. Returns 0 or -errno, with "cannot write NAME: why"
 * in err. */
int mlt_warm_write(int dirfd, const char *name, const mlt_job_t *job, const mlt_warm_t *w,
                   char *err, size_t errlen);

/* Reads a warm start for job from path (a file, or a directory holding
 * MLT_WARM_FILE). Each of the job's tunables found in it is taken, clamped
 * into its range (a discrete one: the nearest value); the others keep their
 * defaults. Returns 0 (w->have set); -ENOENT when there is no file; -EINVAL
 * when it does not parse or a value is not a finite number; -ESTALE when it
 * is of another model (its key differs). err says why. */
int mlt_warm_read(const char *path, const mlt_job_t *job, mlt_warm_t *w, char *err,
                  size_t errlen);

#endif
