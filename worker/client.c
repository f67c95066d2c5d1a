/* client.c - libmltuner, see mltuner.h.
 *
 * Every request carries a request id and is remembered in `pending` until its
 * reply (OK, ERROR, PULL_REPLY or STATUS_REPLY) arrives; replies may come in
 * any order (a parked pull is answered after later requests). Synchronous
 * calls send, then pump replies until their requests are done.
 *
 * Pushes, writes and pulls travel packed (Header.packed): a part's chunks
 * back to back in one frame, sent zero-copy from the caller's table; a frame
 * per chunk costs both sides' I/O threads a round each.
 *
 * The pull cache keeps, per branch, the received frames themselves (no copy)
 * and the min_clock they reflect, so a pull the cache can serve costs a copy
 * into the caller's buffers and no round trip.
 *
 * With a shard on the same host the data skips the socket: pulls are written
 * into, and pushes read from, a shared-memory segment (client_shm.c); only
 * the headers travel. */
#include "worker/mltuner.h"

#include <errno.h>
#include <math.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdio.h>
#include <string.h>
#include <time.h>
#include <zmq.h>
#if defined(__x86_64__)
#include <immintrin.h>
#endif

#include "common/alloc.h"
#include "common/timeutil.h"
#include "kernels/optim.h"
#include "proto/layout.h"
#include "proto/wire.h"
#include "worker/client_int.h"

/* the internal names client_int.h exports, by their short names here */
#define set_err mlt_client__err
#define recv_one mlt_client__recv
#define wait_for mlt_client__wait
#define send_simple mlt_client__send
#define add_pending mlt_client__pending
#define header_for mlt_client__header

int mlt_client__err(mlt_client_t *c, int code, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(c->err, sizeof c->err, fmt, ap);
    va_end(ap);
    return code;
}

mlt_tunables_def_t mlt_tunables_unset(void)
{
    mlt_tunables_def_t t = {NAN, NAN, NAN, NAN, NAN, NAN, -1};
    return t;
}

const char *mlt_client_error(const mlt_client_t *c)
{
    return c->err;
}

void mlt_client_set_timeout(mlt_client_t *c, double seconds)
{
    c->timeout_s = seconds;
}

/* ---- requests and replies ------------------------------------------------- */

pending_t *mlt_client__pending(mlt_client_t *c, uint32_t shard, enum pend_kind kind)
{
    if (c->n_pending == c->cap_pending) {
        c->cap_pending = c->cap_pending ? c->cap_pending * 2 : 64;
        c->pending = mlt_realloc(c->pending, c->cap_pending * sizeof *c->pending);
    }
    pending_t *p = &c->pending[c->n_pending++];
    memset(p, 0, sizeof *p);
    p->id = ++c->next_id;
    p->shard = shard;
    p->kind = kind;
    p->stage = -1;
    return p;
}

void mlt_client__header(mlt_client_t *c, mlt_header_t *h, Mlt__MsgType type, const pending_t *p)
{
    mlt_wire_init(h, type);
    h->has_request_id = 1;
    h->request_id = p->id;
    h->has_worker = 1;
    h->worker = c->worker;
}

