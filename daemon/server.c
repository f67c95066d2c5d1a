/* server.c - see server.h.
 *
 * One request is: [routing id][header][payload frames...]. It is read whole
 * (at most MLT_MAX_FRAMES frames, each at most MLT_MAX_SOCKET_MSG_BYTES), the
 * header is decoded and validated by mlt_wire_decode(), then the handler for
 * its type checks what needs daemon state (job, branch, table, chunk range,
 * payload sizes, finiteness) before touching the store.
 *
 * This file holds the loop, the replies and the control requests; the pull,
 * push and write handlers and the pull replies are in server_data.c. The
 * struct and the request type they share are in server_int.h. */
#include "daemon/server.h"

#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <string.h>
#include <zmq.h>

#include "common/alloc.h"
#include "common/errtext.h"
#include "common/log.h"
#include "common/timeutil.h"
#include "client/kind_wire.h"
#include "daemon/server_int.h"
#include "daemon/shmseg.h"
#include "daemon/ssp.h"
#include "daemon/store.h"
#include "daemon/zap.h"
#include "proto/wire.h"

/* The request id of a header mlt_wire_decode refused, if it parses at all, so
 * the error reply can still be matched by the client. 0 if not. */
static uint64_t peek_request_id(const zmq_msg_t *m)
{
    size_t len = zmq_msg_size((zmq_msg_t *)m);
    if (len == 0 || len > MLT_MAX_HEADER_BYTES)
        return 0;
    mlt_header_t *h = mlt__header__unpack(NULL, len, zmq_msg_data((zmq_msg_t *)m));
    if (!h)
        return 0;
    uint64_t id = h->has_request_id ? h->request_id : 0;
    mlt__header__free_unpacked(h, NULL);
    return id;
}

/* ---- replies ----------------------------------------------------------------- */

/* The router is ZMQ_ROUTER_MANDATORY with a ZMQ_SNDHWM: a reply to a client
 * whose queue is full fails here at once (never blocks the shard, never
 * grows the queue); one to a client that has gone fails too. */
int mlt_server__send_id(mlt_server_t *s, const void *id, size_t len)
{
    if (zmq_send(s->router, id, len, ZMQ_SNDMORE | ZMQ_DONTWAIT) >= 0)
        return 0;
    int e = zmq_errno();
    s->n_dropped++;
    if (e == EAGAIN)
        mlt_log_ratelimited(MLT_LOG_WARN, "reply-dropped", 10.0,
                            "reply dropped: a client has %d replies unread (ZMQ_SNDHWM); "
                            "%llu replies dropped so far",
                            MLT_MAX_QUEUED_MSGS, (unsigned long long)s->n_dropped);
    else
        log_debug("reply dropped: the client is gone (%s)", zmq_strerror(e));
    return -e;
}

static void fill_server_info(mlt_server_t *s, Mlt__ServerInfo *si)
{
    mlt__server_info__init(si);
    si->rank = s->rank;
    si->n_servers = s->n_servers;
    si->chunk_floats = mlt_store_chunk_floats(s->store);
    si->has_memory_limit = si->has_memory_potential = si->has_memory_allocated = 1;
    si->memory_limit = mlt_store_limit(s->store);
    si->memory_potential = mlt_store_potential(s->store);
    si->memory_allocated = mlt_store_allocated(s->store);
    si->job = (char *)mlt_store_job(s->store);
    si->has_requests = si->has_errors = si->has_pulls = si->has_pushes = 1;
    si->has_bytes_in = si->has_bytes_out = si->has_parked = si->has_n_branches = 1;
    si->requests = s->n_requests;
    si->errors = s->n_errors;
    si->pulls = s->n_pulls;
    si->pushes = s->n_pushes;
    si->bytes_in = s->bytes_in;
    si->bytes_out = s->bytes_out;
    si->parked = (uint32_t)mlt_ssp_count(s->parked);
    si->n_branches = mlt_store_n_branches(s->store);
}

void mlt_server__trace_reply(mlt_server_t *s, mlt_header_t *r)
{
    if (!s->trace)
        return;
    s->tr[MLT_TR_SENT] = mlt_time_mono_ns();
    r->n_trace_ns = MLT_TRACE_STAMPS;
    r->trace_ns = s->tr;
}

