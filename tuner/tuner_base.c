/* tuner_base.c - the tuning logics MLtuner is compared against, on the same
 * branch machinery and executor (tuner.h):
 *
 *  train-to-completion (Spearmint-style): the searcher proposes a setting; a
 *    branch forked from init trains with it, tested every test interval, until
 *    its validation metric stops improving (stop.plateau_tests tests, at least
 *    2) or it reaches stop.max_epochs; the searcher hears its best validation
 *    metric; the next setting starts from init again. The best branch is kept.
 *  hyperband (Li et al. 2017): brackets of successive halving over random
 *    settings, resource = epochs (R = stop.max_epochs, eta = 3); each round
 *    trains the surviving branches to r_i epochs (resuming them), tests them,
 *    keeps the best 1/eta.
 *
 * Both stop at the job's target (test metric), at stop.max_time_s, or when
 * their own schedule ends (train-to-completion: after TTC_MAX_SETTINGS). */
#include <math.h>
#include <string.h>

#include "common/alloc.h"
#include "common/rng.h"
#include "tuner/declog.h"
#include "tuner/searcher.h"
#include "tuner/tuner.h"
#include "tuner/tuner_base.h"

#define TTC_MAX_SETTINGS 12
#define HB_ETA           3.0

typedef struct base {
    const mlt_job_t *job;
    const mlt_exec_t *ex;
    FILE *log;
    mlt_tuner_result_t *res;
    uint32_t next_id;
    uint32_t init;
    bool classify;
    mlt_space_t sp;            /* the tuned tunables */
    mlt_setting_t defaults;    /* the job's defaults: the untuned tunables' values */
    bool target_hit; /* the stop came from the target (not from max_time_s) */
} base_t;

/* A branch trained by a baseline. */
typedef struct run {
    uint32_t id;
    mlt_setting_t s;
    double x[MLT_JOB_MAX_TUNABLES];
    int64_t clock;
    double epoch;
    double val, test, best_val;
    bool alive;
} run_t;

static double now(const base_t *b)
{
    return b->ex->now(b->ex->ctx);
}

static bool better(const base_t *b, double x, double y)
{
    if (!isfinite(x))
        return false;
    if (!isfinite(y))
        return true;
    return b->classify ? x > y : x < y;
}

/* true when the job should end now (reason in res) */
static bool reached(base_t *b, double test)
{
    const mlt_job_t *j = b->job;
    if (b->classify && j->stop.target_accuracy > 0 && test >= j->stop.target_accuracy) {
        snprintf(b->res->reason, sizeof b->res->reason, "test accuracy %.4f reached the target %.4f",
                 test, j->stop.target_accuracy);
        b->target_hit = true;
        return true;
    }
    if (!b->classify && j->stop.target_rmse > 0 && test <= j->stop.target_rmse) {
        snprintf(b->res->reason, sizeof b->res->reason, "test RMSE %.4f reached the target %.4f",
                 test, j->stop.target_rmse);
        b->target_hit = true;
        return true;
    }
    if (j->stop.max_time_s > 0 && now(b) >= j->stop.max_time_s) {
        snprintf(b->res->reason, sizeof b->res->reason, "max_time_s %g reached", j->stop.max_time_s);
        return true;
    }
    return false;
}

static int start_run(base_t *b, run_t *r, const char *why)
{
    r->id = b->next_id++;
    r->alive = true;
    r->val = r->test = r->best_val = NAN;
    mlt_json_t j;
    mlt_declog_begin(&j, now(b), "propose", r->id);
    mlt_setting_json(b->job, &r->s, &j, "tunables");
    mlt_json_str(&j, "reason", why);
    mlt_declog_end(&j, b->log);
    mlt_declog_begin(&j, now(b), "fork", r->id);
    mlt_json_uint(&j, "parent", b->init);
    mlt_json_str(&j, "kind", "train");
    mlt_declog_end(&j, b->log);
    b->res->trials++;
    return b->ex->fork(b->ex->ctx, r->id, b->init, MLT_BRANCH_TRAIN, &r->s);
}

/* Trains r up to `epochs` epochs in all (in test_interval steps), testing after
 * each step. 0, 1 (stop) or -1; *done set when the target was reached. */
