/* searcher.c - the searchers' one interface: argument checks, the search
 * space (copies of the tuned tunables and their unit-cube coordinates), the
 * history of proposals and observations, duplicate detection with its random
 * fallback, and the common part of checkpoints. The kinds live in
 * searcher_<kind>.c behind mlt_search_ops_t; see searcher.h. */
#define MLT_SEARCH_INTERNAL
#include "tuner/searcher.h"

#include <errno.h>
#include <math.h>
#include <string.h>

#include "common/alloc.h"
#include "common/rng.h"

#define SAME_TOL       1e-9     /* unit-cube coordinates closer than this are equal */
#define FALLBACK_TRIES 64       /* random draws looking for an unseen point */
#define LOAD_MAX_ROWS  1000000u /* proposals or observations a checkpoint may hold */
#define SAVE_MAGIC     "mltuner-search"
#define SAVE_VERSION   1

/* ---- the space ---------------------------------------------------------- */

double mlt_search_index_unit(const mlt_search_dim_t *dim, uint32_t i)
{
    return dim->n_values > 1 ? (double)i / (double)(dim->n_values - 1) : 0.0;
}

uint32_t mlt_search_unit_index(const mlt_search_dim_t *dim, double u)
{
    if (dim->n_values <= 1 || !(u > 0.0))
        return 0;
    if (u >= 1.0)
        return dim->n_values - 1;
    return (uint32_t)lround(u * (double)(dim->n_values - 1));
}

/* Nearest value's index for a value in tunable units (values ascending). */
static uint32_t value_index(const mlt_search_dim_t *dim, double x)
{
    uint32_t best = 0;
    for (uint32_t i = 1; i < dim->n_values; i++)
        if (fabs(dim->values[i] - x) < fabs(dim->values[best] - x))
            best = i;
    return best;
}

void mlt_search_snap(const mlt_search_t *s, double *u)
{
    for (uint32_t j = 0; j < s->d; j++) {
        const mlt_search_dim_t *dim = &s->dims[j];
        double v = u[j];
        if (!(v > 0.0)) /* NaN too */
            v = 0.0;
        else if (v > 1.0)
            v = 1.0;
        if (dim->kind == MLT_TUNABLE_DISCRETE)
            v = mlt_search_index_unit(dim, mlt_search_unit_index(dim, v));
        else if (!(dim->hi > dim->lo))
            v = 0.0; /* an empty range: one point */
        u[j] = v;
    }
}

void mlt_search_to_unit(const mlt_search_t *s, const double *x, double *u)
{
    for (uint32_t j = 0; j < s->d; j++) {
        const mlt_search_dim_t *dim = &s->dims[j];
        switch (dim->kind) {
        case MLT_TUNABLE_DISCRETE: u[j] = mlt_search_index_unit(dim, value_index(dim, x[j])); break;
        case MLT_TUNABLE_LOG:
            u[j] =
                dim->hi > dim->lo && x[j] > 0.0 ? (log(x[j]) - dim->lo) / (dim->hi - dim->lo) : 0.0;
            break;
        default: u[j] = dim->hi > dim->lo ? (x[j] - dim->lo) / (dim->hi - dim->lo) : 0.0; break;
        }
    }
    mlt_search_snap(s, u);
}

void mlt_search_from_unit(const mlt_search_t *s, const double *u, double *x)
{
    for (uint32_t j = 0; j < s->d; j++) {
        const mlt_search_dim_t *dim = &s->dims[j];
        double v = u[j], r;
        if (dim->kind == MLT_TUNABLE_DISCRETE) {
            x[j] = dim->values[mlt_search_unit_index(dim, v)];
            continue;
        }
        if (!(v > 0.0))
            r = dim->min;
        else if (v >= 1.0)
            r = dim->max;
        else if (dim->kind == MLT_TUNABLE_LOG)
            r = exp(dim->lo + v * (dim->hi - dim->lo));
        else
            r = dim->lo + v * (dim->hi - dim->lo);
        x[j] = r < dim->min ? dim->min : r > dim->max ? dim->max : r;
    }
}