void mlt_server__send_error_to(mlt_server_t *s, const void *id, size_t id_len, uint64_t request_id,
                               int code, const char *text)
{
    mlt_header_t r;
    char buf[MLT_MAX_ERROR_LEN + 1];
    snprintf(buf, sizeof buf, "%s", text);
    mlt_wire_init_error(&r, request_id, code, buf);
    mlt_server__trace_reply(s, &r);
    if (mlt_server__send_id(s, id, id_len) == 0)
        mlt_wire_send(s->router, &r, 0);
}

/* Replies ERROR to the current request and logs it (rate limited: a peer can
 * trigger it). Returns code so handlers can `return reply_error(...)`. */
int mlt_server__reply_error(mlt_server_t *s, req_t *rq, int code, const char *fmt, ...)
{
    char text[MLT_MAX_ERROR_LEN + 1];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(text, sizeof text, fmt, ap);
    va_end(ap);
    const char *type = rq->h ? mlt_wire_type_name(rq->h->type) : "(undecoded)";
    s->n_errors++;
    mlt_log_ratelimited(MLT_LOG_WARN, "bad-request", 1.0, "%s request refused: %s (%s)", type, text,
                        strerror(-code));
    mlt_server__send_error_to(s, zmq_msg_data(rq->id), zmq_msg_size(rq->id),
                              rq->h && rq->h->has_request_id ? rq->h->request_id : rq->peeked_id,
                              code, text);
    return code;
}

int mlt_server__reply_ok(mlt_server_t *s, req_t *rq, int with_info)
{
    mlt_header_t r;
    Mlt__ServerInfo si;
    mlt_wire_init(&r, MLT__MSG_TYPE__MSG_OK);
    r.has_request_id = 1;
    r.request_id = rq->h->request_id;
    if (with_info) {
        fill_server_info(s, &si);
        r.server = &si;
    }
    mlt_server__trace_reply(s, &r);
    int rc = mlt_server__send_id(s, zmq_msg_data(rq->id), zmq_msg_size(rq->id));
    return rc ? rc : mlt_wire_send(s->router, &r, 0);
}

/* ---- helpers ------------------------------------------------------------------ */

static const char *need_fields(const mlt_header_t *h, const char *fields)
{
    for (const char *f = fields; *f; f++) {
        switch (*f) {
        case 'b':
            if (!h->has_branch)
                return "branch";
            break;
        case 'p':
            if (!h->has_parent)
                return "parent";
            break;
        case 'c':
            if (!h->has_clock)
                return "clock";
            break;
        case 't':
            if (!h->has_table)
                return "table";
            break;
        case 'r':
            if (!h->has_chunk_first || !h->has_chunk_count)
                return "chunk_first/chunk_count";
            break;
        case 'w':
            if (!h->has_worker)
                return "worker";
            break;
        case 'j':
            if (!h->job)
                return "job";
            break;
        case 'h':
            if (!h->has_shm_handle || !h->has_shm_token)
                return "shm_handle/shm_token";
            break;
        }
    }
    return NULL;
}

/* Tunables from the wire over a base (missing fields keep the base's). */
static mlt_tunables_t merge_tunables(const mlt_tunables_t *base, const Mlt__Tunables *t)
{
    mlt_tunables_t r = *base;
    if (!t)
        return r;
    if (t->has_lr)
        r.h.lr = t->lr;
    if (t->has_momentum)
        r.h.momentum = t->momentum;
    if (t->has_weight_decay)
        r.h.weight_decay = t->weight_decay;
    if (t->has_beta1)
        r.h.beta1 = t->beta1;
    if (t->has_beta2)
        r.h.beta2 = t->beta2;
    if (t->has_eps)
        r.h.eps = t->eps;
    if (t->has_warmup)
        r.h.warmup = t->warmup;
    if (t->has_staleness)
        r.staleness = t->staleness;
    return r;
}

static mlt_tunables_t default_tunables(void)
{
    mlt_tunables_t t = {.h = mlt_hyper_default(), .staleness = 0};
    return t;
}

mlt_branch_t *mlt_server__find_branch(mlt_server_t *s, req_t *rq)
{
    mlt_branch_t *b = mlt_store_branch(s->store, rq->h->branch);
    if (!b)
        mlt_server__reply_error(s, rq, -ENOENT, "unknown branch %u", rq->h->branch);
    return b;
}

/* ---- control ---------------------------------------------------------------- */

