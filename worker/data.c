/* data.c - the IDX loader, dataset splits, the sampler, and the helpers shared
 * with ratings.c (data_int.h); see data.h. Ratings live in ratings.c.
 *
 * Files are read through zlib's gz* functions, which read gzip and plain files
 * alike, so every loader accepts both. IDX offsets in messages count bytes of
 * the decompressed stream (for a plain file, bytes of the file). Big buffers
 * (pixels, ratings) come from mlt_try_* and fail the call with -ENOMEM; the
 * sampler's control struct comes from mlt_malloc. */
#include "worker/data.h"

#include <assert.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <zlib.h>

#include "common/alloc.h"
#include "common/rng.h"
#include "worker/data_int.h"

#define IDX_MAGIC_IMAGES 0x00000803u /* unsigned bytes, 3 dimensions */
#define IDX_MAGIC_LABELS 0x00000801u /* unsigned bytes, 1 dimension */
#define IDX_CHUNK        16384u      /* pixels converted per read (stack buffer) */
#define GZ_BUFFER        (1u << 17)  /* zlib's input buffer */
#define MIN_ITEMS_PER_CLASS 100u     /* items per used class above which an empty class is corrupt */

/* ---- shared helpers ----------------------------------------------------- */

/* Writes the message (if err) and returns rc. */
int mlt_data_fail(char *err, size_t errlen, int rc, const char *fmt, ...)
{
    if (err && errlen > 0) {
        va_list ap;
        va_start(ap, fmt);
        vsnprintf(err, errlen, fmt, ap);
        va_end(ap);
    }
    return rc;
}

/* Opens path for gz reading (gzip or plain). 0, or -errno with "path: text". */
int mlt_data_gz_open(const char *path, gzFile *out, char *err, size_t errlen)
{
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0) {
        int e = errno;
        return mlt_data_fail(err, errlen, -e, "%s: %s", path, strerror(e));
    }
    gzFile gz = gzdopen(fd, "rb");
    if (!gz) {
        close(fd);
        return mlt_data_fail(err, errlen, -ENOMEM, "%s: out of memory opening the file", path);
    }
    gzbuffer(gz, GZ_BUFFER);
    *out = gz;
    return 0;
}

/* The error zlib holds for gz as -errno plus "<where>: text". */
int mlt_data_gz_fail(gzFile gz, const char *where, char *err, size_t errlen)
{
    int e = errno; /* meaningful only for Z_ERRNO; read before anything else */
    int errnum = Z_OK;
    const char *msg = gzerror(gz, &errnum);
    switch (errnum) {
    case Z_ERRNO:
        return mlt_data_fail(err, errlen, e ? -e : -EIO, "%s: read error: %s", where,
                             strerror(e ? e : EIO));
    case Z_DATA_ERROR:
        return mlt_data_fail(err, errlen, -EINVAL, "%s: corrupt gzip data: %s", where, msg);
    case Z_MEM_ERROR:
        return mlt_data_fail(err, errlen, -ENOMEM, "%s: out of memory decompressing", where);
    default: return mlt_data_fail(err, errlen, -EIO, "%s: read error: %s", where, msg);
    }
}

/* Knuth's selection sampling (Algorithm S): called once per position in order,
 * with *need positions still to pick among `left` (this one included); returns 1
 * if this position is picked. Exactly the initial *need positions get picked and
 * every subset of that size is equally likely. */
int mlt_data_select_next(uint64_t *st, uint64_t *need, uint64_t left)
{
    double u = mlt_rng_uniform(st); /* drawn always, so the stream does not depend on branches */
    if (*need == 0)
        return 0;
    if (*need >= left || u * (double)left < (double)*need) {
        (*need)--;
        return 1;
    }
    return 0;
}

/* ---- IDX ------------------------------------------------------------------ */

typedef struct idx_file {
    gzFile gz;        /* open stream, NULL when closed */
    const char *path; /* for messages (borrowed) */
    uint64_t off;     /* decompressed bytes consumed so far */
    int cut;          /* the gzip stream ended before its trailer */
} idx_file_t;

static void idx_close(idx_file_t *f)
{
    if (f->gz)
        gzclose(f->gz);
    f->gz = NULL;
}

/* Reads up to len bytes into buf; *got says how many (< len at end of data).
 * 0, or -errno with the message for read errors and corrupt data. */
