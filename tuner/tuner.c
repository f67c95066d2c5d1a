/* tuner.c - the tuning logic (mlt_tuner_run): the first search, commits,
 * snapshots, rollbacks and the train, test and re-tune loop; a search is in
 * tuner_search.c, the range test and re-tune probes in tuner_probe.c. See
 * tuner.h for the algorithm. */
#include "tuner/tuner.h"

#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <string.h>

#include "common/alloc.h"
#include "common/rng.h"
#include "tuner/declog.h"
#include "tuner/searcher.h"
#include "tuner/summary.h"
#include "tuner/tuner_base.h"
#include "tuner/tuner_int.h"

#define WARM_LR_STEP 2.0 /* a warm design's learning-rate step: the centre is trusted more */
#define MAX_ROLLBACKS 3     /* diverged training branches recovered from, at most */

/* ---- decision log ------------------------------------------------------------- */

void mlt_tuner__log_begin(const tuner_t *t, mlt_json_t *j, const char *event, uint32_t branch)
{
    mlt_declog_begin(j, t->ex->now(t->ex->ctx), event, branch);
}

void mlt_tuner__log_end(const tuner_t *t, mlt_json_t *j)
{
    mlt_declog_end(j, t->log);
}

void mlt_tuner__log_reason(const tuner_t *t, const char *event, uint32_t branch, const char *fmt,
                           ...)
{
    char why[1024];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(why, sizeof why, fmt, ap);
    va_end(ap);
    mlt_json_t j;
    mlt_tuner__log_begin(t, &j, event, branch);
    mlt_json_str(&j, "reason", why);
    mlt_tuner__log_end(t, &j);
}

void mlt_tuner__log_fork(const tuner_t *t, uint32_t child, uint32_t parent, const char *kind)
{
    mlt_json_t j;
    mlt_tuner__log_begin(t, &j, "fork", child);
    mlt_json_uint(&j, "parent", parent);
    mlt_json_str(&j, "kind", kind);
    mlt_tuner__log_end(t, &j);
}

void mlt_tuner__log_setting(const tuner_t *t, const char *event, uint32_t branch,
                            const mlt_setting_t *s, const char *reason)
{
    mlt_json_t j;
    mlt_tuner__log_begin(t, &j, event, branch);
    mlt_setting_json(t->job, s, &j, "tunables");
    mlt_json_str(&j, "reason", reason);
    mlt_tuner__log_end(t, &j);
}

/* ---- settings and the searcher's coordinates ------------------------------------ */

void mlt_tuner__to_setting(const tuner_t *t, const mlt_setting_t *base, const double *x,
                           mlt_setting_t *s)
{
    mlt_space_to_setting(&t->sp, base, x, s);
    if (t->coupled) {
        /* the searcher's lr is the effective rate lr / (1 - momentum) */
        double m = x[t->m_dim];
        s->v[t->sp.dim_of[t->lr_dim]] = x[t->lr_dim] * (1 - m);
    }
}

void mlt_tuner__from_setting(const tuner_t *t, const mlt_setting_t *s, double *x)
{
    mlt_space_from_setting(&t->sp, s, x);
    if (t->coupled) {
        double m = x[t->m_dim];
        x[t->lr_dim] = m < 1 ? x[t->lr_dim] / (1 - m) : x[t->lr_dim];
    }
}

/* ---- the training branch ------------------------------------------------------- */

/* The loss at the end of a run of n clocks: the mean of its last n/10 clocks
 * (at least 10, at most all), the point a search's trials start from. One
 * clock's loss is one mini-batch's, far noisier than a trial's block means: a
 * trial that starts from an unlucky low one looks unstable, from a high one
 * it gains what it never made. NaN or Inf when any of them is (diverged). */
double mlt_tuner__tail_loss(const double *loss, int64_t n)
{
    int64_t k = n / 10 < 10 ? 10 : n / 10;
    if (k > n)
        k = n;
    double sum = 0;
    for (int64_t i = n - k; i < n; i++)
        sum += loss[i];
    return k > 0 ? sum / (double)k : NAN;
}

/* Seconds of trials the job may still spend: every trial that did not become
 * training counts, the first search's too, against max_overhead x the
 * training time so far. */
