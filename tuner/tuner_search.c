/* tuner_search.c - one search of the tuner (mlt_tuner__search): its trials
 * and the pieces they run in, their scores, the cut on divergence, the
 * searcher's extra proposals and successive halving; see tuner.h.
 *
 * A search, from a parent branch at one data cursor:
 *
 *   design trials --run T each--> score, observe --+
 *        ^                                          |
 *        +-- searcher proposal <-- expected gain ---+  (while the searcher
 *                                                      expects enough and
 *                                                      the budget lasts)
 *   halving: keep the better half by score, double T, resume them, until one
 *   is left: the winner (its trial time becomes training when committed).
 *
 * Every trial of a rung runs the same wall time T, whatever its batch size:
 * the score is the loss a setting reaches in that time (mlt_score: the mean
 * of its last third of clocks, with a standard error), which is what a user
 * waiting for a target cares about. A trial runs in pieces, the first a
 * quarter of T, and is cut the moment it diverges (CUT_RISE). */
#include "tuner/tuner.h"

#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common/alloc.h"
#include "tuner/declog.h"
#include "tuner/searcher.h"
#include "tuner/summary.h"
#include "tuner/tuner_int.h"

#define FIRST_PIECE 0.25 /* the first piece of a trial: this share of its time */
#define MAX_PIECES 6     /* pieces per run_for, at most */
#define MAX_DUPS 3       /* duplicate proposals in a row end the searcher's extras */
#define SEPARATE 2.0     /* halving ends when the best leads by this many standard errors */

static double sq(double x)
{
    return x * x;
}

/* ---- trials -------------------------------------------------------------------- */

void mlt_tuner__free_trials(trial_t *trials, uint32_t n)
{
    for (uint32_t i = 0; i < n; i++)
        mlt_free(trials[i].loss);
    mlt_free(trials);
}

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
double mlt_tuner__rate(const tuner_t *t, const mlt_setting_t *s, bool *sure)
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

/* true (the trial is cut) when its latest losses say it diverges */
static bool diverging(const tuner_t *t, const trial_t *tr, double fork_loss)
{
    if (tr->clocks == 0)
        return false;
    int64_t k = tr->clocks < CUT_WINDOW ? tr->clocks : CUT_WINDOW;
    double sum = 0;
    for (int64_t i = tr->clocks - k; i < tr->clocks; i++) {
        if (!isfinite(tr->loss[i]))
            return true;
        sum += tr->loss[i];
    }
    double level = CUT_RISE * fork_loss;
    if (isfinite(t->start_loss) && t->start_loss > fork_loss) {
        double back = fork_loss + 0.5 * (t->start_loss - fork_loss);
        level = back > level ? back : level;
    }
    return isfinite(fork_loss) && fork_loss > 0 && sum / (double)k > level;
}

/* Runs `more` clocks of tr, summarises and scores it, without logging; cuts
 * it (tr->cut) when it diverges. Returns the executor's code. */