static int handle_register(mlt_server_t *s, req_t *rq)
{
    const Mlt__JobSpec *job = rq->h->job;
    mlt_table_spec_t *tables = mlt_calloc(job->n_tables, sizeof *tables);
    for (size_t i = 0; i < job->n_tables; i++) {
        tables[i].name = job->tables[i]->name;
        tables[i].size = job->tables[i]->size;
    }
    char err[256];
    const mlt_store_job_t spec = {
        .name = job->name,
        .n_workers = job->n_workers,
        .rule = (mlt_rule_t)job->rule,
        .average = job->has_average && job->average,
        .tables = tables,
        .n_tables = (uint32_t)job->n_tables,
        .rank = s->rank,
        .n_servers = s->n_servers,
    };
    int rc = mlt_store_set_job_spec(s->store, &spec, err, sizeof err);
    mlt_free(tables);
    if (rc)
        return mlt_server__reply_error(s, rq, rc, "%s", err);
    log_info("job '%s' registered: %zu tables, %u workers, rule %s%s", job->name, job->n_tables,
             job->n_workers, mlt_rule_name(spec.rule), spec.average ? " with average" : "");
    return mlt_server__reply_ok(s, rq, 1);
}

static int handle_branch(mlt_server_t *s, req_t *rq)
{
    mlt_header_t *h = rq->h;
    char err[256];
    int rc;
    mlt_branch_kind_t kind = h->has_kind ? mlt_kind_from_wire(h->kind) : MLT_BRANCH_TRAIN;
    if (h->type == MLT__MSG_TYPE__MSG_BRANCH_CREATE) {
        mlt_tunables_t base = default_tunables();
        mlt_tunables_t t = merge_tunables(&base, h->tunables);
        rc = mlt_store_create(s->store, h->branch, kind, &t, err, sizeof err);
    } else {
        mlt_branch_t *p = mlt_store_branch(s->store, h->parent);
        if (!p)
            return mlt_server__reply_error(s, rq, -ENOENT, "unknown parent branch %u", h->parent);
        mlt_tunables_t t = merge_tunables(mlt_store_branch_tunables(p), h->tunables);
        rc = mlt_store_fork(s->store, h->branch, h->parent, kind, &t, err, sizeof err);
    }
    if (rc)
        return mlt_server__reply_error(s, rq, rc, "%s", err);
    log_debug("branch %u %s", h->branch, h->type == MLT__MSG_TYPE__MSG_FORK ? "forked" : "created");
    return mlt_server__reply_ok(s, rq, 0);
}

static int handle_free(mlt_server_t *s, req_t *rq)
{
    uint32_t id = rq->h->branch;
    if (mlt_store_free(s->store, id) < 0)
        return mlt_server__reply_error(s, rq, -ENOENT, "unknown branch %u", id);
    mlt_ssp_drop(s->parked, id, mlt_server__on_dropped, s);
    return mlt_server__reply_ok(s, rq, 0);
}

static int handle_set_tunables(mlt_server_t *s, req_t *rq)
{
    mlt_branch_t *b = mlt_server__find_branch(s, rq);
    if (!b)
        return -ENOENT;
    mlt_tunables_t t = merge_tunables(mlt_store_branch_tunables(b), rq->h->tunables);
    mlt_store_branch_set_tunables(b, &t);
    /* a larger staleness may let parked pulls through */
    mlt_ssp_release(s->parked, rq->h->branch, mlt_store_branch_min_clock(b), t.staleness,
                    mlt_server__on_released, s);
    return mlt_server__reply_ok(s, rq, 0);
}

int mlt_server__count_clock(mlt_server_t *s, mlt_branch_t *b, uint32_t worker, int64_t clock,
                            char *err, size_t errlen)
{
    int64_t after;
    int rc = mlt_store_branch_clock(b, worker, clock, &after);
    mlt_server__stamp(s, MLT_TR_DONE);
    if (rc == -ERANGE)
        return mlt_errf(rc, err, errlen, "worker %u is outside the job's %u workers", worker,
                        mlt_store_n_workers(s->store));
    if (rc)
        return mlt_errf(rc, err, errlen, "clock of worker %u on branch %u went backwards to %lld",
                        worker, mlt_store_branch_id(b), (long long)clock);
    return 0;
}

void mlt_server__release(mlt_server_t *s, mlt_branch_t *b, int64_t before)
{
    int64_t after = mlt_store_branch_min_clock(b);
    if (after > before)
        mlt_ssp_release(s->parked, mlt_store_branch_id(b), after,
                        mlt_store_branch_tunables(b)->staleness, mlt_server__on_released, s);
}

