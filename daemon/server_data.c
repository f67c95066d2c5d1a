/* server_data.c - the daemon's data requests: pulls (answered at once or
 * parked until min_clock allows), pull replies, pushes and writes; see
 * server.h and server_int.h.
 *
 * A pull reads what mlt_store_chunk_get() says a branch reads (the
 * parameters, or the average x for a test or eval branch under a rule that
 * keeps one), whichever way the reply travels.
 *
 * Pull replies send the chunks' own memory zero-copy: each frame holds a
 * reference on its chunk, released from ZeroMQ's I/O thread, and the store
 * copies a chunk before writing it while any such reference is out. A packed
 * pull (Header.packed) is answered with one frame, the chunks copied into it
 * back to back: one copy here against a frame per chunk, each of which costs
 * both sides' I/O threads a round of their own (bench/ps measures both).
 *
 * A client on this host may instead name a range of its shared-memory segment
 * (shmseg.h): its pushes are read from there into scratch, and its pull
 * replies are written there, so the data crosses no socket. */
#include "daemon/server.h"

#include <errno.h>
#include <stdio.h>
#include <string.h>
#include <zmq.h>

#include "common/alloc.h"
#include "common/errtext.h"
#include "common/log.h"
#include "common/timeutil.h"
#include "daemon/server_int.h"
#include "daemon/shmseg.h"
#include "daemon/ssp.h"
#include "daemon/store.h"
#include "proto/layout.h"
#include "proto/wire.h"

/* ---- pull ------------------------------------------------------------------- */

static void free_packed(void *data, void *hint)
{
    (void)hint;
    mlt_free(data);
}

/* Bytes of chunks [first, first + count) of table; the range was checked
 * (count >= 1). Every chunk but a table's last is full. */
static size_t range_bytes(const mlt_server_t *s, uint32_t table, uint32_t first, uint32_t count)
{
    return ((size_t)(count - 1) * mlt_store_chunk_floats(s->store) +
            mlt_store_chunk_len(s->store, table, first + count - 1)) *
           sizeof(float);
}

/* Where a pull's reply data goes in a client's segment. */
typedef struct shm_dst {
    uint32_t handle;
    uint64_t token, offset;
} shm_dst_t;

/* Writes chunks [first, first + count) of table into the client's segment; 0,
 * or -errno after an error reply. */
static int write_shm(mlt_server_t *s, const void *id, size_t id_len, uint64_t request_id,
                     mlt_branch_t *b, uint32_t table, uint32_t first, uint32_t count,
                     const shm_dst_t *dst)
{
    char err[256];
    size_t bytes = range_bytes(s, table, first, count);
    int fd = mlt_shmseg_range(s->shm, dst->handle, dst->token, dst->offset, bytes, err, sizeof err);
    char *map = fd < 0 ? NULL : mlt_shmseg_map(s->shm, dst->handle, dst->token);
    if (map) { /* a sealed segment: straight into it */
        char *at = map + dst->offset;
        for (uint32_t i = 0; i < count; i++) {
            const float *data;
            mlt_chunk_t *c = mlt_store_chunk_get(s->store, b, table, first + i, &data);
            size_t n = (size_t)mlt_store_chunk_len(s->store, table, first + i) * sizeof(float);
            memcpy(at, data, n);
            mlt_chunk_release(NULL, c);
            at += n;
        }
        s->bytes_out += bytes;
        return 0;
    }
    struct iovec *iov = fd < 0 ? NULL : mlt_try_malloc(count * sizeof *iov);
    mlt_chunk_t **held = iov ? mlt_try_malloc(count * sizeof *held) : NULL;
    if (fd >= 0 && !held)
        snprintf(err, sizeof err, "out of memory writing a pull reply"), fd = -ENOMEM;
    for (uint32_t i = 0; held && i < count; i++) {
        const float *data;
        held[i] = mlt_store_chunk_get(s->store, b, table, first + i, &data);
        iov[i].iov_base = (void *)data;
        iov[i].iov_len = (size_t)mlt_store_chunk_len(s->store, table, first + i) * sizeof(float);
    }
    int rc = held ? mlt_shmseg_writev(fd, iov, count, dst->offset) : fd;
    if (held && rc < 0)
        snprintf(err, sizeof err, "writing %zu bytes into shared memory segment %#x: %s", bytes,
                 dst->handle, strerror(-rc));
    for (uint32_t i = 0; held && i < count; i++)
        mlt_chunk_release(NULL, held[i]);
    mlt_free(held);
    mlt_free(iov);
    if (rc < 0) {
        s->n_errors++;
        mlt_server__send_error_to(s, id, id_len, request_id, rc, err);
        return rc;
    }
    s->bytes_out += bytes;
    return 0;
}