void mlt_search_random_unit(const mlt_search_t *s, uint64_t *rng, double *u)
{
    for (uint32_t j = 0; j < s->d; j++) {
        const mlt_search_dim_t *dim = &s->dims[j];
        if (dim->kind == MLT_TUNABLE_DISCRETE)
            u[j] = mlt_search_index_unit(dim, mlt_rng_below(rng, dim->n_values));
        else
            u[j] = mlt_rng_uniform(rng);
    }
    mlt_search_snap(s, u);
}

bool mlt_search_same(const mlt_search_t *s, const double *a, const double *b)
{
    for (uint32_t j = 0; j < s->d; j++)
        if (fabs(a[j] - b[j]) > SAME_TOL)
            return false;
    return true;
}

bool mlt_search_seen(const mlt_search_t *s, const double *u)
{
    for (uint32_t i = 0; i < s->n_obs; i++)
        if (mlt_search_same(s, u, s->obs_u + (size_t)i * s->d))
            return true;
    for (uint32_t i = 0; i < s->n_prop; i++)
        if (mlt_search_same(s, u, s->prop_u + (size_t)i * s->d))
            return true;
    return false;
}

/* Checks a tunable and copies what the space needs. */
static int dim_init(mlt_search_dim_t *dim, const mlt_tunable_t *t)
{
    memset(dim, 0, sizeof(*dim));
    dim->kind = t->kind;
    switch (t->kind) {
    case MLT_TUNABLE_DISCRETE:
        if (!t->values || t->n_values < 1 || t->n_values > MLT_JOB_MAX_VALUES)
            return -EINVAL;
        for (uint32_t i = 0; i < t->n_values; i++)
            if (!isfinite(t->values[i]) || (i > 0 && !(t->values[i] > t->values[i - 1])))
                return -EINVAL;
        dim->n_values = t->n_values;
        dim->values = mlt_malloc(t->n_values * sizeof(double));
        memcpy(dim->values, t->values, t->n_values * sizeof(double));
        dim->min = t->values[0];
        dim->max = t->values[t->n_values - 1];
        dim->lo = 0.0;
        dim->hi = 1.0;
        return 0;
    case MLT_TUNABLE_LOG:
        if (!isfinite(t->min) || !isfinite(t->max) || !(t->min > 0.0) || t->max < t->min)
            return -EINVAL;
        dim->lo = log(t->min);
        dim->hi = log(t->max);
        break;
    case MLT_TUNABLE_LINEAR:
        if (!isfinite(t->min) || !isfinite(t->max) || t->max < t->min)
            return -EINVAL;
        dim->lo = t->min;
        dim->hi = t->max;
        break;
    default: return -EINVAL;
    }
    dim->min = t->min;
    dim->max = t->max;
    return 0;
}

static const mlt_search_ops_t *ops_for(int kind)
{
    switch (kind) {
    case MLT_SEARCHER_BAYES: return &mlt_search_bayes_ops;
    case MLT_SEARCHER_TPE: return &mlt_search_tpe_ops;
    case MLT_SEARCHER_RANDOM: return &mlt_search_random_ops;
    case MLT_SEARCHER_GRID: return &mlt_search_grid_ops;
    case MLT_SEARCHER_MARGINAL: return &mlt_search_marginal_ops;
    default: return NULL;
    }
}

/* ---- lifecycle ---------------------------------------------------------- */

static void free_dims(mlt_search_dim_t *dims, uint32_t d)
{
    for (uint32_t j = 0; j < d; j++)
        mlt_free(dims[j].values);
    mlt_free(dims);
}

