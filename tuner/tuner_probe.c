/* tuner_probe.c - the tuner's cheap measurements around a search: the
 * learning-rate range test that centres the first search (and measures the
 * starting loss and the default setting's speed), the first search's design
 * around its result, and the paired learning-rate re-tune of the training
 * branch. See tuner.h for where each fits in the logic. */
#include "tuner/tuner.h"

#include <math.h>
#include <string.h>

#include "common/alloc.h"
#include "tuner/declog.h"
#include "tuner/summary.h"
#include "tuner/tuner_int.h"

/* ---- the learning-rate range test --------------------------------------------- *
 * One branch from the initial weights at the default setting, its learning
 * rate raised geometrically from the range's min to its max, RANGE_PER_DECADE
 * steps a decade, a few clocks each (Smith 2017, "Cyclical learning rates").
 * The loss stays flat while the rate is too small to matter, falls, and
 * blows up once the rate is past stability. The test stops at the blow-up.
 * Its first step (the smallest rate, which changes nearly nothing) is the
 * starting loss. The rate it reports lies between where the loss fell
 * fastest and where it was lowest (over the steps before the one that
 * stopped the test), at their geometric mean: the steepest fall is a rate a
 * step behind the best one (the loss lags the rate), the lowest a rate close
 * to the blow-up. A loss that never fell beyond RANGE_FALL_SD times the noise of
 * a step (a model whose loss moves only after epochs, such as matrix
 * factorisation from small factors) gives no rate, and the design centres on
 * the default. */

#define RANGE_PER_DECADE 4
#define RANGE_MIN_STEPS 8
#define RANGE_MAX_STEPS 64
#define RANGE_STOP_RISE 1.5 /* stop once a step's loss is above this x the start */
#define RANGE_FALL_SD 4.0   /* no rate unless the loss fell by this many step noises */

/* The starting loss without a range test: an eval branch at lr 0, whose
 * second half also measures the default setting's speed. */
int mlt_tuner__starting_loss(tuner_t *t, uint32_t init)
{
    mlt_setting_t s;
    mlt_setting_defaults(t->job, &s);
    mlt_setting_set(t->job, &s, "lr", 0); /* an eval branch changes nothing */
    uint32_t id = t->next_id++;
    int64_t clocks = t->job->tuner.min_trial_clocks < 20 ? t->job->tuner.min_trial_clocks : 20;
    if (clocks < 2)
        clocks = 2;
    double loss[20], secs = 0;
    mlt_json_t j;
    mlt_tuner__log_begin(t, &j, "fork", id);
    mlt_json_uint(&j, "parent", init);
    mlt_json_str(&j, "kind", "eval");
    mlt_json_str(&j, "reason", "starting loss, lr 0");
    mlt_tuner__log_end(t, &j);
    int rc = t->ex->fork(t->ex->ctx, id, init, MLT_BRANCH_EVAL, &s);
    int64_t half = clocks / 2;
    if (!rc)
        rc = t->ex->run(t->ex->ctx, id, &s, 0, half, 0.0, loss, &secs);
    if (!rc)
        rc = t->ex->run(t->ex->ctx, id, &s, half, clocks - half,
                        (double)half / t->ex->epoch_clocks(t->ex->ctx, &s), loss + half, &secs);
    if (!rc)
        mlt_tuner__rate_note(t, &s, clocks - half, secs);
    if (rc)
        return rc;
    t->res->trial_seconds += secs;
    t->start_loss = mlt_tuner__tail_loss(loss, clocks);
    mlt_tuner__log_begin(t, &j, "start", id);
    mlt_json_num(&j, "loss", t->start_loss);
    mlt_json_int(&j, "clocks", clocks);
    mlt_tuner__log_end(t, &j);
    mlt_tuner__log_reason(t, "free", id, "starting loss measured");
    return t->ex->free(t->ex->ctx, id);
}

#define STOP_TOP "the range's top reached"

/* true when the range test stopped at a step past the blow-up */
static bool stopped_past_blowup(const char *why)
{
    return strcmp(why, STOP_TOP) != 0;
}

