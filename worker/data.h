/* data.h - the worker's training data: loading, splitting, partitioning.
 *
 * Owns two things:
 *  - image datasets read from IDX files (MNIST / Fashion-MNIST format), gzipped
 *    or not, with pixels scaled to [0, 1];
 *  - the sampler that gives a worker its partition of the samples and a
 *    deterministic per-epoch order over it.
 * Rating sets (MovieLens files, synthetic ratings) are in worker/ratings.h,
 * which this header includes so that its users need only this one.
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

#include "worker/ratings.h"

/* Largest IDX image side accepted (rows and cols each). */
#define MLT_IDX_MAX_DIM 4096u
#define MLT_IDX_MAX_PIXELS (1ull << 30) /* images x rows x cols in one file */

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

#endif
