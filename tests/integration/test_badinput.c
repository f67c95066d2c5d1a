/* test_badinput.c - the real mltunerd, on loopback, answering malformed and
 * wrong requests: every one gets an ERROR reply with the exact errno and a
 * text naming the problem, and the daemon keeps serving everyone else.
 *
 * Each test starts one daemon (a checked fixture), a well-behaved libmltuner
 * client (job "badinput", branch 1 at lr 0.1 with known values) and a raw
 * ZeroMQ DEALER that sends hand-made messages. After every bad message:
 *  - the raw socket gets exactly one ERROR reply (5 s poll), whose error_code
 *    is the positive errno, whose text holds a given word, and which echoes
 *    the request_id whenever the header itself decoded;
 *  - the raw socket is still served (STATUS -> STATUS_REPLY);
 *  - the good client does a round: status, a pull that must return exactly
 *    the values it expects (so a bad message applied nothing), a push of
 *    ones, and a clock by every worker of the job.
 * Teardown asserts the daemon exits 0 on SIGTERM. */
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
#include "tests/integration/suite_main.h"
#include "client/mltuner.h"

#define W_SIZE 100000u /* several chunks, the last one short; one SGD branch ~800 KB */
#define B_SIZE 10u
#define LR 0.1f
#define MAX_GOOD 2
#define REPLY_WAIT_MS 5000

static const mlt_table_def_t tables[] = {{"w", W_SIZE}, {"b", B_SIZE}};
static const uint64_t table_size[] = {W_SIZE, B_SIZE};

static mlt_test_cluster_t cl;
static mlt_client_t *good[MAX_GOOD]; /* workers 0..n_good-1 of the job */
static uint32_t n_good;
static void *zctx, *raw; /* the raw DEALER to shard 0 */
static uint32_t chunk_floats;
static float *expect[2], *got[2]; /* what branch 1 must hold; what a pull returned */
static float *ones_w, *ones_b;    /* the good client's gradient (stays unchanged) */
static int64_t clk;               /* clocks every good worker has finished on branch 1 */
static uint64_t next_rid = 0xbad00;

typedef struct frame {
    const void *data;
    size_t len;
} frame_t;

/* ---- fixture ------------------------------------------------------------ */

static uint32_t w_chunks(void)
{
    return (uint32_t)mlt_layout_chunks(W_SIZE, chunk_floats);
}

/* Floats in chunk k of table t. */
static size_t chunk_len(uint32_t t, uint32_t k)
{
    uint64_t left = table_size[t] - (uint64_t)k * chunk_floats;
    return (size_t)(left < chunk_floats ? left : chunk_floats);
}

static void start(const char *const *extra, uint32_t n_workers)
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

static void setup_default(void)
{
    start(NULL, 1);
}

static const char *const mem_extra[] = {"memory_limit=1M", NULL};
static void setup_memory(void)
{
    start(mem_extra, 1);
}

static const char *const timeout_extra[] = {"pull_timeout_s=0.3", NULL};
static void setup_timeout(void)
{
    start(timeout_extra, 2);
}

static void teardown(void)
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
static void good_round(void)
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

static mlt_branch_status_t branch_status(uint32_t id, uint32_t *n_branches)
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

static void raw_send(const frame_t *f, size_t n)
{
    for (size_t i = 0; i < n; i++) {
        int rc = zmq_send(raw, f[i].data, f[i].len, i + 1 < n ? ZMQ_SNDMORE : 0);
        ck_assert_msg(rc == (int)f[i].len, "raw send of frame %zu: %s", i,
                      zmq_strerror(zmq_errno()));
    }
}

/* Receives one whole message (failing after 5 s of silence) and returns its
 * decoded header (caller frees); *n_payload gets the frames after it. */
static mlt_header_t *raw_recv(size_t *n_payload)
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
static void expect_reply(uint64_t rid, int code, const char *word)
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
static void raw_ping(void)
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

static void after_case(void)
{
    raw_ping();
    good_round();
}

/* Sends frames as they are (frame 0 need not be a header) and expects ERROR
 * `code` mentioning `word`; no request_id can be echoed. */
static void expect_error_frames(const frame_t *f, size_t n, int code, const char *word)
{
    raw_send(f, n);
    expect_reply(0, code, word);
    after_case();
}

/* Packs h (with a fresh request_id) into frame 0, sends it with the payload
 * frames, and expects ERROR `code` mentioning `word`, echoing the request_id
 * when the header decodes. The caller sends the next message. */
