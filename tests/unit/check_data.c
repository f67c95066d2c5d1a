/* check_data.c - Check suite for worker/data (datasets, sampler, ratings).
 *
 * "idx": small IDX files written to a mkdtemp directory, plain and gzipped,
 * loaded and compared value by value; the real Fashion-MNIST files when the
 * Debian package dataset-fashion-mnist is installed (else a printed note).
 * "errors": every refusal of mlt_idx_load, each with its return code and a
 * message naming the file and the byte offset.
 * "split": held-out and subset copies of datasets, ratings splits.
 * In check_data_sets.c: "sampler" (partition coverage and disjointness,
 * per-epoch order, seek), "ratings" (u.data and ratings.csv parsing, and each
 * error with its line), "synth" (determinism and the noise level of
 * mlt_ratings_synth; common/rng). */
#include "worker/data.h"
#include "tests/unit/check_data.h"

#include <check.h>
#include <errno.h>
#include <ftw.h>
#include <limits.h>
#include <math.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>
#include <zlib.h>

#include "common/alloc.h"
#include "common/rng.h"

#define FMNIST_DIR "/usr/share/datasets/fashion-mnist"

char tmpdir[256]; /* made by main, removed at exit; short, so paths under it fit PATH_MAX */

/* ---- helpers ------------------------------------------------------------ */

/* A growable byte buffer for building files. */
typedef struct buf {
    uint8_t *p;
    size_t n, cap;
} buf_t;

static void put(buf_t *b, const void *src, size_t n)
{
    if (b->n + n > b->cap) {
        b->cap = (b->n + n) * 2 + 64;
        b->p = mlt_realloc(b->p, b->cap);
    }
    memcpy(b->p + b->n, src, n);
    b->n += n;
}

static void put_be32(buf_t *b, uint32_t v)
{
    uint8_t x[4] = {(uint8_t)(v >> 24), (uint8_t)(v >> 16), (uint8_t)(v >> 8), (uint8_t)v};
    put(b, x, 4);
}

static void put_str(buf_t *b, const char *s)
{
    put(b, s, strlen(s));
}

/* Writes data to tmpdir/name (gzipped when gz) and puts the path in path. */
void write_file(const char *name, const void *data, size_t n, int gz, char *path)
{
    snprintf(path, PATH_MAX, "%s/%s", tmpdir, name);
    if (gz) {
        gzFile f = gzopen(path, "wb");
        ck_assert_ptr_nonnull(f);
        if (n > 0)
            ck_assert_int_eq(gzwrite(f, data, (unsigned)n), (int)n);
        ck_assert_int_eq(gzclose(f), Z_OK);
    } else {
        FILE *f = fopen(path, "wb");
        ck_assert_ptr_nonnull(f);
        if (n > 0)
            ck_assert_uint_eq(fwrite(data, 1, n, f), n);
        ck_assert_int_eq(fclose(f), 0);
    }
}

static uint8_t pixel(uint32_t i)
{
    return (uint8_t)(i * 37u + 11u);
}

/* IDX images: magic 0x803, n x rows x cols, pixel(k) for the k-th byte. */
static buf_t idx_images(uint32_t n, uint32_t rows, uint32_t cols)
{
    buf_t b = {0};
    put_be32(&b, 0x00000803);
    put_be32(&b, n);
    put_be32(&b, rows);
    put_be32(&b, cols);
    for (uint32_t k = 0; k < n * rows * cols; k++) {
        uint8_t p = pixel(k);
        put(&b, &p, 1);
    }
    return b;
}

/* IDX labels: magic 0x801, n labels i % classes. */
static buf_t idx_labels(uint32_t n, uint32_t classes)
{
    buf_t b = {0};
    put_be32(&b, 0x00000801);
    put_be32(&b, n);
    for (uint32_t i = 0; i < n; i++) {
        uint8_t y = (uint8_t)(i % classes);
        put(&b, &y, 1);
    }
    return b;
}

