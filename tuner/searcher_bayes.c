/* searcher_bayes.c - Bayesian optimisation: a Gaussian process over the unit
 * cube and expected improvement (Snoek, Larochelle, Adams: "Practical Bayesian
 * optimization of machine learning algorithms", NIPS 2012, without their
 * slice sampling: the hyperparameters are fitted by maximum a posteriori).
 *
 * Proposals:
 *  1. The first max(BO_INIT_MIN, d + 1) come from a Latin hypercube drawn from
 *     the seed at creation (one point in each of n strata per dimension),
 *     unless that many observations came first (a caller's own initial
 *     design, such as the tuner's, centred on a learning-rate range test).
 *  2. After that, every proposal refits the process to all observations (at
 *     most MLT_SEARCH_GP_MAX: the best half and the most recent) and maximises
 *     expected improvement.
 *
 * The model. Inputs are the snapped unit-cube points (log scale and discrete
 * indices come from searcher.c). Outputs are standardised to mean 0 and
 * variance 1; a diverged result (+INFINITY) is first replaced by the worst
 * finite result plus half the range of the finite ones (plus 1 when they are
 * all equal), so the process learns that the region is bad without one huge
 * value flattening everything else; with no finite result at all every y is 0.
 * The kernel is Matérn 5/2 with automatic relevance determination,
 *     k(a, b) = sf2 (1 + r + r^2 / 3) exp(-r),  r = sqrt(5 sum_j (a_j - b_j)^2 / l_j^2),
 * plus noise variance sn2 on the diagonal. theta = log(sf2, l_1..l_d, sn2) is
 * fitted by maximising the log marginal likelihood plus weak Gaussian priors
 * on theta (keeping few points from fitting absurd length scales), within
 * box bounds, by Nelder-Mead in log space from the previous optimum, a fixed
 * default and (every few fits) random starts, each with a capped number of
 * likelihood evaluations. The Cholesky factor is LAPACK's dpotrf (OpenBLAS).
 *
 * Proposals not yet observed (a tuner may ask for several before it reports)
 * join the process as "kriging believer" points: their output is the fitted
 * mean there, or the best result when the mean is below it (a believed
 * improvement would keep attracting proposals), so EI falls around them and
 * the next proposal goes elsewhere.
 *
 * The acquisition. Expected improvement over the best standardised result,
 * computed as log EI (exact for z > -25, asymptotic below) so that points far
 * from the best still rank. It is maximised over EI_RANDOM uniform points plus
 * Gaussian perturbations of the best EI_NEAR_BEST observations at three
 * scales, after which the best EI_REFINE candidates are polished by a (1+1)
 * evolution strategy. Discrete coordinates are snapped before every
 * evaluation, and in spaces with discrete dimensions points already seen are
 * skipped. Every random number comes from the searcher's generator, so the
 * proposals are a function of the seed and the observations. */
#define MLT_SEARCH_INTERNAL
#include "tuner/searcher.h"

#include <errno.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "common/alloc.h"
#include "common/rng.h"

/* LAPACK's Cholesky factorisation (in Debian's OpenBLAS). The trailing
 * length is Fortran's hidden length of the character argument. */
extern void dpotrf_(const char *uplo, const int *n, double *a, const int *lda, int *info,
                    size_t uplo_len);

#define BO_INIT_MIN     3    /* initial design points, at least (else d + 1) */
#define JITTER          1e-9 /* added to the diagonal, relative to sf2 */
#define EI_XI           0.0  /* improvement margin, in standardised units */
#define EI_RANDOM       1000 /* uniform candidates per proposal */
#define EI_NEAR_BEST    5    /* best observations perturbed ... */
#define EI_NEAR_EACH    60   /* ... this many times each, over three scales */
#define EI_REFINE       5    /* best candidates polished ... */
#define EI_REFINE_STEPS 40   /* ... by this many (1+1)-ES steps */
#define FIT_EVALS_WARM  40   /* likelihood evaluations per parameter, warm start */
#define FIT_EVALS_COLD  25   /* ... per parameter, other starts */
#define FIT_RANDOM      2    /* random starts when they are due */
#define FIT_RANDOM_EACH 5    /* random starts every this many fits (always while small) */
#define FIT_SMALL_N     20   /* "small": fewer observations than this */
#define MAX_PENDING     32   /* proposals awaiting results the model allows for */
#define LOG_2PI         1.8378770664093453

