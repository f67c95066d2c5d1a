/* check_tuner.h - what the tuner suite's files share (see check_tuner.c): the
 * synthetic model and the scripted executor's state, the job every test starts
 * from and running a job (check_tuner_script.c), the decision log read back
 * (check_tuner_dlog.c), and the TCases the other files add. The functions are
 * check_tuner.c's former static helpers, with a ct_ prefix. */
#ifndef MLT_CHECK_TUNER_H
#define MLT_CHECK_TUNER_H

#include <check.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

#include "tuner/tuner.h"

/* ================================================== the scripted executor */

#define MAXB    4096u /* branch ids the executor can hold */
#define INIT    7u    /* the caller's init branch (ids above it are the tuner's) */

#define LR_OPT  0.03   /* the best learning rate */
#define LR_W    1.0    /* fall-off width in log(lr) */
#define LR_BOOM 0.3    /* at and above: the loss explodes to +Inf */
#define LR_NAN  1.0    /* at and above: the loss turns NaN */
#define RATE    0.01   /* progress per clock at the optimum (momentum 1, batch 128) */
#define L_0     2.3    /* loss of the initial weights */
#define L_MIN   0.3    /* loss after infinite training */
#define WARM_RISE 0.004 /* script.warm: the loss's rise a clock */

enum { BAD_NONE = 0, BAD_INF = 1, BAD_NAN = 2 };

typedef struct br {
    bool exists;           /* forked (or the init branch) */
    bool live;             /* not freed */
    int kind;              /* MLT_BRANCH_* */
    uint32_t parent;       /* forked from */
    mlt_setting_t s;       /* the fork's setting */
    double q;              /* training progress (NaN once broken) */
    int64_t age;           /* clocks trained along the lineage (init: 0) */
    int64_t clocks;        /* clocks run on this branch */
    double data_pos;       /* data cursor in epochs */
    double fork_pos;       /* the data cursor at the fork */
    double first_epoch;    /* data_epoch of its first run (NaN: never ran) */
    double lineage;        /* epochs trained along the lineage */
    double loss;           /* the latest loss */
    int bad;               /* BAD_*: how its losses went non-finite */
} br_t;

typedef struct script {
    const mlt_job_t *job;
    uint64_t seed;         /* of the loss noise */
    double now;            /* the virtual clock, seconds */
    br_t b[MAXB];
    /* the synthetic function */
    double noise;          /* sd of the per-clock loss noise */
    double noise_late;     /* > 0: the sd from data position noise_from (epochs) on */
    double noise_from;
    double opt_late;       /* > 0: the best lr from data position noise_from on */
    bool flat;             /* the setting does not matter (and nothing diverges) */
    int64_t warm;          /* > 0: the loss rises for the first warm clocks of the lineage */
    double acc_const;      /* > 0: every test gives this accuracy */
    double late_lr;        /* > 0: at lr >= late_lr, a branch that has run late_age */
    int64_t late_age;      /* clocks turns NaN (a divergence no shorter trial sees) */
    bool late_regress;     /* instead of NaN, it unlearns: q falls by 2 RATE a clock */
    double batch_power;    /* progress a clock grows as batch^this (0: 0.5) */
    bool frozen;           /* no setting makes any progress (the loss is noise) */
    /* non-NULL: the metrics of test branch b (after acc_const) */
    void (*metric)(const struct script *x, const br_t *b, double *val, double *test);
    int max_live;          /* > 0: a fork while this many branches live is refused (-ENOMEM) */
    /* what happened */
    int refused;           /* forks refused for max_live */
    int forks[5];          /* by kind */
    int frees, runs, tests, tunes, progress;
    int calls, last_run_call, last_test_call;
} script_t;

/* ====================================================== the decision log */

#define MAXK 24

typedef struct span {
    const char *p;
    size_t n;
} span_t;

typedef struct line {
    char *text;
    int nk;
    char key[MAXK][40];
    span_t val[MAXK];
    char event[40];
    double t;
    uint32_t branch;
} line_t;

typedef struct dlog {
    line_t *l;
    size_t n;
    char *raw; /* the whole log */
} dlog_t;

/* ====================================================== running a job */

typedef struct run {
    script_t *x;
    dlog_t log;
    mlt_tuner_result_t res;
    int rc;
} run_t;

/* ----------------------------------- the job and the executor (check_tuner_script.c) */

/* the small, fast job every test starts from, then the (key, value) pairs
 * given, NULL-terminated */
void ct_job_make(mlt_job_t *job, ...);
/* a new executor for job, its init branch INIT live (ct_run_job takes it over) */
script_t *ct_script_new(const mlt_job_t *job);
/* the synthetic model: clocks per epoch, seconds per clock, progress per clock */
double ct_sx_epoch_clocks(void *ctx, const mlt_setting_t *s);
double ct_clock_cost(const script_t *x, const mlt_setting_t *s);
double ct_rate_of(const script_t *x, const mlt_setting_t *s, double pos);
/* only the training branch (and the caller's init branch) is live */
void ct_assert_only_training_live(const script_t *x, const mlt_tuner_result_t *res);

/* the tuner on x with the decision log read back into r (ct_run_replay: a new
 * executor, with the progress callback or not); ct_run_free frees both */
void ct_run_job(const mlt_job_t *job, script_t *x, run_t *r);
/* the same with a warm start (NULL: cold) */
void ct_run_job_warm(const mlt_job_t *job, script_t *x, const mlt_warm_t *warm, run_t *r);
void ct_run_replay(const mlt_job_t *job, run_t *r, bool with_progress);
void ct_run_free(run_t *r);
double ct_lr_of(const mlt_job_t *job, const mlt_setting_t *s);

/* ------------------------------------------ the decision log (check_tuner_dlog.c) */

/* the log read back, every line's shape checked; lines found and counted by
 * event; a line's members (ct_l_*); one search_stop per search */
void ct_dlog_load(FILE *f, const mlt_job_t *job, dlog_t *d);
void ct_dlog_free(dlog_t *d);
size_t ct_dlog_find(const dlog_t *d, size_t from, const char *ev, uint32_t br);
size_t ct_dlog_count(const dlog_t *d, size_t from, size_t to, const char *ev);
double ct_l_num(const line_t *l, const char *key);
const char *ct_l_str(const line_t *l, const char *key, char *out, size_t cap);
bool ct_l_is(const line_t *l, const char *event);
double ct_l_sub(const line_t *l, const char *key, const char *name);
bool ct_l_reason_has(const line_t *l, const char *needle);
bool ct_is_trial_fork(const line_t *l);
void ct_assert_one_stop_per_search(const dlog_t *d);

/* ------------------------------- the TCases of the other files (check_tuner.c adds them) */

void ct_retune_tcases(Suite *s);    /* "retune": check_tuner_retune.c */
void ct_baselines_tcases(Suite *s); /* "baselines": check_tuner_baselines.c */

#endif