/* Writes a pair of IDX files (images of n x 3 x 4, labels of 3 classes). */
static void write_pair(uint32_t n, int gz_images, int gz_labels, char *ipath, char *lpath)
{
    buf_t im = idx_images(n, 3, 4), lb = idx_labels(n, 3);
    write_file(gz_images ? "img.gz" : "img", im.p, im.n, gz_images, ipath);
    write_file(gz_labels ? "lab.gz" : "lab", lb.p, lb.n, gz_labels, lpath);
    mlt_free(im.p);
    mlt_free(lb.p);
}

/* Asserts rc == want and that msg contains every string in the NULL-terminated
 * list (the file name, "offset N", ...). */
void expect_err_(int rc, int want, const char *msg, int line, ...)
{
    ck_assert_msg(rc == want, "line %d: expected %d (%s), got %d; message: %s", line, want,
                  strerror(-want), rc, msg);
    va_list ap;
    va_start(ap, line);
    for (const char *s; (s = va_arg(ap, const char *)) != NULL;)
        ck_assert_msg(strstr(msg, s) != NULL, "line %d: message '%s' lacks '%s'", line, msg, s);
    va_end(ap);
}

/* Loads images/labels expecting `want`, and checks the output stayed zeroed. */
static int load_fail(const char *ipath, const char *lpath, char *err)
{
    mlt_dataset_t d;
    memset(&d, 0xab, sizeof d);
    err[0] = '\0';
    int rc = mlt_idx_load(ipath, lpath, &d, err, ERRLEN);
    ck_assert_msg(rc < 0, "expected failure, got %d", rc);
    ck_assert_ptr_null(d.x);
    ck_assert_ptr_null(d.y);
    ck_assert_uint_eq(d.n, 0);
    ck_assert_msg(strchr(err, '\n') == NULL, "multi-line message: %s", err);
    return rc;
}

/* ---- idx ---------------------------------------------------------------- */

static void check_loaded(const mlt_dataset_t *d, uint32_t n)
{
    ck_assert_uint_eq(d->n, n);
    ck_assert_uint_eq(d->rows, 3);
    ck_assert_uint_eq(d->cols, 4);
    ck_assert_uint_eq(d->n_classes, n >= 3 ? 3 : n);
    ck_assert_uint_eq((uintptr_t)d->x % 64, 0);
    for (uint32_t k = 0; k < n * 12; k++)
        ck_assert_msg(d->x[k] == (float)pixel(k) / 255.0f, "x[%u] = %g, want %g", k, d->x[k],
                      (double)pixel(k) / 255.0);
    for (uint32_t i = 0; i < n; i++)
        ck_assert_uint_eq(d->y[i], i % 3);
}

START_TEST(test_idx_plain)
{
    char ip[PATH_MAX], lp[PATH_MAX], err[ERRLEN] = "";
    write_pair(7, 0, 0, ip, lp);
    mlt_dataset_t d;
    ck_assert_msg(mlt_idx_load(ip, lp, &d, err, sizeof err) == 0, "%s", err);
    check_loaded(&d, 7);
    mlt_dataset_free(&d);
    ck_assert_ptr_null(d.x);
    ck_assert_uint_eq(d.n, 0);
    mlt_dataset_free(&d); /* twice is fine */
    mlt_dataset_free(NULL);
}
END_TEST

START_TEST(test_idx_gzip)
{
    char ip[PATH_MAX], lp[PATH_MAX], err[ERRLEN] = "";
    for (int mode = 1; mode < 4; mode++) { /* gz images, gz labels, both */
        write_pair(50, mode & 1, (mode >> 1) & 1, ip, lp);
        mlt_dataset_t d;
        ck_assert_msg(mlt_idx_load(ip, lp, &d, err, sizeof err) == 0, "%s", err);
        check_loaded(&d, 50);
        mlt_dataset_free(&d);
    }
}
END_TEST

