/* client.c - libmltuner, see mltuner.h.
 *
 * Every request carries a request id and is remembered in `pending` until its
 * reply (OK, ERROR, PULL_REPLY or STATUS_REPLY) arrives; replies may come in
 * any order (a parked pull is answered after later requests). Synchronous
 * calls send, then pump replies until their requests are done.
 *
 * This file holds the requests and replies, connecting, the job, branches
 * and status; the data requests (pulls through the pull cache, pushes, writes,
 * clocks) are in client_data.c, the same-host transport in client_shm.c. */
#include "client/mltuner.h"

#include <errno.h>
#include <math.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <zmq.h>

#include "common/alloc.h"
#include "common/timeutil.h"
#include "kernels/optim.h"
#include "proto/layout.h"
#include "proto/wire.h"
#include "client/client_int.h"

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
    mlt_tunables_def_t t = {NAN, NAN, NAN, NAN, NAN, NAN, -1, -1};
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
    /* the pushes waiting for the clock go first: requests reach a shard in
     * the order they are made */
    if (c->step_region >= 0 && !c->in_step && c->step_due[shard])
        mlt_client__step_flush(c);
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
    h->has_trace = h->trace = c->trace;
}

void mlt_client__record_error(mlt_client_t *c, int code, const char *fmt, ...)
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
    if (t->has_lr)
        d->lr = t->lr;
    if (t->has_momentum)
        d->momentum = t->momentum;
    if (t->has_weight_decay)
        d->weight_decay = t->weight_decay;
    if (t->has_beta1)
        d->beta1 = t->beta1;
    if (t->has_beta2)
        d->beta2 = t->beta2;
    if (t->has_eps)
        d->eps = t->eps;
    if (t->has_staleness)
        d->staleness = (int32_t)t->staleness;
    if (t->has_warmup)
        d->warmup = (int32_t)t->warmup;
}

static void on_hello(mlt_client_t *c, const pending_t *p, const mlt_header_t *h)
{
    const Mlt__ServerInfo *si = h->server;
    if (!si) {
        mlt_client__record_error(c, -EPROTO, "%s: hello reply without server info",
                                 c->endpoints[p->shard]);
        return;
    }
    if (si->rank != p->shard || si->n_servers != c->n)
        mlt_client__record_error(c, -EINVAL,
                                 "%s says it is shard %u of %u; expected shard %u of %u",
                                 c->endpoints[p->shard], si->rank, si->n_servers, p->shard, c->n);
    else if (c->chunk_floats && si->chunk_floats != c->chunk_floats)
        mlt_client__record_error(c, -EINVAL,
                                 "%s uses chunks of %u floats, shard 0 of %u: chunk_size differs",
                                 c->endpoints[p->shard], si->chunk_floats, c->chunk_floats);
    else
        c->chunk_floats = si->chunk_floats;
}

void mlt_client__status_from_reply(const mlt_header_t *h, mlt_server_status_t *o)
{
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
    size_t n = h->n_branches < MLT_MAX_BRANCHES ? h->n_branches : MLT_MAX_BRANCHES;
    o->n_branches = (uint32_t)n;
    o->branches = mlt_calloc(n ? n : 1, sizeof *o->branches);
    for (size_t i = 0; i < n; i++) {
        const Mlt__BranchInfo *b = h->branches[i];
        mlt_branch_status_t *d = &o->branches[i];
        d->id = b->id;
        d->parent = b->has_parent ? (int64_t)b->parent : -1;
        d->kind = (int)mlt_kind_from_wire(b->kind);
        d->min_clock = b->min_clock;
        d->owned_bytes = b->owned_bytes;
        d->shared_bytes = b->shared_bytes;
        d->diverged = b->diverged;
        fill_tunables(&d->tunables, b->tunables);
    }
}

static void on_status(mlt_client_t *c, const pending_t *p, const mlt_header_t *h)
{
    (void)c;
    mlt_client__status_from_reply(h, p->st);
}