mlt_search_t *mlt_search_new(int kind, const mlt_tunable_t *dims, uint32_t d, uint64_t seed,
                             const double *center)
{
    const mlt_search_ops_t *ops = ops_for(kind);
    if (!ops || !dims || d < 1 || d > MLT_SEARCH_MAX_DIMS) {
        errno = EINVAL;
        return NULL;
    }
    mlt_search_t *s = mlt_calloc(1, sizeof(*s));
    s->kind = kind;
    s->ops = ops;
    s->d = d;
    s->seed = seed;
    s->gain = NAN;
    s->rng = mlt_rng_mix(seed, 0x5ea4c4u + (uint64_t)kind);
    s->dims = mlt_calloc(d, sizeof(*s->dims));
    for (uint32_t j = 0; j < d; j++)
        if (dim_init(&s->dims[j], &dims[j]) != 0)
            goto fail_dims;

    double cx[MLT_SEARCH_MAX_DIMS], cu[MLT_SEARCH_MAX_DIMS];
    for (uint32_t j = 0; j < d; j++) {
        cx[j] = center ? center[j] : dims[j].def;
        if (!isfinite(cx[j]))
            goto fail_dims;
    }
    mlt_search_to_unit(s, cx, cu);
    if (ops->init(s, cu) != 0)
        goto fail_dims;
    return s;

fail_dims:
    free_dims(s->dims, d);
    mlt_free(s);
    errno = EINVAL;
    return NULL;
}

void mlt_search_destroy(mlt_search_t **sp)
{
    if (!sp || !*sp)
        return;
    mlt_search_t *s = *sp;
    s->ops->fini(s);
    free_dims(s->dims, s->d);
    mlt_free(s->prop_u);
    mlt_free(s->obs_u);
    mlt_free(s->obs_y);
    mlt_free(s);
    *sp = NULL;
}

/* ---- proposing and observing -------------------------------------------- */

static void push_prop(mlt_search_t *s, const double *u)
{
    if (s->n_prop == s->cap_prop) {
        s->cap_prop = s->cap_prop ? 2 * s->cap_prop : 16;
        s->prop_u = mlt_realloc(s->prop_u, (size_t)s->cap_prop * s->d * sizeof(double));
    }
    memcpy(s->prop_u + (size_t)s->n_prop * s->d, u, s->d * sizeof(double));
    s->n_prop++;
}

int mlt_search_propose(mlt_search_t *s, double *x, bool *dup)
{
    if (!s || !x)
        return -EINVAL;
    double u[MLT_SEARCH_MAX_DIMS];
    s->gain = NAN;
    if (s->dup_run >= MLT_SEARCH_DUP_RUN && !s->ops->own_dups) {
        /* the kind keeps repeating itself: a new random point instead */
        for (int t = 0; t < FALLBACK_TRIES; t++) {
            mlt_search_random_unit(s, &s->rng, u);
            if (!mlt_search_seen(s, u))
                break;
        }
    } else {
        int rc = s->ops->propose(s, u);
        if (rc != 0)
            return rc;
        mlt_search_snap(s, u);
    }
    bool seen = mlt_search_seen(s, u);
    push_prop(s, u);
    s->dup_run = seen ? s->dup_run + 1 : 0;
    mlt_search_from_unit(s, u, x);
    if (dup)
        *dup = seen;
    return 0;
}

int mlt_search_observe(mlt_search_t *s, const double *x, double y)
{
    if (!s || !x || (isinf(y) && y < 0))
        return -EINVAL;
    for (uint32_t j = 0; j < s->d; j++)
        if (!isfinite(x[j]))
            return -EINVAL;
    if (isnan(y))
        y = INFINITY;
    if (s->n_obs == s->cap_obs) {
        s->cap_obs = s->cap_obs ? 2 * s->cap_obs : 16;
        s->obs_u = mlt_realloc(s->obs_u, (size_t)s->cap_obs * s->d * sizeof(double));
        s->obs_y = mlt_realloc(s->obs_y, (size_t)s->cap_obs * sizeof(double));
    }
    mlt_search_to_unit(s, x, s->obs_u + (size_t)s->n_obs * s->d);
    s->obs_y[s->n_obs++] = y;
    return 0;
}