/* pixel 0 -> 0.0 and 255 -> 1.0 exactly; sizes at the limit; one sample. */
START_TEST(test_idx_bounds)
{
    char ip[PATH_MAX], lp[PATH_MAX], err[ERRLEN] = "";
    buf_t im = {0}, lb = {0};
    put_be32(&im, 0x803);
    put_be32(&im, 1);
    put_be32(&im, MLT_IDX_MAX_DIM);
    put_be32(&im, 1);
    for (uint32_t i = 0; i < MLT_IDX_MAX_DIM; i++) {
        uint8_t p = i % 2 ? 255 : 0;
        put(&im, &p, 1);
    }
    put_be32(&lb, 0x801);
    put_be32(&lb, 1);
    uint8_t y = 255;
    put(&lb, &y, 1);
    write_file("big.gz", im.p, im.n, 1, ip);
    write_file("one", lb.p, lb.n, 0, lp);
    mlt_dataset_t d;
    ck_assert_msg(mlt_idx_load(ip, lp, &d, err, sizeof err) == 0, "%s", err);
    ck_assert_uint_eq(d.n, 1);
    ck_assert_uint_eq(d.rows, MLT_IDX_MAX_DIM);
    ck_assert_uint_eq(d.n_classes, 256);
    for (uint32_t i = 0; i < MLT_IDX_MAX_DIM; i++)
        ck_assert(d.x[i] == (i % 2 ? 1.0f : 0.0f));
    mlt_dataset_free(&d);
    mlt_free(im.p);
    mlt_free(lb.p);
}
END_TEST

START_TEST(test_idx_oom)
{
    char ip[PATH_MAX], lp[PATH_MAX], err[ERRLEN] = "";
    write_pair(5, 1, 0, ip, lp);
    for (long k = 0; k < 2; k++) { /* pixels, then labels */
        mlt_alloc_fail_after(k);
        int rc = load_fail(ip, lp, err);
        mlt_alloc_fail_after(-1);
        EXPECT_ERR(rc, -ENOMEM, err, ip, "out of memory");
    }
}
END_TEST

static void check_fmnist(const char *images, const char *labels, uint32_t n)
{
    char ip[PATH_MAX], lp[PATH_MAX], err[ERRLEN] = "";
    snprintf(ip, sizeof ip, "%s/%s", FMNIST_DIR, images);
    snprintf(lp, sizeof lp, "%s/%s", FMNIST_DIR, labels);
    mlt_dataset_t d;
    ck_assert_msg(mlt_idx_load(ip, lp, &d, err, sizeof err) == 0, "%s", err);
    ck_assert_uint_eq(d.n, n);
    ck_assert_uint_eq(d.rows, 28);
    ck_assert_uint_eq(d.cols, 28);
    ck_assert_uint_eq(d.n_classes, 10);
    float lo = 1, hi = 0;
    for (size_t k = 0; k < (size_t)n * 784; k++) {
        lo = d.x[k] < lo ? d.x[k] : lo;
        hi = d.x[k] > hi ? d.x[k] : hi;
    }
    ck_assert(lo == 0.0f && hi == 1.0f);
    uint32_t count[10] = {0};
    for (uint32_t i = 0; i < n; i++)
        count[d.y[i]]++;
    for (int c = 0; c < 10; c++) /* both Fashion-MNIST sets are balanced */
        ck_assert_uint_eq(count[c], n / 10);
    mlt_dataset_free(&d);
}

/* the "fashion-mnist" TCase; meson runs it as its own test, data-fashion-mnist,
 * which main() reports as skipped (77) where the data set is not installed */
START_TEST(test_idx_fashion_mnist)
{
    check_fmnist("train-images-idx3-ubyte.gz", "train-labels-idx1-ubyte.gz", 60000);
    check_fmnist("t10k-images-idx3-ubyte.gz", "t10k-labels-idx1-ubyte.gz", 10000);
}
END_TEST

/* ---- errors ------------------------------------------------------------- */

START_TEST(test_err_missing)
{
    char ip[PATH_MAX], lp[PATH_MAX], err[ERRLEN], nope[PATH_MAX];
    write_pair(4, 0, 0, ip, lp);
    snprintf(nope, sizeof nope, "%s/missing-idx3-ubyte.gz", tmpdir);
    EXPECT_ERR(load_fail(nope, lp, err), -ENOENT, err, nope, "No such file or directory");
    EXPECT_ERR(load_fail(ip, nope, err), -ENOENT, err, nope, "No such file or directory");
    EXPECT_ERR(load_fail(ip, tmpdir, err), -EISDIR, err, tmpdir);
}
END_TEST

