/* badinput.c - the fixture and the raw socket of the bad-input tests; see
 * badinput.h and test_badinput.c. */
#include <check.h>
#include <errno.h>
#include <fcntl.h>
#include <math.h>
#include <signal.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>
#include <zmq.h>

#include "proto/layout.h"
#include "proto/wire.h"
#include "tests/integration/harness.h"
#include "client/mltuner.h"

#include "tests/integration/badinput.h"

const mlt_table_def_t tables[] = {{"w", W_SIZE}, {"b", B_SIZE}};
const uint64_t table_size[] = {W_SIZE, B_SIZE};
mlt_test_cluster_t cl;
mlt_client_t *good[MAX_GOOD]; /* workers 0..n_good-1 of the job */
uint32_t n_good;
void *zctx, *raw; /* the raw DEALER to shard 0 */
uint32_t chunk_floats;
float *expect[2], *got[2]; /* what branch 1 must hold; what a pull returned */
float *ones_w, *ones_b;    /* the good client's gradient (stays unchanged) */
int64_t clk;               /* clocks every good worker has finished on branch 1 */
uint64_t next_rid = 0xbad00;

/* ---- fixture ------------------------------------------------------------ */

uint32_t w_chunks(void)
{
    return (uint32_t)mlt_layout_chunks(W_SIZE, chunk_floats);
}

/* Floats in chunk k of table t. */
size_t chunk_len(uint32_t t, uint32_t k)
{
    uint64_t left = table_size[t] - (uint64_t)k * chunk_floats;
    return (size_t)(left < chunk_floats ? left : chunk_floats);
}

void start(const char *const *extra, uint32_t n_workers)
{
    ck_assert_int_eq(mlt_test_start(&cl, 1, extra), 0);
    n_good = n_workers;
    clk = 0;
    char err[512];
    const mlt_job_def_t job = {"badinput", n_workers, "sgd", tables, 2, false};
    for (uint32_t w = 0; w < n_good; w++) {
        good[w] = mlt_client_new(cl.eps, 1, w, err, sizeof err);
        ck_assert_msg(good[w] != NULL, "connect worker %u: %s", w, err);
        ck_assert_msg(mlt_client_register(good[w], &job) == 0, "register: %s",
                      mlt_client_error(good[w]));
    }
    mlt_tunables_def_t t = mlt_tunables_unset();
    t.lr = LR;
    ck_assert_msg(mlt_branch_create(good[0], 1, MLT_BRANCH_TRAIN, &t) == 0, "create: %s",
                  mlt_client_error(good[0]));
    mlt_server_status_t st;
    ck_assert_msg(mlt_client_status(good[0], 0, &st) == 0, "%s", mlt_client_error(good[0]));
    chunk_floats = st.chunk_floats;
    mlt_server_status_free(&st);
    ck_assert_uint_gt(w_chunks(), 2);
    ck_assert_uint_ne(W_SIZE % chunk_floats, 0);

    for (int tb = 0; tb < 2; tb++) {
        expect[tb] = calloc(table_size[tb], sizeof(float));
        got[tb] = calloc(table_size[tb], sizeof(float));
        for (uint64_t i = 0; i < table_size[tb]; i++)
            expect[tb][i] = (float)((int)((i * 7 + (uint64_t)tb) % 17) - 8);
        ck_assert_msg(mlt_write(good[0], 1, (uint32_t)tb, expect[tb]) == 0, "write: %s",
                      mlt_client_error(good[0]));
    }
    ones_w = malloc(W_SIZE * sizeof(float));
    ones_b = malloc(B_SIZE * sizeof(float));
    for (uint32_t i = 0; i < W_SIZE; i++)
        ones_w[i] = 1.0f;
    for (uint32_t i = 0; i < B_SIZE; i++)
        ones_b[i] = 1.0f;

    zctx = zmq_ctx_new();
    raw = zmq_socket(zctx, ZMQ_DEALER);
    int zero = 0;
    zmq_setsockopt(raw, ZMQ_LINGER, &zero, sizeof zero);
    ck_assert_int_eq(zmq_connect(raw, cl.eps[0]), 0);
}

void setup_default(void)
{
    start(NULL, 1);
}

static const char *const mem_extra[] = {"memory_limit=1M", NULL};
void setup_memory(void)
{
    start(mem_extra, 1);
}

static const char *const timeout_extra[] = {"pull_timeout_s=0.3", NULL};
void setup_timeout(void)
{
    start(timeout_extra, 2);
}

