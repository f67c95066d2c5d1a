/* test_hostile.c - malformed input from both sides of the wire.
 *
 * "control": raw ZeroMQ messages to the real coordinator's control ROUTER
 *   (what mltunerctl and the workers talk to): garbage, an empty frame, a
 *   truncated protobuf header, a header over the size limit, requests that
 *   are not control requests, payload frames where none belong, 10,000
 *   frames in one message, a burst of 1,000 bad messages. Each gets an ERROR
 *   reply that says why (echoing the request id where the header decoded), or
 *   for a frame over ZMQ_MAXMSGSIZE the connection is dropped; afterwards the
 *   daemon still serves (mltunerctl status works), logged the refusals, and
 *   every process exits 0.
 *
 * "client": libmltuner (client/mltuner.h) against a ZeroMQ ROUTER made here,
 *   which answers HELLO properly and then answers STATUS with something
 *   malformed: garbage, an empty header, a truncated reply, the wrong request
 *   id, the wrong message type, an ERROR with a negative or INT32_MIN code,
 *   an oversized frame, thousands of payload frames, an endless stream of
 *   junk; and PULLs with replies of the wrong size or shape (4 bytes short or
 *   long, two frames, another chunk count, no payload). The client must return a negative errno
 * with a one-line message, within a bounded time (timeout 1 s), never crash, and the next proper
 *   reply must work again. This tests our client against a hostile server;
 *   it does not stand in for our daemon. */
#include <check.h>
#include <errno.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>
#include <zmq.h>

#include "common/alloc.h"
#include "proto/limits.h"
#include "proto/wire.h"
#include "tests/integration/harness.h"
#include "tests/integration/suite_main.h"
#include "client/mltuner.h"

static double mono(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + ts.tv_nsec * 1e-9;
}

/* ---- control: raw frames to the coordinator ---------------------------------- */

static mlt_test_cluster_t cl;

static void ctl_setup(void)
{
    ck_assert_int_eq(mlt_test_start(&cl, 1, NULL), 0);
    ck_assert_msg(cl.control[0], "the daemon wrote no control endpoint");
}

static void ctl_teardown(void)
{
    ck_assert_int_eq(mlt_test_stop(&cl), 0);
}

static void *dealer(void *ctx, const char *endpoint)
{
    void *s = zmq_socket(ctx, ZMQ_DEALER);
    int zero = 0, ms = 5000;
    zmq_setsockopt(s, ZMQ_LINGER, &zero, sizeof zero);
    zmq_setsockopt(s, ZMQ_RCVTIMEO, &ms, sizeof ms);
    ck_assert_int_eq(zmq_connect(s, endpoint), 0);
    return s;
}

/* Sends one message of n frames (sizes[i] bytes from frames[i]). */
static void send_frames(void *s, const void *const *frames, const size_t *sizes, size_t n)
{
    for (size_t i = 0; i < n; i++)
        ck_assert_int_ge(zmq_send(s, frames[i], sizes[i], i + 1 < n ? ZMQ_SNDMORE : 0), 0);
}

/* An encoded header of `type` with request id rid (caller frees *buf). */
static size_t encode(Mlt__MsgType type, uint64_t rid, uint8_t **buf)
{
    mlt_header_t h;
    mlt_wire_init(&h, type);
    h.has_request_id = 1;
    h.request_id = rid;
    size_t n = mlt_wire_encode(&h, buf);
    ck_assert_uint_gt(n, 0);
    return n;
}

/* Receives one reply: it must be a single-frame ERROR naming something
 * (containing `want` when not NULL), echoing rid when rid is not 0. */
