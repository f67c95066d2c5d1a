/* data_int.h - private helpers shared by data.c and ratings.c; not installed,
 * not for other modules. Defined in data.c. */
#ifndef MLT_WORKER_DATA_INT_H
#define MLT_WORKER_DATA_INT_H

#include <stddef.h>
#include <stdint.h>
#include <zlib.h>

/* Stream tags for mlt_rng_mix: one independent stream per use of a seed. */
enum {
    TAG_PERMUTATION = 1, /* sampler: the job-wide permutation */
    TAG_EPOCH = 2,       /* sampler: per-(epoch, worker) order */
    TAG_SPLIT = 3,       /* dataset and ratings splits */
    TAG_SYNTH_U = 4,     /* synthetic user factors */
    TAG_SYNTH_V = 5,     /* synthetic item factors */
    TAG_SYNTH_R = 6,     /* synthetic pairs and noise */
};

/* Writes the message (if err) and returns rc. */
__attribute__((format(printf, 4, 5))) int mlt_data_fail(char *err, size_t errlen, int rc,
                                                        const char *fmt, ...);

/* Opens path for gz reading (gzip or plain). 0, or -errno with "path: text". */
int mlt_data_gz_open(const char *path, gzFile *out, char *err, size_t errlen);

/* The error zlib holds for gz as -errno plus "<where>: text". */
int mlt_data_gz_fail(gzFile gz, const char *where, char *err, size_t errlen);

/* Knuth's selection sampling (Algorithm S): called once per position in order,
 * with *need positions still to pick among `left` (this one included); returns 1
 * if this position is picked. Exactly the initial *need positions get picked and
 * every subset of that size is equally likely. */
int mlt_data_select_next(uint64_t *st, uint64_t *need, uint64_t left);

#endif