/* Receives and handles one message from shard s. */
int mlt_client__recv(mlt_client_t *c, uint32_t s)
{
    int answered = 0;
    zmq_msg_t hdr;
    zmq_msg_init(&hdr);
    if (zmq_msg_recv(&hdr, c->socks[s], 0) < 0) {
        zmq_msg_close(&hdr);
        return 0;
    }
    const uint64_t got = c->trace ? mlt_time_mono_ns() : 0;
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
        mlt_client__record_error(c, rc, "%s sent a bad reply: %s", c->endpoints[s], err);
        goto out;
    }
    size_t i;
    for (i = 0; i < c->n_pending; i++)
        if (c->pending[i].id == h->request_id && c->pending[i].shard == s)
            break;
    if (i == c->n_pending)
        goto out; /* a reply to a request given up on */
    answered = 1;
    pending_t p = c->pending[i];
    c->pending[i] = c->pending[--c->n_pending];
    if (p.stage >= 0) /* its stage may be overwritten once every reader is answered */
        c->stage_busy[p.stage]--;
    if (p.kind == P_ZOMBIE) {
        if (p.cache && p.cache->zombie && --p.cache->zombie == 0) /* its region is final */
            mlt_client__cache_clear(c, p.cache);
    } else if (p.kind == P_SHM) {
        mlt_client__shm_reply(c, &p, h);
    } else if (h->type == MLT__MSG_TYPE__MSG_ERROR && p.kind == P_PREFETCH) {
        if (p.cache)
            p.cache->failed = true; /* the pull that needs it will ask again, and say why */
    } else if (h->type == MLT__MSG_TYPE__MSG_ERROR) {
        if (p.kind == P_PULL)
            p.cache->valid = false;
        /* an errno value from the wire: anything else (0, negative, huge) is
         * the server's protocol error, never a positive or odd return */
        int code = h->has_error_code && h->error_code > 0 && h->error_code < 4096 ? -h->error_code
                                                                                  : -EPROTO;
        mlt_client__record_error(c, code, "%s: %s", c->endpoints[s], h->error ? h->error : "error");
    } else if ((p.kind == P_PULL || p.kind == P_PREFETCH) &&
               h->type == MLT__MSG_TYPE__MSG_PULL_REPLY) {
        mlt_client__on_pull(c, &p, h, frames, nf);
    } else if (p.kind == P_STATUS && h->type == MLT__MSG_TYPE__MSG_STATUS_REPLY) {
        on_status(c, &p, h);
    } else if (p.kind == P_CKPT && h->type == MLT__MSG_TYPE__MSG_OK) {
        if (p.ck_size && h->has_ckpt_size)
            *p.ck_size = h->ckpt_size;
        if (p.ck_crc && h->has_ckpt_crc)
            *p.ck_crc = h->ckpt_crc;
    } else if (h->type == MLT__MSG_TYPE__MSG_OK) {
        if (p.kind == P_HELLO)
            on_hello(c, &p, h);
    } else {
        mlt_client__record_error(c, -EPROTO, "%s answered with %s", c->endpoints[s],
                                 mlt_wire_type_name(h->type));
    }
    if (c->trace)
        mlt_client__trace_keep(c, &p, h, got);
    if (h->has_acks) /* a pull that answers the STEP which carried it as well */
        for (size_t k = 0; k < c->n_pending; k++) {
            pending_t *a = &c->pending[k];
            if (a->id != h->acks || a->shard != s || a->kind != P_ACK)
                continue;
            if (a->stage >= 0)
                c->stage_busy[a->stage]--;
            if (c->trace)
                mlt_client__trace_keep(c, a, h, got);
            *a = c->pending[--c->n_pending];
            break;
        }
out:
    mlt_wire_free(&h);
    for (size_t k = 0; k < nf; k++)
        zmq_msg_close(&frames[k]);
    if (frames && nf < cap && more)
        zmq_msg_close(&frames[nf]);
    mlt_free(frames);
    zmq_msg_close(&hdr);
    return answered;
}

/* One round of replies; see client_int.h. */
/* A disconnect event of shard s's socket (its monitor said so): the
 * requests pending there will never be answered (a restarted daemon does
 * not know them), so they fail now rather than after timeout_s. Returns
 * -ECONNRESET when some were pending, else 0. */
