/* check_optim_avg.c - the averaging rules of kernels/optim: schedule-free SGD
 * and AdamW, the weight average of sgd/nesterov (update.average), warm-up,
 * the step-0 restart and lr 0.
 *
 * As in check_optim.c, each rule runs for several steps on random data and is
 * compared, every array and the scalars, with a double-precision reference
 * written here from the formulas in optim.h; a few hand-computed steps pin the
 * reference itself. */
#include "kernels/optim.h"
#include "tests/unit/check_optim.h"

#include <check.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

/* The reference state of one array: w (y), and the averaging rules' arrays
 * and scalars, in double. */
typedef struct ref {
    size_t n;
    double *w;     /* y of the schedule-free rules, w of sgd/nesterov */
    double *z;     /* schedule-free base sequence */
    double *x;     /* the average */
    double *v;     /* sf-adamw second moment */
    double *h;     /* sgd/nesterov: co_ref_step's state (2n) */
    uint64_t k;    /* updates applied */
    double lr_max; /* largest scheduled lr */
    double w_sum;  /* sum of lr_max^2 */
} ref_t;

static ref_t ref_new(size_t n)
{
    ref_t r = {.n = n};
    r.w = co_xcalloc(n, sizeof *r.w);
    r.z = co_xcalloc(n, sizeof *r.z);
    r.x = co_xcalloc(n, sizeof *r.x);
    r.v = co_xcalloc(n, sizeof *r.v);
    r.h = co_xcalloc(2 * n, sizeof *r.h);
    return r;
}

static void ref_free(ref_t *r)
{
    free(r->w);
    free(r->z);
    free(r->x);
    free(r->v);
    free(r->h);
}

/* lr_k of optim.h's schedule */
static double ref_lr(const mlt_hyper_t *hp, uint64_t k)
{
    double sched = hp->warmup > 0 && k < hp->warmup ? (double)(k + 1) / hp->warmup : 1.0;
    return (double)hp->lr * sched;
}

/* the averaging weight c of an update at lr_k; advances lr_max, w_sum */
static double ref_c(ref_t *r, double lr_k)
{
    r->lr_max = fmax(r->lr_max, lr_k);
    double weight = r->lr_max * r->lr_max;
    r->w_sum += weight;
    return r->w_sum > 0 ? weight / r->w_sum : 0.0;
}

/* One schedule-free update, straight from optim.h. */
static void ref_sf_step(mlt_rule_t rule, const mlt_hyper_t *hp, ref_t *r, const float *g)
{
    const size_t n = r->n;
    if (r->k == 0)
        for (size_t i = 0; i < n; i++) {
            r->z[i] = r->x[i] = r->w[i];
            r->v[i] = 0;
        }
    const double lr = ref_lr(hp, r->k);
    if (lr == 0)
        return;
    const double c = ref_c(r, lr);
    const double beta = rule == MLT_RULE_SF_SGD ? hp->momentum : hp->beta1;
    const double b2 = hp->beta2, wd = hp->weight_decay;
    for (size_t i = 0; i < n; i++) {
        double gp;
        if (rule == MLT_RULE_SF_SGD) {
            gp = g[i] + wd * r->w[i];
        } else {
            r->v[i] = b2 * r->v[i] + (1 - b2) * (double)g[i] * g[i];
            double d = sqrt(r->v[i] / (1 - pow(b2, (double)(r->k + 1)))) + hp->eps;
            gp = g[i] / d + wd * r->w[i];
        }
        r->z[i] -= lr * gp;
        r->x[i] = (1 - c) * r->x[i] + c * r->z[i];
        r->w[i] = (1 - beta) * r->z[i] + beta * r->x[i];
    }
    r->k++;
}

/* One sgd/nesterov update with warm-up and, when average, the average. */
static void ref_avg_step(mlt_rule_t rule, bool average, const mlt_hyper_t *hp, ref_t *r,
                         const float *g)
{
    if (average && r->k == 0)
        memcpy(r->x, r->w, r->n * sizeof *r->x);
    const double lr = ref_lr(hp, r->k);
    mlt_hyper_t hk = *hp;
    hk.lr = (float)lr;
    r->k++;
    co_ref_step(rule, &hk, r->w, r->h, g, r->n, r->k);
    if (!average || lr == 0)
        return;
    const double c = ref_c(r, lr);
    for (size_t i = 0; i < r->n; i++)
        r->x[i] = (1 - c) * r->x[i] + c * r->w[i];
}

