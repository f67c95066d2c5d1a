/* check_tuner_baselines.c - the tuner suite's "baselines" TCase: the
 * train-to-completion and hyperband logics (tuner_base.c), read back from the
 * decision log setting by setting. Part of check_tuner (see check_tuner.c). */
#include "check_tuner.h"

#include <math.h>
#include <stdio.h>
#include <string.h>

#include "common/alloc.h"

/* ============================================================== baselines */

#define BMAXT 64 /* tests of one baseline setting, at most */

/* One setting a baseline tried, read back from the decision log (line
 * indexes are d->n when there is none). */
typedef struct bset {
    uint32_t id;
    size_t propose, fork, observe, commit, free_at;
    size_t n_free, n_observe;
    size_t nt;
    double epoch[BMAXT], val[BMAXT], test[BMAXT], loss[BMAXT];
    size_t tline[BMAXT];
    double lr;
    int s; /* hyperband: its bracket's s (-1: none) */
} bset_t;

typedef struct bsets {
    bset_t *v;
    size_t n;
} bsets_t;

static bset_t *bset_of(const bsets_t *bs, uint32_t id)
{
    for (size_t i = 0; i < bs->n; i++)
        if (bs->v[i].id == id)
            return &bs->v[i];
    return NULL;
}

/* The settings of a baseline's log; every fork, test, observe, commit and
 * free line is about a proposed setting's branch. */
static void bsets_load(const dlog_t *d, bsets_t *bs)
{
    bs->v = mlt_calloc(d->n + 1, sizeof *bs->v);
    bs->n = 0;
    int s = -1;
    for (size_t i = 0; i < d->n; i++) {
        const line_t *l = &d->l[i];
        if (ct_l_is(l, "bracket")) {
            ck_assert_uint_eq(l->branch, INIT);
            s = (int)ct_l_num(l, "s");
            continue;
        }
        bset_t *e = bset_of(bs, l->branch);
        if (ct_l_is(l, "propose")) {
            ck_assert_msg(e == NULL, "branch %u proposed twice: %s", l->branch, l->text);
            e = &bs->v[bs->n++];
            e->id = l->branch;
            e->propose = i;
            e->fork = e->observe = e->commit = e->free_at = d->n;
            e->lr = ct_l_sub(l, "tunables", "lr");
            e->s = s;
            continue;
        }
        ck_assert_msg(e != NULL, "a line about branch %u, never proposed: %s", l->branch, l->text);
        ck_assert_msg(e->n_free == 0, "a line about branch %u after its free: %s", l->branch,
                      l->text);
        if (ct_l_is(l, "fork")) {
            ck_assert_msg(e->fork == d->n, "branch %u forked twice: %s", l->branch, l->text);
            e->fork = i;
        } else if (ct_l_is(l, "test")) {
            ck_assert_msg(e->fork < i, "a test of branch %u before its fork: %s", e->id, l->text);
            ck_assert_uint_lt(e->nt, BMAXT);
            e->epoch[e->nt] = ct_l_num(l, "epoch");
            e->val[e->nt] = ct_l_num(l, "accuracy");
            e->test[e->nt] = ct_l_num(l, "test_accuracy");
            e->loss[e->nt] = ct_l_num(l, "loss");
            e->tline[e->nt++] = i;
        } else if (ct_l_is(l, "observe")) {
            e->observe = i;
            e->n_observe++;
        } else if (ct_l_is(l, "commit")) {
            e->commit = i;
        } else if (ct_l_is(l, "free")) {
            e->free_at = i;
            e->n_free++;
        } else {
            ck_abort_msg("an unexpected baseline log line: %s", l->text);
        }
    }
}

static void bsets_free(bsets_t *bs)
{
    mlt_free(bs->v);
    memset(bs, 0, sizeof *bs);
}

/* the best validation accuracy of a setting's tests (NAN: none finite) */
static double bset_best(const bset_t *e)
{
    double b = NAN;
    for (size_t k = 0; k < e->nt; k++)
        if (isfinite(e->val[k]) && (isnan(b) || e->val[k] > b))
            b = e->val[k];
    return b;
}

static double bset_last(const bset_t *e, const double *v)
{
    return e->nt ? v[e->nt - 1] : NAN;
}

/* true when a (%.6g in the log) and b agree */
static bool num_eq(double a, double b)
{
    if (isnan(a) || isnan(b))
        return isnan(a) && isnan(b);
    return fabs(a - b) <= 1e-5 * fmax(fabs(a), fabs(b)) + 1e-9;
}