static void record_error(mlt_client_t *c, int code, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
static void record_error(mlt_client_t *c, int code, const char *fmt, ...)
{
    if (c->first_err)
        return;
    c->first_err = code;
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(c->err, sizeof c->err, fmt, ap);
    va_end(ap);
}

static void fill_tunables(mlt_tunables_def_t *d, const Mlt__Tunables *t)
{
    *d = mlt_tunables_unset();
    if (!t)
        return;
    if (t->has_lr) d->lr = t->lr;
    if (t->has_momentum) d->momentum = t->momentum;
    if (t->has_weight_decay) d->weight_decay = t->weight_decay;
    if (t->has_beta1) d->beta1 = t->beta1;
    if (t->has_beta2) d->beta2 = t->beta2;
    if (t->has_eps) d->eps = t->eps;
    if (t->has_staleness) d->staleness = (int32_t)t->staleness;
}

static void on_hello(mlt_client_t *c, const pending_t *p, const mlt_header_t *h)
{
    const Mlt__ServerInfo *si = h->server;
    if (!si) {
        record_error(c, -EPROTO, "%s: hello reply without server info", c->endpoints[p->shard]);
        return;
    }
    if (si->rank != p->shard || si->n_servers != c->n)
        record_error(c, -EINVAL, "%s says it is shard %u of %u; expected shard %u of %u",
                     c->endpoints[p->shard], si->rank, si->n_servers, p->shard, c->n);
    else if (c->chunk_floats && si->chunk_floats != c->chunk_floats)
        record_error(c, -EINVAL, "%s uses chunks of %u floats, shard 0 of %u: chunk_size differs",
                     c->endpoints[p->shard], si->chunk_floats, c->chunk_floats);
    else
        c->chunk_floats = si->chunk_floats;
}

static void on_status(mlt_client_t *c, const pending_t *p, const mlt_header_t *h)
{
    mlt_server_status_t *o = p->st;
    memset(o, 0, sizeof *o);
    if (h->server) {
        o->rank = h->server->rank;
        o->n_servers = h->server->n_servers;
        o->chunk_floats = h->server->chunk_floats;
        o->memory_limit = h->server->memory_limit;
        o->memory_potential = h->server->memory_potential;
        o->memory_allocated = h->server->memory_allocated;
        o->requests = h->server->requests;
        o->errors = h->server->errors;
        o->pulls = h->server->pulls;
        o->pushes = h->server->pushes;
        o->bytes_in = h->server->bytes_in;
        o->bytes_out = h->server->bytes_out;
        o->parked = h->server->parked;
        if (h->server->job)
            snprintf(o->job, sizeof o->job, "%s", h->server->job);
    }
    o->n_branches = (uint32_t)h->n_branches;
    o->branches = mlt_calloc(h->n_branches ? h->n_branches : 1, sizeof *o->branches);
    for (size_t i = 0; i < h->n_branches; i++) {
        const Mlt__BranchInfo *b = h->branches[i];
        mlt_branch_status_t *d = &o->branches[i];
        d->id = b->id;
        d->parent = b->has_parent ? (int64_t)b->parent : -1;
        d->kind = (int)b->kind;
        d->min_clock = b->min_clock;
        d->owned_bytes = b->owned_bytes;
        d->shared_bytes = b->shared_bytes;
        d->diverged = b->diverged;
        fill_tunables(&d->tunables, b->tunables);
    }
    (void)c;
}

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

/* Part pt's floats in its table: [*off, *off + return). */
static uint64_t part_span(const mlt_client_t *c, const part_t *pt, uint64_t *off)
{
    const uint64_t size = c->tables[pt->table].size;
    const uint64_t end = (uint64_t)(pt->first + pt->count) * c->chunk_floats;
    *off = (uint64_t)pt->first * c->chunk_floats;
    return (end < size ? end : size) - *off;
}

/* Copies a packed pull reply into the caller's table and keeps its frame in
 * the cache. frames[0..n) are the payload frames (ownership moves to the
 * cache). */
static void on_pull(mlt_client_t *c, const pending_t *p, const mlt_header_t *h, zmq_msg_t *frames,
                    size_t n)
{
    const part_t *pt = &c->parts[p->part];
    if (p->cache == NULL)
        return; /* a prefetch given up on */
    uint64_t off, len = part_span(c, pt, &off);
    if (c->shm_ok[pt->shard]) { /* the data is in the segment already */
        uint64_t want = shm_region_off(c, (uint32_t)(p->cache - c->caches), pt->table) +
                        off * sizeof(float);
        if (!h->has_chunk_count || h->chunk_count != pt->count || !h->has_min_clock || n != 0 ||
            !h->has_shm_offset || h->shm_offset != want) {
            p->cache->failed = true;
            record_error(c, -EPROTO,
                         "%s: pull reply of %zu frames, shm_offset %llu; asked for %u chunks "
                         "written at %llu of shared memory",
                         c->endpoints[p->shard], n, (unsigned long long)h->shm_offset, pt->count,
                         (unsigned long long)want);
            return;
        }
        cache_t *ca = p->cache;
        ca->gen = ++c->gen_seq;
        if (p->dst != NULL)
            copy_part(c, p->dst + off, c->shm_base + want, len * sizeof(float));
        if (h->min_clock < ca->min_clock)
            ca->min_clock = h->min_clock;
        if (h->tunables && h->tunables->has_staleness)
            ca->staleness = h->tunables->staleness;
        return;
    }
    if (!h->has_chunk_count || h->chunk_count != pt->count || !h->has_min_clock ||
        !h->has_packed || !h->packed || n != 1 || zmq_msg_size(&frames[0]) != len * sizeof(float)) {
        p->cache->failed = true;
        record_error(c, -EPROTO,
                     "%s: pull reply of %zu frames (%zu bytes first), asked for %u chunks "
                     "packed in one frame of %llu bytes",
                     c->endpoints[p->shard], n, n ? zmq_msg_size(&frames[0]) : 0, pt->count,
                     (unsigned long long)(len * sizeof(float)));
        return;
    }
    cache_t *ca = p->cache;
    ca->gen = ++c->gen_seq;
    if (p->dst != NULL)
        copy_part(c, p->dst + off, zmq_msg_data(&frames[0]), zmq_msg_size(&frames[0]));
    zmq_msg_t *slot = &ca->msgs[p->part];
    zmq_msg_close(slot);
    zmq_msg_init(slot);
    zmq_msg_move(slot, &frames[0]);
    if (h->min_clock < ca->min_clock)
        ca->min_clock = h->min_clock;
    if (h->tunables && h->tunables->has_staleness)
        ca->staleness = h->tunables->staleness;
}

/* Receives and handles one message from shard s. */
void mlt_client__recv(mlt_client_t *c, uint32_t s)
{
    zmq_msg_t hdr;
    zmq_msg_init(&hdr);
    if (zmq_msg_recv(&hdr, c->socks[s], 0) < 0) {
        zmq_msg_close(&hdr);
        return;
    }
    size_t nf = 0, cap = 0;
    zmq_msg_t *frames = NULL;
    int more = zmq_msg_more(&hdr);
    while (more) {
        if (nf == cap) {
            cap = cap ? cap * 2 : 16;
            frames = mlt_realloc(frames, cap * sizeof *frames);
        }
        zmq_msg_init(&frames[nf]);
        if (zmq_msg_recv(&frames[nf], c->socks[s], 0) < 0)
            break;
        more = zmq_msg_more(&frames[nf]);
        nf++;
    }
    char err[256];
    mlt_header_t *h = NULL;
    int rc = mlt_wire_decode(zmq_msg_data(&hdr), zmq_msg_size(&hdr), &h, err, sizeof err);
    if (rc) {
        record_error(c, rc, "%s sent a bad reply: %s", c->endpoints[s], err);
        goto out;
    }
    size_t i;
    for (i = 0; i < c->n_pending; i++)
        if (c->pending[i].id == h->request_id && c->pending[i].shard == s)
            break;
    if (i == c->n_pending)
        goto out; /* a reply to a request given up on */
    pending_t p = c->pending[i];
    c->pending[i] = c->pending[--c->n_pending];
    if (p.stage >= 0) /* its stage may be overwritten once every part is acknowledged */
        c->stage_busy[(uint32_t)p.stage * c->n_tables + c->parts[p.part].table]--;
    if (p.kind == P_SHM) {
        mlt_client__shm_reply(c, &p, h);
    } else if (h->type == MLT__MSG_TYPE__MSG_ERROR && p.kind == P_PREFETCH) {
        if (p.cache)
            p.cache->failed = true; /* the pull that needs it will ask again, and say why */
    } else if (h->type == MLT__MSG_TYPE__MSG_ERROR) {
        if (p.kind == P_PULL)
            p.cache->valid = false;
        record_error(c, h->has_error_code && h->error_code ? -h->error_code : -EPROTO, "%s: %s",
                     c->endpoints[s], h->error ? h->error : "error");
    } else if ((p.kind == P_PULL || p.kind == P_PREFETCH) &&
               h->type == MLT__MSG_TYPE__MSG_PULL_REPLY) {
        on_pull(c, &p, h, frames, nf);
    } else if (p.kind == P_STATUS && h->type == MLT__MSG_TYPE__MSG_STATUS_REPLY) {
        on_status(c, &p, h);
    } else if (h->type == MLT__MSG_TYPE__MSG_OK) {
        if (p.kind == P_HELLO)
            on_hello(c, &p, h);
    } else {
        record_error(c, -EPROTO, "%s answered with %s", c->endpoints[s],
                     mlt_wire_type_name(h->type));
    }
out:
    mlt_wire_free(&h);
    for (size_t k = 0; k < nf; k++)
        zmq_msg_close(&frames[k]);
    if (frames && nf < cap && more)
        zmq_msg_close(&frames[nf]);
    mlt_free(frames);
    zmq_msg_close(&hdr);
}

/* Pumps replies until no request of `kind` (or any, if kind < 0) is pending.
 * Returns the first error of the completed requests (and clears it), or
 * -ETIMEDOUT when nothing arrives for timeout_s. */
int mlt_client__wait(mlt_client_t *c, int kind)
{
    zmq_pollitem_t items[MLT_MAX_SERVERS];
    for (uint32_t s = 0; s < c->n; s++)
        items[s] = (zmq_pollitem_t){.socket = c->socks[s], .events = ZMQ_POLLIN};
    double deadline = mlt_time_mono() + c->timeout_s;
    for (;;) {
        size_t left = 0;
        for (size_t i = 0; i < c->n_pending; i++)
            if (kind < 0 || (int)c->pending[i].kind == kind)
                left++;
        if (!left)
            break;
        double wait = deadline - mlt_time_mono();
        if (wait <= 0) {
            const pending_t *p = &c->pending[0];
            return set_err(c, -ETIMEDOUT, "no reply from %s for %.0f s (%zu requests pending)",
                           c->endpoints[p->shard], c->timeout_s, c->n_pending);
        }
        int n = zmq_poll(items, (int)c->n, (long)(wait * 1000) + 1);
        if (n < 0) {
            if (zmq_errno() == EINTR)
                continue;
            return set_err(c, -zmq_errno(), "poll: %s", zmq_strerror(zmq_errno()));
        }
        for (uint32_t s = 0; s < c->n; s++)
            if (items[s].revents & ZMQ_POLLIN) {
                recv_one(c, s);
                deadline = mlt_time_mono() + c->timeout_s;
            }
    }
    int rc = c->first_err;
    c->first_err = 0;
    return rc;
}

int mlt_sync(mlt_client_t *c)
{
    int rc = wait_for(c, -1);
    /* acknowledged pushes were received whole; ZeroMQ lets go of the frames right after */
    for (int spin = 0; atomic_load(&c->push_frames) > 0; spin++) {
        struct timespec ts = {0, spin < 100 ? 10000 : 1000000};
        nanosleep(&ts, NULL);
        if (spin > 100 + (int)(c->timeout_s * 1000))
            return set_err(c, -ETIMEDOUT, "push buffers still held by the socket after %.0f s",
                           c->timeout_s);
    }
    return rc;
}

int mlt_client__send(mlt_client_t *c, uint32_t s, mlt_header_t *h)
{
    int rc = mlt_wire_send(c->socks[s], h, 0);
    if (rc < 0) {
        c->n_pending--; /* it was the last one added */
        return set_err(c, rc, "%s: send: %s", c->endpoints[s], zmq_strerror(-rc));
    }
    return 0;
}

/* ---- connect -------------------------------------------------------------- */

mlt_client_t *mlt_client_new(const char *const *endpoints, uint32_t n, uint32_t worker, char *err,
                             size_t errlen)
{
    if (n == 0 || n > MLT_MAX_SERVERS || worker >= MLT_MAX_WORKERS) {
        if (err)
            snprintf(err, errlen, "bad arguments: %u servers, worker %u", n, worker);
        errno = EINVAL;
        return NULL;
    }
    mlt_client_t *c = mlt_calloc(1, sizeof *c);
    c->n = n;
    c->worker = worker;
    c->timeout_s = 120;
    c->ctx = zmq_ctx_new();
    c->socks = mlt_calloc(n, sizeof *c->socks);
    c->endpoints = mlt_calloc(n, sizeof *c->endpoints);
    c->shm_handle = mlt_calloc(n, sizeof *c->shm_handle);
    c->shm_ok = mlt_calloc(n, sizeof *c->shm_ok);
    const char *shm_env = getenv("MLT_SHM");
    c->shm_off = shm_env && strcmp(shm_env, "0") == 0;
    int zero = 0;
    int64_t maxmsg = MLT_MAX_SOCKET_MSG_BYTES;
    for (uint32_t s = 0; s < n; s++) {
        c->endpoints[s] = mlt_strdup(endpoints[s]);
        c->socks[s] = zmq_socket(c->ctx, ZMQ_DEALER);
        zmq_setsockopt(c->socks[s], ZMQ_LINGER, &zero, sizeof zero);
        zmq_setsockopt(c->socks[s], ZMQ_SNDHWM, &zero, sizeof zero);
        zmq_setsockopt(c->socks[s], ZMQ_RCVHWM, &zero, sizeof zero);
        zmq_setsockopt(c->socks[s], ZMQ_MAXMSGSIZE, &maxmsg, sizeof maxmsg);
        if (zmq_connect(c->socks[s], endpoints[s]) < 0) {
            set_err(c, -zmq_errno(), "cannot connect to %s: %s", endpoints[s],
                    zmq_strerror(zmq_errno()));
            goto fail;
        }
    }
    c->timeout_s = 10; /* a daemon that does not answer hello is not there */
    for (uint32_t s = 0; s < n; s++) {
        mlt_header_t h;
        pending_t *p = add_pending(c, s, P_HELLO);
        header_for(c, &h, MLT__MSG_TYPE__MSG_HELLO, p);
        if (send_simple(c, s, &h) < 0)
            goto fail;
    }
    int rc = mlt_sync(c);
    c->timeout_s = 120;
    if (rc < 0) {
        if (rc == -ETIMEDOUT)
            set_err(c, rc, "no answer from %s within 10 s: is mltunerd running there?",
                    c->endpoints[c->pending[0].shard]);
        goto fail;
    }
    return c;
fail:
    if (err)
        snprintf(err, errlen, "%s", c->err);
    mlt_client_destroy(&c);
    errno = ECONNREFUSED;
    return NULL;
}

static void prefetch_drop(mlt_client_t *c, uint32_t branch, bool all);

static void cache_clear(mlt_client_t *c, cache_t *ca)
{
    if (ca->msgs) {
        for (uint32_t i = 0; i < c->n_parts; i++)
            zmq_msg_close(&ca->msgs[i]);
        mlt_free(ca->msgs);
    }
    memset(ca, 0, sizeof *ca);
}

void mlt_client_destroy(mlt_client_t **cp)
{
    if (!cp || !*cp)
        return;
    mlt_client_t *c = *cp;
    /* requests still queued (asynchronous clocks) are delivered first: the
     * sockets close with linger 0, which would drop them. Prefetches are not
     * waited for: one may be parked at a shard until clocks that never come. */
    if (c->socks)
        prefetch_drop(c, 0, true);
    for (size_t i = 0; i < c->n_pending;)
        if (c->pending[i].kind == P_PREFETCH)
            c->pending[i] = c->pending[--c->n_pending];
        else
            i++;
    if (c->n_pending && c->socks) {
        double saved = c->timeout_s;
        c->timeout_s = saved < 10 ? saved : 10;
        mlt_sync(c);
        c->timeout_s = saved;
    }
    if (c->socks)
        mlt_client__shm_teardown(c);
    for (int i = 0; i < MAX_CACHES; i++)
        cache_clear(c, &c->caches[i]);
    for (uint32_t s = 0; s < c->n; s++) {
        if (c->socks[s])
            zmq_close(c->socks[s]);
        mlt_free(c->endpoints[s]);
    }
    zmq_ctx_term(c->ctx);
    mlt_free(c->socks);
    mlt_free(c->endpoints);
    mlt_free(c->pending);
    mlt_free(c->tables);
    mlt_free(c->parts);
    mlt_free(c->held_dst);
    mlt_free(c->shm_handle);
    mlt_free(c->shm_ok);
    mlt_free(c);
    *cp = NULL;
}

/* ---- job and branches ----------------------------------------------------- */

int mlt_client_register(mlt_client_t *c, const mlt_job_def_t *job)
{
    int rule = mlt_rule_parse(job->rule ? job->rule : "sgd");
    if (rule < 0)
        return set_err(c, -EINVAL, "unknown update rule '%s'", job->rule);
    if (job->n_tables == 0 || job->n_tables > MLT_MAX_TABLES)
        return set_err(c, -EINVAL, "a job needs 1..%u tables, got %u", MLT_MAX_TABLES,
                       job->n_tables);
    Mlt__JobSpec js;
    mlt__job_spec__init(&js);
    js.name = (char *)job->name;
    js.n_workers = job->n_workers;
    js.rule = (Mlt__Rule)rule;
    Mlt__TableSpec *ts = mlt_calloc(job->n_tables, sizeof *ts);
    Mlt__TableSpec **tp = mlt_calloc(job->n_tables, sizeof *tp);
    for (uint32_t i = 0; i < job->n_tables; i++) {
        mlt__table_spec__init(&ts[i]);
        ts[i].name = (char *)job->tables[i].name;
        ts[i].size = job->tables[i].size;
        tp[i] = &ts[i];
    }
    js.n_tables = job->n_tables;
    js.tables = tp;
    char err[256];
    int rc = mlt_wire_check_job(&js, err, sizeof err);
    if (rc) {
        set_err(c, rc, "%s", err);
        goto out;
    }
    for (uint32_t s = 0; s < c->n; s++) {
        mlt_header_t h;
        pending_t *p = add_pending(c, s, P_ACK);
        header_for(c, &h, MLT__MSG_TYPE__MSG_REGISTER, p);
        h.job = &js;
        if ((rc = send_simple(c, s, &h)) < 0)
            goto out;
    }
    if ((rc = mlt_sync(c)) < 0)
        goto out;
    /* the layout, as every shard computes it */
    mlt_client__shm_teardown(c);
    prefetch_drop(c, 0, true);
    for (int i = 0; i < MAX_CACHES; i++)
        cache_clear(c, &c->caches[i]);
    mlt_free(c->tables);
    mlt_free(c->parts);
    mlt_free(c->held_dst);
    c->held_dst = NULL;
    c->held_ca = NULL;
    c->tables = mlt_calloc(job->n_tables, sizeof *c->tables);
    c->n_tables = job->n_tables;
    uint64_t g = 0;
    for (uint32_t i = 0; i < job->n_tables; i++) {
        c->tables[i].size = job->tables[i].size;
        c->tables[i].gfirst = g;
        g += mlt_layout_chunks(job->tables[i].size, c->chunk_floats);
    }
    c->n_chunks = g;
    /* beyond the last-level cache a copy that fills it only evicts */
    c->stream_copy = (uint64_t)g * c->chunk_floats * sizeof(float) > STREAM_COPY_BYTES;
#if defined(__x86_64__)
    c->stream_copy = c->stream_copy && __builtin_cpu_supports("avx512f");
#endif
    /* Each shard's piece of each table, cut into messages of at most
     * PIECE_BYTES: the daemon checks and applies a push piece while it is still
     * in cache, and the client copies pull pieces as they arrive. */
    uint32_t piece = PIECE_BYTES / (c->chunk_floats * (uint32_t)sizeof(float));
    if (piece == 0)
        piece = 1;
    size_t cap = (size_t)c->n * job->n_tables + g / piece + 1;
    c->parts = mlt_calloc(cap, sizeof *c->parts);
    c->n_parts = 0;
    for (uint32_t s = 0; s < c->n; s++) {
        uint64_t lo, hi;
        mlt_layout_shard_range(g, c->n, s, &lo, &hi);
        for (uint32_t t = 0; t < job->n_tables; t++) {
            uint64_t first, count;
            mlt_layout_table_part(c->tables[t].gfirst,
                                  mlt_layout_chunks(c->tables[t].size, c->chunk_floats), lo, hi,
                                  &first, &count);
            for (uint64_t k = 0; k < count; k += piece) {
                uint64_t n = count - k < piece ? count - k : piece;
                c->parts[c->n_parts++] = (part_t){s, t, (uint32_t)(first + k), (uint32_t)n};
            }
        }
    }
    mlt_client__shm_setup(c);
out:
    mlt_free(ts);
    mlt_free(tp);
    return rc;
}

uint32_t mlt_client_n_tables(const mlt_client_t *c)
{
    return c->n_tables;
}

uint64_t mlt_client_table_size(const mlt_client_t *c, uint32_t table)
{
    return table < c->n_tables ? c->tables[table].size : 0;
}

static Mlt__Tunables *to_wire(const mlt_tunables_def_t *t, Mlt__Tunables *w)
{
    if (!t)
        return NULL;
    mlt__tunables__init(w);
    w->has_lr = !isnan(t->lr);
    w->lr = t->lr;
    w->has_momentum = !isnan(t->momentum);
    w->momentum = t->momentum;
    w->has_weight_decay = !isnan(t->weight_decay);
    w->weight_decay = t->weight_decay;
    w->has_beta1 = !isnan(t->beta1);
    w->beta1 = t->beta1;
    w->has_beta2 = !isnan(t->beta2);
    w->beta2 = t->beta2;
    w->has_eps = !isnan(t->eps);
    w->eps = t->eps;
    w->has_staleness = t->staleness >= 0;
    w->staleness = t->staleness >= 0 ? (uint32_t)t->staleness : 0;
    return w;
}

static cache_t *cache_find(mlt_client_t *c, uint32_t branch)
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

/* Forgets the prefetches of `branch` (of every branch if all): replies still
 * to come are dropped on arrival, the copies freed. */
static void prefetch_drop(mlt_client_t *c, uint32_t branch, bool all)
{
    for (int i = 0; i < MAX_CACHES; i++) {
        cache_t *ca = &c->caches[i];
        if (!ca->msgs || !ca->prefetch || (!all && ca->branch != branch))
            continue;
        for (size_t k = 0; k < c->n_pending; k++)
            if (c->pending[k].cache == ca)
                c->pending[k].cache = NULL;
        cache_clear(c, ca);
    }
}

/* Sends one control request to every shard and waits for all of them. */
static int control_all(mlt_client_t *c, Mlt__MsgType type, uint32_t branch, int64_t parent,
                       int kind, const mlt_tunables_def_t *t)
{
    Mlt__Tunables wt;
    Mlt__Tunables *tw = to_wire(t, &wt);
    char err[256];
    if (tw && mlt_wire_check_tunables(tw, err, sizeof err) < 0)
        return set_err(c, -EINVAL, "%s", err);
    for (uint32_t s = 0; s < c->n; s++) {
        mlt_header_t h;
        pending_t *p = add_pending(c, s, P_ACK);
        header_for(c, &h, type, p);
        h.has_branch = 1;
        h.branch = branch;
        h.has_parent = parent >= 0;
        h.parent = parent >= 0 ? (uint32_t)parent : 0;
        h.has_kind = kind >= 0;
        h.kind = kind >= 0 ? (Mlt__BranchKind)kind : 0;
        h.tunables = tw;
        int rc = send_simple(c, s, &h);
        if (rc < 0)
            return rc;
    }
    return mlt_sync(c);
}

int mlt_branch_create(mlt_client_t *c, uint32_t id, int kind, const mlt_tunables_def_t *t)
{
    return control_all(c, MLT__MSG_TYPE__MSG_BRANCH_CREATE, id, -1, kind, t);
}

int mlt_branch_fork(mlt_client_t *c, uint32_t child, uint32_t parent, int kind,
                    const mlt_tunables_def_t *t)
{
    return control_all(c, MLT__MSG_TYPE__MSG_FORK, child, parent, kind, t);
}

int mlt_branch_free(mlt_client_t *c, uint32_t id)
{
    prefetch_drop(c, id, false);
    cache_t *ca = cache_find(c, id);
    if (ca)
        cache_clear(c, ca);
    return control_all(c, MLT__MSG_TYPE__MSG_FREE, id, -1, -1, NULL);
}

int mlt_branch_set_tunables(mlt_client_t *c, uint32_t id, const mlt_tunables_def_t *t)
{
    cache_t *ca = cache_find(c, id);
    if (ca && t && t->staleness >= 0) {
        ca->valid = false; /* cached staleness is stale */
        prefetch_drop(c, id, false);
    }
    return control_all(c, MLT__MSG_TYPE__MSG_SET_TUNABLES, id, -1, -1, t);
}

int mlt_client_job_end(mlt_client_t *c)
{
    prefetch_drop(c, 0, true);
    for (int i = 0; i < MAX_CACHES; i++)
        cache_clear(c, &c->caches[i]);
    for (uint32_t s = 0; s < c->n; s++) {
        mlt_header_t h;
        pending_t *p = add_pending(c, s, P_ACK);
        header_for(c, &h, MLT__MSG_TYPE__MSG_JOB_END, p);
        int rc = send_simple(c, s, &h);
        if (rc < 0)
            return rc;
    }
    return mlt_sync(c);
}

/* ---- data ------------------------------------------------------------------ */

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

/* Sends the parts of `table` with a payload from src, zero-copy: from src
 * itself (the caller keeps it unchanged until acknowledged), or from a staged
 * copy when `stage` (the caller may reuse src at once). */
static int send_table(mlt_client_t *c, Mlt__MsgType type, uint32_t branch, uint32_t table,
                      const float *src, bool stage)
{
    if (table >= c->n_tables)
        return set_err(c, -EINVAL, "table %u: the job has %u tables", table, c->n_tables);
    const table_t *t = &c->tables[table];
    int rc = 0, shm_stage = -1; /* the stage region of the shm parts, once copied */
    stage_t *st = NULL;
    if (stage) {
        st = mlt_try_malloc(sizeof *st + t->size * sizeof(float));
        if (!st)
            return set_err(c, -ENOMEM, "out of memory staging a push of table %u", table);
        atomic_init(&st->refs, 1); /* ours, dropped at the end */
        memcpy(st->data, src, t->size * sizeof(float));
        src = st->data;
    }
    for (uint32_t i = 0; i < c->n_parts && !rc; i++) {
        const part_t *pt = &c->parts[i];
        if (pt->table != table)
            continue;
        if (c->shm_ok[pt->shard] && shm_stage < 0) {
            uint32_t r = mlt_client__stage_pick(c, table);
            if ((rc = mlt_client__stage_wait(c, r, table)) < 0)
                break;
            memcpy(c->shm_base + shm_region_off(c, MAX_CACHES + r, table), src,
                   t->size * sizeof(float));
            shm_stage = (int)r;
        }
        mlt_header_t h;
        pending_t *p = add_pending(c, pt->shard, P_ACK);
        header_for(c, &h, type, p);
        h.has_branch = h.has_table = h.has_chunk_first = h.has_chunk_count = h.has_packed = 1;
        h.branch = branch;
        h.table = table;
        h.chunk_first = pt->first;
        h.chunk_count = pt->count;
        h.packed = 1;
        uint64_t off, len = part_span(c, pt, &off);
        if (c->shm_ok[pt->shard]) {
            h.has_shm_handle = h.has_shm_token = h.has_shm_offset = 1;
            h.shm_handle = c->shm_handle[pt->shard];
            h.shm_token = c->shm_token;
            h.shm_offset = shm_region_off(c, MAX_CACHES + (uint32_t)shm_stage, table) +
                           off * sizeof(float);
            p->part = i;
            p->stage = shm_stage;
            if ((rc = send_simple(c, pt->shard, &h)) < 0)
                break;
            c->stage_busy[(uint32_t)shm_stage * c->n_tables + table]++;
            continue;
        }
        void *sock = c->socks[pt->shard];
        rc = mlt_wire_send(sock, &h, ZMQ_SNDMORE);
        if (rc < 0) {
            set_err(c, rc, "%s: send: %s", c->endpoints[pt->shard], zmq_strerror(-rc));
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
            rc = set_err(c, -zmq_errno(), "%s: send: %s", c->endpoints[pt->shard],
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
    cache_t *ca = cache_find(c, branch);
    if (ca)
        ca->valid = false;
    prefetch_drop(c, branch, false);
    int rc = send_table(c, MLT__MSG_TYPE__MSG_WRITE, branch, table, values, false);
    int rc2 = mlt_sync(c);
    return rc ? rc : rc2;
}

/* Branches whose staleness (as the shards last said) is above 0 push from a
 * staged copy and clock without waiting: a worker allowed to read stale
 * parameters need not wait for its own updates to be acknowledged. */
static bool async_branch(mlt_client_t *c, uint32_t branch)
{
    cache_t *ca = cache_find(c, branch);
    return ca && ca->valid && ca->staleness > 0;
}

int mlt_push(mlt_client_t *c, uint32_t branch, uint32_t table, const float *grad)
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
            recv_one(c, s);
        }
    }
}

int mlt_clock(mlt_client_t *c, uint32_t branch, int64_t clock)
{
    bool async = async_branch(c, branch);
    for (uint32_t s = 0; s < c->n; s++) {
        mlt_header_t h;
        pending_t *p = add_pending(c, s, P_ACK);
        header_for(c, &h, MLT__MSG_TYPE__MSG_CLOCK, p);
        h.has_branch = h.has_clock = 1;
        h.branch = branch;
        h.clock = clock;
        int rc = send_simple(c, s, &h);
        if (rc < 0)
            return rc;
    }
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
        if (x != keep && !x->prefetch && (!ca || x->used < ca->used))
            ca = x;
    }
    if (!ca) /* every other slot a prefetch: forget them */
        for (int i = 0; i < MAX_CACHES && !ca; i++)
            if (&c->caches[i] != keep) {
                prefetch_drop(c, c->caches[i].branch, false);
                ca = &c->caches[i];
            }
    cache_clear(c, ca);
    ca->branch = branch;
    ca->msgs = mlt_calloc(c->n_parts ? c->n_parts : 1, sizeof *ca->msgs);
    for (uint32_t i = 0; i < c->n_parts; i++)
        zmq_msg_init(&ca->msgs[i]);
    return ca;
}