static int handle_clock(mlt_server_t *s, req_t *rq)
{
    mlt_header_t *h = rq->h;
    mlt_branch_t *b = mlt_server__find_branch(s, rq);
    if (!b)
        return -ENOENT;
    char err[256];
    int64_t before = mlt_store_branch_min_clock(b);
    int rc = mlt_server__count_clock(s, b, h->worker, h->clock, err, sizeof err);
    if (rc)
        return mlt_server__reply_error(s, rq, rc, "%s", err);
    mlt_server__reply_ok(s, rq, 0);
    mlt_server__release(s, b, before);
    return 0;
}

static void free_reply(void *data, void *hint)
{
    (void)hint;
    mlt_free(data);
}

/* Sends reply r to the current request's client, its bytes counted as the
 * client's unsent bytes (clientq.h) until ZeroMQ has written them: for the
 * replies that can be large (a STATUS lists every branch, up to 64 KB). */
static int send_counted(mlt_server_t *s, req_t *rq, mlt_clientq_entry_t *cq, const mlt_header_t *r)
{
    const size_t len = mlt__header__get_packed_size(r);
    uint8_t *buf = mlt_try_malloc(len);
    if (!buf)
        return mlt_server__reply_error(s, rq, -ENOMEM, "out of memory packing a %s reply",
                                       mlt_wire_type_name(r->type));
    mlt__header__pack(r, buf);
    void *held = cq ? mlt_clientq_hold(cq, len, free_reply, NULL) : NULL;
    zmq_msg_t m;
    zmq_msg_init_data(&m, buf, len, held ? mlt_clientq_sent : free_reply, held);
    int rc = mlt_server__send_id(s, zmq_msg_data(rq->id), zmq_msg_size(rq->id));
    if (rc == 0 && zmq_msg_send(&m, s->router, 0) < 0)
        rc = -zmq_errno();
    if (rc < 0)
        zmq_msg_close(&m); /* un-counts it */
    return rc;
}

static int handle_status(mlt_server_t *s, req_t *rq)
{
    /* a client that does not read its replies gets no more large ones */
    mlt_clientq_entry_t *cq =
        mlt_clientq_get(s->clients, zmq_msg_data(rq->id), zmq_msg_size(rq->id));
    const uint64_t limit = mlt_clientq_limit(mlt_store_branch_bytes(s->store));
    if (cq && mlt_clientq_unsent(cq) > limit)
        return mlt_server__reply_error(
            s, rq, -ENOBUFS,
            "%llu bytes of earlier replies to this client are not yet sent (it "
            "is not reading them), limit %llu; read them before asking more",
            (unsigned long long)mlt_clientq_unsent(cq), (unsigned long long)limit);
    mlt_header_t r;
    Mlt__ServerInfo si;
    mlt_wire_init(&r, MLT__MSG_TYPE__MSG_STATUS_REPLY);
    r.has_request_id = 1;
    r.request_id = rq->h->request_id;
    fill_server_info(s, &si);
    r.server = &si;
    uint32_t n = mlt_store_n_branches(s->store);
    Mlt__BranchInfo *bi = mlt_calloc(n ? n : 1, sizeof *bi);
    Mlt__BranchInfo **bp = mlt_calloc(n ? n : 1, sizeof *bp);
    Mlt__Tunables *tu = mlt_calloc(n ? n : 1, sizeof *tu);
    for (uint32_t i = 0; i < n; i++) {
        mlt_branch_info_t info;
        mlt_store_branch_info(s->store, mlt_store_branch_at(s->store, i), &info);
        mlt__branch_info__init(&bi[i]);
        mlt__tunables__init(&tu[i]);
        bi[i].id = info.id;
        bi[i].has_parent = info.parent >= 0;
        bi[i].parent = info.parent >= 0 ? (uint32_t)info.parent : 0;
        bi[i].kind = mlt_kind_to_wire(info.kind);
        bi[i].min_clock = info.min_clock;
        bi[i].owned_bytes = info.owned_bytes;
        bi[i].shared_bytes = info.shared_bytes;
        bi[i].diverged = info.diverged;
        tu[i].has_lr = tu[i].has_momentum = tu[i].has_weight_decay = tu[i].has_staleness = 1;
        tu[i].has_beta1 = tu[i].has_beta2 = tu[i].has_eps = tu[i].has_warmup = 1;
        tu[i].lr = info.tunables.h.lr;
        tu[i].momentum = info.tunables.h.momentum;
        tu[i].weight_decay = info.tunables.h.weight_decay;
        tu[i].beta1 = info.tunables.h.beta1;
        tu[i].beta2 = info.tunables.h.beta2;
        tu[i].eps = info.tunables.h.eps;
        tu[i].warmup = info.tunables.h.warmup;
        tu[i].staleness = info.tunables.staleness;
        bi[i].tunables = &tu[i];
        bp[i] = &bi[i];
    }
    r.n_branches = n;
    r.branches = bp;
    int rc = send_counted(s, rq, cq, &r);
    mlt_free(bi);
    mlt_free(bp);
    mlt_free(tu);
    return rc;
}