/* What both baselines owe: every setting forked once from init as a train
 * branch right after its proposal, trained in test_interval steps from epoch
 * 0 (resumed, never re-forked), tested on test branches; every branch but the
 * result's freed exactly once; the result is the live branch and the last
 * commit. */
static void assert_baseline_common(const mlt_job_t *job, const run_t *r, const bsets_t *bs)
{
    const dlog_t *d = &r->log;
    const script_t *x = r->x;
    ck_assert_uint_ge(bs->n, 1);
    size_t tests = 0;
    for (size_t i = 0; i < bs->n; i++) {
        const bset_t *e = &bs->v[i];
        ck_assert_msg(e->fork == e->propose + 1,
                      "branch %u: the proposal is not followed by "
                      "its fork",
                      e->id);
        const line_t *f = &d->l[e->fork];
        char k[16];
        ck_assert_uint_eq((uint32_t)ct_l_num(f, "parent"), INIT);
        ck_assert_str_eq(ct_l_str(f, "kind", k, sizeof k), "train");
        const br_t *b = &x->b[e->id];
        ck_assert(b->exists);
        ck_assert_int_eq(b->kind, MLT_BRANCH_TRAIN);
        ck_assert_uint_eq(b->parent, INIT);
        ck_assert_msg(fabs(ct_lr_of(job, &b->s) - e->lr) <= 1e-5 * e->lr,
                      "branch %u runs lr %g, its proposal says %g", e->id, ct_lr_of(job, &b->s),
                      e->lr);
        ck_assert_msg(e->nt >= 1, "setting %u was never tested", e->id);
        for (size_t t = 0; t < e->nt; t++) {
            double prev = t ? e->epoch[t - 1] : 0;
            ck_assert_msg(e->epoch[t] > prev && e->epoch[t] <= prev + job->test_interval + 1e-4,
                          "branch %u: a test at epoch %g after %g (test_interval %g)", e->id,
                          e->epoch[t], prev, job->test_interval);
        }
        /* the executor's clocks and the log's epochs agree: each step continued
         * the branch (the executor checked the clock and data cursor) */
        double epc = ct_sx_epoch_clocks(r->x, &b->s);
        ck_assert_msg(fabs((double)b->clocks / epc - bset_last(e, e->epoch)) < 1e-3,
                      "branch %u ran %lld clocks; its last test says epoch %g", e->id,
                      (long long)b->clocks, bset_last(e, e->epoch));
        ck_assert_double_eq_tol(b->lineage, (double)b->clocks / epc, 1e-6);
        ck_assert_double_eq_tol(b->first_epoch, 0.0, 1e-12);
        tests += e->nt;
        if (e->id == r->res.branch) {
            ck_assert_msg(e->n_free == 0, "the result's branch %u was freed", e->id);
            ck_assert(b->live);
        } else {
            ck_assert_msg(e->n_free == 1, "branch %u freed %zu times", e->id, e->n_free);
            ck_assert(!b->live);
        }
    }
    ck_assert_uint_eq(bs->n, r->res.trials);
    ck_assert_int_eq(x->forks[MLT_BRANCH_TRAIN], (int)bs->n);
    ck_assert_int_eq(x->forks[MLT_BRANCH_EVAL], 0);
    ck_assert_int_eq(x->forks[MLT_BRANCH_TEST], x->tests);
    ck_assert_int_eq(x->tests, (int)tests);
    ck_assert_int_eq(x->frees, x->tests + (int)bs->n - 1);
    /* the result: the live branch, the last commit, its last test */
    const bset_t *res = bset_of(bs, r->res.branch);
    ck_assert_msg(res != NULL, "the result's branch %u is no setting's", r->res.branch);
    size_t last_commit = d->n;
    for (size_t i = 0; i < d->n; i++)
        if (ct_l_is(&d->l[i], "commit"))
            last_commit = i;
    ck_assert_uint_lt(last_commit, d->n);
    ck_assert_uint_eq(d->l[last_commit].branch, r->res.branch);
    ck_assert_msg(num_eq(r->res.val, bset_last(res, res->val)), "res.val %g, last test %g",
                  r->res.val, bset_last(res, res->val));
    ck_assert_msg(num_eq(r->res.test, bset_last(res, res->test)), "res.test %g, last test %g",
                  r->res.test, bset_last(res, res->test));
    ck_assert_double_eq_tol(r->res.epoch, bset_last(res, res->epoch), 1e-4);
    ck_assert_uint_eq(r->res.searches, 1);
    ct_assert_only_training_live(r->x, &r->res);
}

/* Train-to-completion's stopping rule for one setting: it stops after a test
 * at max_epochs, a diverged one, one at or above the target, or plateau tests
 * in a row that do not beat its best; and at no test before. */