START_TEST(test_err_magic)
{
    char ip[PATH_MAX], lp[PATH_MAX], bad[PATH_MAX], err[ERRLEN];
    write_pair(4, 0, 0, ip, lp);
    /* labels given as images and images as labels */
    EXPECT_ERR(load_fail(lp, ip, err), -EINVAL, err, lp, "offset 3", "dimension count 1",
               "magic 0x00000801", "expected 3", "0x00000803", "looks like a labels file");
    EXPECT_ERR(load_fail(ip, ip, err), -EINVAL, err, ip, "offset 3", "dimension count 3",
               "magic 0x00000803", "expected 1", "0x00000801", "looks like an images file");
    /* right type, wrong dimension count */
    buf_t b = idx_images(4, 3, 4);
    b.p[3] = 2;
    write_file("dims2", b.p, b.n, 0, bad);
    EXPECT_ERR(load_fail(bad, lp, err), -EINVAL, err, bad, "offset 3", "dimension count 2",
               "expected 3");
    /* not unsigned bytes (0x0d = float) */
    b.p[2] = 0x0d;
    b.p[3] = 3;
    write_file("float", b.p, b.n, 1, bad);
    EXPECT_ERR(load_fail(bad, lp, err), -EINVAL, err, bad, "offset 0", "0x00000d03");
    /* a text file */
    write_file("text", "hello world\n", 12, 0, bad);
    EXPECT_ERR(load_fail(bad, lp, err), -EINVAL, err, bad, "offset 0", "bad magic 0x68656c6c");
    mlt_free(b.p);
}
END_TEST

START_TEST(test_err_truncated)
{
    char ip[PATH_MAX], lp[PATH_MAX], bad[PATH_MAX], err[ERRLEN];
    write_pair(2, 0, 0, ip, lp); /* 2 x 3 x 4 = 24 pixels */
    buf_t b = idx_images(2, 3, 4);
    for (int gz = 0; gz < 2; gz++) {
        write_file(gz ? "short.gz" : "short", b.p, 16 + 10, gz, bad);
        EXPECT_ERR(load_fail(bad, lp, err), -EINVAL, err, bad,
                   "offset 16: truncated: expected 24 bytes of pixels, got 10");
    }
    write_file("empty", b.p, 0, 0, bad);
    EXPECT_ERR(load_fail(bad, lp, err), -EINVAL, err, bad, "offset 0", "empty");
    write_file("magic-only", b.p, 3, 0, bad);
    EXPECT_ERR(load_fail(bad, lp, err), -EINVAL, err, bad, "offset 0", "truncated");
    write_file("hdr", b.p, 10, 1, bad);
    EXPECT_ERR(load_fail(bad, lp, err), -EINVAL, err, bad, "offset 8", "truncated",
               "expected 4 bytes", "got 2");
    mlt_free(b.p);

    b = idx_labels(2, 3);
    write_file("lab-short", b.p, 9, 0, bad);
    EXPECT_ERR(load_fail(ip, bad, err), -EINVAL, err, bad,
               "offset 8: truncated: expected 2 bytes of labels, got 1");
    mlt_free(b.p);
}
END_TEST

/* A gzip file cut in the middle of its compressed stream, and one corrupted. */
START_TEST(test_err_gzip_stream)
{
    char ip[PATH_MAX], lp[PATH_MAX], bad[PATH_MAX], err[ERRLEN];
    write_pair(400, 1, 0, ip, lp);
    FILE *f = fopen(ip, "rb");
    ck_assert_ptr_nonnull(f);
    uint8_t z[8192];
    size_t zn = fread(z, 1, sizeof z, f);
    fclose(f);
    ck_assert_uint_gt(zn, 100);
    ck_assert_uint_lt(zn, sizeof z);

    write_file("cut.gz", z, zn / 2, 0, bad);
    EXPECT_ERR(load_fail(bad, lp, err), -EINVAL, err, bad, "offset", "truncated");
    write_file("nocrc.gz", z, zn - 4, 0, bad); /* all data, trailer cut */
    EXPECT_ERR(load_fail(bad, lp, err), -EINVAL, err, bad, "offset", "truncated");
    for (size_t i = 20; i < 60; i++)
        z[i] ^= 0x5a;
    write_file("corrupt.gz", z, zn, 0, bad);
    EXPECT_ERR(load_fail(bad, lp, err), -EINVAL, err, bad, "offset");
}
END_TEST

