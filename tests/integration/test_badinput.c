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
#include "tests/integration/badinput.h"
#include "tests/integration/suite_main.h"
#include "client/mltuner.h"

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
