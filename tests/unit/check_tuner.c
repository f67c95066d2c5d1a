/* check_tuner.c - Check suite for tuner/tuner: the REAL mlt_tuner_run driven
 * by a scripted executor (no sockets, no workers).
 *
 * The executor keeps a virtual clock and, per branch, a synthetic model: a
 * training progress q (loss = L_MIN + (L_0 - L_MIN) e^-q, accuracy rising with
 * q), its clock, data cursor and the epochs trained along its lineage. A fork
 * copies the parent's state and records the setting; a run advances q by a
 * rate that peaks at lr = LR_OPT and falls off with the distance in log(lr),
 * helped by momentum, with per-clock noise keyed by the data position (so
 * trials that see the same data see the same noise); lr >= LR_BOOM explodes
 * to +Inf, lr >= LR_NAN gives NaN; script.late_lr makes a branch turn NaN
 * late, once it has run script.late_age clocks, at lr >= late_lr (or, with
 * script.late_regress, unlearn: its accuracy falls). Each clock costs virtual seconds that grow
 * with the batch size; an epoch is 100 x 128 / batch_size clocks.
 *
 * The executor asserts the branch contract on every call: nothing runs,
 * forks from or is freed after being freed (or before being forked), no id
 * is reused, a run continues its branch's clock and data cursor with the
 * setting of its fork, tests run on test branches only. At the end only the
 * training branch (and the caller's init branch) may be live.
 *
 * The decision log goes to a tmpfile; every line is checked to be one JSON
 * object starting with "t", "event", "branch", and the tests read the
 * decisions back from it. CHECK_TUNER_DUMP=1 in the environment prints each
 * run's log to stderr.
 *
 * TCases: "search" (picks the best, trial-time doubling, diverging and NaN
 * trials), "retune" (plateau, convergence, data cursor), "stop" (target
 * accuracy, max_epochs, fixed logic), "replay" (determinism), "baselines"
 * (train-to-completion and hyperband, tuner_base.c).
 *
 * The suite's files: this one ("search", "stop", "replay", the suite),
 * check_tuner_retune.c ("retune"), check_tuner_baselines.c ("baselines"),
 * check_tuner_script.c (the job and the scripted executor, running a job),
 * check_tuner_dlog.c (the decision log read back); check_tuner.h declares
 * what they share. */
#include "tuner/tuner.h"

#include "check_tuner.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* ================================================================= search */

/* the last summary line of branch br before line `before` (d->n: none) */
static size_t last_summary(const dlog_t *d, uint32_t br, size_t before)
{
    size_t at = d->n;
    for (size_t i = 0; i < before; i++)
        if (ct_l_is(&d->l[i], "summary") && d->l[i].branch == br)
            at = i;
    return at;
}

START_TEST(test_picks_best)
{
    /* for a few seeds: one search, then training; the committed lr is
     * within a factor of 3 of the optimum; it had the lowest score of the
     * trials that ran as long as it did (the last rung); every rung-0 score
     * was told to the searcher; every other trial was freed before the
     * commit, once */
    static const char *const seeds[] = {"1", "2", "3"};
    for (size_t si = 0; si < 3; si++) {
        mlt_job_t job;
        ct_job_make(&job, "seed", seeds[si], "tuner.retune_tests", "0", "tuner.plateau_t", "0",
                    "stop.max_epochs", "2", NULL);
        run_t r;
        ct_run_job(&job, ct_script_new(&job), &r);
        const dlog_t *d = &r.log;
        ck_assert_msg(r.rc == 0, "seed %s: %s", seeds[si], r.res.reason);
        ck_assert_uint_eq(r.res.searches, 1);
        size_t ci = ct_dlog_find(d, 0, "commit", UINT32_MAX);
        ck_assert_uint_lt(ci, d->n);
        ck_assert_uint_eq(ct_dlog_count(d, 0, d->n, "commit"), 1);
        const line_t *c = &d->l[ci];
        double lr = ct_l_sub(c, "tunables", "lr");
        fprintf(stderr, "picks_best seed %s: committed lr %g momentum %g after %u trials\n",
                seeds[si], lr, ct_l_sub(c, "tunables", "momentum"), r.res.trials);
        ck_assert_msg(lr >= LR_OPT / 3 && lr <= LR_OPT * 3,
                      "seed %s: committed lr %g, the optimum is %g", seeds[si], lr, LR_OPT);
        ck_assert_double_eq_tol(lr, ct_lr_of(&job, &r.res.setting), 1e-5 * lr);
        /* the winner's score is the lowest of the trials that ran its time */
        size_t ws = last_summary(d, c->branch, ci);
        ck_assert_uint_lt(ws, d->n);
        double w_score = ct_l_num(&d->l[ws], "score"), w_secs = ct_l_num(&d->l[ws], "seconds");
        ck_assert_double_eq_tol(ct_l_num(c, "score"), w_score, 1e-9 + 1e-5 * fabs(w_score));
        size_t observed = 0, trials = 0, rivals = 0;
        for (size_t i = 0; i < ci; i++) {
            const line_t *l = &d->l[i];
            observed += ct_l_is(l, "observe");
            if (!ct_is_trial_fork(l))
                continue;
            trials++;
            uint32_t id = l->branch;
            ck_assert_uint_eq((uint32_t)ct_l_num(l, "parent"), INIT);
            size_t fi = ct_dlog_find(d, i, "free", id);
            if (id == c->branch) {
                ck_assert_msg(fi > ci, "the winner %u was freed before its commit", id);
                continue;
            }
            ck_assert_msg(fi < ci, "trial %u was not freed before the commit", id);
            ck_assert_msg(ct_dlog_find(d, fi + 1, "free", id) == d->n, "trial %u freed twice", id);
            ck_assert(!r.x->b[id].live);
            size_t ls = last_summary(d, id, ci);
            if (ls < d->n && fabs(ct_l_num(&d->l[ls], "seconds") - w_secs) < 0.05 * w_secs) {
                rivals++;
                ck_assert_msg(!(ct_l_num(&d->l[ls], "score") < w_score),
                              "trial %u scored %g at the winner's time; the winner %g", id,
                              ct_l_num(&d->l[ls], "score"), w_score);
            }
        }
        ck_assert_uint_ge(rivals, 1);
        ck_assert_uint_eq(observed, r.res.trials);
        ck_assert_uint_eq(trials, r.res.trials);
        /* the trials, and the range test's branch */
        ck_assert_uint_eq(r.x->forks[MLT_BRANCH_TRAIN], r.res.trials + 1);
        ck_assert_int_eq(r.x->forks[MLT_BRANCH_EVAL], 0);
        ck_assert_uint_eq(r.res.branch, c->branch);
        ct_assert_one_stop_per_search(d);
        ct_assert_only_training_live(r.x, &r.res);
        ct_run_free(&r);
        mlt_job_free(&job);
    }
}
END_TEST