static void assert_scalars(const mlt_optim_scalars_t *s, const ref_t *r, int step)
{
    ck_assert_msg(s->step == r->k, "step after update %d: got %llu, want %llu", step,
                  (unsigned long long)s->step, (unsigned long long)r->k);
    ck_assert_msg(fabs(s->lr_max - r->lr_max) <= CO_RTOL * r->lr_max,
                  "lr_max after update %d: got %.9g, want %.9g", step, s->lr_max, r->lr_max);
    ck_assert_msg(fabs(s->weight_sum - r->w_sum) <= CO_RTOL * r->w_sum,
                  "weight_sum after update %d: got %.9g, want %.9g", step, s->weight_sum, r->w_sum);
}

/* Runs `steps` updates of (rule, average) on each length with fresh random
 * gradients and compares every array and the scalars with the reference
 * after each. garbage: the state arrays start filled with junk rather than
 * zero (the step-0 restart must ignore it). */
static void compare(mlt_rule_t rule, bool average, const mlt_hyper_t *hp, int steps, bool garbage)
{
    const bool sf = mlt_rule_schedule_free(rule);
    const size_t ns = mlt_optim_state_floats(rule, average);
    const int xa = mlt_optim_average_array(rule, average);
    ck_assert_uint_ge(ns, 1);
    for (size_t li = 0; li < CO_N_LENGTHS; li++) {
        const size_t n = co_lengths[li];
        uint32_t seed = 777u + (uint32_t)n;
        float *w = co_xcalloc(n, sizeof *w), *g = co_xcalloc(n, sizeof *g);
        float *state = co_xcalloc(ns * n, sizeof *state);
        ref_t r = ref_new(n);
        for (size_t i = 0; i < n; i++)
            r.w[i] = w[i] = co_rnd(&seed, -1.0f, 1.0f);
        for (size_t i = 0; garbage && i < ns * n; i++)
            state[i] = co_rnd(&seed, -50.0f, 50.0f);
        if (garbage && !sf) /* sgd's own buffer is not restarted: start it equal */
            for (size_t i = 0; i < n; i++)
                r.h[i] = state[i];
        mlt_optim_scalars_t sc = {0};
        double scale[4] = {0, 0, 0, 0}; /* w, z or h, x, v */
        for (int t = 1; t <= steps; t++) {
            for (size_t i = 0; i < n; i++)
                g[i] = co_rnd(&seed, -1.0f, 1.0f);
            mlt_optim_update(rule, average, hp, w, state, g, n, &sc);
            if (sf)
                ref_sf_step(rule, hp, &r, g);
            else
                ref_avg_step(rule, average, hp, &r, g);
            co_assert_close("w", w, r.w, n, t, &scale[0]);
            if (sf)
                co_assert_close("z", state, r.z, n, t, &scale[1]);
            else if (hp->momentum != 0)
                co_assert_close("h", state, r.h, n, t, &scale[1]);
            if (xa >= 0)
                co_assert_close("x", state + (size_t)xa * n, r.x, n, t, &scale[2]);
            if (rule == MLT_RULE_SF_ADAMW)
                co_assert_close("v", state + 2 * n, r.v, n, t, &scale[3]);
            if (xa >= 0)
                assert_scalars(&sc, &r, t);
        }
        free(w);
        free(g);
        free(state);
        ref_free(&r);
    }
}

/* ---- sf-sgd ------------------------------------------------------------- */

START_TEST(test_sfsgd_compare)
{
    mlt_hyper_t h = co_hyper(1.0f, 0.9f, 0.0f); /* the reference implementation's defaults */
    compare(MLT_RULE_SF_SGD, false, &h, 8, false);
    h.momentum = 0.0f; /* y = z: plain SGD, x the average of its iterates */
    compare(MLT_RULE_SF_SGD, false, &h, 6, false);
    h = co_hyper(0.1f, 0.5f, 0.0f);
    compare(MLT_RULE_SF_SGD, true, &h, 6, false); /* average changes nothing */
}
END_TEST