START_TEST(test_err_trailing)
{
    char ip[PATH_MAX], lp[PATH_MAX], bad[PATH_MAX], err[ERRLEN];
    write_pair(2, 0, 0, ip, lp);
    for (int gz = 0; gz < 2; gz++) {
        buf_t b = idx_images(2, 3, 4);
        put_str(&b, "x");
        write_file(gz ? "trail.gz" : "trail", b.p, b.n, gz, bad);
        EXPECT_ERR(load_fail(bad, lp, err), -EINVAL, err, bad, "offset 40", "trailing bytes");
        mlt_free(b.p);
        b = idx_labels(2, 3);
        put_str(&b, "\n");
        write_file(gz ? "ltrail.gz" : "ltrail", b.p, b.n, gz, bad);
        EXPECT_ERR(load_fail(ip, bad, err), -EINVAL, err, bad, "offset 10", "trailing bytes");
        mlt_free(b.p);
    }
}
END_TEST

START_TEST(test_err_count_mismatch)
{
    char ip[PATH_MAX], lp[PATH_MAX], bad[PATH_MAX], err[ERRLEN];
    write_pair(5, 0, 0, ip, lp);
    buf_t b = idx_labels(4, 3);
    write_file("lab4", b.p, b.n, 0, bad);
    EXPECT_ERR(load_fail(ip, bad, err), -EINVAL, err, bad, "offset 4", "4 labels", "5 images", ip);
    mlt_free(b.p);
}
END_TEST

START_TEST(test_err_label_gap)
{
    /* 1000 items of 3 classes (i % 3), one of them relabelled 255: classes
     * 3..254 would be empty, so the labels file is refused, naming the item;
     * the same gap in a file of 10 items (too few to tell) is a 256-class
     * data set */
    char ip[PATH_MAX], lp[PATH_MAX], bad[PATH_MAX], err[ERRLEN];
    write_pair(1000, 0, 0, ip, lp);
    buf_t b = idx_labels(1000, 3);
    b.p[8 + 700] = 255;
    write_file("lab255", b.p, b.n, 0, bad);
    EXPECT_ERR(load_fail(ip, bad, err), -EINVAL, err, bad, "item 700 has label 255",
               "no item has label 3", "corrupt labels file");
    mlt_free(b.p);
    char ip10[PATH_MAX], lp10[PATH_MAX];
    write_pair(10, 0, 0, ip10, lp10);
    b = idx_labels(10, 3);
    b.p[8 + 7] = 255;
    write_file("lab255s", b.p, b.n, 0, bad);
    mlt_dataset_t d;
    ck_assert_int_eq(mlt_idx_load(ip10, bad, &d, err, ERRLEN), 0);
    ck_assert_uint_eq(d.n_classes, 256);
    mlt_dataset_free(&d);
    mlt_free(b.p);
}
END_TEST

START_TEST(test_err_dims)
{
    char ip[PATH_MAX], lp[PATH_MAX], bad[PATH_MAX], err[ERRLEN];
    write_pair(2, 0, 0, ip, lp);
    struct {
        uint32_t n, rows, cols;
        const char *where, *what;
    } cases[] = {
        {0, 3, 4, "offset 4", "zero samples"},
        {2, 0, 4, "offset 8", "rows 0"},
        {2, MLT_IDX_MAX_DIM + 1, 4, "offset 8", "rows 4097"},
        {2, 3, 0, "offset 12", "cols 0"},
        {2, 3, 100000, "offset 12", "cols 100000"},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        buf_t b = {0};
        put_be32(&b, 0x803);
        put_be32(&b, cases[i].n);
        put_be32(&b, cases[i].rows);
        put_be32(&b, cases[i].cols);
        put_str(&b, "pixels");
        write_file("dims", b.p, b.n, (int)(i % 2), bad);
        EXPECT_ERR(load_fail(bad, lp, err), -EINVAL, err, bad, cases[i].where, cases[i].what);
        mlt_free(b.p);
    }
    /* zero labels for zero images: refused on the images first */
    buf_t b = idx_labels(0, 3);
    write_file("lab0", b.p, b.n, 0, lp);
    buf_t im = idx_images(0, 3, 4);
    write_file("img0", im.p, im.n, 0, ip);
    EXPECT_ERR(load_fail(ip, lp, err), -EINVAL, err, ip, "offset 4", "zero samples");
    mlt_free(b.p);
    mlt_free(im.p);
}
END_TEST