static int idx_read(idx_file_t *f, void *buf, size_t len, size_t *got, char *err, size_t errlen)
{
    uint8_t *p = buf;
    *got = 0;
    while (*got < len) {
        size_t want = len - *got;
        if (want > (1u << 30))
            want = 1u << 30;
        int n = gzread(f->gz, p + *got, (unsigned)want);
        if (n < 0) {
            char where[PATH_MAX + 48];
            snprintf(where, sizeof where, "%s: offset %llu", f->path,
                     (unsigned long long)(f->off + *got));
            return mlt_data_gz_fail(f->gz, where, err, errlen);
        }
        if (n == 0)
            break;
        *got += (size_t)n;
    }
    f->off += *got;
    if (*got < len) {
        int errnum = Z_OK;
        gzerror(f->gz, &errnum);
        f->cut = errnum == Z_BUF_ERROR; /* zlib's "unexpected end of file" */
    }
    return 0;
}

/* Reads exactly len bytes of `what` or fails with a "truncated" message naming
 * the offset where they start. */
static int idx_read_exact(idx_file_t *f, void *buf, size_t len, const char *what, char *err,
                          size_t errlen)
{
    uint64_t start = f->off;
    size_t got;
    int rc = idx_read(f, buf, len, &got, err, errlen);
    if (rc < 0)
        return rc;
    if (got < len)
        return mlt_data_fail(err, errlen, -EINVAL,
                             "%s: offset %llu: truncated: expected %zu bytes of %s, got %zu%s",
                             f->path, (unsigned long long)start, len, what, got,
                             f->cut ? " (the gzip stream ends early)" : "");
    return 0;
}

static uint32_t be32(const uint8_t b[4])
{
    return (uint32_t)b[0] << 24 | (uint32_t)b[1] << 16 | (uint32_t)b[2] << 8 | (uint32_t)b[3];
}

/* Opens path and reads its IDX header: the magic must be `magic`, whose low
 * byte is the dimension count; dims[] gets that many sizes. */
static int idx_open(idx_file_t *f, const char *path, uint32_t magic, const char *kind,
                    uint32_t *dims, char *err, size_t errlen)
{
    memset(f, 0, sizeof *f);
    f->path = path;
    int rc = mlt_data_gz_open(path, &f->gz, err, errlen);
    if (rc < 0)
        return rc;

    uint8_t b[4];
    size_t got;
    rc = idx_read(f, b, 4, &got, err, errlen);
    if (rc < 0)
        return rc;
    if (got == 0)
        return mlt_data_fail(err, errlen, -EINVAL,
                             "%s: offset 0: empty file, expected an IDX %s file", path, kind);
    if (got < 4)
        return mlt_data_fail(err, errlen, -EINVAL,
                             "%s: offset 0: truncated: expected 4 bytes of magic number, got %zu",
                             path, got);
    uint32_t found = be32(b);
    uint32_t ndim = magic & 0xffu;
    if ((found >> 8) != (magic >> 8))
        return mlt_data_fail(
            err, errlen, -EINVAL,
            "%s: offset 0: bad magic 0x%08x, expected 0x%08x (IDX %s: unsigned bytes, "
            "%u dimension%s)",
            path, found, magic, kind, ndim, ndim == 1 ? "" : "s");
    if ((found & 0xffu) != ndim) {
        const char *hint = found == IDX_MAGIC_LABELS   ? "; this looks like a labels file"
                           : found == IDX_MAGIC_IMAGES ? "; this looks like an images file"
                                                       : "";
        return mlt_data_fail(err, errlen, -EINVAL,
                             "%s: offset 3: wrong dimension count %u (magic 0x%08x), expected %u "
                             "(magic 0x%08x, IDX %s)%s",
                             path, found & 0xffu, found, ndim, magic, kind, hint);
    }
    for (uint32_t i = 0; i < ndim; i++) {
        rc = idx_read_exact(f, b, 4, "dimension size", err, errlen);
        if (rc < 0)
            return rc;
        dims[i] = be32(b);
    }
    return 0;
}

/* After the data: any further byte is an error. */
static int idx_expect_end(idx_file_t *f, const char *after, char *err, size_t errlen)
{
    uint8_t b;
    size_t got;
    uint64_t at = f->off;
    int rc = idx_read(f, &b, 1, &got, err, errlen);
    if (rc < 0)
        return rc;
    if (got != 0)
        return mlt_data_fail(err, errlen, -EINVAL,
                             "%s: offset %llu: trailing bytes after the %s the header announces",
                             f->path, (unsigned long long)at, after);
    if (f->cut) /* all data present, but the gzip trailer (CRC) is missing */
        return mlt_data_fail(err, errlen, -EINVAL, "%s: offset %llu: truncated gzip stream",
                             f->path, (unsigned long long)at);
    return 0;
}