static void assert_ttc_stop(const mlt_job_t *job, const bset_t *e, int plateau)
{
    /* the log has 6 digits: a gain there may be a tie, a tie a tiny gain;
     * lo counts the tests that surely were no gain, hi those that may not be */
    double best = NAN;
    int lo = 0, hi = 0;
    for (size_t t = 0; t < e->nt; t++) {
        double v = e->val[t];
        bool sure_gain = isfinite(v) && (isnan(best) || (v > best && !num_eq(v, best)));
        bool maybe_gain = isfinite(v) && (isnan(best) || v > best || num_eq(v, best));
        lo = maybe_gain ? 0 : lo + 1;
        hi = sure_gain ? 0 : hi + 1;
        if (isfinite(v) && (isnan(best) || v > best))
            best = v;
        bool at_max = e->epoch[t] >= job->stop.max_epochs - 1e-4;
        bool diverged = !isfinite(v) || !isfinite(e->loss[t]);
        bool target = job->stop.target_accuracy > 0 && e->test[t] >= job->stop.target_accuracy;
        if (t + 1 < e->nt)
            ck_assert_msg(!(at_max || diverged || target || lo >= plateau),
                          "setting %u went on training after the test at epoch %g "
                          "(val %g, %d tests without a gain, plateau %d)",
                          e->id, e->epoch[t], v, lo, plateau);
        else
            ck_assert_msg(at_max || diverged || target || hi >= plateau,
                          "setting %u stopped at epoch %g (val %g, %d tests without a "
                          "gain, plateau %d, max_epochs %g)",
                          e->id, e->epoch[t], v, hi, plateau, job->stop.max_epochs);
    }
}

/* Train-to-completion's bookkeeping: after each setting's tests, one observe
 * (the searcher minimises: minus its best validation accuracy), then it is
 * committed iff it beats every earlier setting's best (the first setting is
 * always committed), the previous best freed; else it is freed. Returns the
 * setting that should be the result. */
static const bset_t *assert_ttc_settings(const mlt_job_t *job, const dlog_t *d, const bsets_t *bs)
{
    int plateau = job->stop.plateau_tests > 2 ? job->stop.plateau_tests : 2;
    const bset_t *best = NULL;
    double best_v = NAN;
    for (size_t i = 0; i < bs->n; i++) {
        const bset_t *e = &bs->v[i];
        assert_ttc_stop(job, e, plateau);
        ck_assert_msg(e->n_observe == 1, "setting %u observed %zu times", e->id, e->n_observe);
        ck_assert_uint_gt(e->observe, e->tline[e->nt - 1]);
        if (i + 1 < bs->n)
            ck_assert_uint_lt(e->observe, bs->v[i + 1].propose);
        double bv = bset_best(e);
        double ov = ct_l_num(&d->l[e->observe], "value");
        ck_assert_msg(isnan(bv) ? isnan(ov) : num_eq(ov, -bv),
                      "setting %u: the searcher heard %g, its best accuracy is %g", e->id, ov, bv);
        bool wins = best == NULL || (isfinite(bv) && (isnan(best_v) || bv > best_v));
        /* equal in the log's 6 digits: either way is right */
        if (best && isfinite(bv) && num_eq(bv, best_v))
            wins = e->commit < d->n;
        if (wins) {
            ck_assert_msg(e->commit < d->n,
                          "setting %u (best %g) beats the best so far %g, "
                          "but is not committed",
                          e->id, bv, best_v);
            ck_assert_uint_gt(e->commit, e->observe);
            if (i + 1 < bs->n)
                ck_assert_uint_lt(e->commit, bs->v[i + 1].propose);
            if (best) {
                ck_assert_msg(best->free_at > e->observe && best->free_at < e->commit,
                              "the old best %u was not freed when %u replaced it", best->id, e->id);
                ck_assert(ct_l_reason_has(&d->l[best->free_at], "did better"));
            }
            best = e;
            best_v = bv;
        } else {
            ck_assert_msg(e->commit == d->n, "setting %u (best %g) was committed over %g", e->id,
                          bv, best_v);
            ck_assert_msg(e->free_at > e->observe && e->n_free == 1,
                          "setting %u, not the best, was not freed after its observe", e->id);
            if (i + 1 < bs->n)
                ck_assert_uint_lt(e->free_at, bs->v[i + 1].propose);
            ck_assert(ct_l_reason_has(&d->l[e->free_at], "not better"));
        }
    }
    return best;
}

