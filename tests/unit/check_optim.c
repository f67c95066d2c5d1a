/* check_optim.c - Check suite for kernels/optim.
 *
 * Each rule is run for several steps on random data and compared, weights and
 * every state array, against a double-precision reference written here from the
 * formulas in optim.h. A few hand-computed steps pin the reference itself to
 * the documented formulas. Lengths 1, 37 and 1000 cover the vectorised body,
 * the scalar tail, and a tail-only call. The averaging rules (schedule-free,
 * update.average) are in check_optim_avg.c. */
#include "kernels/optim.h"
#include "tests/unit/check_optim.h"

#include <check.h>
#include <float.h>
#include <math.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

const size_t co_lengths[CO_N_LENGTHS] = {1, 37, 1000};

float co_rnd(uint32_t *seed, float lo, float hi)
{
    *seed = *seed * 1664525u + 1013904223u;
    return lo + (hi - lo) * (float)(*seed >> 8) / (float)(1u << 24);
}

void *co_xcalloc(size_t n, size_t size)
{
    void *p = calloc(n, size);
    ck_assert_ptr_nonnull(p);
    return p;
}

void co_ref_step(mlt_rule_t rule, const mlt_hyper_t *hp, double *w, double *s, const float *g,
                 size_t n, uint64_t t)
{
    const double lr = hp->lr, m = hp->momentum, wd = hp->weight_decay;
    const double b1 = hp->beta1, b2 = hp->beta2, eps = hp->eps;
    for (size_t i = 0; i < n; i++) {
        double gp = (double)g[i] + wd * w[i];
        double *s0 = &s[i], *s1 = &s[n + i];
        switch (rule) {
        case MLT_RULE_SGD:
            if (m == 0) { /* plain SGD: the momentum buffer is left alone */
                w[i] -= lr * gp;
                break;
            }
            *s0 = m * *s0 + gp;
            w[i] -= lr * *s0;
            break;
        case MLT_RULE_NESTEROV:
            *s0 = m * *s0 + gp;
            w[i] -= lr * (gp + m * *s0);
            break;
        case MLT_RULE_ADAM:
            *s0 = b1 * *s0 + (1 - b1) * gp;
            *s1 = b2 * *s1 + (1 - b2) * gp * gp;
            w[i] -= lr * (*s0 / (1 - pow(b1, (double)t))) /
                    (sqrt(*s1 / (1 - pow(b2, (double)t))) + eps);
            break;
        case MLT_RULE_RMSPROP:
            *s0 = b2 * *s0 + (1 - b2) * gp * gp;
            w[i] -= lr * gp / (sqrt(*s0) + eps);
            break;
        case MLT_RULE_ADAGRAD:
            *s0 += gp * gp;
            w[i] -= lr * gp / (sqrt(*s0) + eps);
            break;
        case MLT_RULE_ADADELTA: {
            *s0 = b2 * *s0 + (1 - b2) * gp * gp;
            double d = sqrt(*s1 + eps) / sqrt(*s0 + eps) * gp;
            *s1 = b2 * *s1 + (1 - b2) * d * d;
            w[i] -= lr * d;
            break;
        }
        default:
            ck_abort_msg("ref_step: bad rule %d", (int)rule);
        }
    }
}

void co_assert_close(const char *what, const float *got, const double *want, size_t n, int step,
                     double *scale)
{
    for (size_t i = 0; i < n; i++)
        *scale = fmax(*scale, fabs(want[i]));
    for (size_t i = 0; i < n; i++) {
        double tol = CO_RTOL * fmax(fabs(want[i]), CO_SCALE_FLOOR * *scale);
        ck_assert_msg(fabs((double)got[i] - want[i]) <= tol,
                      "%s[%zu] after step %d: got %.9g, want %.9g (n %zu)", what, i, step,
                      (double)got[i], want[i], n);
    }
}

/* Runs `steps` updates of `rule` on each length, fresh random gradients each
 * step, and compares w and all state arrays with ref_step after every step.
 * Also checks that g is left untouched. */
