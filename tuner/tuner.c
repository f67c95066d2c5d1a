/* tuner.c - the tuning logic (mlt_tuner_run): settings, the starting loss,
 * commits, snapshots, rollbacks and the train, test and re-tune loop; one
 * search is in tuner_search.c. See tuner.h for the algorithm. */
#include "tuner/tuner.h"

#include <math.h>
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>

#include "common/alloc.h"
#include "common/rng.h"
#include "tuner/declog.h"
#include "tuner/searcher.h"
#include "tuner/summary.h"
#include "tuner/tuner_base.h"
#include "tuner/tuner_int.h"

#define MAX_TRIALS_FIRST 30 /* hard cap on the first search's trials */
#define MAX_ROLLBACKS 3     /* diverged training branches recovered from, at most */

/* ---- decision log ------------------------------------------------------------- */

void mlt_tuner__log_setting(tuner_t *t, const char *event, uint32_t branch, const mlt_setting_t *s,
                            const char *extra, const char *reason)
{
    mlt_declog_setting(t->log, t->ex->now(t->ex->ctx), event, branch, t->job, s, extra, reason);
}

/* ---- the training branch ------------------------------------------------------- */

/* The loss at the end of a run of n clocks: the mean of its last n/10 clocks
 * (at least 10, at most all), the point a search's trials start from. One
 * clock's loss is one mini-batch's, far noisier than a trial's block means: a
 * trial that starts from an unlucky low one looks unstable, from a high one
 * it gains what it never made. NaN or Inf when any of them is (diverged). */
static double tail_loss(const double *loss, int64_t n)
{
    int64_t k = n / 10 < 10 ? 10 : n / 10;
    if (k > n)
        k = n;
    double sum = 0;
    for (int64_t i = n - k; i < n; i++)
        sum += loss[i];
    return k > 0 ? sum / (double)k : NAN;
}

/* Frees every trial but the winner; makes the winner the training branch. */
static int commit(tuner_t *t, trial_t *trials, uint32_t n, int winner, const char *reason)
{
    int rc = 0;
    for (uint32_t i = 0; i < n && !rc; i++)
        if ((int)i != winner)
            rc = mlt_tuner__trial_kill(t, &trials[i], "not the winner");
    if (rc)
        return rc;
    trial_t *w = &trials[winner];
    char extra[96];
    char b[32];
    snprintf(extra, sizeof extra, "\"slope\":%s,\"verdict\":\"%s\"", jnum(b, w->sum.slope),
             mlt_verdict_name(w->sum.verdict));
    mlt_tuner__log_setting(t, "commit", w->id, &w->s, extra, reason);
    double epc = t->ex->epoch_clocks(t->ex->ctx, &w->s);
    t->train = w->id;
    t->train_s = w->s;
    t->train_clock = w->clocks;
    t->cursor = w->cursor0 + (double)w->clocks / epc;
    t->epoch += (double)w->clocks / epc; /* the winner's trial clocks were training */
    t->last_loss = tail_loss(w->loss, w->clocks);
    t->res->searches++;
    return 0;
}

/* Forks a frozen snapshot of the training branch at its current point and
 * makes it the good snapshot, freeing the one it replaces. val, test: the
 * training branch's metrics there (NaN: not tested yet). */
