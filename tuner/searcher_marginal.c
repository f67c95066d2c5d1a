/* searcher_marginal.c - the re-tuning searcher (DESIGN.md §6, step 7): every
 * proposal is the center (the current setting) with exactly ONE tunable
 * changed, round-robin over the tunables.
 *
 * Along one tunable the changes grow outward, alternately down and up: a LOG
 * tunable is multiplied by 1/2, 2, 1/4, 4, 1/8, ...; a LINEAR one moves by
 * -1/8, +1/8, -2/8, ... of its range; a discrete one goes to the neighbouring
 * values, then the next ones. A change past the range is clipped to the bound
 * once, after which that direction is done; a change that would give the
 * center's own value, or a point already proposed or observed, is skipped.
 * When every direction of every tunable is done, the tunable to change and
 * its new value are drawn at random (still never the center's value). */
#define MLT_SEARCH_INTERNAL
#include "tuner/searcher.h"

#include <errno.h>
#include <math.h>
#include <string.h>

#include "common/alloc.h"
#include "common/rng.h"

#define LINEAR_STEP    0.125 /* a LINEAR tunable's step, as a fraction of its range */
#define SAME_TOL       1e-9
#define FALLBACK_TRIES 64

typedef struct marginal {
    double center[MLT_SEARCH_MAX_DIMS];  /* the current setting, unit cube */
    uint32_t stage[MLT_SEARCH_MAX_DIMS]; /* next change: magnitude stage/2+1, up if odd */
    uint8_t dead[MLT_SEARCH_MAX_DIMS];   /* bit 0: down is done, bit 1: up is done */
    uint32_t next_dim;                   /* the tunable the next proposal changes first */
} marginal_t;

static bool changeable(const mlt_search_dim_t *dim)
{
    return dim->kind == MLT_TUNABLE_DISCRETE ? dim->n_values > 1 : dim->hi > dim->lo;
}

static int marginal_init(mlt_search_t *s, const double *center_u)
{
    marginal_t *m = mlt_calloc(1, sizeof(*m));
    memcpy(m->center, center_u, s->d * sizeof(double));
    for (uint32_t j = 0; j < s->d; j++)
        if (!changeable(&s->dims[j]))
            m->dead[j] = 3;
    s->state = m;
    return 0;
}

static void marginal_fini(mlt_search_t *s)
{
    mlt_free(s->state);
    s->state = NULL;
}

/* The next change along dimension j that is new, written into u (a copy of
 * the center); false when both directions are done. */
static bool next_along(mlt_search_t *s, marginal_t *m, uint32_t j, double *u)
{
    const mlt_search_dim_t *dim = &s->dims[j];
    double c = m->center[j];
    while (m->dead[j] != 3) {
        uint32_t t = m->stage[j]++;
        int up = (int)(t & 1u);
        double mag = (double)(t / 2 + 1);
        if (m->dead[j] & (1u << up))
            continue;
        double v;
        if (dim->kind == MLT_TUNABLE_DISCRETE) {
            long idx = (long)mlt_search_unit_index(dim, c) + (up ? 1 : -1) * (long)mag;
            if (idx < 0 || idx >= (long)dim->n_values) {
                m->dead[j] |= (uint8_t)(1u << up);
                continue;
            }
            v = mlt_search_index_unit(dim, (uint32_t)idx);
        } else {
            double step = dim->kind == MLT_TUNABLE_LOG
                              ? mag * M_LN2 / (dim->hi - dim->lo) /* 2^mag */
                              : mag * LINEAR_STEP;
            v = c + (up ? step : -step);
            if (v <= 0.0 || v >= 1.0) { /* clipped: this direction's last change */
                v = v <= 0.0 ? 0.0 : 1.0;
                m->dead[j] |= (uint8_t)(1u << up);
            }
        }
        if (fabs(v - c) <= SAME_TOL)
            continue;
        memcpy(u, m->center, s->d * sizeof(double));
        u[j] = v;
        if (!mlt_search_seen(s, u))
            return true;
    }
    return false;
}

static int marginal_propose(mlt_search_t *s, double *u)
{
    marginal_t *m = s->state;
    for (uint32_t k = 0; k < s->d; k++) {
        uint32_t j = (m->next_dim + k) % s->d;
        if (next_along(s, m, j, u)) {
            m->next_dim = (j + 1) % s->d;
            return 0;
        }
    }
    /* every direction done: a random value of a random changeable tunable */
    uint32_t can[MLT_SEARCH_MAX_DIMS], n_can = 0;
    for (uint32_t j = 0; j < s->d; j++)
        if (changeable(&s->dims[j]))
            can[n_can++] = j;
    if (n_can == 0)
        return -ENOSPC;
    for (int t = 0; t < FALLBACK_TRIES; t++) {
        uint32_t j = can[mlt_rng_below(&s->rng, n_can)];
        double r[MLT_SEARCH_MAX_DIMS];
        mlt_search_random_unit(s, &s->rng, r);
        if (fabs(r[j] - m->center[j]) <= SAME_TOL)
            continue;
        memcpy(u, m->center, s->d * sizeof(double));
        u[j] = r[j];
        if (!mlt_search_seen(s, u))
            return 0;
    }
    /* a small finite space, all seen: repeat one (flagged as a duplicate) */
    uint32_t j = can[0];
    const mlt_search_dim_t *dim = &s->dims[j];
    memcpy(u, m->center, s->d * sizeof(double));
    if (dim->kind == MLT_TUNABLE_DISCRETE)
        u[j] = mlt_search_index_unit(dim, mlt_search_unit_index(dim, m->center[j]) == 0 ? 1 : 0);
    else
        u[j] = m->center[j] < 0.5 ? 1.0 : 0.0;
    return 0;
}

static int marginal_save(const mlt_search_t *s, FILE *f)
{
    const marginal_t *m = s->state;
    if (fprintf(f, "marginal_next %u\n", m->next_dim) < 0)
        return -EIO;
    for (uint32_t j = 0; j < s->d; j++)
        if (fprintf(f, "%u %u\n", m->stage[j], (unsigned)m->dead[j]) < 0)
            return -EIO;
    return 0;
}

static int marginal_load(mlt_search_t *s, FILE *f)
{
    marginal_t *m = s->state;
    unsigned next, stage[MLT_SEARCH_MAX_DIMS], dead[MLT_SEARCH_MAX_DIMS];
    if (fscanf(f, " marginal_next %u", &next) != 1 || next >= s->d)
        return ferror(f) ? -EIO : -EPROTO;
    for (uint32_t j = 0; j < s->d; j++)
        if (fscanf(f, "%u %u", &stage[j], &dead[j]) != 2 || dead[j] > 3)
            return ferror(f) ? -EIO : -EPROTO;
    char end[8];
    if (fscanf(f, " %7s", end) != 1 || strcmp(end, "end") != 0)
        return -EPROTO;
    m->next_dim = next;
    for (uint32_t j = 0; j < s->d; j++) {
        m->stage[j] = stage[j];
        m->dead[j] = (uint8_t)dead[j];
    }
    return 0;
}

const mlt_search_ops_t mlt_search_marginal_ops = {
    .name = "marginal",
    .init = marginal_init,
    .fini = marginal_fini,
    .propose = marginal_propose,
    .save = marginal_save,
    .load = marginal_load,
    .own_dups = true,
};