/* This shard's chunks of table t: [*first, *first + *count); their bytes (0:
 * none). A job is registered. */
static size_t own_bytes(const mlt_server_t *s, uint32_t t, uint32_t *first, uint32_t *count)
{
    mlt_store_own_range(s->store, t, first, count);
    return *count ? range_bytes(s, t, *first, *count) : 0;
}

/* Bytes of a request for every table of this shard in the shard-major layout
 * (proto/layout.h): each table's group, each starting 64-byte aligned. */
static size_t all_bytes(const mlt_server_t *s)
{
    size_t pos = 0;
    for (uint32_t t = 0; t < mlt_store_n_tables(s->store); t++) {
        uint32_t first, count;
        size_t bytes = own_bytes(s, t, &first, &count);
        if (bytes)
            pos = mlt_layout_group_start(pos) + bytes;
    }
    return pos;
}

/* Writes this shard's chunks of every table into the client's segment, in
 * the shard-major layout from dst's offset (proto/layout.h); 0, or -errno
 * after an error reply. */
static int write_shm_all(mlt_server_t *s, const void *id, size_t id_len, uint64_t request_id,
                         mlt_branch_t *b, const shm_dst_t *dst)
{
    uint64_t pos = 0; /* the layout's rule, as all_bytes follows it */
    for (uint32_t t = 0; t < mlt_store_n_tables(s->store); t++) {
        uint32_t first, count;
        size_t bytes = own_bytes(s, t, &first, &count);
        if (!bytes)
            continue;
        pos = mlt_layout_group_start(pos);
        shm_dst_t d = *dst;
        d.offset += pos;
        int rc = write_shm(s, id, id_len, request_id, b, t, first, count, &d);
        if (rc < 0)
            return rc;
        pos += bytes;
    }
    return 0;
}

/* Sends the chunks zero-copy, one frame each, or packed into one frame, or
 * writes them into the client's segment (shm) and sends the header alone. The
 * branch exists, the range was checked, and a packed one fits a frame. The
 * bytes sent through the socket count as the client's unsent bytes
 * (clientq.h) until its last frame is written. */