START_TEST(test_range_test)
{
    /* before any trial: one branch from the initial weights at the default
     * setting, its learning rate raised geometrically from the range's min,
     * a step every few clocks, until the loss blows up (the script's lr >=
     * LR_BOOM); its first step is the starting loss; the rate it reports is
     * the geometric mean of the steepest fall's and the lowest loss's, below
     * the blow-up, within a factor of 3 of the optimum here; the first
     * design's centre is the
     * default setting at that rate, and the range test's branch is freed
     * before the first trial */
    mlt_job_t job;
    ct_job_make(&job, "tuner.retune_tests", "0", "tuner.plateau_t", "0", "stop.max_epochs", "2",
                NULL);
    run_t r;
    ct_run_job(&job, ct_script_new(&job), &r);
    const dlog_t *d = &r.log;
    ck_assert_msg(r.rc == 0, "%s", r.res.reason);
    size_t fk = ct_dlog_find(d, 0, "fork", UINT32_MAX);
    ck_assert_uint_lt(fk, d->n);
    char k[32];
    ck_assert_str_eq(ct_l_str(&d->l[fk], "kind", k, sizeof k), "range_test");
    uint32_t rt = d->l[fk].branch;
    ck_assert_uint_eq((uint32_t)ct_l_num(&d->l[fk], "parent"), INIT);
    size_t li = ct_dlog_find(d, fk, "range_test", rt);
    ck_assert_uint_lt(li, d->n);
    const line_t *l = &d->l[li];
    size_t p0 = ct_dlog_find(d, 0, "propose", UINT32_MAX);
    ck_assert_uint_lt(li, p0);
    ck_assert_uint_lt(ct_dlog_find(d, li, "free", rt), p0);
    ck_assert(!r.x->b[rt].live);
    /* the curve: [lr, mean loss] pairs, the rates a constant ratio apart */
    const char *cv = strstr(l->text, "\"curve\":[[");
    ck_assert_ptr_nonnull(cv);
    cv += strlen("\"curve\":[");
    double lrs[128], losses[128];
    int n = 0;
    while (*cv == '[' && n < 128) {
        char *e;
        lrs[n] = strtod(cv + 1, &e);
        ck_assert(*e == ',');
        losses[n] = strtod(e + 1, &e);
        ck_assert(*e == ']');
        n++;
        cv = e + 1;
        if (*cv == ',')
            cv++;
    }
    ck_assert_int_ge(n, 4);
    ck_assert_double_eq_tol(lrs[0], job.tunables[0].min, 1e-6 * lrs[0]);
    for (int i = 2; i < n; i++)
        ck_assert_double_eq_tol(lrs[i] / lrs[i - 1], lrs[1] / lrs[0], 1e-4 * lrs[1] / lrs[0]);
    ck_assert_double_eq_tol(ct_l_num(l, "start_loss"), losses[0], 1e-5);
    ck_assert_msg(lrs[n - 1] >= LR_BOOM, "the range test stopped at lr %g, before the blow-up",
                  lrs[n - 1]);
    ck_assert_msg(r.x->tunes >= n - 1, "%d tunes for %d steps", r.x->tunes, n);
    double lr_star = ct_l_num(l, "lr"), lowest = ct_l_num(l, "lowest_at");
    double steepest = ct_l_num(l, "steepest_at");
    ck_assert_double_eq_tol(lr_star, sqrt(steepest * lowest), 1e-5 * lr_star);
    ck_assert(lr_star < LR_BOOM);
    ck_assert_msg(lr_star >= LR_OPT / 3 && lr_star <= LR_OPT * 3, "the range test says lr %g",
                  lr_star);
    /* the design's centre */
    ck_assert_msg(ct_l_reason_has(&d->l[p0], "centre"), "%s", d->l[p0].text);
    ck_assert_double_eq_tol(ct_l_sub(&d->l[p0], "tunables", "lr"), lr_star, 1e-5 * lr_star);
    ck_assert_double_eq_tol(ct_l_sub(&d->l[p0], "tunables", "momentum"), 0.9, 1e-9);
    ct_run_free(&r);
    mlt_job_free(&job);
}
END_TEST