void teardown(void)
{
    zmq_close(raw);
    zmq_ctx_term(zctx);
    for (uint32_t w = 0; w < n_good; w++)
        mlt_client_destroy(&good[w]);
    for (int tb = 0; tb < 2; tb++) {
        free(expect[tb]);
        free(got[tb]);
    }
    free(ones_w);
    free(ones_b);
    ck_assert_int_eq(mlt_test_stop(&cl), 0);
}

/* ---- the good client ---------------------------------------------------- */

/* Status, a pull from the daemon that must return exactly `expect`, a push of
 * ones to both tables and a clock by every worker: the daemon still serves. */
void good_round(void)
{
    mlt_client_t *c = good[0];
    mlt_server_status_t st;
    ck_assert_msg(mlt_client_status(c, 0, &st) == 0, "status: %s", mlt_client_error(c));
    ck_assert_str_eq(st.job, "badinput");
    mlt_server_status_free(&st);
    /* the cache holds min_clock clk-1 at most: this pull goes to the daemon */
    ck_assert_msg(mlt_pull(c, 1, clk, got) == 0, "pull at clock %lld: %s", (long long)clk,
                  mlt_client_error(c));
    ck_assert_int_eq(mlt_pull_min_clock(c, 1), clk);
    for (int tb = 0; tb < 2; tb++)
        for (uint64_t i = 0; i < table_size[tb]; i++)
            if (!(fabsf(got[tb][i] - expect[tb][i]) <= 1e-5f))
                ck_abort_msg("table %d element %llu is %g, expected %g", tb,
                             (unsigned long long)i, (double)got[tb][i], (double)expect[tb][i]);
    ck_assert_msg(mlt_push(c, 1, 0, ones_w) == 0, "push: %s", mlt_client_error(c));
    ck_assert_msg(mlt_push(c, 1, 1, ones_b) == 0, "push: %s", mlt_client_error(c));
    for (uint32_t w = 0; w < n_good; w++)
        ck_assert_msg(mlt_clock(good[w], 1, clk + 1) == 0, "worker %u clock %lld: %s", w,
                      (long long)clk + 1, mlt_client_error(good[w]));
    clk++;
    for (int tb = 0; tb < 2; tb++)
        for (uint64_t i = 0; i < table_size[tb]; i++)
            expect[tb][i] -= LR * 1.0f;
}

mlt_branch_status_t branch_status(uint32_t id, uint32_t *n_branches)
{
    mlt_server_status_t st;
    ck_assert_msg(mlt_client_status(good[0], 0, &st) == 0, "%s", mlt_client_error(good[0]));
    mlt_branch_status_t b = {.id = UINT32_MAX};
    for (uint32_t i = 0; i < st.n_branches; i++)
        if (st.branches[i].id == id)
            b = st.branches[i];
    *n_branches = st.n_branches;
    mlt_server_status_free(&st);
    ck_assert_msg(b.id == id, "branch %u is not listed", id);
    return b;
}

/* ---- the raw socket ----------------------------------------------------- */

void raw_send(const frame_t *f, size_t n)
{
    for (size_t i = 0; i < n; i++) {
        int rc = zmq_send(raw, f[i].data, f[i].len, i + 1 < n ? ZMQ_SNDMORE : 0);
        ck_assert_msg(rc == (int)f[i].len, "raw send of frame %zu: %s", i,
                      zmq_strerror(zmq_errno()));
    }
}

/* Receives one whole message (failing after 5 s of silence) and returns its
 * decoded header (caller frees); *n_payload gets the frames after it. */
mlt_header_t *raw_recv(size_t *n_payload)
{
    zmq_pollitem_t it = {.socket = raw, .events = ZMQ_POLLIN};
    int n = zmq_poll(&it, 1, REPLY_WAIT_MS);
    ck_assert_msg(n == 1, "no reply from the daemon within %d ms", REPLY_WAIT_MS);
    zmq_msg_t m;
    zmq_msg_init(&m);
    ck_assert_int_ge(zmq_msg_recv(&m, raw, 0), 0);
    char err[256];
    mlt_header_t *h = NULL;
    int rc = mlt_wire_decode(zmq_msg_data(&m), zmq_msg_size(&m), &h, err, sizeof err);
    int more = zmq_msg_more(&m);
    zmq_msg_close(&m);
    ck_assert_msg(rc == 0, "reply header does not decode: %s", err);
    *n_payload = 0;
    while (more) {
        zmq_msg_init(&m);
        ck_assert_int_ge(zmq_msg_recv(&m, raw, 0), 0);
        more = zmq_msg_more(&m);
        zmq_msg_close(&m);
        (*n_payload)++;
    }
    return h;
}

