/* shmseg.c - see shmseg.h. */
#include "daemon/shmseg.h"

#include <errno.h>
#include <fcntl.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdio.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include "common/alloc.h"
#include "common/errtext.h"
#include "common/timeutil.h"
#include "proto/limits.h"

#define NAME_PREFIX "/mltuner-"
#define TOKEN_BYTES 8u /* the segment's first bytes: the client's token */

typedef struct seg {
    int fd;    /* -1: free slot */
    char *map; /* a sealed segment's mapping (mlt_shmseg_map), else NULL */
    uint16_t gen;
    uint64_t bytes, token;
    double used;
} seg_t;

struct mlt_shmseg {
    seg_t s[MLT_MAX_SHM_SEGMENTS];
    size_t n;
};

mlt_shmseg_t *mlt_shmseg_new(void)
{
    mlt_shmseg_t *t = mlt_calloc(1, sizeof *t);
    for (size_t i = 0; i < MLT_MAX_SHM_SEGMENTS; i++)
        t->s[i].fd = -1;
    return t;
}

static void drop(mlt_shmseg_t *t, seg_t *g)
{
    if (g->map)
        munmap(g->map, g->bytes);
    g->map = NULL;
    close(g->fd);
    g->fd = -1;
    g->gen++;
    t->n--;
}

void mlt_shmseg_clear(mlt_shmseg_t *t)
{
    for (size_t i = 0; i < MLT_MAX_SHM_SEGMENTS; i++)
        if (t->s[i].fd >= 0)
            drop(t, &t->s[i]);
}

void mlt_shmseg_destroy(mlt_shmseg_t **tp)
{
    if (!tp || !*tp)
        return;
    mlt_shmseg_clear(*tp);
    mlt_free(*tp);
    *tp = NULL;
}

size_t mlt_shmseg_count(const mlt_shmseg_t *t)
{
    return t->n;
}

