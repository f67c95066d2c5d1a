/* ratings.c - the MovieLens ratings loader, synthetic ratings and the ratings
 * split; see ratings.h.
 *
 * Files are read through zlib's gz* functions (data_int.h), which read gzip and
 * plain files alike. The ratings array comes from mlt_try_* and fails the call
 * with -ENOMEM. */
#include "worker/ratings.h"

#include <assert.h>
#include <errno.h>
#include <limits.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <zlib.h>

#include "common/alloc.h"
#include "common/rng.h"
#include "worker/data_int.h"

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
    const char *sep;  /* field separator: "\t", "," or "::"; NULL until detected */
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
    size_t seplen = strlen(r->sep);
    for (char *p = line;; p += seplen) {
        if (nf < 4)
            field[nf] = p;
        nf++;
        p = strstr(p, r->sep);
        if (!p)
            break;
        *p = '\0';
    }
    if (nf != 4)
        return mlt_data_fail(
            r->err, r->errlen, -EINVAL,
            "%s:%lu: expected 4 %s-separated fields (user, item, rating, timestamp), "
            "got %d",
            r->path, r->ln,
            strcmp(r->sep, "\t") == 0 ? "tab" : strcmp(r->sep, ",") == 0 ? "comma" : "'::'", nf);
    uint64_t id[2], ts;
    for (int i = 0; i < 2; i++) {
        int rc = parse_uint(field[i], UINT32_MAX, &id[i]);
        if (rc == -ERANGE)
            return mlt_data_fail(r->err, r->errlen, -EINVAL, "%s:%lu: field %d: %s %s exceeds %u",
                                 r->path, r->ln, i + 1, FIELD_NAME[i], field[i], UINT32_MAX);
        if (rc < 0)
            return mlt_data_fail(r->err, r->errlen, -EINVAL,
                                 "%s:%lu: field %d: %s '%.40s' is not a non-negative integer",
                                 r->path, r->ln, i + 1, FIELD_NAME[i], field[i]);
    }
    double rating;
    if (parse_rating(field[2], &rating) < 0)
        return mlt_data_fail(r->err, r->errlen, -EINVAL,
                             "%s:%lu: field 3: rating '%.40s' is not a number", r->path, r->ln,
                             field[2]);
    if (rating < MLT_RATINGS_MIN || rating > MLT_RATINGS_MAX)
        return mlt_data_fail(r->err, r->errlen, -EINVAL, "%s:%lu: rating %g outside [%g, %g]",
                             r->path, r->ln, rating, MLT_RATINGS_MIN, MLT_RATINGS_MAX);
    if (parse_uint(field[3], UINT64_MAX, &ts) < 0)
        return mlt_data_fail(r->err, r->errlen, -EINVAL,
                             "%s:%lu: field 4: timestamp '%.40s' is not a non-negative integer",
                             r->path, r->ln, field[3]);
    *out = (mlt_rating_t){.user = (uint32_t)id[0], .item = (uint32_t)id[1], .r = (float)rating};
    return 0;
}

/* Handles one line (newline stripped): format detection on the first
 * non-empty line, then parsing and appending. */
static int ratings_line(ratings_reader_t *r, char *line)
{
    if (*line == '\0')
        return 0;
    if (!r->sep) {
        if (strchr(line, '\t')) {
            r->sep = "\t";
        } else if (strstr(line, "::")) { /* MovieLens 1M and 10M ratings.dat */
            r->sep = "::";
        } else if (strchr(line, ',')) {
            r->sep = ",";
            if (!(*line >= '0' && *line <= '9')) { /* a header */
                if (strcmp(line, CSV_HEADER) != 0)
                    return mlt_data_fail(r->err, r->errlen, -EINVAL,
                                         "%s:%lu: unrecognised header '%.60s', expected '%s'",
                                         r->path, r->ln, line, CSV_HEADER);
                return 0;
            }
        } else {
            return mlt_data_fail(
                r->err, r->errlen, -EINVAL,
                "%s:%lu: unrecognised format: expected tab-separated u.data fields, "
                "'::'-separated ratings.dat fields or the ratings.csv header '%s'",
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
            return mlt_data_fail(r->err, r->errlen, -ENOMEM,
                                 "%s:%lu: out of memory after %llu ratings", r->path, r->ln,
                                 (unsigned long long)r->n);
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

    int rc = mlt_data_gz_open(path, &gz, err, errlen);
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
                rc = mlt_data_gz_fail(gz, where, err, errlen);
                goto fail;
            }
            if (errnum == Z_BUF_ERROR) {
                rc = mlt_data_fail(err, errlen, -EINVAL, "%s:%lu: truncated gzip stream", path,
                                   r.ln);
                goto fail;
            }
            break; /* end of file */
        }
        size_t len = strlen(line);
        /* gzgets stops at a newline, not at a NUL: bytes consumed beyond
         * strlen mean the line held a NUL (also in a last line without \n) */
        if ((z_off_t)len != gztell(gz) - pos0) {
            rc = mlt_data_fail(err, errlen, -EINVAL, "%s:%lu: NUL byte in line", path, r.ln);
            goto fail;
        }
        if (len > 0 && line[len - 1] == '\n') {
            line[--len] = '\0';
        } else if (!gzeof(gz)) {
            rc = mlt_data_fail(err, errlen, -EINVAL, "%s:%lu: line longer than %u bytes", path,
                               r.ln, MLT_RATINGS_MAX_LINE);
            goto fail;
        }
        if (len > 0 && line[len - 1] == '\r')
            line[--len] = '\0';
        rc = ratings_line(&r, line);
        if (rc < 0)
            goto fail;
    }
    if (r.n == 0) {
        rc = mlt_data_fail(err, errlen, -EINVAL, "%s:%lu: no ratings in the file%s", path, r.ln,
                           r.sep ? " (only a header)" : " (empty)");
        goto fail;
    }

    out->v = r.v;
    out->n = r.n;
    r.v = NULL;
    if (ratings_densify(out->v, out->n, 0, &out->user_id, &out->n_users) < 0 ||
        ratings_densify(out->v, out->n, 1, &out->item_id, &out->n_items) < 0) {
        mlt_ratings_free(out);
        rc = mlt_data_fail(err, errlen, -ENOMEM, "%s: out of memory remapping the ids", path);
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
        if (mlt_data_select_next(&st, &need, src->n - i))
            test->v[ns++] = src->v[i];
        else
            train->v[nt++] = src->v[i];
    }
    assert(ns == n_test && nt == src->n - n_test);
    return 0;
}
