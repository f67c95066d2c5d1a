/* ssp.c - see ssp.h. A flat array kept in arrival order; removal compacts it.
 * The queue is short (one pull per worker and table piece per branch), so a
 * scan per CLOCK costs less than keeping an index. */
#include "daemon/ssp.h"

#include <errno.h>
#include <string.h>

#include "common/alloc.h"

struct mlt_ssp {
    mlt_parked_t *v;
    size_t n, cap;
};

mlt_ssp_t *mlt_ssp_new(size_t cap)
{
    mlt_ssp_t *q = mlt_calloc(1, sizeof *q);
    q->cap = cap;
    return q;
}

void mlt_ssp_destroy(mlt_ssp_t **qp)
{
    if (!qp || !*qp)
        return;
    mlt_free((*qp)->v);
    mlt_free(*qp);
    *qp = NULL;
}

int mlt_ssp_park(mlt_ssp_t *q, const mlt_parked_t *p)
{
    if (q->n >= q->cap)
        return -EAGAIN;
    if (q->n % 64 == 0)
        q->v = mlt_realloc(q->v, (q->n + 64) * sizeof *q->v);
    q->v[q->n++] = *p;
    return 0;
}

typedef bool (*pick_fn)(const mlt_parked_t *p, const void *ctx);

/* Removes (in order) every entry pick() selects, calling fn on each. Entries
 * are copied out before fn runs, so fn may park new pulls. */
static size_t take(mlt_ssp_t *q, pick_fn pick, const void *ctx, mlt_ssp_fn fn, void *arg)
{
    size_t kept = 0, taken = 0;
    mlt_parked_t *out = NULL;
    for (size_t i = 0; i < q->n; i++) {
        if (pick(&q->v[i], ctx)) {
            if (taken % 16 == 0)
                out = mlt_realloc(out, (taken + 16) * sizeof *out);
            out[taken++] = q->v[i];
        } else {
            if (kept != i)
                q->v[kept] = q->v[i];
            kept++;
        }
    }
    q->n = kept;
    for (size_t i = 0; i < taken; i++)
        fn(arg, &out[i]);
    mlt_free(out);
    return taken;
}

struct release_ctx {
    uint32_t branch;
    int64_t min_clock;
    uint32_t staleness;
};

static bool pick_ready(const mlt_parked_t *p, const void *ctx)
{
    const struct release_ctx *c = ctx;
    return p->branch == c->branch && mlt_ssp_ready(c->min_clock, p->clock, c->staleness);
}

size_t mlt_ssp_release(mlt_ssp_t *q, uint32_t branch, int64_t min_clock, uint32_t staleness,
                       mlt_ssp_fn fn, void *arg)
{
    struct release_ctx c = {branch, min_clock, staleness};
    return take(q, pick_ready, &c, fn, arg);
}

static bool pick_expired(const mlt_parked_t *p, const void *ctx)
{
    return p->deadline <= *(const double *)ctx;
}

size_t mlt_ssp_expire(mlt_ssp_t *q, double now, mlt_ssp_fn fn, void *arg)
{
    return take(q, pick_expired, &now, fn, arg);
}

static bool pick_branch(const mlt_parked_t *p, const void *ctx)
{
    uint32_t b = *(const uint32_t *)ctx;
    return b == UINT32_MAX || p->branch == b;
}

size_t mlt_ssp_drop(mlt_ssp_t *q, uint32_t branch, mlt_ssp_fn fn, void *arg)
{
    return take(q, pick_branch, &branch, fn, arg);
}

static bool pick_worker(const mlt_parked_t *p, const void *ctx)
{
    return p->worker == *(const uint32_t *)ctx;
}

size_t mlt_ssp_drop_worker(mlt_ssp_t *q, uint32_t worker, mlt_ssp_fn fn, void *arg)
{
    return take(q, pick_worker, &worker, fn, arg);
}

double mlt_ssp_next_deadline(const mlt_ssp_t *q)
{
    double d = -1;
    for (size_t i = 0; i < q->n; i++)
        if (d < 0 || q->v[i].deadline < d)
            d = q->v[i].deadline;
    return d;
}

size_t mlt_ssp_count(const mlt_ssp_t *q)
{
    return q->n;
}