static void send_pull_reply(mlt_server_t *s, const void *id, size_t id_len, uint64_t request_id,
                            mlt_branch_t *b, int64_t clock, uint32_t table, uint32_t first,
                            uint32_t count, bool packed, const shm_dst_t *shm, bool all)
{
    if (all ? write_shm_all(s, id, id_len, request_id, b, shm) < 0
            : shm && write_shm(s, id, id_len, request_id, b, table, first, count, shm) < 0)
        return;
    mlt_server__stamp(s, MLT_TR_DONE);
    mlt_clientq_entry_t *cq = shm ? NULL : mlt_clientq_get(s->clients, id, id_len);
    if (!shm && !cq) {
        s->n_errors++;
        mlt_server__send_error_to(
            s, id, id_len, request_id, -EBUSY,
            "the shard has replies outstanding to too many clients; try again");
        return;
    }
    char *buf = NULL;
    if (packed && !shm) {
        buf = mlt_try_malloc(range_bytes(s, table, first, count));
        if (buf == NULL) {
            mlt_server__send_error_to(s, id, id_len, request_id, -ENOMEM,
                                      "out of memory packing a pull reply");
            return;
        }
    }
    mlt_header_t r;
    mlt_wire_init(&r, MLT__MSG_TYPE__MSG_PULL_REPLY);
    r.has_request_id = r.has_branch = r.has_clock = r.has_min_clock = 1;
    r.has_table = r.has_chunk_first = r.has_chunk_count = !all; /* PULL_ALL: every table */
    r.request_id = request_id;
    r.branch = mlt_store_branch_id(b);
    r.clock = clock;
    r.table = table;
    r.chunk_first = first;
    r.chunk_count = count;
    r.min_clock = mlt_store_branch_min_clock(b);
    Mlt__Tunables tu; /* the staleness lets the client's cache serve later clocks */
    mlt__tunables__init(&tu);
    tu.has_staleness = 1;
    tu.staleness = mlt_store_branch_tunables(b)->staleness;
    r.tunables = &tu;
    r.has_packed = r.packed = packed || shm;
    r.has_shm_offset = shm != NULL;
    r.shm_offset = shm ? shm->offset : 0;
    r.has_acks = s->ack_with_pull != 0;
    r.acks = s->ack_with_pull;
    s->ack_with_pull = 0;
    mlt_server__trace_reply(s, &r);
    if (mlt_server__send_id(s, id, id_len) < 0) {
        mlt_free(buf);
        return;
    }
    s->n_pulls++;
    if (shm) {
        mlt_wire_send(s->router, &r, 0);
        return;
    }
    mlt_wire_send(s->router, &r, ZMQ_SNDMORE);
    const size_t total = range_bytes(s, table, first, count);
    size_t off = 0;
    for (uint32_t i = 0; i < count; i++) {
        uint32_t k = first + i;
        const float *data;
        mlt_chunk_t *c = mlt_store_chunk_get(s->store, b, table, k, &data);
        size_t bytes = (size_t)mlt_store_chunk_len(s->store, table, k) * sizeof(float);
        s->bytes_out += bytes;
        if (packed) {
            memcpy(buf + off, data, bytes);
            mlt_chunk_release(NULL, c);
            off += bytes;
            continue;
        }
        /* the last frame carries the count of the whole reply: frames are
         * written in order, so when it is released every one before it is */
        void *held = i + 1 == count ? mlt_clientq_hold(cq, total, mlt_chunk_release, c) : NULL;
        zmq_msg_t m;
        if (held)
            zmq_msg_init_data(&m, (void *)data, bytes, mlt_clientq_sent, held);
        else
            zmq_msg_init_data(&m, (void *)data, bytes, mlt_chunk_release, c);
        if (zmq_msg_send(&m, s->router, i + 1 < count ? ZMQ_SNDMORE : 0) < 0)
            zmq_msg_close(&m); /* releases the chunk */
    }
    if (packed) {
        void *held = mlt_clientq_hold(cq, off, free_packed, NULL);
        zmq_msg_t m;
        if (held)
            zmq_msg_init_data(&m, buf, off, mlt_clientq_sent, held);
        else
            zmq_msg_init_data(&m, buf, off, free_packed, NULL);
        if (zmq_msg_send(&m, s->router, 0) < 0)
            zmq_msg_close(&m);
    }
}

/* The client of a parked pull has one pull fewer waiting. */
static void unpark(mlt_server_t *s, const mlt_parked_t *p)
{
    mlt_clientq_entry_t *cq = mlt_clientq_get(s->clients, p->id, p->id_len);
    if (cq)
        mlt_clientq_park(cq, -1);
}

void mlt_server__on_released(void *arg, const mlt_parked_t *p)
{
    mlt_server_t *s = arg;
    unpark(s, p);
    mlt_branch_t *b = mlt_store_branch(s->store, p->branch);
    if (!b) {
        mlt_server__send_error_to(s, p->id, p->id_len, p->request_id, -ENOENT,
                                  "branch freed while pull waited");
        return;
    }
    log_debug("pull of branch %u clock %lld released after %.3f s", p->branch, (long long)p->clock,
              mlt_time_mono() - p->since);
    shm_dst_t dst = {p->shm_handle, p->shm_token, p->shm_offset};
    /* its own stamps, not those of the request that released it */
    const bool trace = s->trace;
    uint64_t tr[MLT_TRACE_STAMPS];
    memcpy(tr, s->tr, sizeof tr);
    s->trace = p->trace;
    memset(s->tr, 0, sizeof s->tr);
    memcpy(s->tr, p->tr, sizeof p->tr);
    mlt_server__stamp(s, MLT_TR_CHECKED);
    send_pull_reply(s, p->id, p->id_len, p->request_id, b, p->clock, p->table, p->first, p->count,
                    p->packed, p->shm ? &dst : NULL, p->all);
    s->trace = trace;
    memcpy(s->tr, tr, sizeof tr);
}

