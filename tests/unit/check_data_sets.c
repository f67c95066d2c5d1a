/* check_data_sets.c - the sampler (partition coverage and disjointness,
 * per-epoch order, seek), ratings files (u.data, ratings.csv, .dat, and each
 * error with its line) and synthetic ratings (determinism, noise; common/rng).
 * Part of check_data (see check_data.c). */
#include "tests/unit/check_data.h"

#include <errno.h>
#include <limits.h>
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common/alloc.h"
#include "common/rng.h"

/* ---- sampler ------------------------------------------------------------- */

/* One epoch of s in batches of `batch`: fills out[size], checks the batch
 * sizes (full, then one short one) and that the sampler moved to epoch+1. */
static void run_epoch(mlt_sampler_t *s, uint32_t batch, uint32_t *out)
{
    uint32_t size = mlt_sampler_size(s), got = 0;
    uint64_t e = mlt_sampler_epoch(s);
    ck_assert_uint_eq(mlt_sampler_pos(s), 0);
    while (got < size) {
        ck_assert_uint_eq(mlt_sampler_epoch(s), e);
        ck_assert(fabs(mlt_sampler_progress(s) - (double)got / size) < 1e-12);
        uint32_t n = mlt_sampler_next_batch(s, batch, out + got);
        ck_assert_uint_eq(n, size - got < batch ? size - got : batch);
        got += n;
    }
    ck_assert_uint_eq(mlt_sampler_epoch(s), e + 1);
    ck_assert(mlt_sampler_progress(s) == 0.0);
}

START_TEST(test_sampler_partitions)
{
    enum { N = 1000, W = 3 };
    uint32_t owner[N];
    memset(owner, 0xff, sizeof owner);
    uint32_t total = 0, out[N];
    for (uint32_t w = 0; w < W; w++) {
        mlt_sampler_t *s = mlt_sampler_new(N, w, W, 77);
        ck_assert_ptr_nonnull(s);
        uint32_t size = mlt_sampler_size(s);
        ck_assert_uint_eq(size, w == 0 ? 334 : 333);
        total += size;
        run_epoch(s, 64, out);
        for (uint32_t k = 0; k < size; k++) {
            ck_assert_uint_lt(out[k], N);
            ck_assert_msg(owner[out[k]] == UINT32_MAX, "sample %u twice (workers %u and %u)",
                          out[k], owner[out[k]], w);
            owner[out[k]] = w;
        }
        /* the next epochs visit the same set again, once each */
        uint8_t seen[N] = {0};
        run_epoch(s, 1000, out);
        for (uint32_t k = 0; k < size; k++) {
            ck_assert_uint_eq(owner[out[k]], w);
            ck_assert_uint_eq(seen[out[k]]++, 0);
        }
        mlt_sampler_destroy(&s);
        ck_assert_ptr_null(s);
    }
    ck_assert_uint_eq(total, N);
    for (uint32_t i = 0; i < N; i++)
        ck_assert_uint_ne(owner[i], UINT32_MAX);
    /* the partition is not a plain stride of the index (global permutation) */
    int stride = 1;
    for (uint32_t i = 0; i < N; i++)
        stride &= owner[i] == i % W;
    ck_assert(!stride);
}
END_TEST

START_TEST(test_sampler_order)
{
    enum { N = 500 };
    uint32_t a[N], b[N], c[N];
    mlt_sampler_t *s1 = mlt_sampler_new(N, 1, 2, 5), *s2 = mlt_sampler_new(N, 1, 2, 5);
    mlt_sampler_t *s3 = mlt_sampler_new(N, 1, 2, 6);
    for (int e = 0; e < 3; e++) {
        run_epoch(s1, 32, a);
        run_epoch(s2, 7, b); /* batch size does not change the order */
        run_epoch(s3, 32, c);
        ck_assert_mem_eq(a, b, 250 * sizeof *a);
        ck_assert(memcmp(a, c, 250 * sizeof *a) != 0);
    }
    /* consecutive epochs differ in order */
    run_epoch(s1, 250, a);
    run_epoch(s1, 250, b);
    ck_assert(memcmp(a, b, 250 * sizeof *a) != 0);
    /* batch 0 hands out nothing and does not move */
    ck_assert_uint_eq(mlt_sampler_next_batch(s1, 0, NULL), 0);
    ck_assert_uint_eq(mlt_sampler_pos(s1), 0);
    mlt_sampler_destroy(&s1);
    mlt_sampler_destroy(&s2);
    mlt_sampler_destroy(&s3);
    mlt_sampler_destroy(&s3); /* NULL is fine */
    mlt_sampler_destroy(NULL);
}
END_TEST