static void expect_error(void *s, const char *what, uint64_t rid, const char *want)
{
    zmq_msg_t m;
    zmq_msg_init(&m);
    int n = zmq_msg_recv(&m, s, 0);
    ck_assert_msg(n >= 0, "%s: no reply within 5 s", what);
    ck_assert_msg(!zmq_msg_more(&m), "%s: the reply has payload frames", what);
    mlt_header_t *h = NULL;
    char err[256];
    int rc = mlt_wire_decode(zmq_msg_data(&m), zmq_msg_size(&m), &h, err, sizeof err);
    zmq_msg_close(&m);
    ck_assert_msg(rc == 0, "%s: undecodable reply: %s", what, err);
    ck_assert_msg(h->type == MLT__MSG_TYPE__MSG_ERROR, "%s: reply %s, not ERROR", what,
                  mlt_wire_type_name(h->type));
    ck_assert_msg(h->error && h->error[0] && !strchr(h->error, '\n'), "%s: no one-line reason",
                  what);
    ck_assert_msg(h->has_error_code && h->error_code > 0, "%s: error code %d", what, h->error_code);
    if (rid)
        ck_assert_msg(h->request_id == rid, "%s: request id %llu, sent %llu", what,
                      (unsigned long long)h->request_id, (unsigned long long)rid);
    if (want)
        ck_assert_msg(strstr(h->error, want), "%s: reason '%s' lacks '%s'", what, h->error, want);
    mlt_wire_free(&h);
}

static void ctl_status_works(void)
{
    char out[8192];
    const char *st[] = {"daemon/mltunerctl", "-c", cl.control, "status", "--json", NULL};
    int rc = mlt_test_run(st, out, sizeof out);
    ck_assert_msg(rc == 0 && strstr(out, "\"phase\":\"idle\""), "status after bad input: %d %s", rc,
                  out);
    ck_assert(mlt_test_alive(&cl, 0));
}