static int handle_shm(mlt_server_t *s, req_t *rq)
{
    mlt_header_t *h = rq->h;
    char err[256];
    int rc;
    mlt_header_t r;
    mlt_wire_init(&r, MLT__MSG_TYPE__MSG_OK);
    r.has_request_id = 1;
    r.request_id = h->request_id;
    if (h->type == MLT__MSG_TYPE__MSG_SHM_DETACH) {
        if ((rc = mlt_shmseg_detach(s->shm, h->shm_handle, h->shm_token, err, sizeof err)) < 0)
            return mlt_server__reply_error(s, rq, rc, "%s", err);
    } else {
        if (!h->shm_name || !h->has_shm_bytes)
            return mlt_server__reply_error(s, rq, -EINVAL, "SHM_ATTACH lacks shm_name/shm_bytes");
        uint32_t handle;
        rc = mlt_shmseg_attach(s->shm, h->shm_name, h->shm_bytes, h->shm_token, &handle, err,
                               sizeof err);
        if (rc < 0)
            return mlt_server__reply_error(s, rq, rc, "%s", err);
        log_debug("worker %u: shared memory %s (%llu bytes) attached as %#x", h->worker,
                  h->shm_name, (unsigned long long)h->shm_bytes, handle);
        r.has_shm_handle = 1;
        r.shm_handle = handle;
    }
    if ((rc = mlt_server__send_id(s, zmq_msg_data(rq->id), zmq_msg_size(rq->id))) < 0)
        return rc;
    return mlt_wire_send(s->router, &r, 0);
}

static int handle_job_end(mlt_server_t *s, req_t *rq)
{
    if (mlt_store_job(s->store)) {
        log_info("job '%s' ended", mlt_store_job(s->store));
        mlt_server__ckpt_drop(s, mlt_store_job(s->store));
    }
    mlt_ssp_drop(s->parked, UINT32_MAX, mlt_server__on_dropped, s);
    mlt_store_end_job(s->store);
    mlt_shmseg_clear(s->shm); /* the job's workers are done with theirs */
    return mlt_server__reply_ok(s, rq, 1);
}

/* Message types a client may send, the header fields each needs, and whether it
 * needs a registered job. */
static const struct {
    const char *fields;
    int needs_job;
} req_rules[] = {
    [MLT__MSG_TYPE__MSG_HELLO] = {"", 0},          [MLT__MSG_TYPE__MSG_REGISTER] = {"j", 0},
    [MLT__MSG_TYPE__MSG_BRANCH_CREATE] = {"b", 1}, [MLT__MSG_TYPE__MSG_FORK] = {"bp", 1},
    [MLT__MSG_TYPE__MSG_FREE] = {"b", 1},          [MLT__MSG_TYPE__MSG_SET_TUNABLES] = {"b", 1},
    [MLT__MSG_TYPE__MSG_WRITE] = {"btr", 1},       [MLT__MSG_TYPE__MSG_PULL] = {"bctr", 1},
    [MLT__MSG_TYPE__MSG_PUSH] = {"btr", 1},        [MLT__MSG_TYPE__MSG_CLOCK] = {"bcw", 1},
    [MLT__MSG_TYPE__MSG_STATUS] = {"", 0},         [MLT__MSG_TYPE__MSG_HEARTBEAT] = {"", 0},
    [MLT__MSG_TYPE__MSG_JOB_END] = {"", 0},        [MLT__MSG_TYPE__MSG_SHM_ATTACH] = {"", 0},
    [MLT__MSG_TYPE__MSG_SHM_DETACH] = {"h", 0},    [MLT__MSG_TYPE__MSG_CKPT_SAVE] = {"", 1},
    [MLT__MSG_TYPE__MSG_CKPT_LOAD] = {"", 0},      [MLT__MSG_TYPE__MSG_WORKER_GONE] = {"w", 1},
    [MLT__MSG_TYPE__MSG_WORKER_BACK] = {"w", 1},   [MLT__MSG_TYPE__MSG_PULL_ALL] = {"bch", 1},
    [MLT__MSG_TYPE__MSG_STEP] = {"bhw", 1},
};