double mlt_tuner__budget(const tuner_t *t)
{
    return t->job->tuner.max_overhead * t->res->train_seconds - t->res->trial_seconds;
}

/* Frees every trial but the winner; makes the winner the training branch (its
 * trial time was training of the lineage). */
static int commit(tuner_t *t, trial_t *trials, uint32_t n, int winner, const char *reason)
{
    int rc = 0;
    for (uint32_t i = 0; i < n && !rc; i++)
        if ((int)i != winner)
            rc = mlt_tuner__trial_kill(t, &trials[i], "not the winner");
    if (rc)
        return rc;
    trial_t *w = &trials[winner];
    mlt_json_t j;
    mlt_tuner__log_begin(t, &j, "commit", w->id);
    mlt_setting_json(t->job, &w->s, &j, "tunables");
    mlt_json_num(&j, "score", w->score);
    mlt_json_num(&j, "se", w->se);
    mlt_json_str(&j, "verdict", mlt_verdict_name(w->sum.verdict));
    mlt_json_str(&j, "reason", reason);
    mlt_tuner__log_end(t, &j);
    double epc = t->ex->epoch_clocks(t->ex->ctx, &w->s);
    mlt_tuner__trial_kept(t, w);
    t->train = w->id;
    t->train_s = w->s;
    t->train_clock = w->clocks;
    t->cursor = w->cursor0 + (double)w->clocks / epc;
    t->epoch += (double)w->clocks / epc; /* the winner's trial clocks were training */
    t->last_loss = mlt_tuner__tail_loss(w->loss, w->clocks);
    t->res->searches++;
    return 0;
}

/* Forks a frozen snapshot of the training branch at its current point and
 * makes it the good snapshot, freeing the one it replaces. val, test: the
 * training branch's metrics there (NaN: not tested yet). */
static int snapshot_take(tuner_t *t, double val, double test, const char *reason)
{
    uint32_t id = t->next_id++;
    mlt_json_t j;
    mlt_tuner__log_begin(t, &j, "fork", id);
    mlt_json_uint(&j, "parent", t->train);
    mlt_json_str(&j, "kind", "snapshot");
    mlt_json_fixed(&j, "epoch", t->epoch, 4);
    mlt_json_num(&j, "loss", t->last_loss);
    mlt_json_str(&j, "reason", reason);
    mlt_tuner__log_end(t, &j);
    int rc = t->ex->fork(t->ex->ctx, id, t->train, MLT_BRANCH_SNAPSHOT, &t->train_s);
    if (rc)
        return rc;
    if (t->good) {
        mlt_tuner__log_reason(t, "free", t->good, "replaced by snapshot %u", id);
        rc = t->ex->free(t->ex->ctx, t->good);
    }
    t->good = id;
    t->good_cursor = t->cursor;
    t->good_epoch = t->epoch;
    t->good_loss = t->last_loss;
    t->good_val = val;
    t->good_test = test;
    return rc;
}

/* ---- the logic ----------------------------------------------------------------- */

static bool better(const tuner_t *t, double a, double b)
{
    if (!isfinite(a))
        return false;
    if (!isfinite(b))
        return true;
    return t->classify ? a > b : a < b;
}

/* true when val is well below the best validation result of the lineage:
 * accuracy REGRESS_ACC lower, or RMSE REGRESS_RMSE x higher */
#define REGRESS_ACC  0.05
#define REGRESS_RMSE 1.1
static bool regressed(const tuner_t *t, double val)
{
    double best = t->res->best_val;
    if (!isfinite(best) || !isfinite(val))
        return false;
    return t->classify ? val < best - REGRESS_ACC : val > best * REGRESS_RMSE;
}

