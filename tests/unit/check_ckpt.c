/* check_ckpt.c - Check suite for checkpoint files (common/ckfile) and a
 * shard's checkpoint (daemon/store_ckpt.c): a file written and read back
 * whole; a flipped byte, a cut file, a size or CRC other than a manifest's,
 * a read past the payload all refused; an aborted write leaves no file under
 * the real name; a store saved and loaded keeps its branches, their values,
 * optimizer state, clocks, tunables and the chunks they share; a shard file
 * of another rank is refused and leaves the store empty. */
#include <check.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "common/alloc.h"
#include "common/ckfile.h"
#include "daemon/store.h"

static char dir[256];

static void setup(void)
{
    const char *t = getenv("TMPDIR");
    snprintf(dir, sizeof dir, "%s/check_ckpt_XXXXXX", t && *t ? t : "/tmp");
    ck_assert_ptr_nonnull(mkdtemp(dir));
}

static void teardown(void)
{
    mlt_ckfile_rmdir(dir);
}

static void path_of(const char *name, char *out, size_t cap)
{
    snprintf(out, cap, "%s/%s", dir, name);
}

/* Writes a small file "f" and returns its size and CRC. */
static void write_small(uint64_t *size, uint32_t *crc)
{
    char err[512];
    mlt_ckw_t *w = mlt_ckw_open(dir, "f", err, sizeof err);
    ck_assert_msg(w != NULL, "%s", err);
    mlt_ckw_put(w, "HEAD", 4);
    mlt_ckw_u8(w, 7);
    mlt_ckw_u32(w, 0xdeadbeefu);
    mlt_ckw_u64(w, 1ull << 40);
    mlt_ckw_i64(w, -5);
    mlt_ckw_f64(w, 0.125);
    mlt_ckw_str(w, "hello");
    float big[1000];
    for (int i = 0; i < 1000; i++)
        big[i] = (float)i;
    mlt_ckw_put(w, big, sizeof big);
    ck_assert_int_eq(mlt_ckw_close(&w, size, crc, err, sizeof err), 0);
    ck_assert_ptr_null(w);
}

START_TEST(test_roundtrip)
{
    uint64_t size;
    uint32_t crc;
    write_small(&size, &crc);
    char path[400], err[512];
    path_of("f", path, sizeof path);
    struct stat sb;
    ck_assert_int_eq(stat(path, &sb), 0);
    ck_assert_uint_eq((uint64_t)sb.st_size, size);
    path_of("f.tmp", path, sizeof path);
    ck_assert_int_ne(access(path, F_OK), 0); /* renamed, nothing left over */
    path_of("f", path, sizeof path);
    mlt_ckr_t *r = mlt_ckr_open(path, size, crc, err, sizeof err);
    ck_assert_msg(r != NULL, "%s", err);
    char head[4];
    uint8_t u8;
    uint32_t u32;
    uint64_t u64;
    int64_t i64;
    double f64;
    char *s;
    ck_assert_int_eq(mlt_ckr_get(r, head, 4), 0);
    ck_assert_int_eq(memcmp(head, "HEAD", 4), 0);
    ck_assert_int_eq(mlt_ckr_u8(r, &u8), 0);
    ck_assert_int_eq(mlt_ckr_u32(r, &u32), 0);
    ck_assert_int_eq(mlt_ckr_u64(r, &u64), 0);
    ck_assert_int_eq(mlt_ckr_i64(r, &i64), 0);
    ck_assert_int_eq(mlt_ckr_f64(r, &f64), 0);
    ck_assert_int_eq(u8, 7);
    ck_assert_uint_eq(u32, 0xdeadbeefu);
    ck_assert_uint_eq(u64, 1ull << 40);
    ck_assert_int_eq(i64, -5);
    ck_assert_double_eq(f64, 0.125);
    ck_assert_int_eq(mlt_ckr_str(r, 4, &s), -EPROTO); /* longer than allowed */
    mlt_ckr_close(&r);
    r = mlt_ckr_open(path, 0, 0, err, sizeof err);
    ck_assert_ptr_nonnull(r);
    ck_assert_uint_eq(mlt_ckr_crc(r), crc);
    ck_assert_int_eq(mlt_ckr_get(r, head, 4), 0);
    char skip[1 + 4 + 8 + 8 + 8];
    ck_assert_int_eq(mlt_ckr_get(r, skip, sizeof skip), 0);
    ck_assert_int_eq(mlt_ckr_str(r, 100, &s), 0);
    ck_assert_str_eq(s, "hello");
    mlt_free(s);
    float big[1000];
    ck_assert_int_eq(mlt_ckr_get(r, big, sizeof big), 0);
    ck_assert(big[999] == 999.0f);
    ck_assert_uint_eq(mlt_ckr_left(r), 0);
    ck_assert_int_eq(mlt_ckr_u8(r, &u8), -EPROTO); /* past the payload */
    mlt_ckr_close(&r);
    ck_assert_ptr_null(r);
}
END_TEST

