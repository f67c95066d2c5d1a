/* client_data.c - libmltuner's pulls, through the pull cache; see
 * mltuner.h and client_int.h (pushes, writes and clocks: client_push.c).
 *
 * Pulls travel packed (Header.packed): a part's chunks back to back in one
 * frame; a frame per chunk costs both sides' I/O threads a round each.
 *
 * The pull cache keeps, per branch, the received frames themselves (no copy)
 * and the min_clock they reflect, so a pull the cache can serve costs a copy
 * into the caller's buffers and no round trip.
 *
 * With a shard on the same host the data skips the socket: pulls are written
 * into, and pushes read from, a shared-memory segment (client_shm.c); only
 * the headers travel. */
#include "client/mltuner.h"

#include <errno.h>
#include <stdatomic.h>
#include <string.h>
#include <zmq.h>
#if defined(__x86_64__)
#include <immintrin.h>
#endif

#include "common/alloc.h"
#include "common/timeutil.h"
#include "proto/wire.h"
#include "client/client_int.h"

/* ---- pull replies and the cache ------------------------------------------- */

/* Copies a pulled chunk into the caller's table. For large models the copy
 * bypasses the cache (non-temporal stores: a third less memory traffic, and
 * the data would not stay cached anyway); small ones stay cached for the step
 * that reads them next. */
#if defined(__x86_64__)
__attribute__((target("avx512f"))) static void copy_stream512(float *d, const float *s, size_t n)
{
    size_t i = 0;
    for (; i + 16 <= n; i += 16)
        _mm512_stream_ps(d + i, _mm512_loadu_ps(s + i));
    for (; i < n; i++)
        d[i] = s[i];
    _mm_sfence(); /* streaming stores are weakly ordered: publish them */
}
#endif

static void copy_part(const mlt_client_t *c, float *dst, const void *src, size_t bytes)
{
#if defined(__x86_64__)
    if (c->stream_copy && ((uintptr_t)dst & 63) == 0) {
        copy_stream512(dst, src, bytes / sizeof(float));
        return;
    }
#endif
    (void)c;
    memcpy(dst, src, bytes);
}

/* Byte offset in the segment of part i of cache ca (its shard uses it). */
static uint64_t cache_part_off(const mlt_client_t *c, const cache_t *ca, uint32_t i)
{
    return region_off(c, (uint32_t)(ca - c->caches)) + c->part_off[i];
}

/* Where cache ca holds part i: in its frame, or in its region of the segment. */
static const void *part_data(const mlt_client_t *c, const cache_t *ca, uint32_t i)
{
    const part_t *pt = &c->parts[i];
    if (c->shm_ok[pt->shard])
        return c->shm_base + cache_part_off(c, ca, i);
    return zmq_msg_data((zmq_msg_t *)&ca->msgs[i]);
}

/* The reply to a PULL_ALL: every part of the shard is in the cache's region. */
static void on_pull_all(mlt_client_t *c, const pending_t *p, const mlt_header_t *h, size_t n)
{
    cache_t *ca = p->cache;
    const uint64_t at = region_off(c, (uint32_t)(ca - c->caches)) + c->shard_off[p->shard];
    if (n != 0 || !h->has_min_clock || !h->has_shm_offset || h->shm_offset != at) {
        ca->failed = true;
        mlt_client__record_error(c, -EPROTO,
                                 "%s: reply to a pull of every table: %zu frames, shm_offset %llu "
                                 "(asked for none, %llu)",
                                 c->endpoints[p->shard], n, (unsigned long long)h->shm_offset,
                                 (unsigned long long)at);
        return;
    }
    for (uint32_t i = 0; p->dsts && i < c->n_parts; i++) {
        const part_t *pt = &c->parts[i];
        if (pt->shard != p->shard)
            continue;
        uint64_t off, len = part_span(c, pt, &off);
        copy_part(c, p->dsts[pt->table] + off, part_data(c, ca, i), len * sizeof(float));
    }
}

