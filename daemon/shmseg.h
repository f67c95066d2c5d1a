/* shmseg.h - the shared-memory segments of same-host clients.
 *
 * A client on the daemon's host creates a POSIX shared-memory segment, writes
 * a random token in its first 8 bytes and names it in SHM_ATTACH; the daemon
 * opens it by name, checks it (a regular file of the stated size, owned by the
 * daemon's own user, holding the token) and keeps the file descriptor, then the
 * client unlinks the name. Push payloads are then read from the segment and
 * pull replies written into it with pread/pwrite on that descriptor, never
 * through a mapping: a segment the client shrinks afterwards gives a short read
 * (an error reply), not a SIGBUS in the daemon. The exception (#15) is a memfd
 * the client sealed against shrinking (F_SEAL_SHRINK, checked at attach),
 * named by its /proc/<pid>/fd link: that one cannot shrink, so it is mapped
 * and the shard applies pushes from it and copies pull replies into it
 * directly, with no copy through the kernel. Every range a request names is
 * checked against the size stated at attach before it is used.
 *
 * A handle names a table slot and that slot's generation, so a handle of a
 * detached segment never reaches a later one. When all MLT_MAX_SHM_SEGMENTS
 * slots are taken the least recently used segment is dropped (its client's
 * next request through it gets ENOENT). Owned by the daemon's main thread. */
#ifndef MLT_SHMSEG_H
#define MLT_SHMSEG_H

#include <stddef.h>
#include <stdint.h>
#include <sys/uio.h>

typedef struct mlt_shmseg mlt_shmseg_t;

mlt_shmseg_t *mlt_shmseg_new(void);
void mlt_shmseg_destroy(mlt_shmseg_t **tp);

/* Opens and checks segment `name` ("/mltuner-" then letters, digits, '.', '_'
 * or '-'; or a client's sealed memfd, "/proc/<pid>/fd/<fd>", which is then
 * mapped). 0 and *handle, or -errno with the reason in err. */
int mlt_shmseg_attach(mlt_shmseg_t *t, const char *name, uint64_t bytes, uint64_t token,
                      uint32_t *handle, char *err, size_t errlen);
/* Forgets a segment. 0, or -ENOENT for an unknown handle or a wrong token. */
int mlt_shmseg_detach(mlt_shmseg_t *t, uint32_t handle, uint64_t token, char *err, size_t errlen);
/* Forgets every segment (the job ended). */
void mlt_shmseg_clear(mlt_shmseg_t *t);
size_t mlt_shmseg_count(const mlt_shmseg_t *t);

/* The descriptor of a segment for `len` bytes at `offset`, after checking the
 * handle, the token and that the range lies inside the segment and is
 * float-aligned; -errno with the reason in err. */
int mlt_shmseg_range(mlt_shmseg_t *t, uint32_t handle, uint64_t token, uint64_t offset,
                     uint64_t len, char *err, size_t errlen);
/* A sealed segment's mapping (attached as /proc/<pid>/fd/<fd>, a memfd sealed
 * against shrinking: it can never lose pages under the mapping), or NULL for
 * one read and written through its descriptor. Valid until it is detached;
 * ranges are checked with mlt_shmseg_range first. */
char *mlt_shmseg_map(mlt_shmseg_t *t, uint32_t handle, uint64_t token);
/* Reads len bytes at offset into dst: 0, or -EIO when fewer are there (the
 * segment shrank). */
int mlt_shmseg_read(int fd, void *dst, size_t len, uint64_t offset);
/* Writes the n buffers back to back from offset: 0 or -errno. */
int mlt_shmseg_writev(int fd, const struct iovec *iov, size_t n, uint64_t offset);

#endif