void mlt_server__on_expired(void *arg, const mlt_parked_t *p)
{
    mlt_server_t *s = arg;
    unpark(s, p);
    mlt_branch_t *b = mlt_store_branch(s->store, p->branch);
    char text[MLT_MAX_ERROR_LEN];
    if (b) {
        const mlt_tunables_t *t = mlt_store_branch_tunables(b);
        snprintf(text, sizeof text,
                 "pull of branch %u at clock %lld waited %.1f s for min_clock >= %lld "
                 "(staleness %u); min_clock is %lld, slowest worker %u",
                 p->branch, (long long)p->clock, mlt_time_mono() - p->since,
                 (long long)(p->clock - t->staleness), t->staleness,
                 (long long)mlt_store_branch_min_clock(b), mlt_store_branch_slowest(b));
    } else {
        snprintf(text, sizeof text, "pull of branch %u timed out", p->branch);
    }
    log_warn("worker %u: %s", p->worker, text);
    mlt_server__send_error_to(s, p->id, p->id_len, p->request_id, -ETIMEDOUT, text);
}

void mlt_server__on_dropped(void *arg, const mlt_parked_t *p)
{
    unpark(arg, p);
    mlt_server__send_error_to(arg, p->id, p->id_len, p->request_id, -ENOENT,
                              "branch freed while pull waited");
}

