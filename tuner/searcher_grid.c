/* searcher_grid.c - grid search over the tuned tunables.
 *
 * Each dimension gets k_j points: a continuous one k_j evenly spaced points of
 * the unit cube (so log-spaced on a LOG tunable), both ends included (one
 * point: the middle); a discrete one all its values, or k_j of them evenly
 * spread over the list when there are more than fit. The k_j grow one at a
 * time, the smallest first, while the grid stays within GRID_MAX points. The
 * grid is visited in an order shuffled by the seed, skipping points already
 * proposed or observed; when it is used up the searcher proposes random
 * points. */
#define MLT_SEARCH_INTERNAL
#include "tuner/searcher.h"

#include <errno.h>
#include <inttypes.h>
#include <string.h>

#include "common/alloc.h"
#include "common/rng.h"

#define GRID_MAX 64u /* points in the grid, at most */

typedef struct grid {
    uint32_t n;    /* grid points */
    double *pts;   /* n × d, in visiting order */
    uint32_t next; /* the next point to visit */
} grid_t;

/* Coordinate i of k along a dimension. */
static double grid_coord(const mlt_search_dim_t *dim, uint32_t i, uint32_t k)
{
    if (k <= 1)
        return dim->kind == MLT_TUNABLE_DISCRETE
                   ? mlt_search_index_unit(dim, (dim->n_values - 1) / 2)
                   : 0.5;
    if (dim->kind == MLT_TUNABLE_DISCRETE) {
        uint32_t idx = (uint32_t)(((uint64_t)i * (dim->n_values - 1) + (k - 1) / 2) / (k - 1));
        return mlt_search_index_unit(dim, idx);
    }
    return (double)i / (double)(k - 1);
}

/* How many points along dimension j can hold: a discrete one its values, a
 * one-point range one, any other one no limit. */
static uint32_t dim_cap(const mlt_search_dim_t *dim)
{
    if (dim->kind == MLT_TUNABLE_DISCRETE)
        return dim->n_values;
    return dim->hi > dim->lo ? GRID_MAX : 1;
}

static int grid_init(mlt_search_t *s, const double *center_u)
{
    (void)center_u;
    uint32_t k[MLT_SEARCH_MAX_DIMS];
    uint32_t n = 1;
    for (uint32_t j = 0; j < s->d; j++)
        k[j] = 1;
    for (;;) { /* grow the smallest growable k_j while the grid fits */
        uint32_t pick = s->d;
        for (uint32_t j = 0; j < s->d; j++)
            if (k[j] < dim_cap(&s->dims[j]) && n / k[j] * (k[j] + 1) <= GRID_MAX &&
                (pick == s->d || k[j] < k[pick]))
                pick = j;
        if (pick == s->d)
            break;
        n = n / k[pick] * (k[pick] + 1);
        k[pick]++;
    }
    grid_t *g = mlt_calloc(1, sizeof(*g));
    g->n = n;
    g->pts = mlt_malloc((size_t)n * s->d * sizeof(double));
    uint32_t *order = mlt_malloc(n * sizeof(uint32_t));
    for (uint32_t i = 0; i < n; i++)
        order[i] = i;
    uint64_t rng = mlt_rng_mix(s->seed, 0x67726964u); /* "grid" */
    for (uint32_t i = n; i > 1; i--) {                /* Fisher-Yates */
        uint32_t r = mlt_rng_below(&rng, i);
        uint32_t t = order[i - 1];
        order[i - 1] = order[r];
        order[r] = t;
    }
    for (uint32_t i = 0; i < n; i++) {
        uint32_t rest = order[i]; /* mixed-radix digits of the point's number */
        double *p = g->pts + (size_t)i * s->d;
        for (uint32_t j = 0; j < s->d; j++) {
            p[j] = grid_coord(&s->dims[j], rest % k[j], k[j]);
            rest /= k[j];
        }
        mlt_search_snap(s, p);
    }
    mlt_free(order);
    s->state = g;
    return 0;
}

static void grid_fini(mlt_search_t *s)
{
    grid_t *g = s->state;
    if (g)
        mlt_free(g->pts);
    mlt_free(g);
    s->state = NULL;
}

static int grid_propose(mlt_search_t *s, double *u)
{
    grid_t *g = s->state;
    while (g->next < g->n) {
        const double *p = g->pts + (size_t)g->next++ * s->d;
        if (!mlt_search_seen(s, p)) {
            memcpy(u, p, s->d * sizeof(double));
            return 0;
        }
    }
    mlt_search_random_unit(s, &s->rng, u);
    return 0;
}

static int grid_save(const mlt_search_t *s, FILE *f)
{
    const grid_t *g = s->state;
    return fprintf(f, "grid_next %" PRIu32 "\n", g->next) < 0 ? -EIO : 0;
}

static int grid_load(mlt_search_t *s, FILE *f)
{
    grid_t *g = s->state;
    uint32_t next;
    char end[8];
    if (fscanf(f, " grid_next %" SCNu32 " %7s", &next, end) != 2)
        return ferror(f) ? -EIO : -EPROTO;
    if (next > g->n || strcmp(end, "end") != 0)
        return -EPROTO;
    g->next = next;
    return 0;
}

const mlt_search_ops_t mlt_search_grid_ops = {
    .name = "grid",
    .init = grid_init,
    .fini = grid_fini,
    .propose = grid_propose,
    .save = grid_save,
    .load = grid_load,
};