static int on_monitor(mlt_client_t *c, uint32_t s)
{
    zmq_msg_t m;
    zmq_msg_init(&m);
    int got = zmq_msg_recv(&m, c->mons[s], ZMQ_DONTWAIT);
    uint16_t event = 0;
    if (got >= 2)
        memcpy(&event, zmq_msg_data(&m), sizeof event);
    while (got >= 0 && zmq_msg_more(&m)) { /* the endpoint frame */
        zmq_msg_close(&m);
        zmq_msg_init(&m);
        got = zmq_msg_recv(&m, c->mons[s], ZMQ_DONTWAIT);
    }
    zmq_msg_close(&m);
    if (event != ZMQ_EVENT_DISCONNECTED)
        return 0;
    /* broken even with nothing pending: a request sent from here on would
     * reach whatever listens there now (a restarted daemon that restored a
     * checkpoint), on behalf of work that daemon knows nothing of */
    c->broken = true;
    if (c->lost < 0)
        c->lost = (int)s;
    size_t pending = 0;
    for (size_t i = 0; i < c->n_pending; i++)
        pending += c->pending[i].shard == s && c->pending[i].kind != P_ZOMBIE;
    if (!pending)
        return 0;
    return mlt_client__err(c, -ECONNRESET,
                           "%s closed the connection with %zu requests pending (its "
                           "daemon died or restarted)",
                           c->endpoints[s], pending);
}

int mlt_client__pump(mlt_client_t *c, double *deadline)
{
    zmq_pollitem_t items[2 * MLT_MAX_SERVERS];
    if (c->broken)
        return mlt_client__err(c, -ECONNRESET,
                               "shard %d (%s) closed the connection with requests pending "
                               "(its daemon died or restarted)",
                               c->lost, c->endpoints[c->lost]);
    uint32_t ni = c->n;
    for (uint32_t s = 0; s < c->n; s++)
        items[s] = (zmq_pollitem_t){.socket = c->socks[s], .events = ZMQ_POLLIN};
    for (uint32_t s = 0; c->mons && s < c->n; s++)
        if (c->mons[s])
            items[ni++] = (zmq_pollitem_t){.socket = c->mons[s], .events = ZMQ_POLLIN};
    double wait = *deadline - mlt_time_mono();
    if (wait <= 0)
        return -ETIMEDOUT;
    int n = zmq_poll(items, (int)ni, (long)(wait * 1000) + 1);
    if (n < 0)
        return zmq_errno() == EINTR
                   ? 0
                   : mlt_client__err(c, -zmq_errno(), "poll: %s", zmq_strerror(zmq_errno()));
    for (uint32_t s = 0; s < c->n; s++)
        if ((items[s].revents & ZMQ_POLLIN) && mlt_client__recv(c, s))
            *deadline = mlt_time_mono() + c->timeout_s; /* progress: junk does not count */
    for (uint32_t s = 0, k = c->n; c->mons && s < c->n; s++)
        if (c->mons[s] && (items[k++].revents & ZMQ_POLLIN)) {
            int rc = on_monitor(c, s);
            if (rc < 0)
                return rc;
        }
    return 0;
}

/* Pumps replies until no request of `kind` (or any but P_ZOMBIE and
 * P_PREFETCH, if kind < 0: nothing waits for a prefetch but the pull that
 * takes it) is pending. Returns the first error of the completed requests (and clears
 * it), or -ETIMEDOUT when nothing arrives for timeout_s. */