int mlt_tuner__range_test(tuner_t *t, uint32_t parent, double *lr_star)
{
    *lr_star = NAN;
    int k = t->lr_dim;
    const mlt_job_t *j = t->job;
    if (k < 0 || t->sp.dims[k].kind == MLT_TUNABLE_DISCRETE || j->tuner.range_clocks <= 0 ||
        !t->ex->tune)
        return mlt_tuner__starting_loss(t, parent);
    const mlt_tunable_t *dm = &t->sp.dims[k];
    double lo = dm->min, hi = dm->max;
    if (!(lo > 0) || !(hi > lo))
        return mlt_tuner__starting_loss(t, parent);
    double decades = log10(hi / lo);
    int steps = (int)ceil(RANGE_PER_DECADE * decades) + 1;
    steps = steps < RANGE_MIN_STEPS ? RANGE_MIN_STEPS : steps > RANGE_MAX_STEPS ? RANGE_MAX_STEPS
                                                                                 : steps;
    int64_t per = j->tuner.range_clocks / steps;
    if (per < 2)
        per = 2;
    mlt_setting_t s;
    mlt_setting_defaults(j, &s);
    double lrs[RANGE_MAX_STEPS], L[RANGE_MAX_STEPS];
    double *loss = mlt_calloc((size_t)per, sizeof *loss);
    uint32_t id = t->next_id++;
    mlt_setting_set(j, &s, "lr", lo);
    mlt_json_t jl;
    mlt_tuner__log_begin(t, &jl, "fork", id);
    mlt_json_uint(&jl, "parent", parent);
    mlt_json_str(&jl, "kind", "range_test");
    mlt_json_num(&jl, "lr_min", lo);
    mlt_json_num(&jl, "lr_max", hi);
    mlt_json_int(&jl, "steps", steps);
    mlt_json_int(&jl, "clocks", per);
    mlt_tuner__log_end(t, &jl);
    int rc = t->ex->fork(t->ex->ctx, id, parent, MLT_BRANCH_TRAIN, &s);
    if (!rc && t->ex->progress) /* the first search begins with it */
        t->ex->progress(t->ex->ctx, "searching", id, &s, 0.0, NAN, NAN, 0);
    double epc = t->ex->epoch_clocks(t->ex->ctx, &s);
    int n = 0;
    double lmin = INFINITY, spent = 0;
    const char *why = STOP_TOP;
    for (int i = 0; i < steps && !rc; i++) {
        lrs[i] = lo * pow(hi / lo, (double)i / (double)(steps - 1));
        if (i > 0) {
            mlt_setting_set(j, &s, "lr", lrs[i]);
            if ((rc = t->ex->tune(t->ex->ctx, id, &s)))
                break;
        }
        double secs = 0;
        rc = t->ex->run(t->ex->ctx, id, &s, (int64_t)i * per, per, (double)i * (double)per / epc,
                        loss, &secs);
        if (rc)
            break;
        t->res->trial_seconds += secs;
        spent += secs;
        if (i > 0) /* the first clocks of a job are slower: first pulls, threads starting */
            mlt_tuner__rate_note(t, &s, per, secs);
        double sum = 0;
        for (int64_t c = 0; c < per; c++)
            sum += loss[c];
        L[i] = sum / (double)per;
        n = i + 1;
        if (!isfinite(L[i])) {
            why = "the loss is not finite";
            break;
        }
        if (i == 0)
            t->start_loss = L[0];
        lmin = L[i] < lmin ? L[i] : lmin;
        if (L[i] > RANGE_STOP_RISE * t->start_loss) {
            why = "the loss blew up";
            break;
        }
        if (lmin < 0.8 * t->start_loss && L[i] > lmin + 0.5 * (t->start_loss - lmin)) {
            why = "the loss rose half the way back to the start";
            break;
        }
    }
    mlt_free(loss);
    if (rc)
        return rc;
    /* the step that stopped the test is past the blow-up: left out; the rest
     * smoothed over three steps, then the steepest fall between neighbours */
    int m = n > 1 && stopped_past_blowup(why) ? n - 1 : n;
    int best = -1, lowest = -1;
    double steepest = 0, S[RANGE_MAX_STEPS];
    for (int i = 0; i < m; i++) {
        double a = 0;
        int c = 0;
        for (int d = -1; d <= 1; d++)
            if (i + d >= 0 && i + d < m) {
                a += L[i + d];
                c++;
            }
        S[i] = a / c;
        if (lowest < 0 || S[i] < S[lowest])
            lowest = i;
    }
    for (int i = 1; i + 1 < m; i++) {
        double fall = S[i + 1] - S[i - 1];
        if (fall < steepest) {
            steepest = fall;
            best = i;
        }
    }
    /* the noise of a step's mean: their spread over the first quarter of the
     * steps, where the rate is too small to matter */
    int q = m / 4 < 3 ? 3 : m / 4;
    double mean0 = 0, var0 = 0;
    for (int i = 0; i < q && i < m; i++)
        mean0 += L[i] / q;
    for (int i = 0; i < q && i < m; i++)
        var0 += (L[i] - mean0) * (L[i] - mean0) / (q - 1);
    double fall = t->start_loss - (lowest >= 0 ? S[lowest] : NAN);
    if (best >= 0 && m >= q && fall > RANGE_FALL_SD * sqrt(var0)) {
        *lr_star = sqrt(lrs[best] * lrs[lowest]);
        if (*lr_star < lo)
            *lr_star = lo;
    }
    mlt_tuner__log_begin(t, &jl, "range_test", id);
    mlt_json_num(&jl, "start_loss", t->start_loss);
    mlt_json_num(&jl, "lr", *lr_star);
    mlt_json_num(&jl, "steepest_at", best >= 0 ? lrs[best] : NAN);
    mlt_json_num(&jl, "lowest_at", lowest >= 0 ? lrs[lowest] : NAN);
    mlt_json_str(&jl, "stop", why);
    mlt_json_fixed(&jl, "seconds", spent, 4);
    mlt_json_arr(&jl, "curve");
    for (int i = 0; i < n; i++) {
        mlt_json_arr(&jl, NULL);
        mlt_json_num(&jl, NULL, lrs[i]);
        mlt_json_num(&jl, NULL, L[i]);
        mlt_json_end(&jl);
    }
    mlt_json_end(&jl);
    mlt_declog_timing(&jl, "t", "seconds", "curve", (char *)NULL);
    mlt_tuner__log_end(t, &jl);
    mlt_tuner__log_reason(t, "free", id, "range test done");
    rc = t->ex->free(t->ex->ctx, id);
    if (!rc && !isfinite(t->start_loss)) {
        snprintf(t->res->reason, sizeof t->res->reason,
                 "the starting loss is not finite: the initial model or data is broken");
        return -1;
    }
    return rc;
}

