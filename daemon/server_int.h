/* server_int.h - the request loop's insides, shared by server.c and
 * server_data.c: the server's body, the request being served and the reply
 * helpers. All of it belongs to the thread that calls mlt_server_run(). */
#ifndef MLT_SERVER_INT_H
#define MLT_SERVER_INT_H

#include <stddef.h>
#include <stdint.h>
#include <zmq.h>

#include "daemon/server.h"
#include "daemon/shmseg.h"
#include "daemon/ssp.h"
#include "daemon/store.h"
#include "proto/wire.h"

struct mlt_server {
    void *ctx;
    void *router;
    mlt_store_t *store;
    mlt_ssp_t *parked;
    mlt_shmseg_t *shm;
    uint32_t rank, n_servers;
    double pull_timeout_s;
    char endpoint[256];
    float *scratch;   /* aligned copy of a misaligned payload frame, or of a shm payload */
    zmq_msg_t *frames; /* frames of the request being served */
    size_t n_frames;
    /* counters since start, for STATUS (and so metrics) */
    uint64_t n_requests, n_errors, n_pulls, n_pushes, bytes_in, bytes_out;
};

/* The request being served. */
typedef struct req {
    zmq_msg_t *id;      /* routing id frame */
    mlt_header_t *h;    /* decoded header, NULL if it did not decode */
    zmq_msg_t *payload; /* frames after the header */
    size_t n_payload;
    uint64_t peeked_id; /* request id of a header that parsed but failed validation */
} req_t;

/* server.c: replies */
/* Sends the routing id frame of a reply. */
void mlt_server__send_id(mlt_server_t *s, const void *id, size_t len);
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
/* The parked-pull queue's callbacks (arg: the server): a pull released gets
 * its reply, one expired or whose branch was freed an ERROR. */
void mlt_server__on_released(void *arg, const mlt_parked_t *p);
/* server_workers.c: MSG_WORKER_GONE / MSG_WORKER_BACK from the coordinator. */
int mlt_server__handle_worker(mlt_server_t *s, req_t *rq);
void mlt_server__on_expired(void *arg, const mlt_parked_t *p);
void mlt_server__on_dropped(void *arg, const mlt_parked_t *p);

#endif
