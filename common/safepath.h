/* safepath.h - where the daemon may write a job's files, and how it opens them.
 *
 * A job names its output directory; the daemon writes only inside its
 * state_dir. mlt_safepath_rel() checks a job's path and turns it into a
 * path relative to state_dir: relative paths are taken as they are, an
 * absolute path only when it lies inside state_dir; ".." components and
 * control characters are refused. The directory is then made and opened one
 * component at a time from an O_DIRECTORY descriptor of state_dir, and the
 * files in it created with openat(), never following a symbolic link
 * (O_NOFOLLOW): a link planted where an output goes is refused, its target
 * left untouched. Pure system calls, no logging; thread-safe. */
#ifndef MLT_SAFEPATH_H
#define MLT_SAFEPATH_H

#include <stddef.h>
#include <stdint.h>

#define MLT_SAFEPATH_MAX 1024u /* bytes of a job's output path */

/* Checks path (the value of key, for messages: "output_dir", "--out") as a
 * directory inside base and writes it relative to base to rel[0..cap)
 * (components joined by single '/', "." components dropped; "" is base
 * itself). An absolute path is accepted when it is base, or lies under it,
 * spelt as base is or as base's real path. Returns 0, or -EINVAL with why
 * naming the key, the value and the rule it breaks. */
int mlt_safepath_rel(const char *key, const char *path, const char *base, char *rel, size_t cap,
                     char *why, size_t whylen);

/* Opens directory rel (from mlt_safepath_rel) under the directory dirfd,
 * making each missing component with mode 0755, never following a
 * symbolic link. Returns an O_DIRECTORY descriptor (caller closes), or
 * -errno: -ELOOP where a component is a symbolic link, -ENOTDIR where one
 * is something else than a directory. */
int mlt_safepath_mkdirs(int dirfd, const char *rel);

/* Creates name (one component) in the directory dirfd for writing, or
 * truncates it when it is a plain file: O_WRONLY|O_CREAT|O_NOFOLLOW|O_CLOEXEC,
 * mode 0644. Returns the descriptor (caller closes), or -errno: -ELOOP for a
 * symbolic link, -EINVAL for something else than a plain file (a FIFO, a
 * device, a directory), -EMLINK for a file with another hard link. Nothing
 * is truncated or written when it fails. */
int mlt_safepath_create(int dirfd, const char *name);
/* The same, but the file keeps its first `keep` bytes (all of it for
 * UINT64_MAX) and is positioned at its end: a resumed job's output cut back to
 * a checkpoint's position (#12). -ERANGE when it is shorter than keep. */
int mlt_safepath_reopen(int dirfd, const char *name, uint64_t keep);

/* Text for an error of the functions above (strerror, but "a symbolic link,
 * refused" for -ELOOP and so on). */
const char *mlt_safepath_strerror(int rc);

#endif