/* Bounds and priors of theta (log sf2, log l_j, log sn2): mean and sd of a
 * Gaussian prior on each, then the box. */
#define SF2_LO   (-4.0) /* sf2 in [0.018, 20] */
#define SF2_HI   3.0
#define SF2_MU   0.0
#define SF2_SD   1.5
#define LEN_LO   (-4.0) /* l in [0.018, 7.4] of the unit cube */
#define LEN_HI   2.0
#define LEN_MU   (-1.0)
#define LEN_SD   1.5
#define NOISE_LO (-20.0) /* sn2 in [2e-9, 1] */
#define NOISE_HI 0.0
#define NOISE_MU (-8.0)
#define NOISE_SD 4.0

typedef struct bayes {
    uint32_t n_init; /* initial design points */
    double *init_u;  /* n_init × d, the Latin hypercube */
    uint32_t next;   /* initial points proposed so far */
    uint32_t fits;   /* model fits so far */
    bool have_theta; /* theta holds the last fit */
    double theta[MLT_SEARCH_MAX_DIMS + 2];
} bayes_t;

/* The process for one proposal: data, hyperparameters, factor. */
typedef struct gp {
    uint32_t n, d, p; /* points, dimensions, hyperparameters (d + 2) */
    double *x;        /* n × d inputs */
    double *y;        /* n standardised outputs */
    double *dist;     /* n(n-1)/2 × d squared coordinate differences */
    double *k;        /* n × n, column-major: K, then its Cholesky factor L */
    double *alpha;    /* K^-1 y */
    double *work;     /* n: k* and L^-1 k* */
    double sf2, sn2;  /* signal and noise variance */
    double inv_l2[MLT_SEARCH_MAX_DIMS];
    bool any_discrete; /* skip seen points when maximising EI */
} gp_t;

/* ---- the model ----------------------------------------------------------- */

static void theta_bounds(uint32_t p, double *lo, double *hi, double *mu, double *sd)
{
    for (uint32_t i = 0; i < p; i++) {
        bool first = i == 0, last = i == p - 1;
        lo[i] = first ? SF2_LO : last ? NOISE_LO : LEN_LO;
        hi[i] = first ? SF2_HI : last ? NOISE_HI : LEN_HI;
        if (mu) {
            mu[i] = first ? SF2_MU : last ? NOISE_MU : LEN_MU;
            sd[i] = first ? SF2_SD : last ? NOISE_SD : LEN_SD;
        }
    }
}

static void gp_set_theta(gp_t *g, const double *theta)
{
    g->sf2 = exp(theta[0]);
    for (uint32_t j = 0; j < g->d; j++)
        g->inv_l2[j] = exp(-2.0 * theta[1 + j]);
    g->sn2 = exp(theta[g->p - 1]);
}

static double matern52(double sf2, double r2)
{
    double r = sqrt(5.0 * r2);
    return sf2 * (1.0 + r + r * r / 3.0) * exp(-r);
}

/* Builds K for the current theta and factors it; retries with more jitter.
 * Returns 0 or -EDOM when K is not positive definite even then. */
static int gp_factor(gp_t *g)
{
    int n = (int)g->n, info = 0;
    double jitter = JITTER * g->sf2;
    for (int attempt = 0; attempt < 4; attempt++, jitter *= 100.0) {
        for (int i = 0; i < n; i++) { /* pairs packed row by row: (i, j < i) */
            const double *dd = g->dist + (size_t)i * (i - 1) / 2 * g->d;
            for (int j = 0; j < i; j++, dd += g->d) {
                double r2 = 0.0;
                for (uint32_t c = 0; c < g->d; c++)
                    r2 += dd[c] * g->inv_l2[c];
                g->k[(size_t)j * n + i] = matern52(g->sf2, r2);
            }
            g->k[(size_t)i * n + i] = g->sf2 + g->sn2 + jitter;
        }
        dpotrf_("L", &n, g->k, &n, &info, 1);
        if (info == 0)
            return 0;
    }
    return -EDOM;
}

