/* searcher.h - the tuner's searchers (DESIGN.md §6, "Searchers") behind one
 * interface: bayes (Gaussian process, Matérn 5/2, expected improvement),
 * tpe (tree-structured Parzen estimator, as in HyperOpt), random, grid and
 * marginal (one tunable at a time around the current setting).
 *
 * A searcher works over the tuned tunables only (the search space). Points
 * cross this interface in tunable units; inside, every searcher sees the unit
 * cube [0,1]^d: LINEAR dimensions map linearly, LOG ones through the log, and
 * a DISCRETE one by the index of its value (values[i] sits at i / (n - 1), so
 * an ascending list such as batch sizes 16, 32, ..., 1024 is evenly spaced).
 * A discrete coordinate is snapped to the nearest allowed value in that space
 * before anything compares or evaluates it, so a proposal's discrete values
 * are always exactly members of values[].
 *
 * Protocol: propose, run the trial, observe its result (lower is better;
 * +INFINITY or NaN = diverged, the worst), and again. Observations of points
 * no searcher proposed (the default, say) are welcome. A proposal equal to an
 * earlier proposal or observation (after snapping) is flagged *dup so that
 * the caller can reuse that result instead of running it again; after
 * MLT_SEARCH_DUP_RUN flagged proposals in a row a searcher falls back to random
 * points (tried until one is new), so it never proposes duplicates forever
 * (unless every point of a finite space has been seen).
 *
 * Everything is seeded: the same kind, space, seed, center and calls give the
 * same proposals, bit for bit. A searcher is a plain object owned by one
 * thread (the coordinator's); it never prints. */
#ifndef MLT_SEARCHER_H
#define MLT_SEARCHER_H

#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>

#include "common/jobfile.h"

#define MLT_SEARCH_MAX_DIMS MLT_JOB_MAX_TUNABLES /* tuned tunables in one space */
#define MLT_SEARCH_DUP_RUN  2u   /* flagged duplicates in a row before random fallback */
#define MLT_SEARCH_GP_MAX   200u /* observations a Gaussian process fits, at most */

typedef struct mlt_search mlt_search_t;

/* A new searcher of kind (mlt_searcher_t of jobfile.h: MLT_SEARCHER_BAYES ...
 * MLT_SEARCHER_MARGINAL) over the d tunables dims[0..d-1] (the tuned ones;
 * copied, so dims may be freed afterwards), seeded by seed. center: for
 * marginal, the current setting in tunable units (d values; NULL: each
 * tunable's def); ignored by the other kinds. Returns the searcher (caller owns;
 * free with mlt_search_destroy) or NULL with errno EINVAL (bad kind, d outside
 * 1..MLT_SEARCH_MAX_DIMS, a tunable with a bad range or values). */
mlt_search_t *mlt_search_new(int kind, const mlt_tunable_t *dims, uint32_t d, uint64_t seed,
                             const double *center);

/* Frees the searcher. Accepts NULL; sets *sp = NULL. */
void mlt_search_destroy(mlt_search_t **sp);

/* The next point to try, written to x[0..d-1] in tunable units: continuous ones
 * inside [min, max], discrete ones exactly one of values[]. *dup (may be NULL)
 * is set true when x equals an earlier proposal or observation. Returns 0;
 * -EINVAL on NULL arguments; -ENOSPC when marginal has no tunable it can
 * change (all discrete with one value, or min == max); -ENOMEM when the
 * Gaussian process's work space cannot be allocated. */
int mlt_search_propose(mlt_search_t *s, double *x, bool *dup);

/* Records that x (d values in tunable units; clamped into range, discrete ones
 * snapped to the nearest value) gave y, lower being better. +INFINITY and NaN
 * mean diverged: ranked worst; bayes models such a point as the worst finite
 * y seen plus half the range of finite ys (see searcher_bayes.c). Returns 0;
 * -EINVAL on NULL arguments, a non-finite x or y = -INFINITY. */
int mlt_search_observe(mlt_search_t *s, const double *x, double y);

/* What the model expects the last proposal to gain over the best observation
 * so far (its expected improvement, in the units of the observed y): a search
 * can stop when this is small against the noise or the best y. NaN when the
 * last proposal did not come from a model (an initial design point, a random
 * or grid or marginal proposal, a duplicate fallback), or before any. */
double mlt_search_expected_gain(const mlt_search_t *s);

/* Number of observations so far. */
uint32_t mlt_search_count(const mlt_search_t *s);

/* The observation with the lowest y (the first of equals): its point to x
 * (d values, may be NULL) and y to *y (may be NULL). Returns 0, -ENOENT with
 * no observations, -EINVAL on NULL s. */
int mlt_search_best(const mlt_search_t *s, double *x, double *y);

/* The kind given to mlt_search_new, and the name the job file uses for it. */
int mlt_search_kind(const mlt_search_t *s);
const char *mlt_search_name(const mlt_search_t *s);