static int dispatch(mlt_server_t *s, req_t *rq)
{
    mlt_header_t *h = rq->h;
    int type = h->type;
    if (type <= 0 || (size_t)type >= sizeof req_rules / sizeof req_rules[0] ||
        !req_rules[type].fields)
        return mlt_server__reply_error(s, rq, -EBADMSG, "message type %s is not a request",
                                       mlt_wire_type_name(type));
    const char *missing = need_fields(h, req_rules[type].fields);
    if (missing)
        return mlt_server__reply_error(s, rq, -EINVAL, "%s request lacks field %s",
                                       mlt_wire_type_name(type), missing);
    if (req_rules[type].needs_job && !mlt_store_job(s->store))
        return mlt_server__reply_error(s, rq, -ENOENT, "no job is registered");
    if (type != MLT__MSG_TYPE__MSG_WRITE && type != MLT__MSG_TYPE__MSG_PUSH && rq->n_payload)
        return mlt_server__reply_error(s, rq, -EINVAL, "%s carries %zu unexpected payload frames",
                                       mlt_wire_type_name(type), rq->n_payload);
    if (type == MLT__MSG_TYPE__MSG_HELLO)
        mlt_server__hello(s, zmq_msg_data(rq->id), zmq_msg_size(rq->id));
    else if (type != MLT__MSG_TYPE__MSG_STATUS && type != MLT__MSG_TYPE__MSG_HEARTBEAT &&
             mlt_server__stale(s, zmq_msg_data(rq->id), zmq_msg_size(rq->id)))
        return mlt_server__reply_error(s, rq, -ESTALE,
                                       "this daemon restored a checkpoint after the "
                                       "connection began: a new client must say HELLO first");
    const bool pull = type == MLT__MSG_TYPE__MSG_PULL || type == MLT__MSG_TYPE__MSG_PULL_ALL;
    if ((pull || type == MLT__MSG_TYPE__MSG_PUSH || type == MLT__MSG_TYPE__MSG_CLOCK ||
         type == MLT__MSG_TYPE__MSG_STEP) &&
        h->has_worker && mlt_store_worker_gone(s->store, h->worker))
        return mlt_server__reply_error(
            s, rq, -ESTALE,
            "worker %u was dropped from the job by the coordinator; it must join "
            "again",
            h->worker);
    if (pull && h->has_worker) { /* a worker back re-enters here */
        mlt_branch_t *b = mlt_store_branch(s->store, h->branch);
        if (b)
            mlt_store_branch_enter(b, h->worker, h->clock);
    }
    switch (type) {
    case MLT__MSG_TYPE__MSG_WORKER_GONE:
    case MLT__MSG_TYPE__MSG_WORKER_BACK: return mlt_server__handle_worker(s, rq);
    case MLT__MSG_TYPE__MSG_HELLO:
    case MLT__MSG_TYPE__MSG_HEARTBEAT: return mlt_server__reply_ok(s, rq, 1);
    case MLT__MSG_TYPE__MSG_REGISTER: return handle_register(s, rq);
    case MLT__MSG_TYPE__MSG_BRANCH_CREATE:
    case MLT__MSG_TYPE__MSG_FORK: return handle_branch(s, rq);
    case MLT__MSG_TYPE__MSG_FREE: return handle_free(s, rq);
    case MLT__MSG_TYPE__MSG_SET_TUNABLES: return handle_set_tunables(s, rq);
    case MLT__MSG_TYPE__MSG_WRITE: return mlt_server__handle_push(s, rq, 1);
    case MLT__MSG_TYPE__MSG_PUSH: return mlt_server__handle_push(s, rq, 0);
    case MLT__MSG_TYPE__MSG_PULL:
    case MLT__MSG_TYPE__MSG_PULL_ALL: return mlt_server__handle_pull(s, rq);
    case MLT__MSG_TYPE__MSG_STEP: return mlt_server__handle_step(s, rq);
    case MLT__MSG_TYPE__MSG_CLOCK: return handle_clock(s, rq);
    case MLT__MSG_TYPE__MSG_STATUS: return handle_status(s, rq);
    case MLT__MSG_TYPE__MSG_JOB_END: return handle_job_end(s, rq);
    case MLT__MSG_TYPE__MSG_SHM_ATTACH:
    case MLT__MSG_TYPE__MSG_SHM_DETACH: return handle_shm(s, rq);
    case MLT__MSG_TYPE__MSG_CKPT_SAVE:
    case MLT__MSG_TYPE__MSG_CKPT_LOAD: return mlt_server__handle_ckpt(s, rq);
    default: return mlt_server__reply_error(s, rq, -EBADMSG, "unhandled type %d", type);
    }
}