/* Reads n*feat pixels into x as floats in [0, 1]. */
static int idx_read_pixels(idx_file_t *f, float *x, size_t total, char *err, size_t errlen)
{
    uint8_t chunk[IDX_CHUNK];
    uint64_t start = f->off;
    size_t done = 0;
    while (done < total) {
        size_t want = total - done < IDX_CHUNK ? total - done : IDX_CHUNK;
        size_t got;
        int rc = idx_read(f, chunk, want, &got, err, errlen);
        if (rc < 0)
            return rc;
        for (size_t i = 0; i < got; i++)
            x[done + i] = (float)chunk[i] / 255.0f;
        done += got;
        if (got < want)
            return mlt_data_fail(
                err, errlen, -EINVAL,
                "%s: offset %llu: truncated: expected %zu bytes of pixels, got %zu%s", f->path,
                (unsigned long long)start, total, done,
                f->cut ? " (the gzip stream ends early)" : "");
    }
    return 0;
}

int mlt_idx_load(const char *images_path, const char *labels_path, mlt_dataset_t *out, char *err,
                 size_t errlen)
{
    assert(images_path && labels_path && out);
    memset(out, 0, sizeof *out);
    mlt_dataset_t d = {0};
    idx_file_t im = {0}, lb = {0};
    uint32_t dims[3], nlabels = 0;

    int rc = idx_open(&im, images_path, IDX_MAGIC_IMAGES, "images", dims, err, errlen);
    if (rc < 0)
        goto fail;
    d.n = dims[0];
    d.rows = dims[1];
    d.cols = dims[2];
    if (d.n == 0) {
        rc = mlt_data_fail(err, errlen, -EINVAL, "%s: offset 4: zero samples", images_path);
        goto fail;
    }
    for (int i = 1; i < 3; i++) {
        if (dims[i] == 0 || dims[i] > MLT_IDX_MAX_DIM) {
            rc = mlt_data_fail(err, errlen, -EINVAL, "%s: offset %d: %s %u outside [1, %u]",
                               images_path, 4 + 4 * i, i == 1 ? "rows" : "cols", dims[i],
                               MLT_IDX_MAX_DIM);
            goto fail;
        }
    }

    rc = idx_open(&lb, labels_path, IDX_MAGIC_LABELS, "labels", &nlabels, err, errlen);
    if (rc < 0)
        goto fail;
    if (nlabels != d.n) {
        rc = mlt_data_fail(err, errlen, -EINVAL, "%s: offset 4: %u labels, but %s has %u images",
                           labels_path, nlabels, images_path, d.n);
        goto fail;
    }

    size_t feat = (size_t)d.rows * d.cols; /* <= 2^24 */
    /* a bound before the allocation: the header alone must not make us reserve
     * memory the file cannot fill (MLT_IDX_MAX_PIXELS, 4 GiB of floats) */
    if ((size_t)d.n > SIZE_MAX / sizeof(float) / feat || (uint64_t)d.n * feat > MLT_IDX_MAX_PIXELS) {
        rc = mlt_data_fail(err, errlen, -EFBIG,
                           "%s: offset 4: %u images of %ux%u exceed %llu pixels", images_path, d.n,
                           d.rows, d.cols, (unsigned long long)MLT_IDX_MAX_PIXELS);
        goto fail;
    }
    size_t total = (size_t)d.n * feat;
    d.x = mlt_try_aligned(total * sizeof(float));
    d.y = mlt_try_malloc(d.n);
    if (!d.x || !d.y) {
        rc = mlt_data_fail(err, errlen, -ENOMEM,
                           "%s: out of memory for %u images of %ux%u (%zu bytes)", images_path, d.n,
                           d.rows, d.cols, total * sizeof(float) + d.n);
        goto fail;
    }

    rc = idx_read_pixels(&im, d.x, total, err, errlen);
    if (rc < 0)
        goto fail;
    rc = idx_expect_end(&im, "images", err, errlen);
    if (rc < 0)
        goto fail;
    rc = idx_read_exact(&lb, d.y, d.n, "labels", err, errlen);
    if (rc < 0)
        goto fail;
    rc = idx_expect_end(&lb, "labels", err, errlen);
    if (rc < 0)
        goto fail;

    uint32_t max = 0, count[256] = {0};
    for (uint32_t i = 0; i < d.n; i++) {
        max = d.y[i] > max ? d.y[i] : max;
        count[d.y[i]]++;
    }
    d.n_classes = max + 1; /* <= 256: labels are bytes */
    /* a class below the largest label with no item at all, in a file with
     * many items for each class that has some (a 255 in a 10-class file
     * would make a 256-class model): a corrupt labels file, not a data set */
    uint32_t used = 0;
    for (uint32_t c = 0; c <= max; c++)
        used += count[c] > 0;
    if (d.n >= MIN_ITEMS_PER_CLASS * used) {
        for (uint32_t c = 0; c < max; c++) {
            if (count[c] > 0)
                continue;
            uint32_t at = 0;
            while (at < d.n && d.y[at] <= c)
                at++;
            rc = mlt_data_fail(err, errlen, -EINVAL,
                               "%s: item %u has label %u, but no item has label %u: a model of "
                               "%u classes would have empty ones (a corrupt labels file?)",
                               labels_path, at, d.y[at], c, d.n_classes);
            goto fail;
        }
    }

    idx_close(&lb);
    idx_close(&im);
    *out = d;
    return 0;

fail:
    idx_close(&lb);
    idx_close(&im);
    mlt_dataset_free(&d);
    return rc;
}