static void compare_rule(mlt_rule_t rule, const mlt_hyper_t *hp, int steps)
{
    const size_t ns = mlt_optim_state_floats(rule, false);
    ck_assert_uint_ge(ns, 1);
    for (size_t li = 0; li < CO_N_LENGTHS; li++) {
        const size_t n = co_lengths[li];
        uint32_t seed = 12345u + (uint32_t)n;
        float *w = co_xcalloc(n, sizeof *w);
        float *state = co_xcalloc(ns * n, sizeof *state);
        float *g = co_xcalloc(n, sizeof *g);
        float *g_copy = co_xcalloc(n, sizeof *g_copy);
        double *rw = co_xcalloc(n, sizeof *rw);
        double *rs = co_xcalloc(2 * n, sizeof *rs);

        double scale[3] = {0, 0, 0}; /* w, state0, state1 */
        for (size_t i = 0; i < n; i++) {
            w[i] = co_rnd(&seed, -1.0f, 1.0f);
            rw[i] = w[i];
        }
        for (int t = 1; t <= steps; t++) {
            for (size_t i = 0; i < n; i++)
                g[i] = co_rnd(&seed, -1.0f, 1.0f);
            memcpy(g_copy, g, n * sizeof *g);
            mlt_optim_apply(rule, hp, w, state, g, n, (uint64_t)t);
            co_ref_step(rule, hp, rw, rs, g, n, (uint64_t)t);
            ck_assert_msg(memcmp(g, g_copy, n * sizeof *g) == 0, "g modified");
            co_assert_close("w", w, rw, n, t, &scale[0]);
            co_assert_close("state0", state, rs, n, t, &scale[1]);
            if (ns == 2)
                co_assert_close("state1", state + n, rs + n, n, t, &scale[2]);
        }
        free(w);
        free(state);
        free(g);
        free(g_copy);
        free(rw);
        free(rs);
    }
}

mlt_hyper_t co_hyper(float lr, float momentum, float wd)
{
    mlt_hyper_t h = mlt_hyper_default();
    h.lr = lr;
    h.momentum = momentum;
    h.weight_decay = wd;
    return h;
}

/* ---- sgd ---------------------------------------------------------------- */

START_TEST(test_sgd_plain)
{
    mlt_hyper_t h = co_hyper(0.1f, 0.0f, 0.0f);
    compare_rule(MLT_RULE_SGD, &h, 6);
}
END_TEST

START_TEST(test_sgd_momentum)
{
    mlt_hyper_t h = co_hyper(0.05f, 0.9f, 0.0f);
    compare_rule(MLT_RULE_SGD, &h, 8);
}
END_TEST

START_TEST(test_sgd_weight_decay)
{
    mlt_hyper_t h = co_hyper(0.05f, 0.0f, 0.1f);
    compare_rule(MLT_RULE_SGD, &h, 6);
    h.momentum = 0.9f;
    compare_rule(MLT_RULE_SGD, &h, 8);
}
END_TEST

/* Two steps by hand: lr 0.1, m 0.9, wd 0.1, w 1, g 0.5.
 * t1: g' = 0.6, h = 0.6, w = 0.94.
 * t2: g' = 0.594, h = 0.54 + 0.594 = 1.134, w = 0.94 - 0.1134 = 0.8266. */
START_TEST(test_sgd_by_hand)
{
    mlt_hyper_t h = co_hyper(0.1f, 0.9f, 0.1f);
    float w = 1.0f, st = 0.0f, g = 0.5f;
    mlt_optim_apply(MLT_RULE_SGD, &h, &w, &st, &g, 1, 1);
    ck_assert_float_eq_tol(st, 0.6f, 1e-6f);
    ck_assert_float_eq_tol(w, 0.94f, 1e-6f);
    mlt_optim_apply(MLT_RULE_SGD, &h, &w, &st, &g, 1, 2);
    ck_assert_float_eq_tol(st, 1.134f, 1e-6f);
    ck_assert_float_eq_tol(w, 0.8266f, 1e-6f);
}
END_TEST

/* ---- nesterov ----------------------------------------------------------- */

START_TEST(test_nesterov_compare)
{
    mlt_hyper_t h = co_hyper(0.05f, 0.9f, 0.0f);
    compare_rule(MLT_RULE_NESTEROV, &h, 8);
    h.weight_decay = 0.01f;
    compare_rule(MLT_RULE_NESTEROV, &h, 8);
}
END_TEST

/* By hand: lr 0.1, m 0.9, w 1, g 0.5.
 * t1: h = 0.5, w = 1 - 0.1*(0.5 + 0.45) = 0.905.
 * t2: h = 0.45 + 0.5 = 0.95, w = 0.905 - 0.1*(0.5 + 0.855) = 0.7695. */