static int trial_piece(tuner_t *t, trial_t *tr, int64_t more, double fork_loss)
{
    if (more <= 0)
        return 0;
    int64_t upto = tr->clocks + more;
    if ((size_t)upto > tr->cap) {
        tr->cap = (size_t)upto * 2;
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
    mlt_summarize(tr->loss, (size_t)tr->clocks, fork_loss, t->start_loss, tr->seconds, &tr->sum);
    tr->score = mlt_score(tr->loss, (size_t)tr->clocks, &tr->se);
    if (diverging(t, tr, fork_loss)) {
        tr->cut = true;
        tr->score = INFINITY;
        tr->sum.verdict = MLT_VERDICT_DIVERGED;
        tr->sum.slope = INFINITY;
    }
    return 0;
}

/* The summary line of tr, as it stands. */
static void trial_log_summary(tuner_t *t, const trial_t *tr)
{
    if (!t->log)
        return;
    mlt_json_t j;
    mlt_tuner__log_begin(t, &j, "summary", tr->id);
    mlt_json_int(&j, "clocks", tr->clocks);
    mlt_json_fixed(&j, "seconds", tr->seconds, 4);
    mlt_json_num(&j, "score", tr->score);
    mlt_json_num(&j, "se", tr->se);
    mlt_json_num(&j, "slope", tr->sum.slope);
    mlt_json_str(&j, "verdict", mlt_verdict_name(tr->sum.verdict));
    mlt_json_arr(&j, "points");
    for (size_t i = 0; i < tr->sum.points; i++)
        mlt_json_num(&j, NULL, tr->sum.y[i]);
    mlt_json_end(&j);
    mlt_declog_timing(&j, "t", "clocks", "seconds", "score", "se", "slope", "points", (char *)NULL);
    mlt_tuner__log_end(t, &j);
}

int mlt_tuner__trial_kill(tuner_t *t, trial_t *tr, const char *reason)
{
    if (!tr->alive)
        return 0;
    tr->alive = false;
    mlt_tuner__log_reason(t, "free", tr->id, "%s", reason);
    return t->ex->free(t->ex->ctx, tr->id);
}

/* Forks trial tr from parent with setting s (a "propose" line with why, and
 * a "fork" line). Returns the executor's code. */
int mlt_tuner__trial_fork(tuner_t *t, trial_t *tr, const mlt_setting_t *s, uint32_t parent,
                          double cursor, const char *why)
{
    tr->id = t->next_id++;
    tr->s = *s;
    mlt_tuner__from_setting(t, s, tr->x);
    tr->cursor0 = cursor;
    tr->score = INFINITY;
    tr->se = NAN;
    mlt_tuner__log_setting(t, "propose", tr->id, &tr->s, why);
    mlt_tuner__log_fork(t, tr->id, parent, "trial");
    int rc = t->ex->fork(t->ex->ctx, tr->id, parent, MLT_BRANCH_TRAIN, &tr->s);
    tr->alive = rc == 0;
    return rc;
}

/* Runs tr until it has run T seconds in all (within 3%, whole clocks), the
 * first piece FIRST_PIECE of T; the clocks of a piece come from its own rate,
 * or before it has run from the rate measured at its batch size (half of an
 * estimate scaled from another batch size, whose per-clock overhead differs).
 * Stops at a cut. Logs a start (or resume) and a summary line. */
int mlt_tuner__trial_run_for(tuner_t *t, trial_t *tr, double T, double fork_loss)
{
    if (tr->cut || tr->seconds >= 0.97 * T)
        return 0;
    mlt_json_t j;
    mlt_tuner__log_begin(t, &j, tr->clocks ? "trial_resume" : "trial_start", tr->id);
    mlt_json_fixed(&j, "seconds", T, 4);
    mlt_declog_timing(&j, "t", "seconds", (char *)NULL);
    mlt_tuner__log_end(t, &j);
    for (int piece = 0; piece < MAX_PIECES && tr->seconds < 0.97 * T && !tr->cut; piece++) {
        bool sure = true;
        double per = tr->clocks > 0 && tr->seconds > 0 ? tr->seconds / (double)tr->clocks
                                                       : mlt_tuner__rate(t, &tr->s, &sure);
        double goal = tr->clocks == 0 ? FIRST_PIECE * T : T - tr->seconds;
        double want = per > 0 ? floor(goal / per * (sure ? 1.0 : 0.5) + 0.5)
                              : (double)t->job->tuner.min_trial_clocks;
        int64_t more = want < 1 ? 1 : want > 1e9 ? (int64_t)1e9 : (int64_t)want;
        int rc = trial_piece(t, tr, more, fork_loss);
        if (rc)
            return rc;
    }
    trial_log_summary(t, tr);
    return 0;
}

/* Runs exactly `clocks` more clocks of tr in two pieces (a quarter first),
 * stopping at a cut. Logs a start (or resume) and a summary line. */
int mlt_tuner__trial_run_clocks(tuner_t *t, trial_t *tr, int64_t clocks, double fork_loss)
{
    if (tr->cut || clocks <= 0)
        return 0;
    mlt_json_t j;
    mlt_tuner__log_begin(t, &j, tr->clocks ? "trial_resume" : "trial_start", tr->id);
    mlt_json_int(&j, "clocks", clocks);
    mlt_tuner__log_end(t, &j);
    int64_t first = (int64_t)(FIRST_PIECE * (double)clocks);
    int rc = trial_piece(t, tr, first, fork_loss);
    if (!rc && !tr->cut)
        rc = trial_piece(t, tr, clocks - first, fork_loss);
    trial_log_summary(t, tr);
    return rc;
}

/* The winner's trial time was training of the lineage, not overhead. */
void mlt_tuner__trial_kept(tuner_t *t, const trial_t *tr)
{
    t->res->trial_seconds -= tr->seconds;
    t->res->train_seconds += tr->seconds;
}

/* The cap of a trial's time: one epoch at the job's default batch size, whose
 * rate the start measured (an epoch at a trial's own batch size would let a
 * first trial at batch 512 cut every trial to a twelfth of the time one at 32
 * needs for its epoch). */
static double epoch_seconds(const tuner_t *t)
{
    mlt_setting_t def;
    mlt_setting_defaults(t->job, &def);
    bool sure;
    double per = mlt_tuner__rate(t, &def, &sure);
    return per > 0 ? per * t->ex->epoch_clocks(t->ex->ctx, &def) : INFINITY;
}

/* the value the searcher hears for a trial: its score; a cut trial is the worst */
static double trial_y(const trial_t *tr)
{
    return tr->cut ? INFINITY : tr->score;
}

static void observe(tuner_t *t, mlt_search_t *se, trial_t *tr)
{
    if (tr->observed || !se)
        return;
    tr->observed = true;
    mlt_search_observe(se, tr->x, trial_y(tr));
    mlt_json_t j;
    mlt_tuner__log_begin(t, &j, "observe", tr->id);
    mlt_json_num(&j, "score", trial_y(tr));
    mlt_json_num(&j, "se", tr->se);
    mlt_json_str(&j, "verdict", mlt_verdict_name(tr->sum.verdict));
    mlt_tuner__log_end(t, &j);
}

/* index of the best (lowest score) live, uncut trial; -1 if none */
static int best_trial(const trial_t *trials, uint32_t n)
{
    int w = -1;
    for (uint32_t i = 0; i < n; i++)
        if (trials[i].alive && !trials[i].cut && (w < 0 || trials[i].score < trials[w].score))
            w = (int)i;
    return w;
}

/* true when some live trial's score is below the fork's loss by more than
 * SEPARATE standard errors: a search whose trials all stay within their
 * noise of where they started (matrix factorisation's loss sits flat for
 * epochs from small factors) has learnt nothing about its settings */
static bool any_moved(const trial_t *trials, uint32_t n, double fork_loss)
{
    for (uint32_t i = 0; i < n; i++) {
        const trial_t *tr = &trials[i];
        if (tr->alive && !tr->cut && isfinite(tr->se) &&
            fork_loss - tr->score > SEPARATE * tr->se)
            return true;
    }
    return false;
}

/* Forks trial tr; when the shards refuse it for memory (-ENOMEM: memory_limit
 * holds fewer trial branches than the search has run), frees the live trial
 * of trials[0, n) with the worst score (its score is known and observed; it
 * only leaves the later rungs) and forks again, so a small memory_limit runs
 * fewer trials at once instead of failing the job. With no live trial left to
 * free it fails (-1), saying why in the result. */
static int fork_within_memory(tuner_t *t, trial_t *trials, uint32_t n, trial_t *tr,
                              const mlt_setting_t *s, uint32_t parent, double cursor,
                              const char *why)
{
    int rc = mlt_tuner__trial_fork(t, tr, s, parent, cursor, why);
    while (rc == -ENOMEM) {
        int worst = -1;
        uint32_t live = 0;
        for (uint32_t i = 0; i < n; i++)
            if (trials[i].alive && &trials[i] != tr) {
                live++;
                if (worst < 0 || trials[i].score >= trials[worst].score)
                    worst = (int)i;
            }
        if (worst < 0) {
            snprintf(t->res->reason, sizeof t->res->reason,
                     "memory_limit leaves no room for one trial branch beside the job's other "
                     "branches (trial %u could not be forked); raise memory_limit",
                     tr->id);
            return -1;
        }
        char reason[200];
        snprintf(reason, sizeof reason,
                 "memory_limit: room for trial %u (%u trial branch%s fit%s at once)", tr->id, live,
                 live == 1 ? "" : "es", live == 1 ? "s" : "");
        if ((rc = mlt_tuner__trial_kill(t, &trials[worst], reason)))
            return rc;
        rc = t->ex->fork(t->ex->ctx, tr->id, parent, MLT_BRANCH_TRAIN, &tr->s);
        tr->alive = rc == 0;
    }
    return rc;
}

/* one trial of the search (trials[0, n) before it): forks it, runs it the
 * rung-0 time, cuts or observes */
static int search_trial(tuner_t *t, mlt_search_t *se, trial_t *trials, uint32_t n, trial_t *tr,
                        const mlt_setting_t *s, uint32_t parent, double parent_loss, double cursor,
                        double T, const char *why)
{
    int rc = fork_within_memory(t, trials, n, tr, s, parent, cursor, why);
    if (!rc)
        t->res->trials++;
    if (!rc && t->ex->progress)
        t->ex->progress(t->ex->ctx, "searching", tr->id, &tr->s, t->epoch, NAN, NAN,
                        t->res->trials);
    if (!rc)
        rc = mlt_tuner__trial_run_for(t, tr, T, parent_loss);
    if (!rc && tr->cut)
        rc = mlt_tuner__trial_kill(t, tr, "diverged: cut");
    if (!rc)
        observe(t, se, tr);
    return rc;
}

static int cmp_score(const void *a, const void *b)
{
    const trial_t *x = *(const trial_t *const *)a, *y = *(const trial_t *const *)b;
    return x->score < y->score ? -1 : x->score > y->score;
}

/* Successive halving over the live trials: keep the better half by score,
 * double the trial time (at most an epoch), resume the survivors, until one
 * is left, the best leads the second by more than SEPARATE standard errors
 * of their difference, or the next rung would overrun the budget (spent: the
 * search's lost time so far). */
static int halve(tuner_t *t, trial_t *trials, uint32_t n, uint32_t parent, double T,
                 double parent_loss, double budget_s, double spent0)
{
    trial_t **live = mlt_calloc(n ? n : 1, sizeof *live);
    int rc = 0;
    double cap = epoch_seconds(t);
    for (int rung = 1; !rc; rung++) {
        uint32_t m = 0;
        for (uint32_t i = 0; i < n; i++)
            if (trials[i].alive && !trials[i].cut)
                live[m++] = &trials[i];
        if (m <= 1)
            break;
        qsort(live, m, sizeof *live, cmp_score);
        uint32_t keep = (m + 1) / 2;
        /* the best ahead of the second beyond SEPARATE standard errors: the
         * longer rungs would only confirm it */
        double gap = live[1]->score - live[0]->score;
        double noise = sqrt(sq(live[0]->se) + sq(live[1]->se));
        bool clear = isfinite(noise) && gap > SEPARATE * noise;
        if (clear)
            keep = 1;
        for (uint32_t i = keep; i < m && !rc; i++) {
            char why[160];
            snprintf(why, sizeof why,
                     "%s: score %.6g, rank %u of %u after %.3f s (the last "
                     "kept: %.6g)",
                     clear ? "behind the best beyond noise" : "halved", live[i]->score, i + 1, m,
                     live[i]->seconds, live[keep - 1]->score);
            rc = mlt_tuner__trial_kill(t, live[i], why);
        }
        if (rc || keep == 1)
            break;
        double T2 = 2 * T < cap ? 2 * T : cap;
        double spent = t->res->trial_seconds - spent0;
        if (T2 <= T || spent + (double)keep * (T2 - T) > budget_s) {
            mlt_json_t j;
            mlt_tuner__log_begin(t, &j, "halving_stop", parent);
            mlt_json_int(&j, "rung", rung);
            mlt_json_uint(&j, "kept", keep);
            mlt_json_str(&j, "reason",
                         T2 <= T ? "the trial time is at its cap (an epoch)"
                                 : "the next rung would overrun the search's budget");
            mlt_tuner__log_end(t, &j);
            break;
        }
        T = T2;
        mlt_json_t j;
        mlt_tuner__log_begin(t, &j, "rung", parent);
        mlt_json_int(&j, "rung", rung);
        mlt_json_uint(&j, "trials", keep);
        mlt_json_fixed(&j, "seconds", T, 4);
        mlt_declog_timing(&j, "t", "seconds", (char *)NULL);
        mlt_tuner__log_end(t, &j);
        for (uint32_t i = 0; i < keep && !rc; i++) {
            rc = mlt_tuner__trial_run_for(t, live[i], T, parent_loss);
            if (!rc && live[i]->cut)
                rc = mlt_tuner__trial_kill(t, live[i], "diverged: cut");
        }
    }
    mlt_free(live);
    return rc;
}

/* One search from `parent` (whose latest loss is parent_loss and data cursor
 * cursor): the n_design settings of design, then the searcher's proposals
 * (se may be NULL: none) while it expects to gain more than
 * tuner.gain_stop x the best score, up to max_trials; then halving. The
 * design always runs; the proposals and the longer rungs only while the
 * search's lost time stays within budget_s (seconds; INFINITY: no bound). Sets
 * *winner (an index into *trials_out) or -1 when every trial diverged. */
int mlt_tuner__search(tuner_t *t, mlt_search_t *se, uint32_t parent, double parent_loss,
                      double cursor, const mlt_setting_t *design, uint32_t n_design,
                      uint32_t max_trials, double budget_s, trial_t **trials_out,
                      uint32_t *n_out, int *winner)
{
    if (max_trials < n_design)
        max_trials = n_design;
    trial_t *trials = mlt_calloc(max_trials + 1, sizeof *trials);
    uint32_t n = 0, dups = 0;
    int rc = 0;
    double spent0 = t->res->trial_seconds;
    double T = t->trial_time;
    *winner = -1;
    mlt_json_t j;
    mlt_tuner__log_begin(t, &j, "search", parent);
    mlt_json_uint(&j, "design", n_design);
    mlt_json_uint(&j, "max_trials", max_trials);
    mlt_json_fixed(&j, "seconds", T, 4);
    mlt_json_num(&j, "budget", budget_s);
    mlt_declog_timing(&j, "t", "seconds", "budget", (char *)NULL);
    mlt_tuner__log_end(t, &j);
    const char *stop = NULL;
    /* the design always runs; the budget bounds the proposals and the rungs */
    for (uint32_t i = 0; i < n_design && !rc; i++) {
        rc = search_trial(t, se, trials, n, &trials[n], &design[i], parent, parent_loss, cursor, T,
                          i == 0 ? "the design's centre" : "the design");
        n++;
    }
    while (!rc && !stop && se && n < max_trials) {
        if (t->res->trial_seconds - spent0 + T > budget_s) {
            stop = "the search's budget is spent";
            break;
        }
        trial_t *tr = &trials[n];
        bool dup = false;
        if ((rc = mlt_search_propose(se, tr->x, &dup)) < 0) {
            snprintf(t->res->reason, sizeof t->res->reason, "searcher failed: %d", rc);
            rc = -1;
            break;
        }
        if (dup) {
            if (++dups >= MAX_DUPS)
                stop = "the searcher keeps proposing settings it has seen";
            continue;
        }
        dups = 0;
        int w = best_trial(trials, n);
        double gain = mlt_search_expected_gain(se);
        double want = t->job->tuner.gain_stop * (w >= 0 ? fabs(trials[w].score) : 0);
        if (isfinite(gain) && w >= 0 && gain < want) {
            mlt_tuner__log_begin(t, &j, "search_gain", parent);
            mlt_json_num(&j, "gain", gain);
            mlt_json_num(&j, "want", want);
            mlt_tuner__log_end(t, &j);
            stop = "the searcher expects less gain than tuner.gain_stop of the best score";
            break;
        }
        mlt_setting_t s;
        mlt_tuner__to_setting(t, &design[0], tr->x, &s);
        char why[96];
        snprintf(why, sizeof why, "searcher proposal (expected gain %.6g)", gain);
        rc = search_trial(t, se, trials, n, tr, &s, parent, parent_loss, cursor, T, why);
        n++;
    }
    if (!rc && !stop && n >= max_trials)
        stop = "tuner.max_trials reached";
    if (!rc) {
        mlt_tuner__log_begin(t, &j, "search_stop", parent);
        mlt_json_uint(&j, "trials", n);
        mlt_json_str(&j, "reason", stop ? stop : "design done");
        mlt_tuner__log_end(t, &j);
    }
    if (!rc && !any_moved(trials, n, parent_loss) && n > 0 && trials[0].alive &&
        !trials[0].cut) {
        /* no evidence either way: the design's centre (the range test's rate,
         * or the default) goes on rather than the luckiest draw of the noise */
        for (uint32_t i = 1; i < n && !rc; i++)
            rc = mlt_tuner__trial_kill(t, &trials[i], "no trial moved the loss beyond its noise: "
                                                      "the design's centre goes on");
    } else if (!rc) {
        rc = halve(t, trials, n, parent, T, parent_loss, budget_s, spent0);
    }
    if (!rc)
        *winner = best_trial(trials, n);
    *trials_out = trials;
    *n_out = n;
    return rc;
}