void mlt_dataset_free(mlt_dataset_t *d)
{
    if (!d)
        return;
    mlt_free(d->x);
    mlt_free(d->y);
    memset(d, 0, sizeof *d);
}

/* Allocates d for n samples shaped like src. 0 or -ENOMEM (d zeroed). */
static int dataset_alloc(mlt_dataset_t *d, const mlt_dataset_t *src, uint32_t n)
{
    memset(d, 0, sizeof *d);
    size_t feat = (size_t)src->rows * src->cols;
    d->x = mlt_try_aligned((size_t)n * feat * sizeof(float));
    d->y = mlt_try_malloc(n);
    if (!d->x || !d->y) {
        mlt_dataset_free(d);
        return -ENOMEM;
    }
    d->n = n;
    d->rows = src->rows;
    d->cols = src->cols;
    d->n_classes = src->n_classes;
    return 0;
}

int mlt_dataset_split(const mlt_dataset_t *src, uint32_t n_holdout, mlt_dataset_t *train,
                      mlt_dataset_t *holdout, uint64_t seed, char *err, size_t errlen)
{
    assert(src && train && holdout);
    memset(train, 0, sizeof *train);
    memset(holdout, 0, sizeof *holdout);
    if (src->n < 2 || n_holdout == 0 || n_holdout >= src->n)
        return mlt_data_fail(err, errlen, -EINVAL,
                             "held-out split: %u samples requested of %u; need 1 <= n_holdout < %u",
                             n_holdout, src->n, src->n);
    if (dataset_alloc(train, src, src->n - n_holdout) < 0 ||
        dataset_alloc(holdout, src, n_holdout) < 0) {
        mlt_dataset_free(train);
        return mlt_data_fail(err, errlen, -ENOMEM,
                             "held-out split: out of memory copying %u samples", src->n);
    }

    size_t feat = (size_t)src->rows * src->cols;
    uint64_t st = mlt_rng_mix(seed, TAG_SPLIT);
    uint64_t need = n_holdout;
    uint32_t nt = 0, nh = 0;
    for (uint32_t i = 0; i < src->n; i++) {
        mlt_dataset_t *to =
            mlt_data_select_next(&st, &need, (uint64_t)src->n - i) ? holdout : train;
        uint32_t j = to == holdout ? nh++ : nt++;
        memcpy(to->x + (size_t)j * feat, src->x + (size_t)i * feat, feat * sizeof(float));
        to->y[j] = src->y[i];
    }
    assert(nh == n_holdout && nt == src->n - n_holdout);
    return 0;
}

int mlt_dataset_subset(const mlt_dataset_t *src, uint32_t n, mlt_dataset_t *out)
{
    assert(src && out);
    memset(out, 0, sizeof *out);
    if (n == 0 || n > src->n)
        return -EINVAL;
    int rc = dataset_alloc(out, src, n);
    if (rc < 0)
        return rc;
    memcpy(out->x, src->x, (size_t)n * src->rows * src->cols * sizeof(float));
    memcpy(out->y, src->y, n);
    return 0;
}

/* ---- sampler ---------------------------------------------------------------- */

