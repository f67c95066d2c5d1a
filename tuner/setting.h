/* setting.h - a value for every tunable of a job (mlt_setting_t), and the
 * search space the tuning logics share (mlt_space_t): which tunables are
 * tuned, and the mapping between a setting and the searcher's coordinates
 * (one per tuned tunable, in job order). Pure functions over the job;
 * thread-safe. */
#ifndef MLT_SETTING_H
#define MLT_SETTING_H

#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>

#include "common/jobfile.h"
#include "common/json.h"

/* A value for every tunable of the job, in job->tunables order. */
typedef struct mlt_setting {
    double v[MLT_JOB_MAX_TUNABLES];
} mlt_setting_t;

/* The tuned tunables of a job: dims[k] is a copy of job->tunables[dim_of[k]]
 * (a logic may narrow its range, e.g. after a divergence). */
typedef struct mlt_space {
    mlt_tunable_t dims[MLT_JOB_MAX_TUNABLES];
    uint32_t dim_of[MLT_JOB_MAX_TUNABLES];
    uint32_t d;
} mlt_space_t;

/* The job's defaults as a setting. */
void mlt_setting_defaults(const mlt_job_t *job, mlt_setting_t *s);
/* The value of the tunable called name in s, or fallback. */
double mlt_setting_get(const mlt_job_t *job, const mlt_setting_t *s, const char *name,
                       double fallback);
/* Sets the tunable called name in s; false when the job has none. */
bool mlt_setting_set(const mlt_job_t *job, mlt_setting_t *s, const char *name, double v);
/* Adds {"lr":0.03,"momentum":0.9,...} for s to j as member key (NULL in an array). */
void mlt_setting_json(const mlt_job_t *job, const mlt_setting_t *s, mlt_json_t *j, const char *key);

/* The space of the tunables marked tune = true (none when !tuning). */
void mlt_space_init(mlt_space_t *sp, const mlt_job_t *job, bool tuning);
/* s = base with the tuned tunables taken from the coordinates x */
void mlt_space_to_setting(const mlt_space_t *sp, const mlt_setting_t *base, const double *x,
                          mlt_setting_t *s);
/* x = the tuned tunables' values in s */
void mlt_space_from_setting(const mlt_space_t *sp, const mlt_setting_t *s, double *x);
/* The index in sp->dims of the tuned tunable called name, or -1. */
int mlt_space_dim(const mlt_space_t *sp, const char *name);

#endif