/* A NULL err buffer is allowed. */
START_TEST(test_err_null_buffer)
{
    mlt_dataset_t d;
    ck_assert_int_eq(mlt_idx_load("/nonexistent/x", "/nonexistent/y", &d, NULL, 0), -ENOENT);
    mlt_ratings_t r;
    ck_assert_int_eq(mlt_ratings_load("/nonexistent/x", &r, NULL, 0), -ENOENT);
}
END_TEST

/* ---- split -------------------------------------------------------------- */

/* n samples of 1 x 2: x = {i, -i}, y = i % 7 (built by hand, not loaded). */
static mlt_dataset_t make_dataset(uint32_t n)
{
    mlt_dataset_t d = {.n = n, .rows = 1, .cols = 2, .n_classes = 7};
    d.x = mlt_try_aligned((size_t)n * 2 * sizeof(float));
    d.y = mlt_try_malloc(n);
    ck_assert(d.x && d.y);
    for (uint32_t i = 0; i < n; i++) {
        d.x[2 * i] = (float)i;
        d.x[2 * i + 1] = -(float)i;
        d.y[i] = (uint8_t)(i % 7);
    }
    return d;
}

/* Checks each sample of part is an intact sample of the source, in ascending
 * order, and marks it in seen[]. */
static void mark_part(const mlt_dataset_t *part, uint8_t *seen)
{
    ck_assert_uint_eq(part->rows, 1);
    ck_assert_uint_eq(part->cols, 2);
    ck_assert_uint_eq(part->n_classes, 7);
    for (uint32_t j = 0; j < part->n; j++) {
        uint32_t i = (uint32_t)part->x[2 * j];
        ck_assert(part->x[2 * j + 1] == -(float)i);
        ck_assert_uint_eq(part->y[j], i % 7);
        ck_assert_uint_eq(seen[i], 0);
        seen[i] = 1;
        if (j > 0)
            ck_assert_uint_lt((uint32_t)part->x[2 * j - 2], i);
    }
}

START_TEST(test_split_dataset)
{
    mlt_dataset_t src = make_dataset(1000), tr, ho, tr2, ho2;
    char err[ERRLEN] = "";
    ck_assert_int_eq(mlt_dataset_split(&src, 150, &tr, &ho, 42, err, sizeof err), 0);
    ck_assert_uint_eq(tr.n, 850);
    ck_assert_uint_eq(ho.n, 150);
    uint8_t seen[1000] = {0};
    mark_part(&tr, seen);
    mark_part(&ho, seen);
    for (int i = 0; i < 1000; i++)
        ck_assert_uint_eq(seen[i], 1);
    /* the holdout is spread over the whole range, not a block */
    ck_assert_float_lt(ho.x[0], 100.0f);
    ck_assert_float_gt(ho.x[2 * 149], 900.0f);

    /* same seed: same split; another seed: another */
    ck_assert_int_eq(mlt_dataset_split(&src, 150, &tr2, &ho2, 42, err, sizeof err), 0);
    ck_assert_mem_eq(ho.x, ho2.x, 300 * sizeof(float));
    ck_assert_mem_eq(tr.y, tr2.y, 850);
    mlt_dataset_free(&tr2);
    mlt_dataset_free(&ho2);
    ck_assert_int_eq(mlt_dataset_split(&src, 150, &tr2, &ho2, 43, err, sizeof err), 0);
    ck_assert(memcmp(ho.x, ho2.x, 300 * sizeof(float)) != 0);
    mlt_dataset_free(&tr2);
    mlt_dataset_free(&ho2);

    /* extremes */
    ck_assert_int_eq(mlt_dataset_split(&src, 1, &tr2, &ho2, 1, err, sizeof err), 0);
    ck_assert_uint_eq(ho2.n, 1);
    mlt_dataset_free(&tr2);
    mlt_dataset_free(&ho2);
    ck_assert_int_eq(mlt_dataset_split(&src, 999, &tr2, &ho2, 1, err, sizeof err), 0);
    ck_assert_uint_eq(tr2.n, 1);
    mlt_dataset_free(&tr2);
    mlt_dataset_free(&ho2);

    mlt_dataset_free(&tr);
    mlt_dataset_free(&ho);
    mlt_dataset_free(&src);
}
END_TEST

