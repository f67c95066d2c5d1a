/* testutil.h - small helpers shared by the unit suites (header-only: each
 * suite is one program). Temporary files with given contents, and paths in the
 * source tree (MLT_SOURCE_ROOT, set by meson test). */
#ifndef MLT_TESTUTIL_H
#define MLT_TESTUTIL_H

#include <check.h>
#include <errno.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "common/alloc.h"

/* Writes n bytes of text to a new temporary file named after `tag`; returns
 * its path (caller frees and unlinks with tmp_drop). */
static inline char *tmp_file_tagged(const char *tag, const char *text, size_t n)
{
    const char *dir = getenv("TMPDIR");
    char *path = mlt_malloc(PATH_MAX);
    snprintf(path, PATH_MAX, "%s/%s_XXXXXX", dir && *dir ? dir : "/tmp", tag);
    int fd = mkstemp(path);
    ck_assert_msg(fd >= 0, "mkstemp: %s", strerror(errno));
    ck_assert_int_eq(write(fd, text, n), (ssize_t)n);
    close(fd);
    return path;
}

static inline void tmp_drop(char *path)
{
    unlink(path);
    mlt_free(path);
}

/* rel inside the source tree (caller frees). */
static inline char *source_path(const char *rel)
{
    const char *root = getenv("MLT_SOURCE_ROOT");
    char *path = mlt_malloc(PATH_MAX);
    snprintf(path, PATH_MAX, "%s/%s", root && *root ? root : ".", rel);
    return path;
}

#endif
