/* client_push.c - libmltuner's pushes, writes and clocks; see mltuner.h and
 * client_int.h (pulls: client_data.c).
 *
 * Pushes and writes travel packed (Header.packed): a part's chunks back to
 * back in one frame, sent zero-copy from the caller's table. With a shard on
 * the same host they are copied into a stage region of the shared segment
 * instead (or computed there: mlt_push_buffer), and a clock's pushes go with
 * the clock, one STEP per shard (#15). */
#include "client/mltuner.h"

#include <errno.h>
#include <stdatomic.h>
#include <string.h>
#include <zmq.h>

#include "common/alloc.h"
#include "common/timeutil.h"
#include "proto/wire.h"
#include "client/client_int.h"

/* ---- pushes, writes and clocks -------------------------------------------- */

/* A copy of one pushed table, for branches with staleness > 0: the frames
 * reference it and the last one released frees it, so the caller may reuse
 * its gradient buffer as soon as mlt_push returns. */
typedef struct stage {
    atomic_long refs;
    float data[];
} stage_t;

static void stage_release(void *data, void *hint)
{
    (void)data;
    stage_t *st = hint;
    if (atomic_fetch_sub(&st->refs, 1) == 1)
        mlt_free(st);
}

static void push_frame_free(void *data, void *hint)
{
    (void)data;
    atomic_fetch_sub(&((mlt_client_t *)hint)->push_frames, 1);
}

/* Starts the step's pushes into a free stage region, unless they are under
 * way for `branch` and `table` is not among them yet; pushes of another
 * branch, or a second push of a table, go out first. 0 or an error. */
static int step_begin(mlt_client_t *c, uint32_t branch, uint32_t table)
{
    if (c->step_region >= 0 && (c->step_branch != branch || c->step_table[table])) {
        int rc = mlt_client__step_flush(c);
        if (rc < 0)
            return rc;
    }
    if (c->step_region >= 0)
        return 0;
    uint32_t r = mlt_client__stage_pick(c);
    int rc = mlt_client__stage_wait(c, r);
    if (rc < 0)
        return rc;
    c->step_region = (int)r;
    c->step_branch = branch;
    return 0;
}

/* Sends shard s its STEP: the tables pushed since the last one that it holds
 * chunks of, the clock if with_clock, and with it (pf not NULL) the pull of
 * every table into cache pf (c->step_pulled[s] then says so). */
static int send_step(mlt_client_t *c, uint32_t s, bool with_clock, int64_t clock, cache_t *pf)
{
    size_t n = 0; /* parts come shard by shard, table by table */
    for (uint32_t i = 0; i < c->n_parts; i++) {
        const uint32_t t = c->parts[i].table;
        if (c->parts[i].shard == s && c->step_table[t] && (n == 0 || c->step_list[n - 1] != t))
            c->step_list[n++] = t;
    }
    c->step_due[s] = false;
    c->in_step = true;
    const bool pull = with_clock && pf && pull_all_to(c, s);
    uint64_t pull_id = 0;
    if (pull) {
        pending_t *q = mlt_client__pending(c, s, P_PREFETCH);
        q->part = ALL_PARTS;
        q->cache = pf;
        q->type = MLT__MSG_TYPE__MSG_PULL_ALL;
        q->sent_ns = c->trace ? mlt_time_mono_ns() : 0;
        pull_id = q->id;
    }
    pending_t *p = mlt_client__pending(c, s, P_ACK);
    c->in_step = false;
    mlt_header_t h;
    mlt_client__header(c, &h, MLT__MSG_TYPE__MSG_STEP, p);
    h.has_branch = h.has_shm_handle = h.has_shm_token = h.has_shm_offset = 1;
    h.branch = c->step_branch;
    h.shm_handle = c->shm_handle[s];
    h.shm_token = c->shm_token;
    h.shm_offset = region_off(c, MAX_CACHES + (uint32_t)c->step_region) + c->shard_off[s];
    h.n_tables = n;
    h.tables = c->step_list;
    h.has_clock = with_clock;
    h.clock = clock;
    if (pull) {
        h.has_pull_offset = h.has_pull_request_id = 1;
        h.pull_offset = region_off(c, (uint32_t)(pf - c->caches)) + c->shard_off[s];
        h.pull_request_id = pull_id;
    }
    p->stage = c->step_region;
    int rc = mlt_client__send(c, s, &h);
    if (rc == 0)
        c->stage_busy[c->step_region]++;
    if (rc < 0 && pull)
        c->n_pending--; /* the pull's, added just before the STEP's (gone already) */
    if (rc == 0 && pull && c->step_pulled)
        c->step_pulled[s] = true;
    return rc;
}

/* The step's pushes are all sent: the next push starts another. */
static void step_end(mlt_client_t *c)
{
    c->step_region = -1;
    memset(c->step_table, 0, c->n_tables * sizeof *c->step_table);
}