START_TEST(test_sfsgd_weight_decay)
{
    mlt_hyper_t h = co_hyper(0.5f, 0.9f, 0.05f);
    compare(MLT_RULE_SF_SGD, false, &h, 8, false);
}
END_TEST

/* Two steps by hand: lr 1, beta 0.9, y 1; g 0.5 then 0.25.
 * k0: z = x = y = 1; z = 0.5; lr_max 1, weight 1, sum 1, c 1: x = 0.5;
 *     y = 0.1*0.5 + 0.9*0.5 = 0.5.
 * k1: z = 0.25; weight 1, sum 2, c 0.5: x = 0.375; y = 0.025 + 0.3375 = 0.3625. */
START_TEST(test_sfsgd_by_hand)
{
    mlt_hyper_t h = co_hyper(1.0f, 0.9f, 0.0f);
    float y = 1.0f, st[2] = {0, 0}, g = 0.5f;
    mlt_optim_scalars_t sc = {0};
    mlt_optim_update(MLT_RULE_SF_SGD, false, &h, &y, st, &g, 1, &sc);
    ck_assert_float_eq_tol(st[0], 0.5f, 1e-6f);
    ck_assert_float_eq_tol(st[1], 0.5f, 1e-6f);
    ck_assert_float_eq_tol(y, 0.5f, 1e-6f);
    ck_assert_uint_eq(sc.step, 1);
    ck_assert_double_eq_tol(sc.weight_sum, 1.0, 1e-12);
    g = 0.25f;
    mlt_optim_update(MLT_RULE_SF_SGD, false, &h, &y, st, &g, 1, &sc);
    ck_assert_float_eq_tol(st[0], 0.25f, 1e-6f);
    ck_assert_float_eq_tol(st[1], 0.375f, 1e-6f);
    ck_assert_float_eq_tol(y, 0.3625f, 1e-6f);
    ck_assert_uint_eq(sc.step, 2);
    ck_assert_double_eq_tol(sc.lr_max, 1.0, 1e-12);
    ck_assert_double_eq_tol(sc.weight_sum, 2.0, 1e-12);
}
END_TEST

/* ---- sf-adamw ----------------------------------------------------------- */

START_TEST(test_sfadamw_compare)
{
    mlt_hyper_t h = co_hyper(0.0025f, 0.0f, 0.0f); /* the reference's defaults */
    compare(MLT_RULE_SF_ADAMW, false, &h, 8, false);
    h.beta1 = 0.5f;
    h.beta2 = 0.99f;
    compare(MLT_RULE_SF_ADAMW, false, &h, 8, false);
}
END_TEST

START_TEST(test_sfadamw_weight_decay)
{
    mlt_hyper_t h = co_hyper(0.01f, 0.0f, 0.1f);
    compare(MLT_RULE_SF_ADAMW, false, &h, 8, false);
}
END_TEST

/* By hand, one step: lr 0.01, beta2 0.999, eps 1e-8, y 1, g 2: v = 0.004,
 * v/(1-0.999) = 4, d = 2 + 1e-8, g' ~ 1; z = x = y = 0.99. */
START_TEST(test_sfadamw_by_hand)
{
    mlt_hyper_t h = co_hyper(0.01f, 0.0f, 0.0f);
    float y = 1.0f, st[3] = {0, 0, 0}, g = 2.0f;
    mlt_optim_scalars_t sc = {0};
    mlt_optim_update(MLT_RULE_SF_ADAMW, false, &h, &y, st, &g, 1, &sc);
    ck_assert_float_eq_tol(st[2], 0.004f, 1e-6f);
    ck_assert_float_eq_tol(st[0], 0.99f, 1e-6f);
    ck_assert_float_eq_tol(st[1], 0.99f, 1e-6f);
    ck_assert_float_eq_tol(y, 0.99f, 1e-6f);
}
END_TEST

/* ---- the step-0 restart, mlt_optim_restart ------------------------------ */

/* A fresh or written array's state may hold anything (a written chunk keeps
 * its old arrays): the first update starts z = x = y and v = 0 regardless. */
