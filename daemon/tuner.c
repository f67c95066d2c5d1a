/* tuner.c - see tuner.h for the algorithm. */
#include "daemon/tuner.h"

#include <math.h>
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>

#include "common/alloc.h"
#include "common/rng.h"
#include "daemon/declog.h"
#include "daemon/searcher.h"
#include "daemon/summary.h"
#include "daemon/tuner_base.h"

#define MAX_TRIALS_FIRST 30 /* hard cap on the first search's trials */
#define MAX_ROLLBACKS 3     /* diverged training branches recovered from, at most */
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
    mlt_tunable_t dims[MLT_JOB_MAX_TUNABLES]; /* the tuned tunables */
    uint32_t dim_of[MLT_JOB_MAX_TUNABLES];    /* dims[k] is job->tunables[dim_of[k]] */
    uint32_t d;
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

void mlt_setting_json(const mlt_job_t *job, const mlt_setting_t *s, FILE *f)
{
    fputc('{', f);
    for (uint32_t i = 0; i < job->n_tunables; i++)
        fprintf(f, "%s\"%s\":%.6g", i ? "," : "", job->tunables[i].name, s->v[i]);
    fputc('}', f);
}

static void log_setting(tuner_t *t, const char *event, uint32_t branch, const mlt_setting_t *s,
                        const char *extra, const char *reason)
{
    mlt_declog_setting(t->log, t->ex->now(t->ex->ctx), event, branch, t->job, s, extra, reason);
}

/* ---- settings ------------------------------------------------------------------ */

void mlt_setting_defaults(const mlt_job_t *job, mlt_setting_t *s)
{
    memset(s, 0, sizeof *s);
    for (uint32_t i = 0; i < job->n_tunables; i++)
        s->v[i] = job->tunables[i].def;
}

double mlt_setting_get(const mlt_job_t *job, const mlt_setting_t *s, const char *name,
                       double fallback)
{
    for (uint32_t i = 0; i < job->n_tunables; i++)
        if (strcmp(job->tunables[i].name, name) == 0)
            return s->v[i];
    return fallback;
}

/* setting = base with the tuned dims taken from x */
static void setting_from_x(const tuner_t *t, const mlt_setting_t *base, const double *x,
                           mlt_setting_t *s)
{
    *s = *base;
    for (uint32_t k = 0; k < t->d; k++)
        s->v[t->dim_of[k]] = x[k];
}

static void x_from_setting(const tuner_t *t, const mlt_setting_t *s, double *x)
{
    for (uint32_t k = 0; k < t->d; k++)
        x[k] = s->v[t->dim_of[k]];
}

/* ---- trials -------------------------------------------------------------------- */

