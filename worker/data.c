/* data.c - IDX and MovieLens loaders, splits, the sampler, synthetic ratings;
 * see data.h.
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

#define IDX_MAGIC_IMAGES 0x00000803u /* unsigned bytes, 3 dimensions */
#define IDX_MAGIC_LABELS 0x00000801u /* unsigned bytes, 1 dimension */
#define IDX_CHUNK        16384u      /* pixels converted per read (stack buffer) */
#define GZ_BUFFER        (1u << 17)  /* zlib's input buffer */

/* Stream tags for mlt_rng_mix: one independent stream per use of a seed. */
enum {
    TAG_PERMUTATION = 1, /* sampler: the job-wide permutation */
    TAG_EPOCH = 2,       /* sampler: per-(epoch, worker) order */
    TAG_SPLIT = 3,       /* dataset and ratings splits */
    TAG_SYNTH_U = 4,     /* synthetic user factors */
    TAG_SYNTH_V = 5,     /* synthetic item factors */
    TAG_SYNTH_R = 6,     /* synthetic pairs and noise */
};

/* ---- shared helpers ----------------------------------------------------- */

/* Writes the message (if err) and returns rc. */
__attribute__((format(printf, 4, 5))) static int fail(char *err, size_t errlen, int rc,
                                                      const char *fmt, ...)
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
static int gz_open(const char *path, gzFile *out, char *err, size_t errlen)
{
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0) {
        int e = errno;
        return fail(err, errlen, -e, "%s: %s", path, strerror(e));
    }
    gzFile gz = gzdopen(fd, "rb");
    if (!gz) {
        close(fd);
        return fail(err, errlen, -ENOMEM, "%s: out of memory opening the file", path);
    }
    gzbuffer(gz, GZ_BUFFER);
    *out = gz;
    return 0;
}

/* The error zlib holds for gz as -errno plus "<where>: text". */
static int gz_fail(gzFile gz, const char *where, char *err, size_t errlen)
{
    int e = errno; /* meaningful only for Z_ERRNO; read before anything else */
    int errnum = Z_OK;
    const char *msg = gzerror(gz, &errnum);
    switch (errnum) {
    case Z_ERRNO:
        return fail(err, errlen, e ? -e : -EIO, "%s: read error: %s", where, strerror(e ? e : EIO));
    case Z_DATA_ERROR: return fail(err, errlen, -EINVAL, "%s: corrupt gzip data: %s", where, msg);
    case Z_MEM_ERROR: return fail(err, errlen, -ENOMEM, "%s: out of memory decompressing", where);
    default: return fail(err, errlen, -EIO, "%s: read error: %s", where, msg);
    }
}

/* Knuth's selection sampling (Algorithm S): called once per position in order,
 * with *need positions still to pick among `left` (this one included); returns 1
 * if this position is picked. Exactly the initial *need positions get picked and
 * every subset of that size is equally likely. */
