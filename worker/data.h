/* data.h - the worker's training data: loading, splitting, partitioning.
 *
 * Owns three things:
 *  - image datasets read from IDX files (MNIST / Fashion-MNIST format), gzipped
 *    or not, with pixels scaled to [0, 1];
 *  - rating sets read from MovieLens files (u.data or ratings.csv) or generated
 *    from known low-rank factors (mlt_ratings_synth);
 *  - the sampler that gives a worker its partition of the samples and a
 *    deterministic per-epoch order over it.
 *
 * Everything here is a pure function of its inputs and seeds: the same files and
 * seeds give the same datasets, splits and batch orders on every machine (all
 * randomness comes from common/rng.h). Loaders never print; they return 0 or
 * -errno and, when err is not NULL, write a one-line message that names the file
 * and the byte offset (IDX, counted in the decompressed stream) or the line
 * (ratings): "train-images-idx3-ubyte.gz: offset 16: truncated: expected
 * 47040000 bytes of pixels, got 1000". Return codes: -ENOENT and other -errno
 * from open/read, -EINVAL for malformed content or bad arguments, -ENOMEM when a
 * data buffer cannot be allocated. On failure the output struct is left zeroed.
 *
 * Threading: no shared state. Distinct objects may be used from distinct threads;
 * one sampler or dataset being written must not be used concurrently.
 */
#ifndef MLT_WORKER_DATA_H
#define MLT_WORKER_DATA_H

#include <stddef.h>
#include <stdint.h>

/* Largest IDX image side accepted (rows and cols each). */
#define MLT_IDX_MAX_DIM 4096u
#define MLT_IDX_MAX_PIXELS (1ull << 30) /* images x rows x cols in one file */
/* Longest ratings-file line accepted, newline included. */
#define MLT_RATINGS_MAX_LINE 1024u
/* Ratings outside [MLT_RATINGS_MIN, MLT_RATINGS_MAX] are refused on load. */
#define MLT_RATINGS_MIN 0.0
#define MLT_RATINGS_MAX 10.0

/* ---- image datasets ----------------------------------------------------- */

typedef struct mlt_dataset {
    uint32_t n;    /* samples */
    uint32_t rows; /* image height; features per sample = rows * cols */
    uint32_t cols; /* image width */
    float *x;      /* n * rows * cols, sample-major, pixels scaled to [0, 1]; 64-byte aligned */
    uint8_t *y;    /* n labels, each < n_classes */
    uint32_t n_classes; /* 1 + the largest label of the file it was loaded from */
} mlt_dataset_t;

/* Loads an IDX image file (magic 0x00000803: unsigned bytes, 3 dimensions
 * n x rows x cols) and its IDX label file (magic 0x00000801: n unsigned bytes),
 * each gzipped or plain (detected from the content). Refuses a bad magic, a
 * wrong dimension count, zero samples, a side of 0 or more than MLT_IDX_MAX_DIM,
 * truncated data, bytes after the data, and label and image counts that differ.
 * n_classes is 1 + the largest label. On success *out is filled (caller owns it:
 * mlt_dataset_free); on failure it is zeroed. Returns 0, -errno from open/read,
 * -EINVAL (bad content) or -ENOMEM. */
int mlt_idx_load(const char *images_path, const char *labels_path, mlt_dataset_t *out, char *err,
                 size_t errlen);

/* Frees d's buffers and zeroes it. NULL and zeroed structs are fine. */
void mlt_dataset_free(mlt_dataset_t *d);

/* A held-out split: n_holdout samples (1 <= n_holdout < src->n) chosen uniformly
 * at random by selection sampling seeded from `seed` go to *holdout, the rest to
 * *train; both keep src's order and n_classes. The same seed gives the same
 * split. Data is copied; src is untouched and both outputs are the caller's.
 * Returns 0, -EINVAL (n_holdout out of range, with a message) or -ENOMEM; on
 * failure both outputs are zeroed. */
int mlt_dataset_split(const mlt_dataset_t *src, uint32_t n_holdout, mlt_dataset_t *train,
                      mlt_dataset_t *holdout, uint64_t seed, char *err, size_t errlen);

/* A copy of the first n samples of src (1 <= n <= src->n), keeping src's
 * n_classes. Returns 0, -EINVAL or -ENOMEM; *out is the caller's (zeroed on
 * failure). */
int mlt_dataset_subset(const mlt_dataset_t *src, uint32_t n, mlt_dataset_t *out);

/* ---- partition and per-epoch order -------------------------------------- */

/* A worker's view of samples 0 .. n_samples-1. A global permutation P fixed by
 * `seed` is the same for every worker of the job; worker w's partition is
 * { P[j] : j % n_workers == w }, so the partitions of workers 0 .. n_workers-1
 * are disjoint and cover every sample, and their sizes differ by at most one.
 * Each epoch e visits the partition once, in an order shuffled by a generator
 * seeded from (seed, e, worker): deterministic, and independent of how the
 * cursor got to e (so mlt_sampler_seek restores it exactly). */
typedef struct mlt_sampler mlt_sampler_t;

/* Returns a sampler at epoch 0, position 0 (caller owns it: mlt_sampler_destroy),
 * or NULL with errno EINVAL (n_workers == 0, worker >= n_workers, or
 * n_samples < n_workers so some partition would be empty) or ENOMEM. */
mlt_sampler_t *mlt_sampler_new(uint32_t n_samples, uint32_t worker, uint32_t n_workers,
                               uint64_t seed);

/* Writes the next min(batch, left in this epoch) sample indices to idx_out and
 * returns how many it wrote; 0 only for batch == 0. The batch that ends an epoch
 * may be short; after it the sampler is at the start of the next epoch (epoch
 * incremented, progress 0), so the next call begins the new order. */
uint32_t mlt_sampler_next_batch(mlt_sampler_t *s, uint32_t batch, uint32_t *idx_out);

/* The current epoch, counted from 0. */
uint64_t mlt_sampler_epoch(const mlt_sampler_t *s);

/* Fraction of the current epoch already handed out, in [0, 1). */
double mlt_sampler_progress(const mlt_sampler_t *s);

/* Number of samples in this worker's partition (one epoch). */
uint32_t mlt_sampler_size(const mlt_sampler_t *s);

/* Position within the current epoch (indices already handed out). */
uint32_t mlt_sampler_pos(const mlt_sampler_t *s);

/* Moves the cursor to `pos` indices into epoch `epoch` (a saved
 * mlt_sampler_epoch / mlt_sampler_pos pair); pos == size means the start of the
 * next epoch. Returns 0, or -EINVAL when pos > size (cursor unchanged). */
int mlt_sampler_seek(mlt_sampler_t *s, uint64_t epoch, uint32_t pos);

/* Frees *sp (NULL or *sp == NULL are fine) and sets *sp = NULL. */
void mlt_sampler_destroy(mlt_sampler_t **sp);

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
