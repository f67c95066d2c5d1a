/* searcher_tpe.c - the tree-structured Parzen estimator of HyperOpt
 * (Bergstra, Bardenet, Bengio, Kégl: "Algorithms for hyper-parameter
 * optimization", NIPS 2011; hyperopt/tpe.py), on the unit cube.
 *
 * The first TPE_STARTUP proposals are uniform random. After that the
 * observations are split by result: the best n_below = ceil(gamma·n) form
 * l(x) (capped at TPE_LF), the rest g(x). This is the gamma quantile itself;
 * HyperOpt takes ceil(gamma·sqrt(n)), which on Branin and Hartmann-6 (see
 * tests/unit/check_searcher.c) ended twice as far from the optimum. Each density is a product over
 * dimensions:
 *  - continuous: HyperOpt's adaptive Parzen window: one Gaussian per point
 *    plus a prior Gaussian (mean 0.5, sigma 1, weight TPE_PRIOR_WEIGHT) at the
 *    middle of the cube; each point's sigma is the larger gap to its sorted
 *    neighbours, clipped to [1/min(100, m+1), 1]; the mixture is truncated to
 *    [0,1]; older points weigh less beyond the TPE_LF most recent;
 *  - discrete: a categorical over the values, counts plus TPE_PRIOR_WEIGHT
 *    pseudo-counts each.
 * TPE_CANDIDATES points drawn from l(x) are scored by log l(x) - log g(x)
 * and the best one is proposed. Diverged (+INFINITY) results rank last. */
#define MLT_SEARCH_INTERNAL
#include "tuner/searcher.h"

#include <errno.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "common/alloc.h"
#include "common/rng.h"

#define TPE_STARTUP      10   /* random proposals before the model */
#define TPE_GAMMA        0.25 /* fraction of observations in l(x) */
#define TPE_LF           25   /* linear forgetting: full weight for the newest 25 */
#define TPE_PRIOR_WEIGHT 1.0  /* weight of the prior component / pseudo-counts */
#define TPE_CANDIDATES   24   /* draws from l(x) scored per proposal */
#define PRIOR_MU         0.5
#define PRIOR_SIGMA      1.0
#define SQRT_2PI         2.5066282746310002
#define LOG_TINY         (-700.0)

/* One dimension's density: a truncated Gaussian mixture or a categorical. */
typedef struct parzen {
    uint32_t n;    /* components (continuous) or categories (discrete) */
    double *mu;    /* component means */
    double *sigma; /* component widths */
    double *w;     /* weights (sum 1), or category probabilities */
    double accept; /* continuous: the mixture's mass inside [0,1] */
} parzen_t;

static double norm_cdf(double z)
{
    return 0.5 * erfc(-z / M_SQRT2);
}

/* Linear forgetting weights of n points in time order (HyperOpt's). */
static void lf_weights(uint32_t n, double *w)
{
    if (n <= TPE_LF) {
        for (uint32_t i = 0; i < n; i++)
            w[i] = 1.0;
        return;
    }
    uint32_t ramp = n - TPE_LF;
    for (uint32_t i = 0; i < ramp; i++)
        w[i] = ramp > 1 ? 1.0 / n + (1.0 - 1.0 / n) * i / (ramp - 1) : 1.0 / n;
    for (uint32_t i = ramp; i < n; i++)
        w[i] = 1.0;
}

typedef struct mupair {
    double mu, w;
} mupair_t;

/* Work space of one density of m points: mu, sigma and w (w is also the
 * categorical's probabilities), the forgetting weights, the sorted pairs. */
#define DENSITY_DOUBLES(m) (6 * ((size_t)(m) + 1) + MLT_JOB_MAX_VALUES)

static int cmp_mu(const void *a, const void *b)
{
    double x = ((const mupair_t *)a)->mu, y = ((const mupair_t *)b)->mu;
    return x < y ? -1 : x > y;
}

/* Builds the density of dimension j from the points idx[0..m-1] (time order).
 * Arrays come from buf: DENSITY_DOUBLES(m) of them. */