START_TEST(test_control_malformed)
{
    void *ctx = zmq_ctx_new();
    void *s = dealer(ctx, cl.control);

    static const char garbage[] = "\xff\xff\xff\xff\xff\xff\xff\xff\xff\xff\xff";
    send_frames(s, (const void *const[]){garbage}, (size_t[]){sizeof garbage - 1}, 1);
    expect_error(s, "garbage", 0, NULL);

    send_frames(s, (const void *const[]){""}, (size_t[]){0}, 1);
    expect_error(s, "an empty frame", 0, NULL);

    /* a SUBMIT carrying a job, cut in half */
    mlt_header_t h;
    mlt_wire_init(&h, MLT__MSG_TYPE__MSG_SUBMIT);
    h.has_request_id = 1;
    h.request_id = 7;
    h.job_text = (char *)"name = \"x\"; model = { type = \"softmax\"; };";
    uint8_t *buf = NULL;
    size_t n = mlt_wire_encode(&h, &buf);
    send_frames(s, (const void *const[]){buf}, (size_t[]){n / 2}, 1);
    mlt_free(buf);
    expect_error(s, "a truncated SUBMIT", 0, NULL);

    /* requests the control endpoint does not serve */
    static const Mlt__MsgType wrong[] = {MLT__MSG_TYPE__MSG_PULL, MLT__MSG_TYPE__MSG_OK,
                                         MLT__MSG_TYPE__MSG_ERROR, MLT__MSG_TYPE__MSG_TASK,
                                         MLT__MSG_TYPE__MSG_PULL_REPLY};
    for (size_t i = 0; i < sizeof wrong / sizeof wrong[0]; i++) {
        n = encode(wrong[i], 100 + i, &buf);
        send_frames(s, (const void *const[]){buf}, (size_t[]){n}, 1);
        mlt_free(buf);
        expect_error(s, mlt_wire_type_name(wrong[i]), 100 + i, "not a control request");
    }

    /* a valid request with a payload frame, and with 10,000 of them */
    n = encode(MLT__MSG_TYPE__MSG_JOB_STATUS, 200, &buf);
    send_frames(s, (const void *const[]){buf, "payload"}, (size_t[]){n, 7}, 2);
    expect_error(s, "JOB_STATUS with a payload", 200, "no payload");
    for (int i = 0; i < 10000; i++)
        ck_assert_int_ge(zmq_send(s, i == 0 ? (const void *)buf : "", i == 0 ? n : 0,
                                  i + 1 < 10000 ? ZMQ_SNDMORE : 0),
                         0);
    mlt_free(buf);
    expect_error(s, "10000 frames", 200, "no payload");

    /* 1000 bad messages in bursts of 100 (within ZeroMQ's high-water marks,
     * past which a ROUTER drops replies by design): every one answered */
    for (int b = 0; b < 10; b++) {
        for (int i = 0; i < 100; i++)
            send_frames(s, (const void *const[]){garbage}, (size_t[]){1 + (size_t)(i % 10)}, 1);
        for (int i = 0; i < 100; i++)
            expect_error(s, "the burst", 0, NULL);
    }

    /* header frames just over the decoder's limit and far over the socket's:
     * refused, or the connection dropped; the daemon goes on either way */
    size_t big = (size_t)MLT_MAX_HEADER_BYTES * 16;
    char *over = mlt_calloc(1, big);
    void *s2 = dealer(ctx, cl.control);
    send_frames(s2, (const void *const[]){over}, (size_t[]){big}, 1);
    zmq_msg_t m;
    zmq_msg_init(&m);
    int got = zmq_msg_recv(&m, s2, 0); /* nothing (dropped) or an ERROR */
    if (got >= 0) {
        mlt_header_t *r = NULL;
        ck_assert_int_eq(mlt_wire_decode(zmq_msg_data(&m), zmq_msg_size(&m), &r, NULL, 0), 0);
        ck_assert_int_eq(r->type, MLT__MSG_TYPE__MSG_ERROR);
        mlt_wire_free(&r);
    }
    zmq_msg_close(&m);
    mlt_free(over);
    zmq_close(s2);

    /* the first connection still works: a proper JOB_STATUS is answered */
    n = encode(MLT__MSG_TYPE__MSG_JOB_STATUS, 300, &buf);
    send_frames(s, (const void *const[]){buf}, (size_t[]){n}, 1);
    mlt_free(buf);
    zmq_msg_init(&m);
    ck_assert_msg(zmq_msg_recv(&m, s, 0) >= 0, "no answer to a proper JOB_STATUS");
    mlt_header_t *r = NULL;
    ck_assert_int_eq(mlt_wire_decode(zmq_msg_data(&m), zmq_msg_size(&m), &r, NULL, 0), 0);
    ck_assert_int_eq(r->type, MLT__MSG_TYPE__MSG_JOB_STATUS_REPLY);
    ck_assert_int_eq(r->request_id, 300);
    mlt_wire_free(&r);
    zmq_msg_close(&m);
    zmq_close(s);
    zmq_ctx_term(ctx);

    ctl_status_works();
    /* the refusals were logged */
    char path[400], line[1024];
    snprintf(path, sizeof path, "%s/daemon0.log", cl.dir);
    FILE *f = fopen(path, "r");
    ck_assert_ptr_nonnull(f);
    int logged = 0;
    while (fgets(line, sizeof line, f))
        logged += strstr(line, "control request refused") != NULL;
    fclose(f);
    ck_assert_msg(logged >= 1, "no refusal in the daemon's log %s", path);
}
END_TEST

/* ---- client: libmltuner against a hostile server ----------------------------- */

typedef enum {
    B_GOOD,         /* a proper STATUS_REPLY */
    B_GARBAGE,      /* bytes that are no header */
    B_EMPTY,        /* an empty header frame */
    B_TRUNCATED,    /* a STATUS_REPLY cut in half */
    B_WRONG_ID,     /* a proper reply to another request id */
    B_WRONG_TYPE,   /* PULL_REPLY for a STATUS */
    B_ERR_NEGATIVE, /* ERROR with error_code -22 */
    B_ERR_MIN,      /* ERROR with error_code INT32_MIN */
    B_ERR_ZERO,     /* ERROR with error_code 0 and no text */
    B_OVERSIZED,    /* a frame over the client's ZMQ_MAXMSGSIZE */
    B_MANY_FRAMES,  /* a proper reply followed by 5000 payload frames */
    B_STREAM,       /* junk every 50 ms for 20 s, never the answer */
    B_SILENT,       /* nothing */
    B_PULL_GOOD,    /* PULLs answered properly (everything else: OK) */
    B_PULL_SHORT,   /* a PULL_REPLY whose payload is 4 bytes short */
    B_PULL_LONG,    /* ... 4 bytes long */
    B_PULL_FRAMES,  /* ... split in two frames */
    B_PULL_COUNT,   /* ... announcing another chunk count */
    B_PULL_NONE,    /* ... with no payload frame */
} behaviour_t;