START_TEST(test_halving)
{
    /* a design of 4 and no proposals, the loss noisy enough that rung 0
     * cannot tell the best two apart: the better half by score runs twice as
     * long (a "rung" line); the other half is freed as "halved", each with a
     * score no better than the last one kept; then the better of the two is
     * committed. Discrete tunables (batch size) stay at the centre's value in
     * every trial. */
    mlt_job_t job;
    ct_job_make(&job, "tuner.first_trials", "4", "tuner.max_trials", "4", "tuner.retune_tests",
                "0", "tuner.plateau_t", "0", "tunables.batch_size.tune", "true",
                "stop.max_epochs", "2", NULL);
    script_t *x = ct_script_new(&job);
    x->noise = 0.05;
    run_t r;
    ct_run_job(&job, x, &r);
    const dlog_t *d = &r.log;
    ck_assert_msg(r.rc == 0, "%s", r.res.reason);
    ck_assert_uint_eq(r.res.trials, 4);
    size_t ci = ct_dlog_find(d, 0, "commit", UINT32_MAX);
    size_t rung = ct_dlog_find(d, 0, "rung", UINT32_MAX);
    ck_assert_uint_lt(rung, ci);
    ck_assert_uint_eq(ct_dlog_count(d, 0, ci, "rung"), 1);
    ck_assert_int_eq((int)ct_l_num(&d->l[rung], "trials"), 2);
    size_t t0 = ct_dlog_find(d, 0, "trial_start", UINT32_MAX);
    double T = ct_l_num(&d->l[t0], "seconds");
    ck_assert_double_eq_tol(ct_l_num(&d->l[rung], "seconds"), 2 * T, 1e-3 * T);
    /* the halved: two, before the rung line, scores not below the kept */
    double kept_worst = -INFINITY, halved_best = INFINITY;
    size_t halved = 0;
    bool kept[MAXB] = {false};
    for (size_t i = 0; i < rung; i++) {
        const line_t *l = &d->l[i];
        if (ct_l_is(l, "free") && ct_l_reason_has(l, "halved")) {
            halved++;
            size_t ls = last_summary(d, l->branch, i);
            double sc = ct_l_num(&d->l[ls], "score");
            halved_best = sc < halved_best ? sc : halved_best;
        }
    }
    ck_assert_uint_eq(halved, 2);
    for (size_t i = rung; i < ci; i++)
        if (ct_l_is(&d->l[i], "trial_resume"))
            kept[d->l[i].branch] = true;
    size_t n_kept = 0;
    for (uint32_t id = 0; id < MAXB; id++)
        if (kept[id]) {
            n_kept++;
            size_t ls = last_summary(d, id, rung);
            double sc = ct_l_num(&d->l[ls], "score");
            kept_worst = sc > kept_worst ? sc : kept_worst;
        }
    ck_assert_uint_eq(n_kept, 2);
    ck_assert_msg(kept_worst <= halved_best, "kept a score %g, halved one of %g", kept_worst,
                  halved_best);
    ck_assert_msg(kept[d->l[ci].branch], "the winner was not among the kept");
    /* the second rung's loser freed before the commit */
    ck_assert_uint_eq(ct_dlog_count(d, rung, ci, "free"), 1);
    /* every trial at the default batch size */
    for (size_t i = 0; i < ci; i++)
        if (ct_l_is(&d->l[i], "propose"))
            ck_assert_double_eq(ct_l_sub(&d->l[i], "tunables", "batch_size"), 128);
    ct_assert_only_training_live(r.x, &r.res);
    ct_run_free(&r);
    mlt_job_free(&job);
}
END_TEST