int mlt_server__handle_pull(mlt_server_t *s, req_t *rq)
{
    mlt_header_t *h = rq->h;
    char err[256];
    mlt_branch_t *b = mlt_server__find_branch(s, rq);
    if (!b)
        return -ENOENT;
    const bool all = h->type == MLT__MSG_TYPE__MSG_PULL_ALL;
    int rc = all ? 0
                 : mlt_store_check_range(s->store, h->table, h->chunk_first, h->chunk_count, err,
                                         sizeof err);
    if (rc)
        return mlt_server__reply_error(s, rq, rc, "%s", err);
    const bool packed = h->has_packed && h->packed;
    const bool shm = h->has_shm_handle;
    const shm_dst_t dst = {h->shm_handle, h->shm_token, h->shm_offset};
    size_t bytes = 0;
    if (all) {
        bytes = all_bytes(s);
        if (bytes == 0)
            return mlt_server__reply_error(s, rq, -ERANGE, "this shard holds no chunks of the job");
    } else {
        bytes = range_bytes(s, h->table, h->chunk_first, h->chunk_count);
    }
    if (shm) { /* checked now for a clear error, and again when the reply is written */
        if (!h->has_shm_token || !h->has_shm_offset)
            return mlt_server__reply_error(s, rq, -EINVAL, "%s with shm_handle lacks shm_offset",
                                           mlt_wire_type_name(h->type));
        rc = mlt_shmseg_range(s->shm, dst.handle, dst.token, dst.offset, bytes, err, sizeof err);
        if (rc < 0)
            return mlt_server__reply_error(s, rq, rc, "%s", err);
    } else if (all) {
        return mlt_server__reply_error(s, rq, -EINVAL,
                                       "PULL_ALL needs shm_handle, shm_token and shm_offset (it "
                                       "is answered in shared memory only)");
    } else if (packed &&
               range_bytes(s, h->table, h->chunk_first, h->chunk_count) > MLT_MAX_CHUNK_BYTES)
        return mlt_server__reply_error(
            s, rq, -EMSGSIZE, "packed pull of %zu bytes, limit %u (one frame)",
            range_bytes(s, h->table, h->chunk_first, h->chunk_count), MLT_MAX_CHUNK_BYTES);
    if (zmq_msg_size(rq->id) > MLT_MAX_CLIENT_ID_BYTES)
        return mlt_server__reply_error(s, rq, -EINVAL, "routing id longer than %u bytes",
                                       MLT_MAX_CLIENT_ID_BYTES);
    /* a client that does not read its replies gets no more of them queued */
    mlt_clientq_entry_t *cq =
        mlt_clientq_get(s->clients, zmq_msg_data(rq->id), zmq_msg_size(rq->id));
    if (!cq)
        return mlt_server__reply_error(
            s, rq, -EBUSY, "%u clients have replies or pulls outstanding, the limit; try again",
            MLT_MAX_CLIENTS);
    const uint64_t unsent = mlt_clientq_unsent(cq);
    const uint64_t limit = mlt_clientq_limit(mlt_store_branch_bytes(s->store));
    if (!shm && unsent > limit)
        return mlt_server__reply_error(
            s, rq, -ENOBUFS,
            "%llu bytes of earlier pull replies to this client are not yet sent "
            "(it is not reading them), limit %llu; read them before pulling more",
            (unsigned long long)unsent, (unsigned long long)limit);
    const mlt_tunables_t *t = mlt_store_branch_tunables(b);
    if (mlt_ssp_ready(mlt_store_branch_min_clock(b), h->clock, t->staleness)) {
        send_pull_reply(s, zmq_msg_data(rq->id), zmq_msg_size(rq->id), h->request_id, b, h->clock,
                        h->table, h->chunk_first, h->chunk_count, packed, shm ? &dst : NULL, all);
        return 0;
    }
    if (mlt_clientq_parked(cq) >= MLT_MAX_PARKED_PER_CLIENT)
        return mlt_server__reply_error(
            s, rq, -EAGAIN,
            "%u pulls of this client already wait for min_clock, the limit per "
            "client; wait for their replies",
            MLT_MAX_PARKED_PER_CLIENT);
    mlt_parked_t p = {
        .id_len = zmq_msg_size(rq->id),
        .request_id = h->request_id,
        .worker = h->worker,
        .branch = h->branch,
        .clock = h->clock,
        .table = h->table,
        .first = h->chunk_first,
        .count = h->chunk_count,
        .packed = packed,
        .shm = shm,
        .all = all,
        .shm_handle = dst.handle,
        .shm_token = dst.token,
        .shm_offset = dst.offset,
        .since = mlt_time_mono(),
        .trace = s->trace,
    };
    if (s->trace) {
        mlt_server__stamp(s, MLT_TR_READ);
        memcpy(p.tr, s->tr, sizeof p.tr);
    }
    p.deadline = p.since + s->pull_timeout_s;
    memcpy(p.id, zmq_msg_data(rq->id), p.id_len);
    if (mlt_ssp_park(s->parked, &p) < 0)
        return mlt_server__reply_error(s, rq, -EAGAIN, "%u pulls already wait; try again",
                                       MLT_MAX_PARKED);
    mlt_clientq_park(cq, +1);
    log_debug("pull of branch %u clock %lld parked: needs min_clock >= %lld, now %lld", h->branch,
              (long long)h->clock, (long long)(h->clock - t->staleness),
              (long long)mlt_store_branch_min_clock(b));
    return 0;
}

/* ---- push / write ----------------------------------------------------------- */

/* A push or write's chunks and where their data is: packed (back to back) at
 * `packed`, or one payload frame each (packed NULL). */
typedef struct payload {
    uint32_t table, first, count;
    const char *packed;
} payload_t;

/* Reads `want` bytes at `offset` of a client's segment: *data points into a
 * sealed segment's mapping, or to scratch, which they are read into (at most
 * MLT_MAX_CHUNK_BYTES). (From a mapping the payload is read twice, checked
 * then applied, while the client could write it in between: a client that
 * does so to its own pushes gets at worst a non-finite step, which marks the
 * branch diverged as any overflow does.) 0, or -errno with the message in err. */
