/* clientq.c - see clientq.h. A fixed array searched linearly: the clients of
 * a shard are its job's workers and the coordinator, a handful; the scan
 * stops at the last entry ever used, and one entry is remembered. */
#include "daemon/clientq.h"

#include <stdatomic.h>
#include <stdbool.h>
#include <string.h>

#include "common/alloc.h"
#include "proto/limits.h"

struct mlt_clientq_entry {
    uint8_t id[MLT_MAX_CLIENT_ID_BYTES]; /* ZeroMQ routing id */
    size_t id_len;
    _Atomic uint64_t unsent; /* reply bytes queued, not yet written (I/O thread subtracts) */
    uint32_t parked;         /* pulls parked in ssp.h's queue */
};

struct mlt_clientq {
    mlt_clientq_entry_t *v; /* MLT_MAX_CLIENTS entries */
    uint32_t n_used;        /* entries [0, n_used) have been used */
    uint32_t last;          /* the entry found last */
};

typedef struct held {
    mlt_clientq_entry_t *e;
    uint64_t bytes;
    void (*fn)(void *, void *);
    void *hint;
} held_t;

mlt_clientq_t *mlt_clientq_new(void)
{
    mlt_clientq_t *q = mlt_calloc(1, sizeof *q);
    q->v = mlt_calloc(MLT_MAX_CLIENTS, sizeof *q->v);
    return q;
}

void mlt_clientq_destroy(mlt_clientq_t **qp)
{
    if (!qp || !*qp)
        return;
    mlt_free((*qp)->v);
    mlt_free(*qp);
    *qp = NULL;
}

static bool is(const mlt_clientq_entry_t *e, const void *id, size_t len)
{
    return e->id_len == len && memcmp(e->id, id, len) == 0;
}

static bool idle(const mlt_clientq_entry_t *e)
{
    return e->parked == 0 && atomic_load_explicit(&e->unsent, memory_order_acquire) == 0;
}

mlt_clientq_entry_t *mlt_clientq_get(mlt_clientq_t *q, const void *id, size_t len)
{
    if (len > MLT_MAX_CLIENT_ID_BYTES)
        return NULL;
    if (q->last < q->n_used && is(&q->v[q->last], id, len))
        return &q->v[q->last];
    int64_t free_at = -1;
    for (uint32_t i = 0; i < q->n_used; i++) {
        if (is(&q->v[i], id, len)) {
            q->last = i;
            return &q->v[i];
        }
        if (free_at < 0 && idle(&q->v[i]))
            free_at = i;
    }
    if (free_at < 0) {
        if (q->n_used >= MLT_MAX_CLIENTS)
            return NULL;
        free_at = q->n_used++;
    }
    mlt_clientq_entry_t *e = &q->v[free_at];
    memcpy(e->id, id, len);
    e->id_len = len;
    e->parked = 0;
    q->last = (uint32_t)free_at;
    return e;
}

uint64_t mlt_clientq_unsent(const mlt_clientq_entry_t *e)
{
    return atomic_load_explicit(&e->unsent, memory_order_acquire);
}

uint64_t mlt_clientq_limit(uint64_t branch_bytes)
{
    return MLT_CLIENT_UNSENT_FLOOR + 4 * branch_bytes;
}

uint32_t mlt_clientq_parked(const mlt_clientq_entry_t *e)
{
    return e->parked;
}

void mlt_clientq_park(mlt_clientq_entry_t *e, int delta)
{
    if (delta < 0 && e->parked < (uint32_t)-delta)
        e->parked = 0;
    else
        e->parked = (uint32_t)((int64_t)e->parked + delta);
}

void *mlt_clientq_hold(mlt_clientq_entry_t *e, uint64_t bytes, void (*fn)(void *, void *),
                       void *hint)
{
    held_t *h = mlt_try_malloc(sizeof *h);
    if (!h)
        return NULL;
    *h = (held_t){e, bytes, fn, hint};
    atomic_fetch_add_explicit(&e->unsent, bytes, memory_order_acq_rel);
    return h;
}

void mlt_clientq_sent(void *data, void *hint)
{
    held_t *h = hint;
    if (h->fn)
        h->fn(data, h->hint);
    atomic_fetch_sub_explicit(&h->e->unsent, h->bytes, memory_order_acq_rel);
    mlt_free(h);
}
