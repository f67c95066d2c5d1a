/* ckfile.h - checkpoint files: written whole or not at all, and verified
 * before a byte of them is believed.
 *
 * A file is  "MLTCKPT1" | payload | trailer,  the trailer being the payload's
 * length (u64), its CRC32 (zlib, u32) and "END!". A writer streams the payload
 * to "<name>.tmp" in the directory, then fsyncs it, renames it to <name> and
 * fsyncs the directory: a crash leaves the old file, a .tmp, or the new file,
 * never half of one under the real name. A reader checks the size and the
 * CRC over the whole file before its first get, so a flipped byte or a cut
 * file is refused with what was wrong and where; every get is bounded by the
 * payload's length. Numbers are little-endian as the host writes them
 * (x86-64; a checkpoint is read back on the machine kind that wrote it).
 *
 * Single-threaded per object; no logging (the caller says what failed). */
#ifndef MLT_CKFILE_H
#define MLT_CKFILE_H

#include <stddef.h>
#include <stdint.h>

#define MLT_CKFILE_OVERHEAD 24u /* magic + trailer bytes around a payload */

typedef struct mlt_ckw mlt_ckw_t;
typedef struct mlt_ckr mlt_ckr_t;

/* Starts writing dir/name (through dir/name.tmp). NULL with the reason in err. */
mlt_ckw_t *mlt_ckw_open(const char *dir, const char *name, char *err, size_t errlen);
/* Appends len bytes (errors are kept and reported by mlt_ckw_close). */
void mlt_ckw_put(mlt_ckw_t *w, const void *p, size_t len);
void mlt_ckw_u8(mlt_ckw_t *w, uint8_t v);
void mlt_ckw_u32(mlt_ckw_t *w, uint32_t v);
void mlt_ckw_u64(mlt_ckw_t *w, uint64_t v);
void mlt_ckw_i64(mlt_ckw_t *w, int64_t v);
void mlt_ckw_f64(mlt_ckw_t *w, double v);
/* A string as u32 length + bytes (NULL: length 0). */
void mlt_ckw_str(mlt_ckw_t *w, const char *s);
/* Finishes: trailer, fsync, rename, directory fsync. *size (whole file) and
 * *crc (of the payload) may be NULL. 0 or -errno with the reason; on failure
 * the temporary file is removed. Frees w either way. */
int mlt_ckw_close(mlt_ckw_t **wp, uint64_t *size, uint32_t *crc, char *err, size_t errlen);
/* Drops an unfinished file (removes the .tmp). Accepts NULL. */
void mlt_ckw_abort(mlt_ckw_t **wp);

/* Opens path and verifies it whole: the magic, the trailer, the length
 * against the file's size, the CRC. expect_size / expect_crc: what a manifest
 * says (0: not checked). NULL with the reason in err (errno set). */
mlt_ckr_t *mlt_ckr_open(const char *path, uint64_t expect_size, uint32_t expect_crc, char *err,
                        size_t errlen);
/* Reads len bytes of the payload; -EPROTO past its end (the reader then fails
 * every later get). */
int mlt_ckr_get(mlt_ckr_t *r, void *p, size_t len);
int mlt_ckr_u8(mlt_ckr_t *r, uint8_t *v);
int mlt_ckr_u32(mlt_ckr_t *r, uint32_t *v);
int mlt_ckr_u64(mlt_ckr_t *r, uint64_t *v);
int mlt_ckr_i64(mlt_ckr_t *r, int64_t *v);
int mlt_ckr_f64(mlt_ckr_t *r, double *v);
/* A string of at most max bytes into a new buffer (caller frees with
 * mlt_free); -EPROTO when longer or cut. */
int mlt_ckr_str(mlt_ckr_t *r, size_t max, char **s);
/* Payload bytes not yet read. */
uint64_t mlt_ckr_left(const mlt_ckr_t *r);
uint64_t mlt_ckr_size(const mlt_ckr_t *r); /* the whole file's */
uint32_t mlt_ckr_crc(const mlt_ckr_t *r);
void mlt_ckr_close(mlt_ckr_t **rp);

/* fsyncs a directory. 0 or -errno. */
int mlt_ckfile_sync_dir(const char *dir);
/* Creates dir and its parents (mode 0750). 0 or -errno. */
int mlt_ckfile_mkdirs(const char *dir);
/* Removes dir and the plain files in it (one level). 0 or -errno. */
int mlt_ckfile_rmdir(const char *dir);

#endif
