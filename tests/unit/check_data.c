/* check_data.c - Check suite for worker/data (datasets, sampler, ratings).
 *
 * "idx": small IDX files written to a mkdtemp directory, plain and gzipped,
 * loaded and compared value by value; the real Fashion-MNIST files when the
 * Debian package dataset-fashion-mnist is installed (else a printed note).
 * "errors": every refusal of mlt_idx_load, each with its return code and a
 * message naming the file and the byte offset.
 * "split": held-out and subset copies of datasets, ratings splits.
 * "sampler": partition coverage and disjointness, per-epoch order, seek.
 * "ratings": u.data and ratings.csv parsing, and each error with its line.
 * "synth": determinism and the noise level of mlt_ratings_synth; common/rng. */
#include "worker/data.h"

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

#define ERRLEN     512
#define FMNIST_DIR "/usr/share/datasets/fashion-mnist"

static char tmpdir[256]; /* made by main, removed at exit; short, so paths under it fit PATH_MAX */

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
static void write_file(const char *name, const void *data, size_t n, int gz, char *path)
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
#define EXPECT_ERR(rc, want, msg, ...) expect_err_((rc), (want), (msg), __LINE__, __VA_ARGS__, NULL)
static void expect_err_(int rc, int want, const char *msg, int line, ...)
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