START_TEST(test_halving_clear_leader)
{
    /* the same search with a clean loss: rung 0 already shows the best
     * ahead of the second by more than two standard errors of their
     * difference, so no longer rung runs: the others are freed as behind
     * the best beyond noise, and the best is committed after rung 0 */
    mlt_job_t job;
    ct_job_make(&job, "tuner.first_trials", "4", "tuner.max_trials", "4", "tuner.retune_tests",
                "0", "tuner.plateau_t", "0", "stop.max_epochs", "2", NULL);
    run_t r;
    ct_run_job(&job, ct_script_new(&job), &r);
    const dlog_t *d = &r.log;
    ck_assert_msg(r.rc == 0, "%s", r.res.reason);
    size_t ci = ct_dlog_find(d, 0, "commit", UINT32_MAX);
    ck_assert_uint_eq(ct_dlog_count(d, 0, ci, "rung"), 0);
    ck_assert_uint_eq(ct_dlog_count(d, 0, ci, "trial_resume"), 0);
    size_t behind = 0;
    for (size_t i = 0; i < ci; i++)
        behind += ct_l_is(&d->l[i], "free") && ct_l_reason_has(&d->l[i], "beyond noise");
    ck_assert_uint_eq(behind, 3);
    /* the winner's score is the lowest; the gap to the second is beyond 2 se */
    double best = INFINITY, second = INFINITY, se_b = NAN, se_s = NAN;
    for (size_t i = 0; i < ci; i++) {
        if (!ct_l_is(&d->l[i], "summary"))
            continue;
        double sc = ct_l_num(&d->l[i], "score"), se = ct_l_num(&d->l[i], "se");
        if (sc < best) {
            second = best;
            se_s = se_b;
            best = sc;
            se_b = se;
        } else if (sc < second) {
            second = sc;
            se_s = se;
        }
    }
    ck_assert_double_eq_tol(ct_l_num(&d->l[ci], "score"), best, 1e-9 + 1e-5 * best);
    ck_assert(second - best > 2 * sqrt(se_b * se_b + se_s * se_s));
    ct_assert_only_training_live(r.x, &r.res);
    ct_run_free(&r);
    mlt_job_free(&job);
}
END_TEST

START_TEST(test_diverging_trials)
{
    /* lr in [0.01, 10] and random proposals: settings at lr >= 0.3 explode to
     * +Inf, at lr >= 1 turn NaN. Such a trial is cut the moment it diverges:
     * within its first piece (a quarter of the trial time), freed before the
     * next proposal, and the searcher hears the worst (null in the log); the
     * job commits a converging one and trains. */
    mlt_job_t job;
    ct_job_make(&job, "tunables.lr.min", "0.01", "tunables.lr.max", "10", "tunables.lr.default",
                "0.03", "tuner.searcher", "random", "tuner.retune_tests", "0", "tuner.plateau_t",
                "0", "tuner.gain_stop", "0", "tuner.max_trials", "12", "stop.max_epochs", "2",
                "seed", "1", NULL);
    script_t *x = ct_script_new(&job);
    run_t r;
    ct_run_job(&job, x, &r);
    const dlog_t *d = &r.log;
    ck_assert_msg(r.rc == 0, "%s", r.res.reason);
    size_t ci = ct_dlog_find(d, 0, "commit", UINT32_MAX);
    ck_assert_uint_lt(ci, d->n);
    size_t t0 = ct_dlog_find(d, 0, "trial_start", UINT32_MAX);
    double T = ct_l_num(&d->l[t0], "seconds");
    int n_inf = 0, n_nan = 0;
    for (uint32_t id = INIT + 1; id < MAXB; id++) {
        const br_t *b = &r.x->b[id];
        size_t fork = ct_dlog_find(d, 0, "fork", id);
        if (!b->exists || b->kind != MLT_BRANCH_TRAIN || b->bad == BAD_NONE || fork == d->n ||
            !ct_is_trial_fork(&d->l[fork]))
            continue;
        n_inf += b->bad == BAD_INF;
        n_nan += b->bad == BAD_NAN;
        ck_assert(ct_lr_of(&job, &b->s) >= LR_BOOM);
        ck_assert_msg(!b->live, "diverged trial %u is live", id);
        /* cut within the first piece: a quarter of the trial time */
        double limit = 0.25 * T / ct_clock_cost(x, &b->s) + 1;
        ck_assert_msg((double)b->clocks <= limit, "diverged trial %u ran %lld clocks (a quarter "
                      "of the trial time is %.1f)", id, (long long)b->clocks, limit - 1);
        size_t si = ct_dlog_find(d, 0, "summary", id);
        ck_assert_uint_lt(si, d->n);
        char v[32];
        ck_assert_str_eq(ct_l_str(&d->l[si], "verdict", v, sizeof v), "diverged");
        ck_assert(isnan(ct_l_num(&d->l[si], "score")));
        size_t fi = ct_dlog_find(d, 0, "free", id);
        ck_assert_uint_lt(fi, ci);
        ck_assert_uint_lt(fi, ct_dlog_find(d, fork, "propose", UINT32_MAX));
        ck_assert_msg(ct_l_reason_has(&d->l[fi], "diverged"), "%s", d->l[fi].text);
        size_t oi = ct_dlog_find(d, 0, "observe", id);
        ck_assert_uint_lt(oi, ci);
        ck_assert(isnan(ct_l_num(&d->l[oi], "score")));
        ck_assert_str_eq(ct_l_str(&d->l[oi], "verdict", v, sizeof v), "diverged");
    }
    fprintf(stderr, "diverging_trials: %d +Inf and %d NaN trials of %u\n", n_inf, n_nan,
            r.res.trials);
    ck_assert_msg(n_inf + n_nan >= 2, "precondition: trials that diverge");
    ck_assert(ct_l_sub(&d->l[ci], "tunables", "lr") < LR_BOOM);
    size_t tests = 0;
    double prev = -1;
    for (size_t i = ct_dlog_find(d, ci, "test", UINT32_MAX); i < d->n;
         i = ct_dlog_find(d, i + 1, "test", UINT32_MAX)) {
        double a = ct_l_num(&d->l[i], "accuracy");
        ck_assert(isfinite(a) && a > prev);
        prev = a;
        tests++;
    }
    ck_assert_uint_ge(tests, 1);
    ck_assert_msg(strstr(r.res.reason, "max_epochs") != NULL, "%s", r.res.reason);
    ct_assert_only_training_live(r.x, &r.res);
    ct_run_free(&r);
    mlt_job_free(&job);
}
END_TEST