int mlt_client__step_flush(mlt_client_t *c)
{
    int rc = 0;
    for (uint32_t s = 0; s < c->n && c->step_region >= 0; s++)
        if (c->step_due[s] && rc == 0)
            rc = send_step(c, s, false, 0, NULL);
    memset(c->step_due, 0, c->n * sizeof *c->step_due);
    step_end(c);
    return rc;
}

/* A PUSH or WRITE of part i, packed: its pending request and header h. */
static pending_t *part_request(mlt_client_t *c, mlt_header_t *h, Mlt__MsgType type,
                               uint32_t branch, uint32_t i)
{
    const part_t *pt = &c->parts[i];
    pending_t *p = mlt_client__pending(c, pt->shard, P_ACK);
    mlt_client__header(c, h, type, p);
    h->has_branch = h->has_table = h->has_chunk_first = h->has_chunk_count = h->has_packed = 1;
    h->branch = branch;
    h->table = pt->table;
    h->chunk_first = pt->first;
    h->chunk_count = pt->count;
    h->packed = 1;
    return p;
}

/* Sends the parts of `table` with a payload from src. Parts to a shard using
 * shared memory are copied into a stage region of the segment: a push waits
 * there for the clock (the step, unless MLT_STEP=0), a write is sent at once.
 * The others go zero-copy: from src itself (the caller keeps it unchanged
 * until acknowledged), or from a staged copy when `stage` (the caller may
 * reuse src at once). */
static int send_table(mlt_client_t *c, Mlt__MsgType type, uint32_t branch, uint32_t table,
                      const float *src, bool stage)
{
    if (table >= c->n_tables)
        return mlt_client__err(c, -EINVAL, "table %u: the job has %u tables", table, c->n_tables);
    const table_t *t = &c->tables[table];
    const bool step = type == MLT__MSG_TYPE__MSG_PUSH && !c->step_off;
    int rc = 0, shm_stage = -1; /* the stage region of the shm parts, once copied */
    stage_t *st = NULL;
    for (uint32_t i = 0; i < c->n_parts && !rc; i++) {
        const part_t *pt = &c->parts[i];
        if (pt->table != table || !c->shm_ok[pt->shard])
            continue;
        if (shm_stage < 0) {
            if (step) {
                if ((rc = step_begin(c, branch, table)) < 0)
                    break;
                shm_stage = c->step_region;
                c->step_table[table] = true;
            } else {
                shm_stage = (int)mlt_client__stage_pick(c);
                if ((rc = mlt_client__stage_wait(c, (uint32_t)shm_stage)) < 0)
                    break;
            }
        }
        uint64_t off, len = part_span(c, pt, &off);
        char *to = c->shm_base + region_off(c, MAX_CACHES + (uint32_t)shm_stage) + c->part_off[i];
        if ((const char *)(src + off) != to) /* not computed in place (mlt_push_buffer) */
            memcpy(to, src + off, len * sizeof(float));
        if (step) {
            c->step_due[pt->shard] = true;
            continue;
        }
        mlt_header_t h;
        pending_t *p = part_request(c, &h, type, branch, i);
        h.has_shm_handle = h.has_shm_token = h.has_shm_offset = 1;
        h.shm_handle = c->shm_handle[pt->shard];
        h.shm_token = c->shm_token;
        h.shm_offset = region_off(c, MAX_CACHES + (uint32_t)shm_stage) + c->part_off[i];
        p->part = i;
        p->stage = shm_stage;
        if ((rc = mlt_client__send(c, pt->shard, &h)) < 0)
            break;
        c->stage_busy[shm_stage]++;
    }
    for (uint32_t i = 0; i < c->n_parts && !rc; i++) {
        const part_t *pt = &c->parts[i];
        if (pt->table != table || c->shm_ok[pt->shard])
            continue;
        if (stage && !st) {
            st = mlt_try_malloc(sizeof *st + t->size * sizeof(float));
            if (!st)
                return mlt_client__err(c, -ENOMEM, "out of memory staging a push of table %u",
                                       table);
            atomic_init(&st->refs, 1); /* ours, dropped at the end */
            memcpy(st->data, src, t->size * sizeof(float));
            src = st->data;
        }
        mlt_header_t h;
        pending_t *p = part_request(c, &h, type, branch, i);
        uint64_t off, len = part_span(c, pt, &off);
        void *sock = c->socks[pt->shard];
        if (mlt_client__broken(c)) {
            c->n_pending--; /* p, the last one added */
            rc = mlt_client__err(c, -ECONNRESET,
                                 "shard %d (%s) closed the connection (its daemon died "
                                 "or restarted)",
                                 c->lost, c->endpoints[c->lost]);
            break;
        }
        p->type = h.type;
        if (c->trace)
            p->sent_ns = mlt_time_mono_ns();
        rc = mlt_wire_send(sock, &h, ZMQ_SNDMORE);
        if (rc < 0) {
            mlt_client__err(c, rc, "%s: send: %s", c->endpoints[pt->shard], zmq_strerror(-rc));
            break;
        }
        zmq_msg_t m;
        if (st) {
            atomic_fetch_add(&st->refs, 1);
            zmq_msg_init_data(&m, (void *)(src + off), len * sizeof(float), stage_release, st);
        } else {
            atomic_fetch_add(&c->push_frames, 1);
            zmq_msg_init_data(&m, (void *)(src + off), len * sizeof(float), push_frame_free, c);
        }
        if (zmq_msg_send(&m, sock, 0) < 0) {
            zmq_msg_close(&m);
            rc = mlt_client__err(c, -zmq_errno(), "%s: send: %s", c->endpoints[pt->shard],
                                 zmq_strerror(zmq_errno()));
            break;
        }
    }
    if (st)
        stage_release(NULL, st);
    return rc;
}