int mlt_client__wait(mlt_client_t *c, int kind)
{
    double deadline = mlt_time_mono() + c->timeout_s;
    for (;;) {
        size_t left = 0;
        for (size_t i = 0; i < c->n_pending; i++)
            if (kind < 0 ? c->pending[i].kind != P_ZOMBIE && c->pending[i].kind != P_PREFETCH
                         : (int)c->pending[i].kind == kind)
                left++;
        if (!left)
            break;
        int rc = mlt_client__pump(c, &deadline);
        if (rc == -ETIMEDOUT) {
            char seen[420] = "";
            if (c->first_err) /* a bad reply came instead: say so */
                snprintf(seen, sizeof seen, "; instead: %.400s", c->err);
            c->first_err = 0;
            mlt_client__err(c, rc, "no reply from %s for %.0f s (%zu requests pending)%.300s",
                            c->endpoints[c->pending[0].shard], c->timeout_s, c->n_pending, seen);
            /* given up: a late reply must not write to the caller's status */
            for (size_t i = 0; i < c->n_pending;)
                if ((kind < 0 || (int)c->pending[i].kind == kind) &&
                    (c->pending[i].kind == P_HELLO || c->pending[i].kind == P_STATUS))
                    c->pending[i] = c->pending[--c->n_pending];
                else
                    i++;
            return rc;
        }
        if (rc < 0)
            return rc;
    }
    int rc = c->first_err;
    c->first_err = 0;
    return rc;
}

int mlt_sync(mlt_client_t *c)
{
    int rc = c->step_region >= 0 ? mlt_client__step_flush(c) : 0;
    int rc2 = mlt_client__wait(c, -1);
    rc = rc ? rc : rc2;
    /* acknowledged pushes were received whole; ZeroMQ lets go of the frames right after */
    for (int spin = 0; atomic_load(&c->push_frames) > 0; spin++) {
        struct timespec ts = {0, spin < 100 ? 10000 : 1000000};
        nanosleep(&ts, NULL);
        if (spin > 100 + (int)(c->timeout_s * 1000))
            return mlt_client__err(
                c, -ETIMEDOUT, "push buffers still held by the socket after %.0f s", c->timeout_s);
    }
    return rc;
}

/* Reads the disconnect events waiting (without blocking); true when the
 * client is broken. */
bool mlt_client__broken(mlt_client_t *c)
{
    for (uint32_t s = 0; !c->broken && c->mons && s < c->n; s++) {
        int ev = 0;
        size_t evlen = sizeof ev;
        while (c->mons[s] && !c->broken &&
               zmq_getsockopt(c->mons[s], ZMQ_EVENTS, &ev, &evlen) == 0 && (ev & ZMQ_POLLIN))
            on_monitor(c, s);
    }
    return c->broken;
}

int mlt_client_lost_shard(mlt_client_t *c, double wait_s)
{
    double end = mlt_time_mono() + wait_s;
    while (!mlt_client__broken(c) && c->mons) {
        zmq_pollitem_t items[MLT_MAX_SERVERS];
        int ni = 0;
        for (uint32_t s = 0; s < c->n; s++)
            if (c->mons[s])
                items[ni++] = (zmq_pollitem_t){.socket = c->mons[s], .events = ZMQ_POLLIN};
        double left = end - mlt_time_mono();
        if (!ni || left <= 0)
            break;
        if (zmq_poll(items, ni, (long)(left * 1000) + 1) < 0 && zmq_errno() != EINTR)
            break;
    }
    return c->lost;
}

int mlt_client__send(mlt_client_t *c, uint32_t s, mlt_header_t *h)
{
    if (mlt_client__broken(c)) {
        c->n_pending--; /* it was the last one added */
        return mlt_client__err(c, -ECONNRESET,
                               "shard %d (%s) closed the connection (its daemon died or "
                               "restarted); this client's requests stop here",
                               c->lost, c->endpoints[c->lost]);
    }
    pending_t *p = &c->pending[c->n_pending - 1]; /* the last one added */
    p->type = h->type;
    if (c->trace)
        p->sent_ns = mlt_time_mono_ns();
    int rc = mlt_wire_send(c->socks[s], h, 0);
    if (rc < 0) {
        c->n_pending--; /* it was the last one added */
        return mlt_client__err(c, rc, "%s: send: %s", c->endpoints[s], zmq_strerror(-rc));
    }
    return 0;
}

/* ---- connect -------------------------------------------------------------- */

mlt_client_t *mlt_client_new(const char *const *endpoints, uint32_t n, uint32_t worker, char *err,
                             size_t errlen)
{
    return mlt_client_new_keys(endpoints, n, worker, NULL, err, errlen);
}