/* open must fail with EPROTO and a message containing what */
static void refused(uint64_t size, uint32_t crc, const char *what)
{
    char path[400], err[512] = "";
    path_of("f", path, sizeof path);
    mlt_ckr_t *r = mlt_ckr_open(path, size, crc, err, sizeof err);
    ck_assert_msg(r == NULL, "a damaged file was accepted (%s expected)", what);
    ck_assert_msg(strstr(err, what) && strstr(err, path), "message: %s", err);
}

START_TEST(test_damage)
{
    uint64_t size;
    uint32_t crc;
    write_small(&size, &crc);
    refused(size + 1, crc, "size differs");
    refused(size, crc ^ 1, "checksum differs");
    char path[400];
    path_of("f", path, sizeof path);
    /* a flipped byte in the payload */
    FILE *f = fopen(path, "r+b");
    fseek(f, 100, SEEK_SET);
    int ch = fgetc(f);
    fseek(f, 100, SEEK_SET);
    fputc(ch ^ 0x01, f);
    fclose(f);
    refused(0, 0, "CRC32 mismatch");
    refused(size, crc, "CRC32 mismatch");
    /* cut */
    write_small(&size, &crc);
    ck_assert_int_eq(truncate(path, (off_t)size - 3), 0);
    refused(0, 0, "cut");
    ck_assert_int_eq(truncate(path, 10), 0);
    refused(0, 0, "cut");
    /* not ours */
    f = fopen(path, "w");
    fputs("this is not a checkpoint at all, but long enough", f);
    fclose(f);
    refused(0, 0, "magic");
    char err[512];
    path_of("none", path, sizeof path);
    ck_assert_ptr_null(mlt_ckr_open(path, 0, 0, err, sizeof err));
    ck_assert_int_eq(errno, ENOENT);
}
END_TEST

START_TEST(test_abort)
{
    uint64_t size;
    uint32_t crc;
    write_small(&size, &crc);
    char err[512], path[400];
    mlt_ckw_t *w = mlt_ckw_open(dir, "f", err, sizeof err);
    mlt_ckw_u32(w, 1);
    mlt_ckw_abort(&w);
    ck_assert_ptr_null(w);
    path_of("f.tmp", path, sizeof path);
    ck_assert_int_ne(access(path, F_OK), 0);
    /* the old file stands */
    path_of("f", path, sizeof path);
    mlt_ckr_t *r = mlt_ckr_open(path, size, crc, err, sizeof err);
    ck_assert_msg(r != NULL, "%s", err);
    mlt_ckr_close(&r);
    /* a directory that cannot be written */
    ck_assert_ptr_null(mlt_ckw_open("/nonexistent-dir-ckpt", "f", err, sizeof err));
    ck_assert_msg(strstr(err, "cannot create"), "%s", err);
}
END_TEST