static int snapshot_take(tuner_t *t, double val, double test, const char *reason)
{
    uint32_t id = t->next_id++;
    char b[32];
    logline(t, "fork", id, "\"parent\":%u,\"kind\":\"snapshot\",\"epoch\":%.4f,\"loss\":%s,"
            "\"reason\":\"%s\"", t->train, t->epoch, jnum(b, t->last_loss), reason);
    int rc = t->ex->fork(t->ex->ctx, id, t->train, BRANCH_KIND_SNAPSHOT, &t->train_s);
    if (rc)
        return rc;
    if (t->good) {
        logline(t, "free", t->good, "\"reason\":\"replaced by snapshot %u\"", id);
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

static int starting_loss(tuner_t *t, uint32_t init)
{
    mlt_setting_t s;
    mlt_setting_defaults(t->job, &s);
    for (uint32_t i = 0; i < t->job->n_tunables; i++)
        if (strcmp(t->job->tunables[i].name, "lr") == 0)
            s.v[i] = 0; /* an eval branch changes nothing */
    uint32_t id = t->next_id++;
    int64_t clocks = t->job->tuner.min_trial_clocks;
    double *loss = mlt_calloc((size_t)clocks, sizeof *loss), secs = 0;
    logline(t, "fork", id, "\"parent\":%u,\"kind\":\"eval\",\"reason\":\"starting loss, lr 0\"", init);
    int rc = t->ex->fork(t->ex->ctx, id, init, BRANCH_KIND_EVAL, &s);
    if (!rc && t->ex->progress) /* the first search begins with this measurement */
        t->ex->progress(t->ex->ctx, "searching", id, &s, 0.0, NAN, NAN, 0);
    /* in two runs: the second half's time is the default setting's rate, on
     * which the trial time is based (the first clocks of a job are slower:
     * first pulls, threads starting) */
    int64_t half = clocks / 2;
    if (!rc && half > 0)
        rc = t->ex->run(t->ex->ctx, id, &s, 0, half, 0.0, loss, &secs);
    if (!rc)
        rc = t->ex->run(t->ex->ctx, id, &s, half, clocks - half,
                        (double)half / t->ex->epoch_clocks(t->ex->ctx, &s), loss + half, &secs);
    if (!rc)
        mlt_tuner__rate_note(t, &s, clocks - half, secs);
    double sum = 0;
    size_t m = 0;
    for (int64_t i = 0; i < clocks; i++)
        if (isfinite(loss[i])) {
            sum += loss[i];
            m++;
        }
    mlt_free(loss);
    if (rc)
        return rc;
    t->start_loss = m ? sum / (double)m : NAN;
    char b[32];
    logline(t, "start", id, "\"loss\":%s,\"clocks\":%lld", jnum(b, t->start_loss), (long long)clocks);
    logline(t, "free", id, "\"reason\":\"starting loss measured\"");
    rc = t->ex->free(t->ex->ctx, id);
    if (!rc && !isfinite(t->start_loss)) {
        snprintf(t->res->reason, sizeof t->res->reason,
                 "the starting loss is not finite: the initial model or data is broken");
        return -1;
    }
    return rc;
}

static mlt_search_t *new_searcher(tuner_t *t, int kind, const mlt_setting_t *center, uint64_t tag)
{
    double c[MLT_JOB_MAX_TUNABLES];
    if (center)
        mlt_space_from_setting(&t->sp, center, c);
    return mlt_search_new(kind, t->sp.dims, t->sp.d, mlt_rng_mix((uint64_t)t->job->seed, tag),
                          center ? c : NULL);
}

/* The training branch diverged (a non-finite or exploding loss, a non-finite
 * validation result) or regressed (its validation metric fell well below the
 * best): frees it and re-tunes from the good snapshot, with the learning
 * rate's range cut to half the rate that failed (or, without a tuned lr, the
 * failed setting known to the searcher as the worst). Returns 0 with a new
 * training branch, 1 when a stop was requested, 2 when it cannot recover
 * (res->reason says why), -1 on an executor error. */
static int rollback(tuner_t *t, bool diverged, const char *what)
{
    mlt_tuner_result_t *res = t->res;
    const char *ev = diverged ? "diverged" : "regressed";
    logline(t, ev, t->train, "\"reason\":\"%s\",\"snapshot\":%u,\"epoch\":%.4f", what,
            t->good, t->good_epoch);
    logline(t, "free", t->train, "\"reason\":\"%s\"", ev);
    int rc = t->ex->free(t->ex->ctx, t->train);
    if (rc)
        return rc;
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
    logline(t, "retune", t->good, "\"reason\":\"the training branch %s: re-tuning from the "
            "snapshot\"", ev);
    /* a learning rate that failed is too high from here on: the range's top
     * becomes half of it, and the search centres there */
    mlt_setting_t center = bad;
    bool capped = false;
    for (uint32_t k = 0; k < t->sp.d; k++) {
        mlt_tunable_t *dm = &t->sp.dims[k];
        double lr = bad.v[t->sp.dim_of[k]];
        if (strcmp(dm->name, "lr") == 0 && dm->kind != MLT_TUNABLE_DISCRETE && lr / 2 > dm->min) {
            dm->max = lr / 2 < dm->max ? lr / 2 : dm->max;
            if (dm->def > dm->max)
                dm->def = dm->max;
            center.v[t->sp.dim_of[k]] = dm->max;
            capped = true;
            char b1[32], b2[32];
            logline(t, "range", t->good, "\"tunable\":\"lr\",\"max\":%s,\"reason\":\"lr %s "
                    "%s\"", jnum(b1, dm->max), jnum(b2, lr), ev);
        }
    }
    mlt_search_t *se = new_searcher(t, MLT_SEARCHER_MARGINAL, &center,
                                    100 + (uint64_t)(t->rollbacks + 4 * t->regressions));
    if (!capped) {
        double xb[MLT_JOB_MAX_TUNABLES];
        mlt_space_from_setting(&t->sp, &bad, xb);
        mlt_search_observe(se, xb, INFINITY); /* never propose it again */
    }
    trial_t *trials = NULL;
    uint32_t n = 0;
    int winner = -1;
    uint32_t max_trials = t->last_trials < 4 * t->sp.d ? t->last_trials : 4 * t->sp.d;
    if (max_trials < 2 * t->sp.d)
        max_trials = 2 * t->sp.d;
    rc = mlt_tuner__search(t, se, t->good, t->good_loss, t->good_cursor, max_trials, INFINITY, NULL,
                           &trials, &n, &winner);
    mlt_search_destroy(&se);
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
    t->last_trials = n;
    mlt_tuner__free_trials(trials, n);
    if (!rc)
        rc = snapshot_take(t, t->good_val, t->good_test, "committed");
    return rc;
}

int mlt_tuner_run(const mlt_job_t *job, const mlt_exec_t *ex, uint32_t init_branch, FILE *log,
                  mlt_tuner_result_t *res)
{
    tuner_t tu;
    memset(&tu, 0, sizeof tu);
    memset(res, 0, sizeof *res);
    tuner_t *t = &tu;
    t->job = job;
    t->ex = ex;
    t->log = log;
    t->res = res;
    t->next_id = init_branch + 1;
    t->classify = job->model.type != MLT_MODEL_MF;
    res->val = res->test = res->best_val = NAN;
    bool tuning = job->tuner.logic == MLT_LOGIC_MLTUNER;
    for (uint32_t i = 0; i < job->n_tunables; i++)
        if (job->tunables[i].tune && tuning) {
            t->sp.dims[t->sp.d] = job->tunables[i];
            t->sp.dim_of[t->sp.d++] = i;
        }
    mlt_setting_defaults(job, &t->train_s);
    if (job->tuner.logic == MLT_LOGIC_TTC || job->tuner.logic == MLT_LOGIC_HYPERBAND)
        return mlt_tuner_baseline(job, ex, init_branch, log, res);
    int rc = 0;
    t->start_loss = t->last_loss = NAN;
    if (t->sp.d > 0 && (rc = starting_loss(t, init_branch))) /* the divergence reference */
        return rc < 0 ? -1 : 0;

    if (t->sp.d == 0) {
        /* nothing to tune: train the defaults */
        uint32_t id = t->next_id++;
        logline(t, "fork", id, "\"parent\":%u,\"kind\":\"train\"", init_branch);
        if ((rc = ex->fork(ex->ctx, id, init_branch, BRANCH_KIND_TRAIN, &t->train_s)))
            return rc < 0 ? -1 : 0;
        mlt_tuner__log_setting(t, "commit", id, &t->train_s, NULL,
                               tuning ? "no tunable is marked tune = true"
                                      : "fixed tunables (tuner.logic = fixed)");
        t->train = id;
        res->searches = 0;
    } else {
        mlt_search_t *se = new_searcher(t, job->tuner.searcher, NULL, 1);
        trial_t *trials = NULL;
        uint32_t n = 0;
        int winner = -1;
        rc = mlt_tuner__search(t, se, init_branch, t->start_loss, 0.0, MAX_TRIALS_FIRST, INFINITY,
                               NULL, &trials, &n, &winner);
        mlt_search_destroy(&se);
        if (!rc && winner < 0) {
            snprintf(res->reason, sizeof res->reason, "every one of %u trials diverged", n);
            rc = -1;
        }
        if (!rc)
            rc = commit(t, trials, n, winner, "the best converging trial of the first search");
        if (!rc)
            rc = snapshot_take(t, NAN, NAN, "committed");
        t->last_trials = n;
        t->first_search_s = res->trial_seconds;
        mlt_tuner__free_trials(trials, n);
        if (rc)
            return rc < 0 ? -1 : 0;
    }

    /* train, test, re-tune */
    double interval = job->test_interval;
    int no_gain = 0, retunes_without_gain = 0;
    bool converged = !tuning || t->sp.d == 0;
    double since_search = 0;
    for (;;) {
        double epc = ex->epoch_clocks(ex->ctx, &t->train_s);
        int64_t clocks = (int64_t)ceil(interval * epc);
        if (job->stop.max_epochs > 0) {
            int64_t left = (int64_t)ceil((job->stop.max_epochs - t->epoch) * epc - 1e-9);
            if (left < clocks)
                clocks = left;
        }
        if (clocks > 0) {
            if (ex->progress) /* the status shows the training branch from its first clock */
                ex->progress(ex->ctx, "training", t->train, &t->train_s, t->epoch, res->val,
                             res->test, res->trials);
            double *loss = mlt_calloc((size_t)clocks, sizeof *loss), secs = 0;
            rc = ex->run(ex->ctx, t->train, &t->train_s, t->train_clock, clocks, t->cursor, loss,
                         &secs);
            t->last_loss = tail_loss(loss, clocks); /* NaN/Inf: the branch diverged */
            mlt_free(loss);
            if (rc)
                return rc < 0 ? -1 : 0;
            mlt_tuner__rate_note(t, &t->train_s, clocks, secs);
            t->train_clock += clocks;
            t->cursor += (double)clocks / epc;
            t->epoch += (double)clocks / epc;
            res->train_seconds += secs;
            since_search += secs;
        }
        /* test */
        if (ex->progress)
            ex->progress(ex->ctx, "training", t->train, &t->train_s, t->epoch, res->val, res->test,
                         res->trials);
        uint32_t tid = t->next_id++;
        logline(t, "fork", tid, "\"parent\":%u,\"kind\":\"test\"", t->train);
        double val = NAN, test = NAN;
        if ((rc = ex->fork(ex->ctx, tid, t->train, BRANCH_KIND_TEST, &t->train_s)) ||
            (rc = ex->test(ex->ctx, tid, &val, &test)))
            return rc < 0 ? -1 : 0;
        char b1[32], b2[32], b3[32];
        logline(t, "test", t->train, "\"%s\":%s,\"test_%s\":%s,\"epoch\":%.4f,\"loss\":%s",
                t->classify ? "accuracy" : "rmse", jnum(b1, val), t->classify ? "accuracy" : "rmse",
                jnum(b2, test), t->epoch, jnum(b3, t->last_loss));
        bool blown = isfinite(t->start_loss) && t->start_loss > 0 &&
                     t->last_loss > MLT_SUMMARY_DIVERGE_FACTOR * t->start_loss;
        logline(t, "free", tid, "\"reason\":\"tested\"");
        if ((rc = ex->free(ex->ctx, tid)))
            return -1;
        bool diverged = !isfinite(t->last_loss) || !isfinite(val) || blown;
        if (diverged || (t->sp.d > 0 && regressed(t, val) && t->regressions++ < MAX_ROLLBACKS)) {
            /* back to the last good point, and re-tune from there */
            char what[128];
            snprintf(what, sizeof what, "training loss %s, validation %s at epoch %.4f; best %s",
                     jnum(b1, t->last_loss), jnum(b2, val), t->epoch, jnum(b3, res->best_val));
            if ((rc = rollback(t, diverged, what)))
                return rc == 1 ? 0 : -1;
            res->val = t->good_val;
            res->test = t->good_test;
            no_gain = 0;
            since_search = 0;
            continue;
        }
        res->val = val;
        res->test = test;
        if (ex->progress)
            ex->progress(ex->ctx, "training", t->train, &t->train_s, t->epoch, val, test, res->trials);
        bool gain = better(t, val, res->best_val);
        if (gain) {
            res->best_val = val;
            no_gain = 0;
        } else {
            no_gain++;
        }
        if (stop_now(t, test))
            break;
        if (t->sp.d > 0 && (rc = snapshot_take(t, val, test, "tested")))
            return -1;
        /* re-tune? */
        if (converged)
            continue;
        const char *why = NULL;
        if (job->tuner.retune_tests > 0 && no_gain >= job->tuner.retune_tests)
            why = "validation metric has not improved";
        else if (job->tuner.retune_time_factor > 0 &&
                 since_search >= job->tuner.retune_time_factor * t->last_search_s)
            why = "trained retune_time_factor x the last search time";
        if (!why)
            continue;
        /* the first search is unavoidable (nothing trains before it); re-tunes
         * must keep their trials under max_overhead x training time */
        double budget = job->tuner.max_overhead * res->train_seconds -
                        (res->trial_seconds - t->first_search_s);
        if (budget <= 0) {
            logline(t, "retune_skipped", t->train,
                    "\"reason\":\"%s, but the tuning overhead budget is spent\"", why);
            since_search = 0;
            continue;
        }
        logline(t, "retune", t->train, "\"reason\":\"%s\"", why);
        mlt_search_t *se = new_searcher(t, MLT_SEARCHER_MARGINAL, &t->train_s, 2 + res->searches);
        trial_t *trials = NULL;
        uint32_t n = 0;
        int winner = -1;
        uint32_t parent = t->train;
        mlt_setting_t before = t->train_s;
        rc = mlt_tuner__search(t, se, parent, t->last_loss, t->cursor,
                               t->last_trials > 2 ? t->last_trials : 2, budget, &t->train_s,
                               &trials, &n, &winner);
        mlt_search_destroy(&se);
        if (rc) {
            mlt_tuner__free_trials(trials, n);
            return rc < 0 ? -1 : 0;
        }
        if (winner < 0) {
            /* every trial diverged: keep training the parent */
            for (uint32_t i = 0; i < n; i++)
                mlt_tuner__trial_kill(t, &trials[i], "re-tune found nothing better");
            retunes_without_gain++;
        } else {
            char reason[160] = "the best trial of the re-tune";
            if (n > 0 && trials[0].alive && trials[0].sum.verdict != MLT_VERDICT_DIVERGED)
                winner = mlt_tuner__retune_winner(trials, n, reason, sizeof reason);
            /* the parent stops being the training branch: the winner continues it */
            logline(t, "free", parent, "\"reason\":\"replaced by the re-tune's winner\"");
            ex->free(ex->ctx, parent);
            rc = commit(t, trials, n, winner, reason);
            if (!rc)
                rc = snapshot_take(t, res->val, res->test, "committed");
            if (memcmp(&before, &t->train_s, sizeof before) == 0)
                retunes_without_gain++;
            else
                retunes_without_gain = 0;
        }
        t->last_trials = n;
        mlt_tuner__free_trials(trials, n);
        if (rc)
            return rc < 0 ? -1 : 0;
        no_gain = 0;
        since_search = 0;
        if (retunes_without_gain >= job->tuner.converge_tests) {
            converged = true;
            logline(t, "converged", t->train, "\"reason\":\"%d re-tunes without a better setting\"",
                    retunes_without_gain);
        }
    }
    if (t->good) {
        logline(t, "free", t->good, "\"reason\":\"the job is over\"");
        if (ex->free(ex->ctx, t->good))
            return -1;
        t->good = 0;
    }
    res->branch = t->train;
    res->setting = t->train_s;
    res->epoch = t->epoch;
    return 0;
}