/* ---- the first design ---------------------------------------------------------- *
 * The centre, then one step along each tuned continuous tunable in the order
 * they tend to matter: the learning rate up and down by DESIGN_LR_STEP (or
 * the caller's step),
 * momentum down and up (the effective rate kept, when coupled), then the
 * others. Discrete tunables (batch size, staleness) stay at the centre's
 * value: a search's short trials cannot judge them (see new_searcher in
 * tuner.c); the re-tunes do. */

#define DESIGN_LR_STEP 3.0

static bool design_add(const tuner_t *t, mlt_setting_t *design, uint32_t *n, uint32_t max,
                       const mlt_setting_t *s)
{
    if (*n >= max)
        return false;
    for (uint32_t i = 0; i < *n; i++)
        if (memcmp(&design[i], s, sizeof *s) == 0)
            return true;
    (void)t;
    design[(*n)++] = *s;
    return true;
}

static double clampd(double v, double lo, double hi)
{
    return v < lo ? lo : v > hi ? hi : v;
}

/* the neighbour of discrete value v in dim, one index up (dir 1) or down (-1); NAN if none */
static double discrete_step(const mlt_tunable_t *dm, double v, int dir)
{
    for (uint32_t i = 0; i < dm->n_values; i++)
        if (dm->values[i] == v) {
            int64_t k = (int64_t)i + dir;
            return k >= 0 && k < (int64_t)dm->n_values ? dm->values[k] : NAN;
        }
    return NAN;
}

