/* tuner.h - the tuning logic (DESIGN §6), independent of sockets: it decides
 * which branches to fork, run, test, keep and free, and writes the decision
 * log; an executor carries the decisions out. The coordinator's executor
 * drives real workers and shards; tests drive the same logic with a scripted
 * executor (synthetic loss curves, a virtual clock).
 *
 * Logics (job tuner.logic): "fixed" trains with every tunable at its default;
 * "mltuner" searches from the init branch with the job's searcher, trains the
 * winner, tests every test interval, re-tunes with the marginal searcher on a
 * validation plateau or after retune_time_factor x the last search time, and
 * stops re-tuning once converged (converge_tests re-tunes without a gain).
 *
 * Search (one call of search()):
 *   propose -> fork trial from the parent -> run it for the trial time ->
 *   summarise (summary.h) -> tell the searcher its slope (diverged = worst)
 *   until the best top_k slopes agree within slope_agree, or the trial count
 *   reaches the previous search's (re-tunes), or the overhead budget is spent.
 *   The trial time is wall time, the same for every trial of a search
 *   (whatever its batch size): it starts at the time min_trial_clocks take at
 *   the default setting and doubles, resuming the surviving trials in turn,
 *   until some trial of two or more converges (at most one epoch at the
 *   default batch size); re-tunes start from it and settle it again. Every
 *   trial of a search starts from the same data cursor and from the mean of
 *   the parent's last losses. The first search commits the best converging
 *   trial; a re-tune commits the trial whose block means are lowest and below
 *   the current setting's own trial by a paired t < -2.5, else the current
 *   setting goes on. The others are freed.
 *
 * Single-threaded: the coordinator thread calls it. */
#ifndef MLT_TUNER_H
#define MLT_TUNER_H

#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>

#include "common/jobfile.h"
#include "tuner/setting.h"
#include "tuner/warm.h"

/* What the tuner needs done. Every call returns 0, 1 when a stop was
 * requested (the tuner winds down), or -1 when the job failed (the executor
 * has said why). */
typedef struct mlt_exec {
    void *ctx;
    /* fork child from parent with the setting's server-side tunables */
    int (*fork)(void *ctx, uint32_t child, uint32_t parent, int kind, const mlt_setting_t *s);
    int (*free)(void *ctx, uint32_t branch);
    /* sets live branch's server-side tunables to the setting's (its next runs
     * use the setting's batch size); may be NULL (no range test then) */
    int (*tune)(void *ctx, uint32_t branch, const mlt_setting_t *s);
    /* run clocks [clock_start, clock_start + clocks) of branch on every worker
     * with the setting's batch size, the data cursor first set to data_epoch
     * epochs; loss[i] = mean training loss of clock clock_start + i over the
     * workers (every clock is filled; NaN or Inf means the branch diverged),
     * *seconds = wall time */
    int (*run)(void *ctx, uint32_t branch, const mlt_setting_t *s, int64_t clock_start,
               int64_t clocks, double data_epoch, double *loss, double *seconds);
    /* evaluate branch: validation and test metric (accuracy, or RMSE for mf) */
    int (*test)(void *ctx, uint32_t branch, double *val, double *test);
    /* clocks one epoch takes at the setting's batch size */
    double (*epoch_clocks)(void *ctx, const mlt_setting_t *s);
    /* seconds since the job started */
    double (*now)(void *ctx);
    /* progress for status displays (may be NULL) */
    void (*progress)(void *ctx, const char *phase, uint32_t branch, const mlt_setting_t *s,
                     double epoch, double val, double test, uint32_t trials);
} mlt_exec_t;

typedef struct mlt_tuner_result {
    uint32_t branch;       /* the training branch at the end */
    mlt_setting_t setting; /* its setting */
    double epoch;          /* epochs trained on the training lineage */
    double val, test;      /* the last test's metrics */
    double best_val;       /* best validation metric seen */
    double trial_seconds;  /* time in trials that did not become training: the range
                            * test, the trials a search dropped, the losing half of a
                            * paired re-tune (the overhead) */
    double train_seconds;  /* time training the chosen lineage, a search's winner's
                            * trial time included */
    uint32_t trials;       /* trials run, all searches */
    uint32_t searches;     /* searches done (1 + re-tunes) */
    mlt_warm_t learned;    /* the first search's winner, for the next job (warm.h) */
    char reason[256];      /* why it stopped */
} mlt_tuner_result_t;

/* Runs the job's tuning logic from init_branch (which holds the initial
 * weights) to a stop condition. Decision log lines go to `log` (may be NULL);
 * branch ids above init_branch are the tuner's. warm: what an earlier job of
 * the same model learnt (NULL or !have: a cold start, with a range test).
 * Returns 0 (finished or stopped by request), or -1 (the job failed;
 * res->reason says why). */
int mlt_tuner_run(const mlt_job_t *job, const mlt_exec_t *ex, uint32_t init_branch, FILE *log,
                  const mlt_warm_t *warm, mlt_tuner_result_t *res);

#endif
