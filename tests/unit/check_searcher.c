/* check_searcher.c - the searchers (tuner/searcher*.c) on known functions
 * and on the properties the tuner relies on.
 *
 * "quality": Branin (optimum 0.397887 on [-5,10]×[0,15]) and Hartmann-6
 * (optimum -3.32237 on [0,1]^6): bayes reaches 1% (Branin, 40 evaluations)
 * and 5% (Hartmann-6, 80 evaluations) of the optimum in at least 8 of 10
 * seeds, beats random search at the same budget in at least 8 of 10 seeds,
 * and tpe beats random on the mean best over the 10 seeds. The numbers are
 * printed to stderr, one summary line per function and searcher.
 * "space": log scale, discrete values, grid coverage, marginal moves.
 * "protocol": determinism, duplicates, diverged results, pending proposals,
 * checkpoints, and the error returns. */
#include "tuner/searcher.h"

#include <check.h>
#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "common/alloc.h"

#define SEEDS 10
#define MAXD  8

typedef double (*objective_t)(const double *x);

static double branin(const double *x)
{
    const double a = 1.0, b = 5.1 / (4.0 * M_PI * M_PI), c = 5.0 / M_PI, r = 6.0, s = 10.0,
                 t = 1.0 / (8.0 * M_PI);
    double q = x[1] - b * x[0] * x[0] + c * x[0] - r;
    return a * q * q + s * (1.0 - t) * cos(x[0]) + s;
}

static double hartmann6(const double *x)
{
    static const double alpha[4] = {1.0, 1.2, 3.0, 3.2};
    static const double A[4][6] = {{10, 3, 17, 3.5, 1.7, 8},
                                   {0.05, 10, 17, 0.1, 8, 14},
                                   {3, 3.5, 1.7, 10, 17, 8},
                                   {17, 8, 0.05, 10, 0.1, 14}};
    static const double P[4][6] = {{0.1312, 0.1696, 0.5569, 0.0124, 0.8283, 0.5886},
                                   {0.2329, 0.4135, 0.8307, 0.3736, 0.1004, 0.9991},
                                   {0.2348, 0.1451, 0.3522, 0.2883, 0.3047, 0.6650},
                                   {0.4047, 0.8828, 0.8732, 0.5743, 0.1091, 0.0381}};
    double sum = 0.0;
    for (int i = 0; i < 4; i++) {
        double e = 0.0;
        for (int j = 0; j < 6; j++)
            e += A[i][j] * (x[j] - P[i][j]) * (x[j] - P[i][j]);
        sum += alpha[i] * exp(-e);
    }
    return -sum;
}

static mlt_tunable_t linear(double min, double max)
{
    mlt_tunable_t t = {.name = "t",
                       .kind = MLT_TUNABLE_LINEAR,
                       .min = min,
                       .max = max,
                       .def = 0.5 * (min + max),
                       .tune = true};
    return t;
}

static mlt_tunable_t logt(double min, double max, double def)
{
    mlt_tunable_t t = {
        .name = "lr", .kind = MLT_TUNABLE_LOG, .min = min, .max = max, .def = def, .tune = true};
    return t;
}

static mlt_tunable_t discrete(double *values, uint32_t n, double def)
{
    mlt_tunable_t t = {.name = "bs",
                       .kind = MLT_TUNABLE_DISCRETE,
                       .min = values[0],
                       .max = values[n - 1],
                       .def = def,
                       .values = values,
                       .n_values = n,
                       .tune = true};
    return t;
}