/* true (with the reason) when a stop condition holds after a test */
static bool stop_now(tuner_t *t, double test)
{
    const mlt_job_t *j = t->job;
    mlt_tuner_result_t *r = t->res;
    if (t->classify && j->stop.target_accuracy > 0 && test >= j->stop.target_accuracy) {
        snprintf(r->reason, sizeof r->reason, "test accuracy %.4f reached the target %.4f", test,
                 j->stop.target_accuracy);
        return true;
    }
    if (!t->classify && j->stop.target_rmse > 0 && test <= j->stop.target_rmse) {
        snprintf(r->reason, sizeof r->reason, "test RMSE %.4f reached the target %.4f", test,
                 j->stop.target_rmse);
        return true;
    }
    if (j->stop.max_epochs > 0 && t->epoch >= j->stop.max_epochs - 1e-9) {
        snprintf(r->reason, sizeof r->reason, "max_epochs %g reached", j->stop.max_epochs);
        return true;
    }
    if (j->stop.max_time_s > 0 && t->ex->now(t->ex->ctx) >= j->stop.max_time_s) {
        snprintf(r->reason, sizeof r->reason, "max_time_s %g reached", j->stop.max_time_s);
        return true;
    }
    return false;
}

/* A searcher over the tuned tunables, with the discrete ones (batch size,
 * staleness) pinned to their value in center: a trial of a search lasts a
 * fraction of an epoch, over which more, noisier steps always look better,
 * so a search cannot judge a batch size; the re-tunes do, on the same data
 * (tuner_probe.c). */
static mlt_search_t *new_searcher(tuner_t *t, int kind, const mlt_setting_t *center, uint64_t tag)
{
    double c[MLT_JOB_MAX_TUNABLES];
    mlt_tuner__from_setting(t, center, c);
    mlt_tunable_t dims[MLT_JOB_MAX_TUNABLES];
    memcpy(dims, t->sp.dims, t->sp.d * sizeof *dims);
    for (uint32_t k = 0; k < t->sp.d; k++)
        if (dims[k].kind == MLT_TUNABLE_DISCRETE) {
            dims[k].values = &c[k];
            dims[k].n_values = 1;
            dims[k].min = dims[k].max = dims[k].def = c[k];
        }
    return mlt_search_new(kind, dims, t->sp.d, mlt_rng_mix((uint64_t)t->job->seed, tag),
                          center ? c : NULL);
}

/* The trial time of every search's first rung: the time min_trial_clocks take
 * at the default setting (measured at the start), at most an epoch. */
static void set_trial_time(tuner_t *t)
{
    mlt_setting_t def;
    mlt_setting_defaults(t->job, &def);
    bool sure;
    double per = mlt_tuner__rate(t, &def, &sure);
    double epc = t->ex->epoch_clocks(t->ex->ctx, &def);
    double clocks = (double)t->job->tuner.min_trial_clocks;
    t->trial_time = per * (clocks < epc ? clocks : epc);
    mlt_json_t j;
    mlt_tuner__log_begin(t, &j, "trial_time", t->train);
    mlt_json_num(&j, "seconds", t->trial_time);
    mlt_json_int(&j, "clocks", t->job->tuner.min_trial_clocks);
    mlt_json_str(&j, "reason", "tuner.min_trial_clocks at the default setting's speed");
    mlt_declog_timing(&j, "t", "seconds", (char *)NULL);
    mlt_tuner__log_end(t, &j);
}

/* The first search's budget: max_overhead of the longest the job may train
 * (max_epochs at the default setting's speed, or max_time_s if sooner). */
static double first_budget(const tuner_t *t)
{
    const mlt_job_t *j = t->job;
    mlt_setting_t def;
    mlt_setting_defaults(j, &def);
    bool sure;
    double per = mlt_tuner__rate(t, &def, &sure);
    double longest = j->stop.max_epochs * per * t->ex->epoch_clocks(t->ex->ctx, &def);
    if (j->stop.max_time_s > 0 && j->stop.max_time_s < longest)
        longest = j->stop.max_time_s;
    return isfinite(longest) && longest > 0 ? j->tuner.max_overhead * longest : INFINITY;
}

/* The first search: the range test (or, warm, the last job's winner), then
 * a design centred on its rate, the searcher's proposals after it,
 * successive halving; commits the winner. */