/* alpha = K^-1 y from the factor: L z = y, then L^T alpha = z. Written out
 * rather than LAPACK's dpotrs, whose level-2 calls wake OpenBLAS's threads
 * for a few thousand flops (measured: a quarter more CPU time in the test). */
static void gp_solve(gp_t *g)
{
    uint32_t n = g->n;
    double *a = g->alpha;
    memcpy(a, g->y, n * sizeof(double));
    for (uint32_t c = 0; c < n; c++) { /* forward, column by column */
        const double *col = g->k + (size_t)c * n;
        a[c] /= col[c];
        for (uint32_t i = c + 1; i < n; i++)
            a[i] -= col[i] * a[c];
    }
    for (uint32_t c = n; c-- > 0;) { /* backward: row c of L^T is column c of L */
        const double *col = g->k + (size_t)c * n;
        double v = a[c];
        for (uint32_t i = c + 1; i < n; i++)
            v -= col[i] * a[i];
        a[c] = v / col[c];
    }
}

/* Negative log posterior of theta (up to a constant); HUGE_VAL when K fails. */
static double gp_nlp(gp_t *g, const double *theta)
{
    double lo[MLT_SEARCH_MAX_DIMS + 2], hi[MLT_SEARCH_MAX_DIMS + 2];
    double mu[MLT_SEARCH_MAX_DIMS + 2], sd[MLT_SEARCH_MAX_DIMS + 2];
    theta_bounds(g->p, lo, hi, mu, sd);
    gp_set_theta(g, theta);
    if (gp_factor(g) != 0)
        return HUGE_VAL;
    gp_solve(g);
    double v = 0.5 * (double)g->n * LOG_2PI;
    for (uint32_t i = 0; i < g->n; i++)
        v += 0.5 * g->y[i] * g->alpha[i] + log(g->k[(size_t)i * g->n + i]);
    for (uint32_t i = 0; i < g->p; i++) {
        double z = (theta[i] - mu[i]) / sd[i];
        v += 0.5 * z * z;
    }
    return isfinite(v) ? v : HUGE_VAL;
}

/* Nelder-Mead over theta inside the box [lo, hi] (points are clamped into
 * it), from x with initial steps of size step; at most max_evals evaluations.
 * Leaves the best point in x and returns its value. */
