/* session.c - the worker's side of the job protocol (#13): JOIN with what the
 * worker runs, the TASKs in order, REPORTs, heartbeats from a thread of the
 * session's own, LEAVE. The job's data (pull, push, clock) goes through the
 * session's client, made by mlt_session_load. See mltuner.h for the API and
 * proto/PROTOCOL.md ("Workers") for the messages. */
#include <errno.h>
#include <math.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <zmq.h>

#include "client/mltuner.h"
#include "common/alloc.h"
#include "common/errtext.h"
#include "common/jobfile.h"
#include "common/timeutil.h"
#include "proto/wire.h"

#define HEARTBEAT_S       0.5  /* the coordinator drops a worker silent for worker_timeout_s */
#define JOIN_AGAIN_S      10.0 /* JOIN again while no task comes (a restarted daemon) */
#define DEFAULT_TIMEOUT_S 60.0
#define POLL_SLICE_MS     100  /* the socket lock is held at most this long */
#define REFUSED_RETRY_S   1.0  /* a JOIN refused (rank taken) is sent again after this */
#define REFUSED_GIVE_UP_S 5.0  /* past the coordinator's liveness window (1.5 s): a live
                                  worker has the rank */

enum { S_JOINED, S_LEFT, S_REPLACED };

_Static_assert((int)MLT_TASK_JOB == (int)MLT__TASK_KIND__TASK_JOB &&
                   (int)MLT_TASK_INIT == (int)MLT__TASK_KIND__TASK_INIT &&
                   (int)MLT_TASK_RUN == (int)MLT__TASK_KIND__TASK_RUN &&
                   (int)MLT_TASK_TEST == (int)MLT__TASK_KIND__TASK_TEST &&
                   (int)MLT_TASK_STOP == (int)MLT__TASK_KIND__TASK_STOP,
               "mlt_task_kind_t is the wire's TaskKind");

struct mlt_session {
    void *ctx, *sock, *mon; /* DEALER to the coordinator; PAIR of its connect events */
    pthread_mutex_t lock;   /* sock: the caller's thread and the heartbeat thread */
    pthread_t hb;
    bool hb_on;
    atomic_int hb_stop;
    char endpoint[MLT_MAX_ENDPOINT_LEN + 1];
    uint32_t rank, threads;
    char program[MLT_MAX_PROGRAM_LEN + 1];
    char backends[16];
    mlt_client_keys_t keys;
    bool have_keys;
    double timeout_s; /* < 0: wait for the coordinator forever */
    void (*on_event)(void *, const char *);
    void *event_arg;
    int state;
    int connects;      /* connections made to the coordinator so far */
    double down_since; /* since when the coordinator is unreachable (0: connected) */
    double last_join, last_rejoin;
    bool accepted;        /* a task came since the last JOIN: the rank is this session's */
    double refused_since; /* JOINs refused (the rank held by a live connection) since */
    /* the current task */
    mlt_header_t *msg; /* the TASK it came in (its strings back task's) */
    mlt_task_t task;
    bool open; /* the task still owes its final report */
    /* the job, from the last TASK_JOB */
    mlt_job_t job;
    bool have_job;
    char **servers;
    uint32_t n_servers, n_workers;
    mlt_client_t *client;
    char err[512];
};