START_TEST(test_ttc_settings)
{
    /* train-to-completion, for a few seeds: up to its setting budget, each
     * setting forked from init and trained to max_epochs with a test every
     * epoch (the synthetic accuracy only rises, so no plateau); the best is
     * kept, near the optimum */
    static const char *const seeds[] = {"1", "2", "3"};
    for (size_t si = 0; si < 3; si++) {
        mlt_job_t job;
        ct_job_make(&job, "tuner.logic", "train-to-completion", "seed", seeds[si],
                    "stop.max_epochs", "3", NULL);
        run_t r;
        ct_run_job(&job, ct_script_new(&job), &r);
        const dlog_t *d = &r.log;
        ck_assert_msg(r.rc == 0, "seed %s: %s", seeds[si], r.res.reason);
        bsets_t bs;
        bsets_load(d, &bs);
        ck_assert_uint_eq(ct_dlog_count(d, 0, d->n, "bracket"), 0);
        ck_assert_uint_ge(bs.n, 4);
        char why[96];
        snprintf(why, sizeof why, "train-to-completion tried %zu settings", bs.n);
        ck_assert_msg(strstr(r.res.reason, why) != NULL, "seed %s: %s", seeds[si], r.res.reason);
        assert_baseline_common(&job, &r, &bs);
        const bset_t *best = assert_ttc_settings(&job, d, &bs);
        ck_assert_uint_eq(best->id, r.res.branch);
        ck_assert_msg(num_eq(r.res.best_val, bset_best(best)), "res.best_val %g, best %g",
                      r.res.best_val, bset_best(best));
        /* every setting that did not diverge trained to max_epochs */
        for (size_t i = 0; i < bs.n; i++)
            if (isfinite(bset_last(&bs.v[i], bs.v[i].val)))
                ck_assert_double_eq_tol(bset_last(&bs.v[i], bs.v[i].epoch), 3.0, 1e-4);
        double lr = ct_lr_of(&job, &r.res.setting);
        fprintf(stderr, "ttc seed %s: kept lr %g momentum %g of %zu settings, val %g\n", seeds[si],
                lr, mlt_setting_get(&job, &r.res.setting, "momentum", NAN), bs.n, r.res.val);
        ck_assert_msg(lr >= LR_OPT / 3 && lr <= LR_OPT * 3,
                      "seed %s: kept lr %g, the optimum is %g", seeds[si], lr, LR_OPT);
        bsets_free(&bs);
        ct_run_free(&r);
        mlt_job_free(&job);
    }
}
END_TEST

/* validation accuracy rising to a peak at epoch 2, then 0.05 below it, flat;
 * slightly better the faster the setting learns */
static void metric_peak(const script_t *x, const br_t *b, double *val, double *test)
{
    if (isnan(b->q)) {
        *val = *test = NAN;
        return;
    }
    double e = b->lineage;
    *val = (e <= 2 + 1e-9 ? 0.4 + 0.1 * e : 0.55) + ct_rate_of(x, &b->s, b->data_pos);
    *test = *val - 0.002;
}

START_TEST(test_ttc_plateau)
{
    /* the validation accuracy peaks at epoch 2: with stop.plateau_tests P
     * (at least 2), every setting stops P tests after the peak, long before
     * max_epochs; a diverged one after its first test */
    static const struct {
        const char *plateau;
        size_t tests;
    } cases[] = {{"0", 4}, {"1", 4}, {"2", 4}, {"3", 5}};
    for (size_t ci = 0; ci < sizeof cases / sizeof cases[0]; ci++) {
        mlt_job_t job;
        ct_job_make(&job, "tuner.logic", "train-to-completion", "stop.plateau_tests",
                    cases[ci].plateau, "stop.max_epochs", "12", NULL);
        script_t *x = ct_script_new(&job);
        x->metric = metric_peak;
        run_t r;
        ct_run_job(&job, x, &r);
        const dlog_t *d = &r.log;
        ck_assert_msg(r.rc == 0, "%s", r.res.reason);
        bsets_t bs;
        bsets_load(d, &bs);
        assert_baseline_common(&job, &r, &bs);
        const bset_t *best = assert_ttc_settings(&job, d, &bs);
        ck_assert_uint_eq(best->id, r.res.branch);
        size_t plateaued = 0;
        for (size_t i = 0; i < bs.n; i++) {
            const bset_t *e = &bs.v[i];
            if (!isfinite(e->val[0])) {
                ck_assert_uint_eq(e->nt, 1);
                continue;
            }
            plateaued++;
            ck_assert_msg(e->nt == cases[ci].tests,
                          "plateau_tests %s: setting %u had %zu tests, not %zu", cases[ci].plateau,
                          e->id, e->nt, cases[ci].tests);
            ck_assert_double_eq_tol(e->epoch[e->nt - 1], (double)cases[ci].tests, 1e-4);
        }
        ck_assert_uint_ge(plateaued, 2);
        /* the kept branch stopped where it plateaued; its best was at epoch 2 */
        ck_assert(num_eq(r.res.best_val, best->val[1]));
        ck_assert(r.res.val < r.res.best_val);
        bsets_free(&bs);
        ct_run_free(&r);
        mlt_job_free(&job);
    }
}
END_TEST

