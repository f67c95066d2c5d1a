/* ssp.h - bounded staleness: the rule, and the queue of parked pulls.
 *
 * A worker pulling branch b at clock c under staleness s must see every update
 * from every worker's clocks <= c-s-1, i.e. every worker must have finished at
 * least c-s clocks: the pull is answered once min_clock(b) >= c - s. Until then
 * it is parked here (never polled) and released by mlt_ssp_release() when a
 * CLOCK raises min_clock, or expired with a timeout by mlt_ssp_expire().
 * Release order is arrival order. Owned by the daemon's main thread. */
#ifndef MLT_SSP_H
#define MLT_SSP_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "proto/limits.h"

/* true when a pull at `clock` under staleness s may be answered now. */
static inline bool mlt_ssp_ready(int64_t min_clock, int64_t clock, uint32_t staleness)
{
    return min_clock >= clock - (int64_t)staleness;
}

typedef struct mlt_parked {
    uint8_t id[MLT_MAX_CLIENT_ID_BYTES]; /* ZeroMQ routing id of the client */
    size_t id_len;
    uint64_t request_id;
    uint32_t worker;
    uint32_t branch;
    int64_t clock;
    uint32_t table, first, count; /* the chunk range asked for */
    bool packed;                  /* the reply in one frame (Header.packed) */
    bool shm;                     /* the reply's data into a client's segment (shmseg.h) */
    bool all;                     /* PULL_ALL: every table's chunks on this shard (no range) */
    uint32_t shm_handle;
    uint64_t shm_token, shm_offset;
    double since;                 /* when it was parked (monotonic s) */
    double deadline;              /* when it times out (monotonic s) */
    bool trace;                   /* the pull asked for its stamps (Header.trace) */
    uint64_t tr[3];               /* its stamps so far: began, decoded, parked */
} mlt_parked_t;

typedef struct mlt_ssp mlt_ssp_t;

/* Called with each pull leaving the queue; p is valid during the call only. */
typedef void (*mlt_ssp_fn)(void *arg, const mlt_parked_t *p);

/* New queue holding at most cap pulls. */
mlt_ssp_t *mlt_ssp_new(size_t cap);
void mlt_ssp_destroy(mlt_ssp_t **qp);

/* Parks a copy of *p. 0, or -EAGAIN when the queue is full. */
int mlt_ssp_park(mlt_ssp_t *q, const mlt_parked_t *p);
/* Releases every parked pull of `branch` that staleness s now allows at
 * min_clock; returns how many. */
size_t mlt_ssp_release(mlt_ssp_t *q, uint32_t branch, int64_t min_clock, uint32_t staleness,
                       mlt_ssp_fn fn, void *arg);
/* Removes every pull whose deadline is <= now; returns how many. */
size_t mlt_ssp_expire(mlt_ssp_t *q, double now, mlt_ssp_fn fn, void *arg);
/* Removes every pull of `branch` (all branches if branch is UINT32_MAX). */
size_t mlt_ssp_drop(mlt_ssp_t *q, uint32_t branch, mlt_ssp_fn fn, void *arg);
/* Removes every pull of `worker` (one the coordinator dropped). */
size_t mlt_ssp_drop_worker(mlt_ssp_t *q, uint32_t worker, mlt_ssp_fn fn, void *arg);
/* Earliest deadline, or a negative value when the queue is empty. */
double mlt_ssp_next_deadline(const mlt_ssp_t *q);
size_t mlt_ssp_count(const mlt_ssp_t *q);

#endif