#define PULL_TABLE_FLOATS 2048u /* two chunks of 1024 */

typedef struct fake {
    void *ctx;
    char endpoint[128];
    pthread_t thread;
    atomic_int behaviour;
    atomic_int stop;
} fake_t;

static fake_t fk;

static void send_reply(void *s, const zmq_msg_t *id, const void *hdr, size_t n, int more)
{
    zmq_send(s, zmq_msg_data((zmq_msg_t *)id), zmq_msg_size((zmq_msg_t *)id), ZMQ_SNDMORE);
    zmq_send(s, hdr, n, more ? ZMQ_SNDMORE : 0);
}

static void send_header(void *s, const zmq_msg_t *id, const mlt_header_t *h, size_t cut, int more)
{
    uint8_t *buf = NULL;
    size_t n = mlt_wire_encode(h, &buf);
    send_reply(s, id, buf, cut && cut < n ? cut : n, more);
    mlt_free(buf);
}

/* The pull cases: OK to everything but PULL, whose reply is as b says. */
static void pull_reply(void *s, const zmq_msg_t *id, const mlt_header_t *req, behaviour_t b)
{
    mlt_header_t h;
    mlt_wire_init(&h, MLT__MSG_TYPE__MSG_OK);
    h.has_request_id = 1;
    h.request_id = req->request_id;
    if (req->type != MLT__MSG_TYPE__MSG_PULL) {
        send_header(s, id, &h, 0, 0);
        return;
    }
    h.type = MLT__MSG_TYPE__MSG_PULL_REPLY;
    h.has_min_clock = 1, h.min_clock = 0;
    h.has_chunk_first = 1, h.chunk_first = req->chunk_first;
    h.has_chunk_count = 1, h.chunk_count = req->chunk_count + (b == B_PULL_COUNT);
    h.has_packed = 1, h.packed = 1;
    size_t len = (size_t)req->chunk_count * 1024 * sizeof(float);
    len = b == B_PULL_SHORT ? len - 4 : b == B_PULL_LONG ? len + 4 : len;
    float *p = mlt_calloc(1, len + 4);
    if (b == B_PULL_NONE) {
        send_header(s, id, &h, 0, 0);
    } else if (b == B_PULL_FRAMES) {
        send_header(s, id, &h, 0, 1);
        zmq_send(s, p, len / 2, ZMQ_SNDMORE);
        zmq_send(s, (char *)p + len / 2, len - len / 2, 0);
    } else {
        send_header(s, id, &h, 0, 1);
        zmq_send(s, p, len, 0);
    }
    mlt_free(p);
}