struct mlt_sampler {
    uint64_t seed;   /* the job's data seed */
    uint32_t worker; /* this worker's index, < n_workers */
    uint32_t size;   /* partition size */
    uint32_t *base;  /* the partition, in job-permutation order */
    uint32_t *order; /* the current epoch's order: a shuffle of base */
    uint64_t epoch;  /* current epoch */
    uint32_t pos;    /* indices of order[] already handed out, < size */
};

/* Fisher-Yates shuffle of a[0..n) from stream *st. */
static void shuffle(uint32_t *a, uint32_t n, uint64_t *st)
{
    for (uint32_t i = n; i > 1; i--) {
        uint32_t j = mlt_rng_below(st, i);
        uint32_t t = a[i - 1];
        a[i - 1] = a[j];
        a[j] = t;
    }
}

/* order = base shuffled by the (seed, epoch, worker) stream. */
static void sampler_reorder(mlt_sampler_t *s)
{
    uint64_t st = mlt_rng_mix(mlt_rng_mix(mlt_rng_mix(s->seed, TAG_EPOCH), s->epoch), s->worker);
    memcpy(s->order, s->base, (size_t)s->size * sizeof *s->order);
    shuffle(s->order, s->size, &st);
}

mlt_sampler_t *mlt_sampler_new(uint32_t n_samples, uint32_t worker, uint32_t n_workers,
                               uint64_t seed)
{
    if (n_workers == 0 || worker >= n_workers || n_samples < n_workers) {
        errno = EINVAL;
        return NULL;
    }
    uint32_t size = n_samples / n_workers + (worker < n_samples % n_workers ? 1 : 0);
    uint32_t *perm = mlt_try_malloc((size_t)n_samples * sizeof *perm);
    uint32_t *base = mlt_try_malloc((size_t)size * sizeof *base);
    uint32_t *order = mlt_try_malloc((size_t)size * sizeof *order);
    if (!perm || !base || !order) {
        mlt_free(perm);
        mlt_free(base);
        mlt_free(order);
        errno = ENOMEM;
        return NULL;
    }

    /* the job-wide permutation, identical on every worker */
    for (uint32_t i = 0; i < n_samples; i++)
        perm[i] = i;
    uint64_t st = mlt_rng_mix(seed, TAG_PERMUTATION);
    shuffle(perm, n_samples, &st);
    uint32_t k = 0;
    for (uint64_t j = worker; j < n_samples; j += n_workers)
        base[k++] = perm[j];
    assert(k == size);
    mlt_free(perm);

    mlt_sampler_t *s = mlt_malloc(sizeof *s);
    *s =
        (mlt_sampler_t){.seed = seed, .worker = worker, .size = size, .base = base, .order = order};
    sampler_reorder(s);
    return s;
}

uint32_t mlt_sampler_next_batch(mlt_sampler_t *s, uint32_t batch, uint32_t *idx_out)
{
    assert(s && (batch == 0 || idx_out));
    assert(s->pos < s->size);
    uint32_t left = s->size - s->pos;
    uint32_t n = batch < left ? batch : left;
    if (n == 0)
        return 0;
    memcpy(idx_out, s->order + s->pos, (size_t)n * sizeof *idx_out);
    s->pos += n;
    if (s->pos == s->size) {
        s->epoch++;
        s->pos = 0;
        sampler_reorder(s);
    }
    return n;
}

uint64_t mlt_sampler_epoch(const mlt_sampler_t *s)
{
    return s->epoch;
}

double mlt_sampler_progress(const mlt_sampler_t *s)
{
    return (double)s->pos / (double)s->size;
}

uint32_t mlt_sampler_size(const mlt_sampler_t *s)
{
    return s->size;
}

uint32_t mlt_sampler_pos(const mlt_sampler_t *s)
{
    return s->pos;
}

int mlt_sampler_seek(mlt_sampler_t *s, uint64_t epoch, uint32_t pos)
{
    assert(s);
    if (pos > s->size || (pos == s->size && epoch == UINT64_MAX))
        return -EINVAL;
    if (pos == s->size) {
        epoch++;
        pos = 0;
    }
    if (epoch != s->epoch) {
        s->epoch = epoch;
        sampler_reorder(s);
    }
    s->pos = pos;
    return 0;
}

void mlt_sampler_destroy(mlt_sampler_t **sp)
{
    if (!sp || !*sp)
        return;
    mlt_free((*sp)->base);
    mlt_free((*sp)->order);
    mlt_free(*sp);
    *sp = NULL;
}
