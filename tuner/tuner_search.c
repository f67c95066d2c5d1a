/* tuner_search.c - one search of the tuner (mlt_tuner__search): its trials,
 * the trial time they run for, the searcher loop and its stops, and the
 * winner (the best slope; a re-tune's by the paired test); see tuner.h. */
#include "tuner/tuner.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "common/alloc.h"
#include "tuner/declog.h"
#include "tuner/searcher.h"
#include "tuner/summary.h"
#include "tuner/tuner_int.h"

/* ---- trials -------------------------------------------------------------------- */

static void trial_free_mem(trial_t *tr)
{
    mlt_free(tr->loss);
    tr->loss = NULL;
}

/* Frees trials (an array from mlt_tuner__search) and every trial's losses. */
void mlt_tuner__free_trials(trial_t *trials, uint32_t n)
{
    for (uint32_t i = 0; i < n; i++)
        trial_free_mem(&trials[i]);
    mlt_free(trials);
}

/* ---- trial time ---------------------------------------------------------------- *
 * MLtuner gives every trial of a search the same time, in seconds: the slope
 * of a loss curve is steepest at its start, so a trial that ran for less time
 * would look better than one that ran longer (a batch of 512 runs an epoch in
 * a twelfth of the time 32 needs, so equal clocks, or an epoch cap in clocks,
 * compare very different times). A trial runs in pieces of whole clocks until
 * it has run the trial time. */

static double setting_batch(const tuner_t *t, const mlt_setting_t *s)
{
    return mlt_setting_get(t->job, s, "batch_size", 0);
}

void mlt_tuner__rate_note(tuner_t *t, const mlt_setting_t *s, int64_t clocks, double seconds)
{
    double b = setting_batch(t, s);
    if (clocks <= 0 || !(seconds > 0))
        return;
    uint32_t i = 0;
    while (i < t->n_rate && t->rate[i].batch != b)
        i++;
    if (i == t->n_rate) {
        if (t->n_rate == sizeof t->rate / sizeof t->rate[0])
            return;
        t->rate[t->n_rate++].batch = b;
    }
    t->rate[i].seconds += seconds;
    t->rate[i].clocks += (double)clocks;
}

/* seconds per clock of setting s: measured at its batch size (*sure), else
 * scaled from the nearest batch size measured (0: nothing measured yet) */
static double rate_estimate(const tuner_t *t, const mlt_setting_t *s, bool *sure)
{
    double b = setting_batch(t, s), best = INFINITY, r = 0;
    *sure = false;
    for (uint32_t i = 0; i < t->n_rate; i++) {
        double per = t->rate[i].seconds / t->rate[i].clocks;
        if (t->rate[i].batch == b) {
            *sure = true;
            return per;
        }
        double dist = fabs(log((b > 0 ? b : 1) / (t->rate[i].batch > 0 ? t->rate[i].batch : 1)));
        if (dist < best) {
            best = dist;
            r = b > 0 && t->rate[i].batch > 0 ? per * b / t->rate[i].batch : per;
        }
    }
    return r;
}

/* Runs tr until it has run `upto` clocks in all and summarises it, without
 * logging. Returns the executor's code. */
static int trial_piece(tuner_t *t, trial_t *tr, int64_t upto, double parent_loss)
{
    int64_t more = upto - tr->clocks;
    if (more <= 0)
        return 0;
    if ((size_t)upto > tr->cap) {
        tr->cap = (size_t)upto;
        tr->loss = mlt_realloc(tr->loss, tr->cap * sizeof *tr->loss);
    }
    double epc = t->ex->epoch_clocks(t->ex->ctx, &tr->s);
    double secs = 0;
    int rc = t->ex->run(t->ex->ctx, tr->id, &tr->s, tr->clocks, more,
                        tr->cursor0 + (double)tr->clocks / epc, tr->loss + tr->clocks, &secs);
    if (rc)
        return rc;
    mlt_tuner__rate_note(t, &tr->s, more, secs);
    tr->clocks = upto;
    tr->seconds += secs;
    t->res->trial_seconds += secs;
    mlt_summarize(tr->loss, (size_t)tr->clocks, parent_loss, t->start_loss, tr->seconds, &tr->sum);
    return 0;
}