/* The reply to one non-HELLO request, as the current behaviour says. */
static void misbehave(void *s, const zmq_msg_t *id, const mlt_header_t *req)
{
    behaviour_t pb = (behaviour_t)atomic_load(&fk.behaviour);
    if (pb >= B_PULL_GOOD) {
        pull_reply(s, id, req, pb);
        return;
    }
    Mlt__ServerInfo si;
    mlt__server_info__init(&si);
    si.rank = 0, si.n_servers = 1, si.chunk_floats = 1024;
    mlt_header_t h;
    mlt_wire_init(&h, MLT__MSG_TYPE__MSG_STATUS_REPLY);
    h.has_request_id = 1;
    h.request_id = req->request_id;
    h.server = &si;
    switch ((behaviour_t)atomic_load(&fk.behaviour)) {
    case B_GOOD: send_header(s, id, &h, 0, 0); break;
    case B_GARBAGE: send_reply(s, id, "\xff\xff\xff\xff\xff\xff", 6, 0); break;
    case B_EMPTY: send_reply(s, id, "", 0, 0); break;
    case B_TRUNCATED: send_header(s, id, &h, 9, 0); break;
    case B_WRONG_ID:
        h.request_id += 1000;
        send_header(s, id, &h, 0, 0);
        break;
    case B_WRONG_TYPE:
        h.type = MLT__MSG_TYPE__MSG_PULL_REPLY;
        h.server = NULL;
        send_header(s, id, &h, 0, 0);
        break;
    case B_ERR_NEGATIVE:
    case B_ERR_MIN:
    case B_ERR_ZERO: {
        behaviour_t b = (behaviour_t)atomic_load(&fk.behaviour);
        h.type = MLT__MSG_TYPE__MSG_ERROR;
        h.server = NULL;
        h.has_error_code = 1;
        h.error_code = b == B_ERR_NEGATIVE ? -22 : b == B_ERR_MIN ? INT32_MIN : 0;
        h.error = b == B_ERR_ZERO ? NULL : (char *)"hostile";
        send_header(s, id, &h, 0, 0);
        break;
    }
    case B_OVERSIZED: {
        size_t big = MLT_MAX_SOCKET_MSG_BYTES + 4096;
        char *p = mlt_calloc(1, big);
        send_header(s, id, &h, 0, 1);
        zmq_send(s, p, big, 0);
        mlt_free(p);
        break;
    }
    case B_MANY_FRAMES:
        send_header(s, id, &h, 0, 1);
        for (int i = 0; i < 5000; i++)
            zmq_send(s, "x", 1, i + 1 < 5000 ? ZMQ_SNDMORE : 0);
        break;
    case B_STREAM:
        for (int i = 0; i < 400 && !atomic_load(&fk.stop) && atomic_load(&fk.behaviour) == B_STREAM;
             i++) {
            h.request_id = req->request_id + 1000 + (uint64_t)i; /* never the one asked */
            send_header(s, id, &h, 0, 0);
            nanosleep(&(struct timespec){0, 50 * 1000000L}, NULL);
        }
        break;
    case B_SILENT: break;
    case B_PULL_GOOD:
    case B_PULL_SHORT:
    case B_PULL_LONG:
    case B_PULL_FRAMES:
    case B_PULL_COUNT:
    case B_PULL_NONE: break; /* pull_reply's */
    }
}

static void *fake_main(void *arg)
{
    void *s = arg;
    while (!atomic_load(&fk.stop)) {
        zmq_pollitem_t it = {.socket = s, .events = ZMQ_POLLIN};
        if (zmq_poll(&it, 1, 50) <= 0)
            continue;
        zmq_msg_t id, hdr;
        zmq_msg_init(&id);
        zmq_msg_init(&hdr);
        zmq_msg_recv(&id, s, 0);
        zmq_msg_recv(&hdr, s, 0);
        while (zmq_msg_more(&hdr)) { /* drop payload frames */
            zmq_msg_close(&hdr);
            zmq_msg_init(&hdr);
            zmq_msg_recv(&hdr, s, 0);
        }
        mlt_header_t *req = NULL;
        if (mlt_wire_decode(zmq_msg_data(&hdr), zmq_msg_size(&hdr), &req, NULL, 0) == 0) {
            if (req->type == MLT__MSG_TYPE__MSG_HELLO) {
                Mlt__ServerInfo si;
                mlt__server_info__init(&si);
                si.rank = 0, si.n_servers = 1, si.chunk_floats = 1024;
                mlt_header_t ok;
                mlt_wire_init(&ok, MLT__MSG_TYPE__MSG_OK);
                ok.has_request_id = 1;
                ok.request_id = req->request_id;
                ok.server = &si;
                send_header(s, &id, &ok, 0, 0);
            } else {
                misbehave(s, &id, req);
            }
            mlt_wire_free(&req);
        }
        zmq_msg_close(&hdr);
        zmq_msg_close(&id);
    }
    zmq_close(s);
    return NULL;
}