START_TEST(test_sampler_seek)
{
    enum { N = 300 };
    uint32_t a[N], b[N];
    mlt_sampler_t *s = mlt_sampler_new(N, 0, 1, 11), *t = mlt_sampler_new(N, 0, 1, 11);
    ck_assert_uint_eq(mlt_sampler_size(s), N);
    run_epoch(s, 100, a);
    run_epoch(s, 100, a);
    ck_assert_uint_eq(mlt_sampler_next_batch(s, 50, a), 50);
    ck_assert_uint_eq(mlt_sampler_epoch(s), 2);
    ck_assert_uint_eq(mlt_sampler_pos(s), 50);
    ck_assert(fabs(mlt_sampler_progress(s) - 50.0 / 300) < 1e-12);
    ck_assert_uint_eq(mlt_sampler_next_batch(s, 100, a), 100);

    ck_assert_int_eq(mlt_sampler_seek(t, 2, 50), 0);
    ck_assert_uint_eq(mlt_sampler_next_batch(t, 100, b), 100);
    ck_assert_mem_eq(a, b, 100 * sizeof *a);
    /* back to an earlier epoch, then to the end of one (= start of the next) */
    ck_assert_int_eq(mlt_sampler_seek(t, 0, 0), 0);
    run_epoch(t, 300, b);
    ck_assert_int_eq(mlt_sampler_seek(s, 0, 0), 0);
    run_epoch(s, 300, a);
    ck_assert_mem_eq(a, b, N * sizeof *a);
    ck_assert_int_eq(mlt_sampler_seek(t, 4, N), 0);
    ck_assert_uint_eq(mlt_sampler_epoch(t), 5);
    ck_assert_uint_eq(mlt_sampler_pos(t), 0);
    ck_assert_int_eq(mlt_sampler_seek(t, 1, N + 1), -EINVAL);
    ck_assert_uint_eq(mlt_sampler_epoch(t), 5);
    ck_assert_int_eq(mlt_sampler_seek(t, UINT64_MAX, N), -EINVAL);
    mlt_sampler_destroy(&s);
    mlt_sampler_destroy(&t);
}
END_TEST

START_TEST(test_sampler_args)
{
    errno = 0;
    ck_assert_ptr_null(mlt_sampler_new(10, 0, 0, 1));
    ck_assert_int_eq(errno, EINVAL);
    errno = 0;
    ck_assert_ptr_null(mlt_sampler_new(10, 3, 3, 1));
    ck_assert_int_eq(errno, EINVAL);
    errno = 0;
    ck_assert_ptr_null(mlt_sampler_new(2, 0, 3, 1)); /* a worker would get nothing */
    ck_assert_int_eq(errno, EINVAL);
    mlt_sampler_t *s = mlt_sampler_new(3, 2, 3, 1);
    ck_assert_ptr_nonnull(s);
    ck_assert_uint_eq(mlt_sampler_size(s), 1);
    uint32_t i;
    ck_assert_uint_eq(mlt_sampler_next_batch(s, 8, &i), 1);
    ck_assert_uint_eq(mlt_sampler_epoch(s), 1);
    mlt_sampler_destroy(&s);
    mlt_alloc_fail_after(2);
    errno = 0;
    ck_assert_ptr_null(mlt_sampler_new(100, 0, 2, 1));
    ck_assert_int_eq(errno, ENOMEM);
    mlt_alloc_fail_after(-1);
}
END_TEST

/* ---- ratings -------------------------------------------------------------- */

static int load_ratings_text(const char *name, const char *text, int gz, mlt_ratings_t *r,
                             char *path, char *err)
{
    write_file(name, text, strlen(text), gz, path);
    memset(r, 0xab, sizeof *r);
    err[0] = '\0';
    return mlt_ratings_load(path, r, err, ERRLEN);
}