uint32_t mlt_tuner__design(const tuner_t *t, const mlt_setting_t *center, mlt_setting_t *design,
                           uint32_t max, double lr_step)
{
    if (!(lr_step > 1))
        lr_step = DESIGN_LR_STEP;
    uint32_t n = 0;
    const mlt_job_t *j = t->job;
    design_add(t, design, &n, max, center);
    const mlt_tunable_t *lr = t->lr_dim >= 0 ? &t->sp.dims[t->lr_dim] : NULL;
    double lr0 = mlt_setting_get(j, center, "lr", NAN);
    if (lr && lr->kind != MLT_TUNABLE_DISCRETE) {
        for (int dir = 1; dir >= -1; dir -= 2) {
            mlt_setting_t s = *center;
            mlt_setting_set(j, &s, "lr",
                            clampd(dir > 0 ? lr0 * lr_step : lr0 / lr_step,
                                   lr->min, lr->max));
            design_add(t, design, &n, max, &s);
        }
    }
    /* the rest: each other tuned continuous tunable one step down and up */
    for (uint32_t k = 0; k < t->sp.d; k++) {
        const mlt_tunable_t *dm = &t->sp.dims[k];
        if ((int)k == t->lr_dim || dm->kind == MLT_TUNABLE_DISCRETE)
            continue;
        double v0 = center->v[t->sp.dim_of[k]];
        for (int dir = -1; dir <= 1; dir += 2) {
            double v;
            if (dm->kind == MLT_TUNABLE_LOG)
                v = clampd(v0 * pow(dm->max / dm->min, 0.15 * dir), dm->min, dm->max);
            else
                v = clampd(v0 + 0.15 * dir * (dm->max - dm->min), dm->min, dm->max);
            if (!isfinite(v) || v == v0)
                continue;
            mlt_setting_t s = *center;
            s.v[t->sp.dim_of[k]] = v;
            if ((int)k == t->m_dim && t->coupled && lr && v < 1 && v0 < 1)
                mlt_setting_set(j, &s, "lr", clampd(lr0 * (1 - v) / (1 - v0), lr->min, lr->max));
            design_add(t, design, &n, max, &s);
        }
    }
    return n;
}

/* ---- the paired re-tunes ------------------------------------------------------- *
 * A re-tune pairs the training branch A with a fork B that changes one thing,
 * run over the same samples from the same data cursor, so that most of the
 * mini-batch noise cancels:
 *  - lr: B's learning rate is A's times tuner.decay. A runs a probe's clocks
 *    (training, as ever), then B the same clocks on the same batches; each
 *    clock pairs with the other's.
 *  - batch: B's batch size is the next larger value, r times A's (whole r
 *    only), its learning rate scaled to keep the progress per sample: times r
 *    for the SGD-like rules (sgd, nesterov, sf-sgd; Goyal et al. 2017), times
 *    sqrt(r) for the adaptive ones. A larger batch is faster per sample on
 *    these machines (and for matrix factorisation, whose loss is a mean over
 *    the batch, only lr / batch matters). B runs 1/r of A's clocks over the
 *    same samples; B's clock i pairs with the mean of A's clocks r i .. r i +
 *    r - 1.
 * B replaces A when the mean of the paired differences (B - A) is below zero
 * by more than PAIRED_T standard errors, or (batch) when B is faster per
 * sample by FASTER and not worse by more than one standard error: it then
 * reaches any loss sooner. Otherwise B is freed. Either way, one of the two
 * runs is the overhead. */

#define PAIRED_T 2.5
#define FASTER 0.9 /* B's seconds over A's, at most, for the batch rule */

typedef enum { PROBE_LR = 0, PROBE_BATCH = 1, PROBE_COUNT_ } probe_t;
static const char *const probe_names[] = {"lr", "batch_size"};