static void fake_setup(void)
{
    fk.ctx = zmq_ctx_new();
    void *s = zmq_socket(fk.ctx, ZMQ_ROUTER);
    int zero = 0;
    zmq_setsockopt(s, ZMQ_LINGER, &zero, sizeof zero);
    ck_assert_int_eq(zmq_bind(s, "tcp://127.0.0.1:*"), 0);
    size_t len = sizeof fk.endpoint;
    zmq_getsockopt(s, ZMQ_LAST_ENDPOINT, fk.endpoint, &len);
    atomic_store(&fk.behaviour, B_GOOD);
    atomic_store(&fk.stop, 0);
    ck_assert_int_eq(pthread_create(&fk.thread, NULL, fake_main, s), 0);
}

static void fake_teardown(void)
{
    atomic_store(&fk.stop, 1);
    pthread_join(fk.thread, NULL);
    zmq_ctx_term(fk.ctx);
}

static mlt_client_t *connect_client(void)
{
    char err[256] = "";
    const char *eps[] = {fk.endpoint};
    mlt_client_t *c = mlt_client_new(eps, 1, 0, err, sizeof err);
    ck_assert_msg(c != NULL, "hello to the fake server failed: %s", err);
    mlt_client_set_timeout(c, 1.0);
    return c;
}

/* One STATUS under behaviour b: a clean refusal (negative errno, a one-line
 * message), returned within 10 s of a 1 s timeout. */
static int status_refused(mlt_client_t *c, behaviour_t b, const char *what)
{
    atomic_store(&fk.behaviour, b);
    mlt_server_status_t st;
    memset(&st, 0, sizeof st);
    double t0 = mono();
    int rc = mlt_client_status(c, 0, &st);
    double took = mono() - t0;
    mlt_server_status_free(&st);
    const char *msg = mlt_client_error(c);
    fprintf(stderr, "%s: rc %d (%s) in %.1f s: %s\n", what, rc, rc < 0 ? strerror(-rc) : "-", took,
            msg);
    ck_assert_msg(rc < 0 && rc > -4096, "%s: status returned %d, not a negative errno", what, rc);
    ck_assert_msg(msg && msg[0] && !strchr(msg, '\n'), "%s: no one-line message", what);
    ck_assert_msg(took < 10.0, "%s: the client waited %.1f s with a 1 s timeout", what, took);
    return rc;
}

/* The next proper reply is taken as before. */
static void status_works(mlt_client_t *c, const char *after)
{
    atomic_store(&fk.behaviour, B_GOOD);
    mlt_server_status_t st;
    memset(&st, 0, sizeof st);
    int rc = -1;
    for (int i = 0; i < 3 && rc != 0; i++) /* a late answer to a given-up request may come first */
        rc = mlt_client_status(c, 0, &st);
    ck_assert_msg(rc == 0, "after %s: a proper status failed: %s", after, mlt_client_error(c));
    ck_assert_int_eq(st.n_servers, 1);
    mlt_server_status_free(&st);
}

#define HOSTILE_CASE(fn, b, name)                                                                  \
    START_TEST(fn)                                                                                 \
    {                                                                                              \
        mlt_client_t *c = connect_client();                                                        \
        status_works(c, "hello");                                                                  \
        status_refused(c, b, name);                                                                \
        status_works(c, name);                                                                     \
        mlt_client_destroy(&c);                                                                    \
        ck_assert_ptr_null(c);                                                                     \
    }                                                                                              \
    END_TEST

HOSTILE_CASE(test_client_garbage, B_GARBAGE, "garbage")
HOSTILE_CASE(test_client_empty, B_EMPTY, "an empty header")
HOSTILE_CASE(test_client_truncated, B_TRUNCATED, "a truncated reply")
HOSTILE_CASE(test_client_wrong_id, B_WRONG_ID, "a wrong request id")
HOSTILE_CASE(test_client_wrong_type, B_WRONG_TYPE, "a wrong message type")
HOSTILE_CASE(test_client_err_negative, B_ERR_NEGATIVE, "ERROR code -22")
HOSTILE_CASE(test_client_err_min, B_ERR_MIN, "ERROR code INT32_MIN")
HOSTILE_CASE(test_client_err_zero, B_ERR_ZERO, "ERROR code 0, no text")
HOSTILE_CASE(test_client_stream, B_STREAM, "an endless stream of other replies")
HOSTILE_CASE(test_client_silent, B_SILENT, "silence")