START_TEST(test_ratings_udata)
{
    char path[PATH_MAX], err[ERRLEN];
    mlt_ratings_t r;
    const char *text = "196\t242\t3\t881250949\n"
                       "186\t302\t3\t891717742\n"
                       "\n"
                       "22\t377\t1\t878887116\n"
                       "196\t377\t5\t1\n";
    ck_assert_msg(load_ratings_text("u.data", text, 0, &r, path, err) == 0, "%s", err);
    ck_assert_uint_eq(r.n, 4);
    ck_assert_uint_eq(r.n_users, 3);
    ck_assert_uint_eq(r.n_items, 3);
    const uint32_t uid[] = {22, 186, 196}, iid[] = {242, 302, 377};
    ck_assert_mem_eq(r.user_id, uid, sizeof uid);
    ck_assert_mem_eq(r.item_id, iid, sizeof iid);
    const mlt_rating_t want[] = {{2, 0, 3.0f}, {1, 1, 3.0f}, {0, 2, 1.0f}, {2, 2, 5.0f}};
    for (int i = 0; i < 4; i++) {
        ck_assert_uint_eq(r.v[i].user, want[i].user);
        ck_assert_uint_eq(r.v[i].item, want[i].item);
        ck_assert(r.v[i].r == want[i].r);
    }
    mlt_ratings_free(&r);
    ck_assert_ptr_null(r.v);
    mlt_ratings_free(&r);
    mlt_ratings_free(NULL);
}
END_TEST

START_TEST(test_ratings_csv)
{
    char path[PATH_MAX], err[ERRLEN];
    mlt_ratings_t r;
    const char *text = "userId,movieId,rating,timestamp\r\n"
                       "1,31,2.5,1260759144\r\n"
                       "1,1029,3.0,1260759179\r\n"
                       "7,31,0.5,1260759182\r\n"
                       "3,1029,10,1260759185"; /* no final newline */
    for (int gz = 0; gz < 2; gz++) {
        ck_assert_msg(
            load_ratings_text(gz ? "ratings.csv.gz" : "ratings.csv", text, gz, &r, path, err) == 0,
            "%s", err);
        ck_assert_uint_eq(r.n, 4);
        ck_assert_uint_eq(r.n_users, 3);
        ck_assert_uint_eq(r.n_items, 2);
        ck_assert(r.v[0].user == 0 && r.v[0].item == 0 && r.v[0].r == 2.5f);
        ck_assert(r.v[1].user == 0 && r.v[1].item == 1 && r.v[1].r == 3.0f);
        ck_assert(r.v[2].user == 2 && r.v[2].item == 0 && r.v[2].r == 0.5f);
        ck_assert(r.v[3].user == 1 && r.v[3].item == 1 && r.v[3].r == 10.0f);
        ck_assert_uint_eq(r.user_id[2], 7);
        ck_assert_uint_eq(r.item_id[1], 1029);
        mlt_ratings_free(&r);
    }
    /* without its header, comma-separated lines are accepted too */
    ck_assert_msg(load_ratings_text("nohdr.csv", "5,6,4.5,0\n", 0, &r, path, err) == 0, "%s", err);
    ck_assert_uint_eq(r.n, 1);
    mlt_ratings_free(&r);
}
END_TEST

/* Loads text expecting -EINVAL with "<path>:<line>:" and `what` in the message. */
#define RATINGS_BAD(text, line, what) ratings_bad_((text), (line), (what), __LINE__)
static void ratings_bad_(const char *text, int line, const char *what, int src_line)
{
    char path[PATH_MAX], err[ERRLEN], where[PATH_MAX + 16];
    mlt_ratings_t r;
    int rc = load_ratings_text("bad.data", text, src_line % 2, &r, path, err);
    snprintf(where, sizeof where, "%s:%d: ", path, line);
    expect_err_(rc, -EINVAL, err, src_line, where, what, NULL);
    ck_assert(r.v == NULL && r.n == 0 && r.user_id == NULL);
    ck_assert_msg(strchr(err, '\n') == NULL, "multi-line message: %s", err);
}