int mlt_write(mlt_client_t *c, uint32_t branch, uint32_t table, const float *values)
{
    cache_t *ca = mlt_client__cache_find(c, branch);
    if (ca)
        ca->valid = false;
    mlt_client__prefetch_drop(c, branch, false);
    int rc = send_table(c, MLT__MSG_TYPE__MSG_WRITE, branch, table, values, false);
    int rc2 = mlt_sync(c);
    return rc ? rc : rc2;
}

/* Branches whose staleness (as the shards last said) is above 0 push from a
 * staged copy and clock without waiting: a worker allowed to read stale
 * parameters need not wait for its own updates to be acknowledged. */
static bool async_branch(mlt_client_t *c, uint32_t branch)
{
    cache_t *ca = mlt_client__cache_find(c, branch);
    return ca && ca->valid && ca->staleness > 0;
}

static int push_impl(mlt_client_t *c, uint32_t branch, uint32_t table, const float *grad)
{
    return send_table(c, MLT__MSG_TYPE__MSG_PUSH, branch, table, grad, async_branch(c, branch));
}

/* Handles every reply that has already arrived, without waiting. */
static void drain(mlt_client_t *c)
{
    for (uint32_t s = 0; s < c->n; s++) {
        for (;;) {
            int ev = 0;
            size_t len = sizeof ev;
            if (zmq_getsockopt(c->socks[s], ZMQ_EVENTS, &ev, &len) < 0 || !(ev & ZMQ_POLLIN))
                break;
            mlt_client__recv(c, s);
        }
    }
}


static int clock_impl(mlt_client_t *c, uint32_t branch, int64_t clock)
{
    bool async = async_branch(c, branch);
    if (c->step_region >= 0 && c->step_branch != branch) {
        int rc = mlt_client__step_flush(c); /* another branch's pushes: on their own */
        if (rc < 0)
            return rc;
    }
    cache_t *pf = mlt_client__clock_prefetch(c, branch, clock);
    if (c->step_pulled)
        memset(c->step_pulled, 0, c->n * sizeof *c->step_pulled);
    for (uint32_t s = 0; s < c->n; s++) {
        if (c->step_region >= 0 && c->step_due[s]) { /* the pushes, clock and pull: one message */
            int rc = send_step(c, s, true, clock, pf);
            if (rc < 0)
                return rc;
            continue;
        }
        mlt_header_t h;
        pending_t *p = mlt_client__pending(c, s, P_ACK);
        mlt_client__header(c, &h, MLT__MSG_TYPE__MSG_CLOCK, p);
        h.has_branch = h.has_clock = 1;
        h.branch = branch;
        h.clock = clock;
        int rc = mlt_client__send(c, s, &h);
        if (rc < 0)
            return rc;
    }
    if (c->step_region >= 0)
        step_end(c);
    if (pf && mlt_client__send_pulls(c, pf, branch, clock, P_PREFETCH, NULL, c->step_pulled) < 0)
        mlt_client__prefetch_drop(c, branch, false); /* the pull asks again */
    if (!async)
        return mlt_sync(c);
    /* bounded: far behind on acknowledgements, wait for them after all */
    drain(c);
    if (c->n_pending > ASYNC_MAX_PENDING)
        return mlt_sync(c);
    int rc = c->first_err;
    c->first_err = 0;
    return rc;
}

float *mlt_push_buffer(mlt_client_t *c, uint32_t branch, uint32_t table)
{
    if (table >= c->n_tables || c->step_off || !c->shm_base)
        return NULL;
    uint32_t i = c->table_part[table];
    if (i == ALL_PARTS || !c->shm_ok[c->parts[i].shard])
        return NULL;
    if (step_begin(c, branch, table) < 0)
        return NULL;
    return (float *)(c->shm_base + region_off(c, MAX_CACHES + (uint32_t)c->step_region) +
                     c->part_off[i]);
}

int mlt_push(mlt_client_t *c, uint32_t branch, uint32_t table, const float *grad)
{
    if (!c->trace_env)
        return push_impl(c, branch, table, grad);
    uint64_t t0 = mlt_time_mono_ns();
    return mlt_client__timed(c, 1, t0, push_impl(c, branch, table, grad));
}

int mlt_clock(mlt_client_t *c, uint32_t branch, int64_t clock)
{
    if (!c->trace_env)
        return clock_impl(c, branch, clock);
    uint64_t t0 = mlt_time_mono_ns();
    return mlt_client__timed(c, 2, t0, clock_impl(c, branch, clock));
}