static cache_t *cache_for(mlt_client_t *c, uint32_t branch)
{
    cache_t *ca = cache_find(c, branch);
    if (!ca)
        ca = cache_slot(c, branch, NULL);
    ca->used = ++c->stamp;
    return ca;
}

/* Sends the pull requests of every part of the job for `clock` into cache
 * ca (kind P_PULL with the caller's tables dst, or P_PREFETCH). */
static int send_pulls(mlt_client_t *c, cache_t *ca, uint32_t branch, int64_t clock,
                      enum pend_kind kind, float *const *dst)
{
    ca->valid = ca->failed = false;
    ca->min_clock = INT64_MAX;
    ca->gen = ++c->gen_seq;
    for (uint32_t i = 0; i < c->n_parts; i++) {
        const part_t *pt = &c->parts[i];
        mlt_header_t h;
        pending_t *p = add_pending(c, pt->shard, kind);
        p->part = i;
        p->dst = dst ? dst[pt->table] : NULL;
        p->cache = ca;
        header_for(c, &h, MLT__MSG_TYPE__MSG_PULL, p);
        h.has_branch = h.has_clock = h.has_table = h.has_chunk_first = h.has_chunk_count = 1;
        h.has_packed = h.packed = 1;
        h.branch = branch;
        h.clock = clock;
        h.table = pt->table;
        h.chunk_first = pt->first;
        h.chunk_count = pt->count;
        if (c->shm_ok[pt->shard]) {
            uint64_t off;
            part_span(c, pt, &off);
            h.has_shm_handle = h.has_shm_token = h.has_shm_offset = 1;
            h.shm_handle = c->shm_handle[pt->shard];
            h.shm_token = c->shm_token;
            h.shm_offset = shm_region_off(c, (uint32_t)(ca - c->caches), pt->table) +
                           off * sizeof(float);
        }
        int rc = send_simple(c, pt->shard, &h);
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
    if (send_pulls(c, pf, branch, clock + 1, P_PREFETCH, NULL) < 0)
        prefetch_drop(c, branch, false); /* the pull that needs it asks again */
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
        uint64_t off;
        part_span(c, pt, &off);
        if (c->shm_ok[pt->shard]) {
            uint64_t len = part_span(c, pt, &off);
            copy_part(c, dst[pt->table] + off,
                      c->shm_base + shm_region_off(c, (uint32_t)(ca - c->caches), pt->table) +
                          off * sizeof(float),
                      len * sizeof(float));
            continue;
        }
        zmq_msg_t *m = (zmq_msg_t *)&ca->msgs[i];
        copy_part(c, dst[pt->table] + off, zmq_msg_data(m), zmq_msg_size(m));
    }
}