static uint64_t send_header(mlt_header_t *h, const frame_t *payload, size_t n_payload,
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

static void expect_error(mlt_header_t *h, const frame_t *payload, size_t n_payload, int code,
                         const char *word)
{
    bool decodes;
    uint64_t rid = send_header(h, payload, n_payload, &decodes);
    expect_reply(decodes ? rid : 0, code, word);
    after_case();
}

/* A valid request header of `type` from worker 0 on branch 1, table 0,
 * chunks [first, first+count). */
static mlt_header_t data_header(Mlt__MsgType type, uint32_t first, uint32_t count)
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

/* ---- decoding ----------------------------------------------------------- */

START_TEST(test_truncated_header)
{
    mlt_header_t h = data_header(MLT__MSG_TYPE__MSG_PULL, 0, 1);
    h.has_request_id = 1;
    h.request_id = UINT64_C(0xbad0000000000001); /* a 10-byte varint around the middle */
    size_t len = mlt__header__get_packed_size(&h);
    uint8_t buf[128];
    ck_assert_uint_le(len, sizeof buf);
    mlt__header__pack(&h, buf);
    /* precondition: the cut lands inside a field, so the prefix is no header */
    mlt_header_t *back = NULL;
    ck_assert_int_eq(mlt_wire_decode(buf, len / 2, &back, NULL, 0), -EPROTO);
    frame_t f = {buf, len / 2};
    expect_error_frames(&f, 1, EPROTO, "not a valid");
}
END_TEST

START_TEST(test_wrong_version)
{
    mlt_header_t h = data_header(MLT__MSG_TYPE__MSG_PULL, 0, 1);
    h.version = 2;
    expect_error(&h, NULL, 0, EPROTONOSUPPORT, "version");
}
END_TEST

START_TEST(test_unknown_type)
{
    mlt_header_t h = data_header(MLT__MSG_TYPE__MSG_PULL, 0, 1);
    h.type = (Mlt__MsgType)99;
    expect_error(&h, NULL, 0, EBADMSG, "type 99");
}
END_TEST

START_TEST(test_reply_as_request)
{
    mlt_header_t h;
    mlt_wire_init(&h, MLT__MSG_TYPE__MSG_OK);
    expect_error(&h, NULL, 0, EBADMSG, "not a request");
    mlt_wire_init(&h, MLT__MSG_TYPE__MSG_PULL_REPLY);
    expect_error(&h, NULL, 0, EBADMSG, "not a request");
}
END_TEST

START_TEST(test_oversized_header)
{
    size_t len = MLT_MAX_HEADER_BYTES + 1;
    uint8_t *junk = malloc(len);
    memset(junk, 0xab, len);
    frame_t f = {junk, len};
    expect_error_frames(&f, 1, EMSGSIZE, "limit");
    free(junk);
}
END_TEST

START_TEST(test_worker_out_of_limit)
{
    mlt_header_t h = data_header(MLT__MSG_TYPE__MSG_PULL, 0, 1);
    h.worker = MLT_MAX_WORKERS;
    expect_error(&h, NULL, 0, EINVAL, "worker");
}
END_TEST

/* ---- requests against daemon state -------------------------------------- */

START_TEST(test_missing_field)
{
    mlt_header_t h = data_header(MLT__MSG_TYPE__MSG_PULL, 0, 1);
    h.has_clock = 0;
    expect_error(&h, NULL, 0, EINVAL, "clock");
}
END_TEST

START_TEST(test_unknown_branch)
{
    mlt_header_t h = data_header(MLT__MSG_TYPE__MSG_PULL, 0, 1);
    h.branch = 77;
    expect_error(&h, NULL, 0, ENOENT, "unknown branch 77");
}
END_TEST

START_TEST(test_unknown_table)
{
    mlt_header_t h = data_header(MLT__MSG_TYPE__MSG_PULL, 0, 1);
    h.table = 9;
    expect_error(&h, NULL, 0, ENOENT, "unknown table 9");
}
END_TEST

START_TEST(test_chunk_out_of_range)
{
    mlt_header_t h = data_header(MLT__MSG_TYPE__MSG_PULL, w_chunks(), 1);
    expect_error(&h, NULL, 0, ERANGE, "out of range");
    /* a range that starts inside the table but runs past its end */
    h = data_header(MLT__MSG_TYPE__MSG_PULL, w_chunks() - 1, 2);
    expect_error(&h, NULL, 0, ERANGE, "out of range");
}
END_TEST

START_TEST(test_payload_size)
{
    mlt_header_t h = data_header(MLT__MSG_TYPE__MSG_PUSH, 0, 1);
    frame_t f = {ones_w, (chunk_len(0, 0) - 1) * sizeof(float)};
    expect_error(&h, &f, 1, EINVAL, "payload");
    /* the short last chunk sent at full chunk size */
    h = data_header(MLT__MSG_TYPE__MSG_WRITE, w_chunks() - 1, 1);
    f.len = chunk_floats * sizeof(float);
    expect_error(&h, &f, 1, EINVAL, "payload");
}
END_TEST

START_TEST(test_payload_frames)
{
    frame_t f[2] = {{ones_w, chunk_len(0, 0) * sizeof(float)},
                    {ones_w, chunk_len(0, 1) * sizeof(float)}};
    mlt_header_t h = data_header(MLT__MSG_TYPE__MSG_PUSH, 0, 1);
    expect_error(&h, f, 2, EINVAL, "payload frames");
    h = data_header(MLT__MSG_TYPE__MSG_PUSH, 0, 2);
    expect_error(&h, f, 1, EINVAL, "payload frames");
    h = data_header(MLT__MSG_TYPE__MSG_PUSH, 0, 1);
    expect_error(&h, NULL, 0, EINVAL, "payload frames");
    /* a pull carries none */
    h = data_header(MLT__MSG_TYPE__MSG_PULL, 0, 1);
    expect_error(&h, f, 1, EINVAL, "payload");
}
END_TEST

static frame_t *w_frames(float v, float bad, float **bufp);

/* Packed payloads (Header.packed: the chunks back to back in one frame, what
 * libmltuner sends; after_case's good round pushes and pulls that way and
 * checks every value). */
START_TEST(test_packed_payload)
{
    const size_t two = (chunk_len(0, 0) + chunk_len(0, 1)) * sizeof(float);
    frame_t f[2] = {{ones_w, chunk_len(0, 0) * sizeof(float)},
                    {ones_w, chunk_len(0, 1) * sizeof(float)}};
    mlt_header_t h = data_header(MLT__MSG_TYPE__MSG_PUSH, 0, 2);
    h.has_packed = h.packed = 1;
    expect_error(&h, f, 2, EINVAL, "a packed payload is one");
    expect_error(&h, NULL, 0, EINVAL, "a packed payload is one");
    frame_t one = {ones_w, two - sizeof(float)};
    expect_error(&h, &one, 1, EINVAL, "packed payload is");
    /* the short last chunk counted at full size */
    h = data_header(MLT__MSG_TYPE__MSG_WRITE, w_chunks() - 2, 2);
    h.has_packed = h.packed = 1;
    one.len = 2 * chunk_floats * sizeof(float);
    expect_error(&h, &one, 1, EINVAL, "packed payload is");
    /* a NaN in the last chunk: nothing of the push applied (after_case checks) */
    uint32_t n;
    float *buf;
    frame_t *fw = w_frames(1.0f, NAN, &buf);
    h = data_header(MLT__MSG_TYPE__MSG_PUSH, 0, w_chunks());
    h.has_packed = h.packed = 1;
    one = (frame_t){buf, W_SIZE * sizeof(float)};
    expect_error(&h, &one, 1, EDOM, "non-finite");
    ck_assert_msg(branch_status(1, &n).diverged, "a packed NaN push left branch 1 not diverged");
    free(fw);
    free(buf);
}
END_TEST

START_TEST(test_packed_pull)
{
    /* a packed pull is answered with one frame, and says so */
    mlt_header_t h = data_header(MLT__MSG_TYPE__MSG_PULL, 1, 3);
    h.has_packed = h.packed = 1;
    bool decodes;
    uint64_t rid = send_header(&h, NULL, 0, &decodes);
    size_t n_payload;
    mlt_header_t *r = raw_recv(&n_payload);
    ck_assert_msg(r->type == MLT__MSG_TYPE__MSG_PULL_REPLY, "packed pull answered with %s: %s",
                  mlt_wire_type_name(r->type), r->error ? r->error : "");
    ck_assert_uint_eq(r->request_id, rid);
    ck_assert(r->has_packed && r->packed);
    ck_assert_uint_eq(n_payload, 1);
    mlt_wire_free(&r);
    /* unpacked, a frame per chunk */
    h = data_header(MLT__MSG_TYPE__MSG_PULL, 1, 3);
    send_header(&h, NULL, 0, &decodes);
    r = raw_recv(&n_payload);
    ck_assert(r->type == MLT__MSG_TYPE__MSG_PULL_REPLY && !(r->has_packed && r->packed));
    ck_assert_uint_eq(n_payload, 3);
    mlt_wire_free(&r);
    after_case();
}
END_TEST

/* ---- the same-host transport (shared memory) ----------------------------- */

/* A segment of the raw peer's: SEG_BYTES, the token in its first 8 bytes. */
#define SEG_BYTES (2u << 20)
#define SEG_TOKEN 0x5eed5eed12345678ull
static char seg_name[64];
static int seg_fd = -1;
static float *seg; /* the mapping */

static void seg_make(void)
{
    snprintf(seg_name, sizeof seg_name, "/mltuner-test-%d", (int)getpid());
    shm_unlink(seg_name);
    seg_fd = shm_open(seg_name, O_CREAT | O_EXCL | O_RDWR, 0600);
    ck_assert_msg(seg_fd >= 0, "shm_open %s: %s", seg_name, strerror(errno));
    ck_assert_int_eq(ftruncate(seg_fd, SEG_BYTES), 0);
    seg = mmap(NULL, SEG_BYTES, PROT_READ | PROT_WRITE, MAP_SHARED, seg_fd, 0);
    ck_assert(seg != MAP_FAILED);
    const uint64_t token = SEG_TOKEN;
    memcpy(seg, &token, sizeof token);
}

/* A memfd segment named by its /proc link (#15), sealed against shrinking
 * (a shard maps it) or not (refused). */
static void seg_make_memfd(bool sealed)
{
    seg_fd = memfd_create("mltuner-test", MFD_CLOEXEC | MFD_ALLOW_SEALING);
    ck_assert_msg(seg_fd >= 0, "memfd_create: %s", strerror(errno));
    snprintf(seg_name, sizeof seg_name, "/proc/%d/fd/%d", (int)getpid(), seg_fd);
    ck_assert_int_eq(ftruncate(seg_fd, SEG_BYTES), 0);
    if (sealed)
        ck_assert_int_eq(fcntl(seg_fd, F_ADD_SEALS, F_SEAL_SHRINK | F_SEAL_GROW), 0);
    seg = mmap(NULL, SEG_BYTES, PROT_READ | PROT_WRITE, MAP_SHARED, seg_fd, 0);
    ck_assert(seg != MAP_FAILED);
    const uint64_t token = SEG_TOKEN;
    memcpy(seg, &token, sizeof token);
}

static void seg_free(void)
{
    munmap(seg, SEG_BYTES);
    close(seg_fd);
    shm_unlink(seg_name);
}

static mlt_header_t attach_header(const char *name, uint64_t bytes, uint64_t token)
{
    mlt_header_t h;
    mlt_wire_init(&h, MLT__MSG_TYPE__MSG_SHM_ATTACH);
    h.shm_name = (char *)name;
    h.has_shm_bytes = h.has_shm_token = 1;
    h.shm_bytes = bytes;
    h.shm_token = token;
    return h;
}

/* Sends h, which must be answered `type` (echoing the request id); returns
 * the reply (caller frees) and its payload frame count. */
static mlt_header_t *expect_ok(mlt_header_t *h, Mlt__MsgType type, size_t *n_payload)
{
    bool decodes;
    uint64_t rid = send_header(h, NULL, 0, &decodes);
    mlt_header_t *r = raw_recv(n_payload);
    ck_assert_msg(r->type == type, "%s answered with %s: %s", mlt_wire_type_name(h->type),
                  mlt_wire_type_name(r->type), r->error ? r->error : "");
    ck_assert_uint_eq(r->request_id, rid);
    return r;
}

/* Attaches the test's segment; returns its handle. */
static uint32_t seg_attach(void)
{
    mlt_header_t h = attach_header(seg_name, SEG_BYTES, SEG_TOKEN);
    size_t n;
    mlt_header_t *r = expect_ok(&h, MLT__MSG_TYPE__MSG_OK, &n);
    ck_assert(r->has_shm_handle);
    uint32_t handle = r->shm_handle;
    mlt_wire_free(&r);
    return handle;
}

/* data_header of chunks [first, first + count) through segment `handle` at
 * byte offset off. */
static mlt_header_t shm_header(Mlt__MsgType type, uint32_t first, uint32_t count, uint32_t handle,
                               uint64_t off)
{
    mlt_header_t h = data_header(type, first, count);
    h.has_packed = h.packed = 1;
    h.has_shm_handle = h.has_shm_token = h.has_shm_offset = 1;
    h.shm_handle = handle;
    h.shm_token = SEG_TOKEN;
    h.shm_offset = off;
    return h;
}

START_TEST(test_shm_attach)
{
    /* the good client is on this host: its data went by shared memory */
    ck_assert_msg(strstr(mlt_client_transport(good[0]), "shared memory with 1 of 1 shards"),
                  "transport: %s", mlt_client_transport(good[0]));
    seg_make();
    mlt_header_t h = attach_header("/etc-passwd", SEG_BYTES, SEG_TOKEN);
    expect_error(&h, NULL, 0, EINVAL, "shm_name");
    h = attach_header("/mltuner-../x", SEG_BYTES, SEG_TOKEN);
    expect_error(&h, NULL, 0, EINVAL, "shm_name");
    h = attach_header("/mltuner-no-such-segment", SEG_BYTES, SEG_TOKEN);
    expect_error(&h, NULL, 0, ENOENT, "cannot open");
    h = attach_header(seg_name, SEG_BYTES + 4096, SEG_TOKEN);
    expect_error(&h, NULL, 0, EINVAL, "not the");
    h = attach_header(seg_name, SEG_BYTES, SEG_TOKEN + 1);
    expect_error(&h, NULL, 0, EPERM, "token");
    h = attach_header(seg_name, SEG_BYTES, SEG_TOKEN);
    h.has_shm_bytes = 0;
    expect_error(&h, NULL, 0, EINVAL, "lacks");
    /* detach: a good one, then the same again and a wrong token */
    uint32_t handle = seg_attach();
    mlt_wire_init(&h, MLT__MSG_TYPE__MSG_SHM_DETACH);
    h.has_shm_handle = h.has_shm_token = 1;
    h.shm_handle = handle;
    h.shm_token = SEG_TOKEN + 1;
    expect_error(&h, NULL, 0, ENOENT, "token");
    h.shm_token = SEG_TOKEN;
    size_t n;
    mlt_header_t *r = expect_ok(&h, MLT__MSG_TYPE__MSG_OK, &n);
    mlt_wire_free(&r);
    expect_error(&h, NULL, 0, ENOENT, "no shared memory segment");
    /* a push through the detached handle */
    h = shm_header(MLT__MSG_TYPE__MSG_PUSH, 0, 1, handle, 64);
    expect_error(&h, NULL, 0, ENOENT, "no shared memory segment");
    seg_free();
}
END_TEST

/* A pull of chunk 0 written into the segment at offset 64 (the header alone
 * comes back, naming that offset), then a push of ones read from it there,
 * applied to chunk 0 only (after_case checks). */
static void seg_pull_push(uint32_t handle)
{
    const size_t c0 = chunk_len(0, 0);
    mlt_header_t h = shm_header(MLT__MSG_TYPE__MSG_PULL, 0, 1, handle, 64);
    size_t n;
    mlt_header_t *r = expect_ok(&h, MLT__MSG_TYPE__MSG_PULL_REPLY, &n);
    ck_assert_uint_eq(n, 0);
    ck_assert(r->has_shm_offset && r->shm_offset == 64);
    mlt_wire_free(&r);
    for (size_t i = 0; i < c0; i++)
        ck_assert_msg(seg[16 + i] == expect[0][i], "pulled element %zu is %g, expected %g", i,
                      (double)seg[16 + i], (double)expect[0][i]);
    for (size_t i = 0; i < c0; i++)
        seg[16 + i] = 1.0f;
    h = shm_header(MLT__MSG_TYPE__MSG_PUSH, 0, 1, handle, 64);
    r = expect_ok(&h, MLT__MSG_TYPE__MSG_OK, &n);
    mlt_wire_free(&r);
    for (size_t i = 0; i < c0; i++)
        expect[0][i] -= LR;
    after_case();
}

/* #15: STEP and PULL_ALL, the requests for every table of the shard. */
START_TEST(test_shm_step)
{
    seg_make();
    uint32_t handle = seg_attach();
    uint32_t bad_order[2] = {1, 0}, beyond[1] = {7}, one[1] = {0};
    mlt_header_t h = shm_header(MLT__MSG_TYPE__MSG_STEP, 0, 1, handle, 64);
    h.has_shm_handle = 0;
    expect_error(&h, NULL, 0, EINVAL, "shm_handle");
    h = shm_header(MLT__MSG_TYPE__MSG_STEP, 0, 1, handle, 64);
    h.n_tables = 2;
    h.tables = bad_order;
    expect_error(&h, NULL, 0, EINVAL, "strictly increasing");
    h.n_tables = 1;
    h.tables = beyond;
    expect_error(&h, NULL, 0, ENOENT, "the job has");
    h.tables = one;
    h.shm_offset = SEG_BYTES - 64;
    expect_error(&h, NULL, 0, ERANGE, "do not fit");
    h.has_shm_offset = 0;
    expect_error(&h, NULL, 0, EINVAL, "lacks shm_offset");
    h.has_shm_offset = h.has_pull_offset = 1; /* a pull to carry, and no clock */
    h.shm_offset = h.pull_offset = 64;
    expect_error(&h, NULL, 0, EINVAL, "lacks clock or pull_request_id");
    h = shm_header(MLT__MSG_TYPE__MSG_PULL_ALL, 0, 1, handle, SEG_BYTES - 64);
    h.has_clock = 1;
    expect_error(&h, NULL, 0, ERANGE, "do not fit");
    h.has_shm_handle = 0;
    expect_error(&h, NULL, 0, EINVAL, "shm_handle");
    seg_free();
}
END_TEST

START_TEST(test_shm_data)
{
    seg_make();
    uint32_t handle = seg_attach();
    const size_t c0 = chunk_len(0, 0);
    seg_pull_push(handle); /* a pull written into the segment, a push read from it */
    mlt_header_t h;
    /* bad ranges, fields and payloads */
    h = shm_header(MLT__MSG_TYPE__MSG_PUSH, 0, 1, handle, SEG_BYTES - 64);
    expect_error(&h, NULL, 0, ERANGE, "do not fit");
    h = shm_header(MLT__MSG_TYPE__MSG_PUSH, 0, 1, handle, 66);
    expect_error(&h, NULL, 0, ERANGE, "float-aligned");
    h = shm_header(MLT__MSG_TYPE__MSG_PUSH, 0, 1, handle, 0);
    expect_error(&h, NULL, 0, ERANGE, "token");
    h = shm_header(MLT__MSG_TYPE__MSG_PULL, 0, 1, handle, SEG_BYTES);
    expect_error(&h, NULL, 0, ERANGE, "do not fit");
    h = shm_header(MLT__MSG_TYPE__MSG_PULL, 0, 1, handle + 1, 64);
    expect_error(&h, NULL, 0, ENOENT, "no shared memory segment");
    h = shm_header(MLT__MSG_TYPE__MSG_PUSH, 0, 1, handle, 64);
    h.shm_token = SEG_TOKEN ^ 1;
    expect_error(&h, NULL, 0, ENOENT, "with that token");
    h = shm_header(MLT__MSG_TYPE__MSG_PUSH, 0, 1, handle, 64);
    h.has_shm_offset = 0;
    expect_error(&h, NULL, 0, EINVAL, "lacks");
    frame_t f = {ones_w, c0 * sizeof(float)};
    h = shm_header(MLT__MSG_TYPE__MSG_PUSH, 0, 1, handle, 64);
    expect_error(&h, &f, 1, EINVAL, "has none");
    /* a NaN in shared memory: nothing applied, the branch diverged */
    seg[16 + c0 - 1] = NAN;
    h = shm_header(MLT__MSG_TYPE__MSG_PUSH, 0, 1, handle, 64);
    expect_error(&h, NULL, 0, EDOM, "non-finite");
    uint32_t nb;
    ck_assert(branch_status(1, &nb).diverged);
    /* the segment shrinks under the daemon: a short read, an error, no crash */
    ck_assert_int_eq(ftruncate(seg_fd, 4096), 0);
    h = shm_header(MLT__MSG_TYPE__MSG_PUSH, 0, 1, handle, 64);
    expect_error(&h, NULL, 0, EIO, "shrank");
    seg_free();
}
END_TEST

/* #15: a client's sealed memfd, named /proc/<pid>/fd/<fd>, which the shard
 * maps: an unsealed one is refused, a malformed /proc name too; through a
 * sealed one pulls land in it and pushes are applied from it, a NaN in it
 * applies nothing, and the client cannot shrink it under the mapping. */
START_TEST(test_shm_sealed)
{
    /* first the data (an error case runs a good round, whose clocks leave the
     * good client's next pull asked ahead: a raw push after it is not in it) */
    seg_make_memfd(true);
    uint32_t handle = seg_attach();
    const size_t c0 = chunk_len(0, 0);
    seg_pull_push(handle);
    mlt_header_t h;
    ck_assert_msg(ftruncate(seg_fd, 4096) < 0 && errno == EPERM, "a sealed segment shrank");
    h = shm_header(MLT__MSG_TYPE__MSG_PUSH, 0, 1, handle, SEG_BYTES - 64);
    expect_error(&h, NULL, 0, ERANGE, "do not fit");
    seg[16 + c0 - 1] = NAN;
    h = shm_header(MLT__MSG_TYPE__MSG_PUSH, 0, 1, handle, 64);
    expect_error(&h, NULL, 0, EDOM, "non-finite");
    uint32_t nb;
    ck_assert(branch_status(1, &nb).diverged);
    h = attach_header(seg_name, SEG_BYTES, SEG_TOKEN + 1);
    expect_error(&h, NULL, 0, EPERM, "token");
    munmap(seg, SEG_BYTES);
    close(seg_fd);
    /* refused: a memfd not sealed against shrinking, names not /proc/<n>/fd/<n> */
    seg_make_memfd(false);
    h = attach_header(seg_name, SEG_BYTES, SEG_TOKEN);
    expect_error(&h, NULL, 0, EPERM, "not sealed");
    h = attach_header("/proc/1/fd/x", SEG_BYTES, SEG_TOKEN);
    expect_error(&h, NULL, 0, EINVAL, "shm_name");
    h = attach_header("/proc/self/fd/3", SEG_BYTES, SEG_TOKEN);
    expect_error(&h, NULL, 0, EINVAL, "shm_name");
    munmap(seg, SEG_BYTES);
    close(seg_fd);
    /* refused before it is opened: a /proc link to a file that is no memfd
     * (here a regular file holding the token, of the right size) */
    char path[] = "/tmp/mlt-notmemfd-XXXXXX", name[64];
    int fd = mkstemp(path);
    ck_assert_int_ge(fd, 0);
    unlink(path);
    uint64_t token = SEG_TOKEN;
    ck_assert_int_eq(ftruncate(fd, SEG_BYTES), 0);
    ck_assert_int_eq(pwrite(fd, &token, sizeof token, 0), (ssize_t)sizeof token);
    snprintf(name, sizeof name, "/proc/%d/fd/%d", (int)getpid(), fd);
    h = attach_header(name, SEG_BYTES, SEG_TOKEN);
    expect_error(&h, NULL, 0, EPERM, "is not a memfd");
    close(fd);
}
END_TEST

START_TEST(test_register_other_job)
{
    Mlt__TableSpec ts;
    mlt__table_spec__init(&ts);
    ts.name = (char *)"x";
    ts.size = 5;
    Mlt__TableSpec *tp = &ts;
    Mlt__JobSpec js;
    mlt__job_spec__init(&js);
    js.name = (char *)"another";
    js.n_workers = 1;
    js.rule = MLT__RULE__RULE_SGD;
    js.n_tables = 1;
    js.tables = &tp;
    mlt_header_t h;
    mlt_wire_init(&h, MLT__MSG_TYPE__MSG_REGISTER);
    h.job = &js;
    expect_error(&h, NULL, 0, EBUSY, "serves job 'badinput'");
}
END_TEST

START_TEST(test_clock_backwards)
{
    good_round(); /* worker 0 has finished 1 clock */
    mlt_header_t h;
    mlt_wire_init(&h, MLT__MSG_TYPE__MSG_CLOCK);
    h.has_worker = h.has_branch = h.has_clock = 1;
    h.worker = 0;
    h.branch = 1;
    h.clock = clk - 1;
    expect_error(&h, NULL, 0, EINVAL, "backwards");
    uint32_t n;
    ck_assert_int_eq(branch_status(1, &n).min_clock, clk);
}
END_TEST

/* ---- non-finite values -------------------------------------------------- */

/* Frames covering every chunk of table "w": values v, the last one bad at
 * its last element. *bufp is the buffer to free. */
static frame_t *w_frames(float v, float bad, float **bufp)
{
    uint32_t n = w_chunks();
    float *buf = malloc(W_SIZE * sizeof(float));
    for (uint32_t i = 0; i < W_SIZE; i++)
        buf[i] = v;
    buf[W_SIZE - 1] = bad;
    frame_t *f = calloc(n, sizeof *f);
    for (uint32_t k = 0; k < n; k++)
        f[k] = (frame_t){buf + (size_t)k * chunk_floats, chunk_len(0, k) * sizeof(float)};
    *bufp = buf;
    return f;
}

START_TEST(test_nan_gradient)
{
    uint32_t n;
    ck_assert(!branch_status(1, &n).diverged);
    float *buf;
    frame_t *f = w_frames(1.0f, NAN, &buf);
    mlt_header_t h = data_header(MLT__MSG_TYPE__MSG_PUSH, 0, w_chunks());
    /* after_case's pull checks the values: no chunk of the push was applied */
    expect_error(&h, f, w_chunks(), EDOM, "non-finite");
    ck_assert_msg(branch_status(1, &n).diverged, "a NaN gradient left branch 1 not diverged");
    free(f);
    free(buf);
}
END_TEST

START_TEST(test_inf_write)
{
    float *buf;
    frame_t *f = w_frames(42.0f, INFINITY, &buf);
    mlt_header_t h = data_header(MLT__MSG_TYPE__MSG_WRITE, 0, w_chunks());
    expect_error(&h, f, w_chunks(), EDOM, "non-finite");
    uint32_t n;
    ck_assert_msg(!branch_status(1, &n).diverged, "a bad write marked branch 1 diverged");
    free(f);
    free(buf);
}
END_TEST

/* ---- memory_limit ------------------------------------------------------- */

START_TEST(test_fork_over_memory_limit)
{
    mlt_server_status_t st;
    ck_assert_int_eq(mlt_client_status(good[0], 0, &st), 0);
    uint64_t potential = st.memory_potential;
    ck_assert_uint_eq(st.memory_limit, 1u << 20);
    ck_assert_uint_gt(2 * potential, st.memory_limit); /* precondition: a second branch can't fit */
    mlt_server_status_free(&st);
    mlt_header_t h;
    mlt_wire_init(&h, MLT__MSG_TYPE__MSG_FORK);
    h.has_branch = h.has_parent = 1;
    h.branch = 2;
    h.parent = 1;
    expect_error(&h, NULL, 0, ENOMEM, "memory_limit");
    uint32_t n;
    branch_status(1, &n);
    ck_assert_uint_eq(n, 1);
    ck_assert_int_eq(mlt_client_status(good[0], 0, &st), 0);
    ck_assert_uint_eq(st.memory_potential, potential);
    mlt_server_status_free(&st);
}
END_TEST

/* ---- pull timeout ------------------------------------------------------- */

START_TEST(test_pull_timeout)
{
    mlt_header_t h = data_header(MLT__MSG_TYPE__MSG_PULL, 0, 1);
    h.clock = 5; /* staleness 0: needs min_clock 5; the good workers reach 1 */
    bool decodes;
    uint64_t rid = send_header(&h, NULL, 0, &decodes);
    ck_assert(decodes);
    good_round(); /* served while the pull waits */
    expect_reply(rid, ETIMEDOUT, "min_clock");
    after_case();
}
END_TEST

static TCase *tcase(const char *name, void (*setup)(void))
{
    TCase *tc = tcase_create(name);
    tcase_add_checked_fixture(tc, setup, teardown);
    tcase_set_timeout(tc, 60);
    return tc;
}

static Suite *suite(void)
{
    Suite *s = suite_create("badinput");
    TCase *tc = tcase("decode", setup_default);
    tcase_add_test(tc, test_truncated_header);
    tcase_add_test(tc, test_wrong_version);
    tcase_add_test(tc, test_unknown_type);
    tcase_add_test(tc, test_reply_as_request);
    tcase_add_test(tc, test_oversized_header);
    tcase_add_test(tc, test_worker_out_of_limit);
    suite_add_tcase(s, tc);
    tc = tcase("requests", setup_default);
    tcase_add_test(tc, test_missing_field);
    tcase_add_test(tc, test_unknown_branch);
    tcase_add_test(tc, test_unknown_table);
    tcase_add_test(tc, test_chunk_out_of_range);
    tcase_add_test(tc, test_payload_size);
    tcase_add_test(tc, test_payload_frames);
    tcase_add_test(tc, test_packed_payload);
    tcase_add_test(tc, test_packed_pull);
    tcase_add_test(tc, test_shm_attach);
    tcase_add_test(tc, test_shm_data);
    tcase_add_test(tc, test_shm_step);
    tcase_add_test(tc, test_shm_sealed);
    tcase_add_test(tc, test_register_other_job);
    tcase_add_test(tc, test_clock_backwards);
    suite_add_tcase(s, tc);
    tc = tcase("nonfinite", setup_default);
    tcase_add_test(tc, test_nan_gradient);
    tcase_add_test(tc, test_inf_write);
    suite_add_tcase(s, tc);
    tc = tcase("memory", setup_memory);
    tcase_add_test(tc, test_fork_over_memory_limit);
    suite_add_tcase(s, tc);
    tc = tcase("timeout", setup_timeout);
    tcase_add_test(tc, test_pull_timeout);
    suite_add_tcase(s, tc);
    return s;
}

int main(void)
{
    return mlt_test_run_suite(suite());
}
