/* tuner.h - the tuning logic (DESIGN §6), independent of sockets: it decides
 * which branches to fork, run, test, keep and free, and writes the decision
 * log; an executor carries the decisions out. The coordinator's executor
 * drives real workers and shards; tests drive the same logic with a scripted
 * executor (synthetic loss curves, a virtual clock).
 *
 * Logics (job tuner.logic): "fixed" trains with every tunable at its default;
 * "train-to-completion" and "hyperband" are the baselines (tuner_base.c);
 * "mltuner":
 *
 *   START --range test (or a warm start)--> FIRST SEARCH --commit--> TRAIN
 *   TRAIN --test: stalled or no gain, budget left--> PROBE --better--> TRAIN
 *                                                    PROBE --not better--> TRAIN
 *   TRAIN --test: diverged or regressed--> ROLLBACK (a search from the last
 *                                          good snapshot) --commit--> TRAIN
 *   TRAIN --test: target, max_epochs, max_time_s--> DONE
 *
 *   range test   mlt_tuner__range_test (tuner_probe.c): the starting loss,
 *                the default's speed, a learning rate to centre on
 *   search       mlt_tuner__search (tuner_search.c): a design, then the
 *                searcher's proposals while it expects a gain, every trial
 *                the same wall time from the same point and data, scored by
 *                the loss it reaches, cut when it diverges; successive
 *                halving to one winner
 *   probe        mlt_tuner__retune (tuner_probe.c): the training branch
 *                paired on the same data with its learning rate decayed,
 *                then with a larger batch size; the fork replaces it when
 *                its loss is lower beyond noise
 *
 * Every trial that does not become training counts against max_overhead,
 * the first search's too (tuner_int.h: mlt_tuner__budget).
 *
 * Single-threaded: the coordinator thread calls it. */
#ifndef MLT_TUNER_H
#define MLT_TUNER_H

#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>

/* tuner/ depends on common/ only; from client/ it takes one header-only
 * definition, the branch kind (mlt_branch_kind_t), so that the kinds the
 * tuner forks are the ones the shards and the wire know, not a copy. */
#include "client/mltuner.h"
#include "common/jobfile.h"
#include "tuner/setting.h"
#include "tuner/warm.h"

/* What the tuner needs done. Every call returns 0, 1 when a stop was
 * requested (the tuner winds down), or -1 when the job failed (the executor
 * has said why). */
typedef struct mlt_exec {
    void *ctx;
    /* fork child from parent with the setting's server-side tunables */
    int (*fork)(void *ctx, uint32_t child, uint32_t parent, mlt_branch_kind_t kind,
                const mlt_setting_t *s);
    int (*free)(void *ctx, uint32_t branch);
    /* sets live branch's server-side tunables to the setting's (its next runs
     * use the setting's batch size); may be NULL (no range test then) */
    int (*tune)(void *ctx, uint32_t branch, const mlt_setting_t *s);
    /* run clocks [clock_start, clock_start + clocks) of branch on every worker
     * with the setting's batch size, the data cursor first set to data_epoch
     * epochs; loss[i] = mean training loss of clock clock_start + i over the
     * workers (every clock is filled; NaN or Inf means the branch diverged),
     * *seconds = wall time. The losses are the call's result: loss (clocks
     * doubles, the caller's) is written before it returns, and the executor
     * keeps no pointer to it */
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
    /* a consistent point of the training lineage (right after a commit, and
     * before each test interval): no task is out, every push is applied; the
     * tuner's state (len bytes) is what mlt_tuner_resume takes back. The
     * executor checkpoints when one is due. May be NULL. */
    int (*checkpoint)(void *ctx, const void *state, size_t len);
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

/* Goes on with a job from a checkpoint's tuner state (exec.checkpoint's),
 * its branches restored on the shards: logs a "resume" decision and
 * re-enters the train / test / re-tune loop. Returns as mlt_tuner_run; -1
 * with res->reason when the state is not this job's or is damaged. */
int mlt_tuner_resume(const mlt_job_t *job, const mlt_exec_t *ex, uint32_t init_branch,
                     const void *state, size_t len, FILE *log, mlt_tuner_result_t *res);

#endif