START_TEST(test_budget_counts_first_search)
{
    /* the time in trials that did not become training: the range test and
     * the dropped trials, the first search's included; the winner's trial
     * time is training. A re-tune is due at every test (the loss is flat:
     * retune_tests 1) but runs only once max_overhead x the training time
     * covers what the trials cost so far plus a trial time; until then it is
     * skipped, saying so with the budget */
    mlt_job_t job;
    ct_job_make(&job, "tuner.retune_tests", "1", "tuner.plateau_t", "0", "tuner.max_overhead",
                "0.2", "tuner.converge_tests", "100", "stop.max_epochs", "12", NULL);
    script_t *x = ct_script_new(&job);
    x->acc_const = 0.5;
    run_t r;
    ct_run_job(&job, x, &r);
    const dlog_t *d = &r.log;
    ck_assert_msg(r.rc == 0, "%s", r.res.reason);
    size_t ci = ct_dlog_find(d, 0, "commit", UINT32_MAX);
    /* the first search's lost time: the range test and every trial but the winner */
    double lost = ct_l_num(&d->l[ct_dlog_find(d, 0, "range_test", UINT32_MAX)], "seconds");
    for (size_t i = 0; i < ci; i++)
        if (ct_is_trial_fork(&d->l[i]) && d->l[i].branch != d->l[ci].branch)
            lost += ct_l_num(&d->l[last_summary(d, d->l[i].branch, ci)], "seconds");
    ck_assert(lost > 0);
    size_t sk = ct_dlog_find(d, ci, "retune_skipped", UINT32_MAX);
    ck_assert_msg(sk < d->n, "no re-tune was skipped: the first search was free");
    double T = ct_l_num(&d->l[ct_dlog_find(d, 0, "trial_time", UINT32_MAX)], "seconds");
    ck_assert(ct_l_num(&d->l[sk], "budget") < T);
    /* the first skip happens before any re-tune, and the first re-tune after the
     * training time has grown past (lost + T) / max_overhead */
    size_t rt = ct_dlog_find(d, ci, "retune", UINT32_MAX);
    ck_assert_uint_lt(sk, rt);
    if (rt < d->n)
        ck_assert(ct_l_num(&d->l[rt], "budget") >= T);
    ck_assert_double_eq_tol(r.res.trial_seconds + r.res.train_seconds,
                            r.x->now - 0.1 * r.x->tests, 1e-6);
    fprintf(stderr, "budget: first search lost %.3f s, trial_seconds %.3f, train %.3f\n", lost,
            r.res.trial_seconds, r.res.train_seconds);
    ck_assert(r.res.trial_seconds >= lost - 1e-9);
    ct_assert_only_training_live(r.x, &r.res);
    ct_run_free(&r);
    mlt_job_free(&job);
}
END_TEST

START_TEST(test_warm_start)
{
    /* a cold job learns its first search's winner (res.learned: the first
     * commit's setting and the range test's rate); a second job given it
     * runs no range test (the starting loss from a short eval branch at lr
     * 0), centres its design on it ("warm": true), steps the rate by 2, not 3,
     * and commits a rate near the first job's */
    mlt_job_t job;
    ct_job_make(&job, "tuner.retune_tests", "0", "tuner.plateau_t", "0", "stop.max_epochs", "2",
                NULL);
    run_t cold, warm;
    ct_run_job(&job, ct_script_new(&job), &cold);
    ck_assert_msg(cold.rc == 0, "%s", cold.res.reason);
    const mlt_warm_t *w = &cold.res.learned;
    ck_assert(w->have);
    size_t c0 = ct_dlog_find(&cold.log, 0, "commit", UINT32_MAX);
    ck_assert_double_eq_tol(ct_lr_of(&job, &w->setting),
                            ct_l_sub(&cold.log.l[c0], "tunables", "lr"), 1e-5);
    size_t rt = ct_dlog_find(&cold.log, 0, "range_test", UINT32_MAX);
    ck_assert_double_eq_tol(w->lr_star, ct_l_num(&cold.log.l[rt], "lr"), 1e-6 * w->lr_star);

    ct_run_job_warm(&job, ct_script_new(&job), w, &warm);
    const dlog_t *d = &warm.log;
    ck_assert_msg(warm.rc == 0, "%s", warm.res.reason);
    ck_assert_uint_eq(ct_dlog_count(d, 0, d->n, "range_test"), 0);
    ck_assert_int_eq(warm.x->forks[MLT_BRANCH_EVAL], 1);
    ck_assert_uint_eq(ct_dlog_count(d, 0, d->n, "start"), 1);
    size_t ce = ct_dlog_find(d, 0, "centre", UINT32_MAX);
    ck_assert_uint_lt(ce, d->n);
    ck_assert_ptr_nonnull(strstr(d->l[ce].text, "\"warm\":true"));
    double lr_w = ct_lr_of(&job, &w->setting);
    ck_assert_double_eq_tol(ct_l_sub(&d->l[ce], "tunables", "lr"), lr_w, 1e-5 * lr_w);
    size_t p1 = ct_dlog_find(d, ct_dlog_find(d, 0, "propose", UINT32_MAX) + 1, "propose",
                             UINT32_MAX);
    ck_assert_double_eq_tol(ct_l_sub(&d->l[p1], "tunables", "lr"), 2 * lr_w, 1e-5 * lr_w);
    size_t c1 = ct_dlog_find(d, 0, "commit", UINT32_MAX);
    double lr1 = ct_l_sub(&d->l[c1], "tunables", "lr");
    ck_assert_msg(lr1 >= lr_w / 2 - 1e-9 && lr1 <= 2 * lr_w + 1e-9, "warm job committed lr %g",
                  lr1);
    /* it cost less than the cold job's first search */
    ck_assert(warm.res.trial_seconds < cold.res.trial_seconds);
    ct_assert_only_training_live(warm.x, &warm.res);
    ct_run_free(&cold);
    ct_run_free(&warm);
    mlt_job_free(&job);
}
END_TEST