/* The last test line, checked to be the first to reach the target; returns
 * its index. Nothing trains or is proposed after it. */
static size_t assert_stopped_at_target(const mlt_job_t *job, const run_t *r)
{
    const dlog_t *d = &r->log;
    double target = job->stop.target_accuracy;
    ck_assert_msg(r->rc == 0, "%s", r->res.reason);
    ck_assert_msg(strstr(r->res.reason, "reached the target") != NULL, "%s", r->res.reason);
    size_t last = d->n;
    for (size_t i = ct_dlog_find(d, 0, "test", UINT32_MAX); i < d->n;
         i = ct_dlog_find(d, i + 1, "test", UINT32_MAX)) {
        if (last < d->n)
            ck_assert_msg(!(ct_l_num(&d->l[last], "test_accuracy") >= target),
                          "the job went on after reaching the target: %s", d->l[last].text);
        last = i;
    }
    ck_assert_uint_lt(last, d->n);
    ck_assert_msg(ct_l_num(&d->l[last], "test_accuracy") >= target, "the last test: %s",
                  d->l[last].text);
    ck_assert_int_gt(r->x->last_test_call, r->x->last_run_call);
    for (size_t i = last + 1; i < d->n; i++)
        ck_assert_msg(ct_l_is(&d->l[i], "observe") || ct_l_is(&d->l[i], "commit") ||
                          ct_l_is(&d->l[i], "free"),
                      "after reaching the target: %s", d->l[i].text);
    /* the branch that reached it is the result, live, with its metrics */
    ck_assert_msg(r->res.branch == d->l[last].branch,
                  "branch %u reached the target (%s), yet the result is branch %u (test %g)",
                  d->l[last].branch, d->l[last].text, r->res.branch, r->res.test);
    ck_assert_msg(r->res.test >= target, "res.test %g is below the target %g (%s)", r->res.test,
                  target, r->res.reason);
    ck_assert(num_eq(r->res.test, ct_l_num(&d->l[last], "test_accuracy")));
    ct_assert_only_training_live(r->x, &r->res);
    return last;
}

START_TEST(test_ttc_target)
{
    /* a reachable target: train-to-completion stops at the first test that
     * reaches it, keeping that branch, before its setting budget is spent */
    mlt_job_t job;
    ct_job_make(&job, "tuner.logic", "train-to-completion", "stop.target_accuracy", "0.6",
                "stop.max_epochs", "6", NULL);
    run_t r;
    ct_run_job(&job, ct_script_new(&job), &r);
    const dlog_t *d = &r.log;
    size_t last = assert_stopped_at_target(&job, &r);
    bsets_t bs;
    bsets_load(d, &bs);
    assert_baseline_common(&job, &r, &bs);
    (void)assert_ttc_settings(&job, d, &bs);
    const bset_t *hit = bset_of(&bs, d->l[last].branch);
    ck_assert(hit == &bs.v[bs.n - 1]);
    ck_assert(hit->epoch[hit->nt - 1] < 6 - 1e-4);
    /* a later run of the same job without the target tries more settings */
    mlt_job_t job2;
    ct_job_make(&job2, "tuner.logic", "train-to-completion", "stop.max_epochs", "6", NULL);
    run_t r2;
    ct_run_job(&job2, ct_script_new(&job2), &r2);
    ck_assert_msg(r2.rc == 0, "%s", r2.res.reason);
    ck_assert_uint_lt(r.res.trials, r2.res.trials);
    fprintf(stderr, "ttc target: stopped after %u settings at epoch %g (no target: %u)\n",
            r.res.trials, r.res.epoch, r2.res.trials);
    ct_run_free(&r2);
    mlt_job_free(&job2);
    bsets_free(&bs);
    ct_run_free(&r);
    mlt_job_free(&job);
}
END_TEST

/* 3^k */
static long pow3(int k)
{
    long p = 1;
    while (k-- > 0)
        p *= 3;
    return p;
}