/* ---- the loop --------------------------------------------------------------- */

static void close_frames(mlt_server_t *s)
{
    for (size_t i = 0; i < s->n_frames; i++)
        zmq_msg_close(&s->frames[i]);
    s->n_frames = 0;
}

/* Reads one whole message into s->frames and serves it. */
static int serve_one(mlt_server_t *s)
{
    /* when this request's turn began: the loop's wake-up, or the end of the
     * request before it in the same batch */
    const uint64_t begin = s->wake_ns ? s->wake_ns : mlt_time_mono_ns();
    s->wake_ns = 0;
    int more = 1, too_many = 0;
    size_t total = 0;
    while (more) {
        /* slots 0..MLT_MAX_FRAMES hold the id and the frames; the last one drains */
        zmq_msg_t *m = &s->frames[s->n_frames <= MLT_MAX_FRAMES ? s->n_frames : MLT_MAX_FRAMES + 1];
        zmq_msg_init(m);
        if (zmq_msg_recv(m, s->router, 0) < 0) {
            int e = zmq_errno();
            zmq_msg_close(m);
            close_frames(s);
            return e == EINTR || e == EAGAIN ? 0 : -e;
        }
        more = zmq_msg_more(m);
        total++;
        if (s->n_frames <= MLT_MAX_FRAMES)
            s->n_frames++;
        else {
            too_many = 1;
            zmq_msg_close(m); /* drain the rest of an oversized message */
        }
    }
    req_t rq = {.id = &s->frames[0]};
    s->n_requests++;
    for (size_t i = 2; i < s->n_frames; i++)
        s->bytes_in += zmq_msg_size(&s->frames[i]);
    if (s->n_frames < 2) {
        close_frames(s); /* an empty message from a ROUTER peer: nothing to answer */
        return 0;
    }
    char err[256];
    int rc = mlt_wire_decode(zmq_msg_data(&s->frames[1]), zmq_msg_size(&s->frames[1]), &rq.h, err,
                             sizeof err);
    if (rc) {
        rq.peeked_id = peek_request_id(&s->frames[1]);
        mlt_server__reply_error(s, &rq, rc, "%s", err);
    } else if (too_many) {
        mlt_server__reply_error(s, &rq, -EMSGSIZE, "message has %zu frames, limit %u", total,
                                MLT_MAX_FRAMES);
    } else {
        rq.payload = &s->frames[2];
        rq.n_payload = s->n_frames - 2;
        if (rq.h->has_trace && rq.h->trace) {
            s->trace = true;
            memset(s->tr, 0, sizeof s->tr);
            s->tr[MLT_TR_BEGIN] = begin;
            s->tr[MLT_TR_DECODED] = mlt_time_mono_ns();
        }
        dispatch(s, &rq);
        s->trace = false;
    }
    mlt_wire_free(&rq.h);
    close_frames(s);
    return 0;
}