/* The summary line of tr, as it stands. */
static void trial_log_summary(tuner_t *t, const trial_t *tr)
{
    char b[32];
    if (t->log) {
        fprintf(t->log,
                "{\"t\":%.3f,\"event\":\"summary\",\"branch\":%u,\"clocks\":%lld,\"seconds\":%.4f,"
                "\"slope\":%s,\"verdict\":\"%s\",\"points\":[",
                t->ex->now(t->ex->ctx), tr->id, (long long)tr->clocks, tr->seconds,
                jnum(b, tr->sum.slope), mlt_verdict_name(tr->sum.verdict));
        for (size_t i = 0; i < tr->sum.points; i++)
            fprintf(t->log, "%s%s", i ? "," : "", jnum(b, tr->sum.y[i]));
        fputs("],\"timing_dependent\":[\"t\",\"clocks\",\"seconds\",\"slope\",\"points\"]}\n", t->log);
        fflush(t->log);
    }
}

/* Runs tr until it has run `upto` clocks in all: a start (or resume) line, the
 * run, a summary line. Returns the executor's code. */
static int trial_run_to(tuner_t *t, trial_t *tr, int64_t upto, double parent_loss)
{
    if (upto <= tr->clocks)
        return 0;
    logline(t, tr->clocks ? "trial_resume" : "trial_start", tr->id,
            "\"clocks\":%lld,\"upto\":%lld", (long long)(upto - tr->clocks), (long long)upto);
    int rc = trial_piece(t, tr, upto, parent_loss);
    if (!rc)
        trial_log_summary(t, tr);
    return rc;
}

/* The cap of the trial time: one epoch at the job's default batch size,
 * whose rate the starting-loss run measured (an epoch at a trial's own batch
 * size would let a first trial at batch 512 cut every trial to a twelfth of
 * the time one at 32 needs for its epoch); else one epoch of trial tr, which
 * takes epc clocks. */
static double epoch_seconds(const tuner_t *t, const trial_t *tr, double epc)
{
    mlt_setting_t def;
    mlt_setting_defaults(t->job, &def);
    bool sure;
    double per = rate_estimate(t, &def, &sure);
    if (sure && per > 0)
        return per * t->ex->epoch_clocks(t->ex->ctx, &def);
    return tr->clocks > 0 ? epc * tr->seconds / (double)tr->clocks : 0;
}

/* Runs tr until it has run T seconds in all (within 3%, whole clocks): the
 * clocks for the rest come from its own rate, or, before it has run, from the
 * rate measured at its batch size (only half of an estimate scaled from
 * another batch size, whose per-clock overhead differs: a trial may run
 * short by a piece, never long by much). Stops early on divergence. */
static int trial_run_for(tuner_t *t, trial_t *tr, double T, double parent_loss)
{
    if (tr->seconds >= 0.97 * T)
        return 0;
    logline(t, tr->clocks ? "trial_resume" : "trial_start", tr->id,
            "\"seconds\":%.4f,\"timing_dependent\":[\"t\",\"seconds\"]", T);
    for (int piece = 0; piece < 8 && tr->seconds < 0.97 * T; piece++) {
        bool sure = true;
        double per = tr->clocks > 0 && tr->seconds > 0 ? tr->seconds / (double)tr->clocks
                                                       : rate_estimate(t, &tr->s, &sure);
        double want = per > 0 ? floor((T - tr->seconds) / per * (sure ? 1.0 : 0.5) + 0.5)
                              : (double)t->job->tuner.min_trial_clocks;
        int64_t more = want < 1 ? 1 : want > 1e9 ? (int64_t)1e9 : (int64_t)want;
        int rc = trial_piece(t, tr, tr->clocks + more, parent_loss);
        if (rc)
            return rc;
        if (tr->sum.verdict == MLT_VERDICT_DIVERGED)
            break;
    }
    trial_log_summary(t, tr);
    return 0;
}

int mlt_tuner__trial_kill(tuner_t *t, trial_t *tr, const char *reason)
{
    if (!tr->alive)
        return 0;
    tr->alive = false;
    logline(t, "free", tr->id, "\"reason\":\"%s\"", reason);
    return t->ex->free(t->ex->ctx, tr->id);
}