/* Checkpoints: writes the searcher's whole state (history, generator, the
 * searcher's own position) as text to f. Load it into a searcher newly made by
 * mlt_search_new with the same kind, dims, seed and center: afterwards it
 * proposes exactly what the saved one would have. Returns 0; save -EIO when a
 * write fails; load -EPROTO when the text is not a saved state of this kind
 * and space (s is then unchanged), -EIO on a read error. */
int mlt_search_save(const mlt_search_t *s, FILE *f);
int mlt_search_load(mlt_search_t *s, FILE *f);

/* ---- internal: shared by tuner/searcher*.c only ------------------------ */
#ifdef MLT_SEARCH_INTERNAL

/* One dimension of the space, copied from its tunable. */
typedef struct mlt_search_dim {
    int kind;          /* mlt_tunable_kind_t */
    double min, max;   /* the range in tunable units */
    double lo, hi;     /* LINEAR: min, max; LOG: log(min), log(max) */
    double *values;    /* DISCRETE: ascending values (owned); else NULL */
    uint32_t n_values; /* DISCRETE: entries in values */
} mlt_search_dim_t;

/* What a kind implements. propose writes a point of [0,1]^d (the dispatcher
 * snaps, clamps, checks for duplicates and converts). state is the kind's
 * private object. save/load write and read the kind's own state only. */
typedef struct mlt_search_ops {
    const char *name;                                     /* as the job file writes it */
    int (*init)(mlt_search_t *s, const double *center_u); /* sets s->state */
    void (*fini)(mlt_search_t *s);                        /* frees s->state */
    int (*propose)(mlt_search_t *s, double *u);           /* 0 or -errno */
    int (*save)(const mlt_search_t *s, FILE *f);          /* NULL: nothing to save */
    int (*load)(mlt_search_t *s, FILE *f);                /* NULL: nothing to load */
    bool own_dups; /* avoids duplicates itself: no fallback */
} mlt_search_ops_t;

struct mlt_search {
    int kind; /* mlt_searcher_t */
    const mlt_search_ops_t *ops;
    uint32_t d;             /* dimensions */
    mlt_search_dim_t *dims; /* d of them (owned) */
    uint64_t seed;          /* as given */
    uint64_t rng;           /* the generator of every random choice after new */
    double *prop_u;         /* n_prop × d proposals, unit cube, snapped */
    uint32_t n_prop, cap_prop;
    double *obs_u; /* n_obs × d observed points, unit cube, snapped */
    double *obs_y; /* n_obs results (+INFINITY: diverged) */
    uint32_t n_obs, cap_obs;
    uint32_t dup_run; /* flagged proposals in a row */
    double gain;      /* the last proposal's expected improvement (NaN: no model) */
    void *state;      /* the kind's own (owned through ops->fini) */
};

extern const mlt_search_ops_t mlt_search_bayes_ops;
extern const mlt_search_ops_t mlt_search_tpe_ops;
extern const mlt_search_ops_t mlt_search_random_ops;
extern const mlt_search_ops_t mlt_search_grid_ops;
extern const mlt_search_ops_t mlt_search_marginal_ops;

/* Tunable units to the unit cube (clamped, discrete snapped) and back. */
void mlt_search_to_unit(const mlt_search_t *s, const double *x, double *u);
void mlt_search_from_unit(const mlt_search_t *s, const double *u, double *x);
/* Clamps u into [0,1]^d and moves each discrete coordinate to its value's place. */
void mlt_search_snap(const mlt_search_t *s, double *u);
/* The unit-cube coordinate of a discrete dimension's value index i. */
double mlt_search_index_unit(const mlt_search_dim_t *dim, uint32_t i);
/* Index of the discrete value nearest to unit coordinate u. */
uint32_t mlt_search_unit_index(const mlt_search_dim_t *dim, double u);
/* A uniform random point of the cube (so log-uniform on LOG dimensions, and
 * uniform over values on discrete ones), snapped, drawn from *rng. */
void mlt_search_random_unit(const mlt_search_t *s, uint64_t *rng, double *u);
/* True when snapped u equals an earlier proposal or observation. */
bool mlt_search_seen(const mlt_search_t *s, const double *u);
/* True when two snapped unit points are the same point. */
bool mlt_search_same(const mlt_search_t *s, const double *a, const double *b);

/* An observation by its result, for sorting: y, then i (the observation's
 * index, its time), a total order so that every sort is deterministic. */
typedef struct mlt_search_ranked {
    double y;
    uint32_t i;
} mlt_search_ranked_t;
/* qsort comparator of mlt_search_ranked_t: ascending y, then i. */
int mlt_search_cmp_ranked(const void *a, const void *b);

#endif /* MLT_SEARCH_INTERNAL */

#endif