/* The next reply must be ERROR with error_code `code`, a text containing
 * `word`, and (rid != 0) request_id rid. */
void expect_reply(uint64_t rid, int code, const char *word)
{
    size_t n_payload;
    mlt_header_t *r = raw_recv(&n_payload);
    ck_assert_msg(r->type == MLT__MSG_TYPE__MSG_ERROR, "expected ERROR %s, got %s", strerror(code),
                  mlt_wire_type_name(r->type));
    ck_assert_uint_eq(n_payload, 0);
    ck_assert_msg(r->has_error_code && r->error_code == code,
                  "error_code %d (%s), expected %d (%s); text: %s", (int)r->error_code,
                  strerror(r->error_code), code, strerror(code), r->error ? r->error : "(none)");
    ck_assert_msg(r->error && strstr(r->error, word), "error text '%s' does not mention '%s'",
                  r->error ? r->error : "(none)", word);
    if (rid)
        ck_assert_msg(r->has_request_id && r->request_id == rid,
                      "request_id %llu not echoed (got %llu)", (unsigned long long)rid,
                      (unsigned long long)r->request_id);
    mlt_wire_free(&r);
}

/* The raw peer is still served: STATUS gets its STATUS_REPLY (and nothing
 * left over from the bad message comes first). */
void raw_ping(void)
{
    mlt_header_t h;
    mlt_wire_init(&h, MLT__MSG_TYPE__MSG_STATUS);
    h.has_request_id = 1;
    h.request_id = ++next_rid;
    ck_assert_int_eq(mlt_wire_send(raw, &h, 0), 0);
    size_t n_payload;
    mlt_header_t *r = raw_recv(&n_payload);
    ck_assert_msg(r->type == MLT__MSG_TYPE__MSG_STATUS_REPLY, "STATUS answered with %s: %s",
                  mlt_wire_type_name(r->type), r->error ? r->error : "");
    ck_assert_uint_eq(r->request_id, h.request_id);
    mlt_wire_free(&r);
}

void after_case(void)
{
    raw_ping();
    good_round();
}

/* Sends frames as they are (frame 0 need not be a header) and expects ERROR
 * `code` mentioning `word`; no request_id can be echoed. */
void expect_error_frames(const frame_t *f, size_t n, int code, const char *word)
{
    raw_send(f, n);
    expect_reply(0, code, word);
    after_case();
}

/* Packs h (with a fresh request_id) into frame 0, sends it with the payload
 * frames, and expects ERROR `code` mentioning `word`, echoing the request_id
 * when the header decodes. The caller sends the next message. */
uint64_t send_header(mlt_header_t *h, const frame_t *payload, size_t n_payload,
                            bool *decodes)
{
    h->has_request_id = 1;
    h->request_id = ++next_rid;
    size_t len = mlt__header__get_packed_size(h);
    uint8_t *buf = malloc(len);
    ck_assert_uint_eq(mlt__header__pack(h, buf), len);
    mlt_header_t *back = NULL;
    char err[256];
    *decodes = mlt_wire_decode(buf, len, &back, err, sizeof err) == 0;
    mlt_wire_free(&back);
    frame_t *f = calloc(n_payload + 1, sizeof *f);
    f[0] = (frame_t){buf, len};
    for (size_t i = 0; i < n_payload; i++)
        f[i + 1] = payload[i];
    raw_send(f, n_payload + 1);
    free(f);
    free(buf);
    return h->request_id;
}

void expect_error(mlt_header_t *h, const frame_t *payload, size_t n_payload, int code,
                         const char *word)
{
    bool decodes;
    uint64_t rid = send_header(h, payload, n_payload, &decodes);
    expect_reply(decodes ? rid : 0, code, word);
    after_case();
}

/* A valid request header of `type` from worker 0 on branch 1, table 0,
 * chunks [first, first+count). */
mlt_header_t data_header(Mlt__MsgType type, uint32_t first, uint32_t count)
{
    mlt_header_t h;
    mlt_wire_init(&h, type);
    h.has_worker = h.has_branch = h.has_table = h.has_chunk_first = h.has_chunk_count = 1;
    h.worker = 0;
    h.branch = 1;
    h.table = 0;
    h.chunk_first = first;
    h.chunk_count = count;
    if (type == MLT__MSG_TYPE__MSG_PULL) {
        h.has_clock = 1;
        h.clock = clk;
    }
    return h;
}
