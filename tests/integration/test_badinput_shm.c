/* test_badinput_shm.c - the bad-input tests of the same-host transport: a
 * raw client's own shared-memory segments (POSIX, and sealed memfds the shard
 * maps), bad ranges, tokens and handles, and #15's STEP and PULL_ALL; the
 * fixture and its checks after every bad message are test_badinput.c's
 * (badinput.h). */
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
#include "tests/integration/suite_main.h"

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

static Suite *suite(void)
{
    Suite *s = suite_create("badinput-shm");
    TCase *tc = tcase_create("shm");
    tcase_add_checked_fixture(tc, setup_default, teardown);
    tcase_set_timeout(tc, 60);
    tcase_add_test(tc, test_shm_attach);
    tcase_add_test(tc, test_shm_data);
    tcase_add_test(tc, test_shm_step);
    tcase_add_test(tc, test_shm_sealed);
    suite_add_tcase(s, tc);
    return s;
}

int main(void)
{
    return mlt_test_run_suite(suite());
}
