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

START_TEST(test_picks_best)
{
    /* for a few seeds: one search, then training; the committed lr is
     * within a factor of 3 of the optimum, it had the best converging slope
     * the searcher heard of, and every other trial of the search was freed
     * before the commit */
    static const char *const seeds[] = {"1", "2", "3"};
    for (size_t si = 0; si < 3; si++) {
        mlt_job_t job;
        ct_job_make(&job, "seed", seeds[si], "tuner.retune_tests", "0", "stop.max_epochs", "2",
                    NULL);
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
        char v[32];
        ck_assert_str_eq(ct_l_str(c, "verdict", v, sizeof v), "converging");
        /* the best converging slope the searcher was told */
        double best = INFINITY;
        size_t observed = 0;
        for (size_t i = 0; i < ci; i++)
            if (ct_l_is(&d->l[i], "observe")) {
                observed++;
                if (strcmp(ct_l_str(&d->l[i], "verdict", v, sizeof v), "converging") == 0 &&
                    ct_l_num(&d->l[i], "slope") < best)
                    best = ct_l_num(&d->l[i], "slope");
            }
        ck_assert_uint_eq(observed, r.res.trials);
        ck_assert_double_eq_tol(ct_l_num(c, "slope"), best, 1e-9 + 1e-5 * fabs(best));
        /* every other trial was freed before the commit, once */
        size_t trials = 0;
        for (size_t i = 0; i < ci; i++) {
            if (!ct_is_trial_fork(&d->l[i]))
                continue;
            trials++;
            uint32_t id = d->l[i].branch;
            ck_assert_uint_eq((uint32_t)ct_l_num(&d->l[i], "parent"), INIT);
            size_t fi = ct_dlog_find(d, i, "free", id);
            if (id == c->branch) {
                ck_assert_msg(fi > ci, "the winner %u was freed before its commit", id);
                continue;
            }
            ck_assert_msg(fi < ci, "trial %u was not freed before the commit", id);
            ck_assert_msg(ct_dlog_find(d, fi + 1, "free", id) == d->n, "trial %u freed twice", id);
            ck_assert(!r.x->b[id].live);
        }
        ck_assert_uint_eq(trials, r.res.trials);
        ck_assert_uint_eq(r.x->forks[K_TRAIN], r.res.trials);
        ck_assert_int_eq(r.x->forks[K_EVAL], 1);
        ck_assert_uint_eq(r.res.branch, c->branch);
        ct_assert_one_stop_per_search(d);
        ct_assert_only_training_live(r.x, &r.res);
        ct_run_free(&r);
        mlt_job_free(&job);
    }
}
END_TEST

/* the trial_time lines of the first search: doubled ones and the kept one */
typedef struct tt {
    double doubled[16];
    size_t n_doubled;
    double kept;
    size_t kept_at;
} tt_t;

static void trial_times(const dlog_t *d, tt_t *tt)
{
    memset(tt, 0, sizeof *tt);
    tt->kept_at = d->n;
    for (size_t i = 0; i < d->n; i++) {
        const line_t *l = &d->l[i];
        if (!ct_l_is(l, "trial_time"))
            continue;
        if (ct_l_reason_has(l, "doubled")) {
            ck_assert_msg(tt->kept_at == d->n, "trial time doubled after it was kept: %s",
                          l->text);
            ck_assert(tt->n_doubled < 16);
            tt->doubled[tt->n_doubled++] = ct_l_num(l, "seconds");
        } else {
            ck_assert_msg(ct_l_reason_has(l, "kept from now on"), "%s", l->text);
            ck_assert_msg(tt->kept_at == d->n, "trial time kept twice: %s", l->text);
            tt->kept = ct_l_num(l, "seconds");
            tt->kept_at = i;
        }
    }
}

/* the last summary line of branch br before line `before` (d->n: none) */
static size_t last_summary(const dlog_t *d, uint32_t br, size_t before)
{
    size_t at = d->n;
    for (size_t i = 0; i < before; i++)
        if (ct_l_is(&d->l[i], "summary") && d->l[i].branch == br)
            at = i;
    return at;
}

