/* safepath.c - see safepath.h. */
#include "common/safepath.h"

#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "common/json.h"

static int refuse(char *why, size_t whylen, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
static int refuse(char *why, size_t whylen, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    if (why && whylen)
        vsnprintf(why, whylen, fmt, ap);
    va_end(ap);
    return -EINVAL;
}

/* s with empty and "." components dropped and single '/' between the others
 * (a leading '/' kept) in out[0..cap). 0 or -ENAMETOOLONG. */
static int lex_norm(const char *s, char *out, size_t cap)
{
    size_t n = 0;
    if (cap < 2)
        return -ENAMETOOLONG;
    if (*s == '/')
        out[n++] = '/';
    for (const char *p = s; *p;) {
        while (*p == '/')
            p++;
        const char *e = p;
        while (*e && *e != '/')
            e++;
        size_t len = (size_t)(e - p);
        if (len && !(len == 1 && p[0] == '.')) {
            if (n && out[n - 1] != '/')
                out[n++] = '/';
            if (n + len + 1 > cap)
                return -ENAMETOOLONG;
            memcpy(out + n, p, len);
            n += len;
        }
        p = e;
    }
    out[n] = '\0';
    return 0;
}

/* The part of the normalised absolute path p below the normalised directory
 * b, or NULL when p is not b or under it. */
static const char *below(const char *p, const char *b)
{
    size_t n = strlen(b);
    if (n && b[n - 1] == '/')
        n--; /* b is "/" */
    if (strncmp(p, b, n) != 0)
        return NULL;
    if (p[n] == '\0')
        return p + n;
    return p[n] == '/' ? p + n + 1 : NULL;
}

int mlt_safepath_rel(const char *key, const char *path, const char *base, char *rel, size_t cap,
                     char *why, size_t whylen)
{
    size_t len = strlen(path);
    if (len > MLT_SAFEPATH_MAX)
        return refuse(why, whylen, "%s (%zu bytes) is longer than %u bytes", key, len,
                      MLT_SAFEPATH_MAX);
    for (size_t i = 0; i < len; i++) {
        unsigned char ch = (unsigned char)path[i];
        if (ch < 0x20 || ch == 0x7f) {
            char js[160];
            return refuse(why, whylen,
                          "%s \"%s\" must not contain control characters (byte 0x%02x at offset "
                          "%zu)",
                          key, mlt_json_escape(js, sizeof js, path), ch, i);
        }
    }
    for (const char *p = path; *p;) {
        const char *e = strchr(p, '/');
        size_t n = e ? (size_t)(e - p) : strlen(p);
        if (n == 2 && p[0] == '.' && p[1] == '.')
            return refuse(why, whylen,
                          "%s \"%s\" must not contain '..': name a directory "
                          "inside state_dir",
                          key, path);
        if (n > NAME_MAX)
            return refuse(why, whylen, "%s \"%.80s...\" has a component longer than %d bytes", key,
                          path, NAME_MAX);
        p += n + (e != NULL);
    }
    char norm[MLT_SAFEPATH_MAX + 2];
    if (lex_norm(path, norm, sizeof norm))
        return refuse(why, whylen, "%s is too long", key);
    const char *r = norm;
    if (path[0] == '/') {
        char nbase[PATH_MAX + 2], *real = realpath(base, NULL);
        r = NULL;
        if (!lex_norm(base, nbase, sizeof nbase))
            r = below(norm, nbase);
        if (!r && real && !lex_norm(real, nbase, sizeof nbase))
            r = below(norm, nbase);
        free(real);
        if (!r)
            return refuse(why, whylen,
                          "%s \"%s\" is an absolute path outside state_dir %s: name a "
                          "directory relative to state_dir",
                          key, path, base);
    }
    if (strlen(r) + 1 > cap)
        return refuse(why, whylen, "%s is too long", key);
    memcpy(rel, r, strlen(r) + 1);
    return 0;
}

/* -ELOOP when name in dirfd is a symbolic link, else rc. */
static int which_error(int dirfd, const char *name, int rc)
{
    struct stat st;
    if (fstatat(dirfd, name, &st, AT_SYMLINK_NOFOLLOW) == 0 && S_ISLNK(st.st_mode))
        return -ELOOP;
    return rc;
}

int mlt_safepath_mkdirs(int dirfd, const char *rel)
{
    int fd = fcntl(dirfd, F_DUPFD_CLOEXEC, 0);
    if (fd < 0)
        return -errno;
    char name[NAME_MAX + 1];
    for (const char *p = rel; *p;) {
        while (*p == '/')
            p++;
        const char *e = p;
        while (*e && *e != '/')
            e++;
        size_t n = (size_t)(e - p);
        if (n == 0)
            break;
        if (n > NAME_MAX || (n == 2 && p[0] == '.' && p[1] == '.')) {
            close(fd);
            return -EINVAL;
        }
        memcpy(name, p, n);
        name[n] = '\0';
        p = e;
        if (n == 1 && name[0] == '.')
            continue;
        if (mkdirat(fd, name, 0755) < 0 && errno != EEXIST) {
            int rc = -errno;
            close(fd);
            return rc;
        }
        int next = openat(fd, name, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
        if (next < 0) {
            int rc = which_error(fd, name, -errno);
            close(fd);
            return rc;
        }
        close(fd);
        fd = next;
    }
    return fd;
}

int mlt_safepath_create(int dirfd, const char *name)
{
    return mlt_safepath_reopen(dirfd, name, 0);
}

int mlt_safepath_reopen(int dirfd, const char *name, uint64_t keep)
{
    if (!*name || strchr(name, '/') || strcmp(name, ".") == 0 || strcmp(name, "..") == 0)
        return -EINVAL;
    /* O_NONBLOCK: a FIFO planted here must not block the open */
    int fd = openat(dirfd, name, O_WRONLY | O_CREAT | O_NOFOLLOW | O_CLOEXEC | O_NONBLOCK, 0644);
    if (fd < 0)
        return which_error(dirfd, name, -errno);
    struct stat st;
    int rc = 0;
    if (fstat(fd, &st) < 0)
        rc = -errno;
    else if (!S_ISREG(st.st_mode))
        rc = -EINVAL;
    else if (st.st_nlink > 1)
        rc = -EMLINK;
    else if (keep != UINT64_MAX && (uint64_t)st.st_size < keep)
        rc = -ERANGE; /* shorter than what is to be kept: not the file that was written */
    else if (fcntl(fd, F_SETFL, 0) < 0 ||
             ftruncate(fd, keep == UINT64_MAX ? st.st_size : (off_t)keep) < 0 ||
             lseek(fd, 0, SEEK_END) < 0)
        rc = -errno;
    if (rc) {
        close(fd);
        return rc;
    }
    return fd;
}

const char *mlt_safepath_strerror(int rc)
{
    switch (rc) {
    case -ELOOP: return "a symbolic link, refused";
    case -EINVAL:
    case -ENXIO: /* a FIFO with no reader */
    case -EISDIR: return "not a plain file, refused";
    case -EMLINK: return "a file with another hard link, refused";
    case -ENOTDIR: return "a path component is not a directory";
    default: return strerror(-rc);
    }
}