START_TEST(test_hyperband_brackets)
{
    /* hyperband with R = max_epochs (3, then 9) and eta 3, a test every
     * epoch: brackets s = s_max..0 of ceil((s_max+1)/(s+1) 3^s) random
     * settings starting at R 3^-s epochs; after each rung the worse 2/3 are
     * freed and the rest resumed to 3x the epochs; the last rung keeps one;
     * the best bracket winner is the result */
    static const int Rs[] = {3, 9};
    for (size_t ri = 0; ri < 2; ri++) {
        int R = Rs[ri];
        char rs[16];
        snprintf(rs, sizeof rs, "%d", R);
        mlt_job_t job;
        ct_job_make(&job, "tuner.logic", "hyperband", "stop.max_epochs", rs,
                    "tunables.batch_size.default", "512", NULL);
        run_t r;
        ct_run_job(&job, ct_script_new(&job), &r);
        const dlog_t *d = &r.log;
        ck_assert_msg(r.rc == 0, "R %d: %s", R, r.res.reason);
        bsets_t bs;
        bsets_load(d, &bs);
        assert_baseline_common(&job, &r, &bs);
        int s_max = 0;
        while (pow3(s_max + 1) <= R)
            s_max++;
        /* the brackets */
        size_t br[16], nb = 0;
        for (size_t i = ct_dlog_find(d, 0, "bracket", UINT32_MAX); i < d->n;
             i = ct_dlog_find(d, i + 1, "bracket", UINT32_MAX)) {
            ck_assert_uint_lt(nb, 16);
            br[nb++] = i;
        }
        ck_assert_uint_eq(nb, (size_t)s_max + 1);
        char why[96];
        snprintf(why, sizeof why, "hyperband finished its %d brackets", s_max + 1);
        ck_assert_msg(strstr(r.res.reason, why) != NULL, "R %d: %s", R, r.res.reason);
        size_t halving_frees = 0, expect_halving = 0;
        const bset_t *winners[16];
        for (size_t bi = 0; bi < nb; bi++) {
            const line_t *bl = &d->l[br[bi]];
            int s = s_max - (int)bi;
            ck_assert_msg((int)ct_l_num(bl, "s") == s, "R %d: bracket %zu: %s", R, bi, bl->text);
            long n = ((s_max + 1) * pow3(s) + s) / (s + 1); /* the ceiling */
            ck_assert_msg((long)ct_l_num(bl, "settings") == n, "R %d: %s (expected %ld settings)",
                          R, bl->text, n);
            ck_assert_double_eq_tol(ct_l_num(bl, "epochs"), (double)R / (double)pow3(s), 1e-3);
            size_t end = bi + 1 < nb ? br[bi + 1] : d->n;
            ck_assert_uint_eq(ct_dlog_count(d, br[bi], end, "propose"), (size_t)n);
            /* its settings (in proposal order) */
            const bset_t *m[256];
            size_t nm = 0;
            for (size_t i = 0; i < bs.n; i++)
                if (bs.v[i].s == s) {
                    ck_assert(bs.v[i].propose > br[bi] && bs.v[i].propose < end);
                    ck_assert_uint_lt(nm, 256);
                    m[nm++] = &bs.v[i];
                }
            ck_assert_uint_eq(nm, (size_t)n);
            /* rung i: n_i = floor(n / 3^i) settings trained to r_i = R 3^(i-s)
             * epochs; all but n_(i+1) of them (all but one at the last rung)
             * freed by successive halving, each no better than a survivor */
            winners[bi] = NULL;
            for (int i = 0; i <= s; i++) {
                double r_i = (double)R * (double)pow3(i) / (double)pow3(s);
                long n_i = n / pow3(i), n_next = i < s ? n / pow3(i + 1) : 1;
                if (n_next < 1)
                    n_next = 1;
                long trained = 0, freed = 0;
                double worst_kept = INFINITY, best_freed = -INFINITY;
                for (size_t k = 0; k < nm; k++) {
                    const bset_t *e = m[k];
                    size_t t = 0;
                    while (t < e->nt && e->epoch[t] < r_i - 1e-4)
                        t++;
                    if (t == e->nt)
                        continue; /* freed at an earlier rung */
                    ck_assert_double_eq_tol(e->epoch[t], r_i, 1e-4);
                    trained++;
                    double v = isfinite(e->val[t]) ? e->val[t] : -INFINITY;
                    bool halved = t + 1 == e->nt && e->n_free == 1 &&
                                  ct_l_reason_has(&d->l[e->free_at], "successive halving");
                    if (halved) {
                        freed++;
                        best_freed = fmax(best_freed, v);
                        /* freed once the rung's tests are all done */
                        for (size_t k2 = 0; k2 < nm; k2++) {
                            const bset_t *o = m[k2];
                            for (size_t t2 = 0; t2 < o->nt; t2++)
                                if (fabs(o->epoch[t2] - r_i) < 1e-4)
                                    ck_assert_msg(o->tline[t2] < e->free_at,
                                                  "R %d: branch %u freed before branch %u's "
                                                  "test at rung %d",
                                                  R, e->id, o->id, i);
                        }
                    } else {
                        worst_kept = fmin(worst_kept, v);
                        if (i == s) {
                            ck_assert_msg(winners[bi] == NULL,
                                          "R %d: bracket s=%d has two "
                                          "winners",
                                          R, s);
                            winners[bi] = e;
                        }
                    }
                }
                ck_assert_msg(trained == n_i,
                              "R %d: bracket s=%d rung %d trained %ld settings "
                              "to %g epochs, expected %ld",
                              R, s, i, trained, r_i, n_i);
                ck_assert_msg(freed == n_i - n_next,
                              "R %d: bracket s=%d rung %d freed %ld of "
                              "%ld by successive halving, expected %ld",
                              R, s, i, freed, n_i, n_i - n_next);
                ck_assert_msg(best_freed <= worst_kept,
                              "R %d: bracket s=%d rung %d freed a "
                              "setting (%g) better than a survivor (%g)",
                              R, s, i, best_freed, worst_kept);
                halving_frees += (size_t)freed;
            }
            expect_halving += (size_t)n - 1;
            ck_assert_msg(winners[bi] != NULL, "R %d: bracket s=%d has no winner", R, s);
            ck_assert_double_eq_tol(bset_last(winners[bi], winners[bi]->epoch), (double)R, 1e-4);
            /* the winner was resumed, not restarted: one fork, and one test per
             * epoch from the first to R (the executor checked every run
             * continues its branch's clock and data cursor) */
            ck_assert_uint_eq(winners[bi]->nt, (size_t)R);
            /* the winner is committed or freed after the bracket's last test */
            size_t last_test = 0;
            for (size_t k = 0; k < nm; k++)
                last_test =
                    m[k]->tline[m[k]->nt - 1] > last_test ? m[k]->tline[m[k]->nt - 1] : last_test;
            if (winners[bi]->n_free)
                ck_assert(winners[bi]->free_at > last_test);
            if (winners[bi]->id != r.res.branch && winners[bi]->commit == d->n)
                ck_assert(ct_l_reason_has(&d->l[winners[bi]->free_at], "not better"));
        }
        ck_assert_uint_eq(ct_dlog_count(d, 0, d->n, "free"), bs.n - 1);
        ck_assert_uint_eq(halving_frees, expect_halving);
        size_t counted = 0;
        for (size_t i = 0; i < d->n; i++)
            counted += ct_l_is(&d->l[i], "free") && ct_l_reason_has(&d->l[i], "successive halving");
        ck_assert_uint_eq(counted, expect_halving);
        /* the result: the bracket winner with the best final accuracy */
        const bset_t *kept = bset_of(&bs, r.res.branch);
        bool is_winner = false;
        for (size_t bi = 0; bi < nb; bi++) {
            is_winner |= winners[bi] == kept;
            double v = bset_last(winners[bi], winners[bi]->val);
            ck_assert_msg(
                !(v > bset_last(kept, kept->val)) || num_eq(v, bset_last(kept, kept->val)),
                "R %d: bracket s=%d's winner %u (val %g) beats the result %u (val %g)", R,
                s_max - (int)bi, winners[bi]->id, v, kept->id, bset_last(kept, kept->val));
        }
        ck_assert_msg(is_winner, "R %d: the result %u won no bracket", R, kept->id);
        fprintf(stderr, "hyperband R %d: %zu settings, kept lr %g val %g\n", R, bs.n,
                ct_lr_of(&job, &r.res.setting), r.res.val);
        bsets_free(&bs);
        ct_run_free(&r);
        mlt_job_free(&job);
    }
}
END_TEST