START_TEST(test_restart_first_update)
{
    mlt_hyper_t h = co_hyper(1.0f, 0.9f, 0.01f);
    compare(MLT_RULE_SF_SGD, false, &h, 4, true);
    h = co_hyper(0.0025f, 0.0f, 0.01f);
    compare(MLT_RULE_SF_ADAMW, false, &h, 4, true);
    h = co_hyper(0.1f, 0.9f, 0.0f);
    compare(MLT_RULE_SGD, true, &h, 4, true);
}
END_TEST

/* After a few updates w is overwritten and restarted: the sequences start at
 * the new w, the scalars at zero; a rule without average is left alone. */
START_TEST(test_restart_after_write)
{
    enum { N = 37 };
    mlt_hyper_t h = co_hyper(0.5f, 0.9f, 0.0f);
    float y[N], st[3 * N] = {0}, g[N], fresh[N];
    uint32_t seed = 99;
    for (int i = 0; i < N; i++) {
        y[i] = co_rnd(&seed, -1.0f, 1.0f);
        g[i] = co_rnd(&seed, -1.0f, 1.0f);
        fresh[i] = co_rnd(&seed, -1.0f, 1.0f);
    }
    mlt_optim_scalars_t sc = {0};
    for (int t = 0; t < 3; t++)
        mlt_optim_update(MLT_RULE_SF_ADAMW, false, &h, y, st, g, N, &sc);
    ck_assert_uint_eq(sc.step, 3);
    memcpy(y, fresh, sizeof y);
    mlt_optim_restart(MLT_RULE_SF_ADAMW, false, y, st, N, &sc);
    ck_assert_uint_eq(sc.step, 0);
    ck_assert_double_eq(sc.lr_max, 0.0);
    ck_assert_double_eq(sc.weight_sum, 0.0);
    for (int i = 0; i < N; i++) {
        ck_assert_float_eq(st[i], fresh[i]);     /* z */
        ck_assert_float_eq(st[N + i], fresh[i]); /* x */
        ck_assert_float_eq(st[2 * N + i], 0.0f); /* v */
    }
    /* sgd with average: x = w; adam (no average): nothing at all */
    float w[2] = {0.5f, -2.0f}, s2[4] = {7, 7, 7, 7};
    sc = (mlt_optim_scalars_t){.step = 5, .lr_max = 1, .weight_sum = 5};
    mlt_optim_restart(MLT_RULE_SGD, true, w, s2, 2, &sc);
    ck_assert_float_eq(s2[0], 7.0f); /* h is kept */
    ck_assert_float_eq(s2[2], 0.5f);
    ck_assert_float_eq(s2[3], -2.0f);
    ck_assert_uint_eq(sc.step, 0);
    float s3[4] = {7, 7, 7, 7};
    sc = (mlt_optim_scalars_t){.step = 5, .lr_max = 1, .weight_sum = 5};
    mlt_optim_restart(MLT_RULE_ADAM, false, w, s3, 2, &sc);
    ck_assert_float_eq(s3[0], 7.0f);
    ck_assert_float_eq(s3[3], 7.0f);
    ck_assert_uint_eq(sc.step, 5);
}
END_TEST

/* ---- lr 0 --------------------------------------------------------------- */

/* The tuner's eval branch runs at lr 0: nothing may change, nothing may turn
 * NaN, on a fresh array (lr_max 0: the weight sum stays 0) and on one with a
 * history (lr_max > 0). The same code path runs twice, so the comparison is
 * exact. */