START_TEST(test_ratings_dat)
{
    /* MovieLens 1M and 10M ratings.dat: UserID::MovieID::Rating::Timestamp */
    char path[PATH_MAX], err[ERRLEN];
    mlt_ratings_t r;
    const char *text = "1::1193::5::978300760\n"
                       "1::661::3::978302109\n"
                       "2::1193::4.5::978298413\n";
    ck_assert_msg(load_ratings_text("ratings.dat", text, 0, &r, path, err) == 0, "%s", err);
    ck_assert_uint_eq(r.n, 3);
    ck_assert_uint_eq(r.n_users, 2);
    ck_assert_uint_eq(r.n_items, 2);
    ck_assert_uint_eq(r.user_id[1], 2);
    ck_assert_uint_eq(r.item_id[1], 1193);
    ck_assert(r.v[0].user == 0 && r.v[0].item == 1 && r.v[0].r == 5.0f);
    ck_assert(r.v[2].user == 1 && r.v[2].item == 1 && r.v[2].r == 4.5f);
    mlt_ratings_free(&r);
    /* a line with three fields names the separator */
    RATINGS_BAD("1::2::3::4\n1::2::3\n", 2, "4 '::'-separated fields");
}
END_TEST

START_TEST(test_ratings_errors)
{
    const char *ok = "1\t2\t3\t4\n";
    char text[4096];
    RATINGS_BAD("", 1, "no ratings");
    RATINGS_BAD("\n\n", 3, "no ratings");
    RATINGS_BAD("userId,movieId,rating,timestamp\n", 2, "only a header");
    RATINGS_BAD("user,movie,rating,time\n1,2,3,4\n", 1, "unrecognised header");
    RATINGS_BAD("1 2 3 4\n", 1, "unrecognised format");
    snprintf(text, sizeof text, "%s%s1\t2\t3\n", ok, ok);
    RATINGS_BAD(text, 3, "expected 4 tab-separated fields");
    snprintf(text, sizeof text, "%s1\t2\t3\t4\t5\n", ok);
    RATINGS_BAD(text, 2, "got 5");
    snprintf(text, sizeof text, "%s%s\n1\tx\t3\t5\n", ok, ok);
    RATINGS_BAD(text, 4, "field 2: item id 'x'");
    snprintf(text, sizeof text, "%s-1\t2\t3\t5\n", ok);
    RATINGS_BAD(text, 2, "field 1: user id '-1'");
    snprintf(text, sizeof text, "%s4294967296\t2\t3\t5\n", ok);
    RATINGS_BAD(text, 2, "exceeds 4294967295");
    snprintf(text, sizeof text, "%s\t2\t3\t5\n", ok);
    RATINGS_BAD(text, 2, "field 1");
    snprintf(text, sizeof text, "%s%s%s1\t2\t11\t5\n", ok, ok, ok);
    RATINGS_BAD(text, 4, "rating 11 outside [0, 10]");
    snprintf(text, sizeof text, "%s1\t2\t-0.5\t5\n", ok);
    RATINGS_BAD(text, 2, "rating -0.5 outside");
    snprintf(text, sizeof text, "%s1\t2\tnan\t5\n", ok);
    RATINGS_BAD(text, 2, "rating 'nan' is not a number");
    snprintf(text, sizeof text, "%s1\t2\t3.5x\t5\n", ok);
    RATINGS_BAD(text, 2, "is not a number");
    snprintf(text, sizeof text, "%s1\t2\t3\tyesterday\n", ok);
    RATINGS_BAD(text, 2, "timestamp 'yesterday'");
    RATINGS_BAD("userId,movieId,rating,timestamp\n1,2,3.5,4\n1;2;3;4\n", 3,
                "expected 4 comma-separated fields");
    /* a line past the limit */
    memset(text, '1', MLT_RATINGS_MAX_LINE + 10);
    memcpy(text, ok, strlen(ok));
    strcpy(text + MLT_RATINGS_MAX_LINE + 10, "\n");
    RATINGS_BAD(text, 2, "line longer than");

    char path[PATH_MAX], err[ERRLEN];
    snprintf(path, sizeof path, "%s/no-such-ratings.csv", tmpdir);
    mlt_ratings_t r;
    EXPECT_ERR(mlt_ratings_load(path, &r, err, sizeof err), -ENOENT, err, path,
               "No such file or directory");
    mlt_alloc_fail_after(0);
    int rc = load_ratings_text("oom.data", ok, 0, &r, path, err);
    mlt_alloc_fail_after(-1);
    EXPECT_ERR(rc, -ENOMEM, err, path, "out of memory");
    ck_assert_ptr_null(r.v);
}
END_TEST