START_TEST(test_nesterov_by_hand)
{
    mlt_hyper_t h = co_hyper(0.1f, 0.9f, 0.0f);
    float w = 1.0f, st = 0.0f, g = 0.5f;
    mlt_optim_apply(MLT_RULE_NESTEROV, &h, &w, &st, &g, 1, 1);
    ck_assert_float_eq_tol(st, 0.5f, 1e-6f);
    ck_assert_float_eq_tol(w, 0.905f, 1e-6f);
    mlt_optim_apply(MLT_RULE_NESTEROV, &h, &w, &st, &g, 1, 2);
    ck_assert_float_eq_tol(st, 0.95f, 1e-6f);
    ck_assert_float_eq_tol(w, 0.7695f, 1e-6f);
}
END_TEST

/* ---- adam --------------------------------------------------------------- */

START_TEST(test_adam_bias_correction)
{
    mlt_hyper_t h = co_hyper(0.01f, 0.0f, 0.0f);
    compare_rule(MLT_RULE_ADAM, &h, 5);
    h.weight_decay = 0.01f;
    compare_rule(MLT_RULE_ADAM, &h, 5);
}
END_TEST

/* With bias correction the first step moves every weight by ~lr against the
 * sign of its gradient, whatever the gradient's size; without it the step
 * would be ~lr*0.1/sqrt(0.001) = 3.16*lr. */
START_TEST(test_adam_first_step)
{
    enum { N = 37 };
    mlt_hyper_t h = co_hyper(0.01f, 0.0f, 0.0f);
    float w[N], st[2 * N] = {0}, g[N];
    uint32_t seed = 7;
    for (int i = 0; i < N; i++) {
        w[i] = 0.5f;
        g[i] = co_rnd(&seed, 0.01f, 10.0f) * (i % 2 ? -1.0f : 1.0f);
    }
    mlt_optim_apply(MLT_RULE_ADAM, &h, w, st, g, N, 1);
    for (int i = 0; i < N; i++)
        ck_assert_float_eq_tol(w[i], 0.5f - 0.01f * (i % 2 ? -1.0f : 1.0f), 1e-6f);
}
END_TEST

/* step 0 is documented to act as step 1 (t = 0 would divide by zero). */
START_TEST(test_adam_step_zero)
{
    mlt_hyper_t h = co_hyper(0.01f, 0.0f, 0.0f);
    float w0 = 0.3f, s0[2] = {0}, w1 = 0.3f, s1[2] = {0}, g = -0.2f;
    mlt_optim_apply(MLT_RULE_ADAM, &h, &w0, s0, &g, 1, 0);
    mlt_optim_apply(MLT_RULE_ADAM, &h, &w1, s1, &g, 1, 1);
    ck_assert(isfinite(w0));
    ck_assert_float_eq(w0, w1);
    ck_assert_float_eq(s0[0], s1[0]);
    ck_assert_float_eq(s0[1], s1[1]);
}
END_TEST

/* ---- rmsprop / adagrad / adadelta --------------------------------------- */

START_TEST(test_rmsprop_compare)
{
    mlt_hyper_t h = co_hyper(0.01f, 0.0f, 0.0f);
    h.beta2 = 0.99f;
    compare_rule(MLT_RULE_RMSPROP, &h, 6);
    h.weight_decay = 0.01f;
    compare_rule(MLT_RULE_RMSPROP, &h, 6);
}
END_TEST

START_TEST(test_adagrad_compare)
{
    mlt_hyper_t h = co_hyper(0.1f, 0.0f, 0.0f);
    compare_rule(MLT_RULE_ADAGRAD, &h, 6);
    h.weight_decay = 0.01f;
    compare_rule(MLT_RULE_ADAGRAD, &h, 6);
}
END_TEST

/* By hand: lr 0.1, w 1, g 0.5 then -1.5: v = 0.25, w = 0.9; v = 2.5,
 * w = 0.9 + 0.15/sqrt(2.5). */
START_TEST(test_adagrad_by_hand)
{
    mlt_hyper_t h = co_hyper(0.1f, 0.0f, 0.0f);
    float w = 1.0f, st = 0.0f, g = 0.5f;
    mlt_optim_apply(MLT_RULE_ADAGRAD, &h, &w, &st, &g, 1, 1);
    ck_assert_float_eq_tol(st, 0.25f, 1e-7f);
    ck_assert_float_eq_tol(w, 0.9f, 1e-6f);
    g = -1.5f;
    mlt_optim_apply(MLT_RULE_ADAGRAD, &h, &w, &st, &g, 1, 2);
    ck_assert_float_eq_tol(st, 2.5f, 1e-6f);
    ck_assert_float_eq_tol(w, 0.9f + 0.15f / sqrtf(2.5f), 1e-6f);
}
END_TEST