static bool name_ok(const char *name)
{
    size_t n = strlen(name), p = strlen(NAME_PREFIX);
    if (n <= p || n > MLT_MAX_SHM_NAME_LEN || strncmp(name, NAME_PREFIX, p) != 0)
        return false;
    for (size_t i = p; i < n; i++) {
        char c = name[i];
        if (!((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
              c == '.' || c == '_' || c == '-'))
            return false;
    }
    return true;
}

/* "/proc/<pid>/fd/<fd>": a client's sealed memfd. */
static bool proc_name_ok(const char *name)
{
    unsigned pid, fd;
    int end = 0;
    return strlen(name) <= MLT_MAX_SHM_NAME_LEN &&
           sscanf(name, "/proc/%9u/fd/%9u%n", &pid, &fd, &end) == 2 && name[end] == '\0' &&
           strspn(name + 6, "0123456789/fd") == strlen(name + 6);
}

/* Whether the /proc fd link `name` leads to a memfd (its target reads
 * "/memfd:...") that is a regular file of this process's user. */
static bool proc_memfd(const char *name)
{
    char target[64];
    ssize_t n = readlink(name, target, sizeof target - 1);
    if (n < 7)
        return false;
    target[n] = '\0';
    struct stat st;
    return strncmp(target, "/memfd:", 7) == 0 && stat(name, &st) == 0 && S_ISREG(st.st_mode) &&
           st.st_uid == geteuid();
}

int mlt_shmseg_read(int fd, void *dst, size_t len, uint64_t offset)
{
    char *d = dst;
    while (len) {
        ssize_t r = pread(fd, d, len, (off_t)offset);
        if (r < 0 && errno == EINTR)
            continue;
        if (r <= 0)
            return r < 0 ? -errno : -EIO;
        d += r;
        len -= (size_t)r;
        offset += (uint64_t)r;
    }
    return 0;
}

int mlt_shmseg_writev(int fd, const struct iovec *iov, size_t n, uint64_t offset)
{
    struct iovec cur[64];
    size_t i = 0, skip = 0; /* bytes of iov[i] already written */
    while (i < n) {
        int k = 0;
        for (size_t j = i; j < n && k < 64; j++, k++) {
            cur[k] = iov[j];
            if (j == i) {
                cur[k].iov_base = (char *)cur[k].iov_base + skip;
                cur[k].iov_len -= skip;
            }
        }
        ssize_t w = pwritev(fd, cur, k, (off_t)offset);
        if (w < 0 && errno == EINTR)
            continue;
        if (w <= 0)
            return w < 0 ? -errno : -EIO;
        offset += (uint64_t)w;
        size_t left = (size_t)w;
        while (i < n && left >= iov[i].iov_len - skip) { /* the buffers written whole */
            left -= iov[i].iov_len - skip;
            skip = 0;
            i++;
        }
        skip += left;
    }
    return 0;
}

int mlt_shmseg_attach(mlt_shmseg_t *t, const char *name, uint64_t bytes, uint64_t token,
                      uint32_t *handle, char *err, size_t errlen)
{
    const bool sealed = name && proc_name_ok(name);
    if (!name || (!sealed && !name_ok(name)))
        return mlt_errf(-EINVAL, err, errlen,
                        "shm_name '%.64s' is not " NAME_PREFIX
                        "<letters, digits, '.', '_', '-'> nor /proc/<pid>/fd/<fd>, of at "
                        "most %u bytes",
                        name ? name : "", MLT_MAX_SHM_NAME_LEN);
    if (bytes < TOKEN_BYTES || bytes > MLT_MAX_SHM_BYTES)
        return mlt_errf(-EINVAL, err, errlen, "shm_bytes %llu is outside [%u, %llu]",
                        (unsigned long long)bytes, TOKEN_BYTES,
                        (unsigned long long)MLT_MAX_SHM_BYTES);
    /* a sealed memfd is reached through the client's /proc link (which must
     * be followed); a POSIX segment by name, no link followed. The link is
     * opened only when it names a memfd that is a regular file of the
     * daemon's user: a client cannot have the daemon open one of its other
     * files or a device with the daemon's rights (fstat checks again after) */
    if (sealed && !proc_memfd(name))
        return mlt_errf(-EPERM, err, errlen,
                        "%s is not a memfd of this daemon's user: not a segment", name);
    int fd = sealed ? open(name, O_RDWR | O_CLOEXEC | O_NOCTTY | O_NONBLOCK)
                    : shm_open(name, O_RDWR | O_CLOEXEC | O_NOFOLLOW, 0);
    if (fd < 0)
        return mlt_errf(-errno, err, errlen, "cannot open shared memory %s: %s (not on this host?)",
                        name, strerror(errno));
    struct stat st;
    uint64_t got = 0;
    int rc, seals;
    if (fstat(fd, &st) < 0) {
        rc = mlt_errf(-errno, err, errlen, "fstat %s: %s", name, strerror(errno));
    } else if (!S_ISREG(st.st_mode) || st.st_uid != geteuid()) {
        rc = mlt_errf(-EPERM, err, errlen,
                      "shared memory %s is not a segment of the daemon's user %u", name,
                      (unsigned)geteuid());
    } else if ((uint64_t)st.st_size != bytes) {
        rc = mlt_errf(-EINVAL, err, errlen, "shared memory %s is %lld bytes, not the %llu stated",
                      name, (long long)st.st_size, (unsigned long long)bytes);
    } else if ((rc = mlt_shmseg_read(fd, &got, sizeof got, 0)) < 0 || got != token) {
        rc = mlt_errf(-EPERM, err, errlen, "shared memory %s does not hold the token stated", name);
    } else if (sealed && ((seals = fcntl(fd, F_GET_SEALS)) < 0 || !(seals & F_SEAL_SHRINK))) {
        rc = mlt_errf(-EPERM, err, errlen,
                      "shared memory %s is not sealed against shrinking (F_SEAL_SHRINK): it "
                      "cannot be mapped",
                      name);
    }
    /* sealed: it can never shrink, so a mapping of it never faults on a page
     * that is gone (no SIGBUS), and the shard copies in and out of it directly */
    char *map = NULL;
    if (rc == 0 && sealed) {
        void *m = mmap(NULL, bytes, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
        if (m == MAP_FAILED)
            rc = mlt_errf(-errno, err, errlen, "mmap of shared memory %s: %s", name,
                          strerror(errno));
        else
            map = m;
    }
    if (rc < 0) {
        close(fd);
        return rc;
    }
    seg_t *g = NULL;
    for (size_t i = 0; i < MLT_MAX_SHM_SEGMENTS && !g; i++)
        if (t->s[i].fd < 0)
            g = &t->s[i];
    if (!g) { /* full: the least recently used goes */
        g = &t->s[0];
        for (size_t i = 1; i < MLT_MAX_SHM_SEGMENTS; i++)
            if (t->s[i].used < g->used)
                g = &t->s[i];
        drop(t, g);
    }
    g->fd = fd;
    g->map = map;
    g->bytes = bytes;
    g->token = token;
    g->used = mlt_time_mono();
    t->n++;
    *handle = (uint32_t)g->gen << 16 | (uint32_t)(g - t->s);
    return 0;
}

static seg_t *find(mlt_shmseg_t *t, uint32_t handle, uint64_t token)
{
    uint32_t i = handle & 0xffffu;
    if (i >= MLT_MAX_SHM_SEGMENTS)
        return NULL;
    seg_t *g = &t->s[i];
    return g->fd >= 0 && g->gen == handle >> 16 && g->token == token ? g : NULL;
}

int mlt_shmseg_detach(mlt_shmseg_t *t, uint32_t handle, uint64_t token, char *err, size_t errlen)
{
    seg_t *g = find(t, handle, token);
    if (!g)
        return mlt_errf(-ENOENT, err, errlen, "no shared memory segment %#x with that token",
                        handle);
    drop(t, g);
    return 0;
}

int mlt_shmseg_range(mlt_shmseg_t *t, uint32_t handle, uint64_t token, uint64_t offset,
                     uint64_t len, char *err, size_t errlen)
{
    seg_t *g = find(t, handle, token);
    if (!g)
        return mlt_errf(-ENOENT, err, errlen,
                        "no shared memory segment %#x with that token (detached, or dropped for a "
                        "newer one)",
                        handle);
    if (offset < TOKEN_BYTES || offset % sizeof(float) || offset > g->bytes ||
        len > g->bytes - offset)
        return mlt_errf(-ERANGE, err, errlen,
                        "%llu bytes at offset %llu do not fit segment %#x of %llu bytes "
                        "(float-aligned, after its %u-byte token)",
                        (unsigned long long)len, (unsigned long long)offset, handle,
                        (unsigned long long)g->bytes, TOKEN_BYTES);
    g->used = mlt_time_mono();
    return g->fd;
}

char *mlt_shmseg_map(mlt_shmseg_t *t, uint32_t handle, uint64_t token)
{
    seg_t *g = find(t, handle, token);
    return g ? g->map : NULL;
}