/* Takes a packed pull reply into the cache (its frame, ownership moving to
 * the cache; or, from a shard using shared memory, no frame: the data is in
 * the cache's region already) and copies it into the caller's table.
 * frames[0..n) are the payload frames. */
void mlt_client__on_pull(mlt_client_t *c, const pending_t *p, const mlt_header_t *h,
                         zmq_msg_t *frames, size_t n)
{
    cache_t *ca = p->cache;
    if (ca == NULL)
        return; /* a prefetch given up on */
    if (p->part == ALL_PARTS) {
        on_pull_all(c, p, h, n);
    } else {
        const part_t *pt = &c->parts[p->part];
        uint64_t off, len = part_span(c, pt, &off);
        const bool shm = c->shm_ok[pt->shard];
        const uint64_t at = shm ? cache_part_off(c, ca, p->part) : 0;
        if (!h->has_chunk_count || h->chunk_count != pt->count || !h->has_min_clock ||
            !(shm ? n == 0 && h->has_shm_offset && h->shm_offset == at
                  : h->has_packed && h->packed && n == 1 &&
                        zmq_msg_size(&frames[0]) == len * sizeof(float))) {
            ca->failed = true;
            mlt_client__record_error(
                c, -EPROTO,
                "%s: pull reply of %zu frames (%zu bytes first, shm_offset %llu), asked for "
                "%u chunks of %llu bytes, %s %llu",
                c->endpoints[p->shard], n, n ? zmq_msg_size(&frames[0]) : 0,
                (unsigned long long)h->shm_offset, pt->count,
                (unsigned long long)(len * sizeof(float)),
                shm ? "written into shared memory at" : "packed in one frame, shm_offset",
                (unsigned long long)at);
            return;
        }
        if (!shm) {
            zmq_msg_t *slot = &ca->msgs[p->part];
            zmq_msg_close(slot);
            zmq_msg_init(slot);
            zmq_msg_move(slot, &frames[0]);
        }
        if (p->dst != NULL)
            copy_part(c, p->dst + off, part_data(c, ca, p->part), len * sizeof(float));
    }
    if (ca->failed)
        return;
    ca->gen = ++c->gen_seq;
    if (h->min_clock < ca->min_clock)
        ca->min_clock = h->min_clock;
    if (h->tunables && h->tunables->has_staleness)
        ca->staleness = h->tunables->staleness;
}

void mlt_client__cache_clear(mlt_client_t *c, cache_t *ca)
{
    for (size_t k = 0; k < c->n_pending; k++) /* replies still to come fill nothing */
        if (c->pending[k].cache == ca)
            c->pending[k].cache = NULL;
    if (ca->msgs) {
        for (uint32_t i = 0; i < c->n_parts; i++)
            zmq_msg_close(&ca->msgs[i]);
        mlt_free(ca->msgs);
    }
    memset(ca, 0, sizeof *ca);
}

cache_t *mlt_client__cache_find(mlt_client_t *c, uint32_t branch)
{
    for (int i = 0; i < MAX_CACHES; i++)
        if (c->caches[i].msgs && !c->caches[i].prefetch && c->caches[i].branch == branch)
            return &c->caches[i];
    return NULL;
}

/* The prefetched copy of a branch, if one was asked for. */
static cache_t *prefetch_find(mlt_client_t *c, uint32_t branch)
{
    for (int i = 0; i < MAX_CACHES; i++)
        if (c->caches[i].msgs && c->caches[i].prefetch && c->caches[i].branch == branch)
            return &c->caches[i];
    return NULL;
}

/* Forgets the prefetches of `branch` (of every branch if all): nothing waits
 * for their replies (a prefetch may be parked at a shard for clocks that
 * never come), which are dropped on arrival, and the copies are freed. A slot
 * whose replies a shard will write into shared memory becomes a zombie
 * instead, kept from reuse until they have come (a parked pull may be answered
 * much later, and must not land in a region that holds another copy then). */