/* mean and t of b[i] - mean(a[r i .. r i + r - 1]), i < n */
static double paired_t(const double *a, const double *b, int64_t n, int64_t r, double *mean)
{
    double s = 0, ss = 0;
    *mean = NAN;
    if (n < 3)
        return NAN;
    for (int64_t i = 0; i < n; i++) {
        double ai = 0;
        for (int64_t k = 0; k < r; k++)
            ai += a[r * i + k];
        s += b[i] - ai / (double)r;
    }
    *mean = s / (double)n;
    for (int64_t i = 0; i < n; i++) {
        double ai = 0;
        for (int64_t k = 0; k < r; k++)
            ai += a[r * i + k];
        double d = b[i] - ai / (double)r - *mean;
        ss += d * d;
    }
    double se = sqrt(ss / (double)(n - 1) / (double)n);
    if (!isfinite(*mean))
        return NAN;
    return se > 0 ? *mean / se : (*mean < 0 ? -INFINITY : *mean > 0 ? INFINITY : 0);
}

/* B's setting for probe p, or false when p cannot change anything; *r: how
 * many of A's clocks one of B's covers */
static bool probe_setting(const tuner_t *t, probe_t p, mlt_setting_t *s, int64_t *r)
{
    const mlt_job_t *j = t->job;
    *s = t->train_s;
    *r = 1;
    if (p == PROBE_LR) {
        if (t->lr_dim < 0 || t->sp.dims[t->lr_dim].kind == MLT_TUNABLE_DISCRETE)
            return false;
        double lr1 = mlt_setting_get(j, s, "lr", NAN) * j->tuner.decay;
        if (!(lr1 >= t->sp.dims[t->lr_dim].min))
            return false;
        mlt_setting_set(j, s, "lr", lr1);
        return true;
    }
    int bd = mlt_space_dim(&t->sp, "batch_size");
    if (bd < 0 || t->sp.dims[bd].kind != MLT_TUNABLE_DISCRETE)
        return false;
    double b0 = mlt_setting_get(j, s, "batch_size", NAN);
    double b1 = discrete_step(&t->sp.dims[bd], b0, 1);
    if (!isfinite(b1) || !(b0 > 0) || fmod(b1, b0) != 0)
        return false;
    mlt_setting_set(j, s, "batch_size", b1);
    *r = (int64_t)(b1 / b0);
    if (t->lr_dim >= 0 && t->sp.dims[t->lr_dim].kind != MLT_TUNABLE_DISCRETE) {
        const mlt_tunable_t *lr = &t->sp.dims[t->lr_dim];
        double scale = t->sgd_like ? (double)*r : sqrt((double)*r);
        double v = mlt_setting_get(j, s, "lr", NAN) * scale;
        mlt_setting_set(j, s, "lr", v > lr->max ? lr->max : v);
    }
    return true;
}