static void say(mlt_session_t *s, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

static void say(mlt_session_t *s, const char *fmt, ...)
{
    if (!s->on_event)
        return;
    char what[640];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(what, sizeof what, fmt, ap);
    va_end(ap);
    s->on_event(s->event_arg, what);
}

static void send_header(mlt_session_t *s, mlt_header_t *h)
{
    h->has_worker = 1;
    h->worker = s->rank;
    pthread_mutex_lock(&s->lock);
    mlt_wire_send(s->sock, h, ZMQ_DONTWAIT); /* none while the coordinator is away */
    pthread_mutex_unlock(&s->lock);
}

static void send_join(mlt_session_t *s)
{
    Mlt__JoinInfo j;
    mlt__join_info__init(&j);
    j.program = s->program;
    j.backends = s->backends;
    j.has_threads = 1;
    j.threads = s->threads;
    mlt_header_t h;
    mlt_wire_init(&h, MLT__MSG_TYPE__MSG_JOIN);
    h.join = &j;
    send_header(s, &h);
    s->last_join = mlt_time_mono();
}

static void *heartbeat_main(void *arg)
{
    mlt_session_t *s = arg;
    while (!s->hb_stop) {
        mlt_header_t h;
        mlt_wire_init(&h, MLT__MSG_TYPE__MSG_HEARTBEAT);
        send_header(s, &h);
        for (int i = 0; i < 5 && !s->hb_stop; i++)
            nanosleep(&(struct timespec){0, (long)(HEARTBEAT_S / 5 * 1e9)}, NULL);
    }
    return NULL;
}

static void stop_heartbeats(mlt_session_t *s)
{
    if (!s->hb_on)
        return;
    s->hb_stop = 1;
    pthread_join(s->hb, NULL);
    s->hb_on = false;
}

/* The job is gone (a new JOB, a drop, leave): its client and settings. */
static void drop_job(mlt_session_t *s)
{
    mlt_client_destroy(&s->client);
    if (s->have_job)
        mlt_job_free(&s->job);
    s->have_job = false;
    for (uint32_t i = 0; i < s->n_servers; i++)
        mlt_free(s->servers[i]);
    mlt_free(s->servers);
    s->servers = NULL;
    s->n_servers = 0;
}

/* The open task's final report (error: NULL, or why it failed). */
static void final_report(mlt_session_t *s, Mlt__Report *r, const char *error)
{
    char buf[MLT_MAX_ERROR_LEN + 1];
    r->kind = (Mlt__TaskKind)s->task.kind;
    r->has_task_id = r->has_done = 1;
    r->task_id = s->task.id;
    r->done = 1;
    if (error) {
        snprintf(buf, sizeof buf, "%s", error);
        r->error = buf;
    }
    mlt_header_t h;
    mlt_wire_init(&h, MLT__MSG_TYPE__MSG_REPORT);
    h.report = r;
    send_header(s, &h);
    s->open = false;
}

static void fail_open_task(mlt_session_t *s, const char *why)
{
    Mlt__Report r;
    mlt__report__init(&r);
    final_report(s, &r, why);
    if (s->task.kind == MLT_TASK_JOB)
        drop_job(s);
}

/* ---- join and leave ------------------------------------------------------------- */

static bool name_ok(const char *p)
{
    size_t n = strnlen(p, MLT_MAX_PROGRAM_LEN + 1);
    return n >= 1 && n <= MLT_MAX_PROGRAM_LEN &&
           strspn(p, "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789._-") == n;
}

mlt_session_t *mlt_session_join(const mlt_session_opts_t *o, char *err, size_t errlen)
{
    const char *program = o && o->program ? o->program : "worker";
    const char *backends = o && o->backends ? o->backends : "cpu";
    int rc = 0;
    if (!o || !o->coordinator || !*o->coordinator ||
        strlen(o->coordinator) > MLT_MAX_ENDPOINT_LEN)
        rc = mlt_errf(-EINVAL, err, errlen, "session: the coordinator's endpoint is missing or "
                                            "longer than %u bytes", MLT_MAX_ENDPOINT_LEN);
    else if (o->rank >= MLT_MAX_WORKERS)
        rc = mlt_errf(-EINVAL, err, errlen, "session: rank %u exceeds %u", o->rank,
                      MLT_MAX_WORKERS - 1);
    else if (!name_ok(program))
        rc = mlt_errf(-EINVAL, err, errlen,
                      "session: program '%.80s' must be 1..%u of A-Z a-z 0-9 . _ -", program,
                      MLT_MAX_PROGRAM_LEN);
    else if (strcmp(backends, "cpu") && strcmp(backends, "cuda") && strcmp(backends, "cpu,cuda"))
        rc = mlt_errf(-EINVAL, err, errlen,
                      "session: backends '%.40s' must be cpu, cuda or cpu,cuda", backends);
    else if (o->threads > MLT_MAX_THREADS)
        rc = mlt_errf(-EINVAL, err, errlen, "session: %u threads, limit %u", o->threads,
                      MLT_MAX_THREADS);
    if (rc) {
        errno = -rc;
        return NULL;
    }
    mlt_session_t *s = mlt_calloc(1, sizeof *s);
    snprintf(s->endpoint, sizeof s->endpoint, "%s", o->coordinator);
    snprintf(s->program, sizeof s->program, "%s", program);
    snprintf(s->backends, sizeof s->backends, "%s", backends);
    s->rank = o->rank;
    s->threads = o->threads ? o->threads : 1;
    s->timeout_s = o->timeout_s == 0 ? DEFAULT_TIMEOUT_S : o->timeout_s;
    s->on_event = o->on_event;
    s->event_arg = o->event_arg;
    if (o->keys) {
        s->keys = *o->keys;
        s->have_keys = true;
    }
    pthread_mutex_init(&s->lock, NULL);
    s->ctx = zmq_ctx_new();
    s->sock = s->ctx ? zmq_socket(s->ctx, ZMQ_DEALER) : NULL;
    int zero = 0;
    int64_t maxmsg = MLT_MAX_HEADER_BYTES;
    if (!s->sock) {
        rc = mlt_errf(-ENOMEM, err, errlen, "session: no ZeroMQ socket: %s", zmq_strerror(errno));
        goto fail;
    }
    zmq_setsockopt(s->sock, ZMQ_LINGER, &zero, sizeof zero);
    zmq_setsockopt(s->sock, ZMQ_MAXMSGSIZE, &maxmsg, sizeof maxmsg);
    if (s->have_keys &&
        (zmq_setsockopt(s->sock, ZMQ_CURVE_SERVERKEY, s->keys.server_key, 41) < 0 ||
         zmq_setsockopt(s->sock, ZMQ_CURVE_PUBLICKEY, s->keys.public_key, 41) < 0 ||
         zmq_setsockopt(s->sock, ZMQ_CURVE_SECRETKEY, s->keys.secret_key, 41) < 0)) {
        rc = mlt_errf(-EINVAL, err, errlen, "session: CurveZMQ keys refused: %s",
                      zmq_strerror(zmq_errno()));
        goto fail;
    }
    /* connects and disconnects: a restarted daemon is joined at once, and
     * one away too long ends the session (timeout_s) */
    char monep[64];
    snprintf(monep, sizeof monep, "inproc://mlt-session-%p", (void *)s);
    if (zmq_socket_monitor(s->sock, monep, ZMQ_EVENT_CONNECTED | ZMQ_EVENT_DISCONNECTED) == 0) {
        s->mon = zmq_socket(s->ctx, ZMQ_PAIR);
        zmq_setsockopt(s->mon, ZMQ_LINGER, &zero, sizeof zero);
        if (zmq_connect(s->mon, monep) < 0) {
            zmq_close(s->mon);
            s->mon = NULL;
        }
    }
    if (zmq_connect(s->sock, s->endpoint) < 0) {
        rc = mlt_errf(-EINVAL, err, errlen, "session: cannot connect to %s: %s", s->endpoint,
                      zmq_strerror(zmq_errno()));
        goto fail;
    }
    s->down_since = mlt_time_mono(); /* until the connection is made */
    send_join(s);
    s->hb_on = pthread_create(&s->hb, NULL, heartbeat_main, s) == 0;
    if (!s->hb_on) {
        rc = mlt_errf(-EAGAIN, err, errlen, "session: cannot start the heartbeat thread");
        goto fail;
    }
    return s;
fail:
    mlt_session_destroy(&s);
    errno = -rc;
    return NULL;
}

int mlt_session_leave(mlt_session_t *s)
{
    if (s->state == S_LEFT)
        return 0;
    if (s->open)
        fail_open_task(s, "the worker left");
    if (s->state == S_JOINED) {
        mlt_header_t h;
        mlt_wire_init(&h, MLT__MSG_TYPE__MSG_LEAVE);
        send_header(s, &h);
    }
    stop_heartbeats(s);
    drop_job(s);
    s->state = S_LEFT;
    return 0;
}

void mlt_session_destroy(mlt_session_t **sp)
{
    mlt_session_t *s = *sp;
    if (!s)
        return;
    if (s->sock)
        mlt_session_leave(s);
    stop_heartbeats(s);
    drop_job(s);
    mlt_wire_free(&s->msg);
    if (s->mon) {
        zmq_socket_monitor(s->sock, NULL, 0);
        zmq_close(s->mon);
    }
    if (s->sock) {
        int linger = 500; /* the LEAVE goes out */
        zmq_setsockopt(s->sock, ZMQ_LINGER, &linger, sizeof linger);
        zmq_close(s->sock);
    }
    if (s->ctx)
        zmq_ctx_term(s->ctx);
    pthread_mutex_destroy(&s->lock);
    mlt_free(s);
    *sp = NULL;
}

const char *mlt_session_error(const mlt_session_t *s)
{
    return s->err;
}

mlt_client_t *mlt_session_client(mlt_session_t *s)
{
    return s->client;
}

/* ---- tasks ------------------------------------------------------------------------ */

/* Connect and disconnect events of the control socket since the last look. */
static void watch_connection(mlt_session_t *s)
{
    if (!s->mon)
        return;
    zmq_msg_t ev;
    zmq_msg_init(&ev);
    while (zmq_msg_recv(&ev, s->mon, ZMQ_DONTWAIT) >= 0) {
        /* frame 1: event (16 bits) and value (32 bits); frame 2: the address */
        uint16_t event = 0;
        if (zmq_msg_size(&ev) >= 2)
            memcpy(&event, zmq_msg_data(&ev), sizeof event);
        while (zmq_msg_more(&ev)) {
            zmq_msg_close(&ev);
            zmq_msg_init(&ev);
            zmq_msg_recv(&ev, s->mon, 0);
        }
        if (event == ZMQ_EVENT_CONNECTED) {
            s->down_since = 0;
            if (s->connects++ > 0 && s->state == S_JOINED) { /* perhaps a restarted daemon */
                say(s, "connection to %s re-established; joining again", s->endpoint);
                send_join(s);
            }
        } else if (event == ZMQ_EVENT_DISCONNECTED && !s->down_since) {
            s->down_since = mlt_time_mono();
            say(s, "lost the connection to the coordinator at %s", s->endpoint);
        }
        zmq_msg_close(&ev);
        zmq_msg_init(&ev);
    }
    zmq_msg_close(&ev);
}

/* The next message from the coordinator within timeout_ms: 1 with *hp set,
 * 0 on none (or an undecodable one), -1 when the socket failed. */
static int recv_header(mlt_session_t *s, long timeout_ms, mlt_header_t **hp)
{
    *hp = NULL;
    zmq_pollitem_t it = {.socket = s->sock, .events = ZMQ_POLLIN};
    pthread_mutex_lock(&s->lock);
    int n = zmq_poll(&it, 1, timeout_ms);
    if (n <= 0) {
        int e = zmq_errno();
        pthread_mutex_unlock(&s->lock);
        return n < 0 && e != EINTR ? -1 : 0;
    }
    zmq_msg_t m;
    zmq_msg_init(&m);
    if (zmq_msg_recv(&m, s->sock, ZMQ_DONTWAIT) < 0) {
        zmq_msg_close(&m);
        pthread_mutex_unlock(&s->lock);
        return 0;
    }
    while (zmq_msg_more(&m)) { /* tasks have no payload frames: drop any */
        zmq_msg_close(&m);
        zmq_msg_init(&m);
        zmq_msg_recv(&m, s->sock, 0);
    }
    pthread_mutex_unlock(&s->lock);
    char err[256];
    int rc = mlt_wire_decode(zmq_msg_data(&m), zmq_msg_size(&m), hp, err, sizeof err);
    zmq_msg_close(&m);
    if (rc) {
        say(s, "bad message from the coordinator ignored: %s", err);
        return 0;
    }
    return 1;
}

/* A TASK_JOB: the job's settings kept for mlt_session_load. 0, or -1 after
 * failing the task (a job text that does not parse). */
static int take_job(mlt_session_t *s, const Mlt__Task *t)
{
    drop_job(s);
    char err[512];
    if (!t->job_text || mlt_job_parse_string(t->job_text, "job", &s->job, err, sizeof err) < 0) {
        fail_open_task(s, t->job_text ? err : "TASK_JOB without job text");
        return -1;
    }
    s->have_job = true;
    s->n_workers = t->has_n_workers ? t->n_workers : (uint32_t)s->job.workers;
    s->servers = mlt_calloc(t->n_servers ? t->n_servers : 1, sizeof *s->servers);
    for (size_t i = 0; i < t->n_servers; i++)
        s->servers[i] = mlt_strdup(t->servers[i]);
    s->n_servers = (uint32_t)t->n_servers;
    s->task.job_name = s->job.name;
    s->task.job_text = t->job_text;
    s->task.model = mlt_job_enum_name("model.type", (int)s->job.model.type);
    s->task.n_workers = s->n_workers;
    s->task.seed = (uint64_t)s->job.seed;
    return 0;
}

/* s->msg's task into s->task: 1 when the caller has a task to do, 0 when the
 * session answered it itself (a job that does not parse, a task before any
 * job). */
static int take_task(mlt_session_t *s)
{
    const Mlt__Task *t = s->msg->task;
    mlt_task_t *k = &s->task;
    memset(k, 0, sizeof *k);
    k->kind = (mlt_task_kind_t)t->kind;
    k->id = t->task_id;
    k->branch = t->branch;
    k->clock_start = t->has_clock_start ? t->clock_start : 0;
    k->clocks = t->clocks;
    k->batch_size = t->has_batch_size ? t->batch_size : 128;
    k->seek = t->has_data_epoch;
    k->data_epoch = t->data_epoch;
    k->reason = t->reason ? t->reason : "job over";
    if (k->kind < MLT_TASK_JOB || k->kind > MLT_TASK_STOP) {
        say(s, "unknown task kind %d ignored", (int)t->kind);
        return 0;
    }
    s->open = k->kind != MLT_TASK_STOP;
    if (k->kind == MLT_TASK_JOB && take_job(s, t) < 0)
        return 0;
    if ((k->kind == MLT_TASK_INIT || k->kind == MLT_TASK_RUN || k->kind == MLT_TASK_TEST) &&
        (!s->client || !t->has_branch || (k->kind == MLT_TASK_RUN && !t->has_clocks))) {
        fail_open_task(s, s->client ? "a task without its branch or clocks"
                                    : "a task before the job was loaded");
        return 0;
    }
    k->share = t->has_share_count ? t->share : s->rank;
    k->share_count = t->has_share_count ? t->share_count : s->n_workers;
    if (k->kind == MLT_TASK_STOP)
        drop_job(s);
    return 1;
}

int mlt_session_next(mlt_session_t *s, double wait_s, mlt_task_t *task)
{
    if (s->state == S_LEFT)
        return mlt_errf(-ENOTCONN, s->err, sizeof s->err, "the session has left the job");
    if (s->state == S_REPLACED)
        return -EADDRINUSE; /* s->err says so since */
    if (s->open)
        fail_open_task(s, "abandoned: the worker took the next task without finishing this one");
    mlt_wire_free(&s->msg);
    const double deadline = mlt_time_mono() + (wait_s > 0 ? wait_s : 0);
    for (;;) {
        watch_connection(s);
        double now = mlt_time_mono();
        if (s->timeout_s >= 0 && s->down_since && now - s->down_since > s->timeout_s)
            return mlt_errf(-ETIMEDOUT, s->err, sizeof s->err,
                            "the coordinator at %s is unreachable: no connection for %.0f s "
                            "(timeout %g s)",
                            s->endpoint, now - s->down_since, s->timeout_s);
        if (now - s->last_join > JOIN_AGAIN_S)
            send_join(s);
        long ms = (long)((deadline - now) * 1000);
        mlt_header_t *h;
        int n = recv_header(s, ms < 0 ? 0 : ms > POLL_SLICE_MS ? POLL_SLICE_MS : ms, &h);
        if (n < 0)
            return mlt_errf(-EIO, s->err, sizeof s->err, "the control socket to %s failed: %s",
                            s->endpoint, zmq_strerror(zmq_errno()));
        if (n == 0) {
            if (mlt_time_mono() >= deadline)
                return 0;
            continue;
        }
        if (h->type == MLT__MSG_TYPE__MSG_ERROR && h->has_error_code &&
            h->error_code == EADDRINUSE) {
            /* the rank is another connection's: refused while a restarted
             * worker's old connection still counts as live, so asked again
             * for a while; out at once when this session held the rank */
            now = mlt_time_mono();
            if (!s->refused_since)
                s->refused_since = now;
            if (s->accepted || now - s->refused_since > REFUSED_GIVE_UP_S) {
                mlt_errf(-EADDRINUSE, s->err, sizeof s->err, "%s",
                         h->error ? h->error : "another connection has this rank");
                mlt_wire_free(&h);
                s->state = S_REPLACED;
                stop_heartbeats(s);
                drop_job(s);
                return -EADDRINUSE;
            }
            s->last_join = now - JOIN_AGAIN_S + REFUSED_RETRY_S;
            mlt_wire_free(&h);
            continue;
        }
        if (h->type == MLT__MSG_TYPE__MSG_ERROR && h->has_error_code && h->error_code == ESTALE) {
            /* dropped (silent too long): join again, the job is handed out anew
             * (not while JOINs are refused: the heartbeats of a connection
             * that holds no rank are answered so too) */
            if (!s->refused_since && mlt_time_mono() - s->last_rejoin > 1.0) {
                say(s, "the coordinator dropped this worker (%s); joining again",
                    h->error ? h->error : "stale connection");
                drop_job(s);
                send_join(s);
                s->accepted = false;
                s->last_rejoin = mlt_time_mono();
            }
        } else if (h->type == MLT__MSG_TYPE__MSG_ERROR) {
            say(s, "coordinator: %s", h->error ? h->error : "error");
        } else if (h->type == MLT__MSG_TYPE__MSG_TASK && h->task) {
            s->msg = h;
            s->last_join = mlt_time_mono(); /* heard from: no periodic JOIN needed */
            s->accepted = true;
            s->refused_since = 0;
            if (take_task(s)) {
                *task = s->task;
                return 1;
            }
            mlt_wire_free(&s->msg);
            continue;
        }
        mlt_wire_free(&h);
    }
}

static const char *kind_name(int k)
{
    static const char *const names[] = {"none", "JOB", "INIT", "RUN", "TEST", "STOP"};
    return k >= 0 && k <= MLT_TASK_STOP ? names[k] : "unknown";
}

/* 0 when a task of kind k1 or k2 is open, else -errno naming the call. */
static int need_task(mlt_session_t *s, const char *call, mlt_task_kind_t k1, mlt_task_kind_t k2)
{
    if (s->state != S_JOINED)
        return mlt_errf(s->state == S_LEFT ? -ENOTCONN : -EADDRINUSE, s->err, sizeof s->err,
                        "%s: the session has %s", call,
                        s->state == S_LEFT ? "left the job" : "lost its rank to another worker");
    if (!s->open)
        return mlt_errf(-EINVAL, s->err, sizeof s->err, "%s: no task is open", call);
    if (s->task.kind != k1 && s->task.kind != k2)
        return mlt_errf(-EINVAL, s->err, sizeof s->err, "%s: the open task is %s, not %s%s%s",
                        call, kind_name(s->task.kind), kind_name(k1), k2 != k1 ? " or " : "",
                        k2 != k1 ? kind_name(k2) : "");
    return 0;
}

int mlt_session_load(mlt_session_t *s, const mlt_table_def_t *tables, uint32_t n_tables,
                     uint64_t part, uint64_t train_total)
{
    int rc = need_task(s, "mlt_session_load", MLT_TASK_JOB, MLT_TASK_JOB);
    if (rc)
        return rc;
    if (train_total > UINT32_MAX || part > train_total) {
        rc = mlt_errf(-EINVAL, s->err, sizeof s->err,
                      "mlt_session_load: part %llu of train_total %llu (at most %u)",
                      (unsigned long long)part, (unsigned long long)train_total, UINT32_MAX);
        fail_open_task(s, s->err);
        return rc;
    }
    char err[512];
    s->client = mlt_client_new_keys((const char *const *)s->servers, s->n_servers, s->rank,
                                    s->have_keys ? &s->keys : NULL, err, sizeof err);
    if (!s->client) {
        rc = mlt_errf(errno ? -errno : -EIO, s->err, sizeof s->err, "%s", err);
        fail_open_task(s, s->err);
        return rc;
    }
    if (s->timeout_s > 0)
        mlt_client_set_timeout(s->client, s->timeout_s);
    mlt_job_def_t jd = {s->job.name, s->n_workers, mlt_job_enum_name("update.rule", s->job.update.rule),
                        tables, n_tables, s->job.update.average};
    rc = mlt_client_register(s->client, &jd);
    if (rc < 0) {
        mlt_errf(rc, s->err, sizeof s->err, "%s", mlt_client_error(s->client));
        fail_open_task(s, s->err);
        return rc;
    }
    Mlt__Report r;
    mlt__report__init(&r);
    r.has_count = r.has_train_total = 1;
    r.count = part;
    r.train_total = train_total;
    final_report(s, &r, NULL);
    return 0;
}

int mlt_session_report_clock(mlt_session_t *s, int64_t clock, double loss, uint64_t correct,
                             uint64_t count, double epoch)
{
    int rc = need_task(s, "mlt_session_report_clock", MLT_TASK_RUN, MLT_TASK_RUN);
    if (rc)
        return rc;
    const mlt_task_t *t = &s->task;
    if (clock <= t->clock_start || clock > t->clock_start + t->clocks)
        return mlt_errf(-EINVAL, s->err, sizeof s->err,
                        "mlt_session_report_clock: clock %lld is outside this task's (%lld, %lld]",
                        (long long)clock, (long long)t->clock_start,
                        (long long)(t->clock_start + t->clocks));
    if (correct > count || !(epoch >= 0 && epoch < 1e9))
        return mlt_errf(-EINVAL, s->err, sizeof s->err,
                        "mlt_session_report_clock: correct %llu of count %llu, epoch %g",
                        (unsigned long long)correct, (unsigned long long)count, epoch);
    Mlt__Report r;
    mlt__report__init(&r);
    r.kind = MLT__TASK_KIND__TASK_RUN;
    r.has_branch = r.has_clock = r.has_loss = r.has_epoch = r.has_correct = r.has_count = 1;
    r.branch = t->branch;
    r.clock = clock;
    r.loss = loss;
    r.correct = correct;
    r.count = count;
    r.epoch = epoch;
    mlt_header_t h;
    mlt_wire_init(&h, MLT__MSG_TYPE__MSG_REPORT);
    h.report = &r;
    send_header(s, &h);
    return 0;
}

int mlt_session_report_test(mlt_session_t *s, const mlt_eval_sums_t *v, const mlt_eval_sums_t *te)
{
    int rc = need_task(s, "mlt_session_report_test", MLT_TASK_TEST, MLT_TASK_TEST);
    if (rc)
        return rc;
    if (v->correct > v->count || te->correct > te->count)
        return mlt_errf(-EINVAL, s->err, sizeof s->err,
                        "mlt_session_report_test: more samples correct than evaluated");
    Mlt__Report r;
    mlt__report__init(&r);
    r.has_loss = r.has_correct = r.has_count = r.has_sq_error = 1;
    r.loss = v->loss;
    r.correct = v->correct;
    r.count = v->count;
    r.sq_error = v->sq_error;
    r.has_test_loss = r.has_test_correct = r.has_test_count = r.has_test_sq_error = 1;
    r.test_loss = te->loss;
    r.test_correct = te->correct;
    r.test_count = te->count;
    r.test_sq_error = te->sq_error;
    final_report(s, &r, NULL);
    return 0;
}

int mlt_session_done(mlt_session_t *s, double epoch)
{
    int rc = need_task(s, "mlt_session_done", MLT_TASK_INIT, MLT_TASK_RUN);
    if (rc)
        return rc;
    /* Everything sent to the shards is acknowledged before the coordinator
     * hears "done" (it may free the branch next, over another connection). A
     * branch that refused NaN (EDOM) is diverged, not failed. */
    rc = mlt_sync(s->client);
    if (rc < 0 && rc != -EDOM) {
        mlt_errf(rc, s->err, sizeof s->err, "%s", mlt_client_error(s->client));
        fail_open_task(s, s->err);
        return rc;
    }
    Mlt__Report r;
    mlt__report__init(&r);
    if (s->task.kind == MLT_TASK_RUN && epoch >= 0 && epoch < 1e9) {
        r.has_epoch = 1;
        r.epoch = epoch;
    }
    final_report(s, &r, NULL);
    return 0;
}

int mlt_session_fail(mlt_session_t *s, const char *why)
{
    int rc = need_task(s, "mlt_session_fail", s->task.kind, s->task.kind);
    if (rc)
        return rc;
    fail_open_task(s, why && *why ? why : "failed (no reason given)");
    return 0;
}
