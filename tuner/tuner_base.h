/* tuner_base.h - the baseline tuning logics (train-to-completion, hyperband),
 * private to the tuner; see tuner_base.c. */
#ifndef MLT_TUNER_BASE_H
#define MLT_TUNER_BASE_H

#include "tuner/tuner.h"

/* Runs job->tuner.logic (MLT_LOGIC_TTC or MLT_LOGIC_HYPERBAND); same contract
 * as mlt_tuner_run. */
int mlt_tuner_baseline(const mlt_job_t *job, const mlt_exec_t *ex, uint32_t init_branch, FILE *log,
                       mlt_tuner_result_t *res);

#endif