mlt_client_t *mlt_client_new_keys(const char *const *endpoints, uint32_t n, uint32_t worker,
                                  const mlt_client_keys_t *keys, char *err, size_t errlen)
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
    c->lost = -1;
    c->timeout_s = 120;
    c->ctx = zmq_ctx_new();
    c->socks = mlt_calloc(n, sizeof *c->socks);
    c->mons = mlt_calloc(n, sizeof *c->mons);
    c->endpoints = mlt_calloc(n, sizeof *c->endpoints);
    c->shm_handle = mlt_calloc(n, sizeof *c->shm_handle);
    c->shm_ok = mlt_calloc(n, sizeof *c->shm_ok);
    const char *tr_env = getenv("MLT_TRACE");
    c->trace = c->trace_env = tr_env && *tr_env && strlen(tr_env) < sizeof c->trace_path;
    if (c->trace_env)
        snprintf(c->trace_path, sizeof c->trace_path, "%s", tr_env);
    c->trace_t0 = mlt_time_mono();
    const char *pf_env = getenv("MLT_CLOCK_PREFETCH");
    c->no_clock_prefetch = pf_env && strcmp(pf_env, "0") == 0;
    const char *shm_env = getenv("MLT_SHM");
    c->shm_off = shm_env && strcmp(shm_env, "0") == 0;
    const char *map_env = getenv("MLT_SHM_MAP");
    c->shm_map_off = map_env && strcmp(map_env, "0") == 0;
    const char *step_env = getenv("MLT_STEP");
    c->step_off = step_env && strcmp(step_env, "0") == 0;
    c->step_region = -1;
    int zero = 0;
    int64_t maxmsg = MLT_MAX_SOCKET_MSG_BYTES;
    for (uint32_t s = 0; s < n; s++) {
        c->endpoints[s] = mlt_strdup(endpoints[s]);
        c->socks[s] = zmq_socket(c->ctx, ZMQ_DEALER);
        zmq_setsockopt(c->socks[s], ZMQ_LINGER, &zero, sizeof zero);
        zmq_setsockopt(c->socks[s], ZMQ_SNDHWM, &zero, sizeof zero);
        zmq_setsockopt(c->socks[s], ZMQ_RCVHWM, &zero, sizeof zero);
        zmq_setsockopt(c->socks[s], ZMQ_MAXMSGSIZE, &maxmsg, sizeof maxmsg);
        char mon[96];
        snprintf(mon, sizeof mon, "inproc://mlt-client-mon-%p-%u", (void *)c, s);
        if (zmq_socket_monitor(c->socks[s], mon, ZMQ_EVENT_DISCONNECTED) == 0) {
            c->mons[s] = zmq_socket(c->ctx, ZMQ_PAIR);
            zmq_setsockopt(c->mons[s], ZMQ_LINGER, &zero, sizeof zero);
            if (zmq_connect(c->mons[s], mon) < 0) {
                zmq_close(c->mons[s]);
                c->mons[s] = NULL;
            }
        }
        if (keys && (zmq_setsockopt(c->socks[s], ZMQ_CURVE_SERVERKEY, keys->server_key, 41) < 0 ||
                     zmq_setsockopt(c->socks[s], ZMQ_CURVE_PUBLICKEY, keys->public_key, 41) < 0 ||
                     zmq_setsockopt(c->socks[s], ZMQ_CURVE_SECRETKEY, keys->secret_key, 41) < 0)) {
            mlt_client__err(c, -zmq_errno(), "CurveZMQ keys refused for %s: %s", endpoints[s],
                            zmq_strerror(zmq_errno()));
            goto fail;
        }
        if (zmq_connect(c->socks[s], endpoints[s]) < 0) {
            mlt_client__err(c, -zmq_errno(), "cannot connect to %s: %s", endpoints[s],
                            zmq_strerror(zmq_errno()));
            goto fail;
        }
    }
    c->timeout_s = 10; /* a daemon that does not answer hello is not there */
    for (uint32_t s = 0; s < n; s++) {
        mlt_header_t h;
        pending_t *p = mlt_client__pending(c, s, P_HELLO);
        mlt_client__header(c, &h, MLT__MSG_TYPE__MSG_HELLO, p);
        if (mlt_client__send(c, s, &h) < 0)
            goto fail;
    }
    int rc = mlt_sync(c);
    c->timeout_s = 120;
    if (rc < 0) {
        if (rc == -ETIMEDOUT) {
            char why[sizeof c->err];
            snprintf(why, sizeof why, "%s", c->err);
            mlt_client__err(c, rc, "%.400s: is mltunerd running there%s?", why,
                            keys ? ", and does it know our CurveZMQ key (and we its)"
                                 : " (a daemon with curve_key set answers CurveZMQ clients only)");
        }
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

void mlt_client_destroy(mlt_client_t **cp)
{
    if (!cp || !*cp)
        return;
    mlt_client_t *c = *cp;
    if (c->trace_env)
        mlt_client__trace_summary(c);
    /* requests still queued (asynchronous clocks) are delivered first: the
     * sockets close with linger 0, which would drop them. Prefetches are not
     * waited for: one may be parked at a shard until clocks that never come. */
    if (c->socks) {
        mlt_client__prefetch_drop(c, 0, true);
        if (c->step_region >= 0) /* pushes made but never clocked are still delivered */
            mlt_client__step_flush(c);
    }
    for (size_t i = 0; i < c->n_pending;)
        if (c->pending[i].kind == P_PREFETCH || c->pending[i].kind == P_ZOMBIE)
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
        mlt_client__cache_clear(c, &c->caches[i]);
    for (uint32_t s = 0; s < c->n; s++) {
        if (c->socks[s]) {
            zmq_socket_monitor(c->socks[s], NULL, 0);
            zmq_close(c->socks[s]);
        }
        if (c->mons && c->mons[s])
            zmq_close(c->mons[s]);
        mlt_free(c->endpoints[s]);
    }
    zmq_ctx_term(c->ctx);
    mlt_free(c->mons);
    mlt_free(c->socks);
    mlt_free(c->endpoints);
    mlt_free(c->pending);
    mlt_client__views_free(c);
    mlt_free(c->tables);
    mlt_free(c->parts);
    mlt_free(c->held_dst);
    mlt_free(c->shm_handle);
    mlt_free(c->shm_ok);
    mlt_free(c->trace_rec);
    mlt_free(c);
    *cp = NULL;
}

/* ---- job and branches ----------------------------------------------------- */

int mlt_client_register(mlt_client_t *c, const mlt_job_def_t *job)
{
    int rule = mlt_rule_parse(job->rule ? job->rule : "sgd");
    if (rule < 0)
        return mlt_client__err(c, -EINVAL, "unknown update rule '%s'", job->rule);
    if (job->n_tables == 0 || job->n_tables > MLT_MAX_TABLES)
        return mlt_client__err(c, -EINVAL, "a job needs 1..%u tables, got %u", MLT_MAX_TABLES,
                               job->n_tables);
    Mlt__JobSpec js;
    mlt__job_spec__init(&js);
    js.name = (char *)job->name;
    js.n_workers = job->n_workers;
    js.rule = (Mlt__Rule)rule;
    js.has_average = job->average;
    js.average = job->average;
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
        mlt_client__err(c, rc, "%s", err);
        goto out;
    }
    for (uint32_t s = 0; s < c->n; s++) {
        mlt_header_t h;
        pending_t *p = mlt_client__pending(c, s, P_ACK);
        mlt_client__header(c, &h, MLT__MSG_TYPE__MSG_REGISTER, p);
        h.job = &js;
        if ((rc = mlt_client__send(c, s, &h)) < 0)
            goto out;
    }
    if ((rc = mlt_sync(c)) < 0)
        goto out;
    /* the layout, as every shard computes it */
    mlt_client__shm_teardown(c);
    mlt_client__prefetch_drop(c, 0, true);
    for (int i = 0; i < MAX_CACHES; i++)
        mlt_client__cache_clear(c, &c->caches[i]);
    mlt_client__views_free(c);
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
    c->table_part = mlt_calloc(job->n_tables, sizeof *c->table_part);
    for (uint32_t t = 0; t < job->n_tables; t++)
        c->table_part[t] = ALL_PARTS;
    for (uint32_t i = 0; i < c->n_parts; i++) {
        const part_t *pt = &c->parts[i];
        bool whole = pt->first == 0 &&
                     pt->count == mlt_layout_chunks(c->tables[pt->table].size, c->chunk_floats);
        if (whole)
            c->table_part[pt->table] = i;
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
    w->has_warmup = t->warmup >= 0;
    w->warmup = t->warmup >= 0 ? (uint32_t)t->warmup : 0;
    return w;
}

/* Sends one control request to every shard and waits for all of them. */
static int control_all(mlt_client_t *c, Mlt__MsgType type, uint32_t branch, int64_t parent,
                       int kind, const mlt_tunables_def_t *t)
{
    Mlt__Tunables wt;
    Mlt__Tunables *tw = to_wire(t, &wt);
    char err[256];
    if (tw && mlt_wire_check_tunables(tw, err, sizeof err) < 0)
        return mlt_client__err(c, -EINVAL, "%s", err);
    for (uint32_t s = 0; s < c->n; s++) {
        mlt_header_t h;
        pending_t *p = mlt_client__pending(c, s, P_ACK);
        mlt_client__header(c, &h, type, p);
        h.has_branch = 1;
        h.branch = branch;
        h.has_parent = parent >= 0;
        h.parent = parent >= 0 ? (uint32_t)parent : 0;
        h.has_kind = kind >= 0;
        h.kind = kind >= 0 ? mlt_kind_to_wire((mlt_branch_kind_t)kind) : 0;
        h.tunables = tw;
        int rc = mlt_client__send(c, s, &h);
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
    mlt_client__prefetch_drop(c, id, false);
    cache_t *ca = mlt_client__cache_find(c, id);
    if (ca)
        mlt_client__cache_clear(c, ca);
    return control_all(c, MLT__MSG_TYPE__MSG_FREE, id, -1, -1, NULL);
}

int mlt_branch_set_tunables(mlt_client_t *c, uint32_t id, const mlt_tunables_def_t *t)
{
    cache_t *ca = mlt_client__cache_find(c, id);
    if (ca && t && t->staleness >= 0) {
        ca->valid = false; /* cached staleness is stale */
        mlt_client__prefetch_drop(c, id, false);
    }
    return control_all(c, MLT__MSG_TYPE__MSG_SET_TUNABLES, id, -1, -1, t);
}

int mlt_client_job_end(mlt_client_t *c)
{
    mlt_client__prefetch_drop(c, 0, true);
    for (int i = 0; i < MAX_CACHES; i++)
        mlt_client__cache_clear(c, &c->caches[i]);
    for (uint32_t s = 0; s < c->n; s++) {
        mlt_header_t h;
        pending_t *p = mlt_client__pending(c, s, P_ACK);
        mlt_client__header(c, &h, MLT__MSG_TYPE__MSG_JOB_END, p);
        int rc = mlt_client__send(c, s, &h);
        if (rc < 0)
            return rc;
    }
    return mlt_sync(c);
}

int mlt_client_worker_state(mlt_client_t *c, uint32_t worker, bool gone)
{
    for (uint32_t s = 0; s < c->n; s++) {
        mlt_header_t h;
        pending_t *p = mlt_client__pending(c, s, P_ACK);
        mlt_client__header(
            c, &h, gone ? MLT__MSG_TYPE__MSG_WORKER_GONE : MLT__MSG_TYPE__MSG_WORKER_BACK, p);
        h.worker = worker;
        int rc = mlt_client__send(c, s, &h);
        if (rc < 0)
            return rc;
    }
    return mlt_sync(c);
}

/* ---- status --------------------------------------------------------------- */

int mlt_client_status(mlt_client_t *c, uint32_t server, mlt_server_status_t *out)
{
    if (server >= c->n)
        return mlt_client__err(c, -EINVAL, "server %u: the client knows %u", server, c->n);
    memset(out, 0, sizeof *out);
    mlt_header_t h;
    pending_t *p = mlt_client__pending(c, server, P_STATUS);
    p->st = out;
    mlt_client__header(c, &h, MLT__MSG_TYPE__MSG_STATUS, p);
    int rc = mlt_client__send(c, server, &h);
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