static int first_search(tuner_t *t, uint32_t init)
{
    const mlt_job_t *j = t->job;
    double lr_star = NAN;
    mlt_setting_t center;
    mlt_setting_defaults(j, &center);
    int rc;
    if (t->warm) {
        center = t->warm->setting;
        lr_star = t->warm->lr_star;
        rc = mlt_tuner__starting_loss(t, init);
        if (!rc) {
            mlt_json_t js;
            mlt_tuner__log_begin(t, &js, "centre", init);
            mlt_setting_json(j, &center, &js, "tunables");
            mlt_json_bool(&js, "warm", true);
            mlt_json_str(&js, "reason",
                         "warm start: the first search's winner of the last job of this model");
            mlt_tuner__log_end(t, &js);
        }
    } else {
        rc = mlt_tuner__range_test(t, init, &lr_star);
        if (!rc && isfinite(lr_star)) {
            mlt_setting_set(j, &center, "lr", lr_star);
            mlt_tuner__log_setting(t, "centre", init, &center,
                                   "the default setting at the range test's learning rate");
        }
    }
    if (rc)
        return rc;
    set_trial_time(t);
    mlt_setting_t design[MLT_JOB_MAX_TUNABLES * 2 + 1];
    uint32_t nd = mlt_tuner__design(t, &center, design, (uint32_t)j->tuner.first_trials,
                                    t->warm ? WARM_LR_STEP : 0);
    mlt_search_t *se = new_searcher(t, j->tuner.searcher, &center, 1);
    trial_t *trials = NULL;
    uint32_t n = 0;
    int winner = -1;
    rc = mlt_tuner__search(t, se, init, t->start_loss, 0.0, design, nd,
                           (uint32_t)j->tuner.max_trials, first_budget(t), &trials, &n, &winner);
    mlt_search_destroy(&se);
    if (!rc && winner < 0) {
        snprintf(t->res->reason, sizeof t->res->reason, "every one of %u trials diverged", n);
        rc = -1;
    }
    if (!rc)
        rc = commit(t, trials, n, winner, "the best score of the first search");
    if (!rc) {
        t->res->learned.have = true;
        t->res->learned.setting = t->train_s;
        t->res->learned.lr_star = lr_star;
        rc = snapshot_take(t, NAN, NAN, "committed");
    }
    mlt_tuner__free_trials(trials, n);
    return rc;
}

/* The training branch diverged (a non-finite or exploding loss, a non-finite
 * validation result) or regressed (its validation metric fell well below the
 * best): frees it and searches again from the good snapshot, with the learning
 * rate's range cut to half the rate that failed, the design centred there.
 * Returns 0 with a new training branch, 1 when a stop was requested, 2 when
 * it cannot recover (res->reason says why), -1 on an executor error. */