START_TEST(test_split_dataset_errors)
{
    mlt_dataset_t src = make_dataset(10), tr, ho;
    char err[ERRLEN] = "";
    EXPECT_ERR(mlt_dataset_split(&src, 0, &tr, &ho, 1, err, sizeof err), -EINVAL, err, "0 samples",
               "of 10");
    EXPECT_ERR(mlt_dataset_split(&src, 10, &tr, &ho, 1, err, sizeof err), -EINVAL, err,
               "10 samples", "n_holdout < 10");
    ck_assert_ptr_null(tr.x);
    ck_assert_ptr_null(ho.x);
    for (long k = 0; k < 4; k++) {
        mlt_alloc_fail_after(k);
        int rc = mlt_dataset_split(&src, 3, &tr, &ho, 1, err, sizeof err);
        mlt_alloc_fail_after(-1);
        EXPECT_ERR(rc, -ENOMEM, err, "out of memory");
        ck_assert(tr.x == NULL && ho.x == NULL && tr.n == 0 && ho.n == 0);
    }
    mlt_dataset_free(&src);
}
END_TEST

START_TEST(test_subset)
{
    mlt_dataset_t src = make_dataset(20), sub;
    ck_assert_int_eq(mlt_dataset_subset(&src, 5, &sub), 0);
    ck_assert_uint_eq(sub.n, 5);
    ck_assert_uint_eq(sub.n_classes, 7);
    ck_assert_mem_eq(sub.x, src.x, 10 * sizeof(float));
    ck_assert_mem_eq(sub.y, src.y, 5);
    mlt_dataset_free(&sub);
    ck_assert_int_eq(mlt_dataset_subset(&src, 20, &sub), 0);
    mlt_dataset_free(&sub);
    ck_assert_int_eq(mlt_dataset_subset(&src, 0, &sub), -EINVAL);
    ck_assert_int_eq(mlt_dataset_subset(&src, 21, &sub), -EINVAL);
    ck_assert_ptr_null(sub.x);
    mlt_alloc_fail_after(0);
    ck_assert_int_eq(mlt_dataset_subset(&src, 3, &sub), -ENOMEM);
    mlt_alloc_fail_after(-1);
    ck_assert_ptr_null(sub.x);
    mlt_dataset_free(&src);
}
END_TEST