static void parzen_build(const mlt_search_t *s, uint32_t j, const uint32_t *idx, uint32_t m,
                         parzen_t *p, double *buf)
{
    const mlt_search_dim_t *dim = &s->dims[j];
    double *lw = buf + 3 * (size_t)(m + 1) + MLT_JOB_MAX_VALUES; /* after mu, sigma, w */
    lf_weights(m, lw);
    if (dim->kind == MLT_TUNABLE_DISCRETE) {
        p->n = dim->n_values;
        p->w = buf;
        p->mu = p->sigma = NULL;
        double sum = 0.0;
        for (uint32_t k = 0; k < p->n; k++)
            p->w[k] = TPE_PRIOR_WEIGHT;
        for (uint32_t i = 0; i < m; i++)
            p->w[mlt_search_unit_index(dim, s->obs_u[(size_t)idx[i] * s->d + j])] += lw[i];
        for (uint32_t k = 0; k < p->n; k++)
            sum += p->w[k];
        for (uint32_t k = 0; k < p->n; k++)
            p->w[k] /= sum;
        return;
    }
    p->n = m + 1;
    p->mu = buf;
    p->sigma = buf + (m + 1);
    p->w = buf + 2 * (size_t)(m + 1);
    mupair_t *pairs = (mupair_t *)(lw + m + 1);
    for (uint32_t i = 0; i < m; i++) {
        pairs[i].mu = s->obs_u[(size_t)idx[i] * s->d + j];
        pairs[i].w = lw[i];
    }
    qsort(pairs, m, sizeof(*pairs), cmp_mu);
    /* the prior goes in at its sorted place (after equal means) */
    uint32_t pp = 0;
    while (pp < m && pairs[pp].mu <= PRIOR_MU)
        pp++;
    for (uint32_t i = 0, k = 0; i <= m; i++) {
        if (i == pp) {
            p->mu[i] = PRIOR_MU;
            p->w[i] = TPE_PRIOR_WEIGHT;
        } else {
            p->mu[i] = pairs[k].mu;
            p->w[i] = pairs[k].w;
            k++;
        }
    }
    if (m == 0) {
        p->sigma[0] = PRIOR_SIGMA;
    } else if (m == 1) {
        p->sigma[0] = p->sigma[1] = 0.5 * PRIOR_SIGMA;
    } else {
        for (uint32_t i = 0; i <= m; i++) {
            double left = i > 0 ? p->mu[i] - p->mu[i - 1] : -1.0;
            double right = i < m ? p->mu[i + 1] - p->mu[i] : -1.0;
            p->sigma[i] = left > right ? left : right;
        }
    }
    double lo = PRIOR_SIGMA / fmin(100.0, 1.0 + (double)(m + 1)), hi = PRIOR_SIGMA;
    double sum = 0.0;
    for (uint32_t i = 0; i <= m; i++) {
        p->sigma[i] = p->sigma[i] < lo ? lo : p->sigma[i] > hi ? hi : p->sigma[i];
        sum += p->w[i];
    }
    p->sigma[pp] = PRIOR_SIGMA;
    p->accept = 0.0;
    for (uint32_t i = 0; i <= m; i++) {
        p->w[i] /= sum;
        p->accept += p->w[i] * (norm_cdf((1.0 - p->mu[i]) / p->sigma[i]) -
                                norm_cdf((0.0 - p->mu[i]) / p->sigma[i]));
    }
}

static double parzen_logpdf(const parzen_t *p, bool discrete, const mlt_search_dim_t *dim, double x)
{
    if (discrete) {
        double v = p->w[mlt_search_unit_index(dim, x)];
        return v > 0 ? log(v) : LOG_TINY;
    }
    double sum = 0.0;
    for (uint32_t i = 0; i < p->n; i++) {
        double z = (x - p->mu[i]) / p->sigma[i];
        sum += p->w[i] * exp(-0.5 * z * z) / (SQRT_2PI * p->sigma[i]);
    }
    sum /= p->accept;
    return sum > 0 ? log(sum) : LOG_TINY;
}