static int rollback(tuner_t *t, bool diverged, const char *what)
{
    mlt_tuner_result_t *res = t->res;
    const char *ev = diverged ? "diverged" : "regressed";
    mlt_json_t j;
    mlt_tuner__log_begin(t, &j, ev, t->train);
    mlt_json_str(&j, "reason", what);
    mlt_json_uint(&j, "snapshot", t->good);
    mlt_json_fixed(&j, "epoch", t->good_epoch, 4);
    mlt_tuner__log_end(t, &j);
    mlt_tuner__log_reason(t, "free", t->train, "%s", ev);
    int rc = t->ex->free(t->ex->ctx, t->train);
    if (rc)
        return rc;
    bool lr_tuned = t->lr_dim >= 0 && t->sp.dims[t->lr_dim].kind != MLT_TUNABLE_DISCRETE;
    if (t->sp.d == 0 || !t->good || (diverged && ++t->rollbacks > MAX_ROLLBACKS)) {
        snprintf(res->reason, sizeof res->reason, "the training branch diverged (%s)%s", what,
                 t->sp.d == 0 ? "; nothing is tuned, so there is nothing to change"
                 : t->rollbacks > MAX_ROLLBACKS ? ", after 3 recoveries" : "");
        return 2;
    }
    mlt_setting_t bad = t->train_s;
    t->epoch = t->good_epoch;
    t->cursor = t->good_cursor;
    t->last_loss = t->good_loss;
    mlt_tuner__log_reason(t, "retune", t->good,
                          "the training branch %s: re-tuning from the snapshot", ev);
    /* a learning rate that failed is too high from here on: the range's top
     * becomes half of it, and the design centres there */
    mlt_setting_t center = bad;
    if (lr_tuned) {
        mlt_tunable_t *dm = &t->sp.dims[t->lr_dim];
        double lr = mlt_setting_get(t->job, &bad, "lr", NAN);
        if (lr / 2 > dm->min) {
            dm->max = lr / 2 < dm->max ? lr / 2 : dm->max;
            if (dm->def > dm->max)
                dm->def = dm->max;
            mlt_tuner__log_begin(t, &j, "range", t->good);
            mlt_json_str(&j, "tunable", "lr");
            mlt_json_num(&j, "max", dm->max);
            mlt_json_strf(&j, "reason", "lr %.6g %s", lr, ev);
            mlt_tuner__log_end(t, &j);
        }
        mlt_setting_set(t->job, &center, "lr", dm->max < lr / 2 ? dm->max : lr / 2);
    }
    mlt_setting_t design[MLT_JOB_MAX_TUNABLES * 2 + 1];
    uint32_t nd = mlt_tuner__design(t, &center, design, (uint32_t)t->job->tuner.first_trials, 0);
    if (!lr_tuned) /* the failed setting is the centre: leave it out */
        for (uint32_t i = 1; i < nd; i++)
            design[i - 1] = design[i];
    nd -= !lr_tuned && nd > 0;
    trial_t *trials = NULL;
    uint32_t n = 0;
    int winner = -1;
    rc = mlt_tuner__search(t, NULL, t->good, t->good_loss, t->good_cursor, design, nd, nd,
                           INFINITY, &trials, &n, &winner);
    if (!rc && winner < 0) {
        snprintf(res->reason, sizeof res->reason,
                 "the training branch %s (%s) and every one of %u trials from the snapshot "
                 "diverged", ev, what, n);
        rc = 2;
    }
    if (!rc)
        rc = commit(t, trials, n, winner,
                    diverged ? "the best trial from the snapshot before the divergence"
                             : "the best trial from the snapshot before the regression");
    mlt_tuner__free_trials(trials, n);
    if (!rc)
        rc = snapshot_take(t, t->good_val, t->good_test, "committed");
    return rc;
}

/* Hands the executor the tuner's state at a consistent point (exec.checkpoint,
 * which writes a checkpoint when one is due). 0, 1 (stop requested) or -1. */
static int checkpoint(tuner_t *t)
{
    const mlt_exec_t *ex = t->ex;
    const mlt_tuner_result_t *res = t->res;
    if (!ex->checkpoint)
        return 0;
    if (ex->progress) /* the executor's view of the lineage, as checkpointed */
        ex->progress(ex->ctx, "training", t->train, &t->train_s, t->epoch, res->val, res->test,
                     res->trials);
    size_t n = 0;
    void *st = mlt_tuner__state_save(t, &n);
    int rc = ex->checkpoint(ex->ctx, st, n);
    mlt_free(st);
    return rc < 0 ? -1 : rc;
}

/* Clocks of one piece of a test interval of `clocks`: about
 * checkpoint_interval_s (at least MIN_PIECE_S) at the training setting's
 * measured speed, at least an eighth of the interval; the whole interval
 * without checkpoints. */
#define MIN_PIECE_S 0.5 /* a piece's work, against the checkpoint after it */
static int64_t piece_clocks(const tuner_t *t, int64_t clocks)
{
    double every = t->job->checkpoint_interval_s;
    if (!t->ex->checkpoint || !(every > 0) || clocks > MLT_TUNER_MAX_IV_CLOCKS)
        return clocks;
    if (every < MIN_PIECE_S)
        every = MIN_PIECE_S;
    bool sure;
    double per = mlt_tuner__rate(t, &t->train_s, &sure);
    int64_t cap = per > 0 && isfinite(per) && every / per < (double)clocks ? (int64_t)(every / per)
                                                                         : clocks;
    int64_t eighth = (clocks + 7) / 8;
    return cap < eighth ? eighth : cap;
}

/* Runs one test interval of the training branch (or what is left before
 * max_epochs), or the rest of the one a checkpoint was taken in, in pieces
 * with a checkpoint between them; its trend t statistic to *trend. */