static int train_to(base_t *b, run_t *r, double epochs, int plateau, bool *done)
{
    const mlt_exec_t *ex = b->ex;
    int since_best = 0;
    while (r->epoch < epochs - 1e-9) {
        double epc = ex->epoch_clocks(ex->ctx, &r->s);
        double step = fmin(b->job->test_interval, epochs - r->epoch);
        int64_t clocks = (int64_t)ceil(step * epc - 1e-9);
        if (clocks < 1)
            clocks = 1;
        double *loss = mlt_calloc((size_t)clocks, sizeof *loss), secs = 0;
        int rc = ex->run(ex->ctx, r->id, &r->s, r->clock, clocks, r->epoch, loss, &secs);
        double last = loss[clocks - 1];
        mlt_free(loss);
        if (rc)
            return rc;
        b->res->trial_seconds += secs;
        r->clock += clocks;
        r->epoch += (double)clocks / epc;
        uint32_t tid = b->next_id++;
        if ((rc = ex->fork(ex->ctx, tid, r->id, MLT_BRANCH_TEST, &r->s)) ||
            (rc = ex->test(ex->ctx, tid, &r->val, &r->test)) || (rc = ex->free(ex->ctx, tid)))
            return rc;
        mlt_json_t j;
        mlt_declog_begin(&j, now(b), "test", r->id);
        mlt_json_num(&j, b->classify ? "accuracy" : "rmse", r->val);
        mlt_json_num(&j, b->classify ? "test_accuracy" : "test_rmse", r->test);
        mlt_json_fixed(&j, "epoch", r->epoch, 4);
        mlt_json_num(&j, "loss", last);
        mlt_declog_end(&j, b->log);
        if (ex->progress)
            ex->progress(ex->ctx, "searching", r->id, &r->s, r->epoch, r->val, r->test,
                         b->res->trials);
        if (better(b, r->val, r->best_val)) {
            r->best_val = r->val;
            since_best = 0;
        } else {
            since_best++;
        }
        if (reached(b, r->test)) {
            *done = true;
            return 0;
        }
        if (!isfinite(last) || !isfinite(r->val))
            return 0; /* diverged: nothing more to learn from it */
        if (plateau > 0 && since_best >= plateau)
            return 0;
    }
    return 0;
}

static int run_kill(base_t *b, run_t *r, const char *why)
{
    if (!r->alive)
        return 0;
    r->alive = false;
    mlt_json_t j;
    mlt_declog_begin(&j, now(b), "free", r->id);
    mlt_json_str(&j, "reason", why);
    mlt_declog_end(&j, b->log);
    return b->ex->free(b->ex->ctx, r->id);
}

static double objective(const base_t *b, double v)
{
    if (!isfinite(v))
        return INFINITY;
    return b->classify ? -v : v; /* the searchers minimise */
}

/* Keeps r as the best branch (freeing the previous best) or frees it. A run
 * that reached the target (force) is kept whatever its validation metric. */
static int keep_or_free(base_t *b, run_t *r, run_t *best, bool force)
{
    bool gain = better(b, r->best_val, best->best_val);
    if (force || gain || !best->alive) {
        int rc = best->alive ? run_kill(b, best, gain ? "a later setting did better"
                                                      : "a later setting reached the target")
                             : 0;
        *best = *r;
        mlt_json_t j;
        mlt_declog_begin(&j, now(b), "commit", r->id);
        mlt_setting_json(b->job, &r->s, &j, "tunables");
        mlt_json_num(&j, "val", r->best_val);
        mlt_json_str(&j, "reason", "the best setting so far");
        mlt_declog_end(&j, b->log);
        return rc;
    }
    return run_kill(b, r, "not better than the best so far");
}

static int ttc(base_t *b)
{
    mlt_search_t *se = mlt_search_new(b->job->tuner.searcher, b->sp.dims, b->sp.d,
                                      mlt_rng_mix((uint64_t)b->job->seed, 11), NULL);
    if (!se)
        return -1;
    int plateau = b->job->stop.plateau_tests > 2 ? b->job->stop.plateau_tests : 2;
    run_t best = {0};
    best.best_val = NAN;
    int rc = 0;
    bool done = false;
    for (int k = 0; k < TTC_MAX_SETTINGS && !done && !rc; k++) {
        run_t r = {0};
        bool dup = false;
        if ((rc = mlt_search_propose(se, r.x, &dup)) < 0)
            break;
        mlt_space_to_setting(&b->sp, &b->defaults, r.x, &r.s);
        if ((rc = start_run(b, &r, "train-to-completion: next setting")))
            break;
        rc = train_to(b, &r, b->job->stop.max_epochs, plateau, &done);
        if (rc)
            break;
        mlt_search_observe(se, r.x, objective(b, r.best_val));
        mlt_json_t j;
        mlt_declog_begin(&j, now(b), "observe", r.id);
        mlt_json_num(&j, "value", objective(b, r.best_val));
        mlt_declog_end(&j, b->log);
        rc = keep_or_free(b, &r, &best, done && b->target_hit);
        if (!done && reached(b, best.test))
            done = true;
    }
    mlt_search_destroy(&se);
    if (rc < 0)
        return -1;
    if (!done && !b->res->reason[0])
        snprintf(b->res->reason, sizeof b->res->reason,
                 "train-to-completion tried %d settings", TTC_MAX_SETTINGS);
    b->res->branch = best.id;
    b->res->setting = best.s;
    b->res->epoch = best.epoch;
    b->res->val = best.val;
    b->res->test = best.test;
    b->res->best_val = best.best_val;
    return rc;
}

static int cmp_run(const void *x, const void *y, void *ctx)
{
    const base_t *b = ctx;
    const run_t *p = x, *q = y;
    if (better(b, p->val, q->val))
        return -1;
    if (better(b, q->val, p->val))
        return 1;
    return 0;
}