/* ---- synth ------------------------------------------------------------------ */

START_TEST(test_synth_deterministic)
{
    mlt_ratings_t a, b, c;
    ck_assert_int_eq(mlt_ratings_synth(100, 80, 5, 5000, 0.3f, 1, &a), 0);
    ck_assert_int_eq(mlt_ratings_synth(100, 80, 5, 5000, 0.3f, 1, &b), 0);
    ck_assert_int_eq(mlt_ratings_synth(100, 80, 5, 5000, 0.3f, 2, &c), 0);
    ck_assert_uint_eq(a.n, 5000);
    ck_assert_uint_eq(a.n_users, 100);
    ck_assert_uint_eq(a.n_items, 80);
    ck_assert_ptr_null(a.user_id);
    ck_assert_mem_eq(a.v, b.v, a.n * sizeof *a.v);
    ck_assert(memcmp(a.v, c.v, a.n * sizeof *a.v) != 0);
    for (uint64_t i = 0; i < a.n; i++)
        ck_assert(a.v[i].user < 100 && a.v[i].item < 80 && isfinite(a.v[i].r));
    mlt_ratings_free(&b);
    /* a longer run starts with the same ratings */
    ck_assert_int_eq(mlt_ratings_synth(100, 80, 5, 6000, 0.3f, 1, &b), 0);
    ck_assert_mem_eq(a.v, b.v, a.n * sizeof *a.v);
    mlt_ratings_free(&a);
    mlt_ratings_free(&b);
    mlt_ratings_free(&c);
}
END_TEST

START_TEST(test_synth_noise)
{
    const uint32_t U = 2000, I = 1000, K = 20;
    const uint64_t N = 100000;
    const float sigma = 0.5f;
    mlt_ratings_t r;
    float *u, *v;
    ck_assert_int_eq(mlt_ratings_synth(U, I, K, N, sigma, 123, &r), 0);
    ck_assert_int_eq(mlt_ratings_synth_factors(U, I, K, 123, &u, &v), 0);
    double s1 = 0, s2 = 0, d2 = 0;
    for (uint64_t i = 0; i < N; i++) {
        double dot = 0;
        for (uint32_t k = 0; k < K; k++)
            dot += (double)u[(size_t)r.v[i].user * K + k] * v[(size_t)r.v[i].item * K + k];
        double e = r.v[i].r - dot;
        s1 += e;
        s2 += e * e;
        d2 += dot * dot;
    }
    double mean = s1 / N, var = s2 / N - mean * mean;
    ck_assert_msg(fabs(var - sigma * sigma) < 0.05 * sigma * sigma, "noise variance %g, want %g",
                  var, (double)sigma * sigma);
    ck_assert_msg(fabs(mean) < 0.01, "noise mean %g", mean);
    ck_assert_msg(fabs(d2 / N - 1.0) < 0.2, "signal variance %g, want ~1", d2 / N);

    /* factor entries have variance 1/sqrt(rank) */
    double f2 = 0;
    for (size_t i = 0; i < (size_t)U * K; i++)
        f2 += (double)u[i] * u[i];
    f2 /= (double)U * K;
    ck_assert_msg(fabs(f2 - 1.0 / sqrt(K)) < 0.05 / sqrt(K), "factor variance %g", f2);
    mlt_free(u);
    mlt_free(v);
    mlt_ratings_free(&r);

    /* sigma 0: the ratings are exactly the products */
    ck_assert_int_eq(mlt_ratings_synth(30, 20, 4, 100, 0.0f, 7, &r), 0);
    ck_assert_int_eq(mlt_ratings_synth_factors(30, 20, 4, 7, &u, &v), 0);
    for (uint64_t i = 0; i < r.n; i++) {
        double dot = 0;
        for (uint32_t k = 0; k < 4; k++)
            dot += (double)u[r.v[i].user * 4 + k] * v[r.v[i].item * 4 + k];
        ck_assert(r.v[i].r == (float)dot);
    }
    mlt_free(u);
    mlt_free(v);
    mlt_ratings_free(&r);
}
END_TEST

