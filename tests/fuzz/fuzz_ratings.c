/* fuzz_ratings.c - libFuzzer target for mlt_ratings_load (MovieLens files).
 *
 * The input is the whole file, written to a fixed per-process path
 * (fuzz_util.h), loaded, and removed. Checks the contract of worker/data.h. A refusal:
 * rc in -EINVAL/-ENOMEM/-EIO, *out zeroed, a one-line message that starts
 * with the path. An acceptance: n > 0; every rating's user < n_users and item
 * < n_items, its value finite and in [MLT_RATINGS_MIN, MLT_RATINGS_MAX];
 * user_id and item_id strictly ascending, and every dense index used. The
 * same verdict with an 8-byte message buffer and with none.
 *
 * When the file is plain, or exactly one complete gzip member, ref_parse()
 * below decodes it as data.h describes the format and says whether it must
 * load; an accepted file must then hold exactly its ratings, in file order,
 * with ids that map back to the file's. The reference follows the loader
 * where data.h leaves a detail open (a comma file without a header whose
 * first line starts with a digit is read as ratings.csv; rating syntax is
 * strtod's) and refuses a NUL byte anywhere (the loader's "NUL byte in
 * line"). tests/fuzz/replay.c runs the corpus through this function in every
 * ordinary `meson test`. */
#include "worker/data.h"

#include <errno.h>
#include <math.h>
#include <stdint.h>
#include <string.h>

#include "fuzz_util.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static const char CSV_HEADER[] = "userId,movieId,rating,timestamp";

typedef struct ref_rating {
    uint32_t user, item; /* as in the file */
    float r;
} ref_rating_t;

/* The whole of s[0..n) is a decimal integer <= max. */
static int ref_uint(const char *s, size_t n, uint64_t max)
{
    if (n == 0)
        return 0;
    uint64_t v = 0;
    for (size_t i = 0; i < n; i++) {
        if (s[i] < '0' || s[i] > '9')
            return 0;
        unsigned d = (unsigned)(s[i] - '0');
        if (v > (max - d) / 10)
            return 0;
        v = v * 10 + d;
    }
    return 1;
}

static uint32_t ref_u32(const char *s, size_t n)
{
    uint32_t v = 0;
    for (size_t i = 0; i < n; i++)
        v = v * 10 + (uint32_t)(s[i] - '0');
    return v;
}

/* One data line (no newline, no final CR, no NUL) with separator sep. */
static int ref_line(const char *line, size_t len, char sep, ref_rating_t *out)
{
    const char *f[4];
    size_t fl[4];
    int nf = 0;
    const char *p = line, *end = line + len;
    for (;;) {
        const char *q = memchr(p, sep, (size_t)(end - p));
        if (nf < 4) {
            f[nf] = p;
            fl[nf] = (size_t)((q ? q : end) - p);
        }
        nf++;
        if (!q)
            break;
        p = q + 1;
    }
    if (nf != 4 || !ref_uint(f[0], fl[0], UINT32_MAX) || !ref_uint(f[1], fl[1], UINT32_MAX) ||
        !ref_uint(f[3], fl[3], UINT64_MAX))
        return 0;
    char num[MLT_RATINGS_MAX_LINE + 1];
    memcpy(num, f[2], fl[2]);
    num[fl[2]] = '\0';
    if (!((num[0] >= '0' && num[0] <= '9') || num[0] == '.' || num[0] == '-' || num[0] == '+'))
        return 0;
    char *e;
    double r = strtod(num, &e);
    if (*e != '\0' || !isfinite(r) || r < MLT_RATINGS_MIN || r > MLT_RATINGS_MAX)
        return 0;
    *out = (ref_rating_t){ref_u32(f[0], fl[0]), ref_u32(f[1], fl[1]), (float)r};
    return 1;
}

/* Decodes a plain file. 1: it must load, to *v (malloc'd) and *n; 0: it must
 * be refused. */
static int ref_parse(const uint8_t *b, size_t len, ref_rating_t **v, uint64_t *n)
{
    *v = malloc((len / 8 + 1) * sizeof **v); /* a rating line takes at least 8 bytes */
    fuzz_assert(*v != NULL);
    *n = 0;
    if (memchr(b, '\0', len))
        return 0;
    char sep = 0;
    for (size_t pos = 0; pos < len;) {
        const char *line = (const char *)b + pos;
        const char *nl = memchr(line, '\n', len - pos);
        size_t l = nl ? (size_t)(nl - line) : len - pos;
        pos += l + (nl ? 1 : 0);
        if (l + 1 > MLT_RATINGS_MAX_LINE) /* the newline counts, or the NUL gzgets adds */
            return 0;
        if (l > 0 && line[l - 1] == '\r')
            l--;
        if (l == 0)
            continue;
        if (sep == 0) {
            if (memchr(line, '\t', l)) {
                sep = '\t';
            } else if (memchr(line, ',', l)) {
                sep = ',';
                if (!(line[0] >= '0' && line[0] <= '9')) {
                    if (l != sizeof CSV_HEADER - 1 || memcmp(line, CSV_HEADER, l) != 0)
                        return 0;
                    continue;
                }
            } else {
                return 0;
            }
        }
        if (!ref_line(line, l, sep, &(*v)[*n]))
            return 0;
        (*n)++;
    }
    return *n > 0;
}