START_TEST(test_hyperband_deterministic)
{
    /* the same seed, the same decision log, byte for byte; another seed,
     * other settings */
    mlt_job_t job, job2;
    ct_job_make(&job, "tuner.logic", "hyperband", "stop.max_epochs", "3", NULL);
    ct_job_make(&job2, "tuner.logic", "hyperband", "stop.max_epochs", "3", "seed", "99", NULL);
    run_t a, b, c;
    ct_run_replay(&job, &a, false);
    ct_run_replay(&job, &b, true);
    ct_run_replay(&job2, &c, false);
    ck_assert_msg(a.rc == 0, "%s", a.res.reason);
    ck_assert_int_eq(a.rc, b.rc);
    ck_assert_uint_gt(ct_dlog_count(&a.log, 0, a.log.n, "bracket"), 0);
    ck_assert_uint_eq(a.log.n, b.log.n);
    for (size_t i = 0; i < a.log.n; i++)
        ck_assert_msg(strcmp(a.log.l[i].text, b.log.l[i].text) == 0, "line %zu differs:\n%s\n%s",
                      i + 1, a.log.l[i].text, b.log.l[i].text);
    ck_assert_str_eq(a.log.raw, b.log.raw);
    ck_assert_uint_eq(a.res.branch, b.res.branch);
    ck_assert(memcmp(&a.res.setting, &b.res.setting, sizeof a.res.setting) == 0);
    ck_assert_str_eq(a.res.reason, b.res.reason);
    ck_assert_int_gt(b.x->progress, 0);
    ck_assert_msg(strcmp(a.log.raw, c.log.raw) != 0, "the seed does not change the settings");
    ct_assert_only_training_live(a.x, &a.res);
    ct_assert_only_training_live(c.x, &c.res);
    ct_run_free(&a);
    ct_run_free(&b);
    ct_run_free(&c);
    mlt_job_free(&job);
    mlt_job_free(&job2);
}
END_TEST