/* a STATUS_REPLY followed by 5000 payload frames: the frames are ignored
 * (the status is taken) or the reply refused; either way the call returns in
 * bounded time and the client goes on working */
START_TEST(test_client_many_frames)
{
    mlt_client_t *c = connect_client();
    atomic_store(&fk.behaviour, B_MANY_FRAMES);
    mlt_server_status_t st;
    memset(&st, 0, sizeof st);
    int rc = mlt_client_status(c, 0, &st);
    ck_assert_msg(rc == 0 ? st.n_servers == 1 : rc < 0 && rc > -4096, "rc %d, %u servers: %s", rc,
                  st.n_servers, mlt_client_error(c));
    mlt_server_status_free(&st);
    status_works(c, "5000 payload frames");
    mlt_client_destroy(&c);
}
END_TEST

/* pull replies of the wrong size or shape: a clean -EPROTO naming what was
 * asked and what came, and a proper pull works afterwards */
static void pull_case(behaviour_t b, const char *what)
{
    setenv("MLT_SHM", "0", 1); /* frames, not shared memory, on this host too */
    mlt_client_t *c = connect_client();
    atomic_store(&fk.behaviour, B_PULL_GOOD);
    const mlt_table_def_t tab = {"w", PULL_TABLE_FLOATS};
    const mlt_job_def_t job = {
        .name = "hostile", .n_workers = 1, .rule = "sgd", .tables = &tab, .n_tables = 1};
    ck_assert_msg(mlt_client_register(c, &job) == 0, "register: %s", mlt_client_error(c));
    float *w = mlt_calloc(PULL_TABLE_FLOATS, sizeof *w);
    float *const dst[] = {w};
    ck_assert_msg(mlt_pull(c, 0, 0, dst) == 0, "a proper pull: %s", mlt_client_error(c));
    atomic_store(&fk.behaviour, b);
    double t0 = mono();
    int rc = mlt_pull(c, 0, 1, dst);
    double took = mono() - t0;
    fprintf(stderr, "%s: rc %d in %.1f s: %s\n", what, rc, took, mlt_client_error(c));
    ck_assert_msg(rc < 0 && rc > -4096, "%s: pull returned %d", what, rc);
    ck_assert_msg(strchr(mlt_client_error(c), '\n') == NULL, "%s: not one line", what);
    ck_assert_msg(took < 10.0, "%s: %.1f s", what, took);
    atomic_store(&fk.behaviour, B_PULL_GOOD);
    ck_assert_msg(mlt_pull(c, 0, 2, dst) == 0, "after %s: a proper pull: %s", what,
                  mlt_client_error(c));
    mlt_free(w);
    mlt_client_destroy(&c);
}

START_TEST(test_pull_short)
{
    pull_case(B_PULL_SHORT, "a pull reply 4 bytes short");
}
END_TEST

START_TEST(test_pull_long)
{
    pull_case(B_PULL_LONG, "a pull reply 4 bytes long");
}
END_TEST

START_TEST(test_pull_frames)
{
    pull_case(B_PULL_FRAMES, "a pull reply in two frames");
}
END_TEST

START_TEST(test_pull_count)
{
    pull_case(B_PULL_COUNT, "a pull reply of another chunk count");
}
END_TEST

START_TEST(test_pull_none)
{
    pull_case(B_PULL_NONE, "a pull reply without payload");
}
END_TEST

/* a frame over ZMQ_MAXMSGSIZE drops the connection: refused; no proper
 * answer is promised afterwards on that connection (ZeroMQ reconnects) */
START_TEST(test_client_oversized)
{
    mlt_client_t *c = connect_client();
    status_refused(c, B_OVERSIZED, "an oversized frame");
    mlt_client_destroy(&c);
}
END_TEST