START_TEST(test_trial_time_doubles)
{
    /* the loss rises for the first 25 clocks of training from the initial
     * weights, then falls: the first trials (the time min_trial_clocks, 10,
     * take at the default batch size) and those at twice that time are all
     * unstable, so the trial time doubles (in seconds: 2x, 4x), the trials resume in
     * turn, and from then on every trial runs the kept time, whatever its
     * batch size (the script's clock costs 0.004 + 0.0001 x batch seconds) */
    mlt_job_t job;
    ct_job_make(&job, "tunables.lr.max", "0.2", "tuner.retune_tests", "0", "stop.max_epochs", "2",
                "tunables.batch_size.tune", "true", NULL);
    script_t *x = ct_script_new(&job);
    x->warm = 25;
    run_t r;
    ct_run_job(&job, x, &r);
    const dlog_t *d = &r.log;
    ck_assert_msg(r.rc == 0, "%s", r.res.reason);
    tt_t tt;
    trial_times(d, &tt);
    ck_assert_msg(tt.n_doubled >= 2, "the trial time doubled %zu times", tt.n_doubled);
    /* the first trial time: min_trial_clocks at the default setting */
    mlt_setting_t def;
    mlt_setting_defaults(&job, &def);
    double t0 = job.tuner.min_trial_clocks * ct_clock_cost(x, &def);
    ck_assert_double_eq_tol(tt.doubled[0], 2 * t0, 1e-3 * t0);
    for (size_t i = 1; i < tt.n_doubled; i++)
        ck_assert_double_eq_tol(tt.doubled[i], 2 * tt.doubled[i - 1], 1e-3 * tt.doubled[i]);
    ck_assert_uint_lt(tt.kept_at, d->n);
    ck_assert_double_eq(tt.kept, tt.doubled[tt.n_doubled - 1]);
    /* every doubling resumes the trials (none diverges here); every trial
     * ends the search having run the kept time, to within a clock */
    size_t first_commit = ct_dlog_find(d, 0, "commit", UINT32_MAX);
    ck_assert_uint_lt(first_commit, d->n);
    size_t resumes = 0, started = 0;
    uint32_t batches_seen = 0;
    for (size_t i = 0; i < first_commit; i++) {
        const line_t *l = &d->l[i];
        if (ct_l_is(l, "trial_resume") && i < tt.kept_at)
            resumes++;
        if (ct_l_is(l, "trial_start")) {
            started++;
            size_t ls = last_summary(d, l->branch, first_commit);
            ck_assert_uint_lt(ls, d->n);
            double secs = ct_l_num(&d->l[ls], "seconds");
            ck_assert_msg(secs >= 0.97 * tt.kept - 1e-9 && secs <= tt.kept + 0.06,
                          "trial %u ran %g s; the trial time is %g s: %s", l->branch, secs,
                          tt.kept, d->l[ls].text);
            size_t pi = ct_dlog_find(d, 0, "propose", l->branch);
            double b = ct_l_sub(&d->l[pi], "tunables", "batch_size");
            for (int k = 0; k < 5; k++)
                if (b == 32 << k)
                    batches_seen |= 1u << k;
        }
        /* before the trial time is kept, no summary converges */
        if (ct_l_is(l, "summary") && i < tt.kept_at && ct_l_num(l, "seconds") < 0.97 * tt.kept) {
            char v[32];
            ck_assert_msg(strcmp(ct_l_str(l, "verdict", v, sizeof v), "converging") != 0,
                          "a trial converged, yet the trial time doubled: %s", l->text);
        }
    }
    ck_assert_uint_ge(resumes, tt.n_doubled);
    ck_assert_uint_ge(started, 2);
    ck_assert_msg(__builtin_popcount(batches_seen) >= 2,
                  "precondition: trials of at least two batch sizes (seen mask %#x)", batches_seen);
    /* the committed trial converges */
    char v[32];
    ck_assert_str_eq(ct_l_str(&d->l[first_commit], "verdict", v, sizeof v), "converging");
    ct_assert_only_training_live(r.x, &r.res);
    ct_run_free(&r);
    mlt_job_free(&job);
}
END_TEST