/* slope for the searcher: diverged is the worst */
static double trial_y(const trial_t *tr)
{
    return tr->sum.verdict == MLT_VERDICT_DIVERGED ? INFINITY : tr->sum.slope;
}

static int cmp_double(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return x < y ? -1 : x > y;
}

/* true when the best top_k converging slopes agree within slope_agree */
static bool slopes_agree(const tuner_t *t, const trial_t *trials, uint32_t n)
{
    int k = t->job->tuner.top_k;
    double v[256];
    uint32_t m = 0;
    for (uint32_t i = 0; i < n && m < 256; i++)
        if (trials[i].observed && trials[i].sum.verdict == MLT_VERDICT_CONVERGING)
            v[m++] = trials[i].sum.slope;
    if ((int)m < k)
        return false;
    qsort(v, m, sizeof *v, cmp_double);
    double best = v[0], kth = v[k - 1];
    return fabs(kth - best) <= t->job->tuner.slope_agree * fabs(best);
}

/* One search from `parent` (whose latest loss is parent_loss and data cursor
 * cursor). Sets *winner (the trial index) or returns -1 if every trial
 * diverged. max_trials: the stop on count; budget_s: seconds the search may
 * spend (INFINITY: no bound). incumbent: a setting to try first (re-tunes),
 * or NULL. */