START_TEST(test_hyperband_target)
{
    /* a reachable target: hyperband stops at the first test that reaches it,
     * before its brackets are done, and keeps that branch */
    mlt_job_t job;
    ct_job_make(&job, "tuner.logic", "hyperband", "stop.max_epochs", "9", "stop.target_accuracy",
                "0.6", "tunables.batch_size.default", "512", NULL);
    run_t r;
    ct_run_job(&job, ct_script_new(&job), &r);
    (void)assert_stopped_at_target(&job, &r);
    bsets_t bs;
    bsets_load(&r.log, &bs);
    assert_baseline_common(&job, &r, &bs);
    ck_assert_uint_lt(r.res.trials, 9 + 5 + 3);
    fprintf(stderr, "hyperband target: stopped after %u settings, %zu brackets\n", r.res.trials,
            ct_dlog_count(&r.log, 0, r.log.n, "bracket"));
    bsets_free(&bs);
    ct_run_free(&r);
    mlt_job_free(&job);
}
END_TEST

/* the first setting (branch INIT + 1) has the best validation accuracy but a
 * test accuracy below 0.75; every other one reaches 0.75 on test */
static void metric_split(const script_t *x, const br_t *b, double *val, double *test)
{
    (void)x;
    if (b->parent == INIT + 1) {
        *val = 0.8;
        *test = 0.7;
    } else {
        *val = 0.6;
        *test = 0.76;
    }
}

/* The branch whose test reaches the target ends the job, so it is the result
 * (live, its metrics reported), even when an earlier setting had a better
 * validation accuracy: the reason and res.test must agree. */
static void keeps_target_branch(const char *logic)
{
    mlt_job_t job;
    ct_job_make(&job, "tuner.logic", logic, "stop.max_epochs", "3", "stop.target_accuracy", "0.75",
                NULL);
    script_t *x = ct_script_new(&job);
    x->metric = metric_split;
    run_t r;
    ct_run_job(&job, x, &r);
    ck_assert_msg(r.rc == 0, "%s: %s", logic, r.res.reason);
    size_t last = r.log.n;
    for (size_t i = 0; i < r.log.n; i++)
        if (ct_l_is(&r.log.l[i], "test"))
            last = i;
    ck_assert_uint_lt(last, r.log.n);
    ck_assert_msg(r.res.branch == r.log.l[last].branch && r.res.test >= 0.75,
                  "%s: branch %u reached the target (\"%s\"), but it was freed and the result "
                  "is branch %u with test accuracy %g",
                  logic, r.log.l[last].branch, r.res.reason, r.res.branch, r.res.test);
    (void)assert_stopped_at_target(&job, &r);
    ct_run_free(&r);
    mlt_job_free(&job);
}

START_TEST(test_ttc_keeps_target_branch)
{
    keeps_target_branch("train-to-completion");
}
END_TEST

START_TEST(test_hyperband_keeps_target_branch)
{
    keeps_target_branch("hyperband");
}
END_TEST

void ct_baselines_tcases(Suite *s)
{
    TCase *tc = tcase_create("baselines");
    tcase_add_test(tc, test_ttc_settings);
    tcase_add_test(tc, test_ttc_plateau);
    tcase_add_test(tc, test_ttc_target);
    tcase_add_test(tc, test_hyperband_brackets);
    tcase_add_test(tc, test_hyperband_deterministic);
    tcase_add_test(tc, test_hyperband_target);
    tcase_add_test(tc, test_ttc_keeps_target_branch);
    tcase_add_test(tc, test_hyperband_keeps_target_branch);
    suite_add_tcase(s, tc);
}
