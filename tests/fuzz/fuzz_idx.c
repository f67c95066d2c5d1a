/* fuzz_idx.c - libFuzzer target for mlt_idx_load (IDX images + labels).
 *
 * Input layout: data[0] & 1 picks the file that gets the rest of the input
 * (0: the images file, 1: the labels file); the other file is a fixed valid
 * plain one of 3 samples (3 images of 2x2 pixels, labels 0 9 4), so the
 * fuzzed file gets past the count check only by announcing 3 samples. One
 * target rather than two: the seeds of both halves share one corpus, and
 * libFuzzer can cross them over. Both files are written for every input at
 * fixed per-process paths (fuzz_util.h) and removed after it.
 *
 * Checks the contract of worker/data.h. A refusal: rc in -EINVAL/-ENOMEM/-EIO,
 * *out zeroed, a one-line message that starts with one of the two paths. An
 * acceptance: n > 0, 1 <= rows, cols <= MLT_IDX_MAX_DIM, x 64-byte aligned
 * with every pixel in [0, 1], every label < n_classes == 1 + the largest
 * label, and the fixed file's content unchanged. The same verdict with an
 * 8-byte message buffer and with none. When the fuzzed file is plain, or
 * exactly one complete gzip member, a reference decoder here says whether it
 * must load, and an accepted file must hold exactly its pixels and labels.
 * tests/fuzz/replay.c runs the corpus through this function in every
 * ordinary `meson test`. */
#include "worker/data.h"

#include <errno.h>
#include <stdint.h>
#include <string.h>

#include "fuzz_util.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

#define FIXED_N 3u

/* magic 0x803, 3 x 2 x 2, then 12 pixels */
static const uint8_t fixed_images[] = {
    0, 0, 8, 3, 0, 0, 0, 3, 0, 0, 0, 2, 0, 0, 0, 2, 0, 255, 128, 1, 2, 3, 254, 127, 64, 32, 16, 8,
};
/* magic 0x801, 3, then the labels */
static const uint8_t fixed_labels[] = {0, 0, 8, 1, 0, 0, 0, 3, 0, 9, 4};

static uint32_t be32(const uint8_t *b)
{
    return (uint32_t)b[0] << 24 | (uint32_t)b[1] << 16 | (uint32_t)b[2] << 8 | (uint32_t)b[3];
}

/* What a plain (decompressed) IDX file must decode to. */
typedef struct ref_idx {
    int valid;  /* header and size agree with the format */
    uint32_t n; /* samples */
    uint32_t rows, cols;
    const uint8_t *px; /* images: n * rows * cols bytes; labels: n bytes */
} ref_idx_t;

static ref_idx_t ref_images(const uint8_t *b, size_t len)
{
    ref_idx_t r = {0};
    if (len < 16 || be32(b) != 0x00000803u)
        return r;
    r.n = be32(b + 4);
    r.rows = be32(b + 8);
    r.cols = be32(b + 12);
    r.px = b + 16;
    r.valid = r.n > 0 && r.rows >= 1 && r.rows <= MLT_IDX_MAX_DIM && r.cols >= 1 &&
              r.cols <= MLT_IDX_MAX_DIM && (uint64_t)len - 16 == (uint64_t)r.n * r.rows * r.cols;
    return r;
}

static ref_idx_t ref_labels(const uint8_t *b, size_t len)
{
    ref_idx_t r = {0};
    if (len < 8 || be32(b) != 0x00000801u)
        return r;
    r.n = be32(b + 4);
    r.px = b + 8;
    r.valid = (uint64_t)len - 8 == r.n;
    return r;
}

static int all_zero(const void *p, size_t n)
{
    const uint8_t *b = p;
    for (size_t i = 0; i < n; i++)
        if (b[i])
            return 0;
    return 1;
}

/* The guarantees of an accepted dataset, whatever the files were. */
static void check_accepted(const mlt_dataset_t *d)
{
    fuzz_assert(d->n > 0);
    fuzz_assert(d->rows >= 1 && d->rows <= MLT_IDX_MAX_DIM);
    fuzz_assert(d->cols >= 1 && d->cols <= MLT_IDX_MAX_DIM);
    fuzz_assert(d->x != NULL && d->y != NULL);
    fuzz_assert((uintptr_t)d->x % 64 == 0);
    fuzz_assert(d->n_classes >= 1 && d->n_classes <= 256);
    uint32_t max = 0;
    for (uint32_t i = 0; i < d->n; i++) {
        fuzz_assert(d->y[i] < d->n_classes);
        max = d->y[i] > max ? d->y[i] : max;
    }
    fuzz_assert(d->n_classes == max + 1);
    size_t total = (size_t)d->n * d->rows * d->cols;
    for (size_t i = 0; i < total; i++)
        fuzz_assert(d->x[i] >= 0.0f && d->x[i] <= 1.0f);
}