int mlt_tuner__search(tuner_t *t, mlt_search_t *se, uint32_t parent, double parent_loss,
                      double cursor, uint32_t max_trials, double budget_s,
                      const mlt_setting_t *incumbent, trial_t **trials_out, uint32_t *n_out,
                      int *winner)
{
    trial_t *trials = mlt_calloc(max_trials + 1, sizeof *trials);
    uint32_t n = 0;
    int rc = 0;
    double t_begin = t->ex->now(t->ex->ctx), spent0 = t->res->trial_seconds;
    /* The trial time is settled anew by every search (MLtuner decides it per
     * tuning stage): later in training the loss falls more slowly, and a
     * trial time that showed convergence at the start shows only noise. A
     * re-tune starts from the last one and doubles it as the first search did. */
    bool establishing = t->trial_time == 0 || incumbent != NULL, stopped = false;
    /* seconds; at first, the time min_trial_clocks take at the default
     * setting (the starting-loss run measured it) */
    double T = t->trial_time;
    if (T == 0) {
        mlt_setting_t def;
        mlt_setting_defaults(t->job, &def);
        bool sure;
        double per = rate_estimate(t, &def, &sure);
        T = sure ? per * (double)t->job->tuner.min_trial_clocks : 0;
        double epc = t->ex->epoch_clocks(t->ex->ctx, &def);
        if (sure && T > per * epc) /* at most an epoch, as ever */
            T = per * epc;
    }
    *winner = -1;
    while (n < max_trials) {
        trial_t *tr = &trials[n];
        bool dup = false;
        if (n == 0 && incumbent) {
            tr->s = *incumbent;
            mlt_space_from_setting(&t->sp, incumbent, tr->x);
        } else {
            if ((rc = mlt_search_propose(se, tr->x, &dup)) < 0) {
                snprintf(t->res->reason, sizeof t->res->reason, "searcher failed: %d", rc);
                rc = -1;
                break;
            }
            mlt_space_to_setting(&t->sp, incumbent ? incumbent : &t->train_s, tr->x, &tr->s);
        }
        if (dup) {
            /* the searcher proposed a setting it has seen: reuse that result */
            for (uint32_t i = 0; i < n; i++) {
                if (memcmp(trials[i].x, tr->x, t->sp.d * sizeof(double)) == 0 && trials[i].observed) {
                    mlt_search_observe(se, tr->x, trial_y(&trials[i]));
                    mlt_tuner__log_setting(
                        t, "propose", trials[i].id, &tr->s, "\"dup\":true",
                        "the searcher proposed an earlier setting: its result is reused");
                    break;
                }
            }
            if (t->ex->now(t->ex->ctx) - t_begin > budget_s)
                break;
            continue;
        }
        tr->id = t->next_id++;
        tr->cursor0 = cursor;
        tr->alive = true;
        mlt_tuner__log_setting(t, "propose", tr->id, &tr->s, NULL,
                               n == 0 && incumbent ? "the current setting, as a trial"
                                                   : "searcher proposal");
        logline(t, "fork", tr->id, "\"parent\":%u,\"kind\":\"trial\"", parent);
        if ((rc = t->ex->fork(t->ex->ctx, tr->id, parent, BRANCH_KIND_TRAIN, &tr->s)))
            break;
        n++;
        double epc = t->ex->epoch_clocks(t->ex->ctx, &tr->s);
        if (T > 0) {
            rc = trial_run_for(t, tr, T, parent_loss);
        } else {
            int64_t c0 = t->job->tuner.min_trial_clocks;
            rc = trial_run_to(t, tr, c0 < epc ? c0 : (int64_t)(epc > 1 ? epc : 1), parent_loss);
            if (!rc && tr->sum.verdict != MLT_VERDICT_DIVERGED)
                T = tr->seconds; /* a diverged trial says nothing of the time needed */
        }
        if (rc)
            break;
        if (tr->sum.verdict == MLT_VERDICT_DIVERGED &&
            (rc = mlt_tuner__trial_kill(t, tr, "diverged")))
            break;
        if (establishing && T > 0) {
            /* double the trial time, resuming the survivors in turn, until a
             * trial converges or the trial time reaches an epoch; with no
             * survivor (the trials so far diverged) the next trial runs the
             * same time */
            double cap = epoch_seconds(t, tr, epc);
            bool any = false, alive = false;
            for (uint32_t i = 0; i < n; i++) {
                any |= trials[i].sum.verdict == MLT_VERDICT_CONVERGING;
                alive |= trials[i].alive;
            }
            /* the time doubles only when no trial of two or more converges:
             * one bad setting (or, in a re-tune, the current one) alone
             * would spend the search on itself */
            bool rival = n >= 2;
            while (!any && alive && rival && T < cap) {
                T = 2 * T < cap ? 2 * T : cap;
                logline(t, "trial_time", parent, "\"seconds\":%.4f,\"reason\":\"no trial converges "
                        "yet: doubled\",\"timing_dependent\":[\"t\",\"seconds\"]", T);
                alive = false;
                for (uint32_t i = 0; i < n && !rc; i++) {
                    if (!trials[i].alive)
                        continue;
                    rc = trial_run_for(t, &trials[i], T, parent_loss);
                    if (!rc && trials[i].sum.verdict == MLT_VERDICT_DIVERGED)
                        rc = mlt_tuner__trial_kill(t, &trials[i], "diverged");
                    any |= trials[i].sum.verdict == MLT_VERDICT_CONVERGING;
                    alive |= trials[i].alive;
                }
                if (rc)
                    break;
            }
            if (rc)
                break;
            if (any || (alive && T >= cap)) {
                establishing = false;
                t->trial_time = T;
                logline(t, "trial_time", parent, "\"seconds\":%.4f,\"reason\":\"%s\","
                        "\"timing_dependent\":[\"t\",\"seconds\"]", T,
                        any ? "a trial converges at this trial time: kept from now on"
                            : "one epoch reached: kept from now on");
            }
        }
        if (!establishing) {
            /* the searcher hears every trial once its trial time is settled */
            for (uint32_t i = 0; i < n; i++) {
                if (trials[i].observed)
                    continue;
                trials[i].observed = true;
                char b[32];
                mlt_search_observe(se, trials[i].x, trial_y(&trials[i]));
                logline(t, "observe", trials[i].id, "\"slope\":%s,\"verdict\":\"%s\"",
                        jnum(b, trial_y(&trials[i])), mlt_verdict_name(trials[i].sum.verdict));
            }
            if (slopes_agree(t, trials, n)) {
                stopped = true;
                logline(t, "search_stop", parent, "\"reason\":\"the best %d slopes agree within %g\"",
                        t->job->tuner.top_k, t->job->tuner.slope_agree);
                break;
            }
            /* an addition to the paper's rule: a search whose best slope has not
             * improved for 2 x top_k trials has stopped finding anything */
            uint32_t stale = 2u * (uint32_t)t->job->tuner.top_k, best_at = 0;
            double best_y = INFINITY;
            for (uint32_t i = 0; i < n; i++)
                if (trials[i].observed && trials[i].sum.verdict == MLT_VERDICT_CONVERGING &&
                    trials[i].sum.slope < best_y) {
                    best_y = trials[i].sum.slope;
                    best_at = i;
                }
            if (isfinite(best_y) && n >= 2 * stale && n - 1 - best_at >= stale) {
                stopped = true;
                logline(t, "search_stop", parent,
                        "\"reason\":\"no better slope in the last %u trials\"", stale);
                break;
            }
        }
        if (t->res->trial_seconds - spent0 > budget_s) {
            stopped = true;
            logline(t, "search_stop", parent, "\"reason\":\"tuning overhead budget spent\"");
            break;
        }
        if (t->ex->progress)
            t->ex->progress(t->ex->ctx, "searching", tr->id, &tr->s, t->epoch, NAN, NAN, n);
    }
    if (n >= max_trials && !stopped)
        logline(t, "search_stop", parent, "\"reason\":\"%u trials, the limit\"", max_trials);
    t->res->trials += n;
    /* the winner: best converging slope, else best non-diverged */
    double best = INFINITY;
    for (int pass = 0; pass < 2 && *winner < 0 && !rc; pass++)
        for (uint32_t i = 0; i < n; i++) {
            const trial_t *tr = &trials[i];
            if (!tr->alive || (pass == 0 && tr->sum.verdict != MLT_VERDICT_CONVERGING))
                continue;
            if (*winner < 0 || tr->sum.slope < best) {
                best = tr->sum.slope;
                *winner = (int)i;
            }
        }
    t->last_search_s = t->ex->now(t->ex->ctx) - t_begin;
    *trials_out = trials;
    *n_out = n;
    return rc;
}