static int read_shm(mlt_server_t *s, uint32_t handle, uint64_t token, uint64_t offset, size_t want,
                    const char **data, char *err, size_t errlen)
{
    if (want > MLT_MAX_CHUNK_BYTES)
        return mlt_errf(-EMSGSIZE, err, errlen, "payload of %zu bytes in shared memory, limit %u",
                        want, MLT_MAX_CHUNK_BYTES);
    int fd = mlt_shmseg_range(s->shm, handle, token, offset, want, err, errlen);
    if (fd < 0)
        return fd;
    const char *map = mlt_shmseg_map(s->shm, handle, token);
    if (map) {
        *data = map + offset;
        s->bytes_in += want;
        return 0;
    }
    *data = (const char *)s->scratch;
    int rc = mlt_shmseg_read(fd, s->scratch, want, offset);
    if (rc < 0)
        return mlt_errf(rc, err, errlen,
                        "reading %zu bytes at %llu of shared memory segment %#x failed (the "
                        "segment shrank?)",
                        want, (unsigned long long)offset, handle);
    s->bytes_in += want;
    return 0;
}

/* Checks the payload of a PUSH or WRITE matches its chunk range: one frame per
 * chunk, each of the chunk's exact size, or packed, one frame of all of them,
 * or in the client's segment. Fills *pl; 0, or -errno after an error reply. */
static int check_payload(mlt_server_t *s, req_t *rq, payload_t *pl)
{
    mlt_header_t *h = rq->h;
    char err[256];
    *pl = (payload_t){h->table, h->chunk_first, h->chunk_count, NULL};
    int rc =
        mlt_store_check_range(s->store, h->table, h->chunk_first, h->chunk_count, err, sizeof err);
    if (rc)
        return mlt_server__reply_error(s, rq, rc, "%s", err);
    size_t want = range_bytes(s, h->table, h->chunk_first, h->chunk_count);
    if (h->has_shm_handle) {
        if (!h->has_shm_token || !h->has_shm_offset)
            return mlt_server__reply_error(s, rq, -EINVAL,
                                           "%s with shm_handle lacks shm_token/shm_offset",
                                           mlt_wire_type_name(h->type));
        if (rq->n_payload)
            return mlt_server__reply_error(
                s, rq, -EINVAL, "%zu payload frames; a payload in shared memory has none",
                rq->n_payload);
        rc = read_shm(s, h->shm_handle, h->shm_token, h->shm_offset, want, &pl->packed, err,
                      sizeof err);
        return rc ? mlt_server__reply_error(s, rq, rc, "%s", err) : 0;
    }
    if (h->has_packed && h->packed) {
        if (rq->n_payload != 1)
            return mlt_server__reply_error(
                s, rq, -EINVAL, "%zu payload frames; a packed payload is one", rq->n_payload);
        if (zmq_msg_size(&rq->payload[0]) != want)
            return mlt_server__reply_error(
                s, rq, -EINVAL, "packed payload is %zu bytes; chunks [%u, %u) of table %u need %zu",
                zmq_msg_size(&rq->payload[0]), h->chunk_first, h->chunk_first + h->chunk_count,
                h->table, want);
        pl->packed = zmq_msg_data(&rq->payload[0]);
        return 0;
    }
    if (rq->n_payload != h->chunk_count)
        return mlt_server__reply_error(s, rq, -EINVAL, "%zu payload frames for %u chunks",
                                       rq->n_payload, h->chunk_count);
    for (uint32_t i = 0; i < h->chunk_count; i++) {
        want = (size_t)mlt_store_chunk_len(s->store, h->table, h->chunk_first + i) * 4;
        size_t got = zmq_msg_size(&rq->payload[i]);
        if (got != want)
            return mlt_server__reply_error(
                s, rq, -EINVAL, "payload frame %u is %zu bytes; chunk %u of table %u needs %zu", i,
                got, h->chunk_first + i, h->table, want);
    }
    return 0;
}

/* The floats of chunk first + i of a checked payload (*n of them), copied to
 * aligned scratch if misaligned. */