START_TEST(test_adadelta_compare)
{
    mlt_hyper_t h = co_hyper(1.0f, 0.0f, 0.0f);
    h.beta2 = 0.9f;
    h.eps = 1e-6f;
    compare_rule(MLT_RULE_ADADELTA, &h, 8);
    h.weight_decay = 0.01f;
    compare_rule(MLT_RULE_ADADELTA, &h, 8);
}
END_TEST

/* ---- finite ------------------------------------------------------------- */

static float from_bits(uint32_t u)
{
    float f;
    memcpy(&f, &u, sizeof f);
    return f;
}

/* Lengths from the brief plus the block boundaries of mlt_all_finite (16 and
 * 1024 floats) and a multi-block array with a tail. */
static const size_t finite_lengths[] = {1, 7, 15, 16, 17, 1000, 1023, 1024, 1025, 5000};

START_TEST(test_finite_detects)
{
    const float bad[] = {NAN, -NAN, INFINITY, -INFINITY, from_bits(0x7f800001u),
                         from_bits(0xffffffffu)};
    const float good[] = {0.0f, -0.0f, 1.0f, -3.5f, FLT_MAX, -FLT_MAX, FLT_MIN,
                          FLT_TRUE_MIN, -FLT_TRUE_MIN, from_bits(0x007fffffu)};
    for (size_t li = 0; li < sizeof finite_lengths / sizeof finite_lengths[0]; li++) {
        const size_t n = finite_lengths[li];
        float *x = co_xcalloc(n, sizeof *x);
        for (size_t i = 0; i < n; i++)
            x[i] = good[i % (sizeof good / sizeof good[0])];
        ck_assert_msg(mlt_all_finite(x, n), "finite array of %zu reported non-finite", n);
        const size_t pos[] = {0, n / 2, n - 1};
        for (size_t pi = 0; pi < 3; pi++) {
            for (size_t bi = 0; bi < sizeof bad / sizeof bad[0]; bi++) {
                const float keep = x[pos[pi]];
                x[pos[pi]] = bad[bi];
                ck_assert_msg(!mlt_all_finite(x, n), "bad value %zu at %zu of %zu missed", bi,
                              pos[pi], n);
                x[pos[pi]] = keep;
            }
        }
        ck_assert(mlt_all_finite(x, n));
        free(x);
    }
}
END_TEST

START_TEST(test_finite_edges)
{
    float x[2] = {NAN, 1.0f};
    ck_assert(mlt_all_finite(NULL, 0));
    ck_assert(mlt_all_finite(x, 0)); /* n = 0: nothing to look at */
    ck_assert(mlt_all_finite(x + 1, 1));
    ck_assert(!mlt_all_finite(x, 1));
    /* Largest finite and smallest non-finite bit patterns. */
    float edge = from_bits(0x7f7fffffu);
    ck_assert(mlt_all_finite(&edge, 1));
    edge = from_bits(0x7f800000u);
    ck_assert(!mlt_all_finite(&edge, 1));
    edge = from_bits(0xff7fffffu);
    ck_assert(mlt_all_finite(&edge, 1));
}
END_TEST

/* ---- names -------------------------------------------------------------- */

START_TEST(test_names_round_trip)
{
    static const char *const want[MLT_RULE_COUNT_] = {"sgd",     "nesterov", "adam",   "rmsprop",
                                                      "adagrad", "adadelta", "sf-sgd", "sf-adamw"};
    for (int r = 0; r < MLT_RULE_COUNT_; r++) {
        const char *name = mlt_rule_name((mlt_rule_t)r);
        ck_assert_ptr_nonnull(name);
        ck_assert_str_eq(name, want[r]);
        ck_assert_int_eq(mlt_rule_parse(name), r);
    }
}
END_TEST