static double nelder_mead(gp_t *g, double *x, double step, int max_evals, const double *lo,
                          const double *hi)
{
    enum { PMAX = MLT_SEARCH_MAX_DIMS + 2 };
    uint32_t p = g->p;
    double sx[PMAX + 1][PMAX], fx[PMAX + 1];
    double cen[PMAX], xr[PMAX], xe[PMAX], xc[PMAX];
    int evals = 0;

#define CLAMP_EVAL(pt, out)                                                                        \
    do {                                                                                           \
        for (uint32_t c_ = 0; c_ < p; c_++)                                                        \
            (pt)[c_] = (pt)[c_] < lo[c_] ? lo[c_] : (pt)[c_] > hi[c_] ? hi[c_] : (pt)[c_];         \
        (out) = gp_nlp(g, (pt));                                                                   \
        evals++;                                                                                   \
    } while (0)

    for (uint32_t i = 0; i <= p; i++) {
        memcpy(sx[i], x, p * sizeof(double));
        if (i > 0) { /* step inward when at the upper bound */
            double s = x[i - 1] + step > hi[i - 1] ? -step : step;
            sx[i][i - 1] += s;
        }
        CLAMP_EVAL(sx[i], fx[i]);
    }
    while (evals < max_evals) {
        /* order: best first */
        for (uint32_t i = 1; i <= p; i++)
            for (uint32_t k = i; k > 0 && fx[k] < fx[k - 1]; k--) {
                double t = fx[k];
                fx[k] = fx[k - 1];
                fx[k - 1] = t;
                for (uint32_t c = 0; c < p; c++) {
                    t = sx[k][c];
                    sx[k][c] = sx[k - 1][c];
                    sx[k - 1][c] = t;
                }
            }
        if (fabs(fx[p] - fx[0]) <= 1e-7 * (1.0 + fabs(fx[0])))
            break;
        for (uint32_t c = 0; c < p; c++) {
            cen[c] = 0.0;
            for (uint32_t i = 0; i < p; i++)
                cen[c] += sx[i][c];
            cen[c] /= (double)p;
        }
        double fr, fe, fc;
        for (uint32_t c = 0; c < p; c++)
            xr[c] = cen[c] + (cen[c] - sx[p][c]);
        CLAMP_EVAL(xr, fr);
        if (fr < fx[0]) {
            for (uint32_t c = 0; c < p; c++)
                xe[c] = cen[c] + 2.0 * (cen[c] - sx[p][c]);
            CLAMP_EVAL(xe, fe);
            if (fe < fr) {
                memcpy(sx[p], xe, p * sizeof(double));
                fx[p] = fe;
            } else {
                memcpy(sx[p], xr, p * sizeof(double));
                fx[p] = fr;
            }
            continue;
        }
        if (fr < fx[p - 1]) {
            memcpy(sx[p], xr, p * sizeof(double));
            fx[p] = fr;
            continue;
        }
        bool outside = fr < fx[p];
        for (uint32_t c = 0; c < p; c++)
            xc[c] = outside ? cen[c] + 0.5 * (xr[c] - cen[c]) : cen[c] + 0.5 * (sx[p][c] - cen[c]);
        CLAMP_EVAL(xc, fc);
        if (fc < (outside ? fr : fx[p])) {
            memcpy(sx[p], xc, p * sizeof(double));
            fx[p] = fc;
            continue;
        }
        for (uint32_t i = 1; i <= p; i++) { /* shrink toward the best */
            for (uint32_t c = 0; c < p; c++)
                sx[i][c] = sx[0][c] + 0.5 * (sx[i][c] - sx[0][c]);
            CLAMP_EVAL(sx[i], fx[i]);
        }
    }
#undef CLAMP_EVAL
    uint32_t best = 0;
    for (uint32_t i = 1; i <= p; i++)
        if (fx[i] < fx[best])
            best = i;
    memcpy(x, sx[best], p * sizeof(double));
    return fx[best];
}

/* Fits theta (from the previous fit, a default and sometimes random starts),
 * then leaves K factored and alpha solved for the best. */
static int gp_fit(mlt_search_t *s, bayes_t *b, gp_t *g)
{
    double lo[MLT_SEARCH_MAX_DIMS + 2], hi[MLT_SEARCH_MAX_DIMS + 2];
    double mu[MLT_SEARCH_MAX_DIMS + 2], sd[MLT_SEARCH_MAX_DIMS + 2];
    double best[MLT_SEARCH_MAX_DIMS + 2], cur[MLT_SEARCH_MAX_DIMS + 2];
    uint32_t p = g->p;
    theta_bounds(p, lo, hi, mu, sd);
    double fbest = HUGE_VAL;

    int n_random = (g->n < FIT_SMALL_N || b->fits % FIT_RANDOM_EACH == 0) ? FIT_RANDOM : 0;
    int starts = 1 + (b->have_theta ? 1 : 0) + n_random;
    for (int k = 0; k < starts; k++) {
        int evals = (int)p * FIT_EVALS_COLD;
        double step = 1.0;
        if (k == 0 && b->have_theta) {
            memcpy(cur, b->theta, p * sizeof(double));
            evals = (int)p * FIT_EVALS_WARM;
            step = 0.5;
        } else if (k <= (b->have_theta ? 1 : 0)) {
            memcpy(cur, mu, p * sizeof(double));
        } else {
            for (uint32_t i = 0; i < p; i++)
                cur[i] = lo[i] + (hi[i] - lo[i]) * mlt_rng_uniform(&s->rng);
            cur[p - 1] = mu[p - 1]; /* random noise levels only waste the budget */
        }
        double f = nelder_mead(g, cur, step, evals, lo, hi);
        if (f < fbest) {
            fbest = f;
            memcpy(best, cur, p * sizeof(double));
        }
    }
    b->fits++;
    if (!isfinite(fbest)) { /* K hopeless everywhere: fall back to the default */
        memcpy(best, mu, p * sizeof(double));
        best[p - 1] = NOISE_HI;
    }
    memcpy(b->theta, best, p * sizeof(double));
    b->have_theta = true;
    gp_set_theta(g, best);
    if (gp_factor(g) != 0)
        return -EDOM;
    gp_solve(g);
    return 0;
}