static int all_zero(const void *p, size_t n)
{
    const uint8_t *b = p;
    for (size_t i = 0; i < n; i++)
        if (b[i])
            return 0;
    return 1;
}

/* The guarantees of an accepted rating set, whatever the file was. */
static void check_accepted(const mlt_ratings_t *r)
{
    fuzz_assert(r->n > 0 && r->v != NULL);
    fuzz_assert(r->n_users >= 1 && r->n_users <= r->n && r->user_id != NULL);
    fuzz_assert(r->n_items >= 1 && r->n_items <= r->n && r->item_id != NULL);
    for (uint32_t i = 1; i < r->n_users; i++)
        fuzz_assert(r->user_id[i - 1] < r->user_id[i]);
    for (uint32_t i = 1; i < r->n_items; i++)
        fuzz_assert(r->item_id[i - 1] < r->item_id[i]);
    uint8_t *seen_u = calloc(r->n_users, 1), *seen_i = calloc(r->n_items, 1);
    fuzz_assert(seen_u && seen_i);
    for (uint64_t i = 0; i < r->n; i++) {
        const mlt_rating_t *x = &r->v[i];
        fuzz_assert(x->user < r->n_users && x->item < r->n_items);
        fuzz_assert(isfinite(x->r) && x->r >= MLT_RATINGS_MIN && x->r <= MLT_RATINGS_MAX);
        seen_u[x->user] = seen_i[x->item] = 1;
    }
    for (uint32_t i = 0; i < r->n_users; i++)
        fuzz_assert(seen_u[i]);
    for (uint32_t i = 0; i < r->n_items; i++)
        fuzz_assert(seen_i[i]);
    free(seen_u);
    free(seen_i);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    const char *path = fuzz_tmp_path("ratings");
    fuzz_write_file(path, data, size);

    char err[512];
    memset(err, 0, sizeof err);
    mlt_ratings_t r;
    memset(&r, 0xa5, sizeof r); /* must be overwritten */
    int rc = mlt_ratings_load(path, &r, err, sizeof err);
    fuzz_verdict(rc == 0);

    /* the same verdict with a tiny buffer and with none */
    char tiny[8];
    memset(tiny, 'x', sizeof tiny);
    mlt_ratings_t r2;
    int rc2 = mlt_ratings_load(path, &r2, tiny, sizeof tiny);
    fuzz_assert(rc2 == rc);
    fuzz_assert(rc2 == 0 || memchr(tiny, '\0', sizeof tiny) != NULL);
    mlt_ratings_free(&r2);
    rc2 = mlt_ratings_load(path, &r2, NULL, 0);
    fuzz_assert(rc2 == rc);
    mlt_ratings_free(&r2);
    fuzz_assert(all_zero(&r2, sizeof r2));

    /* the reference verdict, when the file is plain or one gzip member */
    uint8_t *unpacked = NULL;
    size_t len = size;
    int known = 1;
    if (fuzz_is_gzip(data, size))
        known = fuzz_gunzip_exact(data, size, 1u << 24, &unpacked, &len);
    ref_rating_t *want = NULL;
    uint64_t n_want = 0;
    int want_ok = known && ref_parse(unpacked ? unpacked : data, len, &want, &n_want);

    if (rc != 0) {
        fuzz_assert(rc == -EINVAL || rc == -ENOMEM || rc == -EIO);
        fuzz_assert(all_zero(&r, sizeof r));
        fuzz_check_message(err, sizeof err, path);
        if (want_ok)
            fprintf(stderr, "valid ratings file refused: %d %s\n", rc, err);
        fuzz_assert(!want_ok);
    } else {
        if (known && !want_ok)
            fprintf(stderr, "invalid ratings file accepted (%llu ratings)\n",
                    (unsigned long long)r.n);
        fuzz_assert(!known || want_ok);
        check_accepted(&r);
        if (known) {
            fuzz_assert(r.n == n_want);
            for (uint64_t i = 0; i < r.n; i++) {
                fuzz_assert(r.user_id[r.v[i].user] == want[i].user);
                fuzz_assert(r.item_id[r.v[i].item] == want[i].item);
                fuzz_assert(r.v[i].r == want[i].r);
            }
        }
        mlt_ratings_free(&r);
        fuzz_assert(all_zero(&r, sizeof r));
    }
    free(want);
    free(unpacked);
    fuzz_remove_files();
    return 0;
}
