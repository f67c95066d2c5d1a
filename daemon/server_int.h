/* server_int.h - the request loop's insides, shared by server.c and
 * server_data.c: the server's body, the request being served and the reply
 * helpers. All of it belongs to the thread that calls mlt_server_run(). */
#ifndef MLT_SERVER_INT_H
#define MLT_SERVER_INT_H

#include <stddef.h>
#include <stdint.h>
#include <zmq.h>

#include "common/timeutil.h"
#include "daemon/clientq.h"
#include "daemon/server.h"
#include "daemon/shmseg.h"
#include "daemon/ssp.h"
#include "daemon/store.h"
#include "proto/wire.h"

struct mlt_server {
    void *ctx;
    void *router;
    struct mlt_zap *zap; /* the ZAP handler of ctx when CurveZMQ is on, else NULL */
    mlt_store_t *store;
    mlt_ssp_t *parked;
    mlt_shmseg_t *shm;
    mlt_clientq_t *clients; /* per client: unsent reply bytes, parked pulls (clientq.h) */
    uint32_t rank, n_servers;
    double pull_timeout_s;
    char *state_dir;  /* where CKPT_SAVE writes (server_ckpt.c) */
    bool restored;    /* a checkpoint was loaded: only connections that said HELLO
                       * since (and the loader's) are served (server_ckpt.c) */
    uint64_t *hellos; /* hashes of the routing ids that said HELLO (a ring) */
    uint32_t n_hellos, next_hello;
    char endpoint[256];
    float *scratch;   /* aligned copy of a misaligned payload frame, or of a shm payload */
    zmq_msg_t *frames; /* frames of the request being served */
    size_t n_frames;
    /* counters since start, for STATUS (and so metrics) */
    uint64_t n_requests, n_errors, n_pulls, n_pushes, bytes_in, bytes_out;
    uint64_t n_dropped; /* replies not sent: the client's queue was full, or it was gone */
    /* timing (Header.trace, #15): the request being served asked for its
     * stamps; tr[] (MLT_TRACE_STAMPS) are those taken so far; wake_ns is when
     * the loop woke for the batch being served (0 once used) */
    bool trace;
    uint64_t tr[MLT_TRACE_STAMPS];
    uint64_t wake_ns;
    /* a STEP's request id, answered by the PULL_REPLY of the pull it carries
     * when that is sent at once (Header.acks; 0: none, or sent) */
    uint64_t ack_with_pull;
};

/* Stamps step i (MLT_TR_*, proto/wire.h) of a traced request. */
static inline void mlt_server__stamp(mlt_server_t *s, unsigned i)
{
    if (s->trace)
        s->tr[i] = mlt_time_mono_ns();
}
/* Stamps MLT_TR_SENT and puts the stamps into reply r (of a traced request). */
void mlt_server__trace_reply(mlt_server_t *s, mlt_header_t *r);

/* The request being served. */
typedef struct req {
    zmq_msg_t *id;      /* routing id frame */
    mlt_header_t *h;    /* decoded header, NULL if it did not decode */
    zmq_msg_t *payload; /* frames after the header */
    size_t n_payload;
    uint64_t peeked_id; /* request id of a header that parsed but failed validation */
} req_t;

/* server.c: replies */
/* Sends the routing id frame of a reply: 0, or -EAGAIN when the client has
 * MLT_MAX_QUEUED_MSGS replies unread (ZMQ_SNDHWM), -EHOSTUNREACH when it is
 * gone; then the reply is dropped (counted, logged) and the caller sends
 * none of its other frames. */
int mlt_server__send_id(mlt_server_t *s, const void *id, size_t len);
/* Replies ERROR (code, text) to the request `request_id` from routing id `id`. */
void mlt_server__send_error_to(mlt_server_t *s, const void *id, size_t id_len, uint64_t request_id,
                               int code, const char *text);
/* Replies ERROR to the current request and logs it (rate limited: a peer can
 * trigger it). Returns code so handlers can `return reply_error(...)`. */
int mlt_server__reply_error(mlt_server_t *s, req_t *rq, int code, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));
/* Replies OK to the current request, with the server's info if with_info. */
int mlt_server__reply_ok(mlt_server_t *s, req_t *rq, int with_info);
/* The request's branch, or NULL after replying ENOENT. */
mlt_branch_t *mlt_server__find_branch(mlt_server_t *s, req_t *rq);

/* server_data.c: pulls, pushes and writes */
int mlt_server__handle_pull(mlt_server_t *s, req_t *rq);
int mlt_server__handle_push(mlt_server_t *s, req_t *rq, int is_write);
/* STEP (#15): the pushes of a clock from the client's segment, then the clock. */
int mlt_server__handle_step(mlt_server_t *s, req_t *rq);
/* server.c: counts clock `clock` of worker on b: 0, or -errno with the message
 * in err. mlt_server__release then answers the parked pulls it allows (given
 * b's min_clock before it), after the request's own reply. */
int mlt_server__count_clock(mlt_server_t *s, mlt_branch_t *b, uint32_t worker, int64_t clock,
                            char *err, size_t errlen);
void mlt_server__release(mlt_server_t *s, mlt_branch_t *b, int64_t before);
/* The parked-pull queue's callbacks (arg: the server): a pull released gets
 * its reply, one expired or whose branch was freed an ERROR. */
void mlt_server__on_released(void *arg, const mlt_parked_t *p);
/* server_workers.c: MSG_WORKER_GONE / MSG_WORKER_BACK from the coordinator. */
int mlt_server__handle_worker(mlt_server_t *s, req_t *rq);
void mlt_server__on_expired(void *arg, const mlt_parked_t *p);
void mlt_server__on_dropped(void *arg, const mlt_parked_t *p);

/* server_ckpt.c: checkpoints (#12) */
/* CKPT_SAVE and CKPT_LOAD. */
int mlt_server__handle_ckpt(mlt_server_t *s, req_t *rq);
/* Notes that routing id `id` said HELLO to this process. */
void mlt_server__hello(mlt_server_t *s, const void *id, size_t len);
/* true when a checkpoint was restored and `id` has not said HELLO since (nor
 * loaded it): a connection of a client from before the restore, whose
 * requests would land on the restored branches. */
bool mlt_server__stale(const mlt_server_t *s, const void *id, size_t len);
/* Removes this shard's checkpoint files of job (JOB_END: the job is over). */
void mlt_server__ckpt_drop(mlt_server_t *s, const char *job);
/* <state_dir>/checkpoints/<job>/<seq> into out. */
void mlt_server__ckpt_dir(const mlt_server_t *s, const char *job, uint64_t seq, char *out,
                          size_t cap);

#endif