/* One probe p of the training branch; *changed when B replaced it. */
static int probe(tuner_t *t, probe_t p, const char *why, bool *changed)
{
    const mlt_job_t *j = t->job;
    mlt_setting_t s;
    int64_t r;
    *changed = false;
    if (!probe_setting(t, p, &s, &r))
        return 0;
    bool sure;
    double per = mlt_tuner__rate(t, &t->train_s, &sure);
    double epc = t->ex->epoch_clocks(t->ex->ctx, &t->train_s);
    int64_t clocks = per > 0 ? (int64_t)ceil(t->trial_time / per) : j->tuner.min_trial_clocks;
    if (clocks < j->tuner.min_trial_clocks)
        clocks = j->tuner.min_trial_clocks;
    if (clocks > epc)
        clocks = (int64_t)epc;
    clocks = (clocks + r - 1) / r * r; /* whole clocks of B */
    int64_t clocks_b = clocks / r;
    mlt_json_t jl;
    mlt_tuner__log_begin(t, &jl, "retune", t->train);
    mlt_json_str(&jl, "reason", why);
    mlt_json_str(&jl, "probe", probe_names[p]);
    mlt_json_int(&jl, "clocks", clocks);
    mlt_json_num(&jl, "budget", mlt_tuner__budget(t));
    mlt_declog_timing(&jl, "t", "budget", (char *)NULL);
    mlt_tuner__log_end(t, &jl);
    trial_t b = {0};
    int rc = mlt_tuner__trial_fork(t, &b, &s, t->train, t->cursor,
                                   p == PROBE_LR ? "the learning rate decayed, paired with the "
                                                   "training branch on the same data"
                                                     : "the next larger batch size (its rate "
                                                   "scaled), paired with the training branch "
                                                   "on the same samples");
    double *la = mlt_calloc((size_t)clocks, sizeof *la), secs_a = 0;
    if (!rc)
        rc = t->ex->run(t->ex->ctx, t->train, &t->train_s, t->train_clock, clocks, t->cursor, la,
                        &secs_a);
    if (!rc) {
        mlt_tuner__rate_note(t, &t->train_s, clocks, secs_a);
        t->train_clock += clocks;
        t->cursor += (double)clocks / epc;
        t->epoch += (double)clocks / epc;
        t->res->train_seconds += secs_a;
        t->last_loss = mlt_tuner__tail_loss(la, clocks);
    }
    if (!rc)
        rc = mlt_tuner__trial_run_clocks(t, &b, clocks_b, t->last_loss);
    if (rc) {
        mlt_free(la);
        mlt_free(b.loss);
        return rc;
    }
    double mean = NAN;
    double ts = b.cut ? INFINITY : paired_t(la, b.loss, clocks_b, r, &mean);
    bool win = ts < -PAIRED_T ||
               (p == PROBE_BATCH && b.seconds < FASTER * secs_a && ts < 1.0);
    mlt_tuner__log_begin(t, &jl, "paired", b.id);
    mlt_json_str(&jl, "probe", probe_names[p]);
    mlt_json_uint(&jl, "against", t->train);
    mlt_json_num(&jl, "mean", b.cut ? NAN : mean);
    mlt_json_num(&jl, "t_stat", ts);
    mlt_json_fixed(&jl, "seconds", b.seconds, 4);
    mlt_json_fixed(&jl, "against_seconds", secs_a, 4);
    mlt_json_str(&jl, "verdict", win ? "better" : "not better");
    mlt_declog_timing(&jl, "t", "seconds", "against_seconds", (char *)NULL);
    mlt_tuner__log_end(t, &jl);
    if (win) {
        /* B continues the lineage over the samples A's probe clocks covered:
         * A's time becomes the overhead, B's the training */
        mlt_tuner__log_reason(t, "free", t->train, "replaced by the re-tune's %s", probe_names[p]);
        rc = t->ex->free(t->ex->ctx, t->train);
        t->res->train_seconds -= secs_a;
        t->res->trial_seconds += secs_a;
        mlt_tuner__trial_kept(t, &b);
        mlt_tuner__log_begin(t, &jl, "commit", b.id);
        mlt_setting_json(j, &b.s, &jl, "tunables");
        mlt_json_num(&jl, "t_stat", ts);
        mlt_json_str(&jl, "reason",
                     p == PROBE_LR ? "the decayed learning rate has the lower loss "
                                     "on the same data"
                                   : "the larger batch does as well or better on "
                                     "the same samples, sooner");
        mlt_tuner__log_end(t, &jl);
        double epc_b = t->ex->epoch_clocks(t->ex->ctx, &b.s);
        t->train = b.id;
        t->train_s = b.s;
        t->train_clock = b.clocks;
        t->cursor = b.cursor0 + (double)b.clocks / epc_b;
        t->last_loss = mlt_tuner__tail_loss(b.loss, b.clocks);
        *changed = true;
    } else {
        rc = mlt_tuner__trial_kill(t, &b, "the re-tune's change is not better");
    }
    mlt_free(la);
    mlt_free(b.loss);
    return rc;
}

int mlt_tuner__retune(tuner_t *t, const char *why, bool *changed)
{
    *changed = false;
    int rc = 0;
    for (int p = 0; p < PROBE_COUNT_ && !rc && !*changed; p++) {
        if (p > 0 && mlt_tuner__budget(t) < t->trial_time)
            break;
        rc = probe(t, (probe_t)p, why, changed);
    }
    return rc;
}
