/* searcher_random.c - uniform random search: each coordinate uniform on the
 * unit cube, which is log-uniform on a LOG tunable and uniform over the values
 * of a discrete one. No state beyond the searcher's generator. */
#define MLT_SEARCH_INTERNAL
#include "tuner/searcher.h"

#include <stddef.h>

static int random_init(mlt_search_t *s, const double *center_u)
{
    (void)center_u;
    s->state = NULL;
    return 0;
}

static void random_fini(mlt_search_t *s)
{
    (void)s;
}

static int random_propose(mlt_search_t *s, double *u)
{
    mlt_search_random_unit(s, &s->rng, u);
    return 0;
}

const mlt_search_ops_t mlt_search_random_ops = {
    .name = "random",
    .init = random_init,
    .fini = random_fini,
    .propose = random_propose,
};
