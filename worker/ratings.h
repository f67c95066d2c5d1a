/* ratings.h - the worker's rating sets: loading, synthesis, splitting.
 *
 * Rating sets are read from MovieLens files (u.data or ratings.csv) or
 * generated from known low-rank factors (mlt_ratings_synth). worker/data.h
 * includes this header; the conventions it states hold here too: everything is
 * a pure function of its inputs and seeds (randomness from common/rng.h), the
 * loader never prints, returns 0 or -errno and, when err is not NULL, writes a
 * one-line message that names the file and the line; on failure the output
 * struct is left zeroed. No shared state: distinct objects may be used from
 * distinct threads.
 */
#ifndef MLT_WORKER_RATINGS_H
#define MLT_WORKER_RATINGS_H

#include <stddef.h>
#include <stdint.h>

/* Longest ratings-file line accepted, newline included. */
#define MLT_RATINGS_MAX_LINE 1024u
/* Ratings outside [MLT_RATINGS_MIN, MLT_RATINGS_MAX] are refused on load. */
#define MLT_RATINGS_MIN 0.0
#define MLT_RATINGS_MAX 10.0

/* ---- ratings ------------------------------------------------------------- */

typedef struct mlt_rating {
    uint32_t user; /* dense index, < n_users */
    uint32_t item; /* dense index, < n_items */
    float r;       /* the rating */
} mlt_rating_t;

typedef struct mlt_ratings {
    uint32_t n_users;  /* users are 0 .. n_users-1 */
    uint32_t n_items;  /* items are 0 .. n_items-1 */
    uint64_t n;        /* ratings in v */
    mlt_rating_t *v;   /* n ratings, in file order (or generation order) */
    uint32_t *user_id; /* n_users original ids (dense -> file id), ascending; NULL if synthetic */
    uint32_t *item_id; /* n_items original ids, ascending; NULL if synthetic */
} mlt_ratings_t;

/* Loads a MovieLens ratings file, gzipped or plain. The format is detected from
 * the first line:
 *  - the header "userId,movieId,rating,timestamp": ratings.csv (ml-latest,
 *    ml-20m, ...), comma-separated, ratings such as 3.5;
 *  - otherwise a line with tabs: ml-100k u.data, "user\titem\trating\ttimestamp".
 * Every line must have exactly 4 fields: non-negative integer ids (< 2^32),
 * a finite rating in [MLT_RATINGS_MIN, MLT_RATINGS_MAX], an integer timestamp
 * (checked, then dropped). Empty lines are skipped; a final "\r" is ignored.
 * Ids are remapped to dense 0-based indices in ascending order of the original
 * id (so u.data's 1-based ids become id - 1 when none is missing); user_id and
 * item_id map back. Repeated (user, item) pairs are kept as they are.
 * Errors name the file and line: "ratings.csv:12: rating 11 outside [0, 10]".
 * Returns 0, -errno from open/read, -EINVAL (bad content, empty file) or
 * -ENOMEM; *out is the caller's (mlt_ratings_free), zeroed on failure. */
int mlt_ratings_load(const char *path, mlt_ratings_t *out, char *err, size_t errlen);

/* Frees r's buffers and zeroes it. NULL and zeroed structs are fine. */
void mlt_ratings_free(mlt_ratings_t *r);

/* Synthetic ratings with known structure. Ground-truth factors U (users x rank)
 * and V (items x rank), row-major, have i.i.d. N(0, 1/sqrt(rank)) entries
 * (variance 1/sqrt(rank)), so u.v has variance 1. Each of the n ratings picks a
 * user and an item uniformly and independently and sets r = u.v + N(0, sigma^2),
 * computed in double and stored as float. Pairs are not deduplicated: a pair
 * repeats with probability about n / (users * items) per rating (1M ratings on
 * 10k x 5k: ~2%), which only adds noise-level repeats. Deterministic for
 * (users, items, rank, seed) and n, sigma. Returns 0, -EINVAL (a zero size,
 * sigma negative or not finite) or -ENOMEM; *out is the caller's. */
int mlt_ratings_synth(uint32_t users, uint32_t items, uint32_t rank, uint64_t n, float noise_sigma,
                      uint64_t seed, mlt_ratings_t *out);

/* The ground-truth factors mlt_ratings_synth(users, items, rank, *, *, seed)
 * uses: *u gets users*rank floats, *v items*rank (row-major, 64-byte aligned,
 * caller frees both with mlt_free). For tests and for the noise floor. Returns
 * 0, -EINVAL or -ENOMEM (both NULL on failure). */
int mlt_ratings_synth_factors(uint32_t users, uint32_t items, uint32_t rank, uint64_t seed,
                              float **u, float **v);

/* Splits src into *train and *test: round(n * test_fraction) ratings chosen
 * uniformly by selection sampling seeded from `seed` go to test, the rest to
 * train; both keep src's order, n_users, n_items and id maps (copied). Needs
 * 0 < test_fraction < 1 and both parts non-empty. Returns 0, -EINVAL or -ENOMEM;
 * outputs are the caller's, zeroed on failure. */
int mlt_ratings_split(const mlt_ratings_t *src, double test_fraction, uint64_t seed,
                      mlt_ratings_t *train, mlt_ratings_t *test);

#endif