/* ---- the acquisition ----------------------------------------------------- */

/* log(z Phi(z) + phi(z)): log EI / sigma. */
static double log_h(double z)
{
    if (z > -25.0) {
        double phi = exp(-0.5 * z * z) / sqrt(2.0 * M_PI);
        double cdf = 0.5 * erfc(-z / M_SQRT2);
        double h = z * cdf + phi;
        return h > 0.0 ? log(h) : -0.5 * z * z - 0.5 * LOG_2PI - 2.0 * log(-z);
    }
    double t2 = 1.0 / (z * z); /* phi(z) (1/t^2 - 3/t^4 + 15/t^6 - 105/t^8 ...) */
    double series = t2 * (1.0 - t2 * (3.0 - t2 * (15.0 - t2 * 105.0)));
    return -0.5 * z * z - 0.5 * LOG_2PI + log(series);
}

/* log expected improvement below fbest at unit point u. */
static double gp_log_ei(const gp_t *g, const double *u, double fbest)
{
    uint32_t n = g->n, d = g->d;
    double *v = g->work;
    double mean = 0.0;
    for (uint32_t i = 0; i < n; i++) {
        const double *xi = g->x + (size_t)i * d;
        double r2 = 0.0;
        for (uint32_t c = 0; c < d; c++) {
            double t = u[c] - xi[c];
            r2 += t * t * g->inv_l2[c];
        }
        v[i] = matern52(g->sf2, r2);
        mean += v[i] * g->alpha[i];
    }
    /* v = L^-1 k*, column by column (L column-major, lower) */
    double var = g->sf2;
    for (uint32_t c = 0; c < n; c++) {
        const double *col = g->k + (size_t)c * n;
        double vc = v[c] / col[c];
        v[c] = vc;
        var -= vc * vc;
        for (uint32_t i = c + 1; i < n; i++)
            v[i] -= col[i] * vc;
    }
    double floor = 1e-12 * g->sf2;
    double sdev = sqrt(var > floor ? var : floor);
    return log(sdev) + log_h((fbest - mean - EI_XI) / sdev);
}

typedef struct cand {
    double score;
    double u[MLT_SEARCH_MAX_DIMS];
} cand_t;

static double score_point(const mlt_search_t *s, const gp_t *g, double *u, double fbest)
{
    mlt_search_snap(s, u);
    if (g->any_discrete && mlt_search_seen(s, u))
        return -HUGE_VAL;
    return gp_log_ei(g, u, fbest);
}

/* Keeps the best k candidates in top (sorted, best first). */
static void keep_top(cand_t *top, uint32_t k, uint32_t *have, uint32_t d, const double *u,
                     double score)
{
    if (*have == k && !(score > top[k - 1].score))
        return;
    uint32_t i = *have < k ? (*have)++ : k - 1;
    while (i > 0 && score > top[i - 1].score) {
        top[i] = top[i - 1];
        i--;
    }
    top[i].score = score;
    memcpy(top[i].u, u, d * sizeof(double));
}

/* Writes the point of highest EI found to out; n_near: how many of the first
 * (best) rows of g->x to search around. */