static int train_interval(tuner_t *t, double *trend)
{
    const mlt_job_t *job = t->job;
    const mlt_exec_t *ex = t->ex;
    mlt_tuner_result_t *res = t->res;
    double epc = ex->epoch_clocks(ex->ctx, &t->train_s);
    *trend = NAN;
    if (!t->iv_loss) {
        int64_t clocks = (int64_t)ceil(job->test_interval * epc);
        if (job->stop.max_epochs > 0) {
            int64_t left = (int64_t)ceil((job->stop.max_epochs - t->epoch) * epc - 1e-9);
            if (left < clocks)
                clocks = left;
        }
        if (clocks <= 0)
            return 0;
        t->iv_loss = mlt_calloc((size_t)clocks, sizeof *t->iv_loss);
        t->iv_clocks = clocks;
        t->iv_done = 0;
    }
    if (ex->progress) /* the status shows the training branch from its first clock */
        ex->progress(ex->ctx, "training", t->train, &t->train_s, t->epoch, res->val, res->test,
                     res->trials);
    int64_t clocks = t->iv_clocks, per_piece = piece_clocks(t, clocks);
    int rc = 0;
    while (t->iv_done < clocks) {
        int64_t n = clocks - t->iv_done < per_piece ? clocks - t->iv_done : per_piece;
        double secs = 0;
        rc = ex->run(ex->ctx, t->train, &t->train_s, t->train_clock, n, t->cursor,
                     t->iv_loss + t->iv_done, &secs);
        if (rc)
            break;
        mlt_tuner__rate_note(t, &t->train_s, n, secs);
        t->train_clock += n;
        t->cursor += (double)n / epc;
        t->epoch += (double)n / epc;
        res->train_seconds += secs;
        t->iv_done += n;
        if (t->iv_done < clocks && (rc = checkpoint(t)))
            break;
    }
    if (!rc) {
        t->last_loss = mlt_tuner__tail_loss(t->iv_loss, clocks); /* NaN/Inf: it diverged */
        *trend = mlt_trend_t(t->iv_loss, (size_t)clocks);
    }
    mlt_free(t->iv_loss);
    t->iv_loss = NULL;
    t->iv_clocks = t->iv_done = 0;
    return rc;
}

/* The tuner's fixed part, from the job: the searched space, the coupling. */
static void tuner_setup(tuner_t *t, const mlt_job_t *job, const mlt_exec_t *ex,
                        uint32_t init_branch, FILE *log, const mlt_warm_t *warm,
                        mlt_tuner_result_t *res)
{
    memset(t, 0, sizeof *t);
    memset(res, 0, sizeof *res);
    t->job = job;
    t->ex = ex;
    t->warm = warm && warm->have ? warm : NULL;
    t->log = log;
    t->res = res;
    t->next_id = init_branch + 1;
    t->classify = !mlt_job_rmse(job);
    res->val = res->test = res->best_val = NAN;
    res->learned.lr_star = NAN;
    bool tuning = job->tuner.logic == MLT_LOGIC_MLTUNER;
    mlt_space_init(&t->sp, job, tuning);
    t->lr_dim = mlt_space_dim(&t->sp, "lr");
    t->m_dim = mlt_space_dim(&t->sp, "momentum");
    const char *rule = mlt_job_enum_name("update.rule", job->update.rule);
    t->coupled_rule = rule && (strcmp(rule, "sgd") == 0 || strcmp(rule, "nesterov") == 0);
    t->sgd_like = t->coupled_rule || (rule && strcmp(rule, "sf-sgd") == 0);
    t->coupled = t->coupled_rule && t->lr_dim >= 0 && t->m_dim >= 0 &&
                 t->sp.dims[t->lr_dim].kind != MLT_TUNABLE_DISCRETE &&
                 t->sp.dims[t->m_dim].kind != MLT_TUNABLE_DISCRETE && t->sp.dims[t->m_dim].max < 1;
    mlt_setting_defaults(job, &t->train_s);
    t->start_loss = t->last_loss = NAN;
}

static int train_loop(tuner_t *t);