void mlt_client__prefetch_drop(mlt_client_t *c, uint32_t branch, bool all)
{
    for (int i = 0; i < MAX_CACHES; i++) {
        cache_t *ca = &c->caches[i];
        if (!ca->msgs || !ca->prefetch || (!all && ca->branch != branch))
            continue;
        uint32_t shm_replies = 0;
        for (size_t k = 0; k < c->n_pending;) {
            pending_t *p = &c->pending[k];
            if (p->cache != ca) {
                k++;
            } else if (c->shm_ok[p->shard]) {
                p->kind = P_ZOMBIE;
                shm_replies++;
                k++;
            } else {
                *p = c->pending[--c->n_pending];
            }
        }
        if (shm_replies == 0) {
            mlt_client__cache_clear(c, ca);
            continue;
        }
        ca->zombie = shm_replies;
        ca->prefetch = ca->valid = false;
        ca->branch = UINT32_MAX; /* no branch id: found by no lookup */
    }
}

/* ---- pulls ---------------------------------------------------------------- */

/* A free cache slot for `branch`, or the least recently used one other than
 * `keep` and the prefetches (whose replies may still come), cleared. */
static cache_t *cache_slot(mlt_client_t *c, uint32_t branch, const cache_t *keep)
{
    cache_t *ca = NULL;
    for (int i = 0; i < MAX_CACHES; i++) {
        cache_t *x = &c->caches[i];
        if (!x->msgs) {
            ca = x;
            break;
        }
        if (x != keep && !x->prefetch && !x->zombie && (!ca || x->used < ca->used))
            ca = x;
    }
    if (!ca) /* every other slot a prefetch (or a zombie): forget them */
        for (int i = 0; i < MAX_CACHES && !ca; i++)
            if (&c->caches[i] != keep && c->caches[i].prefetch) {
                mlt_client__prefetch_drop(c, c->caches[i].branch, false);
                if (!c->caches[i].zombie)
                    ca = &c->caches[i];
            }
    while (!ca) { /* zombies all: wait for a shard's late reply to free one */
        for (int i = 0; i < MAX_CACHES && !ca; i++)
            if (&c->caches[i] != keep && !c->caches[i].msgs)
                ca = &c->caches[i];
        if (!ca && mlt_client__wait(c, P_ZOMBIE) < 0)
            for (int i = 0; i < MAX_CACHES && !ca; i++) /* never came: the region is lost */
                if (&c->caches[i] != keep && c->caches[i].zombie)
                    ca = &c->caches[i];
    }
    mlt_client__cache_clear(c, ca);
    ca->branch = branch;
    ca->msgs = mlt_calloc(c->n_parts ? c->n_parts : 1, sizeof *ca->msgs);
    for (uint32_t i = 0; i < c->n_parts; i++)
        zmq_msg_init(&ca->msgs[i]);
    return ca;
}

static cache_t *cache_for(mlt_client_t *c, uint32_t branch)
{
    cache_t *ca = mlt_client__cache_find(c, branch);
    if (!ca)
        ca = cache_slot(c, branch, NULL);
    ca->used = ++c->stamp;
    return ca;
}

/* Cache ca is about to be filled by pulls. */
static void pulls_begin(mlt_client_t *c, cache_t *ca)
{
    ca->valid = ca->failed = false;
    ca->min_clock = INT64_MAX;
    ca->gen = ++c->gen_seq;
}

/* Per shard on the same host one PULL_ALL, else a PULL per part; see
 * client_int.h. */