/* ---- a shard's store ---------------------------------------------------------- */

#define CF 4u /* floats per chunk */
static const mlt_table_spec_t TABS[] = {{"a", 10}, {"b", 5}};

static mlt_tunables_t tun(float lr, uint32_t st)
{
    mlt_tunables_t t = {.h = mlt_hyper_default(), .staleness = st};
    t.h.lr = lr;
    t.h.momentum = 0.9f;
    return t;
}

static mlt_store_t *store_new(uint32_t rank, uint32_t n_servers)
{
    mlt_store_t *st = mlt_store_new(CF, 1u << 20);
    char err[256];
    ck_assert_int_eq(
        mlt_store_set_job(st, "j", 2, MLT_RULE_SGD, TABS, 2, rank, n_servers, err, sizeof err), 0);
    return st;
}

/* chunk k of table t of branch id, copied out */
static void read_chunk(mlt_store_t *st, uint32_t id, uint32_t t, uint32_t k, float *out)
{
    const float *d;
    mlt_chunk_t *c = mlt_store_chunk_get(st, mlt_store_branch(st, id), t, k, &d);
    memcpy(out, d, mlt_store_chunk_len(st, t, k) * sizeof(float));
    mlt_chunk_release(NULL, c);
}

START_TEST(test_store)
{
    mlt_store_t *st = store_new(0, 1);
    char err[512];
    mlt_tunables_t t1 = tun(0.5f, 0), t2 = tun(0.25f, 3);
    ck_assert_int_eq(mlt_store_create(st, 1, MLT_BRANCH_INIT, &t1, err, sizeof err), 0);
    float v[4] = {1, 2, 3, 4}, g[4] = {0.5f, -1, 2, 0};
    for (uint32_t k = 0; k < 3; k++)
        ck_assert_int_eq(mlt_store_write(st, mlt_store_branch(st, 1), 0, k, v), 0);
    ck_assert_int_eq(mlt_store_write(st, mlt_store_branch(st, 1), 1, 0, v), 0);
    ck_assert_int_eq(mlt_store_fork(st, 2, 1, MLT_BRANCH_TRAIN, &t2, err, sizeof err), 0);
    ck_assert_int_eq(mlt_store_fork(st, 3, 2, MLT_BRANCH_SNAPSHOT, &t2, err, sizeof err), 0);
    mlt_branch_t *b2 = mlt_store_branch(st, 2);
    ck_assert_int_eq(mlt_store_apply(st, b2, 0, 1, g), 0); /* copy-on-write: 2 owns one chunk */
    ck_assert_int_eq(mlt_store_apply(st, b2, 0, 1, g), 0); /* momentum state in play */
    int64_t mc;
    ck_assert_int_eq(mlt_store_branch_clock(b2, 0, 7, &mc), 0);
    ck_assert_int_eq(mlt_store_branch_clock(b2, 1, 9, &mc), 0);
    mlt_ckw_t *w = mlt_ckw_open(dir, "shard", err, sizeof err);
    ck_assert_int_eq(mlt_store_save(st, w, 0, 1), 0);
    uint64_t size;
    uint32_t crc;
    ck_assert_int_eq(mlt_ckw_close(&w, &size, &crc, err, sizeof err), 0);

    char path[400];
    path_of("shard", path, sizeof path);
    mlt_store_t *re = mlt_store_new(CF, 1u << 20);
    mlt_ckr_t *r = mlt_ckr_open(path, size, crc, err, sizeof err);
    ck_assert_msg(r != NULL, "%s", err);
    ck_assert_msg(mlt_store_load(re, r, 0, 1, err, sizeof err) == 0, "%s", err);
    mlt_ckr_close(&r);
    ck_assert_str_eq(mlt_store_job(re), "j");
    ck_assert_uint_eq(mlt_store_n_branches(re), 3);
    ck_assert_uint_eq(mlt_store_allocated(re), mlt_store_allocated(st)); /* sharing kept */
    for (uint32_t id = 1; id <= 3; id++) {
        mlt_branch_info_t a, b;
        mlt_store_branch_info(st, mlt_store_branch(st, id), &a);
        mlt_store_branch_info(re, mlt_store_branch(re, id), &b);
        ck_assert_int_eq(a.parent, b.parent);
        ck_assert_int_eq(a.kind, b.kind);
        /* every worker comes back at the branch's clock (store_ckpt.c): a
         * worker behind it was lost before the checkpoint */
        ck_assert_int_eq(b.min_clock, id == 2 ? 9 : a.min_clock);
        ck_assert_uint_eq(a.owned_bytes, b.owned_bytes);
        ck_assert_uint_eq(a.shared_bytes, b.shared_bytes);
        ck_assert(a.tunables.h.lr == b.tunables.h.lr);
        ck_assert_uint_eq(a.tunables.staleness, b.tunables.staleness);
        for (uint32_t t = 0; t < 2; t++)
            for (uint32_t k = 0; k < (t ? 2u : 3u); k++) {
                float x[CF], y[CF];
                read_chunk(st, id, t, k, x);
                read_chunk(re, id, t, k, y);
                ck_assert_int_eq(memcmp(x, y, mlt_store_chunk_len(st, t, k) * sizeof(float)), 0);
            }
    }
    ck_assert_int_eq(mlt_store_branch_min_clock(mlt_store_branch(re, 2)), 9);
    /* the optimizer state came back: one more identical step, identical result */
    ck_assert_int_eq(mlt_store_apply(st, mlt_store_branch(st, 2), 0, 1, g), 0);
    ck_assert_int_eq(mlt_store_apply(re, mlt_store_branch(re, 2), 0, 1, g), 0);
    float x[CF], y[CF];
    read_chunk(st, 2, 0, 1, x);
    read_chunk(re, 2, 0, 1, y);
    ck_assert_int_eq(memcmp(x, y, sizeof x), 0);
    /* another shard's file is refused, and leaves no half store */
    mlt_store_t *other = mlt_store_new(CF, 1u << 20);
    r = mlt_ckr_open(path, size, crc, err, sizeof err);
    ck_assert_int_eq(mlt_store_load(other, r, 1, 2, err, sizeof err), -EINVAL);
    ck_assert_msg(strstr(err, "shard 0 of 1"), "%s", err);
    mlt_ckr_close(&r);
    ck_assert_ptr_null(mlt_store_job(other));
    /* a store too small for it: refused, empty */
    mlt_store_t *small = mlt_store_new(CF, 200);
    r = mlt_ckr_open(path, size, crc, err, sizeof err);
    ck_assert_int_ne(mlt_store_load(small, r, 0, 1, err, sizeof err), 0);
    mlt_ckr_close(&r);
    ck_assert_ptr_null(mlt_store_job(small));
    mlt_store_destroy(&small);
    mlt_store_destroy(&other);
    mlt_store_destroy(&re);
    mlt_store_destroy(&st);
}
END_TEST

int main(void)
{
    Suite *s = suite_create("ckpt");
    TCase *tc = tcase_create("file");
    tcase_add_checked_fixture(tc, setup, teardown);
    tcase_add_test(tc, test_roundtrip);
    tcase_add_test(tc, test_damage);
    tcase_add_test(tc, test_abort);
    suite_add_tcase(s, tc);
    tc = tcase_create("store");
    tcase_add_checked_fixture(tc, setup, teardown);
    tcase_add_test(tc, test_store);
    suite_add_tcase(s, tc);
    SRunner *sr = srunner_create(s);
    srunner_run_all(sr, CK_NORMAL);
    int failed = srunner_ntests_failed(sr);
    srunner_free(sr);
    return failed ? 1 : 0;
}