START_TEST(test_synth_args)
{
    mlt_ratings_t r;
    float *u, *v;
    ck_assert_int_eq(mlt_ratings_synth(0, 5, 2, 10, 0.1f, 1, &r), -EINVAL);
    ck_assert_int_eq(mlt_ratings_synth(5, 0, 2, 10, 0.1f, 1, &r), -EINVAL);
    ck_assert_int_eq(mlt_ratings_synth(5, 5, 0, 10, 0.1f, 1, &r), -EINVAL);
    ck_assert_int_eq(mlt_ratings_synth(5, 5, 2, 0, 0.1f, 1, &r), -EINVAL);
    ck_assert_int_eq(mlt_ratings_synth(5, 5, 2, 10, -0.1f, 1, &r), -EINVAL);
    ck_assert_int_eq(mlt_ratings_synth(5, 5, 2, 10, NAN, 1, &r), -EINVAL);
    ck_assert_int_eq(mlt_ratings_synth(5, 5, 2, 10, INFINITY, 1, &r), -EINVAL);
    ck_assert_ptr_null(r.v);
    ck_assert_int_eq(mlt_ratings_synth_factors(0, 5, 2, 1, &u, &v), -EINVAL);
    ck_assert(u == NULL && v == NULL);
    for (long k = 0; k < 3; k++) {
        mlt_alloc_fail_after(k);
        int rc = mlt_ratings_synth(5, 5, 2, 10, 0.1f, 1, &r);
        mlt_alloc_fail_after(-1);
        ck_assert_int_eq(rc, -ENOMEM);
        ck_assert_ptr_null(r.v);
    }
}
END_TEST

START_TEST(test_rng)
{
    uint64_t a = 0, b = 0, c = 1;
    /* SplitMix64's published first output for seed 0 */
    ck_assert_uint_eq(mlt_rng_next(&a), 0xe220a8397b1dcdafull);
    ck_assert_uint_eq(mlt_rng_next(&b), 0xe220a8397b1dcdafull);
    ck_assert_uint_ne(mlt_rng_next(&c), 0xe220a8397b1dcdafull);
    uint64_t st = 99;
    double s1 = 0, s2 = 0, m = 0;
    uint32_t hist[10] = {0};
    const int N = 200000;
    for (int i = 0; i < N; i++) {
        double z = mlt_rng_normal(&st);
        s1 += z;
        s2 += z * z;
        double x = mlt_rng_uniform(&st);
        ck_assert(x >= 0.0 && x < 1.0);
        m += x;
        uint32_t k = mlt_rng_below(&st, 10);
        ck_assert_uint_lt(k, 10);
        hist[k]++;
    }
    ck_assert(fabs(s1 / N) < 0.02 && fabs(s2 / N - 1.0) < 0.02);
    ck_assert(fabs(m / N - 0.5) < 0.01);
    for (int k = 0; k < 10; k++)
        ck_assert(abs((int)hist[k] - N / 10) < N / 100);
    ck_assert_uint_eq(mlt_rng_below(&st, 1), 0);
    ck_assert_uint_ne(mlt_rng_mix(1, 0), mlt_rng_mix(1, 1));
    ck_assert_uint_ne(mlt_rng_mix(1, 0), mlt_rng_mix(2, 0));
}
END_TEST

void cd_sets_tcases(Suite *s)
{
    TCase *tc;
    tc = tcase_create("sampler");
    tcase_add_test(tc, test_sampler_partitions);
    tcase_add_test(tc, test_sampler_order);
    tcase_add_test(tc, test_sampler_seek);
    tcase_add_test(tc, test_sampler_args);
    suite_add_tcase(s, tc);

    tc = tcase_create("ratings");
    tcase_add_test(tc, test_ratings_udata);
    tcase_add_test(tc, test_ratings_csv);
    tcase_add_test(tc, test_ratings_dat);
    tcase_add_test(tc, test_ratings_errors);
    suite_add_tcase(s, tc);

    tc = tcase_create("synth");
    tcase_add_test(tc, test_synth_deterministic);
    tcase_add_test(tc, test_synth_noise);
    tcase_add_test(tc, test_synth_args);
    tcase_add_test(tc, test_rng);
    suite_add_tcase(s, tc);
}