double mlt_search_expected_gain(const mlt_search_t *s)
{
    return s ? s->gain : NAN;
}

uint32_t mlt_search_count(const mlt_search_t *s)
{
    return s ? s->n_obs : 0;
}

int mlt_search_best(const mlt_search_t *s, double *x, double *y)
{
    if (!s)
        return -EINVAL;
    if (s->n_obs == 0)
        return -ENOENT;
    uint32_t best = 0;
    for (uint32_t i = 1; i < s->n_obs; i++)
        if (s->obs_y[i] < s->obs_y[best])
            best = i;
    if (x)
        mlt_search_from_unit(s, s->obs_u + (size_t)best * s->d, x);
    if (y)
        *y = s->obs_y[best];
    return 0;
}

int mlt_search_kind(const mlt_search_t *s)
{
    return s ? s->kind : -1;
}

const char *mlt_search_name(const mlt_search_t *s)
{
    return s ? s->ops->name : NULL;
}

/* ---- checkpoints ----------------------------------------------------------
 * Text, one item per line, doubles as C99 hex floats so that they round-trip:
 *
 *   mltuner-search 1 <kind name> <d> <seed>
 *   dim <kind> <min> <max> <n_values>          (d lines: the space, checked)
 *   rng <state> dup_run <n>
 *   prop <n>  then n lines of d coordinates
 *   obs <n>   then n lines of d coordinates and y
 *   <the kind's own lines, ops->save>
 *   end
 *
 * Load reads everything into temporaries and commits only when all of it,
 * the kind's part (whose loader reads through "end") included, is good. */

static int write_row(FILE *f, const double *v, uint32_t n, const double *y)
{
    for (uint32_t j = 0; j < n; j++)
        if (fprintf(f, j ? " %a" : "%a", v[j]) < 0)
            return -EIO;
    if (y && fprintf(f, " %a", *y) < 0)
        return -EIO;
    return fputc('\n', f) == EOF ? -EIO : 0;
}

int mlt_search_save(const mlt_search_t *s, FILE *f)
{
    if (!s || !f)
        return -EINVAL;
    if (fprintf(f, "%s %d %s %u %llu\n", SAVE_MAGIC, SAVE_VERSION, s->ops->name, s->d,
                (unsigned long long)s->seed) < 0)
        return -EIO;
    for (uint32_t j = 0; j < s->d; j++) {
        const mlt_search_dim_t *dim = &s->dims[j];
        if (fprintf(f, "dim %d %a %a %u\n", dim->kind, dim->min, dim->max, dim->n_values) < 0)
            return -EIO;
    }
    if (fprintf(f, "rng %llu dup_run %u\nprop %u\n", (unsigned long long)s->rng, s->dup_run,
                s->n_prop) < 0)
        return -EIO;
    int rc;
    for (uint32_t i = 0; i < s->n_prop; i++)
        if ((rc = write_row(f, s->prop_u + (size_t)i * s->d, s->d, NULL)) != 0)
            return rc;
    if (fprintf(f, "obs %u\n", s->n_obs) < 0)
        return -EIO;
    for (uint32_t i = 0; i < s->n_obs; i++)
        if ((rc = write_row(f, s->obs_u + (size_t)i * s->d, s->d, &s->obs_y[i])) != 0)
            return rc;
    if (s->ops->save && (rc = s->ops->save(s, f)) != 0)
        return rc;
    if (fprintf(f, "end\n") < 0 || fflush(f) != 0)
        return -EIO;
    return 0;
}

/* Reads n doubles; -EPROTO when they are not there. */
static int read_doubles(FILE *f, double *v, size_t n)
{
    for (size_t i = 0; i < n; i++)
        if (fscanf(f, "%lf", &v[i]) != 1)
            return ferror(f) ? -EIO : -EPROTO;
    return 0;
}

/* Reads "<word> <count>" and a count × width block of doubles (try-allocated,
 * caller frees). */