int mlt_client__send_pulls(mlt_client_t *c, cache_t *ca, uint32_t branch, int64_t clock,
                           enum pend_kind kind, float *const *dst, const bool *asked)
{
    for (uint32_t s = 0; s < c->n && !c->step_off; s++) {
        if (!pull_all_to(c, s) || (asked && asked[s]))
            continue;
        mlt_header_t h; /* one request for every table of the shard */
        pending_t *p = mlt_client__pending(c, s, kind);
        p->part = ALL_PARTS;
        p->dsts = dst;
        p->cache = ca;
        mlt_client__header(c, &h, MLT__MSG_TYPE__MSG_PULL_ALL, p);
        h.has_branch = h.has_clock = h.has_shm_handle = h.has_shm_token = h.has_shm_offset = 1;
        h.branch = branch;
        h.clock = clock;
        h.shm_handle = c->shm_handle[s];
        h.shm_token = c->shm_token;
        h.shm_offset = region_off(c, (uint32_t)(ca - c->caches)) + c->shard_off[s];
        int rc = mlt_client__send(c, s, &h);
        if (rc < 0)
            return rc;
    }
    for (uint32_t i = 0; i < c->n_parts; i++) {
        const part_t *pt = &c->parts[i];
        if (c->shm_ok[pt->shard] && !c->step_off)
            continue; /* asked for above */
        mlt_header_t h;
        pending_t *p = mlt_client__pending(c, pt->shard, kind);
        p->part = i;
        p->dst = dst ? dst[pt->table] : NULL;
        p->cache = ca;
        mlt_client__header(c, &h, MLT__MSG_TYPE__MSG_PULL, p);
        h.has_branch = h.has_clock = h.has_table = h.has_chunk_first = h.has_chunk_count = 1;
        h.has_packed = h.packed = 1;
        h.branch = branch;
        h.clock = clock;
        h.table = pt->table;
        h.chunk_first = pt->first;
        h.chunk_count = pt->count;
        if (c->shm_ok[pt->shard]) {
            h.has_shm_handle = h.has_shm_token = h.has_shm_offset = 1;
            h.shm_handle = c->shm_handle[pt->shard];
            h.shm_token = c->shm_token;
            h.shm_offset = cache_part_off(c, ca, i);
        }
        int rc = mlt_client__send(c, pt->shard, &h);
        if (rc < 0)
            return rc;
    }
    return 0;
}

/* After a pull at `clock` served from ca: when the branch may be read stale
 * (staleness s > 0) and the next pull, at clock + 1, would find ca too old,
 * asks for that copy now, so that it travels while the caller computes. The
 * shards answer it once every worker has reached clock + 1 - s: with s >= 1
 * this worker's own clocks never hold it back. (With s = 0 a pull must see
 * this worker's next push, which is not sent yet: nothing to prefetch.) */
static void prefetch(mlt_client_t *c, cache_t *ca, uint32_t branch, int64_t clock)
{
    if (!ca->valid || ca->staleness == 0 || clock + 1 <= ca->min_clock + (int64_t)ca->staleness ||
        prefetch_find(c, branch) != NULL)
        return;
    cache_t *pf = cache_slot(c, branch, ca);
    pf->prefetch = true;
    pf->staleness = ca->staleness;
    pf->used = ca->used;
    pulls_begin(c, pf);
    if (mlt_client__send_pulls(c, pf, branch, clock + 1, P_PREFETCH, NULL, NULL) < 0)
        mlt_client__prefetch_drop(c, branch, false); /* the pull that needs it asks again */
}

static bool fresh(const cache_t *ca, int64_t clock);

/* At this worker's clock `clock` on a branch of staleness 0: the pull at
 * `clock` that usually comes next must see every worker's pushes of the
 * clocks before it, this worker's included. Asked for with the clock (inside
 * its STEP, or right behind it), it is answered as soon as the shard counts
 * the last worker's clock (by the release itself when it had to wait), and
 * its reply travels with the clock's acknowledgement (as one reply when the
 * STEP released it) or right after: the pull then costs no round trip of its
 * own (#15). Returns the cache slot to fill, or NULL (no prefetch wanted).
 * MLT_CLOCK_PREFETCH=0 turns it off. */