START_TEST(test_nothing_moved)
{
    /* no setting moves the loss within a trial (as matrix factorisation from
     * small factors): every trial's score is within its noise of the start,
     * so the search has learnt nothing, and the design's centre goes on (not
     * the luckiest draw of the noise); no halving rung runs */
    mlt_job_t job;
    ct_job_make(&job, "tuner.range_clocks", "0", "tuner.first_trials", "3", "tuner.max_trials",
                "3", "tuner.retune_tests", "0", "tuner.plateau_t", "0", "stop.max_epochs", "2",
                NULL);
    script_t *x = ct_script_new(&job);
    x->frozen = true;
    x->noise = 0.05;
    run_t r;
    ct_run_job(&job, x, &r);
    const dlog_t *d = &r.log;
    ck_assert_msg(r.rc == 0, "%s", r.res.reason);
    size_t ci = ct_dlog_find(d, 0, "commit", UINT32_MAX);
    size_t p0 = ct_dlog_find(d, 0, "propose", UINT32_MAX);
    ck_assert_uint_eq(d->l[ci].branch, d->l[p0].branch);
    ck_assert_double_eq_tol(ct_l_sub(&d->l[ci], "tunables", "lr"), 0.01, 1e-9);
    ck_assert_uint_eq(ct_dlog_count(d, 0, ci, "rung"), 0);
    size_t nothing = 0;
    for (size_t i = 0; i < ci; i++)
        nothing += ct_l_is(&d->l[i], "free") && ct_l_reason_has(&d->l[i], "beyond its noise");
    ck_assert_uint_eq(nothing, 2);
    ct_assert_only_training_live(r.x, &r.res);
    ct_run_free(&r);
    mlt_job_free(&job);
}
END_TEST

/* =================================================================== stop */

START_TEST(test_target_accuracy)
{
    mlt_job_t job;
    ct_job_make(&job, "stop.target_accuracy", "0.8", "stop.max_epochs", "40", NULL);
    run_t r;
    ct_run_job(&job, ct_script_new(&job), &r);
    const dlog_t *d = &r.log;
    ck_assert_msg(r.rc == 0, "%s", r.res.reason);
    ck_assert_msg(strstr(r.res.reason, "reached the target") != NULL, "%s", r.res.reason);
    ck_assert(r.res.test >= 0.8);
    ck_assert(r.res.epoch < 40);
    size_t last = d->n, tests = 0;
    for (size_t i = ct_dlog_find(d, 0, "test", UINT32_MAX); i < d->n;
         i = ct_dlog_find(d, i + 1, "test", UINT32_MAX)) {
        if (last < d->n)
            ck_assert_msg(ct_l_num(&d->l[last], "test_accuracy") < 0.8,
                          "the job went on after reaching the target: %s", d->l[last].text);
        last = i;
        tests++;
    }
    ck_assert_uint_lt(last, d->n);
    ck_assert_uint_ge(tests, 2);
    ck_assert(ct_l_num(&d->l[last], "test_accuracy") >= 0.8);
    ck_assert_double_eq_tol(ct_l_num(&d->l[last], "test_accuracy"), r.res.test, 1e-5);
    /* nothing ran after the last test */
    ck_assert_int_gt(r.x->last_test_call, r.x->last_run_call);
    ck_assert_uint_eq(ct_dlog_count(d, last, d->n, "fork"), 0);
    ct_assert_only_training_live(r.x, &r.res);
    ct_run_free(&r);
    mlt_job_free(&job);
}
END_TEST