START_TEST(test_split_ratings)
{
    mlt_ratings_t src, tr, te, tr2, te2;
    ck_assert_int_eq(mlt_ratings_synth(50, 40, 3, 1000, 0.1f, 9, &src), 0);
    ck_assert_int_eq(mlt_ratings_split(&src, 0.2, 5, &tr, &te), 0);
    ck_assert_uint_eq(te.n, 200);
    ck_assert_uint_eq(tr.n, 800);
    ck_assert_uint_eq(tr.n_users, 50);
    ck_assert_uint_eq(te.n_items, 40);
    /* the two parts interleave back into src, each in src's order */
    uint64_t a = 0, b = 0;
    for (uint64_t i = 0; i < src.n; i++) {
        if (a < tr.n && memcmp(&tr.v[a], &src.v[i], sizeof src.v[i]) == 0)
            a++;
        else if (b < te.n && memcmp(&te.v[b], &src.v[i], sizeof src.v[i]) == 0)
            b++;
        else
            ck_abort_msg("rating %llu is in neither part", (unsigned long long)i);
    }
    ck_assert(a == tr.n && b == te.n);
    ck_assert_int_eq(mlt_ratings_split(&src, 0.2, 5, &tr2, &te2), 0);
    ck_assert_mem_eq(te.v, te2.v, te.n * sizeof *te.v);
    mlt_ratings_free(&tr2);
    mlt_ratings_free(&te2);
    ck_assert_int_eq(mlt_ratings_split(&src, 0.2, 6, &tr2, &te2), 0);
    ck_assert(memcmp(te.v, te2.v, te.n * sizeof *te.v) != 0);
    mlt_ratings_free(&tr2);
    mlt_ratings_free(&te2);

    ck_assert_int_eq(mlt_ratings_split(&src, 0.0, 5, &tr2, &te2), -EINVAL);
    ck_assert_int_eq(mlt_ratings_split(&src, 1.0, 5, &tr2, &te2), -EINVAL);
    ck_assert_int_eq(mlt_ratings_split(&src, NAN, 5, &tr2, &te2), -EINVAL);
    ck_assert_int_eq(mlt_ratings_split(&src, 0.0001, 5, &tr2, &te2), -EINVAL); /* 0 to test */
    ck_assert_int_eq(mlt_ratings_split(&src, 0.9999, 5, &tr2, &te2), -EINVAL); /* 0 to train */
    mlt_alloc_fail_after(1);
    ck_assert_int_eq(mlt_ratings_split(&src, 0.5, 5, &tr2, &te2), -ENOMEM);
    mlt_alloc_fail_after(-1);
    ck_assert(tr2.v == NULL && te2.v == NULL);

    mlt_ratings_free(&tr);
    mlt_ratings_free(&te);
    mlt_ratings_free(&src);
}
END_TEST

/* ---- suite ---------------------------------------------------------------- */

static Suite *data_suite(void)
{
    Suite *s = suite_create("data");

    TCase *tc = tcase_create("idx");
    tcase_add_test(tc, test_idx_plain);
    tcase_add_test(tc, test_idx_gzip);
    tcase_add_test(tc, test_idx_bounds);
    tcase_add_test(tc, test_idx_oom);
    suite_add_tcase(s, tc);

    tc = tcase_create("fashion-mnist");
    tcase_add_test(tc, test_idx_fashion_mnist);
    suite_add_tcase(s, tc);

    tc = tcase_create("errors");
    tcase_add_test(tc, test_err_missing);
    tcase_add_test(tc, test_err_magic);
    tcase_add_test(tc, test_err_truncated);
    tcase_add_test(tc, test_err_gzip_stream);
    tcase_add_test(tc, test_err_trailing);
    tcase_add_test(tc, test_err_count_mismatch);
    tcase_add_test(tc, test_err_label_gap);
    tcase_add_test(tc, test_err_dims);
    tcase_add_test(tc, test_err_null_buffer);
    suite_add_tcase(s, tc);

    tc = tcase_create("split");
    tcase_add_test(tc, test_split_dataset);
    tcase_add_test(tc, test_split_dataset_errors);
    tcase_add_test(tc, test_subset);
    tcase_add_test(tc, test_split_ratings);
    suite_add_tcase(s, tc);
    cd_sets_tcases(s);
    return s;
}

static int rm_entry(const char *path, const struct stat *st, int flag, struct FTW *ftw)
{
    (void)st;
    (void)flag;
    (void)ftw;
    return remove(path);
}

int main(void)
{
    const char *only = getenv("CK_RUN_CASE");
    if (only && strcmp(only, "fashion-mnist") == 0 &&
        access(FMNIST_DIR "/train-images-idx3-ubyte.gz", R_OK) != 0) {
        printf("SKIP: " FMNIST_DIR " is not installed (Debian package dataset-fashion-mnist)\n");
        return 77;
    }
    const char *base = getenv("TMPDIR");
    snprintf(tmpdir, sizeof tmpdir, "%s/check_data.XXXXXX", base && *base ? base : "/tmp");
    if (!mkdtemp(tmpdir)) {
        perror("mkdtemp");
        return EXIT_FAILURE;
    }
    SRunner *sr = srunner_create(data_suite());
    srunner_run_all(sr, CK_ENV);
    int failed = srunner_ntests_failed(sr);
    srunner_free(sr);
    nftw(tmpdir, rm_entry, 16, FTW_DEPTH | FTW_PHYS);
    return failed != 0 ? EXIT_FAILURE : EXIT_SUCCESS;
}
