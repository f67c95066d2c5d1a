/* shardask.c - see shardask.h. */
#include "daemon/shardask.h"

#include <errno.h>
#include <stdio.h>
#include <string.h>
#include <zmq.h>

#include "common/alloc.h"
#include "common/timeutil.h"
#include "proto/limits.h"
#include "proto/wire.h"
#include "client/client_int.h"

/* Reads one whole message from shard i's socket and takes its status. */
static void take_reply(void *sock, const char *ep, mlt_server_status_t *st, bool *up, char *why)
{
    zmq_msg_t m;
    zmq_msg_init(&m);
    if (zmq_msg_recv(&m, sock, ZMQ_DONTWAIT) < 0) {
        snprintf(why, MLT_SHARDASK_WHY_LEN, "%s: %s", ep, zmq_strerror(zmq_errno()));
        zmq_msg_close(&m);
        return;
    }
    char err[160];
    mlt_header_t *h = NULL;
    int more = zmq_msg_more(&m);
    if (mlt_wire_decode(zmq_msg_data(&m), zmq_msg_size(&m), &h, err, sizeof err) < 0)
        snprintf(why, MLT_SHARDASK_WHY_LEN, "%s: bad reply: %s", ep, err);
    else if (h->type == MLT__MSG_TYPE__MSG_ERROR)
        snprintf(why, MLT_SHARDASK_WHY_LEN, "%s answered: %s", ep, h->error ? h->error : "error");
    else if (h->type != MLT__MSG_TYPE__MSG_STATUS_REPLY)
        snprintf(why, MLT_SHARDASK_WHY_LEN, "%s answered with %s", ep, mlt_wire_type_name(h->type));
    else {
        mlt_client__status_from_reply(h, st);
        *up = true;
    }
    mlt_wire_free(&h);
    zmq_msg_close(&m);
    while (more) { /* a status reply has no payload frames: drain any */
        zmq_msg_init(&m);
        more = zmq_msg_recv(&m, sock, ZMQ_DONTWAIT) >= 0 && zmq_msg_more(&m);
        zmq_msg_close(&m);
    }
}

int mlt_shardask_status(void *ctx, const char *const *eps, int n, double timeout_s,
                        mlt_shardask_setup_fn setup, const void *setup_arg, mlt_server_status_t *st,
                        bool *up, char (*why)[MLT_SHARDASK_WHY_LEN])
{
    void **socks = mlt_calloc(n ? (size_t)n : 1, sizeof *socks);
    zmq_pollitem_t *items = mlt_calloc(n ? (size_t)n : 1, sizeof *items);
    int *slot = mlt_calloc(n ? (size_t)n : 1, sizeof *slot); /* poll item -> shard */
    int zero = 0, waiting = 0;
    int64_t maxmsg = MLT_MAX_HEADER_BYTES;
    for (int i = 0; i < n; i++) {
        memset(&st[i], 0, sizeof st[i]);
        up[i] = false;
        snprintf(why[i], MLT_SHARDASK_WHY_LEN, "%s: no answer within %g s", eps[i], timeout_s);
        socks[i] = zmq_socket(ctx, ZMQ_DEALER);
        if (!socks[i]) {
            snprintf(why[i], MLT_SHARDASK_WHY_LEN, "zmq_socket: %s", zmq_strerror(zmq_errno()));
            continue;
        }
        zmq_setsockopt(socks[i], ZMQ_LINGER, &zero, sizeof zero);
        zmq_setsockopt(socks[i], ZMQ_MAXMSGSIZE, &maxmsg, sizeof maxmsg);
        if (setup)
            setup(socks[i], setup_arg);
        mlt_header_t q;
        mlt_wire_init(&q, MLT__MSG_TYPE__MSG_STATUS);
        q.has_request_id = 1;
        q.request_id = (uint64_t)i + 1;
        if (zmq_connect(socks[i], eps[i]) < 0 || mlt_wire_send(socks[i], &q, ZMQ_DONTWAIT) < 0) {
            snprintf(why[i], MLT_SHARDASK_WHY_LEN, "cannot reach %s: %s", eps[i],
                     zmq_strerror(zmq_errno()));
            continue;
        }
        items[waiting] = (zmq_pollitem_t){.socket = socks[i], .events = ZMQ_POLLIN};
        slot[waiting++] = i;
    }
    const double deadline = mlt_time_mono() + timeout_s;
    int n_up = 0;
    while (waiting > 0) {
        double left = deadline - mlt_time_mono();
        if (left <= 0)
            break;
        int rc = zmq_poll(items, waiting, (long)(left * 1000) + 1);
        if (rc < 0 && zmq_errno() != EINTR)
            break;
        for (int k = 0; rc > 0 && k < waiting;) {
            if (!(items[k].revents & ZMQ_POLLIN)) {
                k++;
                continue;
            }
            int i = slot[k];
            take_reply(socks[i], eps[i], &st[i], &up[i], why[i]);
            n_up += up[i];
            items[k] = items[--waiting]; /* one answer per shard, right or wrong */
            slot[k] = slot[waiting];
        }
    }
    for (int i = 0; i < n; i++)
        if (socks[i])
            zmq_close(socks[i]);
    mlt_free(socks);
    mlt_free(items);
    mlt_free(slot);
    return n_up;
}