/* ---- re-tunes ------------------------------------------------------------------ *
 * Late in training a trial's loss falls by less than its mini-batch noise in
 * any affordable trial time, so slopes and verdicts (nearly all "unstable")
 * cannot tell settings apart. But every trial of a re-tune starts from the
 * same point and runs the same time as the current setting's own trial (trial
 * 0): their block means pair up, same share of the time, and the same data
 * when the batch size is the same. A trial beats the current setting when the
 * mean of its paired differences is below zero by more than PAIRED_T of its
 * standard errors; the one with the lowest mean wins, else the current
 * setting goes on. */

#define PAIRED_T 2.5

/* mean and t statistic of b's block means minus a's (the fork point left out) */
static bool paired(const trial_t *a, const trial_t *b, double *mean, double *tstat)
{
    size_t m = (a->sum.points < b->sum.points ? a->sum.points : b->sum.points);
    if (m < 4)
        return false;
    double s = 0, ss = 0;
    for (size_t i = 1; i < m; i++)
        s += b->sum.y[i] - a->sum.y[i];
    *mean = s / (double)(m - 1);
    for (size_t i = 1; i < m; i++) {
        double d = b->sum.y[i] - a->sum.y[i] - *mean;
        ss += d * d;
    }
    double se = sqrt(ss / (double)(m - 2) / (double)(m - 1));
    *tstat = se > 0 ? *mean / se : (*mean < 0 ? -INFINITY : 0);
    return true;
}

int mlt_tuner__retune_winner(const trial_t *trials, uint32_t n, char *reason, size_t cap)
{
    int w = 0;
    double best = 0, best_t = 0;
    for (uint32_t i = 1; i < n; i++) {
        const trial_t *tr = &trials[i];
        double mean, ts;
        if (!tr->alive || tr->sum.verdict == MLT_VERDICT_DIVERGED ||
            !paired(&trials[0], tr, &mean, &ts))
            continue;
        if (ts < -PAIRED_T && mean < best) {
            best = mean;
            best_t = ts;
            w = (int)i;
        }
    }
    if (w)
        snprintf(reason, cap, "lower loss than the current setting from the same point: "
                 "%.4g per block mean, t = %.3g", best, best_t);
    else
        snprintf(reason, cap, "no trial of the re-tune has a lower loss than the current "
                 "setting (paired t < -%g): the current setting goes on", PAIRED_T);
    return w;
}