START_TEST(test_max_epochs)
{
    /* 2.5 epochs with a test every 0.7: the last interval is cut short so
     * that the training lineage has trained exactly 2.5 epochs */
    mlt_job_t job;
    ct_job_make(&job, "stop.max_epochs", "2.5", "test_interval", "0.7", NULL);
    run_t r;
    ct_run_job(&job, ct_script_new(&job), &r);
    const dlog_t *d = &r.log;
    ck_assert_msg(r.rc == 0, "%s", r.res.reason);
    ck_assert_msg(strstr(r.res.reason, "max_epochs 2.5 reached") != NULL, "%s", r.res.reason);
    ck_assert_double_eq_tol(r.res.epoch, 2.5, 1e-9);
    ck_assert_double_eq_tol(r.x->b[r.res.branch].lineage, 2.5, 1e-9);
    size_t last = d->n;
    for (size_t i = ct_dlog_find(d, 0, "test", UINT32_MAX); i < d->n;
         i = ct_dlog_find(d, i + 1, "test", UINT32_MAX)) {
        ck_assert(ct_l_num(&d->l[i], "epoch") <= 2.5 + 1e-4);
        last = i;
    }
    ck_assert_uint_lt(last, d->n);
    ck_assert_double_eq_tol(ct_l_num(&d->l[last], "epoch"), 2.5, 1e-4);
    /* no branch of the training lineage trained past it */
    for (uint32_t id = INIT + 1; id < MAXB; id++)
        if (r.x->b[id].exists)
            ck_assert_msg(r.x->b[id].lineage <= 2.5 + 1e-9, "branch %u trained %.6f epochs", id,
                          r.x->b[id].lineage);
    ct_assert_only_training_live(r.x, &r.res);
    ct_run_free(&r);
    mlt_job_free(&job);
}
END_TEST

START_TEST(test_fixed_logic)
{
    /* tuner.logic = fixed: no search, one commit with the defaults, training
     * to max_epochs */
    mlt_job_t job;
    ct_job_make(&job, "tuner.logic", "fixed", "tunables.batch_size.tune", "true", "stop.max_epochs",
                "3", NULL);
    run_t r;
    ct_run_job(&job, ct_script_new(&job), &r);
    const dlog_t *d = &r.log;
    ck_assert_msg(r.rc == 0, "%s", r.res.reason);
    ck_assert_uint_eq(ct_dlog_count(d, 0, d->n, "commit"), 1);
    static const char *const none[] = {"propose", "summary", "trial_start", "trial_resume",
                                       "observe", "retune", "trial_time", "start", "search_stop",
                                       "converged"};
    for (size_t i = 0; i < sizeof none / sizeof none[0]; i++)
        ck_assert_msg(ct_dlog_count(d, 0, d->n, none[i]) == 0, "fixed logic logged \"%s\"",
                      none[i]);
    const line_t *c = &d->l[ct_dlog_find(d, 0, "commit", UINT32_MAX)];
    ck_assert(ct_l_reason_has(c, "fixed"));
    ck_assert_double_eq_tol(ct_l_sub(c, "tunables", "lr"), 0.01, 1e-12);
    ck_assert_double_eq_tol(ct_l_sub(c, "tunables", "momentum"), 0.9, 1e-12);
    ck_assert_double_eq_tol(ct_l_sub(c, "tunables", "batch_size"), 128, 1e-12);
    ck_assert_double_eq_tol(ct_l_sub(c, "tunables", "staleness"), 0, 1e-12);
    mlt_setting_t def;
    mlt_setting_defaults(&job, &def);
    ck_assert(memcmp(&def, &r.res.setting, sizeof def) == 0);
    ck_assert_uint_eq(r.res.searches, 0);
    ck_assert_uint_eq(r.res.trials, 0);
    ck_assert_int_eq(r.x->forks[MLT_BRANCH_TRAIN], 1);
    ck_assert_int_eq(r.x->forks[MLT_BRANCH_EVAL], 0);
    ck_assert_int_eq(r.x->forks[MLT_BRANCH_TEST], r.x->tests);
    ck_assert_int_eq(r.x->tests, 3);
    ck_assert_double_eq_tol(r.res.epoch, 3.0, 1e-9);
    ck_assert(r.res.trial_seconds == 0);
    ck_assert(strstr(r.res.reason, "max_epochs") != NULL);
    ct_assert_only_training_live(r.x, &r.res);
    ct_run_free(&r);
    mlt_job_free(&job);
}
END_TEST

/* ================================================================= replay */