START_TEST(test_diverging_trials)
{
    /* lr in [0.01, 3]: settings at lr >= 0.3 explode to +Inf, at lr >= 0.6
     * turn NaN. Those trials are diverged, freed, the searcher hears +inf
     * (null in the log), and the job commits a converging one and trains. */
    mlt_job_t job;
    ct_job_make(&job, "tunables.lr.min", "0.01", "tunables.lr.max", "10", "tunables.lr.default",
                "0.03", "tuner.searcher", "random", "tuner.retune_tests", "0", "stop.max_epochs",
                "2", "seed", "1", NULL);
    run_t r;
    ct_run_job(&job, ct_script_new(&job), &r);
    const dlog_t *d = &r.log;
    ck_assert_msg(r.rc == 0, "%s", r.res.reason);
    size_t ci = ct_dlog_find(d, 0, "commit", UINT32_MAX);
    ck_assert_uint_lt(ci, d->n);
    int n_inf = 0, n_nan = 0;
    for (uint32_t id = INIT + 1; id < MAXB; id++) {
        const br_t *b = &r.x->b[id];
        if (!b->exists || b->kind != K_TRAIN || b->bad == BAD_NONE)
            continue;
        n_inf += b->bad == BAD_INF;
        n_nan += b->bad == BAD_NAN;
        ck_assert(ct_lr_of(&job, &b->s) >= LR_BOOM);
        ck_assert_msg(!b->live, "diverged trial %u is live", id);
        /* its summaries: diverged, slope null */
        size_t si = ct_dlog_find(d, 0, "summary", id);
        ck_assert_uint_lt(si, d->n);
        char v[32];
        for (; si < d->n; si = ct_dlog_find(d, si + 1, "summary", id)) {
            ck_assert_str_eq(ct_l_str(&d->l[si], "verdict", v, sizeof v), "diverged");
            ck_assert(isnan(ct_l_num(&d->l[si], "slope")));
        }
        /* freed as diverged, at once: before the next proposal */
        size_t fi = ct_dlog_find(d, 0, "free", id);
        ck_assert_uint_lt(fi, ci);
        ck_assert_uint_lt(fi,
                          ct_dlog_find(d, ct_dlog_find(d, 0, "fork", id), "propose", UINT32_MAX));
        ck_assert_msg(ct_l_reason_has(&d->l[fi], "diverged"), "%s", d->l[fi].text);
        /* the searcher was told: the worst */
        size_t oi = ct_dlog_find(d, 0, "observe", id);
        ck_assert_uint_lt(oi, ci);
        ck_assert(isnan(ct_l_num(&d->l[oi], "slope")));
        ck_assert_str_eq(ct_l_str(&d->l[oi], "verdict", v, sizeof v), "diverged");
    }
    fprintf(stderr, "diverging_trials: %d +Inf and %d NaN trials of %u\n", n_inf, n_nan,
            r.res.trials);
    ck_assert_msg(n_inf >= 1, "precondition: no trial exploded to +Inf");
    ck_assert_msg(n_nan >= 1, "precondition: no trial went NaN");
    /* a converging setting below the divergence edge was committed */
    char v[32];
    ck_assert_str_eq(ct_l_str(&d->l[ci], "verdict", v, sizeof v), "converging");
    ck_assert(ct_l_sub(&d->l[ci], "tunables", "lr") < LR_BOOM);
    /* and trained: tests after the commit with finite accuracy, rising */
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

START_TEST(test_diverged_first_trial)
{
    /* lr in [0.2, 3]: most settings diverge, and so does the first proposal.
     * A diverged trial has nothing to resume, and divergence shows at any
     * trial time, so it must not make the trial time grow: the trial time
     * doubles only while some surviving trial has not converged yet, and the
     * next trial runs the same trial time. */
    mlt_job_t job;
    ct_job_make(&job, "tunables.lr.min", "0.2", "tunables.lr.max", "3", "tunables.lr.default",
                "0.25", "tuner.retune_tests", "0", "stop.max_epochs", "3", "seed", "2", NULL);
    run_t r;
    ct_run_job(&job, ct_script_new(&job), &r);
    const dlog_t *d = &r.log;
    size_t s0 = ct_dlog_find(d, 0, "summary", UINT32_MAX);
    ck_assert_uint_lt(s0, d->n);
    char v[32];
    ck_assert_msg(strcmp(ct_l_str(&d->l[s0], "verdict", v, sizeof v), "diverged") == 0,
                  "precondition: the first trial diverges: %s", d->l[s0].text);
    ck_assert_msg(r.rc == 0, "%s", r.res.reason);
    /* at each doubling, some trial of the search is alive to be resumed */
    bool alive[MAXB] = {false};
    size_t n_alive = 0, ci = ct_dlog_find(d, 0, "commit", UINT32_MAX);
    for (size_t i = 0; i < ci; i++) {
        const line_t *l = &d->l[i];
        if (ct_is_trial_fork(l)) {
            alive[l->branch] = true;
            n_alive++;
        } else if (ct_l_is(l, "free") && alive[l->branch]) {
            alive[l->branch] = false;
            n_alive--;
        } else if (ct_l_is(l, "trial_time") && ct_l_reason_has(l, "doubled")) {
            ck_assert_msg(n_alive > 0,
                          "the trial time doubled to %g clocks with no surviving trial to "
                          "resume (only diverged trials so far): %s",
                          ct_l_num(l, "clocks"), l->text);
        }
    }
    /* the second trial starts at the first trial time */
    size_t t0 = ct_dlog_find(d, 0, "trial_start", UINT32_MAX);
    size_t t1 = ct_dlog_find(d, t0 + 1, "trial_start", UINT32_MAX);
    ck_assert_uint_lt(t1, d->n);
    ck_assert_msg(ct_l_num(&d->l[t1], "seconds") == ct_l_num(&d->l[t0], "seconds"),
                  "after a diverged first trial the next runs %g s, not the first's %g s",
                  ct_l_num(&d->l[t1], "seconds"), ct_l_num(&d->l[t0], "seconds"));
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
    ct_job_make(&job, "stop.max_epochs", "2.5", "test_interval", "0.7", "tuner.retune_time_factor",
                "10", NULL);
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
    ck_assert_int_eq(r.x->forks[K_TRAIN], 1);
    ck_assert_int_eq(r.x->forks[K_EVAL], 0);
    ck_assert_int_eq(r.x->forks[K_TEST], r.x->tests);
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
                "tuner.retune_time_factor", "5", "stop.max_epochs", "8", NULL);
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
                "tuner.retune_time_factor", "5", "stop.max_epochs", "8", "seed", "99", NULL);
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

static Suite *tuner_suite(void)
{
    Suite *s = suite_create("tuner");
    TCase *tc = tcase_create("search");
    tcase_add_test(tc, test_picks_best);
    tcase_add_test(tc, test_trial_time_doubles);
    tcase_add_test(tc, test_diverging_trials);
    tcase_add_test(tc, test_diverged_first_trial);
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