cache_t *mlt_client__clock_prefetch(mlt_client_t *c, uint32_t branch, int64_t clock)
{
    cache_t *ca = mlt_client__cache_find(c, branch);
    if (c->no_clock_prefetch || !ca || !ca->valid || ca->staleness != 0 || fresh(ca, clock) ||
        prefetch_find(c, branch) != NULL)
        return NULL;
    cache_t *pf = cache_slot(c, branch, ca);
    pf->prefetch = true;
    pf->staleness = 0;
    pf->used = ca->used;
    pulls_begin(c, pf);
    return pf;
}

/* Waits for the replies of prefetched copy pf (those of other prefetches may
 * be parked at a shard for a long time: not waited for). Returns the first
 * error of the requests completed meanwhile (and clears it). */
static int prefetch_wait(mlt_client_t *c, const cache_t *pf)
{
    double deadline = mlt_time_mono() + c->timeout_s;
    for (;;) {
        bool left = false;
        for (size_t i = 0; i < c->n_pending && !left; i++)
            left = c->pending[i].kind == P_PREFETCH && c->pending[i].cache == pf;
        if (!left)
            break;
        int rc = mlt_client__pump(c, &deadline);
        if (rc == -ETIMEDOUT)
            return mlt_client__err(c, rc, "no reply to a pull asked ahead for %.0f s",
                                   c->timeout_s);
        if (rc < 0)
            return rc;
    }
    int rc = c->first_err;
    c->first_err = 0;
    return rc;
}

/* true when dst already holds ca's copy (mlt_client_keep_dst) */
static bool held(const mlt_client_t *c, const cache_t *ca, float *const *dst)
{
    if (!c->keep_dst || c->held_ca != ca || c->held_gen != ca->gen || !c->held_dst)
        return false;
    for (uint32_t t = 0; t < c->n_tables; t++)
        if (c->held_dst[t] != dst[t])
            return false;
    return true;
}

static void hold(mlt_client_t *c, const cache_t *ca, float *const *dst)
{
    if (!c->keep_dst)
        return;
    if (!c->held_dst)
        c->held_dst = mlt_calloc(c->n_tables ? c->n_tables : 1, sizeof *c->held_dst);
    for (uint32_t t = 0; t < c->n_tables; t++)
        c->held_dst[t] = dst[t];
    c->held_ca = ca;
    c->held_gen = ca->gen;
}

void mlt_client_keep_dst(mlt_client_t *c, bool keep)
{
    c->keep_dst = keep;
    c->held_ca = NULL;
}

void mlt_client_forget_dst(mlt_client_t *c)
{
    c->held_ca = NULL;
}

uint64_t mlt_pull_copies_skipped(const mlt_client_t *c)
{
    return c->copies_skipped;
}

/* Copies the cached copy ca into the caller's tables. */
static void copy_out(mlt_client_t *c, const cache_t *ca, float *const *dst)
{
    for (uint32_t i = 0; i < c->n_parts; i++) {
        const part_t *pt = &c->parts[i];
        uint64_t off, len = part_span(c, pt, &off);
        copy_part(c, dst[pt->table] + off, part_data(c, ca, i), len * sizeof(float));
    }
}

/* ca's copy is good for a pull at `clock`. */
static bool fresh(const cache_t *ca, int64_t clock)
{
    return ca->valid && ca->min_clock >= clock - (int64_t)ca->staleness;
}

void mlt_client__views_free(mlt_client_t *c)
{
    for (uint32_t t = 0; c->view_buf && t < c->n_tables; t++)
        mlt_free(c->view_buf[t]);
    mlt_free(c->view_buf);
    mlt_free(c->table_part);
    c->view_buf = NULL;
    c->table_part = NULL;
}

/* Points views[t] at cache ca's copy of each table, or at a copy in
 * view_buf[t] when the table is in several parts. */