int mlt_tuner_run(const mlt_job_t *job, const mlt_exec_t *ex, uint32_t init_branch, FILE *log,
                  const mlt_warm_t *warm, mlt_tuner_result_t *res)
{
    tuner_t tu;
    tuner_t *t = &tu;
    tuner_setup(t, job, ex, init_branch, log, warm, res);
    if (job->tuner.logic == MLT_LOGIC_TTC || job->tuner.logic == MLT_LOGIC_HYPERBAND)
        return mlt_tuner_baseline(job, ex, init_branch, log, res);
    bool tuning = job->tuner.logic == MLT_LOGIC_MLTUNER;
    int rc = 0;
    if (t->sp.d == 0) {
        /* nothing to tune: train the defaults */
        uint32_t id = t->next_id++;
        mlt_tuner__log_fork(t, id, init_branch, "train");
        if ((rc = ex->fork(ex->ctx, id, init_branch, MLT_BRANCH_TRAIN, &t->train_s)))
            return rc < 0 ? -1 : 0;
        mlt_tuner__log_setting(t, "commit", id, &t->train_s,
                               tuning ? "no tunable is marked tune = true"
                                      : "fixed tunables (tuner.logic = fixed)");
        t->train = id;
        res->searches = 0;
    } else if ((rc = first_search(t, init_branch))) {
        return rc < 0 ? -1 : 0;
    }

    t->converged = !tuning || t->sp.d == 0;
    rc = train_loop(t);
    mlt_free(t->iv_loss);
    return rc;
}

int mlt_tuner_resume(const mlt_job_t *job, const mlt_exec_t *ex, uint32_t init_branch,
                     const void *state, size_t len, FILE *log, mlt_tuner_result_t *res)
{
    tuner_t tu;
    tuner_t *t = &tu;
    tuner_setup(t, job, ex, init_branch, log, NULL, res);
    char why[160];
    if (job->tuner.logic == MLT_LOGIC_TTC || job->tuner.logic == MLT_LOGIC_HYPERBAND ||
        mlt_tuner__state_load(t, state, len, why, sizeof why)) {
        snprintf(res->reason, sizeof res->reason, "the checkpoint's tuner state: %s",
                 job->tuner.logic == MLT_LOGIC_TTC || job->tuner.logic == MLT_LOGIC_HYPERBAND
                     ? "this tuning logic is not checkpointed" : why);
        return -1;
    }
    mlt_json_t j;
    mlt_tuner__log_begin(t, &j, "resume", t->train);
    mlt_json_fixed(&j, "epoch", t->epoch, 4);
    mlt_json_int(&j, "clock", t->train_clock);
    mlt_json_uint(&j, "snapshot", t->good);
    mlt_json_num(&j, "loss", t->last_loss);
    mlt_json_str(&j, "reason", "the daemon restarted: the job goes on from its last checkpoint");
    mlt_tuner__log_end(t, &j);
    int rc = train_loop(t);
    mlt_free(t->iv_loss);
    return rc;
}