/* ca's copy is good for a pull at `clock`. */
static bool fresh(const cache_t *ca, int64_t clock)
{
    return ca->valid && ca->min_clock >= clock - (int64_t)ca->staleness;
}

int mlt_pull(mlt_client_t *c, uint32_t branch, int64_t clock, float *const *dst)
{
    if (!c->n_tables)
        return set_err(c, -EINVAL, "pull before mlt_client_register");
    cache_t *ca = cache_for(c, branch);
    if (!fresh(ca, clock)) {
        cache_t *pf = prefetch_find(c, branch);
        if (pf != NULL) { /* the copy asked for ahead: wait for it, take it if good */
            int rc = wait_for(c, P_PREFETCH);
            if (rc < 0)
                return rc; /* an error of an earlier asynchronous request */
            pf->valid = !pf->failed && pf->min_clock != INT64_MAX;
            pf->prefetch = false;
            if (fresh(pf, clock)) {
                c->prefetch_hits++;
                pf->used = ca->used;
                cache_clear(c, ca);
                ca = pf;
            } else {
                cache_clear(c, pf);
            }
        }
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
    int rc = send_pulls(c, ca, branch, clock, P_PULL, dst);
    if (rc < 0)
        return rc;
    rc = wait_for(c, P_PULL);
    ca->valid = rc == 0 && !ca->failed;
    if (ca->valid) {
        hold(c, ca, dst);
        prefetch(c, ca, branch, clock);
    }
    return rc;
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

int mlt_client_status(mlt_client_t *c, uint32_t server, mlt_server_status_t *out)
{
    if (server >= c->n)
        return set_err(c, -EINVAL, "server %u: the client knows %u", server, c->n);
    memset(out, 0, sizeof *out);
    mlt_header_t h;
    pending_t *p = add_pending(c, server, P_STATUS);
    p->st = out;
    header_for(c, &h, MLT__MSG_TYPE__MSG_STATUS, p);
    int rc = send_simple(c, server, &h);
    if (rc < 0)
        return rc;
    return mlt_sync(c);
}

void mlt_server_status_free(mlt_server_status_t *s)
{
    if (s) {
        mlt_free(s->branches);
        s->branches = NULL;
        s->n_branches = 0;
    }
}