/* a server that is no mltunerd at all: hello fails with a message */
START_TEST(test_client_hello_garbage)
{
    void *ctx = zmq_ctx_new();
    void *s = zmq_socket(ctx, ZMQ_ROUTER);
    int zero = 0;
    zmq_setsockopt(s, ZMQ_LINGER, &zero, sizeof zero);
    ck_assert_int_eq(zmq_bind(s, "tcp://127.0.0.1:*"), 0);
    char ep[128];
    size_t len = sizeof ep;
    zmq_getsockopt(s, ZMQ_LAST_ENDPOINT, ep, &len);
    /* the client blocks in mlt_client_new: run it in a child process and
     * answer its hello with garbage from here */
    pid_t pid = fork();
    ck_assert_int_ge(pid, 0);
    if (pid == 0) {
        char err[256] = "";
        const char *eps[] = {ep};
        double t0 = mono();
        mlt_client_t *c = mlt_client_new(eps, 1, 0, err, sizeof err);
        double took = mono() - t0;
        fprintf(stderr, "hello answered with garbage: %s in %.1f s: %s\n",
                c ? "accepted" : "refused", took, err);
        _exit(c == NULL && strstr(err, "bad reply") && !strchr(err, '\n') && took < 15 ? 0 : 1);
    }
    zmq_msg_t id, hdr;
    zmq_msg_init(&id);
    zmq_msg_init(&hdr);
    int ms = 10000;
    zmq_setsockopt(s, ZMQ_RCVTIMEO, &ms, sizeof ms);
    ck_assert_int_ge(zmq_msg_recv(&id, s, 0), 0);
    ck_assert_int_ge(zmq_msg_recv(&hdr, s, 0), 0);
    zmq_send(s, zmq_msg_data(&id), zmq_msg_size(&id), ZMQ_SNDMORE);
    zmq_send(s, "\x08\x01\x10\x0e\x18", 5, 0); /* OK, cut inside a field */
    int st;
    ck_assert_int_eq(waitpid(pid, &st, 0), pid);
    ck_assert_msg(WIFEXITED(st) && WEXITSTATUS(st) == 0,
                  "the client accepted a garbage hello, "
                  "crashed or hung (status 0x%x)",
                  st);
    zmq_msg_close(&id);
    zmq_msg_close(&hdr);
    zmq_close(s);
    zmq_ctx_term(ctx);
}
END_TEST

int main(void)
{
    Suite *s = suite_create("hostile");
    TCase *tc = tcase_create("control");
    tcase_add_checked_fixture(tc, ctl_setup, ctl_teardown);
    tcase_set_timeout(tc, 60);
    tcase_add_test(tc, test_control_malformed);
    suite_add_tcase(s, tc);

    tc = tcase_create("client");
    tcase_add_checked_fixture(tc, fake_setup, fake_teardown);
    tcase_set_timeout(tc, 60);
    tcase_add_test(tc, test_client_garbage);
    tcase_add_test(tc, test_client_empty);
    tcase_add_test(tc, test_client_truncated);
    tcase_add_test(tc, test_client_wrong_id);
    tcase_add_test(tc, test_client_wrong_type);
    tcase_add_test(tc, test_client_err_negative);
    tcase_add_test(tc, test_client_err_min);
    tcase_add_test(tc, test_client_err_zero);
    tcase_add_test(tc, test_client_many_frames);
    tcase_add_test(tc, test_client_stream);
    tcase_add_test(tc, test_client_silent);
    tcase_add_test(tc, test_client_oversized);
    tcase_add_test(tc, test_pull_short);
    tcase_add_test(tc, test_pull_long);
    tcase_add_test(tc, test_pull_frames);
    tcase_add_test(tc, test_pull_count);
    tcase_add_test(tc, test_pull_none);
    suite_add_tcase(s, tc);

    tc = tcase_create("hello");
    tcase_set_timeout(tc, 60);
    tcase_add_test(tc, test_client_hello_garbage);
    suite_add_tcase(s, tc);
    return mlt_test_run_suite(s);
}