static int select_next(uint64_t *st, uint64_t *need, uint64_t left)
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
            return gz_fail(f->gz, where, err, errlen);
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
        return fail(err, errlen, -EINVAL,
                    "%s: offset %llu: truncated: expected %zu bytes of %s, got %zu%s", f->path,
                    (unsigned long long)start, len, what, got,
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
    int rc = gz_open(path, &f->gz, err, errlen);
    if (rc < 0)
        return rc;

    uint8_t b[4];
    size_t got;
    rc = idx_read(f, b, 4, &got, err, errlen);
    if (rc < 0)
        return rc;
    if (got == 0)
        return fail(err, errlen, -EINVAL, "%s: offset 0: empty file, expected an IDX %s file", path,
                    kind);
    if (got < 4)
        return fail(err, errlen, -EINVAL,
                    "%s: offset 0: truncated: expected 4 bytes of magic number, got %zu", path,
                    got);
    uint32_t found = be32(b);
    uint32_t ndim = magic & 0xffu;
    if ((found >> 8) != (magic >> 8))
        return fail(err, errlen, -EINVAL,
                    "%s: offset 0: bad magic 0x%08x, expected 0x%08x (IDX %s: unsigned bytes, "
                    "%u dimension%s)",
                    path, found, magic, kind, ndim, ndim == 1 ? "" : "s");
    if ((found & 0xffu) != ndim) {
        const char *hint = found == IDX_MAGIC_LABELS   ? "; this looks like a labels file"
                           : found == IDX_MAGIC_IMAGES ? "; this looks like an images file"
                                                       : "";
        return fail(err, errlen, -EINVAL,
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
        return fail(err, errlen, -EINVAL,
                    "%s: offset %llu: trailing bytes after the %s the header announces", f->path,
                    (unsigned long long)at, after);
    if (f->cut) /* all data present, but the gzip trailer (CRC) is missing */
        return fail(err, errlen, -EINVAL, "%s: offset %llu: truncated gzip stream", f->path,
                    (unsigned long long)at);
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
            return fail(err, errlen, -EINVAL,
                        "%s: offset %llu: truncated: expected %zu bytes of pixels, got %zu%s",
                        f->path, (unsigned long long)start, total, done,
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
    uint32_t dims[3], nlabels;

    int rc = idx_open(&im, images_path, IDX_MAGIC_IMAGES, "images", dims, err, errlen);
    if (rc < 0)
        goto fail;
    d.n = dims[0];
    d.rows = dims[1];
    d.cols = dims[2];
    if (d.n == 0) {
        rc = fail(err, errlen, -EINVAL, "%s: offset 4: zero samples", images_path);
        goto fail;
    }
    for (int i = 1; i < 3; i++) {
        if (dims[i] == 0 || dims[i] > MLT_IDX_MAX_DIM) {
            rc = fail(err, errlen, -EINVAL, "%s: offset %d: %s %u outside [1, %u]", images_path,
                      4 + 4 * i, i == 1 ? "rows" : "cols", dims[i], MLT_IDX_MAX_DIM);
            goto fail;
        }
    }

    rc = idx_open(&lb, labels_path, IDX_MAGIC_LABELS, "labels", &nlabels, err, errlen);
    if (rc < 0)
        goto fail;
    if (nlabels != d.n) {
        rc = fail(err, errlen, -EINVAL, "%s: offset 4: %u labels, but %s has %u images",
                  labels_path, nlabels, images_path, d.n);
        goto fail;
    }

    size_t feat = (size_t)d.rows * d.cols; /* <= 2^24 */
    /* a bound before the allocation: the header alone must not make us reserve
     * memory the file cannot fill (MLT_IDX_MAX_PIXELS, 4 GiB of floats) */
    if ((size_t)d.n > SIZE_MAX / sizeof(float) / feat || (uint64_t)d.n * feat > MLT_IDX_MAX_PIXELS) {
        rc = fail(err, errlen, -EFBIG, "%s: offset 4: %u images of %ux%u exceed %llu pixels",
                  images_path, d.n, d.rows, d.cols, (unsigned long long)MLT_IDX_MAX_PIXELS);
        goto fail;
    }
    size_t total = (size_t)d.n * feat;
    d.x = mlt_try_aligned(total * sizeof(float));
    d.y = mlt_try_malloc(d.n);
    if (!d.x || !d.y) {
        rc = fail(err, errlen, -ENOMEM, "%s: out of memory for %u images of %ux%u (%zu bytes)",
                  images_path, d.n, d.rows, d.cols, total * sizeof(float) + d.n);
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

    uint32_t max = 0;
    for (uint32_t i = 0; i < d.n; i++)
        max = d.y[i] > max ? d.y[i] : max;
    d.n_classes = max + 1; /* <= 256: labels are bytes */

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
        return fail(err, errlen, -EINVAL,
                    "held-out split: %u samples requested of %u; need 1 <= n_holdout < %u",
                    n_holdout, src->n, src->n);
    if (dataset_alloc(train, src, src->n - n_holdout) < 0 ||
        dataset_alloc(holdout, src, n_holdout) < 0) {
        mlt_dataset_free(train);
        return fail(err, errlen, -ENOMEM, "held-out split: out of memory copying %u samples",
                    src->n);
    }

    size_t feat = (size_t)src->rows * src->cols;
    uint64_t st = mlt_rng_mix(seed, TAG_SPLIT);
    uint64_t need = n_holdout;
    uint32_t nt = 0, nh = 0;
    for (uint32_t i = 0; i < src->n; i++) {
        mlt_dataset_t *to = select_next(&st, &need, (uint64_t)src->n - i) ? holdout : train;
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

/* ---- ratings: loading ------------------------------------------------------- */

static const char CSV_HEADER[] = "userId,movieId,rating,timestamp";
static const char *const FIELD_NAME[4] = {"user id", "item id", "rating", "timestamp"};

/* The whole of s is a decimal integer <= max. 0, or -EINVAL. */
static int parse_uint(const char *s, uint64_t max, uint64_t *out)
{
    if (*s == '\0')
        return -EINVAL;
    uint64_t v = 0;
    for (; *s; s++) {
        if (*s < '0' || *s > '9')
            return -EINVAL;
        unsigned dgt = (unsigned)(*s - '0');
        if (v > (max - dgt) / 10)
            return -ERANGE;
        v = v * 10 + dgt;
    }
    *out = v;
    return 0;
}

/* The whole of s is a finite decimal number. 0, or -EINVAL. */
static int parse_rating(const char *s, double *out)
{
    if (!((*s >= '0' && *s <= '9') || *s == '.' || *s == '-' || *s == '+'))
        return -EINVAL;
    char *end;
    errno = 0;
    double v = strtod(s, &end);
    if (*end != '\0' || end == s || !isfinite(v))
        return -EINVAL;
    *out = v;
    return 0;
}

/* Loader state while reading one file. */
typedef struct ratings_reader {
    const char *path; /* for messages (borrowed) */
    unsigned long ln; /* current line, from 1 */
    char sep;         /* field separator, 0 until detected */
    mlt_rating_t *v;  /* ratings with file ids */
    uint64_t n, cap;  /* used and allocated entries of v */
    char *err;        /* message buffer */
    size_t errlen;
} ratings_reader_t;

/* Parses one line (no newline) into a rating with the file's ids. */
static int ratings_parse_line(ratings_reader_t *r, char *line, mlt_rating_t *out)
{
    char *field[4];
    int nf = 0;
    for (char *p = line;; p++) {
        if (nf < 4)
            field[nf] = p;
        nf++;
        p = strchr(p, r->sep);
        if (!p)
            break;
        *p = '\0';
    }
    if (nf != 4)
        return fail(r->err, r->errlen, -EINVAL,
                    "%s:%lu: expected 4 %s-separated fields (user, item, rating, timestamp), "
                    "got %d",
                    r->path, r->ln, r->sep == '\t' ? "tab" : "comma", nf);
    uint64_t id[2], ts;
    for (int i = 0; i < 2; i++) {
        int rc = parse_uint(field[i], UINT32_MAX, &id[i]);
        if (rc == -ERANGE)
            return fail(r->err, r->errlen, -EINVAL, "%s:%lu: field %d: %s %s exceeds %u", r->path,
                        r->ln, i + 1, FIELD_NAME[i], field[i], UINT32_MAX);
        if (rc < 0)
            return fail(r->err, r->errlen, -EINVAL,
                        "%s:%lu: field %d: %s '%.40s' is not a non-negative integer", r->path,
                        r->ln, i + 1, FIELD_NAME[i], field[i]);
    }
    double rating;
    if (parse_rating(field[2], &rating) < 0)
        return fail(r->err, r->errlen, -EINVAL, "%s:%lu: field 3: rating '%.40s' is not a number",
                    r->path, r->ln, field[2]);
    if (rating < MLT_RATINGS_MIN || rating > MLT_RATINGS_MAX)
        return fail(r->err, r->errlen, -EINVAL, "%s:%lu: rating %g outside [%g, %g]", r->path,
                    r->ln, rating, MLT_RATINGS_MIN, MLT_RATINGS_MAX);
    if (parse_uint(field[3], UINT64_MAX, &ts) < 0)
        return fail(r->err, r->errlen, -EINVAL,
                    "%s:%lu: field 4: timestamp '%.40s' is not a non-negative integer", r->path,
                    r->ln, field[3]);
    *out = (mlt_rating_t){.user = (uint32_t)id[0], .item = (uint32_t)id[1], .r = (float)rating};
    return 0;
}

/* Handles one line (newline stripped): format detection on the first
 * non-empty line, then parsing and appending. */
static int ratings_line(ratings_reader_t *r, char *line)
{
    if (*line == '\0')
        return 0;
    if (r->sep == 0) {
        if (strchr(line, '\t')) {
            r->sep = '\t';
        } else if (strchr(line, ',')) {
            r->sep = ',';
            if (!(*line >= '0' && *line <= '9')) { /* a header */
                if (strcmp(line, CSV_HEADER) != 0)
                    return fail(r->err, r->errlen, -EINVAL,
                                "%s:%lu: unrecognised header '%.60s', expected '%s'", r->path,
                                r->ln, line, CSV_HEADER);
                return 0;
            }
        } else {
            return fail(r->err, r->errlen, -EINVAL,
                        "%s:%lu: unrecognised format: expected tab-separated u.data fields or "
                        "the ratings.csv header '%s'",
                        r->path, r->ln, CSV_HEADER);
        }
    }
    mlt_rating_t one;
    int rc = ratings_parse_line(r, line, &one);
    if (rc < 0)
        return rc;
    if (r->n == r->cap) {
        uint64_t cap = r->cap ? r->cap * 2 : 4096;
        mlt_rating_t *v =
            cap <= SIZE_MAX / sizeof *v ? mlt_try_realloc(r->v, cap * sizeof *v) : NULL;
        if (!v)
            return fail(r->err, r->errlen, -ENOMEM, "%s:%lu: out of memory after %llu ratings",
                        r->path, r->ln, (unsigned long long)r->n);
        r->v = v;
        r->cap = cap;
    }
    r->v[r->n++] = one;
    return 0;
}

static int cmp_u32(const void *a, const void *b)
{
    uint32_t x = *(const uint32_t *)a, y = *(const uint32_t *)b;
    return (x > y) - (x < y);
}

/* Builds the ascending list of distinct ids in v (user or item, by `item`) and
 * rewrites v's ids to their indices in it. 0 or -ENOMEM. */
static int ratings_densify(mlt_rating_t *v, uint64_t n, int item, uint32_t **ids_out,
                           uint32_t *count_out)
{
    uint32_t *ids = mlt_try_malloc((size_t)n * sizeof *ids);
    if (!ids)
        return -ENOMEM;
    for (uint64_t i = 0; i < n; i++)
        ids[i] = item ? v[i].item : v[i].user;
    qsort(ids, (size_t)n, sizeof *ids, cmp_u32);
    size_t m = 0;
    for (size_t i = 0; i < n; i++)
        if (m == 0 || ids[i] != ids[m - 1])
            ids[m++] = ids[i];
    uint32_t *shrunk = mlt_try_realloc(ids, m * sizeof *ids);
    if (shrunk)
        ids = shrunk;
    for (uint64_t i = 0; i < n; i++) {
        uint32_t key = item ? v[i].item : v[i].user;
        const uint32_t *hit = bsearch(&key, ids, m, sizeof *ids, cmp_u32);
        assert(hit);
        uint32_t dense = (uint32_t)(hit - ids);
        if (item)
            v[i].item = dense;
        else
            v[i].user = dense;
    }
    *ids_out = ids;
    *count_out = (uint32_t)m; /* distinct 32-bit ids: m <= 2^32, and m == 2^32 is absurd */
    return 0;
}

int mlt_ratings_load(const char *path, mlt_ratings_t *out, char *err, size_t errlen)
{
    assert(path && out);
    memset(out, 0, sizeof *out);
    ratings_reader_t r = {.path = path, .err = err, .errlen = errlen};
    gzFile gz = NULL;
    char line[MLT_RATINGS_MAX_LINE + 1];

    int rc = gz_open(path, &gz, err, errlen);
    if (rc < 0)
        return rc;
    for (r.ln = 1;; r.ln++) {
        z_off_t pos0 = gztell(gz);
        if (!gzgets(gz, line, sizeof line)) {
            int errnum = Z_OK;
            gzerror(gz, &errnum);
            if (errnum != Z_OK && errnum != Z_BUF_ERROR) {
                char where[PATH_MAX + 32];
                snprintf(where, sizeof where, "%s:%lu", path, r.ln);
                rc = gz_fail(gz, where, err, errlen);
                goto fail;
            }
            if (errnum == Z_BUF_ERROR) {
                rc = fail(err, errlen, -EINVAL, "%s:%lu: truncated gzip stream", path, r.ln);
                goto fail;
            }
            break; /* end of file */
        }
        size_t len = strlen(line);
        /* gzgets stops at a newline, not at a NUL: bytes consumed beyond
         * strlen mean the line held a NUL (also in a last line without \n) */
        if ((z_off_t)len != gztell(gz) - pos0) {
            rc = fail(err, errlen, -EINVAL, "%s:%lu: NUL byte in line", path, r.ln);
            goto fail;
        }
        if (len > 0 && line[len - 1] == '\n') {
            line[--len] = '\0';
        } else if (!gzeof(gz)) {
            rc = fail(err, errlen, -EINVAL, "%s:%lu: line longer than %u bytes", path, r.ln,
                      MLT_RATINGS_MAX_LINE);
            goto fail;
        }
        if (len > 0 && line[len - 1] == '\r')
            line[--len] = '\0';
        rc = ratings_line(&r, line);
        if (rc < 0)
            goto fail;
    }
    if (r.n == 0) {
        rc = fail(err, errlen, -EINVAL, "%s:%lu: no ratings in the file%s", path, r.ln,
                  r.sep ? " (only a header)" : " (empty)");
        goto fail;
    }

    out->v = r.v;
    out->n = r.n;
    r.v = NULL;
    if (ratings_densify(out->v, out->n, 0, &out->user_id, &out->n_users) < 0 ||
        ratings_densify(out->v, out->n, 1, &out->item_id, &out->n_items) < 0) {
        mlt_ratings_free(out);
        rc = fail(err, errlen, -ENOMEM, "%s: out of memory remapping the ids", path);
        goto fail;
    }
    gzclose(gz);
    return 0;

fail:
    mlt_free(r.v);
    gzclose(gz);
    return rc;
}

void mlt_ratings_free(mlt_ratings_t *r)
{
    if (!r)
        return;
    mlt_free(r->v);
    mlt_free(r->user_id);
    mlt_free(r->item_id);
    memset(r, 0, sizeof *r);
}

/* ---- ratings: synthetic and split ---------------------------------------- */

/* rows*cols N(0, sd^2) floats from stream st, or NULL. */
static float *normal_matrix(uint32_t rows, uint32_t cols, double sd, uint64_t st)
{
    uint64_t count = (uint64_t)rows * cols;
    if (count > SIZE_MAX / sizeof(float))
        return NULL;
    float *m = mlt_try_aligned((size_t)count * sizeof(float));
    if (!m)
        return NULL;
    for (uint64_t i = 0; i < count; i++)
        m[i] = (float)(sd * mlt_rng_normal(&st));
    return m;
}

int mlt_ratings_synth_factors(uint32_t users, uint32_t items, uint32_t rank, uint64_t seed,
                              float **u, float **v)
{
    assert(u && v);
    *u = *v = NULL;
    if (users == 0 || items == 0 || rank == 0)
        return -EINVAL;
    double sd = pow((double)rank, -0.25); /* variance 1/sqrt(rank): var(u.v) = rank*sd^4 = 1 */
    *u = normal_matrix(users, rank, sd, mlt_rng_mix(seed, TAG_SYNTH_U));
    *v = normal_matrix(items, rank, sd, mlt_rng_mix(seed, TAG_SYNTH_V));
    if (!*u || !*v) {
        mlt_free(*u);
        mlt_free(*v);
        *u = *v = NULL;
        return -ENOMEM;
    }
    return 0;
}

int mlt_ratings_synth(uint32_t users, uint32_t items, uint32_t rank, uint64_t n, float noise_sigma,
                      uint64_t seed, mlt_ratings_t *out)
{
    assert(out);
    memset(out, 0, sizeof *out);
    if (n == 0 || !isfinite(noise_sigma) || noise_sigma < 0.0f)
        return -EINVAL;
    float *u, *v;
    int rc = mlt_ratings_synth_factors(users, items, rank, seed, &u, &v);
    if (rc < 0)
        return rc;
    mlt_rating_t *r = n <= SIZE_MAX / sizeof *r ? mlt_try_malloc((size_t)n * sizeof *r) : NULL;
    if (!r) {
        mlt_free(u);
        mlt_free(v);
        return -ENOMEM;
    }

    uint64_t st = mlt_rng_mix(seed, TAG_SYNTH_R);
    for (uint64_t i = 0; i < n; i++) {
        uint32_t a = mlt_rng_below(&st, users);
        uint32_t b = mlt_rng_below(&st, items);
        const float *ua = u + (size_t)a * rank, *vb = v + (size_t)b * rank;
        double dot = 0.0;
        for (uint32_t k = 0; k < rank; k++)
            dot += (double)ua[k] * vb[k];
        r[i] = (mlt_rating_t){
            .user = a, .item = b, .r = (float)(dot + noise_sigma * mlt_rng_normal(&st))};
    }
    mlt_free(u);
    mlt_free(v);
    *out = (mlt_ratings_t){.n_users = users, .n_items = items, .n = n, .v = r};
    return 0;
}

/* A copy of n ids, or NULL for NULL; *ok cleared on allocation failure. */
static uint32_t *dup_ids(const uint32_t *ids, uint32_t n, int *ok)
{
    if (!ids)
        return NULL;
    uint32_t *d = mlt_try_malloc((size_t)n * sizeof *d);
    if (!d) {
        *ok = 0;
        return NULL;
    }
    memcpy(d, ids, (size_t)n * sizeof *d);
    return d;
}

/* Allocates part for n ratings sharing src's index space and id maps. */
static int ratings_part(const mlt_ratings_t *src, uint64_t n, mlt_ratings_t *part)
{
    int ok = 1;
    *part = (mlt_ratings_t){.n_users = src->n_users, .n_items = src->n_items, .n = n};
    part->v = mlt_try_malloc((size_t)n * sizeof *part->v);
    part->user_id = dup_ids(src->user_id, src->n_users, &ok);
    part->item_id = dup_ids(src->item_id, src->n_items, &ok);
    if (!part->v || !ok) {
        mlt_ratings_free(part);
        return -ENOMEM;
    }
    return 0;
}

int mlt_ratings_split(const mlt_ratings_t *src, double test_fraction, uint64_t seed,
                      mlt_ratings_t *train, mlt_ratings_t *test)
{
    assert(src && train && test);
    memset(train, 0, sizeof *train);
    memset(test, 0, sizeof *test);
    if (!(test_fraction > 0.0 && test_fraction < 1.0))
        return -EINVAL;
    uint64_t n_test = (uint64_t)llround((double)src->n * test_fraction);
    if (n_test == 0 || n_test >= src->n)
        return -EINVAL;
    if (ratings_part(src, src->n - n_test, train) < 0 || ratings_part(src, n_test, test) < 0) {
        mlt_ratings_free(train);
        return -ENOMEM;
    }

    uint64_t st = mlt_rng_mix(seed, TAG_SPLIT);
    uint64_t need = n_test, nt = 0, ns = 0;
    for (uint64_t i = 0; i < src->n; i++) {
        if (select_next(&st, &need, src->n - i))
            test->v[ns++] = src->v[i];
        else
            train->v[nt++] = src->v[i];
    }
    assert(ns == n_test && nt == src->n - n_test);
    return 0;
}