static double parzen_sample(const parzen_t *p, bool discrete, const mlt_search_dim_t *dim,
                            uint64_t *rng)
{
    double r = mlt_rng_uniform(rng);
    uint32_t k = 0;
    while (k + 1 < p->n && r >= p->w[k]) {
        r -= p->w[k];
        k++;
    }
    if (discrete)
        return mlt_search_index_unit(dim, k);
    double x = 0.5;
    for (int t = 0; t < 1000; t++) { /* rejection into [0,1]: redraw component and point */
        x = p->mu[k] + p->sigma[k] * mlt_rng_normal(rng);
        if (x >= 0.0 && x <= 1.0)
            return x;
        r = mlt_rng_uniform(rng);
        for (k = 0; k + 1 < p->n && r >= p->w[k]; k++)
            r -= p->w[k];
    }
    return x < 0.0 ? 0.0 : 1.0; /* not reached in practice: the prior keeps mass inside */
}

static int tpe_init(mlt_search_t *s, const double *center_u)
{
    (void)center_u;
    s->state = NULL;
    return 0;
}

static void tpe_fini(mlt_search_t *s)
{
    (void)s;
}

static int cmp_u32(const void *a, const void *b)
{
    uint32_t x = *(const uint32_t *)a, y = *(const uint32_t *)b;
    return x < y ? -1 : x > y;
}

static int tpe_propose(mlt_search_t *s, double *u)
{
    uint32_t n = s->n_obs, d = s->d;
    if (n < TPE_STARTUP) {
        mlt_search_random_unit(s, &s->rng, u);
        return 0;
    }
    size_t stride = DENSITY_DOUBLES(n);
    mlt_search_ranked_t *order = mlt_try_malloc(n * sizeof(*order));
    uint32_t *rank = mlt_try_malloc(n * sizeof(uint32_t));
    double *buf = mlt_try_malloc(2 * (size_t)d * stride * sizeof(double));
    if (!order || !rank || !buf) {
        mlt_free(order);
        mlt_free(rank);
        mlt_free(buf);
        return -ENOMEM;
    }
    for (uint32_t i = 0; i < n; i++) {
        order[i].y = s->obs_y[i];
        order[i].i = i;
    }
    qsort(order, n, sizeof(*order), mlt_search_cmp_ranked);
    for (uint32_t i = 0; i < n; i++)
        rank[i] = order[i].i;
    mlt_free(order);
    uint32_t n_below = (uint32_t)ceil(TPE_GAMMA * (double)n);
    if (n_below > TPE_LF)
        n_below = TPE_LF;
    if (n_below < 1)
        n_below = 1;
    uint32_t *below = rank, *above = rank + n_below, n_above = n - n_below;
    qsort(below, n_below, sizeof(uint32_t), cmp_u32); /* back to time order */
    qsort(above, n_above, sizeof(uint32_t), cmp_u32);

    parzen_t l[MLT_SEARCH_MAX_DIMS], g[MLT_SEARCH_MAX_DIMS];
    for (uint32_t j = 0; j < d; j++) {
        parzen_build(s, j, below, n_below, &l[j], buf + (2 * (size_t)j) * stride);
        parzen_build(s, j, above, n_above, &g[j], buf + (2 * (size_t)j + 1) * stride);
    }
    double best = -INFINITY, x[MLT_SEARCH_MAX_DIMS];
    for (int c = 0; c < TPE_CANDIDATES; c++) {
        double score = 0.0;
        for (uint32_t j = 0; j < d; j++) {
            const mlt_search_dim_t *dim = &s->dims[j];
            bool disc = dim->kind == MLT_TUNABLE_DISCRETE;
            x[j] = parzen_sample(&l[j], disc, dim, &s->rng);
            score += parzen_logpdf(&l[j], disc, dim, x[j]) - parzen_logpdf(&g[j], disc, dim, x[j]);
        }
        if (score > best) {
            best = score;
            memcpy(u, x, d * sizeof(double));
        }
    }
    mlt_free(rank);
    mlt_free(buf);
    return 0;
}

const mlt_search_ops_t mlt_search_tpe_ops = {
    .name = "tpe",
    .init = tpe_init,
    .fini = tpe_fini,
    .propose = tpe_propose,
};