START_TEST(test_deterministic)
{
    /* every tunable tuned, re-tunes on: the same seed and a deterministic
     * executor give the same decision log, byte for byte (the virtual clock
     * makes even "t" and the slopes deterministic), and the same result */
    mlt_job_t job;
    ct_job_make(&job, "tunables.batch_size.tune", "true", "tunables.staleness.tune", "true",
                "tuner.retune_tests", "1", "stop.max_epochs", "8", NULL);
    run_t a, b;
    ct_run_replay(&job, &a, false);
    ct_run_replay(&job, &b, true);
    ck_assert_msg(a.rc == 0, "%s", a.res.reason);
    ck_assert_int_eq(a.rc, b.rc);
    ck_assert_uint_gt(a.log.n, 10);
    ck_assert_uint_eq(a.log.n, b.log.n);
    for (size_t i = 0; i < a.log.n; i++)
        ck_assert_msg(strcmp(a.log.l[i].text, b.log.l[i].text) == 0,
                      "line %zu differs:\n%s\n%s", i + 1, a.log.l[i].text, b.log.l[i].text);
    ck_assert_str_eq(a.log.raw, b.log.raw);
    ck_assert_uint_eq(a.res.branch, b.res.branch);
    ck_assert(memcmp(&a.res.setting, &b.res.setting, sizeof a.res.setting) == 0);
    ck_assert_uint_eq(a.res.trials, b.res.trials);
    ck_assert_uint_eq(a.res.searches, b.res.searches);
    ck_assert(a.res.epoch == b.res.epoch && a.res.test == b.res.test);
    ck_assert_str_eq(a.res.reason, b.res.reason);
    ck_assert_int_gt(b.x->progress, 0);
    /* another job seed gives other proposals: the comparison can fail */
    mlt_job_t job2;
    ct_job_make(&job2, "tunables.batch_size.tune", "true", "tunables.staleness.tune", "true",
                "tuner.retune_tests", "1", "stop.max_epochs", "8", "seed", "99", NULL);
    run_t c;
    ct_run_replay(&job2, &c, false);
    ck_assert_msg(strcmp(a.log.raw, c.log.raw) != 0, "the seed does not change the decisions");
    ct_run_free(&a);
    ct_run_free(&b);
    ct_run_free(&c);
    mlt_job_free(&job);
    mlt_job_free(&job2);
}
END_TEST

/* memory_limit (the executor refuses a fork while max_live branches live):
 * a search whose trials do not all fit runs fewer at once, freeing the worst
 * live trial for the next, and the job goes on; where training itself does
 * not fit, the job fails (the daemon adds the shard's words). */
START_TEST(test_memory_limit)
{
    mlt_job_t job;
    ct_job_make(&job, "tuner.max_trials", "6", "tuner.retune_tests", "0", "tuner.plateau_t", "0",
                "stop.max_epochs", "2", NULL);
    run_t r;
    script_t *x = ct_script_new(&job);
    x->max_live = 4; /* init + 3: the snapshot, test and training branch fit */
    ct_run_job(&job, x, &r);
    ck_assert_msg(r.rc == 0, "%s", r.res.reason);
    ck_assert_int_gt(r.x->refused, 0);
    ck_assert_uint_gt(r.res.trials, 3);
    size_t made_room = 0;
    for (size_t i = 0; i < r.log.n; i++)
        made_room += ct_l_is(&r.log.l[i], "free") &&
                     strstr(r.log.l[i].text, "memory_limit: room for trial") != NULL;
    ck_assert_uint_ge(made_room, 1);
    ct_assert_only_training_live(r.x, &r.res);
    ct_run_free(&r);
    mlt_job_free(&job);

    /* init + 1: the search runs its trials one at a time; the commit's
     * snapshot does not fit, and the job fails there */
    ct_job_make(&job, "stop.max_epochs", "2", NULL);
    x = ct_script_new(&job);
    x->max_live = 2;
    ct_run_job(&job, x, &r);
    ck_assert_int_ne(r.rc, 0);
    made_room = 0;
    for (size_t i = 0; i < r.log.n; i++)
        made_room += ct_l_is(&r.log.l[i], "free") &&
                     strstr(r.log.l[i].text, "(1 trial branch fits at once)") != NULL;
    ck_assert_uint_ge(made_room, 1);
    ct_run_free(&r);
    mlt_job_free(&job);
}
END_TEST

static Suite *tuner_suite(void)
{
    Suite *s = suite_create("tuner");
    TCase *tc = tcase_create("search");
    tcase_add_test(tc, test_picks_best);
    tcase_add_test(tc, test_range_test);
    tcase_add_test(tc, test_halving);
    tcase_add_test(tc, test_halving_clear_leader);
    tcase_add_test(tc, test_nothing_moved);
    tcase_add_test(tc, test_diverging_trials);
    tcase_add_test(tc, test_budget_counts_first_search);
    tcase_add_test(tc, test_warm_start);
    tcase_add_test(tc, test_memory_limit);
    suite_add_tcase(s, tc);
    ct_retune_tcases(s);
    tc = tcase_create("stop");
    tcase_add_test(tc, test_target_accuracy);
    tcase_add_test(tc, test_max_epochs);
    tcase_add_test(tc, test_fixed_logic);
    suite_add_tcase(s, tc);
    tc = tcase_create("replay");
    tcase_add_test(tc, test_deterministic);
    suite_add_tcase(s, tc);
    ct_baselines_tcases(s);
    return s;
}

int main(void)
{
    SRunner *sr = srunner_create(tuner_suite());
    srunner_run_all(sr, CK_ENV);
    int failed = srunner_ntests_failed(sr);
    srunner_free(sr);
    return failed != 0 ? EXIT_FAILURE : EXIT_SUCCESS;
}