/* insertion sort: n is small and qsort_r's comparator order is not portable */
static void sort_runs(base_t *b, run_t *v, uint32_t n)
{
    for (uint32_t i = 1; i < n; i++) {
        run_t x = v[i];
        uint32_t j = i;
        while (j > 0 && cmp_run(&x, &v[j - 1], b) < 0) {
            v[j] = v[j - 1];
            j--;
        }
        v[j] = x;
    }
}

static int hyperband(base_t *b)
{
    double R = b->job->stop.max_epochs > 0 ? b->job->stop.max_epochs : 9;
    int s_max = (int)floor(log(R / b->job->test_interval) / log(HB_ETA) + 1e-9);
    if (s_max < 0)
        s_max = 0;
    mlt_search_t *se = mlt_search_new(MLT_SEARCHER_RANDOM, b->sp.dims, b->sp.d,
                                      mlt_rng_mix((uint64_t)b->job->seed, 12), NULL);
    if (!se)
        return -1;
    run_t best = {0};
    best.best_val = NAN;
    int rc = 0;
    bool done = false;
    for (int s = s_max; s >= 0 && !done && !rc; s--) {
        uint32_t n = (uint32_t)ceil((s_max + 1.0) / (s + 1.0) * pow(HB_ETA, s));
        double r0 = R * pow(HB_ETA, -s);
        mlt_json_t j;
        mlt_declog_begin(&j, now(b), "bracket", b->init);
        mlt_json_int(&j, "s", s);
        mlt_json_uint(&j, "settings", n);
        mlt_json_sig(&j, "epochs", r0, 4);
        mlt_declog_end(&j, b->log);
        run_t *runs = mlt_calloc(n, sizeof *runs);
        for (uint32_t i = 0; i < n && !rc; i++) {
            bool dup;
            if ((rc = mlt_search_propose(se, runs[i].x, &dup)) < 0)
                break;
            mlt_space_to_setting(&b->sp, &b->defaults, runs[i].x, &runs[i].s);
            rc = start_run(b, &runs[i], "hyperband: random setting");
        }
        uint32_t alive = n;
        int hit = -1; /* the run that reached the target */
        for (int i = 0; i <= s && !rc && !done; i++) {
            double ri = r0 * pow(HB_ETA, i);
            for (uint32_t k = 0; k < alive && !rc && !done; k++) {
                rc = train_to(b, &runs[k], ri, 0, &done);
                if (done && b->target_hit)
                    hit = (int)k;
            }
            if (rc || done)
                break;
            sort_runs(b, runs, alive);
            uint32_t keep = (uint32_t)floor(alive / HB_ETA);
            if (i == s || keep < 1)
                keep = 1;
            for (uint32_t k = keep; k < alive && !rc; k++)
                rc = run_kill(b, &runs[k], "successive halving: not in the best 1/eta");
            alive = keep;
        }
        if (hit >= 0) {
            /* the target was reached: keep that run, free the rest of the bracket */
            for (uint32_t k = 0; k < n && !rc; k++)
                if ((int)k != hit)
                    rc = run_kill(b, &runs[k], "another setting reached the target");
            runs[hit].best_val = runs[hit].val;
            if (!rc)
                rc = keep_or_free(b, &runs[hit], &best, true);
        }
        for (uint32_t k = 0; k < n && !rc && hit < 0; k++) {
            if (!runs[k].alive)
                continue;
            runs[k].best_val = runs[k].val;
            rc = keep_or_free(b, &runs[k], &best, false);
        }
        mlt_free(runs);
        if (!done && reached(b, best.test))
            done = true;
    }
    mlt_search_destroy(&se);
    if (rc < 0)
        return -1;
    if (!done && !b->res->reason[0])
        snprintf(b->res->reason, sizeof b->res->reason, "hyperband finished its %d brackets",
                 s_max + 1);
    b->res->branch = best.id;
    b->res->setting = best.s;
    b->res->epoch = best.epoch;
    b->res->val = best.val;
    b->res->test = best.test;
    b->res->best_val = best.best_val;
    return rc;
}

int mlt_tuner_baseline(const mlt_job_t *job, const mlt_exec_t *ex, uint32_t init_branch, FILE *log,
                       mlt_tuner_result_t *res)
{
    base_t b;
    memset(&b, 0, sizeof b);
    b.job = job;
    b.ex = ex;
    b.log = log;
    b.res = res;
    b.init = init_branch;
    b.next_id = init_branch + 1;
    b.classify = !mlt_job_rmse(job);
    mlt_space_init(&b.sp, job, true);
    mlt_setting_defaults(job, &b.defaults);
    if (b.sp.d == 0) {
        snprintf(res->reason, sizeof res->reason, "no tunable is marked tune = true");
        return -1;
    }
    int rc = job->tuner.logic == MLT_LOGIC_HYPERBAND ? hyperband(&b) : ttc(&b);
    res->searches = 1;
    if (rc < 0 && !res->reason[0])
        snprintf(res->reason, sizeof res->reason, "the baseline tuning logic failed");
    return rc < 0 ? -1 : 0;
}
