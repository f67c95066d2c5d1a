/* tuner_int.h - what tuner.c and tuner_search.c share: the tuner's state, a
 * trial, the branch kinds, the decision-log macros and the helpers that one of
 * them calls in the other (mlt_tuner__ names). Private to tuner/tuner*.c;
 * single-threaded like the tuner (tuner.h). */
#ifndef MLT_TUNER_INT_H
#define MLT_TUNER_INT_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

#include "tuner/declog.h"
#include "tuner/searcher.h"
#include "tuner/summary.h"
#include "tuner/tuner.h"

#define BRANCH_KIND_TRAIN 1
#define BRANCH_KIND_EVAL 2
#define BRANCH_KIND_TEST 3
#define BRANCH_KIND_SNAPSHOT 4

typedef struct trial {
    uint32_t id;
    mlt_setting_t s;
    double x[MLT_JOB_MAX_TUNABLES]; /* the searcher's coordinates (tuned dims) */
    int64_t clocks;                 /* run so far */
    double cursor0;                 /* data cursor at the fork */
    double *loss;                   /* per-clock losses since the fork */
    size_t cap;
    double seconds;                 /* time run */
    mlt_summary_t sum;
    bool alive;                     /* not freed */
    bool observed;
} trial_t;

typedef struct tuner {
    const mlt_job_t *job;
    const mlt_exec_t *ex;
    FILE *log;
    mlt_tuner_result_t *res;
    uint32_t next_id;
    mlt_space_t sp;           /* the tuned tunables */
    double start_loss;
    double trial_time;        /* established trial time in seconds (0: not yet) */
    /* seconds per clock measured so far, by batch size: how many clocks a
     * trial of a setting needs to run for the trial time */
    struct { double batch, seconds, clocks; } rate[16];
    uint32_t n_rate;
    uint32_t last_trials;     /* trials of the previous search */
    double last_search_s;     /* duration of the previous search */
    double first_search_s;    /* trial seconds of the first search (not overhead) */
    bool classify;            /* accuracy (higher is better) vs RMSE */
    /* the training branch */
    uint32_t train;
    mlt_setting_t train_s;
    int64_t train_clock;      /* clocks the training branch has run */
    double cursor;            /* its data cursor, in epochs */
    double epoch;             /* epochs trained on the training lineage */
    double last_loss;         /* its latest training loss: the mean of its last
                               * clocks (tail_loss), where a search's trials start */
    /* the last good point of the training lineage: a frozen fork, taken at each
     * commit and replaced at each finite test, that a diverged training branch
     * rolls back to */
    uint32_t good;            /* its branch (0: none) */
    double good_cursor, good_epoch, good_loss;
    double good_val, good_test;
    int rollbacks;            /* divergences recovered from */
    int regressions;          /* regressions rolled back */
} tuner_t;

/* ---- decision log ------------------------------------------------------------- */

#define logline(t, event, branch, ...) \
    mlt_declog((t)->log, (t)->ex->now((t)->ex->ctx), event, branch, __VA_ARGS__)
#define jnum(b, v) mlt_declog_num(b, v)

/* tuner.c */
void mlt_tuner__log_setting(tuner_t *t, const char *event, uint32_t branch,
                            const mlt_setting_t *s, const char *extra, const char *reason);

/* tuner_search.c */
void mlt_tuner__free_trials(trial_t *trials, uint32_t n);
void mlt_tuner__rate_note(tuner_t *t, const mlt_setting_t *s, int64_t clocks, double seconds);
int mlt_tuner__trial_kill(tuner_t *t, trial_t *tr, const char *reason);
int mlt_tuner__search(tuner_t *t, mlt_search_t *se, uint32_t parent, double parent_loss,
                      double cursor, uint32_t max_trials, double budget_s,
                      const mlt_setting_t *incumbent, trial_t **trials_out, uint32_t *n_out,
                      int *winner);
int mlt_tuner__retune_winner(const trial_t *trials, uint32_t n, char *reason, size_t cap);

#endif