static void maximise_ei(mlt_search_t *s, gp_t *g, double fbest, uint32_t n_near, double *out)
{
    uint32_t d = g->d, have = 0;
    cand_t top[EI_REFINE];
    double u[MLT_SEARCH_MAX_DIMS];
    for (int i = 0; i < EI_RANDOM; i++) {
        for (uint32_t c = 0; c < d; c++)
            u[c] = mlt_rng_uniform(&s->rng);
        keep_top(top, EI_REFINE, &have, d, u, score_point(s, g, u, fbest));
    }
    static const double scales[3] = {0.1, 0.02, 0.004};
    for (uint32_t b = 0; b < n_near; b++)
        for (int i = 0; i < EI_NEAR_EACH; i++) {
            const double *x = g->x + (size_t)b * d;
            double sc = scales[i % 3];
            for (uint32_t c = 0; c < d; c++)
                u[c] = x[c] + sc * mlt_rng_normal(&s->rng);
            keep_top(top, EI_REFINE, &have, d, u, score_point(s, g, u, fbest));
        }
    /* polish each of the best by a (1+1) evolution strategy with the 1/5 rule */
    for (uint32_t t = 0; t < have; t++) {
        double sigma = 0.02;
        for (int i = 0; i < EI_REFINE_STEPS; i++) {
            for (uint32_t c = 0; c < d; c++)
                u[c] = top[t].u[c] + sigma * mlt_rng_normal(&s->rng);
            double sc = score_point(s, g, u, fbest);
            if (sc > top[t].score) {
                top[t].score = sc;
                memcpy(top[t].u, u, d * sizeof(double));
                sigma *= 2.0;
            } else {
                sigma *= 0.84;
            }
            if (sigma < 1e-5)
                sigma = 1e-5;
        }
    }
    uint32_t pick = 0;
    for (uint32_t t = 1; t < have; t++)
        if (top[t].score > top[pick].score)
            pick = t;
    if (have == 0 || !(top[pick].score > -HUGE_VAL)) /* everything seen: any point */
        mlt_search_random_unit(s, &s->rng, out);
    else
        memcpy(out, top[pick].u, d * sizeof(double));
}

/* ---- the searcher -------------------------------------------------------- */

static int bayes_init(mlt_search_t *s, const double *center_u)
{
    (void)center_u;
    bayes_t *b = mlt_calloc(1, sizeof(*b));
    uint32_t d = s->d;
    b->n_init = d + 1 > BO_INIT_MIN ? d + 1 : BO_INIT_MIN;
    b->init_u = mlt_malloc((size_t)b->n_init * d * sizeof(double));
    uint64_t rng = mlt_rng_mix(s->seed, 0x6c6873u); /* "lhs" */
    uint32_t perm[MLT_SEARCH_MAX_DIMS + 1];
    for (uint32_t c = 0; c < d; c++) { /* a Latin hypercube, one column at a time */
        for (uint32_t i = 0; i < b->n_init; i++)
            perm[i] = i;
        for (uint32_t i = b->n_init; i > 1; i--) {
            uint32_t r = mlt_rng_below(&rng, i), t = perm[i - 1];
            perm[i - 1] = perm[r];
            perm[r] = t;
        }
        for (uint32_t i = 0; i < b->n_init; i++)
            b->init_u[(size_t)i * d + c] = (perm[i] + mlt_rng_uniform(&rng)) / b->n_init;
    }
    for (uint32_t i = 0; i < b->n_init; i++)
        mlt_search_snap(s, b->init_u + (size_t)i * d);
    s->state = b;
    return 0;
}

static void bayes_fini(mlt_search_t *s)
{
    bayes_t *b = s->state;
    if (b)
        mlt_free(b->init_u);
    mlt_free(b);
    s->state = NULL;
}

/* Picks the observations the process fits (all, or the best half and the most
 * recent others) into sel; returns how many. */
static uint32_t select_obs(const mlt_search_t *s, mlt_search_ranked_t *order, uint32_t *sel)
{
    uint32_t n = s->n_obs;
    for (uint32_t i = 0; i < n; i++) {
        order[i].y = s->obs_y[i];
        order[i].i = i;
    }
    qsort(order, n, sizeof(*order), mlt_search_cmp_ranked);
    if (n <= MLT_SEARCH_GP_MAX) {
        for (uint32_t i = 0; i < n; i++)
            sel[i] = order[i].i;
        return n;
    }
    uint32_t m = 0, half = MLT_SEARCH_GP_MAX / 2;
    bool *taken = (bool *)(sel + MLT_SEARCH_GP_MAX); /* room after sel, see bayes_propose */
    memset(taken, 0, n);
    for (uint32_t i = 0; i < half; i++) {
        sel[m++] = order[i].i;
        taken[order[i].i] = true;
    }
    for (uint32_t i = n; i-- > 0 && m < MLT_SEARCH_GP_MAX;)
        if (!taken[i])
            sel[m++] = i;
    /* keep the best-first order for the callers */
    for (uint32_t i = 0; i < m; i++) {
        order[i].y = s->obs_y[sel[i]];
        order[i].i = sel[i];
    }
    qsort(order, m, sizeof(*order), mlt_search_cmp_ranked);
    for (uint32_t i = 0; i < m; i++)
        sel[i] = order[i].i;
    return m;
}