START_TEST(test_lr0_changes_nothing)
{
    enum { N = 37 };
    for (int r = MLT_RULE_SF_SGD; r <= MLT_RULE_SF_ADAMW; r++) {
        const mlt_rule_t rule = (mlt_rule_t)r;
        mlt_hyper_t h = co_hyper(0.0f, 0.9f, 0.01f);
        h.warmup = 10;
        float y[N], y0[N], st[3 * N] = {0}, st0[3 * N], g[N];
        uint32_t seed = 5;
        for (int i = 0; i < N; i++) {
            y0[i] = y[i] = co_rnd(&seed, -1.0f, 1.0f);
            g[i] = co_rnd(&seed, -1.0f, 1.0f);
        }
        mlt_optim_scalars_t sc = {0};
        mlt_optim_update(rule, false, &h, y, st, g, N, &sc);
        ck_assert(mlt_all_finite(y, N) && mlt_all_finite(st, 3 * N));
        ck_assert(memcmp(y, y0, sizeof y) == 0);
        for (int i = 0; i < N; i++) /* the restart happened: x = z = y */
            ck_assert(st[i] == y0[i] && st[N + i] == y0[i]);
        ck_assert_uint_eq(sc.step, 0);
        ck_assert_double_eq(sc.weight_sum, 0.0);

        h.lr = 0.5f;
        for (int t = 0; t < 3; t++)
            mlt_optim_update(rule, false, &h, y, st, g, N, &sc);
        memcpy(y0, y, sizeof y);
        memcpy(st0, st, sizeof st);
        const mlt_optim_scalars_t sc0 = sc;
        h.lr = 0.0f;
        mlt_optim_update(rule, false, &h, y, st, g, N, &sc);
        ck_assert(memcmp(y, y0, sizeof y) == 0);
        ck_assert(memcmp(st, st0, sizeof st) == 0);
        ck_assert(memcmp(&sc, &sc0, sizeof sc) == 0);
    }
    /* sgd with average: w stays, x and the schedule stay */
    mlt_hyper_t h = co_hyper(0.1f, 0.9f, 0.0f);
    float w[3] = {1, 2, 3}, st[6] = {0}, g[3] = {1, -1, 0.5f};
    mlt_optim_scalars_t sc = {0};
    mlt_optim_update(MLT_RULE_SGD, true, &h, w, st, g, 3, &sc);
    mlt_optim_update(MLT_RULE_SGD, true, &h, w, st, g, 3, &sc);
    float w0[3], x0[3];
    memcpy(w0, w, sizeof w);
    memcpy(x0, st + 3, sizeof x0);
    const double ws = sc.weight_sum;
    h.lr = 0.0f;
    mlt_optim_update(MLT_RULE_SGD, true, &h, w, st, g, 3, &sc);
    ck_assert(memcmp(w, w0, sizeof w) == 0);
    ck_assert(memcmp(st + 3, x0, sizeof x0) == 0);
    ck_assert_double_eq(sc.weight_sum, ws);
}
END_TEST

/* A branch's lr may fall (the tuner re-tunes it): lr_max keeps the largest
 * rate, so the weights of later points do not drop (c = lr_max^2 / sum). */
START_TEST(test_lr_falls)
{
    enum { N = 37 };
    for (int r = MLT_RULE_SF_SGD; r <= MLT_RULE_SF_ADAMW; r++) {
        const mlt_rule_t rule = (mlt_rule_t)r;
        mlt_hyper_t h = co_hyper(r == MLT_RULE_SF_SGD ? 1.0f : 0.01f, 0.9f, 0.0f);
        float y[N], st[3 * N] = {0}, g[N];
        ref_t ref = ref_new(N);
        uint32_t seed = 21;
        for (int i = 0; i < N; i++)
            ref.w[i] = y[i] = co_rnd(&seed, -1.0f, 1.0f);
        mlt_optim_scalars_t sc = {0};
        double scale[3] = {0, 0, 0};
        for (int t = 1; t <= 6; t++) {
            if (t == 3)
                h.lr *= 0.5f;
            for (int i = 0; i < N; i++)
                g[i] = co_rnd(&seed, -1.0f, 1.0f);
            mlt_optim_update(rule, false, &h, y, st, g, N, &sc);
            ref_sf_step(rule, &h, &ref, g);
            co_assert_close("y", y, ref.w, N, t, &scale[0]);
            co_assert_close("x", st + N, ref.x, N, t, &scale[1]);
            assert_scalars(&sc, &ref, t);
        }
        /* 2 updates at lr, then 4 at lr/2 weighted as lr: sum 6 lr^2 */
        ck_assert_double_eq_tol(sc.lr_max, 2.0 * h.lr, 1e-7);
        ck_assert_double_eq_tol(sc.weight_sum, 6.0 * sc.lr_max * sc.lr_max, 1e-9);
        ref_free(&ref);
    }
}
END_TEST

/* ---- warm-up ------------------------------------------------------------ */

/* warmup 4 at lr 1: lr_k = 0.25, 0.5, 0.75, 1, 1, ...; lr_max follows it and
 * weight_sum adds its squares. Then the full comparison, every rule. */