static double now_s(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

static void check_in_space(const mlt_tunable_t *dims, uint32_t d, const double *x)
{
    for (uint32_t j = 0; j < d; j++) {
        ck_assert_msg(isfinite(x[j]), "dim %u: %g", j, x[j]);
        ck_assert_msg(x[j] >= dims[j].min && x[j] <= dims[j].max, "dim %u: %g outside [%g, %g]", j,
                      x[j], dims[j].min, dims[j].max);
        if (dims[j].kind == MLT_TUNABLE_DISCRETE) {
            bool found = false;
            for (uint32_t k = 0; k < dims[j].n_values; k++)
                found |= x[j] == dims[j].values[k];
            ck_assert_msg(found, "dim %u: %.17g is not one of the values", j, x[j]);
        }
    }
}

/* Runs one search of budget evaluations; returns the best y. *hit: the
 * evaluation (1-based) at which best <= target first held, 0 if never. */
static double run_search(int kind, const mlt_tunable_t *dims, uint32_t d, uint64_t seed,
                         objective_t f, int budget, double target, int *hit)
{
    mlt_search_t *s = mlt_search_new(kind, dims, d, seed, NULL);
    ck_assert_ptr_nonnull(s);
    double best = INFINITY, x[MAXD];
    if (hit)
        *hit = 0;
    for (int e = 1; e <= budget; e++) {
        bool dup;
        ck_assert_int_eq(mlt_search_propose(s, x, &dup), 0);
        check_in_space(dims, d, x);
        double y = f(x);
        ck_assert_int_eq(mlt_search_observe(s, x, y), 0);
        if (y < best)
            best = y;
        if (hit && *hit == 0 && best <= target)
            *hit = e;
    }
    double by;
    ck_assert_int_eq(mlt_search_best(s, NULL, &by), 0);
    ck_assert(by == best);
    ck_assert_uint_eq(mlt_search_count(s), (uint32_t)budget);
    mlt_search_destroy(&s);
    ck_assert_ptr_null(s);
    return best;
}

static int cmp_int(const void *a, const void *b)
{
    return *(const int *)a - *(const int *)b;
}

/* The quality protocol on one function. */
static void quality(const char *fname, objective_t f, const mlt_tunable_t *dims, uint32_t d,
                    double optimum, double rel, int budget)
{
    double target = optimum >= 0 ? optimum * (1.0 + rel) : optimum * (1.0 - rel);
    double bo[SEEDS], rnd[SEEDS], tpe[SEEDS];
    int hits[SEEDS], n_hit = 0, bo_wins = 0;
    double t0 = now_s();
    for (int i = 0; i < SEEDS; i++) {
        bo[i] = run_search(MLT_SEARCHER_BAYES, dims, d, 1000 + (uint64_t)i, f, budget, target,
                           &hits[i]);
        n_hit += hits[i] > 0;
    }
    double t_bo = now_s() - t0;
    t0 = now_s();
    for (int i = 0; i < SEEDS; i++)
        tpe[i] = run_search(MLT_SEARCHER_TPE, dims, d, 1000 + (uint64_t)i, f, budget, target, NULL);
    double t_tpe = now_s() - t0;
    double m_bo = 0, m_rnd = 0, m_tpe = 0;
    for (int i = 0; i < SEEDS; i++) {
        rnd[i] =
            run_search(MLT_SEARCHER_RANDOM, dims, d, 1000 + (uint64_t)i, f, budget, target, NULL);
        bo_wins += bo[i] < rnd[i];
        m_bo += bo[i] / SEEDS;
        m_rnd += rnd[i] / SEEDS;
        m_tpe += tpe[i] / SEEDS;
    }
    /* median evaluations to the target, counting misses as budget + 1 */
    int h[SEEDS];
    for (int i = 0; i < SEEDS; i++)
        h[i] = hits[i] ? hits[i] : budget + 1;
    qsort(h, SEEDS, sizeof(int), cmp_int);
    fprintf(stderr,
            "bayes %s: %d/%d seeds within %g%% in %d, median evals to %g%% = %d%s; "
            "%.2f s for %d seeds (%.1f ms/proposal)\n",
            fname, n_hit, SEEDS, rel * 100, budget, rel * 100, h[SEEDS / 2 - 1],
            h[SEEDS / 2 - 1] > budget ? " (miss)" : "", t_bo, SEEDS, 1e3 * t_bo / (SEEDS * budget));
    fprintf(stderr,
            "%s, best after %d (mean of %d seeds): bayes %.6g (%.1f%% off), tpe %.6g (%.1f%% off, "
            "%.2f s), random %.6g (%.1f%% off); bayes beats random in %d/%d seeds\n",
            fname, budget, SEEDS, m_bo, 100 * fabs((m_bo - optimum) / optimum), m_tpe,
            100 * fabs((m_tpe - optimum) / optimum), t_tpe, m_rnd,
            100 * fabs((m_rnd - optimum) / optimum), bo_wins, SEEDS);
    ck_assert_msg(n_hit >= 8, "bayes %s: only %d/%d seeds within %g%%", fname, n_hit, SEEDS,
                  rel * 100);
    ck_assert_msg(bo_wins >= 8, "bayes beats random on %s in only %d/%d seeds", fname, bo_wins,
                  SEEDS);
    ck_assert_msg(m_tpe < m_rnd, "tpe (%g) does not beat random (%g) on %s", m_tpe, m_rnd, fname);
}

/* ---- quality ------------------------------------------------------------- */

START_TEST(test_branin)
{
    mlt_tunable_t dims[2] = {linear(-5, 10), linear(0, 15)};
    quality("branin", branin, dims, 2, 0.397887, 0.01, 40);
}
END_TEST

START_TEST(test_hartmann6)
{
    mlt_tunable_t dims[6];
    for (int j = 0; j < 6; j++)
        dims[j] = linear(0, 1);
    quality("hartmann6", hartmann6, dims, 6, -3.32237, 0.05, 80);
}
END_TEST

/* ---- space --------------------------------------------------------------- */

START_TEST(test_log_scale)
{
    mlt_tunable_t dims[1] = {logt(1e-5, 1, 1e-2)};
    for (int kind = MLT_SEARCHER_BAYES; kind <= MLT_SEARCHER_GRID; kind++) {
        mlt_search_t *s = mlt_search_new(kind, dims, 1, 7, NULL);
        ck_assert_ptr_nonnull(s);
        int below = 0, n = kind == MLT_SEARCHER_BAYES ? 40 : 200;
        for (int i = 0; i < n; i++) {
            double x;
            ck_assert_int_eq(mlt_search_propose(s, &x, NULL), 0);
            check_in_space(dims, 1, &x);
            below += x < 1e-3;
            /* a flat objective for the model-based ones: no preference */
            ck_assert_int_eq(mlt_search_observe(s, &x, 1.0 + 1e-3 * mlt_search_count(s)), 0);
        }
        if (kind == MLT_SEARCHER_RANDOM || kind == MLT_SEARCHER_GRID)
            ck_assert_msg(below > 0.3 * n, "%s: %d of %d below 1e-3", mlt_search_name(s), below, n);
        if (kind == MLT_SEARCHER_RANDOM)
            fprintf(stderr, "log scale: random put %d of %d on [1e-5, 1] below 1e-3\n", below, n);
        mlt_search_destroy(&s);
    }
}
END_TEST

START_TEST(test_discrete)
{
    double bs[5] = {16, 32, 64, 128, 256}, mom[3] = {0.0, 0.9, 0.99};
    mlt_tunable_t dims[4] = {discrete(bs, 5, 64), logt(1e-4, 1, 1e-2), discrete(mom, 3, 0.9),
                             linear(0, 1)};
    for (int kind = MLT_SEARCHER_BAYES; kind <= MLT_SEARCHER_MARGINAL; kind++) {
        mlt_search_t *s = mlt_search_new(kind, dims, 4, 3, NULL);
        ck_assert_ptr_nonnull(s);
        for (int i = 0; i < 30; i++) {
            double x[4];
            ck_assert_int_eq(mlt_search_propose(s, x, NULL), 0);
            check_in_space(dims, 4, x);
            double y = fabs(log2(x[0]) - 5) + fabs(log10(x[1]) + 2) + (x[2] == 0.9 ? 0 : 1) + x[3];
            ck_assert_int_eq(mlt_search_observe(s, x, y), 0);
        }
        mlt_search_destroy(&s);
    }
}
END_TEST

START_TEST(test_grid)
{
    /* one discrete tunable: its values, each once, in some order */
    double v[5] = {1, 2, 4, 8, 16};
    mlt_tunable_t d1[1] = {discrete(v, 5, 4)};
    mlt_search_t *s = mlt_search_new(MLT_SEARCHER_GRID, d1, 1, 11, NULL);
    int seen[5] = {0};
    for (int i = 0; i < 5; i++) {
        double x;
        bool dup;
        ck_assert_int_eq(mlt_search_propose(s, &x, &dup), 0);
        ck_assert(!dup);
        for (int k = 0; k < 5; k++)
            seen[k] += x == v[k];
    }
    for (int k = 0; k < 5; k++)
        ck_assert_int_eq(seen[k], 1);
    mlt_search_destroy(&s);

    /* two continuous ones (one on a log scale): an 8 × 8 grid, ends included */
    mlt_tunable_t d2[2] = {logt(1e-4, 1, 1e-2), linear(0, 0.7)};
    s = mlt_search_new(MLT_SEARCHER_GRID, d2, 2, 11, NULL);
    double pts[64][2];
    for (int i = 0; i < 64; i++) {
        bool dup;
        ck_assert_int_eq(mlt_search_propose(s, pts[i], &dup), 0);
        ck_assert(!dup);
        check_in_space(d2, 2, pts[i]);
        for (int k = 0; k < i; k++)
            ck_assert(pts[k][0] != pts[i][0] || pts[k][1] != pts[i][1]);
    }
    for (int j = 0; j < 2; j++) {
        double vals[64];
        int nv = 0;
        for (int i = 0; i < 64; i++) {
            bool found = false;
            for (int k = 0; k < nv; k++)
                found |= fabs(vals[k] - pts[i][j]) <= 1e-12 * fabs(vals[k]) + 1e-15;
            if (!found)
                vals[nv++] = pts[i][j];
        }
        ck_assert_int_eq(nv, 8);
        double lo = INFINITY, hi = -INFINITY;
        for (int k = 0; k < nv; k++) {
            lo = fmin(lo, vals[k]);
            hi = fmax(hi, vals[k]);
        }
        ck_assert(lo == d2[j].min && hi == d2[j].max);
        if (j == 0) /* log-spaced: a point at each power of ten and a bit */
            for (int k = 0; k < nv; k++) {
                double e = log10(vals[k]) / (-4.0 / 7.0);
                ck_assert_msg(fabs(e - round(e)) < 1e-9, "%g is not log-spaced", vals[k]);
            }
    }
    /* used up: random points from then on */
    for (int i = 0; i < 10; i++) {
        double x[2];
        ck_assert_int_eq(mlt_search_propose(s, x, NULL), 0);
        check_in_space(d2, 2, x);
    }
    mlt_search_destroy(&s);

    /* a point observed before is skipped */
    s = mlt_search_new(MLT_SEARCHER_GRID, d1, 1, 11, NULL);
    double four = 4;
    ck_assert_int_eq(mlt_search_observe(s, &four, 1.0), 0);
    for (int i = 0; i < 4; i++) {
        double x;
        bool dup;
        ck_assert_int_eq(mlt_search_propose(s, &x, &dup), 0);
        ck_assert(!dup && x != 4);
    }
    mlt_search_destroy(&s);
}
END_TEST

START_TEST(test_marginal)
{
    double bs[5] = {16, 32, 64, 128, 256};
    mlt_tunable_t dims[3] = {logt(1e-4, 1, 1e-2), discrete(bs, 5, 64), linear(0, 0.99)};
    double center[3] = {0.01, 64, 0.9};
    mlt_search_t *s = mlt_search_new(MLT_SEARCHER_MARGINAL, dims, 3, 5, center);
    ck_assert_ptr_nonnull(s);
    int changed[3] = {0};
    for (int i = 0; i < 60; i++) {
        double x[3];
        bool dup;
        ck_assert_int_eq(mlt_search_propose(s, x, &dup), 0);
        check_in_space(dims, 3, x);
        int n = 0, which = -1;
        for (int j = 0; j < 3; j++)
            if (fabs(x[j] - center[j]) > 1e-12 * fabs(center[j])) {
                n++;
                which = j;
            }
        ck_assert_msg(n == 1, "proposal %d changes %d tunables", i, n);
        changed[which]++;
        if (i == 0) /* round-robin from the first tunable: first down by half */
            ck_assert_double_eq_tol(x[0], 0.005, 1e-12);
        if (i == 1)
            ck_assert(x[1] == 32);
        if (i == 3)
            ck_assert_double_eq_tol(x[0], 0.02, 1e-12);
        if (i < 12)
            ck_assert(!dup);
        ck_assert_int_eq(mlt_search_observe(s, x, (double)i), 0);
    }
    for (int j = 0; j < 3; j++)
        ck_assert_int_gt(changed[j], 2);
    mlt_search_destroy(&s);

    /* nothing that can change */
    double one[1] = {8};
    mlt_tunable_t fixed[2] = {discrete(one, 1, 8), linear(0.5, 0.5)};
    s = mlt_search_new(MLT_SEARCHER_MARGINAL, fixed, 2, 5, NULL);
    ck_assert_ptr_nonnull(s);
    double x[2];
    ck_assert_int_eq(mlt_search_propose(s, x, NULL), -ENOSPC);
    mlt_search_destroy(&s);
}
END_TEST

/* ---- protocol ------------------------------------------------------------ */

START_TEST(test_determinism)
{
    mlt_tunable_t dims[2] = {linear(-5, 10), linear(0, 15)};
    for (int kind = MLT_SEARCHER_BAYES; kind <= MLT_SEARCHER_MARGINAL; kind++) {
        mlt_search_t *a = mlt_search_new(kind, dims, 2, 42, NULL);
        mlt_search_t *b = mlt_search_new(kind, dims, 2, 42, NULL);
        mlt_search_t *c = mlt_search_new(kind, dims, 2, 43, NULL);
        int differ = 0;
        for (int i = 0; i < 25; i++) {
            double xa[2], xb[2], xc[2];
            ck_assert_int_eq(mlt_search_propose(a, xa, NULL), 0);
            ck_assert_int_eq(mlt_search_propose(b, xb, NULL), 0);
            ck_assert_int_eq(mlt_search_propose(c, xc, NULL), 0);
            ck_assert_msg(memcmp(xa, xb, sizeof xa) == 0, "%s: proposal %d differs",
                          mlt_search_name(a), i);
            differ += memcmp(xa, xc, sizeof xa) != 0;
            ck_assert_int_eq(mlt_search_observe(a, xa, branin(xa)), 0);
            ck_assert_int_eq(mlt_search_observe(b, xb, branin(xb)), 0);
            ck_assert_int_eq(mlt_search_observe(c, xc, branin(xc)), 0);
        }
        if (kind != MLT_SEARCHER_MARGINAL) /* marginal's schedule ignores the seed */
            ck_assert_msg(differ > 0, "%s: seeds 42 and 43 agree", mlt_search_name(a));
        mlt_search_destroy(&a);
        mlt_search_destroy(&b);
        mlt_search_destroy(&c);
    }
}
END_TEST

START_TEST(test_duplicates)
{
    double a[3] = {1, 2, 3}, b[2] = {10, 20};
    mlt_tunable_t dims[2] = {discrete(a, 3, 1), discrete(b, 2, 10)};
    for (int kind = MLT_SEARCHER_BAYES; kind <= MLT_SEARCHER_MARGINAL; kind++) {
        mlt_search_t *s = mlt_search_new(kind, dims, 2, 9, NULL);
        double hist[40][2];
        int n_new = 0;
        for (int i = 0; i < 40; i++) {
            bool dup, expect = false;
            ck_assert_int_eq(mlt_search_propose(s, hist[i], &dup), 0);
            check_in_space(dims, 2, hist[i]);
            for (int k = 0; k < i; k++)
                expect |= hist[k][0] == hist[i][0] && hist[k][1] == hist[i][1];
            ck_assert_msg(dup == expect, "%s: proposal %d: dup %d, expected %d", mlt_search_name(s),
                          i, dup, expect);
            n_new += !dup;
            ck_assert_int_eq(mlt_search_observe(s, hist[i], hist[i][0] * hist[i][1]), 0);
        }
        /* every point of the 6 comes up (marginal: the 3 + 1 it can reach) */
        ck_assert_int_eq(n_new, kind == MLT_SEARCHER_MARGINAL ? 3 : 6);
        mlt_search_destroy(&s);
    }
    /* a searcher that repeats itself falls back to random: a proposal from
     * bayes, never observed, comes back flagged at most MLT_SEARCH_DUP_RUN times */
    mlt_tunable_t c[2] = {linear(0, 1), discrete(b, 2, 10)};
    mlt_search_t *s = mlt_search_new(MLT_SEARCHER_RANDOM, c, 2, 1, NULL);
    double x[2];
    for (int i = 0; i < 20; i++) {
        bool dup;
        ck_assert_int_eq(mlt_search_propose(s, x, &dup), 0);
        ck_assert(!dup);
    }
    mlt_search_destroy(&s);
}
END_TEST

/* x0 >= 0.8 diverges; the optimum (0.7, 0.5) sits next to that region. */
static double cliff(const double *x)
{
    if (x[0] >= 0.8)
        return INFINITY;
    return (x[0] - 0.7) * (x[0] - 0.7) + (x[1] - 0.5) * (x[1] - 0.5);
}

START_TEST(test_diverged)
{
    mlt_tunable_t dims[2] = {linear(0, 1), linear(0, 1)};
    int in_cliff = 0, n_model = 0, good = 0;
    for (uint64_t seed = 0; seed < 5; seed++) {
        mlt_search_t *s = mlt_search_new(MLT_SEARCHER_BAYES, dims, 2, seed, NULL);
        for (int i = 0; i < 25; i++) {
            double x[2];
            ck_assert_int_eq(mlt_search_propose(s, x, NULL), 0);
            check_in_space(dims, 2, x);
            double y = cliff(x);
            if (i >= 3) {
                n_model++;
                in_cliff += !isfinite(y);
            }
            ck_assert_int_eq(mlt_search_observe(s, x, y), 0);
        }
        double best;
        ck_assert_int_eq(mlt_search_best(s, NULL, &best), 0);
        good += best < 0.02;
        mlt_search_destroy(&s);
    }
    fprintf(stderr, "diverged toy: %d of %d model proposals diverged; %d/5 seeds within 0.02\n",
            in_cliff, n_model, good);
    ck_assert_msg(in_cliff * 4 <= n_model, "%d of %d proposals in the diverged region", in_cliff,
                  n_model);
    ck_assert_int_ge(good, 4);

    /* everything diverges: still finite proposals, in range; NaN counts as diverged */
    mlt_search_t *s = mlt_search_new(MLT_SEARCHER_BAYES, dims, 2, 1, NULL);
    for (int i = 0; i < 10; i++) {
        double x[2];
        ck_assert_int_eq(mlt_search_propose(s, x, NULL), 0);
        check_in_space(dims, 2, x);
        ck_assert_int_eq(mlt_search_observe(s, x, i % 2 ? NAN : INFINITY), 0);
    }
    double y;
    ck_assert_int_eq(mlt_search_best(s, NULL, &y), 0);
    ck_assert(isinf(y) && y > 0);
    mlt_search_destroy(&s);
}
END_TEST

START_TEST(test_pending)
{
    /* several proposals before any result (the tuner does this while it
     * establishes the trial time): bayes spreads them out */
    mlt_tunable_t dims[2] = {linear(-5, 10), linear(0, 15)};
    mlt_search_t *s = mlt_search_new(MLT_SEARCHER_BAYES, dims, 2, 4, NULL);
    double x[12][2];
    for (int i = 0; i < 6; i++) {
        ck_assert_int_eq(mlt_search_propose(s, x[i], NULL), 0);
        ck_assert_int_eq(mlt_search_observe(s, x[i], branin(x[i])), 0);
    }
    for (int i = 6; i < 12; i++) {
        bool dup;
        ck_assert_int_eq(mlt_search_propose(s, x[i], &dup), 0);
        ck_assert(!dup);
        for (int k = 6; k < i; k++) {
            double dx = (x[i][0] - x[k][0]) / 15, dy = (x[i][1] - x[k][1]) / 15;
            ck_assert_msg(dx * dx + dy * dy > 1e-6, "pending proposals %d and %d coincide", k, i);
        }
    }
    mlt_search_destroy(&s);
}
END_TEST

START_TEST(test_checkpoint)
{
    double bs[4] = {16, 32, 64, 128};
    mlt_tunable_t dims[3] = {logt(1e-4, 1, 1e-2), discrete(bs, 4, 32), linear(0, 1)};
    double center[3] = {1e-2, 32, 0.5};
    for (int kind = MLT_SEARCHER_BAYES; kind <= MLT_SEARCHER_MARGINAL; kind++) {
        mlt_search_t *a = mlt_search_new(kind, dims, 3, 77, center);
        double x[3], z[3];
        for (int i = 0; i < 14; i++) {
            ck_assert_int_eq(mlt_search_propose(a, x, NULL), 0);
            ck_assert_int_eq(mlt_search_observe(a, x, log(x[0]) + x[2] + x[1] / 64), 0);
        }
        ck_assert_int_eq(mlt_search_propose(a, x, NULL), 0); /* one pending at the save */
        FILE *f = tmpfile();
        ck_assert_ptr_nonnull(f);
        ck_assert_int_eq(mlt_search_save(a, f), 0);

        mlt_search_t *b = mlt_search_new(kind, dims, 3, 77, center);
        rewind(f);
        ck_assert_int_eq(mlt_search_load(b, f), 0);
        ck_assert_uint_eq(mlt_search_count(b), 14);
        for (int i = 0; i < 6; i++) {
            ck_assert_int_eq(mlt_search_propose(a, x, NULL), 0);
            ck_assert_int_eq(mlt_search_propose(b, z, NULL), 0);
            ck_assert_msg(memcmp(x, z, sizeof x) == 0, "%s: loaded searcher differs at %d",
                          mlt_search_name(a), i);
            ck_assert_int_eq(mlt_search_observe(a, x, x[2]), 0);
            ck_assert_int_eq(mlt_search_observe(b, z, z[2]), 0);
        }
        /* another kind, seed or space is refused and leaves the searcher alone */
        int other = kind == MLT_SEARCHER_RANDOM ? MLT_SEARCHER_GRID : MLT_SEARCHER_RANDOM;
        mlt_search_t *c = mlt_search_new(other, dims, 3, 77, center);
        rewind(f);
        ck_assert_int_eq(mlt_search_load(c, f), -EPROTO);
        ck_assert_uint_eq(mlt_search_count(c), 0);
        mlt_search_destroy(&c);
        c = mlt_search_new(kind, dims, 3, 78, center);
        rewind(f);
        ck_assert_int_eq(mlt_search_load(c, f), -EPROTO);
        mlt_search_destroy(&c);
        c = mlt_search_new(kind, dims, 2, 77, center);
        rewind(f);
        ck_assert_int_eq(mlt_search_load(c, f), -EPROTO);
        mlt_search_destroy(&c);
        fclose(f);

        /* a truncated checkpoint */
        f = tmpfile();
        ck_assert_int_eq(mlt_search_save(a, f), 0);
        long len = ftell(f);
        ck_assert_int_eq(ftruncate(fileno(f), len - 5), 0);
        rewind(f);
        c = mlt_search_new(kind, dims, 3, 77, center);
        ck_assert_int_eq(mlt_search_load(c, f), -EPROTO);
        ck_assert_uint_eq(mlt_search_count(c), 0);
        mlt_search_destroy(&c);
        fclose(f);
        mlt_search_destroy(&a);
        mlt_search_destroy(&b);
    }
}
END_TEST

START_TEST(test_errors)
{
    mlt_tunable_t ok[1] = {linear(0, 1)};
    errno = 0;
    ck_assert_ptr_null(mlt_search_new(7, ok, 1, 0, NULL));
    ck_assert_int_eq(errno, EINVAL);
    ck_assert_ptr_null(mlt_search_new(MLT_SEARCHER_RANDOM, ok, 0, 0, NULL));
    ck_assert_ptr_null(mlt_search_new(MLT_SEARCHER_RANDOM, NULL, 1, 0, NULL));
    ck_assert_ptr_null(mlt_search_new(MLT_SEARCHER_RANDOM, ok, MLT_SEARCH_MAX_DIMS + 1, 0, NULL));
    mlt_tunable_t bad_log[1] = {logt(0, 1, 0.5)};
    ck_assert_ptr_null(mlt_search_new(MLT_SEARCHER_BAYES, bad_log, 1, 0, NULL));
    mlt_tunable_t bad_range[1] = {linear(1, 0)};
    ck_assert_ptr_null(mlt_search_new(MLT_SEARCHER_TPE, bad_range, 1, 0, NULL));
    double unsorted[3] = {1, 3, 2};
    mlt_tunable_t bad_values[1] = {discrete(unsorted, 3, 1)};
    ck_assert_ptr_null(mlt_search_new(MLT_SEARCHER_GRID, bad_values, 1, 0, NULL));
    double nan_center = NAN;
    ck_assert_ptr_null(mlt_search_new(MLT_SEARCHER_MARGINAL, ok, 1, 0, &nan_center));

    mlt_search_t *s = mlt_search_new(MLT_SEARCHER_RANDOM, ok, 1, 0, NULL);
    double x = 0.5, y;
    ck_assert_int_eq(mlt_search_best(s, &x, &y), -ENOENT);
    ck_assert_int_eq(mlt_search_best(NULL, &x, &y), -EINVAL);
    ck_assert_int_eq(mlt_search_propose(NULL, &x, NULL), -EINVAL);
    ck_assert_int_eq(mlt_search_propose(s, NULL, NULL), -EINVAL);
    ck_assert_int_eq(mlt_search_observe(s, &x, -INFINITY), -EINVAL);
    double inf = INFINITY;
    ck_assert_int_eq(mlt_search_observe(s, &inf, 1.0), -EINVAL);
    ck_assert_int_eq(mlt_search_observe(NULL, &x, 1.0), -EINVAL);
    ck_assert_uint_eq(mlt_search_count(s), 0);
    /* out of range is clamped; best reports the clamped point */
    x = 3.0;
    ck_assert_int_eq(mlt_search_observe(s, &x, 2.0), 0);
    ck_assert_int_eq(mlt_search_best(s, &x, &y), 0);
    ck_assert(x == 1.0 && y == 2.0);
    ck_assert_str_eq(mlt_search_name(s), "random");
    ck_assert_int_eq(mlt_search_kind(s), MLT_SEARCHER_RANDOM);
    mlt_search_destroy(&s);
    ck_assert_ptr_null(s);
    mlt_search_destroy(&s);
    mlt_search_destroy(NULL);
}
END_TEST

START_TEST(test_oom)
{
    /* the model-based searchers' work space is try-allocated: a failure fails
     * that proposal only, and the next one works */
    mlt_tunable_t dims[2] = {linear(-5, 10), linear(0, 15)};
    for (int kind = MLT_SEARCHER_BAYES; kind <= MLT_SEARCHER_TPE; kind++) {
        mlt_search_t *s = mlt_search_new(kind, dims, 2, 2, NULL);
        double x[2];
        for (int i = 0; i < 12; i++) {
            ck_assert_int_eq(mlt_search_propose(s, x, NULL), 0);
            ck_assert_int_eq(mlt_search_observe(s, x, branin(x)), 0);
        }
        mlt_alloc_fail_after(0);
        ck_assert_int_eq(mlt_search_propose(s, x, NULL), -ENOMEM);
        mlt_alloc_fail_after(-1);
        bool dup;
        ck_assert_int_eq(mlt_search_propose(s, x, &dup), 0);
        ck_assert(!dup);
        check_in_space(dims, 2, x);
        mlt_search_destroy(&s);
    }
}
END_TEST

START_TEST(test_many_observations)
{
    /* more than the process fits: it takes the best half and the latest */
    mlt_tunable_t dims[1] = {logt(1e-4, 1, 1e-2)};
    mlt_search_t *s = mlt_search_new(MLT_SEARCHER_BAYES, dims, 1, 3, NULL);
    double x;
    for (uint32_t i = 0; i < MLT_SEARCH_GP_MAX + 40; i++) {
        x = pow(10.0, -4.0 + 4.0 * (double)i / (MLT_SEARCH_GP_MAX + 40));
        double y = pow(log10(x) + 2.5, 2);
        ck_assert_int_eq(mlt_search_observe(s, &x, i % 7 == 3 ? INFINITY : y), 0);
    }
    for (int i = 0; i < 3; i++) {
        ck_assert_int_eq(mlt_search_propose(s, &x, NULL), 0);
        check_in_space(dims, 1, &x);
        ck_assert_int_eq(mlt_search_observe(s, &x, pow(log10(x) + 2.5, 2)), 0);
    }
    mlt_search_destroy(&s);
}
END_TEST

static Suite *searcher_suite(void)
{
    Suite *s = suite_create("searcher");

    TCase *tc = tcase_create("quality");
    tcase_set_timeout(tc, 300);
    tcase_add_test(tc, test_branin);
    tcase_add_test(tc, test_hartmann6);
    suite_add_tcase(s, tc);

    tc = tcase_create("space");
    tcase_set_timeout(tc, 60);
    tcase_add_test(tc, test_log_scale);
    tcase_add_test(tc, test_discrete);
    tcase_add_test(tc, test_grid);
    tcase_add_test(tc, test_marginal);
    suite_add_tcase(s, tc);

    tc = tcase_create("protocol");
    tcase_set_timeout(tc, 60);
    tcase_add_test(tc, test_determinism);
    tcase_add_test(tc, test_duplicates);
    tcase_add_test(tc, test_diverged);
    tcase_add_test(tc, test_pending);
    tcase_add_test(tc, test_checkpoint);
    tcase_add_test(tc, test_errors);
    tcase_add_test(tc, test_oom);
    tcase_add_test(tc, test_many_observations);
    suite_add_tcase(s, tc);

    return s;
}

int main(void)
{
    SRunner *sr = srunner_create(searcher_suite());
    srunner_run_all(sr, CK_ENV);
    int failed = srunner_ntests_failed(sr);
    srunner_free(sr);
    return failed != 0 ? EXIT_FAILURE : EXIT_SUCCESS;
}