/* Proposals not observed yet (at most MAX_PENDING, the latest) into pend;
 * returns how many. */
static uint32_t find_pending(const mlt_search_t *s, uint32_t *pend)
{
    uint32_t m = 0;
    for (uint32_t i = s->n_prop; i-- > 0 && m < MAX_PENDING;) {
        const double *u = s->prop_u + (size_t)i * s->d;
        bool seen = false;
        for (uint32_t k = 0; k < s->n_obs && !seen; k++)
            seen = mlt_search_same(s, u, s->obs_u + (size_t)k * s->d);
        for (uint32_t k = 0; k < m && !seen; k++) /* a repeat of a pending one */
            seen = mlt_search_same(s, u, s->prop_u + (size_t)pend[k] * s->d);
        if (!seen)
            pend[m++] = i;
    }
    return m;
}

/* Posterior mean at unit point u (g->work is clobbered). */
static double gp_mean(const gp_t *g, const double *u)
{
    double mean = 0.0;
    for (uint32_t i = 0; i < g->n; i++) {
        const double *xi = g->x + (size_t)i * g->d;
        double r2 = 0.0;
        for (uint32_t c = 0; c < g->d; c++) {
            double t = u[c] - xi[c];
            r2 += t * t * g->inv_l2[c];
        }
        mean += matern52(g->sf2, r2) * g->alpha[i];
    }
    return mean;
}

static int bayes_propose(mlt_search_t *s, double *u)
{
    bayes_t *b = s->state;
    uint32_t d = s->d;
    if (b->next < b->n_init && s->n_obs < b->n_init) {
        memcpy(u, b->init_u + (size_t)b->next++ * d, d * sizeof(double));
        return 0;
    }
    if (s->n_obs < 2) {
        mlt_search_random_unit(s, &s->rng, u);
        return 0;
    }
    uint32_t pend[MAX_PENDING];
    uint32_t m = find_pending(s, pend);

    /* one allocation for everything sized by the observations */
    uint32_t n_all = s->n_obs;
    uint32_t nmax = (n_all < MLT_SEARCH_GP_MAX ? n_all : MLT_SEARCH_GP_MAX) + m;
    size_t pairs = (size_t)nmax * (nmax - 1) / 2;
    size_t doubles = (size_t)nmax * d + nmax + pairs * d + (size_t)nmax * nmax + 2 * (size_t)nmax;
    size_t bytes = doubles * sizeof(double) + n_all * sizeof(mlt_search_ranked_t) + /* order */
                   (MLT_SEARCH_GP_MAX + n_all) * sizeof(uint32_t) + n_all;          /* sel, taken */
    char *mem = mlt_try_malloc(bytes);
    if (!mem)
        return -ENOMEM;
    gp_t g = {0};
    double *dp = (double *)mem;
    g.x = dp;
    dp += (size_t)nmax * d;
    g.y = dp;
    dp += nmax;
    g.dist = dp;
    dp += pairs * d;
    g.k = dp;
    dp += (size_t)nmax * nmax;
    g.alpha = dp;
    dp += nmax;
    g.work = dp;
    dp += nmax;
    mlt_search_ranked_t *order = (mlt_search_ranked_t *)dp;
    uint32_t *sel = (uint32_t *)(order + n_all);

    uint32_t n = select_obs(s, order, sel);
    g.d = d;
    g.p = d + 2;
    for (uint32_t j = 0; j < d; j++)
        if (s->dims[j].kind == MLT_TUNABLE_DISCRETE)
            g.any_discrete = true;

    /* outputs: diverged ones replaced (see the file comment), then standardised */
    double ymin = INFINITY, ymax = -INFINITY;
    for (uint32_t i = 0; i < n; i++) {
        double y = s->obs_y[sel[i]];
        if (isfinite(y)) {
            ymin = y < ymin ? y : ymin;
            ymax = y > ymax ? y : ymax;
        }
    }
    double worst = isfinite(ymax) ? ymax + (ymax > ymin ? 0.5 * (ymax - ymin) : 1.0) : 0.0;
    double mean = 0.0, var = 0.0;
    for (uint32_t i = 0; i < n; i++) {
        double y = s->obs_y[sel[i]];
        g.y[i] = isfinite(y) ? y : worst;
        mean += g.y[i];
        memcpy(g.x + (size_t)i * d, s->obs_u + (size_t)sel[i] * d, d * sizeof(double));
    }
    for (uint32_t k = 0; k < m; k++) /* pending points after the observed ones */
        memcpy(g.x + (size_t)(n + k) * d, s->prop_u + (size_t)pend[k] * d, d * sizeof(double));
    mean /= n;
    for (uint32_t i = 0; i < n; i++)
        var += (g.y[i] - mean) * (g.y[i] - mean);
    double sdev = sqrt(var / n);
    if (!(sdev > 1e-12 * (1.0 + fabs(mean))))
        sdev = 1.0;
    for (uint32_t i = 0; i < n; i++)
        g.y[i] = (g.y[i] - mean) / sdev;
    double *dd = g.dist;
    for (uint32_t i = 0; i < n + m; i++)
        for (uint32_t j = 0; j < i; j++, dd += d)
            for (uint32_t c = 0; c < d; c++) {
                double t = g.x[(size_t)i * d + c] - g.x[(size_t)j * d + c];
                dd[c] = t * t;
            }

    g.n = n;
    int rc = gp_fit(s, b, &g);
    if (rc == 0 && m > 0) {
        /* pending proposals: believe the model's mean there, but no better
         * than the best result, so that the next proposal goes elsewhere */
        for (uint32_t k = 0; k < m; k++)
            g.y[n + k] = fmax(gp_mean(&g, g.x + (size_t)(n + k) * d), g.y[0]);
        g.n = n + m;
        rc = gp_factor(&g);
        if (rc == 0)
            gp_solve(&g);
    }
    if (rc != 0) { /* no usable model: explore */
        mlt_search_random_unit(s, &s->rng, u);
        mlt_free(mem);
        return 0;
    }
    uint32_t n_near = n < EI_NEAR_BEST ? n : EI_NEAR_BEST;
    double fbest = g.y[0]; /* observed rows are best first */
    maximise_ei(s, &g, fbest, n_near, u);
    mlt_search_snap(s, u);
    s->gain = exp(gp_log_ei(&g, u, fbest)) * sdev; /* standardised units back to y's */
    mlt_free(mem);
    return 0;
}