START_TEST(test_warmup_ramp)
{
    mlt_hyper_t h = co_hyper(1.0f, 0.9f, 0.0f);
    h.warmup = 4;
    float y = 1.0f, st[2] = {0, 0}, g = 0.1f;
    mlt_optim_scalars_t sc = {0};
    double sum = 0;
    for (int k = 0; k < 7; k++) {
        mlt_optim_update(MLT_RULE_SF_SGD, false, &h, &y, st, &g, 1, &sc);
        double want = k < 4 ? (k + 1) / 4.0 : 1.0;
        sum += want * want;
        ck_assert_double_eq_tol(sc.lr_max, want, 1e-12);
        ck_assert_double_eq_tol(sc.weight_sum, sum, 1e-12);
    }
    compare(MLT_RULE_SF_SGD, false, &h, 8, false);
    h = co_hyper(0.01f, 0.0f, 0.0f);
    h.warmup = 5;
    compare(MLT_RULE_SF_ADAMW, false, &h, 8, false);
    h = co_hyper(0.1f, 0.9f, 0.0f);
    h.warmup = 3;
    compare(MLT_RULE_SGD, true, &h, 6, false);
    compare(MLT_RULE_NESTEROV, false, &h, 6, false); /* warm-up without average */
}
END_TEST

/* ---- update.average on sgd / nesterov ----------------------------------- */

START_TEST(test_average_compare)
{
    mlt_hyper_t h = co_hyper(0.05f, 0.9f, 0.0f);
    compare(MLT_RULE_SGD, true, &h, 8, false);
    compare(MLT_RULE_NESTEROV, true, &h, 8, false);
    h.weight_decay = 0.01f;
    compare(MLT_RULE_SGD, true, &h, 8, false);
    compare(MLT_RULE_NESTEROV, true, &h, 8, false);
    h = co_hyper(0.1f, 0.0f, 0.0f); /* plain SGD: h unused, x still kept */
    compare(MLT_RULE_SGD, true, &h, 6, false);
}
END_TEST

/* By hand: plain SGD at a constant lr weights every iterate alike, so x is
 * their mean: lr 0.1, w 1, g 1: w = 0.9, 0.8, 0.7; x = 0.9, 0.85, 0.8. */
START_TEST(test_average_by_hand)
{
    mlt_hyper_t h = co_hyper(0.1f, 0.0f, 0.0f);
    float w = 1.0f, st[2] = {0, 0}, g = 1.0f;
    mlt_optim_scalars_t sc = {0};
    const float want_x[3] = {0.9f, 0.85f, 0.8f};
    for (int t = 0; t < 3; t++) {
        mlt_optim_update(MLT_RULE_SGD, true, &h, &w, st, &g, 1, &sc);
        ck_assert_float_eq_tol(w, 0.9f - 0.1f * (float)t, 1e-6f);
        ck_assert_float_eq_tol(st[1], want_x[t], 1e-6f);
    }
    ck_assert_float_eq(st[0], 0.0f); /* plain SGD leaves h alone */
}
END_TEST

void co_avg_tcases(Suite *s)
{
    TCase *tc = tcase_create("sf-sgd");
    tcase_add_test(tc, test_sfsgd_compare);
    tcase_add_test(tc, test_sfsgd_weight_decay);
    tcase_add_test(tc, test_sfsgd_by_hand);
    suite_add_tcase(s, tc);

    tc = tcase_create("sf-adamw");
    tcase_add_test(tc, test_sfadamw_compare);
    tcase_add_test(tc, test_sfadamw_weight_decay);
    tcase_add_test(tc, test_sfadamw_by_hand);
    suite_add_tcase(s, tc);

    tc = tcase_create("restart");
    tcase_add_test(tc, test_restart_first_update);
    tcase_add_test(tc, test_restart_after_write);
    suite_add_tcase(s, tc);

    tc = tcase_create("schedule");
    tcase_add_test(tc, test_lr0_changes_nothing);
    tcase_add_test(tc, test_lr_falls);
    tcase_add_test(tc, test_warmup_ramp);
    suite_add_tcase(s, tc);

    tc = tcase_create("average");
    tcase_add_test(tc, test_average_compare);
    tcase_add_test(tc, test_average_by_hand);
    suite_add_tcase(s, tc);
}
