/* tuner_int.h - what the tuner's files share: the tuner's state, a trial,
 * the decision-log macros and the helpers that one of them
 * calls in another (mlt_tuner__ names). Private to tuner/tuner*.c;
 * single-threaded like the tuner (tuner.h).
 *
 * tuner.c         the logic: the start, commits, snapshots, rollbacks, the
 *                 train / test / re-tune loop
 * tuner_search.c  one search: trials, their pieces, scores, the cut on
 *                 divergence, successive halving, the searcher's extras
 * tuner_probe.c   the learning-rate range test that centres the first search,
 *                 the first design, and the paired re-tunes (learning rate,
 *                 batch size) */
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
#include "tuner/warm.h"

/* A trial is cut as diverged once the mean of its last CUT_WINDOW losses is
 * above CUT_RISE x its fork loss and above the fork loss plus half the way
 * back to the starting loss (or a loss is not finite). */
#define CUT_WINDOW 5
#define CUT_RISE 1.5

typedef struct trial {
    uint32_t id;
    mlt_setting_t s;
    double x[MLT_JOB_MAX_TUNABLES]; /* the searcher's coordinates (tuned dims) */
    int64_t clocks;                 /* run so far */
    double cursor0;                 /* data cursor at the fork */
    double *loss;                   /* per-clock losses since the fork */
    size_t cap;
    double seconds;                 /* time run */
    mlt_summary_t sum;              /* for the decision log and its verdict */
    double score, se;               /* mlt_score of the losses so far (+INF: cut) */
    bool cut;                       /* cut as diverged */
    bool alive;                     /* not freed */
    bool observed;                  /* the searcher has heard its rung-0 score */
} trial_t;

typedef struct tuner {
    const mlt_job_t *job;
    const mlt_exec_t *ex;
    const mlt_warm_t *warm;   /* a warm start (NULL: cold) */
    FILE *log;
    mlt_tuner_result_t *res;
    uint32_t next_id;
    mlt_space_t sp;           /* the tuned tunables */
    /* the searcher's lr coordinate is the effective rate lr / (1 - momentum)
     * (sgd and nesterov with both tuned): most of what momentum does is scale
     * the step, so searching (lr, momentum) raw makes the two fight */
    bool coupled;
    bool coupled_rule;        /* the job's rule is sgd or nesterov (momentum scales the step) */
    bool sgd_like;            /* sgd, nesterov or sf-sgd: a step is lr x the gradient */
    int lr_dim, m_dim;        /* sp indices of lr and momentum (-1: not tuned) */
    double start_loss;
    double trial_time;        /* rung-0 trial time of a search, seconds (0: not yet) */
    /* seconds per clock measured so far, by batch size: how many clocks a
     * trial of a setting needs to run for the trial time */
    struct { double batch, seconds, clocks; } rate[16];
    uint32_t n_rate;
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
    /* the train / test / re-tune loop's counters */
    int no_gain;              /* tests since the validation metric improved */
    int retunes_without_gain; /* re-tunes in a row that changed nothing */
    bool converged;           /* no more re-tunes */
    /* the test interval in progress (tuner.c: train_interval), run in pieces
     * with a checkpoint between them: kept in the tuner so that a checkpoint
     * between pieces holds it */
    double *iv_loss;          /* per-clock losses so far (NULL: no interval in progress) */
    int64_t iv_clocks;        /* the interval's clocks */
    int64_t iv_done;          /* clocks of it run */
} tuner_t;

/* an interval longer than this is run whole, without a checkpoint inside */
#define MLT_TUNER_MAX_IV_CLOCKS (1ll << 22)

/* ---- decision log ------------------------------------------------------------- */

/* tuner.c: a line of the tuner's decision log (declog.h), at the executor's
 * time: log_begin starts it ("t", "event", "branch"), the caller adds its
 * fields (common/json.h), log_end writes it to t->log. */
void mlt_tuner__log_begin(const tuner_t *t, mlt_json_t *j, const char *event, uint32_t branch);
void mlt_tuner__log_end(const tuner_t *t, mlt_json_t *j);
/* A whole line whose one field is "reason" (printf-style). */
void mlt_tuner__log_reason(const tuner_t *t, const char *event, uint32_t branch, const char *fmt,
                           ...) __attribute__((format(printf, 4, 5)));
/* A whole "fork" line: "parent" and "kind" (train, trial, test...). */
void mlt_tuner__log_fork(const tuner_t *t, uint32_t child, uint32_t parent, const char *kind);
/* A whole line with s's "tunables" and the reason. */
void mlt_tuner__log_setting(const tuner_t *t, const char *event, uint32_t branch,
                            const mlt_setting_t *s, const char *reason);
/* setting <-> the searcher's coordinates, with the effective-rate coupling */
void mlt_tuner__to_setting(const tuner_t *t, const mlt_setting_t *base, const double *x,
                           mlt_setting_t *s);
void mlt_tuner__from_setting(const tuner_t *t, const mlt_setting_t *s, double *x);
double mlt_tuner__tail_loss(const double *loss, int64_t n);
/* the trial time budget of the tuning overhead left now (seconds) */
double mlt_tuner__budget(const tuner_t *t);

/* tuner_search.c */
void mlt_tuner__free_trials(trial_t *trials, uint32_t n);
void mlt_tuner__rate_note(tuner_t *t, const mlt_setting_t *s, int64_t clocks, double seconds);
double mlt_tuner__rate(const tuner_t *t, const mlt_setting_t *s, bool *sure);
int mlt_tuner__trial_kill(tuner_t *t, trial_t *tr, const char *reason);
int mlt_tuner__trial_fork(tuner_t *t, trial_t *tr, const mlt_setting_t *s, uint32_t parent,
                          double cursor, const char *why);
int mlt_tuner__trial_run_for(tuner_t *t, trial_t *tr, double T, double fork_loss);
int mlt_tuner__trial_run_clocks(tuner_t *t, trial_t *tr, int64_t clocks, double fork_loss);
void mlt_tuner__trial_kept(tuner_t *t, const trial_t *tr);
int mlt_tuner__search(tuner_t *t, mlt_search_t *se, uint32_t parent, double parent_loss,
                      double cursor, const mlt_setting_t *design, uint32_t n_design,
                      uint32_t max_trials, double budget_s, trial_t **trials_out,
                      uint32_t *n_out, int *winner);

/* tuner_ckpt.c: the tuner's state in a checkpoint (between rounds of the
 * training loop: no trial and no searcher alive) */
/* A new buffer (caller frees with mlt_free) of *len bytes. */
void *mlt_tuner__state_save(const tuner_t *t, size_t *len);
/* Restores what mlt_tuner__state_save wrote over a tuner set up for the same
 * job; 0, or -EINVAL with why (bounded: a bad state is refused whole). */
int mlt_tuner__state_load(tuner_t *t, const void *buf, size_t len, char *why, size_t whylen);

/* tuner_probe.c */
int mlt_tuner__starting_loss(tuner_t *t, uint32_t init);
int mlt_tuner__range_test(tuner_t *t, uint32_t parent, double *lr_star);
uint32_t mlt_tuner__design(const tuner_t *t, const mlt_setting_t *center, mlt_setting_t *design,
                           uint32_t max, double lr_step);
int mlt_tuner__retune(tuner_t *t, const char *why, bool *changed);

#endif