static int read_block(FILE *f, const char *word, uint32_t width, uint32_t *n, double **out)
{
    char got[16];
    if (fscanf(f, " %15s %u", got, n) != 2 || strcmp(got, word) != 0 || *n > LOAD_MAX_ROWS)
        return ferror(f) ? -EIO : -EPROTO;
    *out = NULL;
    if (*n == 0)
        return 0;
    *out = mlt_try_malloc((size_t)*n * width * sizeof(double));
    if (!*out)
        return -ENOMEM;
    int rc = read_doubles(f, *out, (size_t)*n * width);
    if (rc != 0) {
        mlt_free(*out);
        *out = NULL;
    }
    return rc;
}

int mlt_search_load(mlt_search_t *s, FILE *f)
{
    if (!s || !f)
        return -EINVAL;
    char magic[32], name[32];
    int version;
    unsigned d;
    unsigned long long seed, rng;
    unsigned dup_run;
    if (fscanf(f, " %31s %d %31s %u %llu", magic, &version, name, &d, &seed) != 5)
        return ferror(f) ? -EIO : -EPROTO;
    if (strcmp(magic, SAVE_MAGIC) != 0 || version != SAVE_VERSION ||
        strcmp(name, s->ops->name) != 0 || d != s->d || seed != s->seed)
        return -EPROTO;
    for (uint32_t j = 0; j < s->d; j++) {
        int kind;
        double mn, mx;
        unsigned nv;
        if (fscanf(f, " dim %d %lf %lf %u", &kind, &mn, &mx, &nv) != 4)
            return ferror(f) ? -EIO : -EPROTO;
        const mlt_search_dim_t *dim = &s->dims[j];
        if (kind != dim->kind || mn != dim->min || mx != dim->max || nv != dim->n_values)
            return -EPROTO;
    }
    if (fscanf(f, " rng %llu dup_run %u", &rng, &dup_run) != 2)
        return ferror(f) ? -EIO : -EPROTO;

    uint32_t n_prop, n_obs;
    double *prop = NULL, *obs = NULL, *y = NULL;
    int rc = read_block(f, "prop", s->d, &n_prop, &prop);
    if (rc != 0)
        return rc;
    rc = read_block(f, "obs", s->d + 1, &n_obs, &obs);
    if (rc != 0)
        goto fail_prop;
    if (n_obs > 0) {
        y = mlt_try_malloc((size_t)n_obs * sizeof(double));
        if (!y) {
            rc = -ENOMEM;
            goto fail_obs;
        }
    }
    /* split the rows of obs into points and results, in place */
    for (uint32_t i = 0; i < n_obs; i++) {
        y[i] = obs[(size_t)i * (s->d + 1) + s->d];
        if (!(y[i] > -INFINITY) && !isnan(y[i])) {
            rc = -EPROTO;
            goto fail_y;
        }
        memmove(obs + (size_t)i * s->d, obs + (size_t)i * (s->d + 1), s->d * sizeof(double));
    }
    if (s->ops->load) {
        rc = s->ops->load(s, f);
    } else {
        char end[8];
        rc = fscanf(f, " %7s", end) == 1 && strcmp(end, "end") == 0 ? 0 : -EPROTO;
    }
    if (rc != 0)
        goto fail_y;

    mlt_free(s->prop_u);
    mlt_free(s->obs_u);
    mlt_free(s->obs_y);
    s->prop_u = prop;
    s->n_prop = s->cap_prop = n_prop;
    s->obs_u = obs;
    s->obs_y = y;
    s->n_obs = s->cap_obs = n_obs;
    s->rng = rng;
    s->dup_run = dup_run;
    return 0;

fail_y:
    mlt_free(y);
fail_obs:
    mlt_free(obs);
fail_prop:
    mlt_free(prop);
    return rc;
}

int mlt_search_cmp_ranked(const void *a, const void *b)
{
    const mlt_search_ranked_t *p = a, *q = b;
    if (p->y < q->y)
        return -1;
    if (p->y > q->y)
        return 1;
    return p->i < q->i ? -1 : p->i > q->i;
}
