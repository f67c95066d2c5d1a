/* outfile.h - an output file that remembers why a write failed.
 *
 * The daemon's job outputs (progress.jsonl, decisions.jsonl, job.conf) are
 * written through stdio streams; a stream's error flag says that a write
 * failed but not why. An outfile is a stdio stream over a descriptor from
 * mlt_safepath_create() whose writes go through one function that keeps the
 * first error (ENOSPC, EIO, EFBIG...), takes back the part of that write
 * that got through and, from then on, writes nothing more: the file ends at
 * a whole earlier write (a whole line, when flushed per line), and the
 * owner asks mlt_outfile_error() to fail the job with the reason. Not
 * thread-safe: one owner. */
#ifndef MLT_OUTFILE_H
#define MLT_OUTFILE_H

#include <stdint.h>
#include <stdio.h>

typedef struct mlt_outfile mlt_outfile_t;

/* Creates or truncates name in the directory dirfd (mlt_safepath_create:
 * a symbolic link or another kind of file is refused). Returns the outfile
 * (caller owns; mlt_outfile_close), or NULL with -errno in *rc. */
mlt_outfile_t *mlt_outfile_open(int dirfd, const char *name, int *rc);

/* The same over a file that keeps its first `keep` bytes (UINT64_MAX: all),
 * written on at its end (mlt_safepath_reopen): a resumed job's output (#12). */
mlt_outfile_t *mlt_outfile_reopen(int dirfd, const char *name, uint64_t keep, int *rc);

/* Flushes and returns the byte position the next write goes to, or -1 after
 * a failed write. */
int64_t mlt_outfile_tell(mlt_outfile_t *o);

/* The stream to write to (borrowed; valid until mlt_outfile_close). */
FILE *mlt_outfile_stream(mlt_outfile_t *o);

/* Flushes the stream; returns 0, or the -errno of the first failed write. */
int mlt_outfile_flush(mlt_outfile_t *o);

/* 0, or the -errno of the first failed write (without flushing). */
int mlt_outfile_error(const mlt_outfile_t *o);

/* The file's name as given to mlt_outfile_open (borrowed). */
const char *mlt_outfile_name(const mlt_outfile_t *o);

/* Flushes, fsyncs and closes; returns 0, or the -errno of the first failure
 * of a write, the flush, the fsync or the close. Accepts NULL (returns 0);
 * clears *op. */
int mlt_outfile_close(mlt_outfile_t **op);

#endif