static void set_views(mlt_client_t *c, const cache_t *ca, const float **views)
{
    for (uint32_t t = 0; t < c->n_tables; t++) {
        if (c->table_part[t] != ALL_PARTS) {
            views[t] = part_data(c, ca, c->table_part[t]);
            continue;
        }
        if (!c->view_buf)
            c->view_buf = mlt_calloc(c->n_tables, sizeof *c->view_buf);
        if (!c->view_buf[t])
            c->view_buf[t] = mlt_malloc(c->tables[t].size * sizeof(float));
        for (uint32_t i = 0; i < c->n_parts; i++) {
            const part_t *pt = &c->parts[i];
            if (pt->table != t)
                continue;
            uint64_t off, len = part_span(c, pt, &off);
            memcpy(c->view_buf[t] + off, part_data(c, ca, i), len * sizeof(float));
        }
        views[t] = c->view_buf[t];
    }
}

/* A pull into the caller's tables dst, or (views not NULL) pointing views at
 * the cached copy. */
static int pull_impl(mlt_client_t *c, uint32_t branch, int64_t clock, float *const *dst,
                     const float **views)
{
    if (!c->n_tables)
        return mlt_client__err(c, -EINVAL, "pull before mlt_client_register");
    cache_t *ca = cache_for(c, branch);
    if (!fresh(ca, clock)) {
        cache_t *pf = prefetch_find(c, branch);
        if (pf != NULL) { /* the copy asked for ahead: wait for it, take it if good */
            int rc = prefetch_wait(c, pf);
            if (rc < 0)
                return rc; /* an error of an earlier asynchronous request */
            pf->valid = !pf->failed && pf->min_clock != INT64_MAX;
            pf->prefetch = false;
            if (fresh(pf, clock)) {
                c->prefetch_hits++;
                pf->used = ca->used;
                mlt_client__cache_clear(c, ca);
                ca = pf;
            } else {
                mlt_client__cache_clear(c, pf);
            }
        }
    }
    if (fresh(ca, clock) && views) {
        set_views(c, ca, views);
        prefetch(c, ca, branch, clock);
        return 0;
    }
    if (fresh(ca, clock)) {
        if (held(c, ca, dst)) {
            c->copies_skipped++;
        } else {
            copy_out(c, ca, dst);
            hold(c, ca, dst);
        }
        prefetch(c, ca, branch, clock);
        return 0;
    }
    c->held_ca = NULL; /* dst is being overwritten */
    pulls_begin(c, ca);
    int rc = mlt_client__send_pulls(c, ca, branch, clock, P_PULL, dst, NULL);
    if (rc < 0)
        return rc;
    rc = mlt_client__wait(c, P_PULL);
    ca->valid = rc == 0 && !ca->failed;
    if (ca->valid) {
        if (views)
            set_views(c, ca, views);
        else
            hold(c, ca, dst);
        prefetch(c, ca, branch, clock);
    }
    return rc;
}

int mlt_pull(mlt_client_t *c, uint32_t branch, int64_t clock, float *const *dst)
{
    if (!c->trace_env)
        return pull_impl(c, branch, clock, dst, NULL);
    uint64_t t0 = mlt_time_mono_ns();
    return mlt_client__timed(c, 0, t0, pull_impl(c, branch, clock, dst, NULL));
}

int mlt_pull_view(mlt_client_t *c, uint32_t branch, int64_t clock, const float **tables)
{
    if (!c->trace_env)
        return pull_impl(c, branch, clock, NULL, tables);
    uint64_t t0 = mlt_time_mono_ns();
    return mlt_client__timed(c, 0, t0, pull_impl(c, branch, clock, NULL, tables));
}

uint64_t mlt_pull_prefetched(const mlt_client_t *c)
{
    return c->prefetch_hits;
}

int64_t mlt_pull_min_clock(const mlt_client_t *c, uint32_t branch)
{
    for (int i = 0; i < MAX_CACHES; i++)
        if (c->caches[i].msgs && !c->caches[i].prefetch && c->caches[i].branch == branch &&
            c->caches[i].valid)
            return c->caches[i].min_clock;
    return -1;
}