static void trial_free_mem(trial_t *tr)
{
    mlt_free(tr->loss);
    tr->loss = NULL;
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

static void rate_note(tuner_t *t, const mlt_setting_t *s, int64_t clocks, double seconds)
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
    rate_note(t, &tr->s, more, secs);
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

static int trial_kill(tuner_t *t, trial_t *tr, const char *reason)
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
static int search(tuner_t *t, mlt_search_t *se, uint32_t parent, double parent_loss,
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
            x_from_setting(t, incumbent, tr->x);
        } else {
            if ((rc = mlt_search_propose(se, tr->x, &dup)) < 0) {
                snprintf(t->res->reason, sizeof t->res->reason, "searcher failed: %d", rc);
                rc = -1;
                break;
            }
            setting_from_x(t, incumbent ? incumbent : &t->train_s, tr->x, &tr->s);
        }
        if (dup) {
            /* the searcher proposed a setting it has seen: reuse that result */
            for (uint32_t i = 0; i < n; i++) {
                if (memcmp(trials[i].x, tr->x, t->d * sizeof(double)) == 0 && trials[i].observed) {
                    mlt_search_observe(se, tr->x, trial_y(&trials[i]));
                    log_setting(t, "propose", trials[i].id, &tr->s, "\"dup\":true",
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
        log_setting(t, "propose", tr->id, &tr->s, NULL, n == 0 && incumbent ? "the current setting, as a trial" : "searcher proposal");
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
        if (tr->sum.verdict == MLT_VERDICT_DIVERGED && (rc = trial_kill(t, tr, "diverged")))
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
                        rc = trial_kill(t, &trials[i], "diverged");
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
            rc = trial_kill(t, &trials[i], "not the winner");
    if (rc)
        return rc;
    trial_t *w = &trials[winner];
    char extra[96];
    char b[32];
    snprintf(extra, sizeof extra, "\"slope\":%s,\"verdict\":\"%s\"", jnum(b, w->sum.slope),
             mlt_verdict_name(w->sum.verdict));
    log_setting(t, "commit", w->id, &w->s, extra, reason);
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

static void free_trials(trial_t *trials, uint32_t n)
{
    for (uint32_t i = 0; i < n; i++)
        trial_free_mem(&trials[i]);
    mlt_free(trials);
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

static int retune_winner(const trial_t *trials, uint32_t n, char *reason, size_t cap)
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
        rate_note(t, &s, clocks - half, secs);
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
        x_from_setting(t, center, c);
    return mlt_search_new(kind, t->dims, t->d, mlt_rng_mix((uint64_t)t->job->seed, tag),
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
    if (t->d == 0 || !t->good || (diverged && ++t->rollbacks > MAX_ROLLBACKS)) {
        snprintf(res->reason, sizeof res->reason, "the training branch diverged (%s)%s", what,
                 t->d == 0 ? "; nothing is tuned, so there is nothing to change"
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
    for (uint32_t k = 0; k < t->d; k++) {
        mlt_tunable_t *dm = &t->dims[k];
        double lr = bad.v[t->dim_of[k]];
        if (strcmp(dm->name, "lr") == 0 && dm->kind != MLT_TUNABLE_DISCRETE && lr / 2 > dm->min) {
            dm->max = lr / 2 < dm->max ? lr / 2 : dm->max;
            if (dm->def > dm->max)
                dm->def = dm->max;
            center.v[t->dim_of[k]] = dm->max;
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
        x_from_setting(t, &bad, xb);
        mlt_search_observe(se, xb, INFINITY); /* never propose it again */
    }
    trial_t *trials = NULL;
    uint32_t n = 0;
    int winner = -1;
    uint32_t max_trials = t->last_trials < 4 * t->d ? t->last_trials : 4 * t->d;
    if (max_trials < 2 * t->d)
        max_trials = 2 * t->d;
    rc = search(t, se, t->good, t->good_loss, t->good_cursor, max_trials, INFINITY, NULL, &trials,
                &n, &winner);
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
    free_trials(trials, n);
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
            t->dims[t->d] = job->tunables[i];
            t->dim_of[t->d++] = i;
        }
    mlt_setting_defaults(job, &t->train_s);
    if (job->tuner.logic == MLT_LOGIC_TTC || job->tuner.logic == MLT_LOGIC_HYPERBAND)
        return mlt_tuner_baseline(job, ex, init_branch, log, res);
    int rc = 0;
    t->start_loss = t->last_loss = NAN;
    if (t->d > 0 && (rc = starting_loss(t, init_branch))) /* the divergence reference */
        return rc < 0 ? -1 : 0;

    if (t->d == 0) {
        /* nothing to tune: train the defaults */
        uint32_t id = t->next_id++;
        logline(t, "fork", id, "\"parent\":%u,\"kind\":\"train\"", init_branch);
        if ((rc = ex->fork(ex->ctx, id, init_branch, BRANCH_KIND_TRAIN, &t->train_s)))
            return rc < 0 ? -1 : 0;
        log_setting(t, "commit", id, &t->train_s, NULL,
                    tuning ? "no tunable is marked tune = true" : "fixed tunables (tuner.logic = fixed)");
        t->train = id;
        res->searches = 0;
    } else {
        mlt_search_t *se = new_searcher(t, job->tuner.searcher, NULL, 1);
        trial_t *trials = NULL;
        uint32_t n = 0;
        int winner = -1;
        rc = search(t, se, init_branch, t->start_loss, 0.0, MAX_TRIALS_FIRST, INFINITY, NULL,
                    &trials, &n, &winner);
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
        free_trials(trials, n);
        if (rc)
            return rc < 0 ? -1 : 0;
    }

    /* train, test, re-tune */
    double interval = job->test_interval;
    int no_gain = 0, retunes_without_gain = 0;
    bool converged = !tuning || t->d == 0;
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
            rate_note(t, &t->train_s, clocks, secs);
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
        if (diverged || (t->d > 0 && regressed(t, val) && t->regressions++ < MAX_ROLLBACKS)) {
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
        if (t->d > 0 && (rc = snapshot_take(t, val, test, "tested")))
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
        rc = search(t, se, parent, t->last_loss, t->cursor,
                    t->last_trials > 2 ? t->last_trials : 2, budget, &t->train_s, &trials, &n,
                    &winner);
        mlt_search_destroy(&se);
        if (rc) {
            free_trials(trials, n);
            return rc < 0 ? -1 : 0;
        }
        if (winner < 0) {
            /* every trial diverged: keep training the parent */
            for (uint32_t i = 0; i < n; i++)
                trial_kill(t, &trials[i], "re-tune found nothing better");
            retunes_without_gain++;
        } else {
            char reason[160] = "the best trial of the re-tune";
            if (n > 0 && trials[0].alive && trials[0].sum.verdict != MLT_VERDICT_DIVERGED)
                winner = retune_winner(trials, n, reason, sizeof reason);
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
        free_trials(trials, n);
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