/* An accepted dataset holds exactly the reference's pixels and labels. */
static void check_content(const mlt_dataset_t *d, const ref_idx_t *im, const ref_idx_t *lb)
{
    fuzz_assert(d->n == im->n && d->n == lb->n && d->rows == im->rows && d->cols == im->cols);
    size_t total = (size_t)d->n * d->rows * d->cols;
    for (size_t i = 0; i < total; i++)
        fuzz_assert(d->x[i] == (float)im->px[i] / 255.0f);
    fuzz_assert(memcmp(d->y, lb->px, d->n) == 0);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    const char *images = fuzz_tmp_path("idx-images");
    const char *labels = fuzz_tmp_path("idx-labels");
    int fuzz_labels = size > 0 && (data[0] & 1);
    const uint8_t *body = size > 0 ? data + 1 : data;
    size_t len = size > 0 ? size - 1 : 0;

    if (fuzz_labels) {
        fuzz_write_file(images, fixed_images, sizeof fixed_images);
        fuzz_write_file(labels, body, len);
    } else {
        fuzz_write_file(images, body, len);
        fuzz_write_file(labels, fixed_labels, sizeof fixed_labels);
    }

    char err[512];
    memset(err, 0, sizeof err);
    mlt_dataset_t d;
    memset(&d, 0xa5, sizeof d); /* must be overwritten */
    int rc = mlt_idx_load(images, labels, &d, err, sizeof err);
    fuzz_verdict(rc == 0);

    /* the same verdict with a tiny buffer and with none */
    char tiny[8];
    memset(tiny, 'x', sizeof tiny);
    mlt_dataset_t d2;
    int rc2 = mlt_idx_load(images, labels, &d2, tiny, sizeof tiny);
    fuzz_assert(rc2 == rc);
    fuzz_assert(rc2 == 0 || memchr(tiny, '\0', sizeof tiny) != NULL);
    mlt_dataset_free(&d2);
    rc2 = mlt_idx_load(images, labels, &d2, NULL, 0);
    fuzz_assert(rc2 == rc);
    mlt_dataset_free(&d2);
    fuzz_assert(all_zero(&d2, sizeof d2));

    /* the reference verdict, when the fuzzed file is plain or one gzip member */
    uint8_t *unpacked = NULL;
    size_t ulen = len;
    int known = 1;
    if (fuzz_is_gzip(body, len))
        known = fuzz_gunzip_exact(body, len, 1u << 24, &unpacked, &ulen);
    const uint8_t *plain = unpacked ? unpacked : body;
    ref_idx_t im =
        fuzz_labels ? ref_images(fixed_images, sizeof fixed_images) : ref_images(plain, ulen);
    ref_idx_t lb =
        fuzz_labels ? ref_labels(plain, ulen) : ref_labels(fixed_labels, sizeof fixed_labels);
    fuzz_assert(fuzz_labels ? im.valid : lb.valid);
    int want_ok = im.valid && lb.valid && im.n == lb.n;

    if (rc != 0) {
        fuzz_assert(rc == -EINVAL || rc == -ENOMEM || rc == -EIO);
        fuzz_assert(all_zero(&d, sizeof d));
        if (strncmp(err, images, strlen(images)) == 0)
            fuzz_check_message(err, sizeof err, images);
        else
            fuzz_check_message(err, sizeof err, labels);
        if (known && want_ok)
            fprintf(stderr, "valid IDX input refused: %d %s\n", rc, err);
        fuzz_assert(!(known && want_ok));
        free(unpacked);
        fuzz_remove_files();
        return 0;
    }
    if (known && !want_ok)
        fprintf(stderr, "invalid IDX input accepted (n %u, %ux%u)\n", d.n, d.rows, d.cols);
    fuzz_assert(!known || want_ok);
    check_accepted(&d);
    fuzz_assert(d.n == FIXED_N); /* the fixed file says so */
    if (known)
        check_content(&d, &im, &lb);
    else if (fuzz_labels) /* at least the fixed half is exact */
        check_content(&d, &im, &(ref_idx_t){.n = d.n, .px = d.y});
    else
        fuzz_assert(memcmp(d.y, fixed_labels + 8, FIXED_N) == 0);
    mlt_dataset_free(&d);
    fuzz_assert(all_zero(&d, sizeof d));
    free(unpacked);
    fuzz_remove_files();
    return 0;
}