static const float *payload_floats(mlt_server_t *s, req_t *rq, const payload_t *pl, uint32_t i,
                                   size_t *n)
{
    *n = mlt_store_chunk_len(s->store, pl->table, pl->first + i);
    const char *p = pl->packed /* every chunk before the table's last is full */
                        ? pl->packed + (size_t)i * mlt_store_chunk_floats(s->store) * sizeof(float)
                        : (const char *)zmq_msg_data(&rq->payload[i]);
    if (((uintptr_t)p & (sizeof(float) - 1)) == 0)
        return (const float *)p;
    memcpy(s->scratch, p, *n * sizeof(float));
    return s->scratch;
}

/* Applies (or writes) a checked payload to branch b: every chunk is checked
 * for non-finite values before any is changed. 0, or -errno with the message
 * in err. */
static int apply_payload(mlt_server_t *s, req_t *rq, mlt_branch_t *b, const payload_t *pl,
                         bool is_write, char *err, size_t errlen)
{
    const uint32_t branch = mlt_store_branch_id(b);
    if (mlt_store_branch_kind(b) == MLT_BRANCH_SNAPSHOT)
        return mlt_errf(-EROFS, err, errlen, "branch %u is a snapshot: it takes no %s", branch,
                        is_write ? "writes" : "pushes");
    mlt_server__stamp(s, MLT_TR_READ);
    for (uint32_t i = 0; i < pl->count; i++) {
        size_t n;
        const float *g = payload_floats(s, rq, pl, i, &n);
        if (!mlt_all_finite(g, n)) {
            if (!is_write)
                mlt_store_branch_set_diverged(b);
            return mlt_errf(-EDOM, err, errlen,
                            "non-finite value in %s to branch %u, table %u chunk %u%s",
                            is_write ? "write" : "gradient", branch, pl->table, pl->first + i,
                            is_write ? "" : "; nothing applied, branch marked diverged");
        }
    }
    mlt_server__stamp(s, MLT_TR_CHECKED);
    for (uint32_t i = 0; i < pl->count; i++) {
        size_t n;
        const float *g = payload_floats(s, rq, pl, i, &n);
        int rc = is_write ? mlt_store_write(s->store, b, pl->table, pl->first + i, g)
                          : mlt_store_apply(s->store, b, pl->table, pl->first + i, g);
        if (rc)
            return mlt_errf(rc, err, errlen,
                            "out of memory copying chunk %u of table %u (chunks before it were "
                            "applied)",
                            pl->first + i, pl->table);
    }
    mlt_server__stamp(s, MLT_TR_DONE);
    if (!is_write)
        s->n_pushes++;
    return 0;
}

int mlt_server__handle_push(mlt_server_t *s, req_t *rq, int is_write)
{
    mlt_branch_t *b = mlt_server__find_branch(s, rq);
    if (!b)
        return -ENOENT;
    payload_t pl;
    int rc = check_payload(s, rq, &pl);
    if (rc)
        return rc;
    char err[256];
    rc = apply_payload(s, rq, b, &pl, is_write, err, sizeof err);
    return rc ? mlt_server__reply_error(s, rq, rc, "%s", err) : mlt_server__reply_ok(s, rq, 0);
}

/* ---- step: the pushes of a clock and the clock, one message ------------------ */

/* The pull a STEP carries: a PULL_ALL at its clock into pull_offset, with
 * request id pull_request_id. When `ack` (the step went well and is not
 * answered yet) and the pull's reply goes out at once, that reply answers the
 * STEP too (Header.acks); else the STEP gets its own OK first. */