START_TEST(test_names_invalid)
{
    ck_assert_ptr_null(mlt_rule_name(MLT_RULE_COUNT_));
    ck_assert_ptr_null(mlt_rule_name((mlt_rule_t)99));
    ck_assert_ptr_null(mlt_rule_name((mlt_rule_t)-1));
    ck_assert_int_eq(mlt_rule_parse(NULL), -1);
    ck_assert_int_eq(mlt_rule_parse(""), -1);
    ck_assert_int_eq(mlt_rule_parse("SGD"), -1);
    ck_assert_int_eq(mlt_rule_parse("sg"), -1);
    ck_assert_int_eq(mlt_rule_parse("sgdx"), -1);
    ck_assert_int_eq(mlt_rule_parse("adam "), -1);
}
END_TEST

START_TEST(test_names_state_floats)
{
    ck_assert_uint_eq(mlt_optim_state_floats(MLT_RULE_SGD, false), 1);
    ck_assert_uint_eq(mlt_optim_state_floats(MLT_RULE_NESTEROV, false), 1);
    ck_assert_uint_eq(mlt_optim_state_floats(MLT_RULE_ADAM, false), 2);
    ck_assert_uint_eq(mlt_optim_state_floats(MLT_RULE_RMSPROP, false), 1);
    ck_assert_uint_eq(mlt_optim_state_floats(MLT_RULE_ADAGRAD, false), 1);
    ck_assert_uint_eq(mlt_optim_state_floats(MLT_RULE_ADADELTA, false), 2);
    ck_assert_uint_eq(mlt_optim_state_floats(MLT_RULE_COUNT_, false), 0);
    ck_assert_uint_eq(mlt_optim_state_floats((mlt_rule_t)-1, false), 0);
    /* the schedule-free rules: z, x (and v); average changes nothing */
    ck_assert_uint_eq(mlt_optim_state_floats(MLT_RULE_SF_SGD, false), 2);
    ck_assert_uint_eq(mlt_optim_state_floats(MLT_RULE_SF_SGD, true), 2);
    ck_assert_uint_eq(mlt_optim_state_floats(MLT_RULE_SF_ADAMW, false), 3);
    ck_assert_uint_eq(mlt_optim_state_floats(MLT_RULE_SF_ADAMW, true), 3);
    /* average: x after h for sgd/nesterov; the adaptive rules cannot */
    ck_assert_uint_eq(mlt_optim_state_floats(MLT_RULE_SGD, true), 2);
    ck_assert_uint_eq(mlt_optim_state_floats(MLT_RULE_NESTEROV, true), 2);
    ck_assert_uint_eq(mlt_optim_state_floats(MLT_RULE_ADAM, true), 0);
    ck_assert_uint_eq(mlt_optim_state_floats(MLT_RULE_RMSPROP, true), 0);
    ck_assert_uint_eq(mlt_optim_state_floats(MLT_RULE_ADAGRAD, true), 0);
    ck_assert_uint_eq(mlt_optim_state_floats(MLT_RULE_ADADELTA, true), 0);
    ck_assert_uint_eq(mlt_optim_state_floats(MLT_RULE_COUNT_, true), 0);
    /* where x is */
    ck_assert_int_eq(mlt_optim_average_array(MLT_RULE_SF_SGD, false), 1);
    ck_assert_int_eq(mlt_optim_average_array(MLT_RULE_SF_ADAMW, false), 1);
    ck_assert_int_eq(mlt_optim_average_array(MLT_RULE_SGD, true), 1);
    ck_assert_int_eq(mlt_optim_average_array(MLT_RULE_NESTEROV, true), 1);
    ck_assert_int_eq(mlt_optim_average_array(MLT_RULE_SGD, false), -1);
    ck_assert_int_eq(mlt_optim_average_array(MLT_RULE_ADAM, false), -1);
    ck_assert_int_eq(mlt_optim_average_array(MLT_RULE_ADAM, true), -1);
    ck_assert_int_eq(mlt_optim_average_array(MLT_RULE_COUNT_, true), -1);
    ck_assert(mlt_rule_schedule_free(MLT_RULE_SF_SGD));
    ck_assert(mlt_rule_schedule_free(MLT_RULE_SF_ADAMW));
    for (int r = 0; r < MLT_RULE_SF_SGD; r++)
        ck_assert(!mlt_rule_schedule_free((mlt_rule_t)r));
}
END_TEST