/* train, test, re-tune: from a commit, or a checkpoint of one of its rounds */
static int train_loop(tuner_t *t)
{
    const mlt_job_t *job = t->job;
    const mlt_exec_t *ex = t->ex;
    mlt_tuner_result_t *res = t->res;
    int rc;
    for (;;) {
        /* a consistent point: no task out, every push applied, the training
         * branch and the good snapshot all that lives (and between the pieces
         * of a test interval: train_interval) */
        if ((rc = checkpoint(t)))
            return rc < 0 ? -1 : 0;
        double trend = NAN;
        if ((rc = train_interval(t, &trend)))
            return rc < 0 ? -1 : 0;
        /* test */
        if (ex->progress)
            ex->progress(ex->ctx, "training", t->train, &t->train_s, t->epoch, res->val, res->test,
                         res->trials);
        uint32_t tid = t->next_id++;
        mlt_tuner__log_fork(t, tid, t->train, "test");
        double val = NAN, test = NAN;
        if ((rc = ex->fork(ex->ctx, tid, t->train, MLT_BRANCH_TEST, &t->train_s)) ||
            (rc = ex->test(ex->ctx, tid, &val, &test)))
            return rc < 0 ? -1 : 0;
        mlt_json_t j;
        mlt_tuner__log_begin(t, &j, "test", t->train);
        mlt_json_num(&j, t->classify ? "accuracy" : "rmse", val);
        mlt_json_num(&j, t->classify ? "test_accuracy" : "test_rmse", test);
        mlt_json_fixed(&j, "epoch", t->epoch, 4);
        mlt_json_num(&j, "loss", t->last_loss);
        mlt_json_num(&j, "trend_t", trend);
        mlt_tuner__log_end(t, &j);
        bool blown = isfinite(t->start_loss) && t->start_loss > 0 &&
                     t->last_loss > MLT_SUMMARY_DIVERGE_FACTOR * t->start_loss;
        mlt_tuner__log_reason(t, "free", tid, "tested");
        if ((rc = ex->free(ex->ctx, tid)))
            return -1;
        bool diverged = !isfinite(t->last_loss) || !isfinite(val) || blown;
        if (diverged || (t->sp.d > 0 && regressed(t, val) && t->regressions++ < MAX_ROLLBACKS)) {
            /* back to the last good point, and re-tune from there */
            char what[128];
            snprintf(what, sizeof what,
                     "training loss %.6g, validation %.6g at epoch %.4f; "
                     "best %.6g",
                     t->last_loss, val, t->epoch, res->best_val);
            if ((rc = rollback(t, diverged, what)))
                return rc == 1 ? 0 : -1;
            res->val = t->good_val;
            res->test = t->good_test;
            t->no_gain = 0;
            continue;
        }
        res->val = val;
        res->test = test;
        if (ex->progress)
            ex->progress(ex->ctx, "training", t->train, &t->train_s, t->epoch, val, test, res->trials);
        if (better(t, val, res->best_val)) {
            res->best_val = val;
            t->no_gain = 0;
        } else {
            t->no_gain++;
        }
        if (stop_now(t, test))
            break;
        if (t->sp.d > 0 && (rc = snapshot_take(t, val, test, "tested")))
            return -1;
        /* re-tune? the learning rate first, by a paired probe, when the
         * training loss stalled beyond its noise and this test was no new
         * best (a training loss can stall, or rise, while the held-out metric
         * still improves: matrix factorisation's does), or the validation
         * metric has not improved for retune_tests tests */
        if (t->converged)
            continue;
        char why[160];
        if (job->tuner.plateau_t > 0 && isfinite(trend) && trend > -job->tuner.plateau_t &&
            t->no_gain > 0)
            snprintf(why, sizeof why, "the training loss stalled over the last interval "
                     "(trend t = %.3g > -%g) and the validation metric did not improve", trend,
                     job->tuner.plateau_t);
        else if (job->tuner.retune_tests > 0 && t->no_gain >= job->tuner.retune_tests)
            snprintf(why, sizeof why, "the validation metric has not improved for %d tests",
                     t->no_gain);
        else
            continue;
        double budget = mlt_tuner__budget(t);
        if (budget < t->trial_time) {
            mlt_tuner__log_begin(t, &j, "retune_skipped", t->train);
            mlt_json_strf(&j, "reason", "%s, but the tuning overhead budget is spent", why);
            mlt_json_num(&j, "budget", budget);
            mlt_tuner__log_end(t, &j);
            continue;
        }
        bool changed = false;
        if ((rc = mlt_tuner__retune(t, why, &changed)))
            return rc < 0 ? -1 : 0;
        res->searches++;
        if (changed) {
            t->retunes_without_gain = 0;
            t->no_gain = 0;
            if ((rc = snapshot_take(t, res->val, res->test, "committed")))
                return -1;
        } else if (++t->retunes_without_gain >= job->tuner.converge_tests) {
            t->converged = true;
            mlt_tuner__log_reason(t, "converged", t->train, "%d re-tunes without a better setting",
                                  t->retunes_without_gain);
        }
    }
    if (t->good) {
        mlt_tuner__log_reason(t, "free", t->good, "the job is over");
        if (ex->free(ex->ctx, t->good))
            return -1;
        t->good = 0;
    }
    res->branch = t->train;
    res->setting = t->train_s;
    res->epoch = t->epoch;
    return 0;
}