static void step_pull(mlt_server_t *s, req_t *rq, bool ack)
{
    mlt_header_t *h = rq->h;
    const uint64_t step_id = h->request_id;
    mlt_branch_t *b = mlt_store_branch(s->store, h->branch);
    const bool now = b && mlt_ssp_ready(mlt_store_branch_min_clock(b), h->clock,
                                        mlt_store_branch_tunables(b)->staleness);
    if (ack && !now)
        mlt_server__reply_ok(s, rq, 0);
    /* the same request read as the PULL_ALL it carries */
    h->type = MLT__MSG_TYPE__MSG_PULL_ALL;
    h->request_id = h->pull_request_id;
    h->shm_offset = h->pull_offset;
    s->ack_with_pull = ack && now ? step_id : 0;
    mlt_server__handle_pull(s, rq);
    if (s->ack_with_pull) { /* the pull was refused: the STEP's OK on its own */
        s->ack_with_pull = 0;
        h->request_id = step_id;
        mlt_server__reply_ok(s, rq, 0);
    }
}

int mlt_server__handle_step(mlt_server_t *s, req_t *rq)
{
    mlt_header_t *h = rq->h;
    char err[256];
    mlt_branch_t *b = mlt_server__find_branch(s, rq);
    if (!b)
        return -ENOENT;
    if (!h->has_shm_offset)
        return mlt_server__reply_error(s, rq, -EINVAL, "STEP lacks shm_offset");
    if (h->has_pull_offset && (!h->has_clock || !h->has_pull_request_id))
        return mlt_server__reply_error(s, rq, -EINVAL,
                                       "STEP with pull_offset lacks clock or pull_request_id");
    const uint32_t n_tables = mlt_store_n_tables(s->store);
    for (size_t i = 0; i < h->n_tables; i++)
        if (h->tables[i] >= n_tables)
            return mlt_server__reply_error(s, rq, -ENOENT, "STEP pushes table %u; the job has %u",
                                           h->tables[i], n_tables);
    size_t total = all_bytes(s);
    int rc = h->n_tables == 0 ? 0
                              : mlt_shmseg_range(s->shm, h->shm_handle, h->shm_token,
                                                 h->shm_offset, total, err, sizeof err);
    if (rc < 0) /* else a descriptor */
        return mlt_server__reply_error(s, rq, rc, "%s", err);
    rc = 0;
    /* every table is tried, as separate PUSHes would be; the first failure is
     * the reply's, and the clock counts regardless */
    int first_rc = 0;
    char first_err[256] = "";
    const uint32_t piece = MLT_MAX_CHUNK_BYTES / (mlt_store_chunk_floats(s->store) * 4);
    uint64_t pos = 0; /* the layout's rule: every table this shard holds a chunk of */
    size_t i = 0;     /* the next listed table (the list is increasing) */
    for (uint32_t t = 0; t < n_tables && i < h->n_tables; t++) {
        uint32_t first, count;
        size_t own = own_bytes(s, t, &first, &count);
        if (own)
            pos = mlt_layout_group_start(pos);
        uint64_t at = h->shm_offset + pos;
        pos += own;
        if (h->tables[i] != t)
            continue;
        i++;
        if (!own)
            continue;
        for (uint32_t k = 0; k < count && rc == 0; k += piece) {
            payload_t pl = {t, first + k, count - k < piece ? count - k : piece, NULL};
            size_t bytes = range_bytes(s, t, pl.first, pl.count);
            rc = read_shm(s, h->shm_handle, h->shm_token, at, bytes, &pl.packed, err, sizeof err);
            if (rc == 0)
                rc = apply_payload(s, rq, b, &pl, false, err, sizeof err);
            at += bytes;
        }
        if (rc && !first_rc) {
            first_rc = rc;
            snprintf(first_err, sizeof first_err, "%s", err);
        }
        rc = 0;
    }
    int64_t before = mlt_store_branch_min_clock(b);
    if (h->has_clock && (rc = mlt_server__count_clock(s, b, h->worker, h->clock, err,
                                                      sizeof err)) < 0 && !first_rc) {
        first_rc = rc;
        snprintf(first_err, sizeof first_err, "%s", err);
    }
    if (first_rc)
        mlt_server__reply_error(s, rq, first_rc, "%s", first_err);
    else if (!h->has_pull_offset)
        mlt_server__reply_ok(s, rq, 0);
    mlt_server__release(s, b, before);
    if (h->has_pull_offset)
        step_pull(s, rq, first_rc == 0);
    return first_rc;
}