mlt_server_t *mlt_server_new(const mlt_dconf_t *conf, const mlt_dkeys_t *keys, char *err,
                             size_t errlen)
{
    mlt_server_t *s = mlt_calloc(1, sizeof *s);
    s->rank = (uint32_t)conf->rank;
    s->n_servers = (uint32_t)conf->n_servers;
    s->pull_timeout_s = conf->pull_timeout_s;
    s->state_dir = mlt_strdup(conf->state_dir ? conf->state_dir : "");
    s->store = mlt_store_new((uint32_t)(conf->chunk_size / sizeof(float)), conf->memory_limit);
    if (!s->store) {
        snprintf(err, errlen, "chunk_size %zu is invalid", conf->chunk_size);
        goto fail_s;
    }
    s->parked = mlt_ssp_new(MLT_MAX_PARKED);
    s->clients = mlt_clientq_new();
    s->shm = mlt_shmseg_new();
    s->scratch = mlt_try_aligned(MLT_MAX_CHUNK_BYTES);
    s->frames = mlt_calloc(MLT_MAX_FRAMES + 2, sizeof *s->frames);
    if (!s->scratch) {
        snprintf(err, errlen, "out of memory");
        goto fail_store;
    }
    s->ctx = zmq_ctx_new();
    s->router = zmq_socket(s->ctx, ZMQ_ROUTER);
    int64_t maxmsg = MLT_MAX_SOCKET_MSG_BYTES;
    int zero = 0, one = 1, hwm = MLT_MAX_QUEUED_MSGS;
    zmq_setsockopt(s->router, ZMQ_MAXMSGSIZE, &maxmsg, sizeof maxmsg);
    /* per peer: at most hwm replies queued (beyond it send_id drops the reply,
     * ROUTER_MANDATORY makes that visible) and hwm requests read ahead (beyond
     * it ZeroMQ stops reading that peer's connection: back-pressure, no loss) */
    zmq_setsockopt(s->router, ZMQ_SNDHWM, &hwm, sizeof hwm);
    zmq_setsockopt(s->router, ZMQ_RCVHWM, &hwm, sizeof hwm);
    zmq_setsockopt(s->router, ZMQ_ROUTER_MANDATORY, &one, sizeof one);
    zmq_setsockopt(s->router, ZMQ_LINGER, &zero, sizeof zero);
    if (keys && keys->on) {
        /* CURVE with a ZAP handler: only allow-listed keys get a reply */
        s->zap = mlt_zap_start(s->ctx, keys->allow, s->router, "shard", err, errlen);
        if (!s->zap)
            goto fail_sock;
        if (mlt_curve_server_socket(s->router, &keys->client.me) < 0) {
            snprintf(err, errlen, "cannot make %s a CurveZMQ server: %s", conf->bind,
                     zmq_strerror(zmq_errno()));
            goto fail_sock;
        }
    }
    if (zmq_bind(s->router, conf->bind) < 0) {
        snprintf(err, errlen, "cannot bind %s: %s", conf->bind, zmq_strerror(zmq_errno()));
        goto fail_sock;
    }
    size_t len = sizeof s->endpoint;
    zmq_getsockopt(s->router, ZMQ_LAST_ENDPOINT, s->endpoint, &len);
    return s;
fail_sock:
    mlt_zap_stop(&s->zap);
    zmq_close(s->router);
    zmq_ctx_term(s->ctx);
fail_store:
    mlt_free(s->frames);
    mlt_free(s->scratch);
    mlt_ssp_destroy(&s->parked);
    mlt_clientq_destroy(&s->clients);
    mlt_shmseg_destroy(&s->shm);
    mlt_store_destroy(&s->store);
fail_s:
    mlt_free(s->state_dir);
    mlt_free(s);
    return NULL;
}

const char *mlt_server_endpoint(const mlt_server_t *s)
{
    return s->endpoint;
}

int mlt_server_run(mlt_server_t *s, int stop_fd)
{
    zmq_pollitem_t items[2] = {
        {.socket = s->router, .events = ZMQ_POLLIN},
        {.fd = stop_fd, .events = ZMQ_POLLIN},
    };
    for (;;) {
        long timeout_ms = 1000;
        double next = mlt_ssp_next_deadline(s->parked);
        if (next >= 0) {
            double wait = next - mlt_time_mono();
            timeout_ms = wait <= 0 ? 0 : wait < 1.0 ? (long)(wait * 1000) + 1 : 1000;
        }
        int n = zmq_poll(items, 2, timeout_ms);
        if (n < 0) {
            if (zmq_errno() == EINTR)
                continue;
            return -zmq_errno();
        }
        if (items[1].revents & ZMQ_POLLIN)
            return 0;
        s->wake_ns = mlt_time_mono_ns();
        /* serve what is queued, but look at the stop fd and deadlines now and then */
        for (int i = 0; i < 256; i++) {
            int ev = 0;
            size_t evlen = sizeof ev;
            zmq_getsockopt(s->router, ZMQ_EVENTS, &ev, &evlen);
            if (!(ev & ZMQ_POLLIN))
                break;
            int rc = serve_one(s);
            if (rc < 0)
                return rc;
        }
        mlt_ssp_expire(s->parked, mlt_time_mono(), mlt_server__on_expired, s);
    }
}

void mlt_server_destroy(mlt_server_t **sp)
{
    if (!sp || !*sp)
        return;
    mlt_server_t *s = *sp;
    mlt_ssp_destroy(&s->parked);
    mlt_shmseg_destroy(&s->shm);
    mlt_zap_stop(&s->zap);
    zmq_close(s->router);
    zmq_ctx_term(s->ctx);             /* linger 0: unsent pull replies release their chunks here */
    mlt_clientq_destroy(&s->clients); /* after the frames that count into it */
    mlt_store_destroy(&s->store);
    mlt_free(s->frames);
    mlt_free(s->scratch);
    mlt_free(s->state_dir);
    mlt_free(s->hellos);
    mlt_free(s);
    *sp = NULL;
}