START_TEST(test_names_defaults)
{
    mlt_hyper_t h = mlt_hyper_default();
    ck_assert_float_eq(h.lr, 0.01f);
    ck_assert_float_eq(h.momentum, 0.0f);
    ck_assert_float_eq(h.weight_decay, 0.0f);
    ck_assert_float_eq(h.beta1, 0.9f);
    ck_assert_float_eq(h.beta2, 0.999f);
    ck_assert_float_eq(h.eps, 1e-8f);
    ck_assert_uint_eq(h.warmup, 0);
}
END_TEST

/* Documented no-ops: an invalid rule, and n = 0 (pointers may then be NULL). */
START_TEST(test_names_apply_invalid)
{
    mlt_hyper_t h = mlt_hyper_default();
    float w = 1.0f, st[2] = {0.25f, 0.5f}, g = 1.0f;
    mlt_optim_apply(MLT_RULE_COUNT_, &h, &w, st, &g, 1, 1);
    mlt_optim_apply((mlt_rule_t)-1, &h, &w, st, &g, 1, 1);
    ck_assert_float_eq(w, 1.0f);
    ck_assert_float_eq(st[0], 0.25f);
    ck_assert_float_eq(st[1], 0.5f);
    for (int r = 0; r < MLT_RULE_SF_SGD; r++)
        mlt_optim_apply((mlt_rule_t)r, &h, NULL, NULL, NULL, 0, 1);
    /* mlt_optim_update: an invalid rule, average where the rule cannot keep
     * one, and n = 0 change nothing, the scalars included */
    mlt_optim_scalars_t sc = {.step = 3, .lr_max = 0.5, .weight_sum = 1.0};
    mlt_optim_update(MLT_RULE_COUNT_, false, &h, &w, st, &g, 1, &sc);
    mlt_optim_update(MLT_RULE_ADAM, true, &h, &w, st, &g, 1, &sc);
    for (int r = 0; r < MLT_RULE_COUNT_; r++)
        mlt_optim_update((mlt_rule_t)r, true, &h, NULL, NULL, NULL, 0, &sc);
    ck_assert_float_eq(w, 1.0f);
    ck_assert_float_eq(st[0], 0.25f);
    ck_assert_float_eq(st[1], 0.5f);
    ck_assert_uint_eq(sc.step, 3);
    ck_assert_double_eq(sc.lr_max, 0.5);
    ck_assert_double_eq(sc.weight_sum, 1.0);
}
END_TEST

static Suite *optim_suite(void)
{
    Suite *s = suite_create("optim");

    TCase *tc = tcase_create("sgd");
    tcase_add_test(tc, test_sgd_plain);
    tcase_add_test(tc, test_sgd_momentum);
    tcase_add_test(tc, test_sgd_weight_decay);
    tcase_add_test(tc, test_sgd_by_hand);
    suite_add_tcase(s, tc);

    tc = tcase_create("nesterov");
    tcase_add_test(tc, test_nesterov_compare);
    tcase_add_test(tc, test_nesterov_by_hand);
    suite_add_tcase(s, tc);

    tc = tcase_create("adam");
    tcase_add_test(tc, test_adam_bias_correction);
    tcase_add_test(tc, test_adam_first_step);
    tcase_add_test(tc, test_adam_step_zero);
    suite_add_tcase(s, tc);

    tc = tcase_create("rmsprop");
    tcase_add_test(tc, test_rmsprop_compare);
    suite_add_tcase(s, tc);

    tc = tcase_create("adagrad");
    tcase_add_test(tc, test_adagrad_compare);
    tcase_add_test(tc, test_adagrad_by_hand);
    suite_add_tcase(s, tc);

    tc = tcase_create("adadelta");
    tcase_add_test(tc, test_adadelta_compare);
    suite_add_tcase(s, tc);

    tc = tcase_create("finite");
    tcase_add_test(tc, test_finite_detects);
    tcase_add_test(tc, test_finite_edges);
    suite_add_tcase(s, tc);

    tc = tcase_create("names");
    tcase_add_test(tc, test_names_round_trip);
    tcase_add_test(tc, test_names_invalid);
    tcase_add_test(tc, test_names_state_floats);
    tcase_add_test(tc, test_names_defaults);
    tcase_add_test(tc, test_names_apply_invalid);
    suite_add_tcase(s, tc);

    co_avg_tcases(s);

    return s;
}

int main(void)
{
    SRunner *sr = srunner_create(optim_suite());
    srunner_run_all(sr, CK_ENV);
    int failed = srunner_ntests_failed(sr);
    srunner_free(sr);
    return failed != 0 ? EXIT_FAILURE : EXIT_SUCCESS;
}