static int bayes_save(const mlt_search_t *s, FILE *f)
{
    const bayes_t *b = s->state;
    if (fprintf(f, "bayes %u %u %d", b->next, b->fits, b->have_theta ? 1 : 0) < 0)
        return -EIO;
    for (uint32_t i = 0; i < s->d + 2; i++)
        if (fprintf(f, " %a", b->theta[i]) < 0)
            return -EIO;
    return fputc('\n', f) == EOF ? -EIO : 0;
}

static int bayes_load(mlt_search_t *s, FILE *f)
{
    bayes_t *b = s->state;
    unsigned next, fits;
    int have;
    double theta[MLT_SEARCH_MAX_DIMS + 2];
    if (fscanf(f, " bayes %u %u %d", &next, &fits, &have) != 3 || next > b->n_init ||
        (have != 0 && have != 1))
        return ferror(f) ? -EIO : -EPROTO;
    for (uint32_t i = 0; i < s->d + 2; i++)
        if (fscanf(f, "%lf", &theta[i]) != 1 || !isfinite(theta[i]))
            return ferror(f) ? -EIO : -EPROTO;
    char end[8];
    if (fscanf(f, " %7s", end) != 1 || strcmp(end, "end") != 0)
        return -EPROTO;
    b->next = next;
    b->fits = fits;
    b->have_theta = have == 1;
    memcpy(b->theta, theta, (s->d + 2) * sizeof(double));
    return 0;
}

const mlt_search_ops_t mlt_search_bayes_ops = {
    .name = "bayes",
    .init = bayes_init,
    .fini = bayes_fini,
    .propose = bayes_propose,
    .save = bayes_save,
    .load = bayes_load,
};
